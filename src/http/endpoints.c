/*
 * The small endpoints: models, health, readiness, metrics, usage, the
 * decision dry run, and the admin routes that load and unload models.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "citadel/guard.h"
#include "http_int.h"

static void model_json(struct cit_buf *b, const struct node_model_info *mi)
{
    BUF_LIT(b, "{\"id\":");
    cit_buf_json_str(b, mi->id, strlen(mi->id));
    cit_buf_printf(b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"citadel\"}",
                   (long long)mi->created);
}

static enum MHD_Result get_models(struct MHD_Connection *c, struct req *r)
{
    struct node_model_info *v = cit_calloc(NODE_MAX_MODELS, sizeof(*v));
    struct cit_buf b = {0};
    enum MHD_Result res;
    int n, k = 0;
    if (!v) return respond(c, r, 500, "text/plain", "out of memory\n", 14, NULL, NULL);
    if (r->path_arg) {
        if (node_model_info(r->srv->node, r->path_arg, v) ||
            !node_scope_allows(r->key.scopes, "models", r->path_arg)) {
            char msg[300];
            snprintf(msg, sizeof(msg), "The model '%.200s' does not exist.", r->path_arg);
            cit_free(v);
            return respond_error(c, r, 404, "invalid_request_error", "model_not_found", "model",
                                 msg);
        }
        model_json(&b, v);
        BUF_LIT(&b, "\n");
        cit_free(v);
        return respond_json(c, r, 200, &b);
    }
    n = node_models(r->srv->node, v, NODE_MAX_MODELS);
    BUF_LIT(&b, "{\"object\":\"list\",\"data\":[");
    for (int i = 0; i < n; i++) {
        if (!node_scope_allows(r->key.scopes, "models", v[i].id)) continue;
        if (k++) BUF_LIT(&b, ",");
        model_json(&b, &v[i]);
    }
    BUF_LIT(&b, "]}\n");
    cit_free(v);
    res = respond_json(c, r, 200, &b);
    return res;
}

/* "lockdown":{...}: what guard enforces in this process (docs/guard.md) */
static void lockdown_json(struct cit_buf *b)
{
    struct guard_status g;
    guard_get_status(&g);
    cit_buf_printf(b,
                   "\"lockdown\":{\"active\":%s,\"mode\":\"%s\",\"landlock_abi\":%d,"
                   "\"files\":%s,\"tcp_ports\":%s,\"scope\":%s,\"seccomp\":%s,"
                   "\"denied_calls\":%llu,\"statement_sha256\":\"%s\",\"missing\":",
                   g.fs && g.seccomp ? "true" : "false", g.best_effort ? "best-effort" : "required",
                   g.abi, g.fs ? "true" : "false", g.net ? "true" : "false",
                   g.scope ? "true" : "false", g.seccomp ? "true" : "false",
                   (unsigned long long)g.denied, g.hash);
    cit_buf_json_str(b, g.missing, strlen(g.missing));
    BUF_LIT(b, "}");
}

/* The same for Prometheus. */
static void lockdown_metrics(struct cit_buf *b)
{
    struct guard_status g;
    guard_get_status(&g);
    cit_buf_printf(b,
                   "# HELP citadel_lockdown_active 1 when Landlock and seccomp hold this "
                   "process (docs/guard.md).\n"
                   "# TYPE citadel_lockdown_active gauge\n"
                   "citadel_lockdown_active %d\n"
                   "# HELP citadel_lockdown_info What the kernel enforces.\n"
                   "# TYPE citadel_lockdown_info gauge\n"
                   "citadel_lockdown_info{mode=\"%s\",landlock_abi=\"%d\",files=\"%d\","
                   "tcp_ports=\"%d\",seccomp=\"%d\",complete=\"%d\",statement=\"%s\"} 1\n"
                   "# HELP citadel_lockdown_denied_calls_total System calls the seccomp filter "
                   "refused.\n"
                   "# TYPE citadel_lockdown_denied_calls_total counter\n"
                   "citadel_lockdown_denied_calls_total %llu\n",
                   g.fs && g.seccomp, g.best_effort ? "best-effort" : "required", g.abi, g.fs,
                   g.net, g.seccomp, !g.missing[0], g.hash, (unsigned long long)g.denied);
}

