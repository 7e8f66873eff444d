# Helpers for CLI test scripts (sourced). Each check prints PASS/FAIL name like the C tests.
: "${GPTKIT:?set by tests/run.sh}"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gptkit-cli-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1"; shift; [ $# -gt 0 ] && echo "  $*"; }
skip() { echo "SKIP $1: ${2:-skipped}"; }   # a check that cannot run here (counted as skipped, never passed)
# expect_fail NAME PATTERN CMD...: CMD must exit non-zero, not crash (status < 128), and print PATTERN on stderr
expect_fail() {
  local name=$1 pat=$2; shift 2
  local err rc
  err=$("$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -eq 0 ]; then fail "$name" "expected failure, got success"
  elif [ $rc -ge 128 ]; then fail "$name" "crashed with status $rc: $err"
  elif ! printf '%s' "$err" | grep -qE -- "$pat"; then fail "$name" "message did not match /$pat/: $err"
  else pass "$name"; fi
}
# seeded_bytes SEED N: N pseudo-random bytes on stdout, the same for the same SEED on every machine (Python's
# Mersenne Twister), so a failing input can be regenerated from the seed the check names.
seeded_bytes() {
  python3 -c 'import random, sys; r = random.Random(int(sys.argv[1])); sys.stdout.buffer.write(bytes(r.getrandbits(8) for _ in range(int(sys.argv[2]))))' "$1" "$2"
}
# Ctrl-C tests without races or sleeps. start_ready PATTERN OUT ERR CMD... starts CMD in the background, its
# stdout through a pipe and copied to OUT, stderr to ERR, and returns once CMD has printed a line matching
# PATTERN (or has ended without one). The training commands print their first step line only after installing
# their SIGINT handler, so a signal sent then cannot arrive before the handler (async commands of a
# non-interactive shell start with SIGINT ignored; before the handler, Ctrl-C would be lost). READY=1 if the
# line came. interrupt_ready then sends SIGINT, copies the rest of the output to OUT and returns CMD's exit status.
# A program that hangs without printing PATTERN hangs the script: tests/run.sh's time limit reports it as a FAIL.
start_ready() {
  local pat=$1 line fifo
  READY_OUT=$2; READY=0
  fifo=$(mktemp -u "$TMP/ready-XXXXXX"); mkfifo "$fifo"
  "${@:4}" > "$fifo" 2> "$3" &
  READY_PID=$!
  exec {READY_FD}< "$fifo"
  rm -f "$fifo"
  : > "$READY_OUT"
  while IFS= read -r line <&"$READY_FD"; do
    printf '%s\n' "$line" >> "$READY_OUT"
    if printf '%s\n' "$line" | grep -qE -- "$pat"; then READY=1; break; fi
  done
}
interrupt_ready() {
  local rc
  kill -INT "$READY_PID" 2>/dev/null
  cat <&"$READY_FD" >> "$READY_OUT"   # keep reading: a writer blocked on a full pipe would never exit
  exec {READY_FD}<&-
  wait "$READY_PID"; rc=$?
  return $rc
}
# The test venv's python (scripts/setup.sh, tests/requirements.txt); plain python3 when there is none.
PYT=python3
[ -x "$GK_ROOT/.venv-test/bin/python" ] && PYT=$GK_ROOT/.venv-test/bin/python
# need_py NAME MODULE...: true when PYT imports every MODULE; otherwise prints SKIP NAME (naming the missing
# module) and returns 1, so a check reads: need_py openai-client openai && { ...; }
need_py() {
  local name=$1 m; shift
  for m in "$@"; do
    "$PYT" -c "import $m" 2>/dev/null || { skip "$name" "python module $m not installed (tests/requirements.txt; PyPI unreachable?)"; return 1; }
  done
}
