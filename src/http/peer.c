/*
 * The node's side of the gateway (docs/gateway.md).
 *
 * In: the peer listener (gateway/listen.c) proves each peer's node key in
 * a mutual TLS handshake and hands the plaintext connection to a daemon of
 * its own, which serves /v1/peer/... only. A peer's request carries a data
 * passport; it is checked here (signature under the pinned key, expiry,
 * replay, that it describes this very body) and then goes through the gate
 * like a client's, as tenant <the peer's id>, with the passport's classes
 * declared: the receiver's own detectors and policy decide, and the
 * passport can only raise the sensitivity. The answer carries a receipt
 * signed by this node naming the ledger entry it wrote.
 *
 * Out: a forward decision's request goes to the gateway on a thread of its
 * own; its text is fed to the request as a local model's tokens are, so
 * the same output rules and the same plain or streamed answer apply.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "citadel/policy.h"
#include "http_int.h"

/* ---- the listener ---- */

static int on_peer(void *user, int fd, int pin)
{
    struct http_server *s = user;
    return conn_adopt(s, s->peer_d, fd, s->peer_of_pin[pin] + 1);
}

/* A handshake the listener refused: the peer never reached HTTP, so its
 * identity is unknown and anyone can cause one. It is recorded, but at most
 * one entry a second, which counts those left out since the last, so that
 * a flood cannot fill the ledger. */
static void on_refused(void *user, const char *from, const char *why)
{
    struct http_server *s = user;
    struct ledger_rec e = {0};
    uint64_t now = cit_now_ns(), quiet;
    char msg[400];
    pthread_mutex_lock(&s->met.mu);
    if (s->hs_last_ns && now - s->hs_last_ns < 1000000000ull) {
        s->hs_quiet++;
        pthread_mutex_unlock(&s->met.mu);
        return;
    }
    s->hs_last_ns = now;
    quiet = s->hs_quiet;
    s->hs_quiet = 0;
    pthread_mutex_unlock(&s->met.mu);
    if (quiet)
        snprintf(msg, sizeof(msg),
                 "TLS handshake from %s refused: %s (and %llu more since the "
                 "last such entry)",
                 from, why, (unsigned long long)quiet);
    else
        snprintf(msg, sizeof(msg), "TLS handshake from %s refused: %s", from, why);
    e.tenant = e.key_id = e.request_id = e.classes = e.rule = e.target = "";
    e.policy_hash = node_policy_hash(s->node);
    e.action = "deny";
    e.status = 403;
    e.event = "peer_handshake";
    e.detail = msg;
    if (ledger_append(node_ledger(s->node), &e, LEDGER_GROUP, NULL))
        cit_log(CIT_LOG_ERROR, "peers: the ledger cannot record a refused handshake");
}

int peer_start(struct http_server *s, struct cit_err *err)
{
    const struct pol_policy *p = node_policy(s->node);
    const struct ledger_skey *key = node_key(s->node);
    struct gw *g = node_gateway(s->node);
    int n = 0, rc;
    if (g && (rc = gw_start_checks(g, s->o.peer_check_s, err))) return rc;
    if (!s->o.peer_listen[0]) return 0;
    if (!p || !key || !g)
        return cit_err_set(err, CIT_EINVAL, "peer_listen: the node has no policy or ledger");
    s->peer_pins = cit_calloc((size_t)p->n_peers + 1, sizeof(*s->peer_pins));
    s->peer_of_pin = cit_calloc((size_t)p->n_peers + 1, sizeof(int));
    if (!s->peer_pins || !s->peer_of_pin) return cit_err_set(err, CIT_ENOMEM, "out of memory");
    for (int i = 0; i < p->n_peers; i++) {
        struct ledger_vkey vk;
        struct cit_err e = {{0}};
        if (p->peers[i].kind != POL_PEER_CITADEL) continue;
        if (ledger_vkey_parse(p->peers[i].identity, strlen(p->peers[i].identity), &vk, &e))
            return cit_err_set(err, CIT_EFORMAT, "peer '%s': identity: %s", p->peers[i].id, e.msg);
        memcpy(s->peer_pins[n], vk.pk, 32);
        s->peer_of_pin[n++] = i;
    }
    if (!n)
        return cit_err_set(err, CIT_EINVAL,
                           "peer_listen is set, but the policy names no citadel peer to accept");
    s->peer_d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
            MHD_USE_POLL | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ERROR_LOG,
        0, NULL, NULL, http_on_request, s, MHD_OPTION_EXTERNAL_LOGGER, conn_mhd_log, s,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(s->o.lim.idle_timeout_s + 5),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(s->o.lim.max_header_bytes + 32768 + GW_MAX_WIRE * 2), MHD_OPTION_NOTIFY_COMPLETED,
        http_on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, conn_on_connection, s,
        MHD_OPTION_URI_LOG_CALLBACK, conn_on_uri, s, MHD_OPTION_END);
    if (!s->peer_d) return cit_err_set(err, CIT_EIO, "cannot start the peers' HTTP daemon");
    if ((rc = gw_listen(s->o.peer_listen, key, (const uint8_t(*)[32])s->peer_pins, n, on_peer,
                        on_refused, s, &s->peer_l, &s->peer_port, err)))
        return rc;
    cit_log(CIT_LOG_INFO, "peers: %d citadel peer%s may connect on %s (port %d)", n,
            n == 1 ? "" : "s", s->o.peer_listen, s->peer_port);
    return 0;
}

