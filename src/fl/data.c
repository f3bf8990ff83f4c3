/*
 * Datasets for federated learning: CSV and IDX files, read through zlib so
 * that the Debian packages' .gz files load as they are, and the partitions
 * that simulate a consortium (IID, Dirichlet label skew, one label each).
 *
 * IDX (LeCun's MNIST format): bytes 0-1 zero, byte 2 the element type
 * (0x08 u8, 0x09 i8, 0x0b i16, 0x0c i32, 0x0d f32, 0x0e f64), byte 3 the
 * number of dimensions, then each dimension as a big-endian u32, then the
 * elements, big-endian, row-major.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "citadel/fl.h"
#include "fl_int.h"

#define CSV_MAX_LINE (1u << 20)

void fl_data_free(struct fl_data *ds)
{
    if (!ds) return;
    cit_free(ds->x);
    cit_free(ds->y);
    memset(ds, 0, sizeof(*ds));
}

static int data_alloc(struct fl_data *ds, size_t n, size_t d)
{
    memset(ds, 0, sizeof(*ds));
    ds->x = cit_calloc(n * d > 0 ? n * d : 1, sizeof(float));
    ds->y = cit_calloc(n ? n : 1, sizeof(int32_t));
    if (!ds->x || !ds->y) {
        fl_data_free(ds);
        return CIT_ENOMEM;
    }
    ds->n = n;
    ds->d = d;
    return 0;
}

/* ---- Debian dataset names ---- */

#define FMNIST  "/usr/share/datasets/fashion-mnist/"
#define SKLEARN "/usr/lib/python3/dist-packages/sklearn/datasets/data/"

static const struct {
    const char *name, *x, *y;
} known[] = {
    {"fashion-mnist-train", FMNIST "train-images-idx3-ubyte.gz",
     FMNIST "train-labels-idx1-ubyte.gz"},
    {"fashion-mnist-test", FMNIST "t10k-images-idx3-ubyte.gz", FMNIST "t10k-labels-idx1-ubyte.gz"},
    {"digits", SKLEARN "digits.csv.gz", NULL},
    {"breast-cancer", SKLEARN "breast_cancer.csv", NULL},
    {"iris", SKLEARN "iris.csv", NULL},
};

/* ---- IDX ---- */

static int idx_size(int type)
{
    switch (type) {
    case 0x08:
    case 0x09:
        return 1;
    case 0x0b:
        return 2;
    case 0x0c:
    case 0x0d:
        return 4;
    case 0x0e:
        return 8;
    default:
        return 0;
    }
}

