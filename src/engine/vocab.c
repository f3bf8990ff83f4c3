/*
 * Tokenizers built from GGUF metadata.
 *
 * SentencePiece-style ("llama"): spaces become U+2581, the text starts as
 * one symbol per UTF-8 character, and the adjacent pair whose concatenation
 * is the highest-scoring vocabulary entry is merged until none is left;
 * leftover characters fall back to <0xNN> byte tokens.
 *
 * Byte-level BPE ("gpt2"): a pre-tokenizer splits the text into words (the
 * model family's regular expression, implemented by hand below: no regex
 * engine, no surprises), every byte of a word is mapped to a printable
 * codepoint (GPT-2's byte-to-unicode table), and the pair with the lowest
 * merge rank is merged until none is left.
 *
 * WordPiece ("bert"): the text is folded as uncased BERT folds it
 * (lowercase, NFD, nonspacing marks dropped, control characters dropped),
 * split into words at whitespace with each punctuation mark, ASCII symbol
 * and CJK ideograph a word of its own, and each word, prefixed with U+2581,
 * cut greedily into the longest vocabulary pieces (continuations are
 * stored bare, as llama.cpp's converter writes "##ing" as "ing"); a word
 * that cannot be cut whole becomes the unknown token.
 *
 * All match the reference implementation's choices where they are
 * observable: ties broken by leftmost pair, special tokens split out of the
 * text before any runs.
 */
#include <stdio.h>
#include <stdlib.h>

#include "eng_int.h"
#include "unicode.h"

enum pre_type { PRE_DEFAULT, PRE_GPT2, PRE_LLAMA3, PRE_QWEN2, PRE_DEEPSEEK_LLM, PRE_FALCON };

static const struct {
    const char *name;
    enum pre_type type;
} pre_names[] = {
    {"default", PRE_DEFAULT},
    {"gpt2", PRE_GPT2},
    {"gpt-2", PRE_GPT2},
    {"llama3", PRE_LLAMA3},
    {"llama-bpe", PRE_LLAMA3},
    {"qwen2", PRE_QWEN2},
    {"deepseek-llm", PRE_DEEPSEEK_LLM},
    {"falcon", PRE_FALCON},
};

#define MAX_TOKENS    (1 << 24)
#define MAX_TOKEN_LEN 4096

struct eng_vocab_int {
    int n;
    const struct gguf_str *text; /* views into the GGUF file (items of the array) */
    struct gguf_str *text_own;   /* per-token views, (n) */
    float *scores;               /* (n) */
    uint8_t *attr;               /* (n) ENG_TOK_* */
    uint32_t *tab, cap;          /* text -> id+1 */
    struct gguf_str *merges;     /* (n_merges) "left right" */
    int n_merges;
    uint32_t *mtab, mcap;  /* merge text -> rank+1 */
    int byte_tok[256];     /* SPM: <0xNN>; BPE: the byte's mapped char */
    uint32_t byte_cp[256]; /* BPE byte -> codepoint */
    int16_t cp_byte[512];  /* BPE codepoint (< 512) -> byte, -1 if none */
    enum pre_type pre;
    int ignore_merges;
    int *special, n_special; /* ids split out of raw text, longest first */
    /* the same ids grouped by first byte (each group longest first):
     * special[by_byte[b] .. by_byte[b + 1]) start with byte b, so a
     * position is checked against its own candidates only */
    int *special_by_byte, by_byte[257];
    size_t max_len; /* WPM: the longest token, in bytes */
};

/* ---- hashing ---- */

static uint32_t hash_str(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

static int find_in(const uint32_t *tab, uint32_t cap, const struct gguf_str *strs, const char *p,
                   size_t n)
{
    uint32_t mask = cap - 1, h = hash_str(p, n) & mask;
    while (tab[h]) {
        const struct gguf_str *s = &strs[tab[h] - 1];
        if (s->n == n && memcmp(s->p, p, n) == 0) return (int)tab[h] - 1;
        h = (h + 1) & mask;
    }
    return -1;
}

static int build_table(uint32_t **tab, uint32_t *cap, const struct gguf_str *strs, int n)
{
    uint32_t c = 16;
    while (c < 2u * (uint32_t)n) c <<= 1;
    *tab = cit_calloc(c, sizeof(uint32_t));
    if (!*tab) return CIT_ENOMEM;
    *cap = c;
    for (int i = 0; i < n; i++) {
        uint32_t mask = c - 1, h = hash_str(strs[i].p, strs[i].n) & mask;
        int dup = 0;
        while ((*tab)[h]) {
            const struct gguf_str *s = &strs[(*tab)[h] - 1];
            if (s->n == strs[i].n && memcmp(s->p, strs[i].p, s->n) == 0) {
                dup = 1; /* keep the first id for a repeated text */
                break;
            }
            h = (h + 1) & mask;
        }
        if (!dup) (*tab)[h] = (uint32_t)i + 1;
    }
    return 0;
}

static int tok_find(const struct eng_vocab_int *v, const char *p, size_t n)
{
    return find_in(v->tab, v->cap, v->text_own, p, n);
}

/* ---- loading ---- */

void eng_vocab_free(struct eng_vocab_int *v)
{
    if (!v) return;
    cit_free(v->text_own);
    cit_free(v->scores);
    cit_free(v->attr);
    cit_free(v->tab);
    cit_free(v->merges);
    cit_free(v->mtab);
    cit_free(v->special);
    cit_free(v->special_by_byte);
    cit_free(v);
}

static int get_id(struct eng_model *m, const char *key, int *id, struct cit_err *err)
{
    uint32_t u;
    int rc = gguf_get_u32(m->gguf, key, &u, err);
    if (rc == CIT_ENOENT) return 0;
    if (rc) return rc;
    if (u == UINT32_MAX) { /* written by some converters for "none" */
        *id = -1;
        return 0;
    }
    if (u >= (uint32_t)m->vinfo.n_tokens)
        return cit_err_set(err, CIT_EFORMAT, "vocab: %s is %u, outside the vocabulary of %d tokens",
                           key, u, m->vinfo.n_tokens);
    *id = (int)u;
    return 0;
}

static int get_flag(struct eng_model *m, const char *key, int *out, struct cit_err *err)
{
    int rc = gguf_get_bool(m->gguf, key, out, err);
    return rc == CIT_ENOENT ? 0 : rc;
}

static void build_byte_map(struct eng_vocab_int *v)
{
    /* GPT-2's table: printable Latin-1 bytes map to themselves, the other 68
     * bytes to 256, 257, ... in byte order. */
    int next = 256;
    for (int i = 0; i < 512; i++) v->cp_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        v->byte_cp[b] = printable ? (uint32_t)b : (uint32_t)next++;
        v->cp_byte[v->byte_cp[b]] = (int16_t)b;
    }
}

