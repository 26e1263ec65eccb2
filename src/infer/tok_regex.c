/* tok_regex.c — a small regex engine over code points, enough for the pre-tokenizer
 * patterns of Hugging Face tokenizers (GPT-2, Llama 3, Qwen2, DeepSeek, Falcon, ...).
 * Semantics are Perl/Oniguruma leftmost-first (alternatives tried in order, greedy
 * quantifiers), which is what those tokenizers were trained with. Patterns compile to a
 * tiny instruction list run by a bit-state backtracker: every (instruction, position)
 * pair is explored at most once per segment, so a split costs O(pattern x text).
 * Not for: captures, backreferences, or anything a pre-tokenizer does not use. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_impl.h"
#include "util/util.h"

enum { OP_CHAR, OP_CLASS, OP_ANY, OP_SPLIT, OP_JMP, OP_MATCH, OP_LOOK, OP_BOL, OP_EOL };

struct inst {
    uint8_t op;
    uint8_t flag;  /* OP_CHAR: case-insensitive; OP_LOOK: negative */
    uint32_t x, y; /* OP_CHAR: code point; OP_CLASS: class index; SPLIT: x preferred, y;
                    * JMP: x; LOOK: x = sub-program, y = continuation */
};

enum { CI_RANGE, CI_CAT, CI_SPACE, CI_NOTSPACE, CI_NOTCAT };
struct citem {
    uint8_t kind;
    uint32_t lo, hi; /* CI_RANGE: inclusive range; CI_CAT/CI_NOTCAT: lo = category bit mask */
};
struct cls {
    uint32_t first, n; /* items */
    uint8_t neg, icase;
};

/* AST built by the parser, then emitted as instructions. */
enum { N_EMPTY, N_CHAR, N_CLASS, N_ANY, N_BOL, N_EOL, N_CAT, N_ALT, N_REP, N_LOOK };
struct node {
    uint8_t type, flag; /* N_CHAR: icase; N_REP: greedy; N_LOOK: negative */
    uint32_t val;       /* N_CHAR: code point; N_CLASS: class index */
    int32_t min, max;   /* N_REP; max -1 = unbounded */
    int32_t child, next; /* first child; next sibling (-1 none) */
};

struct sw__re {
    struct inst *prog;
    uint32_t n_prog, cap_prog;
    struct citem *items;
    uint32_t n_items, cap_items;
    struct cls *classes;
    uint32_t n_classes, cap_classes;
};

#define RE_MAX_PROG 20000u
#define RE_MAX_REPEAT 100
#define RE_MAX_DEPTH 64

/* ------------------------------------------------------------------ parser */

struct parser {
    const uint8_t *p, *end;
    struct sw__re *re;
    struct node *nodes;
    uint32_t n_nodes, cap_nodes;
    int icase;
    int depth;
    const char *err;
};

static int grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap) return 0;
    uint32_t nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *n = realloc(*arr, (size_t)nc * elem);
    if (!n) return SW_ENOMEM;
    *arr = n;
    *cap = nc;
    return 0;
}

static int32_t new_node(struct parser *ps, uint8_t type)
{
    if (grow((void **)&ps->nodes, &ps->cap_nodes, ps->n_nodes + 1, sizeof(struct node))) {
        ps->err = "out of memory";
        return -1;
    }
    struct node *n = &ps->nodes[ps->n_nodes];
    memset(n, 0, sizeof *n);
    n->type = type;
    n->child = n->next = -1;
    return (int32_t)ps->n_nodes++;
}

static int add_item(struct parser *ps, uint8_t kind, uint32_t lo, uint32_t hi)
{
    struct sw__re *re = ps->re;
    if (grow((void **)&re->items, &re->cap_items, re->n_items + 1, sizeof(struct citem))) {
        ps->err = "out of memory";
        return -1;
    }
    re->items[re->n_items++] = (struct citem){ kind, lo, hi };
    return 0;
}

static int32_t new_class(struct parser *ps, int neg)
{
    struct sw__re *re = ps->re;
    if (grow((void **)&re->classes, &re->cap_classes, re->n_classes + 1, sizeof(struct cls))) {
        ps->err = "out of memory";
        return -1;
    }
    re->classes[re->n_classes] = (struct cls){ re->n_items, 0, (uint8_t)neg, (uint8_t)ps->icase };
    return (int32_t)re->n_classes++;
}

