/* ledger: RFC 6962 roots against published vectors, inclusion and
 * consistency proofs (and their failure when altered), signed checkpoints,
 * append and reopen, a flipped byte anywhere in the log or checkpoints
 * caught by verify and named, recovery from torn writes, concurrent
 * appends with group commit, retention. */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "citadel/ledger.h"
#include "test.h"
#include "../src/ledger/ledger_int.h"

/* RFC 6962 test data as used by Certificate Transparency implementations:
 * the roots of the first n of these eight leaves. */
static const char *const ct_leaves[8] = {"",
                                         "00",
                                         "10",
                                         "2021",
                                         "3031",
                                         "40414243",
                                         "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f"};
static const char *const ct_roots[8] = {
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

void test_ledger_merkle(void)
{
    uint8_t leaves[70][LEDGER_HASH], root[LEDGER_HASH], want[LEDGER_HASH];
    uint8_t proof[LEDGER_MAX_PROOF][LEDGER_HASH];
    int np;
    for (int i = 0; i < 8; i++) {
        uint8_t d[16];
        size_t dl = 0;
        sodium_hex2bin(d, sizeof(d), ct_leaves[i], strlen(ct_leaves[i]), NULL, &dl, NULL);
        ledger_leaf_hash(d, dl, leaves[i]);
    }
    for (int n = 1; n <= 8; n++) {
        ledger_root((const uint8_t(*)[LEDGER_HASH])leaves, (uint64_t)n, root);
        sodium_hex2bin(want, sizeof(want), ct_roots[n - 1], 64, NULL, NULL, NULL);
        CHECKF(!memcmp(root, want, LEDGER_HASH), "root of %d leaves", n);
    }
    /* the compact range used while appending gives the same roots */
    for (int i = 8; i < 70; i++) ledger_leaf_hash(&i, sizeof(i), leaves[i]);
    /* every proof for every tree up to 70 leaves verifies, and fails when
     * any hash, the index or the size is changed */
    for (uint64_t n = 1; n <= 70; n++) {
        ledger_root((const uint8_t(*)[LEDGER_HASH])leaves, n, root);
        for (uint64_t i = 0; i < n; i++) {
            CHECK(!ledger_inclusion_proof((const uint8_t(*)[LEDGER_HASH])leaves, n, i, proof, &np));
            CHECKF(!ledger_inclusion_verify(i, n, leaves[i], (const uint8_t(*)[LEDGER_HASH])proof,
                                            np, root),
                   "inclusion %llu of %llu", (unsigned long long)i, (unsigned long long)n);
            if (n > 1)
                CHECK(ledger_inclusion_verify((i + 1) % n, n, leaves[i],
                                              (const uint8_t(*)[LEDGER_HASH])proof, np, root));
            for (int k = 0; k < np; k++) {
                proof[k][k % LEDGER_HASH] ^= 0x20;
                CHECK(ledger_inclusion_verify(i, n, leaves[i], (const uint8_t(*)[LEDGER_HASH])proof,
                                              np, root));
                proof[k][k % LEDGER_HASH] ^= 0x20;
            }
            if (np) /* a shortened proof */
                CHECK(ledger_inclusion_verify(i, n, leaves[i], (const uint8_t(*)[LEDGER_HASH])proof,
                                              np - 1, root));
        }
        CHECK(ledger_inclusion_proof((const uint8_t(*)[LEDGER_HASH])leaves, n, n, proof, &np) ==
              CIT_ERANGE);
        for (uint64_t m = 1; m <= n; m++) {
            uint8_t rm[LEDGER_HASH];
            ledger_root((const uint8_t(*)[LEDGER_HASH])leaves, m, rm);
            CHECK(
                !ledger_consistency_proof((const uint8_t(*)[LEDGER_HASH])leaves, m, n, proof, &np));
            CHECKF(!ledger_consistency_verify(m, n, rm, root, (const uint8_t(*)[LEDGER_HASH])proof,
                                              np),
                   "consistency %llu -> %llu", (unsigned long long)m, (unsigned long long)n);
            for (int k = 0; k < np; k++) {
                proof[k][0] ^= 1;
                CHECK(ledger_consistency_verify(m, n, rm, root,
                                                (const uint8_t(*)[LEDGER_HASH])proof, np));
                proof[k][0] ^= 1;
            }
            rm[5] ^= 1; /* a different old root */
            CHECK(ledger_consistency_verify(m, n, rm, root, (const uint8_t(*)[LEDGER_HASH])proof,
                                            np));
            if (m < n && m > 1)
                CHECK(ledger_consistency_verify(m - 1, n, rm, root,
                                                (const uint8_t(*)[LEDGER_HASH])proof, np));
        }
    }
}

/* ledger_consistency_verify (RFC 9162 2.1.4.2) against the proofs
 * ledger_consistency_proof builds (RFC 6962 2.1.2), for every 1 <= m <= n
 * <= 40: each verifies; each single hash flipped, zeroed or swapped with
 * its neighbour, a hash dropped or added, either root changed, and every
 * other old size (with the same roots, or with that size's real root) is
 * refused, as is every other new size given its real root. A wrong new size
 * with the same roots can pass (n shapes only the path's length), which is
 * why a witness takes n and its root from one signed checkpoint. */
void test_ledger_consistency_verify(void)
{
    enum { N = 40 };
    static uint8_t leaves[N + 1][LEDGER_HASH], roots[N + 2][LEDGER_HASH];
    uint8_t proof[LEDGER_MAX_PROOF + 1][LEDGER_HASH], bad[LEDGER_HASH];
    const uint8_t(*lv)[LEDGER_HASH] = (const uint8_t(*)[LEDGER_HASH])leaves;
    const uint8_t(*pf)[LEDGER_HASH] = (const uint8_t(*)[LEDGER_HASH])proof;
    int np;
    for (int i = 0; i <= N; i++) ledger_leaf_hash(&i, sizeof(i), leaves[i]);
    for (uint64_t n = 0; n <= N + 1; n++) ledger_root(lv, n, roots[n]);
    for (uint64_t n = 1; n <= N; n++) {
        for (uint64_t m = 1; m <= n; m++) {
            const uint8_t *rm = roots[m], *rn = roots[n];
            CHECK(!ledger_consistency_proof(lv, m, n, proof, &np));
            CHECK(np <= LEDGER_MAX_PROOF && (m < n || np == 0));
            CHECKF(!ledger_consistency_verify(m, n, rm, rn, pf, np), "%llu -> %llu",
                   (unsigned long long)m, (unsigned long long)n);
            for (int k = 0; k < np; k++) {
                uint8_t keep[LEDGER_HASH];
                memcpy(keep, proof[k], LEDGER_HASH);
                proof[k][(k * 7 + (int)m) % LEDGER_HASH] ^= (uint8_t)(1u << (k % 8));
                CHECKF(ledger_consistency_verify(m, n, rm, rn, pf, np), "%llu -> %llu, hash %d",
                       (unsigned long long)m, (unsigned long long)n, k);
                memset(proof[k], 0, LEDGER_HASH);
                CHECK(ledger_consistency_verify(m, n, rm, rn, pf, np));
                memcpy(proof[k], keep, LEDGER_HASH);
                if (k + 1 < np && memcmp(proof[k], proof[k + 1], LEDGER_HASH)) {
                    memcpy(proof[k], proof[k + 1], LEDGER_HASH);
                    memcpy(proof[k + 1], keep, LEDGER_HASH);
                    CHECK(ledger_consistency_verify(m, n, rm, rn, pf, np));
                    memcpy(proof[k + 1], proof[k], LEDGER_HASH);
                    memcpy(proof[k], keep, LEDGER_HASH);
                }
            }
            if (np) {
                CHECK(ledger_consistency_verify(m, n, rm, rn, pf, np - 1));     /* last dropped */
                CHECK(ledger_consistency_verify(m, n, rm, rn, pf + 1, np - 1)); /* first */
            }
            memcpy(proof[np], np ? proof[np - 1] : rm, LEDGER_HASH); /* one too many */
            CHECK(ledger_consistency_verify(m, n, rm, rn, pf, np + 1));
            memcpy(bad, rm, LEDGER_HASH);
            bad[m % LEDGER_HASH] ^= 1;
            CHECK(ledger_consistency_verify(m, n, bad, rn, pf, np));
            memcpy(bad, rn, LEDGER_HASH);
            bad[n % LEDGER_HASH] ^= 0x80;
            CHECK(ledger_consistency_verify(m, n, rm, bad, pf, np));
            for (uint64_t m2 = 1; m2 <= N + 1; m2++) {
                if (m2 == m) continue;
                CHECKF(ledger_consistency_verify(m2, n, rm, rn, pf, np),
                       "old size %llu passed for %llu -> %llu", (unsigned long long)m2,
                       (unsigned long long)m, (unsigned long long)n);
                CHECK(ledger_consistency_verify(m2, n, roots[m2], rn, pf, np));
            }
            for (uint64_t n2 = m; n2 <= N + 1; n2++) {
                if (n2 == n) continue;
                CHECKF(ledger_consistency_verify(m, n2, rm, roots[n2], pf, np),
                       "new size %llu passed for %llu -> %llu", (unsigned long long)n2,
                       (unsigned long long)m, (unsigned long long)n);
            }
            if (m < n) CHECK(ledger_consistency_verify(n, m, rn, rm, pf, np)); /* reversed */
        }
        /* from the empty tree, and arguments out of range */
        CHECK(ledger_consistency_verify(0, n, roots[0], roots[n], pf, 0) == CIT_EINVAL);
        CHECK(ledger_consistency_verify(n + 1, n, roots[n], roots[n], pf, 0) == CIT_EINVAL);
        CHECK(ledger_consistency_verify(n, n, roots[n], roots[n], pf, -1) == CIT_EINVAL);
        CHECK(ledger_consistency_verify(1, n, roots[1], roots[n], pf, LEDGER_MAX_PROOF + 1) ==
              CIT_EINVAL);
    }
}

/* A new empty path under the scratch directory (one buffer per name slot:
 * tests use at most two at once). */
static const char *fresh_dir(const char *name)
{
    static char dirs[2][1024];
    static int turn;
    char *dir = dirs[turn++ & 1];
    char cmd[1200];
    snprintf(dir, sizeof(dirs[0]), "%s/%s", t_tmpdir(), name);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd)) return NULL;
    return dir;
}

