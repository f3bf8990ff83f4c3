/*
 * The gateway's forwarding: libcurl to each peer, server-sent events back.
 *
 * A forward tries the peers the decision named, in order. A peer whose
 * breaker is open is skipped; one that cannot be reached, times out before
 * answering, or answers 429 or 5xx before any text is given up for the
 * next. Once text has reached the caller no other peer is tried: the
 * answer breaks off with an error instead, so a client never gets two
 * peers' answers spliced. Nothing is sent to any address but the policy's
 * peer URLs: redirects are not followed and proxies from the environment
 * are ignored.
 *
 * Every request asks the peer for a stream (stream_options.include_usage),
 * whatever the client asked: the transport makes one answer of it when the
 * client wanted one, so plain and streamed answers take the same path.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "citadel/gateway.h"
#include "citadel/guard.h"
#include "citadel/policy.h"

#define POOL       4         /* idle handles kept per peer */
#define MAX_ERROR  65536     /* a refusal's body read at most */
#define MAX_ANSWER (8 << 20) /* a plain answer's body read at most */

#define UNRESOLVED "its address did not resolve before lockdown (restart the node to try again)"

struct peer {
    const struct pol_target *t;
    int idx; /* in the policy */
    struct ledger_vkey vk;
    char pin[80];
    struct curl_slist *auth; /* openai: "Authorization: Bearer ..." */
    /* under lockdown: the addresses resolved before it, so that libcurl
     * never asks DNS (there is none after guard_seal) */
    struct curl_slist *resolve;
    int unresolved; /* locked down without an address for it: never tried */
    pthread_mutex_t mu;
    CURL *idle[POOL];
    int n_idle;
    int fails;          /* in a row */
    int64_t open_until; /* the breaker: unix ms */
    int probing;        /* a half-open try is out */
    struct gw_peer_stats st;
    /* a witness of ours (its policy entry has a witness_key) */
    int witness;
    struct ledger_vkey wvk;
    uint64_t wsize; /* the size it cosigned last, as far as we know (0: not known) */
    int wok;        /* it cosigned wsize */
};

struct gw {
    const struct pol_policy *pol;
    struct ledger_skey key;
    struct cit_buf cert, pkey; /* the node's TLS identity, PEM */
    struct peer *peers;
    int n;
    pthread_t th;
    int started, stop, interval_s;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* witnessing: the newest checkpoint to show the witnesses (mu) */
    char wdir[1024];
    struct cit_buf wnote;
    int wpending;
    gw_cosigned_fn on_cosigned;
    void *wuser;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- opening ---- */

static int read_api_key(const char *path, struct curl_slist **out, struct cit_err *err)
{
    struct cit_buf b = {0}, h = {0};
    int rc = cit_read_file(path, 4096, &b, err);
    size_t n;
    if (rc) return rc;
    n = b.len;
    while (n && (b.p[n - 1] == '\n' || b.p[n - 1] == '\r' || b.p[n - 1] == ' ')) n--;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)b.p[i] < 0x21 || (unsigned char)b.p[i] > 0x7e) {
            sodium_memzero(b.p, b.len);
            cit_buf_free(&b);
            return cit_err_set(err, CIT_EFORMAT, "%s: an API key is one line of printable ASCII",
                               path);
        }
    cit_buf_printf(&h, "Authorization: Bearer %.*s", (int)n, b.p);
    sodium_memzero(b.p, b.len);
    cit_buf_free(&b);
    if (!h.p || !(*out = curl_slist_append(NULL, h.p))) rc = CIT_ENOMEM;
    if (h.p) sodium_memzero(h.p, h.len);
    cit_buf_free(&h);
    return rc ? cit_err_set(err, rc, "out of memory") : 0;
}

static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int is_ip_literal(const char *host)
{
    unsigned char b[16];
    return inet_pton(AF_INET, host, b) == 1 || inet_pton(AF_INET6, host, b) == 1;
}

