/*
 * The node's signing key and signed checkpoints (c2sp.org/signed-note,
 * c2sp.org/tlog-checkpoint), with Ed25519 from libsodium.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ledger_int.h"

#define SIG_DASH  "\xe2\x80\x94 " /* U+2014 and a space */
#define LAST_LEAF "citadel-last-leaf "

/* SHA-256(name || "\n" || type || key)[:4]: type 0x01 signs notes (the
 * log's key), 0x04 cosigns them (a witness, c2sp.org/tlog-cosignature). */
static void key_id(const char *name, uint8_t type, const uint8_t pk[32], uint8_t id[4])
{
    crypto_hash_sha256_state st;
    uint8_t h[32];
    const uint8_t sep[2] = {0x0a, type};
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const uint8_t *)name, strlen(name));
    crypto_hash_sha256_update(&st, sep, 2);
    crypto_hash_sha256_update(&st, pk, 32);
    crypto_hash_sha256_final(&st, h);
    memcpy(id, h, 4);
}

static int name_ok(const char *s, size_t n)
{
    if (!n || n >= LEDGER_MAX_ORIGIN) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == '+' || s[i] == 0x7f) return 0;
    return 1;
}

void ledger_vkey_format(const struct ledger_vkey *vk, struct cit_buf *b)
{
    uint8_t raw[33];
    char b64[64], hex[9];
    raw[0] = vk->type ? vk->type : LEDGER_KEY_SIGN;
    memcpy(raw + 1, vk->pk, 32);
    sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2hex(hex, sizeof(hex), vk->id, 4);
    cit_buf_printf(b, "%s+%s+%s", vk->name, hex, b64);
}

/* Splits "<a>+<b>+<c>" at its first two '+' (base64 in c may hold more). */
static int split3(const char *s, size_t n, const char **p1, size_t *n1, const char **p2, size_t *n2,
                  const char **p3, size_t *n3)
{
    const char *a = memchr(s, '+', n), *b;
    if (!a) return -1;
    b = memchr(a + 1, '+', n - (size_t)(a + 1 - s));
    if (!b) return -1;
    *p1 = s, *n1 = (size_t)(a - s);
    *p2 = a + 1, *n2 = (size_t)(b - a - 1);
    *p3 = b + 1, *n3 = n - (size_t)(b + 1 - s);
    return 0;
}

static int key_body(const char *name, size_t nn, const char *idh, size_t ni, const char *kb,
                    size_t nk, uint8_t key[32], uint8_t id[4], uint8_t *type, const char *what,
                    struct cit_err *err)
{
    uint8_t raw[64];
    size_t rl = 0;
    char hex[16];
    if (!name_ok(name, nn))
        return cit_err_set(err, CIT_EFORMAT, "%s: the key name is empty, too long or has spaces",
                           what);
    if (ni != 8) return cit_err_set(err, CIT_EFORMAT, "%s: the key id must be 8 hex digits", what);
    memcpy(hex, idh, 8);
    hex[8] = 0;
    if (sodium_hex2bin(id, 4, hex, 8, NULL, NULL, NULL))
        return cit_err_set(err, CIT_EFORMAT, "%s: the key id is not hex", what);
    if (sodium_base642bin(raw, sizeof(raw), kb, nk, NULL, &rl, NULL,
                          sodium_base64_VARIANT_ORIGINAL) ||
        rl != 33 || (raw[0] != LEDGER_KEY_SIGN && raw[0] != LEDGER_KEY_COSIGN))
        return cit_err_set(err, CIT_EFORMAT,
                           "%s: the key must be base64 of 0x01 (a log's) or 0x04 (a witness's) "
                           "and 32 bytes (Ed25519)",
                           what);
    *type = raw[0];
    memcpy(key, raw + 1, 32);
    sodium_memzero(raw, sizeof(raw));
    return 0;
}

