/*
 * Continuous batching (see include/citadel/sched.h).
 *
 * Locking: the mutex guards the queue, the cancel list and the counters.
 * Slots belong to the worker thread alone, so engine calls and callbacks
 * run without the lock held.
 */
#include "citadel/sched.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct request {
    uint64_t id;
    int32_t *prompt;
    int n_prompt, max_tokens;
    struct eng_sampler *smp;
    struct eng_gram *gram; /* NULL: unconstrained */
    struct eng_gram_state *gs;
    uint32_t *mask; /* (n_vocab + 31) / 32 words */
    char *stops[SCHED_MAX_STOPS];
    int n_stops;
    sched_cb cb;
    void *user;
    /* embeddings */
    int embed, n_inputs, normalize;
    int *input_lens;
    float *embd_out;
    struct request *next;
};

struct slot {
    struct request *req; /* NULL: free */
    struct eng_seq *seq;
    int prefilled; /* prompt tokens already fed */
    int32_t last;  /* sampled token to feed next */
    int n_gen;
    int32_t *hist; /* (n_ctx) prompt + generated, for the repetition penalty */
    int n_hist;
    struct eng_detok dt;
    struct cit_buf text; /* generated text; [0, emitted) already reported */
    size_t emitted;
    int cancel;
};

struct sched {
    const struct eng_model *m;
    struct cit_pool *pool;
    struct sched_opts o;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int started, stop;
    struct request *qhead, *qtail;
    int n_queued;
    uint64_t next_id;
    uint64_t *cancels; /* (max_queue + max_active) ids to cancel */
    int n_cancels;
    struct slot *slots;
    int n_active;
    struct eng_batch *batch;
    struct eng_batch_row *rows;
    int *row_slot;    /* slot of each row that asked for logits */
    int32_t *sampled; /* the token drawn for each of those rows */
    float *logits;    /* (max_active, n_vocab) */
    uint64_t steps, n_rows;
    int64_t kv_used;               /* as of the last step */
    struct eng_embedder *embedder; /* an embedding model's; NULL otherwise */
    struct eng_embed_in *ins;      /* (max_queue + 1) inputs of one call, grown as needed */
    int ins_cap;
    pthread_mutex_t gv_mu;     /* builds gv once, on the first grammar */
    struct eng_gram_vocab *gv; /* read by the worker once a request with a grammar is in */
};

static void req_free(struct request *r)
{
    if (!r) return;
    for (int i = 0; i < r->n_stops; i++) cit_free(r->stops[i]);
    eng_sampler_free(r->smp);
    eng_gram_state_free(r->gs);
    eng_gram_free(r->gram);
    cit_free(r->mask);
    cit_free(r->prompt);
    cit_free(r->input_lens);
    cit_free(r);
}

/* ---- the worker's side ---- */

static void slot_release(struct sched *s, struct slot *sl)
{
    req_free(sl->req);
    sl->req = NULL;
    sl->cancel = 0;
    s->n_active--;
}

/* Reports the rest of the text (up to a stop string) and the end. */
static void slot_finish(struct sched *s, struct slot *sl, int32_t tok, enum sched_finish why)
{
    size_t emit = sl->text.len;
    const char *text = sl->text.p ? sl->text.p : "";
    if (why == SCHED_FINISH_STOP || why == SCHED_FINISH_LENGTH) {
        char tail[8];
        int n = eng_detok_flush(&sl->dt, tail, sizeof(tail));
        if (n > 0) cit_buf_add(&sl->text, tail, (size_t)n);
        text = sl->text.p ? sl->text.p : "";
        emit = sl->text.len;
        eng_stop_check((const char *const *)sl->req->stops, sl->req->n_stops, text, sl->text.len,
                       &emit);
    }
    if (why == SCHED_FINISH_CANCELLED || emit < sl->emitted) emit = sl->emitted;
    sl->req->cb(sl->req->user, tok, text + sl->emitted, emit - sl->emitted, why);
    pthread_mutex_lock(&s->mu);
    slot_release(s, sl);
    pthread_mutex_unlock(&s->mu);
}

