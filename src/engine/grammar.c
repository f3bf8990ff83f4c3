/*
 * Grammar-constrained sampling: a JSON grammar (a tree of value nodes that
 * a schema compiler builds), a pushdown matcher over bytes, and the mask of
 * the tokens that may come next (see include/citadel/engine.h).
 *
 * The matcher is deterministic: its state is a stack of frames, one per
 * JSON value being read, and every byte either moves the top frame, pushes
 * a child (a member's value, an array item), or ends the top value and is
 * read again by its parent (a number ends only at the byte after it). An
 * anyOf picks its alternative by the first byte, which is why their
 * first-byte sets must be disjoint (eng_gram_finish checks).
 *
 * The mask for a state is found in one of two ways:
 *   - inside a string without a length limit, where most of an answer's
 *     tokens are chosen, every "plain" token (printable bytes, whole UTF-8
 *     characters, no quote, backslash or control byte) is allowed as it
 *     is, so the mask starts as the precomputed plain set and only the
 *     other tokens are tried one by one;
 *   - elsewhere, a walk over a byte trie of the vocabulary, which feeds
 *     each trie edge once and skips a whole subtree at the first byte the
 *     grammar refuses.
 * tests/test_grammar.c checks both against feeding every token alone.
 *
 * What the matcher lets a model write is a subset of the values the schema
 * allows, chosen to be finite and unambiguous: members in the schema's
 * order (optional ones may be left out), no \u escapes, whitespace between
 * tokens as in compact or indented JSON (ws_take), at most GRAM_MAX_DIGITS digits
 * per part of a number (two in an exponent: every number is a finite
 * double), nesting up to GRAM_MAX_DEPTH.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "eng_int.h"

#define GRAM_MAX_DEPTH  32
#define GRAM_MAX_WS     32
#define GRAM_MAX_DIGITS 16
#define GRAM_MAX_EXP    2 /* 1e99 at most: every value stays a finite double */
#define GRAM_MAX_NODES  65536
#define GRAM_MAX_SET    64 /* literals of one enum, properties of one object */

enum gkind {
    G_NONE, /* reserved, not yet set */
    G_ANY,
    G_OBJECT,
    G_MAP,
    G_ARRAY,
    G_STRING,
    G_NUMBER,
    G_INTEGER,
    G_LITERALS,
    G_ANYOF,
};

struct gnode {
    uint8_t kind;
    int32_t a, b;  /* string: min, max length; array: min, max items (-1: none) */
    int32_t c;     /* array: item node; map: value node */
    int32_t l0, n; /* literals, object keys: [l0, l0 + n) of g->lits; anyof: of g->alts */
    uint8_t first[32];
};

struct glit {
    uint32_t off, len;
    int32_t value;    /* an object key's: its member's value node */
    uint8_t required; /* an object key's: the member must be there */
};

struct eng_gram {
    atomic_int refs;
    int finished, root, tfn; /* tfn: the literals true, false, null */
    struct gnode *nodes;
    int n_nodes, cap_nodes;
    struct glit *lits;
    int n_lits, cap_lits;
    int32_t *alts; /* anyOf alternatives */
    int n_alts, cap_alts;
    struct cit_buf bytes;
};

/* ---- building ---- */

static int grow(void **p, int *cap, int need, size_t size)
{
    int c = *cap ? *cap : 16;
    void *q;
    if (need <= *cap) return 0;
    while (c < need) c *= 2;
    q = cit_realloc(*p, (size_t)c * size);
    if (!q) return CIT_ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static int add_lit(struct eng_gram *g, const char *s, size_t n)
{
    if (n == 0 || n > (1u << 20) || g->bytes.len + n > (1u << 26)) return CIT_EINVAL;
    if (grow((void **)&g->lits, &g->cap_lits, g->n_lits + 1, sizeof(*g->lits)) ||
        cit_buf_add(&g->bytes, s, n))
        return CIT_ENOMEM;
    g->lits[g->n_lits++] = (struct glit){(uint32_t)(g->bytes.len - n), (uint32_t)n, -1, 0};
    return g->n_lits - 1;
}

int eng_gram_new(struct eng_gram **out)
{
    struct eng_gram *g = cit_calloc(1, sizeof(*g));
    static const char *const tfn[] = {"true", "false", "null"};
    int id;
    if (!g) return CIT_ENOMEM;
    atomic_init(&g->refs, 1);
    g->root = -1;
    if ((id = eng_gram_add(g)) < 0 || (g->tfn = id, eng_gram_set_literals(g, id, tfn, NULL, 3))) {
        eng_gram_free(g);
        return CIT_ENOMEM;
    }
    *out = g;
    return 0;
}

struct eng_gram *eng_gram_ref(struct eng_gram *g)
{
    if (g) atomic_fetch_add(&g->refs, 1);
    return g;
}

void eng_gram_free(struct eng_gram *g)
{
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1) return;
    cit_free(g->nodes);
    cit_free(g->lits);
    cit_free(g->alts);
    cit_buf_free(&g->bytes);
    cit_free(g);
}

