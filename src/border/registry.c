/*
 * The border registry: trusted signers and admitted models, two tables in
 * the node's SQLite state file (the one that holds API keys and quota
 * counters). Rows are never deleted: a removed signer and a revoked model
 * keep their row with the time it happened, so `citadel model list` shows
 * the history the ledger also records.
 */
#include <limits.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "citadel/border.h"
#include "border_int.h"

struct brd_registry {
    struct cit_db *state; /* the node's; every statement runs under its lock */
    sqlite3 *db;
};

static int db_err(struct brd_registry *r, struct cit_err *err, const char *what)
{
    return cit_err_set(err, CIT_EIO, "%s: %s: %s", cit_db_path(r->state), what,
                       sqlite3_errmsg(r->db));
}

int brd_registry_open(struct cit_db *state, struct brd_registry **out, struct cit_err *err)
{
    struct brd_registry *r = cit_calloc(1, sizeof(*r));
    if (!r) return cit_err_set(err, CIT_ENOMEM, "out of memory");
    r->state = state;
    r->db = cit_db_sqlite(state);
    *out = r;
    return 0;
}

void brd_registry_close(struct brd_registry *r)
{
    cit_free(r);
}

/* ---- trusted signers ---- */

static void col_str(sqlite3_stmt *st, int i, char *dst, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static void row_signer(sqlite3_stmt *st, struct brd_signer *s)
{
    col_str(st, 0, s->name, sizeof(s->name));
    col_str(st, 1, s->jurisdiction, sizeof(s->jurisdiction));
    col_str(st, 2, s->hint, sizeof(s->hint));
    s->added = sqlite3_column_int64(st, 3);
}

static int valid_name(const char *s, size_t cap)
{
    size_t n = strlen(s);
    if (n == 0 || n >= cap) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("-_.:@", *s)))
            return 0;
    return 1;
}

