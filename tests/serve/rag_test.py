"""`gptkit serve --embedder DIR --retrieve INDEX.db`: POST /v1/embeddings (raw HTTP: floats and base64, the
errors; and through the official `openai` client when it is installed) against `gptkit embed`'s vectors of the
same texts, and retrieval in chat requests (the prompt grows by the sources put before the question). Prints
PASS/FAIL/SKIP lines.

usage: rag_test.py URL_RAG URL_PLAIN EXPECTED.jsonl TEXTS.txt
  URL_RAG    a server with --embedder and --retrieve; URL_PLAIN the same model without either
  EXPECTED   `gptkit embed --json` of TEXTS (one vector per line)
"""
import base64
import json
import math
import struct
import sys
import urllib.error
import urllib.request


def check(name, ok, detail=""):
    print(("PASS " if ok else "FAIL ") + name)
    if not ok:
        print("  " + str(detail)[:600])


def post(url, path, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def cosine(a, b):
    d = sum(x * y for x, y in zip(a, b))
    return d / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def main():
    rag, plain, expected, texts = sys.argv[1:5]
    want = [json.loads(l) for l in open(expected)]
    lines = open(texts).read().splitlines()

    st, r = post(rag, "/v1/embeddings", {"model": "st", "input": lines})
    got = [d["embedding"] for d in r.get("data", [])] if st == 200 else []
    worst = min((cosine(a, b) for a, b in zip(got, want)), default=0)
    check("serve_embeddings_float", st == 200 and r["object"] == "list" and len(got) == len(want) and worst > 0.999999
          and [d["index"] for d in r["data"]] == list(range(len(want))) and r["usage"]["prompt_tokens"] > len(want), (st, worst, r))
    st, r = post(rag, "/v1/embeddings", {"input": lines[0], "encoding_format": "base64"})
    ok = st == 200 and len(r["data"]) == 1
    if ok:
        raw = base64.b64decode(r["data"][0]["embedding"])
        v = struct.unpack("<%df" % (len(raw) // 4), raw)
        ok = len(v) == len(want[0]) and cosine(v, want[0]) > 0.999999
    check("serve_embeddings_base64", ok, (st, r))

    for name, body, param in [("token_ids", {"input": [[1, 2, 3]]}, "input[0]"),
                              ("number", {"input": ["a", 5]}, "input[1]"),
                              ("empty_list", {"input": []}, "input"),
                              ("no_input", {"model": "x"}, "input"),
                              ("bad_format", {"input": "a", "encoding_format": "int8"}, "encoding_format"),
                              ("dimensions", {"input": "a", "dimensions": 7}, "dimensions"),
                              ("too_many", {"input": ["a"] * 2049}, "input")]:
        st, r = post(rag, "/v1/embeddings", body)
        check("serve_embeddings_400_" + name, st == 400 and r["error"]["param"] == param, (st, r))
    st, r = post(rag, "/v1/embeddings", b'{"input": ')
    check("serve_embeddings_400_bad_json", st == 400 and "not valid JSON" in r["error"]["message"], (st, r))
    st, r = post(plain, "/v1/embeddings", {"input": "a"})
    check("serve_embeddings_404_without_embedder", st == 404 and "--embedder" in r["error"]["message"], (st, r))

    # retrieval: the same question costs more prompt tokens with the sources in front of it
    q = {"messages": [{"role": "user", "content": "Where is the old castle?"}], "max_tokens": 2, "temperature": 0}
    s1, r1 = post(rag, "/v1/chat/completions", q)
    s2, r2 = post(plain, "/v1/chat/completions", q)
    ok = s1 == 200 and s2 == 200
    grew = r1["usage"]["prompt_tokens"] - r2["usage"]["prompt_tokens"] if ok else None
    # the byte tokenizer: the growth is the bytes of "Sources:\n[1] (…c.jsonl#c1) The castle in the valley is very old.\n\nQuestion: "
    check("serve_retrieve_adds_sources", ok and grew >= len("Sources:\n[1] (c.jsonl#c1) The castle in the valley is very old.\nQuestion: "),
          (s1, s2, grew, r1, r2))

    try:
        import openai
    except ImportError:
        print("SKIP serve_embeddings_openai_client: python module openai not installed")
        return
    client = openai.OpenAI(base_url=rag + "/v1", api_key="unused", max_retries=0, timeout=60)
    e = client.embeddings.create(model="st", input=lines[:3])   # the client asks for base64 and decodes it
    worst = min(cosine(d.embedding, w) for d, w in zip(e.data, want))
    check("serve_embeddings_openai_client", len(e.data) == 3 and worst > 0.999999 and e.usage.prompt_tokens > 3, (worst, e))
    try:
        client.embeddings.create(model="st", input=[[5, 6]])
        check("serve_embeddings_openai_client_400", False, "no error raised")
    except openai.BadRequestError as x:
        check("serve_embeddings_openai_client_400", x.status_code == 400, x)


main()
