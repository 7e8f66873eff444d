#!/usr/bin/env python3
"""PyTorch peer for bench/engine/ebench.c: HF transformers GPT2LMHeadModel, random weights, same sizes, same
method. prefill = one forward over P tokens (use_cache=True); decode = model.generate(greedy, KV cache, exactly
N new tokens) for B sequences of the same prompt, minus the prefill time; tokens/s = B*(N-1)/decode time.
Median of --reps. Prints "key value" lines like ebench."""
import argparse, statistics, time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

SIZES = {"d6": (6, 6, 384), "d12": (12, 12, 768)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="d6")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    L, H, C = SIZES[a.model]
    cfg = GPT2Config(n_layer=L, n_head=H, n_embd=C, vocab_size=50257, n_positions=1024, activation_function="gelu_new")
    model = GPT2LMHeadModel(cfg).float().eval()
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = None
    g = torch.Generator().manual_seed(7)
    x = torch.randint(0, 50257, (1, a.prompt), generator=g)
    print(f"torch {torch.__version__}\ntorch_threads {torch.get_num_threads()}")
    with torch.inference_mode():
        model(x, use_cache=True)
        ts = []
        for _ in range(a.reps):
            t0 = time.perf_counter(); model(x, use_cache=True); ts.append(time.perf_counter() - t0)
        prefill = statistics.median(ts)
        print(f"torch_prefill_tok_s {a.prompt / prefill:.1f}")
        for B in (1, 8):
            xb = x.repeat(B, 1)
            ts = []
            for _ in range(a.reps):
                t0 = time.perf_counter()
                out = model.generate(xb, attention_mask=torch.ones_like(xb), max_new_tokens=a.new, min_new_tokens=a.new,
                                     do_sample=False, use_cache=True)
                ts.append(time.perf_counter() - t0 - prefill * (1 if B == 1 else 1))
                assert out.shape[1] == a.prompt + a.new
            # batch-B prefill costs more than batch-1's; measure it for the subtraction
            if B > 1:
                tp = []
                for _ in range(a.reps):
                    t0 = time.perf_counter(); model(xb, use_cache=True); tp.append(time.perf_counter() - t0)
                extra = statistics.median(tp) - prefill
                ts = [t - extra for t in ts]
            print(f"torch_decode_b{B}_tok_s {B * (a.new - 1) / statistics.median(ts):.2f}")


if __name__ == "__main__":
    main()
