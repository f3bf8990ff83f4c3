/*
 * POST /v1/embeddings, in OpenAI's shape.
 *
 * input is a string, an array of strings, an array of token ids, or an
 * array of such arrays (at most 2048 inputs, none empty); encoding_format
 * "float" (the default) or "base64" (the little-endian float32 bytes);
 * dimensions cuts each vector to its first N values and normalises it
 * again (what Matryoshka-trained models, the ones that offer shorter
 * vectors, are trained for); user is accepted and not used. Every input
 * goes through the gate as one message of a chat would: scanned, decided
 * under the policy, redacted where it says so (the vector is then the
 * redacted text's), recorded in the ledger, charged to the tenant. The
 * vectors come back L2-normalised, as OpenAI's do.
 */
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_int.h"

void api_embed_free(struct api_embed *q)
{
    cit_free(q->texts);
    cit_free(q->ids);
    cit_free(q->lens);
    if (q->root) json_decref(q->root);
    memset(q, 0, sizeof(*q));
}

static int bad(struct api_err *e, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(struct api_err *e, const char *param, const char *fmt, ...)
{
    va_list ap;
    e->status = 400;
    e->type = "invalid_request_error";
    e->code = NULL;
    snprintf(e->param, sizeof(e->param), "%s", param);
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return -1;
}

/* One token-id array into q->ids (at most max ids in all). */
static int add_ids(struct api_embed *q, json_t *arr, int at, struct api_err *e)
{
    size_t i, n = json_array_size(arr);
    json_t *v;
    int32_t *ids;
    if (!n) return bad(e, "input", "input[%d] is an empty array of token ids", at);
    if (n > (size_t)(INT32_MAX / 4) - (size_t)q->n_ids)
        return bad(e, "input", "input has too many token ids");
    if (!(ids = cit_realloc(q->ids, ((size_t)q->n_ids + n) * sizeof(int32_t))))
        return bad(e, "input", "out of memory");
    q->ids = ids;
    json_array_foreach(arr, i, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
            return bad(e, "input", "input[%d][%zu] is not a token id (a non-negative integer)", at,
                       i);
        q->ids[q->n_ids++] = (int32_t)json_integer_value(v);
    }
    q->lens[at] = (int)n;
    return 0;
}

int api_parse_embed(const char *body, size_t len, struct api_embed *q, struct api_err *e)
{
    json_error_t je;
    json_t *in, *v;
    size_t i, n;
    memset(q, 0, sizeof(*q));
    q->root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!q->root || !json_is_object(q->root))
        return bad(e, "", "The body is not a JSON object%s%s", q->root ? "" : ": ",
                   q->root ? "" : je.text);
    v = json_object_get(q->root, "model");
    if (!json_is_string(v) || !json_string_length(v))
        return bad(e, "model", "'model' is required: the id of an embedding model");
    q->model = json_string_value(v);
    v = json_object_get(q->root, "encoding_format");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v) ||
            (strcmp(json_string_value(v), "float") && strcmp(json_string_value(v), "base64")))
            return bad(e, "encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
        q->base64 = !strcmp(json_string_value(v), "base64");
    }
    v = json_object_get(q->root, "dimensions");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65536)
            return bad(e, "dimensions", "'dimensions' must be a positive integer");
        q->dimensions = (int)json_integer_value(v);
    }
    v = json_object_get(q->root, "user");
    if (v && !json_is_null(v) && !json_is_string(v))
        return bad(e, "user", "'user' must be a string");
    in = json_object_get(q->root, "input");
    if (json_is_string(in)) {
        if (!json_string_length(in)) return bad(e, "input", "'input' is an empty string");
        if (strlen(json_string_value(in)) != json_string_length(in))
            return bad(e, "input", "'input' contains a NUL character");
        if (!(q->texts = cit_calloc(1, sizeof(*q->texts)))) return bad(e, "", "out of memory");
        q->texts[0] = (struct eng_chat_msg){"input", json_string_value(in)};
        q->n_inputs = 1;
        return 0;
    }
    if (!json_is_array(in) || !(n = json_array_size(in)))
        return bad(e, "input",
                   "'input' is required: a string, an array of strings, an array of token ids "
                   "or an array of such arrays, not empty");
    if (n > EMBED_MAX_INPUTS)
        return bad(e, "input", "'input' has %zu items; at most %d", n, EMBED_MAX_INPUTS);
    v = json_array_get(in, 0);
    if (json_is_integer(v)) { /* one input of token ids */
        if (!(q->lens = cit_calloc(1, sizeof(int)))) return bad(e, "", "out of memory");
        q->n_inputs = 1;
        return add_ids(q, in, 0, e);
    }
    if (json_is_array(v)) {
        if (!(q->lens = cit_calloc(n, sizeof(int)))) return bad(e, "", "out of memory");
        q->n_inputs = (int)n;
        json_array_foreach(in, i, v)
        {
            if (!json_is_array(v))
                return bad(e, "input", "input[%zu]: every item must be an array of token ids", i);
            if (add_ids(q, v, (int)i, e)) return -1;
        }
        return 0;
    }
    if (!(q->texts = cit_calloc(n, sizeof(*q->texts)))) return bad(e, "", "out of memory");
    json_array_foreach(in, i, v)
    {
        if (!json_is_string(v))
            return bad(e, "input", "input[%zu]: every item must be a string", i);
        if (!json_string_length(v)) return bad(e, "input", "input[%zu] is an empty string", i);
        if (strlen(json_string_value(v)) != json_string_length(v))
            return bad(e, "input", "input[%zu] contains a NUL character", i);
        q->texts[i] = (struct eng_chat_msg){"input", json_string_value(v)};
    }
    q->n_inputs = (int)n;
    return 0;
}

