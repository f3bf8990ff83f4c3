/* GGUF reader and writer: round trips, and a corpus of malformed files with
 * one case per bug class that broke other GGUF readers. */
#include <stdlib.h>
#include <unistd.h>

#include "citadel/gguf.h"
#include "test.h"
#include "../src/core/core_int.h"
#include "../src/gguf/gguf_int.h"

/* ---- byte builder ---- */

struct bb {
    uint8_t p[8192];
    size_t n;
};

static void bb_raw(struct bb *b, const void *p, size_t n)
{
    if (b->n + n > sizeof(b->p)) abort(); /* a test bug, not input */
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void bb_u32(struct bb *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    bb_raw(b, x, 4);
}
static void bb_u64(struct bb *b, uint64_t v)
{
    bb_u32(b, (uint32_t)v);
    bb_u32(b, (uint32_t)(v >> 32));
}
static void bb_str(struct bb *b, const char *s)
{
    bb_u64(b, strlen(s));
    bb_raw(b, s, strlen(s));
}
static void bb_header(struct bb *b, uint64_t n_tensors, uint64_t n_kv)
{
    b->n = 0;
    bb_u32(b, GGUF_MAGIC);
    bb_u32(b, 3);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}
/* A tensor info; dims given as an array. */
static void bb_tensor(struct bb *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                      uint32_t type, uint64_t offset)
{
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) bb_u64(b, ne[i]);
    bb_u32(b, type);
    bb_u64(b, offset);
}
static void bb_pad(struct bb *b, size_t align, size_t extra)
{
    while (b->n % align) b->p[b->n++] = 0;
    memset(b->p + b->n, 0x11, extra);
    b->n += extra;
}

/* Expects the buffer to be refused with a message containing `want`. */
static int expect_bad(struct bb *b, const char *want, const char *what)
{
    struct gguf_file *f = NULL;
    struct cit_err err = {{0}};
    int rc = gguf_open_memory(b->p, b->n, &f, &err);
    if (rc == 0) {
        gguf_close(f);
        CHECK_RET(0, "%s: malformed file was accepted", what);
    }
    CHECK_RET(rc == CIT_EFORMAT || rc == CIT_ENOTSUP, "%s: rc %d (%s)", what, rc, err.msg);
    CHECK_RET(strstr(err.msg, want), "%s: message '%s' lacks '%s'", what, err.msg, want);
    return 0;
}

