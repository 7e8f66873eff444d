#!/usr/bin/env python3
"""Fixtures for gptkit's WordPiece tokenizer and BERT sentence encoder (tests/test_embed.c, tests/cli/rag.sh).

The real all-MiniLM-L6-v2 is not reachable from here (no network beyond PyPI and Debian), so the oracle is
HF's own code on models we make: a WordPiece vocabulary written below, HF tokenizers' BertTokenizerFast built
from it, and tiny random BertModels wrapped as sentence-transformers models (Transformer -> Pooling ->
[Normalize]) and saved with SentenceTransformer.save, so the directory layout (config.json,
model.safetensors, tokenizer.json, vocab.txt, modules.json, 1_Pooling/config.json, sentence_bert_config.json)
is exactly what sentence-transformers publishes.

Writes tests/fixtures/embed/:
  vocab.txt                     the vocabulary
  tok_cases.json                [{"text", "config", "ids"}]: tokenizer cases for three normaliser configs
  st_mean/, st_cls/             two sentence-transformers models (mean pooling + Normalize, max_seq_length 24;
                                CLS pooling, cased tokenizer, no Normalize)
  st_mean.json, st_cls.json     {"lines", "ids", "emb"}: ids and SentenceTransformer.encode output
                                (normalize_embeddings=True for st_mean, False for st_cls)

Run from the repository root:  python3 tests/ref/gen_embed_fixture.py
(torch, transformers, tokenizers, sentence-transformers 5.x+; seeded, deterministic on CPU).
"""
import json
import os
import random
import shutil

import torch
from transformers import BertConfig, BertModel, BertTokenizerFast
from sentence_transformers import SentenceTransformer, models
from tokenizers import BertWordPieceTokenizer

OUT = "tests/fixtures/embed"
random.seed(1234)
torch.manual_seed(1234)

WORDS = """the a an of and in on is was to for with as by at from that this it be are were has had have not
but or which who what when where why how all any some no more most other such only own same so than too very
can will just do does did done he she they we you i me him her them us my your his its our their there here
river city north south east west mountain village king queen capital library museum bridge tower harbor island
forest lake garden school market station castle temple valley desert ocean bay coast road street house
year years day days month people name named born died built founded located known called made found
first second third one two three four five six seven eight nine ten hundred thousand million
question answer model token word text search index document chunk vector embed embedding retrieval
run runs running ran play played playing player jump jumped jumping quick quickly brown fox lazy dog
cafe naive resume hello world good bad new old big small long short high low great little
un ##able ##ing ##ed ##s ##es ##er ##est ##ly ##tion ##ment ##ness ##ful ##less ##ize ##al ##ic ##ous
##a ##b ##c ##d ##e ##f ##g ##h ##i ##j ##k ##l ##m ##n ##o ##p ##q ##r ##s ##t ##u ##v ##w ##x ##y ##z
##0 ##1 ##2 ##3 ##4 ##5 ##6 ##7 ##8 ##9 ##ville ##burg ##ton ##land ##ia ##an ##ian ##ar ##or
café naïve résumé Éire Straße straße σ ς Σ ß İ i̇ ﬁ ##é ##ï é ï à ç ñ ü ö ä
中 国 人 日 本 语 文 字 大 学 東 京 ア イ ウ カ ## ##中 ##国 한 ##국 가 ##나""".split()
CHARS = [chr(c) for c in range(0x21, 0x7F)]
vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
for w in CHARS + WORDS:
    if w not in vocab:
        vocab.append(w)
os.makedirs(OUT, exist_ok=True)
with open(f"{OUT}/vocab.txt", "w", encoding="utf-8") as f:
    f.write("\n".join(vocab) + "\n")

CONFIGS = {
    "uncased": dict(lowercase=True, strip_accents=None),
    "cased": dict(lowercase=False, strip_accents=None),
    "lower_keep_accents": dict(lowercase=True, strip_accents=False),
}


def tokenizer(cfg):
    # HF tokenizers' own BERT pipeline (BertNormalizer, BertPreTokenizer, WordPiece, [CLS] .. [SEP]); wrapped
    # for transformers, whose BertTokenizerFast(vocab_file=...) no longer reads the file in transformers 5
    tk = BertWordPieceTokenizer(f"{OUT}/vocab.txt", **CONFIGS[cfg])
    return BertTokenizerFast(tokenizer_object=tk._tokenizer, unk_token="[UNK]", cls_token="[CLS]",
                             sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]",
                             do_lower_case=CONFIGS[cfg]["lowercase"])


