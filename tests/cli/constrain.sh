# CLI tests for constrained output (issue 17): a tiny random model on the GPT-2 vocabulary (50257 tokens, the
# model padded to 50304) and on cl100k's (100277) samples at temperature 1 under a JSON Schema, a GBNF grammar
# and a regex, many seeds and samples each; every output is checked by an independent checker (Python's json
# and, when installed, jsonschema; Python's re for the grammar and the regex). Also: chat and solve take the
# flags; clear errors for a bad grammar (line and column), an unsupported schema keyword, two constraints.
. "$(dirname "$0")/_lib.sh"
export OMP_NUM_THREADS=1
V=$GK_ROOT/data/vocab

cat > "$TMP/schema.json" <<'EOF'
{"type": "object",
 "properties": {"name": {"type": "string", "maxLength": 8},
                "age": {"type": "integer", "minimum": 0, "maximum": 120},
                "tags": {"type": "array", "items": {"enum": ["red", "green", 7]}, "maxItems": 3},
                "pet": {"$ref": "#/$defs/pet"},
                "score": {"type": "number"}},
 "required": ["name", "age"], "additionalProperties": false,
 "$defs": {"pet": {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"kind": {"const": "cat"}, "legs": {"type": "integer"}},
                                                "required": ["kind"], "additionalProperties": false}]}}}
EOF
# a grammar whose language is regular, so Python's re checks it independently
cat > "$TMP/date.gbnf" <<'EOF'
# a date, a weekday and an optional note
root    ::= date " (" weekday ")" note?
date    ::= year "-" month "-" day
year    ::= "19" [0-9] [0-9] | "20" [0-2] [0-9]
month   ::= "0" [1-9] | "1" [0-2]
day     ::= "0" [1-9] | [12] [0-9] | "3" [01]
weekday ::= "Mon" | "Tue" | "Wed" | "Thu" | "Fri" | "Sat" | "Sun"
note    ::= ": " [a-zé ]{1,10} "."
EOF
DATE_RE='(19[0-9][0-9]|20[0-2][0-9])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]) \((Mon|Tue|Wed|Thu|Fri|Sat|Sun)\)(: [a-zé ]{1,10}\.)?'
REGEX='(yes|no), [0-9]{1,4}( [a-z]+){0,3}'

for vocab in r50k_base cl100k_base; do
  case $vocab in r50k_base) VS=50304 ;; *) VS=100352 ;; esac
  M=$TMP/m-$vocab
  for i in $(seq 20); do echo "The quick brown fox {\"a\": 1, \"b\": [true, null]} jumps over the lazy dog."; done > "$TMP/corpus.txt"
  if $GPTKIT tokenize --tokenizer "$V/$vocab.tiktoken" --input "$TMP/corpus.txt" --out-dir "$TMP/sh-$vocab" --val-fraction 0 >/dev/null 2>"$TMP/m.err" \
     && $GPTKIT pretrain --model d2 --n-embd 32 --n-head 2 --vocab-size $VS --n-ctx 256 --data "$TMP/sh-$vocab/train_*.bin" \
          --tokenizer "$V/$vocab.tiktoken" -b 2 -t 32 --steps 1 --out "$M" --json >/dev/null 2>>"$TMP/m.err"; then
    pass constrain_tiny_model_$vocab
  else fail constrain_tiny_model_$vocab "$(tail -3 "$TMP/m.err")"; continue; fi

  # JSON Schema: 3 seeds x 8 samples at temperature 1; max-new small enough that the budget rule is exercised
  : > "$TMP/s-$vocab.jsonl"; rc=0
  for seed in 1 2 3; do
    $GPTKIT sample --model "$M" --prompt "Person:" --json-schema "$TMP/schema.json" --temperature 1 --seed $seed \
      --num-samples 8 --max-new 60 --json >> "$TMP/s-$vocab.jsonl" 2>"$TMP/s.err" || rc=$?
  done
  check_json='
import json, sys
bad = []
for l in open(sys.argv[1]):
    j = json.loads(l)
    try:
        o = json.loads(j["text"])
        ok = isinstance(o, dict) and set(o) <= {"name", "age", "tags", "pet", "score"} and isinstance(o["name"], str) and len(o["name"]) <= 8 \
             and type(o["age"]) is int and 0 <= o["age"] <= 120
    except Exception as ex:
        ok = False
    if not ok: bad.append(j["text"])
