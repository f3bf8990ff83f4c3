/*
 * The peer listener: TLS 1.3 with mutual authentication in front of a
 * plain HTTP server.
 *
 * One thread accepts; each connection gets a thread that runs the
 * handshake (an unpinned key fails it and the connection is closed, the
 * refusal counted) and then relays bytes between the TLS connection and
 * one end of a socketpair whose other end the caller serves as if a client
 * had connected there. The HTTP layer thus never sees TLS, and never sees
 * a peer that has not proved a pinned key.
 *
 * Closing: EOF from the peer (close_notify or TCP) is passed on as a
 * half-close of the plaintext socket; when the server closes its end, the
 * relay sends close_notify and ends. gw_listen_stop shuts every socket
 * down, which wakes every thread, and waits for them.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "citadel/gateway.h"

#define MAX_CONNS   256 /* more at once are refused */
#define HANDSHAKE_S 10
#define RELAY_BUF   16384

struct gw_conn {
    struct gw_listener *l;
    char from[64]; /* the client's address, for refusals */
    int fd;        /* the TLS side */
    int plain;     /* our end of the socketpair; -1 until made */
    struct gw_conn *next, *prev;
};

struct gw_listener {
    SSL_CTX *ctx;
    int lfd, stopfd;
    const uint8_t (*pins)[32];
    int npins;
    gw_accept_fn fn;
    gw_refused_fn on_refused;
    void *user;
    pthread_t acc;
    pthread_mutex_t mu;
    pthread_cond_t idle; /* signalled when live drops to 0 */
    struct gw_conn *conns;
    int live;
    atomic_int stop;
    atomic_uint_fast64_t refused;
};

static void nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Moves bytes both ways until both are closed, either side fails, or the
 * listener stops. */
static void relay(struct gw_listener *l, SSL *ssl, int fd, int plain)
{
    uint8_t up[RELAY_BUF], down[RELAY_BUF]; /* tls->plain, plain->tls */
    size_t ulen = 0, uoff = 0, dlen = 0, doff = 0;
    int tls_eof = 0, plain_eof = 0, rwant = POLLIN, wwant = POLLOUT;
    nonblock(fd);
    nonblock(plain);
    while (!atomic_load(&l->stop)) {
        int moved = 0;
        if (!ulen && !tls_eof) {
            int r = SSL_read(ssl, up, sizeof(up));
            if (r > 0) {
                ulen = (size_t)r, uoff = 0, moved = 1;
            } else {
                int e = SSL_get_error(ssl, r);
                if (e == SSL_ERROR_WANT_READ)
                    rwant = POLLIN;
                else if (e == SSL_ERROR_WANT_WRITE)
                    rwant = POLLOUT;
                else if (e == SSL_ERROR_ZERO_RETURN) {
                    tls_eof = 1, moved = 1;
                    shutdown(plain, SHUT_WR);
                } else {
                    return; /* the link broke */
                }
            }
        }
        if (uoff < ulen) {
            ssize_t w = send(plain, up + uoff, ulen - uoff, MSG_NOSIGNAL);
            if (w > 0) {
                uoff += (size_t)w, moved = 1;
                if (uoff == ulen) ulen = uoff = 0;
            } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                return;
            }
        }
        if (!dlen && !plain_eof) {
            ssize_t r = read(plain, down, sizeof(down));
            if (r > 0)
                dlen = (size_t)r, doff = 0, moved = 1;
            else if (r == 0)
                plain_eof = 1, moved = 1;
            else if (errno != EAGAIN && errno != EINTR)
                return;
        }
        if (doff < dlen) {
            int w = SSL_write(ssl, down + doff, (int)(dlen - doff));
            if (w > 0) {
                doff += (size_t)w, moved = 1;
                if (doff == dlen) dlen = doff = 0;
            } else {
                int e = SSL_get_error(ssl, w);
                if (e == SSL_ERROR_WANT_READ)
                    wwant = POLLIN;
                else if (e == SSL_ERROR_WANT_WRITE)
                    wwant = POLLOUT;
                else
                    return;
            }
        }
        if (plain_eof && !dlen) {
            SSL_shutdown(ssl); /* the server is done with the connection */
            return;
        }
        if (moved) continue;
        {
            struct pollfd p[3] = {{fd, 0, 0}, {plain, 0, 0}, {l->stopfd, POLLIN, 0}};
            if (!ulen && !tls_eof) p[0].events |= (short)rwant;
            if (doff < dlen) p[0].events |= (short)wwant;
            if (uoff < ulen) p[1].events |= POLLOUT;
            if (!dlen && !plain_eof) p[1].events |= POLLIN;
            if (poll(p, 3, -1) < 0 && errno != EINTR) return;
            if ((p[0].revents | p[1].revents) & POLLNVAL) return;
        }
    }
}

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char h[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, h, sizeof(h));
        port = ntohs(a->sin_port);
        snprintf(out, cap, "%s:%d", h, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, h, sizeof(h));
        port = ntohs(a->sin6_port);
        snprintf(out, cap, "[%s]:%d", h, port);
    } else {
        snprintf(out, cap, "?");
    }
}

