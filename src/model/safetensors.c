/* safetensors.c: reader and writer for the safetensors format (the ecosystem's checkpoint format).
 *
 * Layout of a file (https://github.com/huggingface/safetensors):
 *   [8 bytes]  N, unsigned little-endian 64-bit: byte length of the header
 *   [N bytes]  UTF-8 JSON object: {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [..],
 *              "data_offsets": [begin, end]}, ...}; may be padded at the end with spaces (0x20)
 *   [rest]     the data buffer; data_offsets are relative to its start, little-endian, row-major
 *
 * Files are untrusted input. st_open checks everything before any tensor byte is touched: the header length
 * against the file size, the JSON, each entry's dtype, shape (overflow-safe numel), data_offsets (ordered,
 * inside the data buffer, span == numel * dtype size), duplicate names and overlapping spans. After a
 * successful st_open every st_tensor can be read without further bounds checks.
 *
 * The writer sorts tensors by name (as HF's writer does), puts __metadata__ first with {"format": "pt"},
 * packs the data contiguously in that order and pads the header with spaces to a multiple of 8 so the data
 * buffer starts 8-byte aligned. It writes through gk_afile (temp file + rename): never a torn file.
 */
#include "model/model.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER ((uint64_t)100 << 20)   /* 100 MB, the reference implementation's limit */

/* ---------------------------------------------------------------- dtypes */
static const struct { const char *name; size_t size; } st_dtypes[] = {
    {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1},
    {"I16", 2}, {"U16", 2}, {"F16", 2}, {"BF16", 2},
    {"I32", 4}, {"U32", 4}, {"F32", 4},
    {"I64", 8}, {"U64", 8}, {"F64", 8},
};

static size_t st_dtype_size(const char *dtype) {   /* 0 if unknown */
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (!strcmp(st_dtypes[i].name, dtype)) return st_dtypes[i].size;
    return 0;
}

/* A JSON number that is a non-negative integer exactly representable (< 2^53): 0 ok, -1 otherwise. */
static int st_json_size(const cJSON *j, size_t *out) {
    if (!cJSON_IsNumber(j)) return -1;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d) return -1;
    if ((uint64_t)d > (uint64_t)SIZE_MAX) return -1;
    *out = (size_t)d;
    return 0;
}

/* ---------------------------------------------------------------- reader */

void st_close(st_file *f) {
    if (!f) return;
    if (f->mapped) munmap(f->file, f->file_len); else free(f->file);
    free(f->tensors);
    for (size_t i = 0; i < f->n_meta; i++) { free(f->meta_keys[i]); free(f->meta_vals[i]); }
    free(f->meta_keys); free(f->meta_vals);
    free(f->path);
    memset(f, 0, sizeof *f);
}

