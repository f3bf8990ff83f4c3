/* Federated learning: datasets and partitions, trainers, Shamir sharing,
 * and SecAgg+ rounds driven in process through the real wire frames. */
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "../src/fl/fl_int.h"
#include "citadel/fl.h"
#include "test.h"

/* ---- Shamir ---- */

void test_fl_shamir(void)
{
    uint8_t secret[32], xs[10], sh[10][32], got[32], pick_x[6], pick[6][32];
    randombytes_buf(secret, sizeof(secret));
    for (int i = 0; i < 10; i++) xs[i] = (uint8_t)(1 + i * 25);
    fl_shamir_split(secret, 6, xs, 10, sh);
    /* every window of 6 of the 10 shares rebuilds the secret */
    for (int start = 0; start + 6 <= 10; start++) {
        for (int i = 0; i < 6; i++) {
            pick_x[i] = xs[start + i];
            memcpy(pick[i], sh[start + i], 32);
        }
        CHECK(fl_shamir_combine(pick_x, (const uint8_t(*)[32])pick, 6, got) == 0);
        CHECK(memcmp(got, secret, 32) == 0);
    }
    /* 5 shares say nothing: they rebuild some other value */
    CHECK(fl_shamir_combine(xs, (const uint8_t(*)[32])sh, 5, got) == 0);
    CHECK(memcmp(got, secret, 32) != 0);
    /* one altered share changes the result */
    memcpy(pick[0], sh[0], 32);
    pick[0][3] ^= 1;
    memcpy(pick_x, xs, 6);
    for (int i = 1; i < 6; i++) memcpy(pick[i], sh[i], 32);
    CHECK(fl_shamir_combine(pick_x, (const uint8_t(*)[32])pick, 6, got) == 0);
    CHECK(memcmp(got, secret, 32) != 0);
    /* repeated or zero coordinates are refused */
    pick_x[1] = pick_x[0];
    CHECK(fl_shamir_combine(pick_x, (const uint8_t(*)[32])pick, 6, got) == -1);
    pick_x[1] = 0;
    CHECK(fl_shamir_combine(pick_x, (const uint8_t(*)[32])pick, 6, got) == -1);
    /* t = 1 is the secret itself */
    fl_shamir_split(secret, 1, xs, 3, sh);
    CHECK(memcmp(sh[2], secret, 32) == 0);
}

/* ---- datasets ---- */

