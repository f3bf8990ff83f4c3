/*
 * Connections: the lobby that accepts them and holds each until its first
 * request head is in, the budgets that keep slots for clients with keys,
 * the watchdog's deadlines, and the answers for what libmicrohttpd would
 * otherwise answer with an HTML page or not at all.
 *
 * Why a lobby in front of MHD. MHD gives each connection a thread from
 * accept on, answers a request line that is not HTTP/1.x with its own HTML
 * page before any callback of ours runs, and cannot tell a client that
 * sends nothing from one that is about to. The lobby (one thread, epoll)
 * accepts on the listening socket itself and peeks (MSG_PEEK, so that MHD
 * later reads the same bytes) until the head is complete; only then is
 * the connection handed to MHD (MHD_add_connection). A slow or silent
 * client costs an entry in a list, not a thread; a bad request line gets
 * a JSON 400, 414 or 505, a head over the limit a JSON 431, a head not in
 * within header_timeout a JSON 408. Over TLS the bytes are ciphertext:
 * connections go to MHD at once and only the budgets and deadlines apply.
 *
 * Budgets, applied when a connection is accepted:
 *   - max_connections, all of them, held or served;
 *   - max_per_ip, from one address: one more is closed at once;
 *   - max_unauthenticated, connections no valid key came on yet that keep
 *     us waiting (still sending their head, or idle after keyless requests
 *     such as health probes; one being answered counts under the other two
 *     limits only, so slow readers cannot make this one refuse everyone).
 *     One more evicts the one of them that has waited
 *     longest, with a JSON 503 if it was mid-head. An attacker holding
 *     slow sockets so loses the oldest to every new client, a probe's head
 *     arrives long before it is the oldest, and the slots above the budget
 *     stay for clients with keys. A key, once valid on a connection, makes
 *     it count as authenticated for its life: keys are accountable, and
 *     their tenants have quotas.
 *
 * Deadlines (checked by the lobby's thread every 10-100 ms): a head past
 * header_timeout (counted from accept, or on a keep-alive connection from
 * its request line) and a body past body_timeout get a JSON 408 written on
 * the socket, which is then shut down; a keep-alive connection idle past
 * idle_timeout is closed without a word, as nothing was asked. The
 * watchdog writes only while no answer is queued (respond() says when one
 * is), so its bytes never mix with MHD's.
 *
 * MHD's own error answers on a connection it serves (a malformed header
 * line, a chunked body that is not, a keep-alive request line that is not
 * HTTP/1.x) are announced in its error log, on the connection's thread,
 * just before it queues them: the log hook writes the JSON answer there
 * and shuts the socket for writing, so that MHD's page goes nowhere. That
 * hook knows the message of libmicrohttpd 0.9.x ("Error processing request
 * (HTTP response code is %u ('%s'))"); a library that words it otherwise
 * sends its own pages again, which tests/test_http.c would show.
 *
 * Lock order: w_mu, then cfg_mu or the metrics' lock.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "http_int.h"

#define NS               1000000000ull
#define PEEK_EVERY_NS    (10ull * 1000000ull) /* a trickled head is looked at this often at most */
#define LINGER_NS        (2ull * NS)          /* an answered client's time to read it and close */
#define LINGER_MAX       (1u << 20)           /* bytes read and dropped while lingering */
#define PENDING_NS       (5ull * NS)          /* MHD refused what it did not start by then */
#define HOLD_MAX         (64u << 10)          /* the most of a head held: the socket buffer */
#define RECHECK_NS       (60ull * NS)         /* the loaded models' admissions (expiry) */
#define ACCEPT_BATCH     16                   /* between looks at the held: see lobby_main */
#define HANDOVER_BATCH   64
#define ACCEPT_PAUSE_NS  (100ull * 1000000ull) /* out of descriptors: try again after */
#define HANDOVER_GRACE_S 10                    /* a complete head's time to be started by MHD */

/* The connection this MHD thread serves (one thread per connection): set
 * when a request line arrives, read by the log hook. */
static _Thread_local struct conn_watch *tl_cw;

static uint64_t after(uint64_t now, int secs)
{
    return secs > 0 ? now + (uint64_t)secs * NS : 0;
}

static const char *reason(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}

/* A whole error answer in the OpenAI shape, written on a socket that
 * nobody else writes to now, asking the client to close. Best effort: the
 * socket is non-blocking and the answer small; nothing waits for a client
 * that does not read. */
