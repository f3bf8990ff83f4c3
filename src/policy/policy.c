/*
 * The policy file and decisions (see include/citadel/policy.h and
 * docs/policy.md).
 *
 * libyaml loads the file into a node tree whose nodes carry their line, so
 * every error can name the line. The schema is checked strictly: an
 * unknown key is an error that lists the keys allowed there, because a
 * misspelt "clases" silently ignored is exactly the failure a policy
 * must not have.
 */
#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>
#include <yaml.h>

#include "citadel/policy.h"
#include "policy_int.h"

const char *pol_action_name(int action)
{
    switch (action) {
    case POL_LOCAL:
        return "local";
    case POL_REDACT:
        return "redact";
    case POL_FORWARD:
        return "forward";
    default:
        return "deny";
    }
}

/* ---- the YAML tree ---- */

struct yp {
    yaml_document_t doc;
    const char *name;
    struct cit_err *err;
};

static yaml_node_t *ynode(struct yp *y, int idx)
{
    return yaml_document_get_node(&y->doc, idx);
}

static int yfail(struct yp *y, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int yfail(struct yp *y, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return cit_err_set(y->err, CIT_EFORMAT, "%s:%d: %s", y->name,
                       n ? (int)n->start_mark.line + 1 : 1, msg);
}

static int is_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE;
}

static const char *sval(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* The value of key in mapping m, or NULL. */
static yaml_node_t *yget(struct yp *y, yaml_node_t *m, const char *key)
{
    if (!m || m->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = ynode(y, p->key);
        if (is_scalar(k) && !strcmp(sval(k), key)) return ynode(y, p->value);
    }
    return NULL;
}

/* Every key of m is one of allowed (NULL-terminated), and none twice. */
static int ykeys(struct yp *y, yaml_node_t *m, const char *what, const char *const *allowed)
{
    if (!m || m->type != YAML_MAPPING_NODE) return yfail(y, m, "%s must be a mapping", what);
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = ynode(y, p->key);
        int ok = 0;
        if (!is_scalar(k)) return yfail(y, k, "%s: keys must be plain names", what);
        for (const char *const *a = allowed; *a && !ok; a++) ok = !strcmp(*a, sval(k));
        if (!ok) {
            char list[256] = "";
            for (const char *const *a = allowed; *a; a++)
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                         a == allowed ? "" : ", ", *a);
            return yfail(y, k, "unknown key '%s' in %s; expected one of: %s", sval(k), what, list);
        }
        for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++)
            if (!strcmp(sval(ynode(y, q->key)), sval(k)))
                return yfail(y, k, "'%s' appears twice in %s", sval(k), what);
    }
    return 0;
}

/* A name: 1..cap-1 bytes of letters, digits, '_', '-', '.', ':', '/'. */
static int yname(struct yp *y, yaml_node_t *n, const char *what, char *dst, size_t cap)
{
    if (!is_scalar(n)) return yfail(y, n, "%s must be a name", what);
    size_t l = n->data.scalar.length;
    if (l == 0 || l >= cap) return yfail(y, n, "%s must be 1 to %zu characters", what, cap - 1);
    for (size_t i = 0; i < l; i++) {
        unsigned char c = (unsigned char)sval(n)[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("_-.:/", c)))
            return yfail(y, n, "%s '%s': use letters, digits and _ - . : / only", what, sval(n));
    }
    memcpy(dst, sval(n), l + 1);
    return 0;
}

static int yint(struct yp *y, yaml_node_t *n, const char *what, int64_t lo, int64_t hi,
                int64_t *out)
{
    char *end;
    if (!is_scalar(n)) return yfail(y, n, "%s must be a number", what);
    long long v = strtoll(sval(n), &end, 10);
    if (end == sval(n) || *end || v < lo || v > hi)
        return yfail(y, n, "%s must be a whole number from %lld to %lld, not '%s'", what,
                     (long long)lo, (long long)hi, sval(n));
    *out = v;
    return 0;
}

/* The class's index in the policy, -1 when unknown. */
static int pol_class_index(const struct pol_policy *p, const char *name)
{
    for (int i = 0; i < p->n_classes; i++)
        if (!strcmp(p->classes[i], name)) return i;
    return -1;
}

static int yclass(struct yp *y, const struct pol_policy *p, yaml_node_t *n, const char *what,
                  int *out)
{
    if (!is_scalar(n)) return yfail(y, n, "%s must be a class name", what);
    int k = pol_class_index(p, sval(n));
    if (k < 0)
        return yfail(y, n, "%s: '%s' is not one of the classes listed under 'classes'", what,
                     sval(n));
    *out = k;
    return 0;
}

/* A class name or a list of them, as a mask. */
static int yclass_set(struct yp *y, const struct pol_policy *p, yaml_node_t *n, const char *what,
                      uint32_t *mask)
{
    int k;
    *mask = 0;
    if (is_scalar(n)) {
        if (yclass(y, p, n, what, &k)) return CIT_EFORMAT;
        *mask = 1u << k;
        return 0;
    }
    if (!n || n->type != YAML_SEQUENCE_NODE)
        return yfail(y, n, "%s must be a list of classes", what);
    for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++) {
        if (yclass(y, p, ynode(y, *i), what, &k)) return CIT_EFORMAT;
        *mask |= 1u << k;
    }
    return 0;
}

static int seq_len(const yaml_node_t *n)
{
    return (int)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static int map_len(const yaml_node_t *n)
{
    return (int)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

int pol_tenant_index(const struct pol_policy *p, const char *name)
{
    for (int i = 0; i < p->n_tenants; i++)
        if (!strcmp(p->tenants[i].name, name)) return i;
    return -1;
}

static int has(const int *v, int n, int x)
{
    for (int i = 0; i < n; i++)
        if (v[i] == x) return 1;
    return 0;
}

static int target_index(const struct pol_target *v, int n, const char *id)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(v[i].id, id)) return i;
    return -1;
}

int pol_peer_index(const struct pol_policy *p, const char *id)
{
    return target_index(p->peers, p->n_peers, id);
}

/* ---- sections ---- */

static int parse_classes(struct yp *y, struct pol_policy *p, yaml_node_t *n)
{
    if (!n || n->type != YAML_SEQUENCE_NODE || seq_len(n) == 0)
        return yfail(y, n, "'classes' must list the data classes, least sensitive first");
    if (seq_len(n) > POL_MAX_CLASSES) return yfail(y, n, "at most %d classes", POL_MAX_CLASSES);
    for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++) {
        yaml_node_t *c = ynode(y, *i);
        char name[POL_MAX_NAME];
        if (yname(y, c, "a class", name, sizeof(name))) return CIT_EFORMAT;
        if (!strcmp(name, "ignore"))
            return yfail(y, c, "'ignore' is reserved; pick another class name");
        if (pol_class_index(p, name) >= 0) return yfail(y, c, "class '%s' is listed twice", name);
        memcpy(p->classes[p->n_classes++], name, sizeof(name));
    }
    return 0;
}

