/* rag_docs.c: the retrieval demo's documents and questions (data.h: rag_docs_write). Every name is made of
 * random syllables, so no pretrained model can know the answers: only retrieval can. Each fact is asked with
 * one of several phrasings that share few words with the document's sentence, so BM25 and embeddings are
 * tested on paraphrase, not on copying. */
#include "data/data.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const SYL[] = {"ta", "vor", "mel", "ish", "ran", "dol", "ke", "sa", "bri", "om", "lun", "qua",
                                  "zel", "fen", "gar", "rho", "tu", "wyn", "ex", "pal", "dro", "ni", "cas", "vel"};
static const char *const TOWN_END[] = {"gate", "ford", "holm", "wick", "by", "mere", "stead", "haven"};
static const char *const TRADE[] = {"glassblower", "cartographer", "beekeeper", "clockmaker", "ferryman", "weaver",
                                    "astronomer", "stonemason", "apothecary", "bookbinder", "shipwright", "lutenist"};
static const char *const ANIMAL[] = {"goats", "horses", "geese", "sheep", "cats", "hives"};

static void rag_name(gk_rng *r, char *out, size_t cap, int syllables, int cap_first) {
    out[0] = 0;
    for (int i = 0; i < syllables; i++) strncat(out, SYL[gk_rng_below(r, 24)], cap - strlen(out) - 1);
    if (cap_first && out[0]) out[0] = (char)(out[0] - 32);
}

typedef struct { char first[32], last[32], town[48], spouse[72], trade[24], animal[12]; int year, count, books; } rag_person;

/* one person: the document and four questions (birthplace, year, trade, spouse), each in one of three
 * phrasings, with the answer and the demo's reply (a sentence that states it, quoting the document) */
void rag_doc_draw(gk_rng *r, long i, rag_doc *d) {
    rag_person p;
    char tmp[24], t2[24];   /* two syllables: at most 7 bytes */
    rag_name(r, p.first, sizeof p.first, 2, 1); rag_name(r, p.last, sizeof p.last, 2 + (int)gk_rng_below(r, 2), 1);
    rag_name(r, tmp, sizeof tmp, 2, 1); snprintf(p.town, sizeof p.town, "%s%s", tmp, TOWN_END[gk_rng_below(r, 8)]);
    rag_name(r, tmp, sizeof tmp, 2, 1); rag_name(r, t2, sizeof t2, 2, 1); snprintf(p.spouse, sizeof p.spouse, "%s %s", tmp, t2);
    snprintf(p.trade, sizeof p.trade, "%s", TRADE[gk_rng_below(r, 12)]);
    snprintf(p.animal, sizeof p.animal, "%s", ANIMAL[gk_rng_below(r, 6)]);
    p.year = 1700 + (int)gk_rng_below(r, 300); p.count = 3 + (int)gk_rng_below(r, 90); p.books = 2 + (int)gk_rng_below(r, 20);
    snprintf(d->id, sizeof d->id, "person-%ld", i);
    snprintf(d->text, sizeof d->text,
             "%s %s was born in %s in the year %d. %s worked as a %s and kept %d %s on a small farm.\n\n"
             "Later in life %s wrote %d books and married %s.\n",
             p.first, p.last, p.town, p.year, p.first, p.trade, p.count, p.animal, p.last, p.books, p.spouse);
    static const char *const BORN[3] = {"Where was %s %s born?", "Which town is the birthplace of %s %s?", "%s %s came into the world in which place?"};
    static const char *const YEAR[3] = {"In what year was %s %s born?", "When was %s %s born?", "What is the birth year of %s %s?"};
    static const char *const TRADEQ[3] = {"What was the occupation of %s %s?", "What did %s %s do for a living?", "Which craft did %s %s practise?"};
    static const char *const SPOUSE[3] = {"Whom did %s %s marry?", "Who was the spouse of %s %s?", "Who became the wife or husband of %s %s?"};
    const char *const *phr[4] = {BORN, YEAR, TRADEQ, SPOUSE};
    for (int k = 0; k < 4; k++) snprintf(d->question[k], sizeof d->question[k], phr[k][gk_rng_below(r, 3)], p.first, p.last);
    snprintf(d->answer[0], sizeof d->answer[0], "%s", p.town);
    snprintf(d->answer[1], sizeof d->answer[1], "%d", p.year);
    snprintf(d->answer[2], sizeof d->answer[2], "%s", p.trade);
    snprintf(d->answer[3], sizeof d->answer[3], "%s", p.spouse);
    /* replies quote the source: each is a span of the document's words that holds the answer (plus a full
     * stop), so a model can answer by finding the sentence and copying from it: the easiest reading to learn
     * (rewording replies taught the demo's small models nothing; bench/RESULTS.md) */
    snprintf(d->reply[0], sizeof d->reply[0], "%s %s was born in %s.", p.first, p.last, p.town);
    snprintf(d->reply[1], sizeof d->reply[1], "%s %s was born in %s in the year %d.", p.first, p.last, p.town, p.year);
    snprintf(d->reply[2], sizeof d->reply[2], "%s worked as a %s.", p.first, p.trade);
    snprintf(d->reply[3], sizeof d->reply[3], "%s wrote %d books and married %s.", p.last, p.books, p.spouse);
}

