/* grammar.c — constrained decoding: a context-free grammar over bytes, the set of parse
 * stacks a generation is in, and the mask of vocabulary tokens whose bytes it can take next
 * (one walk of a byte trie of the vocabulary, pruned at the first byte the grammar refuses).
 * The parser keeps every stack alive at once (no backtracking): each stack's top is a byte
 * class still to match, below it the positions to return to; a byte moves every stack whose
 * class takes it and expands rule references until each top is a class again. Caps bound
 * the stacks, their depth and the expansion work, so a hostile grammar costs bounded time.
 * Not for: JSON schemas (src/api/schema.c builds grammars with sw_gbuild_*). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok.h"

/* code words: the op in the top byte, its argument below */
#define OP(w) ((w) >> 24)
#define ARG(w) ((w) & 0xFFFFFFu)
enum { OP_END_ALT = 1, OP_END_RULE = 2, OP_REF = 3, OP_CHARS = 4 };
#define MK(op, arg) ((uint32_t)(op) << 24 | (uint32_t)(arg))
#define MAGIC "SWGR"
#define VERSION 1u
#define EXPAND_BUDGET 8192u /* expansion steps for one byte (all stacks) */
#define TRIE_DEPTH 48u      /* tokens longer than this are checked one by one */

/* ================================================================ builder */

struct brule {
    uint32_t *w;          /* alternatives back to back, each ended by OP_END_ALT */
    size_t n, cap;
    int n_alts, open;     /* open: the last alternative is not ended yet */
};

struct sw_gbuild {
    struct brule *r;
    size_t n, cap;
    int oom;
};

int sw_gbuild_new(struct sw_gbuild **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : SW_ENOMEM;
}

void sw_gbuild_free(struct sw_gbuild *b)
{
    if (!b) return;
    for (size_t i = 0; i < b->n; i++) free(b->r[i].w);
    free(b->r);
    free(b);
}

int32_t sw_gbuild_rule(struct sw_gbuild *b)
{
    if (b->n >= SW_GRAMMAR_MAX_RULES) return SW_ETOOBIG;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        struct brule *r = realloc(b->r, cap * sizeof *r);
        if (!r) return SW_ENOMEM;
        b->r = r;
        b->cap = cap;
    }
    memset(&b->r[b->n], 0, sizeof b->r[b->n]);
    return (int32_t)b->n++;
}

static int put(struct sw_gbuild *b, int32_t rule, uint32_t w)
{
    if (rule < 0 || (size_t)rule >= b->n) return SW_EINVAL;
    struct brule *r = &b->r[rule];
    if (r->n >= SW_GRAMMAR_MAX_CODE) return SW_ETOOBIG;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        uint32_t *w2 = realloc(r->w, cap * sizeof *w2);
        if (!w2) return SW_ENOMEM;
        r->w = w2;
        r->cap = cap;
    }
    r->w[r->n++] = w;
    return 0;
}

int sw_gbuild_alt(struct sw_gbuild *b, int32_t rule)
{
    if (rule < 0 || (size_t)rule >= b->n) return SW_EINVAL;
    struct brule *r = &b->r[rule];
    if (r->open) {
        int rc = put(b, rule, MK(OP_END_ALT, 0));
        if (rc) return rc;
    }
    r->open = 1;
    r->n_alts++;
    return 0;
}

static int need_alt(struct sw_gbuild *b, int32_t rule)
{
    if (rule < 0 || (size_t)rule >= b->n) return SW_EINVAL;
    return b->r[rule].open ? 0 : sw_gbuild_alt(b, rule);
}

int sw_gbuild_chars(struct sw_gbuild *b, int32_t rule, const uint8_t *lo, const uint8_t *hi, size_t n_ranges)
{
    int rc = need_alt(b, rule);
    if (rc) return rc;
    if (!n_ranges || n_ranges > 256) return SW_EINVAL;
    if ((rc = put(b, rule, MK(OP_CHARS, n_ranges)))) return rc;
    for (size_t i = 0; i < n_ranges; i++) {
        if (lo[i] > hi[i]) return SW_EINVAL;
        if ((rc = put(b, rule, (uint32_t)lo[i] | (uint32_t)hi[i] << 8))) return rc;
    }
    return 0;
}