int gw_open(const struct pol_policy *pol, const struct ledger_skey *key, struct gw **out,
            struct cit_err *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    struct gw *g;
    int rc = 0;
    *out = NULL;
    pthread_once(&once, curl_init);
    if (!(g = cit_calloc(1, sizeof(*g))) ||
        !(g->peers = cit_calloc((size_t)pol->n_peers + 1, sizeof(*g->peers)))) {
        cit_free(g);
        return cit_err_set(err, CIT_ENOMEM, "out of memory");
    }
    g->pol = pol;
    g->key = *key;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    for (int i = 0; i < pol->n_peers && !rc; i++) {
        struct peer *p = &g->peers[i];
        const struct pol_target *t = &pol->peers[i];
        p->t = t;
        p->idx = i;
        pthread_mutex_init(&p->mu, NULL);
        g->n++;
        snprintf(p->st.id, sizeof(p->st.id), "%s", t->id);
        snprintf(p->st.kind, sizeof(p->st.kind), "%s",
                 t->kind == POL_PEER_CITADEL ? "citadel" : "openai");
        snprintf(p->st.url, sizeof(p->st.url), "%s", t->url);
        snprintf(p->st.jurisdiction, sizeof(p->st.jurisdiction), "%s", t->jurisdiction);
        if (t->kind == POL_PEER_CITADEL) {
            struct cit_err e = {{0}};
            if ((rc = ledger_vkey_parse(t->identity, strlen(t->identity), &p->vk, &e)))
                cit_err_set(err, rc, "peer '%s': its identity is not a node key line: %s", t->id,
                            e.msg);
            else if (p->vk.type != LEDGER_KEY_SIGN)
                rc = cit_err_set(err, CIT_EFORMAT, "peer '%s': its identity is not a node key",
                                 t->id);
            else if ((rc = gw_pin_text(p->vk.pk, p->pin, sizeof(p->pin))))
                cit_err_set(err, rc, "peer '%s': cannot pin its key", t->id);
            else if (t->witness_key[0]) {
                if ((rc = ledger_vkey_parse(t->witness_key, strlen(t->witness_key), &p->wvk, &e)))
                    cit_err_set(err, rc, "peer '%s': its witness_key is not a key line: %s", t->id,
                                e.msg);
                else if (p->wvk.type != LEDGER_KEY_COSIGN)
                    rc = cit_err_set(err, CIT_EFORMAT,
                                     "peer '%s': its witness_key is not a witness's key (citadel "
                                     "peer identity --witness prints one)",
                                     t->id);
                else
                    p->witness = 1;
            }
        } else if (t->api_key_file[0]) {
            struct cit_err e = {{0}};
            if ((rc = read_api_key(t->api_key_file, &p->auth, &e)))
                cit_err_set(err, rc, "peer '%s': api_key_file: %s", t->id, e.msg);
        }
        if (!rc) {
            char host[256], entry[1200];
            int port;
            struct cit_err e = {{0}};
            struct guard_status gs;
            guard_get_status(&gs);
            if (guard_url_hostport(t->url, host, sizeof(host), &port, &e)) {
                /* pol_load checked the URL */
            } else if (is_ip_literal(host)) {
                /* nothing to resolve; the open-socket check still applies */
            } else if (!guard_resolve(host, port, entry, sizeof(entry))) {
                if (!(p->resolve = curl_slist_append(NULL, entry)))
                    rc = cit_err_set(err, CIT_ENOMEM, "out of memory");
            } else if (gs.locked) {
                p->unresolved = 1;
            }
        }
    }
    if (!rc && pol->n_peers) rc = gw_tls_pem(key, &g->cert, &g->pkey, err);
    if (rc) {
        gw_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

void gw_close(struct gw *g)
{
    if (!g) return;
    if (g->started) {
        pthread_mutex_lock(&g->mu);
        g->stop = 1;
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->mu);
        pthread_join(g->th, NULL);
    }
    for (int i = 0; i < g->n; i++) {
        struct peer *p = &g->peers[i];
        for (int k = 0; k < p->n_idle; k++) curl_easy_cleanup(p->idle[k]);
        curl_slist_free_all(p->auth);
        curl_slist_free_all(p->resolve);
        pthread_mutex_destroy(&p->mu);
    }
    if (g->pkey.p) sodium_memzero(g->pkey.p, g->pkey.len);
    cit_buf_free(&g->pkey);
    cit_buf_free(&g->cert);
    cit_buf_free(&g->wnote);
    sodium_memzero(&g->key, sizeof(g->key));
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    cit_free(g->peers);
    cit_free(g);
}

/* ---- handles ---- */

static CURL *borrow(struct peer *p)
{
    CURL *h = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->n_idle) h = p->idle[--p->n_idle];
    pthread_mutex_unlock(&p->mu);
    return h ? h : curl_easy_init();
}

static void give_back(struct peer *p, CURL *h)
{
    pthread_mutex_lock(&p->mu);
    if (p->n_idle < POOL) {
        p->idle[p->n_idle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    if (h) curl_easy_cleanup(h);
}

/* Every socket libcurl opens: under lockdown, only to an address the
 * peer list resolved to (Landlock checks the port; this, the address). */
static curl_socket_t open_checked(void *user, curlsocktype purpose, struct curl_sockaddr *a)
{
    const struct peer *p = user;
    (void)purpose;
    if (!guard_connect_ok(&a->addr, a->addrlen)) {
        cit_log(CIT_LOG_WARN,
                "peer '%s': lockdown refused a connection to an address that is "
                "not the peer's",
                p->t->id);
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
}

/* The options every request to p has: where, how to trust it, limits.
 * -1 when p cannot be reached at all (UNRESOLVED). */
static int link_opts(struct gw *g, struct peer *p, CURL *h, const char *url, long timeout_ms)
{
    const struct pol_target *t = p->t;
    if (p->unresolved) return -1;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROXY, ""); /* never through a proxy the environment names */
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_checked);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, p);
    if (p->resolve) curl_easy_setopt(h, CURLOPT_RESOLVE, p->resolve);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)t->connect_timeout_s * 1000);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (t->kind == POL_PEER_CITADEL) {
        struct curl_blob cert = {g->cert.p, g->cert.len, CURL_BLOB_NOCOPY};
        struct curl_blob key = {g->pkey.p, g->pkey.len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_3);
        curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cert);
        curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key);
        curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
        /* the certificate is self-signed: what is checked is its key, pinned */
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
        curl_easy_setopt(h, CURLOPT_PINNEDPUBLICKEY, p->pin);
    } else {
        curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
        if (t->ca[0]) curl_easy_setopt(h, CURLOPT_CAINFO, t->ca);
    }
    return 0;
}

/* ---- the breaker ---- */

/* 1 when p may be tried now. */
static int breaker_allows(struct peer *p, int64_t now)
{
    int ok;
    pthread_mutex_lock(&p->mu);
    ok = p->fails < GW_BREAK_AFTER || (now >= p->open_until && !p->probing);
    if (ok && p->fails >= GW_BREAK_AFTER) p->probing = 1; /* half open: this one request */
    pthread_mutex_unlock(&p->mu);
    return ok;
}

static void breaker_note(struct peer *p, int failed, int64_t now)
{
    pthread_mutex_lock(&p->mu);
    p->probing = 0;
    if (!failed) {
        p->fails = 0;
    } else if (++p->fails >= GW_BREAK_AFTER) {
        p->open_until = now + GW_BREAK_S * 1000;
    }
    pthread_mutex_unlock(&p->mu);
}

