"""torch_bench.py: the PyTorch side of bench/kern: the same ops and shapes as kbench.c, forward + backward,
fp32, torch.set_num_threads(2) (override with --threads). Prints lines in kbench's format with impl "torch".

Matmuls are written as the products autograd would run (out = x @ W + b; dx = dout @ W^T; dW = x^T @ dout;
db = dout.sum(0)), so both sides do the same flops; attention is F.scaled_dot_product_attention(is_causal=True)
with autograd; layernorm, gelu(tanh) and cross-entropy go through autograd too.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F


LAST_MIN = [0.0]


def median_ms(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    LAST_MIN[0] = min(ts) * 1e3
    return statistics.median(ts) * 1e3


FILTER = None


def want(op, shape):
    return not FILTER or FILTER in op or FILTER in shape


def line(op, shape, ms, flops):
    gf = flops / (ms * 1e-3) * 1e-9 if flops else 0.0
    print(f"{op:<10} {shape:<26} {'torch':<9} {ms:10.3f} ms {LAST_MIN[0]:10.3f} ms {gf:8.1f} GFLOP/s", flush=True)


def bench_mm(op, N, C, OC, out_in, bias, reps):
    if not want(op, f"{N}x{C}x{OC}" + ("(T)" if out_in else "")):
        return
    x = torch.randn(N, C)
    w = torch.randn(OC, C) * 0.02 if out_in else torch.randn(C, OC) * 0.02
    b = torch.randn(OC) * 0.1 if bias else None
    g = torch.randn(N, OC)

    def run():
        with torch.no_grad():
            if out_in:
                out = x @ w.t()
                dx = g @ w
                dw = g.t() @ x
            else:
                out = torch.addmm(b, x, w) if bias else x @ w
                dx = g @ w.t()
                dw = x.t() @ g
            if bias:
                db = g.sum(0)
        return out, dx, dw

    shape = f"{N}x{C}x{OC}" + ("(T)" if out_in else "")
    line(op, shape, median_ms(run, reps), 6.0 * N * C * OC)


def bench_attn(B, T, C, NH, reps):
    if not want("attention", f"B{B} T{T} C{C} NH{NH}"):
        return
    hs = C // NH
    q = torch.randn(B, NH, T, hs, requires_grad=True)
    k = torch.randn(B, NH, T, hs, requires_grad=True)
    v = torch.randn(B, NH, T, hs, requires_grad=True)
    g = torch.randn(B, NH, T, hs)

    def run():
        q.grad = k.grad = v.grad = None
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y.backward(g)

    fl = 2.0 * 2.0 * B * T * T / 2 * C * 3.5
    line("attention", f"B{B} T{T} C{C} NH{NH}", median_ms(run, reps), fl)


def bench_small(N, C, V, xN, reps):
    x = torch.randn(N, C, requires_grad=True)
    w = torch.randn(C, requires_grad=True)
    b = torch.randn(C, requires_grad=True)
    g = torch.randn(N, C)

    def ln():
        x.grad = w.grad = b.grad = None
        F.layer_norm(x, (C,), w, b, 1e-5).backward(g)

    if want("layernorm", f"{N}x{C}"):
        line("layernorm", f"{N}x{C}", median_ms(ln, reps), 0)
    h = torch.randn(N, 4 * C, requires_grad=True)
    gh = torch.randn(N, 4 * C)

    def gelu():
        h.grad = None
        F.gelu(h, approximate="tanh").backward(gh)

    if want("gelu", f"{N}x{4 * C}"):
        line("gelu", f"{N}x{4 * C}", median_ms(gelu, reps), 0)
    logits = (torch.randn(xN, V) * 2).requires_grad_(True)
    tg = torch.randint(0, V, (xN,))
    dl = torch.randn(xN)

    def xent():
        logits.grad = None
        F.cross_entropy(logits, tg, reduction="none").backward(dl)

    if want("xent", f"{xN}x{V}"):
        line("xent", f"{xN}x{V}", median_ms(xent, reps), 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--filter", default=None, help="only ops or shapes containing this")
    a = ap.parse_args()
    global FILTER
    FILTER = a.filter
    torch.set_num_threads(a.threads)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"BLAS/cpu: {torch.backends.cpu.get_cpu_capability()}, mkl={torch.backends.mkl.is_available()}")
    r = a.reps
    N, C = 2048, 384
    bench_mm("mm.qkv", N, C, 3 * C, False, True, r)
    bench_mm("mm.proj", N, C, C, False, True, r)
    bench_mm("mm.fc", N, C, 4 * C, False, True, r)
    bench_mm("mm.fcproj", N, 4 * C, C, False, True, r)
    bench_mm("mm.lmhead", N, C, 50257, True, False, r)
    N, C = 256, 768
    bench_mm("mm.qkv", N, C, 3 * C, False, True, r)
    bench_mm("mm.proj", N, C, C, False, True, r)
    bench_mm("mm.fc", N, C, 4 * C, False, True, r)
    bench_mm("mm.fcproj", N, 4 * C, C, False, True, r)
    bench_mm("mm.lmhead", N, C, 50257, True, False, r)
    bench_attn(8, 256, 384, 6, r)
    bench_attn(2, 1024, 384, 6, r)
    bench_attn(4, 64, 768, 12, r)
    bench_small(2048, 384, 50257, 256, r)


if __name__ == "__main__":
    main()