static uint32_t next_cp(struct parser *ps)
{
    uint32_t cp;
    ps->p += sw__utf8_decode(ps->p, (size_t)(ps->end - ps->p), &cp);
    return cp;
}

/* \p{X} / \P{X}: X is a major category (L M N P S Z C) or a general category (Lu, Nd,
 * ...). Writes the bit mask over enum sw__gc. */
static int parse_category(struct parser *ps, uint32_t *mask_out)
{
    static const char *const names[] = { "", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl",
                                         "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk",
                                         "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn" };
    static const struct { char c; uint32_t mask; } majors[] = {
        { 'L', SW__GCM_L }, { 'M', SW__GCM_M }, { 'N', SW__GCM_N }, { 'P', SW__GCM_P },
        { 'S', SW__GCM_S }, { 'Z', SW__GCM_Z }, { 'C', SW__GCM_C },
    };
    if (ps->p >= ps->end || *ps->p != '{') { ps->err = "expected { after \\p"; return -1; }
    ps->p++;
    const uint8_t *name = ps->p;
    while (ps->p < ps->end && *ps->p != '}') ps->p++;
    if (ps->p >= ps->end) { ps->err = "unterminated \\p{"; return -1; }
    size_t len = (size_t)(ps->p - name);
    ps->p++;
    if (len == 1)
        for (size_t i = 0; i < SW_ARRAY_LEN(majors); i++)
            if (name[0] == (uint8_t)majors[i].c) { *mask_out = majors[i].mask; return 0; }
    if (len == 2)
        for (uint32_t i = 1; i < SW_ARRAY_LEN(names); i++)
            if (!memcmp(name, names[i], 2)) { *mask_out = 1u << i; return 0; }
    ps->err = "unsupported Unicode category";
    return -1;
}

/* One escape inside or outside a class. Writes either a single code point (*cp_out, returns
 * 1) or adds class items (to the class being built, returns 2). */
static int parse_escape(struct parser *ps, uint32_t *cp_out)
{
    if (ps->p >= ps->end) { ps->err = "trailing backslash"; return -1; }
    uint32_t c = next_cp(ps);
    uint32_t mask;
    switch (c) {
    case 'n': *cp_out = '\n'; return 1;
    case 'r': *cp_out = '\r'; return 1;
    case 't': *cp_out = '\t'; return 1;
    case 'f': *cp_out = '\f'; return 1;
    case 'v': *cp_out = '\v'; return 1;
    case '0': *cp_out = 0; return 1;
    case 's': return add_item(ps, CI_SPACE, 0, 0) ? -1 : 2;
    case 'S': return add_item(ps, CI_NOTSPACE, 0, 0) ? -1 : 2;
    case 'd': return add_item(ps, CI_RANGE, '0', '9') ? -1 : 2;
    case 'w':
        if (add_item(ps, CI_CAT, SW__GCM_L | SW__GCM_N | SW__GCM_M, 0) ||
            add_item(ps, CI_RANGE, '_', '_'))
            return -1;
        return 2;
    case 'p':
    case 'P':
        if (parse_category(ps, &mask)) return -1;
        return add_item(ps, c == 'p' ? CI_CAT : CI_NOTCAT, mask, 0) ? -1 : 2;
    case 'x': {
        uint32_t v = 0;
        int braces = ps->p < ps->end && *ps->p == '{', nd = 0;
        if (braces) ps->p++;
        while (ps->p < ps->end && nd < (braces ? 6 : 2)) {
            uint8_t h = *ps->p;
            int d = h >= '0' && h <= '9' ? h - '0' : (h | 0x20) >= 'a' && (h | 0x20) <= 'f' ? (h | 0x20) - 'a' + 10 : -1;
            if (d < 0) break;
            v = v * 16 + (uint32_t)d;
            ps->p++;
            nd++;
        }
        if (braces) {
            if (ps->p >= ps->end || *ps->p != '}') { ps->err = "bad \\x{...}"; return -1; }
            ps->p++;
        }
        if (!nd) { ps->err = "bad \\x escape"; return -1; }
        *cp_out = v;
        return 1;
    }
    default:
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') { ps->err = "unsupported escape"; return -1; }
        *cp_out = c; /* escaped punctuation is literal */
        return 1;
    }
}

