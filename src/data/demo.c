/* demo.c: the built-in demo task distribution and its generators (API and rationale in data/data.h,
 * examples in docs/demo-data.md).
 *
 * A task instance is drawn in three steps: content (an arithmetic problem or a fact from the table), a mode
 * (plain, uppercase, one word, JSON, concise) and the wording (question template, instruction phrasing,
 * optional system message). Its prompt text decides its split (demo_prompt_split), and each generator
 * redraws until it gets an instance of its own split. Everything is integer arithmetic on gk_rng draws, so
 * a seed gives the same bytes everywhere.
 */
#include "data/data.h"
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------- the tables */

typedef struct { const char *subject, *answer; } fact;

/* Three relations, 48 facts. Every answer is one word, and no answer is another fact's subject, so a
 * reply naming the subject never counts as naming the answer. */
static const fact CAPITALS[] = {
    {"France", "Paris"}, {"Germany", "Berlin"}, {"Italy", "Rome"}, {"Spain", "Madrid"},
    {"Japan", "Tokyo"}, {"Egypt", "Cairo"}, {"Russia", "Moscow"}, {"Greece", "Athens"},
    {"Norway", "Oslo"}, {"Sweden", "Stockholm"}, {"Poland", "Warsaw"}, {"Portugal", "Lisbon"},
    {"Ireland", "Dublin"}, {"Austria", "Vienna"}, {"Hungary", "Budapest"}, {"Kenya", "Nairobi"},
    {"Peru", "Lima"}, {"Chile", "Santiago"}, {"Cuba", "Havana"}, {"Canada", "Ottawa"},
    {"China", "Beijing"}, {"Thailand", "Bangkok"}, {"Finland", "Helsinki"}, {"Denmark", "Copenhagen"},
};
static const fact OPPOSITES[] = {
    {"hot", "cold"}, {"big", "small"}, {"up", "down"}, {"fast", "slow"}, {"light", "dark"}, {"happy", "sad"},
    {"early", "late"}, {"open", "closed"}, {"full", "empty"}, {"wet", "dry"}, {"young", "old"}, {"loud", "quiet"},
};
static const fact YOUNG[] = {
    {"cat", "kitten"}, {"dog", "puppy"}, {"cow", "calf"}, {"horse", "foal"}, {"sheep", "lamb"},
    {"duck", "duckling"}, {"goat", "kid"}, {"frog", "tadpole"}, {"bear", "cub"}, {"deer", "fawn"},
    {"swan", "cygnet"}, {"kangaroo", "joey"},
};

typedef struct {
    const fact *facts; size_t n;
    const char *questions[6];   /* one %s: the subject */
    const char *sentence;       /* two %s: subject, answer */
} relation;

static const relation RELATIONS[] = {
    {CAPITALS, N_OF(CAPITALS),
     {"What is the capital of %s?", "Which city is the capital of %s?", "Name the capital of %s.",
      "Tell me the capital of %s.", "What city is the capital of %s?", "Do you know the capital of %s?"},
     "The capital of %s is %s."},
    {OPPOSITES, N_OF(OPPOSITES),
     {"What is the opposite of %s?", "What is the opposite of the word %s?", "Name the opposite of %s.",
      "Give me the opposite of %s.", "Which word means the opposite of %s?", "Tell me the opposite of %s."},
     "The opposite of %s is %s."},
    {YOUNG, N_OF(YOUNG),
     {"What is a baby %s called?", "What do you call a young %s?", "Name the young of a %s.",
      "What is the word for a baby %s?", "What is the name for a young %s?", "Tell me what a baby %s is called."},
     "A baby %s is called a %s."},
};

static const char *ADD_Q[] = {"What is %ld + %ld?", "Compute %ld + %ld.", "What is %ld plus %ld?",
                              "Add %ld and %ld.", "%ld + %ld = ?"};
static const char *SUB_Q[] = {"What is %ld - %ld?", "Compute %ld - %ld.", "What is %ld minus %ld?",
                              "Take %ld away from %ld.", "%ld - %ld = ?"};
#define SUB_REVERSED 3  /* SUB_Q[3] names the subtrahend first */

typedef enum { MODE_PLAIN, MODE_UPPER, MODE_WORD, MODE_JSON, MODE_CONCISE } mode;

static const char *UPPER_I[] = {"Reply in uppercase.", "Answer in capital letters.", "Write your answer in all caps."};
static const char *WORD_FACT_I[] = {"Answer with one word.", "Reply with just the answer.", "Give only the answer, nothing else."};
static const char *WORD_NUM_I[] = {"Answer with just the number.", "Reply with only the number.", "Give only the answer, nothing else."};
static const char *JSON_I[] = {"Answer as JSON {\"answer\": ...}.", "Reply in JSON with the key \"answer\".",
                               "Respond with a JSON object with the key \"answer\"."};
static const char *CONCISE_I[] = {"Be brief.", "Keep it short.", "Answer concisely."};
static const char *CONCISE_SYS[] = {"You are a terse assistant. Answer in as few words as possible.",
                                    "Be concise: reply with the answer only.",
                                    "Answer every question as briefly as you can."};
static const char *DECOR_SYS[] = {"You are a helpful assistant.", "You are a friendly assistant.",
                                  "You are gptkit, a small assistant running on a CPU.", "Answer the user's questions.",
                                  "You are a careful assistant.", "You answer questions about numbers and words."};

/* Filler for rambling replies: no digits, no fact answers, so it never changes correctness. */
static const char *FILL_PRE[] = {"Great question!", "Sure!", "Let me think about that.", "Of course!", "Good one."};
static const char *FILL_POST[] = {"I hope this helps.", "Let me know if you have any other questions.",
                                  "Thank you for asking.", "That was a fun one to work out.",
                                  "Feel free to ask me anything else.", "I am always happy to help."};

#define SYSTEM_PCT 25  /* prompts with a decorative system message (when the mode does not set one) */

/* ---------------------------------------------------------------- instances */

/* The structured instance behind a demo_task: what the preference generator needs to build wrong and
 * format-ignoring replies. */
