/*
 * The daemon: libmicrohttpd with one thread per connection, the route
 * table, the request's life, and start, reload and stop. Connections reach
 * MHD through the lobby (conn.c), which holds each until its first request
 * head is in and keeps the budgets and deadlines.
 *
 * A request's life:
 *   1. First call of on_request (head received). A request with a body is
 *      checked now: route, header limits, draining, API key and scope,
 *      Content-Length against the cap, so that a refusal comes before the
 *      body. One without a body is checked on the final call (3): an
 *      answer queued before then is an early one, after which MHD closes
 *      the connection and drops what was pipelined behind it.
 *   2. Body chunks are appended up to the cap. Beyond it the rest is read
 *      and dropped (up to as much again) and the 413 comes when the body
 *      ends: a client still sending when the server closes would get a
 *      reset instead of the answer.
 *   3. Last call: the handler (generate.c, endpoints.c).
 *   4. on_completed: metrics, the gate's finish for a request that ended
 *      otherwise (the client left), the access log line.
 *
 * The listening socket is bound before the node opens, so that a port in
 * use is reported before minutes of hashing models.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "citadel/guard.h"
#include "http_int.h"

/* ---- routing ---- */

struct route {
    const char *path;
    int prefix; /* path/{arg} too */
    enum http_ep ep;
    const char *methods; /* space-separated */
    const char *scope;   /* NULL: answered before auth, or auth in the handler */
};

static const struct route routes[] = {
    {"/v1/chat/completions", 0, EP_CHAT, "POST", "chat"},
    {"/v1/completions", 0, EP_COMPLETIONS, "POST", "completions"},
    {"/v1/embeddings", 0, EP_EMBEDDINGS, "POST", "embeddings"},
    {"/v1/models", 1, EP_MODELS, "GET", NULL},
    {"/healthz", 0, EP_HEALTH, "GET", NULL},
    {"/readyz", 0, EP_READY, "GET", NULL},
    {"/metrics", 0, EP_METRICS, "GET", NULL},
    {"/v1/usage", 0, EP_USAGE, "GET", NULL},
    {"/v1/policy/decide", 0, EP_DECIDE, "POST", "policy"},
    {"/v1/tokenize", 0, EP_TOKENIZE, "POST", "tokenize"},
    {"/v1/detokenize", 0, EP_TOKENIZE, "POST", "tokenize"},
    {"/v1/admin/models", 1, EP_ADMIN, "GET POST DELETE", "admin"},
    {"/v1/peer/chat/completions", 0, EP_PEER, "POST", NULL},
    {"/v1/peer/completions", 0, EP_PEER, "POST", NULL},
    {"/v1/peer/health", 0, EP_PEER, "GET", NULL},
    {"/v1/peer/witness/add-checkpoint", 0, EP_PEER, "POST", NULL},
};

static const struct route *route(const char *url, const char **arg)
{
    *arg = NULL;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        size_t n = strlen(routes[i].path);
        if (strncmp(url, routes[i].path, n)) continue;
        if (!url[n]) return &routes[i];
        if (routes[i].prefix && url[n] == '/' && url[n + 1]) {
            *arg = url + n + 1;
            return &routes[i];
        }
    }
    return NULL;
}

/* An Origin header: 0 with r->cors_origin set when the config allows it
 * (or none was sent); -1 for an origin the config does not name. A
 * browser sends Origin on cross-origin calls and preflights; other
 * clients send none and are not affected. */
static int cors_origin(struct MHD_Connection *c, struct req *r)
{
    const char *o = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    size_t n;
    int ok = 0;
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    if (!o) return 0;
    n = strlen(o);
    /* the node's own pages (same origin) need no CORS */
    if (host && ((!strncmp(o, "http://", 7) && !strcasecmp(o + 7, host)) ||
                 (!strncmp(o, "https://", 8) && !strcasecmp(o + 8, host))))
        return 0;
    pthread_mutex_lock(&r->srv->cfg_mu);
    for (const char *p = r->srv->o.cors_origins; *p && !ok;) {
        size_t k = strcspn(p, " ,\t");
        ok = k && ((k == 1 && *p == '*') || (k == n && !strncasecmp(p, o, n)));
        p += k + (p[k] != 0);
    }
    pthread_mutex_unlock(&r->srv->cfg_mu);
    if (!ok || n >= sizeof(r->cors_origin)) return -1;
    memcpy(r->cors_origin, o, n + 1);
    return 0;
}

