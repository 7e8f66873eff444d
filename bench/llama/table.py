#!/usr/bin/env python3
"""bench/llama/table.py: turns bench/llama/run.sh's "key value" output (stdin or a file) into the markdown table of
bench/RESULTS.md's issue-13 section: per type, prefill and decode tokens/s of gptkit and llama.cpp with their
ratio, and peak resident memory (gptkit: after loading, and at the end; llama.cpp: at the end)."""
import re
import sys

def main():
    text = open(sys.argv[1]).read() if len(sys.argv) > 1 else sys.stdin.read()
    rows, cur = [], None
    for line in text.splitlines():
        m = re.match(r"## (\S+) \((\d+) MB\)", line)
        if m:
            cur = {"type": m.group(1), "mb": m.group(2)}
            rows.append(cur)
            continue
        kv = line.split()
        if cur is not None and len(kv) == 2 and re.match(r"(gptkit|llamacpp)_", kv[0]):
            cur[kv[0]] = float(kv[1])
    def f(r, k, fmt="%.1f"):
        return fmt % r[k] if k in r else "–"
    def ratio(r, a, b):
        return "%.2f×" % (r[a] / r[b]) if a in r and b in r and r[b] > 0 else "–"
    print("| type | file | gptkit prefill tok/s | llama.cpp | ratio | gptkit decode tok/s | llama.cpp | ratio |"
          " gptkit RSS after load / peak | llama.cpp RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %s MB | %s | %s | %s | %s | %s | %s | %s / %s MB | %s MB |" % (
            r["type"], r["mb"], f(r, "gptkit_prefill_tok_s"), f(r, "llamacpp_prefill_tok_s"),
            ratio(r, "gptkit_prefill_tok_s", "llamacpp_prefill_tok_s"), f(r, "gptkit_decode_tok_s"),
            f(r, "llamacpp_decode_tok_s"), ratio(r, "gptkit_decode_tok_s", "llamacpp_decode_tok_s"),
            f(r, "gptkit_load_peak_rss_mb", "%.0f"), f(r, "gptkit_peak_rss_mb", "%.0f"),
            f(r, "llamacpp_peak_rss_mb", "%.0f")))

if __name__ == "__main__":
    main()
