/*
 * Opening and closing a node, and the models it serves.
 *
 * The ledger's name (its checkpoints' origin and its key's name) follows
 * one rule: "<node.id>/audit", node.id from the policy. So the ledger
 * needs the policy, whichever command opens it first.
 *
 * Models: a fixed table of slots, each a counted reference. Loading runs
 * border control and builds the scheduler outside the table's lock (it
 * hashes gigabytes); unloading takes the model out of the table, stops its
 * scheduler (which ends its requests with CANCELLED, gone set first so
 * that they can say why) and drops the table's reference; the last call
 * that held it frees it.
 */
#include <errno.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "node_int.h"

struct cit_db *node_state(struct node *n)
{
    return n->db;
}

const struct pol_policy *node_policy(struct node *n)
{
    return n->pol;
}

struct brd_registry *node_registry(struct node *n)
{
    return n->reg;
}

struct ledger *node_ledger(struct node *n)
{
    return n->lg;
}

struct gw *node_gateway(struct node *n)
{
    return n->gw;
}

const struct ledger_skey *node_witness_key(const struct node *n)
{
    return n->have_wkey ? &n->wkey : NULL;
}

const struct ledger_skey *node_key(const struct node *n)
{
    return n->have_key ? &n->key : NULL;
}

const char *node_id(const struct node *n)
{
    return n->pol ? n->pol->node_id : "";
}

const char *node_policy_hash(const struct node *n)
{
    return n->pol ? n->pol->hash_hex : "";
}

int node_policy_lists_model(const struct node *n, const char *id)
{
    if (!n->pol) return 0;
    for (int i = 0; i < n->pol->n_models; i++)
        if (!strcmp(n->pol->models[i].id, id)) return 1;
    return 0;
}

const char *node_jurisdiction(const struct node *n)
{
    return n->pol ? n->pol->jurisdiction : "";
}

const char *node_profile_id(const struct node *n)
{
    return n->pol && n->pol->profile.present ? n->pol->profile.id : NULL;
}

const char *node_profile_notice(const struct node *n)
{
    return n->pol && n->pol->profile.present ? n->pol->profile.notice : NULL;
}

int node_profile_appends_notice(const struct node *n)
{
    return n->pol && n->pol->profile.present && n->pol->profile.notice &&
           n->pol->profile.output.append_notice;
}

static int open_ledger(struct node *n, struct cit_err *err)
{
    struct ledger_opts lo = {0};
    struct cit_buf floor = {0};
    char origin[LEDGER_MAX_ORIGIN];
    const char *vk;
    int rc;
    if (!n->o.ledger[0])
        return cit_err_set(err, CIT_EINVAL, "no ledger: set 'ledger = DIR' for the audit log");
    snprintf(origin, sizeof(origin), "%s/audit", n->pol->node_id);
    lo.dir = n->o.ledger;
    lo.origin = origin;
    lo.checkpoint_s = n->o.checkpoint_s;
    lo.retention_days = n->o.ledger_retention_days;
    /* the last checkpoint it signed, kept apart from it: no rollback */
    if (mkdir(n->o.ledger, 0700) && errno != EEXIST)
        return cit_err_set(err, CIT_EIO, "%s: %s", n->o.ledger, strerror(errno));
    if (!realpath(n->o.ledger, n->ledger_real))
        return cit_err_set(err, CIT_EIO, "%s: %s", n->o.ledger, strerror(errno));
    if ((rc = node_floor_read(n->db, n->ledger_real, &floor, err))) return rc;
    lo.floor_note = floor.p;
    lo.on_checkpoint = node_floor_store;
    /* the passports taken, kept in memory: rebuilt from the recent entries */
    lo.on_recent = node_passports_recover;
    lo.recent_s = GW_PASSPORT_MAX_LIFE_S + GW_PASSPORT_SKEW_S;
    lo.user = n;
    rc = ledger_open(&lo, &n->lg, err);
    cit_buf_free(&floor);
    if (rc) return rc;
    /* the ledger's key is the node's identity to its peers */
    {
        char kp[1100];
        snprintf(kp, sizeof(kp), "%s/node.key", n->o.ledger);
        if ((rc = ledger_key_load(kp, NULL, NULL, &n->key, err))) return rc;
        n->have_key = 1;
    }
    /* and its witness key, which cosigns its peers' checkpoints: a key of
     * its own, so that no cosignature can pass for a checkpoint */
    {
        char kp[1100], vp[1100], name[LEDGER_MAX_ORIGIN];
        snprintf(kp, sizeof(kp), "%s/witness.key", n->o.ledger);
        snprintf(vp, sizeof(vp), "%s/witness.vkey", n->o.ledger);
        snprintf(name, sizeof(name), "%s/witness", n->pol->node_id);
        if ((rc = ledger_key_load_type(kp, vp, name, LEDGER_KEY_COSIGN, &n->wkey, err))) return rc;
        n->have_wkey = 1;
    }
    /* a ledger made by an older citadel may carry another name; its
     * signed history keeps it, so say so rather than hide it */
    vk = ledger_vkey_text(n->lg);
    if (strncmp(vk, origin, strlen(origin)) || vk[strlen(origin)] != '+')
        cit_log(CIT_LOG_WARN,
                "ledger %s is named '%.*s', not '%s' (policy node.id '%s'): it was created "
                "under another name, which its checkpoints keep",
                n->o.ledger, (int)strcspn(vk, "+"), vk, origin, n->pol->node_id);
    return 0;
}