static void raw_answer(int fd, int status, const char *code, const char *msg)
{
    struct cit_buf body = {0}, out = {0};
    char date[64];
    time_t t = time(NULL);
    struct tm tm;
    ssize_t k;
    /* 505 is the client's to fix, like the other 4xx here */
    api_error_simple(&body,
                     status >= 500 && status != 505 ? "server_error" : "invalid_request_error",
                     code, NULL, msg);
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    cit_buf_printf(&out,
                   "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
                   status, reason(status), date, body.len,
                   status == 503 ? "Retry-After: 1\r\n" : "");
    if (body.p && out.p && !cit_buf_add(&out, body.p, body.len)) {
        k = send(fd, out.p, out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)k;
    }
    cit_buf_free(&body);
    cit_buf_free(&out);
}

/* ---- the list (w_mu held) ---- */

static void link_cw(struct http_server *s, struct conn_watch *cw)
{
    cw->prev = NULL;
    cw->next = s->conns;
    if (s->conns) s->conns->prev = cw;
    s->conns = cw;
}

static void unlink_cw(struct http_server *s, struct conn_watch *cw)
{
    if (cw->prev)
        cw->prev->next = cw->next;
    else
        s->conns = cw->next;
    if (cw->next) cw->next->prev = cw->prev;
}

static int lobby_owns(const struct conn_watch *cw)
{
    return cw->phase == CONN_HELD || cw->phase == CONN_LINGER;
}

/* Waiting on the client, not on us: held, mid-head or idle, keyless. */
static int evictable(const struct conn_watch *cw)
{
    return !cw->dropped && !cw->authed &&
           (cw->phase == CONN_HELD || cw->phase == CONN_HEAD || cw->phase == CONN_IDLE);
}

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) return 0;
    if (a->ss_family == AF_INET)
        return !memcmp(&((const struct sockaddr_in *)a)->sin_addr,
                       &((const struct sockaddr_in *)b)->sin_addr, sizeof(struct in_addr));
    if (a->ss_family == AF_INET6) {
        const struct in6_addr *x = &((const struct sockaddr_in6 *)a)->sin6_addr,
                              *y = &((const struct sockaddr_in6 *)b)->sin6_addr;
        /* one host has a /64 to pick addresses from: the prefix is the client
         * (an IPv4 address mapped into IPv6 is compared whole) */
        if (IN6_IS_ADDR_V4MAPPED(x) || IN6_IS_ADDR_V4MAPPED(y)) return !memcmp(x, y, sizeof(*x));
        return !memcmp(x, y, 8);
    }
    return 0;
}

/* A lobby connection is done. What the client sent is read first, so that
 * the close is a FIN and not a reset that could destroy the answer on its
 * way. */
static void lobby_close(struct http_server *s, struct conn_watch *cw)
{
    char buf[4096];
    for (int i = 0; i < 16 && recv(cw->fd, buf, sizeof(buf), MSG_DONTWAIT) > 0; i++) continue;
    close(cw->fd); /* and out of the epoll set */
    unlink_cw(s, cw);
    cit_free(cw);
}

/* Answers a held connection, then lingers: shut for writing, reading what
 * the client still sends, until it closes or LINGER_NS pass. Logged at
 * debug level only: a flood must not flood the log. */
static void lobby_answer(struct http_server *s, struct conn_watch *cw, int status, const char *code,
                         const char *msg, uint64_t now)
{
    char who[INET6_ADDRSTRLEN] = "?";
    if (cw->addr.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&cw->addr)->sin_addr, who, sizeof(who));
    else if (cw->addr.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&cw->addr)->sin6_addr, who, sizeof(who));
    cit_log(CIT_LOG_DEBUG, "connection from %s answered %d %s before its request reached MHD", who,
            status, code);
    raw_answer(cw->fd, status, code, msg);
    shutdown(cw->fd, SHUT_WR);
    cw->phase = CONN_LINGER;
    cw->since_ns = now;
    cw->deadline_ns = now + LINGER_NS;
    cw->ready = 1;
    met_request(&s->met, EP_OTHER, status);
}

