#!/usr/bin/env bash
# CLI tests for retrieval: `gptkit embed` against sentence-transformers' vectors (the committed fixture,
# tests/ref/gen_embed_fixture.py), `gptkit index build/query` (JSON output, modes, incremental rebuild), a
# build killed with SIGKILL mid-way leaving a usable index, and bad inputs refused with the file named.
source "$(dirname "$0")/_lib.sh"
M=$GK_ROOT/tests/fixtures/embed/st_mean
FX=$GK_ROOT/tests/fixtures/embed/st_mean.json

# ---- embed: JSONL output, cosine >= 0.9999 with sentence-transformers on every fixture line
python3 -c 'import json,sys; [print(l) for l in json.load(open(sys.argv[1]))["lines"]]' "$FX" > "$TMP/lines.txt"
if "$GPTKIT" embed --model "$M" --json -q < "$TMP/lines.txt" > "$TMP/emb.jsonl" 2> "$TMP/emb.err"; then
  r=$(python3 - "$FX" "$TMP/emb.jsonl" <<'PY'
import json, math, sys
want = json.load(open(sys.argv[1]))["emb"]
got = [json.loads(l) for l in open(sys.argv[2])]
if len(got) != len(want): print("lines", len(got), "want", len(want)); sys.exit()
worst = min(sum(a * b for a, b in zip(g, w)) / math.sqrt(sum(a * a for a in g) * sum(b * b for b in w)) for g, w in zip(got, want))
print("ok" if worst >= 0.9999 else "worst cosine %.6f" % worst)
PY
)
  [ "$r" = ok ] && pass embed_matches_sentence_transformers || fail embed_matches_sentence_transformers "$r"
else fail embed_matches_sentence_transformers "$(cat "$TMP/emb.err")"; fi
n=$(printf 'one\ntwo\nthree\n' | "$GPTKIT" embed --model "$M" --f32 -q | wc -c)
[ "$n" = $((3 * 32 * 4)) ] && pass embed_f32_size || fail embed_f32_size "got $n bytes"
expect_fail embed_missing_model "nodir: not a directory" "$GPTKIT" embed --model "$TMP/nodir"
printf 'fine\nbad \xff byte\n' > "$TMP/bad_utf8.txt"
expect_fail embed_bad_utf8 "stdin:2: .*invalid UTF-8" sh -c "\"$GPTKIT\" embed --model \"$M\" -q < \"$TMP/bad_utf8.txt\""

# ---- index: build, query in each mode as JSON, incremental rebuild
mkdir -p "$TMP/docs"
printf 'The library of the north city was built in the year one thousand.\n\nThe museum on the island was founded by the queen.\n' > "$TMP/docs/a.txt"
printf 'The river runs south to the ocean bay.\n\nA tower stands by the harbor.\n' > "$TMP/docs/b.md"
printf '{"text": "The castle in the valley is very old.", "id": "c1"}\n' > "$TMP/docs/c.jsonl"
if "$GPTKIT" index build --embedder "$M" --docs "$TMP/docs" --out "$TMP/ix.db" -q 2> "$TMP/b.err"; then pass index_build
else fail index_build "$(cat "$TMP/b.err")"; fi
for mode in hybrid vector bm25; do
  out=$("$GPTKIT" index query "$TMP/ix.db" "The castle in the valley is very old." --mode $mode --top-k 3 --json -q 2>&1)
  r=$(printf '%s' "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); h=d["hits"]; print("ok" if h and h[0]["source"].endswith("c.jsonl#c1") and h[0]["start"]==0 and h[0]["text"].startswith("The castle") and len(h)<=3 else d)' 2>&1)
  [ "$r" = ok ] && pass "index_query_$mode" || fail "index_query_$mode" "$r"
done
err=$("$GPTKIT" index build --embedder "$M" --docs "$TMP/docs" --out "$TMP/ix.db" 2>&1)
case $err in *"0 documents added, 0 updated, 3 unchanged; 0 chunks"*) pass index_incremental_unchanged ;;
  *) fail index_incremental_unchanged "$err" ;; esac

# ---- bad inputs: named, and nothing already indexed lost
printf 'text\0binary' > "$TMP/bin.txt"; : > "$TMP/empty.txt"; printf 'ok \xfe\n' > "$TMP/latin1.txt"
expect_fail index_binary_file "bin.txt: binary data" "$GPTKIT" index build --embedder "$M" --docs "$TMP/docs" "$TMP/bin.txt" --out "$TMP/ix.db" -q
expect_fail index_empty_file "empty.txt: empty document" "$GPTKIT" index build --embedder "$M" --docs "$TMP/empty.txt" --out "$TMP/ix.db" -q
expect_fail index_invalid_utf8 "latin1.txt: invalid UTF-8 at byte 3" "$GPTKIT" index build --embedder "$M" --docs "$TMP/latin1.txt" --out "$TMP/ix.db" -q
expect_fail index_unreadable "nosuch.txt" "$GPTKIT" index build --embedder "$M" --docs "$TMP/nosuch.txt" --out "$TMP/ix.db" -q
expect_fail index_other_embedder "another embedder" "$GPTKIT" index build --embedder "$GK_ROOT/tests/fixtures/embed/st_cls" --docs "$TMP/docs" --out "$TMP/ix.db" -q
out=$("$GPTKIT" index query "$TMP/ix.db" "castle" --mode bm25 --json -q 2>&1)
case $out in *c.jsonl#c1*) pass index_intact_after_refusals ;; *) fail index_intact_after_refusals "$out" ;; esac
expect_fail index_query_missing "nope.db: no such index" "$GPTKIT" index query "$TMP/nope.db" "q"
printf 'not a database at all, just some text that is longer than a header' > "$TMP/junk.db"
expect_fail index_query_junk "junk.db" "$GPTKIT" index query "$TMP/junk.db" "q"

