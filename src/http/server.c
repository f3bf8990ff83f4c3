/*
 * The HTTP server: libmicrohttpd with one thread per connection.
 *
 * A request's life:
 *   1. First call of on_request (head received): route, header limits,
 *      draining check, API key and scope, Content-Length against the cap.
 *      GET endpoints answer here.
 *   2. Body chunks are appended up to the cap (413 beyond it).
 *   3. Last call: parse and check the JSON, render and tokenize the prompt,
 *      submit to the model's scheduler (429 with Retry-After when its queue
 *      is full). Non-streaming requests wait here for the end; streaming
 *      ones return a response whose reader waits for text and writes
 *      server-sent events.
 * While waiting, the connection's thread checks every 50 ms whether the
 * client hung up (poll for POLLRDHUP) or the time limit passed; either
 * cancels the generation, which frees its sequence before the next step.
 *
 * A struct req is shared by the connection (until MHD says the request is
 * done), the streaming response (until MHD frees it) and the scheduler
 * (until its final callback); it is freed when the last of them lets go.
 *
 * Slow clients: MHD's idle timeout closes silent connections, but a client
 * that trickles a byte at a time never goes idle. A watchdog thread gives
 * each connection a deadline for its request head and body and shuts down
 * the socket of any that misses it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "citadel/border.h"
#include "citadel/ledger.h"
#include "citadel/policy.h"
#include "http_int.h"

#define WAIT_SLICE_MS 50

struct srv_model {
    struct eng_model *m;
    struct cit_pool *pool;
    struct sched *sched;
    enum eng_chat_tmpl tmpl;
    int n_ctx, n_vocab;
    int64_t created; /* unix seconds, when loaded */
};

struct conn_watch {
    int fd;
    uint64_t deadline; /* ns, 0: none */
    int dropped;
    struct conn_watch *prev, *next;
};

struct http_server {
    struct http_opts o;     /* as started */
    pthread_mutex_t cfg_mu; /* guards the reloadable part of o: open, lim, grace_s */
    struct MHD_Daemon *d;
    struct srv_model models[HTTP_MAX_MODELS];
    int n_models;
    struct http_keys *keys;
    struct pol_policy *pol;    /* the jurisdiction policy */
    struct pol_quotas *quotas; /* tenant quotas, in the state file */
    struct ledger *ledger;     /* the audit ledger */
    struct metrics met;
    _Atomic int inflight, draining;
    int port;
    char *cert_pem, *key_pem;
    pthread_mutex_t w_mu;
    pthread_cond_t w_cv;
    struct conn_watch *watch;
    pthread_t watchdog;
    int wd_started, wd_stop;
};

enum sse_phase { PH_ROLE, PH_BODY, PH_END };

struct req {
    struct http_server *srv;
    enum http_ep ep;
    struct conn_watch *cw;
    int fd;
    struct http_limits lim; /* as of the request's start */
    const char *method;
    struct cit_buf body;
    int status, responded;
    struct http_key_info key;
    uint64_t t0;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    int mi; /* model index, -1 before submit */
    uint64_t sched_id;
    int submitted, cancelled, timed_out, hung_up;
    struct cit_buf text;   /* generated text */
    struct pol_outscan os; /* os.done: bytes of text already released; os.stopped: the
                              output rules ended the answer (content_filter) */
    int n_prompt, n_gen, done;
    enum sched_finish finish;
    uint64_t t_submit, t_first, t_last;
    int stream, chat, include_usage;
    char id[48];
    int64_t created;
    char model[128];
    struct cit_buf out; /* event bytes not yet handed to MHD */
    size_t out_off;
    enum sse_phase phase;

    /* the sovereignty layer */
    int decided, logged; /* a decision was taken; it is in the ledger */
    struct pol_decision dec;
    char classes[512];      /* the decision's data classes, comma-separated */
    char decision_hdr[160]; /* X-Citadel-Decision: "redact; rule=..." */
    uint8_t digest[32];     /* SHA-256 of the canonical request */
    struct det_redaction red;
    int restore;     /* put redacted values back into the answer */
    int scan_failed; /* the answer could not be scanned: it ends with an error */
    struct pol_quota_ticket ticket;
};

/* ---- struct req ---- */

static struct req *req_new(struct http_server *s, struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci;
    struct req *r = cit_calloc(1, sizeof(*r));
    if (!r) return NULL;
    r->srv = s;
    r->refs = 1;
    r->mi = -1;
    r->t0 = cit_now_ns();
    r->fd = -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci) r->fd = ci->connect_fd;
    ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci) r->cw = ci->socket_context;
    pthread_mutex_lock(&s->cfg_mu);
    r->lim = s->o.lim;
    pthread_mutex_unlock(&s->cfg_mu);
    atomic_fetch_add(&s->inflight, 1);
    return r;
}

static void req_destroy(struct req *r)
{
    if (r->decided) pol_decision_free(&r->dec);
    det_redaction_free(&r->red);
    if (r->body.p) explicit_bzero(r->body.p, r->body.len);
    if (r->text.p) explicit_bzero(r->text.p, r->text.len);
    cit_buf_free(&r->body);
    cit_buf_free(&r->text);
    cit_buf_free(&r->out);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    cit_free(r);
}

static void req_unref(struct req *r)
{
    int last;
    pthread_mutex_lock(&r->mu);
    last = --r->refs == 0;
    pthread_mutex_unlock(&r->mu);
    if (last) req_destroy(r);
}

static void watch_deadline(struct http_server *s, struct conn_watch *cw, int seconds)
{
    if (!cw) return;
    pthread_mutex_lock(&s->w_mu);
    cw->deadline = seconds > 0 ? cit_now_ns() + (uint64_t)seconds * 1000000000ull : 0;
    pthread_mutex_unlock(&s->w_mu);
}

/* ---- responses ---- */

static enum MHD_Result respond(struct MHD_Connection *c, struct req *r, int status,
                               const char *type, const char *body, size_t len, const char *hname,
                               const char *hvalue)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ok;
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (hname) MHD_add_response_header(resp, hname, hvalue);
    if (r->decided) MHD_add_response_header(resp, "X-Citadel-Decision", r->decision_hdr);
    ok = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    r->responded = 1;
    return ok;
}

static enum MHD_Result respond_json(struct MHD_Connection *c, struct req *r, int status,
                                    struct cit_buf *b)
{
    enum MHD_Result ok;
    if (!b->p) return respond(c, r, 500, "text/plain", "out of memory\n", 14, NULL, NULL);
    ok = respond(c, r, status, "application/json", b->p, b->len, NULL, NULL);
    cit_buf_free(b);
    return ok;
}

static enum MHD_Result respond_error(struct MHD_Connection *c, struct req *r, int status,
                                     const char *type, const char *code, const char *param,
                                     const char *msg)
{
    struct cit_buf b = {0};
    enum MHD_Result ok;
    const char *hn = NULL, *hv = NULL;
    api_error_simple(&b, type, code, param, msg);
    if (!b.p) return respond(c, r, 500, "text/plain", "out of memory\n", 14, NULL, NULL);
    if (status == 401) hn = "WWW-Authenticate", hv = "Bearer";
    if (status == 429 || status == 503) hn = "Retry-After", hv = "1";
    if (status == 405)
        hn = "Allow",
        hv = r->ep == EP_CHAT || r->ep == EP_COMPLETIONS || r->ep == EP_DECIDE ? "POST" : "GET";
    ok = respond(c, r, status, "application/json", b.p, b.len, hn, hv);
    cit_buf_free(&b);
    return ok;
}

/* Unix seconds as RFC 3339 UTC, "2026-11-22T10:05:00Z". */
static void utc_seconds(int64_t t, char out[32])
{
    ledger_time_str(t * 1000, out);
    out[19] = 'Z';
    out[20] = 0;
}

/* ---- routing, limits, auth ---- */

static int route(const char *url, const char **model_id)
{
    *model_id = NULL;
    if (!strcmp(url, "/v1/chat/completions")) return EP_CHAT;
    if (!strcmp(url, "/v1/completions")) return EP_COMPLETIONS;
    if (!strcmp(url, "/v1/models")) return EP_MODELS;
    if (!strncmp(url, "/v1/models/", 11) && url[11]) {
        *model_id = url + 11;
        return EP_MODELS;
    }
    if (!strcmp(url, "/healthz")) return EP_HEALTH;
    if (!strcmp(url, "/readyz")) return EP_READY;
    if (!strcmp(url, "/metrics")) return EP_METRICS;
    if (!strcmp(url, "/v1/usage")) return EP_USAGE;
    if (!strcmp(url, "/v1/policy/decide")) return EP_DECIDE;
    return EP_OTHER;
}

struct head_count {
    int n;
    size_t bytes;
};

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *k,
                                    const char *v)
{
    struct head_count *h = cls;
    (void)kind;
    h->n++;
    h->bytes += strlen(k) + (v ? strlen(v) : 0) + 4;
    return MHD_YES;
}

/* 0 when the request may go on; otherwise a response was queued. A NULL
 * scope_ep needs a valid key only (the caller's own usage). */
