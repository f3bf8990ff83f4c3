/* Embeddings: the bert encoder against llama.cpp's reference, its
 * WordPiece tokenizer on cases worked out by hand, and pooling of decoder
 * states (qwen3 with a pooling type) checked against the logits path. */
#include <math.h>
#include <stdlib.h>

#include "citadel/engine.h"
#include "../src/engine/eng_int.h"
#include "citadel/gguf.h"
#include "test.h"
#include "../src/core/core_int.h"

static struct tj *load_json(const char *name)
{
    size_t n;
    char *text = t_read_file(t_model_path(name), &n);
    struct tj *j = text ? tj_parse(text, n) : NULL;
    cit_free(text);
    return j;
}

static double cosine(const float *a, const float *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / sqrt(aa * bb);
}

/* Every case on every kernel set: the exact prompt tokens ([CLS] ...
 * [SEP]), then the pooled, normalised vector within cosine 0.999 of the
 * reference (the README's bound for this F16 file; the mistakes it lists,
 * a causal mask or CLS pooling or a missing embedding, land at 0.94 and
 * below). */
void test_ref_synth_bert(void)
{
    struct eng_kernels sets[T_MAX_KERNEL_SETS];
    int n_sets = t_kernel_sets(sets);
    struct tj *ref = load_json("synth-bert.ref.json");
    struct eng_model *m;
    struct cit_pool *pool;
    struct cit_err err;
    const struct tj *cases;
    const struct eng_hparams *hp;
    CHECKF(ref, "cannot read synth-bert.ref.json");
    CHECKF(eng_model_load(t_model_path("synth-bert.gguf"), &m, &err) == 0, "%s", err.msg);
    hp = eng_model_hparams(m);
    CHECKF(hp->arch == ENG_ARCH_BERT && !hp->causal && hp->pooling == ENG_POOL_MEAN &&
               hp->n_embd == (int)tj_get(ref, "n_embd")->num && hp->norm_eps == 1e-12f,
           "arch %d causal %d pooling %d", (int)hp->arch, hp->causal, (int)hp->pooling);
    CHECK(cit_pool_create(2, &pool) == 0);
    cases = tj_get(ref, "cases");
    CHECK(cases->n <= 8);
    for (int s = 0; s < n_sets && !t_failed(); s++) {
        double worst = 1;
        float all[8][512], one_pass = 0;
        int32_t all_ids[8][128];
        struct eng_embed_in ins[8];
        struct eng_embedder *em;
        m->kern = &sets[s];
        CHECK(eng_embedder_new(m, 0, &em) == 0 && eng_embedder_max_input(em) == 512);
        for (int c = 0; c < cases->n && !t_failed(); c++) {
            const struct tj *cs = &cases->items[c], *want = tj_get(cs, "prompt_tokens"),
                            *emb = tj_get(cs, "embedding");
            const char *prompt = tj_get(cs, "prompt")->str;
            int32_t *ids = all_ids[c];
            int n = 0;
            float *out = all[c], refv[512];
            struct eng_embed_in in;
            double cs_;
            CHECK(eng_tokenize(m, prompt, strlen(prompt), 1, 0, ids, 128, &n) == 0);
            CHECKF(n == want->n, "case %d: %d tokens, reference %d", c, n, want->n);
            for (int i = 0; i < n; i++)
                CHECKF(ids[i] == (int)want->items[i].num, "case %d token %d: %d, reference %d", c,
                       i, ids[i], (int)want->items[i].num);
            CHECK(emb->n == hp->n_embd && hp->n_embd <= 512);
            for (int i = 0; i < emb->n; i++) refv[i] = (float)emb->items[i].num;
            in = (struct eng_embed_in){ids, n, out};
            CHECK(eng_embed(em, pool, &in, 1, 1) == 0);
            cs_ = cosine(out, refv, hp->n_embd);
            if (cs_ < worst) worst = cs_;
            CHECKF(cs_ >= 0.999, "%s case %d: cosine %.6f < 0.999", sets[s].name, c, cs_);
            ins[c] = (struct eng_embed_in){ids, n, NULL};
        }
        /* every case in one pass, side by side: the vectors one by one */
        {
            float again[8][512];
            for (int c = 0; c < cases->n; c++) ins[c].out = again[c];
            CHECK(eng_embed(em, pool, ins, cases->n, 1) == 0);
            for (int c = 0; c < cases->n; c++)
                for (int i = 0; i < hp->n_embd; i++)
                    if (fabsf(again[c][i] - all[c][i]) > one_pass)
                        one_pass = fabsf(again[c][i] - all[c][i]);
            CHECKF(one_pass <= 1e-6f, "%s: one pass differs from one by one by %g", sets[s].name,
                   (double)one_pass);
        }
        eng_embedder_free(em);
        t_note("synth-bert, %s kernels: worst cosine with the reference %.8f (1 - cos %.1e); "
               "%d inputs in one pass within %.1e of one by one",
               sets[s].name, worst, 1 - worst, cases->n, (double)one_pass);
    }
    cit_pool_free(pool);
    eng_model_free(m);
    tj_free(ref);
}

