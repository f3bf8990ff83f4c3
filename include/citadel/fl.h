/*
 * fl: federated learning. Nodes train one model together; raw data never
 * leaves a node, and with secure aggregation no party (the coordinator
 * included) sees another's update, only the sum.
 *
 * The pieces, bottom up:
 *   data      CSV and IDX datasets (gzip or plain), and the IID / Dirichlet /
 *             one-label-per-client partitions that `citadel fl split` writes
 *   trainers  multinomial logistic regression and a multi-layer perceptron
 *             (ReLU, softmax cross-entropy), SGD or Adam over mini-batches,
 *             with FedProx's proximal term
 *   strategy  FedAvg (weighted by examples), FedProx, FedAdam on the server
 *   quantize  clip and stochastically round an update into the ring Z/2^32
 *   secagg    SecAgg+ (Bell et al. 2020): per-round X25519 keys, a random
 *             k-regular graph, Shamir shares of each client's mask seed and
 *             mask key among its neighbours, ChaCha20 masks, dropout recovery
 *
 * Secure aggregation is written as two state machines, one per role, that
 * read and write the wire messages below and nothing else. The coordinator's
 * transport (TLS) and the in-process tests drive the same machines with the
 * same bytes, so what the tests check is what travels.
 *
 * ---- wire format, version 1 ----
 * Every message is one frame; integers are little-endian.
 *
 *   offset  size  field
 *   0       3     magic "CFL"
 *   3       1     version (1)
 *   4       1     type (FL_MSG_*)
 *   5       3     zero
 *   8       4     body length in bytes (<= FL_MAX_FRAME)
 *   12      ...   body
 *
 * Every secure-aggregation body starts with the round's binding:
 *
 *   32  session id (random, chosen by the coordinator for this round)
 *   8   round number
 *
 * and a party drops a frame whose binding is not the current round's, or
 * whose type is not the one its state expects (replays, reordering). Then,
 * by type (u32 = 4 bytes; "n x" a count u32 then n entries; every count is
 * checked against its cap before anything is allocated):
 *
 *   SA_SETUP   S->C  n u32, k u32, t u32, d u32, you u32 (your position),
 *                    n x (roster index u32)
 *   SA_KEYS    C->S  c_pk[32] (X25519, share encryption), s_pk[32] (X25519,
 *                    pairwise masks), sig[64] (Ed25519 by the client's
 *                    identity over "citadel-fl/keys/v1" | binding | position
 *                    u32 | c_pk | s_pk)
 *   SA_PEERS   S->C  n x (position u32, c_pk[32], s_pk[32], sig[64]):
 *                    the keys of your neighbours that answered
 *   SA_SHARES  C->S  n x (to position u32, box[FL_SA_BOX]): one encrypted
 *                    share pair per neighbour
 *   SA_INBOX   S->C  n x (from position u32, box[FL_SA_BOX]): the boxes
 *                    addressed to you
 *   SA_MASKED  C->S  d x u32: the masked input
 *   SA_ALIVE   S->C  n x (position u32): who sent a masked input (U3)
 *   SA_SIGN    C->S  sig[64] over "citadel-fl/alive/v1" | binding | U3
 *   SA_SIGS    S->C  n x (position u32, sig[64]): your neighbourhood's (and
 *                    your own) signatures on U3
 *   SA_REVEAL  C->S  n x (position u32, kind u8 (1 mask seed, 2 mask key),
 *                    x u8, share[32])
 *   SA_DONE    S->C  contributors u32, sum digest[32] (SHA-256 of the sum)
 *   ABORT      any   reason (n bytes, at most 256)
 *
 * A box is XChaCha20-Poly1305 under a key both ends derive from X25519
 * (c_sk of one, c_pk of the other) and the binding; its associated data is
 * the binding, sender and recipient; it holds sender u32, recipient u32,
 * x u8, the Shamir share of the sender's mask seed [32] and of its mask
 * key [32].
 */
