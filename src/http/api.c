/*
 * OpenAI request bodies in, error bodies out.
 *
 * Parsing is jansson (UTF-8 checked, duplicate keys rejected, nesting
 * capped by the library, integer overflow an error), then every field we
 * know is checked for type and range and named in the error. Fields we do
 * not know are ignored, as clients send many; fields of the API we cannot
 * honour (n > 1, tools, logprobs, audio, ...) are refused,
 * never silently dropped. response_format json_object and json_schema
 * compile to a grammar (schema.c) that the sampler enforces.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_int.h"

static int fail(struct api_err *e, int status, const char *param, const char *code, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));

static int fail(struct api_err *e, int status, const char *param, const char *code, const char *fmt,
                ...)
{
    va_list ap;
    e->status = status;
    e->type = status >= 500 ? "server_error" : "invalid_request_error";
    e->code = code;
    snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return -1;
}

/* A field, with JSON null read as absent. */
static json_t *field(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    return json_is_null(v) ? NULL : v;
}

/* An integer, also written as a whole real (1.0). */
static int get_int(json_t *v, long long lo, long long hi, long long *out)
{
    double d;
    if (json_is_integer(v)) {
        long long x = json_integer_value(v);
        if (x < lo || x > hi) return -1;
        *out = x;
        return 0;
    }
    if (!json_is_real(v)) return -1;
    d = json_real_value(v);
    if (d != floor(d) || d < (double)lo || d > (double)hi) return -1;
    *out = (long long)d;
    return 0;
}

static int get_num(json_t *v, double lo, double hi, float *out)
{
    double d;
    if (!json_is_number(v)) return -1;
    d = json_number_value(v);
    if (!(d >= lo && d <= hi)) return -1;
    *out = (float)d;
    return 0;
}

static int add_owned(struct api_req *r, char *s)
{
    char **n = cit_realloc(r->owned, (size_t)(r->n_owned + 1) * sizeof(char *));
    if (!n) {
        cit_free(s);
        return -1;
    }
    r->owned = n;
    r->owned[r->n_owned++] = s;
    return 0;
}

/* Content: a string, or an array of {"type":"text","text":...} parts. */
static int message_text(struct api_req *r, json_t *c, int i, const char **out, struct api_err *e)
{
    char param[64];
    struct cit_buf b = {0};
    size_t j;
    json_t *part;
    snprintf(param, sizeof(param), "messages[%d].content", i);
    /* OpenAI allows a null content only on an assistant message that
     * carries tool_calls (or function_call), which are refused above */
    if (!c)
        return fail(e, 400, param, NULL,
                    "%s is required: a string or an array of text parts (null is allowed only "
                    "with tool_calls, which are not supported)",
                    param);
    if (json_is_string(c)) {
        *out = json_string_value(c);
        if (strlen(*out) != json_string_length(c))
            return fail(e, 400, param, NULL, "%s contains a NUL character", param);
        return 0;
    }
    if (!json_is_array(c))
        return fail(e, 400, param, NULL, "%s must be a string or an array of text parts", param);
    json_array_foreach(c, j, part)
    {
        json_t *t = json_object_get(part, "type"), *x = json_object_get(part, "text");
        if (!json_is_string(t) || strcmp(json_string_value(t), "text") || !json_is_string(x)) {
            cit_buf_free(&b);
            return fail(e, 400, param, NULL,
                        "%s[%zu]: only {\"type\": \"text\", \"text\": ...} parts are supported",
                        param, j);
        }
        if (strlen(json_string_value(x)) != json_string_length(x) ||
            cit_buf_add(&b, json_string_value(x), json_string_length(x))) {
            cit_buf_free(&b);
            return fail(e, 400, param, NULL, "%s[%zu].text contains a NUL character", param, j);
        }
    }
    if (!b.p && BUF_LIT(&b, "")) return fail(e, 500, NULL, NULL, "out of memory");
    if (add_owned(r, b.p)) return fail(e, 500, NULL, NULL, "out of memory");
    *out = b.p;
    return 0;
}

