#!/usr/bin/env bash
# Data-parallel training throughput on this machine (issue 19): gptkit under Open MPI against PyTorch DDP (gloo,
# CPU), the same model, the same global batch, the same thread budget:
#   1 rank x 1 thread, 1 rank x 2 threads, 2 ranks x 1 thread (gptkit: mpirun -np 2; PyTorch: DDP, 2 processes)
# Each run trains STEPS fp32 AdamW steps from a random init on a random shard; step 0 is warm-up; we report the
# median ms per step of the rest, tokens/s, and for gptkit's 2 ranks the median time in the update's collectives
# (comm_ms: reduce-scatter + norm + all-gather, waiting for the slower rank included). REPS repetitions of the
# whole matrix, one after the other. Also the all-reduce bus bandwidth (gptkit dist-info --bench).
# 2x1 runs gptkit's blocking reduce-scatter after the backward (--dist-bucket-mb 0); 2x1o the same with the
# reduce-scatter in BUCKET_MB buckets overlapped with the backward (default 2 MB: this model's 17 MB of gradients
# would be one bucket at the option's default of 25); PyTorch's DDP row is not repeated for it.
# Usage: bash bench/mpi/run.sh [REPS] [STEPS]     (prints markdown rows for bench/RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${1:-2}; STEPS=${2:-6}; BUCKET_MB=${BUCKET_MB:-2}
G=$PWD/build/gptkit
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
L=4; H=4; C=256; V=4096; CTX=128; B=8; T=64; TOTAL=1024
python3 -c "
import numpy as np
rng=np.random.default_rng(0); t=rng.integers(0,$V,size=400000,dtype=np.uint16)
h=np.zeros(256,dtype=np.int32); h[0],h[1],h[2]=20240520,1,t.size
open('$W/d.bin','wb').write(h.tobytes()+t.tobytes())"
ARGS="--model d$L --n-head $H --n-embd $C --vocab-size $V --n-ctx $CTX -b $B -t $T --total-batch $TOTAL --no-shuffle --steps $STEPS --save-every 0 --val-every 0 --lr 1e-4 --json --data $W/d.bin"
med() { python3 -c "
import json,statistics,sys
L=[json.loads(l) for l in open('$1') if '\"ms\"' in l][1:]
k='$2'; print('%.1f' % statistics.median(x[k] for x in L)) if L and k in L[0] else print('-')"; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(mpirun --version | head -1); torch $(python3 -c 'import torch;print(torch.__version__)')"
echo "model: $L layers, $H heads, width $C, vocab $V; global batch $TOTAL tokens ($B x $T micro-batches)"
for what in 1 16 64; do echo "  $(mpirun --oversubscribe -np 2 env OMP_NUM_THREADS=1 $G dist-info --bench $what | tail -1)"; done
echo "| rep | ranks x threads | gptkit ms/step (tok/s) | gptkit comm ms | PyTorch ms/step (tok/s) | PyTorch ÷ gptkit | load avg |"
echo "|---|---|---|---|---|---|---|"
for rep in $(seq 1 "$REPS"); do
  for cfg in 1x1 1x2 2x1 2x1o; do
    r=${cfg%x*}; th=${cfg#*x}; th=${th%o}; out=$W/g$cfg.jsonl
    bucket=0; [ "${cfg%o}" != "$cfg" ] && bucket=$BUCKET_MB
    if [ "$r" = 1 ]; then OMP_NUM_THREADS=$th $G pretrain $ARGS --out $W/o$cfg > $out 2>/dev/null
    else mpirun --oversubscribe -np $r -x OMP_NUM_THREADS=$th $G pretrain $ARGS --dist-bucket-mb $bucket --out $W/o$cfg > $out 2>/dev/null; fi
    rm -rf $W/o$cfg
    gms=$(med $out ms); gcomm=$(med $out comm_ms)
    if [ "$bucket" != 0 ]; then
      python3 -c "g=$gms; print('| $rep | $cfg (overlap, $BUCKET_MB MB buckets) | %.0f (%.0f) | $gcomm | - | - | %s |' % (g, $TOTAL/g*1000, open('/proc/loadavg').read().split()[0]))"
      continue
    fi
    tj=$(OMP_NUM_THREADS=$th python3 bench/mpi/torch_ddp.py "{\"ranks\":$r,\"threads\":$th,\"n_layer\":$L,\"n_head\":$H,\"n_embd\":$C,\"vocab\":$V,\"ctx\":$CTX,\"B\":$B,\"T\":$T,\"total\":$TOTAL,\"steps\":$STEPS,\"shard\":\"$W/d.bin\",\"port\":$((29500 + RANDOM % 1000))}" 2>/dev/null | tail -1)
    tms=$(python3 -c "import json;print('%.1f' % json.loads('''$tj''')['ms'])")
    python3 -c "
g,t=$gms,$tms
print('| $rep | $cfg | %.0f (%.0f) | $gcomm | %.0f (%.0f) | %.2f× | %s |' % (g, $TOTAL/g*1000, t, $TOTAL/t*1000, t/g, open('/proc/loadavg').read().split()[0]))"
  done
done
