/*
 * The coordinator of a federation over the network (fl serve): it admits
 * the roster's members over TLS (net.c), sends each round's TASK to those
 * it selects, sums what the ready ones contribute (SecAgg+ through the
 * secagg.c state machine, Paillier with their threshold decryption, or a
 * plain sum), steps the global model and writes the round's transcript
 * into its ledger. It sees the sum, and in plain mode every update.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fl_int.h"

struct srv {
    const struct fl_serve_opts *o;
    struct fl_conn *conns; /* (roster.n), by roster index; fd -1 when absent */
    size_t d;
    float *w;
    struct cit_buf *fr; /* a frame per position */
    struct fl_conn **cs;
    uint32_t *pos;
};

static const char *member_name(const struct srv *s, int m, char *buf, size_t cap)
{
    if (s->o->roster.names && s->o->roster.names[m]) return s->o->roster.names[m];
    snprintf(buf, cap, "member-%d", m);
    return buf;
}

/* Closes every connection that failed or missed a deadline. */
static void reap(struct srv *s)
{
    for (int m = 0; m < s->o->roster.n; m++) {
        struct fl_conn *c = &s->conns[m];
        char nb[32];
        if (c->fd < 0 || !c->dead) continue;
        cit_log(CIT_LOG_INFO, "fl: %s %s; disconnected", member_name(s, m, nb, sizeof(nb)),
                c->late ? "missed a deadline" : "closed or failed");
        fl_net_close(c);
        c->fd = -1;
    }
}

static int accept_members(struct srv *s, struct ssl_ctx_st *ctx, int lfd, struct cit_err *err)
{
    const struct fl_serve_opts *o = s->o;
    int want = o->expect > 0 ? o->expect : o->roster.n, have = 0;
    uint64_t deadline =
        cit_now_ns() + (uint64_t)((o->join_timeout_s > 0 ? o->join_timeout_s : 60) * 1e9);
    while (have < want) {
        struct fl_conn c;
        struct cit_err e = {0};
        uint64_t now = cit_now_ns();
        int m, a;
        if (now >= deadline) break;
        a = fl_net_accept(ctx, lfd, (double)(deadline - now) / 1e9, &c, &e);
        if (a == 1) break;
        if (a) {
            cit_log(CIT_LOG_WARN, "fl: refused a connection: %s", e.msg);
            continue;
        }
        for (m = 0; m < o->roster.n && memcmp(o->roster.pk[m], c.pk, 32); m++)
            ;
        if (m == o->roster.n || s->conns[m].fd >= 0) {
            cit_log(CIT_LOG_WARN, "fl: refused a %s connection",
                    m == o->roster.n ? "non-member" : "second");
            fl_net_close(&c);
            continue;
        }
        c.member = m;
        fl_net_nonblock(&c, 0);
        s->conns[m] = c;
        have++;
    }
    if (have < (o->min_clients > 0 ? o->min_clients : 2))
        return cit_err_set(err, CIT_EIO, "only %d of %d participants joined in time", have, want);
    cit_log(CIT_LOG_INFO, "fl: %d of %d participants joined", have, want);
    return 0;
}

/* Sends each of cs[0..n) its frame in s->fr[pos], waits for the replies. */
static void stage(struct srv *s, int n, int reply, double timeout)
{
    for (int j = 0; j < n; j++) {
        s->cs[j]->out = (const uint8_t *)s->fr[s->pos[j]].p;
        s->cs[j]->out_len = s->fr[s->pos[j]].len;
    }
    fl_net_exchange(s->cs, n, timeout, reply);
}

/* The coordinator's frames for this stage, one per position still in:
 * into s->fr, with s->cs / s->pos naming their connections; returns how many. */
static int sa_frames(struct srv *s, struct fl_sa_server *srv, struct fl_conn **rd, uint32_t n)
{
    int m = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!fl_sa_server_alive(srv, i) || rd[i]->dead) continue;
        if (fl_sa_server_send(srv, i, &s->fr[i]) || !s->fr[i].len) continue;
        s->cs[m] = rd[i];
        s->pos[m++] = i;
    }
    return m;
}

