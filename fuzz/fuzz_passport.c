/*
 * libFuzzer target for data passports and receipts (make fuzz). The first
 * byte picks what the rest is:
 *
 *   0  a passport's wire text       1  a receipt's wire text
 *   2  a passport's body            3  a receipt's body
 *
 * A wire text goes to open (with a fixed key), peek and hash as it is. A
 * body is first signed with that key, whose secret half the target holds,
 * so that the field parser behind the signature check is reached at all.
 * Each either opens or is refused with words; whatever opens must seal
 * again to the very same wire text (one body per passport: Ed25519 is
 * deterministic and open accepts only seal's own bytes), and peek and hash
 * must agree with open.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "citadel/gateway.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ledger_skey key;

static void key_init(void)
{
    static int have;
    uint8_t seed[32];
    if (have) return;
    if (sodium_init() < 0) abort();
    memset(seed, 7, sizeof(seed));
    crypto_sign_seed_keypair(key.vk.pk, key.sk, seed);
    memcpy(key.vk.name, "fuzz.example/audit", 19);
    key.vk.type = LEDGER_KEY_SIGN;
    have = 1;
}

/* body signed with the fixed key under ctx, as a wire text into out
 * (malloc'd), or NULL when it would not fit. */
static char *wrap(const char *ctx, const uint8_t *body, size_t n)
{
    size_t cl = strlen(ctx),
           b64 = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    uint8_t *m = malloc(cl + n + 1), sig[64];
    char *out = malloc(b64 + 100);
    if (!m || !out) abort();
    memcpy(m, ctx, cl);
    if (n) memcpy(m + cl, body, n);
    crypto_sign_detached(sig, NULL, m, cl + n, key.sk);
    sodium_bin2base64(out, b64, body, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    out[b64 - 1] = '.';
    sodium_bin2base64(out + b64, 100, sig, sizeof(sig), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    free(m);
    return out;
}

static void passport(const char *w, size_t n)
{
    struct gw_passport p, q;
    struct cit_buf again = {0};
    struct cit_err err = {{0}};
    uint8_t h[32], h2[32];
    int rc = gw_passport_open(w, n, &key.vk, &p, h, &err);
    int peeked = gw_passport_peek(w, n, &q, NULL);
    if (rc) {
        if (!err.msg[0] || strncmp(err.msg, "passport: ", 10)) abort();
        return;
    }
    if (peeked || memcmp(&p, &q, sizeof(p))) abort();
    if (gw_passport_hash(w, n, h2) || memcmp(h, h2, 32)) abort();
    if (gw_passport_seal(&p, &key, &again) || again.len != n || memcmp(again.p, w, n)) abort();
    cit_buf_free(&again);
}

static void receipt(const char *w, size_t n)
{
    struct gw_receipt r, s;
    struct cit_buf again = {0};
    struct cit_err err = {{0}};
    int rc = gw_receipt_open(w, n, &key.vk, &r, &err);
    int peeked = gw_receipt_peek(w, n, &s, NULL);
    if (rc) {
        if (!err.msg[0] || strncmp(err.msg, "receipt: ", 9)) abort();
        return;
    }
    if (peeked || memcmp(&r, &s, sizeof(r))) abort();
    if (gw_receipt_seal(&r, &key, &again) || again.len != n || memcmp(again.p, w, n)) abort();
    cit_buf_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *w;
    size_t n;
    key_init();
    if (size < 1 || size > 2 * GW_MAX_WIRE) return 0;
    n = size - 1;
    if (data[0] & 2) {
        w = wrap(data[0] & 1 ? "citadel-receipt/v1\n" : "citadel-passport/v1\n", data + 1, n);
        n = strlen(w);
    } else {
        /* a copy of exactly n bytes, so that ASan sees any read past them */
        if (!(w = malloc(n ? n : 1))) abort();
        memcpy(w, data + 1, n);
    }
    if (data[0] & 1)
        receipt(w, n);
    else
        passport(w, n);
    free(w);
    return 0;
}
