/*
 * AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c and only
 * installed into the kernel table after CPUID says the CPU has them.
 *
 * Integer dot products multiply unsigned by signed bytes (vpmaddubsw, or
 * vpdpbusd in the VNNI build): weights stored as unsigned levels go in
 * directly; q4_0's -8 offset is applied through the activation's block
 * sums, q6_K's -32 on every pair sum (the reference's integer lanes); q8_0
 * weights are made unsigned with their absolute value and the sign moved
 * onto the activation (vpsignb). The level ranges keep every pair sum
 * below 32767, so nothing saturates.
 *
 * Every quantized product takes the scalar set's (the reference's) float
 * order, so all sets give the same float for the same operands: q8_0 and
 * the k-quants keep each block's eight integer lanes and accumulate them
 * with one FMA per lane and block; q4_0 forms each block's integer sum
 * (eight blocks side by side, sum_lanes8) and feeds one FMA chain per row,
 * which the tiles get for free with the rows in the lanes. The f16 and
 * bf16 tiles sum every output as the set's one-row kernel does.
 *
 * kern_neon.c fills the same table on AArch64.
 *
 * Loops over a fixed small count (blocks of a group, tokens of a tile) are
 * unrolled by pragma: unrolled, their per-iteration vectors stay in
 * registers; rolled, GCC keeps them in stack arrays.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "eng_int.h"

/* One f16 -> f32 conversion with F16C (the portable one in eng_int.h
 * branches on subnormals, which costs more than the block's arithmetic). */
static inline float h2f(uint16_t h)
{
    return _cvtsh_ss(h);
}

static inline float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* Unsigned bytes x signed bytes, summed in fours into 8 int32 lanes. With
 * AVX512-VNNI (built a second time as kern_avx2_vnni.o) this is one
 * vpdpbusd; otherwise vpmaddubsw + vpmaddwd, where the callers keep every
 * pair sum below 32767 so the 16-bit step never saturates. */
static inline __m256i dot_u8s8(__m256i u, __m256i s)
{
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

/* 16 bytes of nibbles -> 32 bytes: low nibbles in the low lane, high
 * nibbles in the high lane. The bytes are broadcast to both lanes by the
 * load itself; shifting 64-bit words by 0 / 4 moves each high nibble down,
 * and the mask drops what crossed in from the neighbouring byte. */
static inline __m256i unpack_nibbles(const uint8_t *p)
{
    const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return _mm256_and_si256(_mm256_srlv_epi64(both, _mm256_setr_epi64x(0, 0, 4, 4)),
                            _mm256_set1_epi8(0x0F));
}

static float dot_f32(int n, const void *w, const void *a)
{
    const float *x = w, *y = a;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
    }
    {
        float s = hsum_ps(_mm256_add_ps(s0, s1));
        for (; i < n; i++) s += x[i] * y[i];
        return s;
    }
}

static float dot_f16(int n, const void *w, const void *a)
{
    const uint16_t *x = w, *y = a;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 x0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        __m256 y0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i)));
        __m256 x1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i + 8)));
        __m256 y1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i + 8)));
        s0 = _mm256_fmadd_ps(x0, y0, s0);
        s1 = _mm256_fmadd_ps(x1, y1, s1);
    }
    {
        float s = hsum_ps(_mm256_add_ps(s0, s1));
        for (; i < n; i++) s += h2f(x[i]) * h2f(y[i]);
        return s;
    }
}

