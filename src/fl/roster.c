/*
 * The roster file: the consortium, one member's public key a line (its
 * layout is in fl.h, by fl_roster_load). Every node of a federation reads
 * the same file; the line order is the roster index the protocol names
 * members by.
 */
#include <string.h>

#include "fl_int.h"

#define ROSTER_MAX_BYTES (1u << 20)

/* The members as one block, so that fl_roster_free is one cit_free and the
 * roster's const views are written before they become const: the struct,
 * then names (n pointers), pk (n, 32) and the names' text. */
static int roster_build(const struct ledger_vkey *vk, int n, struct fl_roster **out)
{
    size_t text = 0, names_at = sizeof(struct fl_roster), pk_at, text_at;
    struct fl_roster *r;
    uint8_t(*pk)[32];
    char *blk, **names, *s;
    for (int i = 0; i < n; i++) text += strlen(vk[i].name) + 1;
    pk_at = names_at + (size_t)n * sizeof(char *);
    text_at = pk_at + (size_t)n * 32;
    if (!(blk = cit_malloc(text_at + text))) return CIT_ENOMEM;
    r = (struct fl_roster *)blk;
    names = (char **)(blk + names_at);
    pk = (uint8_t(*)[32])(blk + pk_at);
    s = blk + text_at;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(vk[i].name) + 1;
        memcpy(pk[i], vk[i].pk, 32);
        memcpy(s, vk[i].name, len);
        names[i] = s;
        s += len;
    }
    r->n = n;
    r->pk = (const uint8_t(*)[32])pk;
    r->names = (const char *const *)names;
    *out = r;
    return 0;
}

int fl_roster_load(const char *path, struct fl_roster **out, struct cit_err *err)
{
    struct cit_buf b = {0};
    struct ledger_vkey *vk = NULL;
    struct cit_err e = {{0}};
    const char *p, *end;
    int line = 0, n = 0, rc;
    if ((rc = cit_read_file(path, ROSTER_MAX_BYTES, &b, err))) {
        if (rc == CIT_ENOENT)
            cit_err_set(err, rc, "%s: no such file (the roster: a NAME.vkey line per member)",
                        path);
        return rc;
    }
    /* (FL_MAX_CLIENTS) parsed keys, copied into the roster once all are read */
    if (!(vk = cit_calloc(FL_MAX_CLIENTS, sizeof(*vk)))) {
        rc = cit_err_set(err, CIT_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    for (p = b.p ? b.p : "", end = p + b.len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        line++;
        while (len && (p[len - 1] == '\r' || p[len - 1] == ' ')) len--;
        if (len && p[0] != '#') {
            if (n == FL_MAX_CLIENTS) {
                rc = cit_err_set(err, CIT_ERANGE, "%s: more than %d members", path, FL_MAX_CLIENTS);
                goto out;
            }
            if ((rc = ledger_vkey_parse(p, len, &vk[n], &e))) {
                cit_err_set(err, rc, "%s:%d: %s", path, line, e.msg);
                goto out;
            }
            for (int i = 0; i < n; i++)
                if (!memcmp(vk[i].pk, vk[n].pk, 32)) {
                    rc = cit_err_set(err, CIT_EFORMAT, "%s:%d: the same key twice", path, line);
                    goto out;
                }
            n++;
        }
        if (!nl) break;
        p = nl + 1;
    }
    if (n < 2) {
        rc = cit_err_set(err, CIT_EINVAL, "%s: a roster needs at least 2 members", path);
        goto out;
    }
    if ((rc = roster_build(vk, n, out))) cit_err_set(err, rc, "%s: out of memory", path);
out:
    cit_free(vk);
    cit_buf_free(&b);
    return rc;
}

void fl_roster_free(struct fl_roster *r)
{
    cit_free(r);
}
