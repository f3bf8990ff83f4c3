/*
 * One table-driven flag parser for the verbs: each verb lists its flags
 * (name, what it takes, where it goes) and gets the positional arguments
 * back. Unknown flags, missing values and surplus arguments are usage
 * errors that name the argument; the node's own flags (--config, --state,
 * --policy, --ledger) are one kind, so every verb that acts on a node
 * takes them the same way. (`--help` is answered before a verb runs, by
 * main.c's verb table.)
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct cli_flag *find(const struct cli_flag *t, const char *name)
{
    for (; t && t->name; t++)
        if (!strcmp(t->name, name)) return t;
    return NULL;
}

int cli_flags_parse(const char *verb, const struct cli_flag *table, struct cli_node_args *node,
                    int argc, char **argv, const char **pos, int max_pos, int *n_pos)
{
    int rc;
    *n_pos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const struct cli_flag *f;
        if (a[0] != '-' || !a[1]) {
            if (*n_pos == max_pos) {
                fprintf(cli_err, "citadel %s: unexpected argument '%s'\n", verb, a);
                return 2;
            }
            pos[(*n_pos)++] = a;
            continue;
        }
        if (node && v && cli_node_flag(node, a, v)) {
            i++;
            continue;
        }
        if (!(f = find(table, a))) {
            struct cli_node_args probe = {0};
            if (node && !v && cli_node_flag(&probe, a, ""))
                fprintf(cli_err, "citadel %s: %s needs a value\n", verb, a);
            else
                fprintf(cli_err, "citadel %s: unknown option '%s'\n", verb, a);
            return 2;
        }
        if (f->kind == CLI_BOOL) {
            *(int *)f->dst = 1;
            continue;
        }
        if (!v) {
            fprintf(cli_err, "citadel %s: %s needs a value\n", verb, a);
            return 2;
        }
        i++;
        if (f->kind == CLI_STR) {
            *(const char **)f->dst = v;
        } else if (f->kind == CLI_INT) {
            if (cli_parse_int(v, (long)f->lo, (long)f->hi, f->dst)) {
                fprintf(cli_err, "citadel %s: %s '%s': a whole number from %.0f to %.0f\n", verb, a,
                        v, f->lo, f->hi);
                return 2;
            }
        } else if (f->kind == CLI_FLOAT) {
            float x;
            if (cli_parse_float(v, &x) || !(x >= f->lo && x <= f->hi)) {
                fprintf(cli_err, "citadel %s: %s '%s': a number from %g to %g\n", verb, a, v, f->lo,
                        f->hi);
                return 2;
            }
            *(float *)f->dst = x;
        } else if ((rc = f->fn(f->dst, v))) {
            if (rc < 0) fprintf(cli_err, "citadel %s: %s '%s' is not accepted\n", verb, a, v);
            return 2;
        }
    }
    return 0;
}
