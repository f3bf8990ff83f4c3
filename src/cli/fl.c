/*
 * citadel fl split|train|sim: federated learning from the command line.
 *
 *   fl split --data SRC [--labels L] --clients N [--scheme iid|dirichlet|label]
 *            [--alpha A] [--seed S] --out DIR
 *       partitions a dataset into DIR/client-K.x.idx and client-K.y.idx and
 *       prints each client's examples per class
 *   fl train --data SRC [--test SRC] [--model M] [training options]
 *       trains one model centrally (the baseline a federation is held to)
 *   fl sim --data SRC --test SRC --clients N [--scheme ...] --rounds R
 *          [--local-epochs F] [--strategy fedavg|fedprox|fedadam] [--mu MU]
 *          [--server-lr LR] [--plain] [training options]
 *       a federation in one process: every round's sum through SecAgg+
 *       (or a plain sum with --plain), accuracy on the test set per round
 *
 *   fl keygen --name NAME --out DIR
 *       a federation identity: DIR/NAME.key (secret, 0600) and DIR/NAME.vkey
 *   fl serve --key K --roster R [--listen HOST:PORT] --rounds N [--test SRC |
 *            --inputs N --classes C] [--per-round N] [--expect N] [--min-clients N]
 *            [--k K] [--t T] [--clip C] [--weight-cap W] [--dp-noise Z] [--plain]
 *            [--join-timeout S] [--train-timeout S] [--stage-timeout S]
 *            [--ledger DIR] [--out MODEL] [training options]
 *       the coordinator: rounds of SecAgg+ over TLS among the roster's members
 *   fl deal --roster R --t T [--bits 2048] --out DIR
 *       a Paillier key with one share per member (DIR/NAME.paillier) and the
 *       public key (DIR/paillier.pub); serve --paillier PUB and join
 *       --paillier SHARE then aggregate under it instead of SecAgg+
 *   fl join --key K --roster R --coordinator VKEY --connect HOST:PORT --data SRC
 *           [--min-mode plain|secagg|paillier] [--t MIN] [--dp-epsilon E]
 *           [--dp-delta D] [--dp-state F] [--dp-min-noise Z] [--timeout S]
 *           [--ledger DIR] [--out MODEL]
 *       a participant: trains on its own data, contributes to each round;
 *       refuses a mode below --min-mode (default secagg, which takes
 *       Paillier too), round numbers that go back, repeat or pass the
 *       announced total, and a final model its last round's sum does not make
 *
 * Training options: --model logreg|mlp:W[,W...] --epochs E --batch B --lr LR
 * --optim sgd|adam --standardize (z-score each feature with the data's own
 * statistics). SRC is a CSV or IDX file, or a Debian dataset name
 * (fashion-mnist-train, fashion-mnist-test, digits, breast-cancer, iris).
 * Exit status: 0, 1 when something failed, 2 for a usage error.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "citadel/fl.h"
#include "citadel/guard.h"
#include "citadel/ledger.h"
#include "citadel/http.h"
#include "citadel/policy.h"
#include "cli.h"

struct fl_args {
    const char *data, *labels, *test, *out, *model;
    const char *key, *roster, *coordinator, *listen, *connect, *port_file, *ledger, *name;
    const char *policy, *config; /* the node whose ledger gets the transcripts */
    const char *dp_state, *dump_sum, *dump_update, *paillier;
    long clients, seed, rounds, expect, min_clients, per_round, k, t, inputs, classes, bits;
    float clip, weight_cap, dp_noise, dp_epsilon, dp_delta, dp_min_noise;
    float join_timeout, train_timeout, stage_timeout, timeout;
    int drop_at, stall_at;
    int min_mode; /* enum fl_mode; 0: fl_join's default (secure aggregation) */
    enum fl_split_kind scheme;
    float alpha, local_epochs, mu, server_lr;
    int standardize, plain;
    enum fl_strategy strategy;
    struct fl_train_opts o;
};

void cli_usage_fl(FILE *f)
{
    fputs("usage: citadel fl split --data SRC --clients N [--scheme iid|dirichlet|label] "
          "[--alpha A] [--seed S] --out DIR\n"
          "       citadel fl train --data SRC [--test SRC] [--model logreg|mlp:W[,W]] "
          "[--epochs E] [--batch B] [--lr LR] [--optim sgd|adam] [--standardize]\n"
          "       citadel fl sim --data SRC --test SRC --clients N --rounds R [--local-epochs F] "
          "[--strategy fedavg|fedprox|fedadam] [--mu MU] [--server-lr LR] [--plain] [...]\n"
          "       citadel fl keygen --name NAME --out DIR\n"
          "       citadel fl serve --key K --roster R --rounds N [--listen H:P] [--test SRC] "
          "[--dp-noise Z] [--ledger DIR] [--out MODEL] [...]\n"
          "       citadel fl deal --roster R --t T [--bits 2048] --out DIR   (Paillier keys)\n"
          "       citadel fl join --key K --roster R --coordinator VKEY --connect H:P --data SRC "
          "[--min-mode plain|secagg|paillier] [--dp-epsilon E --dp-state F] [--ledger DIR] "
          "[--out MODEL] [...]\n"
          "         (join refuses a coordinator below --min-mode, default secagg: secure "
          "aggregation, SecAgg+ or Paillier alike; plain must be allowed by --min-mode plain)\n"
          "       (docs/fl.md lists every option)\n",
          f);
}

