/*
 * Model loading and the forward pass for llama-family architectures.
 *
 * Per layer (llama; qwen2 adds q/k/v biases, qwen3 per-head q/k RMSNorm):
 *
 *   h   = x + Wo * attn(rope(Wq * n1), rope(Wk * n1), Wv * n1),  n1 = rmsnorm(x) * attn_norm
 *   x'  = h + Wdown * (silu(Wgate * n2) * (Wup * n2)),           n2 = rmsnorm(h) * ffn_norm
 *
 * A batch of tokens goes through each layer together, so every weight
 * matrix is streamed from memory once per batch (matrix-matrix) instead of
 * once per token; decode is the batch of one. Activations are converted once
 * per matrix product into the type the weight's dot product wants (q8_0 for
 * q4_0/q8_0, q8_K for the k-quants, f16 for f16), as the reference engine
 * does; the KV cache is f16.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <sys/mman.h>
#include <unistd.h>

#include "eng_int.h"

#define EVAL_BATCH 512 /* tokens per forward pass during prefill */
#define ROW_CHUNK                                                                                  \
    16 /* weight rows per work item: they stay in L1/L2 while                                      \
          every token of the batch is multiplied with them */

/* The architectures, in the order of enum eng_arch: the names, and the
 * list for messages, from one table. */
#define ARCHS(X)                                                                                   \
    X(llama) X(qwen2) X(qwen3) X(phi3) X(gemma2) X(gemma3) X(qwen2moe) X(qwen3moe) X(bert)
#define ARCH_NAME(a) #a,
#define ARCH_ITEM(a) ", " #a
static const char *const arch_names[] = {ARCHS(ARCH_NAME)};
static const char arch_list[] = ARCHS(ARCH_ITEM);
#define N_ARCH ((int)(sizeof(arch_names) / sizeof(arch_names[0])))

const char *eng_arch_name(enum eng_arch a)
{
    return (int)a >= 0 && (int)a < N_ARCH ? arch_names[a] : "?";
}

int eng_arch_parse(const char *name, size_t n)
{
    for (int i = 0; i < N_ARCH; i++)
        if (strlen(arch_names[i]) == n && !memcmp(arch_names[i], name, n)) return i;
    return -1;
}

const char *eng_arch_list(void)
{
    return arch_list + 2; /* past the first ", " */
}

/* A weight type the kernel set k reads: it has a dot product and a
 * dequantizer for it. */
static int supported_type(const struct eng_kernels *k, uint32_t t)
{
    return t < GGUF_T_COUNT && k->vec_dot[t] && k->dequant[t];
}

int eng_type_supported(uint32_t type)
{
    return supported_type(eng_kernels_get(), type);
}

void eng_type_list(char *out, size_t cap)
{
    const struct eng_kernels *k = eng_kernels_get();
    size_t n = 0;
    if (cap) out[0] = 0;
    for (uint32_t t = 0; t < GGUF_T_COUNT && n < cap; t++)
        if (supported_type(k, t))
            n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? ", " : "", gguf_type_name(t));
}

/* ---- loading ---- */

static int get_hp_u32(const struct gguf_file *f, const char *arch, const char *key, int required,
                      uint32_t max, int *out, struct cit_err *err)
{
    char full[128];
    uint32_t v;
    int rc;
    snprintf(full, sizeof(full), "%s.%s", arch, key);
    rc = gguf_get_u32(f, full, &v, err);
    if (rc == CIT_ENOENT) {
        if (!required) return 0;
        return cit_err_set(err, CIT_EFORMAT, "model: required key '%s' is missing", full);
    }
    if (rc) return rc;
    if (v == 0 || v > max)
        return cit_err_set(err, CIT_EFORMAT, "model: key '%s' is %u (allowed 1 to %u)", full, v,
                           max);
    *out = (int)v;
    return 0;
}

static int get_hp_f32(const struct gguf_file *f, const char *arch, const char *key, float *out,
                      struct cit_err *err)
{
    char full[128];
    int rc;
    snprintf(full, sizeof(full), "%s.%s", arch, key);
    rc = gguf_get_f32(f, full, out, err);
    if (rc == CIT_ENOENT) return 0;
    if (rc) return rc;
    if (!isfinite(*out) || *out <= 0)
        return cit_err_set(err, CIT_EFORMAT, "model: key '%s' is %g, must be positive", full,
                           (double)*out);
    return 0;
}

/* Binds a 2-D weight with ne = [cols, rows]; optional tensors may be absent. */
static int bind_matrix(struct eng_model *m, const char *name, int64_t cols, int64_t rows,
                       int optional, struct eng_tensor *out, struct cit_err *err)
{
    const struct gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (optional) return 0;
        return cit_err_set(err, CIT_EFORMAT, "model: tensor '%s' is missing", name);
    }
    if (t->n_dims != 2 || (int64_t)t->ne[0] != cols || (int64_t)t->ne[1] != rows)
        return cit_err_set(err, CIT_EFORMAT,
                           "model: tensor '%s' has shape [%llu, %llu, %llu, %llu], expected "
                           "[%lld, %lld] for this architecture",
                           name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                           (unsigned long long)t->ne[2], (unsigned long long)t->ne[3],
                           (long long)cols, (long long)rows);
    if (!supported_type(m->kern, t->type)) {
        char types[160];
        eng_type_list(types, sizeof(types));
        return cit_err_set(err, CIT_ENOTSUP,
                           "model: tensor '%s' has type %s, which the engine does not support (%s)",
                           name, gguf_type_name(t->type), types);
    }
    out->type = t->type;
    out->ne0 = cols;
    out->ne1 = rows;
    out->row_bytes = eng_row_bytes(t->type, cols);
    out->data = t->data;
    return 0;
}

/* Binds a 3-D stack of expert matrices, ne = [cols, rows, n], as one
 * matrix of n * rows rows: expert e is rows [e * rows, (e + 1) * rows). */
static int bind_experts(struct eng_model *m, const char *name, int64_t cols, int64_t rows,
                        int64_t n, struct eng_tensor *out, struct cit_err *err)
{
    const struct gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    if (!t)
        return cit_err_set(err, CIT_EFORMAT,
                           "model: tensor '%s' is missing (experts are read as merged 3-D "
                           "tensors)",
                           name);
    if (t->n_dims != 3 || (int64_t)t->ne[0] != cols || (int64_t)t->ne[1] != rows ||
        (int64_t)t->ne[2] != n)
        return cit_err_set(err, CIT_EFORMAT,
                           "model: tensor '%s' has shape [%llu, %llu, %llu], expected [%lld, "
                           "%lld, %lld]",
                           name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                           (unsigned long long)t->ne[2], (long long)cols, (long long)rows,
                           (long long)n);
    if (!supported_type(m->kern, t->type)) {
        char types[160];
        eng_type_list(types, sizeof(types));
        return cit_err_set(err, CIT_ENOTSUP,
                           "model: tensor '%s' has type %s, which the engine does not support (%s)",
                           name, gguf_type_name(t->type), types);
    }
    out->type = t->type;
    out->ne0 = cols;
    out->ne1 = rows * n;
    out->row_bytes = eng_row_bytes(t->type, cols);
    out->data = t->data;
    return 0;
}

/* Binds a 1-D f32 vector (norm weights, biases). */
static int bind_vector(struct eng_model *m, const char *name, int64_t n, int optional,
                       const float **out, struct cit_err *err)
{
    const struct gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (optional) return 0;
        return cit_err_set(err, CIT_EFORMAT, "model: tensor '%s' is missing", name);
    }
    if (t->n_dims != 1 || (int64_t)t->ne[0] != n || t->type != GGUF_T_F32)
        return cit_err_set(err, CIT_EFORMAT,
                           "model: tensor '%s' must be f32 of shape [%lld] (found %s, %u dims, "
                           "ne0 %llu)",
                           name, (long long)n, gguf_type_name(t->type), t->n_dims,
                           (unsigned long long)t->ne[0]);
    if ((uintptr_t)t->data % sizeof(float))
        return cit_err_set(err, CIT_EFORMAT, "model: tensor '%s' data is not 4-byte aligned", name);
    *out = t->data;
    return 0;
}

/* Whether layer l attends through the sliding window. */
static int layer_is_swa(const struct eng_hparams *hp, int l)
{
    if (hp->n_swa <= 0) return 0;
    return hp->swa_pattern <= 1 || l % hp->swa_pattern < hp->swa_pattern - 1;
}

/* Rope scaling from the metadata: linear scaling divides positions by
 * rope.scaling.factor; the other kinds (YaRN, longrope) change the angles
 * in ways the engine does not compute, so such files are refused rather
 * than run with the wrong positions. */
static int load_rope_scaling(struct eng_model *m, const char *a, struct cit_err *err)
{
    struct eng_hparams *hp = &m->hp;
    char key[128];
    struct gguf_str type = {"linear", 6};
    float factor = 0;
    int rc;
    snprintf(key, sizeof(key), "%s.rope.scaling.type", a);
    rc = gguf_get_str(m->gguf, key, &type, err);
    if (rc && rc != CIT_ENOENT) return rc;
    if (type.n == 4 && !memcmp(type.p, "none", 4)) return 0;
    if ((rc = get_hp_f32(m->gguf, a, "rope.scaling.factor", &factor, err))) return rc;
    if (!factor || factor == 1.0f) return 0;
    if (!(type.n == 6 && !memcmp(type.p, "linear", 6)))
        return cit_err_set(err, CIT_ENOTSUP,
                           "model: rope scaling '%.*s' (factor %g) is not supported (linear is)",
                           (int)(type.n > 32 ? 32 : type.n), type.p, (double)factor);
    hp->rope_scale = 1.0f / factor;
    return 0;
}

/* Mixture-of-experts hyperparameters: llama files with experts (Mixtral),
 * qwen2moe and qwen3moe, which require them. */
static int load_moe(struct eng_model *m, const char *a, struct cit_err *err)
{
    struct eng_hparams *hp = &m->hp;
    int moe_arch = hp->arch == ENG_ARCH_QWEN2MOE || hp->arch == ENG_ARCH_QWEN3MOE, rc;
    if (hp->arch != ENG_ARCH_LLAMA && !moe_arch) return 0;
    if ((rc = get_hp_u32(m->gguf, a, "expert_count", moe_arch, 1024, &hp->n_expert, err)))
        return rc;
    if (!hp->n_expert) return 0;
    if ((rc = get_hp_u32(m->gguf, a, "expert_used_count", 1, 1024, &hp->n_expert_used, err)))
        return rc;
    if (hp->n_expert_used > hp->n_expert || hp->n_expert_used > ENG_MAX_EXPERTS_USED)
        return cit_err_set(err, CIT_EFORMAT,
                           "model: %s.expert_used_count %d must be at most expert_count %d and "
                           "%d",
                           a, hp->n_expert_used, hp->n_expert, ENG_MAX_EXPERTS_USED);
    hp->n_ff_exp = hp->n_ff;
    if (moe_arch && (rc = get_hp_u32(m->gguf, a, "expert_feed_forward_length", 1, 1u << 18,
                                     &hp->n_ff_exp, err)))
        return rc;
    if (hp->arch == ENG_ARCH_QWEN2MOE &&
        (rc = get_hp_u32(m->gguf, a, "expert_shared_feed_forward_length", 0, 1u << 18,
                         &hp->n_ff_shexp, err)))
        return rc;
    /* Mixtral and Qwen3-MoE renormalise the chosen experts' weights;
     * Qwen2-MoE (Qwen1.5-MoE) keeps the softmax's. */
    hp->expert_norm = hp->arch != ENG_ARCH_QWEN2MOE;
    return 0;
}

