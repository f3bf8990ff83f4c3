/* Internals of the http module shared between its files. */
#ifndef CITADEL_HTTP_INT_H
#define CITADEL_HTTP_INT_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "citadel/engine.h"
#include "citadel/gateway.h"
#include "citadel/http.h"
#include "citadel/node.h"
#include "citadel/sched.h"

/* ---- endpoints (metrics labels and scopes) ---- */

enum http_ep {
    EP_CHAT,
    EP_COMPLETIONS,
    EP_EMBEDDINGS,
    EP_MODELS,
    EP_HEALTH,
    EP_READY,
    EP_METRICS,
    EP_USAGE,
    EP_DECIDE,
    EP_TOKENIZE, /* /v1/tokenize and /v1/detokenize */
    EP_ADMIN,
    EP_PEER, /* /v1/peer/...: only on the peer listener's connections */
    EP_OTHER,
    EP_N
};
const char *http_ep_name(enum http_ep ep);

/* ---- metrics (metrics.c) ---- */

#define MET_STATUS_SLOTS 24
#define MET_BUCKETS      12

struct met_hist {
    uint64_t counts[MET_BUCKETS]; /* cumulative counts are computed when rendered */
    uint64_t n;
    double sum;
};

struct met_model {
    char id[128]; /* the model these count; a slot reused by another starts over */
    uint64_t gen; /* that load of it (node_call_model_gen) */
    uint64_t requests, tokens_in, tokens_out;
    struct met_hist ttft, tpot; /* time to first token, time per output token */
};

struct met_gauges { /* read from the scheduler when rendering */
    uint64_t gen;   /* the slot's model's load (node_model_info.gen) */
    int queued, active;
    int64_t kv_used, kv_capacity;
};

struct metrics {
    pthread_mutex_t mu;
    struct {
        int status;
        uint64_t n;
    } req[EP_N][MET_STATUS_SLOTS];
    struct met_model model[HTTP_MAX_MODELS];
    uint64_t rejected_queue_full, dropped_slow, disconnects;
    uint64_t conn_refused, conn_evicted; /* at accept: over a limit; for a newer client */
};

void met_init(struct metrics *m);
void met_destroy(struct metrics *m);
void met_request(struct metrics *m, enum http_ep ep, int status);
void met_generation(struct metrics *m, int slot, const char *id, uint64_t gen, int n_in, int n_out,
                    double ttft_s, double decode_s);
void met_count(struct metrics *m, uint64_t *counter); /* one more, under the lock */
int met_render(struct metrics *m, struct cit_buf *out, const char *const *model_ids,
               const struct met_gauges *g, int n_models, int inflight);

/* ---- request parsing and JSON (api.c) ---- */

#define API_MAX_STOPS SCHED_MAX_STOPS

/* A parse error: HTTP status, OpenAI error type and code, the field. */
struct api_err {
    int status;
    const char *type; /* invalid_request_error, ... */
    const char *code; /* NULL or a code string */
    char param[64];   /* the field, "" when none */
    char msg[400];
};

struct api_req {
    int chat; /* /v1/chat/completions (else /v1/completions) */
    const char *model;
    /* chat: messages; completions: prompt text or token ids */
    struct eng_chat_msg *msgs;
    int n_msgs;
    char **owned; /* message texts joined from parts */
    int n_owned;
    const char *prompt;
    int32_t *prompt_ids;
    int n_prompt_ids;
    int max_tokens; /* 0: not given */
    int stream, include_usage;
    int has_seed;
    struct eng_sampler_params sp;
    const char *stops[API_MAX_STOPS];
    int n_stops;
    struct eng_gram *gram;       /* response_format json_object / json_schema; NULL: text */
    struct eng_logit_bias *bias; /* logit_bias entries (sp.logit_bias points here) */
    json_t *root;                /* strings above point into it */
};

int api_parse(const char *body, size_t len, int chat, struct api_req *r, struct api_err *e);

/* JSON Schema to a grammar (schema.c); where names the schema in the
 * request ("response_format.json_schema.schema") and starts the message,
 * which names the keyword and the place that was refused. */
int schema_compile(json_t *schema, const char *where, struct eng_gram **out /* out */, char *msg,
                   size_t msg_cap);
/* response_format json_object: any JSON object. */
int schema_json_object(struct eng_gram **out /* out */);

/* A /v1/embeddings body (embed.c): its texts (as messages, role "input")
 * or its token-id inputs; api_embed_free after either outcome. */
