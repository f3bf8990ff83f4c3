/*
 * GGUF reader.
 *
 * The whole file is mapped read-only; parsing walks it with a bounds-checked
 * cursor. Every quantity read from the file is checked before it is used in
 * arithmetic or allocation (the GGUF CVEs in other readers were all unchecked
 * lengths and counts): counts against both a fixed cap and the bytes left in
 * the file, sizes with overflow-checked multiplication.
 */
#include "citadel/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "gguf_int.h"

static const struct gguf_type_info type_table[GGUF_T_COUNT] = {
    [GGUF_T_F32] = {"f32", 1, 4},       [GGUF_T_F16] = {"f16", 1, 2},
    [GGUF_T_Q4_0] = {"q4_0", 32, 18},   [GGUF_T_Q4_1] = {"q4_1", 32, 20},
    [GGUF_T_Q5_0] = {"q5_0", 32, 22},   [GGUF_T_Q5_1] = {"q5_1", 32, 24},
    [GGUF_T_Q8_0] = {"q8_0", 32, 34},   [GGUF_T_Q8_1] = {"q8_1", 32, 36},
    [GGUF_T_Q2_K] = {"q2_K", 256, 84},  [GGUF_T_Q3_K] = {"q3_K", 256, 110},
    [GGUF_T_Q4_K] = {"q4_K", 256, 144}, [GGUF_T_Q5_K] = {"q5_K", 256, 176},
    [GGUF_T_Q6_K] = {"q6_K", 256, 210}, [GGUF_T_Q8_K] = {"q8_K", 256, 292},
    [GGUF_T_I8] = {"i8", 1, 1},         [GGUF_T_I16] = {"i16", 1, 2},
    [GGUF_T_I32] = {"i32", 1, 4},       [GGUF_T_I64] = {"i64", 1, 8},
    [GGUF_T_F64] = {"f64", 1, 8},       [GGUF_T_BF16] = {"bf16", 1, 2},
};

const struct gguf_type_info *gguf_type_info(uint32_t type)
{
    if (type >= GGUF_T_COUNT || !type_table[type].name) return NULL;
    return &type_table[type];
}

const char *gguf_type_name(uint32_t type)
{
    const struct gguf_type_info *ti = gguf_type_info(type);
    return ti ? ti->name : "?";
}

