/* pipeline_retrieval.c: the pipeline's retrieval check (part of the eval stage): the demo document set of
 * invented facts (data.h: rag_docs_write) indexed under RUN/data/rag/, retrieval recall@1/5/10 of the
 * questions about it, and the chat models' answering accuracy on those questions without and with the
 * retrieved source in the prompt. The offline demo has no sentence-embedding model, so the index is BM25 only;
 * with one, `gptkit index build --embedder DIR` and `gptkit index eval` give the vector and hybrid rows
 * (docs/retrieval.md).
 *
 * Why the answering accuracy means something: the names are random syllables, so without retrieval a model
 * can only guess; the SFT data's reading exercises (data.sft_rag, rag_sft_conversation) are about other
 * people drawn from another RNG stream, so with retrieval the model must read the source, not recall it. */
#include "cli/pipeline_internal.h"
#include "data/data.h"
#include "eval/eval.h"
#include "index/index.h"
#include "infer/infer.h"
#include "infer/strategy.h"
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define RAG_PEOPLE 200   /* documents of the evaluation set (4 questions each) */
#define RAG_BATCH 16     /* questions decoded together */
#define RAG_MAX_NEW 40   /* reply tokens: the demo's replies quote a sentence of the source (up to ~32 tokens) */

char *pipe_rag_docs_path(const char *data_dir) {
    char *dir = gk_path_join(data_dir, "rag"), *p = gk_path_join(dir, "docs.jsonl");
    free(dir);
    return p;
}

/* The user turn of question q: the question alone, or with the top BM25 chunk before it as chat --retrieve
 * puts it (index_augment_question). k = 1: BM25 finds the right document first for these questions (recall@1
 * in the table), and the demo's 256-token context holds one source with the question and the answer; the
 * budget leaves max_new tokens for the answer and 32 for the question and the chat markers. */
static char *rag_user_turn(index_db *ix, const eval_model *em, const char *q, size_t max_new, gk_err *err) {
    if (!ix) return gk_strdup(q);
    size_t n_ctx = (size_t)em->m->cfg.n_ctx, budget = n_ctx > max_new + 32 ? n_ctx - max_new - 32 : 1;
    return index_augment_question(ix, em->tok, q, 1, budget, err);
}

/* One model's accuracy on questions q[0..n) (answers a) with ix (retrieval) or without (ix NULL): greedy
 * replies of up to max_new tokens, correct when they contain the answer as whole words (the demo's "contains"
 * check). *with_source: the prompts that held a source (a model whose context cannot hold one gets the bare
 * question). One right and one wrong reply (where there are) go into samples. */
static int rag_answer(eval_model *em, index_db *ix, char q[][128], char a[][80], size_t n, size_t max_new,
                      size_t *right, size_t *with_source, cJSON *samples, gk_err *err) {
    *right = *with_source = 0;
    int rc = 0;
    for (size_t b0 = 0; rc == 0 && b0 < n; b0 += RAG_BATCH) {
        size_t nb = n - b0 < RAG_BATCH ? n - b0 : RAG_BATCH;
        tok_ids ids[RAG_BATCH] = {{0}};
        const int32_t *pp[RAG_BATCH]; size_t pn[RAG_BATCH];
        char *users[RAG_BATCH] = {0};
        for (size_t i = 0; rc == 0 && i < nb; i++) {
            users[i] = rag_user_turn(ix, em, q[b0 + i], max_new, err);
            if (!users[i]) { rc = -1; break; }
            *with_source += ix && !strncmp(users[i], "Sources:", 8);   /* else no source fitted the budget */
            chat_conv cv = {0};
            chat_conv_add(&cv, CHAT_USER, users[i]);
            chat_tokens ct = {0};
            chat_render(em->tok, &em->sp, &cv, 1, &ct);
            for (size_t k = 0; k < ct.n; k++) tok_ids_push(&ids[i], ct.ids[k]);
            chat_tokens_free(&ct); chat_conv_free(&cv);
            /* keep the prompt inside the context, leaving room for the answer (as eval_tasks does) */
            size_t room = (size_t)em->m->cfg.n_ctx - max_new;
            pp[i] = ids[i].ids; pn[i] = ids[i].n;
            if (pn[i] > room) { pp[i] += pn[i] - room; pn[i] = room; }
        }
        engine_seq out[RAG_BATCH];
        memset(out, 0, sizeof out);
        engine_gen_opts go;
        engine_gen_opts_default(&go);
        go.max_new = max_new;
        go.samp.temperature = 0;
        if (rc == 0) rc = engine_generate_multi(em->e, pp, pn, nb, &go, out, err);
        for (size_t i = 0; rc == 0 && i < nb; i++) {
            const char *text = out[i].text ? out[i].text : "";
            while (*text == ' ') text++;
            int ok = demo_check_answer("contains", a[b0 + i], text) == 1;
            *right += (size_t)ok;
            int shown = 0;   /* one right and one wrong reply, where there are */
            const cJSON *sm;
            cJSON_ArrayForEach(sm, samples) shown += cJSON_IsTrue(cJSON_GetObjectItem(sm, "correct")) == ok;
            if (samples && !shown) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "user", users[i]); cJSON_AddStringToObject(o, "reply", text);
                cJSON_AddStringToObject(o, "expected", a[b0 + i]); cJSON_AddBoolToObject(o, "correct", ok);
                cJSON_AddItemToArray(samples, o);
            }
        }
        for (size_t i = 0; i < nb; i++) { engine_seq_free(&out[i]); tok_ids_free(&ids[i]); free(users[i]); }
    }
    return rc;
}

