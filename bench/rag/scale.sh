#!/usr/bin/env bash
# Index scale (bench/RESULTS.md, "Retrieval"): at 10^4 and 10^5 chunks, the build's SQLite + chunking + FTS5 part
# (a BM25-only build), and query latency (p50/max of 11 queries, in-process after open: the log's "in X ms")
# and peak RSS of a query process for vector / bm25 / hybrid over 384-dim vectors (MiniLM-L6 shape: the
# question is embedded by the real 6-layer model shape; the stored vectors are random unit vectors written by
# fill_vectors.py). The embedder and the vectors are loaded before the timed query (index_load; its time is
# printed apart). Queries run on QUERY_THREADS threads (default 1: on a loaded machine every OpenMP region of
# a 2-thread query waits for a descheduled sibling). Run bench/rag/run.sh first (it makes the models in $RAG_BENCH_DIR).
set -euo pipefail
cd "$(dirname "$0")/../.."
W=${RAG_BENCH_DIR:-/tmp/gptkit-rag-bench}
G=${GPTKIT_BIN:-$PWD/build/gptkit}
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
head -n 20 "$W/sentences.txt" | python3 -c 'import json,sys; [print(json.dumps({"text": l.strip(), "id": "r%d" % i})) for i, l in enumerate(sys.stdin)]' > "$W/ref_docs.jsonl"
rm -f "$W/ref.db"*; OMP_NUM_THREADS=2 "$G" index build --embedder "$W/minilm_shape" --docs "$W/ref_docs.jsonl" --out "$W/ref.db" -q
python3 - "$W" <<'PY'
import random, sys
w = sys.argv[1]
words = [l.split()[0] for l in open(w + "/sentences.txt")][:3000]
r = random.Random(11)
for n in (10000, 100000):
    with open("%s/docs_%d.jsonl" % (w, n), "w") as f:
        for i in range(n):   # one chunk per document: 40 words
            f.write('{"text": "%s", "id": "d%d"}\n' % (" ".join(r.choice(words) for _ in range(40)), i))
PY
for n in 10000 100000; do
  for fmt in f32 int8; do
    rm -f "$W/s_$n.db"*
    t0=$(date +%s.%N); OMP_NUM_THREADS=2 "$G" index build --docs "$W/docs_$n.jsonl" --out "$W/s_$n.db" -q; t1=$(date +%s.%N)
    [ $fmt = f32 ] && echo "$n chunks: BM25-only build (read, chunk, SQLite + FTS5) $(python3 -c "print('%.1f' % ($t1 - $t0))") s"
    python3 bench/rag/fill_vectors.py "$W/s_$n.db" "$W/ref.db" $fmt >/dev/null
    echo "  $fmt vectors: file $(du -m "$W/s_$n.db" | cut -f1) MB"
    for mode in vector bm25 hybrid; do
      [ $fmt = int8 ] && [ $mode = bm25 ] && continue
      for q in $(seq 1 11); do
        qq=$(sed -n "$((q + 100))p" "$W/sentences.txt" | cut -d' ' -f1-8)
        { OMP_NUM_THREADS=${QUERY_THREADS:-1} /usr/bin/time -f 'RSS %M' "$G" index query "$W/s_$n.db" "$qq" --mode $mode --top-k 5 2>&1 >/dev/null; } | tr '\n' ' '; echo
      done | python3 -c '
import re, sys
ms, rss, ld = [], [], []
for l in sys.stdin:
    m = re.search(r"in ([0-9.]+) ms", l); k = re.search(r"RSS (\d+)", l); o = re.search(r"loading took ([0-9.]+) ms", l)
    if m: ms.append(float(m.group(1)))
    if k: rss.append(int(k.group(1)))
    if o: ld.append(float(o.group(1)))
ms.sort(); ld.sort()
print("    %-6s query: p50 %.1f ms, p99 %.1f ms (%d queries; p99 = the max); loading before it %.0f ms (median); peak RSS %.0f MB"
      % (sys.argv[1], ms[len(ms)//2], ms[-1], len(ms), ld[len(ld)//2] if ld else 0, max(rss)/1024))
' "$mode"
    done
  done
done