static int round_secagg(struct srv *s, struct fl_conn **rd, uint32_t n, uint64_t round,
                        uint32_t dp_min, uint32_t *sum, struct fl_sa_transcript *tr,
                        struct cit_buf *detail, struct cit_err *err)
{
    const struct fl_serve_opts *o = s->o;
    struct fl_sa_params p = {0};
    struct fl_sa_server *srv = NULL;
    uint32_t *members = cit_malloc(n * sizeof(uint32_t));
    double to = o->stage_timeout_s > 0 ? o->stage_timeout_s : 60;
    int rc;
    if (!members) return CIT_ENOMEM;
    randombytes_buf(p.session, 32);
    p.round = round;
    p.n = n;
    fl_sa_default(n, &p.k, &p.t);
    if (o->k) p.k = o->k;
    if (o->t) p.t = o->t;
    if (p.t < dp_min) p.t = dp_min;
    p.d = (uint32_t)s->d + 1;
    for (uint32_t i = 0; i < n; i++) members[i] = (uint32_t)rd[i]->member;
    p.members = members;
    {
        char sh[65];
        fl_hex(sh, p.session, 32);
        cit_buf_printf(detail, " k=%u t=%u session=%s", p.k, p.t, sh);
    }
    if (!(rc = fl_sa_server_new(&p, &o->roster, &srv, err))) rc = 1;
    for (; rc == 1; rc = fl_sa_server_advance(srv, err)) {
        int m = sa_frames(s, srv, rd, n);
        stage(s, m, 1, to);
        for (int j = 0; j < m; j++) {
            struct cit_err e = {0};
            struct fl_conn *c = s->cs[j];
            if (!c->got) continue;
            if (fl_sa_server_recv(srv, s->pos[j], (const uint8_t *)c->in.p, c->in.len, &e))
                cit_log(CIT_LOG_WARN, "fl: round %llu: position %u dropped: %s",
                        (unsigned long long)round, s->pos[j], e.msg);
        }
    }
    if (rc == 0) {
        stage(s, sa_frames(s, srv, rd, n), 0, to); /* SA_DONE: no reply */
        memcpy(sum, fl_sa_server_sum(srv, tr), (s->d + 1) * sizeof(uint32_t));
    } else {
        /* tell whoever is left why the round ends */
        int m = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (rd[i]->dead || fl_abort_frame(&s->fr[i], err->msg)) continue;
            s->cs[m] = rd[i];
            s->pos[m++] = i;
        }
        stage(s, m, 0, to);
    }
    fl_sa_server_free(srv);
    cit_free(members);
    return rc;
}

static void round_plain(struct srv *s, struct fl_conn **rd, uint32_t n, uint32_t *sum)
{
    size_t d1 = s->d + 1;
    memset(sum, 0, d1 * sizeof(uint32_t));
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *v = (const uint8_t *)rd[i]->in.p + FL_READY_BODY;
        for (size_t j = 0; j < d1; j++) {
            uint32_t x;
            memcpy(&x, v + 4 * j, 4);
            sum[j] += x;
        }
    }
}

/* Paillier: every signed contribution to each ready participant, t shares
 * of the product's decryption back, combined into the sum. */
