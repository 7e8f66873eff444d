# CLI tests for LoRA (docs/lora.md): sft --lora-rank on a tiny GPT-2 base learns (loss falls), writes a PEFT
# adapter (adapter_config.json + adapter_model.safetensors + the resume state) and never touches the base's
# bytes; --resume continues exactly; eval --adapter, eval --model ADAPTER and export --adapter (merged) agree;
# bad input is refused with a message. With the test venv: the safetensors package reads PEFT's names back, and
# with torch + transformers + peft, peft loads the adapter onto the base with our loss. QLoRA (5f): adapters over
# Q8_0 / Q4_0 / Q4_K GGUF bases kept quantized train as over the dequantized base, in less memory; serve --adapter
# (5g) answers as sample --adapter.
. "$(dirname "$0")/_lib.sh"
export OMP_NUM_THREADS=1
cd "$TMP"
cat > gen.py <<'EOF'
import json
things = ["cat","dog","tree","house","river","book","song","car","bird","fish","apple","city"]
with open("corpus.txt", "w") as f:
    for t in things: f.write(f"Tell me about the {t}. The {t} is good.\n")
with open("sft.jsonl", "w") as f:
    for t in things:
        f.write(json.dumps({"messages": [{"role": "user", "content": f"Tell me about the {t}."},
                                         {"role": "assistant", "content": f"The {t} is good."}]}) + "\n")
with open("prefs.jsonl", "w") as f:
    for t in things:
        f.write(json.dumps({"prompt": f"Tell me about the {t}.", "chosen": f"The {t} is good.", "rejected": f"The {t} is bad."}) + "\n")
EOF
python3 gen.py
$GPTKIT tokenizer train --input corpus.txt --vocab-size 280 --out tok >/dev/null 2>tok.err \
  && $GPTKIT tokenize --tokenizer tok --input corpus.txt --out-dir shards --val-fraction 0 >/dev/null 2>&1 \
  && $GPTKIT pretrain --model d2 --n-embd 64 --n-head 4 --vocab-size 280 --n-ctx 48 --data "shards/train_*.bin" \
       --tokenizer tok -b 4 -t 16 --steps 3 --out base --json >/dev/null 2>base.err \
  && pass lora_setup || fail lora_setup "$(tail -3 tok.err base.err 2>/dev/null)"
SHARD=$(ls shards/train_*.bin | head -1)
sum_base() { cat base/model.safetensors base/config.json | md5sum; }
before=$(sum_base)

# 1. sft with adapters: one JSON line per step with step and loss, loss falls, PEFT files, base bytes unchanged
$GPTKIT sft --init base --data sft.jsonl -b 6 --steps 24 --lr 1e-2 --warmup 2 --lora-rank 3 --lora-alpha 6 \
  --lora-targets c_attn,mlp.c_proj --out lo --json >lo.log 2>lo.err
rc=$?
if [ $rc -eq 0 ] && python3 -c "
import json,sys
L=[json.loads(l) for l in open('lo.log')]
s=[x for x in L if 'step' in x and 'loss' in x]
print(len(s), s[0]['loss'], s[-1]['loss'])
sys.exit(0 if len(s)==24 and s[-1]['loss'] < s[0]['loss'] - 0.5 else 1)" >lo.chk; then pass lora_sft_learns
else fail lora_sft_learns "rc=$rc $(cat lo.chk) $(tail -3 lo.err)"; fi
[ -f lo/adapter_config.json ] && [ -f lo/adapter_model.safetensors ] && [ -f lo/train_state.safetensors ] && [ ! -f lo/model.safetensors ] \
  && grep -q '"r":	3' lo/adapter_config.json && grep -q "$TMP/base\|$(cd base && pwd -P)" lo/adapter_config.json \
  && pass lora_peft_files || fail lora_peft_files "$(ls lo; cat lo/adapter_config.json)"
