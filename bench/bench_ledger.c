/*
 * The audit ledger and the sovereignty layer's cost per request.
 *
 *   bench_ledger [--dir DIR] [--n N] [--sync-n N] [--runs R]
 *
 * Prints ledger appends per second with 1, 4, 16 and 64 appending threads.
 * Every append returns committed (the log synced and a signed head written
 * over it); appends that arrive while a commit runs share the next one, so
 * the rate grows with concurrency. Then the cost of the signature itself,
 * and the layer's work for one served request (the
 * canonical request digest, detection and the policy decision, quota
 * admission and release in SQLite, the ledger entry) against the engine
 * time of a 16-token completion on stories260K (prefill and 16 decode
 * steps, 2 threads) and on the TinyLlama-1.1B-shaped Q4_0 model (bench_serve's,
 * made once into the cache: a model of the size nodes serve). Medians over
 * --runs runs. Targets: at least 50,000
 * appends/s under load (issue 4; 64 threads); the layer, commit included,
 * under 1% of the completion (issue 17).
 * DIR (default /tmp/citadel-bench-ledger) should be on the disk the node
 * would use: fsync costs are the disk's.
 */
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "citadel/node.h"
#include "citadel/ledger.h"
#include "citadel/policy.h"
#include "../src/engine/eng_int.h"
#include "../src/ledger/ledger_int.h"

static const char *g_dir = "/tmp/citadel-bench-ledger";

static void rec_fill(struct ledger_rec *r, int i)
{
    static char req[48];
    memset(r, 0, sizeof(*r));
    snprintf(req, sizeof(req), "chatcmpl-%024d", i);
    r->tenant = "research-lab";
    r->key_id = "3f2a9c0d11e4b7a8";
    r->request_id = req;
    r->digest[0] = (uint8_t)i;
    r->classes = "personal";
    r->rule = "personal-redacted";
    r->policy_hash = "9c1d5e0b7a2f4c3e8d6b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a291807";
    r->target = "stories260K";
    r->action = "redact";
    r->tokens_in = 212;
    r->tokens_out = 16;
    r->status = 200;
}

/* One checkpoint signature (what a commit adds to the fdatasync), in us. */
static double sign_us(int iters)
{
    struct ledger_skey k;
    struct ledger_checkpoint cp = {0};
    struct cit_buf b = {0};
    struct cit_err err;
    char kp[1200], vp[1200];
    double t0;
    snprintf(kp, sizeof(kp), "%s/sign.key", g_dir);
    snprintf(vp, sizeof(vp), "%s/sign.vkey", g_dir);
    if (ledger_key_load(kp, vp, "bench.example/log", &k, &err)) {
        fprintf(stderr, "bench_ledger: %s\n", err.msg);
        exit(1);
    }
    snprintf(cp.origin, sizeof(cp.origin), "bench.example/log");
    t0 = now_s();
    for (int i = 0; i < iters; i++) {
        cp.size = (uint64_t)i + 1;
        cp.root[0] = (uint8_t)i;
        b.len = 0;
        if (ledger_checkpoint_sign(&k, &cp, &b)) exit(1);
    }
    cit_buf_free(&b);
    return (now_s() - t0) / iters * 1e6;
}

static struct ledger *open_fresh(const char *name)
{
    char dir[1024], cmd[1200];
    struct ledger_opts o = {0};
    struct ledger *l;
    struct cit_err err;
    snprintf(dir, sizeof(dir), "%s/%s", g_dir, name);
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s' && rm -rf '%s'", g_dir, dir);
    if (system(cmd)) return NULL;
    o.dir = dir;
    o.checkpoint_s = 60;
    if (ledger_open(&o, &l, &err)) {
        fprintf(stderr, "bench_ledger: %s\n", err.msg);
        return NULL;
    }
    return l;
}

struct job {
    struct ledger *l;
    int n;
    enum ledger_durability d;
};

static void *appender(void *arg)
{
    struct job *j = arg;
    struct ledger_rec r;
    for (int i = 0; i < j->n; i++) {
        rec_fill(&r, i);
        if (ledger_append(j->l, &r, j->d, NULL)) {
            fprintf(stderr, "bench_ledger: append failed\n");
            exit(1);
        }
    }
    return NULL;
}

