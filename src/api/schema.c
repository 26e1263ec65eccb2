/* schema.c — JSON Schema to a grammar for constrained decoding (OpenAI's response_format
 * {type: json_object | json_schema}, Ollama's format "json" | schema). Supported: type
 * (one or a list), object properties/required (in the schema's order; optional ones may be
 * left out), additionalProperties (false; a schema for objects without properties), array
 * items, string, number, integer, boolean, null, enum, const, anyOf, local $ref into
 * $defs/definitions (recursion allowed), and annotations (title, description, ...). Every
 * other keyword is refused with a 400 naming its path, so what is generated always parses
 * and validates against the schema. The JSON produced is compact except one optional space
 * after ':' and ',' (bounded whitespace: a model cannot wander off into blank lines).
 * Not for: running the grammar (src/infer/grammar.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/oai_int.h"
#include "infer/tok.h"

#define MAX_PATH 400
#define MAX_REFS 256
#define MAX_NEST 48      /* schema nesting followed while compiling */

struct sc {
    struct sw_gbuild *b;
    json_t *root;
    struct sw_api_oai_error *e;
    const char *field;   /* the request field errors name ("response_format.json_schema.schema") */
    char path[MAX_PATH];
    size_t path_len;
    int nest;
    int err;             /* set once an error is in e */
    /* shared rules, made on first use (0: not yet; rule ids start at 0 so store id + 1) */
    int32_t ws, str, num, integer, boolean, null, value, obj_any, arr_any;
    json_t *ref_target[MAX_REFS];
    int32_t ref_rule[MAX_REFS];
    size_t n_refs;
};

static int32_t fail(struct sc *c, const char *fmt, const char *what)
{
    if (!c->err) {
        c->err = 1;
        char p[MAX_PATH + 100];
        snprintf(p, sizeof p, "%s%s", c->field, c->path);
        char msg[MAX_PATH + 300];
        snprintf(msg, sizeof msg, fmt, what ? what : "");
        SW__BAD(c->e, p, "%s: %s", p, msg);
    }
    return -1;
}

static int32_t oom(struct sc *c)
{
    if (!c->err) {
        c->err = 1;
        sw__oai_err_set(c->e, 400, "invalid_request_error", NULL, c->field,
                        "%s: the schema is too large for constrained decoding (at most %u rules, %u grammar words)",
                        c->field, SW_GRAMMAR_MAX_RULES, SW_GRAMMAR_MAX_CODE);
    }
    return -1;
}

static size_t path_push(struct sc *c, const char *fmt, const char *a)
{
    size_t old = c->path_len;
    int n = snprintf(c->path + old, sizeof c->path - old, fmt, a);
    if (n > 0) c->path_len = SW_MIN(old + (size_t)n, sizeof c->path - 1);
    return old;
}

static void path_pop(struct sc *c, size_t old)
{
    c->path_len = old;
    c->path[old] = 0;
}

/* builder calls that fail only on the caps or memory */
static int32_t rule(struct sc *c)
{
    int32_t r = sw_gbuild_rule(c->b);
    return r < 0 ? oom(c) : r;
}
#define TRY(x)                                                                                                         \
    do {                                                                                                               \
        if ((x) < 0) return oom(c);                                                                                    \
    } while (0)

static int32_t lit_rule(struct sc *c, const char *s)
{
    int32_t r = rule(c);
    if (r < 0) return r;
    TRY(sw_gbuild_alt(c->b, r));
    TRY(sw_gbuild_lit(c->b, r, s, strlen(s)));
    return r;
}

static int chars1(struct sc *c, int32_t r, uint8_t lo, uint8_t hi) { return sw_gbuild_chars(c->b, r, &lo, &hi, 1); }

/* ---------------------------------------------------------------- JSON's own rules */

static int32_t r_ws(struct sc *c)
{
    if (c->ws) return c->ws - 1;
    int32_t r = rule(c);
    if (r < 0) return r;
    TRY(sw_gbuild_alt(c->b, r));
    TRY(sw_gbuild_lit(c->b, r, " ", 1));
    TRY(sw_gbuild_alt(c->b, r)); /* or nothing */
    c->ws = r + 1;
    return r;
}

