/*
 * Paillier aggregation with threshold decryption, on GMP.
 *
 * Keys (Damgard-Jurik 2001 with s = 1, after Shoup's threshold RSA): N = pq
 * with safe primes p = 2p' + 1, q = 2q' + 1, m = p'q'. The secret exponent
 * d satisfies d = 0 mod m and d = 1 mod N; it is Shamir-shared over Z_{Nm}
 * with a polynomial of degree t - 1, party i holding s_i = f(i). The dealer
 * (fl_pai_keygen) forgets p, q and d once the shares are out, so no single
 * party can decrypt: it takes t of them.
 *
 *   encrypt   c = (1 + N)^M * hs^a mod N^2, with hs = h^N for a random h and
 *             a uniform exponent a of |N|/2 bits (Damgard-Jurik-Nielsen's
 *             faster randomiser; hs^a comes from a fixed-base table)
 *   add       c1 * c2 mod N^2 encrypts M1 + M2
 *   share     c_i = c^(2 Delta s_i) mod N^2, Delta = parties!
 *   combine   c' = prod c_i^(2 mu_i), mu_i = Delta * prod_{j != i} j / (j - i)
 *             = c^(4 Delta^2 d) = 1 + 4 Delta^2 M N, so M = L(c') / (4 Delta^2)
 *             mod N with L(x) = (x - 1) / N
 *
 * Packing: a plaintext holds `slots` values of slot_bits bits each, the
 * lowest first; slot_bits = 32 + bits(max_clients), so that summing that
 * many u32 never carries into the next slot. Each slot of the decrypted sum
 * is taken mod 2^32: the ring sum SecAgg+ would give.
 *
 * What it does not do: the decryption shares carry no proof of correctness
 * (a party that sends a bad share corrupts the sum; Shoup's proofs would
 * catch it), and the dealer must be trusted to forget the key.
 */
#include <gmp.h>
#include <sodium.h>
#include <string.h>

#include "fl_int.h"

#define WIN 6 /* fixed-base window, bits */

struct fl_pai {
    unsigned bits; /* of N */
    int parties, threshold;
    mpz_t n, n2, hs, delta;
    size_t nwin;  /* windows of the randomiser exponent */
    mpz_t *table; /* (nwin << WIN): hs^(v * 2^(WIN * j)) at [j << WIN | v] */
};

struct fl_pai_share {
    int id; /* 1..parties */
    mpz_t s;
};

static void rand_mpz(mpz_t r, unsigned bits)
{
    size_t nb = (bits + 7) / 8;
    uint8_t buf[1024];
    randombytes_buf(buf, nb);
    if (bits % 8) buf[0] &= (uint8_t)(0xff >> (8 - bits % 8));
    mpz_import(r, nb, 1, 1, 1, 0, buf);
    sodium_memzero(buf, nb);
}

/* A uniform r in [0, bound). */
static void rand_below(mpz_t r, const mpz_t bound)
{
    unsigned bits = (unsigned)mpz_sizeinbase(bound, 2);
    do rand_mpz(r, bits);
    while (mpz_cmp(r, bound) >= 0);
}

/* A safe prime p = 2q + 1 of `bits` bits; q out too. Candidates are sieved
 * by the small primes first (neither q nor 2q + 1 may have a small factor). */
static void safe_prime(mpz_t p, mpz_t q, unsigned bits)
{
    static const unsigned small[] = {3,   5,   7,   11,  13,  17,  19,  23,  29,  31,  37,  41,
                                     43,  47,  53,  59,  61,  67,  71,  73,  79,  83,  89,  97,
                                     101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157,
                                     163, 167, 173, 179, 181, 191, 193, 197, 199, 211, 223, 227};
    for (;;) {
        int ok = 1;
        rand_mpz(q, bits - 1);
        mpz_setbit(q, bits - 2); /* full size */
        mpz_setbit(q, 0);
        for (size_t i = 0; ok && i < sizeof(small) / sizeof(small[0]); i++) {
            unsigned long r = mpz_fdiv_ui(q, small[i]);
            ok = r != 0 && (2 * r + 1) % small[i] != 0;
        }
        if (!ok || !mpz_probab_prime_p(q, 1)) continue;
        mpz_mul_2exp(p, q, 1);
        mpz_add_ui(p, p, 1);
        if (mpz_probab_prime_p(p, 30) && mpz_probab_prime_p(q, 30)) return;
    }
}