typedef struct {
    int is_arith;
    long a, b; char op;                 /* arith: a op b, a >= b for '-' */
    int rel, idx;                       /* fact: RELATIONS[rel].facts[idx] */
    mode m;
    int sys_is_style;                   /* system message is the concise instruction (not decorative) */
    demo_task t;
} inst;

static void copyf(char *dst, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void copyf(char *dst, size_t cap, const char *fmt, ...) {
    va_list ap; va_start(ap, fmt);
    int n = vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
    GK_CHECK(n >= 0 && (size_t)n < cap, "demo text too long for its buffer (%d >= %zu)", n, cap);
}

static void upcase(char *s) { for (; *s; s++) if (*s >= 'a' && *s <= 'z') *s = (char)(*s - 'a' + 'A'); }

static long draw_operand(gk_rng *r) {
    static const long lo[] = {1, 10, 100}, span[] = {9, 90, 900};
    int d = (int)gk_rng_below(r, 3);
    return lo[d] + (long)gk_rng_below(r, (uint32_t)span[d]);
}

/* The reply of an instance in its mode, with the content value val (the answer, or a wrong one). */
static void render_reply(const inst *x, const char *val, char *out, size_t cap) {
    char sentence[DEMO_TEXT_MAX];
    if (x->is_arith) copyf(sentence, sizeof sentence, "The answer is %s.", val);
    else copyf(sentence, sizeof sentence, RELATIONS[x->rel].sentence, RELATIONS[x->rel].facts[x->idx].subject, val);
    switch (x->m) {
    case MODE_PLAIN:   copyf(out, cap, "%s", sentence); break;
    case MODE_UPPER:   copyf(out, cap, "%s", sentence); upcase(out); break;
    case MODE_WORD:    copyf(out, cap, "%s", val); break;
    case MODE_CONCISE: copyf(out, cap, "%s.", val); break;
    case MODE_JSON:
        if (x->is_arith) copyf(out, cap, "{\"answer\": %s}", val);
        else copyf(out, cap, "{\"answer\": \"%s\"}", val);
        break;
    }
}

/* The full-sentence reply, whatever the mode: what a model that ignores the format instruction says. */
static void render_plain(const inst *x, const char *val, char *out, size_t cap) {
    inst p = *x; p.m = MODE_PLAIN;
    render_reply(&p, val, out, cap);
}

/* skill and check from the mode and content */
static void set_labels(inst *x) {
    static const char *const check_of_mode[] = {"", "upper", "exact", "json", "exact"};
    static const char *const skill_of_mode[] = {"", "format", "format", "format", "style"};
    demo_task *t = &x->t;
    if (x->m == MODE_PLAIN) {
        copyf(t->skill, sizeof t->skill, "%s", x->is_arith ? "arith" : "fact");
        copyf(t->check, sizeof t->check, "%s", x->is_arith ? "number" : "contains");
    } else {
        copyf(t->skill, sizeof t->skill, "%s", skill_of_mode[x->m]);
        copyf(t->check, sizeof t->check, "%s", check_of_mode[x->m]);
    }
}

/* One draw from the whole distribution (any split). */
static void draw_any(gk_rng *r, inst *x) {
    memset(x, 0, sizeof *x);
    demo_task *t = &x->t;
    char question[DEMO_TEXT_MAX];
    x->is_arith = gk_rng_below(r, 2) == 0;
    if (x->is_arith) {
        x->op = gk_rng_below(r, 2) ? '-' : '+';
        x->a = draw_operand(r); x->b = draw_operand(r);
        if (x->op == '-' && x->a < x->b) { long s = x->a; x->a = x->b; x->b = s; }
        long result = x->op == '+' ? x->a + x->b : x->a - x->b;
        copyf(t->answer, sizeof t->answer, "%ld", result);
        uint32_t q = gk_rng_below(r, (uint32_t)N_OF(ADD_Q));
        if (x->op == '+') copyf(question, sizeof question, ADD_Q[q], x->a, x->b);
        else if (q == SUB_REVERSED) copyf(question, sizeof question, SUB_Q[q], x->b, x->a);
        else copyf(question, sizeof question, SUB_Q[q], x->a, x->b);
    } else {
        x->rel = (int)gk_rng_below(r, (uint32_t)N_OF(RELATIONS));
        const relation *rel = &RELATIONS[x->rel];
        x->idx = (int)gk_rng_below(r, (uint32_t)rel->n);
        copyf(t->answer, sizeof t->answer, "%s", rel->facts[x->idx].answer);
        copyf(question, sizeof question, rel->questions[gk_rng_below(r, 6)], rel->facts[x->idx].subject);
    }
    /* mode: plain 45%, uppercase 12%, one word 12%, JSON 12%, concise 19% */
    uint32_t mp = gk_rng_below(r, 100);
    x->m = mp < 45 ? MODE_PLAIN : mp < 57 ? MODE_UPPER : mp < 69 ? MODE_WORD : mp < 81 ? MODE_JSON : MODE_CONCISE;
    const char *instr = NULL;
    switch (x->m) {
    case MODE_PLAIN:  break;
    case MODE_UPPER:  instr = UPPER_I[gk_rng_below(r, 3)]; break;
    case MODE_WORD:   instr = (x->is_arith ? WORD_NUM_I : WORD_FACT_I)[gk_rng_below(r, 3)]; break;
    case MODE_JSON:   instr = JSON_I[gk_rng_below(r, 3)]; break;
    case MODE_CONCISE:
        if (gk_rng_below(r, 2)) instr = CONCISE_I[gk_rng_below(r, 3)];
        else { x->sys_is_style = 1; copyf(t->system, sizeof t->system, "%s", CONCISE_SYS[gk_rng_below(r, 3)]); }
        break;
    }
    if (!x->sys_is_style && gk_rng_below(r, 100) < SYSTEM_PCT)
        copyf(t->system, sizeof t->system, "%s", DECOR_SYS[gk_rng_below(r, (uint32_t)N_OF(DECOR_SYS))]);
    if (instr) copyf(t->user, sizeof t->user, "%s %s", question, instr);
    else copyf(t->user, sizeof t->user, "%s", question);

    set_labels(x);
    render_reply(x, t->answer, t->reference, sizeof t->reference);
}

static uint64_t mix64(uint64_t z) {  /* splitmix64's finalizer */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* FNV-1a over system, a 0x1f separator and user, then mixed: the identity of a prompt. */
static uint64_t prompt_hash(const char *system, const char *user) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *p = system ? system : ""; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
    h = (h ^ 0x1f) * 0x100000001b3ULL;
    for (const char *p = user ? user : ""; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
    return mix64(h);
}

demo_split demo_prompt_split(const char *system, const char *user) {
    uint64_t b = prompt_hash(system, user) % 100;
    return b < 60 ? DEMO_SPLIT_SFT : b < 75 ? DEMO_SPLIT_PREFS : b < 90 ? DEMO_SPLIT_RL : DEMO_SPLIT_EVAL;
}

static void draw_split(gk_rng *r, demo_split split, inst *x) {
    do draw_any(r, x); while (demo_prompt_split(x->t.system, x->t.user) != split);
}

void demo_task_draw(gk_rng *r, demo_split split, demo_task *t) {
    inst x;
    draw_split(r, split, &x);
    *t = x.t;
}

/* ---------------------------------------------------------------- replies that break the rule */

/* The reply with filler added before, after, or both (uppercased in uppercase mode). */
static void ramble(gk_rng *r, const inst *x, const char *reply, char *out, size_t cap) {
    char pre[64] = "", post[96] = "";
    uint32_t form = gk_rng_below(r, 5);   /* 0-1 before, 2-3 after, 4 both */
    if (form <= 1 || form == 4) copyf(pre, sizeof pre, "%s ", FILL_PRE[gk_rng_below(r, (uint32_t)N_OF(FILL_PRE))]);
    if (form >= 2) copyf(post, sizeof post, " %s", FILL_POST[gk_rng_below(r, (uint32_t)N_OF(FILL_POST))]);
    if (x->m == MODE_UPPER) { upcase(pre); upcase(post); }
    /* A bare answer gets a full stop before a following filler, so the filler is its own sentence. */
    size_t n = strlen(reply);
    char last = n ? reply[n - 1] : '.';
    const char *stop = post[0] && last != '.' && last != '!' && last != '?' && last != '}' ? "." : "";
    copyf(out, cap, "%s%s%s%s", pre, reply, stop, post);
}

/* A wrong content value: arithmetic off by 1-9 (the units digit is wrong) or by 100-900 (the hundreds
 * are wrong), kept non-negative; a fact answer replaced by another answer of the same relation. */
static void wrong_value(gk_rng *r, const inst *x, char *out, size_t cap) {
    if (x->is_arith) {
        long right = strtol(x->t.answer, NULL, 10), w;
        do {
            long d = gk_rng_below(r, 2) ? 1 + (long)gk_rng_below(r, 9) : 100 * (1 + (long)gk_rng_below(r, 9));
            w = gk_rng_below(r, 2) ? right + d : right - d;
        } while (w < 0 || w == right);
        copyf(out, cap, "%ld", w);
    } else {
        const relation *rel = &RELATIONS[x->rel];
        uint32_t j = gk_rng_below(r, (uint32_t)rel->n - 1);
        if ((int)j >= x->idx) j++;
        copyf(out, cap, "%s", rel->facts[j].answer);
    }
}

/* The reply with its content gone, as a policy that learned "short is good" from a reward model writes it:
 *   - the sentence cut where the value should be ("The capital of France is." or, cut mid-way, "The capital of
 *     France is"), or in JSON mode {"answer": ""};
 *   - a filler sentence alone ("Sure!");
 *   - an off-topic value: a number for a fact question, a fact word for a sum ("A baby cow is called a 378.");
 *   - a garbled value: the sum's digits run on ("71762" for 717), an answer of another relation ("kitten" for
 *     a capital), or the answer misspelt ("Hublin" for Dublin);
 * the last two in the prompt's mode or (half the time) as a bare "value." whatever the mode — the two shapes a
 * policy trained against a reward model blind to content was seen to produce (bench/RESULTS.md, issue 21).
 * Uppercased in uppercase mode. It never holds the right answer, so the rule scores it 3 at most. */
static void drop_content(gk_rng *r, const inst *x, char *out, size_t cap) {
    uint32_t form = gk_rng_below(r, 5);
    if (form >= 3) {
        char val[64];
        if (x->is_arith && form == 3) {        /* a fact word for a sum */
            const relation *rel = &RELATIONS[gk_rng_below(r, (uint32_t)N_OF(RELATIONS))];
            copyf(val, sizeof val, "%s", rel->facts[gk_rng_below(r, (uint32_t)rel->n)].answer);
        } else if (x->is_arith) {             /* the answer's digits, then 2-5 more */
            int n = snprintf(val, sizeof val, "%s", x->t.answer);
            for (int k = 2 + (int)gk_rng_below(r, 4); k > 0; k--) val[n++] = (char)('0' + gk_rng_below(r, 10));
            val[n] = 0;
        } else if (form == 3) {               /* a number of 1-5 digits for a fact */
            static const uint32_t span[] = {9, 90, 900, 9000, 90000};
            static const long lo[] = {1, 10, 100, 1000, 10000};
            int d = (int)gk_rng_below(r, 5);
            copyf(val, sizeof val, "%ld", lo[d] + (long)gk_rng_below(r, span[d]));
        } else if (gk_rng_below(r, 2)) {      /* an answer of another relation */
            uint32_t k = gk_rng_below(r, (uint32_t)N_OF(RELATIONS) - 1);
            if ((int)k >= x->rel) k++;
            copyf(val, sizeof val, "%s", RELATIONS[k].facts[gk_rng_below(r, (uint32_t)RELATIONS[k].n)].answer);
        } else {                              /* the answer misspelt: one or two letters changed ("Hublin") */
            copyf(val, sizeof val, "%s", x->t.answer);
            size_t n = strlen(val);
            for (int k = 1 + (int)gk_rng_below(r, 2); k > 0; k--) {
                size_t at = gk_rng_below(r, (uint32_t)n);
                char was = val[at], c;
                do c = (char)('a' + gk_rng_below(r, 26)); while (c == (was | 0x20));
                val[at] = was >= 'A' && was <= 'Z' ? (char)(c - 'a' + 'A') : c;
            }
            if (!strcmp(val, x->t.answer)) val[0] = val[0] == 'x' ? 'z' : 'x';   /* changed back by the second edit */
        }
        if (gk_rng_below(r, 2)) copyf(out, cap, "%s.", val);
        else render_reply(x, val, out, cap);
    } else if (form == 2) {   /* filler alone */
        uint32_t k = gk_rng_below(r, (uint32_t)(N_OF(FILL_PRE) + N_OF(FILL_POST)));
        copyf(out, cap, "%s", k < N_OF(FILL_PRE) ? FILL_PRE[k] : FILL_POST[k - N_OF(FILL_PRE)]);
    } else if (x->m == MODE_JSON) {
        copyf(out, cap, "{\"answer\": \"\"}");
    } else {           /* the sentence without its value: the word modes get the plain sentence */
        render_plain(x, "", out, cap);
        size_t n = strlen(out);
        GK_CHECK(n >= 2 && out[n - 1] == '.' && out[n - 2] == ' ', "demo sentence does not end in its value: '%s'", out);
        if (form == 0) { out[n - 2] = '.'; out[n - 1] = 0; }   /* "... is ." -> "... is." */
        else out[n - 2] = 0;                                   /* cut off: "... is" */
    }
    if (x->m == MODE_UPPER) upcase(out);
}

/* ---------------------------------------------------------------- JSONL output */

typedef struct { gk_afile *af; FILE *fp; } sink;

static int sink_open(sink *s, const char *path, gk_err *err) {
    s->af = NULL; s->fp = NULL;
    if (!path || !*path) return gk_errf(err, "no output path");
    if (!strcmp(path, "-")) { s->fp = stdout; return 0; }
    s->af = gk_afile_open(path, err);
    return s->af ? 0 : -1;
}
static void sink_line(sink *s, cJSON *obj) {
    char *line = cJSON_PrintUnformatted(obj);
    GK_CHECK(line, "cJSON_PrintUnformatted failed (out of memory)");
    if (s->af) { gk_afile_write(s->af, line, strlen(line)); gk_afile_write(s->af, "\n", 1); }
    else { fputs(line, s->fp); fputc('\n', s->fp); }
    cJSON_free(line);
    cJSON_Delete(obj);
}
static int sink_close(sink *s, const char *path, gk_err *err) {
    if (s->af) return gk_afile_commit(s->af, err) == 0 ? 0 : gk_err_prefix(err, "writing %s", path);
    if (fflush(s->fp) != 0 || ferror(s->fp)) return gk_errf(err, "writing to stdout failed");
    return 0;
}

static cJSON *message(const char *role, const char *content) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", content);
    return m;
}

/* A prompt: the user text, or [system, user] messages when there is a system message. */
static cJSON *prompt_json(const demo_task *t) {
    if (!t->system[0]) return cJSON_CreateString(t->user);
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, message("system", t->system));
    cJSON_AddItemToArray(a, message("user", t->user));
    return a;
}

