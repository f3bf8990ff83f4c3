/*
 * Keys, DSSE envelopes and Sigstore bundles: signing and verifying a
 * model's statement with ECDSA through OpenSSL.
 *
 * The bundle, as model_signing writes it for a key:
 *   {"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json",
 *    "verificationMaterial":{"publicKey":{"hint":"<sha256 of the PEM key>"},
 *                            "tlogEntries":[]},
 *    "dsseEnvelope":{"payload":"<base64 statement>",
 *                    "payloadType":"application/vnd.in-toto+json",
 *                    "signatures":[{"sig":"<base64 DER ECDSA>"}]}}
 * The signature covers PAE(payloadType, payload) (DSSE v1).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "citadel/border.h"
#include "border_int.h"

#define PAYLOAD_TYPE "application/vnd.in-toto+json"
#define BUNDLE_TYPE  "application/vnd.dev.sigstore.bundle.v0.3+json"

const char *brd_fail_name(int f)
{
    static const char *const names[] = {"ok",    "malformed", "bad_key", "wrong_key", "changed",
                                        "extra", "missing",   "io",      "untrusted"};
    return f >= 0 && f <= BRD_UNTRUSTED ? names[f] : "?";
}

static const char *ssl_why(void)
{
    static _Thread_local char buf[160];
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (!e) return "unknown error";
    ERR_error_string_n(e, buf, sizeof(buf));
    return buf;
}

int brd_pae(const char *type, const void *payload, size_t len, struct cit_buf *out)
{
    cit_buf_printf(out, "DSSEv1 %zu %s %zu ", strlen(type), type, len);
    cit_buf_add(out, payload, len);
    return out->p ? 0 : CIT_ENOMEM;
}

/* The digest for the key's curve: SHA-256 for P-256, SHA-384 for P-384. */
static const EVP_MD *curve_md(EVP_PKEY *k, struct cit_err *err, const char *path)
{
    char group[64] = "";
    if (!EVP_PKEY_is_a(k, "EC") || !EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME,
                                                                   group, sizeof(group), NULL)) {
        cit_err_set(err, CIT_ENOTSUP, "%s: not an elliptic-curve key (P-256 or P-384 expected)",
                    path);
        return NULL;
    }
    if (!strcmp(group, "prime256v1") || !strcmp(group, "P-256")) return EVP_sha256();
    if (!strcmp(group, "secp384r1") || !strcmp(group, "P-384")) return EVP_sha384();
    cit_err_set(err, CIT_ENOTSUP, "%s: curve %s is not supported (P-256 or P-384)", path, group);
    return NULL;
}

/* SHA-256 hex of the key's SubjectPublicKeyInfo PEM: model_signing's hint. */
static int key_hint(EVP_PKEY *k, char out[65])
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p;
    long n;
    uint8_t d[32];
    if (!b || !PEM_write_bio_PUBKEY(b, k) || (n = BIO_get_mem_data(b, &p)) <= 0) {
        BIO_free(b);
        return CIT_ENOMEM;
    }
    EVP_Digest(p, (size_t)n, d, NULL, EVP_sha256(), NULL);
    sodium_bin2hex(out, 65, d, 32);
    BIO_free(b);
    return 0;
}

static int write_pem(const char *path, EVP_PKEY *k, int private, struct cit_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, private ? 0600 : 0644);
    FILE *f;
    int ok;
    if (fd < 0)
        return cit_err_set(err, CIT_EIO, "%s: %s%s", path, strerror(errno),
                           errno == EEXIST ? " (a key is never overwritten)" : "");
    if (!(f = fdopen(fd, "w"))) {
        close(fd);
        return cit_err_set(err, CIT_EIO, "%s: %s", path, strerror(errno));
    }
    ok = private ? PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) : PEM_write_PUBKEY(f, k);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) || !ok) {
        unlink(path);
        return cit_err_set(err, CIT_EIO, "%s: cannot write the key", path);
    }
    return 0;
}

