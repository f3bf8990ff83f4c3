/*
 * Engine internals shared by the engine's files: quantized block layouts,
 * half-precision conversion, and the kernel table that picks a scalar or a
 * SIMD implementation at run time.
 *
 * Block layouts (the GGUF/ggml on-disk formats; QK = elements per block):
 *
 *   q8_0  (QK 32,  34 B): f16 d | i8 qs[32]                 x = d * q
 *   q4_0  (QK 32,  18 B): f16 d | u8 qs[16]                 x = d * (nibble - 8)
 *                         element j < 16 is the low nibble of qs[j],
 *                         element j + 16 the high nibble of qs[j]
 *   q4_K  (QK 256, 144 B): f16 d | f16 dmin | u8 scales[12] | u8 qs[128]
 *                         8 sub-blocks of 32 with 6-bit scale sc and min m:
 *                         x = d*sc * nibble - dmin*m; 64 elements per 32 bytes
 *                         of qs (low nibbles first 32, high nibbles next 32)
 *   q5_K  (QK 256, 176 B): f16 d | f16 dmin | u8 scales[12] | u8 qh[32] | u8 qs[128]
 *                         as q4_K plus a fifth bit: bit (2i) / (2i+1) of qh[l]
 *                         for the low / high half of the i-th 64-element group
 *   q6_K  (QK 256, 210 B): u8 ql[128] | u8 qh[64] | i8 scales[16] | f16 d
 *                         x = d * scales[e/16] * (6-bit q - 32)
 *   q8_K  (QK 256, 292 B): f32 d | i8 qs[256] | i16 bsums[16]   (activations only)
 *
 * The q4_K/q5_K 12-byte scale field packs 8 six-bit scales and 8 six-bit
 * mins: for j < 4, sc = s[j] & 63, m = s[j+4] & 63; for j >= 4,
 * sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4, m = (s[j+4] >> 4) | (s[j] >> 6) << 4.
 */
#ifndef CITADEL_ENG_INT_H
#define CITADEL_ENG_INT_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "citadel/gguf.h"

#define ENG_MAX_EXPERTS_USED 16

#define QK8_0 32
#define QK4_0 32
#define QK_K  256

typedef struct {
    uint16_t d;
    int8_t qs[QK8_0];
} block_q8_0;

typedef struct {
    uint16_t d;
    uint8_t qs[QK4_0 / 2];
} block_q4_0;

/* Activation-only "q8_0s": q8_0 values laid out for SIMD, a row of nb
 * blocks being
 *     float d[nb] | float sum[nb] | int8 qs[32 * nb]
 * (scales as f32, and each block's integer sum as a float). A q4_0 product
 * then feeds the unsigned nibbles to vpmaddubsw and takes 8 * sum off each
 * block's integer dot product (exact in f32) before its FMA. */
static inline size_t q8_0s_row_bytes(int n)
{
    return (size_t)(n / QK8_0) * (2 * sizeof(float) + QK8_0);
}

/* Internal activation type number, past the GGUF types. */
#define ENG_ACT_Q8_0S GGUF_T_COUNT
#define ENG_N_TYPES   (GGUF_T_COUNT + 1)

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[QK_K / 2];
} block_q4_K;

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;

typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
} block_q6_K;

typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;

