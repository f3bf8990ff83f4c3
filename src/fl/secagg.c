/*
 * Secure aggregation, SecAgg+ (Bell et al. 2020) over Bonawitz et al. 2017:
 * the coordinator learns the sum of the clients' vectors in Z/2^32 and
 * nothing else, and the sum survives clients that drop out at any stage, as
 * long as at least t holders of every secret that must be rebuilt remain.
 *
 * Each client u, per round:
 *   keys     draws two X25519 pairs: c (to encrypt shares) and s (pairwise
 *            masks), and signs both public keys with its long-term Ed25519
 *            identity, so a coordinator cannot substitute its own keys;
 *   shares   draws a mask seed b_u and Shamir-shares b_u and s_sk_u (threshold
 *            t) among its holders: itself and its k neighbours in a random
 *            k-regular graph that every party derives from the session id;
 *            each neighbour's pair of shares travels in an AEAD box only that
 *            neighbour can open;
 *   masked   sends y_u = x_u + PRG(b_u) + sum over neighbours v that shared
 *            (U2) of +-PRG(s_uv), + when u < v and - when u > v, where s_uv
 *            comes from X25519(s_sk_u, s_pk_v); pairwise masks cancel in the
 *            sum, self-masks do not;
 *   alive    signs the list U3 of who sent a masked input, and checks that
 *            at least t of its holders (itself and its neighbours) signed the
 *            same list, as SecAgg+ does it (the consistency check: a
 *            coordinator that tells clients different lists is caught here,
 *            before anything is revealed);
 *   reveal   for each neighbour v it holds shares of: b_v's share if v is in
 *            U3, s_sk_v's share if v is not. Never both, and only once.
 * The coordinator then rebuilds b_v for every v in U3 and removes PRG(b_v),
 * and rebuilds s_sk_v for every v that shared but sent no masked input and
 * removes v's pairwise masks from its neighbours' inputs.
 *
 * Since t > (k + 1) / 2, no split of v's k + 1 holders gives a coordinator t
 * shares of b_v and t shares of s_sk_v at once, whatever lists it tells them.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "citadel/fl.h"
#include "fl_int.h"

#define BIND  40  /* session id and round number */
#define MAX_K 254 /* k + 1 holders need distinct x in GF(2^8)* */

static const char KEYS_CTX[] = "citadel-fl/keys/v1";
static const char ALIVE_CTX[] = "citadel-fl/alive/v1";
static const char BOX_CTX[] = "citadel-fl/box/v1";
static const char PAIR_CTX[] = "citadel-fl/pair/v1";

/* ---- the graph ---- */

