/* loop.c: what every training stage's loop shares — the progress line (rate, ETA), metrics JSONL,
 * checkpoints with an exact-resume sidecar, and the parameter checksum that ties the two together. */
#include "train/train.h"
#include "train/opts_json.h"
#include "kern/kern.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- logging */

int train_log_open(train_log *lg, const char *stage, const char *metrics_path, int json, long step0, long total, gk_err *err) {
    memset(lg, 0, sizeof *lg);
    lg->stage = stage; lg->json = json; lg->step0 = step0; lg->total = total; lg->t_start = gk_now();
    if (metrics_path) {
        lg->metrics = fopen(metrics_path, "a");
        if (!lg->metrics) return gk_errf(err, "%s: cannot open metrics file for appending", metrics_path);
    }
    return 0;
}
void train_log_close(train_log *lg) {
    if (lg->metrics) fclose(lg->metrics);
    lg->metrics = NULL;
}

void train_log_step(train_log *lg, long step, const char *fields, const char *human) {
    double el = gk_now() - lg->t_start;
    long done = step + 1 - lg->step0;
    double eta = done > 0 ? el / (double)done * (double)(lg->total - step - 1) : NAN;
    if (lg->metrics) {
        fprintf(lg->metrics, "{\"stage\":\"%s\",\"step\":%ld,%s,\"elapsed_s\":%.3f}\n", lg->stage, step, fields, el);
        fflush(lg->metrics);
    }
    if (lg->json) {
        printf("{\"step\":%ld,%s}\n", step, fields);
        fflush(stdout);
    } else {
        char eb[32];
        int w = 1; for (long t = lg->total; t >= 10; t /= 10) w++;
        printf("%s step %*ld/%ld | %s | ETA %s\n", lg->stage, w, step + 1, lg->total, human, gk_fmt_duration(eta, eb, sizeof eb));
        fflush(stdout);
    }
}

void train_log_event(train_log *lg, const char *fields, const char *human) {
    if (lg->metrics) {
        fprintf(lg->metrics, "{\"stage\":\"%s\",%s}\n", lg->stage, fields);
        fflush(lg->metrics);
    }
    if (lg->json) { printf("{%s}\n", fields); fflush(stdout); }
    else if (human) { printf("%s %s\n", lg->stage, human); fflush(stdout); }
}

/* ---------------------------------------------------------------- checksum */

/* FNV-1a over the parameter bytes, in table order. Cheap next to a checkpoint write. */
uint64_t train_params_checksum(const gpt_model *m) {
    size_t n = m->num_params;
    float *host = gk_malloc(n * sizeof(float));
    kern_download(m->be, host, m->params, n * sizeof(float));
    const uint8_t *b = (const uint8_t *)host;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n * sizeof(float); i++) { h ^= b[i]; h *= 1099511628211ULL; }
    free(host);
    return h;
}

/* ---------------------------------------------------------------- checkpoint + state */