int eng_gram_add(struct eng_gram *g)
{
    if (g->finished) return CIT_EINVAL;
    if (g->n_nodes >= GRAM_MAX_NODES) return CIT_ERANGE;
    if (grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof(*g->nodes)))
        return CIT_ENOMEM;
    memset(&g->nodes[g->n_nodes], 0, sizeof(*g->nodes));
    return g->n_nodes++;
}

/* The node to set: reserved and not yet set. */
static struct gnode *settable(struct eng_gram *g, int id)
{
    if (g->finished || id < 0 || id >= g->n_nodes || g->nodes[id].kind != G_NONE) return NULL;
    return &g->nodes[id];
}

static int valid_ref(const struct eng_gram *g, int id)
{
    return id >= 0 && id < g->n_nodes;
}

int eng_gram_set_any(struct eng_gram *g, int id)
{
    struct gnode *n = settable(g, id);
    if (!n) return CIT_EINVAL;
    n->kind = G_ANY;
    return 0;
}

int eng_gram_set_string(struct eng_gram *g, int id, int min_len, int max_len)
{
    struct gnode *n = settable(g, id);
    if (!n || min_len < 0 || max_len < -1 || (max_len >= 0 && max_len < min_len)) return CIT_EINVAL;
    n->kind = G_STRING;
    n->a = min_len;
    n->b = max_len;
    return 0;
}

int eng_gram_set_number(struct eng_gram *g, int id, int integer)
{
    struct gnode *n = settable(g, id);
    if (!n) return CIT_EINVAL;
    n->kind = integer ? G_INTEGER : G_NUMBER;
    return 0;
}

int eng_gram_set_literals(struct eng_gram *g, int id, const char *const *lits, const size_t *lens,
                          int count)
{
    struct gnode *n = settable(g, id);
    int l0 = g->n_lits, rc;
    if (!n || count < 1 || count > GRAM_MAX_SET) return CIT_EINVAL;
    for (int i = 0; i < count; i++)
        if ((rc = add_lit(g, lits[i], lens ? lens[i] : strlen(lits[i]))) < 0) {
            g->n_lits = l0;
            return rc;
        }
    n = &g->nodes[id];
    n->kind = G_LITERALS;
    n->l0 = l0;
    n->n = count;
    return 0;
}

int eng_gram_set_array(struct eng_gram *g, int id, int item, int min_items, int max_items)
{
    struct gnode *n = settable(g, id);
    if (!n || !valid_ref(g, item) || min_items < 0 || max_items < -1 ||
        (max_items >= 0 && max_items < min_items))
        return CIT_EINVAL;
    n->kind = G_ARRAY;
    n->a = min_items;
    n->b = max_items;
    n->c = item;
    return 0;
}

int eng_gram_set_object(struct eng_gram *g, int id, const char *const *keys, const size_t *key_lens,
                        const int *values, const unsigned char *required, int count)
{
    struct gnode *n = settable(g, id);
    int l0 = g->n_lits, rc;
    if (!n || count < 0 || count > GRAM_MAX_SET) return CIT_EINVAL;
    for (int i = 0; i < count; i++) {
        size_t len = key_lens ? key_lens[i] : strlen(keys[i]);
        /* a JSON string: the matcher relies on keys ending in their quote */
        if (len < 2 || keys[i][0] != '"' || keys[i][len - 1] != '"' || !valid_ref(g, values[i]))
            return CIT_EINVAL;
        for (int j = 0; j < i; j++) {
            size_t lj = key_lens ? key_lens[j] : strlen(keys[j]);
            if (lj == len && !memcmp(keys[i], keys[j], len)) return CIT_EINVAL;
        }
    }
    for (int i = 0; i < count; i++)
        if ((rc = add_lit(g, keys[i], key_lens ? key_lens[i] : strlen(keys[i]))) < 0) {
            g->n_lits = l0;
            return rc;
        }
    n = &g->nodes[id];
    n->kind = G_OBJECT;
    n->l0 = l0;
    n->n = count;
    for (int i = 0; i < count; i++) {
        g->lits[l0 + i].value = values[i];
        g->lits[l0 + i].required = required && required[i];
    }
    return 0;
}

int eng_gram_set_map(struct eng_gram *g, int id, int value)
{
    struct gnode *n = settable(g, id);
    if (!n || !valid_ref(g, value)) return CIT_EINVAL;
    n->kind = G_MAP;
    n->c = value;
    return 0;
}

int eng_gram_set_anyof(struct eng_gram *g, int id, const int *alts, int count)
{
    struct gnode *n = settable(g, id);
    if (!n || count < 1 || count > GRAM_MAX_SET) return CIT_EINVAL;
    for (int i = 0; i < count; i++)
        if (!valid_ref(g, alts[i]) || alts[i] == id) return CIT_EINVAL;
    if (grow((void **)&g->alts, &g->cap_alts, g->n_alts + count, sizeof(*g->alts)))
        return CIT_ENOMEM;
    n = &g->nodes[id];
    memcpy(g->alts + g->n_alts, alts, (size_t)count * sizeof(int));
    n->kind = G_ANYOF;
    n->l0 = g->n_alts;
    g->n_alts += count;
    n->n = count;
    return 0;
}

