/* cmd_tokenize.c: gptkit tokenize — text files to llm.c token shards, on all cores.
 *
 * Documents: each input file is one document, except .jsonl files, where each line is {"text": "..."} and
 * is one document (a bad line is an error naming file:line). Every document is preceded by <|endoftext|>
 * (as llm.c's and GPT-2's data preparation do), so the stream starts with it and documents are separated.
 *
 * Pipeline: input is read in 64 MB blocks (cut at piece boundaries found by tok_safe_cut, so the ids equal
 * those of the whole text; only a block with no such boundary at all is cut blindly), blocks
 * are cut again into ~1 MB segments, and segments are encoded in parallel (OpenMP, one tok_encoder per
 * thread). Tokens are appended in order to a spool file in DIR; at the end the first --val-fraction of
 * tokens (rounded up to the next document start; if that would leave no training tokens, cut exactly) goes
 * to val_000000.bin..., the rest to train_000000.bin..., at most --shard-tokens tokens per shard.
 *
 * Shard layout (llm.c): 256 int32 header [0]=20240520, [1]=version, [2]=token count, then the tokens:
 * version 1 = uint16 tokens (vocabularies up to 65,536), version 2 = uint32 tokens (larger vocabularies;
 * gptkit's extension). Every shard is written atomically. */
#include "cli/cli.h"
#include "core/core.h"
#include "tok/tok.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static const char *USAGE =
    "usage: gptkit tokenize --tokenizer T --input FILES... --out-dir DIR [--val-fraction F] [--shard-tokens N]\n\n"
    "Turns text into llm.c token shards: DIR/val_000000.bin, DIR/train_000000.bin, DIR/train_000001.bin, ...\n"
    "  --tokenizer T       .tiktoken file, GPT-2 directory (encoder.json + vocab.bpe), saved tokenizer, or gpt2/cl100k_base\n"
    "  --input FILES...    plain text (one document per file) or .jsonl ({\"text\": ...} per line, one document each)\n"
    "  --val-fraction F    fraction of tokens (first documents) for validation (default 0.05; 0 = none)\n"
    "  --shard-tokens N    tokens per shard (default 100000000)\n"
    "Each document is preceded by <|endoftext|>. Vocabularies over 65,536 write version-2 shards (uint32 tokens).\n"
    "Threads: OMP_NUM_THREADS (default all cores). See docs/tokenizer.md.\n";

#define SHARD_MAGIC 20240520
#define BLOCK (64u << 20)
#define SEG (1u << 20)

typedef struct { const uint8_t *p; size_t n; int doc_start; } segment;

typedef struct {
    const tok_tokenizer *t;
    tok_encoder **enc; int nthreads;
    FILE *spool; int wide;           /* wide: uint32 tokens */
    uint64_t ntok;
    uint64_t *docs; size_t ndocs, capdocs;   /* token offset of each document start (its <|endoftext|>) */
    int32_t eot;
    uint64_t bytes_done, bytes_total;
    double t0, last_log;
    void *wbuf; size_t wcap;
} ctx;

/* cut s[0..len) into segments of about SEG bytes at piece boundaries */
static void add_segments(const tok_tokenizer *t, segment **segs, size_t *ns, size_t *cap, const uint8_t *p, size_t n, int doc_start) {
    do {
        size_t take = tok_segment(t, p, n, SEG);
        if (*ns == *cap) { *cap = *cap ? 2 * *cap : 256; *segs = gk_realloc(*segs, *cap * sizeof **segs); }
        (*segs)[(*ns)++] = (segment){p, take, doc_start};
        doc_start = 0; p += take; n -= take;
    } while (n > 0);
}

