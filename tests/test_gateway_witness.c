/*
 * The witness on the peer link (gateway/witness.c, c2sp.org/tlog-witness)
 * over a real ledger: a first checkpoint cosigned from the empty state,
 * then growth with a proof built from the ledger's leaves, the cosigned
 * note passing ledger_cosignature_check and ledger_verify_witnessed; a
 * stale old size (409 with the witness's size), a wrong proof (422), a
 * note signed by another key (403) or of another origin (404), a rolled
 * back or forked checkpoint, and malformed bodies (400, each with what is
 * wrong and where) refused; the log's side of the answers.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "citadel/gateway.h"
#include "citadel/ledger.h"
#include "test.h"
#include "../src/core/core_int.h"
#include "../src/ledger/ledger_int.h"

#define ORIGIN "wit.example/log"
#define NOW    1796200000u

struct fix {
    char dir[1024];
    struct ledger *l;
    struct ledger_vkey log;
    char vkey_text[256];
    struct ledger_skey w;
    int appended;
};

static int fix_open(struct fix *f, const char *name)
{
    char cmd[3300], p[1100], vp[1100];
    struct ledger_opts o = {0};
    struct cit_err err = {{0}};
    struct cit_buf kb = {0};
    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "%s/%s", t_tmpdir(), name);
    snprintf(p, sizeof(p), "%s.w.key", f->dir);
    snprintf(vp, sizeof(vp), "%s.w.vkey", f->dir);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s' '%s'", f->dir, p, vp);
    CHECK_RET(system(cmd) == 0, "%s", cmd);
    o.dir = f->dir;
    o.origin = ORIGIN;
    o.checkpoint_s = -1;
    CHECK_RET(!ledger_open(&o, &f->l, &err), "%s", err.msg);
    snprintf(cmd, sizeof(cmd), "%s/node.vkey", f->dir);
    CHECK_RET(!cit_read_file(cmd, 4096, &kb, &err) &&
                  !ledger_vkey_parse(kb.p, kb.len, &f->log, &err),
              "%s", err.msg);
    snprintf(f->vkey_text, sizeof(f->vkey_text), "%s", kb.p);
    cit_buf_free(&kb);
    CHECK_RET(!ledger_key_load_type(p, vp, "w.example/w1", LEDGER_KEY_COSIGN, &f->w, &err), "%s",
              err.msg);
    return 0;
}

static void fix_close(struct fix *f)
{
    if (f->l) ledger_close(f->l);
    f->l = NULL;
    sodium_memzero(&f->w, sizeof(f->w));
}

static int grow(struct fix *f, int n)
{
    for (int i = 0; i < n; i++) {
        char req[32];
        struct ledger_rec r = {0};
        snprintf(req, sizeof(req), "req-%d", f->appended++);
        r.tenant = "t";
        r.key_id = "0123456789abcdef";
        r.request_id = req;
        r.rule = "r";
        r.policy_hash = "ab";
        r.target = "m";
        r.action = "local";
        r.status = 200;
        CHECK_RET(!ledger_append(f->l, &r, LEDGER_SYNC, NULL), "append %d", i);
    }
    return 0;
}

/* The signed head now, into note (emptied first), and its checkpoint. */
static int head(struct fix *f, struct cit_buf *note, struct ledger_checkpoint *cp)
{
    struct cit_err err = {{0}};
    size_t used;
    cit_buf_free(note);
    CHECK_RET(!ledger_head_note(f->dir, note, &err), "%s", err.msg);
    CHECK_RET(!ledger_checkpoint_open(note->p, note->len, &f->log, cp, &used, &err), "%s", err.msg);
    return 0;
}

/* The consistency proof from m to n over the ledger's leaves. */
static int proof_of(struct fix *f, uint64_t m, uint64_t n, uint8_t (*proof)[LEDGER_HASH], int *np)
{
    struct ledger_view v;
    struct cit_err err = {{0}};
    int rc;
    CHECK_RET(!ledger_view_open(f->dir, &v, &err), "%s", err.msg);
    rc = ledger_consistency_proof((const uint8_t(*)[LEDGER_HASH])v.leaves, m, n, proof, np);
    ledger_view_free(&v);
    CHECK_RET(rc == 0, "proof %llu -> %llu", (unsigned long long)m, (unsigned long long)n);
    return 0;
}

/* One add-checkpoint; the answer's buffers are emptied first. */
static int add(struct fix *f, const struct gw_witness_state *last, const char *body, size_t len,
               struct gw_witness_state *next, struct cit_buf *reply, struct cit_buf *cosigned,
               struct cit_err *err)
{
    cit_buf_free(reply);
    cit_buf_free(cosigned);
    memset(err, 0, sizeof(*err));
    return gw_witness_add(&f->log, &f->w, last, body, len, NOW, next, reply, cosigned, err);
}

