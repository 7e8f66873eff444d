#!/usr/bin/env python3
"""Tokenizer benchmark: gptkit vs tiktoken vs HF tokenizers (encode), gptkit tokenize threads,
training time vs sentencepiece and HF tokenizers, compression of a trained 4096 vocabulary.

    python3 bench/tok/bench.py [--gptkit build/gptkit] [--work bench/out/tok] [--quick]

Run from the repository root. Corpora (made under --work, deterministic):
  english.txt  data/corpus/kjv.txt.gz decompressed (KJV, 4.1 MB, one verse per line)
  mixed.txt    ~5 MB synthetic mixed-script text (seeded): KJV lines interleaved with generated words in
               Cyrillic, Greek, Arabic, Devanagari, Hangul, CJK, kana, Thai, accented Latin, emoji, digits
  big.txt      english + mixed repeated to ~90 MB, for `gptkit tokenize` threads
Every encoder's ids are compared with tiktoken's; a mismatch is reported. Peers run single-threaded
(TOKENIZERS_PARALLELISM=false, RAYON_NUM_THREADS=1) for the encode comparison."""
import argparse, gzip, json, os, random, subprocess, sys, time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "ref"))
from gen_tok_vectors import local_encoding  # noqa: E402

SPECIALS = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|tool_call|>",
            "<|tool_call_end|>", "<|tool_result|>", "<|tool_result_end|>"]


def make_corpora(work):
    os.makedirs(work, exist_ok=True)
    eng = os.path.join(work, "english.txt")
    if not os.path.exists(eng):
        with gzip.open("data/corpus/kjv.txt.gz", "rb") as f, open(eng, "wb") as g:
            g.write(f.read())
    mixed = os.path.join(work, "mixed.txt")
    if not os.path.exists(mixed):
        rng = random.Random(1234)
        kjv = open(eng, encoding="utf-8").read().split("\n")
        ranges = {"cyrillic": (0x430, 0x44F), "greek": (0x3B1, 0x3C9), "arabic": (0x628, 0x64A),
                  "devanagari": (0x915, 0x939), "hangul": (0xAC00, 0xD7A3), "cjk": (0x4E00, 0x62FF),
                  "kana": (0x3041, 0x3096), "thai": (0xE01, 0xE2E), "latin": (0xE0, 0xFF)}
        emoji = ["\U0001F600", "\U0001F44D", "\u2764\ufe0f", "\U0001F680", "\U0001F468\u200d\U0001F4BB", "\U0001F389"]
        lex = {k: ["".join(chr(rng.randint(a, b)) for _ in range(rng.randint(1, 3 if k in ("cjk", "hangul") else 8)))
                   for _ in range(3000)] for k, (a, b) in ranges.items()}
        out, size = [], 0
        while size < 5_000_000:
            r = rng.random()
            if r < 0.35:
                line = rng.choice(kjv)
            else:
                k = rng.choice(list(lex))
                sep = "" if k in ("cjk", "kana", "thai") else " "
                words = [rng.choice(lex[k]) for _ in range(rng.randint(3, 25))]
                if rng.random() < 0.3:
                    words.insert(rng.randrange(len(words)), rng.choice(emoji))
                if rng.random() < 0.3:
                    words.insert(rng.randrange(len(words)), str(rng.randint(0, 10 ** rng.randint(1, 8))))
                line = sep.join(words) + rng.choice([".", "。", "!", "?", ",", ""])
            out.append(line)
            size += len(line.encode()) + 1
        open(mixed, "w", encoding="utf-8").write("\n".join(out) + "\n")
    big = os.path.join(work, "big.txt")
    if not os.path.exists(big):
        e, m = open(eng, "rb").read(), open(mixed, "rb").read()
        with open(big, "wb") as g:
            for _ in range(10):
                g.write(e); g.write(m)
    return eng, mixed, big


def best_of(fn, n=3):
    best, res = 1e30, None
    for _ in range(n):
        t0 = time.perf_counter(); res = fn(); best = min(best, time.perf_counter() - t0)
    return best, res


def gk(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, check=True, **kw)


def have(mod):
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


def encode_bench(gkbin, files, reps):
    tt = local_encoding("gpt2")
    hf = None
    if have("tokenizers"):
        from tokenizers import Tokenizer, models, pre_tokenizers
        hf = Tokenizer(models.BPE.from_file("data/vocab/gpt2/encoder.json", "data/vocab/gpt2/vocab.bpe"))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    rows = []
    for path in files:
        data = open(path, "rb").read()
        text = data.decode()
        mb = len(data) / 1e6
        t_tt, ids_tt = best_of(lambda: tt.encode_ordinary(text), reps)
        t_hf, ids_hf = best_of(lambda: hf.encode(text).ids, min(reps, 2)) if hf else (float("nan"), None)
        r = json.loads(gk([gkbin, "tokenizer", "bench", "--tokenizer", "data/vocab/r50k_base.tiktoken",
                           "--input", path, "--repeat", str(reps)]).stdout)
        ids_gk = [int(x) for x in gk([gkbin, "tokenizer", "encode", "--tokenizer", "data/vocab/r50k_base.tiktoken",
                                      "--ids"], input=text).stdout.split()]
        rows.append({"file": os.path.basename(path), "MB": round(mb, 2), "tokens": len(ids_tt),
                     "gptkit_MBps": round(r["mb_per_s"], 1), "tiktoken_MBps": round(mb / t_tt, 1),
                     "hf_MBps": round(mb / t_hf, 1), "gptkit_vs_tiktoken": round(r["mb_per_s"] / (mb / t_tt), 2),
                     "gptkit_ids_exact": ids_gk == ids_tt, "hf_ids_exact": ids_hf == ids_tt})
    return rows


