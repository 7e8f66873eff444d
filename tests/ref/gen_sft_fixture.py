#!/usr/bin/env python3
"""Independent PyTorch reference for the SFT loss: masked next-token cross-entropy and its gradient.

Renders two conversations (system, user, assistant with a tool call, tool result, assistant continuation;
and a plain user/assistant exchange) in gptkit's chat format (docs/chat.md) with a byte-level vocabulary:
ids 0..255 are the bytes and the nine chat specials follow at 256..264 in tok.h's order — exactly what
gptkit's tokenizer gives for a rank file holding only the 256 bytes after tok_add_chat_specials. A tiny random
HF GPT2LMHeadModel (odd dims, vocabulary 269) computes, on the right-padded batch of both:

    loss = sum over masked targets of -log p(target) / number of masked targets

(targets[t] = ids[t+1] where mask[t+1] = 1, else ignored; padding ignored), and its gradients.

Writes tests/fixtures/sft/: model/ (save_pretrained, safetensors), convs.jsonl (the conversations),
expected.json (ids, masks, loss), grads.safetensors (a few gradients, HF names).
  python3 tests/ref/gen_sft_fixture.py --out tests/fixtures/sft
Checked by tests/test_chat.c (test_sft_matches_torch), which renders convs.jsonl itself.
"""
import argparse, json, os

import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

SPECIALS = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|tool_call|>",
            "<|tool_call_end|>", "<|tool_result|>", "<|tool_result_end|>"]
SID = {s: 256 + i for i, s in enumerate(SPECIALS)}

CONVS = [
    [{"role": "system", "content": "Be brief."},
     {"role": "user", "content": "What is 6*7? <|end|>"},          # a user cannot inject a turn marker
     {"role": "assistant", "content": "<|tool_call|>calc(6*7)<|tool_call_end|>"},
     {"role": "tool", "content": "42"},
     {"role": "assistant", "content": "It is 42."},
     {"role": "user", "content": "Thanks"},
     {"role": "assistant", "content": "You're welcome."}],
    [{"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello! How can I help?"}],
]


def text_ids(s):
    return list(s.encode("utf-8"))


def assistant_ids(s):
    """Assistant content: only <|tool_call|> and <|tool_call_end|> are special."""
    out, i = [], 0
    while i < len(s):
        for tok in ("<|tool_call|>", "<|tool_call_end|>"):
            if s.startswith(tok, i):
                out.append(SID[tok]); i += len(tok); break
        else:
            out.extend(s[i].encode("utf-8")); i += 1
    return out


def render(conv):
    ids, mask, open_turn = [], [], False
    def put(xs, m):
        ids.extend(xs); mask.extend([m] * len(xs))
    for msg in conv:
        r, c = msg["role"], msg["content"]
        if r in ("system", "user"):
            put([SID["<|%s|>" % r]], 0); put(text_ids(c), 0); put([SID["<|end|>"]], 0); open_turn = False
        elif r == "tool":
            put([SID["<|tool_result|>"]], 0); put(text_ids(c), 0); put([SID["<|tool_result_end|>"]], 0); open_turn = True
        else:
            if not open_turn:
                put([SID["<|assistant|>"]], 0)
            put(assistant_ids(c), 1)
            if c.endswith("<|tool_call_end|>"):
                open_turn = True
            else:
                put([SID["<|end|>"]], 1); open_turn = False
    return ids, mask


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/sft")
    ap.add_argument("--seed", type=int, default=777)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    cfg = GPT2Config(vocab_size=269, n_positions=160, n_embd=30, n_layer=2, n_head=3, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_new", layer_norm_epsilon=1e-5)
    model = GPT2LMHeadModel(cfg).float()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.05 * torch.randn_like(p))
            else:
                p.mul_(3.0)
    rendered = [render(c) for c in CONVS]
    Tb = max(len(i) for i, _ in rendered) - 1
    x = torch.zeros(len(rendered), Tb, dtype=torch.long)
    y = torch.full((len(rendered), Tb), -100, dtype=torch.long)
    for b, (ids, mask) in enumerate(rendered):
        n = len(ids) - 1
        x[b, :n] = torch.tensor(ids[:-1])
        for t in range(n):
            if mask[t + 1]:
                y[b, t] = ids[t + 1]
    logits = model(x).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), y.reshape(-1), ignore_index=-100)
    loss.backward()
    os.makedirs(a.out, exist_ok=True)
    model.save_pretrained(os.path.join(a.out, "model"), safe_serialization=True)
    with open(os.path.join(a.out, "convs.jsonl"), "w") as f:
        for c in CONVS:
            f.write(json.dumps({"messages": c}) + "\n")
    names = ["transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.attn.c_attn.weight",
             "transformer.h.0.ln_1.weight", "transformer.h.1.mlp.c_proj.weight", "transformer.h.1.attn.c_proj.bias",
             "transformer.ln_f.bias"]
    params = dict(model.named_parameters())
    save_file({n: params[n].grad.detach().contiguous() for n in names}, os.path.join(a.out, "grads.safetensors"))
    with open(os.path.join(a.out, "expected.json"), "w") as f:
        json.dump({"ids": [r[0] for r in rendered], "mask": [r[1] for r in rendered], "loss": loss.item(),
                   "masked_targets": int((y != -100).sum()), "grads": names}, f)
    print(f"wrote {a.out}: loss {loss.item():.6f} over {int((y != -100).sum())} masked targets, Tb {Tb}")


if __name__ == "__main__":
    main()
