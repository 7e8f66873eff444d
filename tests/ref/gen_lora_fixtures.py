#!/usr/bin/env python3
"""Reference fixtures for LoRA (src/model/lora.c) from HF peft on tiny random models of both families.
Writes tests/fixtures/lora/<case>/:

  model/      the base: transformers' save_pretrained (config.json + model.safetensors)
  adapter/    peft's save_pretrained of a LoRA on every linear layer of the blocks (adapter_config.json +
              adapter_model.safetensors), rank 3 (odd), alpha 5, dropout 0, lora_B randomised (peft's init
              makes it zero, which would leave half the gradient paths untested)
  io.safetensors  tokens [B,T] I32, targets [B,T] I32 (-1 = ignored), logits [B,T,V] F32 (base + adapter),
              merged_logits [B,T,V] F32 (after peft's merge_and_unload), base_logits (adapters disabled),
              loss [1] F32 (mean cross-entropy over the kept targets), and grad.<peft key> for every lora_A /
              lora_B tensor (d loss / d tensor), keyed as adapter_model.safetensors names them, and
              adamw5.<peft key>: every adapter tensor after 5 torch AdamW steps on that batch (lr 1e-2,
              betas 0.9/0.95, eps 1e-8, weight decay 0.05, no clipping), the base frozen

Cases: gpt2 (GPT2LMHeadModel: Conv1D bases, fan_in_fan_out, targets attn.c_attn, attn.c_proj, mlp.c_fc,
mlp.c_proj; 2 layers, 3 heads, width 24), llama (LlamaForCausalLM, grouped-query 3:1, head_dim 10, SwiGLU 46,
untied; targets q/k/v/o/gate/up/down_proj; use_rslora so alpha / sqrt(r) is what is checked there).
The forward and backward run in float64 on the stored fp32 weights, so the C test's tolerance measures its own
fp32 rounding only.

Run from the repository root:  python3 tests/ref/gen_lora_fixtures.py   (needs torch, transformers, peft)
"""
import os
import shutil

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "lora")
B, T = 2, 11


def make(case):
    torch.manual_seed({"gpt2": 21, "llama": 22}[case])
    if case == "gpt2":
        cfg = GPT2Config(n_layer=2, n_head=3, n_embd=24, vocab_size=67, n_positions=32, resid_pdrop=0.0,
                         embd_pdrop=0.0, attn_pdrop=0.0)
        model = GPT2LMHeadModel(cfg)
        targets, fifo, rs = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"], True, False
    else:
        cfg = LlamaConfig(num_hidden_layers=2, num_attention_heads=3, num_key_value_heads=1, hidden_size=30,
                          intermediate_size=46, vocab_size=67, max_position_embeddings=32, rms_norm_eps=1e-5,
                          tie_word_embeddings=False, rope_theta=10000.0, attention_dropout=0.0)
        model = LlamaForCausalLM(cfg)
        targets, fifo, rs = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], False, True
    model = model.float().eval()
    with torch.no_grad():   # norms and biases away from their 1 / 0 init, so mix-ups show
        for n, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    d = os.path.join(OUT, case)
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(os.path.join(d, "model"), safe_serialization=True)

    lc = LoraConfig(r=3, lora_alpha=5, lora_dropout=0.0, target_modules=targets, fan_in_fan_out=fifo,
                    use_rslora=rs, bias="none", task_type="CAUSAL_LM")
    pm = get_peft_model(model, lc)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(0.3 * torch.randn_like(p))
    pm.save_pretrained(os.path.join(d, "adapter"))
    pm = pm.double()

    g = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, 67, (B, T), generator=g)
    targets_ = torch.randint(0, 67, (B, T), generator=g)
    targets_[0, :3] = -1
    logits = pm(input_ids=tokens).logits
    keep = targets_ >= 0
    loss = torch.nn.functional.cross_entropy(logits[keep], targets_[keep])
    loss.backward()
    out = {"tokens": tokens.to(torch.int32), "targets": targets_.to(torch.int32),
           "logits": logits.detach().float(), "loss": loss.detach().float().reshape(1)}
    for n, p in pm.named_parameters():
        if "lora_" in n:
            key = n.replace(".default", "")
            out["grad." + key] = p.grad.detach().float().contiguous()
    with torch.no_grad():
        with pm.disable_adapter():
            out["base_logits"] = pm(input_ids=tokens).logits.float()
        merged = pm.merge_and_unload()
        out["merged_logits"] = merged(input_ids=tokens).logits.float()
    # 5 AdamW steps on the adapters alone (torch.optim.AdamW, betas 0.9/0.95, eps 1e-8, weight decay 0.05, no
    # clipping) on the same batch, from the saved adapter reloaded onto a fresh copy of the base
    cls = GPT2LMHeadModel if case == "gpt2" else LlamaForCausalLM
    base2 = cls.from_pretrained(os.path.join(d, "model")).double().eval()
    tm = PeftModel.from_pretrained(base2, os.path.join(d, "adapter"), is_trainable=True).double()
    params = [p for n, p in tm.named_parameters() if "lora_" in n]
    opt = torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.05)
    for _ in range(5):
        opt.zero_grad()
        lg = tm(input_ids=tokens).logits
        torch.nn.functional.cross_entropy(lg[keep], targets_[keep]).backward()
        opt.step()
    for n, p in tm.named_parameters():
        if "lora_" in n:
            out["adamw5." + n.replace(".default", "")] = p.detach().float().contiguous()
    save_file(out, os.path.join(d, "io.safetensors"))
    print(case, "loss", float(loss), "grads", sum(1 for k in out if k.startswith("grad.")))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for c in ("gpt2", "llama"):
        make(c)
