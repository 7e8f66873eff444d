/* embed.c: loading a sentence-transformers BERT directory and running it forward (see embed.h for the math
 * and the files). Parameters live in one backend buffer; q, k and v of each layer are stacked at load time
 * into one [3C, C] matrix so a layer starts with one matmul, as the GPT block does. */
#include "embed/embed.h"
#include "kern/kern_enc.h"
#include "model/model.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *qkv_w, *qkv_b, *o_w, *o_b, *ln1_w, *ln1_b, *i_w, *i_b, *f_w, *f_b, *ln2_w, *ln2_b;
} embed_layer;

struct embed_model {
    kern_backend *be; int own_be;
    wp_tokenizer *tok;
    size_t V, C, L, NH, I, maxpos, ntype, max_len, batch;
    float eps;
    int gelu_tanh;          /* hidden_act gelu_new / gelu_pytorch_tanh: the tanh approximation */
    embed_pool pool; int normalize;
    float *params; size_t n_params;        /* device */
    float *wte, *wpe, *wtt, *ln_e_w, *ln_e_b;
    embed_layer *layer;
    char desc[256], fp[17];
    char *dir;
};

size_t embed_dim(const embed_model *m) { return m->C; }
size_t embed_max_tokens(const embed_model *m) { return m->max_len; }
int embed_normalized(const embed_model *m) { return m->normalize; }
const wp_tokenizer *embed_tokenizer(const embed_model *m) { return m->tok; }
const char *embed_describe(const embed_model *m) { return m->desc; }
const char *embed_fingerprint(const embed_model *m) { return m->fp; }
const char *embed_path(const embed_model *m) { return m->dir; }
void embed_set_batch(embed_model *m, size_t batch) { m->batch = batch ? batch : 1; }

void embed_free(embed_model *m) {
    if (!m) return;
    kern_free(m->be, m->params);
    if (m->own_be) kern_backend_free(m->be);
    wp_free(m->tok);
    free(m->layer); free(m->dir);
    free(m);
}

/* ---------------------------------------------------------------- JSON helpers */
static cJSON *embed_read_json(const char *dir, const char *name, int required, gk_err *err) {
    char *p = gk_path_join(dir, name), *data = NULL; size_t n;
    cJSON *j = NULL;
    if (!required && !gk_file_exists(p)) { free(p); return NULL; }
    if (gk_read_file(p, &data, &n, err) == 0) {
        j = cJSON_ParseWithLength(data, n);
        if (!j) gk_errf(err, "%s: not valid JSON", p);
    }
    free(data); free(p);
    return j;
}
static int embed_cfg_size(const cJSON *cfg, const char *dir, const char *key, size_t lo, size_t hi, size_t dflt,
                          size_t *out, gk_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v) {
        if (dflt) { *out = dflt; return 0; }
        return gk_errf(err, "%s/config.json: %s: missing", dir, key);
    }
    if (!cJSON_IsNumber(v) || v->valuedouble < (double)lo || v->valuedouble > (double)hi || v->valuedouble != floor(v->valuedouble))
        return gk_errf(err, "%s/config.json: %s: expected an integer in [%zu, %zu]", dir, key, lo, hi);
    *out = (size_t)v->valuedouble;
    return 0;
}