static int st_cmp_begin(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}
static int st_cmp_name(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

/* Parses one tensor entry `j` named `name` into t, validating it against data_len. */
static int st_parse_entry(st_tensor *t, const char *name, const cJSON *j, size_t data_len, gk_err *err) {
    if (strlen(name) >= sizeof t->name) return gk_errf(err, "tensor name longer than %zu bytes", sizeof t->name - 1);
    strcpy(t->name, name);
    if (!cJSON_IsObject(j)) return gk_errf(err, "tensor \"%s\": entry is not a JSON object", name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!cJSON_IsString(jd)) return gk_errf(err, "tensor \"%s\": missing or non-string \"dtype\"", name);
    if (!cJSON_IsArray(js)) return gk_errf(err, "tensor \"%s\": missing or non-array \"shape\"", name);
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2)
        return gk_errf(err, "tensor \"%s\": \"data_offsets\" must be an array [begin, end]", name);
    size_t esize = st_dtype_size(jd->valuestring);
    if (!esize) return gk_errf(err, "tensor \"%s\": unknown dtype \"%.32s\"", name, jd->valuestring);
    strcpy(t->dtype, jd->valuestring);   /* known dtypes are < 8 chars */
    int nd = cJSON_GetArraySize(js);
    if (nd > 8) return gk_errf(err, "tensor \"%s\": %d dimensions (at most 8 supported)", name, nd);
    t->ndim = nd;
    size_t numel = 1;
    for (int i = 0; i < nd; i++) {
        if (st_json_size(cJSON_GetArrayItem(js, i), &t->shape[i]))
            return gk_errf(err, "tensor \"%s\": shape[%d] is not a non-negative integer", name, i);
        if (gk_mul_size(numel, t->shape[i], &numel))
            return gk_errf(err, "tensor \"%s\": shape overflows", name);
    }
    size_t bytes;
    if (gk_mul_size(numel, esize, &bytes)) return gk_errf(err, "tensor \"%s\": byte size overflows", name);
    if (st_json_size(cJSON_GetArrayItem(jo, 0), &t->begin) || st_json_size(cJSON_GetArrayItem(jo, 1), &t->end))
        return gk_errf(err, "tensor \"%s\": data_offsets are not non-negative integers", name);
    if (t->begin > t->end)
        return gk_errf(err, "tensor \"%s\": data_offsets [%zu, %zu] run backwards", name, t->begin, t->end);
    if (t->end > data_len)
        return gk_errf(err, "tensor \"%s\": data_offsets [%zu, %zu] run past the end of the data (%zu bytes)",
                       name, t->begin, t->end, data_len);
    if (t->end - t->begin != bytes)
        return gk_errf(err, "tensor \"%s\": shape and dtype %s need %zu bytes but data_offsets [%zu, %zu] span %zu",
                       name, t->dtype, bytes, t->begin, t->end, t->end - t->begin);
    return 0;
}

static int st_parse_meta(st_file *f, const cJSON *j, gk_err *err) {
    if (!cJSON_IsObject(j)) return gk_errf(err, "__metadata__ is not a JSON object");
    size_t n = (size_t)cJSON_GetArraySize(j);
    f->meta_keys = gk_calloc(n ? n : 1, sizeof(char *));
    f->meta_vals = gk_calloc(n ? n : 1, sizeof(char *));
    for (const cJSON *e = j->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !e->string) return gk_errf(err, "__metadata__ value for \"%.64s\" is not a string",
                                                             e->string ? e->string : "?");
        f->meta_keys[f->n_meta] = gk_strdup(e->string);
        f->meta_vals[f->n_meta] = gk_strdup(e->valuestring);
        f->n_meta++;
    }
    return 0;
}

/* Everything after the file is in memory. */
static int st_parse(st_file *f, gk_err *err) {
    if (f->file_len < 8) return gk_errf(err, "file is %zu bytes, too short for the 8-byte header length", f->file_len);
    const uint8_t *b = (const uint8_t *)f->file;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | b[i];
    if (hlen > f->file_len - 8)
        return gk_errf(err, "header length %llu is larger than the rest of the file (%zu bytes)",
                       (unsigned long long)hlen, f->file_len - 8);
    if (hlen > ST_MAX_HEADER) return gk_errf(err, "header length %llu exceeds the 100 MB limit", (unsigned long long)hlen);
    if (hlen < 2 || b[8] != '{') return gk_errf(err, "header does not start with a JSON object ('{')");
    f->data = b + 8 + hlen;
    f->data_len = f->file_len - 8 - (size_t)hlen;
    if (memchr(b + 8, 0, (size_t)hlen)) return gk_errf(err, "header contains a NUL byte");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)b + 8, (size_t)hlen, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= (const char *)b + 8 && at <= (const char *)b + 8 + hlen ? (size_t)(at - (const char *)b) : 8;
        return gk_errf(err, "header is not valid JSON (near byte %zu)", off);
    }
    int rc = 0;
    for (const char *p = end; p && p < (const char *)b + 8 + hlen; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') { rc = gk_errf(err, "junk after the header JSON"); break; }
    if (!rc && !cJSON_IsObject(root)) rc = gk_errf(err, "header JSON is not an object");
    size_t n_entries = 0;
    if (!rc) for (const cJSON *e = root->child; e; e = e->next) n_entries++;
    if (!rc) f->tensors = gk_calloc(n_entries ? n_entries : 1, sizeof(st_tensor));
    for (const cJSON *e = rc ? NULL : root->child; e; e = e->next) {
        if (!e->string) { rc = gk_errf(err, "header entry without a name"); break; }
        if (!strcmp(e->string, "__metadata__")) {
            if (f->meta_keys) { rc = gk_errf(err, "__metadata__ appears twice"); break; }
            if ((rc = st_parse_meta(f, e, err))) break;
            continue;
        }
        if ((rc = st_parse_entry(&f->tensors[f->n], e->string, e, f->data_len, err))) break;
        f->n++;
    }
    cJSON_Delete(root);
    if (rc) return rc;
    /* Duplicate names and overlapping spans: sort views by name and by offset. */
    if (f->n > 1) {
        const st_tensor **v = gk_malloc(f->n * sizeof *v);
        for (size_t i = 0; i < f->n; i++) v[i] = &f->tensors[i];
        qsort(v, f->n, sizeof *v, st_cmp_name);
        for (size_t i = 1; i < f->n && !rc; i++)
            if (!strcmp(v[i - 1]->name, v[i]->name)) rc = gk_errf(err, "tensor \"%s\" appears twice", v[i]->name);
        qsort(v, f->n, sizeof *v, st_cmp_begin);
        const st_tensor *last = NULL;   /* the non-empty tensor reaching furthest so far */
        for (size_t i = 0; i < f->n && !rc; i++) {
            if (v[i]->begin == v[i]->end) continue;
            if (last && v[i]->begin < last->end)
                rc = gk_errf(err, "tensors \"%s\" and \"%s\" overlap in the data buffer", last->name, v[i]->name);
            if (!last || v[i]->end > last->end) last = v[i];
        }
        free(v);
    }
    return rc;
}

