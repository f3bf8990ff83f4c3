/*
 * citadel keys add|list|revoke: API keys in the node's state file, or in
 * the running serve's (its admin socket) while it runs.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "citadel/http.h"
#include "citadel/policy.h"
#include "cli.h"

void cli_usage_keys(FILE *f)
{
    fputs("usage: citadel keys add --tenant T [--scope S]... [--state F]\n"
          "       citadel keys list [--json] [--state F]\n"
          "       citadel keys revoke ID [--state F]\n"
          "scopes: endpoint:chat|completions|models|metrics|policy|admin|*  model:ID|*\n"
          "        (endpoint:* grants everything but admin, which is named)\n"
          "        (default: " NODE_DEFAULT_SCOPES ")\n",
          f);
}

static void list_text(void *user, const struct node_key_info *ki)
{
    char when[32];
    (void)user;
    cit_utc_seconds(ki->created, when);
    fprintf(cli_out, "%s  %-16s %s  %-7s %s\n", ki->id, ki->tenant, when,
            ki->revoked ? "revoked" : "active", ki->scopes);
}

static void list_json(void *user, const struct node_key_info *ki)
{
    (void)user;
    fprintf(cli_out, "{\"id\":\"%s\",\"tenant\":", ki->id);
    cli_json_str(cli_out, ki->tenant, strlen(ki->tenant));
    fprintf(cli_out, ",\"scopes\":");
    cli_json_str(cli_out, ki->scopes, strlen(ki->scopes));
    fprintf(cli_out, ",\"created\":%lld,\"revoked\":%lld}\n", (long long)ki->created,
            (long long)ki->revoked);
}

/* --scope S, repeatable: appended to the list in dst (1024 bytes). */
static int add_scope(void *dst, const char *v)
{
    char *scopes = dst;
    size_t k = strlen(scopes);
    if (k + strlen(v) + 2 > 1024) return -1;
    snprintf(scopes + k, 1024 - k, "%s%s", k ? " " : "", v);
    return 0;
}

int cli_keys(int argc, char **argv)
{
    const char *verb = argc > 0 ? argv[0] : "", *tenant = NULL, *id = NULL;
    char scopes[1024] = "";
    int json = 0, rc, status;
    struct cli_node_args na = {0};
    struct cli_node n;
    struct cit_err err;

    {
        const struct cli_flag flags[] = {{"--json", CLI_BOOL, &json, NULL, 0, 0},
                                         {"--tenant", CLI_STR, &tenant, NULL, 0, 0},
                                         {"--scope", CLI_FN, scopes, add_scope, 0, 0},
                                         {NULL, 0, NULL, NULL, 0, 0}};
        const char *pos[1];
        int np;
        if ((rc = cli_flags_parse("keys", flags, &na, argc - (argc > 0), argv + (argc > 0), pos, 1,
                                  &np))) {
            cli_usage_keys(cli_err);
            return rc;
        }
        if (np) id = pos[0];
    }
    if (strcmp(verb, "add") && strcmp(verb, "list") && strcmp(verb, "revoke")) {
        cli_usage_keys(cli_err);
        return 2;
    }
    if ((!strcmp(verb, "add") && !tenant) || (!strcmp(verb, "revoke") && !id)) {
        cli_usage_keys(cli_err);
        return 2;
    }
    /* while serve runs it owns the state file: ask it */
    if (cli_forward(&na, "keys", argc, argv, NULL, 0, &status)) return status;
    /* a change is recorded in the node's ledger, which its policy names */
    if (cli_node_open(&na,
                      strcmp(verb, "list") ? CLI_NODE_POLICY | CLI_NODE_STATE | CLI_NODE_LEDGER
                                           : CLI_NODE_STATE,
                      &n, &err)) {
        fprintf(cli_err, "citadel keys: %s\n", err.msg);
        return 1;
    }
    if (!strcmp(verb, "add")) {
        char key[NODE_KEY_LEN + 1], kid[NODE_KEY_ID_LEN + 1];
        rc = node_key_add(n.node, tenant, scopes[0] ? scopes : NODE_DEFAULT_SCOPES, key, kid, &err);
        if (!rc) {
            fprintf(cli_out, "%s\n", key);
            fprintf(cli_err,
                    "citadel keys: key %s for tenant '%s' stored in %s; it is shown only "
                    "this once\n",
                    kid, tenant, cit_db_path(node_state(n.node)));
            if (n.pol && pol_tenant_index(n.pol, tenant) < 0)
                fprintf(cli_err,
                        "citadel keys: the policy does not list tenant '%s': its requests are "
                        "denied until it has an entry under 'tenants:'\n",
                        tenant);
        }
    } else if (!strcmp(verb, "list")) {
        rc = node_key_list(n.node, json ? list_json : list_text, NULL, &err);
    } else {
        rc = node_key_revoke(n.node, id, &err);
        if (!rc) fprintf(cli_err, "citadel keys: revoked %s\n", id);
    }
    if (rc) fprintf(cli_err, "citadel keys: %s\n", err.msg);
    cli_node_close(&n);
    return rc ? 1 : 0;
}
