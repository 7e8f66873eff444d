#!/usr/bin/env python3
"""TRL side of the PPO iteration benchmark (bench/rlhf/run.sh runs gptkit's side).

Builds the benchmark's shapes with Hugging Face classes -- a 6-layer / 384-wide / 6-head GPT-2 policy (vocab 512,
context 128) plus a reference policy, a reward model and a value model of the same size (random weights: speed
does not depend on them) -- and runs TRL's PPOTrainer (the PPOv2-style trainer; pinned to trl 0.19.1 by setup_trl.sh) on CPU for a few
iterations. One iteration = P prompts x S copies each (P*S rollouts), up to N new tokens sampled at temperature
1, then E PPO epochs over shuffled minibatches of M rollouts, one AdamW step per minibatch.

Phases are timed by wrapping what PPOTrainer.train() calls (see install_timers):
  rollout    trl.trainer.ppo_trainer.batch_generation   (policy.generate with KV cache; old log-probs come
                                                         from the generation scores, no extra forward)
  scoring    trl.trainer.ppo_trainer.get_reward          (value model over the rollouts + reward model)
  reference  trl.trainer.ppo_trainer.forward on ref_model (reference policy forward)
  update     first policy+value forward of the PPO epochs -> last optimizer.zero_grad() of the iteration
An iteration ends at the trainer's on_step_end callback. The first iteration is dropped as warm-up.

Needs the venv made by bench/rlhf/setup_trl.sh. Usage:
  OMP_NUM_THREADS=2 .venv-trl/bin/python bench/rlhf/trl_ppo.py [--prompts 8] [--samples 4] [--max-new 32] [--iters 3]
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")          # CPU only, like gptkit's run
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")                # nothing is downloaded
os.environ.setdefault("WANDB_DISABLED", "true")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

THINGS = ["cat", "dog", "tree", "house", "river", "book", "song", "car", "bird", "fish", "apple", "city"]
ADJS = ["good", "fine", "old", "bad"]
SPECIALS = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|pad|>"]
VOCAB = 512


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=8, help="distinct prompts per iteration (P)")
    ap.add_argument("--samples", type=int, default=4, help="rollouts per prompt (S)")
    ap.add_argument("--max-new", type=int, default=32, help="response length (N new tokens at most)")
    ap.add_argument("--iters", type=int, default=3, help="PPO iterations; the first is warm-up")
    ap.add_argument("--epochs", type=int, default=4, help="PPO epochs per iteration")
    ap.add_argument("--minibatch", type=int, default=8, help="rollouts per minibatch (one AdamW step each)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2") or 2))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="also print one JSON line per iteration")
    return ap.parse_args()


def make_tokenizer():
    """A byte-level BPE trained on the same corpus run.sh gives gptkit's tokenizer, split like gptkit's pattern
    (a word keeps its leading space and trailing punctuation), with gptkit's chat specials plus a pad token,
    filled up to VOCAB ids with unused special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [f"Tell me about the {t}. The {t} is {a}." for t in THINGS for a in ADJS]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r" ?[^\s]+|\s+"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - len(SPECIALS), special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    n = tok.get_vocab_size()
    tok.add_special_tokens([f"<|unused{i}|>" for i in range(VOCAB - n)])
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|end|>",
                                 pad_token="<|pad|>", padding_side="left")
    return hf


def make_models(tok):
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=VOCAB, n_positions=128, n_embd=384, n_layer=6, n_head=6,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                     num_labels=1)
    policy = GPT2LMHeadModel(cfg)
    ref = GPT2LMHeadModel(cfg)
    reward = GPT2ForSequenceClassification(cfg)
    value = GPT2ForSequenceClassification(cfg)
    for m in (policy, ref):
        m.generation_config.eos_token_id = tok.eos_token_id
        m.generation_config.pad_token_id = tok.pad_token_id
    return policy, ref, reward, value