static inline __m256 load_bf16(const uint16_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static float dot_bf16(int n, const void *w, const void *a)
{
    const uint16_t *x = w, *y = a;
    __m256 s0 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(load_bf16(x + i), load_bf16(y + i), s0);
    {
        float s = hsum_ps(s0);
        for (; i < n; i++) s += bf16_to_f32(x[i]) * bf16_to_f32(y[i]);
        return s;
    }
}

/* f16 and bf16 weight tiles for prefill and batched decode: eight weight
 * rows against every activation row, in blocks of H16_R weight rows and
 * H16_T activations whose products accumulate in registers (the VNNI
 * build has AVX-512VL's 32 vector registers, so bigger blocks). Each
 * weight and activation vector is converted once per block instead of
 * once per product. Every output is summed exactly as the one-row kernel
 * sums it (f16: the even and odd eight-element chunks of each sixteen in
 * two registers, added, then hsum_ps, the tail one by one; bf16: one
 * register), so a token gives the same logits alone or in a batch. */
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define H16_R 4
#define H16_T 2
#else
#define H16_R 2
#define H16_T 2
#endif

static inline __m256 load_h16(const uint16_t *p, int bf)
{
    return bf ? load_bf16(p) : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline float h16_one(uint16_t h, int bf)
{
    return bf ? bf16_to_f32(h) : h2f(h);
}

static inline __attribute__((always_inline)) void h16_block(int n, const uint16_t *const wr[H16_R],
                                                            const uint16_t *const ar[H16_T], int T,
                                                            int bf, float *out, size_t out_stride)
{
    const int two = !bf, step = two ? 16 : 8, nm = n / step * step;
    __m256 acc[H16_R][H16_T][2];
#pragma GCC unroll 4
    for (int r = 0; r < H16_R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t][0] = acc[r][t][1] = _mm256_setzero_ps();
    for (int i = 0; i < nm; i += step) {
#pragma GCC unroll 2
        for (int h = 0; h < 1 + two; h++) {
            __m256 av[H16_T];
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) av[t] = load_h16(ar[t] + i + 8 * h, bf);
#pragma GCC unroll 4
            for (int r = 0; r < H16_R; r++) {
                const __m256 wv = load_h16(wr[r] + i + 8 * h, bf);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) acc[r][t][h] = _mm256_fmadd_ps(wv, av[t], acc[r][t][h]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < H16_R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            float s = hsum_ps(two ? _mm256_add_ps(acc[r][t][0], acc[r][t][1]) : acc[r][t][0]);
            for (int i = nm; i < n; i++) s += h16_one(wr[r][i], bf) * h16_one(ar[t][i], bf);
            out[(size_t)t * out_stride + (size_t)r] = s;
        }
}

static inline __attribute__((always_inline)) void tile8_h16(int n, const void *w, size_t w_stride,
                                                            const void *a, size_t a_stride,
                                                            int n_act, float *out,
                                                            size_t out_stride, int bf)
{
    for (int r0 = 0; r0 < 8; r0 += H16_R) {
        const uint16_t *wr[H16_R];
        for (int r = 0; r < H16_R; r++)
            wr[r] = (const uint16_t *)((const uint8_t *)w + (size_t)(r0 + r) * w_stride);
        for (int t0 = 0; t0 < n_act; t0 += H16_T) {
            const int T = n_act - t0 < H16_T ? n_act - t0 : H16_T;
            const uint16_t *ar[H16_T];
            float *o = out + (size_t)t0 * out_stride + (size_t)r0;
            for (int t = 0; t < H16_T; t++)
                ar[t] = (const uint16_t *)((const uint8_t *)a +
                                           (size_t)(t0 + (t < T ? t : 0)) * a_stride);
            if (T == H16_T)
                h16_block(n, wr, ar, H16_T, bf, o, out_stride);
            else
                for (int t = 0; t < T; t++)
                    h16_block(n, wr, &ar[t], 1, bf, o + (size_t)t * out_stride, out_stride);
        }
    }
}

static void tile8_f16(int n, const void *w, size_t w_stride, const void *a, size_t a_stride,
                      int n_act, float *out, size_t out_stride)
{
    tile8_h16(n, w, w_stride, a, a_stride, n_act, out, out_stride, 0);
}

static void tile8_bf16(int n, const void *w, size_t w_stride, const void *a, size_t a_stride,
                       int n_act, float *out, size_t out_stride)
{
    tile8_h16(n, w, w_stride, a, a_stride, n_act, out, out_stride, 1);
}

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
/* bf16 with AVX512-BF16 (Zen 4, Cooper Lake, Sapphire Rapids), chosen at
 * run time within this set: vdpbf16ps multiplies 32 bf16 pairs and adds
 * each lane's two products to a float lane. Every output is summed the
 * same way in the one-row kernel and the tile (64-element steps into two
 * registers, a 32-element step, a masked tail, the two registers added
 * and reduced), so batching does not change a token's logits; against
 * the scalar set it differs by rounding, as the FMA kernels do. */
#define BF_TARGET __attribute__((target("avx512bf16,avx512bw,avx512f")))
#define BF_R      4
#define BF_T      2

static inline BF_TARGET __attribute__((always_inline)) __m512bh bf_load(const uint16_t *p, int k)
{
    return (__m512bh)_mm512_maskz_loadu_epi16(k >= 32 ? ~(__mmask32)0 : ((__mmask32)1 << k) - 1, p);
}

static inline BF_TARGET __attribute__((always_inline)) void
bf_block(int n, const uint16_t *const wr[BF_R], int R, const uint16_t *const ar[BF_T], int T,
         float *out, size_t out_stride)
{
    __m512 acc[BF_R][BF_T][2];
    int i = 0;
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) acc[r][t][0] = acc[r][t][1] = _mm512_setzero_ps();
    for (; i + 64 <= n; i += 64) {
        __m512bh a0[BF_T], a1[BF_T];
#pragma GCC unroll 2
        for (int t = 0; t < T; t++)
            a0[t] = bf_load(ar[t] + i, 32), a1[t] = bf_load(ar[t] + i + 32, 32);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m512bh w0 = bf_load(wr[r] + i, 32), w1 = bf_load(wr[r] + i + 32, 32);
#pragma GCC unroll 2
            for (int t = 0; t < T; t++) {
                acc[r][t][0] = _mm512_dpbf16_ps(acc[r][t][0], w0, a0[t]);
                acc[r][t][1] = _mm512_dpbf16_ps(acc[r][t][1], w1, a1[t]);
            }
        }
    }
    for (; i < n; i += 32) { /* a 32-element step, then a masked tail */
        const int k = n - i < 32 ? n - i : 32;
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m512bh w0 = bf_load(wr[r] + i, k);
#pragma GCC unroll 2
            for (int t = 0; t < T; t++)
                acc[r][t][0] = _mm512_dpbf16_ps(acc[r][t][0], w0, bf_load(ar[t] + i, k));
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int t = 0; t < T; t++)
            out[(size_t)t * out_stride + (size_t)r] =
                _mm512_reduce_add_ps(_mm512_add_ps(acc[r][t][0], acc[r][t][1]));
}

static BF_TARGET float dot_bf16_bf(int n, const void *w, const void *a)
{
    const uint16_t *wr[BF_R] = {w}, *ar[BF_T] = {a};
    float s;
    bf_block(n, wr, 1, ar, 1, &s, 1);
    return s;
}

static BF_TARGET void tile8_bf16_bf(int n, const void *w, size_t w_stride, const void *a,
                                    size_t a_stride, int n_act, float *out, size_t out_stride)
{
    for (int r0 = 0; r0 < 8; r0 += BF_R) {
        const uint16_t *wr[BF_R];
        for (int r = 0; r < BF_R; r++)
            wr[r] = (const uint16_t *)((const uint8_t *)w + (size_t)(r0 + r) * w_stride);
        for (int t0 = 0; t0 < n_act; t0 += BF_T) {
            const int T = n_act - t0 < BF_T ? n_act - t0 : BF_T;
            const uint16_t *ar[BF_T];
            for (int t = 0; t < BF_T; t++)
                ar[t] = (const uint16_t *)((const uint8_t *)a +
                                           (size_t)(t0 + (t < T ? t : 0)) * a_stride);
            if (T == BF_T)
                bf_block(n, wr, BF_R, ar, BF_T, out + (size_t)t0 * out_stride + (size_t)r0,
                         out_stride);
            else
                bf_block(n, wr, BF_R, ar, 1, out + (size_t)t0 * out_stride + (size_t)r0,
                         out_stride);
        }
    }
}
#endif

/* Eight f16 scales that sit at a fixed byte stride (the d field heading
 * each block), converted together. Eight 16-bit loads into a small array
 * beat vpgatherdd, which is microcoded on AMD: q4_0 0.87 vs 1.02 ns per
 * 32 weights in cache, q8_0 0.96 vs 1.18. */
static inline __m256 gather_scales(const void *base, int stride_bytes)
{
    const uint8_t *p = base;
    uint16_t h[8];
#pragma GCC unroll 8
    for (int b = 0; b < 8; b++) memcpy(&h[b], p + (size_t)b * (size_t)stride_bytes, 2);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
}

/* Lane b of the result is the sum of the 8 int32 lanes of p[b]: eight
 * blocks' exact integer dot products side by side, converted together;
 * the callers then take one FMA per block, in block order. */
static inline __m256i sum_lanes8(const __m256i p[8])
{
    const __m256i t0 = _mm256_hadd_epi32(p[0], p[1]), t1 = _mm256_hadd_epi32(p[2], p[3]);
    const __m256i t2 = _mm256_hadd_epi32(p[4], p[5]), t3 = _mm256_hadd_epi32(p[6], p[7]);
    const __m256i u0 = _mm256_hadd_epi32(t0, t1), u1 = _mm256_hadd_epi32(t2, t3);
    return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20),
                            _mm256_permute2x128_si256(u0, u1, 0x31));
}

/* Decoding streams each weight row from memory once. Asking for the
 * lines half a kilobyte ahead of the kernel keeps two threads' streams
 * fed better than the hardware prefetcher alone (q4_0 decode on the
 * 1.1B-shape model, 2 threads: median 36 -> 42 tok/s). Reads past the end
 * of a row land in the next row, which the same thread reads next. */
#define PF_AHEAD 512
static inline void prefetch_ahead(const void *p, int lines)
{
    for (int l = 0; l < lines; l++) _mm_prefetch((const char *)p + PF_AHEAD + 64 * l, _MM_HINT_T0);
}

/* q4_0 x q8_0s in the scalar set's (the reference's) order: one running
 * sum, one fused multiply-add per block of (exact block integer) x (the
 * product of the two scales). Eight blocks' integer sums are formed side
 * by side (unsigned nibbles into the byte dot product, the -8 offset
 * subtracted as 8 * the activation's block sum: small integers, exact in
 * f32); only the chain of FMAs is sequential. */
static inline float q4_0_group(const block_q4_0 *x, const float *yd, const float *ysum,
                               const int8_t *yq, float s)
{
    const __m256 dd = _mm256_mul_ps(gather_scales(x, sizeof(block_q4_0)), _mm256_loadu_ps(yd));
    __m256i p[8];
    float f[8], g[8];
    prefetch_ahead(x, 3); /* 8 blocks: 144 bytes */
#pragma GCC unroll 8
    for (int b = 0; b < 8; b++)
        p[b] =
            dot_u8s8(unpack_nibbles(x[b].qs), _mm256_loadu_si256((const __m256i *)(yq + 32 * b)));
    _mm256_storeu_ps(f, _mm256_fnmadd_ps(_mm256_set1_ps(8.0f), _mm256_loadu_ps(ysum),
                                         _mm256_cvtepi32_ps(sum_lanes8(p))));
    _mm256_storeu_ps(g, dd);
#pragma GCC unroll 8
    for (int b = 0; b < 8; b++) s = fmaf(f[b], g[b], s);
    return s;
}

static float dot_q4_0_q8_0(int n, const void *w, const void *a)
{
    const block_q4_0 *x = w;
    const int nb = n / QK4_0;
    const float *yd = a, *ysum = yd + nb;
    const int8_t *yq = (const int8_t *)(ysum + nb);
    float s = 0;
    int i = 0;
    for (; i + 8 <= nb; i += 8) s = q4_0_group(x + i, yd + i, ysum + i, yq + 32 * i, s);
    for (; i < nb; i++) {
        __m256i q =
            dot_u8s8(unpack_nibbles(x[i].qs), _mm256_loadu_si256((const __m256i *)(yq + 32 * i)));
        s = fmaf((float)hsum_epi32(q) - 8 * ysum[i], h2f(x[i].d) * yd[i], s);
    }
    return s;
}

