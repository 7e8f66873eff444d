/* http.c: the routes of `gptkit serve` on libmicrohttpd — request bodies collected within --max-body, API-key
 * checks, the OpenAI routes (one job per generation request, answered as one JSON object or as Server-Sent
 * Events fed by the job's streamed text), /v1/models, /health, /metrics and the page. Runs on the connection's
 * own thread (one per connection), so waiting on a job blocks only this client. */
#include "serve/serve_internal.h"
#ifdef GK_HAVE_MHD
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { ROUTE_CHAT = 0, ROUTE_COMPLETIONS, ROUTE_OTHER, ROUTE_PAGE };

/* One HTTP request (libmicrohttpd's con_cls). */
typedef struct {
    server *s;
    struct MHD_Connection *c;
    int route;
    tok_bytes body;
    int too_big;
    job *j;                   /* streaming: the job this response reads */
    tok_bytes out;            /* streaming: SSE bytes not yet handed to libmicrohttpd */
    size_t out_off;
    size_t *sent;             /* [n] bytes of each choice's text already sent */
    int started, ended;
    int answered;             /* a response was queued before the body was read (413) */
    char id[64];
} req_ctx;

/* ---------------------------------------------------------------- plain responses */

static enum MHD_Result respond(req_ctx *rc, int status, const char *ctype, const char *body, size_t n) {
    struct MHD_Response *r = MHD_create_response_from_buffer(n, (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    if (status == 204) {
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
    }
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ok = MHD_queue_response(rc->c, (unsigned)status, r);
    MHD_destroy_response(r);
    serve_metrics_request(rc->s, rc->route, status);
    return ok;
}

static enum MHD_Result respond_json(req_ctx *rc, int status, cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    enum MHD_Result ok = respond(rc, status, "application/json", s, strlen(s));
    free(s);
    return ok;
}

static enum MHD_Result respond_error(req_ctx *rc, const serve_error *e) {
    char *s = serve_error_json(e);
    enum MHD_Result ok = respond(rc, e->status, "application/json", s, strlen(s));
    free(s);
    return ok;
}

static enum MHD_Result fail(req_ctx *rc, int status, const char *type, const char *fmt, const char *arg) {
    serve_error e;
    serve_error_set(&e, status, type, "", fmt, arg);
    return respond_error(rc, &e);
}

/* ---------------------------------------------------------------- helpers */

static int client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    struct pollfd p = { .fd = ci->connect_fd, .events = POLLRDHUP };
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/* Waits on j->cv for at most 100 ms (j->mu held). */
static void job_wait(job *j) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    pthread_cond_timedwait(&j->cv, &j->mu, &ts);
}

static int authorized(req_ctx *rc) {
    const char *key = rc->s->o.api_key;
    if (!key) return 1;
    const char *h = MHD_lookup_connection_value(rc->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7)) return 0;
    h += 7;
    size_t a = strlen(h), b = strlen(key);
    unsigned diff = (unsigned)(a ^ b);   /* constant time in the key's length */
    for (size_t i = 0; i < b; i++) diff |= (unsigned)(unsigned char)key[i] ^ (unsigned)(unsigned char)(i < a ? h[i] : 0);
    return diff == 0;
}

static void new_id(req_ctx *rc, const char *prefix) {
    pthread_mutex_lock(&rc->s->met_mu);
    uint64_t n = ++rc->s->next_id;
    pthread_mutex_unlock(&rc->s->met_mu);
    snprintf(rc->id, sizeof rc->id, "%s-%lx%06llx", prefix, (unsigned long)rc->s->created, (unsigned long long)n);
}

/* ---------------------------------------------------------------- streaming (Server-Sent Events) */

static void emit(req_ctx *rc, cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    tok_bytes_append(&rc->out, "data: ", 6);
    tok_bytes_append(&rc->out, s, strlen(s));
    tok_bytes_append(&rc->out, "\n\n", 2);
    free(s);
}

/* The last chunks, once the job is DONE (j->mu held): each choice's finish (and tool calls), usage if asked,
 * [DONE]. */
