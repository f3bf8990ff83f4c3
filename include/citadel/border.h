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
#include "citadel/gguf.h"

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

void brd_manifest_free(struct brd_manifest *m);

/* Writes a new key pair: priv_path (PKCS#8 PEM, mode 0600, never
 * overwritten) and pub_path (SubjectPublicKeyInfo PEM). curve: "P-256" or
 * "P-384". */
int brd_keygen(const char *curve, const char *priv_path, const char *pub_path, struct cit_err *err);

/* Signs the model at model_path with the private key in key_path and
 * writes the bundle to sig_path (atomically). The manifest it signed is
 * left in m (may be NULL). */
int brd_sign(const char *key_path, const char *model_path, const char *card, const char *sig_path,
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
    BRD_UNTRUSTED, /* signed by a key that is not in the trust store */
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
int brd_verify(const char *pub_path, const char *model_path, const char *card, const char *sig_path,
               struct brd_verified *v, struct cit_err *err);

/* ---- model cards (CycloneDX ML-BOM; card.c describes the fields) ---- */

#define BRD_MAX_NAME     64
#define BRD_MAX_LICENSES 8
#define BRD_MAX_DATASETS 64
#define BRD_MAX_CARD     (1u << 20)

/* DSSE v1 pre-authentication encoding of payload under type (what a DSSE
 * signature covers): "DSSEv1 <len type> <type> <len payload> <payload>". */
int brd_pae(const char *type, const void *payload, size_t len, struct cit_buf *out);

struct brd_dataset {
    char name[128];
    char jurisdiction[16]; /* where its data comes from */
    char languages[64];    /* citadel:languages, BCP 47 tags comma-separated; "" : not stated */
};

struct brd_card {
    char name[128], version[64], arch[64];
    int n_licenses;
    char licenses[BRD_MAX_LICENSES][BRD_MAX_NAME]; /* SPDX ids; all of them apply */
    int n_datasets;
    struct brd_dataset datasets[BRD_MAX_DATASETS];
};

/* Parses a CycloneDX model card (the subset above). */
int brd_card_parse(const char *text, size_t len, struct brd_card *c /* out */, struct cit_err *err);

/* A card to complete, from the GGUF's metadata (general.name, license,
 * architecture, datasets); what the file does not say reads TODO. */
int brd_card_skeleton(const struct gguf_file *g, const char *fallback_name, struct cit_buf *out);

/* ---- the registry: trusted signers and admitted models, in the node's
 * SQLite state file ---- */

struct brd_registry;

/* On the node's state file (its schema has the trusted_keys and
 * admitted_models tables); every call takes the file's lock. */
int brd_registry_open(struct cit_db *state, struct brd_registry **out /* out */,
                      struct cit_err *err);
void brd_registry_close(struct brd_registry *r);

struct brd_admitted;

struct brd_signer {
    char name[BRD_MAX_NAME];
    char jurisdiction[16];
    char hint[65]; /* SHA-256 hex of its PEM public key, as bundles name it */
    int64_t added; /* unix seconds */
};

/* 1 when the admission's signer is among v[0, n): the same name and, for
 * admissions that recorded it, the same key (a signer removed and added
 * again with another key does not vouch for what the old key signed). */
int brd_signer_holds(const struct brd_admitted *a, const struct brd_signer *v, size_t n);

/* Adds the public key in pem (P-256 or P-384) under name. A name or key
 * already trusted is an error. */
int brd_trust_add(struct brd_registry *r, const char *name, const char *jurisdiction,
                  const char *pem, size_t pem_len, struct brd_signer *out /* out */,
                  struct cit_err *err);
int brd_trust_remove(struct brd_registry *r, const char *name, struct cit_err *err);
int brd_trust_list(struct brd_registry *r, struct brd_signer **v /* out */, size_t *n /* out */,
                   struct cit_err *err);

/* An admission, as recorded. Times are unix seconds; 0 means none. */
struct brd_admitted {
    int64_t id;
    char name[128], version[64];
    char path[4096];         /* the model as signed (file or directory), resolved */
    char gguf[4096];         /* the GGUF file that is loaded, resolved */
    uint8_t root[32];        /* the signature's subject digest */
    uint8_t gguf_sha256[32]; /* the GGUF file's own */
    uint64_t gguf_size;
    uint64_t gguf_dev, gguf_ino;
    int64_t gguf_mtime_ns;
    char signer[BRD_MAX_NAME], signer_place[16];
    char signer_hint[65]; /* the signer's key (SHA-256 hex of its PEM); "" in rows
                           * older than schema version 2: the name alone */
    char licenses[BRD_MAX_LICENSES * BRD_MAX_NAME]; /* comma-separated */
    char datasets[2048];                            /* "name=DE,other=US" */
    char tmpl[16];                                  /* renderer, or "none" */
    char tmpl_sha256[65];                           /* hex, or "" */
    char policy[65];                                /* hash of the policy that admitted it */
    int64_t admitted, expires, revoked;
    char revoke_reason[256];
};

/* The newest admission of the GGUF at gguf_path (resolved), revoked or
 * not; CIT_ENOENT when it was never admitted. */
int brd_model_find(struct brd_registry *r, const char *gguf_path, struct brd_admitted *a /* out */,
                   struct cit_err *err);
/* Every admission, newest first. */
int brd_model_list(struct brd_registry *r, struct brd_admitted **v /* out */, size_t *n /* out */,
                   struct cit_err *err);
/* Revokes the admissions that which names: an id, a model name, or the
 * first 8 or more hex digits of a subject digest. *n is how many;
 * CIT_ENOENT when none was active. The first one revoked is left in a. */
int brd_model_revoke(struct brd_registry *r, const char *which, const char *reason, int64_t now,
                     struct brd_admitted *a /* out */, int *n /* out */, struct cit_err *err);

/* ---- admission and enforcement (admit.c) ---- */

struct pol_policy;
struct ledger;
struct eng_model;

/* The checks, in the order they run; a refusal names one. */
#define BRD_CHECK_STRUCTURE "structure" /* GGUF reader and architecture shapes */
#define BRD_CHECK_SIGNATURE "signature" /* OMS signature over the model and card */
#define BRD_CHECK_TRUST     "trust"     /* signed by a key in the trust store */
#define BRD_CHECK_CARD      "card"      /* the card reads */
#define BRD_CHECK_LICENSE   "license"   /* every license is allowed */
#define BRD_CHECK_DATASETS  "datasets"  /* every dataset's jurisdiction is allowed */
#define BRD_CHECK_TEMPLATE  "template"  /* the chat template is pinned */
#define BRD_CHECK_POLICY    "policy"    /* the policy admits models at all */
/* at load */
#define BRD_CHECK_ADMITTED "admitted" /* there is an admission */
#define BRD_CHECK_REVOKED  "revoked"
#define BRD_CHECK_EXPIRED  "expired"
#define BRD_CHECK_DIGEST   "digest" /* the bytes are the admitted bytes */
#define BRD_CHECK_UNVETTED "unvetted"

struct brd_admit_req {
    const char *model; /* file or directory, as signed */
    const char *card;  /* NULL: a file model's MODEL.cdx.json, or a directory's one *.cdx.json */
    const char *sig;   /* NULL: MODEL.sig */
    int64_t now;       /* unix seconds; 0: now */
};

/* Runs every check in order and records the outcome: on success the
 * admission in the registry and an "admit" ledger entry; on failure a
 * "refuse" ledger entry naming the check (*check, a BRD_CHECK_ string) and
 * nothing in the registry. Returns 0 when admitted. */
int brd_admit(struct brd_registry *r, const struct pol_policy *p, struct ledger *lg,
              const struct brd_admit_req *q, struct brd_admitted *a /* out */,
              const char **check /* out */, struct cit_err *err);

/* One ledger entry for a border-control event (event "model" or "trust"):
 * action, the check (may be ""), the model or signer name, the subject
 * digest (may be NULL), the path, the policy in force and what happened.
 * Status 403 for refusals (action refuse...), else 200. lg NULL: nothing. */
int brd_ledger_event(struct ledger *lg, const char *event, const char *action, const char *check,
                     const char *name, const uint8_t root[32], const char *target,
                     const struct pol_policy *p, const char *detail);

/* A file model's card path: MODEL.gguf -> MODEL.cdx.json. */
void brd_card_path(const char *model_file, char *out, size_t cap);

struct brd_load_opts {
    struct brd_registry *reg;
    const struct pol_policy *pol;
    struct ledger *lg;  /* load and refusal entries; NULL: none written */
    int unvetted;       /* load a model with no admission, when the policy allows it */
    int trust_readonly; /* skip hashing when the file is on read-only media, unchanged */
    int64_t now;        /* 0: now */
};

/* Loads the model at path only if it is admitted, not revoked or expired,
 * still allowed by the current policy (license, datasets, signer), and
 * its bytes, hashed on the mapping the engine then uses, are the admitted
 * bytes. Writes a "load" or "refuse_load" ledger entry. *check names the
 * failed check. */
int brd_load_model(const struct brd_load_opts *o, const char *path,
                   struct eng_model **out /* out */, const char **check /* out */,
                   struct cit_err *err);

#endif
