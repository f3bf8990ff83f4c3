/*
 * Differential privacy: the Renyi-DP accountant of a participant's rounds,
 * its account on disk, and Gaussian noise from the system's generator.
 */
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "fl_int.h"

static const double orders[FL_DP_ORDERS] = {1.25, 1.5, 1.75, 2,  2.5, 3,  3.5, 4,
                                            4.5,  5,   6,    7,  8,   10, 12,  14,
                                            16,   20,  24,   32, 48,  64, 128, 256};

void fl_dp_spend(struct fl_dp_account *a, double z)
{
    for (int i = 0; i < FL_DP_ORDERS; i++) a->rdp[i] += orders[i] / (2 * z * z);
    a->rounds++;
}

double fl_dp_epsilon(const struct fl_dp_account *a, double delta)
{
    double best = INFINITY;
    if (!a->rounds) return 0;
    for (int i = 0; i < FL_DP_ORDERS; i++) {
        double al = orders[i];
        double e = a->rdp[i] + log((al - 1) / al) - (log(delta) + log(al)) / (al - 1);
        if (e < best) best = e;
    }
    return best < 0 ? 0 : best;
}

/* The account is text: "citadel-fl-dp v1 rounds N" then one line per order,
 * "ORDER RDP", with %.17g so that reading it back loses nothing. */
int fl_dp_load(const char *path, struct fl_dp_account *a, struct cit_err *err)
{
    struct cit_buf b = {0};
    const char *p;
    char *end;
    int rc = cit_read_file(path, 1 << 16, &b, err);
    memset(a, 0, sizeof(*a));
    if (rc == CIT_ENOENT) return 0;
    if (rc) return rc;
    p = b.p ? b.p : "";
    if (strncmp(p, "citadel-fl-dp v1 rounds ", 24)) {
        cit_buf_free(&b);
        return cit_err_set(err, CIT_EFORMAT, "%s: not a privacy account", path);
    }
    a->rounds = strtoull(p + 24, &end, 10);
    p = end;
    for (int i = 0; i < FL_DP_ORDERS; i++) {
        double o = strtod(p, &end), v;
        if (end == p || o != orders[i]) break;
        p = end;
        v = strtod(p, &end);
        if (end == p || !(v >= 0) || !isfinite(v)) break;
        a->rdp[i] = v;
        p = end;
        if (i == FL_DP_ORDERS - 1) {
            cit_buf_free(&b);
            return 0;
        }
    }
    cit_buf_free(&b);
    return cit_err_set(err, CIT_EFORMAT, "%s: damaged privacy account (the budget is unknown)",
                       path);
}

int fl_dp_save(const char *path, const struct fl_dp_account *a, struct cit_err *err)
{
    struct cit_buf b = {0};
    int rc = cit_buf_printf(&b, "citadel-fl-dp v1 rounds %llu\n", (unsigned long long)a->rounds);
    for (int i = 0; !rc && i < FL_DP_ORDERS; i++)
        rc = cit_buf_printf(&b, "%.17g %.17g\n", orders[i], a->rdp[i]);
    rc = rc ? cit_err_set(err, rc, "%s: out of memory", path)
            : cit_write_file(path, b.p, b.len, 0644, err);
    cit_buf_free(&b);
    return rc;
}

/* Uniform in (0, 1) with 53 random bits. */
static double uniform(uint64_t v)
{
    return ((double)(v >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

void fl_dp_noise(float *x, size_t d, double sigma)
{
    uint64_t r[256];
    size_t used = 256;
    for (size_t i = 0; i < d; i += 2) {
        double u1, u2, rad;
        if (used == 256) {
            randombytes_buf(r, sizeof(r));
            used = 0;
        }
        u1 = uniform(r[used++]);
        u2 = uniform(r[used++]);
        /* Box-Muller: two independent normals per pair */
        rad = sigma * sqrt(-2 * log(u1));
        x[i] += (float)(rad * cos(2 * M_PI * u2));
        if (i + 1 < d) x[i + 1] += (float)(rad * sin(2 * M_PI * u2));
    }
    sodium_memzero(r, sizeof(r));
}
