/* test_options.c: the training stages' option tables (train.h, src/train/options.c) — the defaults the
 * hand-written functions had, the resume JSON round trip (seeds beyond 2^53 included), range checks, the
 * pipeline keys, and a table's internal consistency (every flag and key unique, every field covered). */
#include "train/train.h"
#include "testlib.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The defaults of every stage, as the hand-written *_opts_default functions set them before the tables. */
static void test_defaults(void) {
    pretrain_opts p; pretrain_opts_default(&p);
    CHECK(p.model_name && !strcmp(p.model_name, "d6") && p.B == 8 && p.T == 256 && p.steps == 1000, "pretrain sizes");
    CHECK(p.sched.lr == 6e-4f && p.sched.warmup == 100 && p.sched.shape == LR_COSINE && p.sched.final_frac == 0.1f, "pretrain schedule");
    CHECK(p.opt.beta1 == 0.9f && p.opt.beta2 == 0.95f && p.opt.eps == 1e-8f && p.opt.weight_decay == 0.1f && p.opt.grad_clip == 1.0f,
          "pretrain adamw");
    CHECK(p.seed == 1337 && p.shuffle == 1 && p.val_every == 250 && p.val_batches == 20 && p.save_every == 500, "pretrain misc");
    CHECK(!strcmp(p.out, "out/pretrain") && !p.init_dir && !p.resume_dir && !p.bf16 && !p.json, "pretrain strings");
    sft_opts s; sft_opts_default(&s);
    CHECK(s.B == 8 && s.T == 0 && s.epochs == 3 && s.steps == 0 && s.sched.lr == 1e-4f && s.sched.warmup == 10, "sft");
    CHECK(s.opt.weight_decay == 0.0f && s.opt.grad_clip == 1.0f && !strcmp(s.out, "out/sft"), "sft adamw/out");
    rm_opts r; rm_opts_default(&r);
    CHECK(r.batch == 8 && r.epochs == 1 && r.sched.shape == LR_LINEAR && r.sched.lr == 1e-4f && !strcmp(r.out, "out/rm"), "rm");
    ppo_opts o; ppo_opts_default(&o);
    CHECK(o.iters == 100 && o.batch_prompts == 8 && o.samples == 4 && o.max_new == 32 && o.temperature == 1.0f, "ppo rollouts");
    CHECK(o.beta == 0.05f && o.kl_horizon == 10000 && o.gamma == 1.0f && o.lambda == 0.95f && o.clip_eps == 0.2f, "ppo kl/gae");
    CHECK(o.ppo_epochs == 4 && o.minibatch == 8 && o.lr == 1e-5f && o.vf_lr == 1e-5f && o.sample_every == 5, "ppo update");
    CHECK(o.missing_end_penalty == 1.0f && o.opt.weight_decay == 0.0f && !strcmp(o.out, "out/ppo"), "ppo misc");
    dpo_opts d; dpo_opts_default(&d);
    CHECK(d.beta == 0.1f && d.batch == 8 && d.epochs == 1 && d.sched.lr == 1e-5f && d.sched.shape == LR_LINEAR, "dpo");
}

/* to_json -> from_json gives back every stored field; unstored ones (resume_dir, json, stop_at) stay default. */
static void test_json_roundtrip(void) {
    pretrain_opts a; pretrain_opts_default(&a);
    a.seed = 18446744073709551557ull;          /* above 2^53: only a decimal string holds it */
    a.sched.lr = 3.14159e-4f; a.sched.shape = LR_LINEAR; a.B = 3; a.n_ctx = 77; a.bf16 = 1; a.shuffle = 0;
    a.data = "x/*.bin"; a.resume_dir = "r"; a.json = 1; a.stop_at = 9;
    char *js = pretrain_opts_to_json(&a);
    pretrain_opts b; pretrain_opts_default(&b);
    gk_err err;
    CHECK(pretrain_opts_from_json(&b, js, &err) == 0, "from_json: %s", err.msg);
    CHECK(b.seed == a.seed, "seed %llu", (unsigned long long)b.seed);
    CHECK(b.sched.lr == a.sched.lr && b.sched.shape == LR_LINEAR && b.B == 3 && b.n_ctx == 77, "numbers");
    CHECK(b.bf16 == 1 && b.shuffle == 0 && b.data && !strcmp(b.data, "x/*.bin"), "bool, precision, string");
    CHECK(!b.resume_dir && !b.json && b.stop_at == 0, "unstored options were stored");
    CHECK(strstr(js, "\"seed\":\"18446744073709551557\"") != NULL, "seed not a decimal string: %s", js);
    free(js);
    free((char *)b.data); free((char *)b.out); free((char *)b.model_name);
    CHECK(pretrain_opts_from_json(&b, "{not json", &err) != 0, "bad JSON accepted");
}

