/* build.c: creating and updating an index (index.h): schema, meta checks, the incremental per-document
 * transaction. Reading and chunking are in docs.c; search in search.c. */
#include "index/index_internal.h"
#include <dirent.h>
#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define INDEX_FORMAT "gptkit-index-1"

void index_build_opts_default(index_build_opts *o) { o->chunk_tokens = 128; o->overlap_tokens = 32; o->int8 = 0; }

static const char *const SCHEMA =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS docs(id INTEGER PRIMARY KEY, source TEXT UNIQUE NOT NULL, hash TEXT NOT NULL,"
    " bytes INTEGER NOT NULL, n_chunks INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS chunks(id INTEGER PRIMARY KEY, doc_id INTEGER NOT NULL REFERENCES docs(id),"
    " seq INTEGER NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL, n_tokens INTEGER NOT NULL,"
    " text TEXT NOT NULL, vec BLOB NOT NULL, scale REAL NOT NULL);"
    "CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);"
    "CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(text, tokenize = 'unicode61 remove_diacritics 2');";

/* runs sql; on failure fills err with what and the database's message */
int index_exec(sqlite3 *db, const char *sql, const char *what, gk_err *err) {
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
    gk_errf(err, "%s: %s: %s", sqlite3_db_filename(db, "main"), what, msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return -1;
}
char *index_meta_get(sqlite3 *db, const char *key) {
    sqlite3_stmt *st; char *v = NULL;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?", -1, &st, NULL) != SQLITE_OK) return NULL;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) v = gk_strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return v;
}
static void index_meta_set(sqlite3 *db, const char *key, const char *value) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", -1, &st, NULL) != SQLITE_OK) return;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC); sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    sqlite3_step(st); sqlite3_finalize(st);
}

/* Opens (creating) the database in WAL mode. A file that is not SQLite, or a SQLite file without our format
 * tag, is refused rather than modified. */
sqlite3 *index_db_open(const char *path, int create, gk_err *err) {
    sqlite3 *db = NULL;
    int flags = create ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READWRITE;
    if (!create && !gk_file_exists(path)) { gk_errf(err, "%s: no such index (build one with gptkit index build)", path); return NULL; }
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        gk_errf(err, "%s: cannot open: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db); return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    /* WAL: a killed writer leaves the last committed state; readers never see a half-written document */
    if (index_exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;", "not an SQLite database?", err)) {
        sqlite3_close(db); return NULL;
    }
    sqlite3_stmt *st;
    int has_meta = sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE name = 'meta'", -1, &st, NULL) == SQLITE_OK &&
                   sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    int n_tables = 0;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n_tables = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    char *fmt = has_meta ? index_meta_get(db, "format") : NULL;
    if ((has_meta && (!fmt || strcmp(fmt, INDEX_FORMAT))) || (!has_meta && n_tables > 0)) {
        gk_errf(err, "%s: an SQLite database but not a gptkit index (format %s)", path, fmt ? fmt : "unknown");
        free(fmt); sqlite3_close(db); return NULL;
    }
    free(fmt);
    if (!has_meta && !create) { gk_errf(err, "%s: not a gptkit index", path); sqlite3_close(db); return NULL; }
    return db;
}

/* The settings an index is built with live in meta; a later build must agree with them. */
static int index_check_meta(sqlite3 *db, const char *path, embed_model *em, const char *em_dir, index_build_opts *o, gk_err *err) {
    char *fmt = index_meta_get(db, "format");
    char dim[32], ct[32], ov[32];
    const char *efp = em ? embed_fingerprint(em) : "none";
    snprintf(dim, sizeof dim, "%zu", em ? embed_dim(em) : (size_t)0);
    if (!em) em_dir = "(none: BM25 only)";
    if (!fmt) {   /* new index: record the settings */
        char *rp = em ? realpath(em_dir, NULL) : NULL;
        snprintf(ct, sizeof ct, "%zu", o->chunk_tokens); snprintf(ov, sizeof ov, "%zu", o->overlap_tokens);
        index_meta_set(db, "format", INDEX_FORMAT); index_meta_set(db, "dim", dim);
        index_meta_set(db, "embedder", em ? (rp ? rp : em_dir) : ""); index_meta_set(db, "embedder_fingerprint", efp);
        index_meta_set(db, "embedder_desc", em ? embed_describe(em) : "none (BM25 only; chunks counted in words)");
        index_meta_set(db, "vectors", o->int8 ? "int8" : "f32");
        index_meta_set(db, "chunk_tokens", ct); index_meta_set(db, "overlap_tokens", ov);
        free(rp);
        return 0;
    }
    free(fmt);
    char *d = index_meta_get(db, "dim"), *fp = index_meta_get(db, "embedder_fingerprint"), *ed = index_meta_get(db, "embedder");
    char *vf = index_meta_get(db, "vectors"), *c = index_meta_get(db, "chunk_tokens"), *v = index_meta_get(db, "overlap_tokens");
    int rc = 0;
    if (!d || !fp || !vf || !c || !v) rc = gk_errf(err, "%s: the index's meta table is incomplete", path);
    else if (strcmp(d, dim) && (!strcmp(d, "0") || !em))
        rc = gk_errf(err, "%s: the index was built %s, so it cannot be updated %s", path,
                     !strcmp(d, "0") ? "without an embedder (BM25 only)" : "with an embedder", em ? "with one" : "without one");
    else if (strcmp(d, dim))
        rc = gk_errf(err, "%s: dimension mismatch: the index holds %s-dim vectors (embedder %s) but %s gives %s-dim vectors",
                     path, d, ed ? ed : "?", em_dir, dim);
    else if (strcmp(fp, efp))
        rc = gk_errf(err, "%s: built with another embedder (%s, fingerprint %s); %s has fingerprint %s: vectors would not be comparable",
                     path, ed && ed[0] ? ed : "none: BM25 only", fp, em_dir, efp);
    else {
        /* stored chunk settings win; flags that disagree are refused only when given explicitly (o->int8 etc. are
         * the stored ones from here on) */
        o->int8 = !strcmp(vf, "int8");
        o->chunk_tokens = (size_t)atol(c); o->overlap_tokens = (size_t)atol(v);
    }
    free(d); free(fp); free(ed); free(vf); free(c); free(v);
    return rc;
}

/* ---------------------------------------------------------------- inputs */
static int index_ends(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}
static int index_read_path(const char *path, int top, index_docs *docs, gk_err *err);
static int index_read_dir(const char *path, index_docs *docs, gk_err *err) {
    struct dirent **ents = NULL;
    int n = scandir(path, &ents, NULL, alphasort), rc = 0;
    if (n < 0) return gk_errf(err, "%s: cannot read the directory", path);
    for (int i = 0; i < n; i++) {
        const char *nm = ents[i]->d_name;
        if (!rc && nm[0] != '.') {
            char *p = gk_path_join(path, nm);
            rc = index_read_path(p, 0, docs, err);
            free(p);
        }
        free(ents[i]);
    }
    free(ents);
    return rc;
}
static int index_read_path(const char *path, int top, index_docs *docs, gk_err *err) {
    struct stat sb;
    if (stat(path, &sb)) return gk_errf(err, "%s: cannot read (no such file?)", path);
    if (S_ISDIR(sb.st_mode)) return index_read_dir(path, docs, err);
    int jsonl = index_ends(path, ".jsonl");
    /* inside a directory only text-like files are taken; a file named on the command line is always read */
    if (!top && !jsonl && !index_ends(path, ".txt") && !index_ends(path, ".md") && !index_ends(path, ".markdown")) return 0;
    char *data; size_t n;
    if (gk_read_file(path, &data, &n, err)) return -1;
    int rc = index_parse_buffer(path, data, n, jsonl, docs, err);
    free(data);
    return rc;
}

/* ---------------------------------------------------------------- building */
typedef struct {
    sqlite3 *db; embed_model *em; const index_build_opts *o;
    sqlite3_stmt *find, *ins_doc, *upd_doc, *del_fts, *del_chunks, *ins_chunk, *ins_fts;
} index_writer;

static int index_prepare(index_writer *w, gk_err *err) {
    struct { sqlite3_stmt **st; const char *sql; } q[] = {
        {&w->find, "SELECT id, hash FROM docs WHERE source = ?"},
        {&w->ins_doc, "INSERT INTO docs(source, hash, bytes, n_chunks) VALUES(?, ?, ?, ?)"},
        {&w->upd_doc, "UPDATE docs SET hash = ?, bytes = ?, n_chunks = ? WHERE id = ?"},
        {&w->del_fts, "DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE doc_id = ?)"},
        {&w->del_chunks, "DELETE FROM chunks WHERE doc_id = ?"},
        {&w->ins_chunk, "INSERT INTO chunks(doc_id, seq, start, end, n_tokens, text, vec, scale) VALUES(?, ?, ?, ?, ?, ?, ?, ?)"},
        {&w->ins_fts, "INSERT INTO chunks_fts(rowid, text) VALUES(?, ?)"},
    };
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
        if (sqlite3_prepare_v2(w->db, q[i].sql, -1, q[i].st, NULL) != SQLITE_OK)
            return gk_errf(err, "%s: preparing a statement: %s", sqlite3_db_filename(w->db, "main"), sqlite3_errmsg(w->db));
    return 0;
}
static void index_finalize(index_writer *w) {
    sqlite3_finalize(w->find); sqlite3_finalize(w->ins_doc); sqlite3_finalize(w->upd_doc); sqlite3_finalize(w->del_fts);
    sqlite3_finalize(w->del_chunks); sqlite3_finalize(w->ins_chunk); sqlite3_finalize(w->ins_fts);
}
static int index_step(index_writer *w, sqlite3_stmt *st, gk_err *err) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) return 0;
    return gk_errf(err, "%s: writing: %s", sqlite3_db_filename(w->db, "main"), sqlite3_errmsg(w->db));
}

