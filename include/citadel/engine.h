/*
 * engine: run llama-family GGUF models on the CPU.
 *
 * One eng_model (weights mmap'd read-only, hyperparameters, vocabulary) is
 * immutable after load and shared by any number of eng_seq, each with its
 * own KV cache and scratch buffers. There is no global state: the thread
 * pool is passed to each call, so a server can share one pool across
 * sequences or give each its own.
 *
 * Supported: architectures llama (Llama 2/3, Mistral, TinyLlama, Mixtral-
 * style experts), qwen2, qwen3, phi3, gemma2, gemma3, qwen2moe, qwen3moe,
 * and the bert encoder for embeddings; tensor types f32, f16, bf16, q8_0,
 * q4_0, q4_K, q5_K, q6_K; tokenizers SentencePiece-style ("llama"),
 * byte-level BPE ("gpt2") and WordPiece ("bert").
 */
#ifndef CITADEL_ENGINE_H
#define CITADEL_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "citadel/core.h"
#include "citadel/gguf.h"

struct eng_model;
struct eng_seq;

enum eng_arch {
    ENG_ARCH_LLAMA,
    ENG_ARCH_QWEN2,
    ENG_ARCH_QWEN3,
    ENG_ARCH_PHI3,
    ENG_ARCH_GEMMA2,
    ENG_ARCH_GEMMA3,
    ENG_ARCH_QWEN2MOE,
    ENG_ARCH_QWEN3MOE,
    ENG_ARCH_BERT,
};
/* How eng_embed pools a sequence's states, as <arch>.pooling_type gives it
 * (the values are the GGUF key's). NONE: the file names no pooling, so it
 * is not an embedding model; RANK (rerankers) is not run. */
enum eng_pooling { ENG_POOL_NONE, ENG_POOL_MEAN, ENG_POOL_CLS, ENG_POOL_LAST, ENG_POOL_RANK };
enum eng_vocab_type { ENG_VOCAB_SPM, ENG_VOCAB_BPE, ENG_VOCAB_WPM };

struct eng_hparams {
    enum eng_arch arch;
    int n_vocab;
    int n_ctx_train;
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim; /* key/query head size */
    int n_ff;
    int n_rot; /* rotary dimensions per head */
    float rope_base;
    float rms_eps;
    int rope_neox; /* rotate halves (qwen, phi3) instead of adjacent pairs (llama) */
    int tied_output;
    /* Sliding-window attention: on the layers it applies to, a query at
     * position p sees positions p - n_swa + 1 .. p only (0: no window).
     * Those layers keep a KV ring of n_swa + one batch instead of the
     * whole context. gemma2: every other layer from 0; gemma3: five of
     * every six; phi3: every layer. */
    int n_swa;
    int swa_pattern;      /* layer l is windowed when l % pattern < pattern - 1 (1: all) */
    int n_swa_layers;     /* layers that use the window */
    float rope_base_swa;  /* rope base of the windowed layers (gemma3: 10000) */
    float rope_scale;     /* linear rope scaling: positions multiplied by this (1: none) */
    float rope_scale_swa; /* the same for the windowed layers (gemma3: 1) */
    float rope_mscale;    /* cos and sin times this (LongRoPE's attn_factor), or 1 */
    int n_ctx_orig;       /* rope.scaling.original_context_length: LongRoPE's long
                           * factors serve sequences with a longer context */
    float attn_softcap;   /* scores become c * tanh(s / c) before softmax (0: none), gemma2 */
    float final_softcap;  /* the same on the logits, gemma2 */
    float embd_scale;     /* token embeddings multiplied by this (gemma: sqrt(n_embd)), or 1 */
    float q_scale;        /* the query's scale before attention: 1/sqrt(head size) mostly */
    int geglu;            /* FFN gate activation: tanh-approximated GELU, not SiLU (gemma) */
    int post_norms;       /* RMS norms after attention and after the FFN (gemma) */
    /* Mixture of experts (0 experts: a dense FFN). A router picks
     * n_expert_used of n_expert FFNs (each n_ff_exp wide) per token by
     * softmax; their weights are renormalised to sum 1 when expert_norm.
     * qwen2moe adds a shared expert (n_ff_shexp wide) under a sigmoid gate. */
    int n_expert, n_expert_used, n_ff_exp, n_ff_shexp, expert_norm;
    /* Encoders (bert): every position attends to every other (causal 0),
     * learned position and token-type embeddings, LayerNorm after each
     * sublayer (norm_eps), no output head: the model only embeds. */
    int causal;
    int n_tok_types;
    float norm_eps;
    enum eng_pooling pooling;
};

