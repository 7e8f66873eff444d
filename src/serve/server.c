/* server.c: the HTTP side of `gptkit serve` — libmicrohttpd (one thread per connection) in front of one
 * engine thread that owns the engine.
 *
 *   handler thread                      engine thread (owns the engine)
 *   parse + render (api.c)
 *   job ──► s->incoming ──────────────► engine_admit (429 when the queue is full) ─► job RUNNING / REJECTED
 *   wait on job->cv ◄── on_token: text appended to job->text[k], cv signalled
 *                   ◄── on_done:  results taken, job DONE
 *   client gone / time up ─► job->cancel ─► engine_cancel between steps (the slots go to the queue at once)
 *
 * Disconnects are seen by polling the connection's socket for a hang-up while a handler waits, so a client
 * that goes away frees its slots within one wait (100 ms) even when no token is being written to it. A slow
 * client cannot hold a worker: the main thread shuts down connections whose request has not arrived whole
 * within --read-timeout (libmicrohttpd's own timeout only counts idle time, and one byte per second is not
 * idle). Shutdown (SIGTERM/SIGINT): stop listening, refuse new requests with 503, let running ones finish for
 * --grace seconds, cancel the rest, then stop.
 */
#include "serve/serve_internal.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

void serve_opts_default(serve_opts *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->slots = 8;
    o->max_queue = 64;
    o->max_body = 1 << 20;
    o->max_header = 32 << 10;
    o->max_depth = 32;
    o->max_messages = 256;
    o->max_conns = 256;
    o->timeout_s = 300;
    o->read_timeout_s = 10;
    o->idle_timeout_s = 30;
    o->grace_s = 10;
}

#ifndef GK_HAVE_MHD
int serve_run(const serve_opts *o, gk_err *err) {
    (void)o;
    return gk_errf(err, "this gptkit was built without an HTTP server (libmicrohttpd was not found at build time: "
                        "apt install libmicrohttpd-dev, then rebuild)");
}
#else

/* ---------------------------------------------------------------- jobs */

void job_unref(job *j) {
    pthread_mutex_lock(&j->mu);
    int last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last) return;
    server *s = j->srv;
    for (size_t k = 0; k < j->req.n; k++) {
        tok_bytes_free(&j->text[k]);
        if (j->state == JOB_DONE) engine_seq_free(&j->out[k]);
    }
    free(j->text); free(j->in_call); free(j->out);
    constrain_free(j->cons);
    serve_req_free(&j->req);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
    pthread_mutex_lock(&s->mu);
    s->n_jobs--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Asks the engine thread to cancel j (between steps). */
void job_cancel(job *j) {
    pthread_mutex_lock(&j->mu);
    j->cancel = 1;
    pthread_mutex_unlock(&j->mu);
    server *s = j->srv;
    pthread_mutex_lock(&s->mu);
    s->cancel_pending = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* A new job holding req (moved in) with two references: the handler's and the engine thread's. Queued for
 * the engine thread; NULL (and req freed) when the server is shutting down. */
job *job_submit(server *s, serve_req *req) {
    job *j = gk_calloc(1, sizeof *j);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->srv = s;
    j->req = *req;
    memset(req, 0, sizeof *req);
    j->refs = 2;
    j->text = gk_calloc(j->req.n, sizeof *j->text);
    j->in_call = gk_calloc(j->req.n, sizeof *j->in_call);
    for (size_t k = 0; k < j->req.n; k++) j->in_call[k] = j->req.force_call;   /* nothing of it is content */
    j->out = gk_calloc(j->req.n, sizeof *j->out);
    j->t0 = gk_now();
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        j->refs = 1;
        pthread_mutex_lock(&s->mu); s->n_jobs++; pthread_mutex_unlock(&s->mu);
        job_unref(j);
        return NULL;
    }
    s->n_jobs++;
    *s->tail = j;
    s->tail = &j->next;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return j;
}

/* ---------------------------------------------------------------- engine callbacks (engine thread) */

