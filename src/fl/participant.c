/*
 * A participant of a federation over the network (fl join): it connects to
 * the pinned coordinator, and for each TASK trains on this node's data and
 * contributes its quantized update (through SecAgg+, encrypted under the
 * Paillier key, or plain), unless the round breaks one of this node's own
 * rules: its data's shape, its noise floor, its privacy budget. Every
 * contribution, decline and abort goes into its own ledger.
 *
 * It does not take the coordinator's word for what the federation is: a
 * TASK in a weaker mode than its floor, or whose round number goes back,
 * repeats or runs past the announced total, and a FINISH whose model is not
 * what the last round's sum makes of the last TASK's model, are refused,
 * and the node leaves.
 */
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fl_int.h"

struct cli {
    const struct fl_join_opts *o;
    struct fl_conn c;
    uint32_t me;
    struct fl_dp_account dp;
    struct fl_sa_client *sa;
    uint64_t round;  /* of the task in progress; 0: none */
    int max_clients; /* Paillier: the round's packing */
    uint32_t d1;     /* entries of a contribution */
    int decrypted;   /* Paillier: this round's one decryption share is out */
    uint8_t mine[32];
    struct fl_seen seen; /* the last TASK taken and SA_DONE seen: for the rounds and FINISH */
    struct cit_buf out, detail;
};

static int send_ready(struct cli *c, uint64_t round, const char *why, const uint32_t *v, size_t n,
                      struct cit_err *err)
{
    int rc = fl_ready_write(&c->out, round, why, v, n);
    return rc ? rc : fl_net_send(&c->c, c->out.p, c->out.len, err);
}

/* Declines the task: a READY that says why, and a ledger entry. */
static int decline(struct cli *c, uint64_t round, const char *why, struct cit_err *err)
{
    cit_log(CIT_LOG_INFO, "fl: round %llu declined: %s", (unsigned long long)round, why);
    c->detail.len = 0;
    cit_buf_printf(&c->detail, "reason=\"%s\"", why);
    if (fl_record(c->o->ledger, "decline", round, NULL, c->o->connect, c->detail.p, err))
        return CIT_EIO;
    return send_ready(c, round, why, NULL, 0, err);
}

/* Refuses what the coordinator sent for good: the ledger gets the reason,
 * the coordinator a READY that declines round with it (so that its log
 * says why), and the caller the error, upon which this node leaves: a
 * coordinator caught lying once is not worked with for the next round. */
static int refuse_task(struct cli *c, uint64_t round, const char *why, struct cit_err *err)
{
    struct cit_err e = {{0}};
    cit_log(CIT_LOG_WARN, "fl: round %llu: refused: %s", (unsigned long long)round, why);
    c->detail.len = 0;
    cit_buf_printf(&c->detail, "reason=\"%s\"", why);
    if (fl_record(c->o->ledger, "refuse", round, NULL, c->o->connect, c->detail.p, &e))
        cit_log(CIT_LOG_ERROR, "fl: %s", e.msg);
    if (send_ready(c, round, why, NULL, 0, &e))
        cit_log(CIT_LOG_WARN, "fl: could not tell the coordinator: %s", e.msg);
    return cit_err_set(err, CIT_ERANGE, "round %llu: %s", (unsigned long long)round, why);
}

/* Round numbers only go forward, within the total the first TASK announced.
 * The coordinator sends each round's TASK once and never resends one (a
 * round that fails is not retried; the next one starts), so the same
 * number again is a replay and a smaller one a rewind. A node may be left
 * out of any number of rounds (--per-round selects at random), so how far
 * a round may jump is bounded by the announced total only, not by one. */
