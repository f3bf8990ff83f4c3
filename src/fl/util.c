/*
 * The small pieces under the fl module: a repeatable generator, the frame
 * reader and writer, Shamir sharing over GF(2^8) and ChaCha20 mask
 * expansion.
 */
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <string.h>

#include "fl_int.h"

/* ---- the seeded generator (core's xoshiro256**) ---- */

void fl_rng_seed(struct fl_rng *r, uint64_t seed)
{
    cit_rng_seed(r->s, seed);
}

uint64_t fl_rng_next(struct fl_rng *r)
{
    return cit_rng_next(r->s);
}

double fl_rng_uniform(struct fl_rng *r)
{
    return ((double)(fl_rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

double fl_rng_normal(struct fl_rng *r)
{
    double u = fl_rng_uniform(r), v = fl_rng_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

size_t fl_rng_below(struct fl_rng *r, size_t n)
{
    uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
    do x = fl_rng_next(r);
    while (x >= lim);
    return (size_t)(x % n);
}

/* ---- frames ---- */

void fl_wr_begin(struct fl_wr *w, struct cit_buf *b, int type)
{
    uint8_t h[FL_HDR] = {'C', 'F', 'L', FL_VERSION, (uint8_t)type, 0, 0, 0, 0, 0, 0, 0};
    w->b = b;
    w->start = b->len;
    w->failed = cit_buf_add(b, h, sizeof(h)) != 0;
}

void fl_wr_bytes(struct fl_wr *w, const void *p, size_t n)
{
    if (!w->failed && n && cit_buf_add(w->b, p, n)) w->failed = 1;
}

void fl_wr_u8(struct fl_wr *w, uint8_t v)
{
    fl_wr_bytes(w, &v, 1);
}

void fl_wr_u32(struct fl_wr *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    fl_wr_bytes(w, b, 4);
}

void fl_wr_u32s(struct fl_wr *w, const uint32_t *v, size_t n)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    fl_wr_bytes(w, v, n * 4);
#else
    for (size_t i = 0; i < n; i++) fl_wr_u32(w, v[i]);
#endif
}

size_t fl_wr_slot(struct fl_wr *w)
{
    size_t at = w->b->len;
    fl_wr_u32(w, 0);
    return at;
}

void fl_wr_fill(struct fl_wr *w, size_t slot, uint32_t v)
{
    uint8_t *p;
    if (w->failed) return;
    p = (uint8_t *)w->b->p + slot;
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

void fl_wr_u64(struct fl_wr *w, uint64_t v)
{
    fl_wr_u32(w, (uint32_t)v);
    fl_wr_u32(w, (uint32_t)(v >> 32));
}

int fl_wr_end(struct fl_wr *w)
{
    size_t body;
    uint8_t *h;
    if (w->failed) return CIT_ENOMEM;
    body = w->b->len - w->start - FL_HDR;
    if (body > FL_MAX_FRAME) return CIT_ERANGE;
    h = (uint8_t *)w->b->p + w->start + 8;
    h[0] = (uint8_t)body;
    h[1] = (uint8_t)(body >> 8);
    h[2] = (uint8_t)(body >> 16);
    h[3] = (uint8_t)(body >> 24);
    return 0;
}

int fl_abort_frame(struct cit_buf *out, const char *why)
{
    struct fl_wr w;
    out->len = 0;
    fl_wr_begin(&w, out, FL_MSG_ABORT);
    fl_wr_bytes(&w, why, strnlen(why, FL_ABORT_MAX));
    return fl_wr_end(&w);
}

int fl_frame_parse(const uint8_t hdr[FL_HDR], int *type, uint32_t *len, struct cit_err *err)
{
    uint32_t l;
    if (memcmp(hdr, FL_MAGIC, 3))
        return cit_err_set(err, CIT_EFORMAT, "frame: bad magic at byte 0 (not a citadel-fl peer)");
    if (hdr[3] != FL_VERSION)
        return cit_err_set(err, CIT_EFORMAT, "frame: version %u at byte 3 (this node speaks %u)",
                           hdr[3], FL_VERSION);
    if (hdr[5] | hdr[6] | hdr[7])
        return cit_err_set(err, CIT_EFORMAT, "frame: reserved bytes 5..7 are not zero");
    l = (uint32_t)hdr[8] | (uint32_t)hdr[9] << 8 | (uint32_t)hdr[10] << 16 |
        (uint32_t)hdr[11] << 24;
    if (l > FL_MAX_FRAME)
        return cit_err_set(err, CIT_ERANGE, "frame: body of %u bytes is over the %u-byte cap", l,
                           FL_MAX_FRAME);
    *type = hdr[4];
    *len = l;
    return 0;
}

static void rd_fail(struct fl_rd *r, const char *what, size_t need)
{
    if (r->failed) return;
    r->failed = 1;
    cit_err_set(r->err, CIT_EFORMAT, "%s: field '%s' at byte %zu needs %zu bytes, %zu left",
                fl_msg_name(r->type), what, r->off, need, r->n - r->off);
}

int fl_rd_begin(struct fl_rd *r, const uint8_t *frame, size_t len, struct cit_err *err)
{
    uint32_t body;
    int rc;
    memset(r, 0, sizeof(*r));
    r->err = err;
    if (len < FL_HDR)
        return cit_err_set(err, CIT_EFORMAT, "frame: %zu bytes, shorter than its header", len);
    rc = fl_frame_parse(frame, &r->type, &body, err);
    if (rc) return rc;
    if (body != len - FL_HDR)
        return cit_err_set(err, CIT_EFORMAT, "frame: header says %u body bytes, %zu came", body,
                           len - FL_HDR);
    r->p = frame;
    r->n = len;
    r->off = FL_HDR;
    return 0;
}

const uint8_t *fl_rd_bytes(struct fl_rd *r, size_t n, const char *what)
{
    static const uint8_t zero[64];
    const uint8_t *p;
    if (r->failed || n > r->n - r->off) {
        rd_fail(r, what, n);
        return n <= sizeof(zero) ? zero : NULL;
    }
    p = r->p + r->off;
    r->off += n;
    return p;
}

uint8_t fl_rd_u8(struct fl_rd *r, const char *what)
{
    return fl_rd_bytes(r, 1, what)[0];
}

uint32_t fl_rd_u32(struct fl_rd *r, const char *what)
{
    const uint8_t *b = fl_rd_bytes(r, 4, what);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

uint64_t fl_rd_u64(struct fl_rd *r, const char *what)
{
    uint64_t lo = fl_rd_u32(r, what);
    return lo | (uint64_t)fl_rd_u32(r, what) << 32;
}

uint32_t fl_rd_count(struct fl_rd *r, uint32_t cap, size_t entry, const char *what)
{
    size_t at = r->off;
    uint32_t n = fl_rd_u32(r, what);
    if (r->failed) return 0;
    if (n > cap) {
        r->failed = 1;
        cit_err_set(r->err, CIT_ERANGE, "%s: count '%s' at byte %zu is %u, over the cap of %u",
                    fl_msg_name(r->type), what, at, n, cap);
        return 0;
    }
    if (entry && (size_t)n > (r->n - r->off) / entry) {
        r->failed = 1;
        cit_err_set(r->err, CIT_EFORMAT,
                    "%s: count '%s' at byte %zu is %u, but only %zu bytes follow (%zu each)",
                    fl_msg_name(r->type), what, at, n, r->n - r->off, entry);
        return 0;
    }
    return n;
}

int fl_rd_end(struct fl_rd *r)
{
    if (r->failed) return CIT_EFORMAT;
    if (r->off != r->n)
        return cit_err_set(r->err, CIT_EFORMAT, "%s: %zu unread bytes at the end",
                           fl_msg_name(r->type), r->n - r->off);
    return 0;
}

const char *fl_msg_name(int type)
{
    switch (type) {
    case FL_MSG_SA_SETUP:
        return "SA_SETUP";
    case FL_MSG_SA_KEYS:
        return "SA_KEYS";
    case FL_MSG_SA_PEERS:
        return "SA_PEERS";
    case FL_MSG_SA_SHARES:
        return "SA_SHARES";
    case FL_MSG_SA_INBOX:
        return "SA_INBOX";
    case FL_MSG_SA_MASKED:
        return "SA_MASKED";
    case FL_MSG_SA_ALIVE:
        return "SA_ALIVE";
    case FL_MSG_SA_SIGN:
        return "SA_SIGN";
    case FL_MSG_SA_SIGS:
        return "SA_SIGS";
    case FL_MSG_SA_REVEAL:
        return "SA_REVEAL";
    case FL_MSG_SA_DONE:
        return "SA_DONE";
    case FL_MSG_TASK:
        return "TASK";
    case FL_MSG_READY:
        return "READY";
    case FL_MSG_FINISH:
        return "FINISH";
    case FL_MSG_PA_DECRYPT:
        return "PA_DECRYPT";
    case FL_MSG_PA_SHARE:
        return "PA_SHARE";
    case FL_MSG_ABORT:
        return "ABORT";
    default:
        return "frame";
    }
}

/* ---- GF(2^8), polynomial x^8 + x^4 + x^3 + x + 1 ---- */

static uint8_t gf_mul(uint8_t a, uint8_t b)
{
    uint8_t r = 0;
    for (int i = 0; i < 8; i++) {
        r ^= (uint8_t)(-(b & 1)) & a;
        a = (uint8_t)((a << 1) ^ ((uint8_t)(-(a >> 7)) & 0x1b));
        b >>= 1;
    }
    return r;
}

/* a^254 = a^-1 (and 0 for 0), by a fixed chain of squarings. */
static uint8_t gf_inv(uint8_t a)
{
    uint8_t r = 1, p = a;
    for (int i = 1; i < 8; i++) { /* 254 = 0b11111110 */
        p = gf_mul(p, p);
        r = gf_mul(r, p);
    }
    return r;
}

void fl_shamir_split(const uint8_t secret[32], int t, const uint8_t *xs, int count,
                     uint8_t (*shares)[32])
{
    uint8_t coef[255][32];
    randombytes_buf(coef, sizeof(coef[0]) * (size_t)(t > 1 ? t - 1 : 1));
    for (int s = 0; s < count; s++) {
        for (int b = 0; b < 32; b++) {
            uint8_t acc = 0; /* Horner from the top coefficient */
            for (int j = t - 2; j >= 0; j--) acc = gf_mul(acc, xs[s]) ^ coef[j][b];
            shares[s][b] = gf_mul(acc, xs[s]) ^ secret[b];
        }
    }
    sodium_memzero(coef, sizeof(coef));
}

int fl_shamir_combine(const uint8_t *xs, const uint8_t (*shares)[32], int t, uint8_t secret[32])
{
    uint8_t out[32] = {0};
    for (int i = 0; i < t; i++) {
        uint8_t num = 1, den = 1;
        if (!xs[i]) return -1;
        for (int j = 0; j < t; j++) {
            if (j == i) continue;
            if (xs[j] == xs[i]) return -1;
            num = gf_mul(num, xs[j]); /* (0 - x_j) = x_j in GF(2^8) */
            den = gf_mul(den, xs[i] ^ xs[j]);
        }
        uint8_t l = gf_mul(num, gf_inv(den));
        for (int b = 0; b < 32; b++) out[b] ^= gf_mul(l, shares[i][b]);
    }
    memcpy(secret, out, 32);
    sodium_memzero(out, sizeof(out));
    return 0;
}

/* ---- masks ---- */

#define MASK_CHUNK 4096 /* u32 per keystream block: 16 KiB, stays in L1 */
#define MASK_MAX   256  /* seeds applied in one pass: a client's k + 1 */

/* ChaCha20 (RFC 8439: 32-bit block counter from 0, 96-bit nonce) from
 * OpenSSL, whose vector code runs twice as fast as libsodium's here; the
 * keystream is the same. It is read as little-endian u32, so that masks
 * agree across architectures. */
int fl_masks_apply(const uint8_t (*seeds)[32], const int *signs, int m, uint32_t *acc, size_t d)
{
    static const uint8_t iv[16] = {0, 0, 0, 0, 'f', 'l', 'm', 'a', 's', 'k'};
    static const uint8_t zeros[MASK_CHUNK * 4];
    EVP_CIPHER_CTX *ctx[MASK_MAX] = {0};
    uint32_t ks[MASK_CHUNK];
    int rc = 0, opened = 0;
    if (m < 0 || m > MASK_MAX) return CIT_EINVAL;
    if ((uint64_t)d * 4 > (uint64_t)UINT32_MAX * 64) return CIT_ERANGE; /* the counter's reach */
    for (; opened < m; opened++) {
        ctx[opened] = EVP_CIPHER_CTX_new();
        if (!ctx[opened] ||
            EVP_EncryptInit_ex(ctx[opened], EVP_chacha20(), NULL, seeds[opened], iv) != 1) {
            rc = CIT_ENOMEM;
            goto out;
        }
    }
    /* chunk outside, seeds inside: the chunk of acc stays in L1 while every
     * mask is added to it */
    for (size_t at = 0; at < d; at += MASK_CHUNK) {
        size_t n = d - at < MASK_CHUNK ? d - at : MASK_CHUNK;
        uint32_t *a = acc + at;
        for (int s = 0; s < m; s++) {
            int outl;
            if (EVP_EncryptUpdate(ctx[s], (uint8_t *)ks, &outl, zeros, (int)(n * 4)) != 1) {
                rc = CIT_EINVAL;
                goto out;
            }
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
            for (size_t i = 0; i < n; i++) ks[i] = __builtin_bswap32(ks[i]);
#endif
            if (signs[s] > 0)
                for (size_t i = 0; i < n; i++) a[i] += ks[i];
            else
                for (size_t i = 0; i < n; i++) a[i] -= ks[i];
        }
    }
out:
    OPENSSL_cleanse(ks, sizeof(ks));
    for (int s = 0; s < opened; s++) EVP_CIPHER_CTX_free(ctx[s]);
    return rc;
}

int fl_mask_apply(const uint8_t seed[32], uint32_t *acc, size_t d, int sign)
{
    return fl_masks_apply((const uint8_t(*)[32])seed, &sign, 1, acc, d);
}

void fl_sha256(uint8_t out[32], const void *a, size_t an, const void *b, size_t bn, const void *c,
               size_t cn)
{
    /* OpenSSL's, for the SHA extensions: masked vectors are megabytes */
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned len = 32;
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, a, an) != 1 || (b && EVP_DigestUpdate(ctx, b, bn) != 1) ||
        (c && EVP_DigestUpdate(ctx, c, cn) != 1) || EVP_DigestFinal_ex(ctx, out, &len) != 1) {
        /* only allocation can fail here; a digest of nothing but zeros would
         * be a silent lie, so fall back to libsodium's */
        crypto_hash_sha256_state st;
        crypto_hash_sha256_init(&st);
        crypto_hash_sha256_update(&st, a, an);
        if (b) crypto_hash_sha256_update(&st, b, bn);
        if (c) crypto_hash_sha256_update(&st, c, cn);
        crypto_hash_sha256_final(&st, out);
    }
    EVP_MD_CTX_free(ctx);
}
