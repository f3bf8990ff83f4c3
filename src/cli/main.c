/*
 * citadel <verb>: the command-line front end.
 *
 *   citadel info MODEL [--json]
 *   citadel run -m MODEL -p PROMPT [-n N] [-t THREADS] [--temp T] [--top-k K]
 *               [--top-p P] [--min-p P] [--repeat-penalty R] [--seed S]
 *               [--stop STR]... [--chat] [--system TEXT] [--ctx N] [--json]
 *   citadel tokenize -m MODEL [--no-bos] [--special] TEXT
 *   citadel model quantize IN OUT TYPE
 *   citadel model keygen|card|sign|verify|admit|list|revoke ...
 *   citadel trust add|list|remove ...
 *   citadel serve [--config FILE] [--model [ID=]PATH]... [options]
 *   citadel keys add|list|revoke ...
 *   citadel detect FILE|- [--keyword WORD]... [--exact WORD]... [--redact]
 *   citadel policy check FILE | policy test FILE CASES
 *   citadel audit verify|proof|consistency|show|export ...
 *   citadel fl split|train|sim|keygen|serve|join ...
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "citadel/engine.h"
#include "citadel/ledger.h"
#include "cli.h"

static void usage(FILE *f)
{
    fputs("usage: citadel <command> [options]   (citadel <command> --help; citadel --version)\n"
          "\n"
          "commands:\n"
          "  info MODEL [--json]            architecture, hyperparameters, tokenizer, tensors\n"
          "  run -m MODEL -p PROMPT [...]   generate text (citadel run --help)\n"
          "  embed -m MODEL TEXT...         embeddings, one JSON array per text\n"
          "  tokenize -m MODEL TEXT         print token ids (--no-bos, --special)\n"
          "  model quantize IN OUT TYPE     convert an f32/f16/bf16 model to\n"
          "                                 q8_0, q4_0, q4_k_m, q5_k_m or q6_k\n"
          "  model keygen|card|sign|verify  OMS v1.0 signatures, CycloneDX model cards\n"
          "  model admit|list|revoke        border control: what may be loaded (citadel model)\n"
          "  model load|unload              on a running serve: load or unload a model now\n"
          "  trust add|list|remove          signers whose keys admission accepts\n"
          "  serve --model PATH [...]       OpenAI-compatible HTTP API (citadel serve --help)\n"
          "  keys add|list|revoke           API keys for serve (citadel keys)\n"
          "  detect FILE|- [--redact]       personal and secret data in a text, as JSON lines\n"
          "  policy check FILE              validate a jurisdiction policy\n"
          "  policy test FILE CASES         run table-driven decision cases\n"
          "  audit verify|proof|show|export the audit ledger, offline (citadel audit)\n"
          "  fl split|train|sim             federated learning: partitions, central baseline,\n"
          "                                 an in-process federation over SecAgg+ (citadel fl)\n"
          "  fl keygen|serve|join           a federation over TLS: identities, the coordinator,\n"
          "                                 a participant (docs/fl.md)\n"
          "  peer identity|keygen|list|test the diplomatic gateway's peers (docs/gateway.md)\n"
          "  vet [serve's flags] [--out DIR] the vetting checklist as a signed report;\n"
          "  vet verify [--dir DIR]           check one (docs/vet.md)\n",
          f);
}

static void usage_info(FILE *f)
{
    fputs("usage: citadel info MODEL [--json]\n", f);
}

static void usage_tokenize(FILE *f)
{
    fputs("usage: citadel tokenize -m MODEL [--no-bos] [--special] TEXT\n", f);
}

int cli_parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cli_parse_float(const char *s, float *out)
{
    char *end;
    float v;
    errno = 0;
    v = strtof(s, &end);
    if (errno || end == s || *end || v != v) return -1;
    *out = v;
    return 0;
}

void cli_json_str(FILE *f, const char *s, size_t n)
{
    struct cit_buf b = {0};
    if (cit_buf_json_str(&b, s, n) == 0) fwrite(b.p, 1, b.len, f);
    cit_buf_free(&b);
}

int cli_read_vkey(const char *path, struct ledger_vkey *vk, struct cit_err *err)
{
    struct cit_buf b = {0};
    int rc = cli_read_input(path, 4096, &b);
    if (rc)
        cit_err_set(err, rc, "%s: %s", path, rc == CIT_EIO ? strerror(errno) : cit_strerror(rc));
    else if ((rc = ledger_vkey_parse(b.p ? b.p : "", b.len, vk, err)))
        cit_err_prefix(err, path);
    cit_buf_free(&b);
    return rc;
}

int cli_read_input(const char *path, size_t max, struct cit_buf *out)
{
    char chunk[65536];
    size_t n;
    int rc = 0;
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return CIT_EIO;
    while (!rc && (n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (out->len + n > max)
            rc = CIT_ERANGE;
        else if (cit_buf_add(out, chunk, n))
            rc = CIT_ENOMEM;
    }
    if (!rc && ferror(f)) rc = CIT_EIO;
    if (f != stdin) fclose(f);
    return rc;
}

/* ---- info ---- */

