/* backend_vk_impl.h — private to backend_vk*.c: the loaded Vulkan entry points, the device
 * state and the layout of the uploaded layers.
 * Not for: the stage (backend_vk.h is its interface). */
#ifndef SW_INFER_BACKEND_VK_IMPL_H
#define SW_INFER_BACKEND_VK_IMPL_H

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include "infer/backend_vk.h"
#include "infer/stage_impl.h"

/* Instance-level entry points, then device-level ones (loaded with vkGetDeviceProcAddr). */
#define SW_VK_INSTANCE_FNS(X)                                                                    \
    X(vkDestroyInstance) X(vkEnumeratePhysicalDevices) X(vkGetPhysicalDeviceProperties)          \
    X(vkGetPhysicalDeviceMemoryProperties) X(vkGetPhysicalDeviceQueueFamilyProperties)           \
    X(vkEnumerateDeviceExtensionProperties) X(vkCreateDevice) X(vkGetDeviceProcAddr)             \
    X(vkGetPhysicalDeviceMemoryProperties2) X(vkGetPhysicalDeviceProperties2)
#define SW_VK_DEVICE_FNS(X)                                                                      \
    X(vkDestroyDevice) X(vkGetDeviceQueue) X(vkCreateBuffer) X(vkDestroyBuffer)                  \
    X(vkGetBufferMemoryRequirements) X(vkAllocateMemory) X(vkFreeMemory) X(vkBindBufferMemory)   \
    X(vkMapMemory) X(vkUnmapMemory) X(vkCreateShaderModule) X(vkDestroyShaderModule)             \
    X(vkCreateDescriptorSetLayout) X(vkDestroyDescriptorSetLayout) X(vkCreatePipelineLayout)     \
    X(vkDestroyPipelineLayout) X(vkCreateComputePipelines) X(vkDestroyPipeline)                  \
    X(vkCreateCommandPool) X(vkDestroyCommandPool) X(vkAllocateCommandBuffers)                   \
    X(vkBeginCommandBuffer) X(vkEndCommandBuffer) X(vkResetCommandBuffer) X(vkCmdBindPipeline)   \
    X(vkCmdPushConstants) X(vkCmdPushDescriptorSetKHR) X(vkCmdDispatch) X(vkCmdPipelineBarrier)  \
    X(vkCmdCopyBuffer) X(vkQueueSubmit) X(vkCreateFence) X(vkDestroyFence) X(vkWaitForFences)    \
    X(vkResetFences) X(vkDeviceWaitIdle)

struct sw__vkf {
    PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr;
    PFN_vkCreateInstance vkCreateInstance;
#define X(n) PFN_##n n;
    SW_VK_INSTANCE_FNS(X)
    SW_VK_DEVICE_FNS(X)
#undef X
};

/* The pipelines, in the order of PIPE_NAMES (backend_vk.c). */
/* The matmuls come five times: 8 tokens per workgroup, the decode variant (1 token) at
 * VKP_MM1_OFF further, the expert-indexed one (MoE: one (token, expert) slot per
 * workgroup, the expert read from a device buffer) at VKP_MMID_OFF further, its
 * grouped form (a tile of up to 8 slots of one expert per workgroup) at VKP_MMIDG_OFF,
 * and the tiled one of many-token steps (mm_tiled.comp) at VKP_MMT_OFF. */
/* The weight types with a shader, each as (gguf name, shader suffix): the order of every
 * matmul variant's pipelines and of the mm shader list in src/infer/CMakeLists.txt. */
#define SW_VK_MM_TYPES(X)                                                                        \
    X(F32, f32) X(F16, f16) X(BF16, bf16) X(Q8_0, q8_0) X(Q4_0, q4_0) X(Q4_K, q4_k) X(Q6_K, q6_k) \
    X(Q5_K, q5_k) X(Q3_K, q3_k) X(Q2_K, q2_k) X(IQ4_XS, iq4_xs) X(IQ4_NL, iq4_nl) X(Q4_1, q4_1)   \
    X(Q5_0, q5_0) X(Q5_1, q5_1) X(MXFP4, mxfp4) X(IQ2_XXS, iq2_xxs) X(IQ2_XS, iq2_xs) X(IQ3_XXS, iq3_xxs) \
    X(IQ3_S, iq3_s) X(IQ2_S, iq2_s) X(IQ1_S, iq1_s) X(IQ1_M, iq1_m) X(Q8_K, q8_k)
