#!/usr/bin/env bash
# bench/constrain/run.sh: the cost of constrained output (issue 17) — token masks on the 50k and 100k
# vocabularies (fast path cold and warm, the reference beside it), decode ms/step of a d12 model with and
# without a JSON-schema grammar at batch 1 and 8, compile time of a large schema; then llama.cpp's grammar
# sampling (llama-cpp-python) on the same grammar when it is importable.
#   make -j2 && bash bench/constrain/run.sh [--no-decode]
set -eu
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # one thread: on a shared machine two spin against other jobs
OUT=${CBENCH_OUT:-build/bench}
mkdir -p "$OUT"
. bench/build_flags.sh
[ -f build/libgptkit.a ] || { echo "build first: make -j2"; exit 1; }
# linked against the library the Makefile built (its objects carry the build's feature flags)
LIBS=$(make -s print-ldlibs)   # every library the build linked in (BLAS, oneDNN, MPI, CUDA, ...)
${CC:-gcc} $CFLAGS $(pkg-config --cflags libcjson 2>/dev/null) bench/constrain/cbench.c build/libgptkit.a -o "$OUT/cbench" $LIBS
echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc --all) cores; OMP_NUM_THREADS=$OMP_NUM_THREADS; $(date -u +%F); load average: $(cut -d" " -f1-3 /proc/loadavg)"
# the same weights for both sides: a small checkpoint on the GPT-2 vocabulary (1 pretraining step on generated
# text: the grammar's cost, not the model's, is what is compared) and its GGUF
M=$OUT/cbench-small
if [ ! -f "$M/model.safetensors" ]; then
  python3 -c "
import random; r = random.Random(1)
w = 'the of and to a in that is was he for it with as his on be at by i this had not are but from or have'.split()
print('\n'.join(' '.join(r.choice(w) for _ in range(40)) for _ in range(100)))" > "$OUT/cbench-text.txt"
  build/gptkit tokenize --tokenizer gpt2 --input "$OUT/cbench-text.txt" --out-dir "$OUT/cbench-shards" --val-fraction 0 >/dev/null
  build/gptkit pretrain --model d2 --n-embd 128 --n-head 4 --vocab-size 50304 --n-ctx 256 --tokenizer gpt2 --data "$OUT/cbench-shards/train_*.bin" \
     -b 1 -t 64 --steps 1 --warmup 1 --out "$M" -q >/dev/null
fi
# LLaMA 3's 128256-token vocabulary (a tiktoken rank file plus 256 special tokens), from the llama-models wheel on
# PyPI (benchmark-time only; gptkit never fetches anything): the 128k-vocabulary row of the issue
V128=$OUT/llama3.tiktoken
if [ ! -f "$V128" ]; then
  tmp=$(mktemp -d)
  if pip download -q --no-deps llama-models==0.3.0 -d "$tmp" >/dev/null 2>&1 &&
     unzip -p "$tmp"/llama_models-*.whl llama_models/llama3/tokenizer.model > "$V128.part"; then
    mv "$V128.part" "$V128"
  else
    rm -f "$V128.part"; echo "# llama-models could not be fetched from PyPI: no 128k-vocabulary rows"
  fi
  rm -rf "$tmp"
fi
if [ -f "$V128" ]; then   # the sidecar gptkit reads beside a rank file: pattern and the special tokens' ids
  python3 -c "
import json, sys
named = {128000: '<|begin_of_text|>', 128001: '<|end_of_text|>', 128004: '<|finetune_right_pad_id|>', 128006: '<|start_header_id|>',
         128007: '<|end_header_id|>', 128008: '<|eom_id|>', 128009: '<|eot_id|>', 128010: '<|python_tag|>'}
spec, r = {}, 0
for i in range(128000, 128256):
    if i in named: spec[named[i]] = i
    else: spec['<|reserved_special_token_%d|>' % r] = i; r += 1
json.dump({'name': 'llama3', 'pattern': 'cl100k_base', 'special_tokens': spec}, open(sys.argv[1], 'w'))" "${V128%.tiktoken}.json"
  "$OUT/cbench" --model "$M" --vocab-128k "$V128" "$@"
else
  "$OUT/cbench" --model "$M" "$@"
fi
"$OUT/cbench" --write-gbnf "$OUT/cbench-schema.gbnf"
case " $* " in *" --no-decode "*) exit 0 ;; esac
if python3 -c "import llama_cpp, gguf" 2>/dev/null; then
  [ -f "$M.gguf" ] || python3 bench/serve/gguf_export.py "$M" data/vocab/gpt2 "$M.gguf" >/dev/null
  python3 bench/constrain/llama_grammar.py "$M.gguf" "$OUT/cbench-schema.gbnf" "$OMP_NUM_THREADS"
else
  echo "# llama_cpp (llama-cpp-python) or gguf not importable: llama.cpp's grammar sampling was not measured"
fi