static int embed_parse_config(embed_model *m, const char *dir, gk_err *err) {
    cJSON *cfg = embed_read_json(dir, "config.json", 1, err);
    if (!cfg) return -1;
    int rc = -1;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(cfg, "hidden_act");
    const cJSON *pe = cJSON_GetObjectItemCaseSensitive(cfg, "position_embedding_type");
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(cfg, "layer_norm_eps");
    if (mt && !(cJSON_IsString(mt) && !strcmp(mt->valuestring, "bert"))) {
        gk_errf(err, "%s/config.json: model_type: only \"bert\" encoders are supported (got %s)", dir,
                cJSON_IsString(mt) ? mt->valuestring : "a non-string");
        goto done;
    }
    if (embed_cfg_size(cfg, dir, "vocab_size", 1, 1u << 24, 0, &m->V, err) ||
        embed_cfg_size(cfg, dir, "hidden_size", 1, 1u << 16, 0, &m->C, err) ||
        embed_cfg_size(cfg, dir, "num_hidden_layers", 1, 1024, 0, &m->L, err) ||
        embed_cfg_size(cfg, dir, "num_attention_heads", 1, 1024, 0, &m->NH, err) ||
        embed_cfg_size(cfg, dir, "intermediate_size", 1, 1u << 18, 0, &m->I, err) ||
        embed_cfg_size(cfg, dir, "max_position_embeddings", 2, 1u << 20, 512, &m->maxpos, err) ||
        embed_cfg_size(cfg, dir, "type_vocab_size", 1, 1024, 2, &m->ntype, err)) goto done;
    if (m->C % m->NH) { gk_errf(err, "%s/config.json: hidden_size %zu is not divisible by num_attention_heads %zu", dir, m->C, m->NH); goto done; }
    m->eps = 1e-12f;
    if (eps) {
        if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0 && eps->valuedouble < 1)) { gk_errf(err, "%s/config.json: layer_norm_eps: expected a small positive number", dir); goto done; }
        m->eps = (float)eps->valuedouble;
    }
    if (act && !(cJSON_IsString(act) && (!strcmp(act->valuestring, "gelu") || !strcmp(act->valuestring, "gelu_new") ||
                                         !strcmp(act->valuestring, "gelu_pytorch_tanh")))) {
        gk_errf(err, "%s/config.json: hidden_act: only gelu, gelu_new and gelu_pytorch_tanh are supported", dir);
        goto done;
    }
    m->gelu_tanh = act && strcmp(act->valuestring, "gelu") != 0;
    if (pe && !(cJSON_IsString(pe) && !strcmp(pe->valuestring, "absolute"))) {
        gk_errf(err, "%s/config.json: position_embedding_type: only \"absolute\" is supported", dir);
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(cfg);
    return rc;
}

/* modules.json (which modules, where), the pooling config, the max sequence length */
static int embed_parse_pooling(embed_model *m, const char *dir, const char *sub, gk_err *err) {
    char *pdir = gk_path_join(dir, sub);
    cJSON *pc = embed_read_json(pdir, "config.json", 1, err);
    free(pdir);
    if (!pc) return -1;
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(pc, "pooling_mode");
    int n = 0;
    if (cJSON_IsString(mode)) {   /* sentence-transformers 5+: one string */
        const char *s = mode->valuestring;
        if (!strcmp(s, "mean")) m->pool = EMBED_POOL_MEAN;
        else if (!strcmp(s, "cls")) m->pool = EMBED_POOL_CLS;
        else if (!strcmp(s, "max")) m->pool = EMBED_POOL_MAX;
        else if (!strcmp(s, "mean_sqrt_len_tokens")) m->pool = EMBED_POOL_MEAN_SQRT;
        else { cJSON_Delete(pc); return gk_errf(err, "%s/%s/config.json: pooling_mode: \"%s\" is not supported (mean, cls, max, mean_sqrt_len_tokens)", dir, sub, s); }
        n = 1;
    } else {                      /* older: one boolean per mode */
        static const char *const keys[] = {"pooling_mode_mean_tokens", "pooling_mode_cls_token", "pooling_mode_max_tokens",
                                           "pooling_mode_mean_sqrt_len_tokens"};
        for (int k = 0; k < 4; k++)
            if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pc, keys[k]))) { m->pool = (embed_pool)k; n++; }
    }
    cJSON_Delete(pc);
    if (n != 1) return gk_errf(err, "%s/%s/config.json: exactly one pooling mode must be on (found %d)", dir, sub, n);
    return 0;
}
static int embed_parse_modules(embed_model *m, const char *dir, gk_err *err) {
    m->pool = EMBED_POOL_MEAN; m->normalize = 0;
    char *mp = gk_path_join(dir, "modules.json");
    int has = gk_file_exists(mp);
    free(mp);
    if (!has) return 0;
    cJSON *mods = embed_read_json(dir, "modules.json", 1, err);
    if (!mods) return -1;
    if (!cJSON_IsArray(mods)) { cJSON_Delete(mods); return gk_errf(err, "%s/modules.json: expected an array of modules", dir); }
    const cJSON *e; int rc = 0;
    cJSON_ArrayForEach(e, mods) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(e, "type"), *path = cJSON_GetObjectItemCaseSensitive(e, "path");
        if (!cJSON_IsString(ty) || !cJSON_IsString(path)) { rc = gk_errf(err, "%s/modules.json: each module needs a string type and path", dir); break; }
        const char *t = ty->valuestring;
        if (strstr(t, "Transformer")) {
            if (path->valuestring[0]) { rc = gk_errf(err, "%s/modules.json: the Transformer module must be at the top (path \"\"), not \"%s\"", dir, path->valuestring); break; }
        } else if (strstr(t, "Pooling")) {
            if (strstr(path->valuestring, "..")) { rc = gk_errf(err, "%s/modules.json: Pooling path \"%s\" leaves the directory", dir, path->valuestring); break; }
            if ((rc = embed_parse_pooling(m, dir, path->valuestring, err))) break;
        } else if (strstr(t, "Normalize")) {
            m->normalize = 1;
        } else {
            rc = gk_errf(err, "%s/modules.json: module type %s is not supported (Transformer, Pooling, Normalize)", dir, t);
            break;
        }
    }
    cJSON_Delete(mods);
    return rc;
}
/* max_seq_length: sentence_bert_config.json, else tokenizer_config.json's model_max_length, capped by positions */
static void embed_parse_maxlen(embed_model *m, const char *dir) {
    m->max_len = m->maxpos;
    const char *files[2] = {"sentence_bert_config.json", "tokenizer_config.json"};
    const char *keys[2] = {"max_seq_length", "model_max_length"};
    for (int k = 0; k < 2; k++) {
        cJSON *j = embed_read_json(dir, files[k], 0, NULL);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[k]);
        int found = cJSON_IsNumber(v) && v->valuedouble >= 2 && v->valuedouble < 1e7;
        if (found && v->valuedouble < (double)m->maxpos) m->max_len = (size_t)v->valuedouble;
        cJSON_Delete(j);
        if (found) break;
    }
}

