# CLI tests for gptkit eval / pretrain: agreement with the committed PyTorch fixture (tests/ref/gen_train_fixture.py),
# resume == uninterrupted, Ctrl-C saves, and clean errors on bad shards and checkpoints.
. "$(dirname "$0")/_lib.sh"
F=$GK_ROOT/tests/fixtures/train
py() { python3 -c "$@"; }
ARGS=$(py "import json;print(' '.join(json.load(open('$F/expected.json'))['pretrain_args']))")

# 1. eval loss equals PyTorch's mean over the first K sequential batches
got=$($GPTKIT eval --model "$F/init" --data "$F/data.bin" -b 3 -t 11 --batches 3 --json)
if py "import json,sys; g=json.loads('''$got''')['loss']; w=json.load(open('$F/expected.json'))['eval_loss']; sys.exit(0 if abs(g-w)<1e-5 else 1)"; then
  pass eval_matches_torch; else fail eval_matches_torch "$got"; fi

# 2. eight AdamW steps (warmup+cosine, weight decay, clipping) match PyTorch's losses
$GPTKIT pretrain --init "$F/init" --data "$F/data.bin" --out "$TMP/a" --json $ARGS > "$TMP/a.jsonl" 2>"$TMP/a.err"
if py "
import json,sys
got=[json.loads(l)['loss'] for l in open('$TMP/a.jsonl') if '\"loss\"' in l]
want=json.load(open('$F/expected.json'))['losses']
bad=[(i,g,w) for i,(g,w) in enumerate(zip(got,want)) if abs(g-w)>2e-5]
print(bad) if bad else None
sys.exit(0 if len(got)==len(want) and not bad else 1)"; then pass pretrain_matches_torch; else fail pretrain_matches_torch "$(cat "$TMP/a.err")"; fi
[ -f "$TMP/a/config.json" ] && [ -f "$TMP/a/model.safetensors" ] && [ -f "$TMP/a/train_state.safetensors" ] \
  && pass checkpoint_written || fail checkpoint_written "$(ls "$TMP/a")"

# 3. resume == uninterrupted (shuffled mode, random init, gradient accumulation)
RUN="--model d2 --n-embd 32 --n-head 4 --vocab-size 97 --n-ctx 16 --seed 7 -b 2 -t 11 --total-batch 44 --lr 3e-3 --warmup 2 --json"
$GPTKIT pretrain $RUN --data "$F/data.bin" --steps 10 --out "$TMP/full" > "$TMP/full.jsonl" 2>/dev/null
$GPTKIT pretrain $RUN --data "$F/data.bin" --steps 10 --stop-at 4 --out "$TMP/part" > "$TMP/p1.jsonl" 2>/dev/null
$GPTKIT pretrain --resume "$TMP/part" --json > "$TMP/p2.jsonl" 2>/dev/null
if py "
import json,sys
L=lambda p:[json.loads(l)['loss'] for l in open(p) if '\"loss\"' in l]
full=L('$TMP/full.jsonl'); part=L('$TMP/p1.jsonl')+L('$TMP/p2.jsonl')
print(full, part) if full!=part else None
sys.exit(0 if len(full)==10 and full==part else 1)"; then pass resume_equals_uninterrupted; else fail resume_equals_uninterrupted; fi
cmp -s "$TMP/full/model.safetensors" "$TMP/part/model.safetensors" && pass resume_same_final_weights || fail resume_same_final_weights

# 4. Ctrl-C saves a resumable checkpoint and exits 130
#    (signalled once its first step line is out, i.e. once its handler is installed: no sleeping, no race)
start_ready '"loss"' "$TMP/int.jsonl" "$TMP/int.err" $GPTKIT pretrain $RUN --data "$F/data.bin" --steps 100000 --out "$TMP/int"
# one writer per directory: a second run on the same --out is refused at once, naming the holder's pid
expect_fail second_writer_refused "in use by another gptkit process \(pid $READY_PID\)" \
  $GPTKIT pretrain $RUN --data "$F/data.bin" --steps 3 --out "$TMP/int"
interrupt_ready; rc=$?
if [ $READY = 1 ] && [ $rc -eq 130 ] && [ -f "$TMP/int/train_state.safetensors" ]; then pass sigint_saves
else fail sigint_saves "ready=$READY rc=$rc $(cat "$TMP/int.err")"; fi

