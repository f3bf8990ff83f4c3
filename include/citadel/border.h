/*
 * border: model signing and verification in the OpenSSF Model Signing
 * (OMS) v1.0 format, so that signatures interoperate with the
 * `model_signing` tool.
 *
 * A model is a file or a directory. Its manifest lists every regular file
 * (sorted by path, '/' separators; symbolic links are refused, never
 * followed) with its SHA-256. The signed statement is an in-toto Statement
 * v1 with predicateType https://model_signing/signature/v1.0 whose
 * predicate holds the serialization block and the resources, and whose one
 * subject is the model's name with the SHA-256 of the resources' digests
 * concatenated in order. It travels in a DSSE envelope (payloadType
 * application/vnd.in-toto+json), signed over the DSSE pre-authentication
 * encoding with ECDSA P-256/SHA-256 or P-384/SHA-384 (OpenSSL), inside a
 * Sigstore bundle v0.3 whose verification material is the SHA-256 of the
 * signer's PEM public key (the "hint"), as model_signing writes it.
 */
#ifndef CITADEL_BORDER_H
#define CITADEL_BORDER_H

#include <stddef.h>
#include <stdint.h>

#include "citadel/core.h"

#define BRD_MAX_FILES 100000
#define BRD_MAX_SIG   (16u << 20) /* a signature file larger than this is refused */

struct brd_resource {
    char *name; /* relative path, '/' separators */
    uint8_t digest[32];
    uint64_t size;
};

struct brd_manifest {
    char model_name[256]; /* the file's or directory's own name */
    struct brd_resource *v;
    size_t n;
    uint8_t root[32]; /* SHA-256 over the digests in order: the subject digest */
    uint64_t bytes;   /* hashed */
    double seconds;   /* spent hashing */
};

/* Walks and hashes path (a file, or a directory tree). Names in ignore
 * (NULL-terminated; may be NULL) are skipped at the top of a directory. */
int brd_manifest_build(const char *path, const char *const *ignore, struct brd_manifest *m,
                       struct cit_err *err);
void brd_manifest_free(struct brd_manifest *m);

/* The in-toto statement for m (compact JSON). */
int brd_statement(const struct brd_manifest *m, struct cit_buf *out);

/* DSSE pre-authentication encoding of payload under type. */
int brd_pae(const char *type, const void *payload, size_t len, struct cit_buf *out);

/* Writes a new key pair: priv_path (PKCS#8 PEM, mode 0600, never
 * overwritten) and pub_path (SubjectPublicKeyInfo PEM). curve: "P-256" or
 * "P-384". */
int brd_keygen(const char *curve, const char *priv_path, const char *pub_path, struct cit_err *err);

/* Signs the model at model_path with the private key in key_path and
 * writes the bundle to sig_path (atomically). The manifest it signed is
 * left in m (may be NULL). */
int brd_sign(const char *key_path, const char *model_path, const char *sig_path,
             struct brd_manifest *m, struct cit_err *err);

/* Why a verification failed. */
enum brd_fail {
    BRD_OK,
    BRD_MALFORMED, /* the signature file is not a bundle we can read */
    BRD_BAD_KEY,   /* the public key cannot be read or is not P-256/P-384 */
    BRD_WRONG_KEY, /* signed by another key (hint or signature mismatch) */
    BRD_CHANGED,   /* a file's digest differs */
    BRD_EXTRA,     /* a file not in the signature */
    BRD_MISSING,   /* a signed file is gone */
    BRD_IO,        /* the model could not be read */
};
const char *brd_fail_name(int f);

struct brd_verified {
    int fail;             /* enum brd_fail */
    char model_name[256]; /* the subject's name */
    uint8_t root[32];     /* the subject digest (the model's identity) */
    size_t n_files;
    uint64_t bytes;
    double seconds;
};

/* Verifies sig_path (a bundle) for the model at model_path against the
 * public key PEM in pub_path: the signature over the envelope, the
 * statement's shape, the subject digest, and every file of the model,
 * no more and no fewer. 0 when it holds; otherwise an error with v->fail
 * saying which check failed and err naming what. */
int brd_verify(const char *pub_path, const char *model_path, const char *sig_path,
               struct brd_verified *v, struct cit_err *err);

/* Parses a bundle's text: checks the media type and envelope, decodes the
 * payload and the first signature. For verify and the fuzz target. */
struct brd_bundle {
    char hint[65]; /* SHA-256 hex of the signer's PEM public key, or "" */
    struct cit_buf payload;
    uint8_t sig[512];
    size_t sig_len;
};
int brd_bundle_parse(const char *text, size_t len, struct brd_bundle *b, struct cit_err *err);
void brd_bundle_free(struct brd_bundle *b);

/* Parses a statement payload into m (names and digests; no hashing), and
 * checks that its subject digest matches its resources. */
int brd_statement_parse(const char *text, size_t len, struct brd_manifest *m, struct cit_err *err);

#endif
