/* Helpers shared by the benchmarks. */
#ifndef CITADEL_BENCH_UTIL_H
#define CITADEL_BENCH_UTIL_H

#include <stddef.h>

#include "citadel/engine.h"

double now_s(void);
/* Sorts v in place. */
double median(double *v, int n);
/* "1,4,16" into out (at most cap values, each positive); the count, or -1
 * for anything else. */
int parse_int_list(const char *s, int *out, int cap);
/* $CITADEL_BENCH_CACHE, default ~/.cache/citadel-bench. */
const char *cache_dir(void);
/* The TinyLlama-1.1B-shaped synthetic model in mix (q8_0, q4_0, q4_k_m),
 * generated once into the cache; its path in path. "MIX-moe" is the same
 * width with Mixtral's experts (8 of ffn 2816, 2 used per token). */
int ensure_model(const char *mix_name, struct cit_pool *pool, char *path, size_t cap);
/* A bert encoder in bge-small-en-v1.5's shape (384 wide, 12 layers), f16,
 * mean pooling: for embeddings per second. */
int ensure_bert(struct cit_pool *pool, char *path, size_t cap);

/* The node's state file at path (its schema made), through a node opened
 * with just its state; close with node_close(*node). NULL on error. */
struct node;
struct cit_db *bench_state_open(const char *path, struct node **node, struct cit_err *err);

#endif
