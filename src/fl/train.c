/*
 * Local trainers: multinomial logistic regression and a multi-layer
 * perceptron (ReLU hidden layers, softmax cross-entropy), mini-batch SGD or
 * Adam, with FedProx's proximal term.
 *
 * Parameters are one flat float vector, the form in which they are averaged,
 * masked and sent: for each layer l (the hidden ones, then the output), the
 * weights (in_l, out_l) row-major, then the biases (out_l). Logistic
 * regression is the perceptron with no hidden layer.
 */
#include <math.h>
#include <sodium.h>
#include <string.h>

#include "citadel/fl.h"
#include "fl_int.h"

#define EVAL_BATCH 256

struct net {
    int L;                        /* layers with weights */
    int width[FL_MAX_LAYERS + 2]; /* width[0] inputs ... width[L] classes */
    size_t woff[FL_MAX_LAYERS + 1], boff[FL_MAX_LAYERS + 1];
    size_t params;
};

static int net_layout(const struct fl_arch_spec *a, struct net *n, struct cit_err *err)
{
    size_t off = 0;
    int hidden = a->arch == FL_MLP ? a->layers : 0;
    if (a->arch != FL_LOGREG && a->arch != FL_MLP)
        return cit_err_set(err, CIT_EINVAL, "unknown model architecture %d", (int)a->arch);
    if (a->inputs < 1 || a->inputs > FL_MAX_FEATURES)
        return cit_err_set(err, CIT_ERANGE, "inputs: %d (1..%d)", a->inputs, FL_MAX_FEATURES);
    if (a->classes < 2 || a->classes > FL_MAX_CLASSES)
        return cit_err_set(err, CIT_ERANGE, "classes: %d (2..%d)", a->classes, FL_MAX_CLASSES);
    if (a->arch == FL_MLP && (hidden < 1 || hidden > FL_MAX_LAYERS))
        return cit_err_set(err, CIT_ERANGE, "hidden layers: %d (1..%d)", hidden, FL_MAX_LAYERS);
    n->L = hidden + 1;
    n->width[0] = a->inputs;
    for (int l = 0; l < hidden; l++) {
        if (a->hidden[l] < 1 || a->hidden[l] > 65536)
            return cit_err_set(err, CIT_ERANGE, "hidden layer %d: width %d (1..65536)", l + 1,
                               a->hidden[l]);
        n->width[l + 1] = a->hidden[l];
    }
    n->width[n->L] = a->classes;
    for (int l = 0; l < n->L; l++) {
        size_t w = (size_t)n->width[l] * (size_t)n->width[l + 1];
        n->woff[l] = off;
        n->boff[l] = off + w;
        off += w + (size_t)n->width[l + 1];
        if (off > FL_MAX_DIM)
            return cit_err_set(err, CIT_ERANGE, "model has more than %u parameters", FL_MAX_DIM);
    }
    n->params = off;
    return 0;
}

size_t fl_arch_params(const struct fl_arch_spec *a, struct cit_err *err)
{
    struct net n;
    return net_layout(a, &n, err) ? 0 : n.params;
}

void fl_arch_init(const struct fl_arch_spec *a, float *w, uint64_t seed)
{
    struct net n;
    struct fl_rng r;
    if (net_layout(a, &n, NULL)) return;
    fl_rng_seed(&r, seed);
    for (int l = 0; l < n.L; l++) {
        size_t cnt = (size_t)n.width[l] * (size_t)n.width[l + 1];
        /* He for ReLU layers; the output layer of logistic regression starts at zero */
        double sd = n.L == 1 ? 0.0 : sqrt(2.0 / n.width[l]);
        for (size_t i = 0; i < cnt; i++) w[n.woff[l] + i] = (float)(sd * fl_rng_normal(&r));
        memset(w + n.boff[l], 0, (size_t)n.width[l + 1] * sizeof(float));
    }
}

/* Workspace for a batch of B rows: activations per layer (B, width[l]). */
struct work {
    float *act[FL_MAX_LAYERS + 2];
    float *delta[2]; /* (B, max width) gradients wrt a layer's output, ping-pong */
};

static void work_free(struct work *wk, int L)
{
    for (int l = 1; l <= L; l++) cit_free(wk->act[l]); /* act[0] borrows the input */
    cit_free(wk->delta[0]);
    cit_free(wk->delta[1]);
}