void test_fl_data(void)
{
    struct fl_data ds, back, sub;
    struct cit_err err = {0};
    char xp[512], yp[512];
    size_t idx[3] = {5, 0, 9999};
    CHECKF(fl_data_load("fashion-mnist-test", NULL, &ds, &err) == 0, "%s", err.msg);
    CHECK(ds.n == 10000 && ds.d == 784 && ds.classes == 10 && ds.u8);
    for (size_t i = 0; i < ds.n * ds.d; i++) CHECK(ds.x[i] >= 0 && ds.x[i] <= 1);
    /* a subset written as IDX comes back bit for bit */
    CHECK(fl_data_subset(&ds, idx, 3, &sub) == 0);
    snprintf(xp, sizeof(xp), "%s/sub.x.idx", t_tmpdir());
    snprintf(yp, sizeof(yp), "%s/sub.y.idx", t_tmpdir());
    CHECKF(fl_data_write(&sub, xp, yp, &err) == 0, "%s", err.msg);
    CHECKF(fl_data_load(xp, NULL, &back, &err) == 0, "%s", err.msg);
    CHECK(back.n == 3 && back.d == 784 && back.u8);
    CHECK(memcmp(back.x, ds.x + 5 * 784, 784 * sizeof(float)) == 0);
    CHECK(memcmp(back.x + 2 * 784, ds.x + 9999 * 784, 784 * sizeof(float)) == 0);
    CHECK(back.y[0] == ds.y[5] && back.y[1] == ds.y[0] && back.y[2] == ds.y[9999]);
    fl_data_free(&back);
    fl_data_free(&sub);
    fl_data_free(&ds);

    CHECKF(fl_data_load("digits", NULL, &ds, &err) == 0, "%s", err.msg);
    CHECK(ds.n == 1797 && ds.d == 64 && ds.classes == 10 && !ds.u8);
    fl_data_standardize(&ds);
    fl_data_free(&ds);
    CHECKF(fl_data_load("breast-cancer", NULL, &ds, &err) == 0, "%s", err.msg);
    CHECK(ds.n == 569 && ds.d == 30 && ds.classes == 2);
    fl_data_free(&ds);

    /* malformed files: a clear error naming what and where */
    {
        static const unsigned char bad_magic[] = {1, 0, 8, 1, 0, 0, 0, 1, 7};
        static const unsigned char bad_type[] = {0, 0, 0x42, 1, 0, 0, 0, 1, 7};
        static const unsigned char short_data[] = {0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3};
        static const unsigned char huge_dim[] = {0,    0,    8,    2,    0xff, 0xff,
                                                 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        static const unsigned char labels2[] = {0, 0, 8, 1, 0, 0, 0, 2, 1, 2};
        static const unsigned char labels_bad[] = {0,    0,    0x0d, 1, 0, 0, 0, 2,
                                                   0x3f, 0xc0, 0,    0, 0, 0, 0, 0};
        static const unsigned char x2[] = {0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 1, 9, 9};
        snprintf(xp, sizeof(xp), "%s/bad.x.idx", t_tmpdir());
        snprintf(yp, sizeof(yp), "%s/bad.y.idx", t_tmpdir());
        CHECK(t_write_file(yp, labels2, sizeof(labels2)) == 0);
        CHECK(t_write_file(xp, bad_magic, sizeof(bad_magic)) == 0);
        CHECK(fl_data_load(xp, NULL, &ds, &err) == CIT_EFORMAT && strstr(err.msg, "magic"));
        CHECK(t_write_file(xp, bad_type, sizeof(bad_type)) == 0);
        CHECK(fl_data_load(xp, NULL, &ds, &err) == CIT_EFORMAT && strstr(err.msg, "0x42"));
        CHECK(t_write_file(xp, short_data, sizeof(short_data)) == 0);
        CHECK(fl_data_load(xp, NULL, &ds, &err) == CIT_EFORMAT && strstr(err.msg, "truncated"));
        CHECK(t_write_file(xp, huge_dim, sizeof(huge_dim)) == 0);
        CHECK(fl_data_load(xp, NULL, &ds, &err) == CIT_ERANGE);
        CHECK(t_write_file(xp, x2, sizeof(x2)) == 0);
        CHECKF(fl_data_load(xp, NULL, &ds, &err) == 0, "%s", err.msg);
        CHECK(ds.n == 2 && ds.d == 1 && ds.classes == 3);
        fl_data_free(&ds);
        CHECK(t_write_file(yp, labels_bad, sizeof(labels_bad)) == 0);
        CHECK(fl_data_load(xp, NULL, &ds, &err) == CIT_EFORMAT && strstr(err.msg, "label 0"));
    }
    {
        static const char hdr[] = "3,2,a,b\n1,2,0\n3,4,1\n5,6,1\n";
        static const char ragged[] = "1,2,0\n3,4\n";
        static const char word[] = "1,2,0\n3,x,1\n";
        static const char neg[] = "1,2,-1\n";
        snprintf(xp, sizeof(xp), "%s/t.csv", t_tmpdir());
        CHECK(t_write_file(xp, hdr, sizeof(hdr) - 1) == 0);
        CHECKF(fl_data_load(xp, NULL, &ds, &err) == 0, "%s", err.msg);
        CHECK(ds.n == 3 && ds.d == 2 && ds.classes == 2 && ds.x[5] == 6.0f && ds.y[0] == 0);
        fl_data_free(&ds);
        CHECK(t_write_file(xp, ragged, sizeof(ragged) - 1) == 0);
        CHECK(fl_data_load(xp, NULL, &ds, &err) == CIT_EFORMAT && strstr(err.msg, "t.csv:2"));
        CHECK(t_write_file(xp, word, sizeof(word) - 1) == 0);
        CHECK(fl_data_load(xp, NULL, &ds, &err) == CIT_EFORMAT && strstr(err.msg, "column 2"));
        CHECK(t_write_file(xp, neg, sizeof(neg) - 1) == 0);
        CHECK(fl_data_load(xp, NULL, &ds, &err) == CIT_EFORMAT && strstr(err.msg, "label"));
    }
    CHECK(fl_data_load("/nonexistent.csv", NULL, &ds, &err) == CIT_EIO);
}

void test_fl_split(void)
{
    struct fl_data ds;
    struct cit_err err = {0};
    int *part, *part2, count[10][10];
    CHECKF(fl_data_load("fashion-mnist-test", NULL, &ds, &err) == 0, "%s", err.msg);
    part = calloc(ds.n, sizeof(int));
    part2 = calloc(ds.n, sizeof(int));
    CHECK(part && part2);

    /* IID: every client gets 1000 +- 10 examples, each class ~100 */
    CHECK(fl_split(&ds, 10, FL_SPLIT_IID, 0, 1, part, &err) == 0);
    memset(count, 0, sizeof(count));
    for (size_t i = 0; i < ds.n; i++) count[part[i]][ds.y[i]]++;
    for (int k = 0; k < 10; k++)
        for (int c = 0; c < 10; c++) CHECK(count[k][c] >= 99 && count[k][c] <= 101);

    /* Dirichlet 0.5: repeatable, skewed, every example placed */
    CHECK(fl_split(&ds, 10, FL_SPLIT_DIRICHLET, 0.5, 7, part, &err) == 0);
    CHECK(fl_split(&ds, 10, FL_SPLIT_DIRICHLET, 0.5, 7, part2, &err) == 0);
    CHECK(memcmp(part, part2, ds.n * sizeof(int)) == 0);
    memset(count, 0, sizeof(count));
    for (size_t i = 0; i < ds.n; i++) {
        CHECK(part[i] >= 0 && part[i] < 10);
        count[part[i]][ds.y[i]]++;
    }
    {
        int skewed = 0;
        for (int k = 0; k < 10; k++) {
            int mx = 0, tot = 0;
            for (int c = 0; c < 10; c++) {
                tot += count[k][c];
                if (count[k][c] > mx) mx = count[k][c];
            }
            skewed += tot && mx * 10 > tot * 3; /* one class is over 30% */
        }
        CHECKF(skewed >= 5, "only %d clients skewed", skewed);
    }
    /* one label per client */
    CHECK(fl_split(&ds, 10, FL_SPLIT_LABEL, 0, 1, part, &err) == 0);
    for (size_t i = 0; i < ds.n; i++) CHECK(part[i] == ds.y[i]);
    CHECK(fl_split(&ds, 4, FL_SPLIT_LABEL, 0, 1, part, &err) == CIT_ERANGE);
    CHECK(fl_split(&ds, 10, FL_SPLIT_DIRICHLET, 0, 1, part, &err) == CIT_ERANGE);
    free(part);
    free(part2);
    fl_data_free(&ds);
}

/* ---- secure aggregation, in process ---- */

struct sa_sim {
    uint32_t n, k, t, d;
    uint8_t (*pk)[32];
    uint8_t (*sk)[64];
    uint32_t *members;
    uint32_t **inputs;
    struct fl_sa_client **cl;
    struct fl_sa_server *srv;
    int *drop_at; /* stage at which a client stops answering; 99: never */
    int *aborted; /* the client answered ABORT */
    int revealed_both;
    int reveals;
    /* the test may rewrite a frame from the server to position i */
    void (*tamper)(struct sa_sim *s, int stage, uint32_t i, struct cit_buf *frame);
    uint8_t session[32];
    struct cit_buf saved; /* a frame kept by a tamper hook */
};

static void sim_free(struct sa_sim *s)
{
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->cl) fl_sa_client_free(s->cl[i]);
        if (s->inputs) free(s->inputs[i]);
    }
    fl_sa_server_free(s->srv);
    free(s->pk);
    free(s->sk);
    free(s->members);
    free(s->inputs);
    free(s->cl);
    free(s->drop_at);
    free(s->aborted);
    cit_buf_free(&s->saved);
}