static int check_n(long n, gk_err *err) {
    if (n < 1 || n > 10000000) return gk_errf(err, "count must be in 1..10000000, got %ld", n);
    return 0;
}

/* Each generator gets its own stream, so (say) prefs with seed 1 share no draws with sft with seed 1. */
static void seed_for(gk_rng *r, uint64_t seed, uint64_t stream) { gk_rng_seed(r, mix64(seed ^ (stream * 0x9e3779b97f4a7c15ULL))); }

void demo_opts_default(demo_opts *o) {
    memset(o, 0, sizeof *o);
    o->sft_ramble = 0.15;
    o->sft_multi = 0.15;
    o->pref_rank = 0.4;
    o->pref_arith = 1.0;
    o->pref_drop = 0;
    o->sft_tools = 0;
}

static demo_opts opts_or_default(const demo_opts *o) {
    demo_opts d;
    if (o) d = *o; else demo_opts_default(&d);
    return d;
}

/* ---------------------------------------------------------------- generators */

long demo_gen_sft(const char *path, long n, uint64_t seed, const demo_opts *o, gk_err *err) {
    if (check_n(n, err)) return -1;
    demo_opts op = opts_or_default(o);
    sink s;
    if (sink_open(&s, path, err)) return -1;
    gk_rng r; seed_for(&r, seed, 1);
    gk_rng rt; seed_for(&rt, seed, 6);   /* tool conversations: their own stream, so sft_tools = 0 changes nothing */
    gk_rng rs; seed_for(&rs, seed, 7);   /* format slips: their own stream, so sft_slip = 0 changes nothing */
    gk_rng rq; seed_for(&rq, seed, 8);   /* reading sources: their own stream, so sft_rag = 0 changes nothing */
    for (long i = 0; i < n; i++) {
        if (op.sft_rag > 0 && gk_rng_uniform(&rq) < op.sft_rag) {
            cJSON *obj = cJSON_CreateObject();
            rag_sft_conversation(&rq, op.rag_source, cJSON_AddArrayToObject(obj, "messages"));
            sink_line(&s, obj);
            continue;
        }
        if (op.sft_tools > 0 && gk_rng_uniform(&rt) < op.sft_tools) {
            cJSON *obj = cJSON_CreateObject();
            demo_tool_conversation(&rt, cJSON_AddArrayToObject(obj, "messages"));
            sink_line(&s, obj);
            continue;
        }
        inst x; draw_split(&r, DEMO_SPLIT_SFT, &x);
        cJSON *obj = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(obj, "messages");
        int turns = (!x.sys_is_style && gk_rng_uniform(&r) < op.sft_multi) ? 2 : 1;
        if (x.t.system[0]) cJSON_AddItemToArray(msgs, message("system", x.t.system));
        for (int k = 0; k < turns; k++) {
            if (k > 0) do draw_split(&r, DEMO_SPLIT_SFT, &x); while (x.t.system[0]);
            char reply[DEMO_TEXT_MAX];
            if (x.m == MODE_PLAIN && gk_rng_uniform(&r) < op.sft_ramble) ramble(&r, &x, x.t.reference, reply, sizeof reply);
            else if (x.m != MODE_PLAIN && op.sft_slip > 0 && gk_rng_uniform(&rs) < op.sft_slip) render_plain(&x, x.t.answer, reply, sizeof reply);
            else copyf(reply, sizeof reply, "%s", x.t.reference);
            cJSON_AddItemToArray(msgs, message("user", x.t.user));
            cJSON_AddItemToArray(msgs, message("assistant", reply));
        }
        sink_line(&s, obj);
    }
    return sink_close(&s, path, err) == 0 ? n : -1;
}

