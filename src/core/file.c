/*
 * Whole small files (keys, checkpoints, signatures, accounts): read into a
 * buffer, or written all at once through a temporary file, fsync'd, renamed
 * over the old one, and the folder fsync'd so that the rename survives a
 * power loss.
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

const char *cit_path_dir(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, cap, ".");
    else
        snprintf(out, cap, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    return out;
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
    /* the rename itself lives in the folder: sync it too, or a power loss
     * can bring back the old file (or none) after we said it was written */
    {
        char dir[4200];
        int dfd;
        if ((dfd = open(cit_path_dir(path, dir, sizeof(dir)), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
            return cit_err_set(err, CIT_EIO, "%s: cannot open its folder to sync: %s", path,
                               strerror(errno));
        ok = fsync(dfd) == 0;
        close(dfd);
        if (!ok)
            return cit_err_set(err, CIT_EIO, "%s: cannot sync its folder: %s", path,
                               strerror(errno));
    }
    return 0;
}

int cit_hex_digest(const char *hex, uint8_t out[32])
{
    uint8_t v[32];
    if (!hex || strlen(hex) != 64) return CIT_EFORMAT;
    for (int i = 0; i < 64; i++) {
        char c = hex[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return CIT_EFORMAT;
        v[i / 2] = (uint8_t)(i & 1 ? v[i / 2] | d : d << 4);
    }
    memcpy(out, v, 32);
    return 0;
}
