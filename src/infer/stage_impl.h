/* stage_impl.h — internal to src/infer: the model description a CPU stage computes with
 * (hyper-parameters + weights borrowed from the GGUF map) and the per-sequence KV cache.
 * Not for: anything outside src/infer (the public face is infer.h). */
#ifndef SW_INFER_STAGE_IMPL_H
#define SW_INFER_STAGE_IMPL_H

#include <stdint.h>

#include "infer/infer.h"
#include "infer/kernels.h"

/* One weight matrix: rows x cols of `type`, borrowed from the map. */
struct sw__w {
    const void *data;
    uint32_t type;
    int64_t rows, cols;
    const char *name; /* for messages (static storage in the model) */
};

struct sw__layer {
    const float *attn_norm, *ffn_norm;  /* n_embd, f32 */
    const float *bq, *bk, *bv;          /* qwen2 biases, NULL when absent */
    struct sw__w wq, wk, wv, wo, w_gate, w_up, w_down;
};

struct sw__model {
    struct sw_gguf *g;
    int owns_g;
    struct sw_stage_info info;
    struct sw__w tok_embd;   /* first stage, or tied last stage */
    struct sw__w output;     /* last stage: output.weight or token_embd */
    const float *output_norm;
    float *rope_inv_freq;    /* n_rot/2: freq_scale * base^(-2i/n_rot) / rope_freqs[i] (owned) */
    struct sw__layer *layers;/* index l - layer_first (owned array) */
    float **owned;           /* small tensors converted to f32 (norms/biases not in F32) */
    uint32_t n_owned;
    const uint8_t *map_lo, *map_hi; /* span of the mapped tensor bytes this stage reads */
};

/* Reads hyper-parameters and binds every tensor of the stage's layer range, checking
 * names, shapes and types. g is borrowed (the caller decides who closes it). */
int sw__model_load(struct sw__model *m, struct sw_gguf *g, const struct sw_stage_opts *opts,
                   char *err, size_t err_len);
void sw__model_release(struct sw__model *m);

/* One sequence's KV cache, f16, for each of the stage's layers:
 *   k[l]: [n_head_kv][cap][head_dim]   key of KV head g at position p: k[l] + (g*cap + p)*hd
 *   v[l]: [n_head_kv][head_dim][cap]   values transposed: v[l] + (g*hd + d)*cap + p
 * Value entries past the filled positions are 0 or stale finite values, never garbage.
 * Grows in steps up to n_ctx (re-laid out: the strides depend on cap); never shrinks until
 * freed. */
struct sw__kv {
    uint64_t id;
    int live;
    uint32_t n_past;  /* positions filled */
    uint32_t cap;     /* positions allocated */
    sw_f16 **k, **v;  /* n_layers arrays (owned) */
};

/* Makes room for `need` positions (need <= n_ctx). Returns 0 or SW_ENOMEM (cache intact).
 * *grown_bytes receives the bytes added. */
int sw__kv_reserve(struct sw__kv *kv, uint32_t n_layers, uint32_t n_kv, uint32_t hd, uint32_t need,
                   uint32_t n_ctx, uint64_t *grown_bytes);
/* Frees the arrays; returns the bytes released. */
uint64_t sw__kv_release(struct sw__kv *kv, uint32_t n_layers, uint32_t kv_dim);

#endif
