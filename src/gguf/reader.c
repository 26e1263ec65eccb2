/* reader.c — opens a GGUF v2/v3 file (or bytes in memory), validates every count, length,
 * offset and size against the bytes that exist before using it, and gives borrowed views of
 * the metadata and the tensor table. Tensor data stays in the map: nothing is copied.
 * Not for: writing (writer.c) or interpreting tensors (src/infer).
 *
 * Spec: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md — all integers are
 * little-endian; header = magic "GGUF", version u32, n_tensors u64, n_kv u64 (v2+);
 * strings = u64 length + bytes; arrays = elem type u32 + count u64 + elements. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

/* Caps on what a sane file holds; beyond them a file is refused before we allocate. */
#define CAP_KEY_LEN 65535u       /* GGUF: keys are at most 2^16-1 bytes */
#define CAP_TENSOR_NAME_LEN 64u  /* GGUF: tensor names are at most 64 bytes */
#define CAP_ARRAY_DEPTH 8u       /* nested arrays deeper than this are refused */
#define CAP_ALIGNMENT (1u << 30)

#define MIN_KV_BYTES 13u     /* key length u64 + type u32 + one byte of value */
#define MIN_TINFO_BYTES 24u  /* name length u64 + n_dims u32 + type u32 + offset u64 */

struct sw_gguf {
    char *path;
    struct sw_mmap map;       /* when opened from a file; empty for open_mem */
    const uint8_t *base;
    uint64_t len;
    uint32_t version;
    uint64_t alignment;
    uint64_t infos_end;       /* first byte after the tensor infos */
    uint64_t data_offset;
    uint64_t n_kv, n_tensors;
    struct sw_gguf_kv *kvs;
    struct sw_gguf_tensor *tensors;
    uint64_t *pool;           /* offs tables of string/array arrays */
    uint64_t n_pool, cap_pool;
    uint32_t *kv_hash, *t_hash; /* open addressing: index + 1, 0 = empty */
    uint64_t kv_hash_mask, t_hash_mask;
    char *arch;
};

/* ------------------------------------------------------------------ cursor + errors */

struct cur {
    struct sw_gguf *g;
    const uint8_t *p;
    uint64_t len, pos;
    char *err;
    size_t err_len;
    /* What is being parsed, formatted only when an error is reported. */
    const char *item;        /* "metadata", "tensor" or NULL */
    uint64_t item_index;
    const char *item_name;
    uint64_t item_name_len;
};

static const char *display_path(const struct sw_gguf *g)
{
    return g->path ? g->path : "<memory>";
}

/* Writes "<file>: <item> <field> at byte <at>: <what>" and returns code. */
__attribute__((format(printf, 5, 6))) static int fail(struct cur *c, int code, const char *field,
                                                      uint64_t at, const char *fmt, ...)
{
    if (!c->err || !c->err_len) return code;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    char item[192] = "";
    if (c->item && c->item_name)
        snprintf(item, sizeof item, "%s %llu \"%.*s\" ", c->item, (unsigned long long)c->item_index,
                 (int)SW_MIN(c->item_name_len, 80), c->item_name);
    else if (c->item)
        snprintf(item, sizeof item, "%s %llu ", c->item, (unsigned long long)c->item_index);
    snprintf(c->err, c->err_len, "%s: %s%s at byte %llu: %s", display_path(c->g), item, field,
             (unsigned long long)at, what);
    return code;
}

static uint64_t left(const struct cur *c) { return c->len - c->pos; }