static int gz_full(gzFile f, void *p, size_t n)
{
    unsigned char *b = p;
    while (n) {
        unsigned chunk = n > (1u << 30) ? 1u << 30 : (unsigned)n;
        int r = gzread(f, b, chunk);
        if (r <= 0) return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

#define IDX_CHUNK ((size_t)1 << 16) /* elements read and converted at a time */

/* Reads an IDX file: its dimensions and its elements as doubles-to-floats. */
static int idx_read(const char *path, int want_dims_max, uint32_t dims[4], int *ndims,
                    int *type_out, float **vals, struct cit_err *err)
{
    unsigned char h[4], be[4];
    size_t count = 1, esz, total, cap = 0;
    unsigned char *raw = NULL;
    float *v = NULL;
    int type, rc = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) return cit_err_set(err, CIT_EIO, "%s: %s", path, strerror(errno ? errno : ENOENT));
    if (gz_full(f, h, 4) || h[0] || h[1]) {
        rc = cit_err_set(err, CIT_EFORMAT, "%s: not an IDX file (bad magic at byte 0)", path);
        goto out;
    }
    type = h[2];
    esz = (size_t)idx_size(type);
    if (!esz) {
        rc = cit_err_set(err, CIT_EFORMAT, "%s: unknown IDX element type 0x%02x at byte 2", path,
                         type);
        goto out;
    }
    if (h[3] < 1 || h[3] > want_dims_max) {
        rc = cit_err_set(err, CIT_EFORMAT, "%s: %d dimensions at byte 3 (1..%d expected)", path,
                         h[3], want_dims_max);
        goto out;
    }
    *ndims = h[3];
    for (int i = 0; i < h[3]; i++) {
        if (gz_full(f, be, 4)) {
            rc = cit_err_set(err, CIT_EFORMAT, "%s: truncated header at byte %d", path, 4 + 4 * i);
            goto out;
        }
        dims[i] = (uint32_t)be[0] << 24 | (uint32_t)be[1] << 16 | (uint32_t)be[2] << 8 | be[3];
        if (!dims[i] || cit_mul_size(count, dims[i], &count) ||
            count > (size_t)FL_MAX_EXAMPLES * 64) {
            rc = cit_err_set(err, CIT_ERANGE,
                             "%s: dimension %d (%u) at byte %d is zero or too large", path, i,
                             dims[i], 4 + 4 * i);
            goto out;
        }
    }
    /* The header's dimensions are only a claim: memory grows with the data
     * that actually arrives, a chunk at a time, so a short file that claims
     * billions of elements costs nothing. */
    total = count * esz;
    raw = cit_malloc(IDX_CHUNK * esz);
    if (!raw) {
        rc = CIT_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        const unsigned char *p = raw + (i % IDX_CHUNK) * esz;
        if (i % IDX_CHUNK == 0) {
            size_t n = count - i < IDX_CHUNK ? count - i : IDX_CHUNK;
            if (i + n > cap) {
                size_t nc = cap ? cap : IDX_CHUNK;
                float *nv;
                while (nc < i + n) nc *= 2;
                if (nc > count) nc = count;
                if (!(nv = cit_realloc(v, nc * sizeof(float)))) {
                    rc = CIT_ENOMEM;
                    goto out;
                }
                v = nv;
                cap = nc;
            }
            if (gz_full(f, raw, n * esz)) {
                rc = cit_err_set(err, CIT_EFORMAT, "%s: truncated: %zu data bytes expected", path,
                                 total);
                goto out;
            }
        }
        uint64_t u = 0;
        for (size_t j = 0; j < esz; j++) u = u << 8 | p[j];
        switch (type) {
        case 0x08:
            v[i] = (float)p[0];
            break;
        case 0x09:
            v[i] = (float)(int8_t)p[0];
            break;
        case 0x0b:
            v[i] = (float)(int16_t)(uint16_t)u;
            break;
        case 0x0c:
            v[i] = (float)(int32_t)(uint32_t)u;
            break;
        case 0x0d: {
            uint32_t b = (uint32_t)u;
            float x;
            memcpy(&x, &b, 4);
            v[i] = x;
            break;
        }
        default: {
            double x;
            memcpy(&x, &u, 8);
            v[i] = (float)x;
        }
        }
        if (!isfinite(v[i])) {
            rc = cit_err_set(err, CIT_EFORMAT, "%s: element %zu is not a finite number", path, i);
            goto out;
        }
    }
    *type_out = type;
    *vals = v;
    v = NULL;
out:
    cit_free(raw);
    cit_free(v);
    gzclose(f);
    return rc;
}

static int labels_path(const char *x, char *out, size_t cap)
{
    static const struct {
        const char *from, *to;
    } rules[] = {{"images-idx3", "labels-idx1"}, {".x.idx", ".y.idx"}, {"images", "labels"}};
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        const char *p = strstr(x, rules[i].from);
        if (!p) continue;
        int n =
            snprintf(out, cap, "%.*s%s%s", (int)(p - x), x, rules[i].to, p + strlen(rules[i].from));
        return n > 0 && (size_t)n < cap ? 0 : -1;
    }
    return -1;
}

static int load_idx(const char *xp, const char *yp, struct fl_data *out, struct cit_err *err)
{
    uint32_t xd[4], yd[4];
    int xn, yn, xt, yt, rc;
    float *xv = NULL, *yv = NULL;
    size_t n, d = 1;
    rc = idx_read(xp, 4, xd, &xn, &xt, &xv, err);
    if (rc) return rc;
    rc = idx_read(yp, 1, yd, &yn, &yt, &yv, err);
    if (rc) goto out;
    n = xd[0];
    for (int i = 1; i < xn; i++) d *= xd[i];
    if (yd[0] != n) {
        rc = cit_err_set(err, CIT_EFORMAT, "%s has %zu examples but %s has %u labels", xp, n, yp,
                         yd[0]);
        goto out;
    }
    if (n > FL_MAX_EXAMPLES || d > FL_MAX_FEATURES) {
        rc = cit_err_set(err, CIT_ERANGE, "%s: %zu examples of %zu features is over the limit", xp,
                         n, d);
        goto out;
    }
    rc = data_alloc(out, n, d);
    if (rc) goto out;
    out->u8 = xt == 0x08;
    for (size_t i = 0; i < n * d; i++) out->x[i] = out->u8 ? xv[i] / 255.0f : xv[i];
    for (size_t i = 0; i < n; i++) {
        float l = yv[i];
        if (l < 0 || l >= FL_MAX_CLASSES || l != floorf(l)) {
            fl_data_free(out);
            rc = cit_err_set(err, CIT_EFORMAT, "%s: label %zu (%g) is not a class number 0..%d", yp,
                             i, (double)l, FL_MAX_CLASSES - 1);
            goto out;
        }
        out->y[i] = (int32_t)l;
        if (out->y[i] + 1 > out->classes) out->classes = out->y[i] + 1;
    }
out:
    cit_free(xv);
    cit_free(yv);
    return rc;
}

