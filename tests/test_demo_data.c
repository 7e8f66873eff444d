/* test_demo_data.c: the built-in demo data (src/data/demo*.c).
 *
 * Determinism (same seed, same bytes; a golden checksum pins the bytes across platforms), the shape of
 * every generated line, disjoint splits, the checker on hand-written near-misses, the preference rule on
 * every generated pair and ranking, few-shot prompts, and corpus extraction (including corrupt input). */
#include "core/core.h"
#include "data/data.h"
#include "testlib.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef long (*gen_fn)(const char *, long, uint64_t, const demo_opts *, gk_err *);

static char *gen_to(const char *dir, const char *name, gen_fn fn, long n, uint64_t seed) {
    char *path = gk_path_join(dir, name);
    gk_err err;
    long got = fn(path, n, seed, NULL, &err);
    CHECK(got == n, "%s: generated %ld of %ld: %s", name, got, n, got < 0 ? err.msg : "");
    return path;
}

static char *slurp(const char *path, size_t *len) {
    char *d = NULL; gk_err err;
    if (gk_read_file(path, &d, len, &err) != 0) { tl_fail_at(__FILE__, __LINE__, "%s", err.msg); *len = 0; return gk_strdup(""); }
    return d;
}

static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return h;
}

/* ---------------------------------------------------------------- determinism */

static void test_same_seed_same_bytes(void) {
    char *dir = tl_tmpdir("demo_det");
    static const struct { const char *name; gen_fn fn; } k[] = {
        {"sft", demo_gen_sft}, {"prefs", demo_gen_prefs}, {"prompts", demo_gen_prompts}, {"eval", demo_gen_eval}};
    for (size_t i = 0; i < 4; i++) {
        char a_name[32], b_name[32], c_name[32];
        snprintf(a_name, sizeof a_name, "%s_a.jsonl", k[i].name);
        snprintf(b_name, sizeof b_name, "%s_b.jsonl", k[i].name);
        snprintf(c_name, sizeof c_name, "%s_c.jsonl", k[i].name);
        char *a = gen_to(dir, a_name, k[i].fn, 400, 7), *b = gen_to(dir, b_name, k[i].fn, 400, 7);
        char *c = gen_to(dir, c_name, k[i].fn, 400, 8);
        size_t la, lb, lc;
        char *da = slurp(a, &la), *db = slurp(b, &lb), *dc = slurp(c, &lc);
        CHECK(la > 0 && la == lb && memcmp(da, db, la) == 0, "%s: same seed gave different bytes", k[i].name);
        CHECK(la != lc || memcmp(da, dc, la) != 0, "%s: seeds 7 and 8 gave the same bytes", k[i].name);
        /* a prefix property: the first lines of n=100 equal the first lines of n=400 */
        char *p = gen_to(dir, "prefix.jsonl", k[i].fn, 100, 7);
        size_t lp; char *dp = slurp(p, &lp);
        CHECK(lp > 0 && lp < la && memcmp(dp, da, lp) == 0, "%s: n=100 is not a prefix of n=400", k[i].name);
        free(da); free(db); free(dc); free(dp); free(a); free(b); free(c); free(p);
    }
    free(dir);
}

/* Pins the exact bytes: a change here means every recorded demo result changes too (update on purpose). */
static void test_golden_checksums(void) {
    char *dir = tl_tmpdir("demo_golden");
    static const struct { const char *name; gen_fn fn; uint64_t want; } k[] = {
        {"sft", demo_gen_sft, 0xcdc4461f6032175dULL},
        {"prefs", demo_gen_prefs, 0x2fdf3c3e0611baddULL},
        {"prompts", demo_gen_prompts, 0x2dcd88c9119690d6ULL},
        {"eval", demo_gen_eval, 0xde22972ed5fe8623ULL},
    };
    for (size_t i = 0; i < 4; i++) {
        char *p = gen_to(dir, "g.jsonl", k[i].fn, 200, 1);
        size_t n; char *d = slurp(p, &n);
        uint64_t h = fnv(d, n);
        if (k[i].want == 0) printf("  golden %s: 0x%016llxULL\n", k[i].name, (unsigned long long)h);
        else CHECK(h == k[i].want, "%s n=200 seed=1: checksum 0x%016llx, want 0x%016llx",
                   k[i].name, (unsigned long long)h, (unsigned long long)k[i].want);
        free(d); free(p);
    }
    free(dir);
}

/* ---------------------------------------------------------------- line shapes */

typedef struct { char system[DEMO_TEXT_MAX]; char user[DEMO_TEXT_MAX]; } prompt;

/* A prompt value: a string, or [system, user] messages. */
static int get_prompt(const cJSON *p, prompt *out, const char *where) {
    out->system[0] = out->user[0] = 0;
    if (cJSON_IsString(p)) { snprintf(out->user, sizeof out->user, "%s", p->valuestring); return out->user[0] != 0; }
    if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) != 2) { tl_fail_at(__FILE__, __LINE__, "%s: prompt shape", where); return 0; }
    const cJSON *s = cJSON_GetArrayItem(p, 0), *u = cJSON_GetArrayItem(p, 1);
    const cJSON *sr = cJSON_GetObjectItemCaseSensitive(s, "role"), *sc = cJSON_GetObjectItemCaseSensitive(s, "content");
    const cJSON *ur = cJSON_GetObjectItemCaseSensitive(u, "role"), *uc = cJSON_GetObjectItemCaseSensitive(u, "content");
    if (!cJSON_IsString(sr) || strcmp(sr->valuestring, "system") || !cJSON_IsString(sc) ||
        !cJSON_IsString(ur) || strcmp(ur->valuestring, "user") || !cJSON_IsString(uc)) {
        tl_fail_at(__FILE__, __LINE__, "%s: prompt messages must be system then user", where);
        return 0;
    }
    snprintf(out->system, sizeof out->system, "%s", sc->valuestring);
    snprintf(out->user, sizeof out->user, "%s", uc->valuestring);
    return out->user[0] != 0 && out->system[0] != 0;
}

