#!/usr/bin/env bash
# PPO's memory with and without LoRA (issue 14: "one base, many roles; report the memory saved"). One base
# (default GPT-2 124M shape, random init, vocab 50257), SFT'd 1 step, a reward model trained 1 step both ways
# (full: a whole reward model; LoRA: a reward adapter on the SFT model), then ITERS PPO iterations each way:
#   full: policy, reference, value and reward model are four whole models (the policy and value with gradients
#         and AdamW moments);
#   LoRA: one frozen copy of the SFT weights; the reference is it with the adapters off, the policy, value and
#         reward models are adapters on it (views).
# Peak RSS of each gptkit process by /usr/bin/time; the median PPO iteration time from its step lines.
# Usage: [MODEL=d12] [ITERS=3] [GPTKIT_BIN=path] bash bench/lora/ppo_memory.sh [BUILD_DIR]   (OMP_NUM_THREADS defaults to 2)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
G=${GPTKIT_BIN:-$ROOT/${1:-build}/gptkit}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
ITERS=${ITERS:-3}
W=$(mktemp -d "${TMPDIR:-/tmp}/gk-lora-ppo-XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W"
sed -n '/^cat > gen.py/,/^EOF$/p' "$ROOT/tests/cli/rlhf.sh" | sed '1d;$d' > gen.py
python3 gen.py
uptime
$G tokenizer train --input corpus.txt --vocab-size 512 --out tok >/dev/null 2>&1
$G tokenize --tokenizer tok --input corpus.txt --out-dir shards --val-fraction 0 >/dev/null 2>&1
$G pretrain --model "${MODEL:-d12}" --vocab-size 50257 --n-ctx 256 --data "shards/train_*.bin" --tokenizer tok -b 1 -t 8 \
  --steps 1 --out base --json >/dev/null 2>&1
$G sft --init base --data sft.jsonl -b 4 --steps 1 --out sft --json >/dev/null 2>&1
$G rm --init sft --data prefs.jsonl -b 4 --steps 1 --out rm_full --json >/dev/null 2>&1
$G rm --init sft --data prefs.jsonl -b 4 --steps 1 --lora-rank 8 --out rm_lora --json >/dev/null 2>&1
P="--policy sft --prompts prompts.jsonl --iters $ITERS -b 2 --samples 2 --max-new 16 --minibatch 4 --ppo-epochs 1 --json"
run() {   # name, flags...
  local name=$1; shift
  /usr/bin/time -f "%M" -o "$name.rss" $G ppo $P "$@" --out "$name" >"$name.log" 2>"$name.err"
}
run full --reward rm_full
run lora --reward rm_lora --lora-rank 8
run full2 --reward rm_full
run lora2 --reward rm_lora --lora-rank 8
uptime
python3 - <<'PY'
import json, statistics
def st(n):
    L = [json.loads(l) for l in open(f"{n}.log") if l.startswith("{")]
    t = [x["t_rollout"] + x["t_score"] + x["t_ref"] + x["t_update"] for x in L if "t_update" in x]
    return int(open(f"{n}.rss").read().split()[-1]) / 1024, t
(f1, tf1), (f2, tf2), (l1, tl1), (l2, tl2) = st("full"), st("full2"), st("lora"), st("lora2")
r = [json.loads(l) for l in open("lora/metrics.jsonl") if '"resources"' in l][-1]
q = [json.loads(l) for l in open("full/metrics.jsonl") if '"resources"' in l][-1]
print("| PPO | models in memory | trainable params | gradients + AdamW | peak RSS (two runs) | median iteration |")
print("|---|---|---|---|---|---|")
print(f"| full | policy, reference, value, reward: 4 whole models | {q['trainable_params']/1e6:.1f} M | {q['optimizer_grad_mb']:.0f} MB | "
      f"{f1:.0f} / {f2:.0f} MB | {statistics.median(tf1+tf2)*1000:.0f} ms |")
print(f"| LoRA r=8 | 1 frozen base + policy, value, reward adapters | {r['trainable_params']/1e6:.2f} M | {r['optimizer_grad_mb']:.1f} MB | "
      f"{l1:.0f} / {l2:.0f} MB | {statistics.median(tl1+tl2)*1000:.0f} ms |")
print(f"\nsaved: {min(f1,f2)-max(l1,l2):.0f} MB of peak RSS ({100*(1-max(l1,l2)/min(f1,f2)):.0f}%)")
PY
grep -h "one frozen base" lora.err | head -1
