# CLI tests for gptkit serve (loopback only): a tiny chat model trained here (tokenizer, 5 pretraining steps,
# 150 SFT steps on tests/serve/make_data.py's conversations, a few seconds) is served on a free port; then
#   tests/serve/raw_test.py main    hostile and malformed requests, OpenAI error shapes, streaming, n, seeds,
#                                   stop, log-probs, completions, metrics, 64 concurrent streaming clients
#   tests/serve/openai_test.py      the official openai client (SKIP without it: tests/requirements.txt)
#   tests/serve/raw_test.py limits  --api-key, a full queue (429), a disconnect freeing its slot, a slow client
#   prefix reuse                    a repeated request reuses all but its last prompt token, replies unchanged
#   graceful SIGTERM                a stream in flight finishes, the server exits 0
#   tests/serve/page_test.py        the web page in headless Chromium (SKIP without chromium/selenium)
# Under the ASan build (make asan) every server here runs under ASan + LeakSanitizer: a leak or error found
# when it exits is reported by tests/run.sh.
. "$(dirname "$0")/_lib.sh"
export OMP_NUM_THREADS=1   # a width-64 model: threads cost more than they give
S=$GK_ROOT/tests/serve

if ! $GPTKIT serve --help | grep -q "listening on http://HOST:PORT"; then fail serve_help; else pass serve_help; fi
expect_fail serve_needs_model "--model DIR is required" $GPTKIT serve --port 0
if ! $GPTKIT --help | grep -q "serve"; then fail serve_listed; else pass serve_listed; fi
err=$($GPTKIT serve --model "$TMP/none" --port 0 2>&1 >/dev/null); rc=$?
if [ $rc -eq 1 ]; then pass serve_bad_model_dir; else fail serve_bad_model_dir "rc=$rc $err"; fi
if $GPTKIT serve --model x --port 0 2>&1 | grep -q "built without an HTTP server"; then
  skip serve "this gptkit was built without libmicrohttpd (apt install libmicrohttpd-dev)"; exit 0
fi

# the model
python3 "$S/make_data.py" "$TMP/corpus.txt" "$TMP/train.jsonl"
$GPTKIT tokenizer train --input "$TMP/corpus.txt" --vocab-size 400 --out "$TMP/tok" >/dev/null 2>"$TMP/m.err" \
  && $GPTKIT tokenize --tokenizer "$TMP/tok" --input "$TMP/corpus.txt" --out-dir "$TMP/shards" --val-fraction 0 >/dev/null 2>>"$TMP/m.err" \
  && $GPTKIT pretrain --model d2 --n-embd 64 --n-head 4 --vocab-size 400 --n-ctx 256 --data "$TMP/shards/train_*.bin" \
       --tokenizer "$TMP/tok" -b 4 -t 32 --steps 5 --out "$TMP/base" --json >/dev/null 2>>"$TMP/m.err" \
  && $GPTKIT sft --init "$TMP/base" --data "$TMP/train.jsonl" -b 8 --steps 150 --lr 3e-3 --warmup 10 --seed 3 \
       --out "$TMP/sft" --json >/dev/null 2>>"$TMP/m.err"
if [ $? -ne 0 ]; then fail serve_model "$(tail -5 "$TMP/m.err")"; exit 0; fi
pass serve_model

# start_server NAME ARGS...: starts gptkit serve --port 0 ARGS, waits for its ready line; sets SPID and URL
start_server() {
  local name=$1; shift
  start_ready "listening on http://" "$TMP/$name.out" "$TMP/$name.err" $GPTKIT serve --model "$TMP/${SMODEL:-sft}" --port 0 "$@"
  SPID=$READY_PID; SFD=$READY_FD
  URL=$(grep -o 'http://[0-9.]*:[0-9]*' "$TMP/$name.out" | head -1)
  if [ "$READY" = 1 ] && [ -n "$URL" ]; then pass "serve_${name}_ready"; return 0; fi
  fail "serve_${name}_ready" "$(cat "$TMP/$name.out" "$TMP/$name.err")"; return 1
}
# stop_server NAME: SIGTERM, then the exit status must be 0 and the log say it stopped
stop_server() {
  local name=$1 rc
  kill -TERM "$SPID" 2>/dev/null
  cat <&"$SFD" >> "$TMP/$name.out"; exec {SFD}<&-
  wait "$SPID"; rc=$?
  if [ $rc -eq 0 ] && grep -q "stopped" "$TMP/$name.err"; then pass "serve_${name}_sigterm_exit_0"
  else fail "serve_${name}_sigterm_exit_0" "rc=$rc $(tail -5 "$TMP/$name.err")"; fi
}

