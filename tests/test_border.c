/* border: OMS v1.0 model signatures. A two-file model whose statement is
 * written out here by hand (digests from sha256sum, the subject digest
 * from Python's hashlib over the two digests), a signature checked by the
 * openssl command as well as by citadel, and every failure mode. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "citadel/border.h"
#include "test.h"

static int put(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

/* dir/a.txt = "hello\n", dir/sub/b.bin = "world\n" */
static int two_files(const char *dir)
{
    char p[1200];
    snprintf(p, sizeof(p), "rm -rf '%s' && mkdir -p '%s/sub'", dir, dir);
    if (system(p)) return -1;
    snprintf(p, sizeof(p), "%s/a.txt", dir);
    if (put(p, "hello\n")) return -1;
    snprintf(p, sizeof(p), "%s/sub/b.bin", dir);
    return put(p, "world\n");
}

static const char expected_statement[] =
    "{\"_type\":\"https://in-toto.io/Statement/v1\",\"subject\":[{\"name\":\"m\",\"digest\":{"
    "\"sha256\":\"96cb8058ed58b58f8fc0ad459bacf81108599b403e91674460ccb089f8ebb9db\"}}],"
    "\"predicateType\":\"https://model_signing/signature/v1.0\",\"predicate\":{"
    "\"serialization\":{\"method\":\"files\",\"hash_type\":\"sha256\",\"allow_symlinks\":false,"
    "\"ignore_paths\":[\".git\",\".gitattributes\",\".github\",\".gitignore\"]},\"resources\":["
    "{\"name\":\"a.txt\",\"algorithm\":\"sha256\",\"digest\":"
    "\"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03\"},"
    "{\"name\":\"sub/b.bin\",\"algorithm\":\"sha256\",\"digest\":"
    "\"e258d248fda94c63753607f7c4494ee0fcbe92f1a76bfdac795c9d84101eb317\"}]}}";

static int read_all(const char *path, struct cit_buf *b)
{
    char chunk[4096];
    size_t n;
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) cit_buf_add(b, chunk, n);
    fclose(f);
    return cit_buf_add(b, "", 1) ? -1 : (b->len--, 0);
}

void test_border_vector(void)
{
    char dir[512], model[600], key[600], pub[600], sig[600], cmd[2400];
    struct cit_err err;
    struct cit_buf text = {0}, pae = {0};
    struct brd_bundle b;
    struct brd_manifest m;
    struct brd_verified v;
    snprintf(dir, sizeof(dir), "%s/border-vector", t_tmpdir());
    snprintf(model, sizeof(model), "%s/m", dir);
    snprintf(key, sizeof(key), "%s/k.pem", dir);
    snprintf(pub, sizeof(pub), "%s/k.pub.pem", dir);
    snprintf(sig, sizeof(sig), "%s/m.sig", dir);
    CHECK(two_files(model) == 0);
    CHECKF(!brd_keygen("P-256", key, pub, &err), "%s", err.msg);
    /* a key is never overwritten */
    CHECK(brd_keygen("P-256", key, pub, &err) == CIT_EIO && strstr(err.msg, "never overwritten"));
    CHECKF(!brd_sign(key, model, sig, &m, &err), "%s", err.msg);
    CHECK(m.n == 2 && m.bytes == 12);
    brd_manifest_free(&m);
    /* the statement is exactly the hand-written one */
    CHECK(read_all(sig, &text) == 0);
    CHECKF(!brd_bundle_parse(text.p, text.len, &b, &err), "%s", err.msg);
    CHECKF(b.payload.len == strlen(expected_statement) &&
               !memcmp(b.payload.p, expected_statement, b.payload.len),
           "statement:\n%.*s", (int)b.payload.len, b.payload.p);
    CHECK(strstr(text.p, "\"mediaType\":\"application/vnd.dev.sigstore.bundle.v0.3+json\"") &&
          strstr(text.p, "\"payloadType\":\"application/vnd.in-toto+json\"") &&
          strlen(b.hint) == 64);
    /* the openssl command agrees that the signature covers the DSSE PAE */
    CHECK(brd_pae("application/vnd.in-toto+json", b.payload.p, b.payload.len, &pae) == 0);
    CHECK(!strncmp(pae.p, "DSSEv1 28 application/vnd.in-toto+json 613 {", 44));
    snprintf(cmd, sizeof(cmd), "%s/pae.bin", dir);
    FILE *f = fopen(cmd, "wb");
    CHECK(f && fwrite(pae.p, 1, pae.len, f) == pae.len && fclose(f) == 0);
    snprintf(cmd, sizeof(cmd), "%s/sig.der", dir);
    f = fopen(cmd, "wb");
    CHECK(f && fwrite(b.sig, 1, b.sig_len, f) == b.sig_len && fclose(f) == 0);
    snprintf(cmd, sizeof(cmd),
             "openssl dgst -sha256 -verify '%s' -signature '%s/sig.der' '%s/pae.bin' >/dev/null",
             pub, dir, dir);
    CHECKF(system(cmd) == 0, "openssl rejects the signature: %s", cmd);
    /* and the hint is the SHA-256 of the PEM public key file */
    snprintf(cmd, sizeof(cmd), "sha256sum '%s' | grep -q '^%s '", pub, b.hint);
    CHECK(system(cmd) == 0);
    CHECKF(!brd_verify(pub, model, sig, &v, &err), "%s", err.msg);
    CHECK(v.fail == BRD_OK && v.n_files == 2 && !strcmp(v.model_name, "m"));
    brd_bundle_free(&b);
    cit_buf_free(&text);
    cit_buf_free(&pae);
}

