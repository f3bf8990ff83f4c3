/*
 * Manifests: the files of a model and their SHA-256, and the in-toto
 * statement that lists them (OMS v1.0, serialization method "files").
 *
 * Hashing streams each file through OpenSSL's SHA-256, which uses the
 * CPU's SHA extensions where it has them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "citadel/border.h"
#include "border_int.h"

#define READ_CHUNK (4u << 20)

static const char *const default_ignore[] = {".git", ".gitattributes", ".github", ".gitignore",
                                             NULL};

static int hash_file(const char *path, uint8_t out[32], uint64_t *size, uint8_t *buf,
                     struct cit_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    EVP_MD_CTX *ctx = NULL;
    uint64_t total = 0;
    int rc = 0;
    if (fd < 0) return cit_err_set(err, CIT_EIO, "%s: cannot open: %s", path, strerror(errno));
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    if (!(ctx = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
        rc = cit_err_set(err, CIT_ENOMEM, "%s: cannot start SHA-256", path);
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf, READ_CHUNK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = cit_err_set(err, CIT_EIO, "%s: read failed at byte %llu: %s", path,
                             (unsigned long long)total, strerror(errno));
            goto out;
        }
        if (n == 0) break;
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        total += (uint64_t)n;
    }
    EVP_DigestFinal_ex(ctx, out, NULL);
    *size = total;
out:
    EVP_MD_CTX_free(ctx);
    close(fd);
    return rc;
}

struct walk {
    struct brd_manifest *m;
    size_t cap;
    const char *const *ignore;
    struct cit_err *err;
};

static int add_name(struct walk *w, const char *rel)
{
    if (w->m->n == BRD_MAX_FILES)
        return cit_err_set(w->err, CIT_ERANGE, "more than %d files in the model", BRD_MAX_FILES);
    if (w->m->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        struct brd_resource *v = cit_realloc(w->m->v, cap * sizeof(*v));
        if (!v) return CIT_ENOMEM;
        w->m->v = v;
        w->cap = cap;
    }
    struct brd_resource *r = &w->m->v[w->m->n];
    memset(r, 0, sizeof(*r));
    if (!(r->name = cit_strndup(rel, strlen(rel)))) return CIT_ENOMEM;
    w->m->n++;
    return 0;
}

/* Collects the regular files under root/rel (rel "" for the top). */
static int walk_dir(struct walk *w, const char *root, const char *rel, int depth)
{
    char path[4200], child[8400], sub[4096];
    struct dirent *e;
    DIR *d;
    int rc = 0;
    if (depth > 64) return cit_err_set(w->err, CIT_ERANGE, "%s/%s: nested too deep", root, rel);
    snprintf(path, sizeof(path), "%s%s%s", root, rel[0] ? "/" : "", rel);
    if (!(d = opendir(path)))
        return cit_err_set(w->err, CIT_EIO, "%s: cannot open the directory: %s", path,
                           strerror(errno));
    while (!rc && (e = readdir(d))) {
        struct stat st;
        int skip = 0;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        for (const char *const *ig = w->ignore; !rel[0] && ig && *ig && !skip; ig++)
            skip = !strcmp(*ig, e->d_name);
        if (skip) continue;
        if ((size_t)snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "", e->d_name) >=
            sizeof(sub)) {
            rc = cit_err_set(w->err, CIT_ERANGE, "%s/%s: path too long", path, e->d_name);
            break;
        }
        snprintf(child, sizeof(child), "%s/%s", root, sub);
        if (lstat(child, &st)) {
            rc = cit_err_set(w->err, CIT_EIO, "%s: %s", child, strerror(errno));
        } else if (S_ISLNK(st.st_mode)) {
            rc = cit_err_set(w->err, CIT_EFORMAT,
                             "%s is a symbolic link; links are not followed: replace it by the "
                             "file",
                             child);
        } else if (S_ISDIR(st.st_mode)) {
            rc = walk_dir(w, root, sub, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            rc = add_name(w, sub);
        } else {
            rc = cit_err_set(w->err, CIT_EFORMAT, "%s is not a regular file", child);
        }
    }
    closedir(d);
    return rc;
}

/* The subject digest: SHA-256 over the resources' digests in order. */
static int root_digest(const struct brd_manifest *m, uint8_t out[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; ok && i < m->n; i++) ok = EVP_DigestUpdate(ctx, m->v[i].digest, 32);
    ok = ok && EVP_DigestFinal_ex(ctx, out, NULL);
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : CIT_ENOMEM;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct brd_resource *)a)->name, ((const struct brd_resource *)b)->name);
}

/* Is the file at path inside the directory dir (both resolved)? */
static int inside(const char *dir, const char *path)
{
    char rd[PATH_MAX], rp[PATH_MAX];
    size_t n;
    if (!realpath(dir, rd) || !realpath(path, rp)) return 0;
    n = strlen(rd);
    return !strncmp(rd, rp, n) && rp[n] == '/';
}

