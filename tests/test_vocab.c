/* Tokenizers against the vocabulary test sets (llama.cpp's test data:
 * inputs separated by __ggml_vocab_test__ lines, expected ids per line). */
#include <stdlib.h>

#include "citadel/engine.h"
#include "test.h"
#include "../src/engine/eng_int.h"

static void vocab_check(const char *name)
{
    char path[512];
    struct eng_model *m;
    struct cit_err err;
    char *inp, *out, *ip, *op;
    size_t n_in, n_out;
    int cases = 0;
    const char *sep = "\n__ggml_vocab_test__\n";

    snprintf(path, sizeof(path), "vocab/%s", name);
    CHECKF(eng_model_load_vocab(t_model_path(path), &m, &err) == 0, "%s", err.msg);
    snprintf(path, sizeof(path), "%s/vocab/%s.inp", t_models_dir(), name);
    inp = t_read_file(path, &n_in);
    snprintf(path, sizeof(path), "%s/vocab/%s.out", t_models_dir(), name);
    out = t_read_file(path, &n_out);
    CHECK(inp && out);
    ip = inp;
    op = out;
    for (;;) {
        char *end = strstr(ip, sep), *eol;
        int32_t ids[4096], want[4096];
        int n = 0, nw = 0;
        if (!end) break;
        *end = 0;
        eol = strchr(op, '\n');
        CHECK(eol);
        *eol = 0;
        for (char *p = op; *p;) {
            char *e;
            long v = strtol(p, &e, 10);
            if (e == p) break;
            want[nw++] = (int32_t)v;
            p = e;
        }
        CHECK(eng_tokenize(m, ip, strlen(ip), 0, 0, ids, 4096, &n) == 0);
        if (n != nw || memcmp(ids, want, (size_t)n * sizeof(int32_t))) {
            char got[2048];
            int k = 0;
            for (int i = 0; i < n && k < 2000; i++)
                k += snprintf(got + k, sizeof(got) - (size_t)k, " %d", ids[i]);
            t_fail(__FILE__, __LINE__, "%s case %d '%.60s': got%s, want %s", name, cases, ip, got,
                   op);
            break;
        }
        /* Decoding the ids gives the input back (byte-level BPE is lossless;
         * SentencePiece adds the leading space of the first token). */
        {
            char txt[8192];
            size_t tn = 0;
            for (int i = 0; i < n; i++) {
                int k = eng_token_piece(m, ids[i], 0, txt + tn, sizeof(txt) - tn - 1);
                CHECK(k >= 0);
                tn += (size_t)k;
            }
            txt[tn] = 0;
            if (eng_vocab(m)->type == ENG_VOCAB_BPE)
                CHECKF(!strcmp(txt, ip), "%s case %d: decoded '%s' != '%s'", name, cases, txt, ip);
        }
        cases++;
        ip = end + strlen(sep);
        op = eol + 1;
    }
    if (!t_failed()) t_note("%s: %d cases match", name, cases);
    CHECK(cases > 20);
    cit_free(inp);
    cit_free(out);
    eng_model_free(m);
}

void test_vocab_llama_spm(void)
{
    vocab_check("ggml-vocab-llama-spm.gguf");
}
void test_vocab_phi3(void)
{
    vocab_check("ggml-vocab-phi-3.gguf");
}
void test_vocab_gpt2(void)
{
    vocab_check("ggml-vocab-gpt-2.gguf");
}
void test_vocab_deepseek_llm(void)
{
    vocab_check("ggml-vocab-deepseek-llm.gguf");
}
void test_vocab_falcon(void)
{
    vocab_check("ggml-vocab-falcon.gguf");
}

