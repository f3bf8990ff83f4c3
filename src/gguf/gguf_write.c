/*
 * GGUF writer.
 *
 * Metadata values are deep-copied into the writer; tensors are described
 * up front and their bytes produced at write time (borrowed pointer or fill
 * callback). The file is written to PATH.tmp, fsync'd and renamed, so a
 * reader never sees a half-written model.
 */
#include "citadel/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "gguf_int.h"

struct wkv {
    char *key;
    struct gguf_value v; /* owns its strings and items */
};

struct wtensor {
    char *name;
    uint32_t type, n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    uint64_t size, offset;
    const void *data;
    gguf_fill_fn fill;
    void *ctx;
};

struct gguf_writer {
    struct wkv *kv;
    size_t n_kv, cap_kv;
    struct wtensor *t;
    size_t n_t, cap_t;
    uint32_t alignment;
};

int gguf_writer_new(struct gguf_writer **out)
{
    struct gguf_writer *w = cit_calloc(1, sizeof(*w));
    if (!w) return CIT_ENOMEM;
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    *out = w;
    return 0;
}

static void free_owned(struct gguf_value *v)
{
    if (v->type == GGUF_V_STRING) {
        cit_free((void *)v->s.p);
    } else if (v->type == GGUF_V_ARRAY) {
        if (v->arr.items)
            for (uint64_t i = 0; i < v->arr.n; i++) free_owned(&v->arr.items[i]);
        cit_free(v->arr.items);
        cit_free((void *)v->arr.raw);
    }
}

void gguf_writer_free(struct gguf_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        cit_free(w->kv[i].key);
        free_owned(&w->kv[i].v);
    }
    for (size_t i = 0; i < w->n_t; i++) cit_free(w->t[i].name);
    cit_free(w->kv);
    cit_free(w->t);
    cit_free(w);
}

static const uint8_t scalar_size[GGUF_V_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

static int copy_value(struct gguf_value *dst, const struct gguf_value *src, int depth)
{
    memset(dst, 0, sizeof(*dst));
    dst->type = src->type;
    if (src->type >= GGUF_V_COUNT || depth > GGUF_MAX_ARRAY_DEPTH) return CIT_EINVAL;
    if (src->type == GGUF_V_STRING) {
        dst->s.p = cit_strndup(src->s.p, src->s.n);
        dst->s.n = src->s.n;
        return dst->s.p ? 0 : CIT_ENOMEM;
    }
    if (src->type != GGUF_V_ARRAY) {
        dst->u = src->u;
        return 0;
    }
    dst->arr.type = src->arr.type;
    dst->arr.n = src->arr.n;
    if (src->arr.type >= GGUF_V_COUNT) return CIT_EINVAL;
    if (src->arr.type == GGUF_V_STRING || src->arr.type == GGUF_V_ARRAY) {
        if (!src->arr.n) return 0;
        dst->arr.items = cit_calloc(src->arr.n, sizeof(struct gguf_value));
        if (!dst->arr.items) return CIT_ENOMEM;
        for (uint64_t i = 0; i < src->arr.n; i++) {
            int rc = copy_value(&dst->arr.items[i], &src->arr.items[i], depth + 1);
            if (rc) {
                dst->arr.n = i + 1; /* free what was copied */
                return rc;
            }
        }
        return 0;
    }
    {
        size_t bytes;
        uint8_t *raw;
        if (cit_mul_size(src->arr.n, scalar_size[src->arr.type], &bytes)) return CIT_ERANGE;
        raw = cit_malloc(bytes);
        if (!raw) return CIT_ENOMEM;
        if (bytes) memcpy(raw, src->arr.raw, bytes);
        dst->arr.raw = raw;
    }
    return 0;
}

int gguf_writer_set(struct gguf_writer *w, const char *key, const struct gguf_value *v)
{
    struct wkv *slot = NULL;
    struct gguf_value copy;
    int rc;
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) slot = &w->kv[i];
    rc = copy_value(&copy, v, 0);
    if (rc) {
        free_owned(&copy);
        return rc;
    }
    if (slot) { /* replace: a key appears once */
        free_owned(&slot->v);
        slot->v = copy;
        return 0;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        struct wkv *n = cit_realloc(w->kv, cap * sizeof(*n));
        if (!n) {
            free_owned(&copy);
            return CIT_ENOMEM;
        }
        w->kv = n;
        w->cap_kv = cap;
    }
    w->kv[w->n_kv].key = cit_strndup(key, strlen(key));
    if (!w->kv[w->n_kv].key) {
        free_owned(&copy);
        return CIT_ENOMEM;
    }
    w->kv[w->n_kv].v = copy;
    w->n_kv++;
    if (!strcmp(key, "general.alignment") && v->type == GGUF_V_UINT32 && v->u &&
        !(v->u & (v->u - 1)))
        w->alignment = (uint32_t)v->u;
    return 0;
}