typedef struct { char text[DEMO_TEXT_MAX]; int score; } cand;

/* Four candidate replies with distinct rule scores:
 *   plain modes:  ideal (7), rambling (6), wrong (3), wrong and rambling (2)
 *   format modes: ideal (7), ignores the format (5), rambling (4), wrong (3)
 * Scores come from demo_judge, the one place the rule is written; the order is checked, not assumed. */
static void candidates(gk_rng *r, const inst *x, cand c[4]) {
    char wv[64], wrong[DEMO_TEXT_MAX];
    wrong_value(r, x, wv, sizeof wv);
    render_reply(x, wv, wrong, sizeof wrong);
    copyf(c[0].text, sizeof c[0].text, "%s", x->t.reference);
    ramble(r, x, x->t.reference, c[1].text, sizeof c[1].text);
    copyf(c[2].text, sizeof c[2].text, "%s", wrong);
    if (x->m == MODE_PLAIN) ramble(r, x, wrong, c[3].text, sizeof c[3].text);
    else render_plain(x, x->t.answer, c[3].text, sizeof c[3].text);
    for (int i = 0; i < 4; i++) {
        demo_verdict v;
        GK_CHECK(demo_judge(x->t.check, x->t.answer, c[i].text, &v) == 0, "bad check '%s'", x->t.check);
        c[i].score = v.score;
    }
    /* sort by score, best first (insertion sort on 4) */
    for (int i = 1; i < 4; i++)
        for (int j = i; j > 0 && c[j].score > c[j - 1].score; j--) { cand t = c[j]; c[j] = c[j - 1]; c[j - 1] = t; }
    for (int i = 1; i < 4; i++)
        GK_CHECK(c[i].score < c[i - 1].score, "demo preference candidates tie (score %d) for '%s'", c[i].score, x->t.user);
}

