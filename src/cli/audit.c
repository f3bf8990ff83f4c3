/*
 * citadel audit verify [--dir DIR] [--key VKEY_FILE] [--since CHECKPOINT_FILE]
 *                      [--peer-ledger DIR --peer-key VKEY_FILE]
 * citadel audit checkpoint [--dir DIR]
 * citadel audit proof N [--size S] [--dir DIR]
 * citadel audit consistency M N [--dir DIR]
 * citadel audit show [--dir DIR] [--tenant T] [--action A] [--since T] [--until T] [--limit N]
 * citadel audit export --since T --until T [--dir DIR]
 *
 * Offline tools over a ledger directory (default: ./ledger). verify exits 0
 * only when everything checks; proof and consistency print JSON that an
 * auditor can check against a signed checkpoint; export prints the entries
 * exactly as stored (the leaf bytes), one per line; checkpoint prints the
 * signed head, which an auditor keeps and gives to verify --since the next
 * time (a ledger rolled back since fails). verify --peer-ledger also holds
 * the passports and receipts against a peer's ledger (gw_crosscheck); show
 * decodes an entry's passport and receipt without checking their
 * signatures (verify does that). Times are RFC 3339 UTC
 * ("2026-11-01" or "2026-11-01T12:00:00Z"); since is inclusive, until
 * exclusive.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include <sodium.h>

#include "citadel/gateway.h"
#include "citadel/ledger.h"
#include "citadel/http.h"
#include "cli.h"

void cli_usage_audit(FILE *f)
{
    fputs("usage: citadel audit verify [--dir DIR] [--key VKEY_FILE] [--since CHECKPOINT_FILE]\n"
          "  (no --dir: the ledger of the node's config, --config F or ./citadel.conf;\n"
          "   --since: a checkpoint kept from an earlier look, which the ledger must extend)\n"
          "         verify ... --peer-ledger DIR --peer-key PEER.vkey: also check the passports\n"
          "         and receipts against a peer's ledger, both ways\n"
          "       citadel audit checkpoint [--dir DIR]   (the signed head, to keep for --since)\n"
          "         verify ... --since NOTE --witness W.vkey [--witness ...] [--quorum N]:\n"
          "         NOTE must carry the cosignatures of N of the witnesses (default: all)\n"
          "       citadel audit witness-key --name NAME --out PREFIX   (a witness's key pair)\n"
          "       citadel audit cosign [--dir DIR] --key W.key --node-key LOG.vkey\n"
          "                            --witness-state FILE\n"
          "                            [--note NOTE]   (as a witness: check and cosign the head)\n"
          "       citadel audit proof N [--size S] [--dir DIR]\n"
          "       citadel audit consistency M N [--dir DIR]\n"
          "       citadel audit show [--dir DIR] [--tenant T] [--action A] [--since TIME]\n"
          "                          [--until TIME] [--limit N]\n"
          "       citadel audit export --since TIME --until TIME [--dir DIR]\n",
          f);
}

/* "YYYY-MM-DD", optionally followed by "THH:MM[:SS[.mmm]]Z": checks the
 * shape and strips a final Z so that string order matches time order
 * against the entries' fixed-width times. */
static int time_arg(const char *s, char out[32])
{
    size_t n = strlen(s);
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddd";
    if (n && s[n - 1] == 'Z') n--;
    if (n < 10 || n > 23 || (n > 10 && n != 16 && n != 19 && n != 23)) return -1;
    for (size_t i = 0; i < n; i++)
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i]) return -1;
    memcpy(out, s, n);
    out[n] = 0;
    return 0;
}

/* The entry's time string (24 chars) or NULL. */
static const char *entry_time(const char *line)
{
    const char *t = strstr(line, ",\"time\":\"");
    return t && t - line < 40 ? t + 9 : NULL;
}

