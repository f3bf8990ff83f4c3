/*
 * Check-digit validators. Each takes the identifier with its separators
 * removed and says whether it is well formed and its check digits hold.
 * Sources for the rules: ISO/IEC 7812 (Luhn), ISO 13616 (IBAN, mod 97),
 * ISO 7064 MOD 11,10 (German tax ID and VAT), the UIDAI's use of
 * Verhoeff, Japan's Cabinet Office ordinance on the individual number,
 * INSEE (NIR key), HMRC (NINO prefixes), the SSA (SSN ranges) and the
 * member states' VAT check rules as the EU's VIES documents them.
 */
#include <string.h>

#include "citadel/detect.h"
#include "detect_int.h"

static int all_digits(const char *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (d[i] < '0' || d[i] > '9') return 0;
    return n > 0;
}

int det_luhn_ok(const char *d, size_t n)
{
    if (!all_digits(d, n) || n < 2) return 0;
    int sum = 0;
    for (size_t i = 0; i < n; i++) {
        int v = d[n - 1 - i] - '0';
        if (i & 1) v = v * 2 > 9 ? v * 2 - 9 : v * 2;
        sum += v;
    }
    return sum % 10 == 0;
}

/* Verhoeff: the dihedral group D5's multiplication table and the position
 * permutation, as published with the scheme. */
static const uint8_t verhoeff_d[10][10] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 2, 3, 4, 0, 6, 7, 8, 9, 5}, {2, 3, 4, 0, 1, 7, 8, 9, 5, 6},
    {3, 4, 0, 1, 2, 8, 9, 5, 6, 7}, {4, 0, 1, 2, 3, 9, 5, 6, 7, 8}, {5, 9, 8, 7, 6, 0, 4, 3, 2, 1},
    {6, 5, 9, 8, 7, 1, 0, 4, 3, 2}, {7, 6, 5, 9, 8, 2, 1, 0, 4, 3}, {8, 7, 6, 5, 9, 3, 2, 1, 0, 4},
    {9, 8, 7, 6, 5, 4, 3, 2, 1, 0}};
static const uint8_t verhoeff_p[8][10] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 5, 7, 6, 2, 8, 3, 0, 9, 4}, {5, 8, 0, 3, 7, 9, 6, 1, 4, 2},
    {8, 9, 1, 6, 0, 4, 3, 5, 2, 7}, {9, 4, 5, 3, 1, 2, 6, 8, 7, 0}, {4, 2, 8, 6, 5, 7, 3, 9, 0, 1},
    {2, 7, 9, 3, 8, 0, 6, 4, 1, 5}, {7, 0, 4, 6, 9, 1, 3, 2, 5, 8}};

int det_verhoeff_ok(const char *d, size_t n)
{
    if (!all_digits(d, n)) return 0;
    int c = 0;
    for (size_t i = 0; i < n; i++) c = verhoeff_d[c][verhoeff_p[i % 8][d[n - 1 - i] - '0']];
    return c == 0;
}

/* The number formed by s (digits, and letters A=10 .. Z=35) modulo 97,
 * read left to right; -1 for any other byte. */
static int mod97(const char *s, size_t n)
{
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9')
            r = (r * 10 + (c - '0')) % 97;
        else if (c >= 'A' && c <= 'Z')
            r = (r * 100 + (c - 'A' + 10)) % 97;
        else
            return -1;
    }
    return r;
}

/* IBAN lengths by country (SWIFT's IBAN registry). */
static const struct {
    char cc[3];
    uint8_t len;
} iban_len[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16}, {"BG", 22},
    {"BH", 22}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24}, {"DE", 22},
    {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24}, {"FI", 18}, {"FO", 18}, {"FR", 27},
    {"GB", 22}, {"GE", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28},
    {"IE", 22}, {"IL", 23}, {"IQ", 23}, {"IS", 26}, {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20},
    {"LB", 28}, {"LC", 32}, {"LI", 21}, {"LT", 20}, {"LU", 20}, {"LV", 21}, {"MC", 27}, {"MD", 24},
    {"ME", 22}, {"MK", 19}, {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NL", 18}, {"NO", 15}, {"PK", 24},
    {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"SA", 24}, {"SC", 31},
    {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"ST", 25}, {"SV", 28}, {"TL", 23}, {"TN", 24},
    {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20},
};

