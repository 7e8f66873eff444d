/* lm.c: the LM head on top of the trunk, chunked over rows — one path for pretraining's and SFT's mean
 * cross-entropy and for the per-token log-probs of PPO and DPO.
 *
 *   h = trunk(inputs)                                  [BT, C]
 *   for each chunk of rows r:  logits_r = h_r @ wte^T / temperature          [R, V]
 *                              loss_r = xent(logits_r, targets_r)  (logp = -loss)
 *                              with a backward: dlogits_r = dloss_r * (softmax - onehot) / temperature
 *                                               dh_r += dlogits_r @ wte;  dwte += dlogits_r^T @ h_r
 *   trunk backward from dh
 *
 * Only a [R, V] logits buffer exists at a time (R = LM_CHUNK_ROWS), so a 50k vocabulary costs R*V*4 bytes
 * instead of B*T*V*4. train_lm_loss knows its dloss up front (1/grad_div per counted row) and runs forward
 * and backward in one pass; train_lm_logprobs does not (PPO's and DPO's losses need every log-prob first),
 * so train_lm_backward recomputes each chunk's logits.
 *
 * Only rows that matter go through the head: rows with a target (SFT's prompt and padding rows have none,
 * target -1), and in train_lm_backward only rows with a nonzero gradient. Their indices are packed (rows[]) and
 * the chunks run over the packed list: a chunk whose rows are consecutive in h reads h (and writes dh) in
 * place; otherwise its rows are gathered into [R, C] scratch and its dh scattered back (row runs, one copy
 * each). A skipped row's loss is 0 and its dh row stays 0 — what the full computation gives it (dloss 0), so
 * the loss and every gradient are those of running every row, up to float summation order in the head's
 * weight gradient. The head is ~30% of a small model's FLOPs, so this matters wherever masks are dense.
 */
#include "train/train.h"
#include "kern/kern.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LM_CHUNK_ROWS 256

struct train_lm {
    gpt_model *m;
    size_t cap_bt, B, T;  /* B, T: of the last forward */
    float temperature;    /* of the last train_lm_logprobs */
    float *logits;        /* device [LM_CHUNK_ROWS, V] (also dlogits, in place) */
    float *hlogits;       /* host [LM_CHUNK_ROWS, V] for the entropy (only when asked) */
    float *loss;          /* device [BT]: per packed row */
    float *dloss;         /* device [BT]: per packed row */
    float *dh;            /* device [BT, C] */
    int32_t *tgt;         /* device [BT]: per packed row */
    int32_t *htgt;        /* host [BT] */
    float *host_loss;     /* host [BT] */
    float *host_dloss;    /* host [BT] */
    size_t *rows;         /* host [BT]: the rows that go through the head, ascending (packed row k is rows[k]) */
    int32_t *ptgt;        /* host [BT]: targets per packed row */
    float *pdloss;        /* host [BT]: dloss per packed row; also the packed losses coming back */
    float *hpack, *dhpack;/* device [LM_CHUNK_ROWS, C]: a chunk's gathered h and its dh (allocated on first use) */
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
    kern_free(l->m->be, l->hpack); kern_free(l->m->be, l->dhpack);
    free(l->hlogits); free(l->htgt); free(l->host_loss); free(l->host_dloss);
    free(l->rows); free(l->ptgt); free(l->pdloss);
    free(l);
}

static void ensure(train_lm *l, size_t bt) {
    if (bt <= l->cap_bt) return;
    size_t C = (size_t)l->m->cfg.n_embd;
    kern_free(l->m->be, l->loss); kern_free(l->m->be, l->dloss); kern_free(l->m->be, l->dh); kern_free(l->m->be, l->tgt);
    free(l->htgt); free(l->host_loss); free(l->host_dloss);
    free(l->rows); free(l->ptgt); free(l->pdloss);
    l->loss = kern_alloc(l->m->be, bt * sizeof(float));
    l->dloss = kern_alloc(l->m->be, bt * sizeof(float));
    l->dh = kern_alloc(l->m->be, bt * C * sizeof(float));
    l->tgt = kern_alloc(l->m->be, bt * sizeof(int32_t));
    l->htgt = gk_malloc(bt * sizeof(int32_t));
    l->host_loss = gk_malloc(bt * sizeof(float));
    l->host_dloss = gk_malloc(bt * sizeof(float));
    l->rows = gk_malloc(bt * sizeof(size_t));
    l->ptgt = gk_malloc(bt * sizeof(int32_t));
    l->pdloss = gk_malloc(bt * sizeof(float));
    l->cap_bt = bt;
}