static int work_alloc(struct work *wk, const struct net *n, size_t B)
{
    int maxw = 0;
    memset(wk, 0, sizeof(*wk));
    for (int l = 0; l <= n->L; l++) {
        if (n->width[l] > maxw) maxw = n->width[l];
        if (l && !(wk->act[l] = cit_malloc(B * (size_t)n->width[l] * sizeof(float)))) goto fail;
    }
    wk->delta[0] = cit_malloc(B * (size_t)maxw * sizeof(float));
    wk->delta[1] = cit_malloc(B * (size_t)maxw * sizeof(float));
    if (!wk->delta[0] || !wk->delta[1]) goto fail;
    return 0;
fail:
    work_free(wk, n->L);
    return CIT_ENOMEM;
}

/* out (B, m) = in (B, k) . W (k, m) + b (m), then ReLU unless last. */
static void layer_fwd(const float *in, size_t B, int k, int m, const float *W, const float *b,
                      float *out, int relu)
{
    for (size_t i = 0; i < B; i++) {
        float *o = out + i * (size_t)m;
        const float *x = in + i * (size_t)k;
        memcpy(o, b, (size_t)m * sizeof(float));
        for (int p = 0; p < k; p++) {
            float a = x[p];
            const float *wr = W + (size_t)p * (size_t)m;
            if (a == 0.0f) continue; /* pixels and ReLU outputs are often zero */
            for (int j = 0; j < m; j++) o[j] += a * wr[j];
        }
        if (relu)
            for (int j = 0; j < m; j++) o[j] = o[j] > 0 ? o[j] : 0;
    }
}

/* Softmax in place over rows of (B, m); returns the summed cross-entropy
 * against y, and the count of argmax hits in *hits. */
static double softmax_ce(float *z, size_t B, int m, const int32_t *y, size_t *hits)
{
    double loss = 0;
    for (size_t i = 0; i < B; i++) {
        float *r = z + i * (size_t)m, mx = r[0];
        int arg = 0;
        double s = 0;
        for (int j = 1; j < m; j++)
            if (r[j] > mx) mx = r[j], arg = j;
        for (int j = 0; j < m; j++) s += (r[j] = expf(r[j] - mx));
        for (int j = 0; j < m; j++) r[j] = (float)(r[j] / s);
        loss -= log(r[y[i]] > 1e-30f ? r[y[i]] : 1e-30f);
        *hits += arg == y[i];
    }
    return loss;
}

/* Forward over B rows starting at x; the output layer ends as probabilities. */
static double forward(const struct net *n, const float *w, const float *x, const int32_t *y,
                      size_t B, struct work *wk, size_t *hits)
{
    wk->act[0] = (float *)x;
    for (int l = 0; l < n->L; l++)
        layer_fwd(wk->act[l], B, n->width[l], n->width[l + 1], w + n->woff[l], w + n->boff[l],
                  wk->act[l + 1], l + 1 < n->L);
    return softmax_ce(wk->act[n->L], B, n->width[n->L], y, hits);
}

/* Gradient of the batch's mean loss into g (zeroed first). */
static void backward(const struct net *n, const float *w, const int32_t *y, size_t B,
                     struct work *wk, float *g)
{
    int L = n->L, C = n->width[L];
    float *dz = wk->delta[0], *da = wk->delta[1];
    float inv = 1.0f / (float)B;
    memset(g, 0, n->params * sizeof(float));
    for (size_t i = 0; i < B; i++)
        for (int j = 0; j < C; j++)
            dz[i * (size_t)C + j] = (wk->act[L][i * (size_t)C + j] - (j == y[i])) * inv;
    for (int l = L - 1; l >= 0; l--) {
        int k = n->width[l], m = n->width[l + 1];
        float *gW = g + n->woff[l], *gb = g + n->boff[l];
        const float *W = w + n->woff[l], *a = wk->act[l];
        for (size_t i = 0; i < B; i++) {
            const float *d = dz + i * (size_t)m, *x = a + i * (size_t)k;
            for (int j = 0; j < m; j++) gb[j] += d[j];
            for (int p = 0; p < k; p++) {
                float av = x[p];
                float *gr = gW + (size_t)p * (size_t)m;
                if (av == 0.0f) continue;
                for (int j = 0; j < m; j++) gr[j] += av * d[j];
            }
        }
        if (l == 0) break;
        /* da (B, k) = dz (B, m) . W^T, masked by the ReLU of layer l */
        for (size_t i = 0; i < B; i++) {
            const float *d = dz + i * (size_t)m, *x = a + i * (size_t)k;
            float *o = da + i * (size_t)k;
            for (int p = 0; p < k; p++) {
                const float *wr = W + (size_t)p * (size_t)m;
                float s = 0;
                if (x[p] <= 0.0f) {
                    o[p] = 0;
                    continue;
                }
                for (int j = 0; j < m; j++) s += d[j] * wr[j];
                o[p] = s;
            }
        }
        float *t = dz;
        dz = da;
        da = t;
    }
}

