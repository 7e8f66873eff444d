/* tok_regex.c: user-supplied split patterns through PCRE2 (built only with -DGK_HAVE_PCRE2 and -lpcre2-8).
 *
 * The three known patterns never come here (they have exact hand-written splitters). A custom regex is
 * compiled with UTF + UCP (Unicode classes) + MATCH_INVALID_UTF (any bytes are valid input) and JIT.
 * Pieces are the regex's successive leftmost matches; unlike tiktoken, which drops text its regex does not
 * match, the text between matches becomes pieces too, so decode(encode(x)) == x still holds. PCRE2's
 * Unicode tables and \s may differ from tiktoken's Rust regex in corner cases. */
#include "tok/tok_internal.h"

#ifdef GK_HAVE_PCRE2
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

int tok_regex_available(void) { return 1; }

void *tok_regex_compile(const char *pattern, gk_err *err) {
    int ec; PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec, &eo, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        gk_errf(err, "split pattern \"%.80s\": %s at offset %zu", pattern, (const char *)msg, (size_t)eo);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);   /* falls back to the interpreter if JIT is unavailable */
    return re;
}
void tok_regex_free(void *re) { if (re) pcre2_code_free(re); }
void *tok_regex_md_new(void *re) { return pcre2_match_data_create_from_pattern(re, NULL); }
void tok_regex_md_free(void *md) { if (md) pcre2_match_data_free(md); }

size_t tok_regex_next(void *re, void *md, const uint8_t *s, size_t len, size_t pos) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, len, pos, 0, md, NULL);
    if (rc < 0) return len;                       /* no more matches: the rest is one piece */
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    if (ov[0] > pos) return ov[0];                /* unmatched text before the match */
    if (ov[1] > pos) return ov[1];
    /* empty match at pos: take one character */
    size_t e = pos + 1;
    while (e < len && (s[e] & 0xC0) == 0x80 && e - pos < 4) e++;
    return e;
}
#else
int tok_regex_available(void) { return 0; }
void *tok_regex_compile(const char *pattern, gk_err *err) {
    gk_errf(err, "split pattern \"%.80s\": custom regexes need PCRE2 and this build has none (build with "
                 "-DGK_HAVE_PCRE2 and -lpcre2-8); the built-in patterns are gptkit, gpt2 and cl100k", pattern);
    return NULL;
}
void tok_regex_free(void *re) { (void)re; }
void *tok_regex_md_new(void *re) { (void)re; return NULL; }
void tok_regex_md_free(void *md) { (void)md; }
size_t tok_regex_next(void *re, void *md, const uint8_t *s, size_t len, size_t pos) { (void)re; (void)md; (void)s; (void)pos; return len; }
#endif
