/* gateway: data passports and receipts sealed and opened again; every way
 * a wire text can be wrong (framing, base64url, signature, key, fields,
 * sizes, canonical form) refused with words that name it; the hash equal
 * from seal, open and the wire alone, and to SHA-256 of the body computed
 * here; two ledgers cross-checked, agreeing and then each kind of
 * disagreement named by its entry; the CLI over both. */
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>

#include "citadel/gateway.h"
#include "citadel/ledger.h"
#include "test.h"
#include "../src/ledger/ledger_int.h"

static const char POLICY_HEX[] = "5d41402abc4b2a76b9719d911017c592"
                                 "5d41402abc4b2a76b9719d911017c592";

static void make_key(struct ledger_skey *k, const char *name)
{
    memset(k, 0, sizeof(*k));
    crypto_sign_keypair(k->vk.pk, k->sk);
    snprintf(k->vk.name, sizeof(k->vk.name), "%s", name);
    k->vk.type = LEDGER_KEY_SIGN;
}

static void fill_passport(struct gw_passport *p, const char *to, int n)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->id, sizeof(p->id), "00112233445566778899aabbccdd%04x", n & 0xffff);
    snprintf(p->origin, sizeof(p->origin), "node-a");
    snprintf(p->origin_jurisdiction, sizeof(p->origin_jurisdiction), "DE");
    snprintf(p->to, sizeof(p->to), "%s", to);
    snprintf(p->classes, sizeof(p->classes), "personal,health");
    snprintf(p->declared, sizeof(p->declared), "health");
    memcpy(p->policy, POLICY_HEX, 65);
    snprintf(p->rule, sizeof(p->rule), "fwd-\"health\"");
    for (int i = 0; i < 32; i++) p->digest[i] = (uint8_t)(i * 7 + n);
    snprintf(p->purpose, sizeof(p->purpose), "care \xc3\xa9t\xc3\xa9");
    p->issued = 1700000000 + n;
    p->expires = p->issued + 60;
}

