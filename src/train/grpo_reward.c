/* grpo_reward.c: verifiable rewards for GRPO — which answer a prompt wants, and whether a reply gives it.
 *
 * No second checker: a demo task is graded by demo_check_answer (the report card's accuracy) and its format by
 * demo_judge (the preference rule's format and conciseness flags); any other task by the strategies' answer
 * extraction (strategy_extract with ANSWER_AUTO, then strategy_answer_equal), the rules `gptkit solve` uses.
 * The answer of a demo prompt need not be in the file: demo_task_from_prompt recovers it from the text.
 */
#include "train/train.h"
#include "infer/strategy.h"
#include "infer/infer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int grpo_task_of(const prefs_item *it, const char *answer, const char *check, grpo_task *t, gk_err *err) {
    memset(t, 0, sizeof *t);
    if (answer) {
        if (strlen(answer) >= sizeof t->answer) return gk_errf(err, "field \"answer\": longer than %zu bytes", sizeof t->answer - 1);
        strcpy(t->answer, answer);
        if (check && *check) {
            if (demo_check_answer(check, "0", "0") < 0)
                return gk_errf(err, "field \"check\": unknown check \"%s\" (number, contains, upper, exact, json)", check);
            snprintf(t->check, sizeof t->check, "%s", check);
        }
        return 0;
    }
    const char *sys = NULL, *user = NULL;
    for (size_t k = 0; k < it->n_prompt; k++) {
        if (!strcmp(it->prompt[k].role, "system")) sys = it->prompt[k].content;
        else if (!strcmp(it->prompt[k].role, "user")) user = it->prompt[k].content;
    }
    demo_task d;
    if (!user || demo_task_from_prompt(sys, user, &d) != 0)
        return gk_errf(err, "no \"answer\" field, and the prompt is not one of the demo's tasks (whose answers are known)");
    snprintf(t->answer, sizeof t->answer, "%s", d.answer);
    snprintf(t->check, sizeof t->check, "%s", d.check);
    return 0;
}

void grpo_reward(const grpo_task *t, const char *reply, int ended, float correct_w, float format_w, grpo_reward_out *out) {
    memset(out, 0, sizeof *out);
    while (*reply == ' ') reply++;
    if (t->check[0]) {
        out->correct = demo_check_answer(t->check, t->answer, reply) == 1;
        demo_verdict v;
        out->format = ended && demo_judge(t->check, t->answer, reply, &v) == 0 && v.follows_format && v.concise;
    } else {
        answer_rule rule = { ANSWER_AUTO, NULL };
        char got[STRATEGY_ANSWER_MAX];
        out->correct = strategy_extract(&rule, t->answer, reply, got, sizeof got) == 1 && strategy_answer_equal(got, t->answer);
        out->format = ended;
    }
    out->reward = (double)correct_w * out->correct + (double)format_w * out->format;
}

void grpo_set_free(grpo_set *s) {
    for (size_t i = 0; i < s->n; i++) prefs_item_free(&s->items[i]);
    free(s->items); free(s->tasks);
    memset(s, 0, sizeof *s);
}

int grpo_set_load(const char *path, grpo_set *s, gk_err *err) {
    memset(s, 0, sizeof *s);
    gk_lines lr;
    if (gk_lines_open(&lr, path, err)) return -1;
    size_t cap = 0;
    char *line; size_t ln;
    int rc = 0;
    while (rc == 0 && gk_lines_next(&lr, &line, &ln)) {
        const char *p = line;
        while (*p == ' ' || *p == '\t' || *p == '\r') p++;
        if (!*p) continue;
        if (s->n == cap) {
            cap = cap ? 2 * cap : 64;
            s->items = gk_realloc(s->items, cap * sizeof *s->items);
            s->tasks = gk_realloc(s->tasks, cap * sizeof *s->tasks);
        }
        prefs_item *it = &s->items[s->n];
        if (prefs_parse_line(line, path, ln, PREFS_ACCEPT_ANY, it, err)) { rc = -1; break; }
        cJSON *j = cJSON_Parse(line);
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "answer"), *c = cJSON_GetObjectItemCaseSensitive(j, "check");
        char num[64], *ans = NULL;
        gk_err e;
        int bad = 0;
        if (a && cJSON_IsString(a)) ans = a->valuestring;
        else if (a && cJSON_IsNumber(a)) {
            if (a->valuedouble == floor(a->valuedouble) && fabs(a->valuedouble) < 1e15) snprintf(num, sizeof num, "%.0f", a->valuedouble);
            else snprintf(num, sizeof num, "%.17g", a->valuedouble);
            ans = num;
        } else if (a) { bad = 1; gk_errf(&e, "field \"answer\": must be a string or a number"); }
        if (!bad && c && !cJSON_IsString(c)) { bad = 1; gk_errf(&e, "field \"check\": must be a string"); }
        if (!bad) bad = grpo_task_of(it, ans, c && cJSON_IsString(c) ? c->valuestring : NULL, &s->tasks[s->n], &e) != 0;
        cJSON_Delete(j);
        if (bad) { prefs_item_free(it); rc = gk_errf(err, "%s:%zu: %s", path, ln, e.msg); break; }
        s->n++;
    }
    gk_lines_close(&lr);
    if (rc == 0 && s->n == 0) rc = gk_errf(err, "%s: no prompts", path);
    if (rc) grpo_set_free(s);
    return rc;
}

/* ---------------------------------------------------------------- greedy accuracy */

double grpo_accuracy(struct engine *e, const tok_tokenizer *tok, const chat_specials *sp, const grpo_set *s, size_t n,
                     size_t max_new, unsigned char *correct, gk_err *err) {
    rlhf_chat ch = { (tok_tokenizer *)tok, *sp };
    if (n == 0 || n > s->n) n = s->n;
    long right = 0;
    for (size_t i = 0; i < n; i++) {
        tok_ids ids = {0};
        rlhf_render_prompt(&ch, &s->items[i], &ids);
        engine_gen_opts go;
        engine_gen_opts_default(&go);
        go.max_new = max_new;
        go.samp.temperature = 0;
        go.default_stops = 1;
        engine_seq q;
        memset(&q, 0, sizeof q);
        if (engine_generate(e, ids.ids, ids.n, 1, &go, &q, err)) { tok_ids_free(&ids); return NAN; }
        grpo_reward_out r;
        grpo_reward(&s->tasks[i], q.text ? q.text : "", q.finish == ENGINE_FINISH_STOP_TOKEN, 1, 0, &r);
        right += r.correct;
        if (correct) correct[i] = (unsigned char)r.correct;
        engine_seq_free(&q);
        tok_ids_free(&ids);
    }
    return (double)right / (double)n;
}
