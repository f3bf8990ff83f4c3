/*
 * Whole small files (keys, checkpoints, signatures, accounts): read into a
 * buffer, or written all at once through a temporary file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

int cit_write_file(const char *path, const void *p, size_t n, unsigned mode, struct cit_err *err)
{
    char tmp[4200];
    int fd, ok;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return cit_err_set(err, CIT_EINVAL, "%s: path too long", path);
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode)) < 0)
        return cit_err_set(err, CIT_EIO, "%s: %s", tmp, strerror(errno));
    ok = write(fd, p, n) == (ssize_t)n && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path)) {
        unlink(tmp);
        return cit_err_set(err, CIT_EIO, "%s: cannot write: %s", path, strerror(errno));
    }
    return 0;
}