/* 1 when the last health check of p failed (and says why): it is not
 * tried until a check passes. */
static int known_down(struct peer *p, char *why, size_t cap)
{
    int down;
    if (p->unresolved) return snprintf(why, cap, "skipped: %s", UNRESOLVED), 1;
    pthread_mutex_lock(&p->mu);
    down = p->st.last_check && !p->st.healthy;
    if (down)
        snprintf(why, cap, "skipped: its last health check failed (%.200s)", p->st.last_error);
    pthread_mutex_unlock(&p->mu);
    return down;
}

int gw_usable(struct gw *g, const int *peers, int n, char *why, size_t cap)
{
    int64_t now = now_ms();
    why[0] = 0;
    for (int i = 0; i < n; i++) {
        struct peer *p;
        char w[260];
        size_t k = strlen(why);
        int open;
        if (peers[i] < 0 || peers[i] >= g->n) continue;
        p = &g->peers[peers[i]];
        if (!known_down(p, w, sizeof(w))) {
            pthread_mutex_lock(&p->mu);
            open = p->fails >= GW_BREAK_AFTER && (now < p->open_until || p->probing);
            pthread_mutex_unlock(&p->mu);
            if (!open) return 1;
            snprintf(w, sizeof(w), "skipped: its circuit breaker is open");
        }
        snprintf(why + k, cap - k, "%speer '%s': %s", k ? "; " : "", p->t->id, w);
    }
    return 0;
}

/* ---- one attempt ---- */

struct xfer {
    const char *peer; /* its id, for messages */
    const struct gw_send *s;
    struct gw_result *r;
    struct cit_buf line, body, event;
    int sse, done, failed_midway, gone;
    int status;       /* of the answer's status line, as soon as it came */
    int64_t asked_ms; /* when s->gone was last asked */
    char receipt_hdr[GW_MAX_WIRE];
};

/* The usage an answer reports, into r. */
static void read_usage(struct gw_result *r, json_t *u)
{
    json_t *pt = json_object_get(u, "prompt_tokens"), *ct = json_object_get(u, "completion_tokens");
    if (json_is_integer(pt)) r->prompt_tokens = json_integer_value(pt);
    if (json_is_integer(ct)) r->completion_tokens = json_integer_value(ct);
}

/* One line of the event stream (without its newline). */
static void sse_line(struct xfer *x, const char *l, size_t n)
{
    json_t *o, *c, *v;
    if (n && l[n - 1] == '\r') n--;
    if (!n) {
        x->event.len = 0;
        return;
    }
    if (n > 6 && !memcmp(l, "event:", 6)) {
        l += 6, n -= 6;
        while (n && *l == ' ') l++, n--;
        x->event.len = 0;
        cit_buf_add(&x->event, l, n);
        return;
    }
    if (n < 5 || memcmp(l, "data:", 5)) return; /* comments, ids, retry: nothing to do */
    l += 5, n -= 5;
    while (n && *l == ' ') l++, n--;
    if (x->event.len == 15 && !memcmp(x->event.p, "citadel-receipt", 15)) {
        if (n < sizeof(x->r->receipt)) {
            memcpy(x->r->receipt, l, n);
            x->r->receipt[n] = 0;
        }
        return;
    }
    if (n == 6 && !memcmp(l, "[DONE]", 6)) {
        x->done = 1;
        return;
    }
    if (!(o = json_loadb(l, n, 0, NULL))) return;
    if ((v = json_object_get(o, "error"))) { /* the peer ended the stream with an error */
        const char *m = json_string_value(json_object_get(v, "message"));
        const char *c2 = json_string_value(json_object_get(v, "code"));
        snprintf(x->r->msg, sizeof(x->r->msg), "peer '%s': %s", x->peer, m ? m : "error");
        snprintf(x->r->err_code, sizeof(x->r->err_code), "%s", c2 ? c2 : "");
        x->failed_midway = 1;
    }
    c = json_array_get(json_object_get(o, "choices"), 0);
    if (c) {
        const char *t =
            x->s->chat ? json_string_value(json_object_get(json_object_get(c, "delta"), "content"))
                       : json_string_value(json_object_get(c, "text"));
        const char *f = json_string_value(json_object_get(c, "finish_reason"));
        if (t && *t) {
            x->r->streamed = 1;
            x->s->on_text(x->s->user, t, strlen(t));
        }
        if (f) snprintf(x->r->finish, sizeof(x->r->finish), "%s", f);
    }
    if (json_is_object(v = json_object_get(o, "usage"))) read_usage(x->r, v);
    json_decref(o);
}

/* An answer in one piece (a chat.completion or text_completion object):
 * its text, finish and usage, as the stream's events would have given
 * them. 0, or -1 when it is not such an answer. */
static int plain_answer(struct xfer *x)
{
    json_t *o = json_loadb(x->body.p ? x->body.p : "", x->body.len, 0, NULL), *c, *u;
    const char *t, *f;
    int rc = -1;
    c = json_array_get(json_object_get(o, "choices"), 0);
    t = x->s->chat ? json_string_value(json_object_get(json_object_get(c, "message"), "content"))
                   : json_string_value(json_object_get(c, "text"));
    f = json_string_value(json_object_get(c, "finish_reason"));
    if (c && (t || json_is_null(json_object_get(json_object_get(c, "message"), "content")))) {
        if (t && *t) {
            x->r->streamed = 1;
            x->s->on_text(x->s->user, t, strlen(t));
        }
        if (f) snprintf(x->r->finish, sizeof(x->r->finish), "%s", f);
        if (json_is_object(u = json_object_get(o, "usage"))) read_usage(x->r, u);
        x->done = 1;
        rc = 0;
    }
    json_decref(o);
    return rc;
}

