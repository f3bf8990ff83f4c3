/* Kernels: half-precision conversion, quantize/dequantize error bounds, and
 * the SIMD dot products against the scalar reference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../src/engine/eng_int.h"
#include "citadel/engine.h"
#include "test.h"

void test_kernels_fp16(void)
{
    /* Every finite half survives f16 -> f32 -> f16 exactly. */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = fp16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        CHECKF(f32_to_fp16(f) == h, "half 0x%04x -> %g -> 0x%04x", h, (double)f, f32_to_fp16(f));
    }
    CHECK(f32_to_fp16(65520.0f) == 0x7c00);           /* rounds to infinity */
    CHECK(f32_to_fp16(1.0f + 1.0f / 4096) == 0x3c00); /* ties to even */
    CHECK(f32_to_bf16(1.0f) == 0x3f80 && bf16_to_f32(0x3f80) == 1.0f);
}

/* The first entry of a tile's output out (na activation rows of 17
 * floats, tr weight rows used) that differs from the single-row kernel on
 * the same weights w8 and activations; 0 when none, else 1 with its row,
 * activation and both values. */
static int tile_mismatch(const struct eng_kernels *k, uint32_t t, int n, const uint8_t *w8,
                         size_t wrow, const uint8_t *acts, size_t astride, int na, int tr,
                         const float *out, int *row, int *act, float *got, float *want)
{
    for (int u = 0; u < na; u++)
        for (int r = 0; r < tr; r++) {
            float v1 = k->vec_dot[t](n, w8 + wrow * (size_t)r, acts + astride * (size_t)u);
            float v = out[(size_t)u * 17 + (size_t)r];
            /* a tile sums each output exactly as the set's one-row
             * kernel does (the same integer sums and float order; for
             * f16/bf16 the same lanes), so a token's logits do not depend
             * on the batch it came in */
            if (v != v1) {
                *row = r, *act = u, *got = v, *want = v1;
                return 1;
            }
        }
    return 0;
}

static void rand_row(float *x, int n, uint64_t seed)
{
    uint64_t s = seed;
    for (int i = 0; i < n; i++) x[i] = t_randf(&s) * (1.0f + (float)(i % 7));
}

/* Relative RMS error of quantize+dequantize for one type. */
static double roundtrip_err(uint32_t type, const float *x, int n)
{
    const struct eng_kernels *k = eng_kernels_get();
    uint8_t *q = malloc(eng_row_bytes(type, n));
    float *y = malloc((size_t)n * sizeof(float));
    double num = 0, den = 0;
    if (eng_quantize_row(type, x, q, n)) {
        free(q);
        free(y);
        return 1e9; /* fails the caller's bound */
    }
    k->dequant[type](q, y, n);
    for (int i = 0; i < n; i++) num += (x[i] - y[i]) * (x[i] - y[i]), den += x[i] * x[i];
    free(q);
    free(y);
    return sqrt(num / den);
}

void test_kernels_quant_roundtrip(void)
{
    enum { N = 4096 };
    static float x[N];
    /* Bounds well above what each format achieves on this data, well below
     * what a wrong bit layout gives (a layout bug is O(1)). */
    const struct {
        uint32_t type;
        double max_err;
    } cases[] = {
        {GGUF_T_F16, 1e-3},  {GGUF_T_BF16, 5e-3}, {GGUF_T_Q8_0, 0.01}, {GGUF_T_Q6_K, 0.03},
        {GGUF_T_Q5_K, 0.06}, {GGUF_T_Q4_K, 0.12}, {GGUF_T_Q4_0, 0.15},
    };
    rand_row(x, N, 42);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double e = roundtrip_err(cases[i].type, x, N);
        CHECKF(e < cases[i].max_err, "%s: relative error %g (limit %g)",
               gguf_type_name(cases[i].type), e, cases[i].max_err);
    }
    /* All-zero blocks stay zero (no division by zero). */
    {
        static float z[512];
        static uint8_t q[512 * 2];
        static float y[512];
        quantize_row_q4_K(z, q, 512);
        eng_kernels_get()->dequant[GGUF_T_Q4_K](q, y, 512);
        for (int i = 0; i < 512; i++) CHECK(y[i] == 0);
        quantize_row_q6_K(z, q, 512);
        eng_kernels_get()->dequant[GGUF_T_Q6_K](q, y, 512);
        for (int i = 0; i < 512; i++) CHECK(y[i] == 0);
    }
}

