/* chat.c: chat conversations — JSONL parsing (cJSON), validation, rendering to ids + loss mask, and the
 * training-set loader with the truncation policy. The format is described in data/data.h and docs/chat.md. */
#include "data/data.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const char *const role_names[] = { "system", "user", "assistant", "tool" };

const char *chat_role_name(chat_role r) { return (unsigned)r < 4 ? role_names[r] : "?"; }

int chat_role_parse(const char *s, chat_role *out) {
    for (int i = 0; i < 4; i++) if (!strcmp(s, role_names[i])) { *out = (chat_role)i; return 0; }
    return -1;
}

/* ---------------------------------------------------------------- conversations */

void chat_conv_add(chat_conv *c, chat_role role, const char *content) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 8;
        c->msgs = gk_realloc(c->msgs, c->cap * sizeof *c->msgs);
    }
    c->msgs[c->n].role = role;
    c->msgs[c->n].content = gk_strdup(content ? content : "");
    c->n++;
}

void chat_conv_clear(chat_conv *c) {
    for (size_t i = 0; i < c->n; i++) free(c->msgs[i].content);
    c->n = 0;
}

void chat_conv_free(chat_conv *c) {
    if (!c) return;
    chat_conv_clear(c);
    free(c->msgs);
    c->msgs = NULL; c->cap = 0;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !memcmp(s + a - b, suf, b);
}

/* An assistant message ending in <|tool_call_end|> leaves its turn open for a tool result. */
static int is_tool_call(const chat_msg *m) {
    return m->role == CHAT_ASSISTANT && ends_with(m->content, TOK_TOOL_CALL_END);
}

int chat_conv_validate(const chat_conv *c, gk_err *err) {
    for (size_t i = 0; i < c->n; i++) {
        if (c->msgs[i].role != CHAT_TOOL) continue;
        const chat_msg *p = i ? &c->msgs[i - 1] : NULL;
        if (!p || !(is_tool_call(p) || p->role == CHAT_TOOL))
            return gk_errf(err, "messages[%zu]: a tool message must follow an assistant message ending in %s "
                           "(a tool call) or another tool message", i, TOK_TOOL_CALL_END);
    }
    return 0;
}

int chat_conv_from_json(chat_conv *c, const char *json, gk_err *err) {
    chat_conv_clear(c);
    size_t badb = 0;
    if (!gk_utf8_valid(json, strlen(json), &badb))
        return gk_errf(err, "invalid UTF-8 at byte %zu of the line (JSONL text must be UTF-8)", badb);
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(json, &end, 0);
    if (!j) {
        const char *at = cJSON_GetErrorPtr();
        return gk_errf(err, "not valid JSON (near byte %ld)", at ? (long)(at - json) : 0L);
    }
    int rc = -1;
    if (!cJSON_IsObject(j)) { gk_errf(err, "expected a JSON object {\"messages\": [...]}"); goto out; }
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    if (!msgs) { gk_errf(err, "messages: missing"); goto out; }
    if (!cJSON_IsArray(msgs)) { gk_errf(err, "messages: expected an array"); goto out; }
    if (cJSON_GetArraySize(msgs) == 0) { gk_errf(err, "messages: empty"); goto out; }
    size_t i = 0;
    for (cJSON *m = msgs->child; m; m = m->next, i++) {
        if (!cJSON_IsObject(m)) { gk_errf(err, "messages[%zu]: expected an object {\"role\", \"content\"}", i); goto out; }
        cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role");
        cJSON *t = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!r) { gk_errf(err, "messages[%zu].role: missing", i); goto out; }
        if (!cJSON_IsString(r)) { gk_errf(err, "messages[%zu].role: expected a string", i); goto out; }
        chat_role role;
        if (chat_role_parse(r->valuestring, &role)) {
            gk_errf(err, "messages[%zu].role: expected one of system|user|assistant|tool, got \"%.64s\"", i, r->valuestring);
            goto out;
        }
        if (!t) { gk_errf(err, "messages[%zu].content: missing", i); goto out; }
        if (!cJSON_IsString(t)) { gk_errf(err, "messages[%zu].content: expected a string", i); goto out; }
        chat_conv_add(c, role, t->valuestring);
    }
    rc = chat_conv_validate(c, err);
