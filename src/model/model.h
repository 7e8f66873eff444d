/* model: an architecture-aware transformer — config, parameter table with roles, one block, heads, checkpoint I/O.
 *
 * Config: the architecture is described by fields (family, KV heads, FFN width, norm, position encoding,
 * activation, bias, tied head). Two families run: GPT-2 (LayerNorm, learned positions, GELU, biases, Conv1D
 * weights [in, out]) and LLaMA (RMSNorm, rotary positions with optional llama3 scaling, SwiGLU, grouped-query
 * attention, no biases but an optional q/k/v bias (Qwen2), torch.nn.Linear weights [out, in]: block matmuls use
 * gpt_wlayout(cfg)). Mixtures of the two are refused by gpt_config_validate, naming what is not supported.
 *
 * Trunk: tokens [B,T] -> final hidden states h [B,T,C] (after ln_f).
 * Heads: the LM head (found by role: tied, it is wte and logits = h @ wte^T; untied, its own lm_head.weight
 *        [V,C]) and, when cfg.score_head is set, a scalar head (score.weight [1,C]: r = h . w, HF
 *        GPT2ForSequenceClassification's layout) for reward/value models.
 * Losses are not here: training code runs the trunk, applies a head and a loss to rows it chooses
 * (chunked, so a 50k vocabulary never needs a [B,T,V] buffer), and hands dh back to gpt_backward.
 *
 * Parameters: a table (name, shape, role, layer, group, decay) drives allocation, checkpoint I/O and the
 * optimizer. Its sizes come from the config fields (wpe only with learned positions, biases only with bias on,
 * lm_head only when untied, c_fc's width from n_inner, c_attn's from n_head and n_kv_head). Code finds a
 * tensor by ROLE (GPT_ROLE_*, plus a layer index for block tensors), never by position:
 * gpt_param_role(m, GPT_ROLE_LM_HEAD, -1) is wte when the head is tied.
 * All parameters live in one contiguous device buffer `params`, in table order; `grads` mirrors it.
 * Table order is layer-major: wte, wpe, then h.0.* .. h.{L-1}.*, then ln_f.*, lm_head (untied only),
 * score.* (if any). Names are HF GPT-2's without the "transformer." prefix (checkpoint I/O adds it for the
 * trunk). Weights of Conv1D layers are stored [in, out] exactly as HF stores them, so checkpoints are plain copies.
 *
 * One block function (src/model/block.c) runs a layer for every caller: the training forward (causal attention
 * over [B,T], activations saved for backward), its backward, and the KV-cache prefill/decode (attention over a
 * cache slot, the skinny matmul for few rows) — so the two paths cannot drift apart.
 */
#ifndef GK_MODEL_H
#define GK_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "core/core.h"
#include "kern/kern.h"

/* ---------------------------------------------------------------- config */
enum { GPT_ARCH_GPT2 = 0, GPT_ARCH_LLAMA };                 /* model family */
enum { GPT_NORM_LAYERNORM = 0, GPT_NORM_RMSNORM };
enum { GPT_POS_LEARNED = 0, GPT_POS_ROPE };                 /* wpe table | rotary */
enum { GPT_ACT_GELU_TANH = 0, GPT_ACT_SWIGLU };             /* mlp: gelu(x W1) W2 | (silu(x Wg) * x W1) W2 */

typedef struct {
    int   arch;           /* GPT_ARCH_*: GPT-2 (HF GPT2Config) today; LLaMA refused until implemented */
    int   n_layer, n_head, n_embd;
    int   n_kv_head;      /* key/value heads; 0 = n_head (multi-head). Fewer: grouped-query (not yet) */
    int   n_inner;        /* FFN width; 0 = 4 * n_embd (HF GPT2Config's n_inner = None) */
    int   vocab_size;
    int   n_ctx;          /* max sequence length = rows of wpe (HF: n_positions) */
    int   norm;           /* GPT_NORM_* */
    float ln_eps;         /* 1e-5 */
    int   pos;            /* GPT_POS_* */
    float rope_theta;     /* rotary base (only with GPT_POS_ROPE); 10000 */
    int   act;            /* GPT_ACT_* */
    int   bias;           /* 1: linear layers and LayerNorms have biases (GPT-2) */
    int   tied_head;      /* 1: the LM head is wte (GPT-2); 0: its own lm_head.weight [V,C] */
    int   score_head;     /* 1: add score.weight [1,C] (reward / value head) */
    /* the LLaMA family */
    int   qkv_bias;       /* 1: the q/k/v projections have biases though nothing else does (Qwen2) */
    int   rope_scaling;   /* GPT_ROPE_SCALE_*: how inv_freq is adjusted for long contexts */
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;   /* llama3 scaling's parameters */
    int   rope_orig_ctx;  /* llama3: original_max_position_embeddings */
} gpt_config;
enum { GPT_ROPE_SCALE_NONE = 0, GPT_ROPE_SCALE_LLAMA3 };

/* d6 GPT-2: 6 layers, 6 heads, 384 wide, vocab 50257, ctx 1024, LayerNorm 1e-5, learned positions,
 * gelu_tanh, biases, tied head, no score head. */