/* digits ::= [0-9] digits | (nothing) */
static int32_t r_digits(struct sc *c)
{
    int32_t r = rule(c);
    if (r < 0) return r;
    TRY(sw_gbuild_alt(c->b, r));
    TRY(chars1(c, r, '0', '9'));
    TRY(sw_gbuild_ref(c->b, r, r));
    TRY(sw_gbuild_alt(c->b, r));
    return r;
}

/* RFC 8259 §6: int = "0" / digit1-9 *DIGIT; the sign is optional "-" */
static int32_t r_int(struct sc *c, int32_t digits)
{
    int32_t r = rule(c);
    if (r < 0) return r;
    for (int neg = 0; neg < 2; neg++) {
        TRY(sw_gbuild_alt(c->b, r));
        if (neg) TRY(sw_gbuild_lit(c->b, r, "-", 1));
        TRY(sw_gbuild_lit(c->b, r, "0", 1));
        TRY(sw_gbuild_alt(c->b, r));
        if (neg) TRY(sw_gbuild_lit(c->b, r, "-", 1));
        TRY(chars1(c, r, '1', '9'));
        TRY(sw_gbuild_ref(c->b, r, digits));
    }
    return r;
}

static int32_t r_integer(struct sc *c)
{
    if (c->integer) return c->integer - 1;
    int32_t d = r_digits(c);
    if (d < 0) return d;
    int32_t r = r_int(c, d);
    if (r >= 0) c->integer = r + 1;
    return r;
}

/* number = int [ frac ] [ exp ]; frac = "." 1*DIGIT; exp = ("e"/"E") ["-"/"+"] 1*DIGIT */
static int32_t r_number(struct sc *c)
{
    if (c->num) return c->num - 1;
    int32_t d = r_digits(c);
    if (d < 0) return d;
    int32_t in = r_int(c, d), frac = rule(c), ex = rule(c), sign = rule(c), r = rule(c);
    if (in < 0 || frac < 0 || ex < 0 || sign < 0 || r < 0) return -1;
    TRY(sw_gbuild_alt(c->b, frac));
    TRY(sw_gbuild_lit(c->b, frac, ".", 1));
    TRY(chars1(c, frac, '0', '9'));
    TRY(sw_gbuild_ref(c->b, frac, d));
    TRY(sw_gbuild_alt(c->b, frac));
    TRY(sw_gbuild_alt(c->b, sign));
    TRY(sw_gbuild_lit(c->b, sign, "-", 1));
    TRY(sw_gbuild_alt(c->b, sign));
    TRY(sw_gbuild_lit(c->b, sign, "+", 1));
    TRY(sw_gbuild_alt(c->b, sign));
    TRY(sw_gbuild_alt(c->b, ex));
    uint8_t lo[2] = { 'E', 'e' }, hi[2] = { 'E', 'e' };
    TRY(sw_gbuild_chars(c->b, ex, lo, hi, 2));
    TRY(sw_gbuild_ref(c->b, ex, sign));
    TRY(chars1(c, ex, '0', '9'));
    TRY(sw_gbuild_ref(c->b, ex, d));
    TRY(sw_gbuild_alt(c->b, ex));
    TRY(sw_gbuild_alt(c->b, r));
    TRY(sw_gbuild_ref(c->b, r, in));
    TRY(sw_gbuild_ref(c->b, r, frac));
    TRY(sw_gbuild_ref(c->b, r, ex));
    c->num = r + 1;
    return r;
}

/* string = '"' *char '"'; char = any byte but '"', '\' and U+0000..U+001F, or an escape
 * (RFC 8259 §7) */
