/* adamw.c: AdamW over the parameter table, global-norm clipping, LR schedules. See optim.h. */
#include "optim/optim.h"
#include "kern/kern.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void adamw_config_default(adamw_config *c) {
    c->beta1 = 0.9f; c->beta2 = 0.95f; c->eps = 1e-8f; c->weight_decay = 0.1f; c->grad_clip = 1.0f;
}

adamw *adamw_create_shard(const gpt_model *model, const adamw_config *cfg, size_t lo, size_t hi) {
    GK_CHECK(lo <= hi && hi <= model->num_params, "adamw shard [%zu, %zu) of %zu parameters", lo, hi, model->num_params);
    adamw *o = gk_calloc(1, sizeof *o);
    o->cfg = *cfg;
    o->n = model->num_params;
    o->lo = lo; o->hi = hi;
    o->be = model->be;
    /* an empty shard (more ranks than parameters) still gets a valid allocation */
    size_t k = hi - lo ? hi - lo : 1;
    o->m = kern_alloc(model->be, k * sizeof(float));
    o->v = kern_alloc(model->be, k * sizeof(float));
    return o;
}
adamw *adamw_create(const gpt_model *model, const adamw_config *cfg) {
    return adamw_create_shard(model, cfg, 0, model->num_params);
}
void adamw_free(adamw *o) {
    if (!o) return;
    kern_free(o->be, o->m); kern_free(o->be, o->v);
    free(o);
}

double adamw_grad_norm(const gpt_model *model) {
    double ss = 0;
    for (size_t i = 0; i < model->n_table; i++) {
        const gpt_param *p = &model->table[i];
        if (!model->trainable[p->group]) continue;
        ss += kern_sumsq(model->be, model->grads + p->offset, p->numel);
    }
    return sqrt(ss);
}

/* The part of table entry p inside [lo, hi): offset *a and count (0 if none). */
static size_t clip_entry(const gpt_param *p, size_t lo, size_t hi, size_t *a) {
    size_t b0 = p->offset > lo ? p->offset : lo, e = p->offset + p->numel, b1 = e < hi ? e : hi;
    *a = b0;
    return b1 > b0 ? b1 - b0 : 0;
}

double adamw_grad_sumsq(const adamw *o, const gpt_model *model) {
    double ss = 0;
    for (size_t i = 0; i < model->n_table; i++) {
        const gpt_param *p = &model->table[i];
        if (!model->trainable[p->group]) continue;
        size_t a, k = clip_entry(p, o->lo, o->hi, &a);
        if (k) ss += kern_sumsq(model->be, model->grads + a, k);
    }
    return ss;
}

double adamw_step(adamw *o, gpt_model *model, float lr) {
    GK_CHECK(model->grads, "adamw_step before gpt_alloc_grads");
    double norm = sqrt(adamw_grad_sumsq(o, model));
    adamw_update(o, model, lr, norm);
    return norm;
}

void adamw_update(adamw *o, gpt_model *model, float lr, double norm) {
    GK_CHECK(model->grads, "adamw_update before gpt_alloc_grads");
    /* torch.nn.utils.clip_grad_norm_: g *= min(1, max_norm / (norm + 1e-6)) */
    float gscale = 1.0f;
    if (o->cfg.grad_clip > 0 && isfinite(norm)) {
        double c = o->cfg.grad_clip / (norm + 1e-6);
        if (c < 1.0) gscale = (float)c;
    }
    o->t++;
    float bc1 = 1.0f - powf(o->cfg.beta1, (float)o->t);
    float bc2 = 1.0f - powf(o->cfg.beta2, (float)o->t);
    for (size_t i = 0; i < model->n_table; i++) {
        const gpt_param *p = &model->table[i];
        if (!model->trainable[p->group]) continue;
        size_t a, k = clip_entry(p, o->lo, o->hi, &a);
        if (!k) continue;
        kern_adamw(model->be, model->params + a, model->grads + a, o->m + (a - o->lo), o->v + (a - o->lo), k, lr,
                   o->cfg.beta1, o->cfg.beta2, o->cfg.eps, p->decay ? o->cfg.weight_decay : 0.0f, bc1, bc2, gscale);
    }
}

float lr_at(const lr_schedule *s, long step) {
    if (s->warmup > 0 && step < s->warmup) return s->lr * (float)(step + 1) / (float)s->warmup;
    if (s->shape == LR_CONSTANT) return s->lr;
    long span = s->total - 1 - s->warmup;
    double frac = span > 0 ? (double)(step - s->warmup) / (double)span : 1.0;
    if (frac < 0) frac = 0;
    if (frac > 1) frac = 1;
    double lo = (double)s->lr * s->final_frac;
    double mult = s->shape == LR_COSINE ? 0.5 * (1.0 + cos(M_PI * frac)) : 1.0 - frac;
    return (float)(lo + ((double)s->lr - lo) * mult);
}

int lr_shape_parse(const char *name, lr_shape *out) {
    if (!strcmp(name, "constant")) *out = LR_CONSTANT;
    else if (!strcmp(name, "cosine")) *out = LR_COSINE;
    else if (!strcmp(name, "linear")) *out = LR_LINEAR;
    else return -1;
    return 0;
}
const char *lr_shape_name(lr_shape s) { return s == LR_COSINE ? "cosine" : s == LR_LINEAR ? "linear" : "constant"; }