static int sim_init(struct sa_sim *s, uint32_t n, uint32_t k, uint32_t t, uint32_t d)
{
    struct fl_roster roster;
    struct fl_sa_params p = {0};
    struct cit_err err = {0};
    memset(s, 0, sizeof(*s));
    s->n = n, s->k = k, s->t = t, s->d = d;
    s->pk = calloc(n, 32);
    s->sk = calloc(n, 64);
    s->members = calloc(n, 4);
    s->inputs = calloc(n, sizeof(*s->inputs));
    s->cl = calloc(n, sizeof(*s->cl));
    s->drop_at = calloc(n, sizeof(int));
    s->aborted = calloc(n, sizeof(int));
    if (!s->pk || !s->sk || !s->members || !s->inputs || !s->cl || !s->drop_at || !s->aborted)
        return -1;
    roster.n = (int)n;
    roster.pk = (const uint8_t(*)[32])s->pk;
    for (uint32_t i = 0; i < n; i++) {
        crypto_sign_keypair(s->pk[i], s->sk[i]);
        s->members[i] = n - 1 - i; /* positions and roster indices differ */
        s->drop_at[i] = 99;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t ri = s->members[i];
        s->inputs[i] = malloc(d * 4);
        if (!s->inputs[i]) return -1;
        randombytes_buf(s->inputs[i], d * 4);
        if (fl_sa_client_new(&roster, ri, s->sk[ri], 0, &s->cl[i])) return -1;
        if (fl_sa_client_input(s->cl[i], s->inputs[i], d)) return -1;
    }
    randombytes_buf(s->session, 32);
    memcpy(p.session, s->session, 32);
    p.round = 7;
    p.n = n, p.k = k, p.t = t, p.d = d;
    p.members = s->members;
    return fl_sa_server_new(&p, &roster, &s->srv, &err) ? -1 : 0;
}

/* Looks at a REVEAL frame: notes whether any owner got both kinds. */
static void note_reveal(struct sa_sim *s, const struct cit_buf *f, uint8_t *kinds)
{
    const uint8_t *p = (const uint8_t *)f->p + FL_HDR + 40;
    uint32_t cnt = (uint32_t)p[0] | (uint32_t)p[1] << 8;
    s->reveals++;
    p += 4;
    for (uint32_t e = 0; e < cnt; e++, p += 38) {
        uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8;
        kinds[v] |= p[4];
        if (kinds[v] == 3) s->revealed_both = 1;
    }
}

/* Runs the round: returns the server's last advance result. */
static int sim_run(struct sa_sim *s, struct cit_err *err)
{
    struct cit_buf f = {0}, reply = {0};
    uint8_t *kinds = calloc(s->n, 1);
    int rc = 1;
    for (int stage = 0; rc == 1; stage++) {
        for (uint32_t i = 0; i < s->n; i++) {
            struct cit_err cerr = {0};
            f.len = 0;
            if (fl_sa_server_alive(s->srv, i) && fl_sa_server_send(s->srv, i, &f)) continue;
            /* the hook may rewrite the frame, or send one the server would not */
            if (s->tamper) s->tamper(s, stage, i, &f);
            if (!f.len || s->drop_at[i] <= stage || s->aborted[i]) continue;
            if (fl_sa_client_step(s->cl[i], (const uint8_t *)f.p, f.len, &reply, &cerr)) {
                s->aborted[i] = 1;
            }
            if (!reply.len) continue;
            if ((uint8_t)reply.p[4] == FL_MSG_SA_REVEAL) note_reveal(s, &reply, kinds);
            if (fl_sa_server_recv(s->srv, i, (const uint8_t *)reply.p, reply.len, &cerr) &&
                getenv("FL_DEBUG"))
                t_note("stage %d position %u: %s", stage, i, cerr.msg);
        }
        rc = fl_sa_server_advance(s->srv, err);
    }
    /* the DONE frames */
    for (uint32_t i = 0; rc == 0 && i < s->n; i++) {
        struct cit_err cerr = {0};
        if (!fl_sa_server_alive(s->srv, i) || s->drop_at[i] < 99) continue;
        if (fl_sa_server_send(s->srv, i, &f) || !f.len) continue;
        if (fl_sa_client_step(s->cl[i], (const uint8_t *)f.p, f.len, &reply, &cerr))
            s->aborted[i] = 1;
    }
    cit_buf_free(&f);
    cit_buf_free(&reply);
    free(kinds);
    return rc;
}

