/*
 * The air gap, enforced by the kernel (docs/guard.md).
 *
 * A process says what it needs in a struct guard_spec: the files and
 * folders it reads, the folders it writes, the TCP ports it binds, and the
 * peers it connects to, resolved to addresses while DNS still works. Then
 * it restricts itself in two steps, because the two kernel mechanisms bind
 * threads differently:
 *
 *   guard_lock   Landlock, while the process is one thread (Landlock binds
 *                the calling thread and every thread it starts later, not
 *                the threads already running): the file system reduced to
 *                the spec, TCP bind and connect reduced to its ports, and
 *                (ABI 6) abstract Unix sockets and signals scoped to the
 *                process. Start-up (opening the state file and ledger,
 *                mapping models, binding) runs under it already.
 *   guard_seal   seccomp through libseccomp, on every thread at once
 *                (TSYNC), once the process has made its own sockets: no
 *                socket but TCP over IPv4 or IPv6 (no UDP, so no DNS; no
 *                raw, packet, netlink or Unix sockets), no exec, no ptrace,
 *                no mount, bpf, keyctl, module, namespace or io_uring
 *                calls. A denied call fails with EPERM and is logged (a
 *                SIGSYS handler writes one line to stderr and counts it),
 *                never a silent kill.
 *
 * Landlock filters ports, not addresses: guard_connect_ok checks each
 * address the process connects to against the spec's resolved peers, and
 * guard_resolve gives the gateway those addresses so that it never asks
 * DNS after start.
 *
 * The rule set, as it was applied (with what the kernel could not do), has
 * one canonical text: guard_statement. Its SHA-256 is the node's air-gap
 * statement, recorded in the ledger at start and reported by /readyz,
 * /metrics and `citadel vet`.
 */
#ifndef CITADEL_GUARD_H
#define CITADEL_GUARD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "citadel/core.h"

#define GUARD_MAX_PATHS 48
#define GUARD_MAX_PORTS 32
#define GUARD_MAX_ADDRS 64
#define GUARD_PATH 1024
/* The least Landlock ABI a required lockdown accepts: 4 filters TCP ports. */
#define GUARD_MIN_ABI 4

struct guard_addr {
    char host[256]; /* as the policy names it */
    int port;
    struct sockaddr_storage sa; /* one address it resolved to, with the port */
    socklen_t len; /* 0: the name did not resolve */
};

struct guard_spec {
    char what[32];     /* "serve", "run", "fl serve", "fl join", "vet" */
    int best_effort;   /* 1: apply what the kernel can and record the rest */
    int listen_after_seal; /* 1: the process listens after guard_seal (fl serve) */
    char ro[GUARD_MAX_PATHS][GUARD_PATH]; /* read-only files or folders (real paths) */
    int n_ro;
    char rw[GUARD_MAX_PATHS][GUARD_PATH]; /* read-write folders (real paths) */
    int n_rw;
    int bind[GUARD_MAX_PORTS]; /* TCP ports bind() may name */
    int n_bind;
    int connect[GUARD_MAX_PORTS]; /* TCP ports connect() may reach */
    int n_connect;
    struct guard_addr addrs[GUARD_MAX_ADDRS]; /* where connects may go */
    int n_addrs;
};

/* The kernel's part, as guard_lock and guard_seal left it. */
struct guard_status {
    int locked;       /* guard_lock ran (Landlock applied, or best-effort without it) */
    int sealed;       /* guard_seal ran and its filter is loaded */
    int abi;          /* Landlock ABI of this kernel; 0: none */
    int fs, net, scope; /* which Landlock parts are enforced */
    int seccomp;      /* the seccomp filter is loaded on every thread */
    int best_effort;
    uint64_t denied;  /* calls the seccomp filter refused so far */
    char missing[512]; /* what could not be enforced, "; "-separated ("" : nothing) */
    char hash[65];    /* SHA-256 of the statement, hex ("" until sealed) */
};

void guard_spec_init(struct guard_spec *s, const char *what, int best_effort);
/* Adds a file or folder to read (rw: folder to read and write). A path
 * that does not exist is an error, unless optional (then it is skipped:
 * system folders that a distribution may lack). */
int guard_spec_path(struct guard_spec *s, const char *path, int rw, int optional,
                    struct cit_err *err);
/* The folders every process of ours reads: shared libraries loaded late
 * (libgcc_s on thread exit), time zones, the system's CA certificates,
 * OpenSSL's configuration, this process's /proc and the CPU list. */
int guard_spec_system(struct guard_spec *s, struct cit_err *err);
int guard_spec_bind(struct guard_spec *s, int port, struct cit_err *err);
/* Resolves host (now: DNS is not there after guard_seal) and allows
 * connects to port on its addresses. A name that does not resolve is kept
 * without an address (nothing connects to it) and CIT_ENOENT returned,
 * with the reason in err, for the caller to warn and go on. */
int guard_spec_connect(struct guard_spec *s, const char *host, int port, struct cit_err *err);
/* "https://host:port/..." or "host:port": the host and port a peer's URL
 * names (443 and 80 by scheme when no port is given). */
int guard_url_hostport(const char *url, char *host, size_t cap, int *port /* out */,
                       struct cit_err *err);

/* Landlock. Call while the process has one thread. Keeps a copy of s for
 * guard_connect_ok and guard_resolve. A kernel without what a required
 * spec needs is an error naming what is missing; best-effort goes on and
 * records it. */
int guard_lock(const struct guard_spec *s, struct cit_err *err);
/* seccomp on every thread. After guard_lock. */
int guard_seal(struct cit_err *err);

/* The canonical text of the rules in force (after guard_seal; before it,
 * of those that would be) into out, and its SHA-256 in hex. */
int guard_statement(struct cit_buf *out, char hash[65] /* out */);
void guard_get_status(struct guard_status *st /* out */);

/* 1 when sa may be connected to: nothing is locked, or it is one of the
 * spec's peer addresses. */
int guard_connect_ok(const struct sockaddr *sa, socklen_t len);
/* For host:port, the addresses resolved before the lock as a libcurl
 * CURLOPT_RESOLVE entry "host:port:a1,a2" into out; CIT_ENOENT when none
 * (not locked, or not a peer). */
int guard_resolve(const char *host, int port, char *out, size_t cap);
/* The resolved addresses for host:port, for a plain connect: up to cap of
 * them into out. Returns how many (0: none known). */
int guard_lookup(const char *host, int port, struct guard_addr *out, int cap);

#endif
