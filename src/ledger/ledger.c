/*
 * The append-only log: appends with group commit, checkpoints, recovery on
 * open, retention, and the read-only view the audit tools use.
 *
 * Invariants, all kept under l->mu:
 *   - the file holds exactly range.n - n_pruned complete lines, in seq order;
 *     l->written is its length;
 *   - l->synced <= l->written is what fdatasync has covered;
 *   - head_size <= range.n entries are under the newest signed head, all of
 *     them synced; an append returns once head_size covers it;
 *   - last is the leaf hash of entry range.n - 1 (zeros when empty).
 * An append writes its line while holding mu, so file order is seq order,
 * and a second writer cannot interleave. Hashing and formatting of the
 * caller's fields happen before the lock is taken.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ledger_int.h"

#define DEFAULT_ORIGIN "citadel/ledger"
#define READ_CHUNK     (1u << 20)

/* The head: the latest signed checkpoint, covering every entry an append
 * has returned. Two fixed slots, written in turn, so that a write torn by
 * a crash leaves the other, one commit older, intact. */
#define HEAD_SLOT 1024

struct ledger {
    char dir[1024];
    int fd, cp_fd, head_fd;
    int lock_fd; /* flock'd: one process appends at a time */
    struct ledger_skey key;
    char *vkey_text;
    int checkpoint_s;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* a sync finished; the committer's timer */
    struct ledger_range range;
    uint8_t last[LEDGER_HASH];
    uint64_t n_pruned;
    off_t written, synced;
    int committing, broken, stop;
    int head_slot;       /* the slot the next commit writes (the committer's) */
    uint64_t head_size;  /* entries the newest head covers */
    struct cit_buf line; /* the line being appended */
    void (*on_checkpoint)(void *user, const struct ledger_checkpoint *cp, const char *note);
    void *cp_user;

    pthread_mutex_t cp_mu; /* one checkpoint at a time */
    uint64_t cp_size;
    uint64_t cp_at_ns;
    pthread_t th;
    int th_started;
};

/* ---- small pieces ---- */

void ledger_range_push(struct ledger_range *r, const uint8_t leaf[LEDGER_HASH])
{
    uint8_t h[LEDGER_HASH];
    memcpy(h, leaf, LEDGER_HASH);
    /* each trailing 1 bit of n is a perfect subtree that the new leaf completes */
    for (uint64_t n = r->n; n & 1; n >>= 1) ledger_node_hash(r->h[--r->k], h, h);
    memcpy(r->h[r->k++], h, LEDGER_HASH);
    r->n++;
}

void ledger_range_root(const struct ledger_range *r, uint8_t out[LEDGER_HASH])
{
    uint8_t h[LEDGER_HASH];
    if (r->k == 0) {
        ledger_root(NULL, 0, out);
        return;
    }
    memcpy(h, r->h[r->k - 1], LEDGER_HASH);
    for (int i = r->k - 2; i >= 0; i--) ledger_node_hash(r->h[i], h, h);
    memcpy(out, h, LEDGER_HASH);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ledger_time_str(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char tmp[96]; /* room for any int the compiler imagines */
    gmtime_r(&t, &tm);
    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    snprintf(out, 32, "%.31s", tmp);
}

int ledger_time_parse(const char *s, int64_t *ms)
{
    struct tm tm = {0};
    int y, mo, d, h, mi, se, milli;
    char z;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &d, &h, &mi, &se, &milli, &z) != 8 ||
        z != 'Z' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    *ms = (int64_t)timegm(&tm) * 1000 + milli;
    return 0;
}