typedef void (*line_fn)(const cJSON *obj, const char *where, void *ctx);

static long for_lines(const char *path, line_fn fn, void *ctx) {
    gk_lines lr; gk_err err;
    if (gk_lines_open(&lr, path, &err)) { tl_fail_at(__FILE__, __LINE__, "%s", err.msg); return 0; }
    char *line; size_t ln; long n = 0;
    while (gk_lines_next(&lr, &line, &ln)) {
        char where[512]; snprintf(where, sizeof where, "%s:%zu", path, ln);
        cJSON *obj = cJSON_Parse(line);
        CHECK(cJSON_IsObject(obj), "%s: not a JSON object", where);
        if (cJSON_IsObject(obj)) fn(obj, where, ctx);
        cJSON_Delete(obj);
        n++;
    }
    gk_lines_close(&lr);
    return n;
}

static int nkeys(const cJSON *o) { int n = 0; for (const cJSON *c = o->child; c; c = c->next) n++; return n; }

/* Per-split sets of prompt hashes, to test disjointness. */
#define SETCAP (1u << 16)
typedef struct { uint64_t slot[SETCAP]; size_t n; } pset;
static uint64_t prompt_key(const char *system, const char *user) {
    char buf[2 * DEMO_TEXT_MAX + 2];
    int n = snprintf(buf, sizeof buf, "%s\x1f%s", system, user);
    uint64_t h = fnv(buf, (size_t)n);
    return h ? h : 1;
}
static int pset_add(pset *s, uint64_t k) {
    size_t i = (size_t)(k & (SETCAP - 1));
    while (s->slot[i]) { if (s->slot[i] == k) return 0; i = (i + 1) & (SETCAP - 1); }
    GK_CHECK(s->n + 1 < SETCAP / 2, "test set full");
    s->slot[i] = k; s->n++;
    return 1;
}
static int pset_has(const pset *s, uint64_t k) {
    size_t i = (size_t)(k & (SETCAP - 1));
    while (s->slot[i]) { if (s->slot[i] == k) return 1; i = (i + 1) & (SETCAP - 1); }
    return 0;
}

typedef struct {
    pset *set; demo_split split;
    long exchanges, rambles, multi, systems;
    long pairs, rankings, chosen_ideal, rank_k[5];
    long dup;
} ctx_t;

static void note_prompt(ctx_t *c, const char *system, const char *user, const char *where) {
    CHECK(demo_prompt_split(system, user) == c->split, "%s: prompt '%s' is not in the file's split", where, user);
    if (!pset_add(c->set, prompt_key(system, user))) c->dup++;
}

static void sft_line(const cJSON *obj, const char *where, void *vc) {
    ctx_t *c = vc;
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(obj, "messages");
    CHECK(nkeys(obj) == 1 && cJSON_IsArray(msgs), "%s: want exactly {\"messages\": [...]}", where);
    if (!cJSON_IsArray(msgs)) return;
    int i = 0, ex = 0;   /* message index, exchanges so far */
    char system[DEMO_TEXT_MAX] = "", user[DEMO_TEXT_MAX] = "";
    const char *want = "system|user";
    for (const cJSON *m = msgs->child; m; m = m->next, i++) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role"), *t = cJSON_GetObjectItemCaseSensitive(m, "content");
        CHECK(nkeys(m) == 2 && cJSON_IsString(r) && cJSON_IsString(t) && t->valuestring[0], "%s: message %d shape", where, i);
        if (!cJSON_IsString(r) || !cJSON_IsString(t)) return;
        const char *role = r->valuestring;
        if (!strcmp(want, "system|user")) {
            CHECK(!strcmp(role, "system") || !strcmp(role, "user"), "%s: message %d role %s", where, i, role);
            if (!strcmp(role, "system")) { snprintf(system, sizeof system, "%s", t->valuestring); c->systems++; want = "user"; continue; }
        } else CHECK(!strcmp(role, want), "%s: message %d is %s, want %s", where, i, role, want);
        /* later exchanges carry no system message of their own */
        const char *sys = ex == 0 ? system : "";
        if (!strcmp(role, "user")) {
            snprintf(user, sizeof user, "%s", t->valuestring);
            note_prompt(c, sys, user, where);
            want = "assistant";
        } else if (!strcmp(role, "assistant")) {
            demo_task task;
            CHECK(demo_task_from_prompt(sys, user, &task) == 0, "%s: prompt '%s' not parseable", where, user);
            demo_verdict v;
            CHECK(demo_judge(task.check, task.answer, t->valuestring, &v) == 0, "%s: judge", where);
            /* every demonstration is correct and follows the format; some ramble (plain mode only) */
            CHECK(v.correct && v.follows_format, "%s: demonstration '%s' breaks the rule", where, t->valuestring);
            CHECK(demo_check_answer(task.check, task.answer, t->valuestring) == 1, "%s: demonstration '%s' fails its check",
                  where, t->valuestring);
            if (!v.concise) {
                c->rambles++;
                CHECK(!strcmp(task.check, "number") || !strcmp(task.check, "contains"), "%s: ramble in a format task", where);
            } else CHECK(!strcmp(t->valuestring, task.reference), "%s: '%s' != reference '%s'", where, t->valuestring, task.reference);
            c->exchanges++;
            if (ex == 1) c->multi++;
            ex++;
            want = "user";
        }
    }
    CHECK(!strcmp(want, "user") && ex >= 1, "%s: conversation must end with an assistant reply", where);
}

static void judge_or_fail(const demo_task *t, const char *resp, demo_verdict *v, const char *where) {
    CHECK(demo_judge(t->check, t->answer, resp, v) == 0, "%s: judge failed", where);
}

