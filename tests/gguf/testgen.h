/* testgen.h — writes small llama-shaped GGUF models for the tests: every metadata value type,
 * arrays of strings, nested arrays, tensors of many ggml types, tied or untied output, any
 * alignment, and llama.cpp split models ("-0000K-of-0000N.gguf"). Tensor bytes are a
 * deterministic function of the tensor name, so a test can check them without the source. */
#ifndef SW_TESTGEN_H
#define SW_TESTGEN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

struct tg_opts {
    uint32_t n_layers;
    int tied;            /* no output.weight */
    uint64_t alignment;  /* 0: default 32 */
    uint32_t n_parts;    /* > 1: write a llama.cpp split model, path is the prefix */
    uint32_t n_embd;     /* multiple of 64; 0: 64 */
    uint32_t n_vocab;    /* 0: 300 */
};

struct tg_tensor {
    char name[64];
    uint32_t type, n_dims;
    int64_t ne[4];
};

static uint64_t tg_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Deterministic bytes for a tensor: xorshift64 seeded by its name, position-addressable. */
static void tg_fill(const char *name, uint8_t *p, uint64_t n)
{
    uint64_t x = tg_hash(name) | 1;
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
}

static uint32_t tg_tensors(const struct tg_opts *o, struct tg_tensor *out, uint32_t cap)
{
    uint32_t E = o->n_embd ? o->n_embd : 64, V = o->n_vocab ? o->n_vocab : 300, n = 0;
#define TG_ADD(nm, ty, nd, a, b)                                                                   \
    do {                                                                                           \
        if (n < cap) {                                                                             \
            struct tg_tensor *t_ = &out[n];                                                        \
            memset(t_, 0, sizeof *t_);                                                             \
            snprintf(t_->name, sizeof t_->name, "%s", nm);                                         \
            t_->type = ty;                                                                         \
            t_->n_dims = nd;                                                                       \
            t_->ne[0] = a;                                                                         \
            t_->ne[1] = b;                                                                         \
            t_->ne[2] = t_->ne[3] = 1;                                                             \
        }                                                                                          \
        n++;                                                                                       \
    } while (0)
    TG_ADD("token_embd.weight", SW_TYPE_F16, 2, E, V);
    TG_ADD("rope_freqs.weight", SW_TYPE_F32, 1, 16, 1);
    static const struct { const char *n; uint32_t type; int wide; int rows; } per_layer[] = {
        { "attn_norm.weight", SW_TYPE_F32, 0, 0 }, { "attn_q.weight", SW_TYPE_Q8_0, 0, 1 },
        { "attn_k.weight", SW_TYPE_Q4_K, 1, 8 },  { "attn_v.weight", SW_TYPE_BF16, 0, 1 },
        { "attn_output.weight", SW_TYPE_Q5_0, 0, 1 }, { "ffn_gate.weight", SW_TYPE_IQ2_XXS, 1, 4 },
        { "ffn_up.weight", SW_TYPE_Q6_K, 1, 4 },  { "ffn_down.weight", SW_TYPE_IQ4_XS, 1, 3 },
        { "ffn_norm.weight", SW_TYPE_F32, 0, 0 },
    };
    for (uint32_t l = 0; l < o->n_layers; l++) {
        for (size_t k = 0; k < sizeof per_layer / sizeof per_layer[0]; k++) {
            char nm[64];
            snprintf(nm, sizeof nm, "blk.%u.%s", l, per_layer[k].n);
            if (per_layer[k].rows == 0) TG_ADD(nm, per_layer[k].type, 1, E, 1);
            else if (per_layer[k].wide) TG_ADD(nm, per_layer[k].type, 2, 256, per_layer[k].rows + (l % 3));
            else TG_ADD(nm, per_layer[k].type, 2, E, E);
        }
    }
    TG_ADD("output_norm.weight", SW_TYPE_F32, 1, E, 1);
    if (!o->tied) TG_ADD("output.weight", SW_TYPE_Q8_0, 2, E, V);
#undef TG_ADD
    return n;
}