static int need(struct cur *c, uint64_t n, const char *field)
{
    if (left(c) >= n) return 0;
    return fail(c, SW_ECORRUPT, field, c->pos,
                "truncated: needs %llu bytes, the file has %llu left",
                (unsigned long long)n, (unsigned long long)left(c));
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

static int rd_u32(struct cur *c, const char *field, uint32_t *out)
{
    int rc = need(c, 4, field);
    if (rc) return rc;
    *out = le32(c->p + c->pos);
    c->pos += 4;
    return 0;
}

static int rd_u64(struct cur *c, const char *field, uint64_t *out)
{
    int rc = need(c, 8, field);
    if (rc) return rc;
    *out = le64(c->p + c->pos);
    c->pos += 8;
    return 0;
}

/* A GGUF string: u64 length, then that many bytes (not NUL-terminated). */
static int rd_str(struct cur *c, const char *field, uint64_t cap, struct sw_gguf_str *out)
{
    uint64_t at = c->pos, n;
    int rc = rd_u64(c, field, &n);
    if (rc) return rc;
    if (n > left(c))
        return fail(c, SW_ECORRUPT, field, at, "string length %llu exceeds the %llu bytes left in the file",
                    (unsigned long long)n, (unsigned long long)left(c));
    if (n > cap)
        return fail(c, SW_ETOOBIG, field, at, "string length %llu exceeds the limit of %llu",
                    (unsigned long long)n, (unsigned long long)cap);
    out->ptr = (const char *)c->p + c->pos;
    out->len = n;
    c->pos += n;
    return 0;
}

/* ------------------------------------------------------------------ offs pool */

static int pool_reserve(struct sw_gguf *g, uint64_t n, uint64_t *idx_out)
{
    if (n > UINT64_MAX / 2 - g->n_pool) return SW_ENOMEM;
    if (g->n_pool + n > g->cap_pool) {
        uint64_t cap = g->cap_pool ? g->cap_pool : 1024;
        while (cap < g->n_pool + n) cap *= 2;
        if (cap > SIZE_MAX / sizeof(uint64_t)) return SW_ENOMEM;
        uint64_t *p = realloc(g->pool, (size_t)cap * sizeof *p);
        if (!p) return SW_ENOMEM;
        g->pool = p;
        g->cap_pool = cap;
    }
    *idx_out = g->n_pool;
    g->n_pool += n;
    return 0;
}

/* ------------------------------------------------------------------ values */

uint32_t sw_gguf_vtype_size(uint32_t t)
{
    switch (t) {
    case SW_GGUF_U8: case SW_GGUF_I8: case SW_GGUF_BOOL: return 1;
    case SW_GGUF_U16: case SW_GGUF_I16: return 2;
    case SW_GGUF_U32: case SW_GGUF_I32: case SW_GGUF_F32: return 4;
    case SW_GGUF_U64: case SW_GGUF_I64: case SW_GGUF_F64: return 8;
    default: return 0;
    }
}

static int valid_vtype(uint32_t t) { return t <= SW_GGUF_F64; }

/* Parses an array body (elem type, count, elements) at the cursor. On success *offs_idx is the
 * pool index of its offs table (UINT64_MAX when the elements have a fixed size).
 * Pool layout for elem type STRING: offs[0..n) = offset of element i from data.
 * For elem type ARRAY: offs[0..n) as above, offs[n+i] = distance in entries from offs[0] to
 * sub-array i's own table (0: none). */
static int parse_array(struct cur *c, unsigned depth, struct sw_gguf_arr *a, uint64_t *offs_idx)
{
    uint64_t at = c->pos;
    int rc;
    *offs_idx = UINT64_MAX;
    if (depth > CAP_ARRAY_DEPTH)
        return fail(c, SW_ETOOBIG, "array", at, "arrays nested deeper than %u", CAP_ARRAY_DEPTH);
    if ((rc = rd_u32(c, "array element type", &a->elem_type))) return rc;
    if (!valid_vtype(a->elem_type))
        return fail(c, SW_ECORRUPT, "array element type", at, "unknown value type %u (expected 0..12)",
                    a->elem_type);
    at = c->pos;
    if ((rc = rd_u64(c, "array count", &a->n))) return rc;
    a->data = c->p + c->pos;
    a->offs = NULL;
    uint32_t es = sw_gguf_vtype_size(a->elem_type);
    if (es) {
        if (a->n > left(c) / es)
            return fail(c, SW_ECORRUPT, "array count", at,
                        "%llu elements of %u bytes exceed the %llu bytes left in the file",
                        (unsigned long long)a->n, es, (unsigned long long)left(c));
        a->data_len = a->n * es;
        if (a->elem_type == SW_GGUF_BOOL) {
            for (uint64_t i = 0; i < a->n; i++)
                if (a->data[i] > 1)
                    return fail(c, SW_ECORRUPT, "bool array element", c->pos + i,
                                "value %u (expected 0 or 1)", a->data[i]);
        }
        c->pos += a->data_len;
        return 0;
    }
    uint64_t min = a->elem_type == SW_GGUF_STRING ? 8 : 12;
    if (a->n > left(c) / min)
        return fail(c, SW_ECORRUPT, "array count", at,
                    "%llu %s elements cannot fit in the %llu bytes left in the file",
                    (unsigned long long)a->n, sw_gguf_vtype_name(a->elem_type),
                    (unsigned long long)left(c));
    uint64_t base;
    uint64_t entries = a->elem_type == SW_GGUF_STRING ? a->n : 2 * a->n;
    if ((rc = pool_reserve(c->g, entries, &base)))
        return fail(c, rc, "array count", at, "out of memory for %llu elements", (unsigned long long)a->n);
    uint64_t start = c->pos;
    if (a->elem_type == SW_GGUF_STRING) {
        /* The hot loop for vocabularies: 150k strings, one bounds check each. */
        uint64_t *offs = a->n ? c->g->pool + base : NULL; /* an empty array may have no pool */
        const uint8_t *p = c->p;
        uint64_t pos = c->pos, end = c->len;
        for (uint64_t i = 0; i < a->n; i++) {
            offs[i] = pos - start;
            if (end - pos < 8) {
                c->pos = pos;
                return need(c, 8, "array string length");
            }
            uint64_t n = le64(p + pos);
            pos += 8;
            if (n > end - pos) {
                c->pos = pos;
                return fail(c, SW_ECORRUPT, "array string length", pos - 8,
                            "element %llu: length %llu exceeds the %llu bytes left in the file",
                            (unsigned long long)i, (unsigned long long)n,
                            (unsigned long long)(end - pos));
            }
            pos += n;
        }
        c->pos = pos;
    } else {
        for (uint64_t i = 0; i < a->n; i++) {
            c->g->pool[base + i] = c->pos - start;
            struct sw_gguf_arr sub;
            uint64_t sub_idx;
            if ((rc = parse_array(c, depth + 1, &sub, &sub_idx))) return rc;
            c->g->pool[base + a->n + i] = sub_idx == UINT64_MAX ? 0 : sub_idx - base;
        }
    }
    a->data_len = c->pos - start;
    *offs_idx = base;
    return 0;
}

static int parse_value(struct cur *c, struct sw_gguf_kv *kv, uint64_t *offs_idx)
{
    uint64_t at = c->pos;
    int rc;
    *offs_idx = UINT64_MAX;
    uint32_t es = sw_gguf_vtype_size(kv->type);
    if (es) {
        if ((rc = need(c, es, "value"))) return rc;
        const uint8_t *p = c->p + c->pos;
        c->pos += es;
        switch (kv->type) {
        case SW_GGUF_U8: kv->v.u64 = p[0]; break;
        case SW_GGUF_I8: kv->v.i64 = (int8_t)p[0]; break;
        case SW_GGUF_BOOL:
            if (p[0] > 1) return fail(c, SW_ECORRUPT, "bool value", at, "%u (expected 0 or 1)", p[0]);
            kv->v.u64 = p[0];
            break;
        case SW_GGUF_U16: kv->v.u64 = (uint16_t)(p[0] | p[1] << 8); break;
        case SW_GGUF_I16: kv->v.i64 = (int16_t)(uint16_t)(p[0] | p[1] << 8); break;
        case SW_GGUF_U32: kv->v.u64 = le32(p); break;
        case SW_GGUF_I32: kv->v.i64 = (int32_t)le32(p); break;
        case SW_GGUF_U64: kv->v.u64 = le64(p); break;
        case SW_GGUF_I64: kv->v.i64 = (int64_t)le64(p); break;
        case SW_GGUF_F32: {
            uint32_t u = le32(p);
            float f;
            memcpy(&f, &u, 4);
            kv->v.f64 = f;
            break;
        }
        case SW_GGUF_F64: {
            uint64_t u = le64(p);
            memcpy(&kv->v.f64, &u, 8);
            break;
        }
        }
        return 0;
    }
    if (kv->type == SW_GGUF_STRING) return rd_str(c, "string value", UINT64_MAX, &kv->v.str);
    if (kv->type == SW_GGUF_ARRAY) return parse_array(c, 1, &kv->v.arr, offs_idx);
    return fail(c, SW_ECORRUPT, "value type", at - 4, "unknown value type %u (expected 0..12)", kv->type);
}

/* ------------------------------------------------------------------ hashing of names */

static uint64_t name_hash(const char *p, uint64_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (uint64_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

static int str_eq(struct sw_gguf_str s, const char *p, uint64_t n)
{
    return s.len == n && (n == 0 || memcmp(s.ptr, p, n) == 0);
}

static int hash_alloc(uint64_t n, uint32_t **tab, uint64_t *mask)
{
    uint64_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    *tab = calloc((size_t)cap, sizeof **tab);
    if (!*tab) return SW_ENOMEM;
    *mask = cap - 1;
    return 0;
}

/* Returns the slot for name: either empty or holding the match. */
static uint64_t kv_slot(const struct sw_gguf *g, const char *p, uint64_t n)
{
    uint64_t i = name_hash(p, n) & g->kv_hash_mask;
    while (g->kv_hash[i] && !str_eq(g->kvs[g->kv_hash[i] - 1].key, p, n)) i = (i + 1) & g->kv_hash_mask;
    return i;
}

static uint64_t t_slot(const struct sw_gguf *g, const char *p, uint64_t n)
{
    uint64_t i = name_hash(p, n) & g->t_hash_mask;
    while (g->t_hash[i] && !str_eq(g->tensors[g->t_hash[i] - 1].name, p, n))
        i = (i + 1) & g->t_hash_mask;
    return i;
}

/* ------------------------------------------------------------------ parsing */

static int parse_layer(struct sw_gguf_str name)
{
    /* llama.cpp tensor naming: "blk.<N>.<what>" for the tensors of layer N. */
    if (name.len < 6 || memcmp(name.ptr, "blk.", 4) != 0) return -1;
    uint64_t i = 4;
    long v = 0;
    while (i < name.len && name.ptr[i] >= '0' && name.ptr[i] <= '9' && i < 4 + 9)
        v = v * 10 + (name.ptr[i++] - '0');
    if (i == 4 || i >= name.len || name.ptr[i] != '.') return -1;
    return (int)v;
}

static int cmp_tensor_offset(const void *a, const void *b, void *ud)
{
    const struct sw_gguf_tensor *t = ud;
    uint64_t x = t[*(const uint64_t *)a].offset, y = t[*(const uint64_t *)b].offset;
    return x < y ? -1 : x > y;
}

static int parse(struct cur *c)
{
    struct sw_gguf *g = c->g;
    int rc;
    /* GGUF: the file starts with the 4 bytes "GGUF". */
    if ((rc = need(c, 4, "magic"))) return rc;
    if (memcmp(c->p, "GGUF", 4) != 0)
        return fail(c, SW_ECORRUPT, "magic", 0, "got %02x %02x %02x %02x, expected \"GGUF\"", c->p[0],
                    c->p[1], c->p[2], c->p[3]);
    c->pos = 4;
    if ((rc = rd_u32(c, "version", &g->version))) return rc;
    if (g->version == 1)
        return fail(c, SW_EUNSUPPORTED, "version", 4,
                    "GGUF version 1 (32-bit counts) is not supported; convert the file to version 3");
    if (g->version != 2 && g->version != 3) {
        uint32_t sw = __builtin_bswap32(g->version);
        if (sw == 2 || sw == 3)
            return fail(c, SW_EUNSUPPORTED, "version", 4, "big-endian GGUF is not supported");
        return fail(c, SW_EUNSUPPORTED, "version", 4, "version %u, expected 2 or 3", g->version);
    }
    if ((rc = rd_u64(c, "tensor count", &g->n_tensors))) return rc;
    if ((rc = rd_u64(c, "metadata count", &g->n_kv))) return rc;
    if (g->n_kv > left(c) / MIN_KV_BYTES)
        return fail(c, SW_ECORRUPT, "metadata count", 16, "%llu key/value pairs cannot fit in the %llu bytes left",
                    (unsigned long long)g->n_kv, (unsigned long long)left(c));
    if (g->n_tensors > left(c) / MIN_TINFO_BYTES || g->n_tensors > UINT32_MAX - 1)
        return fail(c, SW_ECORRUPT, "tensor count", 8, "%llu tensor infos cannot fit in the %llu bytes left",
                    (unsigned long long)g->n_tensors, (unsigned long long)left(c));

    g->kvs = calloc(g->n_kv ? (size_t)g->n_kv : 1, sizeof *g->kvs);
    uint64_t *kv_offs = malloc((g->n_kv ? (size_t)g->n_kv : 1) * sizeof *kv_offs);
    if (!g->kvs || !kv_offs || hash_alloc(g->n_kv, &g->kv_hash, &g->kv_hash_mask)) {
        free(kv_offs);
        return fail(c, SW_ENOMEM, "metadata", c->pos, "out of memory");
    }
    /* Metadata: key string, value type u32, value. */
    c->item = "metadata";
    for (uint64_t i = 0; i < g->n_kv; i++) {
        struct sw_gguf_kv *kv = &g->kvs[i];
        c->item_index = i;
        c->item_name = NULL;
        kv->file_offset = c->pos;
        uint64_t at = c->pos;
        if ((rc = rd_str(c, "key", CAP_KEY_LEN, &kv->key))) goto out;
        if (kv->key.len == 0) {
            rc = fail(c, SW_ECORRUPT, "key", at, "empty key");
            goto out;
        }
        c->item_name = kv->key.ptr;
        c->item_name_len = kv->key.len;
        uint64_t slot = kv_slot(g, kv->key.ptr, kv->key.len);
        if (g->kv_hash[slot]) {
            rc = fail(c, SW_ECORRUPT, "key", at, "duplicate key (first at byte %llu)",
                      (unsigned long long)g->kvs[g->kv_hash[slot] - 1].file_offset);
            goto out;
        }
        if ((rc = rd_u32(c, "value type", &kv->type))) goto out;
        if (!valid_vtype(kv->type)) {
            rc = fail(c, SW_ECORRUPT, "value type", c->pos - 4, "unknown value type %u (expected 0..12)",
                      kv->type);
            goto out;
        }
        if ((rc = parse_value(c, kv, &kv_offs[i]))) goto out;
        g->kv_hash[slot] = (uint32_t)(i + 1);
    }
    /* The pool no longer moves: turn pool indices into pointers. */
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kvs[i].type == SW_GGUF_ARRAY && kv_offs[i] != UINT64_MAX)
            g->kvs[i].v.arr.offs = g->pool ? g->pool + kv_offs[i] : NULL; /* no pool: only empty arrays */

    /* GGUF: general.alignment (u32, a power of two) sets the data alignment; default 32. */
    c->item = NULL;
    g->alignment = 32;
    const struct sw_gguf_kv *al = sw_gguf_find(g, "general.alignment");
    if (al) {
        c->item = "metadata";
        c->item_index = (uint64_t)(al - g->kvs);
        c->item_name = al->key.ptr;
        c->item_name_len = al->key.len;
        if (al->type != SW_GGUF_U32) {
            rc = fail(c, SW_ECORRUPT, "value type", al->file_offset, "general.alignment has type %s, expected u32",
                      sw_gguf_vtype_name(al->type));
            goto out;
        }
        uint64_t a = al->v.u64;
        if (a == 0 || (a & (a - 1)) || a > CAP_ALIGNMENT) {
            rc = fail(c, SW_ECORRUPT, "value", al->file_offset, "general.alignment %llu is not a power of two in 1..2^30",
                      (unsigned long long)a);
            goto out;
        }
        g->alignment = a;
    }
    const struct sw_gguf_kv *ar = sw_gguf_find(g, "general.architecture");
    if (ar && ar->type == SW_GGUF_STRING) {
        g->arch = malloc((size_t)ar->v.str.len + 1);
        if (!g->arch) { rc = SW_ENOMEM; goto out; }
        memcpy(g->arch, ar->v.str.ptr, (size_t)ar->v.str.len);
        g->arch[ar->v.str.len] = 0;
    }

    /* Tensor infos: name, n_dims u32, dims u64 each, type u32, offset u64. */
    g->tensors = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *g->tensors);
    if (!g->tensors || hash_alloc(g->n_tensors, &g->t_hash, &g->t_hash_mask)) {
        rc = fail(c, SW_ENOMEM, "tensor infos", c->pos, "out of memory");
        goto out;
    }
    c->item = "tensor";
    uint64_t *info_at = malloc((g->n_tensors ? (size_t)g->n_tensors : 1) * sizeof *info_at);
    if (!info_at) { rc = SW_ENOMEM; goto out; }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct sw_gguf_tensor *t = &g->tensors[i];
        c->item_index = i;
        c->item_name = NULL;
        uint64_t at = info_at[i] = c->pos;
        if ((rc = rd_str(c, "name", CAP_TENSOR_NAME_LEN, &t->name))) goto out_info;
        c->item_name = t->name.ptr;
        c->item_name_len = t->name.len;
        uint64_t slot = t_slot(g, t->name.ptr, t->name.len);
        if (g->t_hash[slot]) {
            rc = fail(c, SW_ECORRUPT, "name", at, "duplicate tensor name (first at byte %llu)",
                      (unsigned long long)info_at[g->t_hash[slot] - 1]);
            goto out_info;
        }
        g->t_hash[slot] = (uint32_t)(i + 1);
        at = c->pos;
        if ((rc = rd_u32(c, "n_dims", &t->n_dims))) goto out_info;
        if (t->n_dims > 4) {
            rc = fail(c, SW_ECORRUPT, "n_dims", at, "%u dimensions, at most 4 are allowed", t->n_dims);
            goto out_info;
        }
        uint64_t n_elems = 1, dims_at = c->pos;
        int overflow = 0;
        for (uint32_t d = 0; d < 4; d++) {
            uint64_t v = 1;
            at = c->pos;
            if (d < t->n_dims && (rc = rd_u64(c, "dimension", &v))) goto out_info;
            if (v > (uint64_t)INT64_MAX) {
                rc = fail(c, SW_ECORRUPT, "dimension", at, "dimension %u is %llu, larger than 2^63-1", d,
                          (unsigned long long)v);
                goto out_info;
            }
            t->ne[d] = (int64_t)v;
            if (v && n_elems > (uint64_t)INT64_MAX / v) overflow = 1;
            else n_elems *= v;
        }
        if (overflow) {
            rc = fail(c, SW_ECORRUPT, "dimensions", dims_at, "the element count overflows 2^63");
            goto out_info;
        }
        at = c->pos;
        if ((rc = rd_u32(c, "type", &t->type))) goto out_info;
        const struct sw_type_info *ti = sw_gguf_type_info(t->type);
        if (!ti) {
            rc = fail(c, SW_EUNSUPPORTED, "type", at, "unknown ggml type %u", t->type);
            goto out_info;
        }
        if (t->ne[0] % ti->block_size) {
            rc = fail(c, SW_ECORRUPT, "dimension", dims_at, "row length %lld is not a multiple of the %s block size %u",
                      (long long)t->ne[0], ti->name, ti->block_size);
            goto out_info;
        }
        if (sw_gguf_type_bytes(t->type, n_elems, &t->n_bytes)) {
            rc = fail(c, SW_ECORRUPT, "dimensions", dims_at, "tensor size overflows");
            goto out_info;
        }
        at = c->pos;
        if ((rc = rd_u64(c, "offset", &t->offset))) goto out_info;
        t->layer = parse_layer(t->name);
    }
    g->infos_end = c->pos;
    /* GGUF: the data section starts at the next multiple of the alignment after the infos. */
    g->data_offset = (g->infos_end + g->alignment - 1) / g->alignment * g->alignment;
    uint64_t data_len = g->data_offset <= g->len ? g->len - g->data_offset : 0;
    if (g->n_tensors && g->data_offset > g->len) {
        c->item = NULL;
        rc = fail(c, SW_ECORRUPT, "data section", g->infos_end,
                  "the file ends before the aligned data section start %llu",
                  (unsigned long long)g->data_offset);
        goto out_info;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct sw_gguf_tensor *t = &g->tensors[i];
        c->item_index = i;
        c->item_name = t->name.ptr;
        c->item_name_len = t->name.len;
        uint64_t off_at = info_at[i] + 8 + t->name.len + 4 + 8ull * t->n_dims + 4;
        /* GGUF: each tensor's offset is a multiple of general.alignment. */
        if (t->offset % g->alignment) {
            rc = fail(c, SW_ECORRUPT, "offset", off_at, "data offset %llu is not a multiple of the alignment %llu",
                      (unsigned long long)t->offset, (unsigned long long)g->alignment);
            goto out_info;
        }
        if (t->offset > data_len || t->n_bytes > data_len - t->offset) {
            rc = fail(c, SW_ECORRUPT, "offset", off_at,
                      "data [%llu, +%llu) runs past the end of the file (data section holds %llu bytes)",
                      (unsigned long long)t->offset, (unsigned long long)t->n_bytes,
                      (unsigned long long)data_len);
            goto out_info;
        }
        t->data = g->base + g->data_offset + t->offset;
    }
    /* No two tensors may share bytes. */
    if (g->n_tensors > 1) {
        uint64_t *order = malloc((size_t)g->n_tensors * sizeof *order);
        if (!order) { rc = SW_ENOMEM; goto out_info; }
        for (uint64_t i = 0; i < g->n_tensors; i++) order[i] = i;
        qsort_r(order, (size_t)g->n_tensors, sizeof *order, cmp_tensor_offset, g->tensors);
        for (uint64_t k = 1; k < g->n_tensors; k++) {
            const struct sw_gguf_tensor *a = &g->tensors[order[k - 1]], *b = &g->tensors[order[k]];
            if (a->n_bytes && b->n_bytes && a->offset + a->n_bytes > b->offset) {
                c->item_index = order[k];
                c->item_name = b->name.ptr;
                c->item_name_len = b->name.len;
                uint64_t off_at = info_at[order[k]] + 8 + b->name.len + 4 + 8ull * b->n_dims + 4;
                rc = fail(c, SW_ECORRUPT, "offset", off_at, "data [%llu, +%llu) overlaps tensor \"%.*s\" [%llu, +%llu)",
                          (unsigned long long)b->offset, (unsigned long long)b->n_bytes,
                          (int)SW_MIN(a->name.len, 80), a->name.ptr, (unsigned long long)a->offset,
                          (unsigned long long)a->n_bytes);
                free(order);
                goto out_info;
            }
        }
        free(order);
    }
    rc = 0;
out_info:
    free(info_at);
out:
    free(kv_offs);
    return rc;
}

