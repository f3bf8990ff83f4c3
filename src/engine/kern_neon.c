/*
 * AArch64 Advanced SIMD (NEON) kernels, which every AArch64 CPU has; built
 * a second time with the dot-product extension (kern_neon_dot.c), where
 * SDOT forms the four-byte sums in one instruction.
 *
 * Numerics. The integer sums of the quantized types are exact in any
 * order, and every float step after them is taken in the scalar set's
 * order, so the q8_0, q4_0 and k-quant dot products give kern_ref.c's
 * results bit for bit: the q8_0 lanes are the scalar set's eight lanes
 * (SDOT's lane l sums bytes 4l..4l+3, as the reference does) with one
 * fused multiply-add per block and the same final sum; q4_0 feeds each
 * block's integer sum into the scalar set's one FMA chain, and the
 * k-quants keep its eight integer lanes (four-byte groups, from SDOT or
 * the widening pair sums) and its float steps. The f32, f16 and bf16
 * dot products accumulate in four-lane partial sums (the AVX2 set's in
 * eight) and so differ from the scalar set's running sum by rounding only.
 * axpy_f16 multiplies and then adds, unfused, as the scalar loop does.
 * The conversions of activations and the attention are the scalar set's
 * own (the attention in the reference's order, kern_ref.c).
 */
#include <arm_neon.h>

#include "eng_int.h"

/* acc + the four-byte sums of a . b: lane l holds bytes 4l..4l+3. */
static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b)
{
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    /* products fit 16 bits (|-128 * -128| = 2^14); pairs widen to 32 */
    int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    int32x4_t hi = vpaddlq_s16(vmull_high_s8(a, b));
    return vaddq_s32(acc, vpaddq_s32(lo, hi));
#endif
}

static inline int dot32_i8(const int8_t *a, const int8_t *b)
{
    int32x4_t s = dot16(vdupq_n_s32(0), vld1q_s8(a), vld1q_s8(b));
    return vaddvq_s32(dot16(s, vld1q_s8(a + 16), vld1q_s8(b + 16)));
}

static inline float32x4_t f16x4(const uint16_t *p)
{
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

static inline float32x4_t bf16x4(const uint16_t *p)
{
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

/* ---- floats ---- */

static float dot_f32(int n, const void *w, const void *a)
{
    const float *x = w, *y = a;
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
    float s;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vfmaq_f32(s0, vld1q_f32(x + i), vld1q_f32(y + i));
        s1 = vfmaq_f32(s1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
        s2 = vfmaq_f32(s2, vld1q_f32(x + i + 8), vld1q_f32(y + i + 8));
        s3 = vfmaq_f32(s3, vld1q_f32(x + i + 12), vld1q_f32(y + i + 12));
    }
    for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(x + i), vld1q_f32(y + i));
    s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

/* A dot product of two 16-bit float rows (f16 or bf16: load4 widens four
 * elements, one widens one), in two four-lane partial sums. Inlined with
 * constant loaders, so each caller is its own loop. */
static inline float dot_h16(int n, const uint16_t *x, const uint16_t *y,
                            float32x4_t (*load4)(const uint16_t *), float (*one)(uint16_t))
{
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0;
    float s;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 = vfmaq_f32(s0, load4(x + i), load4(y + i));
        s1 = vfmaq_f32(s1, load4(x + i + 4), load4(y + i + 4));
    }
    s = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++) s += one(x[i]) * one(y[i]);
    return s;
}

static float dot_f16(int n, const void *w, const void *a)
{
    return dot_h16(n, w, a, f16x4, fp16_to_f32);
}

static float dot_bf16(int n, const void *w, const void *a)
{
    return dot_h16(n, w, a, bf16x4, bf16_to_f32);
}

/* y += a * x, unfused like the scalar loop */
static void axpy_f16_neon(int n, float a, const uint16_t *x, float *y)
{
    float32x4_t va = vdupq_n_f32(a);
    int i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vmulq_f32(va, f16x4(x + i))));
    for (; i < n; i++) y[i] += a * fp16_to_f32(x[i]);
}

/* ---- q8_0 and q4_0 against q8_0s activations ---- */