/* Bytes of a nested array value: [[u32 7, u32 9], ["a", "bc", ""], [[i8 -1], []]]. */
static size_t tg_nested(uint8_t *b)
{
    size_t n = 0;
#define PUT(v, k)                                                                                  \
    do {                                                                                           \
        uint64_t v_ = (uint64_t)(v);                                                               \
        for (int i_ = 0; i_ < (k); i_++) b[n++] = (uint8_t)(v_ >> (8 * i_));                       \
    } while (0)
    PUT(SW_GGUF_U32, 4); PUT(2, 8); PUT(7, 4); PUT(9, 4);
    PUT(SW_GGUF_STRING, 4); PUT(3, 8); PUT(1, 8); b[n++] = 'a'; PUT(2, 8); b[n++] = 'b'; b[n++] = 'c'; PUT(0, 8);
    PUT(SW_GGUF_ARRAY, 4); PUT(2, 8);
    PUT(SW_GGUF_I8, 4); PUT(1, 8); b[n++] = 0xff;
    PUT(SW_GGUF_I8, 4); PUT(0, 8);
#undef PUT
    return n;
}

static void tg_token(uint32_t i, char *buf, size_t len)
{
    if (i == 1) buf[0] = 0; /* an empty string */
    else if (i == 2) snprintf(buf, len, "%s", "a-long-token-with-UTF-8-\xc3\xa9\xe2\x82\xac-and-spaces    ");
    else snprintf(buf, len, "tok%u", i);
}

static int tg_add_metadata(struct sw_gguf_writer *w, const struct tg_opts *o)
{
    uint32_t E = o->n_embd ? o->n_embd : 64, V = o->n_vocab ? o->n_vocab : 300;
    int rc = 0;
    rc |= sw_gguf_writer_set_str(w, "general.architecture", "llama");
    rc |= sw_gguf_writer_set_str(w, "general.name", "testgen");
    rc |= sw_gguf_writer_set_u32(w, "llama.block_count", o->n_layers);
    rc |= sw_gguf_writer_set_u32(w, "llama.embedding_length", E);
    rc |= sw_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    struct sw_gguf_kv kv;
    memset(&kv, 0, sizeof kv);
    static const struct { const char *k; uint32_t t; int64_t v; } ints[] = {
        { "test.u8", SW_GGUF_U8, 200 },    { "test.i8", SW_GGUF_I8, -100 },
        { "test.u16", SW_GGUF_U16, 60000 }, { "test.i16", SW_GGUF_I16, -30000 },
        { "test.i32", SW_GGUF_I32, -2000000000 }, { "test.i64", SW_GGUF_I64, -5000000000000ll },
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        kv.key.ptr = ints[i].k;
        kv.key.len = strlen(ints[i].k);
        kv.type = ints[i].t;
        if (ints[i].t == SW_GGUF_U8 || ints[i].t == SW_GGUF_U16) kv.v.u64 = (uint64_t)ints[i].v;
        else kv.v.i64 = ints[i].v;
        rc |= sw_gguf_writer_add_kv(w, &kv);
    }
    rc |= sw_gguf_writer_set_u64(w, "test.u64", 18000000000000000000ull);
    kv.key.ptr = "test.f64";
    kv.key.len = 8;
    kv.type = SW_GGUF_F64;
    kv.v.f64 = 3.141592653589793;
    rc |= sw_gguf_writer_add_kv(w, &kv);
    rc |= sw_gguf_writer_set_bool(w, "test.bool", 1);
    rc |= sw_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    char **toks = calloc(V, sizeof *toks);
    float *scores = calloc(V, sizeof *scores);
    int32_t *types = calloc(V, sizeof *types);
    if (!toks || !scores || !types) return SW_ENOMEM;
    for (uint32_t i = 0; i < V; i++) {
        toks[i] = malloc(80);
        if (toks[i]) tg_token(i, toks[i], 80);
        scores[i] = -(float)i * 0.5f;
        types[i] = i < 3 ? 3 : 1;
    }
    rc |= sw_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, V);
    rc |= sw_gguf_writer_set_arr(w, "tokenizer.ggml.scores", SW_GGUF_F32, scores, V);
    rc |= sw_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", SW_GGUF_I32, types, V);
    for (uint32_t i = 0; i < V; i++) free(toks[i]);
    free(toks);
    free(scores);
    free(types);
    uint8_t nested[256];
    kv.key.ptr = "test.nested";
    kv.key.len = strlen(kv.key.ptr);
    kv.type = SW_GGUF_ARRAY;
    kv.v.arr.elem_type = SW_GGUF_ARRAY;
    kv.v.arr.n = 3;
    kv.v.arr.data = nested;
    kv.v.arr.data_len = tg_nested(nested);
    rc |= sw_gguf_writer_add_kv(w, &kv);
    rc |= sw_gguf_writer_set_arr(w, "test.empty", SW_GGUF_U8, NULL, 0);
    return rc;
}