static int cmp_special(const void *a, const void *b, void *vv)
{
    const struct eng_vocab_int *v = vv;
    int x = *(const int *)a, y = *(const int *)b;
    if (v->text_own[x].n != v->text_own[y].n) return v->text_own[x].n > v->text_own[y].n ? -1 : 1;
    return x - y;
}

int eng_vocab_load(struct eng_model *m, struct cit_err *err)
{
    struct eng_vocab_info *vi = &m->vinfo;
    struct eng_vocab_int *v;
    const struct gguf_value *toks, *scores = NULL, *types = NULL, *merges = NULL;
    struct gguf_str model, pre;
    int rc;

    rc = gguf_get_str(m->gguf, "tokenizer.ggml.model", &model, err);
    if (rc == CIT_ENOENT)
        return cit_err_set(err, CIT_EFORMAT, "vocab: tokenizer.ggml.model is missing");
    if (rc) return rc;
    if (gguf_str_eq(model, "llama"))
        vi->type = ENG_VOCAB_SPM;
    else if (gguf_str_eq(model, "gpt2"))
        vi->type = ENG_VOCAB_BPE;
    else if (gguf_str_eq(model, "bert"))
        vi->type = ENG_VOCAB_WPM;
    else
        return cit_err_set(err, CIT_ENOTSUP,
                           "vocab: tokenizer model '%.*s' is not supported (llama, gpt2, bert)",
                           (int)(model.n > 32 ? 32 : model.n), model.p);

    rc = gguf_get_arr(m->gguf, "tokenizer.ggml.tokens", GGUF_V_STRING, &toks, err);
    if (rc == CIT_ENOENT)
        return cit_err_set(err, CIT_EFORMAT, "vocab: tokenizer.ggml.tokens is missing");
    if (rc) return rc;
    if (toks->arr.n == 0 || toks->arr.n > MAX_TOKENS)
        return cit_err_set(err, CIT_EFORMAT, "vocab: %llu tokens (1 to %d allowed)",
                           (unsigned long long)toks->arr.n, MAX_TOKENS);
    rc = gguf_get_arr(m->gguf, "tokenizer.ggml.scores", GGUF_V_FLOAT32, &scores, err);
    if (rc && rc != CIT_ENOENT) return rc;
    rc = gguf_get_arr(m->gguf, "tokenizer.ggml.token_type", GGUF_V_INT32, &types, err);
    if (rc && rc != CIT_ENOENT) return rc;
    if ((scores && scores->arr.n != toks->arr.n) || (types && types->arr.n != toks->arr.n))
        return cit_err_set(err, CIT_EFORMAT,
                           "vocab: tokenizer arrays differ in length: %llu tokens, %llu scores, "
                           "%llu token types",
                           (unsigned long long)toks->arr.n,
                           (unsigned long long)(scores ? scores->arr.n : toks->arr.n),
                           (unsigned long long)(types ? types->arr.n : toks->arr.n));

    v = cit_calloc(1, sizeof(*v));
    if (!v) return cit_err_set(err, CIT_ENOMEM, "vocab: out of memory");
    m->vocab = v;
    v->n = vi->n_tokens = (int)toks->arr.n;
    v->text_own = cit_calloc((size_t)v->n, sizeof(*v->text_own));
    v->scores = cit_calloc((size_t)v->n, sizeof(float));
    v->attr = cit_calloc((size_t)v->n, 1);
    if (!v->text_own || !v->scores || !v->attr)
        return cit_err_set(err, CIT_ENOMEM, "vocab: out of memory");
    for (int i = 0; i < v->n; i++) {
        v->text_own[i] = toks->arr.items[i].s;
        if (v->text_own[i].n > MAX_TOKEN_LEN)
            return cit_err_set(err, CIT_EFORMAT, "vocab: token %d is %llu bytes long (limit %d)", i,
                               (unsigned long long)v->text_own[i].n, MAX_TOKEN_LEN);
        v->scores[i] = scores ? gguf_arr_f32(scores, (uint64_t)i) : 0.0f;
        {
            int64_t t = types ? gguf_arr_int(types, (uint64_t)i) : ENG_TOK_NORMAL;
            if (t < ENG_TOK_NORMAL || t > ENG_TOK_BYTE)
                return cit_err_set(err, CIT_EFORMAT, "vocab: token %d has unknown type %lld", i,
                                   (long long)t);
            v->attr[i] = (uint8_t)t;
        }
    }
    if (build_table(&v->tab, &v->cap, v->text_own, v->n))
        return cit_err_set(err, CIT_ENOMEM, "vocab: out of memory");

    /* Defaults as the model families define them, then the file's values. */
    vi->bos = vi->eos = vi->eot = vi->unk = vi->pad = -1;
    if (vi->type == ENG_VOCAB_SPM) {
        vi->bos = v->n > 1 ? 1 : -1;
        vi->eos = v->n > 2 ? 2 : -1;
        vi->unk = 0;
        vi->add_bos = 1;
        vi->add_space_prefix = 1;
    } else if (vi->type == ENG_VOCAB_WPM) {
        /* [CLS] text [SEP], as BERT was trained */
        vi->add_bos = vi->add_eos = 1;
        vi->unk = tok_find(v, "[UNK]", 5);
        vi->bos = tok_find(v, "[CLS]", 5);
        vi->eos = tok_find(v, "[SEP]", 5);
        vi->pad = tok_find(v, "[PAD]", 5);
        if ((rc = get_id(m, "tokenizer.ggml.cls_token_id", &vi->bos, err)) ||
            (rc = get_id(m, "tokenizer.ggml.seperator_token_id", &vi->eos, err)) ||
            (rc = get_id(m, "tokenizer.ggml.separator_token_id", &vi->eos, err)))
            return rc;
    } else {
        vi->add_bos = 0;
    }
    if ((rc = get_id(m, "tokenizer.ggml.bos_token_id", &vi->bos, err)) ||
        (rc = get_id(m, "tokenizer.ggml.eos_token_id", &vi->eos, err)) ||
        (rc = get_id(m, "tokenizer.ggml.eot_token_id", &vi->eot, err)) ||
        (rc = get_id(m, "tokenizer.ggml.unknown_token_id", &vi->unk, err)) ||
        (rc = get_id(m, "tokenizer.ggml.padding_token_id", &vi->pad, err)) ||
        (rc = get_flag(m, "tokenizer.ggml.add_bos_token", &vi->add_bos, err)) ||
        (rc = get_flag(m, "tokenizer.ggml.add_eos_token", &vi->add_eos, err)) ||
        (rc = get_flag(m, "tokenizer.ggml.add_space_prefix", &vi->add_space_prefix, err)))
        return rc;
    if (vi->add_bos && vi->bos < 0)
        return cit_err_set(err, CIT_EFORMAT, "vocab: add_bos_token is set but there is no BOS");
    if (vi->add_eos && vi->eos < 0)
        return cit_err_set(err, CIT_EFORMAT, "vocab: add_eos_token is set but there is no EOS");
    if (vi->type == ENG_VOCAB_WPM && vi->unk < 0)
        return cit_err_set(err, CIT_EFORMAT,
                           "vocab: a WordPiece vocabulary needs an unknown token ([UNK] or "
                           "tokenizer.ggml.unknown_token_id)");
    /* Some converters leave the EOT/EOS of chat models typed as normal. */
    if (vi->eos >= 0 && v->attr[vi->eos] == ENG_TOK_NORMAL) v->attr[vi->eos] = ENG_TOK_CONTROL;
    if (vi->eot >= 0 && v->attr[vi->eot] == ENG_TOK_NORMAL) v->attr[vi->eot] = ENG_TOK_CONTROL;
    if (vi->eot < 0) {
        static const char *eot_names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                          "<|endoftext|>"};
        for (size_t i = 0; i < sizeof(eot_names) / sizeof(eot_names[0]) && vi->eot < 0; i++) {
            int id = tok_find(v, eot_names[i], strlen(eot_names[i]));
            if (id >= 0 && v->attr[id] == ENG_TOK_CONTROL) vi->eot = id;
        }
    }

    for (int b = 0; b < 256; b++) v->byte_tok[b] = -1;
    if (vi->type == ENG_VOCAB_SPM) {
        for (int b = 0; b < 256; b++) {
            char name[8];
            snprintf(name, sizeof(name), "<0x%02X>", b);
            v->byte_tok[b] = tok_find(v, name, 6);
        }
        vi->pre = "spm";
    } else if (vi->type == ENG_VOCAB_WPM) {
        for (int i = 0; i < v->n; i++)
            if (v->text_own[i].n > v->max_len) v->max_len = v->text_own[i].n;
        vi->pre = "wordpiece";
    } else {
        build_byte_map(v);
        for (int b = 0; b < 256; b++) {
            char enc[4];
            int n = uni_encode(v->byte_cp[b], enc);
            v->byte_tok[b] = tok_find(v, enc, (size_t)n);
        }
        rc = gguf_get_arr(m->gguf, "tokenizer.ggml.merges", GGUF_V_STRING, &merges, err);
        if (rc == CIT_ENOENT)
            return cit_err_set(err, CIT_EFORMAT, "vocab: BPE model without tokenizer.ggml.merges");
        if (rc) return rc;
        if (merges->arr.n > MAX_TOKENS)
            return cit_err_set(err, CIT_EFORMAT, "vocab: %llu merges (limit %d)",
                               (unsigned long long)merges->arr.n, MAX_TOKENS);
        v->n_merges = (int)merges->arr.n;
        v->merges = cit_calloc((size_t)v->n_merges + 1, sizeof(*v->merges));
        if (!v->merges) return cit_err_set(err, CIT_ENOMEM, "vocab: out of memory");
        for (int i = 0; i < v->n_merges; i++) {
            struct gguf_str s = merges->arr.items[i].s;
            if (!memchr(s.p, ' ', s.n))
                return cit_err_set(err, CIT_EFORMAT,
                                   "vocab: merge %d ('%.*s') has no space between its parts", i,
                                   (int)(s.n > 40 ? 40 : s.n), s.p);
            v->merges[i] = s;
        }
        if (build_table(&v->mtab, &v->mcap, v->merges, v->n_merges))
            return cit_err_set(err, CIT_ENOMEM, "vocab: out of memory");
        rc = gguf_get_str(m->gguf, "tokenizer.ggml.pre", &pre, err);
        if (rc && rc != CIT_ENOENT) return rc;
        v->pre = PRE_DEFAULT;
        vi->pre = "default";
        if (!rc) {
            size_t i;
            for (i = 0; i < sizeof(pre_names) / sizeof(pre_names[0]); i++)
                if (gguf_str_eq(pre, pre_names[i].name)) break;
            if (i == sizeof(pre_names) / sizeof(pre_names[0]))
                return cit_err_set(err, CIT_ENOTSUP,
                                   "vocab: pre-tokenizer '%.*s' is not supported (default, gpt2, "
                                   "llama3/llama-bpe, qwen2, deepseek-llm, falcon)",
                                   (int)(pre.n > 40 ? 40 : pre.n), pre.p);
            v->pre = pre_names[i].type;
            vi->pre = pre_names[i].name;
        }
        v->ignore_merges = v->pre == PRE_LLAMA3;
    }

    /* Tokens that are split out of raw text before tokenizing. */
    v->special = cit_calloc((size_t)v->n, sizeof(int));
    if (!v->special) return cit_err_set(err, CIT_ENOMEM, "vocab: out of memory");
    for (int i = 0; i < v->n; i++)
        if ((v->attr[i] == ENG_TOK_CONTROL || v->attr[i] == ENG_TOK_USER_DEFINED) &&
            v->text_own[i].n > 0)
            v->special[v->n_special++] = i;
    qsort_r(v->special, (size_t)v->n_special, sizeof(int), cmp_special, v);
    v->special_by_byte = cit_calloc((size_t)v->n_special + 1, sizeof(int));
    if (!v->special_by_byte) return cit_err_set(err, CIT_ENOMEM, "vocab: out of memory");
    {
        int count[256] = {0}, at[256];
        for (int i = 0; i < v->n_special; i++) count[(uint8_t)v->text_own[v->special[i]].p[0]]++;
        v->by_byte[0] = 0;
        for (int b = 0; b < 256; b++) v->by_byte[b + 1] = v->by_byte[b] + count[b];
        memcpy(at, v->by_byte, sizeof(at));
        for (int i = 0; i < v->n_special; i++) { /* stable: each group stays longest first */
            int id = v->special[i];
            v->special_by_byte[at[(uint8_t)v->text_own[id].p[0]]++] = id;
        }
    }
    return 0;
}

