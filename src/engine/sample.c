/*
 * Sampling: repetition penalty, then top-k, top-p and min-p on the
 * distribution at temperature 1, then temperature, then a draw from a
 * seeded xoshiro256** generator (reproducible for a given seed). Temperature
 * 0 is greedy and touches no random state.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eng_int.h"

struct cand {
    int32_t id;
    float logit;
    float p;
};

struct eng_sampler {
    struct eng_sampler_params p;
    int n_vocab;
    struct cand *c;              /* (n_vocab) */
    struct eng_logit_bias *bias; /* (p.n_logit_bias), p.logit_bias points here */
    int32_t *drawn;              /* (n_vocab) times each token was drawn; NULL: no penalties */
    uint64_t s[4];               /* xoshiro256** state */
};

void eng_sampler_defaults(struct eng_sampler_params *p)
{
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->frequency_penalty = p->presence_penalty = 0;
    p->logit_bias = NULL;
    p->n_logit_bias = 0;
    p->seed = 0;
}

int eng_sampler_new(const struct eng_sampler_params *p, int n_vocab, struct eng_sampler **out)
{
    struct eng_sampler *s;
    if (n_vocab <= 0 || !(p->temperature >= 0) || p->top_k < 0 || !(p->top_p > 0) || p->top_p > 1 ||
        !(p->min_p >= 0) || p->min_p > 1 || !(p->repeat_penalty > 0) ||
        !(p->frequency_penalty >= -2 && p->frequency_penalty <= 2) ||
        !(p->presence_penalty >= -2 && p->presence_penalty <= 2) || p->n_logit_bias < 0 ||
        (p->n_logit_bias && !p->logit_bias))
        return CIT_EINVAL;
    for (int i = 0; i < p->n_logit_bias; i++) {
        if (p->logit_bias[i].token < 0 || p->logit_bias[i].token >= n_vocab) return CIT_ERANGE;
        if (!(p->logit_bias[i].bias >= -100 && p->logit_bias[i].bias <= 100)) return CIT_EINVAL;
    }
    s = cit_calloc(1, sizeof(*s));
    if (!s) return CIT_ENOMEM;
    s->c = cit_calloc((size_t)n_vocab, sizeof(*s->c));
    if (p->n_logit_bias) s->bias = cit_calloc((size_t)p->n_logit_bias, sizeof(*s->bias));
    if (p->frequency_penalty != 0 || p->presence_penalty != 0)
        s->drawn = cit_calloc((size_t)n_vocab, sizeof(*s->drawn));
    if (!s->c || (p->n_logit_bias && !s->bias) ||
        ((p->frequency_penalty != 0 || p->presence_penalty != 0) && !s->drawn)) {
        eng_sampler_free(s);
        return CIT_ENOMEM;
    }
    s->p = *p;
    if (p->n_logit_bias) memcpy(s->bias, p->logit_bias, (size_t)p->n_logit_bias * sizeof(*s->bias));
    s->p.logit_bias = s->bias;
    s->n_vocab = n_vocab;
    cit_rng_seed(s->s, p->seed);
    *out = s;
    return 0;
}

void eng_sampler_free(struct eng_sampler *s)
{
    if (!s) return;
    cit_free(s->c);
    cit_free(s->bias);
    cit_free(s->drawn);
    cit_free(s);
}

static int by_logit_desc(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return x->id - y->id;
}

