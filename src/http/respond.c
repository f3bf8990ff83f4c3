/*
 * The request object, the responders every handler answers through, and
 * authentication (API key -> tenant and scopes).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "http_int.h"

struct req *req_new(struct http_server *s, struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci;
    struct req *r = cit_calloc(1, sizeof(*r));
    if (!r) return NULL;
    r->srv = s;
    r->refs = 1;
    r->slot = -1;
    r->t0 = cit_now_ns();
    r->fd = -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci) r->fd = ci->connect_fd;
    ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci) r->cw = ci->socket_context;
    r->peer = r->cw ? r->cw->peer1 - 1 : -1;
    r->fwd_tokens = -1;
    pthread_mutex_lock(&s->cfg_mu);
    r->lim = s->o.lim;
    pthread_mutex_unlock(&s->cfg_mu);
    atomic_fetch_add(&s->inflight, 1);
    return r;
}

void req_destroy(struct req *r)
{
    /* the connection finished the call already; this frees what is left */
    node_call_free(r->call, r->responded ? r->status : 499, r->n_gen);
    if (r->body.p) explicit_bzero(r->body.p, r->body.len);
    if (r->text.p) explicit_bzero(r->text.p, r->text.len);
    cit_buf_free(&r->body);
    cit_buf_free(&r->text);
    cit_free(r->tok_end);
    cit_free(r->embd);
    cit_buf_free(&r->out);
    if (r->fwd_body) explicit_bzero(r->fwd_body, strlen(r->fwd_body));
    cit_free(r->fwd_body);
    cit_free(r->fwd_res);
    cit_free(r->peer_passport);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    cit_free(r);
}

void req_unref(struct req *r)
{
    int last;
    pthread_mutex_lock(&r->mu);
    last = --r->refs == 0;
    pthread_mutex_unlock(&r->mu);
    if (last) req_destroy(r);
}

char *http_ext_value(const char *text)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(text);
    char *out = cit_malloc(7 + 3 * n + 1), *o = out;
    if (!out) return NULL;
    memcpy(o, "UTF-8''", 7);
    o += 7;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        /* RFC 8187 attr-char: ALPHA / DIGIT / "!#$&+-.^_`|~"; the rest as %XX */
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            strchr("!#$&+-.^_`|~", *p)) {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = 0;
    return out;
}

void respond_profile_headers(struct MHD_Response *resp, const struct req *r)
{
    const struct http_server *s = r->srv;
    if (r->ep != EP_CHAT && r->ep != EP_COMPLETIONS && r->ep != EP_MODELS) return;
    if (s->profile_id) MHD_add_response_header(resp, "Citadel-Profile", s->profile_id);
    if (s->profile_id && s->notice_hdr)
        MHD_add_response_header(resp, "Citadel-Notice", s->notice_hdr);
    if (r->max_tokens_hdr[0])
        MHD_add_response_header(resp, "Citadel-Max-Tokens", r->max_tokens_hdr);
}

void respond_cors_headers(struct MHD_Response *resp, const struct req *r)
{
    if (!r->cors_origin[0]) return;
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->cors_origin);
    MHD_add_response_header(resp, "Vary", "Origin");
    MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                            "X-Citadel-Decision, X-Citadel-Receipt, Citadel-Profile, "
                            "Citadel-Notice, Citadel-Max-Tokens, Retry-After");
}

enum MHD_Result respond_preflight(struct MHD_Connection *c, struct req *r, const char *methods)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    char allow[64];
    enum MHD_Result ok;
    size_t i = 0;
    if (!resp) return MHD_NO;
    /* the route's methods, comma separated as the header wants them */
    for (const char *p = methods; *p && i + 2 < sizeof(allow); p++)
        if (*p == ' ')
            allow[i++] = ',', allow[i++] = ' ';
        else
            allow[i++] = *p;
    allow[i] = 0;
    respond_cors_headers(resp, r);
    MHD_add_response_header(resp, "Access-Control-Allow-Methods", allow);
    MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                            "Authorization, Content-Type, X-Citadel-Data-Class, "
                            "X-Citadel-Purpose, X-Stainless-Lang, X-Stainless-Package-Version, "
                            "X-Stainless-OS, X-Stainless-Arch, X-Stainless-Runtime, "
                            "X-Stainless-Runtime-Version, X-Stainless-Retry-Count, "
                            "X-Stainless-Timeout, OpenAI-Organization, OpenAI-Project");
    MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    conn_answering(r->srv, r->cw);
    ok = MHD_queue_response(c, 204, resp);
    MHD_destroy_response(resp);
    r->status = 204;
    r->responded = 1;
    return ok;
}

enum MHD_Result respond(struct MHD_Connection *c, struct req *r, int status, const char *type,
                        const char *body, size_t len, const char *hname, const char *hvalue)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ok;
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (hname) MHD_add_response_header(resp, hname, hvalue);
    if (r->decision_hdr[0]) MHD_add_response_header(resp, "X-Citadel-Decision", r->decision_hdr);
    if (r->receipt_hdr[0]) MHD_add_response_header(resp, "X-Citadel-Receipt", r->receipt_hdr);
    respond_profile_headers(resp, r);
    respond_cors_headers(resp, r);
    conn_answering(r->srv, r->cw);
    ok = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    r->responded = 1;
    return ok;
}

