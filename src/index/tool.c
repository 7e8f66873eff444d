/* tool.c: the `retrieve` tool (index.h: index_tool_register) — the tool loop's way to search a retrieval
 * index when the model decides to, beside --retrieve's sources placed before every question. */
#include "index/index.h"
#include "tools/tools.h"
#include <stdlib.h>
#include <string.h>

#define RETRIEVE_DESC \
    "{\"type\":\"function\",\"function\":{\"name\":\"retrieve\",\"description\":\"Search the document index " \
    "and return the most relevant passages with their sources.\",\"parameters\":{\"type\":\"object\"," \
    "\"properties\":{\"query\":{\"type\":\"string\",\"description\":\"what to look for\"}},\"required\":[\"query\"]}}}"

typedef struct { index_db *ix; size_t k; } retrieve_ctx;

static int run_retrieve(void *ctx, const cJSON *args, char **out, gk_err *err) {
    retrieve_ctx *c = ctx;
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(args, "query");
    if (!cJSON_IsString(q) || !q->valuestring[0]) return gk_errf(err, "retrieve takes {\"query\": \"non-empty text\"}");
    if (!c->ix) return gk_errf(err, "retrieve: no index is open");
    /* whole chunks that fit in a tool result, most relevant first */
    char *text = index_retrieve_context(c->ix, q->valuestring, c->k, TOOLS_RESULT_MAX, err);
    if (!text) return -1;
    *out = text[0] ? text : (free(text), gk_strdup("no passage matched"));
    return 0;
}

int index_tool_register(tool_registry *r, index_db *ix, size_t k, gk_err *err) {
    /* one context per process is enough: a command opens one index. Registering again (once the index is
     * open, after a check of the tool list) points the registered tool at it. */
    static retrieve_ctx ctx;
    ctx.ix = ix; ctx.k = k;
    for (size_t i = 0; i < tools_count(r); i++) if (!strcmp(tools_name(r, i), "retrieve")) return 0;
    return tools_register(r, "retrieve", RETRIEVE_DESC, run_retrieve, &ctx, err);
}
