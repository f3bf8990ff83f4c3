/*
 * Admission and enforcement at load.
 *
 * brd_admit runs the checks in a fixed order and stops at the first that
 * fails: the GGUF's structure (the reader's full validation and every
 * tensor's shape against the architecture), the OMS signature over the
 * model and its card by a key in the trust store, the card, its licenses
 * and its datasets' jurisdictions against the policy, and the chat
 * template against the pinned hashes. Either outcome goes into the ledger;
 * only an admission goes into the registry, in one transaction with its
 * ledger entry.
 *
 * brd_load_model is the only way serve and run get a model: it finds the
 * admission, re-checks what may have changed since (revocation, expiry, a
 * tightened policy, a signer taken out of the trust store), and hashes the
 * GGUF on the very mapping the engine then parses and evaluates, so a file
 * swapped after the check is never used.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "citadel/border.h"
#include "citadel/engine.h"
#include "citadel/ledger.h"
#include "citadel/policy.h"
#include "border_int.h"

/* Templates whose exact text has been read and found to be what our
 * renderer for that format produces. Policies pin more. */
static const struct {
    const char *sha256, *format, *what;
} builtin_pins[] = {
    {"268b6082ceb7176dc6ed80557a2f7837f9f0339592fbee677d405a553af15f88", "phi3",
     "Phi-3 mini instruct"},
};

/* Where a chat template is pinned: the renderer its SHA-256 is pinned to
 * (built in, or the policy's admission.templates), or NULL. */
static const char *brd_template_pinned(const struct pol_policy *p, const uint8_t sha256[32])
{
    char hex[65];
    sodium_bin2hex(hex, sizeof(hex), sha256, 32);
    for (size_t i = 0; i < sizeof(builtin_pins) / sizeof(*builtin_pins); i++)
        if (!strcmp(builtin_pins[i].sha256, hex)) return builtin_pins[i].format;
    for (int i = 0; p && i < p->adm.n_pins; i++)
        if (!memcmp(p->adm.pins[i].sha256, sha256, 32)) return p->adm.pins[i].format;
    return NULL;
}

int brd_ledger_event(struct ledger *lg, const char *event, const char *action, const char *check,
                     const char *name, const uint8_t root[32], const char *target,
                     const struct pol_policy *p, const char *detail)
{
    struct ledger_rec e = {0};
    if (!lg) return 0;
    e.request_id = name;
    if (root) memcpy(e.digest, root, 32);
    e.rule = check;
    e.policy_hash = p ? p->hash_hex : "";
    e.target = target;
    e.action = action;
    e.status = strncmp(action, "refuse", 6) ? 200 : 403;
    e.event = event;
    e.detail = detail;
    return ledger_append(lg, &e, LEDGER_SYNC, NULL);
}

static int record(struct ledger *lg, const char *action, const char *check, const char *name,
                  const uint8_t root[32], const char *target, const struct pol_policy *p,
                  const char *detail)
{
    return brd_ledger_event(lg, "model", action, check, name, root, target, p, detail);
}

void brd_card_path(const char *model_file, char *out, size_t cap)
{
    size_t n = strlen(model_file);
    if (n > 5 && !strcmp(model_file + n - 5, ".gguf")) n -= 5;
    snprintf(out, cap, "%.*s.cdx.json", (int)n, model_file);
}

/* A refusal: the ledger entry, then the error. A refusal the ledger could
 * not take is still a refusal; the message says so. */
static int refuse(struct ledger *lg, const char *action, const char *check, const char **out,
                  const char *name, const uint8_t root[32], const char *target,
                  const struct pol_policy *p, int rc, struct cit_err *err)
{
    char msg[sizeof(err->msg)];
    *out = check;
    snprintf(msg, sizeof(msg), "%s", err->msg);
    if (record(lg, action, check, name, root, target, p, msg))
        cit_err_set(err, rc, "%.300s (and the ledger could not record the refusal)", msg);
    return rc ? rc : CIT_EINVAL;
}

/* The single top-level file of dir whose name ends in suffix, into out. */
static int find_one(const char *dir, const char *suffix, char *out, size_t cap, struct cit_err *err)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t sl = strlen(suffix);
    int n = 0;
    if (!d) return cit_err_set(err, CIT_EIO, "%s: %s", dir, strerror(errno));
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l <= sl || strcmp(e->d_name + l - sl, suffix)) continue;
        if (n++ == 0) snprintf(out, cap, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (n == 1) return 0;
    return cit_err_set(err, n ? CIT_EINVAL : CIT_ENOENT, "%s: %s *%s file%s (one is needed)", dir,
                       n ? "more than one" : "no", suffix, n ? "s" : "");
}

