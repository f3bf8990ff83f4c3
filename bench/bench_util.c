/* Helpers shared by the benchmarks: time, medians, the synthetic model cache. */
#include "bench_util.h"
#include "citadel/node.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "../src/engine/eng_int.h"

double now_s(void)
{
    return (double)cit_now_ns() / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- models ---- */

const char *cache_dir(void)
{
    static char dir[1024];
    const char *e = getenv("CITADEL_BENCH_CACHE"), *home = getenv("HOME");
    if (e)
        snprintf(dir, sizeof(dir), "%s", e);
    else
        snprintf(dir, sizeof(dir), "%s/.cache/citadel-bench", home ? home : "/tmp");
    return dir;
}

static int mkdirs(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) && errno != EEXIST) return -1;
            *p = '/';
        }
    return mkdir(tmp, 0755) && errno != EEXIST ? -1 : 0;
}

int ensure_model(const char *mix_name, struct cit_pool *pool, char *path, size_t cap)
{
    struct eng_synth_spec sp = {0};
    struct cit_err err;
    struct stat st;
    double t0;
    char mix[32];
    size_t n = strlen(mix_name);
    int moe = n > 4 && !strcmp(mix_name + n - 4, "-moe");
    snprintf(mix, sizeof(mix), "%.*s", (int)(moe ? n - 4 : n), mix_name);
    if (moe)
        snprintf(path, cap, "%s/moe-8x2-shape-%s.gguf", cache_dir(), mix);
    else
        snprintf(path, cap, "%s/tinyllama-shape-%s.gguf", cache_dir(), mix);
    if (stat(path, &st) == 0) return 0;
    if (mkdirs(cache_dir())) {
        fprintf(stderr, "bench: cannot create %s\n", cache_dir());
        return -1;
    }
    sp.arch = "llama";
    sp.n_embd = 2048, sp.n_layer = 22, sp.n_head = 32, sp.n_head_kv = 4, sp.n_ff = 5632;
    sp.n_vocab = 32000, sp.n_ctx = 2048, sp.use_mix = 1, sp.seed = 1;
    if (moe) /* Mixtral's layout at TinyLlama's width: 3.5B weights, 1B used per token */
        sp.n_ff = 2816, sp.n_expert = 8, sp.n_expert_used = 2;
    if (!strcmp(mix, "f16") || !strcmp(mix, "bf16")) { /* every matrix in the float type */
        sp.use_mix = 0;
        sp.wtype = mix[0] == 'f' ? GGUF_T_F16 : GGUF_T_BF16;
    } else if (eng_qmix_from_name(mix, &sp.mix)) {
        fprintf(stderr, "bench: unknown type %s\n", mix);
        return -1;
    }
    fprintf(stderr, "bench: generating %s (once; cached) ...\n", path);
    t0 = now_s();
    if (eng_synth_write(path, &sp, pool, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return -1;
    }
    fprintf(stderr, "bench: generated in %.0f s\n", now_s() - t0);
    return 0;
}

int ensure_bert(struct cit_pool *pool, char *path, size_t cap)
{
    struct eng_synth_spec sp = {0};
    struct cit_err err;
    struct stat st;
    snprintf(path, cap, "%s/bert-bge-small-shape-f16.gguf", cache_dir());
    if (stat(path, &st) == 0) return 0;
    if (mkdirs(cache_dir())) {
        fprintf(stderr, "bench: cannot create %s\n", cache_dir());
        return -1;
    }
    /* bge-small-en-v1.5's shape: 384 wide, 12 layers, 12 heads, ffn 1536 */
    sp.arch = "bert";
    sp.n_embd = 384, sp.n_layer = 12, sp.n_head = 12, sp.n_head_kv = 12, sp.n_ff = 1536;
    sp.n_vocab = 30522, sp.n_ctx = 512, sp.wtype = GGUF_T_F16, sp.seed = 3;
    fprintf(stderr, "bench: generating %s (once; cached) ...\n", path);
    if (eng_synth_write(path, &sp, pool, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return -1;
    }
    return 0;
}

int parse_int_list(const char *s, int *out, int cap)
{
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 1 << 20 || n == cap || (*end && *end != ',')) return -1;
        out[n++] = (int)v;
        s = *end ? end + 1 : end;
    }
    return n ? n : -1;
}

struct cit_db *bench_state_open(const char *path, struct node **node, struct cit_err *err)
{
    struct node_opts o;
    node_opts_defaults(&o);
    snprintf(o.state, sizeof(o.state), "%s", path);
    if (node_open(&o, NODE_STATE, node, err)) return NULL;
    return node_state(*node);
}
