/* cmd_index.c: gptkit index build | query | info — a retrieval index in one SQLite file (src/index). */
#include "cli/cli.h"
#include "core/core.h"
#include "embed/embed.h"
#include "index/index.h"
#include "data/data.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: gptkit index build [--embedder DIR] --docs PATH... --out INDEX.db [options]\n"
    "       gptkit index query INDEX.db \"question\" [--top-k K] [--mode hybrid|vector|bm25] [--json] [--embedder DIR]\n"
    "       gptkit index info INDEX.db\n"
    "       gptkit index eval INDEX.db --questions Q.jsonl [--top-k 1,5,10] [--json]\n"
    "       gptkit index demo-docs --out DIR [--people N] [--seed S]\n\n"
    "build: cuts documents into chunks by WordPiece tokens (paragraphs kept whole where they fit, neighbours\n"
    "overlapping), embeds them with a sentence-transformers BERT model and stores documents, chunks (source and\n"
    "byte offsets), an FTS5 BM25 index and the vectors in INDEX.db. Incremental: a document whose content hash is\n"
    "unchanged is skipped. Each batch of documents is one transaction: a killed build keeps what it committed.\n"
    "  --embedder DIR        sentence-transformers model directory (e.g. all-MiniLM-L6-v2); without it the index\n"
"                        is BM25 only (chunk sizes in words)\n"
    "  --docs PATH...        files (.txt, .md: one document; .jsonl: {\"text\": ..., \"id\": ...} per line) or directories\n"
    "  --out INDEX.db        the index (created, or updated)\n"
    "  --chunk-tokens N      tokens per chunk (default 128; capped at the embedder's max - 2)\n"
    "  --overlap N           tokens shared by neighbouring chunks (default 32)\n"
    "  --int8                store vectors as int8 with a per-chunk scale (4x smaller; new indexes only)\n"
    "  -v, --verbose         a line per committed batch\n"
    "query: prints the top chunks with score and source.\n"
    "  --top-k K             how many (default 5)\n"
    "  --mode M              hybrid (default: reciprocal-rank fusion of the two), vector (cosine), bm25\n"
    "  --json                one JSON object: {\"query\", \"mode\", \"hits\": [{rank, score, source, start, end, chunk_id, text}]}\n"
    "  --embedder DIR        the embedder to use (default: the one recorded at build time)\n"
    "info: what the index holds and how it was built.\n"
    "eval: retrieval recall@k of every mode the index supports, over {\"question\", \"answer\", \"doc\"} lines: a\n"
    "  question counts when a top-k chunk holds the answer (and comes from document doc, when given).\n"
    "demo-docs: the retrieval demo's documents (DIR/docs.jsonl: facts about invented people) and paraphrased\n"
    "  questions about them (DIR/questions.jsonl); --people N (default 200), --seed S (default 1337).\n"
    "  -q, --quiet           no log lines on stderr\n"
    "See docs/retrieval.md.\n";

static int index_cmd_build(int argc, char **argv) {
    cli_args a; cli_args_init(&a, argc, argv, USAGE);
    const char *f, *emb = NULL, *out = NULL, **docs = NULL;
    int n_docs = 0;
    index_build_opts o; index_build_opts_default(&o);
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--embedder")) emb = cli_str(&a, f);
        else if (cli_is(f, "--out")) out = cli_str(&a, f);
        else if (cli_is(f, "--docs")) n_docs = cli_strs(&a, f, &docs);
        else if (cli_is(f, "--chunk-tokens")) { long v = cli_long(&a, f); if (v < 8 || v > 100000) cli_usage_error(&a, "--chunk-tokens must be in [8, 100000]"); o.chunk_tokens = (size_t)v; }
        else if (cli_is(f, "--overlap")) { long v = cli_long(&a, f); if (v < 0 || v > 100000) cli_usage_error(&a, "--overlap must be in [0, 100000]"); o.overlap_tokens = (size_t)v; }
        else if (cli_is(f, "--int8")) o.int8 = 1;
        else if (cli_is(f, "-v", "--verbose")) gk_verbose = 2;
        else if (cli_is(f, "-q", "--quiet")) gk_verbose = 0;
        else cli_unknown(&a, f);
    }
    if (!out || n_docs < 1) cli_usage_error(&a, "build needs --docs PATH... and --out INDEX.db");
    gk_err err;
    embed_model *m = emb ? embed_load(emb, NULL, &err) : NULL;
    if (emb && !m) { fprintf(stderr, "gptkit index: %s\n", err.msg); return 1; }
    if (m) gk_log("index: embedder %s\n", embed_describe(m));
    else gk_log("index: no --embedder: a BM25-only index (chunks counted in words)\n");
    index_build_stats st;
    int rc = index_build(out, m, docs, (size_t)n_docs, &o, &st, &err);
    if (rc) fprintf(stderr, "gptkit index: %s\n", err.msg);
    else gk_log("index: %s: %zu documents added, %zu updated, %zu unchanged; %zu chunks embedded in %.2fs\n", out,
                st.docs_added, st.docs_updated, st.docs_unchanged, st.chunks_added, st.seconds);
    embed_free(m);
    return rc ? 1 : 0;
}