void test_gguf_malformed_corpus(void)
{
    struct bb b;
    uint64_t ne2[2] = {32, 2}, ne1[1] = {32};
    int bad = 0;

    bb_header(&b, 0, 0);
    b.p[0] = 'X';
    bad |= expect_bad(&b, "bad magic at byte 0", "magic");
    bb_header(&b, 0, 0);
    b.p[4] = 1;
    bad |= expect_bad(&b, "version 1", "version 1");
    bb_header(&b, 0, 0);
    b.p[4] = 0, b.p[7] = 3;
    bad |= expect_bad(&b, "big-endian", "big-endian");

    /* Counts so large that count * size wraps. */
    bb_header(&b, 0, UINT64_MAX / 8 + 1);
    bad |= expect_bad(&b, "key/value count", "kv count wrap");
    bb_header(&b, (uint64_t)1 << 61, 0);
    bad |= expect_bad(&b, "tensor count", "tensor count wrap");

    /* String lengths: wrapping, and past the end of the file. */
    bb_header(&b, 0, 1);
    bb_u64(&b, UINT64_MAX);
    bb_pad(&b, 1, 64);
    bad |= expect_bad(&b, "has length", "key length wrap");
    bb_header(&b, 0, 1);
    bb_u64(&b, 1000);
    bb_raw(&b, "abcdefgh", 8);
    bad |= expect_bad(&b, "more than the", "key length past end");
    bb_header(&b, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_V_STRING);
    bb_u64(&b, (uint64_t)1 << 40);
    bad |= expect_bad(&b, "at byte", "string value past end");

    /* Arrays: count * element size wrapping, count past the end. */
    bb_header(&b, 0, 1);
    bb_str(&b, "a");
    bb_u32(&b, GGUF_V_ARRAY);
    bb_u32(&b, GGUF_V_UINT32);
    bb_u64(&b, (uint64_t)1 << 62);
    bad |= expect_bad(&b, "array of", "array count wrap");
    bb_header(&b, 0, 1);
    bb_str(&b, "a");
    bb_u32(&b, GGUF_V_ARRAY);
    bb_u32(&b, GGUF_V_STRING);
    bb_u64(&b, 1000);
    bb_u64(&b, 1);
    bad |= expect_bad(&b, "array of", "string array past end");
    bb_header(&b, 0, 1);
    bb_str(&b, "a");
    bb_u32(&b, GGUF_V_ARRAY);
    bb_u32(&b, 77);
    bb_u64(&b, 0);
    bad |= expect_bad(&b, "unknown type 77", "array of unknown type");

    /* Nested arrays deep enough to exhaust a recursive reader's stack. */
    bb_header(&b, 0, 1);
    bb_str(&b, "deep");
    bb_u32(&b, GGUF_V_ARRAY);
    for (int i = 0; i < 400; i++) {
        bb_u32(&b, GGUF_V_ARRAY);
        bb_u64(&b, 1);
    }
    bad |= expect_bad(&b, "nests arrays deeper", "nesting");

    /* Unknown value type, bad bool, duplicate keys. */
    bb_header(&b, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, 13);
    bad |= expect_bad(&b, "unknown value type 13", "value type");
    bb_header(&b, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_V_BOOL);
    bb_raw(&b, "\x02", 1);
    bad |= expect_bad(&b, "not 0 or 1", "bool");
    bb_header(&b, 0, 2);
    bb_str(&b, "same");
    bb_u32(&b, GGUF_V_UINT8);
    bb_raw(&b, "\x01", 1);
    bb_str(&b, "same");
    bb_u32(&b, GGUF_V_UINT8);
    bb_raw(&b, "\x02", 1);
    bad |= expect_bad(&b, "duplicate key 'same'", "duplicate key");

    /* general.alignment: zero, not a power of two, huge, wrong type. */
    {
        uint32_t vals[] = {0, 3, 1u << 31};
        for (int i = 0; i < 3; i++) {
            bb_header(&b, 0, 1);
            bb_str(&b, "general.alignment");
            bb_u32(&b, GGUF_V_UINT32);
            bb_u32(&b, vals[i]);
            bad |= expect_bad(&b, "power of two", "alignment value");
        }
        bb_header(&b, 0, 1);
        bb_str(&b, "general.alignment");
        bb_u32(&b, GGUF_V_UINT64);
        bb_u64(&b, 32);
        bad |= expect_bad(&b, "must be uint32", "alignment type");
        bb_header(&b, 0, 1);
        bb_str(&b, "general.alignment");
        bb_u32(&b, GGUF_V_STRING);
        bb_str(&b, "32");
        bad |= expect_bad(&b, "must be uint32", "alignment string");
    }

    /* Tensor dimensions. */
    {
        uint64_t big[3] = {(uint64_t)1 << 32, (uint64_t)1 << 32, (uint64_t)1 << 32};
        uint64_t five[5] = {32, 1, 1, 1, 1}, zero[2] = {32, 0}, neg[2] = {32, UINT64_MAX};
        uint64_t f32wrap[2] = {(uint64_t)1 << 61, 2}, odd[1] = {33};
        bb_header(&b, 1, 0);
        bb_tensor(&b, "t", 3, big, GGUF_T_F32, 0);
        bad |= expect_bad(&b, "overflows", "dims product");
        bb_header(&b, 1, 0);
        bb_tensor(&b, "t", 5, five, GGUF_T_F32, 0);
        bad |= expect_bad(&b, "5 dimensions", "too many dims");
        bb_header(&b, 1, 0);
        bb_tensor(&b, "t", 0, five, GGUF_T_F32, 0);
        bb_pad(&b, 1, 64);
        bad |= expect_bad(&b, "0 dimensions", "zero dims");
        bb_header(&b, 1, 0);
        bb_tensor(&b, "t", 2, zero, GGUF_T_F32, 0);
        bad |= expect_bad(&b, "at least 1", "zero dimension");
        bb_header(&b, 1, 0);
        bb_tensor(&b, "t", 2, neg, GGUF_T_F32, 0);
        bad |= expect_bad(&b, "at least 1", "negative dimension");
        bb_header(&b, 1, 0);
        bb_tensor(&b, "t", 2, f32wrap, GGUF_T_F32, 0);
        bad |= expect_bad(&b, "byte size overflows", "elements x type size");
        bb_header(&b, 1, 0);
        bb_tensor(&b, "t", 1, odd, GGUF_T_Q4_0, 0);
        bad |= expect_bad(&b, "not a multiple of the q4_0 block", "block size");
        bb_header(&b, 1, 0);
        bb_tensor(&b, "t", 1, ne1, 99, 0);
        bad |= expect_bad(&b, "unknown tensor type 99", "tensor type 99");
        bb_header(&b, 1, 0);
        bb_tensor(&b, "t", 1, ne1, 4, 0); /* a removed ggml type number */
        bad |= expect_bad(&b, "unknown tensor type 4", "tensor type 4");
        bb_header(&b, 1, 0);
        bb_tensor(&b, "a_name_that_is_far_too_long_for_ggml_which_allows_sixty_three_bytes", 1, ne1,
                  GGUF_T_F32, 0);
        bad |= expect_bad(&b, "bytes long", "long name");
    }

    /* Offsets: unaligned, out of range, wrapping, overlapping, out of order,
     * and data past the end of the file. */
    bb_header(&b, 1, 0);
    bb_tensor(&b, "t", 1, ne1, GGUF_T_F32, 1);
    bb_pad(&b, 32, 256);
    bad |= expect_bad(&b, "not a multiple of the alignment", "unaligned offset");
    bb_header(&b, 1, 0);
    bb_tensor(&b, "t", 1, ne1, GGUF_T_F32, (uint64_t)1 << 40);
    bb_pad(&b, 32, 256);
    bad |= expect_bad(&b, "past the end", "offset out of range");
    bb_header(&b, 1, 0);
    bb_tensor(&b, "t", 1, ne1, GGUF_T_F32, UINT64_MAX - 31);
    bb_pad(&b, 32, 256);
    bad |= expect_bad(&b, "overflows", "offset + size wraps");
    bb_header(&b, 2, 0);
    bb_tensor(&b, "a", 2, ne2, GGUF_T_F32, 0);
    bb_tensor(&b, "b", 2, ne2, GGUF_T_F32, 128);
    bb_pad(&b, 32, 512);
    bad |= expect_bad(&b, "overlaps or precedes", "overlap");
    bb_header(&b, 2, 0);
    bb_tensor(&b, "a", 1, ne1, GGUF_T_F32, 128);
    bb_tensor(&b, "b", 1, ne1, GGUF_T_F32, 0);
    bb_pad(&b, 32, 512);
    bad |= expect_bad(&b, "overlaps or precedes", "non-monotonic");
    bb_header(&b, 1, 0);
    bb_tensor(&b, "t", 2, ne2, GGUF_T_F32, 0);
    bb_pad(&b, 32, 100); /* needs 256 bytes */
    bad |= expect_bad(&b, "past the end", "data past EOF");
    bb_header(&b, 2, 0);
    bb_tensor(&b, "dup", 1, ne1, GGUF_T_F32, 0);
    bb_tensor(&b, "dup", 1, ne1, GGUF_T_F32, 128);
    bb_pad(&b, 32, 512);
    bad |= expect_bad(&b, "duplicate tensor name 'dup'", "duplicate tensor");
    /* Header ends where the data section would start past EOF. */
    bb_header(&b, 1, 0);
    bb_tensor(&b, "t", 1, ne1, GGUF_T_F32, 0);
    bad |= expect_bad(&b, "past the end", "no data section");
    CHECK(!bad);

    /* And a well-formed file built the same way is accepted. */
    {
        struct gguf_file *f;
        struct cit_err err;
        bb_header(&b, 2, 1);
        bb_str(&b, "general.alignment");
        bb_u32(&b, GGUF_V_UINT32);
        bb_u32(&b, 64);
        bb_tensor(&b, "a", 2, ne2, GGUF_T_F32, 0);
        bb_tensor(&b, "b", 1, ne1, GGUF_T_Q8_0, 256);
        bb_pad(&b, 64, 256 + 34);
        CHECKF(gguf_open_memory(b.p, b.n, &f, &err) == 0, "%s", err.msg);
        CHECK(f->alignment == 64 && f->n_tensors == 2 && f->tensors[1].size == 34);
        CHECK(gguf_find_tensor(f, "b") == &f->tensors[1]);
        gguf_close(f);
    }
}

