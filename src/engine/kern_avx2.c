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

/* Signed bytes x signed bytes -> 8 int32 partial sums. */
static inline __m256i mul_sum_i8(__m256i x, __m256i y)
{
    const __m256i ax = _mm256_sign_epi8(x, x);
    const __m256i sy = _mm256_sign_epi8(y, x);
    const __m256i p16 = _mm256_maddubs_epi16(ax, sy);
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

static inline __m256i unpack_nibbles(const uint8_t *p)
{
    const __m128i b = _mm_loadu_si128((const __m128i *)p);
    const __m256i both = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
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

static float dot_q8_0_q8_0(int n, const void *w, const void *a)
{
    const block_q8_0 *x = w, *y = a;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int nb = n / QK8_0, i = 0;
    for (; i + 2 <= nb; i += 2) {
        __m256i p0 = mul_sum_i8(_mm256_loadu_si256((const __m256i *)x[i].qs),
                                _mm256_loadu_si256((const __m256i *)y[i].qs));
        __m256i p1 = mul_sum_i8(_mm256_loadu_si256((const __m256i *)x[i + 1].qs),
                                _mm256_loadu_si256((const __m256i *)y[i + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)),
                               _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i + 1].d) * h2f(y[i + 1].d)),
                               _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; i < nb; i++) {
        __m256i p = mul_sum_i8(_mm256_loadu_si256((const __m256i *)x[i].qs),
                               _mm256_loadu_si256((const __m256i *)y[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)),
                               _mm256_cvtepi32_ps(p), acc0);
    }
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* q4_0 x q8_0s: unsigned nibbles straight into vpmaddubsw (at most
 * 15 * 127 * 2 per pair), the -8 offset applied once per block through
 * the activation's stored sum. Four blocks per iteration. */
static inline __m256 q4_0_block(const block_q4_0 *x, const block_q8_0s *y, __m256 acc)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i p = _mm256_maddubs_epi16(unpack_nibbles(x->qs), _mm256_loadu_si256((const __m256i *)y->qs));
    __m256i p32 = _mm256_madd_epi16(p, ones);
    /* -8 * sum spread as -sum into each of the 8 lanes */
    p32 = _mm256_add_epi32(p32, _mm256_set1_epi32(-y->sum));
    return _mm256_fmadd_ps(_mm256_set1_ps(h2f(x->d) * h2f(y->d)), _mm256_cvtepi32_ps(p32), acc);
}

static float dot_q4_0_q8_0(int n, const void *w, const void *a)
{
    const block_q4_0 *x = w;
    const block_q8_0s *y = a;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    int nb = n / QK4_0, i = 0;
    for (; i + 4 <= nb; i += 4) {
        acc0 = q4_0_block(&x[i], &y[i], acc0);
        acc1 = q4_0_block(&x[i + 1], &y[i + 1], acc1);
        acc2 = q4_0_block(&x[i + 2], &y[i + 2], acc2);
        acc3 = q4_0_block(&x[i + 3], &y[i + 3], acc3);
    }
    for (; i < nb; i++) acc0 = q4_0_block(&x[i], &y[i], acc0);
    return hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
}

static void dot4_q4_0_q8_0(int n, const void *w, const void *a, size_t stride, float out[4])
{
    const block_q4_0 *x = w;
    const block_q8_0s *y[4];
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    for (int t = 0; t < 4; t++) y[t] = (const block_q8_0s *)((const uint8_t *)a + stride * (size_t)t);
    for (int i = 0; i < n / QK4_0; i++) {
        const __m256i q = unpack_nibbles(x[i].qs);
        const float dx = h2f(x[i].d);
        for (int t = 0; t < 4; t++) {
            __m256i p = _mm256_madd_epi16(
                _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)y[t][i].qs)), ones);
            p = _mm256_add_epi32(p, _mm256_set1_epi32(-y[t][i].sum));
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dx * h2f(y[t][i].d)), _mm256_cvtepi32_ps(p), acc[t]);
        }
    }
    for (int t = 0; t < 4; t++) out[t] = hsum_ps(acc[t]);
}

/* Unpacks the 8 six-bit scales and mins of a q4_K/q5_K block. */
static inline void kq_scales(const uint8_t *s, uint8_t sc[8], uint8_t m[8])
{
    for (int j = 0; j < 8; j++) get_scale_min_k4(j, s, &sc[j], &m[j]);
}