static int authorize(struct MHD_Connection *c, struct req *r, const char *scope_ep,
                     enum MHD_Result *res)
{
    struct http_server *s = r->srv;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    int open;
    pthread_mutex_lock(&s->cfg_mu);
    open = s->o.open;
    pthread_mutex_unlock(&s->cfg_mu);
    if (open) {
        snprintf(r->key.tenant, sizeof(r->key.tenant), "open");
        snprintf(r->key.scopes, sizeof(r->key.scopes), "endpoint:* model:*");
        return 0;
    }
    if (!auth || strncasecmp(auth, "Bearer ", 7)) {
        *res = respond_error(c, r, 401, "invalid_request_error", NULL, NULL,
                             "You didn't provide an API key. Send it in the Authorization "
                             "header: 'Authorization: Bearer YOUR_KEY'.");
        return -1;
    }
    auth += 7;
    while (*auth == ' ') auth++;
    if (!s->keys || http_keys_check(s->keys, auth, strlen(auth), &r->key)) {
        *res = respond_error(c, r, 401, "invalid_request_error", "invalid_api_key", NULL,
                             "Incorrect or revoked API key.");
        return -1;
    }
    if (scope_ep && !http_scope_allows(r->key.scopes, scope_ep, NULL)) {
        char msg[200];
        snprintf(msg, sizeof(msg), "This API key may not call the '%s' endpoint.", scope_ep);
        *res = respond_error(c, r, 403, "permission_error", "insufficient_scope", NULL, msg);
        return -1;
    }
    return 0;
}

static int find_model(struct http_server *s, const char *id)
{
    for (int i = 0; i < s->n_models; i++)
        if (!strcmp(s->o.models[i].id, id)) return i;
    return -1;
}

static void model_json(struct cit_buf *b, struct http_server *s, int i)
{
    BUF_LIT(b, "{\"id\":");
    cit_buf_json_str(b, s->o.models[i].id, strlen(s->o.models[i].id));
    cit_buf_printf(b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"citadel\"}",
                   (long long)s->models[i].created);
}

static enum MHD_Result handle_get(struct MHD_Connection *c, struct req *r, const char *model_id)
{
    struct http_server *s = r->srv;
    struct cit_buf b = {0};
    enum MHD_Result res = MHD_NO;
    switch (r->ep) {
    case EP_HEALTH:
        return respond(c, r, 200, "application/json", "{\"status\":\"ok\"}\n", 16, NULL, NULL);
    case EP_READY:
        if (atomic_load(&s->draining))
            return respond(c, r, 503, "application/json", "{\"status\":\"draining\"}\n", 22, NULL,
                           NULL);
        cit_buf_printf(&b, "{\"status\":\"ready\",\"models\":%d}\n", s->n_models);
        return respond_json(c, r, 200, &b);
    case EP_METRICS: {
        const char *ids[HTTP_MAX_MODELS];
        struct met_gauges g[HTTP_MAX_MODELS];
        if (authorize(c, r, "metrics", &res)) return res;
        for (int i = 0; i < s->n_models; i++) {
            struct sched_stats st;
            sched_get_stats(s->models[i].sched, &st);
            ids[i] = s->o.models[i].id;
            g[i] = (struct met_gauges){st.queued, st.active, st.kv_used, st.kv_capacity};
        }
        if (met_render(&s->met, &b, ids, g, s->n_models, atomic_load(&s->inflight))) {
            cit_buf_free(&b);
            return respond(c, r, 500, "text/plain", "out of memory\n", 14, NULL, NULL);
        }
        res =
            respond(c, r, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len, NULL, NULL);
        cit_buf_free(&b);
        return res;
    }
    case EP_USAGE: {
        struct pol_quota_state q;
        const struct pol_quota *lim;
        int t;
        int64_t now = (int64_t)time(NULL);
        char m_at[32], d_at[32];
        if (authorize(c, r, NULL, &res)) return res;
        if ((t = pol_tenant_index(s->pol, r->key.tenant)) < 0) {
            char msg[200];
            snprintf(msg, sizeof(msg), "Tenant '%s' is not in the node's policy.", r->key.tenant);
            return respond_error(c, r, 404, "invalid_request_error", "unknown_tenant", NULL, msg);
        }
        lim = &s->pol->tenants[t].quota;
        pol_quota_usage(s->quotas, r->key.tenant, now, &q);
        utc_seconds(q.minute_reset, m_at);
        utc_seconds(q.day_reset, d_at);
        BUF_LIT(&b, "{\"object\":\"usage\",\"tenant\":");
        cit_buf_json_str(&b, r->key.tenant, strlen(r->key.tenant));
        cit_buf_printf(&b,
                       ",\"quotas\":{\"requests_per_minute\":{\"limit\":%lld,\"used\":%lld,"
                       "\"resets_at\":\"%s\",\"resets_in_s\":%lld},"
                       "\"tokens_per_day\":{\"limit\":%lld,\"used\":%lld,\"reserved\":%lld,"
                       "\"resets_at\":\"%s\",\"resets_in_s\":%lld},"
                       "\"concurrent\":{\"limit\":%lld,\"used\":%lld}}}\n",
                       (long long)lim->requests_per_minute, (long long)q.requests, m_at,
                       (long long)(q.minute_reset - now), (long long)lim->tokens_per_day,
                       (long long)q.tokens, (long long)q.reserved, d_at,
                       (long long)(q.day_reset - now), (long long)lim->concurrent,
                       (long long)q.concurrent);
        return respond_json(c, r, 200, &b);
    }
    case EP_MODELS: {
        int n = 0;
        if (authorize(c, r, "models", &res)) return res;
        if (model_id) {
            int i = find_model(s, model_id);
            if (i < 0 || !http_scope_allows(r->key.scopes, "models", model_id)) {
                char msg[300];
                snprintf(msg, sizeof(msg), "The model '%.200s' does not exist.", model_id);
                return respond_error(c, r, 404, "invalid_request_error", "model_not_found", "model",
                                     msg);
            }
            model_json(&b, s, i);
            BUF_LIT(&b, "\n");
            return respond_json(c, r, 200, &b);
        }
        BUF_LIT(&b, "{\"object\":\"list\",\"data\":[");
        for (int i = 0; i < s->n_models; i++) {
            if (!http_scope_allows(r->key.scopes, "models", s->o.models[i].id)) continue;
            if (n++) BUF_LIT(&b, ",");
            model_json(&b, s, i);
        }
        BUF_LIT(&b, "]}\n");
        return respond_json(c, r, 200, &b);
    }
    default:
        return respond_error(c, r, 404, "invalid_request_error", "not_found", NULL,
                             "Unknown path.");
    }
}

/* ---- generation ---- */

static void on_token(void *user, int32_t tok, const char *text, size_t len, enum sched_finish f)
{
    struct req *r = user;
    struct srv_model *sm = &r->srv->models[r->mi];
    int last = 0;
    pthread_mutex_lock(&r->mu);
    if (tok >= 0 && (f != SCHED_FINISH_STOP || !eng_token_is_eog(sm->m, tok))) {
        uint64_t now = cit_now_ns();
        if (!r->n_gen) r->t_first = now;
        r->t_last = now;
        r->n_gen++;
    }
    if (len && cit_buf_add(&r->text, text, len)) f = SCHED_FINISH_ERROR;
    if (f != SCHED_FINISH_NONE) {
        r->done = 1;
        r->finish = f;
        last = --r->refs == 0;
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (last) req_destroy(r); /* the connection and the response let go already */
}

static void cancel(struct req *r)
{
    pthread_mutex_lock(&r->mu);
    int go = r->submitted && !r->done && !r->cancelled;
    r->cancelled |= go;
    pthread_mutex_unlock(&r->mu);
    if (go) sched_cancel(r->srv->models[r->mi].sched, r->sched_id);
}

static int client_gone(int fd)
{
    struct pollfd p = {fd, POLLRDHUP, 0};
    if (fd < 0) return 0;
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/* Waits (r->mu held) until done, new text, or a time slice passed; handles
 * hang-ups and the time limit. Returns -1 when the client is gone. */
static int wait_slice(struct req *r)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += WAIT_SLICE_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    if (r->done) return 0;
    pthread_mutex_unlock(&r->mu);
    if (client_gone(r->fd)) {
        r->hung_up = 1;
        met_count(&r->srv->met, &r->srv->met.disconnects);
        cancel(r);
        pthread_mutex_lock(&r->mu);
        return -1;
    }
    if (r->lim.request_timeout_s > 0 &&
        cit_now_ns() - r->t_submit > (uint64_t)r->lim.request_timeout_s * 1000000000ull) {
        r->timed_out = 1;
        cancel(r);
    }
    pthread_mutex_lock(&r->mu);
    return 0;
}

static const char *finish_reason(const struct req *r)
{
    if (r->os.stopped) return "content_filter";
    return r->finish == SCHED_FINISH_LENGTH || r->timed_out ? "length" : "stop";
}

static void usage_json(struct cit_buf *b, const struct req *r)
{
    cit_buf_printf(b,
                   "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}",
                   r->n_prompt, r->n_gen, r->n_prompt + r->n_gen);
}

static void chunk_head(struct cit_buf *b, const struct req *r)
{
    cit_buf_printf(b, "data: {\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", r->id,
                   r->chat ? "chat.completion.chunk" : "text_completion", (long long)r->created);
    cit_buf_json_str(b, r->model, strlen(r->model));
    BUF_LIT(b, ",\"system_fingerprint\":\"citadel\",\"choices\":[");
}

static void chunk_tail(struct cit_buf *b, const struct req *r)
{
    BUF_LIT(b, "]");
    if (r->include_usage) BUF_LIT(b, ",\"usage\":null");
    BUF_LIT(b, "}\n\n");
}

/* One event with text (may be empty) and, at the end, the finish reason. */
static void chunk_text(struct cit_buf *b, const struct req *r, const char *t, size_t n,
                       const char *fin, int role)
{
    chunk_head(b, r);
    if (r->chat) {
        BUF_LIT(b, "{\"index\":0,\"delta\":{");
        if (role) BUF_LIT(b, "\"role\":\"assistant\",");
        if (!fin || n) {
            BUF_LIT(b, "\"content\":");
            cit_buf_json_str(b, t, n);
        }
        BUF_LIT(b, "},\"logprobs\":null,\"finish_reason\":");
    } else {
        BUF_LIT(b, "{\"index\":0,\"text\":");
        cit_buf_json_str(b, t, n);
        BUF_LIT(b, ",\"logprobs\":null,\"finish_reason\":");
    }
    if (fin)
        cit_buf_printf(b, "\"%s\"}", fin);
    else
        BUF_LIT(b, "null}");
    chunk_tail(b, r);
}

/* ---- the sovereignty layer: detect, decide, record ---- */

static void class_names(const struct pol_policy *p, uint32_t mask, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = 0;
    for (int c = 0; c < p->n_classes && n + 1 < cap; c++)
        if (mask & (1u << c))
            n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? "," : "", p->classes[c]);
}

