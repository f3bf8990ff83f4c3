/*
 * Quantization recipes and synthetic models.
 *
 * The recipes follow the common mixes so files compare with those other
 * tools make: q4_0 and the k-quant mixes keep the output matrix in q6_K, and
 * q4_k_m/q5_k_m give attn_v and ffn_down q6_K in the first and last eighth
 * of the layers and every third layer between.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "eng_int.h"

static const struct {
    const char *name;
    enum eng_qmix mix;
    uint32_t ftype;
} mixes[] = {
    {"q8_0", ENG_QMIX_Q8_0, 7},      {"q4_0", ENG_QMIX_Q4_0, 2},  {"q4_k_m", ENG_QMIX_Q4_K_M, 15},
    {"q5_k_m", ENG_QMIX_Q5_K_M, 17}, {"q6_k", ENG_QMIX_Q6_K, 18},
};

int eng_qmix_from_name(const char *name, enum eng_qmix *out)
{
    for (size_t i = 0; i < sizeof(mixes) / sizeof(mixes[0]); i++)
        if (!strcmp(name, mixes[i].name)) {
            *out = mixes[i].mix;
            return 0;
        }
    return CIT_ENOENT;
}

uint32_t eng_qmix_file_type(enum eng_qmix mix)
{
    for (size_t i = 0; i < sizeof(mixes) / sizeof(mixes[0]); i++)
        if (mixes[i].mix == mix) return mixes[i].ftype;
    return 0;
}

static int more_bits(int layer, int n_layer)
{
    return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

uint32_t eng_qmix_pick(enum eng_qmix mix, const char *name, uint32_t n_dims, uint64_t ne0,
                       uint32_t src_type, int n_layer, int tied)
{
    uint32_t want;
    int layer = -1;
    int is_output = !strcmp(name, "output.weight") || (tied && !strcmp(name, "token_embd.weight"));
    if (n_dims < 2) return GGUF_T_F32;
    if (sscanf(name, "blk.%d.", &layer) != 1) layer = -1;
    switch (mix) {
    case ENG_QMIX_Q8_0:
        want = GGUF_T_Q8_0;
        break;
    case ENG_QMIX_Q4_0:
        want = is_output ? GGUF_T_Q6_K : GGUF_T_Q4_0;
        break;
    case ENG_QMIX_Q6_K:
        want = GGUF_T_Q6_K;
        break;
    default:
        want = mix == ENG_QMIX_Q4_K_M ? GGUF_T_Q4_K : GGUF_T_Q5_K;
        if (is_output || ((strstr(name, "attn_v.weight") || strstr(name, "ffn_down.weight")) &&
                          layer >= 0 && more_bits(layer, n_layer)))
            want = GGUF_T_Q6_K;
        break;
    }
    if (ne0 % gguf_type_info(want)->blck) want = GGUF_T_Q8_0;
    if (ne0 % QK8_0) want = src_type;
    return want;
}

int eng_quantize_row(uint32_t t, const float *x, void *dst, int n)
{
    const struct eng_kernels *k = eng_kernels_get();
    switch (t) {
    case GGUF_T_F32:
        memcpy(dst, x, (size_t)n * sizeof(float));
        return 0;
    case GGUF_T_F16:
        k->to_act[GGUF_T_F16](x, dst, n);
        return 0;
    case GGUF_T_BF16:
        k->to_act[GGUF_T_BF16](x, dst, n);
        return 0;
    case GGUF_T_Q8_0:
        quantize_row_q8_0(x, dst, n);
        return 0;
    case GGUF_T_Q4_0:
        quantize_row_q4_0(x, dst, n);
        return 0;
    case GGUF_T_Q4_K:
        quantize_row_q4_K(x, dst, n);
        return 0;
    case GGUF_T_Q5_K:
        quantize_row_q5_K(x, dst, n);
        return 0;
    case GGUF_T_Q6_K:
        quantize_row_q6_K(x, dst, n);
        return 0;
    default:
        return CIT_ENOTSUP;
    }
}

/* ---- synthetic models ---- */

struct synth_tensor {
    uint32_t type;
    int64_t ne0, ne1;
    uint64_t seed;
    float scale, offset; /* values are offset + scale * uniform(-1, 1) */
    struct cit_pool *pool;
};

struct synth_job {
    const struct synth_tensor *t;
    uint8_t *dst;
    _Atomic int rc;
};

