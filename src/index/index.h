/* index: a retrieval index in one SQLite file — documents cut into chunks, their BM25 full-text index (FTS5)
 * and their sentence embeddings (src/embed) — and search over it: exact nearest neighbours by dot product
 * (cosine: vectors are stored L2-normalised), BM25, and the two fused by reciprocal rank (RRF).
 *
 * Schema (docs/retrieval.md has the full description):
 *   meta(key, value)          format version, embedder fingerprint / path / dim, vector format, chunk sizes
 *   docs(id, source, hash, bytes, n_chunks)          source unique; hash = FNV-1a 64 of the text
 *   chunks(id, doc_id, seq, start, end, n_tokens, text, vec, scale)   [start, end) byte offsets in the source
 *   chunks_fts(text)          FTS5, rowid = chunks.id (unicode61, diacritics removed)
 * Each document is replaced in one transaction (WAL journal): a build killed at any moment leaves the index
 * with every document committed before it, readable. A document whose hash is unchanged is skipped, so
 * re-running a build embeds only what changed. */
#ifndef GK_INDEX_H
#define GK_INDEX_H
#include "core/core.h"
#include "embed/embed.h"
#include "tok/tok.h"
#include <stdint.h>

typedef struct {
    size_t chunk_tokens;     /* WordPiece tokens per chunk (default 128; at most the embedder's max - 2) */
    size_t overlap_tokens;   /* tokens shared by neighbouring chunks (default 32) */
    int int8;                /* store vectors as int8 with a per-chunk scale instead of fp32 */
} index_build_opts;
void index_build_opts_default(index_build_opts *o);

typedef struct { size_t docs_added, docs_updated, docs_unchanged, chunks_added; double seconds; } index_build_stats;

/* Indexes the documents at paths (files: .txt/.md/other text = one document each, .jsonl = one document per
 * line {"text": ..., optional "id"/"title"}; directories: their .txt, .md, .markdown and .jsonl files,
 * recursively) into db_path (created if missing), embedding with em (NULL: a BM25-only index, chunk sizes
 * counted in whitespace-separated words). Every input is read and checked first
 * (unreadable, binary, invalid UTF-8, empty: an error naming the file and line), so a bad input changes
 * nothing. An existing index built with another embedder (dimension or fingerprint) or other chunk settings
 * is refused, naming both. Returns 0 or -1. */
int index_build(const char *db_path, embed_model *em, const char *const *paths, size_t n_paths,
                const index_build_opts *o, index_build_stats *st, gk_err *err);

typedef struct index_db index_db;
typedef enum { INDEX_MODE_HYBRID = 0, INDEX_MODE_VECTOR, INDEX_MODE_BM25 } index_mode;
int index_mode_parse(const char *s, index_mode *out);   /* "hybrid" | "vector" | "bm25" */

typedef struct {
    int64_t chunk_id;
    double score;            /* vector: cosine; bm25: -bm25() (higher is better); hybrid: RRF sum */
    char *source;            /* the document's source (path, or path:line for JSONL) */
    size_t start, end;       /* byte offsets in the source text */
    char *text;
} index_hit;

/* Opens an index for queries. embedder_dir NULL: the embedder recorded at build time (loaded on the first
 * vector or hybrid query). */
index_db *index_open(const char *db_path, const char *embedder_dir, gk_err *err);
void index_close(index_db *ix);
/* Loads the embedder and every vector now (otherwise the first vector or hybrid query does): a server or a
 * benchmark separates that one-time cost from query latency. No-op for a BM25-only index. */
int index_load(index_db *ix, gk_err *err);
size_t index_n_chunks(const index_db *ix);
int index_has_vectors(const index_db *ix);   /* 0: built without an embedder (BM25 only) */
/* The top k chunks for query q. *hits is malloc'd (free with index_hits_free). */
int index_query(index_db *ix, const char *q, size_t k, index_mode mode, index_hit **hits, size_t *n_hits, gk_err *err);
void index_hits_free(index_hit *h, size_t n);

/* Retrieval for a prompt (chat --retrieve, and the tool loop's `retrieve` tool): the top k hybrid hits as
 * text, each "[n] (source) chunk text", most relevant first, cut to at most max_bytes (whole chunks; 0:
 * no limit). Returns a malloc'd string ("" when nothing matched), or NULL with err. */
char *index_retrieve_context(index_db *ix, const char *question, size_t k, size_t max_bytes, gk_err *err);

/* Retrieval recall@k over a JSONL question file ({"question", "answer", "doc"?} per line, as
 * rag_docs_write makes): the share of questions whose top-k hits include a chunk that holds the answer (and
 * comes from document doc, source "FILE#doc", when given), for each of the nk cut-offs ks. Returns 0, or -1
 * naming file:line. */
int index_eval_recall(index_db *ix, const char *questions_path, const size_t *ks, size_t nk, index_mode mode,
                      double *recall, size_t *n_questions, gk_err *err);

/* The text of a user's turn with retrieved sources before it (chat --retrieve; solve and the server can
 * call it the same way): "Sources:\n[1] (source) chunk\n...\n\nQuestion: QUESTION", with as many of the
 * top k hybrid hits (most relevant first, whole chunks) as fit in budget_tokens tokens of tok, the chat
 * model's tokenizer; just the question when none fits or nothing matched. malloc'd; NULL with err. */
char *index_augment_question(index_db *ix, const tok_tokenizer *tok, const char *question, size_t k,
                             size_t budget_tokens, gk_err *err);
/* The `retrieve` tool ({"query": TEXT} -> the top k passages with sources, as index_retrieve_context, cut to
 * a tool result's size) registered in r for the tool loop (`--tools retrieve` with `--retrieve INDEX.db`). ix may
 * be NULL to check a tool list before the index is opened (a call then answers an error). */
struct tool_registry;
int index_tool_register(struct tool_registry *r, index_db *ix, size_t k, gk_err *err);
#endif
