/*
 * Model cards: CycloneDX ML-BOM (JSON, spec 1.5 and later).
 *
 * The parts admission reads, and where they sit:
 *
 *   {"bomFormat": "CycloneDX", "specVersion": "1.6",
 *    "components": [
 *      {"type": "machine-learning-model", "bom-ref": "model", "name": ..., "version": ...,
 *       "licenses": [{"license": {"id": "<SPDX id>"}}, ...],
 *       "modelCard": {"modelParameters": {
 *          "architectureFamily": "llama",
 *          "datasets": [{"ref": "data-1"}, ...]}}},
 *      {"type": "data", "bom-ref": "data-1", "name": ...,
 *       "properties": [{"name": "citadel:jurisdiction", "value": "DE"}]}]}
 *
 * A dataset is a component of type "data" that the model's datasets refer
 * to; where its data comes from is the property citadel:jurisdiction (an
 * ISO 3166 code, or EU); citadel:languages (optional) lists the BCP 47
 * tags of its text, comma-separated, for `citadel vet`. Properties are CycloneDX's own place for facts
 * the standard has no field for. The word TODO anywhere admission reads
 * means the operator has not finished the card, and it is refused.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "citadel/border.h"
#include "border_int.h"

#define JUR_PROP "citadel:jurisdiction"
#define LANG_PROP "citadel:languages"

static int copy_str(json_t *v, char *dst, size_t cap)
{
    const char *s = json_string_value(v);
    if (!s || !s[0] || strlen(s) >= cap) return -1;
    memcpy(dst, s, strlen(s) + 1);
    return 0;
}

static int todo(const char *s)
{
    return strstr(s, "TODO") != NULL;
}

static json_t *find_ref(json_t *comps, const char *ref)
{
    size_t i;
    json_t *c;
    json_array_foreach(comps, i, c)
    {
        const char *r = json_string_value(json_object_get(c, "bom-ref"));
        if (r && !strcmp(r, ref)) return c;
    }
    return NULL;
}

static int parse_dataset(json_t *comps, json_t *d, size_t i, struct brd_dataset *out,
                         struct cit_err *err)
{
    const char *ref = json_string_value(json_object_get(d, "ref"));
    json_t *c, *props, *p;
    size_t k;
    if (!ref)
        return cit_err_set(err, CIT_EFORMAT,
                           "datasets[%zu]: give it as {\"ref\": ...} to a component of type "
                           "\"data\" that carries a " JUR_PROP " property",
                           i);
    if (!(c = find_ref(comps, ref)))
        return cit_err_set(err, CIT_EFORMAT,
                           "datasets[%zu]: no component has bom-ref \"%s\" (the dataset it "
                           "names is not described)",
                           i, ref);
    if (!json_is_string(json_object_get(c, "type")) ||
        strcmp(json_string_value(json_object_get(c, "type")), "data"))
        return cit_err_set(err, CIT_EFORMAT, "datasets[%zu]: component \"%s\" is not of type data",
                           i, ref);
    if (copy_str(json_object_get(c, "name"), out->name, sizeof(out->name)))
        return cit_err_set(err, CIT_EFORMAT, "dataset \"%s\": needs a name (1 to %zu bytes)", ref,
                           sizeof(out->name) - 1);
    out->jurisdiction[0] = 0;
    out->languages[0] = 0;
    props = json_object_get(c, "properties");
    json_array_foreach(props, k, p)
    {
        const char *n = json_string_value(json_object_get(p, "name"));
        if (n && !strcmp(n, LANG_PROP)) { /* optional: BCP 47 tags, comma-separated */
            if (copy_str(json_object_get(p, "value"), out->languages, sizeof(out->languages)))
                return cit_err_set(err, CIT_EFORMAT,
                                   "dataset \"%s\": " LANG_PROP " must be tags such as de,en "
                                   "(at most %zu bytes)",
                                   out->name, sizeof(out->languages) - 1);
            continue;
        }
        if (!n || strcmp(n, JUR_PROP)) continue;
        if (out->jurisdiction[0])
            return cit_err_set(err, CIT_EFORMAT, "dataset \"%s\": " JUR_PROP " is given twice",
                               out->name);
        if (copy_str(json_object_get(p, "value"), out->jurisdiction, sizeof(out->jurisdiction)))
            return cit_err_set(err, CIT_EFORMAT,
                               "dataset \"%s\": " JUR_PROP " must be a code such as DE or EU",
                               out->name);
    }
    if (!out->jurisdiction[0])
        return cit_err_set(err, CIT_EFORMAT,
                           "dataset \"%s\": no " JUR_PROP
                           " property: where its data comes from is not stated",
                           out->name);
    if (todo(out->name) || todo(out->jurisdiction))
        return cit_err_set(err, CIT_EFORMAT,
                           "dataset \"%s\": still says TODO; complete the card before signing",
                           out->name);
    return 0;
}