static int is_file(const char *path)
{
    struct stat st;
    return !stat(path, &st) && S_ISREG(st.st_mode);
}

static void join_licenses(const struct brd_card *c, char *out, size_t cap)
{
    out[0] = 0;
    for (int i = 0; i < c->n_licenses; i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? "," : "", c->licenses[i]);
}

static void join_datasets(const struct brd_card *c, char *out, size_t cap)
{
    out[0] = 0;
    for (int i = 0; i < c->n_datasets; i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%s=%s", i ? "," : "", c->datasets[i].name,
                 c->datasets[i].jurisdiction);
}

static void list_places(const char (*v)[16], int n, char *out, size_t cap)
{
    out[0] = 0;
    for (int i = 0; i < n; i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? ", " : "", v[i]);
}

/* Checks the template against the pins; fills a->tmpl and a->tmpl_sha256. */
static int check_template(const struct pol_policy *p, const struct eng_model *m,
                          struct brd_admitted *a, struct cit_err *err)
{
    struct gguf_str t;
    uint8_t h[32];
    int recognised;
    enum eng_chat_tmpl detected, pinned_t;
    const char *pinned;
    if (gguf_get_str(eng_model_gguf(m), "tokenizer.chat_template", &t, NULL)) {
        snprintf(a->tmpl, sizeof(a->tmpl), "none");
        a->tmpl_sha256[0] = 0;
        return 0; /* nothing to run: chat requests use our ChatML */
    }
    crypto_hash_sha256(h, (const unsigned char *)t.p, t.n);
    sodium_bin2hex(a->tmpl_sha256, sizeof(a->tmpl_sha256), h, 32);
    detected = eng_chat_detect_str(t.p, (size_t)t.n, &recognised);
    if (!(pinned = brd_template_pinned(p, h)))
        return cit_err_set(err, CIT_EINVAL,
                           "the chat template (sha256 %s) is not pinned: review its text "
                           "(citadel model card prints it) and add {sha256: %s, format: %s} to "
                           "the policy's admission.templates",
                           a->tmpl_sha256, a->tmpl_sha256,
                           recognised ? eng_chat_tmpl_name(detected) : "<renderer>");
    if (eng_chat_tmpl_from_name(pinned, &pinned_t))
        return cit_err_set(err, CIT_EINVAL,
                           "the chat template is pinned as '%s', which is not one of our "
                           "renderers",
                           pinned);
    if (!recognised || detected != pinned_t)
        return cit_err_set(err, CIT_EINVAL,
                           "the chat template is pinned as %s but its markers read as %s: the "
                           "pin is wrong",
                           pinned, recognised ? eng_chat_tmpl_name(detected) : "no known format");
    snprintf(a->tmpl, sizeof(a->tmpl), "%s", pinned);
    return 0;
}

struct admit_ctx {
    struct ledger *lg;
    const struct pol_policy *p;
    struct brd_admitted *a;
    struct cit_err *err;
};

static int admit_entry(void *ctx)
{
    struct admit_ctx *c = ctx;
    struct cit_buf d = {0};
    int rc;
    cit_buf_printf(&d, "id %lld, signed by %s (%s), licenses %s, datasets %s, %s template",
                   (long long)c->a->id, c->a->signer, c->a->signer_place, c->a->licenses,
                   c->a->datasets, c->a->tmpl);
    rc = !d.p || record(c->lg, "admit", "", c->a->name, c->a->root, c->a->path, c->p, d.p);
    cit_buf_free(&d);
    if (rc)
        return cit_err_set(c->err, CIT_EIO,
                           "the ledger could not record the admission; nothing was admitted");
    return 0;
}

int brd_admit(struct brd_registry *r, const struct pol_policy *p, struct ledger *lg,
              const struct brd_admit_req *q, struct brd_admitted *a, const char **check,
              struct cit_err *err)
{
    char model[PATH_MAX], gguf[PATH_MAX], card[PATH_MAX], sig[PATH_MAX + 8], places[256];
    const char *name, *card_arg;
    struct stat st;
    struct eng_model *m = NULL;
    struct brd_signer signer;
    struct brd_verified v;
    struct brd_manifest files = {0};
    struct brd_card c;
    struct cit_buf pem = {0}, text = {0};
    char hint[65];
    int64_t now = q->now ? q->now : (int64_t)time(NULL);
    int rc = 0, is_dir;
    uint8_t *root = NULL;

