/* stage.c: the one training-stage skeleton (see train.h, "the stage skeleton").
 *
 * pretrain, sft, rm, dpo and ppo each supply a hook struct (a micro-batch's loss and gradient, or PPO's whole
 * iteration; eval; sample; data position) and this file runs everything around it: start and exact resume,
 * the stage RNG, Ctrl-C, the progress line and metrics JSONL, the eval / sample / checkpoint cadence, precision
 * begin/end, gradient accumulation and the optimizer step. Anything every stage needs (the gradient
 * all-reduce, LoRA's parameter selection, a new precision) is added here once.
 *
 * Data parallelism (src/dist, docs/distributed.md): under mpirun every rank runs this same loop on the same
 * options. The micro-batches of a step are dealt out to the ranks (or a hook splits its one batch), the
 * gradients are summed by a reduce-scatter (for whole micro-batches started bucket by bucket during the rank's
 * last backward: --dist-bucket-mb; over NCCL for a GPU backend), each rank runs AdamW on its slice of the
 * parameters with its slice of the moments (ZeRO-1), and an all-gather gives every rank the new parameters.
 * Whatever decides whether to go on (Ctrl-C, a failed save, a bad resume) is agreed with dist_any so no rank
 * waits alone in a collective. Only rank 0 takes the directory locks and writes checkpoints, metrics and the
 * progress line.
 */
#include "train/train.h"
#include "kern/kern.h"
#include "dist/dist.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---------------------------------------------------------------- precision */

/* --precision bf16: bf16 matmul inputs with fp32 accumulation and master weights, m's parameters rounded once
 * per optimizer step (kern_bf16_shadow). */
static int precision_begin(gpt_model *m, int bf16, gk_err *err) {
    if (!bf16) return 0;
    if (kern_set_precision(m->be, KERN_PREC_BF16) != 0)
        return gk_errf(err, "--precision bf16 needs oneDNN and a CPU with AVX512-BF16 or AMX; this build/CPU has neither");
    kern_bf16_shadow(m->be, m->params, m->num_params);
    return 0;
}

void train_stage_precision_end(train_stage *s) {
    if (!s->bf16_on) return;
    gpt_model *m = s->cfg.models[0].m;
    kern_bf16_shadow(m->be, NULL, 0);
    kern_set_precision(m->be, KERN_PREC_FP32);
    s->bf16_on = 0;
}

/* ---------------------------------------------------------------- resources */

/* Peak resident memory of a stage: Linux keeps the process's high-water mark (VmHWM), which writing "5" to
 * /proc/self/clear_refs resets to the current size, so a stage run after another in one process (the pipeline)
 * reports its own peak. Elsewhere: getrusage's lifetime peak. */
static void peak_rss_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return;
    fputs("5", f);
    fclose(f);
}

static double peak_rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) { kb = strtod(line + 6, NULL); break; }
    if (f) fclose(f);
    if (kb < 0) { struct rusage ru; getrusage(RUSAGE_SELF, &ru); kb = (double)ru.ru_maxrss; }
    return kb / 1024.0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* What the run cost, to metrics.jsonl (and the log line): trainable parameters against the whole models',
 * gradient + AdamW memory (12 bytes per trainable parameter) against full finetuning's, the peak resident memory
 * and the median step time of this run. The pipeline's report reads it (docs/pipeline.md). */