static int parse_licenses(json_t *lic, struct brd_card *c, struct cit_err *err)
{
    size_t i;
    json_t *l;
    if (!json_is_array(lic) || json_array_size(lic) == 0)
        return cit_err_set(err, CIT_EFORMAT,
                           "the model has no licenses: give [{\"license\": {\"id\": "
                           "\"<SPDX id>\"}}]");
    if (json_array_size(lic) > BRD_MAX_LICENSES)
        return cit_err_set(err, CIT_ERANGE, "more than %d licenses", BRD_MAX_LICENSES);
    json_array_foreach(lic, i, l)
    {
        json_t *one = json_object_get(l, "license");
        char *dst = c->licenses[c->n_licenses];
        if (json_object_get(l, "expression"))
            return cit_err_set(err, CIT_ENOTSUP,
                               "licenses[%zu]: SPDX expressions are not read; list each license "
                               "as {\"license\": {\"id\": ...}} (all of them must be allowed)",
                               i);
        if (!json_is_object(one) || copy_str(json_object_get(one, "id"), dst, BRD_MAX_NAME))
            return cit_err_set(err, CIT_EFORMAT,
                               "licenses[%zu]: needs an SPDX id (license.id, such as "
                               "Apache-2.0); a license known only by name cannot be checked",
                               i);
        if (todo(dst))
            return cit_err_set(err, CIT_EFORMAT,
                               "licenses[%zu]: still says TODO; complete the card before signing",
                               i);
        c->n_licenses++;
    }
    return 0;
}

int brd_card_parse(const char *text, size_t len, struct brd_card *c, struct cit_err *err)
{
    json_error_t je;
    json_t *j, *comps, *m = NULL, *x, *ds;
    const char *spec;
    size_t i;
    int rc = 0;
    memset(c, 0, sizeof(*c));
    if (len > BRD_MAX_CARD)
        return cit_err_set(err, CIT_ERANGE, "the card is %zu bytes; at most %u", len, BRD_MAX_CARD);
    j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!j || !json_is_object(j)) {
        rc = j ? cit_err_set(err, CIT_EFORMAT, "the card is not a JSON object")
               : cit_err_set(err, CIT_EFORMAT, "the card is not JSON: line %d: %s", je.line,
                             je.text);
        goto out;
    }
    if (!json_is_string(json_object_get(j, "bomFormat")) ||
        strcmp(json_string_value(json_object_get(j, "bomFormat")), "CycloneDX")) {
        rc = cit_err_set(err, CIT_EFORMAT, "the card is not CycloneDX (bomFormat)");
        goto out;
    }
    spec = json_string_value(json_object_get(j, "specVersion"));
    if (!spec || (strcmp(spec, "1.5") && strcmp(spec, "1.6") && strcmp(spec, "1.7"))) {
        rc = cit_err_set(err, CIT_ENOTSUP,
                         "specVersion %s%s%s: ML-BOM model cards need CycloneDX 1.5 or later",
                         spec ? "\"" : "", spec ? spec : "missing", spec ? "\"" : "");
        goto out;
    }
    comps = json_object_get(j, "components");
    json_array_foreach(comps, i, x)
    {
        const char *t = json_string_value(json_object_get(x, "type"));
        if (!t || strcmp(t, "machine-learning-model")) continue;
        if (m) {
            rc = cit_err_set(err, CIT_EFORMAT,
                             "the card describes more than one machine-learning-model component");
            goto out;
        }
        m = x;
    }
    if (!m) {
        rc = cit_err_set(err, CIT_EFORMAT,
                         "the card has no component of type machine-learning-model");
        goto out;
    }
    if (copy_str(json_object_get(m, "name"), c->name, sizeof(c->name)) || todo(c->name)) {
        rc = cit_err_set(err, CIT_EFORMAT, "the model component needs a name (1 to %zu bytes)",
                         sizeof(c->name) - 1);
        goto out;
    }
    if ((x = json_object_get(m, "version")) && copy_str(x, c->version, sizeof(c->version))) {
        rc = cit_err_set(err, CIT_EFORMAT, "the model's version must be a string of 1 to %zu bytes",
                         sizeof(c->version) - 1);
        goto out;
    }
    if (todo(c->version)) {
        rc = cit_err_set(err, CIT_EFORMAT,
                         "the model's version still says TODO; complete the card before signing");
        goto out;
    }
    if ((rc = parse_licenses(json_object_get(m, "licenses"), c, err))) goto out;
    x = json_object_get(json_object_get(m, "modelCard"), "modelParameters");
    if (json_object_get(x, "architectureFamily") &&
        copy_str(json_object_get(x, "architectureFamily"), c->arch, sizeof(c->arch))) {
        rc = cit_err_set(err, CIT_EFORMAT, "modelParameters.architectureFamily must be a string");
        goto out;
    }
    ds = json_object_get(x, "datasets");
    if (!json_is_array(ds) || json_array_size(ds) == 0) {
        rc = cit_err_set(err, CIT_EFORMAT,
                         "modelCard.modelParameters.datasets is empty: the card must say what "
                         "the model was trained on");
        goto out;
    }
    if (json_array_size(ds) > BRD_MAX_DATASETS) {
        rc = cit_err_set(err, CIT_ERANGE, "more than %d datasets", BRD_MAX_DATASETS);
        goto out;
    }
    json_array_foreach(ds, i, x)
    {
        if ((rc = parse_dataset(comps, x, i, &c->datasets[i], err))) goto out;
        c->n_datasets++;
    }
