/*
 * Thread pool for parallel regions.
 *
 * One region at a time: cit_pool_run publishes (fn, arg) by bumping a
 * generation counter, runs its own share as thread 0, then waits for the
 * workers' pending count to reach zero. Workers spin on the generation for a
 * while (a decode step dispatches hundreds of regions, a futex wake-up per
 * region would cost more than the work) and then sleep on a condition
 * variable. The sleep/wake handshake is Dekker-style over seq_cst atomics:
 * a worker announces `sleeping` before re-checking the generation, the
 * caller bumps the generation before reading `sleeping`, so one of them
 * always sees the other.
 */
#include "citadel/core.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_ITERS 200000 /* about a millisecond of pause instructions */
#define YIELD_EVERY                                                                                \
    256 /* with more threads than cores, spinning steals the                                       \
           core from the thread being waited for: yield now                                        \
           and then so the scheduler can run it */

struct worker {
    struct cit_pool *pool;
    int ith;
};

struct cit_pool {
    int n;
    pthread_t *threads;
    struct worker *workers;
    cit_pool_fn fn;
    void *arg;
    _Atomic uint64_t gen;
    _Atomic int pending;
    _Atomic int sleeping;
    _Atomic int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void *worker_main(void *p)
{
    struct worker *w = p;
    struct cit_pool *pool = w->pool;
    uint64_t seen = 0;

    for (;;) {
        uint64_t g = atomic_load(&pool->gen);
        for (int i = 0; g == seen && i < SPIN_ITERS; i++) {
            cpu_relax();
            if (i % YIELD_EVERY == YIELD_EVERY - 1) sched_yield();
            g = atomic_load(&pool->gen);
        }
        if (g == seen) {
            pthread_mutex_lock(&pool->mu);
            atomic_fetch_add(&pool->sleeping, 1);
            while ((g = atomic_load(&pool->gen)) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->cv, &pool->mu);
            atomic_fetch_sub(&pool->sleeping, 1);
            pthread_mutex_unlock(&pool->mu);
        }
        if (atomic_load(&pool->stop)) break;
        seen = g;
        pool->fn(pool->arg, w->ith, pool->n);
        atomic_fetch_sub(&pool->pending, 1);
    }
    return NULL;
}

int cit_pool_create(int n_threads, struct cit_pool **out)
{
    struct cit_pool *pool;
    int i;

    if (n_threads < 1 || n_threads > 1024) return CIT_EINVAL;
    pool = cit_calloc(1, sizeof(*pool));
    if (!pool) return CIT_ENOMEM;
    pool->n = n_threads;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    if (n_threads > 1) {
        pool->threads = cit_calloc((size_t)n_threads, sizeof(pthread_t));
        pool->workers = cit_calloc((size_t)n_threads, sizeof(struct worker));
        if (!pool->threads || !pool->workers) goto fail;
        for (i = 1; i < n_threads; i++) {
            pool->workers[i].pool = pool;
            pool->workers[i].ith = i;
            if (pthread_create(&pool->threads[i], NULL, worker_main, &pool->workers[i])) {
                pool->n = i; /* join only the ones that started */
                goto fail;
            }
        }
    }
    *out = pool;
    return 0;
fail:
    cit_pool_free(pool);
    return CIT_ENOMEM;
}

void cit_pool_free(struct cit_pool *pool)
{
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    atomic_store(&pool->stop, 1);
    atomic_fetch_add(&pool->gen, 1);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 1; i < pool->n; i++) pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv);
    cit_free(pool->threads);
    cit_free(pool->workers);
    cit_free(pool);
}

int cit_pool_size(const struct cit_pool *pool)
{
    return pool ? pool->n : 1;
}

void cit_pool_run(struct cit_pool *pool, cit_pool_fn fn, void *arg)
{
    if (!pool || pool->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store(&pool->pending, pool->n - 1);
    atomic_fetch_add(&pool->gen, 1);
    if (atomic_load(&pool->sleeping) > 0) {
        pthread_mutex_lock(&pool->mu);
        pthread_cond_broadcast(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
    }
    fn(arg, 0, pool->n);
    for (int i = 1; atomic_load(&pool->pending) > 0; i++) {
        cpu_relax();
        if (i % YIELD_EVERY == 0) sched_yield();
    }
}

int cit_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}
