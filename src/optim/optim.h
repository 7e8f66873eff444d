/* optim: AdamW with decoupled weight decay, global-norm gradient clipping, learning-rate schedules.
 *
 * The optimizer walks the model's parameter table: it updates only parameters whose group is trainable
 * (gpt_model.trainable[]), applies weight decay only to table entries with decay set, and keeps its two
 * moment buffers in the same flat layout as params/grads (so saving and resuming are flat copies).
 * Semantics match torch.optim.AdamW and torch.nn.utils.clip_grad_norm_ (see docs/NOTES.md).
 *
 * ZeRO-1: an optimizer may own only a slice [lo, hi) of the flat parameters (adamw_create_shard). Its moments
 * then hold hi - lo values, it updates only the parameters in its slice (table entries cut at the slice's
 * edges), and its gradient sum of squares covers only its slice; the data-parallel caller (train/stage.c) sums
 * those over ranks for the global norm and all-gathers the updated parameters. One process owns [0, n).
 */
#ifndef GK_OPTIM_H
#define GK_OPTIM_H

#include <stddef.h>
#include "core/core.h"
#include "model/model.h"

typedef struct {
    float beta1, beta2, eps;
    float weight_decay;    /* decoupled; applied to table entries with decay=1 */
    float grad_clip;       /* max global L2 norm of the trainable grads; 0 disables */
} adamw_config;
void adamw_config_default(adamw_config *c);    /* 0.9, 0.95, 1e-8, wd 0.1, clip 1.0 */

typedef struct {
    adamw_config cfg;
    size_t n;          /* = model num_params */
    size_t lo, hi;     /* the slice of the flat parameters this optimizer updates ([0, n) unsharded) */
    float *m, *v;      /* device [hi - lo]: the moments of parameters lo .. hi-1 */
    long   t;          /* steps taken */
    kern_backend *be;  /* the model's backend, which owns m and v */
} adamw;

adamw *adamw_create(const gpt_model *model, const adamw_config *cfg);
/* An optimizer of the parameters [lo, hi) only (ZeRO-1's shard; see above). */
adamw *adamw_create_shard(const gpt_model *model, const adamw_config *cfg, size_t lo, size_t hi);
void   adamw_free(adamw *o);
/* Global L2 norm of the trainable gradients (before clipping). */
double adamw_grad_norm(const gpt_model *model);
/* Sum of squares of the trainable gradients inside o's slice (the whole model's when unsharded). */
double adamw_grad_sumsq(const adamw *o, const gpt_model *model);
/* One step at learning rate lr: clips (if configured) and updates trainable params. Returns the pre-clip
 * gradient norm. Does not zero grads. */
double adamw_step(adamw *o, gpt_model *model, float lr);
/* The update of o's slice given the global pre-clip gradient norm (what adamw_step does after its norm). */
void   adamw_update(adamw *o, gpt_model *model, float lr, double norm);

/* ---------------------------------------------------------------- LR schedule */
typedef enum { LR_CONSTANT = 0, LR_COSINE, LR_LINEAR } lr_shape;
typedef struct {
    float    lr;            /* peak */
    long     warmup;        /* linear warmup steps: lr * (step+1)/warmup for step < warmup */
    long     total;         /* total steps (decay ends at total-1) */
    lr_shape shape;         /* after warmup: constant, cosine or linear decay ... */
    float    final_frac;    /* ... down to lr * final_frac at the last step */
} lr_schedule;
float lr_at(const lr_schedule *s, long step);
/* "constant" | "cosine" | "linear" */
int lr_shape_parse(const char *name, lr_shape *out);
const char *lr_shape_name(lr_shape s);
#endif