/* ctx || body signed with k, as a wire text, into out (cap bytes). */
static void sign_body(const char *ctx, const char *body, size_t blen, const struct ledger_skey *k,
                      char *out, size_t cap)
{
    size_t cl = strlen(ctx);
    uint8_t *m = malloc(cl + blen + 1), sig[64];
    char *b64 = malloc(blen * 2 + 8);
    char s64[100];
    memcpy(m, ctx, cl);
    memcpy(m + cl, body, blen);
    crypto_sign_detached(sig, NULL, m, cl + blen, k->sk);
    sodium_bin2base64(b64, blen * 2 + 8, (const uint8_t *)body, blen,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_bin2base64(s64, sizeof(s64), sig, 64, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    snprintf(out, cap, "%s.%s", b64, s64);
    free(m);
    free(b64);
}

/* The body of a wire text, decoded, into out (NUL-terminated); its length. */
static size_t body_of(const char *wire, char *out, size_t cap)
{
    size_t n = 0;
    const char *dot = strchr(wire, '.');
    if (!dot || sodium_base642bin((uint8_t *)out, cap - 1, wire, (size_t)(dot - wire), NULL, &n,
                                  NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING))
        return 0;
    out[n] = 0;
    return n;
}

/* s with the first from replaced by to, into out. */
static int replace(const char *s, const char *from, const char *to, char *out, size_t cap)
{
    const char *at = strstr(s, from);
    if (!at) return -1;
    snprintf(out, cap, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    return 0;
}

void test_gateway_passport_roundtrip(void)
{
    struct ledger_skey ka, kb;
    struct gw_passport p, q;
    struct gw_receipt r, s;
    struct cit_buf w = {0}, w2 = {0}, rw = {0};
    struct cit_err err = {{0}};
    uint8_t h1[32], h2[32], h3[32];
    char body[GW_MAX_WIRE];
    size_t bl;
    make_key(&ka, "a.example/audit");
    make_key(&kb, "b.example/audit");
    fill_passport(&p, "peer-b", 1);

    CHECK(!gw_passport_seal(&p, &ka, &w));
    CHECKF(w.len < GW_MAX_WIRE && strlen(w.p) == w.len, "%zu", w.len);
    /* base64url, one dot, no padding */
    CHECK(strspn(w.p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") ==
          w.len);
    CHECK(strchr(w.p, '.') == strrchr(w.p, '.'));
    CHECK(!gw_passport_open(w.p, w.len, &ka.vk, &q, h1, &err));
    CHECK(!memcmp(&p, &q, sizeof(p)));

    /* the body: compact, v first, keys in the struct's order */
    CHECK((bl = body_of(w.p, body, sizeof(body))) > 0);
    CHECKF(!strncmp(body,
                    "{\"v\":1,\"id\":\"00112233445566778899aabbccdd0001\",\"origin\":\"node-a\","
                    "\"origin_jurisdiction\":\"DE\",\"to\":\"peer-b\","
                    "\"classes\":[\"personal\",\"health\"],\"declared\":[\"health\"],",
                    strlen("{\"v\":1,\"id\":\"00112233445566778899aabbccdd0001\",\"origin\":"
                           "\"node-a\",\"origin_jurisdiction\":\"DE\",\"to\":\"peer-b\","
                           "\"classes\":[\"personal\",\"health\"],\"declared\":[\"health\"],")),
           "%s", body);
    CHECKF(strstr(body, ",\"rule\":\"fwd-\\\"health\\\"\",\"digest\":\"01080f16") &&
               strstr(body, ",\"purpose\":\"care \xc3\xa9t\xc3\xa9\",\"issued\":1700000001,"
                            "\"expires\":1700000061}"),
           "%s", body);

    /* the hash: open's, the wire's and SHA-256 of the body agree; a second
     * seal (Ed25519 is deterministic) gives the same text */
    CHECK(!gw_passport_hash(w.p, w.len, h2));
    crypto_hash_sha256(h3, (const uint8_t *)body, bl);
    CHECK(!memcmp(h1, h2, 32) && !memcmp(h1, h3, 32));
    CHECK(!gw_passport_seal(&p, &ka, &w2) && w2.len == w.len && !memcmp(w.p, w2.p, w.len));
    /* another passport, another hash */
    fill_passport(&q, "peer-b", 2);
    w2.len = 0;
    CHECK(!gw_passport_seal(&q, &ka, &w2) && !gw_passport_hash(w2.p, w2.len, h3));
    CHECK(memcmp(h1, h3, 32));

    /* peek reads it without the key */
    memset(&q, 0, sizeof(q));
    CHECK(!gw_passport_peek(w.p, w.len, &q, &err) && !memcmp(&p, &q, sizeof(p)));

    /* empty lists and strings */
    memset(p.classes, 0, sizeof(p.classes));
    memset(p.declared, 0, sizeof(p.declared));
    memset(p.purpose, 0, sizeof(p.purpose));
    memset(p.origin_jurisdiction, 0, sizeof(p.origin_jurisdiction));
    w2.len = 0;
    CHECK(!gw_passport_seal(&p, &ka, &w2));
    CHECKF(!gw_passport_open(w2.p, w2.len, &ka.vk, &q, NULL, &err), "%s", err.msg);
    CHECK(!memcmp(&p, &q, sizeof(p)));
    CHECK(body_of(w2.p, body, sizeof(body)) && strstr(body, "\"classes\":[],\"declared\":[]"));

    /* a receipt */
    memset(&r, 0, sizeof(r));
    sodium_bin2hex(r.passport, sizeof(r.passport), h1, 32);
    snprintf(r.receiver, sizeof(r.receiver), "node-b");
    r.status = 200;
    r.seq = (1ull << 62) + 5;
    for (int i = 0; i < 32; i++) r.leaf[i] = (uint8_t)(255 - i);
    r.time = 1700000002;
    CHECK(!gw_receipt_seal(&r, &kb, &rw));
    CHECKF(!gw_receipt_open(rw.p, rw.len, &kb.vk, &s, &err), "%s", err.msg);
    CHECK(!memcmp(&r, &s, sizeof(r)));
    CHECK(body_of(rw.p, body, sizeof(body)));
    CHECKF(!strncmp(body, "{\"v\":1,\"passport\":\"", 19) &&
               strstr(body, "\",\"receiver\":\"node-b\",\"status\":200,\"seq\":4611686018427387909,"
                            "\"leaf\":\"fffefdfc") &&
               strstr(body, "\",\"time\":1700000002}"),
           "%s", body);
    memset(&s, 0, sizeof(s));
    CHECK(!gw_receipt_peek(rw.p, rw.len, &s, &err) && s.seq == r.seq);
    /* a passport is not a receipt, nor the other way: the contexts differ */
    CHECK(gw_receipt_open(w.p, w.len, &ka.vk, &s, &err) == CIT_EINVAL);
    CHECK(gw_passport_open(rw.p, rw.len, &kb.vk, &q, NULL, &err) == CIT_EINVAL);

    /* seal appends */
    {
        struct cit_buf two = {0};
        BUF_LIT(&two, "X-Citadel-Passport: ");
        CHECK(!gw_passport_seal(&q, &ka, &two) && !strncmp(two.p, "X-Citadel-Passport: ", 20));
        cit_buf_free(&two);
    }
    cit_buf_free(&w);
    cit_buf_free(&w2);
    cit_buf_free(&rw);
}

/* open refuses text, leaving its out-parameters as they were, and says what
 * is wrong in words containing want. */
static int refused(const char *wire, size_t len, const struct ledger_vkey *vk, int want_rc,
                   const char *want)
{
    struct gw_passport p;
    struct cit_err err = {{0}};
    uint8_t h[32];
    int rc;
    memset(&p, 0xa5, sizeof(p));
    memset(h, 0x5a, sizeof(h));
    rc = gw_passport_open(wire, len, vk, &p, h, &err);
    CHECK_RET(rc == want_rc, "gave %d (%s), not %d, for %.80s", rc, err.msg, want_rc, wire);
    CHECK_RET(strstr(err.msg, want), "'%s' does not say '%s'", err.msg, want);
    CHECK_RET(!strncmp(err.msg, "passport: ", 10), "%s", err.msg);
    for (size_t i = 0; i < sizeof(p); i++) CHECK_RET(((uint8_t *)&p)[i] == 0xa5, "p was written");
    for (int i = 0; i < 32; i++) CHECK_RET(h[i] == 0x5a, "hash was written");
    return 0;
}

void test_gateway_passport_hostile(void)
{
    struct ledger_skey ka, kb;
    struct gw_passport p;
    struct cit_buf w = {0};
    char t[2 * GW_MAX_WIRE], body[GW_MAX_WIRE], b2[2 * GW_MAX_WIRE];
    size_t dot;
    const char *ctx = "citadel-passport/v1\n";
    make_key(&ka, "a.example/audit");
    make_key(&kb, "b.example/audit");
    fill_passport(&p, "peer-b", 7);
    CHECK(!gw_passport_seal(&p, &ka, &w));
    dot = (size_t)(strchr(w.p, '.') - w.p);
    CHECK(body_of(w.p, body, sizeof(body)));

    /* the framing */
    CHECK(!refused("", 0, &ka.vk, CIT_EFORMAT, "empty"));
    CHECK(!refused(w.p, dot, &ka.vk, CIT_EFORMAT, "exactly one '.'"));
    snprintf(t, sizeof(t), "%.*s.%s", (int)dot, w.p, w.p + dot);
    CHECK(!refused(t, strlen(t), &ka.vk, CIT_EFORMAT, "exactly one '.'"));
    memset(t, 'A', GW_MAX_WIRE);
    t[100] = '.';
    CHECK(!refused(t, GW_MAX_WIRE, &ka.vk, CIT_EFORMAT, "more than the 4095"));
    /* truncated: the signature is short, or the body loses its tail */
    CHECK(!refused(w.p, w.len - 1, &ka.vk, CIT_EFORMAT, "signature is not base64url"));
    CHECK(!refused(w.p, w.len - 4, &ka.vk, CIT_EFORMAT, "signature is not base64url"));
    /* whole groups of four cut off the body: still base64url, no longer signed */
    snprintf(t, sizeof(t), "%.*s%s", (int)(dot / 4 * 4 - 4), w.p, w.p + dot);
    CHECK(!refused(t, strlen(t), &ka.vk, CIT_EINVAL, "signature does not verify"));
    /* one character past a group is never base64url (six bits, no byte) */
    snprintf(t, sizeof(t), "%.*s%s", (int)(dot / 4 * 4 - 3), w.p, w.p + dot);
    CHECK(!refused(t, strlen(t), &ka.vk, CIT_EFORMAT, "body is not base64url"));
    /* bad base64url: standard alphabet, padding, a space, a NUL */
    snprintf(t, sizeof(t), "%s", w.p);
    t[3] = '+';
    CHECK(!refused(t, w.len, &ka.vk, CIT_EFORMAT, "body is not base64url"));
    t[3] = '=';
    CHECK(!refused(t, w.len, &ka.vk, CIT_EFORMAT, "body is not base64url"));
    snprintf(t, sizeof(t), "%s", w.p);
    t[dot + 3] = ' ';
    CHECK(!refused(t, w.len, &ka.vk, CIT_EFORMAT, "signature is not base64url"));
    snprintf(t, sizeof(t), "%s", w.p);
    t[5] = 0;
    CHECK(!refused(t, w.len, &ka.vk, CIT_EFORMAT, "body is not base64url"));
    snprintf(t, sizeof(t), "%s==", w.p);
    CHECK(!refused(t, w.len + 2, &ka.vk, CIT_EFORMAT, "signature is not base64url"));
    /* the last character of the signature carries two unused bits: they
     * must be zero (one signature, one text) */
    snprintf(t, sizeof(t), "%s", w.p);
    {
        static const char a64[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const char *c = strchr(a64, t[w.len - 1]);
        CHECK(c);
        t[w.len - 1] = a64[(c - a64) | 1];
        CHECK(!refused(t, w.len, &ka.vk, CIT_EFORMAT, "signature is not base64url"));
    }

    /* a byte of the body or of the signature changed; another key */
    for (size_t i = 0; i < w.len; i += 7) {
        char c;
        if (i == dot) continue;
        snprintf(t, sizeof(t), "%s", w.p);
        c = t[i];
        t[i] = c == 'A' ? 'B' : 'A';
        {
            struct gw_passport q;
            struct cit_err err = {{0}};
            int rc = gw_passport_open(t, w.len, &ka.vk, &q, NULL, &err);
            CHECKF(rc == CIT_EINVAL ? strstr(err.msg, "signature does not verify") != NULL
                                    : rc == CIT_EFORMAT && strstr(err.msg, "not base64url"),
                   "byte %zu: %d %s", i, rc, err.msg);
        }
    }
    CHECK(!refused(w.p, w.len, &kb.vk, CIT_EINVAL,
                   "signature does not verify with the key "
                   "b.example/audit"));

    /* signed, but the body is wrong: each field named */
    {
        static const struct {
            const char *from, *to, *want;
            int rc;
        } cases[] = {
            {",\"expires\":1700000067", "", "field 'expires' missing", CIT_EFORMAT},
            {"{\"v\":1,", "{", "field 'v' missing", CIT_EFORMAT},
            {"\"expires\":1700000067", "\"expires\":\"1700000067\"",
             "field 'expires' is not an integer", CIT_EFORMAT},
            {"\"expires\":1700000067", "\"expires\":1700000067.0",
             "field 'expires' is not an integer", CIT_EFORMAT},
            {"\"expires\":1700000067", "\"expires\":-1", "field 'expires' is -1, outside",
             CIT_EFORMAT},
            {"\"expires\":1700000067", "\"expires\":99999999999999999999", "not JSON", CIT_EFORMAT},
            {"\"classes\":[\"personal\",\"health\"]", "\"classes\":\"personal,health\"",
             "field 'classes' is not an array of strings", CIT_EFORMAT},
            {"\"classes\":[\"personal\",\"health\"]", "\"classes\":[\"personal\",7]",
             "field 'classes': item 1 is not a string", CIT_EFORMAT},
            {"\"classes\":[\"personal\",\"health\"]", "\"classes\":[\"a,b\"]",
             "field 'classes': item 0 is empty or holds a comma", CIT_EFORMAT},
            {"\"classes\":[\"personal\",\"health\"]", "\"classes\":[\"\"]", "item 0 is empty",
             CIT_EFORMAT},
            {"\"origin\":\"node-a\"", "\"origin\":null", "field 'origin' is not a string",
             CIT_EFORMAT},
            {"\"origin\":\"node-a\"",
             "\"origin\":\"0123456789012345678901234567890123456789012345678901234567890123\"",
             "field 'origin' is longer than 63 bytes", CIT_EFORMAT},
            {"\"origin_jurisdiction\":\"DE\"", "\"origin_jurisdiction\":\"0123456789abcdef\"",
             "field 'origin_jurisdiction' is longer than 15 bytes", CIT_EFORMAT},
            {"\"id\":\"00112233445566778899aabbccdd0007\"",
             "\"id\":\"00112233445566778899AABBCCDD0007\"", "field 'id' is not 32 lowercase hex",
             CIT_EFORMAT},
            {"\"id\":\"00112233445566778899aabbccdd0007\"", "\"id\":\"0011\"",
             "field 'id' is not 32 lowercase hex", CIT_EFORMAT},
            {"\"digest\":\"", "\"digest\":\"zz", "field 'digest' is not 64 lowercase hex",
             CIT_EFORMAT},
            {"\"origin\":\"node-a\"", "\"origin\":\"node-a\",\"extra\":1", "unknown field 'extra'",
             CIT_EFORMAT},
            {"\"origin\":\"node-a\"", "\"origin\":\"node-a\",\"\\u001b[31m\":1",
             "unknown field '?[31m'", CIT_EFORMAT},
            {"\"origin\":\"node-a\"", "\"origin\":\"node-a\",\"origin\":\"x\"", "not JSON",
             CIT_EFORMAT},
            {"\"origin\":\"node-a\"", "\"origin\":\"no\\u0000de\"", "not JSON", CIT_EFORMAT},
            {"\"origin\":\"node-a\"", "\"origin\":\"node\xff\"", "not JSON", CIT_EFORMAT},
            {"{\"v\":1,", "{\"v\":2,", "version 2, not the 1", CIT_ENOTSUP},
            {"{\"v\":1,", "{\"v\":\"1\",", "field 'v' is not an integer", CIT_EFORMAT},
            {"{\"v\":1,", "[{\"v\":1,", "not JSON", CIT_EFORMAT},
            /* well-formed and complete, but not as seal writes it */
            {"{\"v\":1,", "{ \"v\":1,", "canonical form", CIT_EFORMAT},
            {"\"origin\":\"node-a\"", "\"origin\":\"nod\\u0065-a\"", "canonical form", CIT_EFORMAT},
            {"\"issued\":1700000007,\"expires\":1700000067",
             "\"expires\":1700000067,\"issued\":1700000007", "canonical form", CIT_EFORMAT},
            {"\"expires\":1700000067", "\"expires\":01700000067", "not JSON", CIT_EFORMAT},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
            CHECKF(!replace(body, cases[i].from, cases[i].to, b2, sizeof(b2)), "case %zu", i);
            sign_body(ctx, b2, strlen(b2), &ka, t, sizeof(t));
            CHECKF(!refused(t, strlen(t), &ka.vk, cases[i].rc, cases[i].want), "case %zu: %s", i,
                   b2);
        }
        /* a body that would make the text too long, signed */
        {
            char big[3200];
            memset(big, 'x', sizeof(big) - 1);
            big[sizeof(big) - 1] = 0;
            sign_body(ctx, big, strlen(big), &ka, t, sizeof(t));
            CHECK(!refused(t, strlen(t), &ka.vk, CIT_EFORMAT, "more than the 4095"));
        }
    }

    /* receipts: the same reader, its own fields */
    {
        struct gw_receipt r, s;
        struct cit_buf rw = {0};
        struct cit_err err = {{0}};
        const char *rctx = "citadel-receipt/v1\n";
        memset(&r, 0, sizeof(r));
        memset(r.passport, 'a', 64);
        snprintf(r.receiver, sizeof(r.receiver), "node-b");
        r.status = 200;
        r.seq = 3;
        r.time = 5;
        CHECK(!gw_receipt_seal(&r, &kb, &rw));
        CHECK(body_of(rw.p, body, sizeof(body)));
        CHECK(gw_receipt_open(rw.p, rw.len, &ka.vk, &s, &err) == CIT_EINVAL &&
              strstr(err.msg, "receipt: the signature does not verify"));
        {
            static const struct {
                const char *from, *to, *want;
            } rcases[] = {
                {",\"seq\":3", "", "receipt: field 'seq' missing"},
                {"\"status\":200", "\"status\":42", "field 'status' is 42, outside [100, 599]"},
                {"\"seq\":3", "\"seq\":9223372036854775808", "too big integer"},
                {"\"seq\":3", "\"seq\":-3", "field 'seq' is -3"},
                {"\"leaf\":\"", "\"leaf\":\"0", "field 'leaf' is not 64 lowercase hex"},
                {"\"receiver\":\"node-b\"", "\"receiver\":[]", "field 'receiver' is not a string"},
            };
            for (size_t i = 0; i < sizeof(rcases) / sizeof(*rcases); i++) {
                memset(&s, 0xa5, sizeof(s));
                CHECKF(!replace(body, rcases[i].from, rcases[i].to, b2, sizeof(b2)), "case %zu", i);
                sign_body(rctx, b2, strlen(b2), &kb, t, sizeof(t));
                CHECKF(gw_receipt_open(t, strlen(t), &kb.vk, &s, &err) == CIT_EFORMAT &&
                           strstr(err.msg, rcases[i].want) && ((uint8_t *)&s)[0] == 0xa5,
                       "case %zu: %s", i, err.msg);
            }
        }
        /* seal refuses what the format cannot carry */
        rw.len = 0;
        r.status = 42;
        CHECK(gw_receipt_seal(&r, &kb, &rw) == CIT_EINVAL);
        r.status = 200;
        r.seq = 1ull << 63;
        CHECK(gw_receipt_seal(&r, &kb, &rw) == CIT_EINVAL);
        r.seq = 0;
        r.passport[3] = 'A';
        CHECK(gw_receipt_seal(&r, &kb, &rw) == CIT_EINVAL);
        cit_buf_free(&rw);
    }
    {
        struct cit_buf x = {0};
        struct gw_passport q = p;
        snprintf(q.classes, sizeof(q.classes), "a,,b");
        CHECK(gw_passport_seal(&q, &ka, &x) == CIT_EINVAL);
        snprintf(q.classes, sizeof(q.classes), "a,");
        CHECK(gw_passport_seal(&q, &ka, &x) == CIT_EINVAL);
        q = p;
        q.id[0] = 'g';
        CHECK(gw_passport_seal(&q, &ka, &x) == CIT_EINVAL);
        q = p;
        memset(q.rule, 'r', sizeof(q.rule)); /* no NUL */
        CHECK(gw_passport_seal(&q, &ka, &x) == CIT_EINVAL);
        q = p;
        snprintf(q.purpose, sizeof(q.purpose), "bad \xc3");
        CHECK(gw_passport_seal(&q, &ka, &x) == CIT_EINVAL);
        q = p;
        q.expires = -5;
        CHECK(gw_passport_seal(&q, &ka, &x) == CIT_EINVAL);
        /* every string full, escapes at their longest: too long, refused */
        q = p;
        memset(q.classes, 1, sizeof(q.classes) - 1);
        memset(q.declared, 1, sizeof(q.declared) - 1);
        CHECK(gw_passport_seal(&q, &ka, &x) == CIT_ERANGE);
        CHECK(!x.len);
        /* full, without escapes: fits */
        memset(q.classes, 'c', sizeof(q.classes) - 1);
        memset(q.declared, 'd', sizeof(q.declared) - 1);
        memset(q.origin, 'o', sizeof(q.origin) - 1);
        memset(q.rule, 'r', sizeof(q.rule) - 1);
        q.rule[sizeof(q.rule) - 1] = 0;
        CHECK(!gw_passport_seal(&q, &ka, &x) && x.len < GW_MAX_WIRE);
        {
            struct gw_passport o;
            struct cit_err err = {{0}};
            CHECKF(!gw_passport_open(x.p, x.len, &ka.vk, &o, NULL, &err), "%s", err.msg);
            CHECK(!memcmp(&o, &q, sizeof(o)));
        }
        cit_buf_free(&x);
    }
    /* gw_passport_hash needs the framing, not the key */
    {
        uint8_t h[32];
        CHECK(gw_passport_hash(w.p, dot, h) == CIT_EFORMAT);
        CHECK(gw_passport_hash("e30.AAAA", 8, h) == CIT_EFORMAT);
    }
    cit_buf_free(&w);
}

/* ---- cross-checking ---- */

enum twist { TW_NONE, TW_WRONG_LEAF, TW_OTHER_PASSPORT, TW_EXTRA_IN_B, TW_BAD_SEQ, TW_FORGED };

struct pair {
    char a[1024], b[1024];
    uint64_t twisted; /* the entry of a (or of b, TW_EXTRA_IN_B) the twist is in */
};

static int64_t entry_ms; /* the time add() gives entries; 0: now */

static int add(struct ledger *l, const char *tenant, const char *target, const char *action,
               const char *pass, const char *rcpt, uint64_t *seq, uint8_t leaf[32])
{
    struct ledger_rec e = {0};
    e.time_ms = entry_ms;
    uint64_t s;
    uint8_t lf[32];
    e.tenant = tenant;
    e.key_id = "";
    e.request_id = "req";
    e.classes = "personal";
    e.rule = "fwd";
    e.policy_hash = POLICY_HEX;
    e.target = target;
    e.action = action;
    e.status = 200;
    e.passport = pass;
    e.receipt = rcpt;
    if (ledger_append_leaf(l, &e, LEDGER_SYNC, seq ? seq : &s, leaf ? leaf : lf)) return -1;
    return 0;
}

static int seal_p(const struct ledger_skey *k, const char *to, int n, struct cit_buf *w,
                  uint8_t hash[32])
{
    struct gw_passport p;
    struct gw_passport q;
    fill_passport(&p, to, n);
    w->len = 0;
    if (gw_passport_seal(&p, k, w)) return -1;
    return gw_passport_open(w->p, w->len, &k->vk, &q, hash, NULL);
}

static int seal_r(const struct ledger_skey *k, const uint8_t hash[32], uint64_t seq,
                  const uint8_t leaf[32], struct cit_buf *w)
{
    struct gw_receipt r;
    memset(&r, 0, sizeof(r));
    sodium_bin2hex(r.passport, sizeof(r.passport), hash, 32);
    snprintf(r.receiver, sizeof(r.receiver), "%.63s", k->vk.name);
    r.status = 200;
    r.seq = seq;
    memcpy(r.leaf, leaf, 32);
    r.time = 1700000000;
    w->len = 0;
    return gw_receipt_seal(&r, k, w);
}

/* Two ledgers that agree, but for tw: a sends b three answered forwards,
 * one whose answer broke off, one b never saw, and one to a third peer c;
 * b sends a one; b also holds one of c's passports and a's ledger one it
 * refused at the door. */
static int build_pair(const char *name, enum twist tw, struct pair *pr)
{
    struct ledger_opts oa = {.origin = "a.example/audit", .checkpoint_s = -1};
    struct ledger_opts ob = {.origin = "b.example/audit", .checkpoint_s = -1};
    struct ledger *la = NULL, *lb = NULL;
    struct ledger_skey ka, kb, kc;
    struct cit_err err = {{0}};
    struct cit_buf pw = {0}, rw = {0};
    char path[1200], vpath[1200], cmd[2300];
    uint8_t h[32], leaf[32], leaf0[32];
    uint64_t seq, seq0 = 0, sa;
    int rc = -1;
    snprintf(pr->a, sizeof(pr->a), "%s/%s-a", t_tmpdir(), name);
    snprintf(pr->b, sizeof(pr->b), "%s/%s-b", t_tmpdir(), name);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", pr->a, pr->b);
    if (system(cmd)) return -1;
    oa.dir = pr->a, ob.dir = pr->b;
    make_key(&kc, "c.example/audit");
    if (ledger_open(&oa, &la, &err) || ledger_open(&ob, &lb, &err)) goto out;
    snprintf(path, sizeof(path), "%s/node.key", pr->a);
    snprintf(vpath, sizeof(vpath), "%s/node.vkey", pr->a);
    if (ledger_key_load(path, vpath, NULL, &ka, &err)) goto out;
    snprintf(path, sizeof(path), "%s/node.key", pr->b);
    snprintf(vpath, sizeof(vpath), "%s/node.vkey", pr->b);
    if (ledger_key_load(path, vpath, NULL, &kb, &err)) goto out;

    if (add(lb, "acme", "stories260K", "local", NULL, NULL, NULL, NULL)) goto out;
    for (int i = 0; i < 3; i++) {
        if (seal_p(&ka, "peer-b", i, &pw, h)) goto out;
        if (add(lb, "node-a", "stories260K", "local", pw.p, NULL, &seq, leaf)) goto out;
        if (i == 0) seq0 = seq, memcpy(leaf0, leaf, 32);
        if (i == 1 && tw == TW_WRONG_LEAF) leaf[5] ^= 1;
        if (i == 1 && tw == TW_OTHER_PASSPORT) seq = seq0, memcpy(leaf, leaf0, 32);
        if (i == 1 && tw == TW_BAD_SEQ) seq = 1000;
        if (seal_r(i == 1 && tw == TW_FORGED ? &kc : &kb, h, seq, leaf, &rw)) goto out;
        if (add(la, "acme", "peer-b", "forward", pw.p, rw.p, &sa, NULL)) goto out;
        if (i == 1) pr->twisted = sa;
    }
    /* broke off: b has it, a has no receipt */
    if (seal_p(&ka, "peer-b", 10, &pw, h) ||
        add(lb, "node-a", "x", "local", pw.p, NULL, NULL, NULL) ||
        add(la, "acme", "peer-b", "forward", pw.p, NULL, NULL, NULL))
        goto out;
    /* never reached b */
    if (seal_p(&ka, "peer-b", 11, &pw, h) ||
        add(la, "acme", "peer-b", "forward", pw.p, NULL, NULL, NULL))
        goto out;
    /* to c, answered by c */
    if (seal_p(&ka, "peer-c", 12, &pw, h) || seal_r(&kc, h, 0, leaf, &rw) ||
        add(la, "acme", "peer-c", "forward", pw.p, rw.p, NULL, NULL))
        goto out;
    /* b forwards one to a */
    if (seal_p(&kb, "peer-a", 20, &pw, h) ||
        add(la, "node-b", "stories260K", "local", pw.p, NULL, &seq, leaf) ||
        seal_r(&ka, h, seq, leaf, &rw) ||
        add(lb, "acme", "peer-a", "forward", pw.p, rw.p, NULL, NULL))
        goto out;
    /* c's passport in b; garbage refused at a's door */
    if (seal_p(&kc, "peer-b", 30, &pw, h) ||
        add(lb, "node-c", "x", "local", pw.p, NULL, NULL, NULL) ||
        add(la, "node-c", "", "deny", "not.a passport", NULL, NULL, NULL))
        goto out;
    if (tw == TW_EXTRA_IN_B && (seal_p(&ka, "peer-b", 40, &pw, h) ||
                                add(lb, "node-a", "x", "local", pw.p, NULL, &pr->twisted, NULL)))
        goto out;
    rc = 0;
out:
    if (rc && err.msg[0]) t_note("%s", err.msg);
    if (la) ledger_close(la);
    if (lb) ledger_close(lb);
    cit_buf_free(&pw);
    cit_buf_free(&rw);
    sodium_memzero(&ka, sizeof(ka));
    sodium_memzero(&kb, sizeof(kb));
    return rc;
}

static char *vkey_of(const char *dir)
{
    char path[1200];
    size_t n;
    snprintf(path, sizeof(path), "%s/node.vkey", dir);
    return t_read_file(path, &n);
}

void test_gateway_crosscheck(void)
{
    struct pair pr;
    struct cit_buf rep = {0};
    struct cit_err err = {{0}};
    char *vb, *va, want[5000];
    int rc;
    CHECK(!build_pair("xc-ok", TW_NONE, &pr));
    CHECK((vb = vkey_of(pr.b)) && (va = vkey_of(pr.a)));
    rc = gw_crosscheck(pr.a, NULL, pr.b, vb, &rep, &err);
    CHECKF(!rc, "%s\n%s", err.msg, rep.p ? rep.p : "");
    CHECKF(strstr(rep.p, "cross-check: OK") &&
               strstr(rep.p, "5 passports sent, 3 answered with receipts that match") &&
               strstr(rep.p, "1 without a receipt though the peer holds the passport") &&
               strstr(rep.p, "1 the peer never recorded (unreachable") &&
               strstr(rep.p, "4 passports in the peer's ledger signed by the origin's key") &&
               strstr(rep.p, "1 passport sent to other peers") &&
               strstr(rep.p,
                      "  the origin calls the peer 'peer-b'; the peer calls the origin 'node-a'\n"),
           "%s", rep.p);
    /* the reverse direction, and what neither key signed */
    snprintf(
        want, sizeof(want),
        "forwards from %s (the origin) to %s (the peer):\n  the origin calls the peer 'peer-a'; "
        "the peer calls the origin 'node-b'\n  1 passport sent, 1 answered",
        pr.b, pr.a);
    CHECKF(strstr(rep.p, want), "%s", rep.p);
    snprintf(want, sizeof(want), "%s: 1 passport of other peers", pr.b);
    CHECKF(strstr(rep.p, want), "%s", rep.p);
    snprintf(want, sizeof(want), "%s: 1 passport that cannot be decoded", pr.a);
    CHECKF(strstr(rep.p, want), "%s", rep.p);
    /* both verify reports come first */
    snprintf(want, sizeof(want), "ledger %s: ", pr.b);
    CHECKF(strstr(rep.p, want), "%s", rep.p);
    /* a's key given, not read from a: the same; a wrong key for b fails verify */
    rep.len = 0;
    CHECK(!gw_crosscheck(pr.a, va, pr.b, vb, &rep, &err));
    rep.len = 0;
    CHECK(gw_crosscheck(pr.a, NULL, pr.b, va, &rep, &err) != 0);
    CHECK(gw_crosscheck(pr.a, NULL, pr.b, NULL, &rep, &err) == CIT_EINVAL);
    cit_free(vb);
    cit_free(va);

    {
        static const struct {
            enum twist tw;
            const char *what;
            int in_b;
        } cases[] = {
            {TW_WRONG_LEAF, "the leaf hash", 0},
            {TW_OTHER_PASSPORT, "which holds another passport", 0},
            {TW_BAD_SEQ, "its receipt names entry 1000 of", 0},
            {TW_FORGED, "does not verify with", 0},
            {TW_EXTRA_IN_B, "that", 1},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
            char name[32];
            snprintf(name, sizeof(name), "xc-%zu", i);
            CHECKF(!build_pair(name, cases[i].tw, &pr), "case %zu", i);
            CHECK((vb = vkey_of(pr.b)));
            rep.len = 0;
            memset(&err, 0, sizeof(err));
            rc = gw_crosscheck(pr.a, NULL, pr.b, vb, &rep, &err);
            cit_free(vb);
            snprintf(want, sizeof(want), "entry %llu of %s", (unsigned long long)pr.twisted,
                     cases[i].in_b ? pr.b : pr.a);
            CHECKF(rc == CIT_EFORMAT && strstr(err.msg, want) && strstr(err.msg, cases[i].what),
                   "case %zu: %d %s (want '%s')\n%s", i, rc, err.msg, want, rep.p);
            CHECKF(strstr(rep.p, "cross-check: FAILED, 1 mismatch\n") &&
                       strstr(rep.p, "MISMATCH: "),
                   "case %zu: %s", i, rep.p);
        }
    }
    cit_buf_free(&rep);
}

/* Retention: entries a ledger pruned cannot be compared, and are said to
 * be so rather than called missing; a passport newer than what the origin
 * kept is still a mismatch. */
void test_gateway_crosscheck_retention(void)
{
    struct ledger_opts oa = {.origin = "a.example/audit", .checkpoint_s = -1};
    struct ledger_opts ob = {.origin = "b.example/audit", .checkpoint_s = -1};
    struct ledger *la, *lb;
    struct ledger_skey ka, kb;
    struct cit_err err = {{0}};
    struct cit_buf pw = {0}, rw = {0}, rep = {0};
    char a[1024], b[1024], a2[1100], b2[1100], path[1200], vpath[1200], cmd[5000], want[2400];
    char *vb;
    uint8_t h[32], leaf[32];
    uint64_t seq, n;
    const int64_t old_ms = 1700000000000; /* the passports' issue time */
    snprintf(a, sizeof(a), "%s/xr-a", t_tmpdir());
    snprintf(b, sizeof(b), "%s/xr-b", t_tmpdir());
    snprintf(a2, sizeof(a2), "%s-pruned", a);
    snprintf(b2, sizeof(b2), "%s-pruned", b);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s' '%s' '%s'", a, b, a2, b2);
    CHECK(system(cmd) == 0);
    oa.dir = a, ob.dir = b;
    CHECKF(!ledger_open(&oa, &la, &err) && !ledger_open(&ob, &lb, &err), "%s", err.msg);
    snprintf(path, sizeof(path), "%s/node.key", a);
    snprintf(vpath, sizeof(vpath), "%s/node.vkey", a);
    CHECK(!ledger_key_load(path, vpath, NULL, &ka, &err));
    snprintf(path, sizeof(path), "%s/node.key", b);
    snprintf(vpath, sizeof(vpath), "%s/node.vkey", b);
    CHECK(!ledger_key_load(path, vpath, NULL, &kb, &err));
    /* an old forward, answered; then a recent one, in both ledgers */
    for (int i = 0; i < 2; i++) {
        entry_ms = i ? 0 : old_ms + 1000;
        CHECK(!seal_p(&ka, "peer-b", i, &pw, h));
        CHECK(!add(lb, "node-a", "m", "local", pw.p, NULL, &seq, leaf));
        CHECK(!seal_r(&kb, h, seq, leaf, &rw));
        CHECK(!add(la, "acme", "peer-b", "forward", pw.p, rw.p, NULL, NULL));
    }
    entry_ms = 0;
    ledger_close(la);
    ledger_close(lb);
    snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s' && cp -a '%s' '%s'", a, a2, b, b2);
    CHECK(system(cmd) == 0);
    CHECK((vb = t_read_file(vpath, &n)));

    /* a pruned its old entry: b's copy of that passport is not compared */
    CHECKF(!ledger_prune(a2, old_ms + 500000, &n, &err) && n == 1, "%s", err.msg);
    CHECKF(!gw_crosscheck(a2, NULL, b, vb, &rep, &err), "%s\n%s", err.msg, rep.p);
    CHECKF(strstr(rep.p, "1 passport sent, 1 answered") &&
               strstr(rep.p, "2 passports in the peer's ledger signed by the origin's key\n  1 of "
                             "those issued before the oldest entry the origin kept (retention): "
                             "not compared: entry 0\n"),
           "%s", rep.p);
    /* b pruned its: a's receipt for it is checked by its leaf alone */
    rep.len = 0;
    CHECKF(!ledger_prune(b2, old_ms + 500000, &n, &err) && n == 1, "%s", err.msg);
    CHECKF(!gw_crosscheck(a, NULL, b2, vb, &rep, &err), "%s\n%s", err.msg, rep.p);
    CHECKF(strstr(rep.p, "2 passports sent, 2 answered") &&
               strstr(rep.p, "1 of those receipts name entries the peer pruned"),
           "%s", rep.p);
    /* a passport issued after what a kept, held by b alone: still a mismatch */
    {
        struct gw_passport p;
        ob.dir = b;
        CHECK(!ledger_open(&ob, &lb, &err));
        fill_passport(&p, "peer-b", 9);
        p.issued = (int64_t)time(NULL) + 1000;
        p.expires = p.issued + 60;
        pw.len = 0;
        CHECK(!gw_passport_seal(&p, &ka, &pw));
        CHECK(!add(lb, "node-a", "m", "local", pw.p, NULL, &seq, NULL));
        ledger_close(lb);
        rep.len = 0;
        CHECK(gw_crosscheck(a2, NULL, b, vb, &rep, &err) == CIT_EFORMAT);
        snprintf(want, sizeof(want), "entry %llu of %s holds a passport signed by",
                 (unsigned long long)seq, b);
        CHECKF(strstr(err.msg, want), "%s", err.msg);
    }
    cit_free(vb);
    cit_buf_free(&pw);
    cit_buf_free(&rw);
    cit_buf_free(&rep);
}

static const char *bin(void)
{
    const char *b = getenv("CITADEL_BIN");
    return b ? b : "build/citadel";
}

/* citadel audit verify --peer-ledger, and audit show's passport lines. */
void test_gateway_crosscheck_cli(void)
{
    struct pair pr;
    char cmd[4000], *out = NULL;
    CHECK(!build_pair("xc-cli", TW_NONE, &pr));
    snprintf(cmd, sizeof(cmd),
             "%s audit verify --dir %s --peer-ledger %s --peer-key %s/node.vkey 2>&1", bin(), pr.a,
             pr.b, pr.b);
    CHECKF(t_run(cmd, &out) == 0 && strstr(out, "cross-check: OK"), "%s", out ? out : "");
    cit_free(out);
    /* the peer's key is needed, and must be b's */
    snprintf(cmd, sizeof(cmd), "%s audit verify --dir %s --peer-ledger %s 2>&1", bin(), pr.a, pr.b);
    CHECKF(t_run(cmd, &out) == 2 && strstr(out, "--peer-key"), "%s", out ? out : "");
    cit_free(out);
    snprintf(cmd, sizeof(cmd),
             "%s audit verify --dir %s --peer-ledger %s --peer-key %s/node.vkey 2>&1", bin(), pr.a,
             pr.b, pr.a);
    CHECKF(t_run(cmd, &out) == 1 && strstr(out, "FAILED"), "%s", out ? out : "");
    cit_free(out);
    CHECK(!build_pair("xc-cli-bad", TW_WRONG_LEAF, &pr));
    snprintf(cmd, sizeof(cmd),
             "%s audit verify --dir %s --peer-ledger %s --peer-key %s/node.vkey 2>&1", bin(), pr.a,
             pr.b, pr.b);
    CHECKF(t_run(cmd, &out) == 1 && strstr(out, "MISMATCH") && strstr(out, "FAILED"), "%s",
           out ? out : "");
    cit_free(out);
    /* show decodes the passport (unverified) and the receipt's entry */
    snprintf(cmd, sizeof(cmd), "%s audit show --dir %s 2>&1", bin(), pr.a);
    CHECKF(t_run(cmd, &out) == 0, "%s", out ? out : "");
    CHECKF(strstr(out, "passport 00112233445566778899aabbccdd0000") &&
               strstr(out, "node-a (DE) -> peer-b") && strstr(out, "classes personal,health") &&
               strstr(out, "receipt: node b.example/audit entry ") && strstr(out, "status 200"),
           "%s", out);
    cit_free(out);
}