static void fact(mpz_t r, int n)
{
    mpz_fac_ui(r, (unsigned long)n);
}

void fl_pai_free(struct fl_pai *k)
{
    if (!k) return;
    mpz_clears(k->n, k->n2, k->hs, k->delta, NULL);
    for (size_t i = 0; k->table && i < k->nwin << WIN; i++) mpz_clear(k->table[i]);
    cit_free(k->table);
    cit_free(k);
}

void fl_pai_share_free(struct fl_pai_share *s)
{
    if (!s) return;
    mpz_clear(s->s); /* GMP frees without wiping; the share is a secret */
    cit_free(s);
}

/* The public key from N and hs: the table for the randomiser. */
static int pub_new(const mpz_t n, const mpz_t hs, int parties, int threshold, struct fl_pai **out)
{
    struct fl_pai *k = cit_calloc(1, sizeof(*k));
    if (!k) return CIT_ENOMEM;
    mpz_inits(k->n, k->n2, k->hs, k->delta, NULL);
    mpz_set(k->n, n);
    mpz_set(k->hs, hs);
    mpz_mul(k->n2, n, n);
    k->bits = (unsigned)mpz_sizeinbase(n, 2);
    k->parties = parties;
    k->threshold = threshold;
    fact(k->delta, parties);
    k->nwin = (k->bits / 2 + WIN - 1) / WIN;
    k->table = cit_calloc(k->nwin << WIN, sizeof(mpz_t));
    if (!k->table) {
        fl_pai_free(k);
        return CIT_ENOMEM;
    }
    {
        mpz_t base;
        mpz_init_set(base, hs);
        for (size_t j = 0; j < k->nwin; j++) {
            mpz_t *row = k->table + (j << WIN);
            mpz_init_set_ui(row[0], 1);
            for (unsigned v = 1; v < 1u << WIN; v++) {
                mpz_init(row[v]);
                mpz_mul(row[v], row[v - 1], base);
                mpz_mod(row[v], row[v], k->n2);
            }
            mpz_mul(base, row[(1u << WIN) - 1], base); /* base^(2^WIN) */
            mpz_mod(base, base, k->n2);
        }
        mpz_clear(base);
    }
    *out = k;
    return 0;
}

