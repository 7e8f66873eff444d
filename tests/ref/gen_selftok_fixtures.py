#!/usr/bin/env python3
"""Self-contained checkpoints (issue 13 item 7): what HF transformers makes of the tokenizer files gptkit writes into
every checkpoint. For each source tokenizer, `gptkit tokenizer export-hf` writes tokenizer.json +
tokenizer_config.json + generation_config.json (the files train_save_model puts beside the weights); then
AutoTokenizer.from_pretrained(DIR) encodes awkward texts and apply_chat_template(messages, tokenize=True,
add_generation_prompt=True) renders conversations. The ids go to tests/fixtures/selftok/expected.json, which
tests/cli/tok.sh compares with `gptkit tokenizer encode` / `gptkit tokenizer render` on the same files (no Python).

  python3 tests/ref/gen_selftok_fixtures.py            write the fixture (needs transformers)
  python3 tests/ref/gen_selftok_fixtures.py --check    compare live, write nothing (exit 0 ok, 1 differ, 77 no transformers)

Run from the repository root with GPTKIT (default build/gptkit) built.
"""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
GK = os.environ.get("GPTKIT", os.path.join(ROOT, "build", "gptkit"))
OUT = os.path.join(ROOT, "tests", "fixtures", "selftok", "expected.json")

# name -> (source tokenizer for --tokenizer, --vocab-size of the model it would go with; 0 = room for anything)
SOURCES = {
    "gpt2": ("gpt2", 50304),                                   # GPT-2's vocabulary + gptkit's chat tokens
    "kjv4k": ("tests/fixtures/tok/kjv4k", 4096),                # a gptkit-trained BPE (gptkit pattern, chat specials)
    "llama3": ("tests/fixtures/hftok/llama3", 0),               # LLaMA 3's split, LLaMA 3 chat format
    "qwen2": ("tests/fixtures/hftok/qwen2", 0),                 # Qwen2's split, ChatML
    "smollm": ("tests/fixtures/hftok/smollm", 0),               # digits + GPT-2 split, ChatML
}

TEXTS = [
    "In the beginning God created the heaven and the earth.",
    "Hello, world! It's 3:45pm -- don't panic; we'll see... (maybe) [ok] {x: 1} a/b\\c @user #tag",
    "1234567890 3.14159 1,000,000 -42 0x1F 2024-01-01 12345abc 7th",
    "naïve café résumé Ünïcödé — “quotes” ‘single’ «guillemets» ñ ß ø",
    "日本語のテキスト、中文文本。한국어 텍스트 🙂👍🏽 Ω≈ç√∫",
    "   leading and trailing   \t\ttabs\n\n\nnewlines\r\n\r\nCRLF    \n  ",
    "<|endoftext|>special<|im_start|>user\nhi<|im_end|><|end|><|user|><|begin_of_text|><|eot_id|>",
    "word\nWord\n word.\n\"quoted\"\n'apostrophe's\nYOU'RE I'M THEY'LL",
    "",
]

CHATS = [
    [{"role": "user", "content": "Hello there!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"},
     {"role": "assistant", "content": "4."}, {"role": "user", "content": "And 3+3?"}],
    [{"role": "user", "content": "  naïve café — 日本語 🙂\n\n  spaced 123  "}],
    [{"role": "user", "content": "What is 12*7?"},
     {"role": "assistant", "content": "<|tool_call|>calc 12*7<|tool_call_end|>"},
     {"role": "tool", "content": "84"}, {"role": "assistant", "content": "It is 84."}],
]


def export(name, d):
    src, vocab = SOURCES[name]
    subprocess.run([GK, "tokenizer", "export-hf", "--tokenizer", src, "--out", d, "--vocab-size", str(vocab),
                    "--n-ctx", "512"], check=True, cwd=ROOT)


def hf_ids(d):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(d)
    texts = [{"text": t, "ids": list(tok(t)["input_ids"])} for t in TEXTS]
    chats = []
    for m in CHATS:
        ids = tok.apply_chat_template(m, tokenize=True, add_generation_prompt=True, return_dict=False)
        chats.append({"messages": m, "ids": list(ids)})
    return {"texts": texts, "chats": chats, "model_max_length": tok.model_max_length,
            "bos_token": tok.bos_token, "eos_token": tok.eos_token}


def gk_ids(d):
    texts = []
    for t in TEXTS:
        r = subprocess.run([GK, "tokenizer", "encode", "--tokenizer", d, "--ids"], input=t.encode(),
                           capture_output=True, check=True)
        texts.append([int(x) for x in r.stdout.split()])
    chats = []
    for m in CHATS:
        r = subprocess.run([GK, "tokenizer", "render", "--tokenizer", d], input=json.dumps({"messages": m}).encode(),
                           capture_output=True, check=True)
        chats.append([int(x) for x in r.stdout.split()])
    return texts, chats


def main():
    check = "--check" in sys.argv
    try:
        import transformers  # noqa: F401
    except ImportError:
        print("SKIP: transformers is not installed")
        sys.exit(77)
    out, bad = {}, 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in SOURCES:
            d = os.path.join(tmp, name)
            export(name, d)
            want = hf_ids(d)
            texts, chats = gk_ids(d)
            for c, got in zip(want["texts"], texts):
                if c["ids"] != got:
                    bad += 1
                    print(f"{name}: text {c['text']!r}: HF {c['ids']} gptkit {got}")
            for c, got in zip(want["chats"], chats):
                if c["ids"] != got:
                    bad += 1
                    print(f"{name}: chat {c['messages']!r}: HF {c['ids']} gptkit {got}")
            out[name] = {"source": SOURCES[name][0], "vocab_size": SOURCES[name][1], **want}
    if bad:
        print(f"{bad} differences")
        sys.exit(1)
    if check:
        print("ok: transformers reads gptkit's tokenizer files as gptkit does")
        return
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump({"texts": TEXTS, "chats": CHATS, "kinds": out}, f, ensure_ascii=False, indent=1)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
