/*
 * Server settings: defaults, and one setter shared by citadel.conf and the
 * command line (a flag --max-body is the key max_body).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "citadel/http.h"

void http_opts_defaults(struct http_opts *o)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->host, sizeof(o->host), "127.0.0.1");
    o->port = 8080;
    o->threads = cit_cpu_count();
    o->ctx = 0;
    o->parallel = 8;
    o->queue = 64;
    o->max_connections = 256;
    snprintf(o->state, sizeof(o->state), "citadel.db");
    o->open = 0;
    o->grace_s = 10;
    snprintf(o->ledger, sizeof(o->ledger), "ledger");
    o->ledger_retention_days = 0;
    o->checkpoint_s = 60;
    o->lim.max_body = 1u << 20;
    o->lim.max_headers = 64;
    o->lim.max_header_bytes = 16384;
    o->lim.max_prompt_tokens = 8192;
    o->lim.max_tokens = 4096;
    o->lim.request_timeout_s = 600;
    o->lim.header_timeout_s = 10;
    o->lim.body_timeout_s = 30;
    o->lim.idle_timeout_s = 30;
}

static int set_int(const char *key, const char *v, long lo, long hi, long *out, struct cit_err *err)
{
    char *end;
    long x;
    errno = 0;
    x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return cit_err_set(err, CIT_EINVAL, "%s: '%s' is not an integer from %ld to %ld", key, v,
                           lo, hi);
    *out = x;
    return 0;
}

static int set_str(const char *key, const char *v, char *dst, size_t cap, struct cit_err *err)
{
    if (strlen(v) >= cap)
        return cit_err_set(err, CIT_ERANGE, "%s: value longer than %zu bytes", key, cap - 1);
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

/* "ID=PATH" or "PATH" (the id is the file name without .gguf). */
static int add_model(struct http_opts *o, const char *v, struct cit_err *err)
{
    struct http_model_spec *m;
    const char *eq = strchr(v, '='), *path = eq ? eq + 1 : v, *base;
    size_t idlen;
    if (o->n_models == HTTP_MAX_MODELS)
        return cit_err_set(err, CIT_ERANGE, "model: at most %d models", HTTP_MAX_MODELS);
    m = &o->models[o->n_models];
    if (!*path) return cit_err_set(err, CIT_EINVAL, "model: empty path");
    if (strlen(path) >= sizeof(m->path))
        return cit_err_set(err, CIT_ERANGE, "model: path too long");
    if (eq) {
        base = v;
        idlen = (size_t)(eq - v);
    } else {
        base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        idlen = strlen(base);
        if (idlen > 5 && !strcmp(base + idlen - 5, ".gguf")) idlen -= 5;
    }
    if (idlen == 0 || idlen >= sizeof(m->id))
        return cit_err_set(err, CIT_EINVAL, "model: the id must be 1 to %zu characters",
                           sizeof(m->id) - 1);
    for (size_t i = 0; i < idlen; i++) {
        char c = base[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return cit_err_set(err, CIT_EINVAL,
                               "model: id '%.*s' may use letters, digits, '-', '_', '.' and ':' "
                               "only (give ID=PATH to choose one)",
                               (int)idlen, base);
    }
    memcpy(m->id, base, idlen);
    m->id[idlen] = 0;
    for (int i = 0; i < o->n_models; i++)
        if (!strcmp(o->models[i].id, m->id))
            return cit_err_set(err, CIT_EINVAL, "model: id '%s' given twice", m->id);
    memcpy(m->path, path, strlen(path) + 1);
    o->n_models++;
    return 0;
}

int http_opts_set(struct http_opts *o, const char *key, const char *v, struct cit_err *err)
{
    long x;
    int rc;
#define INT_KEY(name, field, lo, hi)                                                               \
    if (!strcmp(key, name)) {                                                                      \
        if ((rc = set_int(key, v, lo, hi, &x, err))) return rc;                                    \
        field = x;                                                                                 \
        return 0;                                                                                  \
    }
    INT_KEY("port", o->port, 0, 65535)
    INT_KEY("threads", o->threads, 1, 1024)
    INT_KEY("ctx", o->ctx, 0, 1 << 20)
    INT_KEY("parallel", o->parallel, 1, 256)
    INT_KEY("queue", o->queue, 0, 1 << 16)
    INT_KEY("max_connections", o->max_connections, 1, 1 << 16)
    INT_KEY("max_per_ip", o->max_per_ip, 0, 1 << 16)
    INT_KEY("grace", o->grace_s, 0, 3600)
    INT_KEY("checkpoint_interval", o->checkpoint_s, 1, 86400)
    INT_KEY("max_body", o->lim.max_body, 1024, 1l << 30)
    INT_KEY("max_headers", o->lim.max_headers, 4, 1024)
    INT_KEY("max_header_bytes", o->lim.max_header_bytes, 1024, 1 << 20)
    INT_KEY("max_prompt_tokens", o->lim.max_prompt_tokens, 1, 1 << 20)
    INT_KEY("max_tokens", o->lim.max_tokens, 1, 1 << 20)
    INT_KEY("request_timeout", o->lim.request_timeout_s, 0, 86400)
    INT_KEY("header_timeout", o->lim.header_timeout_s, 0, 3600)
    INT_KEY("body_timeout", o->lim.body_timeout_s, 0, 3600)
    INT_KEY("idle_timeout", o->lim.idle_timeout_s, 0, 3600)
#undef INT_KEY
    if (!strcmp(key, "host")) return set_str(key, v, o->host, sizeof(o->host), err);
    if (!strcmp(key, "tls_cert")) return set_str(key, v, o->tls_cert, sizeof(o->tls_cert), err);
    if (!strcmp(key, "tls_key")) return set_str(key, v, o->tls_key, sizeof(o->tls_key), err);
    if (!strcmp(key, "state")) return set_str(key, v, o->state, sizeof(o->state), err);
    if (!strcmp(key, "model")) return add_model(o, v, err);
    if (!strcmp(key, "policy")) return set_str(key, v, o->policy, sizeof(o->policy), err);
    if (!strcmp(key, "ledger")) return set_str(key, v, o->ledger, sizeof(o->ledger), err);
    if (!strcmp(key, "ledger_retention")) {
        /* days; 0 keeps everything, anything else at least six months */
        if ((rc = set_int(key, v, 0, 36500, &x, err))) return rc;
        if (x && x < 183)
            return cit_err_set(err, CIT_EINVAL,
                               "ledger_retention: %ld days is below the minimum of 183 (six "
                               "months, the EU AI Act's floor for logs); 0 keeps everything",
                               x);
        o->ledger_retention_days = (int)x;
        return 0;
    }
    int *flag = !strcmp(key, "open")                  ? &o->open
                : !strcmp(key, "unvetted")            ? &o->unvetted
                : !strcmp(key, "trust_stored_digest") ? &o->trust_stored_digest
                                                      : NULL;
    if (flag) {
        if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1"))
            *flag = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0"))
            *flag = 0;
        else
            return cit_err_set(err, CIT_EINVAL, "%s: '%s' is not true or false", key, v);
        return 0;
    }
    return cit_err_set(err, CIT_EINVAL, "unknown setting '%s' (see docs/serve.md for the list)",
                       key);
}