/* The sum of the inputs of the clients that got their masked input in. */
static int sim_check_sum(struct sa_sim *s)
{
    struct fl_sa_transcript tr;
    const uint32_t *sum = fl_sa_server_sum(s->srv, &tr);
    uint32_t want, contributors = 0;
    if (!sum) return -1;
    for (uint32_t i = 0; i < s->n; i++) contributors += s->drop_at[i] > 2;
    if (tr.contributors != contributors) return -2;
    for (uint32_t j = 0; j < s->d; j++) {
        want = 0;
        for (uint32_t i = 0; i < s->n; i++)
            if (s->drop_at[i] > 2) want += s->inputs[i][j];
        if (sum[j] != want) return -3;
    }
    /* clients that finished agree on the digest */
    for (uint32_t i = 0; i < s->n; i++) {
        struct fl_sa_transcript ct;
        if (s->drop_at[i] < 99) continue;
        if (!fl_sa_client_done(s->cl[i], &ct)) return -4;
        if (memcmp(ct.sum_digest, tr.sum_digest, 32) || ct.contributors != contributors) return -5;
    }
    return 0;
}

/* Whether dropping p too keeps every secret rebuildable: each holder set
 * (v and its neighbours) loses at most k + 1 - t members. */
static int may_drop(struct sa_sim *s, uint32_t p)
{
    uint32_t nb[1024];
    for (uint32_t v = 0; v < s->n; v++) {
        int m = fl_sa_neighbours(s->session, s->n, s->k, v, nb), gone = 0, holds = v == p;
        gone += s->drop_at[v] < 99 || v == p;
        for (int q = 0; q < m; q++) {
            gone += s->drop_at[nb[q]] < 99 || nb[q] == p;
            holds |= nb[q] == p;
        }
        if (holds && gone > (int)(s->k + 1 - s->t)) return 0;
    }
    return 1;
}

struct sa_case {
    uint32_t n, k, t, d;
    int drops[5]; /* how many clients drop at each stage */
};

void test_fl_secagg_sum(void)
{
    static const struct sa_case cases[] = {
        {3, 2, 2, 100, {0, 0, 0, 0, 0}},     {3, 2, 2, 100, {1, 0, 0, 0, 0}},
        {3, 2, 2, 100, {0, 1, 0, 0, 0}},     {3, 2, 2, 100, {0, 0, 1, 0, 0}},
        {3, 2, 2, 100, {0, 0, 0, 1, 0}},     {3, 2, 2, 100, {0, 0, 0, 0, 1}},
        {10, 9, 6, 1000, {1, 1, 1, 1, 0}}, /* n - t = 4 dropouts, one per stage */
        {10, 9, 6, 1000, {0, 0, 4, 0, 0}},   {10, 9, 6, 1000, {0, 0, 0, 0, 4}},
        {10, 4, 4, 1000, {0, 0, 1, 0, 1}},   /* SecAgg+: a sparse graph */
        {50, 49, 26, 5000, {5, 5, 5, 5, 4}}, /* n - t = 24 */
        {50, 10, 7, 5000, {1, 1, 1, 1, 0}},  {50, 10, 7, 5000, {0, 0, 0, 0, 0}},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const struct sa_case *k = &cases[c];
        struct sa_sim s;
        struct cit_err err = {0};
        uint32_t next = 0;
        int rc;
        CHECK(sim_init(&s, k->n, k->k, k->t, k->d) == 0);
        /* drop positions in turn, skipping any whose loss would leave some
         * secret with fewer than t holders: each of the k + 1 holders of a
         * secret may go, as long as k + 1 - t stay gone at most */
        for (int st = 0; st < 5; st++)
            for (int j = 0; j < k->drops[st]; j++) {
                while (next < k->n && !may_drop(&s, next)) next++;
                CHECKF(next < k->n, "case %zu: no position can drop", c);
                s.drop_at[next++] = st;
            }
        rc = sim_run(&s, &err);
        CHECKF(rc == 0, "case %zu: %s", c, err.msg);
        rc = sim_check_sum(&s);
        CHECKF(rc == 0, "case %zu: sum check %d", c, rc);
        CHECK(!s.revealed_both);
        for (uint32_t i = 0; i < s.n; i++)
            CHECKF(!s.aborted[i], "case %zu: client %u aborted", c, i);
        sim_free(&s);
    }
}

