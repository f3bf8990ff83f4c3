/* Internals of the node module shared between its files. */
#ifndef CITADEL_NODE_INT_H
#define CITADEL_NODE_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

#include "citadel/border.h"
#include "citadel/gateway.h"
#include "citadel/ledger.h"
#include "citadel/node.h"
#include "citadel/policy.h"

/* A loaded model. The node's table holds one reference while it is loaded,
 * every call one more; the last unref frees it. */
struct node_model {
    struct node *node;
    char id[128], path[1024];
    int slot;
    struct eng_model *m;
    struct cit_pool *pool;
    struct sched *sched;
    enum eng_chat_tmpl tmpl;
    int n_ctx, n_vocab;
    int64_t created;
    int configured;   /* loaded from the configuration, so SIGHUP may unload it */
    uint64_t gen;     /* the node's count of loads when this one loaded: later is larger */
    uint8_t root[32]; /* the admission's digest (zero: unvetted) */
    _Atomic int refs;
    _Atomic int gone; /* unloaded: no new calls, running ones end */
    char gone_why[256];
};

struct node {
    struct node_opts o;
    struct cit_db *db;
    struct node_keys *keys;
    struct pol_policy *pol;
    struct pol_quotas *quotas;
    struct brd_registry *reg;
    struct ledger *lg;
    pthread_mutex_t models_mu; /* the table and the reservations; never held while a
                                * model loads or stops */
    struct node_model *models[NODE_MAX_MODELS];
    char ledger_real[4096]; /* the ledger directory's real path (its floor's key) */
    uint8_t digest_key[32]; /* the request digests' HMAC key (state file) */
    struct ledger_skey key; /* the node's identity: the ledger's node.key */
    int have_key;
    struct ledger_skey wkey; /* the node's witness key: <ledger>/witness.key */
    int have_wkey;
    struct node_seen *seen; /* the passports taken (seen.c) */
    pthread_mutex_t gw_mu;  /* n->gw against the ledger's checkpoint callback */
    struct gw *gw;          /* the links to peers (NODE_GATEWAY) */
    _Atomic uint64_t loads; /* models loaded so far (node_model.gen) */
    /* a slot a load has reserved while it checks and maps the file (which
     * can take minutes for a large model): no lock is held meanwhile, so
     * unloads and revocations go on */
    char loading[NODE_MAX_MODELS][128];
};

/* admin.c: one request line {"argv": [...]} into argv (pointing into
 * *root, which the caller frees with json_decref, also on failure): 0, or
 * 2 with the reason in errb. */
#define NODE_ADMIN_MAX_ARGS 64

int node_admin_parse(const char *line, size_t n, json_t **root, char **argv, int *argc,
                     struct cit_buf *errb);

/* state.c: the schema, version by version */
int node_state_open(const char *path, struct cit_db **out, struct cit_err *err);

/* keys.c */
struct node_keys;
/* The gateway's callback: a witness cosigned this node's checkpoint. */
void node_cosigned_store(void *user, const char *witness, uint64_t size, const char *note);
int node_keys_open(struct cit_db *db, struct node_keys **out, struct cit_err *err);
void node_keys_close(struct node_keys *k);

/* node.c */
struct node_model *node_model_get(struct node *n, const char *id); /* a reference, or NULL */
void node_model_unref(struct node_model *m);

/* opts.c */

/* ---- for tests and fuzz targets ---- */

/* Normalises a scope list (checks every item); out has room for 1024 bytes. */
int node_scopes_parse(const char *in, char *out, size_t cap, struct cit_err *err);

/* state.c: the last checkpoint the ledger in dir (its real path) signed,
 * kept in the state file (note: its signed note, NUL-terminated; left
 * empty when none), and the ledger's on_checkpoint callback that keeps it
 * (user: the node). */
int node_floor_read(struct cit_db *db, const char *dir, struct cit_buf *note, struct cit_err *err);
void node_floor_store(void *user, const struct ledger_checkpoint *cp, const char *note);
/* seen.c: the passports taken, until they expire. node_seen_add: 0, or
 * CIT_EINVAL when (origin, id) is there already (a replay), CIT_EIO when
 * it cannot be remembered (too many, or out of memory). */
struct node_seen;
int node_seen_open(struct node_seen **out);
void node_seen_close(struct node_seen *s);
int node_seen_add(struct node_seen *s, const char *origin, const char *id, int64_t expires,
                  int64_t now);
size_t node_seen_count(struct node_seen *s);
/* seen.c: the ledger's on_recent callback, which remembers again the
 * passports of the entries it is given (user: the node). */
void node_passports_recover(void *user, const char *line, size_t len);
/* state.c: the node's secret named name (32 bytes), created at random on
 * first use. */
int node_secret(struct cit_db *db, const char *name, uint8_t out[32], struct cit_err *err);

#endif
