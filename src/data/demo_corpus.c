/* demo_corpus.c: finding and decompressing the built-in pretraining corpus (data/corpus/kjv.txt.gz).
 * The corpus ships gzip-compressed to keep the repository small; zlib's gz* reader inflates it (it also
 * passes a non-gzip file through unchanged, which we refuse: the caller asked for the compressed corpus). */
#include "data/data.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

char *demo_corpus_locate(void) {
    const char *root = getenv("GK_ROOT");
    if (root && *root) {
        char *p = gk_path_join(root, DEMO_CORPUS_REL);
        if (gk_file_exists(p)) return p;
        free(p);
    }
    if (gk_file_exists(DEMO_CORPUS_REL)) return gk_strdup(DEMO_CORPUS_REL);
    /* Next to the binary: build/gptkit -> build/../data/corpus/... */
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            char *up = gk_path_join(exe, "..");
            char *p = gk_path_join(up, DEMO_CORPUS_REL);
            free(up);
            if (gk_file_exists(p)) return p;
            free(p);
        }
    }
    return NULL;
}

int demo_corpus_extract(const char *gz_path, const char *out_txt, gk_err *err) {
    char *found = NULL;
    if (!gz_path) {
        found = demo_corpus_locate();
        if (!found) return gk_errf(err, "built-in corpus %s not found (looked under $GK_ROOT, the current "
                                        "directory and next to the gptkit binary)", DEMO_CORPUS_REL);
        gz_path = found;
    }
    if (!out_txt || !*out_txt) { free(found); return gk_errf(err, "corpus extract: no output path"); }
    int rc = -1;
    gk_afile *out = NULL;
    gzFile gz = gzopen(gz_path, "rb");
    if (!gz) { gk_errf(err, "%s: cannot open", gz_path); goto done; }
    /* Right after gzopen, gzdirect reads the header to tell gzip from plain bytes. */
    if (gzdirect(gz)) { gk_errf(err, "%s: not a gzip file", gz_path); goto done; }
    out = gk_afile_open(out_txt, err);
    if (!out) goto done;
    enum { CHUNK = 1 << 16 };
    char *buf = gk_malloc(CHUNK);
    for (;;) {
        int got = gzread(gz, buf, CHUNK);
        if (got < 0) {
            int zerr; const char *msg = gzerror(gz, &zerr);
            gk_errf(err, "%s: corrupt gzip data (%s)", gz_path, msg ? msg : "zlib error");
            free(buf); goto done;
        }
        if (got == 0) break;
        if (gk_afile_write(out, buf, (size_t)got) != 0) break;  /* remembered; reported at commit */
    }
    free(buf);
    /* gzread returns 0 at a premature end too; gzeof + gzerror tell a clean end from a truncated one. */
    int zerr = Z_OK; const char *msg = gzerror(gz, &zerr);
    if (zerr != Z_OK && zerr != Z_STREAM_END) {
        gk_errf(err, "%s: corrupt gzip data (%s)", gz_path, msg ? msg : "zlib error");
        goto done;
    }
    rc = gk_afile_commit(out, err);
    out = NULL;
    if (rc != 0) gk_err_prefix(err, "writing %s", out_txt);
done:
    if (out) gk_afile_abort(out);
    if (gz) gzclose(gz);
    free(found);
    return rc;
}
