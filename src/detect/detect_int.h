/* Internals of the detect module: what its files share, and the entry
 * points its tests and fuzz targets call (not part of citadel/detect.h). */
#ifndef CITADEL_DETECT_INT_H
#define CITADEL_DETECT_INT_H

#include "citadel/detect.h"

/* ---- the normalised view (norm.c) ---- */

/* The text as the detectors read it: p[0, len) with, for each byte, the
 * span [start[i], end[i]) of the original code point it came from.
 * changed 0: the text is its own view (nothing allocated). */
struct det_view {
    char *p;
    size_t *start, *end;
    size_t len, cap;
    int changed;
};
/* Builds the view of text; CIT_ENOMEM when it cannot (callers fail closed). */
int det_view_build(const char *text, size_t len, struct det_view *v /* out */);
void det_view_free(struct det_view *v);
/* 1 once ICU's normaliser and spoof checker and the code point table are
 * ready (the first call builds them). */
int det_norm_ready(void);

/* ---- for tests and fuzz targets ---- */

int det_de_tax_id_ok(const char *d, size_t n);

int det_eu_vat_ok(const char *s, size_t n);

int det_fr_nir_ok(const char *s, size_t n);

int det_iban_ok(const char *s, size_t n);

int det_jp_my_number_ok(const char *d, size_t n);

/* ---- validators, exposed for tests and tools ----
 * Each takes ASCII digits (or the identifier's characters, separators
 * removed) and returns 1 when the check digits hold. */
int det_luhn_ok(const char *d, size_t n);

int det_uk_nino_ok(const char *s, size_t n);

int det_us_ssn_ok(const char *d, size_t n);

int det_verhoeff_ok(const char *d, size_t n);

#endif