static void linger_read(struct http_server *s, struct conn_watch *cw, uint64_t now)
{
    char buf[4096];
    ssize_t k = -1;
    cw->ready = 0;
    while (cw->drained < LINGER_MAX && (k = recv(cw->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
        cw->drained += (size_t)k;
    if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK) || cw->drained >= LINGER_MAX ||
        now > cw->deadline_ns) {
        close(cw->fd);
        unlink_cw(s, cw);
        cit_free(cw);
    }
}

/* Makes room for a newer client: the evictee's slot is free at once. */
static void evict(struct http_server *s, struct conn_watch *cw)
{
    static const char msg[] = "The server is at its limit of connections from clients without "
                              "an API key; this one waited longest for its request. Retry.";
    met_count(&s->met, &s->met.conn_evicted);
    if (cw->phase == CONN_HELD) {
        raw_answer(cw->fd, 503, "too_many_connections", msg);
        met_request(&s->met, EP_OTHER, 503);
        lobby_close(s, cw);
        return;
    }
    if (cw->phase == CONN_HEAD && !s->tls && !cw->answering) {
        raw_answer(cw->fd, 503, "too_many_connections", msg);
        cw->status = 503;
    }
    shutdown(cw->fd, SHUT_RDWR); /* MHD closes it */
    cw->dropped = 1;
}

static struct conn_watch *oldest(struct http_server *s, int (*pick)(const struct conn_watch *))
{
    struct conn_watch *best = NULL;
    for (struct conn_watch *cw = s->conns; cw; cw = cw->next)
        if (pick(cw) && (!best || cw->since_ns < best->since_ns)) best = cw;
    return best;
}

static int lingering(const struct conn_watch *cw)
{
    return cw->phase == CONN_LINGER;
}

/* ---- the request head, as the lobby sees it ---- */

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static enum head_verdict bad(struct head_bad *b, int status, const char *code, const char *msg)
{
    b->status = status;
    b->code = code;
    b->msg = msg;
    return HEAD_BAD;
}

/* The request line is checked as soon as it is in (and its method as it
 * arrives, so that TLS or garbage on the plain port is answered at once);
 * the rest of the head is MHD's to parse: the lobby only finds its end. */
enum head_verdict conn_head_check(const char *p, size_t n, int full, int pass, struct head_bad *b)
{
    size_t i = 0, m, t, len;
    const char *line, *nl, *v;
    while (i < n && i < 8 && (p[i] == '\r' || p[i] == '\n')) i++; /* empty lines before it */
    line = p + i;
    nl = memchr(line, '\n', n - i);
    len = nl ? (size_t)(nl - line) : n - i;
    for (m = 0; m < len && is_tchar((unsigned char)line[m]); m++) continue;
    if (m > 32 || (m < len && (m == 0 || line[m] != ' ')))
        return bad(b, 400, "malformed_request",
                   "The request line is not HTTP: expected 'METHOD /path HTTP/1.1'.");
    if (!nl) {
        if (!full) return HEAD_WAIT;
        if (m && m < len && !memchr(line + m + 1, ' ', len - m - 1))
            return bad(b, 414, "uri_too_long",
                       "The request URI is longer than the server accepts.");
        return bad(b, 400, "malformed_request", "The request line does not end.");
    }
    if (len && line[len - 1] == '\r') len--;
    for (t = m + 1; t < len && line[t] != ' ' && (unsigned char)line[t] > 0x20 && line[t] != 0x7f;
         t++)
        continue;
    if (m == len || t == m + 1 || t >= len || line[t] != ' ')
        return bad(b, 400, "malformed_request",
                   "The request line is not HTTP: expected 'METHOD /path HTTP/1.1'.");
    v = line + t + 1;
    if (len - t - 1 != 8 || memcmp(v, "HTTP/", 5) || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9')
        return bad(b, 400, "malformed_request",
                   "The request line does not end in an HTTP version such as HTTP/1.1.");
    if (v[5] != '1')
        return bad(b, 505, "http_version_not_supported",
                   "This server speaks HTTP/1.1 (and 1.0) only.");
    /* the head ends at its first empty line (bare LF line ends are accepted, as MHD does) */
    for (const char *q = nl; q < p + n - 1; q++) {
        q = memchr(q, '\n', (size_t)(p + n - 1 - q));
        if (!q) break;
        if (q[1] == '\n' || (q[1] == '\r' && q + 2 < p + n && q[2] == '\n')) return HEAD_READY;
    }
    if (!full) return HEAD_WAIT;
    if (pass) return HEAD_PASS;
    return bad(b, 431, "headers_too_large", "The request header fields are too large.");
}

/* ---- the lobby's thread ---- */

struct handover {
    struct conn_watch *cw;
    int fd;
    struct sockaddr_storage addr;
    socklen_t addrlen;
};

static void to_mhd(struct conn_watch *cw, int verified, uint64_t now, struct handover *h, int *nh)
{
    cw->phase = CONN_PENDING;
    cw->verified = verified;
    cw->since_ns = now;
    /* its head is in: what remains is MHD's start, not the client's */
    cw->deadline_ns = after(now, HANDOVER_GRACE_S);
    h[*nh].cw = cw;
    h[*nh].fd = cw->fd;
    h[*nh].addr = cw->addr;
    h[*nh].addrlen = cw->addrlen;
    (*nh)++;
}

/* Looks at what a held connection sent so far. Returns 1 when cw was
 * closed and freed. */
static int lobby_look(struct http_server *s, struct conn_watch *cw, uint64_t now,
                      struct handover *h, int *nh)
{
    int avail = 0, pass;
    ssize_t k;
    struct head_bad b = {0};
    enum head_verdict v;
    cw->ready = 0;
    cw->last_peek_ns = now;
    if (ioctl(cw->fd, FIONREAD, &avail) < 0) avail = 0;
    if (avail <= 0) {
        if (!cw->hup) return 0;
        lobby_close(s, cw); /* left without a word */
        return 1;
    }
    if ((size_t)avail == cw->seen && !cw->hup) return 0; /* nothing new since the last look */
    cw->seen = (size_t)avail;
    k = recv(cw->fd, s->peek, (size_t)avail < s->hold_cap ? (size_t)avail : s->hold_cap,
             MSG_PEEK | MSG_DONTWAIT);
    if (k <= 0) {
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        lobby_close(s, cw);
        return 1;
    }
    pthread_mutex_lock(&s->cfg_mu);
    pass = s->o.lim.max_header_bytes + 1024 > s->hold_cap;
    pthread_mutex_unlock(&s->cfg_mu);
    switch ((v = conn_head_check(s->peek, (size_t)k, (size_t)k >= s->hold_cap, pass, &b))) {
    case HEAD_WAIT:
        if (cw->hup)
            lobby_answer(s, cw, 400, "malformed_request",
                         "The connection was shut before the request head was complete.", now);
        return 0;
    case HEAD_READY:
    case HEAD_PASS:
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, cw->fd, NULL);
        to_mhd(cw, v == HEAD_READY, now, h, nh);
        return 0;
    case HEAD_BAD:
        lobby_answer(s, cw, b.status, b.code, b.msg, now);
        return 0;
    }
    return 0;
}

/* A new connection: the limits, then the lobby (or MHD at once over TLS). */
static void admit(struct http_server *s, int fd, const struct sockaddr_storage *addr,
                  socklen_t addrlen, uint64_t now, struct handover *h, int *nh)
{
    struct conn_watch *cw, *next;
    int total = 0, unauth = 0, same = 0, max, per_ip, budget, head_s;
    pthread_mutex_lock(&s->cfg_mu);
    max = s->o.max_connections;
    per_ip = s->o.max_per_ip;
    budget = s->o.max_unauth;
    head_s = s->o.lim.header_timeout_s;
    pthread_mutex_unlock(&s->cfg_mu);
    for (cw = s->conns; cw; cw = next) {
        next = cw->next;
        if (cw->phase == CONN_PENDING && cw->fd == fd) { /* the number was reused: MHD closed it */
            unlink_cw(s, cw);
            cit_free(cw);
            continue;
        }
        if (cw->dropped) continue;
        total++;
        /* the budget is for keyless clients that keep us waiting; one we are
         * answering is bounded by max_connections and max_per_ip, or a few
         * slow readers could make the budget refuse everyone */
        unauth += evictable(cw);
        same += same_addr(&cw->addr, addr);
    }
    if (per_ip > 0 && same >= per_ip) goto refuse;
    if (budget > 0 && unauth >= budget) {
        if (!(cw = oldest(s, evictable))) goto refuse;
        evict(s, cw);
        total--;
    }
    if (total >= max) {
        if (!(cw = oldest(s, lingering)) && !(cw = oldest(s, evictable))) goto refuse;
        if (cw->phase == CONN_LINGER) {
            close(cw->fd);
            unlink_cw(s, cw);
            cit_free(cw);
        } else {
            evict(s, cw);
        }
    }
    if (!(cw = cit_calloc(1, sizeof(*cw)))) goto refuse;
    cw->fd = fd;
    cw->addr = *addr;
    cw->addrlen = addrlen;
    cw->since_ns = now;
    cw->deadline_ns = after(now, head_s);
    link_cw(s, cw);
    if (s->tls) {
        to_mhd(cw, 0, now, h, nh);
        return;
    }
    cw->phase = CONN_HELD;
    cw->ready = cw->fresh = 1; /* the head may be in already */
    {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = cw};
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev)) {
            unlink_cw(s, cw);
            cit_free(cw);
            goto refuse;
        }
    }
    return;
