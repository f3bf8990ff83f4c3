/*
 * RFC 6962 Merkle tree hashing, audit paths and consistency proofs.
 *
 * The proofs follow RFC 6962 section 2.1 (PATH and SUBPROOF, built
 * recursively over the leaf hashes); the verifiers follow RFC 9162
 * sections 2.1.3.2 and 2.1.4.2, which check a proof with shifts of the
 * indices instead of rebuilding the tree. Depth is at most 64, so the
 * recursion is bounded.
 */
#include <sodium.h>
#include <string.h>

#include "citadel/ledger.h"
#include "ledger_int.h"

void ledger_leaf_hash(const void *entry, size_t n, uint8_t out[LEDGER_HASH])
{
    crypto_hash_sha256_state st;
    static const uint8_t zero = 0x00;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, &zero, 1);
    crypto_hash_sha256_update(&st, entry, n);
    crypto_hash_sha256_final(&st, out);
}

void ledger_node_hash(const uint8_t l[LEDGER_HASH], const uint8_t r[LEDGER_HASH],
                      uint8_t out[LEDGER_HASH])
{
    uint8_t in[1 + 2 * LEDGER_HASH];
    in[0] = 0x01;
    memcpy(in + 1, l, LEDGER_HASH);
    memcpy(in + 1 + LEDGER_HASH, r, LEDGER_HASH);
    crypto_hash_sha256(out, in, sizeof(in));
}

/* The largest power of two below n (n >= 2). */
static uint64_t split(uint64_t n)
{
    uint64_t k = 1;
    while (k << 1 < n) k <<= 1;
    return k;
}

void ledger_root(const uint8_t (*leaves)[LEDGER_HASH], uint64_t n, uint8_t out[LEDGER_HASH])
{
    uint8_t l[LEDGER_HASH], r[LEDGER_HASH];
    uint64_t k;
    if (n == 0) {
        crypto_hash_sha256(out, (const uint8_t *)"", 0);
        return;
    }
    if (n == 1) {
        memcpy(out, leaves[0], LEDGER_HASH);
        return;
    }
    k = split(n);
    ledger_root(leaves, k, l);
    ledger_root(leaves + k, n - k, r);
    ledger_node_hash(l, r, out);
}

static void path(const uint8_t (*leaves)[LEDGER_HASH], uint64_t n, uint64_t m,
                 uint8_t (*proof)[LEDGER_HASH], int *np)
{
    uint64_t k;
    if (n <= 1) return;
    k = split(n);
    if (m < k) {
        path(leaves, k, m, proof, np);
        ledger_root(leaves + k, n - k, proof[(*np)++]);
    } else {
        path(leaves + k, n - k, m - k, proof, np);
        ledger_root(leaves, k, proof[(*np)++]);
    }
}

int ledger_inclusion_proof(const uint8_t (*leaves)[LEDGER_HASH], uint64_t size, uint64_t index,
                           uint8_t (*proof)[LEDGER_HASH], int *n_proof)
{
    int np = 0;
    if (index >= size) return CIT_ERANGE;
    path(leaves, size, index, proof, &np);
    *n_proof = np;
    return 0;
}

int ledger_inclusion_verify(uint64_t index, uint64_t size, const uint8_t leaf[LEDGER_HASH],
                            const uint8_t (*proof)[LEDGER_HASH], int n_proof,
                            const uint8_t root[LEDGER_HASH])
{
    uint64_t fn = index, sn;
    uint8_t r[LEDGER_HASH];
    if (index >= size || n_proof < 0 || n_proof > LEDGER_MAX_PROOF) return CIT_EINVAL;
    sn = size - 1;
    memcpy(r, leaf, LEDGER_HASH);
    for (int i = 0; i < n_proof; i++) {
        if (sn == 0) return CIT_EINVAL;
        if ((fn & 1) || fn == sn) {
            ledger_node_hash(proof[i], r, r);
            if (!(fn & 1))
                while (fn && !(fn & 1)) fn >>= 1, sn >>= 1;
        } else {
            ledger_node_hash(r, proof[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && sodium_memcmp(r, root, LEDGER_HASH) == 0 ? 0 : CIT_EINVAL;
}

static void subproof(const uint8_t (*leaves)[LEDGER_HASH], uint64_t m, uint64_t n, int whole,
                     uint8_t (*proof)[LEDGER_HASH], int *np)
{
    uint64_t k;
    if (m == n) {
        if (!whole) ledger_root(leaves, m, proof[(*np)++]);
        return;
    }
    k = split(n);
    if (m <= k) {
        subproof(leaves, m, k, whole, proof, np);
        ledger_root(leaves + k, n - k, proof[(*np)++]);
    } else {
        subproof(leaves + k, m - k, n - k, 0, proof, np);
        ledger_root(leaves, k, proof[(*np)++]);
    }
}

int ledger_consistency_proof(const uint8_t (*leaves)[LEDGER_HASH], uint64_t m, uint64_t n,
                             uint8_t (*proof)[LEDGER_HASH], int *n_proof)
{
    int np = 0;
    if (m == 0 || m > n) return CIT_ERANGE;
    subproof(leaves, m, n, 1, proof, &np);
    *n_proof = np;
    return 0;
}

int ledger_consistency_verify(uint64_t m, uint64_t n, const uint8_t root_m[LEDGER_HASH],
                              const uint8_t root_n[LEDGER_HASH],
                              const uint8_t (*proof)[LEDGER_HASH], int n_proof)
{
    uint8_t fr[LEDGER_HASH], sr[LEDGER_HASH];
    uint64_t fn, sn;
    int i = 0;
    if (m == 0 || m > n || n_proof < 0 || n_proof > LEDGER_MAX_PROOF) return CIT_EINVAL;
    if (m == n)
        return n_proof == 0 && sodium_memcmp(root_m, root_n, LEDGER_HASH) == 0 ? 0 : CIT_EINVAL;
    /* a first tree of 2^k leaves is a whole subtree: its root starts the path */
    if ((m & (m - 1)) == 0) {
        memcpy(fr, root_m, LEDGER_HASH);
    } else {
        if (n_proof < 1) return CIT_EINVAL;
        memcpy(fr, proof[i++], LEDGER_HASH);
    }
    memcpy(sr, fr, LEDGER_HASH);
    fn = m - 1;
    sn = n - 1;
    while (fn & 1) fn >>= 1, sn >>= 1;
    for (; i < n_proof; i++) {
        if (sn == 0) return CIT_EINVAL;
        if ((fn & 1) || fn == sn) {
            ledger_node_hash(proof[i], fr, fr);
            ledger_node_hash(proof[i], sr, sr);
            if (!(fn & 1))
                while (fn && !(fn & 1)) fn >>= 1, sn >>= 1;
        } else {
            ledger_node_hash(sr, proof[i], sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && sodium_memcmp(fr, root_m, LEDGER_HASH) == 0 &&
                   sodium_memcmp(sr, root_n, LEDGER_HASH) == 0
               ? 0
               : CIT_EINVAL;
}
