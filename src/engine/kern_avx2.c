/*
 * AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c and only
 * installed into the kernel table after CPUID says the CPU has them.
 *
 * Integer dot products use vpmaddubsw, which multiplies unsigned by signed
 * bytes: weights that are unsigned levels (q4_K, q5_K, q6_K before the -32)
 * go in directly; signed weights (q4_0 after -8, q8_0) are made unsigned with
 * their absolute value and the sign moved onto the activation (vpsignb).
 * The level ranges keep every pair sum below 32767, so nothing saturates.
 *
 * A NEON file with the same entry points can be added beside this one.
 */
#include <immintrin.h>

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

/* Signed bytes x signed bytes -> 8 int32 partial sums. */
static inline __m256i mul_sum_i8(__m256i x, __m256i y)
{
    const __m256i ax = _mm256_sign_epi8(x, x);
    const __m256i sy = _mm256_sign_epi8(y, x);
    return dot_u8s8(ax, sy);
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

/* Eight f16 scales that sit at a fixed byte stride (the d field heading
 * each block), converted together: one gather instead of eight scalar
 * loads and conversions. Reads 4 bytes at each block start, which stay
 * inside the block. */
static inline __m256 gather_scales(const void *base, int stride_bytes)
{
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                           _mm256_set1_epi32(stride_bytes));
    __m256i v = _mm256_i32gather_epi32((const int *)base, idx, 1);
    /* keep the low 16 bits of each lane, pack to 8 x u16 */
    v = _mm256_shuffle_epi8(v, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1,
                                                -1, -1, 0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1,
                                                -1, -1, -1, -1));
    v = _mm256_permute4x64_epi64(v, 0x08);
    return _mm256_cvtph_ps(_mm256_castsi256_si128(v));
}

static inline __m256 lane(__m256 v, int b)
{
    return _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(b));
}

/* q4_0 x q8_0s over eight blocks at a time: per block only unpack,
 * vpmaddubsw, vpmaddwd, convert and one FMA; the -8 offset is one FMA per
 * eight blocks. */
static float dot_q4_0_q8_0(int n, const void *w, const void *a)
{
    const block_q4_0 *x = w;
    const int nb = n / QK4_0;
    const float *yd = a, *ysum = yd + nb;
    const int8_t *yq = (const int8_t *)(ysum + nb);
    /* Four accumulators: an FMA waits 4 cycles for its predecessor. Named,
     * not an array, so they stay in registers. */
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, corr = a0;
    int i = 0;
#define Q4_0_STEP(acc, b)                                                                         \
    acc = _mm256_fmadd_ps(                                                                        \
        lane(dd, b),                                                                              \
        _mm256_cvtepi32_ps(dot_u8s8(unpack_nibbles(x[i + b].qs),                                  \
                                    _mm256_loadu_si256((const __m256i *)(yq + 32 * (i + b))))),   \
        acc)
    for (; i + 8 <= nb; i += 8) {
        const __m256 dd = _mm256_mul_ps(gather_scales(&x[i], sizeof(block_q4_0)),
                                        _mm256_loadu_ps(yd + i));
        corr = _mm256_fmadd_ps(dd, _mm256_loadu_ps(ysum + i), corr);
        Q4_0_STEP(a0, 0);
        Q4_0_STEP(a1, 1);
        Q4_0_STEP(a2, 2);
        Q4_0_STEP(a3, 3);
        Q4_0_STEP(a0, 4);
        Q4_0_STEP(a1, 5);
        Q4_0_STEP(a2, 6);
        Q4_0_STEP(a3, 7);
    }
#undef Q4_0_STEP
    {
        float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3))) -
                  8 * hsum_ps(corr);
        for (; i < nb; i++) {
            __m256i p = dot_u8s8(unpack_nibbles(x[i].qs),
                                 _mm256_loadu_si256((const __m256i *)(yq + 32 * i)));
            s += h2f(x[i].d) * yd[i] * ((float)hsum_epi32(p) - 8 * ysum[i]);
        }
        return s;
    }
}