/* ---- output buffer ---- */

struct ids {
    int32_t *p;
    int n, cap;
};

static void push(struct ids *o, int id)
{
    if (o->n < o->cap) o->p[o->n] = id;
    o->n++;
}

/* ---- SentencePiece ---- */

struct sym {
    int prev, next;
    const char *text;
    int n;
};

struct bigram {
    int left, right;
    float score; /* SPM: higher first */
    int rank;    /* BPE: lower first */
    int size;
};

struct heap {
    struct bigram *b;
    int n, cap;
    int bpe;
};

static int bg_before(const struct heap *h, const struct bigram *a, const struct bigram *b)
{
    if (h->bpe) return a->rank != b->rank ? a->rank < b->rank : a->left < b->left;
    return a->score != b->score ? a->score > b->score : a->left < b->left;
}

static int heap_push(struct heap *h, struct bigram g)
{
    int i;
    if (h->n == h->cap) {
        int cap = h->cap ? 2 * h->cap : 64;
        struct bigram *nb = cit_realloc(h->b, (size_t)cap * sizeof(*nb));
        if (!nb) return CIT_ENOMEM;
        h->b = nb;
        h->cap = cap;
    }
    i = h->n++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!bg_before(h, &g, &h->b[p])) break;
        h->b[i] = h->b[p];
        i = p;
    }
    h->b[i] = g;
    return 0;
}

