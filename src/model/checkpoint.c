/* checkpoint.c: a model directory HF transformers reads unchanged, and reading HF's own GPT-2 directories.
 *
 *   <dir>/config.json        HF GPT2Config keys (model_type "gpt2", n_layer, n_head, n_embd, vocab_size,
 *                            n_positions, n_ctx, n_inner (null = 4C), layer_norm_epsilon, activation_function
 *                            "gelu_new", dropouts 0, tie_word_embeddings, ...) plus a "gptkit" object:
 *                            {"tokenizer": path|null, "score_head": bool, "format_version": 1}
 *   <dir>/model.safetensors  exactly the names GPT2LMHeadModel.save_pretrained writes (transformers 5.x):
 *                            "transformer.wte.weight", "transformer.h.0.ln_1.weight", ... — no attn.bias
 *                            buffers, no lm_head.weight when tied to wte (top-level "lm_head.weight" [V, C]
 *                            when untied). A score head is stored as top-level "score.weight" [1, C]
 *                            (GPT2ForSequenceClassification's name).
 *
 * Reading is lenient where the ecosystem varies and strict where a mistake would be silent: names with or
 * without the "transformer." prefix; attn.bias / attn.masked_bias buffers (older transformers) ignored;
 * with a tied head, lm_head.weight accepted only if it equals wte; F16/BF16 converted; every shape checked
 * against config.json; every required config key checked, with messages naming the file and the key or tensor.
 */
#include "model/model.h"
#include "model/model_internal.h"
#include "kern/kern.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GK_CKPT_VERSION 1

/* ---------------------------------------------------------------- config.json */

/* The shortest decimal that reads back as f, as a double: 1e-5f is written "1e-05", not 9.99999974737875e-06. */
static double float_as_short_double(float f) {
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    return strtod(buf, NULL);
}

/* HF keeps the trunk under "transformer." and the heads (lm_head, score) at the top level. */
static int trunk_tensor(const gpt_param *p) { return p->role != GPT_ROLE_LM_HEAD && p->role != GPT_ROLE_SCORE; }

int gpt_save(const gpt_model *m, const char *dir, const char *tokenizer, gk_err *err) {
    const gpt_config *c = &m->cfg;
    if (gk_mkdir_p(dir, err)) return -1;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model_type", "gpt2");
    cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(c->score_head ? "GPT2ForSequenceClassification" : "GPT2LMHeadModel"));
    if (c->score_head) cJSON_AddNumberToObject(j, "num_labels", 1);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(j, "n_positions", c->n_ctx);
    cJSON_AddNumberToObject(j, "n_ctx", c->n_ctx);
    cJSON_AddNumberToObject(j, "n_embd", c->n_embd);
    cJSON_AddNumberToObject(j, "n_layer", c->n_layer);
    cJSON_AddNumberToObject(j, "n_head", c->n_head);
    if (c->n_inner) cJSON_AddNumberToObject(j, "n_inner", c->n_inner);
    else cJSON_AddNullToObject(j, "n_inner");   /* HF: None = 4 * n_embd */
    cJSON_AddStringToObject(j, "activation_function", "gelu_new");
    cJSON_AddNumberToObject(j, "resid_pdrop", 0);
    cJSON_AddNumberToObject(j, "embd_pdrop", 0);
    cJSON_AddNumberToObject(j, "attn_pdrop", 0);
    cJSON_AddNumberToObject(j, "layer_norm_epsilon", float_as_short_double(c->ln_eps));
    cJSON_AddNumberToObject(j, "initializer_range", 0.02);
    cJSON_AddBoolToObject(j, "scale_attn_weights", 1);
    cJSON_AddBoolToObject(j, "scale_attn_by_inverse_layer_idx", 0);
    cJSON_AddBoolToObject(j, "reorder_and_upcast_attn", 0);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tied_head != 0);
    cJSON_AddBoolToObject(j, "use_cache", 1);
    cJSON_AddStringToObject(j, "dtype", "float32");
    cJSON *g = cJSON_AddObjectToObject(j, "gptkit");
    cJSON_AddNumberToObject(g, "format_version", GK_CKPT_VERSION);
    if (tokenizer) cJSON_AddStringToObject(g, "tokenizer", tokenizer);
    else cJSON_AddNullToObject(g, "tokenizer");
    cJSON_AddBoolToObject(g, "score_head", c->score_head != 0);
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    GK_CHECK(txt, "out of memory printing config.json");
    char *cpath = gk_path_join(dir, "config.json"), *mpath = gk_path_join(dir, "model.safetensors");
    size_t tl = strlen(txt);
    txt = gk_realloc(txt, tl + 2);
    txt[tl] = '\n'; txt[tl + 1] = 0;

    /* Weights first, config last: a directory with a config.json has complete weights beside it. */
    float *host = gk_malloc(m->num_params * sizeof(float));
    kern_download(m->be, host, m->params, m->num_params * sizeof(float));
    st_writer *w = st_writer_new();
    char name[96];
    for (size_t i = 0; i < m->n_table; i++) {
        const gpt_param *p = &m->table[i];
        snprintf(name, sizeof name, "%s%s", trunk_tensor(p) ? "transformer." : "", p->name);
        st_writer_add_f32(w, name, p->ndim, p->shape, host + p->offset);
    }
    st_writer_add_meta(w, "format", "pt");
    int rc = st_writer_write(w, mpath, err);
    st_writer_free(w);
    free(host);
    if (!rc) rc = gk_write_file_atomic(cpath, txt, tl + 1, err);
    free(txt); free(cpath); free(mpath);
    return rc;
}

