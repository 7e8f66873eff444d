/* cmd_score.c: gptkit score — a reward per (prompt, response) from a reward model. */
#include "cli/cli.h"
#include "core/core.h"
#include "train/train.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
"usage: gptkit score --rm RM_DIR --data FILE.jsonl [--json] [--tokenizer PATH] [-b N]\n"
"\n"
"Prints one reward per (prompt, response). Lines may be {\"prompt\",\"response\"}, {\"messages\"} (the last\n"
"assistant turn is the response), {\"prompt\",\"chosen\",\"rejected\"} or {\"prompt\",\"ranked\":[...]} (every\n"
"response is scored; a summary line gives the pair accuracy). Output: LINE<TAB>INDEX<TAB>REWARD, or with\n"
"--json {\"line\":L,\"index\":I,\"reward\":R} per response.\n";

int cmd_score(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv, USAGE);
    const char *f, *rm_dir = NULL, *data = NULL, *tokp = NULL;
    int json = 0; long batch = 16;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--rm")) rm_dir = cli_str(&a, f);
        else if (cli_is(f, "--data")) data = cli_str(&a, f);
        else if (cli_is(f, "--tokenizer")) tokp = cli_str(&a, f);
        else if (cli_is(f, "-b", "--batch")) batch = cli_long(&a, f);
        else if (cli_is(f, "--json")) json = 1;
        else if (cli_is(f, "-q", "--quiet")) gk_verbose = 0;
        else cli_unknown(&a, f);
    }
    if (!rm_dir || !data) cli_usage_error(&a, "--rm and --data are required");
    if (batch <= 0) cli_usage_error(&a, "--batch must be positive");
    gk_err err;
    char *rec = NULL;
    gpt_model *rm = rlhf_load_rm(rm_dir, &rec, &err);
    if (!rm) { fprintf(stderr, "gptkit score: %s\n", err.msg); return 1; }
    rlhf_chat ch;
    prefs_set s;
    if (rlhf_chat_open(&ch, rm_dir, rec, tokp, (size_t)rm->cfg.vocab_size, &err) ||
        prefs_load(data, PREFS_ACCEPT_PREFS | PREFS_ACCEPT_SCORED, &s, &err)) {
        fprintf(stderr, "gptkit score: %s\n", err.msg);
        gpt_free(rm); free(rec);
        return 1;
    }
    size_t total = 0;
    for (size_t i = 0; i < s.n; i++) total += s.items[i].n_resp;
    rlhf_seq *seqs = gk_calloc(total, sizeof *seqs);
    size_t *line = gk_malloc(total * sizeof(size_t)), *idx = gk_malloc(total * sizeof(size_t)), n = 0, skipped = 0;
    for (size_t i = 0; i < s.n; i++)
        for (size_t k = 0; k < s.items[i].n_resp; k++) {
            rlhf_render_seq(&ch, &s.items[i], k, &seqs[n]);
            if (seqs[n].n > (size_t)rm->cfg.n_ctx) {
                fprintf(stderr, "gptkit score: %s:%zu: response %zu is %zu tokens, longer than the context (%d); skipped\n",
                        data, s.items[i].line, k, seqs[n].n, rm->cfg.n_ctx);
                rlhf_seq_free(&seqs[n]); skipped++; continue;
            }
            line[n] = s.items[i].line; idx[n] = k; n++;
        }
    float *r = gk_malloc((n ? n : 1) * sizeof(float));
    rlhf_score_seqs(rm, seqs, n, (size_t)batch, r);
    double correct = 0; size_t pairs = 0;
    for (size_t i = 0; i < n; i++) {
        if (json) printf("{\"line\":%zu,\"index\":%zu,\"reward\":%.7g}\n", line[i], idx[i], r[i]);
        else printf("%zu\t%zu\t%.6f\n", line[i], idx[i], r[i]);
        for (size_t j = i + 1; j < n && line[j] == line[i]; j++) {   /* responses are best first */
            pairs++; correct += r[i] > r[j] ? 1.0 : r[i] == r[j] ? 0.5 : 0.0;
        }
    }
    if (pairs && !json) fprintf(stderr, "score: pair accuracy %.4f over %zu pairs\n", correct / (double)pairs, pairs);
    for (size_t i = 0; i < n; i++) rlhf_seq_free(&seqs[i]);
    free(seqs); free(line); free(idx); free(r);
    prefs_free(&s);
    rlhf_chat_close(&ch);
    gpt_free(rm); free(rec);
    return skipped && n == 0 ? 1 : 0;
}