static int on_token(void *ctx, size_t seq, int32_t id, const char *text, size_t len) {
    job *j = ctx;
    pthread_mutex_lock(&j->mu);
    if (seq < j->req.n) {
        /* with tools, a tool call is returned as tool_calls at the end, never streamed as content */
        if (j->req.tools && id >= 0 && id == j->srv->em.sp.tool_call) j->in_call[seq] = 1;
        if (!j->in_call[seq] && len) tok_bytes_append(&j->text[seq], text, len);
        if (id >= 0) j->ntok++;
        if (id >= 0 && !j->t_first) j->t_first = gk_now();
    }
    int stop = j->cancel;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return stop;
}

static void on_done(void *ctx, engine_req_id id) {
    job *j = ctx;
    gk_err err;
    j->cached = engine_req_cached(j->srv->em.e, id);
    GK_CHECK(engine_take_result(j->srv->em.e, id, j->out, &err) == 0, "serve: %s", err.msg);
    if (j->req.force_call)   /* the prompt ended in <|tool_call|>: the call's text starts with it */
        for (size_t k = 0; k < j->req.n; k++) {
            engine_seq *q = &j->out[k];
            size_t L = strlen(TOK_TOOL_CALL);
            char *t = gk_malloc(L + q->text_len + 1);
            memcpy(t, TOK_TOOL_CALL, L);
            if (q->text_len) memcpy(t + L, q->text, q->text_len);
            t[L + q->text_len] = 0;
            free(q->text);
            q->text = t;
            q->text_len += L;
        }
    j->e_done = 1;
    double now = gk_now();
    size_t gen = 0;
    for (size_t k = 0; k < j->req.n; k++) gen += j->out[k].n;
    serve_metrics_done(j->srv, j->req.n_prompt, gen, now - j->t0, j->t_first ? j->t_first - j->t0 : now - j->t0);
    pthread_mutex_lock(&j->mu);
    j->state = JOB_DONE;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void job_reject(job *j, int status, const char *type, const gk_err *err) {
    pthread_mutex_lock(&j->mu);
    serve_error_set(&j->rej, status, type, "", "%s", err->msg);
    j->state = JOB_REJECTED;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    job_unref(j);
}

/* ---------------------------------------------------------------- the engine thread */

static void job_admit(server *s, job *j, int stopping) {
    gk_err err;
    if (stopping) {
        gk_errf(&err, "the server is shutting down");
        job_reject(j, 503, "server_error", &err);
        return;
    }
    engine_req_opts ro;
    engine_req_opts_default(&ro);
    ro.n = j->req.n;
    ro.gen.max_new = j->req.max_tokens;
    ro.gen.samp = j->req.samp;
    ro.gen.stop_strs = (const char *const *)j->req.stops;
    ro.gen.n_stop_strs = j->req.n_stops;
    if (j->req.tools) ro.gen.stop_ids[ro.gen.n_stop_ids++] = s->em.sp.tool_call_end;
    ro.gen.on_token = on_token;
    ro.gen.ctx = j;
    ro.gen.no_logprob = !j->req.logprobs;
    ro.on_done = on_done;
    int slot = -1;
    if (j->req.grammar) {   /* response_format: the cached constraint of this grammar, else a new one */
        if (!s->cvocab) s->cvocab = constrain_vocab_new(s->em.tok);
        for (int k = 0; k < SERVE_GCACHE && slot < 0; k++)
            if (s->gcache[k].text && j->req.grammar_text && !strcmp(s->gcache[k].text, j->req.grammar_text)) slot = k;
        for (int k = 0; k < SERVE_GCACHE && slot < 0 && j->req.grammar_text; k++)
            if (!s->gcache[k].users) {   /* a free or idle entry: (re)filled with this grammar */
                constrain_free(s->gcache[k].c); free(s->gcache[k].text);
                s->gcache[k].text = gk_strdup(j->req.grammar_text);
                s->gcache[k].c = constrain_new(j->req.grammar, s->cvocab, NULL, 0);
                s->gcache[k].uses = 0;
                j->req.grammar = NULL;
                slot = k;
            }
        if (slot >= 0) ro.gen.grammar = s->gcache[slot].c;
        else {   /* every entry busy with other grammars: this request's own */
            j->cons = constrain_new(j->req.grammar, s->cvocab, NULL, 0);
            j->req.grammar = NULL;
            ro.gen.grammar = j->cons;
        }
    }
    engine_req_id id = engine_admit(s->em.e, j->req.prompt, j->req.n_prompt, &ro, &err);
    if (id == ENGINE_REQ_BUSY) { job_reject(j, 429, "rate_limit_error", &err); return; }
    if (id < 0) { job_reject(j, 400, "invalid_request_error", &err); return; }
    if (slot >= 0) { s->gcache[slot].users++; s->gcache[slot].uses++; j->gslot1 = slot + 1; }
    pthread_mutex_lock(&j->mu);
    j->eid = id;
    j->state = JOB_RUNNING;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (s->n_active == s->cap_active) {
        s->cap_active = s->cap_active ? 2 * s->cap_active : 64;
        s->active = gk_realloc(s->active, s->cap_active * sizeof *s->active);
    }
    s->active[s->n_active++] = j;
}

/* Cancels the jobs whose client left, whose time is up, or all of them (hard), then drops finished ones. */
static void sweep(server *s, int cancels, int hard) {
    double now = gk_now();
    for (size_t i = 0; i < s->n_active; i++) {
        job *j = s->active[i];
        if (j->e_done) continue;
        int c = hard || now - j->t0 > s->o.timeout_s;
        if (!c && cancels) { pthread_mutex_lock(&j->mu); c = j->cancel; pthread_mutex_unlock(&j->mu); }
        if (c) engine_cancel(s->em.e, j->eid, NULL);
    }
    size_t w = 0;
    for (size_t i = 0; i < s->n_active; i++) {
        job *j = s->active[i];
        if (!j->e_done) { s->active[w++] = j; continue; }
        if (j->gslot1) {   /* its request is done: the cached grammar is free for eviction when unused */
            int k = j->gslot1 - 1;
            j->gslot1 = 0;
            if (--s->gcache[k].users == 0 && s->gcache[k].uses >= SERVE_GCACHE_USES) {
                constrain_free(s->gcache[k].c); free(s->gcache[k].text);
                s->gcache[k].c = NULL; s->gcache[k].text = NULL; s->gcache[k].uses = 0;
            }
        }
        job_unref(j);
    }
    s->n_active = w;
}

static void *engine_main(void *arg) {
    server *s = arg;
    engine *e = s->em.e;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->incoming && !s->cancel_pending && !s->quit && !s->cancel_all && engine_in_flight(e) == 0)
            pthread_cond_wait(&s->cv, &s->mu);
        job *in = s->incoming;
        s->incoming = NULL; s->tail = &s->incoming;
        int cancels = s->cancel_pending, hard = s->cancel_all, quit = s->quit, stopping = s->stopping;
        s->cancel_pending = 0;
        pthread_mutex_unlock(&s->mu);
        while (in) { job *nx = in->next; job_admit(s, in, stopping); in = nx; }
        sweep(s, cancels, hard);
        if (engine_in_flight(e)) {
            engine_step(e);
            if (s->o.step_delay_ms > 0) usleep((useconds_t)(s->o.step_delay_ms * 1000));
        }
        sweep(s, 0, 0);
        size_t queued = 0;
        for (size_t i = 0; i < s->n_active; i++) queued += engine_req_status(e, s->active[i]->eid) == ENGINE_REQ_QUEUED;
        serve_metrics_gauges(s, queued, engine_max_seqs(e) - engine_free_slots(e), s->n_active);
        pthread_mutex_lock(&s->mu);
        s->n_live = s->n_active;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        if (quit && !s->n_active) break;
    }
    return NULL;
}

