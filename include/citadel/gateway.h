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

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "citadel/core.h"
#include "citadel/ledger.h"

/* ---- identities and TLS (tls.c) ----
 *
 * A node's TLS certificate is self-signed with its Ed25519 key and made
 * fresh at start; what the other side checks is the key, never a chain. */
struct ssl_ctx_st;
struct ssl_st;
struct x509_st;

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

/* The socket layer under both (fl/net.c and the listener). A listening
 * socket on "HOST:PORT" (port 0: any; *port the bound one) or a connected
 * one to it; -1 on failure. */
int gw_tcp_listen(const char *addr, int backlog, int *port /* out */, struct cit_err *err);
int gw_tcp_connect(const char *addr, struct cit_err *err);
/* Blocking send and receive timeouts on fd. */
void gw_set_timeout(int fd, double s);
/* Runs the handshake on fd (timeout_s at most) and gives the key the peer
 * proved; NULL on failure (an unpinned peer included). */
struct ssl_st *gw_tls_handshake(struct ssl_ctx_st *ctx, int fd, int server, double timeout_s,
                                uint8_t pk[32] /* out */, struct cit_err *err);
/* The raw key of an Ed25519 certificate: 0, or -1 when it is not one. */
int gw_cert_key(const struct x509_st *x, uint8_t pk[32] /* out */);

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
/* A refused handshake: from is the client's "ADDR:PORT", why what failed
 * (called on the connection's thread; may be NULL). */
typedef void (*gw_refused_fn)(void *user, const char *from, const char *why);
struct gw_listener;
int gw_listen(const char *addr, const struct ledger_skey *key, const uint8_t (*pins)[32], int npins,
              gw_accept_fn fn, gw_refused_fn on_refused, void *user,
              struct gw_listener **out /* out */, int *port /* out */, struct cit_err *err);
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
/* The purpose of a passport that carries no request (citadel peer test):
 * checked like any, answered with a receipt that names no entry (status
 * 204, seq 0, a zero leaf). */
#define GW_PURPOSE_TEST "peer-test"
/* Lifetimes, seconds: an origin seals a passport for GW_PASSPORT_TTL_S (or
 * to the request's deadline, when sooner); a receiver refuses one valid for
 * longer than GW_PASSPORT_MAX_LIFE_S, or issued more than
 * GW_PASSPORT_SKEW_S in its future, and so remembers the passports it took
 * (to refuse replays) for a bounded time. */
#define GW_PASSPORT_TTL_S      60
#define GW_PASSPORT_MAX_LIFE_S 300
#define GW_PASSPORT_SKEW_S     30

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

/* ---- the gateway: forwarding (gateway.c) ----
 *
 * One per node, made from the policy's peers and the node key. Each peer
 * keeps a few libcurl handles (each keeps its connection alive between
 * requests), a health state from a background check, and a circuit
 * breaker: after GW_BREAK_AFTER failures in a row a peer is skipped for
 * GW_BREAK_S seconds, then one request tries it again. A peer whose last
 * health check failed is skipped until one passes. */
#define GW_BREAK_AFTER 3
#define GW_BREAK_S     10

struct pol_policy;
struct gw;

int gw_open(const struct pol_policy *pol, const struct ledger_skey *key, struct gw **out /* out */,
            struct cit_err *err);
void gw_close(struct gw *g);
/* Starts the health checks (every interval_s seconds; the first at once,
 * which also opens the connections). */
int gw_start_checks(struct gw *g, int interval_s, struct cit_err *err);

/* What the transport gives a forward. The gateway seals a passport for
 * each citadel peer it tries (to, id, digest, issued and expires are its). */
struct gw_send {
    const int *peers; /* policy indices, in order */
    int n_peers;
    int chat;         /* chat/completions, else completions */
    int stream;       /* the client streams: so does the peer; else one answer */
    const char *body; /* the request's JSON: "model" and "stream" are set per peer */
    size_t len;
    int64_t deadline_ms;      /* unix ms by which the answer must end; 0: the peers' own limits */
    struct gw_passport pass;  /* the fields the gate filled */
    int max_class;            /* the request's most sensitive class (metrics), -1: none */
    const atomic_int *cancel; /* set by the transport: stop now (may be NULL) */
    /* asked now and then while the answer is awaited (may be NULL): nonzero
     * stops the forward as cancel does (the client hung up), for a transport
     * that waits in gw_forward itself */
    int (*gone)(void *user);
    /* each piece of the answer's text as it comes (the stream's deltas) */
    void (*on_text)(void *user, const char *text, size_t len);
    void *user;
};

