/*
 * node: one citadel node, and the gate every request passes.
 *
 * A node is its settings (struct node_opts, from citadel.conf and flags),
 * the state file (one SQLite connection: API keys, quota counters, the
 * border registry), the jurisdiction policy, the audit ledger (one writer,
 * named "<policy node.id>/audit"), and the models it serves, each with its
 * own thread pool and scheduler. node_open is the only place a node is put
 * together; serve, run, fl, model, trust, keys and audit all go through it.
 *
 * The gate is the request path the architecture calls the spine:
 *
 *   node_admit    scan the prompt, decide under the policy, redact, build
 *                 the prompt's tokens, check the transport's limits, charge
 *                 the tenant's quotas; a refusal is recorded in the ledger
 *                 at once and comes back as an outcome (status, OpenAI
 *                 error type and code, message, Retry-After)
 *   node_release  the part of the generated text that may go out now: the
 *                 policy's output rules applied, redacted values restored
 *   node_finish   the ledger entry with the final status and token counts,
 *                 and the quota settled; an answer is acknowledged only
 *                 after it returns 0
 *
 * node_decide is node_admit's dry run: the same code up to the decision
 * and the redaction, without quotas, tokens or a ledger entry, so that
 * POST /v1/policy/decide cannot disagree with the request it describes.
 *
 * Transports (http, the cli, the coming gateway) turn their requests into
 * struct node_req and outcomes into their own answers; none of them
 * decides, records or redacts by itself.
 *
 * Models can be loaded and unloaded while requests run: a request holds a
 * reference to its model; an unloaded model's scheduler is stopped at once
 * (its requests end, node_call_state says why) and freed with the last
 * reference.
 */
#ifndef CITADEL_NODE_H
#define CITADEL_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "citadel/core.h"
#include "citadel/engine.h"
#include "citadel/sched.h"

#define NODE_MAX_MODELS 16

/* ---- settings ---- */

struct node_model_spec {
    char id[128]; /* the name clients use ("model") */
    char path[1024];
};

struct node_opts {
    char state[1024];          /* the SQLite state file */
    char policy[1024];         /* the jurisdiction policy; required for the ledger and models */
    char ledger[1024];         /* the audit ledger's directory */
    int ledger_retention_days; /* 0: keep everything; else >= 183 */
    int checkpoint_s;          /* signed checkpoint period; < 0: on open and close only */
    struct node_model_spec models[NODE_MAX_MODELS];
    int n_models;
    int threads;             /* compute threads per model */
    int ctx;                 /* context per sequence; 0: min(2048, the model's) */
    int parallel;            /* sequences decoded together per model */
    int queue;               /* waiting requests per model before the scheduler refuses */
    int unvetted;            /* load models never admitted, where the policy allows it */
    int trust_stored_digest; /* skip hashing admitted models on read-only media */
    /* lockdown_read: folders a locked-down node may read besides its own
     * files (models loaded later through the admin API) */
    char lock_read[8][1024];
    int n_lock_read;
    /* set while a config file is read: relative paths in it are taken from
     * its folder, as every daemon does; flags are relative to the cwd */
    char base[1024];
};

void node_opts_defaults(struct node_opts *o);
/* Applies one setting (a config "key = value" or a flag). CIT_ENOENT, with
 * no message, when key is not a node setting; other errors name the key
 * and what it accepts. `model` appends "ID=PATH" or "PATH". */
int node_opts_set(struct node_opts *o, const char *key, const char *value, struct cit_err *err);
/* Sets dst to v, a path: relative to o->base while a config file is read. */
int node_opts_path(const struct node_opts *o, const char *key, const char *v, char *dst, size_t cap,
                   struct cit_err *err);
/* Value parsers for a transport's own settings: an integer in [lo, hi];
 * true/yes/1 or false/no/0. Errors name the key. */
