/*
 * The admin socket: how `citadel model|trust|keys` reach a running serve,
 * which owns the node's ledger and state file (see node.h).
 *
 * A Unix stream socket named after the state file (citadel.db.sock: two
 * nodes in one folder have two sockets), mode 0600 in
 * a umask of 077 from its creation, and SO_PEERCRED on every connection:
 * only root or the node's own user is served. One connection at a time,
 * one request each: a JSON line {"argv": [...]} of at most 64 KiB, then
 * the reply {"rc": N, "out": "...", "err": "..."}. A client that sends
 * nothing within 10 s is dropped, so a stuck client cannot hold the
 * socket.
 *
 * A stale socket file (left by a serve that was killed) is replaced at
 * start when nothing answers on it; a live one means another serve owns
 * the node, which is an error.
 */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "node_int.h"

#define ADMIN_MAX_REQ (64 * 1024)
#define ADMIN_WAIT_MS 10000

struct node_admin {
    struct node *n;
    node_admin_fn exec;
    void *user;
    int fd, stop_pipe[2];
    char path[1100]; /* a state path and ".sock"; sock_addr checks it fits */
    pthread_t thread;
};

void node_admin_path(const char *state_path, char *out, size_t cap)
{
    snprintf(out, cap, "%s.sock", state_path);
}

static int sock_addr(const char *path, struct sockaddr_un *sa, struct cit_err *err)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path))
        return cit_err_set(err, CIT_ERANGE,
                           "%s: the admin socket's path is longer than %zu bytes; move the state "
                           "file to a shorter path",
                           path, sizeof(sa->sun_path) - 1);
    memcpy(sa->sun_path, path, strlen(path) + 1);
    return 0;
}

/* Reads until a newline (or EOF) within the deadline, at most cap bytes. */
static int read_line(int fd, struct cit_buf *b, size_t cap, int wait_ms)
{
    char chunk[4096];
    uint64_t until = cit_now_ns() + (uint64_t)wait_ms * 1000000ull;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        uint64_t now = cit_now_ns();
        ssize_t k;
        if (b->len && memchr(b->p, '\n', b->len)) return 0;
        if (now >= until || poll(&p, 1, (int)((until - now) / 1000000ull) + 1) <= 0) return -1;
        if ((k = read(fd, chunk, sizeof(chunk))) < 0 && errno == EINTR) continue;
        if (k <= 0) return b->len ? 0 : -1;
        if (b->len + (size_t)k > cap || cit_buf_add(b, chunk, (size_t)k)) return -1;
    }
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* The answer line. Written by hand rather than with jansson, which refuses
 * text that is not UTF-8: a file name or a card from disk may hold such
 * bytes, and they arrive as U+FFFD instead of losing the whole answer. */
static void reply(int fd, int rc, const struct cit_buf *out, const struct cit_buf *errb)
{
    struct cit_buf b = {0};
    cit_buf_printf(&b, "{\"rc\":%d,\"out\":", rc);
    cit_buf_json_str(&b, out->p ? out->p : "", out->len);
    BUF_LIT(&b, ",\"err\":");
    cit_buf_json_str(&b, errb->p ? errb->p : "", errb->len);
    BUF_LIT(&b, "}\n");
    if (b.p) write_all(fd, b.p, b.len);
    cit_buf_free(&b);
}

int node_admin_parse(const char *line, size_t n, json_t **root, char **argv, int *argc,
                     struct cit_buf *errb)
{
    json_t *args;
    *argc = 0;
    *root = json_loadb(line, n, JSON_REJECT_DUPLICATES, NULL);
    args = json_object_get(*root, "argv");
    if (!json_is_array(args) || json_array_size(args) < 1 ||
        json_array_size(args) > NODE_ADMIN_MAX_ARGS) {
        cit_buf_printf(errb,
                       "citadel: a bad admin request: expected {\"argv\": [...]} with 1 to %d "
                       "strings\n",
                       NODE_ADMIN_MAX_ARGS);
        return 2;
    }
    for (size_t i = 0; i < json_array_size(args); i++) {
        json_t *s = json_array_get(args, i);
        if (!json_is_string(s) || strlen(json_string_value(s)) != json_string_length(s)) {
            cit_buf_printf(errb, "citadel: admin request argv[%zu] is not a string\n", i);
            *argc = 0;
            return 2;
        }
        argv[(*argc)++] = (char *)json_string_value(s);
    }
    argv[*argc] = NULL;
    return 0;
}

