#!/usr/bin/env bash
# Reproduces bench/tok/RESULTS.md: builds, then runs bench/tok/bench.py (needs tiktoken, tokenizers,
# sentencepiece from PyPI). Output JSON goes to bench/out/tok/results.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
make -j2 build/gptkit >/dev/null
mkdir -p bench/out/tok
python3 bench/tok/bench.py --gptkit "${GPTKIT:-build/gptkit}" "$@" | tee bench/out/tok/results.json
