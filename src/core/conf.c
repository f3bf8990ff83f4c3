/*
 * Configuration files: one "key = value" per line.
 *
 *   # comment
 *   port = 8080
 *   model = ../shared/models/stories260K.gguf     # repeatable keys are the caller's business
 *   host = "127.0.0.1"
 *
 * Keys are [a-z0-9_]+. A value may be double-quoted (then it may contain
 * '#'; \" and \\ are its only escapes). Everything else is the caller's:
 * the callback checks keys and values and names the fix.
 */
#include "citadel/core.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "core_int.h"

#define CONF_MAX_LINE  4096
#define CONF_MAX_BYTES (1 << 20)

static char *trim(char *s)
{
    char *e;
    while (*s == ' ' || *s == '\t') s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) *--e = 0;
    return s;
}

/* Parses one line in place; 0 with *key NULL for blank or comment lines. */
static int parse_line(char *line, char **key, char **value, const char **why)
{
    char *s = trim(line), *eq, *v;
    *key = *value = NULL;
    if (!*s || *s == '#') return 0;
    eq = strchr(s, '=');
    if (!eq) {
        *why = "expected 'key = value'";
        return -1;
    }
    *eq = 0;
    *key = trim(s);
    if (!**key) {
        *why = "missing key before '='";
        return -1;
    }
    for (const char *k = *key; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') || *k == '_')) {
            *why = "keys are lower-case letters, digits and '_'";
            return -1;
        }
    v = trim(eq + 1);
    if (*v == '"') {
        char *w = v, *r = v + 1;
        for (; *r && *r != '"'; r++) {
            if (*r == '\\' && (r[1] == '"' || r[1] == '\\')) r++;
            *w++ = *r;
        }
        if (*r != '"') {
            *why = "unterminated quoted value";
            return -1;
        }
        r = trim(r + 1);
        if (*r && *r != '#') {
            *why = "text after the closing quote";
            return -1;
        }
        *w = 0;
    } else {
        char *hash = strchr(v, '#');
        if (hash) *hash = 0;
        v = trim(v);
    }
    *value = v;
    return 0;
}

int cit_conf_parse(const char *name, const char *text, size_t len, cit_conf_fn fn, void *user,
                   struct cit_err *err)
{
    char line[CONF_MAX_LINE];
    int lineno = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        char *key, *value, where[300];
        const char *why = NULL;
        int rc;
        lineno++;
        if (n >= sizeof(line))
            return cit_err_set(err, CIT_EFORMAT, "%s:%d: line longer than %d bytes", name, lineno,
                               CONF_MAX_LINE - 1);
        if (memchr(text + pos, 0, n))
            return cit_err_set(err, CIT_EFORMAT, "%s:%d: NUL byte in the line", name, lineno);
        memcpy(line, text + pos, n);
        line[n] = 0;
        pos += n + 1;
        if (parse_line(line, &key, &value, &why))
            return cit_err_set(err, CIT_EFORMAT, "%s:%d: %s", name, lineno, why);
        if (!key) continue;
        if ((rc = fn(user, key, value, err))) {
            snprintf(where, sizeof(where), "%s:%d", name, lineno);
            cit_err_prefix(err, where);
            return rc;
        }
    }
    return 0;
}

int cit_conf_load(const char *path, cit_conf_fn fn, void *user, struct cit_err *err)
{
    struct cit_buf b = {0};
    char chunk[4096];
    size_t n;
    int rc;
    FILE *f = fopen(path, "r");
    if (!f) return cit_err_set(err, CIT_EIO, "%s: cannot open: %s", path, strerror(errno));
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (b.len + n > CONF_MAX_BYTES) {
            fclose(f);
            cit_buf_free(&b);
            return cit_err_set(err, CIT_ERANGE, "%s: larger than %d bytes", path, CONF_MAX_BYTES);
        }
        if (cit_buf_add(&b, chunk, n)) {
            fclose(f);
            cit_buf_free(&b);
            return cit_err_set(err, CIT_ENOMEM, "%s: out of memory", path);
        }
    }
    if (ferror(f)) {
        fclose(f);
        cit_buf_free(&b);
        return cit_err_set(err, CIT_EIO, "%s: read error", path);
    }
    fclose(f);
    rc = cit_conf_parse(path, b.p ? b.p : "", b.len, fn, user, err);
    cit_buf_free(&b);
    return rc;
}
