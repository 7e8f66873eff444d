/* index_internal.h: the pieces of src/index shared between its files (and the fuzz harness). */
#ifndef GK_INDEX_INTERNAL_H
#define GK_INDEX_INTERNAL_H
#include "index/index.h"
#include "tok/wordpiece.h"

/* One document to index: its source name and text (both malloc'd). */
typedef struct { char *source; char *text; size_t len; } index_doc;
typedef struct { index_doc *v; size_t n, cap; } index_docs;
void index_docs_free(index_docs *d);

/* Parses one input file's bytes into documents: jsonl = 1 for one {"text": ...} object per line, else the
 * whole buffer is one document. Checks: no NUL bytes (binary), valid UTF-8, not empty or blank. Errors name
 * name:line. Appends to out. */
int index_parse_buffer(const char *name, const char *data, size_t n, int jsonl, index_docs *out, gk_err *err);

/* A chunk: tokens [t0, t1) of the document's WordPiece tokens, bytes [a, b) of its text. */
typedef struct { size_t t0, t1, a, b; } index_chunk;
/* Cuts a tokenised document (ids with byte offsets, no specials) into chunks of at most max_tok tokens:
 * paragraphs (split at blank lines) are packed whole while they fit; a paragraph longer than max_tok is cut
 * into windows that overlap by overlap tokens; a new chunk starts with the previous chunk's trailing
 * paragraphs when they fit within overlap tokens. *out is malloc'd. */
void index_chunk_doc(const char *text, size_t len, const wp_ids *tok, size_t max_tok, size_t overlap,
                     index_chunk **out, size_t *n_out);

uint64_t index_hash(const char *s, size_t n);   /* FNV-1a 64 */

/* build.c's database helpers, shared with search.c */
typedef struct sqlite3 sqlite3;
sqlite3 *index_db_open(const char *path, int create, gk_err *err);   /* WAL; refuses a non-index database */
int index_exec(sqlite3 *db, const char *sql, const char *what, gk_err *err);
char *index_meta_get(sqlite3 *db, const char *key);                  /* malloc'd, NULL if absent */
#endif