/* Loads and validates a model: every tensor the architecture needs must be
 * present with the right shape and a supported type. */
int eng_model_load(const char *path, struct eng_model **out /* out */, struct cit_err *err);
/* eng_model_load with a check on the mapped file before it is parsed
 * (gguf_open_checked): how border control enforces admission at load. */
int eng_model_load_checked(const char *path, gguf_check_fn check, void *ctx,
                           struct eng_model **out /* out */, struct cit_err *err);
/* The whole validation of eng_model_load (the reader's, the architecture's
 * hyperparameters, every tensor's presence, type and shape, the
 * tokenizer) without preparing the weights for evaluation: for admission.
 * The model it returns can tokenize and be inspected, not evaluated. */
int eng_model_check(const char *path, struct eng_model **out /* out */, struct cit_err *err);
void eng_model_free(struct eng_model *m);
const struct eng_hparams *eng_model_hparams(const struct eng_model *m);
const struct gguf_file *eng_model_gguf(const struct eng_model *m);
const char *eng_arch_name(enum eng_arch a);
/* The architecture named name (n bytes, as general.architecture gives
 * it), or -1 when the engine has none of that name. */
int eng_arch_parse(const char *name, size_t n);
/* The architectures the engine runs, for messages: "llama, qwen2, ...". */
const char *eng_arch_list(void);
/* 1 when the engine reads weights of GGUF type type; the names of all
 * it reads, for messages ("f32, f16, ..."), into out. */
int eng_type_supported(uint32_t type);
void eng_type_list(char *out, size_t cap);
/* Bytes of weights read to decode one token (every matrix once, plus one
 * embedding row; of a mixture of experts only the experts used per
 * token); used by benchmarks for the bandwidth bound. */
uint64_t eng_model_weight_bytes(const struct eng_model *m);
/* Of those, the bytes of the experts one token uses (0 without experts). */
uint64_t eng_model_expert_bytes(const struct eng_model *m);
/* Name of the kernel set in use ("avx2", "scalar"). */
const char *eng_kernels_name(void);
/* The kernel sets this build contains, space-separated. */
const char *eng_kernels_built(void);

/* ---- sequences ---- */

/* A sequence with room for n_ctx tokens (0: the model's training context). */
int eng_seq_new(const struct eng_model *m, int n_ctx, struct eng_seq **out /* out */);
void eng_seq_free(struct eng_seq *s);
void eng_seq_reset(struct eng_seq *s);    /* forget all tokens */
int eng_seq_pos(const struct eng_seq *s); /* tokens in the cache */
int eng_seq_ctx(const struct eng_seq *s); /* tokens it can hold */

/* ---- embeddings ----
 *
 * An input's embedding: the last layer's states (decoders: after the
 * final norm) of its tokens (with the [CLS]/[SEP] or BOS the tokenizer
 * adds), pooled as the file says (the mean over every position, the
 * first, or the last), divided by its L2 norm when normalize. An encoder
 * runs several inputs in one pass, each attending within itself, so every
 * weight read serves them all; a decoder runs them one after another. */
struct eng_embedder;
struct eng_embed_in {
    const int32_t *ids;
    int n;
    float *out; /* n_embd floats */
};
/* Scratch for passes of up to capacity tokens (0: the model's training
 * context); an input may be at most min(capacity, that context) long. */
int eng_embedder_new(const struct eng_model *m, int capacity, struct eng_embedder **out /* out */);
void eng_embedder_free(struct eng_embedder *e);
/* The longest input it takes. */
int eng_embedder_max_input(const struct eng_embedder *e);
/* Embeds in[0..n_in). CIT_ENOTSUP when the model names no pooling (not an
 * embedding model), CIT_ERANGE for an empty or too long input or an id
 * outside the vocabulary (checked before anything runs). */
