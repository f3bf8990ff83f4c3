/*
 * Lockdown: Landlock for files and TCP ports, seccomp for everything a
 * network-less inference node has no business calling (guard.h, and
 * docs/guard.md for why each rule is there).
 *
 * The Landlock structures are spelled out here: Debian 12's kernel headers
 * stop at ABI 3, the kernels it runs on go further, and the layout of these
 * structures is the kernel's ABI, fixed once published.
 */
#include "citadel/guard.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

/* ---- Landlock, as the kernel defines it ---- */

struct ll_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net; /* ABI 4 */
    uint64_t scoped;             /* ABI 6 */
};

struct ll_path_beneath {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

struct ll_net_port {
    uint64_t allowed_access;
    uint64_t port;
};

enum { LL_RULE_PATH = 1, LL_RULE_NET_PORT = 2 };

#define LL_EXECUTE             (1ULL << 0)
#define LL_WRITE_FILE          (1ULL << 1)
#define LL_READ_FILE           (1ULL << 2)
#define LL_READ_DIR            (1ULL << 3)
#define LL_REMOVE_DIR          (1ULL << 4)
#define LL_REMOVE_FILE         (1ULL << 5)
#define LL_MAKE_CHAR           (1ULL << 6)
#define LL_MAKE_DIR            (1ULL << 7)
#define LL_MAKE_REG            (1ULL << 8)
#define LL_MAKE_SOCK           (1ULL << 9)
#define LL_MAKE_FIFO           (1ULL << 10)
#define LL_MAKE_BLOCK          (1ULL << 11)
#define LL_MAKE_SYM            (1ULL << 12)
#define LL_REFER               (1ULL << 13) /* ABI 2 */
#define LL_TRUNCATE            (1ULL << 14) /* ABI 3 */
#define LL_IOCTL_DEV           (1ULL << 15) /* ABI 5 */
#define LL_NET_BIND            (1ULL << 0)
#define LL_NET_CONNECT         (1ULL << 1)
#define LL_SCOPE_ABSTRACT_UNIX (1ULL << 0)
#define LL_SCOPE_SIGNAL        (1ULL << 1)

/* Every file-system right the kernel's ABI knows: the ones handled, so
 * that what is not granted is denied. */
static uint64_t fs_rights(int abi)
{
    uint64_t r = (LL_MAKE_SYM << 1) - 1; /* ABI 1: bits 0..12 */
    if (abi >= 2) r |= LL_REFER;
    if (abi >= 3) r |= LL_TRUNCATE;
    if (abi >= 5) r |= LL_IOCTL_DEV;
    return r;
}

static uint64_t ro_rights(int is_dir)
{
    return is_dir ? LL_READ_FILE | LL_READ_DIR : LL_READ_FILE;
}

static uint64_t rw_rights(int abi)
{
    uint64_t r = LL_READ_FILE | LL_READ_DIR | LL_WRITE_FILE | LL_REMOVE_DIR | LL_REMOVE_FILE |
                 LL_MAKE_DIR | LL_MAKE_REG | LL_MAKE_SOCK;
    if (abi >= 2) r |= LL_REFER;
    if (abi >= 3) r |= LL_TRUNCATE;
    return r;
}

/* ---- process state ---- */

static struct guard_spec g_spec;
static struct guard_status g_st;
static atomic_uint_fast64_t g_denied;

/* the names of the calls the filter refuses, for the SIGSYS handler,
 * which may not allocate or look anything up */
#define MAX_DENY 64
static struct {
    int nr;
    char name[24];
} g_deny[MAX_DENY];
static int g_n_deny;
static unsigned g_arch; /* AUDIT_ARCH of this build, as siginfo reports it */

/* ---- the spec ---- */

void guard_spec_init(struct guard_spec *s, const char *what, int best_effort)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->what, sizeof(s->what), "%s", what);
    s->best_effort = best_effort;
}

