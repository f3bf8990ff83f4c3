/*
 * Grammar-constrained sampling: the byte matcher on texts we know to be
 * valid or invalid, the token mask against feeding every token alone, and
 * (outside the engine-only build) the JSON Schema compiler and random
 * generations checked with jansson.
 */
#include <stdlib.h>
#include <string.h>

#include "citadel/engine.h"
#include "test.h"
#include "../src/engine/eng_int.h" /* eng_model_load_vocab */

/* {"name": string <= 8, "age": integer, "tags": [ "a" | "b" ] <= 3,
 *  "ok"?: boolean, "note"?: string | null} */
static struct eng_gram *person(void)
{
    struct eng_gram *g;
    int obj, name, age, tags, tag, ok, note, nstr, nnull, bad;
    static const char *const keys[] = {"\"name\"", "\"age\"", "\"tags\"", "\"ok\"", "\"note\""};
    static const char *const ab[] = {"\"a\"", "\"b\""}, *const tf[] = {"true", "false"},
                             *const nul[] = {"null"};
    static const unsigned char req[] = {1, 1, 1, 0, 0};
    int vals[5];
    if (eng_gram_new(&g)) return NULL;
    obj = eng_gram_add(g), name = eng_gram_add(g), age = eng_gram_add(g);
    tags = eng_gram_add(g), tag = eng_gram_add(g), ok = eng_gram_add(g);
    note = eng_gram_add(g), nstr = eng_gram_add(g), nnull = eng_gram_add(g);
    vals[0] = name, vals[1] = age, vals[2] = tags, vals[3] = ok, vals[4] = note;
    if (eng_gram_set_string(g, name, 0, 8) || eng_gram_set_number(g, age, 1) ||
        eng_gram_set_literals(g, tag, ab, NULL, 2) || eng_gram_set_array(g, tags, tag, 0, 3) ||
        eng_gram_set_literals(g, ok, tf, NULL, 2) || eng_gram_set_string(g, nstr, 0, -1) ||
        eng_gram_set_literals(g, nnull, nul, NULL, 1) ||
        eng_gram_set_anyof(g, note, (int[]){nstr, nnull}, 2) ||
        eng_gram_set_object(g, obj, keys, NULL, vals, req, 5) || eng_gram_finish(g, obj, &bad)) {
        eng_gram_free(g);
        return NULL;
    }
    return g;
}

static struct eng_gram *any_value(void)
{
    struct eng_gram *g;
    int any, bad;
    if (eng_gram_new(&g)) return NULL;
    if ((any = eng_gram_add(g)) < 0 || eng_gram_set_any(g, any) || eng_gram_finish(g, any, &bad)) {
        eng_gram_free(g);
        return NULL;
    }
    return g;
}

/* 1: the whole text is a complete value; 0: a valid prefix; -1: refused. */
static int judge(const struct eng_gram *g, const char *text)
{
    struct eng_gram_state *s;
    int r;
    if (eng_gram_state_new(g, &s)) return -2;
    r = eng_gram_feed(s, text, strlen(text)) ? -1 : eng_gram_can_end(s);
    eng_gram_state_free(s);
    return r;
}