/* An encoder cannot decode; an input is at most its context, and passes
 * hold whole inputs: a small capacity splits a call into several passes
 * with the same results. */
void test_embed_bert_limits(void)
{
    struct eng_model *m;
    struct eng_seq *seq;
    struct eng_embedder *em, *small;
    struct cit_pool *pool;
    struct cit_err err;
    int32_t *ids;
    float out[3][128], out2[3][128];
    struct eng_embed_in in;
    CHECKF(eng_model_load(t_model_path("synth-bert.gguf"), &m, &err) == 0, "%s", err.msg);
    CHECK(cit_pool_create(2, &pool) == 0);
    CHECK(eng_seq_new(m, 0, &seq) == 0);
    CHECK(eng_embedder_new(m, 0, &em) == 0 && eng_embedder_new(m, 16, &small) == 0 &&
          eng_embedder_max_input(small) == 16);
    ids = cit_calloc(513, sizeof(int32_t));
    for (int i = 0; i < 513; i++) ids[i] = 200 + i % 300;
    CHECK(eng_seq_eval(seq, pool, ids, 4, out[0], 0) == CIT_ENOTSUP);
    in = (struct eng_embed_in){ids, 513, out[0]};
    CHECK(eng_embed(em, pool, &in, 1, 1) == CIT_ERANGE);
    in.n = 17;
    CHECK(eng_embed(small, pool, &in, 1, 1) == CIT_ERANGE);
    in.n = 0;
    CHECK(eng_embed(em, pool, &in, 1, 1) == CIT_ERANGE);
    ids[3] = 746;
    in.n = 8;
    CHECK(eng_embed(em, pool, &in, 1, 1) == CIT_ERANGE);
    ids[3] = 200;
    in.n = 512;
    CHECK(eng_embed(em, pool, &in, 1, 1) == 0);
    {
        /* 10 + 10 + 6 tokens: one pass of 26, or three passes of a 16-slot
         * embedder (10, 10 + 6) */
        struct eng_embed_in a[3] = {{ids, 10, out[0]},
                                    {ids + 10, 10, out[1]},
                                    {ids + 30, 6, out[2]}},
                            b[3] = {{ids, 10, out2[0]},
                                    {ids + 10, 10, out2[1]},
                                    {ids + 30, 6, out2[2]}};
        float worst = 0;
        CHECK(eng_embed(em, pool, a, 3, 0) == 0 && eng_embed(small, pool, b, 3, 0) == 0);
        for (int i = 0; i < 3; i++)
            for (int c = 0; c < 128; c++)
                if (fabsf(out[i][c] - out2[i][c]) > worst) worst = fabsf(out[i][c] - out2[i][c]);
        CHECKF(worst <= 1e-5f, "passes of 16 differ by %g", (double)worst);
    }
    cit_free(ids);
    eng_seq_free(seq);
    eng_embedder_free(em), eng_embedder_free(small);
    cit_pool_free(pool);
    eng_model_free(m);
}