/* What came of it. */
struct gw_result {
    int peer;        /* the policy index of the peer that answered; -1: none */
    int status;      /* 200, the peer's status, or 502/503/504 */
    int streamed;    /* some text came (no other peer was tried after it) */
    int broke_off;   /* the answer ended early: the peer stalled or the link broke */
    char finish[32]; /* the stream's finish_reason ("stop", "length", ...) */
    int64_t prompt_tokens, completion_tokens; /* the peer's usage; -1: not told */
    char err_type[48], err_code[48];          /* a refusal's OpenAI error */
    char msg[600];
    char passport[GW_MAX_WIRE]; /* the one sent to the peer that answered ("": none) */
    char receipt[GW_MAX_WIRE];  /* that peer's receipt ("": none) */
    char tried[256];            /* peers tried, with why each failed */
    uint64_t bytes_out;         /* request bytes sent, every attempt together */
    /* earlier attempts that reached a citadel peer which then could not
     * take the request (it answered 429 or 5xx): each holds the passport,
     * so the origin records each */
    struct gw_attempt {
        int peer, status;
        char passport[GW_MAX_WIRE], receipt[GW_MAX_WIRE];
    } prior[8];
    int n_prior;
};

/* 1 when at least one of peers may be tried now (its last health check did
 * not fail and its breaker is not open); else 0, and why says so for each.
 * gw_forward skips the same peers, so a prediction (POST
 * /v1/policy/decide) and the forward agree. */
int gw_usable(struct gw *g, const int *peers, int n, char *why, size_t cap);

/* Sends s to its peers in order until one answers; blocks the calling
 * thread until the answer ends. Retries only before any text came. */
void gw_forward(struct gw *g, const struct gw_send *s, struct gw_result *r /* out */);

/* Witnesses (the peers with a witness_key): each checkpoint of the ledger
 * in ledger_dir that gw_witness_push is given is shown to them
 * (add-checkpoint, on the gateway's thread) and fn is told each
 * cosignature, the whole cosigned note, for the node to keep. */
typedef void (*gw_cosigned_fn)(void *user, const char *witness, uint64_t size, const char *note);
void gw_set_witness(struct gw *g, const char *ledger_dir, gw_cosigned_fn fn, void *user);
void gw_witness_push(struct gw *g, const char *note, size_t len);

struct gw_peer_stats {
    char id[64], kind[8], url[256], jurisdiction[16];
    int healthy;          /* the last check answered */
    int breaker_open;     /* skipped for now */
    int64_t last_check;   /* unix seconds; 0: never */
    double last_check_ms; /* its round trip */
    char last_error[200];
    int passport_ok;         /* the last check's test passport: 1 receipt ok, 0 not, -1 none sent */
    uint64_t witness_size;   /* a witness of ours: the size it cosigned last (0: none yet) */
    char witness_error[300]; /* why the last checkpoint shown to it was not cosigned ("") */
    uint64_t requests, failures, bytes_out;
    double latency_sum_s;         /* until the answer ended, over requests */
    uint64_t bytes_out_class[32]; /* by the most sensitive class sent (policy class index) */
};
int gw_peer_count(const struct gw *g);
void gw_peer_stats(struct gw *g, int i, struct gw_peer_stats *st /* out */);
/* One check of peer i now. With passport (citadel peer test), a citadel
 * peer also gets a test passport (purpose GW_PURPOSE_TEST, for an empty
 * body) and must answer with a receipt for it that it signed. */
int gw_check(struct gw *g, int i, int passport, struct cit_err *err);

/* ---- witnesses (witness.c) ----
 *
 * c2sp.org/tlog-witness between citadels: a node asks its peers to cosign
 * its ledger's checkpoints (c2sp.org/tlog-cosignature, ledger_cosign), so
 * that it cannot later show an auditor a history other than the one its
 * peers saw. What is here is pure (no network, no threads, no files): the
 * transport carries the bytes and the witness keeps its state.
 *
 * The add-checkpoint request (POST <prefix>/add-checkpoint), every line
 * ending in U+000A:
 *
 *   old <size>\n       the size of the last checkpoint of this log the
 *                      witness cosigned (0: none, or not known), ASCII
 *                      decimal without leading zeros
 *   <base64 hash>\n    0 to GW_WITNESS_MAX_PROOF lines, each one SHA-256 in
 *                      standard base64 (44 characters): the RFC 6962
 *                      consistency proof from the old size to the
 *                      checkpoint's; none when the old size is 0
 *   \n                 an empty line
 *   <checkpoint>       the log's signed note (ledger.h), signature lines
 *                      included, nothing after them
 *
 * The witness answers
 *   200  its cosignature line(s), "— <witness name> <base64>\n" each;
 *   400  a malformed body, or an old size above the checkpoint's;
 *   403  no valid signature by the log's key;
 *   404  the checkpoint's origin is not the log's (the key's name);
 *   409  the old size is not the size the witness cosigned last, or it is
 *        and the checkpoint has another root (a fork); the body is the
 *        witness's size, "<decimal>\n", with Content-Type
 *        GW_WITNESS_SIZE_TYPE, so the log can retry with a proof from there
 *        (a log that gets back its own old size knows it was a fork);
 *   422  the consistency proof does not verify. */

