/*
 * citadel serve: the OpenAI-compatible HTTP server.
 * citadel keys add|list|revoke: API keys in the node's state file.
 *
 * Settings come from the config file (--config FILE, else ./citadel.conf
 * when it exists), then from flags, which override it: --max-body 4096 is
 * the config key max_body. --model flags replace the file's models.
 *
 * Signals are taken by the main thread with sigwait (every other thread
 * starts with them blocked): SIGTERM or SIGINT drain and exit 0, SIGHUP
 * re-reads the config file and applies the flags again.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "citadel/http.h"
#include "cli.h"

struct serve_args {
    const char *config;
    int config_given;
    char **flags; /* pairs: key, value */
    int n_flags;
    int flag_models;
};

static void serve_usage(FILE *f)
{
    fputs("usage: citadel serve [--config FILE] [--model [ID=]PATH]... [options]\n"
          "  --host H  --port P        listen address (default 127.0.0.1:8080; port 0 picks one)\n"
          "  --threads N               compute threads per model (default: all CPUs)\n"
          "  --ctx N                   context per sequence (default min(2048, model's))\n"
          "  --parallel N              sequences decoded together per model (default 8)\n"
          "  --queue N                 waiting requests before 429 (default 64)\n"
          "  --tls-cert F --tls-key F  serve HTTPS\n"
          "  --state F                 SQLite state file: API keys, quota counters (citadel.db)\n"
          "  --policy F                the jurisdiction policy (required; docs/policy.md)\n"
          "  --ledger DIR              the audit ledger (default ./ledger; docs/ledger.md)\n"
          "  --ledger-retention DAYS   prune entries older than this (0: keep; min 183)\n"
          "  --checkpoint-interval S   seconds between signed checkpoints (default 60)\n"
          "  --open                    no API keys (only on a network you trust)\n"
          "  --unvetted                also load models never admitted, if the policy allows\n"
          "                            (admission.unvetted: allow); logged and warned about\n"
          "  --trust-stored-digest     skip hashing admitted models on read-only media\n"
          "  Models load only when admitted (citadel model admit; docs/border.md).\n"
          "  --KEY VALUE               any config key, '-' for '_' (docs/serve.md)\n",
          f);
}

/* "--max-body" -> "max_body" */
static void flag_key(const char *flag, char *key, size_t cap)
{
    size_t i = 0;
    for (flag += 2; *flag && i + 1 < cap; flag++) key[i++] = *flag == '-' ? '_' : *flag;
    key[i] = 0;
}

static int conf_cb(void *user, const char *key, const char *value, struct cit_err *err)
{
    return http_opts_set(user, key, value, err);
}

/* Defaults, then the config file, then the flags. */
static int build_opts(const struct serve_args *a, struct http_opts *o, struct cit_err *err)
{
    int rc;
    http_opts_defaults(o);
    if (a->config && (a->config_given || access(a->config, F_OK) == 0))
        if ((rc = cit_conf_load(a->config, conf_cb, o, err))) return rc;
    if (a->flag_models) o->n_models = 0;
    for (int i = 0; i < a->n_flags; i++) {
        char key[64];
        flag_key(a->flags[2 * i], key, sizeof(key));
        if ((rc = http_opts_set(o, key, a->flags[2 * i + 1], err))) {
            char where[80];
            snprintf(where, sizeof(where), "flag %s", a->flags[2 * i]);
            cit_err_prefix(err, where);
            return rc;
        }
    }
    return 0;
}

int cli_serve(int argc, char **argv)
{
    struct serve_args a = {"citadel.conf", 0, NULL, 0, 0};
    struct http_opts o;
    struct http_server *srv;
    struct cit_err err;
    sigset_t set;
    int sig, status = 1;
    static char open_true[] = "true";

    a.flags = cit_calloc((size_t)argc * 2 + 2, sizeof(char *));
    if (!a.flags) return 1;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            serve_usage(stdout);
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
            serve_usage(stderr);
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
    if (http_server_start(&o, &srv, &err)) {
        fprintf(stderr, "citadel serve: %s\n", err.msg);
        cit_free(a.flags);
        return 1;
    }
    printf("citadel: serving %d model%s on %s://%s:%d (%s)\n", o.n_models,
           o.n_models == 1 ? "" : "s", o.tls_cert[0] ? "https" : "http", o.host,
           http_server_port(srv), o.open ? "open: no API key needed" : "API key required");
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
    http_server_stop(srv);
    cit_log(CIT_LOG_INFO, "stopped");
    status = 0;
    cit_free(a.flags);
    return status;
}

