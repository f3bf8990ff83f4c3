/*
 * citadel model keygen|card|sign|verify|admit|list|revoke, citadel trust:
 * border control (docs/border.md).
 *
 *   citadel model keygen [--curve P-256|P-384] NAME   writes NAME.pem, NAME.pub.pem
 *   citadel model card MODEL [-o FILE]                 a CycloneDX card to complete
 *   citadel model sign --key KEY.pem MODEL [--card C] [--sig FILE]
 *   citadel model verify --key PUB.pem MODEL [--card C] [--sig FILE]
 *   citadel model admit MODEL [--card C] [--sig FILE]
 *   citadel model list [--json]
 *   citadel model revoke ID|NAME|DIGEST [--reason TEXT]
 *   citadel trust add --name N --jurisdiction J PUB.pem | list | remove NAME
 *
 * MODEL is a GGUF file or a directory. A file model's card is
 * MODEL.cdx.json (the .gguf suffix replaced) unless --card says otherwise;
 * a directory's is its one *.cdx.json file. The signature is MODEL.sig
 * unless --sig says otherwise. admit, list, revoke and trust act on the
 * node's state file, policy and ledger (--state, --policy, --ledger, or
 * citadel.conf).
 */
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "citadel/border.h"
#include "citadel/engine.h"
#include "citadel/policy.h"
#include "cli.h"

void cli_usage_model(FILE *f)
{
    fputs("usage: citadel model keygen [--curve P-256|P-384] NAME\n"
          "       citadel model card MODEL [-o FILE]\n"
          "       citadel model sign --key KEY.pem MODEL [--card FILE] [--sig FILE]\n"
          "       citadel model verify --key PUB.pem MODEL [--card FILE] [--sig FILE]\n"
          "       citadel model admit MODEL [--card FILE] [--sig FILE] [NODE]\n"
          "       citadel model list [--json] [NODE]\n"
          "       citadel model revoke ID|NAME|DIGEST [--reason TEXT] [NODE]\n"
          "       citadel model load [ID=]MODEL [NODE]     (a running serve: load now)\n"
          "       citadel model unload ID [NODE]           (a running serve: unload now)\n"
          "  admit, list, revoke, load and unload go to the running serve when there is\n"
          "  one (its admin socket), else act on the node's files.\n"
          "  MODEL: a GGUF file or a directory. Defaults: the card is MODEL.cdx.json (a\n"
          "  directory's one *.cdx.json), the signature MODEL.sig.\n"
          "  NODE: --state F --policy F --ledger DIR --config F (else citadel.conf)\n",
          f);
}

static void print_hex(const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++) fprintf(cli_out, "%02x", d[i]);
}

static double gbps(uint64_t bytes, double s)
{
    return s > 0 ? (double)bytes / 1e9 / s : 0;
}

static void date_str(int64_t t, char *out, size_t cap)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (!t || !gmtime_r(&tt, &tm))
        snprintf(out, cap, "-");
    else
        strftime(out, cap, "%Y-%m-%d", &tm);
}

static int cmd_card(const char *path, const char *outp)
{
    char def[PATH_MAX];
    struct stat st;
    struct eng_model *m;
    struct cit_err err;
    struct cit_buf b = {0};
    struct gguf_str t;
    const char *base;
    FILE *f;
    if (!stat(path, &st) && S_ISDIR(st.st_mode)) {
        fprintf(cli_err, "citadel model card: give the .gguf file inside %s, and -o FILE in it\n",
                path);
        return 2;
    }
    if (!outp) brd_card_path(path, def, sizeof(def)), outp = def;
    if (access(outp, F_OK) == 0) {
        fprintf(cli_err, "citadel model card: %s exists; not overwriting it\n", outp);
        return 1;
    }
    if (eng_model_check(path, &m, &err)) {
        fprintf(cli_err, "citadel model card: %s\n", err.msg);
        return 1;
    }
    base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if (brd_card_skeleton(eng_model_gguf(m), base, &b) || !(f = fopen(outp, "wx"))) {
        fprintf(cli_err, "citadel model card: cannot write %s\n", outp);
        eng_model_free(m);
        cit_buf_free(&b);
        return 1;
    }
    fwrite(b.p, 1, b.len, f);
    if (fclose(f)) fprintf(cli_err, "citadel model card: writing %s failed\n", outp);
    fprintf(cli_out,
            "wrote %s: complete every TODO (SPDX license ids; each dataset's name and "
            "citadel:jurisdiction), then sign the model with it\n",
            outp);
    if (!gguf_get_str(eng_model_gguf(m), "tokenizer.chat_template", &t, NULL)) {
        uint8_t h[32];
        int ok;
        enum eng_chat_tmpl e = eng_chat_detect_str(t.p, (size_t)t.n, &ok);
        crypto_hash_sha256(h, (const unsigned char *)t.p, t.n);
        fprintf(cli_out, "chat template: sha256 ");
        print_hex(h, 32);
        fprintf(cli_out, ", reads as %s; its text, to review before pinning it:\n%.*s\n",
                ok ? eng_chat_tmpl_name(e) : "no known format", (int)t.n, t.p);
    } else {
        fprintf(cli_out, "chat template: none (chat requests use ChatML)\n");
    }
    eng_model_free(m);
    cit_buf_free(&b);
    return 0;
}

