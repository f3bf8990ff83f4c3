/*
 * citadel policy check FILE
 * citadel policy test FILE CASES
 *
 * check validates the policy and prints a summary with its hash (exit 0),
 * or the first error with its line (exit 1). test runs table-driven cases
 * and exits 0 only when every case gives the expected decision.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "citadel/policy.h"
#include "cli.h"

void cli_usage_policy(FILE *f)
{
    fputs("usage: citadel policy check FILE\n"
          "       citadel policy test FILE CASES\n",
          f);
}

int cli_policy(int argc, char **argv)
{
    struct cit_err err = {{0}};
    struct pol_policy *p;
    const struct cli_flag none[] = {{NULL, 0, NULL, NULL, 0, 0}};
    const char *pos[3];
    int n_pos, check, test;
    if (argc < 1 || cli_flags_parse("policy", none, NULL, argc, argv, pos, 3, &n_pos)) {
        cli_usage_policy(stderr);
        return 2;
    }
    check = n_pos == 2 && !strcmp(pos[0], "check");
    test = n_pos == 3 && !strcmp(pos[0], "test");
    argv = (char **)pos; /* the positional arguments, options refused above */
    if (!check && !test) {
        cli_usage_policy(stderr);
        return 2;
    }
    if (pol_load(argv[1], &p, &err)) {
        fprintf(stderr, "citadel policy: %s\n", err.msg);
        return 1;
    }
    if (check) {
        printf("%s: valid policy for node %s (%s)\n", argv[1], p->node_id, p->jurisdiction);
        printf("  sha256 %s\n", p->hash_hex);
        printf("  classes:");
        for (int i = 0; i < p->n_classes; i++) printf(" %s", p->classes[i]);
        printf("\n  %d tenants, %d models, %d peers, %d keywords, %d rules\n", p->n_tenants,
               p->n_models, p->n_peers, p->n_keywords, p->n_rules);
        if (!p->adm.present) {
            printf("  admission: none (no model can be admitted)\n");
        } else {
            printf("  admission: licenses");
            for (int i = 0; i < p->adm.n_licenses; i++) printf(" %s", p->adm.licenses[i]);
            printf("; training data from");
            for (int i = 0; i < p->adm.n_data_places; i++) printf(" %s", p->adm.data_places[i]);
            printf("; %d pinned templates; unvetted %s\n", p->adm.n_pins,
                   p->adm.unvetted ? "allowed" : "denied");
        }
        printf("  lockdown: %s\n",
               p->lockdown == POL_LOCKDOWN_BEST_EFFORT ? "best-effort" : "required");
        if (p->profile.present) {
            const struct pol_profile *f = &p->profile;
            printf("  profile: %s (%s), %s; for", f->id, f->name[0] ? f->name : "unnamed",
                   f->file);
            for (int i = 0; i < f->n_jurisdictions; i++) printf(" %s", f->jurisdictions[i]);
            printf("; languages");
            for (int i = 0; i < f->n_languages; i++) printf(" %s", f->languages[i]);
            if (!f->n_languages) printf(" (none listed)");
            printf("; guardrail %zu bytes, notice %zu bytes%s",
                   f->guardrail ? strlen(f->guardrail) : 0, f->notice ? strlen(f->notice) : 0,
                   f->output.append_notice ? " (appended to chat answers)" : "");
            if (f->output.max_tokens) printf("; max_tokens %d", f->output.max_tokens);
            printf("\n");
        }
        if (p->site.present) {
            const char *op = p->site.grid_operator[0] ? p->site.grid_operator : "no grid operator";
            printf("  site: %s%s%s", op, p->site.country[0] ? ", " : "", p->site.country);
            if (p->site.low_carbon_share >= 0)
                printf(", low-carbon share %.0f%%", p->site.low_carbon_share * 100);
            if (p->site.onsite_generation[0]) printf(", on site: %s", p->site.onsite_generation);
            printf("\n");
        }
        pol_free(p);
        return 0;
    }
    struct cit_buf cases = {0};
    int rc = cli_read_input(argv[2], POL_MAX_FILE, &cases);
    if (rc) {
        fprintf(stderr, "citadel policy: %s: %s\n", argv[2],
                rc == CIT_EIO ? strerror(errno) : cit_strerror(rc));
        pol_free(p);
        return 1;
    }
    struct cit_buf report = {0};
    int pass, fail;
    rc = pol_run_cases(p, argv[2], cases.p ? cases.p : "", cases.len, &report, &pass, &fail, &err);
    if (report.len) fwrite(report.p, 1, report.len, stdout);
    if (rc)
        fprintf(stderr, "citadel policy: %s\n", err.msg);
    else
        printf("%d passed, %d failed\n", pass, fail);
    cit_buf_free(&report);
    cit_buf_free(&cases);
    pol_free(p);
    return rc || fail ? 1 : 0;
}
