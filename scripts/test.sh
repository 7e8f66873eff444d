#!/usr/bin/env bash
# The README's test command: install build deps, build warning-free, run the whole CPU test suite.
# Ends with "N passed, N failed". Needs no PyTorch: fixtures are committed under tests/fixtures/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
make -j"$(nproc)" all
make test
