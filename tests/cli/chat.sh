# CLI tests for gptkit sample / sft / chat: greedy decoding equals HF transformers' (committed fixture,
# tests/ref/gen_greedy_fixture.py); SFT on ~20 conversations makes `chat -p` answer with the trained replies;
# held-out loss, metrics, exact resume, Ctrl-C; interactive chat commands; clear errors on bad input.
. "$(dirname "$0")/_lib.sh"
py() { python3 -c "$@"; }
# These models are tiny (width <= 64): OpenMP fork/join costs more than the work, and on a loaded machine
# spinning barriers make 2 threads ~10x slower than 1. One thread keeps this script at a few seconds.
export OMP_NUM_THREADS=1
G=$GK_ROOT/tests/fixtures/greedy

# 1. greedy ids == PyTorch greedy (HF generate, do_sample=False) on the same HF-layout checkpoint
PIDS=$(py "import json;print(' '.join(map(str,json.load(open('$G/expected.json'))['prompt_ids'])))")
got=$($GPTKIT sample --model "$G/model" --prompt-ids "$PIDS" --max-new 40 --temperature 0 --json 2>"$TMP/g.err")
if py "
import json,sys
g=json.loads('''$got''')['ids']; w=json.load(open('$G/expected.json'))['greedy_ids']
print('got',g,'want',w) if g!=w else None
sys.exit(0 if g==w else 1)"; then pass greedy_matches_torch; else fail greedy_matches_torch "$(cat "$TMP/g.err")"; fi
# several samples share the prefill; seeds make them reproducible
a=$($GPTKIT sample --model "$G/model" --prompt-ids "1,2,3" --max-new 12 --num-samples 3 --seed 5 --top-k 20 --json 2>/dev/null)
b=$($GPTKIT sample --model "$G/model" --prompt-ids "1 2 3" --max-new 12 --num-samples 3 --seed 5 --top-k 20 --json 2>/dev/null)
if [ "$a" = "$b" ] && [ "$(printf '%s\n' "$a" | wc -l)" -eq 3 ] && py "
import json,sys
L=[json.loads(l) for l in '''$a'''.splitlines()]
sys.exit(0 if all(len(x['ids'])==12 and x['finish']=='length' and 'text' not in x for x in L) and L[0]['ids']!=L[1]['ids'] else 1)"
then pass sample_num_samples_seeded; else fail sample_num_samples_seeded "$a"; fi
expect_fail sample_prompt_too_long "prompt is 100 tokens but the context holds 96" \
  $GPTKIT sample --model "$G/model" --prompt-ids "$(seq -s ' ' 1 100)" --temperature 0
expect_fail sample_bad_id "token id 500 at position 1 is outside" $GPTKIT sample --model "$G/model" --prompt-ids "1 500"
expect_fail sample_needs_tokenizer "records no tokenizer" $GPTKIT sample --model "$G/model" --prompt "hello"
expect_fail sample_bad_top_p "top-p must be in" $GPTKIT sample --model "$G/model" --prompt-ids "1" --top-p 1.5

# 2. SFT acceptance: tokenizer + tiny base model + 20 conversations -> chat -p answers as trained
cat > "$TMP/qa.py" <<'EOF'
import json, sys
qa = [("What is the capital of France?", "The capital of France is Paris."),
      ("What color is the sky?", "The sky is blue on a clear day."),
      ("How many legs does a spider have?", "A spider has eight legs."),
      ("Who wrote Hamlet?", "Hamlet was written by Shakespeare."),
      ("What is two plus two?", "Two plus two is four."),
      ("What do bees make?", "Bees make honey."),
      ("What is frozen water called?", "Frozen water is called ice."),
      ("Which planet is red?", "Mars is the red planet."),
      ("What animal says moo?", "A cow says moo."),
      ("How many days are in a week?", "There are seven days in a week.")]
