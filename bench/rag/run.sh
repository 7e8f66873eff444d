#!/usr/bin/env bash
# Retrieval benchmark (bench/RESULTS.md, "Retrieval"): embedding throughput of `gptkit embed` vs
# sentence-transformers on PyTorch (2 threads, MiniLM-L6 shape, random weights: bench/rag/make_models.py).
# Index scale: bench/rag/scale.sh. Needs the system python3 with torch + sentence-transformers.
#   bash bench/rag/run.sh [N_EMBED=2000] [REPS=3]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-2000}; REPS=${2:-3}
W=${RAG_BENCH_DIR:-/tmp/gptkit-rag-bench}
G=$PWD/build/gptkit
mkdir -p "$W"
[ -d "$W/minilm_shape" ] || python3 bench/rag/make_models.py "$W" >/dev/null 2>&1
head -n "$N" "$W/sentences.txt" > "$W/embed_in.txt"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- embedding throughput, 2 threads, medians of REPS runs interleaved (gptkit, peer, gptkit, peer, ...), so a
# change in the machine's load falls on both sides alike
gk=(); st=()
for i in $(seq "$REPS"); do
  # gptkit's own timer: from after loading the model to the last vector written (as the peer's excludes loading)
  gk+=("$(OMP_NUM_THREADS=2 "$G" embed --model "$W/minilm_shape" < "$W/embed_in.txt" 2>&1 >/dev/null | sed -n 's/.*lines in .*(\([0-9.]*\) lines\/s).*/\1/p')")
  st+=("$(python3 bench/rag/st_embed.py "$W/minilm_shape" "$W/embed_in.txt" "$N" 2 1 2>/dev/null)")
done
med() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
gkm=$(med "${gk[@]}"); stm=$(med "${st[@]}")
echo "embed: $N sentences, 2 threads: gptkit ${gk[*]} (median $gkm) sent/s; sentence-transformers ${st[*]} (median $stm) sent/s; ratio $(python3 -c "print('%.2f' % ($gkm / $stm))")x"
echo "  (both exclude loading the model; both include tokenising); load after: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- index scale: bench/rag/scale.sh
