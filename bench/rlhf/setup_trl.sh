#!/usr/bin/env bash
# Sets up the TRL side of the PPO benchmark (bench/rlhf/trl_ppo.py): a venv at .venv-trl (repo root,
# git-ignored; TRL_VENV=DIR to put it elsewhere) that sees the system site-packages -- so the installed torch
# is reused, not downloaded -- and holds pinned TRL/transformers versions on top. TRL 1.x has no PPOTrainer;
# TRL 0.19.1 has the PPOv2-style one (policy, ref_model, reward_model, value_model, train_dataset), and runs on
# CPU with transformers 4.53.3 (a release of the same month); the other pins are what pip resolved with them.
# Idempotent: does nothing when the venv already imports the pinned versions.
#   bash bench/rlhf/setup_trl.sh
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
V=${TRL_VENV:-$ROOT/.venv-trl}
PINS=(trl==0.19.1 transformers==4.53.3 tokenizers==0.21.4 huggingface_hub==0.36.2 datasets==5.0.1 accelerate==1.15.0)

check() {
  "$V/bin/python" - <<'PY' 2>/dev/null
import trl, transformers
from trl import PPOTrainer, PPOConfig
assert (trl.__version__, transformers.__version__) == ("0.19.1", "4.53.3")
PY
}

if [ -x "$V/bin/python" ] && check; then
  echo "TRL venv ready: $V"; exit 0
fi
if ! python3 -c "import torch" 2>/dev/null; then
  echo "note: python3 has no torch; pip will install one into $V (a large download)" >&2
fi
python3 -m venv --system-site-packages "$V"
echo '*' > "$V/.gitignore"
"$V/bin/python" -m pip install --disable-pip-version-check -q "${PINS[@]}"
check || { echo "TRL venv at $V does not import trl 0.19.1's PPOTrainer" >&2; exit 1; }
"$V/bin/python" -c "import trl, transformers, torch; print('TRL venv ready: $V (trl %s, transformers %s, torch %s)' % (trl.__version__, transformers.__version__, torch.__version__))"