static void log_resources(train_stage *s, double *step_ms, size_t n) {
    double trainable = 0, whole = 0;
    for (size_t k = 0; k < s->cfg.n_models; k++) {
        gpt_model *m = s->cfg.models[k].m;
        trainable += (double)train_opt_model(m)->num_params;
        whole += (double)m->num_params + (m->lora && m->lora->cfg.score && !m->cfg.score_head ? (double)m->cfg.n_embd : 0);
    }
    qsort(step_ms, n, sizeof *step_ms, cmp_double);
    double med = n ? (n % 2 ? step_ms[n / 2] : 0.5 * (step_ms[n / 2 - 1] + step_ms[n / 2])) : NAN, rss = peak_rss_mb();
    gpt_model *m0 = s->cfg.models[0].m;
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "event", "resources");
    cJSON_AddNumberToObject(f, "lora_rank", m0->lora ? m0->lora->cfg.rank : 0);
    cJSON_AddNumberToObject(f, "trainable_params", trainable);
    cJSON_AddNumberToObject(f, "params", whole);
    train_put(f, "optimizer_grad_mb", "%.3f", 12.0 * trainable / 1e6);
    train_put(f, "full_optimizer_grad_mb", "%.3f", 12.0 * whole / 1e6);
    train_put(f, "peak_rss_mb", "%.1f", rss);
    train_put(f, "median_step_ms", "%.1f", med);
    cJSON_AddNumberToObject(f, "steps_timed", (double)n);
    char human[256];
    snprintf(human, sizeof human, "%.0f trainable parameters (%.2f%% of %.0f); gradients + AdamW %.2f MB (full finetuning "
             "%.2f MB); peak RSS %.0f MB; median step %.1f ms", trainable, 100 * trainable / whole, whole,
             12.0 * trainable / 1e6, 12.0 * whole / 1e6, rss, med);
    int json = s->lg.json;
    s->lg.json = 0;   /* metrics.jsonl and the human log only: --json's stdout keeps its one-object-per-step shape */
    train_log_event(&s->lg, f, json ? NULL : human);
    s->lg.json = json;
}

/* ---------------------------------------------------------------- start */

/* What the optimizer of model m updates: its LoRA adapters' table when it has adapters (the base then has no
 * gradients and no moments), else m itself. Every grad/moment/update below goes through this. */
gpt_model *train_opt_model(gpt_model *m) { return m->lora ? m->lora->pm : m; }

int train_stage_open(train_stage *s, const train_stage_cfg *cfg, gk_err *err) {
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    s->cfg.sched.total = cfg->total;
    if (s->cfg.accum < 1) s->cfg.accum = 1;
    if (!s->cfg.saved_what) s->cfg.saved_what = "checkpoint";
    s->last_loss = NAN;
    s->rank = dist_rank(); s->nranks = dist_size();
    GK_CHECK(cfg->n_models >= 1 && cfg->n_models <= TRAIN_STAGE_MAX_MODELS, "train_stage_open: %zu models", cfg->n_models);
    /* one writer per output directory, before anything there is read or written (this also removes the
     * temporaries of a save that was killed); with several ranks rank 0 is that writer */
    int bad = 0;
    for (size_t k = 0; k < s->cfg.n_models && !bad && s->rank == 0; k++)
        bad = gk_dir_lock_take(s->cfg.models[k].out, &s->locks[k], err) != 0;
    if (dist_any(bad)) return bad ? -1 : gk_errf(err, "rank %d: rank 0 could not lock the output directory", s->rank);
    s->opt_bytes = 0;
    for (size_t k = 0; k < s->cfg.n_models; k++) {
        gpt_model *m = train_opt_model(s->cfg.models[k].m);
        if (cfg->bf16 && m != s->cfg.models[k].m)
            return gk_errf(err, "--precision bf16 with LoRA adapters is not supported yet; use fp32");
        gpt_alloc_grads(m);
        /* a GPU backend's gradients and parameters go through NCCL (every rank opens it, or every rank fails) */
        if (s->nranks > 1 && dist_dev_open(m->be, err)) return -1;
        /* ZeRO-1: this rank's moments cover only its slice of the flat parameters */
        size_t lo, hi;
        dist_shard(m->num_params, s->rank, s->nranks, &lo, &hi);
        s->cfg.models[k].opt = adamw_create_shard(m, cfg->opt, lo, hi);
        s->opt_bytes += 2.0 * (double)(hi - lo) * sizeof(float);
        if (s->nranks > 1) {
            /* every rank starts from rank 0's parameters (a fresh init is seeded alike, but be sure) */
            float *h = gk_malloc(m->num_params * sizeof(float));
            kern_download(m->be, h, m->params, m->num_params * sizeof(float));
            dist_bcast(h, m->num_params * sizeof(float), 0);
            kern_upload(m->be, m->params, h, m->num_params * sizeof(float));
            free(h);
        }
    }
    gk_rng_seed(&s->st.rng, cfg->rng_seed);
    /* Resume: every model's moments from its own state; step, data position and RNG from model 0's (the
     * others store the same values). */
    for (size_t k = 0; k < s->cfg.n_models; k++) {
        const train_stage_model *sm = &s->cfg.models[k];
        if (!sm->resume) continue;
        train_state tmp;
        memset(&tmp, 0, sizeof tmp);
        /* every rank reads the state (a shared directory) and keeps its slice of the moments */
        bad = train_load_state(sm->resume, sm->m, sm->opt, k ? &tmp : &s->st, err) != 0;
        free(tmp.opts_json);
        if (dist_any(bad)) return bad ? -1 : gk_errf(err, "rank %d: another rank could not read the resume state in %s", s->rank, sm->resume);
        if (k == 0) {
            s->step0 = s->st.step; s->resumed_opts = s->st.opts_json; s->st.opts_json = NULL;
            s->tokens = s->st.tokens; s->last_loss = s->st.last_loss;
        }
    }
    for (size_t k = 0; k < s->cfg.n_models && s->rank == 0; k++)
        if (gk_mkdir_p(s->cfg.models[k].out, err)) return -1;
    char *mp = s->rank == 0 ? gk_path_join(s->cfg.models[0].out, "metrics.jsonl") : NULL;
    int rc = train_log_open(&s->lg, cfg->name, mp, cfg->json, s->step0, cfg->total, err);
    free(mp);
    if (rc) return -1;
    if (precision_begin(s->cfg.models[0].m, cfg->bf16, err)) return -1;
    s->bf16_on = cfg->bf16;
    if (cfg->flops_per_step > 0) s->peak = train_peak_gflops(cfg->bf16) * 1e9;
    peak_rss_reset();
    return 0;
}