static void set_bit(uint8_t *s, unsigned b)
{
    s[b >> 3] |= (uint8_t)(1u << (b & 7));
}

static int has_bit(const uint8_t *s, unsigned b)
{
    return s[b >> 3] >> (b & 7) & 1;
}

static void set_chars(uint8_t *s, const char *chars)
{
    for (; *chars; chars++) set_bit(s, (unsigned char)*chars);
}

int eng_gram_finish(struct eng_gram *g, int root, int *bad_node)
{
    int changed = 1;
    *bad_node = -1;
    if (g->finished || !valid_ref(g, root)) return CIT_EINVAL;
    for (int i = 0; i < g->n_nodes; i++) {
        struct gnode *n = &g->nodes[i];
        memset(n->first, 0, sizeof(n->first));
        switch (n->kind) {
        case G_NONE:
            *bad_node = i;
            return CIT_EINVAL;
        case G_ANY:
            set_chars(n->first, "{[\"-0123456789tfn");
            break;
        case G_OBJECT:
        case G_MAP:
            set_bit(n->first, '{');
            break;
        case G_ARRAY:
            set_bit(n->first, '[');
            break;
        case G_STRING:
            set_bit(n->first, '"');
            break;
        case G_NUMBER:
        case G_INTEGER:
            set_chars(n->first, "-0123456789");
            break;
        case G_LITERALS:
            for (int j = 0; j < n->n; j++)
                set_bit(n->first, (unsigned char)g->bytes.p[g->lits[n->l0 + j].off]);
            break;
        }
    }
    /* an anyOf begins with what its alternatives begin with */
    while (changed) {
        changed = 0;
        for (int i = 0; i < g->n_nodes; i++) {
            struct gnode *n = &g->nodes[i];
            if (n->kind != G_ANYOF) continue;
            for (int j = 0; j < n->n; j++) {
                const uint8_t *f = g->nodes[g->alts[n->l0 + j]].first;
                for (int k = 0; k < 32; k++)
                    if ((n->first[k] | f[k]) != n->first[k]) n->first[k] |= f[k], changed = 1;
            }
        }
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const struct gnode *n = &g->nodes[i];
        uint8_t seen[32] = {0}, any = 0;
        if (n->kind != G_ANYOF) continue;
        for (int j = 0; j < n->n; j++) {
            const uint8_t *f = g->nodes[g->alts[n->l0 + j]].first;
            for (int k = 0; k < 32; k++) {
                if (seen[k] & f[k]) {
                    *bad_node = i; /* two alternatives begin alike */
                    return CIT_EINVAL;
                }
                seen[k] |= f[k];
                any |= f[k];
            }
        }
        if (!any) {
            *bad_node = i; /* alternatives that are only each other */
            return CIT_EINVAL;
        }
    }
    g->root = root;
    g->finished = 1;
    return 0;
}

/* ---- matching ---- */

enum frame_kind { FR_VALUE, FR_OBJ, FR_MAP, FR_ARR, FR_STR, FR_NUM, FR_LIT };

enum {
    /* FR_OBJ and FR_MAP */
    O_OPEN,
    O_KEY,
    O_COLON,
    O_VALUE,
    O_NEXT,
    /* FR_ARR */
    A_OPEN = 0,
    A_VALUE,
    A_NEXT,
    /* FR_STR */
    S_BODY = 0,
    S_ESC,
    S_UTF,
    /* FR_NUM */
    N_START = 0,
    N_MINUS,
    N_ZERO,
    N_INT,
    N_DOT,
    N_FRAC,
    N_E,
    N_ESIGN,
    N_EXP,
};

struct frame {
    int32_t node;
    uint8_t kind, sub, ws;
    uint8_t lo, hi; /* string: the range of the next continuation byte */
    int32_t n;      /* string: characters; array: items; object: next property; number: digits;
                       literal, key: bytes matched; string: continuation bytes pending (k) */
    int32_t k;      /* object: the member being read; string: continuation bytes pending */
    uint64_t alive; /* literal, key: the candidates still matching */
};

struct eng_gram_state {
    const struct eng_gram *g;
    int depth;
    struct frame f[GRAM_MAX_DEPTH];
    /* scratch for eng_gram_mask: one state per trie level (copied top
     * frames only), allocated on first use */
    struct eng_gram_state *lv;
    int n_lv;
};

int eng_gram_state_new(const struct eng_gram *g, struct eng_gram_state **out)
{
    struct eng_gram_state *s;
    if (!g->finished) return CIT_EINVAL;
    s = cit_calloc(1, sizeof(*s));
    if (!s) return CIT_ENOMEM;
    s->g = g;
    s->depth = 1;
    s->f[0].node = g->root;
    s->f[0].kind = FR_VALUE;
    *out = s;
    return 0;
}

