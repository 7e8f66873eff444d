#!/usr/bin/env bash
# bench/engine/run.sh: inference engine, gptkit vs HF transformers (PyTorch), side by side in one run.
# Builds ebench from src/{core,kern,model,tok,infer} with the Makefile's flags; OMP_NUM_THREADS=2 and
# torch.set_num_threads(2) unless overridden.   bash bench/engine/run.sh [d6 d12]
set -eu
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
OUT=${EBENCH_OUT:-build/bench}
mkdir -p "$OUT"
. bench/build_flags.sh
LIBS="$LIBS -lcjson -lz"
${CC:-gcc} $CFLAGS bench/engine/ebench.c src/core/*.c src/kern/*.c src/kern/cpu/*.c src/model/*.c src/tok/*.c \
  src/infer/*.c -o "$OUT/ebench" $LIBS
echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; OMP_NUM_THREADS=$OMP_NUM_THREADS; $(date -u +%F); load average: $(cut -d" " -f1-3 /proc/loadavg)"
[ -n "${EBENCH_BUILD_ONLY:-}" ] && exit 0
for m in ${@:-d6 d12}; do
  echo "## $m"
  "$OUT/ebench" --model "$m"
  if python3 -c "import torch, transformers" 2>/dev/null; then
    python3 bench/engine/torch_engine.py --model "$m" --threads "$OMP_NUM_THREADS"
  else
    echo "# torch/transformers not importable: PyTorch side skipped"
  fi
done