static int append_n(struct ledger *l, int n, int64_t time_ms, const char *tenant)
{
    for (int i = 0; i < n; i++) {
        char req[32];
        struct ledger_rec r = {0};
        snprintf(req, sizeof(req), "req-%d", i);
        r.time_ms = time_ms;
        r.tenant = tenant;
        r.key_id = "0123456789abcdef";
        r.request_id = req;
        r.digest[0] = (uint8_t)i;
        r.classes = i % 3 ? "personal,secret" : "";
        r.rule = "rule-\"quoted\"";
        r.policy_hash = "ab";
        r.target = "stories260K";
        r.action = i % 2 ? "local" : "deny";
        r.tokens_in = i;
        r.tokens_out = 2 * i;
        r.status = 200;
        if (ledger_append(l, &r, i % 5 == 0 ? LEDGER_SYNC : LEDGER_GROUP, NULL)) return -1;
    }
    return 0;
}

static int verify_dir(const char *dir, char *msg, size_t cap)
{
    struct cit_buf rep = {0};
    struct cit_err err = {{0}};
    int rc = ledger_verify(dir, NULL, &rep, &err);
    snprintf(msg, cap, "%s", rc ? err.msg : (rep.p ? rep.p : ""));
    cit_buf_free(&rep);
    return rc;
}

