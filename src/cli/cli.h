/* Shared helpers of the citadel command-line verbs. */
#ifndef CITADEL_CLI_H
#define CITADEL_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "citadel/border.h"
#include "citadel/core.h"
#include "citadel/node.h"
#include "citadel/policy.h"

int cli_parse_int(const char *s, long lo, long hi, long *out);
int cli_parse_float(const char *s, float *out);
void cli_json_str(FILE *f, const char *s, size_t n);
/* Reads the file at path ("-": standard input) into out, at most max
 * bytes: 0, CIT_EIO (errno says why), CIT_ERANGE (larger) or CIT_ENOMEM. */
int cli_read_input(const char *path, size_t max, struct cit_buf *out);
/* A verifier key (NAME+ID+KEY) from path (or - for stdin); err names the
 * file and what is wrong. */
struct ledger_vkey;
int cli_read_vkey(const char *path, struct ledger_vkey *vk, struct cit_err *err);

/* Where verbs write: stdout and stderr, or, for a verb that runs inside
 * serve for an admin request, that request's buffers (node.c). */
extern FILE *cli_out, *cli_err;
void cli_streams_init(void);

/* The node for a verb (node.c). */
struct cli_node_args {
    const char *config, *state, *policy, *ledger; /* NULL: from the config, else defaults */
    int config_given;
};
/* 1 when flag is --config, --state, --policy or --ledger (and takes value). */
int cli_node_flag(struct cli_node_args *a, const char *flag, const char *value);
struct http_opts;
/* The settings: defaults, the config file, then the flags. */
int cli_node_opts(const struct cli_node_args *a, struct http_opts *o, struct cit_err *err);

enum { CLI_NODE_POLICY = 1, CLI_NODE_STATE = 2, CLI_NODE_LEDGER = 4, CLI_NODE_GATEWAY = 8 };
struct cli_node {
    struct node *node;
    int borrowed; /* the serving node (an admin request): not closed here */
    const struct pol_policy *pol;
    struct brd_registry *reg;
    struct ledger *lg;
};
int cli_node_open(const struct cli_node_args *a, int what, struct cli_node *n /* out */,
                  struct cit_err *err);
void cli_node_close(struct cli_node *n);

/* A verb's flags (flags.c): a table ending with {NULL}. CLI_STR stores the
 * value in *(const char **)dst, CLI_BOOL sets *(int *)dst, CLI_INT parses
 * a whole number in [lo, hi] into *(long *)dst, CLI_FLOAT a number in
 * [lo, hi] into *(float *)dst, CLI_FN calls fn(dst, value) (non-zero:
 * refused; positive: fn said why on cli_err). A flag with two spellings has two rows. */
enum { CLI_STR, CLI_BOOL, CLI_INT, CLI_FLOAT, CLI_FN };
struct cli_flag {
    const char *name;
    int kind;
    void *dst;
    int (*fn)(void *dst, const char *value);
    double lo, hi;
};
/* Parses argv by table; node (may be NULL) takes --config, --state,
 * --policy and --ledger. Positional arguments go to pos (at most max_pos).
 * 0, or 2 after saying what was wrong on cli_err. */
int cli_flags_parse(const char *verb, const struct cli_flag *table, struct cli_node_args *node,
                    int argc, char **argv, const char **pos, int max_pos, int *n_pos);

/* While serve runs: sends the verb to it; 1 with *status when it answered
 * (what it printed is printed), 0 when no node serves (work offline). */
int cli_admin_forward(const struct cli_node_args *a, int argc, char **argv, int *status);
/* cli_admin_forward for a verb's own argv: the flags that chose the node
 * left out, file arguments made absolute. file_flags: flags whose value is
 * a file; pos_file: the positional argument is one ("ID=PATH": its PATH). */
int cli_forward(const struct cli_node_args *na, const char *cmd, int argc, char **argv,
                const char *const *file_flags, int pos_file, int *status);
/* The admin socket's handler in serve (node_admin_fn). */
int cli_admin_exec(void *user, struct node *n, int argc, char **argv, struct cit_buf *out,
                   struct cit_buf *err);
/* in, made absolute (the server's folder is not the client's). */
int cli_abs_path(const char *in, char *out, size_t cap);

/* Each verb's usage, for its errors and for `citadel VERB --help`. */
void cli_usage_run(FILE *f);
void cli_usage_serve(FILE *f);
void cli_usage_keys(FILE *f);
void cli_usage_model(FILE *f);
void cli_usage_trust(FILE *f);
void cli_usage_quantize(FILE *f);
void cli_usage_detect(FILE *f);
void cli_usage_policy(FILE *f);
void cli_usage_audit(FILE *f);
void cli_usage_fl(FILE *f);
void cli_usage_peer(FILE *f);

int cli_run(int argc, char **argv);
int cli_embed(int argc, char **argv);
void cli_usage_embed(FILE *f);
int cli_trust(int argc, char **argv);
int cli_quantize(int argc, char **argv);
int cli_model_sign(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_vet(int argc, char **argv);
/* "--max-body" -> "max_body": the config key a serve flag sets. */
void cli_flag_key(const char *flag, char *key, size_t cap);
void cli_usage_vet(FILE *f);
struct guard_spec;
struct pol_policy;
/* What `citadel serve` locks itself down to with these settings (its
 * config file readable for SIGHUP): vet's child takes the same. */
int cli_serve_spec(const char *config, const struct http_opts *o, const struct pol_policy *pol,
                   struct guard_spec *gs, struct cit_err *err);
int cli_keys(int argc, char **argv);
int cli_detect(int argc, char **argv);
int cli_policy(int argc, char **argv);
int cli_audit(int argc, char **argv);
int cli_fl(int argc, char **argv);
int cli_peer(int argc, char **argv);

#endif
