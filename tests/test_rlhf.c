/* test_rlhf.c: reward-model, PPO and DPO loss math against PyTorch, on plain arrays and through a tiny
 * model; preference-data parsing and its error messages; the Wilson interval and the KL controller.
 *
 * Fixtures: tests/fixtures/rlhf/, made by tests/ref/gen_rlhf_fixtures.py and gen_grpo_fixtures.py (GRPO: grpo.safetensors)
 * (float64 autograd on fp32 inputs).
 * Tolerances: loss-level values 1e-6 relative (fp32 storage); through the model (fp32 vs float64):
 *   values / losses 1e-5 + 1e-4 relative; grads |d| <= 1e-4 |ref| + 1e-4 * max|ref of that tensor|.
 */
#include "train/train.h"
#include "eval/eval.h"
#include "data/data.h"
#include "kern/kern.h"
#include "testlib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FIX "tests/fixtures/rlhf"

static float *ld(const st_file *f, const char *name, size_t *n) {
    const st_tensor *t = st_find(f, name);
    if (!t) { CHECK(0, "fixture tensor %s missing", name); return NULL; }
    size_t numel = 1;
    for (int i = 0; i < t->ndim; i++) numel *= t->shape[i];
    float *d = malloc((numel ? numel : 1) * sizeof(float));
    gk_err err;
    if (st_read_f32(f, t, d, &err)) { CHECK(0, "%s: %s", name, err.msg); free(d); return NULL; }
    if (n) *n = numel;
    return d;
}
static int32_t *ldi(const st_file *f, const char *name, size_t *n) {
    const st_tensor *t = st_find(f, name);
    if (!t || strcmp(t->dtype, "I32")) { CHECK(0, "fixture int tensor %s missing", name); return NULL; }
    size_t bytes = t->end - t->begin;
    int32_t *d = malloc(bytes ? bytes : 4);
    memcpy(d, f->data + t->begin, bytes);
    if (n) *n = bytes / 4;
    return d;
}
static double sc(const st_file *f, const char *name) {
    float *x = ld(f, name, NULL);
    double v = x ? x[0] : NAN;
    free(x);
    return v;
}
static int open_fix(st_file *f, const char *name) {
    gk_err err;
    if (st_open(f, tl_path(name), &err)) { CHECK(0, "%s", err.msg); return -1; }
    return 0;
}

/* ---------------------------------------------------------------- loss level */

static void rm_case(const char *pfx) {
    st_file f; if (open_fix(&f, FIX "/losses.safetensors")) return;
    char nm[64]; size_t n, ng;
#define NM(s) (snprintf(nm, sizeof nm, "%s.%s", pfx, s), nm)
    float *r = ld(&f, NM("r"), &n), *dr_want = ld(&f, NM("dr"), NULL);
    int32_t *fi = ldi(&f, NM("first"), &ng), *co = ldi(&f, NM("count"), NULL);
    double want = sc(&f, NM("loss"));
    if (r && dr_want && fi && co) {
        size_t first[16], count[16];
        for (size_t g = 0; g < ng; g++) { first[g] = (size_t)fi[g]; count[g] = (size_t)co[g]; }
        float dr[32];
        rlhf_rm_stats st;
        double loss = rlhf_rm_loss(r, first, count, ng, dr, &st);
        CHECK_CLOSE(loss, want, 1e-6, 1e-6, "rm loss");
        CHECK_ARRAYS("rm dloss/dr", dr, dr_want, n, 1e-7, 1e-5);
        size_t pairs = 0; double correct = 0;
        for (size_t g = 0; g < ng; g++)
            for (size_t i = 0; i < count[g]; i++)
                for (size_t j = i + 1; j < count[g]; j++) { pairs++; correct += r[first[g] + i] > r[first[g] + j]; }
        CHECK(st.npairs == pairs, "pairs %zu want %zu", st.npairs, pairs);
        CHECK_CLOSE(st.accuracy, correct / (double)pairs, 1e-12, 0, "rm accuracy");
    }
#undef NM
    free(r); free(dr_want); free(fi); free(co);
    st_close(&f);
}
static void test_rm_loss_pairs(void) { rm_case("rm_pairs"); }
static void test_rm_loss_ranking(void) { rm_case("rm_rank"); }

static void test_kl_rewards(void) {
    st_file f; if (open_fix(&f, FIX "/losses.safetensors")) return;
    size_t n;
    float *lp = ld(&f, "kl.logp", &n), *ref = ld(&f, "kl.ref", NULL), *pr = ld(&f, "kl.params", NULL), *want = ld(&f, "kl.rewards", NULL);
    if (lp && ref && pr && want) {
        float rw[64];
        double kl = rlhf_kl_rewards(lp, ref, n, pr[0], pr[1], rw);
        CHECK_ARRAYS("kl rewards", rw, want, n, 1e-6, 1e-5);
        CHECK_CLOSE(kl, sc(&f, "kl.kl"), 1e-5, 1e-5, "kl");
    }
    free(lp); free(ref); free(pr); free(want);
    st_close(&f);
}

