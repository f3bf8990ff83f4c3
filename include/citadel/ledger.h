/*
 * ledger: the tamper-evident audit log of every decision the node takes.
 *
 * A ledger is a directory:
 *
 *   log          the entries, one per line, oldest first. An entry is one
 *                line of compact JSON written by ledger_append, its keys in
 *                this order:
 *                  {"seq":N,"time":"2026-11-22T10:00:00.123Z","tenant":"..",
 *                   "key":"..","request":"..","digest":"<64 hex>",
 *                   "classes":[".."],"rule":"..","policy":"<64 hex>",
 *                   "target":"..","action":"..","tokens_in":N,
 *                   "tokens_out":N,"status":N[,"prompt":".."],
 *                   "prev":"<64 hex>"}
 *                seq counts from 0 with no gap; prev is the leaf hash of
 *                entry seq-1 (64 zeros for entry 0), so an edited entry is
 *                named by the next one even before a checkpoint covers it.
 *   checkpoints  signed checkpoints, appended, each a C2SP signed note
 *                (c2sp.org/tlog-checkpoint):
 *                  <origin>\n<tree size>\n<base64 root hash>\n
 *                  citadel-last-leaf <base64 leaf hash of entry size-1>\n\n
 *                  — <origin> <base64(key id[4] || Ed25519 signature[64])>\n
 *   node.key     the signing key, "PRIVATE+KEY+<name>+<key id hex>+<base64
 *                (0x01 || seed[32])>", mode 0600
 *   node.vkey    its public half, "<name>+<key id hex>+<base64(0x01 ||
 *                public key[32])>": what an auditor is given
 *   head         the newest signed checkpoint, covering every entry an
 *                append has returned: two 1024-byte slots written in turn
 *                (a note, then NUL padding), so a torn write leaves the
 *                other slot, one commit older
 *   unacknowledged  entries found after the head on open (a crash between
 *                their write and their commit: never acknowledged), moved
 *                out of the log; not part of the tree
 *   pruned       leaf hashes (32 bytes each) of entries removed by retention,
 *                oldest first, so the tree stays verifiable without them
 *
 * The tree is RFC 6962's: leaf = SHA-256(0x00 || entry line without its
 * newline), node = SHA-256(0x01 || left || right). The key id is
 * SHA-256(name || 0x0A || 0x01 || public key)[:4] (c2sp.org/signed-note).
 *
 * Durability and signatures. An append writes its line with one write(2)
 * and returns only once it is committed: the log fdatasync'd and a signed
 * head written over it. Whoever finds no commit running does the next one
 * for everything written so far; appends arriving meanwhile share the one
 * after (group commit: one fdatasync and one Ed25519 signature per group).
 * So every entry a caller saw accepted survives kill -9 and power loss, and
 * is signed: none can be deleted, edited or rewritten unnoticed. A torn
 * last line, or entries after the head, were never acknowledged: reopen
 * cuts the first and moves the second to unacknowledged.
 *
 * The history: a checkpoint is appended to checkpoints every checkpoint_s
 * seconds when the log grew, on open and on close; on_checkpoint hands it
 * to the caller, which keeps it outside the directory (the node's state
 * file) and gives it back as floor_note on the next open. A ledger behind
 * its floor, not matching it, signed by another key, or missing its head
 * or history is refused: it was rolled back, emptied or replaced.
 */
#ifndef CITADEL_LEDGER_H
#define CITADEL_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "citadel/core.h"

#define LEDGER_HASH          32
#define LEDGER_MAX_ENTRY     (64u * 1024) /* bytes of one entry line */
#define LEDGER_MAX_ORIGIN    128
#define LEDGER_MIN_RETENTION 183 /* days: the EU AI Act's six months for high-risk logs */
#define LEDGER_MAX_PROOF     64  /* hashes in a proof of a tree below 2^63 */

/* ---- Merkle tree (RFC 6962 / RFC 9162 section 2.1), over leaf hashes ---- */

/* The root of leaves[0..n); the hash of the empty string for n == 0. */
void ledger_root(const uint8_t (*leaves)[LEDGER_HASH], uint64_t n,
                 uint8_t out[LEDGER_HASH] /* out */);
