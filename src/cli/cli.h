/* Shared helpers of the citadel command-line verbs. */
#ifndef CITADEL_CLI_H
#define CITADEL_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "citadel/core.h"

int cli_parse_int(const char *s, long lo, long hi, long *out);
int cli_parse_float(const char *s, float *out);
void cli_json_str(FILE *f, const char *s, size_t n);
/* Reads the file at path ("-": standard input) into out, at most max
 * bytes: 0, CIT_EIO (errno says why), CIT_ERANGE (larger) or CIT_ENOMEM. */
int cli_read_input(const char *path, size_t max, struct cit_buf *out);

int cli_run(int argc, char **argv);
int cli_quantize(int argc, char **argv);
int cli_model_sign(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_keys(int argc, char **argv);
int cli_detect(int argc, char **argv);
int cli_policy(int argc, char **argv);
int cli_audit(int argc, char **argv);

#endif
