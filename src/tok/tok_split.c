/* tok_split.c: hand-written pre-splitters for tiktoken's GPT-2 and cl100k split patterns.
 *
 * Each function returns the end of the piece that the regex (leftmost-first alternation, as in Rust's regex
 * / fancy-regex used by tiktoken) would match starting at pos. The character classes come from
 * tok_unicode.c, generated from tiktoken itself, so \p{L}, \p{N} and \s agree with tiktoken exactly
 * (\s includes U+0085, excludes U+FEFF and U+180E). A byte that does not start valid UTF-8 is one "other"
 * character (tiktoken never sees such bytes; this keeps every byte string encodable).
 *
 * GPT-2:  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * cl100k: '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|
 *         \s+(?!\S)|\s+
 * gptkit: '(?i:[sdmt]|ll|ve|re)|[^\p{L}\p{N}]?+\p{L}+[^\s\p{L}\p{N}']*|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|
 *         \s*[\r\n]|\s+(?!\S)|\s+
 *         (our default for training: cl100k's, except that a word also takes a newline as its one leading
 *         character and keeps trailing punctuation other than an apostrophe: " earth." and "\nAnd" become
 *         pieces. On English prose this gives ~3% fewer tokens at vocabulary 4096 than cl100k's pattern.)
 * The matchers below walk the alternatives in that order; comments name the alternative. */
#include "tok/tok_internal.h"

const char tok_pattern_gpt2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char tok_pattern_cl100k[] =
    "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*|"
    "\\s*[\\r\\n]|\\s+(?!\\S)|\\s+";

const char tok_pattern_gptkit[] =
    "'(?i:[sdmt]|ll|ve|re)|[^\\p{L}\\p{N}]?+\\p{L}+[^\\s\\p{L}\\p{N}']*|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*|"
    "\\s*[\\r\\n]|\\s+(?!\\S)|\\s+";

int tok_pattern_kind(const char *p) {
    if (!strcmp(p, "gptkit") || !strcmp(p, tok_pattern_gptkit)) return TOK_PAT_GPTKIT;
    if (!strcmp(p, "gpt2") || !strcmp(p, "r50k_base") || !strcmp(p, tok_pattern_gpt2)) return TOK_PAT_GPT2;
    if (!strcmp(p, "cl100k") || !strcmp(p, "cl100k_base") || !strcmp(p, tok_pattern_cl100k)) return TOK_PAT_CL100K;
    return -1;
}

/* ASCII classes: letters, digits, the six ASCII White_Space characters, everything else other. */
static const uint8_t ascii_cls[128] = {
    0,0,0,0,0,0,0,0,0,3,3,3,3,3,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    3,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 2,2,2,2,2,2,2,2,2,2,0,0,0,0,0,0,
    0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, 1,1,1,1,1,1,1,1,1,1,1,0,0,0,0,0,
    0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, 1,1,1,1,1,1,1,1,1,1,1,0,0,0,0,0,
};

/* Decodes the character at pos (pos < len): returns its class, sets *n to its byte length and *cp to the
 * code point (-1 for an invalid byte, which is one byte of class other). Strict UTF-8: no overlongs,
 * no surrogates, nothing above U+10FFFF. */
static inline int char_at(const uint8_t *s, size_t len, size_t pos, size_t *n, int32_t *cp) {
    uint8_t c = s[pos];
    if (c < 0x80) { *n = 1; *cp = c; return ascii_cls[c]; }
    size_t left = len - pos;
    uint32_t v; size_t k;
    if (c >= 0xC2 && c <= 0xDF) {
        if (left < 2 || (s[pos + 1] & 0xC0) != 0x80) goto bad;
        v = ((uint32_t)(c & 0x1F) << 6) | (s[pos + 1] & 0x3F); k = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        if (left < 3 || (s[pos + 1] & 0xC0) != 0x80 || (s[pos + 2] & 0xC0) != 0x80) goto bad;
        v = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[pos + 1] & 0x3F) << 6) | (s[pos + 2] & 0x3F); k = 3;
        if (v < 0x800 || (v >= 0xD800 && v < 0xE000)) goto bad;
    } else if (c >= 0xF0 && c <= 0xF4) {
        if (left < 4 || (s[pos + 1] & 0xC0) != 0x80 || (s[pos + 2] & 0xC0) != 0x80 || (s[pos + 3] & 0xC0) != 0x80) goto bad;
        v = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[pos + 1] & 0x3F) << 12) |
            ((uint32_t)(s[pos + 2] & 0x3F) << 6) | (s[pos + 3] & 0x3F); k = 4;
        if (v < 0x10000 || v > 0x10FFFF) goto bad;
    } else goto bad;
    *n = k; *cp = (int32_t)v;
    return tok_ucls_blocks[tok_ucls_index[v >> 8]][v & 0xFF];
bad:
    *n = 1; *cp = -1; return TOK_C_OTHER;
}

/* End of the run of characters of class cls starting at pos. */
static inline size_t run_of(const uint8_t *s, size_t len, size_t pos, int cls) {
    while (pos < len) {
        uint8_t c = s[pos];
        if (c < 0x80) { if (ascii_cls[c] != cls) break; pos++; continue; }
        size_t n; int32_t cp;
        if (char_at(s, len, pos, &n, &cp) != cls) break;
        pos += n;
    }
    return pos;
}

/* Whitespace run from pos: returns its end, and in *last the start of its last character. */
static inline size_t ws_run(const uint8_t *s, size_t len, size_t pos, size_t *last, size_t *last_nl_end) {
    *last = pos; *last_nl_end = 0;
    while (pos < len) {
        size_t n; int32_t cp;
        if (char_at(s, len, pos, &n, &cp) != TOK_C_WS) break;
        *last = pos;
        pos += n;
        if (cp == '\n' || cp == '\r') *last_nl_end = pos;
    }
    return pos;
}

