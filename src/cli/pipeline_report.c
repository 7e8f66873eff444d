/* pipeline_report.c: the report card of a pipeline run — report.md (a person reads it: tables, sample
 * conversations, loss curves as SVG images), report.json (a program reads it), plots/<name>.svg. */
#include "cli/pipeline_internal.h"
#include "eval/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- SVG line charts */

static void nice_range(double lo, double hi, double *a, double *b) {
    if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
    double pad = (hi - lo) * 0.05;
    *a = lo - pad; *b = hi + pad;
}

int svg_line_chart(const char *path, const char *title, const char *xlabel, const char *ylabel,
                   const svg_series *s, size_t ns, gk_err *err) {
    static const char *colors[4] = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd" };
    const double W = 640, H = 360, L = 70, R = 20, T = 40, B = 50;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (size_t k = 0; k < ns; k++)
        for (size_t i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].x[i]) || !isfinite(s[k].y[i])) continue;
            if (s[k].x[i] < x0) x0 = s[k].x[i];
            if (s[k].x[i] > x1) x1 = s[k].x[i];
            if (s[k].y[i] < y0) y0 = s[k].y[i];
            if (s[k].y[i] > y1) y1 = s[k].y[i];
        }
    if (!isfinite(x0)) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
    nice_range(y0, y1, &y0, &y1);
    if (!(x1 > x0)) x1 = x0 + 1;
    gk_afile *f = gk_afile_open(path, err);
    if (!f) return -1;
    gk_afile_printf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    gk_afile_printf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    gk_afile_printf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">%s</text>\n", W / 2, title);
    double pw = W - L - R, ph = H - T - B;
    gk_afile_printf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#444\"/>\n", L, T, pw, ph);
    for (int t = 0; t <= 4; t++) {   /* grid and tick labels */
        double fy = T + ph * t / 4.0, vy = y1 - (y1 - y0) * t / 4.0;
        double fx = L + pw * t / 4.0, vx = x0 + (x1 - x0) * t / 4.0;
        gk_afile_printf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, fy, L + pw, fy);
        gk_afile_printf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n", L - 6, fy + 4, vy);
        gk_afile_printf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.4g</text>\n", fx, T + ph + 18, vx);
    }
    gk_afile_printf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n", L + pw / 2, H - 10, xlabel);
    gk_afile_printf(f, "<text x=\"16\" y=\"%.0f\" text-anchor=\"middle\" transform=\"rotate(-90 16 %.0f)\">%s</text>\n", T + ph / 2, T + ph / 2, ylabel);
    for (size_t k = 0; k < ns && k < 4; k++) {
        gk_afile_printf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" points=\"", colors[k]);
        for (size_t i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].x[i]) || !isfinite(s[k].y[i])) continue;
            gk_afile_printf(f, "%.1f,%.1f ", L + pw * (s[k].x[i] - x0) / (x1 - x0), T + ph * (y1 - s[k].y[i]) / (y1 - y0));
        }
        gk_afile_printf(f, "\"/>\n");
        if (s[k].n <= 30)
            for (size_t i = 0; i < s[k].n; i++)
                if (isfinite(s[k].x[i]) && isfinite(s[k].y[i]))
                    gk_afile_printf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n",
                                    L + pw * (s[k].x[i] - x0) / (x1 - x0), T + ph * (y1 - s[k].y[i]) / (y1 - y0), colors[k]);
        gk_afile_printf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"12\" height=\"3\" fill=\"%s\"/><text x=\"%.0f\" y=\"%.0f\">%s</text>\n",
                        L + 10, T + 12 + 16.0 * (double)k, colors[k], L + 27, T + 16 + 16.0 * (double)k, s[k].name);
    }
    gk_afile_printf(f, "</svg>\n");
    return gk_afile_commit(f, err);
}

/* ---------------------------------------------------------------- metrics */

