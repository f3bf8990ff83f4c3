/* Internals of the ledger module shared between its files. */
#ifndef CITADEL_LEDGER_INT_H
#define CITADEL_LEDGER_INT_H

#include <sodium.h>

#include "citadel/ledger.h"

/* Loads dir/node.key, or creates it (and dir/node.vkey) named name when
 * neither exists. */
int ledger_skey_load(const char *dir, const char *name, struct ledger_skey *k /* out */,
                     struct cit_err *err);
/* "<name>+<id hex>+<base64(0x01 || pk)>" */
void ledger_vkey_format(const struct ledger_vkey *vk, struct cit_buf *b);
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

#endif