void train_stage_close(train_stage *s) {
    train_stage_precision_end(s);
    train_log_close(&s->lg);
    for (size_t k = 0; k < s->cfg.n_models; k++) { adamw_free(s->cfg.models[k].opt); s->cfg.models[k].opt = NULL; }
    free(s->st.opts_json); s->st.opts_json = NULL;
    free(s->resumed_opts); s->resumed_opts = NULL;
    for (size_t k = 0; k < TRAIN_STAGE_MAX_MODELS; k++) { gk_dir_unlock(s->locks[k]); s->locks[k] = NULL; }
}

/* ---------------------------------------------------------------- the optimizer step */

/* Dropout masks from (the stage's seed, step, micro, model): the same in a resumed run as in an uninterrupted one. */
void train_stage_lora_train(train_stage *s, size_t k, long step, long micro, int on) {
    uint64_t seed = s->cfg.rng_seed * 0x9E3779B97F4A7C15ULL ^ ((uint64_t)step << 20) ^ ((uint64_t)micro << 4) ^ (uint64_t)k;
    gpt_lora_train(s->cfg.models[k].m, on, seed);
}

void train_stage_zero(train_stage *s, size_t k) { gpt_zero_grads(train_opt_model(s->cfg.models[k].m)); }

void train_stage_share(const train_stage *s, size_t n, size_t *lo, size_t *hi) {
    dist_shard(n, s->rank, s->nranks, lo, hi);
}

/* The only optimizer step in src/train. LoRA's parameter selection is the model's trainable[] groups, which
 * the optimizer (norm, clipping, update) alone reads. With several ranks, ZeRO-1:
 *   reduce-scatter: rank r gets the sum over ranks of the gradients in its slice [lo_r, hi_r)
 *   norm = sqrt(sum over ranks of the slice's sum of squares)      (the global norm clipping needs)
 *   AdamW on the slice with the slice's moments; all-gather of the parameters
 * The hooks' gradients are already divided by the whole step's count (or rescaled by micro_step), so the sum
 * over ranks is the single process's gradient up to the order of the additions. When micro_step overlapped the
 * reduce-scatter with the backward (s->rs), the same sums over the same slices arrive bucket by bucket: only
 * the wait for the last buckets is left here. */