void test_gateway_witness_grow(void)
{
    struct fix f;
    struct cit_buf note = {0}, body = {0}, reply = {0}, cosigned = {0}, applied = {0}, rep = {0};
    struct ledger_checkpoint cp;
    struct gw_witness_state st = {0}, next;
    struct cit_err err = {{0}};
    uint8_t proof[LEDGER_MAX_PROOF][LEDGER_HASH];
    const uint8_t(*pf)[LEDGER_HASH] = (const uint8_t(*)[LEDGER_HASH])proof;
    uint64_t ts = 0;
    int np, code;
    CHECK(fix_open(&f, "witness-grow") == 0);
    /* first contact: old 0, no proof */
    CHECK(grow(&f, 3) == 0 && head(&f, &note, &cp) == 0 && cp.size == 3);
    CHECK(!gw_witness_body(0, NULL, 0, note.p, note.len, &body, &err));
    CHECK(body.len > 7 && !memcmp(body.p, "old 0\n\n", 7));
    code = add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err);
    CHECKF(code == 200, "%d: %s", code, err.msg);
    CHECK(next.size == 3 && !memcmp(next.root, cp.root, LEDGER_HASH));
    /* the answer is just the cosignature line; cosigned is note + it */
    CHECK(reply.len > 4 && !memcmp(reply.p, "\xe2\x80\x94 w.example/w1 ", 17) &&
          reply.p[reply.len - 1] == '\n' &&
          memchr(reply.p, '\n', reply.len) == reply.p + reply.len - 1);
    CHECK(cosigned.len == note.len + reply.len && !memcmp(cosigned.p, note.p, note.len) &&
          !memcmp(cosigned.p + note.len, reply.p, reply.len));
    CHECKF(!ledger_cosignature_check(cosigned.p, cosigned.len, &f.w.vk, &ts, &err) && ts == NOW,
           "%s", err.msg);
    CHECK(!gw_witness_reply_apply(note.p, note.len, reply.p, reply.len, &f.w.vk, &applied, &err));
    CHECK(applied.len == cosigned.len && !memcmp(applied.p, cosigned.p, cosigned.len));
    st = next;

    /* growth, twice, each with a proof from the last cosigned size */
    for (int round = 0; round < 2; round++) {
        uint64_t m = st.size;
        CHECK(grow(&f, 5 + 4 * round) == 0 && head(&f, &note, &cp) == 0 && cp.size > m);
        CHECK(proof_of(&f, m, cp.size, proof, &np) == 0 && np > 0);
        cit_buf_free(&body);
        CHECK(!gw_witness_body(m, pf, np, note.p, note.len, &body, &err));
        code = add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err);
        CHECKF(code == 200, "round %d: %d: %s", round, code, err.msg);
        CHECK(next.size == cp.size && !memcmp(next.root, cp.root, LEDGER_HASH));
        CHECK(!ledger_cosignature_check(cosigned.p, cosigned.len, &f.w.vk, NULL, &err));
        st = next;
    }
    /* an auditor holding the cosigned note checks the ledger against it */
    {
        struct cit_buf report = {0};
        int rc =
            ledger_verify_witnessed(f.dir, f.vkey_text, cosigned.p, &f.w.vk, 1, 1, &report, &err);
        CHECKF(rc == 0, "%s", err.msg);
        CHECKF(report.p && strstr(report.p, "cosigned by 1 of 1 witnesses"), "%s",
               report.p ? report.p : "");
        cit_buf_free(&report);
    }
    /* the same checkpoint again: cosigned again (old == size, same root, no proof) */
    cit_buf_free(&body);
    CHECK(!gw_witness_body(st.size, NULL, 0, note.p, note.len, &body, &err));
    code = add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err);
    CHECKF(code == 200 && next.size == st.size, "%d: %s", code, err.msg);
    /* a note that already carries cosignatures keeps them */
    CHECK(!ledger_cosign(&f.w, cosigned.p, cosigned.len, NOW + 1, &rep, &err)); /* two lines */
    cit_buf_free(&body);
    CHECK(!gw_witness_body(st.size, NULL, 0, rep.p, rep.len, &body, &err));
    code = add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err);
    CHECKF(code == 200, "%d: %s", code, err.msg);
    CHECK(cosigned.len == rep.len + reply.len && !memcmp(cosigned.p, rep.p, rep.len));
    fix_close(&f);
    cit_buf_free(&note);
    cit_buf_free(&body);
    cit_buf_free(&reply);
    cit_buf_free(&cosigned);
    cit_buf_free(&applied);
    cit_buf_free(&rep);
}

/* A checkpoint of the log's key (or of k) over an arbitrary tree. */
static int sign_cp(const struct ledger_skey *k, uint64_t size, const uint8_t root[LEDGER_HASH],
                   struct cit_buf *out)
{
    struct ledger_checkpoint cp = {0};
    snprintf(cp.origin, sizeof(cp.origin), "%s", k->vk.name);
    cp.size = size;
    memcpy(cp.root, root, LEDGER_HASH);
    cit_buf_free(out);
    CHECK_RET(!ledger_checkpoint_sign(k, &cp, out), "sign");
    return 0;
}