void peer_stop(struct http_server *s)
{
    if (s->peer_l) gw_listen_stop(s->peer_l);
    s->peer_l = NULL;
    if (s->peer_d) MHD_stop_daemon(s->peer_d);
    s->peer_d = NULL;
    cit_free(s->peer_pins);
    cit_free(s->peer_of_pin);
    s->peer_pins = NULL;
    s->peer_of_pin = NULL;
}

/* ---- passports in ---- */

/* A refused passport: recorded (an entry of its own, as nothing was
 * decided), answered 403. */
static int refuse(struct MHD_Connection *c, struct req *r, const char *code, const char *why,
                  enum MHD_Result *res)
{
    struct node *n = r->srv->node;
    const struct pol_policy *p = node_policy(n);
    struct ledger_rec e = {0};
    char msg[600];
    const char *wire = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Citadel-Passport");
    snprintf(msg, sizeof(msg), "The data passport was refused: %s", why);
    e.tenant = p->peers[r->peer].id;
    e.key_id = "";
    e.request_id = "";
    e.classes = "";
    e.rule = "";
    e.policy_hash = node_policy_hash(n);
    e.target = "";
    e.action = "deny";
    e.status = 403;
    e.event = "passport";
    e.detail = msg;
    e.passport = wire && strlen(wire) < GW_MAX_WIRE ? wire : NULL;
    pthread_mutex_lock(&r->srv->met.mu);
    r->srv->passports_refused++;
    pthread_mutex_unlock(&r->srv->met.mu);
    if (ledger_append(node_ledger(n), &e, LEDGER_GROUP, NULL)) {
        *res = respond_error(c, r, 500, "server_error", "ledger_unavailable", NULL,
                             "The audit ledger could not record this request.");
        return -1;
    }
    cit_log(CIT_LOG_WARN, "peer '%s': %s", e.tenant, msg);
    *res = respond_error(c, r, 403, "permission_error", code, NULL, msg);
    return -1;
}

/* "a,b" and "b,c" -> "a,b,c" into out. */
static void merge_classes(const char *a, const char *b, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = 0;
    for (int k = 0; k < 2; k++)
        for (const char *q = k ? b : a; q && *q;) {
            size_t l = strcspn(q, ",");
            int dup = 0;
            for (const char *o = out; *o && !dup;) {
                size_t m = strcspn(o, ",");
                dup = m == l && !memcmp(o, q, l);
                o += m + (o[m] == ',');
            }
            if (!dup && l && n + l + 2 < cap) {
                n += (size_t)snprintf(out + n, cap - n, "%s%.*s", n ? "," : "", (int)l, q);
            }
            q += l + (q[l] == ',');
        }
}

/* Reads and checks the request's passport: signed by the peer's pinned
 * key, in date, and describing this very body. NULL when it holds, else
 * the error code, with why. */
