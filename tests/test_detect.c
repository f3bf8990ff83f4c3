/* detect: validators against published examples, the labelled corpus with
 * precision and recall per detector, redaction, limits and failures. */
#include <stdlib.h>

#include "citadel/detect.h"
#include "test.h"
#include "../src/core/core_int.h"
#include "../src/detect/detect_int.h"

void test_detect_validators(void)
{
    /* published examples: ISO/IEC 7812 test number, the ECBS/SWIFT IBAN
     * examples, the Verhoeff paper's 2363, HMRC's and the SSA's samples */
    CHECK(det_luhn_ok("79927398713", 11));
    CHECK(!det_luhn_ok("79927398710", 11));
    CHECK(det_luhn_ok("4111111111111111", 16));
    CHECK(det_iban_ok("GB82WEST12345698765432", 22));
    CHECK(det_iban_ok("DE89370400440532013000", 22));
    CHECK(det_iban_ok("FR1420041010050500013M02606", 27));
    CHECK(!det_iban_ok("GB82WEST12345698765433", 22));
    CHECK(!det_iban_ok("DE8937040044053201300", 21)); /* DE IBANs have 22 characters */
    CHECK(det_verhoeff_ok("2363", 4));
    CHECK(!det_verhoeff_ok("2364", 4));
    CHECK(det_uk_nino_ok("AB123456C", 9));
    CHECK(!det_uk_nino_ok("QQ123456C", 9)); /* Q never first */
    CHECK(!det_uk_nino_ok("GB123456A", 9)); /* prefix never issued */
    CHECK(!det_uk_nino_ok("AB123456E", 9)); /* suffix A-D only */
    CHECK(det_us_ssn_ok("123456789", 9));
    CHECK(!det_us_ssn_ok("666123456", 9));
    CHECK(!det_us_ssn_ok("900123456", 9));
    CHECK(!det_us_ssn_ok("123006789", 9));
    CHECK(!det_us_ssn_ok("123450000", 9));
    CHECK(det_eu_vat_ok("DE136695976", 11)); /* a check-digit example from the BZSt */
    CHECK(det_eu_vat_ok("FR40303265045", 13));
    CHECK(!det_eu_vat_ok("FR41303265045", 13));
    CHECK(!det_eu_vat_ok("XX123456789", 11)); /* no such country: no finding */
    CHECK(det_fr_nir_ok("255081416802538", 15));
    CHECK(!det_fr_nir_ok("255081416802539", 15));
    CHECK(det_jp_my_number_ok("123456789018", 12));
    CHECK(!det_jp_my_number_ok("123456789012", 12));
    CHECK(det_de_tax_id_ok("86095742719", 11));
    CHECK(!det_de_tax_id_ok("86095742718", 11));
    CHECK(!det_de_tax_id_ok("12345678903", 11)); /* no repeated digit */
}

struct tally {
    int tp, fp, fn;
};

void test_detect_corpus(void)
{
    size_t len;
    char *data = t_read_file("tests/data/detect_corpus.tsv", &len);
    CHECKF(data, "tests/data/detect_corpus.tsv: cannot read (run from the repository root)");
    const struct det_keyword kw[] = {{"bluebird", 0}, {"CONFIDENTIAL", 1}, {"TOP SECRET", 1}};
    struct det_scanner *s;
    struct cit_err err = {{0}};
    CHECK(det_scanner_new(kw, 3, &s, &err) == 0);
    struct tally t[DET_CLASS_COUNT] = {{0}}, ev[DET_CLASS_COUNT] = {{0}};
    int lines = 0, bad = 0, kinds[4] = {0};
    char *save = NULL;
    for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') continue;
        char *kind = line, *exp = strchr(line, '\t'), *text;
        if (!exp || !(text = strchr(exp + 1, '\t'))) {
            bad++;
            continue;
        }
        *exp++ = 0;
        *text++ = 0;
        lines++;
        int evasion = !strcmp(kind, "evasion");
        kinds[!strcmp(kind, "valid") ? 0 : !strcmp(kind, "near") ? 1 : evasion ? 3 : 2]++;
        int want[DET_CLASS_COUNT] = {0}, got[DET_CLASS_COUNT] = {0};
        if (strcmp(exp, "-")) {
            char *sv2 = NULL;
            for (char *c = strtok_r(exp, ",", &sv2); c; c = strtok_r(NULL, ",", &sv2)) {
                int k = det_class_from_name(c);
                CHECKF(k >= 0, "corpus names an unknown class %s", c);
                want[k] = 1;
            }
        }
        struct det_findings f = {0};
        CHECK(det_scan(s, text, strlen(text), &f) == 0);
        for (size_t i = 0; i < f.n; i++) got[f.v[i].cls] = 1;
        for (int k = 0; k < DET_CLASS_COUNT; k++) {
            if (want[k] && got[k]) t[k].tp++;
            if (!want[k] && got[k]) t[k].fp++;
            if (want[k] && !got[k]) t[k].fn++;
            if (evasion && want[k]) ev[k].tp += got[k], ev[k].fn += !got[k];
            if (want[k] != got[k]) {
                t_note("%s line: %s %s: %s", kind, got[k] ? "unexpected" : "missed",
                       det_class_name(k), text);
                bad++;
            }
        }
        det_findings_free(&f);
    }
    t_note("%d lines: %d valid identifiers, %d near misses, %d ordinary, %d evasions", lines,
           kinds[0], kinds[1], kinds[2], kinds[3]);
    t_note("%-14s %5s %5s %5s %9s %6s", "detector", "tp", "fp", "fn", "precision", "recall");
    for (int k = 0; k < DET_CLASS_COUNT; k++) {
        double p = t[k].tp + t[k].fp ? (double)t[k].tp / (t[k].tp + t[k].fp) : 1.0;
        double r = t[k].tp + t[k].fn ? (double)t[k].tp / (t[k].tp + t[k].fn) : 1.0;
        double re = ev[k].tp + ev[k].fn ? (double)ev[k].tp / (ev[k].tp + ev[k].fn) : 1.0;
        t_note("%-14s %5d %5d %5d %9.3f %6.3f   evasions %3d recall %5.3f", det_class_name(k),
               t[k].tp, t[k].fp, t[k].fn, p, r, ev[k].tp + ev[k].fn, re);
        CHECKF(t[k].tp > 0, "%s: the corpus has no true positive", det_class_name(k));
    }
    det_scanner_free(s);
    cit_free(data);
    CHECK(lines > 700 && kinds[3] > 100);
    CHECKF(bad == 0, "%d corpus lines disagree (listed above)", bad);
}