/* ---------------------------------------------------------------- connections: read deadline */

static void on_connection(void *cls, struct MHD_Connection *c, void **sock_ctx, enum MHD_ConnectionNotificationCode toe) {
    server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_rec *r = gk_calloc(1, sizeof *r);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        r->fd = ci ? ci->connect_fd : -1;
        r->t_wait = gk_now();
        pthread_mutex_lock(&s->conn_mu);
        r->next = s->conns;
        if (s->conns) s->conns->prev = r;
        s->conns = r;
        pthread_mutex_unlock(&s->conn_mu);
        *sock_ctx = r;
    } else if (*sock_ctx) {
        conn_rec *r = *sock_ctx;
        pthread_mutex_lock(&s->conn_mu);
        if (r->prev) r->prev->next = r->next; else s->conns = r->next;
        if (r->next) r->next->prev = r->prev;
        pthread_mutex_unlock(&s->conn_mu);
        free(r);
        *sock_ctx = NULL;
    }
}

void serve_conn_state(server *s, struct MHD_Connection *c, int busy) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (!ci || !ci->socket_context) return;
    conn_rec *r = ci->socket_context;
    pthread_mutex_lock(&s->conn_mu);
    r->busy = busy;
    if (!busy) r->t_wait = gk_now();   /* the next request on this connection has its own deadline */
    pthread_mutex_unlock(&s->conn_mu);
}