enum MHD_Result respond_json(struct MHD_Connection *c, struct req *r, int status, struct cit_buf *b)
{
    enum MHD_Result ok;
    if (!b->p) return respond(c, r, 500, "text/plain", "out of memory\n", 14, NULL, NULL);
    ok = respond(c, r, status, "application/json", b->p, b->len, NULL, NULL);
    cit_buf_free(b);
    return ok;
}

static const char *allowed_methods(enum http_ep ep)
{
    switch (ep) {
    case EP_CHAT:
    case EP_COMPLETIONS:
    case EP_EMBEDDINGS:
    case EP_DECIDE:
    case EP_TOKENIZE:
        return "POST";
    case EP_PEER:
        return "GET, POST";
    case EP_ADMIN:
        return "GET, POST, DELETE";
    default:
        return "GET";
    }
}

enum MHD_Result respond_error(struct MHD_Connection *c, struct req *r, int status, const char *type,
                              const char *code, const char *param, const char *msg)
{
    struct cit_buf b = {0};
    enum MHD_Result ok;
    const char *hn = NULL, *hv = NULL;
    api_error_simple(&b, type, code, param, msg);
    if (!b.p) return respond(c, r, 500, "text/plain", "out of memory\n", 14, NULL, NULL);
    if (status == 401) hn = "WWW-Authenticate", hv = "Bearer";
    if (status == 429 || status == 503) hn = "Retry-After", hv = "1";
    if (status == 405) hn = "Allow", hv = allowed_methods(r->ep);
    ok = respond(c, r, status, "application/json", b.p, b.len, hn, hv);
    cit_buf_free(&b);
    return ok;
}

enum MHD_Result respond_outcome(struct MHD_Connection *c, struct req *r,
                                const struct node_outcome *o)
{
    struct cit_buf b = {0};
    char retry[24], when[32];
    enum MHD_Result res;
    if (o->decision[0]) snprintf(r->decision_hdr, sizeof(r->decision_hdr), "%s", o->decision);
    if (r->peer >= 0 && o->recorded) peer_receipt(r, o->status, o->seq, o->leaf);
    if (o->status != 429 || !o->quota.which[0])
        return respond_error(c, r, o->status, o->type, o->code, o->param, o->msg);
    /* a quota refusal names the quota, its limit and when it resets */
    BUF_LIT(&b, "{\"error\":{\"message\":");
    cit_buf_json_str(&b, o->msg, strlen(o->msg));
    cit_buf_printf(&b,
                   ",\"type\":\"rate_limit_error\",\"param\":null,\"code\":\"%s\",\"quota\":{"
                   "\"name\":\"%s\",\"limit\":%lld,\"used\":%lld",
                   o->quota.which, o->quota.which, (long long)o->quota.limit,
                   (long long)o->quota.used);
    if (o->quota.reset) {
        cit_utc_seconds(o->quota.reset, when);
        cit_buf_printf(&b, ",\"resets_at\":\"%s\",\"resets_in_s\":%lld", when,
                       (long long)(o->quota.reset - o->quota.now));
    }
    BUF_LIT(&b, "}}}\n");
    if (!b.p) return respond(c, r, 500, "text/plain", "out of memory\n", 14, NULL, NULL);
    snprintf(retry, sizeof(retry), "%d", o->retry_after_s > 0 ? o->retry_after_s : 1);
    res = respond(c, r, 429, "application/json", b.p, b.len, "Retry-After", retry);
    cit_buf_free(&b);
    return res;
}

int authorize(struct MHD_Connection *c, struct req *r, const char *scope_ep, enum MHD_Result *res)
{
    struct http_server *s = r->srv;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    int open;
    pthread_mutex_lock(&s->cfg_mu);
    open = s->o.open;
    pthread_mutex_unlock(&s->cfg_mu);
    if (open && !(scope_ep && !strcmp(scope_ep, "admin"))) {
        snprintf(r->key.tenant, sizeof(r->key.tenant), "open");
        snprintf(r->key.scopes, sizeof(r->key.scopes), "endpoint:* model:*");
        conn_authed(s, r->cw);
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
    if (node_key_check(s->node, auth, strlen(auth), &r->key)) {
        *res = respond_error(c, r, 401, "invalid_request_error", "invalid_api_key", NULL,
                             "Incorrect or revoked API key.");
        return -1;
    }
    conn_authed(s, r->cw); /* a valid key, even if short of this scope */
    if (scope_ep && !node_scope_allows(r->key.scopes, scope_ep, NULL)) {
        char msg[200];
        snprintf(msg, sizeof(msg), "This API key may not call the '%s' endpoint.", scope_ep);
        *res = respond_error(c, r, 403, "permission_error", "insufficient_scope", NULL, msg);
        return -1;
    }
    return 0;
}