/* Audit path of leaf index in the tree of the first size leaves. */
int ledger_inclusion_proof(const uint8_t (*leaves)[LEDGER_HASH], uint64_t size, uint64_t index,
                           uint8_t (*proof)[LEDGER_HASH] /* out, LEDGER_MAX_PROOF */,
                           int *n_proof /* out */);
/* 0 when proof shows leaf at index in the tree of size with root. */
int ledger_inclusion_verify(uint64_t index, uint64_t size, const uint8_t leaf[LEDGER_HASH],
                            const uint8_t (*proof)[LEDGER_HASH], int n_proof,
                            const uint8_t root[LEDGER_HASH]);
/* Proof that the tree of size m is a prefix of the tree of size n. */
int ledger_consistency_proof(const uint8_t (*leaves)[LEDGER_HASH], uint64_t m, uint64_t n,
                             uint8_t (*proof)[LEDGER_HASH] /* out, LEDGER_MAX_PROOF */,
                             int *n_proof /* out */);
/* 0 when proof shows that the tree of size m with root_m is a prefix of the
 * tree of size n with root_n (RFC 9162 section 2.1.4.2); for m == n, when
 * the proof is empty and the roots are equal. CIT_EINVAL otherwise: m == 0
 * (the empty tree needs no proof; callers decide what it means), m > n,
 * n_proof outside [0, LEDGER_MAX_PROOF], or a proof that does not verify.
 * A proof for (m, n) can also pass for another n with the same roots (n
 * shapes only the path's length): take n and root_n from one signed
 * checkpoint. */
int ledger_consistency_verify(uint64_t m, uint64_t n, const uint8_t root_m[LEDGER_HASH],
                              const uint8_t root_n[LEDGER_HASH],
                              const uint8_t (*proof)[LEDGER_HASH], int n_proof);

/* ---- keys and checkpoints (signed notes) ---- */

#define LEDGER_KEY_SIGN   0x01 /* a log's key: signs its checkpoints */
#define LEDGER_KEY_COSIGN 0x04 /* a witness's: cosigns another log's (tlog-cosignature) */

struct ledger_vkey {
    char name[LEDGER_MAX_ORIGIN];
    uint8_t id[4];
    uint8_t pk[32];
    uint8_t type; /* LEDGER_KEY_SIGN or LEDGER_KEY_COSIGN (0 reads as SIGN) */
};

/* Parses "<name>+<hex id>+<base64(0x01 || pk)>" (trailing newline allowed). */
int ledger_vkey_parse(const char *text, size_t len, struct ledger_vkey *out /* out */,
                      struct cit_err *err);

/* A signing key: the public half and libsodium's 64-byte secret key. The
 * ledger signs its checkpoints with one (node.key); a federation member's
 * identity is another (citadel fl keygen). On disk, the private half is
 * "PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed[32])>" (mode 0600)
 * and the public half the vkey line above. */
struct ledger_skey {
    struct ledger_vkey vk;
    uint8_t sk[64];
};

/* Loads the key in path. When path does not exist and name is not NULL,
 * creates a new key named name there and its public half in vpath (the
 * vkey line); with name NULL a missing file is CIT_ENOENT. */
int ledger_key_load(const char *path, const char *vpath, const char *name,
                    struct ledger_skey *k /* out */, struct cit_err *err);
/* The same for a key of type (LEDGER_KEY_COSIGN: a witness's); a key file
 * of another type is an error. */
int ledger_key_load_type(const char *path, const char *vpath, const char *name, uint8_t type,
                         struct ledger_skey *k /* out */, struct cit_err *err);

struct ledger_checkpoint;

/* ---- witnesses (c2sp.org/tlog-cosignature, Ed25519) ----
 * A witness that checked a checkpoint's consistency with the last one it
 * cosigned adds its cosignature, a signature line over "cosignature/v1\n
 * time <ts>\n" and the note's body. Other readers ignore the line. */