    memset(a, 0, sizeof(*a));
    *check = "";
    name = strrchr(q->model, '/') ? strrchr(q->model, '/') + 1 : q->model;
#define REFUSE(chk, code) refuse(lg, "refuse", chk, check, name, root, q->model, p, code, err)
    if (!p->adm.present) {
        cit_err_set(err, CIT_EINVAL,
                    "the policy has no admission section, so it admits no model (docs/border.md)");
        return REFUSE(BRD_CHECK_POLICY, CIT_EINVAL);
    }
    /* 1. structure */
    if (!realpath(q->model, model) || stat(model, &st)) {
        cit_err_set(err, CIT_ENOENT, "%s: %s", q->model, strerror(errno));
        return REFUSE(BRD_CHECK_STRUCTURE, CIT_ENOENT);
    }
    is_dir = S_ISDIR(st.st_mode);
    if (is_dir) {
        if ((rc = find_one(model, ".gguf", gguf, sizeof(gguf), err)))
            return REFUSE(BRD_CHECK_STRUCTURE, rc);
    } else {
        snprintf(gguf, sizeof(gguf), "%s", model);
    }
    if ((rc = eng_model_check(gguf, &m, err))) return REFUSE(BRD_CHECK_STRUCTURE, rc);

    /* the card: given, or beside a file model, or the one in a directory */
    if (q->card) {
        if (!realpath(q->card, card)) {
            cit_err_set(err, CIT_ENOENT, "%s: no such model card", q->card);
            rc = REFUSE(BRD_CHECK_CARD, CIT_ENOENT);
            goto out;
        }
    } else if (is_dir) {
        if ((rc = find_one(model, ".cdx.json", card, sizeof(card), err))) {
            rc = REFUSE(BRD_CHECK_CARD, rc);
            goto out;
        }
    } else {
        brd_card_path(model, card, sizeof(card));
        if (!is_file(card)) {
            cit_err_set(err, CIT_ENOENT,
                        "no model card: %s does not exist (citadel model card writes one to "
                        "complete; sign it with the model)",
                        card);
            rc = REFUSE(BRD_CHECK_CARD, CIT_ENOENT);
            goto out;
        }
    }
    card_arg = is_dir ? NULL : card; /* a directory's card is one of its files */

    /* 2. signature, by a trusted key */
    snprintf(sig, sizeof(sig), "%s.sig", model);
    if (q->sig) snprintf(sig, sizeof(sig), "%s", q->sig);
    if ((rc = brd_sig_hint(sig, hint, err))) {
        rc = REFUSE(BRD_CHECK_SIGNATURE, rc);
        goto out;
    }
    if (!hint[0]) {
        cit_err_set(err, CIT_EINVAL,
                    "%s names no public key (verificationMaterial.publicKey.hint), so no "
                    "trusted signer can be found for it",
                    sig);
        rc = REFUSE(BRD_CHECK_TRUST, CIT_EINVAL);
        goto out;
    }
    if ((rc = brd_trust_find(r, hint, &signer, &pem, err))) {
        if (rc == CIT_ENOENT)
            cit_err_set(err, rc,
                        "%s was signed by a key that is not in the trust store (key hint "
                        "%.16s...); citadel trust add puts a signer's public key there",
                        sig, hint);
        rc = REFUSE(BRD_CHECK_TRUST, rc);
        goto out;
    }
    if (p->adm.n_signer_places && !pol_place_allowed((const char(*)[16])p->adm.signer_places,
                                                     p->adm.n_signer_places, signer.jurisdiction)) {
        list_places((const char(*)[16])p->adm.signer_places, p->adm.n_signer_places, places,
                    sizeof(places));
        cit_err_set(err, CIT_EINVAL,
                    "signer %s is in %s; the policy takes signatures from %s only "
                    "(admission.signer_jurisdictions)",
                    signer.name, signer.jurisdiction, places);
        rc = REFUSE(BRD_CHECK_TRUST, CIT_EINVAL);
        goto out;
    }
    if ((rc = brd_verify_files(pem.p, pem.len, signer.name, model, card_arg, sig, &v, &files,
                               err))) {
        rc = REFUSE(BRD_CHECK_SIGNATURE, rc);
        goto out;
    }
    memcpy(a->root, v.root, 32);
    root = a->root;