static size_t on_body(char *data, size_t sz, size_t nm, void *user)
{
    struct xfer *x = user;
    size_t n = sz * nm;
    if (!x->sse) { /* a refusal is short; an answer in one piece, bounded */
        if (x->body.len + n > (x->status == 200 ? MAX_ANSWER : MAX_ERROR)) return 0;
        return cit_buf_add(&x->body, data, n) ? 0 : n;
    }
    for (size_t i = 0; i < n; i++) {
        if (data[i] != '\n') {
            if (x->line.len > 4 * GW_MAX_WIRE + 65536) return 0; /* no line is that long */
            if (cit_buf_add(&x->line, data + i, 1)) return 0;
            continue;
        }
        sse_line(x, x->line.p ? x->line.p : "", x->line.len);
        x->line.len = 0;
    }
    return n;
}

static size_t on_header(char *data, size_t sz, size_t nm, void *user)
{
    struct xfer *x = user;
    size_t n = sz * nm, k = sizeof("X-Citadel-Receipt:") - 1;
    if (n > 12 && !memcmp(data, "HTTP/", 5)) { /* "HTTP/1.1 200 OK": a new answer */
        const char *sp = memchr(data, ' ', n);
        x->status = sp && sp + 4 <= data + n ? atoi(sp + 1) : 0;
        x->sse = 0;
    }
    if (n > 13 && !strncasecmp(data, "Content-Type:", 13))
        x->sse = memmem(data, n, "text/event-stream", 17) != NULL;
    if (n > k && !strncasecmp(data, "X-Citadel-Receipt:", k)) {
        const char *v = data + k;
        size_t m = n - k;
        while (m && (*v == ' ')) v++, m--;
        while (m && (v[m - 1] == '\r' || v[m - 1] == '\n')) m--;
        if (m < sizeof(x->receipt_hdr)) {
            memcpy(x->receipt_hdr, v, m);
            x->receipt_hdr[m] = 0;
        }
    }
    return n;
}

#define GONE_EVERY_MS 20 /* how often s->gone is asked */

static int on_progress(void *user, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    struct xfer *x = user;
    (void)dt, (void)dn, (void)ut, (void)un;
    if (x->s->gone && !x->gone) {
        int64_t now = now_ms();
        if (now - x->asked_ms >= GONE_EVERY_MS) {
            x->asked_ms = now;
            x->gone = x->s->gone(x->s->user) != 0;
        }
    }
    return x->gone || (x->s->cancel && atomic_load(x->s->cancel)) ? 1 : 0;
}

/* The body for p: the client's request with the peer's model name; a
 * stream with usage asked for when the client streams, else one answer. */
static char *peer_body(const struct gw_send *s, const struct pol_target *t)
{
    json_t *o = json_loadb(s->body, s->len, 0, NULL), *so;
    char *out = NULL;
    if (!json_is_object(o)) goto out;
    if (t->model[0]) json_object_set_new(o, "model", json_string(t->model));
    json_object_set_new(o, "stream", json_boolean(s->stream));
    json_object_del(o, "stream_options");
    if (s->stream) {
        so = json_object();
        json_object_set_new(so, "include_usage", json_true());
        json_object_set_new(o, "stream_options", so);
    }
    out = json_dumps(o, JSON_COMPACT);
out:
    json_decref(o);
    return out;
}

/* Reads an OpenAI error body into r. */
static void read_refusal(struct gw_result *r, const struct cit_buf *b, const char *peer)
{
    json_t *o = b->p ? json_loadb(b->p, b->len, 0, NULL) : NULL;
    json_t *e = json_object_get(o, "error");
    const char *m = json_string_value(json_object_get(e, "message"));
    const char *t = json_string_value(json_object_get(e, "type"));
    const char *c = json_string_value(json_object_get(e, "code"));
    snprintf(r->err_type, sizeof(r->err_type), "%s", t ? t : "server_error");
    snprintf(r->err_code, sizeof(r->err_code), "%s", c ? c : "");
    if (m)
        snprintf(r->msg, sizeof(r->msg), "peer '%s': %s", peer, m);
    else
        snprintf(r->msg, sizeof(r->msg), "peer '%s' answered %d", peer, r->status);
    json_decref(o);
}

enum { TRY_DONE, TRY_NEXT, TRY_STOP };

/* 0 when wire is a receipt signed by peer p for the passport pass (and,
 * status not 0, with that status), else why. */
static int receipt_check(const struct peer *p, const struct cit_buf *pass, const char *wire,
                         int status, char *why, size_t cap)
{
    struct gw_receipt rc;
    struct cit_err e = {{0}};
    uint8_t h[32];
    char hex[65];
    if (!wire[0]) return snprintf(why, cap, "the answer carries no receipt"), -1;
    if (!pass->p || gw_passport_hash(pass->p, pass->len, h))
        return snprintf(why, cap, "no passport was sent"), -1;
    if (gw_receipt_open(wire, strlen(wire), &p->vk, &rc, &e))
        return snprintf(why, cap, "%.150s", e.msg), -1;
    sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
    if (strcmp(rc.passport, hex)) return snprintf(why, cap, "it names another passport"), -1;
    if (status && rc.status != status)
        return snprintf(why, cap, "it says status %d", rc.status), -1;
    return 0;
}

/* Seals tmpl for peer p and the body about to be sent: a fresh nonce, the
 * peer's id, a keyed digest of body under a fresh key, issued now and
 * expiring in GW_PASSPORT_TTL_S (or at until, when sooner). The passport
 * and its key go into the headers hd; the wire text into pass. */
