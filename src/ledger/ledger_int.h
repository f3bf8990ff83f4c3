/* Internals of the ledger module shared between its files. */
#ifndef CITADEL_LEDGER_INT_H
#define CITADEL_LEDGER_INT_H

#include <sodium.h>

#include "citadel/ledger.h"

/* Loads dir/node.key, or creates it (and dir/node.vkey) named name when
 * neither exists. */
int ledger_skey_load(const char *dir, const char *name, struct ledger_skey *k /* out */,
                     struct cit_err *err);
/* Appends the signed note for cp to b. */
int ledger_checkpoint_sign(const struct ledger_skey *k, const struct ledger_checkpoint *cp,
                           struct cit_buf *b);

/* The compact range of a growing tree: the roots of its perfect subtrees,
 * one per set bit of n, largest first. */
struct ledger_range {
    uint64_t n;
    uint8_t h[64][LEDGER_HASH];
    int k;
};
void ledger_range_push(struct ledger_range *r, const uint8_t leaf[LEDGER_HASH]);
void ledger_range_root(const struct ledger_range *r, uint8_t out[LEDGER_HASH] /* out */);

/* Checks that line is an entry this module wrote with sequence seq and
 * prev hash, reading its time; CIT_EFORMAT with what is wrong otherwise. */
int ledger_entry_check(const char *line, size_t len, uint64_t seq, const uint8_t prev[LEDGER_HASH],
                       int64_t *time_ms /* out */, char *why, size_t why_cap);

/* ---- for tests and fuzz targets ---- */

/* Signs and appends a checkpoint of the current tree (when it grew). */
int ledger_checkpoint(struct ledger *l, struct cit_err *err);

void ledger_leaf_hash(const void *entry, size_t n, uint8_t out[LEDGER_HASH] /* out */);

/* Removes entries older than cutoff_ms from dir (the log must not be open
 * elsewhere); their leaf hashes move to dir/pruned. */
int ledger_prune(const char *dir, int64_t cutoff_ms, uint64_t *n_removed /* out */,
                 struct cit_err *err);

uint64_t ledger_size(struct ledger *l);

void ledger_node_hash(const uint8_t l[LEDGER_HASH], const uint8_t r[LEDGER_HASH],
                      uint8_t out[LEDGER_HASH] /* out */);

#endif