/* Appends the decision and its outcome to the ledger, once per request.
 * Decisions that send data off the node are synced before they act. */
static int record(struct req *r, int status, enum ledger_durability dur)
{
    struct http_server *s = r->srv;
    struct ledger_rec e = {0};
    char out_classes[512];
    int rc;
    if (!r->decided || r->logged) return 0;
    r->logged = 1;
    pthread_mutex_lock(&r->mu);
    e.tokens_in = r->n_prompt;
    e.tokens_out = r->n_gen;
    if (r->os.n_found) {
        class_names(s->pol, r->os.classes, out_classes, sizeof(out_classes));
        e.out_classes = out_classes;
        e.out_action = r->os.stopped ? "deny" : "redact";
    }
    pthread_mutex_unlock(&r->mu);
    e.tenant = r->key.tenant;
    e.key_id = r->key.id;
    e.request_id = r->id;
    memcpy(e.digest, r->digest, sizeof(e.digest));
    e.classes = r->classes;
    e.rule = r->dec.rule_id;
    e.policy_hash = s->pol->hash_hex;
    e.target = r->dec.action == POL_FORWARD && r->dec.peer ? r->dec.peer : r->model;
    e.action = pol_action_name(r->dec.action);
    e.status = status;
    if ((rc = ledger_append(s->ledger, &e, dur, NULL)))
        cit_log(CIT_LOG_ERROR, "ledger: cannot record request %s: %s", r->id, cit_strerror(rc));
    return rc;
}

struct seg {
    size_t off, len;
};

/* The text the engine would see, for detection: chat message contents
 * joined by newlines (each one's place kept in segs), the prompt, or the
 * pieces of prompt token ids. */
static int scan_text(struct srv_model *sm, const struct api_req *a, struct cit_buf *t,
                     struct seg *segs)
{
    int rc = 0;
    if (a->chat) {
        for (int i = 0; i < a->n_msgs && !rc; i++) {
            const char *m = a->msgs[i].content ? a->msgs[i].content : "";
            if (i) rc = cit_buf_add(t, "\n", 1);
            segs[i].off = t->len;
            segs[i].len = strlen(m);
            if (!rc) rc = cit_buf_add(t, m, segs[i].len);
        }
    } else if (a->prompt_ids) {
        char piece[256];
        for (int i = 0; i < a->n_prompt_ids && !rc; i++) {
            int n = a->prompt_ids[i] >= 0 && a->prompt_ids[i] < sm->n_vocab
                        ? eng_token_piece(sm->m, a->prompt_ids[i], 1, piece, sizeof(piece))
                        : 0;
            if (n < 0) return n;
            rc = cit_buf_add(t, piece, (size_t)n);
        }
    } else {
        segs[0].off = 0;
        segs[0].len = strlen(a->prompt);
        rc = cit_buf_add(t, a->prompt, segs[0].len);
    }
    if (!rc) rc = cit_buf_add(t, "", 1);
    if (!rc) t->len--;
    return rc;
}

/* Replaces the request's texts by their redacted versions (kept in
 * owned, freed by the caller). Only findings the policy counts are
 * redacted; one that spans two messages cannot be split, so it denies. */
static int redact_request(struct req *r, struct api_req *a, const char *text,
                          const struct seg *segs, int n_seg, char **owned)
{
    const struct pol_policy *p = r->srv->pol;
    for (int i = 0; i < n_seg; i++) {
        struct det_findings sub = {0};
        struct cit_buf out = {0};
        int rc = 0;
        for (size_t k = 0; k < r->dec.findings.n && !rc; k++) {
            struct det_finding f = r->dec.findings.v[k];
            if (pol_finding_class(p, &f) < 0) continue;
            if (f.end <= segs[i].off || f.start >= segs[i].off + segs[i].len) continue;
            if (f.start < segs[i].off || f.end > segs[i].off + segs[i].len) {
                rc = CIT_ERANGE; /* spans two messages */
                break;
            }
            if (sub.n == sub.cap) {
                size_t cap = sub.cap ? sub.cap * 2 : 8;
                struct det_finding *v = cit_realloc(sub.v, cap * sizeof(*v));
                if (!v) {
                    rc = CIT_ENOMEM;
                    break;
                }
                sub.v = v;
                sub.cap = cap;
            }
            f.start -= segs[i].off;
            f.end -= segs[i].off;
            sub.v[sub.n++] = f;
        }
        if (!rc) rc = det_redact_append(&r->red, text + segs[i].off, segs[i].len, &sub, &out);
        if (!rc) rc = cit_buf_add(&out, "", 1);
        det_findings_free(&sub);
        if (rc) {
            if (out.p) explicit_bzero(out.p, out.len);
            cit_buf_free(&out);
            return rc;
        }
        owned[i] = out.p;
        if (a->chat)
            a->msgs[i].content = out.p;
        else
            a->prompt = out.p;
    }
    return 0;
}

/* Detects, decides and acts on the decision: 0 when the request goes on
 * (locally, maybe redacted), -1 when a response was queued in *res. */
static int sovereign(struct MHD_Connection *c, struct req *r, struct api_req *a, int mi,
                     char **owned, enum MHD_Result *res)
{
    struct http_server *s = r->srv;
    struct cit_buf t = {0};
    struct seg *segs;
    int n_seg = a->chat ? a->n_msgs : 1, rc;
    char msg[600];
    char *canon = json_dumps(a->root, JSON_COMPACT | JSON_SORT_KEYS);
    struct pol_request pr = {0};

    /* the canonical request: its JSON with sorted keys, compact */
    if (canon) crypto_hash_sha256(r->digest, (const unsigned char *)canon, strlen(canon));
    free(canon);
    segs = cit_calloc((size_t)n_seg + 1, sizeof(*segs));
    rc = !canon || !segs ? CIT_ENOMEM : scan_text(&s->models[mi], a, &t, segs);
    pr.tenant = r->key.tenant;
    pr.model = s->o.models[mi].id;
    pr.text = t.p ? t.p : "";
    pr.len = t.len;
    pr.declared = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Citadel-Data-Class");
    if (rc) { /* fail closed: what cannot be scanned is not processed */
        memset(&r->dec, 0, sizeof(r->dec));
        r->dec.action = POL_DENY;
        r->dec.rule_id = "";
        snprintf(r->dec.reason, sizeof(r->dec.reason), "the prompt could not be scanned (%s)",
                 cit_strerror(rc));
    } else {
        pol_decide(s->pol, &pr, &r->dec); /* on any error the decision is deny */
    }
    r->decided = 1;
    class_names(s->pol, r->dec.classes, r->classes, sizeof(r->classes));
    snprintf(r->decision_hdr, sizeof(r->decision_hdr), "%s; rule=%s",
             pol_action_name(r->dec.action), r->dec.rule_id[0] ? r->dec.rule_id : "-");
    if (r->dec.action == POL_REDACT) {
        if (!a->chat && a->prompt_ids) {
            r->dec.action = POL_DENY;
            snprintf(r->dec.reason, sizeof(r->dec.reason),
                     "rule '%s' redacts, and a prompt of token ids cannot be redacted; send text",
                     r->dec.rule_id);
        } else if ((rc = redact_request(r, a, t.p, segs, n_seg, owned))) {
            r->dec.action = POL_DENY;
            snprintf(r->dec.reason, sizeof(r->dec.reason), "rule '%s' redacts, but %s",
                     r->dec.rule_id,
                     rc == CIT_ERANGE ? "a finding spans two messages" : "the redaction failed");
        } else {
            r->restore = r->dec.restore;
        }
        if (r->dec.action == POL_DENY)
            snprintf(r->decision_hdr, sizeof(r->decision_hdr), "deny; rule=%s", r->dec.rule_id);
    }
    if (t.p) explicit_bzero(t.p, t.len);
    cit_buf_free(&t);
    cit_free(segs);
    switch (r->dec.action) {
    case POL_LOCAL:
    case POL_REDACT:
        return 0;
    case POL_FORWARD:
        /* nothing leaves yet: the gateway to peers is not built, so the
         * request fails closed; the decision is still recorded, synced */
        record(r, 503, LEDGER_SYNC);
        snprintf(msg, sizeof(msg),
                 "The node's policy forwards this request to peer '%s' (rule '%s'), but this node "
                 "has no gateway to peers yet; nothing was sent.",
                 r->dec.peer ? r->dec.peer : "?", r->dec.rule_id);
        *res = respond_error(c, r, 503, "server_error", "peer_unavailable", NULL, msg);
        return -1;
    default:
        record(r, 403, LEDGER_GROUP);
        if (r->dec.rule_id[0])
            snprintf(msg, sizeof(msg), "Denied by the node's policy (rule '%s'): %s",
                     r->dec.rule_id, r->dec.reason);
        else
            snprintf(msg, sizeof(msg), "Denied by the node's policy: %s", r->dec.reason);
        *res = respond_error(c, r, 403, "permission_error", "policy_denied", NULL, msg);
        return -1;
    }
}

