/*
 * citadel detect FILE|- [--keyword WORD]... [--exact WORD]... [--redact]
 *
 * Prints the findings in FILE (or standard input) as JSON lines, nothing
 * when there are none; --redact prints the redacted text instead. The
 * exit status is 0 either way; 1 when the input cannot be read or
 * scanned, 2 for a usage error.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "citadel/detect.h"
#include "cli.h"

#define DETECT_MAX_INPUT (256u << 20) /* bytes read from a file or stdin */

void cli_usage_detect(FILE *f)
{
    fputs("usage: citadel detect FILE|- [--keyword WORD]... [--exact WORD]... [--redact]\n", f);
}

struct kw_list {
    struct det_keyword v[64];
    size_t n;
};

static int add_kw(struct kw_list *l, const char *w, int exact)
{
    if (l->n == sizeof(l->v) / sizeof(l->v[0])) return -1; /* at most 64 on the command line */
    l->v[l->n].exact_case = exact;
    l->v[l->n++].word = w;
    return 0;
}

static int add_keyword(void *l, const char *w)
{
    return add_kw(l, w, 0);
}

static int add_exact(void *l, const char *w)
{
    return add_kw(l, w, 1);
}

int cli_detect(int argc, char **argv)
{
    struct kw_list kl = {0};
    struct det_keyword *kw = kl.v;
    const char *path = NULL, *pos[1];
    int redact = 0, rc, np;
    const struct cli_flag flags[] = {{"--keyword", CLI_FN, &kl, add_keyword, 0, 0},
                                     {"--exact", CLI_FN, &kl, add_exact, 0, 0},
                                     {"--redact", CLI_BOOL, &redact, NULL, 0, 0},
                                     {NULL, 0, NULL, NULL, 0, 0}};
    size_t n_kw;
    if (cli_flags_parse("detect", flags, NULL, argc, argv, pos, 1, &np)) {
        cli_usage_detect(stderr);
        return 2;
    }
    if (np) path = pos[0];
    n_kw = kl.n;
    if (!path) {
        cli_usage_detect(stderr);
        return 2;
    }
    struct cit_err err = {{0}};
    struct det_scanner *sc;
    if (det_scanner_new(kw, n_kw, &sc, &err)) {
        fprintf(stderr, "citadel detect: %s\n", err.msg);
        return 1;
    }
    struct cit_buf in = {0}, out = {0};
    rc = cli_read_input(path, DETECT_MAX_INPUT, &in);
    if (rc) {
        fprintf(stderr, "citadel detect: %s: %s\n", path,
                rc == CIT_ERANGE ? "larger than 256 MiB"
                : rc == CIT_EIO  ? strerror(errno)
                                 : cit_strerror(rc));
    } else {
        struct det_findings fd = {0};
        rc = det_scan(sc, in.p ? in.p : "", in.len, &fd);
        if (rc) {
            fprintf(stderr, "citadel detect: %s: scan failed: %s\n", path, cit_strerror(rc));
        } else if (redact) {
            struct det_redaction r;
            rc = det_redact(in.p ? in.p : "", in.len, &fd, &r);
            if (!rc) {
                fwrite(r.text.p, 1, r.text.len, stdout);
                det_redaction_free(&r);
            }
        } else {
            rc = det_findings_json(sc, in.p, &fd, &out);
            if (!rc && out.len) fwrite(out.p, 1, out.len, stdout);
        }
        det_findings_free(&fd);
    }
    cit_buf_free(&in);
    cit_buf_free(&out);
    det_scanner_free(sc);
    return rc ? 1 : 0;
}