/* acc + the byte dot products of u (unsigned) and s (signed), four bytes
 * per 32-bit lane. */
static inline __m256i dpbusd(__m256i acc, __m256i u, __m256i s)
{
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc,
                            _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

/* Four bytes at p in all eight lanes (one vpbroadcastd from memory). */
static inline __m256i bcast_i32(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* r[i] holds row i's 32 bytes as eight 4-byte groups; afterwards c[j]
 * holds group j of every row, lane i from row i. */
static inline void transpose8_epi32(const __m256i r[8], __m256i c[8])
{
    __m256i t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int h = 0; h < 2; h++) { /* rows 0-3, rows 4-7 */
        u[4 * h + 0] = _mm256_unpacklo_epi64(t[4 * h + 0], t[4 * h + 2]);
        u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h + 0], t[4 * h + 2]);
        u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
        u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
    }
    for (int j = 0; j < 4; j++) {
        c[j] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x20);
        c[j + 4] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x31);
    }
}

/* Eight q4_0 weight rows times n_act q8_0s activation rows, for batches
 * (several sequences decoding together, and prefill). The lanes of a
 * register are the eight weight rows: each block of the eight rows is
 * unpacked and transposed once, so that lane i of register j holds bytes
 * 4j..4j+3 of row i; eight byte dot products against the activation's
 * matching four bytes (broadcast) then give all eight rows' block sums
 * side by side. No horizontal sums per block, which cost the four-token
 * kernel more than its dot products (16 sequences on the 1.1B q4_0
 * model: see docs/engine.md), and the unpacking is shared by up to
 * TILE_ACT activation rows. */
#define TILE_ACT 64
#if !(defined(__AVX512VNNI__) && defined(__AVX512VL__)) /* the VNNI build tiles 16 rows */
static void tile8_q4_0_q8_0(int n, const void *w, size_t w_stride, const void *a, size_t a_stride,
                            int n_act, float *out, size_t out_stride)
{
    const int nb = n / QK4_0;
    const uint8_t *wb = w;
    __m256i wt[8 * 8]; /* eight blocks of the eight rows, transposed: 2 KB */
    __m256 dx[8], acc[TILE_ACT];
    for (int t0 = 0; t0 < n_act; t0 += TILE_ACT) {
        const int T = n_act - t0 < TILE_ACT ? n_act - t0 : TILE_ACT;
        for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
        for (int b0 = 0; b0 < nb; b0 += 8) {
            const int nbb = nb - b0 < 8 ? nb - b0 : 8;
            for (int b = 0; b < nbb; b++) {
                __m256i r[8];
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++)
                    r[i] = unpack_nibbles(
                        ((const block_q4_0 *)(wb + (size_t)i * w_stride))[b0 + b].qs);
                transpose8_epi32(r, &wt[8 * b]);
                dx[b] = gather_scales((const block_q4_0 *)wb + b0 + b, (int)w_stride);
            }
            /* two activation rows at a time share each weight register */
            for (int t = 0; t < T; t += 2) {
                const int two = t + 1 < T;
                const float *yd0 =
                    (const float *)((const uint8_t *)a + (size_t)(t0 + t) * a_stride);
                const float *yd1 = two ? (const float *)((const uint8_t *)yd0 + a_stride) : yd0;
                const float *ys0 = yd0 + nb, *ys1 = yd1 + nb;
                const int8_t *yq0 = (const int8_t *)(ys0 + nb), *yq1 = (const int8_t *)(ys1 + nb);
                __m256 s0 = acc[t], s1 = two ? acc[t + 1] : _mm256_setzero_ps();
                for (int b = 0; b < nbb; b++) {
                    const int8_t *q0 = yq0 + 32 * (b0 + b), *q1 = yq1 + 32 * (b0 + b);
                    const __m256i *x = &wt[8 * b];
                    /* four independent chains of four for latency */
                    __m256i d0 = _mm256_setzero_si256(), e0 = _mm256_setzero_si256();
                    __m256i d1 = _mm256_setzero_si256(), e1 = _mm256_setzero_si256();
#pragma GCC unroll 4
                    for (int j = 0; j < 4; j++) {
                        const __m256i w0 = x[2 * j], w1 = x[2 * j + 1];
                        d0 = dpbusd(d0, w0, bcast_i32(q0 + 8 * j));
                        e0 = dpbusd(e0, w1, bcast_i32(q0 + 8 * j + 4));
                        d1 = dpbusd(d1, w0, bcast_i32(q1 + 8 * j));
                        e1 = dpbusd(e1, w1, bcast_i32(q1 + 8 * j + 4));
                    }
                    /* (block dot - 8 * activation sum): exact small integers */
                    const __m256 f0 = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(d0, e0)),
                                                    _mm256_set1_ps(8.0f * ys0[b0 + b]));
                    const __m256 f1 = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(d1, e1)),
                                                    _mm256_set1_ps(8.0f * ys1[b0 + b]));
                    s0 = _mm256_fmadd_ps(
                        f0, _mm256_mul_ps(dx[b], _mm256_broadcast_ss(yd0 + b0 + b)), s0);
                    s1 = _mm256_fmadd_ps(
                        f1, _mm256_mul_ps(dx[b], _mm256_broadcast_ss(yd1 + b0 + b)), s1);
                }
                acc[t] = s0;
                if (two) acc[t + 1] = s1;
            }
        }
        for (int t = 0; t < T; t++) _mm256_storeu_ps(out + (size_t)(t0 + t) * out_stride, acc[t]);
    }
}

#endif

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
/* The same with sixteen weight rows in 512-bit registers: Zen 4 runs a
 * 512-bit vpdpbusd in about the time of 1.3 256-bit ones (measured here:
 * 0.295 against 0.220 ns), and each broadcast activation group now feeds
 * sixteen rows. Prefill and 16-sequence decoding on the 1.1B q4_0 model:
 * see docs/engine.md. */
/* acc[t] += the sixteen rows' products with activation row t over block
 * b, for t < T. Register k of w holds bytes 4k..4k+3 of each row's block
 * (the rows in the lanes), dx the rows' scales. The weights stay in
 * registers while every activation row passes over them, and the
 * activation dwords come in as broadcast operands of vpdpbusd: one load
 * of the weights per block rather than one per pair of rows (16
 * sequences on the 1.1B q4_0 model: 152 -> 190 tok/s, see docs/engine.md).
 * tile8 keeps two rows per weight load: without VNNI its dot products
 * need the registers the weights would hold (the same shape there: 84 ->
 * 70 tok/s). */
static inline void tile16_block(const __m512i w[8], __m512 dx, int b, int nb, const uint8_t *a,
                                size_t a_stride, int T, __m512 *acc)
{
    const __m512 eight = _mm512_set1_ps(8.0f);
    for (int t = 0; t < T; t++, a += a_stride) {
        const float *yd = (const float *)a, *ys = yd + nb;
        const int8_t *q = (const int8_t *)(ys + nb) + 32 * b;
        /* two chains of four for latency */
        __m512i d = _mm512_setzero_si512(), e = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int k = 0; k < 8; k += 2) {
            int32_t g0, g1;
            memcpy(&g0, q + 4 * k, 4);
            memcpy(&g1, q + 4 * k + 4, 4);
            d = _mm512_dpbusd_epi32(d, w[k], _mm512_set1_epi32(g0));
            e = _mm512_dpbusd_epi32(e, w[k + 1], _mm512_set1_epi32(g1));
        }
        /* (block dot - 8 * activation sum): exact small integers */
        const __m512 f = _mm512_fnmadd_ps(_mm512_set1_ps(ys[b]), eight,
                                          _mm512_cvtepi32_ps(_mm512_add_epi32(d, e)));
        acc[t] = _mm512_fmadd_ps(f, _mm512_mul_ps(dx, _mm512_set1_ps(yd[b])), acc[t]);
    }
}