void test_gram_matcher(void)
{
    static const struct {
        const char *text;
        int want;
    } person_cases[] = {
        {"{\"name\":\"Ann\",\"age\":41,\"tags\":[\"a\",\"b\"]}", 1},
        {"{ \"name\" : \"\", \"age\" : -7 , \"tags\" : [ ] , \"ok\" : false }", 1},
        {"{\"name\":\"x\",\"age\":0,\"tags\":[],\"note\":null}", 1},
        {"{\"name\":\"x\",\"age\":0,\"tags\":[],\"ok\":true,\"note\":\"\\n\\\"\"}", 1},
        {"{\"name\":\"\xc3\xa9t\xc3\xa9\",\"age\":1,\"tags\":[]}", 1}, /* 3 characters */
        {"{\"name\":\"Ann\",\"age\":41", 0},
        {"{\"name\":\"12345678\"", 0},
        {"{\"name\":\"123456789\"", -1}, /* maxLength 8 */
        {"{\"age\":1", -1},              /* name is required and comes first */
        {"{\"name\":\"x\",\"age\":1.5", -1},
        {"{\"name\":\"x\",\"age\":01", -1},
        {"{\"name\":\"x\",\"age\":1,\"tags\":[\"c\"]", -1},
        {"{\"name\":\"x\",\"age\":1,\"tags\":[\"a\",\"a\",\"a\",\"a\"]", -1}, /* maxItems */
        {"{\"name\":\"x\",\"age\":1,\"tags\":[],}", -1},
        {"{\"name\":\"x\",\"age\":1,\"tags\":[]}x", -1},
        {"{\"name\":\"x\",\"age\":1,\"tags\":[],\"note\":nul", 0},
        {"{\"name\":\"x\",\"age\":1,\"tags\":[],\"note\":\"\\u0041\"}", -1}, /* no \u */
        {"{\"name\":\"\x01\"", -1},
        {"{\"name\":\"\xc3\"", -1},          /* a lead byte without its continuation */
        {"{\"name\":\"\xed\xa0\x80\"", -1},  /* a surrogate in UTF-8 */
        {"{\"name\":\"x\",\"ok\":true", -1}, /* age and tags are required before */
    };
    static const struct {
        const char *text;
        int want;
    } any_cases[] = {
        {"{}", 1},
        {"[1,-2.5e+3,true,null,\"s\",{\"k\":[{}]}]", 1},
        {"-0", 1},
        {"12", 1},
        {"1.", 0},
        {"1.e", -1},
        {"tru", 0},
        {"truex", -1},
        {"[1 2]", -1},
        {"{\"a\" 1}", -1},
        {"{\"a\":1,}", -1},
        {"\"\\x\"", -1},
        {"{\"a\":1}{", -1},
        {"\n\t[ ]", 1},
        {"[\n    1,\n    2\n]", 1},
        {"{ \"a\" : 1 }", 1},
        {"{\"a\":  1}", -1}, /* two spaces: one, or a newline and indentation */
        {"[ \n1]", -1},      /* a space before the newline */
        {"[\n\n1]", -1},     /* a blank line */
        {"[\r\n1]", -1},
        {"12345678901234567", -1}, /* at most 16 digits */
        {"-1.5E-99", 1},
        {"1e100", -1}, /* two exponent digits: 1e999 is no double */
    };
    struct eng_gram *p = person(), *a = any_value();
    CHECK(p && a);
    for (size_t i = 0; i < sizeof(person_cases) / sizeof(person_cases[0]); i++) {
        int got = judge(p, person_cases[i].text);
        CHECKF(got == person_cases[i].want, "person %zu %s: %d, want %d", i, person_cases[i].text,
               got, person_cases[i].want);
    }
    for (size_t i = 0; i < sizeof(any_cases) / sizeof(any_cases[0]); i++) {
        int got = judge(a, any_cases[i].text);
        CHECKF(got == any_cases[i].want, "any %zu %s: %d, want %d", i, any_cases[i].text, got,
               any_cases[i].want);
    }
    {
        /* nesting is capped, so a deep value cannot trap generation */
        char deep[80];
        memset(deep, '[', sizeof(deep) - 1);
        deep[sizeof(deep) - 1] = 0;
        CHECK(judge(a, deep) == -1);
    }
    eng_gram_free(p);
    eng_gram_free(a);
}