static int trust_add_locked(struct brd_registry *r, const char *name, const char *jurisdiction,
                            const char *pem, size_t pem_len, struct brd_signer *out,
                            struct cit_err *err)
{
    sqlite3_stmt *st = NULL;
    struct brd_signer s = {0};
    int rc;
    if (!valid_name(name, sizeof(s.name)))
        return cit_err_set(err, CIT_EINVAL,
                           "signer name '%s': 1 to %zu letters, digits, '-', '_', '.', ':', '@'",
                           name, sizeof(s.name) - 1);
    if (!valid_name(jurisdiction, sizeof(s.jurisdiction)))
        return cit_err_set(err, CIT_EINVAL, "jurisdiction '%s': a code such as DE, FR or EU",
                           jurisdiction);
    if ((rc = brd_pubkey_check(pem, pem_len, name, s.hint, err))) return rc;
    snprintf(s.name, sizeof(s.name), "%s", name);
    snprintf(s.jurisdiction, sizeof(s.jurisdiction), "%s", jurisdiction);
    s.added = (int64_t)time(NULL);
    if (sqlite3_prepare_v2(r->db,
                           "SELECT name FROM trusted_keys WHERE (name = ? OR hint = ?)"
                           " AND removed = 0",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(r, err, "trust store");
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, s.hint, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        char had[BRD_MAX_NAME];
        col_str(st, 0, had, sizeof(had));
        sqlite3_finalize(st);
        return cit_err_set(err, CIT_EINVAL,
                           strcmp(had, name) ? "this key is already trusted as '%s'"
                                             : "a signer named '%s' is already trusted (remove "
                                               "it first to replace its key)",
                           had);
    }
    sqlite3_finalize(st);
    /* a removed signer's row gives way to the new one of that name */
    if (sqlite3_prepare_v2(r->db,
                           "INSERT OR REPLACE INTO trusted_keys(name, jurisdiction, hint, pem,"
                           " added) VALUES (?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(r, err, "trust store");
    sqlite3_bind_text(st, 1, s.name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, s.jurisdiction, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, s.hint, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, pem, (int)pem_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, s.added);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(r, err, "cannot add the signer");
    sqlite3_finalize(st);
    if (!rc && out) *out = s;
    return rc;
}

int brd_trust_add(struct brd_registry *r, const char *name, const char *jurisdiction,
                  const char *pem, size_t pem_len, struct brd_signer *out, struct cit_err *err)
{
    int rc;
    cit_db_lock(r->state);
    cit_db_durable(r->state, 1);
    rc = trust_add_locked(r, name, jurisdiction, pem, pem_len, out, err);
    cit_db_durable(r->state, 0);
    cit_db_unlock(r->state);
    return rc;
}

static int trust_remove_locked(struct brd_registry *r, const char *name, struct cit_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc;
    if (sqlite3_prepare_v2(r->db,
                           "UPDATE trusted_keys SET removed = ? WHERE name = ? AND removed = 0", -1,
                           &st, NULL) != SQLITE_OK)
        return db_err(r, err, "trust store");
    sqlite3_bind_int64(st, 1, (int64_t)time(NULL));
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(r, err, "cannot remove the signer");
    sqlite3_finalize(st);
    if (!rc && sqlite3_changes(r->db) == 0)
        rc = cit_err_set(err, CIT_ENOENT, "no trusted signer named '%s'", name);
    return rc;
}

int brd_trust_remove(struct brd_registry *r, const char *name, struct cit_err *err)
{
    int rc;
    cit_db_lock(r->state);
    cit_db_durable(r->state, 1);
    rc = trust_remove_locked(r, name, err);
    cit_db_durable(r->state, 0);
    cit_db_unlock(r->state);
    return rc;
}

static int trust_find_locked(struct brd_registry *r, const char *hint, struct brd_signer *s,
                             struct cit_buf *pem, struct cit_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = 0, step;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT name, jurisdiction, hint, added, pem FROM trusted_keys"
                           " WHERE hint = ? AND removed = 0",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(r, err, "trust store");
    sqlite3_bind_text(st, 1, hint, -1, SQLITE_STATIC);
    step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        row_signer(st, s);
        pem->len = 0;
        if (cit_buf_add(pem, sqlite3_column_text(st, 4), (size_t)sqlite3_column_bytes(st, 4)))
            rc = cit_err_set(err, CIT_ENOMEM, "out of memory");
    } else if (step == SQLITE_DONE) {
        rc = CIT_ENOENT;
        cit_err_set(err, rc, "no trusted signer has the key %.16s...", hint);
    } else {
        rc = db_err(r, err, "trust store");
    }
    sqlite3_finalize(st);
    return rc;
}

int brd_trust_find(struct brd_registry *r, const char *hint, struct brd_signer *s,
                   struct cit_buf *pem, struct cit_err *err)
{
    int rc;
    cit_db_lock(r->state);
    rc = trust_find_locked(r, hint, s, pem, err);
    cit_db_unlock(r->state);
    return rc;
}

/* Steps st to the end, appending one element of size elem per row, filled
 * by fill(st, element). */
static int collect(struct brd_registry *r, sqlite3_stmt *st, size_t elem,
                   void (*fill)(sqlite3_stmt *st, void *dst), void **v, size_t *n,
                   struct cit_err *err)
{
    size_t cap = 0;
    int step;
    *v = NULL;
    *n = 0;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            void *nv = cit_realloc(*v, (cap = cap ? cap * 2 : 8) * elem);
            if (!nv) break;
            *v = nv;
        }
        fill(st, (char *)*v + (*n)++ * elem);
    }
    sqlite3_finalize(st);
    if (step == SQLITE_DONE) return 0;
    cit_free(*v);
    *v = NULL;
    *n = 0;
    return step == SQLITE_ROW ? cit_err_set(err, CIT_ENOMEM, "out of memory")
                              : db_err(r, err, "cannot read the state file");
}

static void fill_signer(sqlite3_stmt *st, void *dst)
{
    row_signer(st, dst);
}

static int trust_list_locked(struct brd_registry *r, struct brd_signer **v, size_t *n,
                             struct cit_err *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT name, jurisdiction, hint, added FROM trusted_keys"
                           " WHERE removed = 0 ORDER BY name",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(r, err, "trust store");
    return collect(r, st, sizeof(**v), fill_signer, (void **)v, n, err);
}

int brd_trust_list(struct brd_registry *r, struct brd_signer **v, size_t *n, struct cit_err *err)
{
    int rc;
    cit_db_lock(r->state);
    rc = trust_list_locked(r, v, n, err);
    cit_db_unlock(r->state);
    return rc;
}

/* ---- admitted models ---- */

#define MODEL_COLS                                                                                 \
    "id, name, version, path, gguf, root, gguf_sha256, gguf_size, gguf_dev, gguf_ino,"             \
    " gguf_mtime_ns, signer, signer_place, licenses, datasets, tmpl, tmpl_sha256, policy,"         \
    " admitted, expires, revoked, revoke_reason, signer_hint"

/* A stored digest; a damaged one reads as zeros, which matches nothing. */
static void unhex(const char *s, uint8_t out[32])
{
    if (cit_hex_digest(s, out)) memset(out, 0, 32);
}