/* The streaming detokenizer never splits a UTF-8 character. */
void test_tok_detok_utf8(void)
{
    struct eng_model *m;
    struct cit_err err;
    const char *text = "Grüße, 世界! 🦙 done";
    int32_t ids[128];
    int n;
    char out[512];
    size_t on = 0;
    struct eng_detok d = {{0}, 0};
    CHECKF(eng_model_load_vocab(t_model_path("vocab/ggml-vocab-gpt-2.gguf"), &m, &err) == 0, "%s",
           err.msg);
    CHECK(eng_tokenize(m, text, strlen(text), 0, 0, ids, 128, &n) == 0);
    for (int i = 0; i < n; i++) {
        char piece[64];
        int k = eng_detok_push(m, &d, ids[i], piece, sizeof(piece));
        CHECK(k >= 0);
        /* Every emitted chunk is whole UTF-8: it never ends inside a character. */
        if (k) {
            int j = k - 1;
            while (j > 0 && ((unsigned char)piece[j] & 0xC0) == 0x80) j--;
            CHECKF(((unsigned char)piece[j] < 0x80) ||
                       (k - j) == (((unsigned char)piece[j] >= 0xF0)   ? 4
                                   : ((unsigned char)piece[j] >= 0xE0) ? 3
                                                                       : 2),
                   "token %d left a partial character", i);
        }
        memcpy(out + on, piece, (size_t)k);
        on += (size_t)k;
    }
    on += (size_t)eng_detok_flush(&d, out + on, sizeof(out) - on);
    out[on] = 0;
    CHECKF(!strcmp(out, text), "'%s'", out);
    /* A dangling lead byte is flushed as U+FFFD. */
    d.n_pending = 1, d.pending[0] = (char)0xE4;
    CHECK(eng_detok_flush(&d, out, sizeof(out)) == 3 && !memcmp(out, "\xef\xbf\xbd", 3));
    eng_model_free(m);
}

/* Invalid UTF-8 becomes U+FFFD byte by byte, as in the reference; found by
 * fuzz/fuzz_tokenize: a lone continuation byte (0x9f) used to decode as the
 * codepoint U+009F and came back as two bytes. */
void test_tok_invalid_utf8(void)
{
    struct eng_model *m;
    struct cit_err err;
    const char in[] = "a\x9f b\xff c\xc3 d\xed\xa0\x80 e\xf8\x88\x80\x80\x80 f";
    const char want[] =
        "a\xef\xbf\xbd b\xef\xbf\xbd c\xef\xbf\xbd d\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
        " e\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd f";
    int32_t ids[256];
    int n;
    char out[512];
    size_t on = 0;
    CHECKF(eng_model_load_vocab(t_model_path("vocab/ggml-vocab-gpt-2.gguf"), &m, &err) == 0, "%s",
           err.msg);
    CHECK(eng_tokenize(m, in, sizeof(in) - 1, 0, 0, ids, 256, &n) == 0);
    for (int i = 0; i < n; i++) {
        int k = eng_token_piece(m, ids[i], 0, out + on, sizeof(out) - on);
        CHECK(k >= 0);
        on += (size_t)k;
    }
    CHECKF(on == sizeof(want) - 1 && !memcmp(out, want, on), "decoded %zu bytes", on);
    /* Text that is nothing but invalid bytes: the worst case for the
     * tokenizer's buffers (6 bytes of mapped text per input byte). */
    {
        char bad[64];
        memset(bad, 0x9f, sizeof(bad));
        CHECK(eng_tokenize(m, bad, sizeof(bad), 0, 0, ids, 256, &n) == 0 && n > 0);
    }
    eng_model_free(m);
}

/* Control tokens are parsed only when asked; BOS/EOS follow the model. */
void test_tok_special_tokens(void)
{
    struct eng_model *m;
    struct cit_err err;
    int32_t ids[64];
    int n;
    const char *t = "a</s>b";
    CHECKF(eng_model_load_vocab(t_model_path("vocab/ggml-vocab-llama-spm.gguf"), &m, &err) == 0,
           "%s", err.msg);
    CHECK(eng_tokenize(m, t, strlen(t), 1, 1, ids, 64, &n) == 0);
    CHECK(n >= 4 && ids[0] == 1);
    {
        int found = 0;
        for (int i = 0; i < n; i++) found |= ids[i] == 2;
        CHECK(found);
    }
    CHECK(eng_tokenize(m, t, strlen(t), 0, 0, ids, 64, &n) == 0);
    for (int i = 0; i < n; i++) CHECK(ids[i] != 2 && ids[i] != 1);
    /* Too small an output buffer reports the needed size. */
    CHECK(eng_tokenize(m, "hello world", 11, 1, 0, ids, 1, &n) == CIT_EOVERFLOW && n > 1);
    CHECK(eng_token_is_eog(m, 2) && !eng_token_is_eog(m, 1));
    {
        char p[16];
        CHECK(eng_token_piece(m, 2, 0, p, sizeof(p)) == 0);
        CHECK(eng_token_piece(m, 2, 1, p, sizeof(p)) == 4 && !memcmp(p, "</s>", 4));
        CHECK(eng_token_piece(m, 1000000, 0, p, sizeof(p)) == CIT_ERANGE);
    }
    eng_model_free(m);
}