static int scan1(const struct det_scanner *s, const char *text, struct det_findings *f)
{
    return det_scan(s, text, strlen(text), f);
}

void test_detect_spans_and_overlaps(void)
{
    struct det_scanner *s;
    struct det_findings f = {0};
    CHECK(det_scanner_new(NULL, 0, &s, NULL) == 0);
    const char *t = "mail 4111111111111111@example.com now";
    CHECK(scan1(s, t, &f) == 0);
    CHECK(f.n == 1 && f.v[0].cls == DET_EMAIL); /* the digits are the local part, not a card */
    CHECK(f.v[0].start == 5 && f.v[0].end == strlen(t) - 4);
    det_findings_free(&f);
    /* a 12-digit number that passes both Aadhaar's and My Number's check */
    t = "id 234567890124";
    CHECK(scan1(s, t, &f) == 0);
    int aad = 0, jp = 0;
    for (size_t i = 0; i < f.n; i++) {
        aad += f.v[i].cls == DET_IN_AADHAAR;
        jp += f.v[i].cls == DET_JP_MY_NUMBER;
    }
    CHECK(aad == det_verhoeff_ok("234567890124", 12));
    CHECK(jp == det_jp_my_number_ok("234567890124", 12));
    det_findings_free(&f);
    /* an API key is not also a "high-entropy token" */
    t = "key ghp_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7c end";
    CHECK(scan1(s, t, &f) == 0);
    CHECK(f.n == 1 && f.v[0].cls == DET_API_KEY);
    det_findings_free(&f);
    /* a number glued to a word is not an identifier */
    CHECK(scan1(s, "x4111111111111111 4111111111111111y", &f) == 0);
    CHECK(f.n == 0);
    /* findings append to what out held and come sorted */
    CHECK(scan1(s, "a@example.com", &f) == 0);
    CHECK(scan1(s, "10.0.0.1 and b@example.org", &f) == 0);
    CHECK(f.n == 3 && f.v[0].cls == DET_EMAIL && f.v[1].cls == DET_IPV4 && f.v[2].cls == DET_EMAIL);
    det_findings_free(&f);
    /* empty and NUL-containing input */
    CHECK(det_scan(s, "", 0, &f) == 0 && f.n == 0);
    CHECK(det_scan(s, "a\0b@example.com", 15, &f) == 0 && f.n == 1);
    det_findings_free(&f);
    det_scanner_free(s);
}