void test_gateway_witness_refusals(void)
{
    struct fix f;
    struct cit_buf note = {0}, note8 = {0}, body = {0}, reply = {0}, cosigned = {0}, other = {0};
    struct ledger_checkpoint cp, cp8;
    struct gw_witness_state st = {0}, next, untouched;
    struct cit_err err = {{0}};
    struct ledger_skey logkey, stranger;
    uint8_t proof[LEDGER_MAX_PROOF][LEDGER_HASH];
    const uint8_t(*pf)[LEDGER_HASH] = (const uint8_t(*)[LEDGER_HASH])proof;
    uint64_t size;
    int np, code;
    CHECK(fix_open(&f, "witness-refusals") == 0);
    CHECK(!ledger_skey_load(f.dir, NULL, &logkey, &err));
    CHECK(grow(&f, 8) == 0 && head(&f, &note8, &cp8) == 0 && cp8.size == 8);
    CHECK(!gw_witness_body(0, NULL, 0, note8.p, note8.len, &body, &err));
    CHECK(add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err) == 200);
    st = next;
    memset(&untouched, 0xaa, sizeof(untouched));

    /* stale: the log thinks the witness is at 0, or at 3 */
    CHECK(grow(&f, 4) == 0 && head(&f, &note, &cp) == 0 && cp.size == 12);
    next = untouched;
    code = add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err);
    CHECKF(code == 409 && reply.len == 2 && !memcmp(reply.p, "8\n", 2), "%d: %s", code, err.msg);
    CHECK(!gw_witness_conflict_size(reply.p, reply.len, &size) && size == 8);
    CHECK(!memcmp(&next, &untouched, sizeof(next)) && cosigned.len == 0);
    CHECKF(strstr(err.msg, "not the size this witness cosigned last, 8"), "%s", err.msg);
    CHECK(proof_of(&f, 3, 12, proof, &np) == 0);
    cit_buf_free(&body);
    CHECK(!gw_witness_body(3, pf, np, note.p, note.len, &body, &err));
    code = add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err);
    CHECK(code == 409 && !gw_witness_conflict_size(reply.p, reply.len, &size) && size == 8);

    /* wrong proofs: a flipped byte, one of another size, none, one too many */
    CHECK(proof_of(&f, 8, 12, proof, &np) == 0 && np >= 1);
    for (int k = 0; k < np; k++) {
        proof[k][k] ^= 4;
        cit_buf_free(&body);
        CHECK(!gw_witness_body(8, pf, np, note.p, note.len, &body, &err));
        code = add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err);
        CHECKF(code == 422 && reply.len == 0, "hash %d: %d", k, code);
        proof[k][k] ^= 4;
    }
    CHECKF(strstr(err.msg, "does not show that the tree of size 12 extends the one of size 8"),
           "%s", err.msg);
    cit_buf_free(&body);
    CHECK(!gw_witness_body(8, pf, 0, note.p, note.len, &body, &err));
    CHECK(add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err) == 422);
    memcpy(proof[np], proof[0], LEDGER_HASH);
    cit_buf_free(&body);
    CHECK(!gw_witness_body(8, pf, np + 1, note.p, note.len, &body, &err));
    CHECK(add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err) == 422);
    {
        int np7;
        uint8_t p7[LEDGER_MAX_PROOF][LEDGER_HASH];
        CHECK(proof_of(&f, 7, 12, p7, &np7) == 0);
        cit_buf_free(&body);
        CHECK(!gw_witness_body(8, (const uint8_t(*)[LEDGER_HASH])p7, np7, note.p, note.len, &body,
                               &err));
        CHECK(add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err) == 422);
    }
    /* a proof where none is due: to the same size */
    cit_buf_free(&body);
    CHECK(!gw_witness_body(8, pf, 1, note8.p, note8.len, &body, &err));
    code = add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err);
    CHECKF(code == 422 && strstr(err.msg, "must be empty"), "%d: %s", code, err.msg);
    /* and from the empty tree (the builder refuses it, so by hand) */
    {
        char b[4096];
        char b64[64];
        struct gw_witness_state empty = {0};
        sodium_bin2base64(b64, sizeof(b64), proof[0], LEDGER_HASH, sodium_base64_VARIANT_ORIGINAL);
        snprintf(b, sizeof(b), "old 0\n%s\n\n%s", b64, note8.p);
        CHECK(gw_witness_body(0, pf, 1, note8.p, note8.len, &body, &err) == CIT_EINVAL);
        code = add(&f, &empty, b, strlen(b), &next, &reply, &cosigned, &err);
        CHECKF(code == 422 && strstr(err.msg, "from size 0"), "%d: %s", code, err.msg);
    }

    /* another key of the same name signs the same tree: 403 */
    {
        char p[1100], vp[1100];
        snprintf(p, sizeof(p), "%s.stranger.key", f.dir);
        snprintf(vp, sizeof(vp), "%s.stranger.vkey", f.dir);
        unlink(p);
        unlink(vp);
        CHECK(!ledger_key_load(p, vp, ORIGIN, &stranger, &err));
    }
    CHECK(sign_cp(&stranger, cp.size, cp.root, &other) == 0);
    CHECK(proof_of(&f, 8, 12, proof, &np) == 0);
    cit_buf_free(&body);
    CHECK(!gw_witness_body(8, pf, np, other.p, other.len, &body, &err));
    code = add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err);
    CHECKF(code == 403 && strstr(err.msg, "no signature by the key " ORIGIN), "%d: %s", code,
           err.msg);
    /* the log's own signature, altered */
    cit_buf_free(&body);
    CHECK(!gw_witness_body(8, pf, np, note.p, note.len, &body, &err));
    body.p[body.len - 10] = body.p[body.len - 10] == 'A' ? 'B' : 'A'; /* still base64 */
    code = add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err);
    CHECKF(code == 403 && strstr(err.msg, "does not verify"), "%d: %s", code, err.msg);
    /* a witness's own key is not a log's */
    cit_buf_free(&body);
    CHECK(!gw_witness_body(8, pf, np, note.p, note.len, &body, &err));
    {
        struct ledger_vkey wk = f.w.vk;
        struct gw_witness_state n2;
        cit_buf_free(&reply);
        cit_buf_free(&cosigned);
        code = gw_witness_add(&wk, &f.w, &st, body.p, body.len, NOW, &n2, &reply, &cosigned, &err);
        CHECK(code == 404);
        /* and a log's key cannot cosign */
        code = gw_witness_add(&f.log, &logkey, &st, body.p, body.len, NOW, &n2, &reply, &cosigned,
                              &err);
        CHECKF(code == 500 && strstr(err.msg, "not a witness's"), "%d: %s", code, err.msg);
    }
    /* another origin: this witness knows no such log */
    {
        struct ledger_skey k2;
        char p[1100], vp[1100];
        snprintf(p, sizeof(p), "%s.other.key", f.dir);
        snprintf(vp, sizeof(vp), "%s.other.vkey", f.dir);
        unlink(p);
        unlink(vp);
        CHECK(!ledger_key_load(p, vp, "elsewhere.example/log", &k2, &err));
        CHECK(sign_cp(&k2, cp.size, cp.root, &other) == 0);
        cit_buf_free(&body);
        CHECK(!gw_witness_body(8, pf, np, other.p, other.len, &body, &err));
        code = add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err);
        CHECKF(code == 404 && strstr(err.msg, "\"elsewhere.example/log\" is not the log's"),
               "%d: %s", code, err.msg);
        sodium_memzero(&k2, sizeof(k2));
    }

    /* the good proof still passes: nothing above moved the state */
    cit_buf_free(&body);
    CHECK(!gw_witness_body(8, pf, np, note.p, note.len, &body, &err));
    CHECK(add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err) == 200);
    st = next; /* 12 */

    /* rolled back: the log signs 8 again after 12 */
    cit_buf_free(&body);
    CHECK(!gw_witness_body(12, NULL, 0, note8.p, note8.len, &body, &err));
    code = add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err);
    CHECKF(code == 400 && strstr(err.msg, "the old size 12 is above the checkpoint's, 8"), "%d: %s",
           code, err.msg);
    cit_buf_free(&body);
    CHECK(!gw_witness_body(8, NULL, 0, note8.p, note8.len, &body, &err));
    code = add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err);
    CHECK(code == 409 && !gw_witness_conflict_size(reply.p, reply.len, &size) && size == 12);
    CHECK(gw_witness_check(&st, &cp8, NULL, 0, &err) == 400);
    CHECKF(strstr(err.msg, "the log signs 8 entries, but this witness cosigned 12 before: it "
                           "rolled back"),
           "%s", err.msg);

    /* forks, signed by the log's own key: the same size with another
     * root, and a larger tree that extends another tree of size 12 */
    {
        uint8_t leaves[14][LEDGER_HASH], root[LEDGER_HASH];
        struct ledger_view v;
        struct ledger_checkpoint fcp;
        size_t used;
        CHECK(!ledger_view_open(f.dir, &v, &err) && v.n == 12);
        memcpy(leaves, v.leaves, 12 * LEDGER_HASH);
        ledger_view_free(&v);
        leaves[5][0] ^= 1; /* entry 5 rewritten */
        for (int i = 12; i < 14; i++) ledger_leaf_hash(&i, sizeof(i), leaves[i]);
        ledger_root((const uint8_t(*)[LEDGER_HASH])leaves, 12, root);
        CHECK(sign_cp(&logkey, 12, root, &other) == 0);
        cit_buf_free(&body);
        CHECK(!gw_witness_body(12, NULL, 0, other.p, other.len, &body, &err));
        code = add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err);
        CHECKF(code == 409 && strstr(err.msg, "another tree of size 12") &&
                   !gw_witness_conflict_size(reply.p, reply.len, &size) && size == 12,
               "%d: %s", code, err.msg);
        ledger_root((const uint8_t(*)[LEDGER_HASH])leaves, 14, root);
        CHECK(sign_cp(&logkey, 14, root, &other) == 0);
        CHECK(!ledger_consistency_proof((const uint8_t(*)[LEDGER_HASH])leaves, 12, 14, proof, &np));
        cit_buf_free(&body);
        CHECK(!gw_witness_body(12, pf, np, other.p, other.len, &body, &err));
        code = add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err);
        CHECKF(code == 422 && strstr(err.msg, "forked or was rewritten"), "%d: %s", code, err.msg);
        CHECK(!ledger_checkpoint_open(other.p, other.len, &f.log, &fcp, &used, &err));
        CHECK(gw_witness_check(&st, &fcp, pf, np, &err) == 422);
    }
    CHECK(st.size == 12 && !memcmp(st.root, cp.root, LEDGER_HASH));
    fix_close(&f);
    sodium_memzero(&logkey, sizeof(logkey));
    sodium_memzero(&stranger, sizeof(stranger));
    cit_buf_free(&note);
    cit_buf_free(&note8);
    cit_buf_free(&body);
    cit_buf_free(&reply);
    cit_buf_free(&cosigned);
    cit_buf_free(&other);
}