int train_save(const char *dir, const gpt_model *m, const adamw *opt, const train_state *st,
               const char *tokenizer, gk_err *err) {
    if (gk_mkdir_p(dir, err)) return -1;
    /* Model first, then the state that names the model's checksum: a crash between the two leaves a
     * state that refuses to pair with the new model (and says so) rather than a silent mismatch. */
    if (gpt_save(m, dir, tokenizer, err)) return -1;
    if (!opt || !st) return 0;
    size_t n = opt->n;
    float *hm = gk_malloc(n * sizeof(float)), *hv = gk_malloc(n * sizeof(float));
    kern_download(m->be, hm, opt->m, n * sizeof(float));
    kern_download(m->be, hv, opt->v, n * sizeof(float));
    st_writer *w = st_writer_new();
    size_t shape[1] = {n};
    st_writer_add_f32(w, "adamw.m", 1, shape, hm);
    st_writer_add_f32(w, "adamw.v", 1, shape, hv);
    char buf[128];
    snprintf(buf, sizeof buf, "%ld", st->step);                           st_writer_add_meta(w, "step", buf);
    snprintf(buf, sizeof buf, "%ld", opt->t);                             st_writer_add_meta(w, "adamw_t", buf);
    snprintf(buf, sizeof buf, "%" PRIu64 " %" PRIu64 " %" PRIu64, st->pos.epoch, st->pos.shard, st->pos.pos);
    st_writer_add_meta(w, "data_pos", buf);
    snprintf(buf, sizeof buf, "%016" PRIx64 " %016" PRIx64 " %016" PRIx64 " %016" PRIx64,
             st->rng.s[0], st->rng.s[1], st->rng.s[2], st->rng.s[3]);
    st_writer_add_meta(w, "rng", buf);
    snprintf(buf, sizeof buf, "%016" PRIx64, train_params_checksum(m));   st_writer_add_meta(w, "params_checksum", buf);
    st_writer_add_meta(w, "opts", st->opts_json ? st->opts_json : "{}");
    char *path = gk_path_join(dir, "train_state.safetensors");
    int rc = st_writer_write(w, path, err);
    st_writer_free(w);
    free(path); free(hm); free(hv);
    return rc;
}

static int meta_u64s(const st_file *f, const char *key, int n, uint64_t *out, int hex, gk_err *err) {
    const char *s = st_meta(f, key);
    if (!s) return gk_errf(err, "%s: resume state lacks '%s'", f->path, key);
    char *end = (char *)s;
    for (int i = 0; i < n; i++) {
        const char *p = end;
        out[i] = strtoull(p, &end, hex ? 16 : 10);
        if (end == p) return gk_errf(err, "%s: resume state field '%s' is malformed: '%s'", f->path, key, s);
    }
    return 0;
}

char *train_state_opts(const char *dir, gk_err *err) {
    char *path = gk_path_join(dir, "train_state.safetensors");
    st_file f;
    if (st_open(&f, path, err)) { free(path); return NULL; }
    free(path);
    const char *o = st_meta(&f, "opts");
    char *r = o ? gk_strdup(o) : NULL;
    if (!r) gk_errf(err, "%s: resume state has no stored options", f.path);
    st_close(&f);
    return r;
}

int train_load_state(const char *dir, const gpt_model *m, adamw *opt, train_state *st, gk_err *err) {
    char *path = gk_path_join(dir, "train_state.safetensors");
    st_file f;
    if (st_open(&f, path, err)) { free(path); return -1; }
    free(path);
    int rc = -1;
    uint64_t step = 0, t = 0, pos[3] = {0}, rng[4] = {0}, ck = 0;
    if (meta_u64s(&f, "step", 1, &step, 0, err) || meta_u64s(&f, "adamw_t", 1, &t, 0, err) ||
        meta_u64s(&f, "data_pos", 3, pos, 0, err) || meta_u64s(&f, "rng", 4, rng, 1, err) ||
        meta_u64s(&f, "params_checksum", 1, &ck, 1, err)) goto done;
    if (ck != train_params_checksum(m)) {
        gk_errf(err, "%s: resume state belongs to different parameters than model.safetensors "
                "(a save was interrupted between the two files?); start again with --init %s", f.path, dir);
        goto done;
    }
    const st_tensor *tm = st_find(&f, "adamw.m"), *tv = st_find(&f, "adamw.v");
    if (!tm || !tv) { gk_errf(err, "%s: missing optimizer moments adamw.m / adamw.v", f.path); goto done; }
    if (tm->ndim != 1 || tm->shape[0] != opt->n || tv->ndim != 1 || tv->shape[0] != opt->n) {
        gk_errf(err, "%s: optimizer moments have %zu values, the model has %zu parameters", f.path, tm->shape[0], opt->n);
        goto done;
    }
    float *h = gk_malloc(opt->n * sizeof(float));
    if (st_read_f32(&f, tm, h, err)) { free(h); goto done; }
    kern_upload(m->be, opt->m, h, opt->n * sizeof(float));
    if (st_read_f32(&f, tv, h, err)) { free(h); goto done; }
    kern_upload(m->be, opt->v, h, opt->n * sizeof(float));
    free(h);
    opt->t = (long)t;
    st->step = (long)step;
    st->pos.epoch = pos[0]; st->pos.shard = pos[1]; st->pos.pos = pos[2];
    for (int i = 0; i < 4; i++) st->rng.s[i] = rng[i];
    const char *o = st_meta(&f, "opts");
    st->opts_json = o ? gk_strdup(o) : NULL;
    rc = 0;
done:
    st_close(&f);
    return rc;
}