double train_stage_update(train_stage *s, size_t k, float lr) {
    const train_stage_model *sm = &s->cfg.models[k];
    gpt_model *m = train_opt_model(sm->m);
    if (s->nranks < 2) return adamw_step(sm->opt, m, lr);
    double t0 = gk_now();
    int dev = dist_dev_active(m->be);   /* device buffers: NCCL (the same slices) */
    if (k == 0 && s->rs) { dist_rs_finish(s->rs); s->rs = NULL; }   /* the buckets the backward started */
    else if (dev) dist_dev_reduce_scatter_sum_f32(m->grads, m->num_params);
    else dist_reduce_scatter_sum_f32(m->grads, m->num_params);
    double ss = adamw_grad_sumsq(sm->opt, m);
    dist_allreduce_sum_f64(&ss, 1);
    double norm = sqrt(ss), t1 = gk_now();
    adamw_update(sm->opt, m, lr, norm);
    double t2 = gk_now();
    if (dev) dist_dev_allgather_f32(m->params, m->num_params);
    else dist_allgather_f32(m->params, m->num_params);
    s->comm_s += (t1 - t0) + (gk_now() - t2);
    /* the other ranks' slices changed without this rank's kern_adamw: the bf16 copy must be redone */
    if (k == 0 && s->bf16_on) kern_bf16_shadow(m->be, m->params, m->num_params);
    return norm;
}

/* One moment's slices slice[hi - lo] (be's memory) gathered into full[n] on rank 0. MPI carries host memory: a
 * device backend's slices pass through the host (a checkpoint's rare cost). */
static void gather_moments(kern_backend *be, const float *slice, float *full, size_t lo, size_t hi, size_t n) {
    if (!kern_on_device(be)) { dist_gather_f32(slice, full, n); return; }
    float *hs = gk_malloc((hi - lo + 1) * sizeof(float)), *hf = full ? gk_malloc(n * sizeof(float)) : NULL;
    kern_download(be, hs, slice, (hi - lo) * sizeof(float));
    dist_gather_f32(hs, hf, n);
    if (full) kern_upload(be, full, hf, n * sizeof(float));
    free(hs); free(hf);
}

/* The whole moments of model k's sharded optimizer, gathered on rank 0 into an unsharded optimizer for the
 * checkpoint (NULL on the other ranks; the optimizer itself with one rank). Every rank must call it. */
static adamw *gather_opt(train_stage *s, size_t k) {
    adamw *o = s->cfg.models[k].opt;
    if (s->nranks < 2) return o;
    gpt_model *m = train_opt_model(s->cfg.models[k].m);
    adamw *full = s->rank == 0 ? adamw_create(m, &o->cfg) : NULL;
    if (full) full->t = o->t;
    gather_moments(m->be, o->m, full ? full->m : NULL, o->lo, o->hi, m->num_params);
    gather_moments(m->be, o->v, full ? full->v : NULL, o->lo, o->hi, m->num_params);
    return full;
}

/* ---------------------------------------------------------------- checkpoints */

/* Where model output `out` goes inside the staging directory of model 0's output out0: out0 itself, or the
 * subdirectory `out` is of it. */
static char *stage_subdir(const char *staging, const char *out0, const char *out) {
    size_t n = strlen(out0);
    if (!strcmp(out, out0)) return gk_strdup(staging);
    GK_CHECK(!strncmp(out, out0, n) && out[n] == '/' && out[n + 1], "checkpoint of %s must lie inside %s", out, out0);
    return gk_path_join(staging, out + n + 1);
}

/* Every model's checkpoint + resume state at `step` (the next step to run), as one unit (gk_ckpt_begin/commit):
 * written complete into a staging directory, then switched to. Model k > 0 lives in a subdirectory of model 0's
 * output (PPO's OUT/value), so one switch covers every model and their steps always agree. */
static int save_all(train_stage *s, const train_stage_hooks *h, long step, int finished, gk_err *err) {
    s->st.step = step;
    s->st.tokens = s->tokens; s->st.last_loss = s->last_loss; s->st.finished = finished;
    if (h->tell) h->tell(h->ctx, &s->st.pos);
    if (h->opts) { free(s->st.opts_json); s->st.opts_json = h->opts(h->ctx); }
    const char *out0 = s->cfg.models[0].out;
    /* the moments are gathered first (a collective every rank joins); rank 0 alone writes the unit */
    adamw *full[TRAIN_STAGE_MAX_MODELS] = {0};
    for (size_t k = 0; k < s->cfg.n_models; k++) full[k] = gather_opt(s, k);
    int rc = 0;
    if (s->rank == 0) {
        char *staging = gk_ckpt_begin(out0, step, err);
        if (!staging) rc = -1;
        for (size_t k = 0; k < s->cfg.n_models && rc == 0; k++) {
            const train_stage_model *sm = &s->cfg.models[k];
            train_state st = s->st;
            if (k) st.opts_json = NULL;   /* the options live with model 0 */
            char *dir = stage_subdir(staging, out0, sm->out);
            rc = train_save(dir, sm->m, full[k], &st, sm->tokenizer, err);
            free(dir);
        }
        if (staging) {
            if (rc == 0) rc = gk_ckpt_commit(out0, staging, err);   /* removes staging itself on failure */
            else gk_ckpt_abort(staging);
        }
        free(staging);
    }
    if (s->nranks > 1) for (size_t k = 0; k < s->cfg.n_models; k++) adamw_free(full[k]);
    if (dist_any(rc != 0)) return rc ? -1 : gk_errf(err, "rank %d: rank 0 failed to write the checkpoint", s->rank);
    return 0;
}