void eng_gram_state_free(struct eng_gram_state *s)
{
    if (!s) return;
    cit_free(s->lv);
    cit_free(s);
}

/* The matching part of a state: depth and the frames in use. */
static void copy_frames(struct eng_gram_state *d, const struct eng_gram_state *s)
{
    d->g = s->g;
    d->depth = s->depth;
    memcpy(d->f, s->f, (size_t)s->depth * sizeof(s->f[0]));
}

int eng_gram_state_copy(struct eng_gram_state *dst, const struct eng_gram_state *src)
{
    if (dst->g != src->g) return CIT_EINVAL;
    copy_frames(dst, src);
    return 0;
}

static int is_ws(unsigned b)
{
    return b == ' ' || b == '\n' || b == '\t' || b == '\r';
}

/* Whitespace between tokens, as compact, spaced or indented JSON has it:
 * nothing, one space, or a newline and up to four spaces (or tabs) per
 * level of nesting. A model fond of blank space cannot spend its answer
 * on it, and every way a model would lay out JSON is still open. */
static int ws_take(uint8_t *ws, unsigned b, int depth)
{
    int nl = *ws & 0x80, n = *ws & 0x7f;
    if (b == '\n') {
        if (nl || n) return -1;
        *ws = 0x80;
        return 0;
    }
    if (b == '\r' || (!nl && n) || (nl && (n >= 4 * depth || n >= GRAM_MAX_WS))) return -1;
    (*ws)++;
    return 0;
}

static int is_digit(unsigned b)
{
    return b >= '0' && b <= '9';
}

/* Candidates [l0, l0 + count) of g->lits, within alive, whose byte at pos
 * is b. */
static uint64_t lit_next(const struct eng_gram *g, int l0, uint64_t alive, int pos, unsigned b)
{
    uint64_t out = 0;
    for (uint64_t m = alive; m; m &= m - 1) {
        int i = __builtin_ctzll(m);
        const struct glit *l = &g->lits[l0 + i];
        if ((uint32_t)pos < l->len && (unsigned char)g->bytes.p[l->off + (uint32_t)pos] == b)
            out |= 1ull << i;
    }
    return out;
}

/* The candidate of length pos, or -1; whether any is longer in *more. */
static int lit_whole(const struct eng_gram *g, int l0, uint64_t alive, int pos, int *more)
{
    int whole = -1;
    *more = 0;
    for (uint64_t m = alive; m; m &= m - 1) {
        int i = __builtin_ctzll(m);
        if (g->lits[l0 + i].len == (uint32_t)pos)
            whole = i;
        else
            *more = 1;
    }
    return whole;
}

/* Object members that may come next, from property n on: each optional
 * one up to and including the first required one. */
static uint64_t keys_allowed(const struct eng_gram *g, const struct gnode *nd, int from)
{
    uint64_t m = 0;
    for (int j = from; j < nd->n; j++) {
        m |= 1ull << j;
        if (g->lits[nd->l0 + j].required) break;
    }
    return m;
}

static int required_left(const struct eng_gram *g, const struct gnode *nd, int from)
{
    for (int j = from; j < nd->n; j++)
        if (g->lits[nd->l0 + j].required) return 1;
    return 0;
}

static int push(struct eng_gram_state *s, int node)
{
    struct frame *f;
    if (s->depth == GRAM_MAX_DEPTH) return -1;
    f = &s->f[s->depth++];
    memset(f, 0, sizeof(*f));
    f->node = node;
    f->kind = FR_VALUE;
    return 0;
}

/* A string's length limits: none for keys of maps and strings of any. */
static void str_limits(const struct eng_gram *g, int node, int *mn, int *mx)
{
    const struct gnode *nd = node >= 0 ? &g->nodes[node] : NULL;
    *mn = nd && nd->kind == G_STRING ? nd->a : 0;
    *mx = nd && nd->kind == G_STRING ? nd->b : -1;
}

/* A frame's node; a map key's string has none (-1). */
static const struct gnode *frame_node(const struct eng_gram *g, const struct frame *f)
{
    static const struct gnode none = {0};
    return f->node >= 0 ? &g->nodes[f->node] : &none;
}