int guard_spec_path(struct guard_spec *s, const char *path, int rw, int optional,
                    struct cit_err *err)
{
    char real[PATH_MAX];
    char(*list)[GUARD_PATH] = rw ? s->rw : s->ro;
    int *n = rw ? &s->n_rw : &s->n_ro;
    if (!path || !path[0]) return 0;
    if (!strcmp(path, "/proc/self")) {
        /* kept as written: the rule is taken on this process's folder when
         * guard_lock opens it, and the statement stays the same each start */
        snprintf(real, sizeof(real), "%s", path);
    } else if (!realpath(path, real)) {
        if (optional && errno == ENOENT) return 0;
        return cit_err_set(err, CIT_EIO, "lockdown: %s: %s", path, strerror(errno));
    }
    for (int i = 0; i < *n; i++)
        if (!strcmp(list[i], real)) return 0;
    if (*n >= GUARD_MAX_PATHS)
        return cit_err_set(err, CIT_EINVAL, "lockdown: more than %d %s paths", GUARD_MAX_PATHS,
                           rw ? "read-write" : "read-only");
    if (strlen(real) >= GUARD_PATH)
        return cit_err_set(err, CIT_EINVAL, "lockdown: %s: path too long", real);
    memcpy(list[(*n)++], real, strlen(real) + 1);
    return 0;
}

int guard_spec_system(struct guard_spec *s, struct cit_err *err)
{
    static const char *const sys[] = {
        "/usr/lib",            /* libraries glibc and OpenSSL load late (libgcc_s) */
        "/lib",                /* the same on a system without merged /usr */
        "/lib64",              /* the dynamic loader's folder */
        "/usr/share/zoneinfo", /* time zones */
        "/etc/localtime",      /* the system's own */
        "/etc/ssl",            /* OpenSSL's configuration and the system's CA certificates */
        "/etc/hosts",          /* listen addresses given by name (no DNS: no UDP) */
        "/etc/nsswitch.conf",
        "/etc/host.conf",
        "/etc/gai.conf",
        "/usr/share/ca-certificates",
        "/proc/self",              /* our own maps and status (RSS for /metrics) */
        "/sys/devices/system/cpu", /* the CPU count and the kernel set's checks */
        "/dev/null",
        "/dev/urandom", /* libraries that read it rather than call getrandom */
    };
    for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++) {
        int rc = guard_spec_path(s, sys[i], 0, 1, err);
        if (rc) return rc;
    }
    return 0;
}

static int add_port(int *list, int *n, int port, struct cit_err *err)
{
    if (port < 0 || port > 65535) return cit_err_set(err, CIT_EINVAL, "lockdown: port %d", port);
    for (int i = 0; i < *n; i++)
        if (list[i] == port) return 0;
    if (*n >= GUARD_MAX_PORTS)
        return cit_err_set(err, CIT_EINVAL, "lockdown: more than %d ports", GUARD_MAX_PORTS);
    list[(*n)++] = port;
    return 0;
}

int guard_spec_bind(struct guard_spec *s, int port, struct cit_err *err)
{
    return add_port(s->bind, &s->n_bind, port, err);
}

int guard_spec_connect(struct guard_spec *s, const char *host, int port, struct cit_err *err)
{
    struct addrinfo hints = {0}, *ai = NULL;
    char ps[16];
    int g;
    if (port < 1 || port > 65535) return cit_err_set(err, CIT_EINVAL, "lockdown: port %d", port);
    snprintf(ps, sizeof(ps), "%d", port);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if ((g = getaddrinfo(host, ps, &hints, &ai))) {
        /* kept as a name without an address: the statement says so, and
         * nothing connects to it until a restart resolves it */
        struct guard_addr *d;
        if (s->n_addrs >= GUARD_MAX_ADDRS)
            return cit_err_set(err, CIT_EINVAL, "lockdown: more than %d peer addresses",
                               GUARD_MAX_ADDRS);
        d = &s->addrs[s->n_addrs++];
        memset(d, 0, sizeof(*d));
        snprintf(d->host, sizeof(d->host), "%s", host);
        d->port = port;
        cit_err_set(err, CIT_ENOENT,
                    "lockdown: resolving %s: %s (peers are resolved before "
                    "lockdown; after it there is no DNS)",
                    host, gai_strerror(g));
        return CIT_ENOENT;
    }
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        struct guard_addr *d;
        int dup = 0;
        if (a->ai_addrlen > sizeof(d->sa)) continue;
        for (int i = 0; i < s->n_addrs; i++)
            dup |= s->addrs[i].len == a->ai_addrlen &&
                   !memcmp(&s->addrs[i].sa, a->ai_addr, a->ai_addrlen) &&
                   !strcmp(s->addrs[i].host, host);
        if (dup) continue;
        if (s->n_addrs >= GUARD_MAX_ADDRS) {
            freeaddrinfo(ai);
            return cit_err_set(err, CIT_EINVAL, "lockdown: more than %d peer addresses",
                               GUARD_MAX_ADDRS);
        }
        d = &s->addrs[s->n_addrs++];
        snprintf(d->host, sizeof(d->host), "%s", host);
        d->port = port;
        memcpy(&d->sa, a->ai_addr, a->ai_addrlen);
        d->len = a->ai_addrlen;
    }
    freeaddrinfo(ai);
    return add_port(s->connect, &s->n_connect, port, err);
}

