/*
 * Server settings: defaults, and one setter shared by citadel.conf and the
 * command line (a flag --max-body is the key max_body); the node's own
 * settings go to node_opts_set.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "citadel/http.h"
#include "citadel/node.h"

void http_opts_defaults(struct http_opts *o)
{
    memset(o, 0, sizeof(*o));
    node_opts_defaults(&o->node);
    snprintf(o->host, sizeof(o->host), "127.0.0.1");
    o->port = 8080;
    o->max_connections = 256;
    /* one address, and all clients without a key, may hold only part of
     * the connections: see conn.c */
    o->max_per_ip = 32;
    o->max_unauth = 64;
    o->open = 0;
    o->grace_s = 10;
    o->peer_check_s = 30;
    o->lim.max_body = 1u << 20;
    o->lim.max_headers = 64;
    o->lim.max_header_bytes = 16384;
    o->lim.max_prompt_tokens = 8192;
    o->lim.max_tokens = 4096;
    o->lim.request_timeout_s = 600;
    o->lim.header_timeout_s = 5;
    o->lim.body_timeout_s = 30;
    o->lim.idle_timeout_s = 30;
}

static int set_str(const char *key, const char *v, char *dst, size_t cap, struct cit_err *err)
{
    if (strlen(v) >= cap)
        return cit_err_set(err, CIT_ERANGE, "%s: value longer than %zu bytes", key, cap - 1);
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

int http_opts_set(struct http_opts *o, const char *key, const char *v, struct cit_err *err)
{
    long x;
    int rc;
#define INT_KEY(name, field, lo, hi)                                                               \
    if (!strcmp(key, name)) {                                                                      \
        if ((rc = node_set_int(key, v, lo, hi, &x, err))) return rc;                               \
        field = x;                                                                                 \
        return 0;                                                                                  \
    }
    INT_KEY("port", o->port, 0, 65535)
    INT_KEY("max_connections", o->max_connections, 1, 1 << 16)
    INT_KEY("max_per_ip", o->max_per_ip, 0, 1 << 16)
    INT_KEY("max_unauthenticated", o->max_unauth, 0, 1 << 16)
    INT_KEY("grace", o->grace_s, 0, 3600)
    INT_KEY("peer_check", o->peer_check_s, 1, 86400)
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
    if (!strcmp(key, "peer_listen"))
        return set_str(key, v, o->peer_listen, sizeof(o->peer_listen), err);
    if (!strcmp(key, "tls_cert"))
        return node_opts_path(&o->node, key, v, o->tls_cert, sizeof(o->tls_cert), err);
    if (!strcmp(key, "tls_key"))
        return node_opts_path(&o->node, key, v, o->tls_key, sizeof(o->tls_key), err);
    if (!strcmp(key, "open")) return node_set_bool(key, v, &o->open, err);
    if (!strcmp(key, "cors_origins")) {
        if ((rc = http_cors_check(v, err))) return rc;
        return set_str(key, v, o->cors_origins, sizeof(o->cors_origins), err);
    }
    if ((rc = node_opts_set(&o->node, key, v, err)) != CIT_ENOENT) return rc;
    return cit_err_set(err, CIT_EINVAL, "unknown setting '%s' (see docs/serve.md for the list)",
                       key);
}

/* Each origin as a browser sends it: scheme://host[:port], no path. */
int http_cors_check(const char *list, struct cit_err *err)
{
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, " ,\t"), h;
        if (!n) {
            p++;
            continue;
        }
        if (!(n == 1 && *p == '*')) {
            size_t sch = !strncmp(p, "https://", 8) ? 8 : !strncmp(p, "http://", 7) ? 7 : 0;
            h = sch ? strspn(p + sch, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "0123456789.-[]:")
                    : 0;
            if (!sch || h == 0 || sch + h != n || p[n - 1] == ':' || n > 255)
                return cit_err_set(err, CIT_EINVAL,
                                   "cors_origins: '%.*s' is not an origin: expected "
                                   "http(s)://host[:port] with no path, or *",
                                   (int)(n > 80 ? 80 : n), p);
        }
        p += n;
    }
    return 0;
}

static int conf_cb(void *user, const char *key, const char *value, struct cit_err *err)
{
    return http_opts_set(user, key, value, err);
}

int http_opts_load(struct http_opts *o, const char *path, struct cit_err *err)
{
    return node_conf_load(path, &o->node, conf_cb, o, err);
}