#ifndef CITADEL_FL_H
#define CITADEL_FL_H

#include <stddef.h>
#include <stdint.h>

#include "citadel/core.h"
#include "citadel/ledger.h"

/* ---- datasets ---- */

#define FL_MAX_EXAMPLES 10000000
#define FL_MAX_FEATURES 1000000
#define FL_MAX_CLASSES  1000

/* A labelled dataset in memory: x is (n, d) row-major, y is (n). Pixel data
 * read from u8 IDX files is scaled to [0, 1] and remembered as such (u8), so
 * that writing it back stores bytes again. */
struct fl_data {
    size_t n, d;
    int classes; /* 1 + the largest label */
    int u8;      /* features came from bytes, scaled by 1/255 */
    float *x;
    int32_t *y;
};

/* Loads a dataset. path is a CSV file (label in the last column; a first
 * line with anything but numbers is a header and skipped) or an IDX file of
 * features with labels, gzip-compressed or plain. labels: the IDX labels
 * file; NULL derives it from path ("images" -> "labels", "idx3" -> "idx1",
 * ".x.idx" -> ".y.idx"). Names of the Debian datasets are accepted for path:
 * fashion-mnist-train, fashion-mnist-test, digits, breast-cancer, iris. */
int fl_data_load(const char *path, const char *labels, struct fl_data *out /* out */,
                 struct cit_err *err);
void fl_data_free(struct fl_data *ds);
/* Writes ds as two IDX files (features u8 when ds->u8, else f32; labels u8
 * or i32), each through a temporary file renamed into place. */
int fl_data_write(const struct fl_data *ds, const char *xpath, const char *ypath,
                  struct cit_err *err);
/* Rescales every feature to mean 0, variance 1 with this dataset's own
 * statistics (each node standardises its own data; constant features stay 0). */
void fl_data_standardize(struct fl_data *ds);

enum fl_split_kind {
    FL_SPLIT_IID,       /* a random equal share of every class */
    FL_SPLIT_DIRICHLET, /* per class, proportions ~ Dirichlet(alpha) */
    FL_SPLIT_LABEL,     /* client i holds class i mod classes only */
};
/* Assigns every example to one of `clients` clients: part[i] in [0, clients).
 * Deterministic for a seed. */
int fl_split(const struct fl_data *ds, int clients, enum fl_split_kind kind, double alpha,
             uint64_t seed, int *part /* out, (n) */, struct cit_err *err);
/* The datasets that part (as fl_split wrote it) gives each client, in the
 * original order: out[k] for k < clients, each freed with fl_data_free
 * (all of them, and none written, on failure). */
int fl_data_parts(const struct fl_data *ds, const int *part, int clients,
                  struct fl_data *out /* out, (clients) */);

/* ---- models and local training ---- */

#define FL_MAX_LAYERS 4 /* hidden layers of the perceptron */

enum fl_arch { FL_LOGREG, FL_MLP };
enum fl_optim { FL_SGD, FL_ADAM };

struct fl_arch_spec {
    enum fl_arch arch;
    int inputs, classes;
    int layers;                /* hidden layers (FL_MLP): 1..FL_MAX_LAYERS */
    int hidden[FL_MAX_LAYERS]; /* their widths */
};

/* Number of parameters; 0 when the spec is invalid (says why in err). */
size_t fl_arch_params(const struct fl_arch_spec *a, struct cit_err *err);
/* He-initialised weights, zero biases, from seed. w has fl_arch_params(). */
void fl_arch_init(const struct fl_arch_spec *a, float *w, uint64_t seed);

struct fl_train_opts {
    int epochs, batch;
    int steps; /* stop after this many mini-batches in all; 0: no limit. Rounds of
                  a fraction of an epoch keep non-IID clients from drifting apart */
    float lr;
    enum fl_optim optim;
    float beta1, beta2, eps; /* Adam; 0: 0.9, 0.999, 1e-8 */
    float mu;                /* FedProx: weight of mu/2 |w - w_global|^2; 0: plain */
    uint64_t seed;           /* shuffling */
};

