/*
 * citadel model keygen|sign|verify: OMS v1.0 model signatures.
 *
 *   citadel model keygen [--curve P-256|P-384] NAME   writes NAME.pem, NAME.pub.pem
 *   citadel model sign --key KEY.pem MODEL_PATH [--sig FILE]
 *   citadel model verify --key PUB.pem MODEL_PATH [--sig FILE]
 *
 * MODEL_PATH is a file or a directory; the signature goes to
 * MODEL_PATH.sig unless --sig says otherwise.
 */
#include <stdio.h>
#include <string.h>

#include "citadel/border.h"
#include "cli.h"

static void usage(FILE *f)
{
    fputs("usage: citadel model keygen [--curve P-256|P-384] NAME\n"
          "       citadel model sign --key KEY.pem MODEL_PATH [--sig FILE]\n"
          "       citadel model verify --key PUB.pem MODEL_PATH [--sig FILE]\n"
          "  MODEL_PATH: a model file or directory; the signature is MODEL_PATH.sig by default\n",
          f);
}

static void print_hex(const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++) printf("%02x", d[i]);
}

static double gbps(uint64_t bytes, double s)
{
    return s > 0 ? (double)bytes / 1e9 / s : 0;
}

int cli_model_sign(int argc, char **argv)
{
    const char *verb = argc ? argv[0] : "", *key = NULL, *path = NULL, *sig = NULL;
    const char *curve = "P-256";
    char sig_buf[4200], priv[4200], pub[4200];
    struct cit_err err;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--key") && i + 1 < argc)
            key = argv[++i];
        else if (!strcmp(argv[i], "--sig") && i + 1 < argc)
            sig = argv[++i];
        else if (!strcmp(argv[i], "--curve") && i + 1 < argc)
            curve = argv[++i];
        else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "citadel model %s: unexpected '%s'\n", verb, argv[i]);
            usage(stderr);
            return 2;
        } else
            path = argv[i];
    }
    if (!path || (strcmp(verb, "keygen") && !key)) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(verb, "keygen")) {
        snprintf(priv, sizeof(priv), "%s.pem", path);
        snprintf(pub, sizeof(pub), "%s.pub.pem", path);
        if (brd_keygen(curve, priv, pub, &err)) {
            fprintf(stderr, "citadel model keygen: %s\n", err.msg);
            return 1;
        }
        printf("wrote %s (private, mode 0600) and %s (public)\n", priv, pub);
        return 0;
    }
    if (!sig) {
        size_t n = strlen(path);
        while (n > 1 && path[n - 1] == '/') n--;
        snprintf(sig_buf, sizeof(sig_buf), "%.*s.sig", (int)n, path);
        sig = sig_buf;
    }
    if (!strcmp(verb, "sign")) {
        struct brd_manifest m;
        if (brd_sign(key, path, sig, &m, &err)) {
            fprintf(stderr, "citadel model sign: %s\n", err.msg);
            return 1;
        }
        printf("signed %s: %zu file%s, %.2f GB hashed at %.2f GB/s\nsubject sha256 ", path, m.n,
               m.n == 1 ? "" : "s", (double)m.bytes / 1e9, gbps(m.bytes, m.seconds));
        print_hex(m.root, 32);
        printf("\nwrote %s\n", sig);
        brd_manifest_free(&m);
        return 0;
    }
    if (!strcmp(verb, "verify")) {
        struct brd_verified v;
        if (brd_verify(key, path, sig, &v, &err)) {
            fprintf(stderr, "citadel model verify: FAILED (%s): %s\n", brd_fail_name(v.fail),
                    err.msg);
            return 1;
        }
        printf("OK: %s matches %s: %zu file%s, %.2f GB hashed at %.2f GB/s\nsubject %s sha256 ",
               path, sig, v.n_files, v.n_files == 1 ? "" : "s", (double)v.bytes / 1e9,
               gbps(v.bytes, v.seconds), v.model_name);
        print_hex(v.root, 32);
        printf("\n");
        return 0;
    }
    fprintf(stderr, "citadel model: unknown verb '%s'\n", verb);
    usage(stderr);
    return 2;
}