static void index_print_json(const char *q, const char *mode, const index_hit *h, size_t n) {
    cJSON *o = cJSON_CreateObject(), *arr;
    cJSON_AddStringToObject(o, "query", q); cJSON_AddStringToObject(o, "mode", mode);
    arr = cJSON_AddArrayToObject(o, "hits");
    for (size_t i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "rank", (double)(i + 1)); cJSON_AddNumberToObject(e, "score", h[i].score);
        cJSON_AddStringToObject(e, "source", h[i].source);
        cJSON_AddNumberToObject(e, "start", (double)h[i].start); cJSON_AddNumberToObject(e, "end", (double)h[i].end);
        cJSON_AddNumberToObject(e, "chunk_id", (double)h[i].chunk_id); cJSON_AddStringToObject(e, "text", h[i].text);
        cJSON_AddItemToArray(arr, e);
    }
    char *s = cJSON_PrintUnformatted(o);
    puts(s);
    free(s); cJSON_Delete(o);
}

static int index_cmd_query(int argc, char **argv) {
    cli_args a; cli_args_init(&a, argc, argv, USAGE);
    const char *f, *db = NULL, *q = NULL, *emb = NULL, *mode_s = "hybrid";
    long k = 5; int json = 0;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--top-k")) k = cli_long(&a, f);
        else if (cli_is(f, "--mode")) mode_s = cli_str(&a, f);
        else if (cli_is(f, "--json")) json = 1;
        else if (cli_is(f, "--embedder")) emb = cli_str(&a, f);
        else if (cli_is(f, "-q", "--quiet")) gk_verbose = 0;
        else if (cli_is_positional(f) && !db) db = f;
        else if (cli_is_positional(f) && !q) q = f;
        else cli_unknown(&a, f);
    }
    index_mode mode;
    if (!db || !q) cli_usage_error(&a, "query needs INDEX.db and a question");
    if (index_mode_parse(mode_s, &mode)) cli_usage_error(&a, "--mode must be hybrid, vector or bm25");
    if (k < 1 || k > 10000) cli_usage_error(&a, "--top-k must be in [1, 10000]");
    gk_err err;
    index_db *ix = index_open(db, emb, &err);
    if (!ix) { fprintf(stderr, "gptkit index: %s\n", err.msg); return 1; }
    index_hit *h; size_t n;
    /* loading (embedder, vectors) timed apart from the query itself */
    double tl = gk_now();
    int rc = mode == INDEX_MODE_BM25 ? 0 : index_load(ix, &err);
    double t0 = gk_now();
    if (!rc) rc = index_query(ix, q, (size_t)k, mode, &h, &n, &err);
    if (rc) fprintf(stderr, "gptkit index: %s\n", err.msg);
    else {
        gk_log("index: %zu hits of %zu chunks in %.1f ms (%s; loading took %.0f ms before)\n", n, index_n_chunks(ix),
               (gk_now() - t0) * 1e3, mode_s, (t0 - tl) * 1e3);
        if (json) index_print_json(q, mode_s, h, n);
        else for (size_t i = 0; i < n; i++) printf("%zu. %.4f  %s [%zu-%zu]\n   %s\n", i + 1, h[i].score, h[i].source, h[i].start, h[i].end, h[i].text);
        index_hits_free(h, n);
    }
    index_close(ix);
    return rc ? 1 : 0;
}

static int index_cmd_info(int argc, char **argv) {
    cli_args a; cli_args_init(&a, argc, argv, USAGE);
    const char *f, *db = NULL;
    while ((f = cli_next(&a))) {
        if (cli_is_positional(f) && !db) db = f;
        else cli_unknown(&a, f);
    }
    if (!db) cli_usage_error(&a, "info needs INDEX.db");
    gk_err err;
    index_db *ix = index_open(db, NULL, &err);
    if (!ix) { fprintf(stderr, "gptkit index: %s\n", err.msg); return 1; }
    printf("%s: %zu chunks\n", db, index_n_chunks(ix));
    index_close(ix);
    return 0;
}