[ "$(sum_base)" = "$before" ] && pass lora_base_bytes_unchanged || fail lora_base_bytes_unchanged
# trainable parameters: 2 layers x (c_attn 3*(64+192) + mlp.c_proj 3*(256+64)) = 3456
$GPTKIT sft --init base --data sft.jsonl -b 6 --steps 1 --lora-rank 3 --lora-targets c_attn,mlp.c_proj --out lo1 >/dev/null 2>lo1.err
grep -q "3456 trainable parameters" lo1.err && pass lora_trainable_count || fail lora_trainable_count "$(grep lora: lo1.err)"

# 2. exact resume: stop at 12 and continue == the straight run
$GPTKIT sft --init base --data sft.jsonl -b 6 --steps 24 --lr 1e-2 --warmup 2 --lora-rank 3 --lora-alpha 6 \
  --lora-targets c_attn,mlp.c_proj --out lr --stop-at 12 --json >lr1.log 2>lr1.err \
  && $GPTKIT sft --resume lr --json >lr2.log 2>lr2.err
if python3 -c "
import json,sys
a=[json.loads(l) for l in open('lo.log')]; a=[x['loss'] for x in a if 'loss' in x and 'step' in x]
b=[json.loads(l) for l in open('lr1.log')]+[json.loads(l) for l in open('lr2.log')]; b=[x['loss'] for x in b if 'loss' in x and 'step' in x]
print(a[-3:], b[-3:]); sys.exit(0 if a==b else 1)" >lr.chk && cmp -s lo/adapter_model.safetensors lr/adapter_model.safetensors; then
  pass lora_resume_exact; else fail lora_resume_exact "$(cat lr.chk) $(tail -2 lr2.err)"; fi

# 3. the adapter at inference: --adapter, the adapter directory as the model, and the merged export agree
e1=$($GPTKIT eval --model base --adapter lo --data "$SHARD" -b 2 -t 16 --json 2>e1.err)
e2=$($GPTKIT eval --model lo --data "$SHARD" -b 2 -t 16 --json 2>e2.err)
$GPTKIT export --model base --adapter lo --format hf --out merged >/dev/null 2>ex.err
e3=$($GPTKIT eval --model merged --data "$SHARD" -b 2 -t 16 --json 2>e3.err)
e0=$($GPTKIT eval --model base --data "$SHARD" -b 2 -t 16 --json 2>e0.err)
$GPTKIT lora merge --model base --adapter lo --out merged2 >/dev/null 2>lm.err
e4=$($GPTKIT eval --model merged2 --data "$SHARD" -b 2 -t 16 --json 2>e4.err)
if python3 -c "
import json,sys
a,b,c,z,d=[json.loads(x)['loss'] for x in sys.argv[1:6]]
print(a,b,c,z,d); sys.exit(0 if a==b and abs(a-c)<1e-5 and abs(a-d)<1e-5 and abs(a-z)>1e-3 else 1)" "$e1" "$e2" "$e3" "$e0" "$e4" >ev.chk 2>&1; then
  pass lora_eval_adapter_merge; else fail lora_eval_adapter_merge "$(cat ev.chk) $(cat e1.err e2.err ex.err e3.err lm.err e4.err)"; fi

# sample / chat: --adapter DIR equals the adapter directory as --model (greedy), and both differ from the base
s1=$($GPTKIT sample --model base --adapter lo --prompt "Tell me" --max-new 8 --temperature 0 2>s1.err)
s2=$($GPTKIT sample --model lo --prompt "Tell me" --max-new 8 --temperature 0 2>s2.err)
c1=$($GPTKIT chat --model base --adapter lo -p "Tell me about the cat." --max-new 8 --temperature 0 2>c1.err)
c2=$($GPTKIT chat --model lo -p "Tell me about the cat." --max-new 8 --temperature 0 2>c2.err)
c0=$($GPTKIT chat --model base -p "Tell me about the cat." --max-new 8 --temperature 0 2>c0.err)
[ -n "$s1" ] && [ "$s1" = "$s2" ] && [ -n "$c1" ] && [ "$c1" = "$c2" ] && [ "$c1" != "$c0" ] && pass lora_sample_chat_adapter \
  || fail lora_sample_chat_adapter "[$s1] [$s2] [$c1] [$c2] [$c0] $(cat s1.err c1.err)"

