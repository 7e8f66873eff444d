/* data: what the training stages read — token shards (llm.c's .bin layout), and the built-in demo data.
 *
 * Token shards: a 256 x int32 header — [0] magic 20240520, [1] version (1: uint16 tokens, 2: uint32 tokens,
 * gptkit's documented variant for vocabularies over 65,536), [2] number of tokens — then the tokens.
 * Shards are mmap'd and validated (magic, version, size) before any token is read; token ids are checked
 * against the model's vocabulary as batches are cut, with the file and position in the message.
 *
 * The loader cuts batches of B rows x T tokens (inputs) with targets shifted by one:
 *  - sequential mode reads exactly as llm.c's loader does: in each shard, batch k covers tokens
 *    [k*B*T, (k+1)*B*T] inclusive (B*T+1 tokens); row b is the b-th run of T; when the next batch would
 *    run past the end of the shard, the loader moves to the next shard (wrapping around after the last).
 *  - shuffled mode (the default for training): each shard is cut into windows of T+1 tokens at stride T;
 *    every epoch visits the shards in a seeded random order and each shard's windows in a seeded random
 *    order (a batch = B windows of one shard; leftovers of fewer than B windows are dropped). The state
 *    is three integers (epoch, shard slot, window slot) because the permutations are recomputed from
 *    (seed, epoch, shard), so resuming is exact.
 */
#ifndef GK_DATA_H
#define GK_DATA_H

#include <stddef.h>
#include <stdint.h>
#include "core/core.h"
#include "tok/tok.h"

#define DATA_SHARD_MAGIC 20240520
#define DATA_SHARD_HEADER_INTS 256

typedef struct {
    char   *path;
    void   *map; size_t map_len;
    const uint8_t *tokens;   /* start of token data */
    size_t ntok;
    int    tok_bytes;        /* 2 (version 1) or 4 (version 2) */
} data_shard;

/* Opens and validates one shard (mmap). */
int  data_shard_open(data_shard *s, const char *path, gk_err *err);
void data_shard_close(data_shard *s);
static inline uint32_t data_shard_token(const data_shard *s, size_t i) {
    if (s->tok_bytes == 2) return ((const uint16_t *)s->tokens)[i];
    return ((const uint32_t *)s->tokens)[i];
}

/* Loader position, enough to resume exactly. */
typedef struct {
    uint64_t epoch;      /* shuffled: epoch; sequential: number of wraps */
    uint64_t shard;      /* shuffled: slot in the epoch's shard order; sequential: shard index */
    uint64_t pos;        /* shuffled: window slot in the shard's permutation; sequential: token position */
} data_pos;

typedef struct data_loader data_loader;
/* pattern: a glob (or a single path) of shards, sorted by name. vocab_size: ids >= it are errors.
 * Fails if nothing matches, a shard is bad, or no shard holds one batch (B*T+1 tokens). */
data_loader *data_loader_open(const char *pattern, size_t B, size_t T, int shuffle, uint64_t seed,
                              uint32_t vocab_size, gk_err *err);
void data_loader_free(data_loader *dl);
/* Fills inputs and targets [B*T] (host) with the next batch. Errors name shard file and token position. */
int  data_loader_next(data_loader *dl, int32_t *inputs, int32_t *targets, gk_err *err);
data_pos data_loader_tell(const data_loader *dl);
int  data_loader_seek(data_loader *dl, data_pos pos, gk_err *err);
void data_loader_rewind(data_loader *dl);      /* back to the very first batch */
size_t data_loader_total_tokens(const data_loader *dl);
size_t data_loader_num_shards(const data_loader *dl);
/* Batches in one pass over all shards (sequential: sum of (ntok-1)/(B*T); shuffled: sum of windows/B). */
size_t data_loader_batches_per_epoch(const data_loader *dl);

/* Writes a shard atomically: version 1 (uint16) when every id < 65536 fits and force32 is 0, else version 2. */
int data_shard_write(const char *path, const uint32_t *tokens, size_t n, int force32, gk_err *err);