int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t x)
{
    struct gguf_value v = {.type = GGUF_V_UINT32, .u = x};
    return gguf_writer_set(w, key, &v);
}

int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t x)
{
    struct gguf_value v = {.type = GGUF_V_INT32, .i = x};
    return gguf_writer_set(w, key, &v);
}

int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float x)
{
    struct gguf_value v = {.type = GGUF_V_FLOAT32, .f = x};
    return gguf_writer_set(w, key, &v);
}

int gguf_writer_set_bool(struct gguf_writer *w, const char *key, int x)
{
    struct gguf_value v = {.type = GGUF_V_BOOL, .u = x ? 1 : 0};
    return gguf_writer_set(w, key, &v);
}

int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *s)
{
    struct gguf_value v = {.type = GGUF_V_STRING, .s = {s, strlen(s)}};
    return gguf_writer_set(w, key, &v);
}

int gguf_writer_set_arr(struct gguf_writer *w, const char *key, uint32_t elem_type,
                        const void *data, uint64_t n)
{
    struct gguf_value v = {.type = GGUF_V_ARRAY};
    if (elem_type >= GGUF_V_COUNT || !scalar_size[elem_type]) return CIT_EINVAL;
    v.arr.type = elem_type;
    v.arr.n = n;
    v.arr.raw = data;
    return gguf_writer_set(w, key, &v);
}

int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const struct gguf_str *strs,
                            uint64_t n)
{
    struct gguf_value v = {.type = GGUF_V_ARRAY};
    int rc;
    v.arr.type = GGUF_V_STRING;
    v.arr.n = n;
    if (n) {
        v.arr.items = cit_calloc(n, sizeof(struct gguf_value));
        if (!v.arr.items) return CIT_ENOMEM;
        for (uint64_t i = 0; i < n; i++) {
            v.arr.items[i].type = GGUF_V_STRING;
            v.arr.items[i].s = strs[i];
        }
    }
    rc = gguf_writer_set(w, key, &v);
    cit_free(v.arr.items); /* the strings were borrowed, the copy owns its own */
    return rc;
}

int gguf_writer_set_alignment(struct gguf_writer *w, uint32_t alignment)
{
    if (!alignment || (alignment & (alignment - 1)) || alignment > GGUF_MAX_ALIGNMENT)
        return CIT_EINVAL;
    return gguf_writer_set_u32(w, "general.alignment", alignment);
}

static int add_tensor(struct gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                      const uint64_t *ne, const void *data, gguf_fill_fn fill, void *ctx)
{
    struct wtensor *t;
    uint64_t size = gguf_tensor_bytes(type, n_dims, ne);
    if (!size || strlen(name) > GGUF_MAX_NAME) return CIT_EINVAL;
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return CIT_EINVAL;
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        struct wtensor *n = cit_realloc(w->t, cap * sizeof(*n));
        if (!n) return CIT_ENOMEM;
        w->t = n;
        w->cap_t = cap;
    }
    t = &w->t[w->n_t];
    memset(t, 0, sizeof(*t));
    t->name = cit_strndup(name, strlen(name));
    if (!t->name) return CIT_ENOMEM;
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->size = size;
    t->data = data;
    t->fill = fill;
    t->ctx = ctx;
    w->n_t++;
    return 0;
}

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                           const uint64_t *ne, const void *data)
{
    return add_tensor(w, name, type, n_dims, ne, data, NULL, NULL);
}

int gguf_writer_add_tensor_fn(struct gguf_writer *w, const char *name, uint32_t type,
                              uint32_t n_dims, const uint64_t *ne, gguf_fill_fn fill, void *ctx)
{
    return add_tensor(w, name, type, n_dims, ne, NULL, fill, ctx);
}

/* ---- serialisation into a buffered file ---- */

struct out {
    FILE *fp;
    uint64_t pos;
    int failed;
};

static void put(struct out *o, const void *p, size_t n)
{
    if (o->failed || !n) return;
    if (fwrite(p, 1, n, o->fp) != n) o->failed = 1;
    o->pos += n;
}

static void put_u32(struct out *o, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(o, b, 4);
}

static void put_u64(struct out *o, uint64_t v)
{
    put_u32(o, (uint32_t)v);
    put_u32(o, (uint32_t)(v >> 32));
}

static void put_str(struct out *o, const char *p, uint64_t n)
{
    put_u64(o, n);
    put(o, p, n);
}

