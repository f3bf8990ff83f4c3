/* Internals shared by the fl sources. */
#ifndef CITADEL_FL_INT_H
#define CITADEL_FL_INT_H

#include <stddef.h>
#include <stdint.h>

#include "citadel/core.h"
#include "citadel/fl.h"
#include "citadel/gateway.h"

/* ---- a seeded generator for what needs repeatability, not secrecy ----
 * (shuffles, partitions, weight initialisation, stochastic rounding):
 * core's xoshiro256**. Masks, keys and DP noise never use it. */
struct fl_rng {
    uint64_t s[4];
};
void fl_rng_seed(struct fl_rng *r, uint64_t seed);
uint64_t fl_rng_next(struct fl_rng *r);
double fl_rng_uniform(struct fl_rng *r);         /* (0, 1) */
double fl_rng_normal(struct fl_rng *r);          /* N(0, 1) */
size_t fl_rng_below(struct fl_rng *r, size_t n); /* [0, n), unbiased */

/* ---- frames ---- */

/* Writer: fl_wr_begin writes the header, the field writers append, and
 * fl_wr_end patches the body length. Failures stick (checked once at the
 * end). */
struct fl_wr {
    struct cit_buf *b;
    size_t start;
    int failed;
};
void fl_wr_begin(struct fl_wr *w, struct cit_buf *b, int type);
void fl_wr_u8(struct fl_wr *w, uint8_t v);
void fl_wr_u32(struct fl_wr *w, uint32_t v);
void fl_wr_u64(struct fl_wr *w, uint64_t v);
void fl_wr_u32s(struct fl_wr *w, const uint32_t *v, size_t n); /* n u32, little-endian */
/* A count written before its entries: fl_wr_slot reserves the u32 and
 * returns where it is; fl_wr_fill writes the count once the entries are. */
size_t fl_wr_slot(struct fl_wr *w);
void fl_wr_fill(struct fl_wr *w, size_t slot, uint32_t v);
void fl_wr_bytes(struct fl_wr *w, const void *p, size_t n);
int fl_wr_end(struct fl_wr *w);
/* out = an ABORT frame with reason why (cut at FL_ABORT_MAX bytes). */
int fl_abort_frame(struct cit_buf *out, const char *why);

/* Reader over a whole frame: checks the header, then every field read
 * checks the bytes left; the first failure names the field and its offset
 * and later reads return zeros. */
struct fl_rd {
    const uint8_t *p;
    size_t n, off;
    int type;
    int failed;
    struct cit_err *err;
};
int fl_rd_begin(struct fl_rd *r, const uint8_t *frame, size_t len, struct cit_err *err);
uint8_t fl_rd_u8(struct fl_rd *r, const char *what);
uint32_t fl_rd_u32(struct fl_rd *r, const char *what);
uint64_t fl_rd_u64(struct fl_rd *r, const char *what);
const uint8_t *fl_rd_bytes(struct fl_rd *r, size_t n, const char *what);
/* A count u32 that must be <= cap and leave room for count * entry bytes. */
uint32_t fl_rd_count(struct fl_rd *r, uint32_t cap, size_t entry, const char *what);
/* 0 when every byte was read and nothing failed; else the error. */
int fl_rd_end(struct fl_rd *r);

/* ---- Shamir secret sharing over GF(2^8), byte by byte ----
 * Field arithmetic is written without tables or branches on secret data.
 * x coordinates are 1..255. */
void fl_shamir_split(const uint8_t secret[32], int t, const uint8_t *xs, int count,
                     uint8_t (*shares)[32] /* out, (count, 32) */);
/* Rebuilds the secret from t shares with distinct nonzero xs: 0, or -1 when
 * two xs repeat or one is zero. */
int fl_shamir_combine(const uint8_t *xs, const uint8_t (*shares)[32], int t,
                      uint8_t secret[32] /* out */);

/* ---- masks ---- */

/* acc[i] += sign * PRG(seed)[i] for i < d, PRG being ChaCha20 keyed by the
 * 32-byte seed; sign is +1 or -1. 0, or CIT_ENOMEM / CIT_EINVAL when the
 * cipher could not be set up. fl_masks_apply applies m seeds in one pass. */
int fl_mask_apply(const uint8_t seed[32], uint32_t *acc, size_t d, int sign);
int fl_masks_apply(const uint8_t (*seeds)[32], const int *signs, int m, uint32_t *acc, size_t d);

