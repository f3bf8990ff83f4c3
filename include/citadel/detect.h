/*
 * detect: find personal and secret data in text, and redact it.
 *
 * One pass over the text feeds every byte to an Aho-Corasick automaton
 * (keyword dictionaries, API-key prefixes, PEM armour) and, at each word
 * start, hands the token to the structural recognisers that can begin
 * with its first byte (digits: cards, national ids, phones, IPv4; capital
 * letters: IBAN, NINO, VAT; '@': e-mail; hex and ':': IPv6; long runs:
 * high-entropy tokens). Candidates then meet their validators (Luhn,
 * Verhoeff, mod 97, the national check-digit rules), which remove the
 * false positives: a number whose check digit is wrong is not reported.
 *
 * Findings are byte spans of the input with a class and a confidence.
 * Overlaps are settled so that a span is reported under its most specific
 * class (a card number is not also a phone number; a token already named
 * is not also "high entropy"); keyword hits are labels and always kept.
 *
 * Fail closed: a scan that cannot finish (no memory, too many findings)
 * returns an error, and callers treat an error as "deny".
 */
#ifndef CITADEL_DETECT_H
#define CITADEL_DETECT_H

#include <stddef.h>
#include <stdint.h>

#include "citadel/core.h"

/* Detector classes, in the order they are named in output. */
enum det_class {
    DET_EMAIL,
    DET_PHONE,
    DET_IBAN,
    DET_CARD,
    DET_IPV4,
    DET_IPV6,
    DET_IN_AADHAAR,
    DET_JP_MY_NUMBER,
    DET_FR_NIR,
    DET_UK_NINO,
    DET_US_SSN,
    DET_DE_TAX_ID,
    DET_EU_VAT,
    DET_PRIVATE_KEY,
    DET_API_KEY,
    DET_SECRET_TOKEN,
    DET_KEYWORD,
    DET_CLASS_COUNT
};

/* "email", "phone", ... "keyword"; NULL when out of range. */
const char *det_class_name(int cls);
/* The class named s, or -1. */
int det_class_from_name(const char *s);

struct det_finding {
    int cls;           /* enum det_class */
    size_t start, end; /* byte span [start, end) of the scanned text */
    float confidence;  /* 0..1: how sure the detector is that this is what it says */
    int keyword;       /* DET_KEYWORD: index of the keyword given to det_scanner_new; else -1 */
};

struct det_findings {
    struct det_finding *v;
    size_t n, cap;
};
void det_findings_free(struct det_findings *f);

/* A dictionary entry: matched as a whole word (ASCII letters and digits
 * around it are not part of it), case-insensitively unless exact_case. */
struct det_keyword {
    const char *word;
    int exact_case;
};

#define DET_MAX_KEYWORDS    4096
#define DET_MAX_KEYWORD_LEN 128
#define DET_MAX_FINDINGS    65536 /* per scan; beyond it the scan fails (closed) */

struct det_scanner;

/* Builds a scanner with the built-in detectors and the given keywords
 * (copied; n may be 0). Errors name the offending keyword. */
int det_scanner_new(const struct det_keyword *kw, size_t n, struct det_scanner **out /* out */,
                    struct cit_err *err);
void det_scanner_free(struct det_scanner *s);

/* Scans text[0..len) and appends its findings to out, sorted by start.
 * Thread-safe: a scanner is read-only after det_scanner_new. Returns 0,
 * CIT_ENOMEM, or CIT_ERANGE past DET_MAX_FINDINGS; on error out holds
 * what it held before. */
int det_scan(const struct det_scanner *s, const char *text, size_t len, struct det_findings *out);

/* det_scan for text made of parts with a one-byte joint between each two
 * (joints: the joints' offsets, ascending): also finds a value split
 * across a joint, by scanning the parts glued together, and reports it
 * over the original span (the joint included). Chat messages are parts:
 * a card number or a keyword sent half in one message and half in the
 * next is found. */
int det_scan_parts(const struct det_scanner *s, const char *text, size_t len, const size_t *joints,
                   size_t n_joints, struct det_findings *out);

/* Writes the findings as JSON lines ({"class","start","end","confidence",
 * "text"}, and "keyword" for keyword hits) into b. */
int det_findings_json(const struct det_scanner *s, const char *text, const struct det_findings *f,
                      struct cit_buf *b);

/* ---- redaction ----
 * Each finding's text is replaced by a typed placeholder, [EMAIL_1],
 * [CARD_2], numbered per class in order of first appearance; the same
 * value gets the same placeholder throughout a request. The mapping lives
 * in memory only and is wiped when freed. */
struct det_redaction {
    struct cit_buf text;  /* the redacted text */
    char **placeholder;   /* (n) "[EMAIL_1]" */
    char **original;      /* (n) the value it stands for (may hold NUL bytes) */
    size_t *original_len; /* (n) its length */
    size_t n;
    int count[DET_CLASS_COUNT]; /* placeholders made per class */
};

/* Redacts text by findings f (as det_scan gave them; overlapping spans are
 * merged into the first). */
int det_redact(const char *text, size_t len, const struct det_findings *f,
               struct det_redaction *out /* out */);
/* Redacts one more text into out with the mapping of r, which it extends:
 * a request of several messages shares one numbering, and the same value
 * keeps one placeholder across them. */
int det_redact_append(struct det_redaction *r, const char *text, size_t len,
                      const struct det_findings *f, struct cit_buf *out);
/* Replaces each placeholder of r found in text by its original, into b. */
int det_restore(const struct det_redaction *r, const char *text, size_t len, struct cit_buf *b);
/* Zeroes the originals and frees everything. */
void det_redaction_free(struct det_redaction *r);

/* ---- streaming ----
 * For text[0, len) that is still growing and the findings f of det_scan on
 * it: the offset before which no finding can change as more text arrives
 * (see src/detect/stream.c for what is held back). hold is the window of
 * trailing bytes always held back, at least the longest multi-word
 * finding to be caught whole (phone numbers, grouped IBANs, keywords). */
#define DET_MIN_HOLD 48 /* the longest multi-word built-in finding (a grouped IBAN: 42) fits */
size_t det_stable_end(const char *text, size_t len, const struct det_findings *f, size_t hold);

#endif