static void test_gae(void) {
    st_file f; if (open_fix(&f, FIX "/losses.safetensors")) return;
    size_t n;
    float *r = ld(&f, "gae.rewards", &n), *v = ld(&f, "gae.values", NULL), *p = ld(&f, "gae.params", NULL);
    float *adv_w = ld(&f, "gae.adv", NULL), *ret_w = ld(&f, "gae.ret", NULL);
    float *adv1_w = ld(&f, "gae.adv_g1", NULL), *ret1_w = ld(&f, "gae.ret_g1", NULL);
    if (r && v && p && adv_w && ret_w && adv1_w && ret1_w) {
        float adv[64], ret[64];
        rlhf_gae(r, v, n, p[0], p[1], adv, ret);
        CHECK_ARRAYS("gae advantages", adv, adv_w, n, 1e-6, 1e-5);
        CHECK_ARRAYS("gae returns", ret, ret_w, n, 1e-6, 1e-5);
        rlhf_gae(r, v, n, 1.0f, 0.95f, adv, ret);
        CHECK_ARRAYS("gae advantages (gamma 1)", adv, adv1_w, n, 1e-6, 1e-5);
        CHECK_ARRAYS("gae returns (gamma 1)", ret, ret1_w, n, 1e-6, 1e-5);
    }
    free(r); free(v); free(p); free(adv_w); free(ret_w); free(adv1_w); free(ret1_w);
    float *x = ld(&f, "whiten.x", &n), *y = ld(&f, "whiten.y", NULL);
    if (x && y) { rlhf_whiten(x, n, 0); CHECK_ARRAYS("whiten", x, y, n, 1e-6, 1e-5); }
    free(x); free(y);
    st_close(&f);
}

static void test_ppo_policy_loss(void) {
    st_file f; if (open_fix(&f, FIX "/losses.safetensors")) return;
    size_t n;
    float *lp = ld(&f, "pg.logp", &n), *old = ld(&f, "pg.old", NULL), *adv = ld(&f, "pg.adv", NULL), *dw = ld(&f, "pg.dlogp", NULL);
    if (lp && old && adv && dw) {
        float d[64];
        rlhf_ppo_stats st;
        double loss = rlhf_ppo_policy_loss(lp, old, adv, n, (float)sc(&f, "pg.eps"), d, &st);
        CHECK_CLOSE(loss, sc(&f, "pg.loss"), 1e-6, 1e-5, "policy loss");
        CHECK_ARRAYS("policy dloss/dlogp", d, dw, n, 1e-7, 1e-5);
        CHECK_CLOSE(st.clip_frac, sc(&f, "pg.clip_frac"), 1e-6, 0, "clip fraction");
        CHECK(st.clip_frac > 0.05 && st.clip_frac < 0.95, "fixture should exercise both branches (clip frac %g)", st.clip_frac);
    }
    free(lp); free(old); free(adv); free(dw);
    st_close(&f);
}

static void test_value_loss(void) {
    st_file f; if (open_fix(&f, FIX "/losses.safetensors")) return;
    size_t n;
    float *v = ld(&f, "vf.v", &n), *old = ld(&f, "vf.old", NULL), *ret = ld(&f, "vf.ret", NULL), *dw = ld(&f, "vf.dv", NULL);
    if (v && old && ret && dw) {
        float d[64]; double cf;
        double loss = rlhf_value_loss(v, old, ret, n, (float)sc(&f, "vf.clip"), d, &cf);
        CHECK_CLOSE(loss, sc(&f, "vf.loss"), 1e-6, 1e-5, "value loss");
        CHECK_ARRAYS("value dloss/dv", d, dw, n, 1e-7, 1e-5);
        CHECK(cf > 0.02 && cf < 0.98, "fixture should exercise both branches (clip frac %g)", cf);
    }
    free(v); free(old); free(ret); free(dw);
    st_close(&f);
}

static void test_dpo_loss(void) {
    st_file f; if (open_fix(&f, FIX "/losses.safetensors")) return;
    size_t n;
    float *pc = ld(&f, "dpo.pc", &n), *pr = ld(&f, "dpo.pr", NULL), *rc = ld(&f, "dpo.rc", NULL), *rr = ld(&f, "dpo.rr", NULL);
    float *dpcw = ld(&f, "dpo.dpc", NULL), *dprw = ld(&f, "dpo.dpr", NULL);
    if (pc && pr && rc && rr && dpcw && dprw) {
        float dpc[64], dpr[64];
        rlhf_dpo_stats st;
        double loss = rlhf_dpo_loss(pc, pr, rc, rr, n, (float)sc(&f, "dpo.beta"), dpc, dpr, &st);
        CHECK_CLOSE(loss, sc(&f, "dpo.loss"), 1e-6, 1e-5, "dpo loss");
        CHECK_ARRAYS("dpo dloss/dchosen", dpc, dpcw, n, 1e-8, 1e-5);
        CHECK_ARRAYS("dpo dloss/drejected", dpr, dprw, n, 1e-8, 1e-5);
        CHECK_CLOSE(st.accuracy, sc(&f, "dpo.acc"), 1e-6, 0, "dpo accuracy");
    }
    free(pc); free(pr); free(rc); free(rr); free(dpcw); free(dprw);
    st_close(&f);
}

/* ---------------------------------------------------------------- through the model */

typedef struct { gpt_model *m; rlhf_seq seqs[8]; size_t n; st_file f; } mfix;