int brd_manifest_build(const char *path, const char *card, const char *const *ignore,
                       struct brd_manifest *m, struct cit_err *err)
{
    struct walk w = {m, 0, ignore ? ignore : default_ignore, err};
    struct stat st, cst;
    uint8_t *buf = NULL;
    char full[4096];
    const char *base, *card_base = NULL;
    size_t plen = strlen(path);
    int rc = 0;
    memset(m, 0, sizeof(*m));
    while (plen > 1 && path[plen - 1] == '/') plen--;
    snprintf(full, sizeof(full), "%.*s", (int)plen, path);
    base = strrchr(full, '/') ? strrchr(full, '/') + 1 : full;
    if (strlen(base) >= sizeof(m->model_name))
        return cit_err_set(err, CIT_ERANGE, "%s: the name is longer than %zu bytes", full,
                           sizeof(m->model_name) - 1);
    memcpy(m->model_name, base, strlen(base) + 1);
    if (lstat(full, &st)) return cit_err_set(err, CIT_EIO, "%s: %s", full, strerror(errno));
    if (S_ISLNK(st.st_mode))
        return cit_err_set(err, CIT_EFORMAT, "%s is a symbolic link; links are not followed", full);
    if (card && S_ISDIR(st.st_mode) && !inside(full, card))
        return cit_err_set(err, CIT_EINVAL,
                           "%s: the model card must be inside the model directory %s to be "
                           "signed with it",
                           card, full);
    if (S_ISREG(st.st_mode) && card) {
        card_base = strrchr(card, '/') ? strrchr(card, '/') + 1 : card;
        if (lstat(card, &cst) || !S_ISREG(cst.st_mode))
            return cit_err_set(err, CIT_EIO, "%s: the model card is not a regular file", card);
        if (!strcmp(card_base, base))
            return cit_err_set(err, CIT_EINVAL, "%s: the card and the model have the same name",
                               card);
    }
    if (S_ISREG(st.st_mode)) {
        rc = add_name(&w, base);
        if (!rc && card_base) rc = add_name(&w, card_base);
    } else if (S_ISDIR(st.st_mode)) {
        rc = walk_dir(&w, full, "", 0);
        if (!rc && m->n == 0) rc = cit_err_set(err, CIT_EFORMAT, "%s: no files to sign", full);
    } else {
        rc = cit_err_set(err, CIT_EFORMAT, "%s is not a file or a directory", full);
    }
    if (rc == CIT_ENOMEM) cit_err_set(err, rc, "out of memory");
    if (!rc) qsort(m->v, m->n, sizeof(*m->v), by_name);
    if (!rc && !(buf = cit_malloc(READ_CHUNK))) rc = cit_err_set(err, CIT_ENOMEM, "out of memory");
    uint64_t t0 = cit_now_ns();
    for (size_t i = 0; !rc && i < m->n; i++) {
        char fp[8192];
        if (S_ISREG(st.st_mode))
            snprintf(fp, sizeof(fp), "%s",
                     card_base && !strcmp(m->v[i].name, card_base) ? card : full);
        else
            snprintf(fp, sizeof(fp), "%s/%s", full, m->v[i].name);
        rc = hash_file(fp, m->v[i].digest, &m->v[i].size, buf, err);
        m->bytes += m->v[i].size;
    }
    m->seconds = (double)(cit_now_ns() - t0) / 1e9;
    cit_free(buf);
    if (!rc && root_digest(m, m->root)) rc = cit_err_set(err, CIT_ENOMEM, "out of memory");
    if (rc) brd_manifest_free(m);
    return rc;
}

void brd_manifest_free(struct brd_manifest *m)
{
    for (size_t i = 0; i < m->n; i++) cit_free(m->v[i].name);
    cit_free(m->v);
    m->v = NULL;
    m->n = 0;
}

int brd_statement(const struct brd_manifest *m, struct cit_buf *out)
{
    char h[65];
    sodium_bin2hex(h, sizeof(h), m->root, 32);
    BUF_LIT(out, "{\"_type\":\"https://in-toto.io/Statement/v1\",\"subject\":[{\"name\":");
    cit_buf_json_str(out, m->model_name, strlen(m->model_name));
    cit_buf_printf(out, ",\"digest\":{\"sha256\":\"%s\"}}],", h);
    BUF_LIT(out, "\"predicateType\":\"https://model_signing/signature/v1.0\",\"predicate\":{"
                 "\"serialization\":{\"method\":\"files\",\"hash_type\":\"sha256\","
                 "\"allow_symlinks\":false,\"ignore_paths\":[");
    for (const char *const *ig = default_ignore; *ig; ig++)
        cit_buf_printf(out, "%s\"%s\"", ig == default_ignore ? "" : ",", *ig);
    BUF_LIT(out, "]},\"resources\":[");
    for (size_t i = 0; i < m->n; i++) {
        sodium_bin2hex(h, sizeof(h), m->v[i].digest, 32);
        if (i) BUF_LIT(out, ",");
        BUF_LIT(out, "{\"name\":");
        cit_buf_json_str(out, m->v[i].name, strlen(m->v[i].name));
        cit_buf_printf(out, ",\"algorithm\":\"sha256\",\"digest\":\"%s\"}", h);
    }
    BUF_LIT(out, "]}}");
    return out->p ? 0 : CIT_ENOMEM;
}