static float dot_q8_0_q8_0(int n, const void *w, const void *a)
{
    const block_q8_0 *x = w;
    int nb = n / QK8_0;
    const float *yd = a;
    const int8_t *yq = (const int8_t *)(yd + 2 * nb);
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = acc0;
    float l[8];
    for (int i = 0; i < nb; i++) {
        const int8_t *q = yq + (size_t)i * QK8_0;
        float32x4_t d = vdupq_n_f32(fp16_to_f32(x[i].d) * yd[i]);
        int32x4_t s0 = dot16(vdupq_n_s32(0), vld1q_s8(x[i].qs), vld1q_s8(q));
        int32x4_t s1 = dot16(vdupq_n_s32(0), vld1q_s8(x[i].qs + 16), vld1q_s8(q + 16));
        acc0 = vfmaq_f32(acc0, vcvtq_f32_s32(s0), d);
        acc1 = vfmaq_f32(acc1, vcvtq_f32_s32(s1), d);
    }
    vst1q_f32(l, acc0);
    vst1q_f32(l + 4, acc1);
    return eng_lanes8_sum(l);
}

static float dot_q4_0_q8_0(int n, const void *w, const void *a)
{
    const block_q4_0 *x = w;
    int nb = n / QK4_0;
    const float *yd = a, *ysum = yd + nb;
    const int8_t *yq = (const int8_t *)(ysum + nb);
    const uint8x16_t m4 = vdupq_n_u8(0xF);
    float s = 0;
    for (int i = 0; i < nb; i++) {
        const int8_t *q = yq + (size_t)i * QK4_0;
        uint8x16_t b = vld1q_u8(x[i].qs);
        int32x4_t acc = dot16(vdupq_n_s32(0), vreinterpretq_s8_u8(vandq_u8(b, m4)), vld1q_s8(q));
        int sum;
        acc = dot16(acc, vreinterpretq_s8_u8(vshrq_n_u8(b, 4)), vld1q_s8(q + 16));
        sum = vaddvq_s32(acc) - 8 * (int)ysum[i];
        s = fmaf((float)sum, fp16_to_f32(x[i].d) * yd[i], s);
    }
    return s;
}

/* ---- k-quants against q8_K activations ---- */

/* The 32 values of sub-block j of a q4_K or q5_K block, unsigned: the low
 * or high nibbles of q, plus 16 where bit j of qh is set (q5_K). */
static inline void kq_sub(const uint8_t *q, const uint8_t *qh, int j, int8x16_t v[2])
{
    for (int h = 0; h < 2; h++) {
        uint8x16_t b = vld1q_u8(q + 16 * h);
        b = (j & 1) ? vshrq_n_u8(b, 4) : vandq_u8(b, vdupq_n_u8(0xF));
        if (qh) {
            uint8x16_t bit = vtstq_u8(vld1q_u8(qh + 16 * h), vdupq_n_u8((uint8_t)(1u << j)));
            b = vorrq_u8(b, vandq_u8(bit, vdupq_n_u8(16)));
        }
        v[h] = vreinterpretq_s8_u8(b);
    }
}

/* Lanes 0-3 of the eight come from elements 0..15 of each 32-element
 * stretch, lanes 4-7 from 16..31; the float steps are kern_ref.c's. */
static inline float kq_dot(int n, const void *w, const void *a, int five)
{
    const block_q8_K *y = a;
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = acc0;
    float accm[4] = {0}, summ = 0, l[8];
    for (int i = 0; i < n / QK_K; i++) {
        const uint8_t *scales, *qs, *qh = NULL;
        float d, dmin;
        int32x4_t s0 = vdupq_n_s32(0), s1 = s0;
        int mins[4] = {0};
        if (five) {
            const block_q5_K *x = (const block_q5_K *)w + i;
            scales = x->scales, qs = x->qs, qh = x->qh;
            d = y[i].d * fp16_to_f32(x->d), dmin = -y[i].d * fp16_to_f32(x->dmin);
        } else {
            const block_q4_K *x = (const block_q4_K *)w + i;
            scales = x->scales, qs = x->qs;
            d = y[i].d * fp16_to_f32(x->d), dmin = -y[i].d * fp16_to_f32(x->dmin);
        }
        for (int j = 0; j < 8; j++) {
            const int8_t *q8 = y[i].qs + 32 * j;
            uint8_t sc, m;
            int8x16_t v[2];
            get_scale_min_k4(j, scales, &sc, &m);
            kq_sub(qs + 32 * (j / 2), qh, j, v);
            s0 = vmlaq_n_s32(s0, dot16(vdupq_n_s32(0), v[0], vld1q_s8(q8)), sc);
            s1 = vmlaq_n_s32(s1, dot16(vdupq_n_s32(0), v[1], vld1q_s8(q8 + 16)), sc);
            mins[j / 2] += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(s0), d);
        acc1 = vfmaq_n_f32(acc1, vcvtq_f32_s32(s1), d);
        if (five)
            summ = fmaf(dmin, (float)(mins[0] + mins[1] + mins[2] + mins[3]), summ);
        else
            for (int k = 0; k < 4; k++) accm[k] = fmaf(dmin, (float)mins[k], accm[k]);
    }
    vst1q_f32(l, acc0);
    vst1q_f32(l + 4, acc1);
    return eng_lanes8_sum(l) + (five ? summ : (accm[0] + accm[2]) + (accm[1] + accm[3]));
}