# 5. mixed precision trains like fp32: bf16 matmuls (fp32 accumulation and master weights) reach the same loss
#    within noise on a learnable stream (a noisy recurrence over 97 tokens), and bf16 is really in use
py "
import random, struct
from array import array
rng=random.Random(3); n=20000; t=array('H',[0]*n); t[0],t[1]=5,11
for i in range(2,n): t[i]=(t[i-1]+t[i-2]%3+1+(rng.randrange(97) if rng.random()<0.1 else 0))%97
h=array('i',[0]*256); h[0],h[1],h[2]=20240520,1,n
open('$TMP/mp.bin','wb').write(h.tobytes()+t.tobytes())"
MP="--model d2 --n-embd 64 --n-head 4 --vocab-size 97 --n-ctx 32 --seed 3 -b 8 -t 32 --steps 80 --lr 3e-3 --warmup 5 --val-every 0 --save-every 0 --json --data $TMP/mp.bin"
$GPTKIT pretrain $MP --out "$TMP/mp32" > "$TMP/mp32.jsonl" 2>"$TMP/mp32.err"
if $GPTKIT pretrain $MP --precision bf16 --out "$TMP/mp16" > "$TMP/mp16.jsonl" 2>"$TMP/mp16.err"; then
  if py "
import json,sys
L=lambda p:[json.loads(l)['loss'] for l in open(p) if '\"loss\"' in l]
a,b=L('$TMP/mp32.jsonl'),L('$TMP/mp16.jsonl')
fa,fb=sum(a[-10:])/10,sum(b[-10:])/10
print('fp32 %.6f -> %.6f, bf16 %.6f -> %.6f' % (a[0],fa,b[0],fb))
sys.exit(0 if len(a)==len(b)==80 and a!=b and fa<0.6*a[0] and abs(fa-fb)<0.03*fa else 1)"; then
    pass bf16_trains_like_fp32; else fail bf16_trains_like_fp32; fi
elif grep -q "needs oneDNN" "$TMP/mp16.err"; then
  skip bf16_trains_like_fp32 "bf16 unavailable on this build/CPU: $(cat "$TMP/mp16.err")"
else fail bf16_trains_like_fp32 "$(cat "$TMP/mp16.err")"; fi

# 6. bad input: a clear message naming the file, a non-zero exit, never a crash
expect_fail model_too_big "needs [0-9.]+ GB but only" $GPTKIT pretrain --model d100 --vocab-size 50257 -b 4 -t 64 \
  --data "$F/data.bin" --steps 1 --out "$TMP/huge"
expect_fail config_is_directory "$TMP.*is a directory" $GPTKIT pipeline "$TMP"
cp "$F/data.bin" "$TMP/magic.bin"; printf '\x01\x02\x03\x04' | dd of="$TMP/magic.bin" conv=notrunc 2>/dev/null
expect_fail bad_magic "magic.bin.*magic" $GPTKIT eval --model "$F/init" --data "$TMP/magic.bin" -b 1 -t 4
head -c 1500 "$F/data.bin" > "$TMP/trunc.bin"
expect_fail truncated_shard "trunc.bin.*truncated" $GPTKIT eval --model "$F/init" --data "$TMP/trunc.bin" -b 1 -t 4
$GPTKIT pretrain --model d2 --n-embd 32 --n-head 4 --vocab-size 50 --n-ctx 16 -b 2 -t 11 --steps 3 --data "$F/data.bin" --out "$TMP/v" --json >/dev/null 2>"$TMP/v.err"
rc=$?; if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q "data.bin.*out of range" "$TMP/v.err"; then pass token_out_of_range; else fail token_out_of_range "rc=$rc $(cat "$TMP/v.err")"; fi
mkdir -p "$TMP/shape"; cp "$F/init/model.safetensors" "$TMP/shape/"
sed 's/"n_embd": 24/"n_embd": 30/; s/"n_head": 3/"n_head": 5/' "$F/init/config.json" > "$TMP/shape/config.json"
expect_fail mismatched_shapes "model.safetensors.*shape|shape.*model.safetensors" $GPTKIT eval --model "$TMP/shape" --data "$F/data.bin" -b 1 -t 4
mkdir -p "$TMP/nokey"; cp "$F/init/model.safetensors" "$TMP/nokey/"
grep -v '"n_layer"' "$F/init/config.json" > "$TMP/nokey/config.json"
expect_fail missing_config_key "config.json.*n_layer" $GPTKIT eval --model "$TMP/nokey" --data "$F/data.bin" -b 1 -t 4
mkdir -p "$TMP/lie"; cp "$F/init/config.json" "$TMP/lie/"
py "
import struct
b=open('$F/init/model.safetensors','rb').read(); n=struct.unpack('<Q',b[:8])[0]
h=b[8:8+n].decode().replace('[0,', '[999999,',1).encode()
h=h+b' '*(n-len(h)) if len(h)<=n else h
open('$TMP/lie/model.safetensors','wb').write(struct.pack('<Q',len(h))+h+b[8+n:])"
expect_fail lying_safetensors_header "model.safetensors" $GPTKIT eval --model "$TMP/lie" --data "$F/data.bin" -b 1 -t 4
expect_fail missing_checkpoint "nowhere" $GPTKIT eval --model "$TMP/nowhere" --data "$F/data.bin"
expect_fail unknown_flag "unknown option" $GPTKIT pretrain --bogus
$GPTKIT pretrain --help | grep -q "usage: gptkit pretrain" && pass pretrain_help || fail pretrain_help
# flags come from the stage's option table: values are range-checked, --help shows each default
expect_fail flag_out_of_range "--final-lr-frac: expected a number in \[0, 1\], got '2'" $GPTKIT pretrain --final-lr-frac 2
expect_fail flag_not_a_number "--lr: expected a number" $GPTKIT sft --lr fast
$GPTKIT sft --help | grep -qE -- "--lr LR +peak learning rate \(default 0.0001\)" && pass help_shows_defaults \
  || fail help_shows_defaults "$($GPTKIT sft --help | grep -- --lr)"