refuse: /* at once and without a word: a flood must cost us as little as possible */
    met_count(&s->met, &s->met.conn_refused);
    close(fd);
}

/* Returns how many were accepted (the listening socket is level-triggered:
 * the rest come with the next wake-up). */
static int accept_some(struct http_server *s, uint64_t now, struct handover *h, int *nh)
{
    int i;
    for (i = 0; i < ACCEPT_BATCH && *nh < HANDOVER_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(s->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED) {
                /* the connection stays in the backlog and the socket stays
                 * readable: pause, or the loop would spin */
                epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->listen_fd, NULL);
                s->accept_paused_ns = now + ACCEPT_PAUSE_NS;
                if (now - s->emfile_logged_ns > 10 * NS || !s->emfile_logged_ns) {
                    s->emfile_logged_ns = now;
                    cit_log(CIT_LOG_WARN, "accept: %s%s", strerror(errno),
                            errno == EMFILE || errno == ENFILE
                                ? "; raise the limit (ulimit -n) or lower max_connections"
                                : "; pausing accepts for 100 ms");
                }
            }
            break;
        }
        admit(s, fd, &ss, sl, now, h, nh);
    }
    return i;
}

/* Deadlines of the connections MHD serves. */
static void watch(struct http_server *s, struct conn_watch *cw, uint64_t now)
{
    if (!cw->deadline_ns || now <= cw->deadline_ns || cw->dropped || cw->fd < 0) return;
    if (cw->phase != CONN_IDLE) {
        if (!cw->answering && !s->tls) {
            raw_answer(cw->fd, 408, "request_timeout",
                       cw->phase == CONN_HEAD || !cw->verified
                           ? "The request head did not arrive in time."
                           : "The request did not arrive in time.");
            cw->status = 408;
        }
        met_count(&s->met, &s->met.dropped_slow);
    }
    shutdown(cw->fd, SHUT_RDWR); /* MHD's poll wakes up and closes it */
    cw->dropped = 1;
}