void gpt_config_default(gpt_config *c);
/* Named sizes: "d6" (6L/6H/384), "d12" (GPT-2 124M: 12L/12H/768), "d24" (GPT-2 medium 24L/16H/1024),
 * "d36" (36L/20H/1280), "d48" (48L/25H/1600), any other "dN": N layers, N heads, 64N wide.
 * Only the dims are set; vocab_size and n_ctx are left as they were. With c->arch LLAMA, a dN size also sets
 * n_kv_head (n_head / 3 when 3 divides it, else n_head / 2 when even, else n_head) and n_inner (8C/3 rounded up
 * to a multiple of 64), and "llama-135m" is SmolLM-135M's shape (30L, 9 heads, 3 KV heads, 576 wide, I 1536). */
int  gpt_config_from_name(gpt_config *c, const char *name, gk_err *err);
/* Ranges and consistency only (dims, divisibility, known enum values): any describable architecture passes. */
int  gpt_config_check_dims(const gpt_config *c, gk_err *err);
/* gpt_config_check_dims, then: can this build run it? Refuses what is not implemented, naming it. */
int  gpt_config_validate(const gpt_config *c, gk_err *err);
int  gpt_config_n_kv_head(const gpt_config *c);   /* resolved: n_kv_head or n_head */
int  gpt_config_n_inner(const gpt_config *c);     /* resolved: n_inner or 4 * n_embd */
/* The LLaMA family's defaults (HF LlamaConfig's, except eps 1e-5): RMSNorm, RoPE theta 10000, SwiGLU, no biases,
 * untied head; dims as gpt_config_default (d6) with n_kv_head 2 and n_inner 1024. */
void gpt_config_llama(gpt_config *c);
/* KERN_W_IN_OUT (GPT-2's Conv1D) or KERN_W_OUT_IN (LLaMA's nn.Linear): how the block's weights are stored. */
int  gpt_wlayout(const gpt_config *c);
/* Rotary frequencies inv_freq[hs/2] (host) for c, llama3 scaling applied, in fp32 as HF computes them. */
void gpt_rope_inv_freq(const gpt_config *c, float *inv_freq);
const char *gpt_arch_name(int arch);               /* "gpt2", "llama" ("?" if unknown) */

/* ---------------------------------------------------------------- parameter table */
enum {
    GPT_GROUP_EMBED = 0,   /* wte, wpe */
    GPT_GROUP_BLOCKS,      /* h.*.* */
    GPT_GROUP_FINAL,       /* ln_f, an untied lm_head */
    GPT_GROUP_SCORE,       /* score head */
    GPT_NGROUPS
};

/* What a tensor is for. Model-level roles are looked up with layer -1, block roles with their layer. */
enum {
    GPT_ROLE_EMBED_TOK = 0,  /* wte [V,C] */
    GPT_ROLE_EMBED_POS,      /* wpe [n_ctx,C]            learned positions only */
    GPT_ROLE_LN1_W, GPT_ROLE_LN1_B,          /* [C]      (bias: LayerNorm with bias on) */
    GPT_ROLE_QKV_W, GPT_ROLE_QKV_B,          /* [C, (NH + 2 NKV) hs], bias [(NH + 2 NKV) hs] */
    GPT_ROLE_PROJ_W, GPT_ROLE_PROJ_B,        /* [C,C], [C] */
    GPT_ROLE_LN2_W, GPT_ROLE_LN2_B,          /* [C] */
    GPT_ROLE_FC_W, GPT_ROLE_FC_B,            /* [C,I], [I]   I = n_inner */
    GPT_ROLE_GATE_W,                         /* [C,I]        SwiGLU only */
    GPT_ROLE_FCPROJ_W, GPT_ROLE_FCPROJ_B,    /* [I,C], [C] */
    GPT_ROLE_LNF_W, GPT_ROLE_LNF_B,          /* [C] */
    GPT_ROLE_LM_HEAD,        /* [V,C]: lm_head.weight when untied; the EMBED_TOK entry when tied */
    GPT_ROLE_SCORE,          /* score.weight [1,C] */
    GPT_NROLES
};

typedef struct {
    char   name[64];      /* e.g. "h.3.attn.c_attn.weight" */
    int    ndim;          /* 1 or 2 */
    size_t shape[2];      /* HF shape; shape[1] = 1 unused for 1-D */
    size_t offset;        /* in floats, into params/grads; GPT_NO_OFFSET: kept quantized (gpt_model.qw), no fp32 copy */
    size_t numel;
    int    role;          /* GPT_ROLE_* */
    int    layer;         /* block index, -1 for model-level tensors */
    int    group;         /* GPT_GROUP_* */
    int    decay;         /* AdamW weight decay applies (2-D matrices incl. wte; not wpe, biases, LN) */
    int    init;          /* how gpt_init_random fills it (model.c's INIT_* kinds) */
} gpt_param;

#define GPT_NO_OFFSET ((size_t)-1)

/* A matrix kept in its GGUF block format for inference (gpt_load_infer of a .gguf file): no fp32 copy exists.
 * Up to three parts stacked by output rows, each [rows, C] in kern_qmat's [out, in] layout whatever the family
 * (the fused q | k | v of a file that stores q, k and v in different types keeps three; otherwise one). */