/* Too many dropouts: the round fails and says why; no sum comes out. */
void test_fl_secagg_threshold(void)
{
    struct sa_sim s;
    struct cit_err err = {0};
    CHECK(sim_init(&s, 10, 9, 6, 100) == 0);
    for (int i = 0; i < 5; i++) s.drop_at[i] = 2; /* 5 > n - t */
    CHECK(sim_run(&s, &err) < 0);
    CHECK(strstr(err.msg, "threshold 6") != NULL);
    CHECK(fl_sa_server_sum(s.srv, NULL) == NULL);
    sim_free(&s);
    /* parameters a client must refuse */
    {
        struct fl_sa_params p = {0};
        struct fl_roster r = {0};
        uint8_t pk[3][32] = {{0}};
        uint32_t m[3] = {0, 1, 2};
        struct fl_sa_server *srv;
        r.n = 3;
        r.pk = (const uint8_t(*)[32])pk;
        p.n = 3, p.k = 2, p.t = 1, p.d = 10, p.members = m; /* t <= (k + 1) / 2 */
        CHECK(fl_sa_server_new(&p, &r, &srv, &err) == CIT_ERANGE && strstr(err.msg, "t = 1"));
        p.t = 2, p.k = 3;
        CHECK(fl_sa_server_new(&p, &r, &srv, &err) == CIT_ERANGE);
        p.k = 2, m[2] = 0;
        CHECK(fl_sa_server_new(&p, &r, &srv, &err) == CIT_EINVAL);
    }
}

/* ---- a coordinator that deviates ---- */

/* Tells client 0 that position 1 dropped (so that 0 would reveal 1's mask
 * key while the others reveal 1's mask seed). */
static void lie_alive(struct sa_sim *s, int stage, uint32_t i, struct cit_buf *f)
{
    uint8_t *p = (uint8_t *)f->p;
    uint32_t cnt, j, w = 0;
    if (stage == 4 && i == 0) {
        /* 0's signature was on another list, so the honest server code
         * dropped it; a deviating coordinator sends it the others'
         * signatures anyway, to collect 1's mask key from it */
        fl_sa_server_send(s->srv, 2, f);
        /* leaving out 1's signature, which 0 would know is not on its list */
        p = (uint8_t *)f->p;
        cnt = (uint32_t)p[FL_HDR + 40];
        for (j = 0; j < cnt; j++) {
            uint8_t *e = p + FL_HDR + 44 + 68 * j;
            if (e[0] == 1) continue;
            memmove(p + FL_HDR + 44 + 68 * w++, e, 68);
        }
        p[FL_HDR + 40] = (uint8_t)w;
        f->len -= 68 * (cnt - w);
        p[8] = (uint8_t)(f->len - FL_HDR);
        p[9] = (uint8_t)((f->len - FL_HDR) >> 8);
        return;
    }
    if (stage != 3 || i != 0) return;
    cnt = (uint32_t)p[FL_HDR + 40];
    for (j = 0; j < cnt; j++) {
        uint8_t *e = p + FL_HDR + 44 + 4 * j;
        if (e[0] == 1) continue;
        memmove(p + FL_HDR + 44 + 4 * w++, e, 4);
    }
    p[FL_HDR + 40] = (uint8_t)w;
    f->len -= 4 * (cnt - w);
    p[8] = (uint8_t)(f->len - FL_HDR);
    p[9] = (uint8_t)((f->len - FL_HDR) >> 8);
}

/* Sends the PEERS frame again in place of the INBOX frame. */
static void replay_peers(struct sa_sim *s, int stage, uint32_t i, struct cit_buf *f)
{
    if (i != 2) return;
    if (stage == 1) {
        s->saved.len = 0;
        cit_buf_add(&s->saved, f->p, f->len);
    } else if (stage == 2) {
        f->len = 0;
        cit_buf_add(f, s->saved.p, s->saved.len);
    }
}

/* An inbox whose count claims more boxes than any client has neighbours. */
static void oversize(struct sa_sim *s, int stage, uint32_t i, struct cit_buf *f)
{
    uint8_t *p = (uint8_t *)f->p;
    (void)s;
    if (stage != 2 || i != 1) return;
    p[FL_HDR + 40] = 0xff;
    p[FL_HDR + 41] = 0xff;
    p[FL_HDR + 42] = 0xff;
    p[FL_HDR + 43] = 0x7f;
}

/* The coordinator swaps in a key of its own for position 1 in 0's view. */
static void swap_key(struct sa_sim *s, int stage, uint32_t i, struct cit_buf *f)
{
    uint8_t *p = (uint8_t *)f->p;
    (void)s;
    if (stage != 1 || i != 0) return;
    crypto_scalarmult_base(p + FL_HDR + 44 + 4 + 32, p + FL_HDR + 44 + 4); /* any other key */
}

/* A frame from another round (the session id differs). */
static void other_round(struct sa_sim *s, int stage, uint32_t i, struct cit_buf *f)
{
    (void)s;
    if (stage == 3 && i == 0) f->p[FL_HDR + 5] ^= 1;
}

/* A frame whose length field says more than came. */
static void bad_length(struct sa_sim *s, int stage, uint32_t i, struct cit_buf *f)
{
    (void)s;
    if (stage == 4 && i == 0) f->p[11] = 0x10;
}

