#!/usr/bin/env python3
"""Turns a BM25-only index (gptkit index build without --embedder) into one that holds DIM-dim vectors of a given
embedder: random unit vectors (seeded), float32 or int8, and the embedder's meta (copied from a small index that
embedder really built). For measuring query latency and memory at 10^5 chunks on a machine where embedding 10^5
chunks would take hours; build time is reported from its two measured parts (bench/RESULTS.md says how).
  python3 bench/rag/fill_vectors.py INDEX.db REAL_SMALL_INDEX.db [int8]"""
import sqlite3
import sys

import numpy as np

db, ref = sys.argv[1], sys.argv[2]
int8 = len(sys.argv) > 3 and sys.argv[3] == "int8"
meta = dict(sqlite3.connect(ref).execute("SELECT key, value FROM meta").fetchall())
dim = int(meta["dim"])
c = sqlite3.connect(db)
ids = [r[0] for r in c.execute("SELECT id FROM chunks ORDER BY id")]
rng = np.random.default_rng(0)
v = rng.standard_normal((len(ids), dim)).astype(np.float32)
v /= np.linalg.norm(v, axis=1, keepdims=True)
rows = []
for i, cid in enumerate(ids):
    if int8:
        s = float(np.abs(v[i]).max() / 127)
        rows.append((np.round(v[i] / s).astype(np.int8).tobytes(), s, cid))
    else:
        rows.append((v[i].tobytes(), 1.0, cid))
c.executemany("UPDATE chunks SET vec = ?, scale = ? WHERE id = ?", rows)
for k in ("dim", "embedder", "embedder_fingerprint", "embedder_desc"):
    c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (k, meta[k]))
c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('vectors', ?)", ("int8" if int8 else "f32",))
c.commit()
print(len(ids), "vectors of", dim)