/* ---------------------------------------------------------------- weights */
typedef struct { const st_file *f; const char *prefix; const char *dir; } embed_src;

/* reads tensor NAME (under the prefix) of the given shape into host dst */
static int embed_tensor(const embed_src *s, const char *name, size_t d0, size_t d1, float *dst, gk_err *err) {
    char full[300];
    snprintf(full, sizeof full, "%s%s", s->prefix, name);
    const st_tensor *t = st_find(s->f, full);
    if (!t) return gk_errf(err, "%s/model.safetensors: tensor %s is missing", s->dir, full);
    size_t want_nd = d1 ? 2 : 1;
    if ((size_t)t->ndim != want_nd || t->shape[0] != d0 || (d1 && t->shape[1] != d1))
        return gk_errf(err, "%s/model.safetensors: tensor %s has the wrong shape (want [%zu%s%zu])", s->dir, full, d0,
                       d1 ? ", " : "", d1 ? d1 : (size_t)0);
    return st_read_f32(s->f, t, dst, err);
}

/* parameter layout in the one buffer, filled on the host then uploaded */
static int embed_load_weights(embed_model *m, const char *dir, gk_err *err) {
    char *path = gk_path_join(dir, "model.safetensors");
    st_file f;
    int rc = st_open(&f, path, err);
    free(path);
    if (rc) return -1;
    embed_src s = {&f, "", dir};
    if (!st_find(&f, "embeddings.word_embeddings.weight") && st_find(&f, "bert.embeddings.word_embeddings.weight")) s.prefix = "bert.";
    size_t C = m->C, I = m->I;
    size_t per_layer = 3 * C * C + 3 * C + C * C + C + 2 * C + I * C + I + C * I + C + 2 * C;
    m->n_params = m->V * C + m->maxpos * C + m->ntype * C + 2 * C + m->L * per_layer;
    float *h = gk_malloc(m->n_params * sizeof *h), *p = h;
    m->layer = gk_calloc(m->L, sizeof *m->layer);
    float *hw[5];
#define TAKE(n) (p += (n), p - (n))
    hw[0] = TAKE(m->V * C); hw[1] = TAKE(m->maxpos * C); hw[2] = TAKE(m->ntype * C); hw[3] = TAKE(C); hw[4] = TAKE(C);
    rc = embed_tensor(&s, "embeddings.word_embeddings.weight", m->V, C, hw[0], err) ||
         embed_tensor(&s, "embeddings.position_embeddings.weight", m->maxpos, C, hw[1], err) ||
         embed_tensor(&s, "embeddings.token_type_embeddings.weight", m->ntype, C, hw[2], err) ||
         embed_tensor(&s, "embeddings.LayerNorm.weight", C, 0, hw[3], err) ||
         embed_tensor(&s, "embeddings.LayerNorm.bias", C, 0, hw[4], err) ? -1 : 0;
    float **lp = gk_calloc(12 * m->L, sizeof *lp);   /* host pointers per layer, same order as embed_layer */
    for (size_t l = 0; l < m->L && !rc; l++) {
        float **q = lp + 12 * l;
        q[0] = TAKE(3 * C * C); q[1] = TAKE(3 * C); q[2] = TAKE(C * C); q[3] = TAKE(C); q[4] = TAKE(C); q[5] = TAKE(C);
        q[6] = TAKE(I * C); q[7] = TAKE(I); q[8] = TAKE(C * I); q[9] = TAKE(C); q[10] = TAKE(C); q[11] = TAKE(C);
        char nm[160];
        static const char *const qkv[3] = {"query", "key", "value"};
        /* q, k, v stacked: rows [0,C) query, [C,2C) key, [2C,3C) value (nn.Linear's [out, in] layout) */
        for (int k = 0; k < 3 && !rc; k++) {
            snprintf(nm, sizeof nm, "encoder.layer.%zu.attention.self.%s.weight", l, qkv[k]);
            rc = embed_tensor(&s, nm, C, C, q[0] + (size_t)k * C * C, err);
            snprintf(nm, sizeof nm, "encoder.layer.%zu.attention.self.%s.bias", l, qkv[k]);
            if (!rc) rc = embed_tensor(&s, nm, C, 0, q[1] + (size_t)k * C, err);
        }
        static const char *const rest[8] = {"attention.output.dense.weight", "attention.output.dense.bias",
            "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias", "intermediate.dense.weight",
            "intermediate.dense.bias", "output.dense.weight", "output.dense.bias"};
        const size_t d0[8] = {C, C, C, C, I, I, C, C}, d1[8] = {C, 0, 0, 0, C, 0, I, 0};
        for (int k = 0; k < 8 && !rc; k++) {
            snprintf(nm, sizeof nm, "encoder.layer.%zu.%s", l, rest[k]);
            rc = embed_tensor(&s, nm, d0[k], d1[k], q[2 + k], err);
        }
        for (int k = 0; k < 2 && !rc; k++) {
            snprintf(nm, sizeof nm, "encoder.layer.%zu.output.LayerNorm.%s", l, k ? "bias" : "weight");
            rc = embed_tensor(&s, nm, C, 0, q[10 + k], err);
        }
    }
#undef TAKE
    /* the fingerprint: FNV-1a over the weight file and the settings that change the output */
    uint64_t fp = 1469598103934665603ull;
    for (size_t i = 0; i < f.file_len; i++) { fp ^= (uint8_t)f.file[i]; fp *= 1099511628211ull; }
    fp ^= (uint64_t)m->pool * 31 + (uint64_t)m->normalize * 7 + m->max_len * 131; fp *= 1099511628211ull;
    snprintf(m->fp, sizeof m->fp, "%016llx", (unsigned long long)fp);
    st_close(&f);
    if (!rc) {
        m->params = kern_alloc(m->be, m->n_params * sizeof(float));
        kern_upload(m->be, m->params, h, m->n_params * sizeof(float));
        /* device pointers at the same offsets as the host ones */
        float *d = m->params;
#define DEV(hp) (d + ((hp) - h))
        m->wte = DEV(hw[0]); m->wpe = DEV(hw[1]); m->wtt = DEV(hw[2]); m->ln_e_w = DEV(hw[3]); m->ln_e_b = DEV(hw[4]);
        for (size_t l = 0; l < m->L; l++) {
            float **q = lp + 12 * l;
            m->layer[l] = (embed_layer){DEV(q[0]), DEV(q[1]), DEV(q[2]), DEV(q[3]), DEV(q[4]), DEV(q[5]), DEV(q[6]),
                                        DEV(q[7]), DEV(q[8]), DEV(q[9]), DEV(q[10]), DEV(q[11])};
        }
#undef DEV
    }
    free(lp); free(h);
    return rc;
}

