/*
 * What a forward through the gateway adds, on loopback (issue 18).
 *
 *   bench_gateway [--bin build/citadel] [--model M.gguf] [--dir DIR] [--n N] [--runs R]
 *                 [--secs S] [--stream]
 *
 * Two `citadel serve` processes: B serves the model; A forwards tenant
 * fwd's requests to B as a citadel peer (mutual TLS 1.3 with both keys
 * pinned, a data passport sealed per request, checked and recorded as
 * seen at B, a receipt back). One client asks B directly (tenant local,
 * plain HTTP on B's client port) and through A, the two interleaved, each
 * on a kept-alive connection (the gateway keeps its TLS connection to B
 * too). The answer is one token, so the engine adds next to nothing; the
 * difference of the medians is what the gateway adds: A's gate and ledger
 * entry, the passport, TLS, the relay, B's passport check and the replay
 * record. Then throughput: 4 clients for S seconds, through A and direct.
 * Medians and p99 of each run, then the median over --runs runs. Plain
 * answers by default (the peer is asked for one answer too); --stream asks
 * for streams everywhere and times each to its end.
 * Target: under 1 ms added at the median.
 * DIR (default /tmp/citadel-bench-gateway) should be on the disk the nodes
 * would use: the ledgers and the replay record sync to it.
 */
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"

static const char *g_bin = "build/citadel", *g_model = "../shared/models/stories260K.gguf",
                  *g_dir = "/tmp/citadel-bench-gateway";

static int free_port(void)
{
    struct sockaddr_in a = {0};
    socklen_t l = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof(a)) &&
        !getsockname(fd, (struct sockaddr *)&a, &l))
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    int ok = f && fputs(text, f) >= 0;
    if (f && fclose(f)) ok = 0;
    return ok ? 0 : -1;
}

/* The first line a command prints, into out. */
static int first_line(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    int ok = p && fgets(out, (int)cap, p);
    if (p) pclose(p);
    if (!ok) return -1;
    out[strcspn(out, "\n")] = 0;
    return 0;
}

struct node {
    char name[8], dir[512];
    int port, peer_port;
    pid_t pid;
};

static void conf(const struct node *n)
{
    char p[600], text[2048];
    snprintf(p, sizeof(p), "%s/citadel.conf", n->dir);
    snprintf(text, sizeof(text),
             "host = 127.0.0.1\nport = %d\npeer_listen = 127.0.0.1:%d\nmodel = %s\n"
             "threads = 1\nctx = 256\nparallel = 4\nmax_tokens = 8\nstate = %s/state.db\n"
             "policy = %s/policy.yaml\nledger = %s/ledger\ngrace = 2\n",
             n->port, n->peer_port, g_model, n->dir, n->dir, n->dir);
    write_file(p, text);
}

static int start(struct node *n)
{
    char out[600], err[600], line[256];
    snprintf(out, sizeof(out), "%s/out", n->dir);
    snprintf(err, sizeof(err), "%s/log", n->dir);
    if ((n->pid = fork()) == 0) {
        char c[600];
        snprintf(c, sizeof(c), "%s/citadel.conf", n->dir);
        if (!freopen(out, "w", stdout) || !freopen(err, "a", stderr)) _exit(127);
        execl(g_bin, g_bin, "serve", "--unvetted", "--config", c, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 300; i++) {
        FILE *f = fopen(out, "r");
        int up = 0;
        while (f && fgets(line, sizeof(line), f)) up |= strstr(line, "peers (mutual TLS)") != NULL;
        if (f) fclose(f);
        if (up) return 0;
        usleep(20000);
    }
    fprintf(stderr, "bench_gateway: %s did not start (see %s)\n", n->name, err);
    return -1;
}

static void stop(struct node *n)
{
    if (n->pid <= 0) return;
    kill(n->pid, SIGTERM);
    waitpid(n->pid, NULL, 0);
    n->pid = 0;
}

static size_t sink(char *d, size_t sz, size_t nm, void *u)
{
    (void)d, (void)u;
    return sz * nm;
}

struct client {
    CURL *h;
    struct curl_slist *hd;
};

static void client_init(struct client *c, const char *key)
{
    char auth[200];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
    c->h = curl_easy_init();
    c->hd = curl_slist_append(NULL, auth);
    c->hd = curl_slist_append(c->hd, "Content-Type: application/json");
}

static void client_free(struct client *c)
{
    curl_easy_cleanup(c->h);
    curl_slist_free_all(c->hd);
}

static const char *g_body =
    "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":"
    "\"PROJECTX: one word\"}],\"max_tokens\":1,\"temperature\":0}";
static const char *g_body_stream =
    "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":"
    "\"PROJECTX: one word\"}],\"max_tokens\":1,\"temperature\":0,\"stream\":true}";

/* One request; its time in ms, or -1. */
static double ask(struct client *c, int port)
{
    char url[128];
    long status = 0;
    double t0;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", port);
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hd);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, g_body);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c->h, CURLOPT_PROXY, "");
    t0 = now_s();
    if (curl_easy_perform(c->h) != CURLE_OK) return -1;
    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
    return status == 200 ? (now_s() - t0) * 1e3 : -1;
}