void test_ledger_append_and_reopen(void)
{
    const char *dir = fresh_dir("ledger-basic");
    struct ledger_opts o = {.dir = dir, .origin = "test.example/ledger", .checkpoint_s = -1};
    struct ledger *l;
    struct cit_err err = {{0}};
    struct ledger_view v;
    char msg[600], path[1200];
    size_t len;
    char *text;
    CHECK(dir);
    CHECKF(!ledger_open(&o, &l, &err), "%s", err.msg);
    CHECK(ledger_size(l) == 0);
    CHECK(!append_n(l, 37, 0, "acme"));
    CHECK(ledger_size(l) == 37);
    ledger_close(l);
    CHECKF(!ledger_open(&o, &l, &err), "%s", err.msg);
    CHECK(ledger_size(l) == 37);
    {
        /* one appender at a time: a second open is refused while this one holds it */
        struct ledger *l2 = NULL;
        CHECK(ledger_open(&o, &l2, &err) == CIT_EIO && !l2);
        CHECKF(strstr(err.msg, "in use by another process"), "%s", err.msg);
    }
    CHECK(!append_n(l, 5, 0, "lab"));
    CHECK(!ledger_checkpoint(l, &err));
    ledger_close(l);
    CHECKF(!verify_dir(dir, msg, sizeof(msg)), "%s", msg);
    CHECKF(strstr(msg, "42 entries") && strstr(msg, "OK"), "%s", msg);

    /* the view: lines as written, leaves hash them, the checkpoint signs the root */
    CHECKF(!ledger_view_open(dir, &v, &err), "%s", err.msg);
    CHECK(v.n == 42 && v.latest.size == 42);
    {
        uint8_t root[LEDGER_HASH], leaf[LEDGER_HASH];
        ledger_root((const uint8_t(*)[LEDGER_HASH])v.leaves, v.n, root);
        CHECK(!memcmp(root, v.latest.root, LEDGER_HASH));
        ledger_leaf_hash(v.lines[3], strlen(v.lines[3]), leaf);
        CHECK(!memcmp(leaf, v.leaves[3], LEDGER_HASH));
        CHECKF(!strncmp(v.lines[3], "{\"seq\":3,\"time\":\"", 17), "%s", v.lines[3]);
        CHECKF(strstr(v.lines[4],
                      "\"classes\":[\"personal\",\"secret\"],\"rule\":\"rule-\\\"quoted\\\"\""),
               "%s", v.lines[4]);
        CHECK(strstr(v.lines[0], "\"classes\":[]"));
    }
    ledger_view_free(&v);

    /* the checkpoints file is C2SP: origin, size, base64 root, blank, em dash line */
    snprintf(path, sizeof(path), "%s/checkpoints", dir);
    CHECK((text = t_read_file(path, &len)));
    CHECKF(!strncmp(text, "test.example/ledger\n0\n", 22), "%.80s", text);
    CHECK(strstr(text, "\n\n\xe2\x80\x94 test.example/ledger "));
    cit_free(text);

    /* the verifier key: given independently it passes; another key fails */
    {
        struct cit_buf rep = {0};
        snprintf(path, sizeof(path), "%s/node.vkey", dir);
        CHECK((text = t_read_file(path, &len)));
        CHECK(!ledger_verify(dir, text, &rep, &err));
        CHECK(!strstr(rep.p, "not given independently"));
        cit_buf_free(&rep);
        cit_free(text);
        /* a key of the same name but another key pair */
        const char *other = fresh_dir("ledger-other");
        struct ledger_opts o2 = {.dir = other, .origin = "test.example/ledger", .checkpoint_s = -1};
        struct ledger *l2;
        CHECK(!ledger_open(&o2, &l2, &err));
        ledger_close(l2);
        snprintf(path, sizeof(path), "%s/node.vkey", other);
        CHECK((text = t_read_file(path, &len)));
        CHECK(ledger_verify(dir, text, &rep, &err) == CIT_EFORMAT);
        CHECKF(strstr(err.msg, "no signature by the key"), "%s", err.msg);
        cit_buf_free(&rep);
        cit_free(text);
    }
    /* malformed verifier keys */
    {
        struct ledger_vkey vk;
        CHECK(ledger_vkey_parse("name+12345678", 13, &vk, &err) == CIT_EFORMAT);
        CHECK(ledger_vkey_parse("na me+12345678+AQ==", 19, &vk, &err) == CIT_EFORMAT);
        CHECK(ledger_vkey_parse("x+zzzzzzzz+AQ==", 15, &vk, &err) == CIT_EFORMAT);
    }
}

/* Flips one byte at off in file path, runs verify, restores it. */
static int flip_and_verify(const char *dir, const char *path, long off, char *msg, size_t cap)
{
    int fd = open(path, O_RDWR), rc;
    unsigned char c;
    if (fd < 0 || pread(fd, &c, 1, off) != 1) return -99;
    c ^= 0x01;
    if (pwrite(fd, &c, 1, off) != 1) return -99;
    rc = verify_dir(dir, msg, cap);
    c ^= 0x01;
    if (pwrite(fd, &c, 1, off) != 1) rc = -99;
    close(fd);
    return rc;
}