typedef struct { int nparts; kern_qmat part[3]; } gpt_qweight;

/* Pointers into one layer's parameters (device); NULL for a tensor this architecture does not have. A matrix kept
 * quantized has a NULL float pointer and its *_q set (both NULL in a gradient's gpt_layer_ptrs). */
typedef struct {
    float *ln1_w, *ln1_b;        /* [C] */
    float *qkv_w, *qkv_b;        /* [C,3C], [3C] (GPT-2) */
    float *proj_w, *proj_b;      /* [C,C], [C] */
    float *ln2_w, *ln2_b;        /* [C] */
    float *fc_w, *fc_b;          /* [C,I], [I] */
    float *gate_w;               /* [C,I] (SwiGLU only) */
    float *fcproj_w, *fcproj_b;  /* [I,C], [C] */
    const gpt_qweight *qkv_q, *proj_q, *fc_q, *gate_q, *fcproj_q;   /* quantized matrices (inference), or NULL */
} gpt_layer_ptrs;
/* (LLaMA's weights are the transposes: qkv [QKV,C], proj [C,C], fc (up) and gate [I,C], fcproj (down) [C,I].) */

/* Saved activations of one forward pass at (B,T), needed by backward. All device, [B*T, ...]. */
typedef struct {
    float *x;         /* [L+1, BT, C]   residual stream entering layer l (x[L] = trunk output before ln_f) */
    float *ln1, *ln1_mean, *ln1_rstd;   /* [L, BT, C], [L, BT], [L, BT] */
    float *qkv;       /* [L, BT, 3C] */
    float *atty;      /* [L, BT, C]   attention output before c_proj */
    float *att_saved; /* [L, kern_attention_saved_floats] */
    float *res2;      /* [L, BT, C]   x + attn */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fch;       /* [L, BT, I]   pre-GELU */
    float *fch_gelu;  /* [L, BT, I]   (SwiGLU: silu(gate) * fch) */
    float *gate;      /* [L, BT, I]   SwiGLU's gate projection (NULL for GPT-2) */
    float *qkve;      /* [L, BT, 3C]  grouped-query attention: k, v expanded to every query head (NULL otherwise) */
    int32_t *rpos;    /* [BT] device: each row's position (rotary models) */
    float *lnf, *lnf_mean, *lnf_rstd;   /* [BT, C], [BT], [BT]: the trunk's output h */
    int32_t *tokens;  /* [BT] device copy of the inputs */
} gpt_acts;

struct gpt_lora;

typedef struct gpt_model {
    gpt_config cfg;
    kern_backend *be;             /* the backend every op and buffer of this model uses (precision included) */
    int own_be;                   /* 1: gpt_free frees be (made by gpt_create); 0: borrowed (gpt_create_on) */
    gpt_param *table; size_t n_table;
    int   *role_at;               /* [(L+1) * GPT_NROLES]: table index of (role, layer), -1 if absent;
                                     row 0 = model-level roles, row l+1 = layer l */
    size_t num_params;            /* floats in params */
    float *params;                /* device [num_params] */
    float *grads;                 /* device [num_params], NULL until gpt_alloc_grads */
    int    trainable[GPT_NGROUPS];   /* frozen groups get NULL grad pointers in backward */
    /* activations, sized for the largest (B,T) seen so far */
    gpt_acts acts;
    size_t acts_cap_bt;           /* B*T the buffers hold */
    size_t acts_cap_saved;        /* floats per layer in acts.att_saved (depends on B and T, not only B*T) */
    size_t B, T;                  /* shape of the last forward */
    float *scratch;               /* backward scratch, sized with the acts: [(C + 3 max(I, 3C)) * acts_cap_bt] */
    float *inv_freq;              /* device [hs/2]: rotary frequencies (rotary models), NULL otherwise */
    struct gpt_lora *lora;        /* LoRA adapters on the block's linear layers (lora.c), or NULL; owned */
    int view;                     /* 1: params and inv_freq are another model's (gpt_create_view) */
    /* Inference on a quantized GGUF (gpt_load_infer): qw [n_table], entry i kept in its block format when
     * qw[i].nparts > 0 (its offset is GPT_NO_OFFSET and params holds only the fp32 tensors, compacted); the
     * blocks live in qdata (device, owned). NULL: every tensor is fp32 at its offset (the normal case). */
    gpt_qweight *qw;
    uint8_t *qdata;
    /* Called by gpt_backward as it goes, when set (NULL: never): grads[from, num_params) will not be written again
     * by this backward pass (the heads' gradients, written before it, included). The backward walks the blocks
     * from last to first and the table is layer-major, so `from` only decreases; 0 at the end. The training stage
     * starts the gradient communication of the finished tail here (docs/distributed.md, --dist-bucket-mb). */
    void (*bwd_ready)(void *ctx, size_t from);
    void *bwd_ready_ctx;
} gpt_model;

/* Builds the table and allocates params (zero) on a new backend with the process defaults (kern_backend_create
 * (NULL), owned by the model). Aborts only on OOM; the config must pass gpt_config_validate. */
