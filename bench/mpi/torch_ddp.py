#!/usr/bin/env python3
"""The peer of bench/mpi/run.sh: the same GPT-2 training step in PyTorch, one process (gradient accumulation
over `accum` micro-batches) or DistributedDataParallel over the gloo backend (CPU), each rank one micro-batch of
the same global batch. HF transformers' GPT2LMHeadModel, fp32 AdamW, eager.

Usage: torch_ddp.py JSON   with keys ranks, threads, n_layer, n_head, n_embd, vocab, ctx, B, T, total, steps, shard
Prints one JSON line: median ms per step over steps 1.. (step 0 is warm-up), tokens/s, and losses.
"""
import json, os, statistics, sys, time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from transformers import GPT2Config, GPT2LMHeadModel


def run(rank, a, q):
    torch.set_num_threads(a["threads"])
    torch.manual_seed(0)
    if a["ranks"] > 1:
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % a["port"], rank=rank, world_size=a["ranks"])
    cfg = GPT2Config(vocab_size=a["vocab"], n_positions=a["ctx"], n_embd=a["n_embd"], n_layer=a["n_layer"],
                     n_head=a["n_head"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(cfg).float().train()
    net = torch.nn.parallel.DistributedDataParallel(model) if a["ranks"] > 1 else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    tok = np.fromfile(a["shard"], dtype=np.uint16, offset=1024).astype(np.int64)
    B, T = a["B"], a["T"]
    accum = a["total"] // (B * T) // a["ranks"]
    times, losses = [], []
    for k in range(a["steps"]):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        lsum = 0.0
        for m in range(accum):
            mb = (k * a["ranks"] * accum) + rank * accum + m          # micro-batch index in the global order
            buf = torch.from_numpy(tok[mb * B * T:(mb + 1) * B * T + 1])
            x, y = buf[:-1].view(B, T), buf[1:].view(B, T)
            loss = net(input_ids=x, labels=y).loss / accum
            loss.backward()
            lsum += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(lsum)
    if rank == 0:
        ms = statistics.median(times[1:]) * 1000
        q.put({"ms": ms, "tokens_per_s": a["total"] / (ms / 1000), "losses": losses})
    if a["ranks"] > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    a = json.loads(sys.argv[1])
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    if a["ranks"] == 1:
        run(0, a, q)
    else:
        ps = [ctx.Process(target=run, args=(r, a, q)) for r in range(a["ranks"])]
        for p in ps: p.start()
        r = q.get()
        for p in ps: p.join()
        print(json.dumps(r)); sys.exit(0)
    print(json.dumps(q.get()))
