/*
 * Data passports and receipts: sealing (compact JSON, Ed25519, base64url)
 * and strict opening. The wire format is in include/citadel/gateway.h.
 *
 * Both kinds are described by one table of fields each, and seal, open and
 * peek walk the table: the body seal writes and the body open accepts come
 * from the same code, which is what lets open demand the exact bytes seal
 * would write (one body, hence one hash, per passport).
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "citadel/gateway.h"

#define VERSION  1
#define SIG_B64  86                    /* base64url of 64 bytes, unpadded */
#define CTX_MAX  24                    /* the longest signing context, with room */
#define BODY_MAX (GW_MAX_WIRE / 4 * 3) /* decoded from at most GW_MAX_WIRE - 1 characters */

enum ftype {
    F_STR,     /* char[size]: UTF-8, no NUL inside */
    F_HEX,     /* char[size]: exactly size - 1 lowercase hex digits */
    F_BYTES32, /* uint8_t[32] as 64 lowercase hex digits */
    F_LIST,    /* char[size] "a,b" as ["a","b"] */
    F_I64,     /* int64_t in [lo, hi] */
    F_U64,     /* uint64_t in [lo, hi] */
    F_INT,     /* int in [lo, hi] */
};

struct field {
    const char *name;
    enum ftype type;
    size_t off, size;
    int64_t lo, hi;
};

#define STR(s, f, t)                                                                               \
    {                                                                                              \
#f, t, offsetof(struct s, f), sizeof(((struct s *)0)->f), 0, 0                             \
    }
#define NUM(s, f, t, lo, hi)                                                                       \
    {                                                                                              \
#f, t, offsetof(struct s, f), sizeof(((struct s *)0)->f), lo, hi                           \
    }

static const struct field passport_fields[] = {
    STR(gw_passport, id, F_HEX),
    STR(gw_passport, origin, F_STR),
    STR(gw_passport, origin_jurisdiction, F_STR),
    STR(gw_passport, to, F_STR),
    STR(gw_passport, classes, F_LIST),
    STR(gw_passport, declared, F_LIST),
    STR(gw_passport, policy, F_HEX),
    STR(gw_passport, rule, F_STR),
    STR(gw_passport, digest, F_BYTES32),
    STR(gw_passport, purpose, F_STR),
    NUM(gw_passport, issued, F_I64, 0, INT64_MAX),
    NUM(gw_passport, expires, F_I64, 0, INT64_MAX),
};

static const struct field receipt_fields[] = {
    STR(gw_receipt, passport, F_HEX),         STR(gw_receipt, receiver, F_STR),
    NUM(gw_receipt, status, F_INT, 100, 599), NUM(gw_receipt, seq, F_U64, 0, INT64_MAX),
    STR(gw_receipt, leaf, F_BYTES32),         NUM(gw_receipt, time, F_I64, 0, INT64_MAX),
};

struct kind {
    const char *what; /* for errors: "passport", "receipt" */
    const char *ctx;  /* signing context */
    const struct field *f;
    int n;
    size_t size; /* of the struct */
};

static const struct kind PASSPORT = {"passport", "citadel-passport/v1\n", passport_fields,
                                     (int)(sizeof(passport_fields) / sizeof(*passport_fields)),
                                     sizeof(struct gw_passport)};
static const struct kind RECEIPT = {"receipt", "citadel-receipt/v1\n", receipt_fields,
                                    (int)(sizeof(receipt_fields) / sizeof(*receipt_fields)),
                                    sizeof(struct gw_receipt)};

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

/* ---- struct -> JSON (seal, and open's canonical check) ---- */

/* The JSON value of field f of the struct at base; NULL (why says why)
 * when the struct holds what the format cannot carry. */