/* note[0, len) (a signed note, signature lines included) with w's
 * cosignature at time ts (POSIX seconds) appended, into out. */
int ledger_cosign(const struct ledger_skey *w, const char *note, size_t len, uint64_t ts,
                  struct cit_buf *out, struct cit_err *err);
/* 0 when note carries a valid cosignature by the witness w (*ts: its time;
 * may be NULL). */
int ledger_cosignature_check(const char *note, size_t len, const struct ledger_vkey *w,
                             uint64_t *ts /* out */, struct cit_err *err);
/* 0 when the log in dir holds the tree of cp_new and it extends the tree of
 * cp_old (an RFC 6962 consistency proof built from dir's leaves). */
int ledger_extends(const char *dir, const struct ledger_checkpoint *cp_old,
                   const struct ledger_checkpoint *cp_new, struct cit_err *err);

struct ledger_checkpoint {
    char origin[LEDGER_MAX_ORIGIN];
    uint64_t size;
    uint8_t root[LEDGER_HASH];
    /* an extension line "citadel-last-leaf <base64>": the leaf hash of
     * entry size-1, so that verify can name an altered last entry */
    uint8_t last_leaf[LEDGER_HASH];
    int has_last_leaf;
};

/* "<name>+<id hex>+<base64(0x01 || pk)>" */
void ledger_vkey_format(const struct ledger_vkey *vk, struct cit_buf *b);
/* Parses the signed note at text (up to the end of its signature lines;
 * *used says how many bytes it took) and checks the signature of vk.
 * CIT_EFORMAT for a malformed note, CIT_EINVAL for a bad or missing
 * signature. */
int ledger_checkpoint_open(const char *text, size_t len, const struct ledger_vkey *vk,
                           struct ledger_checkpoint *cp /* out */, size_t *used /* out */,
                           struct cit_err *err);

/* ---- the log ---- */

/* Both return committed (synced, under a signed head); kept so that callers
 * say which of their entries guard data leaving the node. */
enum ledger_durability { LEDGER_GROUP, LEDGER_SYNC };

struct ledger_opts {
    const char *dir;
    const char *origin; /* name of a new log and its key; NULL: "citadel/ledger" */
    int checkpoint_s;   /* checkpoint period; 0: 60; <0: only on open and close */
    int retention_days; /* 0: keep everything; else >= LEDGER_MIN_RETENTION */
    /* The last checkpoint this ledger signed, as its signed note, kept by
     * the caller outside the directory (the node's state file); NULL or
     * "": none known. A ledger behind it, or not matching it, is refused. */
    const char *floor_note;
    /* Called (from the ledger's threads) with each checkpoint written to
     * the history and its signed note, for the caller to keep as the next
     * floor. */
    void (*on_checkpoint)(void *user, const struct ledger_checkpoint *cp, const char *note);
    /* Called during ledger_open with each entry of the log (its JSON line,
     * no newline) written in the last recent_s seconds, for a caller that
     * keeps less durably what the log also holds and rebuilds it from
     * there (the passports a node answered). NULL or recent_s <= 0: none. */
    void (*on_recent)(void *user, const char *line, size_t len);
    int recent_s;
    void *user;
};

/* One decision. Strings may be NULL (written as ""); classes is a list of
 * class names separated by commas. */
struct ledger_rec {
    int64_t time_ms; /* unix milliseconds; 0: now */
    const char *tenant, *key_id, *request_id;
    uint8_t digest[LEDGER_HASH]; /* SHA-256 of the canonical request */
    const char *classes;
    const char *rule, *policy_hash, *target, *action;
    int64_t tokens_in, tokens_out;
    int status;
    const char *out_action;  /* what the output rules did to the answer; NULL: nothing */
    const char *out_classes; /* with out_action: the classes found in it, comma-separated */
    const char *prompt;      /* only when the policy asks for it; NULL: left out */
    /* An entry that records something other than a request (border control:
     * "model"): event names the kind, detail says what happened and why. */
    const char *event, *detail;
    /* A request that crossed to or from a peer (docs/gateway.md): the data
     * passport it carried and, at the origin, the peer's signed receipt, as
     * their wire texts; NULL: none. */
    const char *passport, *receipt;
};