void test_gram_build_errors(void)
{
    struct eng_gram *g;
    int s1, s2, alt, bad, n;
    static const char *const lit[] = {"\"x\""};
    CHECK(eng_gram_new(&g) == 0);
    s1 = eng_gram_add(g), s2 = eng_gram_add(g), alt = eng_gram_add(g), n = eng_gram_add(g);
    CHECK(eng_gram_set_string(g, s1, 0, -1) == 0);
    CHECK(eng_gram_set_string(g, s1, 0, -1) == CIT_EINVAL); /* set twice */
    CHECK(eng_gram_set_string(g, s2, 5, 2) == CIT_EINVAL);  /* max below min */
    CHECK(eng_gram_set_literals(g, s2, lit, NULL, 1) == 0);
    CHECK(eng_gram_set_anyof(g, alt, (int[]){s1, s2}, 2) == 0);
    /* n never set */
    CHECK(eng_gram_finish(g, alt, &bad) == CIT_EINVAL && bad == n);
    eng_gram_free(g);

    CHECK(eng_gram_new(&g) == 0);
    s1 = eng_gram_add(g), s2 = eng_gram_add(g), alt = eng_gram_add(g);
    CHECK(eng_gram_set_string(g, s1, 0, -1) == 0);
    CHECK(eng_gram_set_literals(g, s2, lit, NULL, 1) == 0);
    CHECK(eng_gram_set_anyof(g, alt, (int[]){s1, s2}, 2) == 0);
    /* both begin with '"' */
    CHECK(eng_gram_finish(g, alt, &bad) == CIT_EINVAL && bad == alt);
    eng_gram_free(g);

    CHECK(eng_gram_new(&g) == 0);
    s1 = eng_gram_add(g);
    CHECK(eng_gram_set_object(g, s1, (const char *const[]){"name"}, NULL, (int[]){s1}, NULL, 1) ==
          CIT_EINVAL); /* a key without its quotes */
    CHECK(eng_gram_set_object(g, s1, (const char *const[]){"\"a\"", "\"a\""}, NULL, (int[]){s1, s1},
                              NULL, 2) == CIT_EINVAL); /* twice */
    eng_gram_free(g);
}

/* The mask equals what feeding each token alone accepts, at every step of
 * generations that pick allowed tokens at random. */
static int mask_walk(const struct eng_model *m, const struct eng_gram_vocab *v,
                     const struct eng_gram *g, uint64_t seed, int steps, int *completed)
{
    const int N = eng_gram_vocab_tokens(v), W = (N + 31) / 32;
    uint32_t *mask = cit_calloc((size_t)W, sizeof(*mask));
    struct eng_gram_state *s = NULL, *t = NULL;
    int rc = -1;
    (void)m;
    if (!mask || eng_gram_state_new(g, &s) || eng_gram_state_new(g, &t)) goto out;
    for (int step = 0; step < steps && !eng_gram_done(s); step++) {
        int count = eng_gram_mask(v, s, mask), brute = 0, pick, k;
        for (int tok = 0; tok < N; tok++) {
            int ok;
            eng_gram_state_copy(t, s);
            ok = eng_gram_feed_token(v, t, tok) == 0;
            brute += ok;
            if (ok != (int)(mask[tok >> 5] >> (tok & 31) & 1)) {
                t_fail(__FILE__, __LINE__, "step %d token %d: mask %u, feeding it %d", step, tok,
                       mask[tok >> 5] >> (tok & 31) & 1, ok);
                goto out;
            }
        }
        if (count != brute) {
            t_fail(__FILE__, __LINE__, "step %d: mask counts %d, feeding %d", step, count, brute);
            goto out;
        }
        if (count == 0) {
            t_fail(__FILE__, __LINE__, "step %d: no token allowed", step);
            goto out;
        }
        /* a random allowed token, with a lean towards ending strings and
         * values so that walks reach the end */
        pick = (int)(t_rand(&seed) % (uint64_t)count);
        for (k = 0; k < N; k++)
            if (mask[k >> 5] >> (k & 31) & 1 && pick-- == 0) break;
        if (eng_gram_feed_token(v, s, k)) {
            t_fail(__FILE__, __LINE__, "step %d: allowed token %d refused", step, k);
            goto out;
        }
        if (eng_gram_can_end(s) && eng_gram_done(s)) break;
    }
    *completed = eng_gram_done(s);
    rc = 0;
out:
    eng_gram_state_free(s);
    eng_gram_state_free(t);
    cit_free(mask);
    return rc;
}