def tokenize_bench(gkbin, big, work):
    rows = []
    ncpu = os.cpu_count() or 1
    for th in sorted({1, 2, ncpu}):
        env = dict(os.environ, OMP_NUM_THREADS=str(th))
        t0 = time.perf_counter()
        r = subprocess.run([gkbin, "tokenize", "--tokenizer", "data/vocab/r50k_base.tiktoken", "--input", big,
                            "--out-dir", os.path.join(work, "shards"), "--val-fraction", "0.01"],
                           capture_output=True, text=True, env=env, check=True)
        wall = time.perf_counter() - t0
        mb = os.path.getsize(big) / 1e6
        rows.append({"threads": th, "MB": round(mb, 1), "wall_s": round(wall, 2), "MBps_wall": round(mb / wall, 1),
                     "log": r.stderr.strip().splitlines()[-1]})
    return rows


def train_bench(gkbin, eng, work, vocabs):
    rows = []
    for v in vocabs:
        t_gk, _ = best_of(lambda: gk([gkbin, "tokenizer", "train", "--input", eng, "--vocab-size", str(v), "-q",
                                      "--out", os.path.join(work, "gk%d" % v)]), 3)

        def sp():
            import sentencepiece as spm
            spm.SentencePieceTrainer.train(input=eng, model_prefix=os.path.join(work, "sp%d" % v), vocab_size=v,
                                           model_type="bpe", minloglevel=2, hard_vocab_limit=False)
        t_sp = best_of(sp, 1)[0] if have("sentencepiece") else float("nan")

        def hf(threads):
            from tokenizers import Tokenizer, models, pre_tokenizers, trainers
            os.environ["RAYON_NUM_THREADS"] = str(threads)
            tok = Tokenizer(models.BPE())
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tr = trainers.BpeTrainer(vocab_size=v, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                     special_tokens=SPECIALS, show_progress=False)
            tok.train([eng], tr)
        t_hf = best_of(lambda: hf(os.cpu_count() or 1), 1)[0] if have("tokenizers") else float("nan")
        rows.append({"vocab": v, "gptkit_s": round(t_gk, 3), "sentencepiece_s": round(t_sp, 3),
                     "hf_tokenizers_s": round(t_hf, 3), "hf_threads": os.cpu_count()})
    return rows


def compression(gkbin, eng, work):
    if have("sentencepiece"):
        import sentencepiece as spm
    data = open(eng, "rb").read()
    cut = int(len(data) * 0.9)
    cut = data.index(b"\n", cut) + 1
    tr, he = os.path.join(work, "c_train.txt"), os.path.join(work, "c_held.txt")
    open(tr, "wb").write(data[:cut]); open(he, "wb").write(data[cut:])
    held = data[cut:].decode()
    rows = []
    for pat in ["gptkit", "cl100k", "gpt2"]:
        out = os.path.join(work, "comp_" + pat)
        gk([gkbin, "tokenizer", "train", "--input", tr, "--vocab-size", "4096", "--pattern", pat, "-q", "--out", out])
        n = len(gk([gkbin, "tokenizer", "encode", "--tokenizer", out, "--ids"], input=held).stdout.split())
        rows.append({"tokenizer": "gptkit BPE 4096, pattern " + pat, "tokens": n,
                     "bytes_per_token": round(len(data[cut:]) / n, 4), "lossless": True})
    for bf in ([False, True] if have("sentencepiece") else []):
        spm.SentencePieceTrainer.train(input=tr, model_prefix=os.path.join(work, "csp"), vocab_size=4096,
                                       model_type="bpe", minloglevel=2, byte_fallback=bf)
        sp = spm.SentencePieceProcessor(model_file=os.path.join(work, "csp.model"))
        ids = sp.encode(held)
        rows.append({"tokenizer": "sentencepiece BPE 4096" + (" byte_fallback" if bf else " (defaults)"),
                     "tokens": len(ids), "bytes_per_token": round(len(data[cut:]) / len(ids), 4),
                     "lossless": sp.decode(ids) == held})
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gptkit", default="build/gptkit")
    ap.add_argument("--work", default="bench/out/tok")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, no 90 MB tokenize run")
    ap.add_argument("--only", default="encode,tokenize,train,compression")
    ap.add_argument("--json-out", help="also write the results here after every section")
    a = ap.parse_args()
    eng, mixed, big = make_corpora(a.work)
    res = {"machine": subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo; nproc"],
                                     capture_output=True, text=True).stdout.strip().replace("\n", ", "),
           "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    only = a.only.split(",")

    def save():
        if a.json_out:
            with open(a.json_out, "w") as f:
                json.dump(res, f, indent=1, ensure_ascii=False)
    if "compression" in only:
        res["compression_heldout_kjv"] = compression(a.gptkit, eng, a.work); save()
    if "encode" in only:
        res["encode_single_thread_gpt2"] = encode_bench(a.gptkit, [eng, mixed], 2 if a.quick else 5); save()
    if "train" in only:
        res["train"] = train_bench(a.gptkit, eng, a.work, [4096, 16384]); save()
    if "tokenize" in only and not a.quick:
        res["tokenize_threads"] = tokenize_bench(a.gptkit, big, a.work); save()
    print(json.dumps(res, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