static int round_check(const struct cli *c, const struct fl_task *t, char *why, size_t cap)
{
    const struct fl_task *last = &c->seen.task;
    if (!t->round)
        snprintf(why, cap, "a TASK for round 0 (rounds count from 1)");
    else if (last->round && t->rounds != last->rounds)
        snprintf(why, cap, "the TASK announces %u rounds, the first announced %u", t->rounds,
                 last->rounds);
    else if (t->round > t->rounds)
        snprintf(why, cap, "a TASK for round %llu of the %u rounds announced (a jump past the end)",
                 (unsigned long long)t->round, t->rounds);
    else if (last->round && t->round == last->round)
        snprintf(why, cap,
                 "a second TASK for round %llu (the coordinator never resends a round: a replay)",
                 (unsigned long long)t->round);
    else if (last->round && t->round < last->round)
        snprintf(why, cap, "a TASK for round %llu after round %llu (rounds only go forward)",
                 (unsigned long long)t->round, (unsigned long long)last->round);
    else
        return 0;
    return -1;
}

/* The mode floor: checked before this node trains, so that nothing of its
 * update is computed, let alone sent, in a mode it does not accept. */
static int mode_check(const struct cli *c, const struct fl_task *t, char *why, size_t cap)
{
    int floor = c->o->min_mode ? (int)c->o->min_mode : FL_MODE_SECAGG;
    if (fl_mode_rank(t->mode) >= fl_mode_rank(floor)) return 0;
    snprintf(why, cap,
             "the coordinator announced mode %s, weaker than this node's minimum mode %s (in %s "
             "mode the coordinator sees each update; --min-mode %s allows it)",
             fl_mode_name(t->mode), fl_mode_name(floor), fl_mode_name(t->mode),
             fl_mode_name(t->mode));
    return -1;
}

static double round_epsilon(double z, double delta)
{
    struct fl_dp_account a = {0};
    fl_dp_spend(&a, z);
    return fl_dp_epsilon(&a, delta);
}

