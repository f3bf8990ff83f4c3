/*
 * Lockdown (src/guard): each rule tried from a child process that locked
 * itself down, as serve does, and the statement that describes it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "citadel/guard.h"
#include "test.h"

/* 127.0.0.1:port */
static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static int listener(int *port)
{
    struct sockaddr_in a = loopback(0);
    socklen_t l = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 8) ||
        getsockname(fd, (struct sockaddr *)&a, &l)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* connect() to 127.0.0.1:port: 0, or the errno */
static int try_connect(int port)
{
    struct sockaddr_in a = loopback(port);
    int fd = socket(AF_INET, SOCK_STREAM, 0), e = 0;
    if (fd < 0) return errno;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a))) e = errno;
    close(fd);
    return e;
}

static int try_socket(int domain, int type)
{
    int fd = socket(domain, type, 0);
    if (fd < 0) return errno;
    close(fd);
    return 0;
}

static int try_open(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC, 0600);
    if (fd < 0) return errno;
    close(fd);
    return 0;
}

static int try_exec(void)
{
    char *argv[] = {(char *)"/bin/true", NULL}, *envp[] = {NULL};
    execve("/bin/true", argv, envp);
    return errno;
}

/* TCP Fast Open: sendto connects, past Landlock's connect rule */
static int try_fastopen(int port)
{
    struct sockaddr_in a = loopback(port);
    int fd = socket(AF_INET, SOCK_STREAM, 0), e = 0;
    if (fd < 0) return errno;
    if (sendto(fd, "x", 1, MSG_FASTOPEN, (struct sockaddr *)&a, sizeof(a)) < 0) e = errno;
    close(fd);
    return e;
}

/* listen() without bind() takes an ephemeral port, past Landlock's bind rule */
static int try_listen_unbound(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), e = 0;
    if (fd < 0) return errno;
    if (listen(fd, 1)) e = errno;
    close(fd);
    return e;
}

static int g_denied_port;
static void *thread_connect(void *p)
{
    *(int *)p = try_connect(g_denied_port);
    return NULL;
}

static int landlock_abi(void)
{
    return (int)syscall(SYS_landlock_create_ruleset, NULL, 0, 1U /* VERSION */);
}

/* One line per check into fd: "name got want". The child exits 0 when
 * every check holds. */
