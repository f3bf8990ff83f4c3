/*
 * Cross-checking two ledgers (citadel audit verify --peer-ledger): what
 * one node says crossed to or from a peer against what the peer says.
 *
 * Both ledgers are verified first, so each entry is as its node wrote it;
 * what is left to catch is two nodes telling different stories. Every
 * entry that holds a passport is read once per ledger and sorted by the
 * passport's hash; then each direction (a's forwards to b, b's to a) is
 * checked against the other ledger:
 *
 *   - a receipt by the receiver's key names an entry of the receiver
 *     whose leaf hash it gives and which holds the same passport;
 *   - a passport by the origin's key that the receiver holds is in the
 *     origin's ledger;
 *   - an origin's passport the receiver holds without a receipt at the
 *     origin is reported (the answer broke off, or the receiver refused
 *     it), as are those the receiver never saw (unreachable, or refused at
 *     the handshake): neither is a mismatch.
 *
 * Which of an origin's passports were meant for this receiver is told by
 * the passport's "to" (the origin's name for the peer): a name is the
 * receiver's once one passport to it is in the receiver's ledger or is
 * answered by a receipt the receiver's key signs. Passports and receipts
 * of other peers are counted, not checked: their keys were not given.
 *
 * Retention prunes each ledger on its own schedule. A passport issued no
 * later than the oldest entry a side kept may have had its entry there
 * pruned: it is reported as not compared rather than missing (with
 * SKEW_S of slack for the other node's clock). A receipt naming a pruned
 * entry is checked by its leaf hash alone, which the pruned file keeps.
 *
 * The logs are read whole into memory (ledger_view), twice: once by
 * ledger_verify, once here. Fine for the sizes ledger.md states.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "citadel/gateway.h"

#define MAX_LISTED     8  /* entry numbers listed per line of the report */
#define MAX_MISMATCHES 20 /* mismatches written to the report */
#define MAX_NAMES      16 /* names one origin gives one receiver */
#define PL(n)          ((n) == 1 ? "" : "s")
#define SKEW_S         300 /* how far two nodes' clocks may differ */

enum by { BY_OWN, BY_PEER, BY_OTHER, BY_NONE /* cannot be decoded */ };

/* An entry that holds a passport. */
struct pent {
    uint64_t seq;
    uint8_t hash[32];
    enum by by;          /* who signed the passport, from this ledger's side */
    char to[64], id[33]; /* the passport's (BY_OWN, BY_PEER) */
    int64_t issued;      /* the passport's, unix seconds (BY_OWN, BY_PEER) */
    char tenant[64], action[16];
    int has_receipt, receipt_ok; /* receipt_ok: signed by the other side's key */
    struct gw_receipt r;         /* receipt_ok */
    char receipt_why[160];       /* !receipt_ok: why it did not open */
};

struct side {
    const char *dir;
    struct ledger_vkey vk;
    struct ledger_view v;
    struct pent *e; /* (n) in seq order */
    size_t n;
    size_t *by_hash; /* (n) indices into e, ordered by passport hash */
    /* unix seconds of the oldest entry retention kept; INT64_MIN when
     * nothing was pruned */
    int64_t kept_from_s;
};

struct names {
    char s[MAX_NAMES][64];
    int n;
};

struct check {
    struct cit_buf *report;
    struct cit_buf held; /* this direction's mismatches, written after its counts */
    struct cit_err *err;
    int mismatches;
};

/* ---- reading a ledger's passports ---- */

static void copy_str(json_t *o, const char *key, char *out, size_t cap)
{
    const char *s = json_string_value(json_object_get(o, key));
    size_t n = s ? strlen(s) : 0;
    if (n >= cap) n = cap - 1; /* for the report only: shortening is harmless */
    memcpy(out, s ? s : "", n);
    out[n] = 0;
}

static int cmp_hash(const void *x, const void *y, void *user)
{
    const struct pent *e = user;
    return memcmp(e[*(const size_t *)x].hash, e[*(const size_t *)y].hash, 32);
}