out:
    cJSON_Delete(j);
    return rc;
}

/* ---------------------------------------------------------------- special tokens */

const char *chat_format_name(int fmt) {
    return fmt == CHAT_FMT_CHATML ? "chatml" : fmt == CHAT_FMT_LLAMA3 ? "llama3" : "gptkit";
}

/* ChatML / LLaMA 3 by their markers; 1 if recognised. */
static int resolve_model_format(const tok_tokenizer *t, size_t vocab_size, chat_specials *sp, gk_err *err, int *rc) {
    memset(sp, 0, sizeof *sp);
    sp->tool_call = sp->tool_call_end = sp->tool_result = sp->tool_result_end = -1;
    int32_t ims = tok_special_id(t, "<|im_start|>"), ime = tok_special_id(t, "<|im_end|>");
    int32_t sh = tok_special_id(t, "<|start_header_id|>"), eh = tok_special_id(t, "<|end_header_id|>");
    int32_t eotid = tok_special_id(t, "<|eot_id|>");
    int32_t need[3] = {-1, -1, -1};
    if (ims >= 0 && ime >= 0) {
        sp->fmt = CHAT_FMT_CHATML;
        sp->system = sp->user = sp->assistant = ims; sp->end = ime;
        sp->eot = tok_special_id(t, "<|endoftext|>");
        need[0] = ims; need[1] = ime;
    } else if (sh >= 0 && eh >= 0 && eotid >= 0) {
        sp->fmt = CHAT_FMT_LLAMA3;
        sp->system = sp->user = sp->assistant = sh; sp->header_end = eh; sp->end = eotid;
        sp->eot = tok_special_id(t, "<|end_of_text|>");
        sp->bos = tok_special_id(t, "<|begin_of_text|>");
        need[0] = sh; need[1] = eh; need[2] = eotid;
    } else {
        return 0;
    }
    *rc = 0;
    for (int i = 0; i < 3; i++)
        if (need[i] >= 0 && vocab_size && (size_t)need[i] >= vocab_size)
            *rc = gk_errf(err, "the tokenizer's chat token id %d is outside the model's vocabulary (%zu)", (int)need[i], vocab_size);
    return 1;
}

int chat_specials_resolve(tok_tokenizer *t, size_t vocab_size, chat_specials *sp, gk_err *err) {
    int rc;
    if (resolve_model_format(t, vocab_size, sp, err, &rc)) return rc;
    memset(sp, 0, sizeof *sp);
    sp->fmt = CHAT_FMT_GPTKIT;
    tok_add_chat_specials(t);
    int32_t ids[TOK_N_CHAT_SPECIALS];
    for (int i = 0; i < TOK_N_CHAT_SPECIALS; i++) {
        ids[i] = tok_special_id(t, tok_chat_specials[i]);
        if (ids[i] < 0) return gk_errf(err, "the tokenizer has no %s special token", tok_chat_specials[i]);
        if (vocab_size && (size_t)ids[i] >= vocab_size) {
            int32_t mx = 0;
            for (int k = 0; k < TOK_N_CHAT_SPECIALS; k++) {
                int32_t id = tok_special_id(t, tok_chat_specials[k]);
                if (id > mx) mx = id;
            }
            return gk_errf(err, "the tokenizer's %s has id %d but the model's vocabulary is %zu: the model cannot "
                           "read or write the chat tokens (use a model with --vocab-size >= %d, or a tokenizer "
                           "trained with room for them)", tok_chat_specials[i], ids[i], vocab_size, mx + 1);
        }
    }
    sp->eot = ids[0]; sp->system = ids[1]; sp->user = ids[2]; sp->assistant = ids[3]; sp->end = ids[4];
    sp->tool_call = ids[5]; sp->tool_call_end = ids[6]; sp->tool_result = ids[7]; sp->tool_result_end = ids[8];
    return 0;
}