int fl_pai_keygen(unsigned bits, int parties, int threshold, struct fl_pai **pub,
                  struct fl_pai_share **shares, struct cit_err *err)
{
    mpz_t p, q, pp, qq, n, m, nm, d, h, hs, x, coef[FL_MAX_CLIENTS];
    int rc;
    if (bits < 256 || bits > 8192 || bits % 2)
        return cit_err_set(err, CIT_EINVAL, "Paillier: %u-bit modulus", bits);
    if (parties < 1 || parties > FL_MAX_CLIENTS || threshold < 1 || threshold > parties)
        return cit_err_set(err, CIT_EINVAL, "Paillier: %d of %d parties", threshold, parties);
    mpz_inits(p, q, pp, qq, n, m, nm, d, h, hs, x, NULL);
    do {
        safe_prime(p, pp, bits / 2);
        safe_prime(q, qq, bits / 2);
        mpz_mul(n, p, q);
    } while (!mpz_cmp(p, q) || mpz_sizeinbase(n, 2) != bits);
    mpz_mul(m, pp, qq);
    mpz_mul(nm, n, m);
    /* d = m * (m^-1 mod N): 0 mod m, 1 mod N */
    mpz_invert(d, m, n);
    mpz_mul(d, d, m);
    /* hs = h^N mod N^2, h a random unit */
    mpz_mul(x, n, n);
    do rand_below(h, n);
    while (mpz_cmp_ui(h, 1) <= 0);
    mpz_powm(hs, h, n, x);
    rc = pub_new(n, hs, parties, threshold, pub);
    /* shares of d: f(X) = d + a_1 X + ... + a_{t-1} X^(t-1) over Z_{Nm} */
    for (int j = 1; j < threshold; j++) {
        mpz_init(coef[j]);
        rand_below(coef[j], nm);
    }
    for (int i = 0; !rc && i < parties; i++) {
        struct fl_pai_share *s = cit_calloc(1, sizeof(*s));
        if (!s) {
            rc = CIT_ENOMEM;
            break;
        }
        s->id = i + 1;
        mpz_init_set_ui(s->s, 0);
        for (int j = threshold - 1; j >= 1; j--) { /* Horner */
            mpz_add(s->s, s->s, coef[j]);
            mpz_mul_ui(s->s, s->s, (unsigned long)s->id);
        }
        mpz_add(s->s, s->s, d);
        mpz_mod(s->s, s->s, nm);
        shares[i] = s;
    }
    if (rc) {
        for (int i = 0; i < parties; i++) fl_pai_share_free(shares[i]), shares[i] = NULL;
        fl_pai_free(*pub);
        *pub = NULL;
    }
    for (int j = 1; j < threshold; j++) mpz_clear(coef[j]);
    /* the dealer forgets: p, q, m and d are overwritten before release */
    mpz_set_ui(p, 0), mpz_set_ui(q, 0), mpz_set_ui(pp, 0), mpz_set_ui(qq, 0);
    mpz_set_ui(m, 0), mpz_set_ui(d, 0), mpz_set_ui(h, 0);
    mpz_clears(p, q, pp, qq, n, m, nm, d, h, hs, x, NULL);
    return rc;
}

int fl_pai_threshold(const struct fl_pai *k)
{
    return k->threshold;
}

unsigned fl_pai_bits(const struct fl_pai *k)
{
    return k->bits;
}

size_t fl_pai_ct_bytes(const struct fl_pai *k)
{
    return (2 * (size_t)k->bits + 7) / 8;
}

void fl_pai_layout(const struct fl_pai *k, int max_clients, int *slots, int *slot_bits)
{
    int b = 32;
    while ((1L << (b - 32)) < max_clients) b++;
    *slot_bits = b;
    *slots = (int)((k->bits - 2) / (unsigned)b); /* M < N */
}

size_t fl_pai_cts(const struct fl_pai *k, int max_clients, size_t d)
{
    int slots, sb;
    fl_pai_layout(k, max_clients, &slots, &sb);
    return (d + (size_t)slots - 1) / (size_t)slots;
}

static void ct_out(const struct fl_pai *k, const mpz_t c, uint8_t *out)
{
    size_t len = fl_pai_ct_bytes(k), cnt = (mpz_sizeinbase(c, 2) + 7) / 8;
    memset(out, 0, len - cnt);
    mpz_export(out + len - cnt, NULL, 1, 1, 1, 0, c);
}

/* A ciphertext from the wire: it must be a number below N^2. */
static int ct_in(const struct fl_pai *k, mpz_t c, const uint8_t *in)
{
    mpz_import(c, fl_pai_ct_bytes(k), 1, 1, 1, 0, in);
    return mpz_cmp(c, k->n2) < 0 && mpz_sgn(c) > 0 ? 0 : -1;
}

/* hs^a for a uniform a of bits/2 bits, from the table. */
static void randomiser(const struct fl_pai *k, mpz_t r, mpz_t a)
{
    rand_mpz(a, (unsigned)(k->nwin * WIN));
    mpz_set_ui(r, 1);
    for (size_t j = 0; j < k->nwin; j++) {
        unsigned v = 0;
        for (int b = WIN - 1; b >= 0; b--)
            v = v << 1 | (unsigned)mpz_tstbit(a, j * WIN + (unsigned)b);
        if (!v) continue;
        mpz_mul(r, r, k->table[j << WIN | v]);
        mpz_mod(r, r, k->n2);
    }
}

