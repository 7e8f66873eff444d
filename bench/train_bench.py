#!/usr/bin/env python3
"""Training throughput and peak memory: gptkit vs PyTorch on the same machine, same config, same run.

Configs (the issues' acceptance sizes):
  a: 6 layers, 6 heads, width 384, vocab 50257, context 1024, B 8, T 256
  b: GPT-2 124M (12 layers, 12 heads, width 768), vocab 50257, context 1024, B 4, T 64

Method: random token shard; both sides run fp32 AdamW steps from a random init on the same batches
with the same thread count (OMP_NUM_THREADS / torch.set_num_threads); the first step is warm-up and is
dropped; we report the median ms/step of the rest, tokens/s, and the peak resident memory of the training
process (gptkit: getrusage of the training loop, printed by `pretrain --json`; PyTorch: getrusage of its
process, including the interpreter and torch import, which is what a user pays). PyTorch runs HF
transformers' GPT2LMHeadModel in eager mode (default attention implementation) with torch.optim.AdamW.

Usage: python3 bench/train_bench.py [--configs a,b] [--steps 6] [--threads 2] [--gptkit build/gptkit]
       [--precision fp32|bf16] [--torch-precision fp32|bf16] [--append bench/RESULTS.md]

--precision picks gptkit's matmul precision (bf16: bfloat16 products, fp32 accumulation and master weights);
--torch-precision bf16 runs PyTorch's forward under torch.autocast("cpu", dtype=torch.bfloat16) (fp32 master
weights, fp32 loss), PyTorch's own mixed-precision path.
"""
import argparse, datetime, json, os, platform, statistics, subprocess, sys, tempfile

import numpy as np

CONFIGS = {
    "a": dict(n_layer=6, n_head=6, n_embd=384, B=8, T=256),
    "b": dict(n_layer=12, n_head=12, n_embd=768, B=4, T=64),
}
VOCAB, CTX = 50257, 1024

