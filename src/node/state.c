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
};

int node_state_open(const char *path, struct cit_db **out, struct cit_err *err)
{
    return cit_db_open(path, migrations, (int)(sizeof(migrations) / sizeof(migrations[0])), out,
                       err);
}