/* Shuts down connections that have waited longer than the read timeout for a whole request. */
static void reap_slow(server *s) {
    double now = gk_now();
    pthread_mutex_lock(&s->conn_mu);
    for (conn_rec *r = s->conns; r; r = r->next)
        if (!r->busy && !r->shut && r->fd >= 0 && now - r->t_wait > s->o.read_timeout_s) {
            shutdown(r->fd, SHUT_RDWR);
            r->shut = 1;
            serve_metrics_slow(s);
        }
    pthread_mutex_unlock(&s->conn_mu);
}

/* ---------------------------------------------------------------- start, wait, stop */

static int g_sigpipe[2] = {-1, -1};
static void on_signal(int sig) {
    char c = (char)sig;
    ssize_t r = write(g_sigpipe[1], &c, 1);
    (void)r;
}

static int resolve(const char *host, int port, struct sockaddr_storage *ss, int *v6, gk_err *err) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc || !res) return gk_errf(err, "--host %s: %s", host, rc ? gai_strerror(rc) : "no address");
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return 0;
}

static int start_daemon(server *s, gk_err *err) {
    struct sockaddr_storage ss;
    int v6 = 0;
    if (resolve(s->o.host, s->o.port, &ss, &v6, err)) return -1;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_POLL;
    if (v6) flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, (uint16_t)s->o.port, NULL, NULL, serve_on_request, s,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->o.max_conns,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(s->o.idle_timeout_s + 0.5),
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, s->o.max_header,
                            MHD_OPTION_NOTIFY_COMPLETED, serve_on_completed, s,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                            MHD_OPTION_END);
    if (!s->d) return gk_errf(err, "could not listen on %s:%d (%s)", s->o.host, s->o.port, strerror(errno));
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di && di->port ? di->port : s->o.port;
    return 0;
}

/* Waits for a signal, shutting down slow connections meanwhile; then the graceful stop. */
static void wait_and_stop(server *s) {
    for (;;) {
        struct pollfd p = { .fd = g_sigpipe[0], .events = POLLIN };
        if (poll(&p, 1, 200) > 0) break;
        reap_slow(s);
    }
    gk_log("gptkit serve: stopping (no new requests; in-flight ones have %gs to finish)\n", s->o.grace_s);
    MHD_socket lfd = MHD_quiesce_daemon(s->d);
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_signal(&s->cv);
    double t_end = gk_now() + s->o.grace_s;
    /* the engine thread re-counts live jobs after every step and broadcasts */
    while (s->n_live + (s->incoming != NULL) > 0 && gk_now() < t_end) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        reap_slow(s);
    }
    if (s->n_live) gk_log("gptkit serve: cancelling %zu request%s still running\n", s->n_live, s->n_live > 1 ? "s" : "");
    s->cancel_all = 1;
    s->quit = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->eng_thread, NULL);
    /* give clients a moment to read their last bytes; MHD_stop_daemon then closes what is left */
    t_end = gk_now() + 2;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        size_t left = s->n_jobs;
        pthread_mutex_unlock(&s->mu);
        if (!left || gk_now() > t_end) break;
        reap_slow(s);
        usleep(20000);
    }
    MHD_stop_daemon(s->d);
}

/* A directory's last component (trailing slashes dropped): the default model ids. */
static void dir_name(const char *dir, char *out, size_t cap) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t a = n;
    while (a > 0 && dir[a - 1] != '/') a--;
    snprintf(out, cap, "%.*s", (int)(n - a), dir + a);
}

static char *rag_augment(void *ctx, const char *question, gk_err *err) {
    server *s = ctx;
    pthread_mutex_lock(&s->aux_mu);
    char *t = index_augment_question(s->rag, s->em.tok, question, s->rag_k, s->rag_budget, err);
    pthread_mutex_unlock(&s->aux_mu);
    return t;
}