/* ---- CSV ---- */

/* Splits a line into numbers; returns the count, -1 when a field is not a
 * number (then *bad is its column). */
static long csv_fields(char *line, double *vals, size_t cap, size_t *bad)
{
    size_t n = 0;
    char *p = line;
    for (;;) {
        char *end;
        double v;
        while (*p == ' ' || *p == '\t') p++;
        errno = 0;
        v = strtod(p, &end);
        if (end == p || errno || !isfinite(v)) {
            *bad = n + 1;
            return -1;
        }
        p = end;
        while (*p == ' ' || *p == '\t' || *p == '\r') p++;
        if (n == cap) return -2;
        vals[n++] = v;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == 0 || *p == '\n') return (long)n;
        *bad = n;
        return -1;
    }
}

static int load_csv(const char *path, struct fl_data *out, struct cit_err *err)
{
    gzFile f = gzopen(path, "rb");
    char *line = NULL;
    double *vals = NULL;
    float *x = NULL;
    int32_t *y = NULL;
    size_t rows = 0, cap = 0, d = 0, lineno = 0, bad = 0;
    int rc = 0, classes = 0;
    if (!f) return cit_err_set(err, CIT_EIO, "%s: %s", path, strerror(errno ? errno : ENOENT));
    line = cit_malloc(CSV_MAX_LINE);
    vals = cit_malloc((FL_MAX_FEATURES + 1) * sizeof(double));
    if (!line || !vals) {
        rc = CIT_ENOMEM;
        goto out;
    }
    while (gzgets(f, line, CSV_MAX_LINE)) {
        size_t len = strlen(line);
        long nf;
        lineno++;
        if (len == CSV_MAX_LINE - 1 && line[len - 1] != '\n') {
            rc = cit_err_set(err, CIT_ERANGE, "%s:%zu: line longer than %u bytes", path, lineno,
                             CSV_MAX_LINE);
            goto out;
        }
        if (len == 0 || line[0] == '\n' || (line[0] == '\r' && line[1] == '\n')) continue;
        nf = csv_fields(line, vals, FL_MAX_FEATURES + 1, &bad);
        if (nf == -2) {
            rc = cit_err_set(err, CIT_ERANGE, "%s:%zu: more than %d columns", path, lineno,
                             FL_MAX_FEATURES + 1);
            goto out;
        }
        if (nf < 0) {
            if (rows == 0 && lineno == 1) continue; /* a header */
            rc = cit_err_set(err, CIT_EFORMAT, "%s:%zu: column %zu is not a number", path, lineno,
                             bad);
            goto out;
        }
        if (nf < 2) {
            rc = cit_err_set(err, CIT_EFORMAT, "%s:%zu: a row needs features and a label", path,
                             lineno);
            goto out;
        }
        if (!d) d = (size_t)nf - 1;
        if ((size_t)nf != d + 1) {
            rc = cit_err_set(err, CIT_EFORMAT, "%s:%zu: %ld columns where the first row had %zu",
                             path, lineno, nf, d + 1);
            goto out;
        }
        if (rows == FL_MAX_EXAMPLES || (rows + 1) * d > (size_t)FL_MAX_EXAMPLES * 64) {
            rc = cit_err_set(err, CIT_ERANGE, "%s:%zu: too many rows", path, lineno);
            goto out;
        }
        if (rows == cap) {
            size_t nc = cap ? cap * 2 : 1024;
            float *nx = cit_realloc(x, nc * d * sizeof(float));
            if (!nx) {
                rc = CIT_ENOMEM;
                goto out;
            }
            x = nx;
            int32_t *ny = cit_realloc(y, nc * sizeof(int32_t));
            if (!ny) {
                rc = CIT_ENOMEM;
                goto out;
            }
            y = ny;
            cap = nc;
        }
        double l = vals[d];
        if (l < 0 || l >= FL_MAX_CLASSES || l != floor(l)) {
            rc = cit_err_set(err, CIT_EFORMAT,
                             "%s:%zu: the label (last column, %g) is not a class number 0..%d",
                             path, lineno, l, FL_MAX_CLASSES - 1);
            goto out;
        }
        for (size_t j = 0; j < d; j++) x[rows * d + j] = (float)vals[j];
        y[rows] = (int32_t)l;
        if (y[rows] + 1 > classes) classes = y[rows] + 1;
        rows++;
    }
    if (!gzeof(f)) {
        rc = cit_err_set(err, CIT_EIO, "%s: read error (corrupt gzip stream?)", path);
        goto out;
    }
    if (!rows) {
        rc = cit_err_set(err, CIT_EFORMAT, "%s: no rows", path);
        goto out;
    }
    memset(out, 0, sizeof(*out));
    out->n = rows;
    out->d = d;
    out->classes = classes;
    out->x = x;
    out->y = y;
    x = NULL;
    y = NULL;
out:
    cit_free(line);
    cit_free(vals);
    cit_free(x);
    cit_free(y);
    gzclose(f);
    return rc;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int fl_data_load(const char *path, const char *labels, struct fl_data *out, struct cit_err *err)
{
    char yp[4096];
    int rc;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(path, known[i].name)) continue;
        if (access(known[i].x, R_OK))
            return cit_err_set(err, CIT_ENOENT, "%s: %s is missing (Debian package %s)", path,
                               known[i].x,
                               known[i].y ? "dataset-fashion-mnist" : "python3-sklearn");
        path = known[i].x;
        labels = known[i].y;
        break;
    }
    if (ends_with(path, ".csv") || ends_with(path, ".csv.gz")) {
        if (labels) return cit_err_set(err, CIT_EINVAL, "%s: a CSV file carries its labels", path);
        rc = load_csv(path, out, err);
    } else {
        if (!labels) {
            if (labels_path(path, yp, sizeof(yp)))
                return cit_err_set(err, CIT_EINVAL,
                                   "%s: not .csv, and no labels file given or derivable "
                                   "(name it *images*, *.x.idx, or pass the labels)",
                                   path);
            labels = yp;
        }
        rc = load_idx(path, labels, out, err);
    }
    return rc;
}