static int on_task(struct cli *c, const uint8_t *f, size_t len, struct cit_err *err)
{
    const struct fl_join_opts *o = c->o;
    struct fl_task t;
    struct fl_dp_account after = c->dp;
    double delta = o->dp_delta > 0 ? o->dp_delta : 1e-5, eps = 0;
    char why[FL_ABORT_MAX];
    uint32_t *v = NULL;
    float loss = 0, *own;
    int rc = fl_task_read(f, len, &t, err);
    if (rc) return rc; /* a coordinator that sends garbage is not worked with */
    own = t.w;
    if (round_check(c, &t, why, sizeof(why)) || mode_check(c, &t, why, sizeof(why))) {
        rc = refuse_task(c, t.round, why, err);
        goto out;
    }
    /* FINISH is checked against the last TASK, declined or not */
    cit_free(c->seen.task.w);
    c->seen.task = t;
    c->seen.task.rc.noise = fl_task_noise(&t);
    own = NULL;
    fl_sa_client_free(c->sa);
    c->sa = NULL;
    c->round = 0;
    c->d1 = 0;
    why[0] = 0;
    if ((size_t)t.arch.inputs != o->data->d)
        snprintf(why, sizeof(why), "the model takes %d inputs, this node's data has %zu",
                 t.arch.inputs, o->data->d);
    else if (o->data->classes > t.arch.classes)
        snprintf(why, sizeof(why), "the model has %d classes, this node's data has %d",
                 t.arch.classes, o->data->classes);
    else if (t.mode == FL_MODE_PAILLIER && !o->pai_share)
        snprintf(why, sizeof(why), "this node holds no Paillier key share");
    else if (o->dp_min_noise > 0 && t.dp_noise < o->dp_min_noise)
        snprintf(why, sizeof(why), "noise multiplier %g is below this node's floor of %g",
                 t.dp_noise, o->dp_min_noise);
    else if (o->dp_epsilon > 0 && !(t.dp_noise > 0))
        snprintf(why, sizeof(why), "this node has a privacy budget and the round adds no noise");
    if (!why[0] && t.dp_noise > 0) {
        fl_dp_spend(&after, t.dp_noise);
        eps = fl_dp_epsilon(&after, delta);
        if (o->dp_epsilon > 0 && eps > o->dp_epsilon)
            snprintf(why, sizeof(why),
                     "privacy budget spent: epsilon would reach %.3f of %.3f (delta %g) after %llu "
                     "rounds",
                     eps, o->dp_epsilon, delta, (unsigned long long)after.rounds);
    }
    if (why[0]) {
        rc = decline(c, t.round, why, err);
        goto out;
    }
    t.rc.noise = fl_task_noise(&t);
    if (!(v = cit_malloc(((size_t)t.d + 1) * sizeof(uint32_t)))) {
        rc = CIT_ENOMEM;
        goto out;
    }
    if ((rc = fl_client_update(&t.rc, &t.arch, t.w, o->data, &t.o, v, &loss, err))) goto out;
    /* the privacy is spent once the update leaves, whatever happens next */
    if (t.dp_noise > 0) {
        c->dp = after;
        if (o->dp_state && (rc = fl_dp_save(o->dp_state, &c->dp, err))) goto out;
    }
    if (o->dump_update && (rc = fl_write_u32s(o->dump_update, v, (size_t)t.d + 1, err))) goto out;
    c->detail.len = 0;
    cit_buf_printf(&c->detail, "mode=%s loss=%.4f", fl_mode_name(t.mode), (double)loss);
    if (t.dp_noise > 0)
        cit_buf_printf(&c->detail,
                       " dp_z=%g dp_min=%u epsilon_round=%.4f epsilon_total=%.4f "
                       "delta=%g dp_rounds=%llu",
                       t.dp_noise, t.dp_min, round_epsilon(t.dp_noise, delta), eps, delta,
                       (unsigned long long)c->dp.rounds);
    if (t.mode == FL_MODE_PLAIN) {
        fl_sha256(c->mine, v, ((size_t)t.d + 1) * 4, NULL, 0, NULL, 0);
        if ((rc = send_ready(c, t.round, NULL, v, (size_t)t.d + 1, err))) goto out;
        rc = fl_record(o->ledger, "contribute", t.round, NULL, o->connect, c->detail.p, err);
        goto out;
    }
    if (t.mode == FL_MODE_PAILLIER) {
        size_t m = fl_pai_cts(o->pai, t.rc.max_clients, (size_t)t.d + 1),
               cb = fl_pai_ct_bytes(o->pai);
        uint8_t *cts = cit_malloc(m * cb), msg[60], sig[64];
        if (!cts) {
            rc = CIT_ENOMEM;
            goto out;
        }
        fl_pai_encrypt(o->pai, t.rc.max_clients, v, (size_t)t.d + 1, cts);
        fl_pa_statement(msg, t.round, c->me, cts, m * cb);
        crypto_sign_detached(sig, NULL, msg, sizeof(msg), o->key->sk);
        rc = fl_ready_write_pai(&c->out, t.round, sig, cts, m * cb);
        cit_free(cts);
        if (rc || (rc = fl_net_send(&c->c, c->out.p, c->out.len, err))) goto out;
        c->round = t.round;
        c->max_clients = t.rc.max_clients;
        c->d1 = t.d + 1;
        c->decrypted = 0;
        rc = fl_record(o->ledger, "contribute", t.round, NULL, o->connect, c->detail.p, err);
        goto out;
    }
    {
        /* the noise was split over dp_min contributors: fewer must not be summed */
        uint32_t min_t = o->min_t;
        if (t.dp_noise > 0 && t.dp_min > min_t) min_t = t.dp_min;
        if ((rc = fl_sa_client_new(&o->roster, c->me, o->key->sk, min_t, &c->sa)) ||
            (rc = fl_sa_client_input(c->sa, v, t.d + 1))) {
            cit_err_set(err, rc, "secure aggregation: cannot start");
            goto out;
        }
        fl_sa_client_expect_round(c->sa, t.round);
    }
    c->round = t.round;
    rc = send_ready(c, t.round, NULL, NULL, 0, err);
out:
    cit_free(v);
    cit_free(own);
    return rc;
}