/* ---- keys ---- */

static void keys_usage(FILE *f)
{
    fputs("usage: citadel keys add --tenant T [--scope S]... [--state F]\n"
          "       citadel keys list [--json] [--state F]\n"
          "       citadel keys revoke ID [--state F]\n"
          "scopes: endpoint:chat|completions|models|metrics|*  model:ID|*\n"
          "        (default: " HTTP_DEFAULT_SCOPES ")\n",
          f);
}

static void list_text(void *user, const struct http_key_info *ki)
{
    char when[32];
    time_t t = (time_t)ki->created;
    (void)user;
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    printf("%s  %-16s %s  %-7s %s\n", ki->id, ki->tenant, when, ki->revoked ? "revoked" : "active",
           ki->scopes);
}

static void list_json(void *user, const struct http_key_info *ki)
{
    (void)user;
    printf("{\"id\":\"%s\",\"tenant\":", ki->id);
    cli_json_str(stdout, ki->tenant, strlen(ki->tenant));
    printf(",\"scopes\":");
    cli_json_str(stdout, ki->scopes, strlen(ki->scopes));
    printf(",\"created\":%lld,\"revoked\":%lld}\n", (long long)ki->created, (long long)ki->revoked);
}

int cli_keys(int argc, char **argv)
{
    const char *verb = argc > 0 ? argv[0] : "", *tenant = NULL, *id = NULL;
    const char *state = NULL, *config = "citadel.conf";
    char scopes[1024] = "";
    int json = 0, rc;
    struct http_keys *k;
    struct cit_err err;
    struct http_opts o;

    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--json")) {
            json = 1;
            continue;
        }
        if (argv[i][0] != '-') {
            id = argv[i];
            continue;
        }
        if (!v) {
            fprintf(stderr, "citadel keys: '%s' needs a value\n", argv[i]);
            return 2;
        }
        if (!strcmp(argv[i], "--tenant"))
            tenant = v;
        else if (!strcmp(argv[i], "--state"))
            state = v;
        else if (!strcmp(argv[i], "--config"))
            config = v;
        else if (!strcmp(argv[i], "--scope")) {
            size_t n = strlen(scopes);
            if (n + strlen(v) + 2 > sizeof(scopes)) {
                fputs("citadel keys: too many scopes\n", stderr);
                return 2;
            }
            snprintf(scopes + n, sizeof(scopes) - n, "%s%s", n ? " " : "", v);
        } else {
            fprintf(stderr, "citadel keys: unknown option '%s'\n", argv[i]);
            keys_usage(stderr);
            return 2;
        }
        i++;
    }
    /* the state file: --state, else the config's, else the default */
    http_opts_defaults(&o);
    if (!state && access(config, F_OK) == 0) {
        if (cit_conf_load(config, conf_cb, &o, &err)) {
            fprintf(stderr, "citadel keys: %s\n", err.msg);
            return 2;
        }
    }
    if (!state) state = o.state;
    if (strcmp(verb, "add") && strcmp(verb, "list") && strcmp(verb, "revoke")) {
        keys_usage(stderr);
        return 2;
    }
    if ((!strcmp(verb, "add") && !tenant) || (!strcmp(verb, "revoke") && !id)) {
        keys_usage(stderr);
        return 2;
    }
    if (http_keys_open(state, &k, &err)) {
        fprintf(stderr, "citadel keys: %s\n", err.msg);
        return 1;
    }
    if (!strcmp(verb, "add")) {
        char key[HTTP_KEY_LEN + 1], kid[HTTP_KEY_ID_LEN + 1];
        rc = http_keys_add(k, tenant, scopes[0] ? scopes : HTTP_DEFAULT_SCOPES, key, kid, &err);
        if (!rc) {
            printf("%s\n", key);
            fprintf(stderr,
                    "citadel keys: key %s for tenant '%s' stored in %s; it is shown only "
                    "this once\n",
                    kid, tenant, state);
        }
    } else if (!strcmp(verb, "list")) {
        rc = http_keys_list(k, json ? list_json : list_text, NULL, &err);
    } else {
        rc = http_keys_revoke(k, id, &err);
        if (!rc) fprintf(stderr, "citadel keys: revoked %s\n", id);
    }
    if (rc) fprintf(stderr, "citadel keys: %s\n", err.msg);
    http_keys_close(k);
    return rc ? 1 : 0;
}