static int load(struct node *n, const char *id, const char *path, int configured,
                struct cit_err *err);

int node_open(const struct node_opts *o, unsigned what, struct node **out, struct cit_err *err)
{
    struct node *n;
    int rc;
    if (what & NODE_MODELS) what |= NODE_LEDGER | NODE_STATE;
    if (what & NODE_GATEWAY) what |= NODE_LEDGER;
    if (what & NODE_LEDGER) what |= NODE_POLICY | NODE_STATE; /* the ledger's floor */
    if (!(n = cit_calloc(1, sizeof(*n)))) return cit_err_set(err, CIT_ENOMEM, "out of memory");
    n->o = *o;
    pthread_mutex_init(&n->models_mu, NULL);
    pthread_mutex_init(&n->gw_mu, NULL);
    if (node_seen_open(&n->seen)) {
        rc = cit_err_set(err, CIT_ENOMEM, "out of memory");
        goto fail;
    }
    if (what & NODE_POLICY) {
        if (!o->policy[0]) {
            rc = cit_err_set(err, CIT_EINVAL,
                             "no policy: set 'policy = FILE' in citadel.conf or give --policy "
                             "FILE (policy.example.yaml is a complete one); citadel serves "
                             "nothing it cannot decide on");
            goto fail;
        }
        if ((rc = pol_load(o->policy, &n->pol, err))) goto fail;
    }
    if (what & NODE_STATE) {
        if ((rc = node_state_open(o->state, &n->db, err)) ||
            (rc = node_keys_open(n->db, &n->keys, err)) ||
            (rc = pol_quotas_open(n->db, &n->quotas, err)) ||
            (rc = brd_registry_open(n->db, &n->reg, err)) ||
            (rc = node_secret(n->db, "request-digest", n->digest_key, err)))
            goto fail;
    }
    if ((what & NODE_LEDGER) && (rc = open_ledger(n, err))) goto fail;
    if (what & NODE_GATEWAY) {
        struct cit_buf head = {0};
        struct cit_err e = {{0}};
        if ((rc = gw_open(n->pol, &n->key, &n->gw, err))) goto fail;
        gw_set_witness(n->gw, n->ledger_real, node_cosigned_store, n);
        /* the witnesses see the head now; later checkpoints as they come */
        if (!ledger_head_note(n->o.ledger, &head, &e)) gw_witness_push(n->gw, head.p, head.len);
        cit_buf_free(&head);
    }
    if (what & NODE_MODELS) {
        if (o->n_models < 1) {
            rc = cit_err_set(err, CIT_EINVAL, "no model: give --model PATH or 'model = PATH'");
            goto fail;
        }
        for (int i = 0; i < o->n_models; i++)
            if ((rc = load(n, o->models[i].id, o->models[i].path, 1, err))) goto fail;
    }
    *out = n;
    return 0;
fail:
    node_close(n);
    return rc;
}

