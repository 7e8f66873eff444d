"""Raw-HTTP checks of `gptkit serve` (standard library only): malformed and hostile requests get well-formed
OpenAI error answers with the right status, and the server stays healthy; streaming, n, seeds, stop strings,
log-probs, completions, metrics; 64 concurrent streaming clients. Prints PASS/FAIL/SKIP lines.

usage: raw_test.py main URL            checks against a server started with defaults (--slots 8)
       raw_test.py load URL            64 concurrent streaming clients only
       raw_test.py limits URL KEY      checks against one started with --slots 1 --queue 1 --api-key KEY
                                       --read-timeout 2 --step-delay 20, serving a model that does not stop
                                       by itself under greedy decoding (the test's barely trained base model)
"""
import http.client
import json
import socket
import sys
import threading
import time
import urllib.parse

FAILED = []


def check(name, ok, detail=""):
    print(("PASS " if ok else "FAIL ") + name)
    if not ok:
        FAILED.append(name)
        if detail:
            print("  " + str(detail)[:600])


class Server:
    def __init__(self, url, key=None):
        u = urllib.parse.urlparse(url)
        self.host, self.port, self.key = u.hostname, u.port, key

    def conn(self, timeout=60):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, key=True):
        h = {"Content-Type": "application/json"}
        if key and self.key:
            h["Authorization"] = "Bearer " + self.key
        h.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        c = self.conn()
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, data, r
        finally:
            c.close()

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def raw(self, data, timeout=10):
        """Sends bytes as they are; returns what the server answered before closing (or timing out)."""
        s = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            s.sendall(data)
            out = b""
            while True:
                try:
                    b = s.recv(65536)
                except socket.timeout:
                    break
                if not b:
                    break
                out += b
                if b"\r\n\r\n" in out and (b"Content-Length: 0" in out or out.rstrip().endswith(b"}")):
                    break
            return out
        finally:
            s.close()


def error_shape(status, data, want_status, param=None):
    """The OpenAI error body: {"error": {"message", "type", "param", "code"}}."""
    try:
        e = json.loads(data)["error"]
    except Exception as ex:  # noqa: BLE001
        return False, "not an OpenAI error body: %r (%s)" % (data[:200], ex)
    if status != want_status:
        return False, "status %d, wanted %d: %s" % (status, want_status, e.get("message"))
    if not isinstance(e.get("message"), str) or not e["message"] or "type" not in e or "code" not in e:
        return False, "incomplete error object %r" % e
    if param is not None and e.get("param") != param:
        return False, "param %r, wanted %r (%s)" % (e.get("param"), param, e["message"])
    return True, e["message"]


def chat(content="What do bees make?", **kw):
    b = {"model": "any", "messages": [{"role": "user", "content": content}], "temperature": 0}
    b.update(kw)
    return b


def sse_events(resp):
    """Reads a whole SSE response; returns (list of JSON events, saw [DONE], any malformed line)."""
    events, done, bad = [], False, []
    for raw in resp.read().decode().split("\n\n"):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("data: "):
            bad.append(line)
            continue
        payload = line[6:]
        if payload == "[DONE]":
            done = True
            continue
        try:
            events.append(json.loads(payload))
        except ValueError:
            bad.append(payload)
    return events, done, bad


def healthy(srv):
    st, data, _ = srv.request("GET", "/health", key=False)
    return st == 200 and json.loads(data) == {"status": "ok"}


# ------------------------------------------------------------------------------------------- main server

