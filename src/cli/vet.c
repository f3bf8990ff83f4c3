/*
 * citadel vet: the Independent Cloud Vetting Checklist, run against this
 * node's own settings, as a report the node signs (docs/vet.md).
 *
 *   citadel vet [--config F] [--model M ...] [--state S] [--policy P] [--ledger L]
 *               [--out DIR] [--energy-tokens N] [--powercap DIR]
 *   citadel vet verify [--dir DIR] [--key NODE.vkey]
 *
 * The four checks:
 *   air gap       a child process takes exactly the lockdown `citadel
 *                 serve` takes with these settings (cli_serve_spec) and
 *                 tries to get out: DNS, TCP to RFC 5737 / RFC 3849
 *                 addresses, a local port that is no peer's, raw, packet,
 *                 netlink and Unix sockets, exec, files outside its own.
 *                 Each attempt's errno is reported. Then, for information,
 *                 the host's interfaces and default routes.
 *   energy        the policy's declared site, and joules per generated
 *                 token from RAPL (powercap) where the kernel exposes it;
 *                 "not measurable here" otherwise, never an estimate.
 *   training set  for every admitted model, its card's datasets with
 *                 their jurisdictions and languages, the share domestic
 *                 to the node, and what the admission rules allowed.
 *   gateway       `citadel peer test` for every peer, and the child's
 *                 proof that a host outside the peer list is unreachable.
 * Plus the policy hash and profile, `audit verify` with the latest
 * checkpoint, the admitted models, the air-gap statement (and whether the
 * ledger's last one is the same), the version and build.
 *
 * It writes DIR/vet.json (the report: UTF-8 JSON, keys sorted), a DSSE
 * envelope over it signed with the node key (DIR/vet.dsse.json), and
 * DIR/vet.html, a page with no script and nothing to fetch, which names
 * the report's SHA-256. vet verify checks all three.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <jansson.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "citadel/border.h"
#include "citadel/engine.h"
#include "citadel/gateway.h"
#include "citadel/guard.h"
#include "citadel/http.h"
#include "citadel/ledger.h"
#include "citadel/node.h"
#include "citadel/policy.h"
#include "cli.h"

#define VET_TYPE "application/vnd.citadel.vet.v1+json"
#define MAX_REPORT (8u << 20)

void cli_usage_vet(FILE *f)
{
    fputs("usage: citadel vet [--config FILE] [--model [ID=]PATH ...] [--state S] [--policy P]\n"
          "                   [--ledger L] [serve's other flags: --port N ...]\n"
          "                   [--out DIR] [--energy-tokens N] [--powercap DIR]\n"
          "       citadel vet verify [--dir DIR] [--key NODE.vkey | --ledger L | --self-signed]\n"
          "  vet runs the vetting checklist (air gap, energy, training set, gateway) against\n"
          "  the node these settings describe (the flags are serve's) and writes DIR/vet.json,\n"
          "  its signed DSSE envelope DIR/vet.dsse.json and DIR/vet.html (DIR: the current\n"
          "  folder). It exits 0 when no check failed, 1 when one did.\n"
          "  vet verify checks the envelope's signature (the key: --key, else the ledger's\n"
          "  node.vkey; --self-signed accepts the one the report names, which proves integrity\n"
          "  only), that it covers vet.json byte for byte, and that vet.html is its rendering.\n",
          f);
}

/* ---- small things ---- */

static const char *errno_name(int e)
{
    switch (e) {
    case 0: return "none";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ENETUNREACH: return "ENETUNREACH";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EINPROGRESS: return "EINPROGRESS";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case ENOENT: return "ENOENT";
    case ETIMEDOUT: return "ETIMEDOUT";
    default: return "other";
    }
}

static void utc_now(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int in_list(const int *v, int n, int x)
{
    for (int i = 0; i < n; i++)
        if (v[i] == x) return 1;
    return 0;
}

/* ---- the air gap: attempts from a locked-down child ---- */

struct probe_ctx {
    int fd;         /* the pipe to the parent: one JSON object per line */
    int local_port; /* a loopback listener that is no peer's */
    int pub_port;   /* a port no peer has */
    int peer_port;  /* a peer's port, or 0 */
};

/* One attempt's outcome. It counts as blocked only with the errno the
 * mechanism named in by gives (Landlock: EACCES; seccomp: EPERM): a
 * network that happens to be unreachable is not a lockdown. */
static void emit(const struct probe_ctx *c, const char *check, const char *attempt,
                 const char *call, int err, const char *by)
{
    int want = !strcmp(by, "seccomp") ? EPERM : EACCES;
    json_t *j = json_pack("{s:s,s:s,s:s,s:i,s:s,s:b,s:s}", "check", check, "attempt", attempt,
                          "call", call, "errno", err, "error", err ? strerror(err) : "succeeded",
                          "blocked", err == want, "by", err == want ? by : "nothing");
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (s && (write(c->fd, s, strlen(s)) < 0 || write(c->fd, "\n", 1) < 0)) _exit(5);
    free(s);
    json_decref(j);
}

static int try_socket(int domain, int type, int proto)
{
    int fd = socket(domain, type | SOCK_CLOEXEC, proto);
    if (fd < 0) return errno;
    close(fd);
    return 0;
}

/* A non-blocking connect: EINPROGRESS means a SYN left, which is a way out. */
static int try_connect(const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), e = 0;
    if (fd < 0) return errno;
    if (connect(fd, sa, len)) e = errno;
    close(fd);
    return e;
}

static void v4(struct sockaddr_in *a, const char *ip, int port)
{
    memset(a, 0, sizeof(*a));
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &a->sin_addr);
}

static uint64_t denied_now(void)
{
    struct guard_status st;
    guard_get_status(&st);
    return st.denied;
}

