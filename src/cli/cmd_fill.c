/* cmd_fill.c: gptkit fill — Guidance-style templates: fixed text with holes, filled in one pass over one KV
 * cache. Fixed text is fed to the model (never sampled); each hole is generated under its own constraint:
 *   {{gen NAME max_tokens=N stop="..." regex="..."}}   free text (up to a stop string) or a regex match
 *   {{select NAME options=["a", "b", ...]}}            one of the options
 *   {{grammar NAME file=PATH.gbnf}}                     a GBNF grammar
 *   {{VAR}}                                             replaced by --var VAR=VALUE before anything runs
 * The captures come back by name (--json: {"text": ..., "captures": {...}}). A constrained hole ends when its
 * grammar is complete and nothing may follow, when it may end and the model prefers to stop (its end-of-text
 * token), or, kept finishable, within max_tokens (every drawn token's shortest completion must fit, as in the
 * engine). */
#include "cli/cli.h"
#include "core/core.h"
#include "eval/eval.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
"usage: gptkit fill --model DIR --template FILE [--var NAME=VALUE ...] [--json] [options]\n"
"\n"
"Fills a template's holes in one pass over one KV cache (docs/constrain.md, Templates):\n"
"  {{gen NAME max_tokens=N stop=\"...\" regex=\"...\"}}  {{select NAME options=[\"a\",\"b\"]}}\n"
"  {{grammar NAME file=PATH.gbnf}}  {{VAR}} (from --var VAR=VALUE)\n"
"\n"
"  --model DIR           checkpoint\n"
"  --template FILE       the template\n"
"  --var NAME=VALUE      a variable (repeatable)\n"
"  --temperature T       0 = greedy (default 0)\n"
"  --seed S              sampling seed (default 1337)\n"
"  --json                {\"text\": the filled text, \"captures\": {NAME: value}} on stdout\n"
"  --tokenizer PATH      override the tokenizer recorded in the checkpoint\n"
"  -q, --quiet           no log lines on stderr\n";

typedef struct { char *buf; size_t n, cap; } sbuf;
static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) { b->cap = (b->n + n + 1) * 2; b->buf = gk_realloc(b->buf, b->cap); }
    memcpy(b->buf + b->n, s, n); b->n += n; b->buf[b->n] = 0;
}

/* ---------------------------------------------------------------- hole arguments */

typedef struct {
    char kind[16], name[64];
    long max_tokens;
    char *stop, *regex, *file;
    char **options; size_t n_options;
} hole;
static void hole_free(hole *h) {
    free(h->stop); free(h->regex); free(h->file);
    for (size_t k = 0; k < h->n_options; k++) free(h->options[k]);
    free(h->options);
}

/* a "quoted string" at *p (\" and \\ escapes); malloc'd, *p moved past it; NULL on error */
static char *quoted(const char **p) {
    const char *s = *p;
    if (*s != '"') return NULL;
    s++;
    sbuf b = {0};
    sb_add(&b, "", 0);
    while (*s && *s != '"') {
        if (*s == '\\' && s[1]) {
            char c = s[1] == 'n' ? '\n' : s[1] == 't' ? '\t' : s[1];
            sb_add(&b, &c, 1); s += 2;
        } else { sb_add(&b, s, 1); s++; }
    }
    if (*s != '"') { free(b.buf); return NULL; }
    *p = s + 1;
    return b.buf;
}

