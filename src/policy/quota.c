/*
 * Tenant quotas: requests per minute, tokens per day, concurrent requests.
 *
 * The counters of the current windows live in SQLite (the node's state
 * file, WAL) and in memory; every change is written through, so a restart
 * (or kill -9: a committed WAL frame survives the process) starts from the
 * counts it left. Windows are fixed and aligned to UTC: the minute, and the
 * day from 00:00Z, which is what a 429 body can name as its reset time.
 *
 * Tokens are reserved at admission: the prompt plus the most the request
 * may generate (capped to what is left), and the unused part is given back
 * when it ends. Reservations are held in memory only, so concurrent
 * requests can never overrun the day's budget together, and a crash
 * forgets reservations rather than charging for tokens never generated.
 * Concurrency is in memory too: requests in flight die with the process.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "citadel/policy.h"

#define MAX_TENANTS POL_MAX_ITEMS

struct usage {
    char tenant[POL_MAX_NAME];
    int64_t minute_start, requests; /* unix seconds of the window, count in it */
    int64_t day_start, tokens;      /* tokens charged today (durable) */
    int64_t reserved;               /* tokens reserved by requests in flight */
    int64_t concurrent;
};

struct pol_quotas {
    pthread_mutex_t mu; /* the counters in memory; the state file's lock is taken inside it */
    struct cit_db *state;
    sqlite3 *db;
    sqlite3_stmt *put;
    struct usage *u;
    int n;
};

static int db_err(struct pol_quotas *q, const char *what, struct cit_err *err)
{
    return cit_err_set(err, CIT_EIO, "%s: %s: %s", cit_db_path(q->state), what,
                       sqlite3_errmsg(q->db));
}

