#!/usr/bin/env python3
"""GGUF fixtures, written with the `gguf` PyPI package (llama.cpp's own Python reader/writer). Writes
tests/fixtures/gguf/:

  dequant.gguf   for each type T of F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K: tensor "T" of random
                 blocks (scales kept finite) and tensor "T.expected" (F32), gguf.quants.dequantize of it. The C
                 test requires bit-exact equality.
  model/         an HF LlamaForCausalLM (hidden 96 = 3 heads of 32, 1 KV head, FFN 160, vocab 67, 2 layers, untied)
  model-<t>.gguf the same weights as llama.cpp's converter lays them out (arch "llama", q/k rows permuted for its
                 rotary pairing), matrices in <t> = f32 | q8_0 | q4_0 (norms f32)
  expected.json  per file: transformers' logits over `tokens` with the weights as that file stores them (the
                 quantized ones dequantized by gguf.quants), and the greedy continuation of `prompt`

Run from the repository root:  python3 tests/ref/gen_gguf_fixtures.py
"""
import json
import os
import shutil

import numpy as np
import torch
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize
from transformers import LlamaConfig, LlamaForCausalLM

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "gguf")
TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]


def rand_blocks(t, nblocks, rng):
    block, size = GGML_QUANT_SIZES[t]
    if t == Q.F32:
        return rng.standard_normal(nblocks).astype(np.float32).view(np.uint8).reshape(nblocks, 4)
    if t in (Q.F16, Q.BF16):
        x = rng.standard_normal(nblocks).astype(np.float32)
        if t == Q.F16:
            return x.astype(np.float16).view(np.uint8).reshape(nblocks, 2)
        return (x.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(nblocks, 2)
    raw = rng.integers(0, 256, size=(nblocks, size), dtype=np.uint8)
    half = lambda n: rng.uniform(-0.05, 0.05, size=(nblocks, n)).astype(np.float16).view(np.uint8)
    if t in (Q.Q8_0, Q.Q4_0, Q.Q5_0):
        raw[:, 0:2] = half(1)
    elif t in (Q.Q4_1, Q.Q5_1, Q.Q4_K, Q.Q5_K):
        raw[:, 0:4] = half(2)
    elif t == Q.Q6_K:
        raw[:, size - 2:] = half(1)
    return raw


def write_dequant(path):
    rng = np.random.default_rng(1)
    w = GGUFWriter(path, "test")
    for name in TYPES:
        t = Q[name]
        block, size = GGML_QUANT_SIZES[t]
        rows, per_row = 3, 2 * (256 // block if block > 1 else 64)
        raw = rand_blocks(t, rows * per_row, rng).reshape(rows, per_row * size)
        exp = dequantize(raw, t).astype(np.float32)
        w.add_tensor(name, raw, raw_dtype=t)
        w.add_tensor(name + ".expected", exp)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def permute(w, n_head):
    """llama.cpp's converter: HF rotate-half rows -> interleaved pairs, per head."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_model():
    torch.manual_seed(21)
    cfg = LlamaConfig(num_hidden_layers=2, num_attention_heads=3, num_key_value_heads=1, hidden_size=96,
                      intermediate_size=160, vocab_size=67, max_position_embeddings=64, rms_norm_eps=1e-5,
                      tie_word_embeddings=False, rope_theta=10000.0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1.0 + 0.2 * torch.randn_like(p) if "norm" in name else 0.3 * torch.randn_like(p))
    mdir = os.path.join(OUT, "model")
    model.save_pretrained(mdir, safe_serialization=True)
    gc = os.path.join(mdir, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    sub = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
           "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
           "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    gen = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 67, (2, 15), generator=gen)
    prompt = [5, 17, 33, 2, 60]
    expected = {"tokens": tokens.tolist(), "prompt": prompt}
    for qt in ("f32", "q8_0", "q4_0"):
        t = {"f32": Q.F32, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0}[qt]
        path = os.path.join(OUT, f"model-{qt}.gguf")
        w = GGUFWriter(path, "llama")
        w.add_context_length(64)
        w.add_embedding_length(96)
        w.add_block_count(2)
        w.add_feed_forward_length(160)
        w.add_head_count(3)
        w.add_head_count_kv(1)
        w.add_rope_dimension_count(32)
        w.add_rope_freq_base(10000.0)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_file_type({"f32": 0, "q8_0": 7, "q4_0": 2}[qt])
        stored = {}
        for k, v in sd.items():
            if k in names:
                g = names[k]
            else:
                parts = k.split(".")   # model.layers.N.<sub>.weight
                g = f"blk.{parts[2]}.{sub['.'.join(parts[3:-1])]}.weight"
            arr = v
            if k.endswith("q_proj.weight"):
                arr = permute(arr, 3)
            elif k.endswith("k_proj.weight"):
                arr = permute(arr, 1)
            if arr.ndim == 2 and t != Q.F32:
                qd = quantize(arr, t)
                w.add_tensor(g, qd, raw_dtype=t)
                deq = dequantize(qd, t).astype(np.float32)
            else:
                w.add_tensor(g, arr)
                deq = arr
            if k.endswith("q_proj.weight") or k.endswith("k_proj.weight"):   # back to HF's layout
                n = 3 if "q_proj" in k else 1
                deq = deq.reshape(n, deq.shape[0] // n // 2, 2, *deq.shape[1:]).swapaxes(1, 2).reshape(deq.shape)
            stored[k] = torch.from_numpy(np.ascontiguousarray(deq))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        m = LlamaForCausalLM(cfg).float().eval()
        m.load_state_dict(stored)
        m = m.double()
        with torch.no_grad():
            logits = m(input_ids=tokens).logits.float()
            out = m.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False, pad_token_id=0,
                             eos_token_id=None)[0, len(prompt):].tolist()
        expected[qt] = {"logits": logits.flatten().tolist(), "greedy": out}
        print(qt, os.path.getsize(path), "bytes, greedy", out)
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f)


def write_tokenizers():
    """tok-<kind>.gguf: the HF tokenizer.json fixtures of tests/fixtures/hftok as llama.cpp's converter stores a
    byte-level BPE vocabulary (tokenizer.ggml.model "gpt2", tokens by id, token_type 3 for added tokens, merges
    "a b", pre naming the split). Their expected ids are hftok's (HF's), which llama.cpp's pre types reproduce."""
    pre = {"llama3": "llama-bpe", "qwen2": "qwen2", "smollm": "smollm"}
    for kind, p in pre.items():
        j = json.load(open(os.path.join(OUT, "..", "hftok", kind, "tokenizer.json"), encoding="utf-8"))
        vocab = dict(j["model"]["vocab"])
        added = {a["id"]: a["content"] for a in j["added_tokens"]}
        n = max(list(vocab.values()) + list(added)) + 1
        tokens, types = [""] * n, [5] * n
        for s, i in vocab.items():
            tokens[i], types[i] = s, 1
        for i, s in added.items():
            tokens[i], types[i] = s, 3
        merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
        w = GGUFWriter(os.path.join(OUT, f"tok-{kind}.gguf"), "llama")
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(p)
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    write_dequant(os.path.join(OUT, "dequant.gguf"))
    write_model()
    write_tokenizers()


if __name__ == "__main__":
    main()