/* Pooling, for every architecture (decoder embedding models name it too),
 * and what an encoder adds: bidirectional attention, LayerNorm's epsilon,
 * the token types; positions are learned, one per context slot. */
static int load_encoder(struct eng_model *m, const char *a, struct cit_err *err)
{
    struct eng_hparams *hp = &m->hp;
    char key[128];
    uint32_t pool = ENG_POOL_NONE;
    int rc;
    snprintf(key, sizeof(key), "%s.pooling_type", a);
    if ((rc = gguf_get_u32(m->gguf, key, &pool, err)) && rc != CIT_ENOENT) return rc;
    if (pool > ENG_POOL_RANK)
        return cit_err_set(err, CIT_EFORMAT,
                           "model: %s is %u (0 to 4: none, mean, cls, last, rank)", key, pool);
    hp->pooling = (enum eng_pooling)pool;
    hp->causal = 1;
    if (hp->arch != ENG_ARCH_BERT) return 0;
    hp->causal = 0;
    snprintf(key, sizeof(key), "%s.attention.causal", a);
    if ((rc = gguf_get_bool(m->gguf, key, &hp->causal, err)) && rc != CIT_ENOENT) return rc;
    if (hp->causal)
        return cit_err_set(err, CIT_ENOTSUP, "model: %s is true: a causal bert is not supported",
                           key);
    hp->norm_eps = 1e-12f;
    if ((rc = get_hp_f32(m->gguf, a, "attention.layer_norm_epsilon", &hp->norm_eps, err)))
        return rc;
    hp->n_tok_types = 2;
    if ((rc = get_hp_u32(m->gguf, "tokenizer.ggml", "token_type_count", 0, 1024, &hp->n_tok_types,
                         err)))
        return rc;
    hp->n_rot = 0; /* positions are embedded, not rotated */
    return 0;
}

static int load_hparams(struct eng_model *m, struct cit_err *err)
{
    struct eng_hparams *hp = &m->hp;
    struct gguf_str arch;
    char a[32];
    int rc, key_len = 0, val_len = 0;

    rc = gguf_get_str(m->gguf, "general.architecture", &arch, err);
    if (rc == CIT_ENOENT)
        return cit_err_set(err, CIT_EFORMAT, "model: general.architecture is missing");
    if (rc) return rc;
    if ((rc = eng_arch_parse(arch.p, arch.n)) < 0)
        return cit_err_set(err, CIT_ENOTSUP, "model: architecture '%.*s' is not supported (%s)",
                           (int)(arch.n > 32 ? 32 : arch.n), arch.p, eng_arch_list());
    hp->arch = (enum eng_arch)rc;
    snprintf(a, sizeof(a), "%s", eng_arch_name(hp->arch));
    hp->n_ctx_train = 4096;
    if ((rc = get_hp_u32(m->gguf, a, "context_length", 0, 1u << 24, &hp->n_ctx_train, err)) ||
        (rc = get_hp_u32(m->gguf, a, "embedding_length", 1, 1u << 16, &hp->n_embd, err)) ||
        (rc = get_hp_u32(m->gguf, a, "block_count", 1, 1024, &hp->n_layer, err)) ||
        (rc = get_hp_u32(m->gguf, a, "feed_forward_length",
                         hp->arch != ENG_ARCH_QWEN2MOE && hp->arch != ENG_ARCH_QWEN3MOE, 1u << 18,
                         &hp->n_ff, err)) ||
        (rc = get_hp_u32(m->gguf, a, "attention.head_count", 1, 1024, &hp->n_head, err)))
        return rc;
    hp->n_head_kv = hp->n_head;
    if ((rc = get_hp_u32(m->gguf, a, "attention.head_count_kv", 0, 1024, &hp->n_head_kv, err)) ||
        (rc = get_hp_u32(m->gguf, a, "attention.key_length", 0, 4096, &key_len, err)) ||
        (rc = get_hp_u32(m->gguf, a, "attention.value_length", 0, 4096, &val_len, err)))
        return rc;
    if (hp->n_head % hp->n_head_kv)
        return cit_err_set(err, CIT_EFORMAT,
                           "model: head_count %d is not a multiple of head_count_kv %d", hp->n_head,
                           hp->n_head_kv);
    if (key_len) {
        hp->head_dim = key_len;
    } else {
        if (hp->n_embd % hp->n_head)
            return cit_err_set(err, CIT_EFORMAT,
                               "model: embedding_length %d is not a multiple of head_count %d",
                               hp->n_embd, hp->n_head);
        hp->head_dim = hp->n_embd / hp->n_head;
    }
    if (val_len && val_len != hp->head_dim)
        return cit_err_set(err, CIT_ENOTSUP,
                           "model: value_length %d differs from key_length %d (not supported)",
                           val_len, hp->head_dim);
    hp->n_rot = hp->head_dim;
    if ((rc = get_hp_u32(m->gguf, a, "rope.dimension_count", 0, 4096, &hp->n_rot, err))) return rc;
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return cit_err_set(err, CIT_EFORMAT,
                           "model: rope.dimension_count %d must be even and at most the head "
                           "size %d",
                           hp->n_rot, hp->head_dim);
    hp->rope_base = 10000.0f;
    hp->rms_eps = 1e-5f;
    if ((rc = get_hp_f32(m->gguf, a, "rope.freq_base", &hp->rope_base, err)) ||
        (rc = get_hp_f32(m->gguf, a, "attention.layer_norm_rms_epsilon", &hp->rms_eps, err)))
        return rc;
    hp->rope_neox = hp->arch != ENG_ARCH_LLAMA;
    hp->embd_scale = 1.0f;
    hp->q_scale = 1.0f / sqrtf((float)hp->head_dim);
    hp->rope_base_swa = hp->rope_base;
    hp->rope_scale = 1.0f;
    if ((rc = load_rope_scaling(m, a, err))) return rc;
    hp->rope_mscale = 1.0f;
    hp->n_ctx_orig = hp->n_ctx_train;
    if ((rc = get_hp_f32(m->gguf, a, "rope.scaling.attn_factor", &hp->rope_mscale, err)) ||
        (rc = get_hp_u32(m->gguf, a, "rope.scaling.original_context_length", 0, 1u << 24,
                         &hp->n_ctx_orig, err)))
        return rc;
    hp->rope_scale_swa = hp->rope_scale;
    if (hp->arch == ENG_ARCH_GEMMA2 || hp->arch == ENG_ARCH_GEMMA3) {
        int gemma2 = hp->arch == ENG_ARCH_GEMMA2, pattern = gemma2 ? 2 : 6;
        hp->embd_scale = sqrtf((float)hp->n_embd);
        hp->geglu = hp->post_norms = 1;
        /* The 27B models scale queries by 1/sqrt(n_embd / n_head) (their
         * query_pre_attn_scalar), which no key records; the reference
         * engine tells them by their layer count, and so do we. */
        if ((gemma2 && hp->n_layer == 46) || (!gemma2 && hp->n_layer == 62))
            hp->q_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_head));
        if (gemma2) {
            hp->attn_softcap = 50.0f; /* Gemma 2's own values when the file has none */
            hp->final_softcap = 30.0f;
            if ((rc = get_hp_f32(m->gguf, a, "attn_logit_softcapping", &hp->attn_softcap, err)) ||
                (rc = get_hp_f32(m->gguf, a, "final_logit_softcapping", &hp->final_softcap, err)))
                return rc;
        } else {
            /* local layers rotate with base 10000 and no scaling */
            hp->rope_base_swa = 10000.0f;
            hp->rope_scale_swa = 1.0f;
            if ((rc = get_hp_u32(m->gguf, a, "attention.sliding_window_pattern", 0, 1024, &pattern,
                                 err)))
                return rc;
        }
        if ((rc = get_hp_u32(m->gguf, a, "attention.sliding_window", 1, 1u << 24, &hp->n_swa, err)))
            return rc;
        hp->swa_pattern = pattern;
    }
    if (hp->arch == ENG_ARCH_PHI3) {
        if ((rc = get_hp_u32(m->gguf, a, "attention.sliding_window", 0, 1u << 24, &hp->n_swa, err)))
            return rc;
        hp->swa_pattern = 1;
    }
    if (hp->n_swa >= hp->n_ctx_train) hp->n_swa = 0; /* a window past the context is none */
    if ((rc = load_moe(m, a, err)) || (rc = load_encoder(m, a, err))) return rc;
    for (int l = 0; l < hp->n_layer; l++) hp->n_swa_layers += layer_is_swa(hp, l);
    return 0;
}

/* A view of rows [first, first + n) of a bound matrix: the parts of a
 * fused tensor (phi3's attn_qkv and ffn_up), multiplied as if apart. */
static struct eng_tensor rows_of(const struct eng_tensor *t, int64_t first, int64_t n)
{
    struct eng_tensor v = *t;
    v.ne1 = n;
    v.data = t->data + (size_t)first * t->row_bytes;
    if (t->packed && first % t->packed_rows == 0 && n % t->packed_rows == 0) {
        v.packed = t->packed + (size_t)first * t->row_bytes; /* whole groups: a view of them */
    } else {
        v.packed = NULL; /* (phi3's fused parts are repacked apart, repack_weights) */
        v.packed_rows = 0;
    }
    return v;
}

/* bert: summed token, token-type and position embeddings under a
 * LayerNorm; per layer biased Q, K, V and output, a LayerNorm after the
 * attention and after the GELU FFN (up, down: no gate). No output head. */