static enum MHD_Result get_metrics(struct MHD_Connection *c, struct req *r)
{
    struct http_server *s = r->srv;
    struct node_model_info *v = cit_calloc(NODE_MAX_MODELS, sizeof(*v));
    const char *ids[NODE_MAX_MODELS] = {0};
    struct met_gauges g[NODE_MAX_MODELS] = {{0}};
    struct cit_buf b = {0};
    enum MHD_Result res;
    int n, top = 0;
    if (!v) return respond(c, r, 500, "text/plain", "out of memory\n", 14, NULL, NULL);
    /* by slot, so that a model's counters stay with it */
    n = node_models(s->node, v, NODE_MAX_MODELS);
    for (int i = 0; i < n; i++) {
        int k = v[i].slot;
        ids[k] = v[i].id;
        g[k] = (struct met_gauges){v[i].gen, v[i].st.queued, v[i].st.active, v[i].st.kv_used,
                                   v[i].st.kv_capacity};
        if (k + 1 > top) top = k + 1;
    }
    if (met_render(&s->met, &b, ids, g, top, atomic_load(&s->inflight)) ||
        (peer_metrics(s, &b), lockdown_metrics(&b), !b.p)) {
        cit_free(v);
        cit_buf_free(&b);
        return respond(c, r, 500, "text/plain", "out of memory\n", 14, NULL, NULL);
    }
    res = respond(c, r, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len, NULL, NULL);
    cit_buf_free(&b);
    cit_free(v);
    return res;
}

static enum MHD_Result get_usage(struct MHD_Connection *c, struct req *r)
{
    struct node_usage u;
    struct cit_buf b = {0};
    char m_at[32], d_at[32];
    if (node_usage(r->srv->node, r->key.tenant, &u)) {
        char msg[200];
        snprintf(msg, sizeof(msg), "Tenant '%s' is not in the node's policy.", r->key.tenant);
        return respond_error(c, r, 404, "invalid_request_error", "unknown_tenant", NULL, msg);
    }
    cit_utc_seconds(u.rpm_reset, m_at);
    cit_utc_seconds(u.tpd_reset, d_at);
    BUF_LIT(&b, "{\"object\":\"usage\",\"tenant\":");
    cit_buf_json_str(&b, r->key.tenant, strlen(r->key.tenant));
    cit_buf_printf(&b,
                   ",\"quotas\":{\"requests_per_minute\":{\"limit\":%lld,\"used\":%lld,"
                   "\"resets_at\":\"%s\",\"resets_in_s\":%lld},"
                   "\"tokens_per_day\":{\"limit\":%lld,\"used\":%lld,\"reserved\":%lld,"
                   "\"resets_at\":\"%s\",\"resets_in_s\":%lld},"
                   "\"concurrent\":{\"limit\":%lld,\"used\":%lld}}}\n",
                   (long long)u.rpm_limit, (long long)u.rpm_used, m_at,
                   (long long)(u.rpm_reset - u.now), (long long)u.tpd_limit, (long long)u.tpd_used,
                   (long long)u.tpd_reserved, d_at, (long long)(u.tpd_reset - u.now),
                   (long long)u.conc_limit, (long long)u.conc_used);
    return respond_json(c, r, 200, &b);
}

enum MHD_Result handle_get(struct MHD_Connection *c, struct req *r)
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
        cit_buf_printf(&b, "{\"status\":\"ready\",\"models\":%d,", node_model_count(s->node));
        lockdown_json(&b);
        BUF_LIT(&b, ",\"profile\":");
        if (!node_profile_id(s->node)) {
            BUF_LIT(&b, "null");
        } else {
            const char *id = node_profile_id(s->node), *notice = node_profile_notice(s->node);
            BUF_LIT(&b, "{\"id\":");
            cit_buf_json_str(&b, id, strlen(id));
            BUF_LIT(&b, ",\"notice\":");
            if (notice)
                cit_buf_json_str(&b, notice, strlen(notice));
            else
                BUF_LIT(&b, "null");
            BUF_LIT(&b, "}");
        }
        BUF_LIT(&b, "}\n");
        return respond_json(c, r, 200, &b);
    case EP_METRICS:
        if (authorize(c, r, "metrics", &res)) return res;
        return get_metrics(c, r);
    case EP_USAGE:
        if (authorize(c, r, NULL, &res)) return res;
        return get_usage(c, r);
    case EP_MODELS:
        if (authorize(c, r, "models", &res)) return res;
        return get_models(c, r);
    default:
        return respond_error(c, r, 404, "invalid_request_error", "not_found", NULL,
                             "Unknown path.");
    }
}

