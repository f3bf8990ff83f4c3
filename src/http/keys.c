/*
 * API keys in the node's SQLite state file.
 *
 * Only SHA-256 of a key is stored. Keys carry 256 random bits, so a plain
 * hash is enough (there is nothing to brute-force); the id in the key finds
 * the row and the hash is compared in constant time. One connection, used
 * under a mutex; WAL so that `citadel keys` can write while a server reads.
 */
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "citadel/http.h"

struct http_keys {
    sqlite3 *db;
    sqlite3_stmt *get;
    pthread_mutex_t mu;
};

static const char schema[] = "PRAGMA journal_mode=WAL;"
                             "CREATE TABLE IF NOT EXISTS api_keys("
                             " id TEXT PRIMARY KEY,"
                             " tenant TEXT NOT NULL,"
                             " hash BLOB NOT NULL,"
                             " scopes TEXT NOT NULL,"
                             " created INTEGER NOT NULL,"
                             " revoked INTEGER NOT NULL DEFAULT 0);";

int http_keys_open(const char *path, struct http_keys **out, struct cit_err *err)
{
    struct http_keys *k;
    struct stat st;
    int existed = stat(path, &st) == 0;
    char *msg = NULL;
    if (sodium_init() < 0) return cit_err_set(err, CIT_EIO, "libsodium failed to initialise");
    k = cit_calloc(1, sizeof(*k));
    if (!k) return cit_err_set(err, CIT_ENOMEM, "out of memory");
    pthread_mutex_init(&k->mu, NULL);
    if (sqlite3_open_v2(path, &k->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        cit_err_set(err, CIT_EIO, "%s: cannot open the state file: %s", path,
                    k->db ? sqlite3_errmsg(k->db) : "out of memory");
        goto fail;
    }
    if (!existed) chmod(path, 0600); /* key hashes and tenants: owner only */
    sqlite3_busy_timeout(k->db, 5000);
    if (sqlite3_exec(k->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        cit_err_set(err, CIT_EIO, "%s: %s", path, msg ? msg : "cannot create the schema");
        sqlite3_free(msg);
        goto fail;
    }
    if (sqlite3_prepare_v2(k->db,
                           "SELECT tenant, hash, scopes, created, revoked FROM api_keys"
                           " WHERE id = ?",
                           -1, &k->get, NULL) != SQLITE_OK) {
        cit_err_set(err, CIT_EIO, "%s: %s", path, sqlite3_errmsg(k->db));
        goto fail;
    }
    *out = k;
    return 0;
fail:
    http_keys_close(k);
    return CIT_EIO;
}

void http_keys_close(struct http_keys *k)
{
    if (!k) return;
    sqlite3_finalize(k->get);
    sqlite3_close(k->db);
    pthread_mutex_destroy(&k->mu);
    cit_free(k);
}

/* ---- scopes ---- */

static const char *const endpoints[] = {"chat", "completions", "models", "metrics", "policy", "*"};

static int valid_model_id(const char *s, size_t n)
{
    if (n == 0 || n > 127) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f) return 0;
    }
    return 1;
}

int http_scopes_parse(const char *in, char *out, size_t cap, struct cit_err *err)
{
    size_t used = 0;
    const char *p = in;
    if (cap) out[0] = 0;
    while (*p) {
        const char *e;
        size_t n;
        int ok = 0;
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        for (e = p; *e && *e != ' ' && *e != ','; e++) {
        }
        n = (size_t)(e - p);
        if (n > 9 && !strncmp(p, "endpoint:", 9)) {
            for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++)
                ok |= strlen(endpoints[i]) == n - 9 && !strncmp(p + 9, endpoints[i], n - 9);
            if (!ok)
                return cit_err_set(err, CIT_EINVAL,
                                   "scope '%.*s': endpoints are chat, completions, models, "
                                   "metrics, policy or *",
                                   (int)n, p);
        } else if (n > 6 && !strncmp(p, "model:", 6)) {
            if (!valid_model_id(p + 6, n - 6))
                return cit_err_set(err, CIT_EINVAL, "scope '%.*s': bad model id", (int)n, p);
        } else {
            return cit_err_set(err, CIT_EINVAL, "scope '%.*s': expected endpoint:NAME or model:ID",
                               (int)n, p);
        }
        if (used + n + 2 > cap) return cit_err_set(err, CIT_ERANGE, "scope list too long");
        if (used) out[used++] = ' ';
        memcpy(out + used, p, n);
        used += n;
        out[used] = 0;
        p = e;
    }
    if (!used) return cit_err_set(err, CIT_EINVAL, "empty scope list");
    return 0;
}

static int scope_has(const char *scopes, const char *kind, const char *name)
{
    size_t kl = strlen(kind), nl = strlen(name);
    for (const char *p = scopes; *p;) {
        const char *e = strchr(p, ' ');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > kl && !strncmp(p, kind, kl)) {
            const char *v = p + kl;
            size_t vl = n - kl;
            if ((vl == 1 && *v == '*') || (vl == nl && !memcmp(v, name, nl))) return 1;
        }
        p += n;
        while (*p == ' ') p++;
    }
    return 0;
}

int http_scope_allows(const char *scopes, const char *endpoint, const char *model)
{
    if (!scope_has(scopes, "endpoint:", endpoint)) return 0;
    return !model || scope_has(scopes, "model:", model);
}

/* ---- keys ---- */

static int valid_tenant(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 64) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