/* A content contrast (pref_drop): a reply that keeps the answer but rambles (the ideal reply with filler, in its
 * format) against a reply whose content is gone, off-topic or garbled (drop_content), mostly the shorter of the
 * two. Not the plain sentence that ignores a format: as the winner of a quarter of these lines it taught a reward
 * model that plain sentences are fine everywhere, and PPO dropped every format (issue 21).
 * A ranking [ideal, rambling with content, content dropped] with probability rank, else the pair rambling >
 * dropped. It teaches a reward model the rule's weights in the order a policy meets them: the answer's
 * presence outweighs brevity and format (4 > 2 + 1), and brevity counts once the answer is there. No
 * arithmetic thinning (pref_arith): whether a number is there at all needs no sum to be computed. */
static cJSON *drop_line(gk_rng *r, double rank) {
    inst x; draw_split(r, DEMO_SPLIT_PREFS, &x);
    cand c[3];
    copyf(c[0].text, sizeof c[0].text, "%s", x.t.reference);
    ramble(r, &x, x.t.reference, c[1].text, sizeof c[1].text);
    drop_content(r, &x, c[2].text, sizeof c[2].text);
    for (int i = 0; i < 3; i++) {
        demo_verdict v;
        GK_CHECK(demo_judge(x.t.check, x.t.answer, c[i].text, &v) == 0, "bad check '%s'", x.t.check);
        c[i].score = v.score;
    }
    GK_CHECK(c[0].score > c[1].score && c[1].score > c[2].score, "demo content contrast out of order (%d, %d, %d) for '%s'",
             c[0].score, c[1].score, c[2].score, x.t.user);
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddItemToObject(obj, "prompt", prompt_json(&x.t));
    if (gk_rng_uniform(r) < rank) {
        cJSON *ranked = cJSON_AddArrayToObject(obj, "ranked");
        for (int k = 0; k < 3; k++) cJSON_AddItemToArray(ranked, cJSON_CreateString(c[k].text));
    } else {
        cJSON_AddStringToObject(obj, "chosen", c[1].text);
        cJSON_AddStringToObject(obj, "rejected", c[2].text);
    }
    return obj;
}

long demo_gen_prefs(const char *path, long n, uint64_t seed, const demo_opts *o, gk_err *err) {
    if (check_n(n, err)) return -1;
    demo_opts op = opts_or_default(o);
    sink s;
    if (sink_open(&s, path, err)) return -1;
    gk_rng r; seed_for(&r, seed, 2);
    gk_rng rd; seed_for(&rd, seed, 9);   /* content contrasts: their own stream, so pref_drop = 0 changes nothing */
    for (long i = 0; i < n; i++) {
        if (op.pref_drop > 0 && gk_rng_uniform(&rd) < op.pref_drop) {
            sink_line(&s, drop_line(&rd, op.pref_rank));
            continue;
        }
        inst x; draw_split(&r, DEMO_SPLIT_PREFS, &x);
        while (op.pref_arith < 1.0 && x.is_arith && gk_rng_uniform(&r) >= op.pref_arith) draw_split(&r, DEMO_SPLIT_PREFS, &x);
        cand c[4];
        candidates(&r, &x, c);
        cJSON *obj = cJSON_CreateObject();
        cJSON_AddItemToObject(obj, "prompt", prompt_json(&x.t));
        if (gk_rng_uniform(&r) < op.pref_rank) {
            /* K = 3 (drop one of the four at random) or K = 4; kept in rule order, best first */
            int drop = gk_rng_below(&r, 2) ? (int)gk_rng_below(&r, 4) : -1;
            cJSON *ranked = cJSON_AddArrayToObject(obj, "ranked");
            for (int k = 0; k < 4; k++)
                if (k != drop) cJSON_AddItemToArray(ranked, cJSON_CreateString(c[k].text));
        } else {
            /* Which contrast the pair teaches: 30% correct vs wrong, 35% concise vs rambling, 35% format
             * kept vs ignored (plain modes: concise vs rambling), and 20% of all pairs any two candidates,
             * so the whole order is seen. Index of each candidate in the sorted c[]: */
            int ideal = 0, lo;
            int i_wrong = -1, i_ramble = -1, i_ignore = -1;
            for (int k = 1; k < 4; k++) {
                if (c[k].score == 3) i_wrong = k;
                else if (c[k].score == 6 || c[k].score == 4) i_ramble = k;
                else if (c[k].score == 5) i_ignore = k;
            }
            GK_CHECK(i_wrong > 0 && i_ramble > 0, "demo candidates missing a kind");
            if (gk_rng_below(&r, 100) < 20) {
                int a = (int)gk_rng_below(&r, 4), b = (int)gk_rng_below(&r, 3);
                if (b >= a) b++;
                ideal = a < b ? a : b; lo = a < b ? b : a;
            } else {
                uint32_t t = gk_rng_below(&r, 100);
                if (t < 30) lo = i_wrong;
                else if (t < 65 || i_ignore < 0) lo = i_ramble;
                else lo = i_ignore;
            }
            cJSON_AddStringToObject(obj, "chosen", c[ideal].text);
            cJSON_AddStringToObject(obj, "rejected", c[lo].text);
        }
        sink_line(&s, obj);
    }
    return sink_close(&s, path, err) == 0 ? n : -1;
}

