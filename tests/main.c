/* Test runner and shared helpers. */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../src/core/core_int.h"
#ifndef TEST_ENGINE_ONLY
#include "../src/node/node_int.h"
#endif
#include "test.h"

static const struct {
    const char *name;
    void (*fn)(void);
} tests[] = {
#ifdef TEST_ENGINE_ONLY /* the engine's tests alone (make check-arm) */
#define T(name)
#define TE(name) {#name, test_##name},
#else
#define T(name) {#name, test_##name},
#endif
#include "test_list.h"
#undef T
#undef TE
};

static int cur_failed;

void t_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "    %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    cur_failed = 1;
}

int t_failed(void)
{
    return cur_failed;
}

void t_note(const char *fmt, ...)
{
    va_list ap;
    fputs("    note: ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
}

const char *t_models_dir(void)
{
    const char *d = getenv("CITADEL_MODELS");
    return d ? d : "../shared/models";
}

const char *t_model_path(const char *name)
{
    static char buf[1024];
    snprintf(buf, sizeof(buf), "%s/%s", t_models_dir(), name);
    return buf;
}

const char *t_tmpdir(void)
{
    static char dir[256];
    if (!dir[0]) {
        snprintf(dir, sizeof(dir), "/tmp/citadel-test-%d", (int)getpid());
        mkdir(dir, 0700);
    }
    return dir;
}

int t_write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    if (n && fwrite(p, 1, n, f) != n) {
        fclose(f);
        return -1;
    }
    return fclose(f) ? -1 : 0;
}

char *t_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = cit_malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        cit_free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        if (len) *len = (size_t)n;
    }
    return buf;
}

