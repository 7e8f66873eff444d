/* search.c: queries over an index (index.h): exact nearest neighbours by dot product over every stored
 * vector (loaded into memory once per index_open, SIMD dot products from kern_enc.h), BM25 through FTS5,
 * and reciprocal-rank fusion of the two. */
#include "index/index_internal.h"
#include "kern/kern_enc.h"
#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

struct index_db {
    sqlite3 *db;
    char *path, *embedder_dir;
    embed_model *em;                 /* loaded on the first vector query */
    size_t dim, n; int int8;
    int64_t *ids;                    /* [n] chunk ids, in the order of the vectors */
    float *x; int8_t *x8; float *scale;   /* [n, dim] fp32, or int8 + [n] scales */
    int loaded;
};

int index_mode_parse(const char *s, index_mode *out) {
    if (!strcmp(s, "hybrid")) *out = INDEX_MODE_HYBRID;
    else if (!strcmp(s, "vector")) *out = INDEX_MODE_VECTOR;
    else if (!strcmp(s, "bm25")) *out = INDEX_MODE_BM25;
    else return -1;
    return 0;
}

index_db *index_open(const char *db_path, const char *embedder_dir, gk_err *err) {
    sqlite3 *db = index_db_open(db_path, 0, err);
    if (!db) return NULL;
    index_db *ix = gk_calloc(1, sizeof *ix);
    ix->db = db; ix->path = gk_strdup(db_path);
    char *d = index_meta_get(db, "dim"), *v = index_meta_get(db, "vectors"), *e = index_meta_get(db, "embedder");
    ix->dim = d ? (size_t)atol(d) : 0;
    ix->int8 = v && !strcmp(v, "int8");
    ix->embedder_dir = embedder_dir ? gk_strdup(embedder_dir) : e ? gk_strdup(e) : NULL;
    free(d); free(v); free(e);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM chunks", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        ix->n = (size_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return ix;
}
void index_close(index_db *ix) {
    if (!ix) return;
    sqlite3_close(ix->db);
    embed_free(ix->em);
    free(ix->path); free(ix->embedder_dir); free(ix->ids); free(ix->x); free(ix->x8); free(ix->scale);
    free(ix);
}
size_t index_n_chunks(const index_db *ix) { return ix->n; }
int index_has_vectors(const index_db *ix) { return ix->dim > 0; }

/* every vector into memory (once), and the embedder, checked against the index */
static int index_load_vectors(index_db *ix, gk_err *err) {
    if (ix->loaded) return 0;
    if (!ix->dim) return gk_errf(err, "%s: built without an embedder: only --mode bm25 works on it", ix->path);
    if (!ix->embedder_dir) return gk_errf(err, "%s: no embedder recorded; pass one", ix->path);
    if (!ix->em && !(ix->em = embed_load(ix->embedder_dir, NULL, err))) return gk_err_prefix(err, "%s: loading its embedder", ix->path);
    char *fp = index_meta_get(ix->db, "embedder_fingerprint");
    int bad_dim = embed_dim(ix->em) != ix->dim, bad_fp = !fp || strcmp(fp, embed_fingerprint(ix->em));
    free(fp);
    if (bad_dim) return gk_errf(err, "%s: dimension mismatch: the index holds %zu-dim vectors but %s gives %zu-dim vectors",
                                ix->path, ix->dim, ix->embedder_dir, embed_dim(ix->em));
    if (bad_fp) return gk_errf(err, "%s: built with another embedder than %s (fingerprints differ)", ix->path, ix->embedder_dir);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(ix->db, "SELECT id, vec, scale FROM chunks ORDER BY id", -1, &st, NULL) != SQLITE_OK)
        return gk_errf(err, "%s: reading vectors: %s", ix->path, sqlite3_errmsg(ix->db));
    size_t cap = ix->n ? ix->n : 1, n = 0, C = ix->dim, vb = ix->int8 ? C : C * sizeof(float);
    ix->ids = gk_malloc(cap * sizeof *ix->ids);
    if (ix->int8) { ix->x8 = gk_malloc(cap * C); ix->scale = gk_malloc(cap * sizeof *ix->scale); }
    else ix->x = gk_malloc(cap * C * sizeof *ix->x);
    int rc = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {   /* rows added since open: grow */
            cap *= 2;
            ix->ids = gk_realloc(ix->ids, cap * sizeof *ix->ids);
            if (ix->int8) { ix->x8 = gk_realloc(ix->x8, cap * C); ix->scale = gk_realloc(ix->scale, cap * sizeof *ix->scale); }
            else ix->x = gk_realloc(ix->x, cap * C * sizeof *ix->x);
        }
        if ((size_t)sqlite3_column_bytes(st, 1) != vb) { rc = gk_errf(err, "%s: chunk %lld: vector of %d bytes, want %zu", ix->path, (long long)sqlite3_column_int64(st, 0), sqlite3_column_bytes(st, 1), vb); break; }
        ix->ids[n] = sqlite3_column_int64(st, 0);
        if (ix->int8) { memcpy(ix->x8 + n * C, sqlite3_column_blob(st, 1), C); ix->scale[n] = (float)sqlite3_column_double(st, 2); }
        else memcpy(ix->x + n * C, sqlite3_column_blob(st, 1), vb);
        n++;
    }
    sqlite3_finalize(st);
    ix->n = n; ix->loaded = rc == 0;
    return rc;
}

