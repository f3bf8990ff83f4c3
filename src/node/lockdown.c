/*
 * The node's side of lockdown (guard.h): what a node needs from the file
 * system and the network, and the ledger entry that records what the
 * kernel was told.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "citadel/guard.h"
#include "citadel/policy.h"
#include "node_int.h"

int node_guard_spec(const struct node_opts *o, const struct pol_policy *p, int peers,
                    struct guard_spec *s, struct cit_err *err)
{
    char dir[1024];
    int rc;
    if ((rc = guard_spec_system(s, err))) return rc;
    /* the state file's folder: SQLite's journal, and the admin socket */
    if ((rc = guard_spec_path(s, cit_path_dir(o->state, dir, sizeof(dir)), 1, 0, err))) return rc;
    if (o->ledger[0]) {
        if (mkdir(o->ledger, 0700) && errno != EEXIST)
            return cit_err_set(err, CIT_EIO, "%s: %s", o->ledger, strerror(errno));
        if ((rc = guard_spec_path(s, o->ledger, 1, 0, err))) return rc;
    }
    if ((rc = guard_spec_path(s, o->policy, 0, 0, err))) return rc;
    /* the node reads its policy again when it opens, profile included */
    if (p && p->profile.present && (rc = guard_spec_path(s, p->profile.file, 0, 0, err)))
        return rc;
    /* a model that is not there is skipped: its load says so, better */
    for (int i = 0; i < o->n_models; i++)
        if ((rc = guard_spec_path(s, o->models[i].path, 0, 1, err))) return rc;
    for (int i = 0; i < o->n_lock_read; i++)
        if ((rc = guard_spec_path(s, o->lock_read[i], 0, 0, err))) return rc;
    if (!p || !peers) return 0;
    for (int i = 0; i < p->n_peers; i++) {
        const struct pol_target *t = &p->peers[i];
        char host[256];
        int port;
        if (!(rc = guard_url_hostport(t->url, host, sizeof(host), &port, err)) &&
            (rc = guard_spec_connect(s, host, port, err)) == CIT_ENOENT) {
            /* a partner down at our start is no reason not to serve */
            cit_log(CIT_LOG_WARN, "peer '%s': %s; it stays unreachable until a restart", t->id,
                    err->msg);
            rc = 0;
        }
        if (rc || (rc = guard_spec_path(s, t->ca, 0, 0, err)) ||
            (rc = guard_spec_path(s, t->api_key_file, 0, 0, err))) {
            char m[sizeof(err->msg)];
            snprintf(m, sizeof(m), "%s", err->msg);
            return cit_err_set(err, rc, "peer '%s': %s", t->id, m);
        }
    }
    return 0;
}

int node_record_lockdown(struct node *n, const char *what, struct cit_err *err)
{
    struct ledger_rec e = {0};
    struct guard_status st;
    struct cit_buf text = {0};
    char hash[65];
    int rc;
    if (!n->lg) return 0;
    if ((rc = guard_statement(&text, hash)))
        return cit_err_set(err, rc, "lockdown: the statement: out of memory");
    guard_get_status(&st);
    e.event = "lockdown";
    e.action = !st.locked ? "none" : st.missing[0] ? "partial" : "enforced";
    e.target = what;
    e.request_id = hash;
    e.policy_hash = n->pol ? n->pol->hash_hex : "";
    crypto_hash_sha256(e.digest, (const unsigned char *)text.p, text.len);
    e.status = 200;
    e.detail = text.p; /* the whole statement: an auditor needs no other file */
    rc = ledger_append(n->lg, &e, LEDGER_SYNC, NULL);
    cit_buf_free(&text);
    if (rc) return cit_err_set(err, rc, "lockdown: the ledger refused the air-gap statement");
    return 0;
}