static void prefs_line(const cJSON *obj, const char *where, void *vc) {
    ctx_t *c = vc;
    prompt p;
    if (!get_prompt(cJSON_GetObjectItemCaseSensitive(obj, "prompt"), &p, where)) return;
    note_prompt(c, p.system, p.user, where);
    demo_task t;
    CHECK(demo_task_from_prompt(p.system, p.user, &t) == 0, "%s: prompt not parseable", where);
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(obj, "chosen"), *rj = cJSON_GetObjectItemCaseSensitive(obj, "rejected");
    const cJSON *rk = cJSON_GetObjectItemCaseSensitive(obj, "ranked");
    if (rk) {
        CHECK(nkeys(obj) == 2 && cJSON_IsArray(rk), "%s: ranking shape", where);
        int k = cJSON_GetArraySize(rk);
        CHECK(k >= 3 && k <= 4, "%s: K=%d", where, k);
        if (k >= 3 && k <= 4) c->rank_k[k]++;
        c->rankings++;
        int prev = 99; const char *prev_s = "";
        for (const cJSON *e = rk->child; e; e = e->next) {
            CHECK(cJSON_IsString(e) && e->valuestring[0], "%s: ranked entry not a string", where);
            if (!cJSON_IsString(e)) return;
            demo_verdict v; judge_or_fail(&t, e->valuestring, &v, where);
            CHECK(v.score < prev, "%s: '%s' (score %d) ranked below '%s' (score %d)", where, e->valuestring, v.score, prev_s, prev);
            prev = v.score; prev_s = e->valuestring;
        }
    } else {
        CHECK(nkeys(obj) == 3 && cJSON_IsString(ch) && cJSON_IsString(rj), "%s: pair shape", where);
        if (!cJSON_IsString(ch) || !cJSON_IsString(rj)) return;
        c->pairs++;
        demo_verdict vc_, vr;
        judge_or_fail(&t, ch->valuestring, &vc_, where);
        judge_or_fail(&t, rj->valuestring, &vr, where);
        CHECK(vc_.score > vr.score, "%s: chosen '%s' (%d) does not beat rejected '%s' (%d)", where,
              ch->valuestring, vc_.score, rj->valuestring, vr.score);
        if (vc_.score == 7) {
            c->chosen_ideal++;
            CHECK(demo_check_answer(t.check, t.answer, ch->valuestring) == 1, "%s: ideal chosen fails its check", where);
        }
    }
}

static void prompts_line(const cJSON *obj, const char *where, void *vc) {
    ctx_t *c = vc;
    prompt p;
    CHECK(nkeys(obj) == 1, "%s: want exactly {\"prompt\"}", where);
    if (!get_prompt(cJSON_GetObjectItemCaseSensitive(obj, "prompt"), &p, where)) return;
    note_prompt(c, p.system, p.user, where);
    if (p.system[0]) c->systems++;
    demo_task t;
    CHECK(demo_task_from_prompt(p.system, p.user, &t) == 0, "%s: prompt not parseable", where);
}

static void eval_line(const cJSON *obj, const char *where, void *vc) {
    ctx_t *c = vc;
    prompt p;
    CHECK(nkeys(obj) == 5, "%s: want prompt, answer, skill, check, reference", where);
    if (!get_prompt(cJSON_GetObjectItemCaseSensitive(obj, "prompt"), &p, where)) return;
    note_prompt(c, p.system, p.user, where);
    const char *f[4] = {"answer", "skill", "check", "reference"};
    const char *v[4];
    for (int i = 0; i < 4; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(obj, f[i]);
        CHECK(cJSON_IsString(x) && x->valuestring[0], "%s: field %s", where, f[i]);
        if (!cJSON_IsString(x)) return;
        v[i] = x->valuestring;
    }
    demo_task t;
    CHECK(demo_task_from_prompt(p.system, p.user, &t) == 0, "%s: prompt not parseable", where);
    CHECK(!strcmp(t.answer, v[0]) && !strcmp(t.skill, v[1]) && !strcmp(t.check, v[2]) && !strcmp(t.reference, v[3]),
          "%s: fields disagree with the prompt's task", where);
    CHECK(demo_check_answer(v[2], v[0], v[3]) == 1, "%s: the reference fails its own check", where);
    CHECK(demo_check_answer(v[1], v[0], "I do not know.") != 1, "%s: a non-answer passes", where);
}

static void test_lines_and_splits(void) {
    char *dir = tl_tmpdir("demo_lines");
    static pset sets[4];
    memset(sets, 0, sizeof sets);
    ctx_t c[4];
    memset(c, 0, sizeof c);
    for (int i = 0; i < 4; i++) { c[i].set = &sets[i]; c[i].split = (demo_split)i; }
    char *sft = gen_to(dir, "sft.jsonl", demo_gen_sft, 6000, 11);
    char *prefs = gen_to(dir, "prefs.jsonl", demo_gen_prefs, 4000, 12);
    char *prompts = gen_to(dir, "prompts.jsonl", demo_gen_prompts, 3000, 13);
    char *eval = gen_to(dir, "eval.jsonl", demo_gen_eval, 600, 14);
    CHECK(for_lines(sft, sft_line, &c[DEMO_SPLIT_SFT]) == 6000, "sft line count");
    CHECK(for_lines(prefs, prefs_line, &c[DEMO_SPLIT_PREFS]) == 4000, "prefs line count");
    CHECK(for_lines(prompts, prompts_line, &c[DEMO_SPLIT_RL]) == 3000, "prompts line count");
    CHECK(for_lines(eval, eval_line, &c[DEMO_SPLIT_EVAL]) == 600, "eval line count");

    /* held out: no prompt of one file occurs in another */
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            if (a == b) continue;
            long shared = 0;
            for (size_t i = 0; i < SETCAP; i++) if (sets[a].slot[i] && pset_has(&sets[b], sets[a].slot[i])) shared++;
            CHECK(shared == 0, "splits %d and %d share %ld prompts", a, b, shared);
        }
    CHECK(c[DEMO_SPLIT_EVAL].dup == 0, "eval has %ld duplicate prompts", c[DEMO_SPLIT_EVAL].dup);

    /* the mix the options promise (defaults: 15% rambling plain replies, 15% two exchanges, 40% rankings) */
    const ctx_t *s = &c[DEMO_SPLIT_SFT];
    double multi = (double)s->multi / 6000, ramble = (double)s->rambles / (double)s->exchanges;
    CHECK(multi > 0.08 && multi < 0.2, "two-exchange fraction %.3f", multi);
    CHECK(ramble > 0.03 && ramble < 0.12, "rambling fraction of all replies %.3f (15%% of plain ones)", ramble);
    CHECK(s->systems > 6000 / 10 && s->systems < 6000 / 2, "system messages %ld", s->systems);
    const ctx_t *p = &c[DEMO_SPLIT_PREFS];
    CHECK(p->rankings > 4000 * 0.35 && p->rankings < 4000 * 0.45, "rankings %ld of 4000", p->rankings);
    CHECK(p->rank_k[3] > 0 && p->rank_k[4] > 0, "both K=3 (%ld) and K=4 (%ld)", p->rank_k[3], p->rank_k[4]);
    CHECK(p->chosen_ideal > p->pairs * 0.75, "chosen is the ideal reply in %ld of %ld pairs", p->chosen_ideal, p->pairs);
    printf("  sft %ld exchanges (%ld rambling, %ld multi), prefs %ld pairs + %ld rankings\n",
           s->exchanges, s->rambles, s->multi, p->pairs, p->rankings);
    free(sft); free(prefs); free(prompts); free(eval); free(dir);
}