/* Signs a fresh two-file model, breaks it with cmd (run in the model's
 * directory), and expects verify to fail with want. */
static int broken(const char *how, const char *pubkey, int want, const char *msg_part)
{
    char dir[512], model[600], key[600], pub[600], sig[600], cmd[1400];
    struct cit_err err;
    struct brd_verified v;
    snprintf(dir, sizeof(dir), "%s/border-fail", t_tmpdir());
    snprintf(model, sizeof(model), "%s/m", dir);
    snprintf(key, sizeof(key), "%s/k.pem", dir);
    snprintf(pub, sizeof(pub), "%s/%s", dir, pubkey);
    snprintf(sig, sizeof(sig), "%s/m.sig", dir);
    CHECK_RET(two_files(model) == 0, "setup");
    CHECK_RET(!brd_sign(key, model, sig, NULL, &err), "%s", err.msg);
    snprintf(cmd, sizeof(cmd), "cd '%s' && %s", dir, how);
    CHECK_RET(system(cmd) == 0, "%s", cmd);
    int rc = brd_verify(pub, model, sig, &v, &err);
    CHECK_RET(rc != 0 && v.fail == want && strstr(err.msg, msg_part), "%s: fail %s, '%s'", how,
              brd_fail_name(v.fail), err.msg);
    return 0;
}