void test_ledger_tamper(void)
{
    const char *dir = fresh_dir("ledger-tamper");
    struct ledger_opts o = {.dir = dir, .origin = "tamper.example/log", .checkpoint_s = -1};
    struct ledger *l;
    struct cit_err err = {{0}};
    char msg[600], path[1200], want[64];
    size_t len;
    char *text;
    long starts[8];
    CHECK(dir);
    CHECK(!ledger_open(&o, &l, &err));
    CHECK(!append_n(l, 3, 0, "a"));
    CHECK(!ledger_checkpoint(l, &err));
    CHECK(!append_n(l, 3, 0, "b"));
    ledger_close(l);
    CHECKF(!verify_dir(dir, msg, sizeof(msg)), "%s", msg);

    /* every byte of the log: verify fails and names the entry holding it
     * (a newline belongs to the entry it ends) */
    snprintf(path, sizeof(path), "%s/log", dir);
    CHECK((text = t_read_file(path, &len)));
    {
        int e = 0;
        starts[0] = 0;
        for (size_t i = 0; i < len; i++)
            if (text[i] == '\n' && e < 7) starts[++e] = (long)i + 1;
        CHECK(e == 6);
    }
    cit_free(text);
    for (long off = 0; off < (long)len; off++) {
        int entry = 0;
        while (entry < 5 && off >= starts[entry + 1]) entry++;
        int rc = flip_and_verify(dir, path, off, msg, sizeof(msg));
        CHECKF(rc == CIT_EFORMAT, "log byte %ld: verify gave %d: %s", off, rc, msg);
        snprintf(want, sizeof(want), "entry %d ", entry);
        /* without its newline an entry runs into the next, which is then
         * the first that is out of place */
        if (off == starts[entry + 1] - 1 && entry < 5 && !strstr(msg, want))
            snprintf(want, sizeof(want), "entry %d ", entry + 1);
        CHECKF(strstr(msg, want), "log byte %ld (entry %d): %s", off, entry, msg);
    }
    /* every byte of the checkpoints */
    snprintf(path, sizeof(path), "%s/checkpoints", dir);
    CHECK((text = t_read_file(path, &len)));
    cit_free(text);
    for (long off = 0; off < (long)len; off++) {
        int rc = flip_and_verify(dir, path, off, msg, sizeof(msg));
        CHECKF(rc == CIT_EFORMAT, "checkpoint byte %ld: verify gave %d: %s", off, rc, msg);
        CHECKF(strstr(msg, "checkpoint"), "checkpoint byte %ld: %s", off, msg);
    }
    CHECKF(!verify_dir(dir, msg, sizeof(msg)), "restored: %s", msg);

    /* removing the last entry, or a middle one, is caught */
    snprintf(path, sizeof(path), "%s/log", dir);
    CHECK((text = t_read_file(path, &len)));
    {
        FILE *f = fopen(path, "wb");
        CHECK(f);
        fwrite(text, 1, (size_t)starts[5], f);
        fclose(f);
        CHECK(verify_dir(dir, msg, sizeof(msg)) == CIT_EFORMAT);
        CHECKF(strstr(msg, "entry 5 and later are missing"), "%s", msg);
        /* and the server refuses to open it */
        CHECK(ledger_open(&o, &l, &err) == CIT_EFORMAT);
        CHECKF(strstr(err.msg, "the log has 5 entries but its latest signed checkpoint covers 6"),
               "%s", err.msg);
        f = fopen(path, "wb");
        CHECK(f);
        fwrite(text, 1, (size_t)starts[2], f);
        fwrite(text + starts[3], 1, len - (size_t)starts[3], f);
        fclose(f);
        CHECK(verify_dir(dir, msg, sizeof(msg)) == CIT_EFORMAT);
        CHECKF(strstr(msg, "entry 2 does not start with {\"seq\":2"), "%s", msg);
        f = fopen(path, "wb");
        CHECK(f);
        fwrite(text, 1, len, f);
        fclose(f);
    }
    cit_free(text);
    CHECKF(!verify_dir(dir, msg, sizeof(msg)), "restored: %s", msg);
}

void test_ledger_torn_writes(void)
{
    const char *dir = fresh_dir("ledger-torn");
    struct ledger_opts o = {.dir = dir, .checkpoint_s = -1};
    struct ledger *l;
    struct cit_err err = {{0}};
    char msg[600], path[1200];
    CHECK(dir);
    CHECK(!ledger_open(&o, &l, &err));
    CHECK(!append_n(l, 4, 0, "a"));
    ledger_close(l);
    /* a crash mid-write leaves half a line and half a checkpoint */
    snprintf(path, sizeof(path), "%s/log", dir);
    {
        FILE *f = fopen(path, "ab");
        CHECK(f);
        fputs("{\"seq\":4,\"time\":\"2026-", f);
        fclose(f);
        snprintf(path, sizeof(path), "%s/checkpoints", dir);
        f = fopen(path, "ab");
        CHECK(f);
        fputs("citadel/ledger\n5\nAAAA", f);
        fclose(f);
    }
    /* verify notes the torn log tail but fails on the torn checkpoint:
     * offline, an unreadable checkpoint is never waved through */
    CHECK(verify_dir(dir, msg, sizeof(msg)) == CIT_EFORMAT);
    /* reopening cuts both and carries on */
    CHECKF(!ledger_open(&o, &l, &err), "%s", err.msg);
    CHECK(ledger_size(l) == 4);
    CHECK(!append_n(l, 2, 0, "b"));
    ledger_close(l);
    CHECKF(!verify_dir(dir, msg, sizeof(msg)), "%s", msg);
    CHECKF(strstr(msg, "6 entries"), "%s", msg);
    /* an append cannot be cut short silently: after reopening, an entry
     * whose line lacks its newline is treated as never written */
}