static const char *passport_check(struct MHD_Connection *c, struct req *r, struct gw_passport *ps,
                                  char *why, size_t cap)
{
    const struct pol_target *t = &node_policy(r->srv->node)->peers[r->peer];
    const char *wire = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Citadel-Passport");
    const char *salt64 = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Citadel-Passport-Key");
    struct ledger_vkey vk;
    struct cit_err e = {{0}};
    uint8_t salt[32], mac[32];
    size_t sl = 0;
    int64_t now = (int64_t)time(NULL);
    if (!wire || !salt64) return snprintf(why, cap, "the request carries none"), "passport_missing";
    if (ledger_vkey_parse(t->identity, strlen(t->identity), &vk, &e) ||
        gw_passport_open(wire, strlen(wire), &vk, ps, NULL, &e)) {
        snprintf(why, cap, "%.380s", e.msg[0] ? e.msg : "it cannot be read");
        return "passport_invalid";
    }
    if (ps->expires < now) {
        snprintf(why, cap, "it expired %lld s ago", (long long)(now - ps->expires));
        return "passport_expired";
    }
    if (ps->issued > now + GW_PASSPORT_SKEW_S)
        return snprintf(why, cap, "it was issued in the future"), "passport_invalid";
    if (ps->expires - ps->issued > GW_PASSPORT_MAX_LIFE_S) {
        snprintf(why, cap, "it is valid for %lld s, longer than the %d s this node takes",
                 (long long)(ps->expires - ps->issued), GW_PASSPORT_MAX_LIFE_S);
        return "passport_invalid";
    }
    if (sodium_base642bin(salt, sizeof(salt), salt64, strlen(salt64), NULL, &sl, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) ||
        sl != sizeof(salt))
        return snprintf(why, cap, "its key header is not 32 bytes of base64url"),
               "passport_invalid";
    crypto_auth_hmacsha256(mac, (const uint8_t *)(r->body.p ? r->body.p : ""), r->body.len, salt);
    sodium_memzero(salt, sizeof(salt));
    if (sodium_memcmp(mac, ps->digest, sizeof(mac)))
        return snprintf(why, cap, "it describes another request body"), "passport_mismatch";
    return NULL;
}

int peer_admit(struct MHD_Connection *c, struct req *r, struct node_req *q, enum MHD_Result *res)
{
    struct node *n = r->srv->node;
    const struct pol_target *t = &node_policy(n)->peers[r->peer];
    const char *wire = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Citadel-Passport");
    static _Thread_local char classes[1100];
    struct gw_passport ps;
    int64_t now = (int64_t)time(NULL);
    char why[400];
    const char *code = passport_check(c, r, &ps, why, sizeof(why));
    if (code) return refuse(c, r, code, why, res);
    if (!strcmp(ps.purpose, GW_PURPOSE_TEST))
        return refuse(c, r, "passport_invalid", "a test passport carries no request", res);
    switch (node_passport_seen(n, t->id, ps.id, ps.expires, now)) {
    case 0:
        break;
    case CIT_EINVAL:
        snprintf(why, sizeof(why), "passport %s was presented before (a replay)", ps.id);
        return refuse(c, r, "passport_replayed", why, res);
    default:
        *res = respond_error(c, r, 503, "server_error", NULL, NULL,
                             "The state file cannot record passports; the request was refused.");
        return -1;
    }
    /* the passport's classes only raise what this node finds itself */
    merge_classes(ps.classes, ps.declared, classes, sizeof(classes));
    q->tenant = t->id;
    q->key_id = "";
    q->scopes = NULL;
    q->declared = classes[0] ? classes : NULL;
    q->purpose = NULL;
    if (!(r->peer_passport = cit_malloc(strlen(wire) + 1))) {
        *res = respond_error(c, r, 500, "server_error", NULL, NULL, "out of memory");
        return -1;
    }
    memcpy(r->peer_passport, wire, strlen(wire) + 1);
    q->passport = r->peer_passport;
    snprintf(r->key.tenant, sizeof(r->key.tenant), "%s", t->id);
    return 0;
}

void peer_receipt(struct req *r, int status, uint64_t seq, const uint8_t leaf[32])
{
    struct node *n = r->srv->node;
    struct gw_receipt rc;
    struct cit_buf b = {0};
    uint8_t h[32];
    memset(&rc, 0, sizeof(rc));
    r->receipt_hdr[0] = 0;
    if (!r->peer_passport) return;
    if (gw_passport_hash(r->peer_passport, strlen(r->peer_passport), h)) return;
    sodium_bin2hex(rc.passport, sizeof(rc.passport), h, sizeof(h));
    snprintf(rc.receiver, sizeof(rc.receiver), "%s", node_id(n));
    rc.status = status;
    rc.seq = seq;
    memcpy(rc.leaf, leaf, 32);
    rc.time = (int64_t)time(NULL);
    if (!gw_receipt_seal(&rc, node_key(n), &b) && b.len < sizeof(r->receipt_hdr))
        memcpy(r->receipt_hdr, b.p, b.len + 1);
    cit_buf_free(&b);
}

/* ---- forwards out ---- */