gpt_model *gpt_create(const gpt_config *cfg);
/* The same on a given backend, borrowed: be must outlive the model (several models may share one; they then
 * share its precision too). To switch a model's precision (bf16 training): kern_set_precision(m->be, ...). */
gpt_model *gpt_create_on(const gpt_config *cfg, kern_backend *be);
/* The table alone (params NULL, nothing allocated on the device) for any config passing gpt_config_check_dims,
 * including architectures this build cannot run: sizes a model, checks a checkpoint's shapes before committing
 * memory. Free with gpt_free. */
gpt_model *gpt_create_table(const gpt_config *cfg, kern_backend *be);   /* be NULL: a default one, owned */
void gpt_free(gpt_model *m);
/* GPT-2 init: N(0, 0.02) weights, c_proj weights N(0, 0.02/sqrt(2L)), zero biases, LN weight 1. */
void gpt_init_random(gpt_model *m, uint64_t seed);
const gpt_param *gpt_find_param(const gpt_model *m, const char *name);   /* NULL if absent */
float *gpt_param_ptr(gpt_model *m, const char *name);                    /* device pointer or NULL */
/* The tensor playing `role` (GPT_ROLE_*) in `layer` (-1 for model-level roles), or NULL if this architecture
 * has none (e.g. biases off, wpe with RoPE, score without a score head). GPT_ROLE_LM_HEAD of a tied model is
 * the token embedding's entry. O(1). Aborts on a role or layer out of range. */
const gpt_param *gpt_param_role(const gpt_model *m, int role, int layer);
/* base (params or grads, may be NULL) + the role's offset; NULL if base is NULL or the role is absent. */
float *gpt_role_ptr(float *base, const gpt_model *m, int role, int layer);
gpt_layer_ptrs gpt_layer(float *base, const gpt_model *m, int l);         /* base = params or grads */
/* Dequantizes every matrix kept quantized into fp32 (the standard layout: table offsets, one params buffer),
 * as gpt_load would have loaded them; no-op without. Training, LoRA and checkpoint writing call it (or need it):
 * gpt_alloc_grads and gpt_lora_attach/gpt_lora_load do it themselves. */
void gpt_dequantize_weights(gpt_model *m);
/* The quantized form of table entry p, or NULL when it is fp32. */
const gpt_qweight *gpt_param_qweight(const gpt_model *m, const gpt_param *p);
/* Bytes m's parameters occupy: 4 per fp32 value, the block bytes of the matrices kept quantized. */
size_t gpt_weight_bytes(const gpt_model *m);
void gpt_alloc_grads(gpt_model *m);   /* dequantizes a quantized model first (gpt_dequantize_weights) */
void gpt_zero_grads(gpt_model *m);
void gpt_set_trainable(gpt_model *m, int group, int on);
/* A second model over m's parameters (borrowed: m must outlive it and they must never be written while a view
 * reads them): its own activations and its own LoRA adapters, for several adapter sets on one frozen base
 * (PPO's policy and value). No gradients for the base. Free with gpt_free (m's parameters are not freed). */
gpt_model *gpt_create_view(gpt_model *m);
/* Gives m a scalar head (score.weight [1, C], zeros) if it has none, in place: the parameters are copied into
 * a buffer one head larger (grads too, if allocated). */
void gpt_add_score_head(gpt_model *m);
/* 1 if m scores: its own score head, or one its LoRA adapter owns. */
int gpt_has_score_head(const gpt_model *m);

/* ---------------------------------------------------------------- forward / backward */
/* Checks token ids are in [0, vocab) and T <= n_ctx: returns -1 with a message otherwise. */
int  gpt_check_tokens(const gpt_model *m, const int32_t *tokens, size_t B, size_t T, gk_err *err);
/* Runs the trunk on host tokens [B,T] (validated by the caller). Result: gpt_hidden(m), [B*T, C] device. */
void gpt_forward(gpt_model *m, const int32_t *tokens, size_t B, size_t T);
const float *gpt_hidden(const gpt_model *m);
/* LM head on N rows of hidden states: logits [N,V] = h [N,C] @ W^T, W = gpt_param_role(m, GPT_ROLE_LM_HEAD, -1)
 * (wte when tied). */
void gpt_lm_head_fwd(gpt_model *m, float *logits, const float *h, size_t N);
/* dh [N,C] += dlogits @ W;  dW += dlogits^T @ h (if W's group is trainable: embed when tied, final untied). */
void gpt_lm_head_bwd(gpt_model *m, float *dh, const float *dlogits, const float *h, size_t N);
/* Scalar head: r [N] = h [N,C] . score.weight.  Requires cfg.score_head. */
void gpt_score_head_fwd(gpt_model *m, float *r, const float *h, size_t N);
void gpt_score_head_bwd(gpt_model *m, float *dh, const float *dr, const float *h, size_t N);
/* Backward through the trunk of the last forward: dh [B*T, C] (device) is the gradient at the trunk output.
 * Accumulates into grads of trainable groups. dh is used as scratch (clobbered). */
