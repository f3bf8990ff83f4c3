/*
 * Unicode helpers for the tokenizers: UTF-8 decoding that never fails
 * (invalid bytes decode to U+FFFD one byte at a time), general-category
 * classes and WordPiece's case/accent folding from generated tables
 * (unicode_data.c).
 */
#ifndef CITADEL_UNICODE_H
#define CITADEL_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#define UNI_L  0x01 /* letter      \p{L} */
#define UNI_N  0x02 /* number      \p{N} */
#define UNI_P  0x04 /* punctuation \p{P} */
#define UNI_S  0x08 /* symbol      \p{S} */
#define UNI_M  0x10 /* mark        \p{M} */
#define UNI_Z  0x20 /* separator   \p{Z} */
#define UNI_C  0x40 /* other       \p{C} (control, format, unassigned, ...) */
#define UNI_WS 0x80 /* whitespace  \s */

struct uni_range {
    uint32_t first, last;
    uint8_t flags;
};

extern const struct uni_range uni_ranges[];
extern const int uni_n_ranges;

uint8_t uni_flags(uint32_t cp);

/* Uncased WordPiece folding (BERT's normaliser): cp lowercased, decomposed
 * (NFD) and stripped of nonspacing marks, into out (room for 3); returns
 * the count, 0 when cp is dropped (a mark). Generated table (unicode_data.c)
 * plus the Hangul syllables, which decompose by formula. */
struct uni_fold {
    uint32_t cp;
    uint16_t n, at;
};
extern const struct uni_fold uni_folds[];
extern const int uni_n_folds;
extern const uint32_t uni_fold_seq[];
int uni_fold(uint32_t cp, uint32_t out[3]);

/* Decodes one codepoint at s[0..n); returns its length in bytes (>= 1). */
int uni_decode(const char *s, size_t n, uint32_t *cp);
/* Encodes cp as UTF-8 into out (4 bytes room); returns the length. */
int uni_encode(uint32_t cp, char *out);
/* Length of the UTF-8 sequence that starts with byte c, from its lead byte. */
static inline int uni_len(uint8_t c)
{
    static const uint8_t lens[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lens[c >> 4];
}

#endif
