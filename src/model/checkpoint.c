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
#include <limits.h>
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

static int hf_parts(const gpt_model *m, const gpt_param *p, char names[3][96]);
static size_t part_rows(const gpt_model *m, const gpt_param *p, int nparts, int k);

/* HF LlamaConfig (Qwen2Config with a q/k/v bias) as transformers 5 writes it, plus rope_theta for older readers. */
static cJSON *llama_config_json(const gpt_config *c) {
    int qwen = c->qkv_bias;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model_type", qwen ? "qwen2" : "llama");
    cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(c->score_head ? (qwen ? "Qwen2ForSequenceClassification" : "LlamaForSequenceClassification")
                                                                : (qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM")));
    if (c->score_head) cJSON_AddNumberToObject(j, "num_labels", 1);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(j, "hidden_size", c->n_embd);
    cJSON_AddNumberToObject(j, "intermediate_size", gpt_config_n_inner(c));
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layer);
    cJSON_AddNumberToObject(j, "num_attention_heads", c->n_head);
    cJSON_AddNumberToObject(j, "num_key_value_heads", gpt_config_n_kv_head(c));
    cJSON_AddNumberToObject(j, "head_dim", c->n_embd / c->n_head);
    cJSON_AddNumberToObject(j, "max_position_embeddings", c->n_ctx);
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    cJSON_AddNumberToObject(j, "rms_norm_eps", float_as_short_double(c->ln_eps));
    if (!qwen) {
        cJSON_AddBoolToObject(j, "attention_bias", 0);
        cJSON_AddBoolToObject(j, "mlp_bias", 0);
    } else {
        cJSON_AddBoolToObject(j, "use_sliding_window", 0);
        cJSON_AddNullToObject(j, "sliding_window");
    }
    cJSON_AddNumberToObject(j, "attention_dropout", 0);
    cJSON_AddNumberToObject(j, "initializer_range", 0.02);
    cJSON_AddNumberToObject(j, "rope_theta", float_as_short_double(c->rope_theta));
    cJSON *rp = cJSON_AddObjectToObject(j, "rope_parameters");
    cJSON_AddNumberToObject(rp, "rope_theta", float_as_short_double(c->rope_theta));
    cJSON_AddStringToObject(rp, "rope_type", c->rope_scaling == GPT_ROPE_SCALE_LLAMA3 ? "llama3" : "default");
    if (c->rope_scaling == GPT_ROPE_SCALE_LLAMA3) {
        cJSON_AddNumberToObject(rp, "factor", float_as_short_double(c->rope_factor));
        cJSON_AddNumberToObject(rp, "low_freq_factor", float_as_short_double(c->rope_low_freq_factor));
        cJSON_AddNumberToObject(rp, "high_freq_factor", float_as_short_double(c->rope_high_freq_factor));
        cJSON_AddNumberToObject(rp, "original_max_position_embeddings", c->rope_orig_ctx);
    }
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tied_head != 0);
    cJSON_AddBoolToObject(j, "use_cache", 1);
    cJSON_AddStringToObject(j, "dtype", "float32");
    return j;
}

int gpt_save(const gpt_model *m, const char *dir, const char *tokenizer, gk_err *err) {
    gpt_save_opts o = {.tokenizer = tokenizer, .bos_id = -1, .eos_id = -1};
    return gpt_save_ex(m, dir, &o, err);
}

