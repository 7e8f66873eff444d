#!/usr/bin/env bash
# Runs every test binary (build/tests/test_*) and every CLI test script (tests/cli/*.sh) from the repository
# root, counts PASS/FAIL/SKIP lines, and ends with "N passed, N failed, N skipped". A binary or script that
# crashes or exits non-zero without reporting a FAIL counts as one failure, so a crash can never look like a
# pass; a check that could not run here prints SKIP (with the reason) and is counted as skipped, never passed.
set -u
BUILD=${1:-build}
cd "$(dirname "$0")/.."
export GK_ROOT=$PWD GPTKIT=$PWD/$BUILD/gptkit
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# MFU needs this CPU's peak; a fixed figure keeps the tests from probing (and from caching a busy machine's)
export GPTKIT_PEAK_GFLOPS=${GPTKIT_PEAK_GFLOPS:-250}
passed=0; failed=0; skipped=0; failed_names=()
run_one() {   # name, command...
  local name=$1; shift
  local out rc t0 t1
  t0=$(date +%s.%N)
  out=$("$@" 2>&1); rc=$?
  t1=$(date +%s.%N)
  printf '%s\n' "$out" | sed 's/^/    /' | grep -E '^    (PASS|FAIL|SKIP|  )' || true
  local p f s
  p=$(printf '%s\n' "$out" | grep -c '^PASS ' || true)
  f=$(printf '%s\n' "$out" | grep -c '^FAIL ' || true)
  s=$(printf '%s\n' "$out" | grep -c '^SKIP ' || true)
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1; printf '    FAIL %s: exited with status %d; last output:\n' "$name" "$rc"
    printf '%s\n' "$out" | tail -n 15 | sed 's/^/      /'
  fi
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  [ "$f" -gt 0 ] && failed_names+=("$name")
  printf '%-28s %3d passed %3d failed %3d skipped  (%.1fs)\n' "$name" "$p" "$f" "$s" "$(echo "$t1 - $t0" | bc)"
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