/* ------------------------------------------------------------------ open / close */

static int open_common(struct sw_gguf *g, struct sw_gguf **out, char *err, size_t err_len)
{
    struct cur c = { .g = g, .p = g->base, .len = g->len, .err = err, .err_len = err_len };
    int rc = parse(&c);
    if (rc) {
        if (err && err_len && !err[0])
            snprintf(err, err_len, "%s: %s", display_path(g), sw_strerror(rc));
        sw_gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

int sw_gguf_open(const char *path, struct sw_gguf **out, char *err, size_t err_len)
{
    *out = NULL;
    if (err && err_len) err[0] = 0;
    struct sw_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(path))) {
        free(g);
        return SW_ENOMEM;
    }
    int rc = sw_file_map(path, &g->map);
    if (rc) {
        if (err && err_len) {
            if (rc == SW_ENOTFOUND) snprintf(err, err_len, "%s: no such file", path);
            else if (rc == SW_EINVAL) snprintf(err, err_len, "%s: not a regular file", path);
            else snprintf(err, err_len, "%s: cannot map the file: %s", path, sw_strerror(rc));
        }
        sw_gguf_close(g);
        return rc;
    }
    g->base = g->map.data;
    g->len = g->map.len;
    return open_common(g, out, err, err_len);
}

int sw_gguf_open_mem(const uint8_t *data, size_t len, struct sw_gguf **out, char *err, size_t err_len)
{
    *out = NULL;
    if (err && err_len) err[0] = 0;
    struct sw_gguf *g = calloc(1, sizeof *g);
    if (!g) return SW_ENOMEM;
    g->base = data;
    g->len = len;
    return open_common(g, out, err, err_len);
}