static void print_admitted(const struct brd_admitted *a)
{
    char d1[16], d2[16];
    date_str(a->admitted, d1, sizeof(d1));
    date_str(a->expires, d2, sizeof(d2));
    fprintf(cli_out, "  id %lld  %s %s\n  subject sha256 ", (long long)a->id, a->name, a->version);
    print_hex(a->root, 32);
    fprintf(cli_out,
            "\n  gguf %s (%llu bytes)\n  signer %s (%s)  licenses %s\n  datasets %s\n"
            "  template %s  admitted %s  expires %s\n",
            a->gguf, (unsigned long long)a->gguf_size, a->signer, a->signer_place, a->licenses,
            a->datasets, a->tmpl, d1, d2);
}

static int cmd_admit(const struct cli_node_args *na, const char *path, const char *card,
                     const char *sig)
{
    struct cli_node n;
    struct cit_err err;
    struct brd_admitted a;
    struct brd_admit_req q = {path, card, sig, 0};
    const char *check;
    uint64_t t0 = cit_now_ns();
    int rc;
    if (cli_node_open(na, CLI_NODE_POLICY | CLI_NODE_STATE | CLI_NODE_LEDGER, &n, &err)) {
        fprintf(cli_err, "citadel model admit: %s\n", err.msg);
        return 1;
    }
    rc = brd_admit(n.reg, n.pol, n.lg, &q, &a, &check, &err);
    if (rc) {
        fprintf(cli_err, "citadel model admit: REFUSED (%s): %s\n", check[0] ? check : "error",
                err.msg);
    } else {
        fprintf(cli_out, "admitted %s in %.2f s under policy %.16s...\n", path,
                (double)(cit_now_ns() - t0) / 1e9, n.pol->hash_hex);
        print_admitted(&a);
    }
    cli_node_close(&n);
    return rc ? 1 : 0;
}

static int cmd_list(const struct cli_node_args *na, int json)
{
    struct cli_node n;
    struct cit_err err;
    struct brd_admitted *v;
    size_t cnt;
    int64_t now = (int64_t)time(NULL);
    if (cli_node_open(na, CLI_NODE_STATE, &n, &err) || brd_model_list(n.reg, &v, &cnt, &err)) {
        fprintf(cli_err, "citadel model list: %s\n", err.msg);
        cli_node_close(&n);
        return 1;
    }
    if (!json)
        fprintf(cli_out, "%-4s %-8s %-20s %-10s %-10s %-16s %s\n", "id", "status", "name",
                "admitted", "expires", "subject", "licenses");
    for (size_t i = 0; i < cnt; i++) {
        const struct brd_admitted *a = &v[i];
        const char *status = a->revoked                        ? "revoked"
                             : a->expires && now >= a->expires ? "expired"
                                                               : "active";
        char d1[16], d2[16], root[65];
        date_str(a->admitted, d1, sizeof(d1));
        date_str(a->expires, d2, sizeof(d2));
        sodium_bin2hex(root, sizeof(root), a->root, 32);
        if (!json) {
            fprintf(cli_out, "%-4lld %-8s %-20s %-10s %-10s %.16s %s\n", (long long)a->id, status,
                    a->name, d1, d2, root, a->licenses);
            continue;
        }
        fprintf(cli_out, "{\"id\":%lld,\"status\":\"%s\",\"name\":", (long long)a->id, status);
        cli_json_str(cli_out, a->name, strlen(a->name));
        fprintf(cli_out, ",\"version\":");
        cli_json_str(cli_out, a->version, strlen(a->version));
        fprintf(cli_out, ",\"subject_sha256\":\"%s\",\"gguf\":", root);
        cli_json_str(cli_out, a->gguf, strlen(a->gguf));
        sodium_bin2hex(root, sizeof(root), a->gguf_sha256, 32);
        fprintf(cli_out, ",\"gguf_sha256\":\"%s\",\"signer\":", root);
        cli_json_str(cli_out, a->signer, strlen(a->signer));
        fprintf(cli_out, ",\"licenses\":");
        cli_json_str(cli_out, a->licenses, strlen(a->licenses));
        fprintf(cli_out, ",\"datasets\":");
        cli_json_str(cli_out, a->datasets, strlen(a->datasets));
        fprintf(cli_out,
                ",\"template\":\"%s\",\"policy\":\"%s\",\"admitted\":%lld,\"expires\":%lld,"
                "\"revoked\":%lld,\"revoke_reason\":",
                a->tmpl, a->policy, (long long)a->admitted, (long long)a->expires,
                (long long)a->revoked);
        cli_json_str(cli_out, a->revoke_reason, strlen(a->revoke_reason));
        fprintf(cli_out, "}\n");
    }
    cit_free(v);
    cli_node_close(&n);
    return 0;
}

