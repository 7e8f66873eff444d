# CLI tests for the LLaMA family: eval and greedy sampling of an HF LlamaForCausalLM directory equal transformers'
# (committed fixtures, tests/ref/gen_llama_fixtures.py), pretrain --arch llama, every stage's model loading, bad
# input, and (when torch + transformers are installed) transformers reloading what gptkit saves.
. "$(dirname "$0")/_lib.sh"
F=$GK_ROOT/tests/fixtures/llama
py() { python3 -c "$@"; }
J=$F/gqa/expected.json

# 1. eval loss over an llm.c shard equals transformers' (head_dim 10, 3 query heads per KV head, untied)
got=$($GPTKIT eval --model "$F/gqa/model" --data "$F/gqa/data.bin" -b 2 -t 13 --batches 2 --json 2>"$TMP/e.err")
if py "import json,sys; g=json.loads('''$got''')['loss']; w=json.load(open('$J'))['eval_loss']; sys.exit(0 if abs(g-w)<1e-4 else 1)"
then pass llama_eval_matches_transformers; else fail llama_eval_matches_transformers "$got $(cat "$TMP/e.err")"; fi

# 2. greedy ids equal transformers' generate (KV cache decode with rotary positions and grouped-query attention)
P=$(py "import json; print(' '.join(map(str, json.load(open('$J'))['prompt_ids'])))")
got=$($GPTKIT sample --model "$F/gqa/model" --prompt-ids "$P" --max-new 12 --temperature 0 --json -q 2>"$TMP/s.err")
if py "import json,sys; g=json.loads('''$got''')['ids']; w=json.load(open('$J'))['greedy_ids']; print(g, w) if g!=w else None; sys.exit(0 if g==w else 1)"
then pass llama_greedy_matches_transformers; else fail llama_greedy_matches_transformers "$got $(cat "$TMP/s.err")"; fi

# 3. sharded fp16 (tied, llama3 rope) and bf16 Qwen2 directories load and sample
for c in tied qwen2; do
  if $GPTKIT sample --model "$F/$c/model" --prompt-ids "1 2 3" --max-new 4 --temperature 0 --json -q > "$TMP/$c.json" 2>&1 \
     && grep -q '"ids"' "$TMP/$c.json"; then pass "llama_sample_$c"; else fail "llama_sample_$c" "$(cat "$TMP/$c.json")"; fi
done

# 4. pretrain --arch llama: the loss falls, the checkpoint is an HF LlamaForCausalLM directory, and it resumes
RUN="--arch llama --model d2 --n-embd 60 --n-head 6 --vocab-size 97 --n-ctx 16 --seed 7 -b 2 -t 11 --lr 3e-3 --warmup 2 --json"
D=$GK_ROOT/tests/fixtures/train/data.bin
$GPTKIT pretrain $RUN --data "$D" --steps 30 --out "$TMP/pt" > "$TMP/pt.jsonl" 2>"$TMP/pt.err"
if py "
import json,sys
L=[json.loads(l)['loss'] for l in open('$TMP/pt.jsonl') if '\"loss\"' in l]
c=json.load(open('$TMP/pt/config.json'))
ok=len(L)==30 and L[-1]<L[0]-0.3 and c['model_type']=='llama' and c['num_key_value_heads']==2 and c['head_dim']==10
print(L[0], L[-1], c.get('num_key_value_heads')) if not ok else None
sys.exit(0 if ok else 1)"; then pass llama_pretrain_learns; else fail llama_pretrain_learns "$(tail -3 "$TMP/pt.err")"; fi
$GPTKIT pretrain $RUN --data "$D" --steps 6 --stop-at 3 --out "$TMP/part" > "$TMP/p1.jsonl" 2>/dev/null
$GPTKIT pretrain --resume "$TMP/part" --json > "$TMP/p2.jsonl" 2>/dev/null
$GPTKIT pretrain $RUN --data "$D" --steps 6 --out "$TMP/full" > "$TMP/f.jsonl" 2>/dev/null
cmp -s "$TMP/full/model.safetensors" "$TMP/part/model.safetensors" && pass llama_resume_same_weights || fail llama_resume_same_weights
$GPTKIT eval --model "$TMP/pt" --data "$D" -b 2 -t 11 --batches 2 --json > "$TMP/ev.json" 2>"$TMP/ev.err" \
  && pass llama_eval_own_checkpoint || fail llama_eval_own_checkpoint "$(cat "$TMP/ev.err")"