/* ---- POST /v1/policy/decide ----
 * The decision a request would get, without running it. The body is the
 * request's own (a chat body with "messages", or a completion body with
 * "prompt"; "input" stands for "prompt"), optionally with "declared"; the
 * caller's tenant is its key's. The request goes through the gate's dry
 * run with the parser the real endpoints use. */

static int decide_body(struct req *r, struct api_req *a, struct api_err *e)
{
    json_error_t je;
    json_t *root = json_loadb(r->body.p ? r->body.p : "", r->body.len, JSON_REJECT_DUPLICATES, &je);
    json_t *in;
    char *text;
    int chat, rc;
    memset(a, 0, sizeof(*a));
    if (!root || !json_is_object(root)) {
        json_decref(root);
        e->status = 400, e->type = "invalid_request_error", e->code = NULL;
        snprintf(e->param, sizeof(e->param), "%s", "");
        snprintf(e->msg, sizeof(e->msg), "The body must be a JSON object.");
        return -1;
    }
    chat = json_object_get(root, "messages") != NULL;
    if (!chat && !json_object_get(root, "prompt")) {
        if (!(in = json_object_get(root, "input"))) {
            int has_model = json_is_string(json_object_get(root, "model"));
            json_decref(root);
            e->status = 400, e->type = "invalid_request_error", e->code = NULL;
            snprintf(e->param, sizeof(e->param), "%s", has_model ? "input" : "model");
            snprintf(e->msg, sizeof(e->msg), "%s",
                     strcmp(e->param, "model")
                         ? "Give the text as 'messages', 'prompt' or 'input'."
                         : "'model' is required: the model the request would use.");
            return -1;
        }
        json_object_set(root, "prompt", in);
    }
    if ((in = json_object_get(root, "declared")) && !json_is_string(in)) {
        json_decref(root);
        e->status = 400, e->type = "invalid_request_error", e->code = NULL;
        snprintf(e->param, sizeof(e->param), "declared");
        snprintf(e->msg, sizeof(e->msg), "'declared' is a comma-separated list of data classes.");
        return -1;
    }
    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!text) {
        e->status = 500, e->type = "server_error", e->code = NULL;
        e->param[0] = 0;
        snprintf(e->msg, sizeof(e->msg), "out of memory");
        return -1;
    }
    rc = api_parse(text, strlen(text), chat, a, e);
    explicit_bzero(text, strlen(text));
    free(text);
    return rc;
}