int gpt_save_ex(const gpt_model *m, const char *dir, const gpt_save_opts *o, gk_err *err) {
    GK_CHECK(!m->qw, "gpt_save of a model holding quantized weights (gpt_dequantize_weights first)");
    const char *tokenizer = o->tokenizer;
    const gpt_config *c = &m->cfg;
    if (gk_mkdir_p(dir, err)) return -1;
    cJSON *j = c->arch == GPT_ARCH_LLAMA ? llama_config_json(c) : cJSON_CreateObject();
    if (c->arch == GPT_ARCH_LLAMA) goto extras;
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
extras:;
    /* what transformers' generate and pipelines read (absent, it warns and guesses) */
    if (o->bos_id >= 0) cJSON_AddNumberToObject(j, "bos_token_id", o->bos_id);
    if (o->eos_id >= 0) cJSON_AddNumberToObject(j, "eos_token_id", o->eos_id);
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
    char names[3][96];
    for (size_t i = 0; i < m->n_table; i++) {
        const gpt_param *p = &m->table[i];
        int np = hf_parts(m, p, names);
        size_t row0 = 0, cols = p->ndim == 2 ? p->shape[1] : 1;
        for (int k = 0; k < np; k++) {   /* LLaMA's fused q|k|v is written as HF's three projections */
            size_t shape[2] = {part_rows(m, p, np, k), p->shape[1]};
            st_writer_add_f32(w, names[k], p->ndim, shape, host + p->offset + row0 * cols);
            row0 += shape[0];
        }
    }
    st_writer_add_meta(w, "format", "pt");
    int rc = st_writer_write(w, mpath, err);
    st_writer_free(w);
    free(host);
    for (size_t i = 0; i < o->n_files && !rc; i++) {   /* the tokenizer's files, before the config that completes the directory */
        char *fp = gk_path_join(dir, o->files[i].name);
        rc = gk_write_file_atomic(fp, o->files[i].data, o->files[i].len, err);
        free(fp);
    }
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

/* The "gptkit" object of config.json: score head, tokenizer path, format version. */
static int gptkit_extras(const cJSON *j, const char *path, gpt_config *cfg, char **tokenizer, gk_err *err) {
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(j, "gptkit");
    if (!g) return 0;
    if (!cJSON_IsObject(g)) return gk_errf(err, "%s: \"gptkit\" must be an object", path);
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(g, "score_head");
    if (sh) {
        if (!cJSON_IsBool(sh)) return gk_errf(err, "%s: gptkit.score_head must be true or false", path);
        cfg->score_head = cJSON_IsTrue(sh);
    }
    const cJSON *tk = cJSON_GetObjectItemCaseSensitive(g, "tokenizer");
    if (tk && !cJSON_IsNull(tk) && !cJSON_IsString(tk)) return gk_errf(err, "%s: gptkit.tokenizer must be a string", path);
    if (tokenizer && cJSON_IsString(tk)) *tokenizer = gk_strdup(tk->valuestring);
    const cJSON *fv = cJSON_GetObjectItemCaseSensitive(g, "format_version");
    if (cJSON_IsNumber(fv) && fv->valuedouble > GK_CKPT_VERSION)
        return gk_errf(err, "%s: gptkit.format_version %g is newer than this build understands (%d)", path,
                       fv->valuedouble, GK_CKPT_VERSION);
    return 0;
}

/* A float key: absent keeps *out; present must be a number. */
static int cfg_float(const cJSON *j, const char *path, const char *key, float *out, gk_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) return 1;
    if (!cJSON_IsNumber(v)) return gk_errf(err, "%s: key \"%s\" must be a number", path, key);
    *out = (float)v->valuedouble;
    return 0;
}

/* rope_parameters (transformers 5) or rope_theta + rope_scaling (4.x): default and llama3 run; others refused. */
static int load_rope(const cJSON *j, const char *path, gpt_config *cfg, gk_err *err) {
    if (cfg_float(j, path, "rope_theta", &cfg->rope_theta, err) < 0) return -1;
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(j, "rope_parameters");
    if (!rp || cJSON_IsNull(rp)) rp = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    if (!rp || cJSON_IsNull(rp)) return 0;
    if (!cJSON_IsObject(rp)) return gk_errf(err, "%s: rope_parameters / rope_scaling must be an object", path);
    if (cfg_float(rp, path, "rope_theta", &cfg->rope_theta, err) < 0) return -1;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rp, "rope_type");
    if (!t) t = cJSON_GetObjectItemCaseSensitive(rp, "type");
    const char *type = cJSON_IsString(t) ? t->valuestring : "default";
    if (!strcmp(type, "default")) return 0;
    if (strcmp(type, "llama3"))
        return gk_errf(err, "%s: rope scaling type \"%s\" is not supported (only default and llama3)", path, type);
    cfg->rope_scaling = GPT_ROPE_SCALE_LLAMA3;
    if (cfg_float(rp, path, "factor", &cfg->rope_factor, err) < 0 ||
        cfg_float(rp, path, "low_freq_factor", &cfg->rope_low_freq_factor, err) < 0 ||
        cfg_float(rp, path, "high_freq_factor", &cfg->rope_high_freq_factor, err) < 0 ||
        cfg_int(rp, path, "original_max_position_embeddings", &cfg->rope_orig_ctx, 1, err) < 0) return -1;
    return 0;
}

