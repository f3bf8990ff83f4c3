/* Internals of the detect module: what its files share, and the entry
 * points its tests and fuzz targets call (not part of citadel/detect.h). */
#ifndef CITADEL_DETECT_INT_H
#define CITADEL_DETECT_INT_H

#include "citadel/detect.h"

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
