#!/usr/bin/env bash
# The one prepared GPU run (issue 20; docs/cuda.md): builds gptkit with the CUDA backend, runs the GPU tests
# (tests/test_cuda: every op against the CPU reference, bf16, a 10-step training run vs the CPU, greedy decode,
# resume across devices, a one-rank NCCL smoke check when the build has NCCL) and the training benchmark -- GPT-2 124M from random init, B 64, T 1024, bf16, gptkit
# vs PyTorch (torch.compile + SDPA flash + fused AdamW, bench/cuda/torch_gpt2.py) side by side on the same GPU --
# and writes everything to files under $OUT (default ./gpu-check-out), ending with summary.md.
# Sized to finish in under 10 minutes on one H100/H200 (16 cores): each stage has its own time limit and a stage
# that fails or times out is recorded and the script goes on to the next.
#
#   bash scripts/gpu-check.sh [--quick]     (--quick: tests only, no benchmark)
#
# Environment: OUT (output folder), JOBS (make -j, default nproc), BENCH_STEPS (default 30), PEAK_TFLOPS (MFU
# denominator, default 989: H100/H200 SXM dense bf16), SANITIZE=1 (also run the op tests under
# compute-sanitizer memcheck; slow), GPU_DEPS (folder of .deb files from scripts/gpu-deps.sh, default .gpudeps:
# the GPU image may lack cJSON / SQLite / zlib headers; they are unpacked under /tmp and used from there).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
JOBS=${JOBS:-$(nproc)}
STEPS=${BENCH_STEPS:-30}
PEAK=${PEAK_TFLOPS:-989}
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
SUM=$OUT/summary.md
t_start=$(date +%s)
# the device tool returns at most 8 files: on exit the stderr logs, the memcheck output and the progress lines are
# folded into logs.txt, leaving summary.md, env.txt, build.log, test_cuda.txt, bench_gptkit.jsonl,
# bench_torch.jsonl and logs.txt
fold_logs() {
  local f
  for f in "$OUT"/progress.txt "$OUT"/*.err "$OUT"/memcheck.txt; do
    [ -f "$f" ] || continue
    { echo "===== $(basename "$f")"; cat "$f"; echo; } >> "$OUT/logs.txt"
    rm -f "$f"
  done
}
trap fold_logs EXIT
log() { echo "[gpu-check $(( $(date +%s) - t_start ))s] $*" | tee -a "$OUT/progress.txt"; }
: > "$OUT/progress.txt"
{
  echo "# gpu-check $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo
} > "$SUM"

# ---- 1. the machine
{ nvidia-smi; nvcc --version; python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)'; } \
  > "$OUT/env.txt" 2>&1
gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
log "GPU: ${gpu:-none found}"
echo "- GPU: ${gpu:-none found (nvidia-smi failed)}; $(nvcc --version 2>/dev/null | tail -1)" >> "$SUM"

# ---- 2. build (the libraries the GPU image lacks come from GPU_DEPS when given)
EXTRA=()
DEPS=${GPU_DEPS:-.gpudeps}
if ls "$DEPS"/*.deb >/dev/null 2>&1; then
  rm -rf /tmp/gpudeps && mkdir -p /tmp/gpudeps
  for f in "$DEPS"/*.deb; do dpkg -x "$f" /tmp/gpudeps; done
  EXTRA=(CFLAGS="-I/tmp/gpudeps/usr/include" LDFLAGS="-L/tmp/gpudeps/usr/lib/x86_64-linux-gnu")
  export LD_LIBRARY_PATH=/tmp/gpudeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  log "using the packages in $DEPS"
fi
for h in cjson/cJSON.h zlib.h sqlite3.h; do
  if ! printf '#include <%s>\n' "$h" | cc -E -x c - ${EXTRA:+-I/tmp/gpudeps/usr/include} -I/usr/include/cjson >/dev/null 2>&1; then
    log "missing header <$h>: on the build machine run 'bash scripts/gpu-deps.sh' and carry .gpudeps"
    echo "- build: header <$h> missing on this machine (scripts/gpu-deps.sh + carry .gpudeps)" >> "$SUM"
  fi
done
B=build-gpu
log "building ($B, -j$JOBS)"
# optional CPU libraries off: the GPU run needs none of them, and the image may not have them
if ! timeout 300 make -j"$JOBS" BUILD=$B NO_BLAS=1 NO_DNNL=1 NO_PCRE2=1 NO_MHD=1 NO_GMP=1 NO_MPI=1 "${EXTRA[@]}" \
     summary $B/gptkit $B/tests/test_cuda > "$OUT/build.log" 2>&1; then
  log "BUILD FAILED (build.log)"
  { echo "- build: FAILED"; echo; echo '```'; grep -E 'error|Error' "$OUT/build.log" | head -20; echo '```'; } >> "$SUM"
  exit 1
fi
grep -q 'features=.*cuda' "$OUT/build.log" || log "warning: the build did not report the cuda feature"
echo "- build: ok ($(grep -o 'features=\[[^]]*\]' "$OUT/build.log" | tail -1))" >> "$SUM"

# ---- 3. the GPU tests
log "tests/test_cuda"
timeout 180 env OMP_NUM_THREADS=8 GK_ROOT=$PWD ./$B/tests/test_cuda > "$OUT/test_cuda.txt" 2>&1
rc=$?
p=$(grep -c '^PASS ' "$OUT/test_cuda.txt"); f=$(grep -c '^FAIL ' "$OUT/test_cuda.txt"); s=$(grep -c '^SKIP ' "$OUT/test_cuda.txt")
log "test_cuda: $p passed, $f failed, $s skipped (exit $rc)"
{ echo "- test_cuda: $p passed, $f failed, $s skipped (exit status $rc; test_cuda.txt)"
  grep -E '^(FAIL|SKIP) ' "$OUT/test_cuda.txt" | sed 's/^/    /' | head -30; } >> "$SUM"
# NCCL (data parallelism on GPUs, docs/distributed.md): one GPU here, so test_cuda's smoke check is one rank
# (ncclCommInitRank with nranks 1, then the all-reduce, reduce-scatter and all-gather src/dist uses); it skips
# itself when the build found no NCCL (nccl.h / libnccl beside the toolkit)
nccl=$(grep -E '^(PASS|FAIL|SKIP) test_nccl_one_rank' "$OUT/test_cuda.txt" | head -1)
log "NCCL: ${nccl:-no result}"
echo "- NCCL one-rank smoke check: ${nccl:-no result} ($(grep -o '^# NCCL [0-9.]*' "$OUT/test_cuda.txt" | head -1 | sed 's/^# //'))" >> "$SUM"
if [ "${SANITIZE:-0}" = 1 ] && command -v compute-sanitizer >/dev/null; then
  log "compute-sanitizer memcheck over test_cuda"
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 ./$B/tests/test_cuda > "$OUT/memcheck.txt" 2>&1
  echo "- compute-sanitizer memcheck: exit $? (memcheck.txt)" >> "$SUM"
fi
# the CLI's own refusal test does not apply with a GPU; instead: the backend line
./$B/gptkit --device cuda --help 2>&1 | grep '^backend:' >> "$OUT/env.txt"
status=0
[ "$f" -gt 0 ] || [ "$rc" -ne 0 ] && status=1
[ $QUICK = 1 ] && { log "done (--quick)"; exit $status; }
if [ -z "$gpu" ]; then log "no GPU: benchmark skipped"; echo "- benchmark: skipped (no GPU)" >> "$SUM"; exit 1; fi

# ---- 4. benchmark: gptkit, GPT-2 124M (d12), B 64, T 1024, bf16
BT=$((64 * 1024))
SHARD=/tmp/gpu-check-shard.bin
python3 - "$SHARD" $(( (STEPS + 4) * BT + 1 )) <<'PY'
import array, random, struct, sys
path, n = sys.argv[1], int(sys.argv[2])
r = random.Random(7)
hdr = array.array('i', [0] * 256); hdr[0], hdr[1], hdr[2] = 20240520, 1, n
toks = array.array('H', (r.randrange(50257) for _ in range(n)))
with open(path, 'wb') as f: hdr.tofile(f); toks.tofile(f)
PY
run_gptkit() {   # batch, extra args...
  local b=$1; shift
  rm -rf /tmp/gpu-check-run
  # line-buffered, so the steps done before a timeout are kept
  timeout 200 env GPTKIT_PEAK_GFLOPS=$((PEAK * 1000)) stdbuf -oL ./$B/gptkit --device cuda pretrain --model d12 --data "$SHARD" \
    --out /tmp/gpu-check-run -b "$b" -t 1024 --total-batch $BT --steps "$STEPS" --warmup 5 --precision bf16 \
    --save-every 0 --val-every 0 --json "$@" > "$OUT/bench_gptkit.jsonl" 2> "$OUT/bench_gptkit.err"
}
log "benchmark: gptkit --device cuda, d12, B 64 T 1024 bf16, $STEPS steps"
run_gptkit 64; grc=$?
if [ $grc -ne 0 ] && ! grep -q tokens_per_s "$OUT/bench_gptkit.jsonl"; then
  log "B 64 failed (status $grc, bench_gptkit.err); retrying as 2 x B 32 (gradient accumulation)"
  cp "$OUT/bench_gptkit.err" "$OUT/bench_gptkit_b64.err"
  run_gptkit 32; grc=$?
fi
[ $grc -eq 124 ] && log "gptkit stopped by its time limit: the steps done so far are counted"
log "benchmark: PyTorch (bench/cuda/torch_gpt2.py)"
timeout 300 env PYTHONUNBUFFERED=1 python3 bench/cuda/torch_gpt2.py --batch 64 --seq 1024 --steps "$STEPS" \
  --peak "$PEAK" > "$OUT/bench_torch.jsonl" 2> "$OUT/bench_torch.err"

# ---- 5. side by side: median tokens/s of the steps after warm-up, MFU with the same FLOP count on both sides
python3 - "$OUT" "$PEAK" >> "$SUM" <<'PY'
import json, statistics, sys
out, peak = sys.argv[1], float(sys.argv[2])
L, C, T, N = 12, 768, 1024, 124439808        # GPT-2 124M, vocab 50257: all parameters (tied head), as torch_gpt2.py counts
fpt = 6 * N + 6 * L * C * T      # causal attention: half of 12 L C T, as BENCH-NOTES.md counts
def rows(path):
    try:
        return [json.loads(l) for l in open(path) if l.startswith('{')]
    except OSError:
        return []
g = [r for r in rows(out + '/bench_gptkit.jsonl') if 'tokens_per_s' in r]
gt = [float(r['tokens_per_s']) for r in g[5:]]           # drop 5 warm-up steps
t = rows(out + '/bench_torch.jsonl')
ts = [r['summary'] for r in t if 'summary' in r]
print('\n## Training benchmark: GPT-2 124M, random init, B 64, T 1024, bf16, AdamW\n')
print('| trainer | tokens/s (median) | MFU (6N + 6LCT over %.0f TFLOP/s) | steps timed | note |' % peak)
print('|---|---|---|---|---|')
if gt:
    m = statistics.median(gt)
    print('| gptkit --device cuda | %.0f | %.1f%% | %d | last loss %s |' % (m, 100 * m * fpt / (peak * 1e12), len(gt), g[-1].get('loss')))
else:
    print('| gptkit --device cuda | FAILED | | | see bench_gptkit.err |')
if ts:
    s = ts[0]
    print('| %s | %.0f | %.1f%% | %d | peak %.1f GiB |' % (s['impl'], s['tokens_per_s'], 100 * s['mfu'], s['timed_steps'], s['peak_mem_gib']))
else:
    print('| PyTorch compile + SDPA | FAILED | | | see bench_torch.err |')
if gt and ts:
    print('\ngptkit / PyTorch tokens/s: %.2fx (target >= 1.15x)' % (statistics.median(gt) / ts[0]['tokens_per_s']))
PY
log "done in $(( $(date +%s) - t_start ))s; $SUM"
cat "$SUM"
exit $status