/* Content contrasts (pref_drop): with it, the file is the file without it (same seed and options) with contrast lines
 * slipped in (their own RNG stream). Each contrast is a ranking [ideal, rambling with the answer, answer gone] or the pair
 * rambling > answer gone, in rule order, the last reply never holding the answer; their share is pref_drop's, and they
 * are not thinned by pref_arith. */
typedef struct { long contrasts, ranked, arith; } drop_ctx;
static void contrast_check(const cJSON *obj, const char *where, drop_ctx *c) {
    prompt p;
    if (!get_prompt(cJSON_GetObjectItemCaseSensitive(obj, "prompt"), &p, where)) return;
    demo_task t;
    CHECK(demo_task_from_prompt(p.system, p.user, &t) == 0, "%s: prompt not parseable", where);
    const cJSON *rk = cJSON_GetObjectItemCaseSensitive(obj, "ranked");
    const char *resp[3]; int n = 0;
    if (rk) for (const cJSON *e = rk->child; e && n < 3; e = e->next) resp[n++] = e->valuestring;
    else {
        const cJSON *ch = cJSON_GetObjectItemCaseSensitive(obj, "chosen"), *rj = cJSON_GetObjectItemCaseSensitive(obj, "rejected");
        CHECK(cJSON_IsString(ch) && cJSON_IsString(rj), "%s: pair shape", where);
        if (!cJSON_IsString(ch) || !cJSON_IsString(rj)) return;
        resp[n++] = ch->valuestring; resp[n++] = rj->valuestring;
    }
    CHECK(n == (rk ? 3 : 2) && (!rk || cJSON_GetArraySize(rk) == 3), "%s: a contrast ranks 3 replies or pairs 2", where);
    demo_verdict v[3];
    for (int i = 0; i < n; i++) judge_or_fail(&t, resp[i], &v[i], where);
    for (int i = 1; i < n; i++) CHECK(v[i].score < v[i - 1].score, "%s: '%s' ranked below '%s'", where, resp[i], resp[i - 1]);
    if (rk) CHECK(v[0].score == 7 && !strcmp(resp[0], t.reference), "%s: a contrast ranking starts with the ideal reply", where);
    CHECK(v[n - 2].correct && !v[n - 2].concise, "%s: '%s' is not a rambling reply with the answer", where, resp[n - 2]);
    CHECK(!v[n - 1].correct, "%s: '%s' holds the answer", where, resp[n - 1]);
    c->contrasts++;
    c->ranked += rk != NULL;
    c->arith += !strcmp(t.check, "number") || !strcmp(t.skill, "arith") || (t.answer[0] >= '0' && t.answer[0] <= '9');
}

static void test_prefs_content_contrasts(void) {
    char *dir = tl_tmpdir("demo_drop");
    char *p0 = gk_path_join(dir, "p0.jsonl"), *p1 = gk_path_join(dir, "p1.jsonl");
    demo_opts o; demo_opts_default(&o);
    o.pref_arith = 0.1;
    gk_err err;
    CHECK(demo_gen_prefs(p0, 3000, 5, &o, &err) == 3000, "%s", err.msg);
    o.pref_drop = 0.3;
    CHECK(demo_gen_prefs(p1, 3000, 5, &o, &err) == 3000, "%s", err.msg);
    gk_lines l0, l1;
    CHECK(gk_lines_open(&l0, p0, &err) == 0 && gk_lines_open(&l1, p1, &err) == 0, "%s", err.msg);
    char *a = NULL, *b; size_t ln0 = 0, ln1;
    int have_a = gk_lines_next(&l0, &a, &ln0);
    drop_ctx c = {0};
    long lines = 0, matched = 0;
    while (gk_lines_next(&l1, &b, &ln1)) {
        lines++;
        if (have_a && !strcmp(a, b)) { matched++; have_a = gk_lines_next(&l0, &a, &ln0); continue; }
        char where[512]; snprintf(where, sizeof where, "%s:%zu", p1, ln1);
        cJSON *obj = cJSON_Parse(b);
        CHECK(cJSON_IsObject(obj), "%s: not a JSON object", where);
        if (cJSON_IsObject(obj)) contrast_check(obj, where, &c);
        cJSON_Delete(obj);
    }
    gk_lines_close(&l0); gk_lines_close(&l1);
    CHECK(lines == 3000, "%ld lines", lines);
    CHECK(c.contrasts + matched == 3000, "the other lines are not the file without contrasts (%ld contrasts, %ld lines matched)",
          c.contrasts, matched);
    CHECK(c.contrasts > 3000 * 0.25 && c.contrasts < 3000 * 0.35, "pref_drop 0.3: %ld contrasts of 3000", c.contrasts);
    CHECK(c.ranked > c.contrasts * 0.3 && c.ranked < c.contrasts * 0.5, "%ld of %ld contrasts ranked (pref_rank 0.4)",
          c.ranked, c.contrasts);
    CHECK(c.arith > c.contrasts * 0.35, "%ld arithmetic contrasts of %ld: thinned by pref_arith", c.arith, c.contrasts);
    printf("  %ld content contrasts in 3000 lines (%ld rankings, %ld arithmetic)\n", c.contrasts, c.ranked, c.arith);
    free(p0); free(p1); free(dir);
}