static int parse_detectors(struct yp *y, struct pol_policy *p, yaml_node_t *n)
{
    /* unlisted detectors count as the most sensitive class: fail closed */
    for (int d = 0; d < DET_CLASS_COUNT; d++) {
        p->det_class[d] = p->n_classes - 1;
        p->det_min_conf[d] = 0;
    }
    if (!n) return 0;
    if (n->type != YAML_MAPPING_NODE)
        return yfail(y, n, "'detectors' must map detectors to classes");
    for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < n->data.mapping.pairs.top; q++) {
        yaml_node_t *k = ynode(y, q->key), *v = ynode(y, q->value);
        int d = is_scalar(k) ? det_class_from_name(sval(k)) : -1;
        if (d < 0 || d == DET_KEYWORD) {
            char list[400] = "";
            for (int i = 0; i < DET_KEYWORD; i++)
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
                         det_class_name(i));
            return yfail(y, k,
                         "unknown detector '%s'; detectors are: %s (keywords go under 'keywords')",
                         is_scalar(k) ? sval(k) : "?", list);
        }
        yaml_node_t *cls = v;
        if (v && v->type == YAML_MAPPING_NODE) {
            static const char *const keys[] = {"class", "min_confidence", NULL};
            if (ykeys(y, v, "a detector", keys)) return CIT_EFORMAT;
            cls = yget(y, v, "class");
            yaml_node_t *mc = yget(y, v, "min_confidence");
            if (mc) {
                char *end;
                double c = is_scalar(mc) ? strtod(sval(mc), &end) : -1;
                if (!is_scalar(mc) || end == sval(mc) || *end || !(c >= 0 && c <= 1))
                    return yfail(y, mc, "min_confidence must be a number from 0 to 1");
                p->det_min_conf[d] = (float)c;
            }
        }
        if (is_scalar(cls) && !strcmp(sval(cls), "ignore")) {
            p->det_class[d] = -1;
        } else if (yclass(y, p, cls, "a detector's class (or 'ignore')", &p->det_class[d])) {
            return CIT_EFORMAT;
        }
    }
    return 0;
}

static int parse_keywords(struct yp *y, struct pol_policy *p, yaml_node_t *n)
{
    if (!n) return 0;
    if (n->type != YAML_SEQUENCE_NODE || seq_len(n) > POL_MAX_ITEMS)
        return yfail(y, n, "'keywords' must be a list of {word, class, exact} (at most %d)",
                     POL_MAX_ITEMS);
    int cnt = seq_len(n);
    p->keywords = cit_calloc((size_t)cnt + 1, sizeof(*p->keywords));
    p->keyword_class = cit_calloc((size_t)cnt + 1, sizeof(int));
    if (!p->keywords || !p->keyword_class) return CIT_ENOMEM;
    for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++) {
        static const char *const keys[] = {"word", "class", "exact", NULL};
        yaml_node_t *e = ynode(y, *i), *w, *x;
        if (ykeys(y, e, "a keyword", keys)) return CIT_EFORMAT;
        w = yget(y, e, "word");
        if (!is_scalar(w) || w->data.scalar.length == 0 ||
            w->data.scalar.length > DET_MAX_KEYWORD_LEN)
            return yfail(y, e, "a keyword needs 'word': 1 to %d bytes", DET_MAX_KEYWORD_LEN);
        int k = p->n_keywords;
        if (yclass(y, p, yget(y, e, "class"), "a keyword's class", &p->keyword_class[k]))
            return CIT_EFORMAT;
        x = yget(y, e, "exact");
        if (x && !(is_scalar(x) && (!strcmp(sval(x), "true") || !strcmp(sval(x), "false"))))
            return yfail(y, x, "'exact' is true or false");
        p->keywords[k].exact_case = x && !strcmp(sval(x), "true");
        p->keywords[k].word = cit_strndup(sval(w), w->data.scalar.length);
        if (!p->keywords[k].word) return CIT_ENOMEM;
        p->n_keywords++;
    }
    return 0;
}

static int parse_tenants(struct yp *y, struct pol_policy *p, yaml_node_t *n)
{
    if (!n || n->type != YAML_MAPPING_NODE || map_len(n) == 0 || map_len(n) > POL_MAX_ITEMS)
        return yfail(y, n, "'tenants' must map each tenant's name to its quota (1 to %d tenants)",
                     POL_MAX_ITEMS);
    p->tenants = cit_calloc((size_t)map_len(n), sizeof(*p->tenants));
    if (!p->tenants) return CIT_ENOMEM;
    for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < n->data.mapping.pairs.top; q++) {
        static const char *const keys[] = {"requests_per_minute", "tokens_per_day", "concurrent",
                                           NULL};
        struct pol_tenant *t = &p->tenants[p->n_tenants];
        yaml_node_t *v = ynode(y, q->value), *f;
        if (yname(y, ynode(y, q->key), "a tenant's name", t->name, sizeof(t->name)))
            return CIT_EFORMAT;
        if (pol_tenant_index(p, t->name) >= 0)
            return yfail(y, ynode(y, q->key), "tenant '%s' is listed twice", t->name);
        if (v && is_scalar(v) && v->data.scalar.length == 0) v = NULL; /* "name:" alone: no quota */
        if (v) {
            if (ykeys(y, v, "a tenant", keys)) return CIT_EFORMAT;
            if ((f = yget(y, v, "requests_per_minute")) &&
                yint(y, f, "requests_per_minute", 0, 1000000000, &t->quota.requests_per_minute))
                return CIT_EFORMAT;
            if ((f = yget(y, v, "tokens_per_day")) &&
                yint(y, f, "tokens_per_day", 0, INT64_C(1) << 50, &t->quota.tokens_per_day))
                return CIT_EFORMAT;
            if ((f = yget(y, v, "concurrent")) &&
                yint(y, f, "concurrent", 0, 100000, &t->quota.concurrent))
                return CIT_EFORMAT;
        }
        p->n_tenants++;
    }
    return 0;
}

/* A path in the policy: as given when absolute, else from the policy's folder. */
static int ypath(struct yp *y, yaml_node_t *n, const char *what, char *dst, size_t cap)
{
    const char *slash = strrchr(y->name, '/');
    int dl = slash ? (int)(slash - y->name) : 0;
    if (!is_scalar(n) || !n->data.scalar.length) return yfail(y, n, "%s must be a path", what);
    if (sval(n)[0] == '/' || !slash) {
        if (n->data.scalar.length >= cap) return yfail(y, n, "%s is too long", what);
        memcpy(dst, sval(n), n->data.scalar.length + 1);
    } else if ((size_t)snprintf(dst, cap, "%.*s/%s", dl, y->name, sval(n)) >= cap) {
        return yfail(y, n, "%s is too long", what);
    }
    return 0;
}

/* 1 when url's host is a loopback name or address. */
static int loopback_url(const char *url)
{
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    return !strncmp(h, "127.", 4) || !strncmp(h, "localhost:", 10) || !strcmp(h, "localhost") ||
           !strncmp(h, "localhost/", 10) || !strncmp(h, "[::1]", 5);
}

