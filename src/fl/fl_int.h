/* Internals shared by the fl sources. */
#ifndef CITADEL_FL_INT_H
#define CITADEL_FL_INT_H

#include <stddef.h>
#include <stdint.h>

#include "citadel/core.h"
#include "citadel/fl.h"

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

#endif
