#!/usr/bin/env python3
"""llama.cpp (through llama-cpp-python) against gptkit, for tests/cli/llama.sh when llama_cpp is importable:
  greedy FILE.gguf PROMPT_IDS N        -> prints llama.cpp's N greedy ids (f32 KV cache, so only the weights' type
                                          differs from gptkit's fp32 compute)
  tokenize FILE.gguf TEXT              -> prints llama.cpp's ids for TEXT (no BOS, special tokens parsed)
Never used at run time."""
import sys

import numpy as np
from llama_cpp import Llama


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "greedy":
        prompt, n = [int(x) for x in sys.argv[3].split()], int(sys.argv[4])
        llm = Llama(model_path=path, n_ctx=len(prompt) + n + 8, n_threads=2, verbose=False, logits_all=True,
                    type_k=0, type_v=0)
        llm.reset()
        llm.eval(prompt)
        out = []
        for _ in range(n):
            t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            out.append(t)
            llm.eval([t])
        print(" ".join(map(str, out)))
    elif cmd == "tokenize":
        llm = Llama(model_path=path, n_ctx=64, verbose=False, vocab_only=True)
        print(" ".join(map(str, llm.tokenize(sys.argv[3].encode(), add_bos=False, special=True))))


if __name__ == "__main__":
    main()