enum {
#define X(T, t) VKP_MM_##T,
    SW_VK_MM_TYPES(X)
#undef X
#define X(T, t) VKP_MM1_##T,
    SW_VK_MM_TYPES(X)
#undef X
#define X(T, t) VKP_MMID_##T,
    SW_VK_MM_TYPES(X)
#undef X
#define X(T, t) VKP_MMIDG_##T,
    SW_VK_MM_TYPES(X)
#undef X
#define X(T, t) VKP_MMT_##T,
    SW_VK_MM_TYPES(X)
#undef X
    VKP_RMSNORM, VKP_GLU, VKP_ROPE_KV, VKP_ATTN, VKP_MOE_ROUTE, VKP_MOE_SUM, VKP_MOE_GROUP,
    VKP_MOE_BIAS,
    /* built when a model needs them (deepseek2) */
    VKP_ROPE_MLA, VKP_ATTN_MLA, VKP_MOE_ROUTE_SEL, VKP_COUNT
};
#define VKP_EAGER_END VKP_ROPE_MLA /* the pipelines before it are built at open */

struct vk_buf {
    VkBuffer b;
    VkDeviceMemory m;
    VkDeviceSize size;
    void *map; /* host-visible buffers only */
};

/* One weight matrix inside its layer's buffer, in the type the device computes it in
 * (its own, or F16 when the device has no shader for it: converted at upload). */
struct vk_mat {
    VkDeviceSize off, size;
    uint32_t type, pipe;
    uint32_t row_words; /* uints per row for block types */
    uint32_t rows, cols;
    uint32_t n_expert; /* a stack of n_expert matrices of rows / n_expert rows each; 0: one matrix */
};

#define VK_NONE ((VkDeviceSize)~0ull)
struct vk_layer {
    struct vk_buf buf;
    struct vk_mat wq, wk, wv, wo, wg, wu, wd;
    VkDeviceSize attn_norm, ffn_norm, bq, bk, bv, bo; /* f32 vectors; VK_NONE: absent */
    VkDeviceSize q_norm, k_norm;          /* head_dim each (qwen3, gemma3); VK_NONE: absent */
    VkDeviceSize attn_post, ffn_post;     /* n_embd each (gemma); VK_NONE: absent */
    /* a mixture-of-experts FFN (moe): the router, the expert stacks, the shared expert and
     * its gate (a 1 x n_embd F32 matrix; rows 0: absent) */
    int moe;
    struct vk_mat router, ge, ue, de, gsh, ush, dsh, shg;
    /* gpt-oss: attention sinks (n_head), the router's bias (n_expert), the experts' biases
     * ([n_expert][rows of one expert] each); VK_NONE: absent */
    VkDeviceSize sinks, router_b, ge_b, ue_b, de_b;
    /* deepseek2's latent attention (backend_vk_mla.c): wq is attn_q or attn_q_b, wk is
     * attn_kv_a_mqa, qa attn_q_a (rows 0: absent), kb / vb the per-head attn_k_b / attn_v_b
     * stacks (n_expert = n_head); the norms of q_a and of the compressed kv */
    struct vk_mat qa, kb, vb;
    VkDeviceSize q_a_norm, kv_a_norm;
    VkDeviceSize sel_b;                   /* the experts' selection bias (exp_probs_b); VK_NONE: absent */
    uint32_t window;                      /* sliding window (positions); 0: full attention */
    uint32_t swa_rope;                    /* rotates with the sliding-window layers' table */
};

struct vk_kv {
    struct vk_buf buf;
    uint32_t cap; /* positions per head; 0: none */
};

/* Offsets (floats) of the activations in the scratch buffer. */
struct vk_scratch {
    VkDeviceSize x, xn, q, k, v, att, gate, up, total;
    /* MoE: router logits, chosen experts (uints) and weights, expert outputs, the shared
     * expert's output and gate logit */
    VkDeviceSize router, ids, wts, moe_y, sh, shg;
    VkDeviceSize cnt, tiles, list; /* uints: per-expert counts, tiles (moe_group.comp), slots by expert */
    /* deepseek2: q_a's output, q_b's (per head q_nope ‖ q_pe), the heads' values; the step's
     * (token, head) tiles (uints, sw__vk_mla_tiles) */
    VkDeviceSize qa, mq, mo, htab;
};

