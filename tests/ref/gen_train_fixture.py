#!/usr/bin/env python3
"""Independent PyTorch reference for `gptkit eval` and `gptkit pretrain` (HF transformers' GPT-2).

Builds a random GPT2LMHeadModel, saves it with save_pretrained (HF layout, safetensors), writes an llm.c
token shard, and computes with PyTorch:
  - the mean loss over the first K sequential batches (what `gptkit eval --batches K` must print),
  - the per-step losses of N AdamW steps from that checkpoint on sequential batches (what
    `gptkit pretrain --init ... --no-shuffle --json` must print), with gptkit's schedule, weight-decay
    groups (2-D matrices incl. wte; not wpe, biases, LayerNorm) and global-norm clipping,
  - the trained parameters (to compare with the checkpoint gptkit writes).

Two uses:
  python3 tests/ref/gen_train_fixture.py --out tests/fixtures/train            # the committed fixture
  python3 tests/ref/gen_train_fixture.py --live --gptkit build/gptkit          # acceptance-size check, runs gptkit
"""
import argparse, json, math, os, struct, subprocess, sys, tempfile

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel


def write_shard(path, tokens):
    header = np.zeros(256, dtype=np.int32)
    header[0], header[1], header[2] = 20240520, 1, len(tokens)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype=np.uint16).tobytes())


def lr_at(step, lr, warmup, total, shape, final_frac):
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    if shape == "constant":
        return lr
    span = total - 1 - warmup
    frac = (step - warmup) / span if span > 0 else 1.0
    frac = min(max(frac, 0.0), 1.0)
    lo = lr * final_frac
    mult = 0.5 * (1 + math.cos(math.pi * frac)) if shape == "cosine" else 1 - frac
    return lo + (lr - lo) * mult


def batches(tokens, B, T, k):
    """llm.c sequential order within one shard: batch k = tokens[k*B*T : (k+1)*B*T + 1]."""
    buf = torch.tensor(tokens[k * B * T:(k + 1) * B * T + 1], dtype=torch.long)
    return buf[:-1].view(B, T), buf[1:].view(B, T)


def loss_of(model, x, y):
    logits = model(x).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


def run(a):
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    cfg = GPT2Config(vocab_size=a.vocab, n_positions=a.n_ctx, n_embd=a.n_embd, n_layer=a.n_layer, n_head=a.n_head,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_new",
                     layer_norm_epsilon=1e-5)
    model = GPT2LMHeadModel(cfg).float()
    with torch.no_grad():   # make LayerNorm and biases non-trivial so their gradients matter
        for n, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.05 * torch.randn_like(p))
    os.makedirs(a.out, exist_ok=True)
    ckpt = os.path.join(a.out, "init")
    model.save_pretrained(ckpt, safe_serialization=True)
    need = max(a.eval_batches, a.steps) * a.B * a.T + 1
    tokens = np.random.randint(0, a.vocab, size=need + 7).tolist()
    shard = os.path.join(a.out, "data.bin")
    write_shard(shard, tokens)

    with torch.no_grad():
        ev = [loss_of(model, *batches(tokens, a.B, a.T, k)).item() for k in range(a.eval_batches)]
    eval_loss = float(np.mean(ev))

    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "wpe" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "wpe" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps)
    losses = []
    for step in range(a.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a.lr, a.warmup, a.steps, a.schedule, a.final_frac)
        opt.zero_grad()
        loss = loss_of(model, *batches(tokens, a.B, a.T, step))
        loss.backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        losses.append(loss.item())
    final = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    args = ["--no-shuffle", "-b", str(a.B), "-t", str(a.T), "--steps", str(a.steps), "--lr", repr(a.lr),
            "--warmup", str(a.warmup), "--schedule", a.schedule, "--final-lr-frac", repr(a.final_frac),
            "--weight-decay", repr(a.wd), "--grad-clip", repr(a.clip), "--beta1", repr(a.beta1),
            "--beta2", repr(a.beta2), "--eps", repr(a.eps)]
    expected = {"eval_batches": a.eval_batches, "B": a.B, "T": a.T, "eval_loss": eval_loss,
                "pretrain_args": args, "losses": losses,
                "final_param_sums": {n: float(np.abs(v).sum()) for n, v in final.items()}}
    with open(os.path.join(a.out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    return ckpt, shard, expected, final


def live_check(a, ckpt, shard, expected, final):
    """Runs gptkit on the same files and compares (acceptance-style)."""
    ok = True
    r = subprocess.run([a.gptkit, "eval", "--model", ckpt, "--data", shard, "-b", str(a.B), "-t", str(a.T),
                        "--batches", str(a.eval_batches), "--json"], capture_output=True, text=True)
    got = json.loads(r.stdout)["loss"]
    d = abs(got - expected["eval_loss"])
    print(f"eval loss: gptkit {got:.7f} torch {expected['eval_loss']:.7f} diff {d:.2e}")
    ok &= d < 1e-4
    out = os.path.join(a.out, "trained")
    r = subprocess.run([a.gptkit, "pretrain", "--init", ckpt, "--data", shard, "--out", out, "--json"] +
                       expected["pretrain_args"], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr); return False
    got = [json.loads(l)["loss"] for l in r.stdout.splitlines() if l.startswith("{") and "loss" in l and "val" not in l]
    for i, (g, w) in enumerate(zip(got, expected["losses"])):
        print(f"step {i}: gptkit {g:.7f} torch {w:.7f} diff {abs(g - w):.2e}")
        ok &= abs(g - w) < 1e-4
    ok &= len(got) == len(expected["losses"])
    m = GPT2LMHeadModel.from_pretrained(out).float()
    worst = 0.0
    for n, p in m.named_parameters():
        worst = max(worst, float(np.abs(p.detach().numpy() - final[n]).max()))
    print(f"trained params, max abs diff vs torch: {worst:.2e}")
    ok &= worst < 1e-4
    print("OK" if ok else "MISMATCH")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None)
    ap.add_argument("--live", action="store_true", help="acceptance-size config; run gptkit and compare")
    ap.add_argument("--gptkit", default="build/gptkit")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    if a.live:
        a.n_layer, a.n_head, a.n_embd, a.vocab, a.n_ctx, a.B, a.T = 3, 5, 80, 97, 13, 4, 13
        a.steps, a.eval_batches = 5, 3
        a.lr, a.warmup, a.schedule, a.final_frac, a.wd, a.clip = 1e-3, 0, "constant", 0.1, 0.0, 0.0
        a.beta1, a.beta2, a.eps = 0.9, 0.95, 1e-8
        a.out = a.out or tempfile.mkdtemp(prefix="gptkit-live-")
    else:
        # small enough to commit; exercises warmup + cosine, weight decay groups and clipping
        a.n_layer, a.n_head, a.n_embd, a.vocab, a.n_ctx, a.B, a.T = 2, 3, 24, 97, 16, 3, 11
        a.steps, a.eval_batches = 8, 3
        a.lr, a.warmup, a.schedule, a.final_frac, a.wd, a.clip = 3e-3, 2, "cosine", 0.1, 0.1, 0.5
        a.beta1, a.beta2, a.eps = 0.9, 0.95, 1e-8
        a.out = a.out or "tests/fixtures/train"
    ckpt, shard, expected, final = run(a)
    if a.live:
        sys.exit(0 if live_check(a, ckpt, shard, expected, final) else 1)
    print(f"wrote {a.out}: eval_loss {expected['eval_loss']:.6f}, losses {expected['losses']}")


if __name__ == "__main__":
    main()