void test_detect_keywords(void)
{
    struct det_scanner *s;
    struct det_findings f = {0};
    struct cit_err err = {{0}};
    const struct det_keyword kw[] = {
        {"Bluebird", 0},
        {"SECRET", 1},
        {"blue", 0},
        {"\xe3\x83\x9e\xe3\x82\xa4\xe3\x83\x8a\xe3\x83\xb3\xe3\x83\x90\xe3\x83\xbc", 0}};
    CHECK(det_scanner_new(kw, 4, &s, &err) == 0);
    CHECK(scan1(s,
                "BLUEBIRD blue secret SECRET bluebirds "
                "\xe3\x83\x9e\xe3\x82\xa4\xe3\x83\x8a\xe3\x83\xb3\xe3\x83\x90\xe3\x83\xbc!",
                &f) == 0);
    /* BLUEBIRD (0), blue (2), SECRET (1), the Japanese word (3); not "secret"
     * (exact case), not "bluebirds" or the "blue" inside words */
    CHECK(f.n == 4);
    CHECK(f.v[0].keyword == 0 && f.v[0].start == 0 && f.v[0].end == 8);
    CHECK(f.v[1].keyword == 2 && f.v[1].start == 9);
    CHECK(f.v[2].keyword == 1 && f.v[2].start == 21);
    CHECK(f.v[3].keyword == 3);
    det_findings_free(&f);
    struct cit_buf b = {0};
    CHECK(scan1(s, "ok Bluebird", &f) == 0);
    CHECK(det_findings_json(s, "ok Bluebird", &f, &b) == 0);
    CHECK(b.p && strstr(b.p, "\"keyword\":\"Bluebird\"") && strstr(b.p, "\"start\":3"));
    cit_buf_free(&b);
    det_findings_free(&f);
    det_scanner_free(s);
    /* bad dictionaries are refused with a reason */
    const struct det_keyword empty[] = {{"ok", 0}, {"", 0}};
    CHECK(det_scanner_new(empty, 2, &s, &err) == CIT_EINVAL);
    CHECK(strstr(err.msg, "keyword 2") && strstr(err.msg, "empty"));
    char longw[DET_MAX_KEYWORD_LEN + 2];
    memset(longw, 'a', sizeof(longw) - 1);
    longw[sizeof(longw) - 1] = 0;
    const struct det_keyword toolong[] = {{longw, 0}};
    CHECK(det_scanner_new(toolong, 1, &s, &err) == CIT_EINVAL);
    CHECK(strstr(err.msg, "too long"));
}

void test_detect_redact(void)
{
    struct det_scanner *s;
    struct det_findings f = {0};
    struct det_redaction r;
    CHECK(det_scanner_new(NULL, 0, &s, NULL) == 0);
    const char *t = "Mail a@example.com and b@example.org, again a@example.com; "
                    "card 4111 1111 1111 1111.";
    CHECK(scan1(s, t, &f) == 0);
    CHECK(det_redact(t, strlen(t), &f, &r) == 0);
    CHECK(!strcmp(r.text.p, "Mail [EMAIL_1] and [EMAIL_2], again [EMAIL_1]; card [CARD_1]."));
    CHECK(r.n == 3);
    /* an answer that uses the placeholders gets the values back */
    const char *answer = "I wrote to [EMAIL_2] and [EMAIL_1], charged [CARD_1], [EMAIL_9].";
    struct cit_buf b = {0};
    CHECK(det_restore(&r, answer, strlen(answer), &b) == 0);
    CHECK(!strcmp(b.p, "I wrote to b@example.org and a@example.com, charged 4111 1111 1111 "
                       "1111, [EMAIL_9]."));
    cit_buf_free(&b);
    det_redaction_free(&r);
    det_findings_free(&f);
    /* nothing found: the text as it was */
    CHECK(scan1(s, "plain", &f) == 0);
    CHECK(det_redact("plain", 5, &f, &r) == 0 && !strcmp(r.text.p, "plain") && r.n == 0);
    det_redaction_free(&r);
    det_scanner_free(s);
}

void test_detect_limits_and_failures(void)
{
    struct det_scanner *s;
    struct det_findings f = {0};
    struct cit_err err = {{0}};
    const struct det_keyword kw[] = {{"alpha", 0}, {"beta", 1}};
    /* every allocation failure while building and scanning unwinds */
    for (long nth = 1; nth < 40; nth++) {
        cit_alloc_fail_at(nth);
        int rc = det_scanner_new(kw, 2, &s, &err);
        cit_alloc_fail_at(0);
        if (rc) {
            CHECK(rc == CIT_ENOMEM);
            continue;
        }
        cit_alloc_fail_at(nth);
        rc = scan1(s, "alpha a@example.com 10.0.0.1 beta", &f);
        cit_alloc_fail_at(0);
        CHECK(rc == 0 || (rc == CIT_ENOMEM && f.n == 0));
        det_findings_free(&f);
        det_scanner_free(s);
    }
    /* past DET_MAX_FINDINGS the scan fails, closed, and out is unchanged */
    CHECK(det_scanner_new(NULL, 0, &s, NULL) == 0);
    size_t n = (size_t)DET_MAX_FINDINGS + 10, len = n * 9;
    char *big = cit_malloc(len + 1);
    CHECK(big);
    for (size_t i = 0; i < n; i++) memcpy(big + i * 9, "a@ex.com ", 9);
    big[len] = 0;
    CHECK(det_scan(s, big, len, &f) == CIT_ERANGE);
    CHECK(f.n == 0);
    CHECK(det_scan(s, big, (size_t)(DET_MAX_FINDINGS - 1) * 9, &f) == 0);
    CHECK(f.n == (size_t)DET_MAX_FINDINGS - 1);
    det_findings_free(&f);
    /* a long run of separators and digits stays linear and finds nothing */
    for (size_t i = 0; i < len; i++) big[i] = "1-"[i & 1];
    CHECK(det_scan(s, big, len, &f) == 0 && f.n == 0);
    cit_free(big);
    det_scanner_free(s);
}