/* One byte. 0: taken; -1: refused (the state is then garbage). */
static int step(struct eng_gram_state *s, unsigned b)
{
    const struct eng_gram *g = s->g;
    for (;;) {
        struct frame *f;
        const struct gnode *nd;
        if (s->depth == 0) return -1; /* the value is complete */
        f = &s->f[s->depth - 1];
        nd = frame_node(g, f);
        switch (f->kind) {
        case FR_VALUE:
            if (is_ws(b)) return ws_take(&f->ws, b, s->depth);
            if (!has_bit(nd->first, b)) return -1;
            f->ws = 0;
            switch (nd->kind) {
            case G_ANYOF:
                for (int j = 0; j < nd->n; j++)
                    if (has_bit(g->nodes[g->alts[nd->l0 + j]].first, b)) {
                        f->node = g->alts[nd->l0 + j];
                        break;
                    }
                continue;
            case G_ANY:
                if (b == '{') {
                    f->kind = FR_MAP, f->sub = O_OPEN;
                } else if (b == '[') {
                    f->kind = FR_ARR, f->sub = A_OPEN, f->n = 0;
                } else if (b == '"') {
                    f->kind = FR_STR, f->sub = S_BODY, f->n = 0;
                } else if (b == '-' || is_digit(b)) {
                    f->kind = FR_NUM, f->sub = N_START, f->n = 0;
                    continue;
                } else {
                    f->node = g->tfn;
                    f->kind = FR_LIT, f->n = 0, f->alive = 7;
                    continue;
                }
                return 0;
            case G_OBJECT:
                f->kind = FR_OBJ, f->sub = O_OPEN, f->n = 0;
                return 0;
            case G_MAP:
                f->kind = FR_MAP, f->sub = O_OPEN;
                return 0;
            case G_ARRAY:
                f->kind = FR_ARR, f->sub = A_OPEN, f->n = 0;
                return 0;
            case G_STRING:
                f->kind = FR_STR, f->sub = S_BODY, f->n = 0;
                return 0;
            case G_NUMBER:
            case G_INTEGER:
                f->kind = FR_NUM, f->sub = N_START, f->n = 0;
                continue;
            case G_LITERALS:
                f->kind = FR_LIT, f->n = 0;
                f->alive = nd->n == 64 ? ~0ull : (1ull << nd->n) - 1;
                continue;
            }
            return -1;

        case FR_LIT: {
            uint64_t next = lit_next(g, nd->l0, f->alive, f->n, b);
            int more;
            if (!next) {
                /* a whole literal that another one extends ("1" of "10")
                 * ends at the first byte that is not the longer one's */
                if (lit_whole(g, nd->l0, f->alive, f->n, &more) < 0) return -1;
                s->depth--;
                continue;
            }
            f->alive = next;
            f->n++;
            if (lit_whole(g, nd->l0, next, f->n, &more) >= 0 && !more) s->depth--;
            return 0;
        }

        case FR_STR: {
            int mn, mx;
            str_limits(g, f->node, &mn, &mx);
            if (f->sub == S_UTF) {
                if (b < f->lo || b > f->hi) return -1;
                f->lo = 0x80, f->hi = 0xbf;
                if (--f->k == 0) f->sub = S_BODY;
                return 0;
            }
            if (f->sub == S_ESC) {
                if (!strchr("\"\\/bfnrt", (int)b) || !b) return -1;
                f->sub = S_BODY;
                return 0;
            }
            if (b == '"') {
                if (f->n < mn) return -1;
                s->depth--;
                if (s->depth > 0 && s->f[s->depth - 1].kind == FR_MAP &&
                    s->f[s->depth - 1].sub == O_KEY)
                    s->f[s->depth - 1].sub = O_COLON; /* a map's key */
                return 0;
            }
            if (b < 0x20 || (b >= 0x80 && b < 0xc2) || b > 0xf4) return -1;
            if (mx >= 0 && f->n >= mx) return -1;
            f->n++;
            if (b == '\\') {
                f->sub = S_ESC;
            } else if (b >= 0xc2) {
                f->sub = S_UTF;
                f->k = b < 0xe0 ? 1 : b < 0xf0 ? 2 : 3;
                f->lo = b == 0xe0 ? 0xa0 : b == 0xf0 ? 0x90 : 0x80;
                f->hi = b == 0xed ? 0x9f : b == 0xf4 ? 0x8f : 0xbf;
            }
            return 0;
        }

        case FR_NUM: {
            int integer = nd->kind == G_INTEGER;
            switch (f->sub) {
            case N_START:
                if (b == '-') return f->sub = N_MINUS, 0;
                /* fall through */
            case N_MINUS:
                if (b == '0') return f->sub = N_ZERO, 0;
                if (is_digit(b)) return f->sub = N_INT, f->n = 1, 0;
                return -1;
            case N_INT:
                if (is_digit(b) && f->n < GRAM_MAX_DIGITS) return f->n++, 0;
                /* fall through */
            case N_ZERO:
                if (!integer && b == '.') return f->sub = N_DOT, 0;
                if (!integer && (b == 'e' || b == 'E')) return f->sub = N_E, 0;
                break; /* the number ended before b */
            case N_DOT:
                if (is_digit(b)) return f->sub = N_FRAC, f->n = 1, 0;
                return -1;
            case N_FRAC:
                if (is_digit(b) && f->n < GRAM_MAX_DIGITS) return f->n++, 0;
                if (b == 'e' || b == 'E') return f->sub = N_E, 0;
                break;
            case N_E:
                if (b == '+' || b == '-') return f->sub = N_ESIGN, 0;
                /* fall through */
            case N_ESIGN:
                if (is_digit(b)) return f->sub = N_EXP, f->n = 1, 0;
                return -1;
            case N_EXP:
                if (is_digit(b) && f->n < GRAM_MAX_EXP) return f->n++, 0;
                break;
            }
            s->depth--;
            continue;
        }

        case FR_OBJ:
            switch (f->sub) {
            case O_OPEN:
            case O_NEXT:
                if (is_ws(b)) return ws_take(&f->ws, b, s->depth);
                if (b == '}' && f->sub == O_OPEN && !required_left(g, nd, f->n))
                    return s->depth--, 0;
                if (b != '"' || !(f->alive = keys_allowed(g, nd, f->n))) return -1;
                f->alive = lit_next(g, nd->l0, f->alive, 0, b);
                f->sub = O_KEY, f->k = 1, f->ws = 0;
                return 0;
            case O_KEY: {
                int more, j;
                f->alive = lit_next(g, nd->l0, f->alive, f->k, b);
                if (!f->alive) return -1;
                f->k++;
                if ((j = lit_whole(g, nd->l0, f->alive, f->k, &more)) >= 0) {
                    f->k = j; /* keys end in '"': a whole one is the only one */
                    f->n = j + 1;
                    f->sub = O_COLON;
                }
                return 0;
            }
            case O_COLON:
                if (is_ws(b)) return ws_take(&f->ws, b, s->depth);
                if (b != ':') return -1;
                f->sub = O_VALUE, f->ws = 0;
                return push(s, g->lits[nd->l0 + f->k].value);
            case O_VALUE:
                if (is_ws(b)) return ws_take(&f->ws, b, s->depth);
                if (b == ',' && keys_allowed(g, nd, f->n)) return f->sub = O_NEXT, f->ws = 0, 0;
                if (b == '}' && !required_left(g, nd, f->n)) return s->depth--, 0;
                return -1;
            }
            return -1;

        case FR_MAP: {
            int vnode = nd->kind == G_MAP ? nd->c : f->node;
            if (is_ws(b) && f->sub != O_KEY) return ws_take(&f->ws, b, s->depth);
            f->ws = 0;
            switch (f->sub) {
            case O_OPEN:
            case O_NEXT:
                if (b == '}' && f->sub == O_OPEN) return s->depth--, 0;
                if (b != '"' || push(s, -1)) return -1;
                f->sub = O_KEY; /* the key's string sets O_COLON when it ends */
                s->f[s->depth - 1].node = -1;
                s->f[s->depth - 1].kind = FR_STR;
                return 0;
            case O_COLON:
                if (b != ':') return -1;
                f->sub = O_VALUE;
                return push(s, vnode);
            case O_VALUE:
                if (b == ',') return f->sub = O_NEXT, 0;
                if (b == '}') return s->depth--, 0;
                return -1;
            }
            return -1;
        }

        case FR_ARR: {
            int item = nd->kind == G_ARRAY ? nd->c : f->node;
            int mn = nd->kind == G_ARRAY ? nd->a : 0, mx = nd->kind == G_ARRAY ? nd->b : -1;
            if (is_ws(b)) return ws_take(&f->ws, b, s->depth);
            f->ws = 0;
            switch (f->sub) {
            case A_OPEN:
                if (b == ']') return f->n >= mn ? (s->depth--, 0) : -1;
                /* fall through */
            case A_NEXT:
                if ((mx >= 0 && f->n >= mx) || push(s, item)) return -1;
                f->n++;
                f->sub = A_VALUE;
                continue; /* b begins the item */
            case A_VALUE:
                if (b == ',' && (mx < 0 || f->n < mx)) return f->sub = A_NEXT, 0;
                if (b == ']' && f->n >= mn) return s->depth--, 0;
                return -1;
            }
            return -1;
        }
        }
        return -1;
    }
}