# 5. bad input: a clear message naming the file, no crash
mkdir -p "$TMP/bad"; cp "$F/tied/model/config.json" "$F/tied/model/model.safetensors.index.json" "$TMP/bad/"
expect_fail llama_missing_shard 'index.json: names shard "model-000[0-9]+-of-00011.safetensors", which is missing' \
  $GPTKIT sample --model "$TMP/bad" --prompt-ids "1 2" --max-new 2
expect_fail llama_unknown_arch 'unknown --arch "mamba"' $GPTKIT pretrain --arch mamba --data "$D" --out "$TMP/x" --steps 1

# 6. transformers loads what gptkit saved with the same loss (only where torch and transformers are installed)
if need_py transformers_reloads_llama torch transformers; then
  want=$(py "import json; print(json.load(open('$TMP/ev.json'))['loss'])")
  if "$PYT" - "$TMP/pt" "$D" "$want" <<'EOF'
import sys, numpy as np, torch
from transformers import AutoModelForCausalLM
d, shard, want = sys.argv[1], sys.argv[2], float(sys.argv[3])
m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
raw = open(shard, "rb").read()
toks = torch.tensor(np.frombuffer(raw[1024:], dtype=np.uint16).astype(np.int64))
B, T, losses = 2, 11, []
with torch.no_grad():
    for k in range(2):
        x = torch.stack([toks[(2 * k + r) * T:(2 * k + r) * T + T] for r in range(B)])
        y = torch.stack([toks[(2 * k + r) * T + 1:(2 * k + r) * T + T + 1] for r in range(B)])
        lg = m(input_ids=x).logits
        losses.append(torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), y.reshape(-1)).item())
got = sum(losses) / len(losses)
print("transformers", got, "gptkit", want)
sys.exit(0 if abs(got - want) < 1e-4 else 1)
EOF
  then pass transformers_reloads_llama; else fail transformers_reloads_llama; fi
fi

# 7. HF tokenizer.json (byte-level BPE): ids equal HF tokenizers' for LLaMA 3, Qwen2 and SmolLM-style pre-tokenizers
#    (tests/ref/gen_hf_tokenizer_fixtures.py), added tokens matched in text as HF does; the same vocabularies
#    stored in GGUF files (tokenizer.ggml.*, pre llama-bpe / qwen2 / smollm) give the same ids
for k in llama3 qwen2 smollm gguf:llama3 gguf:qwen2 gguf:smollm; do
  case $k in gguf:*) T=$GK_ROOT/tests/fixtures/gguf/tok-${k#gguf:}.gguf; E=$GK_ROOT/tests/fixtures/hftok/${k#gguf:} ;;
             *) T=$GK_ROOT/tests/fixtures/hftok/$k; E=$T ;; esac
  if python3 - "$GPTKIT" "$T" "$E" <<'EOF2'
import json, subprocess, sys
gk, d, e = sys.argv[1], sys.argv[2], sys.argv[3]
bad = 0
for c in json.load(open(e + "/expected.json"))["cases"]:
    out = subprocess.run([gk, "tokenizer", "encode", "--tokenizer", d, "--ids"], input=c["text"].encode(), capture_output=True)
    got = [int(x) for x in out.stdout.split()]
    if got != c["ids"]:
        bad += 1
        print("  mismatch", repr(c["text"][:40]), got[:12], c["ids"][:12], out.stderr[:200])
sys.exit(1 if bad else 0)
EOF2
  then pass "hf_tokenizer_${k/:/_}"; else fail "hf_tokenizer_${k/:/_}"; fi