int sw_gbuild_lit(struct sw_gbuild *b, int32_t rule, const char *s, size_t n)
{
    int rc = need_alt(b, rule);
    for (size_t i = 0; !rc && i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        rc = sw_gbuild_chars(b, rule, &c, &c, 1);
    }
    return rc;
}

int sw_gbuild_ref(struct sw_gbuild *b, int32_t rule, int32_t ref)
{
    int rc = need_alt(b, rule);
    if (rc) return rc;
    if (ref < 0 || (size_t)ref >= b->n) return SW_EINVAL;
    return put(b, rule, MK(OP_REF, ref));
}

static void put32(struct sw_buf *o, uint32_t v)
{
    uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
    sw_buf_append(o, b, 4);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Layout (little-endian u32): "SWGR", version, n_rules, root, n_code, rule_start[n_rules],
 * code[n_code]. A rule: its alternatives, each ended by END_ALT, then END_RULE. */
int sw_gbuild_finish(struct sw_gbuild *b, int32_t root, struct sw_buf *out, char *err, size_t err_len)
{
    if (root < 0 || (size_t)root >= b->n) {
        snprintf(err, err_len, "no root rule");
        return SW_EINVAL;
    }
    size_t total = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (!b->r[i].n_alts) {
            snprintf(err, err_len, "rule %zu has no alternative", i);
            return SW_EINVAL;
        }
        total += b->r[i].n + 2;
    }
    if (total > SW_GRAMMAR_MAX_CODE) {
        snprintf(err, err_len, "the grammar needs %zu words (the cap is %u)", total, SW_GRAMMAR_MAX_CODE);
        return SW_ETOOBIG;
    }
    sw_buf_append(out, MAGIC, 4);
    put32(out, VERSION);
    put32(out, (uint32_t)b->n);
    put32(out, (uint32_t)root);
    put32(out, (uint32_t)total);
    uint32_t off = 0;
    for (size_t i = 0; i < b->n; i++) {
        put32(out, off);
        off += (uint32_t)b->r[i].n + 2;
    }
    for (size_t i = 0; i < b->n; i++) {
        for (size_t k = 0; k < b->r[i].n; k++) put32(out, b->r[i].w[k]);
        put32(out, MK(OP_END_ALT, 0));
        put32(out, MK(OP_END_RULE, 0));
    }
    return sw_buf_ok(out) ? 0 : SW_ENOMEM;
}

/* ================================================================ loaded grammar */

struct sw_grammar {
    uint32_t n_rules, root, n_code;
    uint32_t *code;
    uint32_t *alt_first;  /* per rule: index into alts */
    uint32_t *alt_count;
    uint32_t *alts;       /* start positions of every alternative */
    uint8_t *valid_pos;   /* positions a stack may hold: element starts and END_ALTs */
    uint64_t (*bits)[4];  /* per position: the bytes its class takes (CHARS positions) */
};

void sw_grammar_free(struct sw_grammar *g)
{
    if (!g) return;
    free(g->code);
    free(g->alt_first);
    free(g->alt_count);
    free(g->alts);
    free(g->valid_pos);
    free(g->bits);
    free(g);
}

