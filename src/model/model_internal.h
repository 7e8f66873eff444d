/* model_internal.h: shared between the files of src/model only (not part of the public interface). */
#ifndef GK_MODEL_INTERNAL_H
#define GK_MODEL_INTERNAL_H
#include "model/model.h"

/* gpt_create without the parameter buffer (params NULL): lets gpt_load check every tensor's shape against
 * the file before committing memory to a config.json that may claim a model far larger than the file. */
gpt_model *gpt_create_table(const gpt_config *cfg, kern_backend *be);   /* be NULL: a default one, owned */
void gpt_alloc_params(gpt_model *m);   /* zero-filled; no-op if already allocated */
#endif