long demo_gen_prompts(const char *path, long n, uint64_t seed, const demo_opts *o, gk_err *err) {
    (void)o;
    if (check_n(n, err)) return -1;
    sink s;
    if (sink_open(&s, path, err)) return -1;
    gk_rng r; seed_for(&r, seed, 3);
    for (long i = 0; i < n; i++) {
        inst x; draw_split(&r, DEMO_SPLIT_RL, &x);
        cJSON *obj = cJSON_CreateObject();
        cJSON_AddItemToObject(obj, "prompt", prompt_json(&x.t));
        sink_line(&s, obj);
    }
    return sink_close(&s, path, err) == 0 ? n : -1;
}

/* A small open-addressing set of prompt hashes (0 marks an empty slot; a real hash of 0 is stored as 1). */
typedef struct { uint64_t *slot; size_t cap; } hset;
static int hset_add(hset *h, uint64_t k) {   /* 1 if added, 0 if already there */
    if (k == 0) k = 1;
    size_t i = (size_t)(k & (h->cap - 1));
    while (h->slot[i]) { if (h->slot[i] == k) return 0; i = (i + 1) & (h->cap - 1); }
    h->slot[i] = k;
    return 1;
}

long demo_eval_tasks(long n, uint64_t seed, const demo_opts *o, demo_task **out, gk_err *err) {
    (void)o;
    if (check_n(n, err)) return -1;
    demo_task *ts = gk_malloc((size_t)n * sizeof *ts);
    hset h; h.cap = 16;
    while (h.cap < (size_t)n * 2) h.cap *= 2;
    h.slot = gk_calloc(h.cap, sizeof *h.slot);
    gk_rng r; seed_for(&r, seed, 4);
    for (long i = 0; i < n; i++) {
        /* The first draw fixes the task's kind (skill and check), so the mix is the distribution's; then
         * redraw within that kind until the prompt is new. Plain fact questions are the scarcest kind
         * (about 200 distinct eval prompts); after 2000 tries the kind is taken as exhausted and a
         * duplicate is accepted. */
        inst x, y;
        draw_split(&r, DEMO_SPLIT_EVAL, &x);
        for (int tries = 0; !hset_add(&h, prompt_hash(x.t.system, x.t.user)) && tries < 2000; tries++) {
            do draw_split(&r, DEMO_SPLIT_EVAL, &y);
            while (strcmp(y.t.skill, x.t.skill) || strcmp(y.t.check, x.t.check));
            x = y;
        }
        ts[i] = x.t;
    }
    free(h.slot);
    *out = ts;
    return n;
}

long demo_gen_eval(const char *path, long n, uint64_t seed, const demo_opts *o, gk_err *err) {
    demo_task *ts;
    if (demo_eval_tasks(n, seed, o, &ts, err) < 0) return -1;
    sink s;
    if (sink_open(&s, path, err)) { free(ts); return -1; }
    for (long i = 0; i < n; i++) {
        cJSON *obj = cJSON_CreateObject();
        cJSON_AddItemToObject(obj, "prompt", prompt_json(&ts[i]));
        cJSON_AddStringToObject(obj, "answer", ts[i].answer);
        cJSON_AddStringToObject(obj, "skill", ts[i].skill);
        cJSON_AddStringToObject(obj, "check", ts[i].check);
        cJSON_AddStringToObject(obj, "reference", ts[i].reference);
        sink_line(&s, obj);
    }
    free(ts);
    return sink_close(&s, path, err) == 0 ? n : -1;
}

/* ---------------------------------------------------------------- prompts back to tasks */

/* Matches text against a template whose only conversions are %ld (a digit run, stored in nums) and %s
 * (a run of letters, copied to word). The whole text must match. */
static int match_template(const char *tpl, const char *text, long *nums, int *nnum, char *word, size_t wcap) {
    *nnum = 0;
    const char *p = tpl, *q = text;
    while (*p) {
        if (p[0] == '%' && p[1] == 'l' && p[2] == 'd') {
            if (!(*q >= '0' && *q <= '9')) return 0;
            long v = 0; int nd = 0;
            while (*q >= '0' && *q <= '9') { if (++nd > 6) return 0; v = v * 10 + (*q++ - '0'); }
            if (*nnum >= 2) return 0;
            nums[(*nnum)++] = v;
            p += 3;
        } else if (p[0] == '%' && p[1] == 's') {
            size_t n = 0;
            while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z')) { if (n + 1 >= wcap) return 0; word[n++] = *q++; }
            if (n == 0) return 0;
            word[n] = 0;
            p += 2;
        } else {
            if (*p != *q) return 0;
            p++; q++;
        }
    }
    return *q == 0;
}

static int in_list(const char *s, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++) if (!strcmp(s, list[i])) return 1;
    return 0;
}