static void child(int out, const char *dir, int allowed, int denied)
{
    struct guard_spec s;
    struct cit_err err;
    struct cit_buf st = {0};
    char p[600], line[300], hash[65], want[64];
    int bad = 0, thr = -1, n;
    pthread_t t;
    struct guard_status gs;
    guard_spec_init(&s, "test", 0);
    snprintf(p, sizeof(p), "%s/ro", dir);
    if (guard_spec_path(&s, p, 0, 0, &err)) goto fail;
    snprintf(p, sizeof(p), "%s/rw", dir);
    if (guard_spec_path(&s, p, 1, 0, &err) || guard_spec_system(&s, &err) ||
        guard_spec_connect(&s, "127.0.0.1", allowed, &err) || guard_lock(&s, &err) ||
        guard_seal(&err))
        goto fail;
#define EXPECT(name, got, want_)                                                                   \
    do {                                                                                           \
        int g_ = (got);                                                                            \
        n = snprintf(line, sizeof(line), "%s %d %d\n", name, g_, want_);                           \
        if (write(out, line, (size_t)n) < 0) _exit(3);                                             \
        bad |= g_ != (want_);                                                                      \
    } while (0)
    EXPECT("connect-allowed-peer", try_connect(allowed), 0);
    EXPECT("connect-other-port", try_connect(denied), EACCES);
    EXPECT("udp", try_socket(AF_INET, SOCK_DGRAM), EPERM);
    EXPECT("udp6", try_socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC), EPERM);
    EXPECT("raw", try_socket(AF_INET, SOCK_RAW), EPERM);
    EXPECT("packet", try_socket(17 /* AF_PACKET */, SOCK_RAW), EPERM);
    EXPECT("netlink", try_socket(AF_NETLINK, SOCK_RAW), EPERM);
    EXPECT("unix", try_socket(AF_UNIX, SOCK_STREAM), EPERM);
    EXPECT("tcp", try_socket(AF_INET, SOCK_STREAM), 0);
    EXPECT("exec", try_exec(), EPERM);
    EXPECT("tcp-fast-open", try_fastopen(denied), EPERM);
    EXPECT("listen-unbound", try_listen_unbound(), EPERM);
    snprintf(p, sizeof(p), "%s/ro/f", dir);
    EXPECT("read-ro", try_open(p, O_RDONLY), 0);
    EXPECT("write-ro", try_open(p, O_WRONLY), EACCES);
    snprintf(p, sizeof(p), "%s/rw/new", dir);
    EXPECT("create-rw", try_open(p, O_WRONLY | O_CREAT), 0);
    snprintf(p, sizeof(p), "%s/outside", dir);
    EXPECT("read-outside", try_open(p, O_RDONLY), EACCES);
    EXPECT("read-etc-passwd", try_open("/etc/passwd", O_RDONLY), EACCES);
    /* a thread started after the lock is held by it too */
    g_denied_port = denied;
    if (pthread_create(&t, NULL, thread_connect, &thr) || pthread_join(t, NULL)) thr = -2;
    EXPECT("thread-connect-other-port", thr, EACCES);
    {
        struct sockaddr_in a = loopback(allowed);
        EXPECT("in-process-peer", guard_connect_ok((struct sockaddr *)&a, sizeof(a)), 1);
        a.sin_port = htons((uint16_t)denied);
        EXPECT("in-process-other", guard_connect_ok((struct sockaddr *)&a, sizeof(a)), 0);
        inet_pton(AF_INET, "192.0.2.1", &a.sin_addr);
        a.sin_port = htons((uint16_t)allowed);
        EXPECT("in-process-public", guard_connect_ok((struct sockaddr *)&a, sizeof(a)), 0);
    }
    guard_get_status(&gs);
    EXPECT("denied-count>=9", gs.denied >= 9, 1);
    EXPECT("sealed", gs.sealed && gs.seccomp && gs.fs && gs.net, 1);
    if (guard_statement(&st, hash)) _exit(4);
    snprintf(want, sizeof(want), "tcp connect %d\n", allowed);
    EXPECT("statement-port", strstr(st.p, want) != NULL, 1);
    snprintf(want, sizeof(want), "peer 127.0.0.1 127.0.0.1:%d\n", allowed);
    EXPECT("statement-peer", strstr(st.p, want) != NULL, 1);
    EXPECT("statement-missing", strstr(st.p, "missing nothing\n") != NULL, 1);
    guard_get_status(&gs); /* the statement of a sealed process is its status's hash */
    EXPECT("statement-hash", strlen(hash) == 64 && !strcmp(hash, gs.hash), 1);
    cit_buf_free(&st);
#undef EXPECT
    _exit(bad ? 1 : 0);
fail:
    n = snprintf(line, sizeof(line), "lock-failed %s\n", err.msg);
    if (write(out, line, (size_t)n) < 0) _exit(3);
    _exit(2);
}

void test_guard_lockdown(void)
{
    char dir[600], p[700], buf[4096];
    int fd[2], allowed, denied, la, ld, status;
    size_t got = 0;
    ssize_t r;
    pid_t pid;
    if (landlock_abi() < GUARD_MIN_ABI) {
        t_note("guard_lockdown: this kernel has no Landlock ABI >= %d: not tried here",
               GUARD_MIN_ABI);
        return;
    }
    snprintf(dir, sizeof(dir), "%s/guard", t_tmpdir());
    mkdir(dir, 0700);
    snprintf(p, sizeof(p), "%s/ro", dir), mkdir(p, 0700);
    snprintf(p, sizeof(p), "%s/rw", dir), mkdir(p, 0700);
    snprintf(p, sizeof(p), "%s/ro/f", dir);
    CHECK(!t_write_file(p, "x", 1));
    snprintf(p, sizeof(p), "%s/outside", dir);
    CHECK(!t_write_file(p, "y", 1));
    CHECK((la = listener(&allowed)) >= 0);
    CHECK((ld = listener(&denied)) >= 0);
    CHECK(!pipe(fd));
    fflush(NULL);
    if ((pid = fork()) == 0) {
        close(fd[0]);
        child(fd[1], dir, allowed, denied);
    }
    close(fd[1]);
    while (got < sizeof(buf) - 1 && (r = read(fd[0], buf + got, sizeof(buf) - 1 - got)) > 0)
        got += (size_t)r;
    buf[got] = 0;
    close(fd[0]);
    waitpid(pid, &status, 0);
    close(la);
    close(ld);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "the locked-down child (status %d) reported, as 'check got want':\n%s", status, buf);
    /* every check ran: the last line is there */
    CHECKF(strstr(buf, "statement-hash 1 1\n"), "%s", buf);
}