int fl_data_subset(const struct fl_data *src, const size_t *idx, size_t n, struct fl_data *out)
{
    struct fl_data ds;
    int rc = data_alloc(&ds, n, src->d);
    if (rc) return rc;
    ds.u8 = src->u8;
    ds.classes = src->classes;
    for (size_t i = 0; i < n; i++) {
        memcpy(ds.x + i * src->d, src->x + idx[i] * src->d, src->d * sizeof(float));
        ds.y[i] = src->y[idx[i]];
    }
    *out = ds;
    return 0;
}

int fl_data_parts(const struct fl_data *ds, const int *part, int clients, struct fl_data *out)
{
    size_t *idx = cit_malloc((ds->n ? ds->n : 1) * sizeof(size_t));
    int k, rc = 0;
    if (!idx) return CIT_ENOMEM;
    for (k = 0; k < clients && !rc; k++) {
        size_t m = 0;
        for (size_t i = 0; i < ds->n; i++)
            if (part[i] == k) idx[m++] = i;
        rc = fl_data_subset(ds, idx, m, &out[k]);
    }
    if (rc)
        for (int j = 0; j < k - 1; j++) fl_data_free(&out[j]);
    cit_free(idx);
    return rc;
}

void fl_data_standardize(struct fl_data *ds)
{
    for (size_t j = 0; j < ds->d; j++) {
        double s = 0, s2 = 0, mean, sd;
        for (size_t i = 0; i < ds->n; i++) s += ds->x[i * ds->d + j];
        mean = s / (double)ds->n;
        for (size_t i = 0; i < ds->n; i++) {
            double v = ds->x[i * ds->d + j] - mean;
            s2 += v * v;
        }
        sd = sqrt(s2 / (double)ds->n);
        for (size_t i = 0; i < ds->n; i++) {
            float *v = &ds->x[i * ds->d + j];
            *v = sd > 1e-12 ? (float)((*v - mean) / sd) : 0.0f;
        }
    }
    ds->u8 = 0;
}