/* Refuses a coordinator's request: ABORT with the reason, and a ledger entry. */
static int refuse(struct cli *c, const char *why, struct cit_err *err)
{
    int rc;
    cit_log(CIT_LOG_WARN, "fl: round %llu: refused: %s", (unsigned long long)c->round, why);
    c->detail.len = 0;
    cit_buf_printf(&c->detail, "reason=\"%s\"", why);
    if (fl_record(c->o->ledger, "abort", c->round, NULL, c->o->connect, c->detail.p, err))
        return CIT_EIO;
    if ((rc = fl_abort_frame(&c->out, why))) return rc;
    return fl_net_send(&c->c, c->out.p, c->out.len, err);
}

/* PA_DECRYPT: checks that what it is asked to decrypt is the product of at
 * least its floor of signed contributions of this round, once, and sends
 * its decryption share of it. */
static int on_decrypt(struct cli *c, const uint8_t *f, size_t len, struct cit_err *err)
{
    const struct fl_join_opts *o = c->o;
    struct fl_decrypt_rd r;
    struct cit_err e = {0};
    size_t m, cb;
    uint32_t floor_n = o->min_t > 2 ? o->min_t : 2;
    uint8_t *acc = NULL, *out = NULL, *seen = NULL, dg[32];
    char why[FL_ABORT_MAX], hx[65];
    int rc = 0;
    if (!c->round || !c->d1 || !o->pai_share)
        return refuse(c, "PA_DECRYPT outside a Paillier round", err);
    if (c->decrypted) return refuse(c, "a second decryption request in one round", err);
    m = fl_pai_cts(o->pai, c->max_clients, c->d1);
    cb = fl_pai_ct_bytes(o->pai);
    if (fl_decrypt_begin(&r, f, len, c->round, m * cb, &e)) return refuse(c, e.msg, err);
    if (r.count < floor_n) {
        snprintf(why, sizeof(why), "asked to decrypt %u contributions, this node's floor is %u",
                 r.count, floor_n);
        return refuse(c, why, err);
    }
    acc = cit_malloc(m * cb);
    out = cit_malloc(m * cb);
    seen = cit_calloc((size_t)o->roster.n, 1);
    if (!acc || !out || !seen) {
        rc = CIT_ENOMEM;
        goto done;
    }
    why[0] = 0;
    for (uint32_t i = 0; i < r.count && !why[0]; i++) {
        uint32_t who;
        const uint8_t *sig, *cts;
        uint8_t msg[60];
        if (fl_decrypt_next(&r, &who, &sig, &cts)) break;
        if (who >= (uint32_t)o->roster.n || seen[who]) {
            snprintf(why, sizeof(why), "contribution %u: member %u unknown or repeated", i, who);
            break;
        }
        seen[who] = 1;
        fl_pa_statement(msg, c->round, who, cts, m * cb);
        if (crypto_sign_verify_detached(sig, msg, sizeof(msg), o->roster.pk[who])) {
            snprintf(why, sizeof(why), "contribution %u: member %u's signature does not verify", i,
                     who);
            break;
        }
        if (!i)
            memcpy(acc, cts, m * cb);
        else if (fl_pai_add(o->pai, acc, cts, m))
            snprintf(why, sizeof(why), "contribution %u is not a ciphertext", i);
    }
    if (!why[0] && fl_decrypt_end(&r)) snprintf(why, sizeof(why), "%.200s", e.msg);
    if (why[0]) {
        rc = refuse(c, why, err);
        goto done;
    }
    c->decrypted = 1;
    if ((rc = fl_pai_decrypt_share(o->pai, o->pai_share, acc, m, out))) goto done;
    if ((rc = fl_share_write(&c->out, c->round, (uint32_t)fl_pai_share_id(o->pai_share), out,
                             m * cb)) ||
        (rc = fl_net_send(&c->c, c->out.p, c->out.len, err)))
        goto done;
    fl_sha256(dg, acc, m * cb, NULL, 0, NULL, 0);
    fl_hex(hx, dg, 32);
    c->detail.len = 0;
    cit_buf_printf(&c->detail, "mode=paillier contributors=%u aggregate=%s", r.count, hx);
    rc = fl_record(o->ledger, "decrypt", c->round, NULL, o->connect, c->detail.p, err);
done:
    cit_free(acc);
    cit_free(out);
    cit_free(seen);
    return rc;
}