/* Trains w in place on ds. w_global (may be NULL when mu == 0) is the
 * round's global model for the proximal term. *loss gets the mean training
 * loss of the last epoch (may be NULL). */
int fl_train(const struct fl_arch_spec *a, float *w, const float *w_global,
             const struct fl_data *ds, const struct fl_train_opts *o, float *loss /* out */,
             struct cit_err *err);
/* Accuracy in [0, 1] and mean cross-entropy of w on ds. */
int fl_evaluate(const struct fl_arch_spec *a, const float *w, const struct fl_data *ds,
                float *accuracy /* out */, float *loss /* out */);

/* ---- server strategies ---- */

enum fl_strategy { FL_FEDAVG, FL_FEDPROX, FL_FEDADAM };

/* The server side of a strategy: turns the round's mean update into the next
 * global model. FedAvg and FedProx apply it as is (FedProx differs on the
 * clients); FedAdam (Reddi et al. 2021) treats it as a pseudo-gradient for
 * Adam with server learning rate lr, betas beta1/beta2 and tau. */
struct fl_server_opt {
    enum fl_strategy strategy;
    float lr, beta1, beta2, tau; /* FedAdam; 0: 0.01, 0.9, 0.99, 1e-3 */
    size_t d;
    float *m, *v; /* (d) FedAdam moments, owned */
};
int fl_server_opt_init(struct fl_server_opt *s, enum fl_strategy strategy, size_t d);
void fl_server_opt_free(struct fl_server_opt *s);

/* ---- one round's arithmetic, on either side ----
 * A client contributes d + 1 entries: its update (local minus global model,
 * L2-clipped to clip) times its weight, then the weight itself; the weight
 * is its example count over weight_cap (at most 1), or 1 for unweighted
 * rounds. Summed over clients, entry d is the total weight, and the mean
 * update is the weighted sum over it: FedAvg weighted by examples, without
 * any client's count leaving it in the clear. */
struct fl_round_cfg {
    double clip;         /* L2 bound of an update; also bounds quantization */
    int max_clients;     /* sum of at most this many cannot wrap */
    double weight_cap;   /* examples for weight 1; 0: unweighted */
    double local_epochs; /* > 0: passes over its data per round, may be a fraction
                            (overrides the training options' epochs and steps) */
    double noise;        /* DP: std of the Gaussian noise a client adds to each entry
                            of its clipped update (needs weight_cap 0); 0: none */
};
/* Trains a copy of global on ds and writes the quantized contribution
 * (d + 1 entries) into out. */
int fl_client_update(const struct fl_round_cfg *rc, const struct fl_arch_spec *a,
                     const float *global, const struct fl_data *ds, const struct fl_train_opts *o,
                     uint32_t *out /* out, (d + 1) */, float *loss /* out, may be NULL */,
                     struct cit_err *err);
/* Turns the sum of the contributions into the next global model through the
 * server optimiser. Fails when the total weight is not positive. */
int fl_server_update(const struct fl_round_cfg *rc, struct fl_server_opt *so, float *global,
                     const uint32_t *sum /* (d + 1) */, size_t d, struct cit_err *err);

/* ---- secure aggregation (SecAgg+) ---- */

#define FL_MAGIC       "CFL"
#define FL_VERSION     1
#define FL_HDR         12
#define FL_MAX_FRAME   (64u << 20) /* one frame's body: a d = 16M masked vector */
#define FL_MAX_CLIENTS 1024
#define FL_MAX_DIM     (16u << 20) /* entries of a secure-aggregation vector */
#define FL_SA_SHARE    32
#define FL_SA_PLAIN    (4 + 4 + 1 + 2 * FL_SA_SHARE)
#define FL_SA_BOX      (24 + FL_SA_PLAIN + 16) /* nonce, ciphertext, tag */
#define FL_ABORT_MAX   256