/* SHA-256 helper: out = H(a | b | c) (b, c may be NULL). */
void fl_sha256(uint8_t out[32], const void *a, size_t an, const void *b, size_t bn, const void *c,
               size_t cn);

/* ---- the orchestration frames (frame.c; their layout is in fl.h) ---- */

struct fl_task {
    uint64_t round;
    uint32_t rounds;
    int mode;
    struct fl_arch_spec arch;
    struct fl_round_cfg rc;
    struct fl_train_opts o;
    double dp_noise;
    uint32_t dp_min;
    uint32_t d;
    float *w; /* (d), owned by the reader */
};
/* The noise each contributor adds per entry: z C, split over the dp_min
 * contributors secure aggregation guarantees (in plain mode the coordinator
 * sees each update, so each carries all of it). */
double fl_task_noise(const struct fl_task *t);
int fl_task_write(const struct fl_task *t, const float *w, struct cit_buf *b /* out */);
/* Reads and checks a TASK from a coordinator: every field within what a
 * sane round uses; t->w is allocated (cit_free) on success. */
int fl_task_read(const uint8_t *f, size_t len, struct fl_task *t /* out */, struct cit_err *err);

/* Where an accepted READY's contribution starts: after round u64, accept u8. */
#define FL_READY_BODY (FL_HDR + 9)
/* A READY that declines (why, cut at FL_ABORT_MAX bytes) or accepts,
 * carrying v (n u32) in plain mode and nothing (v NULL) in secure mode,
 * whose contribution travels in the SA_ frames. */
int fl_ready_write(struct cit_buf *out /* out */, uint64_t round, const char *why,
                   const uint32_t *v, size_t n);
/* A Paillier READY: the signature over fl_pa_statement, then the ciphertexts. */
int fl_ready_write_pai(struct cit_buf *out /* out */, uint64_t round, const uint8_t sig[64],
                       const uint8_t *cts, size_t cts_len);
struct fl_ready {
    int accept;
    const char *why; /* declined: the reason, why_len bytes (<= FL_ABORT_MAX), unterminated */
    size_t why_len;
    const uint8_t *body; /* accepted: the contribution, body_len bytes */
};
/* Reads the READY of round whose acceptance carries body_len bytes (plain:
 * (d + 1) x 4, Paillier: 64 + the ciphertexts, secure: 0); out points into
 * f. 1 accepted, 0 declined; CIT_EFORMAT when f is no READY at all (err
 * says what it is), CIT_ERANGE when it is one that does not answer this
 * round (another round, a contribution of another size). */
int fl_ready_read(const uint8_t *f, size_t len, uint64_t round, size_t body_len,
                  struct fl_ready *out /* out */, struct cit_err *err);

/* FINISH: the final model, and what a participant needs to check it (the
 * last aggregated round's sum, and how the coordinator stepped with it). */
struct fl_finish {
    uint32_t rounds; /* as announced */
    uint32_t d;      /* parameters */
    float *w;        /* (d) the final model; NULL when d is 0 */
    uint64_t round;  /* the last round aggregated; 0: none was */
    int strategy;    /* enum fl_strategy the coordinator stepped with */
    uint32_t *sum;   /* (d + 1) that round's sum; NULL when round is 0 */
};
int fl_finish_write(const struct fl_finish *f, struct cit_buf *out /* out */);
/* Reads a FINISH: every field in range (weights finite, the round within
 * the rounds, a known strategy); w and sum are allocated, freed by
 * fl_finish_free. On failure *out holds nothing to free. */
int fl_finish_read(const uint8_t *f, size_t len, struct fl_finish *out /* out */,
                   struct cit_err *err);
void fl_finish_free(struct fl_finish *f);

/* What a participant knows of the federation when FINISH comes. */
struct fl_seen {
    struct fl_task task;    /* the last TASK it took; task.round 0: none; task.w owned */
    uint64_t sum_round;     /* SecAgg: the round whose SA_DONE announced sum_digest; 0: none */
    uint8_t sum_digest[32]; /* SHA-256 of that round's sum */
};
/* Checks the final model against what s knows (participant.c): the rounds
 * and size the TASKs announced; the last aggregated round's sum against the
 * digest its SA_DONE announced (when s saw it); and the model, bit for bit, against the last TASK's
 * model stepped by the mean of that sum (FedAvg and FedProx step so) or,
 * when the rounds since that TASK all failed, against that model itself.
 * Returns an enum fl_finish_check (FL_FINISH_UNCHECKED with why, up to cap
 * bytes, saying what this node lacked to check it), or a negative code
 * with err saying where the model and the protocol disagree. */