int ledger_vkey_parse(const char *text, size_t len, struct ledger_vkey *out, struct cit_err *err)
{
    const char *a, *b, *c;
    size_t na, nb, nc;
    struct ledger_vkey vk;
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r')) len--;
    if (split3(text, len, &a, &na, &b, &nb, &c, &nc))
        return cit_err_set(err, CIT_EFORMAT, "verifier key: expected NAME+ID+KEY");
    if (key_body(a, na, b, nb, c, nc, vk.pk, vk.id, &vk.type, "verifier key", err))
        return CIT_EFORMAT;
    memcpy(vk.name, a, na);
    vk.name[na] = 0;
    {
        uint8_t want[4];
        key_id(vk.name, vk.type, vk.pk, want);
        if (memcmp(want, vk.id, 4))
            return cit_err_set(err, CIT_EFORMAT,
                               "verifier key: the id does not match the name and key");
    }
    *out = vk;
    return 0;
}

static int write_new(const char *path, const char *text, size_t n, mode_t mode, struct cit_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    ssize_t w;
    if (fd < 0) return cit_err_set(err, CIT_EIO, "%s: %s", path, strerror(errno));
    w = write(fd, text, n);
    if (w != (ssize_t)n || fsync(fd)) {
        close(fd);
        unlink(path);
        return cit_err_set(err, CIT_EIO, "%s: write failed", path);
    }
    close(fd);
    return 0;
}

int ledger_skey_load(const char *dir, const char *name, struct ledger_skey *k, struct cit_err *err)
{
    char path[1200], vpath[1200];
    snprintf(path, sizeof(path), "%s/node.key", dir);
    snprintf(vpath, sizeof(vpath), "%s/node.vkey", dir);
    return ledger_key_load(path, vpath, name, k, err);
}

int ledger_key_load(const char *path, const char *vpath, const char *name, struct ledger_skey *k,
                    struct cit_err *err)
{
    return ledger_key_load_type(path, vpath, name, LEDGER_KEY_SIGN, k, err);
}

int ledger_key_load_type(const char *path, const char *vpath, const char *name, uint8_t type,
                         struct ledger_skey *k, struct cit_err *err)
{
    struct cit_buf b = {0};
    int rc;
    rc = cit_read_file(path, 4096, &b, err);
    if (rc == CIT_ENOENT && name) {
        uint8_t seed[32], raw[33];
        char b64[64], hex[9];
        struct cit_buf vb = {0};
        if (!name_ok(name, strlen(name)))
            return cit_err_set(err, CIT_EINVAL, "ledger origin '%s': no spaces or '+' allowed",
                               name);
        randombytes_buf(seed, sizeof(seed));
        crypto_sign_seed_keypair(k->vk.pk, k->sk, seed);
        snprintf(k->vk.name, sizeof(k->vk.name), "%s", name);
        k->vk.type = type;
        key_id(name, type, k->vk.pk, k->vk.id);
        raw[0] = type;
        memcpy(raw + 1, seed, 32);
        sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
        sodium_bin2hex(hex, sizeof(hex), k->vk.id, 4);
        cit_buf_printf(&b, "PRIVATE+KEY+%s+%s+%s\n", name, hex, b64);
        sodium_memzero(seed, sizeof(seed));
        sodium_memzero(raw, sizeof(raw));
        ledger_vkey_format(&k->vk, &vb);
        cit_buf_add(&vb, "\n", 1);
        rc = !b.p || !vb.p ? cit_err_set(err, CIT_ENOMEM, "out of memory")
                           : write_new(path, b.p, b.len, 0600, err);
        if (!rc && (rc = write_new(vpath, vb.p, vb.len, 0644, err))) unlink(path);
        if (b.p) sodium_memzero(b.p, b.len);
        cit_buf_free(&b);
        cit_buf_free(&vb);
        if (!rc) cit_log(CIT_LOG_INFO, "ledger: new signing key %s", path);
        return rc;
    }
    if (rc == CIT_ENOENT) return cit_err_set(err, rc, "%s: no such key file", path);
    if (rc) return rc;
    {
        const char *a, *bb, *c, *t = b.p;
        size_t na, nb, nc, n = b.len;
        uint8_t seed[32];
        while (n && (t[n - 1] == '\n' || t[n - 1] == '\r')) n--;
        if (n < 12 || memcmp(t, "PRIVATE+KEY+", 12) ||
            split3(t + 12, n - 12, &a, &na, &bb, &nb, &c, &nc) ||
            key_body(a, na, bb, nb, c, nc, seed, k->vk.id, &k->vk.type, path, err)) {
            sodium_memzero(b.p, b.len);
            cit_buf_free(&b);
            if (err && !err->msg[0])
                cit_err_set(err, CIT_EFORMAT, "%s: expected PRIVATE+KEY+NAME+ID+KEY", path);
            return CIT_EFORMAT;
        }
        memcpy(k->vk.name, a, na);
        k->vk.name[na] = 0;
        crypto_sign_seed_keypair(k->vk.pk, k->sk, seed);
        sodium_memzero(seed, sizeof(seed));
        sodium_memzero(b.p, b.len);
        cit_buf_free(&b);
        {
            uint8_t want[4];
            key_id(k->vk.name, k->vk.type, k->vk.pk, want);
            if (memcmp(want, k->vk.id, 4))
                return cit_err_set(err, CIT_EFORMAT, "%s: the key id does not match the key", path);
            if (k->vk.type != type)
                return cit_err_set(err, CIT_EFORMAT, "%s: a %s key, not a %s key", path,
                                   k->vk.type == LEDGER_KEY_COSIGN ? "witness's" : "log's",
                                   type == LEDGER_KEY_COSIGN ? "witness's" : "log's");
        }
    }
    return 0;
}

