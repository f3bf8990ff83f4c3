/*
 * The gate: every request's path through the node (see node.h).
 *
 *   admit:   model -> scan -> decide -> redact -> tokens -> limits -> quota
 *   release: output rules on the settled text, then restoration
 *   finish:  ledger entry with the final status, quota settled
 *
 * Fail closed at every step: a prompt that cannot be scanned is denied, a
 * redaction that cannot be made denies, an answer that cannot be scanned
 * ends, and an answer whose ledger entry cannot be written is withheld.
 *
 * node_decide runs the first four steps through the same function
 * (decide), so the dry run and the request it describes cannot disagree.
 */
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "node_int.h"

struct node_call {
    struct node *n;
    struct node_model *m; /* a reference */
    char id[48];
    char tenant[65], key_id[NODE_KEY_ID_LEN + 1], model[128];
    uint8_t digest[32];

    struct pol_decision dec;
    int decided;
    char classes[512];      /* the decision's data classes, comma-separated */
    char decision_hdr[160]; /* "redact; rule=..." */
    struct det_redaction red;
    int restore; /* put redacted values back into the answer */

    int32_t *toks;
    int n_tok, max_tokens;
    int *in_lens, n_inputs; /* embeddings: each input's tokens in toks */
    struct pol_quota_ticket ticket;
    uint64_t sched_id;
    int submitted;

    /* a forward (the gateway's): the peer that answered, what crossed */
    int peer_used; /* policy index; -1: none answered */
    int64_t fwd_prompt;
    char *passport, *receipt; /* wire texts, owned; NULL: none */
    char purpose[64];
    char declared[512];
    /* the entry record() wrote */
    int entry_ok;
    uint64_t entry_seq;
    uint8_t entry_leaf[32];

    struct pol_outscan os; /* os.done: bytes of text released */
    int scan_failed;
    int n_gen; /* generated tokens, as the transport counted them at the end */
    int logged, settled;
};

/* ---- helpers ---- */

static void class_names(const struct pol_policy *p, uint32_t mask, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = 0;
    for (int c = 0; c < p->n_classes && n + 1 < cap; c++)
        if (mask & (1u << c))
            n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? "," : "", p->classes[c]);
}