/* Writes a file with every metadata type and a few tensors. */
static int write_sample(const char *path)
{
    struct gguf_writer *w;
    struct cit_err err;
    static float data[64 * 4];
    uint64_t ne[2] = {64, 4};
    int32_t ints[3] = {-1, 0, 7};
    struct gguf_str strs[2] = {{"alpha", 5}, {"", 0}};
    int rc;
    for (int i = 0; i < 256; i++) data[i] = (float)i * 0.5f;
    if (gguf_writer_new(&w)) return -1;
    gguf_writer_set_str(w, "general.architecture", "test");
    gguf_writer_set_u32(w, "u32", 4000000000u);
    gguf_writer_set_i32(w, "i32", -5);
    gguf_writer_set_f32(w, "f32", 1.5f);
    gguf_writer_set_bool(w, "flag", 1);
    {
        struct gguf_value v;
        v.type = GGUF_V_UINT8, v.u = 200, gguf_writer_set(w, "u8", &v);
        v.type = GGUF_V_INT8, v.i = -100, gguf_writer_set(w, "i8", &v);
        v.type = GGUF_V_UINT16, v.u = 60000, gguf_writer_set(w, "u16", &v);
        v.type = GGUF_V_INT16, v.i = -30000, gguf_writer_set(w, "i16", &v);
        v.type = GGUF_V_UINT64, v.u = UINT64_MAX, gguf_writer_set(w, "u64", &v);
        v.type = GGUF_V_INT64, v.i = INT64_MIN, gguf_writer_set(w, "i64", &v);
        v.type = GGUF_V_FLOAT64, v.f = 3.25, gguf_writer_set(w, "f64", &v);
    }
    gguf_writer_set_arr(w, "ints", GGUF_V_INT32, ints, 3);
    gguf_writer_set_arr_str(w, "strs", strs, 2);
    gguf_writer_add_tensor(w, "w", GGUF_T_F32, 2, ne, data);
    gguf_writer_add_tensor(w, "v", GGUF_T_F32, 1, ne, data);
    rc = gguf_writer_write(w, path, &err);
    gguf_writer_free(w);
    return rc;
}

