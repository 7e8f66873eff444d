/* test_index.c: the retrieval index. Chunking rules (sizes, coverage, paragraphs kept whole, overlap), the
 * document parser's refusals (binary, invalid UTF-8, empty, bad JSONL) with file:line, and a build + query
 * round trip on the tiny fixture embedder: every mode finds the chunk holding a unique word, an unchanged
 * rebuild embeds nothing, a changed document is replaced, a bad input or another embedder changes nothing,
 * int8 vectors rank like fp32. The SIGKILL-mid-build check is in tests/cli/rag.sh. */
#include "core/core.h"
#include "data/data.h"
#include "embed/embed.h"
#include "index/index.h"
#include "tools/tools.h"
#include "index/index_internal.h"
#include "testlib.h"
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

static wp_tokenizer *fixture_tok(void) {
    gk_err err;
    wp_tokenizer *t = wp_load_dir(tl_path("tests/fixtures/embed/st_mean"), &err);
    if (!t) { printf("  %s\n", err.msg); exit(1); }
    return t;
}

static void test_chunking(void) {
    wp_tokenizer *t = fixture_tok();
    /* paragraphs of 5, 3, 6, 30 and 4 words */
    const char *text = "the river city is old\n\nthe lake is\n  \nthe north tower by the bay\n\n"
                       "one two three four five six seven eight nine ten one two three four five six seven eight nine ten "
                       "one two three four five six seven eight nine ten\n\nthe end of it";
    wp_ids tok = {0}; gk_err err;
    CHECK(wp_encode(t, text, strlen(text), 0, 0, &tok, &err) == 0, "%s", err.msg);
    index_chunk *c; size_t n;
    index_chunk_doc(text, strlen(text), &tok, 12, 4, &c, &n);
    CHECK(n >= 4, "only %zu chunks", n);
    size_t covered_to = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(c[i].t1 - c[i].t0 <= 12, "chunk %zu has %zu tokens", i, c[i].t1 - c[i].t0);
        CHECK(c[i].t0 <= covered_to, "gap before chunk %zu", i);   /* every token in some chunk */
        if (c[i].t1 > covered_to) covered_to = c[i].t1;
        CHECK(c[i].a == tok.start[c[i].t0] && c[i].b == tok.end[c[i].t1 - 1], "chunk %zu byte range", i);
    }
    CHECK(covered_to == tok.n, "tokens %zu..%zu not in any chunk", covered_to, tok.n);
    /* the first two paragraphs (5 + 3 tokens) fit together: one chunk, ending at the blank line */
    CHECK(n && c[0].t0 == 0 && c[0].t1 == 8, "first chunk [%zu, %zu) should be the two short paragraphs", c[0].t0, c[0].t1);
    /* the long paragraph is cut into windows that overlap by 4 tokens */
    int saw_overlap = 0;
    for (size_t i = 1; i < n; i++) if (c[i].t0 + 4 == c[i - 1].t1) saw_overlap = 1;
    CHECK(saw_overlap, "no window overlaps its neighbour by 4 tokens");
    /* the short paragraph (3 tokens <= overlap 4) is repeated at the start of the next chunk */
    CHECK(n > 1 && c[1].t0 == 5 && c[1].t1 == 14, "second chunk [%zu, %zu), want [5, 14) (the 3-token paragraph repeated)", c[1].t0, c[1].t1);
    free(c); wp_ids_free(&tok); wp_free(t);
}