/* WordPiece on cases worked out by hand from synth-bert's vocabulary. */
void test_wordpiece(void)
{
    static const struct {
        const char *text;
        int n;
        int32_t ids[16];
    } cases[] = {
        /* case and accents fold away; punctuation is a word of its own */
        {"HÉLLO, Wörld!", 6, {101, 711, 105, 400, 108, 102}},
        /* continuation pieces: "hello" then "ing" */
        {"helloing", 4, {101, 711, 722, 102}},
        /* a word that cannot be cut whole is one [UNK], its pieces dropped */
        {"qzx\xe2\x82\xac dog", 4, {101, 100, 521, 102}},
        /* an ASCII symbol splits like punctuation; a control character is
         * dropped; tabs and newlines separate words */
        {"dog$dog\x01\tdog\ndog", 7, {101, 521, 124, 521, 521, 521, 102}},
        /* empty: the special tokens alone */
        {"", 2, {101, 102}},
    };
    struct eng_model *m;
    struct cit_err err;
    CHECKF(eng_model_load_vocab(t_model_path("synth-bert.gguf"), &m, &err) == 0, "%s", err.msg);
    CHECK(eng_vocab(m)->type == ENG_VOCAB_WPM && eng_vocab(m)->unk == 100 &&
          eng_vocab(m)->bos == 101 && eng_vocab(m)->eos == 102);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        int32_t ids[32];
        int n = 0;
        CHECK(eng_tokenize(m, cases[c].text, strlen(cases[c].text), 1, 0, ids, 32, &n) == 0);
        CHECKF(n == cases[c].n, "'%s': %d tokens, expected %d", cases[c].text, n, cases[c].n);
        for (int i = 0; i < n; i++)
            CHECKF(ids[i] == cases[c].ids[i], "'%s' token %d: %d, expected %d", cases[c].text, i,
                   ids[i], cases[c].ids[i]);
    }
    {
        /* pieces read back: a word start with its space, a continuation bare */
        char buf[16];
        int n = eng_token_piece(m, 711, 0, buf, sizeof(buf));
        CHECK(n == 6 && !memcmp(buf, " hello", 6));
        n = eng_token_piece(m, 722, 0, buf, sizeof(buf));
        CHECK(n == 3 && !memcmp(buf, "ing", 3));
    }
    eng_model_free(m);
}

/* A decoder embedding model: a small qwen3 file with a pooling type. */
static int qwen3_pooled(const char *name, uint32_t pooling, char *path, size_t cap)
{
    static const struct t_model_spec sp = {"qwen3", 64, 2, 4, 2, 128, 300, GGUF_T_F32, 0, 11};
    char base[512];
    struct gguf_value v = {.type = GGUF_V_UINT32};
    snprintf(base, sizeof(base), "%s/qwen3_base.gguf", t_tmpdir());
    snprintf(path, cap, "%s/%s", t_tmpdir(), name);
    if (t_build_model(base, &sp)) return -1;
    v.u = pooling;
    return t_rewrite_kv(base, path, "qwen3.pooling_type", &v);
}

/* Last pooling is the final-normed state whose product with the output
 * matrix gives the logits: the logits of the same tokens, divided by the
 * output rows' products with the normalised vector, are one constant (the
 * state's norm). Mean pooling is the mean of the last-pooled states of
 * every prefix, as a causal model's row t sees only the prefix to t. */