static void stream_finish(req_ctx *rc, job *j) {
    server *s = rc->s;
    size_t gen = 0;
    for (size_t k = 0; k < j->req.n; k++) {
        const engine_seq *q = &j->out[k];
        gen += q->n;
        cJSON *calls = NULL;
        if (j->in_call[k] && q->text) {
            char cid[96], *content = NULL;
            snprintf(cid, sizeof cid, "%s_%zu", rc->id, k);
            calls = serve_tool_calls(q->text, cid, &content);
            free(content);
        }
        emit(rc, serve_chunk(&j->req, rc->id, s->created, s->model_name, k, 0, "", 0, serve_finish_reason(&j->req, q), calls));
    }
    if (j->req.include_usage) {
        cJSON *o = serve_chunk(&j->req, rc->id, s->created, s->model_name, (size_t)-1, 0, NULL, 0, NULL, NULL);
        cJSON_ReplaceItemInObject(o, "usage", serve_usage(j->req.n_prompt, gen, j->cached));
        emit(rc, o);
    }
    tok_bytes_append(&rc->out, "data: [DONE]\n\n", 14);
    rc->ended = 1;
}

/* Adds the next SSE events to rc->out, waiting for text if there is none yet. -1: the client left. */
static int stream_fill(req_ctx *rc) {
    job *j = rc->j;
    server *s = rc->s;
    if (!rc->started) {   /* OpenAI opens each chat choice with the role; completions with echo send the prompt */
        rc->started = 1;
        for (size_t k = 0; k < j->req.n; k++) {
            if (j->req.chat) emit(rc, serve_chunk(&j->req, rc->id, s->created, s->model_name, k, 1, "", 0, NULL, NULL));
            else if (j->req.echo && j->req.prompt_text)
                emit(rc, serve_chunk(&j->req, rc->id, s->created, s->model_name, k, 0, j->req.prompt_text,
                                     strlen(j->req.prompt_text), NULL, NULL));
        }
        if (rc->out.n) return 0;
    }
    pthread_mutex_lock(&j->mu);
    for (;;) {
        int any = 0;
        for (size_t k = 0; k < j->req.n; k++)
            if (j->text[k].n > rc->sent[k]) {
                emit(rc, serve_chunk(&j->req, rc->id, s->created, s->model_name, k, 0, (const char *)j->text[k].data + rc->sent[k],
                                     j->text[k].n - rc->sent[k], NULL, NULL));
                rc->sent[k] = j->text[k].n;
                any = 1;
            }
        if (j->state == JOB_DONE) stream_finish(rc, j);
        if (any || rc->ended) break;
        job_wait(j);
        if (client_gone(rc->c)) {
            pthread_mutex_unlock(&j->mu);
            job_cancel(j);
            return -1;
        }
    }
    pthread_mutex_unlock(&j->mu);
    return 0;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    req_ctx *rc = cls;
    for (;;) {
        if (rc->out_off < rc->out.n) {
            size_t k = rc->out.n - rc->out_off < max ? rc->out.n - rc->out_off : max;
            memcpy(buf, rc->out.data + rc->out_off, k);
            rc->out_off += k;
            return (ssize_t)k;
        }
        rc->out.n = rc->out_off = 0;
        if (rc->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        if (stream_fill(rc)) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

/* ---------------------------------------------------------------- generation routes */

/* Waits for a non-streaming job to finish and answers with the whole completion. */
static enum MHD_Result finish_plain(req_ctx *rc, job *j) {
    int gone = 0;
    pthread_mutex_lock(&j->mu);
    while (j->state != JOB_DONE) {
        job_wait(j);
        if (!gone && client_gone(rc->c)) {
            gone = 1;
            pthread_mutex_unlock(&j->mu);
            job_cancel(j);
            pthread_mutex_lock(&j->mu);
        }
    }
    pthread_mutex_unlock(&j->mu);
    enum MHD_Result ok = MHD_NO;
    if (!gone) {
        server *s = rc->s;
        ok = respond_json(rc, 200, serve_response(&j->req, j->out, rc->id, s->created, s->model_name, s->em.tok, j->cached));
    }
    job_unref(j);
    return ok;
}

static enum MHD_Result generate(req_ctx *rc, int chat) {
    server *s = rc->s;
    if (rc->too_big)
        return fail(rc, 413, "invalid_request_error", "the request body is larger than this server takes (%s, --max-body)", "see --help");
    serve_req req;
    serve_error e;
    if (serve_req_parse(&req, (const char *)rc->body.data, rc->body.n, chat, &s->lim, s->em.tok, &s->em.sp, &e))
        return respond_error(rc, &e);
    job *j = job_submit(s, &req);
    if (!j) return fail(rc, 503, "server_error", "%s", "the server is shutting down");
    new_id(rc, chat ? "chatcmpl" : "cmpl");
    pthread_mutex_lock(&j->mu);
    while (j->state == JOB_PENDING) pthread_cond_wait(&j->cv, &j->mu);
    int rejected = j->state == JOB_REJECTED;
    e = j->rej;
    pthread_mutex_unlock(&j->mu);
    if (rejected) { job_unref(j); return respond_error(rc, &e); }
    if (!j->req.stream) return finish_plain(rc, j);
    rc->j = j;
    rc->sent = gk_calloc(j->req.n, sizeof *rc->sent);
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, rc, NULL);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    enum MHD_Result ok = MHD_queue_response(rc->c, 200, r);
    MHD_destroy_response(r);
    serve_metrics_request(s, rc->route, 200);
    return ok;
}

static enum MHD_Result models(req_ctx *rc, const char *one) {
    server *s = rc->s;
    if (one && strcmp(one, s->model_name))
        return fail(rc, 404, "invalid_request_error", "the model '%s' does not exist (GET /v1/models lists them)", one);
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", s->model_name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)s->created);
    cJSON_AddStringToObject(m, "owned_by", "gptkit");
    cJSON_AddNumberToObject(m, "context_length", (double)s->lim.ctx);
    if (one) return respond_json(rc, 200, m);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "data"), m);
    return respond_json(rc, 200, o);
}

