/* constrain: constrained output — the model's text forced into a grammar.
 *
 *   GBNF text (llama.cpp's syntax) ──constrain_grammar_parse──► grammar (byte level: UTF-8 classes compiled
 *                                                               into byte sequences; repetitions into rules)
 *   JSON Schema ──constrain_schema_to_gbnf──► GBNF text;  regex ──constrain_regex_to_gbnf──► GBNF text
 *   grammar + tokenizer vocabulary ──constrain_new──► a constraint: the token masks of each grammar state
 *   per sequence: a constrain_state — accept a token, ask which tokens may come next, ask whether it may end.
 *
 * The matcher is a pushdown automaton run on a set of stacks (every way the bytes so far can be parsed);
 * stacks are interned (one id per distinct stack) so states dedupe by id and transitions are memoised.
 * Masks: the vocabulary is a byte trie walked against the state; per grammar position the tokens that are
 * accepted without looking below the top stack frame are cached once, only the few that pop below it are
 * checked against the whole stack at decode time (docs/constrain.md).
 *
 * Errors (tier 2: grammars, schemas and regexes come from users and HTTP requests): -1 / NULL with err, a
 * grammar error names line and column ("line 3, column 12: expected ::= after rule name").
 * Threads: a constraint caches as it goes and is not thread-safe; use one per engine thread. */
#ifndef GK_CONSTRAIN_H
#define GK_CONSTRAIN_H

#include <stddef.h>
#include <stdint.h>
#include "core/core.h"
#include "tok/tok.h"

/* ---------------------------------------------------------------- grammars */
typedef struct constrain_grammar constrain_grammar;
/* Parses GBNF (len bytes; need not be NUL-terminated). root: the start rule (NULL = "root"). */
constrain_grammar *constrain_grammar_parse(const char *text, size_t len, const char *root, gk_err *err);
void constrain_grammar_free(constrain_grammar *g);
size_t constrain_grammar_n_rules(const constrain_grammar *g);

/* ---------------------------------------------------------------- converters (malloc'd GBNF text) */
/* Any JSON object (response_format json_object; whitespace between tokens limited to one space or newline
 * run so a sampler cannot wander forever). */
char *constrain_json_object_gbnf(void);
/* Any JSON value. */
char *constrain_json_value_gbnf(void);
/* A JSON Schema (draft 2020-12 subset: docs/constrain.md lists what is supported; anything else is an error
 * naming the keyword and its JSON pointer, never silently ignored). */
struct cJSON;
char *constrain_schema_to_gbnf(const struct cJSON *schema, gk_err *err);
/* A regular expression (POSIX ERE subset plus \d \w \s and their negations, {m,n}, non-greedy marks
 * ignored): the whole output must match it. */
char *constrain_regex_to_gbnf(const char *re, gk_err *err);

/* ---------------------------------------------------------------- byte-level matching (no vocabulary) */
typedef struct constrain_state constrain_state;
/* A state at the grammar's start. The grammar must outlive it. */
constrain_state *constrain_state_new_g(const constrain_grammar *g);
constrain_state *constrain_state_clone(const constrain_state *s);
void constrain_state_free(constrain_state *s);
/* Advances by n bytes. Returns 0, or -1 (state unchanged) if the grammar rejects them. */
int constrain_state_accept_bytes(constrain_state *s, const void *bytes, size_t n);
int constrain_state_can_end(const constrain_state *s);   /* the bytes so far are a complete sentence */
int constrain_state_is_done(const constrain_state *s);   /* ... and nothing more may follow */
/* Whole-string convenience: 1 if the grammar matches text exactly. */
int constrain_grammar_matches(const constrain_grammar *g, const void *text, size_t n);

/* ---------------------------------------------------------------- vocabularies and token masks */
/* A byte trie over a tokenizer's ordinary tokens (special tokens are never text the grammar can match).
 * Read-only once built: one per tokenizer, shared by any number of constraints. */
typedef struct constrain_vocab constrain_vocab;
constrain_vocab *constrain_vocab_new(const tok_tokenizer *t);
void constrain_vocab_free(constrain_vocab *v);
size_t constrain_vocab_size(const constrain_vocab *v);   /* V: mask length in tokens */

/* A grammar bound to a vocabulary (takes ownership of g; v is borrowed and must outlive it). end_ids: the
 * tokens that end a generation (EOS, end of turn): allowed exactly where the grammar can end. */
typedef struct constrain constrain;
constrain *constrain_new(constrain_grammar *g, const constrain_vocab *v, const int32_t *end_ids, size_t n_end);
void constrain_free(constrain *c);
const constrain_grammar *constrain_grammar_of(const constrain *c);
/* A state at the start, bound to c (the sequence's own: one per sequence). */
constrain_state *constrain_state_new(constrain *c);
/* mask [ceil(V/32)] words: bit id set = token allowed next. Returns how many tokens are allowed. */
size_t constrain_mask(constrain *c, const constrain_state *s, uint32_t *mask);
/* The reference: every token checked by feeding its bytes to a copy of the state (tests compare). */
size_t constrain_mask_ref(constrain *c, const constrain_state *s, uint32_t *mask);
/* Advances s by token id. End ids: allowed if the state can end (the state then is finished). Returns 0,
 * or -1 (unchanged) if the token is not allowed. */
int constrain_accept_token(constrain *c, constrain_state *s, int32_t id);
/* Budgets: the fewest bytes that complete the grammar from s (0 = it can end now; every byte is at most one
 * token in a byte-level vocabulary, so a generation with that many tokens left can always finish), and the
 * same after token id (SIZE_MAX if id is not allowed). The engine keeps a sequence finishable within its
 * max_new / context with these. */
size_t constrain_min_to_end(constrain *c, const constrain_state *s);
size_t constrain_min_after(constrain *c, const constrain_state *s, int32_t id);
/* Sets logits of disallowed tokens to -INFINITY (logits [V], a copy the caller owns); scratch [ceil(V/32)]. */
size_t constrain_apply(constrain *c, const constrain_state *s, float *logits, size_t V, uint32_t *scratch);

/* ---------------------------------------------------------------- the command line's and server's entry */
typedef enum { CONSTRAIN_GBNF = 0, CONSTRAIN_JSON_SCHEMA, CONSTRAIN_REGEX, CONSTRAIN_JSON } constrain_kind;
/* The GBNF text of a spec: a grammar file's contents, a schema file (parsed here), a regex, or any JSON
 * (spec ignored). malloc'd; NULL with err. */
char *constrain_spec_to_gbnf(constrain_kind kind, const char *spec, size_t len, gk_err *err);
/* OpenAI's response_format object: {"type":"text"} gives *out_gbnf = NULL (no constraint);
 * {"type":"json_object"}; {"type":"json_schema","json_schema":{"name":..,"schema":{...},"strict":..}}.
 * Returns 0 or -1 with err (err names the field: "response_format.json_schema.schema: ..."). */
int constrain_from_response_format(const struct cJSON *rf, char **out_gbnf, gk_err *err);

#endif