static void slot_start(struct sched *s, struct slot *sl, struct request *r)
{
    sl->req = r;
    eng_seq_reset(sl->seq);
    sl->prefilled = 0;
    sl->n_gen = 0;
    memcpy(sl->hist, r->prompt, (size_t)r->n_prompt * sizeof(int32_t));
    sl->n_hist = r->n_prompt;
    memset(&sl->dt, 0, sizeof(sl->dt));
    sl->text.len = sl->emitted = 0;
    sl->cancel = 0;
    s->n_active++;
}

/* After a slot's token was sampled: report text, and decide whether it ends. */
static void slot_step(struct sched *s, struct slot *sl, int32_t tok)
{
    struct request *r = sl->req;
    char piece[8192];
    size_t emit;
    int n;
    if (eng_token_is_eog(s->m, tok)) {
        slot_finish(s, sl, tok, SCHED_FINISH_STOP);
        return;
    }
    sl->hist[sl->n_hist++] = tok;
    sl->n_gen++;
    n = eng_detok_push(s->m, &sl->dt, tok, piece, sizeof(piece));
    if (n < 0 || cit_buf_add(&sl->text, piece, (size_t)n)) {
        slot_finish(s, sl, tok, SCHED_FINISH_ERROR);
        return;
    }
    if (eng_stop_check((const char *const *)r->stops, r->n_stops, sl->text.p, sl->text.len,
                       &emit)) {
        sl->text.len = emit; /* cut at the stop string */
        slot_finish(s, sl, tok, SCHED_FINISH_STOP);
        return;
    }
    if (r->gs && eng_gram_done(r->gs)) { /* the value is whole: nothing may follow */
        slot_finish(s, sl, tok, SCHED_FINISH_STOP);
        return;
    }
    if (sl->n_gen >= r->max_tokens) {
        slot_finish(s, sl, tok, SCHED_FINISH_LENGTH);
        return;
    }
    /* every token is reported, with the text it made safe to show (may be
     * empty: half a character, or a possible stop string) */
    r->cb(r->user, tok, sl->text.p + sl->emitted, emit - sl->emitted, SCHED_FINISH_NONE);
    sl->emitted = emit;
    sl->last = tok;
}

/* Sampling every row that asked for logits, split across the pool: each
 * request has its own sampler and history, and at 16 sequences drawing
 * from 32k candidates each was a serial stretch of every step. */
struct sample_job {
    struct sched *s;
    int n, n_vocab;
};

static void sample_worker(void *arg, int ith, int nth)
{
    const struct sample_job *j = arg;
    struct sched *s = j->s;
    for (int k = ith; k < j->n; k += nth) {
        struct slot *sl = &s->slots[s->row_slot[k]];
        struct request *r = sl->req;
        float *logits = s->logits + (size_t)k * (size_t)j->n_vocab;
        if (r->gs) {
            /* only what the grammar allows: the rest at -inf */
            if (eng_gram_mask(s->gv, r->gs, r->mask) <= 0) {
                s->sampled[k] = -1; /* nothing can continue the value */
                continue;
            }
            for (int w = 0; w < (j->n_vocab + 31) / 32; w++) {
                uint32_t off = ~r->mask[w];
                for (; off; off &= off - 1) {
                    int t = w * 32 + __builtin_ctz(off);
                    if (t < j->n_vocab) logits[t] = -INFINITY;
                }
            }
        }
        s->sampled[k] = eng_sample(r->smp, logits, sl->hist, sl->n_hist);
        if (r->gs && eng_gram_feed_token(s->gv, r->gs, s->sampled[k])) s->sampled[k] = -1;
    }
}

/* Every embedding request taken from the queue (a list), their inputs in
 * one eng_embed call; each reported at once, then freed. */