/* HF LlamaConfig / Qwen2Config / MistralConfig. What would change the math and is not implemented is refused. */
static int load_llama_config(const cJSON *j, const char *path, const char *type, gpt_config *cfg, gk_err *err) {
    gpt_config_llama(cfg);
    cfg->n_kv_head = 0; cfg->n_inner = 0;
    cfg->ln_eps = 1e-6f;   /* HF's default rms_norm_eps */
    if (cfg_int(j, path, "num_hidden_layers", &cfg->n_layer, 1, err) < 0 ||
        cfg_int(j, path, "num_attention_heads", &cfg->n_head, 1, err) < 0 ||
        cfg_int(j, path, "hidden_size", &cfg->n_embd, 1, err) < 0 || cfg_int(j, path, "vocab_size", &cfg->vocab_size, 1, err) < 0 ||
        cfg_int(j, path, "intermediate_size", &cfg->n_inner, 1, err) < 0 ||
        cfg_int(j, path, "num_key_value_heads", &cfg->n_kv_head, 0, err) < 0) return -1;
    cfg->n_ctx = 2048;
    if (cfg_int(j, path, "max_position_embeddings", &cfg->n_ctx, 0, err) < 0) return -1;
    if (cfg->n_head < 1 || cfg->n_embd % cfg->n_head)
        return gk_errf(err, "%s: hidden_size %d is not divisible by num_attention_heads %d", path, cfg->n_embd, cfg->n_head);
    int hd = cfg->n_embd / cfg->n_head;
    if (cfg_int(j, path, "head_dim", &hd, 0, err) < 0) return -1;
    if (hd != cfg->n_embd / cfg->n_head)
        return gk_errf(err, "%s: head_dim %d differs from hidden_size / num_attention_heads (%d): not supported", path, hd,
                       cfg->n_embd / cfg->n_head);
    if (cfg_float(j, path, "rms_norm_eps", &cfg->ln_eps, err) < 0) return -1;
    if (load_rope(j, path, cfg, err)) return -1;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu")))
        return gk_errf(err, "%s: hidden_act must be \"silu\" (SwiGLU)", path);
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings");
    if (tie && !cJSON_IsBool(tie)) return gk_errf(err, "%s: tie_word_embeddings must be true or false", path);
    cfg->tied_head = cJSON_IsTrue(tie);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "mlp_bias"))) return gk_errf(err, "%s: mlp_bias = true is not supported", path);
    if (!strcmp(type, "qwen2")) {
        cfg->qkv_bias = 1;   /* Qwen2's q/k/v projections always have biases */
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "use_sliding_window")))
            return gk_errf(err, "%s: use_sliding_window = true is not supported", path);
    } else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "attention_bias"))) {
        return gk_errf(err, "%s: attention_bias = true (biases on q, k, v and o) is not supported", path);
    }
    if (!strcmp(type, "mistral")) {
        /* sliding-window attention equals full attention on sequences no longer than the window */
        int win = 0;
        if (cfg_int(j, path, "sliding_window", &win, 0, err) < 0) return -1;
        if (win > 0 && win < cfg->n_ctx) cfg->n_ctx = win;
    }
    if (cfg->n_ctx > (1 << 20)) cfg->n_ctx = 1 << 20;
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    if (cJSON_IsString(a0) && strstr(a0->valuestring, "ForSequenceClassification")) cfg->score_head = 1;
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
    if (cJSON_IsString(mt) && (!strcmp(mt->valuestring, "llama") || !strcmp(mt->valuestring, "qwen2") ||
                               !strcmp(mt->valuestring, "mistral"))) {
        if (load_llama_config(j, path, mt->valuestring, cfg, err)) { rc = -1; goto done; }
        if (gptkit_extras(j, path, cfg, tokenizer, err)) { rc = -1; goto done; }
        if (gpt_config_validate(cfg, err)) { rc = gk_err_prefix(err, "%s", path); goto done; }
        goto done;
    }
    if (mt && (!cJSON_IsString(mt) || strcmp(mt->valuestring, "gpt2"))) {
        rc = gk_errf(err, "%s: model_type must be \"gpt2\", \"llama\", \"qwen2\" or \"mistral\"", path); goto done;
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
    if (gptkit_extras(j, path, cfg, tokenizer, err)) { rc = -1; goto done; }
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

/* ---------------------------------------------------------------- tensor sources: one file or HF shards */
typedef struct {
    st_file *f; size_t n;   /* open files */
} st_set;

static void set_close(st_set *s) {
    for (size_t i = 0; i < s->n; i++) st_close(&s->f[i]);
    free(s->f);
    memset(s, 0, sizeof *s);
}

/* model.safetensors, or model.safetensors.index.json naming shards (every shard it names must exist). */
static int set_open(st_set *s, const char *dir, gk_err *err) {
    memset(s, 0, sizeof *s);
    char *one = gk_path_join(dir, "model.safetensors"), *ipath = gk_path_join(dir, "model.safetensors.index.json");
    int rc = 0;
    if (gk_file_exists(one) || !gk_file_exists(ipath)) {
        s->f = gk_calloc(1, sizeof *s->f);
        if (st_open(&s->f[0], one, err)) rc = -1;
        else s->n = 1;
        goto out;
    }
    char *txt = NULL; size_t len = 0;
    if (gk_read_file(ipath, &txt, &len, err)) { rc = -1; goto out; }
    cJSON *j = cJSON_ParseWithLength(txt, len);
    free(txt);
    const cJSON *wm = j ? cJSON_GetObjectItemCaseSensitive(j, "weight_map") : NULL;
    if (!cJSON_IsObject(wm)) { rc = gk_errf(err, "%s: no \"weight_map\" object", ipath); cJSON_Delete(j); goto out; }
    size_t cap = 0;
    char **names = NULL;
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || strchr(e->valuestring, '/') || !e->valuestring[0]) {
            rc = gk_errf(err, "%s: weight_map entry \"%s\" must name a file in the directory", ipath, e->string);
            break;
        }
        size_t k = 0;
        while (k < s->n && strcmp(names[k], e->valuestring)) k++;
        if (k < s->n) continue;
        if (s->n == cap) { cap = cap ? 2 * cap : 8; names = gk_realloc(names, cap * sizeof *names); }
        names[s->n++] = e->valuestring;
    }
    size_t nf = s->n;
    s->n = 0;
    if (!rc) {
        s->f = gk_calloc(nf ? nf : 1, sizeof *s->f);
        for (size_t k = 0; k < nf && !rc; k++) {
            char *sp = gk_path_join(dir, names[k]);
            if (!gk_file_exists(sp)) rc = gk_errf(err, "%s: names shard \"%s\", which is missing", ipath, names[k]);
            else if (st_open(&s->f[k], sp, err)) rc = -1;
            else s->n++;
            free(sp);
        }
    }
    free(names);
    cJSON_Delete(j);
