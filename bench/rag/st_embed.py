#!/usr/bin/env python3
"""sentence-transformers on PyTorch, the peer of `gptkit embed`: encodes the first N lines of a file with
batch 32 and normalize_embeddings=True on T threads; prints sentences/s (the median of R runs after a warm-up).
  python3 bench/rag/st_embed.py MODEL_DIR LINES N THREADS R"""
import sys
import time

import torch
from sentence_transformers import SentenceTransformer

model_dir, path, n, threads, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
lines = [l.rstrip("\n") for l in open(path)][:n]
m = SentenceTransformer(model_dir, device="cpu")
m.encode(lines[:64], batch_size=32, normalize_embeddings=True)
times = []
for _ in range(reps):
    t0 = time.perf_counter()
    m.encode(lines, batch_size=32, normalize_embeddings=True)
    times.append(time.perf_counter() - t0)
times.sort()
print("%.1f" % (n / times[len(times) // 2]))
