#!/usr/bin/env bash
# Issue 11's "no speed lost" rows: an older tree's binary (OLD_TREE, built) and this tree's, each side by side
# with PyTorch in the same invocation, one after the other; raw output in bench/out/found-*.txt.
#   bash bench/foundations.sh OLD_TREE      (e.g. a clone of the commit before the change, after `make`)
set -u
OLD=${1:?usage: bash bench/foundations.sh OLD_TREE}
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p bench/out
echo "# $(date -u) load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 bench/train_bench.py --gptkit "$OLD/build/gptkit" --configs a,b --steps 5 > bench/out/found-train-old.txt 2>&1
python3 bench/train_bench.py --gptkit build/gptkit --configs a,b --steps 5 > bench/out/found-train-new.txt 2>&1
(cd "$OLD" && EBENCH_OUT=/tmp/eb-old bash bench/engine/run.sh d12 d6) > bench/out/found-engine-old.txt 2>&1
EBENCH_OUT=build/bench bash bench/engine/run.sh d12 d6 > bench/out/found-engine-new.txt 2>&1
echo "# done $(date -u) load $(cut -d' ' -f1-3 /proc/loadavg)"
