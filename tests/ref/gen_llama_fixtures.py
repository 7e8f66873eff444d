#!/usr/bin/env python3
"""Reference fixtures for the LLaMA family (src/model) from an independent implementation: HF transformers'
LlamaForCausalLM and Qwen2ForCausalLM with tiny random configs at awkward sizes. Writes tests/fixtures/llama/:

  <case>/model/        save_pretrained output (config.json + model.safetensors, or shards + index json)
  <case>/io.safetensors  tokens [B,T] I32, targets [B,T] I32, logits [B,T,V] F32, loss [1] F32 (mean cross-entropy)
  <case>/grads.safetensors (case "gqa" only) d loss / d param named like gptkit's table ("embed_tokens.weight",
                       "layers.0.self_attn.qkv_proj.weight" = q_proj | k_proj | v_proj stacked along rows, ...)

Cases (all 2 layers, head_dim 10 (not a multiple of 8), n_head / n_kv_head = 3, intermediate 46, vocab 67):
  gqa     LlamaForCausalLM, untied head, rope theta 10000, rms eps 1e-5, fp32 weights, single file
  tied    LlamaForCausalLM, tied head, rope theta 500000 with llama3 rope scaling, fp16 weights, sharded save
  qwen2   Qwen2ForCausalLM (q/k/v biases), untied, theta 1e6, bf16 weights

The reference computation runs in float64 on the exact stored weights (fp16/bf16 ones widened), so the fixtures
are the exact answer and the C test's tolerance measures only its own fp32 rounding. Norm weights and biases
are randomised so a mix-up between tensors cannot pass.

Run from the repository root:  python3 tests/ref/gen_llama_fixtures.py
"""
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "llama")
B, T = 2, 13
BASE = dict(num_hidden_layers=2, num_attention_heads=3, num_key_value_heads=1, hidden_size=30,
            intermediate_size=46, vocab_size=67, max_position_embeddings=32, attention_dropout=0.0,
            bos_token_id=1, eos_token_id=2)
CASES = {
    "gqa": (LlamaConfig, LlamaForCausalLM, dict(rms_norm_eps=1e-5, tie_word_embeddings=False,
                                                 rope_theta=10000.0), torch.float32, None),
    "tied": (LlamaConfig, LlamaForCausalLM,
             dict(rms_norm_eps=1e-6, tie_word_embeddings=True,
                  rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                    original_max_position_embeddings=8),
                  rope_theta=500000.0), torch.float16, "4KB"),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, dict(rms_norm_eps=1e-6, tie_word_embeddings=False,
                                                   rope_theta=1000000.0), torch.bfloat16, None),
}


def gk_name(hf):
    """HF name -> gptkit table name (q/k/v handled by the caller)."""
    return hf[len("model."):] if hf.startswith("model.") else hf


def make(case):
    cfg_cls, model_cls, extra, dtype, shard = CASES[case]
    torch.manual_seed({"gqa": 11, "tied": 12, "qwen2": 13}[case])
    cfg = cfg_cls(**BASE, **extra)
    if "rope_scaling" in extra:   # transformers 5 keeps rope settings in rope_parameters
        rp = dict(extra["rope_scaling"])
        rp["rope_theta"] = extra["rope_theta"]
        cfg.rope_parameters = rp
    model = model_cls(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.normal_(0.0, 0.1)
            elif "embed_tokens" in name:
                p.normal_(0.0, 0.5)
            else:
                p.normal_(0.0, 0.2)
        for p in model.parameters():   # round to the stored dtype, so fp32/fp64 recomputation sees the same values
            p.copy_(p.to(dtype).float())
    d = os.path.join(OUT, case)
    if os.path.isdir(d):
        shutil.rmtree(d)
    mdir = os.path.join(d, "model")
    saved = model.to(dtype)
    saved.save_pretrained(mdir, safe_serialization=True, **({"max_shard_size": shard} if shard else {}))
    gc = os.path.join(mdir, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)

    gen = torch.Generator().manual_seed(99)
    seq = torch.randint(0, BASE["vocab_size"], (B, T + 1), generator=gen)
    tokens, targets = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()
    # the reference reloads what was saved, as a user would: fp32 compute weights and rotary frequencies computed
    # afresh from config.json (model.to(fp16) above also rounded the in-memory inv_freq buffer)
    m64 = model_cls.from_pretrained(mdir, dtype=torch.float32).double().train()
    m64.zero_grad()
    logits = m64(input_ids=tokens).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, BASE["vocab_size"]), targets.reshape(-1))
    loss.backward()
    save_file({"tokens": tokens.to(torch.int32), "targets": targets.to(torch.int32),
               "logits": logits.detach().float().contiguous(), "loss": loss.detach().float().reshape(1)},
              os.path.join(d, "io.safetensors"), metadata={"B": str(B), "T": str(T)})
    if case == "gqa":
        params = dict(m64.named_parameters())
        grads = {}
        for n, p in params.items():
            if ".q_proj." in n:
                k, v = n.replace(".q_proj.", ".k_proj."), n.replace(".q_proj.", ".v_proj.")
                fused = torch.cat([p.grad, params[k].grad, params[v].grad], 0)
                grads[gk_name(n.replace(".q_proj.", ".qkv_proj."))] = fused.float().contiguous()
            elif ".k_proj." in n or ".v_proj." in n:
                continue
            else:
                grads[gk_name(n)] = p.grad.detach().float().contiguous()
        save_file(grads, os.path.join(d, "grads.safetensors"))
    if case == "gqa":
        write_cli_fixtures(d, m64)
    print(f"{case}: loss {loss.item():.6f}, files {sorted(os.listdir(mdir))}")