static void quiesce(struct http_server *s, uint64_t now)
{
    struct conn_watch *cw, *next;
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->listen_fd, NULL);
    close(s->listen_fd);
    s->listen_fd = -1;
    for (cw = s->conns; cw; cw = next) {
        next = cw->next;
        if (cw->phase == CONN_HELD) {
            raw_answer(cw->fd, 503, "shutting_down", "The server is shutting down.");
            met_request(&s->met, EP_OTHER, 503);
            lobby_close(s, cw);
        } else if (cw->phase == CONN_LINGER) {
            linger_read(s, cw, now + LINGER_NS + 1);
        }
    }
    s->lobby_quiesced = 1;
    pthread_cond_broadcast(&s->w_cv);
}

/* The held connections' new bytes, deadlines; fresh: only those just accepted. */
static int lobby_pass(struct http_server *s, uint64_t now, int fresh, struct handover *h, int *nh)
{
    struct conn_watch *cw, *next;
    int busy = 0;
    for (cw = s->conns; cw; cw = next) {
        next = cw->next;
        if (fresh && !cw->fresh) continue;
        cw->fresh = 0;
        switch (cw->phase) {
        case CONN_HELD:
            if (cw->ready && *nh < HANDOVER_BATCH) {
                /* a look copies the whole head so far: the more is held, the
                 * rarer the looks, so a trickle costs linear, not quadratic */
                if (now - cw->last_peek_ns < PEEK_EVERY_NS * (1 + cw->seen / 4096))
                    busy = 1;
                else if (lobby_look(s, cw, now, h, nh))
                    break; /* closed */
            }
            if (cw->phase == CONN_HELD && cw->deadline_ns && now > cw->deadline_ns) {
                met_count(&s->met, &s->met.dropped_slow);
                lobby_answer(s, cw, 408, "request_timeout",
                             "The request head did not arrive in time.", now);
            }
            break;
        case CONN_LINGER:
            if (cw->ready || now > cw->deadline_ns) linger_read(s, cw, now);
            break;
        case CONN_PENDING:
            if (now - cw->since_ns > PENDING_NS) { /* MHD refused it (and closed it) */
                unlink_cw(s, cw);
                cit_free(cw);
            }
            break;
        default:
            watch(s, cw, now);
        }
    }
    return busy;
}