void node_request_digest(const struct node *n, const void *canon, size_t len, uint8_t out[32])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, n->digest_key, sizeof(n->digest_key));
    crypto_auth_hmacsha256_update(&st, canon, len);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof(st));
}

void node_close(struct node *n)
{
    if (!n) return;
    for (int i = 0; i < NODE_MAX_MODELS; i++)
        if (n->models[i]) node_model_unload(n, n->models[i]->id, NULL, NULL);
    {
        struct gw *g;
        pthread_mutex_lock(&n->gw_mu); /* the ledger's last checkpoint finds none */
        g = n->gw;
        n->gw = NULL;
        pthread_mutex_unlock(&n->gw_mu);
        gw_close(g);
    }
    ledger_close(n->lg); /* after the last request: signs the final checkpoint */
    brd_registry_close(n->reg);
    pol_quotas_close(n->quotas);
    node_keys_close(n->keys);
    cit_db_close(n->db);
    node_seen_close(n->seen);
    pol_free(n->pol);
    pthread_mutex_destroy(&n->models_mu);
    pthread_mutex_destroy(&n->gw_mu);
    sodium_memzero(&n->wkey, sizeof(n->wkey));
    sodium_memzero(n->digest_key, sizeof(n->digest_key));
    sodium_memzero(&n->key, sizeof(n->key));
    cit_free(n);
}

/* ---- models ---- */

static void model_free(struct node_model *m)
{
    sched_free(m->sched);
    cit_pool_free(m->pool);
    eng_model_free(m->m);
    cit_free(m);
}

void node_model_unref(struct node_model *m)
{
    if (m && atomic_fetch_sub(&m->refs, 1) == 1) model_free(m);
}

struct node_model *node_model_get(struct node *n, const char *id)
{
    struct node_model *m = NULL;
    pthread_mutex_lock(&n->models_mu);
    for (int i = 0; i < NODE_MAX_MODELS && !m; i++)
        if (n->models[i] && !strcmp(n->models[i]->id, id) && !atomic_load(&n->models[i]->gone)) {
            m = n->models[i];
            atomic_fetch_add(&m->refs, 1);
        }
    pthread_mutex_unlock(&n->models_mu);
    return m;
}

struct eng_model *node_engine_model(struct node *n, const char *id)
{
    struct node_model *m = node_model_get(n, id);
    struct eng_model *e = m ? m->m : NULL;
    node_model_unref(m); /* the table's reference keeps it */
    return e;
}

int node_tokenize(struct node *n, const char *id, const char *text, size_t len, int add_special,
                  int parse_special, int32_t **ids, int *n_ids)
{
    struct node_model *m = node_model_get(n, id);
    int rc, count = 0;
    *ids = NULL;
    *n_ids = 0;
    if (!m) return CIT_ENOENT;
    rc = eng_tokenize(m->m, text, len, add_special, parse_special, NULL, 0, &count);
    if (rc == CIT_EOVERFLOW || (!rc && count > 0)) {
        *ids = cit_malloc((size_t)(count > 0 ? count : 1) * sizeof(int32_t));
        rc = *ids ? eng_tokenize(m->m, text, len, add_special, parse_special, *ids, count, &count)
                  : CIT_ENOMEM;
    }
    node_model_unref(m);
    if (rc) {
        cit_free(*ids);
        *ids = NULL;
        return rc;
    }
    *n_ids = count;
    return 0;
}

int node_token_pieces(struct node *n, const char *id, const int32_t *ids, int n_ids,
                      int render_special, struct cit_buf *out, size_t *ends)
{
    struct node_model *m = node_model_get(n, id);
    char piece[4200];
    int rc = 0;
    if (!m) return CIT_ENOENT;
    for (int i = 0; i < n_ids && !rc; i++) {
        int k = eng_token_piece(m->m, ids[i], render_special, piece, sizeof(piece));
        if (k < 0)
            rc = k;
        else if (cit_buf_add(out, piece, (size_t)k))
            rc = CIT_ENOMEM;
        else if (ends)
            ends[i] = out->len;
    }
    node_model_unref(m);
    return rc;
}