int node_set_int(const char *key, const char *v, long lo, long hi, long *out, struct cit_err *err);
int node_set_bool(const char *key, const char *v, int *out, struct cit_err *err);
/* Reads a config file: each key goes to set (a transport's setter, which
 * passes what it does not know to node_opts_set), with o->base set to the
 * file's folder meanwhile. Errors say FILE:LINE. */
int node_conf_load(const char *path, struct node_opts *o, cit_conf_fn set, void *user,
                   struct cit_err *err);

struct guard_spec;
struct pol_policy;
/* The node's part of a lockdown (guard.h): the system folders, the state
 * file's and the ledger's folders read-write (made now if absent: nothing
 * can make them later), the policy and the models read-only, the
 * lockdown_read folders, and, when peers is set, every peer of p: its
 * address resolved and its port, and its CA and API key files. */
int node_guard_spec(const struct node_opts *o, const struct pol_policy *p, int peers,
                    struct guard_spec *s, struct cit_err *err);

/* ---- the node ---- */

enum {
    NODE_STATE = 1,    /* the state file: keys, quotas, registry */
    NODE_POLICY = 2,   /* the jurisdiction policy */
    NODE_LEDGER = 4,   /* the audit ledger (needs the policy: it names the ledger) */
    NODE_MODELS = 8,   /* the models of o->models, and their schedulers (needs all the above) */
    NODE_GATEWAY = 16, /* the links to the policy's peers (needs the ledger: its key is the
                        * node's identity) */
};

struct node;
struct pol_policy;
struct brd_registry;
struct ledger;
struct ledger_vkey;

/* Opens what `what` asks for; missing prerequisites are opened too. */
int node_open(const struct node_opts *o, unsigned what, struct node **out /* out */,
              struct cit_err *err);
/* Unloads the models (after their requests end), closes the ledger with a
 * final checkpoint, the state file and the policy. */
void node_close(struct node *n);
/* After guard_seal: the air-gap statement (guard_statement) as a ledger
 * entry, event "lockdown", action enforced, partial (best-effort with
 * something missing) or none; its hash is the entry's request_id and its
 * text the detail. what names the process ("serve"). */
int node_record_lockdown(struct node *n, const char *what, struct cit_err *err);

/* The parts, for the verbs that act on them (NULL when not opened). */
struct cit_db *node_state(struct node *n);
const struct pol_policy *node_policy(struct node *n);
struct brd_registry *node_registry(struct node *n);
struct ledger *node_ledger(struct node *n);
struct gw *node_gateway(struct node *n);
/* The node's identity: its ledger's signing key (node.key); NULL before the
 * ledger is open. Passports, receipts and the peers' TLS are signed with it. */
const struct ledger_skey *node_key(const struct node *n);
/* The policy's node id and hash, "" when none is loaded. */
const char *node_id(const struct node *n);
const char *node_policy_hash(const struct node *n);
const char *node_jurisdiction(const struct node *n);
/* 1 when the policy has a `models:` entry for id. */
int node_policy_lists_model(const struct node *n, const char *id);
/* The policy's jurisdiction profile (docs/policy.md): its id, NULL when
 * the policy names none; its transparency notice, NULL when it has none;
 * 1 when the notice is appended to every chat answer. */
const char *node_profile_id(const struct node *n);
const char *node_profile_notice(const struct node *n);
int node_profile_appends_notice(const struct node *n);

/* ---- API keys (keys.c) ----
 *
 * A key is "cit_<16 hex id>_<43 base64url secret>": 256 random bits from
 * libsodium, shown once. The state file keeps the id, the tenant, the
 * scopes and SHA-256 of the whole key, never the key.
 *
 * Scopes are space-separated "endpoint:NAME" and "model:ID" items; NAME is
 * chat, completions, embeddings, models, metrics, policy (the decision dry run), admin
 * (loading and unloading models) or *; ID is a model id or *. A key may
 * call an endpoint listed and use a model listed; endpoint:* does not
 * include admin, which must be named. */