done
mkdir -p "$TMP/badtok"
python3 -c "
import json; j=json.load(open('$GK_ROOT/tests/fixtures/hftok/llama3/tokenizer.json'))
j['pre_tokenizer']={'type':'Metaspace','replacement':'_'}; json.dump(j,open('$TMP/badtok/tokenizer.json','w'))"
expect_fail hf_tokenizer_unsupported_pretokenizer 'tokenizer.json: pre_tokenizer "Metaspace" is not supported' \
  sh -c "echo hi | $GPTKIT tokenizer encode --tokenizer $TMP/badtok --ids"

# 8. chat with the model's own template (ChatML from a Qwen2 directory's tokenizer.json): the greedy reply equals
#    transformers' generate after apply_chat_template, stopping at <|im_end|>
M=$F/chat/model
got=$($GPTKIT chat --model "$M" --system "Be brief." -p "In the beginning, what was made?" --max-new 10 -q 2>"$TMP/c.err")
if python3 -c "
import json,sys; w=json.load(open('$F/chat/expected.json'))['reply_text']; g=sys.argv[1]
print(repr(g), repr(w)) if g!=w else None; sys.exit(0 if g==w else 1)" "$got"; then pass chat_own_template_matches_transformers
else fail chat_own_template_matches_transformers "$(cat "$TMP/c.err")"; fi

# 8b. self-contained checkpoints: export --format hf writes the tokenizer inside (ChatML template, <|im_end|> as
#     eos in config.json); the directory moved elsewhere still chats the same reply, and transformers'
#     AutoTokenizer on it renders a chat to the ids gptkit renders
$GPTKIT export --model "$M" --format hf --out "$TMP/chatx" 2>"$TMP/x.err"
mkdir -p "$TMP/far" && mv "$TMP/chatx" "$TMP/far/chat"
if [ -f "$TMP/far/chat/tokenizer.json" ] && [ -f "$TMP/far/chat/generation_config.json" ] && python3 -c "
import json,sys
c=json.load(open('$TMP/far/chat/config.json')); t=json.load(open('$TMP/far/chat/tokenizer.json'))
im_end=[a['id'] for a in t['added_tokens'] if a['content']=='<|im_end|>'][0]
tc=json.load(open('$TMP/far/chat/tokenizer_config.json'))
sys.exit(0 if c['eos_token_id']==im_end and '<|im_start|>' in tc['chat_template'] else 1)"; then pass export_hf_carries_tokenizer
else fail export_hf_carries_tokenizer "$(cat "$TMP/x.err")"; fi
got=$(cd "$TMP" && $GPTKIT chat --model far/chat --system "Be brief." -p "In the beginning, what was made?" --max-new 10 -q 2>"$TMP/c2.err")
if python3 -c "
import json,sys; w=json.load(open('$F/chat/expected.json'))['reply_text']; g=sys.argv[1]
print(repr(g), repr(w)) if g!=w else None; sys.exit(0 if g==w else 1)" "$got"; then pass moved_export_chats_alike
else fail moved_export_chats_alike "$(cat "$TMP/c2.err")"; fi
if need_py autotokenizer_on_gptkit_checkpoint transformers; then
  MSG='{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2? naïve 日本 "}]}'
  want=$(printf '%s' "$MSG" | $GPTKIT tokenizer render --tokenizer "$TMP/far/chat")
  if "$PYT" - "$TMP/far/chat" "$MSG" "$want" <<'EOF'
import json, sys
from transformers import AutoTokenizer
d, msg, want = sys.argv[1], json.loads(sys.argv[2]), [int(x) for x in sys.argv[3].split()]
tok = AutoTokenizer.from_pretrained(d)
got = list(tok.apply_chat_template(msg["messages"], tokenize=True, add_generation_prompt=True, return_dict=False))
enc = list(tok("In the beginning 123 <|im_end|> x")["input_ids"])
print("transformers", got, "gptkit", want) if got != want else None
sys.exit(0 if got == want and want and tok.convert_tokens_to_ids("<|im_end|>") in enc else 1)
EOF
  then pass autotokenizer_on_gptkit_checkpoint; else fail autotokenizer_on_gptkit_checkpoint; fi
