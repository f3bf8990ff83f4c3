/*
 * The node for the verbs that act on it (model admit, list, revoke, load,
 * unload; trust; keys; run; audit; fl): found the way serve finds it
 * (defaults, then the config file: --config, else ./citadel.conf when it
 * exists; then --state, --policy and --ledger) and opened by node_open.
 *
 * While `citadel serve` runs, it owns the node (the ledger has one
 * writer), so the administrative verbs go to it over its admin socket
 * (cli_admin_forward) and run there, in the serving process, through the
 * same functions (cli_admin_exec): cli_node_open then hands them the
 * served node, and their output goes to cli_out and cli_err, which the
 * admin request captures.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "citadel/http.h"
#include "citadel/ledger.h"
#include "citadel/guard.h"
#include "cli.h"

FILE *cli_out, *cli_err;
static struct node *served; /* set while an admin request runs in serve */

void cli_streams_init(void)
{
    cli_out = stdout;
    cli_err = stderr;
}

int cli_node_flag(struct cli_node_args *a, const char *flag, const char *value)
{
    if (!strcmp(flag, "--config"))
        a->config = value, a->config_given = 1;
    else if (!strcmp(flag, "--state"))
        a->state = value;
    else if (!strcmp(flag, "--policy"))
        a->policy = value;
    else if (!strcmp(flag, "--ledger"))
        a->ledger = value;
    else
        return 0;
    return 1;
}

int cli_node_opts(const struct cli_node_args *a, struct http_opts *o, struct cit_err *err)
{
    const char *config = a->config ? a->config : "citadel.conf";
    int rc;
    http_opts_defaults(o);
    if ((a->config_given || access(config, F_OK) == 0) && (rc = http_opts_load(o, config, err)))
        return rc;
    if (a->state && (rc = http_opts_set(o, "state", a->state, err))) return rc;
    if (a->policy && (rc = http_opts_set(o, "policy", a->policy, err))) return rc;
    if (a->ledger && (rc = http_opts_set(o, "ledger", a->ledger, err))) return rc;
    return 0;
}

int cli_node_open(const struct cli_node_args *a, int what, struct cli_node *n, struct cit_err *err)
{
    struct http_opts o;
    unsigned w = 0;
    int rc;
    memset(n, 0, sizeof(*n));
    if (served) {
        n->node = served;
        n->borrowed = 1;
    } else {
        if ((rc = cli_node_opts(a, &o, err))) return rc;
        if (what & CLI_NODE_POLICY) w |= NODE_POLICY;
        if (what & CLI_NODE_STATE) w |= NODE_STATE;
        if (what & CLI_NODE_LEDGER) w |= NODE_LEDGER;
        if (what & CLI_NODE_GATEWAY) w |= NODE_GATEWAY;
        /* a checkpoint on close covers what this command wrote */
        o.node.checkpoint_s = -1;
        if ((rc = node_open(&o.node, w, &n->node, err))) return rc;
    }
    n->pol = node_policy(n->node);
    n->reg = node_registry(n->node);
    n->lg = node_ledger(n->node);
    return 0;
}

void cli_node_close(struct cli_node *n)
{
    if (!n->borrowed) node_close(n->node);
    memset(n, 0, sizeof(*n));
}

/* ---- the admin socket ---- */

int cli_admin_forward(const struct cli_node_args *a, int argc, char **argv, int *status)
{
    struct http_opts o;
    struct cit_err err;
    struct cit_buf out = {0}, errb = {0};
    char sock[1100];
    int rc;
    if (served) return 0;                     /* already inside the server */
    if (cli_node_opts(a, &o, &err)) return 0; /* offline: the verb reports it */
    node_admin_path(o.node.state, sock, sizeof(sock));
    rc = node_admin_call(sock, argc, argv, status, &out, &errb, &err);
    if (rc == CIT_ENOENT) return 0;
    if (rc) {
        fprintf(stderr, "citadel: the serving node at %s: %s\n", sock, err.msg);
        *status = 1;
    } else {
        if (out.len) fwrite(out.p, 1, out.len, stdout);
        if (errb.len) fwrite(errb.p, 1, errb.len, stderr);
    }
    cit_buf_free(&out);
    cit_buf_free(&errb);
    return 1;
}

/* An argument that names a file, made absolute: the server does not run
 * in the client's folder. */
int cli_abs_path(const char *in, char *out, size_t cap)
{
    char real[PATH_MAX];
    if (in[0] == '/') return snprintf(out, cap, "%s", in) < (int)cap ? 0 : -1;
    if (!realpath(in, real)) {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof(cwd))) return -1;
        return snprintf(out, cap, "%s/%s", cwd, in) < (int)cap ? 0 : -1;
    }
    return snprintf(out, cap, "%s", real) < (int)cap ? 0 : -1;
}

