/* Shared helpers of the citadel command-line verbs. */
#ifndef CITADEL_CLI_H
#define CITADEL_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "citadel/border.h"
#include "citadel/core.h"
#include "citadel/policy.h"

int cli_parse_int(const char *s, long lo, long hi, long *out);
int cli_parse_float(const char *s, float *out);
void cli_json_str(FILE *f, const char *s, size_t n);
/* Reads the file at path ("-": standard input) into out, at most max
 * bytes: 0, CIT_EIO (errno says why), CIT_ERANGE (larger) or CIT_ENOMEM. */
int cli_read_input(const char *path, size_t max, struct cit_buf *out);

/* The node's state, policy and ledger for a verb (node.c). */
struct cli_node_args {
    const char *config, *state, *policy, *ledger; /* NULL: from the config, else defaults */
    int config_given;
};
/* 1 when flag is --config, --state, --policy or --ledger (and takes value). */
int cli_node_flag(struct cli_node_args *a, const char *flag, const char *value);

enum { CLI_NODE_POLICY = 1, CLI_NODE_STATE = 2, CLI_NODE_LEDGER = 4 };
struct cli_node {
    char state[1024], policy_path[1024], ledger_dir[1024];
    struct pol_policy *pol;
    struct brd_registry *reg;
    struct ledger *lg;
};
int cli_node_open(const struct cli_node_args *a, int what, struct cli_node *n /* out */,
                  struct cit_err *err);
void cli_node_close(struct cli_node *n);

int cli_run(int argc, char **argv);
int cli_trust(int argc, char **argv);
int cli_quantize(int argc, char **argv);
int cli_model_sign(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_keys(int argc, char **argv);
int cli_detect(int argc, char **argv);
int cli_policy(int argc, char **argv);
int cli_audit(int argc, char **argv);
int cli_fl(int argc, char **argv);

#endif