struct thr {
    struct ledger *l;
    int n, fails;
};

static void *appender(void *arg)
{
    struct thr *t = arg;
    for (int i = 0; i < t->n; i++) {
        struct ledger_rec r = {.tenant = "t", .action = "local", .status = 200, .tokens_in = i};
        if (ledger_append(t->l, &r, i % 7 == 0 ? LEDGER_SYNC : LEDGER_GROUP, NULL)) t->fails++;
    }
    return NULL;
}

void test_ledger_concurrent(void)
{
    const char *dir = fresh_dir("ledger-threads");
    struct ledger_opts o = {.dir = dir, .checkpoint_s = 1};
    struct ledger *l;
    struct cit_err err = {{0}};
    pthread_t th[6];
    struct thr t[6];
    char msg[600];
    CHECK(dir);
    CHECK(!ledger_open(&o, &l, &err));
    for (int i = 0; i < 6; i++) {
        t[i] = (struct thr){l, 300, 0};
        CHECK(!pthread_create(&th[i], NULL, appender, &t[i]));
    }
    for (int i = 0; i < 6; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 6; i++) CHECK(t[i].fails == 0);
    CHECK(ledger_size(l) == 1800);
    ledger_close(l);
    CHECKF(!verify_dir(dir, msg, sizeof(msg)), "%s", msg);
    CHECKF(strstr(msg, "1800 entries"), "%s", msg);
}

void test_ledger_retention(void)
{
    const char *dir = fresh_dir("ledger-retention");
    struct ledger_opts o = {.dir = dir, .checkpoint_s = -1};
    struct ledger *l;
    struct cit_err err = {{0}};
    struct ledger_view v;
    char msg[600];
    int64_t now = (int64_t)time(NULL) * 1000, day = 86400000;
    CHECK(dir);
    o.retention_days = 30;
    CHECK(ledger_open(&o, &l, &err) == CIT_ERANGE);
    CHECKF(strstr(err.msg, "below the minimum of 183"), "%s", err.msg);
    o.retention_days = 0;
    CHECK(!ledger_open(&o, &l, &err));
    CHECK(!append_n(l, 10, now - 400 * day, "old"));
    CHECK(!ledger_checkpoint(l, &err));
    CHECK(!append_n(l, 4, now - 100 * day, "recent"));
    ledger_close(l);
    o.retention_days = 365;
    CHECKF(!ledger_open(&o, &l, &err), "%s", err.msg);
    CHECK(ledger_size(l) == 14);
    CHECK(!append_n(l, 1, 0, "new"));
    ledger_close(l);
    CHECK(!ledger_view_open(dir, &v, &err));
    CHECK(v.n_pruned == 10 && v.n == 15);
    CHECKF(!strncmp(v.lines[0], "{\"seq\":10,", 10), "%s", v.lines[0]);
    ledger_view_free(&v);
    /* the tree, the old checkpoints and the proofs still verify */
    CHECKF(!verify_dir(dir, msg, sizeof(msg)), "%s", msg);
    CHECKF(strstr(msg, "15 entries (10 pruned)"), "%s", msg);

    /* a crash between the two renames of a prune leaves pruned updated and
     * the old log in place: the next open checks the moved entries against
     * their hashes in pruned, skips them, and drops them from the log */
    {
        char path[1200], cmd[2600];
        uint64_t removed;
        snprintf(path, sizeof(path), "%s/log", dir);
        snprintf(cmd, sizeof(cmd), "cp '%s' '%s.keep'", path, path);
        CHECK(!system(cmd)); /* entries 10..13 (100 days old) and 14 */
        CHECK(!ledger_prune(dir, now + day, &removed, &err));
        CHECKF(removed == 5, "removed %llu", (unsigned long long)removed);
        snprintf(cmd, sizeof(cmd), "cp '%s.keep' '%s'", path, path);
        CHECK(!system(cmd)); /* the log as before the second rename */
        o.retention_days = 183;
        CHECKF(!ledger_open(&o, &l, &err), "%s", err.msg);
        CHECK(ledger_size(l) == 15);
        CHECK(!append_n(l, 1, 0, "after"));
        ledger_close(l);
        CHECK(!ledger_view_open(dir, &v, &err));
        CHECKF(v.n_pruned == 15 && v.n == 16, "%llu %llu", (unsigned long long)v.n_pruned,
               (unsigned long long)v.n);
        ledger_view_free(&v);
        CHECKF(!verify_dir(dir, msg, sizeof(msg)), "%s", msg);
        CHECKF(!strstr(msg, "bytes after the last entry"), "%s", msg);
        /* a moved entry that differs from its hash in pruned is caught */
        snprintf(cmd, sizeof(cmd), "sed 's/\"tokens_in\":1,/\"tokens_in\":7,/' '%s.keep' > '%s'",
                 path, path);
        CHECK(!system(cmd));
        CHECK(ledger_open(&o, &l, &err) == CIT_EFORMAT);
        CHECKF(strstr(err.msg, "differs from its hash in pruned"), "%s", err.msg);
    }
}

/* ---- rollback resistance: the head, the floor, verify --since ---- */

struct floor_keeper {
    char note[1024];
    uint64_t size;
    int calls;
};

static void keep_floor(void *user, const struct ledger_checkpoint *cp, const char *note)
{
    struct floor_keeper *k = user;
    if (cp->size < k->size) return; /* as the state file: it only rises */
    snprintf(k->note, sizeof(k->note), "%s", note);
    k->size = cp->size;
    k->calls++;
}

static int sh(const char *fmt, const char *a, const char *b)
{
    char cmd[3000];
    snprintf(cmd, sizeof(cmd), fmt, a, b);
    return system(cmd);
}

