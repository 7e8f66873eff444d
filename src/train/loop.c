/* loop.c: the pieces under the stage skeleton (stage.c) — the progress line (rate, ETA), metrics JSONL (cJSON
 * objects, so any string a stage logs is escaped correctly), checkpoints with an exact-resume sidecar, the
 * parameter checksum that ties the two together, the per-epoch data order, and the MFU figures. */
#include "train/train.h"
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

/* One metrics object of the envelope keys, then fields' items moved over in their order. Takes fields (the
 * emptied container is freed here). */
static cJSON *log_record(const char *stage, long step, cJSON *fields) {
    cJSON *r = cJSON_CreateObject();
    if (stage) cJSON_AddStringToObject(r, "stage", stage);
    if (step >= 0) cJSON_AddNumberToObject(r, "step", (double)step);
    while (fields && fields->child) {
        cJSON *it = cJSON_DetachItemViaPointer(fields, fields->child);
        cJSON_AddItemToObject(r, it->string, it);   /* keeps the key; the item's old key string is freed */
    }
    cJSON_Delete(fields);
    return r;
}

/* Prints r as one line to f and deletes it. */
static void log_line(FILE *f, cJSON *r) {
    char *s = cJSON_PrintUnformatted(r);
    fprintf(f, "%s\n", s);
    fflush(f);
    cJSON_free(s);
    cJSON_Delete(r);
}

void train_log_step(train_log *lg, long step, cJSON *fields, const char *human) {
    double el = gk_now() - lg->t_start;
    long done = step + 1 - lg->step0;
    double eta = done > 0 ? el / (double)done * (double)(lg->total - step - 1) : NAN;
    if (lg->metrics) {
        cJSON *r = log_record(lg->stage, step, cJSON_Duplicate(fields, 1));
        train_put(r, "elapsed_s", "%.3f", el);
        log_line(lg->metrics, r);
    }
    if (lg->json) {
        log_line(stdout, log_record(NULL, step, fields));
        fields = NULL;
    } else {
        char eb[32];
        int w = 1; for (long t = lg->total; t >= 10; t /= 10) w++;
        printf("%s step %*ld/%ld | %s | ETA %s\n", lg->stage, w, step + 1, lg->total, human, gk_fmt_duration(eta, eb, sizeof eb));
        fflush(stdout);
    }
    cJSON_Delete(fields);
}

void train_log_event(train_log *lg, cJSON *fields, const char *human) {
    if (lg->metrics) log_line(lg->metrics, log_record(lg->stage, -1, cJSON_Duplicate(fields, 1)));
    if (lg->json) { log_line(stdout, log_record(NULL, -1, fields)); fields = NULL; }
    else if (human) { printf("%s %s\n", lg->stage, human); fflush(stdout); }
    cJSON_Delete(fields);
}

void train_put(cJSON *o, const char *key, const char *fmt, double v) {
    /* print with fmt and read back: cJSON then prints the shortest text of that value (%.15g round-trips it) */
    char buf[64];
    snprintf(buf, sizeof buf, fmt, v);
    cJSON_AddNumberToObject(o, key, isfinite(v) ? strtod(buf, NULL) : v);
}