void test_gram_mask_vs_feed(void)
{
    static const char *const vocabs[] = {"vocab/ggml-vocab-llama-spm.gguf",
                                         "vocab/ggml-vocab-gpt-2.gguf", "stories260K.gguf"};
    for (size_t i = 0; i < sizeof(vocabs) / sizeof(vocabs[0]); i++) {
        struct eng_model *m;
        struct eng_gram_vocab *v;
        struct cit_err err = {0};
        struct eng_gram *p = person(), *a = any_value();
        int done;
        CHECK(p && a);
        CHECKF(eng_model_load_vocab(t_model_path(vocabs[i]), &m, &err) == 0, "%s", err.msg);
        CHECK(eng_gram_vocab_new(m, &v) == 0);
        /* the 32k and 50k vocabularies cost a brute-force pass per step */
        for (uint64_t seed = 1; seed <= 3; seed++) {
            if (mask_walk(m, v, p, seed, i < 2 ? 24 : 200, &done)) break;
            if (mask_walk(m, v, a, seed * 77, i < 2 ? 16 : 200, &done)) break;
        }
        eng_gram_vocab_free(v);
        eng_model_free(m);
        eng_gram_free(p);
        eng_gram_free(a);
        if (t_failed()) return;
    }
}

#ifndef TEST_ENGINE_ONLY
#include <jansson.h>

#include "../src/http/http_int.h" /* schema_compile */

static int compile_str(const char *schema, struct eng_gram **g, char *msg, size_t cap)
{
    json_error_t je;
    json_t *j = json_loads(schema, JSON_DECODE_ANY, &je);
    int rc;
    if (!j) return snprintf(msg, cap, "bad test JSON: %s", je.text), -100;
    rc = schema_compile(j, "schema", g, msg, cap);
    json_decref(j);
    return rc;
}

void test_schema_compile(void)
{
    static const struct {
        const char *schema, *want; /* want: NULL compiles; else the message has it */
    } cases[] = {
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}},\"required\":[\"a\"],"
         "\"additionalProperties\":false}",
         NULL},
        {"{\"type\":[\"string\",\"null\"],\"maxLength\":3}", NULL},
        {"{\"type\":\"integer\",\"nullable\":true}", NULL},
        {"{\"type\":[\"integer\",\"number\"]}", NULL}, /* number covers integer */
        {"{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\"},{\"type\":\"null\"}]}", NULL},
        {"{\"enum\":[\"a\",1,null,{\"x\":[true]}]}", NULL},
        {"{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"kids\":{\"type\":\"array\","
         "\"items\":{\"$ref\":\"#/$defs/n\"}}}}},\"$ref\":\"#/$defs/n\"}",
         NULL},
        {"{\"description\":\"anything\",\"title\":\"t\"}", NULL},
        {"true", NULL},
        {"{\"type\":\"string\",\"pattern\":\"^a\"}", "schema: the keyword 'pattern'"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"number\",\"minimum\":0}}}",
         "schema.properties.n: the keyword 'minimum'"},
        {"{\"anyOf\":[{\"type\":\"object\"},{\"type\":\"object\",\"properties\":{\"a\":{}}}]}",
         "schema: the alternatives"},
        {"{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}", "can begin with the same"},
        {"{\"$ref\":\"#/$defs/missing\"}", "'$ref' must point"},
        {"{\"$ref\":\"http://example.com/s.json\"}", "'$ref' must point"},
        {"{\"type\":\"object\",\"required\":[\"x\"]}", "required property 'x'"},
        {"{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"$ref\":\"#/$defs/a\"}},"
         "\"$ref\":\"#/$defs/a\"}",
         "loop"},
        {"{\"type\":\"strin\"}", "type 'strin'"},
        {"{\"type\":\"array\",\"items\":[{\"type\":\"string\"}]}", "tuples"},
        {"{\"type\":\"string\",\"minLength\":5,\"maxLength\":2}", "below"},
        {"{\"enum\":[]}", "1 to 64"},
        {"5", "must be an object"},
        {"{\"type\":\"string\",\"format\":\"email\"}", "'format'"},
        {"{\"allOf\":[{}]}", "'allOf'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct eng_gram *g = NULL;
        char msg[512];
        int rc = compile_str(cases[i].schema, &g, msg, sizeof(msg));
        if (!cases[i].want) {
            CHECKF(rc == 0, "case %zu %s: %s", i, cases[i].schema, msg);
            eng_gram_free(g);
        } else {
            CHECKF(rc == CIT_EINVAL && strstr(msg, cases[i].want), "case %zu %s: %d '%s'", i,
                   cases[i].schema, rc, msg);
        }
    }
}