int sw_grammar_load(const uint8_t *p, size_t len, struct sw_grammar **out)
{
    *out = NULL;
    if (!p || len < 20 || memcmp(p, MAGIC, 4)) return SW_ECORRUPT;
    if (get32(p + 4) != VERSION) return SW_EUNSUPPORTED;
    uint32_t n_rules = get32(p + 8), root = get32(p + 12), n_code = get32(p + 16);
    if (!n_rules || n_rules > SW_GRAMMAR_MAX_RULES || root >= n_rules || n_code > SW_GRAMMAR_MAX_CODE ||
        len != 20 + 4 * ((size_t)n_rules + n_code))
        return SW_ECORRUPT;
    struct sw_grammar *g = calloc(1, sizeof *g);
    if (!g) return SW_ENOMEM;
    g->n_rules = n_rules;
    g->root = root;
    g->n_code = n_code;
    g->code = malloc((n_code + 1) * sizeof *g->code);
    g->alt_first = malloc(n_rules * sizeof *g->alt_first);
    g->alt_count = calloc(n_rules, sizeof *g->alt_count);
    g->alts = malloc((n_code + 1) * sizeof *g->alts);
    g->valid_pos = calloc(n_code + 1, 1);
    g->bits = calloc(n_code + 1, sizeof *g->bits);
    if (!g->code || !g->alt_first || !g->alt_count || !g->alts || !g->valid_pos || !g->bits) {
        sw_grammar_free(g);
        return SW_ENOMEM;
    }
    const uint8_t *q = p + 20 + 4 * (size_t)n_rules;
    for (uint32_t i = 0; i < n_code; i++) g->code[i] = get32(q + 4 * (size_t)i);
    uint32_t n_alts = 0;
    for (uint32_t r = 0; r < n_rules; r++) {
        uint32_t pos = get32(p + 20 + 4 * (size_t)r);
        /* rules follow each other: each starts where the previous one ended */
        if (pos >= n_code) goto bad;
        g->alt_first[r] = n_alts;
        int alt_open = 0;
        for (;;) {
            if (pos >= n_code) goto bad;
            uint32_t w = g->code[pos];
            if (!alt_open) {
                if (OP(w) == OP_END_RULE) break;
                g->alts[n_alts++] = pos;
                g->alt_count[r]++;
                alt_open = 1;
            }
            g->valid_pos[pos] = 1;
            if (OP(w) == OP_END_ALT) {
                alt_open = 0;
                pos++;
            } else if (OP(w) == OP_REF) {
                if (ARG(w) >= n_rules) goto bad;
                pos++;
            } else if (OP(w) == OP_CHARS) {
                uint32_t k = ARG(w);
                if (!k || k > 256 || (uint64_t)pos + 1 + k > n_code) goto bad;
                for (uint32_t i = 1; i <= k; i++) {
                    uint32_t rg = g->code[pos + i];
                    if (rg >> 16 || (rg & 0xFF) > (rg >> 8)) goto bad;
                    for (uint32_t c = rg & 0xFF; c <= (rg >> 8); c++) g->bits[pos][c >> 6] |= 1ull << (c & 63);
                }
                pos += 1 + k;
            } else {
                goto bad;
            }
        }
        if (!g->alt_count[r]) goto bad;
        if (r + 1 < n_rules && get32(p + 20 + 4 * (size_t)(r + 1)) != pos + 1) goto bad;
        if (r + 1 == n_rules && pos + 1 != n_code) goto bad;
    }
    *out = g;
    return 0;
bad:
    sw_grammar_free(g);
    return SW_ECORRUPT;
}

/* ================================================================ stacks */

/* A set of stacks: [len, pos_0 (bottom) .. pos_len-1 (top)] back to back, no duplicates. */
struct gset {
    uint32_t *w;
    size_t len, cap;
    uint32_t n;
    int overflow;
};

static void gset_clear(struct gset *s)
{
    s->len = 0;
    s->n = 0;
    s->overflow = 0;
}

static void gset_add(struct gset *s, const uint32_t *st, uint32_t n)
{
    for (size_t i = 0; i < s->len; i += 1 + s->w[i])
        if (s->w[i] == n && !memcmp(s->w + i + 1, st, n * sizeof *st)) return;
    if (s->n >= SW_GRAMMAR_MAX_STACKS || s->len + 1 + n > SW_GRAMMAR_MAX_STATE) {
        s->overflow = 1;
        return;
    }
    if (s->len + 1 + n > s->cap) {
        size_t cap = SW_MAX(s->cap * 2, s->len + 1 + n + 64);
        uint32_t *w = realloc(s->w, cap * sizeof *w);
        if (!w) {
            s->overflow = 1;
            return;
        }
        s->w = w;
        s->cap = cap;
    }
    s->w[s->len] = n;
    memcpy(s->w + s->len + 1, st, n * sizeof *st);
    s->len += 1 + n;
    s->n++;
}