int guard_url_hostport(const char *url, char *host, size_t cap, int *port, struct cit_err *err)
{
    const char *p = url, *end;
    int def = 0;
    size_t hl;
    if (!strncmp(p, "https://", 8))
        p += 8, def = 443;
    else if (!strncmp(p, "http://", 7))
        p += 7, def = 80;
    end = p + strcspn(p, "/?#");
    if (*p == '[') { /* an IPv6 literal */
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb) return cit_err_set(err, CIT_EINVAL, "%s: unclosed '['", url);
        hl = (size_t)(rb - p - 1);
        if (hl >= cap) return cit_err_set(err, CIT_EINVAL, "%s: host too long", url);
        memcpy(host, p + 1, hl);
        host[hl] = 0;
        p = rb + 1;
    } else {
        const char *c = memchr(p, ':', (size_t)(end - p));
        hl = (size_t)((c ? c : end) - p);
        if (!hl || hl >= cap) return cit_err_set(err, CIT_EINVAL, "%s: no host", url);
        memcpy(host, p, hl);
        host[hl] = 0;
        p += hl;
    }
    if (p < end && *p == ':') {
        char *e;
        long v = strtol(p + 1, &e, 10);
        if (e != end || e == p + 1 || v < 0 || v > 65535)
            return cit_err_set(err, CIT_EINVAL, "%s: bad port", url);
        *port = (int)v;
    } else if (def) {
        *port = def;
    } else {
        return cit_err_set(err, CIT_EINVAL, "%s: no port", url);
    }
    return 0;
}

/* ---- Landlock ---- */

