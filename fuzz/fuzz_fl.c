/*
 * Fuzz target for federated learning's parsers.
 *
 * First byte, mod 13:
 *   0..5  a SecAgg+ round of 3 clients runs honestly up to that stage; then
 *         the rest of the input goes to client 0 in place of the
 *         coordinator's frame, and to the coordinator in place of client 1's
 *         reply; the round then runs to its end. Nothing may crash, and
 *         whatever happens, the coordinator's sum, when it has one, is the
 *         sum of the inputs that reached it.
 *   6     the rest is a CSV file
 *   7     the rest is an IDX features file (its labels: one per example)
 *   8     the rest is the body of a TASK frame (fl join's parser), then
 *         of a FINISH frame
 *   9     a model file (fl_model_read)
 *   10    a privacy account (fl_dp_load)
 *   11    a Paillier ciphertext, multiplied into an aggregate
 *   12    a Paillier key share file (fl_pai_load)
 */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "citadel/fl.h"
#include "../src/fl/fl_int.h"

#define N 3
#define D 4

static void write_file(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n) fwrite(p, 1, n, f);
    fclose(f);
}

static void round_with(int at, const uint8_t *data, size_t size)
{
    static uint8_t pk[N][32], sk[N][64];
    static int ready;
    struct fl_roster roster = {N, (const uint8_t(*)[32])pk, NULL};
    struct fl_sa_client *cl[N] = {0};
    struct fl_sa_server *srv = NULL;
    struct fl_sa_params p = {0};
    struct cit_err err;
    struct cit_buf f = {0}, reply = {0};
    uint32_t members[N] = {2, 0, 1}, in[N][D], sent_masked[N] = {0};
    int rc = 1;
    if (!ready) {
        for (int i = 0; i < N; i++) {
            uint8_t seed[32] = {(uint8_t)i};
            crypto_sign_seed_keypair(pk[i], sk[i], seed);
        }
        ready = 1;
    }
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < D; j++) in[i][j] = (uint32_t)(i * 1000 + j);
        if (fl_sa_client_new(&roster, members[i], sk[members[i]], 0, &cl[i]) ||
            fl_sa_client_input(cl[i], in[i], D))
            abort();
    }
    randombytes_buf(p.session, 32);
    p.n = N, p.k = 2, p.t = 2, p.d = D, p.members = members;
    if (fl_sa_server_new(&p, &roster, &srv, &err)) abort();
    for (int stage = 0; rc == 1; stage++) {
        for (uint32_t i = 0; i < N; i++) {
            if (!fl_sa_server_alive(srv, i)) continue;
            fl_sa_server_send(srv, i, &f);
            if (!f.len) continue;
            if (stage == at && i == 0)
                fl_sa_client_step(cl[i], data, size, &reply, &err);
            else
                fl_sa_client_step(cl[i], (const uint8_t *)f.p, f.len, &reply, &err);
            if (stage == at && i == 1) {
                fl_sa_server_recv(srv, i, data, size, &err);
                continue;
            }
            if (!reply.len) continue;
            if (stage == 2 && reply.p[4] == FL_MSG_SA_MASKED) sent_masked[i] = 1;
            fl_sa_server_recv(srv, i, (const uint8_t *)reply.p, reply.len, &err);
        }
        rc = fl_sa_server_advance(srv, &err);
    }
    if (rc == 0) {
        /* whoever is counted contributed: the sum must be exactly theirs */
        const uint32_t *sum = fl_sa_server_sum(srv, NULL);
        for (int j = 0; j < D; j++) {
            uint32_t want = 0;
            for (int i = 0; i < N; i++)
                if (sent_masked[i]) want += in[i][j];
            if (sum[j] != want) abort();
        }
    }
    for (int i = 0; i < N; i++) fl_sa_client_free(cl[i]);
    fl_sa_server_free(srv);
    cit_buf_free(&f);
    cit_buf_free(&reply);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char dir[64];
    char a[128], b[128];
    struct fl_data ds;
    struct cit_err err;
    int mode;
    if (!size) return 0;
    if (!dir[0]) {
        snprintf(dir, sizeof(dir), "/tmp/fuzz_fl.%d", (int)getpid());
        mkdir(dir, 0700);
        if (sodium_init() < 0) abort();
    }
    mode = data[0] % 13;
    data++, size--;
    if (mode < 6) {
        round_with(mode, data, size);
        return 0;
    }
    if (mode == 6) {
        snprintf(a, sizeof(a), "%s/in.csv", dir);
        write_file(a, data, size);
        if (fl_data_load(a, NULL, &ds, &err) == 0) fl_data_free(&ds);
        return 0;
    }
    if (mode == 8) { /* a TASK from a coordinator */
        struct fl_task t;
        uint8_t *f = malloc(FL_HDR + size);
        if (!f) abort();
        memcpy(f, "CFL\x01\x01\0\0\0", 8);
        f[8] = (uint8_t)size, f[9] = (uint8_t)(size >> 8), f[10] = (uint8_t)(size >> 16);
        f[11] = (uint8_t)(size >> 24);
        memcpy(f + FL_HDR, data, size);
        if (fl_task_read(f, FL_HDR + size, &t, &err) == 0) {
            /* what it accepted describes a model it can size and train */
            if (!fl_arch_params(&t.arch, &err) || t.d != fl_arch_params(&t.arch, &err)) abort();
            cit_free(t.w);
        }
        f[4] = FL_MSG_FINISH;
        {
            struct fl_finish fin = {0};
            if (fl_finish_read(f, FL_HDR + size, &fin, &err) == 0) {
                /* a model of d finite numbers, and a sum exactly when a round was aggregated */
                if (!fin.w != !fin.d || !fin.sum != !fin.round || fin.round > fin.rounds) abort();
                for (uint32_t i = 0; i < fin.d; i++)
                    if (!isfinite(fin.w[i])) abort();
                fl_finish_free(&fin);
            } else if (fin.w || fin.sum) {
                abort(); /* nothing is left to free on failure */
            }
        }
        free(f);
        return 0;
    }
    if (mode == 9) { /* a model file */
        float *w;
        size_t d;
        snprintf(a, sizeof(a), "%s/model.idx", dir);
        write_file(a, data, size);
        if (fl_model_read(a, &w, &d, &err) == 0) cit_free(w);
        return 0;
    }
    if (mode == 10) { /* a privacy account */
        struct fl_dp_account acc;
        snprintf(a, sizeof(a), "%s/dp", dir);
        write_file(a, data, size);
        if (fl_dp_load(a, &acc, &err) == 0 && !(fl_dp_epsilon(&acc, 1e-5) >= 0)) abort();
        return 0;
    }
    if (mode == 12) {
        struct fl_pai *k;
        struct fl_pai_share *sh;
        snprintf(a, sizeof(a), "%s/share.paillier", dir);
        write_file(a, data, size);
        if (fl_pai_load(a, &k, &sh, &err) == 0) {
            fl_pai_share_free(sh);
            fl_pai_free(k);
        }
        return 0;
    }
    if (mode == 11) { /* Paillier ciphertexts from a client: any bytes, no crash */
        static struct fl_pai *k;
        static struct fl_pai_share *sh[2];
        uint8_t acc[64], ct[64];
        if (!k && fl_pai_keygen(256, 2, 2, &k, sh, &err)) abort();
        memset(acc, 0, sizeof(acc));
        acc[63] = 1; /* an encryption of 0 with randomness 1 */
        memset(ct, 0, sizeof(ct));
        memcpy(ct, data, size < 64 ? size : 64);
        fl_pai_add(k, acc, ct, 1);
        return 0;
    }
    snprintf(a, sizeof(a), "%s/in.x.idx", dir);
    snprintf(b, sizeof(b), "%s/in.y.idx", dir);
    write_file(a, data, size);
    {
        /* labels for up to 64 examples, all class 1 */
        static const uint8_t y[8 + 64] = {0, 0, 8, 1, 0, 0, 0, 64, 1, 1, 1, 1, 1, 1, 1, 1};
        write_file(b, y, sizeof(y));
    }
    if (fl_data_load(a, NULL, &ds, &err) == 0) fl_data_free(&ds);
    return 0;
}