/* POST /v1/embeddings: the embedder runs on this handler's thread, one request at a time. */
static enum MHD_Result embeddings(req_ctx *rc) {
    server *s = rc->s;
    if (rc->too_big)
        return fail(rc, 413, "invalid_request_error", "the request body is larger than this server takes (%s, --max-body)", "see --help");
    serve_embed_req q;
    serve_error e;
    if (serve_embed_parse(&q, (const char *)rc->body.data, rc->body.n, &s->lim, &e)) return respond_error(rc, &e);
    size_t dim = embed_dim(s->emb), tokens = 0;
    if (q.dimensions && (size_t)q.dimensions != dim) {
        serve_error_set(&e, 400, "invalid_request_error", "dimensions", "dimensions: %ld asked, but this embedding model gives %zu",
                        q.dimensions, dim);
        serve_embed_req_free(&q);
        return respond_error(rc, &e);
    }
    float *v = gk_malloc(q.n * dim * sizeof(float));
    gk_err err;
    pthread_mutex_lock(&s->aux_mu);
    int bad = embed_texts(s->emb, (const char *const *)q.texts, NULL, q.n, v, &err);
    wp_ids ids = {0};
    for (size_t i = 0; !bad && i < q.n; i++)
        if (wp_encode(embed_tokenizer(s->emb), q.texts[i], strlen(q.texts[i]), 1, embed_max_tokens(s->emb), &ids, &err) == 0) tokens += ids.n;
    wp_ids_free(&ids);
    pthread_mutex_unlock(&s->aux_mu);
    enum MHD_Result ok = bad ? fail(rc, 400, "invalid_request_error", "input: %s", err.msg)
                             : respond_json(rc, 200, serve_embed_response(v, q.n, dim, q.base64, s->embed_name, tokens));
    free(v);
    serve_embed_req_free(&q);
    return ok;
}

/* ---------------------------------------------------------------- dispatch */