/* A document's chunks, embedded, waiting for its transaction. */
typedef struct { const index_doc *d; int64_t old_id; index_chunk *ch; size_t n_ch; size_t first_vec; } index_pending;

/* writes one document (its old chunks replaced) inside the caller's transaction */
static int index_write_doc(index_writer *w, const index_pending *p, const float *vecs, gk_err *err) {
    size_t C = w->em ? embed_dim(w->em) : 0;
    char hash[20];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)index_hash(p->d->text, p->d->len));
    int64_t id = p->old_id;
    if (id > 0) {
        sqlite3_bind_int64(w->del_fts, 1, id); sqlite3_bind_int64(w->del_chunks, 1, id);
        if (index_step(w, w->del_fts, err) || index_step(w, w->del_chunks, err)) return -1;
        sqlite3_bind_text(w->upd_doc, 1, hash, -1, SQLITE_TRANSIENT); sqlite3_bind_int64(w->upd_doc, 2, (int64_t)p->d->len);
        sqlite3_bind_int64(w->upd_doc, 3, (int64_t)p->n_ch); sqlite3_bind_int64(w->upd_doc, 4, id);
        if (index_step(w, w->upd_doc, err)) return -1;
    } else {
        sqlite3_bind_text(w->ins_doc, 1, p->d->source, -1, SQLITE_STATIC); sqlite3_bind_text(w->ins_doc, 2, hash, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(w->ins_doc, 3, (int64_t)p->d->len); sqlite3_bind_int64(w->ins_doc, 4, (int64_t)p->n_ch);
        if (index_step(w, w->ins_doc, err)) return -1;
        id = sqlite3_last_insert_rowid(w->db);
    }
    int8_t *q8 = gk_malloc(C + 1);
    int rc = 0;
    for (size_t k = 0; k < p->n_ch && !rc; k++) {
        const index_chunk *c = &p->ch[k];
        const float *v = C ? vecs + (p->first_vec + k) * C : NULL;
        sqlite3_stmt *s = w->ins_chunk;
        sqlite3_bind_int64(s, 1, id); sqlite3_bind_int64(s, 2, (int64_t)k);
        sqlite3_bind_int64(s, 3, (int64_t)c->a); sqlite3_bind_int64(s, 4, (int64_t)c->b);
        sqlite3_bind_int64(s, 5, (int64_t)(c->t1 - c->t0));
        sqlite3_bind_text(s, 6, p->d->text + c->a, (int)(c->b - c->a), SQLITE_STATIC);
        if (!C) {   /* BM25 only: an empty vector */
            sqlite3_bind_zeroblob(s, 7, 0); sqlite3_bind_double(s, 8, 1.0);
        } else if (w->o->int8) {
            /* symmetric per-chunk quantisation: v ~ scale * q, q in [-127, 127] */
            float mx = 0;
            for (size_t i = 0; i < C; i++) mx = fmaxf(mx, fabsf(v[i]));
            float scale = mx > 0 ? mx / 127.0f : 1.0f;
            for (size_t i = 0; i < C; i++) q8[i] = (int8_t)lrintf(v[i] / scale);
            sqlite3_bind_blob(s, 7, q8, (int)C, SQLITE_STATIC); sqlite3_bind_double(s, 8, scale);
        } else {
            sqlite3_bind_blob(s, 7, v, (int)(C * sizeof(float)), SQLITE_STATIC); sqlite3_bind_double(s, 8, 1.0);
        }
        rc = index_step(w, s, err);
        if (!rc) {
            sqlite3_bind_int64(w->ins_fts, 1, sqlite3_last_insert_rowid(w->db));
            sqlite3_bind_text(w->ins_fts, 2, p->d->text + c->a, (int)(c->b - c->a), SQLITE_STATIC);
            rc = index_step(w, w->ins_fts, err);
        }
    }
    free(q8);
    return rc;
}