void test_gguf_roundtrip(void)
{
    char path[512];
    struct gguf_file *f;
    struct cit_err err;
    uint32_t u32;
    uint64_t u64;
    float f32;
    int flag;
    struct gguf_str s;
    const struct gguf_value *arr;
    const struct gguf_tensor *t;
    snprintf(path, sizeof(path), "%s/sample.gguf", t_tmpdir());
    CHECK(write_sample(path) == 0);
    CHECKF(gguf_open(path, &f, &err) == 0, "%s", err.msg);
    CHECK(f->version == 3 && f->n_tensors == 2);
    CHECK(gguf_get_u32(f, "u32", &u32, NULL) == 0 && u32 == 4000000000u);
    CHECK(gguf_get_u32(f, "i32", &u32, &err) == CIT_EFORMAT); /* negative */
    CHECK(gguf_get_f32(f, "f32", &f32, NULL) == 0 && f32 == 1.5f);
    CHECK(gguf_get_bool(f, "flag", &flag, NULL) == 0 && flag == 1);
    CHECK(gguf_get_u64(f, "u64", &u64, NULL) == 0 && u64 == UINT64_MAX);
    CHECK(gguf_find_kv(f, "i64")->v.i == INT64_MIN);
    CHECK(gguf_find_kv(f, "i8")->v.i == -100 && gguf_find_kv(f, "i16")->v.i == -30000);
    CHECK(gguf_find_kv(f, "u8")->v.u == 200 && gguf_find_kv(f, "u16")->v.u == 60000);
    CHECK(gguf_find_kv(f, "f64")->v.f == 3.25);
    CHECK(gguf_get_str(f, "general.architecture", &s, NULL) == 0 && gguf_str_eq(s, "test"));
    CHECK(gguf_get_arr(f, "ints", GGUF_V_INT32, &arr, NULL) == 0 && arr->arr.n == 3);
    CHECK(gguf_arr_int(arr, 0) == -1 && gguf_arr_int(arr, 2) == 7);
    CHECK(gguf_arr_int(arr, 3) == 0 && gguf_arr_f32(arr, 0) == 0); /* out of range, wrong type */
    CHECK(gguf_get_arr(f, "strs", GGUF_V_STRING, &arr, NULL) == 0 && arr->arr.n == 2);
    CHECK(gguf_str_eq(arr->arr.items[0].s, "alpha") && arr->arr.items[1].s.n == 0);
    CHECK(gguf_get_arr(f, "strs", GGUF_V_INT32, &arr, &err) == CIT_EFORMAT);
    CHECK(gguf_get_u32(f, "missing", &u32, NULL) == CIT_ENOENT);
    t = gguf_find_tensor(f, "w");
    CHECK(t && t->n_dims == 2 && t->ne[0] == 64 && t->ne[1] == 4 && t->size == 1024);
    CHECK(((const float *)t->data)[255] == 127.5f);
    CHECK((uintptr_t)t->data % 32 == 0);
    t = gguf_find_tensor(f, "v");
    CHECK(t && t->offset == 1024 && ((const float *)t->data)[3] == 1.5f);
    gguf_close(f);
}