int fl_sa_neighbours(const uint8_t session[32], uint32_t n, uint32_t k, uint32_t p, uint32_t *out)
{
    uint8_t h[32];
    struct fl_rng r;
    uint32_t *perm, c = 0, m = 0;
    if (n < 2 || p >= n) return 0;
    if (k >= n - 1) { /* the full graph: SecAgg */
        for (uint32_t i = 0; i < n; i++)
            if (i != p) out[m++] = i;
        return (int)m;
    }
    perm = cit_malloc(n * sizeof(uint32_t));
    if (!perm) return -1;
    /* a random Harary graph: positions on a cycle in a random order, each
     * joined to the k/2 nearest on either side */
    fl_sha256(h, "citadel-fl/graph/v1", 19, session, 32, NULL, 0);
    for (int i = 0; i < 4; i++) memcpy(&r.s[i], h + 8 * i, 8);
    if (!(r.s[0] | r.s[1] | r.s[2] | r.s[3])) r.s[0] = 1;
    for (uint32_t i = 0; i < n; i++) perm[i] = i;
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = (uint32_t)fl_rng_below(&r, i), t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
    for (uint32_t i = 0; i < n; i++)
        if (perm[i] == p) c = i;
    for (uint32_t j = 1; j <= k / 2; j++) {
        out[m++] = perm[(c + j) % n];
        out[m++] = perm[(c + n - j) % n];
    }
    cit_free(perm);
    /* ascending, so that holder coordinates are the same for everyone */
    for (uint32_t i = 1; i < m; i++)
        for (uint32_t j = i; j > 0 && out[j - 1] > out[j]; j--) {
            uint32_t t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return (int)m;
}

/* The x coordinate of holder h among v's holders (v and its neighbours,
 * ascending): 1 + h's rank; 0 when h does not hold v's shares. */
static uint8_t holder_x(uint32_t v, const uint32_t *nb, int nnb, uint32_t h)
{
    int rank = 0, found = h == v;
    for (int i = 0; i < nnb; i++) {
        if (nb[i] == h) found = 1;
        if (nb[i] < h) rank++;
    }
    if (v < h) rank++;
    return found ? (uint8_t)(rank + 1) : 0;
}

static int params_check(uint32_t n, uint32_t k, uint32_t t, uint32_t d, struct cit_err *err)
{
    if (n < 2 || n > FL_MAX_CLIENTS)
        return cit_err_set(err, CIT_ERANGE, "n = %u participants (2..%d)", n, FL_MAX_CLIENTS);
    if (k > n - 1 || (k < n - 1 && (k < 2 || k % 2)) || k > MAX_K)
        return cit_err_set(err, CIT_ERANGE,
                           "k = %u neighbours: even, 2..%d, or n - 1 = %u for the full graph", k,
                           MAX_K, n - 1);
    if (t > k + 1 || 2 * t <= k + 1)
        return cit_err_set(err, CIT_ERANGE,
                           "t = %u: a secret has k + 1 = %u holders, so (k + 1) / 2 < t <= k + 1",
                           t, k + 1);
    if (d < 1 || d > FL_MAX_DIM)
        return cit_err_set(err, CIT_ERANGE, "d = %u (1..%u)", d, FL_MAX_DIM);
    return 0;
}

static void put_binding(uint8_t b[BIND], const uint8_t session[32], uint64_t round)
{
    memcpy(b, session, 32);
    for (int i = 0; i < 8; i++) b[32 + i] = (uint8_t)(round >> (8 * i));
}

static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* The signed statement of a client's round keys. */
static void keys_msg(uint8_t out[sizeof(KEYS_CTX) - 1 + BIND + 4 + 64], const uint8_t bind[BIND],
                     uint32_t pos, const uint8_t c_pk[32], const uint8_t s_pk[32])
{
    size_t o = sizeof(KEYS_CTX) - 1;
    memcpy(out, KEYS_CTX, o);
    memcpy(out + o, bind, BIND);
    le32(out + o + BIND, pos);
    memcpy(out + o + BIND + 4, c_pk, 32);
    memcpy(out + o + BIND + 36, s_pk, 32);
}
#define KEYS_MSG (sizeof(KEYS_CTX) - 1 + BIND + 4 + 64)

/* The signed statement of U3, into b (freed by the caller). */
static int alive_msg(struct cit_buf *b, const uint8_t bind[BIND], const uint8_t *in, uint32_t n)
{
    uint8_t w[4];
    uint32_t cnt = 0;
    int rc = cit_buf_add(b, ALIVE_CTX, sizeof(ALIVE_CTX) - 1);
    rc = rc ? rc : cit_buf_add(b, bind, BIND);
    for (uint32_t i = 0; i < n; i++) cnt += in[i];
    le32(w, cnt);
    rc = rc ? rc : cit_buf_add(b, w, 4);
    for (uint32_t i = 0; !rc && i < n; i++)
        if (in[i]) {
            le32(w, i);
            rc = cit_buf_add(b, w, 4);
        }
    return rc;
}

/* A key from X25519 of one client's secret and another's public key, bound
 * to the round and to its use (ctx): the key of the box between two
 * clients (c keys, BOX_CTX) or their pairwise mask seed (s keys,
 * PAIR_CTX). -1 for a degenerate public key. */
static int dh_key(uint8_t key[32], const char *ctx, const uint8_t sk[32], const uint8_t pk[32],
                  const uint8_t bind[BIND])
{
    uint8_t dh[32];
    if (crypto_scalarmult(dh, sk, pk)) return -1;
    fl_sha256(key, ctx, strlen(ctx), dh, 32, bind, BIND);
    sodium_memzero(dh, sizeof(dh));
    return 0;
}

static int box_key(uint8_t key[32], const uint8_t sk[32], const uint8_t pk[32],
                   const uint8_t bind[BIND])
{
    return dh_key(key, BOX_CTX, sk, pk, bind);
}

static int pair_seed(uint8_t seed[32], const uint8_t sk[32], const uint8_t pk[32],
                     const uint8_t bind[BIND])
{
    return dh_key(seed, PAIR_CTX, sk, pk, bind);
}

static void box_ad(uint8_t ad[BIND + 8], const uint8_t bind[BIND], uint32_t from, uint32_t to)
{
    memcpy(ad, bind, BIND);
    le32(ad + BIND, from);
    le32(ad + BIND + 4, to);
}

/* ================= client ================= */

enum cstate { C_SETUP, C_PEERS, C_INBOX, C_ALIVE, C_SIGS, C_DONE_WAIT, C_DONE, C_ABORTED };

struct peer {
    uint32_t pos;
    uint8_t c_pk[32], s_pk[32];
    int keys;   /* its keys came in SA_PEERS (U1) */
    int shared; /* its box to us opened (U2, as seen here) */
    uint8_t x;  /* our coordinate among its holders */
    uint8_t b_share[32], s_share[32];
};

struct fl_sa_client {
    struct fl_roster roster;
    uint32_t me_roster, min_t;
    uint64_t want_round; /* the TASK's round, which SA_SETUP must name; 0: any */
    uint8_t id_sk[64];
    enum cstate st;
    uint32_t *input, input_d;
    /* the round */
    uint8_t bind[BIND];
    uint32_t n, k, t, d, me;
    uint32_t *members;  /* (n) */
    struct peer *peers; /* (k) by ascending position */
    int npeers;
    uint8_t c_pk[32], c_sk[32], s_pk[32], s_sk[32], b[32];
    uint8_t my_x, my_b_share[32];
    uint8_t *alive;            /* (n) U3 as told */
    struct cit_buf alive_stmt; /* what we signed */
    struct fl_sa_transcript tr;
    crypto_hash_sha256_state keys_h, shares_h;
};

void fl_sa_client_expect_round(struct fl_sa_client *c, uint64_t round)
{
    c->want_round = round;
}

int fl_sa_client_new(const struct fl_roster *roster, uint32_t roster_index, const uint8_t id_sk[64],
                     uint32_t min_t, struct fl_sa_client **out)
{
    struct fl_sa_client *c;
    if (!roster || roster_index >= (uint32_t)roster->n) return CIT_EINVAL;
    if (sodium_init() < 0) return CIT_ENOTSUP;
    c = cit_calloc(1, sizeof(*c));
    if (!c) return CIT_ENOMEM;
    c->roster = *roster;
    c->me_roster = roster_index;
    c->min_t = min_t;
    memcpy(c->id_sk, id_sk, 64);
    c->st = C_SETUP;
    *out = c;
    return 0;
}

void fl_sa_client_free(struct fl_sa_client *c)
{
    if (!c) return;
    cit_free(c->input);
    cit_free(c->members);
    if (c->peers) sodium_memzero(c->peers, (size_t)c->npeers * sizeof(*c->peers));
    cit_free(c->peers);
    cit_free(c->alive);
    cit_buf_free(&c->alive_stmt);
    sodium_memzero(c, sizeof(*c));
    cit_free(c);
}

int fl_sa_client_input(struct fl_sa_client *c, const uint32_t *input, uint32_t d)
{
    uint32_t *p;
    if (c->st != C_SETUP || d < 1 || d > FL_MAX_DIM) return CIT_EINVAL;
    p = cit_malloc((size_t)d * sizeof(uint32_t));
    if (!p) return CIT_ENOMEM;
    memcpy(p, input, (size_t)d * sizeof(uint32_t));
    cit_free(c->input);
    c->input = p;
    c->input_d = d;
    return 0;
}

int fl_sa_client_done(const struct fl_sa_client *c, struct fl_sa_transcript *t)
{
    if (t) *t = c->tr;
    return c->st == C_DONE;
}

static struct peer *find_peer(struct fl_sa_client *c, uint32_t pos)
{
    for (int i = 0; i < c->npeers; i++)
        if (c->peers[i].pos == pos) return &c->peers[i];
    return NULL;
}

/* Reads and checks the binding that opens every round frame. */
static int rd_binding(struct fl_rd *r, const uint8_t bind[BIND], struct cit_err *err)
{
    const uint8_t *b = fl_rd_bytes(r, BIND, "session and round");
    if (r->failed) return CIT_EFORMAT;
    if (memcmp(b, bind, BIND))
        return cit_err_set(err, CIT_EFORMAT,
                           "%s: session or round does not match this round's (a replay, or a "
                           "frame from another round)",
                           fl_msg_name(r->type));
    return 0;
}

static int c_setup(struct fl_sa_client *c, struct fl_rd *r, struct cit_buf *out,
                   struct cit_err *err)
{
    uint8_t msg[KEYS_MSG], sig[64];
    uint32_t nbv[MAX_K];
    const uint8_t *session = fl_rd_bytes(r, 32, "session");
    uint64_t round = fl_rd_u64(r, "round");
    uint32_t n = fl_rd_u32(r, "n"), k = fl_rd_u32(r, "k"), t = fl_rd_u32(r, "t");
    uint32_t d = fl_rd_u32(r, "d"), me = fl_rd_u32(r, "you");
    uint32_t cnt = fl_rd_count(r, FL_MAX_CLIENTS, 4, "members");
    struct fl_wr w;
    int rc, m;
    if (r->failed) return CIT_EFORMAT;
    if (c->want_round && round != c->want_round)
        return cit_err_set(err, CIT_ERANGE, "SA_SETUP: round %llu, but the TASK was for round %llu",
                           (unsigned long long)round, (unsigned long long)c->want_round);
    if (cnt != n) return cit_err_set(err, CIT_EFORMAT, "SA_SETUP: %u members for n = %u", cnt, n);
    if ((rc = params_check(n, k, t, d, err))) return rc;
    if (t < c->min_t)
        return cit_err_set(err, CIT_ERANGE,
                           "SA_SETUP: threshold t = %u is below this node's floor of %u", t,
                           c->min_t);
    if (me >= n) return cit_err_set(err, CIT_EFORMAT, "SA_SETUP: position %u of %u", me, n);
    if (!c->input || c->input_d != d)
        return cit_err_set(err, CIT_EINVAL,
                           "SA_SETUP: the round sums %u entries, this node's "
                           "update has %u",
                           d, c->input_d);
    c->members = cit_malloc(n * sizeof(uint32_t));
    c->alive = cit_calloc(n, 1);
    if (!c->members || !c->alive) return CIT_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        c->members[i] = fl_rd_u32(r, "member");
        if (c->members[i] >= (uint32_t)c->roster.n)
            return cit_err_set(err, CIT_EFORMAT,
                               "SA_SETUP: member %u is roster index %u, the "
                               "roster has %d",
                               i, c->members[i], c->roster.n);
        for (uint32_t j = 0; j < i; j++)
            if (c->members[j] == c->members[i])
                return cit_err_set(err, CIT_EFORMAT, "SA_SETUP: roster index %u listed twice",
                                   c->members[i]);
    }
    if ((rc = fl_rd_end(r))) return rc;
    if (c->members[me] != c->me_roster)
        return cit_err_set(err, CIT_EFORMAT,
                           "SA_SETUP: position %u is roster index %u, not "
                           "this node (%u)",
                           me, c->members[me], c->me_roster);
    c->n = n;
    c->k = k;
    c->t = t;
    c->d = d;
    c->me = me;
    put_binding(c->bind, session, round);
    m = fl_sa_neighbours(session, n, k, me, nbv);
    if (m < 0) return CIT_ENOMEM;
    c->peers = cit_calloc((size_t)(m ? m : 1), sizeof(*c->peers));
    if (!c->peers) return CIT_ENOMEM;
    c->npeers = m;
    for (int i = 0; i < m; i++) c->peers[i].pos = nbv[i];
    c->my_x = holder_x(me, nbv, m, me);
    crypto_box_keypair(c->c_pk, c->c_sk);
    crypto_box_keypair(c->s_pk, c->s_sk);
    keys_msg(msg, c->bind, me, c->c_pk, c->s_pk);
    crypto_sign_detached(sig, NULL, msg, sizeof(msg), c->id_sk);
    crypto_hash_sha256_init(&c->keys_h);
    crypto_hash_sha256_init(&c->shares_h);
    crypto_hash_sha256_update(&c->keys_h, msg, sizeof(msg));
    c->tr.n = n;
    fl_wr_begin(&w, out, FL_MSG_SA_KEYS);
    fl_wr_bytes(&w, c->bind, BIND);
    fl_wr_bytes(&w, c->c_pk, 32);
    fl_wr_bytes(&w, c->s_pk, 32);
    fl_wr_bytes(&w, sig, 64);
    c->st = C_PEERS;
    return fl_wr_end(&w);
}