static int method_allowed(const struct route *rt, const char *method)
{
    size_t n = strlen(method);
    for (const char *p = rt->methods; *p;) {
        size_t k = strcspn(p, " ");
        if (k == n && !memcmp(p, method, n)) return 1;
        p += k;
        while (*p == ' ') p++;
    }
    return 0;
}

struct head_count {
    int n, hosts;
    size_t bytes;
};

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *k,
                                    const char *v)
{
    struct head_count *h = cls;
    (void)kind;
    h->n++;
    h->hosts += !strcasecmp(k, MHD_HTTP_HEADER_HOST);
    h->bytes += strlen(k) + (v ? strlen(v) : 0) + 4;
    return MHD_YES;
}

/* ---- MHD callbacks ---- */

/* A request carries a body when it says so: a length above 0, or chunks. */
static int has_body(struct MHD_Connection *c)
{
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING) ||
           (cl && strtoull(cl, NULL, 10) > 0);
}

static enum MHD_Result on_head(struct http_server *s, struct MHD_Connection *c, struct req *r,
                               const char *url, const char *method, const char *version)
{
    const struct route *rt;
    const char *arg, *cl, *te;
    struct head_count hc = {0, 0, strlen(url) + strlen(method) + 12};
    enum MHD_Result res;
    unsigned long long len;
    r->method = !strcmp(method, "POST")      ? "POST"
                : !strcmp(method, "GET")     ? "GET"
                : !strcmp(method, "DELETE")  ? "DELETE"
                : !strcmp(method, "OPTIONS") ? "OPTIONS"
                                             : "other";
    rt = route(url, &arg);
    r->ep = rt ? rt->ep : EP_OTHER;
    if (arg && strlen(arg) < sizeof(r->arg)) {
        snprintf(r->arg, sizeof(r->arg), "%s", arg);
        r->path_arg = r->arg;
    }
    MHD_get_connection_values(c, MHD_HEADER_KIND, count_header, &hc);
    if (hc.n > r->lim.max_headers || hc.bytes > r->lim.max_header_bytes)
        return respond_error(c, r, 431, "invalid_request_error", NULL, NULL,
                             "Request header fields too large or too many.");
    /* HTTP/1.1 names its host once (RFC 9112 3.2); 1.0 may not */
    if (strcmp(version, MHD_HTTP_VERSION_1_0) && hc.hosts != 1)
        return respond_error(c, r, 400, "invalid_request_error", "invalid_host", NULL,
                             hc.hosts ? "The request has more than one Host header."
                                      : "An HTTP/1.1 request needs a Host header.");
    cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    te = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    /* framing that two parsers could read two ways is refused (request smuggling) */
    if (te && strcasecmp(te, "chunked"))
        return respond_error(c, r, 501, "invalid_request_error", "unsupported_transfer_encoding",
                             NULL,
                             "Only 'Transfer-Encoding: chunked' is supported; or send a "
                             "Content-Length.");
    if (te && cl)
        return respond_error(c, r, 400, "invalid_request_error", "invalid_framing", NULL,
                             "A request may carry Content-Length or Transfer-Encoding, not both.");
    /* a peer's connection reaches the peer endpoints only, a client's never */
    if (!rt || (arg && !r->path_arg) || (r->ep == EP_PEER) != (r->peer >= 0))
        return respond_error(c, r, 404, "invalid_request_error", "not_found", NULL,
                             "Unknown path.");
    if (r->ep != EP_PEER && cors_origin(c, r)) /* a browser's call, or its preflight */
        return respond_error(c, r, 403, "invalid_request_error", "cors_origin_not_allowed", NULL,
                             "This origin may not call the API: add it to cors_origins.");
    if (!strcmp(r->method, "OPTIONS") && r->cors_origin[0] &&
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Method"))
        return respond_preflight(c, r, rt->methods);
    r->peer_chat = r->ep == EP_PEER && !strcmp(url, "/v1/peer/chat/completions");
    r->tokenize_detok = r->ep == EP_TOKENIZE && !strcmp(url, "/v1/detokenize");
    r->peer_witness = r->ep == EP_PEER && !strcmp(url, "/v1/peer/witness/add-checkpoint");
    if (r->ep == EP_PEER && !strcmp(r->method, "GET")) return handle_peer_health(c, r);
    if (!method_allowed(rt, r->method))
        return respond_error(c, r, 405, "invalid_request_error", NULL, NULL,
                             "Method not allowed on this path.");
    if (!strcmp(r->method, "GET") && r->ep != EP_ADMIN) return handle_get(c, r);
    if (atomic_load(&s->draining))
        return respond_error(c, r, 503, "server_error", NULL, NULL, "The server is shutting down.");
    if (r->ep != EP_PEER && authorize(c, r, rt->scope, &res)) return res; /* peers: by TLS */
    if (!strcmp(r->method, "GET") || !strcmp(r->method, "DELETE")) return MHD_YES;
    len = cl ? strtoull(cl, NULL, 10) : 0;
    if (len > r->lim.max_body) {
        /* refused before the body when the client waits for a go-ahead
         * (Expect: 100-continue) or the body is too large to read and drop */
        const char *ex = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
        if ((ex && !strcasecmp(ex, "100-continue")) || len > 2ull * r->lim.max_body)
            return respond_error(c, r, 413, "invalid_request_error", "request_too_large", NULL,
                                 "Request body too large.");
        r->overflow = 1;
    }
    return MHD_YES;
}

static enum MHD_Result dispatch(struct MHD_Connection *c, struct req *r)
{
    if (r->overflow)
        return respond_error(c, r, 413, "invalid_request_error", "request_too_large", NULL,
                             "Request body too large.");
    switch (r->ep) {
    case EP_DECIDE:
        return handle_decide(c, r);
    case EP_TOKENIZE:
        return handle_tokenize(c, r);
    case EP_ADMIN:
        return handle_admin(c, r);
    case EP_EMBEDDINGS:
        return handle_embeddings(c, r);
    case EP_PEER:
        if (r->peer_witness) return handle_peer_witness(c, r);
        return handle_generate(c, r);
    default:
        return handle_generate(c, r);
    }
}

enum MHD_Result http_on_request(void *cls, struct MHD_Connection *c, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_size, void **con_cls)
{
    struct http_server *s = cls;
    struct req *r = *con_cls;
    enum MHD_Result res;
    if (!r) {
        if (!(r = req_new(s, c))) return MHD_NO;
        *con_cls = r;
        conn_request_head(s, r->cw, r->lim.body_timeout_s);
        if (has_body(c)) return on_head(s, c, r, url, method, version);
        r->deferred = 1;
        return MHD_YES;
    }
    if (r->responded) { /* an early answer was queued; drop what follows */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (!r->overflow && r->body.len + n > r->lim.max_body) {
            r->overflow = 1;
            r->dropped = r->body.len;
            explicit_bzero(r->body.p, r->body.len);
            cit_buf_free(&r->body);
        }
        if (r->overflow) {
            /* read and dropped up to twice the cap in all; beyond that
             * answered now (the client may see a reset) */
            r->dropped += n;
            if (r->dropped > 2 * r->lim.max_body)
                return respond_error(c, r, 413, "invalid_request_error", "request_too_large", NULL,
                                     "Request body too large.");
            return MHD_YES;
        }
        if (cit_buf_add(&r->body, upload, n)) return MHD_NO;
        return MHD_YES;
    }
    if (r->deferred) {
        r->deferred = 0;
        res = on_head(s, c, r, url, method, version);
        if (r->responded || res != MHD_YES) return res;
    }
    return dispatch(c, r);
}

void http_on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                       enum MHD_RequestTerminationCode toe)
{
    struct http_server *s = cls;
    struct req *r = *con_cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    int idle_s, raw, status;
    pthread_mutex_lock(&s->cfg_mu);
    idle_s = s->o.lim.idle_timeout_s;
    pthread_mutex_unlock(&s->cfg_mu);
    /* an answer written past MHD (a 408, or one of MHD's errors in our shape) */
    raw = conn_request_done(s, ci ? ci->socket_context : NULL, idle_s);
    if (!r) { /* MHD refused the request before our handler saw it */
        if (raw) met_request(&s->met, EP_OTHER, raw);
        return;
    }
    *con_cls = NULL;
    /* our own answer written past MHD (a 408, an eviction's 503) went out
     * first if there is one: it is what the client got */
    status = raw ? raw : r->responded ? r->status : 499;
    /* a stream the client left is 499, though its 200 header went out */
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->stream && !raw) status = 499;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        /* a write failed or the connection broke: the client is gone (the
         * waiters count the hang-ups they see themselves) */
        pthread_mutex_lock(&r->mu);
        int running = r->submitted && !r->done && !r->hung_up;
        pthread_mutex_unlock(&r->mu);
        if (running) met_count(&s->met, &s->met.disconnects);
        gen_cancel(r);
    }
    met_request(&s->met, r->ep, status);
    pthread_mutex_lock(&r->mu);
    int ng = r->n_gen, broke = toe != MHD_REQUEST_TERMINATED_COMPLETED_OK;
    if (broke && r->stream) ng = r->n_sent; /* the tokens it was handed */
    pthread_mutex_unlock(&r->mu);
    /* a decision whose request ended otherwise (the client left, an error
     * after the decision) is recorded with the status it got */
    if (r->call) node_finish(r->call, status, ng);
    pthread_mutex_lock(&r->mu);
    if (r->submitted) {
        double ttft = r->n_gen ? (double)(r->t_first - r->t_submit) / 1e9 : -1;
        double dec = r->n_gen > 1 ? (double)(r->t_last - r->t_first) / 1e9 : -1;
        int slot = r->slot, np = r->n_prompt;
        ng = r->n_gen;
        pthread_mutex_unlock(&r->mu);
        met_generation(&s->met, slot, node_call_model(r->call), node_call_model_gen(r->call), np,
                       ng, ttft, dec);
    } else {
        pthread_mutex_unlock(&r->mu);
    }
    cit_log(CIT_LOG_INFO, "%s %s %d tenant=%s key=%s prompt=%d gen=%d %.1fms%s",
            r->method ? r->method : "-", http_ep_name(r->ep), status,
            r->key.tenant[0] ? r->key.tenant : "-", r->key.id[0] ? r->key.id : "-", r->n_prompt,
            r->n_gen, (double)(cit_now_ns() - r->t0) / 1e6,
            toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection ended early)");
    atomic_fetch_sub(&s->inflight, 1);
    req_unref(r);
}