void pipe_read_series(const char *path, const char *field, pipe_series *s) {
    memset(s, 0, sizeof *s);
    gk_lines r;
    if (gk_lines_open(&r, path, NULL)) return;
    char *line; size_t no;
    while (gk_lines_next(&r, &line, &no)) {
        cJSON *j = cJSON_Parse(line);
        if (!j) continue;
        cJSON *st = cJSON_GetObjectItem(j, "step"), *v = cJSON_GetObjectItem(j, field);
        if (cJSON_IsNumber(st) && cJSON_IsNumber(v)) {
            double x = st->valuedouble + 1;
            while (s->n && s->x[s->n - 1] >= x) s->n--;
            if (s->n == s->cap) {
                s->cap = s->cap ? 2 * s->cap : 256;
                s->x = gk_realloc(s->x, s->cap * sizeof(double));
                s->y = gk_realloc(s->y, s->cap * sizeof(double));
            }
            s->x[s->n] = x; s->y[s->n] = v->valuedouble; s->n++;
        }
        cJSON_Delete(j);
    }
    gk_lines_close(&r);
}
void pipe_series_free(pipe_series *s) { free(s->x); free(s->y); }

cJSON *pipe_read_event(const char *path, const char *event) {
    gk_lines r;
    if (gk_lines_open(&r, path, NULL)) return NULL;
    cJSON *last = NULL;
    char *line; size_t no;
    while (gk_lines_next(&r, &line, &no)) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *e = j ? cJSON_GetObjectItem(j, "event") : NULL;
        if (cJSON_IsString(e) && !strcmp(e->valuestring, event)) { cJSON_Delete(last); last = j; }
        else cJSON_Delete(j);
    }
    gk_lines_close(&r);
    return last;
}

/* One plot from up to two fields of a stage's metrics; returns 1 if written. */
static int plot(const pipe_cfg *c, const char *stage_dir, const char *name, const char *title, const char *ylabel,
                const char *f1, const char *n1, const char *f2, const char *n2) {
    char *dir = gk_path_join(c->run_dir, stage_dir);
    char *mp = gk_path_join(dir, "metrics.jsonl");
    pipe_series a, b;
    pipe_read_series(mp, f1, &a);
    memset(&b, 0, sizeof b);
    if (f2) pipe_read_series(mp, f2, &b);
    int ok = 0;
    if (a.n) {
        svg_series ss[2] = { { n1, a.x, a.y, a.n }, { n2, b.x, b.y, b.n } };
        char rel[256]; snprintf(rel, sizeof rel, "plots/%s.svg", name);
        char *pp = gk_path_join(c->run_dir, rel);
        ok = svg_line_chart(pp, title, "step", ylabel, ss, b.n ? 2 : 1, NULL) == 0;
        free(pp);
    }
    pipe_series_free(&a); pipe_series_free(&b);
    free(mp); free(dir);
    return ok;
}

/* ---------------------------------------------------------------- report */

static double num(cJSON *j, const char *k) {
    cJSON *v = j ? cJSON_GetObjectItem(j, k) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}
static cJSON *obj(cJSON *j, const char *k) { return j ? cJSON_GetObjectItem(j, k) : NULL; }

static void md_num(gk_afile *f, double v, const char *fmt) {
    if (isfinite(v)) gk_afile_printf(f, fmt, v); else gk_afile_printf(f, "–");
}

/* Issue 21's price of RLHF, part two: each model's calibration on multiple-choice items (a table, a reliability
 * diagram in plots/calibration.svg), and whether the talk's claim held: RLHF models peakier (more confident than
 * the base model on the items, lower token entropy than SFT) and less calibrated (higher ECE) than the base. */