static int threads_now(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;
    if (!d) return -1;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void missing(const char *what)
{
    size_t l = strlen(g_st.missing);
    snprintf(g_st.missing + l, sizeof(g_st.missing) - l, "%s%s", l ? "; " : "", what);
}

static int add_path_rule(int rs, const char *path, uint64_t want, uint64_t handled,
                         struct cit_err *err)
{
    struct ll_path_beneath pb;
    struct stat st;
    int fd = open(path, O_PATH | O_CLOEXEC), rc = 0;
    if (fd < 0) return cit_err_set(err, CIT_EIO, "lockdown: %s: %s", path, strerror(errno));
    if (fstat(fd, &st)) {
        rc = cit_err_set(err, CIT_EIO, "lockdown: %s: %s", path, strerror(errno));
    } else {
        /* a file takes only the rights a file can have */
        if (!S_ISDIR(st.st_mode)) want &= LL_READ_FILE | LL_WRITE_FILE | LL_TRUNCATE;
        pb.allowed_access = want & handled;
        pb.parent_fd = fd;
        if (syscall(SYS_landlock_add_rule, rs, LL_RULE_PATH, &pb, 0))
            rc = cit_err_set(err, CIT_EIO, "lockdown: Landlock rule for %s: %s", path,
                             strerror(errno));
    }
    close(fd);
    return rc;
}

static int add_port_rule(int rs, int port, uint64_t access, struct cit_err *err)
{
    struct ll_net_port np = {access, (uint64_t)port};
    if (syscall(SYS_landlock_add_rule, rs, LL_RULE_NET_PORT, &np, 0))
        return cit_err_set(err, CIT_EIO, "lockdown: Landlock rule for port %d: %s", port,
                           strerror(errno));
    return 0;
}

int guard_lock(const struct guard_spec *s, struct cit_err *err)
{
    struct ll_ruleset_attr attr = {0};
    size_t attr_size;
    int abi, rs, rc = 0, nt;
    if (g_st.locked) return cit_err_set(err, CIT_EINVAL, "lockdown: already locked");
    if ((nt = threads_now()) != 1)
        return cit_err_set(err, CIT_EINVAL,
                           "lockdown: the process has %d threads; Landlock must be applied "
                           "before any thread starts",
                           nt);
    memset(&g_st, 0, sizeof(g_st));
    g_spec = *s;
    g_st.best_effort = s->best_effort;
    abi = (int)syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    /* CITADEL_LANDLOCK_ABI=N uses at most ABI N: what an older kernel
     * would do, for tests and for operators who want to see it */
    if (getenv("CITADEL_LANDLOCK_ABI")) {
        char *end;
        long cap = strtol(getenv("CITADEL_LANDLOCK_ABI"), &end, 10);
        if (end == getenv("CITADEL_LANDLOCK_ABI") || *end || cap < 0)
            return cit_err_set(err, CIT_EINVAL,
                               "lockdown: CITADEL_LANDLOCK_ABI='%s' is not an "
                               "ABI number",
                               getenv("CITADEL_LANDLOCK_ABI"));
        if (cap < abi) {
            abi = cap ? (int)cap : -1;
            errno = ENOSYS; /* read below as "not in this kernel" */
        }
    }
    if (abi < 0) {
        abi = 0;
        missing(errno == EOPNOTSUPP ? "Landlock (disabled at boot: add landlock to lsm=)"
                                    : "Landlock (not in this kernel)");
    } else if (abi < GUARD_MIN_ABI) {
        char m[128];
        snprintf(m, sizeof(m), "Landlock TCP port rules (kernel ABI %d, need %d)", abi,
                 GUARD_MIN_ABI);
        missing(m);
    }
    if (abi < 6 && abi > 0)
        missing("Landlock scoping of abstract Unix sockets and signals (ABI 6)");
    g_st.abi = abi;
    if (!s->best_effort && abi < GUARD_MIN_ABI) {
        rc = cit_err_set(err, CIT_ENOTSUP,
                         "lockdown: this kernel cannot enforce the air gap: %s; the policy "
                         "may say 'lockdown: best-effort' to start anyway, recording what is "
                         "missing",
                         g_st.missing);
        memset(&g_st, 0, sizeof(g_st));
        return rc;
    }
    /* Landlock needs no_new_privs (or CAP_SYS_ADMIN); seccomp needs it too */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        return cit_err_set(err, CIT_EIO, "lockdown: no_new_privs: %s", strerror(errno));
    g_st.locked = 1;
    if (!abi) return 0;

    attr.handled_access_fs = fs_rights(abi);
    attr_size = sizeof(attr.handled_access_fs);
    if (abi >= 4) {
        attr.handled_access_net = LL_NET_BIND | LL_NET_CONNECT;
        attr_size = offsetof(struct ll_ruleset_attr, scoped);
    }
    if (abi >= 6) {
        attr.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL;
        attr_size = sizeof(attr);
    }
    rs = (int)syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0);
    if (rs < 0) {
        g_st.locked = 0;
        return cit_err_set(err, CIT_EIO, "lockdown: Landlock ruleset: %s", strerror(errno));
    }
    for (int i = 0; !rc && i < s->n_ro; i++)
        rc = add_path_rule(rs, s->ro[i], ro_rights(1), attr.handled_access_fs, err);
    for (int i = 0; !rc && i < s->n_rw; i++)
        rc = add_path_rule(rs, s->rw[i], rw_rights(abi), attr.handled_access_fs, err);
    for (int i = 0; !rc && abi >= 4 && i < s->n_bind; i++)
        rc = add_port_rule(rs, s->bind[i], LL_NET_BIND, err);
    for (int i = 0; !rc && abi >= 4 && i < s->n_connect; i++)
        rc = add_port_rule(rs, s->connect[i], LL_NET_CONNECT, err);
    if (!rc && syscall(SYS_landlock_restrict_self, rs, 0))
        rc = cit_err_set(err, CIT_EIO, "lockdown: Landlock restrict_self: %s", strerror(errno));
    close(rs);
    if (rc) {
        g_st.locked = 0;
        return rc;
    }
    g_st.fs = 1;
    g_st.net = abi >= 4;
    g_st.scope = abi >= 6;
    return 0;
}

/* ---- seccomp ---- */

static void put_num(char *b, size_t *n, size_t cap, long v)
{
    char t[24];
    int k = 0;
    unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
    if (v < 0 && *n < cap) b[(*n)++] = '-';
    do t[k++] = (char)('0' + u % 10), u /= 10;
    while (u && k < (int)sizeof(t));
    while (k && *n < cap) b[(*n)++] = t[--k];
}

