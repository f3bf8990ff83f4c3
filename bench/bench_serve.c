/*
 * Serving benchmark: a load generator against the real HTTP server, run in
 * this process on a loopback port (open mode, so no key lookups).
 *
 * 1. Throughput and latency on the synthetic TinyLlama-1.1B-shaped Q4_0
 *    model, for 1, 4 and 16 concurrent clients, each streaming --tokens
 *    tokens (default 128) for a 17-token prompt, twice (four times alone):
 *      - output tokens/s: all completion tokens (from usage) over the wall
 *        time, prompt processing and reconnects included;
 *      - aggregate decode tokens/s: the sum over clients of each client's
 *        rate after its first token (tokens after the first, over the time
 *        from the first event to the end of the stream);
 *      - time to first token p50/p99: from the request's first byte sent to
 *        the first event received;
 *      - requests/s for 16-token (non-streaming) completions.
 *    The target: 16 streams give at least 3x the tokens/s of 1.
 * 2. Server overhead on stories260K: the median latency of a one-token
 *    completion over a keep-alive connection, minus the median time the
 *    engine alone takes for the same work (tokenize, prefill, sample).
 *    The target: under 0.2 ms per request. Since every ledger entry is
 *    committed before its answer (an fdatasync and a signature, shared by
 *    concurrent requests, paid whole by these serial ones), that commit is
 *    part of it: about 0.2 ms of it on this machine's disk.
 *
 *   bench_serve [--quick] [--tokens N] [--runs R] [--clients 1,4,16] [--overhead-only]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_util.h"
#include "citadel/http.h"
#include "citadel/node.h"
#include "../src/engine/eng_int.h"

static int port;
static char auth_header[128]; /* "Authorization: Bearer ...\r\n" when the server wants a key */

static int dial(void)
{
    struct sockaddr_in a = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0) return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_req(int fd, const char *body, int keep_alive)
{
    char req[4096];
    int n =
        snprintf(req, sizeof(req),
                 "POST /v1/completions HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                 "%s%sContent-Length: %zu\r\n\r\n%s",
                 auth_header, keep_alive ? "" : "Connection: close\r\n", strlen(body), body);
    return send(fd, req, (size_t)n, MSG_NOSIGNAL) == n ? 0 : -1;
}

/* One streaming request on its own connection: time to the first event,
 * time from it to the end of the stream, and completion tokens. */
static int stream_one(const char *prompt, int n_tokens, double *ttft, double *decode_s, int *gen)
{
    char body[1024], buf[65536];
    struct cit_buf all = {0};
    double t0;
    ssize_t k;
    int fd = dial();
    const char *u;
    if (fd < 0) return -1;
    snprintf(body, sizeof(body),
             "{\"model\":\"stories260K\",\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":1,"
             "\"seed\":1,"
             "\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
             prompt, n_tokens);
    t0 = now_s();
    *ttft = -1;
    if (send_req(fd, body, 0)) {
        close(fd);
        return -1;
    }
    while ((k = recv(fd, buf, sizeof(buf), 0)) > 0) {
        cit_buf_add(&all, buf, (size_t)k);
        if (*ttft < 0 && strstr(all.p, "data: ")) *ttft = now_s() - t0;
    }
    *decode_s = *ttft >= 0 ? now_s() - t0 - *ttft : 0;
    close(fd);
    u = all.p ? strstr(all.p, "\"completion_tokens\":") : NULL;
    *gen = u ? atoi(u + 20) : 0;
    cit_buf_free(&all);
    return u ? 0 : -1;
}

/* Reads one non-streaming response on a keep-alive connection. */
static int read_one(int fd)
{
    char buf[16384];
    size_t have = 0;
    for (;;) {
        ssize_t k = recv(fd, buf + have, sizeof(buf) - have - 1, 0);
        char *hend, *cl;
        if (k <= 0) return -1;
        have += (size_t)k;
        buf[have] = 0;
        if (!(hend = strstr(buf, "\r\n\r\n")) || !(cl = strcasestr(buf, "Content-Length:")))
            continue;
        if ((size_t)(hend + 4 - buf) + strtoul(cl + 15, NULL, 10) <= have)
            return strncmp(buf, "HTTP/1.1 200", 12) ? -1 : 0;
    }
}

