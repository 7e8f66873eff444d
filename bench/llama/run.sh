#!/usr/bin/env bash
# bench/llama/run.sh: LLaMA-family inference, gptkit vs llama.cpp (llama-cpp-python) on the same GGUF files.
# Makes a random 135M-class model (bench/llama/make_model.py, needs torch + transformers), exports it with
# `gptkit export --format gguf` in f32, f16, q8_0 and q4_0, and runs bench/llama/lbench.c and
# bench/llama/llama_cpp_bench.py on each, at OMP_NUM_THREADS (default 2) threads, one process per figure.
#   bash bench/llama/run.sh            (LLAMA_BENCH_DIR: where the model files go, default /tmp/gptkit-llama-bench)
#   LCP_PYTHON: the python that has llama_cpp (default /tmp/lcpvenv/bin/python if present, else python3). Without
#     compiling llama.cpp twice: llama-cpp-python's sdist (pip download --no-binary :all: llama-cpp-python==0.3.36)
#     built once with cmake (the llama-server build of bench/serve), and a wrapper script as LCP_PYTHON that runs a
#     python having numpy, diskcache and jinja2 with PYTHONPATH=<the sdist> LLAMA_CPP_LIB_PATH=<its build/bin>;
#   another model: LLAMA_BENCH_DIR=DIR with DIR/hf any checkpoint gptkit exports (e.g. a link to a GPT-2 one:
#     the GPT-2 124M rows of bench/RESULTS.md ran the checkpoint bench/serve/run.sh d12 makes);
#   BENCH_ARGS: e.g. "--reps 1 --new 32" for a quick run. Each figure is the median of 3 repetitions (--reps 3).
# Ends with the markdown table of bench/RESULTS.md (bench/llama/table.py); the raw lines go to $OUT/llama-raw.txt.
set -eu
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
OUT=${EBENCH_OUT:-build/bench}; D=${LLAMA_BENCH_DIR:-/tmp/gptkit-llama-bench}; PY=${LCP_PYTHON:-$([ -x /tmp/lcpvenv/bin/python ] && echo /tmp/lcpvenv/bin/python || echo python3)}
mkdir -p "$OUT" "$D"
. bench/build_flags.sh
make -s -j2 build/libgptkit.a build/gptkit   # the library (with its optional parts) and the CLI that exports
LIBS=$(make -s print-ldlibs)   # every library the build linked in (BLAS, oneDNN, MPI, CUDA, ...)
${CC:-gcc} $CFLAGS bench/llama/lbench.c build/libgptkit.a -o "$OUT/lbench" $LIBS
[ -f "$D/hf/config.json" ] || python3 bench/llama/make_model.py "$D/hf"
RAW="$OUT/llama-raw.txt"
{
echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc --all) cores; OMP_NUM_THREADS=$OMP_NUM_THREADS; $(date -u +%F); load average: $(cut -d" " -f1-3 /proc/loadavg)"
for t in ${@:-f32 f16 q8_0 q4_0}; do
  [ -f "$D/m-$t.gguf" ] || build/gptkit export --model "$D/hf" --format gguf --type "$t" --out "$D/m-$t.gguf" >&2
  echo "## $t ($(du -m "$D/m-$t.gguf" | cut -f1) MB)"
  "$OUT/lbench" --model "$D/m-$t.gguf" ${BENCH_ARGS:-}
  if $PY -c "import llama_cpp" 2>/dev/null; then $PY bench/llama/llama_cpp_bench.py --model "$D/m-$t.gguf" --threads "$OMP_NUM_THREADS" ${BENCH_ARGS:-}
  else echo "# llama_cpp not importable: llama.cpp side skipped"; fi
done
echo "# load average at the end: $(cut -d" " -f1-3 /proc/loadavg)"
} | tee "$RAW"
echo
python3 bench/llama/table.py "$RAW"