static int32_t parse_class(struct parser *ps)
{
    int neg = 0;
    if (ps->p < ps->end && *ps->p == '^') { neg = 1; ps->p++; }
    int32_t ci = new_class(ps, neg);
    if (ci < 0) return -1;
    int first = 1;
    for (;;) {
        if (ps->p >= ps->end) { ps->err = "unterminated ["; return -1; }
        if (*ps->p == ']' && !first) { ps->p++; break; }
        first = 0;
        uint32_t lo;
        if (*ps->p == '\\') {
            ps->p++;
            int r = parse_escape(ps, &lo);
            if (r < 0) return -1;
            if (r == 2) continue;
        } else if (*ps->p == '[') {
            ps->err = "nested classes are not supported";
            return -1;
        } else {
            lo = next_cp(ps);
        }
        uint32_t hi = lo;
        if (ps->p + 1 < ps->end && *ps->p == '-' && ps->p[1] != ']') {
            ps->p++;
            if (*ps->p == '\\') {
                ps->p++;
                int r = parse_escape(ps, &hi);
                if (r < 0) return -1;
                if (r == 2) { ps->err = "class escape as range end"; return -1; }
            } else {
                hi = next_cp(ps);
            }
            if (hi < lo) { ps->err = "reversed range"; return -1; }
        }
        if (add_item(ps, CI_RANGE, lo, hi)) return -1;
    }
    struct cls *c = &ps->re->classes[ci];
    c->n = ps->re->n_items - c->first;
    int32_t n = new_node(ps, N_CLASS);
    if (n >= 0) ps->nodes[n].val = (uint32_t)ci;
    return n;
}

static int32_t parse_alt(struct parser *ps);

static int parse_uint(struct parser *ps, int32_t *out)
{
    int32_t v = 0;
    int nd = 0;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9' && nd < 6) {
        v = v * 10 + (*ps->p - '0');
        ps->p++;
        nd++;
    }
    if (!nd) return -1;
    *out = v;
    return 0;
}

static int32_t parse_atom(struct parser *ps)
{
    uint8_t c = *ps->p;
    int32_t n;
    if (c == '(') {
        ps->p++;
        int saved_icase = ps->icase;
        int look = -1; /* 0 positive, 1 negative */
        if (ps->p < ps->end && *ps->p == '?') {
            ps->p++;
            if (ps->p < ps->end && *ps->p == ':') ps->p++;
            else if (ps->p < ps->end && *ps->p == '=') { ps->p++; look = 0; }
            else if (ps->p < ps->end && *ps->p == '!') { ps->p++; look = 1; }
            else if (ps->p + 1 < ps->end && ps->p[0] == 'i' && ps->p[1] == ':') { ps->p += 2; ps->icase = 1; }
            else { ps->err = "unsupported group syntax"; return -1; }
        }
        if (++ps->depth > RE_MAX_DEPTH) { ps->err = "pattern nests too deeply"; return -1; }
        int32_t inner = parse_alt(ps);
        ps->depth--;
        ps->icase = saved_icase;
        if (inner < 0) return -1;
        if (ps->p >= ps->end || *ps->p != ')') { ps->err = "missing )"; return -1; }
        ps->p++;
        if (look < 0) return inner;
        n = new_node(ps, N_LOOK);
        if (n < 0) return -1;
        ps->nodes[n].flag = (uint8_t)look;
        ps->nodes[n].child = inner;
        return n;
    }
    if (c == '[') { ps->p++; return parse_class(ps); }
    if (c == '.') { ps->p++; return new_node(ps, N_ANY); }
    if (c == '^') { ps->p++; return new_node(ps, N_BOL); }
    if (c == '$') { ps->p++; return new_node(ps, N_EOL); }
    if (c == '\\') {
        ps->p++;
        uint32_t cp;
        int32_t ci = new_class(ps, 0);
        if (ci < 0) return -1;
        int r = parse_escape(ps, &cp);
        if (r < 0) return -1;
        if (r == 2) {
            struct cls *cl = &ps->re->classes[ci];
            cl->n = ps->re->n_items - cl->first;
            n = new_node(ps, N_CLASS);
            if (n >= 0) ps->nodes[n].val = (uint32_t)ci;
            return n;
        }
        ps->re->n_classes--; /* not needed after all */
        n = new_node(ps, N_CHAR);
        if (n < 0) return -1;
        ps->nodes[n].val = cp;
        ps->nodes[n].flag = (uint8_t)ps->icase;
        return n;
    }
    if (c == '*' || c == '+' || c == '?' || c == '{') { ps->err = "quantifier without operand"; return -1; }
    n = new_node(ps, N_CHAR);
    if (n < 0) return -1;
    ps->nodes[n].val = next_cp(ps);
    ps->nodes[n].flag = (uint8_t)ps->icase;
    return n;
}