/* A peer's link: kind, url and how to trust it (docs/gateway.md). */
static int parse_peer(struct yp *y, yaml_node_t *e, struct pol_target *t)
{
    yaml_node_t *f = yget(y, e, "kind");
    int64_t v;
    t->kind = POL_PEER_CITADEL;
    if (f) {
        if (is_scalar(f) && !strcmp(sval(f), "citadel"))
            t->kind = POL_PEER_CITADEL;
        else if (is_scalar(f) && !strcmp(sval(f), "openai"))
            t->kind = POL_PEER_OPENAI;
        else
            return yfail(y, f, "peer '%s': kind is citadel or openai", t->id);
    }
    f = yget(y, e, "url");
    if (!is_scalar(f) || f->data.scalar.length >= sizeof(t->url) ||
        (strncmp(sval(f), "https://", 8) &&
         (t->kind != POL_PEER_OPENAI || strncmp(sval(f), "http://", 7) || !loopback_url(sval(f)))))
        return yfail(y, f ? f : e,
                     "peer '%s' needs a 'url' starting with https:// (plain http:// only for an "
                     "openai peer on this machine's loopback)",
                     t->id);
    memcpy(t->url, sval(f), f->data.scalar.length + 1);
    while (strlen(t->url) > 8 && t->url[strlen(t->url) - 1] == '/') t->url[strlen(t->url) - 1] = 0;
    f = yget(y, e, "identity");
    if (t->kind == POL_PEER_CITADEL) {
        if (!is_scalar(f) || !f->data.scalar.length || f->data.scalar.length >= sizeof(t->identity))
            return yfail(y, f ? f : e,
                         "peer '%s' (kind citadel) needs its 'identity': the line of its "
                         "node.vkey (citadel peer identity prints it)",
                         t->id);
        memcpy(t->identity, sval(f), f->data.scalar.length + 1);
    } else if (f) {
        return yfail(y, f,
                     "peer '%s': 'identity' goes with kind citadel; an openai peer is "
                     "trusted by its TLS certificate ('ca')",
                     t->id);
    }
    if ((f = yget(y, e, "witness_key"))) {
        if (t->kind != POL_PEER_CITADEL)
            return yfail(y, f, "peer '%s': 'witness_key' goes with kind citadel", t->id);
        if (!is_scalar(f) || !f->data.scalar.length ||
            f->data.scalar.length >= sizeof(t->witness_key))
            return yfail(y, f,
                         "peer '%s': 'witness_key' is the line of its witness.vkey (citadel "
                         "peer identity --witness prints it)",
                         t->id);
        memcpy(t->witness_key, sval(f), f->data.scalar.length + 1);
    }
    if ((f = yget(y, e, "ca")) && ypath(y, f, "a peer's 'ca'", t->ca, sizeof(t->ca)))
        return CIT_EFORMAT;
    if ((f = yget(y, e, "api_key_file"))) {
        if (t->kind != POL_PEER_OPENAI)
            return yfail(y, f, "peer '%s': 'api_key_file' goes with kind openai", t->id);
        if (ypath(y, f, "a peer's 'api_key_file'", t->api_key_file, sizeof(t->api_key_file)))
            return CIT_EFORMAT;
    }
    if ((f = yget(y, e, "model")) && yname(y, f, "a peer's 'model'", t->model, sizeof(t->model)))
        return CIT_EFORMAT;
    t->timeout_s = 120;
    t->connect_timeout_s = 5;
    if ((f = yget(y, e, "timeout_s"))) {
        if (yint(y, f, "timeout_s", 1, 86400, &v)) return CIT_EFORMAT;
        t->timeout_s = (int)v;
    }
    if ((f = yget(y, e, "connect_timeout_s"))) {
        if (yint(y, f, "connect_timeout_s", 1, 600, &v)) return CIT_EFORMAT;
        t->connect_timeout_s = (int)v;
    }
    return 0;
}

static int parse_targets(struct yp *y, struct pol_policy *p, yaml_node_t *n, int peers)
{
    const char *what = peers ? "peers" : "models";
    if (!n) {
        if (peers) return 0;
        return yfail(y, NULL,
                     "the policy needs 'models': the models this node serves and the "
                     "classes each may see");
    }
    if (n->type != YAML_MAPPING_NODE || map_len(n) > POL_MAX_ITEMS)
        return yfail(y, n, "'%s' must map ids to {jurisdiction, classes%s}", what,
                     peers ? ", url" : "");
    struct pol_target *v = cit_calloc((size_t)map_len(n) + 1, sizeof(*v));
    if (!v) return CIT_ENOMEM;
    if (peers)
        p->peers = v;
    else
        p->models = v;
    int *count = peers ? &p->n_peers : &p->n_models;
    for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < n->data.mapping.pairs.top; q++) {
        static const char *const mkeys[] = {"jurisdiction", "classes", NULL};
        static const char *const pkeys[] = {"jurisdiction", "classes",
                                            "kind",         "url",
                                            "identity",     "ca",
                                            "api_key_file", "model",
                                            "timeout_s",    "connect_timeout_s",
                                            "witness_key",  NULL};
        struct pol_target *t = &v[*count];
        yaml_node_t *e = ynode(y, q->value), *f;
        if (yname(y, ynode(y, q->key), peers ? "a peer's id" : "a model's id", t->id,
                  sizeof(t->id)))
            return CIT_EFORMAT;
        if (target_index(v, *count, t->id) >= 0)
            return yfail(y, ynode(y, q->key), "'%s' is listed twice under %s", t->id, what);
        if (ykeys(y, e, peers ? "a peer" : "a model", peers ? pkeys : mkeys)) return CIT_EFORMAT;
        f = yget(y, e, "jurisdiction");
        if (!f)
            return yfail(y, e, "%s '%s' needs a 'jurisdiction'", peers ? "peer" : "model", t->id);
        if (yname(y, f, "a jurisdiction", t->jurisdiction, sizeof(t->jurisdiction)))
            return CIT_EFORMAT;
        f = yget(y, e, "classes");
        if (!f)
            return yfail(y, e, "%s '%s' needs 'classes': the data classes it may see",
                         peers ? "peer" : "model", t->id);
        if (yclass_set(y, p, f, "classes", &t->classes)) return CIT_EFORMAT;
        if (peers && parse_peer(y, e, t)) return CIT_EFORMAT;
        (*count)++;
    }
    return 0;
}

/* A name or a list of names from names (models or tenants), as indices. */
static int ynames(struct yp *y, yaml_node_t *n, const char *what,
                  int (*lookup)(const struct pol_policy *, const char *),
                  const struct pol_policy *p, int **out, int *n_out)
{
    int cnt = is_scalar(n) ? 1 : (n && n->type == YAML_SEQUENCE_NODE ? seq_len(n) : -1);
    if (cnt < 1 || cnt > POL_MAX_ITEMS)
        return yfail(y, n, "%s must be a name or a list of names", what);
    *out = cit_calloc((size_t)cnt, sizeof(int));
    if (!*out) return CIT_ENOMEM;
    for (int i = 0; i < cnt; i++) {
        yaml_node_t *e = is_scalar(n) ? n : ynode(y, n->data.sequence.items.start[i]);
        int k = is_scalar(e) ? lookup(p, sval(e)) : -1;
        if (k < 0)
            return yfail(y, e, "%s: '%s' is not defined in the policy", what,
                         is_scalar(e) ? sval(e) : "?");
        (*out)[(*n_out)++] = k;
    }
    return 0;
}

static int model_lookup(const struct pol_policy *p, const char *id)
{
    return target_index(p->models, p->n_models, id);
}