static void probe(const struct probe_ctx *c)
{
    struct sockaddr_in a;
    struct sockaddr_in6 a6;
    struct addrinfo *ai = NULL;
    char call[160];
    int e, g;

    e = try_socket(AF_INET, SOCK_DGRAM, 0);
    emit(c, "air_gap", "DNS over UDP", "socket(AF_INET, SOCK_DGRAM)", e, "seccomp");
    e = try_socket(AF_INET6, SOCK_DGRAM, 0);
    emit(c, "air_gap", "DNS over UDP, IPv6", "socket(AF_INET6, SOCK_DGRAM)", e, "seccomp");
    {
        /* blocked when no query could leave (EAI_AGAIN/EAI_SYSTEM: no socket
         * to send it on); an answer, even "no such name", means it left */
        int before = (int)denied_now();
        g = getaddrinfo("vet.citadel.example", "443", NULL, &ai);
        if (!g) freeaddrinfo(ai);
        emit(c, "air_gap", "a name through the system resolver", "getaddrinfo(vet.citadel.example)",
             (g == EAI_AGAIN || g == EAI_SYSTEM) && (int)denied_now() > before ? EPERM : ENOENT,
             "seccomp");
    }
    v4(&a, "192.0.2.1", c->pub_port);
    snprintf(call, sizeof(call), "connect(192.0.2.1:%d) (RFC 5737)", c->pub_port);
    emit(c, "air_gap", "TCP to a public address", call,
         try_connect((struct sockaddr *)&a, sizeof(a)), "Landlock");
    memset(&a6, 0, sizeof(a6));
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons((uint16_t)c->pub_port);
    inet_pton(AF_INET6, "2001:db8::1", &a6.sin6_addr);
    snprintf(call, sizeof(call), "connect([2001:db8::1]:%d) (RFC 3849)", c->pub_port);
    emit(c, "air_gap", "TCP to a public IPv6 address", call,
         try_connect((struct sockaddr *)&a6, sizeof(a6)), "Landlock");
    if (c->peer_port) {
        /* the kernel lets a peer's port through to any address; the
         * process checks the address itself before every connect */
        v4(&a, "192.0.2.1", c->peer_port);
        snprintf(call, sizeof(call), "connect(192.0.2.1:%d), a peer's port, via the gateway's check",
                 c->peer_port);
        emit(c, "gateway", "a host outside the peer list, on a peer's port", call,
             guard_connect_ok((struct sockaddr *)&a, sizeof(a)) ? 0 : EACCES, "in-process check");
    }
    v4(&a, "127.0.0.1", c->local_port);
    snprintf(call, sizeof(call), "connect(127.0.0.1:%d), a listener that is no peer", c->local_port);
    e = try_connect((struct sockaddr *)&a, sizeof(a));
    emit(c, "air_gap", "TCP to a local port that is no peer's", call, e, "Landlock");
    emit(c, "gateway", "a host outside the peer list", call, e, "Landlock");
    {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        e = 0;
        v4(&a, "192.0.2.1", c->pub_port);
        if (fd >= 0 && sendto(fd, "x", 1, MSG_FASTOPEN, (struct sockaddr *)&a, sizeof(a)) < 0)
            e = errno;
        if (fd >= 0) close(fd);
        snprintf(call, sizeof(call), "sendto(192.0.2.1:%d, MSG_FASTOPEN)", c->pub_port);
        emit(c, "air_gap", "TCP Fast Open to a public address (connects inside sendto)", call, e,
             "seccomp");
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), e = 0;
        if (fd >= 0 && listen(fd, 1)) e = errno;
        if (fd >= 0) close(fd);
        emit(c, "air_gap", "listen on a port never bound (an inbound port)", "listen(unbound)", e,
             "seccomp");
    }
    emit(c, "air_gap", "raw socket", "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)",
         try_socket(AF_INET, SOCK_RAW, IPPROTO_ICMP), "seccomp");
    emit(c, "air_gap", "packet socket", "socket(AF_PACKET, SOCK_RAW)",
         try_socket(AF_PACKET, SOCK_RAW, 0), "seccomp");
    emit(c, "air_gap", "netlink socket", "socket(AF_NETLINK, SOCK_RAW)",
         try_socket(AF_NETLINK, SOCK_RAW, 0), "seccomp");
    emit(c, "air_gap", "Unix socket (a local daemon that could reach out)",
         "socket(AF_UNIX, SOCK_STREAM)", try_socket(AF_UNIX, SOCK_STREAM, 0), "seccomp");
    {
        /* in a grandchild: an exec that worked must not replace the prober */
        int p[2], st;
        pid_t k;
        e = 0;
        if (!pipe(p) && (k = fork()) >= 0) {
            if (k == 0) {
                char *argv[] = {(char *)"/bin/sh", (char *)"-c", (char *)"true", NULL};
                char *envp[] = {NULL};
                close(p[0]);
                execve("/bin/sh", argv, envp);
                e = errno;
                if (write(p[1], &e, sizeof(e)) < 0) _exit(1);
                _exit(0);
            }
            close(p[1]);
            if (read(p[0], &e, sizeof(e)) != sizeof(e)) e = 0; /* it ran: the pipe closed */
            close(p[0]);
            waitpid(k, &st, 0);
        }
        emit(c, "air_gap", "exec of a binary", "execve(/bin/sh)", e, "seccomp");
    }
    {
        int fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
        e = fd < 0 ? errno : 0;
        if (fd >= 0) close(fd);
        emit(c, "air_gap", "read a file outside the node's", "open(/etc/passwd)", e, "Landlock");
        fd = open("/var/tmp/citadel-vet-probe", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        e = fd < 0 ? errno : 0;
        if (fd >= 0) close(fd), unlink("/var/tmp/citadel-vet-probe");
        emit(c, "air_gap", "write a file outside the node's", "open(/var/tmp/citadel-vet-probe, "
             "O_CREAT)", e, "Landlock");
    }
}

/* Runs the child under gs; fills attempts (an array) and the statement
 * the child's lockdown produced. */