static int is_hex64(const char *s)
{
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

int ledger_entry_check(const char *line, size_t len, uint64_t seq, const uint8_t prev[LEDGER_HASH],
                       int64_t *time_ms, char *why, size_t why_cap)
{
    char head[64], ts[32], hex[65];
    int hl = snprintf(head, sizeof(head), "{\"seq\":%llu,\"time\":\"", (unsigned long long)seq);
    static const char tail[] = ",\"prev\":\"";
    size_t tl = sizeof(tail) - 1;
    if (len < (size_t)hl + 25 + tl + 66 || memcmp(line, head, (size_t)hl)) {
        snprintf(why, why_cap, "does not start with {\"seq\":%llu,\"time\":...",
                 (unsigned long long)seq);
        return CIT_EFORMAT;
    }
    memcpy(ts, line + hl, 24);
    ts[24] = 0;
    if (line[hl + 24] != '"' || ledger_time_parse(ts, time_ms)) {
        snprintf(why, why_cap, "its time is not YYYY-MM-DDTHH:MM:SS.mmmZ");
        return CIT_EFORMAT;
    }
    if (memcmp(line + len - tl - 66, tail, tl) || line[len - 2] != '"' || line[len - 1] != '}' ||
        !is_hex64(line + len - 66)) {
        snprintf(why, why_cap, "does not end with ,\"prev\":\"<64 hex>\"}");
        return CIT_EFORMAT;
    }
    sodium_bin2hex(hex, sizeof(hex), prev, LEDGER_HASH);
    if (memcmp(line + len - 66, hex, 64)) {
        snprintf(why, why_cap,
                 "its prev is not the hash of entry %llu: that entry or this one "
                 "was altered",
                 (unsigned long long)(seq ? seq - 1 : 0));
        return CIT_EINVAL;
    }
    return 0;
}

/* ---- reading a ledger directory ---- */

/* Calls fn for every complete line of dir/log, in order, with its byte
 * offset. *end is the offset after the last complete line; *torn is 1 when
 * bytes without a newline follow it. */
typedef int (*line_fn)(void *u, const char *line, size_t n, off_t off);

static int scan_lines(int fd, const char *path, line_fn fn, void *u, off_t *end, int *torn,
                      struct cit_err *err)
{
    char *buf = cit_malloc(READ_CHUNK + LEDGER_MAX_ENTRY + 1);
    size_t have = 0;
    off_t base = 0; /* file offset of buf[0] */
    int rc = 0;
    if (!buf) return cit_err_set(err, CIT_ENOMEM, "out of memory");
    for (;;) {
        ssize_t r = pread(fd, buf + have, READ_CHUNK, base + (off_t)have);
        size_t start = 0;
        if (r < 0) {
            rc = cit_err_set(err, CIT_EIO, "%s: %s", path, strerror(errno));
            break;
        }
        have += (size_t)r;
        for (;;) {
            char *nl = memchr(buf + start, '\n', have - start);
            if (!nl) break;
            if ((rc = fn(u, buf + start, (size_t)(nl - buf - (ptrdiff_t)start),
                         base + (off_t)start)))
                goto out;
            start = (size_t)(nl - buf) + 1;
        }
        memmove(buf, buf + start, have - start);
        base += (off_t)start;
        have -= start;
        if (r == 0) break;
        if (have > LEDGER_MAX_ENTRY) {
            rc = cit_err_set(err, CIT_EFORMAT, "%s: byte %lld: a line longer than %u bytes", path,
                             (long long)base, LEDGER_MAX_ENTRY);
            break;
        }
    }
out:
    *end = base;
    *torn = have > 0;
    cit_free(buf);
    return rc;
}

static int read_pruned(const char *dir, uint8_t (**out)[LEDGER_HASH], uint64_t *n,
                       struct cit_err *err)
{
    char path[1200];
    struct cit_buf b = {0};
    int rc;
    snprintf(path, sizeof(path), "%s/pruned", dir);
    *out = NULL;
    *n = 0;
    rc = cit_read_file(path, (size_t)1 << 36, &b, err);
    if (rc == CIT_ENOENT) return 0;
    if (rc) return rc;
    if (b.len % LEDGER_HASH) {
        cit_buf_free(&b);
        return cit_err_set(err, CIT_EFORMAT, "%s: %zu bytes is not a whole number of hashes", path,
                           b.len);
    }
    *out = (uint8_t(*)[LEDGER_HASH])(void *)b.p;
    *n = b.len / LEDGER_HASH;
    return 0;
}

/* What open and view both need from the log: checks each line and keeps
 * the tree; view also keeps the lines and leaves. */
struct walk {
    const char *path;
    uint64_t seq; /* next expected */
    uint8_t prev[LEDGER_HASH];
    struct ledger_range range;
    const uint8_t (*pruned)[LEDGER_HASH];
    uint64_t n_pruned, skipped;
    struct want {
        uint64_t size; /* record the tree, its root, and the entry's end at this size */
        uint8_t root[LEDGER_HASH];
        struct ledger_range range;
        uint8_t prev[LEDGER_HASH]; /* the leaf hash of entry size - 1 */
        off_t end;
        int have;
    } want[3];
    int64_t cutoff_ms; /* retention: count leading entries older than this */
    uint64_t n_old;
    off_t old_end;
    int old_done, collect_old;
    uint8_t (*old)[LEDGER_HASH]; /* collect_old: the leaf hashes of those entries */
    int64_t recent_ms;           /* on_recent gets the entries from this time on */
    void (*on_recent)(void *user, const char *line, size_t len);
    void *user;
    struct ledger_view *view; /* NULL when only checking */
    uint64_t cap;             /* of view->lines */
    struct cit_err *err;
};

static int walk_line(void *u, const char *line, size_t n, off_t off)
{
    struct walk *w = u;
    uint8_t leaf[LEDGER_HASH];
    int64_t t;
    char why[160];
    ledger_leaf_hash(line, n, leaf);
    /* after a crash inside a prune, the log may still hold entries that
     * moved to pruned: they must match their hashes there */
    if (w->seq == w->n_pruned && w->n_pruned) {
        unsigned long long q = 0;
        size_t i = 7;
        int nd = 0;
        while (n > 7 && !memcmp(line, "{\"seq\":", 7) && i < n && nd < 19 && line[i] >= '0' &&
               line[i] <= '9')
            q = q * 10 + (unsigned)(line[i++] - '0'), nd++;
        if (nd && q < w->n_pruned) {
            if (memcmp(leaf, w->pruned[q], LEDGER_HASH))
                return cit_err_set(w->err, CIT_EFORMAT,
                                   "%s: byte %lld: entry %llu differs from its hash in pruned",
                                   w->path, (long long)off, q);
            w->skipped++;
            if (!w->old_done) w->old_end = off + (off_t)n + 1; /* prune drops them */
            return 0;
        }
    }
    int rc = ledger_entry_check(line, n, w->seq, w->prev, &t, why, sizeof(why));
    /* the view goes on past a broken chain so that verify can tell which
     * of the two entries was altered */
    if (rc == CIT_EINVAL && w->view) {
        if (w->view->chain_break == UINT64_MAX) w->view->chain_break = w->seq;
    } else if (rc) {
        return cit_err_set(w->err, CIT_EFORMAT, "%s: byte %lld: entry %llu %s", w->path,
                           (long long)off, (unsigned long long)w->seq, why);
    }
    if (w->on_recent && t >= w->recent_ms) w->on_recent(w->user, line, n);
    if (!w->old_done) {
        if (t < w->cutoff_ms) {
            if (w->collect_old) {
                void *no = cit_realloc(w->old, (w->n_old + 1) * LEDGER_HASH);
                if (!no) return cit_err_set(w->err, CIT_ENOMEM, "out of memory");
                w->old = no;
                memcpy(w->old[w->n_old], leaf, LEDGER_HASH);
            }
            w->n_old++;
            w->old_end = off + (off_t)n + 1;
        } else {
            w->old_done = 1;
        }
    }
    if (w->view) {
        struct ledger_view *v = w->view;
        uint64_t i = w->seq - v->n_pruned;
        if (i == w->cap) { /* grow both arrays by doubling */
            uint64_t cap = w->cap ? w->cap * 2 : 1024;
            void *nl = cit_realloc(v->lines, cap * sizeof(char *));
            void *nh;
            if (!nl) return cit_err_set(w->err, CIT_ENOMEM, "out of memory");
            v->lines = nl;
            nh = cit_realloc(v->leaves, (v->n_pruned + cap) * LEDGER_HASH);
            if (!nh) return cit_err_set(w->err, CIT_ENOMEM, "out of memory");
            v->leaves = nh;
            w->cap = cap;
        }
        if (!(v->lines[i] = cit_strndup(line, n)))
            return cit_err_set(w->err, CIT_ENOMEM, "out of memory");
        memcpy(v->leaves[w->seq], leaf, LEDGER_HASH);
        v->n = w->seq + 1;
    }
    ledger_range_push(&w->range, leaf);
    memcpy(w->prev, leaf, LEDGER_HASH);
    w->seq++;
    for (int i = 0; i < 3; i++)
        if (w->seq == w->want[i].size) {
            ledger_range_root(&w->range, w->want[i].root);
            w->want[i].range = w->range;
            memcpy(w->want[i].prev, leaf, LEDGER_HASH);
            w->want[i].end = off + (off_t)n + 1;
            w->want[i].have = 1;
        }
    return 0;
}

/* Loads dir/pruned into w and sets it up to walk the log (path) from the
 * first entry after them. */
static int walk_start(struct walk *w, const char *dir, const char *path, struct cit_err *err)
{
    int rc = read_pruned(dir, (uint8_t(**)[LEDGER_HASH]) & w->pruned, &w->n_pruned, err);
    if (rc) return rc;
    if (w->n_pruned) memcpy(w->prev, w->pruned[w->n_pruned - 1], LEDGER_HASH);
    w->path = path;
    w->seq = w->n_pruned;
    w->cutoff_ms = INT64_MIN;
    w->err = err;
    return 0;
}

/* Reads dir/checkpoints, verifying each against vk (signature, origin, a
 * tree that never shrinks); cp gets the latest (size 0 when none), and
 * *all (when all is not NULL) every one, *n_all of them, to be freed with
 * cit_free. *good_end is the length of the well-formed part; a torn last
 * note (no final newline, as a crash mid-write leaves) is allowed when
 * allow_torn. */
static int read_checkpoints(const char *dir, const struct ledger_vkey *vk, int allow_torn,
                            struct ledger_checkpoint *cp, size_t *good_end,
                            struct ledger_checkpoint **all, uint64_t *n_all, struct cit_err *err)
{
    char path[1200];
    struct cit_buf b = {0};
    struct ledger_checkpoint *list = NULL;
    uint64_t n = 0;
    size_t off = 0;
    int rc;
    memset(cp, 0, sizeof(*cp));
    *good_end = 0;
    if (all) *all = NULL, *n_all = 0;
    snprintf(path, sizeof(path), "%s/checkpoints", dir);
    rc = cit_read_file(path, (size_t)1 << 32, &b, err);
    if (rc == CIT_ENOENT) return 0;
    if (rc) return rc;
    while (off < b.len) {
        struct ledger_checkpoint c;
        size_t used;
        struct cit_err e2 = {0};
        if ((rc = ledger_checkpoint_open(b.p + off, b.len - off, vk, &c, &used, &e2))) {
            if (allow_torn && b.p[b.len - 1] != '\n') break;
            rc = cit_err_set(err, CIT_EFORMAT, "%s: checkpoint %llu (byte %zu): %s", path,
                             (unsigned long long)n + 1, off, e2.msg);
            goto out;
        }
        if (strcmp(c.origin, vk->name)) {
            rc = cit_err_set(err, CIT_EFORMAT,
                             "%s: checkpoint %llu (byte %zu): origin '%s' is not the key's '%s'",
                             path, (unsigned long long)n + 1, off, c.origin, vk->name);
            goto out;
        }
        if (c.size < cp->size) {
            rc = cit_err_set(err, CIT_EFORMAT,
                             "%s: checkpoint %llu (byte %zu): the tree shrank from %llu to %llu",
                             path, (unsigned long long)n + 1, off, (unsigned long long)cp->size,
                             (unsigned long long)c.size);
            goto out;
        }
        if (all && (n & (n - 1)) == 0) { /* grow at powers of two */
            void *nl = cit_realloc(list, (n ? n * 2 : 1) * sizeof(*list));
            if (!nl) {
                rc = cit_err_set(err, CIT_ENOMEM, "out of memory");
                goto out;
            }
            list = nl;
        }
        if (all) list[n] = c;
        n++;
        *cp = c;
        off += used;
        *good_end = off;
    }
    rc = 0;
    if (all) *all = list, *n_all = n, list = NULL;
out:
    cit_free(list);
    cit_buf_free(&b);
    return rc;
}

/* ---- retention ---- */

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;
    if (fd < 0) return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

static int copy_range(int from, off_t off, off_t end, int to)
{
    char buf[65536];
    while (off < end) {
        size_t want = (size_t)(end - off) < sizeof(buf) ? (size_t)(end - off) : sizeof(buf);
        ssize_t r = pread(from, buf, want, off);
        if (r <= 0 || write_all(to, buf, (size_t)r)) return -1;
        off += r;
    }
    return 0;
}

int ledger_prune(const char *dir, int64_t cutoff_ms, uint64_t *n_removed, struct cit_err *err)
{
    char path[1200], pnew[1200], lnew[1200], pcur[1200];
    struct walk w = {0};
    off_t end;
    int torn, fd, pfd = -1, lfd = -1, rc;
    struct stat st;
    *n_removed = 0;
    snprintf(path, sizeof(path), "%s/log", dir);
    snprintf(pcur, sizeof(pcur), "%s/pruned", dir);
    snprintf(pnew, sizeof(pnew), "%s/pruned.new", dir);
    snprintf(lnew, sizeof(lnew), "%s/log.new", dir);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        if (errno == ENOENT) return 0;
        return cit_err_set(err, CIT_EIO, "%s: %s", path, strerror(errno));
    }
    if ((rc = walk_start(&w, dir, path, err))) {
        close(fd);
        return rc;
    }
    w.cutoff_ms = cutoff_ms;
    w.collect_old = 1;
    rc = scan_lines(fd, path, walk_line, &w, &end, &torn, err);
    if (rc || (w.n_old == 0 && w.skipped == 0)) goto done;
    /* pruned.new = pruned + the hashes of the old entries; log.new = the rest */
    if ((pfd = open(pnew, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 ||
        (lfd = open(lnew, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
        rc = cit_err_set(err, CIT_EIO, "%s: %s", dir, strerror(errno));
        goto done;
    }
    if ((w.n_pruned && write_all(pfd, w.pruned, w.n_pruned * LEDGER_HASH)) ||
        write_all(pfd, w.old, w.n_old * LEDGER_HASH) || copy_range(fd, w.old_end, end, lfd) ||
        fsync(pfd) || fsync(lfd)) {
        rc = cit_err_set(err, CIT_EIO, "%s: writing the pruned log failed", dir);
        goto done;
    }
    if (fstat(fd, &st) == 0) fchmod(lfd, st.st_mode & 07777);
    /* the order makes a crash between the renames recoverable: the log
     * still holds the moved entries, which walk_line skips by hash */
    if (rename(pnew, pcur) || sync_dir(dir) || rename(lnew, path) || sync_dir(dir)) {
        rc = cit_err_set(err, CIT_EIO, "%s: renaming the pruned log failed: %s", dir,
                         strerror(errno));
        goto done;
    }
    *n_removed = w.n_old;
done:
    if (pfd >= 0) close(pfd);
    if (lfd >= 0) close(lfd);
    if (rc) {
        unlink(pnew);
        unlink(lnew);
    }
    close(fd);
    cit_free((void *)w.pruned);
    cit_free(w.old);
    return rc;
}

/* ---- the live log ---- */

/* Writes cp's signed note into the head's next slot (committer only). */
static int write_head(struct ledger *l, const struct ledger_checkpoint *cp)
{
    char slot[HEAD_SLOT] = {0};
    struct cit_buf b = {0};
    int rc = 0;
    if (ledger_checkpoint_sign(&l->key, cp, &b) || !b.p || b.len >= HEAD_SLOT)
        rc = CIT_ENOMEM;
    else
        memcpy(slot, b.p, b.len);
    cit_buf_free(&b);
    if (!rc && pwrite(l->head_fd, slot, HEAD_SLOT, (off_t)l->head_slot * HEAD_SLOT) != HEAD_SLOT)
        rc = CIT_EIO;
    if (!rc) l->head_slot ^= 1;
    return rc;
}

/* mu held. Returns once a signed head covers the first n entries. Whoever
 * finds no commit running syncs the log, signs the tree as it stands and
 * writes the head; appends that come meanwhile wait for the next one, so a
 * group shares one fdatasync and one signature. The log is synced before
 * the head is written: a head never covers entries a power loss could
 * take (it need not be synced itself: a lost head leaves the older slot). */
static int commit(struct ledger *l, uint64_t n)
{
    while (l->head_size < n) {
        if (l->broken) return CIT_EIO;
        if (!l->committing) {
            struct ledger_checkpoint cp = {0};
            off_t target = l->written;
            int rc;
            l->committing = 1;
            snprintf(cp.origin, sizeof(cp.origin), "%s", l->key.vk.name);
            cp.size = l->range.n;
            ledger_range_root(&l->range, cp.root);
            memcpy(cp.last_leaf, l->last, LEDGER_HASH);
            cp.has_last_leaf = cp.size > 0;
            pthread_mutex_unlock(&l->mu);
            rc = fdatasync(l->fd) ? CIT_EIO : write_head(l, &cp);
            pthread_mutex_lock(&l->mu);
            l->committing = 0;
            if (rc)
                l->broken = 1; /* after a failed fsync the page cache state is unknown */
            else
                l->synced = target, l->head_size = cp.size;
            pthread_cond_broadcast(&l->cv);
            if (rc) return rc;
        } else {
            pthread_cond_wait(&l->cv, &l->mu);
        }
    }
    return 0;
}

static int checkpoint_locked(struct ledger *l, struct cit_err *err)
{
    /* cp_mu held, not mu */
    struct ledger_checkpoint cp = {0};
    struct cit_buf b = {0};
    int rc;
    pthread_mutex_lock(&l->mu);
    cp.size = l->range.n;
    ledger_range_root(&l->range, cp.root);
    memcpy(cp.last_leaf, l->last, LEDGER_HASH);
    cp.has_last_leaf = cp.size > 0;
    /* a checkpoint may only cover entries already on disk and in the head */
    rc = commit(l, cp.size);
    pthread_mutex_unlock(&l->mu);
    if (rc) return cit_err_set(err, rc, "%s: the commit (fdatasync and head) failed", l->dir);
    if (cp.size == l->cp_size && l->cp_at_ns) return 0;
    snprintf(cp.origin, sizeof(cp.origin), "%s", l->key.vk.name);
    if (ledger_checkpoint_sign(&l->key, &cp, &b) || !b.p) {
        cit_buf_free(&b);
        return cit_err_set(err, CIT_ENOMEM, "out of memory");
    }
    if (write_all(l->cp_fd, b.p, b.len) || fdatasync(l->cp_fd)) {
        cit_buf_free(&b);
        return cit_err_set(err, CIT_EIO, "%s/checkpoints: %s", l->dir, strerror(errno));
    }
    l->cp_size = cp.size;
    l->cp_at_ns = cit_now_ns();
    /* a second place for it, outside the directory: rollback resistance */
    if (l->on_checkpoint) l->on_checkpoint(l->cp_user, &cp, b.p);
    cit_buf_free(&b);
    return 0;
}

int ledger_checkpoint(struct ledger *l, struct cit_err *err)
{
    int rc;
    pthread_mutex_lock(&l->cp_mu);
    rc = checkpoint_locked(l, err);
    pthread_mutex_unlock(&l->cp_mu);
    return rc;
}

/* The background thread: a checkpoint into the history every checkpoint_s
 * seconds when the log grew (appends commit themselves). */
static void *committer(void *arg)
{
    struct ledger *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += l->checkpoint_s > 0 ? 1 : 3600;
        pthread_cond_timedwait(&l->cv, &l->mu, &ts);
        if (l->stop) break;
        if (l->checkpoint_s > 0 && l->range.n > l->cp_size && !l->broken &&
            cit_now_ns() - l->cp_at_ns >= (uint64_t)l->checkpoint_s * 1000000000ull) {
            struct cit_err e = {0};
            pthread_mutex_unlock(&l->mu);
            if (ledger_checkpoint(l, &e))
                cit_log(CIT_LOG_ERROR, "ledger: checkpoint failed: %s", e.msg);
            pthread_mutex_lock(&l->mu);
        }
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Reads dir/head: *cp the newest valid slot (signed by vk), *have 0 when
 * there is no head file (a new ledger, or one an older citadel wrote),
 * *next_slot the slot the next commit writes (the other one). A head file
 * with no valid slot is an error: a torn write spoils one slot only. */
static int read_head(const char *dir, const struct ledger_vkey *vk, struct ledger_checkpoint *cp,
                     int *have, int *next_slot, struct cit_buf *note, struct cit_err *err)
{
    char path[1200];
    struct cit_buf b = {0};
    int rc, best = -1;
    memset(cp, 0, sizeof(*cp));
    *have = 0;
    *next_slot = 0;
    snprintf(path, sizeof(path), "%s/head", dir);
    rc = cit_read_file(path, 4 * HEAD_SLOT, &b, err);
    if (rc == CIT_ENOENT) return 0;
    if (rc) return rc;
    for (int s = 0; s < 2 && (size_t)s * HEAD_SLOT < b.len; s++) {
        const char *t = b.p + (size_t)s * HEAD_SLOT;
        size_t room = b.len - (size_t)s * HEAD_SLOT, n;
        struct ledger_checkpoint c;
        size_t used;
        if (room > HEAD_SLOT) room = HEAD_SLOT;
        n = strnlen(t, room);
        if (ledger_checkpoint_open(t, n, vk, &c, &used, NULL) || strcmp(c.origin, vk->name))
            continue;
        if (best < 0 || c.size > cp->size) {
            *cp = c, best = s;
            if (note) {
                note->len = 0;
                if (cit_buf_add(note, t, used) || cit_buf_add(note, "", 1)) {
                    cit_buf_free(&b);
                    return cit_err_set(err, CIT_ENOMEM, "out of memory");
                }
                note->len--;
            }
        }
    }
    cit_buf_free(&b);
    if (best < 0)
        return cit_err_set(err, CIT_EFORMAT,
                           "%s: no slot holds a checkpoint signed by %s: the head was damaged or "
                           "forged; run citadel audit verify",
                           path, vk->name);
    *have = 1;
    *next_slot = best ^ 1;
    return 0;
}

/* Moves log bytes [cut, end) to dir/unacknowledged (appended, synced) and
 * cuts the log at cut. */
static int move_aside(struct ledger *l, off_t cut, off_t end, struct cit_err *err)
{
    char path[1200];
    int fd;
    snprintf(path, sizeof(path), "%s/unacknowledged", l->dir);
    if ((fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) < 0)
        return cit_err_set(err, CIT_EIO, "%s: %s", path, strerror(errno));
    if (copy_range(l->fd, cut, end, fd) || fdatasync(fd)) {
        close(fd);
        return cit_err_set(err, CIT_EIO, "%s: %s", path, strerror(errno));
    }
    close(fd);
    if (ftruncate(l->fd, cut) || fdatasync(l->fd))
        return cit_err_set(err, CIT_EIO, "%s/log: %s", l->dir, strerror(errno));
    return 0;
}

static int ensure_dir(const char *dir, struct cit_err *err)
{
    struct stat st;
    if (!stat(dir, &st)) {
        if (!S_ISDIR(st.st_mode)) return cit_err_set(err, CIT_EINVAL, "%s: not a directory", dir);
        return 0;
    }
    if (mkdir(dir, 0700) && errno != EEXIST)
        return cit_err_set(err, CIT_EIO, "%s: %s", dir, strerror(errno));
    return 0;
}

int ledger_open(const struct ledger_opts *o, struct ledger **out, struct cit_err *err)
{
    struct ledger *l;
    struct walk w = {0};
    struct ledger_checkpoint cp;
    struct cit_buf vb = {0};
    char path[1200];
    struct ledger_checkpoint head = {0}, floor = {0};
    size_t cp_end;
    off_t end;
    int torn, rc, have_history, have_head = 0, have_floor = 0, key_created;
    char recovered[300] = "";

    if (!o->dir || !o->dir[0]) return cit_err_set(err, CIT_EINVAL, "ledger: no directory given");
    if (strlen(o->dir) >= sizeof(l->dir))
        return cit_err_set(err, CIT_EINVAL, "ledger: directory name too long");
    if (o->retention_days && o->retention_days < LEDGER_MIN_RETENTION)
        return cit_err_set(err, CIT_ERANGE,
                           "ledger retention %d days is below the minimum of %d (six months); "
                           "use 0 to keep everything",
                           o->retention_days, LEDGER_MIN_RETENTION);
    if ((rc = ensure_dir(o->dir, err))) return rc;
    if (!(l = cit_calloc(1, sizeof(*l)))) return cit_err_set(err, CIT_ENOMEM, "out of memory");
    snprintf(l->dir, sizeof(l->dir), "%s", o->dir);
    l->fd = l->cp_fd = l->head_fd = -1;
    snprintf(path, sizeof(path), "%s/lock", l->dir);
    if ((l->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0 ||
        flock(l->lock_fd, LOCK_EX | LOCK_NB)) {
        int busy = l->lock_fd >= 0 && errno == EWOULDBLOCK;
        rc = cit_err_set(err, CIT_EIO, "%s: %s", l->dir,
                         busy ? "the ledger is in use by another process (a running citadel "
                                "serve?); one process appends at a time"
                              : strerror(errno));
        if (l->lock_fd >= 0) close(l->lock_fd);
        cit_free(l);
        return rc;
    }
    l->checkpoint_s = o->checkpoint_s ? o->checkpoint_s : 60;
    pthread_mutex_init(&l->mu, NULL);
    pthread_mutex_init(&l->cp_mu, NULL);
    pthread_cond_init(&l->cv, NULL);

    snprintf(path, sizeof(path), "%s/node.key", l->dir);
    key_created = access(path, F_OK) != 0;
    if ((rc = ledger_skey_load(l->dir, o->origin ? o->origin : DEFAULT_ORIGIN, &l->key, err)))
        goto fail;
    ledger_vkey_format(&l->key.vk, &vb);
    if (!vb.p) {
        rc = cit_err_set(err, CIT_ENOMEM, "out of memory");
        goto fail;
    }
    l->vkey_text = vb.p;
    if (o->retention_days) {
        uint64_t removed;
        if ((rc = ledger_prune(l->dir, now_ms() - (int64_t)o->retention_days * 86400000, &removed,
                               err)))
            goto fail;
        if (removed)
            cit_log(CIT_LOG_INFO, "ledger: %llu entries older than %d days pruned (hashes kept)",
                    (unsigned long long)removed, o->retention_days);
    }

    /* checkpoints first: the tree must match the latest, the head and the floor */
    snprintf(path, sizeof(path), "%s/checkpoints", l->dir);
    have_history = access(path, F_OK) == 0;
    if ((rc = read_checkpoints(l->dir, &l->key.vk, 1, &cp, &cp_end, NULL, NULL, err))) goto fail;
    if ((l->cp_fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) < 0) {
        rc = cit_err_set(err, CIT_EIO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    {
        struct stat st;
        if (!fstat(l->cp_fd, &st) && st.st_size > (off_t)cp_end) {
            cit_log(CIT_LOG_WARN, "%s: cutting a torn checkpoint at byte %zu", path, cp_end);
            if (ftruncate(l->cp_fd, (off_t)cp_end)) {
                rc = cit_err_set(err, CIT_EIO, "%s: %s", path, strerror(errno));
                goto fail;
            }
        }
    }
    if ((rc = read_head(l->dir, &l->key.vk, &head, &have_head, &l->head_slot, NULL, err)))
        goto fail;
    snprintf(path, sizeof(path), "%s/head", l->dir);
    if ((l->head_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        rc = cit_err_set(err, CIT_EIO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (o->floor_note && o->floor_note[0]) {
        struct cit_err e2 = {0};
        size_t used;
        if (ledger_checkpoint_open(o->floor_note, strlen(o->floor_note), &l->key.vk, &floor, &used,
                                   &e2)) {
            rc = cit_err_set(err, CIT_EFORMAT,
                             "%s: the last checkpoint this node signed (kept in its state file) "
                             "is not signed by this ledger's key (%s): the ledger directory was "
                             "replaced",
                             l->dir, e2.msg);
            goto fail;
        }
        have_floor = 1;
    }
    /* a ledger is never without its checkpoints once it has a key: the
     * history and the head were deleted, or the log emptied beside them */
    if (!key_created && !have_head && !have_history) {
        rc = cit_err_set(err, CIT_EFORMAT,
                         "%s: node.key is there but checkpoints and head are missing: the "
                         "ledger's signed history was deleted; run citadel audit verify",
                         l->dir);
        goto fail;
    }

    /* the head and the history are written together from the first open */
    if (have_head && !have_history) {
        rc = cit_err_set(err, CIT_EFORMAT,
                         "%s: the signed head is there but the checkpoints file is missing: the "
                         "ledger's signed history was deleted; run citadel audit verify",
                         l->dir);
        goto fail;
    }
    /* the state file knows this ledger, so a citadel that writes heads signed
     * it: a missing head was deleted */
    if (have_floor && !have_head) {
        rc = cit_err_set(err, CIT_EFORMAT,
                         "%s: the signed head is missing, though this node signed checkpoint %llu "
                         "of this ledger: it was deleted; run citadel audit verify",
                         l->dir, (unsigned long long)floor.size);
        goto fail;
    }
    snprintf(path, sizeof(path), "%s/log", l->dir);
    if ((l->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) < 0) {
        rc = cit_err_set(err, CIT_EIO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if ((rc = walk_start(&w, l->dir, path, err))) goto fail;
    if (o->on_recent && o->recent_s > 0) {
        w.on_recent = o->on_recent;
        w.user = o->user;
        w.recent_ms = now_ms() - (int64_t)o->recent_s * 1000;
    }
    for (uint64_t i = 0; i < w.n_pruned; i++) ledger_range_push(&w.range, w.pruned[i]);
    {
        const struct ledger_checkpoint *want[3] = {&cp, &head, &floor};
        for (int k = 0; k < 3; k++) {
            w.want[k].size = want[k]->size;
            if (want[k]->size && want[k]->size <= w.n_pruned) { /* inside the pruned part */
                struct ledger_range r2 = {0};
                for (uint64_t i = 0; i < want[k]->size; i++) ledger_range_push(&r2, w.pruned[i]);
                ledger_range_root(&r2, w.want[k].root);
                w.want[k].range = r2;
                memcpy(w.want[k].prev, w.pruned[want[k]->size - 1], LEDGER_HASH);
                w.want[k].have = 1;
            }
        }
    }
    rc = scan_lines(l->fd, path, walk_line, &w, &end, &torn, err);
    cit_free((void *)w.pruned);
    if (rc) {
        cit_err_prefix(err, "the ledger was altered or damaged (run citadel audit verify): ");
        goto fail;
    }
    if (torn) {
        cit_log(CIT_LOG_WARN, "%s: cutting a torn last entry at byte %lld (never acknowledged)",
                path, (long long)end);
        if (ftruncate(l->fd, end) || fdatasync(l->fd)) {
            rc = cit_err_set(err, CIT_EIO, "%s: %s", path, strerror(errno));
            goto fail;
        }
    }
    {
        static const char *const what[3] = {"its latest signed checkpoint", "its signed head",
                                            "the last checkpoint this node signed (state file)"};
        const struct ledger_checkpoint *want[3] = {&cp, &head, &floor};
        for (int k = 0; k < 3; k++) {
            if (!want[k]->size) continue;
            if (w.seq < want[k]->size) {
                rc = cit_err_set(err, CIT_EFORMAT,
                                 "%s: the log has %llu entries but %s covers %llu: entries were "
                                 "removed or the ledger rolled back; run citadel audit verify",
                                 l->dir, (unsigned long long)w.seq, what[k],
                                 (unsigned long long)want[k]->size);
                goto fail;
            }
            if (!w.want[k].have || sodium_memcmp(w.want[k].root, want[k]->root, LEDGER_HASH)) {
                rc = cit_err_set(err, CIT_EFORMAT,
                                 "%s: the log's first %llu entries do not match %s: entries "
                                 "were altered; run citadel audit verify",
                                 l->dir, (unsigned long long)want[k]->size, what[k]);
                goto fail;
            }
        }
        if (have_head && head.size < cp.size) {
            rc = cit_err_set(err, CIT_EFORMAT,
                             "%s: the signed head covers %llu entries, fewer than the %llu of the "
                             "latest checkpoint in the history: the head was rolled back",
                             l->dir, (unsigned long long)head.size, (unsigned long long)cp.size);
            goto fail;
        }
        if (have_floor && have_head && head.size < floor.size) {
            rc = cit_err_set(err, CIT_EFORMAT,
                             "%s: the signed head covers %llu entries, older than the %llu of "
                             "the last checkpoint this node signed: the ledger rolled back",
                             l->dir, (unsigned long long)head.size, (unsigned long long)floor.size);
            goto fail;
        }
    }
    /* entries after the head were never acknowledged (a crash before their
     * commit): they move aside, so nothing unsigned joins the tree */
    if (have_head && w.seq > head.size) {
        uint64_t moved = w.seq - head.size;
        off_t cut = head.size > w.n_pruned ? w.want[1].end : 0;
        if ((rc = move_aside(l, cut, end, err))) goto fail;
        cit_log(CIT_LOG_WARN,
                "%s: %llu entries after the signed head were never acknowledged; moved to "
                "%s/unacknowledged",
                l->dir, (unsigned long long)moved, l->dir);
        snprintf(recovered, sizeof(recovered),
                 "%llu entries after the signed head (size %llu) were never acknowledged (a "
                 "crash before their commit); they were moved to the unacknowledged file",
                 (unsigned long long)moved, (unsigned long long)head.size);
        /* the tree is the head's, as the walk recorded it at that size */
        w.range = w.want[1].range;
        memcpy(w.prev, w.want[1].prev, LEDGER_HASH);
        w.seq = head.size;
        end = cut;
    }
    l->range = w.range;
    memcpy(l->last, w.prev, LEDGER_HASH);
    l->n_pruned = w.n_pruned;
    l->written = l->synced = end;
    l->cp_size = cp.size;
    l->head_size = have_head ? head.size : 0;
    l->on_checkpoint = o->on_checkpoint;
    l->cp_user = o->user;
    if (!have_head) {
        /* a new ledger, or one an older citadel wrote: both slots, so a torn
         * first commit leaves one */
        pthread_mutex_lock(&l->mu);
        l->head_size = 0;
        rc = commit(l, l->range.n ? l->range.n : 0);
        if (!rc && !l->range.n) {
            struct ledger_checkpoint c0 = {0};
            snprintf(c0.origin, sizeof(c0.origin), "%s", l->key.vk.name);
            ledger_range_root(&l->range, c0.root);
            rc = write_head(l, &c0) || write_head(l, &c0) ? CIT_EIO : 0;
        } else if (!rc) {
            l->head_size = 0; /* once more, into the other slot */
            rc = commit(l, l->range.n);
        }
        pthread_mutex_unlock(&l->mu);
        if (rc || fdatasync(l->head_fd) || sync_dir(l->dir)) {
            rc = cit_err_set(err, CIT_EIO, "%s/head: cannot write the signed head", l->dir);
            goto fail;
        }
    }
    if (recovered[0]) {
        struct ledger_rec e = {0};
        e.event = "ledger";
        e.action = "recover";
        e.target = l->key.vk.name;
        e.status = 200;
        e.detail = recovered;
        if ((rc = ledger_append(l, &e, LEDGER_SYNC, NULL))) {
            cit_err_set(err, rc, "%s: cannot record the recovery", l->dir);
            goto fail;
        }
    }
    l->cp_at_ns = 0;
    if (l->range.n > cp.size || !cp.size || (o->on_checkpoint && floor.size < l->range.n) ||
        (o->on_checkpoint && !have_floor)) {
        if ((rc = ledger_checkpoint(l, err))) goto fail;
    }
    l->cp_at_ns = cit_now_ns();
    if (pthread_create(&l->th, NULL, committer, l)) {
        rc = cit_err_set(err, CIT_ENOMEM, "ledger: cannot start the commit thread");
        goto fail;
    }
    l->th_started = 1;
    cit_log(CIT_LOG_INFO, "ledger %s: %llu entries, key %s", l->dir, (unsigned long long)l->range.n,
            l->vkey_text);
    *out = l;
    return 0;
fail:
    ledger_close(l);
    return rc;
}

void ledger_close(struct ledger *l)
{
    if (!l) return;
    if (l->th_started) {
        struct cit_err e = {0};
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->th, NULL);
        if (!l->broken && ledger_checkpoint(l, &e))
            cit_log(CIT_LOG_ERROR, "ledger: final checkpoint failed: %s", e.msg);
    }
    if (l->fd >= 0) close(l->fd);
    if (l->cp_fd >= 0) close(l->cp_fd);
    if (l->head_fd >= 0) close(l->head_fd);
    close(l->lock_fd); /* releases the lock */
    sodium_memzero(&l->key, sizeof(l->key));
    cit_free(l->vkey_text);
    cit_buf_free(&l->line);
    pthread_mutex_destroy(&l->mu);
    pthread_mutex_destroy(&l->cp_mu);
    pthread_cond_destroy(&l->cv);
    cit_free(l);
}

uint64_t ledger_size(struct ledger *l)
{
    uint64_t n;
    pthread_mutex_lock(&l->mu);
    n = l->range.n;
    pthread_mutex_unlock(&l->mu);
    return n;
}

const char *ledger_vkey_text(const struct ledger *l)
{
    return l->vkey_text;
}

static void str_field(struct cit_buf *b, const char *key, const char *v)
{
    cit_buf_printf(b, ",\"%s\":", key);
    cit_buf_json_str(b, v ? v : "", v ? strlen(v) : 0);
}

/* The fields between time and prev, formatted without the lock. */
/* ,"key":["a","b"] from "a,b" (an empty list for NULL or "") */
static void class_list(struct cit_buf *b, const char *key, const char *classes)
{
    cit_buf_printf(b, ",\"%s\":[", key);
    for (const char *p = classes; p && *p;) {
        size_t n = strcspn(p, ",");
        if (p != classes) cit_buf_add(b, ",", 1);
        cit_buf_json_str(b, p, n);
        p += n + (p[n] != 0);
    }
    cit_buf_add(b, "]", 1);
}

static int format_middle(const struct ledger_rec *r, struct cit_buf *b)
{
    char ts[32], hex[65];
    ledger_time_str(r->time_ms ? r->time_ms : now_ms(), ts);
    cit_buf_printf(b, "\"%s\"", ts);
    str_field(b, "tenant", r->tenant);
    str_field(b, "key", r->key_id);
    str_field(b, "request", r->request_id);
    sodium_bin2hex(hex, sizeof(hex), r->digest, LEDGER_HASH);
    cit_buf_printf(b, ",\"digest\":\"%s\"", hex);
    class_list(b, "classes", r->classes);
    str_field(b, "rule", r->rule);
    str_field(b, "policy", r->policy_hash);
    str_field(b, "target", r->target);
    str_field(b, "action", r->action);
    cit_buf_printf(b, ",\"tokens_in\":%lld,\"tokens_out\":%lld,\"status\":%d",
                   (long long)r->tokens_in, (long long)r->tokens_out, r->status);
    if (r->out_action) {
        str_field(b, "out_action", r->out_action);
        class_list(b, "out_classes", r->out_classes);
    }
    if (r->prompt) str_field(b, "prompt", r->prompt);
    if (r->event) {
        str_field(b, "event", r->event);
        str_field(b, "detail", r->detail);
    }
    if (r->passport) str_field(b, "passport", r->passport);
    if (r->receipt) str_field(b, "receipt", r->receipt);
    return b->p ? 0 : CIT_ENOMEM;
}

int ledger_append(struct ledger *l, const struct ledger_rec *rec, enum ledger_durability d,
                  uint64_t *seq)
{
    return ledger_append_leaf(l, rec, d, seq, NULL);
}

int ledger_append_leaf(struct ledger *l, const struct ledger_rec *rec, enum ledger_durability d,
                       uint64_t *seq, uint8_t leaf_out[LEDGER_HASH])
{
    struct cit_buf mid = {0};
    char hex[65];
    uint8_t leaf[LEDGER_HASH];
    uint64_t s;
    int rc = 0;
    if ((rc = format_middle(rec, &mid))) {
        cit_buf_free(&mid);
        return rc;
    }
    pthread_mutex_lock(&l->mu);
    if (l->broken) {
        rc = CIT_EIO;
        goto out;
    }
    s = l->range.n;
    sodium_bin2hex(hex, sizeof(hex), l->last, LEDGER_HASH);
    l->line.len = 0;
    cit_buf_printf(&l->line, "{\"seq\":%llu,\"time\":", (unsigned long long)s);
    cit_buf_add(&l->line, mid.p, mid.len);
    cit_buf_printf(&l->line, ",\"prev\":\"%s\"}\n", hex);
    if (!l->line.p) {
        rc = CIT_ENOMEM;
        goto out;
    }
    if (l->line.len > LEDGER_MAX_ENTRY) {
        rc = CIT_ERANGE;
        goto out;
    }
    ledger_leaf_hash(l->line.p, l->line.len - 1, leaf);
    if (write_all(l->fd, l->line.p, l->line.len)) {
        /* undo a partial write so the file keeps whole lines only */
        if (ftruncate(l->fd, l->written)) l->broken = 1;
        rc = CIT_EIO;
        goto out;
    }
    ledger_range_push(&l->range, leaf);
    memcpy(l->last, leaf, LEDGER_HASH);
    l->written += (off_t)l->line.len;
    (void)d; /* every append returns committed: synced and under a signed head */
    rc = commit(l, s + 1);
    if (!rc && seq) *seq = s;
    if (!rc && leaf_out) memcpy(leaf_out, leaf, LEDGER_HASH);
out:
    pthread_mutex_unlock(&l->mu);
    cit_buf_free(&mid);
    return rc;
}

/* ---- the view (audit tools) ---- */

int ledger_view_open(const char *dir, struct ledger_view *v, struct cit_err *err)
{
    struct walk w = {0};
    struct ledger_vkey vk;
    struct cit_buf kb = {0};
    char path[1200];
    size_t cp_end;
    off_t end;
    int fd, torn, rc;
    memset(v, 0, sizeof(*v));
    v->chain_break = UINT64_MAX;
    snprintf(path, sizeof(path), "%s/log", dir);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return cit_err_set(err, CIT_EIO, "%s: %s", path, strerror(errno));
    if ((rc = walk_start(&w, dir, path, err))) {
        close(fd);
        return rc;
    }
    v->n_pruned = v->n = w.n_pruned;
    if (w.n_pruned) {
        v->leaves = cit_malloc(w.n_pruned * LEDGER_HASH);
        if (!v->leaves) {
            close(fd);
            cit_free((void *)w.pruned);
            return cit_err_set(err, CIT_ENOMEM, "out of memory");
        }
        memcpy(v->leaves, w.pruned, w.n_pruned * LEDGER_HASH);
    }
    w.view = v;
    rc = scan_lines(fd, path, walk_line, &w, &end, &torn, err);
    close(fd);
    cit_free((void *)w.pruned);
    if (rc) {
        ledger_view_free(v);
        return rc;
    }
    /* the latest checkpoint, with the directory's own key (show and proof
     * tools; verify checks the key separately) */
    snprintf(path, sizeof(path), "%s/node.vkey", dir);
    if (!cit_read_file(path, 4096, &kb, NULL) && !ledger_vkey_parse(kb.p, kb.len, &vk, NULL))
        read_checkpoints(dir, &vk, 0, &v->latest, &cp_end, NULL, NULL, NULL);
    cit_buf_free(&kb);
    return 0;
}

void ledger_view_free(struct ledger_view *v)
{
    if (v->lines)
        for (uint64_t i = 0; i + v->n_pruned < v->n; i++) cit_free(v->lines[i]);
    cit_free(v->lines);
    cit_free(v->leaves);
    memset(v, 0, sizeof(*v));
}

/* ---- verify ---- */

static int entry_json_ok(const char *line, size_t n, char *why, size_t cap)
{
    static const char *const str_keys[] = {"time", "tenant", "key",    "request", "digest",
                                           "rule", "policy", "target", "action",  "prev"};
    static const char *const int_keys[] = {"seq", "tokens_in", "tokens_out", "status"};
    json_error_t je;
    json_t *o = json_loadb(line, n, JSON_REJECT_DUPLICATES, &je), *c;
    int ok = 1;
    if (!o || !json_is_object(o)) {
        snprintf(why, cap, "is not a JSON object (%s)", o ? "another value" : je.text);
        json_decref(o);
        return 0;
    }
    for (size_t i = 0; ok && i < sizeof(str_keys) / sizeof(*str_keys); i++)
        if (!json_is_string(json_object_get(o, str_keys[i]))) {
            snprintf(why, cap, "lacks the string field \"%s\"", str_keys[i]);
            ok = 0;
        }
    for (size_t i = 0; ok && i < sizeof(int_keys) / sizeof(*int_keys); i++)
        if (!json_is_integer(json_object_get(o, int_keys[i]))) {
            snprintf(why, cap, "lacks the integer field \"%s\"", int_keys[i]);
            ok = 0;
        }
    if (ok && !json_is_array(c = json_object_get(o, "classes"))) {
        snprintf(why, cap, "lacks the array \"classes\"");
        ok = 0;
    }
    json_decref(o);
    return ok;
}

/* Which entry was altered when entry b's prev is not the hash of entry
 * b-1: if entry b+1 recorded b's hash as it is now, b is as written and
 * b-1 changed; otherwise b changed. For the last entry, the signed last
 * leaf of a checkpoint decides. */
static uint64_t chain_culprit(const struct ledger_view *v, uint64_t b,
                              const struct ledger_checkpoint *cps, uint64_t n_cp)
{
    char hex[65];
    if (b == 0) return 0;
    if (b + 1 < v->n) {
        const char *next = v->lines[b + 1 - v->n_pruned];
        size_t len = strlen(next);
        sodium_bin2hex(hex, sizeof(hex), v->leaves[b], LEDGER_HASH);
        return len > 66 && !memcmp(next + len - 66, hex, 64) ? b - 1 : b;
    }
    for (uint64_t i = 0; i < n_cp; i++)
        if (cps[i].size == b + 1 && cps[i].has_last_leaf)
            return sodium_memcmp(cps[i].last_leaf, v->leaves[b], LEDGER_HASH) ? b : b - 1;
    return b;
}

/* 0 when the tree of v's first n leaves is consistent with (m, root_m):
 * the root at m matches, and the RFC 6962 proof from m to n verifies. */
/* 0 when an RFC 6962 consistency proof, built from v's leaves, shows the
 * tree (n, root_n) extends (m, root_m), 0 < m < n. */
static int proof_holds(const struct ledger_view *v, uint64_t m, const uint8_t root_m[LEDGER_HASH],
                       uint64_t n, const uint8_t root_n[LEDGER_HASH])
{
    uint8_t proof[LEDGER_MAX_PROOF][LEDGER_HASH];
    int np;
    const uint8_t(*leaves)[LEDGER_HASH] = (const uint8_t(*)[LEDGER_HASH])v->leaves;
    return ledger_consistency_proof(leaves, m, n, proof, &np) ||
                   ledger_consistency_verify(m, n, root_m, root_n,
                                             (const uint8_t(*)[LEDGER_HASH])proof, np)
               ? -1
               : 0;
}

/* 0 when the tree of v's first n leaves is consistent with (m, root_m):
 * the root at m matches, and the proof from m to n verifies. */
static int consistent_with(const struct ledger_view *v, uint64_t m,
                           const uint8_t root_m[LEDGER_HASH], uint64_t n)
{
    uint8_t root[LEDGER_HASH], root_n[LEDGER_HASH];
    const uint8_t(*leaves)[LEDGER_HASH] = (const uint8_t(*)[LEDGER_HASH])v->leaves;
    ledger_root(leaves, m, root);
    if (sodium_memcmp(root, root_m, LEDGER_HASH)) return -1;
    if (m == 0 || m == n) return 0;
    ledger_root(leaves, n, root_n);
    return proof_holds(v, m, root_m, n, root_n);
}

int ledger_verify(const char *dir, const char *vkey_text, struct cit_buf *report,
                  struct cit_err *err)
{
    return ledger_verify_since(dir, vkey_text, NULL, report, err);
}

int ledger_verify_witnessed(const char *dir, const char *vkey_text, const char *since,
                            const struct ledger_vkey *witnesses, int n, int quorum,
                            struct cit_buf *report, struct cit_err *err)
{
    int good = 0, rc;
    char names[600] = "";
    if (n > 0) {
        if (!since)
            return cit_err_set(err, CIT_EINVAL,
                               "--witness needs --since: the checkpoint the witnesses cosigned");
        if (quorum < 1 || quorum > n)
            return cit_err_set(err, CIT_EINVAL, "a quorum of %d of %d witnesses", quorum, n);
        for (int i = 0; i < n; i++) {
            struct cit_err e2 = {0};
            if (!ledger_cosignature_check(since, strlen(since), &witnesses[i], NULL, &e2)) {
                good++;
                continue;
            }
            size_t k = strlen(names);
            snprintf(names + k, sizeof(names) - k, "%s%s", k ? "; " : "", e2.msg);
        }
        if (good < quorum)
            return cit_err_set(err, CIT_EFORMAT,
                               "--since: %d of the %d witnesses cosigned it, the quorum is %d (%s)",
                               good, n, quorum, names);
    }
    if ((rc = ledger_verify_since(dir, vkey_text, since, report, err))) return rc;
    if (n > 0)
        cit_buf_printf(report, "cosigned by %d of %d witnesses (quorum %d)\n", good, n, quorum);
    return 0;
}

int ledger_extends(const char *dir, const struct ledger_checkpoint *cp_old,
                   const struct ledger_checkpoint *cp_new, struct cit_err *err)
{
    struct ledger_view v;
    int rc;
    if (cp_new->size < cp_old->size)
        return cit_err_set(err, CIT_EFORMAT, "rolled back: size %llu after size %llu",
                           (unsigned long long)cp_new->size, (unsigned long long)cp_old->size);
    if ((rc = ledger_view_open(dir, &v, err))) return rc;
    if (v.n < cp_new->size) {
        rc = cit_err_set(err, CIT_EFORMAT, "%s has %llu entries, the checkpoint signs %llu", dir,
                         (unsigned long long)v.n, (unsigned long long)cp_new->size);
    } else if (consistent_with(&v, cp_new->size, cp_new->root, cp_new->size)) {
        rc = cit_err_set(err, CIT_EFORMAT, "%s does not hold the tree the checkpoint signs", dir);
    } else if (consistent_with(&v, cp_old->size, cp_old->root, cp_new->size)) {
        rc = cit_err_set(err, CIT_EFORMAT,
                         "the tree of size %llu does not extend the one of size %llu cosigned "
                         "before: the log forked or was rewritten",
                         (unsigned long long)cp_new->size, (unsigned long long)cp_old->size);
    }
    ledger_view_free(&v);
    return rc;
}

int ledger_verify_since(const char *dir, const char *vkey_text, const char *since,
                        struct cit_buf *report, struct cit_err *err)
{
    struct ledger_view v;
    struct ledger_vkey vk;
    struct cit_buf kb = {0};
    struct ledger_checkpoint *cps = NULL, latest, head, seen;
    char path[1200], why[200];
    int rc, own_key = !vkey_text, have_head = 0, slot;
    uint64_t n_cp = 0, prev_size = 0, bad = UINT64_MAX;
    uint8_t prev_root[LEDGER_HASH];
    size_t cp_end;

    if (own_key) {
        snprintf(path, sizeof(path), "%s/node.vkey", dir);
        if ((rc = cit_read_file(path, 4096, &kb, err))) {
            if (rc == CIT_ENOENT) cit_err_set(err, rc, "%s: no such file", path);
            return rc;
        }
        vkey_text = kb.p;
    }
    rc = ledger_vkey_parse(vkey_text, strlen(vkey_text), &vk, err);
    cit_buf_free(&kb);
    if (rc) return rc;
    if ((rc = ledger_view_open(dir, &v, err))) return rc;

    /* the signed checkpoints, each checked against the key */
    snprintf(path, sizeof(path), "%s/checkpoints", dir);
    if ((rc = read_checkpoints(dir, &vk, 0, &latest, &cp_end, &cps, &n_cp, err))) goto out;
    if ((rc = read_head(dir, &vk, &head, &have_head, &slot, NULL, err))) goto out;
    if (have_head && !n_cp) {
        rc = cit_err_set(err, CIT_EFORMAT,
                         "%s: the signed head covers %llu entries but the checkpoints file %s: "
                         "the signed history was deleted",
                         dir, (unsigned long long)head.size,
                         access(path, F_OK) ? "is missing" : "is empty");
        goto out;
    }
    if (v.n && !n_cp && !have_head) {
        rc = cit_err_set(err, CIT_EFORMAT,
                         "%s: the log has %llu entries and no signed checkpoint or head: they "
                         "were deleted",
                         dir, (unsigned long long)v.n);
        goto out;
    }

    /* entries: well-formed JSON, and the chain of prev hashes */
    for (uint64_t i = 0; i + v.n_pruned < v.n && bad == UINT64_MAX; i++) {
        const char *line = v.lines[i];
        if (!entry_json_ok(line, strlen(line), why, sizeof(why))) bad = i + v.n_pruned;
    }
    if (v.chain_break != UINT64_MAX) {
        uint64_t c = chain_culprit(&v, v.chain_break, cps, n_cp);
        if (c < bad) {
            bad = c;
            snprintf(why, sizeof(why), "was altered: the chain of prev hashes breaks at entry %llu",
                     (unsigned long long)v.chain_break);
        }
    }
    if (bad != UINT64_MAX) {
        rc = cit_err_set(err, CIT_EFORMAT, "%s/log: entry %llu %s", dir, (unsigned long long)bad,
                         why);
        goto out;
    }
    {
        char lp[1200];
        struct stat st;
        snprintf(lp, sizeof(lp), "%s/log", dir);
        if (!stat(lp, &st)) {
            /* a torn tail is reported, not fatal: a crash leaves one */
            size_t total = 0;
            for (uint64_t i = 0; i + v.n_pruned < v.n; i++) total += strlen(v.lines[i]) + 1;
            if ((off_t)total < st.st_size)
                cit_buf_printf(report,
                               "note: %lld bytes after the last entry (a write cut short by a "
                               "crash; the server cuts them on its next start)\n",
                               (long long)(st.st_size - (off_t)total));
        }
    }

    /* each checkpoint against the tree, and each against the one before */
    for (uint64_t k = 0; k < n_cp; k++) {
        const struct ledger_checkpoint *cp = &cps[k];
        uint8_t root[LEDGER_HASH];
        if (cp->size > v.n) {
            rc = cit_err_set(err, CIT_EFORMAT,
                             "%s: checkpoint %llu signs %llu entries but the log has %llu: "
                             "entry %llu and later are missing",
                             path, (unsigned long long)k + 1, (unsigned long long)cp->size,
                             (unsigned long long)v.n, (unsigned long long)v.n);
            goto out;
        }
        ledger_root((const uint8_t(*)[LEDGER_HASH])v.leaves, cp->size, root);
        if (sodium_memcmp(root, cp->root, LEDGER_HASH)) {
            /* the chain held, so the entries before this checkpoint's last
             * are as their successors recorded them: unless the chain was
             * rewritten, the last one changed, which its signed leaf shows */
            if (cp->has_last_leaf &&
                sodium_memcmp(cp->last_leaf, v.leaves[cp->size - 1], LEDGER_HASH))
                rc = cit_err_set(err, CIT_EFORMAT,
                                 "%s/log: entry %llu does not match the signed checkpoint %llu "
                                 "(size %llu): it was altered",
                                 dir, (unsigned long long)(cp->size - 1), (unsigned long long)k + 1,
                                 (unsigned long long)cp->size);
            else
                rc = cit_err_set(err, CIT_EFORMAT,
                                 "%s/log: entries %llu to %llu do not match the signed checkpoint "
                                 "%llu (size %llu): they were rewritten, prev hashes included",
                                 dir, (unsigned long long)prev_size,
                                 (unsigned long long)(cp->size - 1), (unsigned long long)k + 1,
                                 (unsigned long long)cp->size);
            goto out;
        }
        if (prev_size && prev_size < cp->size) {
            if (proof_holds(&v, prev_size, prev_root, cp->size, cp->root)) {
                rc = cit_err_set(err, CIT_EFORMAT,
                                 "%s: checkpoints %llu and %llu are not consistent", path,
                                 (unsigned long long)k, (unsigned long long)k + 1);
                goto out;
            }
        }
        if (cp->size) {
            prev_size = cp->size;
            memcpy(prev_root, cp->root, LEDGER_HASH);
        }
    }
    /* the head: every acknowledged entry, at least as new as the history */
    if (have_head) {
        if (head.size > v.n) {
            rc = cit_err_set(err, CIT_EFORMAT,
                             "%s/head: the signed head covers %llu entries but the log has %llu: "
                             "entry %llu and later are missing",
                             dir, (unsigned long long)head.size, (unsigned long long)v.n,
                             (unsigned long long)v.n);
            goto out;
        }
        if (head.size < prev_size) {
            rc = cit_err_set(err, CIT_EFORMAT,
                             "%s/head: the signed head covers %llu entries, fewer than checkpoint "
                             "%llu's %llu: it was rolled back",
                             dir, (unsigned long long)head.size, (unsigned long long)n_cp,
                             (unsigned long long)prev_size);
            goto out;
        }
        /* its root, and its extending the history's newest (whose root the
         * loop above checked) */
        if (consistent_with(&v, head.size, head.root, head.size) ||
            (prev_size && (prev_size == head.size
                               ? sodium_memcmp(prev_root, head.root, LEDGER_HASH) != 0
                               : proof_holds(&v, prev_size, prev_root, head.size, head.root)))) {
            rc = cit_err_set(err, CIT_EFORMAT,
                             "%s/log: the first %llu entries do not match the signed head: they "
                             "were altered",
                             dir, (unsigned long long)head.size);
            goto out;
        }
    }
    /* the checkpoint the auditor saw last: the ledger may only have grown */
    if (since) {
        size_t used;
        struct cit_err e2 = {0};
        uint64_t top = have_head && head.size > prev_size ? head.size : prev_size;
        if (ledger_checkpoint_open(since, strlen(since), &vk, &seen, &used, &e2)) {
            rc = cit_err_set(err, CIT_EFORMAT, "--since: not a checkpoint signed by %s: %s",
                             vk.name, e2.msg);
            goto out;
        }
        if (seen.size > top) {
            rc = cit_err_set(err, CIT_EFORMAT,
                             "%s: rolled back: the checkpoint you saw signs %llu entries, the "
                             "ledger's newest signs %llu%s",
                             dir, (unsigned long long)seen.size, (unsigned long long)top,
                             seen.size > v.n ? " (entries are missing from the log)" : "");
            goto out;
        }
        if (consistent_with(&v, seen.size, seen.root, top)) {
            rc = cit_err_set(err, CIT_EFORMAT,
                             "%s: the ledger's first %llu entries are not those of the checkpoint "
                             "you saw: its history was rewritten",
                             dir, (unsigned long long)seen.size);
            goto out;
        }
    }
    cit_buf_printf(report, "ledger %s: %llu entries (%llu pruned), %llu checkpoints, key %s%s\n",
                   dir, (unsigned long long)v.n, (unsigned long long)v.n_pruned,
                   (unsigned long long)n_cp, vk.name,
                   own_key ? " (read from the ledger directory, not given independently)" : "");
    if (prev_size) {
        char b64[64];
        sodium_bin2base64(b64, sizeof(b64), prev_root, LEDGER_HASH, sodium_base64_VARIANT_ORIGINAL);
        cit_buf_printf(report, "latest signed tree: size %llu, root %s\n",
                       (unsigned long long)prev_size, b64);
    }
    if (have_head) {
        char b64[64];
        sodium_bin2base64(b64, sizeof(b64), head.root, LEDGER_HASH, sodium_base64_VARIANT_ORIGINAL);
        cit_buf_printf(report,
                       "signed head: size %llu, root %s (keep `citadel audit checkpoint` "
                       "and pass it to --since next time)\n",
                       (unsigned long long)head.size, b64);
    } else {
        cit_buf_printf(report, "note: no signed head (a ledger an older citadel wrote)\n");
    }
    if (since)
        cit_buf_printf(report, "consistent with the checkpoint you gave (size %llu)\n",
                       (unsigned long long)seen.size);
    {
        uint64_t top = have_head && head.size > prev_size ? head.size : prev_size;
        if (v.n > top)
            cit_buf_printf(report,
                           "note: entries %llu to %llu follow the newest signed tree: never "
                           "acknowledged (a crash before their commit, or a live ledger); no "
                           "signature vouches for them, and serve moves them aside at its next "
                           "start\n",
                           (unsigned long long)top, (unsigned long long)(v.n - 1));
    }
    cit_buf_printf(report, "OK\n");
out:
    cit_free(cps);
    ledger_view_free(&v);
    return rc;
}

int ledger_head_note(const char *dir, struct cit_buf *out, struct cit_err *err)
{
    char path[1200];
    struct cit_buf kb = {0};
    struct ledger_vkey vk;
    struct ledger_checkpoint cp;
    int rc, have, slot;
    snprintf(path, sizeof(path), "%s/node.vkey", dir);
    if ((rc = cit_read_file(path, 4096, &kb, err))) {
        if (rc == CIT_ENOENT) cit_err_set(err, rc, "%s: no such file", path);
        return rc;
    }
    rc = ledger_vkey_parse(kb.p, kb.len, &vk, err);
    cit_buf_free(&kb);
    if (rc) return rc;
    if ((rc = read_head(dir, &vk, &cp, &have, &slot, out, err))) return rc;
    if (!have) return cit_err_set(err, CIT_ENOENT, "%s/head: no such file", dir);
    return 0;
}