# 4. bad input
expect_fail lora_bad_target "'q' is not a linear layer of this gpt2 model" \
  $GPTKIT sft --init base --data sft.jsonl --steps 1 --lora-rank 2 --lora-targets q,v --out bad1
expect_fail lora_rank_too_large "larger than target" \
  $GPTKIT sft --init base --data sft.jsonl --steps 1 --lora-rank 65 --out bad2
expect_fail lora_dropout_range "lora-dropout" \
  $GPTKIT sft --init base --data sft.jsonl --steps 1 --lora-rank 2 --lora-dropout 1 --out bad3
expect_fail lora_pretrain_needs_init "pass --init" \
  $GPTKIT pretrain --model d2 --data "shards/train_*.bin" --steps 1 --lora-rank 2 --out bad4
$GPTKIT pretrain --model d2 --n-embd 64 --n-head 4 --vocab-size 280 --n-ctx 48 --data "shards/train_*.bin" \
  --tokenizer tok -b 4 -t 16 --steps 3 --seed 5 --out base2 --json >/dev/null 2>&1
expect_fail lora_other_base "trained on another base" \
  $GPTKIT eval --model base2 --adapter lo --data "$SHARD" -t 16

# 5. DPO with adapters: the reference is the same weights with the adapters off, so step 0 has z = 0 (loss ln 2);
# the reward margin grows; resume continues exactly; an adapter as --policy is refused (merge it first)
$GPTKIT export --model base --adapter lo --format hf --out sftm >/dev/null 2>&1
$GPTKIT dpo --policy sftm --data prefs.jsonl --batch 6 --steps 8 --lr 1e-2 --warmup 1 --lora-rank 2 --out dp --json \
  >dp.log 2>dp.err
rc=$?
if [ $rc -eq 0 ] && python3 -c "
import json,math,sys
L=[json.loads(l) for l in open('dp.log')]; s=[x for x in L if 'step' in x and 'loss' in x]
print(s[0]['loss'], s[-1]['loss']); sys.exit(0 if len(s)==8 and abs(s[0]['loss']-math.log(2))<1e-5 and s[-1]['loss']<s[0]['loss'] else 1)" >dp.chk \
  && [ -f dp/adapter_model.safetensors ] && [ ! -f dp/model.safetensors ]; then pass lora_dpo_reference_is_base
else fail lora_dpo_reference_is_base "rc=$rc $(cat dp.chk) $(tail -3 dp.err)"; fi
$GPTKIT dpo --policy sftm --data prefs.jsonl --batch 6 --steps 8 --lr 1e-2 --warmup 1 --lora-rank 2 --out dq --stop-at 4 --json \
  >dq1.log 2>dq1.err && $GPTKIT dpo --resume dq --json >dq2.log 2>dq2.err
cmp -s dp/adapter_model.safetensors dq/adapter_model.safetensors && pass lora_dpo_resume_exact \
  || fail lora_dpo_resume_exact "$(tail -2 dq1.err dq2.err)"
expect_fail lora_dpo_adapter_policy "is a LoRA adapter" $GPTKIT dpo --policy lo --data prefs.jsonl --steps 1 --out dbad

# 5b. dropout trains (the losses part from the plain run's after the first steps) and resumes exactly
D="--init base --data sft.jsonl -b 6 --steps 10 --lr 1e-2 --warmup 2 --lora-rank 3 --lora-alpha 6 --lora-targets c_attn,mlp.c_proj --json"
$GPTKIT sft $D --lora-dropout 0.2 --out ld >ld.log 2>ld.err && $GPTKIT sft $D --lora-dropout 0.2 --out le --stop-at 5 >/dev/null 2>&1 \
  && $GPTKIT sft --resume le --json >/dev/null 2>le.err && $GPTKIT sft $D --out l0 >l0.log 2>&1