static void run_embeddings(struct sched *s, struct request *list)
{
    const int E = eng_model_hparams(s->m)->n_embd;
    int n = 0, rc = 0, rows = 0, norm = list->normalize, all_norm = 1;
    for (struct request *r = list; r; r = r->next) {
        n += r->n_inputs;
        all_norm &= r->normalize == norm;
    }
    if (n > s->ins_cap) {
        struct eng_embed_in *v = cit_realloc(s->ins, (size_t)n * sizeof(*v));
        if (v) s->ins = v, s->ins_cap = n;
    }
    if (n > s->ins_cap || !s->embedder) {
        rc = CIT_ENOMEM;
    } else if (all_norm) {
        n = 0;
        for (struct request *r = list; r; r = r->next)
            for (int i = 0, off = 0; i < r->n_inputs; off += r->input_lens[i++])
                s->ins[n++] = (struct eng_embed_in){r->prompt + off, r->input_lens[i],
                                                    r->embd_out + (size_t)i * (size_t)E};
        rc = eng_embed(s->embedder, s->pool, s->ins, n, norm);
    } else { /* requests that differ in normalisation: one call each */
        for (struct request *r = list; r && !rc; r = r->next) {
            n = 0;
            for (int i = 0, off = 0; i < r->n_inputs; off += r->input_lens[i++])
                s->ins[n++] = (struct eng_embed_in){r->prompt + off, r->input_lens[i],
                                                    r->embd_out + (size_t)i * (size_t)E};
            rc = eng_embed(s->embedder, s->pool, s->ins, n, r->normalize);
        }
    }
    for (struct request *r = list; r; r = r->next) rows += r->n_prompt;
    pthread_mutex_lock(&s->mu);
    s->steps++;
    s->n_rows += (uint64_t)rows;
    pthread_mutex_unlock(&s->mu);
    while (list) {
        struct request *r = list;
        list = r->next;
        r->cb(r->user, -1, "", 0, rc ? SCHED_FINISH_ERROR : SCHED_FINISH_STOP);
        req_free(r);
    }
}

