/*
 * The peer transport (gateway/tls.c, listen.c): the pin text libcurl
 * checks is OpenSSL's own SubjectPublicKeyInfo hash; the listener hands a
 * pinned peer's bytes through unchanged, both ways and in bulk, and passes
 * on the end of the stream; an unpinned client, or a client that pins
 * another key, never reaches the server.
 */
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "citadel/gateway.h"
#include "citadel/ledger.h"
#include "test.h"

static int make_key(const char *name, struct ledger_skey *k)
{
    char p[600], vp[600];
    struct cit_err err = {{0}};
    snprintf(p, sizeof(p), "%s/%s.key", t_tmpdir(), name);
    snprintf(vp, sizeof(vp), "%s/%s.vkey", t_tmpdir(), name);
    unlink(p);
    CHECK_RET(ledger_key_load(p, vp, name, k, &err) == 0, "%s", err.msg);
    return 0;
}

void test_gateway_pin_text(void)
{
    struct ledger_skey k;
    EVP_PKEY *pk;
    uint8_t *der = NULL, h[32];
    char want[80], b64[64], got[80];
    int n;
    CHECK(make_key("pin", &k) == 0);
    pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, k.vk.pk, 32);
    CHECK(pk != NULL);
    n = i2d_PUBKEY(pk, &der);
    CHECK(n > 0);
    SHA256(der, (size_t)n, h);
    OPENSSL_free(der);
    EVP_PKEY_free(pk);
    sodium_bin2base64(b64, sizeof(b64), h, 32, sodium_base64_VARIANT_ORIGINAL);
    snprintf(want, sizeof(want), "sha256//%s", b64);
    CHECK(gw_pin_text(k.vk.pk, got, sizeof(got)) == 0);
    CHECKF(!strcmp(got, want), "%s != %s", got, want);
    CHECK(gw_pin_text(k.vk.pk, got, 20) != 0); /* too small: an error, not a cut pin */
}

/* The server side: echoes what it reads, upper-cased, until EOF, then
 * writes "bye" and closes. */
struct echo {
    int fd, pin;
    pthread_t t;
    int got; /* connections handed over */
};

static void *echo_main(void *arg)
{
    struct echo *e = arg;
    char buf[8192];
    ssize_t n;
    while ((n = read(e->fd, buf, sizeof(buf))) > 0) {
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] >= 'a' && buf[i] <= 'z') buf[i] = (char)(buf[i] - 32);
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(e->fd, buf + off, (size_t)(n - off));
            if (w <= 0) break;
            off += w;
        }
    }
    if (write(e->fd, "bye", 3) != 3) { /* the test sees it missing */
    }
    close(e->fd);
    return NULL;
}

static int on_accept(void *user, int fd, int pin)
{
    struct echo *e = user;
    e->fd = fd;
    e->pin = pin;
    e->got++;
    return pthread_create(&e->t, NULL, echo_main, e) ? -1 : 0;
}

static atomic_int n_refused;
static char refused_why[200];

static void on_refused(void *user, const char *from, const char *why)
{
    (void)user;
    n_refused++;
    snprintf(refused_why, sizeof(refused_why), "%s: %s", from, why);
}

static int ssl_write_all(SSL *s, const char *p, size_t n)
{
    while (n) {
        int w = SSL_write(s, p, (int)n);
        if (w <= 0) return -1;
        p += w, n -= (size_t)w;
    }
    return 0;
}

/* A client with key k pinning server key spk: its TLS connection, or NULL. */
static SSL *client(const struct ledger_skey *k, const uint8_t spk[32], int port, SSL_CTX **ctx,
                   int *fd)
{
    char addr[64];
    struct cit_err err = {{0}};
    uint8_t pk[32];
    SSL *s;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    if (gw_tls_new(0, k, (const uint8_t(*)[32])spk, 1, ctx, &err)) return NULL;
    if ((*fd = gw_tcp_connect(addr, &err)) < 0) return NULL;
    s = gw_tls_handshake(*ctx, *fd, 0, 5, pk, &err);
    if (s && memcmp(pk, spk, 32)) {
        SSL_free(s);
        return NULL;
    }
    return s;
}