int http_keys_add(struct http_keys *k, const char *tenant, const char *scopes,
                  char key[HTTP_KEY_LEN + 1], char id[HTTP_KEY_ID_LEN + 1], struct cit_err *err)
{
    unsigned char idb[HTTP_KEY_ID_LEN / 2], secret[32], hash[crypto_hash_sha256_BYTES];
    char sec64[64], canon[1024];
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (!valid_tenant(tenant))
        return cit_err_set(err, CIT_EINVAL, "tenant '%s': 1 to 64 letters, digits, '-', '_' or '.'",
                           tenant);
    if ((rc = http_scopes_parse(scopes, canon, sizeof(canon), err))) return rc;
    randombytes_buf(idb, sizeof(idb));
    randombytes_buf(secret, sizeof(secret));
    sodium_bin2hex(id, HTTP_KEY_ID_LEN + 1, idb, sizeof(idb));
    sodium_bin2base64(sec64, sizeof(sec64), secret, sizeof(secret),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    memcpy(key, "cit_", 4);
    memcpy(key + 4, id, HTTP_KEY_ID_LEN);
    key[4 + HTTP_KEY_ID_LEN] = '_';
    memcpy(key + 5 + HTTP_KEY_ID_LEN, sec64, 43);
    key[HTTP_KEY_LEN] = 0;
    crypto_hash_sha256(hash, (const unsigned char *)key, strlen(key));
    sodium_memzero(secret, sizeof(secret));
    pthread_mutex_lock(&k->mu);
    if (sqlite3_prepare_v2(k->db,
                           "INSERT INTO api_keys(id, tenant, hash, scopes, created)"
                           " VALUES (?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) ||
        sqlite3_bind_text(st, 2, tenant, -1, SQLITE_STATIC) ||
        sqlite3_bind_blob(st, 3, hash, sizeof(hash), SQLITE_STATIC) ||
        sqlite3_bind_text(st, 4, canon, -1, SQLITE_STATIC) ||
        sqlite3_bind_int64(st, 5, (sqlite3_int64)time(NULL)) || sqlite3_step(st) != SQLITE_DONE)
        rc = cit_err_set(err, CIT_EIO, "cannot store the key: %s", sqlite3_errmsg(k->db));
    sqlite3_finalize(st);
    pthread_mutex_unlock(&k->mu);
    if (rc) sodium_memzero(key, HTTP_KEY_LEN + 1);
    return rc;
}

int http_keys_revoke(struct http_keys *k, const char *id, struct cit_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = 0;
    pthread_mutex_lock(&k->mu);
    if (sqlite3_prepare_v2(k->db, "UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked = 0",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_int64(st, 1, (sqlite3_int64)time(NULL)) ||
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC) || sqlite3_step(st) != SQLITE_DONE)
        rc = cit_err_set(err, CIT_EIO, "cannot revoke: %s", sqlite3_errmsg(k->db));
    else if (sqlite3_changes(k->db) == 0)
        rc = cit_err_set(err, CIT_ENOENT, "no active key with id '%s'", id);
    sqlite3_finalize(st);
    pthread_mutex_unlock(&k->mu);
    return rc;
}

static void row_info(sqlite3_stmt *st, int col0, struct http_key_info *ki)
{
    const unsigned char *t = sqlite3_column_text(st, col0);
    const unsigned char *sc = sqlite3_column_text(st, col0 + 2);
    snprintf(ki->tenant, sizeof(ki->tenant), "%s", t ? (const char *)t : "");
    snprintf(ki->scopes, sizeof(ki->scopes), "%s", sc ? (const char *)sc : "");
    ki->created = sqlite3_column_int64(st, col0 + 3);
    ki->revoked = sqlite3_column_int64(st, col0 + 4);
}

int http_keys_list(struct http_keys *k, http_keys_fn fn, void *user, struct cit_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = 0, step;
    pthread_mutex_lock(&k->mu);
    if (sqlite3_prepare_v2(k->db,
                           "SELECT id, tenant, hash, scopes, created, revoked FROM api_keys"
                           " ORDER BY created, id",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = cit_err_set(err, CIT_EIO, "cannot list keys: %s", sqlite3_errmsg(k->db));
    } else {
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            struct http_key_info ki;
            const unsigned char *id = sqlite3_column_text(st, 0);
            snprintf(ki.id, sizeof(ki.id), "%s", id ? (const char *)id : "");
            row_info(st, 1, &ki);
            fn(user, &ki);
        }
        if (step != SQLITE_DONE)
            rc = cit_err_set(err, CIT_EIO, "cannot list keys: %s", sqlite3_errmsg(k->db));
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&k->mu);
    return rc;
}

int http_keys_check(struct http_keys *k, const char *key, size_t len, struct http_key_info *ki)
{
    unsigned char hash[crypto_hash_sha256_BYTES];
    char id[HTTP_KEY_ID_LEN + 1];
    int rc = CIT_ENOENT;
    if (len != HTTP_KEY_LEN || memcmp(key, "cit_", 4) || key[4 + HTTP_KEY_ID_LEN] != '_')
        return CIT_ENOENT;
    memcpy(id, key + 4, HTTP_KEY_ID_LEN);
    id[HTTP_KEY_ID_LEN] = 0;
    crypto_hash_sha256(hash, (const unsigned char *)key, len);
    pthread_mutex_lock(&k->mu);
    sqlite3_reset(k->get);
    if (sqlite3_bind_text(k->get, 1, id, -1, SQLITE_TRANSIENT) == SQLITE_OK &&
        sqlite3_step(k->get) == SQLITE_ROW) {
        const void *h = sqlite3_column_blob(k->get, 1);
        if (h && sqlite3_column_bytes(k->get, 1) == (int)sizeof(hash) &&
            sodium_memcmp(h, hash, sizeof(hash)) == 0 && sqlite3_column_int64(k->get, 4) == 0) {
            memcpy(ki->id, id, sizeof(id));
            row_info(k->get, 0, ki);
            rc = CIT_OK;
        }
    }
    sqlite3_reset(k->get);
    pthread_mutex_unlock(&k->mu);
    return rc;
}