/* Sends a verb to the serving node, if one runs: its file arguments made
 * absolute, the flags that chose the node left out. Returns 1 with
 * *status when it was sent. file_flags: the flags whose value is a file;
 * pos_file: the positional argument is a file ("ID=PATH": its PATH). */
int cli_forward(const struct cli_node_args *na, const char *cmd, int argc, char **argv,
                const char *const *file_flags, int pos_file, int *status)
{
    char **v = cit_calloc((size_t)argc + 2, sizeof(char *)), buf[PATH_MAX + 200];
    int k = 0, sent;
    if (!v) return 0;
    v[k++] = cit_strndup(cmd, strlen(cmd));
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int file = 0;
        if (i + 1 < argc && (!strcmp(a, "--state") || !strcmp(a, "--policy") ||
                             !strcmp(a, "--ledger") || !strcmp(a, "--config"))) {
            i++;
            continue;
        }
        if (i + 1 < argc &&
            (!strcmp(a, "--name") || !strcmp(a, "--jurisdiction") || !strcmp(a, "--reason"))) {
            v[k++] = cit_strndup(a, strlen(a));
            v[k++] = cit_strndup(argv[i + 1], strlen(argv[i + 1]));
            i++;
            continue;
        }
        for (int f = 0; file_flags && file_flags[f]; f++)
            if (!strcmp(a, file_flags[f]) && i + 1 < argc) {
                v[k++] = cit_strndup(a, strlen(a));
                a = argv[++i];
                file = 1;
            }
        if (i > 0 && a[0] != '-' && pos_file && !file) file = 2;
        if (file) {
            const char *eq = file == 2 ? strchr(a, '=') : NULL;
            char absp[PATH_MAX + 100];
            if (cli_abs_path(eq ? eq + 1 : a, absp, sizeof(absp)))
                snprintf(absp, sizeof(absp), "%s", a);
            snprintf(buf, sizeof(buf), "%.*s%s", eq ? (int)(eq - a + 1) : 0, a, absp);
            a = buf;
        }
        v[k++] = cit_strndup(a, strlen(a));
    }
    sent = cli_admin_forward(na, k, v, status);
    for (int i = 0; i < k; i++) cit_free(v[i]);
    cit_free(v);
    return sent;
}

int cli_admin_exec(void *user, struct node *n, int argc, char **argv, struct cit_buf *out,
                   struct cit_buf *errb)
{
    char *ob = NULL, *eb = NULL;
    size_t on = 0, en = 0;
    FILE *fo = open_memstream(&ob, &on), *fe = open_memstream(&eb, &en);
    int rc = 2;
    (void)user;
    if (!fo || !fe) {
        if (fo) fclose(fo);
        if (fe) fclose(fe);
        free(ob);
        free(eb);
        return 1;
    }
    cli_out = fo;
    cli_err = fe;
    served = n;
    if (argc >= 2 && !strcmp(argv[0], "model") && strcmp(argv[1], "admit") &&
        strcmp(argv[1], "list") && strcmp(argv[1], "revoke") && strcmp(argv[1], "load") &&
        strcmp(argv[1], "unload"))
        fprintf(fe, "citadel: 'model %s' is not run by the server; run it offline\n", argv[1]);
    else if (argc >= 1 && !strcmp(argv[0], "model"))
        rc = cli_model_sign(argc - 1, argv + 1);
    else if (argc >= 1 && !strcmp(argv[0], "trust"))
        rc = cli_trust(argc - 1, argv + 1);
    else if (argc >= 1 && !strcmp(argv[0], "keys"))
        rc = cli_keys(argc - 1, argv + 1);
    else if (argc >= 1 && !strcmp(argv[0], "peer"))
        rc = cli_peer(argc - 1, argv + 1);
    else
        fprintf(fe, "citadel: '%s' is not an administrative verb (model, trust, keys, peer)\n",
                argc ? argv[0] : "");
    /* a revocation or a signer removed unloads what no longer holds */
    if (!rc && argc >= 2 && (!strcmp(argv[0], "model") || !strcmp(argv[0], "trust"))) {
        int k = node_models_recheck(n);
        if (k) fprintf(fe, "citadel: %d model%s unloaded\n", k, k == 1 ? "" : "s");
    }
    /* a locked-down server reads only what it was started with */
    {
        struct guard_status gs;
        guard_get_status(&gs);
        fflush(fe);
        if (rc && gs.fs && eb && strstr(eb, "Permission denied"))
            fprintf(fe,
                    "citadel: this node is locked down (docs/guard.md): it reads only its own "
                    "files and the lockdown_read folders of its config; add the file's folder "
                    "as 'lockdown_read = DIR' and restart, or run this while the node is "
                    "stopped\n");
    }
    served = NULL;
    cli_out = stdout;
    cli_err = stderr;
    fclose(fo);
    fclose(fe);
    cit_buf_add(out, ob, on);
    cit_buf_add(errb, eb, en);
    if (ob) explicit_bzero(ob, on); /* may hold a new API key */
    free(ob);
    free(eb);
    return rc;
}
