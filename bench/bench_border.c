/*
 * Border control benchmark.
 *
 * 1. Hashing: citadel's streamed SHA-256 (OpenSSL, with the CPU's SHA
 *    extensions) against sha256sum on the same 1 GiB file, made once under
 *    build/ and read from the page cache, so both sides measure hashing,
 *    not the disk. Issue 5's target: at least as fast as sha256sum.
 * 2. Admission of the synthetic TinyLlama-1.1B-shaped q4_0 model (the
 *    engine benchmark's, cached outside the repository): the whole of
 *    `citadel model admit` (structure, signature over model and card,
 *    card, policy, template, registry and ledger), and a load through
 *    border control (hash of the mapping, then the engine's load) against
 *    the engine's load alone.
 * Nothing is asserted.
 *
 *   bench_border [--runs N] [--mib N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench_util.h"
#include "citadel/node.h"
#include "citadel/border.h"
#include "citadel/ledger.h"
#include "citadel/policy.h"
#include "../src/border/border_int.h"
#include "../src/policy/policy_int.h"

static const char card[] =
    "{\"bomFormat\":\"CycloneDX\",\"specVersion\":\"1.6\",\"components\":[{\"type\":"
    "\"machine-learning-model\",\"name\":\"synthetic-1.1b\",\"licenses\":[{\"license\":"
    "{\"id\":\"MIT\"}}],\"modelCard\":{\"modelParameters\":{\"datasets\":[{\"ref\":\"d\"}]}}},"
    "{\"type\":\"data\",\"bom-ref\":\"d\",\"name\":\"random\",\"properties\":[{\"name\":"
    "\"citadel:jurisdiction\",\"value\":\"DE\"}]}]}";

static const char policy[] = "version: 1\nnode: {id: bench, jurisdiction: DE}\n"
                             "classes: [public]\ntenants: {t: }\n"
                             "models: {m: {jurisdiction: DE, classes: [public]}}\n"
                             "rules: [{id: l, action: local}]\n"
                             "admission: {licenses: [MIT], dataset_jurisdictions: [EU]}\n";

/* Admission and gated load of the 1.1B model, medians of runs. */
static int bench_admission(int runs)
{
    const char *dir = "build/bench-admit";
    char model[1024], p[1200], sig[1200], cardp[1200];
    struct cit_pool *pool = NULL;
    struct cit_err err;
    struct pol_policy *pol = NULL;
    struct brd_registry *reg = NULL;
    struct cit_db *db = NULL;
    struct node *sn = NULL;
    struct ledger *lg = NULL;
    struct ledger_opts lo = {0};
    struct cit_buf pem = {0};
    double admit_s[50], gated_s[50], plain_s[50];
    FILE *f;
    if (cit_pool_create(cit_cpu_count(), &pool) || ensure_model("q4_0", pool, model, sizeof(model)))
        return 1;
    cit_pool_free(pool);
    snprintf(p, sizeof(p), "rm -rf %s && mkdir -p %s", dir, dir);
    if (system(p)) return 1;
    snprintf(cardp, sizeof(cardp), "%s/model.cdx.json", dir);
    snprintf(sig, sizeof(sig), "%s/model.sig", dir);
    if (!(f = fopen(cardp, "w"))) return 1;
    fputs(card, f);
    fclose(f);
    snprintf(p, sizeof(p), "%s/key.pem", dir);
    char pub[1200];
    snprintf(pub, sizeof(pub), "%s/key.pub.pem", dir);
    if (brd_keygen("P-256", p, pub, &err) || brd_sign(p, model, cardp, sig, NULL, &err) ||
        pol_parse("bench", policy, strlen(policy), &pol, &err) ||
        cit_read_file(pub, 1 << 16, &pem, &err))
        goto fail;
    snprintf(p, sizeof(p), "%s/state.db", dir);
    if (!(db = bench_state_open(p, &sn, &err)) || brd_registry_open(db, &reg, &err) ||
        brd_trust_add(reg, "bench", "DE", pem.p, pem.len, NULL, &err))
        goto fail;
    snprintf(p, sizeof(p), "%s/ledger", dir);
    lo.dir = p;
    lo.checkpoint_s = -1;
    if (ledger_open(&lo, &lg, &err)) goto fail;
    for (int r = 0; r < runs; r++) {
        struct brd_admit_req q = {model, cardp, sig, 0};
        struct brd_admitted a;
        struct brd_load_opts gl = {reg, pol, lg, 0, 0, 0};
        struct eng_model *m;
        const char *chk;
        double t0 = now_s();
        if (brd_admit(reg, pol, lg, &q, &a, &chk, &err)) goto fail;
        admit_s[r] = now_s() - t0;
        t0 = now_s();
        if (brd_load_model(&gl, model, &m, &chk, &err)) goto fail;
        gated_s[r] = now_s() - t0;
        eng_model_free(m);
        t0 = now_s();
        if (eng_model_load(model, &m, &err)) goto fail;
        plain_s[r] = now_s() - t0;
        eng_model_free(m);
    }
    struct stat st;
    stat(model, &st);
    printf("admission of the synthetic 1.1B q4_0 model (%.2f GB, page cache), median of %d runs\n",
           (double)st.st_size / 1e9, runs);
    printf("citadel model admit (all checks, registry, ledger): %.3f s\n", median(admit_s, runs));
    printf("load through border control (hash + load):         %.3f s\n", median(gated_s, runs));
    printf("engine load alone:                                 %.3f s\n", median(plain_s, runs));
    ledger_close(lg);
    brd_registry_close(reg);
    node_close(sn);
    pol_free(pol);
    cit_buf_free(&pem);
    return 0;
fail:
    fprintf(stderr, "bench_border: %s\n", err.msg);
    return 1;
}

