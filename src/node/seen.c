/*
 * The data passports this node took, remembered until they expire, so
 * that one presented again is refused as a replay (docs/gateway.md).
 *
 * Where they are kept: in memory, and in the ledger. Every request a peer
 * sends ends in an entry that holds its passport, synced before the answer
 * is acknowledged; at start the ledger hands back its entries of the last
 * GW_PASSPORT_MAX_LIFE_S + GW_PASSPORT_SKEW_S seconds (ledger_opts
 * on_recent) and the passports still valid among them are remembered
 * again. A passport lost in a crash is one whose request has no entry: it
 * was never answered (or its stream broke off, which an origin never
 * retries), so taking it again answers it once. That is the whole price
 * of sparing every forward a sync of a state file of its own.
 *
 * The table: chained buckets keyed by SipHash (crypto_shorthash) of origin
 * and id under a random key, so that a peer cannot aim its nonces at one
 * bucket; expired entries are dropped at most every PURGE_S seconds; at
 * most SEEN_MAX are held (a peer that sends more within a passport's life
 * is refused, not remembered less).
 */
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>
#include <time.h>

#include "node_int.h"

#define SEEN_MAX 1000000
#define PURGE_S  10

struct seen {
    struct seen *next;
    int64_t expires;
    char origin[64], id[33];
};

struct node_seen {
    pthread_mutex_t mu;
    struct seen **b;
    size_t nb, n;
    int64_t purged;
    uint8_t key[crypto_shorthash_KEYBYTES];
};

int node_seen_open(struct node_seen **out)
{
    struct node_seen *s = cit_calloc(1, sizeof(*s));
    if (!s || !(s->b = cit_calloc(1024, sizeof(*s->b)))) {
        cit_free(s);
        return CIT_ENOMEM;
    }
    s->nb = 1024;
    crypto_shorthash_keygen(s->key);
    pthread_mutex_init(&s->mu, NULL);
    *out = s;
    return 0;
}

void node_seen_close(struct node_seen *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->nb; i++)
        for (struct seen *e = s->b[i], *nx; e; e = nx) nx = e->next, cit_free(e);
    cit_free(s->b);
    pthread_mutex_destroy(&s->mu);
    cit_free(s);
}

static size_t bucket(const struct node_seen *s, size_t nb, const char *origin, const char *id)
{
    uint8_t in[64 + 33], h[crypto_shorthash_BYTES];
    size_t lo = strlen(origin), li = strlen(id);
    uint64_t v;
    memcpy(in, origin, lo + 1); /* the NUL keeps ("ab","c") from ("a","bc") */
    memcpy(in + lo + 1, id, li);
    crypto_shorthash(h, in, lo + 1 + li, s->key);
    memcpy(&v, h, sizeof(v));
    return (size_t)(v % nb);
}

/* mu held */
static void purge(struct node_seen *s, int64_t now)
{
    for (size_t i = 0; i < s->nb; i++)
        for (struct seen **p = &s->b[i]; *p;) {
            struct seen *e = *p;
            if (e->expires < now) {
                *p = e->next;
                cit_free(e);
                s->n--;
            } else {
                p = &e->next;
            }
        }
    s->purged = now;
}

/* mu held: doubles the buckets (when memory allows; chains only grow
 * longer otherwise) */
static void grow(struct node_seen *s)
{
    size_t nb = s->nb * 2;
    struct seen **b = cit_calloc(nb, sizeof(*b));
    if (!b) return;
    for (size_t i = 0; i < s->nb; i++)
        for (struct seen *e = s->b[i], *nx; e; e = nx) {
            size_t k = bucket(s, nb, e->origin, e->id);
            nx = e->next;
            e->next = b[k];
            b[k] = e;
        }
    cit_free(s->b);
    s->b = b;
    s->nb = nb;
}

int node_seen_add(struct node_seen *s, const char *origin, const char *id, int64_t expires,
                  int64_t now)
{
    struct seen *e;
    size_t k;
    int rc = 0;
    if (strlen(origin) >= sizeof(e->origin) || strlen(id) >= sizeof(e->id)) return CIT_EIO;
    pthread_mutex_lock(&s->mu);
    if (now - s->purged >= PURGE_S) purge(s, now);
    k = bucket(s, s->nb, origin, id);
    for (e = s->b[k]; e; e = e->next)
        if (!strcmp(e->id, id) && !strcmp(e->origin, origin)) break;
    if (e) {
        rc = CIT_EINVAL;
    } else if (s->n >= SEEN_MAX || !(e = cit_calloc(1, sizeof(*e)))) {
        rc = CIT_EIO;
    } else {
        memcpy(e->origin, origin, strlen(origin) + 1);
        memcpy(e->id, id, strlen(id) + 1);
        e->expires = expires;
        e->next = s->b[k];
        s->b[k] = e;
        if (++s->n > s->nb * 2) grow(s);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

size_t node_seen_count(struct node_seen *s)
{
    size_t n;
    pthread_mutex_lock(&s->mu);
    n = s->n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---- the node's side ---- */

int node_passport_seen(struct node *n, const char *origin, const char *id, int64_t expires,
                       int64_t now)
{
    return node_seen_add(n->seen, origin, id, expires, now);
}

/* The ledger's on_recent callback (user: the node): an entry of a request a
 * peer sent (its passport's origin is another node) whose passport was
 * taken (a refused one is an entry with an "event") remembers the passport
 * again while it is valid. Its fields are read without checking the
 * signature once more: the entry is this node's own, in a log whose chain
 * ledger_open checks, and what it gives can only add refusals. */
void node_passports_recover(void *user, const char *line, size_t len)
{
    struct node *n = user;
    json_t *j, *tenant, *wire;
    struct gw_passport ps;
    struct cit_err e = {{0}};
    int64_t now = (int64_t)time(NULL);
    if (!memmem(line, len, "\"passport\":\"", 12) || !(j = json_loadb(line, len, 0, NULL))) return;
    tenant = json_object_get(j, "tenant");
    wire = json_object_get(j, "passport");
    if (!json_object_get(j, "event") && json_is_string(tenant) && json_is_string(wire) &&
        !gw_passport_peek(json_string_value(wire), json_string_length(wire), &ps, &e) &&
        strcmp(ps.origin, n->pol->node_id) && ps.expires >= now)
        node_seen_add(n->seen, json_string_value(tenant), ps.id, ps.expires, now);
    json_decref(j);
}
