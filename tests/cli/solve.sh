# CLI tests for gptkit solve (issue 15): a tiny chat model SFT'd in seconds on conversations that call the calc
# tool answers with the tool (the call parsed and run, the result fed back, the reply resumed after it) and
# without it answers wrongly; the --json contract (per task and summary, Wilson interval recomputed here); every
# strategy runs; base-model prompting; clear errors on bad task files, strategies and tools; chat --tools.
. "$(dirname "$0")/_lib.sh"
py() { python3 -c "$@"; }
export OMP_NUM_THREADS=1   # tiny models: one thread is faster than two on a loaded machine

# 1. tokenizer + tiny base model + SFT on calc conversations (digits as single tokens: the corpus has none merged)
cat > "$TMP/mk.py" <<'EOF'
import json, random, sys
r = random.Random(5)
probs = [(r.randrange(1000, 99999), r.randrange(1000, 99999)) for _ in range(6)]
with open(sys.argv[1], "w") as f, open(sys.argv[2], "w") as t:
    for a, b in probs:
        q = "What is %d + %d?" % (a, b)
        call = '<|tool_call|>{"name": "calc", "arguments": {"expression": "%d + %d"}}<|tool_call_end|>' % (a, b)
        f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": call},
                                         {"role": "tool", "content": str(a + b)},
                                         {"role": "assistant", "content": "The answer is %d." % (a + b)}]}) + "\n")
        t.write(json.dumps({"prompt": q, "answer": str(a + b)}) + "\n")
with open(sys.argv[3], "w") as c:
    for i in range(40):
        c.write("What is the answer? The answer is the number. Compute the expression and name the arguments.\n")
EOF
python3 "$TMP/mk.py" "$TMP/train.jsonl" "$TMP/tasks.jsonl" "$TMP/corpus.txt"
$GPTKIT tokenizer train --input "$TMP/corpus.txt" --vocab-size 300 --out "$TMP/tok" >/dev/null 2>"$TMP/tok.err" \
  && $GPTKIT tokenize --tokenizer "$TMP/tok" --input "$TMP/corpus.txt" --out-dir "$TMP/shards" --val-fraction 0 >/dev/null 2>&1 \
  && $GPTKIT pretrain --model d2 --n-embd 64 --n-head 4 --vocab-size 300 --n-ctx 128 --data "$TMP/shards/train_*.bin" \
       --tokenizer "$TMP/tok" -b 2 -t 32 --steps 2 --out "$TMP/base" --json >/dev/null 2>"$TMP/base.err" \
  && $GPTKIT sft --init "$TMP/base" --data "$TMP/train.jsonl" -b 6 --steps 300 --lr 3e-3 --warmup 10 --seed 3 \
       --out "$TMP/sft" --json >/dev/null 2>"$TMP/sft.err" \
  && pass solve_tiny_model || fail solve_tiny_model "$(tail -3 "$TMP/tok.err" "$TMP/base.err" "$TMP/sft.err" 2>/dev/null)"

# 2. with calc: every task right, one tool call each, the result inside the reply and text after it
$GPTKIT solve --model "$TMP/sft" --tasks "$TMP/tasks.jsonl" --tools calc --json > "$TMP/tools.jsonl" 2>"$TMP/tools.err"
rc=$?
if [ $rc -eq 0 ] && py "
import json, math, sys
L = [json.loads(l) for l in open('$TMP/tools.jsonl')]
tasks, summ = L[:-1], L[-1]
need = {'prompt', 'answer', 'extracted', 'correct', 'tokens', 'seconds'}
bad = [t for t in tasks if not need <= set(t) or t['tool_calls'] != 1 or not t['correct']
       or '<|tool_result|>%s<|tool_result_end|>' % t['answer'] not in t['reply'] or not t['reply'].endswith('The answer is %s.' % t['answer'])]
k, n = summ['correct'], summ['n']
z = 1.959963984540054; p = k / n
c = (p + z*z/(2*n)) / (1 + z*z/n); h = z*math.sqrt(p*(1-p)/n + z*z/(4*n*n)) / (1 + z*z/n)
ok = not bad and n == 6 and summ['accuracy'] == 1.0 and abs(summ['ci95'][0] - (c - h)) < 1e-9 and abs(summ['ci95'][1] - min(1, c + h)) < 1e-9
print(bad[:1], summ) if not ok else None
sys.exit(0 if ok else 1)"; then pass solve_tools_calc_json_contract; else fail solve_tools_calc_json_contract "rc=$rc $(tail -3 "$TMP/tools.err")"; fi
# without tools the same model cannot know the sums (it never saw them written out without the tool)
$GPTKIT solve --model "$TMP/sft" --tasks "$TMP/tasks.jsonl" --json > "$TMP/notools.jsonl" 2>/dev/null
if py "
import json, sys
s = [json.loads(l) for l in open('$TMP/notools.jsonl')][-1]
sys.exit(0 if s['n'] == 6 and s['accuracy'] < 0.5 else 1)"; then pass solve_without_tools_fails
else fail solve_without_tools_fails "$(tail -1 "$TMP/notools.jsonl")"; fi
# a tool that is unknown to the model's registry: the model's calc call gets an error result, no crash
$GPTKIT solve --model "$TMP/sft" --tasks "$TMP/tasks.jsonl" --tools python --limit 1 --json > "$TMP/py.jsonl" 2>/dev/null
if py "
import json, sys
t = json.loads(open('$TMP/py.jsonl').readline())
sys.exit(0 if 'error: no tool named \"calc\" (available: python)' in t['reply'] else 1)"; then pass solve_unknown_tool_error_result
else fail solve_unknown_tool_error_result "$(head -c 400 "$TMP/py.jsonl")"; fi