static int parse_messages(struct api_req *r, json_t *root, struct api_err *e)
{
    json_t *msgs = field(root, "messages"), *m;
    size_t i;
    if (!msgs) return fail(e, 400, "messages", NULL, "'messages' is required");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return fail(e, 400, "messages", NULL, "'messages' must be a non-empty array");
    if (json_array_size(msgs) > 4096)
        return fail(e, 400, "messages", NULL, "'messages' has more than 4096 entries");
    r->msgs = cit_calloc(json_array_size(msgs), sizeof(*r->msgs));
    if (!r->msgs) return fail(e, 500, NULL, NULL, "out of memory");
    json_array_foreach(msgs, i, m)
    {
        char param[64];
        json_t *role = json_object_get(m, "role");
        const char *rs;
        snprintf(param, sizeof(param), "messages[%zu].role", i);
        if (!json_is_object(m))
            return fail(e, 400, param, NULL, "messages[%zu] must be an object", i);
        if (!json_is_string(role)) return fail(e, 400, param, NULL, "%s must be a string", param);
        rs = json_string_value(role);
        if (!strcmp(rs, "developer")) rs = "system";
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant"))
            return fail(e, 400, param, NULL,
                        "%s '%.40s' is not supported (system, developer, user, assistant)", param,
                        json_string_value(role));
        if (field(m, "tool_calls") || field(m, "function_call"))
            return fail(e, 400, param, NULL, "messages[%zu]: tool calls are not supported", i);
        r->msgs[i].role = rs;
        if (message_text(r, field(m, "content"), (int)i, &r->msgs[i].content, e)) return -1;
    }
    r->n_msgs = (int)json_array_size(msgs);
    return 0;
}

static int parse_prompt(struct api_req *r, json_t *root, struct api_err *e)
{
    json_t *p = field(root, "prompt"), *x;
    size_t i;
    if (!p) return fail(e, 400, "prompt", NULL, "'prompt' is required");
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0)))
        p = json_array_get(p, 0);
    if (json_is_string(p)) {
        r->prompt = json_string_value(p);
        if (strlen(r->prompt) != json_string_length(p))
            return fail(e, 400, "prompt", NULL, "'prompt' contains a NUL character");
        return 0;
    }
    if (!json_is_array(p) || json_array_size(p) == 0)
        return fail(e, 400, "prompt", NULL,
                    "'prompt' must be a string or an array of token ids (one prompt: n is 1)");
    r->prompt_ids = cit_calloc(json_array_size(p), sizeof(int32_t));
    if (!r->prompt_ids) return fail(e, 500, NULL, NULL, "out of memory");
    json_array_foreach(p, i, x)
    {
        long long v;
        if (get_int(x, 0, INT32_MAX, &v))
            return fail(e, 400, "prompt", NULL,
                        "prompt[%zu]: token ids are non-negative integers; a batch of several "
                        "prompts is not supported",
                        i);
        r->prompt_ids[i] = (int32_t)v;
    }
    r->n_prompt_ids = (int)json_array_size(p);
    return 0;
}

static int parse_stop(struct api_req *r, json_t *root, struct api_err *e)
{
    json_t *s = field(root, "stop"), *x;
    size_t i;
    if (!s) return 0;
    if (json_is_string(s)) {
        if (!json_string_length(s)) return 0;
        r->stops[r->n_stops++] = json_string_value(s);
        return 0;
    }
    if (!json_is_array(s) || json_array_size(s) > API_MAX_STOPS)
        return fail(e, 400, "stop", NULL, "'stop' must be a string or an array of up to %d strings",
                    API_MAX_STOPS);
    json_array_foreach(s, i, x)
    {
        if (!json_is_string(x) || !json_string_length(x) ||
            strlen(json_string_value(x)) != json_string_length(x))
            return fail(e, 400, "stop", NULL, "stop[%zu] must be a non-empty string", i);
        r->stops[r->n_stops++] = json_string_value(x);
    }
    return 0;
}