void test_fl_secagg_deviations(void)
{
    static const struct {
        void (*fn)(struct sa_sim *, int, uint32_t, struct cit_buf *);
        uint32_t victim;
        int stage; /* where the victim aborts */
        const char *what;
    } devs[] = {
        {lie_alive, 0, 4, "inconsistent dropout lists"},
        {replay_peers, 2, 2, "replayed frame"},
        {oversize, 1, 2, "oversized count"},
        {swap_key, 0, 1, "substituted key"},
        {other_round, 0, 3, "frame of another round"},
        {bad_length, 0, 4, "length over the cap"},
    };
    for (size_t d = 0; d < sizeof(devs) / sizeof(devs[0]); d++) {
        struct sa_sim s;
        struct cit_err err = {0};
        int rc;
        CHECK(sim_init(&s, 5, 4, 3, 64) == 0);
        s.tamper = devs[d].fn;
        rc = sim_run(&s, &err);
        CHECKF(s.aborted[devs[d].victim], "%s: the client did not abort (round: %d %s)",
               devs[d].what, rc, err.msg);
        CHECKF(!s.revealed_both, "%s: a secret was revealed both ways", devs[d].what);
        /* the others finish, and the sum is that of the inputs that came in
         * (the victim's too when it aborted after sending it) */
        CHECKF(rc == 0, "%s: %s", devs[d].what, err.msg);
        s.drop_at[devs[d].victim] = devs[d].stage;
        rc = sim_check_sum(&s);
        CHECKF(rc == 0, "%s: sum check %d", devs[d].what, rc);
        /* after an abort the client refuses everything */
        {
            struct cit_buf f = {0}, reply = {0};
            struct cit_err cerr = {0};
            static const uint8_t junk[FL_HDR] = {'C', 'F', 'L', 1, 0x10};
            cit_buf_add(&f, junk, sizeof(junk));
            CHECK(fl_sa_client_step(s.cl[devs[d].victim], (const uint8_t *)f.p, f.len, &reply,
                                    &cerr) != 0);
            CHECK(reply.len == 0);
            cit_buf_free(&f);
            cit_buf_free(&reply);
        }
        sim_free(&s);
    }
}

/* ---- learning ---- */

/* The trainers learn: breast cancer (standardised) with logistic regression
 * and with a perceptron under Adam and FedProx, digits with SGD. */
void test_fl_train(void)
{
    struct fl_data ds;
    struct cit_err err = {0};
    struct fl_arch_spec lr = {FL_LOGREG, 30, 2, 0, {0}}, mlp = {FL_MLP, 30, 2, 1, {16}};
    struct fl_train_opts o = {.epochs = 20, .batch = 16, .lr = 0.05f, .seed = 3};
    float w[2000], g[2000], acc, loss, loss0;
    CHECK(fl_arch_params(&lr, &err) == 62 &&
          fl_arch_params(&mlp, &err) == 30 * 16 + 16 + 16 * 2 + 2);
    CHECKF(fl_data_load("breast-cancer", NULL, &ds, &err) == 0, "%s", err.msg);
    fl_data_standardize(&ds);
    fl_arch_init(&lr, w, 1);
    CHECK(fl_evaluate(&lr, w, &ds, &acc, &loss0) == 0);
    CHECKF(fl_train(&lr, w, NULL, &ds, &o, &loss, &err) == 0, "%s", err.msg);
    CHECK(fl_evaluate(&lr, w, &ds, &acc, &loss) == 0);
    t_note("breast cancer, logistic regression: accuracy %.3f, loss %.3f -> %.3f", acc, loss0,
           loss);
    CHECK(acc > 0.97f && loss < loss0 / 5);
    /* perceptron, Adam, with a proximal term towards a zero model */
    fl_arch_init(&mlp, w, 2);
    memset(g, 0, sizeof(g));
    o.optim = FL_ADAM;
    o.lr = 0.01f;
    o.mu = 0.01f;
    CHECKF(fl_train(&mlp, w, g, &ds, &o, &loss, &err) == 0, "%s", err.msg);
    CHECK(fl_evaluate(&mlp, w, &ds, &acc, &loss) == 0);
    t_note("breast cancer, perceptron 30-16-2 (Adam, FedProx mu 0.01): accuracy %.3f", acc);
    CHECK(acc > 0.97f);
    /* the proximal term pulls towards the global model: a large mu keeps w small */
    {
        float w2[2000], n1 = 0, n2 = 0;
        memcpy(w2, w, sizeof(w2));
        fl_arch_init(&mlp, w, 2);
        fl_arch_init(&mlp, w2, 2);
        o.mu = 0;
        CHECK(fl_train(&mlp, w, NULL, &ds, &o, NULL, &err) == 0);
        o.mu = 10;
        CHECK(fl_train(&mlp, w2, g, &ds, &o, NULL, &err) == 0);
        for (size_t i = 0; i < fl_arch_params(&mlp, NULL); i++)
            n1 += w[i] * w[i], n2 += w2[i] * w2[i];
        CHECKF(n2 < n1 / 2, "|w| %g with mu 10, %g without", (double)n2, (double)n1);
    }
    /* wrong shapes are refused */
    o.mu = 0;
    CHECK(fl_train(&lr, w, NULL, &ds, &o, NULL, &err) == 0);
    lr.inputs = 31;
    CHECK(fl_train(&lr, w, NULL, &ds, &o, NULL, &err) == CIT_EINVAL && strstr(err.msg, "features"));
    lr.inputs = 30, lr.classes = 1;
    CHECK(fl_arch_params(&lr, &err) == 0 && strstr(err.msg, "classes"));
    fl_data_free(&ds);

    CHECKF(fl_data_load("digits", NULL, &ds, &err) == 0, "%s", err.msg);
    fl_data_standardize(&ds);
    lr.inputs = 64, lr.classes = 10;
    o.optim = FL_SGD;
    o.lr = 0.05f;
    o.epochs = 10;
    fl_arch_init(&lr, w, 1);
    CHECKF(fl_train(&lr, w, NULL, &ds, &o, NULL, &err) == 0, "%s", err.msg);
    CHECK(fl_evaluate(&lr, w, &ds, &acc, NULL) == 0);
    t_note("digits, logistic regression: accuracy %.3f", acc);
    CHECK(acc > 0.95f);
    fl_data_free(&ds);
}