/* Integer config key: required (missing -> error naming the key) unless def_ok. */
static int cfg_int(const cJSON *j, const char *path, const char *key, int *out, int required, gk_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return gk_errf(err, "%s: missing required key \"%s\"", path, key);
        return 1;   /* absent: caller keeps its default */
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 2147483647.0)
        return gk_errf(err, "%s: key \"%s\" must be an integer", path, key);
    *out = (int)v->valuedouble;
    return 0;
}

int gpt_load_config(const char *dir, gpt_config *cfg, char **tokenizer, gk_err *err) {
    if (tokenizer) *tokenizer = NULL;
    char *path = gk_path_join(dir, "config.json");
    char *txt = NULL; size_t len = 0;
    if (gk_read_file(path, &txt, &len, err)) { free(path); return -1; }
    cJSON *j = cJSON_ParseWithLength(txt, len);
    free(txt);
    int rc = 0;
    if (!j || !cJSON_IsObject(j)) { rc = gk_errf(err, "%s: not a JSON object", path); goto done; }
    gpt_config_default(cfg);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    if (cJSON_IsString(mt) && !strcmp(mt->valuestring, "llama")) {
        /* a family we can describe but not run yet: say so rather than "wrong model_type" */
        cfg->arch = GPT_ARCH_LLAMA;
        gk_err why;
        gpt_config_validate(cfg, &why);
        rc = gk_errf(err, "%s: model_type \"llama\": %s", path, why.msg); goto done;
    }
    if (mt && (!cJSON_IsString(mt) || strcmp(mt->valuestring, "gpt2"))) {
        rc = gk_errf(err, "%s: model_type must be \"gpt2\" (or \"llama\", not supported yet)", path); goto done;
    }
    if (cfg_int(j, path, "n_layer", &cfg->n_layer, 1, err) < 0 || cfg_int(j, path, "n_head", &cfg->n_head, 1, err) < 0 ||
        cfg_int(j, path, "n_embd", &cfg->n_embd, 1, err) < 0 || cfg_int(j, path, "vocab_size", &cfg->vocab_size, 1, err) < 0 ||
        cfg_int(j, path, "n_positions", &cfg->n_ctx, 1, err) < 0) { rc = -1; goto done; }
    /* n_inner: absent or null = 4 * n_embd (kept as 0, so a save writes null back) */
    if (cfg_int(j, path, "n_inner", &cfg->n_inner, 0, err) < 0) { rc = -1; goto done; }
    if (cfg->n_inner < 0 || cfg->n_inner > (1 << 20)) { rc = gk_errf(err, "%s: n_inner %d out of range [1, 2^20]", path, cfg->n_inner); goto done; }
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings");
    if (tie && !cJSON_IsBool(tie)) { rc = gk_errf(err, "%s: tie_word_embeddings must be true or false", path); goto done; }
    if (cJSON_IsFalse(tie)) cfg->tied_head = 0;
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(j, "layer_norm_epsilon");
    if (eps) {
        if (!cJSON_IsNumber(eps)) { rc = gk_errf(err, "%s: layer_norm_epsilon must be a number", path); goto done; }
        cfg->ln_eps = (float)eps->valuedouble;
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "activation_function");
    if (act && (!cJSON_IsString(act) || (strcmp(act->valuestring, "gelu_new") && strcmp(act->valuestring, "gelu_pytorch_tanh")))) {
        rc = gk_errf(err, "%s: activation_function must be \"gelu_new\" (GELU, tanh approximation)", path); goto done;
    }
    const char *unsupported[] = {"scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, unsupported[i]))) {
            rc = gk_errf(err, "%s: %s = true is not supported", path, unsupported[i]); goto done;
        }
    const cJSON *sa = cJSON_GetObjectItemCaseSensitive(j, "scale_attn_weights");
    if (cJSON_IsFalse(sa)) { rc = gk_errf(err, "%s: scale_attn_weights = false is not supported", path); goto done; }
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    const cJSON *a0 = cJSON_IsArray(arch) ? cJSON_GetArrayItem(arch, 0) : NULL;
    if (cJSON_IsString(a0) && !strcmp(a0->valuestring, "GPT2ForSequenceClassification")) cfg->score_head = 1;
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(j, "gptkit");
    if (g) {
        if (!cJSON_IsObject(g)) { rc = gk_errf(err, "%s: \"gptkit\" must be an object", path); goto done; }
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(g, "score_head");
        if (sh) {
            if (!cJSON_IsBool(sh)) { rc = gk_errf(err, "%s: gptkit.score_head must be true or false", path); goto done; }
            cfg->score_head = cJSON_IsTrue(sh);
        }
        const cJSON *tk = cJSON_GetObjectItemCaseSensitive(g, "tokenizer");
        if (tk && !cJSON_IsNull(tk) && !cJSON_IsString(tk)) { rc = gk_errf(err, "%s: gptkit.tokenizer must be a string", path); goto done; }
        if (tokenizer && cJSON_IsString(tk)) *tokenizer = gk_strdup(tk->valuestring);
        const cJSON *fv = cJSON_GetObjectItemCaseSensitive(g, "format_version");
        if (cJSON_IsNumber(fv) && fv->valuedouble > GK_CKPT_VERSION) {
            rc = gk_errf(err, "%s: gptkit.format_version %g is newer than this build understands (%d)", path,
                         fv->valuedouble, GK_CKPT_VERSION);
            goto done;
        }
    }
    if (gpt_config_validate(cfg, err)) { rc = gk_err_prefix(err, "%s", path); goto done; }
done:
    if (rc && tokenizer) { free(*tokenizer); *tokenizer = NULL; }
    cJSON_Delete(j);
    free(path);
    return rc;
}

