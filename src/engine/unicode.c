/* UTF-8 decoding/encoding, category lookup and WordPiece folding. */
#include "unicode.h"

uint8_t uni_flags(uint32_t cp)
{
    int lo = 0, hi = uni_n_ranges - 1;
    if (cp > 0x10FFFF) return 0;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < uni_ranges[mid].first)
            hi = mid - 1;
        else if (cp > uni_ranges[mid].last)
            lo = mid + 1;
        else
            return uni_ranges[mid].flags;
    }
    return 0;
}

int uni_fold(uint32_t cp, uint32_t out[3])
{
    int lo = 0, hi = uni_n_folds - 1;
    if (cp >= 0xAC00 && cp <= 0xD7A3) { /* Hangul: leading, vowel, trailing jamo */
        const uint32_t s = cp - 0xAC00;
        out[0] = 0x1100 + s / 588;
        out[1] = 0x1161 + s % 588 / 28;
        if (s % 28 == 0) return 2;
        out[2] = 0x11A7 + s % 28;
        return 3;
    }
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < uni_folds[mid].cp) {
            hi = mid - 1;
        } else if (cp > uni_folds[mid].cp) {
            lo = mid + 1;
        } else {
            for (int i = 0; i < uni_folds[mid].n; i++) out[i] = uni_fold_seq[uni_folds[mid].at + i];
            return uni_folds[mid].n;
        }
    }
    out[0] = cp;
    return 1;
}

int uni_decode(const char *s, size_t n, uint32_t *cp)
{
    const uint8_t *u = (const uint8_t *)s;
    int len;
    uint32_t v;
    if (u[0] < 0x80) {
        *cp = u[0];
        return 1;
    }
    /* A continuation byte cannot start a character, and 0xF8..0xFF start
     * nothing in UTF-8: both are invalid on their own. */
    if (u[0] < 0xC0 || u[0] >= 0xF8) goto bad;
    len = uni_len(u[0]);
    if ((size_t)len > n) goto bad;
    v = u[0] & (0x7F >> len);
    for (int i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) goto bad;
        v = v << 6 | (u[i] & 0x3F);
    }
    /* Overlong forms and surrogates are invalid too. */
    if ((len == 2 && v < 0x80) || (len == 3 && v < 0x800) || (len == 4 && v < 0x10000) ||
        v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        goto bad;
    *cp = v;
    return len;
bad:
    *cp = 0xFFFD;
    return 1;
}

int uni_encode(uint32_t cp, char *out)
{
    uint8_t *o = (uint8_t *)out;
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | cp >> 6);
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12);
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18);
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}
