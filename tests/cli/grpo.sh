# CLI tests for gptkit grpo on a toy verifiable task: "What color is the X?" has one right answer per thing
# (given in the prompt file's "answer" field); the SFT model names each of the four colours equally often, so
# it is right about a quarter of the time. GRPO must raise the mean reward and the held-out greedy accuracy
# (on things it never trained on: the right colour follows a rule the answers share), stay near the reference
# (KL logged), resume exactly, and refuse bad input with file:line messages. Tiny model (2 layers, 64 wide).
. "$(dirname "$0")/_lib.sh"
export OMP_NUM_THREADS=1
py() { python3 -c "$@"; }
cd "$TMP"
cat > gen.py <<'PYEOF'
import json, random
R = random.Random(11)
things = ["cat","dog","tree","house","river","book","song","car","bird","fish","apple","city","garden","lamp","boat",
          "chair","cloud","horse","road","stone","table","train","window","flower"]
colors = ["red", "blue", "green", "gold"]
right = "green"          # the rule: every thing is green (a verifiable reward; SFT says each colour a quarter of the time)
train_things, val_things = things[:18], things[18:]
prompt = lambda t: f"What color is the {t}?"
resp = lambda t, c: f"The {t} is {c}. The answer is {c}."
with open("corpus.txt", "w") as f:
    for t in things:
        for c in colors: f.write(prompt(t) + " " + resp(t, c) + "\n")
with open("sft.jsonl", "w") as f:
    for t in train_things:
        for c in colors:
            f.write(json.dumps({"messages": [{"role": "user", "content": prompt(t)}, {"role": "assistant", "content": resp(t, c)}]}) + "\n")
with open("prompts.jsonl", "w") as f:
    for t in train_things: f.write(json.dumps({"prompt": prompt(t), "answer": right}) + "\n")
with open("val.jsonl", "w") as f:
    for t in val_things: f.write(json.dumps({"prompt": [{"role": "user", "content": prompt(t)}], "answer": right}) + "\n")
with open("bad_noanswer.jsonl", "w") as f:
    f.write(json.dumps({"prompt": prompt("cat"), "answer": right}) + "\n")
    f.write(json.dumps({"prompt": prompt("dog")}) + "\n")
with open("bad_check.jsonl", "w") as f:
    f.write(json.dumps({"prompt": prompt("cat"), "answer": right, "check": "nope"}) + "\n")
PYEOF
python3 gen.py
$GPTKIT tokenizer train --input corpus.txt --vocab-size 300 --out tok >/dev/null 2>tok.err \
  && $GPTKIT tokenize --tokenizer tok --input corpus.txt --out-dir shards --val-fraction 0 >/dev/null 2>&1 \
  && $GPTKIT pretrain --model d2 --n-embd 64 --n-head 4 --vocab-size 300 --n-ctx 48 --data "shards/train_*.bin" \
       --tokenizer tok -b 4 -t 16 --steps 5 --out base --json >/dev/null 2>base.err \
  && $GPTKIT sft --init base --data sft.jsonl -b 16 --steps 120 --lr 3e-3 --warmup 10 --out sft --json >sft.log 2>sft.err \
  && pass grpo_sft_start || fail grpo_sft_start "$(tail -3 tok.err base.err sft.err 2>/dev/null)"

