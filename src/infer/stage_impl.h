/* stage_impl.h — internal to src/infer: the model description a CPU stage computes with
 * (hyper-parameters + weights borrowed from the GGUF map) and the per-sequence KV cache.
 * Not for: anything outside src/infer (the public face is infer.h). */
#ifndef SW_INFER_STAGE_IMPL_H
#define SW_INFER_STAGE_IMPL_H

#include <stdint.h>

#include "infer/infer.h"
#include "infer/kernels.h"

struct sw__arch;

/* One weight matrix: rows x cols of `type`, borrowed from the map. */
struct sw__w {
    const void *data;
    uint32_t type;
    int64_t rows, cols;
    const char *name; /* for messages (static storage in the model) */
};

/* A stack of n_expert matrices (a 3-D GGUF tensor [cols, rows, n_expert]): expert e's
 * rows x cols matrix starts at data + e * stride. Borrowed from the map. */
struct sw__wx {
    const void *data;
    uint32_t type;
    int64_t rows, cols, n_expert;
    size_t stride; /* bytes per expert */
    const char *name;
};

/* Every feature an architecture may switch on, read once at load (arch.c). The block is a
 * fixed recipe over these fields (stage.c forward_step):
 *   x += attn(norm(x))            attn: GQA (+ biases, + per-head q/k RMSNorm)
 *   x += ffn(norm(x))             ffn: dense SwiGLU, or MoE (+ a gated shared expert) */
/* softmax over all experts, weights p[chosen]; or (gpt-oss) choose by the raw logits,
 * weights = softmax over the chosen ones */
enum sw__gating { SW__GATING_SOFTMAX = 0, SW__GATING_SOFTMAX_WEIGHT, SW__GATING_SIGMOID };
/* silu(g)*u; gelu_tanh(g)*u (gemma); gpt-oss's clamped x*sigmoid(1.702x)*(u+1) */
enum sw__act { SW__ACT_SWIGLU = 0, SW__ACT_GEGLU, SW__ACT_SWIGLU_OAI };
struct sw__hparams {
    /* RoPE beyond the plain rotation (llama.cpp's ggml_rope_ext): YaRN mixes interpolated
     * and extrapolated frequencies by a ramp over the pair index; longrope (phi3) divides
     * by per-frequency factors; both scale cos/sin by rope_mscale. */
    float rope_ext;       /* YaRN extrapolation mix (1 for rope.scaling.type yarn, else 0) */
    uint32_t rope_n_ctx_orig; /* rope.scaling.original_context_length */
    float rope_beta_fast, rope_beta_slow; /* YaRN ramp bounds (32, 1) */
    float rope_mscale;    /* cos/sin multiplier: rope.scaling.attn_factor x YaRN's */
    int fused_qkv;        /* attn_qkv.weight holds q, k and v rows (phi3) */
    int fused_gate_up;    /* ffn_up.weight holds the gate rows then the up rows (phi3) */
    int attn_sinks;       /* attn_sinks [n_head]: one extra logit per head in the softmax */
    int ffn_norm_post_attn; /* the FFN's input norm is named post_attention_norm (gpt-oss) */
    int expert_bias;      /* biases on the router and on each expert's three matrices */
    enum sw__act act;
    float embd_scale;     /* token embeddings multiplied by this (gemma: sqrt(n_embd)); 0: 1 */
    int post_norms;       /* RMSNorm of the attention and FFN outputs before the residual
                             (post_attention_norm, post_ffw_norm: gemma2/3) */
    float attn_scale;     /* q·k multiplier: 1/sqrt(head_dim) unless the row says otherwise */
    float attn_softcap;   /* scores -> cap*tanh(score/cap); 0: none (gemma2: 50) */
    float final_softcap;  /* logits -> cap*tanh(logit/cap); 0: none (gemma2: 30) */
    uint32_t n_swa;       /* sliding window of the layers marked is_swa: a query at p sees
                             keys p-n_swa+1 .. p; 0: none */
    float rope_base_swa, rope_scale_swa; /* RoPE of the sliding-window layers */
    int rope_neox;        /* 1: rotate pairs (i, i + n_rot/2); 0: (2i, 2i+1) */
    int qkv_bias;         /* 1: q/k/v biases required; 0: bound when present */
    int qk_norm;          /* per-head RMSNorm of q and k before RoPE (attn_{q,k}_norm) */
    int moe;              /* the architecture's FFN is a mixture of experts */
    uint32_t n_expert, n_expert_used; /* 0: dense */
    uint32_t n_ff_exp;    /* width of one expert's FFN */
    uint32_t n_ff_shexp;  /* width of the shared expert; 0: none */
    int shexp_gate;       /* shared expert scaled by sigmoid(ffn_gate_inp_shexp · x) */
    enum sw__gating gating;
    int moe_norm_w;       /* the top-k weights are renormalised to sum 1 */
    float expert_weights_scale; /* multiplies the weights; 0 or 1: none */
    /* deepseek2: multi-head latent attention, computed in its absorbed form as attention
     * with one KV head of head_dim = kv_lora_rank + n_rot (the cache holds the normed
     * latent kv_c and the roped k_pe) whose values are the latent's first kv_lora_rank
     * dimensions; each query head is q_nope·W_k_b[h] ‖ rope(q_pe), each output head
     * W_v_b[h]·o[0..kv_lora_rank). */
    int mla;
    uint32_t q_lora_rank;   /* 0: plain attn_q (V2-Lite) */
    uint32_t kv_lora_rank;
    uint32_t qk_nope, v_head; /* key_length_mla - n_rot, value_length_mla */
    uint32_t n_dense_lead;  /* leading_dense_block_count: the first layers are dense */
    uint32_t n_group, n_group_used; /* grouped top-k (expert_group_count/_used_count); 0: none */
};

