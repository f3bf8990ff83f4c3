/* sched: continuous batching gives each request what it would get alone,
 * and queue limits, cancellation, stop strings and shutdown behave. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "citadel/sched.h"
#include "test.h"
#include "../src/engine/eng_int.h"

struct collected {
    pthread_mutex_t mu;
    int32_t toks[256];
    int n_toks;
    char text[4096];
    size_t len;
    enum sched_finish finish;
    int done;
    int block_first; /* the first callback waits for release */
    _Atomic int released, entered;
};

static void on_event(void *user, int32_t tok, const char *text, size_t len, enum sched_finish f)
{
    struct collected *c = user;
    if (c->block_first && !c->entered) {
        c->entered = 1;
        while (!c->released) usleep(1000);
    }
    pthread_mutex_lock(&c->mu);
    if (tok >= 0 && f != SCHED_FINISH_STOP && c->n_toks < 256) c->toks[c->n_toks++] = tok;
    if (len && c->len + len < sizeof(c->text)) {
        memcpy(c->text + c->len, text, len);
        c->len += len;
    }
    if (f != SCHED_FINISH_NONE) {
        c->finish = f;
        c->done = 1;
    }
    pthread_mutex_unlock(&c->mu);
}

static int wait_done(struct collected *c, int n)
{
    for (int ms = 0; ms < 60000; ms++) {
        int all = 1;
        for (int i = 0; i < n; i++) {
            pthread_mutex_lock(&c[i].mu);
            all &= c[i].done;
            pthread_mutex_unlock(&c[i].mu);
        }
        if (all) return 1;
        usleep(1000);
    }
    return 0;
}

/* Greedy tokens of one prompt, alone, through eng_seq_eval. */
static int greedy_alone(const struct eng_model *m, const int32_t *p, int n, int max, int32_t *out)
{
    struct eng_seq *s;
    float *l = calloc(512, sizeof(float));
    int got = 0;
    if (eng_seq_new(m, n + max, &s)) return -1;
    if (eng_seq_eval(s, NULL, p, n, l, 0)) return -1;
    while (got < max) {
        int32_t best = 0;
        for (int v = 1; v < 512; v++)
            if (l[v] > l[best]) best = v;
        if (eng_token_is_eog(m, best)) break;
        out[got++] = best;
        if (got == max || eng_seq_eval(s, NULL, &best, 1, l, 0)) break;
    }
    eng_seq_free(s);
    free(l);
    return got;
}

static struct sched_req greedy_req(const int32_t *p, int n, int max)
{
    struct sched_req r;
    memset(&r, 0, sizeof(r));
    r.prompt = p, r.n_prompt = n, r.max_tokens = max;
    eng_sampler_defaults(&r.sampling);
    r.sampling.temperature = 0;
    return r;
}

static const char *prompts[8] = {"Once upon a time",
                                 "Lily and Tom went to the park. They saw a big",
                                 "The little dog was sad because",
                                 "One day, a cat",
                                 "The sun was shining and",
                                 "Tim had a red ball.",
                                 "Mom said",
                                 "They played all day and"};

void test_sched_matches_alone(void)
{
    struct eng_model *m;
    struct cit_err err;
    struct cit_pool *pool;
    struct sched *s;
    struct sched_opts o = {4, 16, 96, 8}; /* 4 slots for 8 requests: some wait */
    static struct collected c[8];
    int32_t p[8][64];
    int np[8];
    struct sched_stats st;
    CHECKF(eng_model_load(t_model_path("stories260K.gguf"), &m, &err) == 0, "%s", err.msg);
    CHECK(cit_pool_create(2, &pool) == 0);
    CHECK(sched_new(m, pool, &o, &s) == 0);
    for (int i = 0; i < 8; i++) {
        struct sched_req r;
        uint64_t id;
        memset(&c[i], 0, sizeof(c[i]));
        pthread_mutex_init(&c[i].mu, NULL);
        CHECK(eng_tokenize(m, prompts[i], strlen(prompts[i]), 1, 0, p[i], 64, &np[i]) == 0);
        r = greedy_req(p[i], np[i], 40);
        CHECK(sched_submit(s, &r, on_event, &c[i], &id) == 0);
    }
    CHECK(wait_done(c, 8));
    sched_get_stats(s, &st);
    for (int i = 0; i < 8; i++) {
        int32_t want[64];
        int n = greedy_alone(m, p[i], np[i], 40, want);
        CHECKF(c[i].n_toks == n && !memcmp(c[i].toks, want, (size_t)n * sizeof(int32_t)),
               "request %d: %d tokens batched, %d alone, or different ids", i, c[i].n_toks, n);
        CHECK(c[i].finish == (n == 40 ? SCHED_FINISH_LENGTH : SCHED_FINISH_STOP));
        {
            char txt[4096];
            size_t tl = 0;
            for (int k = 0; k < n; k++)
                tl += (size_t)eng_token_piece(m, want[k], 0, txt + tl, sizeof(txt) - tl);
            CHECKF(tl == c[i].len && !memcmp(txt, c[i].text, tl), "request %d text differs", i);
        }
    }
    /* batching happened: fewer steps than rows */
    CHECKF(st.steps < st.rows, "steps %llu rows %llu", (unsigned long long)st.steps,
           (unsigned long long)st.rows);
    t_note("8 requests, 4 slots: %llu steps for %llu rows; every request equals its solo run",
           (unsigned long long)st.steps, (unsigned long long)st.rows);
    sched_free(s);
    cit_pool_free(pool);
    eng_model_free(m);
    for (int i = 0; i < 8; i++) pthread_mutex_destroy(&c[i].mu);
}

