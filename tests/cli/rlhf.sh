# CLI tests for gptkit rm / score / ppo / dpo / compare on a synthetic learnable preference: responses
# "The X is good." > "... fine." > "... old." > "... bad." The SFT model says all four equally often; the
# reward model must learn the order (held-out accuracy), PPO must raise the mean RM score with the KL to
# the SFT model under the target, and both PPO and DPO must beat SFT in `compare`. Also exact resume,
# Ctrl-C, and clear errors on bad input. Tiny model (2 layers, 64 wide): well under a minute on 2 cores.
. "$(dirname "$0")/_lib.sh"
export OMP_NUM_THREADS=1   # a 64-wide model gains nothing from threads; one thread also fixes the float order
py() { python3 -c "$@"; }
cd "$TMP"
cat > gen.py <<'EOF'
import json, random
R = random.Random(7)
things = ["cat","dog","tree","house","river","book","song","car","bird","fish","apple","city","garden","lamp","boat",
          "chair","cloud","horse","road","stone","table","train","window","flower"]
order = ["good", "fine", "old", "bad"]          # the hidden rule: earlier is better
train_things, val_things = things[:18], things[18:]
prompt = lambda t: f"Tell me about the {t}."
resp = lambda t, a: f"The {t} is {a}."
with open("corpus.txt", "w") as f:
    for t in things:
        for a in order: f.write(prompt(t) + " " + resp(t, a) + "\n")
with open("sft.jsonl", "w") as f:
    for t in train_things:
        for a in order:
            f.write(json.dumps({"messages": [{"role": "user", "content": prompt(t)}, {"role": "assistant", "content": resp(t, a)}]}) + "\n")
def prefs(ts, path, n):
    with open(path, "w") as f:
        for i in range(n):
            t = R.choice(ts)
            if i % 3 == 2:
                f.write(json.dumps({"prompt": prompt(t), "ranked": [resp(t, a) for a in order]}) + "\n")
            else:
                a, b = sorted(R.sample(range(4), 2))
                p = prompt(t) if i % 2 else [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt(t)}]
                f.write(json.dumps({"prompt": p, "chosen": resp(t, order[a]), "rejected": resp(t, order[b])}) + "\n")
prefs(train_things, "prefs.jsonl", 60)
prefs(val_things, "val.jsonl", 24)
with open("prompts.jsonl", "w") as f:
    for t in train_things: f.write(json.dumps({"prompt": prompt(t)}) + "\n")
with open("eval_prompts.jsonl", "w") as f:
    for t in things: f.write(json.dumps({"prompt": [{"role": "user", "content": prompt(t)}]}) + "\n")
EOF
python3 gen.py
$GPTKIT tokenizer train --input corpus.txt --vocab-size 300 --out tok >/dev/null 2>tok.err \
  && $GPTKIT tokenize --tokenizer tok --input corpus.txt --out-dir shards --val-fraction 0 >/dev/null 2>&1 \
  && $GPTKIT pretrain --model d2 --n-embd 64 --n-head 4 --vocab-size 300 --n-ctx 48 --data "shards/train_*.bin" \
       --tokenizer tok -b 4 -t 16 --steps 5 --out base --json >/dev/null 2>base.err \
  && $GPTKIT sft --init base --data sft.jsonl -b 16 --steps 120 --lr 3e-3 --warmup 10 --out sft --json >sft.log 2>sft.err \
  && pass rlhf_sft_start || fail rlhf_sft_start "$(tail -3 tok.err base.err sft.err 2>/dev/null)"

# 1. reward model: held-out accuracy on the hidden order, metrics per step, normalisation
$GPTKIT rm --init sft --data prefs.jsonl --val val.jsonl --normalize sft.jsonl -b 8 --epochs 8 --lr 1e-3 --warmup 3 \
  --out rm --json >rm.log 2>rm.err
rc=$?
if [ $rc -eq 0 ] && py "
import json,sys
L=[json.loads(l) for l in open('rm.log')]
steps=[x for x in L if 'loss' in x and 'accuracy' in x and 'margin' in x]
fin=[x for x in L if x.get('event')=='final']; nrm=[x for x in L if x.get('event')=='normalize']
print(len(steps), fin, nrm)
sys.exit(0 if len(steps)==64 and fin and fin[0]['val_accuracy']>=0.95 and nrm else 1)" >rm.chk; then pass rm_heldout_accuracy
else fail rm_heldout_accuracy "rc=$rc $(cat rm.chk) $(tail -3 rm.err)"; fi
grep -q GPT2ForSequenceClassification rm/config.json && [ -f rm/reward.json ] && [ -f rm/train_state.safetensors ] \
  && pass rm_checkpoint || fail rm_checkpoint "$(ls rm)"