/* Expands the stack st[0..n) (st has room for SW_GRAMMAR_MAX_DEPTH) until its top is a
 * byte class (or it is empty: the text may end), adding the results to out. */
static void expand(const struct sw_grammar *g, struct gset *out, uint32_t *st, uint32_t n, uint32_t *budget)
{
    for (;;) {
        if (!*budget) {
            out->overflow = 1;
            return;
        }
        (*budget)--;
        if (!n) {
            gset_add(out, st, 0);
            return;
        }
        uint32_t pos = st[n - 1], w = g->code[pos];
        if (OP(w) == OP_END_ALT) { /* this rule is done: back to the position after its reference */
            n--;
            continue;
        }
        if (OP(w) == OP_CHARS) {
            gset_add(out, st, n);
            return;
        }
        if (OP(w) != OP_REF || n >= SW_GRAMMAR_MAX_DEPTH) {
            out->overflow = 1;
            return;
        }
        uint32_t r = ARG(w);
        if (OP(g->code[pos + 1]) == OP_END_ALT) {
            /* a reference in tail position: nothing is left to do after it here, so its rule
             * takes this frame's place (right recursion such as chars ::= char chars runs
             * in constant depth) */
            for (uint32_t a = 0; a < g->alt_count[r]; a++) {
                st[n - 1] = g->alts[g->alt_first[r] + a];
                expand(g, out, st, n, budget);
            }
        } else {
            st[n - 1] = pos + 1;
            for (uint32_t a = 0; a < g->alt_count[r]; a++) {
                st[n] = g->alts[g->alt_first[r] + a];
                expand(g, out, st, n + 1, budget);
            }
        }
        st[n - 1] = pos;
        return;
    }
}

/* out = the stacks of `in` after byte c. */
static void gset_step(const struct sw_grammar *g, const struct gset *in, uint8_t c, struct gset *out, uint32_t *tmp)
{
    gset_clear(out);
    uint32_t budget = EXPAND_BUDGET;
    for (size_t i = 0; i < in->len; i += 1 + in->w[i]) {
        uint32_t n = in->w[i];
        if (!n) continue;
        const uint32_t *st = in->w + i + 1;
        uint32_t top = st[n - 1];
        if (!(g->bits[top][c >> 6] >> (c & 63) & 1)) continue;
        memcpy(tmp, st, n * sizeof *tmp);
        tmp[n - 1] = top + 1 + ARG(g->code[top]);
        expand(g, out, tmp, n, &budget);
    }
    if (out->overflow) gset_clear(out), out->overflow = 1; /* refuse what costs too much */
}

/* The bytes any stack of s can take next. */
static void gset_next_bytes(const struct sw_grammar *g, const struct gset *s, uint64_t bits[4])
{
    memset(bits, 0, 4 * sizeof *bits);
    for (size_t i = 0; i < s->len; i += 1 + s->w[i]) {
        uint32_t n = s->w[i];
        if (!n) continue;
        const uint64_t *b = g->bits[s->w[i + n]];
        for (int k = 0; k < 4; k++) bits[k] |= b[k];
    }
}

/* Same stacks (in any order)? */
static int gset_same(const struct gset *a, const struct gset *b)
{
    if (a->n != b->n || a->len != b->len) return 0;
    for (size_t i = 0; i < a->len; i += 1 + a->w[i]) {
        int found = 0;
        for (size_t j = 0; j < b->len && !found; j += 1 + b->w[j])
            found = a->w[i] == b->w[j] && !memcmp(a->w + i + 1, b->w + j + 1, a->w[i] * sizeof *a->w);
        if (!found) return 0;
    }
    return 1;
}

static int gset_has_empty(const struct gset *s)
{
    for (size_t i = 0; i < s->len; i += 1 + s->w[i])
        if (!s->w[i]) return 1;
    return 0;
}

/* Masks of states seen before: a generation comes back to the same stacks at every byte
 * of a string, of a number, ... so the walk of the vocabulary is done once per state. */