static void tile16_q4_0_q8_0(int n, const void *w, size_t w_stride, const void *a, size_t a_stride,
                             int n_act, float *out, size_t out_stride)
{
    const int nb = n / QK4_0;
    const uint8_t *wb = w;
    __m512 acc[TILE_ACT];
    for (int t0 = 0; t0 < n_act; t0 += TILE_ACT) {
        const int T = n_act - t0 < TILE_ACT ? n_act - t0 : TILE_ACT;
        const uint8_t *a0 = (const uint8_t *)a + (size_t)t0 * a_stride;
        for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
        for (int b = 0; b < nb; b++) {
            __m256i r[8], lo[8], hi[8];
            __m512i wt[8];
            uint16_t h[16];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++)
                r[i] = unpack_nibbles(((const block_q4_0 *)(wb + (size_t)i * w_stride))[b].qs);
            transpose8_epi32(r, lo);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++)
                r[i] =
                    unpack_nibbles(((const block_q4_0 *)(wb + (size_t)(i + 8) * w_stride))[b].qs);
            transpose8_epi32(r, hi);
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                wt[j] = _mm512_inserti64x4(_mm512_castsi256_si512(lo[j]), hi[j], 1);
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++)
                memcpy(&h[i], &((const block_q4_0 *)(wb + (size_t)i * w_stride))[b].d, 2);
            tile16_block(wt, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)h)), b, nb, a0,
                         a_stride, T, acc);
        }
        for (int t = 0; t < T; t++) _mm512_storeu_ps(out + (size_t)(t0 + t) * out_stride, acc[t]);
    }
}
#endif

/* The packed q4_0 layout: groups of Q4_0_PACK_ROWS rows (R: sixteen in
 * the VNNI set, whose tiles are 512 bits wide, eight in the AVX2 set); per
 * block, the R f16 scales (2R bytes), then four registers P0..P3 of 4R
 * bytes where lane i of Pj is dword j of row i's sixteen nibble bytes. Low
 * nibbles are elements 4j..4j+3 of row i, high nibbles elements
 * 16+4j..16+4j+3, so an and and a shift give the transposed registers the
 * tiles build by shuffling, for the cost of four loads, and each row's
 * lane forms its block sums in order: one FMA chain per row, the scalar
 * set's. The file's bytes are moved, not changed: the same size, the same
 * values. */
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define Q4_0_PACK_ROWS 16
#else
#define Q4_0_PACK_ROWS 8
#endif
#define Q4_0_PACK_BLOCK (18 * Q4_0_PACK_ROWS) /* 2R + 4 * 4R bytes */
static void repack_q4_0(const void *src, size_t row_bytes, int n, int rows, void *dst)
{
    const int nb = n / QK4_0, R = Q4_0_PACK_ROWS;
    uint8_t *o = dst;
    for (int g = 0; g < rows; g += R)
        for (int b = 0; b < nb; b++, o += Q4_0_PACK_BLOCK)
            for (int i = 0; i < R; i++) {
                const block_q4_0 *x =
                    (const block_q4_0 *)((const uint8_t *)src + (size_t)(g + i) * row_bytes) + b;
                memcpy(o + 2 * i, &x->d, 2);
                for (int j = 0; j < 4; j++) memcpy(o + 2 * R + 4 * R * j + 4 * i, x->qs + 4 * j, 4);
            }
}

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
/* One activation row against a packed group, all in registers: decoding
 * one sequence streams the weights from memory and must keep up with it. */
static void ptile16_q4_0_q8_0_one(int n, const uint8_t *gb, const void *a, float *out)
{
    const int nb = n / QK4_0;
    const float *yd = a, *ys = yd + nb;
    const int8_t *yq = (const int8_t *)(ys + nb);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 s0 = _mm512_setzero_ps(); /* one chain: the blocks in order */
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = gb + (size_t)b * Q4_0_PACK_BLOCK;
        const int8_t *q = yq + 32 * b;
        __m512i d = _mm512_setzero_si512(), e = _mm512_setzero_si512();
        for (int l = 0; l < Q4_0_PACK_BLOCK; l += 64)
            _mm_prefetch((const char *)blk + 3 * Q4_0_PACK_BLOCK + l, _MM_HINT_T0);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m512i p = _mm512_loadu_si512(blk + 32 + 64 * j);
            int32_t g[2];
            memcpy(&g[0], q + 4 * j, 4);
            memcpy(&g[1], q + 16 + 4 * j, 4);
            d = _mm512_dpbusd_epi32(d, _mm512_and_si512(p, m4), _mm512_set1_epi32(g[0]));
            e = _mm512_dpbusd_epi32(e, _mm512_and_si512(_mm512_srli_epi16(p, 4), m4),
                                    _mm512_set1_epi32(g[1]));
        }
        const __m512 f =
            _mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(d, e)), _mm512_set1_ps(8.0f * ys[b]));
        const __m512 sc = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)blk)),
                                        _mm512_set1_ps(yd[b]));
        s0 = _mm512_fmadd_ps(f, sc, s0);
    }
    _mm512_storeu_ps(out, s0);
}

static void ptile16_q4_0_q8_0(int n, const void *group, const void *a, size_t a_stride, int n_act,
                              float *out, size_t out_stride)
{
    if (n_act < 4) {
        for (int t = 0; t < n_act; t++)
            ptile16_q4_0_q8_0_one(n, group, (const uint8_t *)a + (size_t)t * a_stride,
                                  out + (size_t)t * out_stride);
        return;
    }
    const int nb = n / QK4_0;
    const uint8_t *gb = group;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[TILE_ACT];
    for (int t0 = 0; t0 < n_act; t0 += TILE_ACT) {
        const int T = n_act - t0 < TILE_ACT ? n_act - t0 : TILE_ACT;
        const uint8_t *a0 = (const uint8_t *)a + (size_t)t0 * a_stride;
        for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = gb + (size_t)b * Q4_0_PACK_BLOCK;
            __m512i wt[8];
            /* the blocks a few ahead stream in while this one is multiplied */
            for (int l = 0; l < Q4_0_PACK_BLOCK; l += 64)
                _mm_prefetch((const char *)blk + 4 * Q4_0_PACK_BLOCK + l, _MM_HINT_T0);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                const __m512i p = _mm512_loadu_si512(blk + 32 + 64 * j);
                wt[j] = _mm512_and_si512(p, m4);
                wt[j + 4] = _mm512_and_si512(_mm512_srli_epi16(p, 4), m4);
            }
            tile16_block(wt, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)blk)), b, nb, a0,
                         a_stride, T, acc);
        }
        for (int t = 0; t < T; t++) _mm512_storeu_ps(out + (size_t)(t0 + t) * out_stride, acc[t]);
    }
}
#endif

#if !(defined(__AVX512VNNI__) && defined(__AVX512VL__))
/* The eight rows' products with one activation row over block b, as
 * floats: (block dot - 8 * activation sum), exact small integers. */
static inline __m256 ptile8_block(const __m256i wt[8], const float *ys, const int8_t *q, int b)
{
    __m256i d = _mm256_setzero_si256(), e = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        d = dpbusd(d, wt[j], bcast_i32(q + 4 * j));
        e = dpbusd(e, wt[j + 4], bcast_i32(q + 16 + 4 * j));
    }
    return _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(d, e)), _mm256_set1_ps(8.0f * ys[b]));
}

