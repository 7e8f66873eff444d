#!/usr/bin/env python3
"""TRL side of the GRPO iteration benchmark (bench/rlhf/grpo.sh runs gptkit's side first).

Loads the very checkpoint gptkit trains (a GPT-2-shaped model saved by `gptkit pretrain`: config.json,
model.safetensors and tokenizer.json, which transformers reads as they are) and runs TRL's GRPOTrainer on CPU
with the shapes of gptkit's run: P prompts x G samples per generation batch, up to N new tokens at temperature 1,
one pass over the batch in minibatches of M responses (one AdamW step each), KL to the frozen reference
(beta 0.04), the per-response mean loss (loss_type "grpo", the paper's and gptkit's default). The prompts are the
chat-rendered texts gptkit feeds its policy (--prompts-file holds them, one JSON string per line), so both sides
prefill the same tokens.

Phases, per generation batch (one "iteration": a generation batch and the M-sized optimizer steps over it):
  rollout  the policy's generate() (KV cache; TRL's own sampling loop on CPU, no vLLM)
  reward   the reward function (the answer check: the last number of the reply against the prompt's answer)
  update   the rest of the iteration: the reference and old log-probs TRL computes after generating, and the
           forward + backward + AdamW of each minibatch
An iteration ends when the trainer has taken its last optimizer step on the batch (on_step_end). The first is
dropped as warm-up. Prints one summary line in the format grpo.sh parses.

Usage: OMP_NUM_THREADS=2 python bench/rlhf/trl_grpo.py --model DIR --prompts-file F [--group 8] [--batch 8]
       [--max-new 32] [--minibatch 16] [--iters 4]
"""
import argparse
import json
import os
import re
import statistics
import tempfile
import time
import warnings

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")
warnings.filterwarnings("ignore")

import torch  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="gptkit checkpoint directory (HF layout)")
    ap.add_argument("--prompts-file", required=True, help="JSONL: {\"text\": rendered prompt, \"answer\": A}")
    ap.add_argument("--batch", type=int, default=8, help="prompts per generation batch (P)")
    ap.add_argument("--group", type=int, default=8, help="samples per prompt (G)")
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--minibatch", type=int, default=16, help="responses per optimizer step (M)")
    ap.add_argument("--iters", type=int, default=4, help="generation batches; the first is warm-up")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2") or 2))
    return ap.parse_args()


def main():
    a = parse_args()
    torch.set_num_threads(a.threads)
    from datasets import Dataset
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast, TrainerCallback
    import trl
    from trl import GRPOConfig, GRPOTrainer

    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(a.model, "tokenizer.json"))
    end = "<|end|>"
    tok.eos_token = end
    tok.pad_token = "<|tool_result_end|>"          # a special the prompts never use, apart from both stops
    tok.padding_side = "left"
    model = GPT2LMHeadModel.from_pretrained(a.model, torch_dtype=torch.float32)
    # gptkit's rollouts stop at the end of a turn or of a document; so do these
    stops = [tok.convert_tokens_to_ids(end), tok.convert_tokens_to_ids("<|endoftext|>")]
    model.generation_config.eos_token_id = stops
    model.generation_config.pad_token_id = tok.pad_token_id

    rows = [json.loads(l) for l in open(a.prompts_file) if l.strip()]
    n_rows = a.batch * a.iters
    rows = [rows[i % len(rows)] for i in range(n_rows)]
    ds = Dataset.from_list([{"prompt": r["text"], "answer": r["answer"]} for r in rows])

    clock = {"reward": 0.0, "rollout": 0.0, "tokens": 0}

    def reward(completions, answer, **kw):
        t = time.perf_counter()
        out = []
        for c, ans in zip(completions, answer):
            nums = re.findall(r"-?\d+", c)
            out.append(1.0 if nums and nums[-1] == ans else 0.0)
        clock["reward"] += time.perf_counter() - t
        return out

    orig_generate = GPT2LMHeadModel.generate


    def generate(self, *x, **k):
        t = time.perf_counter()
        out = orig_generate(self, *x, **k)
        clock["rollout"] += time.perf_counter() - t
        seqs = out if torch.is_tensor(out) else out.sequences
        prompt = k.get("input_ids", x[0] if x else None)
        resp = seqs[:, prompt.shape[1]:]
        is_eos = (resp == stops[0]) | (resp == stops[1])
        first = is_eos.int().argmax(1) + 1              # up to and including the first <|end|>
        lens = torch.where(is_eos.any(1), first, torch.full_like(first, resp.shape[1]))
        clock["tokens"] += int(lens.sum())
        clock["seqs"] = clock.get("seqs", 0) + resp.shape[0]
        return out

    GPT2LMHeadModel.generate = generate

    steps_per_gen = a.batch * a.group // a.minibatch
    out_dir = tempfile.mkdtemp(prefix="trl-grpo-")
    cfg = GRPOConfig(
        output_dir=out_dir, report_to=[], use_cpu=True, bf16=False, fp16=False, seed=1,
        per_device_train_batch_size=a.minibatch, gradient_accumulation_steps=1,
        num_generations=a.group, steps_per_generation=steps_per_gen, num_iterations=1,
        max_completion_length=a.max_new, temperature=1.0, top_p=1.0, top_k=0,
        beta=0.04, epsilon=0.2, loss_type="grpo", scale_rewards="group",
        learning_rate=1e-5, lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0,
        adam_beta1=0.9, adam_beta2=0.95, adam_epsilon=1e-8, weight_decay=0.0,
        max_steps=steps_per_gen * a.iters, logging_steps=10**6, save_strategy="no",
        dataloader_num_workers=0, shuffle_dataset=False, disable_tqdm=True,
        generation_kwargs={"eos_token_id": stops},   # the trainer's own generation config knows one stop only
    )
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=cfg, train_dataset=ds, processing_class=tok)

    iters = []

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()
            self.k = 0

        def on_step_end(self, args, state, control, **kw):
            self.k += 1
            if self.k % steps_per_gen == 0:
                t = time.perf_counter()
                iters.append({"wall": t - self.t0, "rollout": clock["rollout"], "reward": clock["reward"],
                              "resp_len": clock["tokens"] / max(clock.get("seqs", 0), 1)})
                clock["rollout"] = clock["reward"] = 0.0
                clock["tokens"] = clock["seqs"] = 0
                self.t0 = t

    trainer.add_callback(Clock())
    trainer.train()
    kept = iters[1:] if len(iters) > 1 else iters
    med = {k: statistics.median(x[k] for x in kept) for k in ("wall", "rollout", "reward", "resp_len")}
    med["update"] = med["wall"] - med["rollout"] - med["reward"]
    print("trl %s (transformers %s, torch %s): %d prompts x %d samples, <= %d new tokens, minibatch %d, %d iterations "
          "(median of %d)" % (trl.__version__, __import__("transformers").__version__, torch.__version__, a.batch, a.group,
                              a.max_new, a.minibatch, len(iters), len(kept)))
    print("trl per iteration: rollout %.2fs, reward %.3fs, update %.2fs (ref + old log-probs + %d optimizer steps); total %.2fs; "
          "mean response %.1f tokens" % (med["rollout"], med["reward"], med["update"], steps_per_gen, med["wall"], med["resp_len"]))
    print(json.dumps({"side": "trl", "iters": kept}))


if __name__ == "__main__":
    main()