/* verify --since note; 0 when it passes, else the message in msg */
static int verify_since(const char *dir, const char *note, char *msg, size_t cap)
{
    struct cit_buf rep = {0};
    struct cit_err err = {{0}};
    int rc = ledger_verify_since(dir, NULL, note, &rep, &err);
    snprintf(msg, cap, "%s", rc ? err.msg : (rep.p ? rep.p : ""));
    cit_buf_free(&rep);
    return rc;
}

/* Opens dir as serve would (with the floor); 0, or the error in msg. */
static int open_with_floor(const char *dir, struct floor_keeper *k, char *msg, size_t cap)
{
    struct ledger_opts o = {.dir = dir, .origin = "rollback.example/log", .checkpoint_s = -1};
    struct ledger *l = NULL;
    struct cit_err err = {{0}};
    int rc;
    o.floor_note = k->note;
    o.on_checkpoint = keep_floor;
    o.user = k;
    rc = ledger_open(&o, &l, &err);
    snprintf(msg, cap, "%s", rc ? err.msg : "");
    if (!rc) ledger_close(l);
    return rc;
}

void test_ledger_rollback(void)
{
    const char *dir = fresh_dir("ledger-rollback");
    char old[1200], good[1200], msg[900], path[1200];
    struct ledger_opts o = {.dir = dir, .origin = "rollback.example/log", .checkpoint_s = -1};
    struct floor_keeper k = {0};
    struct cit_buf seen = {0}, head = {0};
    struct ledger *l;
    struct cit_err err = {{0}};
    struct {
        const char *what, *cmd, *verify_says, *open_says;
    } cases[] = {
        {"the checkpoints file deleted", "rm %s/checkpoints", "history was deleted",
         "checkpoints file is missing"},
        {"checkpoints and head deleted", "rm %s/checkpoints %s/head",
         "no signed checkpoint or head", "checkpoints and head are missing"},
        {"log and checkpoints emptied", ": > %s/log; : > %s/checkpoints",
         "checkpoints file is empty", "the log has 0 entries"},
        {"everything but the key emptied", "rm %s/head; : > %s/log; : > %s/checkpoints",
         "rolled back", "the signed head is missing"},
        {"the last entry deleted", "sed -i '$d' %s/log", "entry 7 and later are missing",
         "the log has 7 entries"},
    };
    o.on_checkpoint = keep_floor;
    o.user = &k;
    CHECK(dir);
    snprintf(old, sizeof(old), "%s.old", dir);
    snprintf(good, sizeof(good), "%s.good", dir);
    sh("rm -rf %s %s", old, good);
    /* 5 entries, a snapshot of the whole directory, 3 more */
    CHECK(!ledger_open(&o, &l, &err));
    CHECK(!append_n(l, 5, 0, "a"));
    CHECK(!ledger_checkpoint(l, &err));
    CHECK(sh("cp -a %s %s", dir, old) == 0);
    CHECK(!append_n(l, 3, 0, "b"));
    ledger_close(l);
    CHECKF(k.size == 8 && k.calls >= 3, "floor %llu after %d calls", (unsigned long long)k.size,
           k.calls);
    /* the auditor keeps the signed head */
    CHECKF(ledger_head_note(dir, &head, &err) == 0, "%s", err.msg);
    CHECK(head.p && strstr(head.p, "rollback.example/log\n8\n"));
    CHECK(cit_buf_add(&seen, head.p, head.len) == 0 && cit_buf_add(&seen, "", 1) == 0);
    CHECKF(!verify_since(dir, seen.p, msg, sizeof(msg)), "%s", msg);
    CHECKF(strstr(msg, "consistent with the checkpoint you gave (size 8)"), "%s", msg);
    CHECKF(!open_with_floor(dir, &k, msg, sizeof(msg)), "%s", msg);
    CHECK(sh("cp -a %s %s", dir, good) == 0);

    /* each tampering: verify --since fails, and a node refuses to open it */
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char cmd[2400];
        snprintf(cmd, sizeof(cmd), "rm -rf %s && cp -a %s %s", dir, good, dir);
        CHECK(system(cmd) == 0);
        snprintf(cmd, sizeof(cmd), cases[i].cmd, dir, dir, dir);
        CHECK(system(cmd) == 0);
        CHECKF(verify_since(dir, seen.p, msg, sizeof(msg)) == CIT_EFORMAT, "%s: verify passed",
               cases[i].what);
        CHECKF(strstr(msg, cases[i].verify_says), "%s: verify said: %s", cases[i].what, msg);
        CHECKF(open_with_floor(dir, &k, msg, sizeof(msg)) == CIT_EFORMAT, "%s: open passed",
               cases[i].what);
        CHECKF(strstr(msg, cases[i].open_says), "%s: open said: %s", cases[i].what, msg);
    }

    /* only the head from the older snapshot: refused, not used to cut the
     * log back to it */
    {
        char cmd[6000];
        snprintf(cmd, sizeof(cmd), "rm -rf %s && cp -a %s %s && cp %s/head %s/head", dir, good, dir,
                 old, dir);
        CHECK(system(cmd) == 0);
        CHECK(verify_since(dir, seen.p, msg, sizeof(msg)) == CIT_EFORMAT);
        CHECKF(strstr(msg, "rolled back"), "%s", msg);
        CHECK(open_with_floor(dir, &k, msg, sizeof(msg)) == CIT_EFORMAT);
        CHECKF(strstr(msg, "the head was rolled back"), "%s", msg);
        snprintf(path, sizeof(path), "%s/log", dir);
        {
            struct ledger_view v;
            CHECK(!ledger_view_open(dir, &v, &err));
            CHECKF(v.n == 8, "the log was cut to %llu entries", (unsigned long long)v.n);
            ledger_view_free(&v);
        }
    }

    /* rolled back to the older snapshot, head and all: consistent in
     * itself, so only the auditor's checkpoint and the node's floor see it */
    {
        char cmd[2400];
        snprintf(cmd, sizeof(cmd), "rm -rf %s && cp -a %s %s", dir, old, dir);
        CHECK(system(cmd) == 0);
    }
    CHECKF(!verify_dir(dir, msg, sizeof(msg)), "the old snapshot alone: %s", msg);
    CHECK(verify_since(dir, seen.p, msg, sizeof(msg)) == CIT_EFORMAT);
    CHECKF(strstr(msg, "rolled back: the checkpoint you saw signs 8 entries"), "%s", msg);
    CHECK(open_with_floor(dir, &k, msg, sizeof(msg)) == CIT_EFORMAT);
    CHECKF(strstr(msg, "the log has 5 entries but the last checkpoint this node signed"), "%s",
           msg);

    /* the last entry rewritten with its prev recomputed: the chain holds,
     * the signed head does not */
    {
        char cmd[2400];
        snprintf(
            cmd, sizeof(cmd),
            "rm -rf %s && cp -a %s %s && sed -i '$s/\"tenant\":\"b\"/\"tenant\":\"x\"/' %s/log",
            dir, good, dir, dir);
        CHECK(system(cmd) == 0);
    }
    CHECK(verify_since(dir, seen.p, msg, sizeof(msg)) == CIT_EFORMAT);
    CHECKF(strstr(msg, "entry 7") || strstr(msg, "do not match"), "%s", msg);
    CHECK(open_with_floor(dir, &k, msg, sizeof(msg)) == CIT_EFORMAT);
    CHECKF(strstr(msg, "do not match"), "%s", msg);

    /* a whole new ledger in its place: its key did not sign the floor */
    {
        char cmd[2400];
        struct floor_keeper none = {0};
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        CHECK(system(cmd) == 0);
        CHECK(!open_with_floor(dir, &none, msg, sizeof(msg))); /* a fresh one, its own floor */
        CHECK(open_with_floor(dir, &k, msg, sizeof(msg)) == CIT_EFORMAT);
        CHECKF(strstr(msg, "is not signed by this ledger's key"), "%s", msg);
    }

    /* entries after the head (a crash between write and commit) were never
     * acknowledged: verify notes them, open moves them aside and records it */
    {
        char cmd[2400], *text;
        size_t len;
        struct ledger_view v;
        snprintf(cmd, sizeof(cmd), "rm -rf %s && cp -a %s %s", dir, good, dir);
        CHECK(system(cmd) == 0);
        /* the same two entries once more, chained on: an unacknowledged tail */
        snprintf(path, sizeof(path), "%s/log", dir);
        CHECK((text = t_read_file(path, &len)));
        cit_free(text);
        {
            struct ledger_opts o2 = o;
            struct floor_keeper scratch = {0};
            char tmp[1200];
            snprintf(tmp, sizeof(tmp), "%s.tail", dir);
            sh("rm -rf %s%s", tmp, "");
            snprintf(cmd, sizeof(cmd), "cp -a %s %s", dir, tmp);
            CHECK(system(cmd) == 0);
            o2.dir = tmp;
            o2.user = &scratch;
            CHECK(!ledger_open(&o2, &l, &err));
            CHECK(!append_n(l, 2, 0, "c"));
            ledger_close(l);
            /* its log with 10 entries, under the 8-entry head of dir */
            snprintf(cmd, sizeof(cmd), "cp %s/log %s/log", tmp, dir);
            CHECK(system(cmd) == 0);
        }
        CHECKF(!verify_since(dir, seen.p, msg, sizeof(msg)), "%s", msg);
        CHECKF(strstr(msg, "entries 8 to 9 follow the newest signed tree: never acknowledged"),
               "%s", msg);
        CHECKF(!open_with_floor(dir, &k, msg, sizeof(msg)), "%s", msg);
        CHECK(!ledger_view_open(dir, &v, &err));
        CHECKF(v.n == 9 && strstr(v.lines[8], "\"action\":\"recover\"") &&
                   strstr(v.lines[8], "2 entries after the signed head"),
               "%llu entries, last %s", (unsigned long long)v.n, v.n ? v.lines[v.n - 1] : "");
        ledger_view_free(&v);
        snprintf(path, sizeof(path), "%s/unacknowledged", dir);
        CHECK((text = t_read_file(path, &len)));
        CHECK(text && strstr(text, "\"seq\":8,") && strstr(text, "\"seq\":9,"));
        cit_free(text);
        CHECKF(!verify_since(dir, seen.p, msg, sizeof(msg)), "after recovery: %s", msg);
    }
    sh("rm -rf %s %s", old, good);
    cit_buf_free(&seen);
    cit_buf_free(&head);
}