static int parse_rules(struct yp *y, struct pol_policy *p, yaml_node_t *n)
{
    if (!n || n->type != YAML_SEQUENCE_NODE || seq_len(n) == 0 || seq_len(n) > POL_MAX_ITEMS)
        return yfail(y, n, "'rules' must be a list of rules (1 to %d), tried in order",
                     POL_MAX_ITEMS);
    p->rules = cit_calloc((size_t)seq_len(n), sizeof(*p->rules));
    if (!p->rules) return CIT_ENOMEM;
    for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++) {
        static const char *const keys[] = {"id",     "when",    "action", "peer",
                                           "reason", "restore", NULL};
        static const char *const wkeys[] = {"tenant",         "model",         "classes_any",
                                            "class_at_least", "class_at_most", NULL};
        yaml_node_t *e = ynode(y, *i), *w, *f;
        struct pol_rule *r = &p->rules[p->n_rules];
        r->at_least = r->at_most = -1;
        r->peer = -1;
        r->line = e ? (int)e->start_mark.line + 1 : 0;
        if (ykeys(y, e, "a rule", keys)) return CIT_EFORMAT;
        if (yname(y, yget(y, e, "id"), "a rule's 'id'", r->id, sizeof(r->id))) return CIT_EFORMAT;
        for (int k = 0; k < p->n_rules; k++)
            if (!strcmp(p->rules[k].id, r->id))
                return yfail(y, e, "rule id '%s' is used twice", r->id);
        p->n_rules++; /* from here on pol_free sees it */
        f = yget(y, e, "action");
        if (!is_scalar(f))
            return yfail(y, e, "rule '%s' needs an 'action': local, redact, forward or deny",
                         r->id);
        if (!strcmp(sval(f), "local"))
            r->action = POL_LOCAL;
        else if (!strcmp(sval(f), "redact"))
            r->action = POL_REDACT;
        else if (!strcmp(sval(f), "forward"))
            r->action = POL_FORWARD;
        else if (!strcmp(sval(f), "deny"))
            r->action = POL_DENY;
        else
            return yfail(y, f, "rule '%s': action '%s' is not local, redact, forward or deny",
                         r->id, sval(f));
        f = yget(y, e, "peer");
        if (r->action == POL_FORWARD) {
            int cnt = is_scalar(f) ? 1 : (f && f->type == YAML_SEQUENCE_NODE ? seq_len(f) : 0);
            if (cnt < 1 || cnt > POL_MAX_FORWARD)
                return yfail(y, f ? f : e,
                             "rule '%s' forwards: name the 'peer', or a list of up to %d peers to "
                             "try in order",
                             r->id, POL_MAX_FORWARD);
            for (int k = 0; k < cnt; k++) {
                yaml_node_t *g = is_scalar(f) ? f : ynode(y, f->data.sequence.items.start[k]);
                int x = is_scalar(g) ? target_index(p->peers, p->n_peers, sval(g)) : -1;
                if (x < 0)
                    return yfail(y, g, "rule '%s': peer '%s' is not under 'peers'", r->id,
                                 is_scalar(g) ? sval(g) : "?");
                if (has(r->fwd, r->n_fwd, x))
                    return yfail(y, g, "rule '%s': peer '%s' is named twice", r->id, sval(g));
                r->fwd[r->n_fwd++] = x;
            }
            r->peer = r->fwd[0];
        } else if (f) {
            return yfail(y, f, "rule '%s': 'peer' goes with action forward only", r->id);
        }
        f = yget(y, e, "restore");
        if (f) {
            if (r->action != POL_REDACT)
                return yfail(y, f, "rule '%s': 'restore' goes with action redact only", r->id);
            if (!is_scalar(f) || (strcmp(sval(f), "true") && strcmp(sval(f), "false")))
                return yfail(y, f, "rule '%s': 'restore' is true or false", r->id);
            r->restore = !strcmp(sval(f), "true");
        }
        f = yget(y, e, "reason");
        if (f && (!is_scalar(f) || f->data.scalar.length >= sizeof(r->reason)))
            return yfail(y, f, "a rule's 'reason' is text of at most %zu bytes",
                         sizeof(r->reason) - 1);
        if (f) memcpy(r->reason, sval(f), f->data.scalar.length + 1);
        w = yget(y, e, "when");
        if (w) {
            if (ykeys(y, w, "a rule's 'when'", wkeys)) return CIT_EFORMAT;
            if ((f = yget(y, w, "tenant")) &&
                ynames(y, f, "when.tenant", pol_tenant_index, p, &r->tenants, &r->n_tenants))
                return CIT_EFORMAT;
            if ((f = yget(y, w, "model")) &&
                ynames(y, f, "when.model", model_lookup, p, &r->models, &r->n_models))
                return CIT_EFORMAT;
            if ((f = yget(y, w, "classes_any")) && yclass_set(y, p, f, "when.classes_any", &r->any))
                return CIT_EFORMAT;
            if ((f = yget(y, w, "class_at_least")) &&
                yclass(y, p, f, "when.class_at_least", &r->at_least))
                return CIT_EFORMAT;
            if ((f = yget(y, w, "class_at_most")) &&
                yclass(y, p, f, "when.class_at_most", &r->at_most))
                return CIT_EFORMAT;
        }
        /* a rule after one that matches everything can never apply */
        for (int k = 0; k + 1 < p->n_rules; k++) {
            const struct pol_rule *o = &p->rules[k];
            if (!o->n_tenants && !o->n_models && !o->any && o->at_least < 0 && o->at_most < 0)
                return yfail(y, e,
                             "rule '%s' can never apply: rule '%s' (line %d) before it matches "
                             "every request; move it up or narrow rule '%s'",
                             r->id, o->id, o->line, o->id);
        }
    }
    return 0;
}

/* output: {action: off|redact|deny, class_at_least, hold_back} */
static int parse_output(struct yp *y, struct pol_policy *p, yaml_node_t *n)
{
    static const char *const keys[] = {"action", "class_at_least", "hold_back", NULL};
    yaml_node_t *f;
    int64_t hold = 64;
    p->out_action = POL_LOCAL;
    p->out_at_least = 0;
    if (n) {
        if (ykeys(y, n, "output", keys)) return CIT_EFORMAT;
        f = yget(y, n, "action");
        if (!is_scalar(f)) return yfail(y, n, "output needs an 'action': off, redact or deny");
        if (!strcmp(sval(f), "redact"))
            p->out_action = POL_REDACT;
        else if (!strcmp(sval(f), "deny"))
            p->out_action = POL_DENY;
        else if (strcmp(sval(f), "off"))
            return yfail(y, f, "output.action '%s' is not off, redact or deny", sval(f));
        if ((f = yget(y, n, "class_at_least")) &&
            yclass(y, p, f, "output.class_at_least", &p->out_at_least))
            return CIT_EFORMAT;
        if ((f = yget(y, n, "hold_back")) &&
            yint(y, f, "output.hold_back", DET_MIN_HOLD, 65536, &hold))
            return CIT_EFORMAT;
    }
    /* a keyword phrase must fit in the window to be caught whole */
    p->out_hold = (size_t)hold;
    for (int k = 0; k < p->n_keywords; k++)
        if (strlen(p->keywords[k].word) + 1 > p->out_hold)
            p->out_hold = strlen(p->keywords[k].word) + 1;
    return 0;
}

/* A list of short codes (jurisdictions): letters, digits, '-', or "*". */
static int yplaces(struct yp *y, yaml_node_t *n, const char *what, char (**out)[16], int *count)
{
    if (!n || n->type != YAML_SEQUENCE_NODE || seq_len(n) == 0 || seq_len(n) > POL_MAX_ITEMS)
        return yfail(y, n, "%s must be a list of jurisdictions (ISO 3166 codes, EU, or \"*\")",
                     what);
    if (!(*out = cit_calloc((size_t)seq_len(n), sizeof(**out)))) return CIT_ENOMEM;
    for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++) {
        yaml_node_t *e = ynode(y, *i);
        if (!is_scalar(e) || e->data.scalar.length == 0 || e->data.scalar.length >= 16)
            return yfail(y, e, "%s: each entry is a code of 1 to 15 characters", what);
        for (const char *c = sval(e); *c; c++)
            if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || *c == '-' ||
                  (*c >= '0' && *c <= '9') || (*c == '*' && e->data.scalar.length == 1)))
                return yfail(y, e, "%s: '%s' is not a jurisdiction code", what, sval(e));
        memcpy((*out)[(*count)++], sval(e), e->data.scalar.length + 1);
    }
    return 0;
}

/* admission: {licenses, dataset_jurisdictions, signer_jurisdictions,
 * expires_after_days, unvetted: deny|allow, templates: [{sha256, format}]} */