static void ptile8_q4_0_q8_0(int n, const void *group, const void *a, size_t a_stride, int n_act,
                             float *out, size_t out_stride)
{
    const int nb = n / QK4_0;
    const uint8_t *gb = group;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[TILE_ACT];
    for (int t0 = 0; t0 < n_act; t0 += TILE_ACT) {
        const int T = n_act - t0 < TILE_ACT ? n_act - t0 : TILE_ACT;
        const uint8_t *a0 = (const uint8_t *)a + (size_t)t0 * a_stride;
        for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = gb + (size_t)b * Q4_0_PACK_BLOCK;
            __m256i wt[8];
            for (int l = 0; l < Q4_0_PACK_BLOCK; l += 64)
                _mm_prefetch((const char *)blk + 4 * Q4_0_PACK_BLOCK + l, _MM_HINT_T0);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                const __m256i p = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * j));
                wt[j] = _mm256_and_si256(p, m4);
                wt[j + 4] = _mm256_and_si256(_mm256_srli_epi16(p, 4), m4);
            }
            const __m256 dx = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
            for (int t = 0; t < T; t++) {
                const float *yd = (const float *)(a0 + (size_t)t * a_stride), *ys = yd + nb;
                const int8_t *q = (const int8_t *)(ys + nb) + 32 * b;
                acc[t] = _mm256_fmadd_ps(ptile8_block(wt, ys, q, b),
                                         _mm256_mul_ps(dx, _mm256_set1_ps(yd[b])), acc[t]);
            }
        }
        for (int t = 0; t < T; t++) _mm256_storeu_ps(out + (size_t)(t0 + t) * out_stride, acc[t]);
    }
}
#endif

static void dot4_q4_0_q8_0(int n, const void *w, const void *a, size_t stride, float out[4])
{
    const block_q4_0 *x = w;
    const int nb = n / QK4_0;
    const float *yd[4], *ys[4];
    const int8_t *yq[4];
    float acc[4];
    int i = 0;
#pragma GCC unroll 8
    for (int t = 0; t < 4; t++) {
        yd[t] = (const float *)((const uint8_t *)a + stride * (size_t)t);
        ys[t] = yd[t] + nb;
        yq[t] = (const int8_t *)(ys[t] + nb);
        acc[t] = 0;
    }
    for (; i + 8 <= nb; i += 8) {
        const __m256 dx = gather_scales(&x[i], sizeof(block_q4_0));
        __m256i q[8];
#pragma GCC unroll 8
        for (int b = 0; b < 8; b++) q[b] = unpack_nibbles(x[i + b].qs);
#pragma GCC unroll 8
        for (int t = 0; t < 4; t++) {
            __m256i p[8];
            float f[8], g[8];
#pragma GCC unroll 8
            for (int b = 0; b < 8; b++)
                p[b] = dot_u8s8(q[b], _mm256_loadu_si256((const __m256i *)(yq[t] + 32 * (i + b))));
            /* (block dot - 8 * block sum) per lane, then the FMA chain */
            _mm256_storeu_ps(f, _mm256_fnmadd_ps(_mm256_set1_ps(8.0f), _mm256_loadu_ps(ys[t] + i),
                                                 _mm256_cvtepi32_ps(sum_lanes8(p))));
            _mm256_storeu_ps(g, _mm256_mul_ps(dx, _mm256_loadu_ps(yd[t] + i)));
#pragma GCC unroll 8
            for (int b = 0; b < 8; b++) acc[t] = fmaf(f[b], g[b], acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < 4; t++) {
        float s = acc[t];
        for (int k = i; k < nb; k++) {
            __m256i q = dot_u8s8(unpack_nibbles(x[k].qs),
                                 _mm256_loadu_si256((const __m256i *)(yq[t] + 32 * k)));
            s = fmaf((float)hsum_epi32(q) - 8 * ys[t][k], h2f(x[k].d) * yd[t][k], s);
        }
        out[t] = s;
    }
}

/* q8_0 x q8_0s in the reference engine's order (eng_lanes8_sum): each
 * block's eight four-byte lane sums, converted and accumulated with one
 * FMA into eight float lanes, block after block, then summed as the
 * scalar set does. |x| goes into the byte product with the sign moved onto
 * the activation. Eight blocks' scales are collected and converted
 * together and each broadcast from that vector; the integer work of the
 * eight blocks is independent, so only the FMAs wait on each other. */
static inline __m256 q8_0_block(const block_q8_0 *x, const int8_t *yq)
{
    const __m256i xv = _mm256_loadu_si256((const __m256i *)x->qs);
    const __m256i yv = _mm256_loadu_si256((const __m256i *)yq);
    return _mm256_cvtepi32_ps(dot_u8s8(_mm256_sign_epi8(xv, xv), _mm256_sign_epi8(yv, xv)));
}

static inline float lanes_sum(__m256 acc)
{
    float l[8];
    _mm256_storeu_ps(l, acc);
    return eng_lanes8_sum(l);
}

static float dot_q8_0_q8_0(int n, const void *w, const void *a)
{
    const block_q8_0 *x = w;
    const int nb = n / QK8_0;
    const float *yd = a;
    const int8_t *yq = (const int8_t *)(yd + 2 * nb);
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= nb; i += 8) {
        const __m256 dd =
            _mm256_mul_ps(gather_scales(&x[i], sizeof(block_q8_0)), _mm256_loadu_ps(yd + i));
        prefetch_ahead(&x[i], 5); /* 8 blocks: 272 bytes */
#pragma GCC unroll 8
        for (int b = 0; b < 8; b++)
            acc = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(dd, _mm256_set1_epi32(b)),
                                  q8_0_block(&x[i + b], yq + 32 * (i + b)), acc);
    }
    for (; i < nb; i++)
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * yd[i]), q8_0_block(&x[i], yq + 32 * i),
                              acc);
    return lanes_sum(acc);
}

/* The same for four activation rows: four independent FMA chains. */
static void dot4_q8_0_q8_0(int n, const void *w, const void *a, size_t stride, float out[4])
{
    const block_q8_0 *x = w;
    const int nb = n / QK8_0;
    const float *yd[4];
    const int8_t *yq[4];
    __m256 acc[4];
    int i = 0;
#pragma GCC unroll 8
    for (int t = 0; t < 4; t++) {
        yd[t] = (const float *)((const uint8_t *)a + stride * (size_t)t);
        yq[t] = (const int8_t *)(yd[t] + 2 * nb);
        acc[t] = _mm256_setzero_ps();
    }
    for (; i + 8 <= nb; i += 8) {
        const __m256 dx = gather_scales(&x[i], sizeof(block_q8_0));
        __m256 dd[4];
#pragma GCC unroll 8
        for (int t = 0; t < 4; t++) dd[t] = _mm256_mul_ps(dx, _mm256_loadu_ps(yd[t] + i));
#pragma GCC unroll 8
        for (int b = 0; b < 8; b++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)x[i + b].qs);
            const __m256i ax = _mm256_sign_epi8(xv, xv);
            const __m256i sel = _mm256_set1_epi32(b);
#pragma GCC unroll 8
            for (int t = 0; t < 4; t++) {
                const __m256i yv = _mm256_loadu_si256((const __m256i *)(yq[t] + 32 * (i + b)));
                const __m256 q = _mm256_cvtepi32_ps(dot_u8s8(ax, _mm256_sign_epi8(yv, xv)));
                acc[t] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(dd[t], sel), q, acc[t]);
            }
        }
    }
    for (; i < nb; i++)
#pragma GCC unroll 8
        for (int t = 0; t < 4; t++)
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * yd[t][i]),
                                     q8_0_block(&x[i], yq[t] + 32 * i), acc[t]);
#pragma GCC unroll 8
    for (int t = 0; t < 4; t++) out[t] = lanes_sum(acc[t]);
}

/* The 8 six-bit scales and mins of a q4_K/q5_K block, unpacked with word
 * operations (layout in eng_int.h): scales as int16 into sc[8] for
 * broadcast loads; the mins returned as 8 int16 lanes. */
