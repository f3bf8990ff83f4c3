/*
 * POST /v1/chat/completions and /v1/completions: parse, the gate, submit,
 * answer (one JSON body, or server-sent events).
 *
 * The gate (citadel/node.h) decides, redacts, tokenizes and charges; this
 * file speaks the OpenAI dialect. Non-streaming requests wait on the
 * connection's thread; streaming ones return a response whose reader
 * waits for text. While waiting, the thread checks every 50 ms whether the
 * client hung up (poll for POLLRDHUP) or the time limit passed; either
 * cancels the generation, which frees its sequence before the next step.
 */
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_int.h"

static void on_token(void *user, int32_t tok, const char *text, size_t len, enum sched_finish f)
{
    struct req *r = user;
    int last = 0;
    pthread_mutex_lock(&r->mu);
    if (len && cit_buf_add(&r->text, text, len)) f = SCHED_FINISH_ERROR;
    if (tok >= 0 && (f != SCHED_FINISH_STOP || !node_call_is_eog(r->call, tok))) {
        uint64_t now = cit_now_ns();
        if (!r->n_gen) r->t_first = now;
        r->t_last = now;
        if (r->n_gen == r->tok_cap) { /* where each token's text ends: what was sent */
            int cap = r->tok_cap ? r->tok_cap * 2 : 64;
            size_t *nt = cit_realloc(r->tok_end, (size_t)cap * sizeof(*nt));
            if (nt) r->tok_end = nt, r->tok_cap = cap;
        }
        if (r->n_gen < r->tok_cap) r->tok_end[r->n_gen] = r->text.len;
        r->n_gen++;
    }
    if (f != SCHED_FINISH_NONE) {
        r->done = 1;
        r->finish = f;
        last = --r->refs == 0;
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (last) req_destroy(r); /* the connection and the response let go already */
}

void gen_cancel(struct req *r)
{
    pthread_mutex_lock(&r->mu);
    int go = r->submitted && !r->done && !r->cancelled;
    r->cancelled |= go;
    pthread_mutex_unlock(&r->mu);
    if (go && r->forward)
        atomic_store(&r->fwd_cancel, 1);
    else if (go)
        node_call_cancel(r->call);
}

/* Generated tokens: a forward's as its peer counted them, when it did. */
static int gen_count(const struct req *r)
{
    return r->forward && r->fwd_tokens >= 0 ? (int)r->fwd_tokens : r->n_gen;
}

static int gen_client_gone(int fd)
{
    struct pollfd p = {fd, POLLRDHUP, 0};
    if (fd < 0) return 0;
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

int gen_hung_up(struct req *r)
{
    if (!gen_client_gone(r->fd)) return 0;
    r->hung_up = 1;
    met_count(&r->srv->met, &r->srv->met.disconnects);
    return 1;
}

/* Waits (r->mu held) until done, new text, or a time slice passed; handles
 * hang-ups and the time limit. Returns -1 when the client is gone. */
int gen_wait(struct req *r)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += WAIT_SLICE_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    if (r->done) return 0;
    pthread_mutex_unlock(&r->mu);
    if (gen_hung_up(r)) {
        gen_cancel(r);
        pthread_mutex_lock(&r->mu);
        return -1;
    }
    if (r->lim.request_timeout_s > 0 &&
        cit_now_ns() - r->t_submit > (uint64_t)r->lim.request_timeout_s * 1000000000ull) {
        r->timed_out = 1;
        gen_cancel(r);
    }
    pthread_mutex_lock(&r->mu);
    return 0;
}

/* ---- the answer's JSON ---- */

/* The profile's notice ends every chat answer when it says so: the same
 * bytes, "\n\n" and the notice, after the last released text of a plain
 * answer and as the last content event of a stream, so that the two
 * agree. A peer's request is answered without it: the node that serves
 * the person appends its own. Nor does a JSON answer (response_format),
 * which the text would break: it carries the notice in its header only. The notice is the
 * operator's text, outside the output rules (nothing of the model's is in it). */
static const char *notice_suffix(const struct req *r, size_t *len)
{
    const char *n = r->chat && r->peer < 0 && !r->json && node_profile_appends_notice(r->srv->node)
                        ? node_profile_notice(r->srv->node)
                        : NULL;
    *len = n ? strlen(n) : 0;
    return n;
}

static void add_notice(struct cit_buf *b, const char *notice, size_t len)
{
    BUF_LIT(b, "\n\n");
    cit_buf_add(b, notice, len);
}

static const char *finish_reason(const struct req *r, const struct node_call_state *st)
{
    if (st->stopped) return "content_filter";
    return r->finish == SCHED_FINISH_LENGTH || r->timed_out ? "length" : "stop";
}

static void usage_json(struct cit_buf *b, const struct req *r)
{
    cit_buf_printf(b,
                   "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}",
                   r->n_prompt, gen_count(r), r->n_prompt + gen_count(r));
}

static void chunk_head(struct cit_buf *b, const struct req *r)
{
    const char *model = node_call_model(r->call);
    cit_buf_printf(b, "data: {\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":",
                   node_call_id(r->call), r->chat ? "chat.completion.chunk" : "text_completion",
                   (long long)r->created);
    cit_buf_json_str(b, model, strlen(model));
    BUF_LIT(b, ",\"system_fingerprint\":\"citadel\",\"choices\":[");
}

static void chunk_tail(struct cit_buf *b, const struct req *r)
{
    BUF_LIT(b, "]");
    if (r->include_usage) BUF_LIT(b, ",\"usage\":null");
    BUF_LIT(b, "}\n\n");
}

/* One event with text (may be empty) and, at the end, the finish reason. */
static void chunk_text(struct cit_buf *b, const struct req *r, const char *t, size_t n,
                       const char *fin, int role)
{
    chunk_head(b, r);
    if (r->chat) {
        BUF_LIT(b, "{\"index\":0,\"delta\":{");
        if (role) BUF_LIT(b, "\"role\":\"assistant\",");
        if (!fin || n) {
            BUF_LIT(b, "\"content\":");
            cit_buf_json_str(b, t, n);
        }
        BUF_LIT(b, "},\"logprobs\":null,\"finish_reason\":");
    } else {
        BUF_LIT(b, "{\"index\":0,\"text\":");
        cit_buf_json_str(b, t, n);
        BUF_LIT(b, ",\"logprobs\":null,\"finish_reason\":");
    }
    if (fin)
        cit_buf_printf(b, "\"%s\"}", fin);
    else
        BUF_LIT(b, "null}");
    chunk_tail(b, r);
}

/* The error that ends an answer the scheduler did not finish; its status
 * in *status. NULL when it finished (stop, length, a timeout, the output
 * rules). Plain and streamed answers share it. */
static const char *failure(const struct req *r, const struct node_call_state *st, int *status,
                           const char **code, char *msg, size_t cap)
{
    *code = NULL;
    if (r->forward && r->fwd_res && r->finish == SCHED_FINISH_ERROR && !st->scan_failed) {
        /* the peer's answer broke off, or the peers failed */
        *status = r->fwd_res->status >= 400 ? r->fwd_res->status : 502;
        *code = r->fwd_res->err_code[0] ? r->fwd_res->err_code : "peer_failed";
        snprintf(msg, cap, "%s", r->fwd_res->msg[0] ? r->fwd_res->msg : "the peer failed");
        return msg;
    }
    if (st->scan_failed) {
        *status = 500;
        return "The answer could not be scanned; it is withheld.";
    }
    if (r->finish == SCHED_FINISH_ERROR) {
        *status = 500;
        return "generation failed";
    }
    if (r->finish == SCHED_FINISH_CANCELLED && !r->timed_out && !st->stopped) {
        *status = 503;
        if (st->model_gone) {
            *code = "model_unloaded";
            snprintf(msg, cap, "The model '%s' was unloaded while this request ran (%s).",
                     node_call_model(r->call), st->gone_why);
            return msg;
        }
        return "the server is shutting down; the generation was cancelled";
    }
    return NULL;
}

/* ---- server-sent events ---- */

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct req *r = cls;
    (void)pos;
    for (;;) {
        if (r->out_off < r->out.len) {
            size_t n = r->out.len - r->out_off;
            if (n > max) n = max;
            memcpy(buf, r->out.p + r->out_off, n);
            r->out_off += n;
            if (r->out_off == r->out.len) r->out.len = r->out_off = 0;
            return (ssize_t)n;
        }
        if (r->phase == PH_END) return MHD_CONTENT_READER_END_OF_STREAM;
        struct cit_buf piece = {0};
        struct node_call_state st;
        int stop = 0;
        pthread_mutex_lock(&r->mu);
        node_call_state(r->call, &st);
        if (r->phase == PH_ROLE) {
            chunk_text(&r->out, r, "", 0, NULL, 1);
            r->phase = PH_BODY;
        } else if (node_release(r->call, r->text.p, r->text.len, r->done, &piece), piece.len) {
            size_t upto = node_call_released(r->call);
            chunk_text(&r->out, r, piece.p, piece.len, NULL, 0);
            explicit_bzero(piece.p, piece.len);
            cit_buf_free(&piece);
            while (r->n_sent < r->n_gen && r->n_sent < r->tok_cap && r->tok_end[r->n_sent] <= upto)
                r->n_sent++;
        } else if (!r->done && (st.stopped || st.scan_failed) && !r->cancelled) {
            /* an answer cut by the output rules, or unscannable, stops generating */
            stop = 1;
        } else if (r->done) {
            char msg[600];
            const char *code, *fail;
            int status = 200, lost;
            node_call_state(r->call, &st);
            fail = failure(r, &st, &status, &code, msg, sizeof(msg));
            /* the entry goes in before the stream is acknowledged with [DONE];
             * a client that left is recorded as 499 with what it was sent */
            pthread_mutex_unlock(&r->mu);
            if (gen_client_gone(r->fd)) {
                node_finish(r->call, 499, r->n_sent);
                pthread_mutex_lock(&r->mu);
                r->hung_up = 1;
                pthread_mutex_unlock(&r->mu);
                met_count(&r->srv->met, &r->srv->met.disconnects);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            lost = node_finish(r->call, status, gen_count(r));
            pthread_mutex_lock(&r->mu);
            if (r->peer >= 0 && !lost) { /* a peer's request: the receipt, before [DONE] */
                uint64_t seq;
                uint8_t leaf[32];
                if (!node_call_entry(r->call, &seq, leaf)) peer_receipt(r, status, seq, leaf);
                if (r->receipt_hdr[0]) {
                    BUF_LIT(&r->out, "event: citadel-receipt\ndata: ");
                    cit_buf_add(&r->out, r->receipt_hdr, strlen(r->receipt_hdr));
                    BUF_LIT(&r->out, "\n\n");
                }
            }
            if (lost && !fail) {
                BUF_LIT(&r->out, "data: ");
                api_error_simple(&r->out, "server_error", "ledger_unavailable", NULL,
                                 "the audit ledger could not record this request");
                BUF_LIT(&r->out, "\n");
            } else if (fail) {
                BUF_LIT(&r->out, "data: ");
                api_error_simple(&r->out, "server_error", code, NULL,
                                 st.scan_failed ? "the answer could not be scanned" : fail);
                BUF_LIT(&r->out, "\n");
            } else {
                size_t nl;
                const char *notice = notice_suffix(r, &nl);
                if (notice) {
                    struct cit_buf t = {0};
                    add_notice(&t, notice, nl);
                    chunk_text(&r->out, r, t.p ? t.p : "", t.len, NULL, 0);
                    cit_buf_free(&t);
                }
                chunk_text(&r->out, r, "", 0, finish_reason(r, &st), 0);
                if (r->include_usage) {
                    chunk_head(&r->out, r);
                    BUF_LIT(&r->out, "],");
                    usage_json(&r->out, r);
                    BUF_LIT(&r->out, "}\n\n");
                }
            }
            BUF_LIT(&r->out, "data: [DONE]\n\n");
            r->phase = PH_END;
        } else if (gen_wait(r)) {
            pthread_mutex_unlock(&r->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        pthread_mutex_unlock(&r->mu);
        cit_buf_free(&piece);
        if (stop) gen_cancel(r);
    }
}

static void sse_free(void *cls)
{
    req_unref(cls);
}

/* ---- one JSON body ---- */

/* A peer's request: the receipt for the entry node_finish wrote. */
static void receipt_for(struct req *r, int status)
{
    uint64_t seq;
    uint8_t leaf[32];
    if (r->peer >= 0 && !node_call_entry(r->call, &seq, leaf)) peer_receipt(r, status, seq, leaf);
}

static enum MHD_Result respond_final(struct MHD_Connection *c, struct req *r)
{
    struct cit_buf b = {0}, answer = {0};
    struct node_call_state st;
    const char *code, *fail;
    char msg[600];
    int status = 200;
    node_call_state(r->call, &st);
    if (r->finish == SCHED_FINISH_ERROR ||
        (r->finish == SCHED_FINISH_CANCELLED && !r->timed_out && !st.stopped)) {
        fail = failure(r, &st, &status, &code, msg, sizeof(msg));
        node_finish(r->call, status, gen_count(r));
        receipt_for(r, status);
        return respond_error(c, r, status, "server_error", code, NULL, fail);
    }
    pthread_mutex_lock(&r->mu);
    node_release(r->call, r->text.p, r->text.len, 1, &answer); /* done: all of it */
    pthread_mutex_unlock(&r->mu);
    node_call_state(r->call, &st);
    if ((fail = failure(r, &st, &status, &code, msg, sizeof(msg)))) {
        node_finish(r->call, status, gen_count(r));
        receipt_for(r, status);
        return respond_error(c, r, status, "server_error", code, NULL, fail);
    }
    /* the entry goes in before the answer is acknowledged; without it the
     * answer is withheld */
    if (node_finish(r->call, 200, gen_count(r))) {
        if (answer.p) explicit_bzero(answer.p, answer.len);
        cit_buf_free(&answer);
        return respond_error(c, r, 500, "server_error", "ledger_unavailable", NULL,
                             "The audit ledger could not record this request; the answer is "
                             "withheld.");
    }
    receipt_for(r, 200);
    {
        size_t nl;
        const char *notice = notice_suffix(r, &nl);
        if (notice) add_notice(&answer, notice, nl);
    }
    cit_buf_printf(
        &b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", node_call_id(r->call),
        r->chat ? "chat.completion" : "text_completion", (long long)r->created);
    cit_buf_json_str(&b, node_call_model(r->call), strlen(node_call_model(r->call)));
    BUF_LIT(&b, ",\"system_fingerprint\":\"citadel\",\"choices\":[{\"index\":0,");
    if (r->chat) {
        BUF_LIT(&b, "\"message\":{\"role\":\"assistant\",\"content\":");
        cit_buf_json_str(&b, answer.p ? answer.p : "", answer.len);
        BUF_LIT(&b, ",\"refusal\":null},");
    } else {
        BUF_LIT(&b, "\"text\":");
        cit_buf_json_str(&b, answer.p ? answer.p : "", answer.len);
        BUF_LIT(&b, ",");
    }
    cit_buf_printf(&b, "\"logprobs\":null,\"finish_reason\":\"%s\"}],", finish_reason(r, &st));
    usage_json(&b, r);
    BUF_LIT(&b, "}\n");
    if (answer.p) explicit_bzero(answer.p, answer.len);
    cit_buf_free(&answer);
    return respond_json(c, r, 200, &b);
}

/* ---- the request ---- */

void api_node_req(const struct api_req *a, const struct req *r, struct node_req *q)
{
    char *canon = json_dumps(a->root, JSON_COMPACT | JSON_SORT_KEYS);
    memset(q, 0, sizeof(*q));
    q->tenant = r->key.tenant;
    q->key_id = r->key.id;
    q->scopes = r->key.scopes;
    q->endpoint = a->chat ? "chat" : "completions";
    q->model = a->model;
    /* the canonical request: its JSON with sorted keys, compact */
    if (canon) {
        node_request_digest(r->srv->node, canon, strlen(canon), q->digest);
        explicit_bzero(canon, strlen(canon));
    }
    free(canon);
    q->p.chat = a->chat;
    q->p.msgs = a->msgs;
    q->p.n_msgs = a->n_msgs;
    q->p.prompt = a->prompt;
    q->p.ids = a->prompt_ids;
    q->p.n_ids = a->n_prompt_ids;
    q->max_tokens = a->max_tokens;
    q->max_tokens_limit = r->lim.max_tokens;
    q->max_prompt_tokens = r->lim.max_prompt_tokens;
    q->id_chat = a->chat;
}

enum MHD_Result handle_generate(struct MHD_Connection *c, struct req *r)
{
    struct http_server *s = r->srv;
    struct api_req a;
    struct api_err e = {0};
    struct node_req q;
    struct node_outcome out;
    struct sched_req sq = {0};
    enum MHD_Result res;
    char msg[400];
    int rc;

    if (api_parse(r->body.p ? r->body.p : "", r->body.len,
                  r->ep == EP_CHAT || (r->ep == EP_PEER && r->peer_chat), &a, &e)) {
        api_req_free(&a);
        return respond_error(c, r, e.status, e.type, e.code, e.param, e.msg);
    }
    api_node_req(&a, r, &q);
    q.declared = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Citadel-Data-Class");
    q.purpose = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Citadel-Purpose");
    if (r->peer >= 0 && peer_admit(c, r, &q, &res)) { /* a peer's: its passport first */
        api_req_free(&a);
        return res;
    }
    r->created = (int64_t)time(NULL);
    if (node_admit(s->node, &q, &r->call, &out)) {
        api_req_free(&a);
        return respond_outcome(c, r, &out);
    }
    snprintf(r->decision_hdr, sizeof(r->decision_hdr), "%s", out.decision);
    snprintf(r->max_tokens_hdr, sizeof(r->max_tokens_hdr), "%s", out.max_tokens_note);
    if (node_call_forwards(r->call)) {
        r->chat = a.chat;
        r->stream = a.stream;
        r->include_usage = a.include_usage;
        r->phase = r->chat ? PH_ROLE : PH_BODY;
        res = handle_forward(c, r, &a);
        api_req_free(&a);
        return res;
    }
    sq.sampling = a.sp;
    for (int i = 0; i < a.sp.n_logit_bias; i++)
        if (a.sp.logit_bias[i].token >= eng_model_hparams(node_call_engine(r->call))->n_vocab) {
            snprintf(msg, sizeof(msg), "logit_bias: token %d is outside the model's vocabulary",
                     (int)a.sp.logit_bias[i].token);
            api_req_free(&a);
            return respond_error(c, r, 400, "invalid_request_error", NULL, "logit_bias", msg);
        }
    if (!a.has_seed) randombytes_buf(&sq.sampling.seed, sizeof(sq.sampling.seed));
    for (int i = 0; i < a.n_stops; i++) sq.stops[i] = a.stops[i];
    sq.n_stops = a.n_stops;
    sq.grammar = a.gram; /* the scheduler takes its own reference */

    r->slot = node_call_slot(r->call);
    r->json = a.gram != NULL;
    r->chat = a.chat;
    r->stream = a.stream;
    r->include_usage = a.include_usage;
    node_call_tokens(r->call, &r->n_prompt);
    r->phase = r->chat ? PH_ROLE : PH_BODY;
    pthread_mutex_lock(&r->mu);
    r->refs++; /* the scheduler's */
    pthread_mutex_unlock(&r->mu);
    r->t_submit = cit_now_ns();
    watch_deadline(s, r->cw, 0);
    rc = node_call_submit(r->call, &sq, on_token, r);
    api_req_free(&a);
    if (rc) {
        pthread_mutex_lock(&r->mu);
        r->refs--;
        pthread_mutex_unlock(&r->mu);
        if (rc == CIT_EOVERFLOW && !atomic_load(&s->draining)) {
            struct node_call_state st;
            node_call_state(r->call, &st);
            if (st.model_gone) {
                snprintf(msg, sizeof(msg), "The model '%s' was unloaded (%s).",
                         node_call_model(r->call), st.gone_why);
                return respond_error(c, r, 503, "server_error", "model_unloaded", "model", msg);
            }
            met_count(&s->met, &s->met.rejected_queue_full);
            return respond_error(c, r, 429, "rate_limit_error", "queue_full", NULL,
                                 "The server is busy: the request queue is full. Retry shortly.");
        }
        if (rc == CIT_EOVERFLOW)
            return respond_error(c, r, 503, "server_error", NULL, NULL,
                                 "The server is shutting down.");
        snprintf(msg, sizeof(msg), "the request was refused: %s", cit_strerror(rc));
        return respond_error(c, r, rc == CIT_ENOMEM ? 500 : 400,
                             rc == CIT_ENOMEM ? "server_error" : "invalid_request_error", NULL,
                             NULL, msg);
    }
    pthread_mutex_lock(&r->mu);
    r->submitted = 1;
    pthread_mutex_unlock(&r->mu);
    return gen_answer(c, r);
}

/* The answer of a submitted request: a stream, or one body once done. */
enum MHD_Result gen_answer(struct MHD_Connection *c, struct req *r)
{
    struct http_server *s = r->srv;
    enum MHD_Result res;
    if (r->stream) {
        struct MHD_Response *resp =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, r, sse_free);
        if (!resp) {
            gen_cancel(r);
            return MHD_NO;
        }
        pthread_mutex_lock(&r->mu);
        r->refs++; /* the response's */
        pthread_mutex_unlock(&r->mu);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(resp, "X-Citadel-Decision", r->decision_hdr);
        respond_profile_headers(resp, r);
        respond_cors_headers(resp, r);
        conn_answering(s, r->cw);
        res = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        r->status = 200;
        r->responded = 1;
        return res;
    }
    pthread_mutex_lock(&r->mu);
    while (!r->done)
        if (gen_wait(r)) {
            pthread_mutex_unlock(&r->mu);
            return MHD_NO; /* client gone: close */
        }
    pthread_mutex_unlock(&r->mu);
    return respond_final(c, r);
}