static int mfix_open(mfix *x) {
    memset(x, 0, sizeof *x);
    gk_err err;
    x->m = gpt_load(tl_path(FIX "/model"), NULL, &err);
    if (!x->m) { CHECK(0, "%s", err.msg); return -1; }
    CHECK(x->m->cfg.score_head, "fixture model has a score head");
    if (open_fix(&x->f, FIX "/model_cases.safetensors")) { gpt_free(x->m); return -1; }
    size_t nid, nl;
    int32_t *ids = ldi(&x->f, "seq.ids", &nid), *len = ldi(&x->f, "seq.len", &nl), *pl = ldi(&x->f, "seq.plen", NULL);
    if (!ids || !len || !pl) { free(ids); free(len); free(pl); return -1; }
    size_t T = nid / nl;
    x->n = nl;
    for (size_t i = 0; i < nl; i++) {
        x->seqs[i].n = (size_t)len[i]; x->seqs[i].prompt_len = (size_t)pl[i];
        x->seqs[i].ids = malloc((size_t)len[i] * sizeof(int32_t));
        memcpy(x->seqs[i].ids, ids + i * T, (size_t)len[i] * sizeof(int32_t));
    }
    free(ids); free(len); free(pl);
    gpt_alloc_grads(x->m);
    gpt_zero_grads(x->m);
    return 0;
}
static void mfix_close(mfix *x) {
    for (size_t i = 0; i < x->n; i++) rlhf_seq_free(&x->seqs[i]);
    gpt_free(x->m);
    st_close(&x->f);
}

static const char *GRADS[] = {"score.weight", "wte.weight", "wpe.weight", "h.0.attn.c_attn.weight",
                              "h.1.mlp.c_proj.weight", "ln_f.bias"};

static void check_grads(mfix *x, const char *pfx, int skip_score) {
    for (size_t g = 0; g < sizeof GRADS / sizeof GRADS[0]; g++) {
        if (skip_score && g == 0) continue;
        if (!strcmp(pfx, "mrm") && !strcmp(GRADS[g], "ln_f.bias")) {
            /* The pairwise loss is shift-invariant and ln_f.bias shifts every reward alike: its gradient is
             * exactly 0 in exact arithmetic (the reference's is), so only check it is tiny. */
            const gpt_param *p = gpt_find_param(x->m, GRADS[g]);
            float got[64];
            kern_download(x->m->be, got, x->m->grads + p->offset, p->numel * sizeof(float));
            for (size_t i = 0; i < p->numel; i++) CHECK(fabsf(got[i]) < 1e-6f, "ln_f.bias grad[%zu] = %g", i, got[i]);
            continue;
        }
        char nm[128];
        snprintf(nm, sizeof nm, "%s.grad.%s%s", pfx, g == 0 ? "" : "transformer.", GRADS[g]);
        size_t n;
        float *want = ld(&x->f, nm, &n);
        const gpt_param *p = gpt_find_param(x->m, GRADS[g]);
        if (!want || !p) { free(want); CHECK(p, "param %s", GRADS[g]); continue; }
        CHECK(n == p->numel, "%s: %zu values, model has %zu", nm, n, p->numel);
        float *got = malloc(p->numel * sizeof(float));
        kern_download(x->m->be, got, x->m->grads + p->offset, p->numel * sizeof(float));
        double mx = 0;
        for (size_t i = 0; i < n; i++) if (fabs(want[i]) > mx) mx = fabs(want[i]);
        CHECK(mx > 0, "%s: reference gradient is all zero (a test that cannot fail)", nm);
        CHECK_ARRAYS(nm, got, want, n, 1e-4 * mx + 1e-9, 1e-4);
        free(got); free(want);
    }
}

/* Flattens the per-row values at target rows, sequence by sequence (the fixture's order). */
static size_t gather(const float *rows, const int32_t *tg, size_t n, float *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) if (tg[i] >= 0) out[k++] = rows[i];
    return k;
}
static void scatter(const float *flat, const int32_t *tg, size_t n, float *rows) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) rows[i] = tg[i] >= 0 ? flat[k++] : 0.0f;
}

static void test_model_rm(void) {
    mfix x; if (mfix_open(&x)) return;
    size_t first[2] = {0, 4}, count[2] = {4, 2};
    float r[8];
    rlhf_rm_stats st;
    double loss = rlhf_rm_step(x.m, x.seqs, x.n, first, count, 2, 1, r, &st);
    float *rw = ld(&x.f, "mrm.r", NULL);
    if (rw) CHECK_ARRAYS("rewards at the last token (padded batch)", r, rw, x.n, 1e-5, 1e-4);
    CHECK_CLOSE(loss, sc(&x.f, "mrm.loss"), 1e-6, 1e-5, "rm loss through the model");
    CHECK(st.npairs == 7, "K=4 ranking + pair = 7 pairs, got %zu", st.npairs);
    check_grads(&x, "mrm", 0);
    free(rw);
    mfix_close(&x);
}

