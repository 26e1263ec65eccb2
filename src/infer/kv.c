/* kv.c — a sequence's f16 key/value cache: per layer, K and V as positions x kv_dim.
 * Grows geometrically (in steps of at least KV_STEP positions) up to the context limit, so
 * a short chat costs little memory and a long one never reallocates per token.
 * Not for: attention itself (stage.c). */
#include <stdlib.h>
#include <string.h>

#include "infer/stage_impl.h"

#define KV_STEP 256u

int sw__kv_reserve(struct sw__kv *kv, uint32_t n_layers, uint32_t kv_dim, uint32_t need,
                   uint32_t n_ctx, uint64_t *grown_bytes)
{
    *grown_bytes = 0;
    if (need <= kv->cap) return 0;
    uint64_t cap = kv->cap ? (uint64_t)kv->cap * 2 : KV_STEP;
    if (cap < need) cap = ((uint64_t)need + KV_STEP - 1) / KV_STEP * KV_STEP;
    if (cap > n_ctx) cap = n_ctx;
    if (cap < need) return SW_ERANGE;
    if (!kv->k) {
        kv->k = calloc(n_layers, sizeof *kv->k);
        kv->v = calloc(n_layers, sizeof *kv->v);
        if (!kv->k || !kv->v) {
            free(kv->k);
            free(kv->v);
            kv->k = kv->v = NULL;
            return SW_ENOMEM;
        }
    }
    size_t bytes = (size_t)cap * kv_dim * sizeof(sw_f16);
    /* Grow layer by layer; a failure leaves the already-grown layers larger, which is
     * harmless: cap only advances when every layer has the room. */
    for (uint32_t l = 0; l < n_layers; l++) {
        sw_f16 *k = realloc(kv->k[l], bytes);
        if (!k) return SW_ENOMEM;
        kv->k[l] = k;
        sw_f16 *v = realloc(kv->v[l], bytes);
        if (!v) return SW_ENOMEM;
        kv->v[l] = v;
    }
    *grown_bytes = (uint64_t)(cap - kv->cap) * kv_dim * sizeof(sw_f16) * 2 * n_layers;
    kv->cap = (uint32_t)cap;
    return 0;
}

uint64_t sw__kv_release(struct sw__kv *kv, uint32_t n_layers, uint32_t kv_dim)
{
    uint64_t bytes = (uint64_t)kv->cap * kv_dim * sizeof(sw_f16) * 2 * n_layers;
    if (kv->k)
        for (uint32_t l = 0; l < n_layers; l++) free(kv->k[l]);
    if (kv->v)
        for (uint32_t l = 0; l < n_layers; l++) free(kv->v[l]);
    free(kv->k);
    free(kv->v);
    memset(kv, 0, sizeof *kv);
    return bytes;
}
