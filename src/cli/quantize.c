/*
 * citadel model quantize IN OUT TYPE
 *
 * Converts the 2-D weights of an f32/f16/bf16 model with one of the
 * engine's recipes (eng_qmix_pick); 1-D tensors (norms, biases) stay f32.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "citadel/engine.h"
#include "cli.h"
#include "../engine/eng_int.h"

struct qctx {
    const struct gguf_tensor *src;
    uint32_t type;
    struct cit_pool *pool;
    uint8_t *dst;
};

struct rows_job {
    struct qctx *q;
    int64_t n_rows;
    int rc;
};

static void quantize_rows(void *arg, int ith, int nth)
{
    struct rows_job *j = arg;
    const struct gguf_tensor *t = j->q->src;
    const struct eng_kernels *k = eng_kernels_get();
    int64_t ncols = (int64_t)t->ne[0];
    size_t in_row = eng_row_bytes(t->type, ncols), out_row = eng_row_bytes(j->q->type, ncols);
    float *tmp = cit_malloc((size_t)ncols * sizeof(float));
    if (!tmp) {
        j->rc = CIT_ENOMEM;
        return;
    }
    for (int64_t r = ith; r < j->n_rows; r += nth) {
        const uint8_t *src = (const uint8_t *)t->data + (size_t)r * in_row;
        uint8_t *dst = j->q->dst + (size_t)r * out_row;
        k->dequant[t->type](src, tmp, (int)ncols);
        if (eng_quantize_row(j->q->type, tmp, dst, (int)ncols)) j->rc = CIT_ENOTSUP;
    }
    cit_free(tmp);
}

static int fill(void *ctx, const char *name, void *dst, size_t size)
{
    struct qctx *q = ctx;
    struct rows_job j = {q, (int64_t)(q->src->n_elems / q->src->ne[0]), 0};
    (void)name;
    (void)size;
    q->dst = dst;
    cit_pool_run(q->pool, quantize_rows, &j);
    return j.rc;
}

void cli_usage_quantize(FILE *f)
{
    fputs("usage: citadel model quantize IN OUT TYPE   (q8_0, q4_0, q4_k_m, q5_k_m, q6_k)\n", f);
}

int cli_quantize(int argc, char **argv)
{
    struct gguf_file *in = NULL;
    struct gguf_writer *w = NULL;
    struct cit_pool *pool = NULL;
    struct qctx *ctx = NULL;
    struct cit_err err;
    const struct eng_kernels *k = eng_kernels_get();
    enum eng_qmix mix;
    int rc, status = 1, n_layer = 0, tied;
    uint64_t bytes_in = 0, bytes_out = 0;

    if (argc != 3) {
        cli_usage_quantize(stderr);
        return 2;
    }
    if (eng_qmix_from_name(argv[2], &mix)) {
        fprintf(stderr,
                "citadel model quantize: unknown type '%s' (q8_0, q4_0, q4_k_m, q5_k_m, "
                "q6_k)\n",
                argv[2]);
        return 2;
    }
    if (gguf_open(argv[0], &in, &err)) {
        fprintf(stderr, "citadel: %s\n", err.msg);
        return 1;
    }
    tied = !gguf_find_tensor(in, "output.weight");
    for (uint64_t i = 0; i < in->n_tensors; i++) {
        const struct gguf_tensor *t = &in->tensors[i];
        int l;
        char name[GGUF_MAX_NAME + 1];
        snprintf(name, sizeof(name), "%.*s", (int)t->name.n, t->name.p);
        if (sscanf(name, "blk.%d.", &l) == 1 && l + 1 > n_layer) n_layer = l + 1;
        if (t->type != GGUF_T_F32 && t->type != GGUF_T_F16 && t->type != GGUF_T_BF16) {
            fprintf(stderr,
                    "citadel model quantize: %s: tensor '%s' is already %s; only f32, "
                    "f16 and bf16 models can be quantized\n",
                    argv[0], name, gguf_type_name(t->type));
            goto done;
        }
    }
    if ((rc = gguf_writer_new(&w)) || (rc = cit_pool_create(cit_cpu_count(), &pool))) goto fail_rc;
    ctx = cit_calloc(in->n_tensors + 1, sizeof(*ctx));
    if (!ctx) {
        rc = CIT_ENOMEM;
        goto fail_rc;
    }
    for (uint64_t i = 0; i < in->n_kv; i++) {
        char key[256];
        const struct gguf_kv *kv = &in->kv[i];
        if (kv->key.n >= sizeof(key)) continue;
        snprintf(key, sizeof(key), "%.*s", (int)kv->key.n, kv->key.p);
        if (!strcmp(key, "general.file_type") || !strcmp(key, "general.quantization_version"))
            continue;
        if ((rc = gguf_writer_set(w, key, &kv->v))) goto fail_rc;
    }
    if ((rc = gguf_writer_set_u32(w, "general.file_type", eng_qmix_file_type(mix))) ||
        (rc = gguf_writer_set_u32(w, "general.quantization_version", 2)))
        goto fail_rc;
    for (uint64_t i = 0; i < in->n_tensors; i++) {
        const struct gguf_tensor *t = &in->tensors[i];
        char name[GGUF_MAX_NAME + 1];
        snprintf(name, sizeof(name), "%.*s", (int)t->name.n, t->name.p);
        ctx[i].src = t;
        ctx[i].type = eng_qmix_pick(mix, name, t->n_dims, t->ne[0], t->type, n_layer, tied);
        ctx[i].pool = pool;
        if (!k->dequant[t->type]) {
            rc = CIT_ENOTSUP;
            goto fail_rc;
        }
        bytes_in += t->size;
        bytes_out += gguf_tensor_bytes(ctx[i].type, t->n_dims, t->ne);
        if ((rc = gguf_writer_add_tensor_fn(w, name, ctx[i].type, t->n_dims, t->ne, fill, &ctx[i])))
            goto fail_rc;
    }
    if (gguf_writer_write(w, argv[1], &err)) {
        fprintf(stderr, "citadel: %s\n", err.msg);
        goto done;
    }
    fprintf(stderr, "citadel: wrote %s (%s): %.1f MiB of tensors from %.1f MiB\n", argv[1], argv[2],
            (double)bytes_out / 1048576.0, (double)bytes_in / 1048576.0);
    status = 0;
    goto done;
fail_rc:
    fprintf(stderr, "citadel model quantize: %s\n", cit_strerror(rc));
done:
    cit_free(ctx);
    cit_pool_free(pool);
    gguf_writer_free(w);
    gguf_close(in);
    return status;
}