static int air_gap_child(const struct guard_spec *gs, json_t *attempts, struct cit_buf *statement,
                         char hash[65], struct cit_buf *childlog, struct cit_err *err)
{
    int res[2], logp[2], st[2], lfd, local_port = 0, status;
    struct sockaddr_in la;
    socklen_t ll = sizeof(la);
    pid_t pid;
    struct probe_ctx c = {0};
    struct cit_buf out = {0};
    char buf[4096];
    ssize_t r;
    /* a listener that is no peer: the child must not reach it */
    v4(&la, "127.0.0.1", 0);
    if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        bind(lfd, (struct sockaddr *)&la, sizeof(la)) || listen(lfd, 4) ||
        getsockname(lfd, (struct sockaddr *)&la, &ll))
        return cit_err_set(err, CIT_EIO, "vet: a loopback listener: %s", strerror(errno));
    local_port = ntohs(la.sin_port);
    c.local_port = local_port;
    c.pub_port = 443;
    while (in_list(gs->connect, gs->n_connect, c.pub_port)) c.pub_port++;
    c.peer_port = gs->n_connect ? gs->connect[0] : 0;
    if (pipe2(res, O_CLOEXEC) || pipe2(logp, O_CLOEXEC) || pipe2(st, O_CLOEXEC)) {
        close(lfd);
        return cit_err_set(err, CIT_EIO, "vet: pipe: %s", strerror(errno));
    }
    fflush(NULL);
    if ((pid = fork()) < 0) {
        close(lfd);
        return cit_err_set(err, CIT_EIO, "vet: fork: %s", strerror(errno));
    }
    if (pid == 0) {
        struct cit_err e = {{0}};
        struct cit_buf s = {0};
        char h[65] = "";
        close(res[0]), close(logp[0]), close(st[0]);
        dup2(logp[1], 2); /* the SIGSYS handler's lines come back too */
        c.fd = res[1];
        if (guard_lock(gs, &e) || guard_seal(&e)) {
            dprintf(2, "lockdown failed: %s\n", e.msg);
            _exit(2);
        }
        probe(&c);
        if (!guard_statement(&s, h)) {
            if (write(st[1], h, 64) < 0 || write(st[1], s.p, s.len) < 0) _exit(5);
        }
        _exit(0);
    }
    close(res[1]), close(logp[1]), close(st[1]);
    /* all three pipes at once, so that a full one never stalls the child;
     * a child that hangs is killed after 60 s */
    {
        struct pollfd pf[3] = {{res[0], POLLIN, 0}, {st[0], POLLIN, 0}, {logp[0], POLLIN, 0}};
        struct cit_buf *to[3] = {&out, statement, childlog};
        int open_fds = 3;
        time_t until = time(NULL) + 60;
        while (open_fds > 0 && time(NULL) < until) {
            if (poll(pf, 3, 1000) < 0 && errno != EINTR) break;
            for (int k = 0; k < 3; k++) {
                if (pf[k].fd < 0 || !(pf[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                if ((r = read(pf[k].fd, buf, sizeof(buf))) > 0) {
                    cit_buf_add(to[k], buf, (size_t)r);
                } else if (r == 0 || errno != EINTR) {
                    close(pf[k].fd);
                    pf[k].fd = -1;
                    open_fds--;
                }
            }
        }
        for (int k = 0; k < 3; k++)
            if (pf[k].fd >= 0) close(pf[k].fd);
        if (open_fds > 0) kill(pid, SIGKILL);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    close(lfd);
    if (!WIFEXITED(status) || WEXITSTATUS(status)) {
        cit_buf_free(&out);
        return cit_err_set(err, CIT_EIO, "vet: the locked-down child failed: %.*s",
                           childlog->p ? (int)childlog->len : 0, childlog->p ? childlog->p : "");
    }
    if (statement->len >= 64) {
        memcpy(hash, statement->p, 64);
        hash[64] = 0;
        memmove(statement->p, statement->p + 64, statement->len - 64);
        statement->len -= 64;
        statement->p[statement->len] = 0;
    }
    for (char *line = out.p, *nl; line && *line; line = nl + 1) {
        json_t *j;
        if (!(nl = strchr(line, '\n'))) break;
        *nl = 0;
        if ((j = json_loads(line, 0, NULL))) json_array_append_new(attempts, j);
    }
    cit_buf_free(&out);
    return 0;
}

/* The host's interfaces and default routes: what it could reach if the
 * process were not held. */
static json_t *host_network(void)
{
    json_t *ifs = json_array(), *routes = json_array();
    struct ifaddrs *ia = NULL;
    char line[512];
    FILE *f;
    int connected = 0;
    if (!getifaddrs(&ia)) {
        for (struct ifaddrs *i = ia; i; i = i->ifa_next) {
            char ip[INET6_ADDRSTRLEN] = "";
            if (!i->ifa_addr ||
                (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
                continue;
            if (i->ifa_addr->sa_family == AF_INET)
                inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, ip, sizeof(ip));
            else
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, ip,
                          sizeof(ip));
            json_array_append_new(ifs, json_pack("{s:s,s:s,s:b,s:b}", "name", i->ifa_name,
                                                 "address", ip, "up", !!(i->ifa_flags & IFF_UP),
                                                 "loopback",
                                                 !!(i->ifa_flags & IFF_LOOPBACK)));
        }
        freeifaddrs(ia);
    }
    if ((f = fopen("/proc/net/route", "r"))) {
        while (fgets(line, sizeof(line), f)) {
            char ifn[64];
            unsigned dst, gw, mask, flags;
            if (sscanf(line, "%63s %x %x %x %*d %*d %*d %x", ifn, &dst, &gw, &flags, &mask) == 5 &&
                dst == 0 && mask == 0) {
                char g[INET_ADDRSTRLEN];
                struct in_addr in = {gw};
                inet_ntop(AF_INET, &in, g, sizeof(g));
                json_array_append_new(routes, json_pack("{s:s,s:s,s:s}", "family", "inet",
                                                        "interface", ifn, "via", g));
                connected = 1;
            }
        }
        fclose(f);
    }
    if ((f = fopen("/proc/net/ipv6_route", "r"))) {
        while (fgets(line, sizeof(line), f)) {
            char dst[40], plen[4], via[40], ifn[64];
            if (sscanf(line, "%39s %3s %*s %*s %39s %*s %*s %*s %*s %63s", dst, plen, via, ifn) ==
                    4 &&
                !strcmp(dst, "00000000000000000000000000000000") && !strcmp(plen, "00") &&
                strcmp(ifn, "lo")) {
                json_array_append_new(routes, json_pack("{s:s,s:s,s:s}", "family", "inet6",
                                                        "interface", ifn, "via", via));
                connected = 1;
            }
        }
        fclose(f);
    }
    return json_pack("{s:o,s:o,s:b,s:s}", "interfaces", ifs, "default_routes", routes, "connected",
                     connected, "note",
                     connected ? "the host has a default route: it is connected; the node's "
                                 "process cannot use it (the attempts above)"
                               : "the host has no default route");
}

/* ---- energy ---- */

/* The package domains' counters under root (powercap), summed, in µJ;
 * -1 when there is none readable. *range: the counters' wrap. */
static double rapl_read(const char *root, double *range)
{
    char p[1200], v[64];
    double sum = -1;
    *range = 0;
    for (int i = 0; i < 16; i++) {
        FILE *f;
        snprintf(p, sizeof(p), "%s/intel-rapl:%d/energy_uj", root, i);
        if (!(f = fopen(p, "r"))) continue;
        if (fgets(v, sizeof(v), f)) sum = (sum < 0 ? 0 : sum) + atof(v);
        fclose(f);
        snprintf(p, sizeof(p), "%s/intel-rapl:%d/max_energy_range_uj", root, i);
        if ((f = fopen(p, "r"))) {
            if (fgets(v, sizeof(v), f)) *range += atof(v);
            fclose(f);
        }
    }
    return sum;
}

/* Greedy passes of n tokens over the model at path until min_s seconds
 * have gone (a RAPL counter moves about every millisecond: a run shorter
 * than that measures nothing). Returns the tokens generated; *e0 and *e1
 * are the counter just before and after the timed passes. */
static int generate(const char *path, int n, double min_s, const char *root, double *e0,
                    double *e1, double *secs, struct cit_err *err)
{
    struct eng_model *m = NULL;
    struct eng_seq *s = NULL;
    struct eng_batch *b = NULL;
    const struct eng_vocab_info *vi;
    float *logits = NULL;
    int done = 0, nv;
    double range;
    struct timespec t0, t1;
    if (eng_model_load(path, &m, err) || eng_seq_new(m, n + 8, &s) || eng_batch_new(m, 1, &b))
        goto out;
    vi = eng_vocab(m);
    nv = eng_model_hparams(m)->n_vocab;
    if (!(logits = cit_malloc(sizeof(float) * (size_t)nv))) goto out;
    *e0 = rapl_read(root, &range);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        int32_t tok = vi->bos >= 0 ? vi->bos : 0;
        eng_seq_reset(s);
        for (int k = 0; k < n; k++, done++) {
            struct eng_batch_row row = {s, tok, 1};
            int best = 0;
            if (eng_batch_eval(b, NULL, &row, 1, logits)) goto timed;
            for (int i = 1; i < nv; i++)
                if (logits[i] > logits[best]) best = i;
            tok = best;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        *secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    } while (*secs < min_s);
timed:
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    *e1 = rapl_read(root, &range);
out:
    cit_free(logits);
    eng_batch_free(b);
    eng_seq_free(s);
    eng_model_free(m);
    return done;
}

static json_t *energy(const struct pol_policy *pol, const struct http_opts *o, const char *root,
                      int tokens)
{
    const struct pol_site *site = &pol->site;
    json_t *decl = json_null(), *meas;
    double range, e0 = rapl_read(root, &range);
    if (site->present)
        decl = json_pack("{s:s,s:s,s:o,s:s,s:s}", "grid_operator", site->grid_operator, "country",
                         site->country, "low_carbon_share",
                         site->low_carbon_share >= 0 ? json_real(site->low_carbon_share)
                                                     : json_null(),
                         "onsite_generation", site->onsite_generation, "notes", site->notes);
    if (e0 < 0) {
        meas = json_pack("{s:b,s:s}", "measurable", 0, "why",
                         "not measurable here: no RAPL energy counter under the powercap folder "
                         "(a virtual machine, or a CPU or kernel without it)");
    } else if (o->node.n_models < 1 || tokens < 1) {
        meas = json_pack("{s:b,s:s}", "measurable", 0, "why", "no model to generate with");
    } else {
        struct cit_err err = {{0}};
        double secs = 0, e1 = -1;
        int n = generate(o->node.models[0].path, tokens, 1.0, root, &e0, &e1, &secs, &err);
        if (e1 < e0 && range > 0) e1 += range; /* the counter wrapped (once at most in 1 s) */
        if (n < 1 || e1 <= e0)
            meas = json_pack("{s:b,s:s}", "measurable", 0, "why",
                             n < 1 ? (err.msg[0] ? err.msg : "the model generated nothing")
                                   : "the energy counter did not advance");
        else
            meas = json_pack("{s:b,s:s,s:s,s:i,s:f,s:f,s:f,s:s}", "measurable", 1, "source",
                             "RAPL package counters (the whole CPU package: other work on the "
                             "host counts too)",
                             "model", o->node.models[0].id, "tokens", n, "seconds", secs,
                             "joules", (e1 - e0) / 1e6, "joules_per_token", (e1 - e0) / 1e6 / n,
                             "method", "greedy passes of --energy-tokens tokens, one sequence, one "
                             "thread, repeated for at least one second");
    }
    return json_pack("{s:s,s:o,s:o}", "verdict", site->present ? "pass" : "warn", "declared", decl,
                     "measured", meas);
}

/* ---- training set and models ---- */

/* A dataset from place is domestic to a node in jurisdiction node: the
 * same country, or a group (EU) that holds it; "*" (anywhere) is not. */
static int domestic(const char *place, const char *node)
{
    char one[1][16];
    snprintf(one[0], sizeof(one[0]), "%s", place);
    return strcmp(place, "*") && pol_place_allowed((const char(*)[16])one, 1, node);
}

static json_t *datasets_of(const struct brd_admitted *a, const char *jur, double *share)
{
    json_t *v = json_array();
    struct brd_card card;
    struct cit_buf text = {0};
    struct cit_err err;
    char cp[4200];
    int n = 0, dom = 0, from_card = 0;
    brd_card_path(a->gguf, cp, sizeof(cp));
    if (!cit_read_file(cp, BRD_MAX_CARD, &text, &err) &&
        !brd_card_parse(text.p, text.len, &card, &err)) {
        from_card = 1;
        for (int i = 0; i < card.n_datasets; i++, n++) {
            int d = domestic(card.datasets[i].jurisdiction, jur);
            dom += d;
            json_array_append_new(v, json_pack("{s:s,s:s,s:s,s:b}", "name", card.datasets[i].name,
                                               "jurisdiction", card.datasets[i].jurisdiction,
                                               "languages",
                                               card.datasets[i].languages[0]
                                                   ? card.datasets[i].languages
                                                   : "not stated",
                                               "domestic", d));
        }
    }
    cit_buf_free(&text);
    if (!from_card) { /* the admission's record: "name=DE,other=US" */
        char tmp[sizeof(a->datasets)], *save = NULL;
        snprintf(tmp, sizeof(tmp), "%s", a->datasets);
        for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save), n++) {
            char *eq = strrchr(t, '=');
            int d;
            if (!eq) continue;
            *eq = 0;
            d = domestic(eq + 1, jur);
            dom += d;
            json_array_append_new(v, json_pack("{s:s,s:s,s:s,s:b}", "name", t, "jurisdiction",
                                               eq + 1, "languages", "not stated (no card beside the model)",
                                               "domestic", d));
        }
    }
    *share = n ? (double)dom / n : 0;
    return v;
}

static json_t *str_list(const char (*v)[16], int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_string(v[i]));
    return a;
}

