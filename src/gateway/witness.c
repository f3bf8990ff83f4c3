/*
 * The pure core of c2sp.org/tlog-witness: the add-checkpoint body, the
 * witness's check and cosignature, and the log's reading of the answers.
 *
 * The rule a witness follows (gw_witness_check) is the one place that
 * decides whether a checkpoint may be cosigned; `citadel audit cosign`, the
 * offline witness, calls it too, with a proof it builds from the log's
 * leaves instead of one the log sends.
 *
 * Parsing is strict, as the spec's MUSTs are: every line ends in U+000A,
 * no CR, numbers without leading zeros, hashes in padded standard base64
 * with no stray bits, nothing after the checkpoint's signature lines. A
 * body a conforming log would not send is a 400 that names the line and
 * byte, so that a bug in either node shows at once.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "citadel/gateway.h"
#include "citadel/ledger.h"

#define B64_HASH 44              /* characters of one SHA-256 in padded base64 */
#define SIG_DASH "\xe2\x80\x94 " /* U+2014 and a space: a note's signature line */

/* Writes a message into err (when not NULL) and returns status: for the
 * functions that answer an HTTP status rather than a CIT_E code. */
static int status_set(struct cit_err *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int status_set(struct cit_err *err, int status, const char *fmt, ...)
{
    va_list ap;
    if (err) {
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return status;
}

/* ASCII decimal without leading zeros (but "0"), below 2^64: 0, or -1. */
static int dec_u64(const char *s, size_t n, uint64_t *v)
{
    uint64_t x = 0;
    if (n == 0 || n > 20 || (n > 1 && s[0] == '0')) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9 || x > (UINT64_MAX - d) / 10) return -1;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

/* s[0, n) for a message: printable ASCII kept, the rest as '?', cut at
 * cap - 4 with "...". */
static void shown(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 4 < cap; i++)
        out[k++] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    if (k < n) { /* cut: the loop left room for "..." and the NUL */
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = 0;
}

/* ---- the request body ---- */

struct witness_req {
    uint64_t old;
    uint8_t proof[GW_WITNESS_MAX_PROOF][LEDGER_HASH];
    int n_proof;
    const char *note; /* into the body */
    size_t note_len;
    int note_line; /* the body's line where the checkpoint starts */
};

/* Splits body into the old size, the proof and the checkpoint: 0, or 400
 * with err naming the line and byte. */
static int parse_body(const char *body, size_t len, struct witness_req *r, struct cit_err *err)
{
    const char *p = body, *end = body + len, *nl;
    char seen[48];
    int line = 1;
    if (len > GW_WITNESS_MAX_BODY)
        return status_set(err, 400, "the body is %zu bytes, more than the %u allowed", len,
                          (unsigned)GW_WITNESS_MAX_BODY);
    for (size_t i = 0; i < len; i++)
        if (body[i] == '\r')
            return status_set(err, 400, "byte %zu: a carriage return; lines end in a newline alone",
                              i);
    nl = memchr(p, '\n', len);
    if (!nl)
        return status_set(err, 400, "line 1: no newline; the body starts with \"old <size>\\n\"");
    if (nl - p < 4 || memcmp(p, "old ", 4)) {
        shown(p, (size_t)(nl - p), seen, sizeof(seen));
        return status_set(err, 400, "line 1: \"%s\" is not \"old <size>\"", seen);
    }
    if (dec_u64(p + 4, (size_t)(nl - p - 4), &r->old)) {
        shown(p + 4, (size_t)(nl - p - 4), seen, sizeof(seen));
        return status_set(err, 400,
                          "line 1: the old size \"%s\" is not a decimal number below 2^64 "
                          "without leading zeros",
                          seen);
    }
    r->n_proof = 0;
    for (p = nl + 1;; p = nl + 1) {
        size_t n, rl = 0, at = (size_t)(p - body);
        line++;
        if (p == end)
            return status_set(err, 400,
                              "line %d (byte %zu): the body ends before the empty line that "
                              "comes before the checkpoint",
                              line, at);
        if (!(nl = memchr(p, '\n', (size_t)(end - p))))
            return status_set(err, 400,
                              "line %d (byte %zu): no newline, and no checkpoint after an empty "
                              "line",
                              line, at);
        if ((n = (size_t)(nl - p)) == 0) break;
        if (r->n_proof == GW_WITNESS_MAX_PROOF)
            return status_set(err, 400,
                              "line %d (byte %zu): more than %d consistency proof lines, or no "
                              "empty line before the checkpoint",
                              line, at, GW_WITNESS_MAX_PROOF);
        if (n != B64_HASH ||
            sodium_base642bin(r->proof[r->n_proof], LEDGER_HASH, p, n, NULL, &rl, NULL,
                              sodium_base64_VARIANT_ORIGINAL) ||
            rl != LEDGER_HASH) {
            shown(p, n, seen, sizeof(seen));
            return status_set(err, 400,
                              "line %d (byte %zu): \"%s\" is not a proof hash (one SHA-256 in "
                              "standard base64, %d characters); is the empty line before the "
                              "checkpoint missing?",
                              line, at, seen, B64_HASH);
        }
        r->n_proof++;
    }
    r->note = nl + 1;
    r->note_len = (size_t)(end - r->note);
    r->note_line = line + 1;
    if (!r->note_len)
        return status_set(err, 400, "line %d (byte %zu): no checkpoint after the empty line",
                          line + 1, len);
    if (r->note_len > GW_WITNESS_MAX_NOTE)
        return status_set(err, 400,
                          "line %d: the checkpoint is %zu bytes, more than the %u allowed",
                          line + 1, r->note_len, (unsigned)GW_WITNESS_MAX_NOTE);
    return 0;
}

int gw_witness_body(uint64_t old_size, const uint8_t (*proof)[LEDGER_HASH], int n_proof,
                    const char *note, size_t len, struct cit_buf *out, struct cit_err *err)
{
    struct cit_buf b = {0};
    char b64[B64_HASH + 1];
    int bad;
    if (n_proof < 0 || n_proof > GW_WITNESS_MAX_PROOF)
        return cit_err_set(err, CIT_EINVAL, "a proof of %d hashes; a witness takes 0 to %d",
                           n_proof, GW_WITNESS_MAX_PROOF);
    if (old_size == 0 && n_proof)
        return cit_err_set(err, CIT_EINVAL, "a proof from size 0; the spec wants none");
    if (!len || len > GW_WITNESS_MAX_NOTE || note[len - 1] != '\n')
        return cit_err_set(err, CIT_EINVAL,
                           "the checkpoint must be 1 to %u bytes ending in a newline (%zu bytes)",
                           (unsigned)GW_WITNESS_MAX_NOTE, len);
    /* built aside, so that out gets all of it or nothing */
    bad = cit_buf_printf(&b, "old %llu\n", (unsigned long long)old_size);
    for (int i = 0; i < n_proof; i++) {
        sodium_bin2base64(b64, sizeof(b64), proof[i], LEDGER_HASH, sodium_base64_VARIANT_ORIGINAL);
        b64[B64_HASH] = '\n';
        bad |= cit_buf_add(&b, b64, B64_HASH + 1);
    }
    bad |= cit_buf_add(&b, "\n", 1);
    bad |= cit_buf_add(&b, note, len);
    if (bad || cit_buf_add(out, b.p, b.len)) {
        cit_buf_free(&b);
        return cit_err_set(err, CIT_ENOMEM, "out of memory");
    }
    cit_buf_free(&b);
    return 0;
}

/* ---- the witness ---- */

int gw_witness_check(const struct gw_witness_state *last, const struct ledger_checkpoint *cp,
                     const uint8_t (*proof)[LEDGER_HASH], int n_proof, struct cit_err *err)
{
    unsigned long long m = last->size, n = cp->size;
    if (n_proof < 0 || n_proof > GW_WITNESS_MAX_PROOF)
        return status_set(err, 400, "a proof of %d hashes; a witness takes 0 to %d", n_proof,
                          GW_WITNESS_MAX_PROOF);
    if (n < m)
        return status_set(err, 400,
                          "the log signs %llu entries, but this witness cosigned %llu before: "
                          "it rolled back",
                          n, m);
    /* nothing cosigned yet: whatever the log signs is its first state */
    if (m == 0)
        return n_proof ? status_set(err, 422,
                                    "a consistency proof of %d hashes from size 0; from the "
                                    "empty tree the proof is empty",
                                    n_proof)
                       : 200;
    if (n == m) {
        if (n_proof)
            return status_set(err, 422,
                              "a consistency proof of %d hashes between two trees of size %llu; "
                              "it must be empty",
                              n_proof, n);
        if (sodium_memcmp(cp->root, last->root, LEDGER_HASH))
            return status_set(err, 409,
                              "the log signs another tree of size %llu than the one this witness "
                              "cosigned: it forked",
                              n);
        return 200;
    }
    if (ledger_consistency_verify(m, n, last->root, cp->root, proof, n_proof))
        return status_set(err, 422,
                          "the consistency proof (%d hashes) does not show that the tree of size "
                          "%llu extends the one of size %llu this witness cosigned: the log forked "
                          "or was rewritten, or the proof is wrong",
                          n_proof, n, m);
    return 200;
}

int gw_witness_add(const struct ledger_vkey *log, const struct ledger_skey *witness,
                   const struct gw_witness_state *last, const char *body, size_t len, uint64_t now,
                   struct gw_witness_state *next, struct cit_buf *reply, struct cit_buf *cosigned,
                   struct cit_err *err)
{
    struct witness_req r;
    struct ledger_checkpoint cp;
    struct cit_buf c = {0};
    struct cit_err e = {{0}};
    const char *nl;
    char seen[80];
    size_t used, at, rstart;
    int st, rc;
    if (witness->vk.type != LEDGER_KEY_COSIGN)
        return status_set(err, 500, "%s is a log's key, not a witness's", witness->vk.name);
    if ((st = parse_body(body, len, &r, err))) return st;
    at = (size_t)(r.note - body);
    /* a witness knows a log by its origin, the first line (404 before any
     * other check of the note, as the spec orders them) */
    nl = memchr(r.note, '\n', r.note_len);
    if (!nl)
        return status_set(err, 400, "line %d (byte %zu): the checkpoint has no complete line",
                          r.note_line, at);
    if ((size_t)(nl - r.note) != strlen(log->name) ||
        memcmp(r.note, log->name, (size_t)(nl - r.note))) {
        shown(r.note, (size_t)(nl - r.note), seen, sizeof(seen));
        return status_set(err, 404,
                          "line %d: the checkpoint's origin \"%s\" is not the log's, %s: this "
                          "witness knows no such log",
                          r.note_line, seen, log->name);
    }
    rc = ledger_checkpoint_open(r.note, r.note_len, log, &cp, &used, &e);
    if (rc == CIT_EFORMAT)
        return status_set(err, 400, "line %d (byte %zu), the checkpoint: %s", r.note_line, at,
                          e.msg);
    if (rc == CIT_EINVAL) return status_set(err, 403, "the checkpoint: %s", e.msg);
    if (rc) return status_set(err, 500, "the checkpoint: %s", e.msg);
    if (used != r.note_len)
        return status_set(err, 400,
                          "byte %zu: %zu bytes after the checkpoint's signature lines; the body "
                          "ends with them",
                          at + used, r.note_len - used);
    if (r.old > cp.size)
        return status_set(err, 400, "line 1: the old size %llu is above the checkpoint's, %llu",
                          (unsigned long long)r.old, (unsigned long long)cp.size);
    st = r.old != last->size
             ? status_set(err, 409,
                          "line 1: the old size %llu is not the size this witness cosigned last, "
                          "%llu: send a proof from there",
                          (unsigned long long)r.old, (unsigned long long)last->size)
             : gw_witness_check(last, &cp, (const uint8_t(*)[LEDGER_HASH])r.proof, r.n_proof, err);
    if (st == 409) {
        if (cit_buf_printf(reply, "%llu\n", (unsigned long long)last->size))
            return status_set(err, 500, "out of memory");
        return 409;
    }
    if (st != 200) return st;
    if (ledger_cosign(witness, r.note, r.note_len, now, &c, &e)) {
        cit_buf_free(&c);
        return status_set(err, 500, "cosigning: %s", e.msg);
    }
    rstart = reply->len;
    if (cit_buf_add(reply, c.p + r.note_len, c.len - r.note_len)) {
        cit_buf_free(&c);
        return status_set(err, 500, "out of memory");
    }
    if (cit_buf_add(cosigned, c.p, c.len)) {
        reply->len = rstart; /* as it was: the add above made p non-NULL */
        reply->p[rstart] = 0;
        cit_buf_free(&c);
        return status_set(err, 500, "out of memory");
    }
    cit_buf_free(&c);
    next->size = cp.size;
    memcpy(next->root, cp.root, LEDGER_HASH);
    return 200;
}

/* ---- the log's side of the answers ---- */

int gw_witness_reply_apply(const char *note, size_t len, const char *reply, size_t rlen,
                           const struct ledger_vkey *witness, struct cit_buf *out,
                           struct cit_err *err)
{
    struct cit_buf keep = {0}, one = {0};
    struct cit_err e = {{0}};
    const char *p, *end = reply + rlen, *nl;
    size_t body = 0;
    int line = 0, rc = 0;
    if (witness->type != LEDGER_KEY_COSIGN)
        return cit_err_set(err, CIT_EINVAL, "%s is not a witness's key", witness->name);
    if (!len || len > GW_WITNESS_MAX_NOTE || note[len - 1] != '\n')
        return cit_err_set(err, CIT_EINVAL, "the note must be 1 to %u bytes ending in a newline",
                           (unsigned)GW_WITNESS_MAX_NOTE);
    /* the note's text and its empty line: each reply line is checked on
     * that alone, so a cosignature already on the note does not vouch
     * for a line that is not one */
    for (size_t i = 0; i + 1 < len; i++)
        if (note[i] == '\n' && note[i + 1] == '\n') {
            body = i + 2;
            break;
        }
    if (!body) return cit_err_set(err, CIT_EINVAL, "the note has no signature lines");
    if (!rlen) return cit_err_set(err, CIT_EFORMAT, "the witness's answer is empty");
    if (rlen > GW_WITNESS_MAX_REPLY)
        return cit_err_set(err, CIT_EFORMAT,
                           "the witness's answer is %zu bytes, more than the %u allowed", rlen,
                           (unsigned)GW_WITNESS_MAX_REPLY);
    for (p = reply; p < end && !rc; p = nl + 1) {
        size_t n, at = (size_t)(p - reply);
        line++;
        if (!(nl = memchr(p, '\n', (size_t)(end - p)))) {
            rc = cit_err_set(err, CIT_EFORMAT,
                             "the witness's answer, line %d (byte %zu): no newline at its end",
                             line, at);
            break;
        }
        n = (size_t)(nl - p) + 1;
        if (n < 5 || memcmp(p, SIG_DASH, 4)) {
            rc = cit_err_set(err, CIT_EFORMAT,
                             "the witness's answer, line %d (byte %zu): not a signature line "
                             "(\"\xe2\x80\x94 <name> <base64>\")",
                             line, at);
            break;
        }
        for (size_t i = 0; i + 1 < n && !rc; i++)
            if ((unsigned char)p[i] < 0x20)
                rc = cit_err_set(err, CIT_EFORMAT,
                                 "the witness's answer, line %d (byte %zu): a control character",
                                 line, at + i);
        if (rc) break;
        one.len = 0;
        if (cit_buf_add(&one, note, body) || cit_buf_add(&one, p, n)) {
            rc = cit_err_set(err, CIT_ENOMEM, "out of memory");
            break;
        }
        if (!ledger_cosignature_check(one.p, one.len, witness, NULL, &e) &&
            cit_buf_add(&keep, p, n))
            rc = cit_err_set(err, CIT_ENOMEM, "out of memory");
    }
    cit_buf_free(&one);
    if (!rc && !keep.len)
        rc = cit_err_set(err, CIT_EINVAL,
                         "the witness's answer holds no valid cosignature by %s over this note "
                         "(%s)",
                         witness->name, e.msg[0] ? e.msg : "none checked");
    if (!rc && cit_buf_add(out, note, len)) {
        rc = cit_err_set(err, CIT_ENOMEM, "out of memory");
    } else if (!rc && cit_buf_add(out, keep.p, keep.len)) {
        out->len -= len; /* as it was */
        out->p[out->len] = 0;
        rc = cit_err_set(err, CIT_ENOMEM, "out of memory");
    }
    cit_buf_free(&keep);
    return rc;
}

int gw_witness_conflict_size(const char *body, size_t len, uint64_t *size)
{
    uint64_t v;
    if (len < 2 || body[len - 1] != '\n' || dec_u64(body, len - 1, &v)) return CIT_EFORMAT;
    *size = v;
    return 0;
}