int eng_gram_feed(struct eng_gram_state *s, const char *bytes, size_t n)
{
    struct eng_gram_state t;
    copy_frames(&t, s);
    for (size_t i = 0; i < n; i++)
        if (step(&t, (unsigned char)bytes[i])) return CIT_EINVAL;
    copy_frames(s, &t);
    return 0;
}

int eng_gram_done(const struct eng_gram_state *s)
{
    return s->depth == 0;
}

int eng_gram_can_end(const struct eng_gram_state *s)
{
    const struct frame *f;
    int more;
    if (s->depth == 0) return 1;
    if (s->depth > 1) return 0;
    f = &s->f[0];
    if (f->kind == FR_NUM)
        return f->sub == N_ZERO || f->sub == N_INT || f->sub == N_FRAC || f->sub == N_EXP;
    if (f->kind == FR_LIT)
        return lit_whole(s->g, frame_node(s->g, f)->l0, f->alive, f->n, &more) >= 0;
    return 0;
}

/* ---- the vocabulary ---- */

struct tnode {
    uint32_t end;   /* the node after this one's subtree (preorder) */
    int32_t t0, t1; /* the tokens that end here: order[t0, t1) */
    uint8_t byte;
};

struct eng_gram_vocab {
    int n_vocab, words, max_len;
    uint32_t *off; /* token i's bytes: bytes[off[i], off[i + 1]) */
    char *bytes;
    int32_t *order; /* tokens with bytes, sorted by them */
    struct tnode *trie;
    int n_trie;
    uint32_t *plain; /* bit set: string-body tokens (see the top) */
    uint8_t *chars;  /* a plain token's characters (255: more) */
    int32_t *others; /* tokens with bytes that are not plain */
    int n_others;
    int32_t *eog; /* end-of-generation tokens */
    int n_eog;
};