static void *lobby_main(void *arg)
{
    struct http_server *s = arg;
    struct epoll_event ev[64];
    struct handover h[HANDOVER_BATCH];
    int busy = 0;
    for (;;) {
        int n = epoll_wait(s->epfd, ev, 64, busy ? 10 : 100), nh = 0, listen_ready = 0;
        uint64_t now = cit_now_ns();
        pthread_mutex_lock(&s->w_mu);
        if (s->lobby_stop) {
            pthread_mutex_unlock(&s->w_mu);
            break;
        }
        /* flags first: a connection may be freed below, after which its
         * event in this batch must not be touched */
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == &s->listen_fd) {
                listen_ready = 1;
            } else if (ev[i].data.ptr == &s->evfd) {
                uint64_t v;
                ssize_t k = read(s->evfd, &v, sizeof(v));
                (void)k;
            } else {
                struct conn_watch *cw = ev[i].data.ptr;
                cw->ready = 1;
                if (ev[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) cw->hup = 1;
            }
        }
        if (s->lobby_quiesce && !s->lobby_quiesced) quiesce(s, now);
        if (s->accept_paused_ns && now >= s->accept_paused_ns && s->listen_fd >= 0) {
            struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &s->listen_fd};
            s->accept_paused_ns = 0;
            epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->listen_fd, &lev);
        }
        /* heads that are in go to MHD before new connections are admitted,
         * and new ones are looked at right away: a client whose head has
         * arrived is never the one a flood of new connections evicts */
        busy = lobby_pass(s, now, 0, h, &nh);
        if (listen_ready && s->listen_fd >= 0 && accept_some(s, now, h, &nh))
            busy |= lobby_pass(s, now, 1, h, &nh);
        pthread_mutex_unlock(&s->w_mu);
        /* MHD takes them without our lock: it calls back into this file */
        for (int i = 0; i < nh; i++)
            if (MHD_add_connection(s->d, h[i].fd, (const struct sockaddr *)&h[i].addr,
                                   h[i].addrlen) != MHD_YES) {
                pthread_mutex_lock(&s->w_mu); /* not started: still ours to free, fd closed */
                unlink_cw(s, h[i].cw);
                pthread_mutex_unlock(&s->w_mu);
                cit_free(h[i].cw);
            }
        if (nh) busy = 1; /* a batch may have been cut short */
    }
    return NULL;
}

/* Admissions that expire while serving end on time: a thread of its own,
 * as a recheck reads the state file and may stop a model's scheduler,
 * which must not hold up accepting and deadlines. */
static void *recheck_main(void *arg)
{
    struct http_server *s = arg;
    pthread_mutex_lock(&s->rc_mu);
    while (!s->rc_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t)(RECHECK_NS / NS);
        pthread_cond_timedwait(&s->rc_cv, &s->rc_mu, &ts);
        if (s->rc_stop) break;
        pthread_mutex_unlock(&s->rc_mu);
        node_models_recheck(s->node);
        pthread_mutex_lock(&s->rc_mu);
    }
    pthread_mutex_unlock(&s->rc_mu);
    return NULL;
}

int conn_lobby_start(struct http_server *s, struct cit_err *err)
{
    struct epoll_event ev = {.events = EPOLLIN};
    int flags;
    s->epfd = s->evfd = -1;
    s->hold_cap = s->o.lim.max_header_bytes + 1024;
    if (s->hold_cap > HOLD_MAX) s->hold_cap = HOLD_MAX;
    if (!(s->peek = cit_malloc(s->hold_cap))) return cit_err_set(err, CIT_ENOMEM, "out of memory");
    if ((s->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
        (s->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
        return cit_err_set(err, CIT_EIO, "epoll: %s", strerror(errno));
    flags = fcntl(s->listen_fd, F_GETFL);
    fcntl(s->listen_fd, F_SETFL, flags | O_NONBLOCK);
    ev.data.ptr = &s->listen_fd;
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->listen_fd, &ev))
        return cit_err_set(err, CIT_EIO, "epoll: %s", strerror(errno));
    ev.data.ptr = &s->evfd;
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->evfd, &ev))
        return cit_err_set(err, CIT_EIO, "epoll: %s", strerror(errno));
    if (pthread_create(&s->lobby, NULL, lobby_main, s))
        return cit_err_set(err, CIT_ENOMEM, "cannot start the connection thread");
    s->lobby_started = 1;
    pthread_mutex_init(&s->rc_mu, NULL);
    pthread_cond_init(&s->rc_cv, NULL);
    s->rc_init = 1;
    if (pthread_create(&s->rc, NULL, recheck_main, s))
        return cit_err_set(err, CIT_ENOMEM, "cannot start the admission recheck thread");
    s->rc_started = 1;
    return 0;
}