static void *worker(void *arg)
{
    struct sched *s = arg;
    int n_vocab = eng_model_hparams(s->m)->n_vocab;
    for (;;) {
        int n = 0, nl = 0, rc;
        struct request *emb = NULL, **emb_tail = &emb;
        pthread_mutex_lock(&s->mu);
        for (;;) {
            /* Cancels: queued requests leave the queue (reported below,
             * without the lock), running ones are marked. */
            struct request *gone = NULL;
            for (int c = 0; c < s->n_cancels; c++) {
                struct request **pp = &s->qhead, *prev = NULL;
                for (; *pp; prev = *pp, pp = &(*pp)->next)
                    if ((*pp)->id == s->cancels[c]) {
                        struct request *r = *pp;
                        *pp = r->next;
                        if (s->qtail == r) s->qtail = prev;
                        s->n_queued--;
                        r->next = gone;
                        gone = r;
                        break;
                    }
                for (int i = 0; i < s->o.max_active; i++)
                    if (s->slots[i].req && s->slots[i].req->id == s->cancels[c])
                        s->slots[i].cancel = 1;
            }
            s->n_cancels = 0;
            if (s->stop)
                for (int i = 0; i < s->o.max_active; i++)
                    if (s->slots[i].req) s->slots[i].cancel = 1;
            /* embedding requests need no slot: all of them, in order */
            if (!s->stop)
                for (struct request **pp = &s->qhead, *prev = NULL; *pp;) {
                    struct request *r = *pp;
                    if (!r->embed) {
                        prev = r;
                        pp = &r->next;
                        continue;
                    }
                    *pp = r->next;
                    if (s->qtail == r) s->qtail = prev;
                    s->n_queued--;
                    r->next = NULL;
                    *emb_tail = r;
                    emb_tail = &r->next;
                }
            while (!s->stop && s->qhead && s->n_active < s->o.max_active) {
                struct request *r = s->qhead;
                s->qhead = r->next;
                if (!s->qhead) s->qtail = NULL;
                s->n_queued--;
                for (int i = 0; i < s->o.max_active; i++)
                    if (!s->slots[i].req) {
                        slot_start(s, &s->slots[i], r);
                        break;
                    }
            }
            if (gone) {
                pthread_mutex_unlock(&s->mu);
                while (gone) {
                    struct request *r = gone;
                    gone = r->next;
                    r->cb(r->user, -1, "", 0, SCHED_FINISH_CANCELLED);
                    req_free(r);
                }
                pthread_mutex_lock(&s->mu);
                continue;
            }
            if (s->n_active > 0 || emb || (s->stop && !s->qhead)) break;
            pthread_cond_wait(&s->cv, &s->mu);
        }
        if (s->stop && s->n_active == 0 && !emb) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        pthread_mutex_unlock(&s->mu);
        if (emb) {
            run_embeddings(s, emb);
            continue;
        }

        /* One batch from every active slot. */
        for (int i = 0; i < s->o.max_active; i++) {
            struct slot *sl = &s->slots[i];
            if (!sl->req) continue;
            if (sl->cancel) {
                slot_finish(s, sl, -1, SCHED_FINISH_CANCELLED);
                continue;
            }
            if (sl->prefilled < sl->req->n_prompt) {
                int k = sl->req->n_prompt - sl->prefilled;
                if (k > s->o.prefill_chunk) k = s->o.prefill_chunk;
                for (int j = 0; j < k; j++) {
                    int last = sl->prefilled + j + 1 == sl->req->n_prompt;
                    s->rows[n++] =
                        (struct eng_batch_row){sl->seq, sl->req->prompt[sl->prefilled + j], last};
                    if (last) s->row_slot[nl++] = i;
                }
                sl->prefilled += k;
            } else {
                s->rows[n++] = (struct eng_batch_row){sl->seq, sl->last, 1};
                s->row_slot[nl++] = i;
            }
        }
        if (!n) continue;
        rc = eng_batch_eval(s->batch, s->pool, s->rows, n, s->logits);
        {
            int64_t kv = 0;
            for (int i = 0; i < s->o.max_active; i++)
                if (s->slots[i].req) kv += eng_seq_pos(s->slots[i].seq);
            pthread_mutex_lock(&s->mu);
            s->steps++;
            s->n_rows += (uint64_t)n;
            s->kv_used = kv;
            pthread_mutex_unlock(&s->mu);
        }
        if (!rc) {
            struct sample_job sj = {s, nl, n_vocab};
            if (nl >= 4)
                cit_pool_run(s->pool, sample_worker, &sj);
            else
                sample_worker(&sj, 0, 1);
        }
        for (int j = 0; j < nl; j++) {
            struct slot *sl = &s->slots[s->row_slot[j]];
            if (rc || s->sampled[j] < 0)
                slot_finish(s, sl, -1, SCHED_FINISH_ERROR);
            else
                slot_step(s, sl, s->sampled[j]);
        }
    }
    return NULL;
}

/* ---- the callers' side ---- */

int sched_new(const struct eng_model *m, struct cit_pool *pool, const struct sched_opts *o,
              struct sched **out)
{
    struct sched *s;
    int n_vocab = eng_model_hparams(m)->n_vocab, rc = CIT_ENOMEM;
    if (o->max_active < 1 || o->max_active > 256 || o->max_queue < 0 || o->n_ctx < 2 ||
        o->prefill_chunk < 1 || (int64_t)o->max_active * o->prefill_chunk > 65536)
        return CIT_EINVAL;
    s = cit_calloc(1, sizeof(*s));
    if (!s) return CIT_ENOMEM;
    s->m = m;
    s->pool = pool;
    s->o = *o;
    s->next_id = 1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->gv_mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->slots = cit_calloc((size_t)o->max_active, sizeof(*s->slots));
    s->rows = cit_calloc((size_t)o->max_active * (size_t)o->prefill_chunk, sizeof(*s->rows));
    s->row_slot = cit_calloc((size_t)o->max_active, sizeof(int));
    s->sampled = cit_calloc((size_t)o->max_active, sizeof(int32_t));
    s->logits = cit_calloc((size_t)o->max_active * (size_t)n_vocab, sizeof(float));
    s->cancels = cit_calloc((size_t)(o->max_queue + o->max_active) + 1, sizeof(uint64_t));
    if (!s->slots || !s->rows || !s->row_slot || !s->sampled || !s->logits || !s->cancels)
        goto fail;
    {
        const struct eng_hparams *hp = eng_model_hparams(m);
        if (hp->pooling != ENG_POOL_NONE && hp->pooling != ENG_POOL_RANK &&
            (rc = eng_embedder_new(m, o->n_ctx, &s->embedder)))
            goto fail;
        if (!hp->causal) goto start; /* an encoder only embeds: no slots to decode in */
    }
    if ((rc = eng_batch_new(m, o->max_active * o->prefill_chunk, &s->batch))) goto fail;
    for (int i = 0; i < o->max_active; i++) {
        if ((rc = eng_seq_new(m, o->n_ctx, &s->slots[i].seq))) goto fail;
        s->slots[i].hist = cit_calloc((size_t)o->n_ctx, sizeof(int32_t));
        if (!s->slots[i].hist) {
            rc = CIT_ENOMEM;
            goto fail;
        }
    }
start:
    if (pthread_create(&s->thread, NULL, worker, s)) {
        rc = CIT_ENOMEM;
        goto fail;
    }
    s->started = 1;
    *out = s;
    return 0;
fail:
    sched_free(s);
    return rc;
}