int det_iban_ok(const char *s, size_t n)
{
    char buf[34];
    size_t want = 0;
    if (n < 15 || n > 34) return 0;
    for (size_t i = 0; i < sizeof(iban_len) / sizeof(iban_len[0]); i++)
        if (s[0] == iban_len[i].cc[0] && s[1] == iban_len[i].cc[1]) want = iban_len[i].len;
    if (want != n || s[2] < '0' || s[2] > '9' || s[3] < '0' || s[3] > '9') return 0;
    /* the first four characters move to the end */
    memcpy(buf, s + 4, n - 4);
    memcpy(buf + n - 4, s, 4);
    return mod97(buf, n) == 1;
}

int det_jp_my_number_ok(const char *d, size_t n)
{
    static const int q[11] = {6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2};
    if (n != 12 || !all_digits(d, n)) return 0;
    int sum = 0;
    for (int i = 0; i < 11; i++) sum += (d[i] - '0') * q[i];
    int r = sum % 11, check = r <= 1 ? 0 : 11 - r;
    return d[11] - '0' == check;
}

/* 15 characters: sex (1, 2, or 3, 4, 7, 8 for provisional numbers), year,
 * month (01-12, or 20 and up where unknown), department (2A/2B for
 * Corsica), commune, order, then a key of 97 - (the first thirteen mod 97). */
int det_fr_nir_ok(const char *s, size_t n)
{
    char b[13];
    if (n != 15) return 0;
    memcpy(b, s, 13);
    if (s[6] == 'A' || s[6] == 'B') { /* Corsica: 2A counts as 19, 2B as 18 */
        if (s[5] != '2') return 0;
        b[5] = '1';
        b[6] = s[6] == 'A' ? '9' : '8';
    }
    if (!all_digits(b, 13) || !all_digits(s + 13, 2) || !strchr("123478", b[0])) return 0;
    int month = (b[3] - '0') * 10 + (b[4] - '0');
    if (!((month >= 1 && month <= 12) || month >= 20)) return 0;
    long long v = 0;
    for (int i = 0; i < 13; i++) v = v * 10 + (b[i] - '0');
    return (s[13] - '0') * 10 + (s[14] - '0') == 97 - (int)(v % 97);
}

/* ISO 7064 MOD 11,10 over the first n-1 digits gives the last. */
static int mod11_10_ok(const char *d, size_t n)
{
    int product = 10;
    for (size_t i = 0; i + 1 < n; i++) {
        int sum = (d[i] - '0' + product) % 10;
        if (sum == 0) sum = 10;
        product = (2 * sum) % 11;
    }
    int check = 11 - product;
    if (check == 10) check = 0;
    return d[n - 1] - '0' == check;
}

/* 11 digits, no leading zero; among the first ten exactly one digit
 * appears two or three times (three never in a row), the rest at most
 * once; then the MOD 11,10 check digit. */
int det_de_tax_id_ok(const char *d, size_t n)
{
    int count[10] = {0}, repeated = 0;
    if (n != 11 || !all_digits(d, n) || d[0] == '0') return 0;
    for (int i = 0; i < 10; i++) count[d[i] - '0']++;
    for (int k = 0; k < 10; k++) {
        if (count[k] > 3) return 0;
        if (count[k] >= 2) repeated++;
    }
    if (repeated != 1) return 0;
    for (int i = 0; i + 2 < 10; i++)
        if (d[i] == d[i + 1] && d[i] == d[i + 2]) return 0;
    return mod11_10_ok(d, n);
}

static int weighted(const char *d, const int *w, int n)
{
    int sum = 0;
    for (int i = 0; i < n; i++) sum += (d[i] - '0') * w[i];
    return sum;
}

/* The member states whose VAT numbers carry a check we know; others are
 * not reported (no validator, no finding: precision over recall). */