static int seal_for(struct gw *g, const struct peer *p, const struct gw_passport *tmpl,
                    const char *body, size_t len, int64_t now_ms_, int64_t until,
                    struct cit_buf *pass, struct curl_slist **hd)
{
    struct gw_passport ps = *tmpl;
    struct cit_buf hv = {0};
    uint8_t nonce[16], salt[32];
    char b64[64];
    int rc = 0;
    randombytes_buf(nonce, sizeof(nonce));
    sodium_bin2hex(ps.id, sizeof(ps.id), nonce, sizeof(nonce));
    snprintf(ps.to, sizeof(ps.to), "%s", p->t->id);
    randombytes_buf(salt, sizeof(salt));
    crypto_auth_hmacsha256(ps.digest, (const uint8_t *)body, len, salt);
    ps.issued = now_ms_ / 1000;
    ps.expires = ps.issued + GW_PASSPORT_TTL_S;
    if (until && until < ps.expires) ps.expires = until;
    if (gw_passport_seal(&ps, &g->key, pass) || pass->len >= GW_MAX_WIRE) rc = -1;
    sodium_bin2base64(b64, sizeof(b64), salt, sizeof(salt),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(salt, sizeof(salt));
    if (!rc) {
        cit_buf_printf(&hv, "X-Citadel-Passport: %.*s", (int)pass->len, pass->p);
        *hd = curl_slist_append(*hd, hv.p);
        hv.len = 0;
        cit_buf_printf(&hv, "X-Citadel-Passport-Key: %s", b64);
        *hd = curl_slist_append(*hd, hv.p);
    }
    cit_buf_free(&hv);
    return rc;
}

static void tried(struct gw_result *r, const char *id, const char *why)
{
    size_t n = strlen(r->tried);
    snprintf(r->tried + n, sizeof(r->tried) - n, "%speer '%s': %s", n ? "; " : "", id, why);
}

static int attempt(struct gw *g, struct peer *p, const struct gw_send *s, struct gw_result *r)
{
    const struct pol_target *t = p->t;
    struct xfer x = {.peer = t->id, .s = s, .r = r};
    struct curl_slist *hd = NULL;
    struct cit_buf pass = {0}, hv = {0};
    char url[400], *body = peer_body(s, t), why[200];
    int64_t t0 = now_ms(), left = (int64_t)t->timeout_s * 1000;
    long status = 0;
    int verdict = TRY_NEXT;
    CURLcode cc;
    CURL *h;
    if (s->deadline_ms && s->deadline_ms - t0 < left) left = s->deadline_ms - t0;
    if (left <= 0) {
        tried(r, t->id, "the deadline passed");
        free(body);
        return TRY_STOP;
    }
    if (!body || !(h = borrow(p))) {
        tried(r, t->id, "out of memory");
        free(body);
        return TRY_NEXT;
    }
    snprintf(url, sizeof(url), "%s%s", t->url,
             t->kind == POL_PEER_CITADEL
                 ? (s->chat ? "/v1/peer/chat/completions" : "/v1/peer/completions")
                 : (s->chat ? "/chat/completions" : "/completions"));
    if (link_opts(g, p, h, url, (long)left)) {
        tried(r, t->id, UNRESOLVED);
        give_back(p, h);
        free(body);
        return TRY_NEXT;
    }
    hd = curl_slist_append(hd, "Content-Type: application/json");
    hd =
        curl_slist_append(hd, s->stream ? "Accept: text/event-stream" : "Accept: application/json");
    hd = curl_slist_append(hd, "Expect:");
    if (t->kind == POL_PEER_CITADEL) { /* the passport, sealed for this peer */
        int64_t until = s->deadline_ms ? s->deadline_ms / 1000 + 1 : 0;
        if (seal_for(g, p, &s->pass, body, strlen(body), t0, until, &pass, &hd)) {
            tried(r, t->id, "the passport could not be sealed");
            goto out;
        }
    } else {
        for (struct curl_slist *a = p->auth; a; a = a->next) hd = curl_slist_append(hd, a->data);
    }
    if (s->deadline_ms) {
        hv.len = 0;
        cit_buf_printf(&hv, "X-Citadel-Deadline: %lld", (long long)s->deadline_ms);
        hd = curl_slist_append(hd, hv.p);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &x);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    r->receipt[0] = 0;
    cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    {
        curl_off_t up = 0;
        curl_easy_getinfo(h, CURLINFO_SIZE_UPLOAD_T, &up);
        r->bytes_out += (uint64_t)up;
        pthread_mutex_lock(&p->mu);
        p->st.bytes_out += (uint64_t)up;
        if (s->max_class >= 0 && s->max_class < 32)
            p->st.bytes_out_class[s->max_class] += (uint64_t)up;
        pthread_mutex_unlock(&p->mu);
    }
    if (x.line.len) sse_line(&x, x.line.p, x.line.len); /* a last line without its newline */
    if (cc == CURLE_OK && status == 200 && !x.sse && plain_answer(&x))
        x.done = 0; /* not an answer: said below */
    if (!r->receipt[0] && x.receipt_hdr[0])
        snprintf(r->receipt, sizeof(r->receipt), "%s", x.receipt_hdr);
    if (r->receipt[0] && receipt_check(p, &pass, r->receipt, 0, why, sizeof(why))) {
        /* a receipt that does not hold is not recorded as one */
        cit_log(CIT_LOG_WARN, "peer '%s': its receipt is not recorded: %s", t->id, why);
        r->receipt[0] = 0;
    }
    if (status) { /* the peer received the request: what it carried is recorded */
        r->peer = p->idx;
        if (pass.p) memcpy(r->passport, pass.p, pass.len + 1);
    }
    if (x.gone || (s->cancel && atomic_load(s->cancel))) {
        r->status = 499;
        verdict = TRY_STOP;
        tried(r, t->id, "cancelled by the client");
    } else if (cc == CURLE_OK && status == 200 && x.done && !x.failed_midway) {
        r->status = 200;
        verdict = TRY_DONE;
    } else if (r->streamed || (x.sse && status == 200 && x.failed_midway)) {
        /* text went out already: no other peer may add to it */
        r->status = cc == CURLE_OPERATION_TIMEDOUT ? 504 : 502;
        r->broke_off = 1;
        snprintf(why, sizeof(why), "the answer broke off (%s)",
                 cc != CURLE_OK ? curl_easy_strerror(cc)
                                : (x.failed_midway ? "the peer ended it with an error"
                                                   : "the stream ended early"));
        tried(r, t->id, why);
        if (!r->msg[0] || !x.failed_midway)
            snprintf(r->msg, sizeof(r->msg), "peer '%s': %s", t->id, why);
        verdict = TRY_STOP;
    } else if (cc != CURLE_OK && !status) {
        snprintf(why, sizeof(why), "%s", curl_easy_strerror(cc));
        tried(r, t->id, why);
        verdict = TRY_NEXT;
    } else if (cc != CURLE_OK || (status == 200 && !x.sse)) {
        snprintf(why, sizeof(why), "%s",
                 cc != CURLE_OK ? curl_easy_strerror(cc)
                                : "the answer is neither an event stream nor a completion");
        tried(r, t->id, why);
        verdict = TRY_NEXT;
    } else if (status == 429 || status >= 500) {
        r->status = (int)status;
        read_refusal(r, &x.body, t->id);
        snprintf(why, sizeof(why), "answered %ld", status);
        tried(r, t->id, why);
        verdict = TRY_NEXT;
    } else { /* its answer: a refusal under its policy, or a bad request */
        r->status = (int)status;
        read_refusal(r, &x.body, t->id);
        snprintf(why, sizeof(why), "refused (%ld)", status);
        tried(r, t->id, why);
        verdict = TRY_DONE;
    }
    {
        int64_t t1 = now_ms();
        int failed = verdict == TRY_NEXT || r->broke_off;
        breaker_note(p, failed && r->status != 499, t1);
        pthread_mutex_lock(&p->mu);
        p->st.requests++;
        p->st.failures += (uint64_t)failed;
        p->st.latency_sum_s += (double)(t1 - t0) / 1000.0;
        pthread_mutex_unlock(&p->mu);
    }
out:
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hd);
    give_back(p, h);
    cit_buf_free(&x.line);
    cit_buf_free(&x.body);
    cit_buf_free(&x.event);
    cit_buf_free(&pass);
    cit_buf_free(&hv);
    free(body);
    return verdict;
}