static int entry_field(const char *line, const char *key, char *out, size_t cap)
{
    char pat[40];
    const char *p, *e;
    snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    if (!(p = strstr(line, pat))) return -1;
    p += strlen(pat);
    if (!(e = strchr(p, '"'))) return -1;
    snprintf(out, cap, "%.*s", (int)(e - p), p);
    return 0;
}

static int in_window(const char *line, const char *since, const char *until)
{
    const char *t = entry_time(line);
    if (!t) return 0;
    if (since[0] && strncmp(t, since, strlen(since)) < 0) return 0;
    if (until[0] && strncmp(t, until, strlen(until)) >= 0) return 0;
    return 1;
}

/* s for a terminal: ASCII and C1 control characters as '?' (a passport
 * shown here was not verified, and may be a stranger's refused one). */
static const char *safe(const char *s, char *out, size_t cap)
{
    size_t i = 0, o = 0;
    for (; s[i] && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == 0xc2 && (unsigned char)s[i + 1] >= 0x80 && (unsigned char)s[i + 1] <= 0x9f) {
            out[o++] = '?';
            i++;
        } else
            out[o++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (!o && cap > 1) out[o++] = '-';
    out[o] = 0;
    return out;
}

/* The passport and receipt an entry holds, decoded for reading but not
 * verified: verify --peer-ledger checks their signatures. */
static void show_crossing(const char *line)
{
    static char wire[GW_MAX_WIRE];
    char a[200], b[200], c[200], d[600], e[600], f[200], g[200], is[32], ex[32];
    struct cit_err err = {{0}};
    if (!entry_field(line, "passport", wire, sizeof(wire))) {
        struct gw_passport p;
        if (gw_passport_peek(wire, strlen(wire), &p, &err)) {
            printf("         %s (it cannot be read)\n", safe(err.msg, d, sizeof(d)));
        } else {
            cit_utc_seconds(p.issued, is);
            cit_utc_seconds(p.expires, ex);
            printf("         passport %s: %s (%s) -> %s, classes %s, declared %s, rule %s, "
                   "purpose %s, policy %.12s..., issued %s, expires %s (signature not checked)\n",
                   p.id, safe(p.origin, a, sizeof(a)), safe(p.origin_jurisdiction, b, sizeof(b)),
                   safe(p.to, c, sizeof(c)), safe(p.classes, d, sizeof(d)),
                   safe(p.declared, e, sizeof(e)), safe(p.rule, f, sizeof(f)),
                   safe(p.purpose, g, sizeof(g)), p.policy, is, ex);
        }
    }
    if (!entry_field(line, "receipt", wire, sizeof(wire))) {
        struct gw_receipt r;
        char leaf[65];
        if (gw_receipt_peek(wire, strlen(wire), &r, &err)) {
            printf("         %s (it cannot be read)\n", safe(err.msg, d, sizeof(d)));
        } else {
            sodium_bin2hex(leaf, sizeof(leaf), r.leaf, sizeof(r.leaf));
            cit_utc_seconds(r.time, is);
            printf("         receipt: node %s entry %llu, status %d, leaf %.16s..., at %s "
                   "(signature not checked)\n",
                   safe(r.receiver, a, sizeof(a)), (unsigned long long)r.seq, r.status, leaf, is);
        }
    }
}

static void print_hash(const char *key, const uint8_t h[LEDGER_HASH])
{
    char b64[64];
    sodium_bin2base64(b64, sizeof(b64), h, LEDGER_HASH, sodium_base64_VARIANT_ORIGINAL);
    printf("\"%s\":\"%s\"", key, b64);
}

static void print_proof(const uint8_t (*p)[LEDGER_HASH], int n)
{
    printf("\"proof\":[");
    for (int i = 0; i < n; i++) {
        char b64[64];
        sodium_bin2base64(b64, sizeof(b64), p[i], LEDGER_HASH, sodium_base64_VARIANT_ORIGINAL);
        printf("%s\"%s\"", i ? "," : "", b64);
    }
    printf("]");
}

static int parse_u64(const char *s, unsigned long long *v)
{
    char *e;
    errno = 0;
    if (!s[0] || s[0] == '-') return -1;
    *v = strtoull(s, &e, 10);
    return errno || *e ? -1 : 0;
}

static int time_flag(void *dst, const char *v)
{
    if (!time_arg(v, dst)) return 0;
    fprintf(cli_err, "citadel audit: '%s': expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)\n", v);
    return 1;
}

/* --witness FILE, repeatable: the witnesses' verifier keys. */
#define MAX_WITNESSES 16
struct witnesses {
    struct ledger_vkey v[MAX_WITNESSES];
    int n;
};

static int witness_flag(void *dst, const char *v)
{
    struct witnesses *w = dst;
    struct cit_err err = {{0}};
    if (w->n == MAX_WITNESSES) {
        fprintf(cli_err, "citadel audit: at most %d --witness keys\n", MAX_WITNESSES);
        return 1;
    }
    if (cli_read_vkey(v, &w->v[w->n], &err)) {
        fprintf(cli_err, "citadel audit: --witness %s\n", err.msg);
        return 1;
    }
    if (w->v[w->n].type != LEDGER_KEY_COSIGN) {
        fprintf(cli_err, "citadel audit: --witness %s: a log's key, not a witness's\n", v);
        return 1;
    }
    w->n++;
    return 0;
}

/* citadel audit witness-key --name NAME --out PREFIX: PREFIX.key, PREFIX.vkey */
static int witness_key(const char *name, const char *prefix)
{
    char kp[1100], vp[1100];
    struct ledger_skey k;
    struct cit_err err = {{0}};
    struct cit_buf vb = {0};
    if (!name || !prefix) {
        fprintf(cli_err, "citadel audit witness-key: --name NAME and --out PREFIX are required\n");
        return 2;
    }
    snprintf(kp, sizeof(kp), "%s.key", prefix);
    snprintf(vp, sizeof(vp), "%s.vkey", prefix);
    if (access(kp, F_OK) == 0) {
        fprintf(cli_err, "citadel audit witness-key: %s exists; keys are never overwritten\n", kp);
        return 1;
    }
    if (ledger_key_load_type(kp, vp, name, LEDGER_KEY_COSIGN, &k, &err)) {
        fprintf(cli_err, "citadel audit witness-key: %s\n", err.msg);
        return 1;
    }
    ledger_vkey_format(&k.vk, &vb);
    printf("%s\n", vb.p ? vb.p : "");
    fprintf(cli_err, "citadel: witness key %s, its verifier key %s (give that to auditors)\n", kp,
            vp);
    cit_buf_free(&vb);
    sodium_memzero(&k, sizeof(k));
    return 0;
}

/* The consistency proof from the witness's last to cp, built from the
 * leaves of the log in dir, which must hold cp's tree: what a log sends a
 * witness over the peer link (gateway.h), made here because the offline
 * witness has the log itself. No proof where the rule wants none. */
static int proof_from_dir(const char *dir, const struct gw_witness_state *last,
                          const struct ledger_checkpoint *cp,
                          uint8_t (*proof)[LEDGER_HASH] /* out, LEDGER_MAX_PROOF */,
                          int *n_proof /* out */, struct cit_err *err)
{
    struct ledger_view v;
    uint8_t root[LEDGER_HASH];
    int rc;
    *n_proof = 0;
    if (last->size == 0 || last->size >= cp->size) return 0;
    if ((rc = ledger_view_open(dir, &v, err))) return rc;
    if (v.n < cp->size) {
        rc = cit_err_set(err, CIT_EFORMAT, "%s has %llu entries, the checkpoint signs %llu", dir,
                         (unsigned long long)v.n, (unsigned long long)cp->size);
    } else {
        const uint8_t(*leaves)[LEDGER_HASH] = (const uint8_t(*)[LEDGER_HASH])v.leaves;
        ledger_root(leaves, cp->size, root);
        if (sodium_memcmp(root, cp->root, LEDGER_HASH))
            rc = cit_err_set(err, CIT_EFORMAT, "%s does not hold the tree the checkpoint signs",
                             dir);
        else
            rc = ledger_consistency_proof(leaves, last->size, cp->size, proof, n_proof);
    }
    ledger_view_free(&v);
    return rc;
}

/* citadel audit cosign: as a witness, checks the log's newest checkpoint
 * (its head, or --note) against the last one this witness cosigned (kept
 * in --witness-state), and cosigns it: the cosigned note goes to stdout and into
 * --witness-state. The check is gw_witness_check, the rule the witness on
 * the peer link follows, with the proof built from the log in --dir. */
static int cosign(const char *dir, const char *keyfile, const char *node_key, const char *state,
                  const char *note_file)
{
    struct ledger_skey w;
    struct ledger_vkey log;
    struct ledger_checkpoint cp, last;
    struct cit_buf note = {0}, prev = {0}, out = {0};
    struct cit_err err = {{0}};
    size_t used;
    int rc = 1;
    if (!keyfile || !node_key || !state) {
        fprintf(cli_err, "citadel audit cosign: --key WITNESS.key, --node-key LOG.vkey and "
                         "--witness-state FILE are required\n");
        return 2;
    }
    if (ledger_key_load_type(keyfile, NULL, NULL, LEDGER_KEY_COSIGN, &w, &err)) goto fail;
    if (cli_read_vkey(node_key, &log, &err)) goto fail;
    if (note_file ? cli_read_input(note_file, 1 << 16, &note)
                  : ledger_head_note(dir, &note, &err)) {
        if (!err.msg[0]) cit_err_set(&err, CIT_EIO, "%s: cannot read", note_file);
        goto fail;
    }
    if (ledger_checkpoint_open(note.p, note.len, &log, &cp, &used, &err)) goto fail;
    /* the last one cosigned: the new one must extend it */
    if (!cli_read_input(state, 1 << 16, &prev) && prev.len) {
        struct gw_witness_state ws;
        uint8_t proof[LEDGER_MAX_PROOF][LEDGER_HASH];
        int np;
        size_t used_prev;
        if (ledger_checkpoint_open(prev.p, prev.len, &log, &last, &used_prev, &err)) {
            cit_err_prefix(&err, "--witness-state");
            goto fail;
        }
        ws.size = last.size;
        memcpy(ws.root, last.root, LEDGER_HASH);
        if (proof_from_dir(dir, &ws, &cp, proof, &np, &err) ||
            gw_witness_check(&ws, &cp, (const uint8_t(*)[LEDGER_HASH])proof, np, &err) != 200) {
            cit_err_prefix(&err, "refused");
            goto fail;
        }
    }
    /* the whole note: cosignatures other witnesses added stay on it */
    if (ledger_cosign(&w, note.p, note.len, (uint64_t)time(NULL), &out, &err)) goto fail;
    if (cit_write_file(state, out.p, out.len, 0600, &err)) goto fail;
    fwrite(out.p, 1, out.len, stdout);
    rc = 0;
fail:
    if (rc) fprintf(cli_err, "citadel audit cosign: %s\n", err.msg);
    sodium_memzero(&w, sizeof(w));
    cit_buf_free(&note);
    cit_buf_free(&prev);
    cit_buf_free(&out);
    return rc;
}

/* The file at path (or - for stdin) given to flag, at most max bytes,
 * NUL-terminated, into out; says why not on stderr. */
static int read_text(const char *flag, const char *path, size_t max, struct cit_buf *out)
{
    int rc = cli_read_input(path, max, out);
    if (!rc && cit_buf_add(out, "", 1)) rc = CIT_ENOMEM;
    if (rc)
        fprintf(stderr, "citadel audit: %s %s: %s\n", flag, path,
                rc == CIT_EIO ? strerror(errno) : cit_strerror(rc));
    return rc;
}

static int count_flag(void *dst, const char *v)
{
    return parse_u64(v, dst);
}

int cli_audit(int argc, char **argv)
{
    const char *dir = NULL, *keyfile = NULL, *tenant = NULL, *action = NULL;
    struct cli_node_args na = {0};
    struct http_opts ho;
    const char *pos[2] = {NULL, NULL};
    char since[32] = "", until[32] = "";
    const char *since_arg = NULL, *until_arg = NULL;
    const char *wname = NULL, *out_prefix = NULL, *node_key = NULL, *state = NULL,
               *note_file = NULL, *peer_ledger = NULL, *peer_key = NULL;
    struct witnesses wit = {0};
    long quorum = 0;
    unsigned long long size = 0, limit = 0;
    int n_pos = 0, rc = 0;
    struct cit_err err = {{0}};
    const char *verb;

    if (argc < 1) {
        cli_usage_audit(stderr);
        return 2;
    }
    verb = argv[0];
    {
        const struct cli_flag flags[] = {
            {"--dir", CLI_STR, &dir, NULL, 0, 0},
            {"--key", CLI_STR, &keyfile, NULL, 0, 0},
            {"--tenant", CLI_STR, &tenant, NULL, 0, 0},
            {"--action", CLI_STR, &action, NULL, 0, 0},
            {"--since", CLI_STR, &since_arg, NULL, 0, 0},
            {"--until", CLI_STR, &until_arg, NULL, 0, 0},
            {"--limit", CLI_FN, &limit, count_flag, 0, 0},
            {"--size", CLI_FN, &size, count_flag, 0, 0},
            {"--witness", CLI_FN, &wit, witness_flag, 0, 0},
            {"--quorum", CLI_INT, &quorum, NULL, 1, MAX_WITNESSES},
            {"--name", CLI_STR, &wname, NULL, 0, 0},
            {"--out", CLI_STR, &out_prefix, NULL, 0, 0},
            {"--node-key", CLI_STR, &node_key, NULL, 0, 0},
            {"--witness-state", CLI_STR, &state, NULL, 0, 0},
            {"--note", CLI_STR, &note_file, NULL, 0, 0},
            {"--peer-ledger", CLI_STR, &peer_ledger, NULL, 0, 0},
            {"--peer-key", CLI_STR, &peer_key, NULL, 0, 0},
            {NULL, 0, NULL, NULL, 0, 0},
        };
        if ((rc = cli_flags_parse("audit", flags, &na, argc - 1, argv + 1, pos, 2, &n_pos)))
            return rc;
    }
    if (!dir && na.ledger) dir = na.ledger; /* --ledger DIR reads as --dir DIR */
    if (!strcmp(verb, "witness-key")) return n_pos ? 2 : witness_key(wname, out_prefix);
    /* --since is a time for show and export, a checkpoint file for verify */
    if (strcmp(verb, "verify") &&
        ((since_arg && time_flag(since, since_arg)) || (until_arg && time_flag(until, until_arg))))
        return 2;

    /* no --dir: the node's ledger, as its config names it (else ./ledger) */
    if (!dir) {
        if (cli_node_opts(&na, &ho, &err)) {
            fprintf(stderr, "citadel audit: %s\n", err.msg);
            return 2;
        }
        dir = ho.node.ledger;
    }
    if (!strcmp(verb, "verify")) {
        struct cit_buf key = {0}, report = {0}, seen = {0}, peer_vk = {0};
        if (n_pos) {
            cli_usage_audit(stderr);
            return 2;
        }
        if (!peer_ledger != !peer_key) {
            fprintf(stderr, "citadel audit verify: --peer-ledger DIR and --peer-key PEER.vkey go "
                            "together (the peer's key, given independently of its ledger)\n");
            return 2;
        }
        if ((keyfile && read_text("--key", keyfile, 4096, &key)) ||
            (since_arg && read_text("--since", since_arg, 4096, &seen))) {
            cit_buf_free(&key);
            return 1;
        }
        if (peer_key) {
            struct ledger_vkey pvk;
            if (cli_read_vkey(peer_key, &pvk, &err)) {
                fprintf(stderr, "citadel audit verify: --peer-key %s\n", err.msg);
                cit_buf_free(&key);
                cit_buf_free(&seen);
                return 1;
            }
            ledger_vkey_format(&pvk, &peer_vk);
        }
        rc = ledger_verify_witnessed(dir, keyfile ? key.p : NULL, since_arg ? seen.p : NULL, wit.v,
                                     wit.n, quorum ? (int)quorum : wit.n, &report, &err);
        if (report.len) fwrite(report.p, 1, report.len, stdout);
        if (!rc && peer_ledger) {
            report.len = 0;
            rc = peer_vk.p ? gw_crosscheck(dir, keyfile ? key.p : NULL, peer_ledger, peer_vk.p,
                                           &report, &err)
                           : cit_err_set(&err, CIT_ENOMEM, "out of memory");
            if (report.len) fwrite(report.p, 1, report.len, stdout);
        }
        if (rc) fprintf(stderr, "citadel audit verify: FAILED: %s\n", err.msg);
        cit_buf_free(&key);
        cit_buf_free(&seen);
        cit_buf_free(&peer_vk);
        cit_buf_free(&report);
        return rc ? 1 : 0;
    }

    if (!strcmp(verb, "cosign"))
        return n_pos ? 2 : cosign(dir, keyfile, node_key, state, note_file);
    if (!strcmp(verb, "checkpoint")) {
        struct cit_buf note = {0};
        if (n_pos) {
            cli_usage_audit(stderr);
            return 2;
        }
        if ((rc = ledger_head_note(dir, &note, &err))) {
            fprintf(stderr, "citadel audit checkpoint: %s\n", err.msg);
            return 1;
        }
        fwrite(note.p, 1, note.len, stdout);
        cit_buf_free(&note);
        return 0;
    }

    struct ledger_view v;
    int want_pos = !strcmp(verb, "proof") ? 1 : !strcmp(verb, "consistency") ? 2 : 0;
    if (!want_pos && strcmp(verb, "show") && strcmp(verb, "export")) {
        fprintf(stderr, "citadel audit: unknown command '%s'\n", verb);
        cli_usage_audit(stderr);
        return 2;
    }
    if (n_pos != want_pos) {
        cli_usage_audit(stderr);
        return 2;
    }
    if (!strcmp(verb, "export") && (!since[0] || !until[0])) {
        fprintf(stderr, "citadel audit export: --since and --until are both required\n");
        return 2;
    }
    if (ledger_view_open(dir, &v, &err)) {
        fprintf(stderr, "citadel audit: %s\n", err.msg);
        return 1;
    }
    if (!strcmp(verb, "proof")) {
        unsigned long long idx;
        uint8_t proof[LEDGER_MAX_PROOF][LEDGER_HASH], root[LEDGER_HASH];
        int np;
        if (!size) size = v.latest.size ? v.latest.size : v.n;
        if (parse_u64(pos[0], &idx) || idx >= size || size > v.n) {
            fprintf(stderr,
                    "citadel audit proof: entry '%s' is not in a tree of %llu (the log has %llu "
                    "entries)\n",
                    pos[0], size, (unsigned long long)v.n);
            rc = 1;
        } else {
            ledger_inclusion_proof((const uint8_t(*)[LEDGER_HASH])v.leaves, size, idx, proof, &np);
            ledger_root((const uint8_t(*)[LEDGER_HASH])v.leaves, size, root);
            if (ledger_inclusion_verify(idx, size, v.leaves[idx],
                                        (const uint8_t(*)[LEDGER_HASH])proof, np, root)) {
                fprintf(stderr, "citadel audit proof: the proof does not verify (a bug)\n");
                rc = 1;
            } else {
                printf("{\"index\":%llu,\"size\":%llu,", idx, size);
                print_hash("leaf", v.leaves[idx]);
                printf(",");
                print_hash("root", root);
                printf(",\"signed\":%s,",
                       v.latest.size == size && !sodium_memcmp(v.latest.root, root, LEDGER_HASH)
                           ? "true"
                           : "false");
                print_proof((const uint8_t(*)[LEDGER_HASH])proof, np);
                printf("}\n");
            }
        }
    } else if (!strcmp(verb, "consistency")) {
        unsigned long long m, n;
        uint8_t proof[LEDGER_MAX_PROOF][LEDGER_HASH], rm[LEDGER_HASH], rn[LEDGER_HASH];
        int np;
        if (parse_u64(pos[0], &m) || parse_u64(pos[1], &n) || m == 0 || m > n || n > v.n) {
            fprintf(stderr, "citadel audit consistency: need 0 < M <= N <= %llu (the log's size)\n",
                    (unsigned long long)v.n);
            rc = 1;
        } else {
            ledger_consistency_proof((const uint8_t(*)[LEDGER_HASH])v.leaves, m, n, proof, &np);
            ledger_root((const uint8_t(*)[LEDGER_HASH])v.leaves, m, rm);
            ledger_root((const uint8_t(*)[LEDGER_HASH])v.leaves, n, rn);
            printf("{\"first\":%llu,\"second\":%llu,", m, n);
            print_hash("first_root", rm);
            printf(",");
            print_hash("second_root", rn);
            printf(",");
            print_proof((const uint8_t(*)[LEDGER_HASH])proof, np);
            printf("}\n");
        }
    } else {
        int show = !strcmp(verb, "show");
        unsigned long long shown = 0;
        for (uint64_t i = 0; i + v.n_pruned < v.n; i++) {
            const char *line = v.lines[i];
            char t[80], act[32], rule[80], target[80];
            if (!in_window(line, since, until)) continue;
            if (tenant && (entry_field(line, "tenant", t, sizeof(t)) || strcmp(t, tenant)))
                continue;
            if (action && (entry_field(line, "action", act, sizeof(act)) || strcmp(act, action)))
                continue;
            if (!show) {
                printf("%s\n", line);
                continue;
            }
            if (limit && shown >= limit) break;
            shown++;
            if (entry_field(line, "tenant", t, sizeof(t))) t[0] = 0;
            if (entry_field(line, "action", act, sizeof(act))) act[0] = 0;
            if (entry_field(line, "rule", rule, sizeof(rule))) rule[0] = 0;
            if (entry_field(line, "target", target, sizeof(target))) target[0] = 0;
            if (!entry_field(line, "event", t, sizeof(t))) { /* border control, trust */
                char name[80], detail[400];
                if (entry_field(line, "request", name, sizeof(name))) name[0] = 0;
                if (entry_field(line, "detail", detail, sizeof(detail))) detail[0] = 0;
                printf("%-8llu %.24s %-5s %-12s %-10s %s: %s\n",
                       (unsigned long long)(i + v.n_pruned),
                       entry_time(line) ? entry_time(line) : "?", t, act, rule, name, detail);
                show_crossing(line);
                continue;
            }
            {
                const char *tm = entry_time(line), *st = strstr(line, "\"status\":"),
                           *ti = strstr(line, "\"tokens_in\":"),
                           *to = strstr(line, "\"tokens_out\":");
                printf("%-8llu %.24s %-16s %-8s %-20s %-16s status=%d tokens=%lld/%lld\n",
                       (unsigned long long)(i + v.n_pruned), tm ? tm : "?", t, act, rule, target,
                       st ? atoi(st + 9) : 0, ti ? atoll(ti + 12) : 0LL, to ? atoll(to + 13) : 0LL);
                show_crossing(line);
            }
        }
    }
    ledger_view_free(&v);
    return rc;
}
