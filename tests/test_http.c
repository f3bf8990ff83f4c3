/* http: the server in this process on a loopback port, spoken to over raw
 * sockets, so every byte on the wire is ours to check (and to break). The
 * CLI and real clients (curl, the openai npm package) are in
 * tests/serve_clients.sh. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "citadel/engine.h"
#include "citadel/http.h"
#include "citadel/ledger.h"
#include "citadel/node.h"
#include "test.h"
#include "../src/core/core_int.h"
#include "../src/http/http_int.h"
#include "../src/node/node_int.h"

struct resp {
    int status;
    char *head; /* status line and headers */
    char *body; /* de-chunked */
    size_t body_len;
};

static void resp_free(struct resp *r)
{
    cit_free(r->head);
    cit_free(r->body);
    memset(r, 0, sizeof(*r));
}

static int dial(int port)
{
    struct sockaddr_in a = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {30, 0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Reads until the peer closes; splits head and body, undoes chunking. */
static int read_resp(int fd, struct resp *r)
{
    struct cit_buf raw = {0};
    char buf[8192], *sep;
    ssize_t k;
    memset(r, 0, sizeof(*r));
    while ((k = recv(fd, buf, sizeof(buf), 0)) > 0) cit_buf_add(&raw, buf, (size_t)k);
    if (!raw.p || !(sep = strstr(raw.p, "\r\n\r\n"))) {
        cit_buf_free(&raw);
        return -1;
    }
    r->head = cit_strndup(raw.p, (size_t)(sep - raw.p));
    r->status = atoi(raw.p + 9);
    sep += 4;
    if (strcasestr(r->head, "transfer-encoding: chunked")) {
        struct cit_buf b = {0};
        char *p = sep, *end = raw.p + raw.len;
        for (;;) {
            char *e;
            unsigned long n = strtoul(p, &e, 16);
            if (e == p || e + 2 > end) break;
            p = e + 2;
            if (n == 0 || p + n > end) break;
            cit_buf_add(&b, p, n);
            p += n + 2;
        }
        r->body = b.p ? b.p : cit_strndup("", 0);
        r->body_len = b.len;
    } else {
        r->body_len = raw.len - (size_t)(sep - raw.p);
        r->body = cit_strndup(sep, r->body_len);
    }
    cit_buf_free(&raw);
    return 0;
}

/* extra: more header lines, each ending in \r\n (may be NULL) */
static int request_h(int port, const char *method, const char *path, const char *key,
                     const char *extra, const char *body, struct resp *r)
{
    struct cit_buf req = {0};
    int fd = dial(port), rc;
    if (fd < 0) return -1;
    cit_buf_printf(&req, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n", method,
                   path);
    if (key) cit_buf_printf(&req, "Authorization: Bearer %s\r\n", key);
    if (extra) cit_buf_printf(&req, "%s", extra);
    if (body)
        cit_buf_printf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                       strlen(body), body);
    else
        cit_buf_printf(&req, "\r\n");
    rc = send_all(fd, req.p, req.len);
    cit_buf_free(&req);
    if (!rc) rc = read_resp(fd, r);
    close(fd);
    return rc;
}

static int request(int port, const char *method, const char *path, const char *key,
                   const char *body, struct resp *r)
{
    return request_h(port, method, path, key, NULL, body, r);
}

/* ---- a server for the tests ---- */

static struct http_server *srv;
static char key[NODE_KEY_LEN + 1];
static int port;

static int max_per_ip = -1;     /* for the next start(); -1: the default */
static int header_timeout = 2;  /* for the next start() */
static const char *policy_file; /* for the next start(); NULL: tests/data/policy_serve.yaml */
static const char *extra_model; /* for the next start(): "ID=PATH" served too, or NULL */
static const char *cors;        /* for the next start(): cors_origins, or NULL */

/* A node with just its state file at path (keys), or NULL. */
static struct node *state_node(const char *path, struct cit_err *err)
{
    struct node_opts no;
    struct node *n = NULL;
    node_opts_defaults(&no);
    snprintf(no.state, sizeof(no.state), "%s", path);
    return node_open(&no, NODE_STATE, &n, err) ? NULL : n;
}

static struct http_opts started; /* what the last start() served with (reloads) */

static int start(int parallel, int queue, int open)
{
    struct http_opts o;
    struct cit_err err;
    struct node *k;
    char id[NODE_KEY_ID_LEN + 1];
    http_opts_defaults(&o);
    o.port = 0;
    o.node.threads = 2;
    o.node.ctx = 1024;
    o.node.parallel = parallel;
    o.node.queue = queue;
    o.open = open;
    o.node.unvetted = 1; /* the test policies allow it; border control has its own tests */
    o.lim.header_timeout_s = header_timeout;
    o.lim.body_timeout_s = 2;
    if (max_per_ip >= 0) o.max_per_ip = max_per_ip;
    snprintf(o.node.state, sizeof(o.node.state), "%s/http-%d.db", t_tmpdir(),
             parallel * 1000 + queue);
    snprintf(o.node.ledger, sizeof(o.node.ledger), "%s/ledger-%d", t_tmpdir(),
             parallel * 1000 + queue);
    snprintf(o.node.policy, sizeof(o.node.policy), "%s",
             policy_file ? policy_file : "tests/data/policy_serve.yaml");
    CHECK_RET(http_opts_set(&o, "model", t_model_path("stories260K.gguf"), &err) == 0, "%s",
              err.msg);
    if (extra_model) CHECK_RET(http_opts_set(&o, "model", extra_model, &err) == 0, "%s", err.msg);
    if (cors) CHECK_RET(http_opts_set(&o, "cors_origins", cors, &err) == 0, "%s", err.msg);
    CHECK_RET((k = state_node(o.node.state, &err)), "%s", err.msg);
    CHECK_RET(node_key_add(k, "tests", "endpoint:* model:*", key, id, &err) == 0, "%s", err.msg);
    node_close(k);
    CHECK_RET(http_server_start(&o, &srv, &err) == 0, "%s", err.msg);
    port = http_server_port(srv);
    started = o;
    return 0;
}

static void stop(void)
{
    http_server_stop(srv);
    srv = NULL;
}

static json_t *body_json(const struct resp *r)
{
    return json_loadb(r->body, r->body_len, 0, NULL);
}

/* The value at a dotted path ("choices.0.text"): object keys, array indexes. */
static json_t *jpath(json_t *j, const char *path)
{
    char part[64];
    const char *p = path;
    while (j && *p) {
        size_t n = strcspn(p, ".");
        snprintf(part, sizeof(part), "%.*s", (int)n, p);
        j = (part[0] >= '0' && part[0] <= '9') ? json_array_get(j, (size_t)atoi(part))
                                               : json_object_get(j, part);
        p += n + (p[n] == '.');
    }
    return j;
}

static const char *jstr(json_t *j, const char *path)
{
    json_t *v = jpath(j, path);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static long long jint(json_t *j, const char *path)
{
    json_t *v = jpath(j, path);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* The text of a completion (non-streaming); caller frees. */
static char *complete(const char *path, const char *body, int *status)
{
    struct resp r;
    json_t *j;
    char *out = NULL;
    *status = -1;
    if (request(port, "POST", path, key, body, &r)) return NULL;
    *status = r.status;
    j = body_json(&r);
    if (j) {
        const char *t =
            strstr(path, "chat") ? jstr(j, "choices.0.message.content") : jstr(j, "choices.0.text");
        if (t) out = cit_strndup(t, strlen(t));
        json_decref(j);
    }
    resp_free(&r);
    return out;
}

/* Greedy text from the CLI: citadel run --temp 0. */
static char *cli_greedy(const char *prompt, int n, int chat)
{
    char cmd[2048], *out = NULL;
    const char *bin = getenv("CITADEL_BIN");
    snprintf(cmd, sizeof(cmd), "%s run -m %s -p '%s' -n %d --temp 0 --ctx 1024 --json %s%s",
             bin ? bin : "build/citadel", t_model_path("stories260K.gguf"), prompt, n,
             chat ? "--chat" : "", t_run_node());
    if (t_run(cmd, &out) != 0) {
        cit_free(out);
        return NULL;
    }
    json_t *j = json_loads(out, 0, NULL);
    cit_free(out);
    out = NULL;
    if (j && jstr(j, "text")) out = cit_strndup(jstr(j, "text"), strlen(jstr(j, "text")));
    json_decref(j);
    return out;
}

/* ---- tests ---- */

void test_http_basics(void)
{
    struct resp r;
    json_t *j;
    if (start(4, 8, 0)) return;
    CHECK(request(port, "GET", "/healthz", NULL, NULL, &r) == 0 && r.status == 200);
    resp_free(&r);
    CHECK(request(port, "GET", "/readyz", NULL, NULL, &r) == 0 && r.status == 200);
    resp_free(&r);
    /* models: key required, the list and one entry */
    CHECK(request(port, "GET", "/v1/models", NULL, NULL, &r) == 0 && r.status == 401);
    CHECK(strcasestr(r.head, "WWW-Authenticate: Bearer"));
    j = body_json(&r);
    CHECK(j && jstr(j, "error.message") && jstr(j, "error.type"));
    json_decref(j);
    resp_free(&r);
    CHECK(request(port, "GET", "/v1/models",
                  "cit_0000000000000000_wrongwrongwrongwrongwrongwrongwrongwrongwro", NULL,
                  &r) == 0 &&
          r.status == 401);
    j = body_json(&r);
    CHECK(j && jstr(j, "error.code") && !strcmp(jstr(j, "error.code"), "invalid_api_key"));
    json_decref(j);
    resp_free(&r);
    CHECK(request(port, "GET", "/v1/models", key, NULL, &r) == 0 && r.status == 200);
    j = body_json(&r);
    CHECK(j && !strcmp(jstr(j, "object"), "list") && !strcmp(jstr(j, "data.0.id"), "stories260K"));
    CHECK(!strcmp(jstr(j, "data.0.object"), "model"));
    json_decref(j);
    resp_free(&r);
    CHECK(request(port, "GET", "/v1/models/stories260K", key, NULL, &r) == 0 && r.status == 200);
    resp_free(&r);
    CHECK(request(port, "GET", "/v1/models/nope", key, NULL, &r) == 0 && r.status == 404);
    resp_free(&r);
    CHECK(request(port, "GET", "/v2/other", key, NULL, &r) == 0 && r.status == 404);
    resp_free(&r);
    CHECK(request(port, "GET", "/v1/chat/completions", key, NULL, &r) == 0 && r.status == 405);
    resp_free(&r);
    /* a completion: shape, usage, finish reason */
    CHECK(request(port, "POST", "/v1/completions", key,
                  "{\"model\":\"stories260K\",\"prompt\":\"Once upon a time\",\"max_tokens\":12,"
                  "\"temperature\":0}",
                  &r) == 0);
    CHECKF(r.status == 200, "status %d: %s", r.status, r.body);
    j = body_json(&r);
    CHECK(j && !strncmp(jstr(j, "id"), "cmpl-", 5) &&
          !strcmp(jstr(j, "object"), "text_completion"));
    CHECK(jint(j, "created") > 1700000000 && !strcmp(jstr(j, "model"), "stories260K"));
    CHECK(jint(j, "usage.prompt_tokens") == 5 && jint(j, "usage.completion_tokens") == 12 &&
          jint(j, "usage.total_tokens") == 17);
    CHECK(!strcmp(jstr(j, "choices.0.finish_reason"), "length"));
    json_decref(j);
    resp_free(&r);
    /* metrics after traffic */
    CHECK(request(port, "GET", "/metrics", key, NULL, &r) == 0 && r.status == 200);
    CHECK(strstr(r.body, "citadel_http_requests_total{endpoint=\"completions\",status=\"200\"} 1"));
    CHECK(strstr(r.body, "citadel_generated_tokens_total{model=\"stories260K\"} 12"));
    CHECK(strstr(r.body, "citadel_prompt_tokens_total{model=\"stories260K\"} 5"));
    CHECK(strstr(r.body, "citadel_time_to_first_token_seconds_count{model=\"stories260K\"} 1"));
    CHECK(strstr(r.body, "citadel_time_per_output_token_seconds_count{model=\"stories260K\"} 11"));
    CHECK(strstr(r.body, "citadel_kv_cache_capacity_tokens{model=\"stories260K\"} 4096"));
    CHECK(strstr(r.body, "citadel_http_requests_total{endpoint=\"models\",status=\"401\"} 2"));
    resp_free(&r);
    stop();
}

struct conc {
    const char *prompt;
    char *got;
    int status;
};

static void *conc_main(void *p)
{
    struct conc *c = p;
    char body[512];
    snprintf(body, sizeof(body),
             "{\"model\":\"stories260K\",\"prompt\":\"%s\",\"max_tokens\":40,\"temperature\":0}",
             c->prompt);
    c->got = complete("/v1/completions", body, &c->status);
    return NULL;
}

void test_http_greedy_matches_run(void)
{
    static const char *prompts[8] = {"Once upon a time",    "The little dog", "Lily and Tom went",
                                     "One day, a bird",     "The sun was",    "Mom said",
                                     "There was a big red", "In the park"};
    struct conc c[8];
    pthread_t th[8];
    char *want[8] = {0};
    if (start(8, 16, 0)) return;
    for (int i = 0; i < 8; i++) {
        want[i] = cli_greedy(prompts[i], 40, 0);
        CHECKF(want[i], "citadel run failed for '%s'", prompts[i]);
    }
    /* one at a time */
    for (int i = 0; i < 2; i++) {
        int st;
        struct conc one = {prompts[i], NULL, 0};
        conc_main(&one);
        st = one.status;
        CHECKF(st == 200 && one.got && !strcmp(one.got, want[i]),
               "alone: '%s' over HTTP, '%s' from citadel run", one.got ? one.got : "", want[i]);
        cit_free(one.got);
    }
    /* eight at once, decoded in one batch */
    for (int i = 0; i < 8; i++) {
        c[i] = (struct conc){prompts[i], NULL, 0};
        pthread_create(&th[i], NULL, conc_main, &c[i]);
    }
    for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 8; i++) {
        CHECKF(c[i].status == 200 && c[i].got && !strcmp(c[i].got, want[i]),
               "concurrent %d: '%s' over HTTP, '%s' from citadel run", i, c[i].got ? c[i].got : "",
               want[i]);
    }
    /* chat: the template applied the same way as run --chat */
    {
        int st;
        char *cw = cli_greedy("Tell me a story", 30, 1);
        char *got = complete("/v1/chat/completions",
                             "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\","
                             "\"content\":\"Tell me a story\"}],\"max_tokens\":30,"
                             "\"temperature\":0}",
                             &st);
        CHECKF(cw && got && st == 200 && !strcmp(cw, got), "chat: '%s' vs run --chat '%s'",
               got ? got : "", cw ? cw : "");
        cit_free(cw);
        cit_free(got);
    }
    t_note("greedy over HTTP equals citadel run --temp 0 for 8 prompts, alone and 8 at once");
    for (int i = 0; i < 8; i++) {
        cit_free(want[i]);
        cit_free(c[i].got);
    }
    stop();
}

/* Parses an event stream: concatenated content, the finish reason, usage. */
struct sse {
    char text[8192];
    size_t len;
    char finish[16];
    int n_events, role_first, done_last, usage_prompt, usage_completion, ids_same;
};

static int parse_sse(const char *body, int chat, struct sse *s)
{
    const char *p = body;
    char first_id[64] = "";
    memset(s, 0, sizeof(*s));
    s->usage_prompt = s->usage_completion = -1;
    s->ids_same = 1;
    while ((p = strstr(p, "data: "))) {
        const char *e = strstr(p, "\n\n");
        json_t *j;
        if (!e) return -1;
        p += 6;
        s->done_last = !strncmp(p, "[DONE]", 6);
        if (s->done_last) {
            p = e + 2;
            continue;
        }
        j = json_loadb(p, (size_t)(e - p), 0, NULL);
        if (!j) return -1;
        s->n_events++;
        if (!first_id[0])
            snprintf(first_id, sizeof(first_id), "%s", jstr(j, "id") ? jstr(j, "id") : "");
        else if (!jstr(j, "id") || strcmp(first_id, jstr(j, "id")))
            s->ids_same = 0;
        if (s->n_events == 1 && chat && jstr(j, "choices.0.delta.role")) s->role_first = 1;
        const char *t = chat ? jstr(j, "choices.0.delta.content") : jstr(j, "choices.0.text");
        if (t && s->len + strlen(t) < sizeof(s->text)) {
            memcpy(s->text + s->len, t, strlen(t));
            s->len += strlen(t);
        }
        if (jstr(j, "choices.0.finish_reason"))
            snprintf(s->finish, sizeof(s->finish), "%s", jstr(j, "choices.0.finish_reason"));
        if (json_object_get(j, "usage") && json_is_object(json_object_get(j, "usage"))) {
            s->usage_prompt = (int)jint(j, "usage.prompt_tokens");
            s->usage_completion = (int)jint(j, "usage.completion_tokens");
        }
        json_decref(j);
        p = e + 2;
    }
    s->text[s->len] = 0;
    return 0;
}

void test_http_stream(void)
{
    struct resp r;
    struct sse s;
    char *plain;
    int st;
    if (start(4, 8, 0)) return;
    plain = complete("/v1/chat/completions",
                     "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"system\",\"content\":"
                     "\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":25,"
                     "\"temperature\":0}",
                     &st);
    CHECK(plain && st == 200);
    CHECK(request(port, "POST", "/v1/chat/completions", key,
                  "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"system\",\"content\":"
                  "\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":25,"
                  "\"temperature\":0,\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
                  &r) == 0);
    CHECK(r.status == 200 && strcasestr(r.head, "Content-Type: text/event-stream"));
    CHECK(parse_sse(r.body, 1, &s) == 0);
    CHECKF(!strcmp(s.text, plain), "streamed '%s', plain '%s'", s.text, plain);
    CHECK(s.role_first && s.done_last && s.ids_same && !strcmp(s.finish, "length"));
    CHECK(s.usage_completion == 25 && s.usage_prompt > 0);
    CHECK(strstr(r.body, "\"object\":\"chat.completion.chunk\""));
    resp_free(&r);
    cit_free(plain);
    /* completions stream without usage */
    CHECK(request(port, "POST", "/v1/completions", key,
                  "{\"model\":\"stories260K\",\"prompt\":\"Once upon a time\",\"max_tokens\":10,"
                  "\"temperature\":0,\"stream\":true}",
                  &r) == 0);
    CHECK(r.status == 200 && parse_sse(r.body, 0, &s) == 0);
    CHECK(s.done_last && s.usage_completion == -1 && !strcmp(s.finish, "length"));
    CHECK(!strstr(r.body, "\"usage\""));
    resp_free(&r);
    stop();
}

/* Code points of a UTF-8 string. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

/* A person as the schema below has it; 0 or -1. */
static int check_person(const char *text)
{
    json_error_t je;
    json_t *j = text ? json_loads(text, 0, &je) : NULL, *v;
    size_t i;
    int ok = j && json_is_object(j) && json_object_size(j) == 4;
    ok = ok && json_is_string(v = json_object_get(j, "name")) &&
         utf8_chars(json_string_value(v)) <= 10;
    ok = ok && json_is_integer(json_object_get(j, "age"));
    ok = ok && json_is_array(v = json_object_get(j, "pets")) && json_array_size(v) <= 3;
    for (i = 0; ok && i < json_array_size(v); i++) {
        const char *p = json_string_value(json_array_get(v, i));
        ok = p && (!strcmp(p, "cat") || !strcmp(p, "dog"));
    }
    v = json_object_get(j, "ok");
    ok = ok && (json_is_boolean(v) || json_is_null(v));
    json_decref(j);
    return ok ? 0 : -1;
}

void test_http_structured(void)
{
    static const char *rf =
        "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"person\","
        "\"strict\":true,\"schema\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":"
        "\"string\",\"maxLength\":10},\"age\":{\"type\":\"integer\"},\"pets\":{\"type\":\"array\","
        "\"items\":{\"enum\":[\"cat\",\"dog\"]},\"maxItems\":3},\"ok\":{\"type\":[\"boolean\","
        "\"null\"]}},\"required\":[\"name\",\"age\",\"pets\",\"ok\"],\"additionalProperties\":"
        "false}}}";
    char body[2048];
    struct resp r;
    struct sse s;
    int st, n_ok = 0;
    if (start(4, 8, 0)) return;
    for (int seed = 0; seed < 6; seed++) {
        int chat = seed % 2;
        char *text;
        json_t *j;
        snprintf(body, sizeof(body),
                 "{\"model\":\"stories260K\",%s,\"max_tokens\":400,\"temperature\":%s,"
                 "\"seed\":%d,%s}",
                 chat ? "\"messages\":[{\"role\":\"user\",\"content\":\"A person, as JSON\"}]"
                      : "\"prompt\":\"Once upon a time\"",
                 seed < 2 ? "0" : "1", seed, rf);
        CHECK(request(port, "POST", chat ? "/v1/chat/completions" : "/v1/completions", key, body,
                      &r) == 0);
        CHECKF(r.status == 200, "%d %s", r.status, r.body);
        j = body_json(&r);
        text = (char *)(chat ? jstr(j, "choices.0.message.content") : jstr(j, "choices.0.text"));
        CHECKF(check_person(text) == 0, "seed %d: not a person: %s", seed, text ? text : r.body);
        CHECKF(!strcmp(jstr(j, "choices.0.finish_reason"), "stop"), "seed %d: %s", seed, r.body);
        n_ok++;
        if (seed == 1) {
            /* the streamed answer is the same text */
            char *plain = cit_strndup(text, strlen(text));
            json_decref(j);
            resp_free(&r);
            snprintf(body, sizeof(body),
                     "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"A "
                     "person, as JSON\"}],\"max_tokens\":400,\"temperature\":0,\"stream\":true,%s}",
                     rf);
            CHECK(plain && request(port, "POST", "/v1/chat/completions", key, body, &r) == 0);
            CHECK(r.status == 200 && parse_sse(r.body, 1, &s) == 0);
            CHECKF(!strcmp(s.text, plain), "streamed '%s', plain '%s'", s.text, plain);
            CHECK(!strcmp(s.finish, "stop"));
            cit_free(plain);
        } else {
            json_decref(j);
        }
        resp_free(&r);
    }
    /* json_object: some object, whatever keys */
    {
        char *t =
            complete("/v1/chat/completions",
                     "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":"
                     "\"JSON please\"}],\"max_tokens\":300,\"temperature\":0,"
                     "\"response_format\":{\"type\":\"json_object\"}}",
                     &st);
        json_error_t je;
        json_t *j;
        size_t off = 0;
        CHECK(t && st == 200);
        while (t[off] == ' ' || t[off] == '\n') off++;
        CHECKF(t[off] == '{', "%s", t);
        /* cut short by max_tokens it may be; what there is is an object's start */
        j = json_loads(t, 0, &je);
        if (j) CHECK(json_is_object(j));
        json_decref(j);
        cit_free(t);
    }
    t_note("%d answers held to a JSON schema (plain, streamed, chat and completions)", n_ok);
    stop();
}

/* logit_bias and the OpenAI penalties reach the sampler: a token pushed
 * up by 100 is all greedy decoding writes, a banned one never appears,
 * and a frequency penalty changes a greedy answer that repeats itself. */
void test_http_bias(void)
{
    struct eng_model *m;
    struct cit_err err = {0};
    char body[512], piece[64], *base, *pen, *t;
    int st, n;
    CHECKF(eng_model_load(t_model_path("stories260K.gguf"), &m, &err) == 0, "%s", err.msg);
    if (start(2, 4, 0)) return;
    base = complete("/v1/completions",
                    "{\"model\":\"stories260K\",\"prompt\":\"Once upon a time\",\"max_tokens\":40,"
                    "\"temperature\":0}",
                    &st);
    CHECK(base && st == 200);
    /* +100 on one token: greedy writes only it */
    n = eng_token_piece(m, 300, 0, piece, sizeof(piece));
    CHECK(n > 0);
    piece[n] = 0;
    t = complete("/v1/completions",
                 "{\"model\":\"stories260K\",\"prompt\":\"Once upon a time\",\"max_tokens\":4,"
                 "\"temperature\":0,\"logit_bias\":{\"300\":100}}",
                 &st);
    CHECK(t && st == 200);
    {
        char want[256] = "";
        for (int i = 0; i < 4; i++) strcat(want, piece);
        CHECKF(!strcmp(t, want), "'%s', want '%s'", t, want);
    }
    cit_free(t);
    /* -100 on greedy's first token (every token with its text): another one */
    {
        struct cit_buf lb = {0};
        char *one = complete("/v1/completions",
                             "{\"model\":\"stories260K\",\"prompt\":\"Once upon a time\","
                             "\"max_tokens\":1,\"temperature\":0}",
                             &st);
        int banned = 0;
        CHECK(one && st == 200 && *one);
        for (int id = 0; id < eng_vocab(m)->n_tokens; id++) {
            n = eng_token_piece(m, id, 0, piece, sizeof(piece));
            if (n > 0 && (size_t)n == strlen(one) && !memcmp(piece, one, (size_t)n))
                cit_buf_printf(&lb, "%s\"%d\":-100", banned++ ? "," : "", id);
        }
        CHECK(banned > 0);
        snprintf(body, sizeof(body),
                 "{\"model\":\"stories260K\",\"prompt\":\"Once upon a time\",\"max_tokens\":1,"
                 "\"temperature\":0,\"logit_bias\":{%s}}",
                 lb.p);
        t = complete("/v1/completions", body, &st);
        CHECKF(t && st == 200 && strcmp(t, one), "banned '%s', got '%s'", one, t ? t : "");
        cit_free(t);
        cit_free(one);
        cit_buf_free(&lb);
    }
    /* a strong frequency penalty: greedy's 40 tokens change, and repeat less */
    pen = complete("/v1/completions",
                   "{\"model\":\"stories260K\",\"prompt\":\"Once upon a time\",\"max_tokens\":40,"
                   "\"temperature\":0,\"frequency_penalty\":2}",
                   &st);
    CHECK(pen && st == 200 && strcmp(pen, base));
    {
        int32_t a[256], b[256];
        int na, nb, ua = 0, ub = 0;
        CHECK(eng_tokenize(m, base, strlen(base), 0, 0, a, 256, &na) == 0);
        CHECK(eng_tokenize(m, pen, strlen(pen), 0, 0, b, 256, &nb) == 0);
        for (int i = 0; i < na; i++) {
            int seen = 0;
            for (int j = 0; j < i; j++) seen |= a[j] == a[i];
            ua += !seen;
        }
        for (int i = 0; i < nb; i++) {
            int seen = 0;
            for (int j = 0; j < i; j++) seen |= b[j] == b[i];
            ub += !seen;
        }
        CHECKF(ub * na > ua * nb, "distinct share: penalised %d/%d, plain %d/%d", ub, nb, ua, na);
    }
    cit_free(pen);
    cit_free(base);
    stop();
    eng_model_free(m);
}

void test_http_tokenize(void)
{
    static const char *const texts[] = {"Once upon a time", "",
                                        "Lily  and\nTom, 42 \xc3\xa9t\xc3\xa9!"};
    struct eng_model *m;
    struct cit_err err = {0};
    struct resp r;
    char body[512], other[NODE_KEY_LEN + 1], oid[NODE_KEY_ID_LEN + 1];
    CHECKF(eng_model_load(t_model_path("stories260K.gguf"), &m, &err) == 0, "%s", err.msg);
    if (start(2, 4, 0)) return;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        int32_t want[256];
        int n;
        json_t *j, *toks;
        struct cit_buf pieces = {0}, joined = {0};
        CHECK(eng_tokenize(m, texts[i], strlen(texts[i]), 1, 0, want, 256, &n) == 0);
        json_t *tx = json_string(texts[i]);
        char *tj = json_dumps(tx, JSON_ENCODE_ANY);
        json_decref(tx);
        snprintf(body, sizeof(body),
                 "{\"model\":\"stories260K\",\"content\":%s,\"add_special\":true}", tj);
        CHECK(request(port, "POST", "/v1/tokenize", key, body, &r) == 0 && r.status == 200);
        j = body_json(&r);
        toks = json_object_get(j, "tokens");
        CHECKF(json_array_size(toks) == (size_t)n, "%s: %s", texts[i], r.body);
        for (int k = 0; k < n; k++) {
            char piece[256];
            int pn;
            CHECK(json_integer_value(json_array_get(toks, k)) == want[k]);
            pn = eng_token_piece(m, want[k], 0, piece, sizeof(piece));
            if (pn > 0) cit_buf_add(&pieces, piece, (size_t)pn);
        }
        /* detokenize: the tokens' text, as the engine writes it */
        cit_buf_printf(&joined, "{\"model\":\"stories260K\",\"tokens\":");
        {
            char *tt = json_dumps(toks, JSON_COMPACT);
            cit_buf_printf(&joined, "%s}", tt);
            free(tt);
        }
        json_decref(j);
        resp_free(&r);
        CHECK(request(port, "POST", "/v1/detokenize", key, joined.p, &r) == 0 && r.status == 200);
        j = body_json(&r);
        CHECKF(jstr(j, "content") && strlen(jstr(j, "content")) == pieces.len &&
                   !memcmp(jstr(j, "content"), pieces.p ? pieces.p : "", pieces.len),
               "%s -> %s", texts[i], r.body);
        json_decref(j);
        resp_free(&r);
        /* with pieces: ids and the pieces that make the text */
        snprintf(body, sizeof(body),
                 "{\"model\":\"stories260K\",\"content\":%s,\"add_special\":true,"
                 "\"with_pieces\":true}",
                 tj);
        free(tj);
        CHECK(request(port, "POST", "/v1/tokenize", key, body, &r) == 0 && r.status == 200);
        j = body_json(&r);
        toks = json_object_get(j, "tokens");
        CHECK(json_array_size(toks) == (size_t)n);
        for (int k = 0; k < n; k++)
            CHECK(json_integer_value(json_object_get(json_array_get(toks, k), "id")) == want[k] &&
                  json_object_get(json_array_get(toks, k), "piece"));
        json_decref(j);
        resp_free(&r);
        cit_buf_free(&pieces);
        cit_buf_free(&joined);
    }
    /* refusals */
    CHECK(request(port, "POST", "/v1/tokenize", key, "{\"model\":\"nope\",\"content\":\"a\"}",
                  &r) == 0 &&
          r.status == 404 && strstr(r.body, "model_not_found"));
    resp_free(&r);
    CHECK(request(port, "POST", "/v1/detokenize", key,
                  "{\"model\":\"stories260K\",\"tokens\":[1,99999]}", &r) == 0 &&
          r.status == 400 && strstr(r.body, "\"param\":\"tokens\""));
    resp_free(&r);
    CHECK(request(port, "POST", "/v1/detokenize", key,
                  "{\"model\":\"stories260K\",\"tokens\":[1,-2]}", &r) == 0 &&
          r.status == 400);
    resp_free(&r);
    CHECK(request(port, "POST", "/v1/tokenize", key, "{\"model\":\"stories260K\"}", &r) == 0 &&
          r.status == 400 && strstr(r.body, "\"param\":\"content\""));
    resp_free(&r);
    CHECK(request(port, "GET", "/v1/tokenize", key, NULL, &r) == 0 && r.status == 405);
    resp_free(&r);
    {
        /* a key without the tokenize scope */
        struct node *k = http_server_node(srv);
        CHECK(node_key_add(k, "tests", "endpoint:chat model:*", other, oid, &err) == 0);
        CHECK(request(port, "POST", "/v1/tokenize", other,
                      "{\"model\":\"stories260K\",\"content\":\"a\"}", &r) == 0 &&
              r.status == 403);
        resp_free(&r);
    }
    stop();
    eng_model_free(m);
}

void test_http_cors(void)
{
    struct resp r;
    const char *chat = "{\"model\":\"stories260K\",\"prompt\":\"Once\",\"max_tokens\":3}";
    /* no origins configured: a browser on another origin is refused */
    if (start(2, 4, 0)) return;
    CHECK(request_h(port, "POST", "/v1/completions", key, "Origin: https://app.example\r\n", chat,
                    &r) == 0);
    CHECKF(r.status == 403 && strstr(r.body, "cors_origin_not_allowed") &&
               !strcasestr(r.head, "Access-Control-Allow-Origin"),
           "%d %s", r.status, r.head);
    resp_free(&r);
    CHECK(request_h(port, "OPTIONS", "/v1/completions", NULL,
                    "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n", NULL,
                    &r) == 0 &&
          r.status == 403);
    resp_free(&r);
    /* the node's own origin, and clients that send none, are served as before */
    CHECK(request_h(port, "POST", "/v1/completions", key, "Origin: http://localhost\r\n", chat,
                    &r) == 0 &&
          r.status == 200 && !strcasestr(r.head, "Access-Control-Allow-Origin"));
    resp_free(&r);
    CHECK(request(port, "OPTIONS", "/v1/completions", key, NULL, &r) == 0 && r.status == 405);
    resp_free(&r);
    stop();

    cors = "https://app.example, http://localhost:3000";
    if (start(2, 4, 0)) return;
    cors = NULL;
    CHECK(request_h(port, "OPTIONS", "/v1/chat/completions", NULL,
                    "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n"
                    "Access-Control-Request-Headers: authorization, content-type\r\n",
                    NULL, &r) == 0);
    CHECKF(r.status == 204 &&
               strcasestr(r.head, "Access-Control-Allow-Origin: https://app.example\r\n") &&
               strcasestr(r.head, "Access-Control-Allow-Methods: POST") &&
               strcasestr(r.head, "Access-Control-Allow-Headers: Authorization, Content-Type") &&
               strcasestr(r.head, "Vary: Origin"),
           "%d %s", r.status, r.head);
    resp_free(&r);
    CHECK(request_h(port, "POST", "/v1/completions", key, "Origin: http://localhost:3000\r\n", chat,
                    &r) == 0);
    CHECKF(r.status == 200 &&
               strcasestr(r.head, "Access-Control-Allow-Origin: http://localhost:3000\r\n") &&
               strcasestr(r.head, "Access-Control-Expose-Headers: X-Citadel-Decision"),
           "%d %s", r.status, r.head);
    resp_free(&r);
    /* streams and errors carry it too; another origin still does not */
    CHECK(request_h(
              port, "POST", "/v1/completions", key, "Origin: https://app.example\r\n",
              "{\"model\":\"stories260K\",\"prompt\":\"Once\",\"max_tokens\":3,\"stream\":true}",
              &r) == 0 &&
          r.status == 200 &&
          strcasestr(r.head, "Access-Control-Allow-Origin: https://app.example"));
    resp_free(&r);
    CHECK(request_h(port, "POST", "/v1/completions", NULL, "Origin: https://app.example\r\n", chat,
                    &r) == 0 &&
          r.status == 401 &&
          strcasestr(r.head, "Access-Control-Allow-Origin: https://app.example"));
    resp_free(&r);
    CHECK(request_h(port, "POST", "/v1/completions", key, "Origin: https://app.example.evil\r\n",
                    chat, &r) == 0 &&
          r.status == 403);
    resp_free(&r);
    stop();
    {
        struct http_opts o;
        struct cit_err err;
        http_opts_defaults(&o);
        CHECK(http_opts_set(&o, "cors_origins", "https://a.example/path", &err) == CIT_EINVAL &&
              strstr(err.msg, "https://a.example/path"));
        CHECK(http_opts_set(&o, "cors_origins", "app.example", &err) == CIT_EINVAL);
        CHECK(http_opts_set(&o, "cors_origins", "*", &err) == 0);
    }
}

void test_http_params(void)
{
    int st;
    char *a, *b, *c, *full;
    struct resp r;
    json_t *j;
    if (start(4, 8, 0)) return;
    /* stop strings: the text ends before the stop, finish_reason stop */
    full = complete("/v1/completions",
                    "{\"model\":\"stories260K\",\"prompt\":\"Once upon a time\",\"max_tokens\":40,"
                    "\"temperature\":0}",
                    &st);
    CHECK(full && strstr(full, "Lily"));
    CHECK(request(port, "POST", "/v1/completions", key,
                  "{\"model\":\"stories260K\",\"prompt\":\"Once upon a time\",\"max_tokens\":40,"
                  "\"temperature\":0,\"stop\":[\"Lily\",\"zzz\"]}",
                  &r) == 0 &&
          r.status == 200);
    j = body_json(&r);
    CHECK(j && !strcmp(jstr(j, "choices.0.finish_reason"), "stop"));
    CHECK(!strncmp(full, jstr(j, "choices.0.text"), (size_t)(strstr(full, "Lily") - full)));
    CHECK(strlen(jstr(j, "choices.0.text")) == (size_t)(strstr(full, "Lily") - full));
    CHECK(jint(j, "usage.completion_tokens") < 40);
    json_decref(j);
    resp_free(&r);
    /* seed: same seed, same text; sampling at temperature 1 */
    const char *seeded = "{\"model\":\"stories260K\",\"prompt\":\"The dog\",\"max_tokens\":30,"
                         "\"temperature\":1,\"seed\":%d}";
    char body[256];
    snprintf(body, sizeof(body), seeded, 42);
    a = complete("/v1/completions", body, &st);
    b = complete("/v1/completions", body, &st);
    snprintf(body, sizeof(body), seeded, 7);
    c = complete("/v1/completions", body, &st);
    CHECK(a && b && c && !strcmp(a, b));
    CHECKF(strcmp(a, c), "seeds 42 and 7 gave the same 30 tokens: '%s'", a);
    /* token-id prompts and usage */
    CHECK(request(port, "POST", "/v1/completions", key,
                  "{\"model\":\"stories260K\",\"prompt\":[1,403,407],\"max_tokens\":3}", &r) == 0 &&
          r.status == 200);
    j = body_json(&r);
    CHECK(jint(j, "usage.prompt_tokens") == 3 && jint(j, "usage.completion_tokens") == 3);
    json_decref(j);
    resp_free(&r);
    cit_free(a);
    cit_free(b);
    cit_free(c);
    cit_free(full);
    stop();
}

void test_http_bad_requests(void)
{
    static const struct {
        const char *path, *body;
        int status;
        const char *param; /* NULL: error.param is null */
    } cases[] = {
        {"/v1/completions", "", 400, NULL},
        {"/v1/completions", "{\"model\":\"stories260K\"", 400, NULL},
        {"/v1/completions", "[1,2]", 400, NULL},
        {"/v1/completions", "{\"prompt\":\"a\"}", 400, "model"},
        {"/v1/completions", "{\"model\":7,\"prompt\":\"a\"}", 400, "model"},
        {"/v1/completions", "{\"model\":\"nope\",\"prompt\":\"a\"}", 404, "model"},
        {"/v1/completions", "{\"model\":\"stories260K\"}", 400, "prompt"},
        {"/v1/completions", "{\"model\":\"stories260K\",\"prompt\":[\"a\",\"b\"]}", 400, "prompt"},
        {"/v1/completions", "{\"model\":\"stories260K\",\"prompt\":[99999]}", 400, "prompt"},
        {"/v1/completions", "{\"model\":\"stories260K\",\"prompt\":\"a\",\"max_tokens\":0}", 400,
         "max_tokens"},
        {"/v1/completions", "{\"model\":\"stories260K\",\"prompt\":\"a\",\"max_tokens\":\"5\"}",
         400, "max_tokens"},
        {"/v1/completions", "{\"model\":\"stories260K\",\"prompt\":\"a\",\"max_tokens\":5000}", 400,
         "max_tokens"},
        {"/v1/completions", "{\"model\":\"stories260K\",\"prompt\":\"a\",\"temperature\":3}", 400,
         "temperature"},
        {"/v1/completions", "{\"model\":\"stories260K\",\"prompt\":\"a\",\"top_p\":0}", 400,
         "top_p"},
        {"/v1/completions", "{\"model\":\"stories260K\",\"prompt\":\"a\",\"n\":3}", 400, "n"},
        {"/v1/completions", "{\"model\":\"stories260K\",\"prompt\":\"a\",\"seed\":1.5}", 400,
         "seed"},
        {"/v1/completions", "{\"model\":\"stories260K\",\"prompt\":\"a\",\"stop\":5}", 400, "stop"},
        {"/v1/completions", "{\"model\":\"stories260K\",\"prompt\":\"a\",\"stop\":[\"\"]}", 400,
         "stop"},
        {"/v1/completions", "{\"model\":\"stories260K\",\"prompt\":\"a\",\"stream\":\"yes\"}", 400,
         "stream"},
        {"/v1/completions",
         "{\"model\":\"stories260K\",\"prompt\":\"a\",\"stream_options\":{\"include_usage\":true}}",
         400, "stream_options"},
        {"/v1/completions", "{\"model\":\"stories260K\",\"prompt\":\"a\",\"echo\":true}", 400,
         "echo"},
        {"/v1/completions",
         "{\"model\":\"stories260K\",\"prompt\":\"a\",\"frequency_penalty\":2.5}", 400,
         "frequency_penalty"},
        {"/v1/completions",
         "{\"model\":\"stories260K\",\"prompt\":\"a\",\"presence_penalty\":\"x\"}", 400,
         "presence_penalty"},
        {"/v1/completions",
         "{\"model\":\"stories260K\",\"prompt\":\"a\",\"logit_bias\":{\"abc\":1}}", 400,
         "logit_bias"},
        {"/v1/completions",
         "{\"model\":\"stories260K\",\"prompt\":\"a\",\"logit_bias\":{\"5\":200}}", 400,
         "logit_bias"},
        {"/v1/completions",
         "{\"model\":\"stories260K\",\"prompt\":\"a\",\"logit_bias\":{\"99999\":1}}", 400,
         "logit_bias"},
        {"/v1/completions", "{\"model\":\"stories260K\",\"prompt\":\"a\",\"logit_bias\":[1]}", 400,
         "logit_bias"},
        {"/v1/completions",
         "{\"model\":\"stories260K\",\"prompt\":\"a\",\"max_tokens\":99999999999999999999999}", 400,
         NULL},
        {"/v1/completions", "{\"model\":\"stories260K\",\"prompt\":\"a\",\"temperature\":1e999}",
         400, NULL},
        {"/v1/completions", "{\"model\":\"stories260K\",\"model\":\"x\",\"prompt\":\"a\"}", 400,
         NULL},
        {"/v1/chat/completions", "{\"model\":\"stories260K\"}", 400, "messages"},
        {"/v1/chat/completions", "{\"model\":\"stories260K\",\"messages\":[]}", 400, "messages"},
        {"/v1/chat/completions", "{\"model\":\"stories260K\",\"messages\":[{\"content\":\"a\"}]}",
         400, "messages[0].role"},
        {"/v1/chat/completions",
         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"tool\",\"content\":\"a\"}]}", 400,
         "messages[0].role"},
        {"/v1/chat/completions",
         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400,
         "messages[0].content"},
        {"/v1/chat/completions",
         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":null}]}", 400,
         "messages[0].content"},
        {"/v1/chat/completions",
         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{"
         "\"role\":\"assistant\"}]}",
         400, "messages[1].content"},
        {"/v1/policy/decide", "{\"model\":\"stories260K\",\"messages\":[]}", 400, "messages"},
        {"/v1/chat/completions",
         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
         "\"image_url\"}]}]}",
         400, "messages[0].content"},
        {"/v1/chat/completions",
         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"response_format\":{\"type\":\"xml\"}}",
         400, "response_format.type"},
        {"/v1/chat/completions",
         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{}}}}",
         400, "response_format.json_schema.name"},
        {"/v1/chat/completions",
         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\","
         "\"schema\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"number\","
         "\"minimum\":0}}}}}}",
         400, "response_format.json_schema.schema"},
        {"/v1/chat/completions",
         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\","
         "\"schema\":{\"anyOf\":[{\"type\":\"object\"},{\"type\":\"object\"}]}}}}",
         400, "response_format.json_schema.schema"},
        {"/v1/chat/completions",
         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"functions\":[{\"name\":\"f\"}]}",
         400, "functions"},
        {"/v1/chat/completions",
         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"function_call\":\"auto\"}",
         400, "function_call"},
        {"/v1/chat/completions",
         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"audio\":{\"voice\":\"alloy\"}}",
         400, "audio"},
        {"/v1/chat/completions",
         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"prediction\":{\"type\":\"content\"}}",
         400, "prediction"},
        {"/v1/chat/completions",
         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"web_search_options\":{}}",
         400, "web_search_options"},
        {"/v1/chat/completions",
         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"modalities\":[\"text\",\"audio\"]}",
         400, "modalities"},
        {"/v1/chat/completions",
         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"store\":true}",
         400, "store"},
        {"/v1/chat/completions",
         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"tool_choice\":\"auto\"}",
         400, "tool_choice"},
        {"/v1/chat/completions",
         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"parallel_tool_calls\":false}",
         400, "parallel_tool_calls"},
        {"/v1/chat/completions",
         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"tools\":[{}]}",
         400, "tools"},
    };
    if (start(2, 4, 0)) return;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct resp r;
        json_t *j, *param;
        CHECK(request(port, "POST", cases[i].path, key, cases[i].body, &r) == 0);
        j = body_json(&r);
        param = json_object_get(json_object_get(j, "error"), "param");
        CHECKF(r.status == cases[i].status, "case %zu (%s): status %d, want %d: %s", i,
               cases[i].body, r.status, cases[i].status, r.body);
        CHECKF(j && jstr(j, "error.message") && jstr(j, "error.type"), "case %zu: %s", i, r.body);
        if (cases[i].param)
            CHECKF(json_is_string(param) && !strcmp(json_string_value(param), cases[i].param),
                   "case %zu: param %s, want %s", i, r.body, cases[i].param);
        else
            CHECKF(json_is_null(param), "case %zu: param should be null: %s", i, r.body);
        json_decref(j);
        resp_free(&r);
    }
    t_note("%zu malformed requests: each 400/404 with the field named",
           sizeof(cases) / sizeof(cases[0]));
    stop();
}

