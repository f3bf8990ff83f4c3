/*
 * API keys in the node's SQLite state file.
 *
 * Only SHA-256 of a key is stored. Keys carry 256 random bits, so a plain
 * hash is enough (there is nothing to brute-force); the id in the key finds
 * the row and the hash is compared in constant time. The node's one
 * connection to the state file, under its lock.
 */
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "node_int.h"

struct node_keys {
    struct cit_db *state;
    sqlite3 *db;
    sqlite3_stmt *get;
};

int node_keys_open(struct cit_db *state, struct node_keys **out, struct cit_err *err)
{
    struct node_keys *k;
    if (sodium_init() < 0) return cit_err_set(err, CIT_EIO, "libsodium failed to initialise");
    k = cit_calloc(1, sizeof(*k));
    if (!k) return cit_err_set(err, CIT_ENOMEM, "out of memory");
    k->state = state;
    k->db = cit_db_sqlite(state);
    cit_db_lock(state);
    if (sqlite3_prepare_v2(k->db,
                           "SELECT tenant, hash, scopes, created, revoked FROM api_keys"
                           " WHERE id = ?",
                           -1, &k->get, NULL) != SQLITE_OK) {
        cit_err_set(err, CIT_EIO, "%s: %s", cit_db_path(state), sqlite3_errmsg(k->db));
        cit_db_unlock(state);
        cit_free(k);
        return CIT_EIO;
    }
    cit_db_unlock(state);
    *out = k;
    return 0;
}

void node_keys_close(struct node_keys *k)
{
    if (!k) return;
    cit_db_lock(k->state);
    sqlite3_finalize(k->get);
    cit_db_unlock(k->state);
    cit_free(k);
}

/* ---- scopes ---- */

static const char *const endpoints[] = {"chat",   "completions", "embeddings", "models", "metrics",
                                        "policy", "tokenize",    "admin",      "*"};

static int valid_model_id(const char *s, size_t n)
{
    if (n == 0 || n > 127) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f) return 0;
    }
    return 1;
}

int node_scopes_parse(const char *in, char *out, size_t cap, struct cit_err *err)
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
                                   "scope '%.*s': endpoints are chat, completions, "
                                   "embeddings, models, metrics, policy, admin or *",
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

static int scope_has_exact(const char *scopes, const char *item)
{
    size_t il = strlen(item);
    for (const char *p = scopes; *p;) {
        size_t n = strcspn(p, " ");
        if (n == il && !memcmp(p, item, il)) return 1;
        p += n;
        while (*p == ' ') p++;
    }
    return 0;
}