static void synth_rows(void *arg, int ith, int nth)
{
    struct synth_job *j = arg;
    const struct synth_tensor *t = j->t;
    size_t rb = eng_row_bytes(t->type, t->ne0);
    float *row = cit_malloc((size_t)t->ne0 * sizeof(float));
    if (!row) {
        j->rc = CIT_ENOMEM;
        return;
    }
    for (int64_t r = ith; r < t->ne1; r += nth) {
        /* Per-row seed: the same file whatever the thread count. */
        uint64_t s = t->seed ^ ((uint64_t)r * 0x9e3779b97f4a7c15ull);
        for (int64_t i = 0; i < t->ne0; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            row[i] = t->offset + ((float)(s >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * t->scale;
        }
        if (eng_quantize_row(t->type, row, (uint8_t *)j->dst + (size_t)r * rb, (int)t->ne0))
            j->rc = CIT_ENOTSUP;
    }
    cit_free(row);
}

static int synth_fill(void *ctx, const char *name, void *dst, size_t size)
{
    struct synth_job j = {ctx, dst, 0};
    (void)name;
    (void)size;
    cit_pool_run(((const struct synth_tensor *)ctx)->pool, synth_rows, &j);
    return j.rc;
}

int eng_synth_write(const char *path, const struct eng_synth_spec *sp, struct cit_pool *pool,
                    struct cit_err *err)
{
    struct gguf_writer *w = NULL;
    struct synth_tensor *ts = NULL;
    struct gguf_str *toks = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    char *text = NULL, key[128], name[96];
    int nt = 0, rc = 0, hd, max_t;
    int qwen = !strcmp(sp->arch, "qwen2"), qwen3 = !strcmp(sp->arch, "qwen3");
    int bert = !strcmp(sp->arch, "bert");
    const int TXT = 16;

    if (sp->n_vocab < 300 || sp->n_head <= 0 || sp->n_embd % sp->n_head ||
        sp->n_head % sp->n_head_kv || sp->n_layer <= 0 || sp->n_layer > 1000)
        return cit_err_set(err, CIT_EINVAL, "synth: inconsistent shape");
    hd = sp->n_embd / sp->n_head;
    if (sp->n_expert < 0 || sp->n_expert > 256 || sp->n_expert_used < 0 ||
        sp->n_expert_used > sp->n_expert || (sp->n_expert && !sp->n_expert_used) ||
        (sp->n_expert && (qwen || qwen3 || bert)) || (bert && sp->n_head_kv != sp->n_head))
        return cit_err_set(err, CIT_EINVAL, "synth: experts only in llama files, used <= count");
    max_t = 6 + sp->n_layer * 16;
    if ((rc = gguf_writer_new(&w))) goto out;
    ts = cit_calloc((size_t)max_t, sizeof(*ts));
    toks = cit_calloc((size_t)sp->n_vocab, sizeof(*toks));
    scores = cit_calloc((size_t)sp->n_vocab, sizeof(float));
    types = cit_calloc((size_t)sp->n_vocab, sizeof(int32_t));
    text = cit_calloc((size_t)sp->n_vocab, (size_t)TXT);
    if (!ts || !toks || !scores || !types || !text) {
        rc = CIT_ENOMEM;
        goto out;
    }
    /* Vocabulary: <unk> <s> </s>, the 256 byte tokens, "▁a".."▁z", then
     * placeholders. Enough for the tokenizer to handle any text. */
    for (int i = 0; i < sp->n_vocab; i++) {
        char *t = text + (size_t)i * (size_t)TXT;
        types[i] = ENG_TOK_NORMAL;
        if (i == 0)
            snprintf(t, (size_t)TXT, "<unk>"), types[i] = ENG_TOK_UNKNOWN;
        else if (i == 1)
            snprintf(t, (size_t)TXT, "<s>"), types[i] = ENG_TOK_CONTROL;
        else if (i == 2)
            snprintf(t, (size_t)TXT, "</s>"), types[i] = ENG_TOK_CONTROL;
        else if (i < 259)
            snprintf(t, (size_t)TXT, "<0x%02X>", i - 3), types[i] = ENG_TOK_BYTE;
        else if (i < 285)
            snprintf(t, (size_t)TXT, "\xe2\x96\x81%c", 'a' + (i - 259));
        else
            snprintf(t, (size_t)TXT, "t%d", i);
        toks[i].p = t;
        toks[i].n = strlen(t);
        scores[i] = -(float)i;
    }
    gguf_writer_set_str(w, "general.architecture", sp->arch);
    gguf_writer_set_str(w, "general.name", "citadel synthetic (random weights)");
#define HP(k, v)                                                                                   \
    do {                                                                                           \
        snprintf(key, sizeof(key), "%s.%s", sp->arch, k);                                          \
        if (!rc) rc = gguf_writer_set_u32(w, key, (uint32_t)(v));                                  \
    } while (0)
    HP("context_length", sp->n_ctx > 0 ? sp->n_ctx : 2048);
    HP("embedding_length", sp->n_embd);
    HP("block_count", sp->n_layer);
    HP("feed_forward_length", sp->n_ff);
    HP("attention.head_count", sp->n_head);
    HP("attention.head_count_kv", sp->n_head_kv);
    if (qwen3) HP("attention.key_length", hd);
    if (bert) HP("pooling_type", ENG_POOL_MEAN);
    if (sp->n_expert) {
        HP("expert_count", sp->n_expert);
        HP("expert_used_count", sp->n_expert_used);
    }
#undef HP
    snprintf(key, sizeof(key), "%s.attention.layer_norm_%sepsilon", sp->arch, bert ? "" : "rms_");
    if (!rc) rc = gguf_writer_set_f32(w, key, bert ? 1e-12f : 1e-5f);
    if (!rc) rc = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    if (!rc) rc = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)sp->n_vocab);
    if (!rc)
        rc = gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_V_FLOAT32, scores,
                                 (uint64_t)sp->n_vocab);
    if (!rc)
        rc = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_V_INT32, types,
                                 (uint64_t)sp->n_vocab);
    if (!rc && sp->use_mix)
        rc = gguf_writer_set_u32(w, "general.file_type", eng_qmix_file_type(sp->mix));

        /* A matrix of rows x cols, or n_mat of them stacked (experts: 3-D). */