static inline __m128i kq_unpack(const uint8_t *s12, int16_t sc[8])
{
    uint32_t w[3], lo_sc, hi_sc, lo_m, hi_m;
    __m128i scales;
    memcpy(w, s12, 12);
    lo_sc = w[0] & 0x3f3f3f3fu;
    lo_m = w[1] & 0x3f3f3f3fu;
    hi_sc = (w[2] & 0x0f0f0f0fu) | ((w[0] >> 6) & 0x03030303u) << 4;
    hi_m = ((w[2] >> 4) & 0x0f0f0f0fu) | ((w[1] >> 6) & 0x03030303u) << 4;
    scales = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)hi_sc, (int)lo_sc));
    _mm_storeu_si128((__m128i *)sc, scales);
    return _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)hi_m, (int)lo_m));
}

/* The minimum terms as the reference groups them: the activation's 16
 * block sums paired into the 8 sub-block sums S_j, then the four sums
 * min_2t * S_2t + min_2t+1 * S_2t+1, which q4_K accumulates in four float
 * lanes and adds up at the end as (m0 + m2) + (m1 + m3). */
static inline __m128i kq_minsum(__m128i mins, const int16_t *bsums)
{
    const __m128i s = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)bsums),
                                     _mm_loadu_si128((const __m128i *)(bsums + 8)));
    return _mm_madd_epi16(mins, s);
}

static inline int hsum4_epi32(__m128i s)
{
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1)));
}

static inline float kq_mins_total(__m128 m)
{
    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
}

/* Block i of a q4_K (five = 0) or q5_K row: the common header (d, dmin,
 * scales), the low bits and, for q5_K, the fifth bits. */
static inline __attribute__((always_inline)) const block_q4_K *
kq_block(const void *w, int i, int five, const uint8_t **qs, __m256i *hbits)
{
    const uint8_t *blk =
        (const uint8_t *)w + (five ? sizeof(block_q5_K) : sizeof(block_q4_K)) * (size_t)i;
    const block_q4_K *h = (const block_q4_K *)blk;
    *qs = five ? ((const block_q5_K *)blk)->qs : h->qs;
    *hbits = five ? _mm256_loadu_si256((const __m256i *)((const block_q5_K *)blk)->qh)
                  : _mm256_setzero_si256();
    return h;
}

/* q4_K and q5_K share d, dmin and the scales at the front of the block;
 * q5_K adds a fifth bit per value from qh. five is a constant at every
 * call, so each caller gets its own specialised loop. The order is the
 * scalar set's (kern_ref.c): the integer lanes of a block are those of
 * vpmaddubsw + vpmaddwd over 32 consecutive elements, one FMA per lane
 * and block; the minimum terms with the negated scale, in four lanes for
 * q4_K and one running sum for q5_K. */
static inline float kq_dot(int n, const void *w, const void *a, int five)
{
    const block_q8_K *y = a;
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    float summ = 0;
    for (int i = 0; i < n / QK_K; i++) {
        const uint8_t *qs;
        __m256i hbits;
        const block_q4_K *h = kq_block(w, i, five, &qs, &hbits);
        const int8_t *q8 = y[i].qs;
        int16_t sc[8];
        __m256i sumi = _mm256_setzero_si256(), sumi2 = _mm256_setzero_si256();
        const __m128i mins = kq_minsum(kq_unpack(h->scales, sc), y[i].bsums);
        prefetch_ahead(h, 3);
#pragma GCC unroll 8
        for (int j = 0; j < 4; j++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
            __m256i lo = _mm256_and_si256(bits, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            const __m256i yl = _mm256_loadu_si256((const __m256i *)(q8 + 64 * j));
            const __m256i yh = _mm256_loadu_si256((const __m256i *)(q8 + 64 * j + 32));
            if (five) {
                /* Shifting 16-bit lanes is safe: each byte is masked to bit 0. */
                lo = _mm256_or_si256(
                    lo,
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j), one), 4));
                hi = _mm256_or_si256(
                    hi, _mm256_slli_epi16(
                            _mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j + 1), one), 4));
            }
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, yl),
                                                            _mm256_set1_epi16(sc[2 * j])));
            sumi2 = _mm256_add_epi32(sumi2, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, yh),
                                                              _mm256_set1_epi16(sc[2 * j + 1])));
        }
        const float dmin = -y[i].d * h2f(h->dmin);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * h2f(h->d)),
                              _mm256_cvtepi32_ps(_mm256_add_epi32(sumi, sumi2)), acc);
        if (five)
            summ = fmaf(dmin, (float)hsum4_epi32(mins), summ);
        else
            accm = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(mins), accm);
    }
    return hsum_ps(acc) + (five ? summ : kq_mins_total(accm));
}

static float dot_q4_K_q8_K(int n, const void *w, const void *a)
{
    return kq_dot(n, w, a, 0);
}

static float dot_q5_K_q8_K(int n, const void *w, const void *a)
{
    return kq_dot(n, w, a, 1);
}

/* The 6-bit levels (0..63) of half a q6_K block, 128 values in four
 * vectors of 32: q[c] holds elements 32c .. 32c+31 of the half, low four
 * bits from ql, high two from qh. */
static inline __attribute__((always_inline)) void q6_unpack(const uint8_t *ql, const uint8_t *qh,
                                                            __m256i q[4])
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
    const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
    const __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
    q[0] =
        _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4));
    q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4));
}

/* q6_K: 6-bit levels 0..63 go into vpmaddubsw unsigned and the -32 offset
 * comes off each pair sum (32 * the pair's activations, also from
 * vpmaddubsw) before the scales: the integer lanes of the scalar set's
 * (the reference's) order, for any activations. */
/* Pair sums of (q - 32) * y: levels q 0..63 keep both vpmaddubsw results
 * within 16 bits for any int8 y (2 * 63 * 128 < 32768). (Moving the sign
 * of q - 32 onto y with vpsignb instead measured the same and would need
 * y > -128.) */
static inline __m256i q6_pairs(__m256i q, __m256i y)
{
    return _mm256_sub_epi16(_mm256_maddubs_epi16(q, y),
                            _mm256_maddubs_epi16(_mm256_set1_epi8(32), y));
}

static float dot_q6_K_q8_K(int n, const void *w, const void *a)
{
    const block_q6_K *x = w;
    const block_q8_K *y = a;
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        int16_t sc[16];
        __m256i sumi = _mm256_setzero_si256(), sumi2 = _mm256_setzero_si256();
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        _mm256_storeu_si256((__m256i *)sc, sc16);
        prefetch_ahead(&x[i], 4); /* 210 bytes */
#pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            const int16_t *s = sc + 8 * h;
            const int8_t *q8 = y[i].qs + 128 * h;
            __m256i q[4];
            q6_unpack(ql, qh, q);
#pragma GCC unroll 8
            for (int c = 0; c < 4; c += 2) {
                /* 32 elements, two scales: low 128 bits are elements 0..15. */
                const __m256i y0 = _mm256_loadu_si256((const __m256i *)(q8 + 32 * c));
                const __m256i y1 = _mm256_loadu_si256((const __m256i *)(q8 + 32 * c + 32));
                const __m256i s0 =
                    _mm256_set_m128i(_mm_set1_epi16(s[2 * c + 1]), _mm_set1_epi16(s[2 * c]));
                const __m256i s1 =
                    _mm256_set_m128i(_mm_set1_epi16(s[2 * c + 3]), _mm_set1_epi16(s[2 * c + 2]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(q6_pairs(q[c], y0), s0));
                sumi2 = _mm256_add_epi32(sumi2, _mm256_madd_epi16(q6_pairs(q[c + 1], y1), s1));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * h2f(x[i].d)),
                              _mm256_cvtepi32_ps(_mm256_add_epi32(sumi, sumi2)), acc);
    }
    return hsum_ps(acc);
}

/* Four tokens per q4_K/q5_K weight block: bits and scales unpacked once. */
static inline void kq_dot4(int n, const void *w, const void *a, size_t stride, float out[4],
                           int five)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    const block_q8_K *y[4];
    __m256 acc[4];
    __m128 accm[4];
    float summ[4];
