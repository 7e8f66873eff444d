/* registry.c: the tool table ({name, JSON description, run function}), call parsing and result capping.
 * Everything a model writes is outside input: a call that does not parse, names no known tool or has bad
 * arguments becomes an "error: ..." result for the model to read, never a failure of the caller. */
#include "tools/tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;
    char *description;   /* JSON text */
    tool_run_fn run;
    void *ctx;
} tool_entry;

struct tool_registry {
    tool_entry *t;
    size_t n, cap;
};

tool_registry *tools_new(void) { return gk_calloc(1, sizeof(tool_registry)); }

void tools_free(tool_registry *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) { free(r->t[i].name); free(r->t[i].description); }
    free(r->t);
    free(r);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *d = gk_malloc(n + 1);
    memcpy(d, s, n + 1);
    return d;
}

static const tool_entry *find(const tool_registry *r, const char *name) {
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->t[i].name, name)) return &r->t[i];
    return NULL;
}

int tools_register(tool_registry *r, const char *name, const char *description, tool_run_fn run, void *ctx,
                   gk_err *err) {
    if (!name || !*name || !run) return gk_errf(err, "tools_register: a tool needs a name and a run function");
    if (find(r, name)) return gk_errf(err, "tool \"%s\" is registered twice", name);
    cJSON *d = cJSON_Parse(description ? description : "");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(d, "function");
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(fn, "name");
    int good = cJSON_IsObject(d) && cJSON_IsString(nm) && !strcmp(nm->valuestring, name);
    cJSON_Delete(d);
    if (!good)
        return gk_errf(err, "tool \"%s\": its description must be JSON {\"type\":\"function\",\"function\":{\"name\":\"%s\",...}}",
                       name, name);
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 4;
        r->t = gk_realloc(r->t, r->cap * sizeof *r->t);
    }
    r->t[r->n++] = (tool_entry){dup_str(name), dup_str(description), run, ctx};
    return 0;
}

size_t tools_count(const tool_registry *r) { return r->n; }
const char *tools_name(const tool_registry *r, size_t i) { return i < r->n ? r->t[i].name : NULL; }

char *tools_describe(const tool_registry *r) {
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < r->n; i++) cJSON_AddItemToArray(arr, cJSON_Parse(r->t[i].description));
    char *s = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    GK_CHECK(s, "cJSON_PrintUnformatted failed (out of memory)");
    char *out = dup_str(s);
    cJSON_free(s);
    return out;
}

/* ---------------------------------------------------------------- the built-in tools */

static const char *string_arg(const cJSON *args, const char *key, gk_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(args, key);
    if (!v) { gk_errf(err, "missing argument \"%s\"", key); return NULL; }
    if (!cJSON_IsString(v)) { gk_errf(err, "argument \"%s\" must be a string", key); return NULL; }
    return v->valuestring;
}

static int run_calc(void *ctx, const cJSON *args, char **out, gk_err *err) {
    (void)ctx;
    const char *e = string_arg(args, "expression", err);
    return e ? tools_calc_eval(e, out, err) : -1;
}

/* The program's output as the model sees it: stdout, then stderr after a marker, then how it ended. */
static int run_python(void *ctx, const cJSON *args, char **out, gk_err *err) {
    const tools_sandbox_opts *o = ctx;
    const char *code = string_arg(args, "code", err);
    if (!code) return -1;
    tools_sandbox_result res;
    if (tools_python_run(code, o, &res, err)) return -1;
    size_t cap = strlen(res.out) + strlen(res.errtext) + 160;
    char *s = gk_malloc(cap);
    int n = snprintf(s, cap, "%s%s", res.out, res.out_truncated ? " [stdout truncated]\n" : "");
    if (res.errtext[0] || res.err_truncated)
        n += snprintf(s + n, cap - (size_t)n, "[stderr]\n%s%s", res.errtext, res.err_truncated ? " [truncated]\n" : "");
    if (res.timed_out) snprintf(s + n, cap - (size_t)n, "[killed: time limit]");
    else if (res.signal) snprintf(s + n, cap - (size_t)n, "[killed by signal %d]", res.signal);
    else if (res.exit_code) snprintf(s + n, cap - (size_t)n, "[exit status %d]", res.exit_code);
    tools_sandbox_result_free(&res);
    *out = s;
    return 0;
}