static void calibration_section(const pipe_cfg *c, gk_afile *f, cJSON *ms, const char *const *mn, int nm) {
    cJSON *base = obj(obj(ms, "base"), "calibration");
    if (!base) return;
    gk_afile_printf(f, "## Calibration\n\n%.0f held-out questions (facts and arithmetic) asked as multiple choice: four replies each, "
                    "one right; a model's belief in a reply is the likelihood of that reply, normalised over the four (the base model "
                    "after a few-shot Q/A prompt, the others in the chat format; `gptkit eval --calibration`). Its answer is the most likely "
                    "reply and its confidence that reply's probability; the expected calibration error (ECE) is the mean gap between "
                    "confidence and accuracy over ten confidence bins, weighted by the items in each (0 = calibrated).\n\n"
                    "| model | accuracy | mean confidence | ECE | token entropy |\n|---|---|---|---|---|\n", num(base, "n"));
    svg_series ss[6];
    double xs[6][EVAL_CALIB_BINS], ys[6][EVAL_CALIB_BINS], diag[2] = { 0.25, 1.0 };
    size_t ns = 0;
    for (int k = 0; k < nm; k++) {
        cJSON *o = obj(ms, mn[k]), *cal = obj(o, "calibration");
        if (!cal) continue;
        gk_afile_printf(f, "| %s | %.1f%% | %.1f%% | **%.3f** | ", mn[k], 100 * num(cal, "accuracy"), 100 * num(cal, "confidence"),
                        num(cal, "ece"));
        md_num(f, num(o, "entropy"), "%.3f");
        gk_afile_printf(f, " |\n");
        size_t n = 0;
        cJSON *b;
        cJSON_ArrayForEach(b, obj(cal, "bins")) {
            if (num(b, "n") < 1 || n == EVAL_CALIB_BINS) continue;
            xs[ns][n] = num(b, "confidence"); ys[ns][n] = num(b, "accuracy"); n++;
        }
        ss[ns] = (svg_series){ mn[k], xs[ns], ys[ns], n };
        ns++;
    }
    ss[ns++] = (svg_series){ "calibrated", diag, diag, 2 };
    char *pp = gk_path_join(c->run_dir, "plots/calibration.svg");
    if (svg_line_chart(pp, "Reliability: accuracy against confidence (non-empty bins)", "confidence", "accuracy", ss, ns, NULL) == 0)
        gk_afile_printf(f, "\n![reliability diagram](plots/calibration.svg)\n");
    free(pp);
    /* the claim, judged on this run's numbers */
    double e0 = num(base, "ece"), c0 = num(base, "confidence"), hs = num(obj(ms, "sft"), "entropy");
    int held = 0, tried = 0;
    gk_afile_printf(f, "\nThe talk's claim is that RLHF models are peakier (less diverse, more confident) and less calibrated than base "
                    "models. In this run:");
    for (int k = 2; k < nm; k++) {
        cJSON *o = obj(ms, mn[k]), *cal = obj(o, "calibration");
        if (!cal) continue;
        int less_cal = num(cal, "ece") > e0, surer = num(cal, "confidence") > c0, narrower = num(o, "entropy") < hs;
        tried++; held += less_cal && surer && narrower;
        gk_afile_printf(f, " %s's ECE is %.3f against the base model's %.3f (%s calibrated), its mean confidence %.1f%% against %.1f%%, its "
                        "token entropy %.3f against SFT's %.3f (%s);", mn[k], num(cal, "ece"), e0, less_cal ? "less" : "better",
                        100 * num(cal, "confidence"), 100 * c0, num(o, "entropy"), hs, narrower ? "narrower" : "not narrower");
    }
    gk_afile_printf(f, " so the claim **%s** in this run (for %d of %d RLHF models).%s\n\n",
                    held == tried && tried ? "held" : held ? "held in part" : "did not hold", held, tried,
                    e0 > 0.2 ? " The base model here was pretrained on the KJV alone and knows none of these facts: its confident "
                               "answers come from the surface of the text, which is why it is not the well-calibrated base model of "
                               "the GPT-4 report." : "");
}