static int tg_write_tensors_data(struct sw_gguf_writer *w, const struct tg_tensor *ts, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        uint64_t bytes = 0, elems = (uint64_t)(ts[i].ne[0] * ts[i].ne[1]);
        sw_gguf_type_bytes(ts[i].type, elems, &bytes);
        uint8_t *p = malloc(bytes ? bytes : 1);
        if (!p) return SW_ENOMEM;
        tg_fill(ts[i].name, p, bytes);
        /* Odd chunking: the writer must accept a tensor in several pieces. */
        uint64_t half = bytes / 3;
        int rc = sw_gguf_writer_write_data(w, p, half);
        if (!rc) rc = sw_gguf_writer_write_data(w, p + half, bytes - half);
        free(p);
        if (rc) return rc;
    }
    return 0;
}

/* Writes the model; for n_parts > 1, path is "<prefix>" and the parts are
 * "<prefix>-0000K-of-0000N.gguf" (tensors spread over the parts in order, metadata in part 1). */
static int tg_write_model(const char *path, const struct tg_opts *o)
{
    struct tg_tensor ts[512];
    uint32_t n = tg_tensors(o, ts, 512);
    if (n > 512) return SW_ETOOBIG;
    uint32_t parts = o->n_parts > 1 ? o->n_parts : 1;
    uint32_t per = (n + parts - 1) / parts;
    for (uint32_t p = 0; p < parts; p++) {
        char file[1024];
        if (parts > 1) snprintf(file, sizeof file, "%s-%05u-of-%05u.gguf", path, p + 1, parts);
        else snprintf(file, sizeof file, "%s", path);
        struct sw_gguf_writer *w;
        int rc = sw_gguf_writer_new(file, o->alignment, &w);
        if (rc) return rc;
        if (p == 0) rc = tg_add_metadata(w, o);
        if (parts > 1) {
            /* llama.cpp gguf-split: split.no u16 (0-based), split.count u16, split.tensors.count i32. */
            struct sw_gguf_kv kv;
            memset(&kv, 0, sizeof kv);
            kv.type = SW_GGUF_U16;
            kv.key.ptr = "split.no";
            kv.key.len = 8;
            kv.v.u64 = p;
            rc |= sw_gguf_writer_add_kv(w, &kv);
            kv.key.ptr = "split.count";
            kv.key.len = 11;
            kv.v.u64 = parts;
            rc |= sw_gguf_writer_add_kv(w, &kv);
            rc |= sw_gguf_writer_set_i32(w, "split.tensors.count", (int32_t)n);
        }
        uint32_t lo = p * per, hi = SW_MIN(n, lo + per);
        for (uint32_t i = lo; i < hi && !rc; i++)
            rc = sw_gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne);
        if (!rc) rc = sw_gguf_writer_write_header(w);
        if (!rc && hi > lo) rc = tg_write_tensors_data(w, ts + lo, hi - lo);
        if (rc) {
            sw_gguf_writer_free(w);
            return rc;
        }
        if ((rc = sw_gguf_writer_finish(w))) return rc;
    }
    return 0;
}

#endif