static const char *CALC_DESC =
    "{\"type\":\"function\",\"function\":{\"name\":\"calc\",\"description\":\"Exact arithmetic on integers and "
    "fractions of any size: + - * / % ^ and parentheses.\",\"parameters\":{\"type\":\"object\",\"properties\":"
    "{\"expression\":{\"type\":\"string\",\"description\":\"e.g. 123456789 * 987654321\"}},\"required\":[\"expression\"]}}}";
static const char *PYTHON_DESC =
    "{\"type\":\"function\",\"function\":{\"name\":\"python\",\"description\":\"Runs a Python 3 program in a sandbox "
    "(no network, no files but its own, time and memory limits) and returns what it prints.\",\"parameters\":"
    "{\"type\":\"object\",\"properties\":{\"code\":{\"type\":\"string\",\"description\":\"the program; print the "
    "result\"}},\"required\":[\"code\"]}}}";

static tools_sandbox_opts g_python_opts;   /* the built-in python tool's limits (defaults) */

int tools_enable(tool_registry *r, const char *list, gk_err *err) {
    const char *p = list ? list : "";
    while (*p) {
        const char *q = strchr(p, ',');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        char name[32];
        if (n == 0 || n >= sizeof name) return gk_errf(err, "--tools: bad tool name in \"%s\" (known: calc, python)", list);
        memcpy(name, p, n); name[n] = 0;
        if (find(r, name)) { /* enabled already */ }
        else if (!strcmp(name, "calc")) { if (tools_register(r, "calc", CALC_DESC, run_calc, NULL, err)) return -1; }
        else if (!strcmp(name, "python")) {
            tools_sandbox_opts_default(&g_python_opts);
            if (tools_register(r, "python", PYTHON_DESC, run_python, &g_python_opts, err)) return -1;
        } else if (!strcmp(name, "retrieve")) return gk_errf(err, "--tools: retrieve searches an index: add --retrieve INDEX.db");
        else return gk_errf(err, "--tools: unknown tool \"%s\" (known: calc, python, retrieve)", name);
        p += n;
        if (*p == ',') p++;
    }
    return 0;
}

/* ---------------------------------------------------------------- calls */

static char *errorf(const char *fmt, const char *a, const char *b) {
    size_t cap = strlen(fmt) + (a ? strlen(a) : 0) + (b ? strlen(b) : 0) + 16;
    char *s = gk_malloc(cap);
    snprintf(s, cap, fmt, a ? a : "", b ? b : "");
    return s;
}

/* Cuts s to TOOLS_RESULT_MAX bytes at a UTF-8 character start, marking the cut. */
static char *cap_result(char *s) {
    size_t n = strlen(s);
    static const char mark[] = " [truncated]";
    if (n <= TOOLS_RESULT_MAX) return s;
    size_t k = TOOLS_RESULT_MAX - sizeof mark + 1;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    memcpy(s + k, mark, sizeof mark);
    return s;
}

char *tools_call(tool_registry *r, const char *call, size_t len, int *ok) {
    if (ok) *ok = 0;
    char *text = gk_malloc(len + 1);
    memcpy(text, call, len);
    text[len] = 0;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    char *res = NULL;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(j, "arguments");
    if (!cJSON_IsObject(j)) res = errorf("error: the tool call is not a JSON object {\"name\": ..., \"arguments\": {...}}", NULL, NULL);
    else if (!cJSON_IsString(name)) res = errorf("error: the tool call has no \"name\" string", NULL, NULL);
    else if (args && !cJSON_IsObject(args)) res = errorf("error: \"arguments\" of %s must be an object", name->valuestring, NULL);
    else {
        const tool_entry *t = find(r, name->valuestring);
        if (!t) {
            size_t cap = 64;
            for (size_t i = 0; i < r->n; i++) cap += strlen(r->t[i].name) + 2;
            char *known = gk_malloc(cap);
            known[0] = 0;
            for (size_t i = 0; i < r->n; i++) { if (i) strcat(known, ", "); strcat(known, r->t[i].name); }
            res = errorf("error: no tool named \"%s\" (available: %s)", name->valuestring, r->n ? known : "none");
            free(known);
        } else {
            cJSON *empty = args ? NULL : cJSON_CreateObject();
            gk_err e;
            char *out = NULL;
            if (t->run(t->ctx, args ? args : empty, &out, &e)) res = errorf("error: %s: %s", t->name, e.msg);
            else { res = out; if (ok) *ok = 1; }
            cJSON_Delete(empty);
        }
    }
    cJSON_Delete(j);
    return cap_result(res);
}