static int parse_sampling(struct api_req *r, json_t *root, struct api_err *e)
{
    json_t *v;
    long long ll;
    eng_sampler_defaults(&r->sp);
    /* the OpenAI defaults: plain sampling at temperature 1 */
    r->sp.temperature = 1.0f;
    r->sp.top_p = 1.0f;
    r->sp.top_k = 0;
    r->sp.min_p = 0.0f;
    r->sp.repeat_penalty = 1.0f;
    if ((v = field(root, "temperature")) && get_num(v, 0, 2, &r->sp.temperature))
        return fail(e, 400, "temperature", NULL, "'temperature' must be a number from 0 to 2");
    if ((v = field(root, "top_p")) && (get_num(v, 0, 1, &r->sp.top_p) || r->sp.top_p <= 0))
        return fail(e, 400, "top_p", NULL, "'top_p' must be a number in (0, 1]");
    if ((v = field(root, "top_k"))) {
        if (get_int(v, 0, 1 << 30, &ll))
            return fail(e, 400, "top_k", NULL, "'top_k' must be a non-negative integer");
        r->sp.top_k = (int)ll;
    }
    if ((v = field(root, "min_p")) && get_num(v, 0, 1, &r->sp.min_p))
        return fail(e, 400, "min_p", NULL, "'min_p' must be a number from 0 to 1");
    if ((v = field(root, "repeat_penalty")) &&
        (get_num(v, 0, 100, &r->sp.repeat_penalty) || r->sp.repeat_penalty <= 0))
        return fail(e, 400, "repeat_penalty", NULL,
                    "'repeat_penalty' must be a number in (0, 100]");
    if ((v = field(root, "seed"))) {
        if (get_int(v, INT64_MIN, INT64_MAX, &ll))
            return fail(e, 400, "seed", NULL, "'seed' must be an integer");
        r->sp.seed = (uint64_t)ll;
        r->has_seed = 1;
    }
    if ((v = field(root, "frequency_penalty")) && get_num(v, -2, 2, &r->sp.frequency_penalty))
        return fail(e, 400, "frequency_penalty", NULL,
                    "'frequency_penalty' must be a number from -2 to 2");
    if ((v = field(root, "presence_penalty")) && get_num(v, -2, 2, &r->sp.presence_penalty))
        return fail(e, 400, "presence_penalty", NULL,
                    "'presence_penalty' must be a number from -2 to 2");
    if ((v = field(root, "logit_bias")) && json_object_size(v) > 0) {
        const char *k;
        json_t *b;
        int n = 0;
        if (json_object_size(v) > 1024)
            return fail(e, 400, "logit_bias", NULL, "'logit_bias' has more than 1024 entries");
        r->bias = cit_calloc(json_object_size(v), sizeof(*r->bias));
        if (!r->bias) return fail(e, 500, NULL, NULL, "out of memory");
        json_object_foreach(v, k, b)
        {
            char *end;
            long id = strtol(k, &end, 10);
            float f;
            if (!*k || *end || id < 0 || id > INT32_MAX || (k[0] == '0' && k[1]))
                return fail(e, 400, "logit_bias", NULL,
                            "logit_bias key '%.40s' is not a token id (a decimal integer)", k);
            if (get_num(b, -100, 100, &f))
                return fail(e, 400, "logit_bias", NULL,
                            "logit_bias['%.40s'] must be a number from -100 to 100", k);
            r->bias[n++] = (struct eng_logit_bias){(int32_t)id, f};
        }
        r->sp.logit_bias = r->bias;
        r->sp.n_logit_bias = n;
    } else if (v && !json_is_object(v)) {
        return fail(e, 400, "logit_bias", NULL,
                    "'logit_bias' must be an object of token ids to numbers");
    }
    return 0;
}

/* response_format: text, json_object, or json_schema {name, schema,
 * strict, description}; the json ones compile to r->gram. */
