/* serve_internal.h: what server.c (engine thread, connections, start/stop), http.c (routes, streaming) and
 * metrics.c share. Private to src/serve/. */
#ifndef GK_SERVE_INTERNAL_H
#define GK_SERVE_INTERNAL_H
#include "serve/serve.h"
#include "eval/eval.h"
#include "embed/embed.h"
#include "index/index.h"
#ifdef GK_HAVE_MHD
#include <pthread.h>
#include <microhttpd.h>

typedef enum { JOB_PENDING = 0, JOB_RUNNING, JOB_DONE, JOB_REJECTED } job_state;

struct server;
/* One generation request, shared by its handler thread and the engine thread (refs: one each). Everything
 * below mu is guarded by it, except e_done/eid (engine thread only once admitted). */
typedef struct job {
    pthread_mutex_t mu;
    pthread_cond_t cv;           /* broadcast on new text, state changes */
    int refs;
    serve_req req;               /* immutable once submitted */
    job_state state;
    serve_error rej;             /* REJECTED: why (429 queue full, 503 shutting down, 400) */
    tok_bytes *text;             /* [n] text streamed so far per choice */
    int *in_call;                /* [n] a tool call began: its text is held for tool_calls */
    engine_seq *out;             /* [n] results (DONE) */
    int cancel;                  /* the handler asks the engine thread to cancel */
    size_t ntok;                 /* tokens generated so far */
    double t0, t_first;          /* submitted; first token */
    engine_req_id eid;
    int e_done;
    size_t cached;               /* prompt tokens reused from a slot's cache (set when DONE) */
    constrain *cons;             /* response_format's grammar on the vocabulary (engine thread), or NULL */
    int gslot1;                  /* 1 + the grammar cache entry it uses (engine thread), 0 = none */
    struct job *next;            /* in server.incoming */
    struct server *srv;
} job;

/* A TCP connection (libmicrohttpd's socket context): when it began waiting for a request, whether one is
 * being answered, for the read deadline. */
typedef struct conn_rec {
    int fd;
    double t_wait;
    int busy, shut;
    struct conn_rec *prev, *next;
} conn_rec;

#define SERVE_N_CODES 12
#define SERVE_N_BUCKETS 14
typedef struct {
    uint64_t requests[4][SERVE_N_CODES];   /* route (chat, completions, other, page) x status class */
    uint64_t prompt_tokens, gen_tokens, slow_closed, finished;
    uint64_t lat_b[SERVE_N_BUCKETS], ttft_b[SERVE_N_BUCKETS];
    double lat_sum, ttft_sum;
    size_t queued, slots_used, in_flight;
} serve_metrics;

typedef struct server {
    serve_opts o;
    eval_model em;               /* model, tokenizer, chat specials, engine (engine thread only) */
    constrain_vocab *cvocab;     /* response_format: the tokenizer's trie, built on first use (engine thread) */
    /* response_format grammars by GBNF text (engine thread): requests with the same schema share one
     * constraint and its mask caches (the first request pays the trie walks, the rest reuse them). An entry
     * in use is never evicted; one used SERVE_GCACHE_USES times is rebuilt when idle (bounds its caches). */
#define SERVE_GCACHE 8
#define SERVE_GCACHE_USES 256
    struct { char *text; constrain *c; size_t users, uses; } gcache[SERVE_GCACHE];
    char model_name[256];
    serve_limits lim;
    long created;
    int port;
    struct MHD_Daemon *d;
    pthread_t eng_thread;
    pthread_mutex_t mu;          /* guards the fields down to n_live */
    pthread_cond_t cv;
    job *incoming, **tail;
    int cancel_pending, cancel_all, stopping, quit;
    size_t n_jobs;               /* jobs alive (not yet freed) */
    size_t n_live;               /* jobs the engine holds (copied from n_active after each step) */
    job **active; size_t n_active, cap_active;   /* engine thread only */
    pthread_mutex_t conn_mu;
    conn_rec *conns;
    pthread_mutex_t met_mu;
    serve_metrics met;
    uint64_t next_id;            /* under met_mu */
    /* --embedder and --retrieve: used by handler threads one request at a time (aux_mu) */
    pthread_mutex_t aux_mu;
    embed_model *emb;
    char embed_name[256];        /* the embedder's id in /v1/embeddings answers */
    index_db *rag;
    size_t rag_k, rag_budget;
} server;

/* server.c */
job *job_submit(server *s, serve_req *req);
void job_unref(job *j);
void job_cancel(job *j);
void serve_conn_state(server *s, struct MHD_Connection *c, int busy);
/* http.c */
enum MHD_Result serve_on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                 const char *version, const char *upload, size_t *upload_size, void **con_cls);
void serve_on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe);
/* metrics.c */
void serve_metrics_request(server *s, int route, int status);
void serve_metrics_done(server *s, size_t prompt, size_t gen, double latency, double ttft);
void serve_metrics_gauges(server *s, size_t queued, size_t slots_used, size_t in_flight);
void serve_metrics_slow(server *s);
char *serve_metrics_text(server *s);   /* Prometheus text exposition (malloc'd) */
#endif
#endif