static void hex32(const uint8_t *b, char out[65])
{
    sodium_bin2hex(out, 65, b, 32);
}

static json_t *training_and_models(struct node *n, const struct pol_policy *pol,
                                   const struct http_opts *o, json_t **models_out)
{
    struct brd_admitted *v = NULL;
    size_t nv = 0;
    struct cit_err err = {{0}};
    json_t *models = json_array(), *train = json_array(), *lic = json_array(), *notes = json_array();
    int active = 0, undeclared = 0;
    int64_t now = (int64_t)time(NULL);
    if (node_registry(n) && brd_model_list(node_registry(n), &v, &nv, &err))
        json_array_append_new(notes, json_sprintf("the registry could not be read: %s", err.msg));
    for (size_t i = 0; i < nv; i++) {
        const struct brd_admitted *a = &v[i];
        char root[65], sha[65];
        double share = 0;
        const char *state = a->revoked ? "revoked" : (a->expires && a->expires < now) ? "expired"
                                                                                     : "admitted";
        json_t *ds;
        hex32(a->root, root);
        hex32(a->gguf_sha256, sha);
        json_array_append_new(
            models, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:s}", "name", a->name,
                              "version", a->version, "gguf", a->gguf, "gguf_sha256", sha,
                              "signed_digest", root, "signer", a->signer, "signer_jurisdiction",
                              a->signer_place, "licenses", a->licenses, "admitted",
                              (json_int_t)a->admitted, "expires", (json_int_t)a->expires, "state",
                              state));
        if (strcmp(state, "admitted")) continue;
        active++;
        ds = datasets_of(a, pol->jurisdiction, &share);
        if (!json_array_size(ds)) undeclared++;
        json_array_append_new(train, json_pack("{s:s,s:o,s:f}", "model", a->name, "datasets", ds,
                                               "domestic_share", share));
    }
    cit_free(v);
    for (int i = 0; i < o->node.n_models; i++) {
        struct brd_admitted a;
        struct cit_err e2 = {{0}};
        if (!node_registry(n) ||
            brd_model_find(node_registry(n), o->node.models[i].path, &a, &e2) || a.revoked)
            json_array_append_new(notes, json_sprintf("model %s (%s) is configured but not "
                                                      "admitted: it serves only with --unvetted",
                                                      o->node.models[i].id,
                                                      o->node.models[i].path));
    }
    for (int i = 0; i < pol->adm.n_licenses; i++)
        json_array_append_new(lic, json_string(pol->adm.licenses[i]));
    *models_out = models;
    return json_pack("{s:s,s:o,s:{s:b,s:o,s:o,s:o,s:I},s:o}", "verdict",
                     active && !undeclared && !json_array_size(notes) ? "pass" : "warn", "models",
                     train, "admission_rules", "present", pol->adm.present, "licenses", lic,
                     "dataset_jurisdictions", str_list(pol->adm.data_places, pol->adm.n_data_places),
                     "signer_jurisdictions",
                     str_list(pol->adm.signer_places, pol->adm.n_signer_places), "expires_days",
                     (json_int_t)pol->adm.expires_days, "notes", notes);
}

/* ---- gateway ---- */

static json_t *gateway(const struct pol_policy *pol, const struct ledger_skey *key, int have_key,
                       json_t *child_attempts)
{
    json_t *peers = json_array(), *att = json_array();
    struct gw *g = NULL;
    struct cit_err err = {{0}};
    int bad = 0, leak = 0;
    size_t i;
    json_t *a;
    json_array_foreach(child_attempts, i, a)
    {
        if (strcmp(json_string_value(json_object_get(a, "check")), "gateway")) continue;
        json_array_append(att, a);
        leak |= !json_is_true(json_object_get(a, "blocked"));
    }
    if (pol->n_peers && (!have_key || gw_open(pol, key, &g, &err))) {
        json_array_append_new(peers, json_pack("{s:s}", "error",
                                               have_key ? err.msg : "no node key in the ledger"));
        bad = 1;
    }
    for (int k = 0; g && k < pol->n_peers; k++) {
        struct gw_peer_stats st;
        struct timespec t0, t1;
        int rc;
        memset(&err, 0, sizeof(err));
        clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = gw_check(g, k, 1, &err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        gw_peer_stats(g, k, &st);
        bad |= rc != 0;
        json_array_append_new(
            peers, json_pack("{s:s,s:s,s:s,s:s,s:b,s:f,s:s,s:s}", "id", st.id, "kind", st.kind, "url",
                             st.url, "jurisdiction", st.jurisdiction, "ok", rc == 0, "latency_ms",
                             (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
                                 (double)(t1.tv_nsec - t0.tv_nsec) / 1e6,
                             "passport",
                             st.passport_ok == 1   ? "receipt verified"
                             : st.passport_ok == 0 ? "no valid receipt"
                             : strcmp(st.kind, "citadel") ? "none (not a citadel)"
                                                   : "not tried (the peer did not answer)",
                             "error", rc ? err.msg : ""));
    }
    gw_close(g);
    return json_pack("{s:s,s:o,s:o,s:s}", "verdict", leak ? "fail" : bad ? "warn" : "pass", "peers",
                     peers, "outside_the_peer_list", att, "summary",
                     !pol->n_peers ? "no peers: this node forwards nothing"
                     : bad         ? "a peer did not pass its test"
                                   : "every peer passed its test");
}

/* ---- the ledger ---- */

static json_t *ledger_part(const char *dir, const char *vkey, const char *child_hash)
{
    struct cit_buf rep = {0}, head = {0};
    struct cit_err err = {{0}};
    struct ledger_view v;
    const char *last_lock = "";
    char *lock_copy = NULL;
    int ok = !ledger_verify(dir, vkey, &rep, &err);
    json_t *j;
    if (!ledger_view_open(dir, &v, &err)) {
        for (uint64_t i = v.n - v.n_pruned; i-- > 0;) {
            json_t *e;
            /* serve's: run and fl record their own, other lockdowns */
            if (!strstr(v.lines[i], "\"event\":\"lockdown\"") ||
                !strstr(v.lines[i], "\"target\":\"serve\""))
                continue;
            if ((e = json_loads(v.lines[i], 0, NULL))) {
                const char *r = json_string_value(json_object_get(e, "request"));
                lock_copy = r ? strdup(r) : NULL;
                json_decref(e);
            }
            break;
        }
        ledger_view_free(&v);
    }
    if (lock_copy) last_lock = lock_copy;
    ledger_head_note(dir, &head, &err);
    j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:b}", "dir", dir, "verify", ok ? "sound" : "FAILED",
                  "report", ok ? (rep.p ? rep.p : "") : err.msg, "signed_head",
                  head.p ? head.p : "", "last_lockdown_statement", last_lock,
                  "lockdown_matches_this_config", last_lock[0] && !strcmp(last_lock, child_hash));
    free(lock_copy);
    cit_buf_free(&rep);
    cit_buf_free(&head);
    return j;
}