void test_gateway_listen(void)
{
    struct ledger_skey srv, a, b, stranger;
    uint8_t pins[2][32];
    struct gw_listener *l = NULL;
    struct cit_err err = {{0}};
    struct echo e = {-1, -1, 0, 0};
    SSL_CTX *ctx = NULL;
    SSL *s;
    int port = 0, fd = -1;
    size_t big = 300000, got = 0;
    char *buf = malloc(big), *in = malloc(big + 16);
    signal(SIGPIPE, SIG_IGN); /* the stop below closes sockets under the echo */
    CHECK(buf && in);
    CHECK(make_key("srv", &srv) == 0 && make_key("peer-a", &a) == 0 &&
          make_key("peer-b", &b) == 0 && make_key("stranger", &stranger) == 0);
    memcpy(pins[0], a.vk.pk, 32);
    memcpy(pins[1], b.vk.pk, 32);
    CHECKF(gw_listen("127.0.0.1:0", &srv, (const uint8_t(*)[32])pins, 2, on_accept, on_refused, &e,
                     &l, &port, &err) == 0,
           "%s", err.msg);
    CHECK(port > 0);

    /* peer b: pinned, second in the list; a large body both ways */
    s = client(&b, srv.vk.pk, port, &ctx, &fd);
    CHECK(s != NULL);
    for (size_t i = 0; i < big; i++) buf[i] = (char)('a' + i % 26);
    CHECK(ssl_write_all(s, buf, big) == 0);
    while (got < big) {
        int r = SSL_read(s, in + got, (int)(big + 16 - got));
        CHECK(r > 0);
        got += (size_t)r;
    }
    for (size_t i = 0; i < big; i++) CHECK(in[i] == (char)('A' + i % 26));
    CHECK(e.got == 1 && e.pin == 1);
    /* our end of the stream reaches the server as EOF: it answers "bye" */
    SSL_shutdown(s);
    got = 0;
    for (int r; (r = SSL_read(s, in + got, 16)) > 0;) got += (size_t)r;
    CHECKF(got == 3 && !memcmp(in, "bye", 3), "got %zu bytes after our close", got);
    pthread_join(e.t, NULL);
    SSL_free(s);
    close(fd);
    gw_tls_free(ctx);
    CHECK(gw_listen_refused(l) == 0);

    /* a stranger: its handshake fails and the server never sees it */
    s = client(&stranger, srv.vk.pk, port, &ctx, &fd);
    if (s) { /* TLS 1.3: the client learns of the refusal on its first read */
        char c;
        CHECK(SSL_write(s, "x", 1) <= 0 || SSL_read(s, &c, 1) <= 0);
        SSL_free(s);
    }
    close(fd);
    gw_tls_free(ctx);
    for (int i = 0; i < 200 && !atomic_load(&n_refused); i++) usleep(10000);
    CHECK(gw_listen_refused(l) == 1);
    CHECK(e.got == 1);
    CHECKF(atomic_load(&n_refused) == 1 && !strncmp(refused_why, "127.0.0.1:", 10), "%d: %s",
           atomic_load(&n_refused), refused_why);

    /* a pinned client that pins another key for the server: it refuses */
    s = client(&a, stranger.vk.pk, port, &ctx, &fd);
    CHECK(s == NULL);
    close(fd);
    gw_tls_free(ctx);
    CHECK(e.got == 1);

    /* stop with a connection open: it is closed and the threads joined */
    s = client(&a, srv.vk.pk, port, &ctx, &fd);
    CHECK(s != NULL);
    CHECK(ssl_write_all(s, "hi", 2) == 0);
    CHECK(SSL_read(s, in, 2) == 2 && !memcmp(in, "HI", 2));
    CHECK(e.got == 2 && e.pin == 0);
    gw_listen_stop(l);
    pthread_join(e.t, NULL);
    SSL_free(s);
    close(fd);
    gw_tls_free(ctx);
    free(buf);
    free(in);
}
