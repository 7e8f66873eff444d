"""Streaming load against an OpenAI-compatible /v1/completions: C concurrent clients, each sending R requests
one after another (same prompt, max_tokens N, greedy), measuring the aggregate generated tokens per second of
the round and each request's time to first token (TTFT, to the first chunk with text). Standard library only.
Prints one JSON line per concurrency.

usage: load.py URL NAME --clients 1,4,16 [--requests R] [--max-tokens N] [--prompt-words W]
"""
import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse


def one_request(u, body):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    ttft, chunks, finish, text = None, 0, None, ""
    while True:
        line = r.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            if line == b"data: [DONE]":
                break
            continue
        ev = json.loads(line[6:])
        for ch in ev.get("choices", []):
            if ch.get("text"):
                if ttft is None:
                    ttft = time.perf_counter() - t0
                chunks += 1
                text += ch["text"]
            finish = ch.get("finish_reason") or finish
    c.close()
    return {"ttft": ttft if ttft is not None else time.perf_counter() - t0, "finish": finish, "chunks": chunks,
            "elapsed": time.perf_counter() - t0}


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("name")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--prompt-words", type=int, default=48)
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    words = ("the quick brown fox jumps over the lazy dog while a small bird sings in the old oak tree "
             "near the river bank on a bright and windy morning in early spring").split()
    prompt = " ".join(words[i % len(words)] for i in range(a.prompt_words))
    body = {"model": "bench", "prompt": prompt, "max_tokens": a.max_tokens, "temperature": 0, "stream": True,
            "logit_bias": {"50256": -100}}
    one_request(u, dict(body, max_tokens=4))   # warm-up
    for C in [int(x) for x in a.clients.split(",")]:
        res = []
        lock = threading.Lock()

        def client():
            for _ in range(a.requests):
                r = one_request(u, body)
                with lock:
                    res.append(r)

        t0 = time.perf_counter()
        th = [threading.Thread(target=client) for _ in range(C)]
        for t in th:
            t.start()
        for t in th:
            t.join()
        wall = time.perf_counter() - t0
        full = sum(1 for r in res if r["finish"] == "length")
        # a request that ran to max_tokens generated exactly max_tokens; one that stopped early is counted by its
        # text chunks (a lower bound: a chunk can carry several tokens)
        toks = sum(a.max_tokens if r["finish"] == "length" else r["chunks"] for r in res)
        ttfts = [r["ttft"] for r in res]
        print(json.dumps({"server": a.name, "clients": C, "requests": len(res), "ran_to_max_tokens": full,
                          "gen_tokens": toks, "wall_s": round(wall, 3), "agg_tok_s": round(toks / wall, 2),
                          "ttft_p50_s": round(statistics.median(ttfts), 4), "ttft_p99_s": round(pct(ttfts, 99), 4)}),
              flush=True)


main()