/* Families the engine does not run, by what their files show, so that the
 * verdict names the missing piece rather than only the first check that
 * failed. */
static const struct {
    const char *arch, *what;
} known_families[] = {
    {"gemma", "Gemma"},        {"nomic-bert", "an embedding model (nomic BERT)"},
    {"mistral3", "Mistral 3"}, {"phi2", "Phi-2"},
    {"falcon", "Falcon"},      {"gpt2", "GPT-2"},
};

/* citadel info on a file the engine cannot load: everything the GGUF shows
 * that the engine lacks (architecture, tensor types), then what the loader
 * said (which names the rest, such as a rope scaling type). Exit status 1,
 * the verdict on stdout. A file that is no GGUF at all gets the reader's error alone. */
static int info_cannot_run(const char *path, const struct cit_err *load_err, int json)
{
    struct gguf_file *g;
    struct cit_err e;
    struct gguf_str arch = {"", 0};
    char reasons[16][640], a[64] = "";
    int n = 0;
    if (gguf_open(path, &g, &e)) {
        fprintf(stderr, "citadel: %s\n", load_err->msg);
        return 1;
    }
    if (gguf_get_str(g, "general.architecture", &arch, &e)) {
        snprintf(reasons[n++], sizeof(reasons[0]), "no general.architecture in the metadata");
    } else {
        snprintf(a, sizeof(a), "%.*s", (int)(arch.n < 63 ? arch.n : 63), arch.p);
        if (eng_arch_parse(arch.p, arch.n) < 0) {
            const char *what = NULL;
            for (size_t i = 0; i < sizeof(known_families) / sizeof(known_families[0]); i++)
                if (!strcmp(a, known_families[i].arch)) what = known_families[i].what;
            snprintf(reasons[n++], sizeof(reasons[0]),
                     "architecture '%s'%s%s%s is not supported (citadel runs %s)", a,
                     what ? ", " : "", what ? what : "", what ? "," : "", eng_arch_list());
        }
    }
    {
        uint32_t bad[64] = {0};
        uint64_t example[64] = {0}; /* a tensor of each type, by index */
        char types[160];
        eng_type_list(types, sizeof(types));
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            uint32_t t = g->tensors[i].type;
            if (t < 64 && !eng_type_supported(t) && !bad[t]++) example[t] = i;
        }
        for (uint32_t t = 0; t < 64 && n < 14; t++)
            if (bad[t]) {
                const struct gguf_str *x = &g->tensors[example[t]].name;
                snprintf(reasons[n++], sizeof(reasons[0]),
                         "%u tensor%s of type %s (such as '%.*s'), which the engine does not "
                         "read (%s)",
                         bad[t], bad[t] > 1 ? "s" : "", gguf_type_name(t),
                         (int)(x->n < 64 ? x->n : 64), x->p, types);
            }
    }
    snprintf(reasons[n++], sizeof(reasons[0]), "the loader: %.520s", load_err->msg);
    if (json) {
        printf("{\"path\":");
        cli_json_str(stdout, path, strlen(path));
        printf(",\"gguf_version\":%u,\"architecture\":", g->version);
        cli_json_str(stdout, a, strlen(a));
        printf(",\"runnable\":false,\"reasons\":[");
        for (int i = 0; i < n; i++) {
            if (i) printf(",");
            cli_json_str(stdout, reasons[i], strlen(reasons[i]));
        }
        printf("]}\n");
    } else {
        printf("file:          %s (GGUF v%u, %llu tensors, %llu metadata keys)\n", path, g->version,
               (unsigned long long)g->n_tensors, (unsigned long long)g->n_kv);
        printf("architecture:  %s\n", a[0] ? a : "(none)");
        printf("runnable:      no\n");
        for (int i = 0; i < n; i++) printf("  - %s\n", reasons[i]);
    }
    gguf_close(g);
    return 1;
}