struct skey {
    const char *p;
    uint32_t len;
    int32_t id;
};

static int by_bytes(const void *a, const void *b)
{
    const struct skey *x = a, *y = b;
    int c = memcmp(x->p, y->p, x->len < y->len ? x->len : y->len);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Plain: allowed as it is anywhere in a string body. Characters in *nch. */
static int plain_token(const unsigned char *p, size_t n, int *nch)
{
    size_t i = 0;
    *nch = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t len = c < 0x80 ? 1 : c < 0xc2 ? 0 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : c < 0xf5 ? 4 : 0;
        if (!len || c < 0x20 || c == '"' || c == '\\' || i + len > n) return 0;
        for (size_t k = 1; k < len; k++) {
            unsigned lo = 0x80, hi = 0xbf, d = p[i + k];
            if (k == 1) {
                lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
                hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
            }
            if (d < lo || d > hi) return 0;
        }
        i += len;
        ++*nch;
    }
    return 1;
}

int eng_gram_vocab_new(const struct eng_model *m, struct eng_gram_vocab **out)
{
    const int N = eng_vocab(m)->n_tokens;
    struct eng_gram_vocab *v = cit_calloc(1, sizeof(*v));
    struct cit_buf all = {0};
    char piece[4096 + 8];
    int n_tok = 0, rc = CIT_ENOMEM;
    uint32_t *path = NULL; /* trie nodes on the current token's path */
    if (!v) return CIT_ENOMEM;
    v->n_vocab = N;
    v->words = (N + 31) / 32;
    v->off = cit_calloc((size_t)N + 1, sizeof(*v->off));
    v->plain = cit_calloc((size_t)v->words, sizeof(*v->plain));
    v->chars = cit_calloc((size_t)N, 1);
    v->order = cit_calloc((size_t)N, sizeof(*v->order));
    v->others = cit_calloc((size_t)N, sizeof(*v->others));
    v->eog = cit_calloc((size_t)N, sizeof(*v->eog));
    if (!v->off || !v->plain || !v->chars || !v->order || !v->others || !v->eog) goto fail;
    for (int i = 0; i < N; i++) {
        int n = eng_token_piece(m, i, 0, piece, sizeof(piece)), nch;
        v->off[i] = (uint32_t)all.len;
        if (eng_token_is_eog(m, i)) {
            v->eog[v->n_eog++] = i; /* allowed only where the value can end */
            continue;
        }
        if (n <= 0) continue; /* control tokens, and none of the vocabulary's bytes */
        if (cit_buf_add(&all, piece, (size_t)n)) goto fail;
        if (n > v->max_len) v->max_len = n;
        v->order[n_tok++] = i;
        if (plain_token((const unsigned char *)piece, (size_t)n, &nch)) {
            v->plain[i >> 5] |= 1u << (i & 31);
            v->chars[i] = (uint8_t)(nch < 255 ? nch : 255);
        } else {
            v->others[v->n_others++] = i;
        }
    }
    v->off[N] = (uint32_t)all.len;
    v->bytes = all.p ? all.p : cit_calloc(1, 1);
    all.p = NULL;
    if (!v->bytes) goto fail;
    {
        struct skey *keys = cit_calloc((size_t)n_tok + 1, sizeof(*keys));
        if (!keys) goto fail;
        for (int k = 0; k < n_tok; k++) {
            int32_t t = v->order[k];
            keys[k] = (struct skey){v->bytes + v->off[t], v->off[t + 1] - v->off[t], t};
        }
        qsort(keys, (size_t)n_tok, sizeof(*keys), by_bytes);
        for (int k = 0; k < n_tok; k++) v->order[k] = keys[k].id;
        cit_free(keys);
    }

    /* the trie in preorder: a node per distinct prefix, at most every byte */
    v->trie = cit_calloc((size_t)v->off[N] + 1, sizeof(*v->trie));
    path = cit_calloc((size_t)v->max_len + 1, sizeof(*path));
    if (!v->trie || !path) goto fail;
    v->n_trie = 1;
    v->trie[0].t0 = v->trie[0].t1 = 0;
    path[0] = 0;
    {
        int depth = 0; /* path[0..depth] is the previous token's path */
        const char *prev = NULL;
        uint32_t prev_len = 0;
        for (int k = 0; k < n_tok; k++) {
            int32_t t = v->order[k];
            const char *p = v->bytes + v->off[t];
            uint32_t len = v->off[t + 1] - v->off[t], lcp = 0;
            while (prev && lcp < len && lcp < prev_len && p[lcp] == prev[lcp]) lcp++;
            while (depth > (int)lcp) v->trie[path[depth--]].end = (uint32_t)v->n_trie;
            for (uint32_t d = lcp; d < len; d++) {
                struct tnode *nd = &v->trie[v->n_trie];
                nd->byte = (uint8_t)p[d];
                nd->t0 = nd->t1 = k;
                path[++depth] = (uint32_t)v->n_trie++;
            }
            /* equal tokens sort together: a node's tokens are one run */
            v->trie[path[depth]].t1 = k + 1;
            prev = p;
            prev_len = len;
        }
        while (depth > 0) v->trie[path[depth--]].end = (uint32_t)v->n_trie;
        v->trie[0].end = (uint32_t)v->n_trie;
    }
    cit_free(path);
    *out = v;
    return 0;
fail:
    cit_free(path);
    cit_buf_free(&all);
    eng_gram_vocab_free(v);
    return rc;
}