enum MHD_Result handle_decide(struct MHD_Connection *c, struct req *r)
{
    struct http_server *s = r->srv;
    struct api_req a;
    struct api_err e = {0};
    struct node_req q;
    struct node_verdict v;
    struct cit_buf b = {0};
    json_t *d;
    if (decide_body(r, &a, &e)) {
        api_req_free(&a);
        return respond_error(c, r, e.status, e.type, e.code, e.param[0] ? e.param : NULL, e.msg);
    }
    api_node_req(&a, r, &q);
    q.endpoint = "policy"; /* the route checked it; the gate checks the model */
    q.declared = json_is_string(d = json_object_get(a.root, "declared"))
                     ? json_string_value(d)
                     : MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Citadel-Data-Class");
    if (node_decide(s->node, &q, &v)) {
        api_req_free(&a);
        return respond_error(c, r, v.out.status, v.out.type, v.out.code, v.out.param, v.out.msg);
    }
    cit_buf_printf(&b, "{\"object\":\"policy.decision\",\"action\":\"%s\",\"rule\":", v.action);
    cit_buf_json_str(&b, v.rule, strlen(v.rule));
    BUF_LIT(&b, ",\"peer\":");
    if (v.peer)
        cit_buf_json_str(&b, v.peer, strlen(v.peer));
    else
        BUF_LIT(&b, "null");
    BUF_LIT(&b, ",\"reason\":");
    cit_buf_json_str(&b, v.reason, strlen(v.reason));
    BUF_LIT(&b, ",\"classes\":[");
    for (char *p = v.classes, *end; *p; p = *end ? end + 1 : end) {
        end = p + strcspn(p, ",");
        if (p != v.classes) BUF_LIT(&b, ",");
        cit_buf_json_str(&b, p, (size_t)(end - p));
    }
    BUF_LIT(&b, "],\"tenant\":");
    cit_buf_json_str(&b, q.tenant, strlen(q.tenant));
    BUF_LIT(&b, ",\"model\":");
    cit_buf_json_str(&b, q.model, strlen(q.model));
    cit_buf_printf(&b, ",\"policy\":\"%s\",\"findings\":[", v.policy_hash);
    for (size_t i = 0; i < v.n_findings; i++) {
        const struct node_finding *f = &v.findings[i];
        cit_buf_printf(&b, "%s{\"detector\":\"%s\",\"class\":", i ? "," : "", f->detector);
        if (f->cls)
            cit_buf_json_str(&b, f->cls, strlen(f->cls));
        else
            BUF_LIT(&b, "null");
        cit_buf_printf(&b, ",\"start\":%zu,\"end\":%zu,\"confidence\":%.2f}", f->start, f->end,
                       (double)f->confidence);
    }
    /* what the request itself would get */
    cit_buf_printf(&b, "],\"request\":{\"status\":%d,\"decision\":", v.out.status);
    cit_buf_json_str(&b, v.out.decision, strlen(v.out.decision));
    if (v.out.status != 200) {
        BUF_LIT(&b, ",\"error\":");
        api_error_simple(&b, v.out.type, v.out.code, v.out.param, v.out.msg);
        while (b.len && b.p[b.len - 1] == '\n') b.len--;
    }
    BUF_LIT(&b, "}}\n");
    node_verdict_free(&v);
    api_req_free(&a);
    return respond_json(c, r, 200, &b);
}

/* ---- /v1/admin/models ----
 * GET lists the loaded models with their settings, POST {"id", "path"}
 * loads an admitted model, DELETE /v1/admin/models/{id} unloads one (its
 * requests end with an error). Needs a key with endpoint:admin, which no
 * wildcard grants. Every change is a ledger entry. */

