/* core: allocation fault injection, checked arithmetic, thread pool. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* ---- the state file's schema versions ---- */

static const char *const steps3[] = {
    "CREATE TABLE a (x INTEGER)", /* no IF NOT EXISTS: running a step twice fails */
    "CREATE TABLE b (y INTEGER)",
    "CREATE TABLE c (z INTEGER)",
};

struct db_opener {
    const char *path;
    int rc;
};

static void *db_open_main(void *p)
{
    struct db_opener *o = p;
    struct cit_db *d = NULL;
    struct cit_err err;
    o->rc = cit_db_open(o->path, steps3, 3, &d, &err);
    cit_db_close(d);
    return NULL;
}

/* The file's schema version, read with SQLite alone. */
static int db_version(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

void test_core_db_migrate(void)
{
    char path[600];
    struct cit_db *d = NULL;
    struct cit_err err;
    struct stat st;
    snprintf(path, sizeof(path), "%s/core-db.db", t_tmpdir());
    unlink(path);
    /* a new file: created 0600, every step run */
    CHECK(cit_db_open(path, steps3, 2, &d, &err) == 0);
    cit_db_close(d);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(db_version(path) == 2);
    /* a newer binary runs only the steps past the file's */
    CHECK(cit_db_open(path, steps3, 3, &d, &err) == 0);
    cit_db_close(d);
    CHECK(db_version(path) == 3);
    /* an older binary refuses a newer file, and says which versions */
    CHECK(cit_db_open(path, steps3, 1, &d, &err) == CIT_ENOTSUP);
    CHECKF(strstr(err.msg, "schema version 3 is newer than this citadel's (1)"), "%s", err.msg);
    /* two processes' worth of openers on an old file migrate it once */
    for (int round = 0; round < 4; round++) {
        struct db_opener o[4];
        pthread_t th[4];
        unlink(path);
        CHECK(cit_db_open(path, steps3, 1, &d, &err) == 0);
        cit_db_close(d);
        for (int i = 0; i < 4; i++) {
            o[i] = (struct db_opener){path, 1};
            pthread_create(&th[i], NULL, db_open_main, &o[i]);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            CHECKF(o[i].rc == 0, "round %d opener %d: %d", round, i, o[i].rc);
        }
        CHECK(db_version(path) == 3);
    }
}