if python3 -c "
import json,sys
a=[json.loads(l)['loss'] for l in open('ld.log') if '\"step\"' in l and 'loss' in l]
b=[json.loads(l)['loss'] for l in open('l0.log') if '\"step\"' in l and 'loss' in l]
print(a[:4], b[:4]); sys.exit(0 if len(a)==10 and a[0]==b[0] and a[3:]!=b[3:] and a[-1]<a[0] else 1)" >ld.chk \
  && cmp -s ld/adapter_model.safetensors le/adapter_model.safetensors && grep -q '"lora_dropout":	0.2' ld/adapter_config.json; then
  pass lora_dropout_trains_resumes; else fail lora_dropout_trains_resumes "$(cat ld.chk) $(tail -2 ld.err le.err)"; fi

# 5c. reward model with adapters: the adapter owns the score head (PEFT SEQ_CLS, modules_to_save score), learns the
# pairs, resumes exactly, scores through `gptkit score`, and merges into a whole reward model with equal scores
R="--init sftm --data prefs.jsonl --val prefs.jsonl -b 6 --steps 8 --lr 1e-2 --lora-rank 2 --json"
$GPTKIT rm $R --out rml >rml.log 2>rml.err && $GPTKIT rm $R --out rmr --stop-at 4 >/dev/null 2>&1 \
  && $GPTKIT rm --resume rmr --json >/dev/null 2>rmr.err
if python3 -c "
import json,sys
L=[json.loads(l) for l in open('rml.log')]; f=[x for x in L if x.get('event')=='final'][0]
print(f); sys.exit(0 if f['val_accuracy']>0.9 else 1)" >rml.chk && grep -q SEQ_CLS rml/adapter_config.json \
  && grep -q '"score"' rml/adapter_config.json && [ ! -f rml/model.safetensors ] \
  && cmp -s rml/adapter_model.safetensors rmr/adapter_model.safetensors; then pass lora_rm_learns_resumes
else fail lora_rm_learns_resumes "$(cat rml.chk) $(tail -3 rml.err rmr.err)"; fi
$GPTKIT lora merge --model sftm --adapter rml --out rmm >/dev/null 2>rmm.err
sc1=$($GPTKIT score --rm rml --data prefs.jsonl 2>sc1.err | head -4)
sc2=$($GPTKIT score --rm rmm --data prefs.jsonl 2>sc2.err | head -4)
if python3 -c "
import sys
a=[float(l.split()[-1]) for l in sys.argv[1].splitlines()]; b=[float(l.split()[-1]) for l in sys.argv[2].splitlines()]
print(a, b); sys.exit(0 if len(a)==4 and all(abs(x-y)<1e-4 for x,y in zip(a,b)) else 1)" "$sc1" "$sc2" >sc.chk 2>&1; then
  pass lora_rm_score_merge; else fail lora_rm_score_merge "$(cat sc.chk sc1.err sc2.err rmm.err)"; fi

# 5d. PPO with adapters: policy, value and reward adapters over one frozen base (the reference = adapters off), so
# the step-0 KL is 0 up to sampling; OUT and OUT/value are adapters; resume is exact; the base's bytes unchanged
python3 -c "
import json
with open('prompts.jsonl','w') as f:
    for t in ['cat','dog','tree','house','river','book']: f.write(json.dumps({'prompt':f'Tell me about the {t}.'})+'\n')"
