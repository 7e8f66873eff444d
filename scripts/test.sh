#!/usr/bin/env bash
# The README's test command: installs every package the build and the tests use (scripts/setup.sh), builds with
# warnings as errors (WERROR=1; a plain `make` stays lenient), runs the whole CPU test suite. Ends with
# "N passed, N failed, N skipped". Needs no PyTorch: fixtures are committed under tests/fixtures/.
#   --asan   then the same suite under AddressSanitizer + UBSan + LeakSanitizer (`make asan`, in build-asan/);
#            CI runs this (.ci/run).
# -Werror only reaches objects it compiles: in a tree already built without it, `make clean` first (CI clones fresh).
set -euo pipefail
cd "$(dirname "$0")/.."
asan=0
for a in "$@"; do
  case $a in --asan) asan=1 ;; *) echo "usage: bash scripts/test.sh [--asan]" >&2; exit 2 ;; esac
done
bash scripts/setup.sh
make -j"$(nproc)" WERROR=1 all
make WERROR=1 test
if [ $asan = 1 ]; then make -j"$(nproc)" WERROR=1 asan; fi