#define MASK_CACHE 4
struct mcache {
    struct gset key;
    uint64_t *bits;          /* n_vocab bits */
    uint32_t n_vocab;
    uint64_t used;           /* for LRU */
};

struct sw_gstate {
    const struct sw_grammar *g;
    struct gset cur, next;
    uint32_t tmp[SW_GRAMMAR_MAX_DEPTH];
    struct mcache cache[MASK_CACHE];
    uint64_t clock;
};

void sw_gstate_free(struct sw_gstate *s)
{
    if (!s) return;
    free(s->cur.w);
    free(s->next.w);
    for (int i = 0; i < MASK_CACHE; i++) {
        free(s->cache[i].key.w);
        free(s->cache[i].bits);
    }
    free(s);
}

int sw_gstate_new(const struct sw_grammar *g, struct sw_gstate **out)
{
    *out = NULL;
    struct sw_gstate *s = calloc(1, sizeof *s);
    if (!s) return SW_ENOMEM;
    s->g = g;
    uint32_t budget = EXPAND_BUDGET;
    for (uint32_t a = 0; a < g->alt_count[g->root]; a++) {
        s->tmp[0] = g->alts[g->alt_first[g->root] + a];
        expand(g, &s->cur, s->tmp, 1, &budget);
    }
    if (s->cur.overflow || !s->cur.n) {
        sw_gstate_free(s);
        return SW_EINVAL;
    }
    *out = s;
    return 0;
}

int sw_gstate_feed(struct sw_gstate *s, const uint8_t *p, size_t n)
{
    struct gset a = { 0 }, b = { 0 };
    const struct gset *from = &s->cur;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        struct gset *to = (i & 1) ? &b : &a;
        gset_step(s->g, from, p[i], to, s->tmp);
        if (!to->n) {
            rc = SW_EINVAL;
            break;
        }
        from = to;
    }
    if (!rc && n) { /* the last set becomes the state */
        struct gset *last = ((n - 1) & 1) ? &b : &a;
        struct gset t = s->cur;
        s->cur = *last;
        *last = t;
    }
    free(a.w);
    free(b.w);
    return rc;
}

int sw_gstate_can_end(const struct sw_gstate *s) { return gset_has_empty(&s->cur); }
int sw_gstate_at_end(const struct sw_gstate *s) { return s->cur.n == 1 && gset_has_empty(&s->cur); }

int sw_gstate_save(const struct sw_gstate *s, struct sw_buf *out)
{
    put32(out, s->cur.n);
    for (size_t i = 0; i < s->cur.len; i++) put32(out, s->cur.w[i]);
    return sw_buf_ok(out) ? 0 : SW_ENOMEM;
}

int sw_gstate_load(const struct sw_grammar *g, const uint8_t *p, size_t len, struct sw_gstate **out)
{
    *out = NULL;
    if (len < 4 || len % 4) return SW_ECORRUPT;
    uint32_t n = get32(p);
    if (!n || n > SW_GRAMMAR_MAX_STACKS) return SW_ECORRUPT;
    struct sw_gstate *s = calloc(1, sizeof *s);
    if (!s) return SW_ENOMEM;
    s->g = g;
    size_t words = len / 4 - 1, i = 0;
    if (words > SW_GRAMMAR_MAX_STATE) goto bad;
    const uint8_t *q = p + 4;
    for (uint32_t k = 0; k < n; k++) {
        if (i >= words) goto bad;
        uint32_t d = get32(q + 4 * i++);
        if (d > SW_GRAMMAR_MAX_DEPTH || d > words - i) goto bad;
        for (uint32_t j = 0; j < d; j++) {
            uint32_t pos = get32(q + 4 * (i + j));
            /* the top is a byte class; below it, positions to return to */
            if (pos >= g->n_code || !g->valid_pos[pos]) goto bad;
            if (j == d - 1 && OP(g->code[pos]) != OP_CHARS) goto bad;
            s->tmp[j] = pos;
        }
        i += d;
        size_t before = s->cur.n;
        gset_add(&s->cur, s->tmp, d);
        if (s->cur.overflow || s->cur.n == before) goto bad; /* a duplicate: not ours */
    }
    if (i != words) goto bad;
    *out = s;
    return 0;
bad:
    sw_gstate_free(s);
    return SW_ECORRUPT;
}