static void dot4_q4_0_q8_0(int n, const void *w, const void *a, size_t stride, float out[4])
{
    const block_q4_0 *x = w;
    const int nb = n / QK4_0;
    const float *yd[4], *ys[4];
    const int8_t *yq[4];
    __m256 acc[4], corr[4];
    int i = 0;
    for (int t = 0; t < 4; t++) {
        yd[t] = (const float *)((const uint8_t *)a + stride * (size_t)t);
        ys[t] = yd[t] + nb;
        yq[t] = (const int8_t *)(ys[t] + nb);
        acc[t] = corr[t] = _mm256_setzero_ps();
    }
    for (; i + 8 <= nb; i += 8) {
        const __m256 dx = gather_scales(&x[i], sizeof(block_q4_0));
        __m256 dd[4];
        for (int t = 0; t < 4; t++) {
            dd[t] = _mm256_mul_ps(dx, _mm256_loadu_ps(yd[t] + i));
            corr[t] = _mm256_fmadd_ps(dd[t], _mm256_loadu_ps(ys[t] + i), corr[t]);
        }
        for (int b = 0; b < 8; b++) {
            const __m256i q = unpack_nibbles(x[i + b].qs);
            for (int t = 0; t < 4; t++) {
                __m256i p = dot_u8s8(q, _mm256_loadu_si256((const __m256i *)(yq[t] + 32 * (i + b))));
                acc[t] = _mm256_fmadd_ps(lane(dd[t], b), _mm256_cvtepi32_ps(p), acc[t]);
            }
        }
    }
    for (int t = 0; t < 4; t++) {
        float s = hsum_ps(acc[t]) - 8 * hsum_ps(corr[t]);
        for (int k = i; k < nb; k++) {
            __m256i p = dot_u8s8(unpack_nibbles(x[k].qs),
                                 _mm256_loadu_si256((const __m256i *)(yq[t] + 32 * k)));
            s += h2f(x[k].d) * yd[t][k] * ((float)hsum_epi32(p) - 8 * ys[t][k]);
        }
        out[t] = s;
    }
}

/* q8_0 x q8_0s: eight weight scales gathered at once, |x| into vpmaddubsw
 * with the sign moved onto the activation. */
static float dot_q8_0_q8_0(int n, const void *w, const void *a)
{
    const block_q8_0 *x = w;
    const int nb = n / QK8_0;
    const float *yd = a;
    const int8_t *yq = (const int8_t *)(yd + 2 * nb);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
#define Q8_0_STEP(acc, b)                                                                         \
    do {                                                                                          \
        const __m256i xv = _mm256_loadu_si256((const __m256i *)x[i + b].qs);                      \
        const __m256i yv = _mm256_loadu_si256((const __m256i *)(yq + 32 * (i + b)));              \
        acc = _mm256_fmadd_ps(lane(dd, b),                                                        \
                              _mm256_cvtepi32_ps(dot_u8s8(_mm256_sign_epi8(xv, xv),               \
                                                          _mm256_sign_epi8(yv, xv))),             \
                              acc);                                                               \
    } while (0)
    for (; i + 8 <= nb; i += 8) {
        const __m256 dd = _mm256_mul_ps(gather_scales(&x[i], sizeof(block_q8_0)),
                                        _mm256_loadu_ps(yd + i));
        Q8_0_STEP(a0, 0);
        Q8_0_STEP(a1, 1);
        Q8_0_STEP(a2, 2);
        Q8_0_STEP(a3, 3);
        Q8_0_STEP(a0, 4);
        Q8_0_STEP(a1, 5);
        Q8_0_STEP(a2, 6);
        Q8_0_STEP(a3, 7);
    }
#undef Q8_0_STEP
    {
        float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; i < nb; i++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)x[i].qs);
            const __m256i yv = _mm256_loadu_si256((const __m256i *)(yq + 32 * i));
            s += h2f(x[i].d) * yd[i] *
                 (float)hsum_epi32(dot_u8s8(_mm256_sign_epi8(xv, xv), _mm256_sign_epi8(yv, xv)));
        }
        return s;
    }
}