/* Cosignatures: made and checked per c2sp.org/tlog-cosignature; a flipped
 * byte, another witness or the log's own key do not pass; the log's reader
 * ignores the witness's line. */
void test_ledger_cosign(void)
{
    const char *dir = fresh_dir("ledger-cosign");
    struct ledger_opts o = {.dir = dir, .origin = "cosign.example/log", .checkpoint_s = -1};
    struct ledger *l;
    struct ledger_skey w1, w2;
    struct ledger_checkpoint cp, old;
    struct cit_buf head = {0}, c1 = {0}, c2 = {0};
    struct cit_err err = {{0}};
    char p[1200], vp[1200];
    uint64_t ts = 0;
    size_t used;
    CHECK(dir && !ledger_open(&o, &l, &err));
    CHECK(!append_n(l, 4, 0, "a"));
    ledger_close(l);
    CHECK(!ledger_head_note(dir, &head, &err));
    {
        struct ledger_vkey none;
        memset(&none, 0, sizeof(none));
        snprintf(none.name, sizeof(none.name), "cosign.example/log");
        /* the right name, not the key: refused */
        CHECK(ledger_checkpoint_open(head.p, head.len, &none, &cp, &used, NULL) != 0);
    }
    snprintf(p, sizeof(p), "%s.w1.key", dir);
    snprintf(vp, sizeof(vp), "%s.w1.vkey", dir);
    unlink(p);
    unlink(vp);
    CHECKF(!ledger_key_load_type(p, vp, "w.example/w1", LEDGER_KEY_COSIGN, &w1, &err), "%s",
           err.msg);
    snprintf(p, sizeof(p), "%s.w2.key", dir);
    snprintf(vp, sizeof(vp), "%s.w2.vkey", dir);
    unlink(p);
    unlink(vp);
    CHECK(!ledger_key_load_type(p, vp, "w.example/w2", LEDGER_KEY_COSIGN, &w2, &err));
    CHECK(ledger_key_load_type(p, NULL, NULL, LEDGER_KEY_SIGN, &w2, &err) == CIT_EFORMAT);
    CHECK(!ledger_cosign(&w1, head.p, head.len, 1796200000, &c1, &err));
    CHECK(!ledger_cosignature_check(c1.p, c1.len, &w1.vk, &ts, &err) && ts == 1796200000);
    CHECK(ledger_cosignature_check(c1.p, c1.len, &w2.vk, NULL, &err) == CIT_EINVAL);
    CHECKF(strstr(err.msg, "no cosignature by the witness w.example/w2"), "%s", err.msg);
    /* both witnesses on one note; each still checks */
    CHECK(!ledger_cosign(&w2, c1.p, c1.len, 1796200001, &c2, &err));
    CHECK(!ledger_cosignature_check(c2.p, c2.len, &w1.vk, NULL, &err));
    CHECK(!ledger_cosignature_check(c2.p, c2.len, &w2.vk, NULL, &err));
    /* a flipped byte of the body or of the cosignature */
    c2.p[3] ^= 1;
    CHECK(ledger_cosignature_check(c2.p, c2.len, &w1.vk, NULL, &err) == CIT_EINVAL);
    c2.p[3] ^= 1;
    c2.p[c2.len - 10] ^= 1;
    CHECK(ledger_cosignature_check(c2.p, c2.len, &w2.vk, NULL, &err) == CIT_EINVAL);
    c2.p[c2.len - 10] ^= 1;
    /* the log's key verifies its own signature and skips the witnesses' */
    {
        struct ledger_vkey vk;
        struct cit_buf kb = {0};
        snprintf(p, sizeof(p), "%s/node.vkey", dir);
        CHECK(!cit_read_file(p, 4096, &kb, &err) && !ledger_vkey_parse(kb.p, kb.len, &vk, &err));
        CHECK(!ledger_checkpoint_open(c2.p, c2.len, &vk, &cp, &used, &err) && cp.size == 4);
        CHECK(ledger_cosign(&w1, head.p, head.len, 1, &c1, &err) == 0); /* appends again */
        cit_buf_free(&kb);
        /* the tree extends itself and an earlier size of itself */
        old = cp;
        CHECK(!ledger_extends(dir, &old, &cp, &err));
        old.size = 2;
        ledger_root(NULL, 0, old.root); /* not the root at 2: a fork */
        CHECK(ledger_extends(dir, &old, &cp, &err) == CIT_EFORMAT);
    }
    sodium_memzero(&w1, sizeof(w1));
    sodium_memzero(&w2, sizeof(w2));
    cit_buf_free(&head);
    cit_buf_free(&c1);
    cit_buf_free(&c2);
}