out:
    if (rc) set_close(s);
    free(one); free(ipath);
    return rc;
}

static const st_tensor *set_find(const st_set *s, const char *name, const st_file **file) {
    for (size_t i = 0; i < s->n; i++) {
        const st_tensor *t = st_find(&s->f[i], name);
        if (t) { *file = &s->f[i]; return t; }
    }
    return NULL;
}

/* The HF tensors a table entry is made of, stacked along dim 0 (LLaMA's fused q|k|v is three), in order. */
static int hf_parts(const gpt_model *m, const gpt_param *p, char names[3][96]) {
    if (m->cfg.arch != GPT_ARCH_LLAMA) {
        snprintf(names[0], 96, "%s%s", trunk_tensor(p) ? "transformer." : "", p->name);
        return 1;
    }
    if (!trunk_tensor(p)) { snprintf(names[0], 96, "%s", p->name); return 1; }
    if (p->role == GPT_ROLE_QKV_W || p->role == GPT_ROLE_QKV_B) {
        const char *suf = p->role == GPT_ROLE_QKV_W ? "weight" : "bias";
        snprintf(names[0], 96, "model.layers.%d.self_attn.q_proj.%s", p->layer, suf);
        snprintf(names[1], 96, "model.layers.%d.self_attn.k_proj.%s", p->layer, suf);
        snprintf(names[2], 96, "model.layers.%d.self_attn.v_proj.%s", p->layer, suf);
        return 3;
    }
    snprintf(names[0], 96, "model.%s", p->name);
    return 1;
}

