#!/usr/bin/env bash
# The README's demo command: install deps, build, run the built-in pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
make -j"$(nproc)" build/gptkit
./build/gptkit pipeline "$@"
