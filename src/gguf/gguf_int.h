/* Internals of the gguf module: what its files share, and the entry
 * points its tests and fuzz targets call (not part of citadel/gguf.h). */
#ifndef CITADEL_GGUF_INT_H
#define CITADEL_GGUF_INT_H

#include "citadel/gguf.h"

/* ---- for tests and fuzz targets ---- */

int gguf_get_u64(const struct gguf_file *f, const char *key, uint64_t *out, struct cit_err *err);

/* Validates a buffer the caller keeps alive until gguf_close (fuzzing, tests). */
int gguf_open_memory(const void *buf, size_t len, struct gguf_file **out /* out */,
                     struct cit_err *err);

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                           const uint64_t *ne, const void *data);

int gguf_writer_set_alignment(struct gguf_writer *w, uint32_t alignment);

int gguf_writer_set_bool(struct gguf_writer *w, const char *key, int v);

int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v);

#endif
