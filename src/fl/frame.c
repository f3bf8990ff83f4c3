/*
 * The orchestration frames of fl serve / fl join: TASK, READY, FINISH,
 * PA_DECRYPT and PA_SHARE (their layout is in fl.h), written and read here
 * and nowhere else, so that the coordinator and the participant handle
 * values, not offsets. Every reader checks each length against its cap
 * before it is used; what a reader returns points into the frame.
 */
#include <math.h>
#include <string.h>

#include "fl_int.h"

/* ---- TASK ---- */

/* The noise each contributor adds per entry: z C, split over the dp_min
 * contributors secure aggregation guarantees (in plain mode the coordinator
 * sees each update, so each carries all of it). */
double fl_task_noise(const struct fl_task *t)
{
    double m = t->mode == FL_MODE_SECAGG ? t->dp_min : 1;
    return t->dp_noise > 0 ? t->dp_noise * t->rc.clip / sqrt(m) : 0;
}

static void wr_f32(struct fl_wr *w, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    fl_wr_u32(w, u);
}

static void wr_f64(struct fl_wr *w, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    fl_wr_u64(w, u);
}

static float rd_f32(struct fl_rd *r, const char *what)
{
    uint32_t u = fl_rd_u32(r, what);
    float v;
    memcpy(&v, &u, 4);
    return v;
}