int fl_train(const struct fl_arch_spec *a, float *w, const float *w_global,
             const struct fl_data *ds, const struct fl_train_opts *o, float *loss,
             struct cit_err *err)
{
    struct net n;
    struct work wk;
    struct fl_rng r;
    size_t B, *order = NULL;
    float *g = NULL, *m = NULL, *v = NULL, *xb = NULL;
    int32_t *yb = NULL;
    double b1 = o->beta1 ? o->beta1 : 0.9, b2 = o->beta2 ? o->beta2 : 0.999;
    double eps = o->eps ? o->eps : 1e-8, last = 0;
    long step = 0;
    int rc = net_layout(a, &n, err);
    if (rc) return rc;
    if ((size_t)a->inputs != ds->d)
        return cit_err_set(err, CIT_EINVAL, "the model takes %d features, the data has %zu",
                           a->inputs, ds->d);
    for (size_t i = 0; i < ds->n; i++)
        if (ds->y[i] >= a->classes)
            return cit_err_set(err, CIT_EINVAL,
                               "example %zu has label %d, the model has %d classes", i, ds->y[i],
                               a->classes);
    if (o->epochs < 0 || o->batch < 1 || o->steps < 0 || !(o->lr > 0))
        return cit_err_set(err, CIT_EINVAL,
                           "training needs epochs >= 0, batch >= 1, steps >= 0, lr > 0");
    if (o->mu > 0 && !w_global)
        return cit_err_set(err, CIT_EINVAL, "FedProx needs the global model");
    if (!ds->n || !o->epochs) {
        if (loss) *loss = 0;
        return 0;
    }
    B = (size_t)o->batch < ds->n ? (size_t)o->batch : ds->n;
    if ((rc = work_alloc(&wk, &n, B))) return rc;
    order = cit_malloc(ds->n * sizeof(size_t));
    g = cit_malloc(n.params * sizeof(float));
    xb = cit_malloc(B * ds->d * sizeof(float));
    yb = cit_malloc(B * sizeof(int32_t));
    if (o->optim == FL_ADAM) {
        m = cit_calloc(n.params, sizeof(float));
        v = cit_calloc(n.params, sizeof(float));
    }
    if (!order || !g || !xb || !yb || (o->optim == FL_ADAM && (!m || !v))) {
        rc = CIT_ENOMEM;
        goto out;
    }
    fl_rng_seed(&r, o->seed);
    for (size_t i = 0; i < ds->n; i++) order[i] = i;
    for (int e = 0; e < o->epochs && !(o->steps && step >= o->steps); e++) {
        double sum = 0;
        size_t hits = 0;
        for (size_t i = ds->n; i > 1; i--) {
            size_t j = fl_rng_below(&r, i), t = order[i - 1];
            order[i - 1] = order[j];
            order[j] = t;
        }
        size_t seen = 0;
        for (size_t at = 0; at < ds->n && !(o->steps && step >= o->steps); at += B) {
            size_t nb = ds->n - at < B ? ds->n - at : B;
            seen += nb;
            for (size_t i = 0; i < nb; i++) {
                memcpy(xb + i * ds->d, ds->x + order[at + i] * ds->d, ds->d * sizeof(float));
                yb[i] = ds->y[order[at + i]];
            }
            sum += forward(&n, w, xb, yb, nb, &wk, &hits);
            backward(&n, w, yb, nb, &wk, g);
            if (o->mu > 0)
                for (size_t i = 0; i < n.params; i++) g[i] += o->mu * (w[i] - w_global[i]);
            step++;
            if (o->optim == FL_ADAM) {
                double c1 = 1 - pow(b1, (double)step), c2 = 1 - pow(b2, (double)step);
                float lr = (float)(o->lr * sqrt(c2) / c1);
                for (size_t i = 0; i < n.params; i++) {
                    m[i] = (float)(b1 * m[i] + (1 - b1) * g[i]);
                    v[i] = (float)(b2 * v[i] + (1 - b2) * g[i] * g[i]);
                    w[i] -= lr * m[i] / (sqrtf(v[i]) + (float)eps);
                }
            } else {
                for (size_t i = 0; i < n.params; i++) w[i] -= o->lr * g[i];
            }
        }
        last = sum / (double)seen;
        if (!isfinite(last)) {
            rc = cit_err_set(err, CIT_ERANGE,
                             "training diverged in epoch %d (loss %g); lower the "
                             "learning rate",
                             e + 1, last);
            goto out;
        }
    }
    if (loss) *loss = (float)last;
out:
    work_free(&wk, n.L);
    cit_free(order);
    cit_free(g);
    cit_free(m);
    cit_free(v);
    cit_free(xb);
    cit_free(yb);
    return rc;
}