#define NODE_KEY_LEN    64 /* "cit_" + 16 + "_" + 43 */
#define NODE_KEY_ID_LEN 16
#define NODE_DEFAULT_SCOPES                                                                        \
    "endpoint:chat endpoint:completions endpoint:embeddings endpoint:models endpoint:policy "      \
    "model:*"

struct node_key_info {
    char id[NODE_KEY_ID_LEN + 1];
    char tenant[65];
    char scopes[1024];
    int64_t created; /* unix seconds */
    int64_t revoked; /* unix seconds, 0: active */
};

/* 1 when the scopes allow the endpoint and (model NULL or) the model. */
int node_scope_allows(const char *scopes, const char *endpoint, const char *model);
int node_key_add(struct node *n, const char *tenant, const char *scopes,
                 char key[NODE_KEY_LEN + 1] /* out */, char id[NODE_KEY_ID_LEN + 1] /* out */,
                 struct cit_err *err);
int node_key_revoke(struct node *n, const char *id, struct cit_err *err);
typedef void (*node_key_fn)(void *user, const struct node_key_info *ki);
int node_key_list(struct node *n, node_key_fn fn, void *user, struct cit_err *err);
/* CIT_OK and *ki for an active key, CIT_ENOENT for anything else. */
int node_key_check(struct node *n, const char *key, size_t len, struct node_key_info *ki /* out */);
/* Problems with the keys against the policy, for the operator at start:
 * one line per active key whose tenant the policy does not list. */
int node_key_audit(struct node *n, struct cit_buf *report);

/* ---- models ---- */

struct node_model;

struct node_model_info {
    char id[128], path[1024];
    int slot;        /* 0 .. NODE_MAX_MODELS-1, stable while loaded (metrics) */
    int64_t created; /* unix seconds, when loaded */
    int n_ctx, parallel, threads;
    const char *tmpl; /* the chat format's name */
    int configured;   /* from the configuration (else loaded by an admin verb) */
    uint64_t gen;     /* which load: a model loaded later has a larger one */
    struct sched_stats st;
};

/* Loads one admitted model (border control checks it and writes the load
 * entry) and starts its scheduler. CIT_EINVAL when the id is taken. */
int node_model_load(struct node *n, const char *id, const char *path, struct cit_err *err);
/* Unloads a model: its requests end at once (node_call_state says why), a
 * ledger entry records it. CIT_ENOENT when no such model is loaded. */
int node_model_unload(struct node *n, const char *id, const char *why, struct cit_err *err);
/* Unloads every loaded model whose admission no longer holds (revoked,
 * expired, its signer no longer trusted); the number unloaded. */
int node_models_recheck(struct node *n);
/* Makes the configured models those of specs (SIGHUP): loads the new,
 * unloads those the configuration dropped. Models an admin verb loaded are
 * left alone (one listed now becomes configured). Errors are per model and
 * logged; returns the first. */
int node_models_apply(struct node *n, const struct node_model_spec *specs, int n_specs,
                      struct cit_err *err);
/* A snapshot of the loaded models, in slot order; returns how many. */
int node_models(struct node *n, struct node_model_info *out, int cap);
int node_model_info(struct node *n, const char *id, struct node_model_info *out /* out */);
int node_model_count(struct node *n);
/* Parses "ID=PATH" or "PATH" (the id: the file's name less .gguf). */
int node_model_spec_parse(const struct node_opts *o, const char *v, struct node_model_spec *m,
                          struct cit_err *err);
/* Requests queued or running across every model. */
int node_busy(struct node *n);
/* Stops every scheduler (shutdown: what still runs is cancelled). */
void node_stop_models(struct node *n);

/* The engine model behind an id, for a verb that runs it itself (citadel
 * run); valid until node_close or its unload. NULL when not loaded. */
struct eng_model *node_engine_model(struct node *n, const char *id);

/* The model's tokenizer, with the model held for the call (an unload
 * waits): ids in *ids (cit_free), CIT_ENOENT for a model not loaded. */