static void on_embedded(void *user, int32_t tok, const char *text, size_t len, enum sched_finish f)
{
    struct req *r = user;
    int last;
    (void)tok, (void)text, (void)len;
    pthread_mutex_lock(&r->mu);
    r->done = 1;
    r->finish = f;
    last = --r->refs == 0;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (last) req_destroy(r);
}

/* The answer's body: each vector cut to dims (renormalised when cut). */
static int answer_json(struct cit_buf *b, struct req *r, const struct api_embed *q, int E, int dims)
{
    const float *all = r->embd;
    float *v = cit_malloc((size_t)dims * sizeof(float));
    char *b64 = NULL;
    size_t b64_len = sodium_base64_ENCODED_LEN((size_t)dims * 4, sodium_base64_VARIANT_ORIGINAL);
    if (!v || (q->base64 && !(b64 = cit_malloc(b64_len)))) {
        cit_free(v);
        return CIT_ENOMEM;
    }
    BUF_LIT(b, "{\"object\":\"list\",\"data\":[");
    for (int i = 0; i < q->n_inputs; i++) {
        const float *x = all + (size_t)i * (size_t)E;
        double norm = 0;
        for (int c = 0; c < dims; c++) norm += (double)x[c] * x[c];
        norm = dims < E && norm > 0 ? 1.0 / sqrt(norm) : 1.0;
        for (int c = 0; c < dims; c++) v[c] = (float)(x[c] * norm);
        cit_buf_printf(b, "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":", i ? "," : "",
                       i);
        if (q->base64) {
            sodium_bin2base64(b64, b64_len, (const unsigned char *)v, (size_t)dims * 4,
                              sodium_base64_VARIANT_ORIGINAL);
            cit_buf_printf(b, "\"%s\"}", b64);
        } else {
            BUF_LIT(b, "[");
            for (int c = 0; c < dims; c++) cit_buf_printf(b, "%s%.9g", c ? "," : "", (double)v[c]);
            BUF_LIT(b, "]}");
        }
    }
    BUF_LIT(b, "],\"model\":");
    cit_buf_json_str(b, node_call_model(r->call), strlen(node_call_model(r->call)));
    cit_buf_printf(b, ",\"usage\":{\"prompt_tokens\":%d,\"total_tokens\":%d}}\n", r->n_prompt,
                   r->n_prompt);
    cit_free(v);
    cit_free(b64);
    return b->p ? 0 : CIT_ENOMEM;
}

enum MHD_Result handle_embeddings(struct MHD_Connection *c, struct req *r)
{
    struct http_server *s = r->srv;
    struct api_embed q;
    struct api_err e = {0};
    struct node_req nq;
    struct node_outcome out;
    struct cit_buf b = {0};
    char *canon;
    int rc, E, dims;