void gw_forward(struct gw *g, const struct gw_send *s, struct gw_result *r)
{
    char why[260];
    memset(r, 0, sizeof(*r));
    r->peer = -1;
    r->prompt_tokens = r->completion_tokens = -1;
    for (int i = 0; i < s->n_peers; i++) {
        struct peer *p;
        int v;
        if (s->peers[i] < 0 || s->peers[i] >= g->n) continue;
        p = &g->peers[s->peers[i]];
        if (known_down(p, why, sizeof(why))) {
            tried(r, p->t->id, why);
            continue;
        }
        if (!breaker_allows(p, now_ms())) {
            tried(r, p->t->id, "skipped: its circuit breaker is open");
            continue;
        }
        r->passport[0] = 0;
        r->msg[0] = 0;
        v = attempt(g, p, s, r);
        if (v == TRY_DONE) return;
        if (v == TRY_NEXT && r->peer == p->idx && r->passport[0] && r->n_prior < 8) {
            struct gw_attempt *a = &r->prior[r->n_prior++];
            a->peer = r->peer;
            a->status = r->status;
            memcpy(a->passport, r->passport, sizeof(a->passport));
            memcpy(a->receipt, r->receipt, sizeof(a->receipt));
        }
        r->peer = -1;
        r->receipt[0] = 0;
        if (v == TRY_STOP) {
            if (!r->status) r->status = 504;
            if (!r->msg[0]) snprintf(r->msg, sizeof(r->msg), "%s", r->tried);
            return;
        }
        if (s->cancel && atomic_load(s->cancel)) break;
    }
    /* no peer took it: nothing was answered; what reached a peer is in r->prior */
    r->peer = -1;
    r->passport[0] = r->receipt[0] = 0;
    r->status = 503;
    snprintf(r->err_type, sizeof(r->err_type), "server_error");
    snprintf(r->err_code, sizeof(r->err_code), "peer_unavailable");
    snprintf(r->msg, sizeof(r->msg), "No peer the policy names could take the request (%s).",
             r->tried[0] ? r->tried : "none cleared");
}

/* ---- health ---- */

static size_t discard(char *d, size_t sz, size_t nm, void *u)
{
    (void)d, (void)u;
    return sz * nm;
}