fi

# 9. GGUF: a .gguf file is a --model everywhere (greedy ids equal transformers' on the stored weights), gptkit info
#    lists it, gptkit export writes one that reloads with the same greedy ids, and bad files fail clearly
G=$GK_ROOT/tests/fixtures/gguf
for q in f32 q8_0 q4_0; do
  got=$($GPTKIT sample --model "$G/model-$q.gguf" --prompt-ids "5 17 33 2 60" --max-new 10 --temperature 0 --json -q 2>&1)
  if python3 -c "import json,sys; g=json.loads(sys.argv[1])['ids']; w=json.load(open('$G/expected.json'))['$q']['greedy']; sys.exit(0 if g==w else 1)" "$got"
  then pass "gguf_${q}_greedy_matches_transformers"; else fail "gguf_${q}_greedy_matches_transformers" "$got"; fi
done
$GPTKIT info --model "$G/model-q4_0.gguf" > "$TMP/info.txt" 2>&1
grep -q "architecture  llama" "$TMP/info.txt" && grep -q "Q4_0 x16" "$TMP/info.txt" && grep -q "blk.1.ffn_down.weight" "$TMP/info.txt" \
  && pass gguf_info || fail gguf_info "$(head -5 "$TMP/info.txt")"
$GPTKIT info --model "$F/gqa/model" | grep -q "3 heads (1 key/value), width 30, FFN 46" && pass info_hf_dir || fail info_hf_dir
$GPTKIT export --model "$G/model" --format gguf --type q8_0 --out "$TMP/e.gguf" 2>/dev/null
a=$($GPTKIT sample --model "$TMP/e.gguf" --prompt-ids "5 17 33 2 60" --max-new 10 --temperature 0 --json -q 2>&1 | python3 -c "import json,sys; print(json.load(sys.stdin)['ids'])")
b=$(python3 -c "import json; print(json.load(open('$G/expected.json'))['q8_0']['greedy'])")
[ "$a" = "$b" ] && pass gguf_export_q8_0_reloads || fail gguf_export_q8_0_reloads "$a vs $b"
head -c 1000 "$G/model-f32.gguf" > "$TMP/trunc.gguf"
expect_fail gguf_truncated 'trunc.gguf: .*(truncated|past the end)' $GPTKIT sample --model "$TMP/trunc.gguf" --prompt-ids "1" --max-new 1
if need_py gguf_reader_reads_export gguf numpy; then
  if "$PYT" - "$TMP/e.gguf" <<'EOF2'
import sys
from gguf import GGUFReader
r = GGUFReader(sys.argv[1])
names = {t.name: t.tensor_type.name for t in r.tensors}
ok = names.get("blk.0.attn_q.weight") == "Q8_0" and names.get("output_norm.weight") == "F32" and len(names) == 21
ok = ok and bytes(r.fields["general.architecture"].parts[-1]).decode() == "llama"
sys.exit(0 if ok else 1)
EOF2
  then pass gguf_reader_reads_export; else fail gguf_reader_reads_export; fi
fi

# 10. every finetuning stage runs on a LLaMA-family (Qwen2, ChatML) directory: sft (loss on the assistant's
#     tokens), rm (score head saved as Qwen2ForSequenceClassification), dpo, ppo, and chat on the results
printf '%s\n' '{"messages":[{"role":"user","content":"In the beginning"},{"role":"assistant","content":"God created the heaven."}]}' \
  '{"messages":[{"role":"user","content":"What was made?"},{"role":"assistant","content":"The earth."}]}' > "$TMP/sft.jsonl"
printf '%s\n' '{"prompt":"In the beginning","chosen":"God created.","rejected":"xx yy"}' \
  '{"prompt":"What was made?","chosen":"The earth.","rejected":"zz"}' > "$TMP/prefs.jsonl"