static int c_peers(struct fl_sa_client *c, struct fl_rd *r, struct cit_buf *out,
                   struct cit_err *err)
{
    uint8_t msg[KEYS_MSG], xs[MAX_K + 1], (*sh_b)[32] = NULL, (*sh_s)[32] = NULL;
    uint32_t cnt, got = 0, nbv[MAX_K];
    struct fl_wr w;
    int rc = rd_binding(r, c->bind, err), h = 0;
    if (rc) return rc;
    cnt = fl_rd_count(r, (uint32_t)c->npeers, 4 + 32 + 32 + 64, "peers");
    for (uint32_t i = 0; i < cnt && !r->failed; i++) {
        uint32_t pos = fl_rd_u32(r, "position");
        const uint8_t *cpk = fl_rd_bytes(r, 32, "c_pk"), *spk = fl_rd_bytes(r, 32, "s_pk");
        const uint8_t *sig = fl_rd_bytes(r, 64, "signature");
        struct peer *p = find_peer(c, pos);
        if (r->failed) break;
        if (!p)
            return cit_err_set(err, CIT_EFORMAT, "SA_PEERS: position %u is not a neighbour", pos);
        if (p->keys)
            return cit_err_set(err, CIT_EFORMAT, "SA_PEERS: position %u listed twice", pos);
        keys_msg(msg, c->bind, pos, cpk, spk);
        if (crypto_sign_verify_detached(sig, msg, sizeof(msg), c->roster.pk[c->members[pos]]))
            return cit_err_set(err, CIT_EFORMAT,
                               "SA_PEERS: the keys of position %u (roster %u) are not signed by "
                               "its identity: the coordinator altered or forged them",
                               pos, c->members[pos]);
        if (!memcmp(cpk, spk, 32))
            return cit_err_set(err, CIT_EFORMAT, "SA_PEERS: position %u uses one key twice", pos);
        memcpy(p->c_pk, cpk, 32);
        memcpy(p->s_pk, spk, 32);
        p->keys = 1;
        got++;
        crypto_hash_sha256_update(&c->keys_h, msg, sizeof(msg));
    }
    if ((rc = fl_rd_end(r))) return rc;
    if (got + 1 < c->t)
        return cit_err_set(err, CIT_ERANGE, "SA_PEERS: %u neighbours left, %u needed", got,
                           c->t - 1);
    /* share b and s_sk among ourselves and the neighbours that answered */
    randombytes_buf(c->b, 32);
    sh_b = cit_malloc((size_t)(got + 1) * 32);
    sh_s = cit_malloc((size_t)(got + 1) * 32);
    if (!sh_b || !sh_s) {
        rc = CIT_ENOMEM;
        goto out;
    }
    for (int i = 0; i < c->npeers; i++) nbv[i] = c->peers[i].pos;
    xs[h++] = c->my_x;
    for (int i = 0; i < c->npeers; i++)
        if (c->peers[i].keys) xs[h++] = holder_x(c->me, nbv, c->npeers, c->peers[i].pos);
    fl_shamir_split(c->b, (int)c->t, xs, h, sh_b);
    fl_shamir_split(c->s_sk, (int)c->t, xs, h, sh_s);
    memcpy(c->my_b_share, sh_b[0], 32);
    fl_wr_begin(&w, out, FL_MSG_SA_SHARES);
    fl_wr_bytes(&w, c->bind, BIND);
    fl_wr_u32(&w, got);
    h = 1;
    for (int i = 0; i < c->npeers; i++) {
        struct peer *p = &c->peers[i];
        uint8_t key[32], plain[FL_SA_PLAIN], box[FL_SA_BOX], ad[BIND + 8];
        unsigned long long clen;
        if (!p->keys) continue;
        if (box_key(key, c->c_sk, p->c_pk, c->bind)) {
            rc = cit_err_set(err, CIT_EFORMAT, "SA_PEERS: position %u sent a degenerate key",
                             p->pos);
            goto out;
        }
        le32(plain, c->me);
        le32(plain + 4, p->pos);
        plain[8] = xs[h];
        memcpy(plain + 9, sh_b[h], 32);
        memcpy(plain + 41, sh_s[h], 32);
        h++;
        randombytes_buf(box, 24);
        box_ad(ad, c->bind, c->me, p->pos);
        crypto_aead_xchacha20poly1305_ietf_encrypt(box + 24, &clen, plain, sizeof(plain), ad,
                                                   sizeof(ad), NULL, box, key);
        sodium_memzero(plain, sizeof(plain));
        sodium_memzero(key, sizeof(key));
        fl_wr_u32(&w, p->pos);
        fl_wr_bytes(&w, box, sizeof(box));
        crypto_hash_sha256_update(&c->shares_h, box, sizeof(box));
    }
    rc = fl_wr_end(&w);
    c->st = C_INBOX;
out:
    if (sh_b) sodium_memzero(sh_b, (size_t)(got + 1) * 32);
    if (sh_s) sodium_memzero(sh_s, (size_t)(got + 1) * 32);
    cit_free(sh_b);
    cit_free(sh_s);
    return rc;
}