static void wake(struct http_server *s)
{
    uint64_t one = 1;
    ssize_t k = write(s->evfd, &one, sizeof(one));
    (void)k;
}

void conn_lobby_quiesce(struct http_server *s)
{
    if (!s->lobby_started) return;
    pthread_mutex_lock(&s->w_mu);
    s->lobby_quiesce = 1;
    wake(s);
    while (!s->lobby_quiesced) pthread_cond_wait(&s->w_cv, &s->w_mu);
    pthread_mutex_unlock(&s->w_mu);
}

void conn_lobby_stop(struct http_server *s)
{
    struct conn_watch *cw;
    if (s->rc_started) {
        pthread_mutex_lock(&s->rc_mu);
        s->rc_stop = 1;
        pthread_cond_signal(&s->rc_cv);
        pthread_mutex_unlock(&s->rc_mu);
        pthread_join(s->rc, NULL);
        s->rc_started = 0;
    }
    if (s->rc_init) {
        pthread_mutex_destroy(&s->rc_mu);
        pthread_cond_destroy(&s->rc_cv);
        s->rc_init = 0;
    }
    if (s->lobby_started) {
        pthread_mutex_lock(&s->w_mu);
        s->lobby_stop = 1;
        wake(s);
        pthread_mutex_unlock(&s->w_mu);
        pthread_join(s->lobby, NULL);
        s->lobby_started = 0;
    }
    while ((cw = s->conns)) { /* MHD stopped: only the lobby's and refused handovers are left */
        if (lobby_owns(cw)) close(cw->fd);
        unlink_cw(s, cw);
        cit_free(cw);
    }
    if (s->epfd >= 0) close(s->epfd);
    if (s->evfd >= 0) close(s->evfd);
    s->epfd = s->evfd = -1;
    cit_free(s->peek);
    s->peek = NULL;
}

/* ---- MHD's side ---- */

void conn_on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode code)
{
    struct http_server *s = cls;
    struct conn_watch *cw = *socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        int fd = ci ? ci->connect_fd : -1;
        uint64_t now = cit_now_ns();
        pthread_mutex_lock(&s->w_mu);
        for (cw = s->conns; cw; cw = cw->next)
            if (cw->phase == CONN_PENDING && cw->fd == fd) break;
        if (!cw && (cw = cit_calloc(1, sizeof(*cw)))) { /* not from the lobby: cannot happen */
            cw->fd = fd;
            link_cw(s, cw);
        }
        if (cw) {
            /* a whole head the lobby checked is parsed at once: not waiting on the client */
            cw->phase = cw->verified ? CONN_REQUEST : CONN_HEAD;
            cw->since_ns = now;
        }
        pthread_mutex_unlock(&s->w_mu);
        *socket_context = cw;
    } else if (cw) { /* closed: MHD has not closed the socket yet */
        pthread_mutex_lock(&s->w_mu);
        unlink_cw(s, cw);
        pthread_mutex_unlock(&s->w_mu);
        cit_free(cw);
        *socket_context = NULL;
    }
}

void *conn_on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    struct http_server *s = cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn_watch *cw = ci ? ci->socket_context : NULL;
    int secs;
    (void)uri;
    tl_cw = cw;
    if (!cw) return NULL;
    pthread_mutex_lock(&s->cfg_mu);
    secs = s->o.lim.header_timeout_s;
    pthread_mutex_unlock(&s->cfg_mu);
    pthread_mutex_lock(&s->w_mu);
    if (cw->phase == CONN_IDLE) { /* the next request on a keep-alive connection */
        uint64_t now = cit_now_ns();
        cw->phase = CONN_HEAD;
        cw->since_ns = now;
        cw->deadline_ns = after(now, secs);
    }
    pthread_mutex_unlock(&s->w_mu);
    return NULL; /* the access handler's first call still sees NULL */
}