/* Every dot product agrees with (a) the scalar kernel and (b) a double
 * precision dot of the dequantized operands. */
/* One SIMD set (best) against the scalar one, kernel by kernel. */
static void simd_vs_scalar(const struct eng_kernels *best)
{
    enum { N = 2048 };
    static float w[N], a[N], wd[N], ad[N];
    static uint8_t wq[N * 4], aq[N * 4];
    struct eng_kernels ref;
    uint32_t types[] = {GGUF_T_F32,  GGUF_T_F16,  GGUF_T_BF16, GGUF_T_Q8_0,
                        GGUF_T_Q4_0, GGUF_T_Q4_K, GGUF_T_Q5_K, GGUF_T_Q6_K};
    /* every set combines the quantized types' integer sums in the scalar
     * set's (the reference's) float order: equal, not merely close */
    int exact_neon = !strncmp(best->name, "neon", 4);
    eng_kernels_ref(&ref);
    rand_row(w, N, 1);
    rand_row(a, N, 2);
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        uint32_t t = types[i], at = ref.act_type[t];
        double exact = 0, scale = 0;
        float s_ref, s_best;
        CHECKF(eng_quantize_row(t, w, wq, N) == 0, "%s: cannot quantize", gguf_type_name(t));
        ref.to_act[at](a, aq, N);
        ref.dequant[t](wq, wd, N);
        if (at == GGUF_T_Q8_K) {
            /* q8_K has no dequantizer in the table: rebuild it. */
            const block_q8_K *b = (const block_q8_K *)aq;
            for (int j = 0; j < N; j++) ad[j] = b[j / QK_K].d * b[j / QK_K].qs[j % QK_K];
        } else {
            ref.dequant[at](aq, ad, N);
        }
        for (int j = 0; j < N; j++)
            exact += (double)wd[j] * ad[j], scale += fabs((double)wd[j] * ad[j]);
        s_ref = ref.vec_dot[t](N, wq, aq);
        s_best = best->vec_dot[t](N, wq, aq);
        CHECKF(fabs(s_ref - exact) <= 1e-5 * scale + 1e-6, "%s scalar %g vs exact %g",
               gguf_type_name(t), (double)s_ref, exact);
        CHECKF(fabs(s_best - exact) <= 1e-5 * scale + 1e-6, "%s %s %g vs exact %g",
               gguf_type_name(t), best->name, (double)s_best, exact);
        if (gguf_type_info(t)->blck > 1)
            CHECKF(s_best == s_ref, "%s %s %.9g, scalar %.9g: not bit for bit", gguf_type_name(t),
                   best->name, (double)s_best, (double)s_ref);
    }
    /* Activation conversions are bit-identical to the scalar ones (the
     * reference comparisons depend on the exact 8-bit values). */
    {
        uint32_t acts[] = {ENG_ACT_Q8_0S, GGUF_T_Q8_K, GGUF_T_F16};
        static uint8_t r1[N * 4], r2[N * 4];
        static float xs[N];
        for (int v = 0; v < 3; v++) {
            rand_row(xs, N, 77 + (uint64_t)v);
            if (v == 1)
                for (int e = 0; e < N; e += 97) xs[e] = 0.5f; /* exact ties of the rounding */
            if (v == 2)
                xs[5] = -xs[300] * 3, xs[6] = xs[300] * 3; /* equal magnitudes, both signs */
            for (size_t ai = 0; ai < sizeof(acts) / sizeof(acts[0]); ai++) {
                uint32_t at = acts[ai];
                memset(r1, 0, sizeof(r1));
                memset(r2, 0, sizeof(r2));
                ref.to_act[at](xs, r1, N);
                best->to_act[at](xs, r2, N);
                CHECKF(!memcmp(r1, r2, sizeof(r1)), "activation type %u differs from scalar", at);
            }
        }
    }
    /* Four-token kernels give what four single calls give. */
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        uint32_t t = types[i], at = best->act_type[t];
        static uint8_t a4[4 * N * 4];
        size_t stride = (size_t)N * 4;
        float v4[4];
        if (!best->vec_dot4[t]) continue;
        if (eng_quantize_row(t, w, wq, N)) continue;
        for (int r = 0; r < 4; r++) {
            rand_row(a, N, 100 + (uint64_t)r);
            best->to_act[at](a, a4 + stride * (size_t)r, N);
        }
        best->vec_dot4[t](N, wq, a4, stride, v4);
        for (int r = 0; r < 4; r++) {
            float v1 = best->vec_dot[t](N, wq, a4 + stride * (size_t)r);
            if (gguf_type_info(t)->blck > 1)
                CHECKF(v4[r] == v1, "%s dot4 row %d: %.9g vs %.9g: not bit for bit",
                       gguf_type_name(t), r, (double)v4[r], (double)v1);
            else
                CHECKF(fabsf(v4[r] - v1) <= 1e-4f * fabsf(v1) + 1e-4f, "%s dot4 row %d: %g vs %g",
                       gguf_type_name(t), r, (double)v4[r], (double)v1);
        }
    }
    /* Tiles of weight rows give what single calls give, for batches of
     * several sizes (the tail of a TILE_ACT pass included). */
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        uint32_t t = types[i], at = best->act_type[t];
        enum { NA = 70 };
        static uint8_t w8[16 * N * 2], acts[NA * N * 4];
        static float out[NA * 17];
        size_t wrow = eng_row_bytes(t, N), astride = (size_t)N * 4;
        const int tr = best->tile_rows[t];
        if (!best->tile[t]) continue;
        CHECK(tr == 8 || tr == 16);
        for (int r = 0; r < tr; r++) {
            rand_row(a, N, 300 + (uint64_t)r);
            CHECK(eng_quantize_row(t, a, w8 + wrow * (size_t)r, N) == 0);
        }
        for (int u = 0; u < NA; u++) {
            rand_row(a, N, 400 + (uint64_t)u);
            best->to_act[at](a, acts + astride * (size_t)u, N);
        }
        int r, u;
        float got, want;
        for (int na = 8; na <= NA; na += 31) {
            best->tile[t](N, w8, wrow, acts, astride, na, out, 17);
            CHECKF(!tile_mismatch(best, t, N, w8, wrow, acts, astride, na, tr, out, &r, &u, &got,
                                  &want),
                   "%s tile of %d (%d acts) row %d act %d: %g vs %g", gguf_type_name(t), tr, na, r,
                   u, (double)got, (double)want);
        }
        /* The packed layout gives the same, from one row (the decoding
         * path) to a tail of a TILE_ACT pass. */
        if (best->repack[t] && best->ptile[t]) {
            static uint8_t packed[16 * N * 2];
            best->repack[t](w8, wrow, N, tr, packed);
            for (int na = 1; na <= NA; na += na < 4 ? 1 : 33) {
                best->ptile[t](N, packed, acts, astride, na, out, 17);
                CHECKF(!tile_mismatch(best, t, N, w8, wrow, acts, astride, na, tr, out, &r, &u,
                                      &got, &want),
                       "%s packed tile (%d acts) row %d act %d: %g vs %g", gguf_type_name(t), na, r,
                       u, (double)got, (double)want);
            }
        }
    }
    /* Quantized rows whose block counts leave tails past the eight-block
     * groups (61 q8_0/q4_0 blocks, 3 k-quant blocks): one row, four rows,
     * tiles and packed tiles, to the bit against the scalar set. */
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        const uint32_t t = types[i], at = best->act_type[t];
        const int n = gguf_type_info(t)->blck == QK_K ? 3 * QK_K : 61 * QK8_0;
        static uint8_t wt[16 * 2304], at4[4 * 2048 * 4], packed2[16 * 2304];
        static float o16[4 * 17];
        const size_t wrow = eng_row_bytes(t, n), arow = (size_t)n * 4;
        if (gguf_type_info(t)->blck == 1) continue;
        CHECK(wrow <= 2304 && arow <= 2048 * 4);
        for (int r = 0; r < 16; r++) {
            rand_row(a, n, 700 + (uint64_t)r);
            CHECK(eng_quantize_row(t, a, wt + wrow * (size_t)r, n) == 0);
        }
        for (int u = 0; u < 4; u++) {
            rand_row(a, n, 800 + (uint64_t)u);
            ref.to_act[at](a, at4 + arow * (size_t)u, n);
        }
        for (int u = 0; u < 4; u++) {
            const float s1 = ref.vec_dot[t](n, wt, at4 + arow * (size_t)u);
            CHECKF(best->vec_dot[t](n, wt, at4 + arow * (size_t)u) == s1,
                   "%s %s, %d blocks: not bit for bit", gguf_type_name(t), best->name,
                   n / gguf_type_info(t)->blck);
        }
        if (best->vec_dot4[t]) {
            float v4[4];
            best->vec_dot4[t](n, wt, at4, arow, v4);
            for (int u = 0; u < 4; u++)
                CHECKF(v4[u] == ref.vec_dot[t](n, wt, at4 + arow * (size_t)u),
                       "%s %s dot4, %d blocks, row %d: not bit for bit", gguf_type_name(t),
                       best->name, n / gguf_type_info(t)->blck, u);
        }
        if (best->tile[t]) {
            int r, u;
            float got, want;
            const int tr = best->tile_rows[t];
            best->tile[t](n, wt, wrow, at4, arow, 4, o16, 17);
            CHECKF(!tile_mismatch(best, t, n, wt, wrow, at4, arow, 4, tr, o16, &r, &u, &got, &want),
                   "%s tile, %d blocks, row %d act %d: %g vs %g", gguf_type_name(t),
                   n / gguf_type_info(t)->blck, r, u, (double)got, (double)want);
            if (best->repack[t] && best->ptile[t]) {
                best->repack[t](wt, wrow, n, tr, packed2);
                best->ptile[t](n, packed2, at4, arow, 4, o16, 17);
                CHECKF(!tile_mismatch(best, t, n, wt, wrow, at4, arow, 4, tr, o16, &r, &u, &got,
                                      &want),
                       "%s packed tile, %d blocks, row %d act %d: %g vs %g", gguf_type_name(t),
                       n / gguf_type_info(t)->blck, r, u, (double)got, (double)want);
            }
        }
    }
    /* Float rows of lengths that leave tails past every vector step, one
     * row and tiled: the tails are summed as the one-row kernel sums them. */
    {
        static const int lens[] = {1, 7, 31, 33, 63, 65, 100, 130};
        const uint32_t ft[] = {GGUF_T_F32, GGUF_T_F16, GGUF_T_BF16};
        for (size_t fi = 0; fi < 3; fi++)
            for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
                const uint32_t t = ft[fi], at = best->act_type[t];
                const int n = lens[li];
                static uint8_t w8[8 * 130 * 4], a8[3 * 130 * 4];
                static float wd2[130], ad2[130], o3[3 * 17];
                const size_t wrow = eng_row_bytes(t, n), arow = (size_t)n * 4;
                double exact = 0, scale = 0;
                for (int r = 0; r < 8; r++) {
                    rand_row(a, n, 500 + (uint64_t)r);
                    CHECK(eng_quantize_row(t, a, w8 + wrow * (size_t)r, n) == 0);
                }
                for (int u = 0; u < 3; u++) {
                    rand_row(a, n, 600 + (uint64_t)u);
                    best->to_act[at](a, a8 + arow * (size_t)u, n);
                }
                ref.dequant[t](w8, wd2, n);
                ref.dequant[at](a8, ad2, n);
                for (int j = 0; j < n; j++)
                    exact += (double)wd2[j] * ad2[j], scale += fabs((double)wd2[j] * ad2[j]);
                CHECKF(fabs(best->vec_dot[t](n, w8, a8) - exact) <= 1e-5 * scale + 1e-6,
                       "%s %s, %d elements: %g vs exact %g", gguf_type_name(t), best->name, n,
                       (double)best->vec_dot[t](n, w8, a8), exact);
                if (best->tile[t]) {
                    int r, u;
                    float got, want;
                    CHECK(best->tile_rows[t] == 8);
                    best->tile[t](n, w8, wrow, a8, arow, 3, o3, 17);
                    CHECKF(!tile_mismatch(best, t, n, w8, wrow, a8, arow, 3, 8, o3, &r, &u, &got,
                                          &want),
                           "%s tile, %d elements, row %d act %d: %g vs %g", gguf_type_name(t), n, r,
                           u, (double)got, (double)want);
                }
            }
    }
    /* The f16 axpy used over the V cache. */
    {
        static uint16_t h[N];
        static float y1[N], y2[N];
        ref.to_act[GGUF_T_F16](a, h, N);
        for (int j = 0; j < N; j++) y1[j] = y2[j] = w[j];
        ref.axpy_f16(N - 3, 0.25f, h, y1);
        best->axpy_f16(N - 3, 0.25f, h, y2);
        for (int j = 0; j < N; j++) CHECKF(fabsf(y1[j] - y2[j]) < 1e-6f, "axpy %d", j);
        if (exact_neon) /* unfused, like the scalar loop */
            CHECKF(!memcmp(y1, y2, sizeof(y1)), "%s axpy_f16: not bit for bit", best->name);
    }
}