/* ---------------------------------------------------------------- model.safetensors */

static void fmt_shape(char *buf, size_t n, int ndim, const size_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%zu", i ? ", " : "", shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Is `name` one of the tensors we knowingly ignore (causal-mask buffers of older transformers)? */
static int ignorable(const char *name) {
    size_t n = strlen(name);
    const char *suf[] = {".attn.bias", ".attn.masked_bias"};
    for (size_t i = 0; i < 2; i++) {
        size_t k = strlen(suf[i]);
        if (n >= k && !strcmp(name + n - k, suf[i])) return 1;
    }
    return 0;
}

gpt_model *gpt_load(const char *dir, char **tokenizer, gk_err *err) {
    gpt_config cfg;
    if (gpt_load_config(dir, &cfg, tokenizer, err)) return NULL;
    char *path = gk_path_join(dir, "model.safetensors");
    st_file f;
    if (st_open(&f, path, err)) {
        free(path);
        if (tokenizer) { free(*tokenizer); *tokenizer = NULL; }
        return NULL;
    }
    /* Pass 1, no allocation yet: every tensor present with exactly the shape config.json implies. Only then
     * is memory committed (a config.json claiming a huge model cannot make us allocate more than the file). */
    gpt_model *m = gpt_create_table(&cfg, NULL);
    char *used = gk_calloc(f.n ? f.n : 1, 1);
    const st_tensor **src = gk_calloc(m->n_table, sizeof *src);
    char name[96], want[64], got[64];
    int rc = 0;
    float *host = NULL;
    for (size_t i = 0; i < m->n_table && !rc; i++) {
        const gpt_param *p = &m->table[i];
        snprintf(name, sizeof name, "transformer.%s", p->name);
        const st_tensor *t = st_find(&f, name);
        if (!t) t = st_find(&f, p->name);
        if (!t) { rc = gk_errf(err, "%s: missing tensor \"%s\" (config.json asks for it)", path, p->name); break; }
        used[t - f.tensors] = 1;
        src[i] = t;
        int ok = t->ndim == p->ndim && t->shape[0] == p->shape[0] && (p->ndim == 1 || t->shape[1] == p->shape[1]);
        if (!ok) {
            fmt_shape(want, sizeof want, p->ndim, p->shape);
            fmt_shape(got, sizeof got, t->ndim, t->shape);
            rc = gk_errf(err, "%s: tensor \"%s\" has shape %s, but config.json implies %s", path, t->name, got, want);
            break;
        }
    }
    /* Pass 2: read (and convert) into the parameter buffer. */
    if (!rc) gpt_alloc_params(m);
    for (size_t i = 0; i < m->n_table && !rc; i++) {
        const gpt_param *p = &m->table[i];
        host = gk_realloc(host, p->numel * sizeof(float));
        if (st_read_f32(&f, src[i], host, err)) { rc = -1; break; }
        size_t bad = gk_first_nonfinite(host, p->numel);
        if (bad < p->numel) {
            rc = gk_errf(err, "%s: tensor \"%s\" holds a non-finite value (%g at index %zu): the checkpoint is "
                         "damaged or its training diverged", path, src[i]->name, (double)host[bad], bad);
            break;
        }
        kern_upload(m->be, m->params + p->offset, host, p->numel * sizeof(float));
    }
    free(src);
    /* Leftovers: mask buffers are ignored, a tied lm_head must equal wte, anything else is an error
     * (a file for a different architecture should not load silently). */
    for (size_t i = 0; i < f.n && !rc; i++) {
        const st_tensor *t = &f.tensors[i];
        if (used[i] || ignorable(t->name)) continue;
        if (!strcmp(t->name, "lm_head.weight")) {
            /* only reached with a tied head (an untied one is a table tensor, already used) */
            const gpt_param *p = gpt_param_role(m, GPT_ROLE_EMBED_TOK, -1);
            if (t->ndim != 2 || t->shape[0] != p->shape[0] || t->shape[1] != p->shape[1]) {
                rc = gk_errf(err, "%s: lm_head.weight's shape differs from wte's, but config.json ties them "
                             "(tie_word_embeddings)", path);
                break;
            }
            float *wte = gk_malloc(p->numel * sizeof(float));
            host = gk_realloc(host, p->numel * sizeof(float));
            kern_download(m->be, wte, m->params + p->offset, p->numel * sizeof(float));
            if (!st_read_f32(&f, t, host, err)) {
                if (memcmp(wte, host, p->numel * sizeof(float)))
                    rc = gk_errf(err, "%s: lm_head.weight differs from wte.weight, but config.json ties them "
                                 "(set tie_word_embeddings false for an untied head)", path);
            } else rc = -1;
            free(wte);
            continue;
        }
        rc = gk_errf(err, "%s: unexpected tensor \"%s\" (not part of a GPT-2 with this config.json)", path, t->name);
    }
    free(host); free(used);
    st_close(&f);
    free(path);
    if (rc) {
        gpt_free(m);
        if (tokenizer) { free(*tokenizer); *tokenizer = NULL; }
        return NULL;
    }
    return m;
}
