#!/usr/bin/env bash
# `make bench`: every benchmark, gptkit side by side with its peer in the same run (needs PyPI torch,
# transformers, tiktoken, tokenizers, sentencepiece: `pip install -r bench/requirements.txt`; the PPO peer, TRL
# 0.19.1, goes into its own venv .venv-trl, made by bench/rlhf/setup_trl.sh on first use).
# Appends dated rows to bench/RESULTS.md (training) and prints the rest; raw output under bench/out/.
#   bash bench/run.sh [train|kern|engine|tok|rlhf|pipeline ...]   (default: all but pipeline)
set -u
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p bench/out
what=${*:-train kern engine tok rlhf}
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for w in $what; do
  case $w in
    train)    { python3 bench/train_bench.py --append bench/RESULTS.md                    # fp32 vs fp32
                python3 bench/train_bench.py --precision bf16 --append bench/RESULTS.md   # bf16 vs PyTorch fp32
                python3 bench/train_bench.py --precision bf16 --torch-precision bf16 --append bench/RESULTS.md
              } | tee bench/out/train.txt ;;
    kern)     bash bench/kern/run.sh | tee bench/out/kern.txt ;;
    engine)   bash bench/engine/run.sh | tee bench/out/engine.txt ;;
    tok)      bash bench/tok/bench.sh | tee bench/out/tok.txt ;;
    rlhf)     bash bench/rlhf/setup_trl.sh && bash bench/rlhf/run.sh build/gptkit | tee bench/out/rlhf.txt ;;
    pipeline) for c in configs/demo.conf configs/demo-bf16.conf configs/big.conf; do
                rm -rf "bench/out/run-$(basename "$c" .conf)"
                /usr/bin/time -v build/gptkit pipeline "$c" --run-dir "bench/out/run-$(basename "$c" .conf)" \
                  2>&1 | grep -E "pipeline:|Elapsed|Maximum resident" | tee -a bench/out/pipeline.txt
              done ;;
    *) echo "unknown benchmark '$w'"; exit 2 ;;
  esac
done