static int parse_hole(const char *in, size_t n, hole *h, gk_err *err) {
    memset(h, 0, sizeof *h);
    h->max_tokens = 32;
    char *s0 = gk_malloc(n + 1);
    memcpy(s0, in, n); s0[n] = 0;
    const char *p = s0;
    int rc = 0;
#define SKIP while (*p == ' ' || *p == '\t' || *p == '\n') p++
    SKIP;
    size_t k = 0;
    while (*p && *p != ' ' && *p != '\t' && *p != '\n' && k + 1 < sizeof h->kind) h->kind[k++] = *p++;
    SKIP;
    k = 0;
    while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '=' && k + 1 < sizeof h->name) h->name[k++] = *p++;
    if (strcmp(h->kind, "gen") && strcmp(h->kind, "select") && strcmp(h->kind, "grammar")) { free(s0); return 1; }   /* a variable */
    if (!h->name[0]) { free(s0); return gk_errf(err, "{{%s}} needs a NAME", h->kind); }
    for (;;) {
        SKIP;
        if (!*p) break;
        const char *key = p;
        while (*p && *p != '=') p++;
        if (*p != '=') { rc = gk_errf(err, "{{%s %s}}: expected key=value near '%s'", h->kind, h->name, key); break; }
        size_t kl = (size_t)(p - key);
        p++;
        if (kl == 10 && !strncmp(key, "max_tokens", 10)) {
            char *end; h->max_tokens = strtol(p, &end, 10);
            if (end == p || h->max_tokens < 1 || h->max_tokens > 4096) { rc = gk_errf(err, "{{%s %s}}: max_tokens must be 1..4096", h->kind, h->name); break; }
            p = end;
        } else if ((kl == 4 && !strncmp(key, "stop", 4)) || (kl == 5 && !strncmp(key, "regex", 5)) || (kl == 4 && !strncmp(key, "file", 4))) {
            char *v = quoted(&p);
            if (!v) { rc = gk_errf(err, "{{%s %s}}: %.*s needs a \"quoted\" value", h->kind, h->name, (int)kl, key); break; }
            char **dst = key[0] == 's' ? &h->stop : key[0] == 'r' ? &h->regex : &h->file;
            free(*dst); *dst = v;
        } else if (kl == 7 && !strncmp(key, "options", 7)) {
            if (*p != '[') { rc = gk_errf(err, "{{select %s}}: options=[\"a\", \"b\"]", h->name); break; }
            p++;
            for (;;) {
                SKIP;
                if (*p == ']') { p++; break; }
                char *v = quoted(&p);
                if (!v) { rc = gk_errf(err, "{{select %s}}: options must be \"quoted\" strings", h->name); break; }
                h->options = gk_realloc(h->options, (h->n_options + 1) * sizeof *h->options);
                h->options[h->n_options++] = v;
                SKIP;
                if (*p == ',') p++;
            }
            if (rc) break;
        } else { rc = gk_errf(err, "{{%s %s}}: unknown argument '%.*s'", h->kind, h->name, (int)kl, key); break; }
    }
#undef SKIP
    free(s0);
    if (rc) return -1;
    if (!strcmp(h->kind, "select") && !h->n_options) return gk_errf(err, "{{select %s}}: no options", h->name);
    if (!strcmp(h->kind, "grammar") && !h->file) return gk_errf(err, "{{grammar %s}}: file=\"PATH.gbnf\" is required", h->name);
    return 0;
}

/* ---------------------------------------------------------------- generation on one slot */

typedef struct {
    eval_model *em;
    float *logits;        /* [V] after the last fed token */
    float *work, *probs;  /* [V] */
    uint32_t *words;
    infer_sampling samp;
    gk_rng rng;
    int32_t eot;
    size_t V;
} filler;

static int feed_text(filler *f, const char *s, size_t n, gk_err *err) {
    if (!n) return 0;
    tok_ids ids = {0};
    tok_encode(f->em->tok, s, n, 0, &ids);
    int rc = engine_feed(f->em->e, 0, ids.ids, ids.n, f->logits, err);
    tok_ids_free(&ids);
    return rc;
}