static int c_inbox(struct fl_sa_client *c, struct fl_rd *r, struct cit_buf *out,
                   struct cit_err *err)
{
    uint32_t cnt, got = 0, *y = NULL;
    struct fl_wr w;
    int rc = rd_binding(r, c->bind, err);
    if (rc) return rc;
    cnt = fl_rd_count(r, (uint32_t)c->npeers, 4 + FL_SA_BOX, "boxes");
    for (uint32_t i = 0; i < cnt && !r->failed; i++) {
        uint32_t from = fl_rd_u32(r, "from");
        const uint8_t *box = fl_rd_bytes(r, FL_SA_BOX, "box");
        struct peer *p = find_peer(c, from);
        uint8_t key[32], plain[FL_SA_PLAIN], ad[BIND + 8], nbv_x;
        uint32_t nbv[MAX_K];
        unsigned long long plen;
        int m;
        if (r->failed) break;
        if (!p || !p->keys)
            return cit_err_set(err, CIT_EFORMAT,
                               "SA_INBOX: a box from position %u, which is not a neighbour that "
                               "sent keys",
                               from);
        if (p->shared) return cit_err_set(err, CIT_EFORMAT, "SA_INBOX: two boxes from %u", from);
        if (box_key(key, c->c_sk, p->c_pk, c->bind)) return CIT_EFORMAT;
        box_ad(ad, c->bind, from, c->me);
        rc = crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL, box + 24,
                                                        FL_SA_BOX - 24, ad, sizeof(ad), box, key);
        sodium_memzero(key, sizeof(key));
        if (rc)
            return cit_err_set(err, CIT_EFORMAT,
                               "SA_INBOX: the box from position %u does not open (altered in "
                               "transit or not for this round)",
                               from);
        m = fl_sa_neighbours(c->bind, c->n, c->k, from, nbv);
        if (m < 0) return CIT_ENOMEM;
        nbv_x = holder_x(from, nbv, m, c->me);
        if (plen != FL_SA_PLAIN || ld32(plain) != from || ld32(plain + 4) != c->me ||
            plain[8] != nbv_x || !nbv_x) {
            sodium_memzero(plain, sizeof(plain));
            return cit_err_set(err, CIT_EFORMAT,
                               "SA_INBOX: the box from %u is not addressed as "
                               "it should be",
                               from);
        }
        p->x = plain[8];
        memcpy(p->b_share, plain + 9, 32);
        memcpy(p->s_share, plain + 41, 32);
        sodium_memzero(plain, sizeof(plain));
        p->shared = 1;
        got++;
        crypto_hash_sha256_update(&c->shares_h, box, FL_SA_BOX);
    }
    if ((rc = fl_rd_end(r))) return rc;
    if (got + 1 < c->t)
        return cit_err_set(err, CIT_ERANGE, "SA_INBOX: shares from %u neighbours, %u needed", got,
                           c->t - 1);
    /* y = x + PRG(b) + sum of +-PRG(s_uv) over the neighbours that shared */
    y = cit_malloc((size_t)c->d * sizeof(uint32_t));
    if (!y) return CIT_ENOMEM;
    memcpy(y, c->input, (size_t)c->d * sizeof(uint32_t));
    {
        uint8_t seeds[MAX_K + 1][32];
        int signs[MAX_K + 1], m = 0;
        memcpy(seeds[m], c->b, 32);
        signs[m++] = +1;
        for (int i = 0; i < c->npeers; i++) {
            struct peer *p = &c->peers[i];
            if (!p->shared) continue;
            if (pair_seed(seeds[m], c->s_sk, p->s_pk, c->bind)) {
                rc = cit_err_set(err, CIT_EFORMAT, "position %u has a degenerate key", p->pos);
                break;
            }
            signs[m++] = c->me < p->pos ? +1 : -1;
        }
        if (!rc) rc = fl_masks_apply((const uint8_t(*)[32])seeds, signs, m, y, c->d);
        sodium_memzero(seeds, sizeof(seeds));
        if (rc) {
            cit_free(y);
            return rc;
        }
    }
    fl_wr_begin(&w, out, FL_MSG_SA_MASKED);
    fl_wr_bytes(&w, c->bind, BIND);
    fl_wr_u32s(&w, y, c->d);
    fl_sha256(c->tr.masked_digest, (const char *)out->p + out->len - (size_t)c->d * 4,
              (size_t)c->d * 4, NULL, 0, NULL, 0);
    cit_free(y);
    c->st = C_ALIVE;
    return fl_wr_end(&w);
}

static int c_alive(struct fl_sa_client *c, struct fl_rd *r, struct cit_buf *out,
                   struct cit_err *err)
{
    uint8_t sig[64];
    uint32_t cnt, prev = 0;
    struct fl_wr w;
    int rc = rd_binding(r, c->bind, err);
    if (rc) return rc;
    cnt = fl_rd_count(r, c->n, 4, "alive");
    for (uint32_t i = 0; i < cnt && !r->failed; i++) {
        uint32_t pos = fl_rd_u32(r, "position");
        if (r->failed) break;
        if (pos >= c->n || (i && pos <= prev))
            return cit_err_set(err, CIT_EFORMAT,
                               "SA_ALIVE: positions must ascend below n (%u "
                               "after %u)",
                               pos, prev);
        c->alive[pos] = 1;
        prev = pos;
    }
    if ((rc = fl_rd_end(r))) return rc;
    if (!c->alive[c->me])
        return cit_err_set(err, CIT_EFORMAT,
                           "SA_ALIVE: this node sent its masked input but is "
                           "not listed");
    if (cnt < c->t)
        return cit_err_set(err, CIT_ERANGE, "SA_ALIVE: %u clients left, %u needed", cnt, c->t);
    for (int i = 0; i < c->npeers; i++)
        if (c->alive[c->peers[i].pos] && !c->peers[i].shared)
            return cit_err_set(err, CIT_EFORMAT,
                               "SA_ALIVE: neighbour %u is listed alive but its shares never "
                               "reached this node: the lists are inconsistent",
                               c->peers[i].pos);
    if ((rc = alive_msg(&c->alive_stmt, c->bind, c->alive, c->n))) return rc;
    crypto_sign_detached(sig, NULL, (const uint8_t *)c->alive_stmt.p, c->alive_stmt.len, c->id_sk);
    fl_wr_begin(&w, out, FL_MSG_SA_SIGN);
    fl_wr_bytes(&w, c->bind, BIND);
    fl_wr_bytes(&w, sig, 64);
    c->st = C_SIGS;
    return fl_wr_end(&w);
}

static int c_sigs(struct fl_sa_client *c, struct fl_rd *r, struct cit_buf *out, struct cit_err *err)
{
    uint8_t *seen = NULL;
    uint32_t cnt, ok = 0, reveals = 1;
    size_t slot;
    struct fl_wr w;
    int rc = rd_binding(r, c->bind, err);
    if (rc) return rc;
    cnt = fl_rd_count(r, (uint32_t)c->npeers + 1, 4 + 64, "signatures");
    seen = cit_calloc(c->n, 1);
    if (!seen) return CIT_ENOMEM;
    for (uint32_t i = 0; i < cnt && !r->failed; i++) {
        uint32_t pos = fl_rd_u32(r, "position");
        const uint8_t *sig = fl_rd_bytes(r, 64, "signature");
        if (r->failed) break;
        if (pos >= c->n || !c->alive[pos] || seen[pos] || (pos != c->me && !find_peer(c, pos))) {
            cit_free(seen);
            return cit_err_set(err, CIT_EFORMAT,
                               "SA_SIGS: signer %u is not an alive neighbour, "
                               "or twice",
                               pos);
        }
        seen[pos] = 1;
        if (crypto_sign_verify_detached(sig, (const uint8_t *)c->alive_stmt.p, c->alive_stmt.len,
                                        c->roster.pk[c->members[pos]])) {
            cit_free(seen);
            return cit_err_set(err, CIT_EFORMAT,
                               "SA_SIGS: position %u signed a different list of survivors: the "
                               "coordinator told clients different dropout lists",
                               pos);
        }
        ok++;
    }
    cit_free(seen);
    if ((rc = fl_rd_end(r))) return rc;
    if (ok < c->t)
        return cit_err_set(err, CIT_ERANGE,
                           "SA_SIGS: %u signatures on the survivor list, %u "
                           "needed",
                           ok, c->t);
    /* reveal: b's share for a survivor, s_sk's share for a dropout, never both */
    fl_wr_begin(&w, out, FL_MSG_SA_REVEAL);
    fl_wr_bytes(&w, c->bind, BIND);
    slot = fl_wr_slot(&w);
    fl_wr_u32(&w, c->me);
    fl_wr_u8(&w, 1);
    fl_wr_u8(&w, c->my_x);
    fl_wr_bytes(&w, c->my_b_share, 32);
    for (int i = 0; i < c->npeers; i++) {
        struct peer *p = &c->peers[i];
        int survivor;
        if (!p->shared) continue;
        survivor = c->alive[p->pos];
        fl_wr_u32(&w, p->pos);
        fl_wr_u8(&w, survivor ? 1 : 2);
        fl_wr_u8(&w, p->x);
        fl_wr_bytes(&w, survivor ? p->b_share : p->s_share, 32);
        reveals++;
    }
    fl_wr_fill(&w, slot, reveals);
    /* what was not revealed is of no further use */
    for (int i = 0; i < c->npeers; i++) {
        sodium_memzero(c->peers[i].b_share, 32);
        sodium_memzero(c->peers[i].s_share, 32);
    }
    c->st = C_DONE_WAIT;
    return fl_wr_end(&w);
}

