/*
 * gguf: reading (mmap, full validation) and writing GGUF model files.
 *
 * Byte layout (all integers little-endian; versions 2 and 3 are identical on
 * the wire, version 1 used 32-bit counts and is refused):
 *
 *   offset  size  field
 *   0       4     magic "GGUF"
 *   4       4     u32 version
 *   8       8     u64 n_tensors
 *   16      8     u64 n_kv
 *   24      ...   n_kv key/value pairs:
 *                   string key        (u64 length, then that many bytes, no NUL)
 *                   u32 value type    (enum gguf_vtype)
 *                   value             scalar: its fixed size
 *                                     string: u64 length + bytes
 *                                     array:  u32 element type, u64 count,
 *                                             count elements (arrays nest)
 *   ...     ...   n_tensors tensor infos:
 *                   string name
 *                   u32 n_dims        (1..4)
 *                   u64 ne[n_dims]    (ne[0] is the row length, fastest varying)
 *                   u32 tensor type   (enum gguf_ttype)
 *                   u64 offset        (from the start of the data section)
 *   ...     pad   zeros up to a multiple of general.alignment (u32, default 32)
 *   data    ...   tensor data; each tensor starts at an aligned offset
 *
 * The reader checks every count, length, dimension, type, offset and the
 * alignment before using it, and refuses the file with a message that names
 * the field and its byte offset. Strings and scalar arrays are borrowed views
 * into the mapped file: they are not NUL-terminated and may be unaligned.
 */
#ifndef CITADEL_GGUF_H
#define CITADEL_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "citadel/core.h"

#define GGUF_MAGIC             0x46554747u /* "GGUF" read as a little-endian u32 */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS          4
#define GGUF_MAX_NAME          63         /* longest tensor name, as ggml allows */
#define GGUF_MAX_KV            65536      /* key/value pairs in one file */
#define GGUF_MAX_TENSORS       1048576    /* tensors in one file */
#define GGUF_MAX_STRING        (1u << 30) /* bytes in one string */
#define GGUF_MAX_ARRAY_DEPTH   8          /* nesting of arrays in arrays */
#define GGUF_MAX_ITEMS         (1u << 25) /* strings/arrays across all arrays */
#define GGUF_MAX_ALIGNMENT     (1u << 20)

enum gguf_vtype {
    GGUF_V_UINT8 = 0,
    GGUF_V_INT8 = 1,
    GGUF_V_UINT16 = 2,
    GGUF_V_INT16 = 3,
    GGUF_V_UINT32 = 4,
    GGUF_V_INT32 = 5,
    GGUF_V_FLOAT32 = 6,
    GGUF_V_BOOL = 7,
    GGUF_V_STRING = 8,
    GGUF_V_ARRAY = 9,
    GGUF_V_UINT64 = 10,
    GGUF_V_INT64 = 11,
    GGUF_V_FLOAT64 = 12,
    GGUF_V_COUNT
};

/* Tensor types, numbered as ggml numbers them (the numbers are the format). */
enum gguf_ttype {
    GGUF_T_F32 = 0,
    GGUF_T_F16 = 1,
    GGUF_T_Q4_0 = 2,
    GGUF_T_Q4_1 = 3,
    GGUF_T_Q5_0 = 6,
    GGUF_T_Q5_1 = 7,
    GGUF_T_Q8_0 = 8,
    GGUF_T_Q8_1 = 9,
    GGUF_T_Q2_K = 10,
    GGUF_T_Q3_K = 11,
    GGUF_T_Q4_K = 12,
    GGUF_T_Q5_K = 13,
    GGUF_T_Q6_K = 14,
    GGUF_T_Q8_K = 15,
    GGUF_T_I8 = 24,
    GGUF_T_I16 = 25,
    GGUF_T_I32 = 26,
    GGUF_T_I64 = 27,
    GGUF_T_F64 = 28,
    GGUF_T_BF16 = 30,
    GGUF_T_COUNT = 31
};

struct gguf_type_info {
    const char *name; /* "q4_K"; NULL for numbers that are not a known type */
    uint32_t blck;    /* elements per block */
    uint32_t size;    /* bytes per block */
};

/* NULL for an unknown type number. */
const struct gguf_type_info *gguf_type_info(uint32_t type);
const char *gguf_type_name(uint32_t type); /* "?" when unknown */

struct gguf_str {
    const char *p; /* not NUL-terminated */
    uint64_t n;
};

struct gguf_value {
    uint32_t type; /* enum gguf_vtype */
    union {
        uint64_t u; /* UINT8..UINT64, BOOL */
        int64_t i;  /* INT8..INT64 */
        double f;   /* FLOAT32, FLOAT64 */
        struct gguf_str s;
        struct {
            uint32_t type;            /* element type */
            uint64_t n;               /* element count */
            const uint8_t *raw;       /* scalar elements: n * size, little-endian */
            struct gguf_value *items; /* STRING or ARRAY elements: n values */
        } arr;
    };
};