struct ledger;

/* Opens (creating when absent) the ledger in o->dir: recomputes the tree
 * from the log, cuts a torn last line, checks the tree against the latest
 * signed checkpoint (a mismatch is an error: the log was altered), prunes
 * entries older than the retention, and signs a checkpoint when entries
 * follow the last one. */
int ledger_open(const struct ledger_opts *o, struct ledger **out /* out */, struct cit_err *err);
/* Syncs, signs a final checkpoint, and frees. */
void ledger_close(struct ledger *l);
/* Appends rec; *seq (may be NULL) is its index. Thread-safe. Any failure
 * leaves the log as it was, and after a write that could not be undone the
 * ledger refuses further appends: callers fail closed. */
int ledger_append(struct ledger *l, const struct ledger_rec *rec, enum ledger_durability d,
                  uint64_t *seq /* out */);
/* ledger_append that also gives the entry's leaf hash (a receipt names it). */
int ledger_append_leaf(struct ledger *l, const struct ledger_rec *rec, enum ledger_durability d,
                       uint64_t *seq /* out */, uint8_t leaf_out[LEDGER_HASH] /* out */);
/* "<name>+<id>+<key>" of the node key, for auditors. */
const char *ledger_vkey_text(const struct ledger *l);

/* ---- offline tools (citadel audit) ---- */

/* Checks everything in dir against vkey_text (NULL: dir/node.vkey, which
 * the report then says was not given independently): every line is a
 * well-formed entry with the next seq and the right prev, every checkpoint
 * is signed by the key and matches the tree at its size, consecutive
 * checkpoints are consistent (a consistency proof is built and verified).
 * Writes a human report; returns 0 when sound, CIT_EFORMAT naming the first
 * bad entry or checkpoint otherwise. */
int ledger_verify(const char *dir, const char *vkey_text, struct cit_buf *report,
                  struct cit_err *err);
/* ledger_verify, and also that the ledger extends since (the signed note
 * of a checkpoint the auditor kept from an earlier look, or NULL): fails
 * when the ledger is smaller (rolled back) or its first entries differ
 * (rewritten), proved with an RFC 6962 consistency proof. */
int ledger_verify_since(const char *dir, const char *vkey_text, const char *since,
                        struct cit_buf *report, struct cit_err *err);
/* ledger_verify_since, with since cosigned: it must carry valid
 * cosignatures by at least quorum of the n witnesses (a checkpoint peers
 * vouch for, so a node cannot roll back unseen even by a new auditor). */
int ledger_verify_witnessed(const char *dir, const char *vkey_text, const char *since,
                            const struct ledger_vkey *witnesses, int n, int quorum,
                            struct cit_buf *report, struct cit_err *err);
/* The signed head of dir (the newest checkpoint, covering every entry an
 * append returned), as its signed note, into out; CIT_ENOENT when there is
 * none. Checked against dir/node.vkey. */
int ledger_head_note(const char *dir, struct cit_buf *out, struct cit_err *err);

/* The entries of dir with their leaf hashes, for show, export and proofs. */
struct ledger_view {
    uint64_t n_pruned;               /* entries before the first in lines */
    uint64_t n;                      /* all entries, pruned included */
    uint8_t (*leaves)[LEDGER_HASH];  /* (n) */
    char **lines;                    /* (n - n_pruned) entry lines, without newline */
    struct ledger_checkpoint latest; /* size 0 when there is none */
    uint64_t chain_break;            /* first entry whose prev is not the hash of the one before;
                                        UINT64_MAX: none */
};
int ledger_view_open(const char *dir, struct ledger_view *v /* out */, struct cit_err *err);
void ledger_view_free(struct ledger_view *v);

/* Formats unix milliseconds as RFC 3339 UTC with milliseconds. */
void ledger_time_str(int64_t ms, char out[32] /* out */);
/* Reads that form back (an entry's "time"): 0, or -1 for anything else. */
int ledger_time_parse(const char *s, int64_t *ms /* out */);

#endif