static void test_parse_refusals(void) {
    index_docs d = {0}; gk_err err;
    CHECK(index_parse_buffer("a.txt", "ab\0cd", 5, 0, &d, &err) == -1 && strstr(err.msg, "a.txt") && strstr(err.msg, "NUL"), "binary: %s", err.msg);
    CHECK(index_parse_buffer("b.txt", "ab\xff", 3, 0, &d, &err) == -1 && strstr(err.msg, "b.txt: invalid UTF-8 at byte 2"), "utf8: %s", err.msg);
    CHECK(index_parse_buffer("c.md", " \n\t\n", 4, 0, &d, &err) == -1 && strstr(err.msg, "c.md: empty"), "empty: %s", err.msg);
    const char *j = "{\"text\": \"ok\"}\n\n{\"txt\": 1}\n";
    CHECK(index_parse_buffer("d.jsonl", j, strlen(j), 1, &d, &err) == -1 && strstr(err.msg, "d.jsonl:3: text"), "jsonl field: %s", err.msg);
    j = "{\"text\": \"ok\"}\nnot json\n";
    CHECK(index_parse_buffer("e.jsonl", j, strlen(j), 1, &d, &err) == -1 && strstr(err.msg, "e.jsonl:2: not a JSON object"), "jsonl: %s", err.msg);
    j = "{\"text\": \"   \"}\n";
    CHECK(index_parse_buffer("f.jsonl", j, strlen(j), 1, &d, &err) == -1 && strstr(err.msg, "f.jsonl:1") && strstr(err.msg, "empty"), "jsonl empty: %s", err.msg);
    index_docs_free(&d);
    j = "{\"text\": \"first\", \"id\": \"x\"}\n{\"text\": \"second\", \"id\": 7}\n{\"text\": \"third\"}\n";
    CHECK(index_parse_buffer("g.jsonl", j, strlen(j), 1, &d, &err) == 0 && d.n == 3, "jsonl ok: %s", err.msg);
    if (d.n == 3) CHECK(!strcmp(d.v[0].source, "g.jsonl#x") && !strcmp(d.v[1].source, "g.jsonl#7") && !strcmp(d.v[2].source, "g.jsonl:3"),
                        "sources %s %s %s", d.v[0].source, d.v[1].source, d.v[2].source);
    index_docs_free(&d);
}

static void write(const char *dir, const char *name, const char *text) {
    char *p = gk_path_join(dir, name); gk_err err;
    gk_write_file_atomic(p, text, strlen(text), &err);
    free(p);
}
static size_t count(const char *db, const char *sql) {
    sqlite3 *h; sqlite3_stmt *st; size_t n = 0;
    sqlite3_open(db, &h);
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) n = (size_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st); sqlite3_close(h);
    return n;
}
/* rank (1-based) of the first hit whose text holds needle, 0 if none */
static size_t rank_of(index_db *ix, const char *q, index_mode mode, const char *needle) {
    index_hit *h; size_t n, r = 0; gk_err err;
    if (index_query(ix, q, 5, mode, &h, &n, &err)) { printf("  query: %s\n", err.msg); return 0; }
    for (size_t i = 0; i < n && !r; i++) if (strstr(h[i].text, needle)) r = i + 1;
    index_hits_free(h, n);
    return r;
}

