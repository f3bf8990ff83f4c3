/*
 * The scanner: one pass, an Aho-Corasick automaton for fixed strings and
 * structural recognisers at word starts (see include/citadel/detect.h).
 *
 * Speed comes from doing almost nothing per byte: one table lookup for the
 * automaton's next state, one for "does a recogniser start here". The
 * recognisers run only at word starts whose first byte can begin what they
 * look for, and each remembers how far it read so that the same run is not
 * read again from its middle (which would make a long run quadratic).
 */
#include <arpa/inet.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "detect_int.h"

static const char *const class_names[DET_CLASS_COUNT] = {
    "email",      "phone",        "iban",    "card",         "ipv4",   "ipv6",
    "in_aadhaar", "jp_my_number", "fr_nir",  "uk_nino",      "us_ssn", "de_tax_id",
    "eu_vat",     "private_key",  "api_key", "secret_token", "keyword"};

const char *det_class_name(int cls)
{
    return cls >= 0 && cls < DET_CLASS_COUNT ? class_names[cls] : NULL;
}

int det_class_from_name(const char *s)
{
    for (int i = 0; i < DET_CLASS_COUNT; i++)
        if (!strcmp(s, class_names[i])) return i;
    return -1;
}

/* ---- byte classes ---- */

enum {
    B_DIGIT = 1,
    B_UPPER = 2,
    B_LOWER = 4,
    B_HEX = 8,
    B_TOKEN = 16, /* may appear in a secret token: alnum + / = _ - */
    B_WORD = 32,  /* part of a word: alnum, '_', and every non-ASCII byte */
    B_LOCAL = 64, /* e-mail local part: alnum . _ % + - */
};

static uint8_t bclass[256];

static void init_vat(void);

static void init_bclass(void)
{
    for (int c = 0; c < 256; c++) {
        uint8_t f = 0;
        if (c >= '0' && c <= '9') f |= B_DIGIT | B_HEX | B_TOKEN | B_WORD | B_LOCAL;
        if (c >= 'A' && c <= 'Z') f |= B_UPPER | B_TOKEN | B_WORD | B_LOCAL;
        if (c >= 'a' && c <= 'z') f |= B_LOWER | B_TOKEN | B_WORD | B_LOCAL;
        if ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) f |= B_HEX;
        if (c == '+' || c == '/' || c == '=' || c == '-') f |= B_TOKEN;
        if (c == '_') f |= B_TOKEN | B_WORD | B_LOCAL;
        if (c == '.' || c == '%' || c == '+' || c == '-') f |= B_LOCAL;
        if (c >= 0x80) f |= B_WORD;
        bclass[c] = f;
    }
    init_vat();
}

#define IS(c, f) (bclass[(unsigned char)(c)] & (f))

/* ---- fixed strings: API-key prefixes and PEM armour ---- */

enum prefix_kind {
    P_PEM,
    P_AWS,
    P_GITHUB,
    P_GITHUB_PAT,
    P_GITLAB,
    P_SLACK,
    P_OPENAI,
    P_STRIPE,
    P_GOOGLE,
    P_CITADEL,
    P_JWT,
};

static const struct {
    const char *s;
    int kind;
} prefixes[] = {
    {"-----BEGIN ", P_PEM}, {"AKIA", P_AWS},        {"ASIA", P_AWS},
    {"ghp_", P_GITHUB},     {"gho_", P_GITHUB},     {"ghu_", P_GITHUB},
    {"ghs_", P_GITHUB},     {"ghr_", P_GITHUB},     {"github_pat_", P_GITHUB_PAT},
    {"glpat-", P_GITLAB},   {"xoxb-", P_SLACK},     {"xoxp-", P_SLACK},
    {"xoxa-", P_SLACK},     {"xoxr-", P_SLACK},     {"xoxs-", P_SLACK},
    {"sk-", P_OPENAI},      {"sk_live_", P_STRIPE}, {"sk_test_", P_STRIPE},
    {"rk_live_", P_STRIPE}, {"AIza", P_GOOGLE},     {"cit_", P_CITADEL},
    {"eyJ", P_JWT},
};
#define N_PREFIXES (int)(sizeof(prefixes) / sizeof(prefixes[0]))

/* ---- the automaton ----
 * Patterns are matched on ASCII-folded bytes; exact-case patterns are
 * compared again on the original bytes when they hit. The alphabet is
 * compressed to the bytes that occur in some pattern (others share
 * symbol 0), so the dense table is states x (symbols + 1). */

#define AC_MAX_STATES 65000       /* state ids fit uint16_t */
#define AC_HIT        0x80000000u /* in step[]: the state reached has output */

struct pattern {
    char *s; /* as given */
    uint16_t len;
    uint8_t exact_case;
    int16_t prefix; /* index into prefixes[], or -1 for a keyword */
    int keyword;    /* index into the caller's keywords, or -1 */
    int next_same;  /* next pattern ending in the same state, or -1 */
};

struct det_scanner {
    uint8_t sym[256]; /* folded byte -> symbol */
    int n_sym;        /* symbols including 0 */
    uint16_t *delta;  /* (n_states, n_sym) next state; used while building */
    uint32_t *step;   /* (n_states, n_sym) next state's row offset, | AC_HIT if it has output */
    int32_t *out;     /* (n_states) first pattern ending here, or -1 */
    uint16_t *dict;   /* (n_states) nearest suffix state with output, or 0 */
    int n_states;
    struct pattern *pat;
    int n_pat;
    size_t n_keywords;
};

