/*
 * gateway: the node's links to its peers (docs/gateway.md).
 *
 * A policy's `peers:` name who this node may send requests to: other
 * citadels (kind citadel) and OpenAI-compatible upstreams (kind openai).
 * A forward decision (the gate) picks the peers to try; the gateway sends
 * the request, streams the answer back through the same output rules as a
 * local answer, and records what crossed.
 *
 * Between citadels, both sides prove their node key (the ledger's Ed25519
 * signing key, node.key) in a mutual TLS 1.3 handshake and pin the other's
 * (the policy's `identity`, the peer's node.vkey line). Every forward
 * carries a data passport the origin signs; the receiver re-decides under
 * its own policy and answers with a receipt it signs, naming the entry its
 * ledger wrote. Both ledgers keep the pair, and `citadel audit verify
 * --peer-ledger` checks one against the other.
 *
 * The same TLS transport carries federated learning (fl/net.c).
 */
#ifndef CITADEL_GATEWAY_H
#define CITADEL_GATEWAY_H

#include <stddef.h>
#include <stdint.h>

#include "citadel/core.h"
#include "citadel/ledger.h"

/* ---- identities and TLS (tls.c) ----
 *
 * A node's TLS certificate is self-signed with its Ed25519 key and made
 * fresh at start; what the other side checks is the key, never a chain. */
struct ssl_ctx_st;

/* A TLS 1.3 context (server or client) that presents key's certificate and
 * accepts exactly one peer certificate whose Ed25519 key is one of pins
 * (the array must outlive the context); an unpinned peer fails the
 * handshake. */
int gw_tls_new(int server, const struct ledger_skey *key, const uint8_t (*pins)[32], int npins,
               struct ssl_ctx_st **out /* out */, struct cit_err *err);
void gw_tls_free(struct ssl_ctx_st *ctx);
/* key's self-signed certificate and its private key, as PEM (libcurl's
 * client certificate blobs). */
int gw_tls_pem(const struct ledger_skey *key, struct cit_buf *cert, struct cit_buf *pkey,
               struct cit_err *err);
/* "sha256//<base64 of SHA-256 of the SubjectPublicKeyInfo>" of an Ed25519
 * public key: libcurl's CURLOPT_PINNEDPUBLICKEY for a peer's identity. */
int gw_pin_text(const uint8_t pk[32], char *out, size_t cap);

/* ---- the peer listener (listen.c) ----
 *
 * Accepts TLS 1.3 with mutual authentication on addr ("HOST:PORT", port 0:
 * any). A client whose key is not pinned fails the handshake and is never
 * seen. An authenticated connection is handed over as a plaintext socket
 * (one end of a socketpair; a thread of the listener moves bytes between
 * it and the TLS connection) to fn, with the index of the pin the peer
 * proved; fn returns 0 when it took the socket, else the listener closes
 * it. The HTTP server serves that socket like any other connection. */
typedef int (*gw_accept_fn)(void *user, int fd, int pin);
struct gw_listener;
int gw_listen(const char *addr, const struct ledger_skey *key, const uint8_t (*pins)[32], int npins,
              gw_accept_fn fn, void *user, struct gw_listener **out /* out */, int *port /* out */,
              struct cit_err *err);
/* Stops accepting, closes every connection, joins the threads. */
void gw_listen_stop(struct gw_listener *l);
/* Handshakes refused since start (unpinned or failed), for metrics. */
uint64_t gw_listen_refused(const struct gw_listener *l);

/* ---- data passports and receipts (passport.c) ----
 *
 * A passport says what a forward carries and under which decision; the
 * origin signs it. A receipt says which entry of its ledger the receiver
 * wrote for it; the receiver signs it. Wire form of both:
 *
 *   <base64url(body)>.<base64url(signature)>
 *
 * base64url without padding (RFC 4648 section 5, canonical: the unused
 * bits of the last character are zero), at most GW_MAX_WIRE - 1 bytes in
 * all, so that a wire text fits a char[GW_MAX_WIRE] with its NUL. body is
 * compact JSON (no white space, UTF-8 as is, jansson's escapes) with
 * exactly these keys, in this order: "v", the format's version, then the
 * struct's fields as declared below:
 *
 *   passport {"v":1,"id":"<32 hex>","origin":"..","origin_jurisdiction":"..",
 *             "to":"..","classes":[".."],"declared":[".."],
 *             "policy":"<64 hex>","rule":"..","digest":"<64 hex>",
 *             "purpose":"..","issued":N,"expires":N}
 *   receipt  {"v":1,"passport":"<64 hex>","receiver":"..","status":N,
 *             "seq":N,"leaf":"<64 hex>","time":N}
 *
 * classes and declared are the comma-separated lists as arrays of names
 * ("" is []; a name is never empty and holds no comma); hex is lowercase;
 * N is a JSON integer: issued, expires and time >= 0, status 100 to 599,
 * seq below 2^63. The signature is Ed25519 (64 bytes) over
 * "citadel-passport/v1\n" || body (receipts: "citadel-receipt/v1\n" ||
 * body), by the origin's (the receiver's) node key. It carries no key id:
 * the side that opens it knows the one key it pinned for the peer.
 *
 * Opening is strict, for a peer's bytes are hostile until proved: the
 * length, one '.', the base64url and the signature are checked before the
 * body is parsed; then every key must be there with its type, none other,
 * each string must fit its field (an error, never cut short), and the body
 * must be byte for byte what seal writes for those fields, so a passport
 * has one body and one hash. A passport's hash is SHA-256 of its body. */