struct client {
    int n_tokens, n_reqs, gen, fails;
    int dec_tokens;  /* tokens after each stream's first */
    double dec_time; /* from each stream's first token to its end */
    double ttft[64];
    int n_ttft;
    int quick_tokens; /* 16-token request mode */
};

static void *client_stream(void *p)
{
    struct client *c = p;
    for (int i = 0; i < c->n_reqs; i++) {
        double t, d;
        int g;
        if (stream_one("Once upon a time", c->n_tokens, &t, &d, &g)) {
            c->fails++;
            continue;
        }
        c->gen += g;
        c->dec_tokens += g > 1 ? g - 1 : 0;
        c->dec_time += d;
        if (c->n_ttft < 64) c->ttft[c->n_ttft++] = t;
    }
    return NULL;
}

static void *client_short(void *p)
{
    struct client *c = p;
    int fd = dial();
    const char *body =
        "{\"model\":\"stories260K\",\"prompt\":\"Once upon a time\",\"max_tokens\":16,"
        "\"temperature\":1,\"seed\":3}";
    for (int i = 0; i < c->n_reqs; i++)
        if (fd < 0 || send_req(fd, body, 1) || read_one(fd)) c->fails++;
    if (fd >= 0) close(fd);
    return NULL;
}

static double pct(double *v, int n, double q)
{
    int i;
    median(v, n); /* sorts */
    i = (int)(q * (n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

/* A server on a free loopback port; with_key: API keys required, and one
 * made for the load generator in a scratch state file. */
static struct http_server *serve(const char *path, int parallel, int with_key, struct cit_err *err)
{
    struct http_opts o;
    struct http_server *s;
    http_opts_defaults(&o);
    o.port = 0;
    o.open = !with_key;
    auth_header[0] = 0;
    /* the node: the test policy (it serves unvetted models), a scratch
     * state file and ledger */
    snprintf(o.node.state, sizeof(o.node.state), "/tmp/citadel-bench-%d.db", (int)getpid());
    snprintf(o.node.ledger, sizeof(o.node.ledger), "/tmp/citadel-bench-%d.ledger", (int)getpid());
    snprintf(o.node.policy, sizeof(o.node.policy), "tests/data/policy_serve.yaml");
    o.node.unvetted = 1;
    o.node.checkpoint_s = 3600;
    if (with_key) {
        struct node *n;
        char key[NODE_KEY_LEN + 1], id[NODE_KEY_ID_LEN + 1];
        if (node_open(&o.node, NODE_STATE, &n, err)) return NULL;
        if (node_key_add(n, "tests", NODE_DEFAULT_SCOPES, key, id, err)) {
            node_close(n);
            return NULL;
        }
        node_close(n);
        snprintf(auth_header, sizeof(auth_header), "Authorization: Bearer %s\r\n", key);
    }
    o.node.parallel = parallel;
    o.node.queue = 256;
    o.node.ctx = 512;
    o.lim.max_tokens = 512;
    snprintf(o.node.models[0].id, sizeof(o.node.models[0].id), "stories260K");
    snprintf(o.node.models[0].path, sizeof(o.node.models[0].path), "%s", path);
    o.node.n_models = 1;
    if (http_server_start(&o, &s, err)) s = NULL;
    {
        char side[1100];
        unlink(o.node.state); /* the server keeps its open connection */
        snprintf(side, sizeof(side), "%s-wal", o.node.state);
        unlink(side);
        snprintf(side, sizeof(side), "%s-shm", o.node.state);
        unlink(side);
    }
    if (s) port = http_server_port(s);
    return s;
}

static void throughput(const char *path, const int *clients, int n_clients, int n_tokens, int runs)
{
    struct cit_err err;
    struct http_server *s = serve(path, 16, 0, &err);
    double one = 0, one_dec = 0;
    if (!s) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    printf("%-8s %11s %6s %11s %6s %9s %9s %9s\n", "clients", "output t/s", "vs 1", "decode t/s",
           "vs 1", "TTFT p50", "TTFT p99", "req/s(16)");
    {
        struct client warm = {0};
        warm.n_tokens = 8, warm.n_reqs = 1;
        client_stream(&warm); /* page the weights in */
    }
    for (int ci = 0; ci < n_clients; ci++) {
        int nc = clients[ci];
        double tps[16], dps[16], rps[16], ttft[1024];
        int n_ttft = 0, fails = 0;
        for (int r = 0; r < runs; r++) {
            struct client *c = calloc((size_t)nc, sizeof(*c));
            pthread_t *th = calloc((size_t)nc, sizeof(*th));
            double t0;
            int gen = 0;
            t0 = now_s();
            for (int i = 0; i < nc; i++) {
                c[i].n_tokens = n_tokens;
                c[i].n_reqs = nc == 1 ? 4 : 2;
                pthread_create(&th[i], NULL, client_stream, &c[i]);
            }
            for (int i = 0; i < nc; i++) pthread_join(th[i], NULL);
            tps[r] = dps[r] = 0;
            for (int i = 0; i < nc; i++) {
                gen += c[i].gen;
                if (c[i].dec_time > 0) dps[r] += c[i].dec_tokens / c[i].dec_time;
                fails += c[i].fails;
                for (int k = 0; k < c[i].n_ttft && n_ttft < 1024; k++)
                    ttft[n_ttft++] = c[i].ttft[k];
            }
            tps[r] = gen / (now_s() - t0);
            /* 16-token completions, keep-alive */
            t0 = now_s();
            for (int i = 0; i < nc; i++) {
                c[i].n_reqs = nc == 1 ? 8 : 4;
                c[i].fails = 0;
                pthread_create(&th[i], NULL, client_short, &c[i]);
            }
            for (int i = 0; i < nc; i++) pthread_join(th[i], NULL);
            rps[r] = 0;
            for (int i = 0; i < nc; i++) {
                rps[r] += c[i].n_reqs;
                fails += c[i].fails;
            }
            rps[r] /= now_s() - t0;
            free(c);
            free(th);
        }
        {
            double t = median(tps, runs), d = median(dps, runs), q = median(rps, runs);
            if (ci == 0) one = t, one_dec = d;
            printf("%-8d %11.1f %5.2fx %11.1f %5.2fx %6.0f ms %6.0f ms %9.2f%s\n", nc, t,
                   one > 0 ? t / one : 0, d, one_dec > 0 ? d / one_dec : 0,
                   pct(ttft, n_ttft, 0.5) * 1e3, pct(ttft, n_ttft, 0.99) * 1e3, q,
                   fails ? "  (some requests failed)" : "");
            fflush(stdout);
        }
    }
    http_server_stop(s);
}

/* The engine alone doing what a one-token request does. */
static double engine_only(const char *path, const char *prompt, int reps)
{
    struct eng_model *m;
    struct eng_seq *seq;
    struct eng_sampler *smp;
    struct eng_sampler_params sp;
    struct cit_pool *pool;
    struct cit_err err;
    int32_t toks[64];
    double *v = calloc((size_t)reps, sizeof(double)), r;
    float *logits;
    int n;
    if (eng_model_load(path, &m, &err) || cit_pool_create(cit_cpu_count(), &pool)) exit(1);
    logits = calloc((size_t)eng_model_hparams(m)->n_vocab, sizeof(float));
    eng_sampler_defaults(&sp);
    sp.temperature = 1, sp.top_k = 0, sp.top_p = 1, sp.min_p = 0;
    eng_seq_new(m, 128, &seq);
    for (int i = 0; i < reps; i++) {
        double t0 = now_s();
        eng_tokenize(m, prompt, strlen(prompt), 1, 0, toks, 64, &n);
        eng_seq_reset(seq);
        eng_seq_eval(seq, pool, toks, n, logits, 0);
        eng_sampler_new(&sp, eng_model_hparams(m)->n_vocab, &smp);
        eng_sample(smp, logits, toks, n);
        eng_sampler_free(smp);
        v[i] = now_s() - t0;
    }
    r = median(v, reps);
    free(v);
    free(logits);
    eng_seq_free(seq);
    cit_pool_free(pool);
    eng_model_free(m);
    return r;
}

/* Median latency of one-token completions over one keep-alive connection. */
static double one_token_latency(const char *path, int with_key, int reps)
{
    struct cit_err err;
    struct http_server *s = serve(path, 4, with_key, &err);
    const char *body =
        "{\"model\":\"stories260K\",\"prompt\":\"Once upon a time\",\"max_tokens\":1}";
    double *v = calloc((size_t)reps, sizeof(double)), r;
    int fd;
    if (!s || !v) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    fd = dial();
    for (int i = 0; i < reps + 50; i++) {
        double t0 = now_s();
        if (send_req(fd, body, 1) || read_one(fd)) {
            fprintf(stderr, "bench: a one-token request failed\n");
            exit(1);
        }
        if (i >= 50) v[i - 50] = now_s() - t0; /* the first 50 warm up */
    }
    close(fd);
    r = median(v, reps);
    http_server_stop(s);
    free(v);
    return r;
}

/* Rounds of (open, keyed, engine alone), so that the machine's drift hits
 * all three alike; medians over the rounds. */
static void overhead(const char *path, int reps)
{
    enum { ROUNDS = 5 };
    double open[ROUNDS], keyed[ROUNDS], eng[ROUNDS], o, k, e;
    for (int r = 0; r < ROUNDS; r++) {
        open[r] = one_token_latency(path, 0, reps / ROUNDS);
        keyed[r] = one_token_latency(path, 1, reps / ROUNDS);
        eng[r] = engine_only(path, "Once upon a time", reps / ROUNDS);
    }
    o = median(open, ROUNDS), k = median(keyed, ROUNDS), e = median(eng, ROUNDS);
    printf("one-token request on stories260K: %.3f ms over HTTP (open), %.3f ms with an API key,\n"
           "%.3f ms in the engine alone (tokenize, prefill, sample); medians of %d rounds of %d\n",
           o * 1e3, k * 1e3, e * 1e3, ROUNDS, reps / ROUNDS);
    printf("server overhead (HTTP, JSON, scheduling, ledger commit): %.3f ms per request open, "
           "%.3f ms with a "
           "key (target < 0.2 ms)\n",
           (o - e) * 1e3, (k - e) * 1e3);
}

int main(int argc, char **argv)
{
    int clients[8] = {1, 4, 16}, n_clients = 3, n_tokens = 128, runs = 3, reps = 2000;
    const char *stories = getenv("CITADEL_MODELS");
    char path[1200], spath[1200];
    struct cit_pool *gen_pool;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            n_tokens = 16, runs = 1, reps = 300;
        } else if (!strcmp(argv[i], "--overhead-only")) {
            n_clients = 0;
        } else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) {
            n_tokens = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
            runs = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--clients") && i + 1 < argc &&
                   (n_clients = parse_int_list(argv[i + 1], clients, 8)) > 0) {
            i++;
        } else {
            fprintf(stderr, "usage: bench_serve [--quick] [--tokens N] [--runs R] "
                            "[--clients 1,4,16] [--overhead-only]\n");
            return 2;
        }
    }
    if (runs < 1 || runs > 16 || n_tokens < 2 || n_tokens > 400) return 2;
    cit_log_set_level(CIT_LOG_WARN);
    snprintf(spath, sizeof(spath), "%s/stories260K.gguf", stories ? stories : "../shared/models");
    if (cit_pool_create(cit_cpu_count(), &gen_pool)) return 1;
    if (ensure_model("q4_0", gen_pool, path, sizeof(path))) return 1;
    cit_pool_free(gen_pool);
    printf("citadel serve benchmark: %s kernels, %d CPUs, %d-token streams, median of %d runs\n",
           eng_kernels_name(), cit_cpu_count(), n_tokens, runs);
    printf("model: TinyLlama-1.1B-shaped synthetic Q4_0 (%s)\n", path);
    if (n_clients) throughput(path, clients, n_clients, n_tokens, runs);
    overhead(spath, reps);
    return 0;
}