static inline int kq_minsum(const uint8_t m[8], const int16_t *bsums)
{
    int s = 0;
    for (int j = 0; j < 8; j++) s += m[j] * (bsums[2 * j] + bsums[2 * j + 1]);
    return s;
}

static float dot_q4_K_q8_K(int n, const void *w, const void *a)
{
    const block_q4_K *x = w;
    const block_q8_K *y = a;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    float accm = 0;
    for (int i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], m[8];
        __m256i sumi = _mm256_setzero_si256();
        const uint8_t *q4 = x[i].qs;
        const int8_t *q8 = y[i].qs;
        kq_scales(x[i].scales, sc, m);
        for (int j = 0; j < 4; j++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(q4 + 32 * j));
            const __m256i lo = _mm256_and_si256(bits, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            const __m256i yl = _mm256_loadu_si256((const __m256i *)(q8 + 64 * j));
            const __m256i yh = _mm256_loadu_si256((const __m256i *)(q8 + 64 * j + 32));
            __m256i pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, yl),
                                           _mm256_set1_epi16(sc[2 * j]));
            __m256i ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, yh),
                                           _mm256_set1_epi16(sc[2 * j + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * h2f(x[i].d)),
                              _mm256_cvtepi32_ps(sumi), acc);
        accm += y[i].d * h2f(x[i].dmin) * (float)kq_minsum(m, y[i].bsums);
    }
    return hsum_ps(acc) - accm;
}

static float dot_q5_K_q8_K(int n, const void *w, const void *a)
{
    const block_q5_K *x = w;
    const block_q8_K *y = a;
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    float accm = 0;
    for (int i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], m[8];
        __m256i sumi = _mm256_setzero_si256();
        const uint8_t *q5 = x[i].qs;
        const int8_t *q8 = y[i].qs;
        const __m256i hbits = _mm256_loadu_si256((const __m256i *)x[i].qh);
        kq_scales(x[i].scales, sc, m);
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
            __m256i pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, yl),
                                           _mm256_set1_epi16(sc[2 * j]));
            __m256i ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, yh),
                                           _mm256_set1_epi16(sc[2 * j + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * h2f(x[i].d)),
                              _mm256_cvtepi32_ps(sumi), acc);
        accm += y[i].d * h2f(x[i].dmin) * (float)kq_minsum(m, y[i].bsums);
    }
    return hsum_ps(acc) - accm;
}

static float dot_q6_K_q8_K(int n, const void *w, const void *a)
{
    const block_q6_K *x = w;
    const block_q8_K *y = a;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        __m256i sumi = _mm256_setzero_si256();
        int corr = 0;
        for (int g = 0; g < 16; g++) corr += x[i].scales[g] * y[i].bsums[g];
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            const int8_t *sc = x[i].scales + 8 * h;
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
            for (int c = 0; c < 4; c++) {
                /* 32 elements, two scales: low 128 bits are elements 0..15. */
                const __m256i yv = _mm256_loadu_si256((const __m256i *)(q8 + 32 * c));
                const __m256i s16 = _mm256_set_m128i(_mm_set1_epi16(sc[2 * c + 1]),
                                                     _mm_set1_epi16(sc[2 * c]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q[c], yv), s16));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * h2f(x[i].d)),
                              _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi, _mm256_setr_epi32(32 * corr, 0, 0, 0, 0, 0, 0, 0))),
                              acc);
    }
    return hsum_ps(acc);
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

void eng_kernels_avx2(struct eng_kernels *k)
{
    k->axpy_f16 = axpy_f16_avx2;
    k->name = "avx2";
    k->vec_dot[GGUF_T_F32] = dot_f32;
    k->vec_dot[GGUF_T_F16] = dot_f16;
    k->vec_dot[GGUF_T_BF16] = dot_bf16;
    k->vec_dot[GGUF_T_Q8_0] = dot_q8_0_q8_0;
    k->vec_dot[GGUF_T_Q4_0] = dot_q4_0_q8_0;
    k->vec_dot4[GGUF_T_Q4_0] = dot4_q4_0_q8_0;
    k->vec_dot[GGUF_T_Q4_K] = dot_q4_K_q8_K;
    k->vec_dot[GGUF_T_Q5_K] = dot_q5_K_q8_K;
    k->vec_dot[GGUF_T_Q6_K] = dot_q6_K_q8_K;
    k->to_act[GGUF_T_F16] = to_f16_avx2;
}
