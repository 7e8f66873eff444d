/* pipeline_retrieval.c: the pipeline's retrieval check (part of the eval stage): the demo document set of
 * invented facts (data.h: rag_docs_write) indexed under RUN/data/rag/, and retrieval recall@1/5/10 of the
 * questions about it. The offline demo has no sentence-embedding model, so the index is BM25 only; with one,
 * `gptkit index build --embedder DIR` and `gptkit index eval` give the vector and hybrid rows (docs/retrieval.md). */
#include "cli/pipeline_internal.h"
#include "data/data.h"
#include "index/index.h"
#include <cjson/cJSON.h>
#include <stdlib.h>

int pipe_retrieval(const pipe_cfg *c, const char *data_dir, cJSON *j, gk_err *err) {
    char *dir = gk_path_join(data_dir, "rag"), *docs = gk_path_join(dir, "docs.jsonl");
    char *qs = gk_path_join(dir, "questions.jsonl"), *db = gk_path_join(dir, "index.db");
    size_t nd = 0, nq = 0;
    int rc = rag_docs_write(dir, 200, (uint64_t)c->seed, &nd, &nq, err);
    index_build_opts o; index_build_opts_default(&o);
    const char *paths[1] = {docs};
    if (!rc) { remove(db); rc = index_build(db, NULL, paths, 1, &o, NULL, err); }
    index_db *ix = rc ? NULL : index_open(db, NULL, err);
    if (!rc && !ix) rc = -1;
    const size_t ks[3] = {1, 5, 10};
    double rec[3];
    if (!rc) rc = index_eval_recall(ix, qs, ks, 3, INDEX_MODE_BM25, rec, &nq, err);
    if (!rc) {
        cJSON_AddNumberToObject(j, "documents", (double)nd);
        cJSON_AddNumberToObject(j, "questions", (double)nq);
        cJSON_AddNumberToObject(j, "chunks", (double)index_n_chunks(ix));
        cJSON *b = cJSON_AddObjectToObject(j, "bm25");
        cJSON_AddNumberToObject(b, "recall@1", rec[0]); cJSON_AddNumberToObject(b, "recall@5", rec[1]);
        cJSON_AddNumberToObject(b, "recall@10", rec[2]);
        gk_log("pipeline: retrieval (BM25) recall@1 %.1f%%, @5 %.1f%%, @10 %.1f%% over %zu questions\n", 100 * rec[0],
               100 * rec[1], 100 * rec[2], nq);
    }
    index_close(ix);
    free(dir); free(docs); free(qs); free(db);
    return rc;
}
