/*
 * The view the detectors scan: the text as the model reads it, not as its
 * bytes spell it. A value hidden with an invisible character, written in
 * full-width or Arabic-Indic digits, or spelled with a Cyrillic look-alike
 * is the same value to a language model, so it must be the same value to
 * the detectors.
 *
 * Each code point outside ASCII becomes, in this order:
 *   - nothing, when it is default-ignorable (zero-width space and joiners,
 *     soft hyphen, bidi controls, variation selectors, U+FEFF);
 *   - an ASCII digit, when it is a decimal digit of any script (Unicode
 *     Nd: Arabic-Indic, Devanagari, full-width, mathematical...);
 *   - its NFKC form, when that is ASCII (full-width letters, NBSP and the
 *     other compatibility spaces, ligatures, circled and super/subscript
 *     digits);
 *   - its confusable skeleton (Unicode TR39), when that is ASCII letters
 *     and digits (Cyrillic and Greek look-alikes);
 *   - itself otherwise.
 * ICU does the Unicode work (u_hasBinaryProperty, u_charDigitValue,
 * unorm2 and uspoof); the Basic Multilingual Plane's answers are computed
 * once per process into a table, the rest on demand. ASCII is left as it
 * is, so an ASCII text needs no view at all.
 *
 * Every byte of the view remembers the span of the code point it came
 * from, so that a finding in the view maps back to the original bytes and
 * redaction removes the original characters (invisible ones inside the
 * value included).
 */
#include <pthread.h>
#include <string.h>

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/uspoof.h>
#include <unicode/ustring.h>

#include "detect_int.h"

/* How one code point reads: n == KEEP (itself), 0 (dropped), or n ASCII
 * bytes in s. */
#define KEEP 0xFF
struct cp_map {
    uint8_t n;
    char s[7];
};