int fl_finish_check(const struct fl_seen *s, const struct fl_finish *f, char *why /* out */,
                    size_t cap, struct cit_err *err);

/* What a participant signs over its Paillier ciphertexts (n bytes):
 * "citadel-fl/pa/v1" | round u64 | roster index u32 | SHA-256(cts). */
void fl_pa_statement(uint8_t msg[60] /* out */, uint64_t round, uint32_t member, const uint8_t *cts,
                     size_t n);
/* PA_DECRYPT with n contributions: members[i]'s signed_cts[i], the signature
 * [64] and then cts_len bytes of ciphertexts (an accepted READY's body). */
int fl_decrypt_write(struct cit_buf *out /* out */, uint64_t round, uint32_t n,
                     const uint32_t *members, const uint8_t *const *signed_cts, size_t cts_len);
/* Reads a PA_DECRYPT one contribution at a time, so that a participant can
 * stop at the first it refuses: _begin checks the header, that the round is
 * this one and the count (d->count; its entries' room is checked too),
 * _next gives each contribution (views into f), _end checks that nothing is
 * left. Each returns 0 or an error, err (given to _begin) saying what. */
struct fl_decrypt_rd {
    struct fl_rd r;
    uint32_t count;
    size_t cts_len;
};
int fl_decrypt_begin(struct fl_decrypt_rd *d /* out */, const uint8_t *f, size_t len,
                     uint64_t round, size_t cts_len, struct cit_err *err);
int fl_decrypt_next(struct fl_decrypt_rd *d, uint32_t *member /* out */,
                    const uint8_t **sig /* out */, const uint8_t **cts /* out */);
int fl_decrypt_end(struct fl_decrypt_rd *d);
/* PA_SHARE: party id's decryption shares (len bytes) of round's aggregate. */
int fl_share_write(struct cit_buf *out /* out */, uint64_t round, uint32_t id,
                   const uint8_t *shares, size_t len);
/* Reads party id's PA_SHARE of round, shares_len bytes (*shares points into
 * f): 0; CIT_EFORMAT when f is no PA_SHARE at all, CIT_ERANGE when it does
 * not answer this request (another round or party, another size). */
int fl_share_read(const uint8_t *f, size_t len, uint64_t round, uint32_t id, size_t shares_len,
                  const uint8_t **shares /* out */, struct cit_err *err);

/* ---- what both roles keep of a round (record.c) ---- */

/* out gets 2 n hex digits and a NUL. */
void fl_hex(char *out, const uint8_t *p, size_t n);
/* One ledger entry for the round (nothing when lg is NULL): event "fl",
 * status 200 for aggregate / contribute / decrypt and 409 for the rest, its
 * digest the sum's (may be NULL). A refused append is CIT_EIO, with err
 * naming the action and round. */
int fl_record(struct ledger *lg, const char *action, uint64_t round, const uint8_t digest[32],
              const char *target, const char *detail, struct cit_err *err);
/* Appends the transcript's counts and digests, for the ledger's detail. */
void fl_transcript_text(struct cit_buf *b, const struct fl_sa_transcript *t);
/* Testing dumps of vectors: u32 in host order, the wire's on little-endian
 * hosts, through a temporary file. */
int fl_write_u32s(const char *path, const uint32_t *v, size_t n, struct cit_err *err);

/* ---- transport (net.c) ---- */

struct ssl_ctx_st;
struct ssl_st;
struct ledger_skey;

/* One TLS connection to a peer, and the frame it is sending or receiving. */
struct fl_conn {
    int fd;
    struct ssl_st *ssl;
    uint8_t pk[32]; /* the peer's identity key, from its certificate */
    int member;     /* its roster index (the coordinator's side) */
    int dead;       /* failed, closed or late: no more frames */
    int late;       /* dead because it missed a deadline */
    int got;        /* fl_net_exchange: a whole frame is in `in` */
    int want;       /* POLLIN / POLLOUT the TLS layer waits for */
    int timeout_ms; /* fl_net_send / fl_net_recv */
    const uint8_t *out;
    size_t out_len, out_off;
    struct cit_buf in;
};

