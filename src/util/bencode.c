/* bencode.c — BEP 3 bencoding: a bounded decoder into a flat node array, and an encoder.
 * The decoder never trusts a length: each is checked against the remaining input, and
 * node count and nesting depth are capped (callers pass tighter caps for network input). */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bdec {
    const uint8_t *p, *end, *start;
    struct sw_bnode *nodes;
    uint32_t n, cap;
    size_t max_nodes;
    unsigned max_depth;
    int truncated; /* input ended inside a value */
    char *err;
    size_t err_len;
};

static int bfail(struct bdec *d, int code, const char *what)
{
    if (d->err && d->err_len && !d->err[0])
        snprintf(d->err, d->err_len, "bencode: %s at byte %zu", what, (size_t)(d->p - d->start));
    return code;
}

static int bneed(struct bdec *d)
{
    d->truncated = 1;
    return bfail(d, SW_EAGAIN, "input ends inside a value");
}

static int new_node(struct bdec *d, uint32_t *idx_out)
{
    if (d->n >= d->max_nodes) return bfail(d, SW_ETOOBIG, "too many values");
    if (d->n == d->cap) {
        uint32_t cap = d->cap ? d->cap * 2 : 16;
        if (cap > d->max_nodes) cap = (uint32_t)d->max_nodes;
        struct sw_bnode *nn = realloc(d->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return bfail(d, SW_ENOMEM, "out of memory");
        d->nodes = nn;
        d->cap = cap;
    }
    memset(&d->nodes[d->n], 0, sizeof d->nodes[0]);
    *idx_out = d->n++;
    return 0;
}

/* Parses decimal digits up to `term`; BEP 3: no leading zeros, no "-0". */
static int parse_int(struct bdec *d, uint8_t term, int allow_neg, int64_t *out)
{
    int neg = 0;
    if (d->p < d->end && *d->p == '-' && allow_neg) { neg = 1; d->p++; }
    const uint8_t *digits = d->p;
    uint64_t v = 0;
    while (d->p < d->end && *d->p >= '0' && *d->p <= '9') {
        unsigned dig = (unsigned)(*d->p - '0');
        if (v > (UINT64_C(9223372036854775807) - dig) / 10) return bfail(d, SW_ECORRUPT, "integer overflow");
        v = v * 10 + dig;
        d->p++;
    }
    if (d->p == d->end) return bneed(d);
    if (*d->p != term) return bfail(d, SW_ECORRUPT, "unexpected character in integer");
    size_t nd = (size_t)(d->p - digits);
    if (nd == 0) return bfail(d, SW_ECORRUPT, "empty integer");
    if (nd > 1 && digits[0] == '0') return bfail(d, SW_ECORRUPT, "integer with leading zero");
    if (neg && v == 0) return bfail(d, SW_ECORRUPT, "negative zero");
    d->p++; /* term */
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

static int parse_value(struct bdec *d, unsigned depth, uint32_t *idx_out)
{
    if (d->p >= d->end) return bneed(d);
    if (depth > d->max_depth) return bfail(d, SW_ETOOBIG, "nesting too deep");
    uint32_t idx;
    int rc = new_node(d, &idx);
    if (rc) return rc;
    const uint8_t *begin = d->p;
    uint8_t c = *d->p;
    if (c == 'i') {
        d->p++;
        int64_t v;
        if ((rc = parse_int(d, 'e', 1, &v))) return rc;
        d->nodes[idx].type = SW_BINT;
        d->nodes[idx].ival = v;
    } else if (c >= '0' && c <= '9') {
        int64_t n;
        if ((rc = parse_int(d, ':', 0, &n))) return rc;
        if ((uint64_t)n > (uint64_t)(d->end - d->p)) return bneed(d);
        d->nodes[idx].type = SW_BSTR;
        d->nodes[idx].str = d->p;
        d->nodes[idx].str_len = (size_t)n;
        d->p += n;
    } else if (c == 'l' || c == 'd') {
        d->p++;
        uint32_t count = 0, prev = 0, first = 0;
        for (;;) {
            if (d->p >= d->end) return bneed(d);
            if (*d->p == 'e') { d->p++; break; }
            if (c == 'd' && !(*d->p >= '0' && *d->p <= '9'))
                return bfail(d, SW_ECORRUPT, "dictionary key is not a string");
            uint32_t child;
            if ((rc = parse_value(d, depth + 1, &child))) return rc;
            if (prev) d->nodes[prev].next = child; else first = child;
            prev = child;
            if (c == 'd') {
                uint32_t val;
                if (d->p < d->end && *d->p == 'e') return bfail(d, SW_ECORRUPT, "dictionary key without value");
                if ((rc = parse_value(d, depth + 1, &val))) return rc;
                d->nodes[prev].next = val;
                prev = val;
            }
            if (count == UINT32_MAX) return bfail(d, SW_ETOOBIG, "too many items");
            count++;
        }
        d->nodes[idx].type = c == 'l' ? SW_BLIST : SW_BDICT;
        d->nodes[idx].n_items = count;
        d->nodes[idx].first = first;
    } else {
        return bfail(d, SW_ECORRUPT, "unexpected character");
    }
    d->nodes[idx].raw = begin;
    d->nodes[idx].raw_len = (size_t)(d->p - begin);
    *idx_out = idx;
    return 0;
}

int sw_bdecode(const uint8_t *p, size_t len, const struct sw_blimits *lim,
               struct sw_bdoc *doc_out, size_t *consumed_out, char *err, size_t err_len)
{
    struct bdec d = { 0 };
    d.p = d.start = p;
    d.end = p + len;
    d.max_nodes = lim && lim->max_nodes ? lim->max_nodes : 100000;
    if (d.max_nodes > UINT32_MAX) d.max_nodes = UINT32_MAX;
    d.max_depth = lim && lim->max_depth ? lim->max_depth : 32;
    d.err = err;
    d.err_len = err_len;
    if (err && err_len) err[0] = 0;
    doc_out->nodes = NULL;
    doc_out->n_nodes = 0;
    if (!p && len) return SW_EINVAL;
    uint32_t root;
    int rc = parse_value(&d, 0, &root);
    if (rc == SW_EAGAIN && !consumed_out) rc = SW_ECORRUPT; /* whole input given: truncated */
    if (!rc && !consumed_out && d.p != d.end) rc = bfail(&d, SW_ECORRUPT, "trailing bytes after value");
    if (rc) {
        free(d.nodes);
        return rc;
    }
    doc_out->nodes = d.nodes;
    doc_out->n_nodes = d.n;
    if (consumed_out) *consumed_out = (size_t)(d.p - p);
    return 0;
}

void sw_bdoc_free(struct sw_bdoc *doc)
{
    if (!doc) return;
    free(doc->nodes);
    doc->nodes = NULL;
    doc->n_nodes = 0;
}

const struct sw_bnode *sw_bnode_child(const struct sw_bdoc *d, const struct sw_bnode *n)
{
    if (!n || (n->type != SW_BLIST && n->type != SW_BDICT) || n->n_items == 0) return NULL;
    return &d->nodes[n->first];
}

const struct sw_bnode *sw_bnode_next(const struct sw_bdoc *d, const struct sw_bnode *n)
{
    if (!n || n->next == 0) return NULL;
    return &d->nodes[n->next];
}

int sw_bstr_eq(const struct sw_bnode *n, const char *s)
{
    size_t l = strlen(s);
    return n && n->type == SW_BSTR && n->str_len == l && memcmp(n->str, s, l) == 0;
}

const struct sw_bnode *sw_bdict_get(const struct sw_bdoc *d, const struct sw_bnode *dict,
                                    const char *key)
{
    if (!dict || dict->type != SW_BDICT) return NULL;
    const struct sw_bnode *k = sw_bnode_child(d, dict);
    while (k) {
        const struct sw_bnode *v = sw_bnode_next(d, k);
        if (!v) return NULL;
        if (sw_bstr_eq(k, key)) return v;
        k = sw_bnode_next(d, v);
    }
    return NULL;
}

const struct sw_bnode *sw_bdict_get_type(const struct sw_bdoc *d, const struct sw_bnode *dict,
                                         const char *key, enum sw_btype type)
{
    const struct sw_bnode *v = sw_bdict_get(d, dict, key);
    return v && v->type == type ? v : NULL;
}

const struct sw_bnode *sw_blist_at(const struct sw_bdoc *d, const struct sw_bnode *list,
                                   uint32_t index)
{
    if (!list || list->type != SW_BLIST || index >= list->n_items) return NULL;
    const struct sw_bnode *n = sw_bnode_child(d, list);
    while (n && index--) n = sw_bnode_next(d, n);
    return n;
}

void sw_benc_int(struct sw_buf *b, int64_t v) { sw_buf_printf(b, "i%llde", (long long)v); }

void sw_benc_str(struct sw_buf *b, const void *p, size_t n)
{
    sw_buf_printf(b, "%zu:", n);
    sw_buf_append(b, p, n);
}

void sw_benc_cstr(struct sw_buf *b, const char *s) { sw_benc_str(b, s, strlen(s)); }
void sw_benc_list(struct sw_buf *b) { sw_buf_append_byte(b, 'l'); }
void sw_benc_dict(struct sw_buf *b) { sw_buf_append_byte(b, 'd'); }
void sw_benc_end(struct sw_buf *b) { sw_buf_append_byte(b, 'e'); }
