/*
 * Prometheus metrics in the text exposition format (version 0.0.4).
 *
 * Counters and histograms are updated under one mutex: a request touches it
 * a handful of times, far below the cost of a token. Gauges (queue depth,
 * active sequences, KV-cache use) are read from the schedulers when
 * /metrics is scraped.
 */
#include <stdio.h>
#include <string.h>

#include "http_int.h"

/* Seconds; the same bounds serve both latency histograms. */
static const double bounds[MET_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                           0.1,   0.25,   0.5,   1,    2.5,   10};

const char *http_ep_name(enum http_ep ep)
{
    static const char *const names[EP_N] = {"chat_completions",
                                            "completions",
                                            "embeddings",
                                            "models",
                                            "healthz",
                                            "readyz",
                                            "metrics",
                                            "usage",
                                            "policy_decide",
                                            "tokenize",
                                            "admin",
                                            "peer",
                                            "other"};
    return ep < EP_N ? names[ep] : "other";
}

void met_init(struct metrics *m)
{
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->mu, NULL);
}

void met_destroy(struct metrics *m)
{
    pthread_mutex_destroy(&m->mu);
}

void met_request(struct metrics *m, enum http_ep ep, int status)
{
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < MET_STATUS_SLOTS; i++) {
        if (m->req[ep][i].status == 0) m->req[ep][i].status = status;
        if (m->req[ep][i].status == status) {
            m->req[ep][i].n++;
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
}

/* count observations of the value v */
static void hist_add(struct met_hist *h, double v, uint64_t count)
{
    int b = 0;
    while (b < MET_BUCKETS && v > bounds[b]) b++;
    if (b < MET_BUCKETS) h->counts[b] += count;
    h->n += count;
    h->sum += v * (double)count;
}

/* The slot's counters for load gen of model id (m->mu held): a later
 * load starts them over; a request of an earlier load, still draining
 * after its model was unloaded, counts nowhere (NULL) rather than wiping
 * its successor's. */
static struct met_model *slot_for(struct metrics *m, int slot, const char *id, uint64_t gen)
{
    struct met_model *mm = &m->model[slot];
    if (gen < mm->gen) return NULL;
    if (gen > mm->gen || strcmp(mm->id, id)) {
        memset(mm, 0, sizeof(*mm));
        snprintf(mm->id, sizeof(mm->id), "%s", id);
        mm->gen = gen;
    }
    return mm;
}

void met_generation(struct metrics *m, int slot, const char *id, uint64_t gen, int n_in, int n_out,
                    double ttft_s, double decode_s)
{
    struct met_model *mm;
    if (slot < 0 || slot >= HTTP_MAX_MODELS) return;
    pthread_mutex_lock(&m->mu);
    if (!(mm = slot_for(m, slot, id, gen))) {
        pthread_mutex_unlock(&m->mu);
        return;
    }
    mm->requests++;
    mm->tokens_in += (uint64_t)n_in;
    mm->tokens_out += (uint64_t)n_out;
    if (ttft_s >= 0) hist_add(&mm->ttft, ttft_s, 1);
    /* per-token latency: the decode time spread over the tokens after the first */
    if (n_out > 1 && decode_s >= 0)
        hist_add(&mm->tpot, decode_s / (n_out - 1), (uint64_t)(n_out - 1));
    pthread_mutex_unlock(&m->mu);
}

void met_count(struct metrics *m, uint64_t *counter)
{
    pthread_mutex_lock(&m->mu);
    (*counter)++;
    pthread_mutex_unlock(&m->mu);
}

static void hist_render(struct cit_buf *o, const char *name, const char *model,
                        const struct met_hist *h)
{
    uint64_t cum = 0;
    for (int b = 0; b < MET_BUCKETS; b++) {
        cum += h->counts[b];
        cit_buf_printf(o, "%s_bucket{model=\"%s\",le=\"%g\"} %llu\n", name, model, bounds[b],
                       (unsigned long long)cum);
    }
    cit_buf_printf(o, "%s_bucket{model=\"%s\",le=\"+Inf\"} %llu\n", name, model,
                   (unsigned long long)h->n);
    cit_buf_printf(o, "%s_sum{model=\"%s\"} %.6f\n", name, model, h->sum);
    cit_buf_printf(o, "%s_count{model=\"%s\"} %llu\n", name, model, (unsigned long long)h->n);
}

int met_render(struct metrics *m, struct cit_buf *o, const char *const *ids,
               const struct met_gauges *g, int n_models, int inflight)
{
    pthread_mutex_lock(&m->mu);
    cit_buf_printf(o, "# HELP citadel_http_requests_total HTTP requests by endpoint and status.\n"
                      "# TYPE citadel_http_requests_total counter\n");
    for (int ep = 0; ep < EP_N; ep++)
        for (int i = 0; i < MET_STATUS_SLOTS && m->req[ep][i].status; i++)
            cit_buf_printf(o, "citadel_http_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n",
                           http_ep_name((enum http_ep)ep), m->req[ep][i].status,
                           (unsigned long long)m->req[ep][i].n);
    cit_buf_printf(o,
                   "# HELP citadel_http_inflight_requests Requests being handled now.\n"
                   "# TYPE citadel_http_inflight_requests gauge\n"
                   "citadel_http_inflight_requests %d\n"
                   "# HELP citadel_queue_rejections_total Requests refused because the queue "
                   "was full (429).\n"
                   "# TYPE citadel_queue_rejections_total counter\n"
                   "citadel_queue_rejections_total %llu\n"
                   "# HELP citadel_slow_clients_dropped_total Connections closed (408) for "
                   "sending their request too slowly.\n"
                   "# TYPE citadel_slow_clients_dropped_total counter\n"
                   "citadel_slow_clients_dropped_total %llu\n"
                   "# HELP citadel_client_disconnects_total Generations cancelled because the "
                   "client went away.\n"
                   "# TYPE citadel_client_disconnects_total counter\n"
                   "citadel_client_disconnects_total %llu\n"
                   "# HELP citadel_connections_refused_total Connections closed when accepted: "
                   "over max_per_ip or max_connections.\n"
                   "# TYPE citadel_connections_refused_total counter\n"
                   "citadel_connections_refused_total %llu\n"
                   "# HELP citadel_connections_evicted_total Connections without a key closed "
                   "to make room for a newer one (max_unauthenticated).\n"
                   "# TYPE citadel_connections_evicted_total counter\n"
                   "citadel_connections_evicted_total %llu\n",
                   inflight, (unsigned long long)m->rejected_queue_full,
                   (unsigned long long)m->dropped_slow, (unsigned long long)m->disconnects,
                   (unsigned long long)m->conn_refused, (unsigned long long)m->conn_evicted);
    static const char *const kinds[][3] = {
        {"citadel_generation_requests_total", "counter", "Generations finished."},
        {"citadel_prompt_tokens_total", "counter", "Prompt tokens processed."},
        {"citadel_generated_tokens_total", "counter", "Tokens generated."},
        {"citadel_queue_depth", "gauge", "Requests waiting for a sequence slot."},
        {"citadel_active_sequences", "gauge", "Sequences being decoded."},
        {"citadel_kv_cache_used_tokens", "gauge", "Tokens held in KV caches."},
        {"citadel_kv_cache_capacity_tokens", "gauge", "KV cache capacity in tokens."},
    };
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        cit_buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", kinds[k][0], kinds[k][2], kinds[k][0],
                       kinds[k][1]);
        for (int i = 0; i < n_models; i++) {
            static const struct met_model none;
            const struct met_model *mm;
            if (!ids[i]) continue; /* a free slot */
            if (!(mm = slot_for(m, i, ids[i], g[i].gen))) mm = &none;
            long long v = k == 0   ? (long long)mm->requests
                          : k == 1 ? (long long)mm->tokens_in
                          : k == 2 ? (long long)mm->tokens_out
                          : k == 3 ? g[i].queued
                          : k == 4 ? g[i].active
                          : k == 5 ? g[i].kv_used
                                   : g[i].kv_capacity;
            cit_buf_printf(o, "%s{model=\"%s\"} %lld\n", kinds[k][0], ids[i], v);
        }
    }
    cit_buf_printf(o, "# HELP citadel_time_to_first_token_seconds From accepted request to the "
                      "first generated token.\n"
                      "# TYPE citadel_time_to_first_token_seconds histogram\n");
    for (int i = 0; i < n_models; i++)
        if (ids[i])
            hist_render(o, "citadel_time_to_first_token_seconds", ids[i], &m->model[i].ttft);
    cit_buf_printf(o, "# HELP citadel_time_per_output_token_seconds Decode time per token after "
                      "the first.\n"
                      "# TYPE citadel_time_per_output_token_seconds histogram\n");
    for (int i = 0; i < n_models; i++)
        if (ids[i])
            hist_render(o, "citadel_time_per_output_token_seconds", ids[i], &m->model[i].tpot);
    pthread_mutex_unlock(&m->mu);
    return o->p ? 0 : CIT_ENOMEM;
}