FIXED = [
    "The quick brown fox jumped over the lazy dog.",
    "Hello, world!!! (quickly)... \"quoted\" [brackets] {braces} <angles> a+b=c; x^2 | y~z @home #tag $5 %10 &c",
    "Café naïve résumé — Éire, STRASSE and Straße; ΣΊΣΥΦΟΣ ς σ; İstanbul ﬁne",
    "中国人 日本语文字 東京大学 アイウカ 한국 가나다",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u2003em-space\u3000ideographic",
    "controls\u0000\u0001\u0007\u001f\u007f\u0085\ufffd\u200b\u200d\ufeff end",
    "emoji 😀🎉 and symbols ©®™ € £ ¥ § ¶ † ‡ • … ‰ ′ ″ ‹ › « » ¿ ¡",
    "runs running runner jumpingly unable unplayable playful cityville northburg",
    "a" * 99 + " " + "b" * 100 + " " + "c" * 101,
    "literal [SEP] and [CLS] and [MASK] specials [UNK]",
    "",
    "   ",
    "Combining: e\u0301 a\u0300 n\u0303 o\u0308 e\u0301\u0301 \u0301alone",
    "Hangul 한국어 가 각 힣 and jamo \u1100\u1161",
    "numbers 3.14159 1,000,000 2026-12-07 12:30pm 1st 2nd",
]
POOL = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") * 3 +
        list(" \t\n.,;:!?'\"()[]{}<>-_/\\@#$%^&*+=|~`") +
        list("éèêëàáâäçñüöïîôûÉÈÀÇÑÜÖßøåæœİıΣσςΩωЖжЯя中国人日本語文字한국가アイウカ😀©€…—–“”‘’«»¿¡\u0301\u0308\u00a0\u2003\u200b\u0000\u0007\u0085\ufffd") +
        WORDS)


def random_case(r):
    n = r.randint(1, 40)
    return "".join(r.choice(POOL) if r.random() < 0.7 else " " + r.choice(WORDS) for _ in range(n))


rng = random.Random(99)
texts = FIXED + [random_case(rng) for _ in range(200)]
cases = []
for cfg in CONFIGS:
    tk = tokenizer(cfg)
    for t in texts:
        cases.append({"text": t, "hex": t.encode("utf-8").hex(), "config": cfg, "ids": tk(t, add_special_tokens=True)["input_ids"]})
with open(f"{OUT}/tok_cases.json", "w", encoding="utf-8") as f:
    json.dump(cases, f, ensure_ascii=True, indent=0)

LINES = [t for t in FIXED if "\n" not in t and "\r" not in t and "\u0085" not in t and "\u2028" not in t] + [
    "The library of the north city was built in the year one thousand.",
    "Who founded the museum on the island?",
    "the the the the the the the the the the the the the the the the the the the the the the the the the the the the the the",
    "a much longer line " * 12,
    "x",
]


def make_st(name, pooling, normalize, cased, max_len, seed):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=40, type_vocab_size=2, hidden_act="gelu",
                     layer_norm_eps=1e-12)
    bert = BertModel(cfg, add_pooling_layer=False)
    with torch.no_grad():   # spread the weights so that a wrong op cannot hide behind near-identical outputs
        for p in bert.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    tmp = f"/tmp/gk_embed_{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    bert.save_pretrained(tmp, safe_serialization=True)
    tokenizer("cased" if cased else "uncased").save_pretrained(tmp)
    tr = models.Transformer(tmp, max_seq_length=max_len)
    mods = [tr, models.Pooling(32, pooling_mode=pooling)]
    if normalize:
        mods.append(models.Normalize())
    st = SentenceTransformer(modules=mods, device="cpu")
    d = f"{OUT}/{name}"
    shutil.rmtree(d, ignore_errors=True)
    st.save(d)
    for junk in ("README.md",):
        if os.path.exists(f"{d}/{junk}"):
            os.remove(f"{d}/{junk}")
    st = SentenceTransformer(d, device="cpu")   # reload what we saved: the oracle reads the same files we do
    emb = st.encode(LINES, batch_size=4, normalize_embeddings=normalize, convert_to_numpy=True)
    ids = [st.tokenizer(t, truncation=True, max_length=max_len)["input_ids"] for t in LINES]
    with open(f"{OUT}/{name}.json", "w", encoding="utf-8") as f:
        json.dump({"lines": LINES, "ids": ids, "emb": [[round(float(x), 7) for x in v] for v in emb]}, f,
                  ensure_ascii=True)


make_st("st_mean", "mean", True, False, 24, 7)
make_st("st_cls", "cls", False, True, 40, 8)
print("wrote", OUT)