int pol_quotas_open(struct cit_db *state, struct pol_quotas **out, struct cit_err *err)
{
    struct pol_quotas *q = cit_calloc(1, sizeof(*q));
    sqlite3_stmt *st = NULL;
    int rc;
    if (!q) return cit_err_set(err, CIT_ENOMEM, "out of memory");
    pthread_mutex_init(&q->mu, NULL);
    q->state = state;
    q->db = cit_db_sqlite(state);
    cit_db_lock(state);
    if (sqlite3_prepare_v2(q->db, "INSERT OR REPLACE INTO quota_usage VALUES (?1, ?2, ?3, ?4, ?5)",
                           -1, &q->put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(q->db,
                           "SELECT tenant, minute_start, requests, day_start, tokens FROM "
                           "quota_usage",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = db_err(q, "cannot prepare", err);
        goto fail;
    }
    if (!(q->u = cit_calloc(MAX_TENANTS, sizeof(*q->u)))) {
        rc = cit_err_set(err, CIT_ENOMEM, "out of memory");
        goto fail;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && q->n < MAX_TENANTS) {
        struct usage *u = &q->u[q->n++];
        snprintf(u->tenant, sizeof(u->tenant), "%s", (const char *)sqlite3_column_text(st, 0));
        u->minute_start = sqlite3_column_int64(st, 1);
        u->requests = sqlite3_column_int64(st, 2);
        u->day_start = sqlite3_column_int64(st, 3);
        u->tokens = sqlite3_column_int64(st, 4);
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        rc = db_err(q, "cannot read the quota table", err);
        goto fail;
    }
    sqlite3_finalize(st);
    cit_db_unlock(state);
    *out = q;
    return 0;
fail:
    sqlite3_finalize(st);
    cit_db_unlock(state);
    pol_quotas_close(q);
    return rc;
}

void pol_quotas_close(struct pol_quotas *q)
{
    if (!q) return;
    cit_db_lock(q->state);
    sqlite3_finalize(q->put);
    cit_db_unlock(q->state);
    cit_free(q->u);
    pthread_mutex_destroy(&q->mu);
    cit_free(q);
}

/* mu held */
static struct usage *find(struct pol_quotas *q, const char *tenant)
{
    for (int i = 0; i < q->n; i++)
        if (!strcmp(q->u[i].tenant, tenant)) return &q->u[i];
    if (q->n == MAX_TENANTS || strlen(tenant) >= POL_MAX_NAME) return NULL;
    struct usage *u = &q->u[q->n++];
    memset(u, 0, sizeof(*u));
    snprintf(u->tenant, sizeof(u->tenant), "%s", tenant);
    return u;
}

static void roll(struct usage *u, int64_t now)
{
    int64_t m = now - now % 60, d = now - now % 86400;
    if (u->minute_start != m) u->minute_start = m, u->requests = 0;
    if (u->day_start != d) u->day_start = d, u->tokens = 0;
}

static int store(struct pol_quotas *q, const struct usage *u)
{
    int rc;
    cit_db_lock(q->state);
    sqlite3_reset(q->put);
    sqlite3_bind_text(q->put, 1, u->tenant, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q->put, 2, u->minute_start);
    sqlite3_bind_int64(q->put, 3, u->requests);
    sqlite3_bind_int64(q->put, 4, u->day_start);
    sqlite3_bind_int64(q->put, 5, u->tokens);
    rc = sqlite3_step(q->put);
    sqlite3_reset(q->put);
    cit_db_unlock(q->state);
    return rc == SQLITE_DONE ? 0 : CIT_EIO;
}

int pol_quota_admit(struct pol_quotas *q, const char *tenant, const struct pol_quota *lim,
                    int64_t n_in, int64_t want_out, int64_t now, struct pol_quota_ticket *t)
{
    struct usage *u;
    int rc = 0;
    memset(t, 0, sizeof(*t));
    pthread_mutex_lock(&q->mu);
    if (!(u = find(q, tenant))) {
        rc = CIT_ERANGE;
        snprintf(t->which, sizeof(t->which), "tenants");
        goto out;
    }
    roll(u, now);
    if (lim->concurrent && u->concurrent >= lim->concurrent) {
        snprintf(t->which, sizeof(t->which), "concurrent");
        t->limit = lim->concurrent;
        t->used = u->concurrent;
        t->reset = 0; /* when one of them ends */
        rc = CIT_EOVERFLOW;
        goto out;
    }
    if (lim->requests_per_minute && u->requests >= lim->requests_per_minute) {
        snprintf(t->which, sizeof(t->which), "requests_per_minute");
        t->limit = lim->requests_per_minute;
        t->used = u->requests;
        t->reset = u->minute_start + 60;
        rc = CIT_EOVERFLOW;
        goto out;
    }
    t->out = want_out;
    if (lim->tokens_per_day) {
        int64_t left = lim->tokens_per_day - u->tokens - u->reserved - n_in;
        if (left < 1) { /* not even the prompt and one token fit */
            snprintf(t->which, sizeof(t->which), "tokens_per_day");
            t->limit = lim->tokens_per_day;
            t->used = u->tokens + u->reserved;
            t->reset = u->day_start + 86400;
            rc = CIT_EOVERFLOW;
            goto out;
        }
        if (t->out > left) t->out = left;
    }
    u->requests++;
    u->tokens += n_in; /* the prompt is charged now; the output when it is known */
    u->reserved += t->out;
    u->concurrent++;
    t->in = n_in;
    t->minute = u->minute_start;
    t->day = u->day_start;
    t->admitted = 1;
    if (store(q, u)) {
        /* cannot record the charge: refuse rather than serve uncounted */
        u->requests--;
        u->tokens -= n_in;
        u->reserved -= t->out;
        u->concurrent--;
        t->admitted = 0;
        snprintf(t->which, sizeof(t->which), "state");
        rc = CIT_EIO;
    }
out:
    pthread_mutex_unlock(&q->mu);
    return rc;
}

/* Ends an admitted request: its reservation and its place are released;
 * one that ran is charged for what it generated (in the current day: a
 * request that ran past midnight charges the new one), one that never ran
 * is taken back from the windows it was charged to, unless they rolled
 * over since (they were reset already). */
static void settle(struct pol_quotas *q, const char *tenant, struct pol_quota_ticket *t, int ran,
                   int64_t n_out, int64_t now)
{
    struct usage *u;
    if (!t->admitted) return;
    pthread_mutex_lock(&q->mu);
    if ((u = find(q, tenant))) {
        roll(u, now);
        u->reserved = u->reserved > t->out ? u->reserved - t->out : 0;
        if (u->concurrent > 0) u->concurrent--;
        if (ran) {
            u->tokens += n_out < t->out ? n_out : t->out;
        } else {
            if (u->minute_start == t->minute && u->requests > 0) u->requests--;
            if (u->day_start == t->day) u->tokens = u->tokens > t->in ? u->tokens - t->in : 0;
        }
        if (store(q, u))
            cit_log(CIT_LOG_ERROR, "quota: cannot store the usage of tenant %s", tenant);
    }
    t->admitted = 0;
    pthread_mutex_unlock(&q->mu);
}

void pol_quota_finish(struct pol_quotas *q, const char *tenant, struct pol_quota_ticket *t,
                      int64_t n_out, int64_t now)
{
    settle(q, tenant, t, 1, n_out, now);
}

void pol_quota_cancel(struct pol_quotas *q, const char *tenant, struct pol_quota_ticket *t,
                      int64_t now)
{
    settle(q, tenant, t, 0, 0, now);
}

void pol_quota_usage(struct pol_quotas *q, const char *tenant, int64_t now,
                     struct pol_quota_state *s)
{
    struct usage *u;
    memset(s, 0, sizeof(*s));
    pthread_mutex_lock(&q->mu);
    if ((u = find(q, tenant))) {
        roll(u, now);
        s->requests = u->requests;
        s->minute_reset = u->minute_start + 60;
        s->tokens = u->tokens;
        s->reserved = u->reserved;
        s->day_reset = u->day_start + 86400;
        s->concurrent = u->concurrent;
    }
    pthread_mutex_unlock(&q->mu);
}
