/* judge.c: win rates of one model over another by the reward model and by the gold rule (train.h, "judged win
 * rates"), with best-of-N as a contender; and the paired interval of an accuracy difference.
 *
 * Why two judges: the reward model is what PPO optimises, so a win by the reward model can be the policy
 * finding the reward model's blind spots (over-optimisation). The demo's preferences come from a known rule
 * (data.h: 4 correct + 2 format + 1 concise), so the demo can also ask the rule itself — the "human" whose
 * preferences the reward model only approximates. A tie under either judge counts half (the rule's scores are
 * small integers, so ties are common: both replies perfect, or both wrong the same way); wins, ties and losses
 * are reported separately.
 */
#include "train/train.h"
#include "infer/infer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void judge_opts_default(judge_opts *o) {
    memset(o, 0, sizeof *o);
    o->best_of = 1; o->max_new = 64; o->temperature = 0.7f; o->seed = 1337;
}

int rlhf_judge(const judge_opts *o, judge_result *res, gk_err *err) {
    memset(res, 0, sizeof *res);
    if (!o->a_dir || !o->b_dir || !o->rm_dir || !o->prompts) return gk_errf(err, "the judge needs model A, model B, a reward model and prompts");
    if (o->max_new <= 0) return gk_errf(err, "max_new must be positive");
    size_t K = o->best_of > 1 ? (size_t)o->best_of : 1;
    rlhf_duel d;
    if (rlhf_duel_open(&d, o->a_dir, o->b_dir, o->rm_dir, o->prompts, o->tokenizer, err)) return -1;
    size_t n = o->n > 0 && (size_t)o->n < d.ps.n ? (size_t)o->n : d.ps.n, skipped = 0;
    struct engine *ea = engine_new(d.a, d.ch.tok, K, 0), *eb = engine_new(d.b, d.ch.tok, 1, 0);
    int32_t end = d.ch.sp.end;
    rlhf_seq *sa = gk_calloc(K, sizeof *sa), sb;
    int *enda = gk_calloc(K, sizeof(int)), endb;
    float *ra = gk_malloc(K * sizeof(float)), rb;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const prefs_item *it = &d.ps.items[i];
        tok_ids pid = {0};
        rlhf_render_prompt(&d.ch, it, &pid);
        if (pid.n + (size_t)o->max_new + 1 > d.ctx) { skipped++; tok_ids_free(&pid); continue; }
        uint64_t seed = o->seed * 1000003ULL + i;
        /* best-of-N draws from its own stream, so A = B with N = 1 is not a comparison of a reply with itself */
        if (rlhf_generate(ea, pid.ids, pid.n, K, (size_t)o->max_new, o->temperature, K > 1 ? seed ^ 0xB0F0B0F0ULL : seed, sa, enda, NULL, err) ||
            rlhf_generate(eb, pid.ids, pid.n, 1, (size_t)o->max_new, o->temperature, seed, &sb, &endb, NULL, err)) { tok_ids_free(&pid); rc = -1; break; }
        rlhf_score_rollouts(d.rm, sa, enda, K, end, ra);
        rlhf_score_rollouts(d.rm, &sb, &endb, 1, end, &rb);
        size_t best = 0;
        for (size_t k = 1; k < K; k++) if (ra[k] > ra[best]) best = k;
        rlhf_tally(&res->rm, (double)ra[best] - (double)rb, ra[best], rb);
        /* the gold rule, on the prompt's system and last user message */
        const char *sys = NULL, *user = NULL;
        for (size_t k = 0; k < it->n_prompt; k++) {
            if (!strcmp(it->prompt[k].role, "system")) sys = it->prompt[k].content;
            else if (!strcmp(it->prompt[k].role, "user")) user = it->prompt[k].content;
        }
        tok_bytes ta = {0}, tb = {0};
        rlhf_response_text(d.ch.tok, end, &sa[best], &ta);
        rlhf_response_text(d.ch.tok, end, &sb, &tb);
        demo_verdict va, vb;
        int judged = demo_gold(sys, user, (const char *)ta.data, &va) == 0 && demo_gold(sys, user, (const char *)tb.data, &vb) == 0;
        if (judged) {
            rlhf_tally(&res->gold, (double)va.score - (double)vb.score, va.score, vb.score);
            res->gold_correct_a += va.correct; res->gold_correct_b += vb.correct;
        }
        if (o->json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddNumberToObject(j, "prompt", (double)i);
            cJSON_AddNumberToObject(j, "line", (double)it->line);
            train_put(j, "rm_a", "%.6g", ra[best]);
            train_put(j, "rm_b", "%.6g", rb);
            if (judged) { cJSON_AddNumberToObject(j, "gold_a", va.score); cJSON_AddNumberToObject(j, "gold_b", vb.score); }
            cJSON_AddStringToObject(j, "a", (const char *)ta.data);
            cJSON_AddStringToObject(j, "b", (const char *)tb.data);
            char *s = cJSON_PrintUnformatted(j);
            printf("%s\n", s);
            cJSON_free(s);
            cJSON_Delete(j);
        }
        tok_bytes_free(&ta); tok_bytes_free(&tb);
        for (size_t k = 0; k < K; k++) rlhf_seq_free(&sa[k]);
        rlhf_seq_free(&sb);
        tok_ids_free(&pid);
    }
    if (skipped) gk_warn("judge: skipped %zu prompt(s) too long for the context with max_new %ld\n", skipped, o->max_new);
    if (rc == 0 && res->rm.n == 0) rc = gk_errf(err, "%s: no prompt could be compared", o->prompts);
    if (rc == 0) {
        if (res->gold.n) { res->gold_correct_a /= (double)res->gold.n; res->gold_correct_b /= (double)res->gold.n; }
        rlhf_tally_finish(&res->rm);
        rlhf_tally_finish(&res->gold);
    }
    free(sa); free(enda); free(ra);
    engine_free(ea); engine_free(eb);
    rlhf_duel_close(&d);
    return rc;
}

void rlhf_paired_diff(const unsigned char *a, const unsigned char *b, size_t n, double z, double *mean, double *lo, double *hi) {
    if (n < 2) { *mean = n ? (double)a[0] - (double)b[0] : 0; *lo = -1; *hi = 1; return; }
    double m = 0, v = 0;
    for (size_t i = 0; i < n; i++) m += (double)a[i] - (double)b[i];
    m /= (double)n;
    for (size_t i = 0; i < n; i++) { double d = (double)a[i] - (double)b[i] - m; v += d * d; }
    double se = sqrt(v / (double)(n - 1) / (double)n);
    *mean = m; *lo = m - z * se; *hi = m + z * se;
}
