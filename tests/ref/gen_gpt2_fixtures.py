#!/usr/bin/env python3
"""Reference fixtures for src/model (and src/optim) from an independent implementation: HF transformers'
GPT2LMHeadModel. Writes tests/fixtures/gpt2/:

  model/config.json, model/model.safetensors   GPT2LMHeadModel.save_pretrained output (fp32) — the C test
                                                loads this with gpt_load, so it also tests the HF-layout reader
  io.safetensors       tokens [B,T] I32, targets [B,T] I32, logits [B,T,V] F32, loss [1] F32 (mean cross-entropy)
  grads.safetensors    d loss / d param for every parameter, named like gptkit's table ("wte.weight",
                       "h.0.attn.c_attn.weight", ...; no "transformer." prefix). wte's gradient includes the
                       tied LM head's contribution.
  adamw.safetensors    "step1.<name>"   parameters after ONE AdamW step from model/ using exactly the fp32
                                        gradients in grads.safetensors (clipped: step1_grad_norm [1] is their
                                        norm) — the well-conditioned optimizer unit test
                       10 AdamW steps on the same batch, starting from model/ (an end-to-end trajectory):
                         losses [10]      loss before step k (losses[0] == io loss)
                         grad_norms [10]  global L2 norm of the gradient before clipping, step k
                         final_loss [1]   loss after the 10th step
                         "<name>" tensors parameters after 10 steps (gptkit names)
                       metadata: lr, beta1, beta2, eps, weight_decay, clip (the hyperparameters, constant lr, no
                       schedule); decay applies to 2-D matrices (wte, c_attn/c_proj/c_fc weights), not to wpe,
                       biases or LayerNorm. Clipping as torch.nn.utils.clip_grad_norm_: g *= min(1, clip /
                       (norm + 1e-6)).
                       Conditioning: the key bias (c_attn.bias[C:2C]) has an exactly zero gradient (it shifts a
                       whole softmax row), so in fp32 its gradient is rounding noise that Adam turns into steps
                       of ~lr; a few weights whose gradient stays near zero (nearly dead GELU units) behave the
                       same. Compare the 10-step params loosely there (tests/test_model.c shows how).

The model's parameters are fp32 (what the checkpoint holds); every reference computation then runs in float64
on those exact values, so the fixtures are the exact answer and the C test's tolerance measures only its own
fp32 rounding. Biases and LayerNorm parameters are randomised (not HF's zeros/ones) so a mix-up between them
cannot pass. Odd sizes on purpose: 2 layers, 3 heads of 8, vocab 97, context 16, T 13 < context.

Run from the repository root:  python3 tests/ref/gen_gpt2_fixtures.py
"""
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "gpt2")
B, T = 2, 13
CFG = dict(n_layer=2, n_head=3, n_embd=24, vocab_size=97, n_positions=16,
           resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
           activation_function="gelu_new", bos_token_id=0, eos_token_id=0)
ADAMW = dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, clip=1.0, steps=10)


def short(name):
    return name[len("transformer."):] if name.startswith("transformer.") else name