static int32_t r_string(struct sc *c)
{
    if (c->str) return c->str - 1;
    int32_t ch = rule(c), chars = rule(c), r = rule(c), hex = rule(c);
    if (ch < 0 || chars < 0 || r < 0 || hex < 0) return -1;
    TRY(sw_gbuild_alt(c->b, hex));
    uint8_t hlo[3] = { '0', 'A', 'a' }, hhi[3] = { '9', 'F', 'f' };
    TRY(sw_gbuild_chars(c->b, hex, hlo, hhi, 3));
    /* any byte but '"', '\' and the controls: bytes >= 0x80 are taken one by one (UTF-8 is
     * not checked here: a bad sequence leaves the API as U+FFFD, still a valid string), so
     * inside a string the parser keeps two stacks and every ordinary byte loops back to the
     * same state (the mask walk's fast path) */
    uint8_t alo[3] = { 0x20, 0x23, 0x5D }, ahi[3] = { 0x21, 0x5B, 0xFF };
    TRY(sw_gbuild_alt(c->b, ch));
    TRY(sw_gbuild_chars(c->b, ch, alo, ahi, 3));
    TRY(sw_gbuild_alt(c->b, ch));
    TRY(sw_gbuild_lit(c->b, ch, "\\", 1));
    const char *esc = "\"\\/bfnrt";
    uint8_t elo[8], ehi[8];
    for (int i = 0; i < 8; i++) elo[i] = ehi[i] = (uint8_t)esc[i];
    TRY(sw_gbuild_chars(c->b, ch, elo, ehi, 8));
    TRY(sw_gbuild_alt(c->b, ch));
    TRY(sw_gbuild_lit(c->b, ch, "\\u", 2));
    for (int i = 0; i < 4; i++) TRY(sw_gbuild_ref(c->b, ch, hex));
    TRY(sw_gbuild_alt(c->b, chars));
    TRY(sw_gbuild_ref(c->b, chars, ch));
    TRY(sw_gbuild_ref(c->b, chars, chars));
    TRY(sw_gbuild_alt(c->b, chars));
    TRY(sw_gbuild_alt(c->b, r));
    TRY(sw_gbuild_lit(c->b, r, "\"", 1));
    TRY(sw_gbuild_ref(c->b, r, chars));
    TRY(sw_gbuild_lit(c->b, r, "\"", 1));
    c->str = r + 1;
    return r;
}

static int32_t r_value(struct sc *c);

/* "open" + (item ("," ws item)*)? + "close": a list of `item`s (a rule), or of string ":"
 * ws item members when members is set. */
static int32_t r_list(struct sc *c, const char *open, const char *close, int32_t item, int members)
{
    int32_t ws = r_ws(c), str = members ? r_string(c) : 0;
    int32_t one = rule(c), more = rule(c), body = rule(c), r = rule(c);
    if (ws < 0 || str < 0 || one < 0 || more < 0 || body < 0 || r < 0) return -1;
    TRY(sw_gbuild_alt(c->b, one));
    if (members) {
        TRY(sw_gbuild_ref(c->b, one, str));
        TRY(sw_gbuild_lit(c->b, one, ":", 1));
        TRY(sw_gbuild_ref(c->b, one, ws));
    }
    TRY(sw_gbuild_ref(c->b, one, item));
    TRY(sw_gbuild_alt(c->b, more));
    TRY(sw_gbuild_lit(c->b, more, ",", 1));
    TRY(sw_gbuild_ref(c->b, more, ws));
    TRY(sw_gbuild_ref(c->b, more, one));
    TRY(sw_gbuild_ref(c->b, more, more));
    TRY(sw_gbuild_alt(c->b, more));
    TRY(sw_gbuild_alt(c->b, body));
    TRY(sw_gbuild_ref(c->b, body, one));
    TRY(sw_gbuild_ref(c->b, body, more));
    TRY(sw_gbuild_alt(c->b, body));
    TRY(sw_gbuild_alt(c->b, r));
    TRY(sw_gbuild_lit(c->b, r, open, 1));
    TRY(sw_gbuild_ref(c->b, r, ws));
    TRY(sw_gbuild_ref(c->b, r, body));
    TRY(sw_gbuild_lit(c->b, r, close, 1));
    return r;
}