static void test_model_dpo(void) {
    mfix x; if (mfix_open(&x)) return;
    int32_t *in, *tg;
    size_t T = rlhf_lm_batch(x.seqs, x.n, &in, &tg), BT = x.n * T;
    float *logp = malloc(BT * sizeof(float)), *dlogp = malloc(BT * sizeof(float));
    train_lm *lp = train_lm_new(x.m);
    train_lm_logprobs(lp, in, tg, x.n, T, 1.0f, logp, NULL);
    float sums[8] = {0};
    for (size_t i = 0; i < x.n; i++) for (size_t t = 0; t < T; t++) sums[i] += logp[i * T + t];
    float *sw = ld(&x.f, "mdpo.sums", NULL), *ref = ld(&x.f, "mdpo.ref", NULL);
    if (sw && ref) {
        CHECK_ARRAYS("sequence log-probs", sums, sw, x.n, 1e-4, 1e-5);
        float pc[4], pr[4], rc[4], rr[4], dpc[4], dpr[4];
        for (size_t k = 0; k < 3; k++) { pc[k] = sums[2 * k]; pr[k] = sums[2 * k + 1]; rc[k] = ref[2 * k]; rr[k] = ref[2 * k + 1]; }
        double loss = rlhf_dpo_loss(pc, pr, rc, rr, 3, (float)sc(&x.f, "mdpo.beta"), dpc, dpr, NULL);
        CHECK_CLOSE(loss, sc(&x.f, "mdpo.loss"), 1e-5, 1e-4, "dpo loss through the model");
        for (size_t i = 0; i < x.n; i++)
            for (size_t t = 0; t < T; t++) dlogp[i * T + t] = (i % 2 ? dpr : dpc)[i / 2];
        train_lm_backward(lp, dlogp);
        check_grads(&x, "mdpo", 1);
    }
    free(sw); free(ref);
    train_lm_free(lp);
    free(in); free(tg); free(logp); free(dlogp);
    mfix_close(&x);
}

static void test_model_ppo_policy(void) {
    mfix x; if (mfix_open(&x)) return;
    int32_t *in, *tg;
    size_t T = rlhf_lm_batch(x.seqs, x.n, &in, &tg), BT = x.n * T;
    float *logp = malloc(BT * sizeof(float)), *ent = malloc(BT * sizeof(float)), *drow = malloc(BT * sizeof(float));
    float flat[256], dflat[256];
    train_lm *lp = train_lm_new(x.m);
    float temp = (float)sc(&x.f, "mpg.temp");
    train_lm_logprobs(lp, in, tg, x.n, T, temp, logp, ent);
    size_t n = gather(logp, tg, BT, flat), nw;
    float *lw = ld(&x.f, "mpg.logp", &nw), *old = ld(&x.f, "mpg.old", NULL), *adv = ld(&x.f, "mpg.adv", NULL);
    CHECK(n == nw, "response tokens %zu want %zu", n, nw);
    if (lw && old && adv && n == nw) {
        CHECK_ARRAYS("per-token log-probs at temperature", flat, lw, n, 1e-5, 1e-5);
        rlhf_ppo_stats st;
        double loss = rlhf_ppo_policy_loss(flat, old, adv, n, 0.2f, dflat, &st);
        CHECK_CLOSE(loss, sc(&x.f, "mpg.loss"), 1e-5, 1e-4, "ppo loss through the model");
        CHECK_CLOSE(st.clip_frac, sc(&x.f, "mpg.clip_frac"), 1e-6, 0, "clip fraction through the model");
        scatter(dflat, tg, BT, drow);
        train_lm_backward(lp, drow);
        check_grads(&x, "mpg", 1);
        for (size_t i = 0; i < BT; i++) CHECK(ent[i] >= 0 && (tg[i] >= 0 || ent[i] == 0), "entropy row %zu", i);
    }
    free(lw); free(old); free(adv);
    train_lm_free(lp);
    free(in); free(tg); free(logp); free(ent); free(drow);
    mfix_close(&x);
}

static void test_model_value(void) {
    mfix x; if (mfix_open(&x)) return;
    int32_t *in, *tg;
    size_t T = rlhf_lm_batch(x.seqs, x.n, &in, &tg), BT = x.n * T;
    float *v = malloc(BT * sizeof(float)), *drow = malloc(BT * sizeof(float));
    float flat[256], dflat[256];
    rlhf_vh *vh = rlhf_vh_new(x.m);
    rlhf_vh_forward(vh, in, x.n, T, v);
    size_t n = gather(v, tg, BT, flat), nw;
    float *vw = ld(&x.f, "mvf.v", &nw), *old = ld(&x.f, "mvf.old", NULL), *ret = ld(&x.f, "mvf.ret", NULL);
    if (vw && old && ret && n == nw) {
        CHECK_ARRAYS("values at response positions", flat, vw, n, 1e-5, 1e-4);
        double loss = rlhf_value_loss(flat, old, ret, n, 0.2f, dflat, NULL);
        CHECK_CLOSE(loss, sc(&x.f, "mvf.loss"), 1e-5, 1e-4, "value loss through the model");
        scatter(dflat, tg, BT, drow);
        rlhf_vh_backward(vh, drow);
        check_grads(&x, "mvf", 0);
    } else CHECK(0, "value fixture: %zu rows want %zu", n, nw);
    free(vw); free(old); free(ret);
    rlhf_vh_free(vh);
    free(in); free(tg); free(v); free(drow);
    mfix_close(&x);
}

/* ---------------------------------------------------------------- statistics */

