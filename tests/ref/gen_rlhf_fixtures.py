#!/usr/bin/env python3
"""PyTorch reference for gptkit's RLHF loss math (tests/test_rlhf.c reads what this writes).

  python3 tests/ref/gen_rlhf_fixtures.py --out tests/fixtures/rlhf

Writes
  losses.safetensors   loss-level cases on plain arrays, each value and gradient by torch autograd (float64):
                       rm_pairs.*   reward-model loss over 4 pairs
                       rm_rank.*    a K=4 ranking, a pair and a K=3 ranking in one batch (InstructGPT normalisation:
                                    mean over a group's pairs, then mean over groups)
                       kl.*         per-token KL-shaped rewards (-beta (logp - ref), RM score on the last token)
                       gae.*        GAE with gamma, lambda; returns = advantages + values
                       whiten.*     (x - mean) / sqrt(var + 1e-8), population variance
                       pg.*         PPO clipped surrogate, its gradient w.r.t. logp, clip fraction
                       vf.*         clipped value loss and its gradient
                       dpo.*        DPO loss and its gradients w.r.t. the policy's sequence log-probs
  model/               a tiny GPT-2 with a scalar head (HF GPT2ForSequenceClassification, save_pretrained)
  model_cases.safetensors
                       the same losses through the model, on right-padded variable-length sequences:
                       mrm.*  rewards at each sequence's last token, RM loss (K=4 ranking + a pair), parameter grads
                       mdpo.* DPO on sequence log-probs of response tokens, parameter grads
                       mpg.*  PPO clipped surrogate on per-token log-probs at temperature 0.8, parameter grads
                       mvf.*  clipped value loss on the score head read at response positions, parameter grads
Everything is computed in float64 from the fp32 weights; stored as fp32 (ints as int32).
"""
import argparse, os

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import GPT2Config, GPT2ForSequenceClassification

torch.set_default_dtype(torch.float64)
F = torch.nn.functional


def t(x):
    return torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)


def rm_loss(r, groups):
    per = []
    for first, K in groups:
        ls = [-F.logsigmoid(r[first + i] - r[first + j]) for i in range(K) for j in range(i + 1, K)]
        per.append(torch.stack(ls).mean())
    return torch.stack(per).mean()


def kl_rewards(logp, ref, score, beta):
    rw = -beta * (logp - ref)
    rw[-1] += score
    return rw, (logp - ref).sum()


def gae(rewards, values, gamma, lam):
    n = len(rewards)
    adv = np.zeros(n); last = 0.0; nv = 0.0
    for k in reversed(range(n)):
        delta = rewards[k] + gamma * nv - values[k]
        last = delta + gamma * lam * last
        adv[k] = last; nv = values[k]
    return adv, adv + values


def pg_loss(logp, old, adv, eps):
    ratio = torch.exp(logp - old)
    u = -adv * ratio
    c = -adv * torch.clamp(ratio, 1 - eps, 1 + eps)
    return torch.maximum(u, c).mean(), (c > u).double().mean()


def vf_loss(v, old, ret, clip):
    vc = old + torch.clamp(v - old, -clip, clip)
    return 0.5 * torch.maximum((v - ret) ** 2, (vc - ret) ** 2).mean()


def dpo_loss(pc, pr, rc, rr, beta):
    z = beta * ((pc - rc) - (pr - rr))
    return -F.logsigmoid(z).mean(), (z > 0).double().mean()