static int32_t r_value(struct sc *c)
{
    if (c->value) return c->value - 1;
    int32_t v = rule(c);
    if (v < 0) return v;
    c->value = v + 1; /* before the parts: objects and arrays refer back to it */
    int32_t parts[6];
    parts[0] = r_list(c, "{", "}", v, 1);
    parts[1] = r_list(c, "[", "]", v, 0);
    parts[2] = r_string(c);
    parts[3] = r_number(c);
    if (!c->boolean) {
        int32_t b = rule(c);
        if (b < 0) return b;
        TRY(sw_gbuild_alt(c->b, b));
        TRY(sw_gbuild_lit(c->b, b, "true", 4));
        TRY(sw_gbuild_alt(c->b, b));
        TRY(sw_gbuild_lit(c->b, b, "false", 5));
        c->boolean = b + 1;
    }
    parts[4] = c->boolean - 1;
    parts[5] = c->null ? c->null - 1 : lit_rule(c, "null");
    if (parts[5] >= 0) c->null = parts[5] + 1;
    for (int i = 0; i < 6; i++) {
        if (parts[i] < 0) return -1;
        TRY(sw_gbuild_alt(c->b, v));
        TRY(sw_gbuild_ref(c->b, v, parts[i]));
    }
    if (!c->obj_any) c->obj_any = parts[0] + 1;
    if (!c->arr_any) c->arr_any = parts[1] + 1;
    return v;
}

/* ---------------------------------------------------------------- schemas */

static int32_t gen(struct sc *c, json_t *s);

/* A JSON value, written compactly, as a literal (enum, const). */
static int32_t r_literal_of(struct sc *c, json_t *v)
{
    char *txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!txt) return oom(c);
    int32_t r = lit_rule(c, txt);
    free(txt);
    return r;
}

static const char *const ANNOTATIONS[] = { "title", "description", "default", "examples", "$schema", "$id",
                                           "$comment", "deprecated", "readOnly", "writeOnly", "$defs",
                                           "definitions", "strict", NULL };
static const char *const KNOWN[] = { "type", "properties", "required", "additionalProperties", "items", "enum",
                                     "const", "anyOf", "$ref", NULL };

static int in_list(const char *k, const char *const *l)
{
    for (; *l; l++)
        if (!strcmp(k, *l)) return 1;
    return 0;
}

static int32_t r_ref(struct sc *c, json_t *ref)
{
    if (!json_is_string(ref)) return fail(c, "'$ref' must be a string%s", NULL);
    const char *s = json_string_value(ref);
    json_t *target = NULL;
    char where[200] = "";
    if (!strcmp(s, "#")) {
        target = c->root;
    } else if (!strncmp(s, "#/$defs/", 8) || !strncmp(s, "#/definitions/", 14)) {
        const char *name = s + (s[2] == '$' ? 8 : 14);
        json_t *defs = json_object_get(c->root, s[2] == '$' ? "$defs" : "definitions");
        if (strchr(name, '/') || strchr(name, '~'))
            return fail(c, "'$ref' %s: only '#', '#/$defs/NAME' and '#/definitions/NAME' are supported", s);
        target = json_is_object(defs) ? json_object_get(defs, name) : NULL;
        snprintf(where, sizeof where, ".%s.%.150s", s[2] == '$' ? "$defs" : "definitions", name);
        if (!target) return fail(c, "'$ref' %s names no definition", s);
    } else {
        return fail(c, "'$ref' %s: only '#', '#/$defs/NAME' and '#/definitions/NAME' are supported", s);
    }
    for (size_t i = 0; i < c->n_refs; i++)
        if (c->ref_target[i] == target) return c->ref_rule[i];
    if (c->n_refs == MAX_REFS) return oom(c);
    int32_t r = rule(c);
    if (r < 0) return r;
    c->ref_target[c->n_refs] = target;
    c->ref_rule[c->n_refs++] = r;
    /* the definition is compiled once, at its own path */
    char saved[MAX_PATH];
    size_t saved_len = c->path_len;
    memcpy(saved, c->path, c->path_len + 1);
    snprintf(c->path, sizeof c->path, "%s", where);
    c->path_len = strlen(c->path);
    int32_t sub = gen(c, target);
    memcpy(c->path, saved, saved_len + 1);
    c->path_len = saved_len;
    if (sub < 0) return sub;
    TRY(sw_gbuild_alt(c->b, r));
    TRY(sw_gbuild_ref(c->b, r, sub));
    return r;
}