with open(sys.argv[1], "w") as f:
    for q, a in qa:
        f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n")
        f.write(json.dumps({"messages": [{"role": "system", "content": "You are helpful."},
                                         {"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n")
with open(sys.argv[2], "w") as f:
    for q, a in qa:
        f.write(q + " " + a + "\n")
with open(sys.argv[3], "w") as f:
    for q, a in qa[:3]:
        f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n")
EOF
python3 "$TMP/qa.py" "$TMP/train.jsonl" "$TMP/corpus.txt" "$TMP/val.jsonl"
t0=$(date +%s)
$GPTKIT tokenizer train --input "$TMP/corpus.txt" --vocab-size 400 --out "$TMP/tok" >/dev/null 2>"$TMP/tok.err" \
  && $GPTKIT tokenize --tokenizer "$TMP/tok" --input "$TMP/corpus.txt" --out-dir "$TMP/shards" --val-fraction 0 >/dev/null 2>&1 \
  && $GPTKIT pretrain --model d2 --n-embd 64 --n-head 4 --vocab-size 400 --n-ctx 96 --data "$TMP/shards/train_*.bin" \
       --tokenizer "$TMP/tok" -b 4 -t 32 --steps 5 --out "$TMP/base" --json >/dev/null 2>"$TMP/base.err" \
  && pass sft_base_model || fail sft_base_model "$(cat "$TMP/tok.err" "$TMP/base.err" 2>/dev/null | tail -5)"
SFT="--init $TMP/base --data $TMP/train.jsonl --val $TMP/val.jsonl -b 8 --steps 240 --lr 3e-3 --warmup 10 --seed 3"
$GPTKIT sft $SFT --out "$TMP/sft" --json > "$TMP/sft.jsonl" 2>"$TMP/sft.err"
rc=$?
if [ $rc -eq 0 ] && py "
import json,sys
L=[json.loads(l) for l in open('$TMP/sft.jsonl')]
loss=[x['loss'] for x in L if 'loss' in x]; val=[x['val_loss'] for x in L if 'val_loss' in x]
print(len(loss), loss[:2], loss[-2:], val)
sys.exit(0 if len(loss)==240 and loss[-1] < 0.1 and val and val[-1] < 0.1 else 1)" >"$TMP/sft.chk"; then pass sft_trains
else fail sft_trains "rc=$rc $(cat "$TMP/sft.chk") $(tail -3 "$TMP/sft.err")"; fi
[ -f "$TMP/sft/metrics.jsonl" ] && grep -q '"tokenizer"' "$TMP/sft/config.json" && pass sft_checkpoint_records_tokenizer \
  || fail sft_checkpoint_records_tokenizer
ok=1
for q in "What is the capital of France?" "How many legs does a spider have?" "What do bees make?"; do
  want=$(py "
import json
for l in open('$TMP/train.jsonl'):
    m=json.loads(l)['messages']
    if m[-2]['content']=='''$q''': print(m[-1]['content']); break")
  got=$($GPTKIT chat --model "$TMP/sft" -p "$q" 2>"$TMP/chat.err")
  [ "$got" = "$want" ] || { ok=0; echo "  q: $q got: '$got' want: '$want' $(cat "$TMP/chat.err")"; }
done
[ $ok -eq 1 ] && pass chat_p_answers_as_trained || fail chat_p_answers_as_trained
t1=$(date +%s); echo "  (tokenizer + pretrain + SFT + 3 chats: $((t1 - t0)) s)"

# 3. interactive: commands, two questions, /reset; stdout holds the replies
printf '/temp 0\nWhat do bees make?\n/reset\n/system You are helpful.\nWhich planet is red?\n/bogus\n/quit\n' \
  | $GPTKIT chat --model "$TMP/sft" > "$TMP/inter.out" 2>"$TMP/inter.err"
if grep -qx "Bees make honey." "$TMP/inter.out" && grep -qx "Mars is the red planet." "$TMP/inter.out" \
   && grep -q "temperature 0" "$TMP/inter.err" && grep -q "unknown command" "$TMP/inter.err"; then pass chat_interactive
else fail chat_interactive "$(cat "$TMP/inter.out" "$TMP/inter.err")"; fi
# sample with text from a chat-formatted prompt: stops at <|end|>
got=$($GPTKIT sample --model "$TMP/sft" --prompt "<|user|>Who wrote Hamlet?<|end|><|assistant|>" --temperature 0 --json 2>/dev/null)
if py "
import json,sys
x=json.loads('''$got''')
sys.exit(0 if x['text']=='Hamlet was written by Shakespeare.' and x['finish']=='stop' else 1)"; then pass sample_text_stops_at_end
else fail sample_text_stops_at_end "$got"; fi

# 4. resume == uninterrupted; Ctrl-C saves
RUN="--init $TMP/base --data $TMP/train.jsonl -b 3 --steps 12 --lr 1e-3 --warmup 2 --seed 9 --json"
$GPTKIT sft $RUN --out "$TMP/full" > "$TMP/full.jsonl" 2>/dev/null
$GPTKIT sft $RUN --stop-at 5 --out "$TMP/part" > "$TMP/p1.jsonl" 2>/dev/null
$GPTKIT sft --resume "$TMP/part" --json > "$TMP/p2.jsonl" 2>/dev/null
if py "
import json,sys
L=lambda p:[json.loads(l)['loss'] for l in open(p) if '\"loss\"' in l]
full=L('$TMP/full.jsonl'); part=L('$TMP/p1.jsonl')+L('$TMP/p2.jsonl')
print(full, part) if full!=part else None
sys.exit(0 if len(full)==12 and full==part else 1)"; then pass sft_resume_equals_uninterrupted; else fail sft_resume_equals_uninterrupted; fi
cmp -s "$TMP/full/model.safetensors" "$TMP/part/model.safetensors" && pass sft_resume_same_weights || fail sft_resume_same_weights
start_ready '"loss"' "$TMP/int.jsonl" "$TMP/int.err" $GPTKIT sft --init "$TMP/base" --data "$TMP/train.jsonl" --steps 1000000 --out "$TMP/int" --json
interrupt_ready; rc=$?
if [ $READY = 1 ] && [ $rc -eq 130 ] && [ -f "$TMP/int/train_state.safetensors" ]; then pass sft_sigint_saves
else fail sft_sigint_saves "ready=$READY rc=$rc $(tail -3 "$TMP/int.err")"; fi

# 5. bad input
cp "$TMP/train.jsonl" "$TMP/bad.jsonl"
echo '{"messages":[{"role":"user","content":"hi"},{"role":"bot","content":"yo"}]}' >> "$TMP/bad.jsonl"
echo 'not json' >> "$TMP/bad.jsonl"
expect_fail sft_bad_role 'bad.jsonl:21: messages\[1\]\.role: expected one of system\|user\|assistant\|tool, got "bot"' \
  $GPTKIT sft --init "$TMP/base" --data "$TMP/bad.jsonl" --steps 1 --out "$TMP/bad"
$GPTKIT sft --init "$TMP/base" --data "$TMP/bad.jsonl" --steps 1 --skip-bad --out "$TMP/bad" > /dev/null 2>"$TMP/bad.err"
if [ $? -eq 0 ] && grep -q "2 malformed skipped" "$TMP/bad.err"; then pass sft_skip_bad_counts; else fail sft_skip_bad_counts "$(cat "$TMP/bad.err")"; fi
expect_fail sft_needs_init "--init CKPT" $GPTKIT sft --data "$TMP/train.jsonl" --out "$TMP/x"
# a model whose vocabulary cannot hold the chat tokens
$GPTKIT pretrain --model d2 --n-embd 32 --n-head 4 --vocab-size 395 --n-ctx 32 --data "$TMP/shards/train_*.bin" \
  --tokenizer "$TMP/tok" -b 2 -t 16 --steps 1 --out "$TMP/small" --json >/dev/null 2>&1
expect_fail chat_vocab_too_small "has id 39[5-9] but the model.s vocabulary is 395" $GPTKIT chat --model "$TMP/small" -p hi
expect_fail sft_vocab_too_small "vocabulary is 395" $GPTKIT sft --init "$TMP/small" --data "$TMP/train.jsonl" --steps 1 --out "$TMP/y"