/* the pending documents in one transaction */
static int index_commit(index_writer *w, index_pending *p, size_t np, const float *vecs, gk_err *err) {
    int rc = index_exec(w->db, "BEGIN IMMEDIATE", "starting a transaction", err);
    for (size_t i = 0; i < np && !rc; i++) rc = index_write_doc(w, &p[i], vecs, err);
    if (!rc) rc = index_exec(w->db, "COMMIT", "committing", err);
    else { gk_err e2; index_exec(w->db, "ROLLBACK", "rolling back", &e2); }
    return rc;
}

/* Without an embedder there is no WordPiece vocabulary: chunks are measured in whitespace-separated words. */
static void index_words(const char *s, size_t n, wp_ids *out) {
    wp_ids_free(out);
    for (size_t i = 0; i < n;) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
        size_t j = i;
        while (j < n && !(s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r')) j++;
        if (j > i) {
            if (out->n == out->cap) {
                out->cap = out->cap ? 2 * out->cap : 64;
                out->ids = gk_realloc(out->ids, out->cap * sizeof *out->ids);
                out->start = gk_realloc(out->start, out->cap * sizeof *out->start);
                out->end = gk_realloc(out->end, out->cap * sizeof *out->end);
            }
            out->ids[out->n] = 0; out->start[out->n] = (uint32_t)i; out->end[out->n] = (uint32_t)j; out->n++;
        }
        i = j;
    }
}

/* embeds the pending documents' chunks together (one batched pass) and commits them in one transaction */
static int index_flush(index_writer *w, index_pending *p, size_t np, wp_ids *toks, gk_err *err) {
    size_t total = 0, C = w->em ? embed_dim(w->em) : 0;
    for (size_t i = 0; i < np; i++) { p[i].first_vec = total; total += p[i].n_ch; }
    if (!w->em) return index_commit(w, p, np, NULL, err);   /* BM25 only: no vectors */
    int32_t **ids = gk_malloc((total ? total : 1) * sizeof *ids);
    size_t *nid = gk_malloc((total ? total : 1) * sizeof *nid);
    const wp_tokenizer *tk = embed_tokenizer(w->em);
    for (size_t i = 0, r = 0; i < np; i++)
        for (size_t k = 0; k < p[i].n_ch; k++, r++) {
            const index_chunk *c = &p[i].ch[k];
            size_t n = c->t1 - c->t0;
            ids[r] = gk_malloc((n + 2) * sizeof **ids);
            ids[r][0] = wp_cls_id(tk);
            memcpy(ids[r] + 1, toks[i].ids + c->t0, n * sizeof **ids);
            ids[r][n + 1] = wp_sep_id(tk);
            nid[r] = n + 2;
        }
    float *vecs = gk_malloc((total ? total : 1) * C * sizeof *vecs);
    embed_ids(w->em, (const int32_t *const *)ids, nid, total, vecs);
    /* stored L2-normalised: search is a dot product = cosine, whatever the model's own normalisation */
    for (size_t r = 0; r < total; r++) {
        double ss = 0;
        for (size_t i = 0; i < C; i++) ss += (double)vecs[r * C + i] * vecs[r * C + i];
        float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (size_t i = 0; i < C; i++) vecs[r * C + i] *= inv;
    }
    int rc = index_commit(w, p, np, vecs, err);
    for (size_t r = 0; r < total; r++) free(ids[r]);
    free(ids); free(nid); free(vecs);
    return rc;
}

#define INDEX_FLUSH_CHUNKS 256

static void index_progress(const index_build_stats *st, size_t done, size_t total, double t0, double *last) {
    double now = gk_now();
    if (!gk_verbose || now - *last < 2.0) return;
    *last = now;
    char eb[32];
    double rate = done / (now - t0 + 1e-9);
    gk_log("index: %zu/%zu documents, %zu chunks embedded, %.1f docs/s, ETA %s\n", done, total, st->chunks_added, rate,
           gk_fmt_duration(rate > 0 ? (double)(total - done) / rate : -1, eb, sizeof eb));
}

static int index_build_docs(index_writer *w, const index_docs *docs, index_build_stats *st, gk_err *err) {
    size_t maxp = docs->n ? docs->n : 1, np = 0, pend_chunks = 0;
    index_pending *p = gk_calloc(maxp, sizeof *p);
    wp_ids *toks = gk_calloc(maxp, sizeof *toks);
    double t0 = gk_now(), last = t0;
    int rc = 0;
    for (size_t i = 0; i < docs->n && !rc; i++) {
        const index_doc *d = &docs->v[i];
        char hash[20];
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)index_hash(d->text, d->len));
        int64_t old = 0; int same = 0;
        sqlite3_bind_text(w->find, 1, d->source, -1, SQLITE_STATIC);
        if (sqlite3_step(w->find) == SQLITE_ROW) {
            old = sqlite3_column_int64(w->find, 0);
            same = !strcmp((const char *)sqlite3_column_text(w->find, 1), hash);
        }
        sqlite3_reset(w->find);
        if (same) { st->docs_unchanged++; continue; }
        /* a source named twice in one build: the first one counts */
        int dup = 0;
        for (size_t k = 0; k < np && !dup; k++) dup = !strcmp(p[k].d->source, d->source);
        if (dup) continue;
        if (!w->em) index_words(d->text, d->len, &toks[np]);
        else if (wp_encode(embed_tokenizer(w->em), d->text, d->len, 0, 0, &toks[np], err)) { rc = gk_err_prefix(err, "%s", d->source); break; }
        p[np] = (index_pending){d, old, NULL, 0, 0};
        index_chunk_doc(d->text, d->len, &toks[np], w->o->chunk_tokens, w->o->overlap_tokens, &p[np].ch, &p[np].n_ch);
        pend_chunks += p[np].n_ch;
        if (old) st->docs_updated++; else st->docs_added++;
        st->chunks_added += p[np].n_ch;
        np++;
        if (pend_chunks >= INDEX_FLUSH_CHUNKS || i + 1 == docs->n) {
            rc = index_flush(w, p, np, toks, err);
            if (!rc && gk_verbose >= 2) gk_log("index: committed %zu documents (%zu chunks) up to %s\n", np, pend_chunks, d->source);
            for (size_t k = 0; k < np; k++) { free(p[k].ch); wp_ids_free(&toks[k]); }
            np = 0; pend_chunks = 0;
        }
        index_progress(st, i + 1, docs->n, t0, &last);
    }
    if (!rc && np) rc = index_flush(w, p, np, toks, err);
    for (size_t k = 0; k < np; k++) { free(p[k].ch); wp_ids_free(&toks[k]); }
    free(p); free(toks);
    return rc;
}