static void put_value(struct out *o, const struct gguf_value *v)
{
    switch (v->type) {
    case GGUF_V_STRING:
        put_str(o, v->s.p, v->s.n);
        break;
    case GGUF_V_ARRAY:
        put_u32(o, v->arr.type);
        put_u64(o, v->arr.n);
        if (v->arr.type == GGUF_V_STRING || v->arr.type == GGUF_V_ARRAY) {
            for (uint64_t i = 0; i < v->arr.n; i++) put_value(o, &v->arr.items[i]);
        } else {
            put(o, v->arr.raw, v->arr.n * scalar_size[v->arr.type]);
        }
        break;
    case GGUF_V_FLOAT32: {
        float f = (float)v->f;
        uint32_t r;
        memcpy(&r, &f, 4);
        put_u32(o, r);
        break;
    }
    case GGUF_V_FLOAT64: {
        uint64_t r;
        memcpy(&r, &v->f, 8);
        put_u64(o, r);
        break;
    }
    default: {
        uint64_t r = v->u;
        uint8_t b[8];
        for (int i = 0; i < 8; i++) b[i] = (uint8_t)(r >> (8 * i));
        put(o, b, scalar_size[v->type]);
        break;
    }
    }
}

static void pad_to(struct out *o, uint64_t align)
{
    static const uint8_t zeros[4096];
    uint64_t n = (align - o->pos % align) % align;
    while (n) {
        size_t k = n > sizeof(zeros) ? sizeof(zeros) : (size_t)n;
        put(o, zeros, k);
        n -= k;
    }
}

int gguf_writer_write(struct gguf_writer *w, const char *path, struct cit_err *err)
{
    char *tmp;
    size_t plen = strlen(path);
    struct out o = {0};
    uint64_t off = 0;
    void *buf = NULL;
    size_t buf_cap = 0;
    int rc = 0, fd = -1;

    tmp = cit_malloc(plen + 5);
    if (!tmp) return cit_err_set(err, CIT_ENOMEM, "gguf: out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = cit_err_set(err, CIT_EIO, "%s: cannot create: %s", tmp, strerror(errno));
        cit_free(tmp);
        return rc;
    }
    o.fp = fdopen(fd, "wb");
    if (!o.fp) {
        close(fd);
        rc = cit_err_set(err, CIT_EIO, "%s: fdopen: %s", tmp, strerror(errno));
        goto fail;
    }

    for (size_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        off += (w->t[i].size + w->alignment - 1) / w->alignment * w->alignment;
    }
    put_u32(&o, GGUF_MAGIC);
    put_u32(&o, 3);
    put_u64(&o, w->n_t);
    put_u64(&o, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(&o, w->kv[i].key, strlen(w->kv[i].key));
        put_u32(&o, w->kv[i].v.type);
        put_value(&o, &w->kv[i].v);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const struct wtensor *t = &w->t[i];
        put_str(&o, t->name, strlen(t->name));
        put_u32(&o, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) put_u64(&o, t->ne[d]);
        put_u32(&o, t->type);
        put_u64(&o, t->offset);
    }
    pad_to(&o, w->alignment);
    for (size_t i = 0; i < w->n_t && !o.failed; i++) {
        const struct wtensor *t = &w->t[i];
        if (t->fill) {
            if (t->size > buf_cap) {
                void *nb = cit_realloc(buf, (size_t)t->size);
                if (!nb) {
                    rc = cit_err_set(err, CIT_ENOMEM, "gguf: out of memory writing %s", t->name);
                    goto fail;
                }
                buf = nb;
                buf_cap = (size_t)t->size;
            }
            rc = t->fill(t->ctx, t->name, buf, (size_t)t->size);
            if (rc) {
                rc = cit_err_set(err, rc, "gguf: producing tensor %s failed: %s", t->name,
                                 cit_strerror(rc));
                goto fail;
            }
            put(&o, buf, (size_t)t->size);
        } else {
            put(&o, t->data, (size_t)t->size);
        }
        pad_to(&o, w->alignment);
    }
    if (o.failed || fflush(o.fp) || fsync(fileno(o.fp))) {
        rc = cit_err_set(err, CIT_EIO, "%s: write failed: %s", tmp, strerror(errno));
        goto fail;
    }
    if (fclose(o.fp)) {
        o.fp = NULL;
        rc = cit_err_set(err, CIT_EIO, "%s: close failed: %s", tmp, strerror(errno));
        goto fail;
    }
    o.fp = NULL;
    if (rename(tmp, path)) {
        rc = cit_err_set(err, CIT_EIO, "%s: rename failed: %s", path, strerror(errno));
        goto fail;
    }
    cit_free(buf);
    cit_free(tmp);
    return 0;
fail:
    if (o.fp) fclose(o.fp);
    unlink(tmp);
    cit_free(buf);
    cit_free(tmp);
    return rc ? rc : CIT_EIO;
}