static json_t *field_json(const struct field *f, const void *base, const char **why)
{
    const char *s = (const char *)base + f->off;
    size_t n;
    int64_t v;
    switch (f->type) {
    case F_STR:
    case F_HEX:
    case F_LIST:
        if ((n = strnlen(s, f->size)) == f->size) return *why = "is not NUL-terminated", NULL;
        if (f->type == F_HEX && (n != f->size - 1 || !is_hex(s, n)))
            return *why = "is not lowercase hex of the right length", NULL;
        if (f->type == F_LIST) {
            json_t *a = json_array(), *e;
            for (const char *p = s; a && *p;) {
                size_t m = strcspn(p, ",");
                if (!m || (p[m] == ',' && !p[m + 1])) {
                    json_decref(a);
                    return *why = "has an empty name", NULL;
                }
                if (!(e = json_stringn(p, m)) || json_array_append_new(a, e)) {
                    json_decref(a);
                    return *why = "is not UTF-8", NULL;
                }
                p += m + (p[m] == ',');
            }
            return a ? a : (*why = "out of memory", NULL);
        }
        {
            json_t *j = json_stringn(s, n);
            return j ? j : (*why = "is not UTF-8", NULL);
        }
    case F_BYTES32: {
        char hex[65];
        sodium_bin2hex(hex, sizeof(hex), (const uint8_t *)s, 32);
        return json_string(hex);
    }
    case F_I64:
        memcpy(&v, s, sizeof(v));
        break;
    case F_U64: {
        uint64_t u;
        memcpy(&u, s, sizeof(u));
        if (u > (uint64_t)f->hi) return *why = "is out of range", NULL;
        v = (int64_t)u;
        break;
    }
    case F_INT: {
        int i;
        memcpy(&i, s, sizeof(i));
        v = i;
        break;
    }
    default:
        return *why = "has an unknown type", NULL;
    }
    if (v < f->lo || v > f->hi) return *why = "is out of range", NULL;
    return json_integer((json_int_t)v);
}

/* The body for the struct at base, appended to out: 0, CIT_EINVAL (what
 * names the field, why what is wrong) or CIT_ENOMEM. */
static int body_write(const struct kind *k, const void *base, struct cit_buf *out,
                      const char **what, const char **why)
{
    json_t *o = json_object(), *v;
    char *text = NULL;
    size_t n;
    int rc = 0;
    if (!o || json_object_set_new(o, "v", json_integer(VERSION))) rc = CIT_ENOMEM;
    for (int i = 0; !rc && i < k->n; i++) {
        *why = "out of memory"; /* unless field_json says otherwise */
        if (!(v = field_json(&k->f[i], base, why))) {
            *what = k->f[i].name;
            rc = strcmp(*why, "out of memory") ? CIT_EINVAL : CIT_ENOMEM;
        } else if (json_object_set_new(o, k->f[i].name, v))
            rc = CIT_ENOMEM;
    }
    /* jansson keeps keys in insertion order; JSON_COMPACT drops the spaces */
    if (!rc && !(text = json_dumps(o, JSON_COMPACT))) rc = CIT_ENOMEM;
    if (!rc && (n = strlen(text)) > BODY_MAX) rc = CIT_ERANGE;
    if (!rc && cit_buf_add(out, text, n)) rc = CIT_ENOMEM;
    free(text); /* jansson's, from malloc */
    json_decref(o);
    return rc;
}

/* ---- seal ---- */

