/* eval.c: retrieval recall@k over a question file (index.h: index_eval_recall). */
#include "index/index_internal.h"
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* a hit answers the question when its text holds the answer and, if the question names its document, it comes
 * from that document (source "FILE#doc") */
static int index_hit_ok(const index_hit *h, const char *answer, const char *doc) {
    if (!strstr(h->text, answer)) return 0;
    if (!doc) return 1;
    size_t ls = strlen(h->source), ld = strlen(doc);
    return ls > ld && h->source[ls - ld - 1] == '#' && !strcmp(h->source + ls - ld, doc);
}

int index_eval_recall(index_db *ix, const char *questions_path, const size_t *ks, size_t nk, index_mode mode,
                      double *recall, size_t *n_questions, gk_err *err) {
    gk_lines L;
    if (gk_lines_open(&L, questions_path, err)) return -1;
    size_t kmax = 0, n = 0;
    for (size_t i = 0; i < nk; i++) { if (ks[i] > kmax) kmax = ks[i]; recall[i] = 0; }
    size_t *found = gk_calloc(nk ? nk : 1, sizeof *found);
    char *line; size_t ln;
    int rc = 0;
    while (!rc && gk_lines_next(&L, &line, &ln)) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(j, "question"), *a = cJSON_GetObjectItemCaseSensitive(j, "answer");
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "doc");
        if (!cJSON_IsString(q) || !cJSON_IsString(a) || !a->valuestring[0]) {
            rc = gk_errf(err, "%s:%zu: expected {\"question\": ..., \"answer\": ..., \"doc\": ...}", questions_path, ln);
            cJSON_Delete(j); break;
        }
        index_hit *h; size_t nh;
        rc = index_query(ix, q->valuestring, kmax, mode, &h, &nh, err);
        if (!rc) {
            size_t first = SIZE_MAX;   /* rank of the first hit that answers */
            for (size_t r = 0; r < nh && first == SIZE_MAX; r++)
                if (index_hit_ok(&h[r], a->valuestring, cJSON_IsString(d) ? d->valuestring : NULL)) first = r;
            for (size_t i = 0; i < nk; i++) if (first < ks[i]) found[i]++;
            index_hits_free(h, nh);
            n++;
        }
        cJSON_Delete(j);
    }
    gk_lines_close(&L);
    for (size_t i = 0; i < nk; i++) recall[i] = n ? (double)found[i] / (double)n : 0;
    if (n_questions) *n_questions = n;
    free(found);
    if (!rc && !n) rc = gk_errf(err, "%s: no questions", questions_path);
    return rc;
}