/* ---------------------------------------------------------------- stored options (opts_json.h) */

void oj_put_common(cJSON *j, const oj_common *c) {
    if (c->sched) {
        OJ_PUT_N("lr", c->sched->lr); OJ_PUT_N("warmup", c->sched->warmup);
        OJ_PUT_S("schedule", lr_shape_name(c->sched->shape)); OJ_PUT_N("final_frac", c->sched->final_frac);
    }
    if (c->opt) {
        OJ_PUT_N("beta1", c->opt->beta1); OJ_PUT_N("beta2", c->opt->beta2); OJ_PUT_N("eps", c->opt->eps);
        OJ_PUT_N("weight_decay", c->opt->weight_decay); OJ_PUT_N("grad_clip", c->opt->grad_clip);
    }
    if (c->seed) {
        char seed[32];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)*c->seed);
        cJSON_AddStringToObject(j, "seed", seed);
    }
    if (c->val_every) OJ_PUT_N("val_every", *c->val_every);
    if (c->save_every) OJ_PUT_N("save_every", *c->save_every);
    if (c->bf16) OJ_PUT_N("bf16", *c->bf16);
}

void oj_get_common(const cJSON *j, const oj_common *c) {
    if (c->sched) {
        OJ_GET_N("lr", c->sched->lr, float); OJ_GET_N("warmup", c->sched->warmup, long);
        OJ_GET_N("final_frac", c->sched->final_frac, float);
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, "schedule");
        if (cJSON_IsString(x)) lr_shape_parse(x->valuestring, &c->sched->shape);
    }
    if (c->opt) {
        OJ_GET_N("beta1", c->opt->beta1, float); OJ_GET_N("beta2", c->opt->beta2, float);
        OJ_GET_N("eps", c->opt->eps, float); OJ_GET_N("weight_decay", c->opt->weight_decay, float);
        OJ_GET_N("grad_clip", c->opt->grad_clip, float);
    }
    if (c->seed) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, "seed");
        if (cJSON_IsString(x)) *c->seed = strtoull(x->valuestring, NULL, 10);
    }
    if (c->val_every) OJ_GET_N("val_every", *c->val_every, long);
    if (c->save_every) OJ_GET_N("save_every", *c->save_every, long);
    if (c->bf16) OJ_GET_N("bf16", *c->bf16, int);
}

char *oj_finish(cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    char *r = gk_strdup(s);
    cJSON_free(s);
    return r;
}

/* ---------------------------------------------------------------- stage start */

int train_stage_begin(gpt_model *m, const adamw_config *oc, uint64_t rng_seed, const char *resume_dir,
                      const char *out, const char *stage, int json, long total, adamw **opt, train_state *st,
                      train_log *lg, long *step0, gk_err *err) {
    gpt_alloc_grads(m);
    *opt = adamw_create(m, oc);
    gk_rng_seed(&st->rng, rng_seed);
    *step0 = 0;
    if (resume_dir) {
        if (train_load_state(resume_dir, m, *opt, st, err)) return -1;
        *step0 = st->step;
        free(st->opts_json); st->opts_json = NULL;
    }
    if (gk_mkdir_p(out, err)) return -1;
    char *mp = gk_path_join(out, "metrics.jsonl");
    int rc = train_log_open(lg, stage, mp, json, *step0, total, err);
    free(mp);
    return rc;
}