static void set_out(struct node_outcome *o, int status, const char *type, const char *code,
                    const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void set_out(struct node_outcome *o, int status, const char *type, const char *code,
                    const char *param, const char *fmt, ...)
{
    va_list ap;
    o->status = status;
    o->type = type;
    o->code = code;
    o->param = param;
    va_start(ap, fmt);
    vsnprintf(o->msg, sizeof(o->msg), fmt, ap);
    va_end(ap);
}

static void request_id(char *out, size_t cap, const char *prefix)
{
    unsigned char rb[12];
    char hex[25];
    randombytes_buf(rb, sizeof(rb));
    sodium_bin2hex(hex, sizeof(hex), rb, sizeof(rb));
    snprintf(out, cap, "%s-%s", prefix, hex);
}

/* Appends the decision and its outcome to the ledger, once per call.
 * Decisions that send data off the node are synced before they act. */
static int record(struct node_call *c, int status, enum ledger_durability dur)
{
    struct node *n = c->n;
    struct ledger_rec e = {0};
    char out_classes[512];
    int rc;
    if (!c->decided || c->logged) return 0;
    c->logged = 1;
    e.tokens_in = c->n_tok;
    e.tokens_out = c->n_gen;
    if (c->os.n_found) {
        class_names(n->pol, c->os.classes, out_classes, sizeof(out_classes));
        e.out_classes = out_classes;
        e.out_action = c->os.stopped ? "deny" : "redact";
    }
    e.tenant = c->tenant;
    e.key_id = c->key_id;
    e.request_id = c->id;
    memcpy(e.digest, c->digest, sizeof(e.digest));
    e.classes = c->classes;
    e.rule = c->dec.rule_id;
    e.policy_hash = n->pol->hash_hex;
    e.target = c->dec.action == POL_FORWARD && c->dec.peer ? c->dec.peer : c->model;
    if (c->dec.action == POL_FORWARD && c->peer_used >= 0) {
        e.target = n->pol->peers[c->peer_used].id;
        e.tokens_in = c->fwd_prompt > 0 ? c->fwd_prompt : 0;
    }
    e.action = pol_action_name(c->dec.action);
    e.status = status;
    e.passport = c->passport;
    e.receipt = c->receipt;
    if ((rc = ledger_append_leaf(n->lg, &e, dur, &c->entry_seq, c->entry_leaf)))
        cit_log(CIT_LOG_ERROR, "ledger: cannot record request %s: %s", c->id, cit_strerror(rc));
    else
        c->entry_ok = 1;
    return rc;
}

static void call_free(struct node_call *c)
{
    if (!c) return;
    if (c->decided) pol_decision_free(&c->dec);
    det_redaction_free(&c->red);
    cit_free(c->toks);
    cit_free(c->in_lens);
    cit_free(c->passport);
    cit_free(c->receipt);
    node_model_unref(c->m);
    cit_free(c);
}

/* ---- decide: scan, decide, redact ---- */

struct seg {
    size_t off, len;
};

/* The text the engine would see, for detection: chat message contents
 * (or embedding inputs) joined by newlines (each one's place kept in
 * segs), the prompt, or the pieces of prompt token ids. */
static int scan_text(const struct node_model *m, const struct node_prompt *p, struct cit_buf *t,
                     struct seg *segs)
{
    int rc = 0;
    if (p->chat || (p->embed && !p->ids)) {
        for (int i = 0; i < p->n_msgs && !rc; i++) {
            const char *s = p->msgs[i].content ? p->msgs[i].content : "";
            if (i) rc = cit_buf_add(t, "\n", 1);
            segs[i].off = t->len;
            segs[i].len = strlen(s);
            if (!rc) rc = cit_buf_add(t, s, segs[i].len);
        }
    } else if (p->ids) {
        char piece[256];
        if (!m) return CIT_ENOENT; /* pieces need the model */
        for (int i = 0; i < p->n_ids && !rc; i++) {
            int k = p->ids[i] >= 0 && p->ids[i] < m->n_vocab
                        ? eng_token_piece(m->m, p->ids[i], 1, piece, sizeof(piece))
                        : 0;
            if (k < 0) return k;
            rc = cit_buf_add(t, piece, (size_t)k);
        }
    } else {
        const char *s = p->prompt ? p->prompt : "";
        segs[0].off = 0;
        segs[0].len = strlen(s);
        rc = cit_buf_add(t, s, segs[0].len);
    }
    if (!rc) rc = cit_buf_add(t, "", 1);
    if (!rc) t->len--;
    return rc;
}

/* Redacts each segment of text with the findings the policy counts, into
 * owned[i] (freed by the caller); a value split across two messages is
 * redacted in each of them, its part there. */
static int redact_segments(struct node_call *c, const char *text, const struct seg *segs, int n_seg,
                           char **owned)
{
    const struct pol_policy *p = c->n->pol;
    for (int i = 0; i < n_seg; i++) {
        struct det_findings sub = {0};
        struct cit_buf out = {0};
        int rc = 0;
        for (size_t k = 0; k < c->dec.findings.n && !rc; k++) {
            struct det_finding f = c->dec.findings.v[k];
            if (pol_finding_class(p, &f) < 0) continue;
            if (f.end <= segs[i].off || f.start >= segs[i].off + segs[i].len) continue;
            if (f.start < segs[i].off) f.start = segs[i].off; /* the part in this message */
            if (f.end > segs[i].off + segs[i].len) f.end = segs[i].off + segs[i].len;
            if (sub.n == sub.cap) {
                size_t cap = sub.cap ? sub.cap * 2 : 8;
                struct det_finding *v = cit_realloc(sub.v, cap * sizeof(*v));
                if (!v) {
                    rc = CIT_ENOMEM;
                    break;
                }
                sub.v = v;
                sub.cap = cap;
            }
            f.start -= segs[i].off;
            f.end -= segs[i].off;
            sub.v[sub.n++] = f;
        }
        if (!rc) rc = det_redact_append(&c->red, text + segs[i].off, segs[i].len, &sub, &out);
        if (!rc) rc = cit_buf_add(&out, "", 1);
        det_findings_free(&sub);
        if (rc) {
            if (out.p) explicit_bzero(out.p, out.len);
            cit_buf_free(&out);
            return rc;
        }
        owned[i] = out.p;
    }
    return 0;
}

static void free_owned(char **owned, int n)
{
    if (!owned) return;
    for (int i = 0; i < n; i++)
        if (owned[i]) {
            explicit_bzero(owned[i], strlen(owned[i]));
            cit_free(owned[i]);
        }
    cit_free(owned);
}

/* Decides for the call. With owned (n_seg entries) the redacted texts of a
 * redact decision are made there; the decision is in c->dec either way
 * (deny on any failure). Returns the n_seg. */
static int decide(struct node_call *c, const struct node_req *rq, char ***owned)
{
    struct node *n = c->n;
    const struct node_prompt *p = &rq->p;
    struct cit_buf t = {0};
    struct pol_request pr = {0};
    const int multi = p->chat || (p->embed && !p->ids);
    int n_seg = multi ? p->n_msgs : 1, rc;
    struct seg *segs = cit_calloc((size_t)n_seg + 1, sizeof(*segs));
    size_t *joints = NULL;
    *owned = NULL;
    rc = !segs ? CIT_ENOMEM : scan_text(c->m, p, &t, segs);
    pr.tenant = c->tenant;
    pr.model = rq->model;
    pr.text = t.p ? t.p : "";
    pr.len = t.len;
    pr.declared = rq->declared;
    if (!rc && multi && n_seg > 1) { /* the newline before each message but the first */
        if (!(joints = cit_calloc((size_t)n_seg, sizeof(*joints)))) rc = CIT_ENOMEM;
        for (int i = 1; !rc && i < n_seg; i++) joints[i - 1] = segs[i].off - 1;
        pr.joints = joints;
        pr.n_joints = (size_t)n_seg - 1;
    }
    if (rc) { /* fail closed: what cannot be scanned is not processed */
        memset(&c->dec, 0, sizeof(c->dec));
        c->dec.action = POL_DENY;
        c->dec.rule_id = "";
        snprintf(c->dec.reason, sizeof(c->dec.reason), "the prompt could not be scanned (%s)",
                 cit_strerror(rc));
    } else {
        pol_decide(n->pol, &pr, &c->dec); /* on any error the decision is deny */
    }
    c->decided = 1;
    class_names(n->pol, c->dec.classes, c->classes, sizeof(c->classes));
    if (c->dec.action == POL_REDACT) {
        if (!p->chat && p->ids) {
            c->dec.action = POL_DENY;
            snprintf(c->dec.reason, sizeof(c->dec.reason),
                     "rule '%s' redacts, and a prompt of token ids cannot be redacted; send text",
                     c->dec.rule_id);
        } else if (!(*owned = cit_calloc((size_t)n_seg + 1, sizeof(char *))) ||
                   (rc = redact_segments(c, t.p, segs, n_seg, *owned))) {
            c->dec.action = POL_DENY;
            snprintf(c->dec.reason, sizeof(c->dec.reason), "rule '%s' redacts, but %s",
                     c->dec.rule_id,
                     rc == CIT_ERANGE ? "a finding spans two messages" : "the redaction failed");
        } else {
            c->restore = c->dec.restore;
        }
        if (c->dec.action == POL_DENY) {
            free_owned(*owned, n_seg);
            *owned = NULL;
        }
    }
    snprintf(c->decision_hdr, sizeof(c->decision_hdr), "%s; rule=%s",
             pol_action_name(c->dec.action), c->dec.rule_id[0] ? c->dec.rule_id : "-");
    if (t.p) explicit_bzero(t.p, t.len);
    cit_buf_free(&t);
    cit_free(segs);
    cit_free(joints);
    return n_seg;
}

/* What a request gets for its decision when it does not go on. */
static void refusal(const struct node_call *c, struct node_outcome *out)
{
    if (c->dec.action == POL_FORWARD) {
        /* a forward the node cannot make (no gateway opened): nothing leaves */
        set_out(out, 503, "server_error", "peer_unavailable", NULL,
                "The node's policy forwards this request to peer '%s' (rule '%s'), but this node "
                "has no gateway open; nothing was sent.",
                c->dec.peer ? c->dec.peer : "?", c->dec.rule_id);
    } else if (c->dec.rule_id[0]) {
        set_out(out, 403, "permission_error", "policy_denied", NULL,
                "Denied by the node's policy (rule '%s'): %s", c->dec.rule_id, c->dec.reason);
    } else {
        set_out(out, 403, "permission_error", "policy_denied", NULL,
                "Denied by the node's policy: %s", c->dec.reason);
    }
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = cit_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static struct node_call *call_new(struct node *n, const struct node_req *rq)
{
    struct node_call *c = cit_calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->n = n;
    snprintf(c->tenant, sizeof(c->tenant), "%s", rq->tenant ? rq->tenant : "");
    snprintf(c->key_id, sizeof(c->key_id), "%s", rq->key_id ? rq->key_id : "");
    snprintf(c->model, sizeof(c->model), "%s", rq->model ? rq->model : "");
    memcpy(c->digest, rq->digest, sizeof(c->digest));
    c->peer_used = -1;
    snprintf(c->purpose, sizeof(c->purpose), "%s",
             rq->purpose && *rq->purpose ? rq->purpose : "inference");
    snprintf(c->declared, sizeof(c->declared), "%s", rq->declared ? rq->declared : "");
    if (rq->passport && !(c->passport = dup_str(rq->passport))) {
        cit_free(c);
        return NULL;
    }
    /* a name longer than any id cannot be one: never the id its first
     * bytes happen to spell */
    c->m = rq->model && strlen(rq->model) >= sizeof(c->model) ? NULL : node_model_get(n, c->model);
    return c;
}

static void no_model(struct node_outcome *out, const char *model)
{
    set_out(out, 404, "invalid_request_error", "model_not_found", "model",
            "The model '%.200s' does not exist.", model);
}

/* The key's scopes against the model (before anything is decided, so that
 * a key learns nothing about models it may not use but their existence). */
static int scope_refused(struct node_call *c, const struct node_req *rq, struct node_outcome *out)
{
    if (!rq->scopes || node_scope_allows(rq->scopes, rq->endpoint, c->model)) return 0;
    if (!c->m)
        no_model(out, c->model);
    else
        set_out(out, 403, "permission_error", "insufficient_scope", "model",
                "This API key may not use the model '%.200s'.", c->model);
    return 1;
}

/* ---- tokens and limits ---- */

/* The messages to render: the profile's guardrail first, as a system
 * message of its own, then the client's (their redacted texts where
 * owned), into msgs (room for n_msgs + 1). The guardrail is the
 * operator's: it was not scanned, and a forward never carries it (the
 * peer puts its own first).
 *
 * Llama 2 and Mistral carry one system prompt, inside the first user turn,
 * and the renderer keeps the last system message before that turn: there
 * the guardrail leads it, "\n\n" between them, in *merged (owned by the
 * caller; NULL when nothing was merged). */
static int guarded_messages(const struct pol_policy *pol, enum eng_chat_tmpl tmpl,
                            const struct node_prompt *p, char **owned, struct eng_chat_msg *msgs,
                            int *n_out, char **merged)
{
    const char *g = pol->profile.present ? pol->profile.guardrail : NULL;
    int one_sys = tmpl == ENG_CHAT_LLAMA2 || tmpl == ENG_CHAT_MISTRAL, seen_user = 0, k = 0;
    *merged = NULL;
    if (g) msgs[k++] = (struct eng_chat_msg){"system", g};
    for (int i = 0; i < p->n_msgs; i++) {
        struct eng_chat_msg e = p->msgs[i];
        if (owned) e.content = owned[i];
        if (!e.content) e.content = "";
        if (g && one_sys && !seen_user && !strcmp(e.role, "system")) {
            size_t lg = strlen(g), lc = strlen(e.content);
            char *t = cit_malloc(lg + 2 + lc + 1);
            if (!t) return CIT_ENOMEM;
            memcpy(t, g, lg);
            memcpy(t + lg, "\n\n", 2);
            memcpy(t + lg + 2, e.content, lc + 1);
            if (*merged) explicit_bzero(*merged, strlen(*merged));
            cit_free(*merged);
            *merged = t;
            msgs[0].content = t;
            continue;
        }
        seen_user |= !strcmp(e.role, "user");
        msgs[k++] = e;
    }
    *n_out = k;
    return 0;
}

/* Embeddings: each input tokenized apart (its redacted text where owned),
 * with the model's special tokens ([CLS] ... [SEP], or BOS), or its ids
 * as given; the tokens back to back, each input's count in in_lens. */
static int build_inputs(struct node_call *c, const struct node_prompt *p, char **owned,
                        struct node_outcome *out)
{
    const struct node_model *m = c->m;
    int n_in = p->ids ? p->n_inputs : p->n_msgs, total = 0, rc = 0;
    if (!(c->in_lens = cit_calloc((size_t)n_in + 1, sizeof(int)))) goto oom;
    c->n_inputs = n_in;
    if (p->ids) {
        for (int i = 0; i < p->n_ids; i++)
            if (p->ids[i] < 0 || p->ids[i] >= m->n_vocab) {
                set_out(out, 400, "invalid_request_error", NULL, "input",
                        "input: token id %d is not in the vocabulary", p->ids[i]);
                return CIT_ERANGE;
            }
        if (!(c->toks = cit_malloc((size_t)p->n_ids * sizeof(int32_t) + 1))) goto oom;
        memcpy(c->toks, p->ids, (size_t)p->n_ids * sizeof(int32_t));
        memcpy(c->in_lens, p->input_lens, (size_t)n_in * sizeof(int));
        c->n_tok = p->n_ids;
        return 0;
    }
    for (int i = 0; i < n_in; i++) {
        const char *t = owned ? owned[i] : p->msgs[i].content ? p->msgs[i].content : "";
        int n = 0;
        rc = eng_tokenize(m->m, t, strlen(t), 1, 0, NULL, 0, &n);
        if (rc && rc != CIT_EOVERFLOW) break;
        rc = 0;
        if (n > INT32_MAX / 4 - total) {
            rc = CIT_ERANGE;
            break;
        }
        c->in_lens[i] = n;
        total += n;
    }
    if (!rc && !(c->toks = cit_malloc((size_t)total * sizeof(int32_t) + 1))) goto oom;
    for (int i = 0, at = 0; i < n_in && !rc; at += c->in_lens[i++]) {
        const char *t = owned ? owned[i] : p->msgs[i].content ? p->msgs[i].content : "";
        int n = 0;
        rc = eng_tokenize(m->m, t, strlen(t), 1, 0, c->toks + at, c->in_lens[i], &n);
    }
    if (rc == CIT_ENOMEM) goto oom;
    if (rc) {
        set_out(out, 400, "invalid_request_error", NULL, "input",
                "could not tokenize the input: %s", cit_strerror(rc));
        return rc;
    }
    c->n_tok = total;
    return 0;
oom:
    set_out(out, 500, "server_error", NULL, NULL, "out of memory");
    return CIT_ENOMEM;
}

/* An embeddings call's limits: every input within what the model embeds,
 * the whole within the transport's ceiling; nothing is generated. */
static int embed_limits(struct node_call *c, const struct node_req *rq, struct node_outcome *out)
{
    const int train = eng_model_hparams(c->m->m)->n_ctx_train;
    int most = c->m->n_ctx < train ? c->m->n_ctx : train; /* the scheduler's embedder takes */
    for (int i = 0; i < c->n_inputs; i++) {
        if (c->in_lens[i] == 0) {
            set_out(out, 400, "invalid_request_error", NULL, "input",
                    "input[%d] is empty after tokenization.", i);
            return CIT_EINVAL;
        }
        if (c->in_lens[i] > most) {
            set_out(out, 400, "invalid_request_error", "context_length_exceeded", "input",
                    "input[%d] is %d tokens; this model embeds at most %d tokens per input.", i,
                    c->in_lens[i], most);
            return CIT_ERANGE;
        }
    }
    if (c->n_tok > rq->max_prompt_tokens) {
        set_out(out, 400, "invalid_request_error", "context_length_exceeded", "input",
                "The input is %d tokens in all; this server takes at most %d per request.",
                c->n_tok, rq->max_prompt_tokens);
        return CIT_ERANGE;
    }
    c->max_tokens = 0;
    return 0;
}

/* Builds the token list: chat messages through the model's template, or
 * the prompt text, or token ids as given. */
static int build_prompt(struct node_call *c, const struct node_prompt *p, char **owned,
                        struct node_outcome *out)
{
    const struct node_model *m = c->m;
    struct eng_chat_msg *msgs = NULL;
    char *rendered = NULL, *merged = NULL;
    const char *text;
    int rc, n = 0, n_msgs = 0;
    if (!p->chat && p->ids) {
        for (int i = 0; i < p->n_ids; i++)
            if (p->ids[i] >= m->n_vocab) {
                set_out(out, 400, "invalid_request_error", NULL, "prompt",
                        "prompt[%d]: token id %d is not in the vocabulary", i, p->ids[i]);
                return CIT_ERANGE;
            }
        if (!(c->toks = cit_malloc((size_t)p->n_ids * sizeof(int32_t) + 1))) goto oom;
        memcpy(c->toks, p->ids, (size_t)p->n_ids * sizeof(int32_t));
        c->n_tok = p->n_ids;
        return 0;
    }
    if (p->chat) {
        enum eng_chat_tmpl tmpl = p->tmpl_set ? p->tmpl : m->tmpl;
        /* the messages as the engine sees them: redacted where decided,
         * after the profile's guardrail */
        if (!(msgs = cit_calloc((size_t)p->n_msgs + 2, sizeof(*msgs)))) goto oom;
        rc = guarded_messages(c->n->pol, tmpl, p, owned, msgs, &n_msgs, &merged);
        if (!rc) rc = eng_chat_render(tmpl, msgs, n_msgs, 1, NULL, &rendered);
        cit_free(msgs);
        if (merged) explicit_bzero(merged, strlen(merged));
        cit_free(merged);
        if (rc) goto failed;
        text = rendered;
    } else {
        text = owned ? owned[0] : p->prompt;
    }
    rc = eng_tokenize(m->m, text, strlen(text), 1, p->chat, NULL, 0, &n);
    if (rc == CIT_EOVERFLOW || rc == 0) {
        c->toks = cit_malloc(((size_t)n + 1) * sizeof(int32_t));
        rc = c->toks ? eng_tokenize(m->m, text, strlen(text), 1, p->chat, c->toks, n, &n)
                     : CIT_ENOMEM;
    }
    if (rendered) explicit_bzero(rendered, strlen(rendered));
    cit_free(rendered);
    if (!rc) {
        c->n_tok = n;
        return 0;
    }
    cit_free(c->toks);
    c->toks = NULL;
failed:
    if (rc == CIT_ENOMEM) goto oom;
    set_out(out, 400, "invalid_request_error", NULL, p->chat ? "messages" : "prompt",
            "could not build the prompt: %s", cit_strerror(rc));
    return rc;
oom:
    set_out(out, 500, "server_error", NULL, NULL, "out of memory");
    return CIT_ENOMEM;
}

static int check_limits(struct node_call *c, const struct node_req *rq, struct node_outcome *out)
{
    const char *pfield = rq->p.chat ? "messages" : "prompt";
    int n_ctx = c->m->n_ctx, avail = n_ctx - c->n_tok;
    if (c->n_tok == 0) {
        set_out(out, 400, "invalid_request_error", NULL, pfield,
                "The prompt is empty after tokenization.");
        return CIT_EINVAL;
    }
    if (c->n_tok > rq->max_prompt_tokens || avail < 1) {
        set_out(out, 400, "invalid_request_error", "context_length_exceeded", pfield,
                "The prompt is %d tokens; this server takes at most %d (context %d, with room "
                "for at least one generated token).",
                c->n_tok, rq->max_prompt_tokens < n_ctx - 1 ? rq->max_prompt_tokens : n_ctx - 1,
                n_ctx);
        return CIT_ERANGE;
    }
    /* the profile's cap lowers what is asked before any limit is checked:
     * a request over it is served shorter, and told so, not refused */
    int want = rq->max_tokens, cap = c->n->pol->profile.output.max_tokens;
    if (cap > 0 && want > cap) {
        snprintf(out->max_tokens_note, sizeof(out->max_tokens_note), "%d; requested=%d", cap, want);
        want = cap;
    }
    if (want > rq->max_tokens_limit) {
        set_out(out, 400, "invalid_request_error", NULL, "max_tokens",
                "'max_tokens' is %d; this server allows at most %d.", want, rq->max_tokens_limit);
        return CIT_ERANGE;
    }
    if (want > avail) {
        set_out(out, 400, "invalid_request_error", "context_length_exceeded", "max_tokens",
                "This model's context is %d tokens; the prompt is %d and 'max_tokens' asks for "
                "%d more.",
                n_ctx, c->n_tok, want);
        return CIT_ERANGE;
    }
    c->max_tokens = want ? want : (avail < rq->max_tokens_limit ? avail : rq->max_tokens_limit);
    if (cap > 0 && c->max_tokens > cap) { /* none asked: the default, capped */
        snprintf(out->max_tokens_note, sizeof(out->max_tokens_note), "%d", cap);
        c->max_tokens = cap;
    }
    return 0;
}

/* Admits the call against the tenant's quotas, capping max_tokens to what
 * the day's budget has left. */
static int charge(struct node_call *c, struct node_outcome *out)
{
    struct node *n = c->n;
    struct pol_quota_ticket *k = &c->ticket;
    int t = pol_tenant_index(n->pol, c->tenant), rc;
    int64_t now = (int64_t)time(NULL);
    char when[32];
    if (t < 0)
        rc = CIT_ENOENT; /* the decision checked it; fail closed anyway */
    else
        rc = pol_quota_admit(n->quotas, c->tenant, &n->pol->tenants[t].quota, c->n_tok,
                             c->max_tokens, now, k);
    if (!rc) {
        c->max_tokens = (int)k->out;
        return 0;
    }
    if (rc != CIT_EOVERFLOW) {
        set_out(out, 503, "server_error", NULL, NULL,
                "The quota state cannot be read or stored; the request was refused.");
        out->retry_after_s = 1;
        return rc;
    }
    snprintf(out->quota.which, sizeof(out->quota.which), "%s", k->which);
    out->quota.limit = k->limit;
    out->quota.used = k->used;
    out->quota.reset = k->reset;
    out->quota.now = now;
    if (k->reset) {
        cit_utc_seconds(k->reset, when);
        set_out(out, 429, "rate_limit_error", out->quota.which, NULL,
                "Tenant '%s' has used its quota %s (%lld); it resets at %s, in %lld s.", c->tenant,
                k->which, (long long)k->limit, when, (long long)(k->reset - now));
        out->retry_after_s = (int)(k->reset - now > 0 ? k->reset - now : 1);
    } else {
        set_out(out, 429, "rate_limit_error", out->quota.which, NULL,
                "Tenant '%s' has %lld requests in flight, its quota %s; retry when one ends.",
                c->tenant, (long long)k->used, k->which);
        out->retry_after_s = 1;
    }
    return rc;
}

/* A forward's limits: max_tokens against the transport's ceiling (the
 * prompt is the peer's to measure). */
static int forward_limits(struct node_call *c, const struct node_req *rq, struct node_outcome *out)
{
    if (rq->max_tokens > rq->max_tokens_limit) {
        set_out(out, 400, "invalid_request_error", NULL, "max_tokens",
                "'max_tokens' is %d; this server allows at most %d.", rq->max_tokens,
                rq->max_tokens_limit);
        return CIT_ERANGE;
    }
    c->max_tokens = rq->max_tokens ? rq->max_tokens : rq->max_tokens_limit;
    return 0;
}

/* A model asked for what it does not do: embeddings of a model that names
 * no pooling, text from an encoder. */
static int kind_refused(struct node_call *c, const struct node_req *rq, struct node_outcome *out)
{
    const struct eng_hparams *hp;
    if (!c->m) return 0;
    hp = eng_model_hparams(c->m->m);
    if (rq->p.embed && (hp->pooling == ENG_POOL_NONE || hp->pooling == ENG_POOL_RANK)) {
        set_out(out, 400, "invalid_request_error", "model_not_embedding", "model",
                "The model '%.200s' is not an embedding model: its file names no pooling type "
                "(%s.pooling_type).",
                c->model, eng_arch_name(hp->arch));
        return 1;
    }
    if (!rq->p.embed && !hp->causal) {
        set_out(out, 400, "invalid_request_error", "model_embeddings_only", "model",
                "The model '%.200s' is an embedding model (%s); it answers /v1/embeddings only.",
                c->model, eng_arch_name(hp->arch));
        return 1;
    }
    return 0;
}

/* Records a refusal; the outcome names its entry (a peer's receipt does). */
static void refused(struct node_call *c, struct node_outcome *out, enum ledger_durability d)
{
    if (record(c, out->status, d) || !c->entry_ok) return;
    out->recorded = 1;
    out->seq = c->entry_seq;
    memcpy(out->leaf, c->entry_leaf, sizeof(out->leaf));
}

/* ---- admit, decide ---- */

int node_admit(struct node *n, const struct node_req *rq, struct node_call **call,
               struct node_outcome *out)
{
    struct node_call *c;
    char **owned = NULL;
    int n_seg, rc;
    memset(out, 0, sizeof(*out));
    *call = NULL;
    if (!n->pol || !n->lg) {
        set_out(out, 503, "server_error", NULL, NULL, "The node has no policy or ledger.");
        return CIT_EINVAL;
    }
    if (!(c = call_new(n, rq))) {
        set_out(out, 500, "server_error", NULL, NULL, "out of memory");
        return CIT_ENOMEM;
    }
    if (scope_refused(c, rq, out)) {
        call_free(c);
        return CIT_EINVAL;
    }
    /* a model served here, or one the policy lists that a peer may serve */
    if (!c->m && (!node_policy_lists_model(n, c->model) || (!rq->p.chat && rq->p.ids))) {
        no_model(out, c->model);
        call_free(c);
        return CIT_ENOENT;
    }
    if (kind_refused(c, rq, out)) {
        call_free(c);
        return CIT_EINVAL;
    }
    request_id(c->id, sizeof(c->id), rq->p.embed ? "embd" : rq->id_chat ? "chatcmpl" : "cmpl");
    n_seg = decide(c, rq, &owned);
    snprintf(out->decision, sizeof(out->decision), "%s", c->decision_hdr);
    if (c->dec.action == POL_FORWARD && rq->p.embed) {
        /* the gateway carries answers of text: an embedding is made here
         * or not at all */
        free_owned(owned, n_seg);
        set_out(out, 403, "permission_error", "forward_unsupported", NULL,
                "The node's policy forwards this request to peer '%s' (rule '%s'); embeddings "
                "are computed on this node or not at all, so nothing was sent.",
                c->dec.peer ? c->dec.peer : "?", c->dec.rule_id);
        refused(c, out, LEDGER_SYNC);
        call_free(c);
        return CIT_EINVAL;
    }
    if (c->dec.action == POL_FORWARD && n->gw) { /* the peer renders and tokenizes */
        free_owned(owned, n_seg);
        rc = forward_limits(c, rq, out);
    } else {
        if (!c->m && c->dec.action != POL_DENY) { /* it would run here, and is not loaded */
            free_owned(owned, n_seg);
            no_model(out, c->model);
            call_free(c);
            return CIT_ENOENT;
        }
        if (c->dec.action != POL_LOCAL && c->dec.action != POL_REDACT) {
            refusal(c, out);
            refused(c, out, c->dec.action == POL_FORWARD ? LEDGER_SYNC : LEDGER_GROUP);
            call_free(c);
            return CIT_EINVAL;
        }
        if (rq->p.embed) {
            rc = build_inputs(c, &rq->p, owned, out);
            if (!rc) rc = embed_limits(c, rq, out);
        } else {
            rc = build_prompt(c, &rq->p, owned, out);
            if (!rc) rc = check_limits(c, rq, out);
        }
        free_owned(owned, n_seg); /* the redacted texts are in the tokens now */
    }
    if (!rc) rc = charge(c, out);
    if (rc) {
        refused(c, out, LEDGER_GROUP);
        call_free(c);
        return rc;
    }
    out->status = 200;
    *call = c;
    return 0;
}

int node_decide(struct node *n, const struct node_req *rq, struct node_verdict *v)
{
    struct node_call *c;
    char **owned = NULL;
    int n_seg;
    memset(v, 0, sizeof(*v));
    if (!n->pol) {
        set_out(&v->out, 503, "server_error", NULL, NULL, "The node has no policy.");
        return CIT_EINVAL;
    }
    if (!(c = call_new(n, rq))) {
        set_out(&v->out, 500, "server_error", NULL, NULL, "out of memory");
        return CIT_ENOMEM;
    }
    if (scope_refused(c, rq, &v->out)) {
        call_free(c);
        return CIT_EINVAL;
    }
    if (!c->m && !rq->p.chat && rq->p.ids) { /* token ids read only through their model */
        no_model(&v->out, c->model);
        call_free(c);
        return CIT_ENOENT;
    }
    n_seg = decide(c, rq, &owned);
    free_owned(owned, n_seg);
    v->action = pol_action_name(c->dec.action);
    v->rule = c->dec.rule_id;
    v->peer = c->dec.action == POL_FORWARD ? c->dec.peer : NULL;
    snprintf(v->reason, sizeof(v->reason), "%s", c->dec.reason);
    snprintf(v->classes, sizeof(v->classes), "%s", c->classes);
    v->policy_hash = n->pol->hash_hex;
    snprintf(v->out.decision, sizeof(v->out.decision), "%s", c->decision_hdr);
    if (c->dec.action == POL_FORWARD && n->gw && node_policy_lists_model(n, c->model)) {
        char why[600];
        if (gw_usable(n->gw, c->dec.fwd, c->dec.n_fwd, why, sizeof(why)))
            v->out.status = 200; /* the gateway would send it */
        else
            set_out(&v->out, 503, "server_error", "peer_unavailable", NULL,
                    "No peer the policy names could take the request (%s).", why);
    } else if (!c->m)
        no_model(&v->out, c->model); /* the request itself would end there */
    else if (c->dec.action != POL_LOCAL && c->dec.action != POL_REDACT)
        refusal(c, &v->out);
    else
        v->out.status = 200;
    if (c->dec.findings.n && (v->findings = cit_calloc(c->dec.findings.n, sizeof(*v->findings)))) {
        for (size_t i = 0; i < c->dec.findings.n; i++) {
            const struct det_finding *f = &c->dec.findings.v[i];
            int k = pol_finding_class(n->pol, f);
            v->findings[i] =
                (struct node_finding){det_class_name(f->cls), k >= 0 ? n->pol->classes[k] : NULL,
                                      f->start, f->end, f->confidence};
        }
        v->n_findings = c->dec.findings.n;
    }
    /* the strings point into the policy, which outlives the verdict; the
     * rule id and peer too */
    call_free(c);
    return 0;
}

void node_verdict_free(struct node_verdict *v)
{
    cit_free(v->findings);
    v->findings = NULL;
    v->n_findings = 0;
}

/* ---- a call ---- */

const char *node_call_id(const struct node_call *c)
{
    return c->id;
}

const char *node_call_model(const struct node_call *c)
{
    return c->model;
}

int node_call_slot(const struct node_call *c)
{
    return c->m && c->dec.action != POL_FORWARD ? c->m->slot : -1;
}

uint64_t node_call_model_gen(const struct node_call *c)
{
    return c->m ? c->m->gen : 0;
}

const char *node_call_decision(const struct node_call *c)
{
    return c->decision_hdr;
}

const int32_t *node_call_tokens(const struct node_call *c, int *n)
{
    *n = c->n_tok;
    return c->toks;
}

int node_call_is_eog(const struct node_call *c, int32_t tok)
{
    return c->m ? eng_token_is_eog(c->m->m, tok) : 0;
}

const struct eng_model *node_call_engine(const struct node_call *c)
{
    return c->m && c->dec.action != POL_FORWARD ? c->m->m : NULL;
}

int node_call_inputs(const struct node_call *c, const int **lens)
{
    *lens = c->in_lens;
    return c->n_inputs;
}

int node_call_submit_embed(struct node_call *c, float *out, int normalize, sched_cb cb, void *user)
{
    struct sched_req q = {0};
    if (!c->in_lens) return CIT_EINVAL; /* not an embeddings call */
    q.embed = 1;
    q.input_lens = c->in_lens;
    q.n_inputs = c->n_inputs;
    q.normalize = normalize;
    q.embd_out = out;
    return node_call_submit(c, &q, cb, user);
}

int node_call_submit(struct node_call *c, struct sched_req *q, sched_cb cb, void *user)
{
    int rc;
    if (!c->m || c->dec.action == POL_FORWARD) return CIT_EINVAL; /* the gateway's */
    if (!q->embed != !c->in_lens) return CIT_EINVAL;
    q->prompt = c->toks;
    q->n_prompt = c->n_tok;
    q->max_tokens = c->max_tokens;
    rc = atomic_load(&c->m->gone) ? CIT_EOVERFLOW
                                  : sched_submit(c->m->sched, q, cb, user, &c->sched_id);
    if (rc) {
        /* it never ran: the tenant is not charged for it */
        pol_quota_cancel(c->n->quotas, c->tenant, &c->ticket, (int64_t)time(NULL));
        c->settled = 1;
        return rc;
    }
    c->submitted = 1;
    return 0;
}

void node_call_cancel(struct node_call *c)
{
    if (c->submitted) sched_cancel(c->m->sched, c->sched_id);
}

/* How much of text[from, len) can be restored and sent now: a trailing
 * '[' that may open a placeholder not yet complete is held back. */
static size_t restore_safe_end(const char *p, size_t from, size_t len)
{
    for (size_t i = len; i > from; i--) {
        if (p[i - 1] == ']') return len;
        if (p[i - 1] == '[') return len - (i - 1) < 48 ? i - 1 : len;
    }
    return len;
}

int node_release(struct node_call *c, const char *text, size_t len, int done, struct cit_buf *piece)
{
    const char *t = text ? text : "";
    size_t lim = c->restore && !done ? restore_safe_end(t, c->os.done, len) : len;
    struct cit_buf raw = {0};
    int rc;
    if (c->scan_failed) return 0;
    /* the output rules see the model's own text; placeholders are put back after */
    rc = pol_output_step(c->n->pol, &c->os, t, len, lim, done, c->restore ? &raw : piece);
    if (!rc && raw.len) rc = det_restore(&c->red, raw.p, raw.len, piece);
    if (raw.p) explicit_bzero(raw.p, raw.len);
    cit_buf_free(&raw);
    if (rc) {
        cit_log(CIT_LOG_ERROR, "request %s: the answer could not be scanned: %s", c->id,
                cit_strerror(rc));
        if (piece->p) explicit_bzero(piece->p, piece->len);
        piece->len = 0;
        c->scan_failed = 1;
    }
    return rc;
}

size_t node_call_released(const struct node_call *c)
{
    return c->os.done;
}

void node_call_state(const struct node_call *c, struct node_call_state *st)
{
    memset(st, 0, sizeof(*st));
    st->stopped = c->os.stopped;
    st->scan_failed = c->scan_failed;
    if (c->m && c->dec.action != POL_FORWARD && atomic_load(&c->m->gone)) {
        st->model_gone = 1;
        snprintf(st->gone_why, sizeof(st->gone_why), "%s", c->m->gone_why);
    }
}

int node_finish(struct node_call *c, int status, int n_gen)
{
    int rc;
    if (!c) return 0;
    c->n_gen = n_gen;
    rc = record(c, status, LEDGER_GROUP);
    if (c->ticket.admitted && !c->settled) {
        pol_quota_finish(c->n->quotas, c->tenant, &c->ticket,
                         n_gen + (c->fwd_prompt > 0 ? c->fwd_prompt : 0), (int64_t)time(NULL));
        c->settled = 1;
    }
    return rc;
}

void node_call_free(struct node_call *c, int status, int n_gen)
{
    if (!c) return;
    node_finish(c, status, n_gen);
    call_free(c);
}

/* ---- forwards ---- */

int node_call_forwards(const struct node_call *c)
{
    return c->dec.action == POL_FORWARD;
}

void node_call_send_fill(const struct node_call *c, struct gw_send *s)
{
    const struct node *n = c->n;
    struct gw_passport *p = &s->pass;
    s->peers = c->dec.fwd;
    s->n_peers = c->dec.n_fwd;
    s->max_class = c->dec.max_class;
    memset(p, 0, sizeof(*p));
    snprintf(p->origin, sizeof(p->origin), "%s", n->pol->node_id);
    snprintf(p->origin_jurisdiction, sizeof(p->origin_jurisdiction), "%s", n->pol->jurisdiction);
    snprintf(p->classes, sizeof(p->classes), "%s", c->classes);
    snprintf(p->declared, sizeof(p->declared), "%s", c->declared);
    snprintf(p->policy, sizeof(p->policy), "%s", n->pol->hash_hex);
    snprintf(p->rule, sizeof(p->rule), "%s", c->dec.rule_id);
    snprintf(p->purpose, sizeof(p->purpose), "%s", c->purpose);
}

static void set_wire(char **dst, const char *wire)
{
    cit_free(*dst);
    *dst = wire && wire[0] ? dup_str(wire) : NULL;
}

void node_call_forwarded(struct node_call *c, const struct gw_result *r)
{
    /* earlier attempts that reached a peer: an entry each, as their own */
    for (int i = 0; i < r->n_prior; i++) {
        const struct gw_attempt *a = &r->prior[i];
        struct ledger_rec e = {0};
        e.tenant = c->tenant;
        e.key_id = c->key_id;
        e.request_id = c->id;
        memcpy(e.digest, c->digest, sizeof(e.digest));
        e.classes = c->classes;
        e.rule = c->dec.rule_id;
        e.policy_hash = c->n->pol->hash_hex;
        e.target = c->n->pol->peers[a->peer].id;
        e.action = "forward";
        e.status = a->status;
        e.passport = a->passport[0] ? a->passport : NULL;
        e.receipt = a->receipt[0] ? a->receipt : NULL;
        if (ledger_append(c->n->lg, &e, LEDGER_GROUP, NULL))
            cit_log(CIT_LOG_ERROR, "ledger: cannot record request %s's attempt at '%s'", c->id,
                    e.target);
    }
    c->peer_used = r->peer;
    c->fwd_prompt = r->prompt_tokens;
    set_wire(&c->passport, r->passport);
    set_wire(&c->receipt, r->receipt);
}

int node_call_entry(const struct node_call *c, uint64_t *seq, uint8_t leaf[32])
{
    if (!c->entry_ok) return CIT_ENOENT;
    *seq = c->entry_seq;
    memcpy(leaf, c->entry_leaf, 32);
    return 0;
}

/* ---- usage ---- */

int node_usage(struct node *n, const char *tenant, struct node_usage *u)
{
    struct pol_quota_state q;
    const struct pol_quota *lim;
    int t;
    memset(u, 0, sizeof(*u));
    if (!n->pol || !n->quotas || (t = pol_tenant_index(n->pol, tenant)) < 0) return CIT_ENOENT;
    lim = &n->pol->tenants[t].quota;
    u->now = (int64_t)time(NULL);
    pol_quota_usage(n->quotas, tenant, u->now, &q);
    *u = (struct node_usage){lim->requests_per_minute,
                             q.requests,
                             q.minute_reset,
                             lim->tokens_per_day,
                             q.tokens,
                             q.reserved,
                             q.day_reset,
                             lim->concurrent,
                             q.concurrent,
                             u->now};
    return 0;
}