static void test_wilson_and_kl_ctl(void) {
    double lo, hi;
    rlhf_wilson(50, 100, 1.96, &lo, &hi);
    CHECK_CLOSE(lo, 0.403832, 1e-5, 0, "wilson lo 50/100");   /* textbook values */
    CHECK_CLOSE(hi, 0.596168, 1e-5, 0, "wilson hi 50/100");
    rlhf_wilson(0, 10, 1.96, &lo, &hi);
    CHECK(lo == 0 && hi > 0.27 && hi < 0.28, "wilson 0/10: [%g, %g]", lo, hi);
    rlhf_wilson(10, 10, 1.96, &lo, &hi);
    CHECK(hi == 1 && lo > 0.72 && lo < 0.73, "wilson 10/10: [%g, %g]", lo, hi);
    rlhf_kl_ctl c = {0.1, 6.0, 100};
    rlhf_kl_ctl_update(&c, 12.0, 10);   /* KL twice the target: error clipped to +0.2 */
    CHECK_CLOSE(c.beta, 0.1 * 1.02, 1e-12, 0, "kl ctl up");
    rlhf_kl_ctl_update(&c, 0.0, 10);
    CHECK_CLOSE(c.beta, 0.1 * 1.02 * 0.98, 1e-12, 0, "kl ctl down");
    rlhf_kl_ctl fixed = {0.1, 0, 100};
    rlhf_kl_ctl_update(&fixed, 50, 10);
    CHECK(fixed.beta == 0.1, "fixed beta stays");
}

/* ---------------------------------------------------------------- preference data */

static void expect_line_err(const char *line, int accept, const char *want) {
    prefs_item it; gk_err err; err.msg[0] = 0;
    int rc = prefs_parse_line(line, "p.jsonl", 7, accept, &it, &err);
    CHECK(rc == -1, "line should fail: %s", line);
    CHECK(strstr(err.msg, "p.jsonl:7") && strstr(err.msg, want), "message '%s' lacks '%s'", err.msg, want);
    if (rc == 0) prefs_item_free(&it);
}

static void test_prefs_parse(void) {
    prefs_item it; gk_err err;
    CHECK(prefs_parse_line("{\"prompt\":\"hi\",\"chosen\":\"a\",\"rejected\":\"b\"}", "p", 1, PREFS_ACCEPT_PREFS, &it, &err) == 0, "%s", err.msg);
    CHECK(it.n_prompt == 1 && !strcmp(it.prompt[0].role, "user") && !strcmp(it.prompt[0].content, "hi"), "string prompt");
    CHECK(it.n_resp == 2 && !strcmp(it.resp[0], "a") && !strcmp(it.resp[1], "b"), "pair");
    prefs_item_free(&it);
    CHECK(prefs_parse_line("{\"prompt\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":\"u\"}],"
                           "\"ranked\":[\"1\",\"2\",\"3\",\"4\"]}", "p", 1, PREFS_ACCEPT_PREFS, &it, &err) == 0, "%s", err.msg);
    CHECK(it.n_prompt == 2 && !strcmp(it.prompt[0].role, "system") && it.n_resp == 4 && !strcmp(it.resp[3], "4"), "ranking");
    prefs_item_free(&it);
    CHECK(prefs_parse_line("{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]}",
                           "p", 1, PREFS_ACCEPT_SCORED, &it, &err) == 0, "%s", err.msg);
    CHECK(it.n_prompt == 1 && it.n_resp == 1 && !strcmp(it.resp[0], "a"), "chat line");
    prefs_item_free(&it);
    CHECK(prefs_parse_line("{\"prompt\":\"x\"}", "p", 1, PREFS_ACCEPT_PROMPTS, &it, &err) == 0, "%s", err.msg);
    CHECK(it.n_resp == 0, "prompt only");
    prefs_item_free(&it);

    expect_line_err("{\"prompt\":\"x\",\"chosen\":\"a\"}", PREFS_ACCEPT_PREFS, "field \"rejected\": missing");
    expect_line_err("{\"prompt\":\"x\",\"chosen\":1,\"rejected\":\"b\"}", PREFS_ACCEPT_PREFS, "field \"chosen\": must be a string");
    expect_line_err("{\"prompt\":\"x\",\"ranked\":[\"a\"]}", PREFS_ACCEPT_PREFS, "field \"ranked\": needs at least 2");
    expect_line_err("{\"prompt\":\"x\",\"ranked\":[\"a\",3]}", PREFS_ACCEPT_PREFS, "field \"ranked[1]\"");
    expect_line_err("{\"chosen\":\"a\",\"rejected\":\"b\"}", PREFS_ACCEPT_PREFS, "field \"prompt\": missing");
    expect_line_err("{\"prompt\":5,\"chosen\":\"a\",\"rejected\":\"b\"}", PREFS_ACCEPT_PREFS, "field \"prompt\"");
    expect_line_err("{\"prompt\":[{\"role\":\"bot\",\"content\":\"x\"}],\"chosen\":\"a\",\"rejected\":\"b\"}", PREFS_ACCEPT_PREFS,
                    "field \"prompt[0].role\": unknown role 'bot'");
    expect_line_err("{\"prompt\":[{\"role\":\"user\"}],\"chosen\":\"a\",\"rejected\":\"b\"}", PREFS_ACCEPT_PREFS, "prompt[0].content");
    expect_line_err("{\"prompt\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}],\"chosen\":\"a\",\"rejected\":\"b\"}",
                    PREFS_ACCEPT_PREFS, "ends with an assistant turn");
    expect_line_err("{\"prompt\":\"x\"}", PREFS_ACCEPT_PREFS, "field \"chosen\": missing");
    expect_line_err("{\"prompt\": \"x\", ", PREFS_ACCEPT_PREFS, "not valid JSON");
    expect_line_err("[1,2]", PREFS_ACCEPT_PREFS, "not a JSON object");
    expect_line_err("{\"prompt\":\"x\",\"chosen\":\"a\",\"rejected\":\"b\"}", PREFS_ACCEPT_PROMPTS, "not accepted");

    /* whole file: the line number counts blank lines */
    char *dir = tl_tmpdir("prefs");
    char *path = gk_path_join(dir, "p.jsonl");
    const char *txt = "{\"prompt\":\"a\",\"chosen\":\"x\",\"rejected\":\"y\"}\n\n{\"prompt\":\"b\",\"ranked\":[\"1\",\"2\",\"3\"]}\n";
    gk_write_file_atomic(path, txt, strlen(txt), &err);
    prefs_set s;
    CHECK(prefs_load(path, PREFS_ACCEPT_PREFS, &s, &err) == 0, "%s", err.msg);
    CHECK(s.n == 2 && s.items[1].line == 3 && prefs_num_pairs(&s) == 4, "file: n %zu pairs %zu", s.n, prefs_num_pairs(&s));
    prefs_free(&s);
    const char *bad = "{\"prompt\":\"a\",\"chosen\":\"x\",\"rejected\":\"y\"}\n{\"prompt\":\"b\",\"ranked\":\"no\"}\n";
    gk_write_file_atomic(path, bad, strlen(bad), &err);
    CHECK(prefs_load(path, PREFS_ACCEPT_PREFS, &s, &err) == -1 && strstr(err.msg, "p.jsonl:2: field \"ranked\""), "%s", err.msg);
    free(path); free(dir);
}


