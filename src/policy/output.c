/*
 * Answers: the policy's 'output' section applied to generated text as it
 * grows. Each step rescans a short stretch before what was released (so
 * the detectors see the context a finding starts in) up to the end, works
 * out what is settled, and releases it with the findings acted on.
 */
#include <stdio.h>
#include <string.h>

#include "citadel/policy.h"

/* How far before the released end a step starts scanning: past any
 * finding's start (a finding that might still grow was held back from its
 * start, so none crosses the released end), moved up to a word's start. */
#define BACK 512

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int placeholder(struct cit_buf *out, int cls)
{
    const char *name = det_class_name(cls);
    char ph[48];
    size_t n = (size_t)snprintf(ph, sizeof(ph), "[REDACTED_");
    for (; *name && n + 2 < sizeof(ph); name++)
        ph[n++] = *name >= 'a' && *name <= 'z' ? (char)(*name - 'a' + 'A') : *name;
    ph[n++] = ']';
    return cit_buf_add(out, ph, n);
}

int pol_output_step(const struct pol_policy *p, struct pol_outscan *o, const char *text, size_t len,
                    size_t limit, int final, struct cit_buf *out)
{
    struct det_findings f = {0};
    size_t ws, upto, pos = o->done;
    int rc = 0;
    if (limit > len) limit = len;
    if (o->stopped || limit <= o->done) return 0;
    if (p->out_action == POL_LOCAL) {
        rc = cit_buf_add(out, text + o->done, limit - o->done);
        if (!rc) o->done = limit;
        return rc;
    }
    ws = o->done > BACK ? o->done - BACK : 0;
    while (ws < o->done && ws > 0 && !is_space(text[ws - 1])) ws++;
    if ((rc = det_scan(p->scanner, text + ws, len - ws, &f))) return rc;
    upto = final ? len : ws + det_stable_end(text + ws, len - ws, &f, p->out_hold);
    if (upto > limit) upto = limit;
    for (size_t i = 0; i < f.n && !rc && pos < upto; i++) {
        size_t s = ws + f.v[i].start, e = ws + f.v[i].end;
        int c = pol_finding_class(p, &f.v[i]);
        if (c < 0 || c < p->out_at_least || e <= pos || s >= upto) continue;
        if (s < pos) s = pos;
        o->classes |= 1u << c;
        o->n_found++;
        rc = cit_buf_add(out, text + pos, s - pos);
        if (p->out_action == POL_DENY) {
            pos = s;
            o->stopped = 1;
            break;
        }
        if (!rc) rc = placeholder(out, f.v[i].cls);
        pos = e; /* past upto only when the caller's limit cut the finding */
    }
    if (!rc && !o->stopped && pos < upto) {
        rc = cit_buf_add(out, text + pos, upto - pos);
        pos = upto;
    }
    det_findings_free(&f);
    if (!rc) o->done = pos;
    return rc;
}
