#!/usr/bin/env bash
# CLI tests for `gptkit data`: generation round trips, determinism, stdout output, corpus extraction,
# the answer checker, and clear errors for bad arguments.
source "$(dirname "$0")/_lib.sh"
G=$GPTKIT
cd "$TMP"

# ---- help
if $G data --help | grep -q 'prefs' && $G data --help | grep -q 'corpus'; then pass data_help; else fail data_help; fi
ok=1
for k in sft prefs prompts eval corpus check; do
  out=$($G data $k --help) || ok=0
  printf '%s' "$out" | grep -q "usage: gptkit data $k" || ok=0
done
[ $ok = 1 ] && pass data_kind_help || fail data_kind_help "a kind's --help failed or lacks its usage line"

# ---- generation: line counts, shapes, same seed -> same bytes, other seed -> other bytes, '-' = the file
gen_ok() {   # kind, first-line prefix
  local k=$1 want=$2
  $G data $k --n 50 --seed 3 --out a.jsonl 2>/dev/null || { fail "data_${k}_roundtrip" "exit status $?"; return; }
  $G data $k --n 50 --seed 3 --out b.jsonl 2>/dev/null
  $G data $k --n 50 --seed 4 --out c.jsonl 2>/dev/null
  $G data $k --n 50 --seed 3 --out - > d.jsonl 2>/dev/null
  local n; n=$(wc -l < a.jsonl)
  if [ "$n" -ne 50 ]; then fail "data_${k}_roundtrip" "$n lines, want 50"
  elif [ "$(grep -c "^$want" a.jsonl)" -ne 50 ]; then fail "data_${k}_roundtrip" "lines not shaped $want: $(head -n1 a.jsonl)"
  elif ! cmp -s a.jsonl b.jsonl; then fail "data_${k}_roundtrip" "same seed, different bytes"
  elif cmp -s a.jsonl c.jsonl; then fail "data_${k}_roundtrip" "seeds 3 and 4 gave the same file"
  elif ! cmp -s a.jsonl d.jsonl; then fail "data_${k}_roundtrip" "--out - differs from the file"
  else pass "data_${k}_roundtrip"; fi
}
gen_ok sft '{"messages":\[{"role":"\(system\|user\)"'
gen_ok prefs '{"prompt":.*"\(chosen\|ranked\)":'
gen_ok prompts '{"prompt":'
gen_ok eval '{"prompt":.*"answer":".*","skill":"\(arith\|fact\|format\|style\)","check":"\(number\|contains\|upper\|exact\|json\)"'

# prefs: both pairs and rankings appear; sft: options change the output
$G data prefs --n 200 --out p.jsonl 2>/dev/null
if grep -q '"rejected"' p.jsonl && grep -q '"ranked"' p.jsonl; then pass data_prefs_mix; else fail data_prefs_mix; fi
$G data prefs --n 200 --rank 0 --out p0.jsonl 2>/dev/null
if ! grep -q '"ranked"' p0.jsonl; then pass data_prefs_rank0; else fail data_prefs_rank0 "--rank 0 still wrote rankings"; fi
# prefs --drop: content contrasts ("The capital of France is." / {"answer": ""} / a filler alone lose to a reply with
# the answer); --drop 0 is the default file byte for byte
$G data prefs --n 300 --drop 1 --rank 0 --out pd.jsonl 2>/dev/null
$G data prefs --n 300 --drop 0 --out pd0.jsonl 2>/dev/null
$G data prefs --n 300 --out pdd.jsonl 2>/dev/null
if [ "$(grep -c '"rejected":"\(The answer is\.\?\|THE ANSWER IS\.\?\|{\\"answer\\": \\"\\"}\)"}$' pd.jsonl)" -gt 20 ] \
   && ! grep -q '"rejected":"The answer is\.\?"' p.jsonl && cmp -s pd0.jsonl pdd.jsonl; then
  pass data_prefs_drop_option
else fail data_prefs_drop_option "$(head -n 2 pd.jsonl)"; fi
if ! $G data prefs --n 5 --drop 1.5 --out - >/dev/null 2>err.txt && grep -q -- '--drop' err.txt; then pass data_prefs_drop_range
else fail data_prefs_drop_range "$(cat err.txt)"; fi
$G data sft --n 300 --ramble 0 --multi 0 --out s0.jsonl 2>/dev/null
$G data sft --n 300 --out s1.jsonl 2>/dev/null
if ! grep -q 'I hope this helps\|Let me know if\|Thank you for asking\|Feel free to ask\|always happy to help\|fun one to work out' s0.jsonl \
   && grep -q 'I hope this helps\|Let me know if\|Thank you for asking\|Feel free to ask\|always happy to help\|fun one to work out' s1.jsonl; then
  pass data_sft_ramble_option