/* ---------------------------------------------------------------- rendering */

void chat_tokens_push(chat_tokens *t, int32_t id, uint8_t mask) {
    if (t->limit && t->n >= t->limit) { t->n_over++; return; }
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->ids = gk_realloc(t->ids, t->cap * sizeof *t->ids);
        t->mask = gk_realloc(t->mask, t->cap);
    }
    t->ids[t->n] = id; t->mask[t->n] = mask; t->n++;
}

void chat_tokens_free(chat_tokens *t) {
    if (!t) return;
    free(t->ids); free(t->mask);
    memset(t, 0, sizeof *t);
}

void chat_encode_assistant(const tok_tokenizer *t, const chat_specials *sp, const char *text, tok_ids *out) {
    static const size_t lc = sizeof TOK_TOOL_CALL - 1, le = sizeof TOK_TOOL_CALL_END - 1;
    const char *p = text;
    for (; sp->tool_call >= 0;) {
        const char *a = strstr(p, TOK_TOOL_CALL), *b = strstr(p, TOK_TOOL_CALL_END);
        const char *hit = a && (!b || a < b) ? a : b;
        if (!hit) break;
        tok_encode(t, p, (size_t)(hit - p), 0, out);
        tok_ids_push(out, hit == a ? sp->tool_call : sp->tool_call_end);
        p = hit + (hit == a ? lc : le);
    }
    tok_encode(t, p, strlen(p), 0, out);
}

static int full(chat_tokens *out) {   /* a limited render already full: what follows need not be encoded */
    if (out->limit && out->n >= out->limit) { out->n_over++; return 1; }
    return 0;
}

static void push_text(const tok_tokenizer *t, const char *s, uint8_t mask, tok_ids *tmp, chat_tokens *out) {
    if (full(out)) return;
    tmp->n = 0;
    tok_encode(t, s, strlen(s), 0, tmp);
    for (size_t i = 0; i < tmp->n; i++) chat_tokens_push(out, tmp->ids[i], mask);
}

/* ChatML and LLaMA 3: <start>role<sep>content<end>[\n]; the assistant's content and end token are targets. */
static void render_model_format(const tok_tokenizer *t, const chat_specials *sp, const chat_conv *c, int gen_prompt,
                                chat_tokens *out) {
    tok_ids tmp = {0};
    int l3 = sp->fmt == CHAT_FMT_LLAMA3;
    if (l3 && sp->bos >= 0) chat_tokens_push(out, sp->bos, 0);
    for (size_t i = 0; i <= c->n; i++) {
        int gen = i == c->n;
        if (gen && !gen_prompt) break;
        const chat_msg *m = gen ? NULL : &c->msgs[i];
        const char *role = gen ? "assistant" : chat_role_name(m->role);
        int asst = gen || m->role == CHAT_ASSISTANT;
        chat_tokens_push(out, sp->user, 0);   /* <|im_start|> | <|start_header_id|> */
        size_t rl = strlen(role), cl = gen ? 0 : strlen(m->content);
        char *head = gk_malloc(rl + 3);
        memcpy(head, role, rl);
        if (l3) {
            head[rl] = 0;
            push_text(t, head, 0, &tmp, out);
            chat_tokens_push(out, sp->header_end, 0);
            /* "\n\n" + content (trimmed, as the LLaMA 3 template does) is one piece; the "\n\n" is the prompt's */
            const char *cs = gen ? "" : m->content;
            while (*cs == ' ' || *cs == '\n' || *cs == '\t' || *cs == '\r') cs++;
            size_t n = strlen(cs);
            while (n && (cs[n - 1] == ' ' || cs[n - 1] == '\n' || cs[n - 1] == '\t' || cs[n - 1] == '\r')) n--;
            char *body = gk_malloc(n + 3);
            body[0] = '\n'; body[1] = '\n'; memcpy(body + 2, cs, n); body[n + 2] = 0;
            tmp.n = 0;
            tok_encode(t, body, n + 2, 0, &tmp);
            /* the tokens covering the content are targets; "\n\n" may merge with its first token: count it as prompt */
            for (size_t k = 0; k < tmp.n; k++) chat_tokens_push(out, tmp.ids[k], (uint8_t)(asst && !gen && k > 0));
            free(body);
        } else {
            head[rl] = '\n'; head[rl + 1] = 0;
            if (gen) { push_text(t, head, 0, &tmp, out); free(head); break; }
            /* "role\ncontent" is one piece between the two markers */
            char *body = gk_malloc(rl + 1 + cl + 1);
            memcpy(body, head, rl + 1); memcpy(body + rl + 1, m->content, cl + 1);
            tmp.n = 0;
            tok_encode(t, body, rl + 1 + cl, 0, &tmp);
            tok_ids rtmp = {0};
            tok_encode(t, head, rl + 1, 0, &rtmp);
            for (size_t k = 0; k < tmp.n; k++) chat_tokens_push(out, tmp.ids[k], (uint8_t)(asst && k >= rtmp.n));
            tok_ids_free(&rtmp);
            free(body);
        }
        free(head);
        if (gen) break;
        chat_tokens_push(out, sp->end, (uint8_t)asst);
        if (!l3) push_text(t, "\n", 0, &tmp, out);
    }
    tok_ids_free(&tmp);
}

