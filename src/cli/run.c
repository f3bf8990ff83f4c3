/*
 * citadel run: prompt in, completion streamed to stdout.
 *
 * Text is printed as it is generated, except bytes that could be the start
 * of a stop string (held back until they cannot) and incomplete UTF-8
 * characters (held back by the detokenizer).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "citadel/engine.h"
#include "cli.h"

#define MAX_STOPS 8

struct run_opts {
    const char *model, *prompt, *system, *tmpl;
    long n_predict, threads, ctx;
    struct eng_sampler_params sp;
    const char *stops[MAX_STOPS];
    int n_stops, chat, json, no_bos;
    int unvetted, trust_stored;
    struct cli_node_args node;
};

static void run_usage(FILE *f)
{
    fputs("usage: citadel run -m MODEL -p PROMPT [options]\n"
          "  -n N               tokens to generate (default 128)\n"
          "  -t N               threads (default: all CPUs)\n"
          "  --temp T           temperature, 0 for greedy (default 0.8)\n"
          "  --top-k K          (default 40, 0 off)   --top-p P (default 0.95)\n"
          "  --min-p P          (default 0.05)        --repeat-penalty R (default 1.0)\n"
          "  --seed S           random seed (default 0)\n"
          "  --stop STR         stop when STR is generated (repeatable)\n"
          "  --chat             wrap the prompt in the model's chat template\n"
          "  --system TEXT      system message for --chat\n"
          "  --template NAME    chatml, llama2, llama3, mistral, zephyr, phi3\n"
          "  --ctx N            context size (default: prompt + N)\n"
          "  --json             print one JSON object at the end instead of streaming\n"
          "  --unvetted         load a model that was not admitted (when the policy allows)\n"
          "  --trust-stored-digest  skip hashing an admitted model on read-only media\n"
          "  --state F --policy F --ledger DIR --config F   the node (else citadel.conf);\n"
          "                     the model must be admitted there (citadel model admit)\n",
          f);
}

static int parse_opts(int argc, char **argv, struct run_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->n_predict = 128;
    o->threads = cit_cpu_count();
    eng_sampler_defaults(&o->sp);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long l;
        int takes = 1;
        if (!strcmp(a, "--chat")) {
            o->chat = 1, takes = 0;
        } else if (!strcmp(a, "--json")) {
            o->json = 1, takes = 0;
        } else if (!strcmp(a, "--no-bos")) {
            o->no_bos = 1, takes = 0;
        } else if (!strcmp(a, "--unvetted")) {
            o->unvetted = 1, takes = 0;
        } else if (!strcmp(a, "--trust-stored-digest")) {
            o->trust_stored = 1, takes = 0;
        } else if (v && cli_node_flag(&o->node, a, v)) {
            /* --state, --policy, --ledger, --config */
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            run_usage(stdout);
            exit(0);
        } else if (!v) {
            fprintf(stderr, "citadel run: option '%s' needs a value (or is unknown)\n", a);
            return -1;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            o->model = v;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            o->prompt = v;
        } else if (!strcmp(a, "--system")) {
            o->system = v;
        } else if (!strcmp(a, "--template")) {
            o->tmpl = v;
        } else if (!strcmp(a, "--stop")) {
            if (o->n_stops == MAX_STOPS || !*v) {
                fprintf(stderr, "citadel run: at most %d non-empty --stop strings\n", MAX_STOPS);
                return -1;
            }
            o->stops[o->n_stops++] = v;
        } else if (!strcmp(a, "-n")) {
            if (cli_parse_int(v, 0, 1 << 24, &o->n_predict)) goto bad;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (cli_parse_int(v, 1, 1024, &o->threads)) goto bad;
        } else if (!strcmp(a, "--ctx")) {
            if (cli_parse_int(v, 1, 1 << 24, &o->ctx)) goto bad;
        } else if (!strcmp(a, "--top-k")) {
            if (cli_parse_int(v, 0, 1 << 30, &l)) goto bad;
            o->sp.top_k = (int)l;
        } else if (!strcmp(a, "--seed")) {
            if (cli_parse_int(v, 0, __LONG_MAX__, &l)) goto bad;
            o->sp.seed = (uint64_t)l;
        } else if (!strcmp(a, "--temp")) {
            if (cli_parse_float(v, &o->sp.temperature) || o->sp.temperature < 0) goto bad;
        } else if (!strcmp(a, "--top-p")) {
            if (cli_parse_float(v, &o->sp.top_p) || !(o->sp.top_p > 0) || o->sp.top_p > 1) goto bad;
        } else if (!strcmp(a, "--min-p")) {
            if (cli_parse_float(v, &o->sp.min_p) || o->sp.min_p < 0 || o->sp.min_p > 1) goto bad;
        } else if (!strcmp(a, "--repeat-penalty")) {
            if (cli_parse_float(v, &o->sp.repeat_penalty) || !(o->sp.repeat_penalty > 0)) goto bad;
        } else {
            fprintf(stderr, "citadel run: unknown option '%s'\n", a);
            return -1;
        }
        i += takes;
        continue;
    bad:
        fprintf(stderr, "citadel run: invalid value '%s' for %s\n", v, a);
        return -1;
    }
    if (!o->model || !o->prompt) {
        run_usage(stderr);
        return -1;
    }
    return 0;
}