static enum MHD_Result route(req_ctx *rc, const char *url, const char *method) {
    server *s = rc->s;
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (!strcmp(method, "OPTIONS")) return respond(rc, 204, "text/plain", "", 0);
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
        rc->route = ROUTE_PAGE;
        if (!get) return fail(rc, 405, "invalid_request_error", "%s: use GET", url);
        return respond(rc, 200, "text/html; charset=utf-8", (const char *)serve_page_html, serve_page_html_len);
    }
    if (!strcmp(url, "/health")) {
        pthread_mutex_lock(&s->mu);
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        const char *b = stopping ? "{\"status\":\"stopping\"}" : "{\"status\":\"ok\"}";
        return respond(rc, stopping ? 503 : 200, "application/json", b, strlen(b));
    }
    int api = !strncmp(url, "/v1/", 4) || !strcmp(url, "/metrics");
    if (!api) return fail(rc, 404, "invalid_request_error", "no route %s (try /v1/chat/completions, /v1/models, /health or /)", url);
    if (!authorized(rc)) {
        serve_error e;
        serve_error_set(&e, 401, "invalid_request_error", "", "missing or wrong API key (send 'Authorization: Bearer KEY')");
        return respond_error(rc, &e);
    }
    if (!strcmp(url, "/metrics")) {
        if (!get) return fail(rc, 405, "invalid_request_error", "%s: use GET", url);
        char *t = serve_metrics_text(s);
        enum MHD_Result ok = respond(rc, 200, "text/plain; version=0.0.4", t, strlen(t));
        free(t);
        return ok;
    }
    if (!strcmp(url, "/v1/models") || !strncmp(url, "/v1/models/", 11)) {
        if (!get) return fail(rc, 405, "invalid_request_error", "%s: use GET", url);
        return models(rc, url[10] == '/' ? url + 11 : NULL);
    }
    int chat = !strcmp(url, "/v1/chat/completions"), compl = !strcmp(url, "/v1/completions");
    if (chat || compl) {
        rc->route = chat ? ROUTE_CHAT : ROUTE_COMPLETIONS;
        if (!post) return fail(rc, 405, "invalid_request_error", "%s: use POST", url);
        return generate(rc, chat);
    }
    if (!strcmp(url, "/v1/embeddings")) {
        if (!s->emb) return fail(rc, 404, "invalid_request_error", "%s: no embedding model is loaded in this server (serve --embedder DIR)", url);
        if (!post) return fail(rc, 405, "invalid_request_error", "%s: use POST", url);
        return embeddings(rc);
    }
    return fail(rc, 404, "invalid_request_error", "no route %s", url);
}

enum MHD_Result serve_on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                 const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    server *s = cls;
    req_ctx *rc = *con_cls;
    if (!rc) {   /* headers are in: refuse a declared oversized body before reading it */
        rc = gk_calloc(1, sizeof *rc);
        rc->s = s; rc->c = c; rc->route = ROUTE_OTHER;
        *con_cls = rc;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->o.max_body) rc->too_big = 1;
        if (rc->too_big) { rc->answered = 1; return fail(rc, 413, "invalid_request_error", "the request body is larger than this server takes (%s, --max-body)", cl); }
        return MHD_YES;
    }
    if (*upload_size) {
        if (rc->answered) { *upload_size = 0; return MHD_YES; }
        if (rc->body.n + *upload_size > s->o.max_body) rc->too_big = 1;
        else if (!rc->too_big) tok_bytes_append(&rc->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (rc->answered) return MHD_YES;
    serve_conn_state(s, c, 1);
    return route(rc, url, method);
}

void serve_on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)toe;
    server *s = cls;
    req_ctx *rc = *con_cls;
    if (!rc) return;
    if (rc->j) {
        pthread_mutex_lock(&rc->j->mu);
        int done = rc->j->state == JOB_DONE;
        pthread_mutex_unlock(&rc->j->mu);
        if (!done) job_cancel(rc->j);
        job_unref(rc->j);
    }
    tok_bytes_free(&rc->body); tok_bytes_free(&rc->out);
    free(rc->sent);
    free(rc);
    *con_cls = NULL;
    serve_conn_state(s, c, 0);
}
#endif
