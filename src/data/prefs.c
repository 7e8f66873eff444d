/* prefs.c: preference pairs, rankings, scored responses and prompt sets from JSONL (see data.h).
 *
 * Parsing only: the strings are kept as text. Turning a prompt and a response into token ids is the
 * chat format's job (data.h), done by the training stages that know the tokenizer. */
#include "data/data.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static int bad(gk_err *err, const char *path, size_t line, const char *field, const char *what) {
    return gk_errf(err, "%s:%zu: field \"%s\": %s", path, line, field, what);
}

void prefs_item_free(prefs_item *it) {
    if (!it) return;
    for (size_t i = 0; i < it->n_prompt; i++) { free(it->prompt[i].role); free(it->prompt[i].content); }
    for (size_t i = 0; i < it->n_resp; i++) free(it->resp[i]);
    free(it->prompt); free(it->resp);
    memset(it, 0, sizeof *it);
}

static int valid_role(const char *r) {
    return !strcmp(r, "system") || !strcmp(r, "user") || !strcmp(r, "assistant") || !strcmp(r, "tool");
}

/* Message list -> it->prompt. field names the JSON key for messages ("prompt" or "messages"). */
static int parse_messages(const cJSON *arr, const char *field, const char *path, size_t line, prefs_item *it, gk_err *err) {
    int n = cJSON_GetArraySize(arr);
    if (n <= 0) return bad(err, path, line, field, "message list is empty");
    it->prompt = gk_calloc((size_t)n, sizeof *it->prompt);
    int i = 0;
    const cJSON *m;
    char fb[64];
    cJSON_ArrayForEach(m, arr) {
        snprintf(fb, sizeof fb, "%s[%d]", field, i);
        if (!cJSON_IsObject(m)) return bad(err, path, line, fb, "must be an object {\"role\", \"content\"}");
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role"), *c = cJSON_GetObjectItemCaseSensitive(m, "content");
        snprintf(fb, sizeof fb, "%s[%d].role", field, i);
        if (!cJSON_IsString(r)) return bad(err, path, line, fb, "missing or not a string");
        if (!valid_role(r->valuestring)) {
            char w[160]; snprintf(w, sizeof w, "unknown role '%.64s' (system, user, assistant or tool)", r->valuestring);
            return bad(err, path, line, fb, w);
        }
        snprintf(fb, sizeof fb, "%s[%d].content", field, i);
        if (!cJSON_IsString(c)) return bad(err, path, line, fb, "missing or not a string");
        it->prompt[i].role = gk_strdup(r->valuestring);
        it->prompt[i].content = gk_strdup(c->valuestring);
        it->n_prompt = (size_t)++i;
    }
    return 0;
}

static void add_resp(prefs_item *it, const char *s) {
    it->resp = gk_realloc(it->resp, (it->n_resp + 1) * sizeof *it->resp);
    it->resp[it->n_resp++] = gk_strdup(s);
}