static void *conn_main(void *arg)
{
    struct gw_conn *c = arg;
    struct gw_listener *l = c->l;
    struct cit_err err = {{0}};
    uint8_t pk[32];
    int pin = -1, sv[2] = {-1, -1};
    SSL *ssl = gw_tls_handshake(l->ctx, c->fd, 1, HANDSHAKE_S, pk, &err);
    if (ssl)
        for (int i = 0; i < l->npins && pin < 0; i++)
            if (!memcmp(l->pins[i], pk, 32)) pin = i;
    if (!ssl || pin < 0) {
        atomic_fetch_add(&l->refused, 1);
        if (!atomic_load(&l->stop)) {
            const char *why = ssl ? "its key is not pinned" : err.msg;
            cit_log(CIT_LOG_WARN, "peers: a connection from %s was refused: %s", c->from, why);
            if (l->on_refused) l->on_refused(l->user, c->from, why);
        }
    } else if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
        cit_log(CIT_LOG_ERROR, "peers: socketpair: %s", strerror(errno));
    } else {
        pthread_mutex_lock(&l->mu);
        c->plain = sv[0];
        pthread_mutex_unlock(&l->mu);
        if (atomic_load(&l->stop) || l->fn(l->user, sv[1], pin))
            close(sv[1]);
        else
            relay(l, ssl, c->fd, sv[0]);
    }
    SSL_free(ssl);
    pthread_mutex_lock(&l->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    close(c->fd);
    if (c->plain >= 0) close(c->plain);
    cit_free(c);
    if (--l->live == 0) pthread_cond_broadcast(&l->idle);
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void *accept_main(void *arg)
{
    struct gw_listener *l = arg;
    while (!atomic_load(&l->stop)) {
        struct pollfd p[2] = {{l->lfd, POLLIN, 0}, {l->stopfd, POLLIN, 0}};
        struct gw_conn *c;
        pthread_attr_t at;
        pthread_t t;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd;
        if (poll(p, 2, -1) < 0 && errno != EINTR) break;
        if (atomic_load(&l->stop)) break;
        if (!(p[0].revents & POLLIN)) continue;
        if ((fd = accept4(l->lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC)) < 0) {
            if (errno == EMFILE || errno == ENFILE) usleep(100000); /* let some close */
            continue;
        }
        pthread_mutex_lock(&l->mu);
        if (l->live >= MAX_CONNS || !(c = cit_calloc(1, sizeof(*c)))) {
            pthread_mutex_unlock(&l->mu);
            atomic_fetch_add(&l->refused, 1);
            close(fd);
            continue;
        }
        /* requests and answers, many small writes each: none waits for
         * the last one's acknowledgement (Nagle) */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
        c->l = l, c->fd = fd, c->plain = -1;
        addr_text(&ss, c->from, sizeof(c->from));
        c->next = l->conns;
        if (c->next) c->next->prev = c;
        l->conns = c;
        l->live++;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &at, conn_main, c)) {
            l->conns = c->next;
            if (c->next) c->next->prev = NULL;
            l->live--;
            close(fd);
            cit_free(c);
        }
        pthread_attr_destroy(&at);
        pthread_mutex_unlock(&l->mu);
    }
    return NULL;
}

int gw_listen(const char *addr, const struct ledger_skey *key, const uint8_t (*pins)[32], int npins,
              gw_accept_fn fn, gw_refused_fn on_refused, void *user, struct gw_listener **out,
              int *port, struct cit_err *err)
{
    struct gw_listener *l = cit_calloc(1, sizeof(*l));
    int rc;
    if (!l) return cit_err_set(err, CIT_ENOMEM, "peer listener: out of memory");
    l->lfd = l->stopfd = -1;
    l->pins = pins, l->npins = npins, l->fn = fn, l->on_refused = on_refused, l->user = user;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->idle, NULL);
    if ((rc = gw_tls_new(1, key, pins, npins, &l->ctx, err))) goto fail;
    if ((l->lfd = gw_tcp_listen(addr, 64, port, err)) < 0) {
        rc = CIT_EIO;
        goto fail;
    }
    if ((l->stopfd = eventfd(0, EFD_CLOEXEC)) < 0 ||
        pthread_create(&l->acc, NULL, accept_main, l)) {
        rc = cit_err_set(err, CIT_EIO, "peer listener: %s", strerror(errno));
        goto fail;
    }
    *out = l;
    return 0;
fail:
    if (l->lfd >= 0) close(l->lfd);
    if (l->stopfd >= 0) close(l->stopfd);
    gw_tls_free(l->ctx);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->idle);
    cit_free(l);
    return rc;
}

void gw_listen_stop(struct gw_listener *l)
{
    uint64_t one = 1;
    if (!l) return;
    atomic_store(&l->stop, 1);
    if (write(l->stopfd, &one, sizeof(one)) < 0) { /* an eventfd write cannot fail here */
    }
    pthread_join(l->acc, NULL);
    pthread_mutex_lock(&l->mu);
    for (struct gw_conn *c = l->conns; c; c = c->next) {
        shutdown(c->fd, SHUT_RDWR); /* wakes a handshake or a relay */
        if (c->plain >= 0) shutdown(c->plain, SHUT_RDWR);
    }
    while (l->live) pthread_cond_wait(&l->idle, &l->mu);
    pthread_mutex_unlock(&l->mu);
    close(l->lfd);
    close(l->stopfd);
    gw_tls_free(l->ctx);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->idle);
    cit_free(l);
}

uint64_t gw_listen_refused(const struct gw_listener *l)
{
    return l ? atomic_load(&((struct gw_listener *)l)->refused) : 0;
}