static int c_done(struct fl_sa_client *c, struct fl_rd *r, struct cit_err *err)
{
    uint32_t cnt, alive = 0;
    const uint8_t *dg;
    int rc = rd_binding(r, c->bind, err);
    if (rc) return rc;
    cnt = fl_rd_u32(r, "contributors");
    dg = fl_rd_bytes(r, 32, "sum digest");
    if ((rc = fl_rd_end(r))) return rc;
    for (uint32_t i = 0; i < c->n; i++) alive += c->alive[i];
    if (cnt != alive)
        return cit_err_set(err, CIT_EFORMAT, "SA_DONE: %u contributors, the signed list has %u",
                           cnt, alive);
    c->tr.contributors = cnt;
    memcpy(c->tr.sum_digest, dg, 32);
    c->st = C_DONE;
    return 0;
}

int fl_sa_client_step(struct fl_sa_client *c, const uint8_t *frame, size_t len,
                      struct cit_buf *reply, struct cit_err *err)
{
    static const int expect[] = {
        [C_SETUP] = FL_MSG_SA_SETUP, [C_PEERS] = FL_MSG_SA_PEERS, [C_INBOX] = FL_MSG_SA_INBOX,
        [C_ALIVE] = FL_MSG_SA_ALIVE, [C_SIGS] = FL_MSG_SA_SIGS,   [C_DONE_WAIT] = FL_MSG_SA_DONE,
    };
    struct fl_rd r;
    int rc;
    reply->len = 0;
    if (err) err->msg[0] = 0; /* an abort must not carry an earlier step's reason */
    if (c->st == C_ABORTED)
        return cit_err_set(err, CIT_EINVAL, "this round was aborted; nothing more is answered");
    if (c->st == C_DONE) {
        rc = cit_err_set(err, CIT_EFORMAT, "a frame after the round ended (a replay)");
        goto abort;
    }
    rc = fl_rd_begin(&r, frame, len, err);
    if (rc) goto abort;
    if (r.type == FL_MSG_ABORT) {
        c->st = C_ABORTED;
        return cit_err_set(err, CIT_EINVAL, "the coordinator aborted the round: %.*s",
                           (int)(len - FL_HDR > FL_ABORT_MAX ? FL_ABORT_MAX : len - FL_HDR),
                           (const char *)frame + FL_HDR);
    }
    if (r.type != expect[c->st]) {
        rc = cit_err_set(err, CIT_EFORMAT, "%s where %s was due (a replay or a skipped stage)",
                         fl_msg_name(r.type), fl_msg_name(expect[c->st]));
        goto abort;
    }
    switch (c->st) {
    case C_SETUP:
        rc = c_setup(c, &r, reply, err);
        break;
    case C_PEERS:
        rc = c_peers(c, &r, reply, err);
        break;
    case C_INBOX:
        rc = c_inbox(c, &r, reply, err);
        break;
    case C_ALIVE:
        rc = c_alive(c, &r, reply, err);
        break;
    case C_SIGS:
        rc = c_sigs(c, &r, reply, err);
        break;
    default:
        rc = c_done(c, &r, err);
        break;
    }
    if (!rc) {
        if (c->st == C_DONE) {
            crypto_hash_sha256_final(&c->keys_h, c->tr.keys_digest);
            crypto_hash_sha256_final(&c->shares_h, c->tr.shares_digest);
        }
        return 0;
    }
abort:
    c->st = C_ABORTED;
    sodium_memzero(c->b, 32);
    sodium_memzero(c->s_sk, 32);
    sodium_memzero(c->c_sk, 32);
    sodium_memzero(c->my_b_share, 32);
    if (c->peers) sodium_memzero(c->peers, (size_t)c->npeers * sizeof(*c->peers));
    fl_abort_frame(reply, err && err->msg[0] ? err->msg : cit_strerror(rc));
    return rc ? rc : CIT_EFORMAT;
}

/* ================= coordinator ================= */

/* A position's level is the last stage it completed: 1 sent keys (U1),
 * 2 sent shares (U2), 3 sent its masked input (U3), 4 signed the survivor
 * list (U4), 5 revealed (U5). Stage s asks the positions at level s - 1. */
enum sstage { S_SETUP, S_PEERS, S_INBOX, S_ALIVE, S_SIGS, S_DONE, S_FAILED };

struct reveal {
    int count;
    uint8_t x[MAX_K + 1];
    uint8_t share[MAX_K + 1][32];
};

struct sclient {
    uint8_t c_pk[32], s_pk[32], keysig[64], alivesig[64];
    uint8_t masked_digest[32];
    uint8_t *boxes;   /* (nnb, FL_SA_BOX) to each neighbour, by neighbour rank */
    uint8_t *has_box; /* (nnb) */
};

struct fl_sa_server {
    uint8_t bind[BIND];
    struct fl_roster roster;
    uint32_t n, k, t, d;
    uint32_t *members;           /* (n) */
    uint32_t *nb;                /* (n, k) neighbours, ascending */
    int *nnb;                    /* (n) */
    int *level, *answered, *bad; /* (n) */
    struct sclient *cl;          /* (n) */
    struct reveal *rev;          /* (n) shares revealed of each position's secret */
    int *rev_kind;               /* (n) 1 seed, 2 key */
    uint32_t *sum;               /* (d) */
    struct cit_buf alive_stmt;
    enum sstage st;
    struct fl_sa_transcript tr;
};

void fl_sa_server_free(struct fl_sa_server *s)
{
    if (!s) return;
    if (s->cl)
        for (uint32_t i = 0; i < s->n; i++) {
            cit_free(s->cl[i].boxes);
            cit_free(s->cl[i].has_box);
        }
    if (s->rev) sodium_memzero(s->rev, s->n * sizeof(*s->rev));
    cit_free(s->rev);
    cit_free(s->rev_kind);
    cit_free(s->cl);
    cit_free(s->members);
    cit_free(s->nb);
    cit_free(s->nnb);
    cit_free(s->level);
    cit_free(s->answered);
    cit_free(s->bad);
    cit_free(s->sum);
    cit_buf_free(&s->alive_stmt);
    cit_free(s);
}

