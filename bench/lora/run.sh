#!/usr/bin/env bash
# LoRA vs full SFT on the same base and data (issue 14): trainable parameters, optimizer + gradient memory,
# peak RSS and the median step time. Base: a random-init GPT-2-family model (default 6 layers, 384 wide, vocab
# 512 trained on the rlhf test corpus, context 64) — step time is what is measured, not what is learned.
# Usage: [ARCH=llama] bash bench/lora/run.sh [BUILD_DIR]   (OMP_NUM_THREADS defaults to 2; prints a markdown table)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
G=$ROOT/${1:-build}/gptkit
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
STEPS=${STEPS:-25}
W=$(mktemp -d "${TMPDIR:-/tmp}/gk-lora-bench-XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W"
sed -n '/^cat > gen.py/,/^EOF$/p' "$ROOT/tests/cli/rlhf.sh" | sed '1d;$d' > gen.py
python3 gen.py
$G tokenizer train --input corpus.txt --vocab-size 512 --out tok >/dev/null 2>&1
$G tokenize --tokenizer tok --input corpus.txt --out-dir shards --val-fraction 0 >/dev/null 2>&1
$G pretrain --arch "${ARCH:-gpt2}" --model d6 --vocab-size 512 --n-ctx 64 --data "shards/train_*.bin" --tokenizer tok -b 4 -t 32 --steps 1 \
  --out base --json >/dev/null 2>&1
run() {   # name, extra flags...
  local name=$1; shift
  /usr/bin/time -f "%M" -o "$name.rss" $G sft --init base --data sft.jsonl -b 16 --steps "$STEPS" --lr 1e-3 "$@" \
    --out "out-$name" --json >"$name.log" 2>"$name.err"
}
for rep in 1 2; do
  run full$rep
  run lora8$rep --lora-rank 8 --lora-targets all-linear
  if [ "${ARCH:-gpt2}" = llama ]; then run lora8qv$rep --lora-rank 8 --lora-targets q,v
  else run lora8qv$rep --lora-rank 8 --lora-targets c_attn; fi
done
python3 - "$G" <<'PY'
import json, re, statistics, sys
def stats(name):
    ms, lo = [], None
    for rep in (1, 2):
        L = [json.loads(l) for l in open(f"{name}{rep}.log")]
        ms += [x["ms"] for x in L if "ms" in x][3:]   # the first steps warm the allocator and the GEMM
        lo = next((x["lora"] for x in L if "lora" in x), lo)
    rss = max(int(open(f"{name}{rep}.rss").read().split()[-1]) for rep in (1, 2)) / 1024
    return statistics.median(ms), rss, lo
full_ms, full_rss, _ = stats("full")
n_full = stats("lora8")[2]["base_params"]
print("| run | trainable params | optimizer + grads | peak RSS | median step | vs full |")
print("|---|---|---|---|---|---|")
print(f"| full SFT | {n_full/1e6:.2f} M | {12*n_full/1e6:.1f} MB | {full_rss:.0f} MB | {full_ms:.1f} ms | 1.00× |")
import os
qv = "q,v" if os.environ.get("ARCH") == "llama" else "c_attn"
for name, label in (("lora8", "LoRA r=8, all-linear"), ("lora8qv", f"LoRA r=8, {qv}")):
    ms, rss, lo = stats(name)
    n = lo["trainable_params"]
    print(f"| {label} | {n/1e3:.1f} k ({100*n/n_full:.2f}%) | {12*n/1e6:.2f} MB | {rss:.0f} MB | {ms:.1f} ms | {full_ms/ms:.2f}× |")
PY
