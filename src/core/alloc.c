/*
 * Allocation wrappers with fault injection.
 *
 * The counter is process-wide and atomic: tests set it, run one operation,
 * and check that the operation failed cleanly (no leak under ASan, no crash).
 */
#include "citadel/core.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic long fail_at;   /* 0: off; otherwise countdown to first failure */
static _Atomic long injected;  /* failures injected since the last reset */

void cit_alloc_fail_at(long nth)
{
    atomic_store(&fail_at, nth);
    atomic_store(&injected, 0);
}

long cit_alloc_injected(void)
{
    return atomic_load(&injected);
}

/* True when this allocation must fail. Once the countdown reaches 1 it stays
 * there, so every later allocation fails too until the test resets it. */
static int should_fail(void)
{
    long v = atomic_load(&fail_at);
    if (v == 0) return 0;
    while (v > 1) {
        if (atomic_compare_exchange_weak(&fail_at, &v, v - 1)) return 0;
    }
    atomic_fetch_add(&injected, 1);
    return 1;
}

void *cit_malloc(size_t n)
{
    if (should_fail()) return NULL;
    return malloc(n ? n : 1);
}

void *cit_calloc(size_t count, size_t size)
{
    size_t total;
    if (cit_mul_size(count, size, &total)) return NULL;
    if (should_fail()) return NULL;
    return calloc(total ? total : 1, 1);
}

void *cit_realloc(void *p, size_t n)
{
    if (should_fail()) return NULL;
    return realloc(p, n ? n : 1);
}

void *cit_aligned_alloc(size_t align, size_t n)
{
    void *p = NULL;
    if (should_fail()) return NULL;
    if (posix_memalign(&p, align, n ? n : 1)) return NULL;
    return p;
}

char *cit_strndup(const char *s, size_t n)
{
    char *d;
    if (n == SIZE_MAX) return NULL;
    d = cit_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

void cit_free(void *p)
{
    free(p);
}
