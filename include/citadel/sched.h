/*
 * sched: a request queue and continuous batching over the engine.
 *
 * One worker thread owns the model's compute. Each step it admits queued
 * requests into free slots, then builds one batch from every active slot:
 * a chunk of prompt for slots still prefilling, the last sampled token for
 * slots decoding. It runs the batch through eng_batch_eval, samples each
 * slot's next token, and reports text to the request's callback (whole
 * UTF-8 characters, stop strings held back until they cannot match).
 * A finished or cancelled request frees its slot for the next one at once.
 * Embedding requests go around the slots (sched_req.embed).
 *
 * Callbacks run on the worker thread and must not block for long; they may
 * call sched_cancel.
 */
#ifndef CITADEL_SCHED_H
#define CITADEL_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "citadel/core.h"
#include "citadel/engine.h"

struct sched;

struct sched_opts {
    int max_active;    /* sequences decoded together (slots) */
    int max_queue;     /* requests waiting while every slot is busy; beyond, submit refuses */
    int n_ctx;         /* context per slot: prompt + generated tokens */
    int prefill_chunk; /* prompt tokens per slot per step */
};

#define SCHED_MAX_STOPS 8

struct sched_req {
    const int32_t *prompt; /* copied at submit */
    int n_prompt;
    int max_tokens;
    /* Embeddings (embed 1; max_tokens, sampling and stops unused): prompt
     * holds n_inputs inputs back to back, input_lens their lengths (copied
     * at submit); their vectors go to embd_out (n_inputs * n_embd floats,
     * the caller's until the callback's finish: STOP, or ERROR,
     * CANCELLED with nothing written), L2-normalised when normalize.
     * Embedding requests need no slot: between decode steps the worker
     * takes every one queued and runs their inputs together, as many to a
     * pass as fit. */
    int embed, n_inputs, normalize;
    const int *input_lens;
    float *embd_out;
    struct eng_sampler_params sampling;
    const char *stops[SCHED_MAX_STOPS]; /* copied at submit */
    int n_stops;
    /* A finished grammar the answer must follow (NULL: none), referenced
     * at submit. Each step samples only from the tokens it allows; the
     * request finishes (STOP) the moment the value is complete, and with
     * ERROR should no token of the vocabulary be able to continue it. */
    struct eng_gram *grammar;
};

enum sched_finish {
    SCHED_FINISH_NONE,      /* not finished: more text follows */
    SCHED_FINISH_STOP,      /* end-of-generation token or a stop string */
    SCHED_FINISH_LENGTH,    /* max_tokens reached */
    SCHED_FINISH_CANCELLED, /* sched_cancel or shutdown */
    SCHED_FINISH_ERROR,     /* the engine failed; text so far is valid */
};

/* Called with new text (possibly empty) and the token that produced it
 * (-1 when none); finish says whether this is the last call. */
typedef void (*sched_cb)(void *user, int32_t token, const char *text, size_t len,
                         enum sched_finish finish);

int sched_new(const struct eng_model *m, struct cit_pool *pool, const struct sched_opts *o,
              struct sched **out /* out */);
/* Cancels what is queued or running (their callbacks get CANCELLED) and
 * waits for the worker to stop; later submits are refused (CIT_EOVERFLOW).
 * The scheduler stays valid for sched_submit, sched_cancel and
 * sched_get_stats until sched_free. Idempotent. */
void sched_stop(struct sched *s);
/* sched_stop, then frees everything. */
void sched_free(struct sched *s);

/* Queues a request. CIT_EOVERFLOW when the queue is full (the caller
 * answers 429), CIT_ERANGE when the prompt plus max_tokens cannot fit a
 * slot's context, CIT_EINVAL for bad sampling parameters. */
int sched_submit(struct sched *s, const struct sched_req *r, sched_cb cb, void *user,
                 uint64_t *id /* out */);
/* Ends a request early (a client that went away); its slot is freed before
 * the next step. Unknown or finished ids are ignored. */
void sched_cancel(struct sched *s, uint64_t id);

struct sched_stats {
    int queued, active;
    uint64_t steps, rows;
    int64_t kv_used;     /* tokens held in the active slots' KV caches */
    int64_t kv_capacity; /* max_active * n_ctx */
};
void sched_get_stats(struct sched *s, struct sched_stats *out /* out */);

#endif