int node_tokenize(struct node *n, const char *id, const char *text, size_t len, int add_special,
                  int parse_special, int32_t **ids /* out */, int *n_ids /* out */);
/* The tokens' bytes appended to out; ends[i] (when not NULL) is where
 * token i's end. CIT_ERANGE for an id outside the vocabulary. */
int node_token_pieces(struct node *n, const char *id, const int32_t *ids, int n_ids,
                      int render_special, struct cit_buf *out, size_t *ends /* out */);

/* ---- the gate ---- */

struct node_prompt {
    int chat;     /* messages (chat) or prompt/ids (completion) */
    int tmpl_set; /* chat: render with tmpl, not the model's own format */
    enum eng_chat_tmpl tmpl;
    const struct eng_chat_msg *msgs;
    int n_msgs;
    const char *prompt; /* completion text, or NULL with ids */
    const int32_t *ids; /* completion token ids */
    int n_ids;
    /* embeddings (embed 1): inputs embedded apart, each scanned, decided
     * and redacted as one message of a chat is: n_msgs texts in
     * msgs[i].content, or with ids their token ids back to back,
     * input_lens[i] the length of each of the n_inputs */
    int embed;
    const int *input_lens;
    int n_inputs;
};

struct node_req {
    const char *tenant, *key_id;
    /* the caller's key scopes and the endpoint it called ("chat",
     * "completions"): the gate refuses a model the scopes do not allow
     * (403, or 404 when no such model exists). scopes NULL: no key (the CLI) */
    const char *scopes, *endpoint;
    const char *model;
    const char *declared; /* data classes the caller declares, comma-separated; may be NULL */
    uint8_t digest[32];   /* node_request_digest of the canonical request, for the ledger */
    struct node_prompt p;
    int max_tokens;        /* asked for; 0: not given */
    int max_tokens_limit;  /* the transport's ceiling for max_tokens */
    int max_prompt_tokens; /* the transport's ceiling for the prompt */
    int id_chat;           /* the request id reads chatcmpl-... (else cmpl-...) */
    const char *purpose;   /* what the caller says the data is for (a passport says it); NULL */
    /* a request from a peer (docs/gateway.md): its passport, checked by the
     * transport, recorded with the entry; its classes are in declared */
    const char *passport;
};

/* Why a request does not go on, in the terms of the OpenAI API. */
struct node_outcome {
    int status;        /* 200: go on; else the HTTP status */
    const char *type;  /* invalid_request_error, permission_error, rate_limit_error, ... */
    const char *code;  /* NULL or a code */
    const char *param; /* NULL or the request field */
    char msg[600];
    int retry_after_s;  /* 0: none */
    char decision[160]; /* "redact; rule=ID", "" before a decision */
    /* the profile's max_tokens cap lowered the request's: "CAP; requested=N",
     * or "CAP" when it lowered the default; "" when it did not act */
    char max_tokens_note[48];
    /* the ledger entry a refusal wrote (a peer's receipt names it) */
    int recorded;
    uint64_t seq;
    uint8_t leaf[32];
    /* a quota refusal (status 429 with quota.which set) */
    struct {
        char which[32];
        int64_t limit, used, reset, now; /* reset 0: when a request ends */
    } quota;
};

struct node_finding {
    const char *detector;
    const char *cls; /* the policy's class, NULL when it drops the finding */
    size_t start, end;
    float confidence;
};

/* A decision without running it (node_decide). */
struct node_verdict {
    const char *action; /* deny, local, redact, forward */
    const char *rule;
    const char *peer; /* forward: the peer, else NULL */
    char reason[256];
    char classes[512]; /* comma-separated */
    const char *policy_hash;
    struct node_finding *findings;
    size_t n_findings;
    struct node_outcome out; /* what the request itself would get */
};

struct node_call;

/* The ledger's digest of a request: HMAC-SHA-256 of its canonical text
 * under the node's secret (kept in the state file, never in the ledger),
 * so the ledger names the request to the node and reveals nothing of it
 * to anyone else who reads it: no guessing a prompt or a tax id in it. */