static int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0;
    struct eng_model *m;
    struct cit_err err;
    const struct eng_hparams *hp;
    const struct eng_vocab_info *vi;
    const struct gguf_file *g;
    int rc, recognised;
    enum eng_chat_tmpl tmpl;

    {
        const struct cli_flag flags[] = {{"--json", CLI_BOOL, &json, NULL, 0, 0},
                                         {NULL, 0, NULL, NULL, 0, 0}};
        const char *pos[1] = {NULL};
        int n_pos;
        if ((rc = cli_flags_parse("info", flags, NULL, argc, argv, pos, 1, &n_pos))) return rc;
        path = pos[0];
    }
    if (!path) {
        usage_info(stderr);
        return 2;
    }
    if ((rc = eng_model_load(path, &m, &err))) return info_cannot_run(path, &err, json);
    hp = eng_model_hparams(m);
    vi = eng_vocab(m);
    g = eng_model_gguf(m);
    tmpl = eng_chat_detect(m, &recognised);
    if (json) {
        printf("{\"path\":");
        cli_json_str(stdout, path, strlen(path));
        printf(",\"gguf_version\":%u,\"architecture\":\"%s\",\"n_vocab\":%d,\"n_ctx_train\":%d,"
               "\"n_embd\":%d,\"n_layer\":%d,\"n_head\":%d,\"n_head_kv\":%d,\"head_dim\":%d,"
               "\"n_ff\":%d,\"n_rot\":%d,\"rope_freq_base\":%g,\"rms_eps\":%g,"
               "\"tied_output\":%s,\"runnable\":true,",
               g->version, eng_arch_name(hp->arch), hp->n_vocab, hp->n_ctx_train, hp->n_embd,
               hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff, hp->n_rot,
               (double)hp->rope_base, (double)hp->rms_eps, hp->tied_output ? "true" : "false");
        printf("\"tokenizer\":{\"type\":\"%s\",\"pre\":\"%s\",\"bos\":%d,\"eos\":%d,\"eot\":%d,"
               "\"add_bos\":%s},\"chat_template\":\"%s\",\"chat_template_recognised\":%s,"
               "\"causal\":%s,\"pooling\":\"%s\",\"weight_bytes\":%llu,\"tensors\":[",
               vi->type == ENG_VOCAB_SPM   ? "spm"
               : vi->type == ENG_VOCAB_WPM ? "wpm"
                                           : "bpe",
               vi->pre, vi->bos, vi->eos, vi->eot, vi->add_bos ? "true" : "false",
               eng_chat_tmpl_name(tmpl), recognised ? "true" : "false",
               hp->causal ? "true" : "false", eng_pooling_name(hp->pooling),
               (unsigned long long)eng_model_weight_bytes(m));
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const struct gguf_tensor *t = &g->tensors[i];
            printf("%s{\"name\":", i ? "," : "");
            cli_json_str(stdout, t->name.p, t->name.n);
            printf(",\"type\":\"%s\",\"shape\":[", gguf_type_name(t->type));
            for (uint32_t d = 0; d < t->n_dims; d++)
                printf("%s%llu", d ? "," : "", (unsigned long long)t->ne[d]);
            printf("],\"bytes\":%llu}", (unsigned long long)t->size);
        }
        printf("]}\n");
    } else {
        printf("file:          %s (GGUF v%u, %llu tensors, %llu metadata keys)\n", path, g->version,
               (unsigned long long)g->n_tensors, (unsigned long long)g->n_kv);
        printf("architecture:  %s\n", eng_arch_name(hp->arch));
        printf("runnable:      yes (%s kernels)\n", eng_kernels_name());
        printf("vocabulary:    %d tokens, %s tokenizer (pre: %s), bos %d, eos %d%s\n", hp->n_vocab,
               vi->type == ENG_VOCAB_SPM   ? "SentencePiece"
               : vi->type == ENG_VOCAB_WPM ? "WordPiece"
                                           : "byte-level BPE",
               vi->pre, vi->bos, vi->eos, vi->add_bos ? ", adds BOS" : "");
        printf("context:       %d tokens (training)\n", hp->n_ctx_train);
        if (hp->n_swa > 0)
            printf("sliding window: %d tokens on %d of %d layers (their KV cache holds the "
                   "window only)\n",
                   hp->n_swa, hp->n_swa_layers, hp->n_layer);
        if (hp->attn_softcap > 0 || hp->final_softcap > 0)
            printf("soft caps:     attention %g, logits %g\n", (double)hp->attn_softcap,
                   (double)hp->final_softcap);
        printf("dimensions:    embd %d, layers %d, heads %d (kv %d, size %d), ffn %d\n", hp->n_embd,
               hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff);
        if (hp->causal) {
            printf("rope:          %d dims, base %g, %s\n", hp->n_rot, (double)hp->rope_base,
                   hp->rope_neox ? "neox" : "normal");
            printf("norm eps:      %g\n", (double)hp->rms_eps);
            printf("output:        %s\n",
                   hp->tied_output ? "tied to token embeddings" : "separate");
            printf("chat template: %s%s\n", eng_chat_tmpl_name(tmpl),
                   recognised ? "" : " (fallback: model template absent or not recognised)");
        } else {
            printf("encoder:       bidirectional attention, learned positions (%d), %d token "
                   "types, LayerNorm eps %g; no text output\n",
                   hp->n_ctx_train, hp->n_tok_types, (double)hp->norm_eps);
        }
        if (hp->pooling != ENG_POOL_NONE)
            printf("embeddings:    %d dimensions, %s pooling (%s.pooling_type), /v1/embeddings "
                   "and citadel embed\n",
                   hp->n_embd, eng_pooling_name(hp->pooling), eng_arch_name(hp->arch));
        printf("weights:       %.1f MiB read per token\n",
               (double)eng_model_weight_bytes(m) / (1024.0 * 1024.0));
        printf("tensors:\n");
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const struct gguf_tensor *t = &g->tensors[i];
            char shape[96];
            int n = 0;
            for (uint32_t d = 0; d < t->n_dims; d++)
                n += snprintf(shape + n, sizeof(shape) - (size_t)n, "%s%llu", d ? " x " : "",
                              (unsigned long long)t->ne[d]);
            printf("  %-32.*s %-5s %-22s %10.2f KiB\n", (int)t->name.n, t->name.p,
                   gguf_type_name(t->type), shape, (double)t->size / 1024.0);
        }
    }
    eng_model_free(m);
    return 0;
}