int fl_pai_encrypt(const struct fl_pai *k, int max_clients, const uint32_t *v, size_t d,
                   uint8_t *out)
{
    int slots, sb;
    size_t m;
    mpz_t pt, c, r, a;
    fl_pai_layout(k, max_clients, &slots, &sb);
    m = (d + (size_t)slots - 1) / (size_t)slots;
    mpz_inits(pt, c, r, a, NULL);
    for (size_t i = 0; i < m; i++) {
        /* pack: slot 0 lowest */
        mpz_set_ui(pt, 0);
        for (int s = slots - 1; s >= 0; s--) {
            size_t j = i * (size_t)slots + (size_t)s;
            mpz_mul_2exp(pt, pt, (mp_bitcnt_t)sb);
            if (j < d) mpz_add_ui(pt, pt, v[j]);
        }
        /* (1 + N)^M = 1 + M N mod N^2 */
        mpz_mul(c, pt, k->n);
        mpz_add_ui(c, c, 1);
        randomiser(k, r, a);
        mpz_mul(c, c, r);
        mpz_mod(c, c, k->n2);
        ct_out(k, c, out + i * fl_pai_ct_bytes(k));
    }
    mpz_set_ui(pt, 0);
    mpz_set_ui(a, 0);
    mpz_clears(pt, c, r, a, NULL);
    return 0;
}

int fl_pai_add(const struct fl_pai *k, uint8_t *acc, const uint8_t *ct, size_t m)
{
    mpz_t x, y;
    size_t cb = fl_pai_ct_bytes(k);
    int rc = 0;
    mpz_inits(x, y, NULL);
    for (size_t i = 0; i < m && !rc; i++) {
        if (ct_in(k, x, acc + i * cb) || ct_in(k, y, ct + i * cb)) {
            rc = CIT_EFORMAT;
            break;
        }
        mpz_mul(x, x, y);
        mpz_mod(x, x, k->n2);
        ct_out(k, x, acc + i * cb);
    }
    mpz_clears(x, y, NULL);
    return rc;
}

int fl_pai_decrypt_share(const struct fl_pai *k, const struct fl_pai_share *s, const uint8_t *ct,
                         size_t m, uint8_t *out)
{
    mpz_t e, c;
    size_t cb = fl_pai_ct_bytes(k);
    int rc = 0;
    mpz_inits(e, c, NULL);
    mpz_mul(e, s->s, k->delta);
    mpz_mul_2exp(e, e, 1);
    for (size_t i = 0; i < m; i++) {
        if (ct_in(k, c, ct + i * cb)) {
            rc = CIT_EFORMAT;
            break;
        }
        mpz_powm_sec(c, c, e, k->n2); /* the exponent is the secret: constant time */
        ct_out(k, c, out + i * cb);
    }
    mpz_set_ui(e, 0);
    mpz_clears(e, c, NULL);
    return rc;
}

int fl_pai_share_id(const struct fl_pai_share *s)
{
    return s->id;
}