/* --embedder and --retrieve: loaded before listening, so the first request does not pay for them. */
static int open_aux(server *s, gk_err *err) {
    if (s->o.embedder) {
        if (!(s->emb = embed_load(s->o.embedder, NULL, err))) return -1;
        dir_name(s->o.embedder, s->embed_name, sizeof s->embed_name);
        gk_log("gptkit serve: embeddings from %s (%s)\n", s->o.embedder, embed_describe(s->emb));
    }
    if (s->o.retrieve) {
        if (!(s->rag = index_open(s->o.retrieve, NULL, err)) || index_load(s->rag, err)) return -1;
        s->rag_k = s->o.retrieve_k ? s->o.retrieve_k : 3;
        s->rag_budget = s->o.retrieve_budget ? s->o.retrieve_budget : s->lim.ctx / 4;
        s->lim.augment = rag_augment;
        s->lim.augment_ctx = s;
        gk_log("gptkit serve: retrieval from %s (%zu chunks; top %zu within %zu tokens before each question)\n",
               s->o.retrieve, index_n_chunks(s->rag), s->rag_k, s->rag_budget);
    }
    return 0;
}

int serve_run(const serve_opts *o, gk_err *err) {
    server *s = gk_calloc(1, sizeof *s);
    s->o = *o;
    s->created = (long)time(NULL);
    pthread_mutex_init(&s->mu, NULL); pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->conn_mu, NULL); pthread_mutex_init(&s->met_mu, NULL);
    s->tail = &s->incoming;
    if (s->o.model_name) snprintf(s->model_name, sizeof s->model_name, "%s", s->o.model_name);
    else dir_name(s->o.model_dir, s->model_name, sizeof s->model_name);
    pthread_mutex_init(&s->aux_mu, NULL);
    int rc = -1;
    if (eval_model_open(&s->em, o->model_dir, o->tok_path, 1, 1, o->slots, err)) goto out;
    if (o->adapter && eval_model_add_adapter(&s->em, o->adapter, err)) goto out;   /* unmerged, as sample/chat */
    engine_set_max_queued(s->em.e, o->max_queue);
    engine_set_prefix_reuse(s->em.e, !o->no_prefix_cache);
    s->lim.max_depth = o->max_depth; s->lim.max_messages = o->max_messages;
    s->lim.ctx = engine_max_len(s->em.e); s->lim.max_n = engine_max_seqs(s->em.e);
    if (open_aux(s, err)) goto out;
    if (pipe(g_sigpipe)) { gk_errf(err, "pipe: %s", strerror(errno)); goto out; }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_create(&s->eng_thread, NULL, engine_main, s);
    if (start_daemon(s, err)) {
        pthread_mutex_lock(&s->mu); s->quit = 1; pthread_cond_signal(&s->cv); pthread_mutex_unlock(&s->mu);
        pthread_join(s->eng_thread, NULL);
        goto out;
    }
    const char *h = s->o.host;
    int v6 = strchr(h, ':') != NULL;
    printf("gptkit serve: listening on http://%s%s%s:%d (model %s, %zu slots, queue %zu, context %zu)\n",
           v6 ? "[" : "", h, v6 ? "]" : "", s->port, s->model_name, s->lim.max_n, o->max_queue, s->lim.ctx);
    fflush(stdout);
    wait_and_stop(s);
    gk_log("gptkit serve: stopped\n");
    rc = 0;
out:
    if (g_sigpipe[0] >= 0) { close(g_sigpipe[0]); close(g_sigpipe[1]); g_sigpipe[0] = g_sigpipe[1] = -1; }
    eval_model_close(&s->em);
    embed_free(s->emb);
    if (s->rag) index_close(s->rag);
    pthread_mutex_destroy(&s->aux_mu);
    for (int k = 0; k < SERVE_GCACHE; k++) { constrain_free(s->gcache[k].c); free(s->gcache[k].text); }
    constrain_vocab_free(s->cvocab);
    free(s->active);
    pthread_mutex_destroy(&s->mu); pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->conn_mu); pthread_mutex_destroy(&s->met_mu);
    free(s);
    return rc;
}
#endif