static int32_t r_object(struct sc *c, json_t *s)
{
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required"),
           *addl = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props)) return fail(c, "'properties' must be an object%s", NULL);
    if (req && !json_is_array(req)) return fail(c, "'required' must be an array of names%s", NULL);
    if (addl && !json_is_boolean(addl) && !json_is_object(addl))
        return fail(c, "'additionalProperties' must be a boolean or a schema%s", NULL);
    for (size_t i = 0; req && i < json_array_size(req); i++) {
        json_t *n = json_array_get(req, i);
        if (!json_is_string(n)) return fail(c, "'required' must be an array of names%s", NULL);
        if (!props || !json_object_get(props, json_string_value(n)))
            return fail(c, "required property '%.100s' is not in 'properties'", json_string_value(n));
    }
    if (!props || !json_object_size(props)) {
        if (json_is_false(addl)) return lit_rule(c, "{}");
        if (json_is_object(addl)) { /* a map: any names, values of that schema */
            size_t old = path_push(c, "%s", ".additionalProperties");
            int32_t v = gen(c, addl);
            path_pop(c, old);
            return v < 0 ? v : r_list(c, "{", "}", v, 1);
        }
        if (r_value(c) < 0) return -1;
        return c->obj_any - 1;
    }
    /* properties in the schema's order; an optional one may be left out. F[i]: the members
     * from i on when none was written yet; A[i]: ... after one was (a comma first). */
    size_t n = json_object_size(props);
    if (n > 512) return fail(c, "more than 512 properties%s", NULL);
    int32_t *F = malloc((n + 1) * sizeof *F), *A = malloc((n + 1) * sizeof *A), *M = malloc(n * sizeof *M);
    int32_t ws = r_ws(c), out = -1;
    if (!F || !A || !M || ws < 0) goto done;
    for (size_t i = 0; i <= n; i++)
        if ((F[i] = rule(c)) < 0 || (A[i] = rule(c)) < 0) goto done;
    if (sw_gbuild_alt(c->b, F[n]) || sw_gbuild_alt(c->b, A[n])) goto done_oom;
    size_t i = 0;
    const char *key;
    json_t *sub;
    json_object_foreach(props, key, sub) {
        int required = 0;
        for (size_t k = 0; req && k < json_array_size(req); k++)
            required |= !strcmp(json_string_value(json_array_get(req, k)), key);
        size_t old = path_push(c, ".properties.%.100s", key);
        int32_t v = gen(c, sub);
        path_pop(c, old);
        if (v < 0) goto done;
        json_t *k = json_string(key);
        char *kt = k ? json_dumps(k, JSON_ENCODE_ANY) : NULL;
        json_decref(k);
        if (!kt) goto done_oom;
        int32_t m = rule(c);
        int bad = m < 0 || sw_gbuild_alt(c->b, m) || sw_gbuild_lit(c->b, m, kt, strlen(kt)) ||
                  sw_gbuild_lit(c->b, m, ":", 1) || sw_gbuild_ref(c->b, m, ws) || sw_gbuild_ref(c->b, m, v);
        free(kt);
        if (bad) goto done_oom;
        M[i] = m;
        if (sw_gbuild_alt(c->b, F[i]) || sw_gbuild_ref(c->b, F[i], M[i]) || sw_gbuild_ref(c->b, F[i], A[i + 1]) ||
            sw_gbuild_alt(c->b, A[i]) || sw_gbuild_lit(c->b, A[i], ",", 1) || sw_gbuild_ref(c->b, A[i], ws) ||
            sw_gbuild_ref(c->b, A[i], M[i]) || sw_gbuild_ref(c->b, A[i], A[i + 1]))
            goto done_oom;
        if (!required && (sw_gbuild_alt(c->b, F[i]) || sw_gbuild_ref(c->b, F[i], F[i + 1]) ||
                          sw_gbuild_alt(c->b, A[i]) || sw_gbuild_ref(c->b, A[i], A[i + 1])))
            goto done_oom;
        i++;
    }
    if ((out = rule(c)) < 0) goto done;
    if (sw_gbuild_alt(c->b, out) || sw_gbuild_lit(c->b, out, "{", 1) || sw_gbuild_ref(c->b, out, ws) ||
        sw_gbuild_ref(c->b, out, F[0]) || sw_gbuild_lit(c->b, out, "}", 1))
        goto done_oom;
    goto done;
done_oom:
    out = oom(c);
done:
    free(F);
    free(A);
    free(M);
    return c->err ? -1 : out;
}

