/*
 * libFuzzer target for output scanning (make fuzz): arbitrary bytes as a
 * model's answer, streamed in pieces whose sizes come from the input's
 * own bytes. The streamed answer must equal the whole-text answer byte
 * for byte (nothing unsettled was released), and nothing is released
 * twice or beyond what has arrived.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "citadel/policy.h"
#include "../src/policy/policy_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char policy[] = "version: 1\n"
                             "node: {id: fuzz, jurisdiction: DE}\n"
                             "classes: [public, internal, personal, secret]\n"
                             "detectors: {ipv4: internal, ipv6: internal, email: personal}\n"
                             "keywords: [{word: top secret plan, class: secret}]\n"
                             "tenants: {t: }\n"
                             "models: {m: {jurisdiction: DE, classes: [public]}}\n"
                             "rules: [{id: all, action: local}]\n"
                             "output: {action: redact, class_at_least: personal, hold_back: 48}\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct pol_policy *p;
    struct cit_err err;
    if (!p && pol_parse("fuzz", policy, sizeof(policy) - 1, &p, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        abort();
    }
    const char *t = (const char *)data;
    struct pol_outscan whole = {0}, part = {0};
    struct cit_buf a = {0}, b = {0};
    if (pol_output_step(p, &whole, t, size, size, 1, &a)) abort();
    for (size_t at = 0, k = 0; at < size;) {
        at += 1 + (unsigned char)t[k++ % size] % 13;
        if (at > size) at = size;
        size_t before = part.done;
        if (pol_output_step(p, &part, t, at, at, 0, &b)) abort();
        if (part.done < before || part.done > at) abort();
    }
    if (pol_output_step(p, &part, t, size, size, 1, &b)) abort();
    if (a.len != b.len || (a.len && memcmp(a.p, b.p, a.len))) abort();
    cit_buf_free(&a);
    cit_buf_free(&b);
    return 0;
}