struct sw__vk {
    struct sw__vkf f;
    void *lib;
    VkInstance inst;
    VkPhysicalDevice pd;
    VkDevice dev;
    VkQueue queue;
    uint32_t qfam;
    VkPhysicalDeviceMemoryProperties memp;
    VkDeviceSize max_range, align;
    uint32_t rows_per_wg; /* matmul rows per 64-invocation workgroup: 64 / subgroup size */
    VkCommandPool cpool;
    VkCommandBuffer cb;
    VkFence fence;
    VkDescriptorSetLayout dsl;
    VkPipelineLayout pl;
    VkPipeline pipe[VKP_COUNT];
    struct vk_buf grids;   /* device-local: the IQ codebooks (upload_grids) */
    struct vk_buf scratch; /* device-local activations (struct vk_scratch) */
    struct vk_scratch so;
    struct vk_buf io;      /* host-visible: x in/out, then the rope table */
    VkDeviceSize io_rope;  /* byte offset of the rope table in io */
    VkDeviceSize io_rope_swa; /* the sliding-window layers' table (gemma), or VK_NONE */
    struct vk_layer *L;
    uint32_t n_layers;
    /* the output head, when the device holds the stage's last layer (else out.buf.b 0) */
    struct vk_layer out;   /* out.wo: output matrix; out.attn_norm: output_norm */
    struct vk_buf lgio;    /* host-visible: LG_ROWS x n_vocab logits */
    uint32_t lg_rows, n_vocab;
    struct vk_kv *kv;      /* max_seqs slots */
    uint32_t max_seqs, max_batch, n_ctx;
    uint64_t kv_bytes, weight_bytes, heap_bytes;
    /* model dims (copied) */
    uint32_t E, n_head, n_head_kv, hd, n_rot, neox, act /* glu.comp's */, q_dim, kv_dim, ff_max;
    float eps, attn_scale, attn_softcap;
    uint32_t n_expert, n_used, moe_norm_w; /* MoE (n_expert 0: dense) */
    uint32_t route_mode;                   /* moe_route.comp's mode: 1 softmax over the chosen (gpt-oss) */
    uint32_t max_tiles;                    /* MoE tiles a full step may need */
    float moe_scale;
    /* routing by a selection score (moe_route_sel.comp): sigmoid gating, grouped top-k, or
     * a layer with a selection bias */
    uint32_t gate_sigmoid, n_group, n_group_used;
    /* deepseek2's latent attention (mla 1): hd is kv_lora_rank + n_rot, n_head_kv 1, and the
     * cache holds K only (its values are its rows' first kv_lora_rank dims) */
    uint32_t mla, q_lora, kv_lora, qk_nope, kmla, v_head;
    uint32_t kv_parts;                     /* 2: K and V per layer; 1: K only (mla) */
    struct vk_buf head_ids;                /* mla: max_batch x n_head uints, i % n_head */
    VkDeviceSize io_heads;                 /* mla: byte offset of the step's head tiles in io */
    uint32_t layer_first;
    int lost;
    uint64_t steps, lose_after; /* fault injection: SHARDSWARM_VK_LOSE_AFTER */
    char name[300];
    char stop[200];
    char converted[64]; /* the weight types converted to F16 at upload, space-separated */
};

#define VKP_MM1_OFF (VKP_MM1_F32 - VKP_MM_F32)
#define VKP_MMID_OFF (VKP_MMID_F32 - VKP_MM_F32)
#define VKP_MMIDG_OFF (VKP_MMIDG_F32 - VKP_MM_F32)
#define VKP_MMT_OFF (VKP_MMT_F32 - VKP_MM_F32)
#define LG_ROWS 64u /* logits rows one step computes on the device */
/* Matmuls of steps of at least MMT_MIN_T tokens take the tiled variant (mm_tiled.comp),
 * whose workgroups compute MMT_ROWS x MMT_TOKENS outputs (the shader's BM x BN). */
#define MMT_MIN_T 16u
#define MMT_ROWS 64u
#define MMT_TOKENS 32u

/* Bytes of one layer's cache of cap positions: f16 K (and V) rows of kv_dim. */
static inline VkDeviceSize sw__vk_kv_layer_bytes(const struct sw__vk *g, uint32_t cap)
{
    return 2ull * g->kv_parts * g->kv_dim * cap;
}

/* backend_vk.c: buffers */
int sw__vk_buf_new(struct sw__vk *g, VkDeviceSize size, int host, struct vk_buf *out);
void sw__vk_buf_free(struct sw__vk *g, struct vk_buf *b);

