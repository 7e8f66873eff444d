"""Opens one streaming chat request; prints "started" once text flows, then "done" if the stream ends with
data: [DONE] (standard library only). usage: stream_once.py URL MAX_TOKENS"""
import http.client, json, sys, urllib.parse

u = urllib.parse.urlparse(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
body = {"messages": [{"role": "user", "content": "What do bees make?"}], "stream": True,
        "max_tokens": int(sys.argv[2]), "temperature": 0}
c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
r = c.getresponse()
started = False
while True:
    line = r.readline()
    if not line:
        break
    if not started and line.startswith(b"data: {") and b'"content":"' in line and b'"content":""' not in line:
        print("started", flush=True)
        started = True
    if line.strip() == b"data: [DONE]":
        print("done", flush=True)
        break