_Static_assert(sizeof(block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(block_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(block_q5_K) == 176, "q5_K layout");
_Static_assert(sizeof(block_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(block_q8_K) == 292, "q8_K layout");

/* ---- half precision ---- */

static inline float fp16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    float f;
    if (exp == 0) {
        /* zero or subnormal: value = man * 2^-24 */
        f = (float)man * 5.9604644775390625e-8f;
        return sign ? -f : f;
    }
    if (exp == 31)
        bits = sign | 0x7f800000u | man << 13;
    else
        bits = sign | (exp + 112) << 23 | man << 13;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest even, with overflow to infinity and NaN kept NaN. */
static inline uint16_t f32_to_fp16(float f)
{
    uint32_t x, sign, mant;
    int32_t exp;
    memcpy(&x, &f, 4);
    sign = (x >> 16) & 0x8000;
    exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    mant = x & 0x7fffff;
    if (((x >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        uint32_t m, shift, half, r;
        if (exp < -10) return (uint16_t)sign;
        m = mant | 0x800000;
        shift = (uint32_t)(14 - exp);
        half = 1u << (shift - 1);
        r = m >> shift;
        if ((m & ((1u << shift) - 1)) > half || ((m & ((1u << shift) - 1)) == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    {
        uint32_t r = (uint32_t)exp << 10 | mant >> 13, rest = mant & 0x1fff;
        if (rest > 0x1000 || (rest == 0x1000 && (r & 1))) r++; /* may carry into exp: fine */
        return (uint16_t)(sign | r);
    }
}

static inline float bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 64); /* quiet NaN */
    return (uint16_t)((x + (0x7fff + ((x >> 16) & 1))) >> 16);
}

static inline void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* q8_0 and k-quant dot products: eight lanes, each the sum of four adjacent byte
 * products, scaled and accumulated with a fused multiply-add across
 * blocks, then summed as ((l4+l0)+(l6+l2))+((l5+l1)+(l7+l3)): the
 * reference engine's order. The integer sums are exact however they are
 * formed; the float steps are not, and a last-bit difference here can move
 * the next layer's 8-bit rounding and with it the logits by a tenth. */
static inline float eng_lanes8_sum(const float l[8])
{
    return ((l[4] + l[0]) + (l[6] + l[2])) + ((l[5] + l[1]) + (l[7] + l[3]));
}

/* ---- kernels ----
 *
 * vec_dot[t](n, w, a) is the dot product of one weight row of type t with
 * one activation row already converted to act_type[t] (n elements).
 * quantize_act[t] converts n f32 activations into that type. */
typedef float (*vec_dot_fn)(int n, const void *w, const void *a);
/* One weight row against four activation rows (a, a + stride, ...): the
 * weight block is unpacked once for four tokens during prefill. */
typedef void (*vec_dot4_fn)(int n, const void *w, const void *a, size_t stride, float out[4]);
/* tile_rows weight rows (w, w + w_stride, ...) times n_act activation rows
 * (a, a + a_stride, ...): out[t * out_stride + i] = row i . activation t.
 * For batches of at least TILE_MIN_ACT rows (or the set's tile_min). */
typedef void (*tile_fn)(int n, const void *w, size_t w_stride, const void *a, size_t a_stride,
                        int n_act, float *out, size_t out_stride);
#define TILE_MIN_ACT 8
/* Rewrites rows (a multiple of tile_rows) of a weight matrix into the
 * kernel set's packed layout (same size); ptile then multiplies one
 * packed group of tile_rows rows with any number of activation rows. */
typedef void (*repack_fn)(const void *src, size_t row_bytes, int n, int rows, void *dst);
typedef void (*ptile_fn)(int n, const void *group, const void *a, size_t a_stride, int n_act,
                         float *out, size_t out_stride);
typedef void (*to_act_fn)(const float *x, void *dst, int n);

/* One head of attention for one query over n_pos cached positions, held in
 * slots first, first + 1, ... of a cache of ring slots (wrapping to 0 after
 * ring - 1; a whole-context cache has ring >= first + n_pos). k and v point
 * at slot 0 of this head's slice, stride elements between slots; q16 is the
 * query in f16. Each score is multiplied by scale, then, when softcap > 0,
 * becomes softcap * tanh(score / softcap). sc is n_pos floats of scratch;
 * out (hd floats) receives the softmax-weighted sum of v. */
struct eng_attn {
    int hd, n_pos, first, ring;
    const uint16_t *q16, *k, *v;
    size_t stride;
    float scale, softcap;
    float *sc, *out;
};

/* The cache slot of the p-th position attended. */
static inline size_t eng_attn_slot(const struct eng_attn *a, int p)
{
    int s = a->first + p;
    return (size_t)(s >= a->ring ? s - a->ring : s);
}

/* The soft cap, as the reference computes it: multiplied by the f32
 * inverse, tanh, multiplied back. */
static inline float eng_softcap(float x, float inv_cap, float cap)
{
    return tanhf(x * inv_cap) * cap;
}

/* Applies a->softcap to the scores in a->sc, when there is one. */
static inline void eng_attn_cap(const struct eng_attn *a)
{
    if (a->softcap > 0) {
        const float inv = 1.0f / a->softcap;
        for (int p = 0; p < a->n_pos; p++) a->sc[p] = eng_softcap(a->sc[p], inv, a->softcap);
    }
}
typedef void (*dequant_fn)(const void *src, float *dst, int n);

struct eng_kernels {
    const char *name; /* "scalar", "avx2" */
    vec_dot_fn vec_dot[GGUF_T_COUNT];
    vec_dot4_fn vec_dot4[GGUF_T_COUNT]; /* optional */
    tile_fn tile[GGUF_T_COUNT];         /* optional */
    int tile_rows[GGUF_T_COUNT];        /* weight rows per tile call (8 or 16) */
    int tile_min[GGUF_T_COUNT];         /* fewest activation rows for tile; 0: TILE_MIN_ACT */
    repack_fn repack[GGUF_T_COUNT];     /* optional, with ptile */
    ptile_fn ptile[GGUF_T_COUNT];
    uint32_t act_type[GGUF_T_COUNT];
    to_act_fn to_act[ENG_N_TYPES]; /* indexed by activation type */
    dequant_fn dequant[ENG_N_TYPES];
    /* y[i] += a * x[i] for an f16 vector x (attention over the f16 V cache) */
    void (*axpy_f16)(int n, float a, const uint16_t *x, float *y);
    /* One head of attention for one query (struct eng_attn). */
    void (*attn_head)(const struct eng_attn *a);
};

/* The scalar reference set, always available. */
void eng_kernels_ref(struct eng_kernels *k);
/* Overrides entries with the AVX2+FMA versions (only called when the CPU has them). */
void eng_kernels_avx2(struct eng_kernels *k);
/* The same kernels built with AVX512-VNNI (vpdpbusd on 256-bit registers). */
void eng_kernels_avx2_vnni(struct eng_kernels *k);
/* AArch64: the NEON set (every AArch64 CPU has Advanced SIMD), and the
 * same built with the dot-product extension (SDOT). */
void eng_kernels_neon(struct eng_kernels *k);
void eng_kernels_neon_dot(struct eng_kernels *k);
/* CPU features, from CPUID and XGETBV (the OS must save the registers),
 * or on AArch64 from the kernel's hardware capabilities. */
int eng_cpu_has_avx2(void);       /* AVX2, FMA, F16C */
int eng_cpu_has_avx512vnni(void); /* AVX512 F, BW, VL and VNNI */
int eng_cpu_has_avx512bf16(void); /* and AVX512_BF16 (vdpbf16ps) */
int eng_cpu_has_dotprod(void);    /* AArch64 asimddp */
/* The best set for this CPU, chosen once; CITADEL_KERNELS=scalar forces the reference. */
const struct eng_kernels *eng_kernels_get(void);

/* Bytes of n elements of type t (n a multiple of its block size). */
static inline size_t eng_row_bytes(uint32_t t, int64_t n)
{
    const struct gguf_type_info *ti = gguf_type_info(t);
    return (size_t)(n / ti->blck) * ti->size;
}

/* Reference quantizers for whole rows (used by `model quantize` and tests). */
void quantize_row_q8_0(const float *x, void *dst, int n);
void quantize_row_q8_0s(const float *x, void *dst, int n);
void quantize_row_q4_0(const float *x, void *dst, int n);
void quantize_row_q8_K(const float *x, void *dst, int n);
void quantize_row_q4_K(const float *x, void *dst, int n);
void quantize_row_q5_K(const float *x, void *dst, int n);
void quantize_row_q6_K(const float *x, void *dst, int n);

/* ---- model internals ---- */

#include "citadel/engine.h"

/* A weight matrix as stored: rows of ne0 elements, ne1 rows. */
struct eng_tensor {
    uint32_t type;
    int64_t ne0, ne1;
    size_t row_bytes;
    const uint8_t *data; /* borrowed from the mapping */
    uint8_t *packed;     /* NULL, or the rows in the packed layout of groups of packed_rows */
    int packed_rows;
};

struct eng_layer {
    const float *attn_norm, *ffn_norm;     /* (n_embd); bert: the LayerNorms after each sublayer */
    const float *attn_norm_b, *ffn_norm_b; /* bert: their biases */
    const float *bo, *b_up, *b_down;       /* bert: output and FFN biases */
    const float *bq, *bk, *bv;             /* optional biases (qwen2) */
    const float *q_norm, *k_norm;          /* (head_dim), qwen3, gemma3 */
    const float *post_attn_norm, *post_ffn_norm; /* (n_embd), gemma */
    int swa;                                     /* attends through the sliding window */
    /* mixture of experts: the router (n_embd -> n_expert) and the experts'
     * matrices stacked, expert e's rows at e * (its rows) */
    struct eng_tensor router, exp_gate, exp_up, exp_down;
    struct eng_tensor sh_inp, sh_gate, sh_up, sh_down; /* qwen2moe's shared expert */
    struct eng_tensor wq, wk, wv, wo, w_gate, w_up, w_down;
};

struct eng_vocab_int; /* tokenizer tables, vocab.c */

struct eng_model {
    struct gguf_file *gguf;
    struct eng_hparams hp;
    const struct eng_kernels *kern;
    struct eng_tensor tok_embd, output;
    struct eng_tensor tok_types, pos_embd; /* bert: [n_embd, types], [n_embd, positions] */
    const float *embd_norm, *embd_norm_b;  /* bert: LayerNorm of the summed embeddings */
    const float *output_norm;
    const float *rope_freqs;             /* (n_rot / 2) divisors of the rope frequencies, or NULL */
    const float *rope_long, *rope_short; /* LongRoPE's divisors (phi3), or NULL */
    struct eng_layer *layers;
    struct eng_vocab_int *vocab;
    struct eng_vocab_info vinfo;
};

/* vocab.c: builds the tokenizer from the GGUF metadata, validating it. */
int eng_vocab_load(struct eng_model *m, struct cit_err *err);
void eng_vocab_free(struct eng_vocab_int *v);

/* ---- for tests and fuzz targets ---- */

/* Loads only the tokenizer (vocabulary-only GGUF files, tools). Such a model
 * can tokenize and detokenize but not be evaluated. */
int eng_model_load_vocab(const char *path, struct eng_model **out /* out */, struct cit_err *err);

/* Appends n tokens and runs the model over them (in batches). Writes the
 * logits of the last token into logits (n_vocab floats), or with
 * all_logits of every token ((n, n_vocab) floats). CIT_ERANGE when the
 * tokens do not fit in the context or an id is outside the vocabulary. */
int eng_seq_eval(struct eng_seq *s, struct cit_pool *pool, const int32_t *tokens, int n,
                 float *logits /* out */, int all_logits);

/* eng_seq_new with at most n_batch rows per pass (0: the default), which
 * also sizes the windowed layers' KV rings: tests use it to make them wrap. */
int eng_seq_new_batch(const struct eng_model *m, int n_ctx, int n_batch,
                      struct eng_seq **out /* out */);

/* Slots of K (and of V) the sequence's cache holds over all layers. */
size_t eng_seq_kv_slots(const struct eng_seq *s);

int eng_synth_write(const char *path, const struct eng_synth_spec *spec, struct cit_pool *pool,
                    struct cit_err *err);

#endif