/* Limits, each checked before the length is used: proof lines (the
 * spec's), bytes of a checkpoint (signatures included), of a whole body
 * (the old line and the proof fit in 4096) and of a 200 answer. */
#define GW_WITNESS_MAX_PROOF 63
#define GW_WITNESS_MAX_NOTE  (16u * 1024)
#define GW_WITNESS_MAX_BODY  (GW_WITNESS_MAX_NOTE + 4096)
#define GW_WITNESS_MAX_REPLY (8u * 1024)
/* The Content-Type of a 409 answer. */
#define GW_WITNESS_SIZE_TYPE "text/x.tlog.size"

/* What a witness keeps per log: the last checkpoint it cosigned. Size 0:
 * nothing cosigned yet (root unused). The witness must store the new state
 * before it answers 200, atomically with the check of the old one, or two
 * requests racing can roll it back (the spec's note). */
struct gw_witness_state {
    uint64_t size;
    uint8_t root[LEDGER_HASH];
};

/* The log's side: the add-checkpoint body for note[0, len) (a signed note
 * ending in a newline, at most GW_WITNESS_MAX_NOTE bytes) with proof, the
 * consistency proof from old_size to its size (n_proof hashes, at most
 * GW_WITNESS_MAX_PROOF; none when old_size is 0), appended to out.
 * CIT_EINVAL for arguments the witness would refuse, out untouched. */
int gw_witness_body(uint64_t old_size, const uint8_t (*proof)[LEDGER_HASH], int n_proof,
                    const char *note, size_t len, struct cit_buf *out, struct cit_err *err);

/* The witness's rule, the one add-checkpoint and `citadel audit cosign`
 * both follow: may a witness whose last cosigned checkpoint of the log is
 * last cosign cp, given proof, a consistency proof from last->size to
 * cp->size? Returns the status add-checkpoint answers: 200 yes; 400 cp is
 * smaller (the log rolled back); 409 the same size and another root (a
 * fork); 422 a proof where none is due (from size 0, or to the same size),
 * or one that does not verify (the log forked or was rewritten). err says
 * which, with the sizes. cp's signature is the caller's to check. */
int gw_witness_check(const struct gw_witness_state *last, const struct ledger_checkpoint *cp,
                     const uint8_t (*proof)[LEDGER_HASH], int n_proof, struct cit_err *err);

/* The witness's side of add-checkpoint: checks body[0, len) from the log
 * whose key is log against last, and cosigns its checkpoint with witness
 * (a LEDGER_KEY_COSIGN key) at now (POSIX seconds). Returns the HTTP
 * status (above; 500 when out of memory or witness is not a witness's
 * key) and says in err what was wrong and where (line and byte of the
 * body). On 200: *next is the new checkpoint, the cosignature line (the
 * answer's body) is appended to reply, and the whole note with that line
 * to cosigned (for the witness to keep, and to show). On 409: the
 * witness's size, "<last->size>\n", is appended to reply. Out-parameters
 * are untouched otherwise. */
int gw_witness_add(const struct ledger_vkey *log, const struct ledger_skey *witness,
                   const struct gw_witness_state *last, const char *body, size_t len, uint64_t now,
                   struct gw_witness_state *next /* out */, struct cit_buf *reply /* out */,
                   struct cit_buf *cosigned /* out */, struct cit_err *err);

/* The log's side of a 200: reply[0, rlen) must be signature lines, at
 * least one a valid cosignature by witness over note[0, len) (the note
 * that was sent). Appends note and the lines that are (lines of other
 * keys, or that do not verify, are left out, as the spec says) to out.
 * CIT_EFORMAT for a malformed reply, CIT_EINVAL when no line is a valid
 * cosignature by witness; out untouched then. */
int gw_witness_reply_apply(const char *note, size_t len, const char *reply, size_t rlen,
                           const struct ledger_vkey *witness, struct cit_buf *out,
                           struct cit_err *err);

/* The log's side of a 409: the witness's size from its body, "<decimal>\n"
 * (no leading zeros). CIT_EFORMAT for anything else, *size untouched. */
int gw_witness_conflict_size(const char *body, size_t len, uint64_t *size /* out */);

#endif