static int parse_admission(struct yp *y, struct pol_policy *p, yaml_node_t *n)
{
    static const char *const keys[] = {"licenses",
                                       "dataset_jurisdictions",
                                       "signer_jurisdictions",
                                       "expires_after_days",
                                       "unvetted",
                                       "templates",
                                       NULL};
    static const char *const pinkeys[] = {"sha256", "format", NULL};
    struct pol_admission *a = &p->adm;
    yaml_node_t *f;
    if (!n) return 0;
    if (ykeys(y, n, "admission", keys)) return CIT_EFORMAT;
    a->present = 1;
    f = yget(y, n, "licenses");
    if (!f || f->type != YAML_SEQUENCE_NODE || seq_len(f) == 0 || seq_len(f) > POL_MAX_ITEMS)
        return yfail(y, f ? f : n, "admission.licenses must be a list of SPDX license ids");
    if (!(a->licenses = cit_calloc((size_t)seq_len(f), sizeof(*a->licenses)))) return CIT_ENOMEM;
    for (yaml_node_item_t *i = f->data.sequence.items.start; i < f->data.sequence.items.top; i++) {
        yaml_node_t *e = ynode(y, *i);
        if (!is_scalar(e) || e->data.scalar.length == 0 || e->data.scalar.length >= POL_MAX_NAME)
            return yfail(y, e, "admission.licenses: each entry is an SPDX id such as Apache-2.0");
        for (const char *c = sval(e); *c; c++)
            if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
                  (*c >= '0' && *c <= '9') || strchr("-.+", *c)))
                return yfail(y, e, "admission.licenses: '%s' is not an SPDX license id", sval(e));
        memcpy(a->licenses[a->n_licenses++], sval(e), e->data.scalar.length + 1);
    }
    if (!(f = yget(y, n, "dataset_jurisdictions")))
        return yfail(y, n,
                     "admission needs 'dataset_jurisdictions': where training data may come "
                     "from (for example [DE, EU], or [\"*\"] for anywhere)");
    if (yplaces(y, f, "admission.dataset_jurisdictions", &a->data_places, &a->n_data_places))
        return CIT_EFORMAT;
    if ((f = yget(y, n, "signer_jurisdictions")) &&
        yplaces(y, f, "admission.signer_jurisdictions", &a->signer_places, &a->n_signer_places))
        return CIT_EFORMAT;
    if ((f = yget(y, n, "expires_after_days")) &&
        yint(y, f, "admission.expires_after_days", 0, 36500, &a->expires_days))
        return CIT_EFORMAT;
    if ((f = yget(y, n, "unvetted"))) {
        if (!is_scalar(f) || (strcmp(sval(f), "deny") && strcmp(sval(f), "allow")))
            return yfail(y, f, "admission.unvetted must be deny or allow");
        a->unvetted = !strcmp(sval(f), "allow");
    }
    if ((f = yget(y, n, "templates"))) {
        if (f->type != YAML_SEQUENCE_NODE || seq_len(f) > POL_MAX_ITEMS)
            return yfail(y, f, "admission.templates must be a list of {sha256, format}");
        if (!(a->pins = cit_calloc((size_t)seq_len(f) + 1, sizeof(*a->pins)))) return CIT_ENOMEM;
        for (yaml_node_item_t *i = f->data.sequence.items.start; i < f->data.sequence.items.top;
             i++) {
            yaml_node_t *e = ynode(y, *i), *h, *fmt;
            struct pol_pin *pin = &a->pins[a->n_pins];
            if (ykeys(y, e, "admission.templates entry", pinkeys)) return CIT_EFORMAT;
            h = yget(y, e, "sha256");
            fmt = yget(y, e, "format");
            if (!is_scalar(h) || cit_hex_digest(sval(h), pin->sha256))
                return yfail(y, h ? h : e,
                             "admission.templates: sha256 must be 64 hex digits (the SHA-256 "
                             "of the template text; citadel model admit prints it)");
            if (yname(y, fmt, "admission.templates format", pin->format, sizeof(pin->format)))
                return CIT_EFORMAT;
            a->n_pins++;
        }
    }
    return 0;
}

int pol_license_allowed(const struct pol_policy *p, const char *spdx)
{
    for (int i = 0; i < p->adm.n_licenses; i++)
        if (!strcasecmp(p->adm.licenses[i], spdx)) return 1;
    return 0;
}

int pol_place_allowed(const char (*list)[16], int n, const char *place)
{
    /* the 27 member states, ISO 3166-1 alpha-2 (Greece is GR here, not EL) */
    static const char eu[] = "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT "
                             "RO SK SI ES SE";
    int member = strlen(place) == 2 && !strchr(place, ' ');
    if (member) {
        char up[3] = {(char)toupper((unsigned char)place[0]),
                      (char)toupper((unsigned char)place[1]), 0};
        member = strstr(eu, up) != NULL && (strstr(eu, up) - eu) % 3 == 0;
    }
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i], "*") || !strcasecmp(list[i], place) ||
            (member && !strcasecmp(list[i], "EU")))
            return 1;
    return 0;
}

/* A scalar of text into dst (cap bytes with its NUL): no NUL inside (a
 * quoted "\0" would cut it short where it is used). */
static int ytext(struct yp *y, yaml_node_t *n, const char *what, char *dst, size_t cap)
{
    if (!is_scalar(n)) return yfail(y, n, "%s must be text", what);
    size_t l = n->data.scalar.length;
    if (l >= cap) return yfail(y, n, "%s is %zu bytes; at most %zu", what, l, cap - 1);
    if (memchr(sval(n), 0, l)) return yfail(y, n, "%s holds a NUL byte", what);
    memcpy(dst, sval(n), l + 1);
    return 0;
}

/* The same, 1 to max bytes, into a copy the policy owns. */
static int ytext_dup(struct yp *y, yaml_node_t *n, const char *what, size_t max, char **out)
{
    if (!is_scalar(n) || !n->data.scalar.length)
        return yfail(y, n, "%s must be text (leave the key out for none)", what);
    size_t l = n->data.scalar.length;
    if (l > max) return yfail(y, n, "%s is %zu bytes; at most %zu", what, l, max);
    if (memchr(sval(n), 0, l)) return yfail(y, n, "%s holds a NUL byte", what);
    if (!(*out = cit_strndup(sval(n), l))) return CIT_ENOMEM;
    return 0;
}

static int ybool(struct yp *y, yaml_node_t *n, const char *what, int *out)
{
    if (!is_scalar(n) || (strcmp(sval(n), "true") && strcmp(sval(n), "false")))
        return yfail(y, n, "%s is true or false", what);
    *out = !strcmp(sval(n), "true");
    return 0;
}

/* lockdown: required | best-effort */
static int parse_lockdown(struct yp *y, struct pol_policy *p, yaml_node_t *n)
{
    p->lockdown = POL_LOCKDOWN_REQUIRED;
    if (!n) return 0;
    if (is_scalar(n) && !strcmp(sval(n), "required")) return 0;
    if (is_scalar(n) && !strcmp(sval(n), "best-effort")) {
        p->lockdown = POL_LOCKDOWN_BEST_EFFORT;
        return 0;
    }
    return yfail(y, n,
                 "lockdown is required (refuse to start without the kernel's restrictions) or "
                 "best-effort (start, and record what is missing), not '%s'",
                 is_scalar(n) ? sval(n) : "?");
}

