/*
 * libFuzzer target for the configuration parser and the server settings
 * (make fuzz): arbitrary bytes as citadel.conf. Every line is either
 * applied or refused with a message naming the line; the settings stay
 * within their documented ranges.
 */
#include <stdlib.h>
#include <string.h>

#include "citadel/http.h"
#include "../src/core/core_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int apply(void *user, const char *key, const char *value, struct cit_err *err)
{
    return http_opts_set(user, key, value, err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_opts o;
    struct cit_err err;
    http_opts_defaults(&o);
    if (cit_conf_parse("fuzz.conf", (const char *)data, size, apply, &o, &err)) {
        if (strncmp(err.msg, "fuzz.conf", 9)) abort(); /* every error names the file */
        return 0;
    }
    if (o.port < 0 || o.port > 65535 || o.node.parallel < 1 || o.node.parallel > 256 ||
        o.node.threads < 1 || o.node.n_models < 0 || o.node.n_models > NODE_MAX_MODELS ||
        o.lim.max_body < 1024)
        abort();
    for (int i = 0; i < o.node.n_models; i++)
        if (!o.node.models[i].id[0] || !o.node.models[i].path[0]) abort();
    return 0;
}
