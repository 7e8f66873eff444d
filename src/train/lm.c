/* lm.c: next-token cross-entropy on top of the trunk, chunked over rows.
 *
 *   h = trunk(inputs)                       [BT, C]
 *   for each chunk of rows r:  logits_r = h_r @ wte^T       [R, V]
 *                              loss_r, dlogits_r = xent(logits_r, targets_r) scaled by 1/grad_div
 *                              dh_r += dlogits_r @ wte;  dwte += dlogits_r^T @ h_r
 *   trunk backward from dh
 *
 * Only a [R, V] logits buffer exists at a time (R = LM_CHUNK_ROWS), so a 50k vocabulary costs
 * R*V*4 bytes instead of B*T*V*4.
 */
#include "train/train.h"
#include "kern/kern.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LM_CHUNK_ROWS 256

struct train_lm {
    gpt_model *m;
    size_t cap_bt;
    float *logits;     /* device [LM_CHUNK_ROWS, V] (also dlogits, in place) */
    float *loss;       /* device [BT] */
    float *dloss;      /* device [BT] */
    float *dh;         /* device [BT, C] */
    int32_t *tgt;      /* device [BT] */
    float *host_loss;  /* host [BT] */
    float *host_dloss; /* host [BT] */
};

train_lm *train_lm_new(gpt_model *m) {
    train_lm *l = gk_calloc(1, sizeof *l);
    l->m = m;
    l->logits = kern_alloc(m->be, (size_t)LM_CHUNK_ROWS * (size_t)m->cfg.vocab_size * sizeof(float));
    return l;
}

void train_lm_free(train_lm *l) {
    if (!l) return;
    kern_free(l->m->be, l->logits); kern_free(l->m->be, l->loss); kern_free(l->m->be, l->dloss); kern_free(l->m->be, l->dh); kern_free(l->m->be, l->tgt);
    free(l->host_loss); free(l->host_dloss);
    free(l);
}

static void ensure(train_lm *l, size_t bt) {
    if (bt <= l->cap_bt) return;
    size_t C = (size_t)l->m->cfg.n_embd;
    kern_free(l->m->be, l->loss); kern_free(l->m->be, l->dloss); kern_free(l->m->be, l->dh); kern_free(l->m->be, l->tgt);
    free(l->host_loss); free(l->host_dloss);
    l->loss = kern_alloc(l->m->be, bt * sizeof(float));
    l->dloss = kern_alloc(l->m->be, bt * sizeof(float));
    l->dh = kern_alloc(l->m->be, bt * C * sizeof(float));
    l->tgt = kern_alloc(l->m->be, bt * sizeof(int32_t));
    l->host_loss = gk_malloc(bt * sizeof(float));
    l->host_dloss = gk_malloc(bt * sizeof(float));
    l->cap_bt = bt;
}

double train_lm_loss(train_lm *l, const int32_t *inputs, const int32_t *targets, size_t B, size_t T,
                     double grad_div, size_t *ncounted) {
    gpt_model *m = l->m;
    size_t BT = B * T, C = (size_t)m->cfg.n_embd, V = (size_t)m->cfg.vocab_size;
    ensure(l, BT);
    size_t count = 0;
    for (size_t i = 0; i < BT; i++) count += targets[i] >= 0;
    if (ncounted) *ncounted = count;
    int backward = grad_div > 0;
    float g = backward ? (float)(1.0 / grad_div) : 0.0f;
    for (size_t i = 0; i < BT; i++) l->host_dloss[i] = targets[i] >= 0 ? g : 0.0f;
    kern_upload(m->be, l->tgt, targets, BT * sizeof(int32_t));
    kern_upload(m->be, l->dloss, l->host_dloss, BT * sizeof(float));

    gpt_forward(m, inputs, B, T);
    const float *h = gpt_hidden(m);
    if (backward) kern_zero(m->be, l->dh, BT * C * sizeof(float));
    for (size_t r0 = 0; r0 < BT; r0 += LM_CHUNK_ROWS) {
        size_t R = BT - r0 < LM_CHUNK_ROWS ? BT - r0 : LM_CHUNK_ROWS;
        gpt_lm_head_fwd(m, l->logits, h + r0 * C, R);
        kern_xent_fwd_bwd(m->be, l->loss + r0, backward ? l->logits : NULL, l->logits, l->tgt + r0,
                          backward ? l->dloss + r0 : NULL, R, V);
        if (backward) gpt_lm_head_bwd(m, l->dh + r0 * C, l->logits, h + r0 * C, R);
    }
    if (backward) gpt_backward(m, l->dh);
    kern_download(m->be, l->host_loss, l->loss, BT * sizeof(float));
    double sum = 0;
    for (size_t i = 0; i < BT; i++) if (targets[i] >= 0) sum += l->host_loss[i];
    return count ? sum / (double)count : NAN;
}

