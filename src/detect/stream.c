/*
 * Streaming: how much of a text that is still growing (an answer being
 * generated) is settled, so that detection on it cannot change when more
 * bytes arrive. Everything before the stable end can be released; the
 * rest is held back until it settles or the text is complete.
 *
 * Three things can still change near the end of a growing text:
 *   - a finding made of several words (a phone number, an IBAN in groups,
 *     a keyword phrase) may not be complete yet: the last `hold` bytes are
 *     held back;
 *   - a finding made of one long word (an e-mail address, an API key, a
 *     high-entropy token) may be longer than the window: a run of
 *     non-space bytes that reaches the end is held back whole, up to the
 *     longest such finding the detectors report;
 *   - an armoured block ("-----BEGIN ...") with no END line yet may be a
 *     private key whose body is still coming: it is held back from its
 *     BEGIN, up to the distance at which the detector stops looking for
 *     its END.
 * A finding that reaches into the held part is held back from its start.
 */
#include <string.h>

#include "citadel/detect.h"

#define MAX_RUN 4096  /* longest one-word finding: entropy_token's limit */
#define MAX_PEM 66000 /* the PEM detector looks for END within 64 KiB */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* The first "-----BEGIN " after the last "-----END " in t[from, len), or len. */
static size_t open_block(const char *t, size_t from, size_t len)
{
    size_t at = from, open = len;
    for (;;) {
        const char *b = memmem(t + at, len - at, "-----", 5);
        if (!b) break;
        size_t i = (size_t)(b - t);
        if (len - i >= 11 && !memcmp(b, "-----BEGIN ", 11)) {
            if (open == len) open = i;
        } else if (len - i >= 9 && !memcmp(b, "-----END ", 9)) {
            open = len;
        }
        at = i + 5;
    }
    return open;
}

size_t det_stable_end(const char *t, size_t len, const struct det_findings *f, size_t hold)
{
    size_t lim = len > hold ? len - hold : 0, k = len, from;
    while (k > 0 && len - k <= MAX_RUN && !is_space(t[k - 1])) k--;
    if (len - k <= MAX_RUN && k < lim) lim = k;
    from = len > MAX_PEM ? len - MAX_PEM : 0;
    if ((k = open_block(t, from, len)) < lim) lim = k;
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 0; i < f->n; i++) {
            const struct det_finding *x = &f->v[i];
            int open_key = x->cls == DET_PRIVATE_KEY && len - x->start < MAX_PEM &&
                           !memmem(t + x->start, x->end - x->start, "-----END ", 9);
            if (x->start < lim && (x->end > lim || open_key)) {
                lim = x->start;
                changed = 1;
            }
        }
    }
    return lim;
}