sum_sftm() { cat sftm/model.safetensors | md5sum; }
before_sftm=$(sum_sftm)
P="--policy sftm --reward rml --prompts prompts.jsonl --iters 4 -b 2 --samples 2 --max-new 6 --minibatch 2 --ppo-epochs 2 --lr 1e-3 --lora-rank 2 --json"
$GPTKIT ppo $P --out ppl >ppl.log 2>ppl.err && $GPTKIT ppo $P --out ppr --stop-at 2 >/dev/null 2>&1 \
  && $GPTKIT ppo --resume ppr --json >/dev/null 2>ppr.err
if python3 -c "
import json,sys
L=[json.loads(l) for l in open('ppl.log')]; s=[x for x in L if 'step' in x and 'kl' in x]
print(s[0]['kl']); sys.exit(0 if len(s)==4 and abs(s[0]['kl'])<1e-4 else 1)" >ppl.chk \
  && [ -f ppl/adapter_model.safetensors ] && [ -f ppl/value/adapter_model.safetensors ] && grep -q SEQ_CLS ppl/value/adapter_config.json \
  && grep -q "one frozen base" ppl.err && cmp -s ppl/adapter_model.safetensors ppr/adapter_model.safetensors \
  && cmp -s ppl/value/adapter_model.safetensors ppr/value/adapter_model.safetensors && [ "$(sum_sftm)" = "$before_sftm" ]; then
  pass lora_ppo_one_base_resume; else fail lora_ppo_one_base_resume "$(cat ppl.chk) $(tail -3 ppl.err ppr.err)"; fi
expect_fail lora_ppo_reward_other_base "policy's base" \
  $GPTKIT ppo --policy base --reward rml --prompts prompts.jsonl --iters 1 --lora-rank 2 --out ppbad

# 5e. continued pretraining through adapters: step 0 equals the full run's (the base exactly), the base's bytes kept
T="--init base --data shards/train_*.bin -b 4 -t 16 --steps 3 --lr 1e-3 --json"
$GPTKIT pretrain $T --out ptf >ptf.log 2>&1; $GPTKIT pretrain $T --lora-rank 2 --out ptl >ptl.log 2>ptl.err
if python3 -c "
import json,sys
a=[json.loads(l) for l in open('ptf.log') if '\"step\":0' in l][0]; b=[json.loads(l) for l in open('ptl.log') if '\"step\":0' in l][0]
print(a['loss'], b['loss']); sys.exit(0 if a['loss']==b['loss'] else 1)" >pt.chk && [ -f ptl/adapter_model.safetensors ] \
  && [ "$(sum_base)" = "$before" ]; then pass lora_pretrain_step0_is_base; else fail lora_pretrain_step0_is_base "$(cat pt.chk) $(tail -2 ptl.err)"; fi

# 5f. QLoRA: adapters over a quantized GGUF base (Q8_0, Q4_0, Q4_K) kept in its blocks. A LLaMA base 256 wide (Q4_K's
# super-block) written in each type; sft --lora-rank on the .gguf gives, step for step, the losses of the same run on
# that file dequantized to an fp32 checkpoint (the same function: float summation order only, 1e-4), the adapter
# names the .gguf, loads onto the dequantized base (the base checksum is the dequantized values'), and changes eval.
$GPTKIT pretrain --arch llama --model d2 --n-embd 256 --n-head 4 --n-kv-head 2 --n-inner 256 --vocab-size 280 --n-ctx 48 \
  --data "shards/train_*.bin" --tokenizer tok -b 4 -t 16 --steps 3 --out lbase --json >/dev/null 2>lbase.err \
  || fail qlora_base "$(tail -2 lbase.err)"
