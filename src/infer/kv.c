/* kv.c — a sequence's f16 key/value cache. Per layer and KV head, keys are stored
 * position-major (cap x head_dim) and values transposed (head_dim x cap), so attention is
 * two matrix products over contiguous rows: scores = K·q and out = Vᵀ·p. The cache grows
 * geometrically (in steps of at least KV_STEP positions) up to the context limit, so a
 * short chat costs little memory and a long one never reallocates per token. Layers that
 * run on a GPU (before l0) have no host arrays: the device holds their cache.
 * Not for: attention itself (stage.c). */
#include <stdlib.h>
#include <string.h>

#include "infer/stage_impl.h"

#define KV_STEP 256u

int sw__kv_reserve(struct sw__kv *kv, uint32_t n_layers, uint32_t l0, uint32_t n_kv, uint32_t hd, uint32_t need,
                   uint32_t n_ctx, uint64_t *grown_bytes)
{
    *grown_bytes = 0;
    if (kv->k && kv->l0 != l0) return SW_ESTATE; /* the cache holds other layers */
    if (need <= kv->cap) return 0;
    if (l0 > n_layers) return SW_EINVAL;
    uint64_t cap = kv->cap ? (uint64_t)kv->cap * 2 : KV_STEP;
    if (cap < need) cap = ((uint64_t)need + KV_STEP - 1) / KV_STEP * KV_STEP;
    if (cap > n_ctx) cap = n_ctx;
    if (cap < need) return SW_ERANGE;
    if (!kv->k) {
        kv->k = calloc(n_layers ? n_layers : 1, sizeof *kv->k);
        kv->v = calloc(n_layers ? n_layers : 1, sizeof *kv->v);
        if (!kv->k || !kv->v) {
            free(kv->k);
            free(kv->v);
            kv->k = kv->v = NULL;
            return SW_ENOMEM;
        }
        kv->l0 = l0;
    }
    const size_t old = kv->cap, elems = (size_t)cap * n_kv * hd;
    /* New arrays for every host layer first, so a failure leaves the cache as it was. The
     * value arrays start zeroed: attention multiplies whole rows of cap positions by
     * weights that are 0 past the sequence, and 0 x (uninitialised NaN) would not be 0. */
    sw_f16 **nk = calloc(n_layers ? n_layers : 1, sizeof *nk), **nv = calloc(n_layers ? n_layers : 1, sizeof *nv);
    int oom = !nk || !nv;
    for (uint32_t l = l0; l < n_layers && !oom; l++) {
        nk[l] = malloc(elems * sizeof(sw_f16));
        nv[l] = calloc(elems, sizeof(sw_f16));
        oom = !nk[l] || !nv[l];
    }
    if (oom) {
        for (uint32_t l = l0; nk && nv && l < n_layers; l++) {
            free(nk[l]);
            free(nv[l]);
        }
        free(nk);
        free(nv);
        return SW_ENOMEM;
    }
    for (uint32_t l = l0; l < n_layers; l++) {
        if (old) {
            for (uint32_t g = 0; g < n_kv; g++) {
                /* K: rows of head_dim, the old cap rows move to the new head's block */
                memcpy(nk[l] + (size_t)g * cap * hd, kv->k[l] + (size_t)g * old * hd,
                       old * hd * sizeof(sw_f16));
                /* Vᵀ: head_dim rows of cap positions; the old row prefix moves over */
                for (uint32_t d = 0; d < hd; d++)
                    memcpy(nv[l] + ((size_t)g * hd + d) * cap, kv->v[l] + ((size_t)g * hd + d) * old,
                           old * sizeof(sw_f16));
            }
        }
        free(kv->k[l]);
        free(kv->v[l]);
        kv->k[l] = nk[l];
        kv->v[l] = nv[l];
    }
    free(nk);
    free(nv);
    *grown_bytes = (uint64_t)(cap - old) * n_kv * hd * sizeof(sw_f16) * 2 * (n_layers - l0);
    kv->cap = (uint32_t)cap;
    return 0;
}

static uint64_t kv_free_arrays(struct sw__kv *kv, uint32_t n_layers, uint32_t kv_dim)
{
    const uint32_t nh = kv->k && kv->l0 < n_layers ? n_layers - kv->l0 : 0;
    uint64_t bytes = (uint64_t)kv->cap * kv_dim * sizeof(sw_f16) * 2 * nh;
    if (kv->k)
        for (uint32_t l = 0; l < n_layers; l++) free(kv->k[l]);
    if (kv->v)
        for (uint32_t l = 0; l < n_layers; l++) free(kv->v[l]);
    free(kv->k);
    free(kv->v);
    kv->k = kv->v = NULL;
    kv->cap = 0;
    kv->l0 = 0;
    return bytes;
}

uint64_t sw__kv_release(struct sw__kv *kv, uint32_t n_layers, uint32_t kv_dim)
{
    uint64_t bytes = kv_free_arrays(kv, n_layers, kv_dim);
    memset(kv, 0, sizeof *kv);
    return bytes;
}

uint64_t sw__kv_drop(struct sw__kv *kv, uint32_t n_layers, uint32_t kv_dim)
{
    return kv_free_arrays(kv, n_layers, kv_dim);
}

int sw__kv_copy(struct sw__kv *dst, const struct sw__kv *src, uint32_t n_layers, uint32_t l0, uint32_t n_kv,
                uint32_t hd, uint32_t n, uint32_t n_ctx, uint64_t *grown_bytes)
{
    *grown_bytes = 0;
    if (n > src->n_past) return SW_EINVAL;
    if (n && (!src->k || src->l0 != l0)) return SW_ESTATE; /* src has no host arrays of these layers */
    int rc = sw__kv_reserve(dst, n_layers, l0, n_kv, hd, n ? n : 1, n_ctx, grown_bytes);
    if (rc) return rc;
    const size_t sc = src->cap, dc = dst->cap;
    for (uint32_t l = l0; l < n_layers && n; l++) {
        for (uint32_t g = 0; g < n_kv; g++) {
            memcpy(dst->k[l] + (size_t)g * dc * hd, src->k[l] + (size_t)g * sc * hd, (size_t)n * hd * sizeof(sw_f16));
            for (uint32_t d = 0; d < hd; d++)
                memcpy(dst->v[l] + ((size_t)g * hd + d) * dc, src->v[l] + ((size_t)g * hd + d) * sc,
                       (size_t)n * sizeof(sw_f16));
        }
    }
    dst->n_past = n;
    return 0;
}