void sw_gguf_close(struct sw_gguf *g)
{
    if (!g) return;
    sw_file_unmap(&g->map);
    free(g->path);
    free(g->kvs);
    free(g->tensors);
    free(g->pool);
    free(g->kv_hash);
    free(g->t_hash);
    free(g->arch);
    free(g);
}

/* ------------------------------------------------------------------ accessors */

uint32_t sw_gguf_version(const struct sw_gguf *g) { return g->version; }
uint64_t sw_gguf_alignment(const struct sw_gguf *g) { return g->alignment; }
uint64_t sw_gguf_data_offset(const struct sw_gguf *g) { return g->data_offset; }
uint64_t sw_gguf_file_size(const struct sw_gguf *g) { return g->len; }
const char *sw_gguf_path(const struct sw_gguf *g) { return display_path(g); }
uint64_t sw_gguf_header_size(const struct sw_gguf *g) { return g->infos_end; }
const uint8_t *sw_gguf_bytes(const struct sw_gguf *g) { return g->base; }

uint64_t sw_gguf_n_kv(const struct sw_gguf *g) { return g->n_kv; }

const struct sw_gguf_kv *sw_gguf_kv_at(const struct sw_gguf *g, uint64_t i)
{
    return i < g->n_kv ? &g->kvs[i] : NULL;
}