/* Cuts the text at a stop string (returns 1), or sets *safe to how much
 * may be printed without printing the start of one. */
static int check_stops(const struct run_opts *o, struct cit_buf *t, size_t *safe)
{
    if (eng_stop_check(o->stops, o->n_stops, t->p ? t->p : "", t->len, safe)) {
        t->len = *safe;
        t->p[t->len] = 0;
        return 1;
    }
    return 0;
}

int cli_run(int argc, char **argv)
{
    struct run_opts o;
    struct eng_model *m = NULL;
    struct eng_seq *seq = NULL;
    struct eng_sampler *smp = NULL;
    struct cit_pool *pool = NULL;
    struct cit_err err;
    struct eng_detok dt = {{0}, 0};
    struct cit_buf text = {0};
    size_t printed = 0; /* bytes of text already on stdout */
    int32_t *toks = NULL;
    float *logits = NULL;
    char *rendered = NULL;
    const char *prompt;
    int n_prompt = 0, n_gen = 0, rc, status = 1, n_vocab;
    uint64_t t0, t1, t2;
    double prefill_s = 0, decode_s = 0;

    if (parse_opts(argc, argv, &o)) return 2;
    /* border control: the node's policy, registry and ledger decide */
    {
        struct cli_node node;
        const char *check;
        if (cli_node_open(&o.node, CLI_NODE_POLICY | CLI_NODE_STATE | CLI_NODE_LEDGER, &node,
                          &err)) {
            fprintf(stderr, "citadel run: %s\n", err.msg);
            return 1;
        }
        struct brd_load_opts lo = {node.reg, node.pol, node.lg, o.unvetted, o.trust_stored, 0};
        rc = brd_load_model(&lo, o.model, &m, &check, &err);
        cli_node_close(&node);
        if (rc) {
            fprintf(stderr, "citadel run: model refused (%s): %s\n", check, err.msg);
            return 1;
        }
    }
    n_vocab = eng_model_hparams(m)->n_vocab;
    prompt = o.prompt;
    if (o.chat) {
        struct eng_chat_msg msgs[2];
        int nm = 0;
        enum eng_chat_tmpl tmpl = eng_chat_detect(m, NULL);
        if (o.tmpl && eng_chat_tmpl_from_name(o.tmpl, &tmpl)) {
            fprintf(stderr, "citadel run: unknown template '%s'\n", o.tmpl);
            goto done;
        }
        if (o.system) msgs[nm].role = "system", msgs[nm++].content = o.system;
        msgs[nm].role = "user", msgs[nm++].content = o.prompt;
        if ((rc = eng_chat_render(tmpl, msgs, nm, 1, NULL, &rendered))) goto fail_rc;
        prompt = rendered;
    }
    rc = eng_tokenize(m, prompt, strlen(prompt), !o.no_bos, o.chat, NULL, 0, &n_prompt);
    if (rc && rc != CIT_EOVERFLOW) goto fail_rc;
    toks = cit_calloc((size_t)n_prompt + (size_t)o.n_predict + 1, sizeof(int32_t));
    logits = cit_calloc((size_t)n_vocab, sizeof(float));
    if (!toks || !logits) {
        rc = CIT_ENOMEM;
        goto fail_rc;
    }
    if ((rc =
             eng_tokenize(m, prompt, strlen(prompt), !o.no_bos, o.chat, toks, n_prompt, &n_prompt)))
        goto fail_rc;
    if (n_prompt == 0) {
        fprintf(stderr, "citadel run: the prompt is empty after tokenization\n");
        goto done;
    }
    if (!o.ctx) o.ctx = n_prompt + o.n_predict;
    if (n_prompt + o.n_predict > o.ctx) {
        fprintf(stderr, "citadel run: prompt (%d tokens) plus -n %ld exceeds --ctx %ld\n", n_prompt,
                o.n_predict, o.ctx);
        goto done;
    }
    if ((rc = eng_seq_new(m, (int)o.ctx, &seq)) || (rc = cit_pool_create((int)o.threads, &pool)) ||
        (rc = eng_sampler_new(&o.sp, n_vocab, &smp)))
        goto fail_rc;

    t0 = cit_now_ns();
    if ((rc = eng_seq_eval(seq, pool, toks, n_prompt, logits, 0))) goto fail_rc;
    t1 = cit_now_ns();
    prefill_s = (double)(t1 - t0) / 1e9;
    for (n_gen = 0; n_gen < o.n_predict;) {
        char piece[8192];
        int32_t id = eng_sample(smp, logits, toks, n_prompt + n_gen);
        int np, stop;
        size_t safe;
        if (eng_token_is_eog(m, id)) break;
        toks[n_prompt + n_gen++] = id;
        np = eng_detok_push(m, &dt, id, piece, sizeof(piece));
        if (np < 0 || cit_buf_add(&text, piece, (size_t)np)) {
            rc = np < 0 ? np : CIT_ENOMEM;
            goto fail_rc;
        }
        stop = check_stops(&o, &text, &safe);
        if (!o.json && safe > printed) {
            fwrite(text.p + printed, 1, safe - printed, stdout);
            fflush(stdout);
            printed = safe;
        }
        if (stop || n_gen == o.n_predict) break;
        if ((rc = eng_seq_eval(seq, pool, &id, 1, logits, 0))) goto fail_rc;
    }
    t2 = cit_now_ns();
    decode_s = (double)(t2 - t1) / 1e9;
    {
        char tail[8];
        int nt = eng_detok_flush(&dt, tail, sizeof(tail));
        size_t safe;
        if (nt > 0 && cit_buf_add(&text, tail, (size_t)nt) == 0) check_stops(&o, &text, &safe);
    }
    if (o.json) {
        printf("{\"prompt_tokens\":[");
        for (int i = 0; i < n_prompt; i++) printf("%s%d", i ? "," : "", toks[i]);
        printf("],\"tokens\":[");
        for (int i = 0; i < n_gen; i++) printf("%s%d", i ? "," : "", toks[n_prompt + i]);
        printf("],\"text\":");
        cli_json_str(stdout, text.p ? text.p : "", text.len);
        printf(",\"prefill_tok_s\":%.2f,\"decode_tok_s\":%.2f}\n",
               prefill_s > 0 ? n_prompt / prefill_s : 0.0,
               decode_s > 0 && n_gen > 1 ? (n_gen - 1) / decode_s : 0.0);
    } else {
        if (text.len > printed) fwrite(text.p + printed, 1, text.len - printed, stdout);
        printf("\n");
        fflush(stdout); /* the text before the statistics on stderr */
        fprintf(stderr,
                "citadel: prompt %d tokens, %.2f tok/s; generated %d tokens, %.2f tok/s "
                "(%ld threads, %s kernels)\n",
                n_prompt, prefill_s > 0 ? n_prompt / prefill_s : 0.0, n_gen,
                decode_s > 0 && n_gen > 1 ? (n_gen - 1) / decode_s : 0.0, o.threads,
                eng_kernels_name());
    }
    status = 0;
    goto done;
fail_rc:
    fprintf(stderr, "citadel run: %s\n", cit_strerror(rc));
done:
    eng_sampler_free(smp);
    cit_pool_free(pool);
    eng_seq_free(seq);
    eng_model_free(m);
    cit_free(toks);
    cit_free(logits);
    cit_free(rendered);
    cit_buf_free(&text);
    return status;
}
