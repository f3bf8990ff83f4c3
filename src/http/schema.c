/*
 * JSON Schema to an engine grammar (citadel/engine.h, eng_gram_*), for
 * response_format json_schema and json_object.
 *
 * The subset is the one OpenAI's structured outputs document, and every
 * keyword outside it is refused by name: a schema we cannot enforce must
 * not come back as an answer that only looks constrained.
 *
 *   type (a name or a list), properties, required, additionalProperties,
 *   items, minItems, maxItems, minLength, maxLength, enum, const, anyOf,
 *   oneOf (its alternatives must begin differently, so exactly one can
 *   match), $ref to "#", "#/$defs/..." or "#/definitions/...", nullable;
 *   annotations (title, description, default, examples, $schema, $id,
 *   $comment, deprecated, readOnly, writeOnly) are read and ignored.
 *
 * Objects are written with their properties in the schema's order; a
 * property not in "required" may be left out. Properties beyond the listed
 * ones are never written, which every additionalProperties allows.
 */
#include <stdio.h>
#include <string.h>

#include "http_int.h"

#define SCHEMA_MAX_NODES 4096
#define SCHEMA_MAX_DEPTH 64

struct sc {
    struct eng_gram *g;
    json_t *root;
    const char *where;
    struct {
        json_t *s;
        int id;
    } * memo;
    int n_memo, cap_memo;
    char **path_of; /* by node id: where it came from, for eng_gram_finish's verdict */
    int cap_paths;
    int any, depth;
    char *msg;
    size_t msg_cap;
};