/* Stores the targets of a [B, T] batch (host; lm_chunks uploads the packed ones). */
static void set_targets(train_lm *l, const int32_t *targets, size_t B, size_t T) {
    size_t BT = B * T;
    ensure(l, BT);
    l->B = B; l->T = T;
    memcpy(l->htgt, targets, BT * sizeof(int32_t));
}

/* How one pass over the row chunks runs: the rows with a target go through the head, and with by_dloss only
 * those with a nonzero host_dloss (the others' gradient is 0: their logits are not needed); with a backward,
 * dloss = host_dloss; entropy (host [BT], may be NULL): the tempered entropy of rows with a target, else 0. */
typedef struct { int by_dloss; int backward; float *entropy; } lm_pass;

/* Copies the n packed rows k0.. between packed scratch and their places rows[k0..] in a [BT, C] buffer, one
 * kern_copy per run of consecutive rows: from_pack 0 gathers src (full) into dst (packed), 1 scatters src
 * (packed) into dst (full). */
static void move_rows(const train_lm *l, float *dst, const float *src, size_t k0, size_t n, size_t C, int from_pack) {
    const size_t *rows = l->rows;
    for (size_t a = 0; a < n;) {
        size_t b = a + 1;
        while (b < n && rows[k0 + b] == rows[k0 + b - 1] + 1) b++;
        size_t pk = a * C, full = rows[k0 + a] * C;
        kern_copy(l->m->be, dst + (from_pack ? full : pk), src + (from_pack ? pk : full), (b - a) * C * sizeof(float));
        a = b;
    }
}

/* The chunk loop every entry point shares (h = the trunk's hidden states of the last forward). Leaves every
 * row's loss in host_loss (0 for rows skipped). */
static void lm_chunks(train_lm *l, const lm_pass *p) {
    gpt_model *m = l->m;
    kern_backend *be = m->be;
    size_t BT = l->B * l->T, C = (size_t)m->cfg.n_embd, V = (size_t)m->cfg.vocab_size;
    float inv = 1.0f / l->temperature;
    const float *h = gpt_hidden(m);
    /* pack the rows that matter */
    size_t n = 0;
    for (size_t i = 0; i < BT; i++)
        if (l->htgt[i] >= 0 && (!p->by_dloss || l->host_dloss[i] != 0.0f)) {
            l->rows[n] = i; l->ptgt[n] = l->htgt[i]; l->pdloss[n] = l->host_dloss[i]; n++;
        }
    if (n) kern_upload(be, l->tgt, l->ptgt, n * sizeof(int32_t));
    if (n && p->backward) kern_upload(be, l->dloss, l->pdloss, n * sizeof(float));
    if (p->entropy) memset(p->entropy, 0, BT * sizeof(float));
    if (p->backward) kern_zero(be, l->dh, BT * C * sizeof(float));
    for (size_t k0 = 0; k0 < n; k0 += LM_CHUNK_ROWS) {
        size_t R = n - k0 < LM_CHUNK_ROWS ? n - k0 : LM_CHUNK_ROWS;
        /* consecutive rows: h and dh in place; else gathered into hpack, dh into dhpack and scattered after */
        int inplace = l->rows[k0 + R - 1] - l->rows[k0] == R - 1;
        const float *hr = h + l->rows[k0] * C;
        float *dhr = l->dh + l->rows[k0] * C;
        if (!inplace) {
            if (!l->hpack) {
                l->hpack = kern_alloc(be, (size_t)LM_CHUNK_ROWS * C * sizeof(float));
                l->dhpack = kern_alloc(be, (size_t)LM_CHUNK_ROWS * C * sizeof(float));
            }
            move_rows(l, l->hpack, h, k0, R, C, 0);
            hr = l->hpack; dhr = l->dhpack;
            if (p->backward) kern_zero(be, l->dhpack, R * C * sizeof(float));
        }
        gpt_lm_head_fwd(m, l->logits, hr, R);
        if (inv != 1.0f) kern_scale(be, l->logits, inv, R * V);
        if (p->entropy) {
            kern_download(be, l->hlogits, l->logits, R * V * sizeof(float));
            for (size_t i = 0; i < R; i++) p->entropy[l->rows[k0 + i]] = (float)rlhf_entropy_row(l->hlogits + i * V, V, 1.0f);
        }
        /* with a backward, overwrites logits with dloss * (softmax - onehot): the gradient of the tempered logits */
        kern_xent_fwd_bwd(be, l->loss + k0, p->backward ? l->logits : NULL, l->logits, l->tgt + k0,
                          p->backward ? l->dloss + k0 : NULL, R, V);
        if (!p->backward) continue;
        if (inv != 1.0f) kern_scale(be, l->logits, inv, R * V);
        gpt_lm_head_bwd(m, dhr, l->logits, hr, R);
        if (!inplace) move_rows(l, l->dh, l->dhpack, k0, R, C, 1);
    }
    /* the packed losses back to their rows */
    if (n) kern_download(be, l->pdloss, l->loss, n * sizeof(float));
    memset(l->host_loss, 0, BT * sizeof(float));
    for (size_t k = 0; k < n; k++) l->host_loss[l->rows[k]] = l->pdloss[k];
    if (p->backward) gpt_backward(m, l->dh);
}