int fl_evaluate(const struct fl_arch_spec *a, const float *w, const struct fl_data *ds,
                float *accuracy, float *loss)
{
    struct net n;
    struct work wk;
    size_t hits = 0;
    double sum = 0;
    int rc = net_layout(a, &n, NULL);
    if (rc) return rc;
    if ((size_t)a->inputs != ds->d) return CIT_EINVAL;
    if ((rc = work_alloc(&wk, &n, EVAL_BATCH))) return rc;
    for (size_t at = 0; at < ds->n; at += EVAL_BATCH) {
        size_t nb = ds->n - at < EVAL_BATCH ? ds->n - at : EVAL_BATCH;
        for (size_t i = 0; i < nb; i++)
            if (ds->y[at + i] >= a->classes) {
                work_free(&wk, n.L);
                return CIT_EINVAL;
            }
        sum += forward(&n, w, ds->x + at * ds->d, ds->y + at, nb, &wk, &hits);
    }
    work_free(&wk, n.L);
    if (accuracy) *accuracy = ds->n ? (float)hits / (float)ds->n : 0;
    if (loss) *loss = ds->n ? (float)(sum / (double)ds->n) : 0;
    return 0;
}

/* ---- server optimisers ---- */

int fl_server_opt_init(struct fl_server_opt *s, enum fl_strategy strategy, size_t d)
{
    memset(s, 0, sizeof(*s));
    s->strategy = strategy;
    s->d = d;
    s->lr = 0.01f;
    s->beta1 = 0.9f;
    s->beta2 = 0.99f;
    s->tau = 1e-3f;
    if (strategy == FL_FEDADAM) {
        s->m = cit_calloc(d ? d : 1, sizeof(float));
        s->v = cit_calloc(d ? d : 1, sizeof(float));
        if (!s->m || !s->v) {
            fl_server_opt_free(s);
            return CIT_ENOMEM;
        }
    }
    return 0;
}

void fl_server_opt_free(struct fl_server_opt *s)
{
    cit_free(s->m);
    cit_free(s->v);
    s->m = s->v = NULL;
}

void fl_server_opt_apply(struct fl_server_opt *s, float *w, const float *u)
{
    if (s->strategy != FL_FEDADAM) {
        for (size_t i = 0; i < s->d; i++) w[i] += u[i];
        return;
    }
    for (size_t i = 0; i < s->d; i++) {
        s->m[i] = s->beta1 * s->m[i] + (1 - s->beta1) * u[i];
        s->v[i] = s->beta2 * s->v[i] + (1 - s->beta2) * u[i] * u[i];
        w[i] += s->lr * s->m[i] / (sqrtf(s->v[i]) + s->tau);
    }
}

/* ---- quantization ---- */

double fl_quant_scale(double bound, int max_clients)
{
    return 2147483647.0 / ((double)max_clients * bound);
}

double fl_clip(float *x, size_t d, double c)
{
    double s = 0, norm;
    for (size_t i = 0; i < d; i++) s += (double)x[i] * x[i];
    norm = sqrt(s);
    if (norm > c && norm > 0) {
        float f = (float)(c / norm);
        for (size_t i = 0; i < d; i++) x[i] *= f;
    }
    return norm;
}