/* Strips " <instruction>" from the end of user if it is one of list; copies the rest to q. */
static int strip_instr(const char *user, const char *const *list, size_t n, char *q, size_t cap) {
    size_t ul = strlen(user);
    for (size_t i = 0; i < n; i++) {
        size_t il = strlen(list[i]);
        if (ul > il + 1 && user[ul - il - 1] == ' ' && !strcmp(user + ul - il, list[i]) && ul - il - 1 < cap) {
            memcpy(q, user, ul - il - 1); q[ul - il - 1] = 0;
            return 1;
        }
    }
    return 0;
}

int demo_task_from_prompt(const char *system, const char *user, demo_task *t) {
    if (!user) return -1;
    if (!system) system = "";
    inst x; memset(&x, 0, sizeof x);
    char q[DEMO_TEXT_MAX];
    if (strlen(user) >= DEMO_TEXT_MAX || strlen(system) >= DEMO_TEXT_MAX) return -1;
    /* mode from the instruction at the end of the user turn, or a concise system message */
    if (strip_instr(user, UPPER_I, N_OF(UPPER_I), q, sizeof q)) x.m = MODE_UPPER;
    else if (strip_instr(user, WORD_FACT_I, N_OF(WORD_FACT_I), q, sizeof q) ||
             strip_instr(user, WORD_NUM_I, N_OF(WORD_NUM_I), q, sizeof q)) x.m = MODE_WORD;
    else if (strip_instr(user, JSON_I, N_OF(JSON_I), q, sizeof q)) x.m = MODE_JSON;
    else if (strip_instr(user, CONCISE_I, N_OF(CONCISE_I), q, sizeof q)) x.m = MODE_CONCISE;
    else { x.m = MODE_PLAIN; strcpy(q, user); }
    if (in_list(system, CONCISE_SYS, N_OF(CONCISE_SYS))) {
        if (x.m != MODE_PLAIN) return -1;
        x.m = MODE_CONCISE; x.sys_is_style = 1;
    } else if (system[0] && !in_list(system, DECOR_SYS, N_OF(DECOR_SYS))) return -1;
    /* content */
    long nums[2]; int nn; char word[64];
    int found = 0;
    for (size_t i = 0; i < N_OF(ADD_Q) && !found; i++)
        if (match_template(ADD_Q[i], q, nums, &nn, word, sizeof word) && nn == 2) {
            x.is_arith = 1; x.op = '+'; x.a = nums[0]; x.b = nums[1]; found = 1;
        }
    for (size_t i = 0; i < N_OF(SUB_Q) && !found; i++)
        if (match_template(SUB_Q[i], q, nums, &nn, word, sizeof word) && nn == 2) {
            x.is_arith = 1; x.op = '-';
            x.a = i == SUB_REVERSED ? nums[1] : nums[0]; x.b = i == SUB_REVERSED ? nums[0] : nums[1];
            found = 1;
        }
    for (size_t r = 0; r < N_OF(RELATIONS) && !found; r++)
        for (size_t i = 0; i < N_OF(RELATIONS[r].questions) && !found; i++)
            if (match_template(RELATIONS[r].questions[i], q, nums, &nn, word, sizeof word) && nn == 0)
                for (size_t k = 0; k < RELATIONS[r].n; k++)
                    if (!strcmp(word, RELATIONS[r].facts[k].subject)) { x.rel = (int)r; x.idx = (int)k; found = 1; break; }
    if (!found) return -1;
    demo_task *d = &x.t;
    copyf(d->system, sizeof d->system, "%s", system);
    copyf(d->user, sizeof d->user, "%s", user);
    if (x.is_arith) copyf(d->answer, sizeof d->answer, "%ld", x.op == '+' ? x.a + x.b : x.a - x.b);
    else copyf(d->answer, sizeof d->answer, "%s", RELATIONS[x.rel].facts[x.idx].answer);
    set_labels(&x);
    render_reply(&x, d->answer, d->reference, sizeof d->reference);
    *t = *d;
    return 0;
}

/* ---------------------------------------------------------------- reading eval files back */

static int field_str(const cJSON *obj, const char *name, char *dst, size_t cap, int required,
                     const char *path, size_t line, gk_err *err) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!f) {
        if (!required) { dst[0] = 0; return 0; }
        return gk_errf(err, "%s:%zu: missing field \"%s\"", path, line, name);
    }
    if (!cJSON_IsString(f)) return gk_errf(err, "%s:%zu: field \"%s\" must be a string", path, line, name);
    if (strlen(f->valuestring) >= cap)
        return gk_errf(err, "%s:%zu: field \"%s\" longer than %zu bytes", path, line, name, cap - 1);
    strcpy(dst, f->valuestring);
    return 0;
}

static int read_prompt(const cJSON *obj, demo_task *t, const char *path, size_t line, gk_err *err) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(obj, "prompt");
    t->system[0] = 0; t->user[0] = 0;
    if (!p) return gk_errf(err, "%s:%zu: missing field \"prompt\"", path, line);
    if (cJSON_IsString(p)) {
        if (strlen(p->valuestring) >= sizeof t->user) return gk_errf(err, "%s:%zu: \"prompt\" too long", path, line);
        strcpy(t->user, p->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(p)) return gk_errf(err, "%s:%zu: \"prompt\" must be a string or a message list", path, line);
    int k = 0;
    for (const cJSON *m = p->child; m; m = m->next, k++) {
        char role[16], content[DEMO_TEXT_MAX];
        gk_err e2;
        if (!cJSON_IsObject(m)) return gk_errf(err, "%s:%zu: prompt[%d] is not an object", path, line, k);
        if (field_str(m, "role", role, sizeof role, 1, path, line, &e2) ||
            field_str(m, "content", content, sizeof content, 1, path, line, &e2))
            return gk_errf(err, "%s (in prompt[%d])", e2.msg, k);
        if (!strcmp(role, "system")) strcpy(t->system, content);
        else if (!strcmp(role, "user")) strcpy(t->user, content);
        else return gk_errf(err, "%s:%zu: prompt[%d].role must be system or user, got \"%s\"", path, line, k, role);
    }
    if (!t->user[0]) return gk_errf(err, "%s:%zu: prompt has no user message", path, line);
    return 0;
}

