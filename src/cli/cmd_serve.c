/* cmd_serve.c: gptkit serve — the OpenAI-compatible HTTP server and its web chat page (src/serve/). */
#include "cli/cli.h"
#include "core/core.h"
#include "serve/serve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
"usage: gptkit serve --model DIR [--port P] [--host H] [--api-key K] [--slots N] [options]\n"
"\n"
"Serves a chat model over HTTP with OpenAI's API, so any OpenAI client or tool can use it, and a chat page\n"
"at http://HOST:PORT/ for a browser. Prints 'listening on http://HOST:PORT' once ready; SIGTERM or Ctrl-C\n"
"stops it gracefully (no new requests; running ones get --grace seconds, then are cancelled).\n"
"\n"
"Routes:\n"
"  POST /v1/chat/completions  messages, temperature, top_p, max_tokens / max_completion_tokens, stop, n, seed,\n"
"                             presence/frequency_penalty, logprobs, top_logprobs, stream (SSE, ends with\n"
"                             'data: [DONE]'), stream_options.include_usage, tools / tool_choice\n"
"  POST /v1/completions       prompt (a string or token ids), echo, logprobs, and the sampling fields above\n"
"  POST /v1/embeddings        input (a string or an array of strings), encoding_format float|base64 — with\n"
"                             --embedder only\n"
"  GET  /v1/models            the model being served     GET /health    200 ok, 503 while stopping\n"
"  GET  /metrics              Prometheus text: requests, tokens, queue depth, slot use, latency histograms\n"
"  GET  /                     the chat page\n"
"Concurrent requests share decode steps (continuous batching) over --slots KV slots; up to --queue more wait,\n"
"beyond that the answer is 429. A client that disconnects frees its slots at once. Errors use OpenAI's shape.\n"
"\n"
"  --model DIR           checkpoint directory (an SFT or RLHF chat model; its recorded tokenizer is used), a .gguf\n"
"                        file, or a LoRA adapter directory (its recorded base with the adapter on)\n"
"  --adapter DIR         a LoRA adapter (PEFT layout) on top of --model, unmerged (docs/lora.md); over a .gguf\n"
"                        base the base stays quantized\n"
"  --name NAME           the model id /v1/models lists and answers carry (default: DIR's last component)\n"
"  --tokenizer PATH      override the tokenizer recorded in the checkpoint\n"
"  --embedder DIR        a sentence-embedding model (all-MiniLM-L6-v2 and kin, as gptkit embed takes):\n"
"                        serves POST /v1/embeddings\n"
"  --retrieve INDEX.db   a retrieval index (gptkit index build): each chat request's last user message gets\n"
"                        the index's top chunks before it, with their sources (as chat --retrieve)\n"
"  --retrieve-k K        chunks at most (default 3)\n"
"  --retrieve-budget N   chat-model tokens the chunks may take (default: a quarter of the context)\n"
"  --host H              address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)\n"
"  --port P              TCP port (default 8080; 0 picks a free one, printed in the ready line)\n"
"  --api-key K           require 'Authorization: Bearer K' on /v1/* and /metrics (401 otherwise);\n"
"                        also read from $GPTKIT_API_KEY\n"
"  --slots N             sequences decoded together (default 8); n > 1 takes n slots\n"
"  --queue N             requests waiting for a slot before 429 (default 64)\n"
"  --no-prefix-cache     prefill every prompt whole; by default a request takes the free slot whose cache holds\n"
"                        the longest prefix of its prompt (a shared system prompt, the conversation so far) and\n"
"                        runs only the rest (usage.prompt_tokens_details.cached_tokens says how many it reused)\n"
"  --max-body BYTES      largest request body (default 1048576) -> 413\n"
"  --max-header BYTES    memory for a request's headers (default 32768); larger headers are refused\n"
"  --max-depth N         deepest JSON nesting in a body (default 32) -> 400\n"
"  --max-messages N      most messages in a chat request (default 256) -> 400\n"
"  --max-conns N         open connections (default 256); more are refused\n"
"  --timeout S           a request's generation time limit (default 300); then it ends with 'length'\n"
"  --read-timeout S      a whole request must arrive within S seconds of the connection opening or of the\n"
"                        previous answer on it (default 10): slow clients are cut off\n"
"  --idle-timeout S      idle keep-alive connections are closed after S seconds (default 30)\n"
"  --grace S             on SIGTERM, in-flight requests may finish for S seconds (default 10)\n"
"  -q, --quiet           no log lines on stderr\n"
"  --step-delay MS       testing only: pause after every decode step (to watch queues, cancels, shutdown)\n"
"\n"
"Examples (docs/serve.md has more):\n"
"  gptkit serve --model runs/demo/sft --port 8080\n"
"  curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\\n"
"       -d '{\"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'\n";

