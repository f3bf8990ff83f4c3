/*
 * Minimal test harness: every test is a function registered in test_list.h;
 * `test_citadel [name...]` runs all or the named ones. A failed CHECK ends
 * the test and is reported with file and line. The last line of a run is
 * "N passed, N failed".
 */
#ifndef CITADEL_TEST_H
#define CITADEL_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "citadel/core.h"

/* Prototypes of every registered test. */
#define T(name) void test_##name(void);
#include "test_list.h"
#undef T
#undef TE

void t_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int t_failed(void);
void t_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            t_fail(__FILE__, __LINE__, "%s", #c);                                                  \
            return;                                                                                \
        }                                                                                          \
    } while (0)
#define CHECKF(c, ...)                                                                             \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            t_fail(__FILE__, __LINE__, __VA_ARGS__);                                               \
            return;                                                                                \
        }                                                                                          \
    } while (0)
/* For helpers that return int: 0 ok, -1 failed (already reported). */
#define CHECK_RET(c, ...)                                                                          \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            t_fail(__FILE__, __LINE__, __VA_ARGS__);                                               \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

/* Directory with the shared models: $CITADEL_MODELS or ../shared/models. */
const char *t_models_dir(void);
/* Path of a shared model file (static buffer, valid until the next call). */
const char *t_model_path(const char *name);
/* A scratch directory for this run, created on first use. */
const char *t_tmpdir(void);
/* Flags for `citadel run` on a model that is not admitted: --unvetted with
 * the test policy (which allows it), a scratch state file and ledger. */
const char *t_run_node(void);
/* Writes n bytes to path (replacing it): 0, or -1. */
int t_write_file(const char *path, const void *p, size_t n);
/* Reads a whole file; caller frees with cit_free. NULL on error. */
char *t_read_file(const char *path, size_t *len);
/* Runs a shell command, captures stdout (caller frees); returns exit status. */
int t_run(const char *cmd, char **out);
/* Every kernel set this CPU has, the scalar one first (test_kernels.c):
 * how many were written to sets. */
#define T_MAX_KERNEL_SETS 3
struct eng_kernels;
int t_kernel_sets(struct eng_kernels *sets);
/* Deterministic pseudo-random numbers for test data. */
uint64_t t_rand(uint64_t *state);
float t_randf(uint64_t *state); /* uniform in [-1, 1) */

/* ---- tiny JSON reader (test data only) ---- */
enum tj_type { TJ_NULL, TJ_BOOL, TJ_NUM, TJ_STR, TJ_ARR, TJ_OBJ };
struct tj {
    enum tj_type type;
    double num;
    char *str;        /* TJ_STR, NUL-terminated, unescaped */
    struct tj *items; /* TJ_ARR elements / TJ_OBJ values */
    char **keys;      /* TJ_OBJ */
    int n;
};
struct tj *tj_parse(const char *text, size_t len);
void tj_free(struct tj *j);
const struct tj *tj_get(const struct tj *obj, const char *key);

/* The node's state file at path, with its schema (node/state.c): for the
 * modules that keep their tables in it (quotas, the border registry). */
struct cit_db;
struct cit_db *t_state_open(const char *path, struct cit_err *err);

/* ---- tiny model builder (tests/model_build.c) ---- */
struct t_model_spec {
    const char *arch; /* "llama" or "qwen2" */
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab;
    uint32_t wtype; /* type of the 2-D weights */
    int tied;
    uint64_t seed;
};
/* Writes a random model with an SPM vocabulary of n_vocab tokens to path. */
int t_build_model(const char *path, const struct t_model_spec *spec);
/* Copies the model at in to out with metadata key set to v (added if the
 * file lacks it); every tensor as it was. */
struct gguf_value;
int t_rewrite_kv(const char *in, const char *out, const char *key, const struct gguf_value *v);

#endif