Q="--tokenizer tok --data sft.jsonl -b 6 --steps 6 --lr 1e-2 --warmup 1 --lora-rank 2 --lora-targets all-linear --json"
for ty in q8_0 q4_0 q4_k; do
  $GPTKIT export --model lbase --format gguf --type $ty --out lb_$ty.gguf >/dev/null 2>ex_$ty.err \
    && $GPTKIT export --model lb_$ty.gguf --format hf --out lbd_$ty >/dev/null 2>>ex_$ty.err \
    && $GPTKIT sft --init lb_$ty.gguf $Q --out lq_$ty >lq_$ty.log 2>lq_$ty.err \
    && $GPTKIT sft --init lbd_$ty $Q --out ld_$ty >ld_$ty.log 2>ld_$ty.err
  rc=$?
  g1=$($GPTKIT eval --model lb_$ty.gguf --adapter lq_$ty --data "$SHARD" -b 2 -t 16 --json 2>g1_$ty.err)
  g2=$($GPTKIT eval --model lbd_$ty --adapter lq_$ty --data "$SHARD" -b 2 -t 16 --json 2>g2_$ty.err)
  g0=$($GPTKIT eval --model lb_$ty.gguf --data "$SHARD" -b 2 -t 16 --json 2>/dev/null)
  if [ $rc -eq 0 ] && grep -q "lb_$ty.gguf\"" lq_$ty/adapter_config.json && python3 -c "
import json,sys
a=[json.loads(l)['loss'] for l in open('lq_$ty.log') if '\"step\"' in l and 'loss' in l]
b=[json.loads(l)['loss'] for l in open('ld_$ty.log') if '\"step\"' in l and 'loss' in l]
e1,e2,e0=(json.loads(x)['loss'] for x in sys.argv[1:4])
print(a, b, e1, e2, e0)
sys.exit(0 if len(a)==6 and len(b)==6 and all(abs(x-y)<1e-4 for x,y in zip(a,b)) and a[-1]<a[0] and abs(e1-e2)<1e-4 and abs(e1-e0)>1e-4 else 1)" \
    "$g1" "$g2" "$g0" >lq_$ty.chk 2>&1; then pass qlora_sft_$ty; else fail qlora_sft_$ty "rc=$rc $(cat lq_$ty.chk) $(tail -2 ex_$ty.err lq_$ty.err ld_$ty.err g1_$ty.err g2_$ty.err)"; fi
done
# DPO over a quantized base: the reference is the same blocks with the adapters off (z = 0 at step 0)
$GPTKIT dpo --policy lb_q4_0.gguf --tokenizer tok --data prefs.jsonl --batch 6 --steps 3 --lr 1e-2 --warmup 1 --lora-rank 2 \
  --out lqd --json >lqd.log 2>lqd.err
if python3 -c "
import json,math,sys
s=[json.loads(l) for l in open('lqd.log') if '\"step\"' in l and 'loss' in l]
print(s[0]['loss']); sys.exit(0 if len(s)==3 and abs(s[0]['loss']-math.log(2))<1e-5 else 1)" >lqd.chk 2>&1 && [ -f lqd/adapter_model.safetensors ]; then
  pass qlora_dpo; else fail qlora_dpo "$(cat lqd.chk) $(tail -2 lqd.err)"; fi
# merge onto the quantized base: a full fp32 checkpoint computing base + adapter
$GPTKIT lora merge --model lb_q4_k.gguf --adapter lq_q4_k --out lqm >/dev/null 2>lqm.err
g3=$($GPTKIT eval --model lqm --data "$SHARD" -b 2 -t 16 --json 2>/dev/null)
g1=$($GPTKIT eval --model lb_q4_k.gguf --adapter lq_q4_k --data "$SHARD" -b 2 -t 16 --json 2>/dev/null)
if [ -f lqm/model.safetensors ] && python3 -c "
import json,sys; a,b=(json.loads(x)['loss'] for x in sys.argv[1:3]); print(a,b); sys.exit(0 if abs(a-b)<1e-5 else 1)" "$g1" "$g3" >lqm.chk 2>&1; then
  pass qlora_merge_fp32; else fail qlora_merge_fp32 "$(cat lqm.chk lqm.err)"; fi