# ---- a BM25-only index (no --embedder): bm25 queries work, vector ones say why not
if "$GPTKIT" index build --docs "$TMP/docs" --out "$TMP/bm25.db" -q 2> "$TMP/b2.err"; then
  out=$("$GPTKIT" index query "$TMP/bm25.db" "castle valley" --mode bm25 --json -q 2>&1)
  case $out in *c.jsonl#c1*) pass index_bm25_only ;; *) fail index_bm25_only "$out" ;; esac
else fail index_bm25_only "$(cat "$TMP/b2.err")"; fi
expect_fail index_bm25_only_vector_query "built without an embedder" "$GPTKIT" index query "$TMP/bm25.db" "castle" --mode vector
expect_fail index_bm25_only_then_embedder "without an embedder .BM25 only., so it cannot be updated with one" "$GPTKIT" index build --embedder "$M" --docs "$TMP/docs" --out "$TMP/bm25.db"
# ---- the demo document set and recall@k: BM25 finds each answer's document (the names are unique words)
if "$GPTKIT" index demo-docs --out "$TMP/demo" --people 30 -q && "$GPTKIT" index build --docs "$TMP/demo/docs.jsonl" --out "$TMP/demo.db" -q; then
  out=$("$GPTKIT" index eval "$TMP/demo.db" --questions "$TMP/demo/questions.jsonl" --top-k 1,5 --json -q 2>&1)
  r=$(printf '%s' "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("ok" if d["questions"]==120 and d["bm25"]["5"]>=0.95 and d["bm25"]["1"]<=d["bm25"]["5"] and "vector" not in d else d)' 2>&1)
  [ "$r" = ok ] && pass index_eval_recall_demo || fail index_eval_recall_demo "$r"
  # a question whose answer is absent counts as missed: recall drops below 1
  printf '{"question": "Where was nobody born?", "answer": "Atlantis", "doc": "person-0"}\n' > "$TMP/q_miss.jsonl"
  out=$("$GPTKIT" index eval "$TMP/demo.db" --questions "$TMP/q_miss.jsonl" --json -q 2>&1)
  case $out in *'"1":0,'*) pass index_eval_counts_misses ;; *) fail index_eval_counts_misses "$out" ;; esac
  a=$(md5sum < "$TMP/demo/docs.jsonl"); "$GPTKIT" index demo-docs --out "$TMP/demo2" --people 30 -q
  [ "$a" = "$(md5sum < "$TMP/demo2/docs.jsonl")" ] && pass demo_docs_deterministic || fail demo_docs_deterministic
else fail index_eval_recall_demo "demo-docs or build failed"; fi
expect_fail chat_retrieve_missing_index "nope.db: no such index" "$GPTKIT" chat --model "$GK_ROOT/tests/fixtures/sft/model" --retrieve "$TMP/nope.db" -p hi
# solve: sources before each task's prompt, and the `retrieve` tool (its call and results: test_index)
printf '{"prompt": "Where is the old castle?", "answer": "valley"}\n' > "$TMP/rt.jsonl"
SM="$GK_ROOT/tests/fixtures/sft/model"   # its tokenizer: the 256 bytes (plus the chat tokens gptkit adds)
python3 -c 'import base64
for b in range(256): print(base64.b64encode(bytes([b])).decode(), b)' > "$TMP/bytes.tiktoken"
expect_fail solve_retrieve_missing_index "nope.db: no such index" "$GPTKIT" solve --model "$SM" --tasks "$TMP/rt.jsonl" --retrieve "$TMP/nope.db"
expect_fail solve_tool_retrieve_needs_index "add --retrieve INDEX.db" "$GPTKIT" solve --model "$SM" --tasks "$TMP/rt.jsonl" --tools retrieve
if out=$("$GPTKIT" solve --model "$SM" --tasks "$TMP/rt.jsonl" --tokenizer "$TMP/bytes.tiktoken" --retrieve "$TMP/ix.db" --tools calc,retrieve --max-new 8 --json -q 2>"$TMP/rt.err") &&
   printf '%s\n' "$out" | tail -1 | grep -q '"tools":"calc,retrieve"'; then pass solve_retrieve_runs