# 6. self-contained checkpoints: the tokenizer travels inside (tokenizer.json, tokenizer_config.json,
#    generation_config.json; bos/eos ids in config.json), so a moved directory keeps it; older ones still load
K=$GK_ROOT/tests/fixtures/tok/kjv4k
$GPTKIT pretrain --model d2 --n-embd 32 --n-head 4 --vocab-size 4096 --n-ctx 16 -b 2 -t 11 --steps 2 --data "$F/data.bin" \
  --tokenizer tests/fixtures/tok/kjv4k --out "$TMP/self" --json >/dev/null 2>"$TMP/self.err"
if [ -f "$TMP/self/tokenizer.json" ] && [ -f "$TMP/self/tokenizer_config.json" ] && [ -f "$TMP/self/generation_config.json" ] \
  && py "
import json,sys
c=json.load(open('$TMP/self/config.json')); t=json.load(open('$TMP/self/tokenizer_config.json'))
g=json.load(open('$TMP/self/generation_config.json'))
ok = c['bos_token_id']==4087 and c['eos_token_id']==4091 and g['eos_token_id']==[4091,4087] and t['model_max_length']==16 \
  and t['eos_token']=='<|end|>' and 'chat_template' in t
sys.exit(0 if ok else 1)"; then pass checkpoint_carries_tokenizer; else fail checkpoint_carries_tokenizer "$(ls "$TMP/self") $(cat "$TMP/self.err")"; fi
mkdir -p "$TMP/elsewhere" && mv "$TMP/self" "$TMP/elsewhere/moved"
T0="In the beginning, 1234 <|end|> naïve"
want=$(printf '%s' "$T0" | $GPTKIT tokenizer encode --tokenizer "$K" --allow-special --ids)
got=$(cd "$TMP" && printf '%s' "$T0" | $GPTKIT tokenizer encode --tokenizer elsewhere/moved --ids)
[ -n "$want" ] && [ "$want" = "$got" ] && pass moved_checkpoint_tokenizer_encodes_alike || fail moved_checkpoint_tokenizer_encodes_alike "$want / $got"
if (cd "$TMP" && $GPTKIT sample --model elsewhere/moved --prompt "In the" --max-new 3 --temperature 0 >/dev/null 2>"$TMP/mv.err"); then
  pass moved_checkpoint_samples; else fail moved_checkpoint_samples "$(cat "$TMP/mv.err")"; fi
# an older checkpoint (recorded path only) still loads: its recorded path, relative to where it was trained
cp -rL "$TMP/elsewhere/moved" "$TMP/old" && rm -rf "$TMP/old/.ckpt" "$TMP/old/tokenizer.json" "$TMP/old/tokenizer_config.json" "$TMP/old/generation_config.json"
if $GPTKIT sample --model "$TMP/old" --prompt "In the" --max-new 3 --temperature 0 >/dev/null 2>"$TMP/old.err"; then
  pass older_checkpoint_recorded_path_loads; else fail older_checkpoint_recorded_path_loads "$(cat "$TMP/old.err")"; fi
