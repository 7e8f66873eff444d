#!/usr/bin/env bash
# Installs every Debian/Ubuntu package the build, the tests and the demo use (idempotent; needs root or sudo).
# Checked on a bare Debian 12 root (debootstrap --variant=minbase, docs/NOTES.md): everything else the tests
# call (bash, coreutils incl. timeout/mkfifo/od, diffutils' cmp, grep, sed, gzip, findutils) is essential there.
#   build-essential pkg-config   the C build (gcc, make, libgomp and the sanitizer runtimes of `make asan`)
#   libcjson-dev zlib1g-dev      required libraries
#   libopenblas-dev libdnnl-dev libpcre2-dev   optional fast paths / custom regexes (the tests cover them)
#   python3                      the CLI tests parse JSON and make inputs with its standard library only
#   clang libclang-rt-14-dev     libFuzzer for the fuzzers in tests/fuzz (tests/cli/fuzz.sh skips without them)
set -euo pipefail
PKGS="build-essential pkg-config libcjson-dev zlib1g-dev libopenblas-dev libdnnl-dev libpcre2-dev python3 clang libclang-rt-14-dev"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup.sh: need root (or sudo) to install:$missing" >&2; exit 1; }
  SUDO=sudo
fi
echo "installing:$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