#define ADD_N(nm, cols, rows, is_vec, n_mat)                                                       \
    do {                                                                                           \
        struct synth_tensor *t = &ts[nt];                                                          \
        uint64_t ne[3] = {(uint64_t)(cols), (uint64_t)(rows), (uint64_t)(n_mat)};                  \
        t->ne0 = cols, t->ne1 = (is_vec) ? 1 : (int64_t)(rows) * (n_mat), t->pool = pool;          \
        t->seed = sp->seed * 1000003ull + (uint64_t)nt * 7919ull + 1;                              \
        t->scale = (is_vec) ? 0.1f : 1.0f / 16.0f;                                                 \
        /* norm weights sit near 1 as in trained models; biases near 0 */                          \
        t->offset = strstr(nm, "norm.weight") ? 1.0f : 0.0f;                                       \
        /* vectors, the router and bert's looked-up embeddings are f32, as                         \
         * converters write them */                                                                \
        t->type = (is_vec) || strstr(nm, "ffn_gate_inp") || strstr(nm, "token_types") ||           \
                          strstr(nm, "position_embd")                                              \
                      ? GGUF_T_F32                                                                 \
                  : sp->use_mix ? eng_qmix_pick(sp->mix, nm, 2, (uint64_t)(cols), GGUF_T_F32,      \
                                                sp->n_layer, sp->tied)                             \
                                : sp->wtype;                                                       \
        if (!rc)                                                                                   \
            rc = gguf_writer_add_tensor_fn(w, nm, t->type,                                         \
                                           (is_vec)      ? 1                                       \
                                           : (n_mat) > 1 ? 3                                       \
                                                         : 2,                                      \
                                           ne, synth_fill, t);                                     \
        nt++;                                                                                      \
    } while (0)