enum MHD_Result handle_admin(struct MHD_Connection *c, struct req *r)
{
    struct http_server *s = r->srv;
    struct cit_buf b = {0};
    struct cit_err err;
    char msg[700];
    if (!strcmp(r->method, "GET")) {
        struct node_model_info *v = cit_calloc(NODE_MAX_MODELS, sizeof(*v));
        int n;
        if (!v) return respond(c, r, 500, "text/plain", "out of memory\n", 14, NULL, NULL);
        n = node_models(s->node, v, NODE_MAX_MODELS);
        BUF_LIT(&b, "{\"object\":\"list\",\"data\":[");
        for (int i = 0; i < n; i++) {
            if (i) BUF_LIT(&b, ",");
            BUF_LIT(&b, "{\"id\":");
            cit_buf_json_str(&b, v[i].id, strlen(v[i].id));
            BUF_LIT(&b, ",\"path\":");
            cit_buf_json_str(&b, v[i].path, strlen(v[i].path));
            cit_buf_printf(&b,
                           ",\"created\":%lld,\"ctx\":%d,\"parallel\":%d,\"threads\":%d,"
                           "\"template\":\"%s\",\"source\":\"%s\",\"queued\":%d,"
                           "\"active\":%d}",
                           (long long)v[i].created, v[i].n_ctx, v[i].parallel, v[i].threads,
                           v[i].tmpl, v[i].configured ? "config" : "admin", v[i].st.queued,
                           v[i].st.active);
        }
        BUF_LIT(&b, "]}\n");
        cit_free(v);
        return respond_json(c, r, 200, &b);
    }
    if (!strcmp(r->method, "DELETE")) {
        char why[200];
        if (!r->path_arg)
            return respond_error(c, r, 400, "invalid_request_error", NULL, "id",
                                 "DELETE /v1/admin/models/{id}: name the model to unload.");
        snprintf(why, sizeof(why), "unloaded through the admin API by key %s",
                 r->key.id[0] ? r->key.id : "-");
        if (node_model_unload(s->node, r->path_arg, why, &err))
            return respond_error(c, r, 404, "invalid_request_error", "model_not_found", "model",
                                 err.msg);
        BUF_LIT(&b, "{\"id\":");
        cit_buf_json_str(&b, r->path_arg, strlen(r->path_arg));
        BUF_LIT(&b, ",\"object\":\"model\",\"deleted\":true}\n");
        return respond_json(c, r, 200, &b);
    }
    {
        json_error_t je;
        json_t *root =
            json_loadb(r->body.p ? r->body.p : "", r->body.len, JSON_REJECT_DUPLICATES, &je);
        json_t *id = json_object_get(root, "id"), *path = json_object_get(root, "path");
        struct node_model_spec spec;
        struct node_opts none;
        int rc;
        if (!json_is_string(path) || json_string_value(path)[0] != '/') {
            json_decref(root);
            return respond_error(c, r, 400, "invalid_request_error", NULL, "path",
                                 "POST /v1/admin/models takes {\"id\": ID, \"path\": "
                                 "\"/path/to/model.gguf\"} (an absolute path on the node).");
        }
        snprintf(msg, sizeof(msg), "%s%s%s", json_is_string(id) ? json_string_value(id) : "",
                 json_is_string(id) ? "=" : "", json_string_value(path));
        json_decref(root);
        node_opts_defaults(&none);
        watch_deadline(s, r->cw, 0); /* hashing a model may take minutes: not a slow client */
        if ((rc = node_model_spec_parse(&none, msg, &spec, &err)) ||
            (rc = node_model_load(s->node, spec.id, spec.path, &err)))
            return respond_error(c, r, rc == CIT_ENOMEM ? 500 : 400,
                                 rc == CIT_ENOMEM ? "server_error" : "invalid_request_error",
                                 "model_refused", "path", err.msg);
        BUF_LIT(&b, "{\"id\":");
        cit_buf_json_str(&b, spec.id, strlen(spec.id));
        BUF_LIT(&b, ",\"object\":\"model\",\"loaded\":true}\n");
        return respond_json(c, r, 201, &b);
    }
}

/* ---- POST /v1/tokenize, /v1/detokenize ----
 * llama-server's shapes, with the model named: {"model", "content",
 * "add_special", "parse_special", "with_pieces"} -> {"tokens": [ids]} (or
 * [{"id", "piece"}], a piece that is not whole UTF-8 as its byte values);
 * {"model", "tokens"} -> {"content"}. Behind the "tokenize" scope and the
 * key's model scope; nothing is generated, decided or recorded. */

static json_t *piece_json(const char *p, size_t n)
{
    json_t *s = json_stringn(p, n), *a;
    if (s) return s; /* jansson takes only valid UTF-8 */
    if (!(a = json_array())) return NULL;
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer((unsigned char)p[i]));
    return a;
}