/* add-checkpoint with body must answer 400, with want in the message. */
static int expect_400(struct fix *f, const struct gw_witness_state *st, const char *body,
                      size_t len, const char *want)
{
    struct cit_buf reply = {0}, cosigned = {0};
    struct gw_witness_state next;
    struct cit_err err = {{0}};
    int code = add(f, st, body, len, &next, &reply, &cosigned, &err);
    cit_buf_free(&reply);
    cit_buf_free(&cosigned);
    CHECK_RET(code == 400 && strstr(err.msg, want), "%d, \"%s\", wanted 400 and \"%s\"", code,
              err.msg, want);
    return 0;
}

void test_gateway_witness_malformed(void)
{
    struct fix f;
    struct cit_buf note = {0}, b = {0};
    struct ledger_checkpoint cp;
    struct gw_witness_state st = {0};
    char h[64];
    uint8_t zero[LEDGER_HASH] = {0};
    CHECK(fix_open(&f, "witness-malformed") == 0);
    CHECK(grow(&f, 3) == 0 && head(&f, &note, &cp) == 0);
    sodium_bin2base64(h, sizeof(h), zero, LEDGER_HASH, sodium_base64_VARIANT_ORIGINAL);
#define BODY(...)                                                                                  \
    do {                                                                                           \
        cit_buf_free(&b);                                                                          \
        CHECK(!cit_buf_printf(&b, __VA_ARGS__));                                                   \
    } while (0)
    CHECK(expect_400(&f, &st, "", 0, "line 1: no newline") == 0);
    BODY("%s", note.p); /* no old line at all */
    CHECK(expect_400(&f, &st, b.p, b.len, "is not \"old <size>\"") == 0);
    BODY("old 0%s", note.p + strlen(ORIGIN)); /* "old 0\n<size>..." */
    CHECK(expect_400(&f, &st, b.p, b.len, "line 2 (byte 6)") == 0);
    /* no empty line: the checkpoint's origin is taken for a proof hash */
    BODY("old 0\n%s", note.p);
    CHECK(expect_400(&f, &st, b.p, b.len, "is the empty line before the checkpoint missing?") == 0);
    BODY("old 0\n%s\n", h);
    CHECK(expect_400(&f, &st, b.p, b.len,
                     "line 3 (byte 51): the body ends before the empty line") == 0);
    BODY("old 0\n\n");
    CHECK(expect_400(&f, &st, b.p, b.len, "no checkpoint after the empty line") == 0);
    BODY("old 0");
    CHECK(expect_400(&f, &st, b.p, b.len, "line 1: no newline") == 0);
    BODY("old 3\r\n\r\n%s", note.p);
    CHECK(expect_400(&f, &st, b.p, b.len, "byte 5: a carriage return") == 0);
    /* sizes: leading zeros, signs, spaces, too large */
    BODY("old 03\n\n%s", note.p);
    CHECK(expect_400(&f, &st, b.p, b.len, "the old size \"03\" is not a decimal number") == 0);
    BODY("old -1\n\n%s", note.p);
    CHECK(expect_400(&f, &st, b.p, b.len, "\"-1\" is not a decimal") == 0);
    BODY("old  3\n\n%s", note.p);
    CHECK(expect_400(&f, &st, b.p, b.len, "is not a decimal") == 0);
    BODY("old 18446744073709551616\n\n%s", note.p); /* 2^64 */
    CHECK(expect_400(&f, &st, b.p, b.len, "below 2^64") == 0);
    BODY("old 99999999999999999999999999999\n\n%s", note.p);
    CHECK(expect_400(&f, &st, b.p, b.len, "below 2^64") == 0);
    BODY("old 18446744073709551615\n\n%s", note.p); /* 2^64-1: a number, above the note's */
    CHECK(expect_400(&f, &st, b.p, b.len, "is above the checkpoint's, 3") == 0);
    BODY("OLD 0\n\n%s", note.p);
    CHECK(expect_400(&f, &st, b.p, b.len, "is not \"old <size>\"") == 0);
    /* a note whose size line is huge (its signature is never reached) */
    BODY("old 0\n\n" ORIGIN "\n99999999999999999999999\n%s\n\n\xe2\x80\x94 " ORIGIN " AAAA\n", h);
    CHECK(expect_400(&f, &st, b.p, b.len, "the checkpoint: the tree size") == 0);
    /* bad base64: a stray character, no padding, another alphabet, stray bits */
    {
        char bad[64];
        snprintf(bad, sizeof(bad), "%s", h);
        bad[10] = '!';
        BODY("old 2\n%s\n\n%s", bad, note.p);
        CHECK(expect_400(&f, &st, b.p, b.len, "line 2 (byte 6): \"AAAAAAAAAA!A") == 0);
        BODY("old 2\n%.43s\n\n%s", h, note.p);
        CHECK(expect_400(&f, &st, b.p, b.len, "is not a proof hash") == 0);
        snprintf(bad, sizeof(bad), "%s", h);
        bad[5] = '-'; /* base64url */
        BODY("old 2\n%s\n\n%s", bad, note.p);
        CHECK(expect_400(&f, &st, b.p, b.len, "is not a proof hash") == 0);
        snprintf(bad, sizeof(bad), "%s", h);
        bad[42] = 'B'; /* bits beyond the 32 bytes */
        BODY("old 2\n%s\n\n%s", bad, note.p);
        CHECK(expect_400(&f, &st, b.p, b.len, "is not a proof hash") == 0);
        BODY("old 2\n%s=\n\n%s", h, note.p);
        CHECK(expect_400(&f, &st, b.p, b.len, "is not a proof hash") == 0);
    }
    /* 63 proof lines parse (and then do not verify); 64 do not */
    cit_buf_free(&b);
    CHECK(!cit_buf_printf(&b, "old 2\n"));
    for (int i = 0; i < GW_WITNESS_MAX_PROOF; i++) CHECK(!cit_buf_printf(&b, "%s\n", h));
    {
        struct cit_buf more = {0}, reply = {0}, cos = {0};
        struct gw_witness_state two = {.size = 2}, next;
        struct cit_err err = {{0}};
        CHECK(!cit_buf_printf(&more, "%s\n%s", b.p, note.p));
        CHECK(add(&f, &two, more.p, more.len, &next, &reply, &cos, &err) == 422);
        cit_buf_free(&more);
        CHECK(!cit_buf_printf(&more, "%s%s\n\n%s", b.p, h, note.p));
        CHECK(expect_400(&f, &st, more.p, more.len, "line 65 (byte 2841): more than 63") == 0);
        cit_buf_free(&more);
        cit_buf_free(&reply);
        cit_buf_free(&cos);
    }
    /* trailing bytes after the signatures, and a note cut short */
    BODY("old 0\n\n%sjunk\n", note.p);
    CHECK(expect_400(&f, &st, b.p, b.len, "5 bytes after the checkpoint's signature lines") == 0);
    BODY("old 0\n\n%s\n", note.p);
    CHECK(expect_400(&f, &st, b.p, b.len, "1 bytes after the checkpoint's signature lines") == 0);
    BODY("old 0\n\n%.*s", (int)(note.len - 1), note.p);
    CHECK(expect_400(&f, &st, b.p, b.len, "a signature line has no newline") == 0);
    BODY("old 0\n\n" ORIGIN);
    CHECK(expect_400(&f, &st, b.p, b.len, "line 3 (byte 7): the checkpoint has no complete line") ==
          0);
    BODY("old 0\n\n%.*s\x01%s", (int)strlen(ORIGIN) + 1, note.p, note.p + strlen(ORIGIN) + 1);
    CHECK(expect_400(&f, &st, b.p, b.len, "a control character") == 0);
    /* too large */
    {
        size_t n = GW_WITNESS_MAX_BODY + 1;
        char *big = cit_malloc(n);
        CHECK(big != NULL);
        memset(big, 'A', n);
        memcpy(big, "old 0\n\n", 7);
        if (expect_400(&f, &st, big, n, "more than the") != 0) {
            cit_free(big);
            return;
        }
        big[n - 2] = '\n';
        memcpy(big + 7, ORIGIN "\n", strlen(ORIGIN) + 1);
        if (expect_400(&f, &st, big, n - 1, "line 3: the checkpoint is") != 0) {
            cit_free(big);
            return;
        }
        cit_free(big);
    }
#undef BODY
    fix_close(&f);
    cit_buf_free(&note);
    cit_buf_free(&b);
}

