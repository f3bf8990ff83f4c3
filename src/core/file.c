/*
 * Whole small files (keys, checkpoints, signatures) read into a buffer.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "citadel/core.h"

int cit_read_file(const char *path, size_t max, struct cit_buf *b, struct cit_err *err)
{
    FILE *f = fopen(path, "rb");
    char chunk[65536];
    size_t n;
    b->len = 0;
    if (!f) {
        if (errno == ENOENT) return CIT_ENOENT;
        return cit_err_set(err, CIT_EIO, "%s: %s", path, strerror(errno));
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (b->len + n > max) {
            fclose(f);
            return cit_err_set(err, CIT_ERANGE, "%s: larger than %zu bytes", path, max);
        }
        if (cit_buf_add(b, chunk, n)) {
            fclose(f);
            return cit_err_set(err, CIT_ENOMEM, "%s: out of memory", path);
        }
    }
    if (ferror(f)) {
        fclose(f);
        return cit_err_set(err, CIT_EIO, "%s: read failed", path);
    }
    fclose(f);
    if (cit_buf_add(b, "", 1)) return cit_err_set(err, CIT_ENOMEM, "%s: out of memory", path);
    b->len--;
    return 0;
}