/* Admits the request against the tenant's quotas, capping max_tokens to
 * what the day's budget has left. */
static int quota_admit(struct MHD_Connection *c, struct req *r, int n_tok, int *max_tokens,
                       enum MHD_Result *res)
{
    struct http_server *s = r->srv;
    int t = pol_tenant_index(s->pol, r->key.tenant), rc;
    int64_t now = (int64_t)time(NULL);
    struct pol_quota_ticket *k = &r->ticket;
    struct cit_buf b = {0};
    char when[32], msg[400], retry[24];
    if (t < 0)
        rc = CIT_ENOENT; /* the decision checked it; fail closed anyway */
    else
        rc = pol_quota_admit(s->quotas, r->key.tenant, &s->pol->tenants[t].quota, n_tok,
                             *max_tokens, now, k);
    if (!rc) {
        *max_tokens = (int)k->out;
        return 0;
    }
    if (rc != CIT_EOVERFLOW) {
        record(r, 503, LEDGER_GROUP);
        *res = respond_error(c, r, 503, "server_error", NULL, NULL,
                             "The quota state cannot be read or stored; the request was refused.");
        return -1;
    }
    record(r, 429, LEDGER_GROUP);
    if (k->reset) {
        utc_seconds(k->reset, when);
        snprintf(msg, sizeof(msg),
                 "Tenant '%s' has used its quota %s (%lld); it resets at %s, in %lld s.",
                 r->key.tenant, k->which, (long long)k->limit, when, (long long)(k->reset - now));
        snprintf(retry, sizeof(retry), "%lld",
                 (long long)(k->reset - now > 0 ? k->reset - now : 1));
    } else {
        snprintf(msg, sizeof(msg),
                 "Tenant '%s' has %lld requests in flight, its quota %s; retry when one ends.",
                 r->key.tenant, (long long)k->used, k->which);
        snprintf(retry, sizeof(retry), "1");
    }
    BUF_LIT(&b, "{\"error\":{\"message\":");
    cit_buf_json_str(&b, msg, strlen(msg));
    cit_buf_printf(&b,
                   ",\"type\":\"rate_limit_error\",\"param\":null,\"code\":\"%s\",\"quota\":{"
                   "\"name\":\"%s\",\"limit\":%lld,\"used\":%lld",
                   k->which, k->which, (long long)k->limit, (long long)k->used);
    if (k->reset)
        cit_buf_printf(&b, ",\"resets_at\":\"%s\",\"resets_in_s\":%lld", when,
                       (long long)(k->reset - now));
    BUF_LIT(&b, "}}}\n");
    if (!b.p) {
        *res = respond(c, r, 500, "text/plain", "out of memory\n", 14, NULL, NULL);
        return -1;
    }
    *res = respond(c, r, 429, "application/json", b.p, b.len, "Retry-After", retry);
    cit_buf_free(&b);
    return -1;
}

/* How much of text[from, len) can be restored and sent now: a trailing
 * '[' that may open a placeholder not yet complete is held back. */
static size_t restore_safe_end(const struct req *r, size_t from, size_t len)
{
    const char *p = r->text.p;
    for (size_t i = len; i > from; i--) {
        if (p[i - 1] == ']') return len;
        if (p[i - 1] == '[') return len - (i - 1) < 48 ? i - 1 : len;
    }
    return len;
}

/* The next part of the answer that may go out (r->mu held): the settled
 * text after what was released, with the policy's output rules applied
 * and redacted values put back. An error ends the answer (fail closed). */
