/*
 * core: errors, allocation, logging, time and the thread pool.
 *
 * Every other module builds on this one and on libc only.
 *
 * Errors: a function that can fail returns 0 or a negative CIT_E* code.
 * Where a person will read the failure, the function also takes a
 * `struct cit_err *` (may be NULL) and writes a sentence that says what was
 * wrong and where (file, byte offset, field) into it.
 *
 * Allocation: all heap memory goes through cit_malloc() and friends so that a
 * test can make the Nth allocation fail (cit_alloc_fail_at) and check that
 * every caller unwinds cleanly.
 */
#ifndef CITADEL_CORE_H
#define CITADEL_CORE_H

#include <stddef.h>
#include <stdint.h>

/* The release, `citadel --version`. */
#define CITADEL_VERSION "0.16.0"

#define CIT_OK        0
#define CIT_ENOMEM    (-1) /* allocation failed */
#define CIT_EINVAL    (-2) /* bad argument from the caller */
#define CIT_EIO       (-3) /* read, write, open or mmap failed */
#define CIT_EFORMAT   (-4) /* malformed input (file, request, config) */
#define CIT_ERANGE    (-5) /* a value or size out of its allowed range */
#define CIT_ENOTSUP   (-6) /* well-formed but not supported by this build */
#define CIT_ENOENT    (-7) /* not found */
#define CIT_EOVERFLOW (-8) /* output buffer too small */

const char *cit_strerror(int code);

/* A human-readable error: filled by the failing function, read by the caller. */
struct cit_err {
    char msg[512];
};

/* Writes the message (printf-style) into err if err is not NULL. Returns code,
 * so a failing path can read `return cit_err_set(err, CIT_EFORMAT, ...)`. */
int cit_err_set(struct cit_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to the message already in err (no-op when err is NULL). */
void cit_err_prefix(struct cit_err *err, const char *prefix);

/* ---- allocation ---- */

void *cit_malloc(size_t n);
void *cit_calloc(size_t count, size_t size); /* checks count*size for overflow */
void *cit_realloc(void *p, size_t n);
void *cit_aligned_alloc(size_t align, size_t n); /* free with cit_free */
char *cit_strndup(const char *s, size_t n);
void cit_free(void *p);

/* Checked size arithmetic: return 0 and write the result, or -1 on overflow. */
static inline int cit_mul_size(size_t a, size_t b, size_t *out)
{
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}
static inline int cit_add_size(size_t a, size_t b, size_t *out)
{
    return __builtin_add_overflow(a, b, out) ? -1 : 0;
}

/* ---- a seeded generator: xoshiro256**, seeded through splitmix64 ----
 * For what must repeat from a seed (sampling, shuffles, initialisation),
 * never for keys, masks or noise that must stay secret. */
void cit_rng_seed(uint64_t s[4], uint64_t seed);
uint64_t cit_rng_next(uint64_t s[4]);

/* ---- growable byte buffer ----
 * Always NUL-terminated once anything was added; p is NULL while empty. */
struct cit_buf {
    char *p;
    size_t len, cap;
};
int cit_buf_add(struct cit_buf *b, const void *data, size_t n);
int cit_buf_printf(struct cit_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends a string literal. */
#define BUF_LIT(b, lit) cit_buf_add((b), (lit), sizeof(lit) - 1)
/* Reads a whole file of at most max bytes into b (NUL-terminated).
 * CIT_ENOENT, with no message, when it does not exist. */
int cit_read_file(const char *path, size_t max, struct cit_buf *b, struct cit_err *err);
/* Writes p[0..n) to path through path.tmp (created with mode, fsync'd), a
 * rename and an fsync of the folder: a reader sees the old file or the
 * whole new one, never a part, and a power loss after it returns keeps the
 * new one. */
int cit_write_file(const char *path, const void *p, size_t n, unsigned mode, struct cit_err *err);
/* The folder path is in ("." for a bare name, "/" for a file at the root),
 * into out (truncated to cap); returns out. */
const char *cit_path_dir(const char *path, char *out, size_t cap);
void cit_buf_free(struct cit_buf *b);
/* A SHA-256 digest written as 64 hex digits into out; CIT_EFORMAT (out
 * untouched) for anything else. */
int cit_hex_digest(const char *hex, uint8_t out[32]);
/* Appends s[0..n) as a quoted JSON string; invalid UTF-8 becomes U+FFFD. */
int cit_buf_json_str(struct cit_buf *b, const char *s, size_t n);

/* ---- logging ---- */

enum cit_log_level { CIT_LOG_DEBUG, CIT_LOG_INFO, CIT_LOG_WARN, CIT_LOG_ERROR };
void cit_log_set_level(enum cit_log_level lvl);
void cit_log(enum cit_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- time ---- */

uint64_t cit_now_ns(void); /* monotonic clock */
/* Unix seconds as RFC 3339 UTC, "2026-11-22T10:05:00Z". */
void cit_utc_seconds(int64_t unix_s, char out[32]);

/* ---- thread pool ----
 *
 * A fixed set of workers that run one parallel region at a time: the caller
 * (thread 0) and n-1 workers all call fn(arg, ith, nth) and cit_pool_run
 * returns when every one has returned. Inference dispatches a few hundred
 * regions per token, so workers spin briefly between regions before they
 * sleep: waking a sleeping thread costs tens of microseconds. */
struct cit_pool;
typedef void (*cit_pool_fn)(void *arg, int ith, int nth);

int cit_pool_create(int n_threads, struct cit_pool **out /* out */);
void cit_pool_free(struct cit_pool *pool);
int cit_pool_size(const struct cit_pool *pool);
void cit_pool_run(struct cit_pool *pool, cit_pool_fn fn, void *arg);

/* ---- configuration files ----
 *
 * "key = value" lines with '#' comments (see src/core/conf.c). fn is called
 * for each pair in order; a non-zero return stops the load, and the message
 * it set in err is prefixed with "FILE:LINE: ". */
typedef int (*cit_conf_fn)(void *user, const char *key, const char *value, struct cit_err *err);
int cit_conf_load(const char *path, cit_conf_fn fn, void *user, struct cit_err *err);

/* Number of online CPUs (at least 1). */
int cit_cpu_count(void);

/* ---- the state file (db.c) ----
 *
 * One SQLite connection per process to the node's state file, created
 * 0600, WAL. migrations[i] is the SQL that takes the schema from version i
 * to i + 1 (PRAGMA user_version); a file newer than the list is refused.
 * Users take cit_db_lock around each statement or transaction (and the
 * sqlite3_errmsg that follows it); it is recursive. cit_db_durable(db, 1)
 * makes commits sync until cit_db_durable(db, 0), both under the lock. */
struct cit_db;
struct sqlite3;
int cit_db_open(const char *path, const char *const *migrations, int n_migrations,
                struct cit_db **out /* out */, struct cit_err *err);
void cit_db_close(struct cit_db *db);
struct sqlite3 *cit_db_sqlite(struct cit_db *db);
const char *cit_db_path(const struct cit_db *db);
void cit_db_lock(struct cit_db *db);
void cit_db_unlock(struct cit_db *db);
void cit_db_durable(struct cit_db *db, int on);

#endif