void train_lm_logprobs(train_lm *l, const int32_t *inputs, const int32_t *targets, size_t B, size_t T, float *logp) {
    size_t BT = B * T;
    train_lm_loss(l, inputs, targets, B, T, 0, NULL);
    for (size_t i = 0; i < BT; i++) logp[i] = targets[i] >= 0 ? -l->host_loss[i] : 0.0f;
}

size_t train_sample(gpt_model *m, const int32_t *prompt, size_t n_prompt, size_t max_new, float temperature,
                    gk_rng *rng, int32_t stop_id, int32_t *out) {
    size_t ctx = (size_t)m->cfg.n_ctx, V = (size_t)m->cfg.vocab_size, C = (size_t)m->cfg.n_embd;
    int32_t *seq = gk_malloc((n_prompt + max_new + 1) * sizeof(int32_t));
    memcpy(seq, prompt, n_prompt * sizeof(int32_t));
    size_t n = n_prompt, produced = 0;
    float *logits = kern_alloc(m->be, V * sizeof(float));
    float *host = gk_malloc(V * sizeof(float));
    while (produced < max_new && n > 0) {
        size_t start = n > ctx ? n - ctx : 0, len = n - start;
        gpt_forward(m, seq + start, 1, len);
        gpt_lm_head_fwd(m, logits, gpt_hidden(m) + (len - 1) * C, 1);
        kern_download(m->be, host, logits, V * sizeof(float));
        size_t pick = 0;
        if (temperature <= 0) {
            for (size_t v = 1; v < V; v++) if (host[v] > host[pick]) pick = v;
        } else {
            float mx = host[0];
            for (size_t v = 1; v < V; v++) if (host[v] > mx) mx = host[v];
            double z = 0;
            for (size_t v = 0; v < V; v++) z += exp((host[v] - mx) / temperature);
            double u = gk_rng_uniform(rng) * z, acc = 0;
            pick = V - 1;
            for (size_t v = 0; v < V; v++) { acc += exp((host[v] - mx) / temperature); if (acc >= u) { pick = v; break; } }
        }
        out[produced++] = (int32_t)pick;
        seq[n++] = (int32_t)pick;
        if (stop_id >= 0 && (int32_t)pick == stop_id) break;
    }
    kern_free(m->be, logits); free(host); free(seq);
    return produced;
}

int train_eval_loss(gpt_model *m, const char *shard, size_t B, size_t T, long batches, double *loss,
                    size_t *ntok, gk_err *err) {
    if (T > (size_t)m->cfg.n_ctx)
        return gk_errf(err, "sequence length %zu exceeds the model's context %d", T, m->cfg.n_ctx);
    data_loader *dl = data_loader_open(shard, B, T, 0, 0, (uint32_t)m->cfg.vocab_size, err);
    if (!dl) return -1;
    long avail = (long)data_loader_batches_per_epoch(dl);
    if (batches <= 0 || batches > avail) {
        if (batches > avail)
            gk_warn("%s holds only %ld sequential batches of %zux%zu; evaluating those\n", shard, avail, B, T);
        batches = avail;
    }
    int32_t *in = gk_malloc(B * T * sizeof(int32_t)), *tg = gk_malloc(B * T * sizeof(int32_t));
    train_lm *l = train_lm_new(m);
    double sum = 0; size_t count = 0; int rc = 0;
    for (long k = 0; k < batches; k++) {
        if (data_loader_next(dl, in, tg, err) != 0) { rc = -1; break; }
        size_t c;
        double mean = train_lm_loss(l, in, tg, B, T, 0, &c);
        sum += mean * (double)c; count += c;
    }
    train_lm_free(l);
    free(in); free(tg);
    data_loader_free(dl);
    if (rc) return -1;
    *loss = count ? sum / (double)count : NAN;
    if (ntok) *ntok = count;
    return 0;
}