static struct bigram heap_pop(struct heap *h)
{
    struct bigram top = h->b[0], last = h->b[--h->n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && bg_before(h, &h->b[c + 1], &h->b[c])) c++;
        if (!bg_before(h, &h->b[c], &last)) break;
        h->b[i] = h->b[c];
        i = c;
    }
    if (h->n) h->b[i] = last;
    return top;
}

static int spm_try_pair(const struct eng_vocab_int *v, struct heap *h, const struct sym *s,
                        int left, int right)
{
    int id;
    struct bigram g;
    if (left < 0 || right < 0) return 0;
    id = tok_find(v, s[left].text, (size_t)(s[left].n + s[right].n));
    if (id < 0) return 0;
    g.left = left, g.right = right, g.score = v->scores[id], g.rank = 0;
    g.size = s[left].n + s[right].n;
    return heap_push(h, g);
}

static int spm_tokenize(const struct eng_vocab_int *v, const char *text, size_t len,
                        struct ids *out)
{
    struct sym *s;
    struct heap h = {0};
    int ns = 0, rc = 0;
    if (!len) return 0;
    s = cit_calloc(len, sizeof(*s));
    if (!s) return CIT_ENOMEM;
    for (size_t off = 0; off < len;) {
        int n = uni_len((uint8_t)text[off]);
        if ((size_t)n > len - off) n = (int)(len - off);
        s[ns].text = text + off;
        s[ns].n = n;
        s[ns].prev = ns - 1;
        s[ns].next = off + (size_t)n == len ? -1 : ns + 1;
        ns++;
        off += (size_t)n;
    }
    for (int i = 1; i < ns && !rc; i++) rc = spm_try_pair(v, &h, s, i - 1, i);
    while (h.n && !rc) {
        struct bigram g = heap_pop(&h);
        struct sym *l = &s[g.left], *r = &s[g.right];
        if (!l->n || !r->n || l->n + r->n != g.size) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = g.left;
        rc = spm_try_pair(v, &h, s, l->prev, g.left);
        if (!rc) rc = spm_try_pair(v, &h, s, g.left, l->next);
    }
    for (int i = 0; i != -1 && !rc && ns; i = s[i].next) {
        int id = tok_find(v, s[i].text, (size_t)s[i].n);
        if (id >= 0) {
            push(out, id);
            continue;
        }
        /* Unmerged characters not in the vocabulary: one token per byte. */
        for (int j = 0; j < s[i].n; j++) {
            int b = v->byte_tok[(uint8_t)s[i].text[j]];
            push(out, b >= 0 ? b : 0);
        }
    }
    cit_free(h.b);
    cit_free(s);
    return rc;
}

/* ---- BPE pre-tokenizers ----
 *
 * A split turns one fragment [lo, hi) of codepoints into consecutive pieces
 * that cover it. Families that apply several expressions apply them in
 * order, each to every piece the previous one produced (text between two
 * matches stays a piece of its own), as the reference does. */

struct spans {
    int *end; /* end offsets (codepoint index) of the pieces */
    int n, cap;
};

static int span_add(struct spans *s, int end)
{
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        int *ne = cit_realloc(s->end, (size_t)cap * sizeof(int));
        if (!ne) return CIT_ENOMEM;
        s->end = ne;
        s->cap = cap;
    }
    s->end[s->n++] = end;
    return 0;
}

struct frag {
    const uint32_t *cp;
    int lo, hi;
};

static uint32_t fcp(const struct frag *f, int i)
{
    return i >= f->lo && i < f->hi ? f->cp[i] : 0xFFFFFFFFu;
}

static uint8_t ffl(const struct frag *f, int i)
{
    return i >= f->lo && i < f->hi ? uni_flags(f->cp[i]) : 0;
}

#define IS_L(fl)  ((fl)&UNI_L)
#define IS_N(fl)  ((fl)&UNI_N)
#define IS_WS(fl) ((fl)&UNI_WS)

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static int split_gpt2(const struct frag *f, struct spans *out)
{
    int pos = f->lo, rc = 0;
    while (pos < f->hi && !rc) {
        uint32_t c = fcp(f, pos);
        uint8_t fl = ffl(f, pos), fl2;
        int nws = 0;
        if (c == '\'' && pos + 1 < f->hi) {
            uint32_t n1 = fcp(f, pos + 1), n2 = fcp(f, pos + 2);
            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                rc = span_add(out, pos += 2);
                continue;
            }
            if (pos + 2 < f->hi && ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') ||
                                    (n1 == 'l' && n2 == 'l'))) {
                rc = span_add(out, pos += 3);
                continue;
            }
        }
        fl2 = c == ' ' ? ffl(f, pos + 1) : fl;
        if (IS_L(fl2) || IS_N(fl2) || (!IS_WS(fl2) && fl2)) {
            int want = IS_L(fl2) ? 1 : IS_N(fl2) ? 2 : 3;
            if (c == ' ') pos++;
            for (;;) {
                uint8_t g = ffl(f, pos);
                int ok = want == 1   ? IS_L(g)
                         : want == 2 ? IS_N(g)
                                     : (g && !IS_WS(g) && !IS_L(g) && !IS_N(g));
                if (!ok) break;
                pos++;
            }
            rc = span_add(out, pos);
            continue;
        }
        while (IS_WS(ffl(f, pos + nws))) nws++;
        if (nws > 1 && pos + nws < f->hi) { /* \s+(?!\S): leave one space for the next word */
            rc = span_add(out, pos += nws - 1);
            continue;
        }
        if (nws > 0) {
            rc = span_add(out, pos += nws);
            continue;
        }
        rc = span_add(out, ++pos);
    }
    return rc;
}

/* llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *         ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * qwen2 is the same with \p{N} (single digits): max_digits 1. */
static int split_llama3(const struct frag *f, struct spans *out, int max_digits)
{
    int pos = f->lo, rc = 0;
    while (pos < f->hi && !rc) {
        uint32_t c = fcp(f, pos);
        uint8_t fl = ffl(f, pos), fl2;
        int nws = 0, last_nl = 0;
        if (c == '\'' && pos + 1 < f->hi) {
            uint32_t n1 = fcp(f, pos + 1), n2 = fcp(f, pos + 2);
            if (n1 < 128) n1 = (uint32_t)(n1 >= 'A' && n1 <= 'Z' ? n1 + 32 : n1);
            if (n2 < 128) n2 = (uint32_t)(n2 >= 'A' && n2 <= 'Z' ? n2 + 32 : n2);
            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                rc = span_add(out, pos += 2);
                continue;
            }
            if (pos + 2 < f->hi && ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') ||
                                    (n1 == 'l' && n2 == 'l'))) {
                rc = span_add(out, pos += 3);
                continue;
            }
        }
        if (!(c == '\r' || c == '\n' || IS_N(fl)) && (IS_L(fl) || IS_L(ffl(f, pos + 1)))) {
            pos++;
            while (IS_L(ffl(f, pos))) pos++;
            rc = span_add(out, pos);
            continue;
        }
        if (IS_N(fl)) {
            int start = pos;
            while (IS_N(ffl(f, pos))) {
                pos++;
                if (pos - start >= max_digits) {
                    if ((rc = span_add(out, pos))) return rc;
                    start = pos;
                }
            }
            if (pos > start) rc = span_add(out, pos);
            continue;
        }
        fl2 = c == ' ' ? ffl(f, pos + 1) : fl;
        if (fl2 && !IS_WS(fl2) && !IS_L(fl2) && !IS_N(fl2)) {
            if (c == ' ') pos++;
            for (;;) {
                uint8_t g = ffl(f, pos);
                if (!g || IS_WS(g) || IS_L(g) || IS_N(g)) break;
                pos++;
            }
            while (fcp(f, pos) == '\r' || fcp(f, pos) == '\n') pos++;
            rc = span_add(out, pos);
            continue;
        }
        while (IS_WS(ffl(f, pos + nws))) {
            uint32_t w = fcp(f, pos + nws);
            if (w == '\r' || w == '\n') last_nl = pos + nws + 1;
            nws++;
        }
        if (last_nl) { /* \s*[\r\n]+ */
            rc = span_add(out, pos = last_nl);
            continue;
        }
        if (nws > 1 && pos + nws < f->hi) {
            rc = span_add(out, pos += nws - 1);
            continue;
        }
        if (nws > 0) {
            rc = span_add(out, pos += nws);
            continue;
        }
        rc = span_add(out, ++pos);
    }
    return rc;
}

/* Character classes for the expressions without a custom splitter. The
 * reference matches these with non-ASCII whitespace replaced by a plain
 * whitespace character, so such codepoints never belong to a class. */
struct cprange {
    uint32_t a, b;
};

static int in_ranges(uint32_t c, const struct cprange *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (c >= r[i].a && c <= r[i].b) return 1;
    return 0;
}