static void row_model(sqlite3_stmt *st, struct brd_admitted *a)
{
    char hex[65];
    memset(a, 0, sizeof(*a));
    a->id = sqlite3_column_int64(st, 0);
    col_str(st, 1, a->name, sizeof(a->name));
    col_str(st, 2, a->version, sizeof(a->version));
    col_str(st, 3, a->path, sizeof(a->path));
    col_str(st, 4, a->gguf, sizeof(a->gguf));
    col_str(st, 5, hex, sizeof(hex));
    unhex(hex, a->root);
    col_str(st, 6, hex, sizeof(hex));
    unhex(hex, a->gguf_sha256);
    a->gguf_size = (uint64_t)sqlite3_column_int64(st, 7);
    a->gguf_dev = (uint64_t)sqlite3_column_int64(st, 8);
    a->gguf_ino = (uint64_t)sqlite3_column_int64(st, 9);
    a->gguf_mtime_ns = sqlite3_column_int64(st, 10);
    col_str(st, 11, a->signer, sizeof(a->signer));
    col_str(st, 12, a->signer_place, sizeof(a->signer_place));
    col_str(st, 13, a->licenses, sizeof(a->licenses));
    col_str(st, 14, a->datasets, sizeof(a->datasets));
    col_str(st, 15, a->tmpl, sizeof(a->tmpl));
    col_str(st, 16, a->tmpl_sha256, sizeof(a->tmpl_sha256));
    col_str(st, 17, a->policy, sizeof(a->policy));
    a->admitted = sqlite3_column_int64(st, 18);
    a->expires = sqlite3_column_int64(st, 19);
    a->revoked = sqlite3_column_int64(st, 20);
    col_str(st, 21, a->revoke_reason, sizeof(a->revoke_reason));
    col_str(st, 22, a->signer_hint, sizeof(a->signer_hint));
}

int brd_signer_holds(const struct brd_admitted *a, const struct brd_signer *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i].name, a->signer) &&
            (!a->signer_hint[0] || !strcmp(v[i].hint, a->signer_hint)))
            return 1;
    return 0;
}