/* ---------------------------------------------------------------- GRPO */

static void test_grpo_advantages(void) {
    st_file f; if (open_fix(&f, FIX "/grpo.safetensors")) return;
    size_t n;
    float *r = ld(&f, "adv.r", &n), *want = ld(&f, "adv.adv", NULL);
    int32_t *G = ldi(&f, "adv.G", NULL);
    if (r && want && G) {
        float adv[64];
        rlhf_grpo_advantages(r, n / (size_t)G[0], (size_t)G[0], (float)sc(&f, "adv.eps"), adv);
        CHECK_ARRAYS("grpo advantages", adv, want, n, 1e-6, 1e-5);
        CHECK(adv[8] == 0 && adv[11] == 0, "a group with equal rewards has zero advantages (%g %g)", adv[8], adv[11]);
    }
    free(r); free(want); free(G);
    st_close(&f);
}

/* The loss and its gradient for both normalisations against PyTorch; the gradient also against central finite
 * differences of the loss itself (in double through the float inputs: h = 1e-3 on logp, points within 2h of a
 * clip boundary skipped since the loss has a kink there). */
static void grpo_case(const char *pfx) {
    st_file f; if (open_fix(&f, FIX "/grpo.safetensors")) return;
    char nm[64]; size_t n, no;
#define NM(s) (snprintf(nm, sizeof nm, "%s.%s", pfx, s), nm)
    float *lp = ld(&f, NM("logp"), &n), *old = ld(&f, NM("old"), NULL), *ref = ld(&f, NM("ref"), NULL);
    float *adv = ld(&f, NM("adv"), NULL), *pr = ld(&f, NM("params"), NULL), *dw = ld(&f, NM("dlogp"), NULL);
    int32_t *of = ldi(&f, NM("off"), &no);
    int tn = !strcmp(pfx, "tok");
    if (lp && old && ref && adv && pr && dw && of) {
        size_t off[16], N = no - 1;
        for (size_t i = 0; i < no; i++) off[i] = (size_t)of[i];
        float d[64];
        rlhf_grpo_stats st;
        double loss = rlhf_grpo_loss(lp, old, ref, off, adv, N, pr[0], pr[1], tn, d, &st);
        CHECK_CLOSE(loss, sc(&f, NM("loss")), 1e-6, 1e-5, "grpo loss");
        CHECK_CLOSE(st.kl, sc(&f, NM("kl")), 1e-6, 1e-5, "grpo kl (k3)");
        CHECK_ARRAYS("grpo dloss/dlogp", d, dw, n, 1e-7, 1e-5);
        CHECK(st.clip_frac > 0.05 && st.clip_frac < 0.95, "fixture should exercise both branches (clip frac %g)", st.clip_frac);
        /* finite differences */
        const float h = 1e-3f;
        size_t checked = 0;
        for (size_t t = 0; t < n; t++) {
            double rho = exp((double)lp[t] - (double)old[t]);
            if (fabs(rho - (1 - pr[0])) < 3 * h * rho || fabs(rho - (1 + pr[0])) < 3 * h * rho) continue;
            float save = lp[t];
            lp[t] = save + h; double up = rlhf_grpo_loss(lp, old, ref, off, adv, N, pr[0], pr[1], tn, NULL, NULL);
            lp[t] = save - h; double dn = rlhf_grpo_loss(lp, old, ref, off, adv, N, pr[0], pr[1], tn, NULL, NULL);
            lp[t] = save;
            double fd = (up - dn) / ((double)(save + h) - (double)(save - h));
            CHECK_CLOSE(d[t], fd, 2e-5, 2e-3, "grpo finite difference");
            checked++;
        }
        CHECK(checked > n / 2, "finite differences checked only %zu of %zu tokens", checked, n);
        /* at rollout time (logp = old) no token is clipped and the KL part of the gradient is beta w (1 - exp(ref - logp)) */
        rlhf_grpo_loss(old, old, ref, off, adv, N, pr[0], pr[1], tn, NULL, &st);
        CHECK(st.clip_frac == 0 && st.approx_kl == 0, "ratio 1 clips nothing (%g, %g)", st.clip_frac, st.approx_kl);
    }
#undef NM
    free(lp); free(old); free(ref); free(adv); free(pr); free(dw); free(of);
    st_close(&f);
}
static void test_grpo_loss_seq(void) { grpo_case("seq"); }
static void test_grpo_loss_token(void) { grpo_case("tok"); }

