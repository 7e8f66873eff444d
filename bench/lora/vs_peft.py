#!/usr/bin/env python3
"""LoRA SFT step time and peak memory: gptkit against PyTorch + PEFT, same base, same batch shape, same run.

For each model shape (GPT-2 124M; a LLaMA 135M-class shape, SmolLM-135M's; or smaller ones with --shapes) a
random-init base is written once by gptkit (safetensors + HF config.json, which HF transformers loads unchanged).
Then, interleaved, REPS times each:
  gptkit:  `gptkit sft --init BASE --lora-rank R --lora-targets all-linear` on chat conversations that all render
           to the same token length (so every batch is B x T, the assistant tokens trained), fp32 AdamW;
  PyTorch: transformers' model loaded from the same BASE, peft.get_peft_model(LoraConfig(r=R, alpha, all linear
           layers of the blocks, dropout 0)), torch.optim.AdamW over the adapters, the same B x T batches with the
           same number of trained (unmasked) positions, masked cross-entropy, backward, grad clip, step (eager).
Both run with OMP_NUM_THREADS threads (torch.set_num_threads too). Step time: the median over the steps after the
first WARM of each invocation (gptkit's "ms" per step line; PyTorch timed the same way around its step). Peak
memory: the whole process's peak RSS by /usr/bin/time (-f %M) for both (PyTorch's includes the interpreter and
the torch import, which is what a user pays). The load average (uptime) is recorded before and after.

Usage: python3 bench/lora/vs_peft.py [--gptkit build/gptkit] [--python PY_WITH_TORCH_PEFT] [--shapes gpt2-124m,llama-135m]
       [--steps 6] [--warm 2] [--reps 2] [--rank 8] [--B 4] [--T 64]
Prints a markdown table (and the raw figures as JSON on stderr).
"""
import argparse, json, os, statistics, subprocess, sys, tempfile

SHAPES = {   # gptkit pretrain flags of the base; vocab and context as the named models
    "gpt2-124m": ["--arch", "gpt2", "--model", "d12", "--vocab-size", "50257", "--n-ctx", "1024"],
    "llama-135m": ["--arch", "llama", "--model", "llama-135m"],
    "gpt2-d6": ["--arch", "gpt2", "--model", "d6", "--vocab-size", "50257", "--n-ctx", "1024"],
    "llama-d6": ["--arch", "llama", "--model", "d6", "--vocab-size", "49152", "--n-ctx", "1024"],
}

TORCH = r'''
import json, sys, time, torch
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"]); torch.manual_seed(0)
from transformers import AutoModelForCausalLM
from peft import LoraConfig, get_peft_model
model = AutoModelForCausalLM.from_pretrained(a["base"], dtype=torch.float32)   # default attention (sdpa)
targets = ["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"] if model.config.model_type == "gpt2" else \
          ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
model = get_peft_model(model, LoraConfig(r=a["rank"], lora_alpha=a["alpha"], lora_dropout=0.0, target_modules=targets,
                                         fan_in_fan_out=model.config.model_type == "gpt2", task_type="CAUSAL_LM"))
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
B, T, V, ntr = a["B"], a["T"], model.config.vocab_size, a["trained"]
g = torch.Generator().manual_seed(1)
times = []
for k in range(a["steps"]):
    x = torch.randint(0, a["tok_vocab"], (B, T), generator=g)
    y = torch.randint(0, a["tok_vocab"], (B, T), generator=g)
    y.view(-1)[: B * T - ntr] = -100          # the same number of trained positions as gptkit's batch
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    logits = model(input_ids=x).logits
    loss = torch.nn.functional.cross_entropy(logits.view(-1, V), y.view(-1), ignore_index=-100)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    times.append((time.perf_counter() - t0) * 1000)
n = sum(p.numel() for p in params)
print(json.dumps({"ms": times, "trainable": n, "torch": torch.__version__}))
'''

def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)