if start_server main; then
  python3 "$S/raw_test.py" main "$URL"
  # memory back to baseline: after a first round of 64 streams has sized the allocator, two more rounds must not
  # grow the server (a leak per request would; the ASan run checks for leaks at exit directly)
  rss() { awk '/^VmRSS/ {print $2}' "/proc/$SPID/status"; }
  case $GPTKIT in
    */build-asan/*) skip serve_memory_flat "ASan's quarantine keeps freed memory; LeakSanitizer checks this server at exit" ;;
    *) r1=$(rss); python3 "$S/raw_test.py" load "$URL" >/dev/null; python3 "$S/raw_test.py" load "$URL" >/dev/null; r2=$(rss)
       if [ -n "$r1" ] && [ -n "$r2" ] && [ $((r2 - r1)) -lt 16384 ]; then pass "serve_memory_flat (RSS ${r1} -> ${r2} kB over 128 more streams)"
       else fail serve_memory_flat "RSS ${r1:-?} -> ${r2:-?} kB after 128 more streams"; fi ;;
  esac
  need_py serve_openai_client openai && "$PYT" "$S/openai_test.py" "$URL"
  stop_server main
fi

# prefix reuse: a repeated request runs only its last prompt token (usage.prompt_tokens_details.cached_tokens),
# one sharing the system prompt reuses that much (and takes that slot: the streamed repeat after it finds the
# system prompt there); the greedy replies equal those of a server without reuse
cache_run() {   # URL -> one line per request: cached prompt content (JSON)
  python3 - "$1" <<'PY'
import json, sys, urllib.request
def ask(q, stream=False):
    body = {"messages": [{"role": "system", "content": "You answer in one short sentence."}, {"role": "user", "content": q}],
            "max_tokens": 12, "temperature": 0}
    if stream: body.update(stream=True, stream_options={"include_usage": True})
    r = urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/v1/chat/completions", json.dumps(body).encode(),
                               {"Content-Type": "application/json"}), timeout=60)
    if not stream:
        o = json.load(r)
        return o["usage"], o["choices"][0]["message"]["content"]
    usage, text = None, ""
    for line in r:
        line = line.strip()
        if line.startswith(b"data: {"):
            o = json.loads(line[6:])
            usage = o.get("usage") or usage
            for c in o["choices"]: text += c["delta"].get("content") or ""
    return usage, text
for q, st in (("What do bees make?", False), ("What do bees make?", False), ("Where do fish live?", False), ("What do bees make?", True)):
    u, text = ask(q, st)
    print(json.dumps([u["prompt_tokens_details"]["cached_tokens"], u["prompt_tokens"], text]))
PY
}
if start_server cache --slots 2; then
  cache_run "$URL" > "$TMP/cache_on.txt" 2>&1
  stop_server cache
fi
if start_server nocache --slots 2 --no-prefix-cache; then
  cache_run "$URL" > "$TMP/cache_off.txt" 2>&1
  stop_server nocache
fi
r=$(python3 - "$TMP/cache_on.txt" "$TMP/cache_off.txt" <<'PY' 2>&1
import json, sys
on = [json.loads(l) for l in open(sys.argv[1])]
off = [json.loads(l) for l in open(sys.argv[2])]
(c0, n0, t0), (c1, n1, t1), (c2, n2, t2), (c3, n3, t3) = on
problems = []
if c0 != 0: problems.append(f"first request reused {c0}")
if c1 != n1 - 1: problems.append(f"repeat reused {c1} of {n1} (want {n1 - 1})")
if not 0 < c2 < n2 - 1: problems.append(f"shared system prompt: reused {c2} of {n2}")
if c3 < c2: problems.append(f"streamed, after the other question took the slot: reused {c3} of {n3} (want >= {c2})")
if any(c for c, _, _ in off): problems.append(f"--no-prefix-cache reused {[c for c, _, _ in off]}")
if [t for _, _, t in on] != [t for _, _, t in off]: problems.append(f"replies differ: {[t for _, _, t in on]} vs {[t for _, _, t in off]}")
print("; ".join(problems) or f"ok: reused {c1}/{n1}, {c2}/{n2}")
PY
)
case $r in ok*) pass "serve_prefix_reuse ($r)" ;; *) fail serve_prefix_reuse "$r $(cat "$TMP/cache_on.txt" "$TMP/cache_off.txt" 2>/dev/null | head -8)" ;; esac

# the barely trained base model rambles under greedy decoding (no <|end|> within the context), so a request
# holds its slot for as long as these checks need
if SMODEL=base start_server limits --slots 1 --queue 1 --api-key sekrit --read-timeout 2 --step-delay 20; then
  python3 "$S/raw_test.py" limits "$URL" sekrit
  stop_server limits
fi

# the page in headless Chromium; decode steps slowed so a reply streams long enough to be stopped. The
# screenshot is kept in build/test-output/ (or $GK_TEST_OUT).
if need_py serve_page selenium && SMODEL=base start_server page --slots 2 --step-delay 200; then
  OUTDIR=${GK_TEST_OUT:-$GK_ROOT/build/test-output}; mkdir -p "$OUTDIR"
  "$PYT" "$S/page_test.py" "$URL" "$OUTDIR/serve_page.png"
  stop_server page
fi

# --timeout: the base model's rambling request is ended by the time limit
if SMODEL=base start_server timeout --timeout 0.5 --step-delay 20; then
  r=$(python3 -c "
import json, sys, urllib.request
q = urllib.request.Request(sys.argv[1] + '/v1/completions', json.dumps({'prompt': 'What do bees make?', 'max_tokens': 200,
                           'temperature': 0}).encode(), {'Content-Type': 'application/json'})
r = json.load(urllib.request.urlopen(q, timeout=60))
print(r['choices'][0]['finish_reason'], r['usage']['completion_tokens'])" "$URL" 2>&1)
  set -- $r
  if [ "${1:-}" = length ] && [ "${2:-999}" -lt 200 ]; then pass serve_request_timeout; else fail serve_request_timeout "$r"; fi
  stop_server timeout
fi

# graceful shutdown: a stream in flight when SIGTERM comes finishes (within --grace) and ends with [DONE]
if GPTKIT_API_KEY= SMODEL=base start_server grace --slots 2 --step-delay 100 --grace 30; then
  python3 "$S/stream_once.py" "$URL" 40 > "$TMP/stream.out" 2>&1 &
  CPID=$!
  for _ in $(seq 1 500); do grep -q started "$TMP/stream.out" && break; sleep 0.02; done
  stop_server grace
  wait $CPID
  if grep -q done "$TMP/stream.out"; then pass serve_sigterm_finishes_stream; else fail serve_sigterm_finishes_stream "$(cat "$TMP/stream.out")"; fi
  if python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1]+'/health', timeout=5)" "$URL" 2>/dev/null; then
    fail serve_stopped_listening; else pass serve_stopped_listening; fi
fi