static void put_str(char *b, size_t *n, size_t cap, const char *s)
{
    while (*s && *n < cap) b[(*n)++] = *s++;
}

/* SIGSYS from the filter: the call did not happen; make it return
 * -EPERM, say so on stderr and count it. Async-signal-safe only. */
static void on_sigsys(int sig, siginfo_t *si, void *ctx)
{
    ucontext_t *uc = ctx;
    char line[200];
    size_t n = 0;
    const char *name = "?";
    int nr = si->si_syscall;
    long a0, a1;
    (void)sig;
    if (si->si_code != 1 /* SYS_SECCOMP */) return; /* a SIGSYS someone sent: not ours to answer */
#if defined(__x86_64__)
    a0 = (long)uc->uc_mcontext.gregs[REG_RDI];
    a1 = (long)uc->uc_mcontext.gregs[REG_RSI];
    uc->uc_mcontext.gregs[REG_RAX] = -EPERM;
#elif defined(__aarch64__)
    a0 = (long)uc->uc_mcontext.regs[0];
    a1 = (long)uc->uc_mcontext.regs[1];
    uc->uc_mcontext.regs[0] = (unsigned long long)-EPERM;
#else
#error "guard: the SIGSYS handler knows x86-64 and AArch64"
#endif
    atomic_fetch_add(&g_denied, 1);
    for (int i = 0; i < g_n_deny && si->si_arch == g_arch; i++)
        if (g_deny[i].nr == nr) name = g_deny[i].name;
    if (si->si_arch != g_arch) name = "a call of another architecture";
    put_str(line, &n, sizeof(line), "citadel: lockdown: denied ");
    put_str(line, &n, sizeof(line), name);
    put_str(line, &n, sizeof(line), " (system call ");
    put_num(line, &n, sizeof(line), nr);
    if (nr == SYS_socket && si->si_arch == g_arch) {
        put_str(line, &n, sizeof(line), ", domain ");
        put_num(line, &n, sizeof(line), a0);
        put_str(line, &n, sizeof(line), ", type ");
        put_num(line, &n, sizeof(line), a1 & 0xf);
    }
    put_str(line, &n, sizeof(line), "): EPERM\n");
    if (write(2, line, n) < 0) {
        /* nothing to do: stderr is gone */
    }
}

/* The calls refused outright: exec, debugging other processes, the
 * kernel's administration, and what could open another way out (io_uring
 * runs network operations the socket rules do not see; namespaces could
 * make a network of their own). */
static const char *const deny_calls[] = {
    "execve",
    "execveat",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "unshare",
    "setns",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_by_handle_at",
    "name_to_handle_at",
    "acct",
    "quotactl",
    "iopl",
    "ioperm",
    "ptrace",
};

/* LeakSanitizer stops the world with ptrace at exit: a sanitizer build
 * keeps ptrace, and its statement says so. */
#if defined(__SANITIZE_ADDRESS__)
#define GUARD_KEEP_PTRACE 1
#else
#define GUARD_KEEP_PTRACE 0
#endif

/* For the SIGSYS handler's line: nr is called name. */
static void name_denied(int nr, const char *name)
{
    if (g_n_deny >= MAX_DENY) return;
    g_deny[g_n_deny].nr = nr;
    snprintf(g_deny[g_n_deny++].name, sizeof(g_deny[0].name), "%s", name);
}

static int deny(scmp_filter_ctx c, const char *name, struct cit_err *err)
{
    int nr = seccomp_syscall_resolve_name(name), rc;
    if (nr == __NR_SCMP_ERROR) return 0; /* not a call on this architecture */
    if ((rc = seccomp_rule_add(c, SCMP_ACT_TRAP, nr, 0)))
        return cit_err_set(err, CIT_EIO, "lockdown: seccomp rule for %s: %s", name, strerror(-rc));
    name_denied(nr, name);
    return 0;
}

/* One comparison of a seccomp rule: argument i op a (MASKED_EQ: (arg & a)
 * == b). libseccomp's SCMP_An macros leave datum_b out for the one-value
 * comparisons, which clang's -Wmissing-field-initializers refuses. */
static struct scmp_arg_cmp arg_cmp(unsigned i, enum scmp_compare op, scmp_datum_t a, scmp_datum_t b)
{
    return (struct scmp_arg_cmp){i, op, a, b};
}