# 2. score: one reward per (prompt, response); chosen above rejected; demonstrations average ~0
$GPTKIT score --rm rm --data val.jsonl --json >score.log 2>score.err
if py "
import json,sys
L=[json.loads(l) for l in open('score.log')]
by={}
for x in L: by.setdefault(x['line'],[]).append((x['index'],x['reward']))
ok=all(all(a[1]>b[1] for a,b in zip(v,v[1:])) for v in by.values())
print(len(L), ok)
sys.exit(0 if len(L)==sum(len(v) for v in by.values()) and len(by)==24 and ok else 1)" >score.chk; then pass score_orders_responses
else fail score_orders_responses "$(cat score.chk score.err)"; fi
$GPTKIT score --rm rm --data sft.jsonl >demo.tsv 2>/dev/null
if py "
import sys
r=[float(l.split('\t')[2]) for l in open('demo.tsv')]
print(len(r), sum(r)/len(r))
sys.exit(0 if len(r)==72 and abs(sum(r)/len(r))<0.02 else 1)" >norm.chk; then pass rm_normalized_mean_zero; else fail rm_normalized_mean_zero "$(cat norm.chk)"; fi

# 3. PPO raises the RM score with the KL under the target (--kl-target 3)
PPO="--policy sft --reward rm --prompts prompts.jsonl -b 4 --samples 4 --max-new 12 --lr 3e-4 --vf-lr 1e-3 --ppo-epochs 2 --minibatch 8 --beta 0.5 --kl-target 3 --sample-every 10 --seed 11 --json"
$GPTKIT ppo $PPO --iters 20 --out ppo >ppo.log 2>ppo.err
rc=$?
if [ $rc -eq 0 ] && py "
import json,sys
L=[json.loads(l) for l in open('ppo.log') if '\"score\"' in l]
s=[x['score'] for x in L]; kl=[x['kl'] for x in L]
keys=all(all(k in x for k in ('entropy','clip_frac','value_loss','approx_kl','resp_len','beta','t_rollout','t_update')) for x in L)
first=sum(s[:3])/3; last=sum(s[-5:])/5
# KL per iteration is a 16-rollout sample mean (noisy: one iteration of a run under ASAN's float order read 3.07
# while the run's mean was 1.5): the run's mean must stay under the target and no iteration above 1.5x it
print('score %.3f -> %.3f, mean kl %.3f, max kl %.3f' % (first, last, sum(kl)/len(kl), max(kl)), keys)
sys.exit(0 if len(L)==20 and keys and last > first + 0.5 and sum(kl)/len(kl) < 3.0 and max(kl) < 4.5 else 1)" >ppo.chk; then pass ppo_raises_score_kl_bounded
else fail ppo_raises_score_kl_bounded "rc=$rc $(cat ppo.chk) $(tail -3 ppo.err)"; fi
grep -q '"sample"' ppo.log && [ -f ppo/value/model.safetensors ] && ! grep -q score_head\":\ true ppo/config.json \
  && pass ppo_outputs || fail ppo_outputs "$(ls ppo)"

# 4. compare: PPO beats its SFT start, with a 95% interval above one half
$GPTKIT compare --a ppo --b sft --rm rm --prompts eval_prompts.jsonl --samples 4 --max-new 12 --temperature 1 --json >cmp.log 2>cmp.err
if py "
import json,sys
s=json.loads(open('cmp.log').read().splitlines()[-1])
print(s)
sys.exit(0 if s['n']==96 and s['win_rate']>0.5 and s['ci_lo']>0.5 and s['ci_lo']<s['win_rate']<s['ci_hi'] else 1)" >cmp.chk; then pass compare_ppo_beats_sft
else fail compare_ppo_beats_sft "$(cat cmp.chk cmp.err)"; fi
# the judged form (best-of-2 for A): the reward model's verdict over every prompt; these synthetic prompts are not
# the demo's, so the gold rule judges none of them
$GPTKIT compare --a ppo --b sft --rm rm --prompts eval_prompts.jsonl --gold --best-of 2 --max-new 12 --temperature 1 --json >cmpg.log 2>cmpg.err
if py "
import json,sys
r={j['judge']:j for j in map(json.loads,open('cmpg.log').read().splitlines()) if 'judge' in j}
print(r)
sys.exit(0 if r['rm']['n']==24 and r['rm']['win_rate']>0.5 and r['gold']['n']==0 else 1)" >cmpg.chk; then pass compare_gold_best_of
else fail compare_gold_best_of "$(cat cmpg.chk cmpg.err | tail -5)"; fi