enum MHD_Result handle_tokenize(struct MHD_Connection *c, struct req *r)
{
    struct http_server *s = r->srv;
    int detok = r->tokenize_detok;
    json_error_t je;
    json_t *root = json_loadb(r->body.p ? r->body.p : "", r->body.len, JSON_REJECT_DUPLICATES, &je);
    json_t *model = json_object_get(root, "model"), *out = NULL, *v;
    const char *id;
    char msg[300];
    enum MHD_Result res;
    int rc = 0;
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return respond_error(c, r, 400, "invalid_request_error", NULL, NULL,
                             "The body must be a JSON object.");
    }
    if (!json_is_string(model) || !json_string_length(model)) {
        json_decref(root);
        return respond_error(c, r, 400, "invalid_request_error", NULL, "model",
                             "'model' is required: a non-empty string");
    }
    id = json_string_value(model);
    if (!node_scope_allows(r->key.scopes, "tokenize", id)) {
        json_decref(root);
        return respond_error(c, r, 403, "permission_error", "insufficient_scope", "model",
                             "This API key may not use this model.");
    }
    if (detok) {
        json_t *toks = json_object_get(root, "tokens"), *t;
        int32_t *ids;
        size_t i;
        struct cit_buf text = {0};
        if (!json_is_array(toks) || json_array_size(toks) > (1u << 20)) {
            json_decref(root);
            return respond_error(c, r, 400, "invalid_request_error", NULL, "tokens",
                                 "'tokens' must be an array of token ids");
        }
        ids = cit_calloc(json_array_size(toks) + 1, sizeof(*ids));
        if (!ids) rc = CIT_ENOMEM;
        json_array_foreach(toks, i, t)
        {
            if (rc) break;
            if (!json_is_integer(t) || json_integer_value(t) < 0 ||
                json_integer_value(t) > INT32_MAX) {
                cit_free(ids);
                json_decref(root);
                snprintf(msg, sizeof(msg), "tokens[%zu] must be a non-negative integer", i);
                return respond_error(c, r, 400, "invalid_request_error", NULL, "tokens", msg);
            }
            ids[i] = (int32_t)json_integer_value(t);
        }
        if (!rc)
            rc = node_token_pieces(s->node, id, ids, (int)json_array_size(toks), 0, &text, NULL);
        cit_free(ids);
        if (!rc) {
            json_t *str = json_stringn(text.p ? text.p : "", text.len);
            /* a cut in the middle of a character: its bytes as U+FFFD */
            if (!str) {
                struct cit_buf fixed = {0};
                cit_buf_json_str(&fixed, text.p, text.len); /* replaces invalid sequences */
                str = fixed.p ? json_loadb(fixed.p, fixed.len, JSON_DECODE_ANY, &je) : NULL;
                cit_buf_free(&fixed);
            }
            out = str ? json_pack("{s:o}", "content", str) : NULL;
            if (!out) rc = CIT_ENOMEM;
        }
        cit_buf_free(&text);
    } else {
        json_t *content = json_object_get(root, "content"), *arr;
        int add_special = json_is_true(json_object_get(root, "add_special"));
        int parse_special = json_is_true(json_object_get(root, "parse_special"));
        int pieces = json_is_true(json_object_get(root, "with_pieces"));
        int32_t *ids = NULL;
        int n = 0;
        size_t *ends = NULL;
        struct cit_buf text = {0};
        if (!json_is_string(content)) {
            json_decref(root);
            return respond_error(c, r, 400, "invalid_request_error", NULL, "content",
                                 "'content' is required: the text to tokenize");
        }
        rc = node_tokenize(s->node, id, json_string_value(content), json_string_length(content),
                           add_special, parse_special, &ids, &n);
        if (!rc && pieces && !(ends = cit_calloc((size_t)n + 1, sizeof(*ends)))) rc = CIT_ENOMEM;
        if (!rc && pieces) rc = node_token_pieces(s->node, id, ids, n, 1, &text, ends);
        arr = rc ? NULL : json_array();
        for (int i = 0; arr && i < n; i++) {
            if (!pieces) {
                json_array_append_new(arr, json_integer(ids[i]));
                continue;
            }
            v = piece_json(text.p + (i ? ends[i - 1] : 0), ends[i] - (i ? ends[i - 1] : 0));
            json_array_append_new(arr, json_pack("{s:i,s:o*}", "id", ids[i], "piece", v));
        }
        if (!rc) out = arr ? json_pack("{s:o}", "tokens", arr) : NULL;
        if (!rc && !out) rc = CIT_ENOMEM;
        cit_free(ids);
        cit_free(ends);
        cit_buf_free(&text);
    }
    if (rc == CIT_ENOENT) {
        snprintf(msg, sizeof(msg), "The model '%.200s' does not exist or is not loaded.", id);
        json_decref(root); /* id was in it */
        json_decref(out);
        return respond_error(c, r, 404, "invalid_request_error", "model_not_found", "model", msg);
    }
    json_decref(root);
    if (rc == CIT_ERANGE) {
        json_decref(out);
        return respond_error(c, r, 400, "invalid_request_error", NULL, "tokens",
                             "A token id is outside the model's vocabulary.");
    }
    if (rc) {
        json_decref(out);
        return respond_error(c, r, 500, "server_error", NULL, NULL, cit_strerror(rc));
    }
    {
        char *txt = json_dumps(out, JSON_COMPACT);
        struct cit_buf b = {0};
        json_decref(out);
        if (txt) cit_buf_add(&b, txt, strlen(txt)), BUF_LIT(&b, "\n");
        free(txt);
        res = respond_json(c, r, 200, &b);
    }
    return res;
}