    /* 3. the card: licenses, datasets */
    if ((rc = cit_read_file(card, BRD_MAX_CARD, &text, err)) ||
        (rc = brd_card_parse(text.p ? text.p : "", text.len, &c, err))) {
        cit_err_prefix(err, card);
        rc = REFUSE(BRD_CHECK_CARD, rc);
        goto out;
    }
    for (int i = 0; i < c.n_licenses; i++)
        if (!pol_license_allowed(p, c.licenses[i])) {
            cit_err_set(err, CIT_EINVAL,
                        "license %s is not in the policy's allow-list (admission.licenses)",
                        c.licenses[i]);
            rc = REFUSE(BRD_CHECK_LICENSE, CIT_EINVAL);
            goto out;
        }
    for (int i = 0; i < c.n_datasets; i++)
        if (!pol_place_allowed((const char(*)[16])p->adm.data_places, p->adm.n_data_places,
                               c.datasets[i].jurisdiction)) {
            list_places((const char(*)[16])p->adm.data_places, p->adm.n_data_places, places,
                        sizeof(places));
            cit_err_set(err, CIT_EINVAL,
                        "dataset \"%s\" comes from %s; the policy allows training data from %s "
                        "only (admission.dataset_jurisdictions)",
                        c.datasets[i].name, c.datasets[i].jurisdiction, places);
            rc = REFUSE(BRD_CHECK_DATASETS, CIT_EINVAL);
            goto out;
        }

    /* 4. the chat template */
    if ((rc = check_template(p, m, a, err))) {
        rc = REFUSE(BRD_CHECK_TEMPLATE, rc);
        goto out;
    }

    /* admitted: the record, with the GGUF's own digest from the signed files */
    snprintf(a->name, sizeof(a->name), "%s", c.name);
    snprintf(a->version, sizeof(a->version), "%s", c.version);
    snprintf(a->path, sizeof(a->path), "%s", model);
    snprintf(a->gguf, sizeof(a->gguf), "%s", gguf);
    {
        const char *rel = is_dir ? gguf + strlen(model) + 1 : strrchr(gguf, '/') + 1;
        size_t i;
        for (i = 0; i < files.n && strcmp(files.v[i].name, rel); i++) {
        }
        if (i == files.n || stat(gguf, &st)) {
            cit_err_set(err, CIT_EIO, "%s: not among the files just verified", gguf);
            rc = REFUSE(BRD_CHECK_SIGNATURE, CIT_EIO);
            goto out;
        }
        memcpy(a->gguf_sha256, files.v[i].digest, 32);
        a->gguf_size = files.v[i].size;
    }
    a->gguf_dev = (uint64_t)st.st_dev;
    a->gguf_ino = (uint64_t)st.st_ino;
    a->gguf_mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    snprintf(a->signer, sizeof(a->signer), "%s", signer.name);
    snprintf(a->signer_place, sizeof(a->signer_place), "%s", signer.jurisdiction);
    snprintf(a->signer_hint, sizeof(a->signer_hint), "%s", signer.hint);
    join_licenses(&c, a->licenses, sizeof(a->licenses));
    join_datasets(&c, a->datasets, sizeof(a->datasets));
    snprintf(a->policy, sizeof(a->policy), "%s", p->hash_hex);
    a->admitted = now;
    a->expires = p->adm.expires_days ? now + p->adm.expires_days * 86400 : 0;
    {
        struct admit_ctx ac = {lg, p, a, err};
        rc = brd_model_add(r, a, admit_entry, &ac, err);
    }
out:
#undef REFUSE
    eng_model_free(m);
    brd_manifest_free(&files);
    cit_buf_free(&pem);
    cit_buf_free(&text);
    return rc;
}

/* ---- enforcement at load ---- */

struct gate {
    const struct brd_admitted *a;
    int skip_hash;
    int mismatch; /* the check ran and the bytes differ */
    uint64_t bytes;
    double seconds;
};