/* What one layer holds, indexed by absolute layer (a stage computes any range). */
struct sw__layer_desc {
    int is_moe;
    int is_swa;           /* sliding-window attention (n_swa) with the swa RoPE */
    uint32_t n_ff;        /* dense FFN width (0 in an MoE layer) */
};

struct sw__layer {
    const float *attn_norm, *ffn_norm;  /* n_embd, f32 */
    const float *bq, *bk, *bv;          /* q/k/v biases, NULL when absent */
    const float *q_norm, *k_norm;       /* head_dim, qk_norm only */
    const float *attn_post_norm, *ffn_post_norm; /* n_embd, post_norms only */
    const float *bo;                    /* attn_output.bias, or NULL */
    const float *sinks;                 /* n_head, attn_sinks only */
    const float *gate_inp_b;            /* n_expert router bias, or NULL */
    const float *gate_exps_b, *up_exps_b; /* [n_expert][n_ff_exp], or NULL */
    const float *down_exps_b;           /* [n_expert][n_embd], or NULL */
    struct sw__w wq, wk, wv, wo;
    struct sw__w w_gate, w_up, w_down;  /* dense FFN */
    struct sw__w gate_inp;              /* MoE router: n_expert rows */
    struct sw__wx gate_exps, up_exps, down_exps;
    struct sw__w gate_sh, up_sh, down_sh; /* shared expert (n_ff_shexp) */
    const float *gate_inp_sh;           /* n_embd: its sigmoid gate, or NULL */
    const float *exp_probs_b;           /* n_expert selection bias (DeepSeek V3), or NULL */
    /* deepseek2's latent attention (mla): */
    struct sw__w wq_a, wq_b, wkv_a;     /* q low rank (or wq alone), kv latent ‖ k_pe */
    const float *q_a_norm, *kv_a_norm;  /* q_lora_rank, kv_lora_rank */
    struct sw__wx wk_b, wv_b;           /* per head: [qk_nope -> kv_lora_rank], [kv_lora_rank -> v_head] */
};

struct sw__model {
    struct sw_gguf *g;
    int owns_g;
    struct sw_stage_info info;
    struct sw__hparams hp;
    struct sw__layer_desc *ld; /* n_layers entries, absolute layer index (owned) */
    const struct sw__arch *arch;
    struct sw__w tok_embd;   /* first stage, or tied last stage */
    struct sw__w output;     /* last stage: output.weight or token_embd */
    const float *output_norm;
    float *rope_inv_freq;    /* n_rot/2: freq_scale * base^(-2i/n_rot) / rope_freqs[i] (owned) */
    float *rope_inv_freq_swa;/* the same for sliding-window layers (n_swa > 0), else NULL */
    struct sw__layer *layers;/* index l - layer_first (owned array) */
    float **owned;           /* small tensors converted to f32 (norms/biases not in F32) */
    uint32_t n_owned;
    const uint8_t *map_lo, *map_hi; /* span of the mapped tensor bytes this stage reads */
};

/* ---- loading (model.c: generic binding; arch.c: the architectures) ---- */

struct sw__loader {
    struct sw__model *m;
    struct sw_gguf *g;
    const char *path;
    char *err;
    size_t err_len;
};