static int parse_response_format(struct api_req *r, json_t *v, struct api_err *e)
{
    json_t *t = json_object_get(v, "type"), *js, *x;
    const char *type;
    char msg[sizeof(e->msg)];
    int rc;
    if (!json_is_object(v) || !json_is_string(t))
        return fail(e, 400, "response_format", NULL,
                    "'response_format' must be an object with a 'type'");
    type = json_string_value(t);
    if (!strcmp(type, "text")) return 0;
    if (!strcmp(type, "json_object")) {
        if (schema_json_object(&r->gram)) return fail(e, 500, NULL, NULL, "out of memory");
        return 0;
    }
    if (strcmp(type, "json_schema"))
        return fail(e, 400, "response_format.type", NULL,
                    "response_format type '%.40s' is not supported (text, json_object, "
                    "json_schema)",
                    type);
    js = json_object_get(v, "json_schema");
    if (!json_is_object(js))
        return fail(e, 400, "response_format.json_schema", NULL,
                    "'response_format.json_schema' must be an object with a 'name' and a "
                    "'schema'");
    x = json_object_get(js, "name");
    if (!json_is_string(x) || !json_string_length(x) || json_string_length(x) > 64 ||
        strspn(json_string_value(x),
               "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
            json_string_length(x))
        return fail(e, 400, "response_format.json_schema.name", NULL,
                    "'response_format.json_schema.name' must be 1 to 64 letters, digits, '_' "
                    "or '-'");
    if ((x = field(js, "strict")) && !json_is_boolean(x))
        return fail(e, 400, "response_format.json_schema.strict", NULL,
                    "'response_format.json_schema.strict' must be a boolean");
    if ((x = field(js, "description")) && !json_is_string(x))
        return fail(e, 400, "response_format.json_schema.description", NULL,
                    "'response_format.json_schema.description' must be a string");
    /* strict or not, the answer is held to the schema: there is no
     * weaker mode to fall back to */
    x = field(js, "schema");
    if (!x) {
        if (schema_json_object(&r->gram)) return fail(e, 500, NULL, NULL, "out of memory");
        return 0;
    }
    rc = schema_compile(x, "response_format.json_schema.schema", &r->gram, msg, sizeof(msg));
    if (rc == CIT_ENOMEM) return fail(e, 500, NULL, NULL, "out of memory");
    if (rc) return fail(e, 400, "response_format.json_schema.schema", NULL, "%s", msg);
    return 0;
}

/* Fields of the API that citadel does not implement: refused by name,
 * never dropped (a value that asks for nothing passes). */
static int refuse_unsupported(json_t *root, struct api_err *e)
{
    static const char *const never[] = {
        "functions",        "function_call",      "audio",
        "prediction",       "web_search_options", "parallel_tool_calls",
        "reasoning_effort", "top_logprobs",       NULL,
    };
    json_t *v;
    for (int i = 0; never[i]; i++)
        if (field(root, never[i]))
            return fail(e, 400, never[i], NULL, "'%s' is not supported", never[i]);
    if ((v = field(root, "modalities")) &&
        !(json_is_array(v) && json_array_size(v) == 1 && json_is_string(json_array_get(v, 0)) &&
          !strcmp(json_string_value(json_array_get(v, 0)), "text")))
        return fail(e, 400, "modalities", NULL,
                    "'modalities' other than [\"text\"] are not supported");
    if ((v = field(root, "store")) && !json_is_false(v))
        return fail(e, 400, "store", NULL,
                    "'store' is not supported: citadel keeps no completions (the audit ledger "
                    "records decisions, not answers)");
    if ((v = field(root, "tool_choice")) &&
        !(json_is_string(v) && !strcmp(json_string_value(v), "none")))
        return fail(e, 400, "tool_choice", NULL,
                    "'tool_choice' needs 'tools', which are not supported");
    return 0;
}

int api_parse(const char *body, size_t len, int chat, struct api_req *r, struct api_err *e)
{
    json_error_t je;
    json_t *root, *v;
    long long ll;
    memset(r, 0, sizeof(*r));
    r->chat = chat;
    if (len == 0) return fail(e, 400, NULL, NULL, "the request body is empty; expected JSON");
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return fail(e, 400, NULL, NULL, "invalid JSON at line %d, column %d: %s", je.line,
                    je.column, je.text);
    r->root = root;
    if (!json_is_object(root))
        return fail(e, 400, NULL, NULL, "the request body must be a JSON object");
    v = field(root, "model");
    if (!v) return fail(e, 400, "model", NULL, "'model' is required");
    if (!json_is_string(v) || !json_string_length(v))
        return fail(e, 400, "model", NULL, "'model' must be a non-empty string");
    r->model = json_string_value(v);
    if (chat ? parse_messages(r, root, e) : parse_prompt(r, root, e)) return -1;
    for (int i = 0; i < 2; i++) {
        const char *name = i ? "max_completion_tokens" : "max_tokens";
        if ((v = field(root, name))) {
            if (get_int(v, 1, INT32_MAX, &ll))
                return fail(e, 400, name, NULL, "'%s' must be a positive integer", name);
            r->max_tokens = (int)ll;
        }
    }
    if ((v = field(root, "n")) && (get_int(v, 1, 1, &ll)))
        return fail(e, 400, "n", NULL, "'n' must be 1: one choice per request is supported");
    if ((v = field(root, "best_of")) && (get_int(v, 1, 1, &ll)))
        return fail(e, 400, "best_of", NULL, "'best_of' must be 1");
    if ((v = field(root, "stream"))) {
        if (!json_is_boolean(v)) return fail(e, 400, "stream", NULL, "'stream' must be a boolean");
        r->stream = json_is_true(v);
    }
    if ((v = field(root, "stream_options"))) {
        json_t *iu = field(v, "include_usage");
        if (!json_is_object(v))
            return fail(e, 400, "stream_options", NULL, "'stream_options' must be an object");
        if (!r->stream)
            return fail(e, 400, "stream_options", NULL,
                        "'stream_options' is only allowed when 'stream' is true");
        if (iu && !json_is_boolean(iu))
            return fail(e, 400, "stream_options.include_usage", NULL,
                        "'stream_options.include_usage' must be a boolean");
        r->include_usage = json_is_true(iu);
    }
    if ((v = field(root, "response_format")) && parse_response_format(r, v, e)) return -1;
    if (refuse_unsupported(root, e)) return -1;
    if ((v = field(root, "logprobs")) && !json_is_false(v))
        return fail(e, 400, "logprobs", NULL, "'logprobs' is not supported");
    if ((v = field(root, "echo")) && !json_is_false(v))
        return fail(e, 400, "echo", NULL, "'echo' is not supported");
    if ((v = field(root, "suffix")))
        return fail(e, 400, "suffix", NULL, "'suffix' (insertion) is not supported");
    if ((v = field(root, "tools")) && json_array_size(v) > 0)
        return fail(e, 400, "tools", NULL, "'tools' (function calling) is not supported");
    if (parse_stop(r, root, e) || parse_sampling(r, root, e)) return -1;
    return 0;
}

void api_req_free(struct api_req *r)
{
    for (int i = 0; i < r->n_owned; i++) cit_free(r->owned[i]);
    cit_free(r->owned);
    cit_free(r->msgs);
    cit_free(r->prompt_ids);
    eng_gram_free(r->gram);
    cit_free(r->bias);
    json_decref(r->root);
    memset(r, 0, sizeof(*r));
}

/* ---- output ---- */

void api_error_simple(struct cit_buf *o, const char *type, const char *code, const char *param,
                      const char *msg)
{
    BUF_LIT(o, "{\"error\":{\"message\":");
    cit_buf_json_str(o, msg, strlen(msg));
    cit_buf_printf(o, ",\"type\":\"%s\",\"param\":", type);
    if (param && *param)
        cit_buf_json_str(o, param, strlen(param));
    else
        BUF_LIT(o, "null");
    if (code)
        cit_buf_printf(o, ",\"code\":\"%s\"}}\n", code);
    else
        BUF_LIT(o, ",\"code\":null}}\n");
}

void api_error_json(struct cit_buf *o, const struct api_err *e)
{
    api_error_simple(o, e->type, e->code, e->param, e->msg);
}