#define EMBED_MAX_INPUTS 2048
struct api_embed {
    const char *model;
    struct eng_chat_msg *texts; /* text inputs (role "input") */
    int32_t *ids;               /* or token-id inputs, back to back */
    int *lens;
    int n_inputs, n_ids;
    int dimensions; /* 0: the model's */
    int base64;
    json_t *root;
};
int api_parse_embed(const char *body, size_t len, struct api_embed *q, struct api_err *e);
void api_embed_free(struct api_embed *q);
void api_req_free(struct api_req *r);
void api_error_json(struct cit_buf *out, const struct api_err *e);
/* Formats an OpenAI error body in out. */
void api_error_simple(struct cit_buf *out, const char *type, const char *code, const char *param,
                      const char *msg);

/* ---- the server and its requests ---- */

#define WAIT_SLICE_MS 50

/* Where a connection is (conn.c). The lobby holds it until its request head
 * is in; then MHD serves it. */
enum conn_phase {
    CONN_HELD,    /* the lobby's: its first request head is arriving */
    CONN_LINGER,  /* the lobby's: answered, reading what the client still sends */
    CONN_PENDING, /* handed to MHD, not started there yet */
    CONN_HEAD,    /* MHD's: a head is arriving (keep-alive, or TLS) */
    CONN_REQUEST, /* MHD's: head in; body, handler or answer in progress */
    CONN_IDLE,    /* MHD's: keep-alive, between requests */
};

/* One connection, in one list under w_mu from accept to close. */
struct conn_watch {
    int fd;
    enum conn_phase phase;
    int verified;         /* the lobby saw a whole, valid head */
    int authed;           /* a valid key came on it (or the server is open) */
    int answering;        /* a response is queued: only MHD writes now */
    int dropped;          /* shut down by the watchdog or evicted; MHD closes it */
    int ready;            /* held: new bytes (or a hang-up) to look at */
    int hup;              /* held: the client shut its side */
    int fresh;            /* held: accepted in this round of the lobby */
    int status;           /* an answer written past MHD (408, its errors), 0: none */
    uint64_t since_ns;    /* the phase began (evictions take the oldest) */
    uint64_t deadline_ns; /* 0: none */
    uint64_t last_peek_ns;
    size_t drained; /* lingering: bytes read and dropped */
    size_t seen;    /* held: the bytes the last look saw */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int peer1; /* from the peer listener: 1 + the peer's policy index; 0: a client */
    struct conn_watch *prev, *next;
};

struct http_server {
    struct http_opts o;     /* as started */
    pthread_mutex_t cfg_mu; /* guards the reloadable part of o: open, limits, grace_s */
    struct MHD_Daemon *d;
    struct node *node; /* models, state, policy, ledger: the gate */
    struct metrics met;
    _Atomic int inflight, draining;
    int port, listen_fd, tls;
    char *cert_pem, *key_pem;
    /* the peer listener (peer.c): mutual TLS in front of a daemon of its own */
    struct MHD_Daemon *peer_d;
    struct gw_listener *peer_l;
    int peer_port;
    uint8_t (*peer_pins)[32];
    int *peer_of_pin; /* pin index -> policy peer index */
    uint64_t passports_refused;
    /* refused handshakes: ledgered at most once a second (met.mu) */
    uint64_t hs_last_ns, hs_quiet;
    /* connections (conn.c): the list, the lobby's thread and its epoll set */
    pthread_mutex_t w_mu;
    pthread_cond_t w_cv; /* the lobby says it stopped accepting */
    struct conn_watch *conns;
    pthread_t lobby;
    int epfd, evfd;
    int lobby_started, lobby_stop, lobby_quiesce, lobby_quiesced;
    pthread_t rc; /* the admissions' recheck (conn.c) */
    pthread_mutex_t rc_mu;
    pthread_cond_t rc_cv;
    int rc_init, rc_started, rc_stop;
    char *peek;      /* the lobby's view of a held head (hold_cap bytes) */
    size_t hold_cap; /* the most of a head the lobby holds */
    uint64_t accept_paused_ns, emfile_logged_ns; /* the lobby's: out of descriptors */
    /* the policy's jurisdiction profile, for the OpenAI endpoints' answers:
     * its id (NULL: none) and Citadel-Notice value (NULL: no notice) */
    const char *profile_id;
    char *notice_hdr;
};

enum sse_phase { PH_ROLE, PH_BODY, PH_END };

/* One request. Shared by the connection (until MHD says the request is
 * done), the streaming response (until MHD frees it) and the scheduler
 * (until its final callback); freed when the last of them lets go. */