static void note_body(const struct ledger_checkpoint *cp, struct cit_buf *b)
{
    char b64[64];
    sodium_bin2base64(b64, sizeof(b64), cp->root, LEDGER_HASH, sodium_base64_VARIANT_ORIGINAL);
    cit_buf_printf(b, "%s\n%llu\n%s\n", cp->origin, (unsigned long long)cp->size, b64);
    if (cp->has_last_leaf) {
        sodium_bin2base64(b64, sizeof(b64), cp->last_leaf, LEDGER_HASH,
                          sodium_base64_VARIANT_ORIGINAL);
        cit_buf_printf(b, "%s%s\n", LAST_LEAF, b64);
    }
}

int ledger_checkpoint_sign(const struct ledger_skey *k, const struct ledger_checkpoint *cp,
                           struct cit_buf *b)
{
    size_t start = b->len;
    uint8_t sig[4 + crypto_sign_BYTES];
    char b64[128];
    note_body(cp, b);
    if (!b->p) return CIT_ENOMEM;
    memcpy(sig, k->vk.id, 4);
    crypto_sign_detached(sig + 4, NULL, (const uint8_t *)b->p + start, b->len - start, k->sk);
    sodium_bin2base64(b64, sizeof(b64), sig, sizeof(sig), sodium_base64_VARIANT_ORIGINAL);
    return cit_buf_printf(b, "\n" SIG_DASH "%s %s\n", k->vk.name, b64);
}

/* The line at *p (without its newline); advances *p past it. -1 when no
 * complete line is left. */
static int next_line(const char **p, const char *end, const char **line, size_t *n)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    if (!nl) return -1;
    *line = *p;
    *n = (size_t)(nl - *p);
    *p = nl + 1;
    return 0;
}

