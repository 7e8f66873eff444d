"""llama.cpp's grammar sampling (PyPI llama-cpp-python) on the same GGUF model and the same GBNF grammar as
bench/constrain/cbench.c: ms per generated token without and with the grammar, batch 1 (llama-cpp-python's
high-level API decodes one sequence), median of 5 alternating runs of 48 tokens at temperature 1.

usage: llama_grammar.py MODEL.gguf GRAMMAR.gbnf THREADS"""
import statistics
import sys
import time

from llama_cpp import Llama, LlamaGrammar

path, gpath, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
llm = Llama(model_path=path, n_ctx=256, n_threads=threads, n_batch=64, verbose=False, seed=7)
grammar = LlamaGrammar.from_string(open(gpath).read(), verbose=False)


def run(g):
    t0 = time.perf_counter()
    out = llm.create_completion("The record as JSON:", max_tokens=48, temperature=1.0, seed=7, grammar=g)
    dt = time.perf_counter() - t0
    return dt * 1e3 / max(1, out["usage"]["completion_tokens"]), out["choices"][0]["text"]


run(None), run(grammar)   # warm-up
A, B = [], []
for _ in range(5):
    A.append(run(None)[0])
    B.append(run(grammar)[0])
a, b = statistics.median(A), statistics.median(B)
print("| llama.cpp (llama-cpp-python %s), same GGUF weights | 1 | %.2f | %.2f | %.2f | %+.1f%% |"
      % (__import__("llama_cpp").__version__, a, b, b - a, 100 * (b - a) / a))