static int cmd_revoke(const struct cli_node_args *na, const char *which, const char *reason)
{
    struct cli_node n;
    struct cit_err err;
    struct brd_admitted a;
    char detail[400];
    int cnt = 0, rc;
    if (cli_node_open(na, CLI_NODE_POLICY | CLI_NODE_STATE | CLI_NODE_LEDGER, &n, &err)) {
        fprintf(cli_err, "citadel model revoke: %s\n", err.msg);
        return 1;
    }
    rc = brd_model_revoke(n.reg, which, reason, (int64_t)time(NULL), &a, &cnt, &err);
    if (!rc) {
        snprintf(detail, sizeof(detail), "%d admission%s revoked (first: id %lld)%s%s", cnt,
                 cnt == 1 ? "" : "s", (long long)a.id, reason ? ": " : "", reason ? reason : "");
        if (brd_ledger_event(n.lg, "model", "revoke", "", a.name, a.root, a.path, n.pol, detail))
            fprintf(cli_err, "citadel model revoke: revoked, but the ledger could not record it\n");
        fprintf(cli_out, "%s\n", detail);
    } else {
        fprintf(cli_err, "citadel model revoke: %s\n", err.msg);
    }
    cli_node_close(&n);
    return rc ? 1 : 0;
}

/* load and unload act on a serving node only. */
static int cmd_load(const struct cli_node_args *na, const char *verb, const char *arg)
{
    struct cli_node n;
    struct cit_err err;
    int rc;
    if (cli_node_open(na, 0, &n, &err)) {
        fprintf(cli_err, "citadel model %s: %s\n", verb, err.msg);
        return 1;
    }
    if (!n.borrowed) {
        fprintf(cli_err,
                "citadel model %s: no citadel serve runs on this node (its admin socket "
                "answers nothing); %s acts on a running server. Offline, list the model in the "
                "config's 'model =' lines instead\n",
                verb, verb);
        cli_node_close(&n);
        return 1;
    }
    if (!strcmp(verb, "load")) {
        struct node_model_spec spec;
        struct node_opts none;
        node_opts_defaults(&none);
        rc = node_model_spec_parse(&none, arg, &spec, &err) ||
             node_model_load(n.node, spec.id, spec.path, &err);
        if (!rc) fprintf(cli_out, "loaded model %s from %s\n", spec.id, spec.path);
    } else {
        rc = node_model_unload(n.node, arg, "unloaded by citadel model unload", &err);
        if (!rc) fprintf(cli_out, "unloaded model %s\n", arg);
    }
    if (rc) fprintf(cli_err, "citadel model %s: %s\n", verb, err.msg);
    cli_node_close(&n);
    return rc ? 1 : 0;
}