/* ---- start, reload, stop ---- */

static char *read_pem(const char *path, struct cit_err *err)
{
    struct cit_buf b = {0};
    int rc = cit_read_file(path, 1u << 20, &b, err);
    if (rc == CIT_ENOENT) cit_err_set(err, CIT_EIO, "%s: no such file", path);
    if (!rc && !strstr(b.p ? b.p : "", "-----BEGIN ")) {
        cit_err_set(err, CIT_EFORMAT, "%s: not a PEM file", path);
        rc = CIT_EFORMAT;
    }
    if (rc) {
        cit_buf_free(&b);
        return NULL;
    }
    return b.p;
}

/* The listening socket, bound now: a port in use is an error before the
 * node loads its models. */
static int listen_on(const char *host, int port, int *fd, int *v6, struct cit_err *err)
{
    struct addrinfo hints = {0}, *ai = NULL;
    struct sockaddr_storage ss;
    int rc, one = 1;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if ((rc = getaddrinfo(host, NULL, &hints, &ai)) || !ai)
        return cit_err_set(err, CIT_EINVAL, "host '%s': %s", host, gai_strerror(rc));
    memset(&ss, 0, sizeof(ss));
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    *v6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    if (*v6)
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
    if ((*fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return cit_err_set(err, CIT_EIO, "socket: %s", strerror(errno));
    setsockopt(*fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(*fd, (struct sockaddr *)&ss,
             *v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in)) ||
        listen(*fd, 128)) {
        int e = errno;
        close(*fd);
        *fd = -1;
        if (e == EADDRINUSE)
            return cit_err_set(err, CIT_EIO,
                               "%s port %d is in use by another process (another citadel "
                               "serve?); stop it or choose --port",
                               host, port);
        return cit_err_set(err, CIT_EIO, "cannot listen on %s port %d: %s", host, port,
                           strerror(e));
    }
    return 0;
}

/* What the operator should fix before clients find out: models the policy
 * does not list, keys for tenants it does not list. */
static void startup_report(struct http_server *s)
{
    struct cit_buf rep = {0};
    struct node_model_info *v = cit_calloc(NODE_MAX_MODELS, sizeof(*v));
    int n = v ? node_models(s->node, v, NODE_MAX_MODELS) : 0;
    for (int i = 0; i < n; i++)
        if (!node_policy_lists_model(s->node, v[i].id))
            cit_log(CIT_LOG_WARN,
                    "model %s has no entry under 'models:' in the policy %s, so every request "
                    "for it is denied; add a line such as\n    %s: {jurisdiction: %s, classes: "
                    "[public, internal]}",
                    v[i].id, s->o.node.policy, v[i].id, node_jurisdiction(s->node));
    cit_free(v);
    if (!s->o.open && node_key_audit(s->node, &rep) > 0)
        for (char *p = rep.p, *e; p && *p; p = e + 1) {
            e = strchr(p, '\n');
            *e = 0;
            cit_log(CIT_LOG_WARN, "%s", p);
        }
    cit_buf_free(&rep);
}

int http_guard_spec(const struct http_opts *o, const struct pol_policy *p, struct guard_spec *s,
                    struct cit_err *err)
{
    int rc;
    if ((rc = node_guard_spec(&o->node, p, 1, s, err)) || (rc = guard_spec_bind(s, o->port, err)) ||
        (rc = guard_spec_path(s, o->tls_cert, 0, 0, err)) ||
        (rc = guard_spec_path(s, o->tls_key, 0, 0, err)))
        return rc;
    if (o->peer_listen[0]) {
        const char *c = strrchr(o->peer_listen, ':');
        long port;
        if (!c || node_set_int("peer_listen", c + 1, 0, 65535, &port, err)) return CIT_EINVAL;
        if ((rc = guard_spec_bind(s, (int)port, err))) return rc;
    }
    return 0;
}

int http_server_start(const struct http_opts *o, struct http_server **out, struct cit_err *err)
{
    struct http_server *s;
    /* poll, not select: a busy node has descriptors above FD_SETSIZE; the
     * lobby (conn.c) accepts, MHD serves what it hands over */
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     MHD_USE_POLL | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ERROR_LOG;
    int v6 = 0, rc;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    if (o->node.n_models < 1) return cit_err_set(err, CIT_EINVAL, "no model: give --model PATH");
    if (!!o->tls_cert[0] != !!o->tls_key[0])
        return cit_err_set(err, CIT_EINVAL, "TLS needs both --tls-cert and --tls-key");
    if (!(s = cit_calloc(1, sizeof(*s)))) return cit_err_set(err, CIT_ENOMEM, "out of memory");
    s->o = *o;
    s->listen_fd = s->epfd = s->evfd = -1;
    pthread_mutex_init(&s->cfg_mu, NULL);
    pthread_mutex_init(&s->w_mu, NULL);
    pthread_cond_init(&s->w_cv, NULL);
    met_init(&s->met);
    if (o->max_unauth >= o->max_connections)
        cit_log(CIT_LOG_WARN,
                "max_unauthenticated (%d) is not below max_connections (%d): clients without a "
                "key may take every connection",
                o->max_unauth, o->max_connections);
    if ((rc = listen_on(o->host, o->port, &s->listen_fd, &v6, err))) goto fail;
    if (!getsockname(s->listen_fd, (struct sockaddr *)&ss, &sl))
        s->port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                           : ((struct sockaddr_in *)&ss)->sin_port);
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
        s->tls = 1;
    }
    if ((rc = node_open(&o->node, NODE_MODELS | NODE_GATEWAY, &s->node, err))) goto fail;
    cit_log(CIT_LOG_INFO, "policy %s (sha256 %.16s...) for node %s; ledger %s", o->node.policy,
            node_policy_hash(s->node), node_id(s->node), o->node.ledger);
    startup_report(s);
    if ((s->profile_id = node_profile_id(s->node)) && node_profile_notice(s->node) &&
        !(s->notice_hdr = http_ext_value(node_profile_notice(s->node)))) {
        rc = cit_err_set(err, CIT_ENOMEM, "out of memory");
        goto fail;
    }
    if (s->profile_id)
        cit_log(CIT_LOG_INFO, "jurisdiction profile %s: answers carry Citadel-Profile%s",
                s->profile_id, s->notice_hdr ? " and Citadel-Notice" : "");
    {
        struct MHD_OptionItem opts[16];
        int n = 0;
        size_t pool_mem = o->lim.max_header_bytes + 32768;
        /* MHD's own inactivity timeout is a backstop behind the watchdog's
         * deadlines (which answer 408); it still closes a client that
         * stops reading its answer */
        int backstop = o->lim.idle_timeout_s;
        if (backstop > 0) {
            if (o->lim.header_timeout_s > backstop) backstop = o->lim.header_timeout_s;
            if (o->lim.body_timeout_s > backstop) backstop = o->lim.body_timeout_s;
            backstop += 5;
        }
        /* first, so that MHD's messages about the other options reach it */
        opts[n++] =
            (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)(void *)conn_mhd_log, s};
        /* the lobby keeps the exact limits; MHD's is a backstop */
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT,
                                            (intptr_t)o->max_connections + 64, NULL};
        opts[n++] =
            (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)backstop, NULL};
        opts[n++] =
            (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)pool_mem, NULL};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED,
                                            (intptr_t)(void *)http_on_completed, s};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION,
                                            (intptr_t)(void *)conn_on_connection, s};
        opts[n++] =
            (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)(void *)conn_on_uri, s};
        if (s->cert_pem) {
            opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, s->cert_pem};
            opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->key_pem};
        }
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
        s->d = MHD_start_daemon(flags, 0, NULL, NULL, http_on_request, s, MHD_OPTION_ARRAY, opts,
                                MHD_OPTION_END);
    }
    if (!s->d) {
        rc = cit_err_set(err, CIT_EIO, "cannot serve on %s port %d (a bad TLS certificate or key?)",
                         o->host, o->port);
        goto fail;
    }
    if ((rc = conn_lobby_start(s, err))) goto fail;
    if ((rc = peer_start(s, err))) goto fail;
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