int fl_sa_server_new(const struct fl_sa_params *p, const struct fl_roster *roster,
                     struct fl_sa_server **out, struct cit_err *err)
{
    struct fl_sa_server *s;
    int rc = params_check(p->n, p->k, p->t, p->d, err);
    if (rc) return rc;
    if (sodium_init() < 0) return CIT_ENOTSUP;
    for (uint32_t i = 0; i < p->n; i++) {
        if (p->members[i] >= (uint32_t)roster->n)
            return cit_err_set(err, CIT_EINVAL, "member %u: roster index %u of %d", i,
                               p->members[i], roster->n);
        for (uint32_t j = 0; j < i; j++)
            if (p->members[j] == p->members[i])
                return cit_err_set(err, CIT_EINVAL, "roster index %u listed twice", p->members[i]);
    }
    s = cit_calloc(1, sizeof(*s));
    if (!s) return CIT_ENOMEM;
    s->n = p->n;
    s->k = p->k;
    s->t = p->t;
    s->d = p->d;
    s->roster = *roster;
    put_binding(s->bind, p->session, p->round);
    s->members = cit_malloc(p->n * sizeof(uint32_t));
    s->nb = cit_malloc((size_t)p->n * (p->k ? p->k : 1) * sizeof(uint32_t));
    s->nnb = cit_calloc(p->n, sizeof(int));
    s->level = cit_calloc(p->n, sizeof(int));
    s->answered = cit_calloc(p->n, sizeof(int));
    s->bad = cit_calloc(p->n, sizeof(int));
    s->cl = cit_calloc(p->n, sizeof(*s->cl));
    s->sum = cit_calloc(p->d, sizeof(uint32_t));
    if (!s->members || !s->nb || !s->nnb || !s->level || !s->answered || !s->bad || !s->cl ||
        !s->sum)
        goto nomem;
    memcpy(s->members, p->members, p->n * sizeof(uint32_t));
    for (uint32_t i = 0; i < p->n; i++) {
        int m = fl_sa_neighbours(p->session, p->n, p->k, i, s->nb + (size_t)i * p->k);
        if (m < 0) goto nomem;
        s->nnb[i] = m;
    }
    s->tr.n = p->n;
    *out = s;
    return 0;
nomem:
    fl_sa_server_free(s);
    return CIT_ENOMEM;
}

static const uint32_t *nbs(const struct fl_sa_server *s, uint32_t i)
{
    return s->nb + (size_t)i * s->k;
}

/* Rank of j among i's neighbours, or -1. */
static int nb_rank(const struct fl_sa_server *s, uint32_t i, uint32_t j)
{
    const uint32_t *v = nbs(s, i);
    for (int r = 0; r < s->nnb[i]; r++)
        if (v[r] == j) return r;
    return -1;
}

/* i is asked in the stage for level lvl: it got there and broke nothing.
 * The lists sent to clients use the level alone, fixed when the stage
 * opened, so every client of a stage is told the same thing. */
static int in_set(const struct fl_sa_server *s, uint32_t i, int lvl)
{
    return s->level[i] >= lvl && !s->bad[i];
}

int fl_sa_server_alive(const struct fl_sa_server *s, uint32_t i)
{
    return i < s->n && s->st != S_FAILED && in_set(s, i, (int)s->st);
}

int fl_sa_server_send(struct fl_sa_server *s, uint32_t i, struct cit_buf *out)
{
    struct fl_wr w;
    uint32_t cnt = 0;
    size_t slot = 0; /* where the entry count goes; 0: this frame has none */
    out->len = 0;
    if (i >= s->n || s->st == S_FAILED || !in_set(s, i, (int)s->st)) return 0;
    switch (s->st) {
    case S_SETUP:
        fl_wr_begin(&w, out, FL_MSG_SA_SETUP);
        fl_wr_bytes(&w, s->bind, BIND);
        fl_wr_u32(&w, s->n);
        fl_wr_u32(&w, s->k);
        fl_wr_u32(&w, s->t);
        fl_wr_u32(&w, s->d);
        fl_wr_u32(&w, i);
        fl_wr_u32(&w, s->n);
        for (uint32_t j = 0; j < s->n; j++) fl_wr_u32(&w, s->members[j]);
        break;
    case S_PEERS:
        fl_wr_begin(&w, out, FL_MSG_SA_PEERS);
        fl_wr_bytes(&w, s->bind, BIND);
        slot = fl_wr_slot(&w);
        for (int r = 0; r < s->nnb[i]; r++) {
            uint32_t j = nbs(s, i)[r];
            if (s->level[j] < 1) continue;
            fl_wr_u32(&w, j);
            fl_wr_bytes(&w, s->cl[j].c_pk, 32);
            fl_wr_bytes(&w, s->cl[j].s_pk, 32);
            fl_wr_bytes(&w, s->cl[j].keysig, 64);
            cnt++;
        }
        break;
    case S_INBOX:
        fl_wr_begin(&w, out, FL_MSG_SA_INBOX);
        fl_wr_bytes(&w, s->bind, BIND);
        slot = fl_wr_slot(&w);
        for (int r = 0; r < s->nnb[i]; r++) {
            uint32_t j = nbs(s, i)[r];
            int q = nb_rank(s, j, i);
            if (s->level[j] < 2 || q < 0 || !s->cl[j].has_box[q]) continue;
            fl_wr_u32(&w, j);
            fl_wr_bytes(&w, s->cl[j].boxes + (size_t)q * FL_SA_BOX, FL_SA_BOX);
            cnt++;
        }
        break;
    case S_ALIVE:
        fl_wr_begin(&w, out, FL_MSG_SA_ALIVE);
        fl_wr_bytes(&w, s->bind, BIND);
        slot = fl_wr_slot(&w);
        for (uint32_t j = 0; j < s->n; j++)
            if (s->level[j] >= 3) {
                fl_wr_u32(&w, j);
                cnt++;
            }
        break;
    case S_SIGS: /* the signatures of i's holders (itself and its neighbours): what i checks */
        fl_wr_begin(&w, out, FL_MSG_SA_SIGS);
        fl_wr_bytes(&w, s->bind, BIND);
        slot = fl_wr_slot(&w);
        for (int r = -1; r < s->nnb[i]; r++) {
            uint32_t j = r < 0 ? i : nbs(s, i)[r];
            if (s->level[j] < 4) continue;
            fl_wr_u32(&w, j);
            fl_wr_bytes(&w, s->cl[j].alivesig, 64);
            cnt++;
        }
        break;
    default:
        fl_wr_begin(&w, out, FL_MSG_SA_DONE);
        fl_wr_bytes(&w, s->bind, BIND);
        fl_wr_u32(&w, s->tr.contributors);
        fl_wr_bytes(&w, s->tr.sum_digest, 32);
        break;
    }
    if (slot) fl_wr_fill(&w, slot, cnt);
    return fl_wr_end(&w);
}

static int s_keys(struct fl_sa_server *s, uint32_t i, struct fl_rd *r, struct cit_err *err)
{
    uint8_t msg[KEYS_MSG];
    const uint8_t *cpk = fl_rd_bytes(r, 32, "c_pk"), *spk = fl_rd_bytes(r, 32, "s_pk");
    const uint8_t *sig = fl_rd_bytes(r, 64, "signature");
    int rc = fl_rd_end(r);
    if (rc) return rc;
    keys_msg(msg, s->bind, i, cpk, spk);
    if (crypto_sign_verify_detached(sig, msg, sizeof(msg), s->roster.pk[s->members[i]]))
        return cit_err_set(err, CIT_EFORMAT, "SA_KEYS from position %u: bad identity signature", i);
    if (!memcmp(cpk, spk, 32))
        return cit_err_set(err, CIT_EFORMAT, "SA_KEYS from position %u: one key twice", i);
    memcpy(s->cl[i].c_pk, cpk, 32);
    memcpy(s->cl[i].s_pk, spk, 32);
    memcpy(s->cl[i].keysig, sig, 64);
    return 0;
}

