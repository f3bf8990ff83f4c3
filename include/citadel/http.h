/*
 * http: the OpenAI-compatible HTTP API, API keys, metrics.
 *
 * A server owns its models (each with its own thread pool and scheduler),
 * a libmicrohttpd daemon (one thread per connection, so a request may block
 * while its tokens are generated), the key store and the metrics. Requests
 * flow: limits and auth on the request head, body collected up to the cap,
 * JSON parsed and checked field by field, prompt rendered and tokenized on
 * the connection's thread, then handed to the model's scheduler; tokens come
 * back through a callback and go out as one JSON body or as server-sent
 * events. See docs/serve.md.
 */
#ifndef CITADEL_HTTP_H
#define CITADEL_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "citadel/core.h"

#define HTTP_MAX_MODELS 16

struct http_limits {
    size_t max_body;         /* request body bytes */
    int max_headers;         /* header lines per request */
    size_t max_header_bytes; /* the request head (line and headers) */
    int max_prompt_tokens;   /* after templating and tokenization */
    int max_tokens;          /* largest max_tokens a request may ask for */
    int request_timeout_s;   /* generation, from submit to the last token */
    int header_timeout_s;    /* to receive a request head */
    int body_timeout_s;      /* to receive a body once the head is in */
    int idle_timeout_s;      /* a keep-alive connection with nothing to do */
};

struct http_model_spec {
    char id[128]; /* name in the API ("model") */
    char path[1024];
};

struct http_opts {
    char host[256];
    int port; /* 0: any free port (tests) */
    struct http_model_spec models[HTTP_MAX_MODELS];
    int n_models;
    int threads;                        /* compute threads per model */
    int ctx;                            /* context per sequence; 0: min(2048, the model's) */
    int parallel;                       /* sequences decoded together per model */
    int queue;                          /* waiting requests per model before 429 */
    int max_connections;                /* concurrent TCP connections */
    int max_per_ip;                     /* concurrent connections from one address (0: no limit) */
    char tls_cert[1024], tls_key[1024]; /* both or neither */
    char state[1024];                   /* SQLite state file (API keys) */
    int open;                           /* 1: no API key needed (say so only on a closed network) */
    int grace_s;                        /* SIGTERM: time for in-flight requests to finish */
    char policy[1024];                  /* the jurisdiction policy (required to generate) */
    char ledger[1024];                  /* the audit ledger's directory */
    int ledger_retention_days;          /* 0: keep everything; else >= 183 */
    int checkpoint_s;                   /* signed checkpoint period */
    int unvetted;            /* load models that were never admitted, if the policy allows it */
    int trust_stored_digest; /* skip hashing admitted models on read-only media */
    struct http_limits lim;
};

void http_opts_defaults(struct http_opts *o);
/* Applies one "key = value" (config file) or "--key value" (flag) setting;
 * `model` appends. Errors name the key and what it accepts. */
int http_opts_set(struct http_opts *o, const char *key, const char *value, struct cit_err *err);

struct http_server;

/* Loads the models, opens the key store, and starts listening. */
int http_server_start(const struct http_opts *o, struct http_server **out /* out */,
                      struct cit_err *err);
int http_server_port(const struct http_server *s);
/* Applies what can change while running (open, limits, grace); logs each
 * setting that needs a restart (models, host, port, threads, ...). */
void http_server_reload(struct http_server *s, const struct http_opts *o);
/* Stops accepting connections, lets in-flight requests finish for up to
 * grace_s seconds, cancels the rest, and frees everything. */
void http_server_stop(struct http_server *s);
/* Requests in flight (tests, shutdown). */
int http_server_inflight(struct http_server *s);
/* Sequences active plus queued across all models (tests). */
int http_server_busy(struct http_server *s);

/* ---- API keys ----
 *
 * A key is "cit_<16 hex id>_<43 base64url secret>": 256 random bits from
 * libsodium, shown once. The state file keeps the id, the tenant, the
 * scopes and SHA-256 of the whole key, never the key.
 *
 * Scopes are space-separated "endpoint:NAME" and "model:ID" items; NAME is
 * chat, completions, models, metrics, policy (the decision dry run) or *; ID is a model id or *. A
 * key may call an endpoint listed and use a model listed. */
#define HTTP_KEY_LEN    64 /* "cit_" + 16 + "_" + 43 */
#define HTTP_KEY_ID_LEN 16
#define HTTP_DEFAULT_SCOPES                                                                        \
    "endpoint:chat endpoint:completions endpoint:models endpoint:policy model:*"

struct http_keys;

int http_keys_open(const char *path, struct http_keys **out /* out */, struct cit_err *err);
void http_keys_close(struct http_keys *k);
/* Normalises a scope list (checks every item); out has room for 1024 bytes. */
int http_scopes_parse(const char *in, char *out, size_t cap, struct cit_err *err);
int http_keys_add(struct http_keys *k, const char *tenant, const char *scopes,
                  char key[HTTP_KEY_LEN + 1] /* out */, char id[HTTP_KEY_ID_LEN + 1] /* out */,
                  struct cit_err *err);
int http_keys_revoke(struct http_keys *k, const char *id, struct cit_err *err);

struct http_key_info {
    char id[HTTP_KEY_ID_LEN + 1];
    char tenant[65];
    char scopes[1024];
    int64_t created; /* unix seconds */
    int64_t revoked; /* unix seconds, 0: active */
};
typedef void (*http_keys_fn)(void *user, const struct http_key_info *ki);
int http_keys_list(struct http_keys *k, http_keys_fn fn, void *user, struct cit_err *err);
/* CIT_OK and *ki for an active key, CIT_ENOENT for anything else. */
int http_keys_check(struct http_keys *k, const char *key, size_t len,
                    struct http_key_info *ki /* out */);
/* 1 when the scopes allow the endpoint and (model NULL or) the model. */
int http_scope_allows(const char *scopes, const char *endpoint, const char *model);

#endif