void train_decode_text(const tok_tokenizer *tok, const int32_t *ids, size_t n, tok_bytes *out) {
    /* the streaming decoder: always valid UTF-8 (U+FFFD for broken bytes), so the JSON is too */
    gk_err derr;
    tok_stream ts;
    tok_stream_init(&ts);
    for (size_t i = 0; i < n; i++) tok_stream_push(&ts, tok, ids[i], out, &derr);
    tok_stream_flush(&ts, out);
    tok_bytes_append(out, "", 1);
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

/* The tokenizer files of the last save, kept for the next: a stage saves the same tokenizer every checkpoint, and
 * building tokenizer.json (the merges of a 50k vocabulary) costs more than a small model's weights. Saves run on
 * one thread (rank 0's stage loop, or a command). */
static struct { char *key; chat_tok_files f; int ok; } tok_cache;

int train_save_model(const gpt_model *m, const char *dir, const char *tokenizer, const char *tok_dir, gk_err *err) {
    gpt_save_opts o = {.tokenizer = tokenizer, .bos_id = -1, .eos_id = -1};
    gpt_save_file files[3];
    if (tokenizer || tok_dir) {
        char key[8192];
        snprintf(key, sizeof key, "%s\n%s\n%d %d", tokenizer ? tokenizer : "", tok_dir ? tok_dir : "", m->cfg.vocab_size, m->cfg.n_ctx);
        if (!tok_cache.key || strcmp(tok_cache.key, key)) {
            free(tok_cache.key);
            chat_tok_files_free(&tok_cache.f);
            tok_cache.key = gk_strdup(key);
            tok_cache.ok = 0;
            tok_tokenizer *t = NULL;
            gk_err e;
            int rc = tok_load_recorded(tok_dir, tokenizer, NULL, 0, &t, &e);
            if (rc || !t)
                gk_warn("checkpoint written without its tokenizer files: %s\n", rc ? e.msg : "no tokenizer found");
            else if (chat_tokenizer_files(t, (size_t)m->cfg.vocab_size, m->cfg.n_ctx, &tok_cache.f, &e))
                gk_warn("checkpoint written without its tokenizer files: %s\n", e.msg);
            else tok_cache.ok = 1;
            tok_free(t);
        }
        if (tok_cache.ok) {
            const chat_tok_files *f = &tok_cache.f;
            files[0] = (gpt_save_file){"tokenizer.json", f->tokenizer_json, strlen(f->tokenizer_json)};
            files[1] = (gpt_save_file){"tokenizer_config.json", f->tokenizer_config_json, strlen(f->tokenizer_config_json)};
            files[2] = (gpt_save_file){"generation_config.json", f->generation_config_json, strlen(f->generation_config_json)};
            o.files = files; o.n_files = 3;
            o.bos_id = f->bos_id; o.eos_id = f->eos_id;
        }
    }
    return gpt_save_ex(m, dir, &o, err);
}

int train_save(const char *dir, const gpt_model *m, const adamw *opt, const train_state *st,
               const char *tokenizer, gk_err *err) {
    if (gk_mkdir_p(dir, err)) return -1;
    /* Model first, then the state that names the model's checksum: a crash between the two leaves a
     * state that refuses to pair with the new model (and says so) rather than a silent mismatch. */
    if (m->lora ? gpt_lora_save(m, dir, m->lora->base, err) : train_save_model(m, dir, tokenizer, NULL, err)) return -1;
    if (!opt || !st) return 0;
    const gpt_model *om = m->lora ? m->lora->pm : m;   /* a LoRA run's optimizer covers its adapters only */
    gk_crash_point("save:model");
    GK_CHECK(opt->lo == 0 && opt->hi == opt->n, "train_save of a sharded optimizer: gather its moments first");
    size_t n = opt->n;
    float *hm = gk_malloc(n * sizeof(float)), *hv = gk_malloc(n * sizeof(float));
    kern_download(om->be, hm, opt->m, n * sizeof(float));
    kern_download(om->be, hv, opt->v, n * sizeof(float));
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
    snprintf(buf, sizeof buf, "%016" PRIx64, train_params_checksum(om));  st_writer_add_meta(w, "params_checksum", buf);
    st_writer_add_meta(w, "opts", st->opts_json ? st->opts_json : "{}");
    snprintf(buf, sizeof buf, "%.17g", st->tokens);                       st_writer_add_meta(w, "tokens", buf);
    snprintf(buf, sizeof buf, "%.17g", st->last_loss);                    st_writer_add_meta(w, "last_loss", buf);
    st_writer_add_meta(w, "finished", st->finished ? "1" : "0");
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

int train_state_finished(const char *dir) {
    char *path = gk_path_join(dir, "train_state.safetensors");
    st_file f;
    int r = -1;
    if (gk_file_exists(path) && st_open(&f, path, NULL) == 0) {
        const char *v = st_meta(&f, "finished");
        r = v && !strcmp(v, "1");
        st_close(&f);
    }
    free(path);
    return r;
}

int train_load_state(const char *dir, const gpt_model *m, adamw *opt, train_state *st, gk_err *err) {
    if (m->lora) m = m->lora->pm;   /* a LoRA run's state: the adapters' checksum and moments */
    char *path = gk_path_join(dir, "train_state.safetensors");
    st_file f;
    if (st_open(&f, path, err)) { free(path); return -1; }
    free(path);
    int rc = -1;
    uint64_t step = 0, t = 0, pos[3] = {0}, rng[4] = {0}, ck = 0;
    if (meta_u64s(&f, "step", 1, &step, 0, err) || meta_u64s(&f, "adamw_t", 1, &t, 0, err) ||
        meta_u64s(&f, "data_pos", 3, pos, 0, err) || meta_u64s(&f, "rng", 4, rng, 1, err) ||
        meta_u64s(&f, "params_checksum", 1, &ck, 1, err)) goto done;
    /* a step count no run reaches is a damaged (or hand-edited) state, not one to continue */
    if (step > (uint64_t)1e12 || t > (uint64_t)1e12) {
        gk_errf(err, "%s: resume state field '%s' is out of range (%" PRIu64 ")", f.path, step > (uint64_t)1e12 ? "step" : "adamw_t",
                step > (uint64_t)1e12 ? step : t);
        goto done;
    }
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
    const st_tensor *mv[2] = { tm, tv };
    for (int k = 0; k < 2; k++) {
        if (st_read_f32(&f, mv[k], h, err)) { free(h); goto done; }
        size_t bad = gk_first_nonfinite(h, opt->n);
        if (bad < opt->n || (k == 1 && gk_first_negative(h, opt->n) < opt->n)) {
            gk_errf(err, "%s: optimizer moment %s holds %s", f.path, mv[k]->name,
                    bad < opt->n ? "a non-finite value" : "a negative second moment");
            free(h); goto done;
        }
        /* a ZeRO-1 shard keeps only its slice: the file is the same whatever the number of ranks */
        kern_upload(m->be, k ? opt->v : opt->m, h + opt->lo, (opt->hi - opt->lo) * sizeof(float));
    }
    free(h);
    opt->t = (long)t;
    st->step = (long)step;
    st->pos.epoch = pos[0]; st->pos.shard = pos[1]; st->pos.pos = pos[2];
    for (int i = 0; i < 4; i++) st->rng.s[i] = rng[i];
    const char *o = st_meta(&f, "opts");
    st->opts_json = o ? gk_strdup(o) : NULL;
    /* optional: states written before these existed resume with the tokens and last loss unknown */
    const char *v = st_meta(&f, "tokens");
    st->tokens = v ? strtod(v, NULL) : 0;
    v = st_meta(&f, "last_loss");
    st->last_loss = v ? strtod(v, NULL) : NAN;
    v = st_meta(&f, "finished");
    st->finished = v && !strcmp(v, "1");
    rc = 0;
done:
    st_close(&f);
    return rc;
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
    /* per device kind: the cache keeps the largest figure seen, so a GPU's must never reach a CPU run's MFU */
    kern_backend_opts d;
    kern_backend_opts_default(&d);
    char *path = gk_cache_path(d.kind == KERN_KIND_CUDA ? "peak-cuda" : "peak");
    double fp32 = 0, b16 = 0, c32 = 0, c16 = 0;
    if (path) {
        FILE *f = fopen(path, "r");
        if (f) { if (fscanf(f, "%lf %lf", &c32, &c16) != 2) c32 = c16 = 0; fclose(f); }
    }
    kern_backend *be = kern_backend_create(NULL, NULL);   /* the process default: what a model would run on */
    kern_peak_probe(be, &fp32, &b16, NULL);
    kern_backend_free(be);
    if (c32 > fp32) fp32 = c32;
    if (c16 > b16) b16 = c16;
    if (path) {
        char buf[64];
        int n = snprintf(buf, sizeof buf, "%.1f %.1f\n", fp32, b16);
        gk_write_file_atomic(path, buf, (size_t)n, NULL);
        free(path);
    }
    return bf16 && b16 > 0 ? b16 : fp32;
}