int eng_embed(struct eng_embedder *e, struct cit_pool *pool, const struct eng_embed_in *in,
              int n_in, int normalize);
const char *eng_pooling_name(enum eng_pooling p);

/* ---- many sequences in one pass ----
 *
 * Continuous batching: rows from several sequences (a prefill chunk of one,
 * the next token of others) go through the model together, so every weight
 * byte read from memory serves all of them. Each row is appended to its
 * sequence at that sequence's next position; rows of one sequence must
 * come in order. */
struct eng_batch;
struct eng_batch_row {
    struct eng_seq *seq;
    int32_t token;
    int logits; /* nonzero: write this row's logits */
};

/* Scratch for batches of up to capacity rows. */
int eng_batch_new(const struct eng_model *m, int capacity, struct eng_batch **out /* out */);
void eng_batch_free(struct eng_batch *b);
/* Evaluates the rows; logits receives one n_vocab row per row that asked,
 * in row order. Everything is checked first (sequence of another model:
 * CIT_EINVAL; token outside the vocabulary, a full context, more rows than
 * capacity: CIT_ERANGE), and a refused batch changes no sequence. */
int eng_batch_eval(struct eng_batch *b, struct cit_pool *pool, const struct eng_batch_row *rows,
                   int n, float *logits /* out */);

/* ---- tokenizer ---- */

enum eng_token_attr {
    ENG_TOK_NORMAL = 1,
    ENG_TOK_UNKNOWN = 2,
    ENG_TOK_CONTROL = 3,
    ENG_TOK_USER_DEFINED = 4,
    ENG_TOK_UNUSED = 5,
    ENG_TOK_BYTE = 6,
};

struct eng_vocab_info {
    enum eng_vocab_type type;
    const char *pre; /* BPE pre-tokenizer name ("gpt2", "llama3", ...) */
    int n_tokens;
    int bos, eos, eot, unk, pad; /* -1 when absent */
    int add_bos, add_eos, add_space_prefix;
};

const struct eng_vocab_info *eng_vocab(const struct eng_model *m);

/* Tokenizes text[0..len). add_special: add BOS/EOS as the model asks.
 * parse_special: recognise control tokens written in the text ("<|im_end|>").
 * Writes at most cap ids and the full count into *n_out; CIT_EOVERFLOW when
 * cap was too small (call again with *n_out). */
int eng_tokenize(const struct eng_model *m, const char *text, size_t len, int add_special,
                 int parse_special, int32_t *ids /* out */, int cap, int *n_out /* out */);

/* The bytes of one token (control tokens give "" unless render_special).
 * Returns the byte count, or CIT_EOVERFLOW / CIT_ERANGE. */
int eng_token_piece(const struct eng_model *m, int32_t id, int render_special, char *buf,
                    size_t cap);
int eng_token_is_eog(const struct eng_model *m, int32_t id); /* end of generation */

/* Streaming detokenizer: holds back bytes until a UTF-8 sequence is whole, so
 * text can be printed token by token without splitting characters. */
struct eng_detok {
    char pending[8];
    int n_pending;
};
/* Appends the piece of id to out (cap bytes); returns bytes written. */
int eng_detok_push(const struct eng_model *m, struct eng_detok *d, int32_t id, char *out,
                   size_t cap);
/* Flushes an incomplete trailing sequence as U+FFFD. */
int eng_detok_flush(struct eng_detok *d, char *out, size_t cap);

/* ---- chat templates ---- */

enum eng_chat_tmpl {
    ENG_CHAT_CHATML,
    ENG_CHAT_LLAMA2,
    ENG_CHAT_LLAMA3,
    ENG_CHAT_MISTRAL,
    ENG_CHAT_ZEPHYR,
    ENG_CHAT_PHI3,
    ENG_CHAT_GEMMA,
};

struct eng_chat_msg {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
};

const char *eng_chat_tmpl_name(enum eng_chat_tmpl t);
/* Recognises the model's tokenizer.chat_template (never executes it);
 * ChatML when absent or unrecognised. *recognised says which. */