int http_server_peer_port(const struct http_server *s)
{
    return s->peer_port;
}

struct node *http_server_node(struct http_server *s)
{
    return s->node;
}

int http_server_busy(struct http_server *s)
{
    return s->node ? node_busy(s->node) : 0;
}

void http_server_reload(struct http_server *s, const struct http_opts *o)
{
    const struct node_opts *a = &o->node, *b = &s->o.node;
    struct cit_err err;
    if (strcmp(o->host, s->o.host) || o->port != s->o.port || a->threads != b->threads ||
        a->ctx != b->ctx || a->parallel != b->parallel || a->queue != b->queue ||
        o->max_connections != s->o.max_connections || strcmp(o->tls_cert, s->o.tls_cert) ||
        strcmp(o->tls_key, s->o.tls_key) || strcmp(a->state, b->state) ||
        strcmp(a->policy, b->policy) || strcmp(a->ledger, b->ledger))
        cit_log(CIT_LOG_WARN, "reload: host, port, threads, ctx, parallel, queue, "
                              "max_connections, TLS, state, policy and ledger change only on "
                              "restart");
    /* the model list: new ones load, removed ones unload, each in the ledger */
    if (node_models_apply(s->node, a->models, a->n_models, &err))
        cit_log(CIT_LOG_WARN, "reload: not every model could load: %s", err.msg);
    pthread_mutex_lock(&s->cfg_mu);
    s->o.open = o->open;
    s->o.lim = o->lim;
    s->o.grace_s = o->grace_s;
    s->o.max_per_ip = o->max_per_ip;
    s->o.max_unauth = o->max_unauth;
    memcpy(s->o.cors_origins, o->cors_origins, sizeof(s->o.cors_origins));
    pthread_mutex_unlock(&s->cfg_mu);
    cit_log(CIT_LOG_INFO, "reload: models, limits, connection budgets, CORS origins and the open "
                          "setting applied");
}