struct gguf_kv {
    struct gguf_str key;
    struct gguf_value v;
    uint64_t offset; /* byte offset of the key in the file, for messages */
};

struct gguf_tensor {
    struct gguf_str name;
    uint32_t type; /* enum gguf_ttype */
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* unused dimensions are 1 */
    uint64_t n_elems;
    uint64_t offset;      /* from the start of the data section */
    uint64_t size;        /* bytes */
    const void *data;     /* borrowed view into the mapping */
    uint64_t info_offset; /* byte offset of the tensor info, for messages */
};

struct gguf_file {
    uint32_t version;
    uint64_t n_kv;
    struct gguf_kv *kv;
    uint64_t n_tensors;
    struct gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset; /* start of the data section */
    const uint8_t *base;  /* whole file */
    uint64_t size;
    /* private */
    int mapped;
    void *items_pool;
    uint32_t *kv_index, *tensor_index; /* open-addressing hash tables */
    uint32_t kv_index_cap, tensor_index_cap;
    char *path;
};

/* Opens and validates a file; the tensor data stays mapped until gguf_close. */
int gguf_open(const char *path, struct gguf_file **out /* out */, struct cit_err *err);
/* As gguf_open, but check(ctx, map, size, err) runs on the mapped file
 * before anything in it is parsed; its nonzero return is returned (border
 * control verifies the admitted digest here, on the bytes that are used). */
typedef int (*gguf_check_fn)(void *ctx, const void *map, size_t size, struct cit_err *err);
int gguf_open_checked(const char *path, gguf_check_fn check, void *ctx,
                      struct gguf_file **out /* out */, struct cit_err *err);
void gguf_close(struct gguf_file *f);

const struct gguf_kv *gguf_find_kv(const struct gguf_file *f, const char *key);
const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name);

/* Typed getters. Integer getters accept any integer type whose value fits;
 * float getters accept FLOAT32 and FLOAT64. Return CIT_ENOENT when absent,
 * CIT_EFORMAT (with a message) when present with the wrong type or range. */
int gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out, struct cit_err *err);
int gguf_get_f32(const struct gguf_file *f, const char *key, float *out, struct cit_err *err);
int gguf_get_bool(const struct gguf_file *f, const char *key, int *out, struct cit_err *err);
int gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out,
                 struct cit_err *err);
/* An array of the given element type (GGUF_V_COUNT: any). */
int gguf_get_arr(const struct gguf_file *f, const char *key, uint32_t elem_type,
                 const struct gguf_value **out, struct cit_err *err);

/* Scalar array element access (raw data may be unaligned). Element i of a
 * FLOAT32/FLOAT64 array, or of an integer array; 0 when the value is not
 * such an array or i is out of range. */
float gguf_arr_f32(const struct gguf_value *arr, uint64_t i);
int64_t gguf_arr_int(const struct gguf_value *arr, uint64_t i); /* any integer type */

int gguf_str_eq(struct gguf_str s, const char *c);

/* ---- writer ----
 *
 * Collects metadata and tensors, then writes the whole file at once to
 * PATH.tmp, fsyncs it and renames it over PATH, so a crash never leaves a
 * partial model behind. Tensor data is either borrowed (must stay valid
 * until gguf_writer_write returns) or produced by a callback at write time,
 * so multi-gigabyte models can be written without holding them in memory. */
struct gguf_writer;
typedef int (*gguf_fill_fn)(void *ctx, const char *name, void *dst, size_t size);

int gguf_writer_new(struct gguf_writer **out /* out */);
void gguf_writer_free(struct gguf_writer *w);
/* Any value, including nested arrays; the value is deep-copied. */
int gguf_writer_set(struct gguf_writer *w, const char *key, const struct gguf_value *v);
int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v);
int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *s);
/* Array of scalars: elem_type is a scalar vtype, data holds n little-endian values. */
int gguf_writer_set_arr(struct gguf_writer *w, const char *key, uint32_t elem_type,
                        const void *data, uint64_t n);
int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const struct gguf_str *strs,
                            uint64_t n);
int gguf_writer_add_tensor_fn(struct gguf_writer *w, const char *name, uint32_t type,
                              uint32_t n_dims, const uint64_t *ne, gguf_fill_fn fill, void *ctx);
int gguf_writer_write(struct gguf_writer *w, const char *path, struct cit_err *err);

/* Bytes of a tensor of this type and shape; 0 when invalid or overflowing. */
uint64_t gguf_tensor_bytes(uint32_t type, uint32_t n_dims, const uint64_t *ne);

#endif