/* ================================================================ vocabulary */

struct tnode {
    uint32_t child, sibling; /* 0: none (node 0 is the root, never a child) */
    uint32_t tok;            /* first token ending here + 1 (0: none); more via tok_next */
    uint8_t byte;
};

struct sw_gvocab {
    uint32_t n;
    uint32_t *off;           /* token i's bytes: bytes[off[i] .. off[i+1]) */
    uint8_t *bytes;
    uint8_t *eog;
    struct tnode *nodes;
    uint32_t n_nodes;
    uint32_t *tok_next;      /* next token ending at the same node + 1 */
    uint32_t *long_toks;     /* tokens longer than TRIE_DEPTH */
    uint32_t n_long;
};

void sw_gvocab_free(struct sw_gvocab *v)
{
    if (!v) return;
    free(v->off);
    free(v->bytes);
    free(v->eog);
    free(v->nodes);
    free(v->tok_next);
    free(v->long_toks);
    free(v);
}

uint32_t sw_gvocab_n(const struct sw_gvocab *v) { return v->n; }

static int cmp_tok_bytes(const void *a, const void *b, void *ud)
{
    const struct sw_gvocab *sort_v = ud;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    uint32_t lx = sort_v->off[x + 1] - sort_v->off[x], ly = sort_v->off[y + 1] - sort_v->off[y];
    int c = memcmp(sort_v->bytes + sort_v->off[x], sort_v->bytes + sort_v->off[y], SW_MIN(lx, ly));
    if (c) return c;
    return (lx > ly) - (lx < ly);
}

int sw_gvocab_new(const struct sw_tok *t, struct sw_gvocab **out)
{
    *out = NULL;
    uint32_t n = sw_tok_n_vocab(t);
    struct sw_gvocab *v = calloc(1, sizeof *v);
    if (!v) return SW_ENOMEM;
    v->n = n;
    v->off = malloc(((size_t)n + 1) * sizeof *v->off);
    v->eog = calloc(n, 1);
    v->tok_next = calloc(n, sizeof *v->tok_next);
    uint32_t *order = malloc((size_t)n * sizeof *order);
    struct sw_buf all = { 0 };
    if (!v->off || !v->eog || !v->tok_next || !order) goto oom;
    char small[256];
    for (uint32_t i = 0; i < n; i++) {
        v->off[i] = (uint32_t)all.len;
        v->eog[i] = sw_tok_is_eog(t, (int32_t)i) != 0;
        int k = sw_tok_piece(t, (int32_t)i, 0, small, sizeof small);
        if (k > 0 && (size_t)k <= sizeof small) {
            sw_buf_append(&all, small, (size_t)k);
        } else if (k > 0) {
            char *big = malloc((size_t)k);
            if (!big) goto oom;
            sw_tok_piece(t, (int32_t)i, 0, big, (size_t)k);
            sw_buf_append(&all, big, (size_t)k);
            free(big);
        }
        if (!sw_buf_ok(&all) || all.len > UINT32_MAX / 2) goto oom;
        order[i] = i;
    }
    v->off[n] = (uint32_t)all.len;
    v->bytes = all.data;
    all.data = NULL;
    /* the trie, from the tokens sorted by their bytes: each shares its path with the
     * previous one up to their common prefix */
    qsort_r(order, n, sizeof *order, cmp_tok_bytes, v);
    size_t cap = 1024;
    v->nodes = calloc(cap, sizeof *v->nodes);
    v->long_toks = malloc((size_t)n * sizeof *v->long_toks);
    if (!v->nodes || !v->long_toks) goto oom;
    v->n_nodes = 1;
    uint32_t path[TRIE_DEPTH + 1];
    uint32_t depth = 0; /* path[0..depth] = root .. the previous token's last node */
    path[0] = 0;
    const uint8_t *prev = NULL;
    uint32_t prev_len = 0;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t id = order[k];
        uint32_t len = v->off[id + 1] - v->off[id];
        const uint8_t *b = v->bytes + v->off[id];
        if (!len || v->eog[id]) continue;   /* no bytes: never in the trie */
        if (len > TRIE_DEPTH) {
            v->long_toks[v->n_long++] = id;
            continue;
        }
        uint32_t common = 0;
        while (common < prev_len && common < len && common < depth && prev[common] == b[common]) common++;
        depth = common;
        for (uint32_t i = common; i < len; i++) {
            if (v->n_nodes == cap) {
                cap *= 2;
                struct tnode *nn = realloc(v->nodes, cap * sizeof *nn);
                if (!nn) goto oom;
                v->nodes = nn;
            }
            uint32_t node = v->n_nodes++;
            memset(&v->nodes[node], 0, sizeof v->nodes[node]);
            v->nodes[node].byte = b[i];
            /* children are appended in byte order: link as the last child */
            struct tnode *par = &v->nodes[path[i]];
            if (!par->child) {
                par->child = node;
            } else {
                uint32_t c = par->child;
                while (v->nodes[c].sibling) c = v->nodes[c].sibling;
                v->nodes[c].sibling = node;
            }
            path[i + 1] = node;
        }
        depth = len;
        struct tnode *end = &v->nodes[path[len]];
        v->tok_next[id] = end->tok;
        end->tok = id + 1;
        prev = b;
        prev_len = len;
    }
    free(order);
    *out = v;
    return 0;