#pragma GCC unroll 8
    for (int t = 0; t < 4; t++) {
        y[t] = (const block_q8_K *)((const uint8_t *)a + stride * (size_t)t);
        acc[t] = _mm256_setzero_ps();
        accm[t] = _mm_setzero_ps();
        summ[t] = 0;
    }
    for (int i = 0; i < n / QK_K; i++) {
        const uint8_t *qs;
        __m256i hbits;
        const block_q4_K *h = kq_block(w, i, five, &qs, &hbits);
        int16_t sc[8];
        __m256i sumi[4];
        const float dx = h2f(h->d), dmx = h2f(h->dmin);
        const __m128i mdup = kq_unpack(h->scales, sc);
#pragma GCC unroll 8
        for (int t = 0; t < 4; t++) sumi[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int j = 0; j < 4; j++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
            __m256i lo = _mm256_and_si256(bits, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            const __m256i s0 = _mm256_set1_epi16(sc[2 * j]), s1 = _mm256_set1_epi16(sc[2 * j + 1]);
            if (five) {
                lo = _mm256_or_si256(
                    lo,
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j), one), 4));
                hi = _mm256_or_si256(
                    hi, _mm256_slli_epi16(
                            _mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j + 1), one), 4));
            }
#pragma GCC unroll 8
            for (int t = 0; t < 4; t++) {
                const __m256i yl = _mm256_loadu_si256((const __m256i *)(y[t][i].qs + 64 * j));
                const __m256i yh = _mm256_loadu_si256((const __m256i *)(y[t][i].qs + 64 * j + 32));
                sumi[t] = _mm256_add_epi32(
                    sumi[t], _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(lo, yl), s0),
                                              _mm256_madd_epi16(_mm256_maddubs_epi16(hi, yh), s1)));
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < 4; t++) {
            const __m128i mt = kq_minsum(mdup, y[t][i].bsums);
            const float dmin = -y[t][i].d * dmx;
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(y[t][i].d * dx), _mm256_cvtepi32_ps(sumi[t]),
                                     acc[t]);
            if (five)
                summ[t] = fmaf(dmin, (float)hsum4_epi32(mt), summ[t]);
            else
                accm[t] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(mt), accm[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < 4; t++)
        out[t] = hsum_ps(acc[t]) + (five ? summ[t] : kq_mins_total(accm[t]));
}

static void dot4_q4_K_q8_K(int n, const void *w, const void *a, size_t stride, float out[4])
{
    kq_dot4(n, w, a, stride, out, 0);
}

static void dot4_q5_K_q8_K(int n, const void *w, const void *a, size_t stride, float out[4])
{
    kq_dot4(n, w, a, stride, out, 1);
}

static void dot4_q6_K_q8_K(int n, const void *w, const void *a, size_t stride, float out[4])
{
    const block_q6_K *x = w;
    const block_q8_K *y[4];
    __m256 acc[4];
#pragma GCC unroll 8
    for (int t = 0; t < 4; t++) {
        y[t] = (const block_q8_K *)((const uint8_t *)a + stride * (size_t)t);
        acc[t] = _mm256_setzero_ps();
    }
    for (int i = 0; i < n / QK_K; i++) {
        int16_t sc[16];
        __m256i sumi[4];
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        const float dx = h2f(x[i].d);
        _mm256_storeu_si256((__m256i *)sc, sc16);
#pragma GCC unroll 8
        for (int t = 0; t < 4; t++) sumi[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int hh = 0; hh < 2; hh++) {
            const uint8_t *ql = x[i].ql + 64 * hh, *qh = x[i].qh + 32 * hh;
            const int16_t *s = sc + 8 * hh;
            __m256i q[4];
            q6_unpack(ql, qh, q);
#pragma GCC unroll 8
            for (int c = 0; c < 4; c++) {
                const __m256i sv =
                    _mm256_set_m128i(_mm_set1_epi16(s[2 * c + 1]), _mm_set1_epi16(s[2 * c]));
#pragma GCC unroll 8
                for (int t = 0; t < 4; t++) {
                    const __m256i yv =
                        _mm256_loadu_si256((const __m256i *)(y[t][i].qs + 128 * hh + 32 * c));
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(q6_pairs(q[c], yv), sv));
                }
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < 4; t++)
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(y[t][i].d * dx), _mm256_cvtepi32_ps(sumi[t]),
                                     acc[t]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < 4; t++) out[t] = hsum_ps(acc[t]);
}

/* e^x for x <= 0 (softmax after subtracting the max): x = n ln2 + r with
 * |r| <= ln2/2, a degree-6 Taylor polynomial for e^r (error about 1 ulp),
 * 2^n through the exponent bits; below -87 the result is 0. */
static inline __m256 exp_neg(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.0f);
    const __m256 zero_mask = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 n, r, p;
    x = _mm256_max_ps(x, lo);
    n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_castsi256_ps(
        _mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23)));
    return _mm256_andnot_ps(zero_mask, p);
}

/* Attention for one head and query (contract in eng_int.h). Scores for
 * eight positions are reduced side by side; exponentials, the f16
 * rounding of probabilities and the double-precision sum go eight at a
 * time; V is accumulated 64 dimensions at a time in registers. */
static void attn_head_avx2(const struct eng_attn *a)
{
    float qf[256] __attribute__((aligned(32)));
    const int hd = a->hd, n_pos = a->n_pos;
    const size_t stride = a->stride;
    float *sc = a->sc, *out = a->out;
    const __m256 scale = _mm256_set1_ps(a->scale);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    float max = -INFINITY, inv;
    double sum;
    int p = 0;
    if (hd % 8 || hd > 256) {
        struct eng_kernels ref;
        eng_kernels_ref(&ref);
        ref.attn_head(a);
        return;
    }
    for (int c = 0; c < hd; c += 8)
        _mm256_store_ps(qf + c, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a->q16 + c))));
    for (; p + 8 <= n_pos; p += 8) {
        __m256 acc[8], r;
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) {
            const uint16_t *kr = a->k + eng_attn_slot(a, p + u) * stride;
            acc[u] = _mm256_setzero_ps();
            for (int c = 0; c < hd; c += 8)
                acc[u] =
                    _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kr + c))),
                                    _mm256_load_ps(qf + c), acc[u]);
        }
        {
            const __m256 t0 = _mm256_hadd_ps(acc[0], acc[1]), t1 = _mm256_hadd_ps(acc[2], acc[3]);
            const __m256 t2 = _mm256_hadd_ps(acc[4], acc[5]), t3 = _mm256_hadd_ps(acc[6], acc[7]);
            const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
            r = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                              _mm256_permute2f128_ps(u0, u1, 0x31));
        }
        _mm256_storeu_ps(sc + p, _mm256_mul_ps(r, scale));
    }
    for (; p < n_pos; p++) {
        const uint16_t *kr = a->k + eng_attn_slot(a, p) * stride;
        __m256 acc = _mm256_setzero_ps();
        for (int c = 0; c < hd; c += 8)
            acc = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kr + c))),
                                  _mm256_load_ps(qf + c), acc);
        sc[p] = hsum_ps(acc) * a->scale;
    }
    eng_attn_cap(a);
    {
        __m256 vmax = _mm256_set1_ps(-INFINITY);
        float m8[8];
        for (p = 0; p + 8 <= n_pos; p += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(sc + p));
        _mm256_storeu_ps(m8, vmax);
        for (int u = 0; u < 8; u++) max = m8[u] > max ? m8[u] : max;
        for (; p < n_pos; p++) max = sc[p] > max ? sc[p] : max;
    }
    for (p = 0; p + 8 <= n_pos; p += 8) {
        const __m256 e = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(sc + p), _mm256_set1_ps(max)));
        _mm256_storeu_ps(sc + p, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    {
        double d4[4];
        _mm256_storeu_pd(d4, _mm256_add_pd(s0, s1));
        sum = d4[0] + d4[1] + d4[2] + d4[3];
    }
    for (; p < n_pos; p++) {
        sc[p] = expf(sc[p] - max);
        sum += sc[p];
    }
    inv = (float)(1.0 / sum);
    /* Probabilities through f16, as the reference rounds them. (Dividing
     * by the double sum and multiplying by its f32 inverse agree to an
     * ulp before the much coarser f16 rounding.) */
    for (p = 0; p + 8 <= n_pos; p += 8)
        _mm256_storeu_ps(sc + p, _mm256_cvtph_ps(_mm256_cvtps_ph(
                                     _mm256_mul_ps(_mm256_loadu_ps(sc + p), _mm256_set1_ps(inv)),
                                     _MM_FROUND_TO_NEAREST_INT)));
    for (; p < n_pos; p++) sc[p] = h2f(f32_to_fp16(sc[p] * inv));
    for (int c0 = 0; c0 < hd; c0 += 64) {
        const int w = hd - c0 < 64 ? hd - c0 : 64;
        __m256 acc[8];
        for (int c = 0; c < 8; c++) acc[c] = _mm256_setzero_ps();
        for (p = 0; p < n_pos; p++) {
            const __m256 bp = _mm256_set1_ps(sc[p]);
            const uint16_t *vr = a->v + eng_attn_slot(a, p) * stride + c0;
            for (int c = 0; c < w / 8; c++)
                acc[c] = _mm256_fmadd_ps(
                    bp, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vr + 8 * c))), acc[c]);
        }
        for (int c = 0; c < w / 8; c++) _mm256_storeu_ps(out + c0 + 8 * c, acc[c]);
    }
}