static int32_t r_type(struct sc *c, json_t *s, const char *t)
{
    if (!strcmp(t, "object")) return r_object(c, s);
    if (!strcmp(t, "array")) {
        json_t *items = json_object_get(s, "items");
        if (!items || json_is_true(items)) {
            if (r_value(c) < 0) return -1;
            return c->arr_any - 1;
        }
        if (json_is_false(items)) return lit_rule(c, "[]");
        size_t old = path_push(c, "%s", ".items");
        int32_t v = gen(c, items);
        path_pop(c, old);
        return v < 0 ? v : r_list(c, "[", "]", v, 0);
    }
    if (!strcmp(t, "string")) return r_string(c);
    if (!strcmp(t, "number")) return r_number(c);
    if (!strcmp(t, "integer")) return r_integer(c);
    if (!strcmp(t, "boolean")) {
        if (r_value(c) < 0) return -1;
        return c->boolean - 1;
    }
    if (!strcmp(t, "null")) {
        if (r_value(c) < 0) return -1;
        return c->null - 1;
    }
    return fail(c, "type '%.60s' is not one of object, array, string, number, integer, boolean, null", t);
}

static int32_t gen_inner(struct sc *c, json_t *s)
{
    if (json_is_true(s)) return r_value(c);
    if (json_is_false(s)) return fail(c, "the schema 'false' matches nothing%s", NULL);
    if (!json_is_object(s)) return fail(c, "a schema must be an object or a boolean%s", NULL);
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v) {
        if (in_list(k, ANNOTATIONS) || in_list(k, KNOWN)) continue;
        return fail(c, "'%.100s' is not supported", k); /* the path names the schema holding it */
    }
    json_t *ref = json_object_get(s, "$ref");
    if (ref) {
        json_object_foreach(s, k, v) if (in_list(k, KNOWN) && strcmp(k, "$ref"))
            return fail(c, "'%.60s' beside '$ref' is not supported", k);
        return r_ref(c, ref);
    }
    json_t *cst = json_object_get(s, "const"), *en = json_object_get(s, "enum");
    if (cst || en) {
        if (en && (!json_is_array(en) || !json_array_size(en)))
            return fail(c, "'enum' must be a non-empty array%s", NULL);
        if (cst && en) return fail(c, "'const' beside 'enum' is not supported%s", NULL);
        if (json_object_get(s, "anyOf")) return fail(c, "'anyOf' beside 'enum' or 'const' is not supported%s", NULL);
        int32_t r = rule(c);
        if (r < 0) return r;
        size_t n = cst ? 1 : json_array_size(en);
        for (size_t i = 0; i < n; i++) {
            /* every value must also satisfy the other keywords (type, ...): refuse what we
             * cannot promise */
            json_t *val = cst ? cst : json_array_get(en, i);
            json_t *type = json_object_get(s, "type");
            if (type) {
                const char *tn = json_is_string(type) ? json_string_value(type) : NULL;
                int ok = !tn || (!strcmp(tn, "string") && json_is_string(val)) ||
                         (!strcmp(tn, "number") && json_is_number(val)) ||
                         (!strcmp(tn, "integer") && json_is_integer(val)) ||
                         (!strcmp(tn, "boolean") && json_is_boolean(val)) || (!strcmp(tn, "null") && json_is_null(val));
                if (!ok || !tn) return fail(c, "an 'enum'/'const' value does not match 'type'%s", NULL);
            }
            if (json_is_object(val) || json_is_array(val))
                return fail(c, "'enum'/'const' values must be strings, numbers, booleans or null%s", NULL);
            int32_t l = r_literal_of(c, val);
            if (l < 0) return l;
            TRY(sw_gbuild_alt(c->b, r));
            TRY(sw_gbuild_ref(c->b, r, l));
        }
        return r;
    }
    json_t *any = json_object_get(s, "anyOf");
    if (any) {
        if (!json_is_array(any) || !json_array_size(any)) return fail(c, "'anyOf' must be a non-empty array%s", NULL);
        if (json_object_get(s, "type") || json_object_get(s, "properties") || json_object_get(s, "items"))
            return fail(c, "'anyOf' beside other constraints is not supported: put them in each branch%s", NULL);
        int32_t r = rule(c);
        if (r < 0) return r;
        for (size_t i = 0; i < json_array_size(any); i++) {
            char idx[40];
            snprintf(idx, sizeof idx, ".anyOf[%zu]", i);
            size_t old = path_push(c, "%s", idx);
            int32_t b = gen(c, json_array_get(any, i));
            path_pop(c, old);
            if (b < 0) return b;
            TRY(sw_gbuild_alt(c->b, r));
            TRY(sw_gbuild_ref(c->b, r, b));
        }
        return r;
    }
    json_t *type = json_object_get(s, "type");
    if (!type) { /* no type: what the other keywords say, else any value */
        if (json_object_get(s, "properties") || json_object_get(s, "required") ||
            json_object_get(s, "additionalProperties"))
            return r_object(c, s);
        if (json_object_get(s, "items")) return r_type(c, s, "array");
        return r_value(c);
    }
    if (json_is_string(type)) return r_type(c, s, json_string_value(type));
    if (!json_is_array(type) || !json_array_size(type)) return fail(c, "'type' must be a string or a list of them%s", NULL);
    int32_t r = rule(c);
    if (r < 0) return r;
    for (size_t i = 0; i < json_array_size(type); i++) {
        json_t *t = json_array_get(type, i);
        if (!json_is_string(t)) return fail(c, "'type' must be a string or a list of them%s", NULL);
        int32_t b = r_type(c, s, json_string_value(t));
        if (b < 0) return b;
        TRY(sw_gbuild_alt(c->b, r));
        TRY(sw_gbuild_ref(c->b, r, b));
    }
    return r;
}

