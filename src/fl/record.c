/*
 * What both roles of a federation keep of each round: one ledger entry per
 * round and node (the coordinator's aggregate, a participant's
 * contribution, decline or abort), its transcript's text, and the testing
 * dumps of the vectors summed.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "fl_int.h"

const char *fl_mode_name(int mode)
{
    return mode == FL_MODE_SECAGG ? "secagg" : mode == FL_MODE_PAILLIER ? "paillier" : "plain";
}

int fl_mode_rank(int mode)
{
    switch (mode) {
    case FL_MODE_PLAIN:
        return 0;
    case FL_MODE_SECAGG:
    case FL_MODE_PAILLIER:
        return 1;
    default:
        return -1;
    }
}

void fl_hex(char *out, const uint8_t *p, size_t n)
{
    sodium_bin2hex(out, n * 2 + 1, p, n);
}

int fl_record(struct ledger *lg, const char *action, uint64_t round, const uint8_t digest[32],
              const char *target, const char *detail, struct cit_err *err)
{
    struct ledger_rec e = {0};
    char id[40];
    if (!lg) return 0;
    snprintf(id, sizeof(id), "round-%llu", (unsigned long long)round);
    e.tenant = "fl";
    e.request_id = id;
    if (digest) memcpy(e.digest, digest, 32);
    e.target = target;
    e.action = action;
    e.status =
        strcmp(action, "aggregate") && strcmp(action, "contribute") && strcmp(action, "decrypt")
            ? 409
            : 200;
    e.event = "fl";
    e.detail = detail;
    if (ledger_append(lg, &e, LEDGER_SYNC, NULL))
        return cit_err_set(err, CIT_EIO, "the ledger refused the %s entry of round %llu", action,
                           (unsigned long long)round);
    return 0;
}

void fl_transcript_text(struct cit_buf *b, const struct fl_sa_transcript *t)
{
    char k[65], s[65], m[65], u[65];
    fl_hex(k, t->keys_digest, 32);
    fl_hex(s, t->shares_digest, 32);
    fl_hex(m, t->masked_digest, 32);
    fl_hex(u, t->sum_digest, 32);
    cit_buf_printf(b,
                   " n=%u contributors=%u dropped_keys=%u dropped_shares=%u dropped_masked=%u "
                   "dropped_late=%u keys=%s shares=%s masked=%s sum=%s",
                   t->n, t->contributors, t->dropped_keys, t->dropped_shares, t->dropped_masked,
                   t->dropped_late, k, s, m, u);
}

int fl_write_u32s(const char *path, const uint32_t *v, size_t n, struct cit_err *err)
{
    return cit_write_file(path, v, n * 4, 0644, err);
}