static int32_t parse_repeat(struct parser *ps)
{
    int32_t atom = parse_atom(ps);
    if (atom < 0) return -1;
    while (ps->p < ps->end) {
        int32_t mn, mx;
        uint8_t c = *ps->p;
        if (c == '*') { mn = 0; mx = -1; ps->p++; }
        else if (c == '+') { mn = 1; mx = -1; ps->p++; }
        else if (c == '?') { mn = 0; mx = 1; ps->p++; }
        else if (c == '{') {
            const uint8_t *save = ps->p;
            ps->p++;
            if (parse_uint(ps, &mn)) { ps->p = save; break; } /* literal '{' is not supported */
            mx = mn;
            if (ps->p < ps->end && *ps->p == ',') {
                ps->p++;
                if (ps->p < ps->end && *ps->p == '}') mx = -1;
                else if (parse_uint(ps, &mx)) { ps->err = "bad {m,n}"; return -1; }
            }
            if (ps->p >= ps->end || *ps->p != '}') { ps->err = "bad {m,n}"; return -1; }
            ps->p++;
            if (mn > RE_MAX_REPEAT || mx > RE_MAX_REPEAT || (mx >= 0 && mx < mn)) {
                ps->err = "repeat count out of range";
                return -1;
            }
        } else break;
        int greedy = 1;
        if (ps->p < ps->end && *ps->p == '?') { greedy = 0; ps->p++; }
        int32_t r = new_node(ps, N_REP);
        if (r < 0) return -1;
        ps->nodes[r].min = mn;
        ps->nodes[r].max = mx;
        ps->nodes[r].flag = (uint8_t)greedy;
        ps->nodes[r].child = atom;
        atom = r;
    }
    return atom;
}

static int32_t parse_concat(struct parser *ps)
{
    int32_t cat = new_node(ps, N_CAT);
    if (cat < 0) return -1;
    int32_t last = -1;
    while (ps->p < ps->end && *ps->p != '|' && *ps->p != ')') {
        int32_t r = parse_repeat(ps);
        if (r < 0) return -1;
        if (last < 0) ps->nodes[cat].child = r;
        else ps->nodes[last].next = r;
        last = r;
    }
    return cat;
}

static int32_t parse_alt(struct parser *ps)
{
    int32_t first = parse_concat(ps);
    if (first < 0 || ps->p >= ps->end || *ps->p != '|') return first;
    int32_t alt = new_node(ps, N_ALT);
    if (alt < 0) return -1;
    ps->nodes[alt].child = first;
    int32_t last = first;
    while (ps->p < ps->end && *ps->p == '|') {
        ps->p++;
        int32_t r = parse_concat(ps);
        if (r < 0) return -1;
        ps->nodes[last].next = r;
        last = r;
    }
    return alt;
}

/* ------------------------------------------------------------------ emitter */

static int32_t emit(struct parser *ps, uint8_t op, uint8_t flag, uint32_t x, uint32_t y)
{
    struct sw__re *re = ps->re;
    if (re->n_prog >= RE_MAX_PROG) { ps->err = "pattern too large"; return -1; }
    if (grow((void **)&re->prog, &re->cap_prog, re->n_prog + 1, sizeof(struct inst))) {
        ps->err = "out of memory";
        return -1;
    }
    re->prog[re->n_prog] = (struct inst){ op, flag, x, y };
    return (int32_t)re->n_prog++;
}