static void test_skill_mix(void) {
    demo_task *ts = NULL; gk_err err;
    long n = demo_eval_tasks(600, 3, NULL, &ts, &err);
    CHECK(n == 600, "demo_eval_tasks: %s", n < 0 ? err.msg : "");
    long by[4] = {0};
    static const char *skills[4] = {"arith", "fact", "format", "style"};
    for (long i = 0; i < n; i++)
        for (int k = 0; k < 4; k++) if (!strcmp(ts[i].skill, skills[k])) by[k]++;
    /* the draw's mix: arith 22.5%, fact 22.5%, format 36%, style 19% (no skill starved by de-duplication) */
    static const double share[4] = {0.225, 0.225, 0.36, 0.19};
    for (int k = 0; k < 4; k++)
        CHECK(fabs((double)by[k] / 600 - share[k]) < 0.05, "skill %s: %ld of 600 eval tasks, want about %.0f",
              skills[k], by[k], share[k] * 600);
    CHECK(by[0] + by[1] + by[2] + by[3] == 600, "unknown skills");
    free(ts);
}

/* ---------------------------------------------------------------- checker and rule */

static void test_checker_hand_cases(void) {
    static const struct { const char *check, *expected, *response; int want; } k[] = {
        {"number", "432", "The answer is 432.", 1},
        {"number", "432", "432", 1},
        {"number", "432", "  432\n", 1},
        {"number", "432", "The answer is 4321.", 0},   /* longer number */
        {"number", "432", "The answer is 43.", 0},
        {"number", "432", "The answer is 432.5.", 0},  /* a decimal is not the integer */
        {"number", "432", "It is 431, not 432.", 0},   /* the first number counts */
        {"number", "432", "The answer is four hundred.", 0},
        {"number", "-5", "The answer is -5.", 1},
        {"number", "5", "The answer is -5.", 0},
        {"number", "5", "x-5", 1},                     /* '-' after a letter is not a sign */
        {"arith", "18", "18.", 1},
        {"number", "abc", "abc", 0},                   /* a non-number answer never matches */
        {"contains", "Lima", "The capital of Peru is Lima.", 1},
        {"contains", "Lima", "the capital of peru is LIMA", 1},
        {"contains", "Lima", "The capital of Peru is Limassol.", 0},
        {"contains", "old", "The opposite of young is cold.", 0},
        {"contains", "old", "The opposite of young is old.", 1},
        {"fact", "kid", "A baby goat is called a kid.", 1},
        {"contains", "Lima", "", 0},
        {"upper", "Lima", "THE CAPITAL OF PERU IS LIMA.", 1},
        {"upper", "Lima", "THE CAPITAL OF PERU IS Lima.", 0},
        {"upper", "Lima", "THE CAPITAL OF PERU IS ROME.", 0},
        {"upper", "432", "THE ANSWER IS 432.", 1},
        {"upper", "432", "THE ANSWER IS 4320.", 0},
        {"upper", "432", "...", 0},
        {"exact", "Lima", "Lima", 1},
        {"exact", "Lima", "lima.", 1},
        {"exact", "Lima", " Lima \n", 1},
        {"exact", "Lima", "Lima..", 0},
        {"exact", "Lima", "Lima is", 0},
        {"exact", "Lima", "The capital of Peru is Lima.", 0},
        {"exact", "432", "432", 1},
        {"exact", "432", "4320", 0},
        {"style", "Paris", "Paris.", 1},
        {"exact", "Lima", "", 0},
        {"json", "Lima", "{\"answer\": \"Lima\"}", 1},
        {"json", "Lima", "  {\"answer\":\"lima\"}  ", 1},
        {"json", "432", "{\"answer\": 432}", 1},
        {"json", "432", "{\"answer\": \"432\"}", 1},
        {"json", "432", "{\"answer\": 432.5}", 0},
        {"json", "432", "{\"answer\": 433}", 0},
        {"json", "Lima", "{\"answer\": \"Lima\"} I hope this helps.", 0},
        {"json", "Lima", "Sure! {\"answer\": \"Lima\"}", 0},
        {"json", "Lima", "{\"answer\": \"Lima\", \"city\": \"Lima\"}", 0},
        {"json", "Lima", "{\"Answer\": \"Lima\"}", 0},
        {"json", "Lima", "[\"Lima\"]", 0},
        {"json", "Lima", "{\"answer\": \"Lima\"", 0},
        {"json", "Lima", "The capital of Peru is Lima.", 0},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        int got = demo_check_answer(k[i].check, k[i].expected, k[i].response);
        CHECK(got == k[i].want, "check=%s expected='%s' response='%s': got %d want %d",
              k[i].check, k[i].expected, k[i].response, got, k[i].want);
    }
    CHECK(demo_check_answer("format", "x", "x") == -1, "'format' alone names no check");
    CHECK(demo_check_answer("bogus", "x", "x") == -1, "unknown check");
    CHECK(demo_check_answer("exact", NULL, "x") == 0 && demo_check_answer("exact", "x", NULL) == 0, "NULLs are wrong answers");
}

