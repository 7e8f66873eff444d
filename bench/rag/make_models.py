#!/usr/bin/env python3
"""Benchmark models for bench/rag/run.sh: BERT encoders of all-MiniLM-L6-v2's shape (hidden 384, 6 layers,
12 heads, intermediate 1536, 512 positions, max_seq_length 256, mean pooling + Normalize) with random weights
and a generated 30,522-token WordPiece vocabulary (the real model is not reachable from here; speed depends on
the shape, not the weights), saved by sentence-transformers itself. Also a 1-layer variant of the same width,
to build the 10^5-chunk index in reasonable time on 2 shared cores (query cost depends on the vector width and
count, not on the depth). And the texts: sentences of 8-40 words from a fixed word list.

  python3 bench/rag/make_models.py OUT_DIR
"""
import os
import random
import shutil
import sys

import torch
from sentence_transformers import SentenceTransformer, models
from tokenizers import BertWordPieceTokenizer
from transformers import BertConfig, BertModel, BertTokenizerFast

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
r = random.Random(3)
letters = "abcdefghijklmnopqrstuvwxyz"
vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(33, 127)] + ["##" + c for c in letters]
seen = set(vocab)
while len(vocab) < 30522:
    w = "".join(r.choice(letters) for _ in range(r.randint(2, 9)))
    if r.random() < 0.3:
        w = "##" + w
    if w not in seen:
        seen.add(w)
        vocab.append(w)
with open(f"{out}/vocab.txt", "w") as f:
    f.write("\n".join(vocab) + "\n")
words = [w for w in vocab[200:5200] if not w.startswith("##")]
with open(f"{out}/sentences.txt", "w") as f:
    for _ in range(20000):
        f.write(" ".join(r.choice(words) for _ in range(r.randint(8, 40))) + ".\n")


def make(name, layers):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=layers, num_attention_heads=12,
                     intermediate_size=1536, max_position_embeddings=512, hidden_act="gelu")
    tmp = f"{out}/_{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(tmp, safe_serialization=True)
    tk = BertWordPieceTokenizer(f"{out}/vocab.txt", lowercase=True)
    BertTokenizerFast(tokenizer_object=tk._tokenizer, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                      pad_token="[PAD]", mask_token="[MASK]").save_pretrained(tmp)
    st = SentenceTransformer(modules=[models.Transformer(tmp, max_seq_length=256), models.Pooling(384, "mean"),
                                      models.Normalize()], device="cpu")
    shutil.rmtree(f"{out}/{name}", ignore_errors=True)
    st.save(f"{out}/{name}")
    shutil.rmtree(tmp)


make("minilm_shape", 6)
make("minilm_1layer", 1)
print("wrote", out)
