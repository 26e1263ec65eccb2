/* fuzz_gguf.c — the GGUF reader must never crash or read outside its input: whatever it
 * accepts, every borrowed view (strings, array elements, nested arrays, tensor data) lies
 * within the input bytes. */
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

static const uint8_t *lo, *hi;

static void in_bounds(const void *p, uint64_t n)
{
    const uint8_t *q = p;
    if (n && (q < lo || q > hi || n > (uint64_t)(hi - q))) abort();
}

static void walk_array(const struct sw_gguf_arr *a, int depth)
{
    in_bounds(a->data, a->data_len);
    if (depth > 16) abort(); /* the reader caps nesting at 8 */
    for (uint64_t i = 0; i < a->n && i < 4096; i++) {
        struct sw_gguf_str s;
        struct sw_gguf_arr sub;
        float f;
        int64_t v;
        if (sw_gguf_arr_str(a, i, &s) == 0) in_bounds(s.ptr, s.len);
        if (sw_gguf_arr_sub(a, i, &sub) == 0) walk_array(&sub, depth + 1);
        (void)sw_gguf_arr_f32(a, i, &f);
        (void)sw_gguf_arr_i64(a, i, &v);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sw_gguf *g = NULL;
    char err[256];
    lo = data;
    hi = data + size;
    if (sw_gguf_open_mem(data, size, &g, err, sizeof err) != 0) {
        if (g || !memchr(err, 0, sizeof err)) abort();
        return 0;
    }
    for (uint64_t i = 0; i < sw_gguf_n_kv(g); i++) {
        const struct sw_gguf_kv *kv = sw_gguf_kv_at(g, i);
        in_bounds(kv->key.ptr, kv->key.len);
        if (kv->type == SW_GGUF_STRING) in_bounds(kv->v.str.ptr, kv->v.str.len);
        if (kv->type == SW_GGUF_ARRAY) walk_array(&kv->v.arr, 0);
    }
    for (uint64_t i = 0; i < sw_gguf_n_tensors(g); i++) {
        const struct sw_gguf_tensor *t = sw_gguf_tensor_at(g, i);
        in_bounds(t->name.ptr, t->name.len);
        in_bounds(t->data, t->n_bytes);
        if (!sw_gguf_type_info(t->type)) abort();
        if (t->offset % sw_gguf_alignment(g)) abort();
    }
    uint32_t u;
    float f;
    struct sw_gguf_shard_info si;
    (void)sw_gguf_n_layers(g);
    (void)sw_gguf_arch_u32(g, "embedding_length", &u);
    (void)sw_gguf_arch_f32(g, "rope.freq_base", &f);
    (void)sw_gguf_shard_info(g, &si);
    (void)sw_gguf_tensor_find(g, "token_embd.weight");
    sw_gguf_close(g);
    return 0;
}