static struct cp_map *bmp; /* (0x10000) */
static const UNormalizer2 *nfkc;
static USpoofChecker *spoof;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int all_ascii(const char *s, int n, int alnum_only)
{
    for (int i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80 || c < 0x20) return 0;
        if (alnum_only &&
            !((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
            return 0;
    }
    return n > 0;
}

/* 1 with m set when the UTF-16 u[0, n) of an ICU answer (st: its status)
 * is ASCII that fits a cp_map (alnum_only: letters and digits only). */
static int ascii_answer(const UChar *u, int32_t n, UErrorCode st, int alnum_only, struct cp_map *m)
{
    char u8[32];
    int32_t n8;
    if (U_FAILURE(st) || n <= 0) return 0;
    u_strToUTF8(u8, (int32_t)sizeof(u8), &n8, u, n, &st);
    if (U_FAILURE(st) || n8 > (int32_t)sizeof(m->s) || !all_ascii(u8, n8, alnum_only)) return 0;
    m->n = (uint8_t)n8;
    memcpy(m->s, u8, (size_t)n8);
    return 1;
}

static struct cp_map map_cp(UChar32 cp)
{
    struct cp_map m = {KEEP, {0}};
    UChar in[2], out[32];
    int32_t n_in = 0, n_out;
    UErrorCode st = U_ZERO_ERROR;
    if (u_hasBinaryProperty(cp, UCHAR_DEFAULT_IGNORABLE_CODE_POINT)) {
        m.n = 0;
        return m;
    }
    if (u_charType(cp) == U_DECIMAL_DIGIT_NUMBER) {
        int d = u_charDigitValue(cp);
        if (d >= 0 && d <= 9) {
            m.n = 1;
            m.s[0] = (char)('0' + d);
            return m;
        }
    }
    U16_APPEND_UNSAFE(in, n_in, cp);
    if (nfkc) {
        n_out = unorm2_normalize(nfkc, in, n_in, out, 32, &st);
        if (ascii_answer(out, n_out, st, 0, &m)) return m;
    }
    if (spoof) {
        st = U_ZERO_ERROR;
        n_out = uspoof_getSkeleton(spoof, 0, in, n_in, out, 32, &st);
        if (ascii_answer(out, n_out, st, 1, &m)) return m;
    }
    return m;
}

static void init(void)
{
    UErrorCode st = U_ZERO_ERROR;
    nfkc = unorm2_getNFKCInstance(&st);
    if (U_FAILURE(st)) nfkc = NULL;
    st = U_ZERO_ERROR;
    spoof = uspoof_open(&st);
    if (U_FAILURE(st)) spoof = NULL;
    bmp = cit_malloc(0x10000 * sizeof(*bmp));
    if (!bmp) return;
    for (UChar32 cp = 0; cp < 0x10000; cp++) {
        if (cp < 0x80 || (cp >= 0xD800 && cp <= 0xDFFF))
            bmp[cp] = (struct cp_map){KEEP, {0}};
        else
            bmp[cp] = map_cp(cp);
    }
}

int det_norm_ready(void)
{
    pthread_once(&once, init);
    return bmp && nfkc && spoof;
}

/* The code point at s[0, n): its value and length, or -1 with length 1
 * for a byte that does not start a valid sequence. */
static UChar32 next_cp(const unsigned char *s, size_t n, size_t *len)
{
    UChar32 c;
    int32_t i = 0;
    U8_NEXT(s, i, (int32_t)(n > 4 ? 4 : n), c);
    *len = (size_t)i;
    return c;
}

/* Room for n more bytes in v. */
static int view_room(struct det_view *v, size_t n)
{
    size_t cap = v->cap ? v->cap : 256;
    char *np;
    size_t *ns, *ne;
    if (v->len + n <= v->cap) return 0;
    while (cap < v->len + n) cap *= 2;
    if (!(np = cit_realloc(v->p, cap))) return CIT_ENOMEM;
    v->p = np;
    if (!(ns = cit_realloc(v->start, cap * sizeof(size_t)))) return CIT_ENOMEM;
    v->start = ns;
    if (!(ne = cit_realloc(v->end, cap * sizeof(size_t)))) return CIT_ENOMEM;
    v->end = ne;
    v->cap = cap;
    return 0;
}

/* text[from, to) as it is: each byte stands for itself. */
static int view_copy(struct det_view *v, const char *text, size_t from, size_t to)
{
    size_t n = to - from;
    if (view_room(v, n)) return CIT_ENOMEM;
    memcpy(v->p + v->len, text + from, n);
    for (size_t k = 0; k < n; k++) {
        v->start[v->len + k] = from + k;
        v->end[v->len + k] = from + k + 1;
    }
    v->len += n;
    return 0;
}

/* A code point's reading: n bytes standing for the original [from, to). */
static int view_add(struct det_view *v, const char *p, size_t n, size_t from, size_t to)
{
    if (view_room(v, n)) return CIT_ENOMEM;
    for (size_t k = 0; k < n; k++) {
        v->p[v->len + k] = p[k];
        v->start[v->len + k] = from;
        v->end[v->len + k] = to;
    }
    v->len += n;
    return 0;
}

int det_view_build(const char *text, size_t len, struct det_view *v)
{
    const unsigned char *t = (const unsigned char *)text;
    size_t i = 0, copied = 0; /* text[copied, i) is still to be copied as is */
    int rc = 0;
    memset(v, 0, sizeof(*v));
    while (i < len && t[i] < 0x80) i++;
    if (i == len) return 0;                   /* ASCII: the text is its own view */
    if (!det_norm_ready()) return CIT_ENOMEM; /* fail closed: no view, no scan */
    while (i < len && !rc) {
        size_t n;
        UChar32 c;
        struct cp_map m;
        if (t[i] < 0x80) {
            i++;
            continue;
        }
        c = next_cp(t + i, len - i, &n);
        if (c < 0) {
            i += n ? n : 1;
            continue; /* not UTF-8: kept as bytes */
        }
        m = c < 0x10000 ? bmp[c] : map_cp(c);
        if (m.n == KEEP) {
            i += n;
            continue;
        }
        /* everything before it as it is, then its reading */
        if (!v->cap) rc = view_room(v, len + len / 4 + 16); /* one allocation, most often */
        if (!rc && i > copied) rc = view_copy(v, text, copied, i);
        if (!rc && m.n) rc = view_add(v, m.s, m.n, i, i + n);
        i += n;
        copied = i;
        v->changed = 1;
    }
    if (!v->changed) {
        det_view_free(v);
        return rc;
    }
    if (!rc && len > copied) rc = view_copy(v, text, copied, len);
    if (rc) det_view_free(v);
    return rc;
}

void det_view_free(struct det_view *v)
{
    cit_free(v->p);
    cit_free(v->start);
    cit_free(v->end);
    memset(v, 0, sizeof(*v));
}