void gpt_backward(gpt_model *m, float *dh);

/* ---------------------------------------------------------------- safetensors */
/* A parsed safetensors file held in memory. Validated on open: 8-byte header length, JSON header, every
 * tensor's dtype, shape and data_offsets checked against the file length with overflow-safe arithmetic. */
typedef struct {
    char   name[256];
    char   dtype[8];      /* "F32", "F16", "BF16", "I32", ... */
    int    ndim; size_t shape[8];
    size_t begin, end;    /* byte offsets into data */
} st_tensor;
typedef struct {
    char *file; size_t file_len;   /* whole file: mapped read-only (mapped = 1), or read into memory */
    int mapped;
    const uint8_t *data; size_t data_len;   /* after the header */
    st_tensor *tensors; size_t n;
    char **meta_keys, **meta_vals; size_t n_meta;   /* __metadata__ string map */
    char *path;
} st_file;
int  st_open(st_file *f, const char *path, gk_err *err);
/* Hands tensor t's pages back to the OS once read (a mapped file: later reads fault them in again), so loading a
 * checkpoint never holds the file and the parameters in memory at once. No-op for a file read into memory. */
void st_release(const st_file *f, const st_tensor *t);
void st_close(st_file *f);
const st_tensor *st_find(const st_file *f, const char *name);
const char *st_meta(const st_file *f, const char *key);   /* NULL if absent */
/* Reads a tensor as fp32 into dst (numel floats): converts F32/F16/BF16; errors on anything else. */
int  st_read_f32(const st_file *f, const st_tensor *t, float *dst, gk_err *err);

typedef struct st_writer st_writer;
st_writer *st_writer_new(void);
/* Adds a tensor (data copied at write time: the pointer must stay valid until st_writer_write). */
void st_writer_add_f32(st_writer *w, const char *name, int ndim, const size_t *shape, const float *host_data);
void st_writer_add_meta(st_writer *w, const char *key, const char *value);
/* Writes atomically; tensors sorted by name as HF does; dtype F32. Frees nothing: call st_writer_free. */
int  st_writer_write(st_writer *w, const char *path, gk_err *err);
void st_writer_free(st_writer *w);

/* ---------------------------------------------------------------- checkpoints */
/* A checkpoint directory: config.json (HF GPT2Config, plus a "gptkit" object with our extras) and
 * model.safetensors (HF GPT-2 names with "transformer." prefix; lm_head absent when tied, top-level
 * lm_head.weight when untied (tie_word_embeddings false); score.weight at top level). `tokenizer` (may be NULL) is recorded in config.json so later stages find it.
 * HF loads it with GPT2LMHeadModel.from_pretrained (GPT2ForSequenceClassification with a score head).
 * Full description: docs/formats.md. */
int gpt_save(const gpt_model *m, const char *dir, const char *tokenizer, gk_err *err);
/* gpt_save with what a self-contained checkpoint adds (train_save_model fills it from the tokenizer): config.json's
 * bos_token_id / eos_token_id (-1: not written) and files written into dir beside the weights (tokenizer.json,
 * tokenizer_config.json, generation_config.json), each atomically, before config.json. */
typedef struct { const char *name; const char *data; size_t len; } gpt_save_file;
typedef struct {
    const char *tokenizer;          /* recorded in config.json's gptkit.tokenizer (may be NULL) */
    int32_t bos_id, eos_id;
    const gpt_save_file *files; size_t n_files;
} gpt_save_opts;
int gpt_save_ex(const gpt_model *m, const char *dir, const gpt_save_opts *o, gk_err *err);
/* Loads config.json + model.safetensors (names with or without "transformer."). Shapes are checked
 * against config.json; missing keys, mismatched shapes and lying headers give a message naming the file.
 * *tokenizer (if non-NULL) receives a malloc'd path of the tokenizer: DIR's own tokenizer.json (absolute) where DIR
 * has one (every checkpoint gptkit writes does; HF directories too), else the recorded path, else NULL. */
gpt_model *gpt_load(const char *dir, char **tokenizer, gk_err *err);
/* gpt_load for inference: a .gguf file keeps its F16 / Q8_0 / Q4_0 / Q4_K / Q6_K matrices in their block format
 * (gpt_load_gguf_quant); anything else loads as gpt_load does. */
gpt_model *gpt_load_infer(const char *dir, char **tokenizer, gk_err *err);
int gpt_load_config(const char *dir, gpt_config *cfg, char **tokenizer, gk_err *err);

/* ---------------------------------------------------------------- GGUF (gguf.c) */
/* ggml tensor types (the values in the file) */
/* ggml tensor types (the values in the file): the kernels' format numbers (kern.h, src/kern/quant.c) */
enum { GGUF_F32 = KERN_QT_F32, GGUF_F16 = KERN_QT_F16, GGUF_Q4_0 = KERN_QT_Q4_0, GGUF_Q4_1 = KERN_QT_Q4_1,
       GGUF_Q5_0 = KERN_QT_Q5_0, GGUF_Q5_1 = KERN_QT_Q5_1, GGUF_Q8_0 = KERN_QT_Q8_0, GGUF_Q4_K = KERN_QT_Q4_K,
       GGUF_Q5_K = KERN_QT_Q5_K, GGUF_Q6_K = KERN_QT_Q6_K, GGUF_BF16 = KERN_QT_BF16 };