static int sc_fail(struct sc *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int sc_fail(struct sc *c, const char *path, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(c->msg, c->msg_cap, "%s: ", path);
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < c->msg_cap) vsnprintf(c->msg + n, c->msg_cap - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *const annotations[] = {
    "title",    "description", "default",  "examples",  "$schema", "$id",
    "$comment", "deprecated",  "readOnly", "writeOnly", NULL,
};
static const char *const constraining[] = {
    "type",      "properties", "required", "additionalProperties",
    "items",     "minItems",   "maxItems", "minLength",
    "maxLength", "enum",       "const",    "anyOf",
    "oneOf",     "$ref",       "$defs",    "definitions",
    "nullable",  NULL,
};

static int in_list(const char *const *l, const char *k)
{
    for (; *l; l++)
        if (!strcmp(*l, k)) return 1;
    return 0;
}

/* A new node, with where it came from. */
static int sc_node(struct sc *c, const char *path)
{
    int id = eng_gram_add(c->g);
    if (id >= SCHEMA_MAX_NODES)
        return sc_fail(c, path, "the schema needs more than %d nodes", SCHEMA_MAX_NODES);
    if (id < 0) return sc_fail(c, path, "out of memory");
    if (id >= c->cap_paths) {
        int cap = c->cap_paths ? c->cap_paths * 2 : 64;
        char **p = cit_realloc(c->path_of, (size_t)cap * sizeof(*p));
        if (!p) return sc_fail(c, path, "out of memory");
        memset(p + c->cap_paths, 0, (size_t)(cap - c->cap_paths) * sizeof(*p));
        c->path_of = p;
        c->cap_paths = cap;
    }
    c->path_of[id] = cit_strndup(path, strlen(path));
    if (!c->path_of[id]) return sc_fail(c, path, "out of memory");
    return id;
}

static int sc_any(struct sc *c, const char *path)
{
    if (c->any < 0) {
        if ((c->any = sc_node(c, path)) < 0) return -1;
        eng_gram_set_any(c->g, c->any);
    }
    return c->any;
}

/* A JSON value as the exact text the model must write. */
static char *dump(json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static int literals(struct sc *c, int id, json_t *const *vals, int n, const char *path)
{
    char *txt[64] = {0};
    int rc;
    if (n < 1 || n > 64) return sc_fail(c, path, "an enum needs 1 to 64 values");
    for (int i = 0; i < n; i++)
        if (!(txt[i] = dump(vals[i]))) {
            while (i--) free(txt[i]);
            return sc_fail(c, path, "out of memory");
        }
    rc = eng_gram_set_literals(c->g, id, (const char *const *)txt, NULL, n);
    for (int i = 0; i < n; i++) free(txt[i]);
    return rc ? sc_fail(c, path, "enum values could not be compiled") : id;
}

static int compile(struct sc *c, json_t *s, const char *path);

/* "#", "#/$defs/name", "#/definitions/name" (JSON pointer escapes ~0 ~1). */
static json_t *resolve(struct sc *c, const char *ref)
{
    json_t *at = c->root;
    char tok[256];
    if (strcmp(ref, "#") && strncmp(ref, "#/", 2)) return NULL;
    for (const char *p = ref + 1; *p == '/';) {
        size_t n = 0;
        for (p++; *p && *p != '/'; p++) {
            char ch = *p;
            if (ch == '~') {
                if (p[1] != '0' && p[1] != '1') return NULL;
                ch = p[1] == '0' ? '~' : '/';
                p++;
            }
            if (n + 1 >= sizeof(tok)) return NULL;
            tok[n++] = ch;
        }
        tok[n] = 0;
        if (!json_is_object(at) || !(at = json_object_get(at, tok))) return NULL;
    }
    return at;
}

static int get_count(json_t *v, long long *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1 << 20))
        return -1;
    *out = json_integer_value(v);
    return 0;
}

static int compile_object(struct sc *c, int id, json_t *s, const char *path)
{
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    json_t *ap = json_object_get(s, "additionalProperties"), *v;
    char sub[512];
    const char *key;
    size_t i;
    if (props && !json_is_object(props)) return sc_fail(c, path, "'properties' must be an object");
    if (req && !json_is_array(req)) return sc_fail(c, path, "'required' must be an array");
    json_array_foreach(req, i, v)
    {
        if (!json_is_string(v)) return sc_fail(c, path, "required[%zu] must be a string", i);
        if (!json_object_get(props, json_string_value(v)))
            return sc_fail(c, path,
                           "required property '%.64s' is not in 'properties' (only listed "
                           "properties are generated)",
                           json_string_value(v));
    }
    if (props && json_object_size(props) > 0) {
        int n = 0, vals[64], rc;
        char *keys[64];
        unsigned char need[64];
        if (json_object_size(props) > 64)
            return sc_fail(c, path, "more than 64 properties in one object");
        if (ap && !json_is_boolean(ap) && !json_is_object(ap))
            return sc_fail(c, path, "'additionalProperties' must be a boolean or a schema");
        json_object_foreach(props, key, v)
        {
            json_t *k = json_string(key);
            snprintf(sub, sizeof(sub), "%s.properties.%s", path, key);
            vals[n] = compile(c, v, sub);
            keys[n] = k ? dump(k) : NULL;
            json_decref(k);
            need[n] = 0;
            json_array_foreach(req, i, k) need[n] |= !strcmp(json_string_value(k), key);
            if (vals[n] < 0 || !keys[n]) {
                int failed = vals[n] < 0;
                free(keys[n]);
                while (n--) free(keys[n]);
                return failed ? -1 : sc_fail(c, path, "out of memory");
            }
            n++;
        }
        rc = eng_gram_set_object(c->g, id, (const char *const *)keys, NULL, vals, need, n);
        for (int j = 0; j < n; j++) free(keys[j]);
        return rc ? sc_fail(c, path, "the properties could not be compiled") : id;
    }
    if (json_is_false(ap)) return eng_gram_set_object(c->g, id, NULL, NULL, NULL, NULL, 0), id;
    if (json_is_object(ap)) {
        int val;
        snprintf(sub, sizeof(sub), "%s.additionalProperties", path);
        if ((val = compile(c, ap, sub)) < 0) return -1;
        return eng_gram_set_map(c->g, id, val), id;
    }
    if (ap && !json_is_true(ap))
        return sc_fail(c, path, "'additionalProperties' must be a boolean or a schema");
    if (sc_any(c, path) < 0) return -1;
    return eng_gram_set_map(c->g, id, c->any), id;
}

static int compile_type(struct sc *c, int id, json_t *s, const char *t, const char *path)
{
    long long mn = 0, mx = -1;
    json_t *v;
    if (!strcmp(t, "object")) return compile_object(c, id, s, path);
    if (!strcmp(t, "array")) {
        json_t *items = json_object_get(s, "items");
        int item;
        char sub[512];
        if ((v = json_object_get(s, "minItems")) && get_count(v, &mn))
            return sc_fail(c, path, "'minItems' must be a non-negative integer");
        if ((v = json_object_get(s, "maxItems")) && get_count(v, &mx))
            return sc_fail(c, path, "'maxItems' must be a non-negative integer");
        if (mx >= 0 && mx < mn) return sc_fail(c, path, "'maxItems' is below 'minItems'");
        if (items && json_is_array(items))
            return sc_fail(c, path, "'items' as an array (tuples) is not supported");
        snprintf(sub, sizeof(sub), "%s.items", path);
        if ((item = items ? compile(c, items, sub) : sc_any(c, path)) < 0) return -1;
        return eng_gram_set_array(c->g, id, item, (int)mn, (int)mx), id;
    }
    if (!strcmp(t, "string")) {
        if ((v = json_object_get(s, "minLength")) && get_count(v, &mn))
            return sc_fail(c, path, "'minLength' must be a non-negative integer");
        if ((v = json_object_get(s, "maxLength")) && get_count(v, &mx))
            return sc_fail(c, path, "'maxLength' must be a non-negative integer");
        if (mx >= 0 && mx < mn) return sc_fail(c, path, "'maxLength' is below 'minLength'");
        return eng_gram_set_string(c->g, id, (int)mn, (int)mx), id;
    }
    if (!strcmp(t, "number") || !strcmp(t, "integer"))
        return eng_gram_set_number(c->g, id, t[0] == 'i'), id;
    if (!strcmp(t, "boolean")) {
        json_t *tf[2] = {json_true(), json_false()};
        return literals(c, id, tf, 2, path);
    }
    if (!strcmp(t, "null")) {
        json_t *n = json_null();
        return literals(c, id, &n, 1, path);
    }
    return sc_fail(c, path, "type '%.32s' is not a JSON Schema type", t);
}

static int compile_anyof(struct sc *c, int id, json_t *alts, const char *kw, const char *path)
{
    int ids[64], n = 0;
    size_t i;
    json_t *a;
    char sub[512];
    if (!json_is_array(alts) || json_array_size(alts) < 1 || json_array_size(alts) > 64)
        return sc_fail(c, path, "'%s' must be an array of 1 to 64 schemas", kw);
    json_array_foreach(alts, i, a)
    {
        snprintf(sub, sizeof(sub), "%s.%s[%zu]", path, kw, i);
        if ((ids[n++] = compile(c, a, sub)) < 0) return -1;
    }
    /* one alternative too: the node stays what $refs to it point at */
    return eng_gram_set_anyof(c->g, id, ids, n) ? sc_fail(c, path, "out of memory") : id;
}

static int compile(struct sc *c, json_t *s, const char *path)
{
    const char *k;
    json_t *v, *type, *e;
    int id, rc, nullable = 0;
    if (json_is_true(s) || (json_is_object(s) && json_object_size(s) == 0)) return sc_any(c, path);
    if (!json_is_object(s)) return sc_fail(c, path, "a schema must be an object (or true)");
    if (c->depth >= SCHEMA_MAX_DEPTH)
        return sc_fail(c, path, "the schema nests deeper than %d (or its $refs loop)",
                       SCHEMA_MAX_DEPTH);
    for (int i = 0; i < c->n_memo; i++)
        if (c->memo[i].s == s) return c->memo[i].id;
    json_object_foreach(
        s, k,
        v) if (!in_list(annotations, k) &&
               !in_list(constraining, k)) return sc_fail(c, path,
                                                         "the keyword '%.64s' is not supported", k);
    if ((v = json_object_get(s, "$ref"))) {
        json_object_foreach(
            s, k,
            e) if (in_list(constraining, k) && strcmp(k, "$ref") && strcmp(k, "$defs") &&
                   strcmp(k,
                          "definitions")) return sc_fail(c, path,
                                                         "'%.64s' beside '$ref' is not supported",
                                                         k);
        if (!json_is_string(v) || !(e = resolve(c, json_string_value(v))))
            return sc_fail(c, path, "'$ref' must point into this schema (\"#\", \"#/$defs/...\")");
        c->depth++;
        id = compile(c, e, json_string_value(v));
        c->depth--;
        return id;
    }
    if ((id = sc_node(c, path)) < 0) return -1;
    if (c->n_memo == c->cap_memo) {
        int cap = c->cap_memo ? c->cap_memo * 2 : 32;
        void *m = cit_realloc(c->memo, (size_t)cap * sizeof(*c->memo));
        if (!m) return sc_fail(c, path, "out of memory");
        c->memo = m;
        c->cap_memo = cap;
    }
    c->memo[c->n_memo].s = s;
    c->memo[c->n_memo++].id = id;
    c->depth++;
    rc = -1;
    if ((v = json_object_get(s, "nullable"))) {
        if (!json_is_boolean(v)) {
            sc_fail(c, path, "'nullable' must be a boolean");
            goto out;
        }
        nullable = json_is_true(v);
    }
    if ((v = json_object_get(s, "anyOf")) || (v = json_object_get(s, "oneOf"))) {
        const char *kw = json_object_get(s, "anyOf") ? "anyOf" : "oneOf";
        json_object_foreach(s, k, e) if (in_list(constraining, k) && strcmp(k, kw) &&
                                         strcmp(k, "$defs") && strcmp(k, "definitions"))
        {
            sc_fail(c, path, "'%.64s' beside '%s' is not supported", k, kw);
            goto out;
        }
        rc = compile_anyof(c, id, v, kw, path);
        goto out;
    }
    if ((v = json_object_get(s, "enum")) || (v = json_object_get(s, "const"))) {
        int is_enum = json_object_get(s, "enum") != NULL;
        json_t *vals[64];
        size_t i;
        if (is_enum && (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > 64)) {
            sc_fail(c, path, "'enum' must be an array of 1 to 64 values");
            goto out;
        }
        if (is_enum && json_object_get(s, "const")) {
            sc_fail(c, path, "'enum' and 'const' together are not supported");
            goto out;
        }
        if (!is_enum) {
            vals[0] = v;
        } else
            json_array_foreach(v, i, e) vals[i] = e;
        rc = literals(c, id, vals, is_enum ? (int)json_array_size(v) : 1, path);
        goto out;
    }
    type = json_object_get(s, "type");
    if (!type) {
        /* no type: what the other keywords imply, else anything */
        const char *t = json_object_get(s, "properties") || json_object_get(s, "required") ||
                                json_object_get(s, "additionalProperties")
                            ? "object"
                        : json_object_get(s, "items") || json_object_get(s, "minItems") ||
                                json_object_get(s, "maxItems")
                            ? "array"
                        : json_object_get(s, "minLength") || json_object_get(s, "maxLength")
                            ? "string"
                            : NULL;
        if (t) {
            rc = compile_type(c, id, s, t, path);
        } else if (nullable) {
            sc_fail(c, path, "'nullable' needs a 'type'");
        } else {
            /* the reserved node becomes "any": the shared one is not used */
            rc = eng_gram_set_any(c->g, id) ? sc_fail(c, path, "out of memory") : id;
        }
        goto out;
    }
    if (json_is_string(type) && !nullable) {
        rc = compile_type(c, id, s, json_string_value(type), path);
        goto out;
    }
    {
        /* a list of types (or one and nullable): an anyOf of each */
        const char *names[8];
        int n = 0, ids[8], has_num = 0;
        size_t i;
        if (json_is_string(type)) {
            names[n++] = json_string_value(type);
        } else if (json_is_array(type) && json_array_size(type) >= 1 &&
                   json_array_size(type) <= 7) {
            json_array_foreach(type, i, e)
            {
                if (!json_is_string(e)) {
                    sc_fail(c, path, "type[%zu] must be a string", i);
                    goto out;
                }
                for (int j = 0; j < n; j++)
                    if (!strcmp(names[j], json_string_value(e))) {
                        sc_fail(c, path, "type '%s' is listed twice", names[j]);
                        goto out;
                    }
                names[n++] = json_string_value(e);
                has_num |= !strcmp(names[n - 1], "number");
            }
        } else {
            sc_fail(c, path, "'type' must be a string or an array of 1 to 7 strings");
            goto out;
        }
        if (nullable) {
            int seen = 0;
            for (int j = 0; j < n; j++) seen |= !strcmp(names[j], "null");
            if (!seen) names[n++] = "null";
        }
        {
            int m = 0;
            for (int j = 0; j < n; j++) {
                if (has_num && !strcmp(names[j], "integer")) continue; /* number covers it */
                if ((ids[m] = sc_node(c, path)) < 0 ||
                    compile_type(c, ids[m], s, names[j], path) < 0)
                    goto out;
                m++;
            }
            rc = eng_gram_set_anyof(c->g, id, ids, m) ? sc_fail(c, path, "out of memory") : id;
        }
    }
out:
    c->depth--;
    return rc;
}

int schema_compile(json_t *schema, const char *where, struct eng_gram **out, char *msg,
                   size_t msg_cap)
{
    struct sc c = {0};
    int root, bad, rc = CIT_EINVAL;
    c.root = schema;
    c.where = where;
    c.any = -1;
    c.msg = msg;
    c.msg_cap = msg_cap;
    msg[0] = 0;
    if (eng_gram_new(&c.g)) {
        snprintf(msg, msg_cap, "out of memory");
        return CIT_ENOMEM;
    }
    if ((root = compile(&c, schema, where)) >= 0) {
        if (eng_gram_finish(c.g, root, &bad) == 0) {
            rc = 0;
        } else if (bad >= 0 && bad < c.cap_paths && c.path_of[bad]) {
            sc_fail(&c, c.path_of[bad],
                    "the alternatives of this anyOf/oneOf (or type list) can begin with the same "
                    "character; citadel needs alternatives of different types (one object, one "
                    "array, one string, ...)");
        } else {
            sc_fail(&c, where, "the schema could not be compiled");
        }
    }
    for (int i = 0; i < c.cap_paths; i++) cit_free(c.path_of[i]);
    cit_free(c.path_of);
    cit_free(c.memo);
    if (rc) {
        eng_gram_free(c.g);
        return rc;
    }
    *out = c.g;
    return 0;
}

int schema_json_object(struct eng_gram **out)
{
    struct eng_gram *g;
    int any, obj, bad;
    if (eng_gram_new(&g)) return CIT_ENOMEM;
    if ((any = eng_gram_add(g)) < 0 || (obj = eng_gram_add(g)) < 0 || eng_gram_set_any(g, any) ||
        eng_gram_set_map(g, obj, any) || eng_gram_finish(g, obj, &bad)) {
        eng_gram_free(g);
        return CIT_ENOMEM;
    }
    *out = g;
    return 0;
}