void http_server_stop(struct http_server *s)
{
    int grace;
    if (!s) return;
    atomic_store(&s->draining, 1);
    pthread_mutex_lock(&s->cfg_mu);
    grace = s->o.grace_s;
    pthread_mutex_unlock(&s->cfg_mu);
    conn_lobby_quiesce(s); /* no new connections; the listening socket is closed */
    if (s->d) {
        uint64_t until = cit_now_ns() + (uint64_t)grace * 1000000000ull;
        /* in-flight requests finish; idle keep-alive connections do not count */
        while (http_server_busy(s) > 0 && cit_now_ns() < until) usleep(20000);
        if (http_server_busy(s) > 0)
            cit_log(CIT_LOG_WARN, "shutdown: cancelling %d requests after %d s",
                    http_server_busy(s), grace);
    }
    if (s->node) node_stop_models(s->node);
    peer_stop(s); /* its connections end; a forward in flight sees them go */
    if (s->d) MHD_stop_daemon(s->d);
    conn_lobby_stop(s); /* after MHD: its connections are gone, and with them their fds */
    if (s->listen_fd >= 0) close(s->listen_fd);
    node_close(s->node); /* after the last request: the ledger signs its final checkpoint */
    met_destroy(&s->met);
    cit_free(s->cert_pem);
    cit_free(s->key_pem);
    cit_free(s->notice_hdr);
    pthread_mutex_destroy(&s->cfg_mu);
    pthread_mutex_destroy(&s->w_mu);
    pthread_cond_destroy(&s->w_cv);
    cit_free(s);
}