class Phases:
    """Per-iteration phase clocks fed by the wrappers below."""

    KEYS = ("rollout", "score", "ref", "update")

    def __init__(self, eos_id, prompt_len):
        self.eos_id, self.prompt_len = eos_id, prompt_len
        self.done = []
        self.start_iteration()

    def start_iteration(self):
        self.t = dict.fromkeys(self.KEYS, 0.0)
        self.upd_start = self.upd_end = None
        self.resp_tokens = 0
        self.rollouts = 0
        self.adam_steps = 0
        self.t0 = time.perf_counter()

    def end_iteration(self):
        if self.upd_start is not None and self.upd_end is not None:
            self.t["update"] = self.upd_end - self.upd_start
        rec = dict(self.t)
        rec["wall"] = time.perf_counter() - self.t0
        rec["resp_tokens"] = self.resp_tokens
        rec["rollouts"] = self.rollouts
        rec["adam_steps"] = self.adam_steps
        self.done.append(rec)
        self.start_iteration()

    def count_responses(self, query_responses):
        resp = query_responses[:, self.prompt_len:]
        is_eos = resp == self.eos_id
        has = is_eos.any(1)
        first = is_eos.int().argmax(1) + 1              # length up to and including the first <|end|>
        lens = torch.where(has, first, torch.full_like(first, resp.shape[1]))
        self.resp_tokens += int(lens.sum())
        self.rollouts += resp.shape[0]


def install_timers(trainer, ph):
    """Wrap the module-level helpers PPOTrainer.train() calls, and the optimizer's step/zero_grad."""
    import trl.trainer.ppo_trainer as pt
    from transformers import TrainerCallback

    orig_gen, orig_reward, orig_forward = pt.batch_generation, pt.get_reward, pt.forward
    ref_model = trainer.ref_model

    def batch_generation(*a, **k):
        t = time.perf_counter()
        out = orig_gen(*a, **k)
        ph.t["rollout"] += time.perf_counter() - t
        ph.count_responses(out[0])
        return out

    def get_reward(*a, **k):
        t = time.perf_counter()
        out = orig_reward(*a, **k)
        ph.t["score"] += time.perf_counter() - t
        return out

    def forward(model, *a, **k):
        t = time.perf_counter()
        if model is ref_model:
            out = orig_forward(model, *a, **k)
            ph.t["ref"] += time.perf_counter() - t
            return out
        if ph.upd_start is None:                         # first policy+value forward of the PPO epochs
            ph.upd_start = t
        return orig_forward(model, *a, **k)

    pt.batch_generation, pt.get_reward, pt.forward = batch_generation, get_reward, forward

    opt = trainer.optimizer                              # train() binds this object before its loop
    orig_zero = opt.zero_grad

    def zero_grad(*a, **k):
        out = orig_zero(*a, **k)
        ph.upd_end = time.perf_counter()                 # after the last minibatch's step + zero_grad
        return out

    opt.zero_grad = zero_grad

    inner = getattr(opt, "optimizer", opt)               # the torch AdamW under accelerate's wrapper
    orig_step = inner.step

    def step(*a, **k):                                   # counts the steps that really happen
        ph.adam_steps += 1
        return orig_step(*a, **k)

    inner.step = step

    class IterationClock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            ph.start_iteration()

        def on_step_end(self, args, state, control, **kw):
            ph.end_iteration()

    trainer.add_callback(IterationClock())


