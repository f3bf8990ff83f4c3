/*
 * libFuzzer target for the HTTP API's request parser (make fuzz):
 * arbitrary bytes as a chat and as a completions body. The parser must
 * either accept (and then every string it hands out is valid, NUL-free
 * UTF-8 of the stated length, every number in range) or refuse with a
 * status and a message; never crash, leak or read out of bounds. Accepted
 * requests are also rendered through the chat template, and refusals are
 * written as OpenAI error bodies, which must be valid JSON. The same bytes
 * go through the /v1/embeddings parser: an accepted body has 1 to 2048
 * inputs, each a non-empty string or a non-empty run of token ids.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../src/http/http_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Strings handed out must be valid UTF-8 (jansson's json_string checks). */
static void check_str(const char *s)
{
    json_t *j;
    if (!s) return;
    j = json_string(s);
    if (!j) abort();
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int chat = 0; chat < 2; chat++) {
        struct api_req r;
        struct api_err e = {0};
        struct cit_buf out = {0};
        if (api_parse((const char *)data, size, chat, &r, &e) == 0) {
            check_str(r.model);
            check_str(r.prompt);
            for (int i = 0; i < r.n_stops; i++) check_str(r.stops[i]);
            if (r.max_tokens < 0 || r.n_stops > API_MAX_STOPS) abort();
            if (!(r.sp.temperature >= 0 && r.sp.temperature <= 2)) abort();
            if (chat) {
                char *rendered = NULL;
                for (int i = 0; i < r.n_msgs; i++) check_str(r.msgs[i].content);
                if (eng_chat_render(ENG_CHAT_CHATML, r.msgs, r.n_msgs, 1, NULL, &rendered) == 0)
                    cit_free(rendered);
            }
        } else {
            json_t *j;
            if (e.status < 400 || e.status > 599 || !e.msg[0]) abort();
            api_error_json(&out, &e);
            j = json_loadb(out.p, out.len, 0, NULL);
            if (!j) abort();
            json_decref(j);
        }
        api_req_free(&r);
        cit_buf_free(&out);
    }
    {
        struct api_embed q;
        struct api_err e = {0};
        if (api_parse_embed((const char *)data, size, &q, &e) == 0) {
            long total = 0;
            check_str(q.model);
            if (q.n_inputs < 1 || q.n_inputs > EMBED_MAX_INPUTS || (!q.texts == !q.lens)) abort();
            for (int i = 0; i < q.n_inputs; i++) {
                if (q.texts) {
                    check_str(q.texts[i].content);
                    if (!q.texts[i].content[0]) abort();
                } else {
                    if (q.lens[i] < 1) abort();
                    total += q.lens[i];
                }
            }
            if (q.lens && total != q.n_ids) abort();
            for (int i = 0; i < q.n_ids; i++)
                if (q.ids[i] < 0) abort();
        } else if (e.status != 400 || !e.msg[0]) {
            abort();
        }
        api_embed_free(&q);
    }
    return 0;
}