# 1. GRPO raises the verifiable reward and the held-out accuracy; the metrics carry reward, accuracy and KL
G="--policy sft --prompts prompts.jsonl --val val.jsonl -b 4 -G 8 --max-new 16 --lr 2e-3 --beta 0.04 --minibatch 16 --sample-every 0"
$GPTKIT grpo $G --iters 16 --out g1 --json >g1.log 2>g1.err
rc=$?
if [ $rc -eq 0 ] && py "
import json,sys
L=[json.loads(l) for l in open('g1.log')]
st=[x for x in L if 'reward' in x and 'accuracy' in x and 'kl' in x and 'kl_k3' in x and 'loss' in x]
start=[x for x in L if x.get('event')=='start']; fin=[x for x in L if x.get('event')=='final']
r0=sum(x['reward'] for x in st[:3])/3; r1=sum(x['reward'] for x in st[-3:])/3
a0=start[0]['val_accuracy']; a1=fin[0]['val_accuracy']
print('reward', r0, '->', r1, 'held-out', a0, '->', a1, 'kl', st[-1]['kl'])
sys.exit(0 if len(st)==16 and r1 >= r0 + 0.3 and r1 >= 0.7 and a1 >= a0 + 0.3 and st[-1]['kl'] > 0 else 1)
" >g1.check 2>&1; then pass grpo_raises_reward; else fail grpo_raises_reward "rc=$rc $(cat g1.check) $(tail -3 g1.err)"; fi
[ -f g1/metrics.jsonl ] && grep -q '"stage":"grpo"' g1/metrics.jsonl && pass grpo_metrics_jsonl || fail grpo_metrics_jsonl

# 2. the human log line and the summary
$GPTKIT grpo $G --iters 2 --out g2 >g2.out 2>g2.err && grep -q "grpo: mean reward" g2.out && grep -q "held-out accuracy" g2.out \
  && grep -q "grpo step 2/2 | reward .* | acc .* | kl" g2.out && pass grpo_human_output || fail grpo_human_output "$(tail -n 3 g2.out g2.err)"

# 3. exact resume: 2 + 2 iterations equal 4, bit for bit, in the log and the weights; --token-norm is stored
$GPTKIT grpo $G --iters 4 --token-norm --out gfull --json >gf.log 2>/dev/null
$GPTKIT grpo $G --iters 4 --token-norm --stop-at 2 --out gpart >/dev/null 2>&1
$GPTKIT grpo --resume gpart --json >gp.log 2>/dev/null
if py "
import json,sys
f=[json.loads(l) for l in open('gf.log')]; p=[json.loads(l) for l in open('gp.log')]
key=lambda x: (x['step'], x['reward'], x['loss'], x['kl'])
full=[key(x) for x in f if 'reward' in x]; part=[key(x) for x in p if 'reward' in x]
sys.exit(0 if len(full)==4 and full[2:]==part else 1)"; then pass grpo_resume_exact; else fail grpo_resume_exact; fi
cmp -s gfull/model.safetensors gpart/model.safetensors && pass grpo_resume_same_weights || fail grpo_resume_same_weights

# 4. errors name the file and line
expect_fail grpo_no_answer 'bad_noanswer.jsonl:2: .*answer' $GPTKIT grpo --policy sft --prompts bad_noanswer.jsonl --out gx
expect_fail grpo_bad_check 'bad_check.jsonl:1: field "check"' $GPTKIT grpo --policy sft --prompts bad_check.jsonl --out gx
expect_fail grpo_group_one 'group must be at least 2' $GPTKIT grpo --policy sft --prompts prompts.jsonl -G 1 --out gx
expect_fail grpo_no_policy 'no policy' $GPTKIT grpo --prompts prompts.jsonl --out gx

# 5. Ctrl-C saves a resumable checkpoint (exit 130); --resume finishes the run
start_ready '"step":' gi.log gi.err $GPTKIT grpo $G --iters 400 --out gint --json
if [ $READY = 1 ]; then interrupt_ready; rc=$?; else rc=-1; fi
if [ $rc -eq 130 ] && [ -f gint/train_state.safetensors ]; then
  $GPTKIT grpo --resume gint --iters 2 --json >gr.log 2>gr.err; rc2=$?
  [ $rc2 -eq 0 ] && pass grpo_ctrl_c_resumes || fail grpo_ctrl_c_resumes "resume rc=$rc2 $(tail -2 gr.err)"
else fail grpo_ctrl_c_resumes "rc=$rc ready=$READY $(tail -2 gi.err)"; fi