/* Binds a matrix [cols, rows] (GGUF ne order); need_dot: the matmul must support its type. */
int sw__bind_matrix(struct sw__loader *L, struct sw__w *w, const char *name, int64_t cols,
                    int64_t rows, int need_dot);
/* Binds a 3-D expert stack [cols, rows, n_expert]. */
int sw__bind_experts(struct sw__loader *L, struct sw__wx *w, const char *name, int64_t cols,
                     int64_t rows, int64_t n_expert);
/* Binds an F32 table [cols, rows] (expert biases): row r at *out + r * cols. */
int sw__bind_table(struct sw__loader *L, const float **out, const char *name, int64_t cols, int64_t rows);
/* Binds a vector of n floats (F32 borrowed; F16/BF16 converted into an owned copy).
 * optional: absent -> *out = NULL, 0. */
int sw__bind_vector(struct sw__loader *L, const float **out, const char *name, int64_t n,
                    int optional);
/* "<arch>.<suffix>" keys: absent -> dflt (or an error naming the key when required). */
int sw__get_u32(struct sw__loader *L, const char *suffix, uint32_t *out, int required, uint32_t dflt);
int sw__get_f32(struct sw__loader *L, const char *suffix, float *out, float dflt);

/* One row per architecture (arch.c): its name, the features it always has (`base`, also
 * what synth writes), a reader of its GGUF keys and a binder of one layer's tensors. */
struct sw__arch {
    const char *name;
    struct sw__hparams base;
    int (*hparams)(struct sw__loader *L, struct sw__hparams *hp);
    int (*bind_layer)(struct sw__loader *L, struct sw__layer *ly, uint32_t layer);
};
const struct sw__arch *sw__arch_find(const char *name);
/* "llama, qwen2, ..." for messages. */
const char *sw__arch_names(void);
/* The common hyper-parameters into m->info, then the row's own (hp, per-layer ld). */
int sw__arch_hparams(struct sw__loader *L, const struct sw__arch *a, const struct sw_stage_opts *o);

/* Reads hyper-parameters and binds every tensor of the stage's layer range, checking
 * names, shapes and types. g is borrowed (the caller decides who closes it). */
int sw__model_load(struct sw__model *m, struct sw_gguf *g, const struct sw_stage_opts *opts,
                   char *err, size_t err_len);
void sw__model_release(struct sw__model *m);

/* One sequence's KV cache, f16, for each of the stage's layers from l0 on (the layers
 * before l0 run on a GPU, which holds their cache: k[l] = v[l] = NULL there):
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
    uint32_t l0;      /* the first layer with host arrays (set when they are first made) */
    sw_f16 **k, **v;  /* n_layers arrays (owned) */
};

/* Makes room for `need` positions (need <= n_ctx) in layers l0 .. n_layers-1. Returns 0,
 * SW_ENOMEM (cache intact), or SW_ESTATE when the cache holds other layers (l0 differs:
 * drop it first). *grown_bytes receives the bytes added. */
int sw__kv_reserve(struct sw__kv *kv, uint32_t n_layers, uint32_t l0, uint32_t n_kv, uint32_t hd, uint32_t need,
                   uint32_t n_ctx, uint64_t *grown_bytes);
/* Copies the first n positions of src (n <= src->n_past) into dst, growing dst as needed
 * (layers l0 on); dst->n_past = n. 0, SW_EINVAL, SW_ESTATE (src lacks layers l0 on) or
 * SW_ENOMEM (dst intact). */
int sw__kv_copy(struct sw__kv *dst, const struct sw__kv *src, uint32_t n_layers, uint32_t l0, uint32_t n_kv,
                uint32_t hd, uint32_t n, uint32_t n_ctx, uint64_t *grown_bytes);
/* Frees the arrays; returns the bytes released. */
uint64_t sw__kv_release(struct sw__kv *kv, uint32_t n_layers, uint32_t kv_dim);
/* Frees the arrays but keeps the sequence (id, live, n_past): its next reserve makes them
 * again, for any l0. Returns the bytes released. */
uint64_t sw__kv_drop(struct sw__kv *kv, uint32_t n_layers, uint32_t kv_dim);

/* Tests: the cached key and value of position pos (< the sequence's length) in the stage's
 * layer li (0 = layer_first), every KV head: k_out and v_out take n_head_kv x head_dim
 * (caller's). 0, SW_ENOTFOUND or SW_ERANGE. */
int sw__stage_kv_read(struct sw_stage *s, uint64_t seq, uint32_t li, uint32_t pos, sw_f16 *k_out, sw_f16 *v_out);

#endif