def f32(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().numpy()
    return np.asarray(x, dtype=np.float32).reshape(-1)


def loss_cases(rng):
    out = {}
    # reward model: 4 pairs
    r = t(rng.normal(0, 1.5, 8)); groups = [(0, 2), (2, 2), (4, 2), (6, 2)]
    L = rm_loss(r, groups); L.backward()
    out.update({"rm_pairs.r": f32(r), "rm_pairs.first": np.array([g[0] for g in groups], np.int32),
                "rm_pairs.count": np.array([g[1] for g in groups], np.int32), "rm_pairs.loss": f32([L.item()]),
                "rm_pairs.dr": f32(r.grad)})
    # a K=4 ranking, a pair and a K=3 ranking
    r = t(rng.normal(0, 1.5, 9)); groups = [(0, 4), (4, 2), (6, 3)]
    L = rm_loss(r, groups); L.backward()
    out.update({"rm_rank.r": f32(r), "rm_rank.first": np.array([g[0] for g in groups], np.int32),
                "rm_rank.count": np.array([g[1] for g in groups], np.int32), "rm_rank.loss": f32([L.item()]),
                "rm_rank.dr": f32(r.grad)})
    # KL-shaped rewards
    n = 11; logp = rng.normal(-2, 1, n); ref = logp + rng.normal(0, 0.3, n); score, beta = 1.7, 0.05
    rw, kl = kl_rewards(torch.tensor(logp), torch.tensor(ref), score, beta)
    out.update({"kl.logp": f32(logp), "kl.ref": f32(ref), "kl.params": f32([score, beta]), "kl.rewards": f32(rw),
                "kl.kl": f32([kl.item()])})
    # GAE
    rewards = rng.normal(0, 0.3, n); values = rng.normal(0, 1, n); gamma, lam = 0.99, 0.95
    rewards32, values32 = f32(rewards).astype(np.float64), f32(values).astype(np.float64)
    adv, ret = gae(rewards32, values32, gamma, lam)
    out.update({"gae.rewards": f32(rewards32), "gae.values": f32(values32), "gae.params": f32([gamma, lam]),
                "gae.adv": f32(adv), "gae.ret": f32(ret)})
    adv1, ret1 = gae(rewards32, values32, 1.0, 0.95)
    out.update({"gae.adv_g1": f32(adv1), "gae.ret_g1": f32(ret1)})
    # whitening
    x = f32(rng.normal(3, 2, 17)).astype(np.float64)
    w = (x - x.mean()) / np.sqrt(x.var() + 1e-8)
    out.update({"whiten.x": f32(x), "whiten.y": f32(w)})
    # PPO clipped policy loss: ratios spread well past 1 +- eps so both branches and both signs occur
    n = 40; old = f32(rng.normal(-2, 1, n)).astype(np.float64)
    logp = t(f32(old + rng.normal(0, 0.3, n)))
    adv = f32(rng.normal(0, 1, n)).astype(np.float64)
    L, cf = pg_loss(logp, torch.tensor(old), torch.tensor(adv), 0.2); L.backward()
    out.update({"pg.logp": f32(logp), "pg.old": f32(old), "pg.adv": f32(adv), "pg.eps": f32([0.2]),
                "pg.loss": f32([L.item()]), "pg.dlogp": f32(logp.grad), "pg.clip_frac": f32([cf.item()])})
    # clipped value loss
    old = f32(rng.normal(0, 1, n)).astype(np.float64)
    v = t(f32(old + rng.normal(0, 0.3, n)))
    ret = f32(rng.normal(0, 1, n)).astype(np.float64)
    L = vf_loss(v, torch.tensor(old), torch.tensor(ret), 0.2); L.backward()
    out.update({"vf.v": f32(v), "vf.old": f32(old), "vf.ret": f32(ret), "vf.clip": f32([0.2]),
                "vf.loss": f32([L.item()]), "vf.dv": f32(v.grad)})
    # DPO
    n = 12
    pc = t(f32(rng.normal(-20, 4, n))); pr = t(f32(rng.normal(-20, 4, n)))
    rc = f32(pc.detach().numpy() + rng.normal(0, 2, n)).astype(np.float64)
    rr = f32(pr.detach().numpy() + rng.normal(0, 2, n)).astype(np.float64)
    L, acc = dpo_loss(pc, pr, torch.tensor(rc), torch.tensor(rr), 0.1); L.backward()
    out.update({"dpo.pc": f32(pc), "dpo.pr": f32(pr), "dpo.rc": f32(rc), "dpo.rr": f32(rr), "dpo.beta": f32([0.1]),
                "dpo.loss": f32([L.item()]), "dpo.acc": f32([acc.item()]), "dpo.dpc": f32(pc.grad),
                "dpo.dpr": f32(pr.grad)})
    return out


GRAD_NAMES = ["score.weight", "transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.attn.c_attn.weight",
              "transformer.h.1.mlp.c_proj.weight", "transformer.ln_f.bias"]


def model_cases(rng, outdir):
    torch.manual_seed(5)
    cfg = GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0, activation_function="gelu_new", layer_norm_epsilon=1e-5, num_labels=1,
                     pad_token_id=0)
    model = GPT2ForSequenceClassification(cfg).float()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.05 * torch.randn_like(p))
        model.score.weight.normal_(0, 0.3)
    model.save_pretrained(os.path.join(outdir, "model"), safe_serialization=True)
    model = model.double()
    params = dict(model.named_parameters())

    lens = [9, 12, 6, 10, 7, 11]
    plens = [3, 4, 2, 5, 3, 4]
    seqs = [rng.integers(1, 64, L) for L in lens]
    Tm = max(lens)
    ids = np.zeros((len(lens), Tm), np.int32)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
    out = {"seq.ids": ids.reshape(-1), "seq.len": np.array(lens, np.int32), "seq.plen": np.array(plens, np.int32)}

    def hidden(s):
        return model.transformer(torch.tensor(s[None, :], dtype=torch.long)).last_hidden_state[0]   # [L, C]

    def grads(prefix):
        g = {}
        for n in GRAD_NAMES:
            g[f"{prefix}.grad.{n}"] = f32(params[n].grad)
        model.zero_grad()
        return g

    # reward model: K=4 ranking over seqs 0-3, a pair over 4-5
    model.zero_grad()
    r = torch.stack([hidden(s)[-1] @ model.score.weight[0] for s in seqs])
    groups = [(0, 4), (4, 2)]
    L = rm_loss(r, groups); L.backward()
    out.update({"mrm.r": f32(r), "mrm.loss": f32([L.item()])}); out.update(grads("mrm"))

    def resp_logp(s, pl, temp=1.0):
        h = hidden(s)
        logits = h @ model.transformer.wte.weight.T / temp
        lp = torch.log_softmax(logits, -1)
        pos = torch.arange(pl - 1, len(s) - 1)
        return lp[pos, torch.tensor(s[pl:], dtype=torch.long)]

    # DPO over pairs (0,1), (2,3), (4,5) with fixed reference sums
    sums = torch.stack([resp_logp(s, pl).sum() for s, pl in zip(seqs, plens)])
    ref = torch.tensor(f32(sums.detach().numpy() + rng.normal(0, 1.0, len(seqs))).astype(np.float64))
    L, _ = dpo_loss(sums[0::2], sums[1::2], ref[0::2], ref[1::2], 0.5); L.backward()
    out.update({"mdpo.sums": f32(sums), "mdpo.ref": f32(ref), "mdpo.beta": f32([0.5]), "mdpo.loss": f32([L.item()])})
    out.update(grads("mdpo"))

    # PPO policy loss over every response token of every sequence, temperature 0.8
    temp = 0.8
    lps = [resp_logp(s, pl, temp) for s, pl in zip(seqs, plens)]
    flat = torch.cat(lps)
    n = flat.numel()
    old = f32(flat.detach().numpy() + rng.normal(0, 0.3, n)).astype(np.float64)
    adv = f32(rng.normal(0, 1, n)).astype(np.float64)
    L, cf = pg_loss(flat, torch.tensor(old), torch.tensor(adv), 0.2); L.backward()
    out.update({"mpg.logp": f32(flat), "mpg.old": f32(old), "mpg.adv": f32(adv), "mpg.temp": f32([temp]),
                "mpg.loss": f32([L.item()]), "mpg.clip_frac": f32([cf.item()])})
    out.update(grads("mpg"))

    # value loss: score head at the positions predicting each response token
    vs = torch.cat([hidden(s)[pl - 1:len(s) - 1] @ model.score.weight[0] for s, pl in zip(seqs, plens)])
    old = f32(vs.detach().numpy() + rng.normal(0, 0.3, n)).astype(np.float64)
    ret = f32(rng.normal(0, 1, n)).astype(np.float64)
    L = vf_loss(vs, torch.tensor(old), torch.tensor(ret), 0.2); L.backward()
    out.update({"mvf.v": f32(vs), "mvf.old": f32(old), "mvf.ret": f32(ret), "mvf.loss": f32([L.item()])})
    out.update(grads("mvf"))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/rlhf")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    save_file(loss_cases(rng), os.path.join(a.out, "losses.safetensors"))
    save_file(model_cases(rng, a.out), os.path.join(a.out, "model_cases.safetensors"))
    print("wrote", a.out)


if __name__ == "__main__":
    main()
