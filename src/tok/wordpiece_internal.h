/* wordpiece_internal.h: the generated Unicode tables behind tok/wordpiece.c (wordpiece_unicode.c, made by
 * tests/ref/gen_wordpiece_unicode.py). Private to src/tok. */
#ifndef GK_WORDPIECE_INTERNAL_H
#define GK_WORDPIECE_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

enum { WP_U_CONTROL = 1, WP_U_SPACE = 2, WP_U_PUNCT = 4, WP_U_MN = 8 };
typedef struct { uint32_t lo, hi; uint8_t cls; } wp_urange;    /* code points lo..hi (inclusive) have cls */
typedef struct { uint32_t cp; uint32_t off; uint32_t n; } wp_umap;   /* cp maps to seq[off .. off+n) */

extern const wp_urange wp_uranges[];
extern const size_t wp_n_uranges;
extern const wp_umap *const wp_strip_map; extern const size_t wp_n_strip; extern const uint32_t *const wp_strip_seq;
extern const wp_umap *const wp_lower_map; extern const size_t wp_n_lower; extern const uint32_t *const wp_lower_seq;
#endif