/* ================================================================ */
/* chat conversations (issue 4): the message model, JSONL parsing, and rendering to token ids
 * plus a loss mask. implemented in src/data/chat.c. Full description with an example
 * rendering: docs/chat.md.
 *
 * Rendering (special tokens from tok.h):
 *   system    ->  <|system|> content <|end|>
 *   user      ->  <|user|> content <|end|>
 *   assistant ->  <|assistant|> content <|end|>
 *   tool      ->  <|tool_result|> content <|tool_result_end|>            (no role header)
 * Tool calls live inside an assistant turn: an assistant message whose content ends with "<|tool_call_end|>"
 * gets no <|end|>; the following tool message's result is appended to the same turn; an assistant message
 * right after a tool message continues that turn without a new <|assistant|> header.
 *
 * Loss mask (per token, 1 = the model is trained to predict this token): 1 on assistant content tokens
 * (tool-call tokens the assistant writes included) and on the assistant's <|end|>; 0 on everything else
 * (role headers, system, user, tool results and their markers).
 *
 * Encoding: system/user/tool content is encoded with NO special tokens recognised (the text "<|end|>" typed
 * by a user is plain text, so nobody can inject turn markers). Assistant content is encoded with only
 * <|tool_call|> and <|tool_call_end|> recognised (the assistant writes tool calls; nothing else).
 *
 * Generation prompt: rendering + "<|assistant|>" — unless the last message is a tool result (or an
 * assistant tool call awaiting one), in which case the assistant's turn is still open and nothing is added.
 */

typedef enum { CHAT_SYSTEM = 0, CHAT_USER, CHAT_ASSISTANT, CHAT_TOOL } chat_role;
const char *chat_role_name(chat_role r);                 /* "system", "user", "assistant", "tool" */
int chat_role_parse(const char *s, chat_role *out);      /* 0 ok, -1 unknown */

typedef struct { chat_role role; char *content; } chat_msg;
/* A conversation: an ordered list of messages (owned strings). Zero-initialise ({0}) before use. */
typedef struct { chat_msg *msgs; size_t n, cap; } chat_conv;
void chat_conv_add(chat_conv *c, chat_role role, const char *content);   /* copies content */
void chat_conv_clear(chat_conv *c);                                      /* drops messages, keeps memory */
void chat_conv_free(chat_conv *c);
/* Checks the structure: a tool message must follow an assistant tool call (content ending in
 * <|tool_call_end|>) or another tool message. Message indices appear in the error ("messages[3]: ..."). */
int chat_conv_validate(const chat_conv *c, gk_err *err);
/* Parses one JSON object {"messages":[{"role":..., "content":...}, ...]} (extra keys ignored) and validates
 * it. Errors name the field: "messages[2].role: expected one of system|user|assistant|tool, got \"bot\"".
 * c is cleared first. */
int chat_conv_from_json(chat_conv *c, const char *json, gk_err *err);

/* The chat format a tokenizer's special tokens announce (its model's own template, recognised by markers):
 *   CHAT_FMT_GPTKIT  <|user|>text<|end|><|assistant|>reply<|end|>              (gptkit's, docs/chat.md)
 *   CHAT_FMT_CHATML  <|im_start|>user\ntext<|im_end|>\n<|im_start|>assistant\nreply<|im_end|>\n   (Qwen2, SmolLM2)
 *   CHAT_FMT_LLAMA3  <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\ntext<|eot_id|>...  (LLaMA 3)
 * Text between two special tokens is encoded as one piece, as HF's apply_chat_template + encode does. */
enum { CHAT_FMT_GPTKIT = 0, CHAT_FMT_CHATML, CHAT_FMT_LLAMA3 };
const char *chat_format_name(int fmt);   /* "gptkit", "chatml", "llama3" */

/* Ids of the nine chat special tokens (gptkit's format); in the ChatML and LLaMA 3 formats `end` is the turn's
 * end (<|im_end|>, <|eot_id|>), `eot` the document's end (or -1), `assistant` the start of a turn marker, and
 * the tool tokens are -1 (no tool calls in those formats). */
typedef struct {
    int32_t eot, system, user, assistant, end, tool_call, tool_call_end, tool_result, tool_result_end;
    int fmt;                 /* CHAT_FMT_* */
    int32_t header_end, bos; /* LLaMA 3: <|end_header_id|>, <|begin_of_text|> */
} chat_specials;
/* Recognises the format by t's special tokens (ChatML's <|im_start|> + <|im_end|>, LLaMA 3's
 * <|start_header_id|> + <|end_header_id|> + <|eot_id|>); otherwise gptkit's: looks up the chat specials in t,
 * adding missing ones with tok_add_chat_specials (so t is mutated), and
 * checks each id is < vocab_size (the model's; 0 = skip the check). Error example: "the tokenizer's <|end|>
 * has id 50260 but the model's vocabulary is 50257: the model cannot read or write it (SFT it from a model
 * with --vocab-size >= 50265)". */