/* backend_vk_step.c: recording */
struct sw__vk_bind {
    VkBuffer b;
    VkDeviceSize off, range; /* range 0: the whole buffer */
};
/* attn.comp's push constants (its variants: plain, windowed, soft-capped, with sinks, and
 * deepseek2's latent form -DNACC=16). */
struct sw__vk_attn_pc {
    uint32_t t0, pos0, n_head, group, hd, cap, k_word, v_word;
    float scale;
    uint32_t window;
    float softcap;
    uint32_t sinks;
};
void sw__vk_dispatch(struct sw__vk *g, uint32_t pipe, const struct sw__vk_bind *bs, uint32_t nb, const void *pc,
                     uint32_t pc_len, uint32_t x, uint32_t y, uint32_t z);
void sw__vk_cc_barrier(struct sw__vk *g); /* compute -> compute */
/* Records matmul `pipe` (a VKP_MM_* base) over rows x T outputs with its ten push constants
 * (pc[9], rows per workgroup, is set here): the 1-token variant for decode, the tiled one
 * from MMT_MIN_T tokens, else 8 tokens per workgroup. */
void sw__vk_mm_record(struct sw__vk *g, uint32_t pipe, const struct sw__vk_bind *bs, uint32_t pc[10], uint32_t rows,
                      uint32_t T);
/* y (scratch, y_off floats) (+)= W · x (scratch x_off), T tokens (bias: VK_NONE or an
 * offset in L's buffer). */
void sw__vk_mm(struct sw__vk *g, const struct vk_layer *L, const struct vk_mat *w, VkDeviceSize bias, uint32_t x_off,
               uint32_t x_stride, uint32_t y_off, uint32_t y_stride, uint32_t T, int accumulate);
void sw__vk_glu(struct sw__vk *g, uint32_t off_g, uint32_t off_u, uint32_t n);
void sw__vk_rmsnorm_n(struct sw__vk *g, const struct vk_layer *L, VkDeviceSize w_off, uint32_t n, uint32_t x_off,
                      uint32_t y_off, uint32_t rows, uint32_t add);

/* backend_vk_moe.c: a mixture-of-experts FFN over the normed x in xn, into x (+=, or
 * through the post-FFN norm), T tokens. */
void sw__vk_ffn_moe(struct sw__vk *g, const struct vk_layer *L, uint32_t T);
/* y (slot rows, y_stride floats apart) = W_e · x for each of S slots, e = ids[ids_off +
 * slot] (ids_b: the buffer holding them), x row = slot / xdiv. */
void sw__vk_mm_id(struct sw__vk *g, const struct vk_layer *L, const struct vk_mat *w, VkBuffer ids_b, uint32_t ids_off,
                  uint32_t x_off, uint32_t x_stride, uint32_t xdiv, uint32_t y_off, uint32_t y_stride, uint32_t S);

/* backend_vk_mla.c: deepseek2's latent attention over the normed x in xn, added into x, T
 * tokens in n_seg runs; and its routing by a selection score (router logits at so.router
 * in, ids and weights out). */
void sw__vk_attn_mla(struct sw__vk *g, const struct vk_layer *L, uint32_t li, const struct sw__vk_seg *sg,
                     uint32_t n_seg, uint32_t T);
void sw__vk_route_sel(struct sw__vk *g, const struct vk_layer *L, uint32_t T);
/* Words of the (token, head) tile table for steps of up to B tokens (H heads). */
static inline VkDeviceSize sw__vk_mla_tiles_words(uint32_t B, uint32_t H)
{
    return 1 + 3ull * H * ((B + 7u) / 8u) + (VkDeviceSize)B * H;
}
/* A step of T tokens: when its per-head matmuls take the grouped form, writes their tile
 * table into io (at io_heads) and sets *cp to its copy into scratch; returns 1, else 0. */
int sw__vk_mla_tiles(struct sw__vk *g, uint32_t T, VkBufferCopy *cp);
/* backend_vk_moe.c: the grouped expert-indexed matmul over a tile table in ids_b (tiles at
 * tiles_off, the slot list at list_off, words). */
void sw__vk_mm_idg(struct sw__vk *g, const struct vk_layer *L, const struct vk_mat *w, VkBuffer ids_b,
                   uint32_t tiles_off, uint32_t list_off, uint32_t x_off, uint32_t x_stride, uint32_t xdiv,
                   uint32_t y_off, uint32_t y_stride, uint32_t S, uint32_t n_tiles);

#endif