static void serve_one(struct node_admin *a, int fd)
{
    struct ucred cred;
    socklen_t cl = sizeof(cred);
    struct cit_buf in = {0}, out = {0}, errb = {0};
    json_t *root = NULL;
    char *argv[NODE_ADMIN_MAX_ARGS + 1];
    int argc = 0, rc;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) ||
        (cred.uid != 0 && cred.uid != geteuid())) {
        cit_buf_printf(&errb, "citadel: the admin socket serves root and uid %u only\n",
                       (unsigned)geteuid());
        reply(fd, 1, &out, &errb);
        goto done;
    }
    if (read_line(fd, &in, ADMIN_MAX_REQ, ADMIN_WAIT_MS)) goto done;
    if ((rc = node_admin_parse(in.p, strcspn(in.p, "\n"), &root, argv, &argc, &errb))) {
        reply(fd, rc, &out, &errb);
        goto done;
    }
    argv[argc] = NULL;
    cit_log(CIT_LOG_INFO, "admin: citadel %s %s (uid %u)", argv[0], argc > 1 ? argv[1] : "",
            (unsigned)cred.uid);
    rc = a->exec(a->user, a->n, argc, argv, &out, &errb);
    reply(fd, rc, &out, &errb);
done:
    json_decref(root);
    if (in.p) explicit_bzero(in.p, in.len);
    if (out.p) explicit_bzero(out.p, out.len); /* may hold a new API key */
    cit_buf_free(&in);
    cit_buf_free(&out);
    cit_buf_free(&errb);
}

static void *admin_loop(void *arg)
{
    struct node_admin *a = arg;
    for (;;) {
        struct pollfd p[2] = {{a->fd, POLLIN, 0}, {a->stop_pipe[0], POLLIN, 0}};
        int fd;
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (p[1].revents) break;
        if (p[0].revents & (POLLERR | POLLNVAL)) {
            cit_log(CIT_LOG_ERROR, "admin socket %s failed; admin commands stop", a->path);
            break;
        }
        if (!(p[0].revents & POLLIN)) continue;
        if ((fd = accept4(a->fd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS) {
                /* the connection stays pending: wait instead of spinning on it */
                cit_log(CIT_LOG_WARN, "admin socket: %s; retrying in 100 ms", strerror(errno));
                poll(NULL, 0, 100);
            }
            continue;
        }
        serve_one(a, fd);
        close(fd);
    }
    return NULL;
}

/* 1 when something answers on sa. */
static int alive(const struct sockaddr_un *sa)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;
    if (fd < 0) return 0;
    ok = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0;
    close(fd);
    return ok;
}