/* ---- writing ---- */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static int write_idx(const char *path, int type, uint32_t n, uint32_t d, const float *x,
                     const int32_t *y, struct cit_err *err)
{
    char tmp[4096];
    unsigned char h[12];
    int hl = d ? 12 : 8, rc = 0;
    FILE *f;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return cit_err_set(err, CIT_EINVAL, "%s: path too long", path);
    f = fopen(tmp, "wb");
    if (!f) return cit_err_set(err, CIT_EIO, "%s: %s", tmp, strerror(errno));
    h[0] = h[1] = 0;
    h[2] = (unsigned char)type;
    h[3] = d ? 2 : 1;
    put_be32(h + 4, n);
    if (d) put_be32(h + 8, d);
    if (fwrite(h, 1, (size_t)hl, f) != (size_t)hl) rc = CIT_EIO;
    for (size_t i = 0; !rc && i < (size_t)n * (d ? d : 1); i++) {
        unsigned char b[4];
        size_t bl;
        if (d && type == 0x08) {
            long v = lrintf(x[i] * 255.0f);
            b[0] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
            bl = 1;
        } else if (d) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            put_be32(b, u);
            bl = 4;
        } else if (type == 0x08) {
            b[0] = (unsigned char)y[i];
            bl = 1;
        } else {
            put_be32(b, (uint32_t)y[i]);
            bl = 4;
        }
        if (fwrite(b, 1, bl, f) != bl) rc = CIT_EIO;
    }
    if (fflush(f) || fsync(fileno(f))) rc = CIT_EIO;
    if (fclose(f)) rc = CIT_EIO;
    if (!rc && rename(tmp, path)) rc = CIT_EIO;
    if (rc) {
        int e = errno;
        unlink(tmp);
        return cit_err_set(err, rc, "%s: write failed: %s", path, strerror(e));
    }
    return 0;
}

int fl_data_write(const struct fl_data *ds, const char *xpath, const char *ypath,
                  struct cit_err *err)
{
    int rc;
    if (ds->n > UINT32_MAX || ds->d > UINT32_MAX)
        return cit_err_set(err, CIT_ERANGE, "dataset too large for IDX");
    rc = write_idx(xpath, ds->u8 ? 0x08 : 0x0d, (uint32_t)ds->n, (uint32_t)ds->d, ds->x, NULL, err);
    if (rc) return rc;
    return write_idx(ypath, ds->classes <= 256 ? 0x08 : 0x0c, (uint32_t)ds->n, 0, NULL, ds->y, err);
}

/* ---- partitions ---- */

/* Gamma(a, 1) by Marsaglia and Tsang, with the a < 1 boost. */
static double gamma_draw(struct fl_rng *r, double a)
{
    if (a < 1) {
        double u = fl_rng_uniform(r);
        return gamma_draw(r, a + 1) * pow(u > 0 ? u : 1e-300, 1.0 / a);
    }
    double d = a - 1.0 / 3, c = 1.0 / sqrt(9 * d);
    for (;;) {
        double x, v, u;
        do {
            x = fl_rng_normal(r);
            v = 1 + c * x;
        } while (v <= 0);
        v = v * v * v;
        u = fl_rng_uniform(r);
        if (u < 1 - 0.0331 * x * x * x * x) return d * v;
        if (log(u) < 0.5 * x * x + d * (1 - v + log(v))) return d * v;
    }
}

