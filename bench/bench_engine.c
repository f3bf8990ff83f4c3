/*
 * Engine benchmark: TinyLlama-1.1B-shaped synthetic models (dim 2048, 22
 * layers, 32 heads, 4 KV heads, ffn 5632, vocab 32000) in q8_0, q4_0 and
 * q4_k_m, generated with the GGUF writer and cached outside the repository
 * ($CITADEL_BENCH_CACHE, default ~/.cache/citadel-bench).
 *
 * Prints, per model: load time, prefill tok/s for a 512-token prompt and
 * decode tok/s for 128 tokens at 1 and 2 threads (median of BENCH_RUNS runs,
 * default 3), peak RSS, and decode speed as a fraction of the memory
 * bandwidth bound: bandwidth measured here before each row (the best of 5
 * reads of 256 MiB by each of several readers: 256- and 512-bit loads, with
 * and without prefetch, one or four streams per thread; the winner is
 * named), bytes of weights per token from the model. Reference figures for
 * llama.cpp on the same 2-core machine are printed beside them. Nothing is asserted: numbers are
 * for people.
 *
 * It also prints aggregate decode tokens/s when 1, 4 and 16 sequences step
 * together through eng_batch_eval (the engine side of continuous batching).
 *
 * q4_0-moe is the same width as a mixture of experts (Mixtral's layout: 8
 * experts of ffn 2816, 2 used per token; 3.5B weights): its decode speed is
 * set beside the bytes one token reads, the active experts' included, and
 * the bytes of all the experts, which a dense model of that size would read.
 *
 * bert is an encoder in bge-small-en-v1.5's shape (f16): embeddings per
 * second for one input of 128 tokens at a time, and for 64 inputs of 32
 * tokens in one call (packed into passes of 512).
 *
 * f16 and bf16 (every matrix in that type, 2.2 GB) are generated on request
 * only: --models f16,bf16.
 *
 *   bench_engine [--quick] [--models q8_0,q4_0,q4_k_m,q4_0-moe,bert] [--threads 1,2] [--batch
 * 1,4,16]
 *                [--batch-only] [--bandwidth]
 *
 * --bandwidth prints each reader's GB/s at each thread count and stops.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_util.h"
#include "citadel/engine.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include "../src/engine/eng_int.h"
#endif

struct ref_row {
    const char *mix;
    double llama_pp, llama_tg; /* llama.cpp, 2 threads, same machine (issue 2) */
};
static const struct ref_row refs[] = {{"q8_0", 63, 23.8}, {"q4_0", 75, 39.1}, {"q4_k_m", 52, 35.4}};

/* ---- memory bandwidth: read a buffer much larger than the caches ----
 *
 * The bound is the most this machine gives a reader, so several readers
 * are tried and the best kept: 256-bit and (where the CPU has AVX-512)
 * 512-bit loads, with and without software prefetch, each thread reading
 * one stream or four interleaved ones (more streams keep more hardware
 * prefetchers busy). measure_bandwidth says which reader won. */

struct bw_job {
    const uint64_t *buf;
    size_t n;
    int reader;
    uint64_t sink[64];
};

enum { BW_PLAIN, BW_AVX2, BW_AVX2_PF, BW_AVX2_4S, BW_AVX512, BW_AVX512_PF, BW_AVX512_4S, BW_N };
static const char *const bw_names[BW_N] = {"64-bit",           "avx2",   "avx2+prefetch",
                                           "avx2 x4 streams",  "avx512", "avx512+prefetch",
                                           "avx512 x4 streams"};

#if defined(__x86_64__)
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint64_t *p, size_t n, int pf)
{
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i + 16 <= n; i += 16) {
        if (pf) { /* as the decode kernels do */
            _mm_prefetch((const char *)(p + i) + 512, _MM_HINT_T0);
            _mm_prefetch((const char *)(p + i) + 576, _MM_HINT_T0);
        }
        a = _mm256_xor_si256(a, _mm256_load_si256((const __m256i *)(p + i)));
        b = _mm256_xor_si256(b, _mm256_load_si256((const __m256i *)(p + i + 4)));
        c = _mm256_xor_si256(c, _mm256_load_si256((const __m256i *)(p + i + 8)));
        d = _mm256_xor_si256(d, _mm256_load_si256((const __m256i *)(p + i + 12)));
    }
    a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    return (uint64_t)_mm256_extract_epi64(a, 0) ^ (uint64_t)_mm256_extract_epi64(a, 3);
}

