/*
 * http: the OpenAI-compatible HTTP API over a node, and its metrics.
 *
 * A server owns a node (its models, schedulers, state file, policy and
 * ledger: citadel/node.h), a libmicrohttpd daemon (one thread per
 * connection, so a request may block while its tokens are generated), the
 * lobby in front of it (one thread that accepts connections, keeps the
 * connection budgets and holds each connection until its request head is
 * in) and the metrics. Requests flow: limits and auth on the request head, body
 * collected up to the cap, JSON parsed and checked field by field, then
 * the node's gate (decision, redaction, tokens, quotas), the model's
 * scheduler, and the gate again for every piece of the answer; tokens come
 * back through a callback and go out as one JSON body or as server-sent
 * events. This module speaks HTTP and the OpenAI dialect only: what is
 * decided, recorded or redacted is the gate's. See docs/serve.md.
 */
#ifndef CITADEL_HTTP_H
#define CITADEL_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "citadel/core.h"
#include "citadel/node.h"

#define HTTP_MAX_MODELS NODE_MAX_MODELS

struct http_limits {
    size_t max_body;         /* request body bytes */
    int max_headers;         /* header lines per request */
    size_t max_header_bytes; /* the request head (line and headers) */
    int max_prompt_tokens;   /* after templating and tokenization */
    int max_tokens;          /* largest max_tokens a request may ask for */
    int request_timeout_s;   /* generation, from submit to the last token */
    int header_timeout_s;    /* to receive a request head, from accept or its request line */
    int body_timeout_s;      /* to receive a body once the head is in */
    int idle_timeout_s;      /* a keep-alive connection with nothing to do */
};

struct http_opts {
    struct node_opts node; /* the node it serves: state, policy, ledger, models */
    char host[256];
    int port;                           /* 0: any free port (tests) */
    int max_connections;                /* concurrent TCP connections */
    int max_per_ip;                     /* concurrent connections from one address (0: no limit) */
    int max_unauth;                     /* connections no valid key came on yet (0: no limit) */
    char tls_cert[1024], tls_key[1024]; /* both or neither */
    int open;                           /* 1: no API key needed (say so only on a closed network) */
    int grace_s;                        /* SIGTERM: time for in-flight requests to finish */
    char peer_listen[256];              /* HOST:PORT for peers' mutual TLS ("": none) */
    int peer_check_s;                   /* seconds between the peers' health checks */
    /* browser origins allowed to call the API (CORS), space or comma
     * separated: "https://app.example.org", or "*" for any; "" (the
     * default): none, and preflights are refused */
    char cors_origins[2048];
    struct http_limits lim;
};

void http_opts_defaults(struct http_opts *o);
/* Applies one "key = value" (config file) or "--key value" (flag) setting,
 * the node's included; `model` appends. Errors name the key and what it
 * accepts. */
int http_opts_set(struct http_opts *o, const char *key, const char *value, struct cit_err *err);
/* Checks a cors_origins value: 0, or CIT_EINVAL naming the bad entry. */
int http_cors_check(const char *list, struct cit_err *err);
/* Reads a config file into o (relative paths from its folder). */
int http_opts_load(struct http_opts *o, const char *path, struct cit_err *err);

struct http_server;

struct guard_spec;
/* What serving o needs under lockdown (guard.h): the node's part
 * (node_guard_spec, peers included), TCP bind on the client and peer
 * ports, the TLS certificate and key read-only. */
int http_guard_spec(const struct http_opts *o, const struct pol_policy *p, struct guard_spec *s,
                    struct cit_err *err);

/* Checks the address is free, opens the node (node_open: policy, state,
 * ledger, models), and starts listening. */
int http_server_start(const struct http_opts *o, struct http_server **out /* out */,
                      struct cit_err *err);
int http_server_port(const struct http_server *s);
/* The peer listener's port (peer_listen), 0 when none. */
int http_server_peer_port(const struct http_server *s);
/* The node it serves (the admin socket runs its verbs on it). */
struct node *http_server_node(struct http_server *s);
/* Applies what can change while running (open, limits, grace, the model
 * list); logs each setting that needs a restart (host, port, threads, ...). */
void http_server_reload(struct http_server *s, const struct http_opts *o);
/* Stops accepting connections, lets in-flight requests finish for up to
 * grace_s seconds, cancels the rest, and frees everything. */
void http_server_stop(struct http_server *s);

#endif
