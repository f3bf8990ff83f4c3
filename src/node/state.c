/*
 * The state file's schema. Each entry takes the file from one version to
 * the next (PRAGMA user_version); cit_db_open runs those past the file's.
 * Add a version at the end, never edit one that shipped: a node's file
 * may be at any of them.
 *
 * Version 1 is the schema from before versioning, written with IF NOT
 * EXISTS, so a file made by an older citadel (version 0, its tables in
 * place) moves to 1 unchanged.
 */
#include <sodium.h>
#include <sqlite3.h>
#include <string.h>
#include <time.h>

#include "node_int.h"

static const char *const migrations[] = {
    /* 1: API keys, quota counters, trusted signers, admitted models */
    "CREATE TABLE IF NOT EXISTS api_keys("
    " id TEXT PRIMARY KEY,"
    " tenant TEXT NOT NULL,"
    " hash BLOB NOT NULL,"
    " scopes TEXT NOT NULL,"
    " created INTEGER NOT NULL,"
    " revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS quota_usage("
    " tenant TEXT PRIMARY KEY, minute_start INTEGER NOT NULL,"
    " requests INTEGER NOT NULL, day_start INTEGER NOT NULL,"
    " tokens INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS trusted_keys("
    " name TEXT PRIMARY KEY,"
    " jurisdiction TEXT NOT NULL,"
    " hint TEXT NOT NULL,"
    " pem TEXT NOT NULL,"
    " added INTEGER NOT NULL,"
    " removed INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS admitted_models("
    " id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL, version TEXT NOT NULL,"
    " path TEXT NOT NULL, gguf TEXT NOT NULL,"
    " root TEXT NOT NULL, gguf_sha256 TEXT NOT NULL,"
    " gguf_size INTEGER NOT NULL, gguf_dev INTEGER NOT NULL,"
    " gguf_ino INTEGER NOT NULL, gguf_mtime_ns INTEGER NOT NULL,"
    " signer TEXT NOT NULL, signer_place TEXT NOT NULL,"
    " licenses TEXT NOT NULL, datasets TEXT NOT NULL,"
    " tmpl TEXT NOT NULL, tmpl_sha256 TEXT NOT NULL,"
    " policy TEXT NOT NULL,"
    " admitted INTEGER NOT NULL, expires INTEGER NOT NULL,"
    " revoked INTEGER NOT NULL DEFAULT 0,"
    " revoke_reason TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX IF NOT EXISTS admitted_by_gguf ON admitted_models(gguf, id);",
    /* 2: an admission names its signer's key, not only its name */
    "ALTER TABLE admitted_models ADD COLUMN signer_hint TEXT NOT NULL DEFAULT '';",
    /* 3: the last checkpoint each ledger signed, outside its directory, so
     * a ledger rolled back, emptied or replaced is refused at open; keyed
     * by the ledger directory's real path */
    "CREATE TABLE ledger_floor("
    " dir TEXT PRIMARY KEY,"
    " origin TEXT NOT NULL,"
    " size INTEGER NOT NULL,"
    " note TEXT NOT NULL,"
    " updated INTEGER NOT NULL);"
    /* and the node's secrets (the request digests' HMAC key) */
    "CREATE TABLE node_secret(name TEXT PRIMARY KEY, value BLOB NOT NULL);",
    /* 4: the data passports this node answered, until they expire, so a
     * replay is refused across restarts too (docs/gateway.md) */
    "CREATE TABLE passport_seen("
    " origin TEXT NOT NULL,"
    " id TEXT NOT NULL,"
    " expires INTEGER NOT NULL,"
    " PRIMARY KEY(origin, id));"
    /* as a witness, the last checkpoint of each peer's ledger this node
     * cosigned; as a log, the last of its own each witness cosigned */
    "CREATE TABLE witness_log("
    " peer TEXT PRIMARY KEY,"
    " size INTEGER NOT NULL,"
    " root BLOB NOT NULL,"
    " note TEXT NOT NULL,"
    " updated INTEGER NOT NULL);"
    "CREATE TABLE ledger_cosigned("
    " witness TEXT PRIMARY KEY,"
    " size INTEGER NOT NULL,"
    " note TEXT NOT NULL,"
    " updated INTEGER NOT NULL);",
    /* 5: the passports seen are kept in memory and rebuilt from the ledger
     * at start (seen.c), which spares each forward a sync of this file */
    "DROP TABLE passport_seen;",
};

int node_state_open(const char *path, struct cit_db **out, struct cit_err *err)
{
    return cit_db_open(path, migrations, (int)(sizeof(migrations) / sizeof(migrations[0])), out,
                       err);
}