size_t tok_split_next_gpt2(const uint8_t *s, size_t len, size_t pos) {
    size_t n; int32_t cp;
    int c = char_at(s, len, pos, &n, &cp);
    /* 's|'t|'re|'ve|'m|'ll|'d */
    if (cp == '\'' && pos + 1 < len) {
        uint8_t a = s[pos + 1], b = pos + 2 < len ? s[pos + 2] : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return pos + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return pos + 3;
    }
    /* ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+': an optional space takes the class of what follows */
    if (cp == ' ' && pos + 1 < len) {
        size_t n2; int32_t cp2;
        int c2 = char_at(s, len, pos + 1, &n2, &cp2);
        if (c2 != TOK_C_WS) return run_of(s, len, pos + 1 + n2, c2);
    }
    if (c != TOK_C_WS) return run_of(s, len, pos + n, c);
    /* '\s+(?!\S)' then '\s+' */
    size_t last, nl;
    size_t end = ws_run(s, len, pos, &last, &nl);
    if (end == len) return end;
    return last > pos ? last : end;
}

static inline size_t split_cl100k_like(const uint8_t *s, size_t len, size_t pos, int gptkit) {
    size_t n; int32_t cp;
    int c = char_at(s, len, pos, &n, &cp);
    /* '(?i:[sdmt]|ll|ve|re): case-insensitive; Unicode case folding adds U+017F (long s) for s */
    if (cp == '\'' && pos + 1 < len) {
        uint8_t a = s[pos + 1] | 0x20, b = pos + 2 < len ? (s[pos + 2] | 0x20) : 0;
        if (s[pos + 1] < 0x80 && (a == 's' || a == 'd' || a == 'm' || a == 't')) return pos + 2;
        if (s[pos + 1] == 0xC5 && pos + 2 < len && s[pos + 2] == 0xBF) return pos + 3;   /* U+017F */
        if (s[pos + 1] < 0x80 && pos + 2 < len && s[pos + 2] < 0x80 &&
            ((a == 'l' && b == 'l') || (a == 'v' && b == 'e') || (a == 'r' && b == 'e'))) return pos + 3;
    }
    /* cl100k: [^\r\n\p{L}\p{N}]?+\p{L}+    gptkit: [^\p{L}\p{N}]?+\p{L}+[^\s\p{L}\p{N}']* */
    size_t le = 0;
    if (c == TOK_C_L) le = run_of(s, len, pos + n, TOK_C_L);
    else if (c != TOK_C_N && (gptkit || (cp != '\r' && cp != '\n')) && pos + n < len) {
        size_t n2; int32_t cp2;
        if (char_at(s, len, pos + n, &n2, &cp2) == TOK_C_L) le = run_of(s, len, pos + n + n2, TOK_C_L);
    }
    if (le) {
        if (gptkit)
            while (le < len) {
                size_t n3; int32_t cp3;
                if (char_at(s, len, le, &n3, &cp3) != TOK_C_OTHER || cp3 == '\'') break;
                le += n3;
            }
        return le;
    }
    /* \p{N}{1,3} */
    if (c == TOK_C_N) {
        size_t e = pos + n;
        for (int k = 1; k < 3 && e < len; k++) {
            size_t n2; int32_t cp2;
            if (char_at(s, len, e, &n2, &cp2) != TOK_C_N) break;
            e += n2;
        }
        return e;
    }
    /*  ?[^\s\p{L}\p{N}]++[\r\n]* */
    size_t start_other = 0;
    if (c == TOK_C_OTHER) start_other = pos + n;
    else if (cp == ' ' && pos + 1 < len) {
        size_t n2; int32_t cp2;
        if (char_at(s, len, pos + 1, &n2, &cp2) == TOK_C_OTHER) start_other = pos + 1 + n2;
    }
    if (start_other) {
        size_t e = run_of(s, len, start_other, TOK_C_OTHER);
        while (e < len && (s[e] == '\r' || s[e] == '\n')) e++;
        return e;
    }
    /* \s*[\r\n], then \s+(?!\S), then \s+ */
    size_t last, nl;
    size_t end = ws_run(s, len, pos, &last, &nl);
    if (nl) return nl;
    if (end == len) return end;
    return last > pos ? last : end;
}

size_t tok_split_next_cl100k(const uint8_t *s, size_t len, size_t pos) { return split_cl100k_like(s, len, pos, 0); }
size_t tok_split_next_gptkit(const uint8_t *s, size_t len, size_t pos) { return split_cl100k_like(s, len, pos, 1); }

size_t tok_split_next(int pat, const uint8_t *s, size_t len, size_t pos) {
    switch (pat) {
    case TOK_PAT_CL100K: return split_cl100k_like(s, len, pos, 0);
    case TOK_PAT_GPTKIT: return split_cl100k_like(s, len, pos, 1);
    default: return tok_split_next_gpt2(s, len, pos);
    }
}

void tok_split(const tok_tokenizer *t, const void *text, size_t len,
               void (*fn)(size_t start, size_t end, void *ctx), void *ctx) {
    const uint8_t *s = text;
    size_t pos = 0;
    void *md = t->pat == TOK_PAT_CUSTOM ? tok_regex_md_new(t->re) : NULL;
    while (pos < len) {
        size_t e = t->pat == TOK_PAT_CUSTOM ? tok_regex_next(t->re, md, s, len, pos) : tok_split_next(t->pat, s, len, pos);
        fn(pos, e, ctx);
        pos = e;
    }
    tok_regex_md_free(md);
}
