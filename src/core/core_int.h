/* Internals of the core module: what its files share, and the entry
 * points its tests and fuzz targets call (not part of citadel/core.h). */
#ifndef CITADEL_CORE_INT_H
#define CITADEL_CORE_INT_H

#include "citadel/core.h"

/* ---- for tests and fuzz targets ---- */

/* Test hook: the nth allocation from now (1-based) and every one after it
 * fails while fail_at is set; 0 turns failure injection off. */
void cit_alloc_fail_at(long nth);

/* Number of allocations that failed by injection since the last reset. */
long cit_alloc_injected(void);

/* cit_conf_load for text in memory; name stands for the file in messages. */
int cit_conf_parse(const char *name, const char *text, size_t len, cit_conf_fn fn, void *user,
                   struct cit_err *err);

#endif