/* 0 when j is a tree node: {"v": integer, "kids"?: [node, ...]} */
static int tree_ok(json_t *j, int depth)
{
    json_t *k;
    size_t i;
    if (!json_is_object(j) || !json_is_integer(json_object_get(j, "v")) || depth > 40) return -1;
    k = json_object_get(j, "kids");
    if (json_object_size(j) != (k ? 2u : 1u)) return -1;
    if (k && !json_is_array(k)) return -1;
    for (i = 0; k && i < json_array_size(k); i++)
        if (tree_ok(json_array_get(k, i), depth + 1)) return -1;
    return 0;
}

/* Random generations under the mask of a recursive schema: each one that
 * completes parses and has the schema's shape. */
void test_schema_generate(void)
{
    struct eng_model *m;
    struct eng_gram_vocab *v;
    struct eng_gram *g;
    struct cit_err err = {0};
    char msg[256], piece[512];
    int N, complete = 0;
    uint32_t *mask;
    CHECK(compile_str("{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":"
                      "\"integer\"},\"kids\":{\"type\":\"array\",\"maxItems\":2,\"items\":{"
                      "\"$ref\":\"#/$defs/n\"}}},\"required\":[\"v\"]}},\"$ref\":\"#/$defs/n\"}",
                      &g, msg, sizeof(msg)) == 0);
    CHECKF(eng_model_load_vocab(t_model_path("stories260K.gguf"), &m, &err) == 0, "%s", err.msg);
    CHECK(eng_gram_vocab_new(m, &v) == 0);
    N = eng_gram_vocab_tokens(v);
    mask = cit_calloc((size_t)(N + 31) / 32, sizeof(*mask));
    CHECK(mask);
    for (uint64_t seed = 1; seed <= 40; seed++) {
        struct eng_gram_state *s;
        struct cit_buf text = {0};
        uint64_t r = seed;
        CHECK(eng_gram_state_new(g, &s) == 0);
        for (int step = 0; step < 400 && !eng_gram_done(s); step++) {
            int count = eng_gram_mask(v, s, mask), pick, k, n;
            CHECK(count > 0);
            pick = (int)(t_rand(&r) % (uint64_t)count);
            for (k = 0; k < N; k++)
                if (mask[k >> 5] >> (k & 31) & 1 && pick-- == 0) break;
            CHECK(eng_gram_feed_token(v, s, k) == 0);
            n = eng_token_piece(m, k, 0, piece, sizeof(piece));
            if (n > 0) cit_buf_add(&text, piece, (size_t)n);
        }
        if (eng_gram_done(s)) {
            json_error_t je;
            json_t *j = json_loadb(text.p, text.len, 0, &je);
            CHECKF(j && tree_ok(j, 0) == 0, "seed %llu: %.*s", (unsigned long long)seed,
                   (int)text.len, text.p);
            json_decref(j);
            complete++;
        }
        cit_buf_free(&text);
        eng_gram_state_free(s);
    }
    CHECKF(complete >= 10, "only %d of 40 random walks completed", complete);
    t_note("%d of 40 random walks completed, each a valid tree", complete);
    cit_free(mask);
    eng_gram_vocab_free(v);
    eng_model_free(m);
    eng_gram_free(g);
}
#endif