static int index_cmd_eval(int argc, char **argv) {
    cli_args a; cli_args_init(&a, argc, argv, USAGE);
    const char *f, *db = NULL, *qs = NULL, *kl = "1,5,10", *emb = NULL;
    int json = 0;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--questions")) qs = cli_str(&a, f);
        else if (cli_is(f, "--top-k")) kl = cli_str(&a, f);
        else if (cli_is(f, "--json")) json = 1;
        else if (cli_is(f, "--embedder")) emb = cli_str(&a, f);
        else if (cli_is(f, "-q", "--quiet")) gk_verbose = 0;
        else if (cli_is_positional(f) && !db) db = f;
        else cli_unknown(&a, f);
    }
    if (!db || !qs) cli_usage_error(&a, "eval needs INDEX.db and --questions Q.jsonl");
    size_t ks[8], nk = 0;
    for (const char *p = kl; *p && nk < 8;) {
        char *e; long v = strtol(p, &e, 10);
        if (e == p || v < 1 || v > 1000) cli_usage_error(&a, "--top-k takes a list like 1,5,10 (each in [1, 1000])");
        ks[nk++] = (size_t)v; p = *e == ',' ? e + 1 : e;
        if (*e && *e != ',') cli_usage_error(&a, "--top-k takes a list like 1,5,10");
    }
    gk_err err;
    index_db *ix = index_open(db, emb, &err);
    if (!ix) { fprintf(stderr, "gptkit index: %s\n", err.msg); return 1; }
    static const char *const names[3] = {"bm25", "vector", "hybrid"};
    const index_mode modes[3] = {INDEX_MODE_BM25, INDEX_MODE_VECTOR, INDEX_MODE_HYBRID};
    cJSON *out = cJSON_CreateObject();
    int rc = 0;
    for (int m = 0; m < 3 && !rc; m++) {
        if (m > 0 && !index_has_vectors(ix)) break;
        double rec[8]; size_t nq;
        rc = index_eval_recall(ix, qs, ks, nk, modes[m], rec, &nq, &err);
        if (rc) break;
        cJSON *o = cJSON_AddObjectToObject(out, names[m]);
        char key[16];
        if (!json) printf("%-7s", names[m]);
        for (size_t i = 0; i < nk; i++) {
            snprintf(key, sizeof key, "%zu", ks[i]);
            cJSON_AddNumberToObject(o, key, rec[i]);
            if (!json) printf("  recall@%-3zu %5.1f%%", ks[i], 100 * rec[i]);
        }
        if (!json) printf("  (%zu questions)\n", nq);
        cJSON_AddNumberToObject(out, "questions", (double)nq);
    }
    if (rc) fprintf(stderr, "gptkit index: %s\n", err.msg);
    else if (json) { char *s = cJSON_PrintUnformatted(out); puts(s); free(s); }
    cJSON_Delete(out);
    index_close(ix);
    return rc ? 1 : 0;
}

static int index_cmd_demo_docs(int argc, char **argv) {
    cli_args a; cli_args_init(&a, argc, argv, USAGE);
    const char *f, *out = NULL;
    long people = 200, seed = 1337;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--out")) out = cli_str(&a, f);
        else if (cli_is(f, "--people")) people = cli_long(&a, f);
        else if (cli_is(f, "--seed")) seed = cli_long(&a, f);
        else if (cli_is(f, "-q", "--quiet")) gk_verbose = 0;
        else cli_unknown(&a, f);
    }
    if (!out) cli_usage_error(&a, "demo-docs needs --out DIR");
    gk_err err; size_t nd, nq;
    if (rag_docs_write(out, people, (uint64_t)seed, &nd, &nq, &err)) { fprintf(stderr, "gptkit index: %s\n", err.msg); return 1; }
    gk_log("index: wrote %zu documents (%s/docs.jsonl) and %zu questions (%s/questions.jsonl)\n", nd, out, nq, out);
    return 0;
}

int cmd_index(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) { fputs(USAGE, argc < 2 ? stderr : stdout); return argc < 2 ? 2 : 0; }
    if (!strcmp(argv[1], "build")) return index_cmd_build(argc - 1, argv + 1);
    if (!strcmp(argv[1], "query")) return index_cmd_query(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info")) return index_cmd_info(argc - 1, argv + 1);
    if (!strcmp(argv[1], "eval")) return index_cmd_eval(argc - 1, argv + 1);
    if (!strcmp(argv[1], "demo-docs")) return index_cmd_demo_docs(argc - 1, argv + 1);
    fprintf(stderr, "gptkit index: unknown subcommand '%s' (build, query, info, eval, demo-docs)\n%s", argv[1], USAGE);
    return 2;
}
