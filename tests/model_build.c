/* Small random models for tests that need a shape or type the shared
 * directory does not have. */
#include "citadel/engine.h"
#include "test.h"
#include "../src/engine/eng_int.h"
#include "../src/gguf/gguf_int.h"

int t_build_model(const char *path, const struct t_model_spec *sp)
{
    struct eng_synth_spec s = {0};
    struct cit_err err;
    int rc;
    s.arch = sp->arch;
    s.n_embd = sp->n_embd, s.n_layer = sp->n_layer, s.n_head = sp->n_head;
    s.n_head_kv = sp->n_head_kv, s.n_ff = sp->n_ff, s.n_vocab = sp->n_vocab, s.n_ctx = 256;
    s.wtype = sp->wtype, s.tied = sp->tied, s.seed = sp->seed;
    rc = eng_synth_write(path, &s, NULL, &err);
    if (rc) fprintf(stderr, "    t_build_model: %s\n", err.msg);
    return rc;
}

/* Rewrites a model with one metadata key replaced (value) or an array cut. */
int t_rewrite_kv(const char *in, const char *out, const char *key, const struct gguf_value *v)
{
    struct gguf_file *f;
    struct gguf_writer *w;
    struct cit_err err;
    int rc;
    if (gguf_open(in, &f, &err) || gguf_writer_new(&w)) return -1;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        char k[256];
        snprintf(k, sizeof(k), "%.*s", (int)f->kv[i].key.n, f->kv[i].key.p);
        gguf_writer_set(w, k, strcmp(k, key) ? &f->kv[i].v : v);
    }
    if (!gguf_find_kv(f, key)) gguf_writer_set(w, key, v);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const struct gguf_tensor *t = &f->tensors[i];
        char nm[80];
        snprintf(nm, sizeof(nm), "%.*s", (int)t->name.n, t->name.p);
        gguf_writer_add_tensor(w, nm, t->type, t->n_dims, t->ne, t->data);
    }
    rc = gguf_writer_write(w, out, &err);
    gguf_writer_free(w);
    gguf_close(f);
    return rc;
}