/* four streams a quarter of the range apart, one cache line of each per step */
__attribute__((target("avx2"))) static uint64_t read_avx2_4s(const uint64_t *p, size_t n)
{
    size_t q = n / 4 / 8 * 8;
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i + 8 <= q; i += 8) {
        a = _mm256_xor_si256(a, _mm256_load_si256((const __m256i *)(p + i)));
        a = _mm256_xor_si256(a, _mm256_load_si256((const __m256i *)(p + i + 4)));
        b = _mm256_xor_si256(b, _mm256_load_si256((const __m256i *)(p + q + i)));
        b = _mm256_xor_si256(b, _mm256_load_si256((const __m256i *)(p + q + i + 4)));
        c = _mm256_xor_si256(c, _mm256_load_si256((const __m256i *)(p + 2 * q + i)));
        c = _mm256_xor_si256(c, _mm256_load_si256((const __m256i *)(p + 2 * q + i + 4)));
        d = _mm256_xor_si256(d, _mm256_load_si256((const __m256i *)(p + 3 * q + i)));
        d = _mm256_xor_si256(d, _mm256_load_si256((const __m256i *)(p + 3 * q + i + 4)));
    }
    a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    return (uint64_t)_mm256_extract_epi64(a, 0) ^ (uint64_t)_mm256_extract_epi64(a, 3);
}

__attribute__((target("avx512f"))) static uint64_t read_avx512(const uint64_t *p, size_t n, int pf)
{
    __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
    for (size_t i = 0; i + 32 <= n; i += 32) {
        if (pf) {
            _mm_prefetch((const char *)(p + i) + 1024, _MM_HINT_T0);
            _mm_prefetch((const char *)(p + i) + 1088, _MM_HINT_T0);
            _mm_prefetch((const char *)(p + i) + 1152, _MM_HINT_T0);
            _mm_prefetch((const char *)(p + i) + 1216, _MM_HINT_T0);
        }
        a = _mm512_xor_si512(a, _mm512_load_si512((const void *)(p + i)));
        b = _mm512_xor_si512(b, _mm512_load_si512((const void *)(p + i + 8)));
        c = _mm512_xor_si512(c, _mm512_load_si512((const void *)(p + i + 16)));
        d = _mm512_xor_si512(d, _mm512_load_si512((const void *)(p + i + 24)));
    }
    a = _mm512_xor_si512(_mm512_xor_si512(a, b), _mm512_xor_si512(c, d));
    return (uint64_t)_mm512_reduce_add_epi64(a);
}

__attribute__((target("avx512f"))) static uint64_t read_avx512_4s(const uint64_t *p, size_t n)
{
    size_t q = n / 4 / 8 * 8;
    __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
    for (size_t i = 0; i + 8 <= q; i += 8) {
        a = _mm512_xor_si512(a, _mm512_load_si512((const void *)(p + i)));
        b = _mm512_xor_si512(b, _mm512_load_si512((const void *)(p + q + i)));
        c = _mm512_xor_si512(c, _mm512_load_si512((const void *)(p + 2 * q + i)));
        d = _mm512_xor_si512(d, _mm512_load_si512((const void *)(p + 3 * q + i)));
    }
    a = _mm512_xor_si512(_mm512_xor_si512(a, b), _mm512_xor_si512(c, d));
    return (uint64_t)_mm512_reduce_add_epi64(a);
}
#endif

static uint64_t read_plain(const uint64_t *p, size_t n)
{
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 4 <= n; i += 4) a ^= p[i], b ^= p[i + 1], c ^= p[i + 2], d ^= p[i + 3];
    return a ^ b ^ c ^ d;
}

