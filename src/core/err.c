/* Error codes and messages. */
#include "citadel/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *cit_strerror(int code)
{
    switch (code) {
    case CIT_OK:
        return "success";
    case CIT_ENOMEM:
        return "out of memory";
    case CIT_EINVAL:
        return "invalid argument";
    case CIT_EIO:
        return "input/output error";
    case CIT_EFORMAT:
        return "malformed input";
    case CIT_ERANGE:
        return "value out of range";
    case CIT_ENOTSUP:
        return "not supported";
    case CIT_ENOENT:
        return "not found";
    case CIT_EOVERFLOW:
        return "buffer too small";
    default:
        return "unknown error";
    }
}

int cit_err_set(struct cit_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

void cit_err_prefix(struct cit_err *err, const char *prefix)
{
    char tmp[sizeof(err->msg)];
    size_t n;
    if (!err) return;
    n = (size_t)snprintf(tmp, sizeof(tmp), "%s: ", prefix);
    if (n < sizeof(tmp))
        snprintf(tmp + n, sizeof(tmp) - n, "%.*s", (int)(sizeof(tmp) - n - 1), err->msg);
    memcpy(err->msg, tmp, sizeof(tmp));
}