/* socket(): TCP over IPv4 and IPv6 only. The rules are the exceptions,
 * each an equality, because libseccomp ANDs the comparisons of one rule. */
static int socket_rules(scmp_filter_ctx c, struct cit_err *err)
{
    int rc = 0;
    for (int d = 0; !rc && d <= 64; d++) { /* every domain but AF_INET and AF_INET6 */
        if (d == AF_INET || d == AF_INET6) continue;
        rc = seccomp_rule_add(c, SCMP_ACT_TRAP, SCMP_SYS(socket), 1,
                              arg_cmp(0, SCMP_CMP_EQ, (scmp_datum_t)d, 0));
    }
    if (!rc)
        rc =
            seccomp_rule_add(c, SCMP_ACT_TRAP, SCMP_SYS(socket), 1, arg_cmp(0, SCMP_CMP_GT, 64, 0));
    for (int f = 0; !rc && f < 2; f++) {
        int d = f ? AF_INET6 : AF_INET;
        for (int t = 0; !rc && t < 16; t++) { /* every type but SOCK_STREAM (low 4 bits) */
            if (t == SOCK_STREAM) continue;
            rc = seccomp_rule_add(c, SCMP_ACT_TRAP, SCMP_SYS(socket), 2,
                                  arg_cmp(0, SCMP_CMP_EQ, (scmp_datum_t)d, 0),
                                  arg_cmp(1, SCMP_CMP_MASKED_EQ, 0xf, (scmp_datum_t)t));
        }
        /* and TCP only: protocol 0 or IPPROTO_TCP, never SCTP over a stream */
        if (!rc)
            rc = seccomp_rule_add(c, SCMP_ACT_TRAP, SCMP_SYS(socket), 2,
                                  arg_cmp(0, SCMP_CMP_EQ, (scmp_datum_t)d, 0),
                                  arg_cmp(2, SCMP_CMP_GT, IPPROTO_TCP, 0));
    }
    if (rc) return cit_err_set(err, CIT_EIO, "lockdown: seccomp socket rules: %s", strerror(-rc));
    name_denied(SCMP_SYS(socket), "socket");
    return 0;
}

/* sendto, sendmsg and sendmmsg with MSG_FASTOPEN in their flags
 * (argument 3, 2 and 3). */
static int fastopen_rules(scmp_filter_ctx c, struct cit_err *err)
{
    static const struct {
        const char *name;
        unsigned flags_arg;
    } calls[] = {{"sendto", 3}, {"sendmsg", 2}, {"sendmmsg", 3}};
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
        struct scmp_arg_cmp fl = {calls[i].flags_arg, SCMP_CMP_MASKED_EQ, MSG_FASTOPEN,
                                  MSG_FASTOPEN};
        int nr = seccomp_syscall_resolve_name(calls[i].name), rc;
        if (nr == __NR_SCMP_ERROR) continue;
        if ((rc = seccomp_rule_add_array(c, SCMP_ACT_TRAP, nr, 1, &fl)))
            return cit_err_set(err, CIT_EIO, "lockdown: seccomp rule for %s: %s", calls[i].name,
                               strerror(-rc));
        name_denied(nr, calls[i].name);
    }
    return 0;
}