/* A listening socket on "HOST:PORT" (port 0: any), or -1; *port the bound one. */
int fl_net_listen(const char *addr, int *port /* out */, struct cit_err *err);
/* Accepts one connection and completes the handshake (10 s at most): 0, 1
 * when nobody connected within timeout_s, or an error. */
int fl_net_accept(struct ssl_ctx_st *ctx, int lfd, double timeout_s, struct fl_conn *c /* out */,
                  struct cit_err *err);
int fl_net_connect(struct ssl_ctx_st *ctx, const char *addr, double timeout_s,
                   struct fl_conn *c /* out */, struct cit_err *err);
/* Switches c to non-blocking I/O; send and recv wait at most timeout_ms. */
void fl_net_nonblock(struct fl_conn *c, int timeout_ms);
void fl_net_close(struct fl_conn *c);
int fl_net_send(struct fl_conn *c, const void *frame, size_t len, struct cit_err *err);
int fl_net_recv(struct fl_conn *c, struct cit_buf *frame /* out */, struct cit_err *err);
/* For every live cs[i]: writes cs[i]->out (out_len may be 0), then, when
 * reply, reads one frame into cs[i]->in, all at once, until timeout_s.
 * Those done get got = 1; the others are dead (late = 1 when out of time). */
int fl_net_exchange(struct fl_conn **cs, int n, double timeout_s, int reply);

/* ---- for tests and fuzz targets ---- */

/* L2-clips x (d) to norm c in place; returns the norm before clipping. */
double fl_clip(float *x, size_t d, double c);

/* The rows idx[0..n) of src, as a new dataset. */
int fl_data_subset(const struct fl_data *src, const size_t *idx, size_t n,
                   struct fl_data *out /* out */);

/* x[i] = (int32_t)q[i] / scale. */
void fl_dequantize(const uint32_t *q, size_t d, double scale, float *x /* out */);

/* The epsilon a has spent at delta (infinity when nothing bounds it). */
double fl_dp_epsilon(const struct fl_dp_account *a, double delta);

/* The account in path (a missing file: nothing spent) and its update,
 * written to a temporary file and renamed. */
int fl_dp_load(const char *path, struct fl_dp_account *a /* out */, struct cit_err *err);

/* x[i] += N(0, sigma^2), from the operating system's generator (libsodium's
 * randombytes): noise that protects must not be predictable. */
void fl_dp_noise(float *x, size_t d, double sigma);

int fl_dp_save(const char *path, const struct fl_dp_account *a, struct cit_err *err);

/* Adds one Gaussian round with noise multiplier z (> 0). */
void fl_dp_spend(struct fl_dp_account *a, double z);

int fl_model_read(const char *path, float **w /* out */, size_t *d /* out */, struct cit_err *err);

/* acc[i] = acc[i] * ct[i] mod N^2 for m ciphertexts: the sums. CIT_EFORMAT
 * for a number that is not a ciphertext. */
int fl_pai_add(const struct fl_pai *k, uint8_t *acc, const uint8_t *ct, size_t m);

unsigned fl_pai_bits(const struct fl_pai *k);

/* Combines the shares of t distinct parties (ids) into the d summed u32
 * (each slot mod 2^32). Fails when shares are missing, repeated, or do not
 * combine (a wrong share). */
int fl_pai_combine(const struct fl_pai *k, int max_clients, const int *ids,
                   const uint8_t *const *shares, int t, size_t d, uint32_t *sum /* out */,
                   struct cit_err *err);

size_t fl_pai_ct_bytes(const struct fl_pai *k);

/* Ciphertexts for d values. */
size_t fl_pai_cts(const struct fl_pai *k, int max_clients, size_t d);

/* This party's decryption share of each of m ciphertexts. */
int fl_pai_decrypt_share(const struct fl_pai *k, const struct fl_pai_share *s, const uint8_t *ct,
                         size_t m, uint8_t *out /* out, m ciphertexts */);

/* Encrypts v (d u32) into fl_pai_cts() ciphertexts at out. */
int fl_pai_encrypt(const struct fl_pai *k, int max_clients, const uint32_t *v, size_t d,
                   uint8_t *out /* out */);

/* Values per plaintext, and bits per value, so that max_clients u32 add up
 * without carrying into the next. */