int brd_keygen(const char *curve, const char *priv_path, const char *pub_path, struct cit_err *err)
{
    const char *group = !strcmp(curve, "P-256")   ? "P-256"
                        : !strcmp(curve, "P-384") ? "P-384"
                                                  : NULL;
    EVP_PKEY *k;
    int rc;
    if (!group) return cit_err_set(err, CIT_EINVAL, "curve '%s': use P-256 or P-384", curve);
    if (!(k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", group)))
        return cit_err_set(err, CIT_EIO, "key generation failed: %s", ssl_why());
    rc = write_pem(priv_path, k, 1, err);
    if (!rc && (rc = write_pem(pub_path, k, 0, err))) unlink(priv_path);
    EVP_PKEY_free(k);
    return rc;
}

static EVP_PKEY *load_key(const char *path, int private, struct cit_err *err)
{
    BIO *b = BIO_new_file(path, "r");
    EVP_PKEY *k;
    if (!b) {
        cit_err_set(err, CIT_EIO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    k = private ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL)
                : PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!k)
        cit_err_set(err, CIT_EFORMAT, "%s: not a PEM %s key (%s)", path,
                    private ? "private" : "public", ssl_why());
    return k;
}

static int b64(struct cit_buf *out, const void *p, size_t n)
{
    size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    char *s = cit_malloc(cap);
    if (!s) return CIT_ENOMEM;
    sodium_bin2base64(s, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
    int rc = cit_buf_add(out, s, strlen(s));
    cit_free(s);
    return rc;
}

int brd_sign(const char *key_path, const char *model_path, const char *card, const char *sig_path,
             struct brd_manifest *mout, struct cit_err *err)
{
    struct brd_manifest m;
    struct cit_buf st = {0}, pae = {0}, out = {0};
    EVP_PKEY *k = load_key(key_path, 1, err);
    EVP_MD_CTX *ctx = NULL;
    const EVP_MD *md;
    uint8_t sig[256];
    size_t sig_len = sizeof(sig);
    char hint[65];
    int rc;
    if (!k) return CIT_EFORMAT;
    if (!(md = curve_md(k, err, key_path))) {
        EVP_PKEY_free(k);
        return CIT_ENOTSUP;
    }
    if ((rc = brd_manifest_build(model_path, card, NULL, &m, err))) {
        EVP_PKEY_free(k);
        return rc;
    }
    rc = brd_statement(&m, &st);
    if (!rc) rc = brd_pae(PAYLOAD_TYPE, st.p, st.len, &pae);
    if (!rc) rc = key_hint(k, hint);
    if (!rc && (!(ctx = EVP_MD_CTX_new()) || EVP_DigestSignInit(ctx, NULL, md, NULL, k) != 1 ||
                EVP_DigestSign(ctx, sig, &sig_len, (const uint8_t *)pae.p, pae.len) != 1))
        rc = cit_err_set(err, CIT_EIO, "signing failed: %s", ssl_why());
    if (!rc) {
        BUF_LIT(&out, "{\"mediaType\":\"" BUNDLE_TYPE "\",\"verificationMaterial\":{\"publicKey\":"
                      "{\"hint\":\"");
        cit_buf_add(&out, hint, 64);
        BUF_LIT(&out, "\"},\"tlogEntries\":[]},\"dsseEnvelope\":{\"payload\":\"");
        b64(&out, st.p, st.len);
        BUF_LIT(&out, "\",\"payloadType\":\"" PAYLOAD_TYPE "\",\"signatures\":[{\"sig\":\"");
        b64(&out, sig, sig_len);
        BUF_LIT(&out, "\"}]}}\n");
        rc = out.p ? cit_write_file(sig_path, out.p, out.len, 0644, err) : CIT_ENOMEM;
    }
    if (rc == CIT_ENOMEM) cit_err_set(err, rc, "out of memory");
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(k);
    cit_buf_free(&st);
    cit_buf_free(&pae);
    cit_buf_free(&out);
    if (mout && !rc)
        *mout = m;
    else
        brd_manifest_free(&m);
    return rc;
}

int brd_bundle_parse(const char *text, size_t len, struct brd_bundle *b, struct cit_err *err)
{
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je), *env, *sigs, *vm;
    const char *s;
    size_t n;
    int rc = 0;
    memset(b, 0, sizeof(*b));
    if (!j || !json_is_object(j)) {
        rc = cit_err_set(err, CIT_EFORMAT, "not a JSON object%s%s (line %d)", j ? "" : ": ",
                         j ? "" : je.text, j ? 0 : je.line);
        goto out;
    }
    if (!json_is_string(json_object_get(j, "mediaType")) ||
        strcmp(json_string_value(json_object_get(j, "mediaType")), BUNDLE_TYPE)) {
        rc = cit_err_set(err, CIT_EFORMAT, "mediaType is not %s", BUNDLE_TYPE);
        goto out;
    }
    vm = json_object_get(j, "verificationMaterial");
    s = json_string_value(json_object_get(json_object_get(vm, "publicKey"), "hint"));
    if (s && strlen(s) == 64) memcpy(b->hint, s, 65);
    env = json_object_get(j, "dsseEnvelope");
    if (!json_is_object(env)) {
        rc = cit_err_set(err, CIT_EFORMAT, "no dsseEnvelope: citadel reads DSSE bundles only");
        goto out;
    }
    if (!(s = json_string_value(json_object_get(env, "payloadType"))) || strcmp(s, PAYLOAD_TYPE)) {
        rc = cit_err_set(err, CIT_EFORMAT, "dsseEnvelope.payloadType is not %s", PAYLOAD_TYPE);
        goto out;
    }
    if (!(s = json_string_value(json_object_get(env, "payload"))) || !(n = strlen(s)) ||
        n > BRD_MAX_SIG) {
        rc = cit_err_set(err, CIT_EFORMAT, "dsseEnvelope.payload is missing");
        goto out;
    }
    {
        size_t cap = n / 4 * 3 + 3, got;
        char *p = cit_malloc(cap + 1);
        if (!p) {
            rc = cit_err_set(err, CIT_ENOMEM, "out of memory");
            goto out;
        }
        if (sodium_base642bin((unsigned char *)p, cap, s, n, NULL, &got, NULL,
                              sodium_base64_VARIANT_ORIGINAL)) {
            cit_free(p);
            rc = cit_err_set(err, CIT_EFORMAT, "dsseEnvelope.payload is not base64");
            goto out;
        }
        rc = cit_buf_add(&b->payload, p, got);
        cit_free(p);
        if (rc) goto out;
    }
    sigs = json_object_get(env, "signatures");
    if (!json_is_array(sigs) || json_array_size(sigs) != 1 ||
        !(s = json_string_value(json_object_get(json_array_get(sigs, 0), "sig"))) ||
        sodium_base642bin(b->sig, sizeof(b->sig), s, strlen(s), NULL, &b->sig_len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) ||
        b->sig_len == 0) {
        rc =
            cit_err_set(err, CIT_EFORMAT, "dsseEnvelope.signatures must hold one base64 signature");
        goto out;
    }
out:
    json_decref(j);
    if (rc) brd_bundle_free(b);
    return rc;
}

void brd_bundle_free(struct brd_bundle *b)
{
    cit_buf_free(&b->payload);
    memset(b, 0, sizeof(*b));
}

static int fail(struct brd_verified *v, int why, int rc)
{
    v->fail = why;
    return rc;
}

static EVP_PKEY *pem_key(const char *pem, size_t len, const char *name, struct cit_err *err)
{
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *k = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!k) cit_err_set(err, CIT_EFORMAT, "%s: not a PEM public key (%s)", name, ssl_why());
    return k;
}

int brd_pubkey_check(const char *pem, size_t len, const char *name, char hint[65],
                     struct cit_err *err)
{
    char h[65];
    EVP_PKEY *k = pem_key(pem, len, name, err);
    int rc = !k || !curve_md(k, err, name) ? CIT_EFORMAT : key_hint(k, h);
    if (!rc && hint) memcpy(hint, h, 65);
    EVP_PKEY_free(k);
    return rc;
}

static int read_bundle(const char *sig_path, struct brd_bundle *b, struct cit_err *err)
{
    struct cit_buf text = {0};
    int rc = cit_read_file(sig_path, BRD_MAX_SIG, &text, err);
    if (rc == CIT_ENOENT) cit_err_set(err, rc, "%s: cannot open: no such file", sig_path);
    if (!rc && (rc = brd_bundle_parse(text.p ? text.p : "", text.len, b, err)))
        cit_err_prefix(err, sig_path);
    cit_buf_free(&text);
    return rc;
}

int brd_sig_hint(const char *sig_path, char hint[65], struct cit_err *err)
{
    struct brd_bundle b;
    int rc = read_bundle(sig_path, &b, err);
    if (rc) return rc;
    memcpy(hint, b.hint, 65);
    brd_bundle_free(&b);
    return 0;
}

/* The signature check against the public key's PEM text; pub_path names
 * the key in messages. */
static int brd_verify_pem(const char *pem, size_t pem_len, const char *pub_path,
                          const char *model_path, const char *card, const char *sig_path,
                          struct brd_verified *v, struct cit_err *err)
{
    return brd_verify_files(pem, pem_len, pub_path, model_path, card, sig_path, v, NULL, err);
}

int brd_verify(const char *pub_path, const char *model_path, const char *card, const char *sig_path,
               struct brd_verified *v, struct cit_err *err)
{
    struct cit_buf pem = {0};
    int rc = cit_read_file(pub_path, 1u << 16, &pem, err);
    if (rc) {
        if (rc == CIT_ENOENT) cit_err_set(err, rc, "%s: cannot open: no such file", pub_path);
        memset(v, 0, sizeof(*v));
        v->fail = BRD_BAD_KEY;
        return rc;
    }
    rc = brd_verify_pem(pem.p ? pem.p : "", pem.len, pub_path, model_path, card, sig_path, v, err);
    cit_buf_free(&pem);
    return rc;
}

int brd_verify_files(const char *pem, size_t pem_len, const char *pub_path, const char *model_path,
                     const char *card, const char *sig_path, struct brd_verified *v,
                     struct brd_manifest *files, struct cit_err *err)
{
    struct cit_buf pae = {0};
    struct brd_bundle b;
    struct brd_manifest want, have;
    EVP_PKEY *k = NULL;
    EVP_MD_CTX *ctx = NULL;
    const EVP_MD *md;
    char hint[65];
    int rc;
    memset(v, 0, sizeof(*v));
    if ((rc = read_bundle(sig_path, &b, err))) return fail(v, BRD_MALFORMED, rc);
    if (!(k = pem_key(pem, pem_len, pub_path, err)) || !(md = curve_md(k, err, pub_path))) {
        EVP_PKEY_free(k);
        brd_bundle_free(&b);
        return fail(v, BRD_BAD_KEY, CIT_EFORMAT);
    }
    rc = key_hint(k, hint);
    if (!rc && b.hint[0] && strcmp(hint, b.hint))
        rc = cit_err_set(err, CIT_EFORMAT,
                         "%s was signed by another key (key hint %.16s..., %s is %.16s...)",
                         sig_path, b.hint, pub_path, hint);
    if (!rc) rc = brd_pae(PAYLOAD_TYPE, b.payload.p, b.payload.len, &pae);
    if (!rc && (!(ctx = EVP_MD_CTX_new()) || EVP_DigestVerifyInit(ctx, NULL, md, NULL, k) != 1 ||
                EVP_DigestVerify(ctx, b.sig, b.sig_len, (const uint8_t *)pae.p, pae.len) != 1)) {
        ERR_clear_error();
        rc = cit_err_set(err, CIT_EFORMAT,
                         "%s: the signature does not verify with %s (another key signed it, or "
                         "the envelope was altered)",
                         sig_path, pub_path);
    }
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(k);
    cit_buf_free(&pae);
    if (rc) {
        brd_bundle_free(&b);
        return fail(v, BRD_WRONG_KEY, rc);
    }
    /* the envelope is authentic: now its statement, and the files */
    rc = brd_statement_parse(b.payload.p, b.payload.len, &want, err);
    brd_bundle_free(&b);
    if (rc) {
        cit_err_prefix(err, sig_path);
        return fail(v, BRD_MALFORMED, rc);
    }
    snprintf(v->model_name, sizeof(v->model_name), "%s", want.model_name);
    memcpy(v->root, want.root, 32);
    if ((rc = brd_manifest_build(model_path, card, NULL, &have, err))) {
        brd_manifest_free(&want);
        return fail(v, BRD_IO, rc);
    }
    v->n_files = have.n;
    v->bytes = have.bytes;
    v->seconds = have.seconds;
    /* both lists are sorted: walk them together */
    size_t i = 0, j = 0;
    while (!rc && (i < want.n || j < have.n)) {
        int c = i == want.n ? 1 : j == have.n ? -1 : strcmp(want.v[i].name, have.v[j].name);
        if (c < 0)
            rc = fail(v, BRD_MISSING,
                      cit_err_set(err, CIT_ENOENT, "%s: the signed file '%s' is missing",
                                  model_path, want.v[i].name));
        else if (c > 0)
            rc = fail(v, BRD_EXTRA,
                      cit_err_set(err, CIT_EFORMAT, "%s: the file '%s' is not in the signature",
                                  model_path, have.v[j].name));
        else if (memcmp(want.v[i].digest, have.v[j].digest, 32))
            rc = fail(v, BRD_CHANGED,
                      cit_err_set(err, CIT_EFORMAT,
                                  "%s: the file '%s' changed since it was signed (its SHA-256 "
                                  "differs)",
                                  model_path, want.v[i].name));
        i++, j++;
    }
    brd_manifest_free(&want);
    if (!rc && files)
        *files = have;
    else
        brd_manifest_free(&have);
    return rc;
}