/* Verifiable rewards: demo tasks recovered from their prompt text, graded by the demo's checks; an "answer"
 * field graded by the strategies' extraction; the format flag. */
static void test_grpo_reward(void) {
    prefs_item it;
    gk_err err;
    grpo_task t;
    grpo_reward_out r;
    CHECK(prefs_parse_line("{\"prompt\": \"What is 47 + 385?\"}", "x", 1, PREFS_ACCEPT_ANY, &it, &err) == 0, "%s", err.msg);
    CHECK(grpo_task_of(&it, NULL, NULL, &t, &err) == 0 && !strcmp(t.answer, "432") && !strcmp(t.check, "number"),
          "demo arith task: answer %s check %s", t.answer, t.check);
    grpo_reward(&t, "The answer is 432.", 1, 1, 0.5f, &r);
    CHECK(r.correct && r.format && fabs(r.reward - 1.5) < 1e-12, "right, ended: %d %d %g", r.correct, r.format, r.reward);
    grpo_reward(&t, "The answer is 433.", 1, 1, 0.5f, &r);
    CHECK(!r.correct && r.format && fabs(r.reward - 0.5) < 1e-12, "wrong: %d %d %g", r.correct, r.format, r.reward);
    grpo_reward(&t, "The answer is 432. I hope this helps.", 1, 1, 0.5f, &r);
    CHECK(r.correct && !r.format, "rambling loses the format reward: %d %d", r.correct, r.format);
    grpo_reward(&t, "The answer is 432.", 0, 1, 0.5f, &r);
    CHECK(r.correct && !r.format, "a reply cut at max_new loses the format reward");
    prefs_item_free(&it);
    CHECK(prefs_parse_line("{\"prompt\": \"What is the capital of Peru? Reply in uppercase.\"}", "x", 1, PREFS_ACCEPT_ANY, &it, &err) == 0, "%s", err.msg);
    CHECK(grpo_task_of(&it, NULL, NULL, &t, &err) == 0 && !strcmp(t.check, "upper"), "upper task: %s", t.check);
    grpo_reward(&t, "THE CAPITAL OF PERU IS LIMA.", 1, 1, 0, &r);
    CHECK(r.correct && r.reward == 1, "uppercase right");
    grpo_reward(&t, "The capital of Peru is Lima.", 1, 1, 0, &r);
    CHECK(!r.correct && r.reward == 0, "uppercase instruction ignored: not correct under the check");
    prefs_item_free(&it);
    CHECK(prefs_parse_line("{\"prompt\": \"How many legs has a spider?\"}", "x", 1, PREFS_ACCEPT_ANY, &it, &err) == 0, "%s", err.msg);
    CHECK(grpo_task_of(&it, NULL, NULL, &t, &err) == -1 && strstr(err.msg, "answer"), "not a demo prompt: %s", err.msg);
    CHECK(grpo_task_of(&it, "8", NULL, &t, &err) == 0 && t.check[0] == 0, "answer field");
    grpo_reward(&t, "Let me count: 2 per pair, four pairs. The answer is 8.", 1, 1, 0, &r);
    CHECK(r.correct, "extracted after the marker");
    grpo_reward(&t, "The answer is 6.", 1, 1, 0, &r);
    CHECK(!r.correct, "wrong number");
    CHECK(grpo_task_of(&it, "8", "bogus", &t, &err) == -1 && strstr(err.msg, "check"), "unknown check: %s", err.msg);
    prefs_item_free(&it);
}

/* The gold judge is the demo's rule on any reply to a demo prompt; the paired interval of an accuracy difference. */
static void test_gold_and_paired(void) {
    demo_verdict v;
    CHECK(demo_gold(NULL, "What is 47 + 385?", "The answer is 432.", &v) == 0 && v.score == 7, "ideal reply scores 7 (%d)", v.score);
    CHECK(demo_gold("", "What is 47 + 385?", "Sure! The answer is 432.", &v) == 0 && v.score == 6, "rambling scores 6 (%d)", v.score);
    CHECK(demo_gold(NULL, "What is 47 + 385?", "The answer is 431.", &v) == 0 && v.score == 3 && !v.correct, "wrong scores 3 (%d)", v.score);
    CHECK(demo_gold(NULL, "What is the capital of Peru? Answer as JSON {\"answer\": ...}.", "{\"answer\": \"Lima\"}", &v) == 0 &&
          v.score == 7, "JSON reply scores 7 (%d)", v.score);
    CHECK(demo_gold(NULL, "What is the capital of Peru? Answer as JSON {\"answer\": ...}.", "The capital of Peru is Lima.", &v) == 0 &&
          v.score == 5, "format ignored scores 5 (%d)", v.score);
    CHECK(demo_gold(NULL, "How many legs has a spider?", "Eight.", &v) == -1, "not a demo prompt: no verdict");
    unsigned char a[10] = {1, 1, 1, 1, 1, 1, 0, 1, 1, 0}, b[10] = {0, 1, 0, 1, 0, 1, 0, 1, 0, 0};
    double m, lo, hi;
    rlhf_paired_diff(a, b, 10, 1.959964, &m, &lo, &hi);
    /* d = 1 on 4 tasks, 0 on 6: mean 0.4, sd sqrt(0.4*0.6*10/9), se = sd / sqrt(10) */
    double se = sqrt(0.4 * 0.6 * 10.0 / 9.0) / sqrt(10.0);
    CHECK_CLOSE(m, 0.4, 1e-12, 0, "paired mean");
    CHECK_CLOSE(lo, 0.4 - 1.959964 * se, 1e-12, 0, "paired lower end");
    CHECK_CLOSE(hi, 0.4 + 1.959964 * se, 1e-12, 0, "paired upper end");
    rlhf_paired_diff(a, a, 10, 1.959964, &m, &lo, &hi);
    CHECK(m == 0 && lo == 0 && hi == 0, "identical models: a zero-width interval at 0");
}