/* Accuracy without and with retrieval of each model into j["answering"][name]. */
static int rag_answering(const pipe_cfg *c, index_db *ix, const char *const *names, const char *const *dirs, size_t nm,
                         cJSON *j, gk_err *err) {
    size_t n = (size_t)c->rag_questions;
    if (n > RAG_PEOPLE * 4) n = RAG_PEOPLE * 4;
    if (!n || !nm) return 0;
    /* the first n questions of the indexed set (rag_docs_write draws the same people from the same seed) */
    char (*q)[128] = gk_malloc(n * sizeof *q);
    char (*a)[80] = gk_malloc(n * sizeof *a);
    gk_rng r; gk_rng_seed(&r, (uint64_t)c->seed);
    for (size_t i = 0; i < n; i += 4) {
        rag_doc d;
        rag_doc_draw(&r, (long)(i / 4), &d);
        for (size_t k = 0; k < 4 && i + k < n; k++) { strcpy(q[i + k], d.question[k]); strcpy(a[i + k], d.answer[k]); }
    }
    size_t max_new = RAG_MAX_NEW;
    cJSON *ans = cJSON_AddObjectToObject(j, "answering");
    cJSON_AddNumberToObject(ans, "questions", (double)n);
    cJSON_AddNumberToObject(ans, "top_k", 1);
    int rc = 0;
    for (size_t mi = 0; rc == 0 && mi < nm; mi++) {
        double t0 = gk_now();
        eval_model em;
        if (eval_model_open(&em, dirs[mi], NULL, 1, 1, RAG_BATCH, err)) { rc = -1; break; }
        cJSON *o = cJSON_AddObjectToObject(ans, names[mi]);
        double acc[2];
        for (int w = 0; rc == 0 && w < 2; w++) {
            size_t right = 0, with_source = 0;
            cJSON *o2 = cJSON_AddObjectToObject(o, w ? "with_retrieval" : "without_retrieval");
            rc = rag_answer(&em, w ? ix : NULL, q, a, n, max_new, &right, &with_source, cJSON_AddArrayToObject(o2, "samples"), err);
            if (rc) break;
            double lo, hi;
            strategy_wilson((long)right, (long)n, STRATEGY_Z95, &lo, &hi);
            acc[w] = (double)right / (double)n;
            cJSON_AddNumberToObject(o2, "accuracy", acc[w]);
            cJSON_AddNumberToObject(o2, "ci_lo", lo); cJSON_AddNumberToObject(o2, "ci_hi", hi);
            cJSON_AddNumberToObject(o2, "correct", (double)right); cJSON_AddNumberToObject(o2, "n", (double)n);
            if (w) cJSON_AddNumberToObject(o2, "prompts_with_source", (double)with_source);
        }
        eval_model_close(&em);
        if (rc == 0) {
            double dt = gk_now() - t0;
            cJSON_AddNumberToObject(o, "seconds", dt);
            gk_log("pipeline: answering %zu document questions (%s): %.1f%% without retrieval, %.1f%% with BM25 retrieval "
                   "(%.1fs)\n", n, names[mi], 100 * acc[0], 100 * acc[1], dt);
        }
    }
    free(q); free(a);
    return rc;
}

int pipe_retrieval(const pipe_cfg *c, const char *data_dir, const char *const *model_names, const char *const *model_dirs,
                   size_t n_models, cJSON *j, gk_err *err) {
    char *dir = gk_path_join(data_dir, "rag"), *docs = pipe_rag_docs_path(data_dir);
    char *qs = gk_path_join(dir, "questions.jsonl"), *db = gk_path_join(dir, "index.db");
    size_t nd = 0, nq = 0;
    int rc = rag_docs_write(dir, RAG_PEOPLE, (uint64_t)c->seed, &nd, &nq, err);
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
    if (!rc) rc = rag_answering(c, ix, model_names, model_dirs, n_models, j, err);
    index_close(ix);
    free(dir); free(docs); free(qs); free(db);
    return rc;
}