/* The slot holding the model id, or -1; *free_slot: the first slot neither
 * loaded nor reserved (-1: none); *loading: id is being loaded. Under
 * models_mu. */
static int slot_of(struct node *n, const char *id, int *free_slot, int *loading)
{
    int found = -1;
    *free_slot = -1;
    *loading = 0;
    for (int i = 0; i < NODE_MAX_MODELS; i++) {
        if (n->loading[i][0]) {
            if (!strcmp(n->loading[i], id)) *loading = 1;
        } else if (!n->models[i]) {
            if (*free_slot < 0) *free_slot = i;
        } else if (!strcmp(n->models[i]->id, id)) {
            found = i;
        }
    }
    return found;
}

static int load(struct node *n, const char *id, const char *path, int configured,
                struct cit_err *err)
{
    struct node_model *m;
    struct brd_admitted adm;
    const char *check;
    int rc, slot, train_ctx, busy;
    if (!n->lg || !n->reg)
        return cit_err_set(err, CIT_EINVAL, "models load on a node opened with its ledger");
    pthread_mutex_lock(&n->models_mu);
    rc = slot_of(n, id, &slot, &busy);
    if (rc < 0 && !busy && slot >= 0) snprintf(n->loading[slot], sizeof(n->loading[0]), "%s", id);
    pthread_mutex_unlock(&n->models_mu);
    if (rc >= 0 || busy)
        return cit_err_set(err, CIT_EINVAL, "model '%s' is already %s (unload it first)", id,
                           busy ? "loading" : "loaded");
    if (slot < 0)
        return cit_err_set(err, CIT_ERANGE, "model '%s': at most %d models are loaded at once", id,
                           NODE_MAX_MODELS);
    if (!(m = cit_calloc(1, sizeof(*m)))) {
        rc = cit_err_set(err, CIT_ENOMEM, "out of memory");
        goto fail;
    }
    m->node = n;
    m->slot = slot;
    atomic_init(&m->refs, 1);
    snprintf(m->id, sizeof(m->id), "%s", id);
    snprintf(m->path, sizeof(m->path), "%s", path);
    {
        struct brd_load_opts lo = {n->reg, n->pol, n->lg, n->o.unvetted, n->o.trust_stored_digest,
                                   0};
        if ((rc = brd_load_model(&lo, path, &m->m, &check, err))) {
            char why[200];
            snprintf(why, sizeof(why), "model %s refused (%s)", id, check);
            cit_err_prefix(err, why);
            goto fail;
        }
    }
    if (brd_model_find(n->reg, path, &adm, NULL) == 0) memcpy(m->root, adm.root, 32);
    m->n_vocab = eng_model_hparams(m->m)->n_vocab;
    train_ctx = (int)eng_model_hparams(m->m)->n_ctx_train;
    m->n_ctx = n->o.ctx ? n->o.ctx : (train_ctx > 0 && train_ctx < 2048 ? train_ctx : 2048);
    m->tmpl = eng_chat_detect(m->m, NULL);
    m->created = (int64_t)time(NULL);
    m->configured = configured;
    m->gen = atomic_fetch_add(&n->loads, 1) + 1;
    {
        struct sched_opts so = {n->o.parallel, n->o.queue, m->n_ctx, 256};
        if ((rc = cit_pool_create(n->o.threads, &m->pool)) ||
            (rc = sched_new(m->m, m->pool, &so, &m->sched))) {
            rc = cit_err_set(err, rc, "%s: cannot start its scheduler (%d slots of %d tokens): %s",
                             id, n->o.parallel, m->n_ctx, cit_strerror(rc));
            goto fail;
        }
    }
    pthread_mutex_lock(&n->models_mu);
    n->models[slot] = m;
    n->loading[slot][0] = 0;
    pthread_mutex_unlock(&n->models_mu);
    cit_log(CIT_LOG_INFO, "model %s: %s, %d slots x %d tokens, %s template, %d threads", id, path,
            n->o.parallel, m->n_ctx, eng_chat_tmpl_name(m->tmpl), n->o.threads);
    /* a revocation or a trust change while the file was checked: it holds now */
    node_models_recheck(n);
    return 0;
fail:
    pthread_mutex_lock(&n->models_mu);
    n->loading[slot][0] = 0;
    pthread_mutex_unlock(&n->models_mu);
    if (m) model_free(m);
    return rc;
}