void test_border_failures(void)
{
    char dir[512], p[1200], q[1200];
    struct cit_err err;
    struct brd_manifest m;
    snprintf(dir, sizeof(dir), "%s/border-fail", t_tmpdir());
    snprintf(p, sizeof(p), "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    CHECK(system(p) == 0);
    snprintf(p, sizeof(p), "%s/k.pem", dir);
    snprintf(q, sizeof(q), "%s/k.pub.pem", dir);
    CHECKF(!brd_keygen("P-384", p, q, &err), "%s", err.msg); /* P-384: SHA-384 signatures */
    snprintf(p, sizeof(p), "%s/other.pem", dir);
    snprintf(q, sizeof(q), "%s/other.pub.pem", dir);
    CHECKF(!brd_keygen("P-256", p, q, &err), "%s", err.msg);

    if (broken("true", "other.pub.pem", BRD_WRONG_KEY, "signed by another key")) return;
    if (broken("printf 'hellO\\n' > m/a.txt", "k.pub.pem", BRD_CHANGED, "'a.txt' changed")) return;
    if (broken("touch m/sub/c", "k.pub.pem", BRD_EXTRA, "'sub/c' is not in the signature")) return;
    if (broken("rm m/sub/b.bin", "k.pub.pem", BRD_MISSING, "'sub/b.bin' is missing")) return;
    if (broken("ln -s a.txt m/link", "k.pub.pem", BRD_IO, "symbolic link")) return;
    /* the envelope altered (a payload byte; the signature with the hint
     * removed): the signature fails */
    if (broken("sed -i 's/\"payload\":\"eyJf/\"payload\":\"eyJg/' m.sig", "k.pub.pem",
               BRD_WRONG_KEY, "does not verify"))
        return;
    if (broken("sed -i 's/\"hint\":\"[0-9a-f]*\"/\"hint\":\"\"/' m.sig && "
               "sed -i 's/\"sig\":\"M/\"sig\":\"N/' m.sig",
               "k.pub.pem", BRD_WRONG_KEY, "does not verify"))
        return;
    /* malformed bundles, each with what is wrong */
    static const struct {
        const char *how, *why;
    } bad[] = {
        {"printf 'not json' > m.sig", "not a JSON object"},
        {"sed -i 's/bundle.v0.3/bundle.v0.9/' m.sig", "mediaType is not"},
        {"sed -i 's/in-toto+json/other/' m.sig", "payloadType is not"},
        {"sed -i 's/\"signatures\":\\[{\"sig\":\"[^\"]*\"}\\]/\"signatures\":[]/' m.sig",
         "one base64 signature"},
        {"sed -i 's/\"payload\":\"ey/\"payload\":\"!!/' m.sig", "not base64"},
        {"truncate -s 100 m.sig", "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (broken(bad[i].how, "k.pub.pem", BRD_MALFORMED, bad[i].why)) return;
    /* a public key that is not one */
    snprintf(p, sizeof(p), "%s/junk.pem", dir);
    CHECK(put(p, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n") == 0);
    if (broken("true", "junk.pem", BRD_BAD_KEY, "not a PEM public key")) return;

    /* statements: inconsistent subject digest, unsorted resources, escapes */
    static const char *const stmts[] = {
        "{\"_type\":\"https://in-toto.io/Statement/v1\",\"subject\":[{\"name\":\"m\",\"digest\":"
        "{\"sha256\":\"0000000000000000000000000000000000000000000000000000000000000000\"}}],"
        "\"predicateType\":\"https://model_signing/signature/v1.0\",\"predicate\":{"
        "\"serialization\":{\"method\":\"files\",\"hash_type\":\"sha256\"},\"resources\":["
        "{\"name\":\"a\",\"algorithm\":\"sha256\",\"digest\":"
        "\"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03\"}]}}",
        "{\"_type\":\"https://in-toto.io/Statement/v1\",\"subject\":[{\"name\":\"m\",\"digest\":"
        "{\"sha256\":\"0000000000000000000000000000000000000000000000000000000000000000\"}}],"
        "\"predicateType\":\"https://model_signing/signature/v1.0\",\"predicate\":{"
        "\"serialization\":{\"method\":\"files\",\"hash_type\":\"sha256\"},\"resources\":["
        "{\"name\":\"../etc/passwd\",\"algorithm\":\"sha256\",\"digest\":"
        "\"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03\"}]}}",
        "{\"_type\":\"https://in-toto.io/Statement/v1\",\"predicateType\":"
        "\"https://model_signing/Digests/v0.1\"}",
    };
    static const char *const why[] = {"the subject digest is not the digest of the resources",
                                      "points outside the model", "predicateType is not"};
    for (int i = 0; i < 3; i++) {
        CHECK(brd_statement_parse(stmts[i], strlen(stmts[i]), &m, &err) != 0);
        CHECKF(strstr(err.msg, why[i]), "statement %d: %s", i, err.msg);
    }
    snprintf(p, sizeof(p), "%s/none", dir);
    CHECK(brd_manifest_build(p, NULL, &m, &err) == CIT_EIO);
}