void test_sched_limits(void)
{
    struct eng_model *m;
    struct cit_err err;
    struct sched *s;
    struct sched_opts o = {1, 2, 64, 8};
    static struct collected c[6];
    int32_t p[8];
    int np, accepted = 0, refused = 0;
    uint64_t ids[6];
    CHECKF(eng_model_load(t_model_path("stories260K.gguf"), &m, &err) == 0, "%s", err.msg);
    CHECK(sched_new(m, NULL, &o, &s) == 0);
    CHECK(eng_tokenize(m, "Once upon a time", 16, 1, 0, p, 8, &np) == 0);
    for (int i = 0; i < 6; i++) {
        memset(&c[i], 0, sizeof(c[i]));
        pthread_mutex_init(&c[i].mu, NULL);
    }
    /* The first request's first callback holds the worker, so the queue
     * cannot drain: exactly max_queue more are accepted. */
    c[0].block_first = 1;
    {
        struct sched_req r = greedy_req(p, np, 20);
        CHECK(sched_submit(s, &r, on_event, &c[0], &ids[0]) == 0);
        while (!c[0].entered) usleep(1000);
        for (int i = 1; i < 6; i++) {
            int rc = sched_submit(s, &r, on_event, &c[i], &ids[i]);
            if (rc == 0)
                accepted++;
            else if (rc == CIT_EOVERFLOW)
                refused++, c[i].done = 1;
        }
        CHECKF(accepted == 2 && refused == 3, "accepted %d refused %d", accepted, refused);
        /* Cancel a queued one and the running one; let the worker go. */
        sched_cancel(s, ids[1]);
        sched_cancel(s, ids[0]);
        c[0].released = 1;
    }
    CHECK(wait_done(c, 6));
    CHECK(c[0].finish == SCHED_FINISH_CANCELLED && c[0].n_toks < 20);
    CHECK(c[1].finish == SCHED_FINISH_CANCELLED && c[1].n_toks == 0);
    CHECK(c[2].finish == SCHED_FINISH_LENGTH && c[2].n_toks == 20);
    /* Bad requests are refused at submit. */
    {
        struct sched_req r = greedy_req(p, np, 64); /* prompt + 64 > n_ctx 64 */
        uint64_t id;
        CHECK(sched_submit(s, &r, on_event, &c[5], &id) == CIT_ERANGE);
        r.max_tokens = 4;
        r.sampling.top_p = 0;
        CHECK(sched_submit(s, &r, on_event, &c[5], &id) == CIT_EINVAL);
        r.sampling.top_p = 1;
        p[1] = 100000;
        CHECK(sched_submit(s, &r, on_event, &c[5], &id) == CIT_ERANGE);
    }
    sched_free(s);
    eng_model_free(m);
    for (int i = 0; i < 6; i++) pthread_mutex_destroy(&c[i].mu);
}

void test_sched_stop_and_shutdown(void)
{
    struct eng_model *m;
    struct cit_err err;
    struct sched *s;
    struct sched_opts o = {2, 8, 128, 16};
    static struct collected c[4];
    int32_t p[8];
    int np;
    uint64_t id;
    CHECKF(eng_model_load(t_model_path("stories260K.gguf"), &m, &err) == 0, "%s", err.msg);
    CHECK(sched_new(m, NULL, &o, &s) == 0);
    CHECK(eng_tokenize(m, "Once upon a time", 16, 1, 0, p, 8, &np) == 0);
    for (int i = 0; i < 4; i++) {
        memset(&c[i], 0, sizeof(c[i]));
        pthread_mutex_init(&c[i].mu, NULL);
    }
    /* The greedy text is ", there was a little girl named Lily...":
     * the stop string cuts it just before "Lily". */
    {
        struct sched_req r = greedy_req(p, np, 40);
        r.stops[0] = "Lily";
        r.n_stops = 1;
        CHECK(sched_submit(s, &r, on_event, &c[0], &id) == 0);
        CHECK(wait_done(c, 1));
        c[0].text[c[0].len] = 0;
        CHECKF(c[0].finish == SCHED_FINISH_STOP &&
                   !strcmp(c[0].text, ", there was a little girl named "),
               "'%s'", c[0].text);
    }
    /* Shutdown with work outstanding: everything is reported cancelled. */
    c[1].block_first = 1;
    {
        struct sched_req r = greedy_req(p, np, 100);
        CHECK(sched_submit(s, &r, on_event, &c[1], &id) == 0);
        while (!c[1].entered) usleep(1000);
        CHECK(sched_submit(s, &r, on_event, &c[2], &id) == 0);
        CHECK(sched_submit(s, &r, on_event, &c[3], &id) == 0);
        c[1].released = 1;
        sched_free(s);
    }
    for (int i = 1; i < 4; i++)
        CHECKF(c[i].done &&
                   (c[i].finish == SCHED_FINISH_CANCELLED || c[i].finish == SCHED_FINISH_LENGTH),
               "request %d: done %d finish %d", i, c[i].done, c[i].finish);
    eng_model_free(m);
    for (int i = 0; i < 4; i++) pthread_mutex_destroy(&c[i].mu);
}