static int flush_segments(ctx *c, segment *segs, size_t ns, gk_err *err) {
    tok_ids *out = gk_calloc(ns ? ns : 1, sizeof *out);
    long i;
#ifdef _OPENMP
    #pragma omp parallel for schedule(dynamic, 1)
#endif
    for (i = 0; i < (long)ns; i++) {
        int th = 0;
#ifdef _OPENMP
        th = omp_get_thread_num();
#endif
        tok_encoder_encode(c->enc[th], segs[i].p, segs[i].n, 0, &out[i]);
    }
    int rc = 0;
    for (size_t s = 0; s < ns; s++) {
        if (segs[s].doc_start) {
            if (c->ndocs == c->capdocs) { c->capdocs = c->capdocs ? 2 * c->capdocs : 1024; c->docs = gk_realloc(c->docs, c->capdocs * sizeof *c->docs); }
            c->docs[c->ndocs++] = c->ntok;
            tok_ids_push(&out[s], 0);   /* room; shift below */
            memmove(out[s].ids + 1, out[s].ids, (out[s].n - 1) * sizeof(int32_t));
            out[s].ids[0] = c->eot;
        }
        size_t n = out[s].n, w = c->wide ? 4 : 2;
        c->bytes_done += segs[s].n;
        if (n == 0) continue;
        if (n * w > c->wcap) { c->wcap = n * w; c->wbuf = gk_realloc(c->wbuf, c->wcap); }
        if (c->wide) memcpy(c->wbuf, out[s].ids, n * 4);
        else { uint16_t *d = c->wbuf; for (size_t k = 0; k < n; k++) d[k] = (uint16_t)out[s].ids[k]; }
        if (rc == 0 && fwrite(c->wbuf, w, n, c->spool) != n) rc = gk_errf(err, "writing the spool file: %s", strerror(errno));
        c->ntok += n;
    }
    for (size_t s = 0; s < ns; s++) tok_ids_free(&out[s]);
    free(out);
    if (gk_verbose && gk_now() - c->last_log > 2.0) {
        c->last_log = gk_now();
        double el = c->last_log - c->t0;
        char eb[32];
        gk_log("tokenize: %.1f/%.1f MB, %llu tokens, %.1f MB/s, ETA %s\n", c->bytes_done / 1e6, c->bytes_total / 1e6,
               (unsigned long long)c->ntok, c->bytes_done / el / 1e6,
               gk_fmt_duration(c->bytes_done ? el * (double)(c->bytes_total - c->bytes_done) / (double)c->bytes_done : -1, eb, sizeof eb));
    }
    return rc;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* plain text file: one document, streamed in blocks */
static int do_text_file(ctx *c, const char *path, gk_err *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return gk_errf(err, "%s: cannot open: %s", path, strerror(errno));
    uint8_t *buf = gk_malloc(BLOCK);
    size_t have = 0; int first = 1, rc = 0;
    segment *segs = NULL; size_t ns = 0, cap = 0;
    for (;;) {
        size_t r = fread(buf + have, 1, BLOCK - have, fp);
        have += r;
        if (ferror(fp)) { rc = gk_errf(err, "%s: read error", path); break; }
        int eof = feof(fp) || r == 0;
        size_t cut = eof ? have : tok_safe_cut(c->t, buf, have);
        ns = 0;
        if (cut > 0 || first) add_segments(c->t, &segs, &ns, &cap, buf, cut, first);   /* an empty file is an empty document */
        first = 0;
        if ((rc = flush_segments(c, segs, ns, err))) break;
        memmove(buf, buf + cut, have - cut);
        have -= cut;
        if (eof) break;   /* cut == have at end of file */
    }
    free(segs); free(buf); fclose(fp);
    return rc;
}

/* .jsonl: one document per line */
static int do_jsonl_file(ctx *c, const char *path, gk_err *err) {
    gk_lines L;
    if (gk_lines_open(&L, path, err)) return -1;
    char *line; size_t ln;
    segment *segs = NULL; size_t ns = 0, cap = 0, batch_bytes = 0;
    cJSON **docs = NULL; size_t nd = 0, capd = 0;
    int rc = 0;
    for (;;) {
        int more = gk_lines_next(&L, &line, &ln);
        if (more) {
            cJSON *j = cJSON_Parse(line);
            const cJSON *tx = j ? cJSON_GetObjectItemCaseSensitive(j, "text") : NULL;
            if (!j || !cJSON_IsObject(j) || !cJSON_IsString(tx)) {
                rc = gk_errf(err, "%s:%zu: expected a JSON object with a string field \"text\"%s", path, ln, j ? "" : " (not valid JSON)");
                cJSON_Delete(j);
                break;
            }
            if (nd == capd) { capd = capd ? 2 * capd : 256; docs = gk_realloc(docs, capd * sizeof *docs); }
            docs[nd++] = j;
            size_t n = strlen(tx->valuestring);
            add_segments(c->t, &segs, &ns, &cap, (const uint8_t *)tx->valuestring, n, 1);
            batch_bytes += strlen(line) + 1;
        }
        if ((!more && ns) || batch_bytes >= BLOCK / 4) {
            uint64_t before = c->bytes_done;
            rc = flush_segments(c, segs, ns, err);
            c->bytes_done = before + batch_bytes;   /* progress in file bytes */
            for (size_t k = 0; k < nd; k++) cJSON_Delete(docs[k]);
            nd = 0; ns = 0; batch_bytes = 0;
            if (rc) break;
        }
        if (!more) break;
    }
    for (size_t k = 0; k < nd; k++) cJSON_Delete(docs[k]);
    free(docs); free(segs);
    gk_lines_close(&L);
    return rc;
}

/* copies spool tokens [from, to) into shards PREFIX_%06d.bin */
static int write_shards(ctx *c, const char *dir, const char *prefix, uint64_t from, uint64_t to, uint64_t per,
                        int *nshards, gk_err *err) {
    size_t w = c->wide ? 4 : 2;
    *nshards = 0;
    if (fseeko(c->spool, (off_t)(from * w), SEEK_SET)) return gk_errf(err, "seeking the spool file: %s", strerror(errno));
    size_t bufn = 1u << 20;
    uint8_t *buf = gk_malloc(bufn * w);
    for (uint64_t s = from; s < to; s += per) {
        uint64_t n = to - s < per ? to - s : per;
        char name[64];
        snprintf(name, sizeof name, "%s_%06d.bin", prefix, *nshards);
        char *path = gk_path_join(dir, name);
        gk_afile *f = gk_afile_open(path, err);
        if (!f) { free(path); free(buf); return -1; }
        int32_t hdr[256] = {0};
        hdr[0] = SHARD_MAGIC; hdr[1] = c->wide ? 2 : 1; hdr[2] = (int32_t)n;
        gk_afile_write(f, hdr, sizeof hdr);
        for (uint64_t k = 0; k < n;) {
            size_t m = (size_t)(n - k < bufn ? n - k : bufn);
            if (fread(buf, w, m, c->spool) != m) { gk_afile_abort(f); free(path); free(buf); return gk_errf(err, "reading the spool file back failed"); }
            gk_afile_write(f, buf, m * w);
            k += m;
        }
        if (gk_afile_commit(f, err)) { free(path); free(buf); return -1; }
        free(path);
        (*nshards)++;
    }
    free(buf);
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    cli_args a; cli_args_init(&a, argc, argv, USAGE);
    const char *tp = NULL, *dir = NULL, *f, **inputs = NULL;
    int ninputs = 0; double valf = 0.05; long per = 100000000;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--tokenizer", "-t")) tp = cli_str(&a, f);
        else if (cli_is(f, "--input", "-i")) ninputs = cli_strs(&a, f, &inputs);
        else if (cli_is(f, "--out-dir", "-o")) dir = cli_str(&a, f);
        else if (cli_is(f, "--val-fraction")) valf = cli_double(&a, f);
        else if (cli_is(f, "--shard-tokens")) per = cli_long(&a, f);
        else cli_unknown(&a, f);
    }
    if (!tp) cli_usage_error(&a, "--tokenizer is required");
    if (!ninputs) cli_usage_error(&a, "--input is required");
    if (!dir) cli_usage_error(&a, "--out-dir is required");
    if (!(valf >= 0 && valf < 1)) cli_usage_error(&a, "--val-fraction must be in [0, 1)");
    if (per < 1 || per > 2147483647L) cli_usage_error(&a, "--shard-tokens must be in 1..2147483647");
    gk_err err;
    tok_tokenizer *t = tok_load(tp, &err);
    if (!t) { fprintf(stderr, "gptkit tokenize: %s\n", err.msg); return 1; }
    ctx c = {0};
    c.t = t; c.eot = tok_eot_id(t);
    if (c.eot < 0) { fprintf(stderr, "gptkit tokenize: tokenizer %s has no %s token to separate documents\n", tp, TOK_EOT); tok_free(t); return 1; }
    c.wide = tok_vocab_size(t) > 65536;
    for (int i = 0; i < ninputs; i++) {
        FILE *fp = fopen(inputs[i], "rb");
        if (!fp) { fprintf(stderr, "gptkit tokenize: %s: cannot open: %s\n", inputs[i], strerror(errno)); tok_free(t); return 1; }
        fseeko(fp, 0, SEEK_END); c.bytes_total += (uint64_t)ftello(fp); fclose(fp);
    }
    if (gk_mkdir_p(dir, &err)) { fprintf(stderr, "gptkit tokenize: %s\n", err.msg); tok_free(t); return 1; }
    char spname[64];
    snprintf(spname, sizeof spname, ".tokenize.spool.%d", (int)getpid());
    char *spath = gk_path_join(dir, spname);
    c.spool = fopen(spath, "w+b");
    if (!c.spool) { fprintf(stderr, "gptkit tokenize: %s: cannot create: %s\n", spath, strerror(errno)); free(spath); tok_free(t); return 1; }
    c.nthreads = gk_num_threads();
    c.enc = gk_malloc((size_t)c.nthreads * sizeof *c.enc);
    for (int i = 0; i < c.nthreads; i++) c.enc[i] = tok_encoder_new(t);
    c.t0 = c.last_log = gk_now();
    int rc = 0;
    for (int i = 0; i < ninputs && !rc; i++)
        rc = ends_with(inputs[i], ".jsonl") ? do_jsonl_file(&c, inputs[i], &err) : do_text_file(&c, inputs[i], &err);
    double t_enc = gk_now() - c.t0;
    int nval = 0, ntrain = 0;
    uint64_t split = 0;
    if (!rc && fflush(c.spool)) rc = gk_errf(&err, "writing the spool file: %s", strerror(errno));
    if (!rc) {
        if (valf > 0 && c.ntok > 0) {
            uint64_t target = (uint64_t)(valf * (double)c.ntok + 0.999999);
            split = c.ntok;
            for (size_t d = 0; d < c.ndocs; d++) if (c.docs[d] >= target) { split = c.docs[d]; break; }
            if (split >= c.ntok) split = target;   /* first document(s) too big: cut inside it */
            if (split == 0) split = 1;
        }
        rc = write_shards(&c, dir, "val", 0, split, (uint64_t)per, &nval, &err);
        if (!rc) rc = write_shards(&c, dir, "train", split, c.ntok, (uint64_t)per, &ntrain, &err);
    }
    fclose(c.spool);
    unlink(spath);
    if (rc) fprintf(stderr, "gptkit tokenize: %s\n", err.msg);
    else gk_log("tokenize: %llu bytes, %zu documents -> %llu tokens (%llu val, %llu train) in %d val + %d train shards "
                "(uint%d) in %s; encode %.2fs = %.1f MB/s on %d threads\n",
                (unsigned long long)c.bytes_done, c.ndocs, (unsigned long long)c.ntok, (unsigned long long)split,
                (unsigned long long)(c.ntok - split), nval, ntrain, c.wide ? 32 : 16, dir, t_enc,
                c.bytes_done / (t_enc > 0 ? t_enc : 1e-9) / 1e6, c.nthreads);
    for (int i = 0; i < c.nthreads; i++) tok_encoder_free(c.enc[i]);
    free(c.enc); free(c.docs); free(c.wbuf); free(spath); tok_free(t);
    return rc ? 1 : 0;
}
