/* Internals of the border module: what its files share, and the entry
 * points its tests and fuzz targets call (not part of citadel/border.h). */
#ifndef CITADEL_BORDER_INT_H
#define CITADEL_BORDER_INT_H

#include "citadel/border.h"

/* ---- shared between the module's files ---- */

/* Records a (and sets a->id) in a transaction that commits only when
 * then(ctx) (may be NULL), called after the row is written, returns 0:
 * admission writes its ledger entry there, so that the two agree. */
int brd_model_add(struct brd_registry *r, struct brd_admitted *a, int (*then)(void *ctx), void *ctx,
                  struct cit_err *err);

/* The in-toto statement for m (compact JSON). */
int brd_statement(const struct brd_manifest *m, struct cit_buf *out);

/* The trusted signer whose key has this hint, and its PEM in pem; CIT_ENOENT
 * when none. */
int brd_trust_find(struct brd_registry *r, const char *hint, struct brd_signer *s /* out */,
                   struct cit_buf *pem /* out */, struct cit_err *err);

/* Checks a signature against the public key's PEM text (key_name names it
 * in messages), as brd_verify does, and hands back the files it hashed
 * (when it verified; free with brd_manifest_free). */
int brd_verify_files(const char *pem, size_t pem_len, const char *key_name, const char *model_path,
                     const char *card, const char *sig_path, struct brd_verified *v,
                     struct brd_manifest *files /* out */, struct cit_err *err);

/* ---- for tests and fuzz targets (the bundle parser is also sign.c's) ---- */

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


/* Walks and hashes path (a file, or a directory tree). Names in ignore
 * (NULL-terminated; may be NULL) are skipped at the top of a directory.
 * card (may be NULL) is the model card signed with the model: a file
 * model's card becomes a second resource under its own name; a directory
 * model's card must lie inside it (it is then one of its files). */
int brd_manifest_build(const char *path, const char *card, const char *const *ignore,
                       struct brd_manifest *m, struct cit_err *err);


/* Reads a PEM public key: P-256 or P-384 only. Fills hint (may be NULL)
 * and returns 0, or says what is wrong. */
int brd_pubkey_check(const char *pem, size_t len, const char *name, char hint[65],
                     struct cit_err *err);

/* The key hint of the signature at sig_path (SHA-256 hex of the signer's
 * PEM public key), or "" when the bundle carries none. */
int brd_sig_hint(const char *sig_path, char hint[65], struct cit_err *err);

/* Parses a statement payload into m (names and digests; no hashing), and
 * checks that its subject digest matches its resources. */
int brd_statement_parse(const char *text, size_t len, struct brd_manifest *m, struct cit_err *err);

#endif