int brd_statement_parse(const char *text, size_t len, struct brd_manifest *m, struct cit_err *err)
{
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je), *subj, *pred, *res, *ser;
    struct walk w = {m, 0, NULL, err};
    int rc = 0;
    memset(m, 0, sizeof(*m));
    if (!j || !json_is_object(j)) {
        rc = cit_err_set(err, CIT_EFORMAT, "the statement is not a JSON object%s%s", j ? "" : ": ",
                         j ? "" : je.text);
        goto out;
    }
    if (!json_is_string(json_object_get(j, "_type")) ||
        strcmp(json_string_value(json_object_get(j, "_type")), "https://in-toto.io/Statement/v1")) {
        rc = cit_err_set(err, CIT_EFORMAT, "the statement's _type is not in-toto Statement v1");
        goto out;
    }
    if (!json_is_string(json_object_get(j, "predicateType")) ||
        strcmp(json_string_value(json_object_get(j, "predicateType")),
               "https://model_signing/signature/v1.0")) {
        rc = cit_err_set(err, CIT_EFORMAT,
                         "the statement's predicateType is not "
                         "https://model_signing/signature/v1.0");
        goto out;
    }
    subj = json_object_get(j, "subject");
    if (!json_is_array(subj) || json_array_size(subj) != 1 ||
        !json_is_string(json_object_get(json_array_get(subj, 0), "name")) ||
        cit_hex_digest(json_string_value(json_object_get(
                           json_object_get(json_array_get(subj, 0), "digest"), "sha256")),
                       m->root)) {
        rc = cit_err_set(err, CIT_EFORMAT,
                         "the statement needs one subject with a name and a sha256 digest");
        goto out;
    }
    snprintf(m->model_name, sizeof(m->model_name), "%s",
             json_string_value(json_object_get(json_array_get(subj, 0), "name")));
    pred = json_object_get(j, "predicate");
    ser = json_object_get(pred, "serialization");
    if (!json_is_object(ser) || !json_is_string(json_object_get(ser, "method")) ||
        strcmp(json_string_value(json_object_get(ser, "method")), "files") ||
        !json_is_string(json_object_get(ser, "hash_type")) ||
        strcmp(json_string_value(json_object_get(ser, "hash_type")), "sha256")) {
        rc = cit_err_set(err, CIT_ENOTSUP,
                         "the statement's serialization is not method \"files\" with "
                         "hash_type \"sha256\" (the only one citadel reads)");
        goto out;
    }
    res = json_object_get(pred, "resources");
    if (!json_is_array(res) || json_array_size(res) == 0 || json_array_size(res) > BRD_MAX_FILES) {
        rc = cit_err_set(err, CIT_EFORMAT, "the statement's resources must be a list of files");
        goto out;
    }
    for (size_t i = 0; !rc && i < json_array_size(res); i++) {
        json_t *r = json_array_get(res, i);
        const char *name = json_string_value(json_object_get(r, "name"));
        const char *alg = json_string_value(json_object_get(r, "algorithm"));
        if (!name || !name[0] || !alg || strcmp(alg, "sha256")) {
            rc = cit_err_set(err, CIT_EFORMAT, "resource %zu needs a name and algorithm \"sha256\"",
                             i);
        } else if (name[0] == '/' || strstr(name, "..")) {
            rc = cit_err_set(err, CIT_EFORMAT, "resource '%s' points outside the model", name);
        } else if ((rc = add_name(&w, name)) == 0) {
            if (cit_hex_digest(json_string_value(json_object_get(r, "digest")),
                               m->v[m->n - 1].digest))
                rc = cit_err_set(err, CIT_EFORMAT, "resource '%s': the digest is not 64 hex digits",
                                 name);
            else if (i && strcmp(m->v[m->n - 2].name, name) >= 0)
                rc = cit_err_set(err, CIT_EFORMAT,
                                 "resource '%s' is out of order or repeated (they are sorted)",
                                 name);
        }
    }
    uint8_t root[32];
    if (!rc && (rc = root_digest(m, root)) == 0 && memcmp(root, m->root, 32))
        rc = cit_err_set(err, CIT_EFORMAT,
                         "the subject digest is not the digest of the resources: the "
                         "statement is inconsistent");
    if (rc == CIT_ENOMEM) cit_err_set(err, rc, "out of memory");
out:
    json_decref(j);
    if (rc) brd_manifest_free(m);
    return rc;
}
