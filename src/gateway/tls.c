/*
 * The transport between nodes: TLS 1.3 with mutual authentication by
 * Ed25519 node keys, shared by the gateway (peer links) and federated
 * learning (fl/net.c).
 *
 * Identities. Every node has an Ed25519 signing key (ledger_key_load's
 * format). Its TLS certificate is self-signed with that key and made fresh
 * at start; what the other side checks is the key, against its pins,
 * during the handshake: an unpinned peer gets a handshake failure and
 * nothing else. No chain is built and no name is checked: the pin is the
 * whole of trust, and the same key signs the ledger, passports and
 * receipts, so the TLS peer and the party that signs are one.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "citadel/gateway.h"
#include "citadel/guard.h"

static int pins_idx = -1; /* SSL_CTX ex-data slot for the pins */

struct gw_pins {
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

int gw_cert_key(const struct x509_st *x, uint8_t pk[32])
{
    EVP_PKEY *k = X509_get0_pubkey(x);
    size_t n = 32;
    if (!k || EVP_PKEY_id(k) != EVP_PKEY_ED25519) return -1;
    return EVP_PKEY_get_raw_public_key(k, pk, &n) == 1 && n == 32 ? 0 : -1;
}

/* Accepts exactly one certificate whose key is pinned. The handshake has
 * already proved the peer holds the certificate's key. */
static int verify_cb(int ok, X509_STORE_CTX *st)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(st, SSL_get_ex_data_X509_STORE_CTX_idx());
    const struct gw_pins *pins = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), pins_idx);
    X509 *x = X509_STORE_CTX_get_current_cert(st);
    uint8_t pk[32];
    (void)ok;
    if (X509_STORE_CTX_get_error_depth(st) != 0 || !pins || !x || gw_cert_key(x, pk)) return 0;
    for (int i = 0; i < pins->n; i++)
        if (!memcmp(pins->pk[i], pk, 32)) return 1;
    return 0;
}

/* The key and its self-signed certificate. */
static int make_cert(const struct ledger_skey *key, EVP_PKEY **pkey_out, X509 **x_out,
                     struct cit_err *err)
{
    /* libsodium's secret key is seed || public key */
    EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, key->sk, 32);
    X509 *x = X509_new();
    X509_NAME *nm;
    if (!pkey || !x) goto fail;
    nm = X509_get_subject_name(x);
    if (!X509_set_version(x, 2) || !ASN1_INTEGER_set(X509_get_serialNumber(x), 1) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -86400) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 3650) || !X509_set_pubkey(x, pkey) ||
        !X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)key->vk.name,
                                    -1, -1, 0) ||
        !X509_set_issuer_name(x, nm) || !X509_sign(x, pkey, NULL))
        goto fail;
    *pkey_out = pkey;
    *x_out = x;
    return 0;
fail:
    tls_err(err, "TLS certificate");
    EVP_PKEY_free(pkey);
    X509_free(x);
    return CIT_EIO;
}