int index_build(const char *db_path, embed_model *em, const char *const *paths, size_t n_paths,
                const index_build_opts *o_in, index_build_stats *st, gk_err *err) {
    index_build_opts o = *o_in;
    index_build_stats dummy;
    if (!st) st = &dummy;
    memset(st, 0, sizeof *st);
    double t0 = gk_now();
    size_t cap = em ? embed_max_tokens(em) - 2 : (size_t)1 << 20;
    if (o.chunk_tokens < 8) return gk_errf(err, "chunk size %zu tokens is too small (8 at least)", o.chunk_tokens);
    if (o.chunk_tokens > cap) o.chunk_tokens = cap;   /* the embedder would truncate anything longer */
    /* a chunk size capped by a short embedder takes the overlap down with it (a quarter of a chunk) */
    if (o.overlap_tokens >= o.chunk_tokens) o.overlap_tokens = o.chunk_tokens / 4;
    /* every input read and checked before the index is touched: a bad file changes nothing */
    index_docs docs = {0};
    for (size_t i = 0; i < n_paths; i++)
        if (index_read_path(paths[i], 1, &docs, err)) { index_docs_free(&docs); return -1; }
    if (!docs.n) { index_docs_free(&docs); return gk_errf(err, "no documents found in the paths given (.txt, .md, .jsonl)"); }
    sqlite3 *db = index_db_open(db_path, 1, err);
    if (!db) { index_docs_free(&docs); return -1; }
    index_writer w;
    memset(&w, 0, sizeof w);
    w.db = db; w.em = em; w.o = &o;
    int rc = index_exec(db, SCHEMA, "creating the schema", err);
    if (!rc) rc = index_exec(db, "BEGIN IMMEDIATE", "starting a transaction", err);
    if (!rc) {
        rc = index_check_meta(db, db_path, em, em ? embed_path(em) : NULL, &o, err);
        gk_err e2;
        if (!rc) rc = index_exec(db, "COMMIT", "committing", err);
        else index_exec(db, "ROLLBACK", "rolling back", &e2);
    }
    if (!rc) rc = index_prepare(&w, err);
    if (!rc) rc = index_build_docs(&w, &docs, st, err);
    index_finalize(&w);
    if (sqlite3_close(db) != SQLITE_OK && !rc) rc = gk_errf(err, "%s: closing the database failed", db_path);
    index_docs_free(&docs);
    st->seconds = gk_now() - t0;
    return rc;
}
