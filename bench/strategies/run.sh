#!/usr/bin/env bash
# Cost per strategy vs accuracy (issue 15): `gptkit solve` on one checkpoint, each strategy over the same held-out
# tasks, at OMP_NUM_THREADS=2; then self-consistency's shared prefill (sc:N, one request of N samples) against N
# independent generations (N runs of sc:1 with different seeds: N prefills, no batching). Prints a markdown
# table (bench/strategies/report.py) and keeps the raw JSON under bench/out/strategies/.
#   bash bench/strategies/run.sh MODEL_DIR [N_TASKS]       (MODEL_DIR: a chat model, e.g. runs/demo/sft)
set -euo pipefail
cd "$(dirname "$0")/../.."
M=${1:?usage: bench/strategies/run.sh MODEL_DIR [N_TASKS]}
N=${2:-100}
G=./build/gptkit
O=bench/out/strategies
mkdir -p "$O"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
echo "# $(date -u +%FT%TZ) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), model $M"
# small arithmetic of the held-out split (the demo's eval tasks, arithmetic only) and big-number arithmetic
$G data eval --n $((N * 12)) --seed 424242 --out "$O/eval_all.jsonl" 2>/dev/null
python3 -c "
import json, sys
n = 0
with open('$O/arith.jsonl', 'w') as f:
    for l in open('$O/eval_all.jsonl'):
        t = json.loads(l)
        if t['skill'] == 'arith' and n < $N:
            f.write(l); n += 1
"
$G data tool-eval --n "$N" --seed 424243 --out "$O/big.jsonl" 2>/dev/null
run() {  # name tasks strategy [extra flags]
  local name=$1 tasks=$2 s=$3; shift 3
  $G solve --model "$M" --tasks "$tasks" --strategy "$s" --json -q "$@" > "$O/$name.jsonl"
}
for s in greedy cot sc:5 sc:8 tot:3,2,2 reflect:1; do run "arith_${s//[:,]/_}" "$O/arith.jsonl" "$s"; done
run big_greedy "$O/big.jsonl" greedy
run big_greedy_calc "$O/big.jsonl" greedy --tools calc
run big_sc5_calc "$O/big.jsonl" sc:5 --tools calc
for k in 1 2 3 4 5 6 7 8; do run "arith_sc1_seed$k" "$O/arith.jsonl" sc:1 --seed $((1337 + k)); done
python3 bench/strategies/report.py "$O"