void fl_quantize(const float *x, size_t d, double scale, double bound, uint32_t *q)
{
    struct fl_rng r;
    uint64_t seed;
    double lim = floor(bound * scale);
    randombytes_buf(&seed, sizeof(seed)); /* rounding noise: fresh per call */
    fl_rng_seed(&r, seed);
    for (size_t i = 0; i < d; i++) {
        double v = (double)x[i] * scale, f = floor(v);
        if (fl_rng_uniform(&r) < v - f) f += 1;
        if (f > lim) f = lim;
        if (f < -lim) f = -lim;
        q[i] = (uint32_t)(int32_t)f;
    }
}

void fl_dequantize(const uint32_t *q, size_t d, double scale, float *x)
{
    for (size_t i = 0; i < d; i++) x[i] = (float)((double)(int32_t)q[i] / scale);
}

/* ---- a round's arithmetic ---- */

/* The bound on every entry of a contribution: the clipped update's, or the
 * weight's (at most 1). */
static double round_bound(const struct fl_round_cfg *rc)
{
    double b = rc->clip + 8 * rc->noise; /* noise past 8 sigma (p ~ 1e-15) is clamped */
    return b > 1 ? b : 1;
}

/* The fixed-point scale of a round's updates: the clip bound and the most
 * clients the sum can hold. */
static double fl_round_scale(const struct fl_round_cfg *rc)
{
    return fl_quant_scale(round_bound(rc), rc->max_clients);
}

int fl_client_update(const struct fl_round_cfg *rc, const struct fl_arch_spec *a,
                     const float *global, const struct fl_data *ds, const struct fl_train_opts *o,
                     uint32_t *out, float *loss, struct cit_err *err)
{
    size_t d = fl_arch_params(a, err);
    struct fl_train_opts lo = *o;
    float *w;
    double weight = 1;
    int r;
    if (!d) return CIT_EINVAL;
    if (!(rc->clip > 0) || rc->max_clients < 1 || !(rc->noise >= 0))
        return cit_err_set(err, CIT_EINVAL, "a round needs clip > 0 and max_clients >= 1");
    if (rc->noise > 0 && rc->weight_cap > 0)
        return cit_err_set(err, CIT_EINVAL,
                           "differential privacy needs unweighted rounds (the weight would "
                           "reveal the example count)");
    w = cit_malloc((d + 1) * sizeof(float));
    if (!w) return CIT_ENOMEM;
    memcpy(w, global, d * sizeof(float));
    if (rc->local_epochs > 0) {
        double steps =
            ceil((double)ds->n * rc->local_epochs / (double)(o->batch > 0 ? o->batch : 1));
        lo.epochs = (int)ceil(rc->local_epochs);
        lo.steps = steps < 1 ? 1 : steps > 1e9 ? 1000000000 : (int)steps;
    }
    r = fl_train(a, w, global, ds, &lo, loss, err);
    if (r) {
        cit_free(w);
        return r;
    }
    if (rc->weight_cap > 0)
        weight = (double)ds->n < rc->weight_cap ? (double)ds->n / rc->weight_cap : 1;
    for (size_t i = 0; i < d; i++) w[i] -= global[i];
    fl_clip(w, d, rc->clip);
    if (rc->noise > 0) fl_dp_noise(w, d, rc->noise);
    for (size_t i = 0; i < d; i++) w[i] = (float)(w[i] * weight);
    w[d] = (float)weight;
    fl_quantize(w, d + 1, fl_round_scale(rc), round_bound(rc), out);
    cit_free(w);
    return 0;
}

int fl_server_update(const struct fl_round_cfg *rc, struct fl_server_opt *so, float *global,
                     const uint32_t *sum, size_t d, struct cit_err *err)
{
    double scale = fl_round_scale(rc), total = (double)(int32_t)sum[d] / scale;
    float *u;
    if (!(total > 1e-9))
        return cit_err_set(err, CIT_ERANGE, "the round's total weight is %g: nothing to average",
                           total);
    u = cit_malloc((d ? d : 1) * sizeof(float));
    if (!u) return CIT_ENOMEM;
    for (size_t i = 0; i < d; i++) u[i] = (float)((double)(int32_t)sum[i] / scale / total);
    fl_server_opt_apply(so, global, u);
    cit_free(u);
    return 0;
}
