/* sampler.c: from logits to the next token — penalties, temperature, top-k, top-p, min-p, the draw, and the
 * raw log-probability. Pure host code on one row of V logits.
 *
 * Order (documented in infer.h and docs/chat.md): penalties on the logits; temperature; softmax; top-k;
 * top-p on the survivors (renormalised); min-p relative to the most likely survivor; renormalise; draw by
 * inverse CDF in id order with one uniform. Ties in ranking go to the lower id, so results are deterministic.
 */
#include "infer/infer.h"
#include "kern/kern.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void infer_sampling_default(infer_sampling *s) {
    memset(s, 0, sizeof *s);
    s->temperature = 1.0f;
    s->top_p = 1.0f;
    s->repetition_penalty = 1.0f;
    s->seed = 1337;
}

int infer_sampling_validate(const infer_sampling *s, gk_err *err) {
    if (!(s->temperature >= 0) || !isfinite(s->temperature)) return gk_errf(err, "temperature must be >= 0, got %g", s->temperature);
    if (s->top_k < 0) return gk_errf(err, "top-k must be >= 0 (0 = off), got %d", s->top_k);
    if (!(s->top_p > 0 && s->top_p <= 1)) return gk_errf(err, "top-p must be in (0, 1], got %g", s->top_p);
    if (!(s->min_p >= 0 && s->min_p <= 1)) return gk_errf(err, "min-p must be in [0, 1], got %g", s->min_p);
    if (!(s->repetition_penalty > 0) || !isfinite(s->repetition_penalty))
        return gk_errf(err, "repetition penalty must be > 0 (1 = off), got %g", s->repetition_penalty);
    if (!isfinite(s->frequency_penalty) || !isfinite(s->presence_penalty))
        return gk_errf(err, "frequency / presence penalties must be finite");
    return 0;
}

/* qsort context-free comparator over (prob, id) pairs: descending prob, then ascending id */
typedef struct { float p; int32_t id; } cand;
static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

void infer_sampling_probs(const infer_sampling *s, const float *logits, size_t V, const uint32_t *counts,
                          const uint8_t *seen, float *probs) {
    /* 1. penalties (probs is the working copy of the logits) */
    memcpy(probs, logits, V * sizeof(float));
    if (seen && s->repetition_penalty != 1.0f) {
        float r = s->repetition_penalty;
        for (size_t v = 0; v < V; v++) if (seen[v]) probs[v] = probs[v] > 0 ? probs[v] / r : probs[v] * r;
    }
    if (counts && (s->frequency_penalty != 0 || s->presence_penalty != 0))
        for (size_t v = 0; v < V; v++)
            if (counts[v]) probs[v] -= s->frequency_penalty * (float)counts[v] + s->presence_penalty;
    /* 2. greedy: the first id of the largest logit */
    float mx = kern_row_max(probs, V);
    if (s->temperature == 0) {
        size_t amax = 0;
        while (amax + 1 < V && !(probs[amax] == mx)) amax++;
        memset(probs, 0, V * sizeof(float));
        probs[amax] = 1.0f;
        return;
    }
    /* 3. temperature + softmax (vectorised exp, the sum in double) */
    double z = kern_row_exp(probs, probs, V, mx, 1.0f / s->temperature);
    kern_row_scale(probs, V, (float)(1.0 / z));
    /* 4. truncations */
    int need_rank = (s->top_k > 0 && (size_t)s->top_k < V) || s->top_p < 1.0f;
    if (need_rank) {
        cand *c = malloc(V * sizeof *c);
        size_t n = 0;
        for (size_t v = 0; v < V; v++) if (probs[v] > 0) { c[n].p = probs[v]; c[n].id = (int32_t)v; n++; }
        qsort(c, n, sizeof *c, cand_cmp);
        size_t keep = n;
        if (s->top_k > 0 && (size_t)s->top_k < keep) keep = (size_t)s->top_k;
        if (s->top_p < 1.0f) {
            double tot = 0, cum = 0;
            for (size_t i = 0; i < keep; i++) tot += c[i].p;
            size_t k = 0;
            while (k < keep) { cum += c[k].p; k++; if (cum >= s->top_p * tot) break; }
            keep = k;
        }
        for (size_t i = keep; i < n; i++) probs[c[i].id] = 0;
        free(c);
    }
    if (s->min_p > 0) {
        float pm = 0;
        for (size_t v = 0; v < V; v++) if (probs[v] > pm) pm = probs[v];
        float cut = s->min_p * pm;
        for (size_t v = 0; v < V; v++) if (probs[v] < cut) probs[v] = 0;
    }
    if (need_rank || s->min_p > 0) {
        double t = 0;
        for (size_t v = 0; v < V; v++) t += probs[v];
        for (size_t v = 0; v < V; v++) probs[v] = (float)(probs[v] / t);
    }
}

/* Inverse CDF in id order. Blocks of 1024 probabilities are summed vectorised and skipped whole while the
 * uniform lies beyond them; the block holding it is walked id by id. */
int32_t infer_draw(const float *probs, size_t V, gk_rng *rng) {
    enum { BLK = 1024 };
    double tot = kern_row_sum(probs, V);
    double u = gk_rng_uniform(rng) * tot, acc = 0;
    for (size_t b = 0; b < V; b += BLK) {
        size_t e = V - b < BLK ? V : b + BLK;
        double bs = kern_row_sum(probs + b, e - b);
        if (u >= acc + bs) { acc += bs; continue; }
        for (size_t v = b; v < e; v++) {
            if (probs[v] <= 0) continue;
            acc += probs[v];
            if (u < acc) return (int32_t)v;
        }
    }
    for (size_t v = V; v-- > 0;) if (probs[v] > 0) return (int32_t)v;   /* rounding at the very end */
    return 0;
}

float infer_logprob(const float *logits, size_t V, int32_t id) {
    /* the kernels' vectorised exp, summed in double: relative error ~1e-7, far below what PPO's ratios notice */
    float mx = kern_row_max(logits, V);
    double z = kern_row_expsum(logits, V, mx);
    return (float)((double)logits[id] - (double)mx - log(z));
}
