/*
 * The node's state file: one SQLite connection, created owner-only, WAL,
 * its schema versioned by PRAGMA user_version.
 *
 * Why one connection per process: two connections of one process to one
 * file each take their own locks, so one thread's write transaction makes
 * another's fail with SQLITE_BUSY after the busy timeout, and their PRAGMAs
 * (journal mode, synchronous) can disagree. Here every user (API keys,
 * quotas, the border registry) shares the connection and takes its mutex
 * around each statement or transaction, together with sqlite3_errmsg and
 * sqlite3_changes, which are per connection. The mutex is always the last
 * lock taken, so no module can deadlock another through it.
 *
 * Durability: synchronous=NORMAL, which in WAL mode survives a crash of the
 * process and loses at most the last commits on power loss: right for the
 * quota counters written on every request. Writes that must not be lost
 * (a revocation, a new key) ask for a synced commit with cit_db_durable.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "citadel/core.h"

struct cit_db {
    sqlite3 *db;
    pthread_mutex_t mu;
    char path[1024];
};

/* Creates the file 0600 before SQLite sees it, and tightens a file that an
 * older citadel left readable by others (API-key hashes, signer keys). */
static int own_file(const char *path, int must_exist, struct cit_err *err)
{
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (must_exist ? 0 : O_CREAT), 0600);
    struct stat st;
    if (fd < 0) {
        if (must_exist && errno == ENOENT) return 0;
        return cit_err_set(err, CIT_EIO, "%s: cannot open the state file: %s", path,
                           strerror(errno));
    }
    if (fstat(fd, &st) == 0 && (st.st_mode & 077) && fchmod(fd, st.st_mode & 0700)) {
        int e = errno;
        close(fd);
        return cit_err_set(err, CIT_EIO, "%s: cannot make it owner-only (mode %03o): %s", path,
                           (unsigned)(st.st_mode & 0777), strerror(e));
    }
    close(fd);
    return 0;
}

static int fail_db(struct cit_db *d, struct cit_err *err, const char *what)
{
    return cit_err_set(err, CIT_EIO, "%s: %s: %s", d->path, what,
                       d->db ? sqlite3_errmsg(d->db) : "out of memory");
}

static int user_version(struct cit_db *d, int *v)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(d->db, "PRAGMA user_version", -1, &st, NULL);
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        *v = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_OK) {
        rc = SQLITE_ERROR;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Runs the migrations past the file's version, each in its own transaction
 * with the version bump, so a crash leaves the file at one version or the
 * next, never between. The version is read again inside each transaction:
 * two processes opening an old file at once migrate it once. */
static int migrate(struct cit_db *d, const char *const *steps, int n_steps, struct cit_err *err)
{
    int v = 0;
    if (user_version(d, &v) != SQLITE_OK) return fail_db(d, err, "cannot read the schema version");
    if (v > n_steps)
        return cit_err_set(err, CIT_ENOTSUP,
                           "%s: schema version %d is newer than this citadel's (%d); run the "
                           "citadel that wrote it, or a newer one",
                           d->path, v, n_steps);
    while (v < n_steps) {
        char bump[64], *msg = NULL;
        if (sqlite3_exec(d->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
            return fail_db(d, err, "cannot start the schema migration");
        if (user_version(d, &v) != SQLITE_OK) {
            sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
            return fail_db(d, err, "cannot read the schema version");
        }
        if (v >= n_steps) { /* another process migrated it meanwhile */
            sqlite3_exec(d->db, "COMMIT", NULL, NULL, NULL);
            break;
        }
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", v + 1);
        if (sqlite3_exec(d->db, steps[v], NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(d->db, bump, NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(d->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
            int rc = cit_err_set(err, CIT_EIO, "%s: migration to schema version %d failed: %s",
                                 d->path, v + 1, msg ? msg : sqlite3_errmsg(d->db));
            sqlite3_free(msg);
            sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
        v++;
    }
    return 0;
}

int cit_db_open(const char *path, const char *const *migrations, int n_migrations,
                struct cit_db **out, struct cit_err *err)
{
    struct cit_db *d;
    char side[1100];
    int rc;
    if (strlen(path) >= sizeof(d->path))
        return cit_err_set(err, CIT_ERANGE, "state file path longer than %zu bytes",
                           sizeof(d->path) - 1);
    if ((rc = own_file(path, 0, err))) return rc;
    /* WAL and shared-memory files take the database's mode, but ones left
     * by an older citadel keep theirs */
    snprintf(side, sizeof(side), "%s-wal", path);
    if ((rc = own_file(side, 1, err))) return rc;
    snprintf(side, sizeof(side), "%s-shm", path);
    if ((rc = own_file(side, 1, err))) return rc;
    if (!(d = cit_calloc(1, sizeof(*d)))) return cit_err_set(err, CIT_ENOMEM, "out of memory");
    snprintf(d->path, sizeof(d->path), "%s", path);
    {
        pthread_mutexattr_t a;
        pthread_mutexattr_init(&a);
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
        pthread_mutex_init(&d->mu, &a);
        pthread_mutexattr_destroy(&a);
    }
    if (sqlite3_open_v2(path, &d->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_NOFOLLOW,
                        NULL) != SQLITE_OK) {
        rc = fail_db(d, err, "cannot open the state file");
        goto fail;
    }
    sqlite3_busy_timeout(d->db, 5000);
    if (sqlite3_exec(d->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", NULL, NULL,
                     NULL) != SQLITE_OK) {
        rc = fail_db(d, err, "cannot set WAL mode (is it a SQLite database?)");
        goto fail;
    }
    if ((rc = migrate(d, migrations, n_migrations, err))) goto fail;
    *out = d;
    return 0;
fail:
    cit_db_close(d);
    return rc;
}

void cit_db_close(struct cit_db *d)
{
    if (!d) return;
    sqlite3_close(d->db);
    pthread_mutex_destroy(&d->mu);
    cit_free(d);
}

struct sqlite3 *cit_db_sqlite(struct cit_db *d)
{
    return d->db;
}

const char *cit_db_path(const struct cit_db *d)
{
    return d->path;
}

void cit_db_lock(struct cit_db *d)
{
    pthread_mutex_lock(&d->mu);
}

void cit_db_unlock(struct cit_db *d)
{
    pthread_mutex_unlock(&d->mu);
}

void cit_db_durable(struct cit_db *d, int on)
{
    sqlite3_exec(d->db, on ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", NULL, NULL,
                 NULL);
}