embed_model *embed_load(const char *dir, kern_backend *be, gk_err *err) {
    embed_model *m = gk_calloc(1, sizeof *m);
    m->batch = 32;
    m->dir = gk_strdup(dir);
    if (!gk_is_dir(dir)) { gk_errf(err, "%s: not a directory (an embedding model is a sentence-transformers directory)", dir); embed_free(m); return NULL; }
    if (be) m->be = be;
    else { m->be = kern_backend_create(NULL, err); m->own_be = 1; if (!m->be) { m->own_be = 0; embed_free(m); return NULL; } }
    if (embed_parse_config(m, dir, err) || embed_parse_modules(m, dir, err)) goto fail;
    embed_parse_maxlen(m, dir);
    if (!(m->tok = wp_load_dir(dir, err))) goto fail;
    if (wp_vocab_size(m->tok) > m->V) {
        gk_errf(err, "%s: the tokenizer has %zu ids but config.json's vocab_size is %zu", dir, wp_vocab_size(m->tok), m->V);
        goto fail;
    }
    if (embed_load_weights(m, dir, err)) goto fail;
    static const char *const pools[] = {"mean", "CLS", "max", "mean-sqrt-len"};
    snprintf(m->desc, sizeof m->desc, "bert %zux%zu (%zu heads), %s pooling%s, max %zu tokens, vocab %zu", m->L, m->C,
             m->NH, pools[m->pool], m->normalize ? ", normalized" : "", m->max_len, m->V);
    return m;
fail:
    embed_free(m);
    return NULL;
}

