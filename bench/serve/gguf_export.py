"""Writes a gptkit GPT-2 checkpoint (HF layout: config.json + model.safetensors) that uses the GPT-2 tokenizer
as a GGUF file llama.cpp loads (architecture "gpt2", f32), so llama.cpp's server runs the very same weights as
`gptkit serve` in bench/serve/run.sh. Tensor names and the Conv1D transposes follow llama.cpp's
convert_hf_to_gguf.py for GPT-2; the vocabulary is GPT-2's encoder.json + vocab.bpe (data/vocab/gpt2), padded
to the model's vocabulary with gptkit's chat specials and [PAD] entries. Needs the PyPI `gguf` and `numpy`.

usage: gguf_export.py CHECKPOINT_DIR VOCAB_DIR OUT.gguf
"""
import json
import os
import struct
import sys

import gguf
import numpy as np

CHAT = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|tool_call|>", "<|tool_call_end|>",
        "<|tool_result|>", "<|tool_result_end|>"]


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, t in hdr.items():
            if name == "__metadata__":
                continue
            assert t["dtype"] == "F32", "only f32 checkpoints (%s is %s)" % (name, t["dtype"])
            a, b = t["data_offsets"]
            f.seek(base + a)
            out[name] = np.frombuffer(f.read(b - a), dtype=np.float32).reshape(t["shape"]).copy()
        return out


def main():
    ckpt, vocab_dir, out = sys.argv[1], sys.argv[2], sys.argv[3]
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    t = load_safetensors(os.path.join(ckpt, "model.safetensors"))
    L, C, V = cfg["n_layer"], cfg["n_embd"], cfg["vocab_size"]
    w = gguf.GGUFWriter(out, "gpt2")
    w.add_name("gptkit-bench")
    w.add_context_length(cfg["n_ctx"])
    w.add_embedding_length(C)
    w.add_feed_forward_length(cfg.get("n_inner") or 4 * C)
    w.add_block_count(L)
    w.add_head_count(cfg["n_head"])
    w.add_layer_norm_eps(cfg.get("layer_norm_epsilon", 1e-5))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    enc = json.load(open(os.path.join(vocab_dir, "encoder.json")))
    tokens = [None] * len(enc)
    for s, i in enc.items():
        tokens[i] = s
    types = [gguf.TokenType.NORMAL] * len(tokens)
    types[50256] = gguf.TokenType.CONTROL
    for s in CHAT:
        if len(tokens) < V:
            tokens.append(s)
            types.append(gguf.TokenType.CONTROL)
    while len(tokens) < V:
        tokens.append("[PAD%d]" % len(tokens))
        types.append(gguf.TokenType.UNUSED)
    merges = [l for l in open(os.path.join(vocab_dir, "vocab.bpe"), encoding="utf-8").read().split("\n")[1:] if l]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(50256)
    w.add_eos_token_id(50256)
    p = "transformer."
    w.add_tensor("token_embd.weight", t[p + "wte.weight"])
    w.add_tensor("position_embd.weight", t[p + "wpe.weight"])
    # Conv1D weights are stored [in, out]; ggml wants [out, in] rows (the converter's transpose)
    names = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
             "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
    for i in range(L):
        for hf, gg in names.items():
            wt = t["%sh.%d.%s.weight" % (p, i, hf)]
            w.add_tensor("blk.%d.%s.weight" % (i, gg), wt if hf.startswith("ln") else np.ascontiguousarray(wt.T))
            w.add_tensor("blk.%d.%s.bias" % (i, gg), t["%sh.%d.%s.bias" % (p, i, hf)])
    w.add_tensor("output_norm.weight", t[p + "ln_f.weight"])
    w.add_tensor("output_norm.bias", t[p + "ln_f.bias"])
    w.add_tensor("output.weight", t.get("lm_head.weight", t[p + "wte.weight"]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    r = gguf.GGUFReader(out)   # read back with the ecosystem's own reader
    print("wrote %s: %d tensors, %d tokens" % (out, len(r.tensors), len(tokens)))


main()