/* ---- HTML ---- */

static void esc(struct cit_buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': BUF_LIT(b, "&lt;"); break;
        case '>': BUF_LIT(b, "&gt;"); break;
        case '&': BUF_LIT(b, "&amp;"); break;
        case '"': BUF_LIT(b, "&quot;"); break;
        default: cit_buf_add(b, s, 1);
        }
    }
}

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void verdict_badge(struct cit_buf *b, const char *v)
{
    cit_buf_printf(b, "<span class=\"verdict %s\">%s</span>", v,
                   !strcmp(v, "pass") ? "PASS" : !strcmp(v, "warn") ? "WARN" : "FAIL");
}

static void attempts_table(struct cit_buf *b, json_t *att)
{
    size_t i;
    json_t *a;
    BUF_LIT(b, "<table><tr><th>attempt</th><th>call</th><th>result</th><th>blocked by</th></tr>\n");
    json_array_foreach(att, i, a)
    {
        int blocked = json_is_true(json_object_get(a, "blocked"));
        BUF_LIT(b, "<tr><td>");
        esc(b, jstr(a, "attempt"));
        BUF_LIT(b, "</td><td><code>");
        esc(b, jstr(a, "call"));
        cit_buf_printf(b, "</code></td><td class=\"%s\">%s ", blocked ? "ok" : "bad",
                       blocked ? "blocked:" : "NOT BLOCKED:");
        esc(b, errno_name((int)json_integer_value(json_object_get(a, "errno"))));
        BUF_LIT(b, " (");
        esc(b, jstr(a, "error"));
        BUF_LIT(b, ")</td><td>");
        esc(b, jstr(a, "by"));
        BUF_LIT(b, "</td></tr>\n");
    }
    BUF_LIT(b, "</table>\n");
}

static void kv(struct cit_buf *b, const char *k, const char *v)
{
    BUF_LIT(b, "<tr><th>");
    esc(b, k);
    BUF_LIT(b, "</th><td>");
    esc(b, v);
    BUF_LIT(b, "</td></tr>\n");
}