/* The log's side: the body builder's limits, the 409 parser, and reading
 * a 200 answer that mixes lines of other witnesses and bad lines. */
void test_gateway_witness_log_side(void)
{
    struct fix f;
    struct cit_buf note = {0}, body = {0}, reply = {0}, cosigned = {0}, out = {0}, mixed = {0};
    struct ledger_checkpoint cp;
    struct gw_witness_state st = {0}, next;
    struct cit_err err = {{0}};
    struct ledger_skey w2;
    uint8_t proof[GW_WITNESS_MAX_PROOF + 1][LEDGER_HASH] = {{0}};
    const uint8_t(*pf)[LEDGER_HASH] = (const uint8_t(*)[LEDGER_HASH])proof;
    uint64_t size = 77;
    CHECK(fix_open(&f, "witness-log") == 0);
    CHECK(grow(&f, 2) == 0 && head(&f, &note, &cp) == 0);
    /* the body */
    CHECK(gw_witness_body(1, pf, GW_WITNESS_MAX_PROOF + 1, note.p, note.len, &body, &err) ==
          CIT_EINVAL);
    CHECK(gw_witness_body(1, pf, -1, note.p, note.len, &body, &err) == CIT_EINVAL);
    CHECK(gw_witness_body(0, pf, 1, note.p, note.len, &body, &err) == CIT_EINVAL);
    CHECK(gw_witness_body(1, pf, 1, note.p, note.len - 1, &body, &err) == CIT_EINVAL);
    CHECK(gw_witness_body(1, pf, 1, note.p, 0, &body, &err) == CIT_EINVAL);
    CHECK(body.len == 0);
    CHECK(!gw_witness_body(18446744073709551615u, pf, 2, note.p, note.len, &body, &err));
    CHECK(!strncmp(body.p,
                   "old 18446744073709551615\n"
                   "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
                   "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n",
                   25 + 90 + 1) &&
          body.len == 25 + 90 + 1 + note.len && !memcmp(body.p + 116, note.p, note.len));
    /* the 409 body */
    CHECK(!gw_witness_conflict_size("0\n", 2, &size) && size == 0);
    CHECK(!gw_witness_conflict_size("18446744073709551615\n", 21, &size) &&
          size == 18446744073709551615u);
    size = 77;
    CHECK(gw_witness_conflict_size("", 0, &size) == CIT_EFORMAT);
    CHECK(gw_witness_conflict_size("\n", 1, &size) == CIT_EFORMAT);
    CHECK(gw_witness_conflict_size("8", 1, &size) == CIT_EFORMAT);
    CHECK(gw_witness_conflict_size("08\n", 3, &size) == CIT_EFORMAT);
    CHECK(gw_witness_conflict_size("8\n\n", 3, &size) == CIT_EFORMAT);
    CHECK(gw_witness_conflict_size("8\r\n", 3, &size) == CIT_EFORMAT);
    CHECK(gw_witness_conflict_size("-8\n", 3, &size) == CIT_EFORMAT);
    CHECK(gw_witness_conflict_size("18446744073709551616\n", 21, &size) == CIT_EFORMAT);
    CHECK(size == 77);

    /* a 200 answer */
    cit_buf_free(&body);
    CHECK(!gw_witness_body(0, NULL, 0, note.p, note.len, &body, &err));
    CHECK(add(&f, &st, body.p, body.len, &next, &reply, &cosigned, &err) == 200);
    {
        char p[1100], vp[1100];
        snprintf(p, sizeof(p), "%s.w2.key", f.dir);
        snprintf(vp, sizeof(vp), "%s.w2.vkey", f.dir);
        unlink(p);
        unlink(vp);
        CHECK(!ledger_key_load_type(p, vp, "w.example/w2", LEDGER_KEY_COSIGN, &w2, &err));
    }
    /* another witness's line first, then ours: only ours is kept */
    {
        struct cit_buf c2 = {0};
        CHECK(!ledger_cosign(&w2, note.p, note.len, NOW, &c2, &err));
        CHECK(!cit_buf_add(&mixed, c2.p + note.len, c2.len - note.len));
        CHECK(!cit_buf_add(&mixed, reply.p, reply.len));
        cit_buf_free(&c2);
    }
    CHECK(!gw_witness_reply_apply(note.p, note.len, mixed.p, mixed.len, &f.w.vk, &out, &err));
    CHECK(out.len == cosigned.len && !memcmp(out.p, cosigned.p, out.len));
    /* only the other witness's line: not ours */
    cit_buf_free(&out);
    CHECK(gw_witness_reply_apply(note.p, note.len, mixed.p, mixed.len - reply.len, &f.w.vk, &out,
                                 &err) == CIT_EINVAL);
    CHECKF(strstr(err.msg, "no valid cosignature by w.example/w1"), "%s", err.msg);
    CHECK(out.len == 0);
    /* ours, altered */
    {
        struct cit_buf bad = {0};
        CHECK(!cit_buf_add(&bad, reply.p, reply.len));
        bad.p[bad.len - 5] ^= 1;
        CHECK(gw_witness_reply_apply(note.p, note.len, bad.p, bad.len, &f.w.vk, &out, &err) ==
              CIT_EINVAL);
        /* over another note (the cosignature is not of this one) */
        cit_buf_free(&bad);
        CHECK(grow(&f, 1) == 0);
        {
            struct cit_buf n2 = {0};
            struct ledger_checkpoint cp2;
            CHECK(head(&f, &n2, &cp2) == 0 && cp2.size == 3);
            CHECK(gw_witness_reply_apply(n2.p, n2.len, reply.p, reply.len, &f.w.vk, &out, &err) ==
                  CIT_EINVAL);
            /* a note already cosigned does not vouch for a bad line */
            CHECK(!cit_buf_printf(&bad, "\xe2\x80\x94 w.example/w1 AAAA\n"));
            CHECK(gw_witness_reply_apply(cosigned.p, cosigned.len, bad.p, bad.len, &f.w.vk, &out,
                                         &err) == CIT_EINVAL);
            cit_buf_free(&n2);
        }
        cit_buf_free(&bad);
    }
    /* malformed answers */
    CHECK(gw_witness_reply_apply(note.p, note.len, "", 0, &f.w.vk, &out, &err) == CIT_EFORMAT);
    CHECK(gw_witness_reply_apply(note.p, note.len, reply.p, reply.len - 1, &f.w.vk, &out, &err) ==
          CIT_EFORMAT);
    CHECKF(strstr(err.msg, "line 1 (byte 0): no newline"), "%s", err.msg);
    {
        struct cit_buf bad = {0};
        CHECK(!cit_buf_printf(&bad, "%s8\n", reply.p));
        CHECK(gw_witness_reply_apply(note.p, note.len, bad.p, bad.len, &f.w.vk, &out, &err) ==
              CIT_EFORMAT);
        CHECKF(strstr(err.msg, "line 2 (byte "), "%s", err.msg);
        cit_buf_free(&bad);
    }
    CHECK(gw_witness_reply_apply(note.p, note.len, reply.p, reply.len, &f.log, &out, &err) ==
          CIT_EINVAL); /* the log's key is no witness's */
    CHECK(out.len == 0);
    fix_close(&f);
    sodium_memzero(&w2, sizeof(w2));
    cit_buf_free(&note);
    cit_buf_free(&body);
    cit_buf_free(&reply);
    cit_buf_free(&cosigned);
    cit_buf_free(&out);
    cit_buf_free(&mixed);
}