int cli_model_sign(int argc, char **argv)
{
    const char *verb = argc ? argv[0] : "", *key = NULL, *path = NULL, *sig = NULL;
    const char *curve = "P-256", *card = NULL, *outp = NULL, *reason = NULL;
    char sig_buf[4200], priv[4200], pub[4200], card_buf[PATH_MAX];
    struct cli_node_args na = {0};
    struct cit_err err;
    int json = 0;
    {
        const struct cli_flag flags[] = {
            {"--json", CLI_BOOL, &json, NULL, 0, 0},    {"--key", CLI_STR, &key, NULL, 0, 0},
            {"--sig", CLI_STR, &sig, NULL, 0, 0},       {"--card", CLI_STR, &card, NULL, 0, 0},
            {"--curve", CLI_STR, &curve, NULL, 0, 0},   {"-o", CLI_STR, &outp, NULL, 0, 0},
            {"--reason", CLI_STR, &reason, NULL, 0, 0}, {NULL, 0, NULL, NULL, 0, 0}};
        const char *pos[1];
        int np, rc;
        char what[48];
        snprintf(what, sizeof(what), "model %s", verb);
        if ((rc = cli_flags_parse(what, flags, &na, argc - (argc > 0), argv + (argc > 0), pos, 1,
                                  &np))) {
            cli_usage_model(cli_err);
            return rc;
        }
        if (np) path = pos[0];
    }
    if (!strcmp(verb, "admit") || !strcmp(verb, "list") || !strcmp(verb, "revoke") ||
        !strcmp(verb, "load") || !strcmp(verb, "unload")) {
        static const char *const files[] = {"--card", "--sig", NULL};
        int status;
        if (cli_forward(&na, "model", argc, argv, files,
                        !strcmp(verb, "admit") || !strcmp(verb, "load"), &status))
            return status;
    }
    if (!strcmp(verb, "list")) return cmd_list(&na, json);
    if ((!strcmp(verb, "load") || !strcmp(verb, "unload")) && path)
        return cmd_load(&na, verb, path);
    if (!path || ((!strcmp(verb, "sign") || !strcmp(verb, "verify")) && !key)) {
        cli_usage_model(cli_err);
        return 2;
    }
    if (!strcmp(verb, "keygen")) {
        snprintf(priv, sizeof(priv), "%s.pem", path);
        snprintf(pub, sizeof(pub), "%s.pub.pem", path);
        if (brd_keygen(curve, priv, pub, &err)) {
            fprintf(cli_err, "citadel model keygen: %s\n", err.msg);
            return 1;
        }
        fprintf(cli_out, "wrote %s (private, mode 0600) and %s (public)\n", priv, pub);
        return 0;
    }
    if (!strcmp(verb, "card")) return cmd_card(path, outp);
    if (!strcmp(verb, "revoke")) return cmd_revoke(&na, path, reason);
    if (!strcmp(verb, "admit")) return cmd_admit(&na, path, card, sig); /* NULLs: its defaults */
    if (!sig) {
        size_t n = strlen(path);
        while (n > 1 && path[n - 1] == '/') n--;
        snprintf(sig_buf, sizeof(sig_buf), "%.*s.sig", (int)n, path);
        sig = sig_buf;
    }
    /* sign and verify take a file model's card when it is where admit looks */
    if (!card) {
        struct stat st;
        brd_card_path(path, card_buf, sizeof(card_buf));
        if (!stat(path, &st) && S_ISREG(st.st_mode) && access(card_buf, F_OK) == 0) card = card_buf;
    }
    if (!strcmp(verb, "sign")) {
        struct brd_manifest m;
        if (brd_sign(key, path, card, sig, &m, &err)) {
            fprintf(cli_err, "citadel model sign: %s\n", err.msg);
            return 1;
        }
        fprintf(cli_out, "signed %s%s%s: %zu file%s, %.2f GB hashed at %.2f GB/s\nsubject sha256 ",
                path, card ? " with its card " : " (no model card)", card ? card : "", m.n,
                m.n == 1 ? "" : "s", (double)m.bytes / 1e9, gbps(m.bytes, m.seconds));
        print_hex(m.root, 32);
        fprintf(cli_out, "\nwrote %s\n", sig);
        brd_manifest_free(&m);
        return 0;
    }
    if (!strcmp(verb, "verify")) {
        struct brd_verified v;
        if (brd_verify(key, path, card, sig, &v, &err)) {
            fprintf(cli_err, "citadel model verify: FAILED (%s): %s\n", brd_fail_name(v.fail),
                    err.msg);
            return 1;
        }
        fprintf(cli_out,
                "OK: %s matches %s: %zu file%s, %.2f GB hashed at %.2f GB/s\nsubject %s sha256 ",
                path, sig, v.n_files, v.n_files == 1 ? "" : "s", (double)v.bytes / 1e9,
                gbps(v.bytes, v.seconds), v.model_name);
        print_hex(v.root, 32);
        fprintf(cli_out, "\n");
        return 0;
    }
    fprintf(cli_err, "citadel model: unknown verb '%s'\n", verb);
    cli_usage_model(cli_err);
    return 2;
}

