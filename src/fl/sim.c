/*
 * Secure aggregation with every party in this process: the coordinator's
 * and the clients' state machines exchange the same frames they would over
 * the network, without the network. Simulations, tests and the benchmark
 * use it; the transport drives the same machines.
 */
#include <sodium.h>
#include <string.h>

#include "citadel/fl.h"
#include "fl_int.h"

void fl_sa_default(uint32_t n, uint32_t *k, uint32_t *t)
{
    uint32_t kk, lg = 0;
    if (n <= 16) {
        kk = n - 1;
    } else {
        while ((1u << lg) < n) lg++;
        kk = 2 * lg; /* even, and below n - 1 for every n > 16 */
    }
    *k = kk;
    *t = (kk + 1) / 2 + 1;
}

int fl_sa_simulate(uint32_t n, uint32_t k, uint32_t t, uint32_t d, const uint32_t *const *inputs,
                   const int *drop_at, uint32_t *sum, struct fl_sa_transcript *tr,
                   struct cit_err *err)
{
    struct fl_sa_client **cl = NULL;
    struct fl_sa_server *srv = NULL;
    struct fl_sa_params p = {0};
    struct fl_roster roster;
    struct cit_buf f = {0}, reply = {0};
    uint8_t(*pk)[32] = NULL, (*sk)[64] = NULL;
    uint32_t *members = NULL;
    int rc;
    if (n < 2 || n > FL_MAX_CLIENTS) return cit_err_set(err, CIT_ERANGE, "n = %u", n);
    if (sodium_init() < 0) return CIT_ENOTSUP;
    cl = cit_calloc(n, sizeof(*cl));
    pk = cit_malloc((size_t)n * 32);
    sk = cit_malloc((size_t)n * 64);
    members = cit_malloc((size_t)n * sizeof(uint32_t));
    if (!cl || !pk || !sk || !members) {
        rc = CIT_ENOMEM;
        goto out;
    }
    roster.n = (int)n;
    roster.pk = (const uint8_t(*)[32])pk;
    for (uint32_t i = 0; i < n; i++) {
        crypto_sign_keypair(pk[i], sk[i]);
        members[i] = i;
    }
    for (uint32_t i = 0; i < n; i++) {
        if ((rc = fl_sa_client_new(&roster, i, sk[i], 0, &cl[i]))) goto out;
        if ((rc = fl_sa_client_input(cl[i], inputs[i], d))) goto out;
    }
    randombytes_buf(p.session, 32);
    p.n = n, p.k = k, p.t = t, p.d = d, p.members = members;
    if ((rc = fl_sa_server_new(&p, &roster, &srv, err))) goto out;
    rc = 1;
    for (int stage = 0; rc == 1; stage++) {
        for (uint32_t i = 0; i < n; i++) {
            struct cit_err cerr;
            if (!fl_sa_server_alive(srv, i) || (drop_at && drop_at[i] <= stage)) continue;
            if ((rc = fl_sa_server_send(srv, i, &f))) goto out;
            if (!f.len) continue;
            fl_sa_client_step(cl[i], (const uint8_t *)f.p, f.len, &reply, &cerr);
            if (reply.len) fl_sa_server_recv(srv, i, (const uint8_t *)reply.p, reply.len, &cerr);
        }
        rc = fl_sa_server_advance(srv, err);
    }
    if (rc) goto out;
    memcpy(sum, fl_sa_server_sum(srv, tr), (size_t)d * sizeof(uint32_t));
out:
    for (uint32_t i = 0; cl && i < n; i++) fl_sa_client_free(cl[i]);
    fl_sa_server_free(srv);
    if (sk) sodium_memzero(sk, (size_t)n * 64);
    cit_free(cl);
    cit_free(pk);
    cit_free(sk);
    cit_free(members);
    cit_buf_free(&f);
    cit_buf_free(&reply);
    return rc;
}