/* Every allocation in turn fails: gw_witness_add answers 200 or 500,
 * gw_witness_reply_apply and gw_witness_body 0 or an error, and a
 * failure leaves the out-parameters as they were. */
void test_gateway_witness_alloc_failures(void)
{
    struct fix f;
    struct cit_buf note = {0}, body = {0}, reply = {0}, cosigned = {0};
    struct ledger_checkpoint cp;
    struct gw_witness_state st = {0}, next;
    struct cit_err err = {{0}};
    int done = 0;
    CHECK(fix_open(&f, "witness-alloc") == 0);
    CHECK(grow(&f, 3) == 0 && head(&f, &note, &cp) == 0);
    CHECK(!gw_witness_body(0, NULL, 0, note.p, note.len, &body, &err));
    CHECK(gw_witness_add(&f.log, &f.w, &st, body.p, body.len, NOW, &next, &reply, &cosigned,
                         &err) == 200);
    for (long nth = 1; !done && nth < 200; nth++) {
        struct cit_buf r = {0}, c = {0}, o = {0}, b = {0};
        struct gw_witness_state n2 = {.size = 99};
        int code, rc, rb;
        BUF_LIT(&r, "r");
        BUF_LIT(&c, "c");
        BUF_LIT(&o, "o");
        BUF_LIT(&b, "b");
        cit_alloc_fail_at(nth);
        code = gw_witness_add(&f.log, &f.w, &st, body.p, body.len, NOW, &n2, &r, &c, &err);
        rc = gw_witness_reply_apply(note.p, note.len, reply.p, reply.len, &f.w.vk, &o, &err);
        rb = gw_witness_body(0, NULL, 0, note.p, note.len, &b, &err);
        done = cit_alloc_injected() == 0;
        cit_alloc_fail_at(0);
        CHECKF(code == 200 || code == 500, "allocation %ld: %d", nth, code);
        if (code == 500) CHECK(n2.size == 99 && r.len == 1 && c.len == 1);
        if (code == 200) CHECK(n2.size == 3 && r.len == reply.len + 1 && c.len == cosigned.len + 1);
        /* a cosignature whose check could not allocate reads as not valid */
        CHECKF(rc == 0 || rc == CIT_ENOMEM || rc == CIT_EINVAL, "allocation %ld: %d", nth, rc);
        if (rc)
            CHECK(o.len == 1);
        else
            CHECK(o.len == cosigned.len + 1);
        CHECK(rb == 0 || rb == CIT_ENOMEM);
        CHECK(b.len == (rb ? 1 : body.len + 1));
        cit_buf_free(&r);
        cit_buf_free(&c);
        cit_buf_free(&o);
        cit_buf_free(&b);
    }
    CHECK(done);
    fix_close(&f);
    cit_buf_free(&note);
    cit_buf_free(&body);
    cit_buf_free(&reply);
    cit_buf_free(&cosigned);
}
