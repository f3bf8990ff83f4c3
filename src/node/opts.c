/*
 * The node's settings: defaults, one setter shared by citadel.conf and the
 * command line, and the config reader that resolves a file's relative
 * paths against its folder.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node_int.h"

void node_opts_defaults(struct node_opts *o)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->state, sizeof(o->state), "citadel.db");
    snprintf(o->ledger, sizeof(o->ledger), "ledger");
    o->checkpoint_s = 60;
    o->threads = cit_cpu_count();
    o->parallel = 8;
    o->queue = 64;
}

int node_set_int(const char *key, const char *v, long lo, long hi, long *out, struct cit_err *err)
{
    char *end;
    long x;
    errno = 0;
    x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return cit_err_set(err, CIT_EINVAL, "%s: '%s' is not an integer from %ld to %ld", key, v,
                           lo, hi);
    *out = x;
    return 0;
}

int node_set_bool(const char *key, const char *v, int *out, struct cit_err *err)
{
    if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1"))
        *out = 1;
    else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0"))
        *out = 0;
    else
        return cit_err_set(err, CIT_EINVAL, "%s: '%s' is not true or false", key, v);
    return 0;
}

int node_opts_path(const struct node_opts *o, const char *key, const char *v, char *dst, size_t cap,
                   struct cit_err *err)
{
    int n;
    if (!*v) return cit_err_set(err, CIT_EINVAL, "%s: empty path", key);
    if (v[0] == '/' || !o->base[0])
        n = snprintf(dst, cap, "%s", v);
    else
        n = snprintf(dst, cap, "%s/%s", o->base, v);
    if (n < 0 || (size_t)n >= cap)
        return cit_err_set(err, CIT_ERANGE, "%s: path longer than %zu bytes", key, cap - 1);
    return 0;
}

/* "ID=PATH" or "PATH" (the id is the file name without .gguf). */
int node_model_spec_parse(const struct node_opts *o, const char *v, struct node_model_spec *m,
                          struct cit_err *err)
{
    const char *eq = strchr(v, '='), *path = eq ? eq + 1 : v, *base;
    size_t idlen;
    int rc;
    if (!*path) return cit_err_set(err, CIT_EINVAL, "model: empty path");
    if (eq) {
        base = v;
        idlen = (size_t)(eq - v);
    } else {
        base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        idlen = strlen(base);
        if (idlen > 5 && !strcmp(base + idlen - 5, ".gguf")) idlen -= 5;
    }
    if (idlen == 0 || idlen >= sizeof(m->id))
        return cit_err_set(err, CIT_EINVAL, "model: the id must be 1 to %zu characters",
                           sizeof(m->id) - 1);
    for (size_t i = 0; i < idlen; i++) {
        char c = base[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return cit_err_set(err, CIT_EINVAL,
                               "model: id '%.*s' may use letters, digits, '-', '_', '.' and ':' "
                               "only (give ID=PATH to choose one)",
                               (int)idlen, base);
    }
    if ((rc = node_opts_path(o, "model", path, m->path, sizeof(m->path), err))) return rc;
    memcpy(m->id, base, idlen);
    m->id[idlen] = 0;
    return 0;
}

static int add_model(struct node_opts *o, const char *v, struct cit_err *err)
{
    struct node_model_spec m;
    int rc;
    if (o->n_models == NODE_MAX_MODELS)
        return cit_err_set(err, CIT_ERANGE, "model: at most %d models", NODE_MAX_MODELS);
    if ((rc = node_model_spec_parse(o, v, &m, err))) return rc;
    for (int i = 0; i < o->n_models; i++)
        if (!strcmp(o->models[i].id, m.id))
            return cit_err_set(err, CIT_EINVAL, "model: id '%s' given twice", m.id);
    o->models[o->n_models++] = m;
    return 0;
}

int node_opts_set(struct node_opts *o, const char *key, const char *v, struct cit_err *err)
{
    long x;
    int rc;
#define INT_KEY(name, field, lo, hi)                                                               \
    if (!strcmp(key, name)) {                                                                      \
        if ((rc = node_set_int(key, v, lo, hi, &x, err))) return rc;                               \
        field = (int)x;                                                                            \
        return 0;                                                                                  \
    }
    INT_KEY("threads", o->threads, 1, 1024)
    INT_KEY("ctx", o->ctx, 0, 1 << 20)
    INT_KEY("parallel", o->parallel, 1, 256)
    INT_KEY("queue", o->queue, 0, 1 << 16)
    INT_KEY("checkpoint_interval", o->checkpoint_s, 1, 86400)
#undef INT_KEY
    if (!strcmp(key, "state")) return node_opts_path(o, key, v, o->state, sizeof(o->state), err);
    if (!strcmp(key, "policy")) return node_opts_path(o, key, v, o->policy, sizeof(o->policy), err);
    if (!strcmp(key, "ledger")) return node_opts_path(o, key, v, o->ledger, sizeof(o->ledger), err);
    if (!strcmp(key, "model")) return add_model(o, v, err);
    if (!strcmp(key, "lockdown_read")) {
        if (o->n_lock_read >= (int)(sizeof(o->lock_read) / sizeof(o->lock_read[0])))
            return cit_err_set(err, CIT_ERANGE, "lockdown_read: at most %zu folders",
                               sizeof(o->lock_read) / sizeof(o->lock_read[0]));
        if (node_opts_path(o, key, v, o->lock_read[o->n_lock_read], sizeof(o->lock_read[0]), err))
            return CIT_EINVAL;
        o->n_lock_read++;
        return 0;
    }
    if (!strcmp(key, "ledger_retention")) {
        /* days; 0 keeps everything, anything else at least six months */
        if ((rc = node_set_int(key, v, 0, 36500, &x, err))) return rc;
        if (x && x < 183)
            return cit_err_set(err, CIT_EINVAL,
                               "ledger_retention: %ld days is below the minimum of 183 (six "
                               "months, the EU AI Act's floor for logs); 0 keeps everything",
                               x);
        o->ledger_retention_days = (int)x;
        return 0;
    }
    if (!strcmp(key, "unvetted")) return node_set_bool(key, v, &o->unvetted, err);
    if (!strcmp(key, "trust_stored_digest"))
        return node_set_bool(key, v, &o->trust_stored_digest, err);
    return CIT_ENOENT;
}

int node_conf_load(const char *path, struct node_opts *o, cit_conf_fn set, void *user,
                   struct cit_err *err)
{
    const char *slash = strrchr(path, '/');
    char cwd[1024];
    int rc;
    /* the folder, made absolute so that a later chdir cannot move it */
    if (!slash) {
        if (!getcwd(cwd, sizeof(cwd)))
            return cit_err_set(err, CIT_EIO, "%s: cannot resolve its folder: %s", path,
                               strerror(errno));
        snprintf(o->base, sizeof(o->base), "%s", cwd);
    } else if (path[0] == '/') {
        snprintf(o->base, sizeof(o->base), "%.*s", (int)(slash - path), path);
        if (!o->base[0]) snprintf(o->base, sizeof(o->base), "/");
    } else {
        if (!getcwd(cwd, sizeof(cwd)))
            return cit_err_set(err, CIT_EIO, "%s: cannot resolve its folder: %s", path,
                               strerror(errno));
        if ((size_t)snprintf(o->base, sizeof(o->base), "%s/%.*s", cwd, (int)(slash - path), path) >=
            sizeof(o->base))
            return cit_err_set(err, CIT_ERANGE, "%s: folder path too long", path);
    }
    rc = cit_conf_load(path, set, user, err);
    o->base[0] = 0;
    return rc;
}
