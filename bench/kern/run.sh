#!/usr/bin/env bash
# bench/kern/run.sh: kernel microbenchmarks, gptkit fast vs gptkit reference vs PyTorch, side by side in one run.
# Builds kbench straight from src/kern and src/core (so it does not depend on the rest of the tree building),
# with the same flags the Makefile uses. OMP_NUM_THREADS=2 and torch.set_num_threads(2) unless overridden.
#   bash bench/kern/run.sh [--no-ref] [--reps N] [--filter S]   (arguments go to kbench; --reps and --filter
#   to the PyTorch side too). Lines: op shape impl median_ms min_ms GFLOP/s.
set -eu
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
OUT=${KBENCH_OUT:-build/bench}
mkdir -p "$OUT"
. bench/build_flags.sh
${CC:-gcc} $CFLAGS bench/kern/kbench.c src/kern/*.c src/kern/cpu/*.c src/core/core.c -o "$OUT/kbench" $LIBS
echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; OMP_NUM_THREADS=$OMP_NUM_THREADS; $(date -u +%F)"
"$OUT/kbench" "$@"
if python3 -c "import torch" 2>/dev/null; then
  targs=(); prev=""
  for a in "$@"; do
    case "$prev" in --reps|--filter) targs+=("$prev" "$a");; esac
    prev=$a
  done
  python3 bench/kern/torch_bench.py --threads "$OMP_NUM_THREADS" "${targs[@]}"
else
  echo "# torch not importable: PyTorch side skipped"
fi