enum fl_msg {
    FL_MSG_SA_SETUP = 0x10,
    FL_MSG_SA_KEYS = 0x11,
    FL_MSG_SA_PEERS = 0x12,
    FL_MSG_SA_SHARES = 0x13,
    FL_MSG_SA_INBOX = 0x14,
    FL_MSG_SA_MASKED = 0x15,
    FL_MSG_SA_ALIVE = 0x16,
    FL_MSG_SA_SIGN = 0x17,
    FL_MSG_SA_SIGS = 0x18,
    FL_MSG_SA_REVEAL = 0x19,
    FL_MSG_SA_DONE = 0x1a,
    FL_MSG_ABORT = 0x7f,
};

/* The consortium: every member's Ed25519 identity key, by roster index. The
 * same roster is configured on every node; the keys in it are the pins. One
 * built by hand is a view of the caller's arrays; one from fl_roster_load is
 * a single allocation that fl_roster_free frees. */
struct fl_roster {
    int n;
    const uint8_t (*pk)[32];  /* (n, 32) */
    const char *const *names; /* (n) for logs and the ledger; may be NULL */
};

/* ---- the roster file ----
 * Text, one member a line; the line order is the roster index:
 *
 *   NAME+ID+KEY     the member's public key as fl keygen writes it to
 *                   NAME.vkey: ID the key id (8 hex digits), KEY base64 of
 *                   0x01 | Ed25519 public key[32]
 *   # ...           a comment; blank lines are skipped too
 *
 * Trailing spaces and CRs are ignored. At most 1 MiB and FL_MAX_CLIENTS
 * members, at least 2, no key twice. Errors name the file and the line. */
int fl_roster_load(const char *path, struct fl_roster **out /* out */, struct cit_err *err);
void fl_roster_free(struct fl_roster *r);

/* A round's parameters, as the coordinator chose them. */
struct fl_sa_params {
    uint8_t session[32];
    uint64_t round;
    uint32_t n;              /* participants */
    uint32_t k;              /* neighbours of each (even, or n - 1 for the full graph) */
    uint32_t t;              /* shares needed to rebuild a secret; > (k + 1) / 2 */
    uint32_t d;              /* vector length */
    const uint32_t *members; /* (n) roster indices, each once */
};

/* What a transcript records, for the ledger (every node writes its own). */
struct fl_sa_transcript {
    uint32_t n, contributors, dropped_keys, dropped_shares, dropped_masked, dropped_late;
    uint8_t keys_digest[32];   /* SHA-256 over every advertised key message */
    uint8_t shares_digest[32]; /* over every box relayed */
    uint8_t masked_digest[32]; /* over every masked vector received (server) or sent (client) */
    uint8_t sum_digest[32];    /* of the unmasked sum */
};

/* The client. id_sk is the 64-byte libsodium Ed25519 secret key of this
 * node; roster_index its index in the roster; min_t the smallest threshold
 * it accepts (its own floor; 0: the protocol minimum). input (d u32) is the
 * quantized update, copied when the setup arrives. */
struct fl_sa_client;

/* The coordinator. It learns the sum of the inputs of the clients that sent
 * a masked input (U3), nothing else, provided at least t holders of every
 * needed secret stay. Use: _new, then per stage: _send(i) for every position
 * still in, deliver, _recv(i) for every reply that came back in time, then
 * _advance() (whoever did not answer is dropped). */
struct fl_sa_server;

/* The graph degree and threshold a coordinator uses by default for n
 * clients: the full graph (SecAgg) up to 16, else the smallest even k >=
 * 2 log2(n) (SecAgg+); t the least majority of the k + 1 holders. */
void fl_sa_default(uint32_t n, uint32_t *k /* out */, uint32_t *t /* out */);

/* Runs one secure aggregation with n in-process clients, through the same
 * frames a network would carry, with fresh identity keys: sum (d) gets the
 * sum of inputs[i] (each d) over the clients whose drop_at[i] (NULL: none
 * drop) is past the masked-input stage (2). For simulations and tests. */