int train_precision_begin(gpt_model *m, int bf16, gk_err *err) {
    if (!bf16) return 0;
    if (kern_set_precision(m->be, KERN_PREC_BF16) != 0)
        return gk_errf(err, "--precision bf16 needs oneDNN and a CPU with AVX512-BF16 or AMX; this build/CPU has neither");
    kern_bf16_shadow(m->be, m->params, m->num_params);
    return 0;
}

void train_precision_end(gpt_model *m, int bf16) {
    if (!bf16) return;
    kern_bf16_shadow(m->be, NULL, 0);
    kern_set_precision(m->be, KERN_PREC_FP32);
}

/* ---------------------------------------------------------------- epoch order */

void train_order_init(train_order *o, size_t n, uint64_t base, uint64_t epoch, uint64_t pos) {
    o->perm = gk_malloc((n ? n : 1) * sizeof(uint32_t));
    o->n = n; o->base = base; o->epoch = epoch; o->pos = pos; o->perm_epoch = UINT64_MAX;
}
void train_order_free(train_order *o) { free(o->perm); o->perm = NULL; }

const uint32_t *train_order_next(train_order *o, size_t k, int partial, size_t *got) {
    if (partial ? o->pos >= o->n : o->pos + k > o->n) { o->epoch++; o->pos = 0; }
    if (o->perm_epoch != o->epoch) {
        for (size_t i = 0; i < o->n; i++) o->perm[i] = (uint32_t)i;
        gk_rng r;
        gk_rng_seed(&r, o->base + o->epoch);
        gk_rng_shuffle_u32(&r, o->perm, o->n);
        o->perm_epoch = o->epoch;
    }
    size_t take = o->n - o->pos < k ? o->n - o->pos : k;
    const uint32_t *p = o->perm + o->pos;
    o->pos += take;
    if (got) *got = take;
    return p;
}

/* ---------------------------------------------------------------- MFU */

double train_flops_per_token(const gpt_model *m, size_t T) {
    return 6.0 * (double)m->num_params + 12.0 * m->cfg.n_layer * (double)m->cfg.n_embd * (double)T;
}

double train_peak_gflops(int bf16) {
    /* A peak is a maximum, and a probe on a busy machine underestimates it: probe every run and keep the
     * largest figure seen in the cache, so MFU converges to the real ceiling instead of freezing a bad one. */
    const char *env = getenv("GPTKIT_PEAK_GFLOPS");
    double v;
    if (env && gk_parse_double(env, &v) == 0 && v > 0) return v;
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char dir[1024] = "", path[1100] = "";
    if (xdg && *xdg) snprintf(dir, sizeof dir, "%s/gptkit", xdg);
    else if (home && *home) snprintf(dir, sizeof dir, "%s/.cache/gptkit", home);
    double fp32 = 0, b16 = 0, c32 = 0, c16 = 0;
    if (*dir) {
        snprintf(path, sizeof path, "%s/peak", dir);
        FILE *f = fopen(path, "r");
        if (f) { if (fscanf(f, "%lf %lf", &c32, &c16) != 2) c32 = c16 = 0; fclose(f); }
    }
    kern_backend *be = kern_backend_create(NULL, NULL);   /* the process default: what a model would run on */
    kern_peak_probe(be, &fp32, &b16, NULL);
    kern_backend_free(be);
    if (c32 > fp32) fp32 = c32;
    if (c16 > b16) b16 = c16;
    if (*dir && gk_mkdir_p(dir, NULL) == 0) {
        char buf[64];
        int n = snprintf(buf, sizeof buf, "%.1f %.1f\n", fp32, b16);
        gk_write_file_atomic(path, buf, (size_t)n, NULL);
    }
    return bf16 && b16 > 0 ? b16 : fp32;
}