printf '%s\n' '{"prompt":"In the beginning"}' '{"prompt":"What was made?"}' > "$TMP/prompts.jsonl"
$GPTKIT sft --init "$F/chat/model" --data "$TMP/sft.jsonl" --steps 20 --lr 3e-3 -b 2 --out "$TMP/sft" --json > "$TMP/sft.out" 2>"$TMP/sft.err"
if python3 -c "
import json,sys
L=[json.loads(l) for l in open('$TMP/sft.out') if '\"loss\"' in l]
sys.exit(0 if len(L)==20 and L[-1]['loss']<L[0]['loss'] and L[0]['trained_tokens']==15 else 1)"; then pass llama_sft_learns
else fail llama_sft_learns "$(tail -3 "$TMP/sft.err")"; fi
$GPTKIT rm --init "$TMP/sft" --data "$TMP/prefs.jsonl" --steps 5 -b 2 --out "$TMP/rm" -q >/dev/null 2>"$TMP/rm.err" \
  && grep -q Qwen2ForSequenceClassification "$TMP/rm/config.json" && pass llama_rm || fail llama_rm "$(tail -3 "$TMP/rm.err")"
$GPTKIT dpo --init "$TMP/sft" --data "$TMP/prefs.jsonl" --steps 3 -b 2 --out "$TMP/dpo" -q >/dev/null 2>"$TMP/dpo.err" \
  && pass llama_dpo || fail llama_dpo "$(tail -3 "$TMP/dpo.err")"
$GPTKIT ppo --policy "$TMP/sft" --rm "$TMP/rm" --prompts "$TMP/prompts.jsonl" --steps 2 --out "$TMP/ppo" -q >/dev/null 2>"$TMP/ppo.err" \
  && $GPTKIT chat --model "$TMP/ppo" -p "In the beginning" --max-new 8 -q > /dev/null 2>&1 && pass llama_ppo_then_chat \
  || fail llama_ppo_then_chat "$(tail -3 "$TMP/ppo.err")"

# 11. GGUF export carries the tokenizer (tokenizer.ggml.*, pre qwen2) and the chat template: the exported file
#     chats and tokenizes exactly as the HF directory it came from
$GPTKIT export --model "$F/chat/model" --format gguf --type f32 --out "$TMP/chat.gguf" 2>/dev/null
got=$($GPTKIT chat --model "$TMP/chat.gguf" --system "Be brief." -p "In the beginning, what was made?" --max-new 10 -q 2>&1)
if python3 -c "
import json,sys; w=json.load(open('$F/chat/expected.json'))['reply_text']; sys.exit(0 if sys.argv[1]==w else 1)" "$got"
then pass gguf_export_chats_like_hf; else fail gguf_export_chats_like_hf "$got"; fi
$GPTKIT info --model "$TMP/chat.gguf" | grep -q "tokenizer     gpt2 / qwen2" && $GPTKIT info --model "$TMP/chat.gguf" | grep -q "chat template" \
  && pass gguf_export_has_tokenizer || fail gguf_export_has_tokenizer
a=$(printf 'In the beginning God created 12345 things.<|im_end|>' | $GPTKIT tokenizer encode --tokenizer "$TMP/chat.gguf" --ids)
b=$(printf 'In the beginning God created 12345 things.<|im_end|>' | $GPTKIT tokenizer encode --tokenizer "$F/chat/model" --ids)
[ -n "$a" ] && [ "$a" = "$b" ] && pass gguf_export_tokenizes_like_hf || fail gguf_export_tokenizes_like_hf "$a vs $b"

# 11b. A GPT-2 checkpoint whose vocabulary is padded past its tokenizer (GPT-2's 50257 tokens + 8 chat specials in
#      50304 rows, as the demo and `pretrain --vocab-size 50304` make them): the exported token list is as long as
#      the embedding (llama.cpp refuses the file otherwise), and the padding never enters tokenization
printf 'In the beginning God created the heaven and the earth. And the earth was without form.\n%.0s' $(seq 40) > "$TMP/g2.txt"
$GPTKIT tokenize --tokenizer gpt2 --input "$TMP/g2.txt" --out-dir "$TMP/g2sh" --val-fraction 0 >/dev/null 2>&1 \
  && $GPTKIT pretrain --model d1 --n-embd 16 --n-head 2 --vocab-size 50304 --n-ctx 32 --tokenizer gpt2 \
       --data "$TMP/g2sh/train_*.bin" -b 1 -t 16 --steps 1 --warmup 1 --out "$TMP/g2" -q >/dev/null 2>"$TMP/g2.err" \
  && $GPTKIT export --model "$TMP/g2" --format gguf --type f32 --out "$TMP/g2.gguf" 2>>"$TMP/g2.err"