def timed(cmd, env, cwd):
    """Runs cmd under /usr/bin/time; returns (stdout, peak RSS MB)."""
    r = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", "time.txt"] + cmd, capture_output=True, text=True, env=env, cwd=cwd)
    if r.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return r.stdout, int(open(os.path.join(cwd, "time.txt")).read().split()[-1]) / 1024

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gptkit", default="build/gptkit")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--shapes", default="gpt2-124m,llama-135m")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warm", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--T", type=int, default=64)
    a = ap.parse_args()
    G = os.path.abspath(a.gptkit)
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    w = tempfile.mkdtemp(prefix="gk-lora-peft-")
    load = [os.getloadavg()]
    # a tokenizer with the chat specials (small: the bases' vocabularies are the named models'), and conversations
    # that all render to the same length: one fixed user turn, an assistant turn of T - 8 - k tokens
    words = " ".join(f"w{i}" for i in range(400))
    open(f"{w}/corpus.txt", "w").write((words + "\n") * 50)
    sh([G, "tokenizer", "train", "--input", f"{w}/corpus.txt", "--vocab-size", "512", "--out", f"{w}/tok"], env=env)
    with open(f"{w}/sft.jsonl", "w") as f:
        for i in range(64):
            f.write(json.dumps({"messages": [{"role": "user", "content": "w1 w2 w3"},
                                             {"role": "assistant", "content": " ".join(["w7"] * 400)}]}) + "\n")
    sh([G, "tokenize", "--tokenizer", f"{w}/tok", "--input", f"{w}/corpus.txt", "--out-dir", f"{w}/shards",
        "--val-fraction", "0"], env=env)
    rows = []
    for shape in a.shapes.split(","):
        base = f"{w}/base-{shape}"
        sh([G, "pretrain"] + SHAPES[shape] + ["--data", f"{w}/shards/train_*.bin", "--tokenizer", f"{w}/tok", "-b", "1",
            "-t", "8", "--steps", "1", "--lr", "0", "--out", base, "--json"], env=env)
        g_ms, t_ms, g_rss, t_rss, info = [], [], [], [], {}
        for rep in range(a.reps):
            out, rss = timed([G, "sft", "--init", base, "--data", f"{w}/sft.jsonl", "-b", str(a.B), "--seq-len", str(a.T),
                              "--steps", str(a.steps), "--lr", "1e-3", "--lora-rank", str(a.rank), "--lora-alpha",
                              str(a.alpha), "--lora-targets", "all-linear", "--out", f"{w}/out-{shape}-{rep}", "--json"], env, w)
            L = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
            steps = [x for x in L if "ms" in x]
            g_ms += [x["ms"] for x in steps][a.warm:]
            g_rss.append(rss)
            lo = next(x["lora"] for x in L if "lora" in x)
            info.update(g_trainable=lo["trainable_params"], base_params=lo["base_params"],
                        tokens=steps[-1]["tokens_per_s"] * steps[-1]["ms"] / 1000, trained=steps[-1]["trained_tokens"])
            T = round(info["tokens"] / a.B)
            arg = dict(base=base, threads=threads, rank=a.rank, alpha=a.alpha, B=a.B, T=T, trained=info["trained"],
                       steps=a.steps, tok_vocab=512)
            out, rss = timed([a.python, "-c", TORCH, json.dumps(arg)], env, w)
            r = json.loads(out.splitlines()[-1])
            t_ms += r["ms"][a.warm:]
            t_rss.append(rss)
            info.update(t_trainable=r["trainable"], torch=r["torch"], T=T)
        row = dict(shape=shape, gptkit_ms=statistics.median(g_ms), torch_ms=statistics.median(t_ms),
                   gptkit_rss=max(g_rss), torch_rss=max(t_rss), **info)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    load.append(os.getloadavg())
    print(f"| base | B x T (trained) | trainable (gptkit / peft) | gptkit step | PyTorch+PEFT step | speed | gptkit peak RSS | "
          f"PyTorch+PEFT peak RSS | memory |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['shape']} ({r['base_params']/1e6:.1f} M) | {a.B} x {r['T']} ({r['trained']}) | {r['g_trainable']/1e3:.1f} k / "
              f"{r['t_trainable']/1e3:.1f} k | {r['gptkit_ms']:.0f} ms | {r['torch_ms']:.0f} ms | **{r['torch_ms']/r['gptkit_ms']:.2f}x** | "
              f"{r['gptkit_rss']:.0f} MB | {r['torch_rss']:.0f} MB | **{100*r['gptkit_rss']/r['torch_rss']:.0f}%** |")
    print(f"\nthreads {threads}; torch {rows[0]['torch'] if rows else '?'}; load average before {load[0][0]:.2f} "
          f"{load[0][1]:.2f}, after {load[1][0]:.2f} {load[1][1]:.2f}; {a.reps} invocations x {a.steps} steps, first {a.warm} dropped")

if __name__ == "__main__":
    main()