static void dot4_q8_0_q8_0(int n, const void *w, const void *a, size_t stride, float out[4])
{
    const block_q8_0 *x = w;
    const int nb = n / QK8_0;
    const float *yd[4];
    const int8_t *yq[4];
    __m256 acc[4];
    int i = 0;
    for (int t = 0; t < 4; t++) {
        yd[t] = (const float *)((const uint8_t *)a + stride * (size_t)t);
        yq[t] = (const int8_t *)(yd[t] + 2 * nb);
        acc[t] = _mm256_setzero_ps();
    }
    for (; i + 8 <= nb; i += 8) {
        const __m256 dx = gather_scales(&x[i], sizeof(block_q8_0));
        __m256 dd[4];
        for (int t = 0; t < 4; t++) dd[t] = _mm256_mul_ps(dx, _mm256_loadu_ps(yd[t] + i));
        for (int b = 0; b < 8; b++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)x[i + b].qs);
            const __m256i ax = _mm256_sign_epi8(xv, xv);
            for (int t = 0; t < 4; t++) {
                const __m256i yv = _mm256_loadu_si256((const __m256i *)(yq[t] + 32 * (i + b)));
                acc[t] = _mm256_fmadd_ps(lane(dd[t], b),
                                         _mm256_cvtepi32_ps(dot_u8s8(ax, _mm256_sign_epi8(yv, xv))),
                                         acc[t]);
            }
        }
    }
    for (int t = 0; t < 4; t++) {
        float s = hsum_ps(acc[t]);
        for (int k = i; k < nb; k++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)x[k].qs);
            const __m256i yv = _mm256_loadu_si256((const __m256i *)(yq[t] + 32 * k));
            s += h2f(x[k].d) * yd[t][k] *
                 (float)hsum_epi32(dot_u8s8(_mm256_sign_epi8(xv, xv), _mm256_sign_epi8(yv, xv)));
        }
        out[t] = s;
    }
}

/* The 8 six-bit scales and mins of a q4_K/q5_K block, unpacked with word
 * operations (layout in eng_int.h): scales as int16 into sc[8] for
 * broadcast loads; the mins returned as 16 int16 lanes, each min twice, so
 * vpmaddwd with the activation's 16 block sums gives the 8 terms
 * min_j * (sum of sub-block j's 32 activations). */
static inline __m256i kq_unpack(const uint8_t *s12, int16_t sc[8])
{
    uint32_t w[3], lo_sc, hi_sc, lo_m, hi_m;
    __m128i scales, mins;
    memcpy(w, s12, 12);
    lo_sc = w[0] & 0x3f3f3f3fu;
    lo_m = w[1] & 0x3f3f3f3fu;
    hi_sc = (w[2] & 0x0f0f0f0fu) | ((w[0] >> 6) & 0x03030303u) << 4;
    hi_m = ((w[2] >> 4) & 0x0f0f0f0fu) | ((w[1] >> 6) & 0x03030303u) << 4;
    scales = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)hi_sc, (int)lo_sc));
    mins = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)hi_m, (int)lo_m));
    _mm_storeu_si128((__m128i *)sc, scales);
    return _mm256_set_m128i(_mm_unpackhi_epi16(mins, mins), _mm_unpacklo_epi16(mins, mins));
}

static inline __m256i kq_minsum(__m256i mins_dup, const int16_t *bsums)
{
    return _mm256_madd_epi16(mins_dup, _mm256_loadu_si256((const __m256i *)bsums));
}

static float dot_q4_K_q8_K(int n, const void *w, const void *a)
{
    const block_q4_K *x = w;
    const block_q8_K *y = a;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        int16_t sc[8];
        __m256i sumi = _mm256_setzero_si256(), sumi2 = _mm256_setzero_si256();
        const uint8_t *q4 = x[i].qs;
        const int8_t *q8 = y[i].qs;
        const __m256i mins = kq_minsum(kq_unpack(x[i].scales, sc), y[i].bsums);
        for (int j = 0; j < 4; j++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(q4 + 32 * j));
            const __m256i lo = _mm256_and_si256(bits, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            const __m256i yl = _mm256_loadu_si256((const __m256i *)(q8 + 64 * j));
            const __m256i yh = _mm256_loadu_si256((const __m256i *)(q8 + 64 * j + 32));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, yl),
                                                            _mm256_set1_epi16(sc[2 * j])));
            sumi2 = _mm256_add_epi32(sumi2, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, yh),
                                                              _mm256_set1_epi16(sc[2 * j + 1])));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * h2f(x[i].d)),
                              _mm256_cvtepi32_ps(_mm256_add_epi32(sumi, sumi2)), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * h2f(x[i].dmin)), _mm256_cvtepi32_ps(mins), accm);
    }
    return hsum_ps(acc) - hsum_ps(accm);
}