static int reader_ok(int r)
{
#if defined(__x86_64__)
    if (r >= BW_AVX512) return __builtin_cpu_supports("avx512f");
    if (r >= BW_AVX2) return __builtin_cpu_supports("avx2");
#else
    if (r != BW_PLAIN) return 0;
#endif
    return 1;
}

static void bw_worker(void *arg, int ith, int nth)
{
    struct bw_job *j = arg;
    size_t per = j->n / (size_t)nth / 32 * 32;
    const uint64_t *p = j->buf + per * (size_t)ith;
    switch (j->reader) {
#if defined(__x86_64__)
    case BW_AVX2:
        j->sink[ith] = read_avx2(p, per, 0);
        return;
    case BW_AVX2_PF:
        j->sink[ith] = read_avx2(p, per, 1);
        return;
    case BW_AVX2_4S:
        j->sink[ith] = read_avx2_4s(p, per);
        return;
    case BW_AVX512:
        j->sink[ith] = read_avx512(p, per, 0);
        return;
    case BW_AVX512_PF:
        j->sink[ith] = read_avx512(p, per, 1);
        return;
    case BW_AVX512_4S:
        j->sink[ith] = read_avx512_4s(p, per);
        return;
#endif
    default:
        j->sink[ith] = read_plain(p, per);
    }
}

/* The best of runs full reads with every reader this CPU has: a bound is
 * the most the machine gave. *winner names the reader that gave it. */
static double measure_bandwidth(struct cit_pool *pool, int runs, const char **winner)
{
    size_t bytes = (size_t)256 << 20, n = bytes / 8; /* 8x the largest L3 here */
    uint64_t *buf = cit_aligned_alloc(64, bytes);
    double mx = 0;
    struct bw_job j;
    *winner = "none";
    if (!buf) return 0;
    for (size_t i = 0; i < n; i++) buf[i] = i * 0x9e3779b97f4a7c15ull; /* fault pages in */
    j.buf = buf;
    j.n = n;
    /* readers interleaved run by run, so drift on a shared machine hits
     * them alike */
    for (int r = 0; r < runs; r++)
        for (int k = 0; k < BW_N; k++) {
            double t0, v;
            if (!reader_ok(k)) continue;
            j.reader = k;
            t0 = now_s();
            cit_pool_run(pool, bw_worker, &j);
            v = (double)bytes / (now_s() - t0);
            if (v > mx) mx = v, *winner = bw_names[k];
        }
    cit_free(buf);
    return mx;
}

/* Peak resident memory since the last reset_peak_rss(), from the kernel's
 * high-water mark (VmHWM); the reset makes it per model and row. */
static void reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static double peak_rss_mib(void)
{
    char line[256];
    double kib = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, "VmHWM:", 6)) kib = strtod(line + 6, NULL);
    fclose(f);
    return kib / 1024.0;
}

/* Tokens/s of one prefill of n_prompt tokens, or of n_gen single-token decodes. */
static double run_once(const struct eng_model *m, struct cit_pool *pool, int n_prompt, int n_gen)
{
    struct eng_seq *s;
    int n_vocab = eng_model_hparams(m)->n_vocab;
    float *logits = cit_calloc((size_t)n_vocab, sizeof(float));
    int32_t *toks = cit_calloc((size_t)(n_prompt > 1 ? n_prompt : 1), sizeof(int32_t));
    double t0, dt, r = 0;
    uint64_t st = 12345;
    if (!logits || !toks || eng_seq_new(m, n_prompt + n_gen + 1, &s)) return 0;
    for (int i = 0; i < n_prompt; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = 3 + (int32_t)((st >> 33) % (uint64_t)(n_vocab - 3));
    }
    if (n_prompt) {
        t0 = now_s();
        eng_seq_eval(s, pool, toks, n_prompt, logits, 0);
        dt = now_s() - t0;
        r = n_prompt / dt;
    } else {
        int32_t tok = 1;
        t0 = now_s();
        for (int i = 0; i < n_gen; i++) {
            int32_t best = 0;
            eng_seq_eval(s, pool, &tok, 1, logits, 0);
            for (int v = 1; v < n_vocab; v++)
                if (logits[v] > logits[best]) best = v;
            tok = best;
        }
        dt = now_s() - t0;
        r = n_gen / dt;
    }
    eng_seq_free(s);
    cit_free(logits);
    cit_free(toks);
    return r;
}