static int round_paillier(struct srv *s, struct fl_conn **rd, uint32_t n, uint64_t round,
                          uint32_t *sum, struct cit_buf *detail, struct cit_err *err)
{
    const struct fl_serve_opts *o = s->o;
    size_t m = fl_pai_cts(o->pai, o->rc.max_clients, s->d + 1), cb = fl_pai_ct_bytes(o->pai);
    int t = fl_pai_threshold(o->pai), got = 0, rc;
    int *ids = cit_calloc((size_t)t, sizeof(int));
    const uint8_t **shares = cit_calloc((size_t)t, sizeof(*shares));
    uint32_t *members = cit_calloc(n, sizeof(*members));
    const uint8_t **signed_cts = cit_calloc(n, sizeof(*signed_cts)); /* sig, cts */
    uint8_t *agg = cit_malloc(m * cb), dg[32];
    struct cit_buf *f = &s->fr[0];
    char hx[65];
    if (!ids || !shares || !members || !signed_cts || !agg) {
        rc = CIT_ENOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        members[i] = (uint32_t)rd[i]->member;
        signed_cts[i] = (const uint8_t *)rd[i]->in.p + FL_READY_BODY;
        if (!i)
            memcpy(agg, signed_cts[i] + 64, m * cb);
        else if ((rc = fl_pai_add(o->pai, agg, signed_cts[i] + 64, m))) {
            cit_err_set(err, rc, "a contribution is not a ciphertext");
            goto out;
        }
    }
    if ((rc = fl_decrypt_write(f, round, n, members, signed_cts, m * cb))) goto out;
    fl_sha256(dg, agg, m * cb, NULL, 0, NULL, 0);
    fl_hex(hx, dg, 32);
    cit_buf_printf(detail, " aggregate=%s decryptors=", hx);
    for (uint32_t i = 0; i < n; i++) {
        rd[i]->out = (const uint8_t *)f->p;
        rd[i]->out_len = f->len;
    }
    fl_net_exchange(rd, (int)n, o->stage_timeout_s > 0 ? o->stage_timeout_s : 60, 1);
    for (uint32_t i = 0; i < n && got < t; i++) {
        struct cit_err e = {0};
        const uint8_t *sh;
        char nb[32];
        if (!rd[i]->got) continue;
        rc = fl_share_read((const uint8_t *)rd[i]->in.p, rd[i]->in.len, round,
                           (uint32_t)rd[i]->member + 1, m * cb, &sh, &e);
        if (rc == CIT_EFORMAT) /* an ABORT says why: its body is the reason */
            cit_log(CIT_LOG_WARN, "fl: round %llu: %s sent no decryption share: %.*s",
                    (unsigned long long)round, member_name(s, rd[i]->member, nb, 32),
                    (int)(rd[i]->in.len > FL_HDR ? rd[i]->in.len - FL_HDR : 0),
                    rd[i]->in.p + FL_HDR);
        if (rc) continue;
        ids[got] = rd[i]->member + 1;
        shares[got++] = sh;
        cit_buf_printf(detail, "%s%s", got > 1 ? "," : "", member_name(s, rd[i]->member, nb, 32));
    }
    if (got < t) {
        rc = cit_err_set(err, CIT_EIO, "only %d of the %d decryption shares needed (threshold)",
                         got, t);
        goto out;
    }
    rc = fl_pai_combine(o->pai, o->rc.max_clients, ids, shares, t, s->d + 1, sum, err);
out:
    cit_free(ids);
    cit_free(shares);
    cit_free(members);
    cit_free(signed_cts);
    cit_free(agg);
    return rc;
}

/* Reads a READY: 1 accepted, 0 declined (reason logged), -1 malformed. */
static int ready_read(struct srv *s, struct fl_conn *c, uint64_t round, int mode)
{
    const struct fl_serve_opts *o = s->o;
    size_t m = mode == FL_MODE_PAILLIER ? fl_pai_cts(o->pai, o->rc.max_clients, s->d + 1) : 0,
           cb = mode == FL_MODE_PAILLIER ? fl_pai_ct_bytes(o->pai) : 0;
    size_t body = mode == FL_MODE_PLAIN      ? (s->d + 1) * 4
                  : mode == FL_MODE_PAILLIER ? 64 + m * cb
                                             : 0;
    struct fl_ready rd;
    struct cit_err e = {0};
    char nb[32];
    int a = fl_ready_read((const uint8_t *)c->in.p, c->in.len, round, body, &rd, &e);
    if (a == CIT_EFORMAT)
        cit_log(CIT_LOG_WARN, "fl: %s: %s", member_name(s, c->member, nb, 32), e.msg);
    if (a < 0) return -1;
    if (!a) {
        cit_log(CIT_LOG_INFO, "fl: round %llu: %s declined: %.*s", (unsigned long long)round,
                member_name(s, c->member, nb, 32), (int)rd.why_len, rd.why);
        return 0;
    }
    if (mode == FL_MODE_PAILLIER) {
        uint8_t msg[60];
        fl_pa_statement(msg, round, (uint32_t)c->member, rd.body + 64, m * cb);
        if (crypto_sign_verify_detached(rd.body, msg, sizeof(msg), o->roster.pk[c->member])) {
            cit_log(CIT_LOG_WARN, "fl: %s: a contribution with a bad signature",
                    member_name(s, c->member, nb, 32));
            return -1;
        }
    }
    return 1;
}