static int32_t gen(struct sc *c, json_t *s)
{
    if (c->err) return -1;
    if (++c->nest > MAX_NEST) return fail(c, "the schema nests deeper than %s levels", "48");
    int32_t r = gen_inner(c, s);
    c->nest--;
    return c->err ? -1 : r;
}

int sw__schema_compile(json_t *schema, const char *field, const char *prefix, const char *suffix, uint8_t **out,
                       size_t *out_len, struct sw_api_oai_error *e)
{
    *out = NULL;
    *out_len = 0;
    struct sc *c = calloc(1, sizeof *c);
    if (!c) return sw__oai_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    c->e = e;
    c->field = field;
    c->root = schema;
    int rc = sw_gbuild_new(&c->b);
    int32_t root = -1;
    if (!rc) {
        if (schema) {
            root = gen(c, schema);
        } else { /* JSON mode: any object */
            if (r_value(c) >= 0) root = c->obj_any - 1;
        }
    }
    if (root >= 0 && (prefix || suffix)) { /* literal text around the value (a tool call's markers) */
        int32_t w = rule(c);
        if (w < 0 || sw_gbuild_alt(c->b, w) || (prefix && sw_gbuild_lit(c->b, w, prefix, strlen(prefix))) ||
            sw_gbuild_ref(c->b, w, root) || (suffix && sw_gbuild_lit(c->b, w, suffix, strlen(suffix))))
            root = oom(c);
        else
            root = w;
    }
    struct sw_buf g = { 0 };
    char err[160] = "";
    if (rc) {
        sw__oai_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    } else if (root >= 0 && (rc = sw_gbuild_finish(c->b, root, &g, err, sizeof err))) {
        if (rc == SW_ETOOBIG) oom(c);
        else sw__oai_err_set(e, 500, "server_error", NULL, field, "%s: %s", field, err);
    } else if (root >= 0) {
        /* a schema that recurses into itself before any byte ("anyOf": [{"$ref": "#"}])
         * cannot start */
        struct sw_grammar *gr = NULL;
        struct sw_gstate *st = NULL;
        if (sw_grammar_load(g.data, g.len, &gr) || sw_gstate_new(gr, &st)) {
            rc = SW__BAD(e, field, "%s: the schema refers to itself before any value is written (or nests too deep "
                         "to start)", field);
        }
        sw_gstate_free(st);
        sw_grammar_free(gr);
    }
    if (root < 0 && !rc) rc = SW_EINVAL;
    sw_gbuild_free(c->b);
    free(c);
    if (rc) {
        sw_buf_free(&g);
        return rc < 0 ? rc : SW_EINVAL;
    }
    *out = g.data;
    *out_len = g.len;
    return 0;
}