static double p99(double *v, int n)
{
    median(v, n); /* sorts */
    return v[(int)((n - 1) * 0.99)];
}

struct load {
    const char *key;
    int port;
    double secs;
    long done, failed;
};

static void *load_main(void *arg)
{
    struct load *l = arg;
    struct client c;
    double end = now_s() + l->secs;
    client_init(&c, l->key);
    while (now_s() < end) {
        if (ask(&c, l->port) < 0)
            l->failed++;
        else
            l->done++;
    }
    client_free(&c);
    return NULL;
}

static double throughput(const char *key, int port, double secs, long *failed)
{
    struct load l[4];
    pthread_t t[4];
    long done = 0;
    *failed = 0;
    for (int i = 0; i < 4; i++) {
        l[i] = (struct load){key, port, secs, 0, 0};
        pthread_create(&t[i], NULL, load_main, &l[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        done += l[i].done;
        *failed += l[i].failed;
    }
    return (double)done / secs;
}

int main(int argc, char **argv)
{
    struct node a = {"A", "", 0, 0, 0}, b = {"B", "", 0, 0, 0};
    char cmd[2048], ida[300], idb[300], ka[128], kb[128], path[600], text[4096];
    int n = 400, runs = 3, rc = 1;
    double secs = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bin") && i + 1 < argc)
            g_bin = argv[++i];
        else if (!strcmp(argv[i], "--model") && i + 1 < argc)
            g_model = argv[++i];
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            g_dir = argv[++i];
        else if (!strcmp(argv[i], "--n") && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--secs") && i + 1 < argc)
            secs = atof(argv[++i]);
        else if (!strcmp(argv[i], "--stream"))
            g_body = g_body_stream;
        else {
            fprintf(stderr, "usage: bench_gateway [--bin B] [--model M] [--dir D] [--n N] "
                            "[--runs R] [--secs S] [--stream]\n");
            return 2;
        }
    }
    if (n < 10 || runs < 1 || secs <= 0) return 2;
    {
        static char mp[4096], bp[4096];
        if (!realpath(g_model, mp) || !realpath(g_bin, bp)) {
            fprintf(stderr, "bench_gateway: %s or %s: %s\n", g_model, g_bin, strerror(errno));
            return 1;
        }
        g_model = mp, g_bin = bp;
    }
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s/A' '%s/B'", g_dir, g_dir, g_dir);
    if (system(cmd)) return 1;
    snprintf(a.dir, sizeof(a.dir), "%s/A", g_dir);
    snprintf(b.dir, sizeof(b.dir), "%s/B", g_dir);
    a.port = free_port(), a.peer_port = free_port(), b.port = free_port(),
    b.peer_port = free_port();
    conf(&a);
    conf(&b);
    /* the keys first, under a policy without peers; then the policies that pin them */
    for (int k = 0; k < 2; k++) {
        struct node *x = k ? &b : &a;
        snprintf(path, sizeof(path), "%s/policy.yaml", x->dir);
        snprintf(text, sizeof(text),
                 "version: 1\nnode: {id: %s, jurisdiction: EU}\nclasses: [public, internal]\n"
                 "tenants: {t: {}}\nmodels: {stories260K: {jurisdiction: EU, classes: [public]}}\n"
                 "rules: [{id: all, action: local}]\nadmission: {licenses: [MIT], "
                 "dataset_jurisdictions: [\"*\"], unvetted: allow}\n",
                 k ? "b" : "a");
        write_file(path, text);
        snprintf(cmd, sizeof(cmd), "%s peer identity --config %s/citadel.conf 2>/dev/null", g_bin,
                 x->dir);
        if (first_line(cmd, k ? idb : ida, sizeof(ida))) {
            fprintf(stderr, "bench_gateway: %s\n", cmd);
            return 1;
        }
    }
    snprintf(path, sizeof(path), "%s/policy.yaml", a.dir);
    snprintf(text, sizeof(text),
             "version: 1\nnode: {id: a, jurisdiction: EU}\nclasses: [public, internal]\n"
             "keywords: [{word: PROJECTX, class: internal}]\ntenants: {fwd: {}}\n"
             "models: {stories260K: {jurisdiction: EU, classes: [public, internal]}}\n"
             "peers:\n  b: {jurisdiction: EU, url: \"https://127.0.0.1:%d\", classes: [public, "
             "internal], identity: \"%s\"}\n"
             "rules: [{id: to-b, when: {tenant: fwd}, action: forward, peer: b}]\n"
             "admission: {licenses: [MIT], dataset_jurisdictions: [\"*\"], unvetted: allow}\n",
             b.peer_port, idb);
    write_file(path, text);
    snprintf(path, sizeof(path), "%s/policy.yaml", b.dir);
    snprintf(text, sizeof(text),
             "version: 1\nnode: {id: b, jurisdiction: EU}\nclasses: [public, internal]\n"
             "keywords: [{word: PROJECTX, class: internal}]\ntenants: {a: {}, local: {}}\n"
             "models: {stories260K: {jurisdiction: EU, classes: [public, internal]}}\n"
             "peers:\n  a: {jurisdiction: EU, url: \"https://127.0.0.1:%d\", classes: [public], "
             "identity: \"%s\"}\n"
             "rules: [{id: all, action: local}]\n"
             "admission: {licenses: [MIT], dataset_jurisdictions: [\"*\"], unvetted: allow}\n",
             a.peer_port, ida);
    write_file(path, text);
    snprintf(cmd, sizeof(cmd), "%s keys add --tenant fwd --config %s/citadel.conf 2>/dev/null",
             g_bin, a.dir);
    if (first_line(cmd, ka, sizeof(ka))) return 1;
    snprintf(cmd, sizeof(cmd), "%s keys add --tenant local --config %s/citadel.conf 2>/dev/null",
             g_bin, b.dir);
    if (first_line(cmd, kb, sizeof(kb))) return 1;
    if (start(&b) || start(&a)) goto out;

    printf("bench_gateway: %d requests each way per run, interleaved, %d runs; 1-token chat "
           "answers (%s) from %s\n",
           n, runs, g_body == g_body_stream ? "streamed, to the stream's end" : "plain", g_model);
    {
        double *med_d = calloc((size_t)runs, sizeof(double)), *med_f = calloc((size_t)runs, 8),
               *p99_d = calloc((size_t)runs, 8), *p99_f = calloc((size_t)runs, 8),
               *added = calloc((size_t)runs, 8);
        double *td = calloc((size_t)n, sizeof(double)), *tf = calloc((size_t)n, sizeof(double));
        struct client cd, cf;
        client_init(&cd, kb);
        client_init(&cf, ka);
        for (int i = 0; i < 20; i++) ask(&cd, b.port), ask(&cf, a.port); /* warm: connections */
        for (int r = 0; r < runs; r++) {
            int bad = 0;
            for (int i = 0; i < n; i++) {
                td[i] = ask(&cd, b.port);
                tf[i] = ask(&cf, a.port);
                bad |= td[i] < 0 || tf[i] < 0;
            }
            if (bad) {
                fprintf(stderr, "bench_gateway: a request failed (see %s/*/log)\n", g_dir);
                goto done;
            }
            med_d[r] = median(td, n);
            med_f[r] = median(tf, n);
            p99_d[r] = p99(td, n);
            p99_f[r] = p99(tf, n);
            added[r] = med_f[r] - med_d[r];
            printf("  run %d: direct p50 %.3f ms p99 %.3f ms | through the gateway p50 %.3f ms "
                   "p99 %.3f ms | added p50 %.3f ms\n",
                   r + 1, med_d[r], p99_d[r], med_f[r], p99_f[r], added[r]);
        }
        printf("latency added by a forward (median of %d runs): %.3f ms at p50 (target < 1 ms), "
               "p99 %.3f -> %.3f ms\n",
               runs, median(added, runs), median(p99_d, runs), median(p99_f, runs));
        {
            long fd_, ff_;
            double qd = throughput(kb, b.port, secs, &fd_);
            double qf = throughput(ka, a.port, secs, &ff_);
            printf("throughput, 4 clients for %.0f s: direct %.0f req/s, through the gateway %.0f "
                   "req/s (%ld and %ld failed)\n",
                   secs, qd, qf, fd_, ff_);
        }
        rc = 0;
    done:
        client_free(&cd);
        client_free(&cf);
        free(med_d), free(med_f), free(p99_d), free(p99_f), free(added), free(td), free(tf);
    }
out:
    stop(&a);
    stop(&b);
    curl_global_cleanup();
    return rc;
}