static const struct cprange ds_letters[] = {
    {0x41, 0x5A},       {0x61, 0x7A},       {0xB5, 0xB5},       {0xC0, 0xD6},
    {0xD8, 0xF6},       {0xF8, 0x1BA},      {0x1BC, 0x1BF},     {0x1C4, 0x293},
    {0x295, 0x2AF},     {0x370, 0x373},     {0x376, 0x377},     {0x37B, 0x37D},
    {0x37F, 0x37F},     {0x386, 0x386},     {0x388, 0x38A},     {0x38C, 0x38C},
    {0x38E, 0x3A1},     {0x3A3, 0x3F5},     {0x3F7, 0x481},     {0x48A, 0x52F},
    {0x531, 0x556},     {0x10A0, 0x10C5},   {0x13A0, 0x13F5},   {0x13F8, 0x13FD},
    {0x1C90, 0x1CBA},   {0x1CBD, 0x1CBF},   {0x1D00, 0x1D2B},   {0x1D6B, 0x1D77},
    {0x1D79, 0x1D9A},   {0x1E00, 0x1F15},   {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},
    {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},   {0x1F59, 0x1F59},   {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},   {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},
    {0x1FD6, 0x1FDB},   {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},
    {0x2102, 0x2102},   {0x2107, 0x2107},   {0x210A, 0x2113},   {0x2115, 0x2115},
    {0x2119, 0x211D},   {0x2124, 0x2124},   {0x2126, 0x2126},   {0x2128, 0x2128},
    {0x212A, 0x212D},   {0x212F, 0x2134},   {0x2139, 0x2139},   {0x213C, 0x213F},
    {0x2145, 0x2149},   {0x214E, 0x214E},   {0x2183, 0x2184},   {0x2C00, 0x2C7B},
    {0x2C7E, 0x2CE4},   {0x2CEB, 0x2CEE},   {0x2CF2, 0x2CF3},   {0xA640, 0xA66D},
    {0xA680, 0xA69B},   {0xA722, 0xA76F},   {0xA771, 0xA787},   {0xA78B, 0xA78E},
    {0xAB70, 0xABBF},   {0xFB00, 0xFB06},   {0xFB13, 0xFB17},   {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A},   {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};
static const struct cprange ds_punct[] = {
    {0x21, 0x2F},     {0x3A, 0x7E},     {0xFF01, 0xFF0F},
    {0xFF1A, 0xFF5E}, {0x2018, 0x201F}, {0x3000, 0x3002},
};
static const struct cprange ds_cjk[] = {{0x4E00, 0x9FA5}, {0x0800, 0x4E00}, {0xAC00, 0xD7FF}};

enum cls {
    CLS_NL,
    CLS_DS_LETTER,
    CLS_DS_PUNCT,
    CLS_DS_CJK,
    CLS_NUM,
    CLS_DIGIT,
    CLS_PUNCT_SYM,
    CLS_PUNCT_SYM_BT
};

static int nonascii_ws(uint32_t c)
{
    return c >= 0x80 && IS_WS(uni_flags(c));
}

static int in_class(uint32_t c, enum cls k)
{
    if (c == 0xFFFFFFFFu || nonascii_ws(c)) return 0;
    switch (k) {
    case CLS_NL:
        return c == '\r' || c == '\n';
    case CLS_DS_LETTER:
        return in_ranges(c, ds_letters, sizeof(ds_letters) / sizeof(ds_letters[0]));
    case CLS_DS_PUNCT:
        return in_ranges(c, ds_punct, sizeof(ds_punct) / sizeof(ds_punct[0]));
    case CLS_DS_CJK:
        return in_ranges(c, ds_cjk, sizeof(ds_cjk) / sizeof(ds_cjk[0]));
    case CLS_NUM:
        return c < 128 ? (c >= '0' && c <= '9') : IS_N(uni_flags(c)) != 0;
    case CLS_DIGIT:
        return c >= '0' && c <= '9';
    case CLS_PUNCT_SYM:
    case CLS_PUNCT_SYM_BT:
        /* [\p{P}\$\+<=>\^~\|] (+ ` for falcon); ASCII \p{P} is the reference's list. */
        if (c < 128)
            return (c >= '!' && c <= '#') || (c >= '%' && c <= '*') || (c >= ',' && c <= '/') ||
                   c == ':' || c == ';' || c == '?' || c == '@' || (c >= '[' && c <= ']') ||
                   c == '_' || c == '{' || c == '}' || c == '$' || c == '+' || c == '<' ||
                   c == '=' || c == '>' || c == '^' || c == '~' || c == '|' ||
                   (k == CLS_PUNCT_SYM_BT && c == '`');
        return (uni_flags(c) & (UNI_P | UNI_L | UNI_N | UNI_S | UNI_M)) == UNI_P;
    }
    return 0;
}

static int ascii_ws(uint32_t c)
{
    return c == ' ' || (c >= 0x09 && c <= 0x0D);
}

/* \s as the reference sees it: ASCII whitespace or non-ASCII whitespace. */
static int any_ws(uint32_t c)
{
    return c != 0xFFFFFFFFu && (ascii_ws(c) || nonascii_ws(c));
}

enum run_kind { RUN_ONE, RUN_PLUS, RUN_WS_PLUS, RUN_THREE, RUN_TRAILING_WS };

/* Matches [cls] / [cls]+ / \s?[cls]+ / [cls]{3} / \s+$ leftmost-first, and
 * emits matches and the gaps between them as pieces. */
static int split_class(const struct frag *f, struct spans *out, enum cls k, enum run_kind kind)
{
    int pos = f->lo, gap = f->lo, rc = 0;
    if (kind == RUN_TRAILING_WS) {
        int s = f->hi;
        while (s > f->lo && any_ws(f->cp[s - 1])) s--;
        if (s > f->lo && s < f->hi) rc = span_add(out, s);
        return rc ? rc : span_add(out, f->hi);
    }
    while (pos < f->hi && !rc) {
        int start = -1, end = pos;
        uint32_t c = fcp(f, pos);
        if (kind == RUN_WS_PLUS && any_ws(c) && in_class(fcp(f, pos + 1), k)) {
            start = pos;
            end = pos + 1;
        } else if (in_class(c, k)) {
            start = pos;
            end = pos;
        }
        if (start >= 0 && kind == RUN_THREE) {
            if (in_class(fcp(f, pos + 1), k) && in_class(fcp(f, pos + 2), k))
                end = pos + 3;
            else
                start = -1;
        } else if (start >= 0 && kind == RUN_ONE) {
            end = pos + 1;
        } else if (start >= 0) {
            while (in_class(fcp(f, end), k)) end++;
        }
        if (start < 0) {
            pos++;
            continue;
        }
        if (start > gap) rc = span_add(out, start);
        if (!rc) rc = span_add(out, end);
        pos = gap = end;
    }
    if (!rc && gap < f->hi) rc = span_add(out, f->hi);
    return rc;
}

struct split_step {
    int kind; /* 0: gpt2, 1: llama3, 2: qwen2, 3: class */
    enum cls cls;
    enum run_kind run;
};

static const struct split_step steps_default[] = {
    {3, CLS_PUNCT_SYM, RUN_PLUS}, {0, 0, 0}, {3, CLS_NUM, RUN_PLUS}, {3, CLS_DIGIT, RUN_THREE}};
static const struct split_step steps_gpt2[] = {{0, 0, 0}};
static const struct split_step steps_llama3[] = {{1, 0, 0}};
static const struct split_step steps_qwen2[] = {{2, 0, 0}};
static const struct split_step steps_falcon[] = {
    {3, CLS_PUNCT_SYM_BT, RUN_PLUS}, {0, 0, 0}, {3, CLS_DIGIT, RUN_THREE}};
static const struct split_step steps_deepseek[] = {
    {3, CLS_NL, RUN_ONE},    {3, CLS_DS_LETTER, RUN_WS_PLUS}, {3, CLS_DS_PUNCT, RUN_WS_PLUS},
    {3, 0, RUN_TRAILING_WS}, {3, CLS_DS_CJK, RUN_PLUS},       {3, CLS_NUM, RUN_PLUS}};

/* Splits cp[0..n) into words; *out receives end offsets. */
static int pretokenize(const struct eng_vocab_int *v, const uint32_t *cp, int n, struct spans *out)
{
    const struct split_step *steps;
    size_t n_steps;
    struct spans cur = {0}, next = {0};
    int rc = 0;
#define STEPS(a) (steps = a, n_steps = sizeof(a) / sizeof(a[0]))
    switch (v->pre) {
    case PRE_GPT2:
        STEPS(steps_gpt2);
        break;
    case PRE_LLAMA3:
        STEPS(steps_llama3);
        break;
    case PRE_QWEN2:
        STEPS(steps_qwen2);
        break;
    case PRE_FALCON:
        STEPS(steps_falcon);
        break;
    case PRE_DEEPSEEK_LLM:
        STEPS(steps_deepseek);
        break;
    default:
        STEPS(steps_default);
        break;
    }
#undef STEPS
    if ((rc = span_add(&cur, n))) goto done;
    for (size_t s = 0; s < n_steps && !rc; s++) {
        int lo = 0;
        next.n = 0;
        for (int i = 0; i < cur.n && !rc; i++) {
            struct frag f = {cp, lo, cur.end[i]};
            if (f.hi > f.lo) {
                switch (steps[s].kind) {
                case 0:
                    rc = split_gpt2(&f, &next);
                    break;
                case 1:
                    rc = split_llama3(&f, &next, 3);
                    break;
                case 2:
                    rc = split_llama3(&f, &next, 1);
                    break;
                default:
                    rc = split_class(&f, &next, steps[s].cls, steps[s].run);
                    break;
                }
            }
            lo = cur.end[i];
        }
        {
            struct spans t = cur;
            cur = next;
            next = t;
        }
    }
done:
    cit_free(next.end);
    if (rc) {
        cit_free(cur.end);
        return rc;
    }
    *out = cur;
    return 0;
}

static int bpe_try_pair(const struct eng_vocab_int *v, struct heap *h, const struct sym *s,
                        int left, int right, char *buf)
{
    int rank;
    struct bigram g;
    size_t ln, rn;
    if (left < 0 || right < 0) return 0;
    ln = (size_t)s[left].n, rn = (size_t)s[right].n;
    memcpy(buf, s[left].text, ln);
    buf[ln] = ' ';
    memcpy(buf + ln + 1, s[right].text, rn);
    rank = find_in(v->mtab, v->mcap, v->merges, buf, ln + rn + 1);
    if (rank < 0) return 0;
    g.left = left, g.right = right, g.rank = rank, g.score = 0;
    g.size = (int)(ln + rn);
    return heap_push(h, g);
}

/* Merges one byte-encoded word and appends its tokens. */
static int bpe_word(const struct eng_vocab_int *v, const char *w, int len, struct ids *out,
                    struct heap *h, struct sym *s, char *buf)
{
    int ns = 0, rc = 0;
    if (v->ignore_merges) {
        int id = tok_find(v, w, (size_t)len);
        if (id >= 0) {
            push(out, id);
            return 0;
        }
    }
    for (int off = 0; off < len;) {
        int n = uni_len((uint8_t)w[off]);
        if (n > len - off) n = len - off;
        s[ns].text = w + off, s[ns].n = n, s[ns].prev = ns - 1;
        s[ns].next = off + n == len ? -1 : ns + 1;
        ns++;
        off += n;
    }
    h->n = 0;
    for (int i = 1; i < ns && !rc; i++) rc = bpe_try_pair(v, h, s, i - 1, i, buf);
    while (h->n && !rc) {
        struct bigram g = heap_pop(h);
        struct sym *l = &s[g.left], *r = &s[g.right];
        if (!l->n || !r->n || l->n + r->n != g.size) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = g.left;
        rc = bpe_try_pair(v, h, s, l->prev, g.left, buf);
        if (!rc) rc = bpe_try_pair(v, h, s, g.left, l->next, buf);
    }
    for (int i = 0; i != -1 && !rc && ns; i = s[i].next) {
        int id = tok_find(v, s[i].text, (size_t)s[i].n);
        if (id >= 0) {
            push(out, id);
            continue;
        }
        for (int j = 0; j < s[i].n; j++) {
            int b = tok_find(v, s[i].text + j, 1);
            if (b >= 0) push(out, b);
        }
    }
    return rc;
}

static int bpe_tokenize(const struct eng_vocab_int *v, const char *text, size_t len,
                        struct ids *out)
{
    uint32_t *cp;
    int *cp_off, n = 0, rc = 0;
    struct spans words = {0};
    struct heap h = {.bpe = 1};
    char *word = NULL, *buf = NULL;
    struct sym *s = NULL;
    if (!len) return 0;
    if (len > (size_t)INT32_MAX / 8) return CIT_ERANGE;
    cp = cit_calloc(len + 1, sizeof(uint32_t));
    cp_off = cit_calloc(len + 1, sizeof(int));
    /* Worst case per input byte: an invalid byte decodes to U+FFFD, whose
     * 3 UTF-8 bytes each map to a 2-byte character: 6 bytes and 3 symbols.
     * A merge key is two adjacent symbols and a space, inside one word. */
    word = cit_malloc(6 * len + 1);
    buf = cit_malloc(6 * len + 2);
    s = cit_calloc(3 * len + 1, sizeof(*s));
    if (!cp || !cp_off || !word || !buf || !s) {
        rc = CIT_ENOMEM;
        goto done;
    }
    for (size_t off = 0; off < len;) {
        cp_off[n] = (int)off;
        off += (size_t)uni_decode(text + off, len - off, &cp[n]);
        n++;
    }
    cp_off[n] = (int)len;
    if ((rc = pretokenize(v, cp, n, &words))) goto done;
    for (int i = 0, lo = 0; i < words.n && !rc; lo = words.end[i], i++) {
        int wl = 0;
        /* Byte-encode the word's original bytes. An invalid byte decoded
         * as U+FFFD still maps its own byte, as the reference re-encodes
         * the replacement character: use the codepoint's UTF-8. */
        for (int c = lo; c < words.end[i]; c++) {
            char enc[4];
            int el = uni_encode(cp[c], enc);
            for (int b = 0; b < el; b++) wl += uni_encode(v->byte_cp[(uint8_t)enc[b]], word + wl);
        }
        rc = bpe_word(v, word, wl, out, &h, s, buf);
    }
done:
    cit_free(words.end);
    cit_free(h.b);
    cit_free(cp);
    cit_free(cp_off);
    cit_free(word);
    cit_free(buf);
    cit_free(s);
    return rc;
}

/* ---- WordPiece ---- */

static int is_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* One word, U+2581 and the word's folded bytes in w[0..n): the longest
 * piece at each point, or the unknown token for the whole word. */
static void wpm_word(const struct eng_model *m, const char *w, size_t n, struct ids *out)
{
    const struct eng_vocab_int *v = m->vocab;
    const int start = out->n;
    for (size_t i = 0; i < n;) {
        size_t j = n - i < v->max_len ? n : i + v->max_len;
        int id = -1;
        for (; j > i; j--)
            if ((id = tok_find(v, w + i, j - i)) >= 0) break;
        if (id < 0) {
            out->n = start;
            push(out, m->vinfo.unk);
            return;
        }
        push(out, id);
        i = j;
    }
}

static int wpm_tokenize(const struct eng_model *m, const char *text, size_t len, struct ids *out)
{
    /* each input codepoint folds to at most 3, of at most 4 bytes */
    char *w;
    size_t n = 3;
    if (len > (SIZE_MAX - 8) / 12) return CIT_ERANGE;
    w = cit_malloc(12 * len + 8);
    if (!w) return CIT_ENOMEM;
    memcpy(w, "\xe2\x96\x81", 3);
    for (size_t i = 0; i <= len;) {
        uint32_t cp = ' ', f[3];
        int nf;
        if (i < len)
            i += (size_t)uni_decode(text + i, len - i, &cp);
        else
            i++;
        if (uni_flags(cp) & UNI_WS) {
            if (n > 3) wpm_word(m, w, n, out);
            n = 3;
            continue;
        }
        if (cp == 0 || cp == 0xFFFD || (uni_flags(cp) & UNI_C)) continue;
        nf = uni_fold(cp, f);
        for (int k = 0; k < nf; k++) {
            const uint8_t fl = uni_flags(f[k]);
            const int alone = (fl & UNI_P) || (f[k] < 0x7F && (fl & UNI_S)) || is_cjk(f[k]);
            if (alone && n > 3) wpm_word(m, w, n, out), n = 3;
            n += (size_t)uni_encode(f[k], w + n);
            if (alone) wpm_word(m, w, n, out), n = 3;
        }
    }
    cit_free(w);
    return 0;
}

/* ---- public tokenizer ---- */

/* Tokenizes one piece of raw text (no special tokens inside). */
static int tokenize_raw(const struct eng_model *m, const char *text, size_t len, int space_prefix,
                        struct ids *out)
{
    const struct eng_vocab_int *v = m->vocab;
    if (m->vinfo.type == ENG_VOCAB_SPM) {
        /* ' ' becomes U+2581 (3 bytes); an optional leading one is added. */
        size_t cap = 3 * len + 4, n = 0;
        char *t;
        int rc;
        if (len > SIZE_MAX / 4) return CIT_ERANGE;
        t = cit_malloc(cap);
        if (!t) return CIT_ENOMEM;
        if (space_prefix) memcpy(t, "\xe2\x96\x81", 3), n = 3;
        for (size_t i = 0; i < len; i++) {
            if (text[i] == ' ')
                memcpy(t + n, "\xe2\x96\x81", 3), n += 3;
            else
                t[n++] = text[i];
        }
        rc = spm_tokenize(v, t, n, out);
        cit_free(t);
        return rc;
    }
    if (m->vinfo.type == ENG_VOCAB_WPM) return wpm_tokenize(m, text, len, out);
    return bpe_tokenize(v, text, len, out);
}

int eng_tokenize(const struct eng_model *m, const char *text, size_t len, int add_special,
                 int parse_special, int32_t *ids, int cap, int *n_out)
{
    const struct eng_vocab_int *v = m->vocab;
    const struct eng_vocab_info *vi = &m->vinfo;
    struct ids out = {ids, 0, cap < 0 ? 0 : cap};
    size_t start = 0, pos = 0;
    int prev_special = 1, rc = 0;

    if (add_special && vi->add_bos) push(&out, vi->bos);
    while (pos <= len && !rc) {
        int hit = -1;
        if (pos < len) {
            uint8_t b = (uint8_t)text[pos];
            for (int i = v->by_byte[b]; i < v->by_byte[b + 1]; i++) {
                int id = v->special_by_byte[i];
                const struct gguf_str *t = &v->text_own[id];
                if (!parse_special && v->attr[id] == ENG_TOK_CONTROL) continue;
                if (t->n <= len - pos && memcmp(t->p, text + pos, t->n) == 0) {
                    hit = id;
                    break;
                }
            }
            if (hit < 0) {
                pos++;
                continue;
            }
        }
        if (pos > start) {
            rc = tokenize_raw(m, text + start, pos - start,
                              vi->type == ENG_VOCAB_SPM && vi->add_space_prefix && prev_special,
                              &out);
            prev_special = 0;
        }
        if (hit >= 0) {
            push(&out, hit);
            prev_special = 1;
            pos += v->text_own[hit].n;
            start = pos;
        } else {
            break;
        }
    }
    if (!rc && add_special && vi->add_eos) push(&out, vi->eos);
    if (rc) return rc;
    *n_out = out.n;
    return out.n > cap ? CIT_EOVERFLOW : 0;
}

int eng_token_is_eog(const struct eng_model *m, int32_t id)
{
    const struct eng_vocab_info *vi = &m->vinfo;
    return id >= 0 && (id == vi->eos || id == vi->eot);
}

int eng_token_piece(const struct eng_model *m, int32_t id, int render_special, char *buf,
                    size_t cap)
{
    const struct eng_vocab_int *v = m->vocab;
    const struct gguf_str *t;
    size_t n = 0;
    int attr;
    if (id < 0 || id >= v->n) return CIT_ERANGE;
    t = &v->text_own[id];
    attr = v->attr[id];
    if (attr == ENG_TOK_CONTROL || attr == ENG_TOK_UNUSED) {
        if (!render_special) return 0;
        if (t->n > cap) return CIT_EOVERFLOW;
        memcpy(buf, t->p, t->n);
        return (int)t->n;
    }
    if (attr == ENG_TOK_USER_DEFINED) {
        if (t->n > cap) return CIT_EOVERFLOW;
        memcpy(buf, t->p, t->n);
        return (int)t->n;
    }
    if (m->vinfo.type == ENG_VOCAB_SPM || m->vinfo.type == ENG_VOCAB_WPM) {
        if (attr == ENG_TOK_BYTE && t->n == 6) {
            unsigned b;
            if (sscanf(t->p, "<0x%02X>", &b) == 1) {
                if (cap < 1) return CIT_EOVERFLOW;
                buf[0] = (char)b;
                return 1;
            }
        }
        if (attr == ENG_TOK_UNKNOWN) {
            if (cap < 3) return CIT_EOVERFLOW;
            memcpy(buf, "\xe2\x96\x85", 3);
            return 3;
        }
        for (size_t i = 0; i < t->n;) {
            if (i + 3 <= t->n && !memcmp(t->p + i, "\xe2\x96\x81", 3)) {
                if (n >= cap) return CIT_EOVERFLOW;
                buf[n++] = ' ';
                i += 3;
            } else {
                if (n >= cap) return CIT_EOVERFLOW;
                buf[n++] = t->p[i++];
            }
        }
        return (int)n;
    }
    /* Byte-level BPE: every codepoint of the token text stands for one byte. */
    for (size_t i = 0; i < t->n;) {
        uint32_t c;
        i += (size_t)uni_decode(t->p + i, t->n - i, &c);
        if (n >= cap) return CIT_EOVERFLOW;
        if (c < 512 && v->cp_byte[c] >= 0) {
            buf[n++] = (char)v->cp_byte[c];
        } else { /* not a byte-level token: emit the codepoint as is */
            char enc[4];
            int el = uni_encode(c, enc);
            if (n + (size_t)el > cap) return CIT_EOVERFLOW;
            memcpy(buf + n, enc, (size_t)el);
            n += (size_t)el;
        }
    }
    return (int)n;
}

/* Emits complete UTF-8 sequences; keeps an incomplete tail for the next token. */
int eng_detok_push(const struct eng_model *m, struct eng_detok *d, int32_t id, char *out,
                   size_t cap)
{
    char piece[MAX_TOKEN_LEN + 8];
    int n = eng_token_piece(m, id, 0, piece + d->n_pending, sizeof(piece) - 8);
    size_t total, keep = 0, i;
    if (n < 0) return n;
    memcpy(piece, d->pending, (size_t)d->n_pending);
    total = (size_t)d->n_pending + (size_t)n;
    /* Find where the last character starts; hold it back if incomplete. */
    for (i = total; i > 0 && total - i < 4; i--) {
        uint8_t c = (uint8_t)piece[i - 1];
        if ((c & 0xC0) != 0x80) {
            if (c >= 0xC0 && (size_t)uni_len(c) > total - (i - 1)) keep = total - (i - 1);
            break;
        }
    }
    if (total - keep > cap) return CIT_EOVERFLOW;
    memcpy(out, piece, total - keep);
    memcpy(d->pending, piece + total - keep, keep);
    d->n_pending = (int)keep;
    return (int)(total - keep);
}

int eng_detok_flush(struct eng_detok *d, char *out, size_t cap)
{
    if (!d->n_pending) return 0;
    if (cap < 3) return CIT_EOVERFLOW;
    d->n_pending = 0;
    memcpy(out, "\xef\xbf\xbd", 3);
    return 3;
}