int node_model_load(struct node *n, const char *id, const char *path, struct cit_err *err)
{
    return load(n, id, path, 0, err);
}

/* Unloads the model id; only: that instance of it, or nothing (a model
 * unloaded and loaded again meanwhile is another instance). */
static int unload(struct node *n, const char *id, const struct node_model *only, const char *why,
                  struct cit_err *err)
{
    struct node_model *m = NULL;
    int slot, free_slot, busy;
    pthread_mutex_lock(&n->models_mu);
    if ((slot = slot_of(n, id, &free_slot, &busy)) >= 0 && (!only || n->models[slot] == only)) {
        m = n->models[slot];
        n->models[slot] = NULL;
        snprintf(m->gone_why, sizeof(m->gone_why), "%s", why ? why : "the node is stopping");
        atomic_store(&m->gone, 1);
    }
    pthread_mutex_unlock(&n->models_mu);
    if (!m)
        return cit_err_set(err, CIT_ENOENT, "no model '%s' is loaded%s", id,
                           busy ? " (it is loading; unload it when that ends)" : "");
    /* its requests end now, each with CANCELLED; they read gone_why */
    sched_stop(m->sched);
    if (why) {
        char detail[400];
        snprintf(detail, sizeof(detail), "unloaded: %s", why);
        if (brd_ledger_event(n->lg, "model", "unload", "", m->id, m->root, m->path, n->pol, detail))
            cit_log(CIT_LOG_ERROR, "ledger: cannot record the unload of model %s", m->id);
        cit_log(CIT_LOG_INFO, "model %s unloaded: %s", m->id, why);
    }
    node_model_unref(m);
    return 0;
}

int node_model_unload(struct node *n, const char *id, const char *why, struct cit_err *err)
{
    return unload(n, id, NULL, why, err);
}

int node_models_recheck(struct node *n)
{
    struct node_model *v[NODE_MAX_MODELS]; /* each held by a reference meanwhile */
    int k = 0, unloaded = 0;
    int64_t now = (int64_t)time(NULL);
    struct brd_signer *signers = NULL;
    size_t n_signers = 0;
    pthread_mutex_lock(&n->models_mu);
    for (int i = 0; i < NODE_MAX_MODELS; i++)
        if (n->models[i]) {
            atomic_fetch_add(&n->models[i]->refs, 1);
            v[k++] = n->models[i];
        }
    pthread_mutex_unlock(&n->models_mu);
    /* the trust store once for all of them; unreadable, it trusts no one (fail closed) */
    if (k && brd_trust_list(n->reg, &signers, &n_signers, NULL)) {
        signers = NULL;
        n_signers = 0;
    }
    for (int i = 0; i < k; i++) {
        struct brd_admitted a;
        char why[400] = "";
        int rc = brd_model_find(n->reg, v[i]->path, &a, NULL);
        if (rc == CIT_ENOENT && n->o.unvetted) continue; /* loaded unvetted, as allowed */
        if (rc)
            snprintf(why, sizeof(why), "its admission cannot be read");
        else if (a.revoked)
            snprintf(why, sizeof(why), "admission %lld was revoked: %s", (long long)a.id,
                     a.revoke_reason[0] ? a.revoke_reason : "no reason given");
        else if (a.expires && a.expires <= now)
            snprintf(why, sizeof(why), "admission %lld expired", (long long)a.id);
        else if (!brd_signer_holds(&a, signers, n_signers))
            snprintf(why, sizeof(why), "its signer '%s' (that key) is no longer trusted", a.signer);
        if (why[0] && unload(n, v[i]->id, v[i], why, NULL) == 0) unloaded++;
    }
    for (int i = 0; i < k; i++) node_model_unref(v[i]);
    cit_free(signers);
    return unloaded;
}