static int release(struct req *r, struct cit_buf *piece)
{
    const struct pol_policy *p = r->srv->pol;
    const char *t = r->text.p ? r->text.p : "";
    size_t lim =
        r->restore && !r->done ? restore_safe_end(r, r->os.done, r->text.len) : r->text.len;
    struct cit_buf raw = {0};
    int rc;
    if (r->scan_failed) return 0;
    /* the output rules see the model's own text; placeholders are put back after */
    rc = pol_output_step(p, &r->os, t, r->text.len, lim, r->done, r->restore ? &raw : piece);
    if (!rc && raw.len) rc = det_restore(&r->red, raw.p, raw.len, piece);
    if (raw.p) explicit_bzero(raw.p, raw.len);
    cit_buf_free(&raw);
    if (rc) {
        cit_log(CIT_LOG_ERROR, "request %s: the answer could not be scanned: %s", r->id,
                cit_strerror(rc));
        if (piece->p) explicit_bzero(piece->p, piece->len);
        piece->len = 0;
        r->scan_failed = 1;
    }
    return rc;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct req *r = cls;
    (void)pos;
    for (;;) {
        if (r->out_off < r->out.len) {
            size_t n = r->out.len - r->out_off;
            if (n > max) n = max;
            memcpy(buf, r->out.p + r->out_off, n);
            r->out_off += n;
            if (r->out_off == r->out.len) r->out.len = r->out_off = 0;
            return (ssize_t)n;
        }
        if (r->phase == PH_END) return MHD_CONTENT_READER_END_OF_STREAM;
        struct cit_buf piece = {0};
        int stop = 0;
        pthread_mutex_lock(&r->mu);
        if (r->phase == PH_ROLE) {
            chunk_text(&r->out, r, "", 0, NULL, 1);
            r->phase = PH_BODY;
        } else if (release(r, &piece), piece.len) {
            chunk_text(&r->out, r, piece.p, piece.len, NULL, 0);
            explicit_bzero(piece.p, piece.len);
            cit_buf_free(&piece);
        } else if (!r->done && (r->os.stopped || r->scan_failed) && !r->cancelled) {
            /* an answer cut by the output rules, or unscannable, stops generating */
            stop = 1;
        } else if (r->done) {
            int failed = r->scan_failed || r->finish == SCHED_FINISH_ERROR ||
                         (r->finish == SCHED_FINISH_CANCELLED && !r->timed_out && !r->os.stopped);
            /* the entry goes in before the stream is acknowledged with [DONE] */
            pthread_mutex_unlock(&r->mu);
            int lost = record(
                r, failed ? (r->scan_failed || r->finish == SCHED_FINISH_ERROR ? 500 : 503) : 200,
                LEDGER_GROUP);
            pthread_mutex_lock(&r->mu);
            if (lost && !failed) {
                BUF_LIT(&r->out, "data: ");
                api_error_simple(&r->out, "server_error", "ledger_unavailable", NULL,
                                 "the audit ledger could not record this request");
                BUF_LIT(&r->out, "\n");
            } else if (failed) {
                BUF_LIT(&r->out, "data: ");
                api_error_simple(&r->out, "server_error", NULL, NULL,
                                 r->scan_failed ? "the answer could not be scanned"
                                 : r->finish == SCHED_FINISH_ERROR ? "generation failed"
                                                                   : "generation cancelled");
                BUF_LIT(&r->out, "\n");
            } else {
                chunk_text(&r->out, r, "", 0, finish_reason(r), 0);
                if (r->include_usage) {
                    chunk_head(&r->out, r);
                    BUF_LIT(&r->out, "],");
                    usage_json(&r->out, r);
                    BUF_LIT(&r->out, "}\n\n");
                }
            }
            BUF_LIT(&r->out, "data: [DONE]\n\n");
            r->phase = PH_END;
        } else if (wait_slice(r)) {
            pthread_mutex_unlock(&r->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        pthread_mutex_unlock(&r->mu);
        cit_buf_free(&piece);
        if (stop) cancel(r);
    }
}

static void sse_free(void *cls)
{
    req_unref(cls);
}

static void free_owned(char **owned, int n)
{
    if (!owned) return;
    for (int i = 0; i < n; i++)
        if (owned[i]) {
            explicit_bzero(owned[i], strlen(owned[i]));
            cit_free(owned[i]);
        }
    cit_free(owned);
}

/* Builds the token list: chat messages through the model's template, or
 * the prompt text, or token ids as given. */
static int build_prompt(struct srv_model *sm, const struct api_req *a, int32_t **out, int *n,
                        struct api_err *e)
{
    char *rendered = NULL;
    const char *text;
    int rc, parse_special = a->chat;
    *out = NULL;
    *n = 0;
    if (!a->chat && a->prompt_ids) {
        for (int i = 0; i < a->n_prompt_ids; i++)
            if (a->prompt_ids[i] >= sm->n_vocab) {
                snprintf(e->param, sizeof(e->param), "prompt");
                snprintf(e->msg, sizeof(e->msg), "prompt[%d]: token id %d is not in the vocabulary",
                         i, a->prompt_ids[i]);
                return CIT_ERANGE;
            }
        *out = cit_malloc((size_t)a->n_prompt_ids * sizeof(int32_t));
        if (!*out) return CIT_ENOMEM;
        memcpy(*out, a->prompt_ids, (size_t)a->n_prompt_ids * sizeof(int32_t));
        *n = a->n_prompt_ids;
        return 0;
    }
    if (a->chat) {
        if ((rc = eng_chat_render(sm->tmpl, a->msgs, a->n_msgs, 1, NULL, &rendered))) return rc;
        text = rendered;
    } else {
        text = a->prompt;
    }
    rc = eng_tokenize(sm->m, text, strlen(text), 1, parse_special, NULL, 0, n);
    if (rc == CIT_EOVERFLOW || rc == 0) {
        *out = cit_malloc(((size_t)*n + 1) * sizeof(int32_t));
        rc = *out ? eng_tokenize(sm->m, text, strlen(text), 1, parse_special, *out, *n, n)
                  : CIT_ENOMEM;
    }
    cit_free(rendered);
    if (rc) {
        cit_free(*out);
        *out = NULL;
    }
    return rc;
}

static void request_id(char *out, size_t cap, int chat)
{
    unsigned char rb[12];
    char hex[25];
    randombytes_buf(rb, sizeof(rb));
    sodium_bin2hex(hex, sizeof(hex), rb, sizeof(rb));
    snprintf(out, cap, "%s-%s", chat ? "chatcmpl" : "cmpl", hex);
}

static enum MHD_Result respond_final(struct MHD_Connection *c, struct req *r)
{
    struct cit_buf b = {0}, answer = {0};
    enum MHD_Result res;
    if (r->finish == SCHED_FINISH_ERROR) {
        record(r, 500, LEDGER_GROUP);
        return respond_error(c, r, 500, "server_error", NULL, NULL, "generation failed");
    }
    if (r->finish == SCHED_FINISH_CANCELLED && !r->timed_out) {
        record(r, 503, LEDGER_GROUP);
        return respond_error(c, r, 503, "server_error", NULL, NULL,
                             "the server is shutting down; the generation was cancelled");
    }
    pthread_mutex_lock(&r->mu);
    release(r, &answer); /* done: all of it */
    pthread_mutex_unlock(&r->mu);
    if (r->scan_failed) {
        record(r, 500, LEDGER_GROUP);
        return respond_error(c, r, 500, "server_error", NULL, NULL,
                             "The answer could not be scanned; it is withheld.");
    }
    /* the entry goes in before the answer is acknowledged; without it the
     * answer is withheld */
    if (record(r, 200, LEDGER_GROUP)) {
        if (answer.p) explicit_bzero(answer.p, answer.len);
        cit_buf_free(&answer);
        return respond_error(c, r, 500, "server_error", "ledger_unavailable", NULL,
                             "The audit ledger could not record this request; the answer is "
                             "withheld.");
    }
    cit_buf_printf(&b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", r->id,
                   r->chat ? "chat.completion" : "text_completion", (long long)r->created);
    cit_buf_json_str(&b, r->model, strlen(r->model));
    BUF_LIT(&b, ",\"system_fingerprint\":\"citadel\",\"choices\":[{\"index\":0,");
    if (r->chat) {
        BUF_LIT(&b, "\"message\":{\"role\":\"assistant\",\"content\":");
        cit_buf_json_str(&b, answer.p ? answer.p : "", answer.len);
        BUF_LIT(&b, ",\"refusal\":null},");
    } else {
        BUF_LIT(&b, "\"text\":");
        cit_buf_json_str(&b, answer.p ? answer.p : "", answer.len);
        BUF_LIT(&b, ",");
    }
    cit_buf_printf(&b, "\"logprobs\":null,\"finish_reason\":\"%s\"}],", finish_reason(r));
    usage_json(&b, r);
    BUF_LIT(&b, "}\n");
    if (answer.p) explicit_bzero(answer.p, answer.len);
    cit_buf_free(&answer);
    res = respond_json(c, r, 200, &b);
    return res;
}

static enum MHD_Result handle_generate(struct MHD_Connection *c, struct req *r)
{
    struct http_server *s = r->srv;
    struct api_req a;
    struct api_err e = {0};
    struct srv_model *sm;
    struct sched_req q = {0};
    int32_t *toks = NULL;
    int n_tok = 0, rc, mi, avail, n_owned = 0;
    char **owned = NULL;
    enum MHD_Result res;
    char msg[400];

    if (api_parse(r->body.p ? r->body.p : "", r->body.len, r->ep == EP_CHAT, &a, &e)) {
        api_req_free(&a);
        return respond_error(c, r, e.status, e.type, e.code, e.param, e.msg);
    }
    mi = find_model(s, a.model);
    if (mi < 0) {
        snprintf(msg, sizeof(msg), "The model '%.200s' does not exist.", a.model);
        api_req_free(&a);
        return respond_error(c, r, 404, "invalid_request_error", "model_not_found", "model", msg);
    }
    if (!http_scope_allows(r->key.scopes, r->ep == EP_CHAT ? "chat" : "completions", a.model)) {
        snprintf(msg, sizeof(msg), "This API key may not use the model '%.200s'.", a.model);
        api_req_free(&a);
        return respond_error(c, r, 403, "permission_error", "insufficient_scope", "model", msg);
    }
    sm = &s->models[mi];
    r->created = (int64_t)time(NULL);
    snprintf(r->model, sizeof(r->model), "%s", s->o.models[mi].id);
    request_id(r->id, sizeof(r->id), r->ep == EP_CHAT);
    owned = cit_calloc((size_t)(a.chat ? a.n_msgs : 1) + 1, sizeof(char *));
    n_owned = a.chat ? a.n_msgs : 1;
    if (!owned) {
        api_req_free(&a);
        return respond_error(c, r, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (sovereign(c, r, &a, mi, owned, &res)) {
        free_owned(owned, n_owned);
        api_req_free(&a);
        return res;
    }
    e.param[0] = 0;
    rc = build_prompt(sm, &a, &toks, &n_tok, &e);
    free_owned(owned, n_owned); /* the redacted texts are in the tokens now */
    if (rc) {
        if (!e.param[0])
            snprintf(e.msg, sizeof(e.msg), "could not build the prompt: %s", cit_strerror(rc));
        api_req_free(&a);
        return respond_error(c, r, rc == CIT_ENOMEM ? 500 : 400,
                             rc == CIT_ENOMEM ? "server_error" : "invalid_request_error", NULL,
                             e.param[0] ? e.param : (r->ep == EP_CHAT ? "messages" : "prompt"),
                             e.msg);
    }
    const char *pfield = r->ep == EP_CHAT ? "messages" : "prompt";
    avail = sm->n_ctx - n_tok;
    if (n_tok == 0) {
        snprintf(msg, sizeof(msg), "The prompt is empty after tokenization.");
        goto bad;
    }
    if (n_tok > r->lim.max_prompt_tokens || avail < 1) {
        snprintf(msg, sizeof(msg),
                 "The prompt is %d tokens; this server takes at most %d (context %d, with room "
                 "for at least one generated token).",
                 n_tok,
                 r->lim.max_prompt_tokens < sm->n_ctx - 1 ? r->lim.max_prompt_tokens
                                                          : sm->n_ctx - 1,
                 sm->n_ctx);
        cit_free(toks);
        api_req_free(&a);
        return respond_error(c, r, 400, "invalid_request_error", "context_length_exceeded", pfield,
                             msg);
    }
    if (a.max_tokens > r->lim.max_tokens) {
        snprintf(msg, sizeof(msg), "'max_tokens' is %d; this server allows at most %d.",
                 a.max_tokens, r->lim.max_tokens);
        pfield = "max_tokens";
        goto bad;
    }
    if (a.max_tokens > avail) {
        snprintf(msg, sizeof(msg),
                 "This model's context is %d tokens; the prompt is %d and 'max_tokens' asks for "
                 "%d more.",
                 sm->n_ctx, n_tok, a.max_tokens);
        cit_free(toks);
        api_req_free(&a);
        return respond_error(c, r, 400, "invalid_request_error", "context_length_exceeded",
                             "max_tokens", msg);
    }
    q.prompt = toks;
    q.n_prompt = n_tok;
    q.max_tokens =
        a.max_tokens ? a.max_tokens : (avail < r->lim.max_tokens ? avail : r->lim.max_tokens);
    q.sampling = a.sp;
    if (!a.has_seed) randombytes_buf(&q.sampling.seed, sizeof(q.sampling.seed));
    for (int i = 0; i < a.n_stops; i++) q.stops[i] = a.stops[i];
    q.n_stops = a.n_stops;
    if (quota_admit(c, r, n_tok, &q.max_tokens, &res)) {
        cit_free(toks);
        api_req_free(&a);
        return res;
    }

    r->mi = mi;
    r->chat = r->ep == EP_CHAT;
    r->stream = a.stream;
    r->include_usage = a.include_usage;
    r->n_prompt = n_tok;
    r->phase = r->chat ? PH_ROLE : PH_BODY;
    pthread_mutex_lock(&r->mu);
    r->refs++; /* the scheduler's */
    pthread_mutex_unlock(&r->mu);
    r->t_submit = cit_now_ns();
    watch_deadline(s, r->cw, 0);
    rc = sched_submit(sm->sched, &q, on_token, r, &r->sched_id);
    cit_free(toks);
    api_req_free(&a);
    if (rc) {
        pthread_mutex_lock(&r->mu);
        r->refs--;
        pthread_mutex_unlock(&r->mu);
        /* it never ran: the tenant is not charged for it */
        pol_quota_cancel(s->quotas, r->key.tenant, &r->ticket, (int64_t)time(NULL));
        if (rc == CIT_EOVERFLOW && !atomic_load(&s->draining)) {
            met_count(&s->met, &s->met.rejected_queue_full);
            return respond_error(c, r, 429, "rate_limit_error", "queue_full", NULL,
                                 "The server is busy: the request queue is full. Retry shortly.");
        }
        if (rc == CIT_EOVERFLOW)
            return respond_error(c, r, 503, "server_error", NULL, NULL,
                                 "The server is shutting down.");
        snprintf(msg, sizeof(msg), "the request was refused: %s", cit_strerror(rc));
        return respond_error(c, r, rc == CIT_ENOMEM ? 500 : 400,
                             rc == CIT_ENOMEM ? "server_error" : "invalid_request_error", NULL,
                             NULL, msg);
    }
    pthread_mutex_lock(&r->mu);
    r->submitted = 1;
    pthread_mutex_unlock(&r->mu);

    if (r->stream) {
        struct MHD_Response *resp =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, r, sse_free);
        if (!resp) {
            cancel(r);
            return MHD_NO;
        }
        pthread_mutex_lock(&r->mu);
        r->refs++; /* the response's */
        pthread_mutex_unlock(&r->mu);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(resp, "X-Citadel-Decision", r->decision_hdr);
        res = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        r->status = 200;
        r->responded = 1;
        return res;
    }
    pthread_mutex_lock(&r->mu);
    while (!r->done)
        if (wait_slice(r)) {
            pthread_mutex_unlock(&r->mu);
            return MHD_NO; /* client gone: close */
        }
    pthread_mutex_unlock(&r->mu);
    return respond_final(c, r);
bad:
    cit_free(toks);
    api_req_free(&a);
    return respond_error(c, r, 400, "invalid_request_error", NULL, pfield, msg);
}

/* POST /v1/policy/decide: the decision a request would get, without
 * running it. Body: {"model", and "messages" (chat), "prompt" or "input"
 * (text), optionally "declared"}; the caller's tenant is its key's. */
static enum MHD_Result handle_decide(struct MHD_Connection *c, struct req *r)
{
    struct http_server *s = r->srv;
    json_error_t je;
    json_t *root = json_loadb(r->body.p ? r->body.p : "", r->body.len, JSON_REJECT_DUPLICATES, &je);
    json_t *model, *msgs, *v;
    struct cit_buf t = {0}, b = {0};
    struct pol_request pr = {0};
    struct pol_decision d;
    const char *bad = NULL, *param = NULL;
    char cls[512];
    if (!root || !json_is_object(root)) {
        bad = "The body must be a JSON object.";
    } else if (!json_is_string(model = json_object_get(root, "model"))) {
        bad = "'model' is required: the model the request would use.", param = "model";
    } else if ((msgs = json_object_get(root, "messages"))) {
        size_t i;
        if (!json_is_array(msgs)) bad = "'messages' must be an array.", param = "messages";
        json_array_foreach(msgs, i, v)
        {
            json_t *ct = json_object_get(v, "content");
            if (!json_is_string(ct)) {
                bad = "each message needs a string 'content'", param = "messages";
                break;
            }
            if (i) cit_buf_add(&t, "\n", 1);
            cit_buf_add(&t, json_string_value(ct), json_string_length(ct));
        }
    } else if (json_is_string(v = json_object_get(root, "prompt")) ||
               json_is_string(v = json_object_get(root, "input"))) {
        cit_buf_add(&t, json_string_value(v), json_string_length(v));
    } else {
        bad = "Give the text as 'messages', 'prompt' or 'input'.", param = "input";
    }
    if (!bad && (v = json_object_get(root, "declared")) && !json_is_string(v))
        bad = "'declared' is a comma-separated list of data classes.", param = "declared";
    if (bad) {
        json_decref(root);
        cit_buf_free(&t);
        return respond_error(c, r, 400, "invalid_request_error", NULL, param, bad);
    }
    pr.tenant = r->key.tenant;
    pr.model = json_string_value(model);
    pr.text = t.p ? t.p : "";
    pr.len = t.len;
    pr.declared = json_is_string(v = json_object_get(root, "declared"))
                      ? json_string_value(v)
                      : MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Citadel-Data-Class");
    pol_decide(s->pol, &pr, &d);
    class_names(s->pol, d.classes, cls, sizeof(cls));
    cit_buf_printf(&b, "{\"object\":\"policy.decision\",\"action\":\"%s\",\"rule\":",
                   pol_action_name(d.action));
    cit_buf_json_str(&b, d.rule_id, strlen(d.rule_id));
    BUF_LIT(&b, ",\"peer\":");
    if (d.action == POL_FORWARD && d.peer)
        cit_buf_json_str(&b, d.peer, strlen(d.peer));
    else
        BUF_LIT(&b, "null");
    BUF_LIT(&b, ",\"reason\":");
    cit_buf_json_str(&b, d.reason, strlen(d.reason));
    BUF_LIT(&b, ",\"classes\":[");
    for (char *p = cls, *e; *p; p = *e ? e + 1 : e) {
        e = p + strcspn(p, ",");
        if (p != cls) BUF_LIT(&b, ",");
        cit_buf_json_str(&b, p, (size_t)(e - p));
    }
    BUF_LIT(&b, "],\"tenant\":");
    cit_buf_json_str(&b, pr.tenant, strlen(pr.tenant));
    BUF_LIT(&b, ",\"model\":");
    cit_buf_json_str(&b, pr.model, strlen(pr.model));
    cit_buf_printf(&b, ",\"policy\":\"%s\",\"findings\":[", s->pol->hash_hex);
    for (size_t i = 0; i < d.findings.n; i++) {
        const struct det_finding *f = &d.findings.v[i];
        int c2 = pol_finding_class(s->pol, f);
        cit_buf_printf(&b, "%s{\"detector\":\"%s\",\"class\":", i ? "," : "",
                       det_class_name(f->cls));
        if (c2 >= 0)
            cit_buf_json_str(&b, s->pol->classes[c2], strlen(s->pol->classes[c2]));
        else
            BUF_LIT(&b, "null");
        cit_buf_printf(&b, ",\"start\":%zu,\"end\":%zu,\"confidence\":%.2f}", f->start, f->end,
                       (double)f->confidence);
    }
    BUF_LIT(&b, "]}\n");
    pol_decision_free(&d);
    json_decref(root);
    if (t.p) explicit_bzero(t.p, t.len);
    cit_buf_free(&t);
    return respond_json(c, r, 200, &b);
}

/* ---- MHD callbacks ---- */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    struct http_server *s = cls;
    struct req *r = *con_cls;
    (void)version;
    if (!r) {
        const char *model_id, *cl;
        struct head_count hc = {0, strlen(url) + strlen(method) + 12};
        int is_post = !strcmp(method, "POST"), is_get = !strcmp(method, "GET");
        enum MHD_Result res;
        if (!(r = req_new(s, c))) return MHD_NO;
        *con_cls = r;
        r->method = is_post ? "POST" : is_get ? "GET" : "other";
        r->ep = (enum http_ep)route(url, &model_id);
        MHD_get_connection_values(c, MHD_HEADER_KIND, count_header, &hc);
        if (hc.n > r->lim.max_headers || hc.bytes > r->lim.max_header_bytes)
            return respond_error(c, r, 431, "invalid_request_error", NULL, NULL,
                                 "Request header fields too large or too many.");
        if (r->ep == EP_OTHER)
            return respond_error(c, r, 404, "invalid_request_error", "not_found", NULL,
                                 "Unknown path.");
        if ((r->ep == EP_CHAT || r->ep == EP_COMPLETIONS || r->ep == EP_DECIDE) ? !is_post
                                                                                : !is_get)
            return respond_error(c, r, 405, "invalid_request_error", NULL, NULL,
                                 "Method not allowed on this path.");
        if (is_get) return handle_get(c, r, model_id);
        if (atomic_load(&s->draining))
            return respond_error(c, r, 503, "server_error", NULL, NULL,
                                 "The server is shutting down.");
        if (authorize(c, r,
                      r->ep == EP_CHAT          ? "chat"
                      : r->ep == EP_COMPLETIONS ? "completions"
                                                : "policy",
                      &res))
            return res;
        cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > r->lim.max_body)
            return respond_error(c, r, 413, "invalid_request_error", NULL, NULL,
                                 "Request body too large.");
        watch_deadline(s, r->cw, r->lim.body_timeout_s);
        return MHD_YES;
    }
    if (r->responded) { /* an early answer was queued; drop what follows */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        if (r->body.len + *upload_size > r->lim.max_body) {
            *upload_size = 0;
            return respond_error(c, r, 413, "invalid_request_error", NULL, NULL,
                                 "Request body too large.");
        }
        if (cit_buf_add(&r->body, upload, *upload_size)) return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    return r->ep == EP_DECIDE ? handle_decide(c, r) : handle_generate(c, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *s = cls;
    struct req *r = *con_cls;
    (void)c;
    if (!r) return;
    *con_cls = NULL;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        /* a write failed or the connection broke: the client is gone (the
         * waiters count the hang-ups they see themselves) */
        pthread_mutex_lock(&r->mu);
        int running = r->submitted && !r->done && !r->hung_up;
        pthread_mutex_unlock(&r->mu);
        if (running) met_count(&s->met, &s->met.disconnects);
        cancel(r);
    }
    met_request(&s->met, r->ep, r->responded ? r->status : 499);
    /* a decision whose request ended otherwise (the client left, an error
     * after the decision) is recorded with the status it got */
    if (r->decided && !r->logged) record(r, r->responded ? r->status : 499, LEDGER_GROUP);
    if (r->ticket.admitted) {
        pthread_mutex_lock(&r->mu);
        int ng = r->n_gen;
        pthread_mutex_unlock(&r->mu);
        pol_quota_finish(s->quotas, r->key.tenant, &r->ticket, ng, (int64_t)time(NULL));
    }
    pthread_mutex_lock(&r->mu);
    if (r->submitted) {
        double ttft = r->n_gen ? (double)(r->t_first - r->t_submit) / 1e9 : -1;
        double dec = r->n_gen > 1 ? (double)(r->t_last - r->t_first) / 1e9 : -1;
        int mi = r->mi, np = r->n_prompt, ng = r->n_gen;
        pthread_mutex_unlock(&r->mu);
        met_generation(&s->met, mi, np, ng, ttft, dec);
    } else {
        pthread_mutex_unlock(&r->mu);
    }
    cit_log(CIT_LOG_INFO, "%s %s %d tenant=%s key=%s prompt=%d gen=%d %.1fms%s",
            r->method ? r->method : "-", http_ep_name(r->ep), r->responded ? r->status : 499,
            r->key.tenant[0] ? r->key.tenant : "-", r->key.id[0] ? r->key.id : "-", r->n_prompt,
            r->n_gen, (double)(cit_now_ns() - r->t0) / 1e6,
            toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection ended early)");
    watch_deadline(s, r->cw, r->lim.idle_timeout_s);
    atomic_fetch_sub(&s->inflight, 1);
    req_unref(r);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct http_server *s = cls;
    struct conn_watch *cw = *socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        int secs;
        cw = cit_calloc(1, sizeof(*cw));
        if (!cw) return;
        cw->fd = ci ? ci->connect_fd : -1;
        pthread_mutex_lock(&s->cfg_mu);
        secs = s->o.lim.header_timeout_s;
        pthread_mutex_unlock(&s->cfg_mu);
        pthread_mutex_lock(&s->w_mu);
        cw->deadline = secs > 0 ? cit_now_ns() + (uint64_t)secs * 1000000000ull : 0;
        cw->next = s->watch;
        if (s->watch) s->watch->prev = cw;
        s->watch = cw;
        pthread_mutex_unlock(&s->w_mu);
        *socket_context = cw;
    } else if (cw) { /* closed: MHD has not closed the socket yet */
        pthread_mutex_lock(&s->w_mu);
        if (cw->prev)
            cw->prev->next = cw->next;
        else
            s->watch = cw->next;
        if (cw->next) cw->next->prev = cw->prev;
        pthread_mutex_unlock(&s->w_mu);
        cit_free(cw);
        *socket_context = NULL;
    }
}

static void *watchdog(void *arg)
{
    struct http_server *s = arg;
    pthread_mutex_lock(&s->w_mu);
    while (!s->wd_stop) {
        struct timespec ts;
        uint64_t now = cit_now_ns();
        int dropped = 0;
        for (struct conn_watch *cw = s->watch; cw; cw = cw->next)
            if (cw->deadline && now > cw->deadline && !cw->dropped && cw->fd >= 0) {
                shutdown(cw->fd, SHUT_RDWR);
                cw->dropped = 1;
                dropped++;
            }
        pthread_mutex_unlock(&s->w_mu);
        while (dropped--) met_count(&s->met, &s->met.dropped_slow);
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_mutex_lock(&s->w_mu);
        if (!s->wd_stop) pthread_cond_timedwait(&s->w_cv, &s->w_mu, &ts);
    }
    pthread_mutex_unlock(&s->w_mu);
    return NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    (void)cls;
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = 0;
    cit_log(CIT_LOG_DEBUG, "libmicrohttpd: %s", line);
}

/* ---- start, reload, stop ---- */

static char *read_pem(const char *path, struct cit_err *err)
{
    FILE *f = fopen(path, "rb");
    struct cit_buf b = {0};
    char chunk[4096];
    size_t n;
    if (!f) {
        cit_err_set(err, CIT_EIO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len < (1u << 20))
        if (cit_buf_add(&b, chunk, n)) break;
    fclose(f);
    if (!b.p || !strstr(b.p, "-----BEGIN ")) {
        cit_err_set(err, CIT_EFORMAT, "%s: not a PEM file", path);
        cit_buf_free(&b);
        return NULL;
    }
    return b.p;
}

/* Border control decides which models load (brd_load_model): admitted,
 * unrevoked, unexpired, still allowed by this policy, and byte for byte
 * what was admitted. */
static int load_models(struct http_server *s, struct cit_err *err)
{
    struct brd_registry *reg;
    int rc = brd_registry_open(s->o.state, &reg, err);
    if (rc) return rc;
    for (int i = 0; i < s->o.n_models; i++) {
        struct srv_model *sm = &s->models[i];
        struct brd_load_opts lo = {reg, s->pol, s->ledger, s->o.unvetted, s->o.trust_stored_digest,
                                   0};
        const char *check;
        if ((rc = brd_load_model(&lo, s->o.models[i].path, &sm->m, &check, err))) {
            char why[64];
            snprintf(why, sizeof(why), "model %s refused (%s)", s->o.models[i].id, check);
            cit_err_prefix(err, why);
            brd_registry_close(reg);
            return rc;
        }
        s->n_models = i + 1;
    }
    brd_registry_close(reg);
    for (int i = 0; i < s->o.n_models; i++) {
        struct srv_model *sm = &s->models[i];
        struct sched_opts so;
        int train_ctx;
        sm->n_vocab = eng_model_hparams(sm->m)->n_vocab;
        train_ctx = (int)eng_model_hparams(sm->m)->n_ctx_train;
        sm->n_ctx = s->o.ctx ? s->o.ctx : (train_ctx > 0 && train_ctx < 2048 ? train_ctx : 2048);
        sm->tmpl = eng_chat_detect(sm->m, NULL);
        sm->created = (int64_t)time(NULL);
        so = (struct sched_opts){s->o.parallel, s->o.queue, sm->n_ctx, 256};
        if ((rc = cit_pool_create(s->o.threads, &sm->pool)) ||
            (rc = sched_new(sm->m, sm->pool, &so, &sm->sched)))
            return cit_err_set(err, rc,
                               "%s: cannot start its scheduler (%d slots of %d tokens): %s",
                               s->o.models[i].id, s->o.parallel, sm->n_ctx, cit_strerror(rc));
        cit_log(CIT_LOG_INFO, "model %s: %s, %d slots x %d tokens, %s template, %d threads",
                s->o.models[i].id, s->o.models[i].path, s->o.parallel, sm->n_ctx,
                eng_chat_tmpl_name(sm->tmpl), s->o.threads);
    }
    return 0;
}

static int bind_addr(const char *host, int port, struct sockaddr_storage *ss, int *v6,
                     struct cit_err *err)
{
    struct addrinfo hints = {0}, *ai = NULL;
    int rc;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if ((rc = getaddrinfo(host, NULL, &hints, &ai)) || !ai)
        return cit_err_set(err, CIT_EINVAL, "host '%s': %s", host, gai_strerror(rc));
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *v6 = ai->ai_family == AF_INET6;
    if (*v6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    freeaddrinfo(ai);
    return 0;
}

/* The policy, the quota state and the ledger: without all three no request
 * is served. */
static int start_layer(struct http_server *s, struct cit_err *err)
{
    const struct http_opts *o = &s->o;
    struct ledger_opts lo = {0};
    char origin[LEDGER_MAX_ORIGIN];
    int rc;
    if (!o->policy[0])
        return cit_err_set(err, CIT_EINVAL,
                           "no policy: set 'policy = FILE' (policy.example.yaml is a complete "
                           "one); citadel serves nothing it cannot decide on");
    if (!o->ledger[0])
        return cit_err_set(err, CIT_EINVAL, "no ledger: set 'ledger = DIR' for the audit log");
    if ((rc = pol_load(o->policy, &s->pol, err))) return rc;
    if ((rc = pol_quotas_open(o->state, &s->quotas, err))) return rc;
    snprintf(origin, sizeof(origin), "%s/audit", s->pol->node_id);
    lo.dir = o->ledger;
    lo.origin = origin;
    lo.checkpoint_s = o->checkpoint_s;
    lo.retention_days = o->ledger_retention_days;
    if ((rc = ledger_open(&lo, &s->ledger, err))) return rc;
    cit_log(CIT_LOG_INFO, "policy %s (sha256 %.16s...) for node %s (%s); ledger %s", o->policy,
            s->pol->hash_hex, s->pol->node_id, s->pol->jurisdiction, o->ledger);
    return 0;
}

int http_server_start(const struct http_opts *o, struct http_server **out, struct cit_err *err)
{
    struct http_server *s;
    struct sockaddr_storage ss;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    int v6 = 0, rc;
    const union MHD_DaemonInfo *di;

    if (o->n_models < 1) return cit_err_set(err, CIT_EINVAL, "no model: give --model PATH");
    if (!!o->tls_cert[0] != !!o->tls_key[0])
        return cit_err_set(err, CIT_EINVAL, "TLS needs both --tls-cert and --tls-key");
    if (sodium_init() < 0) return cit_err_set(err, CIT_EIO, "libsodium failed to initialise");
    s = cit_calloc(1, sizeof(*s));
    if (!s) return cit_err_set(err, CIT_ENOMEM, "out of memory");
    s->o = *o;
    pthread_mutex_init(&s->cfg_mu, NULL);
    pthread_mutex_init(&s->w_mu, NULL);
    pthread_cond_init(&s->w_cv, NULL);
    met_init(&s->met);
    if ((rc = bind_addr(o->host, o->port, &ss, &v6, err))) goto fail;
    if (!o->open && (rc = http_keys_open(o->state, &s->keys, err))) goto fail;
    if ((rc = start_layer(s, err))) goto fail;
    if (o->tls_cert[0]) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            rc = cit_err_set(err, CIT_ENOTSUP, "this libmicrohttpd has no TLS support");
            goto fail;
        }
        if (!(s->cert_pem = read_pem(o->tls_cert, err)) ||
            !(s->key_pem = read_pem(o->tls_key, err))) {
            rc = CIT_EIO;
            goto fail;
        }
        flags |= MHD_USE_TLS;
    }
    if (v6) flags |= MHD_USE_IPv6;
    if ((rc = load_models(s, err))) goto fail;
    if (pthread_create(&s->watchdog, NULL, watchdog, s)) {
        rc = cit_err_set(err, CIT_ENOMEM, "cannot start the watchdog thread");
        goto fail;
    }
    s->wd_started = 1;
    {
        struct MHD_OptionItem opts[16];
        int n = 0;
        size_t pool_mem = o->lim.max_header_bytes + 32768;
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &ss};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT,
                                            (intptr_t)o->max_connections, NULL};
        if (o->max_per_ip > 0)
            opts[n++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                                (intptr_t)o->max_per_ip, NULL};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT,
                                            (intptr_t)o->lim.idle_timeout_s, NULL};
        opts[n++] =
            (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)pool_mem, NULL};
        opts[n++] =
            (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)(void *)on_completed, s};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION,
                                            (intptr_t)(void *)on_connection, s};
        opts[n++] =
            (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)(void *)mhd_log, NULL};
        if (s->cert_pem) {
            opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, s->cert_pem};
            opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->key_pem};
        }
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
        s->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, s,
                                MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    }
    if (!s->d) {
        rc = cit_err_set(err, CIT_EIO,
                         "cannot listen on %s port %d (in use, no permission, or a bad TLS "
                         "certificate or key)",
                         o->host, o->port);
        goto fail;
    }
    di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : o->port;
    *out = s;
    return 0;