int gw_check(struct gw *g, int i, int passport, struct cit_err *err)
{
    struct peer *p;
    struct xfer x;
    struct curl_slist *hd = NULL;
    struct cit_buf pass = {0};
    char url[400], why[200] = "";
    long status = 0;
    int64_t t0 = now_ms(), t1;
    int pass_ok = -1;
    CURLcode cc;
    CURL *h;
    if (i < 0 || i >= g->n) return cit_err_set(err, CIT_ENOENT, "no such peer");
    p = &g->peers[i];
    memset(&x, 0, sizeof(x));
    if (!(h = borrow(p))) return cit_err_set(err, CIT_ENOMEM, "out of memory");
    snprintf(url, sizeof(url), "%s%s", p->t->url,
             p->t->kind == POL_PEER_CITADEL ? "/v1/peer/health" : "/models");
    if (link_opts(g, p, h, url, (long)p->t->connect_timeout_s * 2000)) {
        give_back(p, h);
        return cit_err_set(err, CIT_EIO, "peer '%s': %s", p->t->id, UNRESOLVED);
    }
    for (struct curl_slist *a = p->auth; a; a = a->next) hd = curl_slist_append(hd, a->data);
    if (passport && p->t->kind == POL_PEER_CITADEL) {
        struct gw_passport tmpl = {0};
        snprintf(tmpl.origin, sizeof(tmpl.origin), "%s", g->pol->node_id);
        snprintf(tmpl.origin_jurisdiction, sizeof(tmpl.origin_jurisdiction), "%s",
                 g->pol->jurisdiction);
        snprintf(tmpl.policy, sizeof(tmpl.policy), "%s", g->pol->hash_hex);
        snprintf(tmpl.purpose, sizeof(tmpl.purpose), "%s", GW_PURPOSE_TEST);
        if (seal_for(g, p, &tmpl, "", 0, t0, 0, &pass, &hd)) {
            give_back(p, h);
            curl_slist_free_all(hd);
            cit_buf_free(&pass);
            return cit_err_set(err, CIT_EIO, "peer '%s': the test passport could not be sealed",
                               p->t->id);
        }
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
    cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hd);
    give_back(p, h);
    if (pass.p && cc == CURLE_OK && status == 200)
        pass_ok = receipt_check(p, &pass, x.receipt_hdr, 204, why, sizeof(why)) ? 0 : 1;
    cit_buf_free(&pass);
    t1 = now_ms();
    pthread_mutex_lock(&p->mu);
    p->st.last_check = t1 / 1000;
    p->st.last_check_ms = (double)(t1 - t0);
    p->st.healthy = cc == CURLE_OK && status == 200 && pass_ok != 0;
    p->st.passport_ok = pass_ok;
    if (cc != CURLE_OK)
        snprintf(p->st.last_error, sizeof(p->st.last_error), "%s", curl_easy_strerror(cc));
    else if (status != 200)
        snprintf(p->st.last_error, sizeof(p->st.last_error), "answered %ld", status);
    else if (pass_ok == 0)
        snprintf(p->st.last_error, sizeof(p->st.last_error), "test passport: %.180s", why);
    else
        p->st.last_error[0] = 0;
    pthread_mutex_unlock(&p->mu);
    if (p->st.healthy) return 0;
    return cit_err_set(err, CIT_EIO, "peer '%s' (%s): %s", p->t->id, url, p->st.last_error);
}

/* ---- witnesses ---- */

void gw_set_witness(struct gw *g, const char *ledger_dir, gw_cosigned_fn fn, void *user)
{
    pthread_mutex_lock(&g->mu);
    snprintf(g->wdir, sizeof(g->wdir), "%s", ledger_dir);
    g->on_cosigned = fn;
    g->wuser = user;
    pthread_mutex_unlock(&g->mu);
}

void gw_witness_push(struct gw *g, const char *note, size_t len)
{
    int any = 0;
    for (int i = 0; i < g->n; i++) any |= g->peers[i].witness;
    if (!any) return;
    pthread_mutex_lock(&g->mu);
    g->wnote.len = 0;
    if (!cit_buf_add(&g->wnote, note, len)) g->wpending = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static size_t collect(char *d, size_t sz, size_t nm, void *u)
{
    struct cit_buf *b = u;
    size_t n = sz * nm;
    if (b->len + n > GW_WITNESS_MAX_REPLY) return 0;
    return cit_buf_add(b, d, n) ? 0 : n;
}

/* One add-checkpoint to witness p: the status (0: no answer), its body. */
static long add_checkpoint(struct gw *g, struct peer *p, const struct cit_buf *body,
                           struct cit_buf *reply, char *why, size_t cap)
{
    char url[400];
    long status = 0;
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: text/plain");
    CURLcode cc;
    CURL *h = borrow(p);
    if (!h) return snprintf(why, cap, "out of memory"), 0;
    snprintf(url, sizeof(url), "%s/v1/peer/witness/add-checkpoint", p->t->url);
    if (link_opts(g, p, h, url, (long)p->t->connect_timeout_s * 2000)) {
        give_back(p, h);
        curl_slist_free_all(hd);
        return snprintf(why, cap, "%s", UNRESOLVED), 0;
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body->p);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)body->len);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, reply);
    cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hd);
    give_back(p, h);
    if (cc != CURLE_OK) snprintf(why, cap, "%s", curl_easy_strerror(cc));
    return cc == CURLE_OK ? status : 0;
}

/* Shows note (this node's newest checkpoint) to witness p, with a proof
 * from the size it cosigned last; learns that size from a 409 when it is
 * not known. */