/* Rows of part k of a table entry (q: NH hs; k, v: NKV hs; a single part: all). */
static size_t part_rows(const gpt_model *m, const gpt_param *p, int nparts, int k) {
    if (nparts == 1) return p->shape[0];
    size_t hs = (size_t)(m->cfg.n_embd / m->cfg.n_head);
    return (size_t)(k == 0 ? m->cfg.n_head : gpt_config_n_kv_head(&m->cfg)) * hs;
}

/* Tensors we knowingly ignore: causal-mask buffers (older GPT-2 files), rotary buffers (older LLaMA files). */
static int ignorable_any(const char *name) {
    size_t n = strlen(name), k = strlen(".rotary_emb.inv_freq");
    return ignorable(name) || (n >= k && !strcmp(name + n - k, ".rotary_emb.inv_freq"));
}

static int is_gguf_file(const char *path) {
    if (gk_is_dir(path)) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char m[4] = {0};
    size_t n = fread(m, 1, 4, f);
    fclose(f);
    return n == 4 && !memcmp(m, "GGUF", 4);
}

gpt_model *gpt_load_infer(const char *dir, char **tokenizer, gk_err *err) {
    if (!is_gguf_file(dir)) return gpt_load(dir, tokenizer, err);
    if (tokenizer) *tokenizer = NULL;
    return gpt_load_gguf_quant(dir, err);
}