void test_gguf_nested_arrays(void)
{
    struct gguf_writer *w;
    struct gguf_value inner[2], outer, leaf[3];
    struct gguf_file *f;
    struct cit_err err;
    char path[512];
    const struct gguf_kv *kv;
    uint16_t a[3] = {1, 2, 3};
    snprintf(path, sizeof(path), "%s/nested.gguf", t_tmpdir());
    memset(inner, 0, sizeof(inner));
    inner[0].type = GGUF_V_ARRAY, inner[0].arr.type = GGUF_V_UINT16, inner[0].arr.n = 3;
    inner[0].arr.raw = (const uint8_t *)a;
    for (int i = 0; i < 3; i++)
        leaf[i].type = GGUF_V_STRING, leaf[i].s = (struct gguf_str){"xy", (uint64_t)i};
    inner[1].type = GGUF_V_ARRAY, inner[1].arr.type = GGUF_V_STRING, inner[1].arr.n = 3;
    inner[1].arr.items = leaf;
    outer.type = GGUF_V_ARRAY, outer.arr.type = GGUF_V_ARRAY, outer.arr.n = 2,
    outer.arr.items = inner;
    CHECK(gguf_writer_new(&w) == 0);
    CHECK(gguf_writer_set(w, "nested", &outer) == 0);
    CHECK(gguf_writer_write(w, path, &err) == 0);
    gguf_writer_free(w);
    CHECKF(gguf_open(path, &f, &err) == 0, "%s", err.msg);
    kv = gguf_find_kv(f, "nested");
    CHECK(kv && kv->v.type == GGUF_V_ARRAY && kv->v.arr.type == GGUF_V_ARRAY && kv->v.arr.n == 2);
    CHECK(kv->v.arr.items[0].arr.type == GGUF_V_UINT16 &&
          gguf_arr_int(&kv->v.arr.items[0], 2) == 3);
    CHECK(kv->v.arr.items[1].arr.n == 3 && kv->v.arr.items[1].arr.items[2].s.n == 2);
    gguf_close(f);
}