int chat_specials_resolve(tok_tokenizer *t, size_t vocab_size, chat_specials *sp, gk_err *err);

/* The chat format as a Jinja chat template (tokenizer_config.json's chat_template, GGUF's tokenizer.chat_template)
 * that renders what chat_render renders, so HF's apply_chat_template + encode gives chat_render's ids (for
 * contents holding no special-token text: HF matches that as special tokens, chat_render does not). */
const char *chat_template_jinja(int fmt);

/* The tokenizer files of a checkpoint (HF's layout, so AutoTokenizer.from_pretrained(DIR) encodes and renders
 * chats as gptkit does): tokenizer.json (tok_hf_json), tokenizer_config.json (bos/eos/pad tokens where they
 * exist, model_max_length = n_ctx, the format's chat_template), generation_config.json (bos/eos/pad ids; eos
 * [turn end, document end] where both exist), and the bos/eos ids for config.json (-1: none). The format is
 * chat_specials_resolve's; gptkit's chat specials are added to t (as chat and sft add them) only when the model's
 * vocabulary (vocab_size; 0 = no limit) has room for them, else there is no chat template. */
typedef struct {
    char *tokenizer_json, *tokenizer_config_json, *generation_config_json;
    int32_t bos_id, eos_id;
} chat_tok_files;
int  chat_tokenizer_files(tok_tokenizer *t, size_t vocab_size, int n_ctx, chat_tok_files *out, gk_err *err);
void chat_tok_files_free(chat_tok_files *f);

/* Token ids with a parallel loss mask (mask[i] = 1: token i is a training target). Zero-initialise. limit,
 * when set, keeps only the first limit tokens: later pushes are counted in n_over and not stored, so rendering
 * a conversation far longer than the context costs no more than the context. */
typedef struct { int32_t *ids; uint8_t *mask; size_t n, cap, limit, n_over; } chat_tokens;
void chat_tokens_push(chat_tokens *t, int32_t id, uint8_t mask);
void chat_tokens_free(chat_tokens *t);

/* Renders c (appending to out). gen_prompt: 1 appends the generation prompt (see above), 0 renders only
 * the messages. c should be valid (chat_conv_validate); the rendering itself never fails. */
void chat_render(const tok_tokenizer *t, const chat_specials *sp, const chat_conv *c, int gen_prompt,
                 chat_tokens *out);
/* Encodes assistant text with only <|tool_call|> / <|tool_call_end|> recognised (appends to out). */
void chat_encode_assistant(const tok_tokenizer *t, const chat_specials *sp, const char *text, tok_ids *out);

/* A chat JSONL file rendered for training.
 * Conversations longer than max_tokens (the model's T + 1: inputs are tokens 0..T-1, targets 1..T) are
 * truncated from the right to max_tokens tokens if at least one masked (assistant) token remains after the
 * first, else dropped; both are counted. Conversations with no assistant token at all are dropped too. */
typedef struct {
    size_t n;                  /* conversations kept */
    int32_t **ids; uint8_t **mask; size_t *len;   /* [n] each, malloc'd */
    size_t n_lines;            /* non-blank lines read */
    size_t n_bad;              /* malformed lines skipped (skip_bad) */
    size_t n_truncated;        /* kept, but cut to max_tokens */
    size_t n_dropped;          /* too long with no assistant token left, or no assistant token at all */
    size_t n_tokens, n_masked; /* totals over the kept conversations */
} chat_data;
/* Reads path (JSONL, one conversation per line). Malformed lines give an error "path:LINE: field: problem",
 * or with skip_bad a warning-free skip counted in n_bad. Fails if nothing usable remains. */
int chat_data_load(chat_data *d, const char *path, const tok_tokenizer *t, const chat_specials *sp,
                   size_t max_tokens, int skip_bad, gk_err *err);
void chat_data_free(chat_data *d);

