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

int cli_detect(int argc, char **argv)
{
    struct det_keyword kw[64];
    size_t n_kw = 0;
    const char *path = NULL;
    int redact = 0, rc;
    for (int i = 0; i < argc; i++) {
        if ((!strcmp(argv[i], "--keyword") || !strcmp(argv[i], "--exact")) && i + 1 < argc) {
            if (n_kw == sizeof(kw) / sizeof(kw[0])) {
                fprintf(stderr, "citadel detect: at most 64 keywords on the command line\n");
                return 2;
            }
            kw[n_kw].exact_case = !strcmp(argv[i], "--exact");
            kw[n_kw++].word = argv[++i];
        } else if (!strcmp(argv[i], "--redact")) {
            redact = 1;
        } else if (!path && (argv[i][0] != '-' || !strcmp(argv[i], "-"))) {
            path = argv[i];
        } else {
            path = NULL;
            break;
        }
    }
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