const struct sw_gguf_kv *sw_gguf_find(const struct sw_gguf *g, const char *key)
{
    uint64_t n = strlen(key);
    uint32_t ix = g->kv_hash[kv_slot(g, key, n)];
    return ix ? &g->kvs[ix - 1] : NULL;
}

uint64_t sw_gguf_n_tensors(const struct sw_gguf *g) { return g->n_tensors; }

const struct sw_gguf_tensor *sw_gguf_tensor_at(const struct sw_gguf *g, uint64_t i)
{
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const struct sw_gguf_tensor *sw_gguf_tensor_find(const struct sw_gguf *g, const char *name)
{
    uint64_t n = strlen(name);
    uint32_t ix = g->t_hash[t_slot(g, name, n)];
    return ix ? &g->tensors[ix - 1] : NULL;
}

/* ------------------------------------------------------------------ typed getters */

static int is_unsigned(uint32_t t)
{
    return t == SW_GGUF_U8 || t == SW_GGUF_U16 || t == SW_GGUF_U32 || t == SW_GGUF_U64;
}

static int is_signed(uint32_t t)
{
    return t == SW_GGUF_I8 || t == SW_GGUF_I16 || t == SW_GGUF_I32 || t == SW_GGUF_I64;
}

int sw_gguf_kv_u64(const struct sw_gguf_kv *kv, uint64_t *out)
{
    if (is_unsigned(kv->type)) *out = kv->v.u64;
    else if (is_signed(kv->type) && kv->v.i64 >= 0) *out = (uint64_t)kv->v.i64;
    else return SW_ECORRUPT;
    return 0;
}

int sw_gguf_get_u64(const struct sw_gguf *g, const char *key, uint64_t *out)
{
    const struct sw_gguf_kv *kv = sw_gguf_find(g, key);
    if (!kv) return SW_ENOTFOUND;
    return sw_gguf_kv_u64(kv, out);
}

int sw_gguf_get_i64(const struct sw_gguf *g, const char *key, int64_t *out)
{
    const struct sw_gguf_kv *kv = sw_gguf_find(g, key);
    if (!kv) return SW_ENOTFOUND;
    if (is_signed(kv->type)) *out = kv->v.i64;
    else if (is_unsigned(kv->type) && kv->v.u64 <= (uint64_t)INT64_MAX) *out = (int64_t)kv->v.u64;
    else return SW_ECORRUPT;
    return 0;
}

int sw_gguf_get_u32(const struct sw_gguf *g, const char *key, uint32_t *out)
{
    uint64_t v;
    int rc = sw_gguf_get_u64(g, key, &v);
    if (rc) return rc;
    if (v > UINT32_MAX) return SW_ECORRUPT;
    *out = (uint32_t)v;
    return 0;
}

int sw_gguf_get_f32(const struct sw_gguf *g, const char *key, float *out)
{
    const struct sw_gguf_kv *kv = sw_gguf_find(g, key);
    if (!kv) return SW_ENOTFOUND;
    if (kv->type == SW_GGUF_F32 || kv->type == SW_GGUF_F64) *out = (float)kv->v.f64;
    else if (is_unsigned(kv->type)) *out = (float)kv->v.u64;
    else if (is_signed(kv->type)) *out = (float)kv->v.i64;
    else return SW_ECORRUPT;
    return 0;
}

int sw_gguf_get_bool(const struct sw_gguf *g, const char *key, int *out)
{
    const struct sw_gguf_kv *kv = sw_gguf_find(g, key);
    if (!kv) return SW_ENOTFOUND;
    if (kv->type != SW_GGUF_BOOL) return SW_ECORRUPT;
    *out = kv->v.u64 != 0;
    return 0;
}

int sw_gguf_get_str(const struct sw_gguf *g, const char *key, struct sw_gguf_str *out)
{
    const struct sw_gguf_kv *kv = sw_gguf_find(g, key);
    if (!kv) return SW_ENOTFOUND;
    if (kv->type != SW_GGUF_STRING) return SW_ECORRUPT;
    *out = kv->v.str;
    return 0;
}

int sw_gguf_get_arr(const struct sw_gguf *g, const char *key, struct sw_gguf_arr *out)
{
    const struct sw_gguf_kv *kv = sw_gguf_find(g, key);
    if (!kv) return SW_ENOTFOUND;
    if (kv->type != SW_GGUF_ARRAY) return SW_ECORRUPT;
    *out = kv->v.arr;
    return 0;
}

const char *sw_gguf_get_cstr(const struct sw_gguf *g, const char *key, char *buf, size_t buf_len)
{
    struct sw_gguf_str s;
    if (!buf_len || sw_gguf_get_str(g, key, &s)) return NULL;
    size_t n = (size_t)SW_MIN(s.len, (uint64_t)buf_len - 1);
    memcpy(buf, s.ptr, n);
    buf[n] = 0;
    return buf;
}

/* ------------------------------------------------------------------ array elements */

int sw_gguf_arr_str(const struct sw_gguf_arr *a, uint64_t i, struct sw_gguf_str *out)
{
    if (a->elem_type != SW_GGUF_STRING || !a->offs) return SW_ECORRUPT;
    if (i >= a->n) return SW_ERANGE;
    const uint8_t *p = a->data + a->offs[i];
    out->len = le64(p);
    out->ptr = (const char *)p + 8;
    return 0;
}

int sw_gguf_arr_sub(const struct sw_gguf_arr *a, uint64_t i, struct sw_gguf_arr *out)
{
    if (a->elem_type != SW_GGUF_ARRAY || !a->offs) return SW_ECORRUPT;
    if (i >= a->n) return SW_ERANGE;
    const uint8_t *p = a->data + a->offs[i];
    uint64_t end = i + 1 < a->n ? a->offs[i + 1] : a->data_len;
    out->elem_type = le32(p);
    out->n = le64(p + 4);
    out->data = p + 12;
    out->data_len = end - a->offs[i] - 12;
    uint64_t child = a->offs[a->n + i];
    out->offs = child ? a->offs + child : NULL;
    return 0;
}

int sw_gguf_arr_f32(const struct sw_gguf_arr *a, uint64_t i, float *out)
{
    if (i >= a->n) return SW_ERANGE;
    if (a->elem_type == SW_GGUF_F32) {
        uint32_t u = le32(a->data + 4 * i);
        memcpy(out, &u, 4);
    } else if (a->elem_type == SW_GGUF_F64) {
        uint64_t u = le64(a->data + 8 * i);
        double d;
        memcpy(&d, &u, 8);
        *out = (float)d;
    } else {
        return SW_ECORRUPT;
    }
    return 0;
}

int sw_gguf_arr_i64(const struct sw_gguf_arr *a, uint64_t i, int64_t *out)
{
    if (i >= a->n) return SW_ERANGE;
    const uint8_t *p = a->data;
    switch (a->elem_type) {
    case SW_GGUF_U8: *out = p[i]; break;
    case SW_GGUF_I8: *out = (int8_t)p[i]; break;
    case SW_GGUF_U16: *out = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8); break;
    case SW_GGUF_I16: *out = (int16_t)(uint16_t)(p[2 * i] | p[2 * i + 1] << 8); break;
    case SW_GGUF_U32: *out = le32(p + 4 * i); break;
    case SW_GGUF_I32: *out = (int32_t)le32(p + 4 * i); break;
    case SW_GGUF_I64: *out = (int64_t)le64(p + 8 * i); break;
    case SW_GGUF_U64: {
        uint64_t v = le64(p + 8 * i);
        if (v > (uint64_t)INT64_MAX) return SW_ERANGE;
        *out = (int64_t)v;
        break;
    }
    default: return SW_ECORRUPT;
    }
    return 0;
}