/* Moves the k largest to the front, sorted (k << n: a bounded min-heap). */
static void top_k_select(struct cand *c, int n, int k)
{
    /* Simple selection by partial quicksort is enough here: nth-element on
     * logits, then a sort of the first k. */
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = c[(lo + hi) / 2].logit;
        int i = lo, j = hi;
        while (i <= j) {
            while (c[i].logit > pivot) i++;
            while (c[j].logit < pivot) j--;
            if (i <= j) {
                struct cand t = c[i];
                c[i] = c[j];
                c[j] = t;
                i++, j--;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            break;
    }
    qsort(c, (size_t)k, sizeof(*c), by_logit_desc);
}

static int32_t pick(struct eng_sampler *s, float *logits, const int32_t *history, int n_history);

int32_t eng_sample(struct eng_sampler *s, float *logits, const int32_t *history, int n_history)
{
    const struct eng_sampler_params *p = &s->p;
    int32_t t;
    for (int i = 0; i < p->n_logit_bias; i++)
        logits[p->logit_bias[i].token] += p->logit_bias[i].bias;
    if (s->drawn)
        for (int i = 0; i < s->n_vocab; i++)
            if (s->drawn[i])
                logits[i] -= (float)s->drawn[i] * p->frequency_penalty + p->presence_penalty;
    t = pick(s, logits, history, n_history);
    if (s->drawn && t >= 0 && t < s->n_vocab) s->drawn[t]++;
    return t;
}

static int32_t pick(struct eng_sampler *s, float *logits, const int32_t *history, int n_history)
{
    const struct eng_sampler_params *p = &s->p;
    int n = s->n_vocab, keep;
    double sum = 0, cum = 0, r;

    if (p->repeat_penalty != 1.0f && history) {
        int from = n_history > p->repeat_last_n ? n_history - p->repeat_last_n : 0;
        /* Penalise each distinct token once, however often it occurred. */
        for (int i = from; i < n_history; i++) {
            int32_t t = history[i], seen = 0;
            if (t < 0 || t >= n) continue;
            for (int j = from; j < i && !seen; j++) seen = history[j] == t;
            if (seen) continue;
            logits[t] =
                logits[t] > 0 ? logits[t] / p->repeat_penalty : logits[t] * p->repeat_penalty;
        }
    }
    if (p->temperature <= 0) {
        int32_t best = 0;
        for (int i = 1; i < n; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    if (p->top_p >= 1.0f && (p->top_k == 0 || p->top_k >= n)) {
        /* No ranking needed (plain or min-p sampling, the API default):
         * one pass for the maximum, one for the sum, one to draw. Sorting
         * 32k candidates per token would cost more than a decode step's
         * share of the forward pass at 16 sequences. */
        float mx = logits[0], cut;
        int32_t last = 0;
        for (int i = 1; i < n; i++)
            if (logits[i] > mx) mx = logits[i];
        cut = p->min_p > 0 ? mx + logf(p->min_p) : -INFINITY;
        for (int i = 0; i < n; i++)
            if (logits[i] >= cut) sum += expf((logits[i] - mx) / p->temperature);
        r = (double)(cit_rng_next(s->s) >> 11) * 0x1.0p-53 * sum;
        for (int i = 0; i < n; i++)
            if (logits[i] >= cut) {
                float e = expf((logits[i] - mx) / p->temperature);
                cum += e;
                if (e > 0) last = i; /* never a token masked to -inf */
                if (r < cum) return i;
            }
        return last;
    }
    for (int i = 0; i < n; i++) s->c[i].id = i, s->c[i].logit = logits[i];
    keep = n;
    if (p->top_k > 0 && p->top_k < n) {
        top_k_select(s->c, n, p->top_k);
        keep = p->top_k;
    } else {
        qsort(s->c, (size_t)n, sizeof(*s->c), by_logit_desc);
    }
    /* Distribution at temperature 1 for the cut-offs. */
    for (int i = 0; i < keep; i++) sum += s->c[i].p = expf(s->c[i].logit - s->c[0].logit);
    if (p->top_p < 1.0f) {
        int i;
        for (i = 0; i < keep; i++) {
            cum += s->c[i].p / sum;
            if (cum >= p->top_p) break;
        }
        keep = i + 1 < keep ? i + 1 : keep;
    }
    if (p->min_p > 0) {
        int i;
        for (i = 1; i < keep; i++)
            if (s->c[i].p < p->min_p * s->c[0].p) break;
        keep = i;
    }
    sum = 0;
    for (int i = 0; i < keep; i++)
        sum += s->c[i].p = expf((s->c[i].logit - s->c[0].logit) / p->temperature);
    while (keep > 1 && s->c[keep - 1].p == 0) keep--; /* masked (-inf) tokens, at the end */
    r = (double)(cit_rng_next(s->s) >> 11) * 0x1.0p-53 * sum;
    cum = 0;
    for (int i = 0; i < keep; i++) {
        cum += s->c[i].p;
        if (r < cum) return s->c[i].id;
    }
    return s->c[keep - 1].id;
}

int eng_stop_check(const char *const *stops, int n_stops, const char *text, size_t len,
                   size_t *emit)
{
    size_t first = len, hold = 0;
    int hit = 0;
    for (int i = 0; i < n_stops; i++) {
        size_t L = strlen(stops[i]);
        const char *p;
        if (!L) continue;
        p = memmem(text, len, stops[i], L);
        if (p && (size_t)(p - text) < first) {
            first = (size_t)(p - text);
            hit = 1;
        }
    }
    if (hit) {
        *emit = first;
        return 1;
    }
    /* Hold back the longest tail that is a proper prefix of a stop string. */
    for (int i = 0; i < n_stops; i++) {
        size_t L = strlen(stops[i]);
        for (size_t k = L > 0 ? L - 1 : 0; k > hold; k--)
            if (k <= len && !memcmp(text + len - k, stops[i], k)) {
                hold = k;
                break;
            }
    }
    *emit = len - hold;
    return 0;
}