static int seal(const struct kind *k, const void *base, const struct ledger_skey *key,
                struct cit_buf *wire)
{
    struct cit_buf msg = {0};
    const char *what = "", *why = "";
    uint8_t sig[crypto_sign_BYTES];
    char sig64[SIG_B64 + 1], *body64 = NULL;
    size_t clen = strlen(k->ctx), blen, b64len, total;
    int rc;
    if ((rc = cit_buf_add(&msg, k->ctx, clen))) return rc;
    if ((rc = body_write(k, base, &msg, &what, &why))) {
        if (rc == CIT_EINVAL)
            cit_log(CIT_LOG_WARN, "%s: cannot seal: field '%s' %s", k->what, what, why);
        cit_buf_free(&msg);
        return rc;
    }
    blen = msg.len - clen;
    b64len = sodium_base64_ENCODED_LEN(blen, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    total = b64len - 1 + 1 + SIG_B64;
    if (total >= GW_MAX_WIRE) {
        cit_log(CIT_LOG_WARN, "%s: cannot seal: %zu bytes, more than %d", k->what, total,
                GW_MAX_WIRE - 1);
        rc = CIT_ERANGE;
    } else if (!(body64 = cit_malloc(b64len)))
        rc = CIT_ENOMEM;
    if (!rc) {
        crypto_sign_detached(sig, NULL, (const uint8_t *)msg.p, msg.len, key->sk);
        sodium_bin2base64(body64, b64len, (const uint8_t *)msg.p + clen, blen,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        sodium_bin2base64(sig64, sizeof(sig64), sig, sizeof(sig),
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        rc = cit_buf_printf(wire, "%s.%s", body64, sig64) ? CIT_ENOMEM : 0;
    }
    cit_free(body64);
    cit_buf_free(&msg);
    return rc;
}

int gw_passport_seal(const struct gw_passport *p, const struct ledger_skey *k, struct cit_buf *wire)
{
    return seal(&PASSPORT, p, k, wire);
}

int gw_receipt_seal(const struct gw_receipt *r, const struct ledger_skey *k, struct cit_buf *wire)
{
    return seal(&RECEIPT, r, k, wire);
}

/* ---- open ---- */

/* Splits and decodes the wire text: buf holds the signing context and then
 * the body (*blen bytes at buf + strlen(k->ctx)), sig the signature. */
static int unwrap(const struct kind *k, const char *wire, size_t len,
                  uint8_t buf[CTX_MAX + BODY_MAX], size_t *blen, uint8_t sig[crypto_sign_BYTES],
                  struct cit_err *err)
{
    const char *dot;
    size_t clen = strlen(k->ctx), n1, sl = 0;
    if (!wire || !len) return cit_err_set(err, CIT_EFORMAT, "%s: empty", k->what);
    if (len >= GW_MAX_WIRE)
        return cit_err_set(err, CIT_EFORMAT, "%s: %zu bytes, more than the %d a wire text may have",
                           k->what, len, GW_MAX_WIRE - 1);
    dot = memchr(wire, '.', len);
    if (!dot || memchr(dot + 1, '.', len - (size_t)(dot + 1 - wire)))
        return cit_err_set(err, CIT_EFORMAT, "%s: expected BODY.SIGNATURE with exactly one '.'",
                           k->what);
    n1 = (size_t)(dot - wire);
    if (sodium_base642bin(sig, crypto_sign_BYTES, dot + 1, len - n1 - 1, NULL, &sl, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) ||
        sl != crypto_sign_BYTES)
        return cit_err_set(err, CIT_EFORMAT,
                           "%s: the signature is not base64url (unpadded) of %d bytes", k->what,
                           crypto_sign_BYTES);
    memcpy(buf, k->ctx, clen);
    if (!n1 || sodium_base642bin(buf + clen, BODY_MAX, wire, n1, NULL, blen, NULL,
                                 sodium_base64_VARIANT_URLSAFE_NO_PADDING))
        return cit_err_set(err, CIT_EFORMAT, "%s: the body is not base64url (unpadded)", k->what);
    return 0;
}

static const char *type_name(enum ftype t)
{
    switch (t) {
    case F_LIST:
        return "an array of strings";
    case F_I64:
    case F_U64:
    case F_INT:
        return "an integer";
    default:
        return "a string";
    }
}

/* Reads field f of j into the struct at base. */
static int field_read(const struct kind *k, const struct field *f, json_t *j, void *base,
                      struct cit_err *err)
{
    char *d = (char *)base + f->off;
    if (!j) return cit_err_set(err, CIT_EFORMAT, "%s: field '%s' missing", k->what, f->name);
    if (f->type == F_LIST                                            ? !json_is_array(j)
        : (f->type == F_I64 || f->type == F_U64 || f->type == F_INT) ? !json_is_integer(j)
                                                                     : !json_is_string(j))
        return cit_err_set(err, CIT_EFORMAT, "%s: field '%s' is not %s", k->what, f->name,
                           type_name(f->type));
    switch (f->type) {
    case F_STR:
    case F_HEX: {
        const char *s = json_string_value(j);
        size_t n = json_string_length(j);
        if (n >= f->size)
            return cit_err_set(err, CIT_EFORMAT, "%s: field '%s' is longer than %zu bytes", k->what,
                               f->name, f->size - 1);
        if (f->type == F_HEX && (n != f->size - 1 || !is_hex(s, n)))
            return cit_err_set(err, CIT_EFORMAT, "%s: field '%s' is not %zu lowercase hex digits",
                               k->what, f->name, f->size - 1);
        memcpy(d, s, n + 1);
        return 0;
    }
    case F_BYTES32: {
        const char *s = json_string_value(j);
        size_t n = json_string_length(j);
        if (n != 64 || !is_hex(s, n) || sodium_hex2bin((uint8_t *)d, 32, s, n, NULL, NULL, NULL))
            return cit_err_set(err, CIT_EFORMAT, "%s: field '%s' is not 64 lowercase hex digits",
                               k->what, f->name);
        return 0;
    }
    case F_LIST: {
        size_t at = 0, i;
        json_t *e;
        json_array_foreach(j, i, e)
        {
            const char *s;
            size_t n;
            if (!json_is_string(e))
                return cit_err_set(err, CIT_EFORMAT, "%s: field '%s': item %zu is not a string",
                                   k->what, f->name, i);
            s = json_string_value(e);
            n = json_string_length(e);
            if (!n || memchr(s, ',', n))
                return cit_err_set(err, CIT_EFORMAT,
                                   "%s: field '%s': item %zu is empty or holds a comma", k->what,
                                   f->name, i);
            if (at + (at != 0) + n >= f->size)
                return cit_err_set(err, CIT_EFORMAT,
                                   "%s: field '%s' is longer than %zu bytes as a list", k->what,
                                   f->name, f->size - 1);
            if (at) d[at++] = ',';
            memcpy(d + at, s, n);
            at += n;
        }
        d[at] = 0;
        return 0;
    }
    default: {
        json_int_t v = json_integer_value(j);
        if (v < f->lo || v > f->hi)
            return cit_err_set(err, CIT_EFORMAT, "%s: field '%s' is %lld, outside [%lld, %lld]",
                               k->what, f->name, (long long)v, (long long)f->lo, (long long)f->hi);
        if (f->type == F_I64) {
            int64_t x = (int64_t)v;
            memcpy(d, &x, sizeof(x));
        } else if (f->type == F_U64) {
            uint64_t x = (uint64_t)v;
            memcpy(d, &x, sizeof(x));
        } else {
            int x = (int)v;
            memcpy(d, &x, sizeof(x));
        }
        return 0;
    }
    }
}

/* s for an error message: at most cap - 1 bytes, anything but printable
 * ASCII as '?' (a key from a peer may hold a terminal's escapes). */
static void printable(const char *s, char *out, size_t cap)
{
    size_t i = 0;
    for (; s[i] && i + 1 < cap; i++) out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    out[i] = 0;
}

/* Parses the body into out (k->size bytes, written only on success). */
static int body_read(const struct kind *k, const uint8_t *body, size_t n, void *out,
                     struct cit_err *err)
{
    json_error_t je;
    json_t *o = json_loadb((const char *)body, n, JSON_REJECT_DUPLICATES, &je), *v;
    union {
        struct gw_passport p;
        struct gw_receipt r;
    } tmp;
    struct cit_buf again = {0};
    const char *key, *what = "", *why = "";
    int rc = 0;
    if (!o)
        return cit_err_set(err, CIT_EFORMAT, "%s: the body is not JSON (%s, at byte %d)", k->what,
                           je.text, je.position);
    if (!json_is_object(o)) {
        json_decref(o);
        return cit_err_set(err, CIT_EFORMAT, "%s: the body is not a JSON object", k->what);
    }
    memset(&tmp, 0, sizeof(tmp));
    json_object_foreach(o, key, v)
    {
        int known = !strcmp(key, "v");
        for (int i = 0; !known && i < k->n; i++) known = !strcmp(key, k->f[i].name);
        if (!known) {
            char shown[40];
            printable(key, shown, sizeof(shown));
            rc = cit_err_set(err, CIT_EFORMAT, "%s: unknown field '%s'", k->what, shown);
            goto out;
        }
    }
    v = json_object_get(o, "v");
    if (!v) {
        rc = cit_err_set(err, CIT_EFORMAT, "%s: field 'v' missing", k->what);
        goto out;
    }
    if (!json_is_integer(v)) {
        rc = cit_err_set(err, CIT_EFORMAT, "%s: field 'v' is not an integer", k->what);
        goto out;
    }
    if (json_integer_value(v) != VERSION) {
        rc = cit_err_set(err, CIT_ENOTSUP, "%s: version %lld, not the %d this build reads", k->what,
                         (long long)json_integer_value(v), VERSION);
        goto out;
    }
    for (int i = 0; !rc && i < k->n; i++)
        rc = field_read(k, &k->f[i], json_object_get(o, k->f[i].name), &tmp, err);
    if (rc) goto out;
    /* what seal writes for these fields must be the body as it came */
    rc = body_write(k, &tmp, &again, &what, &why);
    if (rc == CIT_ENOMEM) {
        rc = cit_err_set(err, rc, "%s: out of memory", k->what);
        goto out;
    }
    if (rc || again.len != n || memcmp(again.p, body, n)) {
        rc = cit_err_set(err, CIT_EFORMAT,
                         "%s: the body is not in the canonical form (keys in order, compact, "
                         "jansson's escapes)",
                         k->what);
        goto out;
    }
    memcpy(out, &tmp, k->size);
out:
    cit_buf_free(&again);
    json_decref(o);
    return rc;
}

/* open (vk given) and peek (vk NULL). */
static int unseal(const struct kind *k, const char *wire, size_t len, const struct ledger_vkey *vk,
                  void *out, uint8_t hash[32], struct cit_err *err)
{
    uint8_t buf[CTX_MAX + BODY_MAX], sig[crypto_sign_BYTES];
    size_t clen = strlen(k->ctx), blen = 0;
    int rc;
    if ((rc = unwrap(k, wire, len, buf, &blen, sig, err))) return rc;
    if (vk && crypto_sign_verify_detached(sig, buf, clen + blen, vk->pk))
        return cit_err_set(err, CIT_EINVAL, "%s: the signature does not verify with the key %s",
                           k->what, vk->name);
    if ((rc = body_read(k, buf + clen, blen, out, err))) return rc;
    if (hash) crypto_hash_sha256(hash, buf + clen, blen);
    return 0;
}

int gw_passport_open(const char *wire, size_t len, const struct ledger_vkey *vk,
                     struct gw_passport *p, uint8_t hash[32], struct cit_err *err)
{
    if (!vk) return cit_err_set(err, CIT_EINVAL, "passport: no key to check it with");
    return unseal(&PASSPORT, wire, len, vk, p, hash, err);
}

int gw_receipt_open(const char *wire, size_t len, const struct ledger_vkey *vk,
                    struct gw_receipt *r, struct cit_err *err)
{
    if (!vk) return cit_err_set(err, CIT_EINVAL, "receipt: no key to check it with");
    return unseal(&RECEIPT, wire, len, vk, r, NULL, err);
}

int gw_passport_peek(const char *wire, size_t len, struct gw_passport *p, struct cit_err *err)
{
    return unseal(&PASSPORT, wire, len, NULL, p, NULL, err);
}

int gw_receipt_peek(const char *wire, size_t len, struct gw_receipt *r, struct cit_err *err)
{
    return unseal(&RECEIPT, wire, len, NULL, r, NULL, err);
}

int gw_passport_hash(const char *wire, size_t len, uint8_t hash[32])
{
    uint8_t buf[CTX_MAX + BODY_MAX], sig[crypto_sign_BYTES], h[32];
    size_t blen = 0, clen = strlen(PASSPORT.ctx);
    int rc = unwrap(&PASSPORT, wire, len, buf, &blen, sig, NULL);
    if (rc) return rc;
    crypto_hash_sha256(h, buf + clen, blen);
    memcpy(hash, h, 32);
    return 0;
}