static int gate_check(void *ctx, const void *map, size_t size, struct cit_err *err)
{
    struct gate *g = ctx;
    uint8_t h[32];
    uint64_t t0 = cit_now_ns();
    EVP_MD_CTX *md;
    int ok;
    if (size != g->a->gguf_size) {
        g->mismatch = 1;
        return cit_err_set(err, CIT_EFORMAT,
                           "%s is %zu bytes; %llu were admitted: the file changed since "
                           "admission",
                           g->a->gguf, size, (unsigned long long)g->a->gguf_size);
    }
    if (g->skip_hash) return 0;
    /* read ahead: the pages are faulted in anyway, and the engine uses them next */
    madvise((void *)map, size, MADV_WILLNEED);
    md = EVP_MD_CTX_new();
    ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    for (size_t off = 0; ok && off < size; off += 1u << 24) /* 16 MiB steps */
        ok = EVP_DigestUpdate(md, (const uint8_t *)map + off,
                              size - off < (1u << 24) ? size - off : (1u << 24));
    ok = ok && EVP_DigestFinal_ex(md, h, NULL);
    EVP_MD_CTX_free(md);
    if (!ok) return cit_err_set(err, CIT_ENOMEM, "cannot compute SHA-256");
    g->bytes = size;
    g->seconds = (double)(cit_now_ns() - t0) / 1e9;
    if (sodium_memcmp(h, g->a->gguf_sha256, 32)) {
        g->mismatch = 1;
        return cit_err_set(err, CIT_EFORMAT,
                           "%s: its SHA-256 is not the admitted one: the file changed since "
                           "admission",
                           g->a->gguf);
    }
    return 0;
}

/* The admission still holds under the current policy and trust store? */
static int still_allowed(const struct brd_load_opts *o, const struct brd_admitted *a,
                         const char **chk, struct cit_err *err)
{
    const struct pol_policy *p = o->pol;
    char buf[sizeof(a->datasets)];
    struct brd_signer *sv = NULL;
    size_t ns = 0;
    int trusted = 0, rc;
    if (!p->adm.present) {
        *chk = BRD_CHECK_POLICY;
        return cit_err_set(err, CIT_EINVAL,
                           "the policy has no admission section, so it admits no model");
    }
    snprintf(buf, sizeof(buf), "%s", a->licenses);
    for (char *s = buf, *t; (t = strsep(&s, ","));)
        if (*t && !pol_license_allowed(p, t)) {
            *chk = BRD_CHECK_LICENSE;
            return cit_err_set(err, CIT_EINVAL,
                               "license %s is no longer in the policy's allow-list", t);
        }
    snprintf(buf, sizeof(buf), "%s", a->datasets);
    for (char *s = buf, *t; (t = strsep(&s, ","));) {
        char *eq = strrchr(t, '=');
        if (eq && !pol_place_allowed((const char(*)[16])p->adm.data_places, p->adm.n_data_places,
                                     eq + 1)) {
            *chk = BRD_CHECK_DATASETS;
            *eq = 0;
            return cit_err_set(err, CIT_EINVAL,
                               "dataset \"%s\" comes from %s, which the policy no longer allows", t,
                               eq + 1);
        }
    }
    if (p->adm.n_signer_places && !pol_place_allowed((const char(*)[16])p->adm.signer_places,
                                                     p->adm.n_signer_places, a->signer_place)) {
        *chk = BRD_CHECK_TRUST;
        return cit_err_set(err, CIT_EINVAL,
                           "signer %s (%s) is not among the policy's signer_jurisdictions",
                           a->signer, a->signer_place);
    }
    if ((rc = brd_trust_list(o->reg, &sv, &ns, err))) {
        *chk = BRD_CHECK_TRUST;
        return rc;
    }
    trusted = brd_signer_holds(a, sv, ns);
    cit_free(sv);
    if (!trusted) {
        *chk = BRD_CHECK_TRUST;
        return cit_err_set(err, CIT_EINVAL,
                           "its signer %s (key %.16s...) is no longer in the trust store",
                           a->signer, a->signer_hint[0] ? a->signer_hint : "unrecorded");
    }
    if (a->tmpl_sha256[0]) {
        uint8_t h[32];
        if (cit_hex_digest(a->tmpl_sha256, h) || !brd_template_pinned(p, h)) {
            *chk = BRD_CHECK_TEMPLATE;
            return cit_err_set(err, CIT_EINVAL, "its chat template %.16s... is no longer pinned",
                               a->tmpl_sha256);
        }
    }
    return 0;
}