int pipe_report(const pipe_cfg *c, gk_err *err) {
    static const char *names[] = { "corpus", "tokenizer", "shards", "data", "pretrain", "sft", "rm", "ppo", "dpo", "grpo", "eval" };
    const size_t NS = sizeof names / sizeof names[0];
    cJSON *st[11];
    cJSON *all = cJSON_CreateObject();
    for (size_t i = 0; i < NS; i++) {
        st[i] = pipe_stage_result(c, names[i]);
        if (st[i]) cJSON_AddItemToObject(all, names[i], cJSON_Duplicate(st[i], 1));
    }
    char *pd = gk_path_join(c->run_dir, "plots");
    gk_mkdir_p(pd, NULL);
    free(pd);
    int p_pt = plot(c, "base", "pretrain_loss", "Pretraining loss", "loss (nats/token)", "loss", "train", "val_loss", "validation");
    int p_sft = plot(c, "sft", "sft_loss", "SFT loss (assistant tokens)", "loss", "loss", "train", "val_loss", "validation");
    int p_rm = plot(c, "rm", "rm_accuracy", "Reward model accuracy", "pairwise accuracy", "accuracy", "train batch", "val_accuracy", "held-out");
    int p_ppo = plot(c, "ppo", "ppo_reward", "PPO: mean reward-model score", "RM score", "score", "score", NULL, NULL);
    int p_kl = plot(c, "ppo", "ppo_kl", "PPO: KL to the SFT model", "KL (nats/response)", "kl", "KL", NULL, NULL);
    int p_dpo = plot(c, "dpo", "dpo_loss", "DPO loss", "loss", "loss", "train", "val_loss", "validation");
    int p_grpo = plot(c, "grpo", "grpo_reward", "GRPO: rollout accuracy and reward", "share of rollouts", "accuracy",
                      "accuracy (answer checks)", "reward", "reward");
    int p_gkl = plot(c, "grpo", "grpo_kl", "GRPO: KL to the SFT model", "KL (nats/response)", "kl", "KL", NULL, NULL);

    char *mdp = gk_path_join(c->run_dir, "report.md");
    gk_afile *f = gk_afile_open(mdp, err);
    free(mdp);
    if (!f) { cJSON_Delete(all); for (size_t i = 0; i < NS; i++) cJSON_Delete(st[i]); return -1; }
    gk_afile_printf(f, "# gptkit pipeline report\n\nRun directory `%s`; configuration in `config.txt`.\n\n", c->run_dir);
    gk_afile_printf(f, "## Stages\n\n| stage | wall time | what it achieved |\n|---|---|---|\n");
    double total = 0;
    for (size_t i = 0; i < NS; i++) {
        double s = num(st[i], "seconds");
        if (isfinite(s)) total += s;
        gk_afile_printf(f, "| %s | ", names[i]);
        md_num(f, s, "%.1f s");
        gk_afile_printf(f, " | ");
        cJSON *j = st[i];
        if (!j) gk_afile_printf(f, "not run");
        else if (i == 0) gk_afile_printf(f, "%.0f bytes of text", num(j, "bytes"));
        else if (i == 1) gk_afile_printf(f, "vocabulary %.0f, %.2f bytes/token on held-out text", num(j, "vocab_size"), num(j, "bytes_per_token"));
        else if (i == 2) gk_afile_printf(f, "%.0f train / %.0f val tokens", num(j, "train_tokens"), num(j, "val_tokens"));
        else if (i == 3) gk_afile_printf(f, "%.0f SFT conversations, %.0f preference lines, %.0f RL prompts, %.0f eval tasks",
                                         num(j, "sft_train.jsonl"), num(j, "prefs_train.jsonl"), num(j, "prompts.jsonl"), num(j, "eval.jsonl"));
        else if (i == 4) gk_afile_printf(f, "%.0f tokens; train loss %.3f, **val loss %.3f (%.3f bits/byte)**", num(j, "tokens"),
                                         num(j, "final_loss"), num(j, "val_loss"), num(j, "val_bpb"));
        else if (i == 5) gk_afile_printf(f, "%.0f steps; **held-out loss %.3f**", num(j, "steps"), num(j, "val_loss"));
        else if (i == 6) gk_afile_printf(f, "**held-out accuracy %.1f%%** on %.0f pairs (margin %.2f)", 100 * num(j, "val_acc"), num(j, "val_pairs"), num(j, "val_margin"));
        else if (i == 7) {
            cJSON *sc = obj(j, "score"), *kl = obj(j, "kl");
            int n = cJSON_GetArraySize(sc);
            if (n > 0) {
                double s0 = 0, s1 = 0, klmax = 0; int k = n < 5 ? n : 5;
                for (int q = 0; q < k; q++) { s0 += cJSON_GetArrayItem(sc, q)->valuedouble; s1 += cJSON_GetArrayItem(sc, n - 1 - q)->valuedouble; }
                for (int q = 0; q < n; q++) { double v = cJSON_GetArrayItem(kl, q)->valuedouble; if (v > klmax) klmax = v; }
                gk_afile_printf(f, "**mean RM score %.3f → %.3f** (first vs last %d iterations); KL max %.3f, target %.3g", s0 / k, s1 / k, k, klmax, num(j, "kl_target"));
            }
        }
        else if (i == 8) gk_afile_printf(f, "implicit-reward accuracy on held-out pairs %.1f%%", 100 * num(j, "val_acc"));
        else if (i == 9) {
            cJSON *ac = obj(j, "accuracy"), *kl = obj(j, "kl");
            int n = cJSON_GetArraySize(ac);
            if (cJSON_IsTrue(obj(j, "skipped"))) gk_afile_printf(f, "skipped (grpo.iters = 0)");
            else if (n > 0) {
                double a0 = 0, a1 = 0, klmax = 0; int k = n < 5 ? n : 5;
                for (int q = 0; q < k; q++) { a0 += cJSON_GetArrayItem(ac, q)->valuedouble; a1 += cJSON_GetArrayItem(ac, n - 1 - q)->valuedouble; }
                for (int q = 0; q < cJSON_GetArraySize(kl); q++) { double v = cJSON_GetArrayItem(kl, q)->valuedouble; if (v > klmax) klmax = v; }
                gk_afile_printf(f, "**rollout accuracy %.1f%% → %.1f%%** (first vs last %d iterations); KL max %.3f", 100 * a0 / k, 100 * a1 / k, k, klmax);
            }
        }
        else if (i == 10) gk_afile_printf(f, "see below");
        gk_afile_printf(f, " |\n");
    }
    gk_afile_printf(f, "| **total** | %.1f s | |\n\n", total);
    /* what each training stage cost (the stage skeleton's "resources" event): LoRA stages beside what full
     * finetuning of the same models holds in gradients and AdamW moments */
    gk_afile_printf(f, "## Training cost per stage\n\n| stage | finetuning | trainable parameters | gradients + AdamW | "
                       "full finetuning's | peak RSS | median step |\n|---|---|---|---|---|---|---|\n");
    for (size_t i = 4; i <= 9; i++) {
        cJSON *r = obj(st[i], "resources");
        if (!r) continue;
        double rank = num(r, "lora_rank"), n = num(r, "trainable_params"), all = num(r, "params");
        char mode[32];
        if (rank > 0) snprintf(mode, sizeof mode, "LoRA r=%.0f", rank); else snprintf(mode, sizeof mode, "full");
        gk_afile_printf(f, "| %s | %s | %.3g M (%.2f%% of %.3g M) | %.2f MB | %.2f MB | %.0f MB | %.1f ms |\n", names[i], mode,
                        n / 1e6, 100 * n / all, all / 1e6, num(r, "optimizer_grad_mb"), num(r, "full_optimizer_grad_mb"),
                        num(r, "peak_rss_mb"), num(r, "median_step_ms"));
    }
    gk_afile_printf(f, "\nSet `sft.lora_rank`, `rm.lora_rank`, `ppo.lora_rank`, `dpo.lora_rank` (0 = full finetuning) to compare "
                       "(docs/lora.md).\n\n");

    cJSON *ev = st[10];
    if (ev) {
        cJSON *ms = obj(ev, "models");
        gk_afile_printf(f, "## Task accuracy on held-out tasks\n\nGreedy answers to %.0f held-out tasks (arithmetic, facts, output formats, concise style). "
                        "The base model is prompted few-shot (%ld examples); the others get the chat format.\n\n",
                        num(obj(ms, "sft"), "tasks"), c->fewshot_k);
        gk_afile_printf(f, "| model | accuracy | vs SFT [paired 95%% CI] | follows format | concise | mean answer tokens | distinct-1 | distinct-2 | token entropy |\n|---|---|---|---|---|---|---|---|---|\n");
        const char *mn[5] = { "base", "sft", "ppo", "dpo", "grpo" };
        for (int k = 0; k < 5; k++) {
            cJSON *o = obj(ms, mn[k]);
            if (!o) continue;
            gk_afile_printf(f, "| %s%s | **", mn[k], k == 0 ? " (few-shot)" : "");
            md_num(f, 100 * num(o, "accuracy"), "%.1f%%");
            gk_afile_printf(f, "** | ");
            if (isfinite(num(o, "gain_vs_sft")))
                gk_afile_printf(f, "%+.1f [%+.1f, %+.1f] pts", 100 * num(o, "gain_vs_sft"), 100 * num(o, "gain_ci_lo"), 100 * num(o, "gain_ci_hi"));
            else gk_afile_printf(f, "–");
            gk_afile_printf(f, " | "); md_num(f, 100 * num(o, "format_rate"), "%.1f%%");
            gk_afile_printf(f, " | "); md_num(f, 100 * num(o, "concise_rate"), "%.1f%%");
            gk_afile_printf(f, " | "); md_num(f, num(o, "mean_tokens"), "%.1f");
            gk_afile_printf(f, " | "); md_num(f, num(o, "distinct1"), "%.3f");
            gk_afile_printf(f, " | "); md_num(f, num(o, "distinct2"), "%.3f");
            gk_afile_printf(f, " | "); md_num(f, num(o, "entropy"), "%.3f");
            gk_afile_printf(f, " |\n");
        }
        gk_afile_printf(f, "\nDiversity: distinct-n is the fraction of unique n-grams among %ld samples (temperature 1) per prompt, "
                        "averaged over %ld prompts; token entropy is the mean of −log p over sampled tokens (nats), an estimate "
                        "of the per-token entropy of the model's distribution. Lower numbers after RLHF mean narrower outputs.\n\n",
                        c->div_samples, c->div_prompts);
        calibration_section(c, f, ms, mn, 5);
        cJSON *wr = obj(ev, "win_rate_vs_sft");
        cJSON *sft_o = obj(ms, "sft"), *grpo_o = obj(ms, "grpo");
        if (grpo_o)
            gk_afile_printf(f, "GRPO (issue 21) was trained on the RL prompts with the answer checks as its only reward; its gain in "
                            "held-out accuracy over SFT is **%+.1f points, 95%% interval [%+.1f, %+.1f]** (paired over the same tasks: "
                            "mean of the per-task differences ± 1.96 standard errors) — the interval %s zero.\n\n",
                            100 * num(grpo_o, "gain_vs_sft"), 100 * num(grpo_o, "gain_ci_lo"), 100 * num(grpo_o, "gain_ci_hi"),
                            num(grpo_o, "gain_ci_lo") > 0 || num(grpo_o, "gain_ci_hi") < 0 ? "excludes" : "includes");
        (void)sft_o;
        gk_afile_printf(f, "## Win rates against the SFT model: the reward model and the gold rule\n\n"
                        "One reply per held-out prompt from each model (temperature 0.7, the same seed for both), judged by the reward "
                        "model (what PPO optimised) and by the **gold rule** the demo's preferences were generated from (4·correct + "
                        "2·follows format + 1·concise; `demo_gold`). Ties count half; W/T/L are wins, ties and losses. Best-of-N "
                        "samples N replies from the SFT model and keeps the reward model's favourite: N times the sampling cost of "
                        "one reply.\n\n"
                        "| model | samples per reply | RM win rate | 95%% CI | gold win rate | 95%% CI | gold W/T/L | gold score (SFT) | correct (SFT) |\n"
                        "|---|---|---|---|---|---|---|---|---|\n");
        const char *wn[4] = { "ppo", "dpo", "grpo", "best_of_n" };
        for (int k = 0; k < 4; k++) {
            cJSON *o = obj(wr, wn[k]), *g = obj(o, "gold");
            if (!o) continue;
            gk_afile_printf(f, "| %s | %.0f | **%.1f%%** | [%.1f%%, %.1f%%] | **%.1f%%** | [%.1f%%, %.1f%%] | %.0f/%.0f/%.0f | %.2f (%.2f) | %.0f%% (%.0f%%) |\n",
                            k == 3 ? "best-of-N (SFT)" : wn[k], isfinite(num(o, "samples_per_reply")) ? num(o, "samples_per_reply") : 1,
                            100 * num(o, "win_rate"), 100 * num(o, "ci_lo"), 100 * num(o, "ci_hi"),
                            100 * num(g, "win_rate"), 100 * num(g, "ci_lo"), 100 * num(g, "ci_hi"), num(g, "wins"), num(g, "ties"),
                            num(g, "losses"), num(g, "mean_score"), num(g, "mean_score_sft"), 100 * num(g, "correct"), 100 * num(g, "correct_sft"));
        }
        /* the targets, stated plainly */
        cJSON *bo = obj(obj(wr, "best_of_n"), "gold");
        for (int k = 0; k < 2; k++) {
            cJSON *g = obj(obj(wr, wn[k]), "gold");
            if (!g) continue;
            int met = num(g, "win_rate") >= 0.65 && num(g, "ci_lo") > 0.55;
            gk_afile_printf(f, "%s%s: gold win rate %.1f%% [%.1f%%, %.1f%%] — the target (≥ 65%%, lower end > 55%%) is **%s**",
                            k ? "" : "\n", wn[k], 100 * num(g, "win_rate"), 100 * num(g, "ci_lo"), 100 * num(g, "ci_hi"), met ? "met" : "not met");
            if (bo) gk_afile_printf(f, "; %s best-of-%.0f (%.1f%%) at 1/%.0f of its sampling cost", num(g, "win_rate") > num(bo, "win_rate") ? "above" : "not above",
                                    num(obj(wr, "best_of_n"), "samples_per_reply"), 100 * num(bo, "win_rate"), num(obj(wr, "best_of_n"), "samples_per_reply"));
            gk_afile_printf(f, ".\n\n");
        }
        cJSON *sr = obj(ev, "strategies");
        if (sr && cJSON_GetArraySize(sr)) {   /* issue 15: what thinking tokens and tools buy */
            gk_afile_printf(f, "\n## Strategies and tools (SFT model)\n\nThe SFT model on held-out small arithmetic (1–3 digit + and −) "
                            "under each strategy of `gptkit solve` (docs/strategies.md), and on big-number arithmetic (4–12 digit operands, + − ×) "
                            "without and with the `calc` tool. Accuracy with its 95%% Wilson interval; tokens generated and seconds per task "
                            "(the machine's load shows in the seconds).\n\n"
                            "| tasks | strategy | tools | accuracy | 95%% interval | tasks | tokens per task | seconds per task |\n|---|---|---|---|---|---|---|---|\n");
            cJSON *it;
            cJSON_ArrayForEach(it, sr) {
                const char *tl = cJSON_GetStringValue(obj(it, "tools"));
                gk_afile_printf(f, "| %s | %s | %s | **%.1f%%** | [%.1f%%, %.1f%%] | %.0f | %.1f | %.3f |\n",
                                cJSON_GetStringValue(obj(it, "tasks")), cJSON_GetStringValue(obj(it, "strategy")), tl && *tl ? tl : "–",
                                100 * num(it, "accuracy"), 100 * num(it, "ci_lo"), 100 * num(it, "ci_hi"), num(it, "n"),
                                num(it, "tokens_per_task"), num(it, "seconds_per_task"));
            }
        }
        /* retrieval (issue 16): recall@k on the demo document set */
        cJSON *rt = obj(ev, "retrieval"), *bm = obj(rt, "bm25");
        if (bm) gk_afile_printf(f, "\n## Retrieval\n\nRecall@k on the demo document set (%.0f documents of invented facts, %.0f paraphrased "
                                "questions, %.0f chunks): the share of questions whose top-k chunks hold the answer, from its document.\n\n"
                                "| mode | recall@1 | recall@5 | recall@10 |\n|---|---|---|---|\n| BM25 | %.1f%% | %.1f%% | %.1f%% |\n\n"
                                "Vector and hybrid rows need a sentence-embedding model, which the offline demo does not have: "
                                "`gptkit index build --embedder DIR` and `gptkit index eval` give them (docs/retrieval.md).\n",
                                num(rt, "documents"), num(rt, "questions"), num(rt, "chunks"), 100 * num(bm, "recall@1"),
                                100 * num(bm, "recall@5"), 100 * num(bm, "recall@10"));
        cJSON *an = obj(rt, "answering");
        if (bm && an) {
            gk_afile_printf(f, "\nAnswering the first %.0f of those questions (greedy, the answer must appear in the reply): without "
                            "retrieval, and with the best BM25 chunk (top %.0f) and its source before the question, as `gptkit chat --retrieve` "
                            "puts it where the model's context holds it (the prompts with a source). The names are invented, so without the source a model can only guess; "
                            "with it the model has to read. %s "
                            "Accuracy with its 95%% Wilson interval.\n\n"
                            "| model | without retrieval | 95%% interval | with retrieval (BM25) | 95%% interval | questions | prompts with a source | seconds |\n"
                            "|---|---|---|---|---|---|---|---|\n", num(an, "questions"), num(an, "top_k"),
                            c->sft_rag > 0 ? "The SFT data's reading exercises (`data.sft_rag`) are about other invented people."
                                           : "This run's SFT data has no reading exercises (`data.sft_rag = 0`, the default: they cost the "
                                             "other skills; bench/RESULTS.md has a run with 0.2), so expect little either way.");
            const char *rn[2] = { "sft", "ppo" };
            for (int k = 0; k < 2; k++) {
                cJSON *o = obj(an, rn[k]), *wo = obj(o, "without_retrieval"), *wi = obj(o, "with_retrieval");
                if (!wo || !wi) continue;
                gk_afile_printf(f, "| %s | **%.1f%%** | [%.1f%%, %.1f%%] | **%.1f%%** | [%.1f%%, %.1f%%] | %.0f | %.0f | %.1f |\n", rn[k],
                                100 * num(wo, "accuracy"), 100 * num(wo, "ci_lo"), 100 * num(wo, "ci_hi"), 100 * num(wi, "accuracy"),
                                100 * num(wi, "ci_lo"), 100 * num(wi, "ci_hi"), num(wi, "n"), num(wi, "prompts_with_source"), num(o, "seconds"));
            }
            cJSON *ss = obj(obj(obj(an, "sft"), "with_retrieval"), "samples"), *it;
            if (ss && cJSON_GetArraySize(ss)) gk_afile_printf(f, "\nThe SFT model with retrieval:\n\n");
            cJSON_ArrayForEach(it, ss) {
                /* the user turn spans lines (sources, then the question): each line quoted */
                gk_afile_printf(f, "> *user:* ");
                for (const char *u = cJSON_GetStringValue(obj(it, "user")); u && *u; u++) {
                    if (*u == '\n') gk_afile_printf(f, "<br>\n> ");
                    else gk_afile_printf(f, "%c", *u);
                }
                gk_afile_printf(f, "<br>\n> *sft:* %s  %s (expected %s)\n\n", cJSON_GetStringValue(obj(it, "reply")),
                                cJSON_IsTrue(obj(it, "correct")) ? "✓" : "✗", cJSON_GetStringValue(obj(it, "expected")));
            }
        }
        gk_afile_printf(f, "\n## Sample conversations\n\n");
        for (int k = 0; k < 5; k++) {
            cJSON *o = obj(ms, mn[k]);
            cJSON *ss = obj(o, "samples");
            if (!ss || !cJSON_GetArraySize(ss)) continue;
            gk_afile_printf(f, "**%s**\n\n", mn[k]);
            cJSON *it;
            cJSON_ArrayForEach(it, ss) {
                cJSON *sy = obj(it, "system");
                gk_afile_printf(f, "> ");
                if (cJSON_IsString(sy)) gk_afile_printf(f, "*system:* %s — ", sy->valuestring);
                gk_afile_printf(f, "*user:* %s<br>\n> *%s:* %s  %s (expected %s)\n\n",
                                cJSON_GetStringValue(obj(it, "user")), mn[k], cJSON_GetStringValue(obj(it, "reply")),
                                cJSON_IsTrue(obj(it, "correct")) ? "✓" : "✗", cJSON_GetStringValue(obj(it, "expected")));
            }
        }
    }
    gk_afile_printf(f, "## Curves\n\n");
    if (p_pt) gk_afile_printf(f, "![pretraining loss](plots/pretrain_loss.svg)\n\n");
    if (p_sft) gk_afile_printf(f, "![SFT loss](plots/sft_loss.svg)\n\n");
    if (p_rm) gk_afile_printf(f, "![reward model accuracy](plots/rm_accuracy.svg)\n\n");
    if (p_ppo) gk_afile_printf(f, "![PPO reward](plots/ppo_reward.svg)\n\n");
    if (p_kl) gk_afile_printf(f, "![PPO KL](plots/ppo_kl.svg)\n\n");
    if (p_dpo) gk_afile_printf(f, "![DPO loss](plots/dpo_loss.svg)\n\n");
    if (p_grpo) gk_afile_printf(f, "![GRPO accuracy](plots/grpo_reward.svg)\n\n");
    if (p_gkl) gk_afile_printf(f, "![GRPO KL](plots/grpo_kl.svg)\n\n");
    gk_afile_printf(f, "Talk to the result: `./build/gptkit chat --model %s/ppo`\n", c->run_dir);
    int rc = gk_afile_commit(f, err);

    char *jp = gk_path_join(c->run_dir, "report.json");
    char *js = cJSON_Print(all);
    if (rc == 0) rc = gk_write_file_atomic(jp, js, strlen(js), err);
    cJSON_free(js); free(jp);
    cJSON_Delete(all);
    for (size_t i = 0; i < NS; i++) cJSON_Delete(st[i]);
    return rc;
}