static int load_encoder_tensors(struct eng_model *m, struct cit_err *err)
{
    const struct eng_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim, F = hp->n_ff;
    char name[96];
    int rc;
    if ((rc = bind_matrix(m, "token_types.weight", E, hp->n_tok_types, 0, &m->tok_types, err)) ||
        (rc = bind_matrix(m, "position_embd.weight", E, hp->n_ctx_train, 0, &m->pos_embd, err)) ||
        (rc = bind_vector(m, "token_embd_norm.weight", E, 0, &m->embd_norm, err)) ||
        (rc = bind_vector(m, "token_embd_norm.bias", E, 0, &m->embd_norm_b, err)))
        return rc;
    if (Q != E)
        return cit_err_set(err, CIT_EFORMAT, "model: bert heads span %lld, not the width %lld",
                           (long long)Q, (long long)E);
    m->layers = cit_calloc((size_t)hp->n_layer, sizeof(*m->layers));
    if (!m->layers) return cit_err_set(err, CIT_ENOMEM, "model: out of memory");
    for (int i = 0; i < hp->n_layer; i++) {
        struct eng_layer *L = &m->layers[i];
#define MAT(field, suffix, cols, rows)                                                             \
    snprintf(name, sizeof(name), "blk.%d.%s.weight", i, suffix);                                   \
    if ((rc = bind_matrix(m, name, cols, rows, 0, &L->field, err))) return rc
#define VEC(field, suffix, kind, n)                                                                \
    snprintf(name, sizeof(name), "blk.%d.%s.%s", i, suffix, kind);                                 \
    if ((rc = bind_vector(m, name, n, 0, &L->field, err))) return rc
        MAT(wq, "attn_q", E, E);
        MAT(wk, "attn_k", E, E);
        MAT(wv, "attn_v", E, E);
        MAT(wo, "attn_output", E, E);
        MAT(w_up, "ffn_up", E, F);
        MAT(w_down, "ffn_down", F, E);
        VEC(bq, "attn_q", "bias", E);
        VEC(bk, "attn_k", "bias", E);
        VEC(bv, "attn_v", "bias", E);
        VEC(bo, "attn_output", "bias", E);
        VEC(b_up, "ffn_up", "bias", F);
        VEC(b_down, "ffn_down", "bias", E);
        VEC(attn_norm, "attn_output_norm", "weight", E);
        VEC(attn_norm_b, "attn_output_norm", "bias", E);
        VEC(ffn_norm, "layer_output_norm", "weight", E);
        VEC(ffn_norm_b, "layer_output_norm", "bias", E);
#undef MAT
#undef VEC
    }
    return 0;
}

static int load_tensors(struct eng_model *m, struct cit_err *err)
{
    struct eng_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim,
            KV = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff, V = hp->n_vocab;
    char name[96];
    int rc;

    if ((rc = bind_matrix(m, "token_embd.weight", E, V, 0, &m->tok_embd, err))) return rc;
    if (hp->arch == ENG_ARCH_BERT) return load_encoder_tensors(m, err);
    if ((rc = bind_vector(m, "output_norm.weight", E, 0, &m->output_norm, err))) return rc;
    if ((rc = bind_matrix(m, "output.weight", E, V, 1, &m->output, err))) return rc;
    if (!m->output.data) {
        m->output = m->tok_embd;
        hp->tied_output = 1;
    }
    /* Llama 3.1+ divides each rope frequency by a factor from the file */
    if ((rc = bind_vector(m, "rope_freqs.weight", hp->n_rot / 2, 1, &m->rope_freqs, err)))
        return rc;
    /* LongRoPE (Phi-3 128k, Phi-3.5, Phi-4-mini): one set of divisors for
     * contexts up to the original length, another beyond it, both with
     * the magnitude factor rope.scaling.attn_factor on cos and sin */
    if ((rc = bind_vector(m, "rope_factors_long.weight", hp->n_rot / 2, 1, &m->rope_long, err)) ||
        (rc = bind_vector(m, "rope_factors_short.weight", hp->n_rot / 2, 1, &m->rope_short, err)))
        return rc;
    if (!m->rope_long != !m->rope_short)
        return cit_err_set(err, CIT_EFORMAT,
                           "model: rope_factors_long and rope_factors_short come together; the "
                           "file has one of them");
    if (m->rope_long && m->rope_freqs)
        return cit_err_set(err, CIT_EFORMAT,
                           "model: both rope_freqs and rope_factors_long/short: which divides "
                           "the frequencies is ambiguous");
    m->layers = cit_calloc((size_t)hp->n_layer, sizeof(*m->layers));
    if (!m->layers) return cit_err_set(err, CIT_ENOMEM, "model: out of memory");
    for (int i = 0; i < hp->n_layer; i++) {
        struct eng_layer *L = &m->layers[i];
        int qwen2 = hp->arch == ENG_ARCH_QWEN2 || hp->arch == ENG_ARCH_QWEN2MOE;
        int qk_norm = hp->arch == ENG_ARCH_QWEN3 || hp->arch == ENG_ARCH_GEMMA3 ||
                      hp->arch == ENG_ARCH_QWEN3MOE;
#define MAT(field, suffix, cols, rows)                                                             \
    snprintf(name, sizeof(name), "blk.%d.%s.weight", i, suffix);                                   \
    if ((rc = bind_matrix(m, name, cols, rows, 0, &L->field, err))) return rc
#define VEC(field, suffix, kind, n, opt)                                                           \
    snprintf(name, sizeof(name), "blk.%d.%s.%s", i, suffix, kind);                                 \
    if ((rc = bind_vector(m, name, n, opt, &L->field, err))) return rc
        L->swa = layer_is_swa(hp, i);
        VEC(attn_norm, "attn_norm", "weight", E, 0);
        VEC(ffn_norm, "ffn_norm", "weight", E, 0);
        if (hp->post_norms) {
            VEC(post_attn_norm, "post_attention_norm", "weight", E, 0);
            VEC(post_ffn_norm, "post_ffw_norm", "weight", E, 0);
        }
        if (hp->arch == ENG_ARCH_PHI3) {
            /* fused: Q, K and V rows in one matrix; gate and up rows in another */
            struct eng_tensor qkv = {0}, gate_up = {0};
            snprintf(name, sizeof(name), "blk.%d.attn_qkv.weight", i);
            if ((rc = bind_matrix(m, name, E, Q + 2 * KV, 0, &qkv, err))) return rc;
            snprintf(name, sizeof(name), "blk.%d.ffn_up.weight", i);
            if ((rc = bind_matrix(m, name, E, 2 * F, 0, &gate_up, err))) return rc;
            L->wq = rows_of(&qkv, 0, Q);
            L->wk = rows_of(&qkv, Q, KV);
            L->wv = rows_of(&qkv, Q + KV, KV);
            L->w_gate = rows_of(&gate_up, 0, F);
            L->w_up = rows_of(&gate_up, F, F);
        } else {
            MAT(wq, "attn_q", E, Q);
            MAT(wk, "attn_k", E, KV);
            MAT(wv, "attn_v", E, KV);
        }
        MAT(wo, "attn_output", Q, E);
        if (hp->n_expert) {
            const int64_t X = hp->n_expert, FX = hp->n_ff_exp, FS = hp->n_ff_shexp;
            MAT(router, "ffn_gate_inp", E, X);
#define EXPS(field, suffix, cols, rows)                                                            \
    snprintf(name, sizeof(name), "blk.%d.%s.weight", i, suffix);                                   \
    if ((rc = bind_experts(m, name, cols, rows, X, &L->field, err))) return rc
            EXPS(exp_gate, "ffn_gate_exps", E, FX);
            EXPS(exp_up, "ffn_up_exps", E, FX);
            EXPS(exp_down, "ffn_down_exps", FX, E);
#undef EXPS
            if (FS) {
                const float *gi = NULL;
                snprintf(name, sizeof(name), "blk.%d.ffn_gate_inp_shexp.weight", i);
                if ((rc = bind_vector(m, name, E, 0, &gi, err))) return rc;
                L->sh_inp.data = (const uint8_t *)gi;
                L->sh_inp.type = GGUF_T_F32;
                L->sh_inp.ne0 = E;
                L->sh_inp.ne1 = 1;
                L->sh_inp.row_bytes = (size_t)E * sizeof(float);
                MAT(sh_gate, "ffn_gate_shexp", E, FS);
                MAT(sh_up, "ffn_up_shexp", E, FS);
                MAT(sh_down, "ffn_down_shexp", FS, E);
            }
        } else if (hp->arch != ENG_ARCH_PHI3) {
            MAT(w_gate, "ffn_gate", E, F);
            MAT(w_up, "ffn_up", E, F);
        }
        if (!hp->n_expert) {
            MAT(w_down, "ffn_down", F, E);
        }
        /* llama files may carry biases too; qwen2 requires them. */
        VEC(bq, "attn_q", "bias", Q, !qwen2);
        VEC(bk, "attn_k", "bias", KV, !qwen2);
        VEC(bv, "attn_v", "bias", KV, !qwen2);
        VEC(q_norm, "attn_q_norm", "weight", hp->head_dim, !qk_norm);
        VEC(k_norm, "attn_k_norm", "weight", hp->head_dim, !qk_norm);
#undef MAT
#undef VEC
    }
    return 0;
}

/* Rewrites a weight matrix into the kernel set's packed layout when it has
 * one (q4_0: sixteen rows per group with AVX512-VNNI, eight with AVX2; the
 * same bytes moved). The mapped original is not read again, so its pages are given
 * back; without memory for the copy the plain layout serves. */