static void test_set_and_ranges(void) {
    sft_opts o; sft_opts_default(&o);
    const train_opt_table *t = &train_opts_sft;
    gk_err err;
    int v = -1;
    const train_opt *d = train_opt_by_flag(t, "-b", &v);
    CHECK(d && !strcmp(d->key, "B") && v == 1, "alias -b");
    CHECK(train_opt_set(d, &o, "12", &err) == 0 && o.B == 12, "set batch");
    CHECK(train_opt_set(d, &o, "0", &err) != 0 && strstr(err.msg, ">= 1"), "batch 0 accepted (%s)", err.msg);
    CHECK(train_opt_set(d, &o, "3x", &err) != 0, "batch 3x accepted");
    d = train_opt_by_flag(t, "--final-lr-frac", NULL);
    CHECK(d && train_opt_set(d, &o, "1.5", &err) != 0 && strstr(err.msg, "[0, 1]"), "final frac 1.5 accepted");
    d = train_opt_by_flag(t, "--schedule", NULL);
    CHECK(d && train_opt_set(d, &o, "linear", &err) == 0 && o.sched.shape == LR_LINEAR, "schedule");
    CHECK(train_opt_set(d, &o, "step", &err) != 0, "schedule step accepted");
    d = train_opt_by_flag(t, "--precision", NULL);
    CHECK(d && train_opt_set(d, &o, "bf16", &err) == 0 && o.bf16 == 1, "precision bf16");
    CHECK(train_opt_set(d, &o, "fp16", &err) != 0 && strstr(err.msg, "fp32 or bf16"), "precision fp16 accepted");
    /* --epochs clears --steps (the later flag wins) */
    o.steps = 50;
    d = train_opt_by_flag(t, "--epochs", NULL);
    train_opt_set(d, &o, "2", &err);
    train_opt_apply_clears(t, d, &o);
    CHECK(o.epochs == 2 && o.steps == 0, "--epochs did not clear --steps");
    /* a bool's negative spelling */
    d = train_opt_by_flag(&train_opts_pretrain, "--no-shuffle", &v);
    CHECK(d && !strcmp(d->key, "shuffle") && v == 0, "--no-shuffle");
    CHECK(train_opt_by_flag(t, "--bogus", NULL) == NULL, "unknown flag found");
    /* whole-struct check: a stored value out of range is named by its flag */
    sft_opts_default(&o);
    o.sched.final_frac = 2;
    CHECK(train_opts_check(t, &o, &err) != 0 && strstr(err.msg, "--final-lr-frac"), "check: %s", err.msg);
}

static void test_pipeline_keys(void) {
    const train_opt *d = train_opt_by_pipe_key(&train_opts_pretrain, "pretrain.batch");
    CHECK(d && !strcmp(d->key, "B"), "pretrain.batch");
    d = train_opt_by_pipe_key(&train_opts_pretrain, "model.n_layer");
    CHECK(d && !strcmp(d->key, "n_layer"), "model.n_layer");
    d = train_opt_by_pipe_key(&train_opts_ppo, "ppo.prompts");
    CHECK(d && !strcmp(d->key, "batch_prompts"), "ppo.prompts");
    CHECK(train_opt_by_pipe_key(&train_opts_pretrain, "pretrain.data") == NULL, "a path is a pipeline key");
    CHECK(train_opt_by_pipe_key(&train_opts_sft, "pretrain.lr") == NULL, "another stage's key found");
    char buf[64];
    train_opt_pipe_key(&train_opts_dpo, train_opt_by_key(&train_opts_dpo, "lr"), buf, sizeof buf);
    CHECK(!strcmp(buf, "dpo.lr"), "dpo lr key %s", buf);
}

/* Flags, aliases and keys unique within a table; every option with a flag, a key and help; defaults in range. */
static void check_table(const train_opt_table *t) {
    for (size_t i = 0; i < t->n; i++) {
        const train_opt *a = &t->opts[i];
        if (a->type == TRAIN_OPT_SECTION) continue;
        CHECK(a->flag && a->key && a->help, "%s: option %zu lacks flag/key/help", t->stage, i);
        CHECK(a->off < t->size, "%s: %s outside the struct", t->stage, a->key);
        for (size_t k = i + 1; k < t->n; k++) {
            const train_opt *b = &t->opts[k];
            if (b->type == TRAIN_OPT_SECTION) continue;
            CHECK(strcmp(a->key, b->key), "%s: key %s twice", t->stage, a->key);
            CHECK(a->off != b->off, "%s: %s and %s share a field", t->stage, a->key, b->key);
            CHECK(strcmp(a->flag, b->flag) && (!b->alias || strcmp(a->flag, b->alias)) &&
                  (!a->alias || strcmp(a->alias, b->flag)), "%s: flag %s twice", t->stage, a->flag);
        }
        if (a->type == TRAIN_OPT_INT || a->type == TRAIN_OPT_LONG || a->type == TRAIN_OPT_FLOAT)
            CHECK(a->def >= a->min && a->def <= a->max, "%s: %s default out of range", t->stage, a->flag);
        if (a->clears) CHECK(train_opt_by_key(t, a->clears) != NULL, "%s: %s clears unknown %s", t->stage, a->key, a->clears);
    }
}

static void test_tables_consistent(void) {
    check_table(&train_opts_pretrain); check_table(&train_opts_sft); check_table(&train_opts_rm);
    check_table(&train_opts_ppo); check_table(&train_opts_dpo); check_table(&train_opts_grpo);
}

int main(void) {
    TL_RUN(test_defaults);
    TL_RUN(test_json_roundtrip);
    TL_RUN(test_set_and_ranges);
    TL_RUN(test_pipeline_keys);
    TL_RUN(test_tables_consistent);
    return tl_summary();
}