static float dot_q5_K_q8_K(int n, const void *w, const void *a)
{
    const block_q5_K *x = w;
    const block_q8_K *y = a;
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        int16_t sc[8];
        __m256i sumi = _mm256_setzero_si256(), sumi2 = _mm256_setzero_si256();
        const uint8_t *q5 = x[i].qs;
        const int8_t *q8 = y[i].qs;
        const __m256i hbits = _mm256_loadu_si256((const __m256i *)x[i].qh);
        const __m256i mins = kq_minsum(kq_unpack(x[i].scales, sc), y[i].bsums);
        for (int j = 0; j < 4; j++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(q5 + 32 * j));
            /* Shifting 16-bit lanes is safe: each byte is masked to bit 0. */
            const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j), one);
            const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j + 1), one);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(bits, m4), _mm256_slli_epi16(h0, 4));
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4),
                                               _mm256_slli_epi16(h1, 4));
            const __m256i yl = _mm256_loadu_si256((const __m256i *)(q8 + 64 * j));
            const __m256i yh = _mm256_loadu_si256((const __m256i *)(q8 + 64 * j + 32));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, yl),
                                                            _mm256_set1_epi16(sc[2 * j])));
            sumi2 = _mm256_add_epi32(sumi2, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, yh),
                                                              _mm256_set1_epi16(sc[2 * j + 1])));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * h2f(x[i].d)),
                              _mm256_cvtepi32_ps(_mm256_add_epi32(sumi, sumi2)), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * h2f(x[i].dmin)), _mm256_cvtepi32_ps(mins), accm);
    }
    return hsum_ps(acc) - hsum_ps(accm);
}

/* q6_K: 6-bit levels 0..63 go into vpmaddubsw unsigned; the -32 offset is
 * applied as 32 * sum over groups of scale * (group's activation sum). */
static float dot_q6_K_q8_K(int n, const void *w, const void *a)
{
    const block_q6_K *x = w;
    const block_q8_K *y = a;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        int16_t sc[16];
        __m256i sumi = _mm256_setzero_si256(), sumi2 = _mm256_setzero_si256();
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        /* 32 * scale * group sum, 8 int32 lanes */
        const __m256i corr = _mm256_slli_epi32(
            _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)y[i].bsums)), 5);
        _mm256_storeu_si256((__m256i *)sc, sc16);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            const int16_t *s = sc + 8 * h;
            const int8_t *q8 = y[i].qs + 128 * h;
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4));
            for (int c = 0; c < 4; c += 2) {
                /* 32 elements, two scales: low 128 bits are elements 0..15. */
                const __m256i y0 = _mm256_loadu_si256((const __m256i *)(q8 + 32 * c));
                const __m256i y1 = _mm256_loadu_si256((const __m256i *)(q8 + 32 * c + 32));
                const __m256i s0 = _mm256_set_m128i(_mm_set1_epi16(s[2 * c + 1]), _mm_set1_epi16(s[2 * c]));
                const __m256i s1 = _mm256_set_m128i(_mm_set1_epi16(s[2 * c + 3]), _mm_set1_epi16(s[2 * c + 2]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q[c], y0), s0));
                sumi2 = _mm256_add_epi32(sumi2, _mm256_madd_epi16(_mm256_maddubs_epi16(q[c + 1], y1), s1));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * h2f(x[i].d)),
                              _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_add_epi32(sumi, sumi2), corr)),
                              acc);
    }
    return hsum_ps(acc);
}

