#!/usr/bin/env bash
# Fuzzers in the suite: each libFuzzer harness in tests/fuzz runs for FUZZ_SECONDS (default 10) under
# ASan/UBSan, starting from its seeds: the hand-written ones committed in tests/fuzz/corpus/NAME and those
# tests/fuzz/make_corpus.py generates from the fixtures into a temporary directory (binary files stay out of
# git); new inputs go to a temporary directory, so the repository is not written; after replaying every past
# crash in tests/fuzz/regress/NAME.
# A crash, leak or sanitizer report fails the check and leaves the input under $FUZZ_ARTIFACTS (default: the
# temporary directory, printed). Skipped (never passed) where clang's libFuzzer is not installed.
. "$(dirname "$0")/_lib.sh"
ROOT=${GK_ROOT:-$PWD}
SECS=${FUZZ_SECONDS:-10}
# a fixed seed makes the suite's fuzzing the same from run to run (a failure replays exactly);
# FUZZ_SEED=0 lets libFuzzer pick one, for longer exploratory runs
SEED=${FUZZ_SEED:-1}
case $GPTKIT in */build-asan/*)   # the harnesses are ASan/UBSan builds already: once per suite is enough
  skip fuzzers "run by the plain suite (the harnesses are sanitizer builds themselves)"; exit 0 ;; esac
if ! command -v clang >/dev/null || ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n){return 0;}' |
     clang -x c - -fsanitize=fuzzer -o "$TMP/probe" 2>/dev/null; then
  skip fuzzers "clang with libFuzzer not installed (scripts/setup.sh installs clang)"; exit 0
fi
if ! make -s -C "$ROOT" fuzz >"$TMP/build.log" 2>&1; then
  fail fuzz_build "$(tail -20 "$TMP/build.log")"; exit 0
fi
ART=${FUZZ_ARTIFACTS:-$TMP/artifacts}; mkdir -p "$ART"
if ! python3 "$ROOT/tests/fuzz/make_corpus.py" "$TMP/seeds" >"$TMP/seeds.log" 2>&1; then
  fail fuzz_seeds "$(tail -5 "$TMP/seeds.log")"; exit 0
fi
for bin in "$ROOT"/build-fuzz/fuzz/fuzz_*; do
  case $bin in *.d) continue ;; esac
  name=$(basename "$bin"); short=${name#fuzz_}
  regress=("$ROOT/tests/fuzz/regress/$short"/*)
  if [ -e "${regress[0]}" ]; then
    if "$bin" -runs=1 "${regress[@]}" >"$TMP/$name.regress.log" 2>&1; then pass "${name}_regressions"
    else fail "${name}_regressions" "$(grep -m3 -E 'ERROR|runtime error' "$TMP/$name.regress.log")"; fi
  fi
  mkdir -p "$TMP/corpus-$short"
  seeds=()
  for d in "$ROOT/tests/fuzz/corpus/$short" "$TMP/seeds/$short"; do [ -d "$d" ] && seeds+=("$d"); done
  if TMPDIR="$TMP" "$bin" "$TMP/corpus-$short" "${seeds[@]}" -max_total_time="$SECS" -seed="$SEED" \
       -max_len=65536 -rss_limit_mb=2048 -timeout=20 -artifact_prefix="$ART/$short-" -print_final_stats=1 \
       >"$TMP/$name.log" 2>&1; then
    pass "$name ($(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$TMP/$name.log" | grep -o '[0-9]*$') runs in ${SECS}s)"
  else
    fail "$name" "$(grep -m3 -E 'ERROR|runtime error|SUMMARY' "$TMP/$name.log"); input kept in $ART (copy it to tests/fuzz/regress/$short/)"
    [ -z "${FUZZ_ARTIFACTS:-}" ] && trap - EXIT   # keep the temporary directory with the crashing input
  fi
done