static void repack_tensor(const struct eng_model *m, struct eng_tensor *t)
{
    const struct eng_kernels *k = m->kern;
    const int rows = k->tile_rows[t->type];
    const size_t bytes = t->row_bytes * (size_t)t->ne1;
    const long page = sysconf(_SC_PAGESIZE);
    uintptr_t lo, hi;
    if (!k->repack[t->type] || !k->ptile[t->type] || rows < 1 || t->ne1 % rows) return;
    t->packed = cit_aligned_alloc(64, bytes);
    if (!t->packed) return;
    k->repack[t->type](t->data, t->row_bytes, (int)t->ne0, (int)t->ne1, t->packed);
    t->packed_rows = rows;
    lo = ((uintptr_t)t->data + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    hi = ((uintptr_t)t->data + bytes) & ~((uintptr_t)page - 1);
    if (page > 0 && hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* Every weight matrix of a layer, bound or not (data NULL). */
#define LAYER_TENSORS 15
static void layer_tensors(struct eng_layer *L, struct eng_tensor *ts[LAYER_TENSORS])
{
    struct eng_tensor *all[LAYER_TENSORS] = {&L->wq,       &L->wk,     &L->wv,       &L->wo,
                                             &L->w_gate,   &L->w_up,   &L->w_down,   &L->router,
                                             &L->exp_gate, &L->exp_up, &L->exp_down, &L->sh_inp,
                                             &L->sh_gate,  &L->sh_up,  &L->sh_down};
    memcpy(ts, all, sizeof(all));
}

static void repack_weights(struct eng_model *m)
{
    if (getenv("CITADEL_NO_REPACK")) return; /* A/B measurements */
    for (int i = 0; i < m->hp.n_layer; i++) {
        struct eng_tensor *ts[LAYER_TENSORS];
        layer_tensors(&m->layers[i], ts);
        for (int j = 0; j < LAYER_TENSORS; j++)
            if (ts[j]->data) repack_tensor(m, ts[j]);
    }
    /* the token embeddings are looked up row by row: a tied output stays plain */
    if (!m->hp.tied_output) repack_tensor(m, &m->output);
}

static void free_packed(struct eng_model *m)
{
    if (!m->layers) return;
    for (int i = 0; i < m->hp.n_layer; i++) {
        struct eng_tensor *ts[LAYER_TENSORS];
        layer_tensors(&m->layers[i], ts);
        for (int j = 0; j < LAYER_TENSORS; j++) cit_free(ts[j]->packed);
    }
    if (!m->hp.tied_output) cit_free(m->output.packed);
}

enum load_mode { LOAD_FULL, LOAD_VOCAB, LOAD_CHECK };

static int load(const char *path, enum load_mode mode, gguf_check_fn check, void *ctx,
                struct eng_model **out, struct cit_err *err)
{
    struct eng_model *m = cit_calloc(1, sizeof(*m));
    int rc;
    if (!m) return cit_err_set(err, CIT_ENOMEM, "model: out of memory");
    m->kern = eng_kernels_get();
    if ((rc = gguf_open_checked(path, check, ctx, &m->gguf, err))) {
        cit_free(m);
        return rc;
    }
    if (mode != LOAD_VOCAB && (rc = load_hparams(m, err))) goto fail;
    if ((rc = eng_vocab_load(m, err))) goto fail;
    m->hp.n_vocab = m->vinfo.n_tokens;
    if (mode != LOAD_VOCAB && (rc = load_tensors(m, err))) goto fail;
    if (mode == LOAD_FULL) repack_weights(m);
    *out = m;
    return 0;
fail:
    if (rc != CIT_ENOMEM) cit_err_prefix(err, path);
    eng_model_free(m);
    return rc;
}

int eng_model_load(const char *path, struct eng_model **out, struct cit_err *err)
{
    return load(path, LOAD_FULL, NULL, NULL, out, err);
}

int eng_model_load_checked(const char *path, gguf_check_fn check, void *ctx, struct eng_model **out,
                           struct cit_err *err)
{
    return load(path, LOAD_FULL, check, ctx, out, err);
}

int eng_model_load_vocab(const char *path, struct eng_model **out, struct cit_err *err)
{
    return load(path, LOAD_VOCAB, NULL, NULL, out, err);
}

int eng_model_check(const char *path, struct eng_model **out, struct cit_err *err)
{
    return load(path, LOAD_CHECK, NULL, NULL, out, err);
}

void eng_model_free(struct eng_model *m)
{
    if (!m) return;
    eng_vocab_free(m->vocab);
    free_packed(m);
    cit_free(m->layers);
    gguf_close(m->gguf);
    cit_free(m);
}

const struct eng_hparams *eng_model_hparams(const struct eng_model *m)
{
    return &m->hp;
}

const struct gguf_file *eng_model_gguf(const struct eng_model *m)
{
    return m->gguf;
}

const struct eng_vocab_info *eng_vocab(const struct eng_model *m)
{
    return &m->vinfo;
}

static uint64_t tensor_bytes(const struct eng_tensor *t)
{
    return t->data ? (uint64_t)t->row_bytes * (uint64_t)t->ne1 : 0;
}

uint64_t eng_model_weight_bytes(const struct eng_model *m)
{
    const struct eng_hparams *hp = &m->hp;
    uint64_t b = m->tok_embd.row_bytes + tensor_bytes(&m->output);
    for (int i = 0; i < hp->n_layer; i++) {
        struct eng_tensor *ts[LAYER_TENSORS];
        layer_tensors(&m->layers[i], ts);
        for (int j = 0; j < LAYER_TENSORS; j++)
            if (ts[j] != &m->layers[i].exp_gate && ts[j] != &m->layers[i].exp_up &&
                ts[j] != &m->layers[i].exp_down)
                b += tensor_bytes(ts[j]);
    }
    return b + eng_model_expert_bytes(m);
}

uint64_t eng_model_expert_bytes(const struct eng_model *m)
{
    const struct eng_hparams *hp = &m->hp;
    uint64_t b = 0;
    if (!hp->n_expert) return 0;
    for (int i = 0; i < hp->n_layer; i++) {
        const struct eng_layer *L = &m->layers[i];
        b += (tensor_bytes(&L->exp_gate) + tensor_bytes(&L->exp_up) + tensor_bytes(&L->exp_down)) /
             (uint64_t)hp->n_expert * (uint64_t)hp->n_expert_used;
    }
    return b;
}

/* ---- sequences ---- */

/* Scratch for one forward pass over up to n_batch rows (tokens). Each row
 * belongs to a sequence (whose KV cache it reads and writes) at a position. */
struct eng_work {
    int n_batch;
    float *x, *xn;    /* (n_batch, n_embd) */
    float *q;         /* (n_batch, q_dim) */
    float *k, *v;     /* (n_batch, kv_dim) */
    float *att;       /* (n_batch, q_dim) */
    float *ff1, *ff2; /* (n_batch, n_ff) */
    float *rope;      /* (n_batch, n_rot) cos/sin pairs */
    float *rope_swa;  /* the same for windowed layers when they rotate otherwise, or NULL */
    /* mixture of experts: router logits (n_batch, n_expert); per row the
     * chosen experts and their weights (n_batch, used); the rows routed to
     * one expert (their indices, inputs, outputs); each row's weighted
     * expert outputs (n_batch, used, n_embd); the shared expert's output
     * (n_batch, n_embd) and gate logits (n_batch) */
    float *moe_logits, *moe_wt, *moe_x, *moe_y, *moe_out, *moe_sh;
    int *moe_sel, *moe_rows;
    uint16_t *q16; /* (n_batch, q_dim) queries in f16 */
    uint8_t *act;  /* (n_batch, act_stride) converted activations */
    size_t act_stride;
    struct eng_seq **row_seq; /* (n_batch) */
    int *row_pos;             /* (n_batch) */
    int *logit_rows;          /* (n_batch) rows whose logits are wanted */
    int hidden;               /* write those rows' final-normed states instead (embeddings) */
    int *row_first, *row_len; /* encoders: (n_batch) the first slot and length of a row's input */
    float *scores;            /* (threads, longest context): one attention row per worker */
    size_t scores_len;
};

/* The KV cache is f16, one region per layer. A windowed layer's region is
 * a ring of `ring` slots (position p in slot p % ring): it must hold the
 * window and every row one pass appends, so a pass may add at most
 * max_rows rows to the sequence. The other layers hold the whole context. */
struct eng_seq {
    const struct eng_model *m;
    int n_ctx, pos;
    int pending; /* rows of this sequence in the batch being prepared */
    int ring, max_rows;
    size_t *kv_base;   /* (n_layer) first slot of each layer's region */
    uint16_t *kc, *vc; /* (sum of the regions' slots, kv_dim) */
    struct eng_work w; /* scratch for eng_seq_eval */
};

struct eng_batch {
    const struct eng_model *m;
    struct eng_work w;
    int32_t *tokens; /* (n_batch) */
};

static void work_free(struct eng_work *w)
{
    cit_free(w->x);
    cit_free(w->xn);
    cit_free(w->q);
    cit_free(w->k);
    cit_free(w->v);
    cit_free(w->att);
    cit_free(w->ff1);
    cit_free(w->ff2);
    cit_free(w->rope);
    cit_free(w->rope_swa);
    cit_free(w->moe_logits);
    cit_free(w->moe_sel);
    cit_free(w->moe_wt);
    cit_free(w->moe_rows);
    cit_free(w->moe_x);
    cit_free(w->moe_y);
    cit_free(w->moe_out);
    cit_free(w->moe_sh);
    cit_free(w->q16);
    cit_free(w->act);
    cit_free(w->row_seq);
    cit_free(w->row_pos);
    cit_free(w->logit_rows);
    cit_free(w->row_first);
    cit_free(w->row_len);
    cit_free(w->scores);
    memset(w, 0, sizeof(*w));
}

static int work_init(struct eng_work *w, const struct eng_model *m, int n_batch)
{
    const struct eng_hparams *hp = &m->hp;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim, q_dim = (size_t)hp->n_head * hp->head_dim;
    size_t B = (size_t)n_batch, ff = (size_t)hp->n_ff, widest;
    memset(w, 0, sizeof(*w));
    w->n_batch = n_batch;
    if ((size_t)hp->n_ff_exp > ff) ff = (size_t)hp->n_ff_exp;
    if ((size_t)hp->n_ff_shexp > ff) ff = (size_t)hp->n_ff_shexp;
    widest = ff > (size_t)hp->n_embd ? ff : (size_t)hp->n_embd;
    if (q_dim > widest) widest = q_dim;
    /* The widest activation in the widest type: f32 is 4 bytes per element,
     * every other activation type is smaller. */
    w->act_stride = (widest * 4 + 63) & ~(size_t)63;
    w->x = cit_calloc(B * (size_t)hp->n_embd, sizeof(float));
    w->xn = cit_calloc(B * (size_t)hp->n_embd, sizeof(float));
    w->q = cit_calloc(B * q_dim, sizeof(float));
    w->k = cit_calloc(B * kv_dim, sizeof(float));
    w->v = cit_calloc(B * kv_dim, sizeof(float));
    w->att = cit_calloc(B * q_dim, sizeof(float));
    w->ff1 = cit_calloc(B * ff, sizeof(float));
    w->ff2 = cit_calloc(B * ff, sizeof(float));
    if (hp->n_expert) {
        size_t E = (size_t)hp->n_embd, K = (size_t)hp->n_expert_used;
        w->moe_logits = cit_calloc(B * (size_t)hp->n_expert, sizeof(float));
        w->moe_sel = cit_calloc(B * K, sizeof(int));
        w->moe_wt = cit_calloc(B * K, sizeof(float));
        w->moe_rows = cit_calloc(B, sizeof(int));
        w->moe_x = cit_calloc(B * E, sizeof(float));
        w->moe_y = cit_calloc(B * E, sizeof(float));
        w->moe_out = cit_calloc(B * K * E, sizeof(float));
        w->moe_sh = cit_calloc(B * (E + 1), sizeof(float));
        if (!w->moe_logits || !w->moe_sel || !w->moe_wt || !w->moe_rows || !w->moe_x || !w->moe_y ||
            !w->moe_out || !w->moe_sh) {
            work_free(w);
            return CIT_ENOMEM;
        }
    }
    w->rope = cit_calloc(B * (size_t)(hp->n_rot ? hp->n_rot : 1), sizeof(float));
    if (hp->n_swa_layers &&
        (hp->rope_base_swa != hp->rope_base || hp->rope_scale_swa != hp->rope_scale)) {
        w->rope_swa = cit_calloc(B * (size_t)hp->n_rot, sizeof(float));
        if (!w->rope_swa) {
            work_free(w);
            return CIT_ENOMEM;
        }
    }
    w->q16 = cit_calloc(B * q_dim, sizeof(uint16_t));
    w->act = cit_aligned_alloc(64, B * w->act_stride);
    w->row_seq = cit_calloc(B, sizeof(*w->row_seq));
    w->row_pos = cit_calloc(B, sizeof(int));
    w->logit_rows = cit_calloc(B, sizeof(int));
    if (!hp->causal && (!(w->row_first = cit_calloc(B, sizeof(int))) ||
                        !(w->row_len = cit_calloc(B, sizeof(int))))) {
        work_free(w);
        return CIT_ENOMEM;
    }
    if (!w->x || !w->xn || !w->q || !w->k || !w->v || !w->att || !w->ff1 || !w->ff2 || !w->rope ||
        !w->q16 || !w->act || !w->row_seq || !w->row_pos || !w->logit_rows) {
        work_free(w);
        return CIT_ENOMEM;
    }
    return 0;
}

/* Attention rows for every worker, as long as the longest context in use. */
static int work_scores(struct eng_work *w, int threads, int n_ctx)
{
    size_t need = (size_t)threads * (size_t)n_ctx;
    if (w->scores_len >= need) return 0;
    cit_free(w->scores);
    w->scores = cit_calloc(need, sizeof(float));
    w->scores_len = w->scores ? need : 0;
    return w->scores ? 0 : CIT_ENOMEM;
}

int eng_seq_new_batch(const struct eng_model *m, int n_ctx, int n_batch, struct eng_seq **out)
{
    const struct eng_hparams *hp = &m->hp;
    struct eng_seq *s;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim, slots = 0, cache;

    if (!m->layers) return CIT_EINVAL; /* vocabulary-only model */
    if (n_ctx <= 0) n_ctx = hp->n_ctx_train;
    if (n_ctx > (1 << 24)) return CIT_ERANGE;
    if (n_batch <= 0 || n_batch > n_ctx) n_batch = n_ctx < EVAL_BATCH ? n_ctx : EVAL_BATCH;
    s = cit_calloc(1, sizeof(*s));
    if (!s) return CIT_ENOMEM;
    s->m = m;
    s->n_ctx = n_ctx;
    s->ring = n_ctx;
    s->max_rows = n_ctx;
    if (hp->n_swa_layers && hp->n_swa + n_batch < n_ctx) {
        s->ring = hp->n_swa + n_batch;
        s->max_rows = s->ring - hp->n_swa + 1;
    }
    s->kv_base = cit_calloc((size_t)hp->n_layer, sizeof(size_t));
    if (!s->kv_base) goto oom;
    for (int l = 0; l < hp->n_layer; l++) {
        s->kv_base[l] = slots;
        slots += (size_t)(m->layers[l].swa ? s->ring : n_ctx);
    }
    if (cit_mul_size(slots, kv_dim, &cache)) {
        eng_seq_free(s);
        return CIT_ERANGE;
    }
    s->kc = cit_calloc(cache, sizeof(uint16_t));
    s->vc = cit_calloc(cache, sizeof(uint16_t));
    if (!s->kc || !s->vc || work_init(&s->w, m, n_batch)) goto oom;
    *out = s;
    return 0;
oom:
    eng_seq_free(s);
    return CIT_ENOMEM;
}

int eng_seq_new(const struct eng_model *m, int n_ctx, struct eng_seq **out)
{
    return eng_seq_new_batch(m, n_ctx, 0, out);
}

void eng_seq_free(struct eng_seq *s)
{
    if (!s) return;
    cit_free(s->kc);
    cit_free(s->vc);
    cit_free(s->kv_base);
    work_free(&s->w);
    cit_free(s);
}

void eng_seq_reset(struct eng_seq *s)
{
    s->pos = 0;
}

int eng_seq_pos(const struct eng_seq *s)
{
    return s->pos;
}

int eng_seq_ctx(const struct eng_seq *s)
{
    return s->n_ctx;
}

size_t eng_seq_kv_slots(const struct eng_seq *s)
{
    const struct eng_hparams *hp = &s->m->hp;
    return s->kv_base[hp->n_layer - 1] +
           (size_t)(s->m->layers[hp->n_layer - 1].swa ? s->ring : s->n_ctx);
}

int eng_batch_new(const struct eng_model *m, int capacity, struct eng_batch **out)
{
    struct eng_batch *b;
    if (!m->layers) return CIT_EINVAL;
    if (capacity <= 0 || capacity > 65536) return CIT_ERANGE;
    b = cit_calloc(1, sizeof(*b));
    if (!b) return CIT_ENOMEM;
    b->m = m;
    b->tokens = cit_calloc((size_t)capacity, sizeof(int32_t));
    if (!b->tokens || work_init(&b->w, m, capacity)) {
        eng_batch_free(b);
        return CIT_ENOMEM;
    }
    *out = b;
    return 0;
}

void eng_batch_free(struct eng_batch *b)
{
    if (!b) return;
    work_free(&b->w);
    cit_free(b->tokens);
    cit_free(b);
}

/* ---- parallel matrix products ---- */

struct mm_item {
    const struct eng_tensor *w;
    float *y; /* (n_tok, y_stride) */
    int y_stride;
    const float *bias; /* (w->ne1) or NULL */
};

#define MM_MAX_RANGES 64

struct mm_job {
    const struct eng_kernels *k;
    const struct mm_item *items;
    int n_items;
    int rows_total;
    const uint8_t *act; /* (n_tok, act_stride) */
    size_t act_stride;
    int n_tok;
    _Atomic int next;                      /* more threads than ranges: one shared counter */
    _Atomic int range_next[MM_MAX_RANGES]; /* decode: next chunk of each thread's range */
};

/* Rows are handed out as ranges: each thread owns one contiguous range and
 * reads it front to back, so its reads form one sequential stream the
 * prefetchers follow (chunks dealt out alternately made each stream skip
 * ahead every chunk: a third of the decode speed, and 16-sequence batches
 * on the packed q4_0 layout 137 -> 147 tok/s median of 3). A thread that
 * finishes its range then helps the others through their ranges'
 * counters, so one disturbed core does not hold up the step. */
static int mm_next_chunk(struct mm_job *j, int ith, int nth, int n_chunks, int *range)
{
    if (nth > MM_MAX_RANGES) return atomic_fetch_add(&j->next, 1);
    for (; *range < nth; (*range)++) {
        int r = (ith + *range) % nth;
        int c = atomic_fetch_add(&j->range_next[r], 1);
        if (c < (int)((int64_t)n_chunks * (r + 1) / nth)) return c;
    }
    return n_chunks;
}

/* Adds an item's bias to rows [lo, hi) of every token's output. */
static void add_bias(const struct mm_item *m, int lo, int hi, int n_tok)
{
    if (!m->bias) return;
    for (int u = 0; u < n_tok; u++)
        for (int r = lo; r < hi; r++)
            m->y[(size_t)u * (size_t)m->y_stride + (size_t)r] += m->bias[r];
}

static void mm_worker(void *arg, int ith, int nth)
{
    struct mm_job *j = arg;
    int n_chunks = (j->rows_total + ROW_CHUNK - 1) / ROW_CHUNK, range = 0;
    for (;;) {
        int c = mm_next_chunk(j, ith, nth, n_chunks, &range), r0, r1;
        if (c >= n_chunks) break;
        r0 = c * ROW_CHUNK;
        r1 = r0 + ROW_CHUNK < j->rows_total ? r0 + ROW_CHUNK : j->rows_total;
        /* Split [r0, r1) across the items it touches. */
        for (int it = 0, base = 0; it < j->n_items && r0 < r1;
             base += (int)j->items[it].w->ne1, it++) {
            const struct mm_item *m = &j->items[it];
            int lo = r0 - base, hi = r1 - base, rows = (int)m->w->ne1;
            vec_dot_fn dot = j->k->vec_dot[m->w->type];
            if (hi <= 0 || lo >= rows) continue;
            if (lo < 0) lo = 0;
            if (hi > rows) hi = rows;
            vec_dot4_fn dot4 = j->k->vec_dot4[m->w->type];
            tile_fn tile = j->k->tile[m->w->type];
            ptile_fn ptile = j->k->ptile[m->w->type];
            int t = 0;
            if (m->w->packed && ptile && m->w->packed_rows == j->k->tile_rows[m->w->type] &&
                lo % m->w->packed_rows == 0) {
                /* (a range that starts inside a group, after an item whose
                 * rows are not whole groups, reads the plain layout) */
                /* packed at load: every batch size, decode included */
                const int tr = m->w->packed_rows;
                for (; lo + tr <= hi; lo += tr) {
                    ptile((int)m->w->ne0, m->w->packed + (size_t)lo * m->w->row_bytes, j->act,
                          j->act_stride, j->n_tok, m->y + lo, (size_t)m->y_stride);
                    add_bias(m, lo, lo + tr, j->n_tok);
                }
                if (lo >= hi) continue;
            }
            const int tmin = j->k->tile_min[m->w->type] ? j->k->tile_min[m->w->type] : TILE_MIN_ACT;
            if (tile && j->n_tok >= tmin) {
                /* a tile of weight rows at a time against every token */
                const int tr = j->k->tile_rows[m->w->type];
                for (; lo + tr <= hi; lo += tr) {
                    tile((int)m->w->ne0, m->w->data + (size_t)lo * m->w->row_bytes, m->w->row_bytes,
                         j->act, j->act_stride, j->n_tok, m->y + lo, (size_t)m->y_stride);
                    add_bias(m, lo, lo + tr, j->n_tok);
                }
                if (lo >= hi) continue;
            }
            if (dot4) /* four tokens at a time share each unpacked weight block */
                for (; t + 4 <= j->n_tok; t += 4) {
                    const uint8_t *a = j->act + (size_t)t * j->act_stride;
                    for (int r = lo; r < hi; r++) {
                        float v[4];
                        dot4((int)m->w->ne0, m->w->data + (size_t)r * m->w->row_bytes, a,
                             j->act_stride, v);
                        for (int u = 0; u < 4; u++)
                            m->y[(size_t)(t + u) * (size_t)m->y_stride + (size_t)r] =
                                m->bias ? v[u] + m->bias[r] : v[u];
                    }
                }
            for (; t < j->n_tok; t++) {
                const uint8_t *a = j->act + (size_t)t * j->act_stride;
                float *y = m->y + (size_t)t * (size_t)m->y_stride;
                for (int r = lo; r < hi; r++) {
                    float v = dot((int)m->w->ne0, m->w->data + (size_t)r * m->w->row_bytes, a);
                    y[r] = m->bias ? v + m->bias[r] : v;
                }
            }
        }
    }
}

struct act_job {
    to_act_fn fn;
    const float *x;
    int n_cols, x_stride;
    uint8_t *act;
    size_t act_stride;
    int n_tok;
};

static void act_worker(void *arg, int ith, int nth)
{
    struct act_job *j = arg;
    for (int t = ith; t < j->n_tok; t += nth)
        j->fn(j->x + (size_t)t * (size_t)j->x_stride, j->act + (size_t)t * j->act_stride,
              j->n_cols);
}

/* y_i = W_i x (+ b_i) for items that share the input x (n_tok, n_cols).
 * Items are grouped by the activation type their weights need. */
static void matmul(const struct eng_model *m, struct eng_work *s, struct cit_pool *pool,
                   const float *x, int x_stride, int n_tok, const struct mm_item *items,
                   int n_items)
{
    const struct eng_kernels *k = m->kern;
    int done = 0;
    while (done < n_items) {
        uint32_t at = k->act_type[items[done].w->type];
        int n = 1, rows = (int)items[done].w->ne1;
        struct act_job aj = {k->to_act[at], x,    (int)items[done].w->ne0, x_stride, s->act,
                             s->act_stride, n_tok};
        struct mm_job mj;
        while (done + n < n_items && k->act_type[items[done + n].w->type] == at) {
            rows += (int)items[done + n].w->ne1;
            n++;
        }
        if (n_tok >= 4)
            cit_pool_run(pool, act_worker, &aj);
        else
            act_worker(&aj, 0, 1);
        mj.k = k;
        mj.items = items + done;
        mj.n_items = n;
        mj.rows_total = rows;
        mj.act = s->act;
        mj.act_stride = s->act_stride;
        mj.n_tok = n_tok;
        atomic_init(&mj.next, 0);
        {
            int nth = cit_pool_size(pool), n_chunks = (rows + ROW_CHUNK - 1) / ROW_CHUNK;
            for (int r = 0; r < nth && r < MM_MAX_RANGES; r++)
                atomic_init(&mj.range_next[r], (int)((int64_t)n_chunks * r / nth));
        }
        cit_pool_run(pool, mm_worker, &mj);
        done += n;
    }
}

/* ---- element-wise pieces ---- */

/* Sum of squares in double, as the reference does: for wide rows the f32 sum
 * loses digits the tests can see. */
/* LayerNorm (bert): mean and variance summed in double, as the reference
 * sums them. */
static void layernorm(float *out, const float *x, const float *w, const float *b, int n, float eps)
{
    double sum = 0, var = 0;
    float mean, scale;
    for (int i = 0; i < n; i++) sum += (double)x[i];
    mean = (float)(sum / n);
    for (int i = 0; i < n; i++) var += (double)((x[i] - mean) * (x[i] - mean));
    scale = 1.0f / sqrtf((float)(var / n) + eps);
    for (int i = 0; i < n; i++) out[i] = (x[i] - mean) * scale * w[i] + b[i];
}

static void rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
    double ss = 0;
    float scale;
    for (int i = 0; i < n; i++) ss += (double)(x[i] * x[i]);
    scale = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

/* Rotates pairs of x (one head) by the angles in cs (n_rot/2 cos/sin pairs). */
static void rope_apply(float *x, const float *cs, int n_rot, int neox)
{
    int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        float c = cs[2 * i], sn = cs[2 * i + 1];
        int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        float x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * sn;
        x[b] = x0 * sn + x1 * c;
    }
}

/* ---- attention ---- */

struct attn_job {
    const struct eng_model *m;
    struct eng_work *w;
    int layer, n_tok, max_ctx;
    float scale; /* of each score: 1 when the query was scaled before its f16 rounding */
    int bidir;   /* encoders: each row sees its input's slots (row_first, row_len) */
    _Atomic int next;
};

static void attn_worker(void *arg, int ith, int nth)
{
    struct attn_job *j = arg;
    struct eng_work *w = j->w;
    const struct eng_hparams *hp = &j->m->hp;
    const struct eng_kernels *k = j->m->kern;
    const int swa = j->m->layers[j->layer].swa;
    int hd = hp->head_dim, kv_dim = hp->n_head_kv * hd, q_dim = hp->n_head * hd;
    int group = hp->n_head / hp->n_head_kv, total = j->n_tok * hp->n_head;
    struct eng_attn a = {.hd = hd,
                         .stride = (size_t)kv_dim,
                         .scale = j->scale,
                         .softcap = hp->attn_softcap,
                         .sc = w->scores + (size_t)ith * (size_t)j->max_ctx};
    (void)nth;
    for (;;) {
        int i = atomic_fetch_add(&j->next, 1), t, h, g, pos, lo;
        const struct eng_seq *s;
        size_t base;
        if (i >= total) break;
        t = i / hp->n_head;
        h = i % hp->n_head;
        g = h / group;
        s = w->row_seq[t];
        pos = w->row_pos[t];
        /* causal: the row at position p sees its sequence's positions
         * 0 .. p, or in a windowed layer the last n_swa of them */
        lo = swa && pos >= hp->n_swa ? pos - hp->n_swa + 1 : 0;
        base = (s->kv_base[j->layer] * (size_t)kv_dim) + (size_t)g * (size_t)hd;
        if (j->bidir) lo = w->row_first[t];
        a.n_pos = j->bidir ? w->row_len[t] : pos - lo + 1;
        a.ring = swa ? s->ring : s->n_ctx;
        a.first = lo % a.ring;
        a.q16 = w->q16 + (size_t)t * (size_t)q_dim + (size_t)h * (size_t)hd;
        a.k = s->kc + base;
        a.v = s->vc + base;
        a.out = w->att + (size_t)t * (size_t)q_dim + (size_t)h * (size_t)hd;
        k->attn_head(&a);
    }
}

/* ---- forward over one batch ---- */

static void silu_mul(float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) a[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
}

/* GELU with the tanh approximation, as the reference evaluates it: from a
 * table over every f16 input of the f16-rounded result, exact beyond +-10. */
static uint16_t gelu_table[1 << 16];
static pthread_once_t gelu_once = PTHREAD_ONCE_INIT;

static void gelu_table_init(void)
{
    for (uint32_t i = 0; i < (1u << 16); i++) {
        float x = fp16_to_f32((uint16_t)i);
        float y =
            0.5f * x *
            (1.0f + tanhf(0.79788456080286535587989211986876f * x * (1.0f + 0.044715f * x * x)));
        gelu_table[i] = f32_to_fp16(y);
    }
}

static inline float gelu(float x)
{
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    return fp16_to_f32(gelu_table[f32_to_fp16(x)]);
}

/* a = gelu(a) * b, or gelu(a) alone without b (bert's FFN has no gate) */
static void gelu_mul(float *a, const float *b, size_t n)
{
    if (!b) {
        for (size_t i = 0; i < n; i++) a[i] = gelu(a[i]);
        return;
    }
    for (size_t i = 0; i < n; i++) a[i] = gelu(a[i]) * b[i];
}

/* Row-wise RMS norms and the SwiGLU product, split across the pool for
 * batches: run on one thread they left the other idle for 5% of a
 * 16-sequence step (90k exponentials per layer). Each element is computed
 * exactly as the serial loop computes it. */
enum ew_op { EW_NORM, EW_SILU, EW_GELU };

struct ew_job {
    enum ew_op op;
    float *out;
    const float *x, *weight;
    int n_rows, E;
    float eps;
    float *a;
    const float *b;
    size_t len;
};

static void ew_worker(void *arg, int ith, int nth)
{
    const struct ew_job *j = arg;
    if (j->op != EW_NORM) {
        size_t per = (j->len + (size_t)nth - 1) / (size_t)nth, lo = per * (size_t)ith;
        size_t hi = lo + per < j->len ? lo + per : j->len;
        if (lo < hi)
            (j->op == EW_SILU ? silu_mul : gelu_mul)(j->a + lo, j->b ? j->b + lo : NULL, hi - lo);
        return;
    }
    for (int t = ith; t < j->n_rows; t += nth)
        rmsnorm(j->out + (size_t)t * (size_t)j->E, j->x + (size_t)t * (size_t)j->E, j->weight, j->E,
                j->eps);
}

static void norm_rows(struct cit_pool *pool, float *out, const float *x, const float *weight, int n,
                      int E, float eps)
{
    struct ew_job j = {EW_NORM, out, x, weight, n, E, eps, NULL, NULL, 0};
    if (n >= 4)
        cit_pool_run(pool, ew_worker, &j);
    else
        ew_worker(&j, 0, 1);
}

/* a = act(a) * b over n rows (len elements): the gated FFN's product;
 * b NULL: act(a) alone (GELU only). */
static void glu_rows(struct cit_pool *pool, int geglu, float *a, const float *b, int n, size_t len)
{
    struct ew_job j = {geglu ? EW_GELU : EW_SILU, NULL, NULL, NULL, 0, 0, 0, a, b, len};
    if (geglu) pthread_once(&gelu_once, gelu_table_init);
    if (n >= 4)
        cit_pool_run(pool, ew_worker, &j);
    else
        ew_worker(&j, 0, 1);
}

/* The router's choice for one row, computed as the reference does: softmax
 * over the experts (exponentials summed in double, then multiplied by the
 * f32 inverse), the used count of largest probabilities in descending
 * order (lower index first on ties), renormalised by their sum when norm. */
static void moe_route(const float *logits, int n_expert, int used, int norm, int *sel, float *wt)
{
    float p[1024], max = logits[0], inv;
    double sum = 0;
    for (int e = 1; e < n_expert; e++) max = logits[e] > max ? logits[e] : max;
    for (int e = 0; e < n_expert; e++) sum += (double)(p[e] = expf(logits[e] - max));
    inv = (float)(1.0 / sum);
    for (int e = 0; e < n_expert; e++) p[e] *= inv;
    for (int r = 0; r < used; r++) {
        int best = -1;
        for (int e = 0; e < n_expert; e++) {
            int taken = 0;
            for (int q = 0; q < r; q++) taken |= sel[q] == e;
            if (!taken && (best < 0 || p[e] > p[best])) best = e;
        }
        sel[r] = best;
        wt[r] = p[best];
    }
    if (norm) {
        double ws = 0;
        for (int r = 0; r < used; r++) ws += (double)wt[r];
        for (int r = 0; r < used; r++) wt[r] /= (float)ws;
    }
}

/* The mixture-of-experts FFN over rows 0..n-1 of w->xn (normed): its
 * output, the chosen experts' outputs times their weights summed in the
 * order chosen (plus the gated shared expert), goes to w->xn. Rows are
 * grouped by expert, so each expert's matrices are streamed once per
 * batch for all the rows routed to it, and only the experts some row
 * chose are read at all. */
static void moe_ffn(const struct eng_model *m, struct eng_work *w, struct cit_pool *pool,
                    const struct eng_layer *L, int n)
{
    const struct eng_hparams *hp = &m->hp;
    const int E = hp->n_embd, X = hp->n_expert, K = hp->n_expert_used, F = hp->n_ff_exp;
    struct mm_item route = {&L->router, w->moe_logits, X, NULL};
    matmul(m, w, pool, w->xn, E, n, &route, 1);
    for (int t = 0; t < n; t++)
        moe_route(w->moe_logits + (size_t)t * X, X, K, hp->expert_norm, w->moe_sel + (size_t)t * K,
                  w->moe_wt + (size_t)t * K);
    if (L->sh_gate.data) {
        /* the shared expert sees every row; its gate is sigmoid(w . x) */
        const int FS = hp->n_ff_shexp;
        struct mm_item up[2] = {{&L->sh_gate, w->ff1, FS, NULL}, {&L->sh_up, w->ff2, FS, NULL}};
        struct mm_item down = {&L->sh_down, w->moe_sh, E, NULL};
        struct mm_item gate = {&L->sh_inp, w->moe_sh + (size_t)n * E, 1, NULL};
        matmul(m, w, pool, w->xn, E, n, up, 2);
        matmul(m, w, pool, w->xn, E, n, &gate, 1);
        glu_rows(pool, hp->geglu, w->ff1, w->ff2, n, (size_t)n * FS);
        matmul(m, w, pool, w->ff1, FS, n, &down, 1);
    }
    for (int e = 0; e < X; e++) {
        struct eng_tensor g = rows_of(&L->exp_gate, (int64_t)e * F, F),
                          u = rows_of(&L->exp_up, (int64_t)e * F, F),
                          d = rows_of(&L->exp_down, (int64_t)e * E, E);
        struct mm_item up[2] = {{&g, w->ff1, F, NULL}, {&u, w->ff2, F, NULL}};
        struct mm_item down = {&d, w->moe_y, E, NULL};
        int cnt = 0;
        for (int t = 0; t < n; t++)
            for (int r = 0; r < K; r++)
                if (w->moe_sel[(size_t)t * K + r] == e) {
                    w->moe_rows[cnt] = t * K + r;
                    memcpy(w->moe_x + (size_t)cnt * E, w->xn + (size_t)t * E,
                           (size_t)E * sizeof(float));
                    cnt++;
                }
        if (!cnt) continue;
        matmul(m, w, pool, w->moe_x, E, cnt, up, 2);
        glu_rows(pool, hp->geglu, w->ff1, w->ff2, cnt, (size_t)cnt * F);
        matmul(m, w, pool, w->ff1, F, cnt, &down, 1);
        for (int i = 0; i < cnt; i++) {
            const int tr = w->moe_rows[i];
            const float wt = w->moe_wt[tr], *y = w->moe_y + (size_t)i * E;
            float *o = w->moe_out + (size_t)tr * E;
            for (int c = 0; c < E; c++) o[c] = y[c] * wt;
        }
    }
    for (int t = 0; t < n; t++) {
        const float *o = w->moe_out + (size_t)t * K * E;
        float *y = w->xn + (size_t)t * E;
        for (int c = 0; c < E; c++) y[c] = o[c];
        for (int r = 1; r < K; r++)
            for (int c = 0; c < E; c++) y[c] += o[(size_t)r * E + c];
        if (L->sh_gate.data) {
            const float gl = w->moe_sh[(size_t)n * E + t], gate = 1.0f / (1.0f + expf(-gl));
            const float *sh = w->moe_sh + (size_t)t * E;
            for (int c = 0; c < E; c++) y[c] += sh[c] * gate;
        }
    }
}

/* Rope angles for one position: cos/sin pairs for n_rot/2 frequencies,
 * by repeated multiplication in f32 as the reference computes them, each
 * divided by its factor from the file (Llama 3.1+, LongRoPE) and scaled
 * (linear scaling); cos and sin times mscale (LongRoPE's attn_factor). */
static void rope_angles(float *cs, int pos, int n_rot, float base, float scale,
                        const float *factors, float mscale)
{
    const float theta_scale = powf(base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int i = 0; i < n_rot / 2; i++) {
        float t = scale * (factors ? theta / factors[i] : theta);
        cs[2 * i] = cosf(t) * mscale;
        cs[2 * i + 1] = sinf(t) * mscale;
        theta *= theta_scale;
    }
}

/* The divisors for a row of sequence s: LongRoPE's long set when the
 * sequence's context passes the original one (as the reference chooses,
 * by context, not by position), else its short set, else rope_freqs. */
static const float *rope_factors(const struct eng_model *m, const struct eng_seq *s)
{
    if (!m->rope_long) return m->rope_freqs;
    return s->n_ctx > m->hp.n_ctx_orig ? m->rope_long : m->rope_short;
}

/* x = c * tanh(x / c) over n values (gemma2's final logits). */
static void softcap_rows(float *x, size_t n, float cap)
{
    const float inv = 1.0f / cap;
    for (size_t i = 0; i < n; i++) x[i] = eng_softcap(x[i], inv, cap);
}

/* Runs rows 0..n-1 of w (tokens, with w->row_seq and w->row_pos set)
 * through the model; writes the logits of the n_logits rows listed in
 * w->logit_rows, in that order. The caller has checked every bound and
 * sized w->scores. */
static void forward(const struct eng_model *m, struct eng_work *w, struct cit_pool *pool,
                    const int32_t *tokens, int n, int n_logits, int max_ctx, float *logits)
{
    const struct eng_hparams *hp = &m->hp;
    const struct eng_kernels *k = m->kern;
    int E = hp->n_embd, hd = hp->head_dim, q_dim = hp->n_head * hd, kv_dim = hp->n_head_kv * hd;
    int F = hp->n_ff;
    /* Attention scores are scaled by q_scale after the product, or (phi3
     * and gemma, as the reference's graph does) on the query before it is
     * rounded to f16. */
    const int q_first = hp->arch == ENG_ARCH_PHI3 || hp->geglu;

    for (int t = 0; t < n; t++) {
        float *x = w->x + (size_t)t * (size_t)E;
        k->dequant[m->tok_embd.type](m->tok_embd.data + (size_t)tokens[t] * m->tok_embd.row_bytes,
                                     x, E);
        if (hp->embd_scale != 1.0f)
            for (int i = 0; i < E; i++) x[i] *= hp->embd_scale;
        rope_angles(w->rope + (size_t)t * (size_t)hp->n_rot, w->row_pos[t], hp->n_rot,
                    hp->rope_base, hp->rope_scale, rope_factors(m, w->row_seq[t]), hp->rope_mscale);
        if (w->rope_swa)
            rope_angles(w->rope_swa + (size_t)t * (size_t)hp->n_rot, w->row_pos[t], hp->n_rot,
                        hp->rope_base_swa, hp->rope_scale_swa, rope_factors(m, w->row_seq[t]),
                        hp->rope_mscale);
    }

    for (int l = 0; l < hp->n_layer; l++) {
        const struct eng_layer *L = &m->layers[l];
        struct mm_item qkv[3] = {{&L->wq, w->q, q_dim, L->bq},
                                 {&L->wk, w->k, kv_dim, L->bk},
                                 {&L->wv, w->v, kv_dim, L->bv}};
        struct mm_item wo = {&L->wo, w->xn, E, NULL};
        struct mm_item ffn[2] = {{&L->w_gate, w->ff1, F, NULL}, {&L->w_up, w->ff2, F, NULL}};
        struct mm_item down = {&L->w_down, w->xn, E, NULL};
        const float *rope = L->swa && w->rope_swa ? w->rope_swa : w->rope;
        struct attn_job aj;

        norm_rows(pool, w->xn, w->x, L->attn_norm, n, E, hp->rms_eps);
        matmul(m, w, pool, w->xn, E, n, qkv, 3);

        /* Every row's K and V go into its sequence's cache before any
         * attention runs, so later rows of a sequence see earlier ones. */
        for (int t = 0; t < n; t++) {
            struct eng_seq *s = w->row_seq[t];
            float *q = w->q + (size_t)t * q_dim, *kk = w->k + (size_t)t * kv_dim;
            const float *cs = rope + (size_t)t * (size_t)hp->n_rot;
            int slot = L->swa ? w->row_pos[t] % s->ring : w->row_pos[t];
            size_t row = (s->kv_base[l] + (size_t)slot) * (size_t)kv_dim;
            for (int h = 0; h < hp->n_head; h++) {
                if (L->q_norm) rmsnorm(q + h * hd, q + h * hd, L->q_norm, hd, hp->rms_eps);
                rope_apply(q + h * hd, cs, hp->n_rot, hp->rope_neox);
            }
            for (int h = 0; h < hp->n_head_kv; h++) {
                if (L->k_norm) rmsnorm(kk + h * hd, kk + h * hd, L->k_norm, hd, hp->rms_eps);
                rope_apply(kk + h * hd, cs, hp->n_rot, hp->rope_neox);
            }
            if (q_first) /* the query scaled before it rounds to f16 */
                for (int c = 0; c < q_dim; c++) q[c] *= hp->q_scale;
            k->to_act[GGUF_T_F16](q, w->q16 + (size_t)t * q_dim, q_dim);
            k->to_act[GGUF_T_F16](kk, s->kc + row, kv_dim);
            k->to_act[GGUF_T_F16](w->v + (size_t)t * kv_dim, s->vc + row, kv_dim);
        }

        aj.m = m;
        aj.w = w;
        aj.layer = l;
        aj.n_tok = n;
        aj.max_ctx = max_ctx;
        aj.scale = q_first ? 1.0f : hp->q_scale;
        aj.bidir = 0;
        atomic_init(&aj.next, 0);
        cit_pool_run(pool, attn_worker, &aj);

        matmul(m, w, pool, w->att, q_dim, n, &wo, 1);
        if (L->post_attn_norm) norm_rows(pool, w->xn, w->xn, L->post_attn_norm, n, E, hp->rms_eps);
        for (size_t i = 0; i < (size_t)n * E; i++) w->x[i] += w->xn[i];

        norm_rows(pool, w->xn, w->x, L->ffn_norm, n, E, hp->rms_eps);
        if (hp->n_expert) {
            moe_ffn(m, w, pool, L, n);
        } else {
            matmul(m, w, pool, w->xn, E, n, ffn, 2);
            glu_rows(pool, hp->geglu, w->ff1, w->ff2, n, (size_t)n * F);
            matmul(m, w, pool, w->ff1, F, n, &down, 1);
        }
        if (L->post_ffn_norm) norm_rows(pool, w->xn, w->xn, L->post_ffn_norm, n, E, hp->rms_eps);
        for (size_t i = 0; i < (size_t)n * E; i++) w->x[i] += w->xn[i];
    }

    if (n_logits) {
        struct mm_item out = {&m->output, logits, hp->n_vocab, NULL};
        /* the wanted rows, gathered in order through the final norm */
        for (int j = 0; j < n_logits; j++)
            rmsnorm(w->xn + (size_t)j * E, w->x + (size_t)w->logit_rows[j] * E, m->output_norm, E,
                    hp->rms_eps);
        if (w->hidden) {
            memcpy(logits, w->xn, (size_t)n_logits * (size_t)E * sizeof(float));
            return;
        }
        matmul(m, w, pool, w->xn, E, n_logits, &out, 1);
        if (hp->final_softcap > 0)
            softcap_rows(logits, (size_t)n_logits * (size_t)hp->n_vocab, hp->final_softcap);
    }
}

int eng_seq_eval(struct eng_seq *s, struct cit_pool *pool, const int32_t *tokens, int n,
                 float *logits, int all_logits)
{
    int n_vocab = s->m->hp.n_vocab, rc;
    if (!s->m->hp.causal) return CIT_ENOTSUP; /* an encoder has no logits: eng_embed */
    if (n <= 0 || n > s->n_ctx - s->pos) return CIT_ERANGE;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab) return CIT_ERANGE;
    if ((rc = work_scores(&s->w, cit_pool_size(pool), s->n_ctx))) return rc;
    for (int done = 0; done < n;) {
        int b = n - done < s->w.n_batch ? n - done : s->w.n_batch, last = done + b == n, nl = 0;
        float *lg = NULL;
        for (int t = 0; t < b; t++) {
            s->w.row_seq[t] = s;
            s->w.row_pos[t] = s->pos + t;
        }
        if (all_logits) {
            lg = logits + (size_t)done * (size_t)n_vocab;
            for (int t = 0; t < b; t++) s->w.logit_rows[nl++] = t;
        } else if (last && logits) {
            lg = logits;
            s->w.logit_rows[nl++] = b - 1;
        }
        forward(s->m, &s->w, pool, tokens + done, b, nl, s->n_ctx, lg);
        s->pos += b;
        done += b;
    }
    return 0;
}

int eng_batch_eval(struct eng_batch *b, struct cit_pool *pool, const struct eng_batch_row *rows,
                   int n, float *logits)
{
    struct eng_work *w = &b->w;
    int n_vocab = b->m->hp.n_vocab, nl = 0, max_ctx = 1, rc = 0;
    if (!b->m->hp.causal) return CIT_ENOTSUP;
    if (n <= 0 || n > w->n_batch) return CIT_ERANGE;
    /* Positions follow each sequence's rows in order; everything is
     * checked before any cache is written, so a refused batch changes
     * nothing. */
    for (int t = 0; t < n; t++) rows[t].seq->pending = 0;
    for (int t = 0; t < n; t++) {
        struct eng_seq *s = rows[t].seq;
        if (s->m != b->m)
            rc = CIT_EINVAL;
        else if (rows[t].token < 0 || rows[t].token >= n_vocab)
            rc = CIT_ERANGE;
        else if (s->pos + s->pending >= s->n_ctx || s->pending >= s->max_rows)
            rc = CIT_ERANGE;
        if (rc) break;
        w->row_seq[t] = s;
        w->row_pos[t] = s->pos + s->pending++;
        b->tokens[t] = rows[t].token;
        if (rows[t].logits) w->logit_rows[nl++] = t;
        if (s->n_ctx > max_ctx) max_ctx = s->n_ctx;
    }
    if (!rc && nl && !logits) rc = CIT_EINVAL;
    if (!rc) rc = work_scores(w, cit_pool_size(pool), max_ctx);
    if (rc) {
        for (int t = 0; t < n; t++) rows[t].seq->pending = 0;
        return rc;
    }
    forward(b->m, w, pool, b->tokens, n, nl, max_ctx, logits);
    for (int t = 0; t < n; t++) {
        rows[t].seq->pos += rows[t].seq->pending;
        rows[t].seq->pending = 0;
    }
    return 0;
}

/* ---- embeddings ---- */

const char *eng_pooling_name(enum eng_pooling p)
{
    static const char *const names[] = {"none", "mean", "cls", "last", "rank"};
    return (unsigned)p < 5 ? names[p] : "?";
}

struct eng_embedder {
    const struct eng_model *m;
    struct eng_seq *s; /* encoders: one cache of capacity slots, inputs side by side */
    int capacity, max_input;
    float *h;     /* decoders: (n_batch, n_embd) the pooled rows' states */
    int32_t *tok; /* encoders: (capacity) a pass's tokens */
};

/* x = LayerNorm(x + y) over n rows of E (bert's residual and norm). */
static void add_layernorm(float *x, const float *y, const float *w, const float *b, int n, int E,
                          float eps)
{
    for (size_t i = 0; i < (size_t)n * (size_t)E; i++) x[i] += y[i];
    for (int t = 0; t < n; t++) layernorm(x + (size_t)t * E, x + (size_t)t * E, w, b, E, eps);
}

/* The bert encoder over tokens[0..n) in s's cache slots 0..n-1, rows
 * labelled by the caller (row_pos: the position in its input, row_first
 * and row_len: its input's slots): the last layer's states are left in
 * s->w.x. */
static void encode(struct eng_seq *s, struct cit_pool *pool, const int32_t *tokens, int n)
{
    const struct eng_model *m = s->m;
    const struct eng_hparams *hp = &m->hp;
    const struct eng_kernels *k = m->kern;
    struct eng_work *w = &s->w;
    const int E = hp->n_embd, F = hp->n_ff;
    float *tmp = w->xn; /* one row of scratch while the embeddings are summed */

    for (int t = 0; t < n; t++) {
        float *x = w->x + (size_t)t * E;
        k->dequant[m->tok_embd.type](m->tok_embd.data + (size_t)tokens[t] * m->tok_embd.row_bytes,
                                     x, E);
        k->dequant[m->tok_types.type](m->tok_types.data, tmp, E); /* token type 0 */
        for (int i = 0; i < E; i++) x[i] += tmp[i];
        k->dequant[m->pos_embd.type](
            m->pos_embd.data + (size_t)w->row_pos[t] * m->pos_embd.row_bytes, tmp, E);
        for (int i = 0; i < E; i++) x[i] += tmp[i];
        layernorm(x, x, m->embd_norm, m->embd_norm_b, E, hp->norm_eps);
        w->row_seq[t] = s;
    }
    for (int l = 0; l < hp->n_layer; l++) {
        const struct eng_layer *L = &m->layers[l];
        struct mm_item qkv[3] = {
            {&L->wq, w->q, E, L->bq}, {&L->wk, w->k, E, L->bk}, {&L->wv, w->v, E, L->bv}};
        struct mm_item wo = {&L->wo, w->xn, E, L->bo};
        struct mm_item up = {&L->w_up, w->ff1, F, L->b_up};
        struct mm_item down = {&L->w_down, w->xn, E, L->b_down};
        struct attn_job aj = {.m = m,
                              .w = w,
                              .layer = l,
                              .n_tok = n,
                              .max_ctx = s->n_ctx,
                              .scale = hp->q_scale,
                              .bidir = 1};
        matmul(m, w, pool, w->x, E, n, qkv, 3);
        for (int t = 0; t < n; t++) {
            size_t row = (s->kv_base[l] + (size_t)t) * (size_t)E;
            k->to_act[GGUF_T_F16](w->q + (size_t)t * E, w->q16 + (size_t)t * E, E);
            k->to_act[GGUF_T_F16](w->k + (size_t)t * E, s->kc + row, E);
            k->to_act[GGUF_T_F16](w->v + (size_t)t * E, s->vc + row, E);
        }
        atomic_init(&aj.next, 0);
        cit_pool_run(pool, attn_worker, &aj);
        matmul(m, w, pool, w->att, E, n, &wo, 1);
        add_layernorm(w->x, w->xn, L->attn_norm, L->attn_norm_b, n, E, hp->norm_eps);
        matmul(m, w, pool, w->x, E, n, &up, 1);
        glu_rows(pool, 1, w->ff1, NULL, n, (size_t)n * F);
        matmul(m, w, pool, w->ff1, F, n, &down, 1);
        add_layernorm(w->x, w->xn, L->ffn_norm, L->ffn_norm_b, n, E, hp->norm_eps);
    }
}

int eng_embedder_new(const struct eng_model *m, int capacity, struct eng_embedder **out)
{
    const struct eng_hparams *hp = &m->hp;
    struct eng_embedder *e;
    int rc;
    if (!m->layers) return CIT_EINVAL;
    if (capacity <= 0) capacity = hp->n_ctx_train;
    if (capacity > (1 << 20)) return CIT_ERANGE;
    e = cit_calloc(1, sizeof(*e));
    if (!e) return CIT_ENOMEM;
    e->m = m;
    e->capacity = capacity;
    e->max_input = capacity < hp->n_ctx_train ? capacity : hp->n_ctx_train;
    /* an encoder's pass holds every input whole; a decoder's sequence
     * takes one input in passes of the usual batch */
    rc = eng_seq_new_batch(m, hp->causal ? e->max_input : capacity, hp->causal ? 0 : capacity,
                           &e->s);
    if (!rc && hp->causal &&
        !(e->h = cit_malloc((size_t)e->s->w.n_batch * (size_t)hp->n_embd * sizeof(float))))
        rc = CIT_ENOMEM;
    if (!rc && !hp->causal && !(e->tok = cit_calloc((size_t)capacity, sizeof(int32_t))))
        rc = CIT_ENOMEM;
    if (rc) {
        eng_embedder_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

void eng_embedder_free(struct eng_embedder *e)
{
    if (!e) return;
    eng_seq_free(e->s);
    cit_free(e->h);
    cit_free(e->tok);
    cit_free(e);
}

int eng_embedder_max_input(const struct eng_embedder *e)
{
    return e->max_input;
}

static void finish_vec(float *v, int E, int n, enum eng_pooling pooling, int normalize)
{
    double norm = 0;
    if (pooling == ENG_POOL_MEAN)
        for (int c = 0; c < E; c++) v[c] /= (float)n;
    if (!normalize) return;
    for (int c = 0; c < E; c++) norm += (double)v[c] * v[c];
    if (norm > 0)
        for (int c = 0; c < E; c++) v[c] = (float)(v[c] / sqrt(norm));
}

/* Whether position t of an input of n tokens goes into its pooled vector. */
static int pooled(enum eng_pooling p, int t, int n)
{
    return p == ENG_POOL_MEAN || t == (p == ENG_POOL_CLS ? 0 : n - 1);
}

/* A decoder: one input through forward in passes, the pooled rows'
 * final-normed states summed. */
static void embed_decoder(struct eng_embedder *e, struct cit_pool *pool,
                          const struct eng_embed_in *in)
{
    const struct eng_hparams *hp = &e->m->hp;
    struct eng_seq *s = e->s;
    struct eng_work *w = &s->w;
    const int E = hp->n_embd;
    w->hidden = 1;
    for (int done = 0; done < in->n;) {
        int b = in->n - done < w->n_batch ? in->n - done : w->n_batch, nl = 0;
        for (int t = 0; t < b; t++) {
            w->row_seq[t] = s;
            w->row_pos[t] = done + t;
            if (pooled(hp->pooling, done + t, in->n)) w->logit_rows[nl++] = t;
        }
        forward(e->m, w, pool, in->ids + done, b, nl, s->n_ctx, e->h);
        for (int j = 0; j < nl; j++)
            for (int c = 0; c < E; c++) in->out[c] += e->h[(size_t)j * E + c];
        done += b;
    }
    w->hidden = 0;
}

int eng_embed(struct eng_embedder *e, struct cit_pool *pool, const struct eng_embed_in *in,
              int n_in, int normalize)
{
    const struct eng_hparams *hp = &e->m->hp;
    struct eng_seq *s = e->s;
    struct eng_work *w = &s->w;
    const int E = hp->n_embd;
    int rc;
    if (hp->pooling == ENG_POOL_NONE || hp->pooling == ENG_POOL_RANK) return CIT_ENOTSUP;
    for (int i = 0; i < n_in; i++) {
        if (in[i].n <= 0 || in[i].n > e->max_input) return CIT_ERANGE;
        for (int t = 0; t < in[i].n; t++)
            if (in[i].ids[t] < 0 || in[i].ids[t] >= hp->n_vocab) return CIT_ERANGE;
    }
    if ((rc = work_scores(w, cit_pool_size(pool), s->n_ctx))) return rc;
    for (int i = 0; i < n_in; i++)
        for (int c = 0; c < E; c++) in[i].out[c] = 0;
    if (hp->causal) {
        for (int i = 0; i < n_in; i++) {
            embed_decoder(e, pool, &in[i]);
            finish_vec(in[i].out, E, in[i].n, hp->pooling, normalize);
        }
        return 0;
    }
    /* an encoder: as many whole inputs per pass as fit, side by side in
     * the cache, each attending to its own slots only */
    for (int first = 0; first < n_in;) {
        int last = first, n = 0;
        int32_t *tok = e->tok;
        while (last < n_in && n + in[last].n <= e->capacity) {
            for (int t = 0; t < in[last].n; t++) {
                tok[n + t] = in[last].ids[t];
                w->row_pos[n + t] = t;
                w->row_first[n + t] = n;
                w->row_len[n + t] = in[last].n;
            }
            n += in[last++].n;
        }
        encode(s, pool, tok, n);
        for (int i = first, off = 0; i < last; off += in[i++].n) {
            for (int t = 0; t < in[i].n; t++)
                if (pooled(hp->pooling, t, in[i].n))
                    for (int c = 0; c < E; c++) in[i].out[c] += w->x[(size_t)(off + t) * E + c];
            finish_vec(in[i].out, E, in[i].n, hp->pooling, normalize);
        }
        first = last;
    }
    return 0;
}