int fl_serve(const struct fl_serve_opts *o, struct cit_err *err)
{
    struct srv s = {0};
    struct ssl_ctx_st *ctx = NULL;
    struct fl_rng rng;
    struct fl_task t = {0};
    struct cit_buf taskf = {0}, detail = {0};
    struct fl_finish fin = {0};
    uint32_t *sum = NULL, dp_min = 1;
    int lfd = -1, port, rc, n = o->roster.n;
    s.o = o;
    if (!(s.d = fl_arch_params(&o->arch, err))) return CIT_EINVAL;
    if (n < 2 || n > FL_MAX_CLIENTS) return cit_err_set(err, CIT_EINVAL, "roster of %d", n);
    /* FINISH is the largest frame: the model and a sum, 8 bytes a parameter */
    if (s.d > (FL_MAX_FRAME - 64) / 8)
        return cit_err_set(err, CIT_ERANGE,
                           "a model of %zu parameters does not fit a FINISH frame (at most %u)",
                           s.d, (FL_MAX_FRAME - 64) / 8);
    s.conns = cit_calloc((size_t)n, sizeof(*s.conns));
    s.fr = cit_calloc((size_t)n, sizeof(*s.fr));
    s.cs = cit_calloc((size_t)n, sizeof(*s.cs));
    s.pos = cit_calloc((size_t)n, sizeof(*s.pos));
    s.w = cit_malloc(s.d * sizeof(float));
    sum = cit_malloc((s.d + 1) * sizeof(uint32_t));
    /* the last aggregated round's sum, which FINISH carries so that a
     * participant can recompute the final model from it */
    fin.sum = cit_malloc((s.d + 1) * sizeof(uint32_t));
    if (!s.conns || !s.fr || !s.cs || !s.pos || !s.w || !sum || !fin.sum) {
        rc = CIT_ENOMEM;
        goto out;
    }
    for (int m = 0; m < n; m++) s.conns[m].fd = -1;
    if ((rc = gw_tls_new(1, o->key, o->roster.pk, n, &ctx, err))) goto out;
    if ((lfd = fl_net_listen(o->listen, &port, err)) < 0) {
        rc = CIT_EIO;
        goto out;
    }
    if (o->port_file) {
        char txt[16];
        int l = snprintf(txt, sizeof(txt), "%d\n", port);
        if ((rc = cit_write_file(o->port_file, txt, (size_t)l, 0644, err))) goto out;
    }
    cit_log(CIT_LOG_INFO, "fl: coordinator listening on port %d", port);
    if ((rc = accept_members(&s, ctx, lfd, err))) goto out;
    fl_arch_init(&o->arch, s.w, o->seed);
    fl_rng_seed(&rng, o->seed ^ 0x5e1ec7);
    t.mode = o->mode;
    t.arch = o->arch;
    t.rc = o->rc;
    t.o = o->o;
    t.rounds = (uint32_t)o->rounds;
    t.dp_noise = o->dp_noise;
    t.d = (uint32_t)s.d;
    {
        uint32_t k, tt, want = (uint32_t)(o->per_round > 0 ? o->per_round : n);
        fl_sa_default(want, &k, &tt);
        dp_min = o->t ? o->t : tt;
        if (o->mode != FL_MODE_SECAGG) dp_min = 1;
    }
    t.dp_min = dp_min;
    t.rc.noise = fl_task_noise(&t);
    for (int r = 1; r <= o->rounds; r++) {
        struct fl_conn **sel = s.cs, **ready;
        struct fl_sa_transcript tr = {0};
        int ns = 0, nr = 0, declined = 0;
        uint64_t t0 = cit_now_ns();
        /* select */
        for (int m = 0; m < n; m++)
            if (s.conns[m].fd >= 0) sel[ns++] = &s.conns[m];
        if (o->per_round > 0 && ns > o->per_round) {
            for (int i = 0; i < o->per_round; i++) {
                size_t j = (size_t)i + fl_rng_below(&rng, (size_t)(ns - i));
                struct fl_conn *x = sel[i];
                sel[i] = sel[j];
                sel[j] = x;
            }
            ns = o->per_round;
        }
        /* the task, and who is ready */
        t.round = (uint64_t)r;
        t.o.seed = o->seed + (uint64_t)r;
        if ((rc = fl_task_write(&t, s.w, &taskf))) goto out;
        for (int i = 0; i < ns; i++) {
            sel[i]->out = (const uint8_t *)taskf.p;
            sel[i]->out_len = taskf.len;
        }
        fl_net_exchange(sel, ns, o->train_timeout_s > 0 ? o->train_timeout_s : 300, 1);
        ready = cit_calloc((size_t)(ns ? ns : 1), sizeof(*ready));
        if (!ready) {
            rc = CIT_ENOMEM;
            goto out;
        }
        for (int i = 0; i < ns; i++) {
            int a;
            if (!sel[i]->got) continue;
            a = ready_read(&s, sel[i], t.round, o->mode);
            if (a > 0) ready[nr++] = sel[i];
            if (a == 0) declined++;
            if (a < 0) sel[i]->dead = 1;
        }
        detail.len = 0;
        cit_buf_printf(&detail, "mode=%s selected=%d ready=%d declined=%d participants=",
                       fl_mode_name(o->mode), ns, nr, declined);
        for (int i = 0; i < nr; i++) {
            char nb[32];
            cit_buf_printf(&detail, "%s%s", i ? "," : "",
                           member_name(&s, ready[i]->member, nb, sizeof(nb)));
        }
        if (o->dp_noise > 0) cit_buf_printf(&detail, " dp_z=%g dp_min=%u", o->dp_noise, dp_min);
        if (nr < (o->min_clients > 0 ? o->min_clients : 2)) {
            rc = cit_err_set(err, CIT_EIO, "only %d participants ready", nr);
        } else if (o->mode == FL_MODE_SECAGG) {
            /* the secure rounds reuse s.cs for each stage: keep the ready list apart */
            rc = round_secagg(&s, ready, (uint32_t)nr, t.round, dp_min, sum, &tr, &detail, err);
        } else {
            rc = o->mode == FL_MODE_PAILLIER
                     ? round_paillier(&s, ready, (uint32_t)nr, t.round, sum, &detail, err)
                     : (round_plain(&s, ready, (uint32_t)nr, sum), 0);
            /* every ready participant contributed; only the sum has a digest */
            tr.n = tr.contributors = (uint32_t)nr;
            fl_sha256(tr.sum_digest, sum, (s.d + 1) * 4, NULL, 0, NULL, 0);
        }
        if (!rc) fl_transcript_text(&detail, &tr);
        if (!rc && o->dump_sum) rc = fl_write_u32s(o->dump_sum, sum, s.d + 1, err);
        if (!rc) rc = fl_server_update(&t.rc, o->so, s.w, sum, s.d, err);
        if (!rc) {
            fin.round = t.round;
            memcpy(fin.sum, sum, (s.d + 1) * sizeof(uint32_t));
        }
        if (rc) {
            cit_buf_printf(&detail, " error=\"%s\"", err->msg);
            cit_log(CIT_LOG_WARN, "fl: round %d failed: %s", r, err->msg);
        } else {
            struct fl_progress ev = {.kind = FL_PROGRESS_ROUND};
            if (o->test) fl_evaluate(&o->arch, s.w, o->test, &ev.accuracy, &ev.loss);
            ev.round = r;
            ev.selected = ns;
            ev.ready = nr;
            ev.contributors = tr.contributors;
            ev.ms = (double)(cit_now_ns() - t0) / 1e6;
            ev.tested = o->test != NULL;
            if (o->progress) o->progress(o->progress_user, &ev);
        }
        cit_free(ready);
        if ((rc = fl_record(o->ledger, rc ? "round-failed" : "aggregate", t.round,
                            rc ? NULL : tr.sum_digest, "fl", detail.p, err)))
            goto out;
        reap(&s);
    }
    /* the final model to everyone still here */
    {
        int m = 0;
        fin.rounds = (uint32_t)o->rounds;
        fin.d = (uint32_t)s.d;
        fin.w = s.w;
        fin.strategy = o->so->strategy;
        rc = fl_finish_write(&fin, &taskf);
        fin.w = NULL; /* s.w's */
        if (rc) goto out;
        for (int i = 0; i < n; i++)
            if (s.conns[i].fd >= 0) {
                s.conns[i].out = (const uint8_t *)taskf.p;
                s.conns[i].out_len = taskf.len;
                s.cs[m++] = &s.conns[i];
            }
        fl_net_exchange(s.cs, m, o->stage_timeout_s > 0 ? o->stage_timeout_s : 60, 0);
    }
    if (o->out && (rc = fl_model_write(o->out, s.w, s.d, err))) goto out;
out:
    for (int m = 0; s.conns && m < n; m++)
        if (s.conns[m].fd >= 0) fl_net_close(&s.conns[m]);
    for (int m = 0; s.fr && m < n; m++) cit_buf_free(&s.fr[m]);
    if (lfd >= 0) close(lfd);
    gw_tls_free(ctx);
    cit_free(s.conns);
    cit_free(s.fr);
    cit_free(s.cs);
    cit_free(s.pos);
    cit_free(s.w);
    cit_free(sum);
    cit_free(fin.sum);
    cit_buf_free(&taskf);
    cit_buf_free(&detail);
    return rc;
}