    if (api_parse_embed(r->body.p ? r->body.p : "", r->body.len, &q, &e)) {
        api_embed_free(&q);
        return respond_error(c, r, e.status, e.type, e.code, e.param, e.msg);
    }
    memset(&nq, 0, sizeof(nq));
    nq.tenant = r->key.tenant;
    nq.key_id = r->key.id;
    nq.scopes = r->key.scopes;
    nq.endpoint = "embeddings";
    nq.model = q.model;
    if ((canon = json_dumps(q.root, JSON_COMPACT | JSON_SORT_KEYS))) {
        node_request_digest(s->node, canon, strlen(canon), nq.digest);
        explicit_bzero(canon, strlen(canon));
        free(canon);
    }
    nq.p.embed = 1;
    nq.p.msgs = q.texts;
    nq.p.n_msgs = q.texts ? q.n_inputs : 0;
    nq.p.ids = q.ids;
    nq.p.n_ids = q.n_ids;
    nq.p.input_lens = q.lens;
    nq.p.n_inputs = q.n_inputs;
    nq.max_prompt_tokens = r->lim.max_prompt_tokens;
    nq.declared = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Citadel-Data-Class");
    nq.purpose = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Citadel-Purpose");
    r->created = (int64_t)time(NULL);
    if (node_admit(s->node, &nq, &r->call, &out)) {
        api_embed_free(&q);
        return respond_outcome(c, r, &out);
    }
    snprintf(r->decision_hdr, sizeof(r->decision_hdr), "%s", out.decision);
    E = eng_model_hparams(node_call_engine(r->call))->n_embd;
    dims = q.dimensions ? q.dimensions : E;
    if (dims > E) {
        api_embed_free(&q);
        node_finish(r->call, 400, 0);
        char msg[200];
        snprintf(msg, sizeof(msg), "'dimensions' is %d; the model's vectors have %d.", dims, E);
        return respond_error(c, r, 400, "invalid_request_error", NULL, "dimensions", msg);
    }
    r->slot = node_call_slot(r->call);
    node_call_tokens(r->call, &r->n_prompt);
    if (!(r->embd = cit_calloc((size_t)q.n_inputs * (size_t)E, sizeof(float)))) {
        api_embed_free(&q);
        return respond_error(c, r, 500, "server_error", NULL, NULL, "out of memory");
    }
    pthread_mutex_lock(&r->mu);
    r->refs++; /* the scheduler's */
    pthread_mutex_unlock(&r->mu);
    r->t_submit = cit_now_ns();
    watch_deadline(s, r->cw, 0);
    rc = node_call_submit_embed(r->call, r->embd, 1, on_embedded, r);
    if (rc) {
        pthread_mutex_lock(&r->mu);
        r->refs--;
        pthread_mutex_unlock(&r->mu);
        api_embed_free(&q);
        if (rc == CIT_EOVERFLOW && !atomic_load(&s->draining)) {
            met_count(&s->met, &s->met.rejected_queue_full);
            return respond_error(c, r, 429, "rate_limit_error", "queue_full", NULL,
                                 "The server is busy: the request queue is full. Retry shortly.");
        }
        return respond_error(c, r, 503, "server_error", NULL, NULL,
                             rc == CIT_EOVERFLOW ? "The server is shutting down."
                                                 : "The model could not take the request.");
    }
    pthread_mutex_lock(&r->mu);
    r->submitted = 1;
    while (!r->done)
        if (gen_wait(r)) {
            pthread_mutex_unlock(&r->mu);
            api_embed_free(&q);
            return MHD_NO; /* client gone: close */
        }
    pthread_mutex_unlock(&r->mu);
    if (r->finish != SCHED_FINISH_STOP) {
        int timed_out = r->timed_out;
        api_embed_free(&q);
        node_finish(r->call, timed_out ? 504 : 503, 0);
        if (timed_out)
            return respond_error(c, r, 504, "server_error", "timeout", NULL,
                                 "The request took longer than the server allows.");
        return respond_error(c, r, r->finish == SCHED_FINISH_ERROR ? 500 : 503, "server_error",
                             NULL, NULL,
                             r->finish == SCHED_FINISH_ERROR ? "The embedding failed."
                                                             : "The model stopped (unloaded or "
                                                               "shutting down).");
    }
    /* the entry goes in before the answer is acknowledged */
    if (node_finish(r->call, 200, 0)) {
        api_embed_free(&q);
        return respond_error(c, r, 500, "server_error", "ledger_unavailable", NULL,
                             "The audit ledger could not record this request; the answer is "
                             "withheld.");
    }
    rc = answer_json(&b, r, &q, E, dims);
    api_embed_free(&q);
    if (rc) {
        cit_buf_free(&b);
        return respond_error(c, r, 500, "server_error", NULL, NULL, "out of memory");
    }
    return respond_json(c, r, 200, &b);
}
