/* lora_setup.c: what a training stage does to train LoRA adapters instead of the whole model (docs/lora.md).
 *
 * The adapters are attached to the loaded base (src/model/lora.c), every base group is frozen (no gradient
 * buffer is ever allocated for it), and the stage skeleton's optimizer sees only the adapters' table
 * (train_opt_model). Checkpoints of such a run are PEFT adapter directories (adapter_config.json naming the
 * base, adapter_model.safetensors) plus the usual train_state.safetensors for an exact resume; resuming opens
 * the recorded base and attaches the saved adapter (train_open_model).
 */
#include "train/train.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int train_lora_setup(gpt_model *m, const train_lora_opts *o, const char *base_dir, uint64_t seed, int quiet, gk_err *err) {
    if (o->rank <= 0) {
        if (m->lora) return gk_errf(err, "this run continues a LoRA adapter: --lora-rank must stay > 0");
        return 0;
    }
    if (!m->lora) {
        gpt_lora_config c = { .rank = (int)o->rank, .alpha = o->alpha, .dropout = o->dropout, .rslora = o->rslora,
                              .score = o->score };
        if (gpt_lora_parse_targets(&m->cfg, o->targets, &c.targets, err)) return -1;
        if (gpt_lora_attach(m, &c, seed ^ 0x4C6F5241ULL, err)) return -1;
        char *abs = base_dir ? realpath(base_dir, NULL) : NULL;
        m->lora->base = abs ? abs : (base_dir ? gk_strdup(base_dir) : NULL);
    } else {
        /* continuing an adapter (--resume, or --init ADAPTER_DIR): the flags must describe that adapter */
        m->lora->cfg.dropout = o->dropout;   /* a training setting, not the adapter's: the run's flag holds */
        unsigned t = 0;
        if (gpt_lora_parse_targets(&m->cfg, o->targets, &t, err)) return -1;
        if (m->lora->cfg.rank != (int)o->rank || t != m->lora->cfg.targets)
            return gk_errf(err, "--lora-rank %ld / --lora-targets %s differ from the adapter being continued (rank %d); "
                           "pass its settings, or start from its base", o->rank, o->targets, m->lora->cfg.rank);
    }
    for (int g = 0; g < GPT_NGROUPS; g++) gpt_set_trainable(m, g, 0);
    size_t n = gpt_lora_num_params(m);
    if (quiet) {   /* --json: one object on stdout, like the stages' data summary */
        cJSON *j = cJSON_CreateObject(), *l = cJSON_AddObjectToObject(j, "lora");
        cJSON_AddNumberToObject(l, "rank", m->lora->cfg.rank);
        cJSON_AddNumberToObject(l, "alpha", m->lora->cfg.alpha);
        cJSON_AddNumberToObject(l, "layers", (double)m->lora->n_sites);
        cJSON_AddNumberToObject(l, "trainable_params", (double)n);
        cJSON_AddNumberToObject(l, "base_params", (double)m->num_params);
        cJSON_AddNumberToObject(l, "optimizer_grad_bytes", 12.0 * (double)n);
        cJSON_AddNumberToObject(l, "full_optimizer_grad_bytes", 12.0 * (double)m->num_params);
        char *txt = cJSON_PrintUnformatted(j);
        if (txt) printf("%s\n", txt);
        fflush(stdout);
        free(txt);
        cJSON_Delete(j);
    } else {
        gk_log("lora: rank %d, alpha %g (scale %.4g), %zu adapted layers: %zu trainable parameters (%.3f%% of %zu); "
               "optimizer + gradients %.2f MB (full finetuning: %.2f MB)\n",
               m->lora->cfg.rank, m->lora->cfg.alpha, m->lora->scale, m->lora->n_sites, n,
               100.0 * (double)n / (double)m->num_params, m->num_params, 12.0 * (double)n / 1e6, 12.0 * (double)m->num_params / 1e6);
    }
    return 0;
}

gpt_model *train_open_model(const char *dir, char **tok_rec, char **base_dir, int quant, gk_err *err) {
    if (base_dir) *base_dir = NULL;
    if (!gpt_lora_is_dir(dir)) {
        gpt_model *m = quant ? gpt_load_infer(dir, tok_rec, err) : gpt_load(dir, tok_rec, err);
        if (m && base_dir) *base_dir = gk_strdup(dir);
        return m;
    }
    /* an adapter: its base first (recorded in adapter_config.json), then the adapter onto it */
    gpt_model *probe = NULL;
    char *base = NULL, *cp = gk_path_join(dir, "adapter_config.json"), *txt = NULL;
    size_t n = 0;
    if (gk_read_file(cp, &txt, &n, err) == 0) {
        cJSON *j = cJSON_ParseWithLength(txt, n);
        const cJSON *b = j ? cJSON_GetObjectItemCaseSensitive(j, "base_model_name_or_path") : NULL;
        if (cJSON_IsString(b) && *b->valuestring) base = gk_strdup(b->valuestring);
        else gk_errf(err, "%s: no base_model_name_or_path: cannot tell which base this adapter belongs to", cp);
        cJSON_Delete(j);
    }
    free(txt); free(cp);
    if (!base) return NULL;
    probe = quant ? gpt_load_infer(base, tok_rec, err) : gpt_load(base, tok_rec, err);
    if (!probe) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        gk_errf(err, "%s: its base %s: %s", dir, base, msg);
        free(base);
        return NULL;
    }
    char *rec = NULL;
    if (gpt_lora_load(probe, dir, &rec, err)) { gpt_free(probe); free(base); free(rec); if (tok_rec) { free(*tok_rec); *tok_rec = NULL; } return NULL; }
    probe->lora->base = rec;
    for (int g = 0; g < GPT_NGROUPS; g++) gpt_set_trainable(probe, g, 0);
    if (base_dir) *base_dir = base; else free(base);
    return probe;
}

int train_refuse_adapter_policy(const char *stage, const char *dir, gk_err *err) {
    if (!gpt_lora_is_dir(dir)) return 0;
    return gk_errf(err, "--policy %s is a LoRA adapter; %s needs the whole SFT model as its reference: merge it first "
                   "(gptkit lora merge --model BASE --adapter %s --out MERGED) and pass --policy MERGED", dir, stage, dir);
}

int train_policy_open(const char *stage, const char *policy_dir, const char *resume_dir, const train_lora_opts *lo,
                      uint64_t seed, int quiet, gpt_model **policy, gpt_model **ref, char **tok_rec, char **base_dir,
                      gk_err *err) {
    *policy = *ref = NULL;
    if (!resume_dir && train_refuse_adapter_policy(stage, policy_dir, err)) return -1;
    const char *pdir = resume_dir ? resume_dir : policy_dir;
    if (!(*policy = train_open_model(pdir, tok_rec, base_dir, lo->rank > 0, err))) return -1;   /* LoRA: a .gguf stays quantized */
    gpt_model *p = *policy;
    if (p->cfg.score_head) return gk_errf(err, "%s: the policy has a score head; pass an LM (SFT) checkpoint", pdir);
    if (train_lora_setup(p, lo, *base_dir, seed, quiet, err)) return -1;
    if (!p->lora) return (*ref = gpt_load(policy_dir, NULL, err)) ? 0 : -1;
    /* the reference is the policy's own base with no adapters: a view, not a copy */
    *ref = gpt_create_view(p);
    gk_log("%s: the reference is the frozen base with the adapters off (no second copy: %.1f MB saved)\n", stage,
           (double)gpt_weight_bytes(p) / 1e6);
    return 0;
}