struct req {
    struct http_server *srv;
    enum http_ep ep;
    struct conn_watch *cw;
    int fd;
    struct http_limits lim; /* as of the request's start */
    const char *method;
    const char *path_arg; /* /v1/models/{id}, /v1/admin/models/{id}: arg, else NULL */
    char arg[256];
    struct cit_buf body;
    int deferred;   /* no body: the head is handled on the final call, so that the
                     * answer is not an early one (MHD closes after those) */
    int overflow;   /* the body passed max_body: the rest is read and dropped, then 413 */
    size_t dropped; /* overflow: the body's bytes so far, all dropped */
    int status, responded;
    struct node_key_info key;
    uint64_t t0;
    char decision_hdr[160];  /* X-Citadel-Decision once the gate decided */
    char max_tokens_hdr[48]; /* Citadel-Max-Tokens: the profile's cap lowered max_tokens */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    struct node_call *call; /* from the gate's admission until the request ends */
    int slot;               /* the model's metrics slot, -1 before submit */
    int submitted, cancelled, timed_out, hung_up;
    struct cit_buf text; /* generated text */
    float *embd;         /* an embeddings request's vectors (the scheduler writes them) */
    size_t *tok_end;     /* (n_gen) text.len after each generated token */
    int tok_cap;
    int n_sent; /* tokens whose text was handed to the client (a stream) */
    int n_prompt, n_gen, done;
    enum sched_finish finish;
    uint64_t t_submit, t_first, t_last;
    int stream, chat, include_usage;
    int json; /* response_format json: the answer is a JSON value (no notice appended) */
    char cors_origin[256]; /* an allowed browser origin this answer is for ("": none) */
    int tokenize_detok;    /* EP_TOKENIZE: /v1/detokenize */
    int64_t created;
    struct cit_buf out; /* event bytes not yet handed to MHD */
    size_t out_off;
    enum sse_phase phase;

    int peer;                      /* a peer's request (peer listener): its policy index; else -1 */
    int peer_chat;                 /* EP_PEER: /v1/peer/chat/completions */
    int peer_witness;              /* EP_PEER: /v1/peer/witness/add-checkpoint */
    char receipt_hdr[GW_MAX_WIRE]; /* a peer's request: X-Citadel-Receipt of the answer */
    char *peer_passport;           /* a peer's request: its passport (wire text) */
    int64_t fwd_tokens;            /* a forward: the peer's count of generated tokens, -1: none */
    /* a forward to peers (the gateway), from the gate's decision */
    int forward;
    atomic_int fwd_cancel;
    struct gw_send fwd;
    char *fwd_body;
    struct gw_result *fwd_res;
};

/* generate.c: waiting on a request's text (r->mu held; -1: the client is
 * gone), and answering a submitted request */
int gen_wait(struct req *r);
/* 1 when r's client hung up (a poll that does not wait), r then marked
 * so and the disconnect counted (r->mu not held). */
int gen_hung_up(struct req *r);
enum MHD_Result gen_answer(struct MHD_Connection *c, struct req *r);
/* embed.c: POST /v1/embeddings */
enum MHD_Result handle_embeddings(struct MHD_Connection *c, struct req *r);

/* peer.c: the peer listener, passports in, receipts out, forwards out */
int peer_start(struct http_server *s, struct cit_err *err);
void peer_stop(struct http_server *s);
/* A peer's request: checks its passport and fills q's tenant, classes and
 * passport; on a refusal answers it (recorded) and returns -1 with *res. */
int peer_admit(struct MHD_Connection *c, struct req *r, struct node_req *q, enum MHD_Result *res);
/* The receipt for a peer's request whose entry is seq/leaf, into r->receipt_hdr. */
void peer_receipt(struct req *r, int status, uint64_t seq, const uint8_t leaf[32]);
/* Sends an admitted forward to its peers; answers as handle_generate does. */
enum MHD_Result handle_forward(struct MHD_Connection *c, struct req *r, const struct api_req *a);
enum MHD_Result handle_peer_health(struct MHD_Connection *c, struct req *r);
/* c2sp.org/tlog-witness add-checkpoint: this node cosigns the peer's
 * ledger checkpoint (docs/gateway.md). */
enum MHD_Result handle_peer_witness(struct MHD_Connection *c, struct req *r);
void peer_metrics(struct http_server *s, struct cit_buf *out);

/* conn.c: the lobby (accept, hold until the head is in, hand to MHD), the
 * budgets, the watchdog's deadlines, answers past MHD */