static void test_judge_hand_cases(void) {
    static const struct { const char *check, *answer, *response; int c, f, k; } k[] = {
        {"number", "432", "The answer is 432.", 1, 1, 1},
        {"number", "432", "The answer is 432. I hope this helps.", 1, 1, 0},
        {"number", "432", "Sure! The answer is 432.", 1, 1, 0},
        {"number", "432", "The answer is 431.", 0, 1, 1},
        {"contains", "Lima", "The capital of Peru is Lima.", 1, 1, 1},
        {"contains", "Lima", "The capital of Peru is Rome. Thank you for asking.", 0, 1, 0},
        {"upper", "Lima", "THE CAPITAL OF PERU IS LIMA.", 1, 1, 1},
        {"upper", "Lima", "The capital of Peru is Lima.", 1, 0, 1},
        {"upper", "Lima", "SURE! THE CAPITAL OF PERU IS LIMA.", 1, 1, 0},
        {"exact", "Lima", "Lima", 1, 1, 1},
        {"exact", "Lima", "Lima.", 1, 1, 1},
        {"exact", "Lima", "Rome", 0, 1, 1},
        {"exact", "Lima", "The capital of Peru is Lima.", 1, 0, 1},
        {"exact", "653", "653. That was a fun one to work out.", 1, 0, 0},
        {"json", "Lima", "{\"answer\": \"Lima\"}", 1, 1, 1},
        {"json", "Lima", "{\"answer\": \"Rome\"}", 0, 1, 1},
        {"json", "432", "{\"answer\": 432} I hope this helps.", 1, 0, 0},
        {"json", "432", "The answer is 432.", 1, 0, 1},
        {"number", "5", "It is 3.5 or so", 0, 1, 1},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        demo_verdict v;
        CHECK(demo_judge(k[i].check, k[i].answer, k[i].response, &v) == 0, "judge %zu", i);
        CHECK(v.correct == k[i].c && v.follows_format == k[i].f && v.concise == k[i].k &&
              v.score == 4 * k[i].c + 2 * k[i].f + k[i].k,
              "judge(%s, '%s', '%s') = c%d f%d k%d s%d, want c%d f%d k%d", k[i].check, k[i].answer, k[i].response,
              v.correct, v.follows_format, v.concise, v.score, k[i].c, k[i].f, k[i].k);
    }
    demo_verdict v;
    CHECK(demo_judge("nope", "a", "a", &v) == -1, "unknown check");
}

static void test_task_from_prompt(void) {
    demo_task t;
    CHECK(demo_task_from_prompt(NULL, "Take 5 away from 12. Reply with only the number.", &t) == 0 &&
          !strcmp(t.answer, "7") && !strcmp(t.check, "exact") && !strcmp(t.skill, "format") && !strcmp(t.reference, "7"),
          "reversed subtraction in word mode: answer '%s' check '%s'", t.answer, t.check);
    CHECK(demo_task_from_prompt("Be concise: reply with the answer only.", "What is the capital of Peru?", &t) == 0 &&
          !strcmp(t.answer, "Lima") && !strcmp(t.skill, "style") && !strcmp(t.reference, "Lima."), "concise system");
    CHECK(demo_task_from_prompt("", "What is a baby cat called? Reply in uppercase.", &t) == 0 &&
          !strcmp(t.reference, "A BABY CAT IS CALLED A KITTEN."), "uppercase fact: '%s'", t.reference);
    CHECK(demo_task_from_prompt(NULL, "What is the capital of Atlantis?", &t) == -1, "unknown subject");
    CHECK(demo_task_from_prompt(NULL, "What is 5 * 3?", &t) == -1, "unknown operator");
    CHECK(demo_task_from_prompt("You are a pirate.", "What is 5 + 3?", &t) == -1, "unknown system message");
    CHECK(demo_task_from_prompt(NULL, "What is 5 + 3? Answer with one word. Be brief.", &t) == -1, "two instructions");
    /* every drawn task round-trips */
    gk_rng r; gk_rng_seed(&r, 99);
    for (int i = 0; i < 2000; i++) {
        demo_task a, b;
        demo_task_draw(&r, (demo_split)(i % 4), &a);
        CHECK(demo_task_from_prompt(a.system, a.user, &b) == 0 && !memcmp(&a, &b, sizeof a),
              "round trip of '%s' / '%s'", a.system, a.user);
        CHECK(demo_prompt_split(a.system, a.user) == (demo_split)(i % 4), "draw respects the split");
        if (tl_failed_checks) break;
    }
}

static void test_fewshot(void) {
    demo_task t;
    gk_rng r; gk_rng_seed(&r, 5);
    demo_task_draw(&r, DEMO_SPLIT_EVAL, &t);
    char *p = demo_fewshot_prompt(&t, 3, 1), *q = demo_fewshot_prompt(&t, 3, 1), *z = demo_fewshot_prompt(&t, 0, 1);
    CHECK(!strcmp(p, q), "few-shot prompt not deterministic");
    int nq = 0;
    for (const char *s = p; (s = strstr(s, "Q: ")); s += 3) nq++;
    CHECK(nq == 4, "want 3 examples + the question, got %d Q:s in:\n%s", nq, p);
    size_t n = strlen(p);
    CHECK(n > 4 && !strcmp(p + n - 3, "\nA:"), "prompt must end with \"\\nA:\": %s", p);
    CHECK(strstr(p, t.user) != NULL && strstr(p, t.user) == strrchr(p, 'Q') + 3 + (t.system[0] ? strlen(t.system) + 1 : 0),
          "the task's question comes last: %s", p);
    CHECK(!strncmp(z, "Q: ", 3) && strstr(z, "\n\n") == NULL, "k=0 is just the question: %s", z);
    /* examples come from the training split and share t's check */
    char *dup = gk_strdup(p), *save = NULL;
    for (char *blk = strtok_r(dup, "\n", &save); blk; blk = strtok_r(NULL, "\n", &save)) {
        if (strncmp(blk, "Q: ", 3) != 0 || strstr(blk, t.user)) continue;
        demo_task ex; int ok = 0;
        /* question = [system ]user: try each known split point */
        for (char *sp = blk + 3; sp && !ok; sp = strchr(sp + 1, ' ')) {
            char sys[DEMO_TEXT_MAX] = "";
            const char *user = blk + 3;
            if (sp != blk + 3) { snprintf(sys, sizeof sys, "%.*s", (int)(sp - blk - 3), blk + 3); user = sp + 1; }
            if (demo_task_from_prompt(sys, user, &ex) == 0) {
                ok = 1;
                CHECK(demo_prompt_split(sys, user) == DEMO_SPLIT_SFT, "example '%s' not from the SFT split", blk);
                CHECK(!strcmp(ex.check, t.check), "example check %s != %s", ex.check, t.check);
            }
        }
        CHECK(ok, "example question not a demo prompt: %s", blk);
    }
    free(dup); free(p); free(q); free(z);
}