else fail data_sft_ramble_option; fi
if [ "$(grep -c '"role":"assistant".*"role":"assistant"' s0.jsonl)" -eq 0 ] && [ "$(grep -c '"role":"assistant".*"role":"assistant"' s1.jsonl)" -gt 0 ]; then
  pass data_sft_multi_option
else fail data_sft_multi_option; fi

# held out: no eval prompt appears among the training prompts
$G data eval --n 300 --out e.jsonl 2>/dev/null
$G data prompts --n 2000 --out r.jsonl 2>/dev/null
sed 's/,"answer":.*//' e.jsonl | sort -u > eval_prompts
sed 's/}$//' r.jsonl | sort -u > rl_prompts
if [ "$(comm -12 eval_prompts rl_prompts | wc -l)" -eq 0 ] && [ "$(wc -l < eval_prompts)" -eq 300 ]; then pass data_eval_held_out
else fail data_eval_held_out "$(comm -12 eval_prompts rl_prompts | head -n 3)"; fi

# ---- corpus
if $G data corpus --out kjv.txt 2>/dev/null && cmp -s kjv.txt <(gzip -dc "$GK_ROOT/data/corpus/kjv.txt.gz") \
   && [ "$(wc -l < kjv.txt)" -eq 31102 ]; then pass data_corpus_extract; else fail data_corpus_extract; fi
# found next to the binary when run from elsewhere without GK_ROOT
if (cd / && env -u GK_ROOT "$G" data corpus --out "$TMP/kjv2.txt" 2>/dev/null) && cmp -s kjv.txt kjv2.txt; then
  pass data_corpus_locate; else fail data_corpus_locate; fi
printf 'plain text\n' > notgz.gz
expect_fail data_corpus_not_gzip 'not a gzip file' $G data corpus --from notgz.gz --out x.txt
head -c 100000 "$GK_ROOT/data/corpus/kjv.txt.gz" > trunc.gz
expect_fail data_corpus_truncated 'trunc.gz' $G data corpus --from trunc.gz --out x.txt
if [ ! -e x.txt ]; then pass data_corpus_no_partial_output; else fail data_corpus_no_partial_output; fi
expect_fail data_corpus_missing 'nonexistent' $G data corpus --from /nonexistent/kjv.txt.gz --out x.txt

# ---- check
if [ "$($G data check --check number --expected 432 --response 'The answer is 432.' 2>/dev/null)" = 1 ]; then pass data_check_right; else fail data_check_right; fi
out=$($G data check --check json --expected Lima --response '{"answer": "Rome"}' 2>/dev/null); rc=$?
if [ "$out" = 0 ] && [ $rc -eq 1 ]; then pass data_check_wrong; else fail data_check_wrong "out=$out rc=$rc"; fi
if $G data check --check upper --expected Lima --response 'SURE! THE CAPITAL OF PERU IS LIMA.' 2>&1 >/dev/null | grep -q 'correct=1 follows_format=1 concise=0 score=6'; then
  pass data_check_verdict; else fail data_check_verdict; fi

# ---- errors
expect_fail data_no_kind 'usage' $G data
expect_fail data_unknown_kind "unknown kind 'bogus'" $G data bogus
expect_fail data_missing_out '--out FILE is required' $G data sft --n 5
expect_fail data_bad_n '--n needs an integer' $G data sft --n abc --out x.jsonl
expect_fail data_zero_n '--n must be in 1' $G data eval --n 0 --out x.jsonl
expect_fail data_negative_seed '--seed must be a non-negative' $G data prompts --seed -3 --out x.jsonl
expect_fail data_unknown_option "unknown option '--temperature'" $G data sft --temperature 1 --out x.jsonl
expect_fail data_option_of_other_kind "unknown option '--rank'" $G data sft --rank 0.5 --out x.jsonl
expect_fail data_bad_fraction '--ramble must be in \[0, 1\]' $G data sft --ramble 1.5 --out x.jsonl
expect_fail data_unwritable 'nonexistent-dir' $G data eval --out /nonexistent-dir/e.jsonl
expect_fail data_check_unknown "unknown check 'fuzzy'" $G data check --check fuzzy --expected a --response a
expect_fail data_check_missing 'all required' $G data check --check exact --expected a