/* ------------------------------------------------------------------ architecture */

const char *sw_gguf_arch(const struct sw_gguf *g) { return g->arch ? g->arch : ""; }

static int arch_key(const struct sw_gguf *g, const char *suffix, char *key, size_t key_len)
{
    if (!g->arch) return SW_ENOTFOUND;
    int n = snprintf(key, key_len, "%s.%s", g->arch, suffix);
    return n < 0 || (size_t)n >= key_len ? SW_ENOTFOUND : 0;
}

int sw_gguf_arch_u32(const struct sw_gguf *g, const char *suffix, uint32_t *out)
{
    char key[256];
    int rc = arch_key(g, suffix, key, sizeof key);
    return rc ? rc : sw_gguf_get_u32(g, key, out);
}

int sw_gguf_arch_f32(const struct sw_gguf *g, const char *suffix, float *out)
{
    char key[256];
    int rc = arch_key(g, suffix, key, sizeof key);
    return rc ? rc : sw_gguf_get_f32(g, key, out);
}

uint32_t sw_gguf_n_layers(const struct sw_gguf *g)
{
    uint32_t n = 0;
    return sw_gguf_arch_u32(g, "block_count", &n) ? 0 : n;
}

/* ------------------------------------------------------------------ shard keys */

int sw_gguf_shard_info(const struct sw_gguf *g, struct sw_gguf_shard_info *out)
{
    memset(out, 0, sizeof *out);
    int rc;
    if ((rc = sw_gguf_get_u32(g, SW_KEY_SHARD_INDEX, &out->index))) return rc;
    if ((rc = sw_gguf_get_u32(g, SW_KEY_SHARD_COUNT, &out->count))) return rc;
    if ((rc = sw_gguf_get_u32(g, SW_KEY_SHARD_LAYER_FIRST, &out->layer_first))) return rc;
    if ((rc = sw_gguf_get_u32(g, SW_KEY_SHARD_LAYER_LAST, &out->layer_last))) return rc;
    if (!sw_gguf_get_cstr(g, SW_KEY_MODEL_ID, out->model_id, sizeof out->model_id)) return SW_ENOTFOUND;
    if (out->count == 0 || out->index >= out->count || out->layer_first > out->layer_last)
        return SW_ECORRUPT;
    return 0;
}