static void witness_one(struct gw *g, struct peer *p, const char *note, size_t len,
                        const struct ledger_checkpoint *cp, struct ledger_view *v, int *have_view)
{
    char why[300] = "";
    for (int round = 0; round < 2; round++) {
        uint8_t proof[LEDGER_MAX_PROOF][LEDGER_HASH];
        int n_proof = 0;
        uint64_t old = p->wsize;
        struct cit_buf body = {0}, reply = {0}, out = {0};
        struct cit_err e = {{0}};
        long status;
        /* a witness that cosigned more than this ledger holds is still
         * shown the checkpoint: it refuses, and records that it did */
        if (old && old < cp->size) {
            if (!*have_view) {
                if (ledger_view_open(g->wdir, v, &e)) {
                    snprintf(why, sizeof(why), "the ledger cannot be read: %.200s", e.msg);
                    break;
                }
                *have_view = 1;
            }
            if (v->n < cp->size ||
                ledger_consistency_proof((const uint8_t(*)[LEDGER_HASH])v->leaves, old, cp->size,
                                         proof, &n_proof)) {
                snprintf(why, sizeof(why), "no consistency proof from %llu to %llu",
                         (unsigned long long)old, (unsigned long long)cp->size);
                break;
            }
        }
        if (gw_witness_body(old, (const uint8_t(*)[LEDGER_HASH])proof, n_proof, note, len, &body,
                            &e)) {
            snprintf(why, sizeof(why), "%.250s", e.msg);
            break;
        }
        status = add_checkpoint(g, p, &body, &reply, why, sizeof(why));
        cit_buf_free(&body);
        if (status == 200 && !gw_witness_reply_apply(note, len, reply.p ? reply.p : "", reply.len,
                                                     &p->wvk, &out, &e)) {
            p->wsize = cp->size;
            p->wok = 1;
            why[0] = 0;
            if (g->on_cosigned && cit_buf_add(&out, "", 1) == 0)
                g->on_cosigned(g->wuser, p->t->id, cp->size, out.p);
        } else if (status == 200) {
            snprintf(why, sizeof(why), "its cosignature does not hold: %.200s", e.msg);
        } else if (status == 409 &&
                   !gw_witness_conflict_size(reply.p ? reply.p : "", reply.len, &p->wsize)) {
            p->wok = 0; /* it told us where it stands: once more from there */
            snprintf(why, sizeof(why), "it had cosigned %llu entries",
                     (unsigned long long)p->wsize);
            cit_buf_free(&reply);
            cit_buf_free(&out);
            if (round == 0) continue;
        } else if (status && old > cp->size) {
            snprintf(why, sizeof(why),
                     "it cosigned %llu entries of this ledger, which now has %llu: the ledger "
                     "was rolled back (refused, %ld)",
                     (unsigned long long)old, (unsigned long long)cp->size, status);
        } else if (status) {
            snprintf(why, sizeof(why), "refused (%ld): %.*s", status,
                     (int)(reply.len > 200 ? 200 : reply.len), reply.p ? reply.p : "");
        }
        cit_buf_free(&reply);
        cit_buf_free(&out);
        break;
    }
    pthread_mutex_lock(&p->mu);
    p->st.witness_size = p->wok ? p->wsize : 0;
    snprintf(p->st.witness_error, sizeof(p->st.witness_error), "%s", why);
    pthread_mutex_unlock(&p->mu);
    if (why[0])
        cit_log(CIT_LOG_WARN, "witness '%s': checkpoint %llu not cosigned: %s", p->t->id,
                (unsigned long long)cp->size, why);
}

static void witness_round(struct gw *g, const char *note, size_t len)
{
    struct ledger_checkpoint cp;
    struct ledger_view v;
    struct cit_err e = {{0}};
    size_t used;
    int have_view = 0;
    if (ledger_checkpoint_open(note, len, &g->key.vk, &cp, &used, &e)) {
        cit_log(CIT_LOG_ERROR, "witnesses: this node's own checkpoint does not open: %s", e.msg);
        return;
    }
    for (int i = 0; i < g->n; i++) {
        struct peer *p = &g->peers[i];
        if (!p->witness || (p->wok && p->wsize == cp.size)) continue;
        witness_one(g, p, note, used, &cp, &v, &have_view);
    }
    if (have_view) ledger_view_free(&v);
}

/* The gateway's thread: health checks every interval, and each new
 * checkpoint to the witnesses as soon as it is signed. */
static void *checker(void *arg)
{
    struct gw *g = arg;
    struct timespec next = {0, 0};
    pthread_mutex_lock(&g->mu);
    while (!g->stop) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        if (now.tv_sec > next.tv_sec ||
            (now.tv_sec == next.tv_sec && now.tv_nsec >= next.tv_nsec)) {
            pthread_mutex_unlock(&g->mu);
            for (int i = 0; i < g->n; i++) {
                struct cit_err e = {{0}};
                gw_check(g, i, 0, &e);
            }
            pthread_mutex_lock(&g->mu);
            clock_gettime(CLOCK_REALTIME, &next);
            next.tv_sec += g->interval_s;
        }
        if (g->wpending && g->wdir[0]) {
            struct cit_buf note = {0};
            int ok = !cit_buf_add(&note, g->wnote.p, g->wnote.len);
            g->wpending = 0;
            pthread_mutex_unlock(&g->mu);
            if (ok) witness_round(g, note.p, note.len);
            cit_buf_free(&note);
            pthread_mutex_lock(&g->mu);
            continue;
        }
        if (!g->stop && !g->wpending) pthread_cond_timedwait(&g->cv, &g->mu, &next);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

int gw_start_checks(struct gw *g, int interval_s, struct cit_err *err)
{
    if (g->started || !g->n) return 0;
    g->interval_s = interval_s > 0 ? interval_s : 30;
    if (pthread_create(&g->th, NULL, checker, g))
        return cit_err_set(err, CIT_EIO, "cannot start the peers' health checks");
    g->started = 1;
    return 0;
}

int gw_peer_count(const struct gw *g)
{
    return g ? g->n : 0;
}

void gw_peer_stats(struct gw *g, int i, struct gw_peer_stats *st)
{
    struct peer *p = &g->peers[i];
    pthread_mutex_lock(&p->mu);
    *st = p->st;
    st->breaker_open = p->fails >= GW_BREAK_AFTER && now_ms() < p->open_until;
    pthread_mutex_unlock(&p->mu);
}