oom:
    free(order);
    sw_buf_free(&all);
    sw_gvocab_free(v);
    return SW_ENOMEM;
}

int sw_gstate_allows(const struct sw_gstate *s, const struct sw_gvocab *v, int32_t id)
{
    if (id < 0 || (uint32_t)id >= v->n) return 0;
    if (v->eog[id]) return sw_gstate_can_end(s);
    uint32_t len = v->off[id + 1] - v->off[id];
    if (!len) return 0;
    const uint8_t *b = v->bytes + v->off[id];
    struct gset a = { 0 }, c = { 0 };
    const struct gset *from = &s->cur;
    uint32_t tmp[SW_GRAMMAR_MAX_DEPTH];
    int ok = 1;
    for (uint32_t i = 0; i < len && ok; i++) {
        struct gset *to = (i & 1) ? &c : &a;
        gset_step(s->g, from, b[i], to, tmp);
        ok = to->n > 0;
        from = to;
    }
    free(a.w);
    free(c.w);
    return ok;
}

int sw_gstate_accept(struct sw_gstate *s, const struct sw_gvocab *v, int32_t id)
{
    if (id < 0 || (uint32_t)id >= v->n) return SW_EINVAL;
    if (v->eog[id]) {
        if (!sw_gstate_can_end(s)) return SW_EINVAL;
        gset_clear(&s->cur);
        uint32_t none = 0;
        gset_add(&s->cur, &none, 0); /* ended: only the empty stack */
        return 0;
    }
    uint32_t len = v->off[id + 1] - v->off[id];
    if (!len) return SW_EINVAL;
    return sw_gstate_feed(s, v->bytes + v->off[id], len);
}

struct walk {
    const struct sw_grammar *g;
    const struct sw_gvocab *v;
    uint8_t *allowed;
    const struct gset *root;
    uint64_t loop[4];        /* bytes that leave the root's stacks as they are (inside a string) */
    struct gset sets[TRIE_DEPTH + 1];
    uint32_t tmp[SW_GRAMMAR_MAX_DEPTH];
};

/* The trie below node, with the stacks `at` after the node's bytes (depth: its length). A
 * byte that loops the root state back to itself needs no parsing: the child has the root's
 * stacks again (most of a vocabulary inside a JSON string). */