/* Appends per second with n_threads appenders, n entries in all. */
static double appends(int n_threads, int n, enum ledger_durability d)
{
    struct ledger *l = open_fresh(d == LEDGER_SYNC ? "sync" : "group");
    pthread_t th[64];
    struct job j[64];
    double t0, t;
    if (!l) exit(1);
    t0 = now_s();
    for (int i = 0; i < n_threads; i++) {
        j[i] = (struct job){l, n / n_threads, d};
        pthread_create(&th[i], NULL, appender, &j[i]);
    }
    for (int i = 0; i < n_threads; i++) pthread_join(th[i], NULL);
    t = now_s() - t0;
    ledger_close(l);
    return (double)(n / n_threads * n_threads) / t;
}

static const char *request_body =
    "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"system\",\"content\":\"You are a "
    "helpful assistant for the claims department.\"},{\"role\":\"user\",\"content\":\"Please "
    "summarise the claim of our customer Jana Novak (jana.novak@example.com, phone +49 30 "
    "901820, IBAN DE89 3704 0044 0532 0130 00) about the water damage in the basement of the "
    "rented flat, reported on 3 March, and list the documents still missing before the "
    "assessor visits.\"}],\"max_tokens\":16,\"temperature\":0}";

/* One request's layer work, in seconds (median of iters). */
static double layer_once(struct pol_policy *p, struct pol_quotas *q, struct ledger *l, int iters)
{
    double *t = malloc((size_t)iters * sizeof(double)), med;
    const char *prompt = strstr(request_body, "You are");
    for (int i = 0; i < iters; i++) {
        double t0 = now_s();
        json_t *root = json_loads(request_body, 0, NULL);
        char *canon = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
        struct ledger_rec r;
        struct pol_request pr = {"research-lab", "stories260K", prompt, strlen(prompt),
                                 NULL,           NULL,          0};
        struct pol_decision d;
        struct pol_quota_ticket tk;
        int64_t now = (int64_t)time(NULL);
        rec_fill(&r, i);
        static const uint8_t dk[32] = {1}; /* the node's digest key: HMAC, as the node */
        crypto_auth_hmacsha256_state hs;
        crypto_auth_hmacsha256_init(&hs, dk, sizeof(dk));
        crypto_auth_hmacsha256_update(&hs, (const unsigned char *)canon, strlen(canon));
        crypto_auth_hmacsha256_final(&hs, r.digest);
        pol_decide(p, &pr, &d);
        /* limits high enough for the loop, so every check runs and passes */
        static const struct pol_quota lim = {1000000000, 1000000000000, 64};
        if (pol_quota_admit(q, "research-lab", &lim, 212, 16, now, &tk)) {
            fprintf(stderr, "bench_ledger: quota admission failed\n");
            exit(1);
        }
        pol_quota_finish(q, "research-lab", &tk, 16, now);
        r.action = pol_action_name(d.action);
        if (ledger_append(l, &r, LEDGER_GROUP, NULL)) exit(1);
        pol_decision_free(&d);
        free(canon);
        json_decref(root);
        t[i] = now_s() - t0;
    }
    med = median(t, iters);
    free(t);
    return med;
}

/* A 16-token completion on stories260K: prefill of the request's prompt and
 * 16 decode steps, in seconds. */
static double engine_once(const char *model, int iters)
{
    struct eng_model *m;
    struct eng_seq *seq;
    struct cit_pool *pool;
    struct cit_err err;
    int32_t toks[512];
    int n = 0;
    float *logits;
    double *t, med;
    const char *prompt = strstr(request_body, "You are");
    if (eng_model_load(model, &m, &err)) {
        fprintf(stderr, "bench_ledger: %s\n", err.msg);
        exit(1);
    }
    eng_tokenize(m, prompt, strlen(prompt), 1, 0, toks, 512, &n);
    logits = malloc((size_t)eng_model_hparams(m)->n_vocab * sizeof(float));
    t = malloc((size_t)iters * sizeof(double));
    cit_pool_create(2, &pool);
    for (int i = 0; i < iters; i++) {
        double t0 = now_s();
        int32_t id;
        eng_seq_new(m, 512, &seq);
        eng_seq_eval(seq, pool, toks, n, logits, 0);
        for (int k = 0; k < 16; k++) {
            id = 0;
            for (int v = 1; v < eng_model_hparams(m)->n_vocab; v++)
                if (logits[v] > logits[id]) id = v;
            eng_seq_eval(seq, pool, &id, 1, logits, 0);
        }
        eng_seq_free(seq);
        t[i] = now_s() - t0;
    }
    med = median(t, iters);
    cit_pool_free(pool);
    free(t);
    free(logits);
    eng_model_free(m);
    return med;
}