/* ---------------------------------------------------------------- forward */
/* A few rows (one short question) go through the skinny product, which streams W once; a general GEMM library
 * would prepare (oneDNN: generate code for) each new row count first, which costs more than the product. */
static void embed_matmul(kern_backend *be, float *out, const float *inp, const float *w, const float *b, size_t N,
                         size_t C, size_t OC) {
    if (N <= KERN_SKINNY_MAX_N) kern_matmul_skinny_fwd(be, out, inp, w, b, N, C, OC, KERN_W_OUT_IN);
    else kern_matmul_fwd(be, out, inp, w, b, N, C, OC, KERN_W_OUT_IN);
}
/* One padded batch: ids [B,T] (host), lens [B]; writes the pooled (and normalised) vectors to out [B,C]. */
static void embed_forward(embed_model *m, const int32_t *ids, const int32_t *lens, size_t B, size_t T, float *out) {
    kern_backend *be = m->be;
    size_t C = m->C, I = m->I, N = B * T;
    float *x = kern_alloc(be, N * C * sizeof(float)), *qkv = kern_alloc(be, N * 3 * C * sizeof(float));
    float *att = kern_alloc(be, N * C * sizeof(float)), *a = kern_alloc(be, N * C * sizeof(float));
    float *h = kern_alloc(be, N * I * sizeof(float));
    float *mean = kern_alloc(be, N * sizeof(float)), *rstd = kern_alloc(be, N * sizeof(float));
    /* x = LN(word + type + pos)   [N,C] */
    kern_enc_embed_fwd(be, a, ids, NULL, m->wte, m->wpe, m->wtt, B, T, C);
    kern_layernorm_fwd(be, x, mean, rstd, a, m->ln_e_w, m->ln_e_b, N, C, m->eps);
    for (size_t l = 0; l < m->L; l++) {
        const embed_layer *w = &m->layer[l];
        /* self-attention, post-LN:  x1 = LN(x + Wo attn(x Wqkv + bqkv) + bo)   qkv [N,3C], att [N,C] */
        embed_matmul(be, qkv, x, w->qkv_w, w->qkv_b, N, C, 3 * C);
        kern_enc_attention_fwd(be, att, qkv, lens, B, T, C, m->NH);
        embed_matmul(be, a, att, w->o_w, w->o_b, N, C, C);
        kern_add(be, a, a, x, N * C);
        kern_layernorm_fwd(be, x, mean, rstd, a, w->ln1_w, w->ln1_b, N, C, m->eps);
        /* feed-forward:  x = LN(x1 + W2 gelu(W1 x1 + b1) + b2)   h [N,I] */
        embed_matmul(be, h, x, w->i_w, w->i_b, N, C, I);
        if (m->gelu_tanh) kern_gelu_fwd(be, h, h, N * I);
        else kern_enc_gelu_erf_fwd(be, h, h, N * I);
        embed_matmul(be, a, h, w->f_w, w->f_b, N, I, C);
        kern_add(be, a, a, x, N * C);
        kern_layernorm_fwd(be, x, mean, rstd, a, w->ln2_w, w->ln2_b, N, C, m->eps);
    }
    float *hx = gk_malloc(N * C * sizeof *hx);
    kern_download(be, hx, x, N * C * sizeof(float));
    for (size_t b = 0; b < B; b++) {
        float *o = out + b * C;
        const float *r = hx + b * T * C;
        size_t L = (size_t)lens[b];
        /* pooling over the L real tokens ([CLS] and [SEP] included, as sentence-transformers does) */
        if (m->pool == EMBED_POOL_CLS) memcpy(o, r, C * sizeof *o);
        else if (m->pool == EMBED_POOL_MAX) {
            for (size_t c = 0; c < C; c++) { float v = r[c]; for (size_t t = 1; t < L; t++) if (r[t * C + c] > v) v = r[t * C + c]; o[c] = v; }
        } else {
            float div = m->pool == EMBED_POOL_MEAN ? (float)L : sqrtf((float)L);
            for (size_t c = 0; c < C; c++) { float s = 0; for (size_t t = 0; t < L; t++) s += r[t * C + c]; o[c] = s / div; }
        }
        if (m->normalize) {
            double ss = 0;
            for (size_t c = 0; c < C; c++) ss += (double)o[c] * o[c];
            float inv = 1.0f / fmaxf((float)sqrt(ss), 1e-12f);
            for (size_t c = 0; c < C; c++) o[c] *= inv;
        }
    }
    free(hx);
    kern_free(be, x); kern_free(be, qkv); kern_free(be, att); kern_free(be, a); kern_free(be, h);
    kern_free(be, mean); kern_free(be, rstd);
}