fail:
    http_server_stop(s);
    return rc;
}

int http_server_port(const struct http_server *s)
{
    return s->port;
}

int http_server_inflight(struct http_server *s)
{
    return atomic_load(&s->inflight);
}

int http_server_busy(struct http_server *s)
{
    int n = 0;
    for (int i = 0; i < s->n_models; i++) {
        struct sched_stats st;
        sched_get_stats(s->models[i].sched, &st);
        n += st.queued + st.active;
    }
    return n;
}

void http_server_reload(struct http_server *s, const struct http_opts *o)
{
    int same_models = o->n_models == s->o.n_models;
    for (int i = 0; same_models && i < o->n_models; i++)
        same_models = !strcmp(o->models[i].id, s->o.models[i].id) &&
                      !strcmp(o->models[i].path, s->o.models[i].path);
    if (!same_models) cit_log(CIT_LOG_WARN, "reload: the model list changes only on restart");
    if (strcmp(o->host, s->o.host) || o->port != s->o.port || o->threads != s->o.threads ||
        o->ctx != s->o.ctx || o->parallel != s->o.parallel || o->queue != s->o.queue ||
        o->max_connections != s->o.max_connections || o->max_per_ip != s->o.max_per_ip ||
        strcmp(o->tls_cert, s->o.tls_cert) || strcmp(o->tls_key, s->o.tls_key) ||
        strcmp(o->state, s->o.state) || strcmp(o->policy, s->o.policy) ||
        strcmp(o->ledger, s->o.ledger))
        cit_log(CIT_LOG_WARN, "reload: host, port, threads, ctx, parallel, queue, "
                              "max_connections, max_per_ip, TLS, state, policy and ledger change "
                              "only on restart");
    pthread_mutex_lock(&s->cfg_mu);
    if (o->open && !s->keys)
        s->o.open = 1;
    else if (!o->open && !s->keys)
        cit_log(CIT_LOG_WARN, "reload: started open (no key store); closing needs a restart");
    else
        s->o.open = o->open;
    s->o.lim = o->lim;
    s->o.grace_s = o->grace_s;
    pthread_mutex_unlock(&s->cfg_mu);
    cit_log(CIT_LOG_INFO, "reload: limits%s applied", s->keys ? " and the open setting" : "");
}