static int render_html(json_t *r, const char *sha, struct cit_buf *b)
{
    json_t *ch = json_object_get(r, "checks"), *node = json_object_get(r, "node");
    json_t *ag = json_object_get(ch, "air_gap"), *en = json_object_get(ch, "energy"),
           *ts = json_object_get(ch, "training_set"), *gwj = json_object_get(ch, "gateway");
    json_t *x, *y;
    size_t i, k;
    char num[64];
    BUF_LIT(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
               "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
               "<title>citadel vet: ");
    esc(b, jstr(node, "id"));
    BUF_LIT(b, "</title>\n<style>\n"
               "body{font-family:system-ui,sans-serif;max-width:60rem;margin:1rem auto;"
               "padding:0 1rem;color:#1b1b1b;line-height:1.4}\n"
               "h1{font-size:1.5rem}h2{margin-top:2rem;border-bottom:2px solid #ccc}\n"
               "table{border-collapse:collapse;width:100%;margin:.5rem 0;font-size:.9rem;"
               "display:block;overflow-x:auto}\n"
               "td{overflow-wrap:anywhere}\n"
               "th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;"
               "vertical-align:top}th{background:#f4f4f4}\n"
               ".verdict{display:inline-block;padding:.1rem .6rem;border-radius:.3rem;"
               "font-weight:bold;color:#fff;margin-left:.5rem;font-size:1rem}\n"
               ".pass{background:#1a7f37}.warn{background:#b26b00}.fail{background:#c62828}\n"
               "td.ok{color:#1a7f37}td.bad{color:#c62828;font-weight:bold}\n"
               "pre{background:#f6f6f6;padding:.5rem;font-size:.8rem;white-space:pre-wrap;"
               "overflow-wrap:anywhere}\n"
               "code{font-size:.85rem;word-break:break-all}\n"
               "</style></head><body>\n<h1>Independent Cloud Vetting Checklist");
    verdict_badge(b, jstr(r, "verdict"));
    BUF_LIT(b, "</h1>\n<table>\n");
    kv(b, "node", jstr(node, "id"));
    kv(b, "jurisdiction", jstr(node, "jurisdiction"));
    kv(b, "identity (signs this report)", jstr(node, "identity"));
    kv(b, "policy", jstr(json_object_get(node, "policy"), "file"));
    kv(b, "policy sha256", jstr(json_object_get(node, "policy"), "sha256"));
    x = json_object_get(node, "profile");
    kv(b, "jurisdiction profile",
       json_is_object(x) ? jstr(x, "id") : "none (the policy names no profile)");
    if (json_is_object(x) && jstr(x, "notice")[0]) kv(b, "transparency notice", jstr(x, "notice"));
    kv(b, "generated", jstr(r, "generated"));
    kv(b, "citadel", jstr(json_object_get(r, "citadel"), "version"));
    kv(b, "build", jstr(json_object_get(r, "citadel"), "build"));
    kv(b, "report sha256", sha);
    BUF_LIT(b, "</table>\n");

    /* 1: air gap */
    BUF_LIT(b, "<h2 id=\"air-gap\">Air gap");
    verdict_badge(b, jstr(ag, "verdict"));
    BUF_LIT(b, "</h2>\n<p>");
    esc(b, jstr(ag, "summary"));
    BUF_LIT(b, "</p>\n");
    attempts_table(b, json_object_get(ag, "attempts"));
    x = json_object_get(ag, "host");
    BUF_LIT(b, "<p>Host (information): ");
    esc(b, jstr(x, "note"));
    BUF_LIT(b, "</p>\n<table><tr><th>interface</th><th>address</th><th>up</th></tr>\n");
    json_array_foreach(json_object_get(x, "interfaces"), i, y)
    {
        BUF_LIT(b, "<tr><td>");
        esc(b, jstr(y, "name"));
        BUF_LIT(b, "</td><td>");
        esc(b, jstr(y, "address"));
        cit_buf_printf(b, "</td><td>%s</td></tr>\n",
                       json_is_true(json_object_get(y, "up")) ? "yes" : "no");
    }
    BUF_LIT(b, "</table>\n<table><tr><th>default route</th><th>via</th></tr>\n");
    json_array_foreach(json_object_get(x, "default_routes"), i, y)
    {
        BUF_LIT(b, "<tr><td>");
        esc(b, jstr(y, "interface"));
        BUF_LIT(b, " (");
        esc(b, jstr(y, "family"));
        BUF_LIT(b, ")</td><td>");
        esc(b, jstr(y, "via"));
        BUF_LIT(b, "</td></tr>\n");
    }
    BUF_LIT(b, "</table>\n<p>Air-gap statement sha256 <code>");
    esc(b, jstr(json_object_get(ag, "lockdown"), "statement_sha256"));
    BUF_LIT(b, "</code></p>\n<pre>");
    esc(b, jstr(json_object_get(ag, "lockdown"), "statement"));
    BUF_LIT(b, "</pre>\n");

    /* 2: energy */
    BUF_LIT(b, "<h2 id=\"energy\">Energy");
    verdict_badge(b, jstr(en, "verdict"));
    BUF_LIT(b, "</h2>\n<table>\n");
    x = json_object_get(en, "declared");
    if (json_is_object(x)) {
        kv(b, "grid operator", jstr(x, "grid_operator"));
        kv(b, "country", jstr(x, "country"));
        y = json_object_get(x, "low_carbon_share");
        if (json_is_number(y))
            snprintf(num, sizeof(num), "%.0f%%", json_number_value(y) * 100);
        else
            snprintf(num, sizeof(num), "not declared");
        kv(b, "low-carbon share (declared)", num);
        kv(b, "on-site generation", jstr(x, "onsite_generation"));
        kv(b, "notes", jstr(x, "notes"));
    } else {
        kv(b, "declared source", "not declared: the policy has no site section");
    }
    x = json_object_get(en, "measured");
    if (json_is_true(json_object_get(x, "measurable"))) {
        snprintf(num, sizeof(num), "%.4f J/token over %lld tokens",
                 json_number_value(json_object_get(x, "joules_per_token")),
                 (long long)json_integer_value(json_object_get(x, "tokens")));
        kv(b, "measured", num);
        kv(b, "source", jstr(x, "source"));
    } else {
        kv(b, "measured", jstr(x, "why"));
    }
    BUF_LIT(b, "</table>\n");

    /* 3: training set */
    BUF_LIT(b, "<h2 id=\"training-set\">Training set");
    verdict_badge(b, jstr(ts, "verdict"));
    BUF_LIT(b, "</h2>\n");
    json_array_foreach(json_object_get(ts, "models"), i, x)
    {
        BUF_LIT(b, "<h3>");
        esc(b, jstr(x, "model"));
        snprintf(num, sizeof(num), " (domestic share %.0f%%)",
                 json_number_value(json_object_get(x, "domestic_share")) * 100);
        esc(b, num);
        BUF_LIT(b, "</h3>\n<table><tr><th>dataset</th><th>jurisdiction</th><th>languages</th>"
                   "<th>domestic</th></tr>\n");
        json_array_foreach(json_object_get(x, "datasets"), k, y)
        {
            BUF_LIT(b, "<tr><td>");
            esc(b, jstr(y, "name"));
            BUF_LIT(b, "</td><td>");
            esc(b, jstr(y, "jurisdiction"));
            BUF_LIT(b, "</td><td>");
            esc(b, jstr(y, "languages"));
            cit_buf_printf(b, "</td><td>%s</td></tr>\n",
                           json_is_true(json_object_get(y, "domestic")) ? "yes" : "no");
        }
        BUF_LIT(b, "</table>\n");
    }
    if (!json_array_size(json_object_get(ts, "models")))
        BUF_LIT(b, "<p>No model is admitted on this node.</p>\n");
    json_array_foreach(json_object_get(ts, "notes"), i, x)
    {
        BUF_LIT(b, "<p class=\"note\">");
        esc(b, json_string_value(x));
        BUF_LIT(b, "</p>\n");
    }
    x = json_object_get(ts, "admission_rules");
    BUF_LIT(b, "<p>Admission rules: datasets from ");
    json_array_foreach(json_object_get(x, "dataset_jurisdictions"), i, y)
    {
        if (i) BUF_LIT(b, ", ");
        esc(b, json_string_value(y));
    }
    BUF_LIT(b, "; licenses ");
    json_array_foreach(json_object_get(x, "licenses"), i, y)
    {
        if (i) BUF_LIT(b, ", ");
        esc(b, json_string_value(y));
    }
    BUF_LIT(b, ".</p>\n<table><tr><th>admitted model</th><th>GGUF sha256</th><th>signer</th>"
               "<th>state</th></tr>\n");
    json_array_foreach(json_object_get(r, "models"), i, x)
    {
        BUF_LIT(b, "<tr><td>");
        esc(b, jstr(x, "name"));
        BUF_LIT(b, "</td><td><code>");
        esc(b, jstr(x, "gguf_sha256"));
        BUF_LIT(b, "</code></td><td>");
        esc(b, jstr(x, "signer"));
        BUF_LIT(b, " (");
        esc(b, jstr(x, "signer_jurisdiction"));
        BUF_LIT(b, ")</td><td>");
        esc(b, jstr(x, "state"));
        BUF_LIT(b, "</td></tr>\n");
    }
    BUF_LIT(b, "</table>\n");

    /* 4: gateway */
    BUF_LIT(b, "<h2 id=\"gateway\">Gateway");
    verdict_badge(b, jstr(gwj, "verdict"));
    BUF_LIT(b, "</h2>\n<p>");
    esc(b, jstr(gwj, "summary"));
    BUF_LIT(b, "</p>\n<table><tr><th>peer</th><th>kind</th><th>jurisdiction</th><th>test</th>"
               "<th>latency</th><th>passport</th></tr>\n");
    json_array_foreach(json_object_get(gwj, "peers"), i, x)
    {
        int ok = json_is_true(json_object_get(x, "ok"));
        BUF_LIT(b, "<tr><td>");
        esc(b, jstr(x, "id"));
        BUF_LIT(b, " <code>");
        esc(b, jstr(x, "url"));
        BUF_LIT(b, "</code></td><td>");
        esc(b, jstr(x, "kind"));
        BUF_LIT(b, "</td><td>");
        esc(b, jstr(x, "jurisdiction"));
        cit_buf_printf(b, "</td><td class=\"%s\">%s ", ok ? "ok" : "bad", ok ? "passed" : "failed:");
        esc(b, jstr(x, "error"));
        snprintf(num, sizeof(num), "%.1f ms", json_number_value(json_object_get(x, "latency_ms")));
        BUF_LIT(b, "</td><td>");
        esc(b, num);
        BUF_LIT(b, "</td><td>");
        esc(b, jstr(x, "passport"));
        BUF_LIT(b, "</td></tr>\n");
    }
    BUF_LIT(b, "</table>\n<p>From the locked-down process, hosts outside the peer list:</p>\n");
    attempts_table(b, json_object_get(gwj, "outside_the_peer_list"));

    /* the ledger */
    x = json_object_get(r, "ledger");
    BUF_LIT(b, "<h2 id=\"ledger\">Audit ledger</h2>\n<table>\n");
    kv(b, "audit verify", jstr(x, "verify"));
    kv(b, "ledger's last air-gap statement", jstr(x, "last_lockdown_statement"));
    kv(b, "same as this config's",
       json_is_true(json_object_get(x, "lockdown_matches_this_config")) ? "yes" : "no");
    BUF_LIT(b, "</table>\n<pre>");
    esc(b, jstr(x, "report"));
    BUF_LIT(b, "</pre>\n<p>Signed head:</p>\n<pre>");
    esc(b, jstr(x, "signed_head"));
    BUF_LIT(b, "</pre>\n<p>This page is a rendering of vet.json (sha256 <code>");
    esc(b, sha);
    BUF_LIT(b, "</code>), signed by the node key in vet.dsse.json. "
               "Check it with <code>citadel vet verify --dir DIR --key NODE.vkey</code>.</p>\n"
               "</body></html>\n");
    return b->p ? 0 : CIT_ENOMEM;
}

/* ---- vet ---- */

static json_t *air_gap(const struct guard_spec *gs, json_t *attempts, const struct cit_buf *st,
                       const char *hash, const struct cit_buf *log)
{
    size_t i;
    json_t *a, *mine = json_array();
    int open = 0, complete = st->p && strstr(st->p, "\nmissing nothing\n");
    json_array_foreach(attempts, i, a)
    {
        if (strcmp(jstr(a, "check"), "air_gap")) continue;
        json_array_append(mine, a);
        open += !json_is_true(json_object_get(a, "blocked"));
    }
    return json_pack("{s:s,s:s,s:o,s:{s:s,s:s,s:s},s:s,s:o}", "verdict",
                     open ? "fail" : complete ? "pass" : "warn", "summary",
                     open       ? "a way out was not blocked"
                     : complete ? "every attempt to get out failed, and the lockdown is complete"
                         : "every attempt failed, but the lockdown is partial (see missing)",
                     "attempts", mine, "lockdown", "mode", gs->best_effort ? "best-effort" : "required",
                     "statement_sha256", hash, "statement", st->p ? st->p : "", "log",
                     log->p ? log->p : "", "host", host_network());
}