/* ---------------------------------------------------------------- one step */

static void out_init(train_step_out *o) {
    memset(o, 0, sizeof *o);
    o->pre = cJSON_CreateObject();
    o->post = cJSON_CreateObject();
}

/* Moves src's items to the end of dst (in order) and deletes src. */
static void move_items(cJSON *dst, cJSON *src) {
    while (src->child) {
        cJSON *it = cJSON_DetachItemViaPointer(src, src->child);
        cJSON_AddItemToObject(dst, it->string, it);
    }
    cJSON_Delete(src);
}

/* Appends " | text" to a human line when text is not empty. */
static void human_add(char *h, size_t cap, const char *text) {
    size_t n = strlen(h);
    if (*text && n < cap) snprintf(h + n, cap - n, "%s%s", n ? " | " : "", text);
}

void train_stage_sum(const train_stage *s, double *v, size_t n) { if (s->nranks > 1) dist_allreduce_sum_f64(v, n); }

void train_stage_weigh(train_stage *s, size_t k, double units, double *vals, size_t n) {
    if (s->nranks < 2) return;
    double *v = gk_malloc((n + 1) * sizeof(double));
    v[0] = units;
    for (size_t i = 0; i < n; i++) v[1 + i] = units > 0 ? vals[i] * units : 0;   /* a NaN of a real share stays */
    dist_allreduce_sum_f64(v, n + 1);
    double U = v[0];
    gpt_model *m = train_opt_model(s->cfg.models[k].m);
    kern_scale(m->be, m->grads, U > 0 ? (float)(units / U) : 0.0f, m->num_params);
    for (size_t i = 0; i < n; i++) vals[i] = U > 0 ? v[1 + i] / U : NAN;
    free(v);
}

/* A split hook's step across ranks: loss = sum_r units_r loss_r / sum_r units_r, and rank r's gradient (of its
 * own mean) rescaled by units_r / sum_r units_r before the update sums them. Returns the step's loss. */
static double split_combine(train_stage *s, train_step_out *o) {
    double loss = o->loss;
    train_stage_weigh(s, 0, o->units, &loss, 1);
    return loss;
}

/* --dist-bucket-mb: model 0's backward reports each finished tail of its gradients (gpt_model.bwd_ready) and the
 * buckets inside it start their reduce-scatter; the time spent here (starting them, driving MPI's progress) is
 * the step's communication time too. */
static void grads_ready(void *ctx, size_t from) {
    train_stage *s = ctx;
    double t = gk_now();
    dist_rs_ready(s->rs, from);
    s->comm_s += gk_now() - t;
}