static void walk(struct walk *w, uint32_t node, const struct gset *at, uint32_t depth)
{
    uint64_t bits[4];
    gset_next_bytes(w->g, at, bits);
    int at_root = at == w->root;
    for (uint32_t c = w->v->nodes[node].child; c; c = w->v->nodes[c].sibling) {
        uint8_t byte = w->v->nodes[c].byte;
        if (!(bits[byte >> 6] >> (byte & 63) & 1)) continue;
        const struct gset *nx;
        if (at_root && (w->loop[byte >> 6] >> (byte & 63) & 1)) {
            nx = w->root;
        } else {
            struct gset *s = &w->sets[depth + 1];
            gset_step(w->g, at, byte, s, w->tmp);
            if (!s->n) continue;
            nx = s;
        }
        for (uint32_t t = w->v->nodes[c].tok; t; t = w->v->tok_next[t - 1]) w->allowed[t - 1] = 1;
        if (w->v->nodes[c].child) walk(w, c, nx, depth + 1);
    }
}

static void mask_walk(const struct sw_gstate *s, const struct sw_gvocab *v, uint8_t *allowed);

int sw_gstate_mask(const struct sw_gstate *cs, const struct sw_gvocab *v, uint8_t *allowed)
{
    struct sw_gstate *s = (struct sw_gstate *)cs; /* the cache is not part of the state */
    s->clock++;
    for (int i = 0; i < MASK_CACHE; i++) {
        struct mcache *c = &s->cache[i];
        if (c->bits && c->n_vocab == v->n && gset_same(&c->key, &s->cur)) {
            for (uint32_t t = 0; t < v->n; t++) allowed[t] = (uint8_t)(c->bits[t >> 6] >> (t & 63) & 1);
            c->used = s->clock;
            return 0;
        }
    }
    mask_walk(s, v, allowed);
    /* keep it in place of the least recently used */
    struct mcache *c = &s->cache[0];
    for (int i = 1; i < MASK_CACHE; i++)
        if (s->cache[i].used < c->used) c = &s->cache[i];
    if (c->n_vocab != v->n) {
        free(c->bits);
        c->bits = malloc(((size_t)v->n + 63) / 64 * sizeof *c->bits);
        c->n_vocab = c->bits ? v->n : 0;
    }
    gset_clear(&c->key);
    for (size_t i = 0; c->bits && i < s->cur.len; i += 1 + s->cur.w[i]) gset_add(&c->key, s->cur.w + i + 1, s->cur.w[i]);
    if (!c->bits || c->key.overflow || c->key.n != s->cur.n) {
        c->n_vocab = 0;
        free(c->bits);
        c->bits = NULL;
        return 0;
    }
    memset(c->bits, 0, ((size_t)v->n + 63) / 64 * sizeof *c->bits);
    for (uint32_t t = 0; t < v->n; t++)
        if (allowed[t]) c->bits[t >> 6] |= 1ull << (t & 63);
    c->used = s->clock;
    return 0;
}

static void mask_walk(const struct sw_gstate *s, const struct sw_gvocab *v, uint8_t *allowed)
{
    memset(allowed, 0, v->n);
    int end = sw_gstate_can_end(s);
    for (uint32_t i = 0; i < v->n; i++)
        if (v->eog[i]) allowed[i] = (uint8_t)end;
    struct walk *w = calloc(1, sizeof *w);
    if (!w) {
        memset(allowed, 0, v->n); /* out of memory: nothing is allowed, sampling fails */
        return;
    }
    w->g = s->g;
    w->v = v;
    w->allowed = allowed;
    w->root = &s->cur;
    uint64_t next[4];
    gset_next_bytes(s->g, &s->cur, next);
    for (uint32_t b = 0; b < 256; b++) {
        if (!(next[b >> 6] >> (b & 63) & 1)) continue;
        gset_step(s->g, &s->cur, (uint8_t)b, &w->sets[0], w->tmp);
        if (gset_same(&w->sets[0], &s->cur)) w->loop[b >> 6] |= 1ull << (b & 63);
    }
    walk(w, 0, &s->cur, 0);
    for (uint32_t i = 0; i <= TRIE_DEPTH; i++) free(w->sets[i].w);
    free(w);
    for (uint32_t i = 0; i < v->n_long; i++) allowed[v->long_toks[i]] = (uint8_t)sw_gstate_allows(s, v, (int32_t)v->long_toks[i]);
}
