/*
 * The federation's transport: frames over the nodes' TLS 1.3 with mutual
 * authentication (gateway/tls.c, which the peer links share). The pins are
 * the roster on the coordinator and the coordinator's key on a
 * participant; the same key is the roster identity SecAgg+ signs with, so
 * the TLS peer and the protocol party are one.
 *
 * The coordinator talks to all participants at once over non-blocking
 * sockets (fl_net_exchange: write each its frame, read each one reply, until
 * a deadline); a participant reads and answers one frame at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "citadel/gateway.h"
#include "citadel/ledger.h"
#include "fl_int.h"

int fl_net_listen(const char *addr, int *port /* out */, struct cit_err *err)
{
    return gw_tcp_listen(addr, FL_MAX_CLIENTS, port, err);
}

int fl_net_accept(SSL_CTX *ctx, int lfd, double timeout_s, struct fl_conn *c, struct cit_err *err)
{
    struct pollfd p = {lfd, POLLIN, 0};
    int fd, r = poll(&p, 1, (int)(timeout_s * 1000));
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    if (r == 0) return 1;
    if (r < 0 || (fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
        return cit_err_set(err, CIT_EIO, "accept: %s", strerror(errno));
    c->ssl = gw_tls_handshake(ctx, fd, 1, 10, c->pk, err);
    if (!c->ssl) {
        close(fd);
        return CIT_EINVAL;
    }
    c->fd = fd;
    return 0;
}

int fl_net_connect(SSL_CTX *ctx, const char *addr, double timeout_s, struct fl_conn *c,
                   struct cit_err *err)
{
    int fd;
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    if ((fd = gw_tcp_connect(addr, err)) < 0) return CIT_EIO;
    c->ssl = gw_tls_handshake(ctx, fd, 0, timeout_s, c->pk, err);
    if (!c->ssl) {
        close(fd);
        cit_err_prefix(err, addr);
        return CIT_EINVAL;
    }
    c->fd = fd;
    return 0;
}

void fl_net_close(struct fl_conn *c)
{
    if (c->ssl) {
        if (!c->dead) SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    if (c->fd >= 0) close(c->fd);
    cit_buf_free(&c->in);
    c->ssl = NULL;
    c->fd = -1;
    c->dead = 1;
}

/* ---- frames ---- */

/* After an SSL_read / SSL_write that returned r <= 0: 0 when TLS only
 * waits for the socket (c->want says which way), -1 when the connection
 * failed. */
static int would_block(struct fl_conn *c, int r)
{
    int e = SSL_get_error(c->ssl, r);
    ERR_clear_error();
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return -1;
    c->want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
    return 0;
}

/* Reads into c->in until it holds one whole frame: 1 when it does, 0 when
 * the socket would block, -1 when the connection failed or the header is
 * bad (err says which). Reads no byte past the frame. */
static int read_frame(struct fl_conn *c, struct cit_err *err)
{
    uint8_t chunk[65536];
    for (;;) {
        size_t need;
        int r;
        if (c->in.len < FL_HDR) {
            need = FL_HDR - c->in.len;
        } else {
            int type;
            uint32_t body;
            if (fl_frame_parse((const uint8_t *)c->in.p, &type, &body, err)) return -1;
            need = FL_HDR + (size_t)body - c->in.len;
            if (!need) return 1;
        }
        r = SSL_read(c->ssl, chunk, (int)(need < sizeof(chunk) ? need : sizeof(chunk)));
        if (r <= 0) {
            if (!would_block(c, r)) return 0;
            cit_err_set(err, CIT_EIO, "the connection closed");
            return -1;
        }
        if (cit_buf_add(&c->in, chunk, (size_t)r)) {
            cit_err_set(err, CIT_ENOMEM, "out of memory");
            return -1;
        }
    }
}

/* Writes the rest of c->out: 1 when all is written, 0 would block, -1 failed. */
static int write_frame(struct fl_conn *c)
{
    while (c->out_off < c->out_len) {
        size_t left = c->out_len - c->out_off;
        int w = SSL_write(c->ssl, c->out + c->out_off, left > 1u << 30 ? 1 << 30 : (int)left);
        if (w <= 0) return would_block(c, w) ? -1 : 0;
        c->out_off += (size_t)w;
    }
    return 1;
}

int fl_net_send(struct fl_conn *c, const void *frame, size_t len, struct cit_err *err)
{
    struct pollfd p = {c->fd, 0, 0};
    int r;
    c->out = frame, c->out_len = len, c->out_off = 0;
    while (!(r = write_frame(c))) {
        p.events = (short)c->want;
        if (poll(&p, 1, c->timeout_ms) <= 0) break;
    }
    c->out = NULL;
    if (r == 1) return 0;
    c->dead = 1;
    return cit_err_set(err, CIT_EIO, "send: the connection failed or timed out");
}

int fl_net_recv(struct fl_conn *c, struct cit_buf *frame, struct cit_err *err)
{
    struct pollfd p = {c->fd, 0, 0};
    int r;
    c->in.len = 0;
    while (!(r = read_frame(c, err))) {
        p.events = (short)c->want;
        if (poll(&p, 1, c->timeout_ms) <= 0) {
            cit_err_set(err, CIT_EIO, "no frame from the peer in %d s", c->timeout_ms / 1000);
            r = -1;
            break;
        }
    }
    if (r != 1) {
        c->dead = 1;
        return CIT_EIO;
    }
    frame->len = 0;
    if (cit_buf_add(frame, c->in.p, c->in.len)) return CIT_ENOMEM;
    return 0;
}

void fl_net_nonblock(struct fl_conn *c, int timeout_ms)
{
    int fl = fcntl(c->fd, F_GETFL);
    if (fl >= 0) fcntl(c->fd, F_SETFL, fl | O_NONBLOCK);
    c->timeout_ms = timeout_ms;
}

int fl_net_exchange(struct fl_conn **cs, int n, double timeout_s, int reply)
{
    struct pollfd *pf = cit_calloc((size_t)n, sizeof(*pf));
    uint64_t deadline = cit_now_ns() + (uint64_t)(timeout_s * 1e9);
    int left = 0;
    if (!pf) return CIT_ENOMEM;
    for (int i = 0; i < n; i++) {
        struct fl_conn *c = cs[i];
        c->in.len = 0;
        c->out_off = 0;
        c->got = 0;
        if (!c->dead) left++;
    }
    while (left) {
        int m = 0, r;
        uint64_t now;
        for (int i = 0; i < n; i++) {
            struct fl_conn *c = cs[i];
            struct cit_err e;
            if (c->dead || c->got) continue;
            r = write_frame(c);
            if (r == 1 && reply) r = read_frame(c, &e);
            if (r == 1) {
                c->got = 1;
                left--;
            } else if (r < 0) {
                c->dead = 1;
                left--;
            } else {
                pf[m].fd = c->fd;
                pf[m].events = (short)c->want;
                pf[m++].revents = 0;
            }
        }
        now = cit_now_ns();
        if (!left) break;
        if (now >= deadline) {
            /* a participant that misses a deadline is out: its late reply
             * would otherwise be read as the next stage's */
            for (int i = 0; i < n; i++)
                if (!cs[i]->dead && !cs[i]->got) cs[i]->dead = cs[i]->late = 1;
            break;
        }
        r = poll(pf, (nfds_t)m, (int)((deadline - now) / 1000000 + 1));
        if (r < 0 && errno != EINTR) break;
    }
    cit_free(pf);
    return 0;
}