def write_cli_fixtures(d, m64):
    """For tests/cli/llama.sh: an llm.c shard and the eval loss over it (gptkit eval -b 2 -t 13 --batches 2), and
    transformers' greedy continuation of a prompt (gptkit sample --temperature 0)."""
    import json
    from array import array
    gen = torch.Generator().manual_seed(5)
    n = 2 * 2 * T + 1
    toks = torch.randint(0, BASE["vocab_size"], (n,), generator=gen)
    h = array("i", [0] * 256)
    h[0], h[1], h[2] = 20240520, 1, n
    with open(os.path.join(d, "data.bin"), "wb") as f:
        f.write(h.tobytes() + array("H", toks.tolist()).tobytes())
    losses = []
    with torch.no_grad():
        for k in range(2):   # sequential batches of B=2 rows of T: row r of batch k starts at (2k + r) T
            x = torch.stack([toks[(2 * k + r) * T:(2 * k + r) * T + T] for r in range(2)])
            y = torch.stack([toks[(2 * k + r) * T + 1:(2 * k + r) * T + T + 1] for r in range(2)])
            lg = m64(input_ids=x).logits
            losses.append(torch.nn.functional.cross_entropy(lg.reshape(-1, BASE["vocab_size"]), y.reshape(-1)).item())
        prompt = [3, 14, 15, 9, 26]
        out = m64.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False, pad_token_id=0,
                           eos_token_id=None)[0, len(prompt):].tolist()
        # the smallest top-1 / top-2 logit gap along the greedy path: a near tie would make fp32 flip
        seq = prompt + out
        lg = m64(input_ids=torch.tensor([seq])).logits[0, len(prompt) - 1:-1]
        top2 = lg.topk(2, dim=-1).values
        gap = (top2[:, 0] - top2[:, 1]).min().item()
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump({"eval_loss": sum(losses) / len(losses), "prompt_ids": prompt, "greedy_ids": out, "min_gap": gap}, f,
                  indent=1)


CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def make_chat():
    """chat/model: a Qwen2ForCausalLM over the Qwen2-style tokenizer.json of tests/fixtures/hftok/qwen2 with a ChatML
    chat template; expected.json: the template's ids for a conversation (add_generation_prompt) and the greedy
    reply (ids and text) transformers generates, stopping at <|im_end|>."""
    import json
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    d = os.path.join(OUT, "chat")
    if os.path.isdir(d):
        shutil.rmtree(d)
    mdir = os.path.join(d, "model")
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(OUT, "..", "hftok", "qwen2", "tokenizer.json"),
                                  eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = CHATML
    torch.manual_seed(14)
    V = len(tok)
    cfg = Qwen2Config(**{**BASE, "vocab_size": V, "max_position_embeddings": 64, "bos_token_id": None,
                         "eos_token_id": tok.convert_tokens_to_ids("<|im_end|>")}, rms_norm_eps=1e-6)
    model = Qwen2ForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.3)
        # make <|im_end|> likely after a few tokens so the reply ends by itself
    model.save_pretrained(mdir, safe_serialization=True)
    tok.save_pretrained(mdir)
    tok = AutoTokenizer.from_pretrained(mdir)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "In the beginning, what was made?"}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=False)
    if isinstance(ids, dict):
        ids = ids["input_ids"]
    m = Qwen2ForCausalLM.from_pretrained(mdir, dtype=torch.float32).double().eval()
    with torch.no_grad():
        out = m.generate(torch.tensor([ids]), max_new_tokens=10, do_sample=False,
                         eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=0)[0, len(ids):].tolist()
    text = tok.decode([i for i in out if i != tok.convert_tokens_to_ids("<|im_end|>")])
    with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"messages": msgs, "prompt_ids": ids, "reply_ids": out, "reply_text": text}, f, ensure_ascii=False,
                  indent=1)
    print("chat: prompt", len(ids), "tokens, reply", out, repr(text))


def main():
    os.makedirs(OUT, exist_ok=True)
    for case in CASES:
        make(case)
    make_chat()


if __name__ == "__main__":
    main()