/* ================================================================ */
/* preference data and prompt sets (implemented in src/data/prefs.c).
 *
 * JSONL, one object per line (blank lines skipped):
 *   pair      {"prompt": P, "chosen": "...", "rejected": "..."}
 *   ranking   {"prompt": P, "ranked": ["best", "...", "worst"]}        (K >= 2 responses, best first)
 *   scored    {"prompt": P, "response": "..."}                          (one response, for `gptkit score`)
 *   chat      {"messages": [..., {"role":"assistant","content":"..."}]} (the last assistant turn is the
 *                                                                        response, the rest is the prompt)
 *   prompt    {"prompt": P}                                             (RL prompt sets)
 * where P is either a string (one user turn) or a message list [{"role":"system|user|assistant|tool",
 * "content":"..."}, ...] that does not end with an assistant turn. Unknown keys are ignored.
 *
 * Errors name the file, the line and the field: "prefs.jsonl:12: field \"ranked\": needs at least 2 responses".
 */

typedef struct { char *role, *content; } prefs_msg;   /* both malloc'd */

/* One line: a prompt and its responses, best first (pair: chosen, rejected; ranking: as given). */
typedef struct {
    prefs_msg *prompt; size_t n_prompt;   /* >= 1 messages; a string prompt is one "user" message */
    char **resp; size_t n_resp;           /* 0 (prompt sets), 1 (scored / chat) or >= 2 (pairs, rankings) */
    size_t line;                          /* 1-based line number in the file */
} prefs_item;

typedef struct {
    prefs_item *items; size_t n;
    char *path;
} prefs_set;

/* Which line shapes a caller accepts (a bit set). */
enum {
    PREFS_ACCEPT_PREFS   = 1,   /* pairs and rankings (>= 2 responses) */
    PREFS_ACCEPT_SCORED  = 2,   /* {"prompt","response"} and {"messages"} ending in an assistant turn */
    PREFS_ACCEPT_PROMPTS = 4,   /* {"prompt"} alone */
    PREFS_ACCEPT_ANY     = 7
};

/* Parses one JSONL line into it (zeroed first; free with prefs_item_free). path and line_no are only used
 * in messages. Returns 0, or -1 with err "path:line: field \"...\": what is wrong". */
int  prefs_parse_line(const char *text, const char *path, size_t line_no, int accept, prefs_item *it, gk_err *err);
void prefs_item_free(prefs_item *it);
/* Reads a whole file. Fails on the first bad line (or on an empty file). */
int  prefs_load(const char *path, int accept, prefs_set *out, gk_err *err);
void prefs_free(prefs_set *s);
/* Total comparison pairs in the set: sum over items of K(K-1)/2. */
size_t prefs_num_pairs(const prefs_set *s);

/* ================================================================ */
/* the built-in demo data (implemented in src/data/demo*.c).
 *
 * The demo pipeline needs data that makes every stage's effect visible in numbers on a tiny model:
 *
 *   - a pretraining corpus: the King James Bible, data/corpus/kjv.txt.gz (see data/README.md);
 *   - task instances of four skills a 4–6 layer model can learn in minutes:
 *       arith   addition / subtraction of 1–3 digit numbers        "What is 47 + 385?" -> "The answer is 432."
 *       fact    a 48-entry built-in fact table (capitals, opposites, young animals)
 *                                                                   "What is the capital of Peru?" -> "The capital of Peru is Lima."
 *       format  an output-format instruction on an arith/fact question: uppercase, one word, JSON
 *                                                                   "... Answer as JSON." -> {"answer": "Lima"}
 *       style   a "be concise" instruction (in the user turn or the system message) -> the bare answer "Lima."
 *   - from those instances, seeded generators of SFT conversations, ranked preferences / pairs, RL prompts
 *     and evaluation tasks (docs/demo-data.md has examples of every file).
 *
 * Held-out split: every task instance is identified by its prompt text (system + user). A hash of that
 * text assigns it to exactly one split (SFT 60%, preferences 15%, RL 15%, eval 10%); each generator only
 * emits instances of its own split, so no prompt ever appears in two of the files, whatever the seeds.
 *
 * The preference rule lives only here (demo_judge): a response scores 4*correct + 2*follows_format +
 * concise; of two responses the higher score is preferred. Correct = has the right number / fact;
 * follows_format = obeys the prompt's format instruction; concise = at most one sentence (no filler).
 *
 * Determinism: every generator is a pure function of (n, seed, options): the same bytes on every run and
 * platform (gk_rng, integer arithmetic, cJSON's printer). Output files are written atomically; "-" means
 * stdout. Errors (I/O, bad arguments) return -1 with err filled; nothing here aborts on outside input.
 */

