/*
 * citadel serve: the OpenAI-compatible HTTP server, and the node's admin
 * socket for the model, trust and keys verbs while it runs.
 *
 * Settings come from the config file (--config FILE, else ./citadel.conf
 * when it exists), then from flags, which override it: --max-body 4096 is
 * the config key max_body. --model flags replace the file's models.
 *
 * Signals are taken by the main thread with sigwait (every other thread
 * starts with them blocked): SIGTERM or SIGINT drain and exit 0, SIGHUP
 * re-reads the config file and applies the flags again.
 *
 * Lockdown (docs/guard.md): Landlock before anything starts a thread,
 * seccomp once the listeners and the admin socket exist, then the air-gap
 * statement in the ledger. A node that cannot lock down does not serve,
 * unless its policy says `lockdown: best-effort`.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "citadel/guard.h"
#include "citadel/http.h"
#include "citadel/policy.h"
#include "cli.h"

struct serve_args {
    const char *config;
    int config_given;
    char **flags; /* pairs: key, value */
    int n_flags;
    int flag_models;
};

void cli_usage_serve(FILE *f)
{
    fputs(
        "usage: citadel serve [--config FILE] [--model [ID=]PATH]... [options]\n"
        "  --host H  --port P        listen address (default 127.0.0.1:8080; port 0 picks one)\n"
        "  --threads N               compute threads per model (default: all CPUs)\n"
        "  --ctx N                   context per sequence (default min(2048, model's))\n"
        "  --parallel N              sequences decoded together per model (default 8)\n"
        "  --queue N                 waiting requests before 429 (default 64)\n"
        "  --tls-cert F --tls-key F  serve HTTPS\n"
        "  --state F                 SQLite state file: API keys, quotas, admissions (citadel.db)\n"
        "  --policy F                the jurisdiction policy (required; docs/policy.md)\n"
        "  --ledger DIR              the audit ledger (default ./ledger; docs/ledger.md)\n"
        "  --ledger-retention DAYS   prune entries older than this (0: keep; min 183)\n"
        "  --checkpoint-interval S   seconds between signed checkpoints (default 60)\n"
        "  --open                    no API keys (only on a network you trust)\n"
        "  --peer-listen H:P         accept the policy's citadel peers (mutual TLS; docs/gateway.md)\n"
        "  --unvetted                also load models never admitted, if the policy allows\n"
        "                            (admission.unvetted: allow); logged and warned about\n"
        "  --trust-stored-digest     skip hashing admitted models on read-only media\n"
        "  Models load only when admitted (citadel model admit; docs/border.md).\n"
        "  --KEY VALUE               any config key, '-' for '_' (docs/serve.md)\n",
        f);
}

/* "--max-body" -> "max_body" */
void cli_flag_key(const char *flag, char *key, size_t cap)
{
    size_t i = 0;
    for (flag += 2; *flag && i + 1 < cap; flag++) key[i++] = *flag == '-' ? '_' : *flag;
    key[i] = 0;
}

/* Defaults, then the config file, then the flags. */
static int build_opts(const struct serve_args *a, struct http_opts *o, struct cit_err *err)
{
    int rc;
    http_opts_defaults(o);
    if (a->config && (a->config_given || access(a->config, F_OK) == 0))
        if ((rc = http_opts_load(o, a->config, err))) return rc;
    if (a->flag_models) o->node.n_models = 0;
    for (int i = 0; i < a->n_flags; i++) {
        char key[64];
        cli_flag_key(a->flags[2 * i], key, sizeof(key));
        if ((rc = http_opts_set(o, key, a->flags[2 * i + 1], err))) {
            char where[80];
            snprintf(where, sizeof(where), "flag %s", a->flags[2 * i]);
            cit_err_prefix(err, where);
            return rc;
        }
    }
    return 0;
}

int cli_serve_spec(const char *config, const struct http_opts *o, const struct pol_policy *pol,
                   struct guard_spec *gs, struct cit_err *err)
{
    int rc;
    guard_spec_init(gs, "serve", pol ? pol->lockdown == POL_LOCKDOWN_BEST_EFFORT : 0);
    if ((rc = guard_spec_path(gs, config, 0, 1, err))) return rc;
    return http_guard_spec(o, pol, gs, err);
}

/* Landlock for what serving o needs (http_guard_spec), with the config
 * file readable for SIGHUP. The policy is read here for its peers and its
 * lockdown mode; the node reads it again when it opens. */
static int lock_down(const struct serve_args *a, const struct http_opts *o, struct cit_err *err)
{
    struct pol_policy *pol = NULL;
    struct guard_spec *gs = cit_calloc(1, sizeof(*gs));
    int rc;
    if (!gs) return cit_err_set(err, CIT_ENOMEM, "out of memory");
    /* no policy: node_open says what is wrong, better than we could */
    if (o->node.policy[0] && (rc = pol_load(o->node.policy, &pol, err))) goto out;
    if (!(rc = cli_serve_spec(a->config, o, pol, gs, err))) rc = guard_lock(gs, err);
out:
    pol_free(pol);
    cit_free(gs);
    return rc;
}

