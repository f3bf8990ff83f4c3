/*
 * Allocation wrappers with fault injection.
 *
 * The counter is process-wide and atomic: tests set it, run one operation,
 * and check that the operation failed cleanly (no leak under ASan, no crash).
 */
#include "citadel/core.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core_int.h"

static _Atomic long fail_at;  /* 0: off; otherwise countdown to first failure */
static _Atomic long injected; /* failures injected since the last reset */

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

/* ---- growable buffer ---- */

static int buf_reserve(struct cit_buf *b, size_t extra)
{
    size_t need, cap;
    char *np;
    if (cit_add_size(b->len, extra, &need) || cit_add_size(need, 1, &need)) return CIT_ERANGE;
    if (need <= b->cap) return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : 2 * cap;
    np = cit_realloc(b->p, cap);
    if (!np) return CIT_ENOMEM;
    b->p = np;
    b->cap = cap;
    return 0;
}

int cit_buf_add(struct cit_buf *b, const void *data, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int cit_buf_printf(struct cit_buf *b, const char *fmt, ...)
{
    va_list ap;
    int k, rc;
    va_start(ap, fmt);
    k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0) return CIT_EINVAL;
    if ((rc = buf_reserve(b, (size_t)k))) return rc;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)k;
    return 0;
}

void cit_buf_free(struct cit_buf *b)
{
    cit_free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
