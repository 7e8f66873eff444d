#!/usr/bin/env bash
# bench/serve/run.sh: `gptkit serve` vs llama.cpp's server on the same weights — aggregate generated tokens/s and
# time to first token (p50, p99) at 1, 4 and 16 concurrent streaming clients (bench/serve/load.py), one server
# at a time on this machine, both with the same thread count.
#   model: a GPT-2-architecture checkpoint with GPT-2's tokenizer (default: d6, 6 layers x 384, random init plus
#          one training step; `bash bench/serve/run.sh d12` for GPT-2 124M's shape), exported to GGUF for
#          llama.cpp by bench/serve/gguf_export.py (f32, so both compute in the same precision)
#   peer:  llama-server (llama.cpp's C++ server, --parallel 16 --cont-batching) if on PATH, else
#          `python3 -m llama_cpp.server` (PyPI llama-cpp-python[server]); skipped if neither is there
# Requests: /v1/completions, a 48-word prompt, max_tokens 128, greedy, <|endoftext|> banned by logit_bias (gptkit
# ignores that field; random weights rarely pick one token of 50k), 3 requests per client per round.
# Results go to stdout and build/bench/serve-*.jsonl. THREADS (default 2) sets OMP_NUM_THREADS / --threads.
set -eu
cd "$(dirname "$0")/../.."
MODEL=${1:-d6}
THREADS=${THREADS:-2}
OUT=build/bench/serve
mkdir -p "$OUT"
G=$PWD/build/gptkit
[ -x "$G" ] || make -j2 build/gptkit >/dev/null
echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads=$THREADS; $(date -u +%F); load average: $(cut -d" " -f1-3 /proc/loadavg)"

# the model: random init + one step on a little text (a checkpoint needs a training run)
if [ ! -f "$OUT/$MODEL/model.safetensors" ]; then
  python3 -c "
import random; r = random.Random(1)
w = 'the of and to a in that is was he for it with as his on be at by i this had not are but from or have'.split()
print('\n'.join(' '.join(r.choice(w) for _ in range(40)) for _ in range(400)))" > "$OUT/text.txt"
  $G tokenize --tokenizer gpt2 --input "$OUT/text.txt" --out-dir "$OUT/shards" --val-fraction 0 >/dev/null
  $G pretrain --model "$MODEL" --vocab-size 50304 --n-ctx 1024 --tokenizer gpt2 --data "$OUT/shards/train_*.bin" \
     -b 1 -t 64 --steps 1 --warmup 1 --out "$OUT/$MODEL" -q >/dev/null
fi
[ -f "$OUT/$MODEL.gguf" ] || python3 bench/serve/gguf_export.py "$OUT/$MODEL" data/vocab/gpt2 "$OUT/$MODEL.gguf"

wait_ready() {   # URL: polls /v1/models until the server answers (model loading)
  for _ in $(seq 1 600); do
    python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1]+'/v1/models', timeout=2)" "$1" 2>/dev/null && return 0
    sleep 0.5
  done
  return 1
}
PORT=${PORT:-18080}

echo "## gptkit serve ($MODEL, --slots 16)"
OMP_NUM_THREADS=$THREADS $G serve --model "$OUT/$MODEL" --port $PORT --slots 16 --queue 64 -q > "$OUT/gptkit.log" 2>&1 &
SP=$!
wait_ready "http://127.0.0.1:$PORT"
python3 bench/serve/load.py "http://127.0.0.1:$PORT" gptkit | tee "$OUT/serve-gptkit.jsonl"
kill -TERM $SP; wait $SP || true

if command -v llama-server >/dev/null; then
  echo "## llama.cpp llama-server ($MODEL.gguf, --parallel 16 --cont-batching)"
  llama-server -m "$OUT/$MODEL.gguf" --port $PORT --threads "$THREADS" --parallel 16 --cont-batching \
    --ctx-size $((16 * 1024)) > "$OUT/llama.log" 2>&1 &
elif python3 -c "import llama_cpp.server" 2>/dev/null; then
  echo "## llama-cpp-python server ($MODEL.gguf)"
  # one request at a time: queued, not cancelled by the next (its default would cut most requests short)
  python3 -m llama_cpp.server --model "$OUT/$MODEL.gguf" --port $PORT --n_threads "$THREADS" --n_ctx 1024 --interrupt_requests False \
    > "$OUT/llama.log" 2>&1 &
else
  echo "# llama.cpp's server not found (llama-server on PATH, or pip install 'llama-cpp-python[server]'): peer skipped"
  exit 0
fi
LP=$!
wait_ready "http://127.0.0.1:$PORT"
python3 bench/serve/load.py "http://127.0.0.1:$PORT" llama.cpp | tee "$OUT/serve-llama.jsonl"
kill -TERM $LP; wait $LP || true