void fl_pai_layout(const struct fl_pai *k, int max_clients, int *slots /* out */,
                   int *slot_bits /* out */);

int fl_pai_share_id(const struct fl_pai_share *s);

/* ---- quantization into Z/2^32 ----
 * A client scales its update so that the sum of up to max_clients updates,
 * each coordinate at most bound in absolute value, cannot wrap around:
 * scale = (2^31 - 1) / (max_clients * bound). Rounding is stochastic and so
 * unbiased. */
double fl_quant_scale(double bound, int max_clients);

/* q[i] = round_stochastic(x[i] * scale), clamped to +-bound*scale, as two's
 * complement. */
void fl_quantize(const float *x, size_t d, double scale, double bound, uint32_t *q /* out */);

/* 1 once SA_DONE arrived and matched; the sum digest it announced. */
int fl_sa_client_done(const struct fl_sa_client *c, struct fl_sa_transcript *t /* out */);

void fl_sa_client_free(struct fl_sa_client *c);

/* Sets the vector this client will contribute (d entries, copied). Must be
 * called before the SA_PEERS frame arrives. */
int fl_sa_client_input(struct fl_sa_client *c, const uint32_t *input, uint32_t d);

int fl_sa_client_new(const struct fl_roster *roster, uint32_t roster_index, const uint8_t id_sk[64],
                     uint32_t min_t, struct fl_sa_client **out /* out */);

/* The round (of the TASK) that the coordinator's SA_SETUP must name; until
 * it is set, any round is taken. */
void fl_sa_client_expect_round(struct fl_sa_client *c, uint64_t round);

/* Feeds one frame from the coordinator; writes the reply frame into reply
 * (empty when there is none). A frame that breaks the protocol (wrong
 * binding, stage, sizes, a signature or box that does not verify, a dropout
 * list that contradicts an earlier one, a request to reveal what must stay
 * secret) aborts: the client answers ABORT, reveals nothing more, and every
 * later frame is refused. Returns 0, or a negative code with err saying what
 * was wrong. */
int fl_sa_client_step(struct fl_sa_client *c, const uint8_t *frame, size_t len,
                      struct cit_buf *reply /* out */, struct cit_err *err);

/* The neighbours of position p in the round's graph, ascending, into out
 * (room for k entries); returns how many. Both roles compute it from the
 * session id, so the coordinator does not choose who pairs with whom. */
int fl_sa_neighbours(const uint8_t session[32], uint32_t n, uint32_t k, uint32_t p,
                     uint32_t *out /* out */);

/* Closes the stage. Returns 1 when the round has more stages, 0 when the sum
 * is ready, negative when the round cannot finish (fewer than t left, a
 * secret that cannot be rebuilt); err says which. */
int fl_sa_server_advance(struct fl_sa_server *s, struct cit_err *err);

/* Position i is still in the round (not dropped). */
int fl_sa_server_alive(const struct fl_sa_server *s, uint32_t i);

void fl_sa_server_free(struct fl_sa_server *s);

int fl_sa_server_new(const struct fl_sa_params *p, const struct fl_roster *roster,
                     struct fl_sa_server **out /* out */, struct cit_err *err);

/* A reply from position i; a malformed or unexpected one drops i. */
int fl_sa_server_recv(struct fl_sa_server *s, uint32_t i, const uint8_t *frame, size_t len,
                      struct cit_err *err);

/* The frame for position i at this stage (empty when i is out). */
int fl_sa_server_send(struct fl_sa_server *s, uint32_t i, struct cit_buf *frame /* out */);

/* The sum (d u32) once _advance returned 0, with the transcript. */
const uint32_t *fl_sa_server_sum(const struct fl_sa_server *s,
                                 struct fl_sa_transcript *t /* out */);

/* w += step(mean_update). */
void fl_server_opt_apply(struct fl_server_opt *s, float *w, const float *mean_update);

/* Reads a frame header: 0 and the type and body length, or CIT_EFORMAT
 * (bad magic, version, reserved bytes) / CIT_ERANGE (length over the cap). */
int fl_frame_parse(const uint8_t hdr[FL_HDR], int *type /* out */, uint32_t *len /* out */,
                   struct cit_err *err);

/* Writes / reads a model as an IDX file of d f32 (tmp + rename). */
int fl_model_write(const char *path, const float *w, size_t d, struct cit_err *err);

const char *fl_msg_name(int type);

#endif
