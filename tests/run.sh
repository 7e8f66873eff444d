#!/usr/bin/env bash
# Runs every test binary (build/tests/test_*) and every CLI test script (tests/cli/*.sh) from the repository
# root, counts PASS/FAIL/SKIP lines, and ends with "N passed, N failed, N skipped". A binary or script that
# crashes or exits non-zero without reporting a FAIL counts as one failure, so a crash can never look like a
# pass; a check that could not run here prints SKIP (with the reason) and is counted as skipped, never passed.
# Also counted as failures: a binary or script that reports no check at all; one still running after
# GK_TEST_TIMEOUT seconds (default 5400: on a 2-core machine shared with five other builds pipeline.sh took 3493 s;
# on a quiet one a few minutes even under ASan, and .ci/run sets 1800). It turns a hang or a quadratic blow-up into
# a FAIL naming the culprit; it is never a timing verdict. And every
# sanitizer report (ASan, LeakSan, UBSan) written while it ran: the reports go to files under a log directory
# (ASAN_OPTIONS/UBSAN_OPTIONS log_path), so one raised inside a CLI script that swallows the program's stderr or
# expects it to fail is still seen.
set -u
BUILD=${1:-build}
cd "$(dirname "$0")/.."
export GK_ROOT=$PWD GPTKIT=$PWD/$BUILD/gptkit
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# MFU needs this CPU's peak; a fixed figure keeps the tests from probing (and from caching a busy machine's)
export GPTKIT_PEAK_GFLOPS=${GPTKIT_PEAK_GFLOPS:-250}
TIMEOUT=${GK_TEST_TIMEOUT:-5400}
SAN_LOG=$(mktemp -d "${TMPDIR:-/tmp}/gptkit-san-XXXXXX")
trap 'rm -rf "$SAN_LOG"' EXIT
# the suite's own per-machine cache (the GEMM library `auto` picks): never the user's, and never shared with
# other processes on the machine, whose probes under load could pick differently between two runs of a test
export XDG_CACHE_HOME=$SAN_LOG/cache
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$SAN_LOG/asan"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:log_path=$SAN_LOG/ubsan"
passed=0; failed=0; skipped=0; failed_names=()
run_one() {   # name, command...
  local name=$1; shift
  local out rc t0 t1
  t0=$(date +%s%N)
  out=$(timeout -k 10 "$TIMEOUT" "$@" 2>&1); rc=$?
  t1=$(date +%s%N)
  printf '%s\n' "$out" | sed 's/^/    /' | grep -E '^    (PASS|FAIL|SKIP|  )' || true
  local p f s
  p=$(printf '%s\n' "$out" | grep -c '^PASS ' || true)
  f=$(printf '%s\n' "$out" | grep -c '^FAIL ' || true)
  s=$(printf '%s\n' "$out" | grep -c '^SKIP ' || true)
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    f=$((f + 1)); printf '    FAIL %s: still running after %ds (GK_TEST_TIMEOUT); last output:\n' "$name" "$TIMEOUT"
    printf '%s\n' "$out" | tail -n 15 | sed 's/^/      /'
  elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1; printf '    FAIL %s: exited with status %d; last output:\n' "$name" "$rc"
    printf '%s\n' "$out" | tail -n 15 | sed 's/^/      /'
  elif [ $((p + f + s)) -eq 0 ]; then
    f=1; printf '    FAIL %s: reported no check; last output:\n' "$name"
    printf '%s\n' "$out" | tail -n 15 | sed 's/^/      /'
  fi
  local r
  for r in "$SAN_LOG"/*; do
    [ -f "$r" ] || continue
    # a finding says ERROR (ASan, LeakSan) or "runtime error" (UBSan); a bare root without llvm-symbolizer
    # also logs "WARNING: Failed to use and restart external symbolizer!", which is not one
    if ! grep -qE 'ERROR|runtime error' "$r"; then rm -f "$r"; continue; fi
    f=$((f + 1)); printf '    FAIL %s: sanitizer report %s:\n' "$name" "$(basename "$r")"
    grep -E 'ERROR|SUMMARY|runtime error|#[0-9] ' "$r" | head -n 25 | sed 's/^/      /'
    rm -f "$r"
  done
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  [ "$f" -gt 0 ] && failed_names+=("$name")
  local ds=$(( (t1 - t0) / 100000000 ))   # tenths of a second (display only)
  printf '%-28s %3d passed %3d failed %3d skipped  (%d.%ds)\n' "$name" "$p" "$f" "$s" $((ds / 10)) $((ds % 10))
}
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  run_one "$(basename "$t")" "$t"
done
for s in tests/cli/[!_]*.sh; do
  [ -f "$s" ] || continue
  run_one "$(basename "$s")" bash "$s"
done
[ ${#failed_names[@]} -gt 0 ] && echo "failing: ${failed_names[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