void test_kernels_simd_vs_scalar(void)
{
    struct eng_kernels sets[T_MAX_KERNEL_SETS];
    char names[200] = "";
    int n = t_kernel_sets(sets);
    for (int i = 1; i < n && !t_failed(); i++) {
        simd_vs_scalar(&sets[i]);
        snprintf(names + strlen(names), sizeof(names) - strlen(names), " %s", sets[i].name);
    }
    t_note("kernel set in use: %s; checked against scalar:%s", eng_kernels_get()->name,
           names[0] ? names : " (none: this CPU has no SIMD set)");
}

/* Whole models through every kernel set this CPU can run agree with the
 * scalar reference set (the default run uses only the best one). The models
 * are built here with plain random weights: the shared synthetic ones have
 * peaked logits that amplify float summation-order differences. */
int t_kernel_sets(struct eng_kernels *sets)
{
    int n = 1;
    eng_kernels_ref(&sets[0]);
#if defined(__x86_64__)
    if (eng_cpu_has_avx2()) {
        sets[n] = sets[0];
        eng_kernels_avx2(&sets[n++]);
        if (eng_cpu_has_avx512vnni()) {
            sets[n] = sets[0];
            eng_kernels_avx2_vnni(&sets[n++]);
        }
    }
#elif defined(__aarch64__)
    sets[n] = sets[0];
    eng_kernels_neon(&sets[n++]);
    if (eng_cpu_has_dotprod()) {
        sets[n] = sets[0];
        eng_kernels_neon_dot(&sets[n++]);
    }
#endif
    return n;
}