/* The micro-batch path: zero, accum micro-batches, one update on the schedule; then the step's log record. */
static int micro_step(train_stage *s, const train_stage_hooks *h, long step, gk_err *err) {
    train_step_out o;
    out_init(&o);
    double ts = gk_now(), lsum = 0;
    train_stage_zero(s, 0);
    s->comm_s = 0;
    int dp = s->nranks > 1, split = dp && h->split;
    GK_CHECK(!split || s->cfg.accum == 1, "%s: a split hook under data parallelism needs accum 1", s->cfg.name);
    GK_CHECK(!dp || split || h->skip, "%s: data parallelism needs the stage's skip hook", s->cfg.name);
    /* Overlap (--dist-bucket-mb): the gradient buckets start during this rank's LAST micro-batch's backward —
     * an earlier one's gradients are not final (accumulation adds to them). Whole micro-batches only: a split
     * hook's gradients are rescaled after its backward (train_stage_weigh). Not with LoRA: the adapters'
     * gradients are another table's. Not on a GPU (NCCL): MPI carries host memory. Every rank plans the same
     * buckets, also a rank with no micro-batch this step (it starts them all in the update), so the collectives
     * match. */
    gpt_model *m0 = s->cfg.models[0].m;
    long last = -1;
    if (dp && !split && s->cfg.dist_bucket_mb > 0 && train_opt_model(m0) == m0 && !kern_on_device(m0->be)) {
        s->rs = dist_rs_begin(m0->grads, m0->num_params, (size_t)((double)s->cfg.dist_bucket_mb * 1e6 / sizeof(float)));
        for (long a = s->rank; a < s->cfg.accum; a += s->nranks) last = a;
    }
    for (long a = 0; a < s->cfg.accum; a++) {
        /* whole micro-batches dealt round-robin: rank r runs a = r, r + N, ...; every rank reads them all */
        if (dp && !split && a % s->nranks != s->rank) { h->skip(h->ctx, s, step, a); continue; }
        train_stage_lora_train(s, 0, step, a, 1);   /* adapter dropout on for this micro-batch's passes */
        if (a == last && s->rs) { m0->bwd_ready = grads_ready; m0->bwd_ready_ctx = s; }
        int bad = h->micro(h->ctx, s, step, a, &o, err);
        m0->bwd_ready = NULL; m0->bwd_ready_ctx = NULL;
        train_stage_lora_train(s, 0, step, a, 0);
        if (bad) { cJSON_Delete(o.pre); cJSON_Delete(o.post); return -1; }
        lsum += o.loss;
    }
    double loss = lsum / (double)s->cfg.accum;
    if (split) loss = split_combine(s, &o);
    else if (dp) { dist_allreduce_sum_f64(&lsum, 1); loss = lsum / (double)s->cfg.accum; }
    if (dp) dist_allreduce_sum_f64(&o.tokens, 1);
    float lr = lr_at(&s->cfg.sched, step);
    double norm = train_stage_update(s, 0, lr);
    double dt = gk_now() - ts;
    s->last_loss = loss;
    s->tokens += o.tokens;

    cJSON *f = cJSON_CreateObject();
    char hum[1024] = "", part[128];
    train_put(f, "loss", "%.7g", loss);
    snprintf(part, sizeof part, "loss %.4f", loss);                        human_add(hum, sizeof hum, part);
    move_items(f, o.pre);                                                  human_add(hum, sizeof hum, o.hpre);
    train_put(f, "lr", "%.6g", lr);
    train_put(f, "grad_norm", "%.6g", norm);
    snprintf(part, sizeof part, "lr %.2e | norm %.3f", lr, norm);         human_add(hum, sizeof hum, part);
    move_items(f, o.post);                                                 human_add(hum, sizeof hum, o.hpost);
    if (o.tokens > 0) {
        train_put(f, "tokens_per_s", "%.1f", o.tokens / dt);
        snprintf(part, sizeof part, "%.0f tok/s", o.tokens / dt);         human_add(hum, sizeof hum, part);
    }
    train_put(f, "ms", "%.1f", dt * 1000);
    snprintf(part, sizeof part, "%.0f ms", dt * 1000);                    human_add(hum, sizeof hum, part);
    if (dp) {
        /* the gradient reduce-scatter, the norm and the parameter all-gather (waiting for the slowest rank
         * included: on a shared machine that is most of it) */
        train_put(f, "comm_ms", "%.2f", s->comm_s * 1000);
        snprintf(part, sizeof part, "comm %.0f ms", s->comm_s * 1000);   human_add(hum, sizeof hum, part);
    }
    if (s->cfg.flops_per_step > 0) {
        double mfu = s->peak > 0 ? s->cfg.flops_per_step / dt / s->peak : 0;
        train_put(f, "mfu", "%.4f", mfu);
        snprintf(part, sizeof part, "MFU %.1f%%", 100 * mfu);             human_add(hum, sizeof hum, part);
    }
    train_log_step(&s->lg, step, f, hum);
    return 0;
}

/* The iterate path: the hook runs the step and writes its whole record. Returns 0, 1 (interrupted) or -1. */
static int iterate_step(train_stage *s, const train_stage_hooks *h, long step, gk_err *err) {
    train_step_out o;
    out_init(&o);
    int rc = h->iterate(h->ctx, s, step, &o, err);
    cJSON_Delete(o.pre);
    if (rc) { cJSON_Delete(o.post); return rc; }
    s->last_loss = o.loss;
    s->tokens += o.tokens;
    train_log_step(&s->lg, step, o.post, o.hpost);
    return 0;
}