static float dot_q4_K_q8_K(int n, const void *w, const void *a)
{
    return kq_dot(n, w, a, 0);
}

static float dot_q5_K_q8_K(int n, const void *w, const void *a)
{
    return kq_dot(n, w, a, 1);
}

/* q6_K: element e = 128h + 32c + l takes its low four bits from ql (byte l
 * or l + 32 of half h, low or high nibble by c) and its top two from qh
 * (byte l, bits 2c); 16 groups of 16 with a scale each. */
static float dot_q6_K_q8_K(int n, const void *w, const void *a)
{
    const block_q6_K *x = w;
    const block_q8_K *y = a;
    const uint8x16_t m4 = vdupq_n_u8(0xF), m2 = vdupq_n_u8(3);
    const int8x16_t off = vdupq_n_s8(32);
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = acc0;
    float l[8];
    for (int i = 0; i < n / QK_K; i++) {
        int32x4_t sl[2] = {vdupq_n_s32(0), vdupq_n_s32(0)}; /* lanes 0-3, 4-7 */
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            for (int c = 0; c < 4; c++)
                for (int k = 0; k < 2; k++) { /* elements l = 16k .. 16k + 15 */
                    int g = 8 * h + 2 * c + k;
                    uint8x16_t lo = vld1q_u8(ql + 16 * k + ((c & 1) ? 32 : 0));
                    uint8x16_t hi = vld1q_u8(qh + 16 * k);
                    lo = (c & 2) ? vshrq_n_u8(lo, 4) : vandq_u8(lo, m4);
                    hi = vandq_u8(vshlq_u8(hi, vdupq_n_s8((int8_t)(-2 * c))), m2);
                    int8x16_t v =
                        vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, vshlq_n_u8(hi, 4))), off);
                    sl[k] = vmlaq_n_s32(sl[k], dot16(vdupq_n_s32(0), v, vld1q_s8(y[i].qs + 16 * g)),
                                        x[i].scales[g]);
                }
        }
        acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(sl[0]), y[i].d * fp16_to_f32(x[i].d));
        acc1 = vfmaq_n_f32(acc1, vcvtq_f32_s32(sl[1]), y[i].d * fp16_to_f32(x[i].d));
    }
    vst1q_f32(l, acc0);
    vst1q_f32(l + 4, acc1);
    return eng_lanes8_sum(l);
}

/* ---- the table ---- */

#if defined(__ARM_FEATURE_DOTPROD)
#define KERNELS_NAME "neon+dotprod"
void eng_kernels_neon_dot(struct eng_kernels *k)
#else
#define KERNELS_NAME "neon"
void eng_kernels_neon(struct eng_kernels *k)
#endif
{
    k->name = KERNELS_NAME;
    k->axpy_f16 = axpy_f16_neon;
    k->vec_dot[GGUF_T_F32] = dot_f32;
    k->vec_dot[GGUF_T_F16] = dot_f16;
    k->vec_dot[GGUF_T_BF16] = dot_bf16;
    k->vec_dot[GGUF_T_Q8_0] = dot_q8_0_q8_0;
    k->vec_dot[GGUF_T_Q4_0] = dot_q4_0_q8_0;
    k->vec_dot[GGUF_T_Q4_K] = dot_q4_K_q8_K;
    k->vec_dot[GGUF_T_Q5_K] = dot_q5_K_q8_K;
    k->vec_dot[GGUF_T_Q6_K] = dot_q6_K_q8_K;
}