int main(int argc, char **argv)
{
    int runs = 5;
    long mib = 1024;
    const char *path = "build/bench-hash.bin";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mib") && i + 1 < argc)
            mib = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_border [--runs N] [--mib N]\n");
            return 2;
        }
    }
    if (runs < 1 || runs > 50) runs = 5;
    struct stat st;
    if (stat(path, &st) || st.st_size != (off_t)mib << 20) {
        FILE *f = fopen(path, "wb");
        if (!f) {
            fprintf(stderr, "bench_border: cannot write %s (run from the repository root)\n", path);
            return 1;
        }
        static unsigned char block[1 << 20];
        unsigned x = 12345;
        for (long i = 0; i < mib; i++) {
            for (size_t k = 0; k < sizeof(block); k++)
                block[k] = (unsigned char)(x = x * 1103515245u + 12345u) >> 3;
            fwrite(block, 1, sizeof(block), f);
        }
        fclose(f);
    }
    double ours[50], theirs[50];
    char cmd[256];
    struct cit_err err;
    snprintf(cmd, sizeof(cmd), "sha256sum %s > /dev/null", path);
    if (system(cmd)) return 1; /* warm the page cache */
    for (int r = 0; r < runs; r++) {
        struct brd_manifest m;
        if (brd_manifest_build(path, NULL, NULL, &m, &err)) {
            fprintf(stderr, "bench_border: %s\n", err.msg);
            return 1;
        }
        ours[r] = (double)m.bytes / 1e9 / m.seconds;
        brd_manifest_free(&m);
        double t0 = now_s();
        if (system(cmd)) return 1;
        theirs[r] = (double)((uint64_t)mib << 20) / 1e9 / (now_s() - t0);
    }
    printf("citadel border benchmark: SHA-256 of a %ld MiB file (page cache), median of %d runs\n",
           mib, runs);
    printf("citadel (OpenSSL):  %.2f GB/s\n", median(ours, runs));
    printf("sha256sum:          %.2f GB/s (target: citadel at least as fast)\n",
           median(theirs, runs));
    return bench_admission(runs);
}
