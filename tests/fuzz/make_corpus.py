#!/usr/bin/env python3
"""Writes the fuzzers' generated seeds (OUTDIR/NAME/): small valid inputs of each parser, built from the repository's
fixtures, so libFuzzer starts from the formats' real shapes. Standard library only:
    python3 tests/fuzz/make_corpus.py OUTDIR
tests/cli/fuzz.sh runs it into a temporary directory on every run (generated files, binary ones among them, are not
committed); tests/fuzz/corpus/NAME holds the hand-written seeds beside them."""
import base64, json, os, struct, sys

if len(sys.argv) != 2:
    sys.exit("usage: make_corpus.py OUTDIR")
C = sys.argv[1]
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def put(name, data):
    path = os.path.join(C, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, meta=None):
    hdr, off, blob = {}, 0, b""
    for name, (dtype, shape, raw) in tensors.items():
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blob += raw
    if meta:
        hdr["__metadata__"] = meta
    h = json.dumps(hdr).encode()
    return struct.pack("<Q", len(h)) + h + blob


put("safetensors/f32.safetensors", safetensors({"a": ("F32", [2, 3], struct.pack("<6f", *range(6)))}, {"format": "pt"}))
put("safetensors/mixed.safetensors", safetensors({"h": ("F16", [4], struct.pack("<4e", 1, 2, 3, 4)),
                                                  "b": ("BF16", [2], b"\x80\x3f\x00\x40"),
                                                  "i": ("I32", [1], b"\x01\0\0\0")}))
put("safetensors/empty.safetensors", safetensors({}))

# llm.c shard: 256 int32 header (magic, version, token count), then uint16 (v1) or uint32 (v2) ids
put("shard/v1.bin", struct.pack("<256i", *([20240520, 1, 10] + [0] * 253)) + struct.pack("<10H", *range(10)))
put("shard/v2.bin", struct.pack("<256i", *([20240520, 2, 5] + [0] * 253)) + struct.pack("<5I", 1, 70000, 3, 4, 5))

# tokenizer: first byte 0 = a bare rank file, 1 = our saved pair (ranks NUL json)
ranks = "\n".join([base64.b64encode(bytes([i])).decode() + " " + str(i) for i in range(256)] +
                  [base64.b64encode(b"he").decode() + " 256", base64.b64encode(b"hel").decode() + " 257"]) + "\n"
saved = json.load(open(os.path.join(TESTS, "fixtures", "tok", "kjv4k.json")))
saved["name"], saved["special_tokens"] = "tiny", {"<|endoftext|>": 258, "<|end|>": 259}
put("tokenizer/ranks", b"\0" + ranks.encode())
put("tokenizer/pair", b"\x01" + ranks.encode() + b"\0" + json.dumps(saved).encode())

put("jsonl/chat.json", '{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"What is 2+2?"},'
    '{"role":"assistant","content":"<|tool_call|>calc 2+2<|tool_call_end|>"},{"role":"tool","content":"4"},'
    '{"role":"assistant","content":"4"}]}')
put("jsonl/pair.json", '{"prompt":"hi","chosen":"hello","rejected":"go away"}')
put("jsonl/ranked.json", '{"prompt":[{"role":"user","content":"q"}],"ranked":["a","b","c"]}')
put("jsonl/scored.json", '{"prompt":"p","response":"r"}')

put("config/gpt2.json", open(os.path.join(TESTS, "fixtures", "train", "init", "config.json")).read())

# pipeline config: key = value lines with comments
put("pipeconf/fast.conf", "# a comment\nseed = 3\nmodel.n_layer = 2\nmodel.n_head = 2\nmodel.n_embd = 64\n"
    "pretrain.steps = 40\nsft.lr = 1e-3\nprecision = fp32\nrun_dir = runs/x\n")
put("pipeconf/bad.conf", "pretrain.batch = 0\nsft.lr = 1e-3\nsft.lr = 2e-3\n")

# resume state: optimizer moments and every metadata key (the checksum is not the harness model's, which is
# fine: the metadata parsers and range checks run before that check)
n = 64
meta = {"step": "3", "adamw_t": "3", "data_pos": "0 1 2", "rng": "0123456789abcdef 1 2 3",
        "params_checksum": "00000000deadbeef", "opts": '{"lr": 0.001}', "tokens": "96", "last_loss": "2.5",
        "finished": "0"}
put("state/state.safetensors", safetensors({"adamw.m": ("F32", [n], b"\0" * 4 * n),
                                            "adamw.v": ("F32", [n], b"\0" * 4 * n)}, meta))

# serve request bodies: first byte 0 = /v1/chat/completions, 1 = /v1/completions
put("http_request/chat.json", b"\0" + json.dumps({
    "model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Weather?"},
                               {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                               {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    "temperature": 0.5, "top_p": 0.9, "n": 2, "seed": 3, "stop": ["\n"], "max_tokens": 20, "logprobs": True,
    "top_logprobs": 2, "stream": True, "stream_options": {"include_usage": True}}).encode())
put("http_request/parts.json", b"\0" + json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                                                    "response_format": {"type": "text"}}).encode())
put("http_request/completion.json", b"\1" + json.dumps({"prompt": "The capital", "echo": True, "logprobs": 2,
                                                         "max_tokens": 8}).encode())
