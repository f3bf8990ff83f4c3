/* Shared helpers of the citadel command-line verbs. */
#ifndef CITADEL_CLI_H
#define CITADEL_CLI_H

#include <stddef.h>
#include <stdio.h>

int cli_parse_int(const char *s, long lo, long hi, long *out);
int cli_parse_float(const char *s, float *out);
void cli_json_str(FILE *f, const char *s, size_t n);

int cli_run(int argc, char **argv);
int cli_quantize(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_keys(int argc, char **argv);
int cli_detect(int argc, char **argv);
int cli_policy(int argc, char **argv);

#endif
