/*
 * libFuzzer target for the admin socket's request line (make fuzz):
 * arbitrary bytes as {"argv": [...]}. Either refused with a reason, or
 * every argument is a NUL-free string within the argument cap.
 */
#include <stdlib.h>
#include <string.h>

#include "../src/node/node_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *root = NULL;
    char *argv[NODE_ADMIN_MAX_ARGS + 1];
    struct cit_buf err = {0};
    int argc = -1;
    int rc = node_admin_parse((const char *)data, size, &root, argv, &argc, &err);
    if (rc) {
        if (!err.p || strncmp(err.p, "citadel: ", 9) || argc != 0) abort();
    } else {
        if (argc < 1 || argc > NODE_ADMIN_MAX_ARGS || argv[argc]) abort();
        for (int i = 0; i < argc; i++)
            if (!argv[i]) abort();
    }
    json_decref(root);
    cit_buf_free(&err);
    return 0;
}