void sched_stop(struct sched *s)
{
    if (!s || !s->started) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    /* queued requests are cancelled by the worker as it drains */
    for (struct request *r = s->qhead; r && s->n_cancels < s->o.max_queue + s->o.max_active;
         r = r->next)
        s->cancels[s->n_cancels++] = r->id;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    s->started = 0;
}

void sched_free(struct sched *s)
{
    if (!s) return;
    sched_stop(s);
    while (s->qhead) { /* only when the worker never started */
        struct request *r = s->qhead;
        s->qhead = r->next;
        req_free(r);
    }
    if (s->slots)
        for (int i = 0; i < s->o.max_active; i++) {
            req_free(s->slots[i].req);
            eng_seq_free(s->slots[i].seq);
            cit_free(s->slots[i].hist);
            cit_buf_free(&s->slots[i].text);
        }
    eng_batch_free(s->batch);
    eng_embedder_free(s->embedder);
    cit_free(s->ins);
    cit_free(s->slots);
    cit_free(s->rows);
    cit_free(s->row_slot);
    cit_free(s->sampled);
    cit_free(s->logits);
    cit_free(s->cancels);
    eng_gram_vocab_free(s->gv);
    pthread_mutex_destroy(&s->gv_mu);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    cit_free(s);
}

static int enqueue(struct sched *s, struct request *r, uint64_t *id);

/* An embedding request: every input within the embedder's reach. */
static int submit_embed(struct sched *s, const struct sched_req *q, sched_cb cb, void *user,
                        uint64_t *id)
{
    int n_vocab = eng_model_hparams(s->m)->n_vocab, total = 0;
    struct request *r;
    if (!s->embedder) return CIT_ENOTSUP;
    if (!cb || !q->embd_out || !q->input_lens || q->n_inputs < 1 || q->n_inputs > (1 << 16))
        return CIT_EINVAL;
    for (int i = 0; i < q->n_inputs; i++) {
        if (q->input_lens[i] < 1 || q->input_lens[i] > eng_embedder_max_input(s->embedder))
            return CIT_ERANGE;
        total += q->input_lens[i];
    }
    if (total != q->n_prompt) return CIT_EINVAL;
    for (int i = 0; i < q->n_prompt; i++)
        if (q->prompt[i] < 0 || q->prompt[i] >= n_vocab) return CIT_ERANGE;
    r = cit_calloc(1, sizeof(*r));
    if (!r) return CIT_ENOMEM;
    r->prompt = cit_malloc((size_t)q->n_prompt * sizeof(int32_t));
    r->input_lens = cit_malloc((size_t)q->n_inputs * sizeof(int));
    if (!r->prompt || !r->input_lens) {
        req_free(r);
        return CIT_ENOMEM;
    }
    memcpy(r->prompt, q->prompt, (size_t)q->n_prompt * sizeof(int32_t));
    memcpy(r->input_lens, q->input_lens, (size_t)q->n_inputs * sizeof(int));
    r->n_prompt = q->n_prompt;
    r->embed = 1;
    r->n_inputs = q->n_inputs;
    r->normalize = q->normalize;
    r->embd_out = q->embd_out;
    r->cb = cb;
    r->user = user;
    return enqueue(s, r, id);
}