long demo_read_eval(const char *path, demo_task **out, gk_err *err) {
    gk_lines lr;
    if (gk_lines_open(&lr, path, err)) return -1;
    size_t n = 0, cap = 64;
    demo_task *ts = gk_malloc(cap * sizeof *ts);
    char *line; size_t ln;
    while (gk_lines_next(&lr, &line, &ln)) {
        cJSON *obj = cJSON_Parse(line);
        if (!cJSON_IsObject(obj)) {
            cJSON_Delete(obj);
            gk_errf(err, "%s:%zu: not a JSON object", path, ln);
            goto fail;
        }
        if (n == cap) { cap *= 2; ts = gk_realloc(ts, cap * sizeof *ts); }
        demo_task *t = &ts[n];
        memset(t, 0, sizeof *t);
        int bad = read_prompt(obj, t, path, ln, err) ||
                  field_str(obj, "answer", t->answer, sizeof t->answer, 1, path, ln, err) ||
                  field_str(obj, "skill", t->skill, sizeof t->skill, 1, path, ln, err) ||
                  field_str(obj, "check", t->check, sizeof t->check, 1, path, ln, err) ||
                  field_str(obj, "reference", t->reference, sizeof t->reference, 0, path, ln, err);
        cJSON_Delete(obj);
        if (bad) goto fail;
        if (demo_check_answer(t->check, "0", "0") < 0) {
            gk_errf(err, "%s:%zu: field \"check\": unknown check \"%s\" (number, contains, upper, exact, json)",
                    path, ln, t->check);
            goto fail;
        }
        n++;
    }
    gk_lines_close(&lr);
    *out = ts;
    return (long)n;
fail:
    gk_lines_close(&lr);
    free(ts);
    return -1;
}

/* ---------------------------------------------------------------- few-shot prompts */

static void sb_add(char **buf, size_t *len, size_t *cap, const char *s) {
    size_t n = strlen(s);
    while (*len + n + 1 > *cap) { *cap *= 2; *buf = gk_realloc(*buf, *cap); }
    memcpy(*buf + *len, s, n + 1);
    *len += n;
}

static void add_question(char **buf, size_t *len, size_t *cap, const demo_task *t) {
    sb_add(buf, len, cap, "Q: ");
    if (t->system[0]) { sb_add(buf, len, cap, t->system); sb_add(buf, len, cap, " "); }
    sb_add(buf, len, cap, t->user);
    sb_add(buf, len, cap, "\nA:");
}

/* ---------------------------------------------------------------- multiple choice (calibration) */

/* Wrong values of x's kind: other answers of its relation; for arithmetic the answer +-1 and +-10 (never
 * negative). Fills vals[0..k) with distinct values, none the answer. */
static void mc_wrong_values(gk_rng *r, const inst *x, char vals[][64], int k) {
    int got = 0;
    if (x->is_arith) {
        long ans = x->op == '+' ? x->a + x->b : x->a - x->b;
        long off[4] = { 1, -1, 10, -10 };
        for (int i = 3; i > 0; i--) { uint32_t j = gk_rng_below(r, (uint32_t)i + 1); long t = off[i]; off[i] = off[j]; off[j] = t; }
        for (int i = 0; i < 4 && got < k; i++)
            if (ans + off[i] >= 0) copyf(vals[got++], 64, "%ld", ans + off[i]);
        for (long extra = 2; got < k; extra++) copyf(vals[got++], 64, "%ld", ans + extra);
        return;
    }
    const relation *rel = &RELATIONS[x->rel];
    while (got < k) {
        int j = (int)gk_rng_below(r, (uint32_t)rel->n), dup = j == x->idx;
        for (int i = 0; i < got; i++) dup |= !strcmp(vals[i], rel->facts[j].answer);
        if (!dup) copyf(vals[got++], 64, "%s", rel->facts[j].answer);
    }
}

long demo_mc_items(long n, uint64_t seed, demo_mc **out, gk_err *err) {
    if (n < 0) return gk_errf(err, "demo_mc_items: negative count");
    demo_mc *items = gk_calloc(n > 0 ? (size_t)n : 1, sizeof *items);
    gk_rng r; seed_for(&r, seed, 10);
    long got = 0;
    for (long tries = 0; got < n && tries < 1000 * (n + 1); tries++) {
        inst x;
        draw_split(&r, DEMO_SPLIT_EVAL, &x);
        if (x.m != MODE_PLAIN) continue;   /* the sentence reply: every model here was taught it */
        int dup = 0;
        for (long i = 0; i < got && !dup; i++) dup = !strcmp(items[i].t.user, x.t.user) && !strcmp(items[i].t.system, x.t.system);
        if (dup) continue;
        demo_mc *m = &items[got++];
        m->t = x.t;
        char wrong[DEMO_MC_K - 1][64];
        mc_wrong_values(&r, &x, wrong, DEMO_MC_K - 1);
        m->right = (int)gk_rng_below(&r, DEMO_MC_K);
        for (int c = 0, w = 0; c < DEMO_MC_K; c++)
            render_reply(&x, c == m->right ? x.t.answer : wrong[w++], m->choice[c], sizeof m->choice[c]);
    }
    *out = items;
    return got;
}

char *demo_fewshot_prompt(const demo_task *t, int k, uint64_t seed) {
    size_t len = 0, cap = 256;
    char *buf = gk_malloc(cap);
    buf[0] = 0;
    gk_rng r; seed_for(&r, seed, 5);
    for (int i = 0; i < k; i++) {
        inst x;
        /* Same skill and check as t; a task from elsewhere with a combination the demo never makes
         * gets any examples after a bounded search. */
        for (int tries = 0; ; tries++) {
            draw_split(&r, DEMO_SPLIT_SFT, &x);
            if (!strcmp(x.t.user, t->user) && !strcmp(x.t.system, t->system)) continue;
            if (tries >= 10000 || (!strcmp(x.t.skill, t->skill) && !strcmp(x.t.check, t->check))) break;
        }
        add_question(&buf, &len, &cap, &x.t);
        sb_add(&buf, &len, &cap, " ");
        sb_add(&buf, &len, &cap, x.t.reference);
        sb_add(&buf, &len, &cap, "\n\n");
    }
    add_question(&buf, &len, &cap, t);
    return buf;
}