if $GPTKIT info --model "$TMP/g2.gguf" 2>/dev/null | grep -q "tokenizer     gpt2 / gpt-2, 50304 tokens" \
   && [ "$(printf 'the [PAD50300] earth<|endoftext|>' | $GPTKIT tokenizer encode --tokenizer "$TMP/g2.gguf" --ids --allow-special)" = \
        "$(printf 'the [PAD50300] earth<|endoftext|>' | $GPTKIT tokenizer encode --tokenizer gpt2 --ids --allow-special)" ]
then pass gguf_export_pads_gpt2_vocab; else fail gguf_export_pads_gpt2_vocab "$(tail -3 "$TMP/g2.err")"; fi

# 12. llama.cpp itself (llama-cpp-python; LCP_PYTHON names a python that has it): gptkit's GGUF exports load and
#     give gptkit's greedy ids in every written type, and llama.cpp tokenizes the GGUF vocabularies (the fixtures
#     and gptkit's export) as gptkit does
LPY=${LCP_PYTHON:-$PYT}
if "$LPY" -c "import llama_cpp" 2>/dev/null; then
  ok=1
  for t in f32 f16 q8_0 q4_0; do
    $GPTKIT export --model "$G/model" --format gguf --type $t --out "$TMP/lc-$t.gguf" 2>/dev/null
    a=$("$LPY" "$GK_ROOT/tests/ref/check_llama_cpp.py" greedy "$TMP/lc-$t.gguf" "5 17 33 2 60" 10 2>/dev/null)
    b=$($GPTKIT sample --model "$TMP/lc-$t.gguf" --prompt-ids "5 17 33 2 60" --max-new 10 --temperature 0 -q 2>/dev/null)
    [ -n "$a" ] && [ "$a" = "$b" ] || { ok=0; echo "  $t: llama.cpp [$a] gptkit [$b]"; }
  done
  a=$("$LPY" "$GK_ROOT/tests/ref/check_llama_cpp.py" greedy "$TMP/g2.gguf" "5 17 33 2 60" 10 2>/dev/null)
  b=$($GPTKIT sample --model "$TMP/g2.gguf" --prompt-ids "5 17 33 2 60" --max-new 10 --temperature 0 --json -q 2>/dev/null \
      | python3 -c "import json,sys; print(' '.join(map(str, json.load(sys.stdin)['ids'])))")
  [ -n "$a" ] && [ "$a" = "$b" ] || { ok=0; echo "  gpt2 padded: llama.cpp [$a] gptkit [$b]"; }
  [ $ok = 1 ] && pass llama_cpp_greedy_equals_gptkit || fail llama_cpp_greedy_equals_gptkit
  ok=1
  TXT='In the beginning God created 12345 things. <|im_start|>user
Hi  there!!<|im_end|>'
  for f in "$G/tok-llama3.gguf" "$G/tok-qwen2.gguf" "$G/tok-smollm.gguf" "$TMP/chat.gguf"; do
    a=$("$LPY" "$GK_ROOT/tests/ref/check_llama_cpp.py" tokenize "$f" "$TXT" 2>/dev/null)
    b=$(printf '%s' "$TXT" | $GPTKIT tokenizer encode --tokenizer "$f" --ids)
    [ -n "$a" ] && [ "$a" = "$b" ] || { ok=0; echo "  $f: llama.cpp [$a] gptkit [$b]"; }
  done
  [ $ok = 1 ] && pass llama_cpp_tokenizes_like_gptkit || fail llama_cpp_tokenizes_like_gptkit
else
  skip llama_cpp_checks "llama_cpp not importable (pip install llama-cpp-python; LCP_PYTHON=...)"
fi