static double rd_f64(struct fl_rd *r, const char *what)
{
    uint64_t u = fl_rd_u64(r, what);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

int fl_task_write(const struct fl_task *t, const float *w, struct cit_buf *b)
{
    struct fl_wr wr;
    b->len = 0;
    fl_wr_begin(&wr, b, FL_MSG_TASK);
    fl_wr_u64(&wr, t->round);
    fl_wr_u32(&wr, t->rounds);
    fl_wr_u8(&wr, (uint8_t)t->mode);
    fl_wr_u8(&wr, (uint8_t)t->arch.arch);
    fl_wr_u32(&wr, (uint32_t)t->arch.inputs);
    fl_wr_u32(&wr, (uint32_t)t->arch.classes);
    fl_wr_u8(&wr, (uint8_t)t->arch.layers);
    for (int i = 0; i < FL_MAX_LAYERS; i++) fl_wr_u32(&wr, (uint32_t)t->arch.hidden[i]);
    wr_f64(&wr, t->rc.clip);
    fl_wr_u32(&wr, (uint32_t)t->rc.max_clients);
    wr_f64(&wr, t->rc.weight_cap);
    wr_f64(&wr, t->rc.local_epochs);
    fl_wr_u32(&wr, (uint32_t)t->o.batch);
    wr_f32(&wr, t->o.lr);
    fl_wr_u8(&wr, (uint8_t)t->o.optim);
    wr_f32(&wr, t->o.mu);
    fl_wr_u64(&wr, t->o.seed);
    wr_f64(&wr, t->dp_noise);
    fl_wr_u32(&wr, t->dp_min);
    fl_wr_u32(&wr, t->d);
    for (uint32_t i = 0; i < t->d; i++) wr_f32(&wr, w[i]);
    return fl_wr_end(&wr);
}

static int bad(struct cit_err *err, const char *field)
{
    return cit_err_set(err, CIT_EFORMAT, "TASK: field '%s' is out of range", field);
}

/* Reads and checks a TASK: every number within what a sane round uses. */
int fl_task_read(const uint8_t *f, size_t len, struct fl_task *t, struct cit_err *err)
{
    struct fl_rd r;
    int rc = fl_rd_begin(&r, f, len, err);
    size_t d;
    memset(t, 0, sizeof(*t));
    if (rc) return rc;
    t->round = fl_rd_u64(&r, "round");
    t->rounds = fl_rd_u32(&r, "rounds");
    t->mode = fl_rd_u8(&r, "mode");
    t->arch.arch = fl_rd_u8(&r, "arch") ? FL_MLP : FL_LOGREG;
    t->arch.inputs = (int)fl_rd_u32(&r, "inputs");
    t->arch.classes = (int)fl_rd_u32(&r, "classes");
    t->arch.layers = fl_rd_u8(&r, "layers");
    for (int i = 0; i < FL_MAX_LAYERS; i++) t->arch.hidden[i] = (int)fl_rd_u32(&r, "hidden");
    t->rc.clip = rd_f64(&r, "clip");
    t->rc.max_clients = (int)fl_rd_u32(&r, "max_clients");
    t->rc.weight_cap = rd_f64(&r, "weight_cap");
    t->rc.local_epochs = rd_f64(&r, "local_epochs");
    t->o.batch = (int)fl_rd_u32(&r, "batch");
    t->o.lr = rd_f32(&r, "lr");
    t->o.optim = fl_rd_u8(&r, "optim") ? FL_ADAM : FL_SGD;
    t->o.mu = rd_f32(&r, "mu");
    t->o.seed = fl_rd_u64(&r, "seed");
    t->dp_noise = rd_f64(&r, "dp_noise");
    t->dp_min = fl_rd_u32(&r, "dp_min");
    t->d = fl_rd_count(&r, FL_MAX_DIM, 4, "d");
    if (r.failed) return CIT_EFORMAT;
    if (t->mode != FL_MODE_PLAIN && t->mode != FL_MODE_SECAGG && t->mode != FL_MODE_PAILLIER)
        return bad(err, "mode");
    if (t->arch.inputs < 1 || t->arch.inputs > FL_MAX_FEATURES) return bad(err, "inputs");
    if (t->arch.classes < 2 || t->arch.classes > FL_MAX_CLASSES) return bad(err, "classes");
    if (t->arch.layers > FL_MAX_LAYERS || (t->arch.arch == FL_MLP) != (t->arch.layers > 0))
        return bad(err, "layers");
    for (int i = 0; i < FL_MAX_LAYERS; i++)
        if (t->arch.hidden[i] < 0 || t->arch.hidden[i] > 65536 ||
            (i < t->arch.layers) != (t->arch.hidden[i] > 0))
            return bad(err, "hidden");
    if (!(t->rc.clip > 0 && t->rc.clip < 1e6)) return bad(err, "clip");
    if (t->rc.max_clients < 1 || t->rc.max_clients > FL_MAX_CLIENTS) return bad(err, "max_clients");
    if (!(t->rc.weight_cap >= 0 && t->rc.weight_cap < 1e12)) return bad(err, "weight_cap");
    if (!(t->rc.local_epochs > 0 && t->rc.local_epochs <= 1000)) return bad(err, "local_epochs");
    if (t->o.batch < 1 || t->o.batch > 1 << 20) return bad(err, "batch");
    if (!(t->o.lr > 0 && t->o.lr <= 100)) return bad(err, "lr");
    if (!(t->o.mu >= 0 && t->o.mu <= 1e6)) return bad(err, "mu");
    if (!(t->dp_noise >= 0 && t->dp_noise <= 1e6)) return bad(err, "dp_noise");
    if (t->dp_min < 1 || t->dp_min > FL_MAX_CLIENTS) return bad(err, "dp_min");
    if (t->dp_noise > 0 && t->rc.weight_cap > 0) return bad(err, "weight_cap (with dp_noise)");
    d = fl_arch_params(&t->arch, err);
    if (!d || d != t->d) return bad(err, "d");
    if (!(t->w = cit_malloc(d * sizeof(float)))) return CIT_ENOMEM;
    for (size_t i = 0; i < d; i++)
        if (!isfinite(t->w[i] = rd_f32(&r, "weights"))) {
            cit_free(t->w);
            t->w = NULL;
            return bad(err, "weights");
        }
    if ((rc = fl_rd_end(&r))) {
        cit_free(t->w);
        t->w = NULL;
    }
    return rc;
}

/* ---- READY ---- */

int fl_ready_write(struct cit_buf *out, uint64_t round, const char *why, const uint32_t *v,
                   size_t n)
{
    struct fl_wr w;
    out->len = 0;
    fl_wr_begin(&w, out, FL_MSG_READY);
    fl_wr_u64(&w, round);
    fl_wr_u8(&w, !why);
    if (why) fl_wr_bytes(&w, why, strnlen(why, FL_ABORT_MAX));
    if (v) fl_wr_u32s(&w, v, n);
    return fl_wr_end(&w);
}

int fl_ready_write_pai(struct cit_buf *out, uint64_t round, const uint8_t sig[64],
                       const uint8_t *cts, size_t cts_len)
{
    struct fl_wr w;
    out->len = 0;
    fl_wr_begin(&w, out, FL_MSG_READY);
    fl_wr_u64(&w, round);
    fl_wr_u8(&w, 1);
    fl_wr_bytes(&w, sig, 64);
    fl_wr_bytes(&w, cts, cts_len);
    return fl_wr_end(&w);
}

int fl_ready_read(const uint8_t *f, size_t len, uint64_t round, size_t body_len,
                  struct fl_ready *out, struct cit_err *err)
{
    struct fl_rd r;
    struct cit_err e = {{0}};
    uint64_t rr;
    int accept;
    memset(out, 0, sizeof(*out));
    if (fl_rd_begin(&r, f, len, &e) || r.type != FL_MSG_READY)
        return cit_err_set(err, CIT_EFORMAT, "expected READY: %s",
                           e.msg[0] ? e.msg : fl_msg_name(r.type));
    r.err = err;
    rr = fl_rd_u64(&r, "round");
    accept = fl_rd_u8(&r, "accept");
    if (r.failed) return CIT_ERANGE;
    if (rr != round)
        return cit_err_set(err, CIT_ERANGE, "READY for round %llu in round %llu",
                           (unsigned long long)rr, (unsigned long long)round);
    if (!accept) {
        /* the reason is the rest, however long; only its start is kept */
        size_t left = r.n - r.off;
        out->why = (const char *)r.p + r.off;
        out->why_len = left > FL_ABORT_MAX ? FL_ABORT_MAX : left;
        return 0;
    }
    out->accept = 1;
    out->body = fl_rd_bytes(&r, body_len, "contribution");
    if (fl_rd_end(&r)) {
        out->body = NULL;
        return CIT_ERANGE;
    }
    return 1;
}

/* ---- FINISH ---- */

int fl_finish_write(const struct fl_finish *f, struct cit_buf *out)
{
    struct fl_wr wr;
    out->len = 0;
    fl_wr_begin(&wr, out, FL_MSG_FINISH);
    fl_wr_u32(&wr, f->rounds);
    fl_wr_u32(&wr, f->d);
    for (uint32_t i = 0; i < f->d; i++) wr_f32(&wr, f->w[i]);
    fl_wr_u64(&wr, f->round);
    fl_wr_u8(&wr, (uint8_t)f->strategy);
    if (f->round) fl_wr_u32s(&wr, f->sum, (size_t)f->d + 1);
    return fl_wr_end(&wr);
}

void fl_finish_free(struct fl_finish *f)
{
    cit_free(f->w);
    cit_free(f->sum);
    f->w = NULL;
    f->sum = NULL;
}

static int finish_bad(struct fl_finish *f, struct cit_err *err, const char *field)
{
    fl_finish_free(f);
    return cit_err_set(err, CIT_EFORMAT, "FINISH: field '%s' is out of range", field);
}

int fl_finish_read(const uint8_t *f, size_t len, struct fl_finish *out, struct cit_err *err)
{
    struct fl_rd r;
    struct fl_finish v = {0};
    int rc = fl_rd_begin(&r, f, len, err);
    if (rc) return rc;
    v.rounds = fl_rd_u32(&r, "rounds");
    v.d = fl_rd_count(&r, FL_MAX_DIM, 4, "d");
    if (r.failed) return CIT_EFORMAT;
    if (v.d && !(v.w = cit_malloc((size_t)v.d * sizeof(float)))) return CIT_ENOMEM;
    for (uint32_t i = 0; i < v.d; i++)
        if (!isfinite(v.w[i] = rd_f32(&r, "weights"))) return finish_bad(&v, err, "weights");
    v.round = fl_rd_u64(&r, "round");
    v.strategy = fl_rd_u8(&r, "strategy");
    if (r.failed) {
        fl_finish_free(&v);
        return CIT_EFORMAT;
    }
    if (v.round > v.rounds) return finish_bad(&v, err, "round");
    if (v.strategy != FL_FEDAVG && v.strategy != FL_FEDPROX && v.strategy != FL_FEDADAM)
        return finish_bad(&v, err, "strategy");
    if (v.round) {
        const uint8_t *p = fl_rd_bytes(&r, ((size_t)v.d + 1) * 4, "sum");
        if (!r.failed && !(v.sum = cit_malloc(((size_t)v.d + 1) * sizeof(uint32_t)))) {
            fl_finish_free(&v);
            return CIT_ENOMEM;
        }
        for (size_t i = 0; !r.failed && i <= v.d; i++)
            v.sum[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                       (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
    }
    if ((rc = fl_rd_end(&r))) {
        fl_finish_free(&v);
        return rc;
    }
    *out = v;
    return 0;
}

/* ---- Paillier: PA_DECRYPT and PA_SHARE ---- */

void fl_pa_statement(uint8_t msg[60], uint64_t round, uint32_t member, const uint8_t *cts, size_t n)
{
    memcpy(msg, "citadel-fl/pa/v1", 16);
    for (int i = 0; i < 8; i++) msg[16 + i] = (uint8_t)(round >> (8 * i));
    for (int i = 0; i < 4; i++) msg[24 + i] = (uint8_t)(member >> (8 * i));
    fl_sha256(msg + 28, cts, n, NULL, 0, NULL, 0);
}

int fl_decrypt_write(struct cit_buf *out, uint64_t round, uint32_t n, const uint32_t *members,
                     const uint8_t *const *signed_cts, size_t cts_len)
{
    struct fl_wr w;
    out->len = 0;
    fl_wr_begin(&w, out, FL_MSG_PA_DECRYPT);
    fl_wr_u64(&w, round);
    fl_wr_u32(&w, n);
    for (uint32_t i = 0; i < n; i++) {
        fl_wr_u32(&w, members[i]);
        fl_wr_bytes(&w, signed_cts[i], 64 + cts_len);
    }
    return fl_wr_end(&w);
}

int fl_decrypt_begin(struct fl_decrypt_rd *d, const uint8_t *f, size_t len, uint64_t round,
                     size_t cts_len, struct cit_err *err)
{
    int rc = fl_rd_begin(&d->r, f, len, err);
    d->cts_len = cts_len;
    d->count = 0;
    if (rc) return rc;
    if (fl_rd_u64(&d->r, "round") != round)
        return d->r.failed ? CIT_EFORMAT
                           : cit_err_set(err, CIT_EFORMAT, "PA_DECRYPT for another round");
    d->count = fl_rd_count(&d->r, FL_MAX_CLIENTS, 4 + 64 + cts_len, "contributions");
    return d->r.failed ? CIT_EFORMAT : 0;
}

int fl_decrypt_next(struct fl_decrypt_rd *d, uint32_t *member, const uint8_t **sig,
                    const uint8_t **cts)
{
    *member = fl_rd_u32(&d->r, "member");
    *sig = fl_rd_bytes(&d->r, 64, "signature");
    *cts = fl_rd_bytes(&d->r, d->cts_len, "ciphertexts");
    return d->r.failed ? CIT_EFORMAT : 0;
}

int fl_decrypt_end(struct fl_decrypt_rd *d)
{
    return fl_rd_end(&d->r);
}

int fl_share_write(struct cit_buf *out, uint64_t round, uint32_t id, const uint8_t *shares,
                   size_t len)
{
    struct fl_wr w;
    out->len = 0;
    fl_wr_begin(&w, out, FL_MSG_PA_SHARE);
    fl_wr_u64(&w, round);
    fl_wr_u32(&w, id);
    fl_wr_bytes(&w, shares, len);
    return fl_wr_end(&w);
}

int fl_share_read(const uint8_t *f, size_t len, uint64_t round, uint32_t id, size_t shares_len,
                  const uint8_t **shares, struct cit_err *err)
{
    struct fl_rd r;
    struct cit_err e = {{0}};
    const uint8_t *sh;
    if (fl_rd_begin(&r, f, len, &e) || r.type != FL_MSG_PA_SHARE)
        return cit_err_set(err, CIT_EFORMAT, "expected PA_SHARE: %s",
                           e.msg[0] ? e.msg : fl_msg_name(r.type));
    r.err = err;
    if (fl_rd_u64(&r, "round") != round || fl_rd_u32(&r, "id") != id)
        return r.failed ? CIT_ERANGE
                        : cit_err_set(err, CIT_ERANGE, "PA_SHARE for another round or party");
    sh = fl_rd_bytes(&r, shares_len, "shares");
    if (fl_rd_end(&r)) return CIT_ERANGE;
    *shares = sh;
    return 0;
}