int fl_split(const struct fl_data *ds, int clients, enum fl_split_kind kind, double alpha,
             uint64_t seed, int *part, struct cit_err *err)
{
    struct fl_rng r;
    size_t *byclass = NULL, *start = NULL;
    double *p = NULL;
    int rc = 0, C = ds->classes;
    if (clients < 1 || clients > FL_MAX_CLIENTS)
        return cit_err_set(err, CIT_ERANGE, "clients: %d (1..%d)", clients, FL_MAX_CLIENTS);
    if (kind == FL_SPLIT_DIRICHLET && !(alpha > 0 && alpha < 1e6))
        return cit_err_set(err, CIT_ERANGE, "dirichlet alpha %g must be positive", alpha);
    if (kind == FL_SPLIT_LABEL && clients < C)
        return cit_err_set(err, CIT_ERANGE,
                           "one label per client needs at least as many clients (%d) as "
                           "classes (%d)",
                           clients, C);
    fl_rng_seed(&r, seed);
    byclass = cit_malloc((ds->n ? ds->n : 1) * sizeof(size_t));
    start = cit_calloc((size_t)C + 1, sizeof(size_t));
    p = cit_calloc((size_t)clients, sizeof(double));
    if (!byclass || !start || !p) {
        rc = CIT_ENOMEM;
        goto out;
    }
    /* the examples grouped by class, each group shuffled */
    for (size_t i = 0; i < ds->n; i++) start[ds->y[i] + 1]++;
    for (int c = 0; c < C; c++) start[c + 1] += start[c];
    {
        size_t *fill = cit_malloc((size_t)C * sizeof(size_t));
        if (!fill) {
            rc = CIT_ENOMEM;
            goto out;
        }
        memcpy(fill, start, (size_t)C * sizeof(size_t));
        for (size_t i = 0; i < ds->n; i++) byclass[fill[ds->y[i]]++] = i;
        cit_free(fill);
    }
    for (int c = 0; c < C; c++) {
        size_t a = start[c], m = start[c + 1] - a;
        for (size_t i = m; i > 1; i--) {
            size_t j = fl_rng_below(&r, i), t = byclass[a + i - 1];
            byclass[a + i - 1] = byclass[a + j];
            byclass[a + j] = t;
        }
    }
    for (int c = 0; c < C; c++) {
        size_t a = start[c], m = start[c + 1] - a, done = 0;
        double sum = 0, acc = 0;
        for (int k = 0; k < clients; k++) {
            switch (kind) {
            case FL_SPLIT_IID:
                p[k] = 1;
                break;
            case FL_SPLIT_DIRICHLET:
                p[k] = gamma_draw(&r, alpha);
                break;
            case FL_SPLIT_LABEL:
                p[k] = k % C == c;
                break;
            }
            sum += p[k];
        }
        if (!(sum > 0)) { /* every draw underflowed: give the class to one client */
            p[fl_rng_below(&r, (size_t)clients)] = 1;
            sum = 1;
        }
        /* cut the shuffled class at the cumulative proportions */
        for (int k = 0; k < clients; k++) {
            size_t upto;
            acc += p[k];
            upto = k == clients - 1 ? m : (size_t)llround(acc / sum * (double)m);
            if (upto > m) upto = m;
            for (; done < upto; done++) part[byclass[a + done]] = k;
        }
    }
out:
    cit_free(byclass);
    cit_free(start);
    cit_free(p);
    return rc;
}

int fl_model_write(const char *path, const float *w, size_t d, struct cit_err *err)
{
    if (d < 1 || d > FL_MAX_DIM) return cit_err_set(err, CIT_ERANGE, "%s: %zu parameters", path, d);
    return write_idx(path, 0x0d, 1, (uint32_t)d, w, NULL, err);
}

int fl_model_read(const char *path, float **w, size_t *d, struct cit_err *err)
{
    struct cit_buf b = {0};
    const unsigned char *p;
    uint32_t n, dd;
    int rc = cit_read_file(path, 12 + (size_t)FL_MAX_DIM * 4, &b, err);
    *w = NULL;
    if (rc == CIT_ENOENT) return cit_err_set(err, rc, "%s: no such file", path);
    if (rc) return rc;
    p = (const unsigned char *)b.p;
    if (b.len < 12 || p[0] || p[1] || p[2] != 0x0d || p[3] != 2) {
        cit_buf_free(&b);
        return cit_err_set(err, CIT_EFORMAT, "%s: not an IDX file of f32 parameters", path);
    }
    n = be32(p + 4);
    dd = be32(p + 8);
    if (n != 1 || dd < 1 || dd > FL_MAX_DIM || b.len != 12 + (size_t)dd * 4) {
        cit_buf_free(&b);
        return cit_err_set(err, CIT_EFORMAT, "%s: expected 1 x d parameters and their bytes", path);
    }
    if (!(*w = cit_malloc((size_t)dd * sizeof(float)))) {
        cit_buf_free(&b);
        return CIT_ENOMEM;
    }
    for (uint32_t i = 0; i < dd; i++) {
        uint32_t u = be32(p + 12 + (size_t)i * 4);
        memcpy(&(*w)[i], &u, 4);
    }
    *d = dd;
    cit_buf_free(&b);
    return 0;
}