/* ---- the ledger's floor ---- */

int node_floor_read(struct cit_db *db, const char *dir, struct cit_buf *note, struct cit_err *err)
{
    sqlite3 *q = cit_db_sqlite(db);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    cit_db_lock(db);
    if (sqlite3_prepare_v2(q, "SELECT note FROM ledger_floor WHERE dir = ?", -1, &st, NULL) !=
        SQLITE_OK) {
        rc = cit_err_set(err, CIT_EIO, "%s: cannot read the ledger's last checkpoint: %s",
                         cit_db_path(db), sqlite3_errmsg(q));
    } else {
        sqlite3_bind_text(st, 1, dir, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(st, 0);
            if (t && (cit_buf_add(note, t, strlen(t)) || cit_buf_add(note, "", 1)))
                rc = cit_err_set(err, CIT_ENOMEM, "out of memory");
        } else if (r != SQLITE_DONE) {
            rc = cit_err_set(err, CIT_EIO, "%s: cannot read the ledger's last checkpoint: %s",
                             cit_db_path(db), sqlite3_errmsg(q));
        }
    }
    sqlite3_finalize(st);
    cit_db_unlock(db);
    return rc;
}

void node_floor_store(void *user, const struct ledger_checkpoint *cp, const char *note)
{
    struct node *n = user;
    struct cit_db *db = n->db;
    sqlite3 *q = cit_db_sqlite(db);
    sqlite3_stmt *st = NULL;
    int ok = 0;
    cit_db_lock(db);
    cit_db_durable(db, 1);
    /* never backwards: a floor only rises */
    if (sqlite3_prepare_v2(q,
                           "INSERT INTO ledger_floor(dir, origin, size, note, updated) VALUES "
                           "(?, ?, ?, ?, ?) ON CONFLICT(dir) DO UPDATE SET origin = "
                           "excluded.origin, size = excluded.size, note = excluded.note, updated "
                           "= excluded.updated WHERE excluded.size >= ledger_floor.size",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, n->ledger_real, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, cp->origin, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)cp->size);
        sqlite3_bind_text(st, 4, note, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)time(NULL));
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    cit_db_durable(db, 0);
    cit_db_unlock(db);
    /* the witnesses are asked to cosign it (the gateway's thread) */
    pthread_mutex_lock(&n->gw_mu);
    if (n->gw) gw_witness_push(n->gw, note, strlen(note));
    pthread_mutex_unlock(&n->gw_mu);
    cit_db_lock(db);
    if (!ok)
        cit_log(CIT_LOG_ERROR, "%s: cannot keep the ledger's checkpoint %llu: %s", cit_db_path(db),
                (unsigned long long)cp->size, sqlite3_errmsg(q));
    cit_db_unlock(db);
}

/* ---- secrets ---- */

int node_secret(struct cit_db *db, const char *name, uint8_t out[32], struct cit_err *err)
{
    sqlite3 *q = cit_db_sqlite(db);
    sqlite3_stmt *st = NULL;
    uint8_t fresh[32];
    int rc = CIT_EIO;
    randombytes_buf(fresh, sizeof(fresh));
    cit_db_lock(db);
    cit_db_durable(db, 1);
    /* the first to ask creates it; everyone reads the stored one */
    if (sqlite3_prepare_v2(q, "INSERT OR IGNORE INTO node_secret(name, value) VALUES (?, ?)", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, fresh, sizeof(fresh), SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_DONE) rc = 0;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (!rc) {
        rc = CIT_EIO;
        if (sqlite3_prepare_v2(q, "SELECT value FROM node_secret WHERE name = ?", -1, &st, NULL) ==
            SQLITE_OK) {
            sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
            if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 32) {
                memcpy(out, sqlite3_column_blob(st, 0), 32);
                rc = 0;
            }
        }
        sqlite3_finalize(st);
    }
    if (rc)
        cit_err_set(err, rc, "%s: cannot read or create the node's secret '%s': %s",
                    cit_db_path(db), name, sqlite3_errmsg(q));
    cit_db_durable(db, 0);
    cit_db_unlock(db);
    sodium_memzero(fresh, sizeof(fresh));
    return rc;
}

/* ---- witnesses ---- */