typedef struct { const char *p; size_t n; } gguf_str;             /* not NUL-terminated */
typedef struct { gguf_str key; uint32_t type; size_t at, end; } gguf_kv;   /* value bytes [at, end) */
typedef struct { gguf_str name; int n_dims; size_t ne[4]; int type; uint64_t offset; size_t numel, bytes; } gguf_tensor;
typedef struct {
    const uint8_t *data; size_t len;   /* the whole file */
    gguf_kv *kv; size_t n_kv;
    gguf_tensor *tensors; size_t n_tensors;
    size_t alignment, data_off;        /* tensor t's bytes: data + data_off + t.offset */
    void *mapped; char *path;
} gguf_file;
/* Parses and validates a GGUF buffer (kept, not copied): every length, count, type, dim and offset is checked
 * before use; errors name the file and the field. gguf_open maps a file read-only. */
int  gguf_parse(gguf_file *g, const uint8_t *data, size_t len, const char *path, gk_err *err);
int  gguf_open(gguf_file *g, const char *path, gk_err *err);
void gguf_close(gguf_file *g);
const gguf_kv *gguf_find_kv(const gguf_file *g, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name);
int  gguf_get_num(const gguf_file *g, const char *key, double *out);     /* any numeric type; -1 if absent */
int  gguf_get_str(const gguf_file *g, const char *key, gguf_str *out);   /* -1 if absent or not a string */
const char *gguf_type_name(int type);                 /* "Q4_K", ... ("?" if unknown) */
int  gguf_type_parse(const char *s, int *type);       /* case-insensitive name -> type; -1 if unknown */
size_t gguf_type_bytes(int type, size_t n);           /* bytes of n elements (n a multiple of the block) */
/* n elements of type at src -> fp32, exactly as the `gguf` Python package's dequantize. -1: type not readable. */
int  gguf_dequantize(int type, const uint8_t *src, size_t n, float *dst);
/* LLaMA / Qwen2 GGUF (llama.cpp's tensor names and metadata) -> config, -> model (weights dequantized to fp32). */
int  gguf_load_config(const gguf_file *g, gpt_config *c, gk_err *err);
gpt_model *gpt_load_gguf(const char *path, gk_err *err);
/* The same for inference: on a backend with the quantized ops (kern_quant_supported; else as gpt_load_gguf) the
 * block matrices (q, k, v, o, gate, up, down), the token table and the LM head whose type kern_matmul_q_fwd
 * multiplies (F16, Q8_0, Q4_0, Q4_K, Q6_K; kern_qtype_matmul) stay in that format in memory (m->qw: copied out
 * of the file, q/k rows un-permuted, no fp32 copy); other types are dequantized. The
 * model runs forward (gpt_forward, gpt_forward_kv, the LM head); anything needing fp32 weights dequantizes
 * them first (gpt_dequantize_weights). Peak memory: about the file's size (each tensor's pages of the mapped
 * file are released once copied). */
gpt_model *gpt_load_gguf_quant(const char *path, gk_err *err);
/* Extra metadata entries for the writer (serialised key + type + value), e.g. the tokenizer's. */
typedef struct { uint8_t *bytes; size_t n; } gguf_extra_kv;
void gguf_kv_string(gguf_extra_kv *kv, const char *key, const char *val);
void gguf_kv_u32(gguf_extra_kv *kv, const char *key, uint32_t val);
void gguf_kv_str_array(gguf_extra_kv *kv, const char *key, const char *const *vals, const size_t *lens, size_t n);
void gguf_kv_i32_array(gguf_extra_kv *kv, const char *key, const int32_t *vals, size_t n);
/* Writes a LLaMA-family model as GGUF v3 (type GGUF_F32 | F16 | Q8_0 | Q4_0 | Q4_K for the matrices, a matrix whose
 * rows do not fill the type's blocks falling back to Q8_0 then F16; norms and biases f32), llama.cpp's names and
 * metadata, plus the extra entries. Atomic write. */
int  gpt_export_gguf(const gpt_model *m, const char *path, int type, const gguf_extra_kv *extra, size_t n_extra, gk_err *err);
/* `gptkit info` for a .gguf file: architecture, sizes, parameters, tokenizer, template, every tensor. */
int  gguf_print_info(const char *path, FILE *out, gk_err *err);

/* ================================================================ LoRA adapters (src/model/lora.c, docs/lora.md)
 * A low-rank update beside chosen linear layers of every block: y = x W (+ b) + s * (x A^T) B^T, A [r, in],
 * B [out, r] (PEFT's lora_A / lora_B layouts for both families), s = alpha / r (rsLoRA: alpha / sqrt(r)).
 * A is drawn as PEFT draws it (kaiming-uniform with a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in))), B is zero, so a
 * fresh adapter leaves the model's outputs exactly unchanged. The adapters live in their own parameter table,
 * `pm` (a gpt_model shell: table, params, grads, no config-driven tensors), which is what the optimizer sees:
 * moments and gradients are the adapter's size, the base's params are never written and it has no grads.
 * gpt_forward, gpt_forward_kv and gpt_backward apply them through the block (one place). */