static int s_shares(struct fl_sa_server *s, uint32_t i, struct fl_rd *r, struct cit_err *err)
{
    struct sclient *c = &s->cl[i];
    uint32_t want = 0, cnt;
    int nn = s->nnb[i];
    for (int q = 0; q < nn; q++) want += s->level[nbs(s, i)[q]] >= 1;
    cnt = fl_rd_count(r, (uint32_t)nn, 4 + FL_SA_BOX, "boxes");
    if (r->failed) return CIT_EFORMAT;
    if (cnt != want)
        return cit_err_set(err, CIT_EFORMAT, "SA_SHARES from %u: %u boxes for %u neighbours", i,
                           cnt, want);
    c->boxes = cit_malloc((size_t)(nn ? nn : 1) * FL_SA_BOX);
    c->has_box = cit_calloc((size_t)(nn ? nn : 1), 1);
    if (!c->boxes || !c->has_box) return CIT_ENOMEM;
    for (uint32_t e = 0; e < cnt; e++) {
        uint32_t to = fl_rd_u32(r, "to");
        const uint8_t *box = fl_rd_bytes(r, FL_SA_BOX, "box");
        int q;
        if (r->failed) break;
        q = nb_rank(s, i, to);
        if (q < 0 || s->level[to] < 1 || c->has_box[q])
            return cit_err_set(err, CIT_EFORMAT,
                               "SA_SHARES from %u: a box for %u, who is not "
                               "a neighbour with keys, or twice",
                               i, to);
        memcpy(c->boxes + (size_t)q * FL_SA_BOX, box, FL_SA_BOX);
        c->has_box[q] = 1;
    }
    return fl_rd_end(r);
}

static int s_masked(struct fl_sa_server *s, uint32_t i, struct fl_rd *r, struct cit_err *err)
{
    const uint8_t *y;
    if (r->n - r->off != (size_t)s->d * 4)
        return cit_err_set(err, CIT_EFORMAT, "SA_MASKED from %u: %zu bytes for d = %u", i,
                           r->n - r->off, s->d);
    y = fl_rd_bytes(r, (size_t)s->d * 4, "masked input");
    for (uint32_t j = 0; j < s->d; j++) {
        uint32_t v;
        memcpy(&v, y + 4 * (size_t)j, 4);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
        v = __builtin_bswap32(v);
#endif
        s->sum[j] += v;
    }
    fl_sha256(s->cl[i].masked_digest, y, (size_t)s->d * 4, NULL, 0, NULL, 0);
    return fl_rd_end(r);
}

static int s_sign(struct fl_sa_server *s, uint32_t i, struct fl_rd *r, struct cit_err *err)
{
    const uint8_t *sig = fl_rd_bytes(r, 64, "signature");
    int rc = fl_rd_end(r);
    if (rc) return rc;
    if (crypto_sign_verify_detached(sig, (const uint8_t *)s->alive_stmt.p, s->alive_stmt.len,
                                    s->roster.pk[s->members[i]]))
        return cit_err_set(err, CIT_EFORMAT, "SA_SIGN from %u: not a signature on the list", i);
    memcpy(s->cl[i].alivesig, sig, 64);
    return 0;
}

static int s_reveal(struct fl_sa_server *s, uint32_t i, struct fl_rd *r, struct cit_err *err)
{
    uint32_t cnt = fl_rd_count(r, (uint32_t)s->nnb[i] + 1, 4 + 1 + 1 + 32, "reveals");
    uint8_t seen[MAX_K + 1] = {0};
    for (uint32_t e = 0; e < cnt && !r->failed; e++) {
        uint32_t v = fl_rd_u32(r, "owner");
        uint8_t kind = fl_rd_u8(r, "kind"), x = fl_rd_u8(r, "x");
        const uint8_t *sh = fl_rd_bytes(r, 32, "share");
        int q = v == i ? s->nnb[i] : nb_rank(s, i, v);
        struct reveal *rv;
        if (r->failed) break;
        if (q < 0 || seen[q] || v >= s->n || s->level[v] < 2)
            return cit_err_set(err, CIT_EFORMAT,
                               "SA_REVEAL from %u: a share of %u, which it "
                               "does not hold, or twice",
                               i, v);
        seen[q] = 1;
        if (v != i && !s->cl[v].has_box[nb_rank(s, v, i)])
            return cit_err_set(err, CIT_EFORMAT, "SA_REVEAL from %u: %u never sent it a share", i,
                               v);
        if (kind != (s->level[v] >= 3 ? 1 : 2) || x != holder_x(v, nbs(s, v), s->nnb[v], i))
            return cit_err_set(err, CIT_EFORMAT,
                               "SA_REVEAL from %u: wrong kind or coordinate "
                               "for %u",
                               i, v);
        rv = &s->rev[v];
        if (rv->count > MAX_K) return CIT_EFORMAT;
        rv->x[rv->count] = x;
        memcpy(rv->share[rv->count], sh, 32);
        rv->count++;
        s->rev_kind[v] = kind;
    }
    return fl_rd_end(r);
}

int fl_sa_server_recv(struct fl_sa_server *s, uint32_t i, const uint8_t *frame, size_t len,
                      struct cit_err *err)
{
    static const int expect[] = {FL_MSG_SA_KEYS, FL_MSG_SA_SHARES, FL_MSG_SA_MASKED, FL_MSG_SA_SIGN,
                                 FL_MSG_SA_REVEAL};
    struct fl_rd r;
    int rc;
    if (i >= s->n) return cit_err_set(err, CIT_EINVAL, "position %u of %u", i, s->n);
    if (s->st >= S_DONE || !in_set(s, i, (int)s->st))
        return cit_err_set(err, CIT_EINVAL, "position %u is not in this stage", i);
    if (s->answered[i]) {
        rc = cit_err_set(err, CIT_EFORMAT, "position %u answered twice", i);
        goto drop;
    }
    if ((rc = fl_rd_begin(&r, frame, len, err))) goto drop;
    if (r.type == FL_MSG_ABORT) {
        rc = cit_err_set(err, CIT_EINVAL, "position %u aborted: %.*s", i,
                         (int)(len - FL_HDR > FL_ABORT_MAX ? FL_ABORT_MAX : len - FL_HDR),
                         (const char *)frame + FL_HDR);
        goto drop;
    }
    if (r.type != expect[s->st]) {
        rc = cit_err_set(err, CIT_EFORMAT, "position %u sent %s where %s was due", i,
                         fl_msg_name(r.type), fl_msg_name(expect[s->st]));
        goto drop;
    }
    if ((rc = rd_binding(&r, s->bind, err))) goto drop;
    switch (s->st) {
    case S_SETUP:
        rc = s_keys(s, i, &r, err);
        break;
    case S_PEERS:
        rc = s_shares(s, i, &r, err);
        break;
    case S_INBOX:
        rc = s_masked(s, i, &r, err);
        break;
    case S_ALIVE:
        rc = s_sign(s, i, &r, err);
        break;
    default:
        rc = s_reveal(s, i, &r, err);
        break;
    }
    if (rc) goto drop;
    s->answered[i] = 1;
    return 0;
drop:
    /* A reveal that fails halfway may have stored some shares; the position
     * is dropped, and shares it stored are still genuine shares (each was
     * checked), so the rebuild stays correct. A masked input that fails its
     * checks is never added. */
    s->bad[i] = 1;
    return rc ? rc : CIT_EFORMAT;
}