static size_t pos_size(cli_args *a, const char *f, long lo) {
    long v = cli_long(a, f);
    if (v < lo) cli_usage_error(a, "%s must be >= %ld", f, lo);
    return (size_t)v;
}

static double pos_secs(cli_args *a, const char *f) {
    double v = cli_double(a, f);
    if (!(v > 0)) cli_usage_error(a, "%s must be > 0 seconds", f);
    return v;
}

int cmd_serve(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv, USAGE);
    serve_opts o;
    serve_opts_default(&o);
    o.api_key = getenv("GPTKIT_API_KEY");
    const char *f;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--model")) o.model_dir = cli_str(&a, f);
        else if (cli_is(f, "--name")) o.model_name = cli_str(&a, f);
        else if (cli_is(f, "--adapter")) o.adapter = cli_str(&a, f);
        else if (cli_is(f, "--tokenizer")) o.tok_path = cli_str(&a, f);
        else if (cli_is(f, "--embedder")) o.embedder = cli_str(&a, f);
        else if (cli_is(f, "--retrieve")) o.retrieve = cli_str(&a, f);
        else if (cli_is(f, "--retrieve-k")) {
            o.retrieve_k = pos_size(&a, f, 1);
            if (o.retrieve_k > 100) cli_usage_error(&a, "--retrieve-k must be in [1, 100]");
        }
        else if (cli_is(f, "--retrieve-budget")) o.retrieve_budget = pos_size(&a, f, 1);
        else if (cli_is(f, "--host")) o.host = cli_str(&a, f);
        else if (cli_is(f, "--port")) {
            long p = cli_long(&a, f);
            if (p < 0 || p > 65535) cli_usage_error(&a, "--port must be in [0, 65535]");
            o.port = (int)p;
        }
        else if (cli_is(f, "--api-key")) o.api_key = cli_str(&a, f);
        else if (cli_is(f, "--slots")) o.slots = pos_size(&a, f, 1);
        else if (cli_is(f, "--queue")) o.max_queue = pos_size(&a, f, 1);
        else if (cli_is(f, "--no-prefix-cache")) o.no_prefix_cache = 1;
        else if (cli_is(f, "--max-body")) o.max_body = pos_size(&a, f, 64);
        else if (cli_is(f, "--max-header")) o.max_header = pos_size(&a, f, 4096);
        else if (cli_is(f, "--max-depth")) o.max_depth = pos_size(&a, f, 2);
        else if (cli_is(f, "--max-messages")) o.max_messages = pos_size(&a, f, 1);
        else if (cli_is(f, "--max-conns")) o.max_conns = pos_size(&a, f, 1);
        else if (cli_is(f, "--timeout")) o.timeout_s = pos_secs(&a, f);
        else if (cli_is(f, "--read-timeout")) o.read_timeout_s = pos_secs(&a, f);
        else if (cli_is(f, "--idle-timeout")) o.idle_timeout_s = pos_secs(&a, f);
        else if (cli_is(f, "--grace")) o.grace_s = pos_secs(&a, f);
        else if (cli_is(f, "--step-delay")) o.step_delay_ms = cli_double(&a, f);
        else if (cli_is(f, "-q", "--quiet")) gk_verbose = 0;
        else cli_unknown(&a, f);
    }
    if (!o.model_dir) cli_usage_error(&a, "--model DIR is required");
    if (o.api_key && !*o.api_key) o.api_key = NULL;
    gk_err err;
    if (serve_run(&o, &err)) {
        fprintf(stderr, "gptkit serve: %s\n", err.msg);
        return 1;
    }
    return 0;
}