int conn_lobby_start(struct http_server *s, struct cit_err *err);
void conn_lobby_quiesce(struct http_server *s); /* stops accepting; held ones get 503 */
void conn_lobby_stop(struct http_server *s);    /* after MHD stopped: joins, frees */
/* A connection of the peer listener (peer1: 1 + the peer's index), to d. */
int conn_adopt(struct http_server *s, struct MHD_Daemon *d, int fd, int peer1);
/* daemon.c's MHD callbacks, which the peer daemon shares */
enum MHD_Result http_on_request(void *cls, struct MHD_Connection *c, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_size, void **con_cls);
void http_on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                       enum MHD_RequestTerminationCode toe);
void conn_on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode code);
void *conn_on_uri(void *cls, const char *uri, struct MHD_Connection *c);
void conn_mhd_log(void *cls, const char *fmt, va_list ap);
/* A request's head is in: its body must come within body_timeout_s. */
void conn_request_head(struct http_server *s, struct conn_watch *cw, int body_timeout_s);
void conn_authed(struct http_server *s, struct conn_watch *cw);
/* A response is queued: the watchdog no longer writes, and waits no more. */
void conn_answering(struct http_server *s, struct conn_watch *cw);
/* The request ended; returns the status of an answer written past MHD
 * (408, MHD's errors), else 0. The connection idles from now. */
int conn_request_done(struct http_server *s, struct conn_watch *cw, int idle_timeout_s);
void watch_deadline(struct http_server *s, struct conn_watch *cw, int seconds);

/* A first request head as the lobby sees it (and fuzz/fuzz_head.c). */
enum head_verdict {
    HEAD_WAIT,  /* more to come */
    HEAD_READY, /* complete, with a valid HTTP/1.x request line */
    HEAD_PASS,  /* longer than the lobby holds, but allowed: MHD reads the rest */
    HEAD_BAD,   /* to be answered with *b */
};
struct head_bad {
    int status; /* 400, 414, 431 or 505 */
    const char *code, *msg;
};
/* p[0..n): the bytes so far. full: no more will be held (n is the cap);
 * pass: a head longer than the cap is allowed. */
enum head_verdict conn_head_check(const char *p, size_t n, int full, int pass,
                                  struct head_bad *b /* out */);

/* respond.c: the request object, responders, auth */
struct req *req_new(struct http_server *s, struct MHD_Connection *c);
void req_unref(struct req *r);
void req_destroy(struct req *r); /* when the last reference went */
enum MHD_Result respond(struct MHD_Connection *c, struct req *r, int status, const char *type,
                        const char *body, size_t len, const char *hname, const char *hvalue);
/* The headers every answer of the OpenAI endpoints carries (chat,
 * completions, models): Citadel-Profile and Citadel-Notice when the
 * policy has a profile, Citadel-Max-Tokens when its cap acted. */
void respond_profile_headers(struct MHD_Response *resp, const struct req *r);
/* CORS headers for an allowed browser origin (r->cors_origin), on every answer. */
void respond_cors_headers(struct MHD_Response *resp, const struct req *r);
/* 204 to a CORS preflight from an allowed origin. */
enum MHD_Result respond_preflight(struct MHD_Connection *c, struct req *r, const char *methods);
/* Percent-encodes text as an RFC 8187 ext-value (UTF-8''...), which keeps
 * a header ASCII whatever the notice's language; NULL when out of memory. */
char *http_ext_value(const char *text);
enum MHD_Result respond_json(struct MHD_Connection *c, struct req *r, int status,
                             struct cit_buf *b);
enum MHD_Result respond_error(struct MHD_Connection *c, struct req *r, int status, const char *type,
                              const char *code, const char *param, const char *msg);
/* The gate's refusal as an OpenAI error (429 bodies name the quota). */
enum MHD_Result respond_outcome(struct MHD_Connection *c, struct req *r,
                                const struct node_outcome *o);
/* 0 when the request may go on; otherwise a response was queued. A NULL
 * scope_ep needs a valid key only (the caller's own usage). */
int authorize(struct MHD_Connection *c, struct req *r, const char *scope_ep, enum MHD_Result *res);

/* generate.c: chat and text completions */
enum MHD_Result handle_generate(struct MHD_Connection *c, struct req *r);
void gen_cancel(struct req *r);
/* The prompt shape of a parsed request, for the gate. */
void api_node_req(const struct api_req *a, const struct req *r, struct node_req *q);

/* endpoints.c: models, health, readiness, metrics, usage, decide, admin */
enum MHD_Result handle_get(struct MHD_Connection *c, struct req *r);
enum MHD_Result handle_decide(struct MHD_Connection *c, struct req *r);
enum MHD_Result handle_tokenize(struct MHD_Connection *c, struct req *r);
enum MHD_Result handle_admin(struct MHD_Connection *c, struct req *r);

/* ---- for tests and fuzz targets ---- */

/* Sequences active plus queued across all models (tests). */
int http_server_busy(struct http_server *s);

#endif