int node_models_apply(struct node *n, const struct node_model_spec *specs, int n_specs,
                      struct cit_err *err)
{
    struct node_model_info have[NODE_MAX_MODELS];
    int nh = node_models(n, have, NODE_MAX_MODELS), first = 0;
    for (int i = 0; i < nh; i++) {
        int keep = !have[i].configured; /* an admin verb's model stays */
        for (int j = 0; j < n_specs && !keep; j++)
            keep = !strcmp(specs[j].id, have[i].id) && !strcmp(specs[j].path, have[i].path);
        if (!keep) node_model_unload(n, have[i].id, "no longer in the configuration", NULL);
    }
    for (int j = 0; j < n_specs; j++) {
        struct cit_err e;
        int rc, slot, unused, busy, same = 0;
        pthread_mutex_lock(&n->models_mu);
        if ((slot = slot_of(n, specs[j].id, &unused, &busy)) >= 0 &&
            (same = !strcmp(n->models[slot]->path, specs[j].path)))
            n->models[slot]->configured = 1; /* listed now: the configuration's */
        pthread_mutex_unlock(&n->models_mu);
        if (same) continue;
        /* (an id an admin verb loaded from another file: load says so) */
        if ((rc = load(n, specs[j].id, specs[j].path, 1, &e))) {
            cit_log(CIT_LOG_ERROR, "reload: %s", e.msg);
            if (!first) {
                first = rc;
                if (err) *err = e;
            }
        }
    }
    return first;
}

static void fill_info(const struct node_model *m, struct node_model_info *mi)
{
    const struct node *n = m->node;
    snprintf(mi->id, sizeof(mi->id), "%s", m->id);
    snprintf(mi->path, sizeof(mi->path), "%s", m->path);
    mi->slot = m->slot;
    mi->created = m->created;
    mi->n_ctx = m->n_ctx;
    mi->parallel = n->o.parallel;
    mi->threads = n->o.threads;
    mi->tmpl = eng_chat_tmpl_name(m->tmpl);
    mi->configured = m->configured;
    mi->gen = m->gen;
    sched_get_stats(m->sched, &mi->st);
}

int node_models(struct node *n, struct node_model_info *out, int cap)
{
    int k = 0;
    pthread_mutex_lock(&n->models_mu);
    for (int i = 0; i < NODE_MAX_MODELS && k < cap; i++)
        if (n->models[i]) fill_info(n->models[i], &out[k++]);
    pthread_mutex_unlock(&n->models_mu);
    return k;
}

int node_model_info(struct node *n, const char *id, struct node_model_info *out)
{
    int rc = CIT_ENOENT;
    pthread_mutex_lock(&n->models_mu);
    for (int i = 0; i < NODE_MAX_MODELS && rc; i++)
        if (n->models[i] && !strcmp(n->models[i]->id, id)) {
            fill_info(n->models[i], out);
            rc = 0;
        }
    pthread_mutex_unlock(&n->models_mu);
    return rc;
}

int node_model_count(struct node *n)
{
    int k = 0;
    pthread_mutex_lock(&n->models_mu);
    for (int i = 0; i < NODE_MAX_MODELS; i++) k += n->models[i] != NULL;
    pthread_mutex_unlock(&n->models_mu);
    return k;
}

int node_busy(struct node *n)
{
    int busy = 0;
    pthread_mutex_lock(&n->models_mu);
    for (int i = 0; i < NODE_MAX_MODELS; i++)
        if (n->models[i]) {
            struct sched_stats st;
            sched_get_stats(n->models[i]->sched, &st);
            busy += st.queued + st.active;
        }
    pthread_mutex_unlock(&n->models_mu);
    return busy;
}

void node_stop_models(struct node *n)
{
    struct node_model *v[NODE_MAX_MODELS];
    int k = 0;
    pthread_mutex_lock(&n->models_mu);
    for (int i = 0; i < NODE_MAX_MODELS; i++)
        if (n->models[i]) {
            atomic_fetch_add(&n->models[i]->refs, 1);
            v[k++] = n->models[i];
        }
    pthread_mutex_unlock(&n->models_mu);
    /* stopping joins a scheduler's thread: never under the table's lock */
    for (int i = 0; i < k; i++) {
        sched_stop(v[i]->sched);
        node_model_unref(v[i]);
    }
}