static const char *worst(json_t *checks)
{
    const char *w = "pass", *k;
    json_t *c;
    json_object_foreach(checks, k, c)
    {
        const char *v = jstr(c, "verdict");
        if (!strcmp(v, "fail")) return "fail";
        if (!strcmp(v, "warn")) w = "warn";
    }
    return w;
}

static int write_out(const char *dir, const char *name, const void *p, size_t n,
                     struct cit_err *err)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return cit_write_file(path, p, n, 0644, err);
}

static int sign_envelope(const char *payload, size_t len, const struct ledger_skey *k,
                         struct cit_buf *out)
{
    struct cit_buf pae = {0}, vk = {0};
    unsigned char sig[crypto_sign_BYTES];
    size_t b64 = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
    char *p64 = cit_malloc(b64), s64[sodium_base64_ENCODED_LEN(crypto_sign_BYTES,
                                                                sodium_base64_VARIANT_ORIGINAL)];
    json_t *env;
    char *text;
    int rc = CIT_ENOMEM;
    if (!p64 || brd_pae(VET_TYPE, payload, len, &pae)) goto out;
    crypto_sign_detached(sig, NULL, (const unsigned char *)pae.p, pae.len, k->sk);
    sodium_bin2base64(p64, b64, (const unsigned char *)payload, len, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(s64, sizeof(s64), sig, sizeof(sig), sodium_base64_VARIANT_ORIGINAL);
    ledger_vkey_format(&k->vk, &vk);
    env = json_pack("{s:s,s:s,s:[{s:s,s:s}]}", "payloadType", VET_TYPE, "payload", p64,
                    "signatures", "keyid", vk.p ? vk.p : "", "sig", s64);
    if (env && (text = json_dumps(env, JSON_INDENT(2) | JSON_SORT_KEYS))) {
        rc = cit_buf_add(out, text, strlen(text)) || BUF_LIT(out, "\n") ? CIT_ENOMEM : 0;
        free(text);
    }
    json_decref(env);
out:
    cit_free(p64);
    cit_buf_free(&pae);
    cit_buf_free(&vk);
    return rc;
}

static int vet_run(int argc, char **argv)
{
    struct cli_node_args na = {0};
    struct http_opts o;
    struct pol_policy *pol = NULL;
    struct guard_spec *gs = cit_calloc(1, sizeof(*gs));
    struct node *n = NULL;
    struct ledger_skey key;
    struct cit_err err = {{0}};
    struct cit_buf st = {0}, clog = {0}, json = {0}, env = {0}, html = {0};
    const char *outdir = ".", *powercap = "/sys/class/powercap", *models[NODE_MAX_MODELS];
    char hash[65] = "", now[32], kp[1100], vp[1100], sha[65];
    uint8_t h[32];
    long tokens = 32;
    const char *sets[32][2];
    int n_models = 0, n_sets = 0, have_key = 0, status = 1;
    json_t *attempts = json_array(), *report = NULL, *checks, *models_json = NULL, *prof;
    char *text = NULL;
    struct cit_buf vk = {0};

    if (!gs) return 1;
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "citadel vet: %s needs a value\n", f);
            goto usage;
        }
        i++;
        if (cli_node_flag(&na, f, v)) continue;
        if (!strcmp(f, "--model") && n_models < NODE_MAX_MODELS) models[n_models++] = v;
        else if (!strcmp(f, "--out")) outdir = v;
        else if (!strcmp(f, "--powercap")) powercap = v;
        else if (!strcmp(f, "--energy-tokens")) {
            if (cli_parse_int(v, 0, 4096, &tokens)) {
                fprintf(stderr, "citadel vet: --energy-tokens: 0 to 4096\n");
                goto usage;
            }
        } else if (!strncmp(f, "--", 2) && n_sets < 32) {
            sets[n_sets][0] = f, sets[n_sets++][1] = v; /* one of serve's: --port 8081 */
        } else {
            fprintf(stderr, "citadel vet: unknown option '%s'\n", f);
            goto usage;
        }
    }
    if (cli_node_opts(&na, &o, &err)) goto fail;
    for (int i = 0; i < n_sets; i++) {
        char name[64];
        cli_flag_key(sets[i][0], name, sizeof(name));
        if (http_opts_set(&o, name, sets[i][1], &err)) {
            char m[sizeof(err.msg)];
            snprintf(m, sizeof(m), "%s", err.msg);
            cit_err_set(&err, CIT_EINVAL, "flag %s: %s", sets[i][0], m);
            goto fail;
        }
    }
    if (n_models) o.node.n_models = 0;
    for (int i = 0; i < n_models; i++)
        if (http_opts_set(&o, "model", models[i], &err)) goto fail;
    if (!o.node.policy[0]) {
        cit_err_set(&err, CIT_EINVAL, "no policy: set 'policy = FILE' or give --policy");
        goto fail;
    }
    if (pol_load(o.node.policy, &pol, &err)) goto fail;
    /* 1: the air gap, from a child under serve's own lockdown */
    if (cli_serve_spec(na.config ? na.config : "citadel.conf", &o, pol, gs, &err) ||
        air_gap_child(gs, attempts, &st, hash, &clog, &err))
        goto fail;
    /* the node's parts, read as they are (a running serve keeps writing) */
    if (node_open(&o.node, NODE_POLICY | NODE_STATE, &n, &err)) goto fail;
    snprintf(kp, sizeof(kp), "%s/node.key", o.node.ledger);
    snprintf(vp, sizeof(vp), "%s/node.vkey", o.node.ledger);
    if (ledger_key_load(kp, NULL, NULL, &key, &err)) {
        fprintf(stderr, "citadel vet: the node key: %s (the report needs it to be signed)\n",
                err.msg);
        goto fail;
    }
    have_key = 1;
    ledger_vkey_format(&key.vk, &vk);
    utc_now(now);
    checks = json_object();
    json_object_set_new(checks, "air_gap", air_gap(gs, attempts, &st, hash, &clog));
    json_object_set_new(checks, "energy", energy(pol, &o, powercap, (int)tokens));
    json_object_set_new(checks, "training_set", training_and_models(n, pol, &o, &models_json));
    json_object_set_new(checks, "gateway", gateway(pol, &key, have_key, attempts));
    prof = pol->profile.present
               ? json_pack("{s:s,s:s,s:s,s:s}", "id", pol->profile.id, "name", pol->profile.name,
                           "file", pol->profile.file, "notice",
                           pol->profile.notice ? pol->profile.notice : "")
               : json_null();
    report = json_pack("{s:s,s:i,s:s,s:{s:s,s:s},s:{s:s,s:s,s:s,s:{s:s,s:s},s:o},s:s,s:o,s:o,s:o}",
                       "report", "citadel vet", "format", 1, "generated", now, "citadel",
                       "version", CITADEL_VERSION, "build", eng_kernels_built(), "node", "id",
                       pol->node_id, "jurisdiction", pol->jurisdiction, "identity",
                       vk.p ? vk.p : "", "policy", "file", o.node.policy, "sha256", pol->hash_hex,
                       "profile", prof, "verdict", worst(checks), "checks", checks, "models",
                       models_json ? models_json : json_array(), "ledger",
                       ledger_part(o.node.ledger, vk.p ? vk.p : "", hash));
    if (!report || !(text = json_dumps(report, JSON_INDENT(2) | JSON_SORT_KEYS))) {
        cit_err_set(&err, CIT_ENOMEM, "out of memory");
        goto fail;
    }
    cit_buf_add(&json, text, strlen(text));
    BUF_LIT(&json, "\n");
    crypto_hash_sha256(h, (const unsigned char *)json.p, json.len);
    sodium_bin2hex(sha, sizeof(sha), h, sizeof(h));
    if (sign_envelope(json.p, json.len, &key, &env) || render_html(report, sha, &html)) {
        cit_err_set(&err, CIT_ENOMEM, "out of memory");
        goto fail;
    }
    if (mkdir(outdir, 0755) && errno != EEXIST) {
        cit_err_set(&err, CIT_EIO, "%s: %s", outdir, strerror(errno));
        goto fail;
    }
    /* the envelope last: a report is signed only once it is all there */
    if (write_out(outdir, "vet.json", json.p, json.len, &err) ||
        write_out(outdir, "vet.html", html.p, html.len, &err) ||
        write_out(outdir, "vet.dsse.json", env.p, env.len, &err))
        goto fail;
    {
        json_t *c = json_object_get(report, "checks");
        printf("citadel vet: %s\n  air gap       %s\n  energy        %s\n  training set  %s\n"
               "  gateway       %s\nwrote %s/vet.json, %s/vet.html, %s/vet.dsse.json "
               "(report sha256 %s)\n",
               jstr(report, "verdict"), jstr(json_object_get(c, "air_gap"), "verdict"),
               jstr(json_object_get(c, "energy"), "verdict"),
               jstr(json_object_get(c, "training_set"), "verdict"),
               jstr(json_object_get(c, "gateway"), "verdict"), outdir, outdir, outdir, sha);
    }
    status = strcmp(jstr(report, "verdict"), "fail") ? 0 : 1;
    goto out;
