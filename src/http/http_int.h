/* Internals of the http module shared between its files. */
#ifndef CITADEL_HTTP_INT_H
#define CITADEL_HTTP_INT_H

#include <jansson.h>
#include <pthread.h>

#include "citadel/engine.h"
#include "citadel/http.h"
#include "citadel/sched.h"

/* ---- endpoints (metrics labels and scopes) ---- */

enum http_ep {
    EP_CHAT,
    EP_COMPLETIONS,
    EP_MODELS,
    EP_HEALTH,
    EP_READY,
    EP_METRICS,
    EP_USAGE,
    EP_DECIDE,
    EP_OTHER,
    EP_N
};
const char *http_ep_name(enum http_ep ep);

/* ---- metrics (metrics.c) ---- */

#define MET_STATUS_SLOTS 24
#define MET_BUCKETS      12

struct met_hist {
    uint64_t counts[MET_BUCKETS]; /* cumulative counts are computed when rendered */
    uint64_t n;
    double sum;
};

struct met_model {
    uint64_t requests, tokens_in, tokens_out;
    struct met_hist ttft, tpot; /* time to first token, time per output token */
};

struct met_gauges { /* read from the scheduler when rendering */
    int queued, active;
    int64_t kv_used, kv_capacity;
};

struct metrics {
    pthread_mutex_t mu;
    struct {
        int status;
        uint64_t n;
    } req[EP_N][MET_STATUS_SLOTS];
    struct met_model model[HTTP_MAX_MODELS];
    uint64_t rejected_queue_full, dropped_slow, disconnects;
};

void met_init(struct metrics *m);
void met_destroy(struct metrics *m);
void met_request(struct metrics *m, enum http_ep ep, int status);
void met_generation(struct metrics *m, int model, int n_in, int n_out, double ttft_s,
                    double decode_s);
void met_count(struct metrics *m, uint64_t *counter); /* one more, under the lock */
int met_render(struct metrics *m, struct cit_buf *out, const char *const *model_ids,
               const struct met_gauges *g, int n_models, int inflight);

/* ---- request parsing and JSON (api.c) ---- */

#define API_MAX_STOPS SCHED_MAX_STOPS

/* A parse error: HTTP status, OpenAI error type and code, the field. */
struct api_err {
    int status;
    const char *type; /* invalid_request_error, ... */
    const char *code; /* NULL or a code string */
    char param[64];   /* the field, "" when none */
    char msg[400];
};

struct api_req {
    int chat; /* /v1/chat/completions (else /v1/completions) */
    const char *model;
    /* chat: messages; completions: prompt text or token ids */
    struct eng_chat_msg *msgs;
    int n_msgs;
    char **owned; /* message texts joined from parts */
    int n_owned;
    const char *prompt;
    int32_t *prompt_ids;
    int n_prompt_ids;
    int max_tokens; /* 0: not given */
    int stream, include_usage;
    int has_seed;
    struct eng_sampler_params sp;
    const char *stops[API_MAX_STOPS];
    int n_stops;
    json_t *root; /* strings above point into it */
};

int api_parse(const char *body, size_t len, int chat, struct api_req *r, struct api_err *e);
void api_req_free(struct api_req *r);
void api_error_json(struct cit_buf *out, const struct api_err *e);
/* Formats an OpenAI error body in out. */
void api_error_simple(struct cit_buf *out, const char *type, const char *code, const char *param,
                      const char *msg);

#endif
