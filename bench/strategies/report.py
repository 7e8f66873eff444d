#!/usr/bin/env python3
"""Reads bench/out/strategies/*.jsonl (gptkit solve --json) and prints the cost-vs-accuracy table, the paired
difference sc:8 - greedy with a 95% interval, and sc:8's shared prefill vs 8 independent sc:1 runs.
Standard library only."""
import glob, json, math, os, statistics, sys

D = sys.argv[1]


def load(name):
    p = os.path.join(D, name + ".jsonl")
    if not os.path.exists(p):
        return None
    L = [json.loads(l) for l in open(p)]
    return L[:-1], L[-1]


def row(label, name, tools="–"):
    r = load(name)
    if not r:
        return
    tasks, s = r
    secs = [t["seconds"] for t in tasks]
    toks = [t["tokens"] for t in tasks]
    print("| %s | %s | %.1f%% | [%.1f%%, %.1f%%] | %d | %.1f | %.1f | %.3f | %.3f |" % (
        label, tools, 100 * s["accuracy"], 100 * s["ci95"][0], 100 * s["ci95"][1], s["n"],
        statistics.mean(toks), statistics.median(toks), statistics.mean(secs), statistics.median(secs)))


print("| tasks / strategy | tools | accuracy | 95% interval | n | tokens/task (mean) | (median) | s/task (mean) | (median) |")
print("|---|---|---|---|---|---|---|---|---|")
for s in ["greedy", "cot", "sc_5", "sc_8", "tot_3_2_2", "reflect_1"]:
    row("small arithmetic, " + s.replace("_", ":", 1).replace("_", ","), "arith_" + s)
row("big arithmetic, greedy", "big_greedy")
row("big arithmetic, greedy", "big_greedy_calc", "calc")
row("big arithmetic, sc:5", "big_sc5_calc", "calc")

g, s8 = load("arith_greedy"), load("arith_sc_8")
if g and s8:
    d = [int(b["correct"]) - int(a["correct"]) for a, b in zip(g[0], s8[0])]
    n = len(d)
    m = statistics.mean(d)
    sd = statistics.stdev(d) if n > 1 else 0
    h = 1.959963984540054 * sd / math.sqrt(n)
    print("\nsc:8 - greedy on the same %d tasks: %+.1f points, 95%% interval [%+.1f, %+.1f] (paired, normal approximation)"
          % (n, 100 * m, 100 * (m - h), 100 * (m + h)))
ind = [load("arith_sc1_seed%d" % k) for k in range(1, 9)]
if s8 and all(ind):
    shared = sum(t["seconds"] for t in s8[0])
    indep = sum(sum(t["seconds"] for t in r[0]) for r in ind)
    print("sc:8 shared prefill + batched decode: %.2f s for %d tasks; 8 independent generations (8 x sc:1): %.2f s; "
          "ratio %.2fx" % (shared, len(s8[0]), indep, indep / shared if shared else float("nan")))