/* Reads the entries of s that hold a passport; peer is the other side's
 * key. */
static int side_load(struct side *s, const struct ledger_vkey *peer, struct cit_err *err)
{
    uint64_t lines = s->v.n - s->v.n_pruned;
    size_t cap = 0;
    s->kept_from_s = INT64_MIN;
    if (s->v.n_pruned) {
        json_t *o = lines ? json_loads(s->v.lines[0], 0, NULL) : NULL;
        const char *t = json_string_value(json_object_get(o, "time"));
        int64_t ms;
        s->kept_from_s = t && !ledger_time_parse(t, &ms) ? ms / 1000 : INT64_MAX;
        json_decref(o);
    }
    for (uint64_t i = 0; i < lines; i++) {
        const char *line = s->v.lines[i], *w;
        json_t *o;
        struct pent *e;
        struct gw_passport p;
        /* a key, not text inside a string, where a quote would be escaped */
        if (!strstr(line, "\"passport\":")) continue;
        if (!(o = json_loads(line, 0, NULL))) continue; /* verify read it; cannot happen */
        if (!(w = json_string_value(json_object_get(o, "passport")))) {
            json_decref(o);
            continue;
        }
        if (s->n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            struct pent *ne = cit_realloc(s->e, nc * sizeof(*ne));
            if (!ne) {
                json_decref(o);
                return cit_err_set(err, CIT_ENOMEM, "out of memory");
            }
            s->e = ne, cap = nc;
        }
        e = &s->e[s->n++];
        memset(e, 0, sizeof(*e));
        e->seq = i + s->v.n_pruned;
        copy_str(o, "tenant", e->tenant, sizeof(e->tenant));
        copy_str(o, "action", e->action, sizeof(e->action));
        if (!gw_passport_open(w, strlen(w), &s->vk, &p, e->hash, NULL))
            e->by = BY_OWN;
        else if (!gw_passport_open(w, strlen(w), peer, &p, e->hash, NULL))
            e->by = BY_PEER;
        else
            e->by = gw_passport_hash(w, strlen(w), e->hash) ? BY_NONE : BY_OTHER;
        if (e->by == BY_OWN || e->by == BY_PEER) {
            memcpy(e->to, p.to, sizeof(e->to));
            memcpy(e->id, p.id, sizeof(e->id));
            e->issued = p.issued;
        }
        if ((w = json_string_value(json_object_get(o, "receipt")))) {
            struct cit_err re = {{0}};
            e->has_receipt = 1;
            e->receipt_ok = !gw_receipt_open(w, strlen(w), peer, &e->r, &re);
            if (!e->receipt_ok)
                snprintf(e->receipt_why, sizeof(e->receipt_why), "%.*s",
                         (int)sizeof(e->receipt_why) - 1, re.msg);
        }
        json_decref(o);
    }
    if (s->n) {
        if (!(s->by_hash = cit_calloc(s->n, sizeof(*s->by_hash))))
            return cit_err_set(err, CIT_ENOMEM, "out of memory");
        for (size_t i = 0; i < s->n; i++) s->by_hash[i] = i;
        qsort_r(s->by_hash, s->n, sizeof(*s->by_hash), cmp_hash, s->e);
    }
    return 0;
}

static void side_free(struct side *s)
{
    cit_free(s->e);
    cit_free(s->by_hash);
    ledger_view_free(&s->v);
}

/* The first entry of s holding the passport with hash h and signed by
 * by (BY_NONE: any), or NULL. */
static const struct pent *find_hash(const struct side *s, const uint8_t h[32], enum by by)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) { /* the first index whose hash is >= h */
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(s->e[s->by_hash[mid]].hash, h, 32) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < s->n && !memcmp(s->e[s->by_hash[lo]].hash, h, 32); lo++)
        if (by == BY_NONE || s->e[s->by_hash[lo]].by == by) return &s->e[s->by_hash[lo]];
    return NULL;
}

/* The entry of s with sequence number seq when it holds a passport. */
static const struct pent *find_seq(const struct side *s, uint64_t seq)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->e[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->n && s->e[lo].seq == seq ? &s->e[lo] : NULL;
}