static void test_build_query(void) {
    gk_err err;
    embed_model *m = embed_load(tl_path("tests/fixtures/embed/st_mean"), NULL, &err);
    CHECK(m, "%s", err.msg);
    if (!m) return;
    char *dir = tl_tmpdir("index"), *docs = gk_path_join(dir, "docs"), *db = gk_path_join(dir, "ix.db");
    gk_mkdir_p(docs, &err);
    write(docs, "a.txt", "The library of the north city was built in the year one thousand.\n\nThe museum on the island was founded by the queen.\n");
    write(docs, "b.md", "The river runs south to the ocean bay.\n\nA tower stands by the harbor.\n");
    write(docs, "c.jsonl", "{\"text\": \"The castle in the valley is very old.\", \"id\": \"c1\"}\n{\"text\": \"The market of the village opens each day.\"}\n");
    write(docs, "skip.bin", "ignored: not a text extension inside a directory");
    index_build_opts o; index_build_opts_default(&o);
    index_build_stats st;
    const char *paths[1] = {docs};
    CHECK(index_build(db, m, paths, 1, &o, &st, &err) == 0, "%s", err.msg);
    CHECK(st.docs_added == 4 && st.chunks_added == 5, "added %zu docs %zu chunks", st.docs_added, st.chunks_added);
    CHECK(count(db, "SELECT count(*) FROM chunks_fts") == 5, "fts rows");
    index_db *ix = index_open(db, NULL, &err);
    CHECK(ix, "%s", err.msg);
    if (ix) {
        CHECK(rank_of(ix, "castle valley", INDEX_MODE_BM25, "castle") == 1, "bm25 castle");
        CHECK(rank_of(ix, "The castle in the valley is very old.", INDEX_MODE_VECTOR, "castle") == 1, "vector: a chunk's own text ranks it first");
        CHECK(rank_of(ix, "The castle in the valley is very old.", INDEX_MODE_HYBRID, "castle") == 1, "hybrid castle");
        char *ctx = index_retrieve_context(ix, "the market village", 2, 0, &err);
        CHECK(ctx && strstr(ctx, "[1] (") && strstr(ctx, "market"), "context: %s", ctx ? ctx : err.msg);
        free(ctx);
        ctx = index_retrieve_context(ix, "the market village", 5, 10, &err);
        CHECK(ctx && ctx[0] == 0, "a 10-byte budget holds no whole chunk: %s", ctx ? ctx : err.msg);
        free(ctx);
        /* the tool loop's `retrieve` tool: a call the model writes gets the passages; a bad one an error text */
        tool_registry *reg = tools_new();
        CHECK(index_tool_register(reg, ix, 2, &err) == 0 && tools_enable(reg, "calc,retrieve", &err) == 0, "register: %s", err.msg);
        int ok = 0;
        const char *call = "{\"name\": \"retrieve\", \"arguments\": {\"query\": \"castle valley\"}}";
        char *res = tools_call(reg, call, strlen(call), &ok);
        CHECK(ok && !strncmp(res, "[1] (", 5) && strstr(res, "castle") && !strstr(res, "[3]"), "retrieve: %s", res);
        free(res);
        call = "{\"name\": \"retrieve\", \"arguments\": {\"q\": 3}}";
        res = tools_call(reg, call, strlen(call), &ok);
        CHECK(!ok && !strncmp(res, "error: ", 7) && strstr(res, "query"), "bad arguments: %s", res);
        free(res);
        tools_free(reg);
        reg = tools_new();
        CHECK(tools_enable(reg, "retrieve", &err) == -1 && strstr(err.msg, "--retrieve INDEX.db"), "no index: %s", err.msg);
        tools_free(reg);
        /* the chat turn under a token budget of the chat model's tokenizer */
        tok_tokenizer *tk = tok_load(tl_path("tests/fixtures/tok/kjv4k.tiktoken"), &err);
        CHECK(tk, "%s", err.msg);
        if (tk) {
            char *u = index_augment_question(ix, tk, "Who founded the museum?", 3, 1000, &err);
            CHECK(u && !strncmp(u, "Sources:\n[1] (", 14) && strstr(u, "[3] (") && strstr(u, "\nQuestion: Who founded the museum?"), "turn: %s", u ? u : err.msg);
            free(u);
            u = index_augment_question(ix, tk, "Who founded the museum?", 3, 90, &err);
            CHECK(u && strstr(u, "[1] (") && !strstr(u, "[3] ("), "a 90-token budget keeps fewer chunks: %s", u ? u : err.msg);
            free(u);
            u = index_augment_question(ix, tk, "Who founded the museum?", 3, 1, &err);
            CHECK(u && !strcmp(u, "Who founded the museum?"), "a 1-token budget: just the question, got %s", u ? u : err.msg);
            free(u);
            tok_free(tk);
        }
        index_close(ix);
    }
    /* unchanged: nothing embedded; changed: replaced, old chunks gone */
    CHECK(index_build(db, m, paths, 1, &o, &st, &err) == 0 && st.docs_unchanged == 4 && st.chunks_added == 0, "rebuild: %s", err.msg);
    write(docs, "b.md", "The river runs north now.\n");
    CHECK(index_build(db, m, paths, 1, &o, &st, &err) == 0 && st.docs_updated == 1 && st.docs_unchanged == 3, "update: %s", err.msg);
    CHECK(count(db, "SELECT count(*) FROM chunks") == 5 && count(db, "SELECT count(*) FROM chunks_fts") == 5, "old chunks replaced");
    /* a bad input: an error naming it, and nothing changed */
    char *bad = gk_path_join(dir, "bad.txt");
    gk_write_file_atomic(bad, "ok\0binary", 9, &err);
    const char *two[2] = {docs, bad};
    CHECK(index_build(db, m, two, 2, &o, &st, &err) == -1 && strstr(err.msg, "bad.txt") && strstr(err.msg, "NUL"), "bad: %s", err.msg);
    CHECK(count(db, "SELECT count(*) FROM chunks") == 5, "the bad build changed the index");
    const char *missing[1] = {"/nonexistent/file.txt"};
    CHECK(index_build(db, m, missing, 1, &o, &st, &err) == -1 && strstr(err.msg, "/nonexistent/file.txt"), "missing: %s", err.msg);
    /* another embedder (same dimension, other weights): refused by fingerprint */
    embed_model *m2 = embed_load(tl_path("tests/fixtures/embed/st_cls"), NULL, &err);
    CHECK(m2 && index_build(db, m2, paths, 1, &o, &st, &err) == -1 && strstr(err.msg, "another embedder"), "other embedder: %s", err.msg);
    embed_free(m2);
    /* a dimension mismatch (meta edited to say 64) */
    sqlite3 *h; sqlite3_open(db, &h); sqlite3_exec(h, "UPDATE meta SET value = '64' WHERE key = 'dim'", NULL, NULL, NULL); sqlite3_close(h);
    CHECK(index_build(db, m, paths, 1, &o, &st, &err) == -1 && strstr(err.msg, "dimension mismatch"), "dim: %s", err.msg);
    CHECK(count(db, "SELECT count(*) FROM chunks") == 5, "a refused build changed the index");
    /* not an index */
    char *junk = gk_path_join(dir, "junk.db");
    gk_write_file_atomic(junk, "hello, not sqlite at all, just text long enough to not be a header", 66, &err);
    CHECK(index_open(junk, NULL, &err) == NULL && strstr(err.msg, "junk.db"), "junk: %s", err.msg);
    free(junk); free(bad); free(db);
    /* int8 vectors: same top hit as fp32 */
    db = gk_path_join(dir, "ix8.db");
    o.int8 = 1;
    write(docs, "b.md", "The river runs south to the ocean bay.\n\nA tower stands by the harbor.\n");
    CHECK(index_build(db, m, paths, 1, &o, &st, &err) == 0, "%s", err.msg);
    ix = index_open(db, NULL, &err);
    CHECK(ix && rank_of(ix, "The castle in the valley is very old.", INDEX_MODE_VECTOR, "castle") == 1, "int8 vector");
    index_close(ix);
    free(db); free(docs); free(dir);
    embed_free(m);
}


