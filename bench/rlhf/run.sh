#!/usr/bin/env bash
# PPO iteration benchmark: a 6-layer/384-wide policy (and reward/value/reference models of the same size),
# P prompts x S samples, up to N new tokens; reports the per-iteration time split (rollout / scoring /
# reference log-probs / update) and PPO iterations per minute. Usage: bash bench/rlhf/run.sh [build/gptkit]
# Then the same with TRL's PPOTrainer (bench/rlhf/trl_ppo.py) when its venv is set up (bash bench/rlhf/setup_trl.sh).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
G=${1:-build/gptkit}
case $G in /*) ;; */*) G=$PWD/$G ;; esac   # the run below happens in a temp dir
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
cd "$W"
python3 - <<'PY'
import json
things = ["cat","dog","tree","house","river","book","song","car","bird","fish","apple","city"]
with open("corpus.txt","w") as f:
    for t in things:
        for a in ["good","fine","old","bad"]: f.write(f"Tell me about the {t}. The {t} is {a}.\n")
with open("prompts.jsonl","w") as f:
    for t in things: f.write(json.dumps({"prompt": f"Tell me about the {t}."})+"\n")
with open("prefs.jsonl","w") as f:
    for t in things: f.write(json.dumps({"prompt": f"Tell me about the {t}.", "chosen": f"The {t} is good.", "rejected": f"The {t} is bad."})+"\n")
PY
"$G" tokenizer train --input corpus.txt --vocab-size 512 --out tok >/dev/null 2>&1
"$G" tokenize --tokenizer tok --input corpus.txt --out-dir shards --val-fraction 0 >/dev/null 2>&1
"$G" pretrain --model d6 --vocab-size 512 --n-ctx 128 --data "shards/train_*.bin" --tokenizer tok -b 1 -t 32 --steps 1 --out sft --json >/dev/null 2>&1
"$G" rm --init sft --data prefs.jsonl -b 4 --steps 1 --out rm --json >/dev/null 2>&1
P=${P:-8}; S=${S:-4}; N=${N:-32}; ITERS=${ITERS:-3}
"$G" ppo --policy sft --reward rm --prompts prompts.jsonl --out ppo --iters "$ITERS" -b "$P" --samples "$S" --max-new "$N" \
  --missing-end-penalty 0 --ppo-epochs 4 --minibatch 8 --json 2>/dev/null | python3 -c "
import json,sys
L=[json.loads(l) for l in sys.stdin if '\"t_rollout\"' in l]
L=L[1:] if len(L)>1 else L          # first iteration warms caches
k=['t_rollout','t_score','t_ref','t_update']
m={x: sum(l[x] for l in L)/len(L) for x in k}
tot=sum(m.values()); tok=sum(l['resp_len'] for l in L)/len(L)*$P*$S
print('policy d6 (6L/384), vocab 512: %d prompts x %d samples, <= %d new tokens (mean %.1f), 4 epochs, minibatch 8' % ($P,$S,$N,tok/($P*$S)))
print('per iteration: ' + ', '.join('%s %.2fs (%.0f%%)' % (x[2:], m[x], 100*m[x]/tot) for x in k) + '; total %.2fs' % tot)
print('PPO iterations per minute: %.2f; rollout tokens per iteration %.0f' % (60/tot, tok))"

# TRL side: the same shapes with TRL's PPOTrainer on CPU (its venv: bash bench/rlhf/setup_trl.sh).
TRL_PY=${TRL_VENV:-$ROOT/.venv-trl}/bin/python
[ -x "$TRL_PY" ] || TRL_PY=python3
if "$TRL_PY" -c "from trl import PPOTrainer" 2>/dev/null; then
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "$TRL_PY" "$ROOT/bench/rlhf/trl_ppo.py" --prompts "$P" --samples "$S" \
    --max-new "$N" --iters "$ITERS" --threads "${OMP_NUM_THREADS:-2}" || echo "trl: the TRL run failed (exit $?)"
else
  echo "trl: not set up (TRL with a PPOTrainer is not importable); run: bash bench/rlhf/setup_trl.sh"
fi
