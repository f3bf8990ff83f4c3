/*
 * libFuzzer target for the tokenizers (make fuzz): arbitrary bytes, valid
 * UTF-8 or not, through a SentencePiece and three byte-level BPE
 * vocabularies (gpt2, deepseek-llm and falcon pre-tokenizers), with and
 * without special-token parsing. Byte-level BPE is lossless for valid
 * UTF-8, and replaces each byte of an invalid sequence by U+FFFD (as the
 * reference tokenizer does), so decoding the ids must give exactly the
 * input with that replacement -- when the vocabulary has a token for every
 * byte involved (falcon's lacks some control bytes, which are then dropped,
 * as the reference drops them). SentencePiece must produce in-vocabulary
 * ids that decode without error, and so must WordPiece (synth-bert's
 * vocabulary: folding, punctuation splitting and [UNK] for words that do
 * not cut), twice the same. Vocabularies come from ../shared/models/vocab
 * (or $CITADEL_MODELS/vocab) and ../shared/models/synth-bert.gguf.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "citadel/engine.h"
#include "../src/engine/eng_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct eng_model *vocabs[4], *wpm;
static int bpe[4];
static uint8_t representable[4][256]; /* byte b decodes back from its own tokens */

/* The input with every byte that does not start a valid UTF-8 sequence
 * replaced by U+FFFD, using the same decoder rules as the tokenizer
 * (shortest form, no surrogates, at most U+10FFFF). */
static size_t replace_invalid(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint8_t c = in[i];
        int len = c < 0x80 ? 1 : c >= 0xF8 ? 0 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
        uint32_t cp = len == 1 ? c : (uint32_t)(c & (0x7F >> len));
        int ok = len > 0 && (size_t)len <= n - i;
        for (int k = 1; ok && k < len; k++) {
            ok = (in[i + k] & 0xC0) == 0x80;
            cp = cp << 6 | (in[i + k] & 0x3F);
        }
        if (ok && len > 1)
            ok = !((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
                   (len == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF));
        if (ok) {
            memcpy(out + o, in + i, (size_t)len);
            o += (size_t)len;
            i += (size_t)len;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    return o;
}

/* Whether the text decodes back to itself with this vocabulary. */
static int round_trips(struct eng_model *m, const char *txt, size_t len)
{
    int32_t ids[8];
    char out[64];
    size_t on = 0;
    int n = 0;
    if (eng_tokenize(m, txt, len, 0, 0, ids, 8, &n)) return 0;
    for (int k = 0; k < n; k++) {
        int r = eng_token_piece(m, ids[k], 1, out + on, sizeof(out) - on);
        if (r > 0) on += (size_t)r;
    }
    return on == len && !memcmp(out, txt, len);
}

static void load_vocabs(void)
{
    static const char *names[4] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf",
                                   "ggml-vocab-deepseek-llm.gguf", "ggml-vocab-falcon.gguf"};
    const char *dir = getenv("CITADEL_MODELS");
    {
        char path[1024];
        struct cit_err err;
        snprintf(path, sizeof(path), "%s/synth-bert.gguf", dir ? dir : "../shared/models");
        if (eng_model_load_vocab(path, &wpm, &err) || eng_vocab(wpm)->type != ENG_VOCAB_WPM) {
            fprintf(stderr, "fuzz_tokenize: %s\n", err.msg);
            abort();
        }
    }
    for (int i = 0; i < 4; i++) {
        char path[1024];
        struct cit_err err;
        snprintf(path, sizeof(path), "%s/vocab/%s", dir ? dir : "../shared/models", names[i]);
        if (eng_model_load_vocab(path, &vocabs[i], &err)) {
            fprintf(stderr, "fuzz_tokenize: %s\n", err.msg);
            abort();
        }
        bpe[i] = eng_vocab(vocabs[i])->type == ENG_VOCAB_BPE;
        /* Each byte inside the shortest valid character that contains it:
         * ASCII alone, a continuation byte after 0xC2, a lead byte with the
         * continuation bytes its range needs. */
        for (int b = 0; b < 256; b++) {
            char txt[4];
            size_t len = 0;
            if (b < 0x80) {
                txt[len++] = (char)b;
            } else if (b < 0xC0) {
                txt[len++] = (char)0xC2;
                txt[len++] = (char)b;
            } else if (b >= 0xC2 && b < 0xE0) {
                txt[len++] = (char)b;
                txt[len++] = (char)0x80;
            } else if (b >= 0xE0 && b < 0xF0) {
                txt[len++] = (char)b;
                txt[len++] = (char)(b == 0xE0 ? 0xA0 : 0x80);
                txt[len++] = (char)0x80;
            } else if (b >= 0xF0 && b < 0xF5) {
                txt[len++] = (char)b;
                txt[len++] = (char)(b == 0xF0 ? 0x90 : 0x80);
                txt[len++] = (char)0x80;
                txt[len++] = (char)0x80;
            } else {
                continue; /* never part of valid UTF-8 */
            }
            representable[i][b] = (uint8_t)round_trips(vocabs[i], txt, len);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    int32_t ids[4096];
    char out[16384];
    uint8_t want[3 * 2048];
    size_t wn;
    if (!ready) {
        load_vocabs();
        ready = 1;
    }
    if (size > 2048) return 0;
    {
        /* WordPiece: each byte folds to at most three codepoints, each at
         * most a word (one id), plus [CLS] and [SEP] */
        static int32_t w1[3 * 2048 + 2], w2[3 * 2048 + 2];
        int n1 = 0, n2 = 0;
        if (eng_tokenize(wpm, (const char *)data, size, 1, 0, w1, 3 * 2048 + 2, &n1) ||
            eng_tokenize(wpm, (const char *)data, size, 1, 0, w2, 3 * 2048 + 2, &n2) || n1 != n2 ||
            memcmp(w1, w2, (size_t)n1 * sizeof(int32_t)) || n1 < 2 ||
            w1[0] != eng_vocab(wpm)->bos || w1[n1 - 1] != eng_vocab(wpm)->eos)
            abort();
        for (int i = 0; i < n1; i++) {
            if (w1[i] < 0 || w1[i] >= eng_vocab(wpm)->n_tokens) abort();
            if (eng_token_piece(wpm, w1[i], 1, out, sizeof(out)) < 0) abort();
        }
    }
    wn = replace_invalid(data, size, want);
    for (int v = 0; v < 4; v++) {
        for (int special = 0; special < 2; special++) {
            int n = 0,
                rc = eng_tokenize(vocabs[v], (const char *)data, size, 0, special, ids, 4096, &n);
            size_t on = 0;
            if (rc) abort(); /* 2 KiB of text always fits in 4096 ids */
            for (int i = 0; i < n; i++) {
                int k;
                if (ids[i] < 0 || ids[i] >= eng_vocab(vocabs[v])->n_tokens) abort();
                k = eng_token_piece(vocabs[v], ids[i], 1, out + on, sizeof(out) - on);
                if (k < 0) abort();
                on += (size_t)k;
            }
            if (bpe[v] && !special) {
                int exact = 1;
                for (size_t b = 0; b < wn && exact; b++) exact = representable[v][want[b]];
                if (exact && (on != wn || memcmp(out, want, wn))) abort();
            }
        }
    }
    return 0;
}