/* Generates one hole; its text appended to out. c NULL = unconstrained (stop string / max_tokens / EOT). */
static int gen_hole(filler *f, constrain *c, const hole *h, sbuf *out, gk_err *err) {
    constrain_state *st = c ? constrain_state_new(c) : NULL;
    tok_bytes text = {0};
    int rc = 0;
    size_t V = f->V;
    for (long t = 0; t < h->max_tokens; t++) {
        if (engine_slot_len(f->em->e, 0) >= engine_max_len(f->em->e)) break;
        memcpy(f->work, f->logits, V * sizeof(float));
        for (size_t v = tok_vocab_size(f->em->tok); v < V; v++) f->work[v] = -INFINITY;   /* padding ids are not tokens */
        if (st) {
            if (constrain_state_is_done(st)) break;
            size_t allowed = constrain_apply(c, st, f->work, V, f->words);
            int can_end = constrain_state_can_end(st);
            if (can_end && f->eot >= 0) { f->work[f->eot] = f->logits[f->eot]; allowed++; }   /* the model may stop here */
            if (!allowed) break;
        }
        infer_sampling_probs(&f->samp, f->work, V, NULL, NULL, f->probs);
        int32_t id = infer_draw(f->probs, V, &f->rng);
        if (st) {   /* keep the hole finishable within max_tokens (see the engine's budget rule) */
            size_t left = (size_t)(h->max_tokens - t), need = constrain_min_to_end(c, st);
            double mass = 1.0;
            for (int tries = 0; need <= left && tries < 256; tries++) {
                size_t m = id == f->eot ? (constrain_state_can_end(st) ? 0 : SIZE_MAX) : constrain_min_after(c, st, id);
                if (m <= left - 1) break;
                mass -= f->probs[id]; f->probs[id] = 0;
                if (mass <= 1e-9) break;
                id = infer_draw(f->probs, V, &f->rng);
            }
        }
        if (id == f->eot || !tok_text_len(f->em->tok, id)) break;   /* end of text, or a special token: the hole ends */
        if (st && constrain_accept_token(c, st, id)) { rc = gk_errf(err, "hole %s: internal: the grammar rejected a token it allowed", h->name); break; }
        size_t before = text.n;
        tok_decode(f->em->tok, &id, 1, &text, err);
        if (engine_feed(f->em->e, 0, &id, 1, f->logits, err)) { rc = -1; break; }
        if (h->stop && !st) {   /* a stop string ends the hole; the text is cut before it */
            size_t L = strlen(h->stop);
            size_t from = before >= L ? before - L + 1 : 0;
            int hit = 0;
            for (size_t i = from; L && i + L <= text.n; i++)
                if (!memcmp(text.data + i, h->stop, L)) { text.n = i; hit = 1; break; }
            if (hit) break;
        }
    }
    if (!rc && st && !constrain_state_can_end(st)) rc = gk_errf(err, "hole %s: max_tokens=%ld is too few to complete its constraint", h->name, h->max_tokens);
    if (!rc) sb_add(out, text.data ? (const char *)text.data : "", text.n);
    tok_bytes_free(&text);
    constrain_state_free(st);
    return rc;
}

static char *literal_gbnf_select(const hole *h) {
    sbuf b = {0};
    sb_add(&b, "root ::= ", 9);
    for (size_t k = 0; k < h->n_options; k++) {
        if (k) sb_add(&b, " | ", 3);
        sb_add(&b, "\"", 1);
        for (const char *s = h->options[k]; *s; s++) {
            char e[8];
            if (*s == '"' || *s == '\\') { e[0] = '\\'; e[1] = *s; sb_add(&b, e, 2); }
            else if (*s == '\n') sb_add(&b, "\\n", 2);
            else if ((unsigned char)*s < 0x20) { snprintf(e, sizeof e, "\\x%02X", (unsigned char)*s); sb_add(&b, e, 4); }
            else sb_add(&b, s, 1);
        }
        sb_add(&b, "\"", 1);
    }
    sb_add(&b, "\n", 1);
    return b.buf;
}

