#!/usr/bin/env bash
# GRPO iteration benchmark, side by side with TRL's GRPOTrainer (issue 21). One checkpoint, made here by
# gptkit (GPT-2 shape, 6 layers x 384, vocabulary 512, context 128, random weights: speed does not depend on
# them), is trained by both for ITERS iterations of P prompts x G samples (<= N new tokens, temperature 1),
# one pass in minibatches of M responses, KL to the frozen reference (beta 0.04), per-response mean loss.
# Reports the median iteration time split into rollout / reward / reference + update, for each side.
#   bash bench/rlhf/grpo.sh [build/gptkit]        (TRL_PYTHON=python with trl; REPS=3 runs per side)
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
G=${1:-build/gptkit}
case $G in /*) ;; */*) G=$PWD/$G ;; esac
P=${P:-8}; GS=${GS:-8}; N=${N:-32}; M=${M:-16}; ITERS=${ITERS:-4}; REPS=${REPS:-3}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
TRL_PY=${TRL_PYTHON:-python3}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
cd "$W"
python3 - <<'PY'
import json, random
r = random.Random(3)
with open("corpus.txt", "w") as f:
    for i in range(400):
        a, b = r.randint(1, 99), r.randint(1, 99)
        f.write(f"What is {a} plus {b}? The answer is {a+b}.\n")
with open("prompts.jsonl", "w") as f:
    for i in range(64):
        a, b = r.randint(1, 99), r.randint(1, 99)
        f.write(json.dumps({"prompt": f"What is {a} plus {b}?", "answer": str(a + b)}) + "\n")
PY
"$G" tokenizer train --input corpus.txt --vocab-size 512 --out tok >/dev/null 2>&1
"$G" tokenize --tokenizer tok --input corpus.txt --out-dir shards --val-fraction 0 >/dev/null 2>&1
"$G" pretrain --model d6 --vocab-size 512 --n-ctx 128 --data "shards/train_*.bin" --tokenizer tok -b 1 -t 32 --steps 1 \
  --out sft --json >/dev/null 2>&1
# TRL gets the prompts exactly as gptkit's policy sees them: the chat rendering, as text with its special tokens
python3 - "$G" <<'PY'
import json, subprocess, sys
G = sys.argv[1]
with open("prompts_rendered.jsonl", "w") as out:
    for line in open("prompts.jsonl"):
        r = json.loads(line)
        msg = json.dumps({"messages": [{"role": "user", "content": r["prompt"]}]})
        ids = subprocess.run([G, "tokenizer", "render", "--tokenizer", "sft/tokenizer.json"], input=msg,
                             capture_output=True, text=True, check=True).stdout
        text = subprocess.run([G, "tokenizer", "decode", "--tokenizer", "sft/tokenizer.json"], input=ids,
                              capture_output=True, text=True, check=True).stdout
        out.write(json.dumps({"text": text, "answer": r["answer"]}) + "\n")
PY
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; OMP_NUM_THREADS=$OMP_NUM_THREADS; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "shapes: d6 (6 layers x 384, vocab 512), $P prompts x $GS samples, <= $N new tokens, minibatch $M, $ITERS iterations (the first dropped)"
HAVE_TRL=1
"$TRL_PY" -c "from trl import GRPOTrainer" 2>/dev/null || HAVE_TRL=0
for rep in $(seq 1 "$REPS"); do
  "$G" grpo --policy sft --prompts prompts.jsonl --out "grpo$rep" --iters "$ITERS" -b "$P" -G "$GS" --max-new "$N" \
    --minibatch "$M" --temperature 1 --lr 1e-5 --beta 0.04 --sample-every 0 --json 2>/dev/null | python3 -c "
import json, statistics, sys
L = [json.loads(l) for l in sys.stdin if '\"t_update\"' in l][1:]
m = {k: statistics.median(x[k] for x in L) for k in ('t_rollout', 't_reward', 't_ref', 't_update', 'resp_len')}
tot = m['t_rollout'] + m['t_reward'] + m['t_ref'] + m['t_update']
print('run $rep gptkit per iteration: rollout %.2fs, reward %.3fs, update %.2fs (ref %.2f + old log-probs and %d optimizer steps %.2f); total %.2fs; mean response %.1f tokens'
      % (m['t_rollout'], m['t_reward'], m['t_ref'] + m['t_update'], m['t_ref'], $P * $GS // $M, m['t_update'], tot, m['resp_len']))"
  if [ "$HAVE_TRL" = 1 ]; then
    "$TRL_PY" "$ROOT/bench/rlhf/trl_grpo.py" --model sft --prompts-file prompts_rendered.jsonl --batch "$P" --group "$GS" \
      --max-new "$N" --minibatch "$M" --iters "$ITERS" --threads "$OMP_NUM_THREADS" 2>/dev/null | grep '^trl' | sed "s/^/run $rep /"
  else
    echo "run $rep trl: not importable with $TRL_PY (pip install trl datasets; TRL_PYTHON=that python)"
  fi
done