/* The demo's SFT reading exercises (rag_augmented_question) put a source before the question exactly as
 * index_augment_question does when BM25 finds the document: checked on the demo document set itself. */
static void test_demo_augmentation(void) {
    gk_err err;
    char *dir = tl_tmpdir("index_rag"), *docs = gk_path_join(dir, "docs.jsonl"), *db = gk_path_join(dir, "ix.db");
    size_t nd = 0, nq = 0;
    CHECK(rag_docs_write(dir, 30, 5, &nd, &nq, &err) == 0 && nd == 30 && nq == 120, "%s", err.msg);
    index_build_opts o; index_build_opts_default(&o);
    const char *paths[1] = {docs};
    CHECK(index_build(db, NULL, paths, 1, &o, NULL, &err) == 0, "%s", err.msg);
    index_db *ix = index_open(db, NULL, &err);
    tok_tokenizer *tk = tok_load(tl_path("tests/fixtures/tok/kjv4k.tiktoken"), &err);
    CHECK(ix && tk, "%s", err.msg);
    if (ix && tk) {
        CHECK(index_n_chunks(ix) == 30, "one chunk per document, got %zu chunks", index_n_chunks(ix));
        gk_rng r; gk_rng_seed(&r, 5);
        size_t same = 0;
        for (long i = 0; i < 30; i++) {
            rag_doc d;
            rag_doc_draw(&r, i, &d);
            for (int k = 0; k < 4; k++) {
                char want[2048];
                rag_augmented_question(&d, docs, k, want, sizeof want);
                char *got = index_augment_question(ix, tk, d.question[k], 1, 1000, &err);
                CHECK(got, "%s", err.msg);
                if (got && !strcmp(got, want)) same++;
                else if (got && same + 1 == (size_t)(i * 4 + k + 1)) printf("  first difference:\n%s\n---\n%s\n", got, want);
                free(got);
            }
        }
        CHECK(same == 120, "%zu of 120 augmented questions match the SFT data's", same);
    }
    tok_free(tk);
    index_close(ix);
    free(dir); free(docs); free(db);
}

int main(void) {
    TL_RUN(test_chunking);
    TL_RUN(test_parse_refusals);
    TL_RUN(test_build_query);
    TL_RUN(test_demo_augmentation);
    return tl_summary();
}