static int fail(struct fl_sa_server *s, int rc)
{
    s->st = S_FAILED;
    memset(s->sum, 0, (size_t)s->d * sizeof(uint32_t));
    return rc;
}

/* Masks to remove, applied MASK_BATCH at a time in one pass over the sum. */
#define MASK_BATCH 64
struct pending {
    uint8_t seed[MASK_BATCH][32];
    int sign[MASK_BATCH], n;
};

static int pend(struct fl_sa_server *s, struct pending *p, const uint8_t seed[32], int sign)
{
    int rc = 0;
    if (seed) {
        memcpy(p->seed[p->n], seed, 32);
        p->sign[p->n++] = sign;
    }
    if (p->n == MASK_BATCH || (!seed && p->n)) {
        rc = fl_masks_apply((const uint8_t(*)[32])p->seed, p->sign, p->n, s->sum, s->d);
        sodium_memzero(p->seed, sizeof(p->seed));
        p->n = 0;
    }
    return rc;
}

/* Removes every mask from the sum. */
static int unmask(struct fl_sa_server *s, struct cit_err *err)
{
    struct pending pb, *pp = &pb; /* 2.3 KiB on the stack */
    uint8_t secret[32], seed[32], pk[32];
    int rc = 0;
    pp->n = 0;
    for (uint32_t v = 0; v < s->n; v++) {
        struct reveal *rv = &s->rev[v];
        if (s->level[v] < 2) continue;
        if (s->level[v] >= 3) { /* a contributor: remove its self-mask */
            if (rv->count < (int)s->t || s->rev_kind[v] != 1) {
                rc = cit_err_set(err, CIT_ERANGE,
                                 "the mask seed of position %u: %d of %u "
                                 "shares came back",
                                 v, rv->count, s->t);
                goto out;
            }
            if (fl_shamir_combine(rv->x, (const uint8_t(*)[32])rv->share, (int)s->t, secret)) {
                rc = cit_err_set(err, CIT_EFORMAT, "position %u: repeated share coordinates", v);
                goto out;
            }
            if ((rc = pend(s, pp, secret, -1))) goto out;
        } else { /* shared but sent no input: remove its pairwise masks */
            const uint32_t *nv = nbs(s, v);
            if (rv->count < (int)s->t || s->rev_kind[v] != 2) {
                rc = cit_err_set(err, CIT_ERANGE,
                                 "the mask key of dropped position %u: %d of "
                                 "%u shares came back",
                                 v, rv->count, s->t);
                goto out;
            }
            if (fl_shamir_combine(rv->x, (const uint8_t(*)[32])rv->share, (int)s->t, secret)) {
                rc = cit_err_set(err, CIT_EFORMAT, "position %u: repeated share coordinates", v);
                goto out;
            }
            crypto_scalarmult_base(pk, secret);
            if (sodium_memcmp(pk, s->cl[v].s_pk, 32)) {
                rc = cit_err_set(err, CIT_EFORMAT,
                                 "the shares of dropped position %u do not "
                                 "rebuild its key: a client sent bad shares",
                                 v);
                goto out;
            }
            for (int q = 0; q < s->nnb[v]; q++) {
                uint32_t w = nv[q];
                if (s->level[w] < 3) continue; /* its input is not in the sum */
                if (pair_seed(seed, secret, s->cl[w].s_pk, s->bind)) {
                    rc = CIT_EFORMAT;
                    goto out;
                }
                /* w added +PRG when w < v, -PRG when w > v */
                if ((rc = pend(s, pp, seed, w < v ? -1 : +1))) goto out;
            }
        }
    }
    rc = pend(s, pp, NULL, 0);
out:
    sodium_memzero(secret, sizeof(secret));
    sodium_memzero(seed, sizeof(seed));
    sodium_memzero(pp, sizeof(*pp));
    return rc;
}

int fl_sa_server_advance(struct fl_sa_server *s, struct cit_err *err)
{
    static const char *what[] = {"sent keys", "sent shares", "sent masked inputs",
                                 "signed the survivor list", "revealed shares"};
    uint32_t cnt = 0;
    crypto_hash_sha256_state h;
    int rc, stage = (int)s->st;
    if (s->st == S_FAILED) return cit_err_set(err, CIT_EINVAL, "the round has failed");
    if (s->st == S_DONE) return 0;
    for (uint32_t i = 0; i < s->n; i++) {
        if (in_set(s, i, stage) && s->answered[i]) {
            s->level[i] = stage + 1;
            cnt++;
        }
        s->answered[i] = 0;
    }
    if (cnt < s->t)
        return fail(s, cit_err_set(err, CIT_ERANGE, "only %u clients %s, threshold %u", cnt,
                                   what[stage], s->t));
    crypto_hash_sha256_init(&h);
    switch (s->st) {
    case S_SETUP:
        s->tr.dropped_keys = s->n - cnt;
        for (uint32_t i = 0; i < s->n; i++)
            if (s->level[i] >= 1) {
                uint8_t msg[KEYS_MSG];
                keys_msg(msg, s->bind, i, s->cl[i].c_pk, s->cl[i].s_pk);
                crypto_hash_sha256_update(&h, msg, sizeof(msg));
            }
        crypto_hash_sha256_final(&h, s->tr.keys_digest);
        break;
    case S_PEERS:
        s->tr.dropped_shares = s->n - s->tr.dropped_keys - cnt;
        for (uint32_t i = 0; i < s->n; i++)
            if (s->level[i] >= 2)
                for (int q = 0; q < s->nnb[i]; q++)
                    if (s->cl[i].has_box[q])
                        crypto_hash_sha256_update(&h, s->cl[i].boxes + (size_t)q * FL_SA_BOX,
                                                  FL_SA_BOX);
        crypto_hash_sha256_final(&h, s->tr.shares_digest);
        break;
    case S_INBOX: {
        uint8_t *alive = cit_calloc(s->n, 1);
        if (!alive) return fail(s, CIT_ENOMEM);
        s->tr.dropped_masked = s->n - s->tr.dropped_keys - s->tr.dropped_shares - cnt;
        s->tr.contributors = cnt;
        for (uint32_t i = 0; i < s->n; i++)
            if ((alive[i] = (uint8_t)s->level[i] >= 3))
                crypto_hash_sha256_update(&h, s->cl[i].masked_digest, 32);
        crypto_hash_sha256_final(&h, s->tr.masked_digest);
        rc = alive_msg(&s->alive_stmt, s->bind, alive, s->n);
        cit_free(alive);
        if (rc) return fail(s, rc);
        break;
    }
    case S_ALIVE:
        s->rev = cit_calloc(s->n, sizeof(*s->rev));
        s->rev_kind = cit_calloc(s->n, sizeof(int));
        if (!s->rev || !s->rev_kind) return fail(s, CIT_ENOMEM);
        break;
    default: /* S_SIGS: the reveals are in */
        s->tr.dropped_late = s->tr.contributors - cnt;
        if ((rc = unmask(s, err))) return fail(s, rc);
        fl_sha256(s->tr.sum_digest, s->sum, (size_t)s->d * 4, NULL, 0, NULL, 0);
        sodium_memzero(s->rev, s->n * sizeof(*s->rev));
        s->st = S_DONE;
        return 0;
    }
    s->st = (enum sstage)(stage + 1);
    return 1;
}

const uint32_t *fl_sa_server_sum(const struct fl_sa_server *s, struct fl_sa_transcript *t)
{
    if (s->st != S_DONE) return NULL;
    if (t) *t = s->tr;
    return s->sum;
}