/* Expected calibration error against a hand computation: bins 9 (0.95, 0.95, 1.0 clamped in: 2 of 3 right),
 * 3 (0.35, 0.31: 1 of 2) and 6 (0.62: right): 3/6 x |2/3 - 0.96667| + 2/6 x |0.5 - 0.33| + 1/6 x |1 - 0.62| = 0.27. */
static void test_calibration_stats(void) {
    const double conf[6] = { 0.95, 0.95, 0.35, 0.31, 0.62, 1.0 };
    const unsigned char right[6] = { 1, 0, 0, 1, 1, 1 };
    eval_calib cs;
    eval_calib_stats(conf, right, 6, &cs);
    CHECK_CLOSE(cs.ece, 0.27, 1e-12, 0, "ece");
    CHECK_CLOSE(cs.acc, 4.0 / 6.0, 1e-12, 0, "accuracy");
    CHECK_CLOSE(cs.conf, 4.18 / 6.0, 1e-12, 0, "mean confidence");
    CHECK(cs.bin_n[9] == 3 && cs.bin_n[3] == 2 && cs.bin_n[6] == 1 && cs.bin_n[0] == 0, "bin counts");
    CHECK_CLOSE(cs.bin_conf[3], 0.33, 1e-12, 0, "bin 3 confidence");
    CHECK_CLOSE(cs.bin_acc[9], 2.0 / 3.0, 1e-12, 0, "bin 9 accuracy");
    eval_calib_stats(conf, right, 0, &cs);
    CHECK(cs.n == 0 && cs.ece == 0, "no items");
}

/* The multiple-choice items: held-out plain-mode tasks, one right reply (the reference) among distinct wrong ones
 * that fail the task's own check; the same seed gives the same items. */
static void test_mc_items(void) {
    demo_mc *a = NULL, *b = NULL;
    gk_err err;
    long n = demo_mc_items(60, 7, &a, &err), m = demo_mc_items(60, 7, &b, &err);
    CHECK(n == 60 && m == 60, "items: %ld %ld", n, m);
    int arith = 0;
    for (long i = 0; i < n; i++) {
        const demo_mc *x = &a[i];
        CHECK(demo_prompt_split(x->t.system, x->t.user) == DEMO_SPLIT_EVAL, "item %ld is held out", i);
        CHECK(x->right >= 0 && x->right < DEMO_MC_K && !strcmp(x->choice[x->right], x->t.reference), "item %ld right reply", i);
        arith += !strcmp(x->t.skill, "arith");
        for (int c = 0; c < DEMO_MC_K; c++) {
            CHECK(demo_check_answer(x->t.check, x->t.answer, x->choice[c]) == (c == x->right), "item %ld choice %d: %s", i, c, x->choice[c]);
            for (int d = 0; d < c; d++) CHECK(strcmp(x->choice[c], x->choice[d]), "item %ld: choices %d and %d repeat", i, c, d);
        }
        CHECK(!memcmp(x, &b[i], sizeof *x), "item %ld differs between two runs of one seed", i);
    }
    CHECK(arith > 5 && arith < n - 5, "both kinds: %d arithmetic of %ld", arith, n);
    free(a); free(b);
}

int main(void) {
    TL_RUN(test_rm_loss_pairs);
    TL_RUN(test_rm_loss_ranking);
    TL_RUN(test_kl_rewards);
    TL_RUN(test_gae);
    TL_RUN(test_ppo_policy_loss);
    TL_RUN(test_value_loss);
    TL_RUN(test_dpo_loss);
    TL_RUN(test_model_rm);
    TL_RUN(test_model_dpo);
    TL_RUN(test_model_ppo_policy);
    TL_RUN(test_model_value);
    TL_RUN(test_wilson_and_kl_ctl);
    TL_RUN(test_prefs_parse);
    TL_RUN(test_grpo_advantages);
    TL_RUN(test_grpo_loss_seq);
    TL_RUN(test_grpo_loss_token);
    TL_RUN(test_grpo_reward);
    TL_RUN(test_gold_and_paired);
    TL_RUN(test_calibration_stats);
    TL_RUN(test_mc_items);
    return tl_summary();
}