void test_kernels_all_sets_agree(void)
{
    const uint32_t types[] = {GGUF_T_Q8_0, GGUF_T_Q4_0, GGUF_T_Q4_K, GGUF_T_Q5_K,
                              GGUF_T_Q6_K, GGUF_T_F16,  GGUF_T_BF16};
    struct eng_kernels sets[T_MAX_KERNEL_SETS];
    int n_sets = t_kernel_sets(sets);
    for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++) {
        struct t_model_spec sp = {"llama", 256, 2, 4, 2, 512, 1000, types[ti], 0, 5};
        char path[512];
        struct eng_model *m;
        struct cit_err err;
        static float base[12 * 1000], got[12 * 1000];
        int32_t toks[12] = {1, 450, 731, 310, 344, 338, 871, 13, 450, 22, 310, 99};
        snprintf(path, sizeof(path), "%s/sets_%s.gguf", t_tmpdir(), gguf_type_name(types[ti]));
        CHECK(t_build_model(path, &sp) == 0);
        CHECKF(eng_model_load(path, &m, &err) == 0, "%s", err.msg);
        for (int si = 0; si < n_sets; si++) {
            struct eng_seq *s;
            float worst = 0, scale = 0;
            m->kern = &sets[si];
            CHECK(eng_seq_new(m, 16, &s) == 0);
            /* 12 tokens at once: the tile kernels (8 and more rows) run,
             * the four-token ones where a set has no tile */
            CHECK(eng_seq_eval(s, NULL, toks, 12, si ? got : base, 1) == 0);
            eng_seq_free(s);
            if (si == 0) continue;
            for (int v = 0; v < 12 * 1000; v++) {
                float d = fabsf(got[v] - base[v]);
                if (d > worst) worst = d;
                if (fabsf(base[v]) > scale) scale = fabsf(base[v]);
            }
            /* quantized weights: every kernel, the attention and the
             * activation conversions in one order, so the logits are
             * equal; f16/bf16 products sum in lanes of their own */
            if (gguf_type_info(types[ti])->blck > 1)
                CHECKF(worst == 0,
                       "%s weights with %s kernels: logits differ from scalar by up to %g",
                       gguf_type_name(types[ti]), sets[si].name, (double)worst);
            else
                CHECKF(worst <= 1e-3f * scale,
                       "%s weights with %s kernels: max difference %g from "
                       "scalar (logits up to %g)",
                       gguf_type_name(types[ti]), sets[si].name, (double)worst, (double)scale);
        }
        eng_model_free(m);
    }
    t_note("%d kernel sets agree on models of 7 weight types", n_sets);
}