double train_lm_loss(train_lm *l, const int32_t *inputs, const int32_t *targets, size_t B, size_t T,
                     double grad_div, size_t *ncounted) {
    size_t BT = B * T;
    set_targets(l, targets, B, T);
    l->temperature = 1.0f;
    size_t count = 0;
    for (size_t i = 0; i < BT; i++) count += targets[i] >= 0;
    if (ncounted) *ncounted = count;
    int backward = grad_div > 0;
    float g = backward ? (float)(1.0 / grad_div) : 0.0f;
    for (size_t i = 0; i < BT; i++) l->host_dloss[i] = targets[i] >= 0 ? g : 0.0f;
    gpt_forward(l->m, inputs, B, T);
    lm_chunks(l, &(lm_pass){ 0, backward, NULL });
    double sum = 0;
    for (size_t i = 0; i < BT; i++) if (targets[i] >= 0) sum += l->host_loss[i];
    return count ? sum / (double)count : NAN;
}

void train_lm_logprobs(train_lm *l, const int32_t *inputs, const int32_t *targets, size_t B, size_t T,
                       float temperature, float *logp, float *entropy) {
    size_t BT = B * T;
    set_targets(l, targets, B, T);
    l->temperature = temperature > 0 ? temperature : 1.0f;
    if (entropy && !l->hlogits) l->hlogits = gk_malloc((size_t)LM_CHUNK_ROWS * (size_t)l->m->cfg.vocab_size * sizeof(float));
    gpt_forward(l->m, inputs, B, T);
    lm_chunks(l, &(lm_pass){ 0, 0, entropy });
    for (size_t i = 0; i < BT; i++) logp[i] = targets[i] >= 0 ? -l->host_loss[i] : 0.0f;
}

void train_lm_backward(train_lm *l, const float *dlogp) {
    size_t BT = l->B * l->T;
    for (size_t i = 0; i < BT; i++) l->host_dloss[i] = l->htgt[i] >= 0 ? -dlogp[i] : 0.0f;
    lm_chunks(l, &(lm_pass){ 1, 1, NULL });
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
    double sum = 0;
    size_t count = 0;
    if (train_eval_sums(m, shard, B, T, batches, 0, 1, &sum, &count, err)) return -1;
    *loss = count ? sum / (double)count : NAN;
    if (ntok) *ntok = count;
    return 0;
}

int train_eval_sums(gpt_model *m, const char *shard, size_t B, size_t T, long batches, int part, int nparts,
                    double *sum_out, size_t *count_out, gk_err *err) {
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
        if (k % nparts != part) continue;   /* another rank's batch */
        size_t c;
        double mean = train_lm_loss(l, in, tg, B, T, 0, &c);
        sum += mean * (double)c; count += c;
    }
    train_lm_free(l);
    free(in); free(tg);
    data_loader_free(dl);
    if (rc) return -1;
    *sum_out = sum; *count_out = count;
    return 0;
}
