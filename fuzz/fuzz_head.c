/*
 * libFuzzer target for the lobby's view of a request head (make fuzz):
 * any bytes, as held so far or as all the lobby will hold, with and
 * without a longer head allowed. The check must never read past n and
 * must keep its promises: it waits only while more may come, passes a
 * head on only when one that long is allowed, calls a head complete only
 * when it has an HTTP/1.x request line and an empty line after it, and
 * refuses only with a status it can answer (400, 414, 431, 505) and words.
 */
#include <stdlib.h>
#include <string.h>

#include "../src/http/http_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a copy of exactly size bytes, so that ASan sees any read past them */
    char *p = malloc(size ? size : 1);
    if (!p) return 0;
    if (size) memcpy(p, data, size);
    for (int full = 0; full < 2; full++)
        for (int pass = 0; pass < 2; pass++) {
            struct head_bad b = {0};
            enum head_verdict v = conn_head_check(p, size, full, pass, &b);
            const char *nl = memchr(p, '\n', size);
            switch (v) {
            case HEAD_WAIT:
                if (full) abort();
                break;
            case HEAD_PASS:
                if (!full || !pass) abort();
                break;
            case HEAD_READY:
                if (!nl || !memmem(p, size, " HTTP/1.", 8)) abort();
                if (!memmem(nl, size - (size_t)(nl - p), "\n\n", 2) &&
                    !memmem(nl, size - (size_t)(nl - p), "\n\r\n", 3))
                    abort();
                break;
            case HEAD_BAD:
                if ((b.status != 400 && b.status != 414 && b.status != 431 && b.status != 505) ||
                    !b.code || !b.msg || !b.msg[0])
                    abort();
                break;
            default:
                abort();
            }
        }
    free(p);
    return 0;
}