int guard_seal(struct cit_err *err)
{
    struct sigaction sa;
    scmp_filter_ctx c;
    int rc = 0;
    if (!g_st.locked) return cit_err_set(err, CIT_EINVAL, "lockdown: guard_seal before guard_lock");
    if (g_st.sealed) return 0;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL))
        return cit_err_set(err, CIT_EIO, "lockdown: SIGSYS handler: %s", strerror(errno));
    if (!(c = seccomp_init(SCMP_ACT_ALLOW)))
        return cit_err_set(err, CIT_EIO, "lockdown: seccomp_init failed");
    g_arch = seccomp_arch_native();
    g_n_deny = 0;
    /* a call of another architecture (int 0x80 on x86-64) is refused too */
    if ((rc = seccomp_attr_set(c, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_TRAP)) ||
        (rc = seccomp_attr_set(c, SCMP_FLTATR_CTL_TSYNC, 1))) {
        seccomp_release(c);
        return cit_err_set(err, CIT_EIO, "lockdown: seccomp attributes: %s", strerror(-rc));
    }
    for (size_t i = 0; !rc && i < sizeof(deny_calls) / sizeof(deny_calls[0]); i++)
        if (!GUARD_KEEP_PTRACE || strcmp(deny_calls[i], "ptrace")) rc = deny(c, deny_calls[i], err);
    /* clone3 passes its flags in memory the filter cannot read: ENOSYS
     * makes glibc fall back to clone, whose flags it can */
    if (!rc && (rc = seccomp_rule_add(c, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0)))
        rc = cit_err_set(err, CIT_EIO, "lockdown: seccomp rule for clone3: %s", strerror(-rc));
    if (!rc && (rc = seccomp_rule_add(c, SCMP_ACT_TRAP, SCMP_SYS(clone), 1,
                                      arg_cmp(0, SCMP_CMP_MASKED_EQ, CLONE_NEWNET, CLONE_NEWNET))))
        rc = cit_err_set(err, CIT_EIO, "lockdown: seccomp rule for clone: %s", strerror(-rc));
    if (!rc) rc = socket_rules(c, err);
    /* TCP Fast Open connects inside sendto/sendmsg, past Landlock's
     * connect rule: refused, so every connect goes through connect() */
    if (!rc) rc = fastopen_rules(c, err);
    /* listen() on an unbound socket picks a port without bind(), past
     * Landlock's bind rule: the process's listeners exist before the seal */
    if (!rc && !g_spec.listen_after_seal) rc = deny(c, "listen", err);
    if (!rc) rc = deny(c, "pidfd_getfd", err);
    if (!rc && (rc = seccomp_load(c)))
        rc = cit_err_set(err, CIT_EIO, "lockdown: loading the seccomp filter: %s", strerror(-rc));
    seccomp_release(c);
    if (rc) {
        if (!g_st.best_effort) return rc;
        missing("seccomp");
        cit_log(CIT_LOG_WARN, "%s (best-effort: going on without it)", err->msg);
        rc = 0;
    } else {
        g_st.seccomp = 1;
    }
    g_st.sealed = 1;
    return 0;
}

/* ---- the statement ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

static void addr_text(const struct guard_addr *a, char *out, size_t cap);

/* by name, then by address text: resolvers return addresses in changing
 * orders, and the statement must not change with them */
static int cmp_addr(const void *x, const void *y)
{
    const struct guard_addr *a = x, *b = y;
    char ta[80] = "", tb[80] = "";
    int c = strcmp(a->host, b->host);
    if (c) return c;
    if (a->len) addr_text(a, ta, sizeof(ta));
    if (b->len) addr_text(b, tb, sizeof(tb));
    return strcmp(ta, tb);
}

static void addr_text(const struct guard_addr *a, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (a->sa.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->sa)->sin6_addr, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%d", ip, a->port);
    } else {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->sa)->sin_addr, ip, sizeof(ip));
        snprintf(out, cap, "%s:%d", ip, a->port);
    }
}