def main():
    a = parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    import transformers
    import trl
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    transformers.logging.set_verbosity_error()
    try:
        from trl import PPOConfig, PPOTrainer
    except ImportError:
        sys.exit(f"trl {trl.__version__} has no PPOTrainer; run: bash bench/rlhf/setup_trl.sh")

    tok = make_tokenizer()
    prompts = [f"<|user|>Tell me about the {THINGS[i % len(THINGS)]}.<|end|><|assistant|>" for i in range(a.prompts)]
    ids = [tok(p)["input_ids"] for p in prompts]
    plen = {len(x) for x in ids}
    if len(plen) != 1:
        sys.exit(f"prompts tokenize to different lengths {sorted(plen)}; left padding would change the shapes")
    plen = plen.pop()
    rows = [x for x in ids for _ in range(a.samples)]    # each prompt S times: P*S rollouts per iteration
    batch = len(rows)
    if batch % a.minibatch:
        sys.exit(f"{batch} rollouts do not split into minibatches of {a.minibatch}")
    if plen + a.max_new > 128:
        sys.exit("prompt + response exceeds the 128-token context")
    train_ds = Dataset.from_dict({"input_ids": rows})

    policy, ref, reward, value = make_models(tok)

    out_dir = tempfile.mkdtemp(prefix="trl_ppo_")
    # Batch arithmetic (PPOTrainer.__init__): local_batch_size = per_device_train_batch_size x
    # gradient_accumulation_steps = the rollouts per iteration; local_mini_batch_size = local_batch_size /
    # num_mini_batches. The update loop then walks each minibatch in micro-batches of per_device_train_batch_size
    # (a slice that is never longer than the minibatch), stepping the optimizer every gradient_accumulation_steps
    # micro-batches. per_device_train_batch_size = P*S with gradient_accumulation_steps = 1 therefore gives one
    # micro-batch = one minibatch of M rollouts = one AdamW step, num_mini_batches = P*S/M steps per epoch.
    cfg = PPOConfig(
        output_dir=out_dir,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        num_mini_batches=batch // a.minibatch,
        local_rollout_forward_batch_size=batch,          # one generate() call and one scoring pass per iteration
        total_episodes=batch * a.iters,                  # -> num_total_batches = iters
        num_ppo_epochs=a.epochs,
        response_length=a.max_new,
        temperature=1.0,
        stop_token="eos",                                # stop at <|end|>, like gptkit
        missing_eos_penalty=None,                        # gptkit's run: --missing-end-penalty 0
        num_sample_generations=0,                        # no sample/eval generations
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        bf16=False, fp16=False,                          # fp32 products, as gptkit's run (TRL's config may default
                                                         # to bf16 autocast, which a CPU without bf16 emulates slowly)
        seed=a.seed,
        dataloader_num_workers=0,
    )
    trainer = PPOTrainer(args=cfg, processing_class=tok, model=policy, ref_model=ref, reward_model=reward,
                         value_model=value, train_dataset=train_ds)
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    assert (cfg.batch_size, cfg.local_mini_batch_size, cfg.num_total_batches) == (batch, a.minibatch, a.iters), \
        (cfg.batch_size, cfg.local_mini_batch_size, cfg.num_total_batches)

    ph = Phases(tok.eos_token_id, plen)
    install_timers(trainer, ph)
    _stdout = sys.stdout
    sys.stdout = open(os.devnull, "w")                  # train() prints a banner; keep our output clean
    try:
        trainer.train()
    finally:
        sys.stdout.close()
        sys.stdout = _stdout
        shutil.rmtree(out_dir, ignore_errors=True)

    L = ph.done
    if a.json:
        for i, r in enumerate(L):
            print("trl " + json.dumps({"iter": i, **{k: round(v, 4) if isinstance(v, float) else v
                                                                   for k, v in r.items()}}))
    L = L[1:] if len(L) > 1 else L                       # the first iteration warms caches
    m = {k: sum(r[k] for r in L) / len(L) for k in Phases.KEYS}
    wall = sum(r["wall"] for r in L) / len(L)
    tok_it = sum(r["resp_tokens"] for r in L) / len(L)
    tot = sum(m.values())
    print("trl %s / transformers %s / torch %s, %d threads, CPU; prompt %d tokens; %.1fM params per model"
          % (trl.__version__, transformers.__version__, torch.__version__, torch.get_num_threads(), plen,
             sum(p.numel() for p in policy.parameters()) / 1e6))
    print("trl policy d6 (6L/384), vocab 512: %d prompts x %d samples, <= %d new tokens (mean %.1f), %d epochs, "
          "minibatch %d" % (a.prompts, a.samples, a.max_new, tok_it / batch, a.epochs, a.minibatch))
    print("trl per iteration: " + ", ".join("%s %.2fs (%.0f%%)" % (k, m[k], 100 * m[k] / tot) for k in Phases.KEYS)
          + "; total %.2fs (wall %.2fs incl. GAE, logging, gc)" % (tot, wall))
    print("trl PPO iterations per minute: %.2f; rollout tokens per iteration %.0f" % (60 / tot, tok_it))


if __name__ == "__main__":
    main()
