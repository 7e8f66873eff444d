#!/usr/bin/env python3
"""PyTorch reference for gptkit's GRPO loss math (tests/test_rlhf.c reads what this writes).

  python3 tests/ref/gen_grpo_fixtures.py --out tests/fixtures/rlhf

Written from the equations of Shao et al. 2024 (DeepSeekMath, eq. 3, outcome supervision), not from any
implementation:
  advantage     A_i = (r_i - mean(r_group)) / (std(r_group) + eps), std with the G - 1 denominator
  objective     J = sum_i sum_t w_it [ min(rho A_i, clip(rho, 1-eps, 1+eps) A_i) - beta D_it ]
                rho = exp(logp - old), D_it = exp(ref - logp) - (ref - logp) - 1 (the k3 estimator)
  weights       seq:   w_it = 1 / (N |o_i|)   (the paper: mean over a response's tokens, then over responses)
                token: w_it = 1 / sum_i |o_i|
  loss          -J; its gradient w.r.t. logp by autograd.

Writes grpo.safetensors:
  adv.r, adv.G, adv.eps, adv.adv      3 groups of 4 rewards (one group all equal: A = 0)
  seq.* / tok.*                       logp, old, ref, off (int32, N+1), adv, params [clip, beta], loss, dlogp, kl
Everything in float64 from fp32-rounded inputs; stored as fp32 (ints as int32).
"""
import argparse, os

import numpy as np
import torch
from safetensors.numpy import save_file

torch.set_default_dtype(torch.float64)


def f32(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().numpy()
    return np.asarray(x, dtype=np.float32).reshape(-1)


def r32(x):
    return f32(x).astype(np.float64)


def advantages(r, G, eps):
    g = torch.tensor(r).view(-1, G)
    return ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True, unbiased=True) + eps)).reshape(-1)


def grpo_loss(logp, old, ref, off, adv, clip, beta, token_norm):
    N = len(off) - 1
    total = off[-1] - off[0]
    J = logp.new_zeros(())
    kl = logp.new_zeros(())
    for i in range(N):
        a, b = off[i], off[i + 1]
        lp, o, rf = logp[a:b], old[a:b], ref[a:b]
        rho = torch.exp(lp - o)
        surr = torch.minimum(rho * adv[i], torch.clamp(rho, 1 - clip, 1 + clip) * adv[i])
        d = torch.exp(rf - lp) - (rf - lp) - 1
        w = 1.0 / total if token_norm else 1.0 / (N * (b - a))
        J = J + w * (surr - beta * d).sum()
        kl = kl + w * d.sum()
    return -J, kl


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/rlhf")
    a = ap.parse_args()
    rng = np.random.default_rng(21)
    out = {}
    G, eps = 4, 1e-4
    r = r32([1, 0, 0, 1, 0.2, 1.2, 1.0, 0.0, 1, 1, 1, 1])
    out.update({"adv.r": f32(r), "adv.G": np.array([G], np.int32), "adv.eps": f32([eps]),
                "adv.adv": f32(advantages(r, G, eps))})
    lens = [3, 7, 1, 5, 9, 4]
    off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    n = int(off[-1])
    old = r32(rng.normal(-2, 1, n))
    logp0 = r32(old + rng.normal(0, 0.3, n))          # ratios well past 1 +- 0.2: both branches occur
    ref = r32(old + rng.normal(0, 0.4, n))
    adv = r32(rng.normal(0, 1, len(lens)))
    clip, beta = 0.2, 0.1
    for name, tn in (("seq", 0), ("tok", 1)):
        logp = torch.tensor(logp0, requires_grad=True)
        L, kl = grpo_loss(logp, torch.tensor(old), torch.tensor(ref), [int(x) for x in off], torch.tensor(adv), clip, beta, tn)
        L.backward()
        out.update({f"{name}.logp": f32(logp0), f"{name}.old": f32(old), f"{name}.ref": f32(ref),
                    f"{name}.off": off.astype(np.int32), f"{name}.adv": f32(adv), f"{name}.params": f32([clip, beta]),
                    f"{name}.loss": f32([L.item()]), f"{name}.kl": f32([kl.item()]), f"{name}.dlogp": f32(logp.grad)})
    os.makedirs(a.out, exist_ok=True)
    save_file(out, os.path.join(a.out, "grpo.safetensors"))
    print("wrote", os.path.join(a.out, "grpo.safetensors"))


if __name__ == "__main__":
    main()