int fl_pai_combine(const struct fl_pai *k, int max_clients, const int *ids,
                   const uint8_t *const *shares, int t, size_t d, uint32_t *sum,
                   struct cit_err *err)
{
    int slots, sb, rc = 0;
    size_t m, cb = fl_pai_ct_bytes(k);
    mpz_t mu[FL_MAX_CLIENTS], c, x, inv, num, den;
    if (t != k->threshold)
        return cit_err_set(err, CIT_EINVAL, "Paillier: %d decryption shares, %d needed", t,
                           k->threshold);
    for (int i = 0; i < t; i++) {
        if (ids[i] < 1 || ids[i] > k->parties)
            return cit_err_set(err, CIT_EINVAL, "Paillier: share of party %d", ids[i]);
        for (int j = 0; j < i; j++)
            if (ids[i] == ids[j])
                return cit_err_set(err, CIT_EINVAL, "Paillier: two shares of party %d", ids[i]);
    }
    fl_pai_layout(k, max_clients, &slots, &sb);
    m = (d + (size_t)slots - 1) / (size_t)slots;
    mpz_inits(c, x, inv, num, den, NULL);
    /* mu_i = Delta * prod_{j != i} j / (j - i): an integer, as Delta = l! */
    for (int i = 0; i < t; i++) {
        mpz_init_set(mu[i], k->delta);
        mpz_set_ui(num, 1);
        mpz_set_si(den, 1);
        for (int j = 0; j < t; j++) {
            if (j == i) continue;
            mpz_mul_si(num, num, ids[j]);
            mpz_mul_si(den, den, ids[j] - ids[i]);
        }
        mpz_mul(mu[i], mu[i], num);
        mpz_divexact(mu[i], mu[i], den);
        mpz_mul_2exp(mu[i], mu[i], 1);
    }
    /* (4 Delta^2)^-1 mod N */
    mpz_mul(inv, k->delta, k->delta);
    mpz_mul_2exp(inv, inv, 2);
    mpz_invert(inv, inv, k->n);
    for (size_t b = 0; b < m && !rc; b++) {
        mpz_set_ui(c, 1);
        for (int i = 0; i < t; i++) {
            if (ct_in(k, x, shares[i] + b * cb)) {
                rc = cit_err_set(err, CIT_EFORMAT,
                                 "Paillier: share %d of party %d is not below N^2", (int)b, ids[i]);
                break;
            }
            if (mpz_sgn(mu[i]) < 0) {
                mpz_neg(num, mu[i]);
                mpz_powm(x, x, num, k->n2);
                if (!mpz_invert(x, x, k->n2)) {
                    rc = cit_err_set(err, CIT_EFORMAT, "Paillier: share of party %d", ids[i]);
                    break;
                }
            } else {
                mpz_powm(x, x, mu[i], k->n2);
            }
            mpz_mul(c, c, x);
            mpz_mod(c, c, k->n2);
        }
        if (rc) break;
        /* L(c) = (c - 1) / N, then times (4 Delta^2)^-1 */
        mpz_sub_ui(c, c, 1);
        if (!mpz_divisible_p(c, k->n)) {
            rc = cit_err_set(err, CIT_EFORMAT,
                             "Paillier: the shares do not combine (a wrong or forged share)");
            break;
        }
        mpz_divexact(c, c, k->n);
        mpz_mul(c, c, inv);
        mpz_mod(c, c, k->n);
        for (int s = 0; s < slots; s++) {
            size_t j = b * (size_t)slots + (size_t)s;
            if (j < d) sum[j] = (uint32_t)mpz_getlimbn(c, 0); /* the slot mod 2^32 */
            mpz_fdiv_q_2exp(c, c, (mp_bitcnt_t)sb);
        }
    }
    for (int i = 0; i < t; i++) mpz_clear(mu[i]);
    mpz_clears(c, x, inv, num, den, NULL);
    return rc;
}

/* ---- key files ----
 * Text, one field per line:
 *   citadel-fl-paillier v1
 *   bits B / parties P / threshold T / n HEX / hs HEX
 *   and for a party's file: id I / s HEX
 * A party's file is secret (mode 0600); the public file has no id or s. */

/* Appends "name HEX\n", wiping the digits it went through. */
static int put_hex(struct cit_buf *b, const char *name, const mpz_t x)
{
    size_t n = mpz_sizeinbase(x, 16) + 2;
    char *t = cit_malloc(n);
    int rc;
    if (!t) return CIT_ENOMEM;
    mpz_get_str(t, 16, x);
    rc = cit_buf_printf(b, "%s %s\n", name, t);
    sodium_memzero(t, n);
    cit_free(t);
    return rc;
}