/* Quantization round trip, and the server optimisers. */
void test_fl_quantize(void)
{
    float x[1000], back[1000], w[3] = {1, 1, 1}, u[3] = {0.5f, -0.5f, 0};
    uint32_t q[1000];
    double scale = fl_quant_scale(2.0, 100), mean = 0;
    struct fl_server_opt so;
    for (int i = 0; i < 1000; i++) x[i] = (float)((i % 41) - 20) / 10.0f; /* -2..2 */
    x[0] = 50;                                                            /* clamped to the bound */
    fl_quantize(x, 1000, scale, 2.0, q);
    fl_dequantize(q, 1000, scale, back);
    CHECK(fabsf(back[0] - 2.0f) < 1e-6f);
    for (int i = 1; i < 1000; i++) CHECK(fabsf(back[i] - x[i]) <= 1.0 / scale + 1e-7);
    /* stochastic rounding is unbiased: a value between two steps averages out */
    for (int r = 0; r < 2000; r++) {
        float v = (float)(0.3 / scale);
        uint32_t one;
        fl_quantize(&v, 1, scale, 2.0, &one);
        mean += (int32_t)one;
    }
    mean /= 2000;
    CHECKF(mean > 0.25 && mean < 0.35, "mean %g", mean);
    /* 100 clients at the bound do not wrap */
    {
        uint32_t s = 0, one;
        float v = 2.0f;
        fl_quantize(&v, 1, scale, 2.0, &one);
        for (int i = 0; i < 100; i++) s += one;
        CHECK((int32_t)s > 0 && fabs((int32_t)s / scale - 200.0) < 1e-3);
    }
    CHECK(fabs(fl_clip(x + 1, 3, 0.1) - sqrt(1.9 * 1.9 + 1.8 * 1.8 + 1.7 * 1.7)) < 1e-5);
    CHECK(fabs(sqrt(x[1] * x[1] + x[2] * x[2] + x[3] * x[3]) - 0.1) < 1e-6);
    CHECK(fl_server_opt_init(&so, FL_FEDAVG, 3) == 0);
    fl_server_opt_apply(&so, w, u);
    CHECK(w[0] == 1.5f && w[1] == 0.5f && w[2] == 1);
    fl_server_opt_free(&so);
    CHECK(fl_server_opt_init(&so, FL_FEDADAM, 3) == 0);
    w[0] = w[1] = w[2] = 1;
    fl_server_opt_apply(&so, w, u);
    /* first step: m = 0.05, v = 0.0025, step = lr * m / (sqrt(v) + tau) ~ 0.0098 */
    CHECKF(fabsf(w[0] - (1 + 0.01f * 0.05f / (0.05f + 1e-3f))) < 1e-6f, "%g", (double)w[0]);
    CHECK(w[1] < 1 && w[2] == 1);
    fl_server_opt_free(&so);
}

/* The acceptance run: FedAvg over 10 clients holding a Dirichlet(0.5) split
 * of Fashion-MNIST, every round summed by SecAgg (and checked against the
 * plain sum), against the same model trained centrally for as many epochs. */