void node_request_digest(const struct node *n, const void *canon, size_t len,
                         uint8_t out[32] /* out */);

/* The request through the gate: 0 with *call (the caller frees it with
 * node_call_free) when it may go on, else an error code with out saying
 * what the client gets; the refusal is in the ledger. */
int node_admit(struct node *n, const struct node_req *rq, struct node_call **call /* out */,
               struct node_outcome *out /* out */);
/* The dry run: 0 with v filled (free with node_verdict_free), or an error
 * with v->out saying what the request would get before any decision
 * (unknown model, a prompt that cannot be read). */
int node_decide(struct node *n, const struct node_req *rq, struct node_verdict *v /* out */);
void node_verdict_free(struct node_verdict *v);

const char *node_call_id(const struct node_call *c);
const char *node_call_model(const struct node_call *c);
int node_call_slot(const struct node_call *c);
/* Which load of its model the call runs on: a model loaded later into the
 * same slot has a larger number (metrics tell a drain from a newcomer). */
uint64_t node_call_model_gen(const struct node_call *c);
const char *node_call_decision(const struct node_call *c);
/* The prompt's tokens. */
const int32_t *node_call_tokens(const struct node_call *c, int *n /* out */);
/* 1 when tok ends generation for the call's model. */
int node_call_is_eog(const struct node_call *c, int32_t tok);
/* ---- forwards ----
 * A forward decision admits the call without a local model: the transport
 * hands it to the gateway (node_call_send) and feeds the answer's text to
 * node_release as for a local answer; the entry records the peer that
 * answered, the passport and the receipt. */
struct gw_send;
struct gw_result;
int node_call_forwards(const struct node_call *c);
/* Fills s's peers, passport fields and class for the call (s->body, the
 * callbacks and the deadline are the transport's). */
void node_call_send_fill(const struct node_call *c, struct gw_send *s);
/* What the gateway did: the entry will name the peer, its passport and
 * receipt and the tokens it counted; earlier attempts that reached a peer
 * are recorded at once, one entry each. */
void node_call_forwarded(struct node_call *c, const struct gw_result *r);
/* The entry node_finish wrote: 0 with its seq and leaf, CIT_ENOENT before. */
int node_call_entry(const struct node_call *c, uint64_t *seq /* out */, uint8_t leaf[32] /* out */);
/* Records that a passport was taken, until it expires (in memory; the
 * ledger entry of its request keeps it over a restart, docs/gateway.md):
 * CIT_EINVAL when it was already (a replay), CIT_EIO when it cannot be
 * remembered. */
int node_passport_seen(struct node *n, const char *origin, const char *id, int64_t expires,
                       int64_t now);

/* Witnessing (docs/gateway.md): as a witness, checks an add-checkpoint
 * body from peer (whose log key is log) against the last checkpoint of
 * its this node cosigned, and cosigns with the node's witness key; the new
 * state is kept before the answer. Returns the HTTP status; reply gets the
 * answer's body. */
int node_witness_add(struct node *n, const char *peer, const struct ledger_vkey *log,
                     const char *body, size_t len, struct cit_buf *reply /* out */,
                     struct cit_err *err);
/* The last checkpoint of peer's ledger this node cosigned, with its
 * cosignature (CIT_ENOENT: none yet). */
int node_witnessed(struct node *n, const char *peer, struct cit_buf *note /* out */,
                   struct cit_err *err);
/* The last checkpoint of this node's ledger the witness peer cosigned. */
int node_cosigned(struct node *n, const char *witness, struct cit_buf *note /* out */,
                  struct cit_err *err);
/* The node's witness key (a LEDGER_KEY_COSIGN key, <ledger>/witness.key),
 * NULL without a ledger. */
const struct ledger_skey *node_witness_key(const struct node *n);