static const char *const vtype_names[GGUF_V_COUNT] = {
    "uint8", "int8",   "uint16", "int16",  "uint32", "int32",   "float32",
    "bool",  "string", "array",  "uint64", "int64",  "float64",
};
static const uint8_t vtype_size[GGUF_V_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

/* A metadata value type's name, for messages. */
static const char *gguf_vtype_name(uint32_t vtype)
{
    return vtype < GGUF_V_COUNT ? vtype_names[vtype] : "?";
}

uint64_t gguf_tensor_bytes(uint32_t type, uint32_t n_dims, const uint64_t *ne)
{
    const struct gguf_type_info *ti = gguf_type_info(type);
    uint64_t n = 1, bytes;
    if (!ti || n_dims < 1 || n_dims > GGUF_MAX_DIMS) return 0;
    for (uint32_t i = 0; i < n_dims; i++) {
        if (ne[i] == 0 || ne[i] > (uint64_t)INT64_MAX) return 0;
        if (__builtin_mul_overflow(n, ne[i], &n) || n > (uint64_t)INT64_MAX) return 0;
    }
    if (ne[0] % ti->blck) return 0;
    if (__builtin_mul_overflow(n / ti->blck, (uint64_t)ti->size, &bytes)) return 0;
    return bytes;
}

int gguf_str_eq(struct gguf_str s, const char *c)
{
    size_t n = strlen(c);
    return s.n == n && memcmp(s.p, c, n) == 0;
}

/* ---- cursor ---- */

struct cur {
    const uint8_t *p;
    uint64_t size;
    uint64_t pos;
    struct cit_err *err;
    uint64_t items; /* strings and arrays allocated as items so far */
};

static int truncated(struct cur *c, uint64_t need, const char *what)
{
    return cit_err_set(c->err, CIT_EFORMAT,
                       "gguf: truncated at byte %llu reading %s: need %llu bytes, %llu left",
                       (unsigned long long)c->pos, what, (unsigned long long)need,
                       (unsigned long long)(c->size - c->pos));
}

static int rd_bytes(struct cur *c, void *dst, uint64_t n, const char *what)
{
    if (c->size - c->pos < n) return truncated(c, n, what);
    memcpy(dst, c->p + c->pos, n);
    c->pos += n;
    return 0;
}

static int rd_u32(struct cur *c, uint32_t *v, const char *what)
{
    uint8_t b[4] = {0};
    int rc = rd_bytes(c, b, 4, what);
    if (rc) return rc;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 0;
}

static int rd_u64(struct cur *c, uint64_t *v, const char *what)
{
    uint32_t lo, hi;
    int rc = rd_u32(c, &lo, what);
    if (rc || (rc = rd_u32(c, &hi, what))) return rc;
    *v = (uint64_t)hi << 32 | lo;
    return 0;
}

static uint64_t le_load(const uint8_t *p, unsigned size)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int rd_str(struct cur *c, struct gguf_str *s, const char *what)
{
    uint64_t at = c->pos, n;
    int rc = rd_u64(c, &n, what);
    if (rc) return rc;
    if (n > GGUF_MAX_STRING || n > c->size - c->pos)
        return cit_err_set(c->err, CIT_EFORMAT,
                           "gguf: %s at byte %llu has length %llu, more than the %llu bytes left",
                           what, (unsigned long long)at, (unsigned long long)n,
                           (unsigned long long)(c->size - c->pos));
    s->p = (const char *)c->p + c->pos;
    s->n = n;
    c->pos += n;
    return 0;
}

/* Parses a value of type `type` at the cursor. Arrays of strings or arrays get
 * an allocated items vector; scalar arrays stay a view of the raw bytes. */
static int rd_value(struct cur *c, uint32_t type, struct gguf_value *v, int depth, const char *what)
{
    v->type = type;
    if (type >= GGUF_V_COUNT)
        return cit_err_set(c->err, CIT_EFORMAT, "gguf: %s at byte %llu has unknown value type %u",
                           what, (unsigned long long)(c->pos - 4), type);
    if (type == GGUF_V_STRING) return rd_str(c, &v->s, what);
    if (type == GGUF_V_ARRAY) {
        uint64_t at = c->pos, n, min_elem;
        uint32_t et;
        int rc;
        if (depth >= GGUF_MAX_ARRAY_DEPTH)
            return cit_err_set(c->err, CIT_EFORMAT,
                               "gguf: %s at byte %llu nests arrays deeper than %d", what,
                               (unsigned long long)at, GGUF_MAX_ARRAY_DEPTH);
        if ((rc = rd_u32(c, &et, what)) || (rc = rd_u64(c, &n, what))) return rc;
        if (et >= GGUF_V_COUNT)
            return cit_err_set(c->err, CIT_EFORMAT,
                               "gguf: %s at byte %llu is an array of unknown type %u", what,
                               (unsigned long long)at, et);
        /* Every element takes at least min_elem bytes, so the count is bounded
         * by what is left of the file before anything is allocated. */
        min_elem = et == GGUF_V_STRING ? 8 : et == GGUF_V_ARRAY ? 12 : vtype_size[et];
        if (n > (c->size - c->pos) / min_elem)
            return cit_err_set(c->err, CIT_EFORMAT,
                               "gguf: %s at byte %llu: array of %llu %s elements needs more than "
                               "the %llu bytes left",
                               what, (unsigned long long)at, (unsigned long long)n, vtype_names[et],
                               (unsigned long long)(c->size - c->pos));
        v->arr.type = et;
        v->arr.n = n;
        v->arr.raw = NULL;
        v->arr.items = NULL;
        if (et != GGUF_V_STRING && et != GGUF_V_ARRAY) {
            v->arr.raw = c->p + c->pos;
            c->pos += n * min_elem;
            return 0;
        }
        if (n > GGUF_MAX_ITEMS - c->items)
            return cit_err_set(c->err, CIT_EFORMAT,
                               "gguf: %s at byte %llu: more than %u strings/arrays in arrays", what,
                               (unsigned long long)at, GGUF_MAX_ITEMS);
        c->items += n;
        if (n) {
            v->arr.items = cit_calloc(n, sizeof(struct gguf_value));
            if (!v->arr.items) return cit_err_set(c->err, CIT_ENOMEM, "gguf: out of memory");
        }
        for (uint64_t i = 0; i < n; i++) {
            rc = rd_value(c, et, &v->arr.items[i], depth + 1, what);
            if (rc) return rc;
        }
        return 0;
    }
    if (c->size - c->pos < vtype_size[type]) return truncated(c, vtype_size[type], what);
    {
        uint64_t raw = le_load(c->p + c->pos, vtype_size[type]);
        c->pos += vtype_size[type];
        switch (type) {
        case GGUF_V_INT8:
            v->i = (int8_t)raw;
            break;
        case GGUF_V_INT16:
            v->i = (int16_t)raw;
            break;
        case GGUF_V_INT32:
            v->i = (int32_t)raw;
            break;
        case GGUF_V_INT64:
            v->i = (int64_t)raw;
            break;
        case GGUF_V_FLOAT32: {
            float f;
            uint32_t r32 = (uint32_t)raw;
            memcpy(&f, &r32, 4);
            v->f = f;
            break;
        }
        case GGUF_V_FLOAT64:
            memcpy(&v->f, &raw, 8);
            break;
        case GGUF_V_BOOL:
            if (raw > 1)
                return cit_err_set(c->err, CIT_EFORMAT,
                                   "gguf: %s at byte %llu: bool value %llu is not 0 or 1", what,
                                   (unsigned long long)(c->pos - 1), (unsigned long long)raw);
            v->u = raw;
            break;
        default:
            v->u = raw;
            break;
        }
    }
    return 0;
}

static void free_value(struct gguf_value *v)
{
    if (v->type == GGUF_V_ARRAY && v->arr.items) {
        for (uint64_t i = 0; i < v->arr.n; i++) free_value(&v->arr.items[i]);
        cit_free(v->arr.items);
        v->arr.items = NULL;
    }
}

/* ---- name index: open addressing over FNV-1a; slot value is index+1 ---- */

static uint64_t hash_bytes(const char *p, uint64_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (uint64_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

static int index_build(uint32_t **tab, uint32_t *cap_out, uint64_t n)
{
    uint32_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    *tab = cit_calloc(cap, sizeof(uint32_t));
    *cap_out = cap;
    return *tab ? 0 : CIT_ENOMEM;
}

/* Inserts entry i with name s; returns the index of an existing entry with
 * the same name, or -1 when inserted. */
static int64_t index_insert(uint32_t *tab, uint32_t cap, struct gguf_str s, uint32_t i,
                            const struct gguf_str *(*name_of)(const struct gguf_file *, uint32_t),
                            const struct gguf_file *f)
{
    uint32_t mask = cap - 1, h = (uint32_t)hash_bytes(s.p, s.n) & mask;
    while (tab[h]) {
        const struct gguf_str *o = name_of(f, tab[h] - 1);
        if (o->n == s.n && memcmp(o->p, s.p, s.n) == 0) return tab[h] - 1;
        h = (h + 1) & mask;
    }
    tab[h] = i + 1;
    return -1;
}

static int64_t index_find(const uint32_t *tab, uint32_t cap, const char *name,
                          const struct gguf_str *(*name_of)(const struct gguf_file *, uint32_t),
                          const struct gguf_file *f)
{
    size_t n = strlen(name);
    uint32_t mask, h;
    if (!tab) return -1;
    mask = cap - 1;
    h = (uint32_t)hash_bytes(name, n) & mask;
    while (tab[h]) {
        const struct gguf_str *o = name_of(f, tab[h] - 1);
        if (o->n == n && memcmp(o->p, name, n) == 0) return tab[h] - 1;
        h = (h + 1) & mask;
    }
    return -1;
}

static const struct gguf_str *kv_name(const struct gguf_file *f, uint32_t i)
{
    return &f->kv[i].key;
}

static const struct gguf_str *tensor_name(const struct gguf_file *f, uint32_t i)
{
    return &f->tensors[i].name;
}

/* ---- parsing ---- */

static int parse(struct gguf_file *f, struct cit_err *err)
{
    struct cur c = {f->base, f->size, 0, err, 0};
    uint32_t magic;
    uint64_t i;
    int rc;
    char what[128];

    if ((rc = rd_u32(&c, &magic, "magic"))) return rc;
    if (magic != GGUF_MAGIC)
        return cit_err_set(err, CIT_EFORMAT,
                           "gguf: bad magic at byte 0: expected \"GGUF\", found 0x%08x", magic);
    if ((rc = rd_u32(&c, &f->version, "version"))) return rc;
    if (f->version != 2 && f->version != 3) {
        if ((f->version & 0xffff) == 0 && f->version)
            return cit_err_set(err, CIT_ENOTSUP,
                               "gguf: version field at byte 4 is 0x%08x: a big-endian file, "
                               "only little-endian GGUF is supported",
                               f->version);
        return cit_err_set(err, CIT_ENOTSUP,
                           "gguf: version %u at byte 4 is not supported (versions 2 and 3 are)",
                           f->version);
    }
    if ((rc = rd_u64(&c, &f->n_tensors, "tensor count"))) return rc;
    if ((rc = rd_u64(&c, &f->n_kv, "key/value count"))) return rc;
    /* A key/value pair is at least 13 bytes and a tensor info at least 29,
     * so counts beyond what the file can hold are refused before allocation. */
    if (f->n_kv > GGUF_MAX_KV || f->n_kv > (c.size - c.pos) / 13)
        return cit_err_set(err, CIT_EFORMAT,
                           "gguf: key/value count %llu at byte 16 is larger than the file "
                           "can hold (limit %u)",
                           (unsigned long long)f->n_kv, GGUF_MAX_KV);
    if (f->n_tensors > GGUF_MAX_TENSORS || f->n_tensors > (c.size - c.pos) / 29)
        return cit_err_set(err, CIT_EFORMAT,
                           "gguf: tensor count %llu at byte 8 is larger than the file can hold "
                           "(limit %u)",
                           (unsigned long long)f->n_tensors, GGUF_MAX_TENSORS);

    if (f->n_kv) {
        f->kv = cit_calloc(f->n_kv, sizeof(*f->kv));
        if (!f->kv) return cit_err_set(err, CIT_ENOMEM, "gguf: out of memory");
    }
    if ((rc = index_build(&f->kv_index, &f->kv_index_cap, f->n_kv)))
        return cit_err_set(err, rc, "gguf: out of memory");
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (i = 0; i < f->n_kv; i++) {
        struct gguf_kv *kv = &f->kv[i];
        uint32_t type;
        int64_t dup;
        kv->offset = c.pos;
        snprintf(what, sizeof(what), "key of pair %llu", (unsigned long long)i);
        if ((rc = rd_str(&c, &kv->key, what))) return rc;
        snprintf(what, sizeof(what), "value of '%.*s'", (int)(kv->key.n > 64 ? 64 : kv->key.n),
                 kv->key.p);
        if ((rc = rd_u32(&c, &type, what))) return rc;
        if ((rc = rd_value(&c, type, &kv->v, 0, what))) return rc;
        dup = index_insert(f->kv_index, f->kv_index_cap, kv->key, (uint32_t)i, kv_name, f);
        if (dup >= 0)
            return cit_err_set(
                err, CIT_EFORMAT, "gguf: duplicate key '%.*s' at byte %llu (first at byte %llu)",
                (int)(kv->key.n > 64 ? 64 : kv->key.n), kv->key.p, (unsigned long long)kv->offset,
                (unsigned long long)f->kv[dup].offset);
        if (gguf_str_eq(kv->key, "general.alignment")) {
            if (type != GGUF_V_UINT32)
                return cit_err_set(err, CIT_EFORMAT,
                                   "gguf: general.alignment at byte %llu has type %s, must be "
                                   "uint32",
                                   (unsigned long long)kv->offset, gguf_vtype_name(type));
            if (kv->v.u == 0 || (kv->v.u & (kv->v.u - 1)) || kv->v.u > GGUF_MAX_ALIGNMENT)
                return cit_err_set(err, CIT_EFORMAT,
                                   "gguf: general.alignment at byte %llu is %llu: must be a "
                                   "power of two between 1 and %u",
                                   (unsigned long long)kv->offset, (unsigned long long)kv->v.u,
                                   GGUF_MAX_ALIGNMENT);
            f->alignment = kv->v.u;
        }
    }

    if (f->n_tensors) {
        f->tensors = cit_calloc(f->n_tensors, sizeof(*f->tensors));
        if (!f->tensors) return cit_err_set(err, CIT_ENOMEM, "gguf: out of memory");
    }
    if ((rc = index_build(&f->tensor_index, &f->tensor_index_cap, f->n_tensors)))
        return cit_err_set(err, rc, "gguf: out of memory");
    for (i = 0; i < f->n_tensors; i++) {
        struct gguf_tensor *t = &f->tensors[i];
        const struct gguf_type_info *ti;
        int64_t dup;
        t->info_offset = c.pos;
        snprintf(what, sizeof(what), "name of tensor %llu", (unsigned long long)i);
        if ((rc = rd_str(&c, &t->name, what))) return rc;
        if (t->name.n > GGUF_MAX_NAME)
            return cit_err_set(err, CIT_EFORMAT,
                               "gguf: tensor %llu name at byte %llu is %llu bytes long "
                               "(limit %d)",
                               (unsigned long long)i, (unsigned long long)t->info_offset,
                               (unsigned long long)t->name.n, GGUF_MAX_NAME);
        snprintf(what, sizeof(what), "tensor '%.*s'", (int)t->name.n, t->name.p);
        if ((rc = rd_u32(&c, &t->n_dims, what))) return rc;
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
            return cit_err_set(err, CIT_EFORMAT,
                               "gguf: %s at byte %llu has %u dimensions (1 to %d allowed)", what,
                               (unsigned long long)(c.pos - 4), t->n_dims, GGUF_MAX_DIMS);
        t->n_elems = 1;
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if ((rc = rd_u64(&c, &t->ne[d], what))) return rc;
            if (t->ne[d] == 0 || t->ne[d] > (uint64_t)INT64_MAX)
                return cit_err_set(err, CIT_EFORMAT,
                                   "gguf: %s dimension %u at byte %llu is %lld: dimensions must "
                                   "be at least 1",
                                   what, d, (unsigned long long)(c.pos - 8), (long long)t->ne[d]);
            if (__builtin_mul_overflow(t->n_elems, t->ne[d], &t->n_elems) ||
                t->n_elems > (uint64_t)INT64_MAX)
                return cit_err_set(err, CIT_EFORMAT,
                                   "gguf: %s at byte %llu: element count overflows 63 bits", what,
                                   (unsigned long long)(c.pos - 8));
        }
        if ((rc = rd_u32(&c, &t->type, what))) return rc;
        ti = gguf_type_info(t->type);
        if (!ti)
            return cit_err_set(err, CIT_EFORMAT, "gguf: %s at byte %llu has unknown tensor type %u",
                               what, (unsigned long long)(c.pos - 4), t->type);
        if (t->ne[0] % ti->blck)
            return cit_err_set(err, CIT_EFORMAT,
                               "gguf: %s: row length %llu is not a multiple of the %s block "
                               "size %u",
                               what, (unsigned long long)t->ne[0], ti->name, ti->blck);
        t->size = gguf_tensor_bytes(t->type, t->n_dims, t->ne);
        if (!t->size) return cit_err_set(err, CIT_EFORMAT, "gguf: %s: byte size overflows", what);
        if ((rc = rd_u64(&c, &t->offset, what))) return rc;
        if (t->offset % f->alignment)
            return cit_err_set(err, CIT_EFORMAT,
                               "gguf: %s data offset %llu at byte %llu is not a multiple of the "
                               "alignment %llu",
                               what, (unsigned long long)t->offset, (unsigned long long)(c.pos - 8),
                               (unsigned long long)f->alignment);
        if (i > 0) {
            const struct gguf_tensor *p = &f->tensors[i - 1];
            if (t->offset < p->offset + p->size) /* p->offset + p->size checked below */
                return cit_err_set(err, CIT_EFORMAT,
                                   "gguf: %s data offset %llu overlaps or precedes the previous "
                                   "tensor (which ends at %llu); offsets must increase",
                                   what, (unsigned long long)t->offset,
                                   (unsigned long long)(p->offset + p->size));
        }
        if (t->offset > UINT64_MAX - t->size)
            return cit_err_set(err, CIT_EFORMAT, "gguf: %s: offset plus size overflows", what);
        dup = index_insert(f->tensor_index, f->tensor_index_cap, t->name, (uint32_t)i, tensor_name,
                           f);
        if (dup >= 0)
            return cit_err_set(err, CIT_EFORMAT, "gguf: duplicate tensor name '%.*s' at byte %llu",
                               (int)t->name.n, t->name.p, (unsigned long long)t->info_offset);
    }

    /* Data section: aligned end of the header. */
    {
        uint64_t a = f->alignment, end;
        if (__builtin_add_overflow(c.pos, a - 1, &end))
            return cit_err_set(err, CIT_EFORMAT, "gguf: padding overflows");
        f->data_offset = end / a * a;
    }
    if (f->n_tensors && f->data_offset > f->size)
        return cit_err_set(err, CIT_EFORMAT,
                           "gguf: data section would start at byte %llu, past the end of the "
                           "%llu-byte file",
                           (unsigned long long)f->data_offset, (unsigned long long)f->size);
    for (i = 0; i < f->n_tensors; i++) {
        struct gguf_tensor *t = &f->tensors[i];
        uint64_t avail = f->size - f->data_offset;
        if (t->offset > avail || t->size > avail - t->offset)
            return cit_err_set(err, CIT_EFORMAT,
                               "gguf: tensor '%.*s' data [%llu, %llu) runs past the end of the "
                               "file (data section is %llu bytes)",
                               (int)t->name.n, t->name.p, (unsigned long long)t->offset,
                               (unsigned long long)(t->offset + t->size),
                               (unsigned long long)avail);
        t->data = f->base + f->data_offset + t->offset;
    }
    return 0;
}

static int finish_open(struct gguf_file *f, struct gguf_file **out, struct cit_err *err)
{
    int rc = parse(f, err);
    if (rc) {
        gguf_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

int gguf_open_memory(const void *buf, size_t len, struct gguf_file **out, struct cit_err *err)
{
    struct gguf_file *f = cit_calloc(1, sizeof(*f));
    if (!f) return cit_err_set(err, CIT_ENOMEM, "gguf: out of memory");
    f->base = buf;
    f->size = len;
    return finish_open(f, out, err);
}

int gguf_open(const char *path, struct gguf_file **out, struct cit_err *err)
{
    return gguf_open_checked(path, NULL, NULL, out, err);
}

int gguf_open_checked(const char *path, gguf_check_fn check, void *ctx, struct gguf_file **out,
                      struct cit_err *err)
{
    struct gguf_file *f;
    struct stat st;
    void *map;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cit_err_set(err, errno == ENOENT ? CIT_ENOENT : CIT_EIO, "%s: cannot open: %s", path,
                           strerror(errno));
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return cit_err_set(err, CIT_EIO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return cit_err_set(err, CIT_EFORMAT, "%s: gguf: empty file", path);
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return cit_err_set(err, CIT_EIO, "%s: mmap: %s", path, strerror(errno));
    /* the caller's check sees the very bytes that will be parsed and used */
    if (check) {
        int rc = check(ctx, map, (size_t)st.st_size, err);
        if (rc) {
            munmap(map, (size_t)st.st_size);
            return rc;
        }
    }
    f = cit_calloc(1, sizeof(*f));
    if (!f) {
        munmap(map, (size_t)st.st_size);
        return cit_err_set(err, CIT_ENOMEM, "gguf: out of memory");
    }
    f->base = map;
    f->size = (uint64_t)st.st_size;
    f->mapped = 1;
    f->path = cit_strndup(path, strlen(path));
    {
        int rc = finish_open(f, out, err);
        if (rc) cit_err_prefix(err, path); /* say which file was wrong */
        return rc;
    }
}

void gguf_close(struct gguf_file *f)
{
    if (!f) return;
    if (f->kv)
        for (uint64_t i = 0; i < f->n_kv; i++) free_value(&f->kv[i].v);
    cit_free(f->kv);
    cit_free(f->tensors);
    cit_free(f->kv_index);
    cit_free(f->tensor_index);
    if (f->mapped) munmap((void *)f->base, (size_t)f->size);
    cit_free(f->path);
    cit_free(f);
}

const struct gguf_kv *gguf_find_kv(const struct gguf_file *f, const char *key)
{
    int64_t i = index_find(f->kv_index, f->kv_index_cap, key, kv_name, f);
    return i < 0 ? NULL : &f->kv[i];
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name)
{
    int64_t i = index_find(f->tensor_index, f->tensor_index_cap, name, tensor_name, f);
    return i < 0 ? NULL : &f->tensors[i];
}

/* ---- typed getters ---- */

static int is_int_type(uint32_t t)
{
    return t <= GGUF_V_INT32 || t == GGUF_V_UINT64 || t == GGUF_V_INT64;
}

static int is_signed_type(uint32_t t)
{
    return t == GGUF_V_INT8 || t == GGUF_V_INT16 || t == GGUF_V_INT32 || t == GGUF_V_INT64;
}

static int get_uint(const struct gguf_file *f, const char *key, uint64_t max, uint64_t *out,
                    struct cit_err *err)
{
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return CIT_ENOENT;
    if (!is_int_type(kv->v.type))
        return cit_err_set(err, CIT_EFORMAT,
                           "gguf: key '%s' at byte %llu has type %s, expected "
                           "an integer",
                           key, (unsigned long long)kv->offset, gguf_vtype_name(kv->v.type));
    if ((is_signed_type(kv->v.type) && kv->v.i < 0) || kv->v.u > max)
        return cit_err_set(err, CIT_EFORMAT, "gguf: key '%s' at byte %llu is out of range", key,
                           (unsigned long long)kv->offset);
    *out = kv->v.u;
    return 0;
}

int gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out, struct cit_err *err)
{
    uint64_t v;
    int rc = get_uint(f, key, UINT32_MAX, &v, err);
    if (!rc) *out = (uint32_t)v;
    return rc;
}

int gguf_get_u64(const struct gguf_file *f, const char *key, uint64_t *out, struct cit_err *err)
{
    return get_uint(f, key, UINT64_MAX, out, err);
}

int gguf_get_f32(const struct gguf_file *f, const char *key, float *out, struct cit_err *err)
{
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return CIT_ENOENT;
    if (kv->v.type != GGUF_V_FLOAT32 && kv->v.type != GGUF_V_FLOAT64)
        return cit_err_set(err, CIT_EFORMAT,
                           "gguf: key '%s' at byte %llu has type %s, expected "
                           "float32",
                           key, (unsigned long long)kv->offset, gguf_vtype_name(kv->v.type));
    *out = (float)kv->v.f;
    return 0;
}

int gguf_get_bool(const struct gguf_file *f, const char *key, int *out, struct cit_err *err)
{
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return CIT_ENOENT;
    if (kv->v.type != GGUF_V_BOOL)
        return cit_err_set(err, CIT_EFORMAT,
                           "gguf: key '%s' at byte %llu has type %s, expected "
                           "bool",
                           key, (unsigned long long)kv->offset, gguf_vtype_name(kv->v.type));
    *out = (int)kv->v.u;
    return 0;
}

int gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out,
                 struct cit_err *err)
{
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return CIT_ENOENT;
    if (kv->v.type != GGUF_V_STRING)
        return cit_err_set(err, CIT_EFORMAT,
                           "gguf: key '%s' at byte %llu has type %s, expected "
                           "string",
                           key, (unsigned long long)kv->offset, gguf_vtype_name(kv->v.type));
    *out = kv->v.s;
    return 0;
}

int gguf_get_arr(const struct gguf_file *f, const char *key, uint32_t elem_type,
                 const struct gguf_value **out, struct cit_err *err)
{
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return CIT_ENOENT;
    if (kv->v.type != GGUF_V_ARRAY || (elem_type != GGUF_V_COUNT && kv->v.arr.type != elem_type))
        return cit_err_set(err, CIT_EFORMAT,
                           "gguf: key '%s' at byte %llu has type %s%s%s, expected array of %s", key,
                           (unsigned long long)kv->offset, gguf_vtype_name(kv->v.type),
                           kv->v.type == GGUF_V_ARRAY ? " of " : "",
                           kv->v.type == GGUF_V_ARRAY ? gguf_vtype_name(kv->v.arr.type) : "",
                           gguf_vtype_name(elem_type));
    *out = &kv->v;
    return 0;
}

float gguf_arr_f32(const struct gguf_value *arr, uint64_t i)
{
    if (arr->type != GGUF_V_ARRAY || i >= arr->arr.n || !arr->arr.raw) return 0;
    if (arr->arr.type != GGUF_V_FLOAT32 && arr->arr.type != GGUF_V_FLOAT64) return 0;
    if (arr->arr.type == GGUF_V_FLOAT64) {
        double d;
        uint64_t r = le_load(arr->arr.raw + 8 * i, 8);
        memcpy(&d, &r, 8);
        return (float)d;
    } else {
        float x;
        uint32_t r = (uint32_t)le_load(arr->arr.raw + 4 * i, 4);
        memcpy(&x, &r, 4);
        return x;
    }
}

int64_t gguf_arr_int(const struct gguf_value *arr, uint64_t i)
{
    unsigned sz;
    uint64_t r;
    if (arr->type != GGUF_V_ARRAY || i >= arr->arr.n || !arr->arr.raw ||
        !is_int_type(arr->arr.type))
        return 0;
    sz = vtype_size[arr->arr.type];
    r = le_load(arr->arr.raw + (uint64_t)sz * i, sz);
    switch (arr->arr.type) {
    case GGUF_V_INT8:
        return (int8_t)r;
    case GGUF_V_INT16:
        return (int16_t)r;
    case GGUF_V_INT32:
        return (int32_t)r;
    default:
        return (int64_t)r;
    }
}
