/*
 * libFuzzer target for the witness's parsers (gateway/witness.c, make
 * fuzz): arbitrary bytes as an add-checkpoint body, and as the head of one
 * (the same bytes followed by a checkpoint the log's key signed, so that
 * mutations of the old line and the proof get past the signature check);
 * as a 409 body and as a 200 answer, on the log's side.
 *
 * The keys come from fixed seeds, so that the corpus can hold bodies that
 * are signed (fuzz/corpus/witness: a valid one from size 3 to 8 and its
 * near misses). The log's tree is 8 leaves, "entry 0" to "entry 7"; the
 * witness last cosigned its first 3. What must hold: the status is one
 * the spec names; 200 only for the tree of 8 with a proof that verifies,
 * and then the cosignature checks and the log's side reads it back; 409
 * answers "3\n"; nothing else writes the out-parameters; a 409 body the
 * log accepts is the canonical decimal; an answer the log accepts holds
 * a cosignature that checks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "citadel/gateway.h"
#include "../src/ledger/ledger_int.h"

#define ORIGIN "fuzz.example/log"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ledger_skey log_key, witness;
static struct gw_witness_state last;
static uint8_t root8[LEDGER_HASH];
static struct cit_buf note; /* the log's checkpoint of size 8 */

/* A key from a seed of 32 copies of seed_byte, its id as note.c makes it. */
static void fixed_key(const char *name, uint8_t type, uint8_t seed_byte, struct ledger_skey *k)
{
    uint8_t seed[32], h[32];
    const uint8_t sep[2] = {0x0a, type};
    crypto_hash_sha256_state st;
    memset(seed, seed_byte, sizeof(seed));
    crypto_sign_seed_keypair(k->vk.pk, k->sk, seed);
    snprintf(k->vk.name, sizeof(k->vk.name), "%s", name);
    k->vk.type = type;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const uint8_t *)name, strlen(name));
    crypto_hash_sha256_update(&st, sep, 2);
    crypto_hash_sha256_update(&st, k->vk.pk, 32);
    crypto_hash_sha256_final(&st, h);
    memcpy(k->vk.id, h, 4);
}

static void setup(void)
{
    uint8_t leaves[8][LEDGER_HASH];
    struct ledger_checkpoint cp = {0};
    if (sodium_init() < 0) abort();
    fixed_key(ORIGIN, LEDGER_KEY_SIGN, 1, &log_key);
    fixed_key("fuzz.example/w1", LEDGER_KEY_COSIGN, 2, &witness);
    for (int i = 0; i < 8; i++) {
        char e[16];
        int n = snprintf(e, sizeof(e), "entry %d", i);
        ledger_leaf_hash(e, (size_t)n, leaves[i]);
    }
    last.size = 3;
    ledger_root((const uint8_t(*)[LEDGER_HASH])leaves, 3, last.root);
    ledger_root((const uint8_t(*)[LEDGER_HASH])leaves, 8, root8);
    snprintf(cp.origin, sizeof(cp.origin), ORIGIN);
    cp.size = 8;
    memcpy(cp.root, root8, LEDGER_HASH);
    if (ledger_checkpoint_sign(&log_key, &cp, &note)) abort();
}

static void add(const char *body, size_t len)
{
    struct gw_witness_state next = {.size = 12345};
    struct cit_buf reply = {0}, cosigned = {0}, back = {0};
    struct cit_err err;
    uint64_t n = 0;
    int st = gw_witness_add(&log_key.vk, &witness, &last, body, len, 1796200000, &next, &reply,
                            &cosigned, &err);
    if (st == 200) {
        if (next.size != 8 || memcmp(next.root, root8, LEDGER_HASH)) abort();
        if (ledger_cosignature_check(cosigned.p, cosigned.len, &witness.vk, NULL, &err)) abort();
        if (cosigned.len <= reply.len) abort();
        if (gw_witness_reply_apply(cosigned.p, cosigned.len - reply.len, reply.p, reply.len,
                                   &witness.vk, &back, &err) ||
            back.len != cosigned.len || memcmp(back.p, cosigned.p, back.len))
            abort();
    } else if (st == 400 || st == 403 || st == 404 || st == 409 || st == 422) {
        if (next.size != 12345 || cosigned.len) abort();
        if (st == 409 ? gw_witness_conflict_size(reply.p, reply.len, &n) || n != 3 : reply.len != 0)
            abort();
    } else {
        abort();
    }
    cit_buf_free(&reply);
    cit_buf_free(&cosigned);
    cit_buf_free(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    struct cit_buf b = {0};
    struct cit_err err;
    uint64_t n;
    if (!ready) {
        setup();
        ready = 1;
    }
    add((const char *)data, size);
    if (size <= GW_WITNESS_MAX_BODY) { /* the head of a body, then the real checkpoint */
        if (cit_buf_add(&b, data, size) || cit_buf_add(&b, note.p, note.len)) abort();
        add(b.p, b.len);
        cit_buf_free(&b);
    }
    if (!gw_witness_conflict_size((const char *)data, size, &n)) {
        char t[32];
        int k = snprintf(t, sizeof(t), "%llu\n", (unsigned long long)n);
        if ((size_t)k != size || memcmp(t, data, size)) abort();
    }
    if (!gw_witness_reply_apply(note.p, note.len, (const char *)data, size, &witness.vk, &b,
                                &err)) {
        /* only a cosignature from the corpus can pass; it must check */
        if (ledger_cosignature_check(b.p, b.len, &witness.vk, NULL, &err)) abort();
        cit_buf_free(&b);
    }
    return 0;
}