/* A streaming request kept open: returns the socket after the first event. */
static int open_stream(int max_tokens)
{
    char body[256];
    struct cit_buf req = {0};
    char buf[4096];
    int fd = dial(port);
    ssize_t k;
    if (fd < 0) return -1;
    snprintf(body, sizeof(body),
             "{\"model\":\"stories260K\",\"prompt\":\"Once\",\"max_tokens\":%d,\"stream\":true,"
             "\"temperature\":1}",
             max_tokens);
    cit_buf_printf(&req,
                   "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   key, strlen(body), body);
    send_all(fd, req.p, req.len);
    cit_buf_free(&req);
    k = recv(fd, buf, sizeof(buf) - 1, 0);
    if (k <= 0 || strncmp(buf, "HTTP/1.1 200", 12)) {
        close(fd);
        return -1;
    }
    return fd;
}

static int wait_busy(int want, int ms)
{
    for (int i = 0; i < ms; i++) {
        if (http_server_busy(srv) == want) return 1;
        usleep(1000);
    }
    return 0;
}

void test_http_queue_and_disconnect(void)
{
    struct resp r;
    int a, b;
    uint64_t t0;
    if (start(1, 1, 0)) return;
    /* one slot and a queue of one: a third request gets 429 */
    a = open_stream(1000);
    CHECK(a >= 0);
    b = open_stream(1000); /* answered 200 at once, waits in the queue */
    CHECK(b >= 0);
    CHECK(wait_busy(2, 2000));
    CHECK(request(port, "POST", "/v1/completions", key,
                  "{\"model\":\"stories260K\",\"prompt\":\"a\",\"max_tokens\":5}", &r) == 0);
    CHECKF(r.status == 429, "status %d: %s", r.status, r.body);
    CHECK(strcasestr(r.head, "Retry-After: 1"));
    resp_free(&r);
    /* the clients go away mid-stream: both sequences are freed at once */
    t0 = cit_now_ns();
    close(a);
    close(b);
    CHECKF(wait_busy(0, 2000), "still %d busy after the clients left", http_server_busy(srv));
    t_note("two streams freed %.0f ms after their clients hung up",
           (double)(cit_now_ns() - t0) / 1e6);
    /* and the server serves the next one */
    CHECK(request(port, "POST", "/v1/completions", key,
                  "{\"model\":\"stories260K\",\"prompt\":\"a\",\"max_tokens\":5}", &r) == 0 &&
          r.status == 200);
    resp_free(&r);
    CHECK(request(port, "GET", "/metrics", key, NULL, &r) == 0);
    CHECK(strstr(r.body, "citadel_client_disconnects_total 2"));
    CHECK(strstr(r.body, "citadel_queue_rejections_total 1"));
    resp_free(&r);
    stop();
}

static int raw_exchange(const char *data, size_t n, struct resp *r)
{
    int fd = dial(port), rc;
    if (fd < 0) return -1;
    send_all(fd, data, n); /* the server may answer and close before all is sent */
    shutdown(fd, SHUT_WR);
    rc = read_resp(fd, r);
    close(fd);
    return rc;
}

static int healthy(void)
{
    struct resp r;
    int ok = request(port, "GET", "/healthz", NULL, NULL, &r) == 0 && r.status == 200;
    resp_free(&r);
    return ok;
}

/* The OpenAI error object with this status: error.message and error.type
 * strings, error.param and error.code present (null or a string), code
 * equal to code unless NULL, and a JSON content type. */
static int is_error_shape(const struct resp *r, int status, const char *code)
{
    json_t *j = r->body ? body_json(r) : NULL, *e = json_object_get(j, "error"), *p, *c;
    int ok = r->status == status && json_is_object(e) &&
             json_is_string(json_object_get(e, "message")) &&
             json_is_string(json_object_get(e, "type")) && (p = json_object_get(e, "param")) &&
             (json_is_null(p) || json_is_string(p)) && (c = json_object_get(e, "code")) &&
             (json_is_null(c) || json_is_string(c)) &&
             (!code || (json_is_string(c) && !strcmp(json_string_value(c), code))) && r->head &&
             strcasestr(r->head, "Content-Type: application/json");
    json_decref(j);
    return ok;
}

/* Sends data on a new connection (shutting our side after it when shut),
 * reads to the close, and checks the answer is status in the error shape. */
static int answers(const char *what, const char *data, size_t n, int shut, int status,
                   const char *code)
{
    struct resp r;
    int fd = dial(port), ok;
    CHECK_RET(fd >= 0, "%s: cannot connect", what);
    send_all(fd, data, n); /* the server may answer and close before all is sent */
    if (shut) shutdown(fd, SHUT_WR);
    ok = read_resp(fd, &r) == 0;
    close(fd);
    CHECK_RET(ok, "%s: no answer (an empty reply)", what);
    ok = is_error_shape(&r, status, code);
    if (!ok)
        t_fail(__FILE__, __LINE__, "%s: want %d %s, got %d: %s", what, status, code ? code : "",
               r.status, r.body ? r.body : "");
    resp_free(&r);
    return ok ? 0 : -1;
}

/* One response off the front of p[0..n) (Content-Length or chunked): the
 * bytes it took, or 0 when it is not all there yet. */
static size_t parse_one(const char *p, size_t n, struct resp *r)
{
    const char *sep = memmem(p, n, "\r\n\r\n", 4), *q, *end = p + n, *cl;
    struct cit_buf body = {0};
    char *head;
    memset(r, 0, sizeof(*r));
    if (!sep) return 0;
    head = cit_strndup(p, (size_t)(sep - p));
    q = sep + 4;
    if (strcasestr(head, "transfer-encoding: chunked")) {
        for (;;) {
            const char *e = memmem(q, (size_t)(end - q), "\r\n", 2);
            unsigned long k;
            if (!e) goto partial;
            k = strtoul(q, NULL, 16);
            q = e + 2;
            if (!k) {
                if (end - q < 2) goto partial;
                q += 2;
                break;
            }
            if ((size_t)(end - q) < k + 2) goto partial;
            cit_buf_add(&body, q, k);
            q += k + 2;
        }
    } else {
        size_t k = (cl = strcasestr(head, "content-length:")) ? strtoul(cl + 15, NULL, 10) : 0;
        if ((size_t)(end - q) < k) goto partial;
        cit_buf_add(&body, q, k);
        q += k;
    }
    r->head = head;
    r->status = atoi(head + 9);
    r->body_len = body.len;
    r->body = body.p ? body.p : cit_strndup("", 0);
    return (size_t)(q - p);
partial:
    cit_free(head);
    cit_buf_free(&body);
    return 0;
}

/* A kept-alive connection and what it has received. */
struct kconn {
    int fd;
    struct cit_buf in;
    size_t off;
};

static int read_one(struct kconn *k, struct resp *r)
{
    for (;;) {
        char buf[8192];
        ssize_t n;
        size_t used = k->in.len > k->off ? parse_one(k->in.p + k->off, k->in.len - k->off, r) : 0;
        if (used) {
            k->off += used;
            return 0;
        }
        if ((n = recv(k->fd, buf, sizeof(buf), 0)) <= 0) return -1;
        cit_buf_add(&k->in, buf, (size_t)n);
    }
}

static void kconn_close(struct kconn *k)
{
    if (k->fd >= 0) close(k->fd);
    cit_buf_free(&k->in);
    memset(k, 0, sizeof(*k));
    k->fd = -1;
}

/* The server closed the socket (with an answer or without). */
static int closed_by_server(int fd, int ms)
{
    char buf[512];
    struct pollfd p = {fd, POLLIN, 0};
    ssize_t k;
    if (poll(&p, 1, ms) != 1) return 0;
    while ((k = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) continue;
    return k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

void test_http_hostile(void)
{
    struct resp r;
    struct cit_buf b = {0};
    int slow[6];
    if (start(2, 4, 0)) return;
    /* a truncated body: the client promises 100 bytes, sends 10 and stops */
    {
        char req[512];
        int fd = dial(port);
        snprintf(req, sizeof(req),
                 "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                 "Content-Length: 100\r\n\r\n{\"model\":",
                 key);
        CHECK(fd >= 0 && send_all(fd, req, strlen(req)) == 0);
        close(fd);
    }
    CHECK(healthy());
    /* an oversized body, announced and not */
    cit_buf_printf(&b,
                   "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                   "Content-Length: 10000000\r\n\r\n",
                   key);
    CHECK(raw_exchange(b.p, b.len, &r) == 0 && is_error_shape(&r, 413, "request_too_large"));
    resp_free(&r);
    cit_buf_free(&b);
    cit_buf_printf(&b,
                   "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n",
                   key);
    for (int i = 0; i < 300; i++) {
        cit_buf_printf(&b, "1000\r\n");
        for (int k = 0; k < 4096; k++) cit_buf_add(&b, " ", 1);
        cit_buf_printf(&b, "\r\n");
    }
    cit_buf_printf(&b, "0\r\n\r\n");
    /* read to its end and dropped, then answered: no reset mid-upload */
    CHECK(raw_exchange(b.p, b.len, &r) == 0);
    CHECKF(is_error_shape(&r, 413, "request_too_large"), "chunked 1.2 MB body: %d %s", r.status,
           r.body);
    CHECK(healthy());
    resp_free(&r);
    cit_buf_free(&b);
    /* invalid UTF-8, deep nesting, huge numbers */
    CHECK(request(port, "POST", "/v1/completions", key,
                  "{\"model\":\"stories260K\",\"prompt\":\"\xff\xfe bad\"}", &r) == 0 &&
          r.status == 400);
    resp_free(&r);
    for (int i = 0; i < 200000; i++) cit_buf_add(&b, "[", 1);
    CHECK(request(port, "POST", "/v1/completions", key, b.p, &r) == 0);
    CHECKF(r.status == 400 || r.status == 413, "deep nesting: %d", r.status);
    resp_free(&r);
    cit_buf_free(&b);
    cit_buf_printf(&b, "{\"model\":\"stories260K\",\"prompt\":\"a\",\"seed\":");
    for (int i = 0; i < 5000; i++) cit_buf_add(&b, "9", 1);
    cit_buf_printf(&b, "}");
    CHECK(request(port, "POST", "/v1/completions", key, b.p, &r) == 0 && r.status == 400);
    resp_free(&r);
    cit_buf_free(&b);
    /* too many headers, and one header too large */
    cit_buf_printf(&b, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 100; i++) cit_buf_printf(&b, "X-H%d: v\r\n", i);
    cit_buf_printf(&b, "\r\n");
    CHECK(raw_exchange(b.p, b.len, &r) == 0 && r.status == 431);
    resp_free(&r);
    cit_buf_free(&b);
    cit_buf_printf(&b, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
    for (int i = 0; i < 40000; i++) cit_buf_add(&b, "a", 1);
    cit_buf_printf(&b, "\r\n\r\n");
    CHECK(raw_exchange(b.p, b.len, &r) == 0); /* by the lobby, before MHD sees it */
    CHECKF(is_error_shape(&r, 431, "headers_too_large"), "40 kB header: %d %s", r.status, r.body);
    resp_free(&r);
    cit_buf_free(&b);
    /* garbage instead of HTTP */
    CHECK(raw_exchange("\x16\x03\x01garbage\r\n\r\n", 14, &r) == 0);
    CHECK(is_error_shape(&r, 400, "malformed_request"));
    resp_free(&r);
    /* slowloris: six clients trickle their request heads */
    for (int i = 0; i < 6; i++) {
        slow[i] = dial(port);
        CHECK(slow[i] >= 0 && send_all(slow[i], "POST /v1/comp", 13) == 0);
    }
    for (int t = 0; t < 3; t++) {
        CHECK(healthy()); /* others are served meanwhile */
        for (int i = 0; i < 6; i++) send(slow[i], "l", 1, MSG_NOSIGNAL);
        usleep(400000);
    }
    usleep(1500000); /* past the 2 s head deadline: each is answered 408 and closed */
    for (int i = 0; i < 6; i++) {
        int got = read_resp(slow[i], &r) == 0 && is_error_shape(&r, 408, "request_timeout");
        CHECKF(got, "slow client %d: %d %s", i, r.status, r.body ? r.body : "(no answer)");
        resp_free(&r);
        close(slow[i]);
    }
    CHECK(request(port, "GET", "/metrics", key, NULL, &r) == 0);
    CHECK(strstr(r.body, "citadel_slow_clients_dropped_total 6"));
    resp_free(&r);
    CHECK(healthy());
    stop();
    /* one address may hold at most max_per_ip connections */
    max_per_ip = 2;
    if (start(2, 4, 0)) return;
    max_per_ip = -1;
    for (int i = 0; i < 3; i++) {
        slow[i] = dial(port);
        CHECK(slow[i] >= 0 && send_all(slow[i], "GET /he", 7) == 0);
    }
    {
        /* well inside the 2 s head deadline: only the limit can close it */
        char c;
        struct pollfd p = {slow[2], POLLIN, 0}, q = {slow[0], POLLIN, 0};
        CHECKF(poll(&p, 1, 500) == 1 && recv(slow[2], &c, 1, 0) <= 0,
               "a third connection from one address was kept");
        CHECKF(poll(&q, 1, 0) == 0, "the first connection was closed too");
    }
    for (int i = 0; i < 3; i++) close(slow[i]);
    usleep(100000);
    CHECK(healthy()); /* the slots came back */
    stop();
}

/* ---- keep-alive, pipelining, every error in the OpenAI shape, a flood ---- */

void test_http_keepalive(void)
{
    static const char *paths[] = {"/healthz", "/v1/models", "/readyz", "/v1/models/stories260K"};
    const char *body = "{\"model\":\"stories260K\",\"prompt\":\"Once\",\"max_tokens\":3,"
                       "\"temperature\":0}";
    const char *stream = "{\"model\":\"stories260K\",\"prompt\":\"Once\",\"max_tokens\":3,"
                         "\"temperature\":0,\"stream\":true}";
    struct kconn k = {.fd = -1};
    struct cit_buf req = {0};
    struct resp r;
    json_t *j;
    if (start(2, 4, 0)) return;
    /* GET answers keep the connection open: four in turn, then a POST, on one */
    k.fd = dial(port);
    CHECK(k.fd >= 0);
    for (int i = 0; i < 4; i++) {
        cit_buf_free(&req);
        cit_buf_printf(&req, "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n",
                       paths[i], key);
        CHECK(send_all(k.fd, req.p, req.len) == 0);
        CHECKF(read_one(&k, &r) == 0, "GET %s: no answer on the kept connection", paths[i]);
        CHECKF(r.status == 200 && !strcasestr(r.head, "Connection: close"), "GET %s: %d %s",
               paths[i], r.status, r.head);
        resp_free(&r);
    }
    cit_buf_free(&req);
    cit_buf_printf(&req,
                   "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                   "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                   key, strlen(body), body);
    CHECK(send_all(k.fd, req.p, req.len) == 0 && read_one(&k, &r) == 0);
    CHECKF(r.status == 200 && !strcasestr(r.head, "Connection: close"), "POST: %d %s", r.status,
           r.head);
    resp_free(&r);
    /* an error on a GET keeps it too */
    CHECK(send_all(k.fd, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 32) == 0 &&
          read_one(&k, &r) == 0);
    CHECK(is_error_shape(&r, 404, "not_found") && !strcasestr(r.head, "Connection: close"));
    resp_free(&r);
    kconn_close(&k);

    /* pipelining: five requests in one write, five answers in order */
    cit_buf_free(&req);
    cit_buf_printf(&req, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cit_buf_printf(&req,
                   "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   key, strlen(body), body);
    cit_buf_printf(&req, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    cit_buf_printf(&req,
                   "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   key, strlen(stream), stream);
    cit_buf_printf(&req,
                   "GET /v1/models/stories260K HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                   "\r\n",
                   key);
    k.fd = dial(port);
    CHECK(k.fd >= 0 && send_all(k.fd, req.p, req.len) == 0);
    cit_buf_free(&req);
    CHECK(read_one(&k, &r) == 0);
    CHECKF(r.status == 200 && strstr(r.body, "\"ok\""), "1st: %d %s", r.status, r.body);
    resp_free(&r);
    CHECK(read_one(&k, &r) == 0);
    j = body_json(&r);
    CHECKF(r.status == 200 && jstr(j, "object") && !strcmp(jstr(j, "object"), "text_completion") &&
               jint(j, "usage.completion_tokens") == 3,
           "2nd: %d %s", r.status, r.body);
    json_decref(j);
    resp_free(&r);
    CHECK(read_one(&k, &r) == 0);
    CHECKF(is_error_shape(&r, 404, "not_found"), "3rd: %d %s", r.status, r.body);
    resp_free(&r);
    CHECK(read_one(&k, &r) == 0);
    CHECKF(r.status == 200 && strstr(r.body, "data: [DONE]"), "4th (a stream): %d %s", r.status,
           r.body);
    resp_free(&r);
    CHECK(read_one(&k, &r) == 0);
    j = body_json(&r);
    CHECKF(r.status == 200 && jstr(j, "id") && !strcmp(jstr(j, "id"), "stories260K"), "5th: %d %s",
           r.status, r.body);
    json_decref(j);
    resp_free(&r);
    kconn_close(&k);
    t_note("keep-alive on GET, POST and a 404; five pipelined requests answered in order");
    stop();
}

void test_http_error_shapes(void)
{
    struct cit_buf b = {0};
    struct kconn ka = {.fd = -1}, kh = {.fd = -1};
    struct resp r;
    int late[3];
    uint64_t t0;
    char req[1024];
    if (start(2, 4, 0)) return;
    /* the 408s take the 2 s deadlines: started first, read last */
    t0 = cit_now_ns();
    for (int i = 0; i < 3; i++) late[i] = dial(port);
    snprintf(req, sizeof(req), "GET /healthz HTTP/1.1\r\nHo");
    CHECK(late[0] >= 0 && send_all(late[0], req, strlen(req)) == 0); /* the head stops */
    snprintf(req, sizeof(req),
             "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             "Content-Length: 100\r\n\r\n{\"model\":",
             key);
    CHECK(late[1] >= 0 && send_all(late[1], req, strlen(req)) == 0); /* the body stops */
    snprintf(req, sizeof(req),
             "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
             key);
    CHECK(late[2] >= 0 && send_all(late[2], req, strlen(req)) == 0); /* no last chunk */
    /* a keep-alive connection whose second head stops, and one whose second
     * request line is HTTP/3.0: MHD's side of the same answers */
    kh.fd = dial(port);
    ka.fd = dial(port);
    CHECK(kh.fd >= 0 && ka.fd >= 0);
    snprintf(req, sizeof(req),
             "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHo");
    CHECK(send_all(kh.fd, req, strlen(req)) == 0);
    snprintf(req, sizeof(req),
             "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/3.0\r\nHost: x\r\n\r\n");
    CHECK(send_all(ka.fd, req, strlen(req)) == 0);
    CHECK(read_one(&ka, &r) == 0 && r.status == 200);
    resp_free(&r);
    CHECK(read_one(&ka, &r) == 0);
    CHECKF(is_error_shape(&r, 505, "http_version_not_supported"), "keep-alive HTTP/3.0: %d %s",
           r.status, r.body);
    resp_free(&r);
    kconn_close(&ka);

#define ANSWERS(what, data, shut, status, code)                                                    \
    do {                                                                                           \
        if (answers(what, data, strlen(data), shut, status, code)) return;                         \
    } while (0)
    ANSWERS("404", "GET /v2/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 0, 404,
            "not_found");
    ANSWERS("405", "PUT /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 0, 405, NULL);
    ANSWERS("505", "GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 0, 505,
            "http_version_not_supported");
    ANSWERS("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 1, 505,
            "http_version_not_supported");
    ANSWERS("no version", "GET /healthz\r\n\r\n", 1, 400, "malformed_request");
    ANSWERS("TLS on the plain port", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 0, 400,
            "malformed_request");
    ANSWERS("a bad header line", "GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 0,
            400, "malformed_request");
    ANSWERS("no Host", "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 0, 400,
            "invalid_host");
    ANSWERS("two Hosts", "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
            0, 400, "invalid_host");
    CHECK(raw_exchange("GET /healthz HTTP/1.0\r\n\r\n", 25, &r) == 0 && r.status == 200);
    resp_free(&r);
    snprintf(req, sizeof(req),
             "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
             key);
    ANSWERS("malformed chunks", req, 0, 400, "invalid_chunked_encoding");
    snprintf(req, sizeof(req),
             "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             "Transfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n0\r\n\r\n",
             key);
    ANSWERS("a chunk longer than its size", req, 0, 400, "invalid_chunked_encoding");
    snprintf(req, sizeof(req),
             "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             "Content-Length: 12abc\r\n\r\n",
             key);
    ANSWERS("Content-Length not a number", req, 0, 400, "invalid_content_length");
    snprintf(req, sizeof(req),
             "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             "Transfer-Encoding: gzip\r\n\r\n",
             key);
    ANSWERS("Transfer-Encoding gzip", req, 1, 501, "unsupported_transfer_encoding");
    snprintf(req, sizeof(req),
             "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
             key);
    ANSWERS("Content-Length and chunked", req, 1, 400, "invalid_framing");
    snprintf(req, sizeof(req),
             "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             "Content-Length: 10000000\r\n\r\n",
             key);
    ANSWERS("413 announced", req, 1, 413, "request_too_large");
    /* 413 for a body sent whole: read to its end first, so the client sees the answer */
    cit_buf_printf(&b,
                   "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                   "Content-Length: %u\r\n\r\n",
                   key, (1u << 20) + 5000);
    for (unsigned i = 0; i < (1u << 20) + 5000; i++) cit_buf_add(&b, " ", 1);
    CHECK(answers("413 sent whole", b.p, b.len, 1, 413, "request_too_large") == 0);
    cit_buf_free(&b);
    cit_buf_printf(&b,
                   "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n",
                   key);
    for (int i = 0; i < 260; i++) {
        cit_buf_printf(&b, "1000\r\n");
        for (int k = 0; k < 4096; k++) cit_buf_add(&b, "x", 1);
        cit_buf_printf(&b, "\r\n");
    }
    cit_buf_printf(&b, "0\r\n\r\n");
    CHECK(answers("413 chunked", b.p, b.len, 1, 413, "request_too_large") == 0);
    cit_buf_free(&b);
    cit_buf_printf(&b, "GET /");
    for (int i = 0; i < 20000; i++) cit_buf_add(&b, "a", 1);
    cit_buf_printf(&b, " HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(answers("414", b.p, b.len, 1, 414, "uri_too_long") == 0);
    cit_buf_free(&b);
    cit_buf_printf(&b, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
    for (int i = 0; i < 40000; i++) cit_buf_add(&b, "a", 1);
    cit_buf_printf(&b, "\r\n\r\n");
    CHECK(answers("431, a 40 kB header", b.p, b.len, 1, 431, "headers_too_large") == 0);
    cit_buf_free(&b);
    cit_buf_printf(&b, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (int i = 0; i < 100; i++) cit_buf_printf(&b, "X-H%d: v\r\n", i);
    cit_buf_printf(&b, "\r\n");
    CHECK(answers("431, 100 header lines", b.p, b.len, 0, 431, NULL) == 0);
    cit_buf_free(&b);
    ANSWERS("401", "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 1,
            401, NULL);
#undef ANSWERS

    /* now the 408s, each in the shape and after its deadline */
    for (int i = 0; i < 3; i++) {
        int got = read_resp(late[i], &r) == 0 && is_error_shape(&r, 408, "request_timeout");
        CHECKF(got, "408 case %d: %d %s", i, r.status, r.body ? r.body : "(no answer)");
        resp_free(&r);
        close(late[i]);
    }
    CHECK(read_one(&kh, &r) == 0 && r.status == 200);
    resp_free(&r);
    CHECK(read_one(&kh, &r) == 0);
    CHECKF(is_error_shape(&r, 408, "request_timeout"), "keep-alive head: %d %s", r.status, r.body);
    resp_free(&r);
    kconn_close(&kh);
    CHECKF(cit_now_ns() - t0 > 1500000000ull, "the 408s came before the 2 s deadlines");
    t_note(
        "404, 405, 400 (9 kinds), 401, 408 (4 kinds), 413 (3 kinds), 414, 431 (2), 501, 505 (3): "
        "all in the OpenAI error shape, none empty");
    stop();
}

/* A connection from another loopback address (an attacker's many hosts). */
static int dial_from(int p, const char *src)
{
    struct sockaddr_in a = {0}, me = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_family = me.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)p);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    inet_pton(AF_INET, src, &me.sin_addr);
    if (fd < 0) return -1;
    if (bind(fd, (struct sockaddr *)&me, sizeof(me)) ||
        connect(fd, (struct sockaddr *)&a, sizeof(a))) {
        close(fd);
        return -1;
    }
    return fd;
}

/* 300 slow sockets from 15 addresses, with the default connection limits
 * (max_per_ip 32, max_unauthenticated 64, 256 connections) and a head
 * deadline longer than the test, so that only the budgets hold: every
 * health probe, every request with a key and a kept-alive keyed connection
 * are served while the sockets trickle their heads (or send nothing) and
 * come back as soon as they are closed. */
void test_http_slow_flood(void)
{
    enum { N = 300, ADDRS = 15, ROUNDS = 15 };
    static const char trickle[] = "GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Pad: ";
    int fds[N], sent[N], kept = 0, probes = 0, keyed = 0, alive = 0, redials = 0;
    int completions = 0, completed = 0;
    struct kconn ka = {.fd = -1};
    struct resp r;
    struct rlimit rl;
    char src[32], req[512];
    /* 300 sockets here and up to 300 on the server's side, in one process */
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < 4096) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    header_timeout = 60;
    if (start(2, 4, 0)) return;
    header_timeout = 2;
    CHECK(started.max_per_ip == 32 && started.max_unauth == 64 && started.max_connections == 256);
    ka.fd = dial(port);
    snprintf(req, sizeof(req),
             "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", key);
    CHECK(ka.fd >= 0 && send_all(ka.fd, req, strlen(req)) == 0 && read_one(&ka, &r) == 0 &&
          r.status == 200);
    resp_free(&r);
    for (int i = 0; i < N; i++) {
        snprintf(src, sizeof(src), "127.0.1.%d", 1 + i % ADDRS);
        fds[i] = dial_from(port, src);
        sent[i] = 0;
        CHECKF(fds[i] >= 0, "socket %d from %s: %s", i, src, strerror(errno));
        if (i % 2 == 0) sent[i] = send(fds[i], trickle, 1, MSG_NOSIGNAL) == 1;
    }
    usleep(300000);
    for (int i = 0; i < N; i++) kept += !closed_by_server(fds[i], 0);
    CHECKF(kept > 0 && kept <= 64, "%d of %d keyless sockets kept (the budget is 64)", kept, N);
    for (int round = 0; round < ROUNDS; round++) {
        /* the attacker keeps at it: a byte more on the tricklers, and every
         * closed socket comes back */
        for (int i = 0; i < N; i++) {
            if (closed_by_server(fds[i], 0)) {
                close(fds[i]);
                snprintf(src, sizeof(src), "127.0.1.%d", 1 + i % ADDRS);
                fds[i] = dial_from(port, src);
                sent[i] = 0;
                redials++;
                CHECKF(fds[i] >= 0, "re-dial %d: %s", i, strerror(errno));
            }
            if (i % 2 == 0 && sent[i] < (int)sizeof(trickle) - 1)
                sent[i] += send(fds[i], trickle + sent[i], 1, MSG_NOSIGNAL) == 1;
            else if (i % 2 == 0)
                send(fds[i], "a", 1, MSG_NOSIGNAL);
        }
        probes += healthy();
        if (request(port, "GET", "/v1/models", key, NULL, &r) == 0 && r.status == 200) keyed++;
        resp_free(&r);
        if (round % 3 == 0) {
            int st;
            char *t =
                complete("/v1/completions",
                         "{\"model\":\"stories260K\",\"prompt\":\"Once\",\"max_tokens\":2}", &st);
            completions++;
            completed += st == 200 && t;
            cit_free(t);
        }
        snprintf(req, sizeof(req), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        if (send_all(ka.fd, req, strlen(req)) == 0 && read_one(&ka, &r) == 0 && r.status == 200)
            alive++;
        resp_free(&r);
        usleep(100000);
    }
    CHECKF(probes == ROUNDS, "%d of %d health probes answered during the flood", probes, ROUNDS);
    CHECKF(keyed == ROUNDS, "requests with a key: %d of %d answered", keyed, ROUNDS);
    CHECKF(alive == ROUNDS, "the kept-alive keyed connection: %d of %d answered", alive, ROUNDS);
    CHECKF(completed == completions, "completions: %d of %d", completed, completions);
    CHECK(request(port, "GET", "/metrics", key, NULL, &r) == 0 && r.status == 200);
    CHECKF(strstr(r.body, "citadel_connections_refused_total 0") &&
               !strstr(r.body, "citadel_connections_evicted_total 0"),
           "%s", strstr(r.body, "citadel_connections_refused") ?: r.body);
    resp_free(&r);
    t_note("%d slow keyless sockets (%d re-dials after evictions) from %d addresses; %d kept at "
           "once; %d probes, %d keyed requests, %d completions and a kept-alive keyed connection "
           "all served",
           N, redials, ADDRS, kept, probes, keyed, completed);
    for (int i = 0; i < N; i++) close(fds[i]);
    kconn_close(&ka);
    stop();
}

void test_http_keys_and_scopes(void)
{
    struct node *k;
    struct cit_err err;
    char k2[NODE_KEY_LEN + 1], id2[NODE_KEY_ID_LEN + 1], k3[NODE_KEY_LEN + 1],
        id3[NODE_KEY_ID_LEN + 1], norm[1024];
    struct resp r;
    if (start(2, 4, 0)) return;
    CHECK(state_node(t_tmpdir(), &err) == NULL); /* a directory is no database */
    /* the serving node's keys: one connection to the state file per process */
    k = http_server_node(srv);
    CHECK(node_key_add(k, "bad tenant!", "model:*", k2, id2, &err) == CIT_EINVAL);
    CHECK(node_key_add(k, "t2", "endpoint:foo", k2, id2, &err) == CIT_EINVAL);
    CHECK(strstr(err.msg, "endpoint:foo"));
    CHECK(node_scopes_parse("endpoint:chat,model:a  model:b", norm, sizeof(norm), &err) == 0 &&
          !strcmp(norm, "endpoint:chat model:a model:b"));
    CHECK(node_scope_allows(norm, "chat", "a") && !node_scope_allows(norm, "chat", "c") &&
          !node_scope_allows(norm, "completions", "a"));
    CHECK(node_key_add(k, "t2", "endpoint:completions model:other", k2, id2, &err) == 0);
    CHECK(node_key_add(k, "t3", NODE_DEFAULT_SCOPES, k3, id3, &err) == 0);
    CHECK(strlen(k2) == NODE_KEY_LEN && strncmp(k2, k3, 20));
    /* least privilege: the model and the endpoint are checked */
    CHECK(request(port, "POST", "/v1/completions", k2,
                  "{\"model\":\"stories260K\",\"prompt\":\"a\",\"max_tokens\":2}", &r) == 0);
    CHECK(r.status == 403 && strstr(r.body, "\"param\":\"model\""));
    resp_free(&r);
    CHECK(request(port, "GET", "/v1/models", k2, NULL, &r) == 0 && r.status == 403);
    resp_free(&r);
    /* the dry run holds the key to the same models as the request */
    {
        char k4[NODE_KEY_LEN + 1], id4[NODE_KEY_ID_LEN + 1];
        const char *body = "{\"model\":\"stories260K\",\"prompt\":\"a\"}";
        CHECK(node_key_add(k, "t2", "endpoint:policy model:other", k4, id4, &err) == 0);
        CHECK(request(port, "POST", "/v1/policy/decide", k4, body, &r) == 0);
        CHECKF(r.status == 403 && strstr(r.body, "insufficient_scope"), "%d %s", r.status, r.body);
        resp_free(&r);
        CHECK(request(port, "POST", "/v1/policy/decide", k4,
                      "{\"model\":\"nope\",\"prompt\":\"a\"}", &r) == 0);
        CHECKF(r.status == 404, "%d %s", r.status, r.body);
        resp_free(&r);
        CHECK(node_key_add(k, "t2", "endpoint:policy model:stories260K", k4, id4, &err) == 0);
        CHECK(request(port, "POST", "/v1/policy/decide", k4, body, &r) == 0);
        CHECKF(r.status == 200 && strstr(r.body, "\"action\""), "%d %s", r.status, r.body);
        resp_free(&r);
    }
    CHECK(request(port, "GET", "/metrics", k3, NULL, &r) == 0 && r.status == 403);
    resp_free(&r);
    CHECK(request(port, "POST", "/v1/completions", k3,
                  "{\"model\":\"stories260K\",\"prompt\":\"a\",\"max_tokens\":2}", &r) == 0 &&
          r.status == 200);
    resp_free(&r);
    /* revocation takes effect on the next request, no restart */
    CHECK(node_key_revoke(k, id3, &err) == 0);
    CHECK(node_key_revoke(k, id3, &err) == CIT_ENOENT);
    CHECK(request(port, "POST", "/v1/completions", k3,
                  "{\"model\":\"stories260K\",\"prompt\":\"a\",\"max_tokens\":2}", &r) == 0 &&
          r.status == 401);
    resp_free(&r);
    /* a key with one character changed is refused */
    k2[NODE_KEY_LEN - 1] = k2[NODE_KEY_LEN - 1] == 'A' ? 'B' : 'A';
    CHECK(request(port, "GET", "/v1/models", k2, NULL, &r) == 0 && r.status == 401);
    resp_free(&r);
    /* the file holds no key */
    {
        char path[512];
        size_t n;
        char *db;
        snprintf(path, sizeof(path), "%s/http-2004.db", t_tmpdir());
        db = t_read_file(path, &n);
        CHECK(db);
        CHECK(!memmem(db, n, k3 + 20, 30) && !memmem(db, n, key + 20, 30));
        cit_free(db);
    }
    stop();
}

struct mixed {
    int seed, ok, n;
};

static void *mixed_main(void *p)
{
    struct mixed *m = p;
    uint64_t s = (uint64_t)m->seed;
    for (int i = 0; i < m->n; i++) {
        struct resp r;
        int kind = (int)(t_rand(&s) % 6), rc;
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"model\":\"stories260K\",\"prompt\":\"Once\",\"max_tokens\":%d%s}",
                 (int)(t_rand(&s) % 16) + 1, kind == 1 ? ",\"stream\":true" : "");
        if (kind <= 1)
            rc = request(port, "POST", "/v1/completions", key, body, &r);
        else if (kind == 2)
            rc = request(port, "POST", "/v1/chat/completions", key,
                         "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":"
                         "\"hi\"}],\"max_tokens\":4,\"stream\":true}",
                         &r);
        else if (kind == 3)
            rc = request(port, "POST", "/v1/completions", key, "{\"model\":", &r);
        else if (kind == 4)
            rc = request(port, "GET", "/v1/models", key, NULL, &r);
        else
            rc = request(port, "GET", "/metrics", key, NULL, &r);
        if (rc == 0 && (r.status == 200 || (kind == 3 && r.status == 400) || r.status == 429))
            m->ok++;
        if (rc == 0) resp_free(&r);
        if (kind == 0 && i % 7 == 0) { /* and now and then a client that leaves */
            int fd = open_stream(200);
            if (fd >= 0) close(fd);
        }
    }
    return NULL;
}

void test_http_mixed_load(void)
{
    struct mixed m[6];
    pthread_t th[6];
    int ok = 0;
    if (start(4, 16, 0)) return;
    for (int i = 0; i < 6; i++) {
        m[i] = (struct mixed){i + 1, 0, 50};
        pthread_create(&th[i], NULL, mixed_main, &m[i]);
    }
    for (int i = 0; i < 6; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 6; i++) ok += m[i].ok;
    CHECKF(ok == 300, "%d of 300 mixed requests answered as expected", ok);
    CHECK(wait_busy(0, 3000));
    t_note("300 mixed requests from 6 clients (leaks are checked at exit)");
    stop();
}

static int conf_cb(void *user, const char *k, const char *value, struct cit_err *err)
{
    return http_opts_set(user, k, value, err);
}

void test_http_config(void)
{
    struct http_opts o;
    struct cit_err err;
    char path[512];
    FILE *f;
    snprintf(path, sizeof(path), "%s/c.conf", t_tmpdir());
    f = fopen(path, "w");
    fputs("# a node\nport = 9001\nhost = \"::1\"   # loopback\nmodel = a=/x/y.gguf\n"
          "model = /m/TinyLlama-1.1B.Q4_0.gguf\nopen = true\nmax_body = 4096\n",
          f);
    fclose(f);
    http_opts_defaults(&o);
    CHECKF(cit_conf_load(path, conf_cb, &o, &err) == 0, "%s", err.msg);
    CHECK(o.port == 9001 && !strcmp(o.host, "::1") && o.open == 1 && o.lim.max_body == 4096);
    CHECK(o.node.n_models == 2 && !strcmp(o.node.models[0].id, "a") &&
          !strcmp(o.node.models[0].path, "/x/y.gguf"));
    CHECK(!strcmp(o.node.models[1].id, "TinyLlama-1.1B.Q4_0"));
    /* errors name the file, the line and the fix */
    f = fopen(path, "w");
    fputs("port = 1\n\nparallel = lots\n", f);
    fclose(f);
    CHECK(cit_conf_load(path, conf_cb, &o, &err) == CIT_EINVAL);
    CHECKF(strstr(err.msg, "c.conf:3:") && strstr(err.msg, "parallel") &&
               strstr(err.msg, "integer from 1 to 256"),
           "%s", err.msg);
    f = fopen(path, "w");
    fputs("port 8080\n", f);
    fclose(f);
    CHECK(cit_conf_load(path, conf_cb, &o, &err) == CIT_EFORMAT && strstr(err.msg, ":1:"));
    f = fopen(path, "w");
    fputs("colour = blue\n", f);
    fclose(f);
    CHECK(cit_conf_load(path, conf_cb, &o, &err) == CIT_EINVAL && strstr(err.msg, "colour"));
    CHECK(http_opts_set(&o, "model", "a b=/x", &err) == CIT_EINVAL);
    /* in memory: NUL bytes and overlong lines are refused with the line */
    CHECK(cit_conf_parse("m.conf", "port = 1\nho\0st = x\n", 20, conf_cb, &o, &err) ==
              CIT_EFORMAT &&
          strstr(err.msg, "m.conf:2:"));
    {
        static char big[6000];
        memset(big, 'a', sizeof(big) - 1);
        CHECK(cit_conf_parse("m.conf", big, sizeof(big) - 1, conf_cb, &o, &err) == CIT_EFORMAT &&
              strstr(err.msg, "longer than"));
    }
    CHECK(cit_conf_parse("m.conf", "port = \"80\" extra\n", 18, conf_cb, &o, &err) == CIT_EFORMAT &&
          strstr(err.msg, "after the closing quote"));
}

/* ---- the sovereignty layer ---- */

static int add_key(int parallel, int queue, const char *tenant, char out[NODE_KEY_LEN + 1])
{
    struct node *k;
    struct cit_err err;
    char path[512], id[NODE_KEY_ID_LEN + 1];
    snprintf(path, sizeof(path), "%s/http-%d.db", t_tmpdir(), parallel * 1000 + queue);
    CHECK_RET((k = srv ? http_server_node(srv) : state_node(path, &err)), "%s", err.msg);
    CHECK_RET(node_key_add(k, tenant, NODE_DEFAULT_SCOPES, out, id, &err) == 0, "%s", err.msg);
    if (!srv) node_close(k);
    return 0;
}

static int n_tokens(const char *text)
{
    struct eng_model *m;
    struct cit_err err;
    int n = -1;
    if (eng_model_load(t_model_path("stories260K.gguf"), &m, &err)) return -1;
    eng_tokenize(m, text, strlen(text), 1, 0, NULL, 0, &n);
    eng_model_free(m);
    return n;
}

static int post(const char *k, const char *extra, const char *path, const char *body,
                struct resp *r)
{
    return request_h(port, "POST", path, k, extra, body, r);
}

void test_http_sovereignty(void)
{
    char kf[NODE_KEY_LEN + 1], ks[NODE_KEY_LEN + 1], ledger[512];
    struct resp r;
    json_t *j;
    struct ledger_view v;
    struct cit_err err;
    struct cit_buf rep = {0};
    int n_local = 0, n_deny = 0, n_redact = 0, n_forward = 0;
    if (start(2, 7, 0)) return;
    if (add_key(2, 7, "fwd", kf) || add_key(2, 7, "stranger", ks)) return;

    /* nothing sensitive: local, and the decision is in a header */
    CHECK(!post(key, NULL, "/v1/completions",
                "{\"model\":\"stories260K\",\"prompt\":\"Once upon a time\",\"max_tokens\":3}",
                &r));
    CHECKF(r.status == 200 && strcasestr(r.head, "X-Citadel-Decision: local; rule=default-local"),
           "%d %s", r.status, r.head);
    resp_free(&r);
    /* a secret keyword: denied, naming the rule */
    CHECK(!post(key, NULL, "/v1/chat/completions",
                "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"the "
                "BLUEBIRD plan\"}],\"max_tokens\":3}",
                &r));
    CHECKF(r.status == 403 && strstr(r.body, "\"code\":\"policy_denied\"") &&
               strstr(r.body, "secrets-stay-out") && strstr(r.body, "secret material"),
           "%d %s", r.status, r.body);
    resp_free(&r);
    /* a declared class raises the sensitivity; an unknown one denies */
    CHECK(!post(key, "X-Citadel-Data-Class: secret\r\n", "/v1/completions",
                "{\"model\":\"stories260K\",\"prompt\":\"hello\",\"max_tokens\":2}", &r));
    CHECKF(r.status == 403 && strstr(r.body, "secrets-stay-out"), "%d %s", r.status, r.body);
    resp_free(&r);
    CHECK(!post(key, "X-Citadel-Data-Class: nonsense\r\n", "/v1/completions",
                "{\"model\":\"stories260K\",\"prompt\":\"hello\",\"max_tokens\":2}", &r));
    CHECKF(r.status == 403 && strstr(r.body, "'nonsense' is not in the policy"), "%d %s", r.status,
           r.body);
    resp_free(&r);
    /* personal data: redacted before the model sees it; the prompt the
     * engine got is the placeholder text, by its token count */
    CHECK(!post(key, NULL, "/v1/completions",
                "{\"model\":\"stories260K\",\"prompt\":\"Mail alice.smith@example.com today\","
                "\"max_tokens\":2}",
                &r));
    CHECKF(r.status == 200 &&
               strcasestr(r.head, "X-Citadel-Decision: redact; rule=personal-redacted"),
           "%d %s %s", r.status, r.head, r.body);
    CHECK((j = body_json(&r)));
    {
        int want = n_tokens("Mail [EMAIL_1] today"),
            raw = n_tokens("Mail alice.smith@example.com today");
        CHECKF(jint(j, "usage.prompt_tokens") == want && want != raw,
               "prompt %lld, want %d (raw %d)", jint(j, "usage.prompt_tokens"), want, raw);
    }
    json_decref(j);
    resp_free(&r);
    CHECK(!post(key, NULL, "/v1/chat/completions",
                "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"system\",\"content\":\"be "
                "brief\"},{\"role\":\"user\",\"content\":\"card 4111 1111 1111 1111, mail "
                "a@b.example\"}],\"max_tokens\":2,\"stream\":true}",
                &r));
    CHECKF(r.status == 200 && strcasestr(r.head, "X-Citadel-Decision: redact") &&
               strstr(r.body, "data: [DONE]"),
           "%d %s", r.status, r.head);
    resp_free(&r);
    /* forward: nobody listens at the peer's address, so it fails closed */
    CHECK(!post(kf, NULL, "/v1/completions",
                "{\"model\":\"stories260K\",\"prompt\":\"hello\",\"max_tokens\":2}", &r));
    CHECKF(r.status == 503 && strstr(r.body, "\"code\":\"peer_unavailable\"") &&
               strstr(r.body, "peer 'fr'"),
           "%d %s", r.status, r.body);
    resp_free(&r);
    /* a tenant the policy does not know */
    CHECK(!post(ks, NULL, "/v1/completions",
                "{\"model\":\"stories260K\",\"prompt\":\"hello\",\"max_tokens\":2}", &r));
    CHECKF(r.status == 403 && strstr(r.body, "tenant 'stranger' is not in the policy"), "%d %s",
           r.status, r.body);
    resp_free(&r);

    /* the dry run for integrators */
    CHECK(!post(key, NULL, "/v1/policy/decide",
                "{\"model\":\"stories260K\",\"input\":\"write to bob@example.org\"}", &r));
    CHECKF(r.status == 200, "%d %s", r.status, r.body);
    CHECK((j = body_json(&r)));
    CHECK(!strcmp(jstr(j, "action"), "redact") && !strcmp(jstr(j, "rule"), "personal-redacted"));
    CHECK(!strcmp(jstr(j, "classes.0"), "personal") &&
          !strcmp(jstr(j, "findings.0.detector"), "email"));
    CHECK(jint(j, "findings.0.start") == 9 && jint(j, "findings.0.end") == 24);
    CHECK(strlen(jstr(j, "policy")) == 64);
    json_decref(j);
    resp_free(&r);
    CHECK(!post(key, NULL, "/v1/policy/decide", "{\"input\":\"x\"}", &r));
    CHECK(r.status == 400 && strstr(r.body, "\"param\":\"model\""));
    resp_free(&r);
    CHECK(!post(key, NULL, "/v1/policy/decide", "{\"model\":\"elsewhere\",\"prompt\":\"x\"}", &r));
    CHECK(r.status == 200 && strstr(r.body, "\"action\":\"deny\"") &&
          strstr(r.body, "model 'elsewhere' is not in the policy"));
    resp_free(&r);
    /* usage: the caller's own tenant */
    CHECK(!request(port, "GET", "/v1/usage", key, NULL, &r));
    CHECKF(r.status == 200 && strstr(r.body, "\"tenant\":\"tests\""), "%d %s", r.status, r.body);
    resp_free(&r);
    CHECK(!request(port, "GET", "/v1/usage", NULL, NULL, &r) && r.status == 401);
    resp_free(&r);
    stop();

    /* every decision is in the ledger, which verifies */
    snprintf(ledger, sizeof(ledger), "%s/ledger-2007", t_tmpdir());
    CHECKF(!ledger_verify(ledger, NULL, &rep, &err), "%s", err.msg);
    cit_buf_free(&rep);
    CHECK(!ledger_view_open(ledger, &v, &err));
    for (uint64_t i = 0; i < v.n; i++) {
        const char *l = v.lines[i];
        n_local += strstr(l, "\"action\":\"local\"") && strstr(l, "\"status\":200") != NULL;
        n_deny += strstr(l, "\"action\":\"deny\"") && strstr(l, "\"status\":403") != NULL;
        n_redact += strstr(l, "\"action\":\"redact\"") && strstr(l, "\"classes\":[\"personal\"]") &&
                    strstr(l, "\"status\":200") != NULL;
        n_forward += strstr(l, "\"action\":\"forward\"") && strstr(l, "\"target\":\"fr\"") &&
                     strstr(l, "\"status\":503") != NULL;
        CHECKF(!strstr(l, "alice") && !strstr(l, "BLUEBIRD") && !strstr(l, "4111"),
               "the ledger holds a raw prompt: %s", l);
    }
    ledger_view_free(&v);
    CHECKF(n_local == 1 && n_deny == 4 && n_redact == 2 && n_forward == 1,
           "local %d deny %d redact %d forward %d", n_local, n_deny, n_redact, n_forward);
}

void test_http_quotas_restart(void)
{
    char km[NODE_KEY_LEN + 1], kd[NODE_KEY_LEN + 1];
    const char *body =
        "{\"model\":\"stories260K\",\"prompt\":\"Once upon a time\",\"max_tokens\":16}";
    struct resp r;
    json_t *j;
    long long used = 0, used_after;
    int got429 = 0;
    /* the minute window must not roll over between the requests and the
     * restart: start early in a minute */
    if (time(NULL) % 60 > 50) sleep((unsigned)(61 - time(NULL) % 60));
    if (start(2, 8, 0)) return;
    if (add_key(2, 8, "quota-m", km) || add_key(2, 8, "quota-d", kd)) return;
    for (int i = 0; i < 3; i++) {
        CHECK(!post(km, NULL, "/v1/completions", body, &r));
        CHECKF(r.status == 200, "request %d: %d %s", i, r.status, r.body);
        resp_free(&r);
    }
    CHECK(!post(km, NULL, "/v1/completions", body, &r));
    CHECKF(r.status == 429 && strstr(r.body, "\"code\":\"requests_per_minute\"") &&
               strstr(r.body, "\"limit\":3") && strstr(r.body, "\"resets_at\":\"") &&
               strcasestr(r.head, "Retry-After: "),
           "%d %s", r.status, r.body);
    resp_free(&r);
    /* tokens per day: the answers are capped to what is left, then refused */
    for (int i = 0; i < 12 && !got429; i++) {
        CHECK(!post(kd, NULL, "/v1/completions", body, &r));
        if (r.status == 429) {
            got429 = 1;
            CHECKF(strstr(r.body, "\"code\":\"tokens_per_day\"") && strstr(r.body, "\"limit\":60"),
                   "%s", r.body);
        } else {
            CHECKF(r.status == 200, "%d %s", r.status, r.body);
            CHECK((j = body_json(&r)));
            used += jint(j, "usage.total_tokens");
            json_decref(j);
        }
        resp_free(&r);
    }
    CHECKF(got429 && used <= 60 && used > 40, "used %lld", used);
    CHECK(!request(port, "GET", "/v1/usage", kd, NULL, &r) && r.status == 200);
    CHECK((j = body_json(&r)));
    CHECKF(jint(j, "quotas.tokens_per_day.used") == used &&
               jint(j, "quotas.tokens_per_day.limit") == 60 &&
               jint(j, "quotas.concurrent.used") == 0,
           "%s", r.body);
    json_decref(j);
    resp_free(&r);
    stop();

    /* a restart remembers both */
    if (start(2, 8, 0)) return;
    CHECK(!post(km, NULL, "/v1/completions", body, &r));
    CHECKF(r.status == 429 && strstr(r.body, "requests_per_minute"), "%d %s", r.status, r.body);
    resp_free(&r);
    CHECK(!post(kd, NULL, "/v1/completions", body, &r));
    CHECKF(r.status == 429 && strstr(r.body, "tokens_per_day"), "%d %s", r.status, r.body);
    resp_free(&r);
    CHECK(!request(port, "GET", "/v1/usage", kd, NULL, &r) && r.status == 200);
    CHECK((j = body_json(&r)));
    used_after = jint(j, "quotas.tokens_per_day.used");
    CHECKF(used_after == used, "after restart %lld, before %lld", used_after, used);
    json_decref(j);
    resp_free(&r);
    stop();
}

/* A policy whose output rules act on "Lily", which stories260K writes
 * greedily after "Once upon a time" (", there was a little girl named
 * Lily."), with the given action; serves it on a fresh state. */
static int start_output(const char *action, char *path, size_t cap)
{
    FILE *f;
    snprintf(path, cap, "%s/policy-output-%s.yaml", t_tmpdir(), action);
    CHECK_RET((f = fopen(path, "w")), "%s", path);
    fprintf(f,
            "version: 1\n"
            "node: {id: test-node, jurisdiction: DE}\n"
            "classes: [public, personal, secret]\n"
            "keywords: [{word: Lily, class: secret, exact: true}]\n"
            "tenants: {tests: }\n"
            "models: {stories260K: {jurisdiction: DE, classes: [public, personal]}}\n"
            "rules: [{id: all-local, action: local}]\n"
            "output: {action: %s, class_at_least: personal}\n"
            "admission: {licenses: [MIT], dataset_jurisdictions: [\"*\"], unvetted: allow}\n",
            action);
    fclose(f);
    policy_file = path;
    int rc = start(3, !strcmp(action, "deny") ? 11 : 10, 0);
    policy_file = NULL;
    return rc;
}

void test_http_output(void)
{
    const char *once = "{\"model\":\"stories260K\",\"prompt\":\"Once upon a time\","
                       "\"max_tokens\":40,\"temperature\":0%s}";
    char body[256], path[512], ledger[512];
    struct resp r;
    struct sse ev;
    json_t *j;
    struct ledger_view v;
    struct cit_err err;
    struct cit_buf rep = {0};
    char whole[1024];
    int n_red = 0, n_deny = 0;

    /* redact: the name is replaced in the answer, streamed or not, the same */
    if (start_output("redact", path, sizeof(path))) return;
    snprintf(body, sizeof(body), once, "");
    CHECK(!post(key, NULL, "/v1/completions", body, &r));
    CHECKF(r.status == 200, "%d %s", r.status, r.body);
    CHECK((j = body_json(&r)));
    CHECKF(jstr(j, "choices.0.text") &&
               strstr(jstr(j, "choices.0.text"), "named [REDACTED_KEYWORD]") &&
               !strstr(jstr(j, "choices.0.text"), "Lily") &&
               !strcmp(jstr(j, "choices.0.finish_reason"), "length"),
           "%s", r.body);
    snprintf(whole, sizeof(whole), "%s", jstr(j, "choices.0.text"));
    json_decref(j);
    resp_free(&r);
    snprintf(body, sizeof(body), once, ",\"stream\":true");
    CHECK(!post(key, NULL, "/v1/completions", body, &r));
    CHECK(r.status == 200 && !parse_sse(r.body, 0, &ev));
    /* no event ever held a piece of the name */
    CHECKF(!strcmp(ev.text, whole) && !strcmp(ev.finish, "length") && ev.done_last &&
               !strstr(r.body, "Li"),
           "stream gave '%s', whole '%s'", ev.text, whole);
    resp_free(&r);
    stop();

    /* deny: the answer ends before the name, as a content filter would */
    if (start_output("deny", path, sizeof(path))) return;
    snprintf(body, sizeof(body), once, "");
    CHECK(!post(key, NULL, "/v1/completions", body, &r));
    CHECK(r.status == 200 && (j = body_json(&r)));
    CHECKF(jstr(j, "choices.0.text") &&
               !strcmp(jstr(j, "choices.0.text"), ", there was a little girl named ") &&
               !strcmp(jstr(j, "choices.0.finish_reason"), "content_filter"),
           "%s", r.body);
    json_decref(j);
    resp_free(&r);
    snprintf(body, sizeof(body), once,
             ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
    CHECK(!post(key, NULL, "/v1/completions", body, &r));
    CHECK(r.status == 200 && !parse_sse(r.body, 0, &ev));
    CHECKF(!strcmp(ev.text, ", there was a little girl named ") &&
               !strcmp(ev.finish, "content_filter") && ev.done_last && ev.usage_completion > 0 &&
               !strstr(r.body, "Li"),
           "'%s' %s %d %s", ev.text, ev.finish, ev.usage_completion, r.body);
    resp_free(&r);
    stop();

    /* the ledger says what the output rules did, never what they hid */
    for (int pass = 0; pass < 2; pass++) {
        snprintf(ledger, sizeof(ledger), "%s/ledger-%d", t_tmpdir(), pass ? 3011 : 3010);
        CHECKF(!ledger_verify(ledger, NULL, &rep, &err), "%s", err.msg);
        cit_buf_free(&rep);
        CHECK(!ledger_view_open(ledger, &v, &err));
        for (uint64_t i = 0; i < v.n; i++) {
            const char *l = v.lines[i];
            n_red += strstr(l, "\"out_action\":\"redact\",\"out_classes\":[\"secret\"]") != NULL;
            n_deny += strstr(l, "\"out_action\":\"deny\",\"out_classes\":[\"secret\"]") != NULL;
            CHECKF(!strstr(l, "Lily"), "%s", l);
        }
        ledger_view_free(&v);
    }
    CHECKF(n_red == 2 && n_deny == 2, "redact %d deny %d", n_red, n_deny);
}

/* ---- the gate: the dry run agrees with the request ---- */

/* The value of header name in a response head, into out ("" when absent). */
static void header_value(const struct resp *r, const char *name, char *out, size_t cap)
{
    const char *p = r->head ? strcasestr(r->head, name) : NULL;
    size_t n;
    out[0] = 0;
    if (!p) return;
    p += strlen(name);
    while (*p == ':' || *p == ' ') p++;
    n = strcspn(p, "\r\n");
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
}

/* Sends body to the decision dry run and to the real endpoint: the
 * decision (X-Citadel-Decision) and the status must be the same. */
static void agree(const char *k, const char *extra, const char *path, const char *body,
                  const char *want_action)
{
    struct resp d, g;
    json_t *j = NULL;
    char hdr[200];
    const char *dec, *act;
    int dstatus;
    if (post(k, extra, "/v1/policy/decide", body, &d)) {
        CHECKF(0, "decide: no answer for %s", body);
        return;
    }
    if (post(k, extra, path, body, &g)) {
        CHECKF(0, "%s: no answer for %s", path, body);
        resp_free(&d);
        return;
    }
    CHECKF(d.status == 200 && (j = body_json(&d)), "decide %d %s", d.status, d.body);
    if (j) {
        act = json_string_value(json_object_get(j, "action"));
        dec = json_string_value(jpath(j, "request.decision"));
        dstatus = (int)json_integer_value(jpath(j, "request.status"));
        header_value(&g, "X-Citadel-Decision", hdr, sizeof(hdr));
        CHECKF(act && !strcmp(act, want_action), "%s: decide says %s, expected %s", body,
               act ? act : "?", want_action);
        CHECKF(dstatus == g.status, "%s: decide says status %d, %s answered %d (%s)", body, dstatus,
               path, g.status, g.body);
        if (g.status != 404)
            CHECKF(dec && !strcmp(dec, hdr), "%s: decide says '%s', %s decided '%s'", body,
                   dec ? dec : "?", path, hdr);
        json_decref(j);
    }
    resp_free(&d);
    resp_free(&g);
}

void test_http_decide_agrees(void)
{
    char kf[NODE_KEY_LEN + 1], body[2048], ids[1024];
    struct eng_model *m = NULL;
    struct cit_err err;
    int32_t toks[64];
    int nt = 0;
    size_t o = 0;
    if (start(2, 9, 0)) return;
    if (add_key(2, 9, "fwd", kf)) return;
    /* completions: a string prompt, with and without personal data */
    agree(key, NULL, "/v1/completions",
          "{\"model\":\"stories260K\",\"prompt\":\"Once upon a time\",\"max_tokens\":2}", "local");
    agree(key, NULL, "/v1/completions",
          "{\"model\":\"stories260K\",\"prompt\":\"mail bob@example.org\",\"max_tokens\":2}",
          "redact");
    /* token ids: read through the model's pieces; ids cannot be redacted */
    CHECK(eng_model_load(t_model_path("stories260K.gguf"), &m, &err) == 0);
    if (m) {
        const char *texts[] = {"Once upon a time", "mail bob@example.org now"};
        const char *want[] = {"local", "deny"};
        for (int t = 0; t < 2; t++) {
            CHECK(eng_tokenize(m, texts[t], strlen(texts[t]), 1, 0, toks, 64, &nt) == 0);
            o = 0;
            for (int i = 0; i < nt; i++)
                o += (size_t)snprintf(ids + o, sizeof(ids) - o, "%s%d", i ? "," : "", toks[i]);
            snprintf(body, sizeof(body),
                     "{\"model\":\"stories260K\",\"prompt\":[%s],\"max_tokens\":2}", ids);
            agree(key, NULL, "/v1/completions", body, want[t]);
        }
        eng_model_free(m);
    }
    /* chat: string contents, system and developer messages */
    agree(key, NULL, "/v1/chat/completions",
          "{\"model\":\"stories260K\",\"max_tokens\":2,\"messages\":[{\"role\":\"system\","
          "\"content\":\"You are terse.\"},{\"role\":\"user\",\"content\":\"hello\"}]}",
          "local");
    agree(key, NULL, "/v1/chat/completions",
          "{\"model\":\"stories260K\",\"max_tokens\":2,\"messages\":[{\"role\":\"developer\","
          "\"content\":\"Call +49 30 1234567 back\"},{\"role\":\"user\",\"content\":\"ok\"}]}",
          "redact");
    agree(key, NULL, "/v1/chat/completions",
          "{\"model\":\"stories260K\",\"max_tokens\":2,\"messages\":[{\"role\":\"user\","
          "\"content\":\"the word is BLUEBIRD\"}]}",
          "deny");
    /* content parts, which the old dry run refused with 400 */
    agree(key, NULL, "/v1/chat/completions",
          "{\"model\":\"stories260K\",\"max_tokens\":2,\"messages\":[{\"role\":\"user\","
          "\"content\":[{\"type\":\"text\",\"text\":\"write to \"},{\"type\":\"text\","
          "\"text\":\"alice@example.com\"}]}]}",
          "redact");
    agree(key, NULL, "/v1/chat/completions",
          "{\"model\":\"stories260K\",\"max_tokens\":2,\"messages\":[{\"role\":\"user\","
          "\"content\":[{\"type\":\"text\",\"text\":\"a plain story\"}]}]}",
          "local");
    /* declared classes, forwarding, and a model the node does not serve */
    agree(key, "X-Citadel-Data-Class: secret\r\n", "/v1/completions",
          "{\"model\":\"stories260K\",\"prompt\":\"hello\",\"max_tokens\":2}", "deny");
    /* the peer (nobody listens at its address) is known down once the
     * gateway's first health check ran; until then a forward is tried.
     * Wait for the check, so that what decide predicts is settled. */
    for (int i = 0; i < 300; i++) {
        struct resp d;
        int down;
        if (post(kf, NULL, "/v1/policy/decide",
                 "{\"model\":\"stories260K\",\"prompt\":\"hello\",\"max_tokens\":2}", &d))
            break;
        down = d.status == 200 && strstr(d.body, "\"status\":503") != NULL;
        resp_free(&d);
        if (down) break;
        usleep(10000);
    }
    agree(kf, NULL, "/v1/completions",
          "{\"model\":\"stories260K\",\"prompt\":\"hello\",\"max_tokens\":2}", "forward");
    agree(key, NULL, "/v1/completions",
          "{\"model\":\"elsewhere\",\"prompt\":\"hello\",\"max_tokens\":2}", "deny");
    stop();
}

/* ---- jurisdiction profiles ---- */

/* The notice of the profile the tests serve, and the Citadel-Notice value
 * for it, encoded independently (Python's urllib.parse.quote with RFC
 * 8187's attr-chars as safe). */
#define PROFILE_NOTICE "AIが回答します。 Antworten können Fehler enthalten (50%)."
#define PROFILE_NOTICE_HDR                                                                         \
    "UTF-8''AI%E3%81%8C%E5%9B%9E%E7%AD%94%E3%81%97%E3%81%BE%E3%81%99%E3%80%82%20Antworten%20k%C3%" \
    "B6nnen%20Fehler%20enthalten%20%2850%25%29."
/* an address and a keyword the policy would act on, were the guardrail scanned */
#define PROFILE_GUARDRAIL                                                                          \
    "Answer briefly. Questions on data protection go to dpo@example.org; never say BLUEBIRD."

/* A policy with a profile: the guardrail above, the notice appended to
 * chat answers, max_tokens capped at 8. Its path in path. */
static int write_profile_policy(char *path, size_t cap)
{
    char prof[512];
    FILE *f;
    snprintf(prof, sizeof(prof), "%s/profile-test.yaml", t_tmpdir());
    CHECK_RET((f = fopen(prof, "w")), "%s", prof);
    fprintf(f,
            "profile:\n"
            "  id: test-de\n"
            "  jurisdictions: [DE]\n"
            "  languages: [de, ja]\n"
            "  guardrail: \"%s\"\n"
            "  notice: \"%s\"\n"
            "  output: {append_notice: true, max_tokens: 8}\n",
            PROFILE_GUARDRAIL, PROFILE_NOTICE);
    fclose(f);
    snprintf(path, cap, "%s/policy-profile.yaml", t_tmpdir());
    CHECK_RET((f = fopen(path, "w")), "%s", path);
    fprintf(f, "version: 1\n"
               "node: {id: test-node, jurisdiction: DE}\n"
               "classes: [public, internal, personal, secret]\n"
               "detectors: {email: personal}\n"
               "keywords: [{word: BLUEBIRD, class: secret}]\n"
               "tenants: {tests: , local: }\n"
               "models: {stories260K: {jurisdiction: DE, classes: [public, internal, personal]}}\n"
               "rules:\n"
               "  - {id: secrets-stay-out, when: {classes_any: [secret]}, action: deny}\n"
               "  - {id: personal-redacted, when: {class_at_least: personal}, action: redact}\n"
               "  - {id: default-local, action: local}\n"
               "admission: {licenses: [MIT], dataset_jurisdictions: [\"*\"], unvetted: allow}\n"
               "profile: profile-test.yaml\n");
    fclose(f);
    return 0;
}

/* Admits a chat through the gate and checks that its tokens are those of
 * want (rendered with tmpl, tokenized as the gate does). A failure still
 * lets go of the call, so that the node closes clean. */
#define GCHECK(c, ...)                                                                             \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            t_fail(__FILE__, __LINE__, __VA_ARGS__);                                               \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

static void gate_renders(struct node *n, const struct eng_chat_msg *msgs, int n_msgs, int tmpl_set,
                         enum eng_chat_tmpl tmpl, const struct eng_chat_msg *want, int n_want,
                         int max_tokens, const char *want_note)
{
    static const char first[] = "<|im_start|>system\n" PROFILE_GUARDRAIL "<|im_end|>";
    struct node_req q = {0};
    struct node_call *c = NULL;
    struct node_outcome out;
    struct eng_model *m = node_engine_model(n, "stories260K");
    char *text = NULL, piece[256];
    const char *g;
    struct cit_buf detok = {0};
    int32_t *toks = NULL;
    const int32_t *got;
    int n_got = 0, n_tok = 0;
    q.tenant = "tests";
    q.model = "stories260K";
    q.p.chat = 1;
    q.p.msgs = msgs;
    q.p.n_msgs = n_msgs;
    q.p.tmpl_set = tmpl_set;
    q.p.tmpl = tmpl;
    q.max_tokens = max_tokens;
    q.max_tokens_limit = 4096;
    q.max_prompt_tokens = 4096;
    q.id_chat = 1;
    GCHECK(m && node_admit(n, &q, &c, &out) == 0, "%d %s", out.status, out.msg);
    GCHECK(!strcmp(out.max_tokens_note, want_note), "note '%s', want '%s'", out.max_tokens_note,
           want_note);
    got = node_call_tokens(c, &n_got);
    GCHECK(eng_chat_render(tmpl_set ? tmpl : ENG_CHAT_CHATML, want, n_want, 1, NULL, &text) == 0,
           "render");
    eng_tokenize(m, text, strlen(text), 1, 1, NULL, 0, &n_tok);
    GCHECK(n_tok > 0 && (toks = cit_calloc((size_t)n_tok + 1, sizeof(*toks))), "%d", n_tok);
    GCHECK(eng_tokenize(m, text, strlen(text), 1, 1, toks, n_tok, &n_tok) == 0, "tokenize");
    GCHECK(n_got == n_tok && !memcmp(got, toks, (size_t)n_tok * sizeof(*toks)),
           "the gate's prompt (%d tokens) is not %d tokens of '%s'", n_got, n_tok, text);
    /* and read back: the guardrail is there once, and with ChatML it is
     * the first message (after BOS) */
    for (int i = 0; i < n_got; i++) {
        int k = eng_token_piece(m, got[i], 1, piece, sizeof(piece));
        if (k > 0) cit_buf_add(&detok, piece, (size_t)k);
    }
    cit_buf_add(&detok, "", 1);
    g = detok.p ? strstr(detok.p, PROFILE_GUARDRAIL) : NULL;
    GCHECK(g && !strstr(g + 1, PROFILE_GUARDRAIL), "%s", detok.p ? detok.p : "");
    GCHECK(tmpl_set || (strstr(detok.p, first) &&
                        strstr(detok.p, first) == strstr(detok.p, "<|im_start|>")),
           "%s", detok.p);
out:
    cit_buf_free(&detok);
    cit_free(toks);
    cit_free(text);
    node_call_free(c, 200, 0);
}
#undef GCHECK

void test_http_profile_prompt(void)
{
    struct node_opts o;
    struct node *n = NULL;
    struct cit_err err;
    struct node_req q = {0};
    struct node_verdict v;
    char path[512];
    const struct eng_chat_msg msgs[] = {{"system", "You are terse."},
                                        {"user", "mail bob@example.org now"}};
    const struct eng_chat_msg user_only[] = {{"user", "Once upon a time"}};
    if (write_profile_policy(path, sizeof(path))) return;
    node_opts_defaults(&o);
    snprintf(o.state, sizeof(o.state), "%s/profile-node.db", t_tmpdir());
    snprintf(o.ledger, sizeof(o.ledger), "%s/profile-ledger", t_tmpdir());
    snprintf(o.policy, sizeof(o.policy), "%s", path);
    o.threads = 1;
    o.ctx = 1024;
    o.parallel = 1;
    o.unvetted = 1;
    CHECKF(node_opts_set(&o, "model", t_model_path("stories260K.gguf"), &err) == 0, "%s", err.msg);
    CHECKF(node_open(&o, NODE_MODELS, &n, &err) == 0, "%s", err.msg);

    /* ChatML (stories260K has no template): the guardrail is a system
     * message of its own, before the client's, which is redacted; the
     * guardrail is not (it was never scanned) */
    {
        const struct eng_chat_msg want[] = {{"system", PROFILE_GUARDRAIL},
                                            {"system", "You are terse."},
                                            {"user", "mail [EMAIL_1] now"}};
        gate_renders(n, msgs, 2, 0, ENG_CHAT_CHATML, want, 3, 100, "8; requested=100");
        if (t_failed()) goto done;
    }
    /* Llama 2 keeps one system prompt: the guardrail leads the client's */
    {
        const struct eng_chat_msg want[] = {{"system", PROFILE_GUARDRAIL "\n\nYou are terse."},
                                            {"user", "mail [EMAIL_1] now"}};
        gate_renders(n, msgs, 2, 1, ENG_CHAT_LLAMA2, want, 2, 8, "");
        if (t_failed()) goto done;
    }
    {
        const struct eng_chat_msg want[] = {{"system", PROFILE_GUARDRAIL},
                                            {"user", "Once upon a time"}};
        gate_renders(n, user_only, 1, 1, ENG_CHAT_MISTRAL, want, 2, 0, "8");
        if (t_failed()) goto done;
        gate_renders(n, user_only, 1, 1, ENG_CHAT_LLAMA3, want, 2, 3, "");
        if (t_failed()) goto done;
    }
    /* the dry run decides on the client's text alone, as admit did: the
     * guardrail's address and keyword are not findings */
    q.tenant = "tests";
    q.model = "stories260K";
    q.p.chat = 1;
    q.p.msgs = msgs;
    q.p.n_msgs = 2;
    q.endpoint = "policy";
    CHECKF(node_decide(n, &q, &v) == 0, "%s", v.out.msg);
    CHECKF(!strcmp(v.action, "redact") && !strcmp(v.classes, "personal") && v.n_findings == 1,
           "%s %s %zu", v.action, v.classes, v.n_findings);
    node_verdict_free(&v);
done:
    node_close(n);
}

/* A header's value is exactly want. */
static int has_header(const struct resp *r, const char *name, const char *want)
{
    char v[2048];
    header_value(r, name, v, sizeof(v));
    return !strcmp(v, want);
}

void test_http_profile(void)
{
    static const char chat[] = "{\"model\":\"stories260K\",\"max_tokens\":6,\"temperature\":0,"
                               "\"messages\":[{\"role\":\"user\",\"content\":\"Once upon a "
                               "time\"}]%s}";
    static const char compl [] = "{\"model\":\"stories260K\",\"prompt\":\"Once upon a time\","
                                 "\"max_tokens\":100,\"temperature\":0%s}";
    char path[512], body[512], plain[2048];
    struct resp r;
    struct sse ev;
    json_t *j;
    const char *tail = "\n\n" PROFILE_NOTICE;
    if (write_profile_policy(path, sizeof(path))) return;
    policy_file = path;
    int rc = start(1, 2, 0);
    policy_file = NULL;
    if (rc) return;

    /* every answer of the OpenAI endpoints names the profile and its
     * notice, errors too; the others do not */
    CHECK(!request(port, "GET", "/v1/models", key, NULL, &r));
    CHECKF(r.status == 200 && has_header(&r, "Citadel-Profile", "test-de") &&
               has_header(&r, "Citadel-Notice", PROFILE_NOTICE_HDR),
           "%s", r.head);
    resp_free(&r);
    CHECK(!post(NULL, NULL, "/v1/chat/completions", "{}", &r));
    CHECKF(r.status == 401 && has_header(&r, "Citadel-Profile", "test-de") &&
               has_header(&r, "Citadel-Notice", PROFILE_NOTICE_HDR),
           "%s", r.head);
    resp_free(&r);
    CHECK(!request(port, "GET", "/healthz", NULL, NULL, &r));
    CHECKF(r.status == 200 && !strcasestr(r.head, "Citadel-Profile"), "%s", r.head);
    resp_free(&r);
    CHECK(!request(port, "GET", "/readyz", NULL, NULL, &r) && r.status == 200);
    CHECK((j = body_json(&r)));
    CHECKF(jstr(j, "profile.id") && !strcmp(jstr(j, "profile.id"), "test-de") &&
               jstr(j, "profile.notice") && !strcmp(jstr(j, "profile.notice"), PROFILE_NOTICE),
           "%s", r.body);
    json_decref(j);
    resp_free(&r);

    /* a chat answer ends with the notice; streamed, byte for byte the same */
    snprintf(body, sizeof(body), chat, "");
    CHECK(!post(key, NULL, "/v1/chat/completions", body, &r));
    CHECKF(r.status == 200 && has_header(&r, "Citadel-Profile", "test-de") &&
               has_header(&r, "Citadel-Notice", PROFILE_NOTICE_HDR),
           "%d %s", r.status, r.head);
    CHECK((j = body_json(&r)));
    const char *content = jstr(j, "choices.0.message.content");
    CHECKF(content && strlen(content) > strlen(tail) &&
               !strcmp(content + strlen(content) - strlen(tail), tail),
           "%s", r.body);
    snprintf(plain, sizeof(plain), "%s", content);
    json_decref(j);
    resp_free(&r);
    snprintf(body, sizeof(body), chat, ",\"stream\":true");
    CHECK(!post(key, NULL, "/v1/chat/completions", body, &r));
    CHECKF(r.status == 200 && has_header(&r, "Citadel-Profile", "test-de") &&
               has_header(&r, "Citadel-Notice", PROFILE_NOTICE_HDR),
           "%d %s", r.status, r.head);
    CHECK(!parse_sse(r.body, 1, &ev));
    CHECKF(!strcmp(ev.text, plain) && ev.done_last && ev.role_first, "stream '%s', plain '%s'",
           ev.text, plain);
    resp_free(&r);

    /* completions: the notice in the headers, not in the text; max_tokens
     * clamped to the profile's cap, and the answer says so */
    snprintf(body, sizeof(body), compl, "");
    CHECK(!post(key, NULL, "/v1/completions", body, &r));
    CHECKF(r.status == 200 && has_header(&r, "Citadel-Profile", "test-de") &&
               has_header(&r, "Citadel-Max-Tokens", "8; requested=100"),
           "%d %s", r.status, r.head);
    CHECK((j = body_json(&r)));
    CHECKF(jint(j, "usage.completion_tokens") == 8 &&
               !strcmp(jstr(j, "choices.0.finish_reason"), "length") &&
               !strstr(jstr(j, "choices.0.text"), "Antworten"),
           "%s", r.body);
    json_decref(j);
    resp_free(&r);
    snprintf(body, sizeof(body), compl, ",\"stream\":true");
    CHECK(!post(key, NULL, "/v1/completions", body, &r));
    CHECKF(r.status == 200 && has_header(&r, "Citadel-Max-Tokens", "8; requested=100") &&
               has_header(&r, "Citadel-Notice", PROFILE_NOTICE_HDR),
           "%d %s", r.status, r.head);
    resp_free(&r);

    /* the dry run and the request agree; the guardrail's keyword and
     * address decide nothing */
    agree(key, NULL, "/v1/chat/completions",
          "{\"model\":\"stories260K\",\"max_tokens\":2,\"messages\":[{\"role\":\"user\","
          "\"content\":\"hello\"}]}",
          "local");
    agree(key, NULL, "/v1/chat/completions",
          "{\"model\":\"stories260K\",\"max_tokens\":2,\"messages\":[{\"role\":\"system\","
          "\"content\":\"Be kind.\"},{\"role\":\"user\",\"content\":\"mail bob@example.org\"}]}",
          "redact");
    agree(key, NULL, "/v1/completions",
          "{\"model\":\"stories260K\",\"prompt\":\"the word is BLUEBIRD\",\"max_tokens\":2}",
          "deny");
    stop();
}

/* ---- models loaded and unloaded while serving ---- */

/* Reads a streamed answer until its first content event: the generation
 * is running then. Returns the socket (the caller reads the rest). */
static int stream_until_content(const char *k, const char *body, struct cit_buf *got)
{
    struct cit_buf req = {0};
    char buf[4096];
    ssize_t n;
    int fd = dial(port);
    if (fd < 0) return -1;
    cit_buf_printf(&req,
                   "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                   "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   k, strlen(body), body);
    send_all(fd, req.p, req.len);
    cit_buf_free(&req);
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
        cit_buf_add(got, buf, (size_t)n);
        if (strstr(got->p, "\"text\":\"") && !strstr(got->p, "\"text\":\"\"")) return fd;
        if (strstr(got->p, "\"text\":\"") && strstr(got->p, "\"text\":\"\"") &&
            strstr(strstr(got->p, "\"text\":\"\"") + 9, "\"text\":\""))
            return fd;
    }
    close(fd);
    return -1;
}

void test_http_admin_models(void)
{
    char ka[NODE_KEY_LEN + 1], id[NODE_KEY_ID_LEN + 1], body[4200], ledger[512];
    struct cit_err err;
    struct cit_buf got = {0};
    struct resp r;
    struct ledger_view v;
    int fd, loads = 0, unloads = 0;
    char synth[4096];
    CHECK(realpath(t_model_path("synth-llama-Q8_0.gguf"), synth));
    if (start(1, 8, 0)) return;
    CHECK(node_key_add(http_server_node(srv), "tests",
                       "endpoint:admin endpoint:completions "
                       "endpoint:models model:*",
                       ka, id, &err) == 0);
    /* administration is named, never a wildcard: the endpoint:* key is refused */
    CHECK(request(port, "GET", "/v1/admin/models", key, NULL, &r) == 0 && r.status == 403);
    resp_free(&r);
    CHECK(request(port, "GET", "/v1/admin/models", ka, NULL, &r) == 0);
    CHECKF(r.status == 200 && strstr(r.body, "\"id\":\"stories260K\""), "%d %s", r.status, r.body);
    resp_free(&r);
    /* load a second model while serving */
    snprintf(body, sizeof(body), "{\"id\":\"synth\",\"path\":\"%s\"}", synth);
    CHECK(post(ka, NULL, "/v1/admin/models", "{\"id\":\"x\",\"path\":\"relative.gguf\"}", &r) ==
              0 &&
          r.status == 400 && strstr(r.body, "absolute"));
    resp_free(&r);
    CHECK(post(ka, NULL, "/v1/admin/models", body, &r) == 0);
    CHECKF(r.status == 201, "%d %s", r.status, r.body);
    resp_free(&r);
    CHECK(post(ka, NULL, "/v1/admin/models", body, &r) == 0 && r.status == 400 &&
          strstr(r.body, "already loaded"));
    resp_free(&r);
    CHECK(request(port, "GET", "/v1/models", key, NULL, &r) == 0 && r.status == 200 &&
          strstr(r.body, "\"id\":\"synth\"") && strstr(r.body, "\"id\":\"stories260K\""));
    resp_free(&r);
    /* a generation in flight on it ends with an OpenAI error when it is unloaded */
    fd = stream_until_content(ka,
                              "{\"model\":\"synth\",\"prompt\":\"Once upon a time\","
                              "\"max_tokens\":900,\"temperature\":0,\"stream\":true}",
                              &got);
    CHECKF(fd >= 0, "no generation in flight: %s", got.p ? got.p : "");
    CHECK(request(port, "DELETE", "/v1/admin/models/synth", ka, NULL, &r) == 0);
    CHECKF(r.status == 200 && strstr(r.body, "\"deleted\":true"), "%d %s", r.status, r.body);
    resp_free(&r);
    if (fd >= 0) {
        char buf[4096];
        ssize_t n;
        while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) cit_buf_add(&got, buf, (size_t)n);
        close(fd);
        CHECKF(got.p && strstr(got.p, "\"code\":\"model_unloaded\"") &&
                   strstr(got.p, "\"type\":\"server_error\"") && strstr(got.p, "data: [DONE]") &&
                   !strstr(got.p, "\"finish_reason\":\"stop\"") &&
                   !strstr(got.p, "\"finish_reason\":\"length\""),
               "the stream did not end with the unload error: %s",
               got.p ? got.p + (got.len > 600 ? got.len - 600 : 0) : "");
    }
    cit_buf_free(&got);
    CHECK(request(port, "GET", "/v1/models", key, NULL, &r) == 0 && r.status == 200 &&
          !strstr(r.body, "\"id\":\"synth\"") && strstr(r.body, "\"id\":\"stories260K\""));
    resp_free(&r);
    CHECK(post(ka, NULL, "/v1/completions", "{\"model\":\"synth\",\"prompt\":\"a\"}", &r) == 0 &&
          r.status == 404);
    resp_free(&r);
    CHECK(request(port, "DELETE", "/v1/admin/models/synth", ka, NULL, &r) == 0 && r.status == 404);
    resp_free(&r);
    /* SIGHUP applies the config's model list: a new model loads ... */
    {
        struct http_opts o = started;
        snprintf(o.node.models[1].id, sizeof(o.node.models[1].id), "synth");
        CHECK(strlen(synth) < sizeof(o.node.models[1].path));
        memcpy(o.node.models[1].path, synth, strlen(synth) + 1);
        o.node.n_models = 2;
        http_server_reload(srv, &o);
        CHECK(request(port, "GET", "/v1/models", key, NULL, &r) == 0 &&
              strstr(r.body, "\"id\":\"synth\"") && strstr(r.body, "\"id\":\"stories260K\""));
        resp_free(&r);
        /* ... and one no longer listed unloads */
        o.node.models[0] = o.node.models[1];
        o.node.n_models = 1;
        http_server_reload(srv, &o);
        CHECK(request(port, "GET", "/v1/models", key, NULL, &r) == 0 &&
              strstr(r.body, "\"id\":\"synth\"") && !strstr(r.body, "\"id\":\"stories260K\""));
        resp_free(&r);
        CHECK(post(key, NULL, "/v1/completions",
                   "{\"model\":\"synth\",\"prompt\":\"Once\",\"max_tokens\":3}", &r) == 0 &&
              r.status == 200);
        resp_free(&r);
        /* and back */
        http_server_reload(srv, &started);
        CHECK(request(port, "GET", "/v1/models", key, NULL, &r) == 0 &&
              !strstr(r.body, "\"id\":\"synth\""));
        resp_free(&r);
        /* a model an admin verb loaded is not the configuration's to unload */
        CHECK(post(ka, NULL, "/v1/admin/models", body, &r) == 0 && r.status == 201);
        resp_free(&r);
        http_server_reload(srv, &started);
        CHECK(request(port, "GET", "/v1/admin/models", ka, NULL, &r) == 0);
        CHECKF(r.status == 200 && strstr(r.body, "\"id\":\"synth\"") &&
                   strstr(r.body, "\"source\":\"admin\"") &&
                   strstr(r.body, "\"source\":\"config\""),
               "%d %s", r.status, r.body);
        resp_free(&r);
        CHECK(request(port, "DELETE", "/v1/admin/models/synth", ka, NULL, &r) == 0 &&
              r.status == 200);
        resp_free(&r);
    }
    /* stories260K is back */
    CHECK(post(key, NULL, "/v1/completions",
               "{\"model\":\"stories260K\",\"prompt\":\"Once\",\"max_tokens\":3}", &r) == 0 &&
          r.status == 200);
    resp_free(&r);
    stop();
    /* both changes are in the ledger */
    snprintf(ledger, sizeof(ledger), "%s/ledger-1008", t_tmpdir());
    CHECK(!ledger_view_open(ledger, &v, &err));
    for (uint64_t i = 0; i < v.n - v.n_pruned; i++) {
        const char *l = v.lines[i];
        if (!strstr(l, "synth")) continue;
        loads += strstr(l, "\"action\":\"load_unvetted\"") != NULL; /* no admission: --unvetted */
        unloads += strstr(l, "\"action\":\"unload\"") != NULL;
    }
    ledger_view_free(&v);
    CHECKF(loads == 3 && unloads == 3, "load %d unload %d entries", loads, unloads);
}

/* ---- administration while serving, through the CLI ---- */

static int file_mode(const char *path)
{
    struct stat st;
    return stat(path, &st) ? -1 : (int)(st.st_mode & 0777);
}

/* Runs `citadel ARGS` on the admin test's node; its exit status, and its
 * stdout and stderr (merged) in *out. */
static int cli(const char *dir, char **out, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cli(const char *dir, char **out, const char *fmt, ...)
{
    struct cit_buf c = {0};
    va_list ap;
    int rc;
    char args[2048];
    const char *bin = getenv("CITADEL_BIN") ? getenv("CITADEL_BIN") : "build/citadel";
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    cit_buf_printf(&c,
                   "%s %s --config %s/c.conf --state %s/s.db --ledger %s/ledger "
                   "--policy policy.example.yaml 2>&1",
                   bin, args, dir, dir, dir);
    rc = t_run(c.p, out);
    cit_buf_free(&c);
    return rc;
}

/* Ledger entries (lines) that contain both a and b. */
static int ledger_count(const char *dir, const char *a, const char *b)
{
    struct ledger_view v;
    struct cit_err err;
    char p[600];
    int n = 0;
    snprintf(p, sizeof(p), "%s/ledger", dir);
    if (ledger_view_open(p, &v, &err)) return -1;
    for (uint64_t i = 0; i < v.n - v.n_pruned; i++)
        n += strstr(v.lines[i], a) && strstr(v.lines[i], b);
    ledger_view_free(&v);
    return n;
}

/* What the admin test checks while serve runs (returns at the first failure;
 * the caller stops the server either way). */
static void admin_while_serving(const char *dir, const char *card, const char *k1)
{
    char p[1200], *out = NULL, k2[NODE_KEY_LEN + 1] = "";
    const char *bin = getenv("CITADEL_BIN") ? getenv("CITADEL_BIN") : "build/citadel";
    struct cit_buf sh = {0};
    struct resp r;
    int rc;
    snprintf(p, sizeof(p), "%s/s.db.sock", dir);
    CHECK(file_mode(p) == 0600);
    CHECK(request(port, "GET", "/v1/models", k1, NULL, &r) == 0);
    CHECKF(r.status == 200 && strstr(r.body, "\"id\":\"stories260K\""), "%d %s", r.status, r.body);
    resp_free(&r);
    /* while serving, the verbs go to the server: a key works at once */
    CHECK(cli(dir, &out, "keys add --tenant dev") == 0 && out && strstr(out, "cit_"));
    snprintf(k2, sizeof(k2), "%.*s", NODE_KEY_LEN, strstr(out, "cit_"));
    cit_free(out);
    out = NULL;
    CHECK(request(port, "GET", "/v1/models", k2, NULL, &r) == 0 && r.status == 200);
    resp_free(&r);
    /* an argument that is not UTF-8 is refused by name, not dropped */
    CHECK(cli(dir, &out, "keys add --tenant \"$(printf 'd\\377v')\"") == 1);
    CHECKF(out && strstr(out, "is not UTF-8"), "%s", out ? out : "");
    cit_free(out);
    out = NULL;
    /* both keys, made offline and through the server, are in the ledger */
    CHECK(ledger_count(dir, "\"action\":\"key_add\"", "\"tenant\":\"dev\"") == 2);
    CHECK(cli(dir, &out, "model list") == 0 && out && strstr(out, "stories260K"));
    cit_free(out);
    out = NULL;
    /* run would be a second writer of the ledger: it says who owns the node */
    rc = cli(dir, &out, "run -m stories260K=%s/m.gguf -p Once -n 2", dir);
    CHECKF(rc == 1 && out && strstr(out, "a citadel serve owns this node"), "run: %d %s", rc,
           out ? out : "");
    cit_free(out);
    out = NULL;
    /* a revocation unloads the model at once, and is in the ledger at once */
    rc = cli(dir, &out, "model revoke stories260K --reason withdrawn-by-test");
    CHECKF(rc == 0 && out && strstr(out, "1 model unloaded"), "revoke: %d %s", rc, out ? out : "");
    cit_free(out);
    out = NULL;
    CHECK(request(port, "GET", "/v1/models", k1, NULL, &r) == 0 && r.status == 200 &&
          !strstr(r.body, "stories260K"));
    resp_free(&r);
    CHECK(post(k1, NULL, "/v1/completions", "{\"model\":\"stories260K\",\"prompt\":\"a\"}", &r) ==
              0 &&
          r.status == 404);
    resp_free(&r);
    CHECK(ledger_count(dir, "\"action\":\"revoke\"", "stories260K") == 1);
    CHECK(ledger_count(dir, "\"action\":\"unload\"", "withdrawn-by-test") == 1);
    /* a locked-down server reads no file outside its own and lockdown_read,
     * and says so */
    rc = cli(dir, &out, "model admit %s/m.gguf --card %s/../card-elsewhere.json --sig %s/m.sig",
             dir, dir, dir);
    CHECKF(rc != 0 && out && strstr(out, "locked down") && strstr(out, "lockdown_read"),
           "admit outside: %d %s", rc, out ? out : "");
    cit_free(out);
    out = NULL;
    /* admitted again and loaded, without a restart */
    CHECK(cli(dir, NULL, "model admit %s/m.gguf --card %s --sig %s/m.sig", dir, card, dir) == 0);
    rc = cli(dir, &out, "model load stories260K=%s/m.gguf", dir);
    CHECKF(rc == 0, "load: %s", out ? out : "");
    cit_free(out);
    out = NULL;
    CHECK(post(k1, NULL, "/v1/completions",
               "{\"model\":\"stories260K\",\"prompt\":\"Once\",\"max_tokens\":2}", &r) == 0 &&
          r.status == 200);
    resp_free(&r);
    CHECK(ledger_count(dir, "\"action\":\"load\"", "stories260K") >= 2);
    /* trust changes: a second signer, then the first one removed unloads its model */
    CHECK(cli(dir, NULL, "model keygen %s/other", dir) == 0);
    CHECK(cli(dir, NULL, "trust add --name other --jurisdiction FR %s/other.pub.pem", dir) == 0);
    CHECK(cli(dir, &out, "trust list") == 0 && out && strstr(out, "dev ") && strstr(out, "other "));
    cit_free(out);
    out = NULL;
    rc = cli(dir, &out, "trust remove dev");
    CHECKF(rc == 0 && out && strstr(out, "1 model unloaded"), "trust remove: %d %s", rc,
           out ? out : "");
    cit_free(out);
    out = NULL;
    CHECK(request(port, "GET", "/v1/models", k1, NULL, &r) == 0 && !strstr(r.body, "stories260K"));
    resp_free(&r);
    CHECK(ledger_count(dir, "\"action\":\"trust_add\"", "other") == 1);
    CHECK(ledger_count(dir, "\"action\":\"trust_remove\"", "dev") == 1);
    /* a second serve of the same node is refused: one node, one server */
    cit_buf_printf(&sh,
                   "%s serve --config %s/c.conf --state %s/s.db --ledger %s/ledger --policy "
                   "policy.example.yaml --model stories260K=%s/m.gguf --port 0 2>&1",
                   bin, dir, dir, dir, dir);
    rc = t_run(sh.p, &out);
    cit_buf_free(&sh);
    CHECKF(rc != 0 && out && strstr(out, "ledger"), "a second serve: %d %s", rc, out ? out : "");
    cit_free(out);
}

void test_http_admin_cli(void)
{
    char dir[512], p[3000], card[700], *out = NULL, k1[NODE_KEY_LEN + 1] = "";
    const char *bin = getenv("CITADEL_BIN") ? getenv("CITADEL_BIN") : "build/citadel";
    struct cit_buf sh = {0};
    int saved_port = port, pid = 0;
    snprintf(dir, sizeof(dir), "%s/admin", t_tmpdir());
    CHECKF(realpath("models/stories260K.cdx.json", card), "models/stories260K.cdx.json");
    /* locked down, the server reads the cards' folder because the config
     * says so (admin_while_serving tries one outside it) */
    snprintf(p, sizeof(p),
             "rm -rf %s && mkdir -p %s && cp %s %s/m.gguf && "
             "echo \"lockdown_read = $(dirname %s)\" > %s/c.conf",
             dir, dir, t_model_path("stories260K.gguf"), dir, card, dir);
    CHECK(t_run(p, NULL) == 0);
    /* a state file another citadel left readable by others is made owner-only */
    snprintf(p, sizeof(p), "%s/s.db", dir);
    CHECK(t_write_file(p, "", 0) == 0 && chmod(p, 0644) == 0);
    /* offline: a signer, a signature, an admission, a key */
    CHECK(cli(dir, NULL, "model keygen %s/signer", dir) == 0);
    CHECK(cli(dir, NULL, "trust add --name dev --jurisdiction DE %s/signer.pub.pem", dir) == 0);
    CHECK(file_mode(p) == 0600);
    CHECK(cli(dir, NULL, "model sign --key %s/signer.pem %s/m.gguf --card %s --sig %s/m.sig", dir,
              dir, card, dir) == 0);
    CHECK(cli(dir, NULL, "model admit %s/m.gguf --card %s --sig %s/m.sig", dir, card, dir) == 0);
    CHECK(cli(dir, &out, "keys add --tenant dev") == 0 && out && strstr(out, "cit_"));
    snprintf(k1, sizeof(k1), "%.*s", NODE_KEY_LEN, strstr(out, "cit_"));
    cit_free(out);
    out = NULL;
    /* serve it; the port it picked is in its first line */
    cit_buf_printf(&sh,
                   "%s serve --config %s/c.conf --state %s/s.db --ledger %s/ledger --policy "
                   "policy.example.yaml --model stories260K=%s/m.gguf --port 0 --threads 1 "
                   "--parallel 2 > %s/serve.out 2> %s/serve.err & echo $!; "
                   "i=0; while ! grep -q serving %s/serve.out && [ $i -lt 600 ]; do sleep 0.05; "
                   "i=$((i+1)); done",
                   bin, dir, dir, dir, dir, dir, dir, dir);
    CHECK(t_run(sh.p, &out) == 0 && out);
    cit_buf_free(&sh);
    snprintf(p, sizeof(p), "cp %s %s/../card-elsewhere.json", card, dir);
    CHECK(t_run(p, NULL) == 0);
    pid = atoi(out);
    cit_free(out);
    snprintf(p, sizeof(p), "%s/serve.out", dir);
    out = t_read_file(p, NULL);
    port =
        out && strstr(out, "http://127.0.0.1:") ? atoi(strstr(out, "http://127.0.0.1:") + 17) : 0;
    if (port && pid > 0) admin_while_serving(dir, card, k1);
    if (pid > 0) {
        kill(pid, SIGTERM);
        snprintf(p, sizeof(p),
                 "i=0; while kill -0 %d 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; "
                 "i=$((i+1)); done; ! kill -0 %d 2>/dev/null",
                 pid, pid);
        CHECK(t_run(p, NULL) == 0);
    }
    port = saved_port;
    CHECKF(out && strstr(out, "http://127.0.0.1:"), "serve did not start: %s", out ? out : "");
    cit_free(out);
    out = NULL;
    if (t_failed()) return;
    /* the state file and its WAL stayed owner-only; the socket is gone */
    snprintf(p, sizeof(p), "%s/s.db", dir);
    CHECK(file_mode(p) == 0600);
    snprintf(p, sizeof(p), "%s/s.db-wal", dir);
    CHECK(file_mode(p) == 0600 || file_mode(p) == -1);
    snprintf(p, sizeof(p), "%s/s.db.sock", dir);
    CHECK(file_mode(p) == -1);
    /* offline again: the verbs act on the files */
    CHECK(cli(dir, &out, "model list") == 0 && out && strstr(out, "revoked"));
    cit_free(out);
    out = NULL;
    /* serve --open, with no key store before: the file it creates is owner-only */
    snprintf(p, sizeof(p),
             "%s %s serve --open --config %s/c.conf --state %s/open.db --ledger %s/l2 "
             "--policy policy.example.yaml --model %s/none.gguf --port 0 > /dev/null 2>&1",
             "", bin, dir, dir, dir, dir);
    CHECK(t_run(p, NULL) != 0); /* no such model */
    snprintf(p, sizeof(p), "%s/open.db", dir);
    CHECK(file_mode(p) == 0600);
}

/* The ledger's request digest is keyed: the node can recompute it from the
 * request, a reader of the ledger cannot (no plain SHA-256 of the body). */
void test_http_digest_keyed(void)
{
    static const char body[] = "{\"model\":\"stories260K\",\"prompt\":\"My tax id is "
                               "12345678903\",\"max_tokens\":2,\"temperature\":0}";
    struct resp r;
    struct cit_err err;
    struct ledger_view v;
    struct node *n;
    char ledger[600], state[600], hex[65], *canon;
    uint8_t plain[32], keyed[32], other[32];
    json_t *j;
    const char *d = NULL;
    if (start(3, 7, 0)) return;
    CHECK(request(port, "POST", "/v1/completions", key, body, &r) == 0 && r.status == 200);
    resp_free(&r);
    stop();
    snprintf(ledger, sizeof(ledger), "%s/ledger-3007", t_tmpdir());
    snprintf(state, sizeof(state), "%s/http-3007.db", t_tmpdir());
    CHECK(!ledger_view_open(ledger, &v, &err));
    for (uint64_t i = v.n; i-- > v.n_pruned && !d;)
        if (strstr(v.lines[i - v.n_pruned], "\"request\":\"cmpl-"))
            d = strstr(v.lines[i - v.n_pruned], "\"digest\":\"");
    CHECK(d);
    j = json_loads(body, 0, NULL);
    canon = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    CHECK(canon);
    crypto_hash_sha256(plain, (const unsigned char *)canon, strlen(canon));
    CHECK((n = state_node(state, &err)));
    if (n && d && canon) {
        node_request_digest(n, canon, strlen(canon), keyed);
        sodium_bin2hex(hex, sizeof(hex), keyed, 32);
        CHECKF(!strncmp(d + 10, hex, 64), "the node's digest is not the ledger's: %.74s", d);
        sodium_bin2hex(hex, sizeof(hex), plain, 32);
        CHECKF(strncmp(d + 10, hex, 64), "the ledger holds the plain SHA-256 of the request");
        /* another node (another secret) digests the same request otherwise */
        {
            char s2[600];
            struct node *n2;
            snprintf(s2, sizeof(s2), "%s/http-3007-other.db", t_tmpdir());
            CHECK((n2 = state_node(s2, &err)));
            if (n2) {
                node_request_digest(n2, canon, strlen(canon), other);
                CHECK(memcmp(other, keyed, 32));
                node_close(n2);
            }
        }
    }
    node_close(n);
    free(canon);
    ledger_view_free(&v);
}

/* A stream its client abandons is recorded as 499 with the tokens it was
 * handed, not 200 with all it would have got. */
void test_http_stream_abandoned(void)
{
    struct cit_buf got = {0};
    struct cit_err err;
    struct ledger_view v;
    char synth[4096], ledger[600];
    const char *e = NULL;
    int fd, status = -1;
    long out = -1;
    CHECK(realpath(t_model_path("synth-llama-Q8_0.gguf"), synth));
    if (start(1, 9, 0)) return;
    CHECKF(node_model_load(http_server_node(srv), "synth", synth, &err) == 0, "%s", err.msg);
    fd = stream_until_content(key,
                              "{\"model\":\"synth\",\"prompt\":\"Once upon a time\","
                              "\"max_tokens\":900,\"temperature\":0,\"stream\":true}",
                              &got);
    CHECKF(fd >= 0, "no generation in flight: %s", got.p ? got.p : "");
    if (fd >= 0) {
        struct linger lg = {1, 0}; /* a reset, as a killed client leaves */
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fd);
    }
    cit_buf_free(&got);
    for (int i = 0; i < 200 && http_server_busy(srv) > 0; i++) usleep(20000);
    stop();
    snprintf(ledger, sizeof(ledger), "%s/ledger-1009", t_tmpdir());
    CHECK(!ledger_view_open(ledger, &v, &err));
    for (uint64_t i = v.n; i-- > v.n_pruned && !e;)
        if (strstr(v.lines[i - v.n_pruned], "\"target\":\"synth\"") &&
            strstr(v.lines[i - v.n_pruned], "\"request\":\"cmpl-"))
            e = v.lines[i - v.n_pruned];
    CHECK(e);
    if (e) {
        const char *s = strstr(e, "\"status\":"), *t = strstr(e, "\"tokens_out\":");
        if (s) status = atoi(s + 9);
        if (t) out = atol(t + 13);
        CHECKF(status == 499, "the abandoned stream is recorded as %d: %s", status, e);
        CHECKF(out >= 1 && out < 900, "tokens_out %ld: %s", out, e);
    }
    ledger_view_free(&v);
}

/* A value split across two messages is still found: the card is redacted
 * in both halves, the keyword (secret) is denied; a value the model reads
 * through invisible and full-width characters is found too. The decision
 * is the real request's (decide and generate share the gate). */
void test_http_split_values(void)
{
    static const struct {
        const char *body, *action, *cls;
    } cases[] = {
        {"{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"my card is "
         "4111 "
         "1111\"},{\"role\":\"user\",\"content\":\"1111 1111 thanks\"}]}",
         "redact", "personal"},
        {"{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"codename "
         "BLUE\"},{\"role\":\"user\",\"content\":\"BIRD is go\"}]}",
         "deny", "secret"},
        {"{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"card "
         "41\\u200b11 1111 1111 1111\"}]}",
         "redact", "personal"},
        {"{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"card "
         "\\uff14\\uff11\\uff11\\uff11 1111 1111 1111\"}]}",
         "redact", "personal"},
        /* two messages that only join by accident: nothing to find */
        {"{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"order "
         "4111\"},{\"role\":\"user\",\"content\":\"ships today\"}]}",
         "local", NULL},
    };
    struct resp r;
    if (start(3, 8, 0)) return;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char want[64];
        CHECK(request(port, "POST", "/v1/policy/decide", key, cases[i].body, &r) == 0);
        snprintf(want, sizeof(want), "\"action\":\"%s\"", cases[i].action);
        CHECKF(r.status == 200 && strstr(r.body, want), "case %zu: %d %s", i, r.status, r.body);
        if (cases[i].cls) {
            snprintf(want, sizeof(want), "\"%s\"", cases[i].cls);
            CHECKF(strstr(r.body, want), "case %zu: %s", i, r.body);
        }
        resp_free(&r);
    }
    /* and the real request: the split card is redacted, the answer comes */
    CHECK(request(port, "POST", "/v1/chat/completions", key,
                  "{\"model\":\"stories260K\",\"max_tokens\":2,\"messages\":[{\"role\":\"user\","
                  "\"content\":\"my card is 4111 1111\"},{\"role\":\"user\",\"content\":\"1111 "
                  "1111 thanks\"}]}",
                  &r) == 0);
    CHECKF(r.status == 200 && strstr(r.head, "X-Citadel-Decision: redact"), "%d %s %s", r.status,
           r.head, r.body);
    resp_free(&r);
    stop();
}

/* A model's metrics slot, reused by a later load, keeps the newcomer's
 * counters when a request of the unloaded one finishes late. */
void test_http_metrics_slot_reuse(void)
{
    struct metrics m;
    struct cit_buf b = {0};
    const char *ids[1] = {"b"};
    struct met_gauges g[1] = {{2, 0, 0, 0, 0}};
    met_init(&m);
    met_generation(&m, 0, "a", 1, 5, 7, 0.01, 0.02);
    met_generation(&m, 0, "b", 2, 3, 4, 0.01, 0.02); /* b loaded into a's slot */
    met_generation(&m, 0, "a", 1, 9, 9, 0.01, 0.02); /* a's last request drains */
    CHECK(met_render(&m, &b, ids, g, 1, 0) == 0 && b.p);
    CHECKF(b.p && strstr(b.p, "citadel_generation_requests_total{model=\"b\"} 1\n") &&
               strstr(b.p, "citadel_generated_tokens_total{model=\"b\"} 4\n") &&
               !strstr(b.p, "model=\"a\""),
           "%s", b.p ? b.p : "");
    cit_buf_free(&b);
    met_destroy(&m);
}

/* A requested model name longer than any id is no model, never the loaded
 * one its first 127 bytes spell. */
void test_http_long_model_name(void)
{
    char id[128], body[400];
    struct cit_err err;
    struct resp r;
    memset(id, 'm', 127);
    id[127] = 0;
    if (start(3, 9, 0)) return;
    CHECKF(node_model_load(http_server_node(srv), id, t_model_path("stories260K.gguf"), &err) == 0,
           "%s", err.msg);
    snprintf(body, sizeof(body), "{\"model\":\"%sy\",\"prompt\":\"a\",\"max_tokens\":1}", id);
    CHECK(request(port, "POST", "/v1/completions", key, body, &r) == 0);
    CHECKF(r.status == 404 && strstr(r.body, "model_not_found"), "%d %s", r.status, r.body);
    resp_free(&r);
    stop();
}

/* The passports a node took: a second sight of one is a replay, for its
 * origin only; forgotten once expired (and purged); many at once (the
 * table grows) all kept. */
void test_node_passports_seen(void)
{
    struct node_seen *s = NULL;
    int64_t now = 1700000000;
    char id[40];
    int fresh = 0, again = 0;
    CHECK(!node_seen_open(&s));
    CHECK(node_seen_add(s, "de", "00aa", now + 60, now) == 0);
    CHECK(node_seen_add(s, "de", "00aa", now + 60, now + 1) == CIT_EINVAL);
    CHECK(node_seen_add(s, "fr", "00aa", now + 60, now + 1) == 0); /* another origin's */
    /* ("de","00aa") and ("de0","0aa") are different keys */
    CHECK(node_seen_add(s, "de0", "0aa", now + 60, now + 1) == 0);
    /* too long to hold: refused, not cut short */
    CHECK(node_seen_add(s, "de", "0123456789abcdef0123456789abcdef0", now + 60, now) == CIT_EIO);
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "%032x", i);
        fresh += node_seen_add(s, "de", id, now + 100, now + 2) == 0;
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "%032x", i);
        again += node_seen_add(s, "de", id, now + 100, now + 3) == CIT_EINVAL;
    }
    CHECKF(fresh == 5000 && again == 5000, "%d fresh, %d replays", fresh, again);
    CHECK(node_seen_count(s) == 5003);
    /* after the first expired (now + 60) and a purge's interval: they are
     * gone, the later ones kept */
    CHECK(node_seen_add(s, "de", "00aa", now + 160, now + 70) == 0);
    CHECKF(node_seen_count(s) == 5001, "%zu held", node_seen_count(s));
    node_seen_close(s);
}

/* ---- embeddings ---- */

/* The vector of data[i] (float or base64) into v (cap floats); its length. */
static int embedding_at(json_t *j, int i, float *v, int cap)
{
    char path[64];
    json_t *e;
    snprintf(path, sizeof(path), "data.%d.embedding", i);
    e = jpath(j, path);
    if (json_is_string(e)) {
        const char *s = json_string_value(e);
        size_t n = 0;
        if (sodium_base642bin((unsigned char *)v, (size_t)cap * 4, s, strlen(s), NULL, &n, NULL,
                              sodium_base64_VARIANT_ORIGINAL))
            return -1;
        return (int)(n / 4);
    }
    if (!json_is_array(e) || (int)json_array_size(e) > cap) return -1;
    for (size_t k = 0; k < json_array_size(e); k++)
        v[k] = (float)json_number_value(json_array_get(e, k));
    return (int)json_array_size(e);
}

static double cos_sim(const float *a, const float *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++)
        ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return ab / sqrt(aa * bb);
}

/* One input's vector from the server (dims floats into v); the status. */
static int embed_one(const char *k, const char *extra, const char *input_json, float *v,
                     char *decision, size_t dcap)
{
    char body[4096];
    struct resp r;
    json_t *j;
    int st, n = 0;
    snprintf(body, sizeof(body), "{\"model\":\"synth-bert\",\"input\":%s}", input_json);
    if (post(k, extra, "/v1/embeddings", body, &r)) return -1;
    st = r.status;
    if (decision) header_value(&r, "X-Citadel-Decision", decision, dcap);
    if (st == 200 && (j = body_json(&r))) {
        n = embedding_at(j, 0, v, 512);
        json_decref(j);
    }
    resp_free(&r);
    return st == 200 && n != 128 ? -1 : st;
}

/* POST /v1/embeddings against synth-bert's reference; its shapes and
 * errors; and the gate: a personal-data string, a secret and a forward
 * get the decision the same text gets in chat, and the ledger has them. */
void test_http_embeddings(void)
{
    char bert[1200], kf[NODE_KEY_LEN + 1], kc[NODE_KEY_LEN + 1], ledger[512], body[8192];
    struct resp r;
    json_t *j, *ref;
    float v[512], w[512];
    size_t len;
    char *text = t_read_file(t_model_path("synth-bert.ref.json"), &len);
    struct ledger_view lv;
    struct cit_err err;
    struct cit_buf rep = {0};
    int n_embd_entries = 0;
    CHECK(text && (ref = json_loadb(text, len, 0, NULL)));
    cit_free(text);
    snprintf(bert, sizeof(bert), "synth-bert=%s", t_model_path("synth-bert.gguf"));
    extra_model = bert;
    if (start(3, 5, 0)) {
        extra_model = NULL;
        json_decref(ref);
        return;
    }
    extra_model = NULL;
    if (add_key(3, 5, "fwd", kf)) return;
    {
        struct node *k = http_server_node(srv);
        char id[NODE_KEY_ID_LEN + 1];
        CHECKF(node_key_add(k, "tests", "endpoint:chat model:*", kc, id, &err) == 0, "%s", err.msg);
    }

    /* every reference prompt in one request: in order, each within the
     * engine's bound of the reference */
    {
        json_t *cases = json_object_get(ref, "cases"), *c;
        size_t i;
        struct cit_buf in = {0};
        BUF_LIT(&in, "[");
        json_array_foreach(cases, i, c)
        {
            const char *p = json_string_value(json_object_get(c, "prompt"));
            if (i) BUF_LIT(&in, ",");
            cit_buf_json_str(&in, p, strlen(p));
        }
        BUF_LIT(&in, "]");
        snprintf(body, sizeof(body), "{\"model\":\"synth-bert\",\"input\":%s}", in.p);
        cit_buf_free(&in);
        CHECK(!post(key, NULL, "/v1/embeddings", body, &r));
        CHECKF(r.status == 200 && strcasestr(r.head, "X-Citadel-Decision: local"), "%d %s %s",
               r.status, r.head, r.body);
        CHECK((j = body_json(&r)));
        CHECK(!strcmp(jstr(j, "object"), "list") && !strcmp(jstr(j, "model"), "synth-bert"));
        {
            long long toks = 0;
            json_array_foreach(cases, i, c)
            {
                json_t *e = json_object_get(c, "embedding");
                char path[32];
                CHECK(embedding_at(j, (int)i, v, 512) == 128);
                for (int k = 0; k < 128; k++) w[k] = (float)json_number_value(json_array_get(e, k));
                CHECKF(cos_sim(v, w, 128) >= 0.999, "case %zu: cosine %f", i, cos_sim(v, w, 128));
                snprintf(path, sizeof(path), "data.%zu.index", i);
                CHECK(jint(j, path) == (long long)i);
                toks += (long long)json_array_size(json_object_get(c, "prompt_tokens"));
            }
            CHECKF(jint(j, "usage.prompt_tokens") == toks && jint(j, "usage.total_tokens") == toks,
                   "usage %lld, want %lld", jint(j, "usage.prompt_tokens"), toks);
        }
        json_decref(j);
        resp_free(&r);
    }
    /* base64 is the float vector's bytes; token ids embed as the text;
     * dimensions cut and renormalise */
    CHECK(embed_one(key, NULL, "\"Hello world\"", v, NULL, 0) == 200);
    CHECK(!post(key, NULL, "/v1/embeddings",
                "{\"model\":\"synth-bert\",\"input\":\"Hello world\",\"encoding_format\":"
                "\"base64\"}",
                &r));
    CHECK(r.status == 200 && (j = body_json(&r)));
    CHECK(embedding_at(j, 0, w, 512) == 128 && !memcmp(v, w, 128 * sizeof(float)));
    json_decref(j);
    resp_free(&r);
    CHECK(embed_one(key, NULL, "[[101, 711, 400, 102]]", w, NULL, 0) == 200);
    CHECK(!memcmp(v, w, 128 * sizeof(float)));
    CHECK(embed_one(key, NULL, "[101, 711, 400, 102]", w, NULL, 0) == 200);
    CHECK(!memcmp(v, w, 128 * sizeof(float)));
    CHECK(!post(key, NULL, "/v1/embeddings",
                "{\"model\":\"synth-bert\",\"input\":\"Hello world\",\"dimensions\":32}", &r));
    CHECK(r.status == 200 && (j = body_json(&r)));
    {
        double nv = 0, nw = 0;
        CHECK(embedding_at(j, 0, w, 512) == 32);
        for (int k = 0; k < 32; k++) nv += (double)v[k] * v[k], nw += (double)w[k] * w[k];
        CHECKF(fabs(nw - 1) < 1e-5, "norm %g", nw);
        for (int k = 0; k < 32; k++) CHECK(fabs(w[k] - v[k] / sqrt(nv)) < 1e-6);
    }
    json_decref(j);
    resp_free(&r);

    /* what is refused, naming the field */
    {
        static const struct {
            const char *body, *param, *says;
        } bad[] = {
            {"{\"model\":\"synth-bert\",\"input\":\"\"}", "input", "empty string"},
            {"{\"model\":\"synth-bert\",\"input\":[]}", "input", "not empty"},
            {"{\"model\":\"synth-bert\",\"input\":[\"a\",7]}", "input", "must be a string"},
            {"{\"model\":\"synth-bert\",\"input\":[[1,2],[]]}", "input", "empty array"},
            {"{\"model\":\"synth-bert\",\"input\":[[1,-2]]}", "input", "not a token id"},
            {"{\"model\":\"synth-bert\",\"input\":[[5000]]}", "input", "not in the vocabulary"},
            {"{\"model\":\"synth-bert\",\"input\":\"x\",\"encoding_format\":\"int8\"}",
             "encoding_format", "\\\"float\\\" or \\\"base64\\\""},
            {"{\"model\":\"synth-bert\",\"input\":\"x\",\"dimensions\":0}", "dimensions",
             "positive"},
            {"{\"model\":\"synth-bert\",\"input\":\"x\",\"dimensions\":129}", "dimensions",
             "have 128"},
            {"{\"input\":\"x\"}", "model", "required"},
            {"{\"model\":\"stories260K\",\"input\":\"x\"}", "model", "not an embedding model"},
            {"{\"model\":\"nope\",\"input\":\"x\"}", "model", "does not exist"},
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            char want[64];
            CHECK(!post(key, NULL, "/v1/embeddings", bad[i].body, &r));
            snprintf(want, sizeof(want), "\"param\":\"%s\"", bad[i].param);
            CHECKF(r.status >= 400 && r.status < 500 && strstr(r.body, want) &&
                       strstr(r.body, bad[i].says),
                   "%s: %d %s", bad[i].body, r.status, r.body);
            resp_free(&r);
        }
        /* an input past the model's 512 positions */
        {
            struct cit_buf in = {0};
            BUF_LIT(&in, "{\"model\":\"synth-bert\",\"input\":\"");
            for (int k = 0; k < 600; k++) BUF_LIT(&in, "dog ");
            BUF_LIT(&in, "\"}");
            CHECK(!post(key, NULL, "/v1/embeddings", in.p, &r));
            CHECKF(r.status == 400 && strstr(r.body, "context_length_exceeded") &&
                       strstr(r.body, "at most 512"),
                   "%d %s", r.status, r.body);
            resp_free(&r);
            cit_buf_free(&in);
        }
        /* an encoder does not chat; a key without the scope does not embed */
        CHECK(!post(key, NULL, "/v1/chat/completions",
                    "{\"model\":\"synth-bert\",\"messages\":[{\"role\":\"user\",\"content\":"
                    "\"hi\"}]}",
                    &r));
        CHECKF(r.status == 400 && strstr(r.body, "model_embeddings_only"), "%d %s", r.status,
               r.body);
        resp_free(&r);
        CHECK(embed_one(kc, NULL, "\"hi\"", v, NULL, 0) == 403);
    }

    /* the gate: each text gets in /v1/embeddings the decision it gets in
     * chat; a redacted input is embedded as its redacted text */
    {
        static const struct {
            const char *text, *action;
            int fwd, emb_status, chat_status;
        } cases[] = {
            {"Mail alice.smith@example.com today", "redact; rule=personal-redacted", 0, 200, 200},
            {"the BLUEBIRD plan", "deny; rule=secrets-stay-out", 0, 403, 403},
            {"hello there", "forward; rule=fwd-to-fr", 1, 403, 503},
            {"hello there", "local; rule=default-local", 0, 200, 200},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            char in[256], d_emb[160], d_chat[160];
            const char *k = cases[i].fwd ? kf : key;
            snprintf(in, sizeof(in), "\"%s\"", cases[i].text);
            CHECK(embed_one(k, NULL, in, v, d_emb, sizeof(d_emb)) == cases[i].emb_status);
            snprintf(body, sizeof(body),
                     "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":"
                     "\"%s\"}],\"max_tokens\":2}",
                     cases[i].text);
            CHECK(!post(k, NULL, "/v1/chat/completions", body, &r));
            header_value(&r, "X-Citadel-Decision", d_chat, sizeof(d_chat));
            CHECKF(r.status == cases[i].chat_status && !strcmp(d_emb, d_chat) &&
                       !strcmp(d_emb, cases[i].action),
                   "'%s': embeddings '%s', chat '%s' (%d)", cases[i].text, d_emb, d_chat, r.status);
            resp_free(&r);
        }
        CHECK(embed_one(key, NULL, "\"Mail alice.smith@example.com today\"", v, NULL, 0) == 200);
        CHECK(embed_one(key, NULL, "\"Mail [EMAIL_1] today\"", w, NULL, 0) == 200);
        CHECKF(!memcmp(v, w, 128 * sizeof(float)),
               "the redacted input was not embedded as its placeholder text");
        /* a declared class decides as it does for chat */
        CHECK(embed_one(key, "X-Citadel-Data-Class: secret\r\n", "\"hello\"", v, NULL, 0) == 403);
    }
    CHECK(!request(port, "GET", "/metrics", key, NULL, &r));
    CHECKF(r.status == 200 && strstr(r.body, "endpoint=\"embeddings\""), "%s", r.body);
    resp_free(&r);
    stop();
    json_decref(ref);

    snprintf(ledger, sizeof(ledger), "%s/ledger-3005", t_tmpdir());
    CHECKF(!ledger_verify(ledger, NULL, &rep, &err), "%s", err.msg);
    cit_buf_free(&rep);
    CHECK(!ledger_view_open(ledger, &lv, &err));
    for (uint64_t i = 0; i < lv.n; i++) {
        const char *l = lv.lines[i];
        n_embd_entries += strstr(l, "\"request\":\"embd-") != NULL;
        CHECKF(!strstr(l, "alice") && !strstr(l, "BLUEBIRD"), "the ledger holds an input: %s", l);
    }
    ledger_view_free(&lv);
    CHECKF(n_embd_entries >= 10, "%d embeddings entries", n_embd_entries);
}