enum {   /* what an adapter may sit on */
    GPT_LORA_Q = 0, GPT_LORA_K, GPT_LORA_V, GPT_LORA_O, GPT_LORA_GATE, GPT_LORA_UP, GPT_LORA_DOWN,   /* llama */
    GPT_LORA_C_ATTN, GPT_LORA_C_PROJ, GPT_LORA_C_FC, GPT_LORA_MLP_C_PROJ,                            /* gpt2 */
    GPT_LORA_NTARGETS
};
typedef struct {
    int      rank;        /* r >= 1 */
    float    alpha;       /* scaling numerator (default 2r... callers pass it; 16 is PEFT's default) */
    float    dropout;     /* P in [0, 1): dropout on the adapter's input while training (gpt_lora_train) */
    int      rslora;      /* 1: s = alpha / sqrt(r) */
    unsigned targets;     /* bit GPT_LORA_* set for each adapted layer kind */
    int      score;       /* 1: the adapter owns a trainable scalar head ("score.weight" [1, C], PEFT's
                             modules_to_save = ["score"]): reward and value models */
} gpt_lora_config;
typedef struct {
    int    target, layer, role;    /* GPT_LORA_*, block, the base weight's GPT_ROLE_* */
    size_t in, out;                /* the adapter's input and output widths */
    size_t col0, ldo;              /* its output columns [col0, col0 + out) of the base product's ldo */
    size_t a_off, b_off;           /* offsets of A [r, in] and B [out, r] in pm's params/grads */
} gpt_lora_site;
typedef struct gpt_lora {
    gpt_lora_config cfg;
    float  scale;                  /* alpha / r or alpha / sqrt(r) */
    int    enabled;                /* 0: the base model alone (DPO's reference), adapters kept */
    gpt_model *pm;                 /* the adapter parameters as a table (optimizer, checkpoints) */
    gpt_lora_site *sites; size_t n_sites;
    size_t *site_at;               /* [L * nroles]: first site index + 1 of (layer, role), 0 none */
    float *u, *du;                 /* device scratch: [R, r] each */
    float *bpad, *dbpad;           /* device scratch [max ldo, r]: B (and dB) zero-padded to the product's width */
    size_t cap_rows;
    size_t score_off;              /* cfg.score: offset of score.weight [1, C] in pm */
    /* dropout (cfg.dropout > 0, training only): the mask of element (row, col) of site i's input in pass p is a
     * hash of (drop_seed, p, i, row, col), so the backward regenerates it instead of storing it */
    int    training;               /* 1: dropout on (gpt_lora_train) */
    uint64_t drop_seed, drop_pass; /* the current pass (gpt_forward starts a new one while training) */
    float *xd, *dxd;               /* device scratch [R, in]: the dropped input, its gradient */
    float *hmask;                  /* host scratch [R, in]: the mask */
    float *hx;                     /* host scratch [R, in]: the input or its gradient on its way through the mask */
    size_t cap_in;                 /* floats each of them holds */
    char  *base;                   /* the base model's directory, recorded in adapter_config.json (owned; may be NULL) */
    uint64_t base_ck;              /* gpt_params_checksum of the base, once computed (base_ck_ok): the base is frozen
                                      while adapters are attached; code that writes it anyway clears base_ck_ok */
    int    base_ck_ok;
} gpt_lora;
/* Parses "q,v", "all-linear", ... for m's family into cfg->targets; unknown names (or the other family's) are
 * an error naming them and listing the valid ones. */
int  gpt_lora_parse_targets(const gpt_config *c, const char *list, unsigned *targets, gk_err *err);
/* The target's name as our flags and PEFT's target_modules spell it ("q_proj", "attn.c_proj", ...). */
const char *gpt_lora_target_name(int target);
/* Attaches fresh adapters to m (A kaiming-uniform from seed, B zero; with cfg->score, a score head copied from
 * m's own if it has one, else zero). Errors: rank < 1 or larger than a target's in or out width, dropout outside
 * [0, 1), no targets, targets of the other family, m already has adapters. */
int  gpt_lora_attach(gpt_model *m, const gpt_lora_config *cfg, uint64_t seed, gk_err *err);
void gpt_lora_detach(gpt_model *m);                /* frees m->lora (no-op without) */
size_t gpt_lora_num_params(const gpt_model *m);    /* 0 without adapters */
/* Training mode of m's adapters: on = 1 turns adapter dropout on (if cfg.dropout > 0) with masks drawn from
 * seed (the stage passes one per micro-batch, so a resumed run draws the same masks); 0 = evaluation (no
 * dropout). No-op without adapters. */
void gpt_lora_train(gpt_model *m, int on, uint64_t seed);
/* Called by gpt_forward: a new pass (new dropout masks). */
void gpt_lora_new_pass(gpt_lora *L);
/* W += s * B A into the base weights (then the adapters are detached): the merged model computes the same
 * function without them. */