# 3. every strategy runs and keeps the contract; plain output ends with the accuracy line
for s in greedy cot fewshot:2 sc:3 tot:2,2,1 reflect:1; do
  out=$($GPTKIT solve --model "$TMP/sft" --tasks "$TMP/tasks.jsonl" --strategy $s --tools calc --limit 2 --json 2>"$TMP/s.err")
  if [ $? -eq 0 ] && printf '%s\n' "$out" | py "
import json, sys
L = [json.loads(l) for l in sys.stdin]
sys.exit(0 if len(L) == 3 and L[-1]['strategy'] == '$s' and L[-1]['n'] == 2 and all(t['tokens'] > 0 for t in L[:-1]) else 1)"
  then pass "solve_strategy_$s"; else fail "solve_strategy_$s" "$out $(tail -2 "$TMP/s.err")"; fi
done
out=$($GPTKIT solve --model "$TMP/sft" --tasks "$TMP/tasks.jsonl" --tools calc --limit 3 2>/dev/null)
printf '%s\n' "$out" | tail -1 | grep -qE '^greedy with tools calc: accuracy 100.0% \(3/3\), 95% interval \[43.9%, 100.0%\]' \
  && pass solve_plain_summary || fail solve_plain_summary "$out"
$GPTKIT solve --model "$TMP/base" --base --tasks "$TMP/tasks.jsonl" --strategy fewshot:2 --limit 2 --json > "$TMP/base.jsonl" 2>/dev/null \
  && [ "$(wc -l < "$TMP/base.jsonl")" -eq 3 ] && pass solve_base_model_fewshot || fail solve_base_model_fewshot
# sc: the agreement is reported
$GPTKIT solve --model "$TMP/sft" --tasks "$TMP/tasks.jsonl" --strategy sc:4 --tools calc --limit 1 --json > "$TMP/sc.jsonl" 2>/dev/null
py "
import json, sys
t = json.loads(open('$TMP/sc.jsonl').readline())
sys.exit(0 if t['confidence'] in (0.25, 0.5, 0.75, 1.0) else 1)" && pass solve_sc_confidence || fail solve_sc_confidence "$(head -1 "$TMP/sc.jsonl")"

# 4. chat --tools shows the call and answers
got=$($GPTKIT chat --model "$TMP/sft" -p "$(py "import json; print(json.loads(open('$TMP/tasks.jsonl').readline())['prompt'])")" --tools calc 2>"$TMP/chat.err")
want=$(py "import json; print('The answer is %s.' % json.loads(open('$TMP/tasks.jsonl').readline())['answer'])")
if [ "$got" = "$want" ] && grep -q '^\[tool\] {"name": "calc"' "$TMP/chat.err"; then pass chat_tools_calc
else fail chat_tools_calc "got '$got' want '$want' $(cat "$TMP/chat.err")"; fi

# 5. bad input: file:line:field, exit 1 (or 2 for usage), never a crash
printf '{"prompt": "a", "answer": "1"}\n{"prompt": "b"}\n' > "$TMP/bad1.jsonl"
expect_fail solve_missing_answer 'bad1.jsonl:2: field "answer" is missing' $GPTKIT solve --model "$TMP/sft" --tasks "$TMP/bad1.jsonl"
printf 'not json\n' > "$TMP/bad2.jsonl"
expect_fail solve_not_json 'bad2.jsonl:1: not a JSON object' $GPTKIT solve --model "$TMP/sft" --tasks "$TMP/bad2.jsonl"
: > "$TMP/empty.jsonl"
expect_fail solve_empty_tasks 'no tasks' $GPTKIT solve --model "$TMP/sft" --tasks "$TMP/empty.jsonl"
expect_fail solve_bad_strategy 'unknown strategy "beam:3"' $GPTKIT solve --model "$TMP/sft" --tasks "$TMP/tasks.jsonl" --strategy beam:3
expect_fail solve_bad_sc 'sc:N: value 1 of 1 must be an integer in 1..256' $GPTKIT solve --model "$TMP/sft" --tasks "$TMP/tasks.jsonl" --strategy sc:0
expect_fail solve_bad_tool 'unknown tool "shell"' $GPTKIT solve --model "$TMP/sft" --tasks "$TMP/tasks.jsonl" --tools calc,shell
expect_fail solve_bad_extract '--extract' $GPTKIT solve --model "$TMP/sft" --tasks "$TMP/tasks.jsonl" --extract fuzzy
expect_fail solve_no_model '--model DIR is required' $GPTKIT solve --tasks "$TMP/tasks.jsonl"
expect_fail solve_missing_file 'nope.jsonl' $GPTKIT solve --model "$TMP/sft" --tasks "$TMP/nope.jsonl"
$GPTKIT solve --help | grep -q 'tot:K,B,D' && pass solve_help || fail solve_help