# 5. DPO: implicit-reward accuracy on held-out pairs, and it beats SFT by the same comparison
$GPTKIT dpo --policy sft --data prefs.jsonl --val val.jsonl --beta 0.1 -b 8 --epochs 3 --lr 5e-4 --warmup 3 --out dpo --json >dpo.log 2>dpo.err
rc=$?
$GPTKIT compare --a dpo --b sft --rm rm --prompts eval_prompts.jsonl --samples 4 --max-new 12 --temperature 1 --json >cmpd.log 2>&1
if [ $rc -eq 0 ] && py "
import json,sys
fin=[json.loads(l) for l in open('dpo.log') if 'final' in l][0]
s=json.loads(open('cmpd.log').read().splitlines()[-1])
print(fin, s)
sys.exit(0 if fin['val_accuracy']>=0.95 and s['win_rate']>0.5 else 1)" >dpo.chk; then pass dpo_beats_sft
else fail dpo_beats_sft "rc=$rc $(cat dpo.chk) $(tail -3 dpo.err)"; fi

# 6. exact resume (PPO and RM), Ctrl-C
$GPTKIT ppo $PPO --iters 4 --out pfull >pf.log 2>/dev/null
$GPTKIT ppo $PPO --iters 4 --stop-at 2 --out ppart >pp1.log 2>/dev/null
$GPTKIT ppo --resume ppart --json >pp2.log 2>/dev/null
if py "
import json,sys
L=lambda p:[(x['score'],x['kl'],x['value_loss']) for x in map(json.loads,open(p)) if 'score' in x and 'step' in x and 'kl' in x]
full=L('pf.log'); part=L('pp1.log')+L('pp2.log')
print(full, part) if full!=part else None
sys.exit(0 if len(full)==4 and full==part else 1)"; then pass ppo_resume_exact; else fail ppo_resume_exact; fi
cmp -s pfull/model.safetensors ppart/model.safetensors && cmp -s pfull/value/model.safetensors ppart/value/model.safetensors \
  && pass ppo_resume_same_weights || fail ppo_resume_same_weights
