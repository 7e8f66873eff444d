#!/usr/bin/env python3
"""Peer for bench/llama/lbench.c: llama.cpp through llama-cpp-python on the same GGUF file, same method.
prefill: one eval of P random tokens (n_batch = P), tokens/s = P / time; decode: N greedy tokens after that
prefill, each one eval of a single token, tokens/s = (N-1) / time; median of --reps after a warm-up; peak RSS.
Prints "key value" lines."""
import argparse, random, resource, statistics, time

import numpy as np
import llama_cpp
from llama_cpp import Llama


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    t0 = time.perf_counter()
    llm = Llama(model_path=a.model, n_ctx=a.prompt + a.new + 8, n_batch=a.prompt, n_ubatch=a.prompt,
                n_threads=a.threads, n_threads_batch=a.threads, logits_all=False, verbose=False, vocab_only=False)
    load = time.perf_counter() - t0
    V = llm.n_vocab()
    rng = random.Random(7)
    prompt = [rng.randrange(V) for _ in range(a.prompt)]
    print(f"llamacpp_load_s {load:.2f}")

    def prefill():
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        return time.perf_counter() - t

    prefill()
    pt = statistics.median(prefill() for _ in range(a.reps))
    print(f"llamacpp_prefill_tok_s {a.prompt / pt:.1f}")
    def last_logits():   # the last evaluated row, straight from llama.cpp (no logits for every prompt token)
        p = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(p, shape=(V,))

    ds = []
    for _ in range(a.reps):
        prefill()
        t = time.perf_counter()
        tok = int(np.argmax(last_logits()))
        for _ in range(a.new - 1):
            llm.eval([tok])
            tok = int(np.argmax(last_logits()))
        ds.append(time.perf_counter() - t)
    print(f"llamacpp_decode_tok_s {(a.new - 1) / statistics.median(ds):.2f}")
    print(f"llamacpp_peak_rss_mb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


if __name__ == "__main__":
    main()
