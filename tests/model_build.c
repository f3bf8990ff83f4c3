/* Builds small random models with the GGUF writer, for tests that need a
 * model the shared directory does not have (malformed, other shapes). */
#include <math.h>
#include <stdlib.h>

#include "../src/engine/eng_int.h"
#include "citadel/gguf.h"
#include "test.h"

struct fill_ctx {
    uint32_t type;
    int64_t ne0, ne1;
    uint64_t seed;
    float scale;
};

static int fill(void *ctx, const char *name, void *dst, size_t size)
{
    struct fill_ctx *c = ctx;
    uint64_t s = c->seed;
    float *row = malloc((size_t)c->ne0 * sizeof(float));
    size_t rb = eng_row_bytes(c->type, c->ne0);
    (void)name;
    if (!row) return CIT_ENOMEM;
    for (int64_t r = 0; r < c->ne1; r++) {
        uint8_t *d = (uint8_t *)dst + (size_t)r * rb;
        for (int64_t i = 0; i < c->ne0; i++) row[i] = t_randf(&s) * c->scale;
        switch (c->type) {
        case GGUF_T_F32: memcpy(d, row, rb); break;
        case GGUF_T_F16:
            for (int64_t i = 0; i < c->ne0; i++) ((uint16_t *)d)[i] = f32_to_fp16(row[i]);
            break;
        case GGUF_T_Q8_0: quantize_row_q8_0(row, d, (int)c->ne0); break;
        case GGUF_T_Q4_0: quantize_row_q4_0(row, d, (int)c->ne0); break;
        case GGUF_T_Q4_K: quantize_row_q4_K(row, d, (int)c->ne0); break;
        case GGUF_T_Q5_K: quantize_row_q5_K(row, d, (int)c->ne0); break;
        case GGUF_T_Q6_K: quantize_row_q6_K(row, d, (int)c->ne0); break;
        default: free(row); return CIT_ENOTSUP;
        }
    }
    (void)size;
    free(row);
    return 0;
}

int t_build_model(const char *path, const struct t_model_spec *sp)
{
    struct gguf_writer *w;
    struct fill_ctx ctx[256];
    int nctx = 0, rc = 0, hd = sp->n_embd / sp->n_head;
    char key[128], name[96];
    struct gguf_str *toks;
    float *scores;
    int32_t *types;
    char (*text)[16];
    struct cit_err err;

    if (gguf_writer_new(&w)) return CIT_ENOMEM;
    toks = calloc((size_t)sp->n_vocab, sizeof(*toks));
    scores = calloc((size_t)sp->n_vocab, sizeof(float));
    types = calloc((size_t)sp->n_vocab, sizeof(int32_t));
    text = calloc((size_t)sp->n_vocab, sizeof(*text));
    for (int i = 0; i < sp->n_vocab; i++) {
        if (i == 0) snprintf(text[i], 16, "<unk>"), types[i] = ENG_TOK_UNKNOWN;
        else if (i == 1) snprintf(text[i], 16, "<s>"), types[i] = ENG_TOK_CONTROL;
        else if (i == 2) snprintf(text[i], 16, "</s>"), types[i] = ENG_TOK_CONTROL;
        else if (i < 259) snprintf(text[i], 16, "<0x%02X>", i - 3), types[i] = ENG_TOK_BYTE;
        else if (i < 259 + 26) snprintf(text[i], 16, "\xe2\x96\x81%c", 'a' + (i - 259)), types[i] = ENG_TOK_NORMAL;
        else snprintf(text[i], 16, "t%d", i), types[i] = ENG_TOK_NORMAL;
        toks[i].p = text[i];
        toks[i].n = strlen(text[i]);
        scores[i] = -(float)i;
    }
    gguf_writer_set_str(w, "general.architecture", sp->arch);
#define HP(k, v) snprintf(key, sizeof(key), "%s.%s", sp->arch, k), gguf_writer_set_u32(w, key, (uint32_t)(v))
    HP("context_length", 256);
    HP("embedding_length", sp->n_embd);
    HP("block_count", sp->n_layer);
    HP("feed_forward_length", sp->n_ff);
    HP("attention.head_count", sp->n_head);
    HP("attention.head_count_kv", sp->n_head_kv);
#undef HP
    snprintf(key, sizeof(key), "%s.attention.layer_norm_rms_epsilon", sp->arch);
    gguf_writer_set_f32(w, key, 1e-5f);
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)sp->n_vocab);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_V_FLOAT32, scores, (uint64_t)sp->n_vocab);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_V_INT32, types, (uint64_t)sp->n_vocab);