/* ---------------------------------------------------------------- corpus */

/* Path of the built-in corpus relative to the repository root. */
#define DEMO_CORPUS_REL "data/corpus/kjv.txt.gz"

/* Finds the built-in corpus: $GK_ROOT/data/..., ./data/..., then <dir of the running binary>/../data/...
 * Returns a malloc'd path (caller frees) or NULL if none exists. */
char *demo_corpus_locate(void);

/* Decompresses the gzip file gz_path into out_txt (atomically: a crash leaves no half-written out_txt).
 * gz_path NULL means demo_corpus_locate(). Returns 0, or -1 with err naming the file and zlib's reason
 * (missing file, not gzip, truncated or corrupt stream). */
int demo_corpus_extract(const char *gz_path, const char *out_txt, gk_err *err);

/* ---------------------------------------------------------------- task instances */

typedef enum { DEMO_SPLIT_SFT = 0, DEMO_SPLIT_PREFS = 1, DEMO_SPLIT_RL = 2, DEMO_SPLIT_EVAL = 3 } demo_split;

#define DEMO_TEXT_MAX 256

/* One task instance. Plain value type (fixed buffers, nothing to free). Strings are NUL-terminated ASCII.
 *   system     system message, "" when there is none
 *   user       the user turn
 *   answer     canonical answer: a decimal integer ("432") or one word ("Lima")
 *   reference  the ideal assistant reply ("The answer is 432.", "LIMA", {"answer": 432}, ...);
 *              "" for tasks read back from an eval file that lacks it
 *   skill      "arith" | "fact" | "format" | "style"
 *   check      how a reply is graded (demo_check_answer): "number" | "contains" | "upper" | "exact" | "json" */
typedef struct {
    char system[DEMO_TEXT_MAX];
    char user[DEMO_TEXT_MAX];
    char answer[64];
    char reference[DEMO_TEXT_MAX];
    char skill[8];
    char check[16];
} demo_task;

/* Which split a prompt belongs to (hash of system + '\x1f' + user; system NULL or "" when none). */
demo_split demo_prompt_split(const char *system, const char *user);

/* Draws one task instance of the given split from the demo distribution (rejection sampling on the
 * split hash; consumes a variable number of draws from r). */
void demo_task_draw(gk_rng *r, demo_split split, demo_task *t);

/* Recovers the task behind a demo prompt (any split, e.g. an RL prompt or a preference prompt): answer,
 * check, skill and reference, as demo_task_draw made them. system may be NULL or "". Returns 0, or -1 if
 * the prompt is not one the demo generators make (the reward for such a prompt is then unknown). */
int demo_task_from_prompt(const char *system, const char *user, demo_task *t);

/* ---------------------------------------------------------------- grading and the preference rule */

/* 1 if response is a correct answer under check, else 0; -1 if check is unknown.
 * check is a check name, or a skill name where that fixes the check ("arith" = number, "fact" = contains,
 * "style" = exact). Leading/trailing whitespace in response is ignored. The checks:
 *   number    the first integer in the response equals expected ("The answer is 432." ok, "4321" not)
 *   contains  expected occurs as a whole word, case-insensitively ("Lima" in "It is lima." ok, "Limas" not)
 *   upper     no lowercase letters, and expected occurs as a whole word
 *   exact     the whole response equals expected, case-insensitively, ignoring one trailing '.'
 *   json      the whole response is a JSON object with exactly one key "answer" whose value equals expected
 *             (a number equal to an integer expected, or a string equal case-insensitively) */
int demo_check_answer(const char *skill_or_check, const char *expected, const char *response);

/* The hidden preference rule, as flags and a score. */
typedef struct {
    int correct;        /* right number / fact (the check's content test, ignoring format) */
    int follows_format; /* obeys the format of the task's check: upper / exact / json; always 1 for number / contains */
    int concise;        /* at most one sentence: no filler before or after the answer */
    int score;          /* 4*correct + 2*follows_format + concise, 0..7: higher is preferred */
} demo_verdict;
/* Judges response for a task graded by check with the given answer. Returns 0, or -1 if check is unknown. */
int demo_judge(const char *check, const char *answer, const char *response, demo_verdict *v);
/* The gold judge: the preference rule applied to any (prompt, response) of a demo prompt — the task is
 * recovered from the prompt text (demo_task_from_prompt), then judged (demo_judge). system may be NULL or "".
 * Returns 0 with v filled, or -1 when the prompt is not one the demo generators make (no verdict). */