#define GW_MAX_WIRE 4096

struct gw_passport {
    char id[33];     /* 16 random bytes, hex: the nonce */
    char origin[64]; /* the origin's node id */
    char origin_jurisdiction[16];
    char to[64];        /* the origin's id for the peer it sends to */
    char classes[512];  /* found and declared, comma-separated, least sensitive first */
    char declared[512]; /* what the client declared, comma-separated */
    char policy[65];    /* the origin policy's SHA-256, hex */
    char rule[64];      /* the rule that forwarded */
    uint8_t digest[32]; /* HMAC-SHA-256 of the request body sent, under the passport key */
    char purpose[64];
    int64_t issued, expires; /* unix seconds */
};

struct gw_receipt {
    char passport[65]; /* the passport's hash, hex */
    char receiver[64]; /* the receiver's node id */
    int status;        /* the HTTP status the receiver answered */
    uint64_t seq;      /* the receiver's ledger entry for the request */
    uint8_t leaf[32];  /* that entry's leaf hash */
    int64_t time;      /* unix seconds */
};

/* Appends p's wire text, signed with k, to wire. CIT_EINVAL (logged with
 * the field) when p holds what the format cannot carry: a string without
 * its NUL, invalid UTF-8, a malformed hex field, an empty class name, a
 * value out of range; CIT_ERANGE when the wire text would be too long. */
int gw_passport_seal(const struct gw_passport *p, const struct ledger_skey *k,
                     struct cit_buf *wire);
/* Checks the signature with vk and reads the fields; hash (may be NULL) is
 * the passport's. Errors say what is wrong (malformed, bad signature,
 * a field missing): CIT_EFORMAT, or CIT_EINVAL for a signature that does
 * not verify. Expiry and replays are the caller's to check. */
int gw_passport_open(const char *wire, size_t len, const struct ledger_vkey *vk,
                     struct gw_passport *p /* out */, uint8_t hash[32] /* out */,
                     struct cit_err *err);
int gw_receipt_seal(const struct gw_receipt *r, const struct ledger_skey *k, struct cit_buf *wire);
int gw_receipt_open(const char *wire, size_t len, const struct ledger_vkey *vk,
                    struct gw_receipt *r /* out */, struct cit_err *err);
/* The passport's hash from its wire text, without checking it. */
int gw_passport_hash(const char *wire, size_t len, uint8_t hash[32] /* out */);
/* The fields of a wire text read as open reads them, but WITHOUT checking
 * the signature: for showing a ledger's entries (citadel audit show), never
 * for deciding anything. */
int gw_passport_peek(const char *wire, size_t len, struct gw_passport *p /* out */,
                     struct cit_err *err);
int gw_receipt_peek(const char *wire, size_t len, struct gw_receipt *r /* out */,
                    struct cit_err *err);

/* ---- cross-checking two ledgers (crosscheck.c) ----
 *
 * a and b are ledger directories, each verified with its key (ledger_verify)
 * first; vk_a and vk_b are the keys' texts ("<name>+<id>+<base64>", the
 * node.vkey line); vk_a NULL: a/node.vkey, vk_b is required. Then, in each
 * direction (a's forwards to b, and b's to a): every receipt in the origin's
 * ledger signed by the receiver's key names an entry of the receiver whose
 * leaf hash it gives and which holds the same passport (compared by hash);
 * every passport in the receiver's ledger signed by the origin's key is in
 * an entry of the origin's. A forward whose passport the receiver holds but
 * that has no receipt is reported (the answer broke off, or the receiver
 * refused it), and so is one the receiver never recorded (unreachable, or
 * refused at the handshake); neither is an error. Which forwards were meant
 * for the receiver is told by the passports' "to" (see crosscheck.c);
 * passports and receipts of other peers are counted, not checked. Writes a
 * report (both verify reports, then each direction, every mismatch);
 * CIT_EFORMAT naming the first mismatch ("entry 5 of A: ..."). */
int gw_crosscheck(const char *a, const char *vk_a, const char *b, const char *vk_b,
                  struct cit_buf *report, struct cit_err *err);

#endif