gpt_model *gpt_load(const char *dir, char **tokenizer, gk_err *err) {
    if (is_gguf_file(dir)) {   /* a .gguf file: llama.cpp's container */
        if (tokenizer) *tokenizer = NULL;
        return gpt_load_gguf(dir, err);
    }
    gpt_config cfg;
    if (gpt_load_config(dir, &cfg, tokenizer, err)) return NULL;
    if (tokenizer) {
        /* the directory's own tokenizer.json (an HF directory's, or the one every gptkit checkpoint carries; not our
         * rank file's sidecar) wins over a recorded path: given by absolute path, so a checkpoint trained from this
         * one finds it too. The directory is resolved, not the file: in a gptkit checkpoint the file is a symlink
         * into the current save, which the next save replaces. */
        char *hj = gk_path_join(dir, "tokenizer.json"), *tk = gk_path_join(dir, "tokenizer.tiktoken");
        char *absdir = realpath(dir, NULL);
        if (absdir && gk_file_exists(hj) && !gk_file_exists(tk)) {
            free(*tokenizer);
            *tokenizer = gk_path_join(absdir, "tokenizer.json");
        }
        free(absdir); free(hj); free(tk);
    }
    st_set set;
    if (set_open(&set, dir, err)) {
        if (tokenizer) { free(*tokenizer); *tokenizer = NULL; }
        return NULL;
    }
    /* Pass 1, no allocation yet: every tensor present with exactly the shape config.json implies. Only then
     * is memory committed (a config.json claiming a huge model cannot make us allocate more than the file). */
    gpt_model *m = gpt_create_table(&cfg, NULL);
    char **used = gk_calloc(set.n, sizeof *used);
    for (size_t k = 0; k < set.n; k++) used[k] = gk_calloc(set.f[k].n ? set.f[k].n : 1, 1);
    const st_tensor *(*src)[3] = gk_calloc(m->n_table, sizeof *src);
    const st_file *(*srcf)[3] = gk_calloc(m->n_table, sizeof *srcf);
    int *nparts = gk_calloc(m->n_table, sizeof *nparts);
    char names[3][96], want[64], got[64];
    int rc = 0;
    float *host = NULL;
    for (size_t i = 0; i < m->n_table && !rc; i++) {
        const gpt_param *p = &m->table[i];
        nparts[i] = hf_parts(m, p, names);
        for (int k = 0; k < nparts[i] && !rc; k++) {
            const st_file *f = NULL;
            const st_tensor *t = set_find(&set, names[k], &f);
            if (!t && m->cfg.arch == GPT_ARCH_GPT2) t = set_find(&set, p->name, &f);
            if (!t) { rc = gk_errf(err, "%s: missing tensor \"%s\" (config.json asks for it)", dir, names[k]); break; }
            used[f - set.f][t - f->tensors] = 1;
            src[i][k] = t; srcf[i][k] = f;
            size_t rows = part_rows(m, p, nparts[i], k);
            int ok = t->ndim == p->ndim && t->shape[0] == rows && (p->ndim == 1 || t->shape[1] == p->shape[1]);
            if (!ok) {
                size_t ws[2] = {rows, p->shape[1]};
                fmt_shape(want, sizeof want, p->ndim, ws);
                fmt_shape(got, sizeof got, t->ndim, t->shape);
                rc = gk_errf(err, "%s: tensor \"%s\" has shape %s, but config.json implies %s", f->path, t->name, got, want);
            }
        }
    }
    /* Pass 2: read (and convert) into the parameter buffer. */
    if (!rc) gpt_alloc_params(m);
    for (size_t i = 0; i < m->n_table && !rc; i++) {
        const gpt_param *p = &m->table[i];
        host = gk_realloc(host, p->numel * sizeof(float));
        size_t row0 = 0, cols = p->ndim == 2 ? p->shape[1] : 1;
        for (int k = 0; k < nparts[i] && !rc; k++) {
            const st_tensor *t = src[i][k];
            size_t rows = part_rows(m, p, nparts[i], k), n = rows * cols;
            if (st_read_f32(srcf[i][k], t, host + row0 * cols, err)) { rc = -1; break; }
            st_release(srcf[i][k], t);   /* the file's copy is not kept beside the parameters' */
            size_t bad = gk_first_nonfinite(host + row0 * cols, n);
            if (bad < n) {
                rc = gk_errf(err, "%s: tensor \"%s\" holds a non-finite value (%g at index %zu): the checkpoint is "
                             "damaged or its training diverged", srcf[i][k]->path, t->name, (double)host[row0 * cols + bad], bad);
                break;
            }
            row0 += rows;
        }
        if (!rc) kern_upload(m->be, m->params + p->offset, host, p->numel * sizeof(float));
    }
    free(src); free(srcf); free(nparts);
    /* Leftovers: mask buffers are ignored, a tied lm_head must equal wte, anything else is an error
     * (a file for a different architecture should not load silently). */
    for (size_t fi = 0; fi < set.n && !rc; fi++) {
        const st_file *f = &set.f[fi];
        for (size_t i = 0; i < f->n && !rc; i++) {
            const st_tensor *t = &f->tensors[i];
            if (used[fi][i] || ignorable_any(t->name)) continue;
            if (!strcmp(t->name, "lm_head.weight")) {
                /* only reached with a tied head (an untied one is a table tensor, already used) */
                const gpt_param *p = gpt_param_role(m, GPT_ROLE_EMBED_TOK, -1);
                if (t->ndim != 2 || t->shape[0] != p->shape[0] || t->shape[1] != p->shape[1]) {
                    rc = gk_errf(err, "%s: lm_head.weight's shape differs from the token embedding's, but config.json "
                                 "ties them (tie_word_embeddings)", f->path);
                    break;
                }
                float *wte = gk_malloc(p->numel * sizeof(float));
                host = gk_realloc(host, p->numel * sizeof(float));
                kern_download(m->be, wte, m->params + p->offset, p->numel * sizeof(float));
                if (!st_read_f32(f, t, host, err)) {
                    if (memcmp(wte, host, p->numel * sizeof(float)))
                        rc = gk_errf(err, "%s: lm_head.weight differs from the token embedding, but config.json ties "
                                     "them (set tie_word_embeddings false for an untied head)", f->path);
                } else rc = -1;
                free(wte);
                continue;
            }
            rc = gk_errf(err, "%s: unexpected tensor \"%s\" (not part of a %s with this config.json)", f->path, t->name,
                         m->cfg.arch == GPT_ARCH_LLAMA ? "LLaMA-family model" : "GPT-2");
        }
    }
    free(host);
    for (size_t k = 0; k < set.n; k++) free(used[k]);
    free(used);
    set_close(&set);
    if (rc) {
        gpt_free(m);
        if (tokenizer) { free(*tokenizer); *tokenizer = NULL; }
        return NULL;
    }
    return m;
}
