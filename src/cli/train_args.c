/* train_args.c: the flags, --help and --resume handling every training command shares, driven by the stage's
 * option table (train.h, src/train/options.c). */
#include "cli/cli.h"
#include "core/core.h"
#include "train/train.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HELP_COL 24                   /* where the help text starts */
#define HELP_WIDTH 112                /* where it wraps */

/* "  -b, --batch B         sequences per micro-batch (default 8)", wrapped at HELP_WIDTH */
static void help_line(FILE *f, const train_opt *d) {
    char left[96], def[64] = "", help[512];
    const char *alias = d->alias ? d->alias : d->neg;
    if (alias && alias[1] != '-') snprintf(left, sizeof left, "%s, %s", alias, d->flag);      /* -b, --batch */
    else if (alias) snprintf(left, sizeof left, "%s, %s", d->flag, alias);                  /* --reward, --rm */
    else snprintf(left, sizeof left, "%s", d->flag);
    if (d->metavar) snprintf(left + strlen(left), sizeof left - strlen(left), " %s", d->metavar);
    if (d->def_str) snprintf(def, sizeof def, " (default %s)", d->def_str);
    else if (d->type == TRAIN_OPT_PRECISION) snprintf(def, sizeof def, " (default fp32)");
    else if (d->type != TRAIN_OPT_BOOL && d->type != TRAIN_OPT_STR && d->def != 0) snprintf(def, sizeof def, " (default %g)", d->def);
    snprintf(help, sizeof help, "%s%s", d->help, def);
    int col = fprintf(f, "  %-*s", HELP_COL - 4, left);
    if (col > HELP_COL - 2) col = fprintf(f, "\n%*s", HELP_COL, "") - 1;
    else col += fprintf(f, "  ");
    /* word wrap the help at HELP_WIDTH, continuing under the help column */
    for (const char *p = help; *p; ) {
        size_t w = strcspn(p, " ");
        if (p != help) {
            if (col + 1 + (int)w > HELP_WIDTH) col = fprintf(f, "\n%*s", HELP_COL, "") - 1;
            else col += fprintf(f, " ");
        }
        col += fprintf(f, "%.*s", (int)w, p);
        p += w;
        while (*p == ' ') p++;
    }
    fputs("\n", f);
}

/* head + every option of the table (malloc'd) */
static char *usage_text(const train_opt_table *t, const char *head) {
    char *buf = NULL; size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    GK_CHECK(f, "open_memstream failed");
    fputs(head, f);
    for (size_t i = 0; i < t->n; i++) {
        if (t->opts[i].type == TRAIN_OPT_SECTION) fprintf(f, "%s\n", t->opts[i].help);
        else help_line(f, &t->opts[i]);
    }
    fprintf(f, "  %-*s  no log lines on stderr\n", HELP_COL - 4, "-q, --quiet");
    fclose(f);
    return buf;
}

/* Every flag of argv applied to o in order (a flag given twice: the last wins). */
static void apply_flags(const train_opt_table *t, void *o, cli_args *a) {
    const char *f;
    gk_err err;
    while ((f = cli_next(a))) {
        if (cli_is(f, "-q", "--quiet")) { gk_verbose = 0; continue; }
        int v = 1;
        const train_opt *d = train_opt_by_flag(t, f, &v);
        if (!d) cli_unknown(a, f);
        const char *val = d->type == TRAIN_OPT_BOOL ? (v ? "1" : "0") : cli_str(a, f);
        if (train_opt_set(d, o, val, &err)) cli_usage_error(a, "%s: %s", f, err.msg);
        train_opt_apply_clears(t, d, o);
    }
}

static const char **str_field(const train_opt_table *t, void *o, const char *key) {
    const train_opt *d = train_opt_by_key(t, key);
    GK_CHECK(d && d->type == TRAIN_OPT_STR, "option table lacks the string option %s", key);
    return (const char **)((char *)o + d->off);
}

/* Options TRAIN_OPT_FRESH describes a fresh start with: a resumed run drops them. */
static void clear_fresh(const train_opt_table *t, void *o) {
    for (size_t i = 0; i < t->n; i++)
        if (t->opts[i].flags & TRAIN_OPT_FRESH) *(const char **)((char *)o + t->opts[i].off) = NULL;
}

int cli_train_opts(const train_opt_table *t, void *o, int argc, char **argv, const char *head) {
    char *usage = usage_text(t, head);
    cli_args a;
    /* pass 1 checks every flag and finds --resume; with it, the stored options become the base */
    void *scratch = gk_malloc(t->size);
    train_opts_default(t, scratch);
    cli_args_init(&a, argc, argv, usage);
    apply_flags(t, scratch, &a);
    const char *resume = *str_field(t, scratch, "resume_dir");
    free(scratch);
    train_opts_default(t, o);
    gk_err err;
    if (resume) {
        char *js = train_state_opts(resume, &err);
        if (!js || train_opts_from_json(t, o, js, &err)) {
            fprintf(stderr, "gptkit %s: %s\n", a.cmd, err.msg);
            free(js); free(usage);
            return 1;
        }
        free(js);
        *str_field(t, o, "out") = resume;
    }
    /* pass 2: the flags given override the stored options */
    cli_args_init(&a, argc, argv, usage);
    apply_flags(t, o, &a);
    if (resume) clear_fresh(t, o);
    if (train_opts_check(t, o, &err)) cli_usage_error(&a, "%s", err.msg);
    free(usage);
    return 0;
}