void test_guard_urls(void)
{
    struct cit_err err;
    char host[64], entry[200];
    int port = 0;
    CHECK(!guard_url_hostport("https://peer.example:8443/v1", host, sizeof(host), &port, &err));
    CHECK(!strcmp(host, "peer.example") && port == 8443);
    CHECK(!guard_url_hostport("https://api.example/v1", host, sizeof(host), &port, &err));
    CHECK(!strcmp(host, "api.example") && port == 443);
    CHECK(!guard_url_hostport("http://[::1]:9000", host, sizeof(host), &port, &err));
    CHECK(!strcmp(host, "::1") && port == 9000);
    CHECK(!guard_url_hostport("127.0.0.1:7000", host, sizeof(host), &port, &err));
    CHECK(!strcmp(host, "127.0.0.1") && port == 7000);
    CHECK(guard_url_hostport("127.0.0.1", host, sizeof(host), &port, &err) == CIT_EINVAL);
    CHECK(guard_url_hostport("https://h:99999/", host, sizeof(host), &port, &err) == CIT_EINVAL);
    CHECK(guard_url_hostport("https://[::1/", host, sizeof(host), &port, &err) == CIT_EINVAL);
    /* not locked: nothing resolved, every address allowed */
    CHECK(guard_resolve("127.0.0.1", 7000, entry, sizeof(entry)) == CIT_ENOENT);
    {
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        CHECK(guard_connect_ok((struct sockaddr *)&a, sizeof(a)));
    }
}

/* An older kernel, as CITADEL_LANDLOCK_ABI=3 makes this one: a required
 * lockdown refuses, naming what is missing; best-effort goes on with
 * files enforced, ports not, and says so in its statement. */
static void child_old_kernel(int out, int best_effort)
{
    struct guard_spec s;
    struct cit_err err = {{0}};
    struct cit_buf st = {0};
    struct guard_status gs;
    char hash[65], line[900];
    int rc, n;
    setenv("CITADEL_LANDLOCK_ABI", "3", 1);
    guard_spec_init(&s, "test", best_effort);
    rc = guard_spec_system(&s, &err);
    if (!rc) rc = guard_lock(&s, &err);
    if (!rc) rc = guard_seal(&err);
    guard_get_status(&gs);
    if (!rc) guard_statement(&st, hash);
    n = snprintf(line, sizeof(line), "rc=%d fs=%d net=%d seccomp=%d err=%s|missing=%s|%s\n", rc,
                 gs.fs, gs.net, gs.seccomp, rc ? err.msg : "", gs.missing,
                 st.p && strstr(st.p, "missing Landlock TCP port rules (kernel ABI 3, need 4)")
                     ? "statement-says-so"
                     : "");
    if (write(out, line, (size_t)n) < 0) _exit(3);
    _exit(0);
}

static int run_old_kernel(int best_effort, char *buf, size_t cap)
{
    int fd[2], status;
    size_t got = 0;
    ssize_t r;
    pid_t pid;
    if (pipe(fd)) return -1;
    fflush(NULL);
    if ((pid = fork()) == 0) {
        close(fd[0]);
        child_old_kernel(fd[1], best_effort);
    }
    close(fd[1]);
    while (got < cap - 1 && (r = read(fd[0], buf + got, cap - 1 - got)) > 0) got += (size_t)r;
    buf[got] = 0;
    close(fd[0]);
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void test_guard_old_kernel(void)
{
    char buf[2048];
    if (landlock_abi() < GUARD_MIN_ABI) {
        t_note("guard_old_kernel: this kernel has no Landlock ABI >= %d: not tried here",
               GUARD_MIN_ABI);
        return;
    }
    CHECK(run_old_kernel(0, buf, sizeof(buf)) == 0);
    CHECKF(strstr(buf, "rc=-6 ") && strstr(buf, "cannot enforce the air gap") &&
               strstr(buf, "TCP port rules (kernel ABI 3, need 4)") && strstr(buf, "best-effort"),
           "%s", buf);
    CHECK(run_old_kernel(1, buf, sizeof(buf)) == 0);
    CHECKF(strstr(buf, "rc=0 fs=1 net=0 seccomp=1 ") && strstr(buf, "statement-says-so"), "%s",
           buf);
}
