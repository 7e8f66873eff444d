#!/usr/bin/env bash
# Ctrl-C stress: tests/cli/rlhf.sh's setup (a tiny SFT model, reward model and prompts), then N times PPO
# interrupted with SIGINT right after its first iteration's line, counting exit statuses (130 = saved and
# stopped; 134/139 = the heap corruption docs/NOTES.md, "Stop 28", describes). With N=20 the handler on the
# interrupted stack crashed in 3-5 runs; on its own stack (gk_sigint_install) in none of 45.
#   bash bench/stress/ppo_sigint.sh [N]          (GPTKIT=path/to/gptkit; default build/gptkit)
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export GK_ROOT=$ROOT GPTKIT=${GPTKIT:-$ROOT/build/gptkit}
N=${1:-20}
S=$(mktemp); trap 'rm -f "$S"' EXIT
# rlhf.sh up to its Ctrl-C check (data, tokenizer, SFT, reward model and the PPO options), then the loop
line=$(grep -n "^start_ready '\"score\"' pint.log" "$ROOT/tests/cli/rlhf.sh" | cut -d: -f1)
head -n $((line - 1)) "$ROOT/tests/cli/rlhf.sh" | sed "s|^\. \"\$(dirname \"\$0\")/_lib.sh\"|. $ROOT/tests/cli/_lib.sh|" > "$S"
cat >> "$S" <<LOOP
for i in \$(seq 1 $N); do
  rm -rf pint
  start_ready '"score"' pint.log pint.err \$GPTKIT ppo \$PPO --iters 100000 --out pint
  interrupt_ready; echo "exit \$?"
done
LOOP
bash "$S" | grep '^exit' | sort | uniq -c