int t_run(const char *cmd, char **out)
{
    FILE *p = popen(cmd, "r");
    size_t n = 0, cap = 4096;
    char *buf = cit_malloc(cap);
    int st;
    if (!p || !buf) {
        if (p) pclose(p);
        cit_free(buf);
        return -1;
    }
    for (;;) {
        size_t k;
        if (n + 1024 > cap) {
            char *nb = cit_realloc(buf, cap *= 2);
            if (!nb) break;
            buf = nb;
        }
        k = fread(buf + n, 1, cap - n - 1, p);
        if (!k) break;
        n += k;
    }
    buf[n] = 0;
    st = pclose(p);
    if (out)
        *out = buf;
    else
        cit_free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

uint64_t t_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float t_randf(uint64_t *s)
{
    return (float)((double)(t_rand(s) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

/* ---- tiny JSON ---- */

struct jp {
    const char *p, *end;
    int depth;
};

static void ws(struct jp *j)
{
    while (j->p < j->end && isspace((unsigned char)*j->p)) j->p++;
}

static int parse_value(struct jp *j, struct tj *out);

static int parse_string(struct jp *j, char **out)
{
    size_t cap = 16, n = 0;
    char *s = cit_malloc(cap);
    if (!s || *j->p != '"') goto bad;
    j->p++;
    while (j->p < j->end && *j->p != '"') {
        char c = *j->p++;
        char tmp[4];
        int tn = 1;
        if (c == '\\') {
            char e;
            if (j->p >= j->end) goto bad;
            e = *j->p++;
            switch (e) {
            case 'n':
                tmp[0] = '\n';
                break;
            case 't':
                tmp[0] = '\t';
                break;
            case 'r':
                tmp[0] = '\r';
                break;
            case 'b':
                tmp[0] = '\b';
                break;
            case 'f':
                tmp[0] = '\f';
                break;
            case 'u': {
                unsigned cp = 0;
                if (j->end - j->p < 4) goto bad;
                for (int i = 0; i < 4; i++) {
                    char h = *j->p++;
                    cp = cp * 16 +
                         (unsigned)(isdigit((unsigned char)h) ? h - '0' : (tolower(h) - 'a' + 10));
                }
                if (cp >= 0xD800 && cp < 0xDC00 && j->end - j->p >= 6 && j->p[0] == '\\') {
                    unsigned lo = 0;
                    j->p += 2;
                    for (int i = 0; i < 4; i++) {
                        char h = *j->p++;
                        lo = lo * 16 + (unsigned)(isdigit((unsigned char)h)
                                                      ? h - '0'
                                                      : (tolower(h) - 'a' + 10));
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                if (cp < 0x80)
                    tmp[0] = (char)cp, tn = 1;
                else if (cp < 0x800)
                    tmp[0] = (char)(0xC0 | cp >> 6), tmp[1] = (char)(0x80 | (cp & 63)), tn = 2;
                else if (cp < 0x10000)
                    tmp[0] = (char)(0xE0 | cp >> 12), tmp[1] = (char)(0x80 | ((cp >> 6) & 63)),
                    tmp[2] = (char)(0x80 | (cp & 63)), tn = 3;
                else
                    tmp[0] = (char)(0xF0 | cp >> 18), tmp[1] = (char)(0x80 | ((cp >> 12) & 63)),
                    tmp[2] = (char)(0x80 | ((cp >> 6) & 63)), tmp[3] = (char)(0x80 | (cp & 63)),
                    tn = 4;
                break;
            }
            default:
                tmp[0] = e;
                break;
            }
        } else {
            tmp[0] = c;
        }
        if (n + 5 > cap) {
            char *ns = cit_realloc(s, cap *= 2);
            if (!ns) goto bad;
            s = ns;
        }
        memcpy(s + n, tmp, (size_t)tn);
        n += (size_t)tn;
    }
    if (j->p >= j->end) goto bad;
    j->p++;
    s[n] = 0;
    *out = s;
    return 0;
bad:
    cit_free(s);
    return -1;
}

static int parse_items(struct jp *j, struct tj *out, int obj)
{
    int cap = 0;
    char close = obj ? '}' : ']';
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        return 0;
    }
    for (;;) {
        char *key = NULL;
        ws(j);
        if (obj) {
            if (parse_string(j, &key)) return -1;
            ws(j);
            if (j->p >= j->end || *j->p != ':') {
                cit_free(key);
                return -1;
            }
            j->p++;
        }
        if (out->n == cap) {
            cap = cap ? 2 * cap : 8;
            out->items = cit_realloc(out->items, (size_t)cap * sizeof(struct tj));
            if (obj) out->keys = cit_realloc(out->keys, (size_t)cap * sizeof(char *));
        }
        memset(&out->items[out->n], 0, sizeof(struct tj));
        if (obj) out->keys[out->n] = key;
        out->n++;
        if (parse_value(j, &out->items[out->n - 1])) return -1;
        ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return 0;
        }
        return -1;
    }
}

static int parse_value(struct jp *j, struct tj *out)
{
    int rc;
    ws(j);
    if (j->p >= j->end || j->depth > 64) return -1;
    switch (*j->p) {
    case '{':
    case '[':
        out->type = *j->p == '{' ? TJ_OBJ : TJ_ARR;
        j->depth++;
        rc = parse_items(j, out, out->type == TJ_OBJ);
        j->depth--;
        return rc;
    case '"':
        out->type = TJ_STR;
        return parse_string(j, &out->str);
    case 't':
        out->type = TJ_BOOL, out->num = 1, j->p += 4;
        return 0;
    case 'f':
        out->type = TJ_BOOL, out->num = 0, j->p += 5;
        return 0;
    case 'n':
        out->type = TJ_NULL, j->p += 4;
        return 0;
    default: {
        char *e;
        out->type = TJ_NUM;
        out->num = strtod(j->p, &e);
        if (e == j->p) return -1;
        j->p = e;
        return 0;
    }
    }
}

static void tj_clear(struct tj *j)
{
    for (int i = 0; i < j->n; i++) {
        tj_clear(&j->items[i]);
        if (j->keys) cit_free(j->keys[i]);
    }
    cit_free(j->items);
    cit_free(j->keys);
    cit_free(j->str);
}

void tj_free(struct tj *j)
{
    if (!j) return;
    tj_clear(j);
    cit_free(j);
}

struct tj *tj_parse(const char *text, size_t len)
{
    struct jp j = {text, text + len, 0};
    struct tj *r = cit_calloc(1, sizeof(*r));
    if (!r) return NULL;
    if (parse_value(&j, r)) {
        tj_free(r);
        return NULL;
    }
    return r;
}

const struct tj *tj_get(const struct tj *obj, const char *key)
{
    if (!obj || obj->type != TJ_OBJ) return NULL;
    for (int i = 0; i < obj->n; i++)
        if (!strcmp(obj->keys[i], key)) return &obj->items[i];
    return NULL;
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0, ran = 0;
    size_t n = sizeof(tests) / sizeof(tests[0]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* servers started by the tests log each request; CITADEL_TEST_LOG=1 shows them */
    cit_log_set_level(getenv("CITADEL_TEST_LOG") ? CIT_LOG_DEBUG : CIT_LOG_WARN);
    for (size_t i = 0; i < n; i++) {
        int want = argc < 2;
        uint64_t t0;
        for (int a = 1; a < argc; a++)
            if (!strcmp(argv[a], tests[i].name)) want = 1;
        if (!want) continue;
        ran++;
        cur_failed = 0;
        cit_alloc_fail_at(0);
        t0 = cit_now_ns();
        tests[i].fn();
        cit_alloc_fail_at(0);
        printf("%s %s (%.0f ms)\n", cur_failed ? "FAIL" : "ok  ", tests[i].name,
               (double)(cit_now_ns() - t0) / 1e6);
        if (cur_failed)
            failed++;
        else
            passed++;
    }
    if (argc >= 2 && ran != argc - 1) {
        fprintf(stderr, "unknown test name given\n");
        failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

const char *t_run_node(void)
{
    static char buf[1024];
    if (!buf[0])
        snprintf(buf, sizeof(buf),
                 " --unvetted --policy tests/data/policy_serve.yaml --state %s/cli-run.db"
                 " --ledger %s/cli-run-ledger",
                 t_tmpdir(), t_tmpdir());
    return buf;
}

#ifndef TEST_ENGINE_ONLY
struct cit_db *t_state_open(const char *path, struct cit_err *err)
{
    struct cit_db *db = NULL;
    return node_state_open(path, &db, err) ? NULL : db;
}
#endif