void eng_gram_vocab_free(struct eng_gram_vocab *v)
{
    if (!v) return;
    cit_free(v->off);
    cit_free(v->bytes);
    cit_free(v->order);
    cit_free(v->trie);
    cit_free(v->plain);
    cit_free(v->chars);
    cit_free(v->others);
    cit_free(v->eog);
    cit_free(v);
}

int eng_gram_vocab_tokens(const struct eng_gram_vocab *v)
{
    return v->n_vocab;
}

static int feed_raw(struct eng_gram_state *t, const char *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (step(t, (unsigned char)p[i])) return -1;
    return 0;
}

/* The trie walk below node i, from state s (at lv level d). */
static int walk(const struct eng_gram_vocab *v, struct eng_gram_state *root, int d, uint32_t i,
                uint32_t *mask)
{
    const struct eng_gram_state *s = d ? &root->lv[d - 1] : root;
    struct eng_gram_state *t = &root->lv[d];
    int count = 0;
    for (uint32_t c = i + 1; c < v->trie[i].end; c = v->trie[c].end) {
        const struct tnode *nd = &v->trie[c];
        copy_frames(t, s);
        if (step(t, nd->byte)) continue;
        for (int32_t k = nd->t0; k < nd->t1; k++) {
            int32_t tok = v->order[k];
            mask[tok >> 5] |= 1u << (tok & 31);
            count++;
        }
        if (nd->end > c + 1) count += walk(v, root, d + 1, c, mask);
    }
    return count;
}

int eng_gram_mask(const struct eng_gram_vocab *v, struct eng_gram_state *s, uint32_t *mask)
{
    int count = 0;
    const struct frame *top = s->depth ? &s->f[s->depth - 1] : NULL;
    memset(mask, 0, (size_t)v->words * sizeof(*mask));
    if (!s->lv || s->n_lv < v->max_len + 1) {
        struct eng_gram_state *lv = cit_realloc(s->lv, (size_t)(v->max_len + 1) * sizeof(*lv));
        if (!lv) return CIT_ENOMEM;
        s->lv = lv;
        s->n_lv = v->max_len + 1;
    }
    if (top && top->kind == FR_STR && top->sub == S_BODY) {
        /* plain tokens as they are (within a length limit), the rest one by one */
        int mn, mx;
        struct eng_gram_state *t = &s->lv[0];
        str_limits(s->g, top->node, &mn, &mx);
        if (mx < 0) {
            memcpy(mask, v->plain, (size_t)v->words * sizeof(*mask));
            for (int w = 0; w < v->words; w++) count += __builtin_popcount(mask[w]);
        } else {
            for (int w = 0; w < v->words; w++)
                for (uint32_t m = v->plain[w]; m; m &= m - 1) {
                    int tok = w * 32 + __builtin_ctz(m);
                    if (v->chars[tok] <= mx - top->n) mask[w] |= 1u << (tok & 31), count++;
                }
        }
        for (int k = 0; k < v->n_others; k++) {
            int32_t tok = v->others[k];
            copy_frames(t, s);
            if (!feed_raw(t, v->bytes + v->off[tok], v->off[tok + 1] - v->off[tok]))
                mask[tok >> 5] |= 1u << (tok & 31), count++;
        }
    } else if (s->depth > 0) {
        count = walk(v, s, 0, 0, mask);
    }
    if (eng_gram_can_end(s))
        for (int k = 0; k < v->n_eog; k++) {
            int32_t tok = v->eog[k];
            mask[tok >> 5] |= 1u << (tok & 31);
            count++;
        }
    return count;
}

int eng_gram_feed_token(const struct eng_gram_vocab *v, struct eng_gram_state *s, int32_t tok)
{
    if (tok < 0 || tok >= v->n_vocab) return CIT_ERANGE;
    for (int k = 0; k < v->n_eog; k++)
        if (v->eog[k] == tok) return eng_gram_can_end(s) ? 0 : CIT_EINVAL;
    if (v->off[tok + 1] == v->off[tok]) return CIT_EINVAL; /* no bytes: never allowed */
    return eng_gram_feed(s, v->bytes + v->off[tok], v->off[tok + 1] - v->off[tok]);
}
