/*
 * Scalar reference kernels: dequantization, activation conversion, dot
 * products and weight quantizers for every supported tensor type.
 *
 * These define the numerics, in the reference engine's order. SIMD paths
 * give the same floats for the quantized types (integer lanes of four
 * consecutive products, one FMA per lane and block; q4_0 one FMA chain
 * per row) and agree to rounding for f32/f16/bf16; tests/test_kernels.c
 * checks both.
 */
#include <math.h>
#include <stdlib.h>

#include "eng_int.h"

/* ---- dequantization ---- */

static void dequant_f32(const void *src, float *dst, int n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void dequant_f16(const void *src, float *dst, int n)
{
    const uint16_t *s = src;
    for (int i = 0; i < n; i++) dst[i] = fp16_to_f32(s[i]);
}

static void dequant_bf16(const void *src, float *dst, int n)
{
    const uint16_t *s = src;
    for (int i = 0; i < n; i++) dst[i] = bf16_to_f32(s[i]);
}

static void dequant_q8_0(const void *src, float *dst, int n)
{
    const block_q8_0 *b = src;
    for (int i = 0; i < n / QK8_0; i++) {
        float d = fp16_to_f32(b[i].d);
        for (int j = 0; j < QK8_0; j++) dst[i * QK8_0 + j] = d * b[i].qs[j];
    }
}

static void dequant_q8_0s(const void *src, float *dst, int n)
{
    int nb = n / QK8_0;
    const float *d = src;
    const int8_t *qs = (const int8_t *)(d + 2 * nb);
    for (int i = 0; i < n; i++) dst[i] = d[i / QK8_0] * qs[i];
}

static void dequant_q4_0(const void *src, float *dst, int n)
{
    const block_q4_0 *b = src;
    for (int i = 0; i < n / QK4_0; i++) {
        float d = fp16_to_f32(b[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            dst[i * QK4_0 + j] = d * ((b[i].qs[j] & 0xF) - 8);
            dst[i * QK4_0 + j + 16] = d * ((b[i].qs[j] >> 4) - 8);
        }
    }
}

static void dequant_q4_K(const void *src, float *dst, int n)
{
    const block_q4_K *b = src;
    for (int i = 0; i < n / QK_K; i++) {
        const uint8_t *q = b[i].qs;
        float d = fp16_to_f32(b[i].d), dmin = fp16_to_f32(b[i].dmin);
        for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, q += 32) {
            uint8_t sc, m;
            float d1, m1, d2, m2;
            get_scale_min_k4(is, b[i].scales, &sc, &m);
            d1 = d * sc, m1 = dmin * m;
            get_scale_min_k4(is + 1, b[i].scales, &sc, &m);
            d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *dst++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

static void dequant_q5_K(const void *src, float *dst, int n)
{
    const block_q5_K *b = src;
    for (int i = 0; i < n / QK_K; i++) {
        const uint8_t *ql = b[i].qs, *qh = b[i].qh;
        float d = fp16_to_f32(b[i].d), dmin = fp16_to_f32(b[i].dmin);
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, ql += 32) {
            uint8_t sc, m;
            float d1, m1, d2, m2;
            get_scale_min_k4(is, b[i].scales, &sc, &m);
            d1 = d * sc, m1 = dmin * m;
            get_scale_min_k4(is + 1, b[i].scales, &sc, &m);
            d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *dst++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

/* The 6-bit value of element e (0..255) of a q6_K block, before the -32. */
static inline int q6_value(const block_q6_K *b, int e)
{
    int h = e / 128, r = e % 128, c = r / 32, l = r % 32;
    const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
    int lo = (c & 1) ? ql[l + 32] : ql[l];
    lo = (c & 2) ? lo >> 4 : lo & 0xF;
    return lo | ((qh[l] >> (2 * c)) & 3) << 4;
}

static void dequant_q6_K(const void *src, float *dst, int n)
{
    const block_q6_K *b = src;
    for (int i = 0; i < n / QK_K; i++) {
        float d = fp16_to_f32(b[i].d);
        for (int e = 0; e < QK_K; e++) *dst++ = d * b[i].scales[e / 16] * (q6_value(&b[i], e) - 32);
    }
}

/* ---- activation conversion ---- */

static void to_f32(const float *x, void *dst, int n)
{
    memcpy(dst, x, (size_t)n * sizeof(float));
}

static void to_f16(const float *x, void *dst, int n)
{
    uint16_t *d = dst;
    for (int i = 0; i < n; i++) d[i] = f32_to_fp16(x[i]);
}

static void to_bf16(const float *x, void *dst, int n)
{
    uint16_t *d = dst;
    for (int i = 0; i < n; i++) d[i] = f32_to_bf16(x[i]);
}

void quantize_row_q8_0(const float *x, void *dst, int n)
{
    block_q8_0 *b = dst;
    for (int i = 0; i < n / QK8_0; i++, x += QK8_0) {
        float amax = 0, d, id;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        /* Scale by 127/amax and round half to even: the reference engine's
         * choice, and ties are common enough in real activations that a
         * different rule shows up in the logits. */
        d = amax / 127.f;
        id = amax != 0 ? 127.f / amax : 0.f;
        b[i].d = f32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++) b[i].qs[j] = (int8_t)lrintf(x[j] * id);
    }
}

void quantize_row_q8_0s(const float *x, void *dst, int n)
{
    int nb = n / QK8_0;
    float *d = dst, *sum = d + nb;
    int8_t *qs = (int8_t *)(sum + nb);
    for (int i = 0; i < nb; i++) {
        block_q8_0 b;
        int s = 0;
        quantize_row_q8_0(x + i * QK8_0, &b, QK8_0);
        d[i] = fp16_to_f32(b.d); /* the f16-rounded scale, as q8_0 stores it */
        memcpy(qs + i * QK8_0, b.qs, QK8_0);
        for (int j = 0; j < QK8_0; j++) s += b.qs[j];
        sum[i] = (float)s;
    }
}

/* q8_K keeps the scale in f32 and maps the value of largest magnitude to
 * -127 exactly (its sign folded into d), so the others stay within +-127. */
void quantize_row_q8_K(const float *x, void *dst, int n)
{
    block_q8_K *b = dst;
    for (int i = 0; i < n / QK_K; i++, x += QK_K) {
        float amax = 0, max = 0, iscale;
        for (int j = 0; j < QK_K; j++) {
            float ax = fabsf(x[j]);
            if (ax > amax) amax = ax, max = x[j];
        }
        if (amax == 0) {
            memset(&b[i], 0, sizeof(b[i]));
            continue;
        }
        iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) {
            int v = (int)lrintf(iscale * x[j]);
            b[i].qs[j] = (int8_t)(v > 127 ? 127 : v);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += b[i].qs[16 * j + l];
            b[i].bsums[j] = (int16_t)s;
        }
        b[i].d = 1 / iscale;
    }
}

/* ---- dot products ---- */

static float dot_f32(int n, const void *w, const void *a)
{
    const float *x = w, *y = a;
    float s = 0;
    for (int i = 0; i < n; i++) s += x[i] * y[i];
    return s;
}

static float dot_f16(int n, const void *w, const void *a)
{
    const uint16_t *x = w, *y = a;
    float s = 0;
    for (int i = 0; i < n; i++) s += fp16_to_f32(x[i]) * fp16_to_f32(y[i]);
    return s;
}

static float dot_bf16(int n, const void *w, const void *a)
{
    const uint16_t *x = w, *y = a;
    float s = 0;
    for (int i = 0; i < n; i++) s += bf16_to_f32(x[i]) * bf16_to_f32(y[i]);
    return s;
}

static float dot_q8_0_q8_0(int n, const void *w, const void *a)
{
    const block_q8_0 *x = w;
    int nb = n / QK8_0;
    const float *yd = a;
    const int8_t *yq = (const int8_t *)(yd + 2 * nb);
    float acc[8] = {0};
    for (int i = 0; i < nb; i++) {
        float d = fp16_to_f32(x[i].d) * yd[i];
        for (int l = 0; l < 8; l++) {
            int sum = 0;
            for (int j = 4 * l; j < 4 * l + 4; j++) sum += x[i].qs[j] * yq[i * QK8_0 + j];
            acc[l] = fmaf(d, (float)sum, acc[l]);
        }
    }
    return eng_lanes8_sum(acc);
}

/* q4_0 in the order of the reference's repacked q4_0 kernels (the ones it
 * runs for every matrix whose rows come in eights): each block's exact
 * integer sum (the -8 offset included) enters one running sum with one
 * fused multiply-add by the product of the two scales, block after block. */
static float dot_q4_0_q8_0(int n, const void *w, const void *a)
{
    const block_q4_0 *x = w;
    int nb = n / QK4_0;
    const float *yd = a, *ysum = yd + nb;
    const int8_t *yq = (const int8_t *)(ysum + nb);
    float s = 0;
    for (int i = 0; i < nb; i++) {
        int sum = -8 * (int)ysum[i];
        for (int j = 0; j < 16; j++) {
            sum += (x[i].qs[j] & 0xF) * yq[i * QK4_0 + j];
            sum += (x[i].qs[j] >> 4) * yq[i * QK4_0 + j + 16];
        }
        s = fmaf((float)sum, fp16_to_f32(x[i].d) * yd[i], s);
    }
    return s;
}

/* The k-quants in the reference's AVX2 order. Each 32-element stretch of a
 * block is cut into eight lanes of four consecutive elements; lane k sums,
 * as an exact integer over the whole block, scale * (its four products) of
 * every stretch; the eight lanes are converted and accumulated with one
 * fused multiply-add each by d (the two scales' product), block after
 * block, and summed as eng_lanes8_sum does. The q4_K minimums go into four
 * lanes of pairs of sub-blocks with the negated scale, summed at the end
 * as (m0 + m2) + (m1 + m3); q5_K's into one running sum. */
static float dot_q4_K_q8_K(int n, const void *w, const void *a)
{
    const block_q4_K *x = w;
    const block_q8_K *y = a;
    float acc[8] = {0}, accm[4] = {0};
    for (int i = 0; i < n / QK_K; i++) {
        int lane[8] = {0}, mins[4] = {0};
        float d = y[i].d * fp16_to_f32(x[i].d), dmin = -y[i].d * fp16_to_f32(x[i].dmin);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            const int8_t *q8 = y[i].qs + 32 * j;
            get_scale_min_k4(j, x[i].scales, &sc, &m);
            for (int k = 0; k < 8; k++) {
                int sub = 0;
                for (int l = 4 * k; l < 4 * k + 4; l++)
                    sub += ((j & 1) ? q[l] >> 4 : q[l] & 0xF) * q8[l];
                lane[k] += sc * sub;
            }
            mins[j / 2] += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        for (int k = 0; k < 8; k++) acc[k] = fmaf(d, (float)lane[k], acc[k]);
        for (int k = 0; k < 4; k++) accm[k] = fmaf(dmin, (float)mins[k], accm[k]);
    }
    return eng_lanes8_sum(acc) + ((accm[0] + accm[2]) + (accm[1] + accm[3]));
}

static float dot_q5_K_q8_K(int n, const void *w, const void *a)
{
    const block_q5_K *x = w;
    const block_q8_K *y = a;
    float acc[8] = {0}, summ = 0;
    for (int i = 0; i < n / QK_K; i++) {
        int lane[8] = {0}, mins = 0;
        float d = y[i].d * fp16_to_f32(x[i].d), dmin = -y[i].d * fp16_to_f32(x[i].dmin);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            const int8_t *q8 = y[i].qs + 32 * j;
            get_scale_min_k4(j, x[i].scales, &sc, &m);
            for (int k = 0; k < 8; k++) {
                int sub = 0;
                for (int l = 4 * k; l < 4 * k + 4; l++) {
                    int v = ((j & 1) ? q[l] >> 4 : q[l] & 0xF) + ((x[i].qh[l] >> j) & 1) * 16;
                    sub += v * q8[l];
                }
                lane[k] += sc * sub;
            }
            mins += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        for (int k = 0; k < 8; k++) acc[k] = fmaf(d, (float)lane[k], acc[k]);
        summ = fmaf(dmin, (float)mins, summ);
    }
    return eng_lanes8_sum(acc) + summ;
}

/* q6_K in the same lanes; the scale of lane k in stretch c is that of
 * elements 32c + 4k: scales[2c] for k < 4, scales[2c + 1] after. */
static float dot_q6_K_q8_K(int n, const void *w, const void *a)
{
    const block_q6_K *x = w;
    const block_q8_K *y = a;
    float acc[8] = {0};
    for (int i = 0; i < n / QK_K; i++) {
        int lane[8] = {0};
        float d = y[i].d * fp16_to_f32(x[i].d);
        for (int c = 0; c < 8; c++)
            for (int k = 0; k < 8; k++) {
                int sub = 0;
                for (int e = 32 * c + 4 * k; e < 32 * c + 4 * k + 4; e++)
                    sub += (q6_value(&x[i], e) - 32) * y[i].qs[e];
                lane[k] += x[i].scales[2 * c + (k >= 4)] * sub;
            }
        for (int k = 0; k < 8; k++) acc[k] = fmaf(d, (float)lane[k], acc[k]);
    }
    return eng_lanes8_sum(acc);
}

static void axpy_f16(int n, float a, const uint16_t *x, float *y)
{
    for (int i = 0; i < n; i++) y[i] += a * fp16_to_f32(x[i]);
}

/* exp(x) for x <= 0 as the reference engine's vectorized exp computes it
 * (and kern_avx2.c's exp_neg, step for step): n = round(x log2 e), r =
 * x - n ln 2 in two parts, a degree-6 polynomial, 2^n put into the
 * exponent; 0 below -87. About an ulp from expf, and that ulp can move a
 * probability across an f16 rounding boundary. */
static float exp_neg(float x)
{
    int zero = x < -87.0f;
    float n, r, p;
    uint32_t bits;
    x = fmaxf(x, -87.0f);
    n = nearbyintf(x * 1.44269504088896341f);
    r = fmaf(-n, 0.693359375f, x);
    r = fmaf(-n, -2.12194440e-4f, r);
    p = 1.0f / 720;
    p = fmaf(p, r, 1.0f / 120);
    p = fmaf(p, r, 1.0f / 24);
    p = fmaf(p, r, 1.0f / 6);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    memcpy(&bits, &p, 4);
    bits += (uint32_t)(int32_t)n << 23;
    memcpy(&p, &bits, 4);
    return zero ? 0.0f : p;
}

/* One position's score: eight lanes (dimension c goes to lane c % 8), each
 * a chain of fused multiply-adds, summed as ((l0+l1)+(l2+l3))+((l4+l5)+
 * (l6+l7)) for positions in whole groups of eight and in eng_lanes8_sum's
 * order for the rest: the order the SIMD sets reduce them in. */
static float score(int hd, const uint16_t *kr, const uint16_t *q16, int grouped)
{
    float l[8] = {0};
    for (int c = 0; c < hd; c++) l[c % 8] = fmaf(fp16_to_f32(kr[c]), fp16_to_f32(q16[c]), l[c % 8]);
    return grouped ? ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
                   : eng_lanes8_sum(l);
}

/* Reference attention, in the order of the reference engine's f16 KV path
 * as kern_avx2.c computes it, so that every kernel set gives one answer:
 * scores as above; exp_neg for positions in groups of eight, expf for the
 * rest; their sum in double, lanes 0-3 and 4-7 apart, then together;
 * probabilities multiplied by the f32 inverse of the sum and rounded
 * through f16; V accumulated position by position with fused
 * multiply-adds. */
static void attn_head(const struct eng_attn *a)
{
    const int hd = a->hd, n_pos = a->n_pos;
    float *sc = a->sc, *out = a->out, max = -INFINITY, inv;
    double s[8] = {0}, sum;
    int g = n_pos / 8 * 8; /* positions in whole groups of eight */
    for (int p = 0; p < n_pos; p++)
        sc[p] = score(hd, a->k + eng_attn_slot(a, p) * a->stride, a->q16, p < g) * a->scale;
    eng_attn_cap(a);
    for (int p = 0; p < n_pos; p++)
        if (sc[p] > max) max = sc[p];
    for (int p = 0; p < g; p++) s[p % 8] += (double)(sc[p] = exp_neg(sc[p] - max));
    sum = ((s[0] + s[4]) + (s[1] + s[5])) + (s[2] + s[6]) + (s[3] + s[7]);
    for (int p = g; p < n_pos; p++) sum += (double)(sc[p] = expf(sc[p] - max));
    inv = (float)(1.0 / sum);
    for (int p = 0; p < n_pos; p++) sc[p] = fp16_to_f32(f32_to_fp16(sc[p] * inv));
    memset(out, 0, (size_t)hd * sizeof(float));
    for (int p = 0; p < n_pos; p++) {
        const uint16_t *vr = a->v + eng_attn_slot(a, p) * a->stride;
        for (int c = 0; c < hd; c++) out[c] = fmaf(sc[p], fp16_to_f32(vr[c]), out[c]);
    }
}

/* ---- weight quantizers ---- */

void quantize_row_q4_0(const float *x, void *dst, int n)
{
    block_q4_0 *b = dst;
    for (int i = 0; i < n / QK4_0; i++, x += QK4_0) {
        float amax = 0, max = 0, d, id;
        for (int j = 0; j < QK4_0; j++)
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
        /* The extreme value maps to -8, the one level without a mirror. */
        d = max / -8;
        id = d ? 1.0f / d : 0.0f;
        b[i].d = f32_to_fp16(d);
        for (int j = 0; j < 16; j++) {
            int q0 = (int)floorf(x[j] * id + 8.5f), q1 = (int)floorf(x[j + 16] * id + 8.5f);
            q0 = q0 < 0 ? 0 : q0 > 15 ? 15 : q0;
            q1 = q1 < 0 ? 0 : q1 > 15 ? 15 : q1;
            b[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

/* Fits x ~ scale * q - min for q in [0, nmax] over n values, minimising the
 * squared error over a small grid of candidate scales around (max-min)/nmax.
 * Returns the scale; writes min (>= 0 means subtracting) and the levels. */
static float fit_affine(const float *x, int n, int nmax, float *min_out, uint8_t *q)
{
    float lo = x[0], hi = x[0], best_err = INFINITY, best_s = 0, best_m = 0;
    for (int i = 1; i < n; i++) lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
    if (lo > 0) lo = 0; /* mins are stored as non-negative offsets */
    if (hi == lo) {
        for (int i = 0; i < n; i++) q[i] = 0;
        *min_out = -lo;
        return 0;
    }
    for (int step = -6; step <= 6; step++) {
        float s = (hi - lo) / (nmax + 0.1f * step), is = 1 / s, err = 0;
        float sum_q = 0, sum_qq = 0, sum_x = 0, sum_qx = 0, det, m, sc;
        /* Quantize with this scale, then solve least squares for (scale, min). */
        for (int i = 0; i < n; i++) {
            int l = (int)lrintf((x[i] - lo) * is);
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            sum_q += l, sum_qq += (float)l * l, sum_x += x[i], sum_qx += l * x[i];
        }
        det = n * sum_qq - sum_q * sum_q;
        if (det > 0) {
            sc = (n * sum_qx - sum_q * sum_x) / det;
            m = (sum_qq * sum_x - sum_q * sum_qx) / det;
        } else {
            sc = s, m = lo;
        }
        if (m > 0) m = 0, sc = sum_qq > 0 ? sum_qx / sum_qq : s;
        if (sc <= 0) continue;
        for (int i = 0; i < n; i++) {
            int l = (int)lrintf((x[i] - m) / sc);
            float e;
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            e = sc * l + m - x[i];
            err += e * e;
        }
        if (err < best_err) best_err = err, best_s = sc, best_m = m;
    }
    if (best_s == 0) best_s = (hi - lo) / nmax, best_m = lo;
    for (int i = 0; i < n; i++) {
        int l = (int)lrintf((x[i] - best_m) / best_s);
        q[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
    }
    *min_out = -best_m;
    return best_s;
}

/* Shared by q4_K and q5_K: 8 sub-blocks of 32, 6-bit scales and mins. Writes
 * d, dmin, the packed scales and the levels L[256] (0..nmax). */
static void quantize_kq(const float *x, int nmax, uint16_t *d_out, uint16_t *dmin_out,
                        uint8_t scales[12], uint8_t L[QK_K])
{
    float sc[8], mn[8], max_sc = 0, max_mn = 0, d, dmin;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        sc[j] = fit_affine(x + 32 * j, 32, nmax, &mn[j], L + 32 * j);
        max_sc = fmaxf(max_sc, sc[j]);
        max_mn = fmaxf(max_mn, mn[j]);
    }
    d = max_sc / 63.f;
    dmin = max_mn / 63.f;
    for (int j = 0; j < 8; j++) {
        int a = d ? (int)lrintf(sc[j] / d) : 0, b = dmin ? (int)lrintf(mn[j] / dmin) : 0;
        ls[j] = (uint8_t)(a < 0 ? 0 : a > 63 ? 63 : a);
        lm[j] = (uint8_t)(b < 0 ? 0 : b > 63 ? 63 : b);
    }
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            scales[j] = ls[j];
            scales[j + 4] = lm[j];
        } else {
            scales[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            scales[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            scales[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
    *d_out = f32_to_fp16(d);
    *dmin_out = f32_to_fp16(dmin);
    /* Re-quantize with the rounded scales so levels match what is stored. */
    d = fp16_to_f32(*d_out);
    dmin = fp16_to_f32(*dmin_out);
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        float ds, dm;
        get_scale_min_k4(j, scales, &s, &m);
        ds = d * s, dm = dmin * m;
        for (int l = 0; l < 32; l++) {
            int q = ds ? (int)lrintf((x[32 * j + l] + dm) / ds) : 0;
            L[32 * j + l] = (uint8_t)(q < 0 ? 0 : q > nmax ? nmax : q);
        }
    }
}

void quantize_row_q4_K(const float *x, void *dst, int n)
{
    block_q4_K *b = dst;
    uint8_t L[QK_K];
    for (int i = 0; i < n / QK_K; i++, x += QK_K) {
        memset(b[i].scales, 0, sizeof(b[i].scales));
        quantize_kq(x, 15, &b[i].d, &b[i].dmin, b[i].scales, L);
        for (int j = 0; j < QK_K; j += 64)
            for (int l = 0; l < 32; l++)
                b[i].qs[j / 2 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 4);
    }
}

void quantize_row_q5_K(const float *x, void *dst, int n)
{
    block_q5_K *b = dst;
    uint8_t L[QK_K];
    for (int i = 0; i < n / QK_K; i++, x += QK_K) {
        memset(b[i].scales, 0, sizeof(b[i].scales));
        memset(b[i].qh, 0, sizeof(b[i].qh));
        quantize_kq(x, 31, &b[i].d, &b[i].dmin, b[i].scales, L);
        for (int j = 0, g = 0; j < QK_K; j += 64, g += 2) {
            for (int l = 0; l < 32; l++) {
                int lo = L[j + l], hi = L[j + l + 32];
                b[i].qs[j / 2 + l] = (uint8_t)((lo & 0xF) | (hi & 0xF) << 4);
                b[i].qh[l] |= (uint8_t)(((lo >> 4) << g) | ((hi >> 4) << (g + 1)));
            }
        }
    }
}

void quantize_row_q6_K(const float *x, void *dst, int n)
{
    block_q6_K *b = dst;
    for (int i = 0; i < n / QK_K; i++, x += QK_K) {
        float scale[16], max_abs_scale = 0, max_scale = 0, d, id;
        int8_t L[QK_K];
        for (int g = 0; g < 16; g++) {
            float amax = 0, max = 0;
            for (int l = 0; l < 16; l++)
                if (fabsf(x[16 * g + l]) > amax) amax = fabsf(x[16 * g + l]), max = x[16 * g + l];
            scale[g] = max / -32.f; /* extreme value maps to -32 */
            if (fabsf(scale[g]) > max_abs_scale)
                max_abs_scale = fabsf(scale[g]), max_scale = scale[g];
        }
        memset(&b[i], 0, sizeof(b[i]));
        if (max_abs_scale == 0) continue;
        id = -128.f / max_scale;
        d = 1 / id;
        b[i].d = f32_to_fp16(d);
        d = fp16_to_f32(b[i].d);
        for (int g = 0; g < 16; g++) {
            int s = (int)lrintf(id * scale[g]);
            float ds;
            b[i].scales[g] = (int8_t)(s < -128 ? -128 : s > 127 ? 127 : s);
            ds = d * b[i].scales[g];
            for (int l = 0; l < 16; l++) {
                int q = ds ? (int)lrintf(x[16 * g + l] / ds) : 0;
                L[16 * g + l] = (int8_t)((q < -32 ? -32 : q > 31 ? 31 : q) + 32);
            }
        }
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            const int8_t *Lh = L + 128 * h;
            for (int l = 0; l < 32; l++) {
                int q1 = Lh[l], q2 = Lh[l + 32], q3 = Lh[l + 64], q4 = Lh[l + 96];
                ql[l] = (uint8_t)((q1 & 0xF) | (q3 & 0xF) << 4);
                ql[l + 32] = (uint8_t)((q2 & 0xF) | (q4 & 0xF) << 4);
                qh[l] = (uint8_t)((q1 >> 4) | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
            }
        }
    }
}

/* ---- tables ---- */

void eng_kernels_ref(struct eng_kernels *k)
{
    memset(k, 0, sizeof(*k));
    k->name = "scalar";
    k->dequant[GGUF_T_F32] = dequant_f32;
    k->dequant[GGUF_T_F16] = dequant_f16;
    k->dequant[GGUF_T_BF16] = dequant_bf16;
    k->dequant[GGUF_T_Q8_0] = dequant_q8_0;
    k->dequant[GGUF_T_Q4_0] = dequant_q4_0;
    k->dequant[ENG_ACT_Q8_0S] = dequant_q8_0s;
    k->dequant[GGUF_T_Q4_K] = dequant_q4_K;
    k->dequant[GGUF_T_Q5_K] = dequant_q5_K;
    k->dequant[GGUF_T_Q6_K] = dequant_q6_K;

    k->axpy_f16 = axpy_f16;
    k->attn_head = attn_head;
    k->to_act[GGUF_T_F32] = to_f32;
    k->to_act[GGUF_T_F16] = to_f16;
    k->to_act[GGUF_T_BF16] = to_bf16;
    k->to_act[GGUF_T_Q8_0] = quantize_row_q8_0;
    k->to_act[ENG_ACT_Q8_0S] = quantize_row_q8_0s;
    k->to_act[GGUF_T_Q8_K] = quantize_row_q8_K;

    k->vec_dot[GGUF_T_F32] = dot_f32, k->act_type[GGUF_T_F32] = GGUF_T_F32;
    k->vec_dot[GGUF_T_F16] = dot_f16, k->act_type[GGUF_T_F16] = GGUF_T_F16;
    k->vec_dot[GGUF_T_BF16] = dot_bf16, k->act_type[GGUF_T_BF16] = GGUF_T_BF16;
    k->vec_dot[GGUF_T_Q8_0] = dot_q8_0_q8_0, k->act_type[GGUF_T_Q8_0] = ENG_ACT_Q8_0S;
    k->vec_dot[GGUF_T_Q4_0] = dot_q4_0_q8_0, k->act_type[GGUF_T_Q4_0] = ENG_ACT_Q8_0S;
    k->vec_dot[GGUF_T_Q4_K] = dot_q4_K_q8_K, k->act_type[GGUF_T_Q4_K] = GGUF_T_Q8_K;
    k->vec_dot[GGUF_T_Q5_K] = dot_q5_K_q8_K, k->act_type[GGUF_T_Q5_K] = GGUF_T_Q8_K;
    k->vec_dot[GGUF_T_Q6_K] = dot_q6_K_q8_K, k->act_type[GGUF_T_Q6_K] = GGUF_T_Q8_K;
}