int ledger_checkpoint_open(const char *text, size_t len, const struct ledger_vkey *vk,
                           struct ledger_checkpoint *cp, size_t *used, struct cit_err *err)
{
    const char *p = text, *end = text + len, *l, *body_end;
    size_t n;
    struct ledger_checkpoint c = {0};
    char num[24], b64[64];
    size_t rl;
    int n_lines = 0, good = 0, known = 0;

    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] < 0x20 && text[i] != '\n')
            return cit_err_set(err, CIT_EFORMAT, "a control character in the note");
    /* body: origin, size, root, extension lines, then a blank line */
    for (;;) {
        if (next_line(&p, end, &l, &n))
            return cit_err_set(err, CIT_EFORMAT, "the note ends before its signatures");
        if (n == 0) break;
        if (n_lines == 0) {
            if (n >= sizeof(c.origin))
                return cit_err_set(err, CIT_EFORMAT, "the origin line is too long");
            memcpy(c.origin, l, n);
        } else if (n_lines == 1) {
            char *e;
            if (n == 0 || n >= sizeof(num) || (n > 1 && l[0] == '0'))
                return cit_err_set(err, CIT_EFORMAT, "the tree size line is not a number");
            memcpy(num, l, n);
            num[n] = 0;
            for (size_t i = 0; i < n; i++)
                if (num[i] < '0' || num[i] > '9')
                    return cit_err_set(err, CIT_EFORMAT, "the tree size line is not a number");
            errno = 0;
            c.size = strtoull(num, &e, 10);
            if (errno) return cit_err_set(err, CIT_EFORMAT, "the tree size is out of range");
        } else if (n_lines == 2) {
            if (n >= sizeof(b64) ||
                sodium_base642bin(c.root, sizeof(c.root), l, n, NULL, &rl, NULL,
                                  sodium_base64_VARIANT_ORIGINAL) ||
                rl != LEDGER_HASH)
                return cit_err_set(err, CIT_EFORMAT, "the root hash is not base64 of 32 bytes");
        } else if (n > sizeof(LAST_LEAF) - 1 && !memcmp(l, LAST_LEAF, sizeof(LAST_LEAF) - 1)) {
            size_t k = sizeof(LAST_LEAF) - 1;
            if (c.has_last_leaf || n - k >= sizeof(b64) ||
                sodium_base642bin(c.last_leaf, sizeof(c.last_leaf), l + k, n - k, NULL, &rl, NULL,
                                  sodium_base64_VARIANT_ORIGINAL) ||
                rl != LEDGER_HASH)
                return cit_err_set(err, CIT_EFORMAT, "a malformed citadel-last-leaf line");
            c.has_last_leaf = 1;
        }
        if (++n_lines > 64) return cit_err_set(err, CIT_EFORMAT, "too many lines in the note");
    }
    if (n_lines < 3) return cit_err_set(err, CIT_EFORMAT, "the note lacks origin, size or root");
    body_end = p - 1; /* the signed text ends with the newline before the blank line */
    /* signature lines */
    while (p < end && (size_t)(end - p) >= 4 && !memcmp(p, SIG_DASH, 4)) {
        const char *sp, *name;
        size_t nn;
        uint8_t sig[4 + crypto_sign_BYTES + 8];
        if (next_line(&p, end, &l, &n))
            return cit_err_set(err, CIT_EFORMAT, "a signature line has no newline");
        name = l + 4;
        sp = memchr(name, ' ', n - 4);
        if (!sp) return cit_err_set(err, CIT_EFORMAT, "a signature line has no signature");
        nn = (size_t)(sp - name);
        if (sodium_base642bin(sig, sizeof(sig), sp + 1, (size_t)(l + n - sp - 1), NULL, &rl, NULL,
                              sodium_base64_VARIANT_ORIGINAL) ||
            rl < 4)
            return cit_err_set(err, CIT_EFORMAT, "a signature is not base64");
        if (nn != strlen(vk->name) || memcmp(name, vk->name, nn) || memcmp(sig, vk->id, 4))
            continue; /* another key's: ignored, as the spec says */
        known = 1;
        if (rl != 4 + crypto_sign_BYTES ||
            crypto_sign_verify_detached(sig + 4, (const uint8_t *)text, (size_t)(body_end - text),
                                        vk->pk))
            return cit_err_set(err, CIT_EINVAL, "the signature of %s does not verify", vk->name);
        good = 1;
    }
    if (!known) return cit_err_set(err, CIT_EINVAL, "no signature by the key %s", vk->name);
    if (!good) return cit_err_set(err, CIT_EINVAL, "the signature does not verify");
    *cp = c;
    *used = (size_t)(p - text);
    return 0;
}