int index_load(index_db *ix, gk_err *err) {
    if (!ix->dim) return 0;
    if (index_load_vectors(ix, err)) return -1;
    /* one throwaway forward: the first pays the GEMM library's kernel generation and the thread pool's start */
    float *v = gk_malloc(ix->dim * sizeof *v);
    const char *w = "warm up";
    int rc = embed_texts(ix->em, &w, NULL, 1, v, err);
    free(v);
    return rc;
}

typedef struct { int64_t id; double score; } index_scored;
static int index_scored_cmp(const void *a, const void *b) {
    const index_scored *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* top k by cosine: a full scan (exact), then a partial selection kept sorted */
static int index_vector_top(index_db *ix, const char *q, size_t k, index_scored **out, size_t *n_out, gk_err *err) {
    if (index_load_vectors(ix, err)) return -1;
    size_t C = ix->dim;
    float *qv = gk_malloc(C * sizeof *qv), *s = gk_malloc((ix->n ? ix->n : 1) * sizeof *s);
    if (embed_texts(ix->em, &q, NULL, 1, qv, err)) { free(qv); free(s); return gk_err_prefix(err, "the query"); }
    double ss = 0;
    for (size_t i = 0; i < C; i++) ss += (double)qv[i] * qv[i];
    for (size_t i = 0; i < C; i++) qv[i] = ss > 0 ? (float)(qv[i] / sqrt(ss)) : 0.0f;
    if (ix->int8) kern_enc_dot_rows_i8(s, ix->x8, ix->scale, qv, ix->n, C, 0);
    else kern_enc_dot_rows(s, ix->x, qv, ix->n, C, 0);
    size_t m = k < ix->n ? k : ix->n, have = 0;
    index_scored *top = gk_malloc((m + 1) * sizeof *top);
    for (size_t r = 0; r < ix->n; r++) {
        if (have == m && (m == 0 || s[r] <= top[m - 1].score)) continue;
        size_t j = have < m ? have++ : m - 1;   /* insertion into the sorted list */
        while (j > 0 && top[j - 1].score < s[r]) { top[j] = top[j - 1]; j--; }
        top[j] = (index_scored){ix->ids[r], s[r]};
    }
    free(qv); free(s);
    *out = top; *n_out = have;
    return 0;
}

/* the query as an FTS5 expression: every word quoted, OR-ed (BM25 ranks by how many and how rare) */
static char *index_fts_query(const char *q) {
    size_t n = strlen(q), o = 0;
    char *e = gk_malloc(4 * n + 16);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)q[i];
        int word = c >= 0x80 || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z');
        if (!word) { i++; continue; }
        size_t j = i;
        while (j < n) {
            unsigned char d = (unsigned char)q[j];
            if (!(d >= 0x80 || (d >= '0' && d <= '9') || ((d | 32) >= 'a' && (d | 32) <= 'z'))) break;
            j++;
        }
        if (o) { memcpy(e + o, " OR ", 4); o += 4; }
        e[o++] = '"'; memcpy(e + o, q + i, j - i); o += j - i; e[o++] = '"';
        i = j;
    }
    e[o] = 0;
    return e;
}
static int index_bm25_top(index_db *ix, const char *q, size_t k, index_scored **out, size_t *n_out, gk_err *err) {
    char *fq = index_fts_query(q);
    *out = gk_malloc((k + 1) * sizeof **out); *n_out = 0;
    if (!fq[0] || !k) { free(fq); return 0; }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(ix->db, "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts), rowid LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK) {
        free(fq); return gk_errf(err, "%s: BM25 query: %s", ix->path, sqlite3_errmsg(ix->db));
    }
    sqlite3_bind_text(st, 1, fq, -1, SQLITE_STATIC); sqlite3_bind_int64(st, 2, (int64_t)k);
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW)
        (*out)[(*n_out)++] = (index_scored){sqlite3_column_int64(st, 0), -sqlite3_column_double(st, 1)};
    int rc = r == SQLITE_DONE ? 0 : gk_errf(err, "%s: BM25 query: %s", ix->path, sqlite3_errmsg(ix->db));
    sqlite3_finalize(st); free(fq);
    return rc;
}

