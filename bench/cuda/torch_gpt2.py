#!/usr/bin/env python3
"""The PyTorch side of the CUDA training benchmark (scripts/gpu-check.sh; docs/cuda.md).

GPT-2 124M (12 layers, 12 heads, width 768, vocab 50257, context 1024, tied embeddings, GELU tanh, pre-LayerNorm)
from a random init, trained on random tokens with the same AdamW settings gptkit's pretrain uses (lr 6e-4 with
linear warmup, betas 0.9/0.95, eps 1e-8, weight decay 0.1 on 2-D weights only, grad-norm clip 1.0), bf16
autocast (fp32 master weights), torch.nn.functional.scaled_dot_product_attention(is_causal=True) (the flash
kernel on Hopper), torch.compile, fused AdamW. The model is written here (no transformers import) so what is
compiled is exactly this.

Prints one JSON object per timed step and a final summary line {"summary": ...} with the median tokens/s of
the timed steps (the first --warmup steps, which include compilation, are dropped) and MFU against --peak
TFLOP/s, counting 6 N + 6 L C T FLOPs per token (N = all parameters, causal attention halved, as
BENCH-NOTES.md does; the same count gpu-check.sh uses for
gptkit).

Usage: python3 bench/cuda/torch_gpt2.py [--batch 64] [--seq 1024] [--steps 30] [--warmup 8] [--no-compile]
       [--peak 989]
"""
import argparse, json, math, statistics, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.NH, C // self.NH).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, L=12, NH=12, C=768, V=50257, ctx=1024):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(ctx, C)
        self.h = nn.ModuleList(Block(C, NH) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        self.apply(self._init)
        for n, p in self.named_parameters():   # GPT-2's scaled init of the residual projections
            if n.endswith("c_proj.weight") or n.endswith("mlp_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * L))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.h:
            x = b(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)   # tied head
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--peak", type=float, default=989.0, help="peak bf16 TFLOP/s for MFU (H100/H200 SXM dense: 989)")
    a = ap.parse_args()
    assert torch.cuda.is_available(), "no CUDA device"
    torch.manual_seed(1337)
    dev = "cuda"
    L, NH, C, V = 12, 12, 768, 50257
    model = GPT(L, NH, C, V, 1024).to(dev)
    N = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    step_fn = torch.compile(model) if not a.no_compile else model
    B, T = a.batch, a.seq
    g = torch.Generator(device=dev).manual_seed(1)
    flops_per_token = 6 * N + 6 * L * C * T   # causal attention: half of 12 L C T (BENCH-NOTES.md)
    times = []
    for step in range(a.steps):
        x = torch.randint(0, V, (B, T + 1), device=dev, generator=g)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for pg in opt.param_groups:
            pg["lr"] = 6e-4 * min(1.0, (step + 1) / 10)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_fn(x[:, :-1], x[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        lv = loss.item()   # synchronizes
        dt = time.perf_counter() - t0
        if step >= a.warmup:
            times.append(dt)
        print(json.dumps({"step": step, "loss": round(lv, 4), "ms": round(dt * 1000, 1),
                          "tokens_per_s": round(B * T / dt, 1), "timed": step >= a.warmup}), flush=True)
    med = statistics.median(times)
    tps = B * T / med
    print(json.dumps({"summary": {
        "impl": "pytorch %s %s, SDPA, fused AdamW, bf16 autocast" % (torch.__version__, "compile" if not a.no_compile else "eager"),
        "device": torch.cuda.get_device_name(0), "params": N, "batch": B, "seq": T, "timed_steps": len(times),
        "median_ms": round(med * 1000, 1), "tokens_per_s": round(tps, 1),
        "mfu": round(tps * flops_per_token / (a.peak * 1e12), 4),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