/* site: {grid_operator, country, low_carbon_share, onsite_generation, notes} */
static int parse_site(struct yp *y, struct pol_policy *p, yaml_node_t *n)
{
    static const char *const keys[] = {"grid_operator",     "country", "low_carbon_share",
                                       "onsite_generation", "notes",   NULL};
    struct pol_site *s = &p->site;
    yaml_node_t *f;
    s->low_carbon_share = -1;
    if (!n) return 0;
    if (ykeys(y, n, "site", keys)) return CIT_EFORMAT;
    s->present = 1;
    if ((f = yget(y, n, "grid_operator")) &&
        ytext(y, f, "site.grid_operator", s->grid_operator, sizeof(s->grid_operator)))
        return CIT_EFORMAT;
    if ((f = yget(y, n, "country"))) {
        const char *c = is_scalar(f) ? sval(f) : "";
        if (!is_scalar(f) || f->data.scalar.length != 2 || !isalpha((unsigned char)c[0]) ||
            !isalpha((unsigned char)c[1]))
            return yfail(y, f,
                         "site.country is an ISO 3166-1 alpha-2 code such as DE or JP, not '%s'", c);
        s->country[0] = (char)toupper((unsigned char)c[0]);
        s->country[1] = (char)toupper((unsigned char)c[1]);
        s->country[2] = 0;
    }
    if ((f = yget(y, n, "low_carbon_share"))) {
        char *end = NULL;
        double v = is_scalar(f) ? strtod(sval(f), &end) : -1;
        int pct = end && *end == '%' && !end[1];
        if (pct) v /= 100;
        if (!is_scalar(f) || end == sval(f) || (*end && !pct) || !(v >= 0 && v <= 1))
            return yfail(y, f,
                         "site.low_carbon_share is a share from 0 to 1 (0.62) or a percentage "
                         "(62%%), not '%s'",
                         is_scalar(f) ? sval(f) : "?");
        s->low_carbon_share = v;
    }
    if ((f = yget(y, n, "onsite_generation")) &&
        ytext(y, f, "site.onsite_generation", s->onsite_generation, sizeof(s->onsite_generation)))
        return CIT_EFORMAT;
    if ((f = yget(y, n, "notes")) && ytext(y, f, "site.notes", s->notes, sizeof(s->notes)))
        return CIT_EFORMAT;
    return 0;
}

/* A BCP 47 tag, checked simply: a primary language subtag of 2 or 3
 * letters, then subtags of 1 to 8 letters or digits after '-' (de, en-GB,
 * ja-JP, zh-Hant-TW). Registry lookups are left out on purpose. */
static int bcp47_ok(const char *s, size_t len)
{
    size_t i = 0, run = 0;
    while (i < len && isalpha((unsigned char)s[i])) i++;
    if (i < 2 || i > 3) return 0;
    for (; i < len; i++) {
        if (s[i] == '-') {
            if (i + 1 == len || s[i + 1] == '-') return 0;
            run = 0;
        } else if (isalnum((unsigned char)s[i]) && ++run <= 8) {
            continue;
        } else {
            return 0;
        }
    }
    return 1;
}

static int profile_languages(struct yp *y, struct pol_profile *pf, yaml_node_t *n)
{
    if (n->type != YAML_SEQUENCE_NODE || seq_len(n) == 0 || seq_len(n) > 64)
        return yfail(y, n, "profile.languages must be a list of BCP 47 tags, such as [de, en]");
    if (!(pf->languages = cit_calloc((size_t)seq_len(n), sizeof(*pf->languages))))
        return CIT_ENOMEM;
    for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++) {
        yaml_node_t *e = ynode(y, *i);
        if (!is_scalar(e) || e->data.scalar.length >= POL_MAX_LANG ||
            !bcp47_ok(sval(e), e->data.scalar.length))
            return yfail(y, e,
                         "profile.languages: '%s' is not a BCP 47 tag (a 2 or 3 letter language, "
                         "then optional -subtags: de, en-GB, ja-JP)",
                         is_scalar(e) ? sval(e) : "?");
        for (int k = 0; k < pf->n_languages; k++)
            if (!strcasecmp(pf->languages[k], sval(e)))
                return yfail(y, e, "profile.languages: '%s' is listed twice", sval(e));
        memcpy(pf->languages[pf->n_languages++], sval(e), e->data.scalar.length + 1);
    }
    return 0;
}

/* The profile file's document (y: named after the profile's file). */
static int profile_doc(struct yp *y, struct pol_policy *p, const char *policy_name)
{
    static const char *const top[] = {"profile", NULL};
    static const char *const keys[] = {"id",        "name",   "jurisdictions", "languages",
                                       "guardrail", "notice", "output",        NULL};
    static const char *const okeys[] = {"append_notice", "max_tokens", NULL};
    struct pol_profile *pf = &p->profile;
    yaml_node_t *root = yaml_document_get_root_node(&y->doc), *n, *f;
    int64_t v;
    if (!root) return yfail(y, NULL, "the profile file is empty; it needs 'profile:'");
    if (ykeys(y, root, "the profile file", top)) return CIT_EFORMAT;
    if (!(n = yget(y, root, "profile")))
        return yfail(y, root, "the profile file needs 'profile:' with its id and jurisdictions");
    if (ykeys(y, n, "profile", keys)) return CIT_EFORMAT;
    if (!(f = yget(y, n, "id")))
        return yfail(y, n, "profile needs an 'id' (the Citadel-Profile header says it)");
    if (yname(y, f, "profile.id", pf->id, sizeof(pf->id))) return CIT_EFORMAT;
    if ((f = yget(y, n, "name")) && ytext(y, f, "profile.name", pf->name, sizeof(pf->name)))
        return CIT_EFORMAT;
    if (!(f = yget(y, n, "jurisdictions")))
        return yfail(y, n, "profile '%s' needs 'jurisdictions': where it applies, such as [DE, EU]",
                     pf->id);
    if (yplaces(y, f, "profile.jurisdictions", &pf->jurisdictions, &pf->n_jurisdictions))
        return CIT_EFORMAT;
    if (!pol_place_allowed((const char(*)[16])pf->jurisdictions, pf->n_jurisdictions,
                           p->jurisdiction)) {
        char list[200] = "";
        for (int i = 0; i < pf->n_jurisdictions; i++)
            snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
                     pf->jurisdictions[i]);
        return yfail(y, f,
                     "profile '%s' is for %s; this node's jurisdiction is %s (node.jurisdiction "
                     "in %s): name the profile of the node's jurisdiction",
                     pf->id, list, p->jurisdiction, policy_name);
    }
    if ((f = yget(y, n, "languages")) && profile_languages(y, pf, f)) return CIT_EFORMAT;
    if ((f = yget(y, n, "guardrail")) &&
        ytext_dup(y, f, "profile.guardrail", POL_PROFILE_MAX_GUARDRAIL, &pf->guardrail))
        return CIT_EFORMAT;
    if ((f = yget(y, n, "notice")) &&
        ytext_dup(y, f, "profile.notice", POL_PROFILE_MAX_NOTICE, &pf->notice))
        return CIT_EFORMAT;
    if ((f = yget(y, n, "output"))) {
        yaml_node_t *g;
        if (ykeys(y, f, "profile.output", okeys)) return CIT_EFORMAT;
        if ((g = yget(y, f, "append_notice"))) {
            if (ybool(y, g, "profile.output.append_notice", &pf->output.append_notice))
                return CIT_EFORMAT;
            if (pf->output.append_notice && !pf->notice)
                return yfail(y, g, "profile.output.append_notice is true, but the profile has no "
                                   "'notice' to append");
        }
        if ((g = yget(y, f, "max_tokens"))) {
            if (yint(y, g, "profile.output.max_tokens", 0, 1 << 20, &v)) return CIT_EFORMAT;
            pf->output.max_tokens = (int)v;
        }
    }
    pf->present = 1;
    return 0;
}

/* profile: FILE (from the policy's folder). Its bytes go into bytes, for
 * the policy's hash. */