usage:
    cli_usage_vet(stderr);
    status = 2;
    goto out;
fail:
    fprintf(stderr, "citadel vet: %s\n", err.msg);
    status = 1;
out:
    (void)vp;
    if (have_key) sodium_memzero(&key, sizeof(key));
    free(text);
    json_decref(report);
    json_decref(attempts);
    node_close(n);
    pol_free(pol);
    cit_free(gs);
    cit_buf_free(&st);
    cit_buf_free(&clog);
    cit_buf_free(&json);
    cit_buf_free(&env);
    cit_buf_free(&html);
    cit_buf_free(&vk);
    return status;
}

/* ---- vet verify ---- */

static int vet_verify(int argc, char **argv)
{
    const char *dir = ".", *keyarg = NULL;
    struct cli_node_args na = {0};
    struct cit_buf j = {0}, e = {0}, h = {0}, pae = {0}, kt = {0};
    struct cit_err err = {{0}};
    struct ledger_vkey vk;
    char p[4200], sha[65];
    uint8_t hb[32];
    unsigned char *payload = NULL, sig[crypto_sign_BYTES];
    size_t plen = 0, slen = 0;
    json_t *env = NULL, *s0;
    const char *b64, *s64, *keyid = "", *src = "";
    char vkp[4200] = "";
    int self_signed = 0;
    int rc = 1;
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v && strcmp(f, "--self-signed")) {
            fprintf(stderr, "citadel vet verify: %s needs a value\n", f);
            return 2;
        }
        i++;
        if (!strcmp(f, "--self-signed")) {
            self_signed = 1;
            i--;
            continue;
        }
        if (!strcmp(f, "--dir")) dir = v;
        else if (!strcmp(f, "--key")) keyarg = v;
        else if (!cli_node_flag(&na, f, v)) {
            fprintf(stderr, "citadel vet verify: unknown option '%s'\n", f);
            return 2;
        }
    }
#define FAILV(...)                                                                                 \
    do {                                                                                           \
        fprintf(stderr, "citadel vet verify: FAILED: " __VA_ARGS__);                               \
        fputc('\n', stderr);                                                                       \
        goto out;                                                                                  \
    } while (0)
    snprintf(p, sizeof(p), "%s/vet.json", dir);
    if (cit_read_file(p, MAX_REPORT, &j, &err)) FAILV("%s: %s", p, err.msg[0] ? err.msg : "missing");
    snprintf(p, sizeof(p), "%s/vet.dsse.json", dir);
    if (cit_read_file(p, MAX_REPORT * 2, &e, &err)) FAILV("%s: %s", p, err.msg[0] ? err.msg : "missing");
    if (!(env = json_loadb(e.p, e.len, 0, NULL))) FAILV("%s: not JSON", p);
    if (strcmp(jstr(env, "payloadType"), VET_TYPE))
        FAILV("%s: payloadType is not %s", p, VET_TYPE);
    b64 = jstr(env, "payload");
    s0 = json_array_get(json_object_get(env, "signatures"), 0);
    s64 = jstr(s0, "sig");
    keyid = jstr(s0, "keyid");
    if (json_array_size(json_object_get(env, "signatures")) != 1)
        FAILV("%s: the envelope must hold one signature", p);
    if (!(payload = cit_malloc(strlen(b64) + 1)) ||
        sodium_base642bin(payload, strlen(b64) + 1, b64, strlen(b64), NULL, &plen, NULL,
                          sodium_base64_VARIANT_ORIGINAL) ||
        sodium_base642bin(sig, sizeof(sig), s64, strlen(s64), NULL, &slen, NULL,
                          sodium_base64_VARIANT_ORIGINAL) ||
        slen != sizeof(sig))
        FAILV("%s: the payload or the signature is not base64", p);
    if (plen != j.len || memcmp(payload, j.p, plen))
        FAILV("%s/vet.json is not the report the envelope signs (it was changed)", dir);
    /* who signed: the auditor's key, else the node's own, else the report's */
    if (keyarg) {
        if (cli_read_vkey(keyarg, &vk, &err)) FAILV("--key %s", err.msg);
        src = "the key given";
    } else {
        struct http_opts o;
        if (!cli_node_opts(&na, &o, &err)) {
            snprintf(vkp, sizeof(vkp), "%s/node.vkey", o.node.ledger);
            if (!access(vkp, R_OK) && !cli_read_vkey(vkp, &vk, &err)) src = vkp;
        }
        if (!src[0] && !access(vkp, F_OK))
            FAILV("%s: %s", vkp, err.msg[0] ? err.msg : "unreadable");
        if (!src[0]) {
            /* a report's own key proves only that it was not changed since */
            if (!self_signed)
                FAILV("no key to check who signed it: give --key NODE.vkey (or the node's "
                      "--ledger), or --self-signed to check its integrity only");
            if (ledger_vkey_parse(keyid, strlen(keyid), &vk, &err)) FAILV("keyid: %s", err.msg);
            src = "the key the envelope names: integrity only, not who signed";
        }
    }
    if (brd_pae(VET_TYPE, payload, plen, &pae) ||
        crypto_sign_verify_detached(sig, (const unsigned char *)pae.p, pae.len, vk.pk))
        FAILV("the signature does not verify with %s", src);
    crypto_hash_sha256(hb, (const unsigned char *)j.p, j.len);
    sodium_bin2hex(sha, sizeof(sha), hb, sizeof(hb));
    snprintf(p, sizeof(p), "%s/vet.html", dir);
    if (cit_read_file(p, MAX_REPORT * 4, &h, &err)) FAILV("%s", err.msg[0] ? err.msg : "missing");
    {
        /* the page is a pure function of the report: rendered again, it
         * must be the same bytes */
        json_t *r = json_loadb(j.p, j.len, 0, NULL);
        struct cit_buf again = {0};
        int same = r && !render_html(r, sha, &again) && again.len == h.len &&
                   !memcmp(again.p, h.p, h.len);
        json_decref(r);
        cit_buf_free(&again);
        if (!same) FAILV("%s is not the rendering of vet.json (sha256 %s)", p, sha);
    }
    ledger_vkey_format(&vk, &kt);
    printf("citadel vet verify: OK: vet.json (sha256 %s) signed by %s (%s); vet.html is its "
           "rendering\n",
           sha, kt.p ? kt.p : "", src);
    rc = 0;
#undef FAILV
out:
    json_decref(env);
    cit_free(payload);
    cit_buf_free(&j);
    cit_buf_free(&e);
    cit_buf_free(&h);
    cit_buf_free(&pae);
    cit_buf_free(&kt);
    return rc;
}

int cli_vet(int argc, char **argv)
{
    if (argc >= 1 && !strcmp(argv[0], "verify")) return vet_verify(argc - 1, argv + 1);
    return vet_run(argc, argv);
}