static void on_peer_text(void *user, const char *text, size_t len)
{
    struct req *r = user;
    uint64_t now = cit_now_ns();
    pthread_mutex_lock(&r->mu);
    if (!cit_buf_add(&r->text, text, len)) {
        if (!r->n_gen) r->t_first = now;
        r->t_last = now;
        if (r->n_gen == r->tok_cap) {
            int cap = r->tok_cap ? r->tok_cap * 2 : 64;
            size_t *nt = cit_realloc(r->tok_end, (size_t)cap * sizeof(*nt));
            if (nt) r->tok_end = nt, r->tok_cap = cap;
        }
        if (r->n_gen < r->tok_cap) r->tok_end[r->n_gen] = r->text.len;
        r->n_gen++; /* a piece of the stream; the peer's usage counts tokens at the end */
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void *forward_main(void *arg)
{
    struct req *r = arg;
    struct gw_result *res = r->fwd_res;
    int last;
    gw_forward(node_gateway(r->srv->node), &r->fwd, res);
    node_call_forwarded(r->call, res);
    if (res->tried[0])
        cit_log(res->status == 200 ? CIT_LOG_INFO : CIT_LOG_WARN, "request %s: peers: %s",
                node_call_id(r->call), res->tried);
    pthread_mutex_lock(&r->mu);
    if (res->status == 200) {
        r->finish = !strcmp(res->finish, "length") ? SCHED_FINISH_LENGTH : SCHED_FINISH_STOP;
        /* the pieces stay counted in n_gen (what was sent is measured in
         * them); the peer's own count is what the client is told */
        r->fwd_tokens = res->completion_tokens;
        if (res->prompt_tokens >= 0) r->n_prompt = (int)res->prompt_tokens;
    } else {
        r->finish = res->status == 499 ? SCHED_FINISH_CANCELLED : SCHED_FINISH_ERROR;
    }
    r->done = 1;
    last = --r->refs == 0;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (last) req_destroy(r);
    return NULL;
}

/* The forward's gw_send gone: the client of a forward run in its
 * connection's thread hung up. */
static int forward_gone(void *user)
{
    return gen_hung_up(user);
}

/* The forward ended with no answer to send: no peer answered 200 and no
 * text came. */
static int forward_failed(const struct req *r)
{
    return r->fwd_res->status != 200 && !r->fwd_res->streamed;
}

/* forward_failed: the refusal, or why no peer could answer, as the
 * client's error. */
static enum MHD_Result forward_refused(struct MHD_Connection *c, struct req *r)
{
    const struct gw_result *res = r->fwd_res;
    int status = res->status >= 400 ? res->status : 502;
    return respond_error(c, r, status, res->err_type[0] ? res->err_type : "server_error",
                         res->err_code[0] ? res->err_code : NULL, NULL, res->msg);
}

enum MHD_Result handle_forward(struct MHD_Connection *c, struct req *r, const struct api_req *a)
{
    pthread_t th;
    pthread_attr_t at;
    int rc;
    (void)a;
    r->forward = 1;
    if (!(r->fwd_body = cit_malloc(r->body.len + 1)) ||
        !(r->fwd_res = cit_calloc(1, sizeof(*r->fwd_res))))
        return respond_error(c, r, 500, "server_error", NULL, NULL, "out of memory");
    memcpy(r->fwd_body, r->body.p ? r->body.p : "", r->body.len);
    r->fwd_body[r->body.len] = 0;
    node_call_send_fill(r->call, &r->fwd);
    r->fwd.chat = r->chat;
    r->fwd.stream = r->stream;
    r->fwd.body = r->fwd_body;
    r->fwd.len = r->body.len;
    r->fwd.cancel = &r->fwd_cancel;
    r->fwd.on_text = on_peer_text;
    r->fwd.user = r;
    if (r->lim.request_timeout_s > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r->fwd.deadline_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 +
                             (int64_t)r->lim.request_timeout_s * 1000;
    }
    pthread_mutex_lock(&r->mu);
    r->refs++; /* forward_main's */
    r->submitted = 1;
    pthread_mutex_unlock(&r->mu);
    r->t_submit = cit_now_ns();
    if (!r->stream) {
        /* a plain answer goes out in one piece: the forward runs here, in
         * the connection's thread, asking now and then whether the client
         * hung up (a stream's events go out as they come, from this thread,
         * while another runs the forward) */
        r->fwd.gone = forward_gone;
        forward_main(r);
        if (r->hung_up) return MHD_NO;
        return forward_failed(r) ? forward_refused(c, r) : gen_answer(c, r);
    }
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&th, &at, forward_main, r);
    pthread_attr_destroy(&at);
    if (rc) {
        pthread_mutex_lock(&r->mu);
        r->refs--;
        r->submitted = 0;
        pthread_mutex_unlock(&r->mu);
        return respond_error(c, r, 503, "server_error", NULL, NULL,
                             "The gateway cannot start a forward now.");
    }
    /* the answer starts only once a peer answered: a refusal, or every peer
     * failing, is an error status, not a stream that breaks */
    pthread_mutex_lock(&r->mu);
    while (!r->done && !r->text.len)
        if (gen_wait(r)) {
            pthread_mutex_unlock(&r->mu);
            return MHD_NO;
        }
    if (r->done && forward_failed(r)) {
        pthread_mutex_unlock(&r->mu);
        return forward_refused(c, r);
    }
    pthread_mutex_unlock(&r->mu);
    return gen_answer(c, r);
}

enum MHD_Result handle_peer_health(struct MHD_Connection *c, struct req *r)
{
    struct node *n = r->srv->node;
    struct cit_buf b = {0};
    /* citadel peer test: a passport made for the purpose is checked like
     * any and answered with a receipt that names no entry (status 204) */
    if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Citadel-Passport")) {
        struct gw_passport ps;
        enum MHD_Result res;
        char why[400];
        const char *code = passport_check(c, r, &ps, why, sizeof(why));
        uint8_t zero[32] = {0};
        if (!code && strcmp(ps.purpose, GW_PURPOSE_TEST))
            code = "passport_invalid", snprintf(why, sizeof(why),
                                                "a health check takes only a "
                                                "test passport");
        if (code) return refuse(c, r, code, why, &res), res;
        r->peer_passport = cit_malloc(GW_MAX_WIRE);
        if (r->peer_passport) {
            snprintf(r->peer_passport, GW_MAX_WIRE, "%s",
                     MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Citadel-Passport"));
            peer_receipt(r, 204, 0, zero);
        }
    }
    BUF_LIT(&b, "{\"id\":");
    cit_buf_json_str(&b, node_id(n), strlen(node_id(n)));
    BUF_LIT(&b, ",\"jurisdiction\":");
    cit_buf_json_str(&b, node_jurisdiction(n), strlen(node_jurisdiction(n)));
    BUF_LIT(&b, ",\"identity\":");
    cit_buf_json_str(&b, ledger_vkey_text(node_ledger(n)),
                     strlen(ledger_vkey_text(node_ledger(n))));
    BUF_LIT(&b, ",\"you\":");
    cit_buf_json_str(&b, node_policy(n)->peers[r->peer].id,
                     strlen(node_policy(n)->peers[r->peer].id));
    BUF_LIT(&b, "}\n");
    return respond_json(c, r, 200, &b);
}

/* ---- witnessing a peer's ledger ---- */

enum MHD_Result handle_peer_witness(struct MHD_Connection *c, struct req *r)
{
    struct node *n = r->srv->node;
    const struct pol_target *t = &node_policy(n)->peers[r->peer];
    struct ledger_vkey log;
    struct cit_buf reply = {0};
    struct cit_err e = {{0}};
    enum MHD_Result res;
    int status;
    /* the log key is the peer's identity, which its TLS handshake proved */
    if (ledger_vkey_parse(t->identity, strlen(t->identity), &log, &e))
        return respond(c, r, 500, "text/plain", "the peer's identity is not a key\n", 33, NULL,
                       NULL);
    status = node_witness_add(n, t->id, &log, r->body.p ? r->body.p : "", r->body.len, &reply, &e);
    if (status == 200 || status == 409) {
        if (status == 409) cit_log(CIT_LOG_INFO, "witness: peer '%s': %s", t->id, e.msg);
        res = respond(c, r, status, status == 409 ? GW_WITNESS_SIZE_TYPE : "text/plain",
                      reply.p ? reply.p : "", reply.len, NULL, NULL);
    } else {
        /* a rollback, a fork, a bad proof or signature: what witnesses are
         * for, so recorded */
        struct ledger_rec rec = {0};
        char msg[700];
        snprintf(msg, sizeof(msg), "refused to cosign a checkpoint of peer '%s' (%d): %s", t->id,
                 status, e.msg);
        rec.tenant = t->id;
        rec.key_id = rec.request_id = rec.classes = rec.rule = rec.target = "";
        rec.policy_hash = node_policy_hash(n);
        rec.action = "deny";
        rec.status = status;
        rec.event = "witness";
        rec.detail = msg;
        if (status != 500 && ledger_append(node_ledger(n), &rec, LEDGER_GROUP, NULL))
            cit_log(CIT_LOG_ERROR, "witness: the ledger cannot record a refusal");
        cit_log(CIT_LOG_WARN, "witness: %s", msg);
        snprintf(msg, sizeof(msg), "%.600s\n", e.msg);
        res = respond(c, r, status, "text/plain", msg, strlen(msg), NULL, NULL);
    }
    cit_buf_free(&reply);
    return res;
}

/* ---- metrics ---- */

void peer_metrics(struct http_server *s, struct cit_buf *out)
{
    struct gw *g = node_gateway(s->node);
    const struct pol_policy *p = node_policy(s->node);
    int n = gw_peer_count(g);
    struct gw_peer_stats *st;
    uint64_t refused;
    if (!n || !(st = cit_calloc((size_t)n, sizeof(*st)))) return;
    for (int i = 0; i < n; i++) gw_peer_stats(g, i, &st[i]); /* one look for every metric */
    BUF_LIT(out, "# HELP citadel_peer_requests_total Forwards sent to each peer.\n"
                 "# TYPE citadel_peer_requests_total counter\n");
    for (int i = 0; i < n; i++)
        cit_buf_printf(out, "citadel_peer_requests_total{peer=\"%s\"} %llu\n", st[i].id,
                       (unsigned long long)st[i].requests);
    BUF_LIT(out, "# HELP citadel_peer_failures_total Forwards a peer could not take or broke off.\n"
                 "# TYPE citadel_peer_failures_total counter\n");
    for (int i = 0; i < n; i++)
        cit_buf_printf(out, "citadel_peer_failures_total{peer=\"%s\"} %llu\n", st[i].id,
                       (unsigned long long)st[i].failures);
    BUF_LIT(out, "# HELP citadel_peer_latency_seconds_sum Time until each forward's answer ended.\n"
                 "# TYPE citadel_peer_latency_seconds_sum counter\n");
    for (int i = 0; i < n; i++)
        cit_buf_printf(out, "citadel_peer_latency_seconds_sum{peer=\"%s\"} %.6f\n", st[i].id,
                       st[i].latency_sum_s);
    BUF_LIT(out, "# HELP citadel_peer_bytes_out_total Request bytes sent to each peer, by the "
                 "most sensitive class in them.\n"
                 "# TYPE citadel_peer_bytes_out_total counter\n");
    for (int i = 0; i < n; i++)
        for (int k = 0; k < p->n_classes; k++)
            if (st[i].bytes_out_class[k])
                cit_buf_printf(out, "citadel_peer_bytes_out_total{peer=\"%s\",class=\"%s\"} %llu\n",
                               st[i].id, p->classes[k],
                               (unsigned long long)st[i].bytes_out_class[k]);
    BUF_LIT(out, "# HELP citadel_peer_up 1 when the last health check answered.\n"
                 "# TYPE citadel_peer_up gauge\n");
    for (int i = 0; i < n; i++)
        cit_buf_printf(out, "citadel_peer_up{peer=\"%s\"} %d\n", st[i].id, st[i].healthy);
    BUF_LIT(out, "# HELP citadel_peer_breaker_open 1 while a peer is skipped after failures.\n"
                 "# TYPE citadel_peer_breaker_open gauge\n");
    for (int i = 0; i < n; i++)
        cit_buf_printf(out, "citadel_peer_breaker_open{peer=\"%s\"} %d\n", st[i].id,
                       st[i].breaker_open);
    cit_free(st);
    pthread_mutex_lock(&s->met.mu);
    refused = s->passports_refused;
    pthread_mutex_unlock(&s->met.mu);
    cit_buf_printf(out,
                   "# HELP citadel_peer_passports_refused_total Peers' passports refused here.\n"
                   "# TYPE citadel_peer_passports_refused_total counter\n"
                   "citadel_peer_passports_refused_total %llu\n",
                   (unsigned long long)refused);
    if (s->peer_l)
        cit_buf_printf(out,
                       "# HELP citadel_peer_handshakes_refused_total TLS handshakes refused on "
                       "the peer listener (unpinned keys, failures).\n"
                       "# TYPE citadel_peer_handshakes_refused_total counter\n"
                       "citadel_peer_handshakes_refused_total %llu\n",
                       (unsigned long long)gw_listen_refused(s->peer_l));
}