static int usage(void)
{
    cli_usage_fl(stderr);
    return 2;
}

static int parse_model(const char *s, size_t inputs, int classes, struct fl_arch_spec *a)
{
    memset(a, 0, sizeof(*a));
    a->inputs = (int)inputs;
    a->classes = classes < 2 ? 2 : classes;
    if (!strcmp(s, "logreg")) {
        a->arch = FL_LOGREG;
        return 0;
    }
    if (strncmp(s, "mlp:", 4)) return -1;
    a->arch = FL_MLP;
    for (const char *p = s + 4; *p;) {
        char *end;
        long w = strtol(p, &end, 10);
        if (end == p || w < 1 || w > 65536 || a->layers == FL_MAX_LAYERS) return -1;
        a->hidden[a->layers++] = (int)w;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return a->layers ? 0 : -1;
}

/* A protocol stage for --drop-at / --stall-at: the frame on whose arrival
 * the participant vanishes or hangs. */
static int stage_type(const char *v)
{
    static const struct {
        const char *name;
        int type;
    } st[] = {{"train", FL_MSG_TASK},        {"keys", FL_MSG_SA_SETUP}, {"shares", FL_MSG_SA_PEERS},
              {"masked", FL_MSG_SA_INBOX},   {"sign", FL_MSG_SA_ALIVE}, {"reveal", FL_MSG_SA_SIGS},
              {"decrypt", FL_MSG_PA_DECRYPT}};
    for (size_t i = 0; i < sizeof(st) / sizeof(st[0]); i++)
        if (!strcmp(v, st[i].name)) return st[i].type;
    return 0;
}

/* The options of serve, join and keygen: 0 when f was one of them (parsed
 * into a), else *bad = -1 for a bad value, 0 for another option. */
static int parse_net_arg(const char *f, const char *v, struct fl_args *a, long *bad)
{
    static const struct {
        const char *flag;
        size_t off;
    } strs[] = {
        {"--key", offsetof(struct fl_args, key)},
        {"--roster", offsetof(struct fl_args, roster)},
        {"--coordinator", offsetof(struct fl_args, coordinator)},
        {"--listen", offsetof(struct fl_args, listen)},
        {"--connect", offsetof(struct fl_args, connect)},
        {"--port-file", offsetof(struct fl_args, port_file)},
        {"--ledger", offsetof(struct fl_args, ledger)},
        {"--policy", offsetof(struct fl_args, policy)},
        {"--config", offsetof(struct fl_args, config)},
        {"--name", offsetof(struct fl_args, name)},
        {"--dp-state", offsetof(struct fl_args, dp_state)},
        {"--dump-sum", offsetof(struct fl_args, dump_sum)},
        {"--dump-update", offsetof(struct fl_args, dump_update)},
        {"--paillier", offsetof(struct fl_args, paillier)},
    };
    static const struct {
        const char *flag;
        size_t off;
        long lo, hi;
    } ints[] = {
        {"--expect", offsetof(struct fl_args, expect), 1, FL_MAX_CLIENTS},
        {"--min-clients", offsetof(struct fl_args, min_clients), 2, FL_MAX_CLIENTS},
        {"--per-round", offsetof(struct fl_args, per_round), 2, FL_MAX_CLIENTS},
        {"--k", offsetof(struct fl_args, k), 2, FL_MAX_CLIENTS},
        {"--t", offsetof(struct fl_args, t), 2, FL_MAX_CLIENTS},
        {"--inputs", offsetof(struct fl_args, inputs), 1, FL_MAX_FEATURES},
        {"--classes", offsetof(struct fl_args, classes), 2, FL_MAX_CLASSES},
        {"--bits", offsetof(struct fl_args, bits), 512, 8192},
    };
    static const struct {
        const char *flag;
        size_t off;
    } floats[] = {
        {"--clip", offsetof(struct fl_args, clip)},
        {"--weight-cap", offsetof(struct fl_args, weight_cap)},
        {"--dp-noise", offsetof(struct fl_args, dp_noise)},
        {"--dp-epsilon", offsetof(struct fl_args, dp_epsilon)},
        {"--dp-delta", offsetof(struct fl_args, dp_delta)},
        {"--dp-min-noise", offsetof(struct fl_args, dp_min_noise)},
        {"--join-timeout", offsetof(struct fl_args, join_timeout)},
        {"--train-timeout", offsetof(struct fl_args, train_timeout)},
        {"--stage-timeout", offsetof(struct fl_args, stage_timeout)},
        {"--timeout", offsetof(struct fl_args, timeout)},
    };
    *bad = 0;
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        if (!strcmp(f, strs[i].flag)) {
            *(const char **)((char *)a + strs[i].off) = v;
            return 0;
        }
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
        if (!strcmp(f, ints[i].flag)) {
            if (cli_parse_int(v, ints[i].lo, ints[i].hi, (long *)((char *)a + ints[i].off)))
                return *bad = -1;
            return 0;
        }
    for (size_t i = 0; i < sizeof(floats) / sizeof(floats[0]); i++)
        if (!strcmp(f, floats[i].flag)) {
            float *x = (float *)((char *)a + floats[i].off);
            if (cli_parse_float(v, x) || !(*x >= 0) || !isfinite(*x)) return *bad = -1;
            return 0;
        }
    if (!strcmp(f, "--min-mode")) {
        /* the names fl_mode_name writes, as the ledger and the logs show them */
        static const int modes[] = {FL_MODE_PLAIN, FL_MODE_SECAGG, FL_MODE_PAILLIER};
        for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
            if (!strcmp(v, fl_mode_name(modes[i]))) {
                a->min_mode = modes[i];
                return 0;
            }
        return *bad = -1;
    }
    if (!strcmp(f, "--drop-at") || !strcmp(f, "--stall-at")) {
        int t = stage_type(v);
        if (!t) return *bad = -1;
        *(f[2] == 'd' ? &a->drop_at : &a->stall_at) = t;
        return 0;
    }
    return 1;
}

static int parse_args(int argc, char **argv, struct fl_args *a)
{
    memset(a, 0, sizeof(*a));
    a->model = "logreg";
    a->scheme = FL_SPLIT_IID;
    a->alpha = 0.5f;
    a->seed = 1;
    a->o.epochs = 1;
    a->o.batch = 32;
    a->o.lr = 0.1f;
    a->local_epochs = 1;
    a->server_lr = 0.01f;
    a->strategy = FL_FEDAVG;
    a->clip = 100;
    a->weight_cap = -1; /* unset */
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (!strcmp(f, "--standardize")) {
            a->standardize = 1;
            continue;
        }
        if (!strcmp(f, "--plain")) {
            a->plain = 1;
            continue;
        }
        if (!v) return -1;
        i++;
        if (parse_net_arg(f, v, a, &n) == 0) continue;
        if (n < 0) return -1;
        if (!strcmp(f, "--data"))
            a->data = v;
        else if (!strcmp(f, "--labels"))
            a->labels = v;
        else if (!strcmp(f, "--test"))
            a->test = v;
        else if (!strcmp(f, "--out"))
            a->out = v;
        else if (!strcmp(f, "--model"))
            a->model = v;
        else if (!strcmp(f, "--clients")) {
            if (cli_parse_int(v, 1, FL_MAX_CLIENTS, &a->clients)) return -1;
        } else if (!strcmp(f, "--seed")) {
            if (cli_parse_int(v, 0, 1L << 62, &a->seed)) return -1;
        } else if (!strcmp(f, "--rounds")) {
            if (cli_parse_int(v, 1, 1000000, &a->rounds)) return -1;
        } else if (!strcmp(f, "--epochs")) {
            if (cli_parse_int(v, 0, 100000, &n)) return -1;
            a->o.epochs = (int)n;
        } else if (!strcmp(f, "--batch")) {
            if (cli_parse_int(v, 1, 1 << 20, &n)) return -1;
            a->o.batch = (int)n;
        } else if (!strcmp(f, "--lr")) {
            if (cli_parse_float(v, &a->o.lr) || !(a->o.lr > 0)) return -1;
        } else if (!strcmp(f, "--alpha")) {
            if (cli_parse_float(v, &a->alpha) || !(a->alpha > 0)) return -1;
        } else if (!strcmp(f, "--local-epochs")) {
            if (cli_parse_float(v, &a->local_epochs) || !(a->local_epochs > 0)) return -1;
        } else if (!strcmp(f, "--mu")) {
            if (cli_parse_float(v, &a->mu) || a->mu < 0) return -1;
        } else if (!strcmp(f, "--server-lr")) {
            if (cli_parse_float(v, &a->server_lr) || !(a->server_lr > 0)) return -1;
        } else if (!strcmp(f, "--optim")) {
            if (!strcmp(v, "sgd"))
                a->o.optim = FL_SGD;
            else if (!strcmp(v, "adam"))
                a->o.optim = FL_ADAM;
            else
                return -1;
        } else if (!strcmp(f, "--scheme")) {
            if (!strcmp(v, "iid"))
                a->scheme = FL_SPLIT_IID;
            else if (!strcmp(v, "dirichlet"))
                a->scheme = FL_SPLIT_DIRICHLET;
            else if (!strcmp(v, "label"))
                a->scheme = FL_SPLIT_LABEL;
            else
                return -1;
        } else if (!strcmp(f, "--strategy")) {
            if (!strcmp(v, "fedavg"))
                a->strategy = FL_FEDAVG;
            else if (!strcmp(v, "fedprox"))
                a->strategy = FL_FEDPROX;
            else if (!strcmp(v, "fedadam"))
                a->strategy = FL_FEDADAM;
            else
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

static int load(const char *src, const char *labels, int standardize, struct fl_data *ds)
{
    struct cit_err err = {{0}};
    if (fl_data_load(src, labels, ds, &err)) {
        fprintf(stderr, "citadel fl: %s\n", err.msg);
        return -1;
    }
    if (standardize) fl_data_standardize(ds);
    return 0;
}

static int partition(const struct fl_data *ds, const struct fl_args *a, struct fl_data *parts)
{
    struct cit_err err = {{0}};
    int *part = malloc((ds->n ? ds->n : 1) * sizeof(int));
    int rc = -1;
    if (!part) goto out;
    if (fl_split(ds, (int)a->clients, a->scheme, a->alpha, (uint64_t)a->seed, part, &err)) {
        fprintf(stderr, "citadel fl: %s\n", err.msg);
        goto out;
    }
    rc = fl_data_parts(ds, part, (int)a->clients, parts) ? -1 : 0;
out:
    free(part);
    return rc;
}

static int fl_split_cmd(const struct fl_args *a)
{
    struct fl_data ds, *parts;
    struct cit_err err = {{0}};
    int rc = 1;
    if (!a->data || !a->out || !a->clients) return usage();
    if (load(a->data, a->labels, 0, &ds)) return 1;
    parts = calloc((size_t)a->clients, sizeof(*parts));
    if (!parts || partition(&ds, a, parts)) goto out;
    if (mkdir(a->out, 0755) && access(a->out, W_OK)) {
        fprintf(stderr, "citadel fl split: cannot create %s\n", a->out);
        goto out;
    }
    printf("client  examples  per class\n");
    for (long k = 0; k < a->clients; k++) {
        char xp[4096], yp[4096];
        long per[FL_MAX_CLASSES] = {0};
        snprintf(xp, sizeof(xp), "%s/client-%02ld.x.idx", a->out, k);
        snprintf(yp, sizeof(yp), "%s/client-%02ld.y.idx", a->out, k);
        parts[k].classes = ds.classes;
        if (fl_data_write(&parts[k], xp, yp, &err)) {
            fprintf(stderr, "citadel fl split: %s\n", err.msg);
            goto out;
        }
        for (size_t i = 0; i < parts[k].n; i++) per[parts[k].y[i]]++;
        printf("%6ld  %8zu ", k, parts[k].n);
        for (int c = 0; c < ds.classes && c < 20; c++) printf(" %ld", per[c]);
        printf("\n");
    }
    rc = 0;
out:
    for (long k = 0; parts && k < a->clients; k++) fl_data_free(&parts[k]);
    free(parts);
    fl_data_free(&ds);
    return rc;
}

static void report(const char *what, const struct fl_arch_spec *s, const float *w,
                   const struct fl_data *tr, const struct fl_data *te)
{
    float acc, loss;
    fl_evaluate(s, w, tr, &acc, &loss);
    printf("%s: train accuracy %.4f loss %.4f", what, (double)acc, (double)loss);
    if (te) {
        fl_evaluate(s, w, te, &acc, &loss);
        printf(", test accuracy %.4f loss %.4f", (double)acc, (double)loss);
    }
    printf("\n");
    fflush(stdout);
}

static int fl_train_cmd(const struct fl_args *a)
{
    struct fl_data tr, te;
    struct fl_arch_spec s;
    struct cit_err err = {{0}};
    float *w = NULL;
    int rc = 1, have_test = 0;
    size_t d;
    if (!a->data) return usage();
    if (load(a->data, a->labels, a->standardize, &tr)) return 1;
    if (a->test && !(have_test = !load(a->test, NULL, a->standardize, &te))) goto out;
    if (parse_model(a->model, tr.d, tr.classes, &s)) {
        fprintf(stderr, "citadel fl: --model %s: logreg or mlp:W[,W...]\n", a->model);
        goto out;
    }
    if (!(d = fl_arch_params(&s, &err))) {
        fprintf(stderr, "citadel fl: %s\n", err.msg);
        goto out;
    }
    w = malloc(d * sizeof(float));
    if (!w) goto out;
    fl_arch_init(&s, w, (uint64_t)a->seed);
    for (int e = 0; e < a->o.epochs; e++) {
        struct fl_train_opts o = a->o;
        char what[64];
        o.epochs = 1;
        o.seed = (uint64_t)a->seed + (uint64_t)e;
        if (fl_train(&s, w, NULL, &tr, &o, NULL, &err)) {
            fprintf(stderr, "citadel fl train: %s\n", err.msg);
            goto out;
        }
        snprintf(what, sizeof(what), "epoch %d", e + 1);
        report(what, &s, w, &tr, have_test ? &te : NULL);
    }
    rc = 0;
out:
    free(w);
    fl_data_free(&tr);
    if (have_test) fl_data_free(&te);
    return rc;
}

static int fl_sim_cmd(const struct fl_args *a)
{
    struct fl_data tr, te, *parts = NULL;
    struct fl_arch_spec s;
    struct fl_server_opt so = {0};
    struct cit_err err = {{0}};
    struct fl_round_cfg rc = {.clip = 100, .local_epochs = a->local_epochs};
    uint32_t **in = NULL, *sum = NULL, k, t;
    float *w = NULL;
    int ret = 1;
    size_t d, biggest = 0;
    if (!a->data || !a->test || !a->clients || !a->rounds || a->clients < 2) return usage();
    if (load(a->data, a->labels, a->standardize, &tr)) return 1;
    if (load(a->test, NULL, a->standardize, &te)) {
        fl_data_free(&tr);
        return 1;
    }
    if (parse_model(a->model, tr.d, tr.classes, &s) || !(d = fl_arch_params(&s, &err))) {
        fprintf(stderr, "citadel fl: --model %s: logreg or mlp:W[,W...] %s\n", a->model, err.msg);
        goto out;
    }
    parts = calloc((size_t)a->clients, sizeof(*parts));
    in = calloc((size_t)a->clients, sizeof(*in));
    sum = malloc((d + 1) * 4);
    w = malloc(d * sizeof(float));
    if (!parts || !in || !sum || !w || partition(&tr, a, parts)) goto out;
    for (long c = 0; c < a->clients; c++) {
        if (!(in[c] = malloc((d + 1) * 4))) goto out;
        if (parts[c].n > biggest) biggest = parts[c].n;
    }
    rc.max_clients = (int)a->clients;
    rc.weight_cap = (double)biggest;
    if (fl_server_opt_init(&so, a->strategy, d)) goto out;
    so.lr = a->server_lr;
    fl_sa_default((uint32_t)a->clients, &k, &t);
    fl_arch_init(&s, w, (uint64_t)a->seed);
    printf("%ld clients, %zu parameters, %s, %s\n", a->clients, d,
           a->plain ? "plain sums" : "SecAgg+",
           a->strategy == FL_FEDADAM   ? "FedAdam"
           : a->strategy == FL_FEDPROX ? "FedProx"
                                       : "FedAvg");
    for (long r = 0; r < a->rounds; r++) {
        struct fl_train_opts o = a->o;
        char what[64];
        uint64_t t0 = cit_now_ns();
        o.mu = a->strategy == FL_FEDPROX ? a->mu : 0;
        for (long c = 0; c < a->clients; c++) {
            o.seed = (uint64_t)(r * a->clients + c);
            if (fl_client_update(&rc, &s, w, &parts[c], &o, in[c], NULL, &err)) {
                fprintf(stderr, "citadel fl sim: client %ld: %s\n", c, err.msg);
                goto out;
            }
        }
        if (a->plain) {
            memset(sum, 0, (d + 1) * 4);
            for (long c = 0; c < a->clients; c++)
                for (size_t j = 0; j <= d; j++) sum[j] += in[c][j];
        } else if (fl_sa_simulate((uint32_t)a->clients, k, t, (uint32_t)d + 1,
                                  (const uint32_t *const *)in, NULL, sum, NULL, &err)) {
            fprintf(stderr, "citadel fl sim: round %ld: %s\n", r + 1, err.msg);
            goto out;
        }
        if (fl_server_update(&rc, &so, w, sum, d, &err)) {
            fprintf(stderr, "citadel fl sim: round %ld: %s\n", r + 1, err.msg);
            goto out;
        }
        snprintf(what, sizeof(what), "round %ld (%.0f ms)", r + 1, (cit_now_ns() - t0) / 1e6);
        report(what, &s, w, &tr, &te);
    }
    ret = 0;
out:
    for (long c = 0; c < a->clients; c++) {
        if (parts) fl_data_free(&parts[c]);
        if (in) free(in[c]);
    }
    fl_server_opt_free(&so);
    free(parts);
    free(in);
    free(sum);
    free(w);
    fl_data_free(&tr);
    fl_data_free(&te);
    return ret;
}

/* ---- over the network ---- */

/* The roster (fl_roster_load): *r NULL and the reason printed when it cannot be read. */
static int load_roster(const char *path, struct fl_roster **r)
{
    struct cit_err err = {{0}};
    *r = NULL;
    if (fl_roster_load(path, r, &err)) {
        fprintf(stderr, "citadel fl: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int load_key(const char *path, struct ledger_skey *k)
{
    struct cit_err err = {{0}};
    if (!path) {
        fprintf(stderr, "citadel fl: --key FILE is required (citadel fl keygen makes one)\n");
        return -1;
    }
    if (ledger_key_load(path, NULL, NULL, k, &err)) {
        fprintf(stderr, "citadel fl: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/* The node's ledger, opened as every command opens it (node_open), so
 * that its name follows the node's policy. */
static struct node *ledger_node;

static int open_ledger(const struct fl_args *a, struct ledger **lg)
{
    struct cli_node_args na = {a->config, NULL, a->policy, a->ledger, a->config != NULL};
    struct http_opts o;
    struct cit_err err = {{0}};
    *lg = NULL;
    if (!a->ledger) return 0;
    if (cli_node_opts(&na, &o, &err) || node_open(&o.node, NODE_LEDGER, &ledger_node, &err)) {
        fprintf(stderr, "citadel fl: ledger %s: %s\n", a->ledger, err.msg);
        return -1;
    }
    *lg = node_ledger(ledger_node);
    return 0;
}

static void close_ledger(void)
{
    node_close(ledger_node);
    ledger_node = NULL;
}

/* Lockdown (docs/guard.md) for fl serve and join, once their inputs are
 * read: the ledger's folder and the folders of the files they write
 * read-write, the policy read-only, TCP bind on listen or connect to
 * connect (resolved now), nothing else. */
static int fl_lock(const struct fl_args *a, const char *what, const char *listen,
                   const char *connect)
{
    struct guard_spec *gs = cit_calloc(1, sizeof(*gs));
    struct pol_policy *pol = NULL;
    struct http_opts o;
    struct cli_node_args na = {a->config, NULL, a->policy, a->ledger, a->config != NULL};
    struct cit_err err = {{0}};
    const char *outs[] = {a->out, a->port_file, a->dump_sum, a->dump_update, a->dp_state};
    char host[256];
    int rc = CIT_ENOMEM, port;
    if (!gs) goto out;
    if ((rc = cli_node_opts(&na, &o, &err))) goto out;
    if ((a->ledger || a->policy || a->config) && o.node.policy[0] &&
        (rc = pol_load(o.node.policy, &pol, &err)))
        goto out;
    guard_spec_init(gs, what, pol ? pol->lockdown == POL_LOCKDOWN_BEST_EFFORT : 0);
    gs->listen_after_seal = listen != NULL; /* fl_serve listens once it starts */
    if ((rc = guard_spec_system(gs, &err))) goto out;
    if (pol && (rc = guard_spec_path(gs, o.node.policy, 0, 0, &err))) goto out;
    if (a->ledger) {
        if (mkdir(o.node.ledger, 0700) && errno != EEXIST) {
            rc = cit_err_set(&err, CIT_EIO, "%s: %s", o.node.ledger, strerror(errno));
            goto out;
        }
        if ((rc = guard_spec_path(gs, o.node.ledger, 1, 0, &err))) goto out;
        /* the ledger's floor lives in the state file */
        if ((rc = guard_spec_path(gs, cit_path_dir(o.node.state, host, sizeof(host)), 1, 0, &err)))
            goto out;
    }
    for (size_t i = 0; i < sizeof(outs) / sizeof(outs[0]); i++)
        if (outs[i] && (rc = guard_spec_path(gs, cit_path_dir(outs[i], host, sizeof(host)), 1, 0,
                                             &err)))
            goto out;
    if (listen || connect) {
        if ((rc = guard_url_hostport(listen ? listen : connect, host, sizeof(host), &port, &err)))
            goto out;
        rc = listen ? guard_spec_bind(gs, port, &err) : guard_spec_connect(gs, host, port, &err);
        if (rc) goto out;
    }
    rc = guard_lock(gs, &err);
out:
    if (rc) fprintf(stderr, "citadel fl %s: %s\n", what + 3, err.msg[0] ? err.msg : "out of memory");
    pol_free(pol);
    cit_free(gs);
    return rc ? -1 : 0;
}

/* seccomp, and the statement in the ledger when there is one. */
static int fl_seal(const char *what)
{
    struct cit_err err = {{0}};
    if (guard_seal(&err) || (ledger_node && node_record_lockdown(ledger_node, what, &err))) {
        fprintf(stderr, "citadel %s: %s\n", what, err.msg);
        return -1;
    }
    return 0;
}

static int fl_keygen_cmd(const struct fl_args *a)
{
    struct ledger_skey k;
    struct cit_err err = {{0}};
    char path[4096], vpath[4096];
    if (!a->name || !a->out) return usage();
    snprintf(path, sizeof(path), "%s/%s.key", a->out, a->name);
    snprintf(vpath, sizeof(vpath), "%s/%s.vkey", a->out, a->name);
    if (!access(path, F_OK)) {
        fprintf(stderr, "citadel fl keygen: %s exists; not replacing a node's identity\n", path);
        return 1;
    }
    if (ledger_key_load(path, vpath, a->name, &k, &err)) {
        fprintf(stderr, "citadel fl keygen: %s\n", err.msg);
        return 1;
    }
    sodium_memzero(k.sk, sizeof(k.sk));
    printf("%s\n%s (its public key: give it to the coordinator's roster)\n", path, vpath);
    return 0;
}

/* The dealer of a Paillier federation: a key for the roster, one share per
 * member (DIR/NAME.paillier, to be handed to that member alone) and the
 * public key (DIR/paillier.pub, for the coordinator). The dealer is trusted
 * to forget: nothing secret stays in this process or on its disk beyond the
 * share files. */
static int fl_deal_cmd(const struct fl_args *a)
{
    struct fl_roster *r;
    struct fl_pai *k = NULL;
    struct fl_pai_share **sh;
    struct cit_err err = {{0}};
    char path[4096];
    int rc = 1;
    if (!a->roster || !a->out || !a->t) return usage();
    if (load_roster(a->roster, &r)) return 1;
    if (a->t > r->n) {
        fprintf(stderr, "citadel fl deal: --t %ld is more than the %d members\n", a->t, r->n);
        fl_roster_free(r);
        return 1;
    }
    sh = calloc((size_t)r->n, sizeof(*sh));
    if (!sh || fl_pai_keygen(a->bits ? (unsigned)a->bits : 2048, r->n, (int)a->t, &k, sh, &err)) {
        fprintf(stderr, "citadel fl deal: %s\n", err.msg[0] ? err.msg : "out of memory");
        goto out;
    }
    snprintf(path, sizeof(path), "%s/paillier.pub", a->out);
    if (fl_pai_save(k, NULL, path, &err)) goto fail;
    printf("%s\n", path);
    for (int i = 0; i < r->n; i++) {
        snprintf(path, sizeof(path), "%s/%s.paillier", a->out, r->names[i]);
        if (fl_pai_save(k, sh[i], path, &err)) goto fail;
        printf("%s (for %s only)\n", path, r->names[i]);
    }
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "citadel fl deal: %s\n", err.msg);
out:
    for (int i = 0; sh && i < r->n; i++) fl_pai_share_free(sh[i]);
    free(sh);
    fl_pai_free(k);
    fl_roster_free(r);
    return rc;
}

/* The lines fl serve and fl join print as a federation goes (tests read them). */
static void show_progress(void *user, const struct fl_progress *ev)
{
    (void)user;
    if (ev->kind == FL_PROGRESS_FINISHED) {
        printf("federation finished after %u rounds; %llu rounds spent privacy\n", ev->rounds,
               (unsigned long long)ev->dp_rounds);
        if (ev->checked == FL_FINISH_RECOMPUTED)
            printf("final model checked: round %llu's model plus the mean of its sum%s\n",
                   (unsigned long long)ev->checked_round,
                   ev->sum_matched ? " (the sum its SA_DONE announced)" : "");
        else if (ev->checked == FL_FINISH_UNCHANGED)
            printf("final model checked: round %llu's model (no later round was aggregated)\n",
                   (unsigned long long)ev->checked_round);
        else
            printf("final model NOT checked: %s\n", ev->unchecked ? ev->unchecked : "");
        fflush(stdout);
        return;
    }
    printf("round %d: %d selected, %d ready, %u contributors, %.0f ms", ev->round, ev->selected,
           ev->ready, ev->contributors, ev->ms);
    if (ev->tested)
        printf(", test accuracy %.4f, loss %.4f", (double)ev->accuracy, (double)ev->loss);
    printf("\n");
    fflush(stdout);
}

static int fl_serve_cmd(const struct fl_args *a)
{
    struct fl_serve_opts o = {0};
    struct ledger_skey key;
    struct fl_roster *r = NULL;
    struct fl_data te;
    struct fl_server_opt so = {0};
    struct fl_pai *pai = NULL;
    struct ledger *lg = NULL;
    struct cit_err err = {{0}};
    int rc = 1, have_test = 0;
    size_t d;
    if (!a->roster || !a->rounds) return usage();
    /* a participant that left (one that refused, say) fails a write with
     * EPIPE, which the round handles; it must not end the coordinator */
    signal(SIGPIPE, SIG_IGN);
    if (load_key(a->key, &key) || load_roster(a->roster, &r)) return 1;
    if (a->test && !(have_test = !load(a->test, NULL, a->standardize, &te))) goto out;
    if (parse_model(a->model, have_test ? te.d : (size_t)a->inputs,
                    a->classes  ? (int)a->classes
                    : have_test ? te.classes
                                : 0,
                    &o.arch) ||
        !(d = fl_arch_params(&o.arch, &err))) {
        fprintf(stderr, "citadel fl serve: --model %s needs --test or --inputs and --classes %s\n",
                a->model, err.msg);
        goto out;
    }
    if (a->dp_noise > 0 && a->weight_cap > 0) {
        fprintf(stderr, "citadel fl serve: --dp-noise needs unweighted rounds (--weight-cap 0)\n");
        goto out;
    }
    if (a->paillier && fl_pai_load(a->paillier, &pai, NULL, &err)) {
        fprintf(stderr, "citadel fl serve: %s\n", err.msg);
        goto out;
    }
    if (pai && fl_pai_threshold(pai) < 2) {
        fprintf(stderr, "citadel fl serve: a Paillier threshold of 1 lets any one party decrypt\n");
        goto out;
    }
    if (fl_server_opt_init(&so, a->strategy, d) ||
        fl_lock(a, "fl serve", a->listen ? a->listen : "127.0.0.1:7800", NULL) ||
        open_ledger(a, &lg) || fl_seal("fl serve"))
        goto out;
    so.lr = a->server_lr;
    o.listen = a->listen ? a->listen : "127.0.0.1:7800";
    o.port_file = a->port_file;
    o.key = &key;
    o.roster = *r;
    o.expect = (int)a->expect;
    o.min_clients = (int)a->min_clients;
    o.per_round = (int)a->per_round;
    o.rounds = (int)a->rounds;
    o.join_timeout_s = a->join_timeout;
    o.train_timeout_s = a->train_timeout;
    o.stage_timeout_s = a->stage_timeout;
    o.mode = pai ? FL_MODE_PAILLIER : a->plain ? FL_MODE_PLAIN : FL_MODE_SECAGG;
    o.pai = pai;
    o.k = (uint32_t)a->k;
    o.t = (uint32_t)a->t;
    o.rc.clip = a->clip > 0 ? a->clip : 100;
    o.rc.max_clients = r->n;
    o.rc.weight_cap = a->weight_cap >= 0 ? a->weight_cap : a->dp_noise > 0 ? 0 : 10000;
    o.rc.local_epochs = a->local_epochs;
    o.o = a->o;
    o.o.mu = a->strategy == FL_FEDPROX ? a->mu : 0;
    o.so = &so;
    o.dp_noise = a->dp_noise;
    o.test = have_test ? &te : NULL;
    o.ledger = lg;
    o.out = a->out;
    o.dump_sum = a->dump_sum;
    o.seed = (uint64_t)a->seed;
    o.progress = show_progress;
    if (fl_serve(&o, &err)) {
        fprintf(stderr, "citadel fl serve: %s\n", err.msg);
        goto out;
    }
    rc = 0;
out:
    if (lg) close_ledger();
    fl_pai_free(pai);
    fl_server_opt_free(&so);
    if (have_test) fl_data_free(&te);
    fl_roster_free(r);
    sodium_memzero(key.sk, sizeof(key.sk));
    return rc;
}

static int fl_join_cmd(const struct fl_args *a)
{
    struct fl_join_opts o = {0};
    struct ledger_skey key;
    struct ledger_vkey coord;
    struct fl_roster *r = NULL;
    struct fl_data ds;
    struct ledger *lg = NULL;
    struct fl_pai *pai = NULL;
    struct fl_pai_share *pai_share = NULL;
    struct cit_err err = {{0}};
    int rc = 1;
    if (!a->roster || !a->coordinator || !a->connect || !a->data) return usage();
    signal(SIGPIPE, SIG_IGN); /* a coordinator that went is an error to report, not a signal */
    if (cli_read_vkey(a->coordinator, &coord, &err)) {
        fprintf(stderr, "citadel fl join: --coordinator %s\n", err.msg);
        return 1;
    }
    if (load_key(a->key, &key) || load_roster(a->roster, &r)) return 1;
    if (load(a->data, a->labels, a->standardize, &ds)) {
        fl_roster_free(r);
        return 1;
    }
    if (a->paillier && fl_pai_load(a->paillier, &pai, &pai_share, &err)) {
        fprintf(stderr, "citadel fl join: %s\n", err.msg);
        goto out;
    }
    if (fl_lock(a, "fl join", NULL, a->connect) || open_ledger(a, &lg) || fl_seal("fl join"))
        goto out;
    o.pai = pai;
    o.pai_share = pai_share;
    o.connect = a->connect;
    o.key = &key;
    o.coordinator = coord.pk;
    o.roster = *r;
    o.data = &ds;
    o.ledger = lg;
    o.min_t = (uint32_t)a->t;
    o.min_mode = (enum fl_mode)a->min_mode;
    o.dp_epsilon = a->dp_epsilon;
    o.dp_delta = a->dp_delta;
    o.dp_min_noise = a->dp_min_noise;
    o.dp_state = a->dp_state;
    o.timeout_s = a->timeout;
    o.out = a->out;
    o.dump_update = a->dump_update;
    o.drop_at = a->drop_at;
    o.stall_at = a->stall_at;
    o.progress = show_progress;
    rc = fl_join(&o, &err);
    if (rc == 3) goto out; /* dropped out on purpose (testing) */
    if (rc) {
        fprintf(stderr, "citadel fl join: %s\n", err.msg);
        rc = 1;
    }
out:
    if (lg) close_ledger();
    fl_pai_share_free(pai_share);
    fl_pai_free(pai);
    fl_data_free(&ds);
    fl_roster_free(r);
    sodium_memzero(key.sk, sizeof(key.sk));
    return rc;
}

int cli_fl(int argc, char **argv)
{
    struct fl_args a;
    if (argc < 1) return usage();
    if (parse_args(argc - 1, argv + 1, &a)) return usage();
    if (!strcmp(argv[0], "split")) return fl_split_cmd(&a);
    if (!strcmp(argv[0], "train")) return fl_train_cmd(&a);
    if (!strcmp(argv[0], "sim")) return fl_sim_cmd(&a);
    if (!strcmp(argv[0], "keygen")) return fl_keygen_cmd(&a);
    if (!strcmp(argv[0], "serve")) return fl_serve_cmd(&a);
    if (!strcmp(argv[0], "deal")) return fl_deal_cmd(&a);
    if (!strcmp(argv[0], "join")) return fl_join_cmd(&a);
    return usage();
}
