#!/usr/bin/env python3
"""Independent PyTorch reference for `gptkit sample --temperature 0`: greedy decoding by HF transformers.

Builds a tiny random GPT2LMHeadModel with odd dimensions (3 layers, 5 heads of 7 = width 35, vocabulary 211,
context 96), scales its weights up so that the logits are far from uniform (random GPT-2 init gives nearly flat
logits, where float rounding could flip an argmax), saves it with save_pretrained (HF layout, safetensors) and
runs model.generate(do_sample=False) with the KV cache for 40 new tokens after a fixed prompt.

The expected ids go to expected.json with the smallest top-1/top-2 logit margin seen along the way (ties are
what could make two correct implementations disagree; the script refuses margins under 1e-3).

  python3 tests/ref/gen_greedy_fixture.py --out tests/fixtures/greedy
Used by tests/cli/chat.sh (greedy_matches_torch); the test itself needs no Python packages beyond json.
"""
import argparse, json, os

import torch
from transformers import GPT2Config, GPT2LMHeadModel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/greedy")
    ap.add_argument("--seed", type=int, default=4321)
    ap.add_argument("--max-new", type=int, default=40)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    cfg = GPT2Config(vocab_size=211, n_positions=96, n_embd=35, n_layer=3, n_head=5, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_new", layer_norm_epsilon=1e-5,
                     bos_token_id=None, eos_token_id=None)
    model = GPT2LMHeadModel(cfg).float().eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 2:
                p.mul_(6.0)
            else:
                p.add_(0.1 * torch.randn_like(p))
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    prompt = [int(x) for x in torch.randint(0, cfg.vocab_size, (13,))]
    x = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(x, max_new_tokens=a.max_new, do_sample=False, use_cache=True,
                             attention_mask=torch.ones_like(x), output_scores=True, return_dict_in_generate=True)
    ids = out.sequences[0, len(prompt):].tolist()
    margins = []
    for s in out.scores:
        top = torch.topk(s[0], 2).values
        margins.append(float(top[0] - top[1]))
    assert min(margins) > 1e-3, f"near-tie in greedy decoding (margin {min(margins)}); change the seed"
    os.makedirs(a.out, exist_ok=True)
    model.save_pretrained(os.path.join(a.out, "model"), safe_serialization=True)
    with open(os.path.join(a.out, "expected.json"), "w") as f:
        json.dump({"prompt_ids": prompt, "max_new": a.max_new, "greedy_ids": ids, "min_margin": min(margins)}, f, indent=1)
    print(f"wrote {a.out}: {len(ids)} greedy ids, min top-2 margin {min(margins):.4f}")


if __name__ == "__main__":
    main()