int gw_tls_new(int server, const struct ledger_skey *key, const uint8_t (*pins)[32], int npins,
               SSL_CTX **out, struct cit_err *err)
{
    SSL_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    X509 *x = NULL;
    struct gw_pins *p = NULL;
    int rc;
    if (pins_idx < 0) pins_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (pins_idx < 0) {
        tls_err(err, "TLS context");
        return CIT_EIO;
    }
    if ((rc = make_cert(key, &pkey, &x, err))) return rc;
    rc = CIT_EIO;
    if (!(p = cit_malloc(sizeof(*p)))) {
        rc = cit_err_set(err, CIT_ENOMEM, "TLS context: out of memory");
        goto out;
    }
    p->n = npins;
    p->pk = pins;
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

void gw_tls_free(SSL_CTX *ctx)
{
    if (!ctx) return;
    cit_free(SSL_CTX_get_ex_data(ctx, pins_idx));
    SSL_CTX_free(ctx);
}

static int pem_out(BIO *bio, struct cit_buf *b)
{
    char *p;
    long n = BIO_get_mem_data(bio, &p);
    return n > 0 && !cit_buf_add(b, p, (size_t)n) ? 0 : -1;
}

int gw_tls_pem(const struct ledger_skey *key, struct cit_buf *cert, struct cit_buf *pk,
               struct cit_err *err)
{
    EVP_PKEY *pkey = NULL;
    X509 *x = NULL;
    BIO *bc = BIO_new(BIO_s_mem()), *bk = BIO_new(BIO_s_mem());
    int rc = make_cert(key, &pkey, &x, err);
    if (!rc && (!bc || !bk || !PEM_write_bio_X509(bc, x) ||
                !PEM_write_bio_PrivateKey(bk, pkey, NULL, NULL, 0, NULL, NULL) ||
                pem_out(bc, cert) || pem_out(bk, pk))) {
        tls_err(err, "TLS certificate as PEM");
        rc = CIT_EIO;
    }
    BIO_free(bc);
    BIO_free_all(bk);
    EVP_PKEY_free(pkey);
    X509_free(x);
    return rc;
}

int gw_pin_text(const uint8_t pk[32], char *out, size_t cap)
{
    /* An Ed25519 SubjectPublicKeyInfo (RFC 8410) is this prefix and the key. */
    static const uint8_t spki_prefix[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                            0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
    uint8_t spki[44], h[32];
    char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
    memcpy(spki, spki_prefix, sizeof(spki_prefix));
    memcpy(spki + 12, pk, 32);
    SHA256(spki, sizeof(spki), h);
    sodium_bin2base64(b64, sizeof(b64), h, 32, sodium_base64_VARIANT_ORIGINAL);
    return snprintf(out, cap, "sha256//%s", b64) < (int)cap ? 0 : CIT_EINVAL;
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

void gw_set_timeout(int fd, double s)
{
    struct timeval tv = {(time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

int gw_tcp_listen(const char *addr, int backlog, int *port, struct cit_err *err)
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
        bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, backlog)) {
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

int gw_tcp_connect(const char *addr, struct cit_err *err)
{
    char host[256];
    const char *ps;
    struct addrinfo hints = {0}, *ai = NULL, *a;
    int fd = -1, g;
    struct guard_addr known[8];
    int n_known;
    if (split_addr(addr, host, sizeof(host), &ps, err)) return -1;
    /* under lockdown, the addresses resolved before it: there is no DNS */
    if ((n_known = guard_lookup(host, atoi(ps), known, 8)) > 0) {
        for (int i = 0; i < n_known && fd < 0; i++) {
            fd = socket(known[i].sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd >= 0 && connect(fd, (struct sockaddr *)&known[i].sa, known[i].len))
                close(fd), fd = -1;
        }
        if (fd < 0) cit_err_set(err, CIT_EIO, "connect %s: %s", addr, strerror(errno));
        return fd;
    }
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if ((g = getaddrinfo(host, ps, &hints, &ai))) {
        cit_err_set(err, CIT_EINVAL, "connect %s: %s", addr, gai_strerror(g));
        return -1;
    }
    for (a = ai; a; a = a->ai_next) {
        if (!guard_connect_ok(a->ai_addr, a->ai_addrlen)) {
            errno = EACCES; /* not an address the lockdown resolved */
            continue;
        }
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && !connect(fd, a->ai_addr, a->ai_addrlen)) break;
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) cit_err_set(err, CIT_EIO, "connect %s: %s", addr, strerror(errno));
    return fd;
}

SSL *gw_tls_handshake(SSL_CTX *ctx, int fd, int server, double timeout_s, uint8_t pk[32],
                      struct cit_err *err)
{
    SSL *ssl = SSL_new(ctx);
    X509 *peer;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    gw_set_timeout(fd, timeout_s);
    if (!ssl || !SSL_set_fd(ssl, fd) || (server ? SSL_accept(ssl) : SSL_connect(ssl)) != 1) {
        tls_err(err, "TLS handshake");
        SSL_free(ssl);
        return NULL;
    }
    peer = SSL_get1_peer_certificate(ssl);
    if (!peer || gw_cert_key(peer, pk)) {
        X509_free(peer);
        SSL_free(ssl);
        cit_err_set(err, CIT_EINVAL, "TLS handshake: the peer sent no Ed25519 certificate");
        return NULL;
    }
    X509_free(peer);
    return ssl;
}