/* The first parameter at which a and b differ, bit for bit; d when none.
 * Bits, not a tolerance: both ends run the same arithmetic on the same
 * numbers (IEEE-754 divisions and additions, nothing contracted), so an
 * honest coordinator's model is exactly the one recomputed here. */
static size_t first_diff(const float *a, const float *b, size_t d)
{
    for (size_t i = 0; i < d; i++)
        if (memcmp(&a[i], &b[i], sizeof(float))) return i;
    return d;
}

int fl_finish_check(const struct fl_seen *s, const struct fl_finish *f, char *why, size_t cap,
                    struct cit_err *err)
{
    const struct fl_task *t = &s->task;
    struct fl_server_opt so;
    struct cit_err e = {{0}};
    float *w;
    size_t at;
    int rc;
    why[0] = 0;
    if (!t->round) {
        snprintf(why, cap, "this node was sent no TASK, so it holds no model to check against");
        return FL_FINISH_UNCHECKED;
    }
    if (f->rounds != t->rounds)
        return cit_err_set(err, CIT_ERANGE, "it counts %u rounds, the TASKs announced %u",
                           f->rounds, t->rounds);
    if (f->d != t->d)
        return cit_err_set(err, CIT_ERANGE, "a model of %u parameters, the rounds' model has %u",
                           f->d, t->d);
    if (f->round && s->sum_round == f->round) {
        uint8_t dg[32];
        char a[65], b[65];
        fl_sha256(dg, f->sum, ((size_t)f->d + 1) * 4, NULL, 0, NULL, 0);
        if (memcmp(dg, s->sum_digest, 32)) {
            fl_hex(a, dg, 32);
            fl_hex(b, s->sum_digest, 32);
            return cit_err_set(err, CIT_ERANGE,
                               "round %llu's sum (SHA-256 %.16s...) is not the one its "
                               "SA_DONE announced (%.16s...)",
                               (unsigned long long)f->round, a, b);
        }
    }
    if (f->round < t->round) {
        /* every round from the last TASK's on failed: nothing stepped the model since */
        if ((at = first_diff(f->w, t->w, t->d)) == t->d) return FL_FINISH_UNCHANGED;
        return cit_err_set(err, CIT_ERANGE,
                           "no round after round %llu was aggregated, so the final model "
                           "must be round %llu's, but parameter %zu is %.9g, not %.9g",
                           (unsigned long long)f->round, (unsigned long long)t->round, at,
                           (double)f->w[at], (double)t->w[at]);
    }
    if (f->round > t->round) {
        snprintf(why, cap, "this node was not sent round %llu's TASK, the last aggregated",
                 (unsigned long long)f->round);
        return FL_FINISH_UNCHECKED;
    }
    if (f->strategy == FL_FEDADAM) {
        snprintf(why, cap,
                 "the coordinator steps with FedAdam, whose optimiser state this node does not "
                 "know");
        return FL_FINISH_UNCHECKED;
    }
    /* FedAvg and FedProx: global += the sum's mean update, as fl_server_update does */
    if (!(w = cit_malloc((t->d ? t->d : 1) * sizeof(float)))) return CIT_ENOMEM;
    memcpy(w, t->w, t->d * sizeof(float));
    if (!(rc = fl_server_opt_init(&so, FL_FEDAVG, t->d))) {
        rc = fl_server_update(&t->rc, &so, w, f->sum, t->d, &e);
        fl_server_opt_free(&so);
    }
    if (rc == CIT_ENOMEM) {
        cit_free(w);
        return rc;
    }
    if (rc)
        rc = cit_err_set(err, CIT_ERANGE, "round %llu's sum cannot have been aggregated: %s",
                         (unsigned long long)f->round, e.msg);
    else if ((at = first_diff(f->w, w, t->d)) < t->d)
        rc = cit_err_set(err, CIT_ERANGE,
                         "the final model is not round %llu's model plus the mean of its "
                         "sum: parameter %zu is %.9g, the sum makes it %.9g",
                         (unsigned long long)f->round, at, (double)f->w[at], (double)w[at]);
    else
        rc = FL_FINISH_RECOMPUTED;
    cit_free(w);
    return rc;
}