n = sum(1 for _ in open(sys.argv[1]))
print(n, bad[:2]) if bad or n != 24 else None
sys.exit(1 if bad or n != 24 else 0)'
  if [ $rc -eq 0 ] && python3 -c "$check_json" "$TMP/s-$vocab.jsonl"; then pass constrain_schema_samples_parse_$vocab
  else fail constrain_schema_samples_parse_$vocab "rc=$rc $(tail -2 "$TMP/s.err")"; fi
  need_py constrain_schema_jsonschema_$vocab jsonschema && {
    if "$PYT" -c '
import json, sys, jsonschema
s = json.load(open(sys.argv[1]))
bad = [l for l in open(sys.argv[2]) if list(jsonschema.Draft202012Validator(s).iter_errors(json.loads(json.loads(l)["text"])))]
print(bad[:2]) if bad else None
sys.exit(1 if bad else 0)' "$TMP/schema.json" "$TMP/s-$vocab.jsonl"; then pass constrain_schema_jsonschema_$vocab
    else fail constrain_schema_jsonschema_$vocab; fi; }

  # GBNF grammar and regex: each output must fully match the equivalent Python regex
  : > "$TMP/g-$vocab.jsonl"; : > "$TMP/r-$vocab.jsonl"; rc=0
  for seed in 1 2; do
    $GPTKIT sample --model "$M" --prompt "Date:" --grammar "$TMP/date.gbnf" --temperature 1 --seed $seed --num-samples 8 \
      --max-new 40 --json >> "$TMP/g-$vocab.jsonl" 2>"$TMP/g.err" || rc=$?
    $GPTKIT sample --model "$M" --prompt "Answer:" --regex "$REGEX" --temperature 1.5 --seed $seed --num-samples 8 \
      --max-new 40 --json >> "$TMP/r-$vocab.jsonl" 2>>"$TMP/g.err" || rc=$?
  done
  check_re='
import json, re, sys
pat = re.compile(sys.argv[2])
L = [json.loads(l)["text"] for l in open(sys.argv[1])]
bad = [t for t in L if not pat.fullmatch(t)]
print(len(L), bad[:3]) if bad or len(L) != 16 else None
sys.exit(1 if bad or len(L) != 16 else 0)'
  if [ $rc -eq 0 ] && python3 -c "$check_re" "$TMP/g-$vocab.jsonl" "$DATE_RE"; then pass constrain_grammar_samples_match_$vocab
  else fail constrain_grammar_samples_match_$vocab "rc=$rc $(tail -2 "$TMP/g.err")"; fi
  if [ $rc -eq 0 ] && python3 -c "$check_re" "$TMP/r-$vocab.jsonl" "$REGEX"; then pass constrain_regex_samples_match_$vocab
  else fail constrain_regex_samples_match_$vocab "rc=$rc"; fi
done

M=$TMP/m-r50k_base
# chat and solve take the flags
out=$($GPTKIT chat --model "$M" -p "hi" --json-object --max-new 40 2>"$TMP/c.err")
if printf '%s' "$out" | python3 -c 'import json, sys; o = json.loads(sys.stdin.read()); sys.exit(0 if isinstance(o, dict) else 1)'; then
  pass constrain_chat_json_object; else fail constrain_chat_json_object "$out $(tail -2 "$TMP/c.err")"; fi
printf '{"prompt":"What is 2+2?","answer":"4"}\n{"prompt":"What is 3+5?","answer":"8"}\n' > "$TMP/tasks.jsonl"
if $GPTKIT solve --model "$M" --base --tasks "$TMP/tasks.jsonl" --regex '[0-9]{1,3}' --json 2>/dev/null | python3 -c '
import json, re, sys
L = [json.loads(l) for l in sys.stdin][:-1]
sys.exit(0 if len(L) == 2 and all(re.fullmatch("[0-9]{1,3}", t["reply"].strip()) for t in L) else 1)'; then
  pass constrain_solve_regex; else fail constrain_solve_regex; fi

# errors
printf 'root ::= "a" b\nb ::= [a-\n' > "$TMP/bad.gbnf"
expect_fail constrain_bad_grammar_line_col "bad.gbnf: grammar line 2, column" $GPTKIT sample --model "$M" --prompt x --grammar "$TMP/bad.gbnf"
printf '{"type":"array","uniqueItems":true}' > "$TMP/bad.json"
expect_fail constrain_bad_schema_names_keyword "uniqueItems: true is not supported" $GPTKIT sample --model "$M" --prompt x --json-schema "$TMP/bad.json"
expect_fail constrain_bad_regex "regex at offset 2" $GPTKIT sample --model "$M" --prompt x --regex 'ab)'
expect_fail constrain_two_constraints "at most one of" $GPTKIT sample --model "$M" --prompt x --regex a --json-object
expect_fail constrain_missing_grammar_file "nope.gbnf" $GPTKIT sample --model "$M" --prompt x --grammar "$TMP/nope.gbnf"