/* ---- cosignatures (c2sp.org/tlog-cosignature, Ed25519) ---- */

/* The note body: text up to and with the newline before the blank line. */
static int note_split(const char *text, size_t len, size_t *body_len)
{
    for (size_t i = 0; i + 1 < len; i++)
        if (text[i] == '\n' && text[i + 1] == '\n') {
            *body_len = i + 1;
            return 0;
        }
    return -1;
}

static void cosign_msg(const char *body, size_t n, uint64_t ts, struct cit_buf *m)
{
    cit_buf_printf(m, "cosignature/v1\ntime %llu\n", (unsigned long long)ts);
    cit_buf_add(m, body, n);
}

int ledger_cosign(const struct ledger_skey *w, const char *note, size_t len, uint64_t ts,
                  struct cit_buf *out, struct cit_err *err)
{
    struct cit_buf m = {0};
    uint8_t raw[4 + 8 + crypto_sign_BYTES];
    char b64[128];
    size_t body;
    if (w->vk.type != LEDGER_KEY_COSIGN)
        return cit_err_set(err, CIT_EINVAL, "%s is not a witness's key", w->vk.name);
    if (ts > (uint64_t)INT64_MAX) return cit_err_set(err, CIT_ERANGE, "timestamp out of range");
    if (note_split(note, len, &body) || note[len - 1] != '\n')
        return cit_err_set(err, CIT_EFORMAT, "not a signed note");
    cosign_msg(note, body, ts, &m);
    if (!m.p) return cit_err_set(err, CIT_ENOMEM, "out of memory");
    memcpy(raw, w->vk.id, 4);
    for (int i = 0; i < 8; i++) raw[4 + i] = (uint8_t)(ts >> (56 - 8 * i));
    crypto_sign_detached(raw + 12, NULL, (const uint8_t *)m.p, m.len, w->sk);
    cit_buf_free(&m);
    sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
    cit_buf_add(out, note, len);
    cit_buf_printf(out, SIG_DASH "%s %s\n", w->vk.name, b64);
    return out->p ? 0 : cit_err_set(err, CIT_ENOMEM, "out of memory");
}

int ledger_cosignature_check(const char *note, size_t len, const struct ledger_vkey *w,
                             uint64_t *ts, struct cit_err *err)
{
    size_t body, nl = strlen(w->name);
    const char *p, *end = note + len;
    int seen = 0;
    if (w->type != LEDGER_KEY_COSIGN)
        return cit_err_set(err, CIT_EINVAL, "%s is not a witness's key", w->name);
    if (note_split(note, len, &body)) return cit_err_set(err, CIT_EFORMAT, "not a signed note");
    for (p = note + body + 1; p < end;) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        size_t n = e ? (size_t)(e - p) : (size_t)(end - p);
        uint8_t raw[128];
        size_t rl = 0;
        if (n > 4 + nl + 1 && !memcmp(p, SIG_DASH, 4) && !memcmp(p + 4, w->name, nl) &&
            p[4 + nl] == ' ' &&
            !sodium_base642bin(raw, sizeof(raw), p + 5 + nl, n - 5 - nl, NULL, &rl, NULL,
                               sodium_base64_VARIANT_ORIGINAL) &&
            rl == 4 + 8 + crypto_sign_BYTES && !memcmp(raw, w->id, 4)) {
            struct cit_buf m = {0};
            uint64_t t = 0;
            int ok;
            for (int i = 0; i < 8; i++) t = t << 8 | raw[4 + i];
            cosign_msg(note, body, t, &m);
            ok = m.p && !crypto_sign_verify_detached(raw + 12, (const uint8_t *)m.p, m.len, w->pk);
            cit_buf_free(&m);
            if (ok) {
                if (ts) *ts = t;
                return 0;
            }
            seen = 1;
        }
        p += n + 1;
    }
    return cit_err_set(err, CIT_EINVAL,
                       seen ? "the cosignature of %s does not verify"
                            : "no cosignature by the witness %s",
                       w->name);
}