/* FINISH: the final model, written only once checked as far as this node
 * can (fl_finish_check); a model that fails the check is not written. */
static int on_finish(struct cli *c, const uint8_t *f, size_t len, struct cit_err *err)
{
    const struct fl_join_opts *o = c->o;
    struct fl_finish fin;
    struct cit_err e = {{0}};
    char why[FL_ABORT_MAX];
    int how, rc = fl_finish_read(f, len, &fin, err);
    if (rc) return rc;
    how = fl_finish_check(&c->seen, &fin, why, sizeof(why), err);
    if (how < 0) {
        cit_log(CIT_LOG_WARN, "fl: refused the final model: %s", err->msg);
        c->detail.len = 0;
        cit_buf_printf(&c->detail, "reason=\"%s\"", err->msg);
        if (fl_record(o->ledger, "refuse", fin.round, NULL, o->connect, c->detail.p, &e))
            cit_log(CIT_LOG_ERROR, "fl: %s", e.msg);
        cit_err_prefix(err, "FINISH refused, no model written");
        rc = how;
        goto out;
    }
    if (how == FL_FINISH_UNCHECKED)
        cit_log(CIT_LOG_WARN, "fl: the final model is unchecked: %s", why);
    if (o->out && (rc = fl_model_write(o->out, fin.w, fin.d, err))) goto out;
    if (o->progress) {
        struct fl_progress ev = {.kind = FL_PROGRESS_FINISHED};
        ev.rounds = fin.rounds;
        ev.dp_rounds = c->dp.rounds;
        ev.checked = how;
        ev.checked_round = how == FL_FINISH_UNCHANGED ? c->seen.task.round : fin.round;
        ev.sum_matched = how == FL_FINISH_RECOMPUTED && c->seen.sum_round == fin.round;
        ev.unchecked = how == FL_FINISH_UNCHECKED ? why : NULL;
        o->progress(o->progress_user, &ev);
    }
out:
    fl_finish_free(&fin);
    return rc;
}

/* Stops answering until the coordinator gives up on this node (testing). */
static void stall(struct cli *c)
{
    struct pollfd p = {c->c.fd, POLLIN, 0};
    char b[4096];
    while (poll(&p, 1, 600000) > 0 && read(c->c.fd, b, sizeof(b)) > 0)
        ;
}