/* reciprocal-rank fusion: score(d) = sum over lists of 1 / (60 + rank), the constant of Cormack et al. */
static void index_rrf(const index_scored *a, size_t na, const index_scored *b, size_t nb, size_t k,
                      index_scored **out, size_t *n_out) {
    index_scored *u = gk_malloc((na + nb + 1) * sizeof *u);
    size_t n = 0;
    for (int l = 0; l < 2; l++) {
        const index_scored *v = l ? b : a; size_t nv = l ? nb : na;
        for (size_t r = 0; r < nv; r++) {
            size_t j = 0;
            while (j < n && u[j].id != v[r].id) j++;
            if (j == n) u[n++] = (index_scored){v[r].id, 0};
            u[j].score += 1.0 / (60.0 + (double)(r + 1));
        }
    }
    qsort(u, n, sizeof *u, index_scored_cmp);
    *out = u; *n_out = n < k ? n : k;
}

static int index_fill_hits(index_db *ix, const index_scored *s, size_t n, index_hit **hits, gk_err *err) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(ix->db, "SELECT c.start, c.end, c.text, d.source FROM chunks c JOIN docs d ON d.id = c.doc_id WHERE c.id = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return gk_errf(err, "%s: reading chunks: %s", ix->path, sqlite3_errmsg(ix->db));
    index_hit *h = gk_calloc(n ? n : 1, sizeof *h);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_int64(st, 1, s[i].id);
        if (sqlite3_step(st) == SQLITE_ROW) {
            h[m] = (index_hit){s[i].id, s[i].score, gk_strdup((const char *)sqlite3_column_text(st, 3)),
                               (size_t)sqlite3_column_int64(st, 0), (size_t)sqlite3_column_int64(st, 1),
                               gk_strdup((const char *)sqlite3_column_text(st, 2))};
            m++;
        }
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    *hits = h;
    return (int)m;
}

int index_query(index_db *ix, const char *q, size_t k, index_mode mode, index_hit **hits, size_t *n_hits, gk_err *err) {
    *hits = NULL; *n_hits = 0;
    size_t pool = k * 4 > 50 ? k * 4 : 50;   /* each list's depth before fusion */
    index_scored *a = NULL, *b = NULL, *u = NULL; size_t na = 0, nb = 0, nu = 0;
    int rc = 0;
    if (mode == INDEX_MODE_VECTOR) rc = index_vector_top(ix, q, k, &u, &nu, err);
    else if (mode == INDEX_MODE_BM25) rc = index_bm25_top(ix, q, k, &u, &nu, err);
    else {
        rc = index_vector_top(ix, q, pool, &a, &na, err);
        if (!rc) rc = index_bm25_top(ix, q, pool, &b, &nb, err);
        if (!rc) index_rrf(a, na, b, nb, k, &u, &nu);
    }
    if (!rc) {
        int m = index_fill_hits(ix, u, nu, hits, err);
        if (m < 0) rc = -1; else *n_hits = (size_t)m;
    }
    free(a); free(b); free(u);
    return rc;
}
void index_hits_free(index_hit *h, size_t n) {
    for (size_t i = 0; i < n && h; i++) { free(h[i].source); free(h[i].text); }
    free(h);
}

char *index_retrieve_context(index_db *ix, const char *question, size_t k, size_t max_bytes, gk_err *err) {
    index_hit *h; size_t n;
    /* hybrid where the index has vectors, BM25 alone where it was built without an embedder */
    if (index_query(ix, question, k, ix->dim ? INDEX_MODE_HYBRID : INDEX_MODE_BM25, &h, &n, err)) return NULL;
    size_t cap = 256, len = 0;
    char *out = gk_malloc(cap);
    out[0] = 0;
    for (size_t i = 0; i < n; i++) {
        size_t need = strlen(h[i].source) + strlen(h[i].text) + 64;
        if (max_bytes && len + need > max_bytes) break;   /* whole chunks only, most relevant first */
        while (len + need + 1 > cap) { cap *= 2; out = gk_realloc(out, cap); }
        len += (size_t)snprintf(out + len, cap - len, "[%zu] (%s) %s\n", i + 1, h[i].source, h[i].text);
    }
    index_hits_free(h, n);
    return out;
}

/* the budget is in the chat model's own tokens: chunks are dropped from the least relevant end until the
 * context fits */
char *index_augment_question(index_db *ix, const tok_tokenizer *tok, const char *question, size_t k,
                             size_t budget_tokens, gk_err *err) {
    for (size_t kk = k; kk > 0; kk--) {
        char *ctx = index_retrieve_context(ix, question, kk, 0, err);
        if (!ctx) return NULL;
        tok_ids ids = {0};
        tok_encode(tok, ctx, strlen(ctx), 0, &ids);
        size_t n = ids.n;
        tok_ids_free(&ids);
        if (ctx[0] && n <= budget_tokens) {
            size_t len = strlen(ctx) + strlen(question) + 32;
            char *out = gk_malloc(len);
            snprintf(out, len, "Sources:\n%s\nQuestion: %s", ctx, question);
            free(ctx);
            return out;
        }
        free(ctx);
        if (!n) break;   /* nothing matched at all */
    }
    return gk_strdup(question);
}
