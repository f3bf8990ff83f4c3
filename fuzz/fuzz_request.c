/*
 * libFuzzer target for the HTTP API's request parser (make fuzz):
 * arbitrary bytes as a chat and as a completions body. The parser must
 * either accept (and then every string it hands out is valid, NUL-free
 * UTF-8 of the stated length, every number in range) or refuse with a
 * status and a message; never crash, leak or read out of bounds. Accepted
 * requests are also rendered through the chat template, and refusals are
 * written as OpenAI error bodies, which must be valid JSON.
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
    return 0;
}