enum eng_chat_tmpl eng_chat_detect(const struct eng_model *m, int *recognised /* out */);
enum eng_chat_tmpl eng_chat_detect_str(const char *tmpl, size_t len, int *recognised /* out */);
int eng_chat_tmpl_from_name(const char *name, enum eng_chat_tmpl *out /* out */);
/* Renders messages, ending with the assistant prompt when add_assistant.
 * *out is allocated with cit_malloc; the caller frees it. */
int eng_chat_render(enum eng_chat_tmpl t, const struct eng_chat_msg *msgs, int n, int add_assistant,
                    const char *bos, char **out /* out */);

/* ---- stop strings ----
 *
 * Given all text generated so far, says whether a stop string occurred
 * and how much may be shown now: everything up to the first occurrence of
 * any stop string (returns 1), or everything except a tail that could
 * still become one (returns 0). Streaming servers and the CLI both emit
 * text[0..*emit) and keep the rest. */
int eng_stop_check(const char *const *stops, int n_stops, const char *text, size_t len,
                   size_t *emit /* out */);

/* ---- sampling ---- */

struct eng_logit_bias {
    int32_t token;
    float bias; /* added to the token's logit; -100 bans it in effect */
};

struct eng_sampler_params {
    float temperature;    /* 0: greedy */
    int top_k;            /* 0: off */
    float top_p;          /* 1: off */
    float min_p;          /* 0: off */
    float repeat_penalty; /* 1: off */
    int repeat_last_n;    /* tokens the penalty looks back over */
    /* OpenAI's penalties, -2 to 2 (0: off), over the tokens this sampler
     * drew: logit -= count * frequency_penalty + (count > 0) * presence_penalty */
    float frequency_penalty, presence_penalty;
    const struct eng_logit_bias *logit_bias; /* copied by eng_sampler_new */
    int n_logit_bias;
    uint64_t seed;
};

void eng_sampler_defaults(struct eng_sampler_params *p);

struct eng_sampler;
int eng_sampler_new(const struct eng_sampler_params *p, int n_vocab,
                    struct eng_sampler **out /* out */);
void eng_sampler_free(struct eng_sampler *s);
/* Picks the next token; history is the tokens so far (for the repetition
 * penalty). logits are modified in place: logit_bias, then the frequency
 * and presence penalties, then the repetition penalty, then the filters.
 * The token returned counts as drawn for the penalties. eng_sampler_new
 * refuses a bias on a token outside the vocabulary (CIT_ERANGE). */
int32_t eng_sample(struct eng_sampler *s, float *logits, const int32_t *history, int n_history);

/* ---- grammar-constrained sampling ----
 *
 * A grammar is a graph of JSON value nodes, built by a schema compiler
 * (the HTTP module's, from JSON Schema): reserve a node with eng_gram_add,
 * give it its kind with one eng_gram_set_* (references may point at nodes
 * not yet set, for recursion), then eng_gram_finish with the root. A
 * finished grammar is immutable and shared between threads by reference.
 *
 * A state follows one generation through the grammar; eng_gram_mask
 * says which tokens may come next (the end-of-generation tokens only once
 * the value is complete), eng_gram_feed_token moves on. The matcher
 * accepts a finite, unambiguous subset of what the schema allows: members
 * in the given order (optional ones may be skipped), no \u escapes, short
 * whitespace runs, numbers of at most 16 digits per part (2 in exponents),
 * nesting up to 32.
 */
struct eng_gram;
int eng_gram_new(struct eng_gram **out /* out */);
struct eng_gram *eng_gram_ref(struct eng_gram *g); /* one more reference */
void eng_gram_free(struct eng_gram *g);            /* drops one reference */
/* Reserves a node: its id (>= 0), CIT_ERANGE past 65536 nodes. */
int eng_gram_add(struct eng_gram *g);
int eng_gram_set_any(struct eng_gram *g, int id); /* any JSON value */
/* A string of min_len to max_len characters (max_len -1: no limit). */
int eng_gram_set_string(struct eng_gram *g, int id, int min_len, int max_len);
int eng_gram_set_number(struct eng_gram *g, int id, int integer);
/* One of up to 64 JSON texts, each written exactly so (lens NULL: strlen). */
int eng_gram_set_literals(struct eng_gram *g, int id, const char *const *lits, const size_t *lens,
                          int n);