void chat_render(const tok_tokenizer *t, const chat_specials *sp, const chat_conv *c, int gen_prompt,
                 chat_tokens *out) {
    if (sp->fmt != CHAT_FMT_GPTKIT) { render_model_format(t, sp, c, gen_prompt, out); return; }
    tok_ids tmp = {0};
    int open_turn = 0;   /* an assistant turn left open by a tool call */
    for (size_t i = 0; i < c->n; i++) {
        const chat_msg *m = &c->msgs[i];
        switch (m->role) {
        case CHAT_SYSTEM:
        case CHAT_USER:
            chat_tokens_push(out, m->role == CHAT_SYSTEM ? sp->system : sp->user, 0);
            push_text(t, m->content, 0, &tmp, out);
            chat_tokens_push(out, sp->end, 0);
            open_turn = 0;
            break;
        case CHAT_TOOL:
            chat_tokens_push(out, sp->tool_result, 0);
            push_text(t, m->content, 0, &tmp, out);
            chat_tokens_push(out, sp->tool_result_end, 0);
            open_turn = 1;
            break;
        case CHAT_ASSISTANT:
            if (!open_turn) chat_tokens_push(out, sp->assistant, 0);
            tmp.n = 0;
            if (!full(out)) chat_encode_assistant(t, sp, m->content, &tmp);
            for (size_t k = 0; k < tmp.n; k++) chat_tokens_push(out, tmp.ids[k], 1);
            if (is_tool_call(m)) open_turn = 1;
            else { chat_tokens_push(out, sp->end, 1); open_turn = 0; }
            break;
        }
    }
    if (gen_prompt && !open_turn) chat_tokens_push(out, sp->assistant, 0);
    tok_ids_free(&tmp);
}

/* ---------------------------------------------------------------- the formats as Jinja, and a checkpoint's
 * tokenizer files */

/* gptkit's format as chat_render renders it: a tool result continues the assistant's turn, an assistant message
 * ending in a tool call leaves the turn open (no <|end|>, no new <|assistant|>), and the generation prompt is
 * <|assistant|> unless a turn is open. ChatML and LLaMA 3 as render_model_format renders them (LLaMA 3's content
 * trimmed, its BOS first; neither adds a default system message). */