/* ---- trust ---- */

void cli_usage_trust(FILE *f)
{
    fputs("usage: citadel trust add --name NAME --jurisdiction CODE PUB.pem [NODE]\n"
          "       citadel trust list [NODE]\n"
          "       citadel trust remove NAME [NODE]\n"
          "  NODE: --state F --policy F --ledger DIR --config F (else citadel.conf)\n",
          f);
}

int cli_trust(int argc, char **argv)
{
    const char *verb = argc ? argv[0] : "", *name = NULL, *place = NULL, *arg = NULL;
    struct cli_node_args na = {0};
    struct cli_node n;
    struct cit_err err;
    int rc = 0;
    {
        const struct cli_flag flags[] = {{"--name", CLI_STR, &name, NULL, 0, 0},
                                         {"--jurisdiction", CLI_STR, &place, NULL, 0, 0},
                                         {NULL, 0, NULL, NULL, 0, 0}};
        const char *pos[1];
        int np;
        if ((rc = cli_flags_parse("trust", flags, &na, argc - (argc > 0), argv + (argc > 0), pos, 1,
                                  &np))) {
            cli_usage_trust(cli_err);
            return rc;
        }
        if (np) arg = pos[0];
    }
    {
        int status;
        if (cli_forward(&na, "trust", argc, argv, NULL, !strcmp(verb, "add"), &status))
            return status;
    }
    if (!strcmp(verb, "list")) {
        struct brd_signer *v;
        size_t cnt;
        if (cli_node_open(&na, CLI_NODE_STATE, &n, &err) || brd_trust_list(n.reg, &v, &cnt, &err)) {
            fprintf(cli_err, "citadel trust list: %s\n", err.msg);
            cli_node_close(&n);
            return 1;
        }
        for (size_t i = 0; i < cnt; i++) {
            char d[16];
            date_str(v[i].added, d, sizeof(d));
            fprintf(cli_out, "%-24s %-6s key %s  added %s\n", v[i].name, v[i].jurisdiction,
                    v[i].hint, d);
        }
        cit_free(v);
        cli_node_close(&n);
        return 0;
    }
    if ((strcmp(verb, "add") || !name || !place || !arg) && (strcmp(verb, "remove") || !arg)) {
        cli_usage_trust(cli_err);
        return 2;
    }
    if (cli_node_open(&na, CLI_NODE_POLICY | CLI_NODE_STATE | CLI_NODE_LEDGER, &n, &err)) {
        fprintf(cli_err, "citadel trust: %s\n", err.msg);
        return 1;
    }
    {
        struct brd_signer s = {0};
        struct cit_buf pem = {0};
        char detail[300];
        if (!strcmp(verb, "add")) {
            rc = cit_read_file(arg, 1u << 16, &pem, &err);
            if (rc == CIT_ENOENT) cit_err_set(&err, rc, "%s: no such file", arg);
            if (!rc) rc = brd_trust_add(n.reg, name, place, pem.p ? pem.p : "", pem.len, &s, &err);
            snprintf(detail, sizeof(detail), "signer %s (%s) trusted: key %s", name, place, s.hint);
        } else {
            rc = brd_trust_remove(n.reg, arg, &err);
            snprintf(detail, sizeof(detail), "signer %s removed from the trust store", arg);
        }
        cit_buf_free(&pem);
        if (!rc) {
            if (brd_ledger_event(n.lg, "trust", !strcmp(verb, "add") ? "trust_add" : "trust_remove",
                                 "", name ? name : arg, NULL, NULL, n.pol, detail))
                fprintf(cli_err, "citadel trust: done, but the ledger could not record it\n");
            fprintf(cli_out, "%s\n", detail);
        } else {
            fprintf(cli_err, "citadel trust %s: %s\n", verb, err.msg);
        }
    }
    cli_node_close(&n);
    return rc ? 1 : 0;
}