else fail solve_retrieve_runs "$(tail -2 "$TMP/rt.err") $out"; fi

# ---- serve --embedder (POST /v1/embeddings) and --retrieve (sources before each chat question)
if "$GPTKIT" serve --model x --port 0 2>&1 | grep -q "built without an HTTP server"; then
  skip serve_rag "this gptkit was built without libmicrohttpd"
else
  rag_server() {   # NAME ARGS...: sets the NAME_PID, NAME_FD and NAME_URL variables
    local name=$1; shift
    start_ready "listening on http://" "$TMP/$name.out" "$TMP/$name.err" env OMP_NUM_THREADS=1 "$GPTKIT" serve --model "$SM" \
      --tokenizer "$TMP/bytes.tiktoken" --port 0 "$@"
    eval "${name}_PID=$READY_PID ${name}_FD=$READY_FD ${name}_URL=$(grep -o 'http://[0-9.]*:[0-9]*' "$TMP/$name.out" | head -1)"
    [ "$READY" = 1 ] && pass "serve_${name}_ready" || fail "serve_${name}_ready" "$(cat "$TMP/$name.out" "$TMP/$name.err")"
  }
  rag_server srag --embedder "$M" --retrieve "$TMP/ix.db" --retrieve-k 1 --retrieve-budget 100
  rag_server splain
  "$GPTKIT" embed --model "$M" --json -q < "$TMP/lines.txt" > "$TMP/emb_want.jsonl"
  "$PYT" "$GK_ROOT/tests/serve/rag_test.py" "$srag_URL" "$splain_URL" "$TMP/emb_want.jsonl" "$TMP/lines.txt"
  for name in srag splain; do
    eval "pid=\$${name}_PID fd=\$${name}_FD"
    kill -TERM "$pid"; cat <&"$fd" > /dev/null; exec {fd}<&-; wait "$pid"
  done
  expect_fail serve_retrieve_missing_index "nope.db: no such index" "$GPTKIT" serve --model "$SM" --tokenizer "$TMP/bytes.tiktoken" --port 0 --retrieve "$TMP/nope.db"
  expect_fail serve_embedder_missing "nodir: not a directory" "$GPTKIT" serve --model "$SM" --tokenizer "$TMP/bytes.tiktoken" --port 0 --embedder "$TMP/nodir"
fi

# ---- SIGKILL mid-build: the index opens, answers, passes SQLite's integrity check, and a rerun completes
python3 -c '
import random, sys
r = random.Random(7)
w = "the river city north south library museum castle tower bay harbor island queen king market village".split()
with open(sys.argv[1], "w") as f:
    for i in range(5000):
        f.write("{\"text\": \"%s fact %d\", \"id\": \"d%d\"}\n" % (" ".join(r.choice(w) for _ in range(12)), i, i))
' "$TMP/many.jsonl"
start_ready "committed" "$TMP/kill.out" "$TMP/kill.err" sh -c "OMP_NUM_THREADS=1 exec \"$GPTKIT\" index build --embedder \"$M\" --docs \"$TMP/many.jsonl\" --out \"$TMP/kill.db\" -v 2>&1"
if [ "$READY" = 1 ]; then
  kill -KILL "$READY_PID" 2>/dev/null
  cat <&"$READY_FD" >/dev/null; exec {READY_FD}<&-
  { wait "$READY_PID"; rc=$?; } 2>/dev/null   # no "Killed" job notice in the output
  if [ $rc -ne 137 ]; then skip index_sigkill "the build finished before the kill (status $rc)"
  else
    out=$("$GPTKIT" index query "$TMP/kill.db" "castle tower" --top-k 2 --json -q 2>&1)
    ok=$(python3 -c 'import json,sqlite3,sys; d=json.loads(sys.argv[1]); c=sqlite3.connect(sys.argv[2]); ic=c.execute("PRAGMA integrity_check").fetchone()[0]; n=c.execute("select count(*) from chunks").fetchone()[0]; f=c.execute("select count(*) from chunks_fts").fetchone()[0]; print("ok" if len(d["hits"])==2 and ic=="ok" and 0<n<5000 and n==f else (ic,n,f,d))' "$out" "$TMP/kill.db" 2>&1)
    [ "$ok" = ok ] && pass index_sigkill_leaves_usable_index || fail index_sigkill_leaves_usable_index "$ok"
    err=$(OMP_NUM_THREADS=1 "$GPTKIT" index build --embedder "$M" --docs "$TMP/many.jsonl" --out "$TMP/kill.db" 2>&1)
    n=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from docs").fetchone()[0])' "$TMP/kill.db")
    case $err in *"0 updated"*"unchanged"*) [ "$n" = 5000 ] && pass index_resume_after_kill || fail index_resume_after_kill "docs $n" ;;
      *) fail index_resume_after_kill "$err" ;; esac
  fi
else fail index_sigkill "no commit line: $(tail -3 "$TMP/kill.out")"; fi