# memory: a wider base (12.6M parameters) — the QLoRA run's peak RSS (metrics.jsonl) below the fp32-base LoRA run's
$GPTKIT pretrain --arch llama --model d4 --n-embd 512 --n-head 8 --n-kv-head 4 --n-inner 1536 --vocab-size 280 --n-ctx 48 \
  --data "shards/train_*.bin" --tokenizer tok -b 2 -t 16 --steps 1 --out wbase --json >/dev/null 2>&1 \
  && $GPTKIT export --model wbase --format gguf --type q4_k --out wb.gguf >/dev/null 2>&1 \
  && $GPTKIT export --model wb.gguf --format hf --out wbd >/dev/null 2>&1
W="--tokenizer tok --data sft.jsonl -b 6 --steps 2 --lora-rank 4 --lora-targets all-linear"
$GPTKIT sft --init wb.gguf $W --out wq >/dev/null 2>wq.err; $GPTKIT sft --init wbd $W --out wd >/dev/null 2>wd.err
if python3 -c "
import json,sys
r=[[json.loads(l)['peak_rss_mb'] for l in open(f+'/metrics.jsonl') if '\"resources\"' in l][0] for f in ('wq','wd')]
print('qlora q4_k %.1f MB, fp32-base lora %.1f MB' % tuple(r)); sys.exit(0 if r[0] < r[1] - 20 else 1)" >wq.chk 2>&1; then
  pass "qlora_peak_rss_lower ($(cat wq.chk))"; else fail qlora_peak_rss_lower "$(cat wq.chk) $(tail -2 wq.err wd.err)"; fi

# 5g. serve --adapter: the server loads the base and the adapter unmerged; its greedy completion equals gptkit
# sample --adapter's, over an fp32 base and over a quantized one
SERVE_OK=1
$GPTKIT serve --model x --port 0 2>&1 | grep -q "built without an HTTP server" && SERVE_OK=0
[ $SERVE_OK = 0 ] && skip serve_adapter_matches_sample "this gptkit was built without libmicrohttpd"
for pair in "base lo" "lb_q8_0.gguf lq_q8_0"; do
  [ $SERVE_OK = 1 ] || break
  set -- $pair
  want=$($GPTKIT sample --model $1 --tokenizer tok --adapter $2 --prompt "Tell me about the" --max-new 8 --temperature 0 2>sv.err)
  start_ready "listening on http://" sv.out sv.err2 $GPTKIT serve --model $1 --tokenizer tok --adapter $2 --port 0
  SPID=$READY_PID; SFD=$READY_FD
  URL=$(grep -o 'http://[0-9.]*:[0-9]*' sv.out | head -1)
  got=$(python3 -c "
import json,sys,urllib.request
r=urllib.request.Request(sys.argv[1]+'/v1/completions', data=json.dumps({'prompt':'Tell me about the','max_tokens':8,'temperature':0}).encode(),
                         headers={'Content-Type':'application/json'})
print(json.load(urllib.request.urlopen(r, timeout=60))['choices'][0]['text'])" "$URL" 2>&1)
  kill -TERM "$SPID" 2>/dev/null; cat <&"$SFD" >/dev/null; exec {SFD}<&-; wait "$SPID"
  [ "$READY" = 1 ] && [ -n "$want" ] && [ "$got" = "$want" ] && pass "serve_adapter_matches_sample_$2" \
    || fail "serve_adapter_matches_sample_$2" "[$got] vs [$want] $(cat sv.err sv.err2 | tail -3)"
done
$GPTKIT sample --model base --tokenizer tok --prompt "Tell me about the" --max-new 8 --temperature 0 >sv0.out 2>/dev/null
[ "$(cat sv0.out)" != "$($GPTKIT sample --model base --tokenizer tok --adapter lo --prompt "Tell me about the" --max-new 8 --temperature 0 2>/dev/null)" ] \
  && pass serve_adapter_changes_output || fail serve_adapter_changes_output "the adapter does not change the greedy output"

# 6. the ecosystem's readers
if need_py lora_safetensors_names safetensors numpy; then
  if "$PYT" -c "
import json,sys
from safetensors.numpy import load_file
t=load_file('lo/adapter_model.safetensors'); c=json.load(open('lo/adapter_config.json'))
want={f'base_model.model.transformer.h.{l}.{m}.lora_{ab}.weight' for l in range(2) for m in ('attn.c_attn','mlp.c_proj') for ab in 'AB'}
ok=set(t)==want and t['base_model.model.transformer.h.0.attn.c_attn.lora_A.weight'].shape==(3,64) \
  and t['base_model.model.transformer.h.1.attn.c_attn.lora_B.weight'].shape==(192,3) \
  and t['base_model.model.transformer.h.0.mlp.c_proj.lora_A.weight'].shape==(3,256) \
  and c['peft_type']=='LORA' and c['r']==3 and c['lora_alpha']==6 and sorted(c['target_modules'])==['attn.c_attn','mlp.c_proj']
print(sorted(t)[:2]); sys.exit(0 if ok else 1)" >st.chk 2>&1; then pass lora_safetensors_names; else fail lora_safetensors_names "$(cat st.chk)"; fi
fi
if need_py lora_peft_loads torch transformers peft; then
  if "$PYT" -c "
import sys, numpy as np, torch
from transformers import GPT2LMHeadModel
from peft import PeftModel
tok=np.fromfile(sys.argv[1], dtype=np.uint16, offset=1024).astype(np.int64)
x=torch.tensor(tok[:32]).view(2,16); y=torch.tensor(tok[1:33]).view(2,16)
m=PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained('base').double(), 'lo').double().eval()
with torch.no_grad(): l=torch.nn.functional.cross_entropy(m(input_ids=x).logits.view(32,-1), y.view(32)).item()
import json; want=json.loads(sys.argv[2])['loss']
print(l, want); sys.exit(0 if abs(l-want)<1e-4 else 1)" "$SHARD" \
    "$($GPTKIT eval --model base --adapter lo --data "$SHARD" -b 2 -t 16 --batches 1 --json 2>/dev/null)" >pf.chk 2>&1; then
    pass lora_peft_loads; else fail lora_peft_loads "$(tail -3 pf.chk)"; fi