int main(int argc, char **argv)
{
    int n = 200000, sync_n = 4000, runs = 3;
    const char *model = "../shared/models/stories260K.gguf";
    double g1[8], g4[8], g16[8], g64[8];
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--dir"))
            g_dir = argv[i + 1];
        else if (!strcmp(argv[i], "--n"))
            n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--sync-n"))
            sync_n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--runs"))
            runs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--model"))
            model = argv[i + 1];
    }
    if (runs < 1 || runs > 8 || n < 16 || sync_n < 16) {
        fprintf(stderr, "usage: bench_ledger [--dir DIR] [--n N] [--sync-n N] [--runs 1..8]\n");
        return 2;
    }
    if (sodium_init() < 0) return 1;
    cit_log_set_level(CIT_LOG_WARN);
    {
        char cmd[1100];
        snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", g_dir);
        if (system(cmd)) return 1;
    }
    for (int r = 0; r < runs; r++) {
        g1[r] = appends(1, sync_n, LEDGER_GROUP);
        g4[r] = appends(4, sync_n * 4, LEDGER_GROUP);
        g16[r] = appends(16, n / 4, LEDGER_GROUP);
        g64[r] = appends(64, n, LEDGER_GROUP);
    }
    printf("ledger appends/s, each returned committed: log synced, signed head over it\n"
           "(median of %d runs, %s)\n",
           runs, g_dir);
    printf("  1 thread                   %10.0f   (one fdatasync and one signature each)\n",
           median(g1, runs));
    printf("  4 threads                  %10.0f\n", median(g4, runs));
    printf("  16 threads                 %10.0f\n", median(g16, runs));
    printf("  64 threads                 %10.0f   (target >= 50000: %s)\n", median(g64, runs),
           median(g64, runs) >= 50000 ? "met" : "NOT met");
    printf("  checkpoint signature       %10.1f us per commit (Ed25519)\n", sign_us(2000));

    {
        struct pol_policy *p;
        struct pol_quotas *q;
        struct ledger *l = open_fresh("layer");
        struct cit_err err;
        char state[1100];
        struct cit_db *db = NULL;
        struct node *sn = NULL;
        double layer, engine;
        if (!l || pol_load("policy.example.yaml", &p, &err)) {
            fprintf(stderr, "bench_ledger: %s\n", err.msg);
            return 1;
        }
        snprintf(state, sizeof(state), "%s/layer.db", g_dir);
        remove(state);
        if (!(db = bench_state_open(state, &sn, &err)) || pol_quotas_open(db, &q, &err)) {
            fprintf(stderr, "bench_ledger: %s\n", err.msg);
            return 1;
        }
        layer = layer_once(p, q, l, 2000);
        engine = engine_once(model, 30);
        printf("sovereignty layer per request (digest, detect+decide, quota in SQLite, ledger\n"
               "entry committed: fdatasync and signed head)\n");
        printf("  layer                      %10.1f us\n", layer * 1e6);
        printf("  16-token completion        %10.1f us (stories260K, 2 threads)\n", engine * 1e6);
        printf(
            "  overhead                   %10.2f %%   (target < 1%%: %s; a 260K-parameter toy)\n",
            100 * layer / engine, layer / engine < 0.01 ? "met" : "NOT met");
        /* the same request on a model of the size nodes serve */
        {
            char big[1200];
            struct cit_pool *pool = NULL;
            if (!cit_pool_create(2, &pool) && !ensure_model("q4_0", pool, big, sizeof(big))) {
                double e2 = engine_once(big, 3);
                printf("  16-token completion        %10.1f us (TinyLlama-1.1B-shaped Q4_0, 2 "
                       "threads)\n",
                       e2 * 1e6);
                printf("  overhead                   %10.3f %%   (target < 1%%: %s)\n",
                       100 * layer / e2, layer / e2 < 0.01 ? "met" : "NOT met");
            } else {
                printf("  (the TinyLlama-shaped model could not be made; see bench_serve)\n");
            }
            cit_pool_free(pool);
        }
        pol_quotas_close(q);
        node_close(sn);
        pol_free(p);
        ledger_close(l);
    }
    return 0;
}
