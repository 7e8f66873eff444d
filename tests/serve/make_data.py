"""Data for the serve tests' tiny chat model: a tokenizer corpus and SFT conversations (plain answers, and a
tool call the model learns to make when a tool is offered), so the server's answers can be checked. Standard
library only. usage: make_data.py CORPUS.txt TRAIN.jsonl"""
import json, sys

QA = [("What is the capital of France?", "The capital of France is Paris."),
      ("What color is the sky?", "The sky is blue on a clear day."),
      ("How many legs does a spider have?", "A spider has eight legs."),
      ("Who wrote Hamlet?", "Hamlet was written by Shakespeare."),
      ("What do bees make?", "Bees make honey."),
      ("Which planet is red?", "Mars is the red planet.")]
# the system text the server writes for a request with tools (src/serve/api.c tools_text), so the model sees
# at training time what it sees when served
TOOL = {"name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
TOOLS_SYS = ("You can call these tools. To call one, write <|tool_call|>{\"name\": NAME, \"arguments\": {...}}"
             "<|tool_call_end|> and wait for its result.\n" + json.dumps(TOOL, separators=(",", ":")) + "\n")
CALL = '<|tool_call|>{"name":"get_weather","arguments":{"city":"Paris"}}<|tool_call_end|>'

def main():
    corpus, train = sys.argv[1], sys.argv[2]
    with open(train, "w") as f:
        for q, a in QA:
            f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n")
        for _ in range(3):
            f.write(json.dumps({"messages": [{"role": "system", "content": TOOLS_SYS},
                                             {"role": "user", "content": "Weather in Paris?"},
                                             {"role": "assistant", "content": CALL},
                                             {"role": "tool", "content": "sunny, 21 C"},
                                             {"role": "assistant", "content": "It is sunny in Paris."}]}) + "\n")
    with open(corpus, "w") as f:
        for q, a in QA:
            f.write(q + " " + a + "\n")
        f.write(TOOLS_SYS + "Weather in Paris? get_weather city sunny, 21 C It is sunny in Paris.\n")

main()
