#!/usr/bin/env bash
# Installs every Debian/Ubuntu package the build, the tests and the demo use (idempotent; needs root or sudo).
# Checked on a bare Debian 12 root (debootstrap --variant=minbase, docs/NOTES.md): everything else the tests
# call (bash, coreutils incl. timeout/mkfifo/od, diffutils' cmp, grep, sed, gzip, findutils) is essential there.
#   build-essential pkg-config   the C build (gcc, make, libgomp and the sanitizer runtimes of `make asan`)
#   libcjson-dev zlib1g-dev      required libraries
#   libopenblas-dev libdnnl-dev libpcre2-dev   optional fast paths / custom regexes (the tests cover them)
#   python3                      the CLI tests parse JSON and make inputs with its standard library only
#   clang libclang-rt-14-dev     libFuzzer for the fuzzers in tests/fuzz (tests/cli/fuzz.sh skips without them)
#   python3-venv                 the test venv .venv-test: the ecosystem's own readers and clients the tests check
#                                gptkit against (tests/requirements.txt, from PyPI; never used by gptkit itself).
#                                Without PyPI the venv is left incomplete and the checks needing it print SKIP.
#   libmicrohttpd-dev            HTTP for `gptkit serve` (optional: without it the build has no serve command)
#   chromium chromium-driver     the serve web page's test in headless Chromium (skips without them)
#   libgmp-dev                   exact big-number arithmetic of the `calc` tool (optional: calc says it is missing)
#   libsqlite3-dev               the retrieval index (src/index): documents, chunks, FTS5 BM25 and vectors in one file
#   libopenmpi-dev openmpi-bin   data-parallel training under mpirun (optional: without it src/dist is one rank)
set -euo pipefail
PKGS="build-essential pkg-config libcjson-dev zlib1g-dev libopenblas-dev libdnnl-dev libpcre2-dev python3 python3-venv clang libclang-rt-14-dev libmicrohttpd-dev chromium chromium-driver libgmp-dev libsqlite3-dev libopenmpi-dev openmpi-bin"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup.sh: need root (or sudo) to install:$missing" >&2; exit 1; }
    SUDO=sudo
  fi
  echo "installing:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
# The test venv (tests/requirements.txt). Rebuilt only when the requirements change (a stamp holds their hash).
cd "$(dirname "$0")/.."
req=tests/requirements.txt
want=$(sha256sum "$req" | cut -c1-16)
if [ "$(cat .venv-test/.stamp 2>/dev/null)" != "$want" ]; then
  rm -rf .venv-test
  python3 -m venv .venv-test
  if .venv-test/bin/pip install -q --disable-pip-version-check -r "$req"; then
    echo "$want" > .venv-test/.stamp
  else
    echo "setup.sh: could not install the test venv's packages from PyPI ($req); the checks that need them will SKIP" >&2
  fi
fi