int node_witness_add(struct node *n, const char *peer, const struct ledger_vkey *log,
                     const char *body, size_t len, struct cit_buf *reply, struct cit_err *err)
{
    sqlite3 *q = cit_db_sqlite(n->db);
    sqlite3_stmt *st = NULL;
    struct gw_witness_state last = {0}, next;
    struct cit_buf cosigned = {0};
    int status;
    if (!n->have_wkey) {
        cit_err_set(err, CIT_EINVAL, "this node has no witness key");
        return 500;
    }
    /* one lock over the read, the check and the write: two requests
     * racing cannot roll the state back */
    cit_db_lock(n->db);
    if (sqlite3_prepare_v2(q, "SELECT size, root FROM witness_log WHERE peer = ?", -1, &st, NULL) !=
        SQLITE_OK) {
        status = 500;
        cit_err_set(err, CIT_EIO, "%s: %s", cit_db_path(n->db), sqlite3_errmsg(q));
        goto out;
    }
    sqlite3_bind_text(st, 1, peer, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 1) == LEDGER_HASH) {
        last.size = (uint64_t)sqlite3_column_int64(st, 0);
        memcpy(last.root, sqlite3_column_blob(st, 1), LEDGER_HASH);
    }
    sqlite3_finalize(st);
    st = NULL;
    status = gw_witness_add(log, &n->wkey, &last, body, len, (uint64_t)time(NULL), &next, reply,
                            &cosigned, err);
    if (status != 200) goto out;
    cit_db_durable(n->db, 1);
    if (sqlite3_prepare_v2(q,
                           "INSERT INTO witness_log(peer, size, root, note, updated) VALUES "
                           "(?, ?, ?, ?, ?) ON CONFLICT(peer) DO UPDATE SET size = excluded.size, "
                           "root = excluded.root, note = excluded.note, updated = "
                           "excluded.updated",
                           -1, &st, NULL) != SQLITE_OK) {
        status = 500;
    } else {
        sqlite3_bind_text(st, 1, peer, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)next.size);
        sqlite3_bind_blob(st, 3, next.root, LEDGER_HASH, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, cosigned.p, (int)cosigned.len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)time(NULL));
        if (sqlite3_step(st) != SQLITE_DONE) status = 500;
    }
    cit_db_durable(n->db, 0);
    if (status != 200) { /* not kept, so not answered */
        cit_err_set(err, CIT_EIO, "%s: cannot keep the cosigned checkpoint: %s", cit_db_path(n->db),
                    sqlite3_errmsg(q));
        reply->len = 0;
    }
out:
    sqlite3_finalize(st);
    cit_db_unlock(n->db);
    cit_buf_free(&cosigned);
    return status;
}

static int read_note(struct node *n, const char *sql, const char *key, struct cit_buf *note,
                     struct cit_err *err)
{
    sqlite3 *q = cit_db_sqlite(n->db);
    sqlite3_stmt *st = NULL;
    int rc = CIT_ENOENT, r;
    cit_db_lock(n->db);
    if (sqlite3_prepare_v2(q, sql, -1, &st, NULL) != SQLITE_OK) {
        rc = cit_err_set(err, CIT_EIO, "%s: %s", cit_db_path(n->db), sqlite3_errmsg(q));
    } else {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if ((r = sqlite3_step(st)) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(st, 0);
            rc = t && !cit_buf_add(note, t, strlen(t)) ? 0 : CIT_ENOMEM;
        } else if (r != SQLITE_DONE) {
            rc = cit_err_set(err, CIT_EIO, "%s: %s", cit_db_path(n->db), sqlite3_errmsg(q));
        }
    }
    sqlite3_finalize(st);
    cit_db_unlock(n->db);
    return rc;
}

int node_witnessed(struct node *n, const char *peer, struct cit_buf *note, struct cit_err *err)
{
    return read_note(n, "SELECT note FROM witness_log WHERE peer = ?", peer, note, err);
}

int node_cosigned(struct node *n, const char *witness, struct cit_buf *note, struct cit_err *err)
{
    return read_note(n, "SELECT note FROM ledger_cosigned WHERE witness = ?", witness, note, err);
}

void node_cosigned_store(void *user, const char *witness, uint64_t size, const char *note)
{
    struct node *n = user;
    sqlite3 *q = cit_db_sqlite(n->db);
    sqlite3_stmt *st = NULL;
    int ok = 0;
    cit_db_lock(n->db);
    if (sqlite3_prepare_v2(q,
                           "INSERT INTO ledger_cosigned(witness, size, note, updated) VALUES "
                           "(?, ?, ?, ?) ON CONFLICT(witness) DO UPDATE SET size = "
                           "excluded.size, note = excluded.note, updated = excluded.updated "
                           "WHERE excluded.size >= ledger_cosigned.size",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, witness, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)size);
        sqlite3_bind_text(st, 3, note, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL));
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    cit_db_unlock(n->db);
    if (!ok)
        cit_log(CIT_LOG_WARN, "witness '%s': its cosignature of size %llu could not be kept: %s",
                witness, (unsigned long long)size, sqlite3_errmsg(q));
}