def bad_requests(srv):
    cases = [  # name, body, status, param
        ("malformed_json", b'{"messages": [', 400, ""),
        ("not_an_object", b'[1, 2]', 400, ""),
        ("wrong_type_temperature", chat(temperature="hot"), 400, "temperature"),
        ("wrong_type_messages", {"messages": "hello"}, 400, "messages"),
        ("wrong_type_content", {"messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
        ("bad_role", {"messages": [{"role": "bot", "content": "hi"}]}, 400, "messages[0].role"),
        ("missing_messages", {"model": "x"}, 400, "messages"),
        ("empty_messages", {"messages": []}, 400, "messages"),
        ("deep_json", b'{"messages": ' + b'[' * 5000 + b']' * 5000 + b'}', 400, ""),
        ("invalid_utf8", b'{"messages": [{"role": "user", "content": "\xff\xfe bad"}]}', 400, ""),
        ("oversized_max_tokens", chat(max_tokens=100000), 400, "max_tokens"),
        ("prompt_over_context", chat(content="word " * 3000), 400, "messages"),
        ("n_over_slots", chat(n=64), 400, "n"),
        ("temperature_out_of_range", chat(temperature=5), 400, "temperature"),
        ("too_many_stops", chat(stop=["a", "b", "c", "d", "e"]), 400, "stop"),
        ("response_format_bad_schema", chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array", "uniqueItems": True}}}), 400, "response_format"),
        ("tool_without_call", {"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]}, 400, "messages"),
    ]
    for name, body, status, param in cases:
        st, data, _ = srv.post("/v1/chat/completions", body)
        ok, msg = error_shape(st, data, status, param if param else None)
        check("raw_" + name, ok, msg)
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "patternProperties": {}}}}
    ok, msg = error_shape(*srv.post("/v1/chat/completions", chat(response_format=bad))[:2], 400)
    check("raw_response_format_message", ok and "patternProperties" in msg, msg)
    # constrained output: json_object gives an object; json_schema output validates (checked by hand here: the
    # schema is small), at temperature 1 over several seeds and with n = 2
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
              "n": {"type": "integer", "minimum": 0, "maximum": 99}, "ok": {"type": "boolean"}},
              "required": ["name", "n"], "additionalProperties": False}
    def valid(o):
        return (isinstance(o, dict) and set(o) <= {"name", "n", "ok"} and isinstance(o.get("name"), str) and len(o["name"]) <= 12
                and type(o.get("n")) is int and 0 <= o["n"] <= 99 and ("ok" not in o or isinstance(o["ok"], bool)))
    bad_out = []
    for seed in range(4):
        for rf, test in (({"type": "json_object"}, lambda o: isinstance(o, dict)),
                         ({"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}, valid)):
            st, data, _ = srv.post("/v1/chat/completions", chat(response_format=rf, temperature=1, seed=seed, n=2, max_tokens=200))
            try:
                for c in json.loads(data)["choices"]:
                    # "length" is fine: the engine keeps a constrained reply finishable within max_tokens
                    if c["finish_reason"] not in ("stop", "length") or not test(json.loads(c["message"]["content"])):
                        bad_out.append((c["finish_reason"], c["message"]["content"][-300:]))
            except Exception as ex:  # noqa: BLE001
                bad_out.append((st, data[:200], str(ex)))
    check("raw_response_format_constrained", not bad_out, repr(bad_out[:2])[:400])
    st, data, _ = srv.post("/v1/completions", {"prompt": 5})
    check("raw_completions_bad_prompt", error_shape(st, data, 400, "prompt")[0], data[:200])
    # a declared oversized body is refused before it is read (Expect: 100-continue, so no body is in flight) ...
    out = srv.raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 2097152\r\nExpect: 100-continue\r\n\r\n")
    check("raw_huge_body_413", out.startswith(b"HTTP/1.1 413") and b'"error"' in out, out[:200])
    # ... and an undeclared one (chunked) is read to its end without being kept, then refused
    s = socket.create_connection((srv.host, srv.port), timeout=30)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"a" * 65536
    for _ in range(32):
        s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    s.sendall(b"0\r\n\r\n")
    out = b""
    while b"}}" not in out:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    check("raw_huge_chunked_body_413", out.startswith(b"HTTP/1.1 413") and b'"error"' in out, out[:200])
    st, data, _ = srv.request("GET", "/v1/chat/completions")
    check("raw_wrong_method_405", error_shape(st, data, 405)[0], data[:200])
    st, data, _ = srv.request("GET", "/nope")
    check("raw_unknown_route_404", error_shape(st, data, 404)[0], data[:200])
    st, data, _ = srv.post("/v1/embeddings", {"input": "x"})
    check("raw_embeddings_404", error_shape(st, data, 404)[0], data[:200])
    # things that are not HTTP at all, or too large, are refused by libmicrohttpd before our code
    out = srv.raw(b"HELLO THERE\r\n\r\n")
    check("raw_garbage_request_line", out == b"" or out.startswith(b"HTTP/1.1 4"), out[:100])
    out = srv.raw(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
    check("raw_huge_header_refused", out == b"" or out.startswith(b"HTTP/1.1 4"), out[:100])
    check("raw_healthy_after_bad_requests", healthy(srv))


def good_requests(srv):
    st, data, _ = srv.post("/v1/chat/completions", chat(unknown_field={"x": 1}, user="u1"))
    r = json.loads(data) if st == 200 else {}
    check("raw_unknown_fields_ignored", st == 200 and r["choices"][0]["message"]["content"] == "Bees make honey.", data[:300])
    u = r.get("usage", {})
    check("raw_usage_counts", u.get("prompt_tokens", 0) > 0 and u.get("completion_tokens", 0) > 0 and
          u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], u)
    st, data, _ = srv.post("/v1/chat/completions", chat(content=""))
    check("raw_empty_content", st == 200 and "choices" in json.loads(data), data[:300])
    st, data, _ = srv.post("/v1/chat/completions", chat(content="What is the capital of France?", stop=["Paris"]))
    c = json.loads(data)["choices"][0] if st == 200 else {}
    check("raw_stop_string", c.get("message", {}).get("content") == "The capital of France is " and c.get("finish_reason") == "stop", data[:300])
    body = chat(content="Which planet is red?", n=3, temperature=1.0, seed=7, max_tokens=12)
    a, b = srv.post("/v1/chat/completions", body), srv.post("/v1/chat/completions", body)
    ca = [x["message"]["content"] for x in json.loads(a[1])["choices"]] if a[0] == 200 else []
    cb = [x["message"]["content"] for x in json.loads(b[1])["choices"]] if b[0] == 200 else None
    check("raw_n3_seeded_reproducible", len(ca) == 3 and ca == cb, (ca, cb))
    st, data, _ = srv.post("/v1/chat/completions", chat(logprobs=True, top_logprobs=2))
    r = json.loads(data) if st == 200 else {}
    lp = r.get("choices", [{}])[0].get("logprobs") or {}
    toks = lp.get("content", [])
    check("raw_logprobs", len(toks) > 0 and "".join(t["token"] for t in toks) == r["choices"][0]["message"]["content"] and
          all(t["logprob"] <= 0 and t["top_logprobs"] for t in toks), data[:400])
    st, data, _ = srv.post("/v1/completions", {"prompt": "What do bees make?", "max_tokens": 5, "temperature": 0,
                                               "echo": True, "logprobs": 1})
    r = json.loads(data) if st == 200 else {}
    ch = r.get("choices", [{}])[0]
    check("raw_completions", st == 200 and r.get("object") == "text_completion" and ch.get("text", "").startswith("What do bees make?")
          and len(ch.get("logprobs", {}).get("tokens", [])) == r["usage"]["completion_tokens"], data[:400])
    # streaming: chunks well-formed, text equals the non-streamed answer, usage last
    c = srv.conn()
    c.request("POST", "/v1/chat/completions", json.dumps(chat(stream=True, stream_options={"include_usage": True})),
              {"Content-Type": "application/json"})
    resp = c.getresponse()
    ev, done, bad = sse_events(resp)
    c.close()
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in ev if e["choices"])
    check("raw_stream", resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream" and done and not bad
          and text == "Bees make honey." and ev[-1]["choices"] == [] and ev[-1]["usage"]["completion_tokens"] > 0
          and ev[-2]["choices"][0]["finish_reason"] == "stop", (text, bad, ev[-2:]))
    st, data, _ = srv.request("GET", "/metrics")
    t = data.decode()
    check("raw_metrics", st == 200 and 'gptkit_requests_total{route="chat_completions",code="200"}' in t and
          "gptkit_time_to_first_token_seconds_bucket" in t and "gptkit_slots_total 8" in t, t[:300])
    st, data, _ = srv.request("GET", "/")
    check("raw_page", st == 200 and b"<html" in data and b"gptkit" in data, data[:100])


def many_streams(srv, n=64):
    results = [None] * n

    def one(i):
        try:
            c = srv.conn(timeout=120)
            body = chat(content=["What do bees make?", "Who wrote Hamlet?"][i % 2], stream=True, max_tokens=24,
                        temperature=0.8, seed=i)
            c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
            resp = c.getresponse()
            ev, done, bad = sse_events(resp)
            c.close()
            fin = [e["choices"][0]["finish_reason"] for e in ev if e["choices"] and e["choices"][0]["finish_reason"]]
            results[i] = (resp.status == 200 and done and not bad and len(fin) == 1, (resp.status, done, bad[:2], fin))
        except Exception as ex:  # noqa: BLE001
            results[i] = (False, repr(ex))

    th = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    bad = [(i, r[1]) for i, r in enumerate(results) if not r or not r[0]]
    check("raw_%d_concurrent_streams" % n, not bad, bad[:3])
    check("raw_healthy_after_load", healthy(srv))


# ------------------------------------------------------------------------------------------- limits server

def metric(srv, name):
    st, data, _ = srv.request("GET", "/metrics")
    for line in data.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def wait_for(pred, timeout=20):
    """Polls pred until it holds; the timeout only turns a hang into a FAIL (never a timing verdict)."""
    t = time.time() + timeout
    while time.time() < t:
        if pred():
            return True
        time.sleep(0.02)
    return False


def open_stream(srv, content="What do bees make?", max_tokens=200):
    """Starts a streaming request and returns (socket, first bytes) once the server has admitted it."""
    body = json.dumps(chat(content=content, stream=True, max_tokens=max_tokens)).encode()   # greedy: the base model rambles
    s = socket.create_connection((srv.host, srv.port), timeout=30)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Authorization: Bearer " + srv.key.encode() + b"\r\nContent-Length: " + str(len(body)).encode() +
              b"\r\n\r\n" + body)
    return s


def read_until(s, pat):
    buf = b""
    while pat not in buf:
        b = s.recv(4096)
        if not b:
            break
        buf += b
    return buf


def limits(srv):
    st, data, _ = srv.request("GET", "/v1/models", key=False)
    check("limits_no_key_401", error_shape(st, data, 401)[0], data[:200])
    st, data, _ = srv.request("GET", "/v1/models", key=False, headers={"Authorization": "Bearer wrong"})
    check("limits_wrong_key_401", error_shape(st, data, 401)[0], data[:200])
    st, data, _ = srv.request("GET", "/v1/models")
    check("limits_key_200", st == 200 and json.loads(data)["data"][0]["object"] == "model", data[:200])
    check("limits_health_needs_no_key", healthy(srv))
    # one slot, one queue place: A runs, B waits, C is turned away with 429
    a = open_stream(srv)
    got = read_until(a, b'"content"')
    check("limits_stream_admitted", b"200 OK" in got, got[:200])
    b = open_stream(srv, content="Who wrote Hamlet?")
    check("limits_second_queued", wait_for(lambda: metric(srv, "gptkit_queue_depth") == 1), metric(srv, "gptkit_queue_depth"))
    st, data, _ = srv.post("/v1/chat/completions", chat(max_tokens=5))
    check("limits_queue_full_429", error_shape(st, data, 429)[0], data[:200])
    # A hangs up mid-stream: its slot goes to B, which starts streaming
    a.close()
    got = read_until(b, b'"content":"')
    check("limits_disconnect_frees_slot", b'"content":"' in got, got[-300:])
    b.close()
    check("limits_slots_back_to_zero", wait_for(lambda: metric(srv, "gptkit_slots_used") == 0 and
                                                 metric(srv, "gptkit_requests_in_flight") == 0),
          (metric(srv, "gptkit_slots_used"), metric(srv, "gptkit_requests_in_flight")))
    slow_client(srv)


def slow_client(srv):
    """One byte every 0.2 s: never idle, so only the read deadline (--read-timeout 2) can end it."""
    s = socket.create_connection((srv.host, srv.port), timeout=30)
    req = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + b"X-Pad: " + b"a" * 200
    closed, health_ok = False, True
    for i, ch in enumerate(req):
        try:
            s.sendall(bytes([ch]))
        except OSError:
            closed = True
            break
        if i == 5:
            health_ok = healthy(srv)   # the server answers others meanwhile
        time.sleep(0.2)
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed = True
                break
        except BlockingIOError:
            pass
        except OSError:
            closed = True
            break
        finally:
            s.setblocking(True)
    s.close()
    check("limits_slow_client_cut_off", closed, "sent %d bytes without being cut off" % len(req))
    check("limits_others_served_meanwhile", health_ok)
    st, data, _ = srv.request("GET", "/metrics")
    check("limits_slow_client_counted", b"gptkit_slow_connections_closed_total 1" in data or
          b"gptkit_slow_connections_closed_total 2" in data, data[-400:])


def main():
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "main":
        srv = Server(url)
        bad_requests(srv)
        good_requests(srv)
        many_streams(srv)
    elif mode == "load":
        many_streams(Server(url))
    else:
        limits(Server(url, sys.argv[3]))
    sys.exit(1 if FAILED else 0)


main()