/* The file mapped read-only (its pages come and go with use, st_release), or read whole where it cannot be mapped. */
static int st_map(st_file *f, const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    struct stat st;
    void *p = MAP_FAILED;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
        p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return -1;
    f->file = p; f->file_len = (size_t)st.st_size; f->mapped = 1;
    return 0;
}

void st_release(const st_file *f, const st_tensor *t) {
    if (!f->mapped || t->end <= t->begin) return;
    /* the whole pages inside the tensor's bytes (a neighbour's bytes on a shared page stay) */
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)(f->data + t->begin), b = (uintptr_t)(f->data + t->end);
    a = (a + pg - 1) / pg * pg;
    b = b / pg * pg;
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

int st_open(st_file *f, const char *path, gk_err *err) {
    memset(f, 0, sizeof *f);
    if (st_map(f, path) && gk_read_file(path, &f->file, &f->file_len, err)) return -1;
    f->path = gk_strdup(path);
    if (st_parse(f, err)) {
        gk_err_prefix(err, "%s", path);
        st_close(f);
        return -1;
    }
    return 0;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

const char *st_meta(const st_file *f, const char *key) {
    for (size_t i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_vals[i];
    return NULL;
}

/* IEEE half -> float, all cases (subnormals, inf, nan). */
static float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) bits = sign | 0x7f800000u | (man << 13);             /* inf / nan */
    else if (exp) bits = sign | ((exp + 112) << 23) | (man << 13);        /* normal: rebias 15 -> 127 */
    else if (!man) bits = sign;                                           /* zero */
    else {                                                                /* subnormal: normalize */
        int e = -1;
        do { e++; man <<= 1; } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

int st_read_f32(const st_file *f, const st_tensor *t, float *dst, gk_err *err) {
    const uint8_t *src = f->data + t->begin;
    size_t bytes = t->end - t->begin;
    if (!strcmp(t->dtype, "F32")) {
        memcpy(dst, src, bytes);   /* little-endian host assumed (x86, arm64) */
    } else if (!strcmp(t->dtype, "F16")) {
        for (size_t i = 0; i < bytes / 2; i++) dst[i] = st_f16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
    } else if (!strcmp(t->dtype, "BF16")) {
        for (size_t i = 0; i < bytes / 2; i++) {
            uint32_t bits = (uint32_t)(src[2 * i] | src[2 * i + 1] << 8) << 16;
            memcpy(&dst[i], &bits, 4);
        }
    } else {
        return gk_errf(err, "%s: tensor \"%s\" has dtype %s; only F32, F16 and BF16 can be read as floats",
                       f->path ? f->path : "safetensors", t->name, t->dtype);
    }
    return 0;
}

/* ---------------------------------------------------------------- writer */

typedef struct { char *name; int ndim; size_t shape[8]; const float *data; size_t numel; } st_wtensor;
struct st_writer {
    st_wtensor *t; size_t n, cap;
    char **mk, **mv; size_t n_meta;
};

st_writer *st_writer_new(void) { return gk_calloc(1, sizeof(st_writer)); }

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->t[i].name);
    for (size_t i = 0; i < w->n_meta; i++) { free(w->mk[i]); free(w->mv[i]); }
    free(w->t); free(w->mk); free(w->mv);
    free(w);
}