int fl_sa_simulate(uint32_t n, uint32_t k, uint32_t t, uint32_t d, const uint32_t *const *inputs,
                   const int *drop_at, uint32_t *sum /* out */,
                   struct fl_sa_transcript *tr /* out, may be NULL */, struct cit_err *err);

/* ---- Paillier aggregation with threshold decryption (paillier.c) ----
 * An alternative to SecAgg+: every client encrypts its quantized update
 * (packed, several u32 per plaintext) under one public key; the coordinator
 * multiplies the ciphertexts (adding the plaintexts) and t of the parties
 * each raise the aggregate to their key share; t such shares decrypt it, and
 * fewer reveal nothing. Ciphertexts travel as big-endian numbers of
 * fl_pai_ct_bytes() bytes. */

struct fl_pai;       /* the public key */
struct fl_pai_share; /* one party's share of the secret key */

/* A dealer's key generation: a bits-bit modulus of two safe primes, and
 * parties shares of which threshold decrypt. The factors and the secret
 * exponent are wiped before it returns. shares has room for parties. */
int fl_pai_keygen(unsigned bits, int parties, int threshold, struct fl_pai **pub /* out */,
                  struct fl_pai_share **shares /* out */, struct cit_err *err);
void fl_pai_free(struct fl_pai *k);
void fl_pai_share_free(struct fl_pai_share *s);
int fl_pai_threshold(const struct fl_pai *k);

/* Writes the public key (s NULL, mode 0644) or one party's file with its
 * share (mode 0600), through a temporary file. */
int fl_pai_save(const struct fl_pai *k, const struct fl_pai_share *s, const char *path,
                struct cit_err *err);
/* Reads a public key, or with share not NULL a party's file (which must
 * hold a share). */
int fl_pai_load(const char *path, struct fl_pai **k /* out */,
                struct fl_pai_share **share /* out */, struct cit_err *err);

/* ---- differential privacy ----
 * Client-level DP for the sum of a round: every contribution is L2-clipped
 * to C and carries Gaussian noise. Under secure aggregation the noise is
 * split (Kairouz et al. 2021's distributed noise): each of the at least m
 * contributors the threshold guarantees adds N(0, z^2 C^2 / m), so the sum
 * holds at least N(0, z^2 C^2), the Gaussian mechanism with noise
 * multiplier z. Each round is accounted in Renyi DP (Mironov 2017): order a
 * costs a / (2 z^2); rounds add up; the (epsilon, delta) bound is the best
 * over the orders of rdp + log((a - 1) / a) - (log delta + log a) / (a - 1)
 * (Balle et al. 2020). No amplification by sampling is claimed: who is
 * selected is up to the coordinator. */

#define FL_DP_ORDERS 24

struct fl_dp_account {
    uint64_t rounds;
    double rdp[FL_DP_ORDERS]; /* spent, by Renyi order */
};