int sched_submit(struct sched *s, const struct sched_req *q, sched_cb cb, void *user, uint64_t *id)
{
    struct request *r;
    int n_vocab = eng_model_hparams(s->m)->n_vocab, rc;
    if (q->embed) return submit_embed(s, q, cb, user, id);
    if (!s->batch) return CIT_EINVAL; /* an encoder does not generate */
    if (!cb || q->n_prompt < 1 || q->max_tokens < 1 || q->n_stops < 0 ||
        q->n_stops > SCHED_MAX_STOPS)
        return CIT_EINVAL;
    if ((int64_t)q->n_prompt + q->max_tokens > s->o.n_ctx) return CIT_ERANGE;
    for (int i = 0; i < q->n_prompt; i++)
        if (q->prompt[i] < 0 || q->prompt[i] >= n_vocab) return CIT_ERANGE;
    r = cit_calloc(1, sizeof(*r));
    if (!r) return CIT_ENOMEM;
    r->prompt = cit_malloc((size_t)q->n_prompt * sizeof(int32_t));
    if (!r->prompt) {
        req_free(r);
        return CIT_ENOMEM;
    }
    memcpy(r->prompt, q->prompt, (size_t)q->n_prompt * sizeof(int32_t));
    r->n_prompt = q->n_prompt;
    r->max_tokens = q->max_tokens;
    r->cb = cb;
    r->user = user;
    for (int i = 0; i < q->n_stops; i++) {
        if (!q->stops[i] || !*q->stops[i]) {
            req_free(r);
            return CIT_EINVAL;
        }
        r->stops[i] = cit_strndup(q->stops[i], strlen(q->stops[i]));
        if (!r->stops[i]) {
            req_free(r);
            return CIT_ENOMEM;
        }
        r->n_stops = i + 1;
    }
    if ((rc = eng_sampler_new(&q->sampling, n_vocab, &r->smp))) {
        req_free(r);
        return rc;
    }
    if (q->grammar) {
        pthread_mutex_lock(&s->gv_mu); /* the vocabulary's trie, once per model */
        rc = s->gv ? 0 : eng_gram_vocab_new(s->m, &s->gv);
        pthread_mutex_unlock(&s->gv_mu);
        r->gram = eng_gram_ref(q->grammar);
        if (!rc) rc = eng_gram_state_new(r->gram, &r->gs);
        if (!rc && !(r->mask = cit_calloc((size_t)(n_vocab + 31) / 32, sizeof(uint32_t))))
            rc = CIT_ENOMEM;
        if (rc) {
            req_free(r);
            return rc;
        }
    }
    return enqueue(s, r, id);
}

/* Queues r (taking it), or refuses: CIT_EOVERFLOW when full or stopping. */
static int enqueue(struct sched *s, struct request *r, uint64_t *id)
{
    pthread_mutex_lock(&s->mu);
    /* requests about to take a free slot do not count against the queue */
    if (s->stop || s->n_queued >= s->o.max_queue + (s->o.max_active - s->n_active)) {
        pthread_mutex_unlock(&s->mu);
        req_free(r);
        return CIT_EOVERFLOW;
    }
    r->id = s->next_id++;
    if (s->qtail)
        s->qtail->next = r;
    else
        s->qhead = r;
    s->qtail = r;
    s->n_queued++;
    *id = r->id;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void sched_cancel(struct sched *s, uint64_t id)
{
    pthread_mutex_lock(&s->mu);
    if (s->n_cancels < s->o.max_queue + s->o.max_active) s->cancels[s->n_cancels++] = id;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void sched_get_stats(struct sched *s, struct sched_stats *out)
{
    pthread_mutex_lock(&s->mu);
    out->queued = s->n_queued;
    out->active = s->n_active;
    out->steps = s->steps;
    out->rows = s->n_rows;
    out->kv_used = s->n_active ? s->kv_used : 0;
    out->kv_capacity = (int64_t)s->o.max_active * s->o.n_ctx;
    pthread_mutex_unlock(&s->mu);
}