/* Same file, unchanged, on a file system mounted read-only? */
static int on_readonly_media(const struct brd_admitted *a)
{
    struct statvfs vfs;
    struct stat st;
    if (statvfs(a->gguf, &vfs) || !(vfs.f_flag & ST_RDONLY) || stat(a->gguf, &st)) return 0;
    return (uint64_t)st.st_dev == a->gguf_dev && (uint64_t)st.st_ino == a->gguf_ino &&
           (uint64_t)st.st_size == a->gguf_size &&
           (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec == a->gguf_mtime_ns;
}

int brd_load_model(const struct brd_load_opts *o, const char *path, struct eng_model **out,
                   const char **check, struct cit_err *err)
{
    struct brd_admitted a;
    struct gate g = {&a, 0, 0, 0, 0};
    int64_t now = o->now ? o->now : (int64_t)time(NULL);
    char detail[512];
    int rc;
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    *check = "";
#define REFUSE(chk, code, root)                                                                    \
    refuse(o->lg, "refuse_load", chk, check, name, root, path, o->pol, code, err)
    rc = brd_model_find(o->reg, path, &a, err);
    if (rc == CIT_ENOENT) {
        if (!o->unvetted) return REFUSE(BRD_CHECK_ADMITTED, rc, NULL);
        if (!o->pol->adm.unvetted) {
            cit_err_set(err, CIT_EINVAL,
                        "%s is not admitted, and --unvetted is refused: the policy's "
                        "admission.unvetted is deny",
                        path);
            return REFUSE(BRD_CHECK_UNVETTED, CIT_EINVAL, NULL);
        }
        cit_log(CIT_LOG_WARN,
                "%s: UNVETTED: not admitted, loaded only because of --unvetted (no signature, "
                "license or provenance was checked)",
                path);
        if ((rc = eng_model_load(path, out, err))) return REFUSE(BRD_CHECK_STRUCTURE, rc, NULL);
        if (record(o->lg, "load_unvetted", BRD_CHECK_UNVETTED, name, NULL, path, o->pol,
                   "not admitted; loaded under --unvetted, which the policy allows")) {
            eng_model_free(*out);
            *out = NULL;
            return cit_err_set(err, CIT_EIO, "%s: the ledger could not record the load", path);
        }
        return 0;
    }
    if (rc) return REFUSE(BRD_CHECK_ADMITTED, rc, NULL);
    name = a.name;
    if (a.revoked) {
        cit_err_set(err, CIT_EINVAL, "%s (admission %lld) was revoked%s%s", path, (long long)a.id,
                    a.revoke_reason[0] ? ": " : "", a.revoke_reason);
        return REFUSE(BRD_CHECK_REVOKED, CIT_EINVAL, a.root);
    }
    if (a.expires && now >= a.expires) {
        char when[32];
        ledger_time_str(a.expires * 1000, when);
        cit_err_set(err, CIT_EINVAL,
                    "%s: its admission (%lld) expired at %s; admit it again to renew", path,
                    (long long)a.id, when);
        return REFUSE(BRD_CHECK_EXPIRED, CIT_EINVAL, a.root);
    }
    if ((rc = still_allowed(o, &a, check, err))) {
        cit_err_prefix(err, path);
        return REFUSE(*check, rc, a.root);
    }
    g.skip_hash = o->trust_readonly && on_readonly_media(&a);
    if ((rc = eng_model_load_checked(path, gate_check, &g, out, err)))
        return REFUSE(g.mismatch ? BRD_CHECK_DIGEST : BRD_CHECK_STRUCTURE, rc, a.root);
    if (g.skip_hash)
        snprintf(detail, sizeof(detail),
                 "admission %lld; stored digest trusted: unchanged file on read-only media",
                 (long long)a.id);
    else
        snprintf(detail, sizeof(detail), "admission %lld; %.1f MB hashed at %.2f GB/s",
                 (long long)a.id, (double)g.bytes / 1e6,
                 g.seconds > 0 ? (double)g.bytes / 1e9 / g.seconds : 0.0);
    if (record(o->lg, "load", "", name, a.root, path, o->pol, detail)) {
        eng_model_free(*out);
        *out = NULL;
        return cit_err_set(err, CIT_EIO, "%s: the ledger could not record the load", path);
    }
    cit_log(CIT_LOG_INFO, "%s: admitted model %s (%s)", path, a.name, detail);
    return 0;
#undef REFUSE
}