static unsigned char fold(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static int add_pattern(struct det_scanner *s, const char *str, size_t len, int exact, int prefix,
                       int keyword)
{
    struct pattern *p = &s->pat[s->n_pat++];
    p->s = cit_strndup(str, len);
    if (!p->s) return CIT_ENOMEM;
    p->len = (uint16_t)len;
    p->exact_case = (uint8_t)exact;
    p->prefix = (int16_t)prefix;
    p->keyword = keyword;
    p->next_same = -1;
    return 0;
}

/* Trie, then failure links by breadth-first search, then the dense table.
 * goto_ is the trie's (n_states, n_sym) table with 0 for "no edge" (the
 * root has no incoming edge, so 0 is free to mean that). */
static int build_automaton(struct det_scanner *s, struct cit_err *err)
{
    size_t total = 1;
    for (int i = 0; i < s->n_pat; i++) total += s->pat[i].len;
    if (total > AC_MAX_STATES)
        return cit_err_set(err, CIT_ERANGE,
                           "keywords: %zu bytes in all; at most %d fit the matcher (use fewer "
                           "or shorter keywords)",
                           total, AC_MAX_STATES - 1);
    for (int i = 0; i < s->n_pat; i++)
        for (int j = 0; j < s->pat[i].len; j++) {
            unsigned char c = fold((unsigned char)s->pat[i].s[j]);
            if (!s->sym[c]) s->sym[c] = (uint8_t)s->n_sym++;
            if (s->n_sym > 255)
                return cit_err_set(err, CIT_ERANGE, "keywords: too many distinct bytes");
        }
    const int ns = s->n_sym;
    size_t cells;
    if (cit_mul_size(total, (size_t)ns, &cells)) return CIT_ENOMEM;
    s->delta = cit_calloc(cells, sizeof(uint16_t));
    s->out = cit_malloc(total * sizeof(int32_t));
    s->dict = cit_calloc(total, sizeof(uint16_t));
    uint16_t *fail = cit_calloc(total, sizeof(uint16_t));
    uint16_t *queue = cit_malloc(total * sizeof(uint16_t));
    if (!s->delta || !s->out || !s->dict || !fail || !queue) {
        cit_free(fail);
        cit_free(queue);
        return CIT_ENOMEM;
    }
    for (size_t i = 0; i < total; i++) s->out[i] = -1;
    int n = 1;
    for (int i = 0; i < s->n_pat; i++) {
        int st = 0;
        for (int j = 0; j < s->pat[i].len; j++) {
            int a = s->sym[fold((unsigned char)s->pat[i].s[j])];
            uint16_t *e = &s->delta[(size_t)st * ns + a];
            if (!*e) *e = (uint16_t)n++;
            st = *e;
        }
        s->pat[i].next_same = s->out[st];
        s->out[st] = i;
    }
    s->n_states = n;
    /* breadth first: a state's failure target is shallower, so done before it */
    int qh = 0, qt = 0;
    for (int a = 0; a < ns; a++) {
        uint16_t t = s->delta[a];
        if (t) queue[qt++] = t; /* fail[t] = 0 */
    }
    while (qh < qt) {
        int st = queue[qh++];
        s->dict[st] = s->out[fail[st]] >= 0 ? fail[st] : s->dict[fail[st]];
        for (int a = 0; a < ns; a++) {
            uint16_t *e = &s->delta[(size_t)st * ns + a];
            uint16_t via = s->delta[(size_t)fail[st] * ns + a];
            if (*e) {
                fail[*e] = via;
                queue[qt++] = *e;
            } else {
                *e = via; /* the dense table: follow the failure link now */
            }
        }
    }
    cit_free(fail);
    cit_free(queue);
    for (int c = 'A'; c <= 'Z'; c++) s->sym[c] = s->sym[c + 32]; /* scan without folding */
    /* The scan's table: a step is one load with no multiply, and whether
     * anything ends here rides in the same word. */
    s->step = cit_malloc((size_t)n * (size_t)ns * sizeof(uint32_t));
    if (!s->step) return CIT_ENOMEM;
    for (size_t k = 0; k < (size_t)n * (size_t)ns; k++) {
        unsigned t = s->delta[k];
        s->step[k] = (uint32_t)(t * (unsigned)ns) | (s->out[t] >= 0 || s->dict[t] ? AC_HIT : 0);
    }
    return 0;
}

static pthread_once_t bclass_once = PTHREAD_ONCE_INIT;

int det_scanner_new(const struct det_keyword *kw, size_t n, struct det_scanner **out,
                    struct cit_err *err)
{
    struct det_scanner *s;
    int rc = 0;
    pthread_once(&bclass_once, init_bclass);
    if (n > DET_MAX_KEYWORDS)
        return cit_err_set(err, CIT_ERANGE, "keywords: %zu given, at most %d", n, DET_MAX_KEYWORDS);
    for (size_t i = 0; i < n; i++) {
        size_t l = kw[i].word ? strlen(kw[i].word) : 0;
        if (l == 0 || l > DET_MAX_KEYWORD_LEN)
            return cit_err_set(err, CIT_EINVAL, "keyword %zu: %s (1 to %d bytes)", i + 1,
                               l ? "too long" : "empty", DET_MAX_KEYWORD_LEN);
    }
    s = cit_calloc(1, sizeof(*s));
    if (!s) return CIT_ENOMEM;
    s->n_sym = 1;
    s->n_keywords = n;
    s->pat = cit_calloc((size_t)N_PREFIXES + n, sizeof(*s->pat));
    if (!s->pat) rc = CIT_ENOMEM;
    for (int i = 0; !rc && i < N_PREFIXES; i++)
        rc = add_pattern(s, prefixes[i].s, strlen(prefixes[i].s), 1, i, -1);
    for (size_t i = 0; !rc && i < n; i++)
        rc = add_pattern(s, kw[i].word, strlen(kw[i].word), kw[i].exact_case, -1, (int)i);
    if (!rc) rc = build_automaton(s, err);
    if (rc) {
        if (rc == CIT_ENOMEM) cit_err_set(err, rc, "detect: out of memory building the scanner");
        det_scanner_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void det_scanner_free(struct det_scanner *s)
{
    if (!s) return;
    for (int i = 0; s->pat && i < s->n_pat; i++) cit_free(s->pat[i].s);
    cit_free(s->pat);
    cit_free(s->delta);
    cit_free(s->step);
    cit_free(s->out);
    cit_free(s->dict);
    cit_free(s);
}

void det_findings_free(struct det_findings *f)
{
    cit_free(f->v);
    f->v = NULL;
    f->n = f->cap = 0;
}

/* ---- one scan ---- */

struct scan {
    const char *t;
    size_t len;
    struct det_findings *f;
    int rc;
};

static void emit(struct scan *sc, int cls, size_t start, size_t end, float conf, int keyword)
{
    struct det_findings *f = sc->f;
    if (sc->rc) return;
    if (f->n >= DET_MAX_FINDINGS) {
        sc->rc = CIT_ERANGE;
        return;
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        struct det_finding *v = cit_realloc(f->v, cap * sizeof(*v));
        if (!v) {
            sc->rc = CIT_ENOMEM;
            return;
        }
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = (struct det_finding){cls, start, end, conf, keyword};
}

static int word_end(const struct scan *sc, size_t i)
{
    return i >= sc->len || !IS(sc->t[i], B_WORD);
}

/* Is one of words (lower case, NULL-terminated) in the 48 bytes before
 * start, case-insensitively? Context that names what a number is. */
static int context_has(const struct scan *sc, size_t start, const char *const *words)
{
    char w[48];
    size_t from = start > sizeof(w) ? start - sizeof(w) : 0, n = start - from;
    for (size_t i = 0; i < n; i++) w[i] = (char)fold((unsigned char)sc->t[from + i]);
    for (; *words; words++)
        if (memmem(w, n, *words, strlen(*words))) return 1;
    return 0;
}

static float boost(const struct scan *sc, size_t start, float conf, const char *const *words)
{
    return context_has(sc, start, words) ? (conf + 0.04f > 0.99f ? 0.99f : conf + 0.04f) : conf;
}

static const char *const ctx_ssn[] = {"ssn", "social security", "social sec", NULL};
static const char *const ctx_phone[] = {"phone", "tel", "call", "mobile", "fax", NULL};
static const char *const ctx_card[] = {"card", "visa", "mastercard", "amex", "credit", NULL};
static const char *const ctx_aadhaar[] = {"aadhaar", "aadhar", "uidai", "uid", NULL};
static const char *const ctx_mynum[] = {"my number", "individual number", "mynumber",
                                        "\xe3\x83\x9e\xe3\x82\xa4\xe3\x83\x8a\xe3\x83\xb3"
                                        "\xe3\x83\x90\xe3\x83\xbc",
                                        NULL}; /* マイナンバー */
static const char *const ctx_nir[] = {"nir", "insee",
                                      "s\xc3\xa9"
                                      "curit\xc3\xa9 sociale",
                                      "securite sociale", NULL};
static const char *const ctx_taxid[] = {"steuer", "idnr", "tax id", "tin", NULL};

/* A run of digits with single separators between groups, as people write
 * numbers: "4111 1111 1111 1111", "123-45-6789", "+44 20 7946 0958",
 * "(555) 123-4567", "192.168.0.1", "1 85 05 2A 006 084 36". */
struct numrun {
    char d[40]; /* the digits (and a Corsican A/B) */
    int nd;
    uint8_t group[16];
    int ng;
    unsigned seps; /* bit per separator used: 1 ' ', 2 '-', 4 '.', 8 '/' */
    int plus, paren;
    size_t start, end;
};

static unsigned sep_bit(char c)
{
    return c == ' ' ? 1u : c == '-' ? 2u : c == '.' ? 4u : c == '/' ? 8u : 0u;
}

/* Reads the run at i; returns 0 when it is not one (too long, glued to a
 * word). r->end is where reading stopped either way. */
static int read_numrun(const struct scan *sc, size_t i, struct numrun *r)
{
    const char *t = sc->t;
    size_t j = i, n = sc->len;
    memset(r, 0, offsetof(struct numrun, start));
    r->start = i;
    if (t[j] == '+') {
        r->plus = 1;
        j++;
    }
    if (j < n && t[j] == '(') {
        size_t k = j + 1, m = 0;
        while (k < n && IS(t[k], B_DIGIT) && m < 5) k++, m++;
        if (m == 0 || k >= n || t[k] != ')') {
            r->end = j + 1;
            return 0;
        }
        memcpy(r->d, t + j + 1, m);
        r->nd = (int)m;
        r->group[r->ng++] = (uint8_t)m;
        r->paren = 1;
        j = k + 1;
        if (j < n && (t[j] == ' ' || t[j] == '-')) j++;
    }
    if (j >= n || !IS(t[j], B_DIGIT)) {
        r->end = j;
        return 0;
    }
    for (;;) {
        int m = 0;
        while (j < n &&
               (IS(t[j], B_DIGIT) ||
                /* 2A / 2B: a Corsican department inside a NIR */
                ((t[j] == 'A' || t[j] == 'B') && r->nd + m == 6 && m > 0 && t[j - 1] == '2'))) {
            if (r->nd + m >= (int)sizeof(r->d)) {
                while (j < n && IS(t[j], B_WORD)) j++;
                r->end = j;
                return 0;
            }
            r->d[r->nd + m] = t[j];
            j++, m++;
        }
        r->nd += m;
        if (r->ng == (int)sizeof(r->group)) {
            r->end = j;
            return 0;
        }
        r->group[r->ng++] = (uint8_t)m;
        if (j + 1 < n && sep_bit(t[j]) && IS(t[j + 1], B_DIGIT)) {
            /* dots do not mix with spaces or dashes: "port 22 10.0.0.1" is
             * a number, then an address, and the run ends before the group
             * where they meet, which is read again as the start of a run */
            const unsigned b = sep_bit(t[j]);
            if (r->ng > 1 && ((b == 4 && (r->seps & ~4u)) || (b != 4 && (r->seps & 4)))) {
                r->nd -= m;
                r->ng--;
                r->end = j - (size_t)m - 1;
                return 1;
            }
            r->seps |= b;
            j++;
            continue;
        }
        /* "+1 (555) 123-4567", "+44 (0) 20 7946 0958": an area code in
         * parentheses after the country code */
        if (r->plus && !r->paren && j + 3 < n && t[j] == ' ' && t[j + 1] == '(' &&
            IS(t[j + 2], B_DIGIT)) {
            size_t k = j + 2;
            while (k < n && IS(t[k], B_DIGIT) && k - j < 7) k++;
            if (k + 2 < n && t[k] == ')' && (t[k + 1] == ' ' || t[k + 1] == '-') &&
                IS(t[k + 2], B_DIGIT) && r->nd + (int)(k - j - 2) < (int)sizeof(r->d)) {
                memcpy(r->d + r->nd, t + j + 2, k - j - 2);
                r->nd += (int)(k - j - 2);
                r->paren = 1;
                r->seps |= 1;
                j = k + 2;
                continue;
            }
        }
        break;
    }
    r->end = j;
    return word_end(sc, j) && !(j < n && t[j] == '@');
}

static int groups_are(const struct numrun *r, const uint8_t *g, int ng)
{
    if (r->ng != ng) return 0;
    for (int k = 0; k < ng; k++)
        if (r->group[k] != g[k]) return 0;
    return 1;
}

/* Known card issuer ranges (ISO/IEC 7812 IINs of the networks people
 * paste): Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro. */
static int card_iin_ok(const char *d, int nd)
{
    int p2 = (d[0] - '0') * 10 + (d[1] - '0');
    int p4 = p2 * 100 + (d[2] - '0') * 10 + (d[3] - '0');
    if (d[0] == '4') return nd == 13 || nd == 16 || nd == 19;
    if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) return nd == 16;
    if (p2 == 34 || p2 == 37) return nd == 15;
    if (p4 == 6011 || p2 == 65 || (p4 >= 6440 && p4 <= 6499)) return nd >= 16;
    if (p2 == 35) return nd >= 16;
    if (p2 == 36 || p2 == 38 || p2 == 30) return nd >= 14;
    if (p2 == 62) return nd >= 16;
    if (p2 == 50 || (p2 >= 56 && p2 <= 69)) return nd >= 12;
    return 0;
}

static void numeric(struct scan *sc, struct numrun *r)
{
    const char *d = r->d;
    const int nd = r->nd;
    const unsigned seps = r->seps;
    int found = 0;

    if (!r->plus && !r->paren && seps == 4 && r->ng == 4) { /* dotted quad */
        int ok = 1;
        for (int k = 0, o = 0; ok && k < 4; o += r->group[k++]) {
            int v = 0;
            if (r->group[k] > 3 || (r->group[k] > 1 && d[o] == '0')) ok = 0;
            for (int q = 0; ok && q < r->group[k]; q++) v = v * 10 + (d[o + q] - '0');
            if (v > 255) ok = 0;
        }
        if (ok) {
            emit(sc, DET_IPV4, r->start, r->end, 0.9f, -1);
            return;
        }
        /* not an address: "4111.1111.1111.1111" is a card written with dots */
    }
    if (r->plus) { /* E.164: + country code and subscriber number, 8-15 digits */
        if (nd >= 8 && nd <= 15 && d[0] != '0' && !(seps & 8))
            emit(sc, DET_PHONE, r->start, r->end, 0.9f, -1);
        return;
    }
    if (!r->paren && !(seps & 8)) { /* spaces, dashes or dots: identifiers */
        static const uint8_t g444[] = {4, 4, 4}, g4444[] = {4, 4, 4, 4}, g465[] = {4, 6, 5},
                             g44443[] = {4, 4, 4, 4, 3}, nir[] = {1, 2, 2, 2, 3, 3, 2},
                             g2333[] = {2, 3, 3, 3}, g324[] = {3, 2, 4};
        const int bare = r->ng == 1;
        if (nd >= 13 && nd <= 19 &&
            (bare || groups_are(r, g4444, 4) || groups_are(r, g465, 3) ||
             groups_are(r, g44443, 5)) &&
            card_iin_ok(d, nd) && det_luhn_ok(d, (size_t)nd)) {
            emit(sc, DET_CARD, r->start, r->end, boost(sc, r->start, 0.95f, ctx_card), -1);
            found = 1;
        }
        if (nd == 12 && (bare || groups_are(r, g444, 3))) {
            if (d[0] >= '2' && det_verhoeff_ok(d, 12)) {
                emit(sc, DET_IN_AADHAAR, r->start, r->end, boost(sc, r->start, 0.9f, ctx_aadhaar),
                     -1);
                found = 1;
            }
            if (det_jp_my_number_ok(d, 12)) {
                emit(sc, DET_JP_MY_NUMBER, r->start, r->end, boost(sc, r->start, 0.9f, ctx_mynum),
                     -1);
                found = 1;
            }
        }
        if (nd == 15 && (bare || groups_are(r, nir, 7)) && det_fr_nir_ok(d, 15)) {
            emit(sc, DET_FR_NIR, r->start, r->end, boost(sc, r->start, 0.95f, ctx_nir), -1);
            found = 1;
        }
        if (nd == 11 && (bare || groups_are(r, g2333, 4)) && det_de_tax_id_ok(d, 11)) {
            emit(sc, DET_DE_TAX_ID, r->start, r->end, boost(sc, r->start, 0.9f, ctx_taxid), -1);
            found = 1;
        }
        if (nd == 9 && det_us_ssn_ok(d, 9)) {
            if (groups_are(r, g324, 3) && (seps == 1 || seps == 2)) {
                emit(sc, DET_US_SSN, r->start, r->end, boost(sc, r->start, 0.85f, ctx_ssn), -1);
                found = 1;
            } else if (bare && context_has(sc, r->start, ctx_ssn)) {
                emit(sc, DET_US_SSN, r->start, r->end, 0.75f, -1);
                found = 1;
            }
        }
        if (found) return;
    }
    /* national phone formats; a number must look like one, not merely be long */
    if (seps & 8 || memchr(d, 'A', (size_t)nd) || memchr(d, 'B', (size_t)nd)) return;
    static const uint8_t nanp[] = {3, 3, 4}, nanp1[] = {1, 3, 3, 4}, in55[] = {5, 5};
    const int one_sep = seps == 1 || seps == 2 || seps == 4;
    float conf = 0;
    if (r->paren && nd >= 9 && nd <= 12)
        conf = 0.8f;
    else if (nd == 10 && d[0] >= '2' && groups_are(r, nanp, 3) && one_sep)
        conf = 0.8f;
    else if (nd == 11 && d[0] == '1' && groups_are(r, nanp1, 4) && one_sep)
        conf = 0.8f;
    else if (nd == 10 && d[0] >= '6' && groups_are(r, in55, 2) && seps == 1)
        conf = 0.7f;
    else if (d[0] == '0' && d[1] != '0' && (nd == 10 || nd == 11) && r->ng >= 2 && one_sep) {
        int ok = 1;
        for (int k = 0; k < r->ng; k++) ok &= r->group[k] >= 2 && r->group[k] <= 6;
        if (ok) conf = 0.7f;
    }
    if (conf > 0) emit(sc, DET_PHONE, r->start, r->end, boost(sc, r->start, conf, ctx_phone), -1);
}

/* EU member states' VAT prefixes (Greece writes EL, Northern Ireland XI),
 * as a 26 x 26 table filled once. */
static uint8_t vat_cc[26][26];

static void init_vat(void)
{
    static const char cc[][3] = {"AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "EL", "ES",
                                 "FI", "FR", "HR", "HU", "IE", "IT", "LT", "LU", "LV", "MT",
                                 "NL", "PL", "PT", "RO", "SE", "SI", "SK", "XI"};
    for (size_t i = 0; i < sizeof(cc) / sizeof(cc[0]); i++)
        vat_cc[cc[i][0] - 'A'][cc[i][1] - 'A'] = 1;
}

/* s[0] and s[1] are capitals */
static int vat_country(const char *s)
{
    return vat_cc[s[0] - 'A'][s[1] - 'A'];
}

/* Identifiers that start with two capitals: IBAN (printed in groups of
 * four or not), UK NINO ("QQ 12 34 56 C"), EU VAT ("DE 123456789"). */
/* An IBAN at i, in capitals or not ("de89 3704 ..." is the same account),
 * printed in groups of four (spaces, dashes or dots) or not. 1 when found. */
static int iban(struct scan *sc, size_t i)
{
    const char *t = sc->t;
    const size_t n = sc->len;
    char b[40], sep = 0;
    size_t j = i, m = 0;
    if (i + 4 > n || !IS(t[i], B_UPPER | B_LOWER) || !IS(t[i + 1], B_UPPER | B_LOWER) ||
        !IS(t[i + 2], B_DIGIT) || !IS(t[i + 3], B_DIGIT))
        return 0;
    while (j < n && m < 34) {
        unsigned char c = (unsigned char)t[j];
        if (IS(c, B_UPPER | B_DIGIT | B_LOWER)) {
            b[m++] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
            j++;
        } else if ((c == ' ' || c == '-' || c == '.') && (!sep || c == sep) && m % 4 == 0 &&
                   j + 1 < n && IS(t[j + 1], B_UPPER | B_DIGIT | B_LOWER)) {
            sep = (char)c;
            j++;
        } else {
            break;
        }
        if (m >= 15 && word_end(sc, j) && det_iban_ok(b, m)) {
            emit(sc, DET_IBAN, i, j, 0.95f, -1);
            return 1;
        }
    }
    return 0;
}

static void letters(struct scan *sc, size_t i)
{
    const char *t = sc->t;
    const size_t n = sc->len;
    char b[40];
    if (i + 4 > n || !IS(t[i + 1], B_UPPER)) return;
    if (IS(t[i + 2], B_DIGIT) || t[i + 2] == ' ') { /* NINO */
        size_t j = i + 2, m = 2;
        b[0] = t[i], b[1] = t[i + 1];
        for (int pair = 0; pair < 3; pair++) {
            if (j < n && t[j] == ' ') j++;
            if (j + 2 > n || !IS(t[j], B_DIGIT) || !IS(t[j + 1], B_DIGIT)) goto vat;
            b[m++] = t[j], b[m++] = t[j + 1];
            j += 2;
        }
        if (j < n && t[j] == ' ') j++;
        if (j < n && IS(t[j], B_UPPER)) {
            b[m++] = t[j++];
            if (word_end(sc, j) && det_uk_nino_ok(b, m)) {
                emit(sc, DET_UK_NINO, i, j, 0.85f, -1);
                return;
            }
        }
    }
vat:
    if (vat_country(t + i) && i + 2 < n &&
        (IS(t[i + 2], B_DIGIT) || t[i + 2] == ' ' || t[i + 2] == 'U')) {
        size_t j = i + 2, m = 2;
        b[0] = t[i], b[1] = t[i + 1];
        if (j < n && t[j] == ' ') j++;
        while (j < n && m < 16 && IS(t[j], B_UPPER | B_DIGIT)) b[m++] = t[j++];
        if (m > 2 && word_end(sc, j) && det_eu_vat_ok(b, m)) emit(sc, DET_EU_VAT, i, j, 0.9f, -1);
    }
}

/* '@' at i: the local part before it, the domain after. */
static void email(struct scan *sc, size_t i)
{
    const char *t = sc->t;
    size_t a = i, j = i + 1, last_dot = 0, labels = 0;
    while (a > 0 && i - a < 64 && IS(t[a - 1], B_LOCAL)) a--;
    while (a < i && (t[a] == '.' || t[a] == '-' || t[a] == '+')) a++;
    if (a == i || t[i - 1] == '.') return;
    for (;;) {
        size_t l = j;
        while (j < sc->len && j - i < 254 && (IS(t[j], B_UPPER | B_LOWER | B_DIGIT) || t[j] == '-'))
            j++;
        if (j == l || t[l] == '-' || t[j - 1] == '-') break;
        labels++;
        last_dot = l;
        if (j + 1 < sc->len && t[j] == '.' && IS(t[j + 1], B_UPPER | B_LOWER | B_DIGIT)) {
            j++;
            continue;
        }
        break;
    }
    if (labels < 2) return;
    for (size_t k = last_dot; k < j; k++)
        if (!IS(t[k], B_UPPER | B_LOWER)) return; /* the top-level domain is letters */
    if (j - last_dot < 2 || !word_end(sc, j)) return;
    emit(sc, DET_EMAIL, a, j, 0.95f, -1);
}

/* A run of hex digits, ':' and '.' with two colons or more: IPv6 if
 * inet_pton says so and it is not just "a::b" (code more often than not). */
static size_t ipv6(struct scan *sc, size_t i)
{
    const char *t = sc->t;
    size_t j = i, colons = 0, groups = 0;
    char buf[64];
    while (j < sc->len && j - i < 45 && (IS(t[j], B_HEX) || t[j] == ':' || t[j] == '.')) {
        if (t[j] == ':')
            colons++;
        else if (j == i || t[j - 1] == ':')
            groups++;
        j++;
    }
    if (colons < 2 || j - i >= 45 || !word_end(sc, j) || (j < sc->len && t[j] == ':')) return j;
    while (j > i && t[j - 1] == '.') j--;
    memcpy(buf, t + i, j - i);
    buf[j - i] = 0;
    struct in6_addr addr;
    if ((groups >= 3 || (buf[0] == ':' && groups >= 1)) && inet_pton(AF_INET6, buf, &addr) == 1)
        emit(sc, DET_IPV6, i, j, 0.9f, -1);
    return j;
}

/* A long run of token bytes that looks random: at least 24 bytes with
 * letters and digits and a Shannon entropy of 4 bits per byte or more
 * (3 for hex, which has only 16 symbols, and then at least 32 bytes).
 * The scan loop tracks runs as it goes and calls this when one of 24
 * bytes or more ends at j; '=' ends a run and is taken as base64 padding. */
static void entropy_token(struct scan *sc, size_t i, size_t j)
{
    const char *t = sc->t;
    while (j < sc->len && t[j] == '=' && j - i < 4096) j++;
    size_t n = j - i;
    if (n > 4096 || !word_end(sc, j)) return;
    int count[256] = {0}, digits = 0, alpha = 0, hex = 1;
    size_t seg = 0, longest = 0, switches = 0;
    for (size_t k = i; k < j; k++) {
        unsigned char c = (unsigned char)t[k];
        count[c]++;
        digits += IS(c, B_DIGIT) != 0;
        alpha += IS(c, B_UPPER | B_LOWER) != 0;
        hex &= IS(c, B_HEX) != 0;
        seg = IS(c, B_UPPER | B_LOWER | B_DIGIT) ? seg + 1 : 0;
        if (seg > longest) longest = seg;
        if (k > i && (bclass[c] & (B_UPPER | B_LOWER | B_DIGIT)) !=
                         (bclass[(unsigned char)t[k - 1]] & (B_UPPER | B_LOWER | B_DIGIT)))
            switches++;
    }
    /* Random keys have long unbroken stretches and change between capitals,
     * small letters and digits at every other byte or so; paths, slugs and
     * camelCase names do neither. */
    if (digits < 2 || alpha < 2 || longest < 16 || switches * 10 < n * 3) return;
    double h = 0;
    for (int c = 0; c < 256; c++)
        if (count[c]) {
            double p = (double)count[c] / (double)n;
            h -= p * log2(p);
        }
    if (hex ? (n >= 32 && h >= 3.0) : h >= 4.0)
        emit(sc, DET_SECRET_TOKEN, i, j, hex ? 0.5f : (h >= 4.5 ? 0.8f : 0.6f), -1);
}

/* Bytes after a prefix that make up its key, and how many at least. */
static size_t run_of(const struct scan *sc, size_t j, const char *extra)
{
    size_t k = j;
    while (k < sc->len &&
           (IS(sc->t[k], B_UPPER | B_LOWER | B_DIGIT) || (sc->t[k] && strchr(extra, sc->t[k]))))
        k++;
    return k - j;
}

static void prefix_hit(struct scan *sc, int kind, size_t start, size_t plen)
{
    const char *t = sc->t;
    size_t j = start + plen, r;
    if (kind != P_PEM && start > 0 && (IS(t[start - 1], B_WORD) || t[start - 1] == '-')) return;
    switch (kind) {
    case P_PEM: {
        /* "-----BEGIN ... PRIVATE KEY-----" up to its END line, or the header alone */
        size_t e = j;
        while (e < sc->len && e - j < 64 && (IS(t[e], B_UPPER | B_DIGIT) || t[e] == ' ')) e++;
        if (e - j < 11 || sc->len - e < 5 || memcmp(t + e, "-----", 5)) return;
        if (!memmem(t + j, e - j, "PRIVATE KEY", 11)) return;
        e += 5;
        const char *end = memmem(t + e, sc->len - e < 65536 ? sc->len - e : 65536, "-----END ", 9);
        if (end) {
            const char *close = memmem(end + 9, (size_t)(t + sc->len - end - 9), "-----", 5);
            if (close && close - end < 80) e = (size_t)(close + 5 - t);
        }
        emit(sc, DET_PRIVATE_KEY, start, e, 0.99f, -1);
        return;
    }
    case P_AWS:
        r = run_of(sc, j, "");
        if (r == 16 && word_end(sc, j + r)) {
            for (size_t k = j; k < j + r; k++)
                if (IS(t[k], B_LOWER)) return;
            emit(sc, DET_API_KEY, start, j + r, 0.95f, -1);
        }
        return;
    case P_GITHUB:
        r = run_of(sc, j, "");
        if (r >= 30 && r <= 255 && word_end(sc, j + r))
            emit(sc, DET_API_KEY, start, j + r, 0.95f, -1);
        return;
    case P_GITHUB_PAT:
        r = run_of(sc, j, "_");
        if (r >= 22) emit(sc, DET_API_KEY, start, j + r, 0.95f, -1);
        return;
    case P_GITLAB:
    case P_OPENAI:
    case P_GOOGLE:
    case P_CITADEL: {
        r = run_of(sc, j, "_-");
        size_t need = kind == P_GOOGLE ? 35 : kind == P_CITADEL ? 40 : 20;
        int digits = 0, alpha = 0;
        for (size_t k = j; k < j + r; k++) {
            digits += IS(t[k], B_DIGIT) != 0;
            alpha += IS(t[k], B_UPPER | B_LOWER) != 0;
        }
        if (r >= need && digits && alpha && word_end(sc, j + r))
            emit(sc, DET_API_KEY, start, j + r, kind == P_OPENAI ? 0.9f : 0.95f, -1);
        return;
    }
    case P_SLACK:
        r = run_of(sc, j, "-");
        if (r >= 10) emit(sc, DET_API_KEY, start, j + r, 0.9f, -1);
        return;
    case P_STRIPE:
        r = run_of(sc, j, "");
        if (r >= 16 && word_end(sc, j + r)) emit(sc, DET_API_KEY, start, j + r, 0.95f, -1);
        return;
    case P_JWT: { /* header.payload.signature, base64url, the header a JSON object */
        size_t k = start;
        for (int part = 0; part < 3; part++) {
            size_t l = run_of(sc, k, "_-");
            if (l < (part == 2 ? 16u : 10u)) return;
            k += l;
            if (part < 2) {
                if (k >= sc->len || t[k] != '.') return;
                k++;
            }
        }
        if (word_end(sc, k)) emit(sc, DET_API_KEY, start, k, 0.9f, -1);
        return;
    }
    }
}

static void keyword_hit(struct scan *sc, const struct pattern *p, size_t start)
{
    size_t end = start + p->len;
    if (p->exact_case && memcmp(sc->t + start, p->s, p->len)) return;
    /* whole words: ASCII letters and digits do not continue it */
    if (start > 0 && IS(sc->t[start - 1], B_UPPER | B_LOWER | B_DIGIT) &&
        IS(p->s[0], B_UPPER | B_LOWER | B_DIGIT))
        return;
    if (end < sc->len && IS(sc->t[end], B_UPPER | B_LOWER | B_DIGIT) &&
        IS(p->s[p->len - 1], B_UPPER | B_LOWER | B_DIGIT))
        return;
    emit(sc, DET_KEYWORD, start, end, 1.0f, p->keyword);
}

/* ---- overlaps ---- */

static int priority(int cls)
{
    switch (cls) {
    case DET_PRIVATE_KEY:
        return 10;
    case DET_API_KEY:
        return 9;
    case DET_EMAIL:
        return 8;
    case DET_PHONE:
        return 4;
    case DET_IPV4:
    case DET_IPV6:
        return 5;
    case DET_SECRET_TOKEN:
        return 1;
    default:
        return 7; /* validated identifiers */
    }
}

static int by_start(const void *a, const void *b)
{
    const struct det_finding *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    if (x->end != y->end) return x->end > y->end ? -1 : 1;
    return x->cls - y->cls;
}

/* Among overlapping non-keyword findings keep the most specific: of two
 * that overlap, the lower priority goes (an API key inside a long token is
 * an API key), and at equal priority the one that starts first; two
 * validated identifiers on the same span both stay (a 12-digit number can
 * be a valid Aadhaar and a valid My Number at once). */
static void settle(struct det_finding *v, size_t *n)
{
    if (*n < 2) return;
    qsort(v, *n, sizeof(*v), by_start);
    size_t k = 0;
    for (size_t i = 0; i < *n; i++) {
        struct det_finding f = v[i];
        int keep = 1;
        if (f.cls != DET_KEYWORD)
            for (size_t j = k; j-- > 0 && keep;) {
                struct det_finding *g = &v[j];
                if (g->cls == DET_KEYWORD || g->cls < 0) continue;
                /* Kept findings never overlap, so the first that ends
                 * before f starts means none further back reaches f. */
                if (g->end <= f.start) break;
                int pf = priority(f.cls), pg = priority(g->cls);
                if (g->start == f.start && g->end == f.end) {
                    if (pf == 7 && pg == 7) continue;
                    if (pf > pg) *g = f; /* f takes g's place */
                    keep = 0;
                } else if (pf > pg) {
                    g->cls = -1; /* inside or crossing, the lower priority loses */
                } else {
                    keep = 0;
                }
            }
        if (keep) v[k++] = f;
    }
    size_t m = 0;
    for (size_t i = 0; i < k; i++)
        if (v[i].cls >= 0) v[m++] = v[i];
    *n = m;
}

/* Everything that ends at byte i of the automaton's state st. */
static __attribute__((noinline)) void ac_hits(const struct det_scanner *s, struct scan *sc,
                                              unsigned st, size_t i)
{
    for (unsigned o = s->out[st] >= 0 ? st : s->dict[st]; o; o = s->dict[o])
        for (int p = s->out[o]; p >= 0; p = s->pat[p].next_same) {
            const struct pattern *pt = &s->pat[p];
            size_t start = i + 1 - pt->len;
            if (pt->prefix >= 0) {
                if (!memcmp(sc->t + start, pt->s, pt->len))
                    prefix_hit(sc, prefixes[pt->prefix].kind, start, pt->len);
            } else {
                keyword_hit(sc, pt, start);
            }
        }
}

struct skips {
    size_t num, v6;
};

/* The recognisers that can start at word start i with byte c. */
static __attribute__((noinline)) void at_word_start(struct scan *sc, struct skips *k, size_t i,
                                                    unsigned char c)
{
    const uint8_t f = bclass[c];
    if (i >= k->num && (f & B_DIGIT || c == '+' || c == '(')) {
        struct numrun r;
        if (read_numrun(sc, i, &r)) numeric(sc, &r);
        k->num = r.end;
    }
    if (f & (B_UPPER | B_LOWER) && i + 3 < sc->len && !iban(sc, i) && f & B_UPPER) letters(sc, i);
    if (i >= k->v6 && (f & B_HEX || c == ':')) {
        /* at most four hex digits and then a colon, or no IPv6 here */
        size_t j = i;
        while (j < sc->len && j - i < 5 && IS(sc->t[j], B_HEX)) j++;
        if (j < sc->len && sc->t[j] == ':') k->v6 = ipv6(sc, i);
    }
}

static int scan_bytes(const struct det_scanner *s, const char *text, size_t len,
                      struct det_findings *out)
{
    struct scan sc = {text, len, out, 0};
    struct skips k = {0, 0};
    size_t run = 0; /* start of the current run of token bytes */
    const size_t n0 = out->n;
    const uint32_t *step = s->step;
    const uint8_t *sym = s->sym;
    const unsigned ns = (unsigned)s->n_sym;
    unsigned st = 0;
    uint8_t prev = 0; /* bclass of the byte before i */
    for (size_t i = 0; i < len; i++) {
        const unsigned char c = (unsigned char)text[i];
        const uint8_t f = bclass[c];
        st = step[st + sym[c]];
        if (st & AC_HIT) {
            st &= ~AC_HIT;
            ac_hits(s, &sc, st / ns, i);
        }
        if (!(prev & B_WORD) && (f & (B_TOKEN | B_HEX) || c == '(' || c == ':'))
            at_word_start(&sc, &k, i, c);
        else if (c == '@')
            email(&sc, i);
        if (!(f & B_TOKEN) || c == '=') {
            if (i - run >= 24) entropy_token(&sc, run, i);
            run = i + 1;
        }
        prev = f;
        if (sc.rc) break;
    }
    if (!sc.rc && len - run >= 24) entropy_token(&sc, run, len); /* run <= len */
    if (!sc.rc && out->n > n0) { /* (out->v is NULL while nothing was found) */
        size_t m = out->n - n0;
        settle(out->v + n0, &m);
        out->n = n0 + m;
    } else {
        out->n = n0;
    }
    return sc.rc;
}

int det_scan(const struct det_scanner *s, const char *text, size_t len, struct det_findings *out)
{
    struct det_view v;
    const size_t n0 = out->n;
    int rc = det_view_build(text, len, &v);
    if (rc) return rc;
    if (!v.changed) return scan_bytes(s, text, len, out);
    /* the view's findings, over the original bytes they came from */
    if (!(rc = scan_bytes(s, v.p, v.len, out)))
        for (size_t i = n0; i < out->n; i++) {
            struct det_finding *f = &out->v[i];
            size_t a = f->start, b = f->end;
            f->start = v.start[a];
            f->end = b > a ? v.end[b - 1] : v.start[a];
        }
    det_view_free(&v);
    return rc;
}

/* Appends f to out unless out[n0, n) holds it already. */
static int add_unique(struct det_findings *out, size_t n0, const struct det_finding *f)
{
    for (size_t i = n0; i < out->n; i++)
        if (out->v[i].cls == f->cls && out->v[i].start == f->start && out->v[i].end == f->end)
            return 0;
    if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 16;
        struct det_finding *nv = cit_realloc(out->v, cap * sizeof(*nv));
        if (!nv) return CIT_ENOMEM;
        out->v = nv;
        out->cap = cap;
    }
    out->v[out->n++] = *f;
    return 0;
}

/* The findings of glued that cross a joint, over the original text's
 * offsets: glued is text with each joint byte replaced by glue (one byte,
 * same offsets), or taken out (glue 0: at[k] is joint k's offset there). */
static int scan_glued(const struct det_scanner *s, const char *glued, size_t glen, const size_t *at,
                      size_t n_joints, int shifted, struct det_findings *out, size_t n0)
{
    struct det_findings g = {0};
    int rc = det_scan(s, glued, glen, &g);
    for (size_t i = 0; !rc && i < g.n; i++) {
        struct det_finding f = g.v[i];
        size_t k = 0, before_a, before_b;
        int crosses = 0;
        for (size_t j = 0; j < n_joints; j++)
            if (shifted ? f.start < at[j] && f.end > at[j] : f.start < at[j] && f.end > at[j] + 1)
                crosses = 1;
        if (!crosses) continue; /* found part by part already */
        if (shifted) {
            while (k < n_joints && at[k] <= f.start) k++;
            before_a = k;
            while (k < n_joints && at[k] < f.end) k++;
            before_b = k;
            f.start += before_a;
            f.end += before_b;
        }
        rc = add_unique(out, n0, &f);
    }
    det_findings_free(&g);
    return rc;
}

int det_scan_parts(const struct det_scanner *s, const char *text, size_t len, const size_t *joints,
                   size_t n_joints, struct det_findings *out)
{
    struct cit_buf glued = {0};
    size_t *at = NULL; /* at[k]: where joint k falls in the glued text */
    const size_t n0 = out->n;
    int rc = det_scan(s, text, len, out);
    if (rc || !n_joints) return rc;
    /* the parts glued together, for values split across two of them: once
     * with nothing between ("BLUE" "BIRD"), once with a space ("4111 1111"
     * "1111 1111", a number split at a group) */
    if (!(at = cit_calloc(n_joints, sizeof(*at)))) rc = CIT_ENOMEM;
    for (size_t k = 0, from = 0; !rc && k <= n_joints; k++) {
        size_t to = k < n_joints ? joints[k] : len;
        if (to < from || to > len || (k + 1 < n_joints && joints[k + 1] <= to)) {
            rc = CIT_EINVAL;
            break;
        }
        rc = cit_buf_add(&glued, text + from, to - from);
        if (k < n_joints) at[k] = glued.len;
        from = to + 1; /* the joint's byte is left out */
    }
    if (!rc) rc = scan_glued(s, glued.p ? glued.p : "", glued.len, at, n_joints, 1, out, n0);
    if (!rc) {
        glued.len = 0;
        rc = cit_buf_add(&glued, text, len);
        for (size_t k = 0; !rc && k < n_joints; k++) glued.p[joints[k]] = ' ';
        if (!rc) rc = scan_glued(s, glued.p, len, joints, n_joints, 0, out, n0);
    }
    if (!rc && out->n > n0) qsort(out->v + n0, out->n - n0, sizeof(*out->v), by_start);
    if (rc) out->n = n0;
    if (glued.p) explicit_bzero(glued.p, glued.len);
    cit_buf_free(&glued);
    cit_free(at);
    return rc;
}

int det_findings_json(const struct det_scanner *s, const char *text, const struct det_findings *f,
                      struct cit_buf *b)
{
    int rc = 0;
    for (size_t i = 0; i < f->n && !rc; i++) {
        const struct det_finding *x = &f->v[i];
        rc = cit_buf_printf(b, "{\"class\":\"%s\",\"start\":%zu,\"end\":%zu,\"confidence\":%.2f,",
                            det_class_name(x->cls), x->start, x->end, (double)x->confidence);
        if (!rc && x->cls == DET_KEYWORD && s && x->keyword >= 0 &&
            (size_t)x->keyword < s->n_keywords) {
            const struct pattern *p = &s->pat[N_PREFIXES + x->keyword];
            rc = cit_buf_add(b, "\"keyword\":", 10);
            if (!rc) rc = cit_buf_json_str(b, p->s, p->len);
            if (!rc) rc = cit_buf_add(b, ",", 1);
        }
        if (!rc) rc = cit_buf_add(b, "\"text\":", 7);
        if (!rc) rc = cit_buf_json_str(b, text + x->start, x->end - x->start);
        if (!rc) rc = cit_buf_add(b, "}\n", 2);
    }
    return rc;
}
