/*
 * libFuzzer target for the policy parser (make fuzz): arbitrary bytes as a
 * policy file. Either it loads, and a decision on a fixed prompt completes
 * with one of the four actions, or it is refused with a message that names
 * the file.
 */
#include <stdlib.h>
#include <string.h>

#include "citadel/policy.h"
#include "../src/policy/policy_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pol_policy *p;
    struct cit_err err;
    if (pol_parse("fuzz.yaml", (const char *)data, size, &p, &err)) {
        if (strncmp(err.msg, "fuzz.yaml", 9)) abort();
        return 0;
    }
    const char *text = "mail anna@example.com, card 4111 1111 1111 1111, BLUEBIRD";
    for (int t = 0; t < p->n_tenants && t < 4; t++)
        for (int m = 0; m < p->n_models && m < 4; m++) {
            struct pol_request r = {p->tenants[t].name, p->models[m].id, text, strlen(text),
                                    "public", NULL, 0};
            struct pol_decision d;
            pol_decide(p, &r, &d);
            if (d.action < POL_DENY || d.action > POL_FORWARD) abort();
            if (d.action == POL_FORWARD && !d.peer) abort();
            pol_decision_free(&d);
        }
    pol_free(p);
    return 0;
}
