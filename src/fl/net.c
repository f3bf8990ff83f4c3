/*
 * The federation's transport: TLS 1.3 with mutual authentication, and
 * frames over it.
 *
 * Identities. Every node has an Ed25519 signing key (ledger_key_load's
 * format). Its TLS certificate is self-signed with that key and made fresh
 * at start; what the other side checks is the key, against its pins (the
 * roster on the coordinator, the coordinator's key on a participant), during
 * the handshake: an unpinned peer gets a handshake failure and nothing
 * else. The same key is the roster identity SecAgg+ signs with, so the TLS
 * peer and the protocol party are one.
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

#include "citadel/ledger.h"
#include "fl_int.h"

/* ---- TLS contexts ---- */

static int pins_idx = -1; /* SSL_CTX ex-data slot for the pins */

struct fl_pins {
    int n;
    const uint8_t (*pk)[32];
};

static void tls_err(struct cit_err *err, const char *what)
{
    char buf[200];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    cit_err_set(err, CIT_EIO, "%s: %s", what, e ? buf : "failed");
}

/* The raw Ed25519 key of a certificate: 0, or -1 when it is not one. */
static int cert_key(X509 *x, uint8_t pk[32])
{
    EVP_PKEY *k = X509_get0_pubkey(x);
    size_t n = 32;
    if (!k || EVP_PKEY_id(k) != EVP_PKEY_ED25519) return -1;
    return EVP_PKEY_get_raw_public_key(k, pk, &n) == 1 && n == 32 ? 0 : -1;
}

/* Accepts exactly one certificate whose key is pinned. The chain is not
 * built (the certificates are self-signed); the handshake already proved
 * the peer holds the certificate's key. */
static int verify_cb(int ok, X509_STORE_CTX *st)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(st, SSL_get_ex_data_X509_STORE_CTX_idx());
    const struct fl_pins *pins = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), pins_idx);
    X509 *x = X509_STORE_CTX_get_current_cert(st);
    uint8_t pk[32];
    (void)ok;
    if (X509_STORE_CTX_get_error_depth(st) != 0 || !pins || !x || cert_key(x, pk)) return 0;
    for (int i = 0; i < pins->n; i++)
        if (!memcmp(pins->pk[i], pk, 32)) return 1;
    return 0;
}

int fl_tls_new(int server, const struct ledger_skey *key, const uint8_t (*pins)[32], int npins,
               SSL_CTX **out, struct cit_err *err)
{
    SSL_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    X509 *x = NULL;
    struct fl_pins *p = NULL;
    int rc = CIT_EIO;
    if (pins_idx < 0) pins_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    /* libsodium's secret key is seed || public key */
    pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, key->sk, 32);
    x = X509_new();
    p = cit_malloc(sizeof(*p));
    if (!pkey || !x || !p || pins_idx < 0) {
        tls_err(err, "TLS key");
        goto out;
    }
    p->n = npins;
    p->pk = pins;
    {
        X509_NAME *nm = X509_get_subject_name(x);
        if (!X509_set_version(x, 2) || !ASN1_INTEGER_set(X509_get_serialNumber(x), 1) ||
            !X509_gmtime_adj(X509_getm_notBefore(x), -86400) ||
            !X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 3650) || !X509_set_pubkey(x, pkey) ||
            !X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8,
                                        (const unsigned char *)key->vk.name, -1, -1, 0) ||
            !X509_set_issuer_name(x, nm) || !X509_sign(x, pkey, NULL)) {
            tls_err(err, "TLS certificate");
            goto out;
        }
    }
    ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_use_certificate(ctx, x) || !SSL_CTX_use_PrivateKey(ctx, pkey) ||
        !SSL_CTX_check_private_key(ctx) || !SSL_CTX_set_ex_data(ctx, pins_idx, p)) {
        tls_err(err, "TLS context");
        goto out;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
    SSL_CTX_set_num_tickets(ctx, 0); /* no resumption: every connection authenticates */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    *out = ctx;
    ctx = NULL;
    p = NULL;
    rc = 0;
out:
    SSL_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    X509_free(x);
    cit_free(p);
    return rc;
}

void fl_tls_free(SSL_CTX *ctx)
{
    if (!ctx) return;
    cit_free(SSL_CTX_get_ex_data(ctx, pins_idx));
    SSL_CTX_free(ctx);
}

/* ---- sockets ---- */

static int split_addr(const char *addr, char *host, size_t hcap, const char **port,
                      struct cit_err *err)
{
    const char *colon = strrchr(addr, ':');
    size_t hn;
    if (!colon || colon == addr || !colon[1])
        return cit_err_set(err, CIT_EINVAL, "'%s': expected HOST:PORT", addr);
    hn = (size_t)(colon - addr);
    if (addr[0] == '[' && hn > 2 && addr[hn - 1] == ']') addr++, hn -= 2;
    if (hn >= hcap) return cit_err_set(err, CIT_EINVAL, "'%s': host too long", addr);
    memcpy(host, addr, hn);
    host[hn] = 0;
    *port = colon + 1;
    return 0;
}

static void set_timeout(int fd, double s)
{
    struct timeval tv = {(time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

int fl_net_listen(const char *addr, int *port /* out */, struct cit_err *err)
{
    char host[256];
    const char *ps;
    struct addrinfo hints = {0}, *ai = NULL;
    int fd = -1, one = 1, g;
    if (split_addr(addr, host, sizeof(host), &ps, err)) return -1;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if ((g = getaddrinfo(host, ps, &hints, &ai))) {
        cit_err_set(err, CIT_EINVAL, "listen %s: %s", addr, gai_strerror(g));
        return -1;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, FL_MAX_CLIENTS)) {
        cit_err_set(err, CIT_EIO, "listen %s: %s", addr, strerror(errno));
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    }
    return fd;
}

/* Finishes the handshake on fd and reads the peer's key. */
static SSL *handshake(SSL_CTX *ctx, int fd, int server, double timeout_s, uint8_t pk[32],
                      struct cit_err *err)
{
    SSL *ssl = SSL_new(ctx);
    X509 *peer;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    set_timeout(fd, timeout_s);
    if (!ssl || !SSL_set_fd(ssl, fd) || (server ? SSL_accept(ssl) : SSL_connect(ssl)) != 1) {
        tls_err(err, "TLS handshake");
        SSL_free(ssl);
        return NULL;
    }
    peer = SSL_get1_peer_certificate(ssl);
    if (!peer || cert_key(peer, pk)) {
        X509_free(peer);
        SSL_free(ssl);
        cit_err_set(err, CIT_EINVAL, "TLS handshake: the peer sent no Ed25519 certificate");
        return NULL;
    }
    X509_free(peer);
    return ssl;
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
    c->ssl = handshake(ctx, fd, 1, 10, c->pk, err);
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
    char host[256];
    const char *ps;
    struct addrinfo hints = {0}, *ai = NULL, *a;
    int fd = -1, g;
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    if (split_addr(addr, host, sizeof(host), &ps, err)) return CIT_EINVAL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if ((g = getaddrinfo(host, ps, &hints, &ai)))
        return cit_err_set(err, CIT_EINVAL, "connect %s: %s", addr, gai_strerror(g));
    for (a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && !connect(fd, a->ai_addr, a->ai_addrlen)) break;
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) return cit_err_set(err, CIT_EIO, "connect %s: %s", addr, strerror(errno));
    c->ssl = handshake(ctx, fd, 0, timeout_s, c->pk, err);
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
