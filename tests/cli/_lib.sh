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
