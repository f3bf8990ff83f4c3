/*
 * Redaction: findings become typed placeholders, and placeholders in an
 * answer can be turned back into what they stood for. The mapping is the
 * only copy of the sensitive values outside the request itself; it lives
 * in memory for one request and is wiped when freed.
 */
#include <stdio.h>
#include <string.h>

#include "citadel/detect.h"

static int add_mapping(struct det_redaction *r, const char *ph, const char *val, size_t vlen)
{
    char **p = cit_realloc(r->placeholder, (r->n + 1) * sizeof(*p));
    if (!p) return CIT_ENOMEM;
    r->placeholder = p;
    char **o = cit_realloc(r->original, (r->n + 1) * sizeof(*o));
    if (!o) return CIT_ENOMEM;
    r->original = o;
    size_t *ol = cit_realloc(r->original_len, (r->n + 1) * sizeof(*ol));
    if (!ol) return CIT_ENOMEM;
    r->original_len = ol;
    r->original_len[r->n] = vlen;
    r->placeholder[r->n] = cit_strndup(ph, strlen(ph));
    r->original[r->n] = cit_strndup(val, vlen);
    if (!r->placeholder[r->n] || !r->original[r->n]) {
        cit_free(r->placeholder[r->n]);
        cit_free(r->original[r->n]);
        return CIT_ENOMEM;
    }
    r->n++;
    return 0;
}

int det_redact_append(struct det_redaction *r, const char *text, size_t len,
                      const struct det_findings *f, struct cit_buf *out)
{
    size_t pos = 0;
    int rc = 0;
    for (size_t i = 0; i < f->n && !rc; i++) {
        const struct det_finding *x = &f->v[i];
        if (x->start < pos || x->end > len || x->start >= x->end)
            continue; /* merged into the last */
        const char *val = text + x->start;
        size_t vlen = x->end - x->start;
        const char *ph = NULL;
        char name[48];
        for (size_t k = 0; k < r->n && !ph; k++) /* the same value: the same placeholder */
            if (r->original_len[k] == vlen && !memcmp(r->original[k], val, vlen))
                ph = r->placeholder[k];
        if (!ph) {
            const char *cn = det_class_name(x->cls);
            size_t l = 0;
            name[l++] = '[';
            for (; cn[l - 1] && l < 32; l++)
                name[l] = (char)(cn[l - 1] >= 'a' && cn[l - 1] <= 'z' ? cn[l - 1] - 32 : cn[l - 1]);
            snprintf(name + l, sizeof(name) - l, "_%d]", ++r->count[x->cls]);
            rc = add_mapping(r, name, val, vlen);
            ph = name;
        }
        if (!rc) rc = cit_buf_add(out, text + pos, x->start - pos);
        if (!rc) rc = cit_buf_add(out, ph, strlen(ph));
        pos = x->end;
    }
    if (!rc) rc = cit_buf_add(out, text + pos, len - pos);
    if (!rc && !out->p) rc = cit_buf_add(out, "", 0);
    return rc;
}

int det_redact(const char *text, size_t len, const struct det_findings *f,
               struct det_redaction *out)
{
    struct det_redaction r = {0};
    int rc = det_redact_append(&r, text, len, f, &r.text);
    if (rc) {
        det_redaction_free(&r);
        return rc;
    }
    *out = r;
    return 0;
}

int det_restore(const struct det_redaction *r, const char *text, size_t len, struct cit_buf *b)
{
    size_t pos = 0, i = 0;
    int rc = 0;
    while (i < len && !rc) {
        const char *lb = memchr(text + i, '[', len - i);
        if (!lb) break;
        i = (size_t)(lb - text);
        size_t k = 0, pl = 0;
        for (; k < r->n; k++) {
            pl = strlen(r->placeholder[k]);
            if (pl <= len - i && !memcmp(text + i, r->placeholder[k], pl)) break;
        }
        if (k == r->n) {
            i++;
            continue;
        }
        rc = cit_buf_add(b, text + pos, i - pos);
        if (!rc) rc = cit_buf_add(b, r->original[k], r->original_len[k]);
        i += pl;
        pos = i;
    }
    if (!rc) rc = cit_buf_add(b, text + pos, len - pos);
    return rc;
}

void det_redaction_free(struct det_redaction *r)
{
    for (size_t k = 0; k < r->n; k++) {
        explicit_bzero(r->original[k], r->original_len[k]);
        cit_free(r->original[k]);
        cit_free(r->placeholder[k]);
    }
    cit_free(r->original);
    cit_free(r->original_len);
    cit_free(r->placeholder);
    if (r->text.p) explicit_bzero(r->text.p, r->text.len);
    cit_buf_free(&r->text);
    memset(r, 0, sizeof(*r));
}
