/* Internals of the policy module: what its files share, and the entry
 * points its tests and fuzz targets call (not part of citadel/policy.h). */
#ifndef CITADEL_POLICY_INT_H
#define CITADEL_POLICY_INT_H

#include "citadel/policy.h"

/* ---- for tests and fuzz targets ---- */

/* Parses and validates the policy in text (name stands for the file in
 * messages, which read "NAME:LINE: what is wrong; what would fix it").
 * On success *out is the policy, to be freed with pol_free. */
int pol_parse(const char *name, const char *text, size_t len, struct pol_policy **out /* out */,
              struct cit_err *err);

#endif
