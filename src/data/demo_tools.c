/* demo_tools.c: the demo's big-number arithmetic — tasks a small model cannot compute in its head (operands of
 * 4 to 12 digits; +, - and *) and SFT conversations that teach it to hand them to the `calc` tool:
 *
 *   user       What is 48213 + 9912734?
 *   assistant  <|tool_call|>{"name": "calc", "arguments": {"expression": "48213 + 9912734"}}<|tool_call_end|>
 *   tool       9960947
 *   assistant  The answer is 9960947.
 *
 * The questions use the wording of the small arithmetic tasks (plus multiplication), so the model has to learn
 * from the numbers when to call the tool. Splits follow the same prompt hash as every demo task. Exact integer
 * arithmetic in unsigned __int128 (12-digit products have at most 24 digits). */
#include "data/data.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static const char *ADD_Q[] = {"What is %s + %s?", "Compute %s + %s.", "What is %s plus %s?", "Add %s and %s.", "%s + %s = ?"};
static const char *SUB_Q[] = {"What is %s - %s?", "Compute %s - %s.", "What is %s minus %s?", "Take %s away from %s.", "%s - %s = ?"};
static const char *MUL_Q[] = {"What is %s * %s?", "Compute %s * %s.", "What is %s times %s?", "Multiply %s by %s.", "%s * %s = ?"};
#define SUB_REVERSED 3  /* SUB_Q[3] names the subtrahend first */
static const char *DECOR_SYS[] = {"You are a helpful assistant.", "You are a careful assistant.",
                                  "You answer questions about numbers and words."};

typedef unsigned __int128 u128;

static void u128_str(u128 v, char *out) {
    char tmp[48]; int n = 0;
    do { tmp[n++] = (char)('0' + (int)(v % 10)); v /= 10; } while (v);
    for (int i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    out[n] = 0;
}

/* A number of 4..12 digits, the first not zero. */
static u128 draw_big(gk_rng *r) {
    int digits = 4 + (int)gk_rng_below(r, 9);
    u128 v = 1 + gk_rng_below(r, 9);
    for (int i = 1; i < digits; i++) v = v * 10 + gk_rng_below(r, 10);
    return v;
}

/* One instance: question, answer, the calc expression. */
typedef struct { demo_task t; char expr[128]; } big_inst;

static void draw_big_any(gk_rng *r, big_inst *x) {
    memset(x, 0, sizeof *x);
    u128 a = draw_big(r), b = draw_big(r), res;
    uint32_t op = gk_rng_below(r, 3), q = gk_rng_below(r, 5);
    if (op == 1 && a < b) { u128 s = a; a = b; b = s; }
    char sa[48], sb[48], sr[48];
    u128_str(a, sa); u128_str(b, sb);
    const char *tpl;
    if (op == 0) { res = a + b; tpl = ADD_Q[q]; }
    else if (op == 1) { res = a - b; tpl = SUB_Q[q]; }
    else { res = a * b; tpl = MUL_Q[q]; }
    u128_str(res, sr);
    demo_task *t = &x->t;
    if (op == 1 && q == SUB_REVERSED) snprintf(t->user, sizeof t->user, tpl, sb, sa);
    else snprintf(t->user, sizeof t->user, tpl, sa, sb);
    if (gk_rng_below(r, 100) < 20) snprintf(t->system, sizeof t->system, "%s", DECOR_SYS[gk_rng_below(r, (uint32_t)N_OF(DECOR_SYS))]);
    snprintf(x->expr, sizeof x->expr, "%s %c %s", sa, "+-*"[op], sb);
    snprintf(t->answer, sizeof t->answer, "%s", sr);
    snprintf(t->reference, sizeof t->reference, "The answer is %s.", sr);
    snprintf(t->skill, sizeof t->skill, "calc");
    snprintf(t->check, sizeof t->check, "number");
}

static void draw_big_split(gk_rng *r, demo_split split, big_inst *x) {
    do draw_big_any(r, x); while (demo_prompt_split(x->t.system, x->t.user) != split);
}

static cJSON *msg(const char *role, const char *content) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", content);
    return m;
}

void demo_tool_conversation(gk_rng *r, cJSON *msgs) {
    big_inst x;
    draw_big_split(r, DEMO_SPLIT_SFT, &x);
    char call[256];
    snprintf(call, sizeof call, TOK_TOOL_CALL "{\"name\": \"calc\", \"arguments\": {\"expression\": \"%s\"}}" TOK_TOOL_CALL_END, x.expr);
    if (x.t.system[0]) cJSON_AddItemToArray(msgs, msg("system", x.t.system));
    cJSON_AddItemToArray(msgs, msg("user", x.t.user));
    cJSON_AddItemToArray(msgs, msg("assistant", call));
    cJSON_AddItemToArray(msgs, msg("tool", x.t.answer));
    cJSON_AddItemToArray(msgs, msg("assistant", x.t.reference));
}

long demo_tool_tasks(long n, uint64_t seed, demo_task **out, gk_err *err) {
    if (n < 1 || n > 10000000) return gk_errf(err, "count must be in 1..10000000, got %ld", n);
    demo_task *ts = gk_malloc((size_t)n * sizeof *ts);
    gk_rng r;
    gk_rng_seed(&r, seed ^ 0x7001C0DEULL);
    for (long i = 0; i < n; i++) { big_inst x; draw_big_split(&r, DEMO_SPLIT_EVAL, &x); ts[i] = x.t; }
    *out = ts;
    return n;
}

long demo_gen_tool_eval(const char *path, long n, uint64_t seed, const demo_opts *o, gk_err *err) {
    (void)o;
    demo_task *ts;
    if (demo_tool_tasks(n, seed, &ts, err) < 0) return -1;
    gk_afile *af = NULL;
    FILE *fp = stdout;
    if (strcmp(path, "-") && !(af = gk_afile_open(path, err))) { free(ts); return -1; }
    for (long i = 0; i < n; i++) {
        cJSON *obj = cJSON_CreateObject();
        if (ts[i].system[0]) {
            cJSON *p = cJSON_AddArrayToObject(obj, "prompt");
            cJSON_AddItemToArray(p, msg("system", ts[i].system));
            cJSON_AddItemToArray(p, msg("user", ts[i].user));
        } else cJSON_AddStringToObject(obj, "prompt", ts[i].user);
        cJSON_AddStringToObject(obj, "answer", ts[i].answer);
        cJSON_AddStringToObject(obj, "skill", ts[i].skill);
        cJSON_AddStringToObject(obj, "check", ts[i].check);
        cJSON_AddStringToObject(obj, "reference", ts[i].reference);
        char *line = cJSON_PrintUnformatted(obj);
        if (af) { gk_afile_write(af, line, strlen(line)); gk_afile_write(af, "\n", 1); }
        else { fputs(line, fp); fputc('\n', fp); }
        cJSON_free(line);
        cJSON_Delete(obj);
    }
    free(ts);
    if (af) return gk_afile_commit(af, err) == 0 ? n : gk_err_prefix(err, "writing %s", path);
    return fflush(fp) == 0 ? n : gk_errf(err, "writing to stdout failed");
}
