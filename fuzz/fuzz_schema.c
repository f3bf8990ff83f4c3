/*
 * libFuzzer target for structured output (make fuzz): the input is a JSON
 * Schema, a NUL byte, then text. The schema compiler must compile or
 * refuse with a message; a compiled grammar then reads the text byte by
 * byte, and the matcher must neither crash nor accept a byte after the
 * value is whole. When the whole text is accepted as a complete value,
 * jansson must parse it (the matcher never lets through what is not JSON).
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../src/http/http_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t slen = nul ? (size_t)(nul - data) : size;
    const char *text = nul ? (const char *)nul + 1 : "";
    size_t tlen = nul ? size - slen - 1 : 0;
    json_error_t je;
    json_t *schema = json_loadb((const char *)data, slen, JSON_DECODE_ANY, &je);
    struct eng_gram *g = NULL;
    struct eng_gram_state *s;
    char msg[512];
    size_t i;
    if (!schema) return 0;
    if (schema_compile(schema, "schema", &g, msg, sizeof(msg))) {
        if (!memchr(msg, 0, sizeof(msg)) || !msg[0]) abort(); /* a message, terminated */
        json_decref(schema);
        return 0;
    }
    if (eng_gram_state_new(g, &s)) abort();
    for (i = 0; i < tlen; i++) {
        int done = eng_gram_done(s);
        if (eng_gram_feed(s, text + i, 1)) break;
        if (done) abort(); /* nothing may follow a whole value */
    }
    if (i == tlen && eng_gram_can_end(s)) {
        json_t *j = json_loadb(text, tlen, JSON_DECODE_ANY, &je);
        if (!j) abort();
        json_decref(j);
    }
    eng_gram_state_free(s);
    eng_gram_free(g);
    json_decref(schema);
    return 0;
}