int node_admin_start(struct node *n, node_admin_fn exec, void *user, struct node_admin **out,
                     struct cit_err *err)
{
    struct node_admin *a;
    struct sockaddr_un sa;
    mode_t old;
    int rc;
    if (!(a = cit_calloc(1, sizeof(*a)))) return cit_err_set(err, CIT_ENOMEM, "out of memory");
    a->n = n;
    a->exec = exec;
    a->user = user;
    a->fd = a->stop_pipe[0] = a->stop_pipe[1] = -1;
    node_admin_path(n->o.state, a->path, sizeof(a->path));
    if ((rc = sock_addr(a->path, &sa, err))) goto fail;
    if (alive(&sa)) {
        rc = cit_err_set(err, CIT_EINVAL,
                         "%s: another citadel serve answers there; one node has one server",
                         a->path);
        goto fail;
    }
    unlink(a->path); /* a stale socket from a serve that was killed */
    if ((a->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 || pipe(a->stop_pipe)) {
        rc = cit_err_set(err, CIT_EIO, "admin socket: %s", strerror(errno));
        goto fail;
    }
    old = umask(077); /* never a moment with the socket open to others */
    rc = bind(a->fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc || chmod(a->path, 0600) || listen(a->fd, 8)) {
        rc = cit_err_set(err, CIT_EIO, "%s: %s", a->path, strerror(errno));
        goto fail;
    }
    if (pthread_create(&a->thread, NULL, admin_loop, a)) {
        rc = cit_err_set(err, CIT_ENOMEM, "cannot start the admin thread");
        unlink(a->path);
        goto fail;
    }
    cit_log(CIT_LOG_INFO, "admin socket %s (model, trust and keys commands reach this node)",
            a->path);
    *out = a;
    return 0;
fail:
    if (a->fd >= 0) close(a->fd);
    if (a->stop_pipe[0] >= 0) close(a->stop_pipe[0]);
    if (a->stop_pipe[1] >= 0) close(a->stop_pipe[1]);
    cit_free(a);
    return rc;
}

void node_admin_stop(struct node_admin *a)
{
    if (!a) return;
    if (write(a->stop_pipe[1], "x", 1) != 1) cit_log(CIT_LOG_WARN, "admin: cannot signal stop");
    pthread_join(a->thread, NULL);
    close(a->fd);
    unlink(a->path);
    close(a->stop_pipe[0]);
    close(a->stop_pipe[1]);
    cit_free(a);
}

int node_admin_call(const char *sock_path, int argc, char **argv, int *rc, struct cit_buf *out,
                    struct cit_buf *errout, struct cit_err *err)
{
    struct sockaddr_un sa;
    struct cit_buf in = {0};
    json_t *req, *arr, *resp = NULL, *v;
    char *text;
    int fd, ret = 0;
    if (sock_addr(sock_path, &sa, err)) return CIT_ENOENT; /* no such socket can exist */
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return cit_err_set(err, CIT_EIO, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
        int e = errno;
        close(fd);
        if (e == ENOENT || e == ECONNREFUSED) return CIT_ENOENT;
        return cit_err_set(err, CIT_EIO, "%s: %s", sock_path, strerror(e));
    }
    req = json_object();
    arr = json_array();
    for (int i = 0; i < argc; i++)
        if (json_array_append_new(arr, json_string(argv[i]))) { /* NULL: not UTF-8 */
            json_decref(arr);
            json_decref(req);
            close(fd);
            return cit_err_set(err, CIT_EINVAL,
                               "argument %d ('%.40s') is not UTF-8: the running server takes "
                               "UTF-8 arguments only (rename the file, or stop the server)",
                               i + 1, argv[i]);
        }
    json_object_set_new(req, "argv", arr);
    text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!text || write_all(fd, text, strlen(text)) || write_all(fd, "\n", 1)) {
        ret = cit_err_set(err, CIT_EIO, "%s: cannot send the request", sock_path);
        goto out;
    }
    /* the verb may take long (an admission hashes the model) */
    if (read_line(fd, &in, 16u << 20, 3600 * 1000) || !in.p) {
        ret = cit_err_set(err, CIT_EIO, "%s: no answer from the serving node", sock_path);
        goto out;
    }
    resp = json_loadb(in.p, strcspn(in.p, "\n"), 0, NULL);
    if (!json_is_integer(v = json_object_get(resp, "rc"))) {
        ret = cit_err_set(err, CIT_EFORMAT, "%s: a malformed answer", sock_path);
        goto out;
    }
    *rc = (int)json_integer_value(v);
    if (json_is_string(v = json_object_get(resp, "out")))
        cit_buf_add(out, json_string_value(v), json_string_length(v));
    if (json_is_string(v = json_object_get(resp, "err")))
        cit_buf_add(errout, json_string_value(v), json_string_length(v));
out:
    free(text);
    json_decref(resp);
    if (in.p) explicit_bzero(in.p, in.len);
    cit_buf_free(&in);
    close(fd);
    return ret;
}

int node_admin_alive(const char *sock_path)
{
    struct sockaddr_un sa;
    return sock_addr(sock_path, &sa, NULL) == 0 && alive(&sa);
}