int det_eu_vat_ok(const char *s, size_t n)
{
    if (n < 4) return 0;
    const char *d = s + 2;
    size_t m = n - 2;
    if (!memcmp(s, "DE", 2)) /* 9 digits, MOD 11,10 */
        return m == 9 && all_digits(d, m) && d[0] != '0' && mod11_10_ok(d, m);
    if (!memcmp(s, "FR", 2)) { /* 2-digit key + SIREN: key = (12 + 3 * (SIREN mod 97)) mod 97 */
        if (m != 11 || !all_digits(d, m)) return 0;
        long siren = 0;
        for (int i = 2; i < 11; i++) siren = siren * 10 + (d[i] - '0');
        return (d[0] - '0') * 10 + (d[1] - '0') == (int)((12 + 3 * (siren % 97)) % 97);
    }
    if (!memcmp(s, "IT", 2)) return m == 11 && det_luhn_ok(d, m);
    if (!memcmp(s, "BE", 2)) { /* 10 digits from 0 or 1: 97 - (first 8 mod 97) */
        if (m != 10 || !all_digits(d, m) || d[0] > '1') return 0;
        long v = 0;
        for (int i = 0; i < 8; i++) v = v * 10 + (d[i] - '0');
        return (d[8] - '0') * 10 + (d[9] - '0') == 97 - (int)(v % 97);
    }
    if (!memcmp(s, "NL", 2)) { /* 9 digits B 2 digits: mod 11 (old) or the whole mod 97 (2020) */
        static const int w[8] = {9, 8, 7, 6, 5, 4, 3, 2};
        if (m != 12 || !all_digits(d, 9) || d[9] != 'B' || !all_digits(d + 10, 2)) return 0;
        if (weighted(d, w, 8) % 11 == d[8] - '0') return 1;
        return mod97(s, n) == 1;
    }
    if (!memcmp(s, "AT", 2)) { /* U + 8 digits: Luhn-like over seven, + 4 */
        if (m != 9 || d[0] != 'U' || !all_digits(d + 1, 8)) return 0;
        int r = 0;
        for (int i = 0; i < 7; i++) {
            int v = d[1 + i] - '0';
            if (i & 1) v = v * 2 > 9 ? v * 2 - 9 : v * 2;
            r += v;
        }
        return d[8] - '0' == (10 - (r + 4) % 10) % 10;
    }
    if (!memcmp(s, "PL", 2)) {
        static const int w[9] = {6, 5, 7, 2, 3, 4, 5, 6, 7};
        if (m != 10 || !all_digits(d, m)) return 0;
        int r = weighted(d, w, 9) % 11;
        return r != 10 && r == d[9] - '0';
    }
    if (!memcmp(s, "DK", 2)) {
        static const int w[8] = {2, 7, 6, 5, 4, 3, 2, 1};
        return m == 8 && all_digits(d, m) && d[0] != '0' && weighted(d, w, 8) % 11 == 0;
    }
    if (!memcmp(s, "FI", 2)) {
        static const int w[7] = {7, 9, 10, 5, 8, 4, 2};
        if (m != 8 || !all_digits(d, m)) return 0;
        int r = weighted(d, w, 7) % 11;
        return r != 1 && (r == 0 ? 0 : 11 - r) == d[7] - '0';
    }
    if (!memcmp(s, "SE", 2)) /* 12 digits ending 01; Luhn over the first ten */
        return m == 12 && all_digits(d, m) && d[10] == '0' && d[11] == '1' && det_luhn_ok(d, 10);
    if (!memcmp(s, "PT", 2)) {
        static const int w[8] = {9, 8, 7, 6, 5, 4, 3, 2};
        if (m != 9 || !all_digits(d, m) || d[0] == '0') return 0;
        int r = 11 - weighted(d, w, 8) % 11;
        return (r >= 10 ? 0 : r) == d[8] - '0';
    }
    if (!memcmp(s, "LU", 2)) { /* first six mod 89 = last two */
        if (m != 8 || !all_digits(d, m)) return 0;
        long v = 0;
        for (int i = 0; i < 6; i++) v = v * 10 + (d[i] - '0');
        return (d[6] - '0') * 10 + (d[7] - '0') == (int)(v % 89);
    }
    return 0;
}

/* Two letters, six digits, A-D. HMRC never issues the first letters D, F,
 * I, Q, U, V, the second letters D, F, I, O, Q, U, V, nor the prefixes BG,
 * GB, KN, NK, NT, TN, ZZ. No check digit exists: these rules are all. */
int det_uk_nino_ok(const char *s, size_t n)
{
    static const char bad_pairs[][3] = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"};
    if (n != 9 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z') return 0;
    if (strchr("DFIQUV", s[0]) || strchr("DFIOQUV", s[1])) return 0;
    for (size_t i = 0; i < sizeof(bad_pairs) / sizeof(bad_pairs[0]); i++)
        if (s[0] == bad_pairs[i][0] && s[1] == bad_pairs[i][1]) return 0;
    return all_digits(s + 2, 6) && s[8] >= 'A' && s[8] <= 'D';
}

/* Area 001-899 except 666, group 01-99, serial 0001-9999 (the SSA's
 * ranges; no check digit exists). */
int det_us_ssn_ok(const char *d, size_t n)
{
    if (n != 9 || !all_digits(d, n)) return 0;
    int area = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
    int group = (d[3] - '0') * 10 + (d[4] - '0');
    int serial = (d[5] - '0') * 1000 + (d[6] - '0') * 100 + (d[7] - '0') * 10 + (d[8] - '0');
    return area != 0 && area != 666 && area < 900 && group != 0 && serial != 0;
}