def main():
    torch.manual_seed(1234)
    os.makedirs(OUT, exist_ok=True)
    model = GPT2LMHeadModel(GPT2Config(**CFG)).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("wte.weight"):
                p.normal_(0.0, 0.3)          # larger than GPT-2's 0.02 so the logits are far from uniform
            elif name.endswith("wpe.weight"):
                p.normal_(0.0, 0.1)
            elif "ln_" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.normal_(0.0, 0.05)
            else:
                p.normal_(0.0, 0.15)
    mdir = os.path.join(OUT, "model")
    if os.path.isdir(mdir):
        shutil.rmtree(mdir)
    model.save_pretrained(mdir, safe_serialization=True)
    gc = os.path.join(mdir, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)

    gen = torch.Generator().manual_seed(99)
    seq = torch.randint(0, CFG["vocab_size"], (B, T + 1), generator=gen)
    tokens, targets = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()

    m64 = model.double().train()   # dropouts are 0; train() only so autograd is on everywhere
    params = dict(m64.named_parameters())   # tied: lm_head.weight is not listed separately

    def loss_fn():
        logits = m64(input_ids=tokens).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, CFG["vocab_size"]), targets.reshape(-1))
        return logits, loss

    m64.zero_grad()
    logits, loss = loss_fn()
    loss.backward()
    save_file({"tokens": tokens.to(torch.int32), "targets": targets.to(torch.int32),
               "logits": logits.detach().float().contiguous(), "loss": loss.detach().float().reshape(1)},
              os.path.join(OUT, "io.safetensors"), metadata={"B": str(B), "T": str(T)})
    grads = {short(n): p.grad.detach().float().contiguous() for n, p in params.items()}
    save_file(grads, os.path.join(OUT, "grads.safetensors"))
    print(f"loss {loss.item():.6f}, {len(grads)} gradients")

    # One AdamW step from the model's parameters with exactly the fp32 gradients stored in grads.safetensors
    # (so an optimizer test that feeds those grads gets a deterministic, well-conditioned answer).
    a = ADAMW
    step1 = {}
    with torch.no_grad():
        p1 = {n: p.detach().clone() for n, p in params.items()}
        g1 = {n: grads[short(n)].double() for n in params}
    for n in p1:
        p1[n].requires_grad_(True)
        p1[n].grad = g1[n].clone()
    dec1 = [p1[n] for n in p1 if p1[n].dim() == 2 and not n.endswith("wpe.weight")]
    nodec1 = [p1[n] for n in p1 if not (p1[n].dim() == 2 and not n.endswith("wpe.weight"))]
    opt1 = torch.optim.AdamW([{"params": dec1, "weight_decay": a["weight_decay"]},
                              {"params": nodec1, "weight_decay": 0.0}],
                             lr=a["lr"], betas=(a["beta1"], a["beta2"]), eps=a["eps"], foreach=False)
    norm1 = torch.nn.utils.clip_grad_norm_(list(p1.values()), a["clip"])
    opt1.step()
    for n in p1:
        step1["step1." + short(n)] = p1[n].detach().float().contiguous()
    step1["step1_grad_norm"] = torch.tensor([norm1.item()], dtype=torch.float32)

    # AdamW: decay on 2-D matrices (wte is also the LM head), none on wpe, biases, LayerNorm.
    decay = [p for n, p in params.items() if p.dim() == 2 and not n.endswith("wpe.weight")]
    no_decay = [p for n, p in params.items() if not (p.dim() == 2 and not n.endswith("wpe.weight"))]
    a = ADAMW
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a["lr"], betas=(a["beta1"], a["beta2"]), eps=a["eps"], foreach=False)
    losses, norms = [], []
    for _ in range(a["steps"]):
        opt.zero_grad()
        _, l = loss_fn()
        l.backward()
        n = torch.nn.utils.clip_grad_norm_(list(params.values()), a["clip"])
        losses.append(l.item())
        norms.append(n.item())
        opt.step()
    with torch.no_grad():
        _, final = loss_fn()
    out = {short(n): p.detach().float().contiguous() for n, p in params.items()}
    out["losses"] = torch.tensor(losses, dtype=torch.float32)
    out["grad_norms"] = torch.tensor(norms, dtype=torch.float32)
    out["final_loss"] = torch.tensor([final.item()], dtype=torch.float32)
    out.update(step1)
    save_file(out, os.path.join(OUT, "adamw.safetensors"),
              metadata={k: repr(v) for k, v in a.items()})
    print("adamw losses", " ".join(f"{x:.5f}" for x in losses), "final", f"{final.item():.5f}")
    print("grad norms  ", " ".join(f"{x:.4f}" for x in norms))


if __name__ == "__main__":
    main()