/* Aggregate decode tokens/s of n_seq sequences stepping together (one
 * eng_batch_eval per step, one row per sequence) for n_gen steps. */
static double run_batched(const struct eng_model *m, struct cit_pool *pool, int n_seq, int n_gen)
{
    struct eng_seq *seqs[64];
    struct eng_batch *b;
    struct eng_batch_row rows[64];
    int n_vocab = eng_model_hparams(m)->n_vocab;
    float *logits = cit_calloc((size_t)n_seq * (size_t)n_vocab, sizeof(float));
    double t0, r;
    if (n_seq > 64 || !logits || eng_batch_new(m, n_seq, &b)) return 0;
    for (int i = 0; i < n_seq; i++) {
        if (eng_seq_new(m, n_gen + 2, &seqs[i])) return 0;
        rows[i] = (struct eng_batch_row){seqs[i], 1 + i, 1};
    }
    t0 = now_s();
    for (int step = 0; step < n_gen; step++) {
        if (eng_batch_eval(b, pool, rows, n_seq, logits)) return 0;
        for (int i = 0; i < n_seq; i++) {
            const float *l = logits + (size_t)i * (size_t)n_vocab;
            int32_t best = 0;
            for (int v = 1; v < n_vocab; v++)
                if (l[v] > l[best]) best = v;
            rows[i].token = best;
        }
    }
    r = (double)n_seq * n_gen / (now_s() - t0);
    for (int i = 0; i < n_seq; i++) eng_seq_free(seqs[i]);
    eng_batch_free(b);
    cit_free(logits);
    return r;
}

/* --bandwidth: every reader at every thread count, best of runs each. */
static int bandwidth_table(const int *threads, int n_threads, int runs)
{
    size_t bytes = (size_t)256 << 20, n = bytes / 8;
    uint64_t *buf = cit_aligned_alloc(64, bytes);
    struct bw_job j;
    if (!buf) return 1;
    for (size_t i = 0; i < n; i++) buf[i] = i * 0x9e3779b97f4a7c15ull;
    j.buf = buf;
    j.n = n;
    printf("read bandwidth, 256 MiB, best of %d (GB/s)\n%-20s", runs, "reader");
    for (int t = 0; t < n_threads; t++) printf(" %6d thr", threads[t]);
    printf("\n");
    for (int k = 0; k < BW_N; k++) {
        if (!reader_ok(k)) continue;
        printf("%-20s", bw_names[k]);
        for (int t = 0; t < n_threads; t++) {
            struct cit_pool *pool;
            double mx = 0;
            if (cit_pool_create(threads[t], &pool)) return 1;
            j.reader = k;
            for (int r = 0; r < runs; r++) {
                double t0 = now_s(), v;
                cit_pool_run(pool, bw_worker, &j);
                v = (double)bytes / (now_s() - t0);
                if (v > mx) mx = v;
            }
            cit_pool_free(pool);
            printf(" %10.1f", mx / 1e9);
        }
        printf("\n");
    }
    cit_free(buf);
    return 0;
}