/* MHD is about to answer status with its page: ours goes first (above). */
static void mhd_error(struct http_server *s, struct conn_watch *cw, int status, const char *page)
{
    const char *code = "malformed_request",
               *msg = "The request is not valid HTTP/1.1 (a malformed request line or header).";
    if (status == 400 && page && strstr(page, "chunked"))
        code = "invalid_chunked_encoding", msg = "The chunked transfer encoding of the body is "
                                                 "malformed.";
    else if (status == 400 && page && strstr(page, "Content-Length"))
        code = "invalid_content_length", msg = "The Content-Length header is not a valid length.";
    else if (status == 413)
        code = "request_too_large", msg = "Request body too large.";
    else if (status == 414)
        code = "uri_too_long", msg = "The request URI is longer than the server accepts.";
    else if (status == 431)
        code = "headers_too_large", msg = "The request header fields are too large.";
    else if (status == 505)
        code = "http_version_not_supported", msg = "This server speaks HTTP/1.1 (and 1.0) only.";
    else if (status != 400)
        code = NULL, msg = "The request could not be processed.";
    pthread_mutex_lock(&s->w_mu);
    if (!cw->dropped && !cw->answering && !s->tls) {
        raw_answer(cw->fd, status, code, msg);
        shutdown(cw->fd, SHUT_WR); /* MHD's page fails to send; MHD closes */
        cw->answering = 1;
        cw->deadline_ns = 0;
        cw->status = status;
    }
    pthread_mutex_unlock(&s->w_mu);
}

void conn_mhd_log(void *cls, const char *fmt, va_list ap)
{
    static const char answers[] = "Error processing request (HTTP response code is %u ('%s')).";
    struct http_server *s = cls;
    char line[512];
    va_list aq;
    va_copy(aq, ap);
    vsnprintf(line, sizeof(line), fmt, aq);
    va_end(aq);
    line[strcspn(line, "\n")] = 0;
    cit_log(CIT_LOG_DEBUG, "libmicrohttpd: %s", line);
    if (s && tl_cw && !strncmp(fmt, answers, sizeof(answers) - 1)) {
        unsigned status = va_arg(ap, unsigned);
        const char *page = va_arg(ap, const char *);
        mhd_error(s, tl_cw, (int)status, page);
    }
}

void conn_request_head(struct http_server *s, struct conn_watch *cw, int body_timeout_s)
{
    if (!cw) return;
    pthread_mutex_lock(&s->w_mu);
    cw->phase = CONN_REQUEST;
    cw->deadline_ns = after(cit_now_ns(), body_timeout_s);
    pthread_mutex_unlock(&s->w_mu);
}

void conn_authed(struct http_server *s, struct conn_watch *cw)
{
    if (!cw) return;
    pthread_mutex_lock(&s->w_mu);
    cw->authed = 1;
    pthread_mutex_unlock(&s->w_mu);
}

void conn_answering(struct http_server *s, struct conn_watch *cw)
{
    if (!cw) return;
    pthread_mutex_lock(&s->w_mu);
    cw->answering = 1;
    cw->deadline_ns = 0;
    pthread_mutex_unlock(&s->w_mu);
}

int conn_request_done(struct http_server *s, struct conn_watch *cw, int idle_timeout_s)
{
    int st;
    uint64_t now = cit_now_ns();
    if (!cw) return 0;
    pthread_mutex_lock(&s->w_mu);
    st = cw->status;
    cw->status = 0;
    cw->answering = 0;
    cw->phase = CONN_IDLE;
    cw->since_ns = now;
    cw->deadline_ns = after(now, idle_timeout_s);
    pthread_mutex_unlock(&s->w_mu);
    return st;
}

void watch_deadline(struct http_server *s, struct conn_watch *cw, int seconds)
{
    if (!cw) return;
    pthread_mutex_lock(&s->w_mu);
    cw->deadline_ns = after(cit_now_ns(), seconds);
    pthread_mutex_unlock(&s->w_mu);
}

/* ---- the peer listener's connections ---- */

int conn_adopt(struct http_server *s, struct MHD_Daemon *d, int fd, int peer1)
{
    struct conn_watch *cw = cit_calloc(1, sizeof(*cw));
    struct sockaddr_storage ss = {0};
    if (!cw) return -1;
    ss.ss_family = AF_UNIX;
    cw->fd = fd;
    cw->phase = CONN_PENDING;
    cw->peer1 = peer1;
    cw->since_ns = cit_now_ns();
    cw->deadline_ns = after(cw->since_ns, HANDOVER_GRACE_S);
    cw->addr = ss;
    cw->addrlen = sizeof(sa_family_t);
    pthread_mutex_lock(&s->w_mu);
    link_cw(s, cw);
    pthread_mutex_unlock(&s->w_mu);
    if (MHD_add_connection(d, fd, (const struct sockaddr *)&cw->addr, cw->addrlen) == MHD_YES)
        return 0;
    pthread_mutex_lock(&s->w_mu); /* not started: ours to free; MHD closed the socket */
    unlink_cw(s, cw);
    pthread_mutex_unlock(&s->w_mu);
    cit_free(cw);
    return 0;
}