void test_embed_decoder(void)
{
    enum { N = 9 };
    char plast[512], pmean[512];
    struct eng_model *ml, *mm, *plain;
    struct eng_embedder *sl, *sm;
    struct eng_seq *sg;
    struct cit_pool *pool;
    struct cit_err err;
    int32_t ids[N] = {1, 40, 41, 42, 290, 7, 260, 261, 262};
    float e_last[64], e_mean[64], acc[64] = {0}, *logits;
    const struct eng_hparams *hp;
    double lo = INFINITY, hi = -INFINITY, worst = 0;
    CHECK(qwen3_pooled("qwen3_last.gguf", ENG_POOL_LAST, plast, sizeof(plast)) == 0);
    CHECK(qwen3_pooled("qwen3_mean.gguf", ENG_POOL_MEAN, pmean, sizeof(pmean)) == 0);
    CHECKF(eng_model_load(plast, &ml, &err) == 0, "%s", err.msg);
    CHECKF(eng_model_load(pmean, &mm, &err) == 0, "%s", err.msg);
    hp = eng_model_hparams(ml);
    CHECK(hp->pooling == ENG_POOL_LAST && hp->causal &&
          eng_model_hparams(mm)->pooling == ENG_POOL_MEAN);
    CHECK(cit_pool_create(2, &pool) == 0);
    CHECK(eng_embedder_new(ml, 64, &sl) == 0 && eng_embedder_new(mm, 64, &sm) == 0 &&
          eng_seq_new(ml, 64, &sg) == 0);
    logits = cit_calloc((size_t)hp->n_vocab, sizeof(float));
    {
        struct eng_embed_in in = {ids, N, e_last};
        CHECK(eng_embed(sl, pool, &in, 1, 1) == 0);
    }
    CHECK(eng_seq_eval(sg, pool, ids, N, logits, 0) == 0);
    for (int i = 0; i < hp->n_vocab; i++) {
        const float *row =
            (const float *)(const void *)(ml->output.data + (size_t)i * ml->output.row_bytes);
        double d = 0, r;
        for (int c = 0; c < hp->n_embd; c++) d += (double)row[c] * e_last[c];
        if (fabs(d) < 0.05) continue; /* a ratio of small numbers says little */
        r = logits[i] / d;
        lo = r < lo ? r : lo;
        hi = r > hi ? r : hi;
    }
    CHECKF(lo > 0 && (hi - lo) / lo < 1e-4, "logits / (W . embedding) in [%g, %g]", lo, hi);
    /* mean pooling against the prefixes, unnormalised */
    {
        struct eng_embed_in in = {ids, N, e_mean}, pre[N];
        float e[N][64];
        CHECK(eng_embed(sm, pool, &in, 1, 0) == 0);
        for (int t = 0; t < N; t++) pre[t] = (struct eng_embed_in){ids, t + 1, e[t]};
        CHECK(eng_embed(sl, pool, pre, N, 0) == 0);
        for (int t = 0; t < N; t++)
            for (int c = 0; c < hp->n_embd; c++) acc[c] += e[t][c] / N;
    }
    for (int c = 0; c < hp->n_embd; c++)
        if (fabs(acc[c] - e_mean[c]) > worst) worst = fabs(acc[c] - e_mean[c]);
    CHECKF(worst < 1e-4, "mean pooling differs from the prefixes' mean by %g", worst);
    /* a decoder without a pooling type is not an embedding model */
    CHECKF(eng_model_load(t_model_path("synth-qwen2.gguf"), &plain, &err) == 0, "%s", err.msg);
    {
        struct eng_embedder *sp;
        struct eng_embed_in in = {ids, 3, e_mean};
        CHECK(eng_embedder_new(plain, 16, &sp) == 0);
        CHECK(eng_embed(sp, pool, &in, 1, 1) == CIT_ENOTSUP);
        eng_embedder_free(sp);
    }
    t_note("last pooling: logits / (W . e) within %.1e; mean pooling within %.1e of the prefixes",
           (hi - lo) / lo, worst);
    eng_model_free(plain);
    cit_free(logits);
    eng_embedder_free(sl), eng_embedder_free(sm), eng_seq_free(sg);
    cit_pool_free(pool);
    eng_model_free(ml), eng_model_free(mm);
}