/* Embeddings per second of the bge-small-shaped encoder, all threads. */
static int bench_bert(struct cit_pool *pool, int runs)
{
    enum { N_MANY = 64, LEN_MANY = 32, LEN_ONE = 128 };
    char path[1200];
    struct eng_model *m;
    struct eng_embedder *e;
    struct cit_err err;
    static int32_t ids[N_MANY * LEN_MANY];
    static float out[N_MANY * 384];
    struct eng_embed_in in[N_MANY];
    double one[16], many[16];
    if (ensure_bert(pool, path, sizeof(path))) return -1;
    if (eng_model_load(path, &m, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return -1;
    }
    if (eng_embedder_new(m, 512, &e)) {
        eng_model_free(m);
        return -1;
    }
    for (int i = 0; i < N_MANY * LEN_MANY; i++) ids[i] = 1000 + (i * 7919) % 29000;
    for (int r = 0; r < runs && r < 16; r++) {
        double t0 = now_s();
        int k = 0;
        for (; k < 8; k++) {
            struct eng_embed_in x = {ids, LEN_ONE, out};
            if (eng_embed(e, pool, &x, 1, 1)) return -1;
        }
        one[r] = k / (now_s() - t0);
        for (int i = 0; i < N_MANY; i++)
            in[i] = (struct eng_embed_in){ids + i * LEN_MANY, LEN_MANY, out + i * 384};
        t0 = now_s();
        if (eng_embed(e, pool, in, N_MANY, 1)) return -1;
        many[r] = N_MANY / (now_s() - t0);
    }
    printf("bert       bge-small shape (384 x 12 layers, f16), %d threads: 1 x %d tokens %.1f "
           "emb/s (%.0f tok/s); %d x %d tokens in one call %.1f emb/s (%.0f tok/s)\n",
           cit_pool_size(pool), LEN_ONE, median(one, runs < 16 ? runs : 16),
           median(one, runs < 16 ? runs : 16) * LEN_ONE, N_MANY, LEN_MANY,
           median(many, runs < 16 ? runs : 16), median(many, runs < 16 ? runs : 16) * LEN_MANY);
    eng_embedder_free(e);
    eng_model_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    const char *models = "q8_0,q4_0,q4_k_m,q4_0-moe,bert";
    int batches[4] = {1, 4, 16}, n_batches = 3;
    int threads[4] = {1, 2}, n_threads = 2, runs = 3, n_prompt = 512, n_gen = 128, bw_only = 0;
    struct cit_pool *gen_pool;
    const char *e = getenv("BENCH_RUNS");
    if (e && atoi(e) > 0) runs = atoi(e);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            runs = 1, n_prompt = 64, n_gen = 16;
        } else if (!strcmp(argv[i], "--bandwidth")) {
            bw_only = 1;
        } else if (!strcmp(argv[i], "--batch-only")) {
            n_threads = 0; /* only the batched-decode line (profiling) */
        } else if (!strcmp(argv[i], "--models") && i + 1 < argc) {
            models = argv[++i];
        } else if (!strcmp(argv[i], "--batch") && i + 1 < argc &&
                   (n_batches = parse_int_list(argv[i + 1], batches, 4)) > 0) {
            i++;
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc &&
                   (n_threads = parse_int_list(argv[i + 1], threads, 4)) > 0) {
            i++;
        } else {
            fprintf(stderr,
                    "usage: bench_engine [--quick] [--models q8_0,q4_0,q4_k_m] "
                    "[--threads 1,2] [--batch 1,4,16] [--batch-only] [--bandwidth]\n"
                    "       models: q8_0 q4_0 q4_k_m q5_k_m q6_k f16 bf16, each also as TYPE-moe; "
                    "bert\n");
            return 2;
        }
    }
    if (bw_only) return bandwidth_table(threads, n_threads, runs < 5 ? 5 : runs);
    if (cit_pool_create(cit_cpu_count(), &gen_pool)) return 1;
    printf("citadel engine benchmark: %s kernels, %d CPUs, median of %d runs\n", eng_kernels_name(),
           cit_cpu_count(), runs);
    /* Memory bandwidth on a shared machine drifts from minute to minute, so
     * it is measured again for every row, just before that row's decode
     * runs, with the same thread count. */
    printf("%-10s %4s %9s %9s %8s %11s %10s %9s %9s %9s\n", "model", "thr", "pp512", "tg128",
           "bw(GB/s)", "bw-bound", "tg/bound", "load(ms)", "rss(MiB)", "llama.cpp");
    for (const char *p = models; *p;) {
        char mix[16], path[1200];
        size_t n = strcspn(p, ",");
        struct eng_model *m;
        struct cit_err err;
        double t0, load_ms;
        uint64_t wbytes;
        snprintf(mix, sizeof(mix), "%.*s", (int)n, p);
        p += n + (p[n] == ',');
        if (!strcmp(mix, "bert")) {
            if (bench_bert(gen_pool, runs)) return 1;
            continue;
        }
        if (ensure_model(mix, gen_pool, path, sizeof(path))) return 1;
        t0 = now_s();
        if (eng_model_load(path, &m, &err)) {
            fprintf(stderr, "bench: %s\n", err.msg);
            return 1;
        }
        load_ms = (now_s() - t0) * 1e3;
        wbytes = eng_model_weight_bytes(m);
        for (int ti = 0; ti < n_threads; ti++) {
            struct cit_pool *pool;
            double pp[16], tg[16], bound, bw;
            const struct ref_row *ref = NULL;
            const char *reader;
            if (cit_pool_create(threads[ti], &pool)) return 1;
            bw = measure_bandwidth(pool, 5, &reader);
            reset_peak_rss();        /* the model's pages and this row's buffers from here */
            run_once(m, pool, 0, 4); /* warm: page in the weights */
            for (int r = 0; r < runs && r < 16; r++) pp[r] = run_once(m, pool, n_prompt, 0);
            for (int r = 0; r < runs && r < 16; r++) tg[r] = run_once(m, pool, 0, n_gen);
            for (size_t k = 0; k < sizeof(refs) / sizeof(refs[0]); k++)
                if (!strcmp(refs[k].mix, mix)) ref = &refs[k];
            bound = bw / (double)wbytes;
            printf("%-10s %4d %9.1f %9.1f %8.1f %11.1f %9.0f%% %9.1f %9.0f", mix, threads[ti],
                   median(pp, runs), median(tg, runs), bw / 1e9, bound,
                   100 * median(tg, runs) / bound, load_ms, peak_rss_mib());
            if (ref && threads[ti] == 2) printf("  pp %.0f tg %.1f", ref->llama_pp, ref->llama_tg);
            printf("  [bound by %s]\n", reader);
            fflush(stdout);
            cit_pool_free(pool);
        }
        printf("%-10s weights read per token: %.0f MiB", mix, (double)wbytes / 1048576.0);
        if (eng_model_expert_bytes(m)) {
            const struct eng_hparams *hp = eng_model_hparams(m);
            uint64_t active = eng_model_expert_bytes(m);
            printf(" (active experts %.0f MiB: %d of %d; all experts %.0f MiB)",
                   (double)active / 1048576.0, hp->n_expert_used, hp->n_expert,
                   (double)active * hp->n_expert / hp->n_expert_used / 1048576.0);
        }
        printf("\n");
        {
            /* Several sequences decoding together share each weight read:
             * the engine side of continuous batching. */
            struct cit_pool *pool;
            double one = 0;
            if (cit_pool_create(cit_cpu_count(), &pool)) return 1;
            printf("%-10s batched decode, %d threads:", mix, cit_cpu_count());
            for (int bi = 0; bi < n_batches; bi++) {
                double v[16];
                for (int r = 0; r < runs && r < 16; r++)
                    v[r] = run_batched(m, pool, batches[bi], n_gen / 4 > 8 ? n_gen / 4 : 8);
                v[0] = median(v, runs < 16 ? runs : 16);
                if (bi == 0) one = v[0];
                printf("  %d seq %.1f tok/s%s", batches[bi], v[0], bi && one > 0 ? "" : "");
                if (bi && one > 0) printf(" (%.1fx)", v[0] / one);
            }
            printf("\n");
            cit_pool_free(pool);
        }
        eng_model_free(m);
    }
    printf("\npp512: prefill tokens/s of a 512-token prompt; tg128: decode tokens/s over 128 "
           "tokens;\nbw-bound: tokens/s if every weight byte were read once per token at the "
           "measured bandwidth.\n");
    cit_pool_free(gen_pool);
    return 0;
}