int eng_gram_set_array(struct eng_gram *g, int id, int item, int min_items, int max_items);
/* An object of up to 64 members in this order; keys are JSON string texts
 * with their quotes ("\"name\""); members not required may be left out. */
int eng_gram_set_object(struct eng_gram *g, int id, const char *const *keys, const size_t *key_lens,
                        const int *values, const unsigned char *required, int n);
/* An object with any keys, every value of node value. */
int eng_gram_set_map(struct eng_gram *g, int id, int value);
/* One of up to 64 alternatives, which must begin with different bytes. */
int eng_gram_set_anyof(struct eng_gram *g, int id, const int *alts, int n);
/* Checks and seals: CIT_EINVAL with *bad_node naming a node never set, or
 * an anyOf whose alternatives overlap in their first bytes. */
int eng_gram_finish(struct eng_gram *g, int root, int *bad_node /* out */);

struct eng_gram_state;
int eng_gram_state_new(const struct eng_gram *g, struct eng_gram_state **out /* out */);
void eng_gram_state_free(struct eng_gram_state *s);
int eng_gram_state_copy(struct eng_gram_state *dst, const struct eng_gram_state *src);
/* Feeds bytes: 0, or CIT_EINVAL with the state unchanged. */
int eng_gram_feed(struct eng_gram_state *s, const char *bytes, size_t n);
int eng_gram_can_end(const struct eng_gram_state *s); /* the text so far is a whole value */
int eng_gram_done(const struct eng_gram_state *s);    /* whole, and nothing may follow */

/* A model's tokens as the grammar sees them: their bytes in a trie.
 * Built once per model (milliseconds), read by any number of states. */
struct eng_gram_vocab;
int eng_gram_vocab_new(const struct eng_model *m, struct eng_gram_vocab **out /* out */);
void eng_gram_vocab_free(struct eng_gram_vocab *v);
int eng_gram_vocab_tokens(const struct eng_gram_vocab *v);
/* Sets bit t of mask ((n_vocab + 31) / 32 words) for every token t that
 * may come next; returns how many (0: none can), or CIT_ENOMEM. The state
 * is not moved (it keeps scratch for the walk). */
int eng_gram_mask(const struct eng_gram_vocab *v, struct eng_gram_state *s, uint32_t *mask);
/* Moves the state over token tok: 0, or CIT_EINVAL (state unchanged) for
 * a token the mask would refuse. */
int eng_gram_feed_token(const struct eng_gram_vocab *v, struct eng_gram_state *s, int32_t tok);

/* ---- quantization recipes and synthetic models ---- */

enum eng_qmix { ENG_QMIX_Q8_0, ENG_QMIX_Q4_0, ENG_QMIX_Q4_K_M, ENG_QMIX_Q5_K_M, ENG_QMIX_Q6_K };

/* "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k". */
int eng_qmix_from_name(const char *name, enum eng_qmix *out /* out */);
uint32_t eng_qmix_file_type(enum eng_qmix mix); /* general.file_type value */
/* The type a tensor gets in a recipe. 1-D tensors stay f32; rows that do not
 * fit the recipe's block size fall back to q8_0 or keep src_type. */
uint32_t eng_qmix_pick(enum eng_qmix mix, const char *name, uint32_t n_dims, uint64_t ne0,
                       uint32_t src_type, int n_layer, int tied_output);
/* Converts n f32 values into a row of type t (f32, f16, bf16, q8_0, q4_0,
 * q4_K, q5_K, q6_K); CIT_ENOTSUP for other types. */
int eng_quantize_row(uint32_t t, const float *x, void *dst, int n);

/* A llama-shaped model with random weights and a SentencePiece vocabulary
 * of placeholder tokens: for benchmarks and tests, never for answers. */
struct eng_synth_spec {
    /* "llama", "qwen2" (adds q/k/v biases), "qwen3" (q/k norms) or "bert"
     * (an encoder with mean pooling; n_ctx learned positions) */
    const char *arch;
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    int use_mix; /* 1: weights typed by mix; 0: every matrix wtype */
    enum eng_qmix mix;
    uint32_t wtype;
    int tied; /* no output.weight */
    uint64_t seed;
    int n_expert, n_expert_used; /* llama only: experts of n_ff each (0: dense) */
};

#endif