static int gen(struct parser *ps, int32_t ni, int depth)
{
    if (depth > RE_MAX_DEPTH * 4) { ps->err = "pattern nests too deeply"; return -1; }
    const struct node n = ps->nodes[ni];
    struct sw__re *re = ps->re;
    switch (n.type) {
    case N_EMPTY: return 0;
    case N_CHAR: return emit(ps, OP_CHAR, n.flag, n.val, 0) < 0 ? -1 : 0;
    case N_CLASS: return emit(ps, OP_CLASS, 0, n.val, 0) < 0 ? -1 : 0;
    case N_ANY: return emit(ps, OP_ANY, 0, 0, 0) < 0 ? -1 : 0;
    case N_BOL: return emit(ps, OP_BOL, 0, 0, 0) < 0 ? -1 : 0;
    case N_EOL: return emit(ps, OP_EOL, 0, 0, 0) < 0 ? -1 : 0;
    case N_CAT:
        for (int32_t c = n.child; c >= 0; c = ps->nodes[c].next)
            if (gen(ps, c, depth + 1)) return -1;
        return 0;
    case N_ALT: {
        /* SPLIT L1, L2; L1: a; JMP end; L2: SPLIT ... ; last; end: */
        uint32_t jumps[512];
        uint32_t n_jumps = 0;
        for (int32_t c = n.child; c >= 0; c = ps->nodes[c].next) {
            if (ps->nodes[c].next >= 0) {
                int32_t s = emit(ps, OP_SPLIT, 0, 0, 0);
                if (s < 0) return -1;
                re->prog[s].x = re->n_prog;
                if (gen(ps, c, depth + 1)) return -1;
                int32_t j = emit(ps, OP_JMP, 0, 0, 0);
                if (j < 0) return -1;
                if (n_jumps >= SW_ARRAY_LEN(jumps)) { ps->err = "too many alternatives"; return -1; }
                jumps[n_jumps++] = (uint32_t)j;
                re->prog[s].y = re->n_prog;
            } else if (gen(ps, c, depth + 1)) {
                return -1;
            }
        }
        for (uint32_t i = 0; i < n_jumps; i++) re->prog[jumps[i]].x = re->n_prog;
        return 0;
    }
    case N_REP: {
        for (int32_t i = 0; i < n.min; i++)
            if (gen(ps, n.child, depth + 1)) return -1;
        if (n.max < 0) {
            /* L: SPLIT body, out; body; JMP L; out: */
            int32_t s = emit(ps, OP_SPLIT, 0, 0, 0);
            if (s < 0) return -1;
            uint32_t body = re->n_prog;
            if (gen(ps, n.child, depth + 1)) return -1;
            if (emit(ps, OP_JMP, 0, (uint32_t)s, 0) < 0) return -1;
            re->prog[s].x = n.flag ? body : re->n_prog;
            re->prog[s].y = n.flag ? re->n_prog : body;
            return 0;
        }
        /* optional copies, nested: SPLIT body, end; body; SPLIT body2, end; body2; end: */
        uint32_t splits[RE_MAX_REPEAT + 1];
        uint32_t n_splits = 0;
        for (int32_t i = n.min; i < n.max; i++) {
            int32_t s = emit(ps, OP_SPLIT, 0, 0, 0);
            if (s < 0) return -1;
            splits[n_splits++] = (uint32_t)s;
            re->prog[s].x = re->n_prog; /* body (patched below for lazy) */
            if (gen(ps, n.child, depth + 1)) return -1;
        }
        for (uint32_t i = 0; i < n_splits; i++) {
            struct inst *in = &re->prog[splits[i]];
            uint32_t body = in->x;
            in->x = n.flag ? body : re->n_prog;
            in->y = n.flag ? re->n_prog : body;
        }
        return 0;
    }
    case N_LOOK: {
        int32_t l = emit(ps, OP_LOOK, n.flag, 0, 0);
        if (l < 0) return -1;
        re->prog[l].x = re->n_prog;
        if (gen(ps, n.child, depth + 1)) return -1;
        if (emit(ps, OP_MATCH, 0, 0, 0) < 0) return -1;
        re->prog[l].y = re->n_prog;
        return 0;
    }
    }
    ps->err = "internal: bad node";
    return -1;
}

void sw__re_free(struct sw__re *re)
{
    if (!re) return;
    free(re->prog);
    free(re->items);
    free(re->classes);
    free(re);
}