#define MAT(nm, cols, rows, ty)                                                                  \
    do {                                                                                         \
        uint64_t ne[2] = {(uint64_t)(cols), (uint64_t)(rows)};                                   \
        ctx[nctx] = (struct fill_ctx){ty, cols, rows, sp->seed + (uint64_t)nctx * 7919, 0.5f};  \
        rc = rc ? rc : gguf_writer_add_tensor_fn(w, nm, ty, 2, ne, fill, &ctx[nctx]);           \
        nctx++;                                                                                  \
    } while (0)
#define VEC(nm, n)                                                                               \
    do {                                                                                         \
        uint64_t ne[1] = {(uint64_t)(n)};                                                        \
        ctx[nctx] = (struct fill_ctx){GGUF_T_F32, n, 1, sp->seed + (uint64_t)nctx * 7919, 0.1f}; \
        rc = rc ? rc : gguf_writer_add_tensor_fn(w, nm, GGUF_T_F32, 1, ne, fill, &ctx[nctx]);   \
        nctx++;                                                                                  \
    } while (0)
    MAT("token_embd.weight", sp->n_embd, sp->n_vocab, sp->wtype);
    VEC("output_norm.weight", sp->n_embd);
    if (!sp->tied) MAT("output.weight", sp->n_embd, sp->n_vocab, sp->wtype);
    for (int l = 0; l < sp->n_layer; l++) {
        int qwen = !strcmp(sp->arch, "qwen2");
        snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", l); VEC(name, sp->n_embd);
        snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", l); VEC(name, sp->n_embd);
        snprintf(name, sizeof(name), "blk.%d.attn_q.weight", l); MAT(name, sp->n_embd, sp->n_head * hd, sp->wtype);
        snprintf(name, sizeof(name), "blk.%d.attn_k.weight", l); MAT(name, sp->n_embd, sp->n_head_kv * hd, sp->wtype);
        snprintf(name, sizeof(name), "blk.%d.attn_v.weight", l); MAT(name, sp->n_embd, sp->n_head_kv * hd, sp->wtype);
        snprintf(name, sizeof(name), "blk.%d.attn_output.weight", l); MAT(name, sp->n_head * hd, sp->n_embd, sp->wtype);
        snprintf(name, sizeof(name), "blk.%d.ffn_gate.weight", l); MAT(name, sp->n_embd, sp->n_ff, sp->wtype);
        snprintf(name, sizeof(name), "blk.%d.ffn_up.weight", l); MAT(name, sp->n_embd, sp->n_ff, sp->wtype);
        snprintf(name, sizeof(name), "blk.%d.ffn_down.weight", l); MAT(name, sp->n_ff, sp->n_embd, sp->wtype);
        if (qwen) {
            snprintf(name, sizeof(name), "blk.%d.attn_q.bias", l); VEC(name, sp->n_head * hd);
            snprintf(name, sizeof(name), "blk.%d.attn_k.bias", l); VEC(name, sp->n_head_kv * hd);
            snprintf(name, sizeof(name), "blk.%d.attn_v.bias", l); VEC(name, sp->n_head_kv * hd);
        }
    }
#undef MAT
#undef VEC
    if (!rc) rc = gguf_writer_write(w, path, &err);
    gguf_writer_free(w);
    free(toks);
    free(scores);
    free(types);
    free(text);
    return rc;
}
