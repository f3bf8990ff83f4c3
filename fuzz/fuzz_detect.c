/*
 * libFuzzer target for the detectors (make fuzz): arbitrary bytes as a
 * prompt. Every finding lies inside the input, findings come sorted, and
 * redacting then restoring gives the input back byte for byte.
 */
#include <stdlib.h>
#include <string.h>

#include "citadel/detect.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct det_scanner *s;
    static const struct det_keyword kw[] = {{"secret", 0}, {"CONFIDENTIAL", 1}, {"a", 0}};
    if (!s && det_scanner_new(kw, 3, &s, NULL)) abort();
    const char *t = (const char *)data;
    struct det_findings f = {0};
    if (det_scan(s, t, size, &f)) abort(); /* inputs here are far below the limits */
    for (size_t i = 0; i < f.n; i++) {
        if (f.v[i].start >= f.v[i].end || f.v[i].end > size) abort();
        if (i && f.v[i].start < f.v[i - 1].start) abort();
        if (f.v[i].confidence <= 0 || f.v[i].confidence > 1) abort();
    }
    struct det_redaction r;
    if (det_redact(t, size, &f, &r)) abort();
    struct cit_buf b = {0};
    if (det_restore(&r, r.text.p, r.text.len, &b)) abort();
    /* A placeholder that was in the input already is restored too, so the
     * round trip holds only when the input had none of the brackets. */
    if (!memchr(t, '[', size) && (b.len != size || (size && memcmp(b.p, t, size)))) abort();
    cit_buf_free(&b);
    det_redaction_free(&r);
    det_findings_free(&f);
    return 0;
}