static int model_add_locked(struct brd_registry *r, struct brd_admitted *a, int (*then)(void *ctx),
                            void *ctx, struct cit_err *err)
{
    sqlite3_stmt *st = NULL;
    char root[65], gh[65];
    int rc;
    sodium_bin2hex(root, sizeof(root), a->root, 32);
    sodium_bin2hex(gh, sizeof(gh), a->gguf_sha256, 32);
    if (sqlite3_exec(r->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_err(r, err, "admitted models");
    if (sqlite3_prepare_v2(r->db,
                           "INSERT INTO admitted_models(name, version, path, gguf, root,"
                           " gguf_sha256, gguf_size, gguf_dev, gguf_ino, gguf_mtime_ns, signer,"
                           " signer_place, licenses, datasets, tmpl, tmpl_sha256, policy,"
                           " admitted, expires, signer_hint) VALUES"
                           " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = db_err(r, err, "admitted models");
        sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    const char *text[] = {a->name, a->version, a->path, a->gguf, root, gh};
    for (int i = 0; i < 6; i++) sqlite3_bind_text(st, i + 1, text[i], -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)a->gguf_size);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)a->gguf_dev);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)a->gguf_ino);
    sqlite3_bind_int64(st, 10, a->gguf_mtime_ns);
    const char *text2[] = {a->signer, a->signer_place, a->licenses, a->datasets,
                           a->tmpl,   a->tmpl_sha256,  a->policy};
    for (int i = 0; i < 7; i++) sqlite3_bind_text(st, i + 11, text2[i], -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 18, a->admitted);
    sqlite3_bind_int64(st, 19, a->expires);
    sqlite3_bind_text(st, 20, a->signer_hint, -1, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(r, err, "cannot record the admission");
    sqlite3_finalize(st);
    if (!rc) a->id = sqlite3_last_insert_rowid(r->db);
    if (!rc && then) rc = then(ctx);
    if (!rc && sqlite3_exec(r->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = db_err(r, err, "cannot commit the admission");
    if (rc) sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int brd_model_add(struct brd_registry *r, struct brd_admitted *a, int (*then)(void *ctx), void *ctx,
                  struct cit_err *err)
{
    int rc;
    cit_db_lock(r->state);
    cit_db_durable(r->state, 1);
    rc = model_add_locked(r, a, then, ctx, err);
    cit_db_durable(r->state, 0);
    cit_db_unlock(r->state);
    return rc;
}

static int model_find_locked(struct brd_registry *r, const char *gguf_path, struct brd_admitted *a,
                             struct cit_err *err)
{
    sqlite3_stmt *st = NULL;
    char real[PATH_MAX];
    int step, rc = 0;
    if (!realpath(gguf_path, real))
        return cit_err_set(err, CIT_ENOENT, "%s: no such model file", gguf_path);
    if (sqlite3_prepare_v2(r->db,
                           "SELECT " MODEL_COLS " FROM admitted_models WHERE gguf = ?"
                           " ORDER BY id DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(r, err, "admitted models");
    sqlite3_bind_text(st, 1, real, -1, SQLITE_STATIC);
    step = sqlite3_step(st);
    if (step == SQLITE_ROW)
        row_model(st, a);
    else if (step == SQLITE_DONE)
        rc = cit_err_set(err, CIT_ENOENT, "%s was never admitted (citadel model admit)", real);
    else
        rc = db_err(r, err, "admitted models");
    sqlite3_finalize(st);
    return rc;
}

int brd_model_find(struct brd_registry *r, const char *gguf_path, struct brd_admitted *a,
                   struct cit_err *err)
{
    int rc;
    cit_db_lock(r->state);
    rc = model_find_locked(r, gguf_path, a, err);
    cit_db_unlock(r->state);
    return rc;
}

static void fill_model(sqlite3_stmt *st, void *dst)
{
    row_model(st, dst);
}

static int model_list_locked(struct brd_registry *r, struct brd_admitted **v, size_t *n,
                             struct cit_err *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db, "SELECT " MODEL_COLS " FROM admitted_models ORDER BY id DESC", -1,
                           &st, NULL) != SQLITE_OK)
        return db_err(r, err, "admitted models");
    return collect(r, st, sizeof(**v), fill_model, (void **)v, n, err);
}

int brd_model_list(struct brd_registry *r, struct brd_admitted **v, size_t *n, struct cit_err *err)
{
    int rc;
    cit_db_lock(r->state);
    rc = model_list_locked(r, v, n, err);
    cit_db_unlock(r->state);
    return rc;
}

static int model_revoke_locked(struct brd_registry *r, const char *which, const char *reason,
                               int64_t now, struct brd_admitted *a, int *n, struct cit_err *err)
{
    sqlite3_stmt *st = NULL;
    char like[80];
    size_t wl = strlen(which);
    int is_hex = wl >= 8 && wl <= 64, step, rc = 0;
    for (size_t i = 0; is_hex && i < wl; i++)
        is_hex = (which[i] >= '0' && which[i] <= '9') || (which[i] >= 'a' && which[i] <= 'f');
    snprintf(like, sizeof(like), "%s%%", is_hex ? which : "-");
    *n = 0;
    if (sqlite3_exec(r->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_err(r, err, "admitted models");
    if (sqlite3_prepare_v2(r->db,
                           "SELECT " MODEL_COLS " FROM admitted_models WHERE revoked = 0 AND"
                           " (CAST(id AS TEXT) = ?1 OR name = ?1 OR root LIKE ?2) ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = db_err(r, err, "admitted models");
        goto out;
    }
    sqlite3_bind_text(st, 1, which, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, like, -1, SQLITE_STATIC);
    if ((step = sqlite3_step(st)) == SQLITE_ROW) row_model(st, a);
    sqlite3_finalize(st);
    if (step == SQLITE_DONE) {
        rc = cit_err_set(err, CIT_ENOENT,
                         "no active admission matches '%s' (an id, a name, or 8+ hex digits of "
                         "the digest; see citadel model list)",
                         which);
        goto out;
    }
    if (step != SQLITE_ROW) {
        rc = db_err(r, err, "admitted models");
        goto out;
    }
    if (sqlite3_prepare_v2(r->db,
                           "UPDATE admitted_models SET revoked = ?3, revoke_reason = ?4 WHERE"
                           " revoked = 0 AND (CAST(id AS TEXT) = ?1 OR name = ?1 OR root LIKE ?2)",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = db_err(r, err, "admitted models");
        goto out;
    }
    sqlite3_bind_text(st, 1, which, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, like, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_text(st, 4, reason ? reason : "", -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_err(r, err, "cannot revoke");
    else
        *n = sqlite3_changes(r->db);
    sqlite3_finalize(st);
    a->revoked = now;
    snprintf(a->revoke_reason, sizeof(a->revoke_reason), "%s", reason ? reason : "");
out:
    if (sqlite3_exec(r->db, rc ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL) != SQLITE_OK && !rc)
        rc = db_err(r, err, "cannot revoke");
    return rc;
}

int brd_model_revoke(struct brd_registry *r, const char *which, const char *reason, int64_t now,
                     struct brd_admitted *a, int *n, struct cit_err *err)
{
    int rc;
    cit_db_lock(r->state);
    cit_db_durable(r->state, 1);
    rc = model_revoke_locked(r, which, reason, now, a, n, err);
    cit_db_durable(r->state, 0);
    cit_db_unlock(r->state);
    return rc;
}