void gpt_lora_merge(gpt_model *m);
/* Writes dir/adapter_config.json and dir/adapter_model.safetensors exactly as PEFT's save_pretrained names
 * them; base (may be NULL) is recorded as base_model_name_or_path, and the base parameters' checksum as
 * gptkit_base_checksum in the safetensors metadata (hashed at the first save or load of this attachment and
 * kept: see base_ck). */
int  gpt_lora_save(const gpt_model *m, const char *dir, const char *base, gk_err *err);
/* Reads a PEFT adapter directory written by gpt_lora_save or by peft onto m (which has none yet): config,
 * every tensor's name and shape checked against m's architecture; a different recorded base checksum is an
 * error. *base (if non-NULL) gets a malloc'd copy of base_model_name_or_path (or NULL). */
int  gpt_lora_load(gpt_model *m, const char *dir, char **base, gk_err *err);
/* The PEFT key of site's A (ab 'A') or B ('B'): "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight". */
void gpt_lora_key(const gpt_model *m, size_t site, char ab, char *out, size_t cap);
/* 1 if dir holds adapter_config.json. */
int  gpt_lora_is_dir(const char *dir);
/* FNV-style checksum of the base parameters' bytes (host copy), for matching an adapter to its base. The score
 * head is left out: a reward adapter's base is the LM it was trained on, with or without a head added. */
uint64_t gpt_params_checksum(const gpt_model *m);
/* Internal to the block (model/block.c): apply / differentiate the adapters of (layer, role).
 * fwd: out [R, ldo] += s * (inp A^T) B^T in the site's columns. bwd: given dout [R, ldo] at the product's
 * output and its input inp [R, in]: grads of A and B (pm->grads, if allocated) += ..., dinp [R, in] += ... (dinp may be NULL: no input gradient wanted) */
void gpt_lora_fwd(gpt_lora *L, kern_backend *be, int layer, int role, float *out, const float *inp, size_t R);
void gpt_lora_bwd(gpt_lora *L, kern_backend *be, int layer, int role, float *dinp, const float *dout, const float *inp,
                  size_t R);

/* ================================================================ KV cache (issue 4: inference engine)
 * Implemented in src/model/kvcache.c. Incremental inference: the keys and values of every layer are kept
 * per sequence "slot", so a prefill runs the prompt once and each decode step runs one new token per
 * sequence, attending over the cache (kern_attn_cache_fwd). Logits equal a full recomputation
 * (gpt_forward + gpt_lm_head_fwd) up to float rounding (tests/test_engine.c checks 1e-5). */
typedef struct gpt_kv {
    size_t max_seqs, max_len;   /* slots; tokens per slot (<= n_ctx) */
    size_t *len;                /* host [max_seqs]: tokens cached in each slot */
    float *k, *v;               /* device [L, max_seqs, NKV, max_len, hs]: the key/value heads only */
    /* scratch for one call of up to cap_rows new rows (device unless noted) */
    size_t cap_rows;
    float *x, *ln, *qkv, *atty, *res, *fch, *fcg, *mean, *rstd, *h;
    float *gate;                /* SwiGLU gate */
    int32_t *tok, *rpos;        /* rpos: each new row's position (rotary models) */
    size_t *pos;                /* host [max_seqs] */
    int32_t *idx, *didx;        /* host, device [2, max_seqs]: one call's slot | pos per sequence, as int32 */
    kern_backend *be;           /* the model's backend, which owns the buffers above */
} gpt_kv;
/* A cache of max_seqs slots of max_len tokens (0 = n_ctx; clamped to n_ctx). All slots start empty.
 * Memory: max_seqs * max_len * gpt_kv_bytes_per_pos bytes. */
gpt_kv *gpt_kv_new(const gpt_model *m, size_t max_seqs, size_t max_len);
/* Bytes per slot and position: keys and values of every layer, over the key/value heads. */
size_t gpt_kv_bytes_per_pos(const gpt_config *c);
void gpt_kv_free(gpt_kv *kv);
void gpt_kv_reset(gpt_kv *kv, size_t slot);                      /* empties a slot */
void gpt_kv_truncate(gpt_kv *kv, size_t slot, size_t len);       /* keeps the first len tokens (len <= current) */
/* Copies slot src's cached tokens to slot dst (dst's length becomes src's): prefill once, decode N ways. */
void gpt_kv_copy(const gpt_model *m, gpt_kv *kv, size_t dst, size_t src);
/* Runs the trunk on n_new new tokens for each of B sequences: tokens [B, n_new] (host, validated by the
 * caller), sequence b living in slot slots[b] (host, distinct) at positions len[slot] .. len[slot]+n_new-1.
 * Appends their keys/values to the cache and advances len. Returns the final hidden states (after ln_f),
 * [B*n_new, C] device, valid until the next call on kv; feed rows to gpt_lm_head_fwd for logits.
 * Aborts (programmer error) if a slot would overflow max_len: callers check lengths first. */
const float *gpt_forward_kv(gpt_model *m, gpt_kv *kv, const size_t *slots, const int32_t *tokens, size_t B, size_t n_new);
/* ================================================================ end of KV cache */

#endif
