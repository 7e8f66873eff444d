#!/usr/bin/env bash
# CLI tests for the global kernel options (--backend, --gemm; docs/kernels.md): accepted by every command,
# anywhere on the line, stripped before the command sees them; they pick what `gptkit --help` reports; unknown
# values and libraries this build lacks fail with a clear message.
source "$(dirname "$0")/_lib.sh"
G=$GPTKIT
cd "$TMP"

backend_line() { "$@" --help 2>/dev/null | sed -n 's/^backend: //p'; }

if $G --help | grep -q -- '--gemm LIB' && $G --help | grep -q -- '--backend cpu|ref'; then pass kern_help_lists_options
else fail kern_help_lists_options "gptkit --help does not document --gemm / --backend"; fi

b=$(backend_line $G --backend ref)
case "$b" in cpu-ref*) pass kern_backend_ref;; *) fail kern_backend_ref "backend line: $b";; esac
b=$(backend_line $G --gemm=builtin)
case "$b" in cpu-fast\(no\ blas*) pass kern_gemm_builtin;; *) fail kern_gemm_builtin "backend line: $b";; esac

# each library: picked when present (the backend line names it), refused with a message when absent
present=$($G --help | sed -n 's/.*present here://p')
for lib in openblas onednn; do
  if printf '%s' "$present" | grep -qw $lib; then
    b=$(backend_line $G --gemm $lib)
    case "$b" in cpu-fast\($lib*) pass kern_gemm_$lib;; *) fail kern_gemm_$lib "backend line: $b";; esac
  else
    expect_fail kern_gemm_${lib}_absent "this build has no $lib" $G --gemm $lib --help
  fi
done

# stripped wherever it stands: after the command and its own options too
if $G data sft --n 3 --seed 1 --gemm builtin --out a.jsonl 2>/dev/null && [ "$(wc -l < a.jsonl)" -eq 3 ]; then
  pass kern_option_after_command
else fail kern_option_after_command "data sft with a trailing --gemm failed"; fi

expect_fail kern_gemm_unknown "--gemm takes auto, openblas, onednn or builtin" $G --gemm mkl data --help
expect_fail kern_gemm_missing_value "--gemm takes" $G data --help --gemm
expect_fail kern_backend_unknown "--backend/--device takes cpu, ref or cuda" $G --backend gpu --help

# auto's pick is measured once per machine and cached (XDG_CACHE_HOME/gptkit/gemm: one "KEY<TAB>LIBRARY" line per
# machine key), so every later process, a resumed run's included, uses the same library; a cached pick is honoured
# as written, and another key's line is neither used nor dropped
mkdir -p cache
b1=$(XDG_CACHE_HOME=$TMP/cache backend_line $G)
if [ -f cache/gptkit/gemm ] && [ "$(wc -l < cache/gptkit/gemm)" -eq 1 ] && grep -q "$(printf '\t')" cache/gptkit/gemm; then
  key=$(cut -f1 cache/gptkit/gemm)
  printf '%s\tbuiltin\n' "$key" > cache/gptkit/gemm
  b2=$(XDG_CACHE_HOME=$TMP/cache backend_line $G)
  # another machine's pick is not used: this one is measured again (which library wins may differ on a busy
  # machine, the reason for the cache) and its line is added beside the other machine's
  printf 'another machine\tbuiltin\n' > cache/gptkit/gemm
  b3=$(XDG_CACHE_HOME=$TMP/cache backend_line $G)
  case "$b2|$b3" in
    "cpu-fast(no blas"*"|cpu-fast(no blas"*) fail kern_auto_pick_cached "another machine's cached pick was used: '$b3'";;
    "cpu-fast(no blas"*)
      if grep -q "^another machine$(printf '\t')builtin\$" cache/gptkit/gemm && cut -f1 cache/gptkit/gemm | grep -qxF "$key"
      then pass kern_auto_pick_cached
      else fail kern_auto_pick_cached "the file does not hold both keys' lines: $(cat cache/gptkit/gemm)"; fi ;;
    *) fail kern_auto_pick_cached "first '$b1', cached builtin '$b2', other key '$b3'";; esac
else fail kern_auto_pick_cached "no one-line cache file after the first process: $(ls -R cache; cat cache/gptkit/gemm 2>/dev/null)"; fi