/* 32 floats -> 32 int8 (x * id rounded to nearest even, as lrintf in the
 * default rounding mode), returned in memory order. */
static inline __m256i quant32(const float *x, __m256 id)
{
    const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), id));
    const __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), id));
    const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), id));
    const __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), id));
    /* packs interleave the 128-bit lanes; the permute restores order */
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static inline float hmax_abs32(const float *x)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_andnot_ps(sign, _mm256_loadu_ps(x));
    __m128 h;
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8)));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 16)));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 24)));
    h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* The q8_0s activation row (layout in eng_int.h), bit for bit what
 * quantize_row_q8_0s computes. */
static void quantize_q8_0s_avx2(const float *x, void *dst, int n)
{
    const int nb = n / QK8_0;
    float *d = dst, *sum = d + nb;
    int8_t *qs = (int8_t *)(sum + nb);
    for (int i = 0; i < nb; i++, x += QK8_0) {
        const float amax = hmax_abs32(x);
        const float id = amax != 0 ? 127.f / amax : 0.f;
        const __m256i q = quant32(x, _mm256_set1_ps(id));
        _mm256_storeu_si256((__m256i *)(qs + 32 * i), q);
        d[i] = h2f(f32_to_fp16(amax / 127.f));
        sum[i] = (float)hsum_epi32(
            _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1)));
    }
}

/* q8_K, bit for bit what quantize_row_q8_K computes: the value of largest
 * magnitude (the first one on ties) maps to -127. */
static void quantize_q8_K_avx2(const float *x, void *dst, int n)
{
    block_q8_K *b = dst;
    for (int i = 0; i < n / QK_K; i++, x += QK_K) {
        float amax = 0, max = 0, iscale;
        for (int j = 0; j < QK_K; j += 32) {
            const float m = hmax_abs32(x + j);
            if (m > amax) amax = m;
        }
        if (amax == 0) {
            memset(&b[i], 0, sizeof(b[i]));
            continue;
        }
        for (int j = 0; j < QK_K; j++)
            if (fabsf(x[j]) == amax) {
                max = x[j];
                break;
            }
        iscale = -127.f / max;
        for (int j = 0; j < QK_K; j += 32) {
            /* min(127, v): only +128 can arise, from the opposite sign */
            const __m256i q =
                _mm256_min_epi8(quant32(x + j, _mm256_set1_ps(iscale)), _mm256_set1_epi8(127));
            const __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), q);
            _mm256_storeu_si256((__m256i *)(b[i].qs + j), q);
            /* 16 pair sums -> two sums of 16 values */
            {
                const __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
                int32_t t[8];
                _mm256_storeu_si256((__m256i *)t, s32);
                b[i].bsums[j / 16] = (int16_t)(t[0] + t[1] + t[2] + t[3]);
                b[i].bsums[j / 16 + 1] = (int16_t)(t[4] + t[5] + t[6] + t[7]);
            }
        }
        b[i].d = 1 / iscale;
    }
}

static void to_f16_avx2(const float *x, void *dst, int n)
{
    uint16_t *d = dst;
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) d[i] = f32_to_fp16(x[i]);
}

static void axpy_f16_avx2(int n, float a, const uint16_t *x, float *y)
{
    const __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, xv, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) y[i] += a * h2f(x[i]);
}

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define KERNELS_NAME "avx2+vnni"
void eng_kernels_avx2_vnni(struct eng_kernels *k)
#else
#define KERNELS_NAME "avx2"
void eng_kernels_avx2(struct eng_kernels *k)
#endif
{
    k->axpy_f16 = axpy_f16_avx2;
    k->attn_head = attn_head_avx2;
    k->name = KERNELS_NAME;
    k->vec_dot[GGUF_T_F32] = dot_f32;
    k->vec_dot[GGUF_T_F16] = dot_f16;
    k->vec_dot[GGUF_T_BF16] = dot_bf16;
    k->vec_dot[GGUF_T_Q8_0] = dot_q8_0_q8_0;
    k->vec_dot[GGUF_T_Q4_0] = dot_q4_0_q8_0;
    k->vec_dot4[GGUF_T_Q4_0] = dot4_q4_0_q8_0;
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    k->tile[GGUF_T_Q4_0] = tile16_q4_0_q8_0;
    k->ptile[GGUF_T_Q4_0] = ptile16_q4_0_q8_0;
#else
    k->tile[GGUF_T_Q4_0] = tile8_q4_0_q8_0;
    k->ptile[GGUF_T_Q4_0] = ptile8_q4_0_q8_0;
#endif
    k->tile_rows[GGUF_T_Q4_0] = Q4_0_PACK_ROWS;
    k->repack[GGUF_T_Q4_0] = repack_q4_0;
    k->tile[GGUF_T_F16] = tile8_f16;
    k->tile_rows[GGUF_T_F16] = 8;
    k->tile_min[GGUF_T_F16] = 2; /* no four-row kernel: the tile from two rows on */
    k->tile[GGUF_T_BF16] = tile8_bf16;
    k->tile_rows[GGUF_T_BF16] = 8;
    k->tile_min[GGUF_T_BF16] = 2;
    k->vec_dot4[GGUF_T_Q8_0] = dot4_q8_0_q8_0;
    k->vec_dot4[GGUF_T_Q4_K] = dot4_q4_K_q8_K;
    k->vec_dot4[GGUF_T_Q5_K] = dot4_q5_K_q8_K;
    k->vec_dot4[GGUF_T_Q6_K] = dot4_q6_K_q8_K;
    k->vec_dot[GGUF_T_Q4_K] = dot_q4_K_q8_K;
    k->vec_dot[GGUF_T_Q5_K] = dot_q5_K_q8_K;
    k->vec_dot[GGUF_T_Q6_K] = dot_q6_K_q8_K;
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    if (eng_cpu_has_avx512bf16()) {
        k->vec_dot[GGUF_T_BF16] = dot_bf16_bf;
        k->tile[GGUF_T_BF16] = tile8_bf16_bf;
    }
#endif
    k->to_act[GGUF_T_F16] = to_f16_avx2;
    k->to_act[ENG_ACT_Q8_0S] = quantize_q8_0s_avx2;
    k->to_act[GGUF_T_Q8_K] = quantize_q8_K_avx2;
}
