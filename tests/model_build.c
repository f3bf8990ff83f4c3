/* Small random models for tests that need a shape or type the shared
 * directory does not have. */
#include "citadel/engine.h"
#include "test.h"
#include "../src/engine/eng_int.h"

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