int cmd_fill(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv, USAGE);
    const char *f, *model = NULL, *tpath = NULL, *tok_path = NULL;
    const char *vars[64]; size_t nvars = 0;
    int json = 0;
    infer_sampling samp;
    infer_sampling_default(&samp);
    samp.temperature = 0;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--model")) model = cli_str(&a, f);
        else if (cli_is(f, "--template")) tpath = cli_str(&a, f);
        else if (cli_is(f, "--tokenizer")) tok_path = cli_str(&a, f);
        else if (cli_is(f, "--var")) { if (nvars == 64) cli_usage_error(&a, "at most 64 --var"); vars[nvars++] = cli_str(&a, f); if (!strchr(vars[nvars - 1], '=')) cli_usage_error(&a, "--var NAME=VALUE"); }
        else if (cli_is(f, "--temperature")) samp.temperature = (float)cli_double(&a, f);
        else if (cli_is(f, "--seed")) samp.seed = (uint64_t)cli_long(&a, f);
        else if (cli_is(f, "--json")) json = 1;
        else if (cli_is(f, "-q", "--quiet")) gk_verbose = 0;
        else cli_unknown(&a, f);
    }
    if (!model || !tpath) cli_usage_error(&a, "--model DIR and --template FILE are required");
    gk_err err;
    if (infer_sampling_validate(&samp, &err)) cli_usage_error(&a, "%s", err.msg);
    char *tpl = NULL; size_t tn = 0;
    eval_model em;
    memset(&em, 0, sizeof em);
    constrain_vocab *cv = NULL;
    filler F;
    memset(&F, 0, sizeof F);
    sbuf text = {0};
    cJSON *caps = cJSON_CreateObject();
    int rc = 1;
    if (gk_read_file(tpath, &tpl, &tn, &err)) goto out;
    if (eval_model_open(&em, model, tok_path, 1, 0, 1, &err)) goto out;
    cv = constrain_vocab_new(em.tok);
    F.em = &em; F.V = (size_t)em.m->cfg.vocab_size; F.samp = samp;
    F.logits = gk_malloc(F.V * sizeof(float)); F.work = gk_malloc(F.V * sizeof(float)); F.probs = gk_malloc(F.V * sizeof(float));
    F.words = gk_malloc((F.V + 31) / 32 * sizeof(uint32_t));
    F.eot = tok_eot_id(em.tok);
    gk_rng_seed(&F.rng, samp.seed);
    engine_reset(em.e, 0);
    sb_add(&text, "", 0);
    size_t fed = 0;   /* bytes of text already fed to the model */
    for (size_t i = 0; i < tn;) {
        const char *o = strstr(tpl + i, "{{");
        size_t stop = o ? (size_t)(o - tpl) : tn;
        sb_add(&text, tpl + i, stop - i);
        if (!o) break;
        const char *cl = strstr(o + 2, "}}");
        if (!cl) { gk_errf(&err, "%s: '{{' at byte %zu is not closed", tpath, stop); goto out; }
        hole h;
        int hr = parse_hole(o + 2, (size_t)(cl - o - 2), &h, &err);
        if (hr < 0) { gk_err_prefix(&err, "%s", tpath); goto out; }
        i = (size_t)(cl + 2 - tpl);
        if (hr == 1) {   /* {{VAR}} */
            int found = 0;
            for (size_t k = 0; k < nvars && !found; k++) {
                size_t L = strlen(h.kind);
                if (!strncmp(vars[k], h.kind, L) && vars[k][L] == '=') { sb_add(&text, vars[k] + L + 1, strlen(vars[k] + L + 1)); found = 1; }
            }
            hole_free(&h);
            if (!found) { gk_errf(&err, "%s: {{%s}} has no --var %s=VALUE", tpath, h.kind, h.kind); goto out; }
            continue;
        }
        /* feed the fixed text so far (one piece per hole: the cache grows, nothing is re-run) */
        if (text.n == 0 && fed == 0) { gk_errf(&err, "%s: the template must start with some text before the first hole", tpath); hole_free(&h); goto out; }
        if (feed_text(&F, text.buf + fed, text.n - fed, &err)) { hole_free(&h); goto out; }
        fed = text.n;
        char *gbnf = NULL;
        if (!strcmp(h.kind, "select")) gbnf = literal_gbnf_select(&h);
        else if (!strcmp(h.kind, "grammar")) {
            char *d; size_t n;
            if (gk_read_file(h.file, &d, &n, &err)) { hole_free(&h); goto out; }
            gbnf = constrain_spec_to_gbnf(CONSTRAIN_GBNF, d, n, &err);
            free(d);
        } else if (h.regex && !(gbnf = constrain_regex_to_gbnf(h.regex, &err))) { gk_err_prefix(&err, "%s: {{gen %s}}", tpath, h.name); hole_free(&h); goto out; }
        constrain *c = NULL;
        if (gbnf) {
            constrain_grammar *g = constrain_grammar_parse(gbnf, strlen(gbnf), NULL, &err);
            free(gbnf);
            if (!g) { gk_err_prefix(&err, "%s: {{%s %s}}", tpath, h.kind, h.name); hole_free(&h); goto out; }
            c = constrain_new(g, cv, NULL, 0);
        }
        sbuf cap = {0};
        sb_add(&cap, "", 0);
        int gr = gen_hole(&F, c, &h, &cap, &err);
        constrain_free(c);
        if (gr) { hole_free(&h); free(cap.buf); goto out; }
        cJSON_AddStringToObject(caps, h.name, cap.buf);
        sb_add(&text, cap.buf, cap.n);
        fed = text.n;   /* the hole's tokens are in the cache already */
        free(cap.buf);
        hole_free(&h);
    }
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "text", text.buf);
        cJSON_AddItemToObject(j, "captures", caps);
        caps = NULL;
        char *s = cJSON_PrintUnformatted(j);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(j);
    } else printf("%s\n", text.buf);
    rc = 0;
out:
    if (rc) fprintf(stderr, "gptkit fill: %s\n", err.msg);
    cJSON_Delete(caps);
    free(text.buf); free(tpl);
    free(F.logits); free(F.work); free(F.probs); free(F.words);
    constrain_vocab_free(cv);
    eval_model_close(&em);
    return rc;
}