int sw__re_compile(const char *pattern, struct sw__re **out, char *err, size_t err_len)
{
    *out = NULL;
    struct sw__re *re = calloc(1, sizeof *re);
    if (!re) return SW_ENOMEM;
    struct parser ps = { (const uint8_t *)pattern, (const uint8_t *)pattern + strlen(pattern),
                         re, NULL, 0, 0, 0, 0, NULL };
    int32_t root = parse_alt(&ps);
    if (root >= 0 && ps.p != ps.end) { ps.err = "unbalanced )"; root = -1; }
    if (root >= 0 && gen(&ps, root, 0) == 0 && emit(&ps, OP_MATCH, 0, 0, 0) >= 0) {
        free(ps.nodes);
        *out = re;
        return 0;
    }
    if (err && err_len)
        snprintf(err, err_len, "regex /%s/ at offset %zu: %s", pattern,
                 (size_t)(ps.p - (const uint8_t *)pattern), ps.err ? ps.err : "error");
    free(ps.nodes);
    sw__re_free(re);
    return ps.err && !strcmp(ps.err, "out of memory") ? SW_ENOMEM : SW_EINVAL;
}

/* ------------------------------------------------------------------ matcher */

static uint32_t ascii_other_case(uint32_t c)
{
    if (c >= 'a' && c <= 'z') return c - 32;
    if (c >= 'A' && c <= 'Z') return c + 32;
    return c;
}

/* Simple case folding (CaseFolding.txt, status C and S) as far as it reaches ASCII
 * letters, which is all the (?i:...) parts of the pre-tokenizer patterns contain:
 * U+017F LATIN SMALL LETTER LONG S folds to 's' and U+212A KELVIN SIGN to 'k'. */
static uint32_t fold_ascii(uint32_t c)
{
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c == 0x017F) return 's';
    if (c == 0x212A) return 'k';
    return c;
}

static int class_has(const struct sw__re *re, const struct cls *c, uint32_t cp)
{
    int in = 0;
    int cat = -1;
    for (uint32_t i = 0; i < c->n && !in; i++) {
        const struct citem *it = &re->items[c->first + i];
        switch (it->kind) {
        case CI_RANGE:
            in = (cp >= it->lo && cp <= it->hi);
            if (!in && c->icase) {
                uint32_t f = fold_ascii(cp), o = ascii_other_case(f);
                in = (f >= it->lo && f <= it->hi) || (o >= it->lo && o <= it->hi);
            }
            break;
        case CI_CAT:
            if (cat < 0) cat = sw__gc(cp);
            in = (it->lo >> cat) & 1;
            break;
        case CI_NOTCAT:
            if (cat < 0) cat = sw__gc(cp);
            in = !((it->lo >> cat) & 1);
            break;
        case CI_SPACE: in = sw__is_space(cp); break;
        case CI_NOTSPACE: in = !sw__is_space(cp); break;
        }
    }
    return in ^ c->neg;
}

struct frame {
    uint32_t pc;
    size_t pos;
};

struct bt {
    struct frame *stk;
    size_t n, cap;
    int heap; /* stk was malloc'd by this run (not the scratch's) */
};

static int bt_push(struct bt *b, uint32_t pc, size_t pos)
{
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        struct frame *ns;
        if (b->heap) {
            ns = realloc(b->stk, nc * sizeof *ns);
        } else {
            ns = malloc(nc * sizeof *ns);
            if (ns && b->n) memcpy(ns, b->stk, b->n * sizeof *ns);
        }
        if (!ns) return SW_ENOMEM;
        b->stk = ns;
        b->cap = nc;
        b->heap = 1;
    }
    b->stk[b->n++] = (struct frame){ pc, pos };
    return 0;
}

/* Runs the program from pc at pos over the subject cps[a..b). bits (may be NULL) is the
 * visited bitmap for positions a..b. Returns 1 (match; *end_out set), 0, or SW_ENOMEM. */