/* ---- federation over the network: citadel fl serve / fl join ----
 * The orchestration frames, in the wire format above (version 1):
 *
 *   TASK    S->C  round u64, rounds u32, mode u8, arch u8, inputs u32,
 *                 classes u32, layers u8, hidden 4 x u32, clip f64,
 *                 max_clients u32, weight_cap f64, local_epochs f64,
 *                 batch u32, lr f32, optim u8, mu f32, seed u64,
 *                 dp_noise f64 (0: none), dp_min u32, d u32, d x f32 (the
 *                 global model). f32 / f64 travel as their IEEE-754 bits.
 *   READY   C->S  round u64, accept u8; accept 0: reason (the rest, at
 *                 most FL_ABORT_MAX bytes); accept 1 in plain mode: d + 1
 *                 x u32, the contribution; in secure mode nothing (the
 *                 SA_ frames follow)
 *   FINISH  S->C  rounds u32, d u32, d x f32 (the final model), round u64
 *                 (the last round aggregated; 0: none was), strategy u8
 *                 (enum fl_strategy), and when round is not 0: d + 1 x u32,
 *                 that round's sum
 *
 * Paillier mode: READY (accept 1) carries sig[64] and m ciphertexts (the
 * contribution, encrypted and packed), sig being the participant's Ed25519
 * signature over "citadel-fl/pa/v1" | round u64 | roster index u32 |
 * SHA-256(ciphertexts). Then:
 *
 *   PA_DECRYPT S->C  round u64, c u32, c x (roster index u32, sig[64],
 *                    m ciphertexts): every contribution, as signed
 *   PA_SHARE   C->S  round u64, party id u32, m decryption shares
 *
 * A participant checks every signature, that c reaches its floor (2, or its
 * --t), and that it has not decrypted anything else this round, multiplies
 * the ciphertexts itself and returns its share of the product's decryption:
 * so the coordinator can have only the sum of at least that many signed
 * contributions decrypted, once per round.
 *
 * A participant refuses, and leaves the federation: a TASK in a mode below
 * its --min-mode (fl_mode_rank), before it trains; a round number of 0, one
 * not past the last TASK's (the coordinator sends each round once, a
 * failed round is not retried: a repeat is a replay), one past the rounds
 * the first TASK announced, or a change of that total (skipped rounds are
 * legitimate: a round selects --per-round at random); an SA_SETUP for
 * another round than its TASK's (that round is aborted); and a FINISH
 * whose model is not, bit for bit, the last TASK's model stepped by the
 * mean of the sum FINISH carries (FedAvg, FedProx), or whose sum is not the
 * one SA_DONE announced (fl_finish_check). It cannot check a FedAdam step,
 * nor a round whose TASK it was not sent; it then writes the model and says
 * it is unchecked. The sum in FINISH tells a participant the round's total
 * weight beyond what the final model shows; under DP it is the noised sum.
 *
 * A round: the coordinator selects participants among those connected,
 * sends each the TASK, and gives them train_timeout to answer READY; those
 * that accept are the round's members, and secure aggregation (or, with
 * --plain, the plain sum) runs over them with stage_timeout per stage. A
 * participant that closes, fails or misses a deadline is dropped from the
 * round and disconnected; the round goes on while the threshold holds. */

#define FL_MSG_TASK       0x01
#define FL_MSG_READY      0x02
#define FL_MSG_FINISH     0x03
#define FL_MSG_PA_DECRYPT 0x04
#define FL_MSG_PA_SHARE   0x05

enum fl_mode { FL_MODE_PLAIN = 1, FL_MODE_SECAGG = 2, FL_MODE_PAILLIER = 3 };

/* How little of one participant's update a mode shows the coordinator, the
 * order fl join's --min-mode compares by: 0 plain (it sees every update),
 * 1 SecAgg+ and threshold Paillier alike (it sees only sums: of at least t
 * contributions, or of at least the decryptors' floor). The two secure
 * modes rest on different trust (honest neighbours, key-share holders and a
 * dealer that forgot) and neither hides more than the other, so they rank
 * equal. -1 for a value that is no mode. */
int fl_mode_rank(int mode);
/* "plain", "secagg", "paillier": what the ledger, the logs and --min-mode say. */
const char *fl_mode_name(int mode);

/* How a participant checked the final model that FINISH brought. */
enum fl_finish_check {
    FL_FINISH_UNCHECKED,  /* it could not (a FedAdam step, a last round it was not sent) */
    FL_FINISH_RECOMPUTED, /* bit for bit its last TASK's model plus the mean of that round's sum */
    FL_FINISH_UNCHANGED,  /* bit for bit its last TASK's model: every round since failed */
};

/* What fl_serve and fl_join report as they go, for the caller to show: the
 * library prints nothing itself (its diagnostics go to cit_log). */