static int parse_obj(const cJSON *j, const char *path, size_t line, int accept, prefs_item *it, gk_err *err) {
    if (!cJSON_IsObject(j)) return gk_errf(err, "%s:%zu: not a JSON object", path, line);
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    if (msgs && !prompt) {
        if (!(accept & PREFS_ACCEPT_SCORED))
            return gk_errf(err, "%s:%zu: a {\"messages\"} line is not accepted here (expected \"prompt\")", path, line);
        if (!cJSON_IsArray(msgs)) return bad(err, path, line, "messages", "must be a list of {\"role\", \"content\"}");
        if (parse_messages(msgs, "messages", path, line, it, err)) return -1;
        prefs_msg *last = &it->prompt[it->n_prompt - 1];
        if (strcmp(last->role, "assistant") || it->n_prompt < 2)
            return bad(err, path, line, "messages", "must end with an assistant turn after at least one other turn");
        it->resp = gk_malloc(sizeof *it->resp);
        it->resp[0] = last->content; it->n_resp = 1;
        free(last->role);
        it->n_prompt--;
        return 0;
    }
    if (!prompt) return bad(err, path, line, "prompt", "missing");
    if (cJSON_IsString(prompt)) {
        it->prompt = gk_calloc(1, sizeof *it->prompt);
        it->prompt[0].role = gk_strdup("user");
        it->prompt[0].content = gk_strdup(prompt->valuestring);
        it->n_prompt = 1;
    } else if (cJSON_IsArray(prompt)) {
        if (parse_messages(prompt, "prompt", path, line, it, err)) return -1;
        if (!strcmp(it->prompt[it->n_prompt - 1].role, "assistant"))
            return bad(err, path, line, "prompt", "ends with an assistant turn (the response goes in its own field)");
    } else {
        return bad(err, path, line, "prompt", "must be a string or a list of {\"role\", \"content\"} messages");
    }
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(j, "chosen"), *rj = cJSON_GetObjectItemCaseSensitive(j, "rejected");
    const cJSON *rk = cJSON_GetObjectItemCaseSensitive(j, "ranked"), *rs = cJSON_GetObjectItemCaseSensitive(j, "response");
    if (ch || rj) {
        if (!(accept & PREFS_ACCEPT_PREFS)) return gk_errf(err, "%s:%zu: preference pairs are not accepted here", path, line);
        if (!cJSON_IsString(ch)) return bad(err, path, line, "chosen", ch ? "must be a string" : "missing (a pair needs \"chosen\" and \"rejected\")");
        if (!cJSON_IsString(rj)) return bad(err, path, line, "rejected", rj ? "must be a string" : "missing (a pair needs \"chosen\" and \"rejected\")");
        if (rk) return bad(err, path, line, "ranked", "a line holds either chosen/rejected or ranked, not both");
        add_resp(it, ch->valuestring); add_resp(it, rj->valuestring);
        return 0;
    }
    if (rk) {
        if (!(accept & PREFS_ACCEPT_PREFS)) return gk_errf(err, "%s:%zu: rankings are not accepted here", path, line);
        if (!cJSON_IsArray(rk)) return bad(err, path, line, "ranked", "must be a list of response strings, best first");
        const cJSON *x; int i = 0;
        cJSON_ArrayForEach(x, rk) {
            char fb[32]; snprintf(fb, sizeof fb, "ranked[%d]", i++);
            if (!cJSON_IsString(x)) return bad(err, path, line, fb, "must be a string");
            add_resp(it, x->valuestring);
        }
        if (it->n_resp < 2) return bad(err, path, line, "ranked", "needs at least 2 responses");
        return 0;
    }
    if (rs) {
        if (!(accept & PREFS_ACCEPT_SCORED)) return gk_errf(err, "%s:%zu: a single \"response\" is not accepted here (expected chosen/rejected or ranked)", path, line);
        if (!cJSON_IsString(rs)) return bad(err, path, line, "response", "must be a string");
        add_resp(it, rs->valuestring);
        return 0;
    }
    if (!(accept & PREFS_ACCEPT_PROMPTS)) {
        if (accept & PREFS_ACCEPT_PREFS) return bad(err, path, line, "chosen", "missing (expected \"chosen\"/\"rejected\" or \"ranked\")");
        return bad(err, path, line, "response", "missing");
    }
    return 0;
}

int prefs_parse_line(const char *text, const char *path, size_t line_no, int accept, prefs_item *it, gk_err *err) {
    memset(it, 0, sizeof *it);
    it->line = line_no;
    size_t badb = 0;
    if (!gk_utf8_valid(text, strlen(text), &badb))
        return gk_errf(err, "%s:%zu: invalid UTF-8 at byte %zu of the line (JSONL text must be UTF-8)", path, line_no, badb);
    cJSON *j = cJSON_Parse(text);
    if (!j) {
        const char *e = cJSON_GetErrorPtr();
        long off = e && e >= text ? (long)(e - text) : -1;
        return gk_errf(err, "%s:%zu: not valid JSON (near byte %ld)", path, line_no, off);
    }
    int rc = parse_obj(j, path, line_no, accept, it, err);
    cJSON_Delete(j);
    if (rc) prefs_item_free(it);
    it->line = line_no;
    return rc;
}

int prefs_load(const char *path, int accept, prefs_set *out, gk_err *err) {
    memset(out, 0, sizeof *out);
    gk_lines r;
    if (gk_lines_open(&r, path, err)) return -1;
    char *line; size_t ln, cap = 0;
    int rc = 0;
    while (gk_lines_next(&r, &line, &ln)) {
        if (out->n == cap) { cap = cap ? 2 * cap : 64; out->items = gk_realloc(out->items, cap * sizeof *out->items); }
        if (prefs_parse_line(line, path, ln, accept, &out->items[out->n], err)) { rc = -1; break; }
        out->n++;
    }
    gk_lines_close(&r);
    if (rc == 0 && out->n == 0) rc = gk_errf(err, "%s: no data lines", path);
    if (rc) { prefs_free(out); return -1; }
    out->path = gk_strdup(path);
    return 0;
}

void prefs_free(prefs_set *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) prefs_item_free(&s->items[i]);
    free(s->items); free(s->path);
    memset(s, 0, sizeof *s);
}

size_t prefs_num_pairs(const prefs_set *s) {
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++) n += s->items[i].n_resp * (s->items[i].n_resp - (s->items[i].n_resp > 0)) / 2;
    return n;
}