static void test_eval_read_back(void) {
    char *dir = tl_tmpdir("demo_eval_rb");
    char *path = gen_to(dir, "eval.jsonl", demo_gen_eval, 50, 3);
    demo_task *a = NULL, *b = NULL; gk_err err;
    long n = demo_read_eval(path, &a, &err);
    CHECK(n == 50, "read back %ld: %s", n, n < 0 ? err.msg : "");
    CHECK(demo_eval_tasks(50, 3, NULL, &b, &err) == 50, "in-memory eval set");
    for (long i = 0; i < n && a && b; i++)
        CHECK(!memcmp(&a[i], &b[i], sizeof a[i]), "task %ld differs after the round trip", i);
    free(a); free(b);
    /* a bad line names file:line and the field */
    char *bad = gk_path_join(dir, "bad.jsonl");
    const char *txt = "{\"prompt\":\"What is 1 + 1?\",\"answer\":\"2\",\"skill\":\"arith\",\"check\":\"number\"}\n"
                      "{\"prompt\":\"What is 1 + 2?\",\"skill\":\"arith\",\"check\":\"number\"}\n";
    CHECK(gk_write_file_atomic(bad, txt, strlen(txt), &err) == 0, "write");
    CHECK(demo_read_eval(bad, &a, &err) == -1 && strstr(err.msg, "bad.jsonl:2") && strstr(err.msg, "answer"),
          "error should name line 2 and the answer field: %s", err.msg);
    txt = "{\"prompt\":\"What is 1 + 1?\",\"answer\":\"2\",\"skill\":\"arith\",\"check\":\"fuzzy\"}\n";
    CHECK(gk_write_file_atomic(bad, txt, strlen(txt), &err) == 0, "write");
    CHECK(demo_read_eval(bad, &a, &err) == -1 && strstr(err.msg, "check"), "unknown check: %s", err.msg);
    txt = "not json\n";
    CHECK(gk_write_file_atomic(bad, txt, strlen(txt), &err) == 0, "write");
    CHECK(demo_read_eval(bad, &a, &err) == -1 && strstr(err.msg, ":1"), "not JSON: %s", err.msg);
    free(bad); free(path); free(dir);
}

static void test_bad_arguments(void) {
    gk_err err;
    CHECK(demo_gen_sft("/tmp/never.jsonl", 0, 1, NULL, &err) == -1 && strstr(err.msg, "count"), "n=0: %s", err.msg);
    CHECK(demo_gen_prefs("/nonexistent-dir/x/prefs.jsonl", 5, 1, NULL, &err) == -1, "unwritable path");
    CHECK(demo_gen_eval("", 5, 1, NULL, &err) == -1, "empty path");
}

/* ---------------------------------------------------------------- corpus */

static void test_corpus_extract(void) {
    char *dir = tl_tmpdir("demo_corpus");
    char *out = gk_path_join(dir, "kjv.txt");
    gk_err err;
    CHECK(demo_corpus_extract(tl_path(DEMO_CORPUS_REL), out, &err) == 0, "extract: %s", err.msg);
    size_t n; char *d = slurp(out, &n);
    CHECK(n == 4137847, "kjv.txt is %zu bytes, want 4137847 (data/README.md)", n);
    CHECK(!strncmp(d, "In the beginning God created the heaven and the earth.\n", 55), "first verse");
    CHECK(n > 60 && !strcmp(d + n - 58, "The grace of our Lord Jesus Christ be with you all. Amen.\n"), "last verse");
    size_t lines = 0;
    for (size_t i = 0; i < n; i++) lines += d[i] == '\n';
    CHECK(lines == 31102, "%zu lines, want 31102 verses", lines);
    free(d);
    char *found = demo_corpus_locate();
    CHECK(found && gk_file_exists(found), "demo_corpus_locate found nothing");
    free(found);

    /* a plain file, a truncated stream and a missing file are errors, and leave no output behind */
    char *plain = gk_path_join(dir, "plain.gz"), *trunc = gk_path_join(dir, "trunc.gz"), *o2 = gk_path_join(dir, "o2.txt");
    CHECK(gk_write_file_atomic(plain, "hello\n", 6, &err) == 0, "write");
    CHECK(demo_corpus_extract(plain, o2, &err) == -1 && strstr(err.msg, "not a gzip"), "plain file: %s", err.msg);
    size_t gl; char *gz = slurp(tl_path(DEMO_CORPUS_REL), &gl);
    CHECK(gk_write_file_atomic(trunc, gz, gl / 2, &err) == 0, "write");
    CHECK(demo_corpus_extract(trunc, o2, &err) == -1, "truncated gzip accepted");
    gz[gl / 3] ^= 0x55; gz[gl / 3 + 1] ^= 0x55;
    CHECK(gk_write_file_atomic(trunc, gz, gl, &err) == 0, "write");
    CHECK(demo_corpus_extract(trunc, o2, &err) == -1, "corrupt gzip accepted");
    CHECK(demo_corpus_extract("/nonexistent/kjv.txt.gz", o2, &err) == -1 && strstr(err.msg, "/nonexistent"), "missing: %s", err.msg);
    CHECK(!gk_file_exists(o2), "a failed extraction left %s behind", o2);
    free(gz); free(plain); free(trunc); free(o2); free(out); free(dir);
}