enum fl_progress_kind {
    FL_PROGRESS_ROUND,    /* the coordinator aggregated a round */
    FL_PROGRESS_FINISHED, /* a participant received the final model */
};
struct fl_progress {
    enum fl_progress_kind kind;
    /* FL_PROGRESS_ROUND */
    int round; /* 1-based */
    int selected, ready;
    uint32_t contributors;
    double ms;            /* the round's wall time, evaluation included */
    int tested;           /* accuracy and loss were measured on the test set */
    float accuracy, loss; /* of the new global model */
    /* FL_PROGRESS_FINISHED */
    uint32_t rounds;        /* as the coordinator announced them */
    uint64_t dp_rounds;     /* rounds this node's privacy account has spent, in all */
    int checked;            /* enum fl_finish_check */
    uint64_t checked_round; /* the round checked against (FL_FINISH_RECOMPUTED: whose sum,
                               FL_FINISH_UNCHANGED: whose TASK) */
    int sum_matched;        /* that sum is the one this node's SA_DONE announced */
    const char *unchecked;  /* FL_FINISH_UNCHECKED: what this node lacked to check it
                               (valid during the call) */
};
typedef void (*fl_progress_fn)(void *user, const struct fl_progress *ev);

struct fl_serve_opts {
    const char *listen;    /* "HOST:PORT"; port 0: any free one */
    const char *port_file; /* gets the bound port once listening (may be NULL) */
    const struct ledger_skey *key;
    struct fl_roster roster; /* the members, pinned, and their names */
    int expect;              /* members to wait for; 0: all */
    int min_clients;         /* a round needs this many ready; 0: 2 */
    int per_round;           /* selected per round; 0: every one connected */
    int rounds;
    double join_timeout_s, train_timeout_s, stage_timeout_s; /* 0: 60, 300, 60 */
    enum fl_mode mode;
    uint32_t k, t; /* 0: fl_sa_default for the round's n */
    struct fl_arch_spec arch;
    struct fl_round_cfg rc;
    struct fl_train_opts o; /* the participants' local training */
    struct fl_server_opt *so;
    const struct fl_pai *pai;   /* FL_MODE_PAILLIER: the public key */
    double dp_noise;            /* z; 0: no noise */
    const struct fl_data *test; /* accuracy per round (may be NULL) */
    struct ledger *ledger;      /* a transcript per round (may be NULL) */
    const char *out;            /* the final model, IDX f32 (may be NULL) */
    const char *dump_sum;       /* testing: the last round's sum and members */
    uint64_t seed;
    fl_progress_fn progress; /* each aggregated round (may be NULL) */
    void *progress_user;
};
int fl_serve(const struct fl_serve_opts *o, struct cit_err *err);

struct fl_join_opts {
    const char *connect;
    const struct ledger_skey *key;
    const uint8_t *coordinator; /* [32] its pinned key */
    struct fl_roster roster;
    const struct fl_data *data;
    struct ledger *ledger;
    const struct fl_pai *pai;             /* Paillier mode: the key and this */
    const struct fl_pai_share *pai_share; /* node's share (both or neither) */
    uint32_t min_t; /* the smallest SecAgg threshold, and Paillier contributor count, accepted */
    enum fl_mode min_mode;   /* the weakest aggregation taken part in (ranked by fl_mode_rank);
                                0: FL_MODE_SECAGG, which admits Paillier too, never plain */
    double dp_epsilon;       /* budget; 0: none (refuses no round) */
    double dp_delta;         /* 0: 1e-5 */
    double dp_min_noise;     /* refuses rounds with less noise than this z */
    const char *dp_state;    /* the privacy account, kept across runs */
    double timeout_s;        /* the longest wait for a frame; 0: 3600 */
    const char *out;         /* the final model */
    const char *dump_update; /* testing: this node's last contribution */
    int drop_at, stall_at;   /* testing: a frame type at which to vanish or hang (0: none) */
    fl_progress_fn progress; /* the federation's end (may be NULL) */
    void *progress_user;
};
int fl_join(const struct fl_join_opts *o, struct cit_err *err);

#endif