#define ADD(nm, cols, rows, is_vec) ADD_N(nm, cols, rows, is_vec, 1)
    ADD("token_embd.weight", sp->n_embd, sp->n_vocab, 0);
    if (bert) { /* an encoder: embeddings summed under a LayerNorm, post-norm layers */
        const int E = sp->n_embd;
        ADD("token_types.weight", E, 2, 0);
        ADD("position_embd.weight", E, sp->n_ctx > 0 ? sp->n_ctx : 2048, 0);
        ADD("token_embd_norm.weight", E, 1, 1);
        ADD("token_embd_norm.bias", E, 1, 1);
        for (int l = 0; l < sp->n_layer; l++) {
            static const char *const sq[] = {"attn_q", "attn_k", "attn_v", "attn_output"};
            for (int i = 0; i < 4; i++) {
                snprintf(name, sizeof(name), "blk.%d.%s.weight", l, sq[i]);
                ADD(name, E, E, 0);
                snprintf(name, sizeof(name), "blk.%d.%s.bias", l, sq[i]);
                ADD(name, E, 1, 1);
            }
            snprintf(name, sizeof(name), "blk.%d.ffn_up.weight", l);
            ADD(name, E, sp->n_ff, 0);
            snprintf(name, sizeof(name), "blk.%d.ffn_up.bias", l);
            ADD(name, sp->n_ff, 1, 1);
            snprintf(name, sizeof(name), "blk.%d.ffn_down.weight", l);
            ADD(name, sp->n_ff, E, 0);
            snprintf(name, sizeof(name), "blk.%d.ffn_down.bias", l);
            ADD(name, E, 1, 1);
            static const char *const sn[] = {"attn_output_norm", "layer_output_norm"};
            for (int i = 0; i < 2; i++) {
                snprintf(name, sizeof(name), "blk.%d.%s.weight", l, sn[i]);
                ADD(name, E, 1, 1);
                snprintf(name, sizeof(name), "blk.%d.%s.bias", l, sn[i]);
                ADD(name, E, 1, 1);
            }
        }
        goto write;
    }
    ADD("output_norm.weight", sp->n_embd, 1, 1);
    if (!sp->tied) ADD("output.weight", sp->n_embd, sp->n_vocab, 0);
    for (int l = 0; l < sp->n_layer; l++) {
#define BLK(suffix) snprintf(name, sizeof(name), "blk.%d.%s", l, suffix)
        BLK("attn_norm.weight");
        ADD(name, sp->n_embd, 1, 1);
        BLK("ffn_norm.weight");
        ADD(name, sp->n_embd, 1, 1);
        BLK("attn_q.weight");
        ADD(name, sp->n_embd, sp->n_head * hd, 0);
        BLK("attn_k.weight");
        ADD(name, sp->n_embd, sp->n_head_kv * hd, 0);
        BLK("attn_v.weight");
        ADD(name, sp->n_embd, sp->n_head_kv * hd, 0);
        BLK("attn_output.weight");
        ADD(name, sp->n_head * hd, sp->n_embd, 0);
        if (sp->n_expert) {
            BLK("ffn_gate_inp.weight");
            ADD(name, sp->n_embd, sp->n_expert, 0);
            BLK("ffn_gate_exps.weight");
            ADD_N(name, sp->n_embd, sp->n_ff, 0, sp->n_expert);
            BLK("ffn_up_exps.weight");
            ADD_N(name, sp->n_embd, sp->n_ff, 0, sp->n_expert);
            BLK("ffn_down_exps.weight");
            ADD_N(name, sp->n_ff, sp->n_embd, 0, sp->n_expert);
        } else {
            BLK("ffn_gate.weight");
            ADD(name, sp->n_embd, sp->n_ff, 0);
            BLK("ffn_up.weight");
            ADD(name, sp->n_embd, sp->n_ff, 0);
            BLK("ffn_down.weight");
            ADD(name, sp->n_ff, sp->n_embd, 0);
        }
        if (qwen3) {
            BLK("attn_q_norm.weight");
            ADD(name, hd, 1, 1);
            BLK("attn_k_norm.weight");
            ADD(name, hd, 1, 1);
        }
        if (qwen) {
            BLK("attn_q.bias");
            ADD(name, sp->n_head * hd, 1, 1);
            BLK("attn_k.bias");
            ADD(name, sp->n_head_kv * hd, 1, 1);
            BLK("attn_v.bias");
            ADD(name, sp->n_head_kv * hd, 1, 1);
        }
#undef BLK
    }
write:
#undef ADD
#undef ADD_N
    if (rc) {
        rc = cit_err_set(err, rc, "synth: %s", cit_strerror(rc));
        goto out;
    }
    rc = gguf_writer_write(w, path, err);
out:
    if (rc == CIT_ENOMEM) cit_err_set(err, rc, "synth: out of memory");
    gguf_writer_free(w);
    cit_free(ts);
    cit_free(toks);
    cit_free(scores);
    cit_free(types);
    cit_free(text);
    return rc;
}