fi
# peft reads a reward adapter (task SEQ_CLS, the head in modules_to_save) onto GPT2ForSequenceClassification: the
# head and an adapter matrix as gptkit wrote them, and the score of a token sequence equals the merged model's
if need_py lora_peft_reward_adapter torch transformers peft safetensors; then
  if "$PYT" -c "
import sys, torch
from transformers import GPT2ForSequenceClassification
from peft import PeftModel
from safetensors.torch import load_file
t=load_file('rml/adapter_model.safetensors')
base=GPT2ForSequenceClassification.from_pretrained('sftm', num_labels=1).double().eval()
m=PeftModel.from_pretrained(base, 'rml').double().eval()
head=[p for n,p in m.named_parameters() if n.endswith('score.modules_to_save.default.weight')][0]
a=[p for n,p in m.named_parameters() if n.endswith('h.0.attn.c_attn.lora_A.default.weight')][0]
ok=torch.allclose(head, t['base_model.model.score.weight'].double()) and torch.allclose(a, t['base_model.model.transformer.h.0.attn.c_attn.lora_A.weight'].double())
x=torch.tensor([[3,17,40,2,99,5]])
with torch.no_grad():
    s1=m(input_ids=x).logits.item()
    s2=GPT2ForSequenceClassification.from_pretrained('rmm', num_labels=1).double().eval()(input_ids=x).logits.item()
print(ok, s1, s2); sys.exit(0 if ok and abs(s1-s2)<1e-5 else 1)" >pr.chk 2>&1; then pass lora_peft_reward_adapter
  else fail lora_peft_reward_adapter "$(tail -3 pr.chk)"; fi
fi