int guard_statement(struct cit_buf *out, char hash[65])
{
    struct guard_spec *s = cit_malloc(sizeof(*s));
    uint8_t h[32];
    int rc = 0;
    if (!s) return CIT_ENOMEM;
    *s = g_spec; /* sorted, a copy: the statement is canonical */
    qsort(s->ro, (size_t)s->n_ro, GUARD_PATH, cmp_str);
    qsort(s->rw, (size_t)s->n_rw, GUARD_PATH, cmp_str);
    qsort(s->bind, (size_t)s->n_bind, sizeof(int), cmp_int);
    qsort(s->connect, (size_t)s->n_connect, sizeof(int), cmp_int);
    qsort(s->addrs, (size_t)s->n_addrs, sizeof(s->addrs[0]), cmp_addr);
    out->len = 0;
    rc |= cit_buf_printf(out, "citadel air-gap statement v1\nprocess %s\nmode %s\n", s->what,
                         s->best_effort ? "best-effort" : "required");
    rc |= cit_buf_printf(out, "landlock abi %d: files %s, tcp ports %s, scope %s\n", g_st.abi,
                         g_st.fs ? "enforced" : "not enforced",
                         g_st.net ? "enforced" : "not enforced",
                         g_st.scope ? "abstract-unix signal" : "not enforced");
    for (int i = 0; i < s->n_ro; i++) rc |= cit_buf_printf(out, "read %s\n", s->ro[i]);
    for (int i = 0; i < s->n_rw; i++) rc |= cit_buf_printf(out, "write %s\n", s->rw[i]);
    for (int i = 0; i < s->n_bind; i++) rc |= cit_buf_printf(out, "tcp bind %d\n", s->bind[i]);
    for (int i = 0; i < s->n_connect; i++)
        rc |= cit_buf_printf(out, "tcp connect %d\n", s->connect[i]);
    for (int i = 0; i < s->n_addrs; i++) {
        char a[80] = "unresolved";
        if (s->addrs[i].len) addr_text(&s->addrs[i], a, sizeof(a));
        rc |= cit_buf_printf(out, "peer %s %s\n", s->addrs[i].host, a);
    }
    rc |=
        cit_buf_printf(out, "seccomp %s\n", g_st.seccomp ? "loaded on every thread" : "not loaded");
    rc |= cit_buf_printf(out, "seccomp socket: tcp over inet and inet6 only\n");
    rc |= cit_buf_printf(out, "seccomp deny:");
    for (size_t i = 0; i < sizeof(deny_calls) / sizeof(deny_calls[0]); i++)
        if (!GUARD_KEEP_PTRACE || strcmp(deny_calls[i], "ptrace"))
            rc |= cit_buf_printf(out, " %s", deny_calls[i]);
    rc |= cit_buf_printf(out,
                         " clone(CLONE_NEWNET) sendto/sendmsg/sendmmsg(MSG_FASTOPEN)%s "
                         "pidfd_getfd other-architectures\n",
                         s->listen_after_seal ? "" : " listen");
    if (GUARD_KEEP_PTRACE) rc |= cit_buf_printf(out, "seccomp ptrace allowed: sanitizer build\n");
    rc |= cit_buf_printf(out, "seccomp action: EPERM, logged\n");
    rc |= cit_buf_printf(out, "missing %s\n", g_st.missing[0] ? g_st.missing : "nothing");
    cit_free(s);
    if (rc) return CIT_ENOMEM;
    crypto_hash_sha256(h, (const unsigned char *)out->p, out->len);
    sodium_bin2hex(hash, 65, h, sizeof(h));
    if (g_st.sealed) memcpy(g_st.hash, hash, 65);
    return 0;
}

void guard_get_status(struct guard_status *st)
{
    *st = g_st;
    st->denied = atomic_load(&g_denied);
}

/* ---- connects ---- */

static int same_addr(const struct sockaddr *a, const struct sockaddr_storage *b)
{
    if (a->sa_family != b->ss_family) return 0;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr));
    }
    return 0;
}

int guard_connect_ok(const struct sockaddr *sa, socklen_t len)
{
    if (!g_st.locked) return 1;
    if (len < sizeof(sa_family_t) ||
        (sa->sa_family == AF_INET && len < sizeof(struct sockaddr_in)) ||
        (sa->sa_family == AF_INET6 && len < sizeof(struct sockaddr_in6)))
        return 0;
    for (int i = 0; i < g_spec.n_addrs; i++)
        if (g_spec.addrs[i].len && same_addr(sa, &g_spec.addrs[i].sa)) return 1;
    return 0;
}

int guard_lookup(const char *host, int port, struct guard_addr *out, int cap)
{
    int n = 0;
    if (!g_st.locked) return 0;
    for (int i = 0; i < g_spec.n_addrs && n < cap; i++)
        if (g_spec.addrs[i].len && g_spec.addrs[i].port == port &&
            !strcmp(g_spec.addrs[i].host, host))
            out[n++] = g_spec.addrs[i];
    return n;
}

int guard_resolve(const char *host, int port, char *out, size_t cap)
{
    size_t len;
    int n = 0;
    if (!g_st.locked) return CIT_ENOENT;
    len = (size_t)snprintf(out, cap, "%s:%d:", host, port);
    for (int i = 0; i < g_spec.n_addrs && len < cap; i++) {
        char ip[INET6_ADDRSTRLEN];
        const struct guard_addr *a = &g_spec.addrs[i];
        if (a->port != port || strcmp(a->host, host) || !a->len) continue;
        if (a->sa.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->sa)->sin6_addr, ip, sizeof(ip));
        else
            inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->sa)->sin_addr, ip, sizeof(ip));
        len +=
            (size_t)snprintf(out + len, cap - len, a->sa.ss_family == AF_INET6 ? "%s[%s]" : "%s%s",
                             n++ ? "," : "", ip);
    }
    if (!n || len >= cap) return CIT_ENOENT;
    return 0;
}