typedef struct { size_t idx, len; } embed_ord;
static int embed_ord_cmp(const void *a, const void *b) {
    const embed_ord *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? 1 : -1;   /* longest first */
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

void embed_ids(embed_model *m, const int32_t *const *ids, const size_t *n_ids, size_t n, float *out) {
    embed_ord *ord = gk_malloc((n ? n : 1) * sizeof *ord);
    for (size_t i = 0; i < n; i++) {
        GK_CHECK(n_ids[i] >= 1 && n_ids[i] <= m->max_len, "embed_ids: input %zu has %zu ids (1..%zu)", i, n_ids[i], m->max_len);
        ord[i] = (embed_ord){i, n_ids[i]};
    }
    /* sorted by length so each padded batch wastes little */
    qsort(ord, n, sizeof *ord, embed_ord_cmp);
    size_t C = m->C;
    int32_t *buf = gk_malloc(m->batch * m->max_len * sizeof *buf), *lens = gk_malloc(m->batch * sizeof *lens);
    float *o = gk_malloc(m->batch * C * sizeof *o);
    for (size_t s = 0; s < n; s += m->batch) {
        size_t B = n - s < m->batch ? n - s : m->batch, T = ord[s].len;
        for (size_t b = 0; b < B; b++) {
            size_t k = ord[s + b].idx, L = n_ids[k];
            for (size_t t = 0; t < T; t++) {
                int32_t id = t < L ? ids[k][t] : wp_pad_id(m->tok);
                GK_CHECK(id >= 0 && (size_t)id < m->V, "embed_ids: id %d out of range", id);
                buf[b * T + t] = id;
            }
            lens[b] = (int32_t)L;
        }
        embed_forward(m, buf, lens, B, T, o);
        for (size_t b = 0; b < B; b++) memcpy(out + ord[s + b].idx * C, o + b * C, C * sizeof *o);
    }
    free(buf); free(lens); free(o); free(ord);
}

int embed_texts(embed_model *m, const char *const *texts, const size_t *lens, size_t n, float *out, gk_err *err) {
    wp_ids *tk = gk_calloc(n ? n : 1, sizeof *tk);
    int32_t **ids = gk_malloc((n ? n : 1) * sizeof *ids);
    size_t *nid = gk_malloc((n ? n : 1) * sizeof *nid);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        size_t len = lens ? lens[i] : strlen(texts[i]);
        if (wp_encode(m->tok, texts[i], len, 1, m->max_len, &tk[i], err)) rc = gk_err_prefix(err, "text %zu", i + 1);
        ids[i] = tk[i].ids; nid[i] = tk[i].n;
    }
    if (!rc) embed_ids(m, (const int32_t *const *)ids, nid, n, out);
    for (size_t i = 0; i < n; i++) wp_ids_free(&tk[i]);
    free(tk); free(ids); free(nid);
    return rc;
}