int node_scope_allows(const char *scopes, const char *endpoint, const char *model)
{
    /* administration is never granted by a wildcard */
    if (!strcmp(endpoint, "admin") ? !scope_has_exact(scopes, "endpoint:admin")
                                   : !scope_has(scopes, "endpoint:", endpoint))
        return 0;
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

/* Ends a key change (db locked, inside BEGIN): the ledger entry, then the
 * commit; a change the ledger cannot record is rolled back, so no key
 * exists or dies unrecorded. A commit that fails after the entry (a full
 * disk) is recorded too, as status 500 with the same ids, so the ledger
 * never claims a change the state file does not hold. A node opened
 * without its ledger (a test's, or keys list) records nothing. */
static int record_key(struct node *n, int status, const char *action, const char *tenant,
                      const char *id, const char *detail)
{
    struct ledger_rec e = {0};
    e.event = "keys";
    e.action = action;
    e.tenant = tenant;
    e.key_id = id;
    e.request_id = id;
    e.policy_hash = n->pol ? n->pol->hash_hex : "";
    e.status = status;
    e.detail = detail;
    return ledger_append(n->lg, &e, LEDGER_SYNC, NULL);
}

static int key_commit(struct node *n, int rc, const char *action, const char *tenant,
                      const char *id, const char *detail, struct cit_err *err)
{
    struct node_keys *k = n->keys;
    if (!rc && n->lg && record_key(n, 200, action, tenant, id, detail))
        rc = cit_err_set(err, CIT_EIO,
                         "the audit ledger cannot record the change; nothing was changed");
    if (!rc && sqlite3_exec(k->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        rc = cit_err_set(err, CIT_EIO, "%s: cannot commit the key change: %s", cit_db_path(n->db),
                         sqlite3_errmsg(k->db));
        if (n->lg && record_key(n, 500, action, tenant, id,
                                "not committed: the state file refused the change"))
            cit_log(CIT_LOG_ERROR,
                    "keys: %s %s: the ledger holds an entry for a change that was not committed",
                    action, id);
    }
    if (rc) sqlite3_exec(k->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int node_key_add(struct node *n, const char *tenant, const char *scopes, char key[NODE_KEY_LEN + 1],
                 char id[NODE_KEY_ID_LEN + 1], struct cit_err *err)
{
    struct node_keys *k = n->keys;
    unsigned char idb[NODE_KEY_ID_LEN / 2], secret[32], hash[crypto_hash_sha256_BYTES];
    char sec64[64], canon[1024];
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (!valid_tenant(tenant))
        return cit_err_set(err, CIT_EINVAL, "tenant '%s': 1 to 64 letters, digits, '-', '_' or '.'",
                           tenant);
    if ((rc = node_scopes_parse(scopes, canon, sizeof(canon), err))) return rc;
    randombytes_buf(idb, sizeof(idb));
    randombytes_buf(secret, sizeof(secret));
    sodium_bin2hex(id, NODE_KEY_ID_LEN + 1, idb, sizeof(idb));
    sodium_bin2base64(sec64, sizeof(sec64), secret, sizeof(secret),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    memcpy(key, "cit_", 4);
    memcpy(key + 4, id, NODE_KEY_ID_LEN);
    key[4 + NODE_KEY_ID_LEN] = '_';
    memcpy(key + 5 + NODE_KEY_ID_LEN, sec64, 43);
    key[NODE_KEY_LEN] = 0;
    crypto_hash_sha256(hash, (const unsigned char *)key, strlen(key));
    sodium_memzero(secret, sizeof(secret));
    cit_db_lock(k->state);
    cit_db_durable(k->state, 1); /* a key added or revoked is not lost */
    if (sqlite3_exec(k->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        rc = cit_err_set(err, CIT_EIO, "cannot store the key: %s", sqlite3_errmsg(k->db));
    else if (sqlite3_prepare_v2(k->db,
                                "INSERT INTO api_keys(id, tenant, hash, scopes, created)"
                                " VALUES (?, ?, ?, ?, ?)",
                                -1, &st, NULL) != SQLITE_OK ||
             sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) ||
             sqlite3_bind_text(st, 2, tenant, -1, SQLITE_STATIC) ||
             sqlite3_bind_blob(st, 3, hash, sizeof(hash), SQLITE_STATIC) ||
             sqlite3_bind_text(st, 4, canon, -1, SQLITE_STATIC) ||
             sqlite3_bind_int64(st, 5, (sqlite3_int64)time(NULL)) ||
             sqlite3_step(st) != SQLITE_DONE)
        rc = cit_err_set(err, CIT_EIO, "cannot store the key: %s", sqlite3_errmsg(k->db));
    sqlite3_finalize(st);
    {
        char detail[1100];
        snprintf(detail, sizeof(detail), "key %s added for tenant %s: %s", id, tenant, canon);
        rc = key_commit(n, rc, "key_add", tenant, id, detail, err);
    }
    cit_db_durable(k->state, 0);
    cit_db_unlock(k->state);
    if (rc) sodium_memzero(key, NODE_KEY_LEN + 1);
    return rc;
}

int node_key_revoke(struct node *n, const char *id, struct cit_err *err)
{
    struct node_keys *k = n->keys;
    sqlite3_stmt *st = NULL;
    int rc = 0;
    char tenant[65] = "";
    cit_db_lock(k->state);
    cit_db_durable(k->state, 1); /* a key added or revoked is not lost */
    if (sqlite3_exec(k->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        rc = cit_err_set(err, CIT_EIO, "cannot revoke: %s", sqlite3_errmsg(k->db));
        goto out;
    }
    sqlite3_reset(k->get);
    if (sqlite3_bind_text(k->get, 1, id, -1, SQLITE_TRANSIENT) == SQLITE_OK &&
        sqlite3_step(k->get) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(k->get, 0);
        snprintf(tenant, sizeof(tenant), "%s", t ? (const char *)t : "");
    }
    sqlite3_reset(k->get);
    if (sqlite3_prepare_v2(k->db, "UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked = 0",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_int64(st, 1, (sqlite3_int64)time(NULL)) ||
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC) || sqlite3_step(st) != SQLITE_DONE)
        rc = cit_err_set(err, CIT_EIO, "cannot revoke: %s", sqlite3_errmsg(k->db));
    else if (sqlite3_changes(k->db) == 0)
        rc = cit_err_set(err, CIT_ENOENT, "no active key with id '%s'", id);
    sqlite3_finalize(st);
    {
        char detail[200];
        snprintf(detail, sizeof(detail), "key %.16s revoked", id);
        rc = key_commit(n, rc, "key_revoke", tenant, id, detail, err);
    }
out:
    cit_db_durable(k->state, 0);
    cit_db_unlock(k->state);
    return rc;
}

static void row_info(sqlite3_stmt *st, int col0, struct node_key_info *ki)
{
    const unsigned char *t = sqlite3_column_text(st, col0);
    const unsigned char *sc = sqlite3_column_text(st, col0 + 2);
    snprintf(ki->tenant, sizeof(ki->tenant), "%s", t ? (const char *)t : "");
    snprintf(ki->scopes, sizeof(ki->scopes), "%s", sc ? (const char *)sc : "");
    ki->created = sqlite3_column_int64(st, col0 + 3);
    ki->revoked = sqlite3_column_int64(st, col0 + 4);
}

int node_key_list(struct node *n, node_key_fn fn, void *user, struct cit_err *err)
{
    struct node_keys *k = n->keys;
    sqlite3_stmt *st = NULL;
    int rc = 0, step;
    cit_db_lock(k->state);
    if (sqlite3_prepare_v2(k->db,
                           "SELECT id, tenant, hash, scopes, created, revoked FROM api_keys"
                           " ORDER BY created, id",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = cit_err_set(err, CIT_EIO, "cannot list keys: %s", sqlite3_errmsg(k->db));
    } else {
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            struct node_key_info ki;
            const unsigned char *id = sqlite3_column_text(st, 0);
            snprintf(ki.id, sizeof(ki.id), "%s", id ? (const char *)id : "");
            row_info(st, 1, &ki);
            fn(user, &ki);
        }
        if (step != SQLITE_DONE)
            rc = cit_err_set(err, CIT_EIO, "cannot list keys: %s", sqlite3_errmsg(k->db));
    }
    sqlite3_finalize(st);
    cit_db_unlock(k->state);
    return rc;
}

int node_key_check(struct node *n, const char *key, size_t len, struct node_key_info *ki)
{
    struct node_keys *k = n->keys;
    unsigned char hash[crypto_hash_sha256_BYTES];
    char id[NODE_KEY_ID_LEN + 1];
    int rc = CIT_ENOENT;
    if (len != NODE_KEY_LEN || memcmp(key, "cit_", 4) || key[4 + NODE_KEY_ID_LEN] != '_')
        return CIT_ENOENT;
    memcpy(id, key + 4, NODE_KEY_ID_LEN);
    id[NODE_KEY_ID_LEN] = 0;
    crypto_hash_sha256(hash, (const unsigned char *)key, len);
    cit_db_lock(k->state);
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
    cit_db_unlock(k->state);
    return rc;
}

struct audit_ctx {
    const struct pol_policy *pol;
    struct cit_buf *report;
    int n;
};

static void audit_key(void *user, const struct node_key_info *ki)
{
    struct audit_ctx *a = user;
    if (ki->revoked || pol_tenant_index(a->pol, ki->tenant) >= 0) return;
    a->n++;
    cit_buf_printf(a->report,
                   "API key %s is for tenant '%s', which the policy does not list: its requests "
                   "are denied. Add the tenant under 'tenants:' in the policy, or revoke the key "
                   "(citadel keys revoke %s)\n",
                   ki->id, ki->tenant, ki->id);
}

int node_key_audit(struct node *n, struct cit_buf *report)
{
    struct audit_ctx a = {n->pol, report, 0};
    if (!n->keys || !n->pol) return 0;
    node_key_list(n, audit_key, &a, NULL);
    return a.n;
}
