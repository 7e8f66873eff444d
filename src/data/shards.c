/* shards.c: llm.c token shards — validation, mmap, and the batch loader (sequential and shuffled).
 * See data.h for the file layout and the exact batch order of each mode. */
#include "data/data.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- one shard */

int data_shard_open(data_shard *s, const char *path, gk_err *err) {
    memset(s, 0, sizeof *s);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return gk_errf(err, "%s: cannot open shard: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) { close(fd); return gk_errf(err, "%s: not a regular file", path); }
    size_t len = (size_t)st.st_size;
    size_t hdr = DATA_SHARD_HEADER_INTS * sizeof(int32_t);
    if (len < hdr) {
        close(fd);
        return gk_errf(err, "%s: truncated shard: %zu bytes, shorter than the %zu-byte header", path, len, hdr);
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return gk_errf(err, "%s: cannot mmap: %s", path, strerror(errno));
    const int32_t *h = map;
    int rc = 0;
    if (h[0] != DATA_SHARD_MAGIC) {
        rc = gk_errf(err, "%s: not a token shard: magic %d, expected %d (llm.c .bin layout)", path, h[0], DATA_SHARD_MAGIC);
    } else if (h[1] != 1 && h[1] != 2) {
        rc = gk_errf(err, "%s: unsupported shard version %d (1 = uint16 tokens, 2 = uint32 tokens)", path, h[1]);
    } else if (h[2] < 0) {
        rc = gk_errf(err, "%s: negative token count %d in header", path, h[2]);
    } else {
        int tb = h[1] == 1 ? 2 : 4;
        size_t need = hdr + (size_t)(uint32_t)h[2] * (size_t)tb;
        if (len < need)
            rc = gk_errf(err, "%s: truncated shard: header says %d tokens (%zu bytes), file has %zu bytes",
                         path, h[2], need, len);
        else if (len > need)
            rc = gk_errf(err, "%s: %zu trailing bytes after the %d tokens the header announces", path, len - need, h[2]);
        else {
            s->tok_bytes = tb;
            s->ntok = (size_t)(uint32_t)h[2];
        }
    }
    if (rc) { munmap(map, len); return rc; }
    s->path = gk_strdup(path);
    s->map = map; s->map_len = len;
    s->tokens = (const uint8_t *)map + hdr;
    return 0;
}

void data_shard_close(data_shard *s) {
    if (s->map) munmap(s->map, s->map_len);
    free(s->path);
    memset(s, 0, sizeof *s);
}

int data_shard_write(const char *path, const uint32_t *tokens, size_t n, int force32, gk_err *err) {
    if (n > INT32_MAX) return gk_errf(err, "%s: %zu tokens do not fit one shard (max %d)", path, n, INT32_MAX);
    int wide = force32;
    for (size_t i = 0; i < n && !wide; i++) if (tokens[i] > 65535) wide = 1;
    int32_t hdr[DATA_SHARD_HEADER_INTS] = {0};
    hdr[0] = DATA_SHARD_MAGIC; hdr[1] = wide ? 2 : 1; hdr[2] = (int32_t)n;
    gk_afile *f = gk_afile_open(path, err);
    if (!f) return -1;
    gk_afile_write(f, hdr, sizeof hdr);
    if (wide) gk_afile_write(f, tokens, n * 4);
    else {
        uint16_t buf[4096];
        for (size_t i = 0; i < n; ) {
            size_t k = 0;
            for (; k < 4096 && i < n; k++, i++) buf[k] = (uint16_t)tokens[i];
            gk_afile_write(f, buf, k * 2);
        }
    }
    return gk_afile_commit(f, err);
}

/* ---------------------------------------------------------------- loader */

struct data_loader {
    data_shard *shards; size_t n;
    size_t B, T;
    int shuffle; uint64_t seed;
    uint32_t vocab;
    data_pos p;
    /* shuffled mode: current epoch's shard order and the current shard's window permutation */
    uint32_t *order;           /* [n] */
    uint32_t *perm; size_t perm_n; int64_t perm_shard; uint64_t perm_epoch;
    uint64_t order_epoch; int order_valid;
};

static size_t n_windows(const data_loader *dl, size_t s) {
    size_t ntok = dl->shards[s].ntok;
    return ntok > dl->T ? (ntok - 1) / dl->T : 0;
}

/* Seeded permutations: recomputed from (seed, epoch[, shard]) so the position alone restores them. */
static void make_order(data_loader *dl, uint64_t epoch) {
    if (dl->order_valid && dl->order_epoch == epoch) return;
    for (size_t i = 0; i < dl->n; i++) dl->order[i] = (uint32_t)i;
    gk_rng r;
    gk_rng_seed(&r, dl->seed * 0x9E3779B97F4A7C15ULL + epoch * 2 + 1);
    gk_rng_shuffle_u32(&r, dl->order, dl->n);
    dl->order_epoch = epoch; dl->order_valid = 1;
}
static void make_perm(data_loader *dl, uint64_t epoch, size_t shard) {
    if (dl->perm && dl->perm_shard == (int64_t)shard && dl->perm_epoch == epoch) return;
    size_t nw = n_windows(dl, shard);
    free(dl->perm);
    dl->perm = gk_malloc((nw ? nw : 1) * sizeof(uint32_t));
    for (size_t i = 0; i < nw; i++) dl->perm[i] = (uint32_t)i;
    gk_rng r;
    gk_rng_seed(&r, (dl->seed ^ 0xD1B54A32D192ED03ULL) + epoch * 1000003ULL + shard * 7919ULL);
    gk_rng_shuffle_u32(&r, dl->perm, nw);
    dl->perm_n = nw; dl->perm_shard = (int64_t)shard; dl->perm_epoch = epoch;
}

static int shard_fits(const data_loader *dl, size_t s) {
    if (dl->shuffle) return n_windows(dl, s) >= dl->B;
    return dl->shards[s].ntok >= dl->B * dl->T + 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

data_loader *data_loader_open(const char *pattern, size_t B, size_t T, int shuffle, uint64_t seed,
                              uint32_t vocab_size, gk_err *err) {
    if (B == 0 || T == 0) { gk_errf(err, "batch size and sequence length must be positive"); return NULL; }
    glob_t g;
    memset(&g, 0, sizeof g);
    int grc = glob(pattern, 0, NULL, &g);
    char **paths; size_t np;
    char *single = NULL;
    if (grc == 0 && g.gl_pathc > 0) { paths = g.gl_pathv; np = g.gl_pathc; }
    else {
        globfree(&g);
        if (!gk_file_exists(pattern)) { gk_errf(err, "%s: no token shards match", pattern); return NULL; }
        single = (char *)pattern; paths = &single; np = 1;
    }
    if (!single) qsort(paths, np, sizeof(char *), cmp_str);
    data_loader *dl = gk_calloc(1, sizeof *dl);
    dl->shards = gk_calloc(np, sizeof(data_shard));
    dl->B = B; dl->T = T; dl->shuffle = shuffle; dl->seed = seed; dl->vocab = vocab_size;
    dl->perm_shard = -1;
    int bad = 0, any_fit = 0;
    for (size_t i = 0; i < np; i++) {
        if (data_shard_open(&dl->shards[i], paths[i], err) != 0) { bad = 1; break; }
        dl->n++;
        if (shard_fits(dl, i)) any_fit = 1;
    }
    if (!single) globfree(&g);
    if (!bad && !any_fit) {
        gk_errf(err, "%s: no shard holds a whole batch (need %s%zu tokens for B=%zu T=%zu; largest has %zu)",
                pattern, shuffle ? "B windows of T+1, i.e. about " : "B*T+1 = ", B * T + 1, B, T,
                dl->n ? dl->shards[0].ntok : 0);
        bad = 1;
    }
    if (bad) { data_loader_free(dl); return NULL; }
    dl->order = gk_calloc(dl->n, sizeof(uint32_t));
    data_loader_rewind(dl);
    return dl;
}

void data_loader_free(data_loader *dl) {
    if (!dl) return;
    for (size_t i = 0; i < dl->n; i++) data_shard_close(&dl->shards[i]);
    free(dl->shards); free(dl->order); free(dl->perm);
    free(dl);
}

void data_loader_rewind(data_loader *dl) { memset(&dl->p, 0, sizeof dl->p); }
data_pos data_loader_tell(const data_loader *dl) { return dl->p; }
int data_loader_seek(data_loader *dl, data_pos pos, gk_err *err) {
    if (pos.shard >= dl->n) return gk_errf(err, "data position refers to shard %llu but only %zu shards match",
                                           (unsigned long long)pos.shard, dl->n);
    dl->p = pos;
    return 0;
}
size_t data_loader_num_shards(const data_loader *dl) { return dl->n; }
size_t data_loader_batches_per_epoch(const data_loader *dl) {
    size_t nb = 0;
    for (size_t i = 0; i < dl->n; i++) {
        if (dl->shuffle) nb += n_windows(dl, i) / dl->B;
        else if (dl->shards[i].ntok >= dl->B * dl->T + 1) nb += (dl->shards[i].ntok - 1) / (dl->B * dl->T);
    }
    return nb;
}
size_t data_loader_total_tokens(const data_loader *dl) {
    size_t t = 0;
    for (size_t i = 0; i < dl->n; i++) t += dl->shards[i].ntok;
    return t;
}

/* Copies T+1 tokens starting at `start` of shard s into a row of inputs/targets, checking the vocabulary. */
static int cut_row(const data_loader *dl, const data_shard *s, size_t start, int32_t *inp, int32_t *tgt, gk_err *err) {
    for (size_t t = 0; t <= dl->T; t++) {
        uint32_t id = data_shard_token(s, start + t);
        if (id >= dl->vocab)
            return gk_errf(err, "%s: token id %u at position %zu is out of range (vocabulary size %u)",
                           s->path, id, start + t, dl->vocab);
        if (t < dl->T) inp[t] = (int32_t)id;
        if (t > 0) tgt[t - 1] = (int32_t)id;
    }
    return 0;
}

int data_loader_next(data_loader *dl, int32_t *inputs, int32_t *targets, gk_err *err) {
    size_t B = dl->B, T = dl->T;
    if (!dl->shuffle) {
        /* llm.c order: B*T+1 tokens at pos; rows overlap by one token (row b's target run ends where row b+1 starts). */
        for (size_t guard = 0; !shard_fits(dl, dl->p.shard) || dl->p.pos + B * T + 1 > dl->shards[dl->p.shard].ntok; guard++) {
            dl->p.pos = 0;
            dl->p.shard++;
            if (dl->p.shard >= dl->n) { dl->p.shard = 0; dl->p.epoch++; }
            GK_CHECK(guard <= dl->n, "no shard fits a batch (checked at open)");
        }
        const data_shard *s = &dl->shards[dl->p.shard];
        for (size_t b = 0; b < B; b++)
            if (cut_row(dl, s, dl->p.pos + b * T, inputs + b * T, targets + b * T, err)) return -1;
        dl->p.pos += B * T;
        return 0;
    }
    for (size_t guard = 0;; guard++) {
        GK_CHECK(guard <= 2 * dl->n + 2, "no shard fits a batch (checked at open)");
        make_order(dl, dl->p.epoch);
        size_t s = dl->order[dl->p.shard];
        if (dl->p.pos + B <= n_windows(dl, s)) break;
        dl->p.pos = 0;
        dl->p.shard++;
        if (dl->p.shard >= dl->n) { dl->p.shard = 0; dl->p.epoch++; }
    }
    size_t s = dl->order[dl->p.shard];
    make_perm(dl, dl->p.epoch, s);
    for (size_t b = 0; b < B; b++) {
        size_t w = dl->perm[dl->p.pos + b];
        if (cut_row(dl, &dl->shards[s], w * T, inputs + b * T, targets + b * T, err)) return -1;
    }
    dl->p.pos += B;
    return 0;
}
