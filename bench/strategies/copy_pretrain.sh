#!/usr/bin/env bash
# Does copying form in the demo's pretraining budget? (bench/RESULTS.md, "Strategies and tools", stop 28.)
# Builds corpora of the KJV with copy documents mixed in (or copy documents only), pretrains the demo's model on
# each (`gptkit pipeline --from tokenizer --to pretrain`: 600 steps, 4 x 192), then prints the greedy
# continuation of unseen records after "Again:" etc. Usage: bash bench/strategies/copy_pretrain.sh [build/gptkit]
# Runs: mix-gpt2 (KJV + ~20% copy documents, GPT-2), mix-llama (the same, LLaMA), only-llama (copy documents only).
# About 3 minutes a run on 2 cores; RUNS="mix-gpt2" picks runs.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
G=${1:-$ROOT/build/gptkit}
case $G in /*) ;; *) G=$PWD/$G ;; esac
W=${WORK:-$(mktemp -d)}
echo "work dir: $W"
GK_ROOT=$ROOT "$G" data corpus --out "$W/kjv.txt"
python3 "$ROOT/bench/strategies/copy_docs.py" --kjv "$W/kjv.txt" --copy-bytes 1000000 --out "$W/mix.txt"
python3 "$ROOT/bench/strategies/copy_docs.py" --copy-bytes 4000000 --out "$W/only.txt"
PROMPTS=("Record: 4821 97330512. Again:" "Noted: 696329770 - 9514798. The same:" "Entry: 5968771101 and 78968692. Copied:"
         "Written down: Briwyn Quabrita 1845. Again:" "Keep these: 45591646956 * 601387658548. Repeated:")
for run in ${RUNS:-mix-gpt2 mix-llama only-llama}; do
  R=$W/$run
  printf 'run_dir = %s\nmodel.arch = %s\n' "$R" "${run#*-}" > "$R.conf"
  # the corpus stage runs (and is recorded as done), then its output is replaced and everything after it redone
  GK_ROOT=$ROOT "$G" pipeline "$R.conf" --to corpus > "$R.log" 2>&1
  case $run in mix-*) cp "$W/mix.txt" "$R/corpus.txt" ;; *) cp "$W/only.txt" "$R/corpus.txt" ;; esac
  GK_ROOT=$ROOT "$G" pipeline "$R.conf" --from tokenizer --to pretrain >> "$R.log" 2>&1
  echo "== $run: $(grep 'val loss' "$R.log" | tail -1)"
  for p in "${PROMPTS[@]}"; do
    printf '  %s ->%s\n' "$p" "$("$G" sample --model "$R/base" --prompt "$p" --temperature 0 --max-new 16 -q | head -1)"
  done
done