# a kill between the policy's and the value model's files of one save, or right before its switch: the two
# models stay one checkpoint unit, and the resumed run ends with the uninterrupted run's weights
quiet() { "$@" >/dev/null 2>&1; } 2>/dev/null
bad=""
for point in save:model:3 ckpt:before-switch:2 ckpt:after-switch:3; do
  d=pk-${point//:/-}
  GPTKIT_CRASH_AT=$point quiet $GPTKIT ppo $PPO --iters 4 --save-every 1 --out $d; rc=$?
  [ $rc -eq 137 ] || { bad="$bad $point(rc=$rc)"; continue; }
  if [ -e $d/train_state.safetensors ]; then $GPTKIT ppo --resume $d >/dev/null 2>&1
  else $GPTKIT ppo $PPO --iters 4 --out $d >/dev/null 2>&1; fi
  cmp -s pfull/model.safetensors $d/model.safetensors && cmp -s pfull/value/model.safetensors $d/value/model.safetensors \
    || bad="$bad $point"
done
[ -z "$bad" ] && pass ppo_killed_in_saves_resumes_exact || fail ppo_killed_in_saves_resumes_exact "$bad"
RMA="--init sft --data prefs.jsonl -b 8 --steps 6 --lr 1e-3 --json"
$GPTKIT rm $RMA --out rfull >rf.log 2>/dev/null; $GPTKIT rm $RMA --stop-at 3 --out rpart >/dev/null 2>&1; $GPTKIT rm --resume rpart --json >/dev/null 2>&1
cmp -s rfull/model.safetensors rpart/model.safetensors && pass rm_resume_exact || fail rm_resume_exact
DPA="--policy sft --data prefs.jsonl -b 8 --steps 6 --lr 5e-4 --json"
$GPTKIT dpo $DPA --out dfull >/dev/null 2>&1; $GPTKIT dpo $DPA --stop-at 3 --out dpart >/dev/null 2>&1; $GPTKIT dpo --resume dpart --json >/dev/null 2>&1
cmp -s dfull/model.safetensors dpart/model.safetensors && pass dpo_resume_exact || fail dpo_resume_exact
start_ready '"score"' pint.log pint.err $GPTKIT ppo $PPO --iters 100000 --out pint
interrupt_ready; rc=$?
if [ $READY = 1 ] && [ $rc -eq 130 ] && [ -f pint/train_state.safetensors ] && [ -f pint/value/train_state.safetensors ]; then pass ppo_sigint_saves
else fail ppo_sigint_saves "ready=$READY rc=$rc $(tail -2 pint.err)"; fi

# 7. bad input: file:line:field, non-zero exit, no crash
printf '%s\n' '{"prompt":"a","chosen":"x","rejected":"y"}' '{"prompt":"b","ranked":["only one"]}' > bad.jsonl
expect_fail rm_bad_prefs_line 'bad.jsonl:2: field "ranked"' $GPTKIT rm --init sft --data bad.jsonl --out rbad
printf '%s\n' '{"prompt":"a","chosen":"x"}' > bad2.jsonl
expect_fail dpo_bad_prefs_field 'bad2.jsonl:1: field "rejected"' $GPTKIT dpo --policy sft --data bad2.jsonl --out dbad
expect_fail score_needs_rm "not a reward model" $GPTKIT score --rm sft --data val.jsonl
expect_fail ppo_missing_prompts "nowhere.jsonl" $GPTKIT ppo --policy sft --reward rm --prompts nowhere.jsonl --out pbad
expect_fail ppo_policy_is_rm "score head" $GPTKIT ppo --policy rm --reward rm --prompts prompts.jsonl --out pbad
expect_fail compare_needs_args "required" $GPTKIT compare --a sft
$GPTKIT ppo --help | grep -q "usage: gptkit ppo" && $GPTKIT rm --help | grep -q "usage: gptkit rm" && pass rlhf_help || fail rlhf_help

# 8. --precision bf16 in the finetuning stages (pretraining's is in pretrain.sh): SFT, RM and DPO train like fp32,
#    the precision is stored for --resume (bf16 resume == uninterrupted bf16), and DPO's step-0 loss is ln 2
#    (its reference log-probs are taken in the same precision as the policy's)
if $GPTKIT pretrain --model d2 --n-embd 32 --n-head 4 --vocab-size 300 --n-ctx 48 --data "shards/train_*.bin" \
     -b 2 -t 8 --steps 1 --precision bf16 --out b16probe --json >/dev/null 2>b16probe.err; then
  SFTB="--init base --data sft.jsonl -b 16 --steps 40 --lr 3e-3 --warmup 10 --json"
  $GPTKIT sft $SFTB --out s32 >s32.log 2>/dev/null; $GPTKIT sft $SFTB --precision bf16 --out s16 >s16.log 2>s16.err
  if py "
import json,sys
L=lambda p:[json.loads(l)['loss'] for l in open(p) if '\"loss\"' in l and '\"step\"' in l]
a,b=L('s32.log'),L('s16.log'); fa,fb=sum(a[-10:])/10,sum(b[-10:])/10
print(len(a),len(b),fa,fb)
sys.exit(0 if len(a)==len(b)==40 and a!=b and fb<0.5*b[0] and abs(fa-fb)<0.05*fa+0.02 else 1)" >s16.chk; then pass sft_bf16_like_fp32
  else fail sft_bf16_like_fp32 "$(cat s16.chk s16.err)"; fi
  $GPTKIT rm $RMA --precision bf16 --out rb16 >rb16.log 2>/dev/null
  $GPTKIT rm $RMA --precision bf16 --stop-at 3 --out rb16p >/dev/null 2>&1; $GPTKIT rm --resume rb16p --json >/dev/null 2>&1
  if py "
import json,sys
L=lambda p:[json.loads(l)['loss'] for l in open(p) if '\"loss\"' in l and '\"step\"' in l]
a,b=L('rf.log'),L('rb16.log')
print(a,b)
sys.exit(0 if len(a)==len(b)==6 and a!=b and all(abs(x-y)<0.05 for x,y in zip(a,b)) else 1)" >rb16.chk; then pass rm_bf16_like_fp32
  else fail rm_bf16_like_fp32 "$(cat rb16.chk)"; fi
  cmp -s rb16/model.safetensors rb16p/model.safetensors && pass rm_bf16_resume_exact || fail rm_bf16_resume_exact
  $GPTKIT dpo --policy sft --data prefs.jsonl -b 8 --steps 2 --lr 5e-4 --precision bf16 --out db16 --json >db16.log 2>db16.err
  if py "
import json,sys,math
L=[json.loads(l) for l in open('db16.log') if '\"loss\"' in l and '\"step\"' in l]
print(L[:1])
sys.exit(0 if L and abs(L[0]['loss']-math.log(2))<1e-6 and L[0]['reward_chosen']==0 and L[0]['reward_rejected']==0 else 1)" >db16.chk; then pass dpo_bf16_step0_is_ln2
  else fail dpo_bf16_step0_is_ln2 "$(cat db16.chk db16.err)"; fi
elif grep -q "needs oneDNN" b16probe.err; then
  skip rlhf_bf16 "bf16 unavailable on this build/CPU: $(cat b16probe.err)"
else fail bf16_probe "$(cat b16probe.err)"; fi
