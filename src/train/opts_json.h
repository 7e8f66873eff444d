/* opts_json.h: private to src/train. A training stage stores its options in its resume state (JSON in
 * train_state.safetensors' metadata) and `--resume` reads them back. The fields every stage shares — learning
 * rate schedule, AdamW settings, seed, validation/save intervals, precision — are written and read here, once;
 * each stage adds its own fields with the OJ_* macros (j is the cJSON object in scope).
 */
#ifndef GK_TRAIN_OPTS_JSON_H
#define GK_TRAIN_OPTS_JSON_H
#include "train/train.h"
#include <cjson/cJSON.h>

#define OJ_PUT_S(k, v) do { if (v) cJSON_AddStringToObject(j, k, v); } while (0)
#define OJ_PUT_N(k, v) cJSON_AddNumberToObject(j, k, (double)(v))
#define OJ_GET_S(k, dst) do { const cJSON *x_ = cJSON_GetObjectItemCaseSensitive(j, k); \
                              if (cJSON_IsString(x_)) dst = gk_strdup(x_->valuestring); } while (0)
#define OJ_GET_N(k, dst, type) do { const cJSON *x_ = cJSON_GetObjectItemCaseSensitive(j, k); \
                                    if (cJSON_IsNumber(x_)) dst = (type)x_->valuedouble; } while (0)

/* The shared fields of one stage's options; NULL for what a stage does not have (PPO has its own learning
 * rates, no schedule, no validation interval, no precision). The seed is stored as a decimal string (a JSON
 * number is a double, which cannot hold every 64-bit seed). */
typedef struct {
    lr_schedule  *sched;       /* lr, warmup, schedule, final_frac */
    adamw_config *opt;         /* beta1, beta2, eps, weight_decay, grad_clip */
    uint64_t     *seed;
    long         *val_every, *save_every;
    int          *bf16;
} oj_common;
void oj_put_common(cJSON *j, const oj_common *c);
void oj_get_common(const cJSON *j, const oj_common *c);
/* Prints j (unformatted) into a malloc'd string and deletes it. */
char *oj_finish(cJSON *j);
#endif
