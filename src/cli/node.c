/*
 * The node's own files for the verbs that act on it (model admit, list,
 * revoke; trust; run): the state file, the policy and the ledger, found
 * the way serve finds them: defaults, then the config file (--config, else
 * ./citadel.conf when it exists), then --state, --policy and --ledger.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "citadel/http.h"
#include "citadel/ledger.h"
#include "cli.h"

static int conf_cb(void *user, const char *key, const char *value, struct cit_err *err)
{
    return http_opts_set(user, key, value, err);
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

int cli_node_open(const struct cli_node_args *a, int what, struct cli_node *n, struct cit_err *err)
{
    struct http_opts o;
    const char *config = a->config ? a->config : "citadel.conf";
    int rc;
    memset(n, 0, sizeof(*n));
    http_opts_defaults(&o);
    if ((a->config_given || access(config, F_OK) == 0) &&
        (rc = cit_conf_load(config, conf_cb, &o, err)))
        return rc;
    snprintf(n->state, sizeof(n->state), "%s", a->state ? a->state : o.state);
    snprintf(n->policy_path, sizeof(n->policy_path), "%s", a->policy ? a->policy : o.policy);
    snprintf(n->ledger_dir, sizeof(n->ledger_dir), "%s", a->ledger ? a->ledger : o.ledger);
    if ((what & CLI_NODE_POLICY) && !n->policy_path[0])
        return cit_err_set(err, CIT_EINVAL,
                           "no policy: give --policy FILE (or 'policy' in citadel.conf)");
    if ((what & CLI_NODE_POLICY) && (rc = pol_load(n->policy_path, &n->pol, err))) goto fail;
    if ((what & CLI_NODE_STATE) && (rc = brd_registry_open(n->state, &n->reg, err))) goto fail;
    if (what & CLI_NODE_LEDGER) {
        struct ledger_opts lo = {0};
        char origin[LEDGER_MAX_ORIGIN];
        snprintf(origin, sizeof(origin), "%s/audit", n->pol ? n->pol->node_id : "citadel");
        lo.dir = n->ledger_dir;
        lo.origin = origin;
        lo.checkpoint_s = -1; /* a checkpoint on close covers what this command wrote */
        if ((rc = ledger_open(&lo, &n->lg, err))) goto fail;
    }
    return 0;
fail:
    cli_node_close(n);
    return rc;
}

void cli_node_close(struct cli_node *n)
{
    ledger_close(n->lg);
    brd_registry_close(n->reg);
    pol_free(n->pol);
    memset(n, 0, sizeof(*n));
}