void st_writer_add_f32(st_writer *w, const char *name, int ndim, const size_t *shape, const float *host_data) {
    GK_CHECK(ndim >= 0 && ndim <= 8, "st_writer_add_f32: %d dims for %s", ndim, name);
    if (w->n == w->cap) { w->cap = w->cap ? 2 * w->cap : 16; w->t = gk_realloc(w->t, w->cap * sizeof *w->t); }
    st_wtensor *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    t->name = gk_strdup(name);
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        GK_CHECK(!gk_mul_size(t->numel, shape[i], &t->numel), "st_writer_add_f32: %s too large", name);
    }
    t->data = host_data;
}

void st_writer_add_meta(st_writer *w, const char *key, const char *value) {
    for (size_t i = 0; i < w->n_meta; i++)
        if (!strcmp(w->mk[i], key)) { free(w->mv[i]); w->mv[i] = gk_strdup(value); return; }
    w->mk = gk_realloc(w->mk, (w->n_meta + 1) * sizeof(char *));
    w->mv = gk_realloc(w->mv, (w->n_meta + 1) * sizeof(char *));
    w->mk[w->n_meta] = gk_strdup(key);
    w->mv[w->n_meta] = gk_strdup(value);
    w->n_meta++;
}

static int st_wcmp(const void *a, const void *b) {
    return strcmp(((const st_wtensor *)a)->name, ((const st_wtensor *)b)->name);
}

int st_writer_write(st_writer *w, const char *path, gk_err *err) {
    qsort(w->t, w->n, sizeof *w->t, st_wcmp);
    for (size_t i = 1; i < w->n; i++)
        GK_CHECK(strcmp(w->t[i - 1].name, w->t[i].name), "st_writer_write: tensor %s added twice", w->t[i].name);
    int has_format = 0;
    for (size_t i = 0; i < w->n_meta; i++) has_format |= !strcmp(w->mk[i], "format");
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    if (!has_format) cJSON_AddStringToObject(meta, "format", "pt");
    for (size_t i = 0; i < w->n_meta; i++) cJSON_AddStringToObject(meta, w->mk[i], w->mv[i]);
    cJSON_AddItemToObject(root, "__metadata__", meta);
    size_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        st_wtensor *t = &w->t[i];
        cJSON *e = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *offs = cJSON_CreateArray();
        cJSON_AddStringToObject(e, "dtype", "F32");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddItemToObject(e, "shape", shape);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += t->numel * sizeof(float);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToObject(e, "data_offsets", offs);
        cJSON_AddItemToObject(root, t->name, e);
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    GK_CHECK(json, "out of memory printing a safetensors header");
    size_t jlen = strlen(json), hlen = (jlen + 7) & ~(size_t)7;   /* pad with spaces: data 8-byte aligned */
    uint8_t lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    gk_afile *a = gk_afile_open(path, err);
    if (!a) { free(json); return -1; }
    gk_afile_write(a, lenbuf, 8);
    gk_afile_write(a, json, jlen);
    gk_afile_write(a, "        ", hlen - jlen);
    free(json);
    for (size_t i = 0; i < w->n; i++) gk_afile_write(a, w->t[i].data, w->t[i].numel * sizeof(float));
    return gk_afile_commit(a, err);
}