int fl_join(const struct fl_join_opts *o, struct cit_err *err)
{
    struct cli c = {0};
    struct ssl_ctx_st *ctx = NULL;
    struct cit_buf f = {0};
    int rc, finished = 0;
    c.o = o;
    c.c.fd = -1;
    for (c.me = 0; c.me < (uint32_t)o->roster.n && memcmp(o->roster.pk[c.me], o->key->vk.pk, 32);
         c.me++)
        ;
    if (c.me == (uint32_t)o->roster.n)
        return cit_err_set(err, CIT_EINVAL, "this node's key (%s) is not in the roster",
                           o->key->vk.name);
    if (o->dp_state && (rc = fl_dp_load(o->dp_state, &c.dp, err))) return rc;
    if ((rc = gw_tls_new(0, o->key, (const uint8_t(*)[32])o->coordinator, 1, &ctx, err))) return rc;
    if ((rc = fl_net_connect(ctx, o->connect, 30, &c.c, err))) goto out;
    fl_net_nonblock(&c.c, (int)((o->timeout_s > 0 ? o->timeout_s : 3600) * 1000));
    cit_log(CIT_LOG_INFO, "fl: joined %s as %s", o->connect, o->key->vk.name);
    while (!finished) {
        int type;
        if ((rc = fl_net_recv(&c.c, &f, err))) {
            cit_err_prefix(err, "coordinator");
            goto out;
        }
        type = (uint8_t)f.p[4];
        if (o->drop_at && type == o->drop_at) {
            /* vanish: no close_notify, as a crash or a cut cable would */
            cit_log(CIT_LOG_INFO, "fl: dropping out at %s (testing)", fl_msg_name(type));
            close(c.c.fd);
            c.c.fd = -1;
            c.c.dead = 1;
            rc = 3;
            goto out;
        }
        if (o->stall_at && type == o->stall_at) {
            cit_log(CIT_LOG_INFO, "fl: stalling at %s (testing)", fl_msg_name(type));
            stall(&c);
            rc = 3;
            goto out;
        }
        switch (type) {
        case FL_MSG_TASK:
            if ((rc = on_task(&c, (const uint8_t *)f.p, f.len, err))) goto out;
            break;
        case FL_MSG_PA_DECRYPT:
            if ((rc = on_decrypt(&c, (const uint8_t *)f.p, f.len, err))) goto out;
            break;
        case FL_MSG_FINISH:
            if ((rc = on_finish(&c, (const uint8_t *)f.p, f.len, err))) goto out;
            finished = 1;
            break;
        case FL_MSG_ABORT: {
            size_t n = f.len - FL_HDR;
            cit_log(CIT_LOG_WARN, "fl: the coordinator ended round %llu: %.*s",
                    (unsigned long long)c.round, (int)(n > FL_ABORT_MAX ? FL_ABORT_MAX : n),
                    f.p + FL_HDR);
            c.detail.len = 0;
            cit_buf_printf(&c.detail, "reason=\"%.*s\"", (int)(n > FL_ABORT_MAX ? FL_ABORT_MAX : n),
                           f.p + FL_HDR);
            if (c.round && (rc = fl_record(o->ledger, "round-failed", c.round, NULL, o->connect,
                                           c.detail.p, err)))
                goto out;
            fl_sa_client_free(c.sa);
            c.sa = NULL;
            c.round = 0;
            break;
        }
        default: {
            struct cit_err e = {0};
            struct fl_sa_transcript tr;
            int was_done;
            if (!c.sa) {
                cit_log(CIT_LOG_WARN, "fl: unexpected %s outside a round; ignored",
                        fl_msg_name(type));
                break;
            }
            was_done = fl_sa_client_done(c.sa, NULL);
            if (fl_sa_client_step(c.sa, (const uint8_t *)f.p, f.len, &c.out, &e)) {
                /* the coordinator deviated: this node aborted and said so */
                cit_log(CIT_LOG_WARN, "fl: round %llu: aborted: %s", (unsigned long long)c.round,
                        e.msg);
                c.detail.len = 0;
                cit_buf_printf(&c.detail, "reason=\"%s\"", e.msg);
                if ((rc =
                         fl_record(o->ledger, "abort", c.round, NULL, o->connect, c.detail.p, err)))
                    goto out;
            }
            if (c.out.len && (rc = fl_net_send(&c.c, c.out.p, c.out.len, err))) goto out;
            if (!was_done && fl_sa_client_done(c.sa, &tr)) {
                c.seen.sum_round = c.round; /* FINISH's sum must be this one */
                memcpy(c.seen.sum_digest, tr.sum_digest, 32);
                fl_transcript_text(&c.detail, &tr);
                if ((rc = fl_record(o->ledger, "contribute", c.round, tr.sum_digest, o->connect,
                                    c.detail.p, err)))
                    goto out;
            }
        }
        }
    }
out:
    if (c.c.fd >= 0 || c.c.ssl) fl_net_close(&c.c);
    fl_sa_client_free(c.sa);
    cit_free(c.seen.task.w);
    gw_tls_free(ctx);
    cit_buf_free(&f);
    cit_buf_free(&c.out);
    cit_buf_free(&c.detail);
    return rc;
}