/* ---- the report ---- */

static void mismatch(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void mismatch(struct check *c, const char *fmt, ...)
{
    char msg[sizeof(c->err->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!c->mismatches) cit_err_set(c->err, CIT_EFORMAT, "%s", msg);
    if (c->mismatches < MAX_MISMATCHES) cit_buf_printf(&c->held, "  MISMATCH: %s\n", msg);
    c->mismatches++;
}

/* Entry numbers, for the report. */
struct listed {
    uint64_t n, seq[MAX_LISTED];
};

static void list_add(struct listed *l, uint64_t seq)
{
    if (l->n < MAX_LISTED) l->seq[l->n] = seq;
    l->n++;
}

/* "  N what: entries 3, 7, ..." (the first MAX_LISTED), when there are any */
static void list_print(struct cit_buf *b, const char *what, const struct listed *l)
{
    if (!l->n) return;
    cit_buf_printf(b, "  %llu %s: entr%s", (unsigned long long)l->n, what, l->n == 1 ? "y" : "ies");
    for (uint64_t i = 0; i < l->n && i < MAX_LISTED; i++)
        cit_buf_printf(b, "%s %llu", i ? "," : "", (unsigned long long)l->seq[i]);
    cit_buf_printf(b, "%s\n", l->n > MAX_LISTED ? ", ..." : "");
}

static int names_has(const struct names *nm, const char *s)
{
    for (int i = 0; i < nm->n; i++)
        if (!strcmp(nm->s[i], s)) return 1;
    return 0;
}

static void names_add(struct names *nm, const char *s)
{
    if (names_has(nm, s) || nm->n == MAX_NAMES) return;
    snprintf(nm->s[nm->n++], sizeof(nm->s[0]), "%s", s);
}

static void names_print(struct cit_buf *b, const struct names *nm)
{
    for (int i = 0; i < nm->n; i++) cit_buf_printf(b, "%s'%s'", i ? ", " : "", nm->s[i]);
}

static void hex16(const uint8_t h[32], char out[17])
{
    sodium_bin2hex(out, 17, h, 8);
}

/* Whether s may have pruned the entry of a passport issued at issued: it
 * is no newer than the oldest entry s kept (skew: the clock of the node
 * that issued it may run ahead). */
static int maybe_pruned(const struct side *s, int64_t issued, int64_t skew)
{
    return s->kept_from_s != INT64_MIN &&
           (s->kept_from_s == INT64_MAX || issued <= s->kept_from_s + skew);
}

/* ---- one direction: x's forwards to y ---- */

static void check_direction(struct check *c, const struct side *x, const struct side *y)
{
    struct names to_y = {0}, y_calls_x = {0};
    struct listed broke = {0}, unseen = {0}, pruned = {0}, gone_y = {0}, gone_x = {0};
    uint64_t sent = 0, answered = 0, to_others = 0, held = 0;
    int pass;
    /* pass 0 learns y's names from what y provably saw; pass 1 sorts the rest */
    for (pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < x->n; i++) {
            const struct pent *e = &x->e[i], *in_y;
            if (e->by != BY_OWN) continue;
            in_y = find_hash(y, e->hash, BY_PEER);
            if (pass == 0) {
                if (in_y || (e->has_receipt && e->receipt_ok)) names_add(&to_y, e->to);
                continue;
            }
            if (!in_y && !(e->has_receipt && e->receipt_ok) && !names_has(&to_y, e->to)) {
                to_others++; /* to another peer: its receipt, if any, is that peer's */
                continue;
            }
            sent++;
            if (in_y) names_add(&y_calls_x, in_y->tenant);
            if (e->has_receipt && !e->receipt_ok) {
                mismatch(
                    c, "entry %llu of %s: its receipt from '%s' does not verify with %s's key: %s",
                    (unsigned long long)e->seq, x->dir, e->to, y->dir, e->receipt_why);
                continue;
            }
            if (!e->has_receipt) {
                if (in_y)
                    list_add(&broke, e->seq);
                else if (maybe_pruned(y, e->issued, SKEW_S))
                    list_add(&gone_y, e->seq);
                else
                    list_add(&unseen, e->seq);
                continue;
            }
            {
                const struct gw_receipt *r = &e->r;
                char want[65], h1[17], h2[17];
                const struct pent *at;
                sodium_bin2hex(want, sizeof(want), e->hash, 32);
                if (strcmp(r->passport, want)) {
                    mismatch(c,
                             "entry %llu of %s: its receipt is for another passport (%.16s..., "
                             "not %.16s...)",
                             (unsigned long long)e->seq, x->dir, r->passport, want);
                    continue;
                }
                if (r->seq >= y->v.n) {
                    mismatch(c,
                             "entry %llu of %s: its receipt names entry %llu of %s, which has %llu "
                             "entries",
                             (unsigned long long)e->seq, x->dir, (unsigned long long)r->seq, y->dir,
                             (unsigned long long)y->v.n);
                    continue;
                }
                if (sodium_memcmp(r->leaf, y->v.leaves[r->seq], 32)) {
                    hex16(r->leaf, h1);
                    hex16(y->v.leaves[r->seq], h2);
                    mismatch(c,
                             "entry %llu of %s: its receipt gives entry %llu of %s the leaf hash "
                             "%s..., but that entry's is %s...",
                             (unsigned long long)e->seq, x->dir, (unsigned long long)r->seq, y->dir,
                             h1, h2);
                    continue;
                }
                if (r->seq < y->v.n_pruned) { /* its leaf matched; its text is gone */
                    list_add(&pruned, e->seq);
                    answered++;
                    continue;
                }
                at = find_seq(y, r->seq);
                if (!at || memcmp(at->hash, e->hash, 32)) {
                    mismatch(c,
                             "entry %llu of %s: its receipt names entry %llu of %s, which holds %s",
                             (unsigned long long)e->seq, x->dir, (unsigned long long)r->seq, y->dir,
                             at ? "another passport" : "no passport");
                    continue;
                }
                names_add(&y_calls_x, at->tenant);
                answered++;
            }
        }
    /* what y holds from x must be in x */
    for (size_t i = 0; i < y->n; i++) {
        const struct pent *e = &y->e[i];
        if (e->by != BY_PEER) continue;
        held++;
        if (find_hash(x, e->hash, BY_OWN)) continue;
        if (maybe_pruned(x, e->issued, 1))
            list_add(&gone_x, e->seq);
        else
            mismatch(c,
                     "entry %llu of %s holds a passport signed by %s's key that %s's ledger lacks "
                     "(id %s)",
                     (unsigned long long)e->seq, y->dir, x->dir, x->dir, e->id);
    }

    cit_buf_printf(c->report, "forwards from %s (the origin) to %s (the peer):\n", x->dir, y->dir);
    if (to_y.n) {
        cit_buf_printf(c->report, "  the origin calls the peer ");
        names_print(c->report, &to_y);
        if (y_calls_x.n) {
            cit_buf_printf(c->report, "; the peer calls the origin ");
            names_print(c->report, &y_calls_x);
        }
        cit_buf_printf(c->report, "\n");
    }
    cit_buf_printf(c->report, "  %llu passport%s sent, %llu answered with receipts that match\n",
                   (unsigned long long)sent, PL(sent), (unsigned long long)answered);
    list_print(c->report,
               "of those receipts name entries the peer pruned (their leaf hashes match; their "
               "text is gone)",
               &pruned);
    list_print(c->report,
               "without a receipt though the peer holds the passport (the answer broke off, or "
               "the peer refused it)",
               &broke);
    list_print(c->report, "the peer never recorded (unreachable, or refused at the handshake)",
               &unseen);
    list_print(c->report, "issued before the oldest entry the peer kept (retention): not compared",
               &gone_y);
    cit_buf_printf(c->report, "  %llu passport%s in the peer's ledger signed by the origin's key\n",
                   (unsigned long long)held, PL(held));
    list_print(c->report,
               "of those issued before the oldest entry the origin kept (retention): not compared",
               &gone_x);
    if (to_others)
        cit_buf_printf(c->report, "  %llu passport%s sent to other peers (not checked)\n",
                       (unsigned long long)to_others, PL(to_others));
    if (c->held.len) cit_buf_add(c->report, c->held.p, c->held.len);
    c->held.len = 0;
}

/* Counts what neither key signed. */
static void others(struct check *c, const struct side *s)
{
    uint64_t other = 0, unreadable = 0, receipts = 0;
    for (size_t i = 0; i < s->n; i++) {
        other += s->e[i].by == BY_OTHER;
        unreadable += s->e[i].by == BY_NONE;
        receipts += s->e[i].has_receipt && s->e[i].by != BY_OWN;
    }
    if (other)
        cit_buf_printf(c->report, "%s: %llu passport%s of other peers (not checked)\n", s->dir,
                       (unsigned long long)other, PL(other));
    if (unreadable)
        cit_buf_printf(c->report,
                       "%s: %llu passport%s that cannot be decoded (refused at the door)\n", s->dir,
                       (unsigned long long)unreadable, PL(unreadable));
    if (receipts)
        cit_buf_printf(c->report, "%s: %llu receipt%s on passports not its own (not checked)\n",
                       s->dir, (unsigned long long)receipts, PL(receipts));
}

/* ---- the whole check ---- */

static int key_of(const char *dir, const char *text, struct ledger_vkey *vk, struct cit_err *err)
{
    struct cit_buf kb = {0};
    char path[1200];
    int rc;
    if (!text) {
        snprintf(path, sizeof(path), "%s/node.vkey", dir);
        if ((rc = cit_read_file(path, 4096, &kb, err))) {
            if (rc == CIT_ENOENT) cit_err_set(err, rc, "%s: no such file", path);
            return rc;
        }
        text = kb.p;
    }
    rc = ledger_vkey_parse(text, strlen(text), vk, err);
    cit_buf_free(&kb);
    return rc;
}

int gw_crosscheck(const char *a, const char *vk_a, const char *b, const char *vk_b,
                  struct cit_buf *report, struct cit_err *err)
{
    struct side sa = {0}, sb = {0};
    struct check c = {report, {0}, err, 0};
    int rc;
    if (!a || !b || !vk_b)
        return cit_err_set(err, CIT_EINVAL,
                           "cross-check: both ledgers and the peer's key are needed");
    sa.dir = a, sb.dir = b;
    if ((rc = key_of(a, vk_a, &sa.vk, err)) || (rc = key_of(b, vk_b, &sb.vk, err))) goto out;
    if (!memcmp(sa.vk.pk, sb.vk.pk, 32)) {
        rc = cit_err_set(err, CIT_EINVAL, "cross-check: %s and %s have the same key", a, b);
        goto out;
    }
    /* each ledger sound on its own first */
    if ((rc = ledger_verify(a, vk_a, report, err)) || (rc = ledger_verify(b, vk_b, report, err)))
        goto out;
    if ((rc = ledger_view_open(a, &sa.v, err)) || (rc = ledger_view_open(b, &sb.v, err)) ||
        (rc = side_load(&sa, &sb.vk, err)) || (rc = side_load(&sb, &sa.vk, err)))
        goto out;
    check_direction(&c, &sa, &sb);
    check_direction(&c, &sb, &sa);
    others(&c, &sa);
    others(&c, &sb);
    if (c.mismatches) {
        if (c.mismatches > MAX_MISMATCHES)
            cit_buf_printf(report, "  ... and %d more mismatches\n", c.mismatches - MAX_MISMATCHES);
        cit_buf_printf(report, "cross-check: FAILED, %d mismatch%s\n", c.mismatches,
                       c.mismatches == 1 ? "" : "es");
        rc = CIT_EFORMAT;
    } else
        cit_buf_printf(report, "cross-check: OK, the two ledgers agree on what crossed\n");
out:
    cit_buf_free(&c.held);
    side_free(&sa);
    side_free(&sb);
    return rc;
}