static int run(const struct sw__re *re, const uint32_t *cps, size_t a, size_t b, uint32_t pc0,
               size_t pos0, uint8_t *bits, struct bt *bt, size_t *end_out)
{
    size_t base = bt->n;
    if (bt_push(bt, pc0, pos0)) return SW_ENOMEM;
    while (bt->n > base) {
        struct frame f = bt->stk[--bt->n];
        uint32_t pc = f.pc;
        size_t pos = f.pos;
        for (;;) {
            if (bits) {
                size_t k = (pos - a) * re->n_prog + pc;
                if (bits[k >> 3] & (1u << (k & 7))) break;
                bits[k >> 3] |= (uint8_t)(1u << (k & 7));
            }
            const struct inst *in = &re->prog[pc];
            int ok;
            switch (in->op) {
            case OP_CHAR:
                ok = pos < b && (cps[pos] == in->x || (in->flag && fold_ascii(cps[pos]) == fold_ascii(in->x)));
                if (!ok) goto fail;
                pc++;
                pos++;
                continue;
            case OP_CLASS:
                if (pos >= b || !class_has(re, &re->classes[in->x], cps[pos])) goto fail;
                pc++;
                pos++;
                continue;
            case OP_ANY:
                if (pos >= b || cps[pos] == '\n') goto fail;
                pc++;
                pos++;
                continue;
            case OP_SPLIT:
                if (bt_push(bt, in->y, pos)) return SW_ENOMEM;
                pc = in->x;
                continue;
            case OP_JMP:
                pc = in->x;
                continue;
            case OP_MATCH:
                bt->n = base;
                *end_out = pos;
                return 1;
            case OP_BOL:
                if (pos != a) goto fail;
                pc++;
                continue;
            case OP_EOL:
                if (pos != b) goto fail;
                pc++;
                continue;
            case OP_LOOK: {
                /* Lookarounds run without the bitmap: their (pc, pos) outcomes do not
                 * depend on the outer path, but they share no state with it either. */
                size_t e;
                struct bt sub = { NULL, 0, 0, 0 };
                struct frame local[32];
                sub.stk = local;
                sub.cap = SW_ARRAY_LEN(local);
                int r = run(re, cps, a, b, in->x, pos, NULL, &sub, &e);
                if (sub.heap) free(sub.stk);
                if (r < 0) return r;
                if (r == (in->flag ? 1 : 0)) goto fail;
                pc = in->y;
                continue;
            }
            }
        fail:
            break;
        }
    }
    return 0;
}

void sw__re_scratch_free(struct sw__re_scratch *sc)
{
    if (!sc) return;
    free(sc->bits);
    free(sc->stack);
    memset(sc, 0, sizeof *sc);
}

static int push_end(size_t **ends, size_t *n, size_t *cap, size_t e)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        size_t *ne = realloc(*ends, nc * sizeof *ne);
        if (!ne) return SW_ENOMEM;
        *ends = ne;
        *cap = nc;
    }
    (*ends)[(*n)++] = e;
    return 0;
}

/* Above this many bitmap bytes a segment is matched without memoisation. */
#define RE_MAX_BITS_BYTES ((size_t)64 << 20)

int sw__re_split(const struct sw__re *re, const uint32_t *cps, size_t a, size_t b,
                 struct sw__re_scratch *sc, size_t **ends, size_t *n_ends, size_t *cap_ends)
{
    if (a >= b) return 0;
    size_t len = b - a;
    uint8_t *bits = NULL;
    size_t n_bits = (len + 1) * re->n_prog;
    size_t n_bytes = (n_bits + 7) / 8;
    if (n_bytes <= RE_MAX_BITS_BYTES) {
        if (n_bytes > sc->bits_cap) {
            uint8_t *nb = realloc(sc->bits, n_bytes);
            if (!nb) return SW_ENOMEM;
            sc->bits = nb;
            sc->bits_cap = n_bytes;
        }
        bits = sc->bits;
        memset(bits, 0, n_bytes);
    }
    struct bt bt = { sc->stack, 0, sc->stack_cap, 0 };
    size_t pos = a;
    int rc = 0;
    while (pos < b) {
        size_t ms = 0, me = 0;
        int found = 0;
        for (size_t s = pos; s < b; s++) {
            size_t e;
            int r = run(re, cps, a, b, 0, s, bits, &bt, &e);
            if (r < 0) { rc = r; goto out; }
            if (r == 1 && e > s) { ms = s; me = e; found = 1; break; }
            /* An empty match is no piece: look further, like the tokenizers do. */
        }
        if (!found) {
            rc = push_end(ends, n_ends, cap_ends, b);
            goto out;
        }
        if (ms > pos && (rc = push_end(ends, n_ends, cap_ends, ms))) goto out;
        if ((rc = push_end(ends, n_ends, cap_ends, me))) goto out;
        pos = me;
        if (bits) {
            /* States at the match end were on the successful path, not failures. */
            size_t k0 = (me - a) * re->n_prog;
            for (size_t k = k0; k < k0 + re->n_prog; k++) bits[k >> 3] &= (uint8_t)~(1u << (k & 7));
        }
    }
out:
    if (bt.heap) {
        /* keep the grown stack for the next call */
        if (sc->stack != bt.stk) free(sc->stack);
        sc->stack = bt.stk;
        sc->stack_cap = bt.cap;
    }
    return rc;
}