int demo_gold(const char *system, const char *user, const char *response, demo_verdict *v);

/* ---------------------------------------------------------------- prompts for a base model */

/* Few-shot prompt for a base (non-chat) model:
 *   "Q: <example question>\nA: <example reference>\n\n" k times, then "Q: <t's question>\nA:"
 * where a question is "<system> <user>" (or just user). Examples are drawn with seed from the SFT split,
 * with the same skill and check as t, never t's own prompt. The model's completion up to its first
 * newline is the answer. Returns a malloc'd string (caller frees). k >= 0. */
char *demo_fewshot_prompt(const demo_task *t, int k, uint64_t seed);

/* ---------------------------------------------------------------- multiple choice (calibration) */

/* A held-out task asked as multiple choice, for measuring calibration: t is a plain-mode task of the eval split
 * (a fact or arithmetic; its reference is a sentence), choice[] are DEMO_MC_K replies in that sentence form,
 * choice[right] with the answer and the others with wrong values of the same kind (other answers of the
 * relation; for arithmetic the answer +-1 or +-10). A model's belief in each is the likelihood of that reply. */
#define DEMO_MC_K 4
typedef struct { demo_task t; char choice[DEMO_MC_K][DEMO_TEXT_MAX]; int right; } demo_mc;
/* Up to n distinct items from seed (its own stream); *out malloc'd (caller frees). Returns the count, or -1. */
long demo_mc_items(long n, uint64_t seed, demo_mc **out, gk_err *err);

/* ---------------------------------------------------------------- generators (JSONL files) */

/* Plain options; demo_opts_default() fills the documented defaults. NULL opts means defaults. They shape
 * what is written about an instance, never which instances exist (the task distribution and the splits
 * are fixed, so files made with different options stay disjoint). prompts and eval use none of them. */
typedef struct {
    double sft_ramble;   /* fraction of plain-mode SFT replies that add a filler sentence (imperfect
                            demonstrators: gives PPO something the reward model dislikes); default 0.15 */
    double sft_slip;     /* fraction of format-mode SFT replies (uppercase, one word, JSON, concise) that ignore the
                            format and answer in a plain sentence (imperfect demonstrators again: what comparisons
                            can fix); default 0 */
    double sft_multi;    /* fraction of SFT conversations with two user/assistant exchanges; default 0.15 */
    double pref_rank;    /* fraction of preference lines that are rankings (K = 3 or 4) rather than pairs; default 0.4 */
    double pref_arith;   /* chance that an arithmetic instance drawn for the preference file is kept (otherwise
                            another prefs-split instance is drawn); default 1. Below 1 it thins the comparisons
                            that hinge on whether a sum is right, which a small reward model cannot compute;
                            the rule itself is unchanged (the demo pipeline uses 0.25). */
    double pref_drop;    /* fraction of preference lines that are content contrasts: a reply that keeps the answer
                            but rambles beats one whose answer is gone ("The capital of France is.", a
                            filler alone, {"answer": ""}, an off-topic or garbled value); as a
                            ranking [ideal, rambling, dropped] (with probability pref_rank) or the pair rambling >
                            dropped. A reward model that never saw a reply without its content rewards a policy
                            for dropping it to be brief (bench/RESULTS.md, issue 21). Drawn from their own RNG
                            stream, without the pref_arith thinning; default 0, which leaves the file as it was */
    double sft_tools;    /* fraction of SFT conversations that are big-number arithmetic solved with the calc
                            tool (demo_tool_conversation; drawn from their own RNG stream); default 0, which
                            leaves the file as it was before tools existed */
    double sft_rag;      /* fraction of SFT conversations that answer a question about a generated document from
                            the document placed before it, as `chat --retrieve` places retrieved sources
                            (rag_sft_conversation; people drawn from their own RNG stream, never those of the
                            evaluation set); default 0, which leaves the file as it was */
    const char *rag_source;   /* the document file named in those sources (NULL: "docs.jsonl"); the pipeline
                            names the file its evaluation index is built from, so the prompts look alike */
} demo_opts;
void demo_opts_default(demo_opts *o);