void test_gguf_truncations(void)
{
    char path[512];
    size_t len;
    char *buf;
    struct gguf_file *f;
    struct cit_err err;
    uint64_t need;
    snprintf(path, sizeof(path), "%s/trunc.gguf", t_tmpdir());
    CHECK(write_sample(path) == 0);
    buf = t_read_file(path, &len);
    CHECK(buf);
    CHECK(gguf_open_memory(buf, len, &f, &err) == 0);
    need = f->data_offset + f->tensors[1].offset + f->tensors[1].size;
    gguf_close(f);
    /* Every prefix that cuts into the header or the tensor data is refused
     * (each header boundary included), with a message, never a crash. */
    for (size_t n = 0; n < need; n++) {
        int rc = gguf_open_memory(buf, n, &f, &err);
        if (rc == 0) gguf_close(f);
        CHECKF(rc == CIT_EFORMAT, "prefix of %zu bytes: rc %d", n, rc);
        CHECKF(err.msg[0], "prefix of %zu bytes: no message", n);
    }
    cit_free(buf);
}

void test_gguf_alloc_failures(void)
{
    char path[512];
    size_t len;
    char *buf;
    int saw_success = 0;
    snprintf(path, sizeof(path), "%s/alloc.gguf", t_tmpdir());
    CHECK(write_sample(path) == 0);
    buf = t_read_file(path, &len);
    CHECK(buf);
    for (long nth = 1; nth < 64 && !saw_success; nth++) {
        struct gguf_file *f = NULL;
        struct cit_err err;
        int rc;
        cit_alloc_fail_at(nth);
        rc = gguf_open_memory(buf, len, &f, &err);
        cit_alloc_fail_at(0);
        if (rc == 0) {
            saw_success = 1;
            gguf_close(f);
        } else {
            CHECKF(rc == CIT_ENOMEM, "allocation %ld failing gave rc %d", nth, rc);
        }
    }
    CHECK(saw_success);
    cit_free(buf);
}

static int t_fill_fail(void *ctx, const char *name, void *dst, size_t size)
{
    (void)ctx, (void)name, (void)dst, (void)size;
    return CIT_EIO;
}

void test_gguf_writer_atomic(void)
{
    struct gguf_writer *w;
    struct cit_err err;
    char path[512], tmp[600];
    uint64_t ne[1] = {32};
    FILE *fp;
    snprintf(path, sizeof(path), "%s/atomic.gguf", t_tmpdir());
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fp = fopen(path, "w");
    CHECK(fp);
    fputs("previous content", fp);
    fclose(fp);
    /* A tensor whose producer fails: the old file stays, no temp file left. */
    CHECK(gguf_writer_new(&w) == 0);
    CHECK(gguf_writer_add_tensor_fn(w, "t", GGUF_T_F32, 1, ne, NULL, NULL) == 0);
    gguf_writer_free(w);
    {
        CHECK(gguf_writer_new(&w) == 0);
        CHECK(gguf_writer_add_tensor_fn(w, "t", GGUF_T_F32, 1, ne, t_fill_fail, NULL) == 0);
        CHECK(gguf_writer_write(w, path, &err) == CIT_EIO);
        CHECK(strstr(err.msg, "producing tensor t failed"));
        gguf_writer_free(w);
    }
    {
        size_t n;
        char *c = t_read_file(path, &n);
        CHECK(c && !strcmp(c, "previous content"));
        cit_free(c);
        CHECK(access(tmp, F_OK) != 0);
    }
    /* Invalid tensors are refused when added. */
    CHECK(gguf_writer_new(&w) == 0);
    {
        uint64_t odd[1] = {33};
        CHECK(gguf_writer_add_tensor(w, "q", GGUF_T_Q4_0, 1, odd, NULL) == CIT_EINVAL);
        CHECK(gguf_writer_add_tensor(w, "a", GGUF_T_F32, 1, ne, NULL) == 0);
        CHECK(gguf_writer_add_tensor(w, "a", GGUF_T_F32, 1, ne, NULL) == CIT_EINVAL);
        CHECK(gguf_writer_set_alignment(w, 3) == CIT_EINVAL);
    }
    gguf_writer_free(w);
}