const char *chat_template_jinja(int fmt) {
    switch (fmt) {
    case CHAT_FMT_CHATML:
        return "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
               "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    case CHAT_FMT_LLAMA3:
        return "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + "
               "message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
               "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
    default:
        return "{%- set ns = namespace(open=false) -%}"
               "{%- for message in messages -%}"
               "{%- if message['role'] == 'tool' -%}"
               "{{ '<|tool_result|>' + message['content'] + '<|tool_result_end|>' }}{%- set ns.open = true -%}"
               "{%- elif message['role'] == 'assistant' -%}"
               "{%- if not ns.open -%}{{ '<|assistant|>' }}{%- endif -%}{{ message['content'] }}"
               "{%- if message['content'].endswith('<|tool_call_end|>') -%}{%- set ns.open = true -%}"
               "{%- else -%}{{ '<|end|>' }}{%- set ns.open = false -%}{%- endif -%}"
               "{%- else -%}"
               "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{%- set ns.open = false -%}"
               "{%- endif -%}"
               "{%- endfor -%}"
               "{%- if add_generation_prompt and not ns.open -%}{{ '<|assistant|>' }}{%- endif -%}";
    }
}

static char *print_json(cJSON *j) {
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    GK_CHECK(s, "out of memory printing JSON");
    size_t n = strlen(s);
    s = gk_realloc(s, n + 2);
    s[n] = '\n'; s[n + 1] = 0;
    return s;
}

static void add_token(cJSON *o, const char *key, const tok_tokenizer *t, int32_t id) {
    size_t n;
    const uint8_t *b = id >= 0 ? tok_token_bytes(t, id, &n) : NULL;
    if (!b) { cJSON_AddNullToObject(o, key); return; }
    char *s = gk_malloc(n + 1);
    memcpy(s, b, n); s[n] = 0;
    cJSON_AddStringToObject(o, key, s);
    free(s);
}

int chat_tokenizer_files(tok_tokenizer *t, size_t vocab_size, int n_ctx, chat_tok_files *out, gk_err *err) {
    memset(out, 0, sizeof *out);
    out->bos_id = out->eos_id = -1;
    /* gptkit's format adds its specials after the vocabulary's largest id: only where the model has room for them
     * (as chat and sft would use them); else the tokenizer goes as it is, without a template */
    chat_specials sp;
    int have_fmt;
    {
        chat_specials probe; gk_err e; int rc;
        if (resolve_model_format(t, vocab_size, &probe, &e, &rc)) have_fmt = rc == 0;
        else {
            size_t missing = 0;
            for (int i = 0; i < TOK_N_CHAT_SPECIALS; i++) missing += tok_special_id(t, tok_chat_specials[i]) < 0;
            have_fmt = !vocab_size || tok_vocab_size(t) + missing <= vocab_size;
        }
    }
    if (have_fmt && chat_specials_resolve(t, vocab_size, &sp, err)) have_fmt = 0;
    int32_t eot = tok_eot_id(t);
    if (have_fmt && sp.fmt == CHAT_FMT_LLAMA3) eot = sp.eot;
    if (!have_fmt && eot < 0) eot = tok_special_id(t, "<|end_of_text|>");
    int32_t bos = have_fmt && sp.fmt == CHAT_FMT_LLAMA3 ? sp.bos : eot;
    int32_t eos = have_fmt ? sp.end : eot;
    out->bos_id = bos; out->eos_id = eos;
    out->tokenizer_json = tok_hf_json(t, err);
    if (!out->tokenizer_json) return -1;

    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "tokenizer_class", "PreTrainedTokenizerFast");
    cJSON_AddNumberToObject(c, "model_max_length", n_ctx);
    add_token(c, "bos_token", t, have_fmt && sp.fmt == CHAT_FMT_CHATML ? -1 : bos);
    add_token(c, "eos_token", t, eos);
    add_token(c, "pad_token", t, eot);
    cJSON_AddBoolToObject(c, "add_bos_token", 0);
    cJSON_AddBoolToObject(c, "add_eos_token", 0);
    cJSON_AddBoolToObject(c, "clean_up_tokenization_spaces", 0);
    if (have_fmt) cJSON_AddStringToObject(c, "chat_template", chat_template_jinja(sp.fmt));
    out->tokenizer_config_json = print_json(c);

    cJSON *g = cJSON_CreateObject();
    if (bos >= 0) cJSON_AddNumberToObject(g, "bos_token_id", bos);
    if (eos >= 0 && eot >= 0 && eot != eos) {   /* a reply ends at the turn's end; a document at its end */
        cJSON *l = cJSON_AddArrayToObject(g, "eos_token_id");
        cJSON_AddItemToArray(l, cJSON_CreateNumber(eos));
        cJSON_AddItemToArray(l, cJSON_CreateNumber(eot));
    } else if (eos >= 0) cJSON_AddNumberToObject(g, "eos_token_id", eos);
    if (eot >= 0) cJSON_AddNumberToObject(g, "pad_token_id", eot);
    out->generation_config_json = print_json(g);
    return 0;
}