/* seccomp, and the statement into the ledger: a node whose lockdown is
 * not on record does not serve. */
static int seal(struct http_server *srv, struct cit_err *err)
{
    struct guard_status st;
    int rc;
    if ((rc = guard_seal(err)) || (rc = node_record_lockdown(http_server_node(srv), "serve", err)))
        return rc;
    guard_get_status(&st);
    if (st.missing[0])
        printf("citadel: lockdown partial (%s): missing %s; statement sha256 %s\n",
               st.best_effort ? "best-effort" : "required: what the node needs holds", st.missing,
               st.hash);
    else
        printf("citadel: lockdown enforced: Landlock ABI %d and seccomp; statement sha256 %s\n",
               st.abi, st.hash);
    return 0;
}

int cli_serve(int argc, char **argv)
{
    struct serve_args a = {"citadel.conf", 0, NULL, 0, 0};
    struct http_opts o;
    struct http_server *srv;
    struct node_admin *adm = NULL;
    struct cit_err err;
    sigset_t set;
    int sig, status = 1;
    static char open_true[] = "true";

    a.flags = cit_calloc((size_t)argc * 2 + 2, sizeof(char *));
    if (!a.flags) return 1;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            cli_usage_serve(stdout);
            cit_free(a.flags);
            return 0;
        }
        if (!strcmp(argv[i], "--open") || !strcmp(argv[i], "--unvetted") ||
            !strcmp(argv[i], "--trust-stored-digest")) {
            a.flags[2 * a.n_flags] = argv[i];
            a.flags[2 * a.n_flags++ + 1] = open_true;
            continue;
        }
        if (strncmp(argv[i], "--", 2) || i + 1 >= argc) {
            fprintf(stderr, "citadel serve: '%s' needs a value (or is not an option)\n", argv[i]);
            cli_usage_serve(stderr);
            cit_free(a.flags);
            return 2;
        }
        if (!strcmp(argv[i], "--config")) {
            a.config = argv[++i];
            a.config_given = 1;
            continue;
        }
        if (!strcmp(argv[i], "--model")) a.flag_models = 1;
        a.flags[2 * a.n_flags] = argv[i];
        a.flags[2 * a.n_flags++ + 1] = argv[++i];
    }
    if (build_opts(&a, &o, &err)) {
        fprintf(stderr, "citadel serve: %s\n", err.msg);
        cit_free(a.flags);
        return 2;
    }
    /* every thread started from here on inherits the blocked set */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    cit_log_set_level(CIT_LOG_INFO);
    if (lock_down(&a, &o, &err)) {
        fprintf(stderr, "citadel serve: %s\n", err.msg);
        cit_free(a.flags);
        return 1;
    }
    if (http_server_start(&o, &srv, &err)) {
        fprintf(stderr, "citadel serve: %s\n", err.msg);
        cit_free(a.flags);
        return 1;
    }
    /* model, trust and keys verbs reach this process while it runs; without
     * the socket they would write the ledger beside us, so no socket, no serve */
    if (node_admin_start(http_server_node(srv), cli_admin_exec, NULL, &adm, &err)) {
        fprintf(stderr, "citadel serve: %s\n", err.msg);
        http_server_stop(srv);
        cit_free(a.flags);
        return 1;
    }
    if (seal(srv, &err)) {
        fprintf(stderr, "citadel serve: %s\n", err.msg);
        node_admin_stop(adm);
        http_server_stop(srv);
        cit_free(a.flags);
        return 1;
    }
    printf("citadel: serving %d model%s on %s://%s:%d (%s)\n", o.node.n_models,
           o.node.n_models == 1 ? "" : "s", o.tls_cert[0] ? "https" : "http", o.host,
           http_server_port(srv), o.open ? "open: no API key needed" : "API key required");
    if (http_server_peer_port(srv))
        printf("citadel: peers (mutual TLS) on port %d\n", http_server_peer_port(srv));
    fflush(stdout);
    for (;;) {
        if (sigwait(&set, &sig)) continue;
        if (sig == SIGHUP) {
            struct http_opts n;
            if (build_opts(&a, &n, &err))
                cit_log(CIT_LOG_ERROR, "reload refused, settings unchanged: %s", err.msg);
            else
                http_server_reload(srv, &n);
            continue;
        }
        cit_log(CIT_LOG_INFO, "%s: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    }
    node_admin_stop(adm);
    http_server_stop(srv);
    cit_log(CIT_LOG_INFO, "stopped");
    status = 0;
    cit_free(a.flags);
    return status;
}
