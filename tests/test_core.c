/* core: allocation fault injection, checked arithmetic, thread pool. */
#include <stdatomic.h>

#include "test.h"
#include "../src/core/core_int.h"

void test_core_alloc_fail(void)
{
    void *a, *b, *c;
    cit_alloc_fail_at(2);
    a = cit_malloc(16);
    b = cit_malloc(16);
    c = cit_calloc(2, 8);
    cit_alloc_fail_at(0);
    CHECK(a && !b && !c);
    CHECK(cit_alloc_injected() == 0); /* reset by cit_alloc_fail_at(0) */
    cit_free(a);
    CHECK(cit_calloc(SIZE_MAX / 2, 4) == NULL); /* count * size overflows */
}

void test_core_checked_size(void)
{
    size_t r;
    CHECK(cit_mul_size(SIZE_MAX / 2 + 1, 2, &r) == -1);
    CHECK(cit_mul_size(1000, 1000, &r) == 0 && r == 1000000);
    CHECK(cit_add_size(SIZE_MAX, 1, &r) == -1);
    CHECK(strcmp(cit_strerror(CIT_EFORMAT), "malformed input") == 0);
}

struct pool_arg {
    _Atomic int hits[8];
    _Atomic int calls;
};

static void pool_fn(void *p, int ith, int nth)
{
    struct pool_arg *a = p;
    if (ith < 8 && nth <= 8) atomic_fetch_add(&a->hits[ith], 1);
    atomic_fetch_add(&a->calls, 1);
}

void test_core_pool(void)
{
    for (int n = 1; n <= 4; n++) {
        struct cit_pool *pool;
        struct pool_arg arg;
        memset(&arg, 0, sizeof(arg));
        CHECK(cit_pool_create(n, &pool) == 0);
        CHECK(cit_pool_size(pool) == n);
        for (int r = 0; r < 1000; r++) cit_pool_run(pool, pool_fn, &arg);
        cit_pool_free(pool);
        CHECK(atomic_load(&arg.calls) == 1000 * n);
        for (int i = 0; i < n; i++) CHECKF(atomic_load(&arg.hits[i]) == 1000, "thread %d", i);
    }
    {
        struct cit_pool *pool;
        CHECK(cit_pool_create(0, &pool) == CIT_EINVAL);
    }
}