static int parse_profile(struct yp *y, struct pol_policy *p, yaml_node_t *n, struct cit_buf *bytes)
{
    struct pol_profile *pf = &p->profile;
    struct cit_err rerr = {{0}};
    struct yp py = {.err = y->err};
    yaml_parser_t parser;
    int rc;
    if (!n) return 0;
    if (ypath(y, n, "profile", pf->file, sizeof(pf->file))) return CIT_EFORMAT;
    rc = cit_read_file(pf->file, POL_PROFILE_MAX_FILE, bytes, &rerr);
    if (rc == CIT_ENOMEM) return rc;
    if (rc)
        return yfail(y, n, "profile '%s' cannot be read: %s", pf->file,
                     rc == CIT_ENOENT ? "no such file" : rerr.msg);
    py.name = pf->file;
    if (!yaml_parser_initialize(&parser)) return CIT_ENOMEM;
    yaml_parser_set_input_string(&parser, (const unsigned char *)(bytes->p ? bytes->p : ""),
                                 bytes->len);
    if (!yaml_parser_load(&parser, &py.doc)) {
        rc = cit_err_set(y->err, CIT_EFORMAT, "%s:%d: not valid YAML: %s%s%s", pf->file,
                         (int)parser.problem_mark.line + 1, parser.problem ? parser.problem : "?",
                         parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return rc;
    }
    rc = profile_doc(&py, p, y->name);
    yaml_document_delete(&py.doc);
    yaml_parser_delete(&parser);
    if (!rc) crypto_hash_sha256(pf->sha256, (const unsigned char *)bytes->p, bytes->len);
    return rc;
}

int pol_parse(const char *name, const char *text, size_t len, struct pol_policy **out,
              struct cit_err *err)
{
    struct yp y = {.name = name, .err = err};
    yaml_parser_t parser;
    struct cit_buf prof = {0}; /* the profile file's bytes */
    int rc = 0;
    if (len > POL_MAX_FILE)
        return cit_err_set(err, CIT_ERANGE, "%s: %zu bytes; a policy is at most %u", name, len,
                           POL_MAX_FILE);
    if (sodium_init() < 0) return cit_err_set(err, CIT_EIO, "%s: libsodium failed to start", name);
    struct pol_policy *p = cit_calloc(1, sizeof(*p));
    if (!p) return cit_err_set(err, CIT_ENOMEM, "%s: out of memory", name);
    if (!yaml_parser_initialize(&parser)) {
        cit_free(p);
        return cit_err_set(err, CIT_ENOMEM, "%s: out of memory", name);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &y.doc)) {
        rc = cit_err_set(err, CIT_EFORMAT, "%s:%d: not valid YAML: %s%s%s", name,
                         (int)parser.problem_mark.line + 1, parser.problem ? parser.problem : "?",
                         parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        cit_free(p);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&y.doc);
    static const char *const top[] = {"version",  "node",    "classes",   "detectors",
                                      "keywords", "tenants", "models",    "peers",
                                      "rules",    "output",  "admission", "lockdown",
                                      "site",     "profile", NULL};
    static const char *const nodekeys[] = {"id", "jurisdiction", NULL};
    int64_t version = 0;
    yaml_node_t *f;
    if (!root) rc = yfail(&y, NULL, "the policy is empty");
    if (!rc) rc = ykeys(&y, root, "the policy", top);
    if (!rc && !(f = yget(&y, root, "version")))
        rc = yfail(&y, root, "the policy needs 'version: 1'");
    if (!rc) rc = yint(&y, f, "version", 1, 1, &version);
    if (!rc && !(f = yget(&y, root, "node")))
        rc = yfail(&y, root, "the policy needs 'node' with this node's 'id' and 'jurisdiction'");
    if (!rc) rc = ykeys(&y, f, "node", nodekeys);
    if (!rc) rc = yname(&y, yget(&y, f, "id"), "node.id", p->node_id, sizeof(p->node_id));
    if (!rc)
        rc = yname(&y, yget(&y, f, "jurisdiction"), "node.jurisdiction", p->jurisdiction,
                   sizeof(p->jurisdiction));
    if (!rc) rc = parse_classes(&y, p, yget(&y, root, "classes"));
    if (!rc) rc = parse_detectors(&y, p, yget(&y, root, "detectors"));
    if (!rc) rc = parse_keywords(&y, p, yget(&y, root, "keywords"));
    if (!rc) rc = parse_tenants(&y, p, yget(&y, root, "tenants"));
    if (!rc) rc = parse_targets(&y, p, yget(&y, root, "models"), 0);
    if (!rc) rc = parse_targets(&y, p, yget(&y, root, "peers"), 1);
    if (!rc) rc = parse_rules(&y, p, yget(&y, root, "rules"));
    if (!rc) rc = parse_output(&y, p, yget(&y, root, "output"));
    if (!rc) rc = parse_admission(&y, p, yget(&y, root, "admission"));
    if (!rc) rc = parse_lockdown(&y, p, yget(&y, root, "lockdown"));
    if (!rc) rc = parse_site(&y, p, yget(&y, root, "site"));
    if (!rc) rc = parse_profile(&y, p, yget(&y, root, "profile"), &prof);
    if (!rc && (rc = det_scanner_new(p->keywords, (size_t)p->n_keywords, &p->scanner, err)))
        cit_err_prefix(err, name);
    if (rc == CIT_ENOMEM) cit_err_set(err, rc, "%s: out of memory", name);
    yaml_document_delete(&y.doc);
    yaml_parser_delete(&parser);
    if (rc) {
        cit_buf_free(&prof);
        pol_free(p);
        return rc;
    }
    if (!p->profile.present) {
        crypto_hash_sha256(p->hash, (const unsigned char *)text, len);
    } else { /* policy, NUL, profile: the boundary cannot move (YAML holds no NUL) */
        crypto_hash_sha256_state h;
        crypto_hash_sha256_init(&h);
        crypto_hash_sha256_update(&h, (const unsigned char *)text, len);
        crypto_hash_sha256_update(&h, (const unsigned char *)"", 1);
        crypto_hash_sha256_update(&h, (const unsigned char *)prof.p, prof.len);
        crypto_hash_sha256_final(&h, p->hash);
    }
    cit_buf_free(&prof);
    sodium_bin2hex(p->hash_hex, sizeof(p->hash_hex), p->hash, sizeof(p->hash));
    *out = p;
    return 0;
}

int pol_load(const char *path, struct pol_policy **out, struct cit_err *err)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;
    if (!f) return cit_err_set(err, CIT_EIO, "%s: cannot open: %s", path, strerror(errno));
    buf = cit_malloc(POL_MAX_FILE + 1);
    if (!buf) {
        fclose(f);
        return cit_err_set(err, CIT_ENOMEM, "%s: out of memory", path);
    }
    n = fread(buf, 1, POL_MAX_FILE + 1, f);
    int bad = ferror(f);
    fclose(f);
    int rc = bad ? cit_err_set(err, CIT_EIO, "%s: read failed", path)
                 : pol_parse(path, buf, n, out, err);
    cit_free(buf);
    return rc;
}

void pol_free(struct pol_policy *p)
{
    if (!p) return;
    for (int i = 0; i < p->n_keywords; i++) cit_free((char *)p->keywords[i].word);
    cit_free(p->keywords);
    cit_free(p->keyword_class);
    cit_free(p->adm.licenses);
    cit_free(p->adm.data_places);
    cit_free(p->adm.signer_places);
    cit_free(p->adm.pins);
    cit_free(p->profile.jurisdictions);
    cit_free(p->profile.languages);
    cit_free(p->profile.guardrail);
    cit_free(p->profile.notice);
    cit_free(p->tenants);
    cit_free(p->models);
    cit_free(p->peers);
    for (int i = 0; p->rules && i < p->n_rules; i++) {
        cit_free(p->rules[i].tenants);
        cit_free(p->rules[i].models);
    }
    cit_free(p->rules);
    det_scanner_free(p->scanner);
    cit_free(p);
}

/* ---- decisions ---- */