put("http_request/ids.json", b"\1" + json.dumps({"prompt": [1, 2, 3], "max_tokens": 4}).encode())


# tool calls (as the model writes them between <|tool_call|> and <|tool_call_end|>), calc expressions, and
# `gptkit solve` task lines
put("tools/call.json", '{"name": "calc", "arguments": {"expression": "(123456789 + 2) * 3 / 7 - 2^10"}}')
put("tools/bad_call.json", '{"name": "shell", "arguments": {"cmd": "ls"}}')
put("tools/expr.txt", "-(1.5e3 % 7) ** 2 / (0.25 - 1/3)")
put("tools/task.json", '{"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "What is 2+2?"}], "answer": 4}')
put("tools/reply.txt", "Let me see: 1,234 + 5 = 1,239. The answer is 1239.")

# wordpiece: [mode][flags] then a vocab.txt (0), a tokenizer.json (1) or text (2)
put("wordpiece/vocab", b"\x00\x00" + open(os.path.join(TESTS, "fixtures", "embed", "vocab.txt"), "rb").read())
put("wordpiece/json", b"\x01\x00" + open(os.path.join(TESTS, "fixtures", "embed", "st_mean", "tokenizer.json"), "rb").read())
put("wordpiece/text", b"\x02\x0b" + "Running, the CAFÉ! 中国 [SEP] a\u0301 ﬁ İ Σ 한국\x00\x07 end".encode())

# docs: [jsonl bit][chunk size] then a text file or JSONL
put("docs/text", b"\x00\x10" + b"the river runs.\n\nthe rivers, a b.\n  \nthe " * 5)
put("docs/jsonl", b"\x01\x09" + b'{"text": "the river a b", "id": "x"}\n\n{"text": "the rivers", "id": 3}\n{"text": "b, a."}\n')

# gbnf: grammars (a NUL splits off bytes to feed the matcher); schema: [0] + a JSON Schema, [1] + a regex
put("gbnf/json.gbnf", open(os.path.join(TESTS, "..", "docs", "grammars", "json.gbnf"), "rb").read())
put("gbnf/date.gbnf", 'root ::= date " (" day ")"\ndate ::= [0-9]{4} "-" ("0" [1-9] | "1" [0-2]) "-" [0-3] [0-9]\n'
                      'day ::= "Mon" | "Tue" # comment\n' + "\x00" + '2024-01-31 (Mon)')
put("gbnf/utf8.gbnf", 'root ::= [^a-z\\x00-\\x1f]+ "\\u00e9"? (x | "\\U0001F600"){1,3}\nx ::= [\\[\\]\\-]*\n')
put("gbnf/error.gbnf", 'root ::= a\na ::= a "x" | "("\n')
put("schema/object.json", b"\x00" + json.dumps({"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 8}, "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "tags": {"type": "array", "items": {"enum": ["a", 1, None]}, "minItems": 1, "maxItems": 3},
    "when": {"type": "string", "format": "date-time"}, "code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]+$"},
    "next": {"$ref": "#/$defs/n"}}, "required": ["name"], "additionalProperties": False,
    "$defs": {"n": {"anyOf": [{"type": "null"}, {"$ref": "#"}]}}}).encode())
put("schema/tuple.json", b"\x00" + json.dumps({"type": "array", "prefixItems": [{"const": 1}, {"type": ["string", "null"]}],
    "items": False}).encode())
put("schema/regex.txt", b"\x01" + "^(a|bc)*[^\\s,]{2,4}\\d+(?:x|[[:upper:]])?$".encode())


# GGUF: a tiny LLaMA-shaped header with metadata of several types and two tensors (F32, Q8_0)
def gguf(kvs, tensors, align=32):
    def gstr(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for k, (t, v) in kvs.items():
        out += gstr(k) + struct.pack("<I", t)
        if t == 8:
            out += gstr(v)
        elif t == 4:
            out += struct.pack("<I", v)
        elif t == 6:
            out += struct.pack("<f", v)
        elif t == 9:
            out += struct.pack("<IQ", 8, len(v)) + b"".join(gstr(x) for x in v)
    blob, infos = b"", b""
    for name, ty, dims, raw in tensors:
        while len(blob) % align:
            blob += b"\0"
        infos += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", ty, len(blob))
        blob += raw
    out += infos
    while len(out) % align:
        out += b"\0"
    return out + blob

q8 = struct.pack("<e", 0.5) + bytes(range(32))
put("gguf/llama.gguf", gguf({"general.architecture": (8, "llama"), "llama.block_count": (4, 1),
                             "llama.embedding_length": (4, 32), "llama.attention.head_count": (4, 2),
                             "llama.feed_forward_length": (4, 64), "llama.rope.freq_base": (6, 10000.0),
                             "tokenizer.ggml.tokens": (9, ["a", "b", "c"])},
                            [("token_embd.weight", 8, [32, 1], q8), ("output_norm.weight", 0, [32], struct.pack("<32f", *range(32)))]))