void chat_tok_files_free(chat_tok_files *f) {
    if (!f) return;
    free(f->tokenizer_json); free(f->tokenizer_config_json); free(f->generation_config_json);
    memset(f, 0, sizeof *f);
    f->bos_id = f->eos_id = -1;
}

/* ---------------------------------------------------------------- training set */

static void data_push(chat_data *d, size_t *cap, const chat_tokens *r, size_t n) {
    if (d->n == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        d->ids = gk_realloc(d->ids, *cap * sizeof *d->ids);
        d->mask = gk_realloc(d->mask, *cap * sizeof *d->mask);
        d->len = gk_realloc(d->len, *cap * sizeof *d->len);
    }
    d->ids[d->n] = gk_malloc(n * sizeof(int32_t));
    d->mask[d->n] = gk_malloc(n);
    memcpy(d->ids[d->n], r->ids, n * sizeof(int32_t));
    memcpy(d->mask[d->n], r->mask, n);
    d->len[d->n] = n;
    d->n++;
    d->n_tokens += n;
    for (size_t i = 1; i < n; i++) d->n_masked += r->mask[i];
}

int chat_data_load(chat_data *d, const char *path, const tok_tokenizer *t, const chat_specials *sp,
                   size_t max_tokens, int skip_bad, gk_err *err) {
    memset(d, 0, sizeof *d);
    if (max_tokens < 2) return gk_errf(err, "chat data: max_tokens must be at least 2");
    gk_lines lr;
    if (gk_lines_open(&lr, path, err)) return -1;
    chat_conv c = {0};
    chat_tokens r = {.limit = max_tokens};
    size_t cap = 0;
    char *line; size_t line_no;
    int rc = 0;
    while (gk_lines_next(&lr, &line, &line_no)) {
        d->n_lines++;
        gk_err e;
        if (chat_conv_from_json(&c, line, &e)) {
            if (skip_bad) { d->n_bad++; continue; }
            rc = gk_errf(err, "%s:%zu: %s", path, line_no, e.msg);
            break;
        }
        r.n = r.n_over = 0;
        chat_render(t, sp, &c, 0, &r);   /* keeps the first max_tokens: longer ones are cut from the right */
        size_t n = r.n;
        if (r.n_over) d->n_truncated++;
        /* mask[0] can never be a target (nothing precedes it), so count targets from 1 */
        size_t targets = 0;
        for (size_t i = 1; i < n; i++) targets += r.mask[i];
        if (targets == 0) {
            if (r.n_over) d->n_truncated--;
            d->n_dropped++;
            continue;
        }
        data_push(d, &cap, &r, n);
    }
    gk_lines_close(&lr);
    chat_conv_free(&c);
    chat_tokens_free(&r);
    if (rc == 0 && d->n == 0)
        rc = gk_errf(err, "%s: no usable conversations (%zu lines, %zu malformed, %zu without assistant tokens "
                     "within %zu tokens)", path, d->n_lines, d->n_bad, d->n_dropped, max_tokens);
    if (rc) chat_data_free(d);
    return rc;
}

void chat_data_free(chat_data *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) { free(d->ids[i]); free(d->mask[i]); }
    free(d->ids); free(d->mask); free(d->len);
    memset(d, 0, sizeof *d);
}