/* Four tokens per q4_K/q5_K weight block: bits and scales unpacked once. */
static inline void kq_dot4(int n, const void *w, const void *a, size_t stride, float out[4],
                           int five)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    const size_t bsz = five ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const block_q8_K *y[4];
    __m256 acc[4], accm[4];
    for (int t = 0; t < 4; t++) {
        y[t] = (const block_q8_K *)((const uint8_t *)a + stride * (size_t)t);
        acc[t] = accm[t] = _mm256_setzero_ps();
    }
    for (int i = 0; i < n / QK_K; i++) {
        const uint8_t *blk = (const uint8_t *)w + bsz * (size_t)i;
        /* q4_K and q5_K share d, dmin, scales at the front */
        const block_q4_K *h = (const block_q4_K *)blk;
        const uint8_t *qs = five ? ((const block_q5_K *)blk)->qs : h->qs;
        const __m256i hbits =
            five ? _mm256_loadu_si256((const __m256i *)((const block_q5_K *)blk)->qh) : _mm256_setzero_si256();
        int16_t sc[8];
        __m256i sumi[4];
        const float dx = h2f(h->d), dmx = h2f(h->dmin);
        const __m256i mdup = kq_unpack(h->scales, sc);
        for (int t = 0; t < 4; t++) sumi[t] = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
            __m256i lo = _mm256_and_si256(bits, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            const __m256i s0 = _mm256_set1_epi16(sc[2 * j]), s1 = _mm256_set1_epi16(sc[2 * j + 1]);
            if (five) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j), one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j + 1), one), 4));
            }
            for (int t = 0; t < 4; t++) {
                const __m256i yl = _mm256_loadu_si256((const __m256i *)(y[t][i].qs + 64 * j));
                const __m256i yh = _mm256_loadu_si256((const __m256i *)(y[t][i].qs + 64 * j + 32));
                sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(
                    _mm256_madd_epi16(_mm256_maddubs_epi16(lo, yl), s0),
                    _mm256_madd_epi16(_mm256_maddubs_epi16(hi, yh), s1)));
            }
        }
        for (int t = 0; t < 4; t++) {
            const __m256i mt = kq_minsum(mdup, y[t][i].bsums);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(y[t][i].d * dx), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
            accm[t] = _mm256_fmadd_ps(_mm256_set1_ps(y[t][i].d * dmx), _mm256_cvtepi32_ps(mt), accm[t]);
        }
    }
    for (int t = 0; t < 4; t++) out[t] = hsum_ps(acc[t]) - hsum_ps(accm[t]);
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
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    const block_q8_K *y[4];
    __m256 acc[4];
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
        for (int t = 0; t < 4; t++)
            sumi[t] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                       _mm256_slli_epi32(_mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)y[t][i].bsums)), 5));
        for (int hh = 0; hh < 2; hh++) {
            const uint8_t *ql = x[i].ql + 64 * hh, *qh = x[i].qh + 32 * hh;
            const int16_t *s = sc + 8 * hh;
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4));
            for (int c = 0; c < 4; c++) {
                const __m256i sv = _mm256_set_m128i(_mm_set1_epi16(s[2 * c + 1]), _mm_set1_epi16(s[2 * c]));
                for (int t = 0; t < 4; t++) {
                    const __m256i yv = _mm256_loadu_si256((const __m256i *)(y[t][i].qs + 128 * hh + 32 * c));
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(_mm256_maddubs_epi16(q[c], yv), sv));
                }
            }
        }
        for (int t = 0; t < 4; t++)
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(y[t][i].d * dx), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
    }
    for (int t = 0; t < 4; t++) out[t] = hsum_ps(acc[t]);
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
    k->name = KERNELS_NAME;
    k->vec_dot[GGUF_T_F32] = dot_f32;
    k->vec_dot[GGUF_T_F16] = dot_f16;
    k->vec_dot[GGUF_T_BF16] = dot_bf16;
    k->vec_dot[GGUF_T_Q8_0] = dot_q8_0_q8_0;
    k->vec_dot[GGUF_T_Q4_0] = dot_q4_0_q8_0;
    k->vec_dot4[GGUF_T_Q4_0] = dot4_q4_0_q8_0;
    k->vec_dot4[GGUF_T_Q8_0] = dot4_q8_0_q8_0;
    k->vec_dot4[GGUF_T_Q4_K] = dot4_q4_K_q8_K;
    k->vec_dot4[GGUF_T_Q5_K] = dot4_q5_K_q8_K;
    k->vec_dot4[GGUF_T_Q6_K] = dot4_q6_K_q8_K;
    k->vec_dot[GGUF_T_Q4_K] = dot_q4_K_q8_K;
    k->vec_dot[GGUF_T_Q5_K] = dot_q5_K_q8_K;
    k->vec_dot[GGUF_T_Q6_K] = dot_q6_K_q8_K;
    k->to_act[GGUF_T_F16] = to_f16_avx2;
}