/* ---------------------------------------------------------------- reading sources (retrieval) */

/* The documents' facts and the SFT reading exercises: every answer is in its document and in its reply; the
 * exercises take the share asked for, each a user turn "Sources:\n[1] (FILE#person-N) DOC\n\nQuestion: Q"
 * whose reply quotes the source; the people are never the evaluation set's. */
typedef struct { long lines, rag; size_t bad; char eval_names[200][48]; } rag_ctx;
static void rag_line(const cJSON *obj, const char *where, void *vctx) {
    rag_ctx *c = vctx;
    c->lines++;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, "messages");
    const cJSON *u = cJSON_GetArrayItem(m, 0), *a = cJSON_GetArrayItem(m, 1);
    const char *ut = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(u, "content"));
    if (!ut || strncmp(ut, "Sources:", 8)) return;
    c->rag++;
    const char *at = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "content"));
    const char *ur = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(u, "role"));
    const char *ar = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "role"));
    const char *q = strstr(ut, "\n\nQuestion: ");
    int ok = cJSON_GetArraySize(m) == 2 && ur && !strcmp(ur, "user") && ar && !strcmp(ar, "assistant") && at && q &&
             !strncmp(ut, "Sources:\n[1] (d/docs.jsonl#person-", 34) && !strstr(ut, "[2] (");
    /* the reply quotes the source: its words (without the final '.') are a span of the document */
    char quote[256] = "", src[1024] = "";
    if (at && at[0]) snprintf(quote, sizeof quote, "%.*s", (int)strlen(at) - 1, at);
    if (q) snprintf(src, sizeof src, "%.*s", (int)(q - ut), ut);
    ok = ok && quote[0] && at[strlen(at) - 1] == '.' && strstr(src, quote) && strlen(quote) > 10;
    /* the question's person is not one of the evaluation set's */
    for (int i = 0; ok && i < 200; i++) ok = !strstr(q, c->eval_names[i]);
    if (!ok && c->bad++ < 3) tl_fail_at(__FILE__, __LINE__, "%s: bad reading exercise: %s -> %s", where, ut, at ? at : "(none)");
}

static void test_rag_docs_and_sft(void) {
    gk_rng r; gk_rng_seed(&r, 11);
    for (long i = 0; i < 300; i++) {
        rag_doc d;
        rag_doc_draw(&r, i, &d);
        char want_id[32]; snprintf(want_id, sizeof want_id, "person-%ld", i);
        CHECK(!strcmp(d.id, want_id), "id %s", d.id);
        for (int k = 0; k < 4; k++) {
            CHECK(demo_check_answer("contains", d.answer[k], d.text) == 1, "answer '%s' not in: %s", d.answer[k], d.text);
            CHECK(demo_check_answer("contains", d.answer[k], d.reply[k]) == 1, "answer '%s' not in reply '%s'", d.answer[k], d.reply[k]);
            char quote[160]; snprintf(quote, sizeof quote, "%.*s", (int)strlen(d.reply[k]) - 1, d.reply[k]);
            CHECK(strstr(d.text, quote) && d.reply[k][strlen(d.reply[k]) - 1] == '.', "reply '%s' does not quote: %s", d.reply[k], d.text);
            CHECK(demo_check_answer("contains", d.answer[k], d.question[k]) == 0, "question '%s' gives away '%s'", d.question[k], d.answer[k]);
            char aug[2048];
            size_t n = rag_augmented_question(&d, "x.jsonl", k, aug, sizeof aug);
            CHECK(n < sizeof aug && strstr(aug, d.question[k]) && strstr(aug, "(x.jsonl#person-") && aug[n - 1] == '?', "augmented: %s", aug);
        }
    }
    /* the SFT file: 30% reading exercises here (default 0: the golden checksums above) */
    rag_ctx *c = calloc(1, sizeof *c);
    gk_rng_seed(&r, 1337);   /* the pipeline's evaluation documents with its default seed */
    for (int i = 0; i < 200; i++) {
        rag_doc d; rag_doc_draw(&r, i, &d);
        const char *name = strstr(d.text, " was born");
        snprintf(c->eval_names[i], sizeof c->eval_names[i], "%.*s?", (int)(name - d.text), d.text);
    }
    char *dir = tl_tmpdir("demo_rag"), *p = gk_path_join(dir, "sft.jsonl");
    demo_opts o; demo_opts_default(&o);
    o.sft_rag = 0.3; o.sft_tools = 0.2; o.rag_source = "d/docs.jsonl";
    gk_err err;
    CHECK(demo_gen_sft(p, 2000, 9, &o, &err) == 2000, "%s", err.msg);
    for_lines(p, rag_line, c);
    CHECK(c->lines == 2000 && c->rag > 520 && c->rag < 680, "%ld reading exercises in %ld lines, want about 600", c->rag, c->lines);
    CHECK(c->bad == 0, "%zu bad reading exercises", c->bad);
    free(c); free(p); free(dir);
}

int main(void) {
    TL_RUN(test_same_seed_same_bytes);
    TL_RUN(test_golden_checksums);
    TL_RUN(test_lines_and_splits);
    TL_RUN(test_prefs_content_contrasts);
    TL_RUN(test_skill_mix);
    TL_RUN(test_checker_hand_cases);
    TL_RUN(test_judge_hand_cases);
    TL_RUN(test_task_from_prompt);
    TL_RUN(test_fewshot);
    TL_RUN(test_eval_read_back);
    TL_RUN(test_bad_arguments);
    TL_RUN(test_corpus_extract);
    TL_RUN(test_rag_docs_and_sft);
    return tl_summary();
}