/* The engine model a local call runs on (NULL for a forward). */
const struct eng_model *node_call_engine(const struct node_call *c);
/* An admitted embeddings call: how many inputs, and each one's tokens
 * (the prompt's, back to back). */
int node_call_inputs(const struct node_call *c, const int **lens /* out */);
/* Hands an embeddings call to its model's scheduler: the vectors into out
 * (inputs * n_embd floats), then cb with SCHED_FINISH_STOP (or ERROR,
 * CANCELLED). Errors as node_call_submit. */
int node_call_submit_embed(struct node_call *c, float *out, int normalize, sched_cb cb, void *user);
/* Hands the request to its model's scheduler. q->prompt and q->max_tokens
 * are the call's. CIT_EOVERFLOW: the queue is full or the model stopping
 * (the caller answers 429 or 503); the quota charge is taken back. */
int node_call_submit(struct node_call *c, struct sched_req *q, sched_cb cb, void *user);
void node_call_cancel(struct node_call *c);

/* The next part of text[0, len) that may go out, into piece (appended).
 * done: the text is complete. Not thread-safe per call: the transport
 * serialises it with its own lock. An error ends the answer (fail closed);
 * node_call_state then says scan_failed. */
int node_release(struct node_call *c, const char *text, size_t len, int done,
                 struct cit_buf *piece);

struct node_call_state {
    int stopped;     /* the output rules ended the answer (content_filter) */
    int scan_failed; /* the answer could not be scanned: it ends with an error */
    int model_gone;  /* the model was unloaded under the request */
    char gone_why[300];
};
void node_call_state(const struct node_call *c, struct node_call_state *st /* out */);
/* How much of the model's text node_release has let out so far (bytes). */
size_t node_call_released(const struct node_call *c);

/* The ledger entry (once per call) with the final status and counts, and
 * the quota settled (once). Returns non-zero when the entry could not be
 * written: the transport withholds the answer. */
int node_finish(struct node_call *c, int status, int n_gen);
/* Ends the call: node_finish with status if it was not called, frees. */
void node_call_free(struct node_call *c, int status, int n_gen);

/* A tenant's quotas as they stand (GET /v1/usage). CIT_ENOENT: the policy
 * does not list the tenant. */
struct node_usage {
    int64_t rpm_limit, rpm_used, rpm_reset;
    int64_t tpd_limit, tpd_used, tpd_reserved, tpd_reset;
    int64_t conc_limit, conc_used;
    int64_t now;
};
int node_usage(struct node *n, const char *tenant, struct node_usage *u /* out */);

/* ---- administration while serving (admin.c) ----
 *
 * A serving node listens on a Unix socket in its state file's folder
 * (citadel.sock, mode 0600; peers must be root or the node's own user).
 * A request is one JSON line {"argv": [...]}: a verb of the command line
 * (model admit|revoke|list|load|unload, trust add|remove|list, keys
 * add|revoke|list); the reply is one JSON line {"rc": N, "out": "...",
 * "err": "..."}. The verbs run in the serving process against its node,
 * through exec, so the same code serves both ways. */
typedef int (*node_admin_fn)(void *user, struct node *n, int argc, char **argv, struct cit_buf *out,
                             struct cit_buf *err);
struct node_admin;
/* The socket's path for a node whose state file is state_path: "<state>.sock"
 * (cap 1100 holds it for any state path the options take). */
void node_admin_path(const char *state_path, char *out, size_t cap);
int node_admin_start(struct node *n, node_admin_fn exec, void *user,
                     struct node_admin **out /* out */, struct cit_err *err);
void node_admin_stop(struct node_admin *a);
/* 1 when a serving node answers on sock_path. */
int node_admin_alive(const char *sock_path);
/* Client side: CIT_ENOENT when no node listens there (work offline);
 * else 0 with the verb's exit code, its output and its errors. */
int node_admin_call(const char *sock_path, int argc, char **argv, int *rc /* out */,
                    struct cit_buf *out, struct cit_buf *errout, struct cit_err *err);

#endif