int fl_pai_save(const struct fl_pai *k, const struct fl_pai_share *s, const char *path,
                struct cit_err *err)
{
    struct cit_buf b = {0};
    int rc = cit_buf_printf(&b, "citadel-fl-paillier v1\nbits %u\nparties %d\nthreshold %d\n",
                            k->bits, k->parties, k->threshold);
    if (!rc) rc = put_hex(&b, "n", k->n);
    if (!rc) rc = put_hex(&b, "hs", k->hs);
    if (!rc && s) rc = cit_buf_printf(&b, "id %d\n", s->id);
    if (!rc && s) rc = put_hex(&b, "s", s->s);
    rc = rc ? cit_err_set(err, rc, "%s: out of memory", path)
            : cit_write_file(path, b.p, b.len, s ? 0600 : 0644, err);
    if (b.p) sodium_memzero(b.p, b.len);
    cit_buf_free(&b);
    return rc;
}

/* "NAME VALUE\n" at *p: the value's text, NUL-terminated in place. */
static char *field(char **p, const char *name)
{
    size_t n = strlen(name);
    char *v, *nl;
    if (strncmp(*p, name, n) || (*p)[n] != ' ') return NULL;
    v = *p + n + 1;
    if (!(nl = strchr(v, '\n'))) return NULL;
    *nl = 0;
    *p = nl + 1;
    return v;
}

int fl_pai_load(const char *path, struct fl_pai **out, struct fl_pai_share **share,
                struct cit_err *err)
{
    struct cit_buf b = {0};
    char *p, *v;
    long bits = 0, parties = 0, thr = 0, id = 0;
    mpz_t n, hs, sv;
    int rc = cit_read_file(path, 1 << 16, &b, err), bad = 0;
    *out = NULL;
    if (share) *share = NULL;
    if (rc == CIT_ENOENT) return cit_err_set(err, rc, "%s: no such file", path);
    if (rc) return rc;
    mpz_inits(n, hs, sv, NULL);
    p = b.p ? b.p : (char *)"";
    if (strncmp(p, "citadel-fl-paillier v1\n", 23)) bad = 1;
    p += bad ? 0 : 23;
    if (!bad && (v = field(&p, "bits")))
        bits = strtol(v, NULL, 10);
    else
        bad = 1;
    if (!bad && (v = field(&p, "parties")))
        parties = strtol(v, NULL, 10);
    else
        bad = 1;
    if (!bad && (v = field(&p, "threshold")))
        thr = strtol(v, NULL, 10);
    else
        bad = 1;
    if (!bad && (v = field(&p, "n")))
        bad = mpz_set_str(n, v, 16) != 0;
    else
        bad = 1;
    if (!bad && (v = field(&p, "hs")))
        bad = mpz_set_str(hs, v, 16) != 0;
    else
        bad = 1;
    if (!bad && share && (v = field(&p, "id"))) {
        id = strtol(v, NULL, 10);
        if ((v = field(&p, "s")))
            bad = mpz_set_str(sv, v, 16) != 0;
        else
            bad = 1;
    }
    if (!bad && (bits < 256 || bits > 8192 || (long)mpz_sizeinbase(n, 2) != bits || parties < 1 ||
                 parties > FL_MAX_CLIENTS || thr < 1 || thr > parties || mpz_sgn(hs) <= 0 ||
                 mpz_sizeinbase(hs, 2) > 2 * (size_t)bits ||
                 (share && (id < 1 || id > parties || mpz_sgn(sv) < 0 ||
                            mpz_sizeinbase(sv, 2) > 2 * (size_t)bits))))
        bad = 1;
    if (!bad && share && !id) bad = 1; /* a party's file must hold its share */
    if (bad) {
        rc = cit_err_set(err, CIT_EFORMAT, "%s: not a Paillier %s file", path,
                         share ? "key share" : "public key");
    } else if (!(rc = pub_new(n, hs, (int)parties, (int)thr, out)) && share) {
        struct fl_pai_share *s = cit_calloc(1, sizeof(*s));
        if (!s) {
            rc = CIT_ENOMEM;
            fl_pai_free(*out);
            *out = NULL;
        } else {
            s->id = (int)id;
            mpz_init_set(s->s, sv);
            *share = s;
        }
    }
    mpz_set_ui(sv, 0);
    mpz_clears(n, hs, sv, NULL);
    sodium_memzero(b.p, b.len);
    cit_buf_free(&b);
    return rc;
}