/* on_recent: a reopened ledger hands back exactly its entries of the last
 * recent_s seconds, as their lines (what the node rebuilds its passports
 * seen from) */
struct recent_seen {
    int n, bad;
};

static void count_recent(void *user, const char *line, size_t len)
{
    struct recent_seen *s = user;
    s->n++;
    if (!len || line[0] != '{' || line[len - 1] != '}' || memchr(line, '\n', len) ||
        !memmem(line, len, "\"tenant\":\"new\"", 14))
        s->bad++;
}

void test_ledger_recent(void)
{
    const char *dir = fresh_dir("ledger-recent");
    struct ledger_opts o = {.dir = dir, .origin = "test.example/ledger", .checkpoint_s = -1};
    struct recent_seen seen = {0};
    struct ledger *l;
    struct cit_err err = {{0}};
    int64_t now = (int64_t)time(NULL) * 1000;
    CHECK(dir);
    CHECKF(!ledger_open(&o, &l, &err), "%s", err.msg);
    CHECK(!append_n(l, 6, now - 3600 * 1000, "old"));
    CHECK(!append_n(l, 3, now - 1000, "new"));
    ledger_close(l);
    o.on_recent = count_recent;
    o.user = &seen;
    o.recent_s = 600;
    CHECKF(!ledger_open(&o, &l, &err), "%s", err.msg);
    ledger_close(l);
    /* the three new ones, each a whole line; none of the old */
    CHECKF(seen.n == 3 && !seen.bad, "%d entries, %d not as expected", seen.n, seen.bad);
    /* recent_s 0: none */
    seen.n = 0;
    o.recent_s = 0;
    CHECKF(!ledger_open(&o, &l, &err), "%s", err.msg);
    ledger_close(l);
    CHECK(seen.n == 0);
}
