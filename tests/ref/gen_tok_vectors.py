#!/usr/bin/env python3
"""Generates extra tokenizer vectors with tiktoken (the oracle): random multilingual strings, emoji, control
characters, odd whitespace (U+0085, U+FEFF, U+180E, U+3000, ...), long runs of whitespace and digits,
contractions in every case, and random code points from the whole range.

    python3 tests/ref/gen_tok_vectors.py [--n 200] [--seed 1] [--out tests/fixtures/tok]

Writes OUT/gpt2_random.jsonl, OUT/cl100k_base_random.jsonl and OUT/gptkit_random.jsonl (for the tokenizer
trained by gptkit in tests/fixtures/tok/kjv4k.*, whose pattern is gptkit's own) with the same fields as the shared vectors:
name, text, utf8_hex, ids (encode_ordinary), ids_special (encode with allowed_special="all"). tests/test_tok.c
reads them; with --check BIN it instead runs `BIN tokenizer encode` on every case and reports mismatches
(a fuzz run: use a large --n and a fresh --seed)."""
import argparse, json, os, random, subprocess, sys
import tiktoken

POOLS = {
    "ascii": [chr(c) for c in range(0x20, 0x7f)],
    "letters": list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    "digits": list("0123456789") + ["\u0660", "\u0967", "\uff11", "\u00b2", "\u2167", "\u0f33"],
    "space": [" ", " ", " ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\u0085", "\u00a0", "\u1680", "\u2000",
              "\u2009", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\ufeff", "\u180e", "\u200b"],
    "control": [chr(c) for c in list(range(0, 0x20)) + [0x7f] + list(range(0x80, 0xa0))],
    "latin1": [chr(c) for c in range(0xa1, 0x250)],
    "cyrillic": [chr(c) for c in range(0x400, 0x4ff)],
    "greek": [chr(c) for c in range(0x370, 0x3ff)],
    "cjk": [chr(c) for c in range(0x4e00, 0x4e00 + 800)] + [chr(c) for c in range(0x3040, 0x30ff)],
    "hangul": [chr(c) for c in range(0xac00, 0xac00 + 400)],
    "arabic": [chr(c) for c in range(0x600, 0x6ff)],
    "devanagari": [chr(c) for c in range(0x900, 0x97f)],
    "thai": [chr(c) for c in range(0xe01, 0xe5b)],
    "combining": [chr(c) for c in range(0x300, 0x36f)],
    "emoji": ["\U0001F600", "\U0001F44D\U0001F3FD", "\U0001F468\u200d\U0001F469\u200d\U0001F467", "\u2764\ufe0f",
              "\U0001F1FA\U0001F1F8", "\U0001F4A9", "\U0001F9D1\u200d\U0001F4BB", "\u263a", "\U0001FAE0"],
    "contraction": ["'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'ve", "'VE", "'m", "'M", "'ll", "'LL", "'lL",
                    "'d", "'D", "'\u017f", "'", "''", "\u2019s"],
    "special": ["<|endoftext|>", "<|fim_prefix|>", "<|endofprompt|>", "<|endoftext", "<|", "|>", "<|user|>", "<|end|>"],
    "punct": list("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~") + ["\u00bf", "\u2014", "\u2026", "\u00ab", "\u3002"],
}
WORDS = ["the", " the", " quick", " brown", "fox", " jumps", "over", " lazy", "dog", "Hello", " world",
         " naïve", " café", " Straße", " Москва", " Ελλάδα", " 東京", " 서울", " مرحبا", " नमस्ते", " ไทย"]


def local_encoding(name, root="data/vocab"):
    """tiktoken's gpt2 / cl100k_base built from the rank files in data/vocab (no network needed), or, for a
    path, a tokenizer saved by `gptkit tokenizer train` (PATH.tiktoken + PATH.json) run by tiktoken."""
    from tiktoken.load import load_tiktoken_bpe
    if name not in ("gpt2", "cl100k_base"):
        meta = json.load(open(name + ".json"))
        return tiktoken.Encoding(name=meta["name"], pat_str=meta["pattern"],
                                 mergeable_ranks=load_tiktoken_bpe(name + ".tiktoken"),
                                 special_tokens=meta["special_tokens"])
    if name == "gpt2":
        return tiktoken.Encoding(
            name="gpt2", mergeable_ranks=load_tiktoken_bpe(os.path.join(root, "r50k_base.tiktoken")),
            pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
            special_tokens={"<|endoftext|>": 50256})
    return tiktoken.Encoding(
        name="cl100k_base", mergeable_ranks=load_tiktoken_bpe(os.path.join(root, "cl100k_base.tiktoken")),
        pat_str=r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+""",
        special_tokens={"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                        "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276})


def any_cp(rng):
    while True:
        c = rng.randrange(0x110000)
        if not 0xD800 <= c < 0xE000:
            return chr(c)


def random_text(rng, kind):
    if kind == "ws_run":
        return rng.choice(["", "a", "x "]) + rng.choice(POOLS["space"]) * rng.randrange(1, 300) + rng.choice(["", "b", "1", "!", " c"])
    if kind == "digit_run":
        return rng.choice(["", "x", " "]) + "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 400))) + rng.choice(["", " ", "a", "."])
    if kind == "letter_run":
        return "".join(rng.choice("ab") for _ in range(rng.randrange(50, 600)))
    if kind == "any":
        return "".join(any_cp(rng) for _ in range(rng.randrange(1, 40)))
    parts = []
    for _ in range(rng.randrange(1, 40)):
        r = rng.random()
        if r < 0.3:
            parts.append(rng.choice(WORDS))
        elif r < 0.35:
            parts.append(any_cp(rng))
        else:
            pool = POOLS[rng.choice(list(POOLS))]
            parts.append("".join(rng.choice(pool) for _ in range(rng.randrange(1, 6))))
    return "".join(parts)


KINDS = ["mixed"] * 7 + ["ws_run", "digit_run", "letter_run", "any"]


def cases(n, seed):
    rng = random.Random(seed)
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        yield "%s_%d" % (kind, i), random_text(rng, kind)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="tests/fixtures/tok")
    ap.add_argument("--check", help="gptkit binary: compare instead of writing")
    a = ap.parse_args()
    for encname, fname, vocab in [("gpt2", "gpt2_random.jsonl", "data/vocab/r50k_base.tiktoken"),
                                  ("cl100k_base", "cl100k_base_random.jsonl", "data/vocab/cl100k_base.tiktoken"),
                                  # a tokenizer trained by gptkit with its own split pattern (checks that
                                  # pattern's splitter against tiktoken running the same regex)
                                  ("tests/fixtures/tok/kjv4k", "gptkit_random.jsonl", "tests/fixtures/tok/kjv4k.json")]:
        enc = local_encoding(encname)
        rows, bad = [], 0
        for name, text in cases(a.n, a.seed):
            ids = enc.encode_ordinary(text)
            ids_sp = enc.encode(text, allowed_special="all")
            if a.check:
                for flag, want in (([], ids), (["--allow-special"], ids_sp)):
                    out = subprocess.run([a.check, "tokenizer", "encode", "--tokenizer", vocab, "--ids"] + flag,
                                         input=text.encode(), capture_output=True, check=True).stdout
                    got = [int(x) for x in out.split()]
                    if got != want:
                        bad += 1
                        print("MISMATCH", encname, name, repr(text)[:200], flag, file=sys.stderr)
                continue
            row = {"name": name, "text": text, "utf8_hex": text.encode().hex(), "ids": ids}
            if ids_sp != ids:
                row["ids_special"] = ids_sp
            rows.append(row)
        if a.check:
            print("%s: %d cases, %d mismatches" % (os.path.basename(encname), a.n, bad))
        else:
            with open(os.path.join(a.out, fname), "w") as f:
                for r in rows:
                    f.write(json.dumps(r, ensure_ascii=True) + "\n")


if __name__ == "__main__":
    main()