static void rag_add_q(cJSON *qs, const char *q, const char *answer, const char *doc) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "question", q); cJSON_AddStringToObject(o, "answer", answer); cJSON_AddStringToObject(o, "doc", doc);
    cJSON_AddItemToArray(qs, o);
}

static void rag_person_doc(gk_rng *r, long i, cJSON *docs, cJSON *qs) {
    rag_doc d;
    rag_doc_draw(r, i, &d);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "text", d.text); cJSON_AddStringToObject(o, "id", d.id);
    cJSON_AddItemToArray(docs, o);
    for (int k = 0; k < 4; k++) rag_add_q(qs, d.question[k], d.answer[k], d.id);
}

/* The user turn index_augment_question makes when retrieval finds the document (src/index/search.c): the
 * chunk is the whole document, its trailing newline trimmed (a document is one chunk at the default chunk
 * size), after its source "FILE#id". */
size_t rag_augmented_question(const rag_doc *d, const char *source_file, int k, char *out, size_t cap) {
    size_t len = strlen(d->text);
    while (len && d->text[len - 1] == '\n') len--;
    return (size_t)snprintf(out, cap, "Sources:\n[1] (%s#%s) %.*s\n\nQuestion: %s", source_file, d->id, (int)len, d->text,
                            d->question[k]);
}

void rag_sft_conversation(gk_rng *r, const char *source_file, cJSON *msgs) {
    rag_doc d;
    /* a fresh person each time (ids as the evaluation set numbers its documents): nothing to memorise, so the
     * model learns to read the source */
    long id = (long)gk_rng_below(r, 1000);
    rag_doc_draw(r, id, &d);
    int k = (int)gk_rng_below(r, 4);
    char user[2048];
    rag_augmented_question(&d, source_file && source_file[0] ? source_file : "docs.jsonl", k, user, sizeof user);
    cJSON *u = cJSON_CreateObject(), *a = cJSON_CreateObject();
    cJSON_AddStringToObject(u, "role", "user"); cJSON_AddStringToObject(u, "content", user);
    cJSON_AddStringToObject(a, "role", "assistant"); cJSON_AddStringToObject(a, "content", d.reply[k]);
    cJSON_AddItemToArray(msgs, u); cJSON_AddItemToArray(msgs, a);
}

static int rag_write_lines(const char *path, cJSON *arr, gk_err *err) {
    gk_afile *f = gk_afile_open(path, err);
    if (!f) return -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        char *s = cJSON_PrintUnformatted(e);
        gk_afile_printf(f, "%s\n", s);
        free(s);
    }
    return gk_afile_commit(f, err);
}

int rag_docs_write(const char *dir, long n_people, uint64_t seed, size_t *n_docs, size_t *n_questions, gk_err *err) {
    if (n_people < 1 || n_people > 1000000) return gk_errf(err, "rag docs: the number of people must be in [1, 1000000] (got %ld)", n_people);
    if (gk_mkdir_p(dir, err)) return -1;
    gk_rng r; gk_rng_seed(&r, seed);
    cJSON *docs = cJSON_CreateArray(), *qs = cJSON_CreateArray();
    for (long i = 0; i < n_people; i++) rag_person_doc(&r, i, docs, qs);
    char *dp = gk_path_join(dir, "docs.jsonl"), *qp = gk_path_join(dir, "questions.jsonl");
    int rc = rag_write_lines(dp, docs, err);
    if (!rc) rc = rag_write_lines(qp, qs, err);
    if (n_docs) *n_docs = (size_t)cJSON_GetArraySize(docs);
    if (n_questions) *n_questions = (size_t)cJSON_GetArraySize(qs);
    cJSON_Delete(docs); cJSON_Delete(qs); free(dp); free(qp);
    return rc;
}
