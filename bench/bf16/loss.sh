#!/usr/bin/env bash
# bf16 mixed precision trains to fp32's loss (issue 7): the 6-layer/384-wide GPT-2 (vocab 4096, T 256, B 8) on
# KJV for STEPS steps, three runs — fp32 seed 1, bf16 seed 1, fp32 seed 2 (the seed-to-seed spread is the noise
# the bf16 difference is judged against) — and the validation loss of each at the end.
#   bash bench/bf16/loss.sh [build/gptkit]      (STEPS=300 by default; ~10 minutes on 2 cores)
set -eu
G=$(cd "$(dirname "${1:-build/gptkit}")" && pwd)/$(basename "${1:-build/gptkit}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STEPS=${STEPS:-300}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
gzip -dc "$ROOT/data/corpus/kjv.txt.gz" > "$W/kjv.txt"
"$G" tokenize --tokenizer "$ROOT/tests/fixtures/tok/kjv4k.tiktoken" --input "$W/kjv.txt" --out-dir "$W/shards" \
  --val-fraction 0.05 >/dev/null 2>&1
run() {   # name precision seed
  "$G" pretrain --model d6 --vocab-size 4096 --n-ctx 256 -b 8 -t 256 --steps "$STEPS" --lr 1e-3 --warmup 20 \
    --schedule cosine --seed "$3" --precision "$2" --data "$W/shards/train_*.bin" --val "$W/shards/val_000000.bin" \
    --val-every "$STEPS" --val-batches 20 --save-every 0 --out "$W/$1" --json > "$W/$1.jsonl" 2>/dev/null
  python3 - "$W/$1.jsonl" "$1" <<'PY'
import json, statistics, sys
L = [json.loads(l) for l in open(sys.argv[1])]
tr = [l for l in L if "loss" in l and "ms" in l]
va = [l["val_loss"] for l in L if "val_loss" in l]
ms = statistics.median(l["ms"] for l in tr[1:])
print("%-10s steps %d  train loss (mean of last 20) %.4f  val loss %.4f  median %.0f ms/step"
      % (sys.argv[2], len(tr), sum(l["loss"] for l in tr[-20:]) / len(tr[-20:]), va[-1], ms))
PY
}
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), $OMP_NUM_THREADS threads; d6 vocab 4096 T256 B8, $STEPS steps, lr 1e-3 cosine"
run fp32-s1 fp32 1
run bf16-s1 bf16 1
run fp32-s2 fp32 2