out:
    json_decref(j);
    return rc;
}

/* ---- skeleton ---- */

static void gguf_string(const struct gguf_file *g, const char *key, char *dst, size_t cap)
{
    struct gguf_str s;
    dst[0] = 0;
    if (!gguf_get_str(g, key, &s, NULL) && s.n > 0 && s.n < cap) {
        memcpy(dst, s.p, s.n);
        dst[s.n] = 0;
    }
}

static void add_str(json_t *o, const char *key, const char *v)
{
    json_object_set_new(o, key, json_string(v));
}

int brd_card_skeleton(const struct gguf_file *g, const char *fallback_name, struct cit_buf *out)
{
    char name[128], version[64], license[64], arch[64], ref[32];
    const struct gguf_kv *kv;
    json_t *j = json_object(), *comps = json_array(), *m = json_object(), *lics = json_array();
    json_t *params = json_object(), *dsl = json_array(), *card = json_object();
    char *text;
    int n_ds = 0, rc = 0;
    gguf_string(g, "general.name", name, sizeof(name));
    {
        json_t *valid = json_string(name); /* NULL unless UTF-8 */
        if (!name[0] || !valid) snprintf(name, sizeof(name), "%s", fallback_name);
        json_decref(valid);
    }
    gguf_string(g, "general.version", version, sizeof(version));
    gguf_string(g, "general.license", license, sizeof(license));
    gguf_string(g, "general.architecture", arch, sizeof(arch));
    add_str(j, "bomFormat", "CycloneDX");
    add_str(j, "specVersion", "1.6");
    json_object_set_new(j, "version", json_integer(1));
    add_str(m, "type", "machine-learning-model");
    add_str(m, "bom-ref", "model");
    add_str(m, "name", name);
    add_str(m, "version", version[0] ? version : "TODO");
    json_array_append_new(
        lics, json_pack("{s:{s:s}}", "license", "id", license[0] ? license : "TODO: SPDX id"));
    json_object_set_new(m, "licenses", lics);
    add_str(params, "task", "text-generation");
    add_str(params, "architectureFamily", arch[0] ? arch : "TODO");
    /* general.datasets, when the converter recorded it, names them */
    kv = gguf_find_kv(g, "general.datasets");
    if (kv && kv->v.type == GGUF_V_ARRAY && kv->v.arr.type == GGUF_V_STRING)
        for (uint64_t i = 0; i < kv->v.arr.n && n_ds < BRD_MAX_DATASETS; i++) {
            struct gguf_str s = kv->v.arr.items[i].s;
            char dn[128];
            if (!s.n || s.n >= sizeof(dn)) continue;
            memcpy(dn, s.p, s.n);
            dn[s.n] = 0;
            snprintf(ref, sizeof(ref), "data-%d", ++n_ds);
            json_array_append_new(dsl, json_pack("{s:s}", "ref", ref));
            json_array_append_new(comps, json_pack("{s:s,s:s,s:s,s:[{s:s,s:s}]}", "type", "data",
                                                   "bom-ref", ref, "name", dn, "properties", "name",
                                                   JUR_PROP, "value", "TODO"));
        }
    if (!n_ds) {
        json_array_append_new(dsl, json_pack("{s:s}", "ref", "data-1"));
        json_array_append_new(comps, json_pack("{s:s,s:s,s:s,s:[{s:s,s:s}]}", "type", "data",
                                               "bom-ref", "data-1", "name", "TODO: dataset name",
                                               "properties", "name", JUR_PROP, "value", "TODO"));
    }
    json_object_set_new(params, "datasets", dsl);
    json_object_set_new(card, "modelParameters", params);
    json_object_set_new(m, "modelCard", card);
    json_array_insert_new(comps, 0, m);
    json_object_set_new(j, "components", comps);
    text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text || cit_buf_add(out, text, strlen(text)) || cit_buf_add(out, "\n", 1)) rc = CIT_ENOMEM;
    free(text);
    json_decref(j);
    return rc;
}