/* ---------------------------------------------------------------- the loop */

/* What follows a logged step: the loss check, eval and sample at their cadence, a periodic checkpoint. */
static int after_step(train_stage *s, const train_stage_hooks *h, long step, gk_err *err) {
    const train_stage_cfg *c = &s->cfg;
    if (!isfinite(s->last_loss))
        return gk_errf(err, "loss became %f at step %ld; lower --lr or check the data", s->last_loss, step);
    int last = step + 1 == c->total;
    int periodic = c->val_every > 0 && (step + 1) % c->val_every == 0;
    if (h->eval && ((last && c->eval_last) || periodic) && h->eval(h->ctx, s, step, last && c->eval_last, err)) return -1;
    if (h->sample && c->sample_every > 0 && ((step + 1) % c->sample_every == 0 || (c->sample_first && step == s->step0)) &&
        h->sample(h->ctx, s, step, err)) return -1;
    if (c->save_every > 0 && (step + 1) % c->save_every == 0 && !last && save_all(s, h, step + 1, 0, err)) return -1;
    return 0;
}

int train_stage_run(train_stage *s, const train_stage_hooks *h, char *opts_json, gk_err *err) {
    const train_stage_cfg *c = &s->cfg;
    free(s->st.opts_json);
    s->st.opts_json = opts_json;
    gk_sigint_install();
    if (s->nranks > 1) {
        gpt_model *m = c->models[0].m;
        gk_log("%s: data parallel over %d ranks (Open MPI); ZeRO-1 optimizer state %.2f MB per rank (%.2f MB unsharded)\n",
               c->name, s->nranks, s->opt_bytes / 1e6, 8.0 * (double)m->num_params / 1e6);
        /* mpirun answers Ctrl-C with SIGTERM and, a second later, SIGKILL; SIGUSR1 it forwards (docs/distributed.md) */
        gk_log("%s: to stop and save: Ctrl-C if a step and a save take under a second, else kill -USR1 %ld (mpirun)\n",
               c->name, (long)getppid());
        if (s->rank == 0 && h->micro && !h->split && c->accum % s->nranks)
            gk_warn("%s: %ld micro-batches per step do not divide among %d ranks: some ranks wait each step "
                    "(make --total-batch / (B*T) a multiple of %d)\n", c->name, c->accum, s->nranks, s->nranks);
    }
    double t0 = gk_now();
    long step = s->step0;
    int rc = 0;
    double *step_ms = gk_malloc((size_t)(c->total > s->step0 ? c->total - s->step0 : 1) * sizeof(double));
    size_t nms = 0;
    for (; step < c->total; step++) {
        /* a Ctrl-C seen by any rank stops every rank at the same step */
        if (dist_any(gk_sigint_pending())) { s->interrupted = 1; break; }
        if (c->stop_at > 0 && step >= c->stop_at) break;
        double ts = gk_now();
        int r = h->iterate ? iterate_step(s, h, step, err) : micro_step(s, h, step, err);
        if (r == 0) step_ms[nms++] = (gk_now() - ts) * 1000;
        if (r == 1) { s->interrupted = 1; break; }
        if (r || after_step(s, h, step, err)) { rc = -1; break; }
    }
    s->step = step;
    s->seconds = gk_now() - t0;
    if (rc == 0) log_resources(s, step_ms, nms);
    free(step_ms);
    if (rc == 0 && h->finish && h->finish(h->ctx, s, step >= c->total && !s->interrupted, err)) rc = -1;
    if (rc == 0 || s->interrupted) {
        gk_err serr;
        if (save_all(s, h, step, step >= c->total && !s->interrupted, &serr)) { if (rc == 0) { *err = serr; rc = -1; } }
        else {
            s->saved = 1;
            if (!c->json) {
                gk_log("%s: saved %s at step %ld to %s", c->name, c->saved_what, step, c->models[0].out);
                for (size_t k = 1; k < c->n_models; k++) gk_log(", %s", c->models[k].out);
                gk_log("%s\n", s->interrupted ? " (interrupted; continue with --resume)" : "");
            }
        }
    }
    return rc;
}