TORCH_SCRIPT = r'''
import json, resource, statistics, sys, time, torch
from transformers import GPT2Config, GPT2LMHeadModel
import numpy as np
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"]); torch.manual_seed(0)
cfg = GPT2Config(vocab_size=a["vocab"], n_positions=a["ctx"], n_embd=a["n_embd"], n_layer=a["n_layer"],
                 n_head=a["n_head"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
model = GPT2LMHeadModel(cfg).float().train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
tok = np.fromfile(a["shard"], dtype=np.uint16, offset=1024).astype(np.int64)
B, T = a["B"], a["T"]
times, losses = [], []
for k in range(a["steps"]):
    buf = torch.from_numpy(tok[k*B*T:(k+1)*B*T+1])
    x, y = buf[:-1].view(B, T), buf[1:].view(B, T)
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a["bf16"]):
        logits = model(x).logits
    loss = torch.nn.functional.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    times.append((time.perf_counter() - t0) * 1000); losses.append(loss.item())
print(json.dumps({"ms": times, "loss": losses, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def gflop_per_step(c):
    """Matmul FLOPs of one training step (forward + backward): 6 x (matmul parameters incl. the tied LM head) x
    tokens, plus causal attention (QK^T and AV, forward and backward: 3 x 2 x 2 x T^2/2 x C per sequence and
    layer). What bench/RESULTS.md's roofline argument divides by."""
    L, C, B, T = c["n_layer"], c["n_embd"], c["B"], c["T"]
    dense = 6 * (12 * L * C * C + VOCAB * C) * B * T
    attn = L * B * 6 * T * T * C
    return (dense + attn) / 1e9


def write_shard(path, n):
    rng = np.random.default_rng(0)
    hdr = np.zeros(256, dtype=np.int32)
    hdr[0], hdr[1], hdr[2] = 20240520, 1, n
    with open(path, "wb") as f:
        f.write(hdr.tobytes())
        f.write(rng.integers(0, VOCAB, size=n, dtype=np.uint16).tobytes())


def run_gptkit(a, c, shard, out, env):
    cmd = [a.gptkit, "pretrain", "--n-layer", str(c["n_layer"]), "--n-head", str(c["n_head"]),
           "--n-embd", str(c["n_embd"]), "--vocab-size", str(VOCAB), "--n-ctx", str(CTX), "--data", shard,
           "--no-shuffle", "-b", str(c["B"]), "-t", str(c["T"]), "--steps", str(a.steps), "--lr", "1e-4",
           "--warmup", "0", "--schedule", "constant", "--save-every", "0", "--val-every", "0",
           "--out", out, "--json"]
    if a.precision != "fp32":
        cmd += ["--precision", a.precision]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"gptkit failed: {r.stderr}")
    ms, losses, rss = [], [], None
    for line in r.stdout.splitlines():
        j = json.loads(line)
        if "ms" in j:
            ms.append(j["ms"]); losses.append(j["loss"])
        if "peak_rss_mb" in j:
            rss = j["peak_rss_mb"]
    return {"ms": ms, "loss": losses, "peak_rss_mb": rss}


def run_torch(a, c, shard, env):
    arg = json.dumps(dict(c, vocab=VOCAB, ctx=CTX, steps=a.steps, threads=a.threads, shard=shard,
                          bf16=a.torch_precision == "bf16"))
    r = subprocess.run([sys.executable, "-c", TORCH_SCRIPT, arg], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"torch failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="a,b")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gptkit", default="build/gptkit")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--torch-precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--append", default=None, help="append a dated row per config to this markdown file")
    a = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    import torch  # noqa: F401  (fail early if missing)
    tv = __import__("torch").__version__
    rows = []
    for name in a.configs.split(","):
        c = CONFIGS[name]
        with tempfile.TemporaryDirectory() as d:
            shard = os.path.join(d, "data.bin")
            write_shard(shard, a.steps * c["B"] * c["T"] + 1)
            g = run_gptkit(a, c, shard, os.path.join(d, "out"), env)
            t = run_torch(a, c, shard, env)
        tok = c["B"] * c["T"]
        gm, tm = statistics.median(g["ms"][1:]), statistics.median(t["ms"][1:])
        row = dict(config=name, gptkit_ms=gm, torch_ms=tm, gptkit_tok_s=tok / gm * 1000, torch_tok_s=tok / tm * 1000,
                   speedup=tm / gm, gptkit_rss=g["peak_rss_mb"], torch_rss=t["peak_rss_mb"],
                   loss0=(g["loss"][0], t["loss"][0]))
        rows.append(row)
        print(f"config {name}: gptkit {gm:.0f} ms/step ({row['gptkit_tok_s']:.0f} tok/s, peak {g['peak_rss_mb']:.0f} MB) | "
              f"torch {tm:.0f} ms/step ({row['torch_tok_s']:.0f} tok/s, peak {t['peak_rss_mb']:.0f} MB) | "
              f"speedup x{row['speedup']:.2f} | step-0 loss {g['loss'][0]:.4f} vs {t['loss'][0]:.4f}")
        gf = gflop_per_step(c)
        print(f"config {name}: {gf:.1f} GFLOP/step -> gptkit {gf / gm * 1000:.0f} GFLOP/s, torch {gf / tm * 1000:.0f} GFLOP/s")
    if a.append:
        date = datetime.date.today().isoformat()
        with open(a.append, "a") as f:
            for r in rows:
                f.write(f"| {date} | train {r['config']} | {a.precision} / {a.torch_precision} | {a.threads} | {r['gptkit_ms']:.0f} ms ({r['gptkit_tok_s']:.0f} tok/s) | "
                        f"{r['torch_ms']:.0f} ms ({r['torch_tok_s']:.0f} tok/s) | **{r['speedup']:.2f}×** | "
                        f"{r['gptkit_rss']:.0f} / {r['torch_rss']:.0f} MB | torch {tv}, {platform.processor() or platform.machine()} |\n")


if __name__ == "__main__":
    main()