void http_server_stop(struct http_server *s)
{
    int grace;
    if (!s) return;
    atomic_store(&s->draining, 1);
    pthread_mutex_lock(&s->cfg_mu);
    grace = s->o.grace_s;
    pthread_mutex_unlock(&s->cfg_mu);
    if (s->d) {
        MHD_socket lfd = MHD_quiesce_daemon(s->d);
        uint64_t until = cit_now_ns() + (uint64_t)grace * 1000000000ull;
        if (lfd != MHD_INVALID_SOCKET) close(lfd);
        /* in-flight requests finish; idle keep-alive connections do not count */
        while (http_server_busy(s) > 0 && cit_now_ns() < until) usleep(20000);
        if (http_server_busy(s) > 0)
            cit_log(CIT_LOG_WARN, "shutdown: cancelling %d requests after %d s",
                    http_server_busy(s), grace);
    }
    for (int i = 0; i < s->n_models; i++) sched_stop(s->models[i].sched);
    if (s->d) MHD_stop_daemon(s->d);
    if (s->wd_started) {
        pthread_mutex_lock(&s->w_mu);
        s->wd_stop = 1;
        pthread_cond_signal(&s->w_cv);
        pthread_mutex_unlock(&s->w_mu);
        pthread_join(s->watchdog, NULL);
    }
    for (int i = 0; i < s->n_models; i++) {
        sched_free(s->models[i].sched);
        cit_pool_free(s->models[i].pool);
        eng_model_free(s->models[i].m);
    }
    http_keys_close(s->keys);
    ledger_close(s->ledger); /* after the last request: signs the final checkpoint */
    pol_quotas_close(s->quotas);
    pol_free(s->pol);
    met_destroy(&s->met);
    cit_free(s->cert_pem);
    cit_free(s->key_pem);
    pthread_mutex_destroy(&s->cfg_mu);
    pthread_mutex_destroy(&s->w_mu);
    pthread_cond_destroy(&s->w_cv);
    cit_free(s);
}