void test_fl_fedavg_accuracy(void)
{
    enum { CLIENTS = 10, EPOCHS = 5, ROUNDS = 500 };
    struct fl_data tr, te, parts[CLIENTS];
    struct cit_err err = {0};
    struct fl_arch_spec a = {FL_LOGREG, 784, 10, 0, {0}};
    struct fl_train_opts o = {.epochs = 1, .batch = 32, .lr = 0.1f};
    struct fl_round_cfg rc = {.clip = 100,
                              .max_clients = CLIENTS,
                              .weight_cap = 20000,
                              .local_epochs = (double)EPOCHS / ROUNDS};
    struct fl_server_opt so;
    float *w, acc_central, acc_fed;
    uint32_t *in[CLIENTS], *sum, k, t;
    int *part;
    size_t d;
    CHECKF(fl_data_load("fashion-mnist-train", NULL, &tr, &err) == 0, "%s", err.msg);
    CHECKF(fl_data_load("fashion-mnist-test", NULL, &te, &err) == 0, "%s", err.msg);
    d = fl_arch_params(&a, &err);
    w = malloc(d * sizeof(float));
    sum = malloc((d + 1) * 4);
    part = malloc(tr.n * sizeof(int));
    CHECK(w && sum && part);
    for (int c = 0; c < CLIENTS; c++) CHECK((in[c] = malloc((d + 1) * 4)) != NULL);

    /* centrally: 5 epochs, learning rate 0.1 on a cosine schedule */
    fl_arch_init(&a, w, 1);
    for (int e = 0; e < EPOCHS; e++) {
        o.lr = (float)(0.1 * 0.5 * (1 + cos(M_PI * e / EPOCHS)));
        o.seed = (uint64_t)e;
        CHECKF(fl_train(&a, w, NULL, &tr, &o, NULL, &err) == 0, "%s", err.msg);
    }
    CHECK(fl_evaluate(&a, w, &te, &acc_central, NULL) == 0);

    /* federated: 500 rounds of 1/100 epoch each, 5 epochs in all */
    CHECK(fl_split(&tr, CLIENTS, FL_SPLIT_DIRICHLET, 0.5, 1, part, &err) == 0);
    CHECK(fl_data_parts(&tr, part, CLIENTS, parts) == 0);
    fl_sa_default(CLIENTS, &k, &t);
    CHECK(fl_server_opt_init(&so, FL_FEDAVG, d) == 0);
    fl_arch_init(&a, w, 1);
    for (int r = 0; r < ROUNDS; r++) {
        o.lr = (float)(0.5 * 0.5 * (1 + cos(M_PI * r / ROUNDS)));
        for (int c = 0; c < CLIENTS; c++) {
            o.seed = (uint64_t)(r * CLIENTS + c);
            CHECKF(fl_client_update(&rc, &a, w, &parts[c], &o, in[c], NULL, &err) == 0, "%s",
                   err.msg);
        }
        CHECKF(fl_sa_simulate(CLIENTS, k, t, (uint32_t)d + 1, (const uint32_t *const *)in, NULL,
                              sum, NULL, &err) == 0,
               "round %d: %s", r, err.msg);
        for (size_t j = 0; j <= d; j++) {
            uint32_t plain = 0;
            for (int c = 0; c < CLIENTS; c++) plain += in[c][j];
            CHECKF(sum[j] == plain, "round %d: secure sum differs at %zu", r, j);
        }
        CHECKF(fl_server_update(&rc, &so, w, sum, d, &err) == 0, "%s", err.msg);
    }
    CHECK(fl_evaluate(&a, w, &te, &acc_fed, NULL) == 0);
    t_note("Fashion-MNIST, logistic regression, %d epochs: central %.2f%%, FedAvg (10 clients, "
           "Dirichlet 0.5, SecAgg, %d rounds) %.2f%%, gap %.2f points",
           EPOCHS, 100 * acc_central, ROUNDS, 100 * acc_fed, 100 * (acc_central - acc_fed));
    CHECK(acc_central > 0.82f);
    CHECK(acc_central - acc_fed <= 0.015f);
    fl_server_opt_free(&so);
    for (int c = 0; c < CLIENTS; c++) {
        free(in[c]);
        fl_data_free(&parts[c]);
    }
    free(w);
    free(sum);
    free(part);
    fl_data_free(&tr);
    fl_data_free(&te);
}

/* `citadel fl split` writes partitions that load back whole; `fl sim` runs a
 * federation over SecAgg+; bad arguments are a usage error. */
void test_fl_cli(void)
{
    const char *bin = getenv("CITADEL_BIN") ? getenv("CITADEL_BIN") : "build/citadel";
    char cmd[2048], *out = NULL, path[512];
    struct fl_data ds;
    struct cit_err err = {0};
    size_t total = 0;
    snprintf(cmd, sizeof(cmd),
             "%s fl split --data fashion-mnist-test --clients 4 --scheme dirichlet "
             "--alpha 0.5 --seed 9 --out %s/split",
             bin, t_tmpdir());
    CHECKF(t_run(cmd, &out) == 0, "%s", out ? out : "");
    CHECK(strstr(out, "per class") != NULL);
    free(out);
    for (int k = 0; k < 4; k++) {
        snprintf(path, sizeof(path), "%s/split/client-%02d.x.idx", t_tmpdir(), k);
        CHECKF(fl_data_load(path, NULL, &ds, &err) == 0, "%s", err.msg);
        CHECK(ds.d == 784 && ds.u8);
        total += ds.n;
        fl_data_free(&ds);
    }
    CHECK(total == 10000);
    snprintf(cmd, sizeof(cmd),
             "%s fl sim --data breast-cancer --test breast-cancer --standardize "
             "--clients 3 --scheme iid --rounds 3 --local-epochs 1 --lr 0.05",
             bin);
    CHECK(t_run(cmd, &out) == 0);
    CHECKF(strstr(out, "SecAgg+") && strstr(out, "round 3"), "%s", out);
    {
        const char *acc = strstr(strstr(out, "round 3"), "test accuracy ");
        CHECK(acc && atof(acc + 14) > 0.9);
    }
    free(out);
    snprintf(cmd, sizeof(cmd), "%s fl sim --data digits --clients 0 --rounds 1 2>&1", bin);
    CHECK(t_run(cmd, &out) == 2);
    free(out);
    snprintf(cmd, sizeof(cmd), "%s fl train --data %s/nothing.csv 2>&1", bin, t_tmpdir());
    CHECK(t_run(cmd, &out) == 1);
    CHECK(strstr(out, "nothing.csv") != NULL);
    free(out);
}