/* Each writes n JSONL lines to path ("-" = stdout; otherwise an atomic write) and returns n, or -1 with
 * err filled (bad n, I/O failure). n must be in 1..10,000,000. Line shapes:
 *   sft      {"messages":[{"role":"system","content":...}?, {"role":"user",...}, {"role":"assistant",...}, ...]}
 *   prefs    {"prompt":P, "chosen":"...", "rejected":"..."}  or  {"prompt":P, "ranked":["best", ..., "worst"]}
 *   prompts  {"prompt":P}
 *   eval     {"prompt":P, "answer":"...", "skill":"...", "check":"...", "reference":"..."}   (no duplicates
 *            while the split has unseen instances)
 * where P is the user text as a string when there is no system message, else
 * [{"role":"system","content":...},{"role":"user","content":...}]. */
long demo_gen_sft(const char *path, long n, uint64_t seed, const demo_opts *o, gk_err *err);
long demo_gen_prefs(const char *path, long n, uint64_t seed, const demo_opts *o, gk_err *err);
long demo_gen_prompts(const char *path, long n, uint64_t seed, const demo_opts *o, gk_err *err);
long demo_gen_eval(const char *path, long n, uint64_t seed, const demo_opts *o, gk_err *err);

/* In-memory eval set: the same tasks demo_gen_eval writes for (n, seed, o). *out is malloc'd (caller frees).
 * Returns n, or -1 on bad n. */
long demo_eval_tasks(long n, uint64_t seed, const demo_opts *o, demo_task **out, gk_err *err);

/* Big-number arithmetic for the tools (demo_tools.c): operands of 4-12 digits, + - *, the small tasks' wording.
 * demo_tool_conversation appends one SFT-split conversation to msgs (a cJSON array): user question, assistant
 * <|tool_call|>{"name": "calc", "arguments": {"expression": "A op B"}}<|tool_call_end|>, tool result, assistant
 * "The answer is R.". demo_tool_tasks / demo_gen_tool_eval: n eval-split tasks (skill "calc", check "number"),
 * lines shaped like demo_gen_eval's. */
struct cJSON;
void demo_tool_conversation(gk_rng *r, struct cJSON *msgs);
long demo_tool_tasks(long n, uint64_t seed, demo_task **out, gk_err *err);
long demo_gen_tool_eval(const char *path, long n, uint64_t seed, const demo_opts *o, gk_err *err);

/* Reads an eval JSONL file (as written by demo_gen_eval; "reference" optional) into a malloc'd array
 * (caller frees). Returns the count, or -1 with err naming file:line and the field. */
long demo_read_eval(const char *path, demo_task **out, gk_err *err);

/* ---------------------------------------------------------------- retrieval documents (rag_docs.c) */
/* The retrieval demo's document set: facts no model has seen (generated people and towns: birthplaces, years,
 * trades, quantities, spouses, heights), one document each, and paraphrased questions about them. Writes
 * DIR/docs.jsonl ({"text", "id"}) and DIR/questions.jsonl ({"question", "answer", "doc"}: the answer is
 * verbatim in document doc) atomically. Deterministic in (n_people, seed). Returns 0 or -1. */
int rag_docs_write(const char *dir, long n_people, uint64_t seed, size_t *n_docs, size_t *n_questions, gk_err *err);

/* One generated person (rag_docs_write writes person i of the set drawn from r): the document text (two
 * paragraphs, ending in a newline), its id "person-<i>", and four questions (birthplace, birth year, trade,
 * spouse; each in one of three phrasings) with their answers (verbatim in text) and the demo's reply for each
 * (the answer in a span of the document's own words: "Briwyn Quabrita was born in Voromwick."). */
typedef struct { char id[32]; char text[512]; char question[4][128]; char answer[4][80]; char reply[4][160]; } rag_doc;
void rag_doc_draw(gk_rng *r, long i, rag_doc *d);
/* Question k of d as chat --retrieve puts it to the model when retrieval finds d (index_augment_question with
 * k = 1 over an index of source_file): "Sources:\n[1] (SOURCE_FILE#id) text\n\nQuestion: question". Writes at
 * most cap bytes (snprintf's contract) and returns the length it needed. */
size_t rag_augmented_question(const rag_doc *d, const char *source_file, int k, char *out, size_t cap);
/* Appends one SFT exchange that reads a source to msgs (a cJSON array): a fresh person from r, one of its
 * questions augmented as above (source_file NULL or "": "docs.jsonl"), and the reply taken from the source. */
void rag_sft_conversation(gk_rng *r, const char *source_file, struct cJSON *msgs);



#endif