/* ---- tokenize ---- */

static int cmd_tokenize(int argc, char **argv)
{
    const char *path = NULL, *text = NULL;
    int add_special = 1, parse_special = 0, n = 0, rc;
    struct eng_model *m;
    struct cit_err err;
    int32_t *ids;

    {
        int no_bos = 0;
        const struct cli_flag flags[] = {{"-m", CLI_STR, &path, NULL, 0, 0},
                                         {"--model", CLI_STR, &path, NULL, 0, 0},
                                         {"--no-bos", CLI_BOOL, &no_bos, NULL, 0, 0},
                                         {"--special", CLI_BOOL, &parse_special, NULL, 0, 0},
                                         {NULL, 0, NULL, NULL, 0, 0}};
        const char *pos[1] = {NULL};
        int n_pos;
        if ((rc = cli_flags_parse("tokenize", flags, NULL, argc, argv, pos, 1, &n_pos))) return rc;
        text = pos[0];
        add_special = !no_bos;
    }
    if (!path || !text) {
        usage_tokenize(stderr);
        return 2;
    }
    if (eng_model_load(path, &m, &err)) {
        fprintf(stderr, "citadel: %s\n", err.msg);
        return 1;
    }
    rc = eng_tokenize(m, text, strlen(text), add_special, parse_special, NULL, 0, &n);
    ids = cit_calloc((size_t)n + 1, sizeof(int32_t));
    if (ids && (rc == 0 || rc == CIT_EOVERFLOW))
        rc = eng_tokenize(m, text, strlen(text), add_special, parse_special, ids, n, &n);
    if (!ids || rc) {
        fprintf(stderr, "citadel: tokenize failed: %s\n", cit_strerror(ids ? rc : CIT_ENOMEM));
        cit_free(ids);
        eng_model_free(m);
        return 1;
    }
    for (int i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
    printf("\n");
    cit_free(ids);
    eng_model_free(m);
    return 0;
}

/* Every verb, with its usage: `citadel VERB --help` and `citadel help
 * VERB` print it and exit 0, whatever the verb's own parser does. */
static const struct verb {
    const char *name, *sub; /* sub: the second word, or NULL */
    int (*run)(int argc, char **argv);
    void (*usage)(FILE *f);
} verbs[] = {
    {"info", NULL, cmd_info, usage_info},
    {"run", NULL, cli_run, cli_usage_run},
    {"embed", NULL, cli_embed, cli_usage_embed},
    {"tokenize", NULL, cmd_tokenize, usage_tokenize},
    {"serve", NULL, cli_serve, cli_usage_serve},
    {"keys", NULL, cli_keys, cli_usage_keys},
    {"trust", NULL, cli_trust, cli_usage_trust},
    {"detect", NULL, cli_detect, cli_usage_detect},
    {"policy", NULL, cli_policy, cli_usage_policy},
    {"audit", NULL, cli_audit, cli_usage_audit},
    {"fl", NULL, cli_fl, cli_usage_fl},
    {"peer", NULL, cli_peer, cli_usage_peer},
    {"vet", NULL, cli_vet, cli_usage_vet},
    {"model", "quantize", cli_quantize, cli_usage_quantize},
    {"model", NULL, cli_model_sign, cli_usage_model},
};

static const struct verb *find_verb(int argc, char **argv)
{
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (!strcmp(argv[0], verbs[i].name) &&
            (!verbs[i].sub || (argc >= 2 && !strcmp(argv[1], verbs[i].sub))))
            return &verbs[i];
    return NULL;
}

static int wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    const struct verb *v;
    int skip;
    cli_streams_init();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("citadel %s\nkernels: %s (this CPU: %s)\n", CITADEL_VERSION, eng_kernels_built(),
               eng_kernels_name());
        return 0;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        if (argc >= 3 && (v = find_verb(argc - 2, argv + 2))) {
            v->usage(stdout);
            return 0;
        }
        usage(stdout);
        return 0;
    }
    if (!(v = find_verb(argc - 1, argv + 1))) {
        fprintf(stderr, "citadel: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    skip = v->sub ? 3 : 2;
    if (!strcmp(v->name, "model") && !v->sub && argc < 3) {
        v->usage(stderr);
        return 2;
    }
    if (wants_help(argc - skip, argv + skip)) {
        v->usage(stdout);
        return 0;
    }
    return v->run(argc - skip, argv + skip);
}
