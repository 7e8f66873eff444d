"""`gptkit serve` through the official OpenAI Python client (PyPI `openai`): non-streaming and streaming chat,
usage, n > 1 with seeds, stop strings, log-probs, tool calls (and the tool result's follow-up), completions,
models, and errors raised as the client's own exception types. The tiny model served was trained on the
answers checked here (tests/serve/make_data.py). Prints PASS/FAIL lines.

usage: openai_test.py URL      (URL without /v1)
"""
import json
import sys

import openai

FAILED = []


def check(name, ok, detail=""):
    print(("PASS " if ok else "FAIL ") + name)
    if not ok:
        FAILED.append(name)
        print("  " + str(detail)[:600])


def user(q):
    return [{"role": "user", "content": q}]


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def main():
    client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused", max_retries=0, timeout=60)
    r = client.chat.completions.create(model="sft", messages=user("What do bees make?"), temperature=0)
    c = r.choices[0]
    check("openai_chat", c.message.content == "Bees make honey." and c.finish_reason == "stop" and
          r.object == "chat.completion", r)
    check("openai_usage", r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0 and
          r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, r.usage)

    parts, last, finish = [], None, None
    for ch in client.chat.completions.create(model="sft", messages=user("Who wrote Hamlet?"), temperature=0,
                                             stream=True, stream_options={"include_usage": True}):
        last = ch
        if ch.choices:
            parts.append(ch.choices[0].delta.content or "")
            finish = ch.choices[0].finish_reason or finish
    check("openai_stream", "".join(parts) == "Hamlet was written by Shakespeare." and finish == "stop", parts)
    check("openai_stream_usage", last is not None and last.usage is not None and last.usage.completion_tokens > 0, last)

    kw = dict(model="sft", messages=user("Which planet is red?"), n=3, seed=11, temperature=1.0, max_tokens=10)
    a = [x.message.content for x in client.chat.completions.create(**kw).choices]
    b = [x.message.content for x in client.chat.completions.create(**kw).choices]
    check("openai_n_seed", len(a) == 3 and a == b, (a, b))

    r = client.chat.completions.create(model="sft", messages=user("What is the capital of France?"), temperature=0,
                                       stop=["France"])
    check("openai_stop", r.choices[0].message.content == "The capital of " and r.choices[0].finish_reason == "stop", r.choices[0])

    r = client.chat.completions.create(model="sft", messages=user("What do bees make?"), temperature=0,
                                       logprobs=True, top_logprobs=1)
    lp = r.choices[0].logprobs.content
    check("openai_logprobs", lp and "".join(t.token for t in lp) == r.choices[0].message.content and
          all(t.logprob <= 0 for t in lp) and all(t.top_logprobs for t in lp), r.choices[0].logprobs)

    msgs = user("Weather in Paris?")
    r = client.chat.completions.create(model="sft", messages=msgs, tools=TOOLS, temperature=0)
    c = r.choices[0]
    calls = c.message.tool_calls or []
    ok = (c.finish_reason == "tool_calls" and len(calls) == 1 and calls[0].function.name == "get_weather" and
          json.loads(calls[0].function.arguments) == {"city": "Paris"})
    check("openai_tool_call", ok, c)
    if ok:
        msgs = msgs + [c.message.model_dump(exclude_none=True),
                       {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny, 21 C"}]
        r = client.chat.completions.create(model="sft", messages=msgs, tools=TOOLS, temperature=0)
        check("openai_tool_result_followup", r.choices[0].message.content == "It is sunny in Paris.", r.choices[0])
    parts, tc = [], []
    for ch in client.chat.completions.create(model="sft", messages=user("Weather in Paris?"), tools=TOOLS,
                                             temperature=0, stream=True):
        if ch.choices and ch.choices[0].delta.tool_calls:
            tc += ch.choices[0].delta.tool_calls
    check("openai_tool_call_streamed", len(tc) == 1 and tc[0].function.name == "get_weather", tc)

    # tool_choice "required": the model is started on <|tool_call|>, so even a question it answers in words
    # comes back as a call (without it, the same request gets the words: checked too)
    r = client.chat.completions.create(model="sft", messages=user("What do bees make?"), tools=TOOLS, temperature=0,
                                       tool_choice="required")
    c = r.choices[0]
    check("openai_tool_choice_required", c.finish_reason == "tool_calls" and c.message.tool_calls and
          json.loads(c.message.tool_calls[0].function.arguments) == {"city": "Paris"}, c)
    r = client.chat.completions.create(model="sft", messages=user("What do bees make?"), tools=TOOLS, temperature=0,
                                       tool_choice="none")
    check("openai_tool_choice_none", r.choices[0].message.content == "Bees make honey." and not r.choices[0].message.tool_calls,
          r.choices[0])

    r = client.completions.create(model="sft", prompt="What do bees", max_tokens=4, temperature=0)
    check("openai_completions", r.object == "text_completion" and isinstance(r.choices[0].text, str) and
          r.usage.completion_tokens > 0, r)
    ids = [m.id for m in client.models.list()]
    check("openai_models", ids == ["sft"], ids)
    try:
        client.chat.completions.create(model="sft", messages=user("x"), max_tokens=10 ** 6)
        check("openai_bad_request_error", False, "no error raised")
    except openai.BadRequestError as e:
        check("openai_bad_request_error", e.status_code == 400 and "max_tokens" in str(e), e)
    sys.exit(1 if FAILED else 0)


main()