static int deny(struct pol_decision *d, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int deny(struct pol_decision *d, int rc, const char *fmt, ...)
{
    va_list ap;
    d->action = POL_DENY;
    d->peer = NULL;
    d->n_fwd = 0;
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
    va_end(ap);
    return rc;
}

/* The first class in mask that target may not see, or -1. */
static int uncleared(uint32_t mask, uint32_t cleared)
{
    uint32_t over = mask & ~cleared;
    return over ? __builtin_ctz(over) : -1;
}

int pol_finding_class(const struct pol_policy *p, const struct det_finding *f)
{
    int c = f->cls == DET_KEYWORD ? p->keyword_class[f->keyword] : p->det_class[f->cls];
    return c >= 0 && f->confidence >= p->det_min_conf[f->cls] ? c : -1;
}

int pol_decide(const struct pol_policy *p, const struct pol_request *r, struct pol_decision *d)
{
    memset(d, 0, sizeof(*d));
    d->rule_id = "";
    d->max_class = -1;
    int t = r->tenant ? pol_tenant_index(p, r->tenant) : -1;
    if (t < 0) return deny(d, 0, "tenant '%s' is not in the policy", r->tenant ? r->tenant : "");
    int m = r->model ? model_lookup(p, r->model) : -1;
    if (m < 0) return deny(d, 0, "model '%s' is not in the policy", r->model ? r->model : "");
    int rc = det_scan_parts(p->scanner, r->text ? r->text : "", r->text ? r->len : 0, r->joints,
                            r->joints ? r->n_joints : 0, &d->findings);
    if (rc) return deny(d, rc, "detection failed (%s): denied", cit_strerror(rc));
    uint32_t detected = 0, declared = 0;
    for (size_t i = 0; i < d->findings.n; i++) {
        int c = pol_finding_class(p, &d->findings.v[i]);
        if (c >= 0) detected |= 1u << c;
    }
    if (r->declared) { /* "personal, secret": raise only */
        const char *s = r->declared;
        while (*s) {
            while (*s == ' ' || *s == ',') s++;
            size_t l = strcspn(s, " ,");
            if (!l) break;
            char name[POL_MAX_NAME];
            if (l >= sizeof(name)) return deny(d, CIT_EINVAL, "a declared data class is too long");
            memcpy(name, s, l);
            name[l] = 0;
            int c = pol_class_index(p, name);
            if (c < 0)
                return deny(d, CIT_EINVAL, "declared data class '%s' is not in the policy", name);
            declared |= 1u << c;
            s += l;
        }
    }
    d->classes = detected | declared;
    d->max_class = d->classes ? 31 - __builtin_clz(d->classes) : -1;
    for (int i = 0; i < p->n_rules; i++) {
        const struct pol_rule *u = &p->rules[i];
        if (u->n_tenants && !has(u->tenants, u->n_tenants, t)) continue;
        if (u->n_models && !has(u->models, u->n_models, m)) continue;
        if (u->any && !(u->any & d->classes)) continue;
        if (u->at_least >= 0 && d->max_class < u->at_least) continue;
        if (u->at_most >= 0 && d->max_class > u->at_most) continue;
        d->rule_id = u->id;
        d->action = u->action;
        d->restore = u->restore;
        snprintf(d->reason, sizeof(d->reason), "%s", u->reason[0] ? u->reason : "");
        int c;
        switch (u->action) {
        case POL_LOCAL:
            if ((c = uncleared(d->classes, p->models[m].classes)) >= 0)
                return deny(d, 0,
                            "rule '%s' keeps it local, but model '%s' is not cleared for "
                            "class '%s'",
                            u->id, p->models[m].id, p->classes[c]);
            break;
        case POL_REDACT: /* what redaction leaves: the declared classes */
            if ((c = uncleared(declared, p->models[m].classes)) >= 0)
                return deny(d, 0,
                            "rule '%s' redacts, but the request declares class '%s', "
                            "which model '%s' is not cleared for",
                            u->id, p->classes[c], p->models[m].id);
            break;
        case POL_FORWARD: /* the peers cleared for every class, in the rule's order */
            for (int k = 0; k < u->n_fwd; k++)
                if (uncleared(d->classes, p->peers[u->fwd[k]].classes) < 0)
                    d->fwd[d->n_fwd++] = u->fwd[k];
            if (!d->n_fwd) {
                c = uncleared(d->classes, p->peers[u->peer].classes);
                return deny(d, 0, "rule '%s' forwards to '%s'%s, %s not cleared for class '%s'",
                            u->id, p->peers[u->peer].id, u->n_fwd > 1 ? " and others" : "",
                            u->n_fwd > 1 ? "none of them" : "which is", p->classes[c]);
            }
            d->peer = p->peers[d->fwd[0]].id;
            break;
        default:
            if (!d->reason[0]) snprintf(d->reason, sizeof(d->reason), "denied by rule '%s'", u->id);
        }
        return 0;
    }
    return deny(d, 0, "no rule matches: denied");
}

void pol_decision_free(struct pol_decision *d)
{
    det_findings_free(&d->findings);
}

/* ---- table-driven cases (citadel policy test) ---- */

int pol_run_cases(const struct pol_policy *p, const char *name, const char *text, size_t len,
                  struct cit_buf *report, int *n_pass, int *n_fail, struct cit_err *err)
{
    struct yp y = {.name = name, .err = err};
    yaml_parser_t parser;
    int rc = 0;
    *n_pass = *n_fail = 0;
    if (len > POL_MAX_FILE) return cit_err_set(err, CIT_ERANGE, "%s: too large", name);
    if (!yaml_parser_initialize(&parser))
        return cit_err_set(err, CIT_ENOMEM, "%s: out of memory", name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &y.doc)) {
        rc = cit_err_set(err, CIT_EFORMAT, "%s:%d: not valid YAML: %s", name,
                         (int)parser.problem_mark.line + 1, parser.problem ? parser.problem : "?");
        yaml_parser_delete(&parser);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&y.doc);
    if (!root || root->type != YAML_SEQUENCE_NODE)
        rc = yfail(&y, root,
                   "the cases must be a list of {name, tenant, model, input, declared, "
                   "expect, rule}");
    for (yaml_node_item_t *i = root && !rc ? root->data.sequence.items.start : NULL;
         i && i < root->data.sequence.items.top && !rc; i++) {
        static const char *const keys[] = {"name",     "tenant", "model", "input",
                                           "declared", "expect", "rule",  NULL};
        yaml_node_t *c = ynode(&y, *i), *f;
        if ((rc = ykeys(&y, c, "a case", keys))) break;
        const char *field[7];
        for (int k = 0; k < 7; k++) {
            f = yget(&y, c, keys[k]);
            if (f && !is_scalar(f)) {
                rc = yfail(&y, f, "'%s' must be text", keys[k]);
                break;
            }
            field[k] = f ? sval(f) : NULL;
        }
        if (rc) break;
        if (!field[5]) {
            rc = yfail(&y, c, "a case needs 'expect': local, redact, forward or deny");
            break;
        }
        struct pol_request r = {field[1], field[2], field[3], field[3] ? strlen(field[3]) : 0,
                                field[4], NULL,     0};
        struct pol_decision d;
        pol_decide(p, &r, &d); /* an error is a deny, which the case can expect */
        int ok = !strcmp(pol_action_name(d.action), field[5]) &&
                 (!field[6] || !strcmp(d.rule_id, field[6]));
        if (ok)
            (*n_pass)++;
        else
            (*n_fail)++;
        rc = cit_buf_printf(report, "%s %s:%d %s: %s%s%s%s%s\n", ok ? "ok  " : "FAIL", name,
                            (int)c->start_mark.line + 1, field[0] ? field[0] : "(unnamed)",
                            pol_action_name(d.action), d.rule_id[0] ? " by rule " : "", d.rule_id,
                            d.reason[0] ? ": " : "", d.reason);
        if (!rc && !ok)
            rc = cit_buf_printf(report, "     expected %s%s%s\n", field[5],
                                field[6] ? " by rule " : "", field[6] ? field[6] : "");
        pol_decision_free(&d);
    }
    yaml_document_delete(&y.doc);
    yaml_parser_delete(&parser);
    return rc;
}
