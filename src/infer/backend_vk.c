/* backend_vk.c — the Vulkan backend's device side: loading the loader (dlopen), choosing a
 * device, the pipelines of the embedded shaders, and uploading a stage's first layers from
 * the map into device memory (repacked so every quantized block is 4-byte aligned; types
 * without a shader converted to F16), streamed through a staging buffer with progress in
 * the log. The forward pass is recorded in backend_vk_step.c.
 * Not for: the CPU path (stage.c), the model's tensors (model.c, arch.c). */
#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/backend_vk_impl.h"
#include "infer/kernels_iq2.h"
#include "infer/kernels_iq3.h"

#define STAGING_BYTES (16u << 20)
#define ALIGN_MIN 256u

static const char *const PIPE_NAMES[VKP_COUNT] = {
#define X(T, t) "mm_" #t,
    SW_VK_MM_TYPES(X)
#undef X
#define X(T, t) "mm1_" #t,
    SW_VK_MM_TYPES(X)
#undef X
#define X(T, t) "mmid_" #t,
    SW_VK_MM_TYPES(X)
#undef X
#define X(T, t) "mmidg_" #t,
    SW_VK_MM_TYPES(X)
#undef X
#define X(T, t) "mmt_" #t,
    SW_VK_MM_TYPES(X)
#undef X
    "rmsnorm", "glu", "rope_kv", "attn", "moe_route", "moe_sum", "moe_group", "moe_bias", "rope_mla",
    "attn_mla", "moe_route_sel",
};

static const char *vk_res(VkResult r)
{
    switch (r) {
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "out of host memory";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "out of device memory";
    case VK_ERROR_INITIALIZATION_FAILED: return "initialization failed";
    case VK_ERROR_DEVICE_LOST: return "device lost";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "no compatible Vulkan driver (ICD)";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "extension not present";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "feature not present";
    case VK_TIMEOUT: return "timed out";
    default: return "error";
    }
}

/* ------------------------------------------------------------------ buffers */

static int mem_type(const struct sw__vk *g, uint32_t bits, VkMemoryPropertyFlags want)
{
    for (uint32_t i = 0; i < g->memp.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (g->memp.memoryTypes[i].propertyFlags & want) == want) return (int)i;
    return -1;
}

int sw__vk_buf_new(struct sw__vk *g, VkDeviceSize size, int host, struct vk_buf *out)
{
    memset(out, 0, sizeof *out);
    if (size == 0) size = 16;
    VkBufferCreateInfo bi = { .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = size,
                              .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                       VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                              .sharingMode = VK_SHARING_MODE_EXCLUSIVE };
    if (g->f.vkCreateBuffer(g->dev, &bi, NULL, &out->b) != VK_SUCCESS) return SW_ENOMEM;
    VkMemoryRequirements mr;
    g->f.vkGetBufferMemoryRequirements(g->dev, out->b, &mr);
    int t = host ? mem_type(g, mr.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT)
                 : mem_type(g, mr.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    if (t < 0 && !host) t = mem_type(g, mr.memoryTypeBits, 0);
    VkMemoryAllocateInfo ai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = mr.size,
                                .memoryTypeIndex = (uint32_t)(t < 0 ? 0 : t) };
    if (t < 0 || g->f.vkAllocateMemory(g->dev, &ai, NULL, &out->m) != VK_SUCCESS) {
        g->f.vkDestroyBuffer(g->dev, out->b, NULL);
        memset(out, 0, sizeof *out);
        return SW_ENOMEM;
    }
    g->f.vkBindBufferMemory(g->dev, out->b, out->m, 0);
    out->size = size;
    if (host && g->f.vkMapMemory(g->dev, out->m, 0, VK_WHOLE_SIZE, 0, &out->map) != VK_SUCCESS) {
        sw__vk_buf_free(g, out);
        return SW_ENOMEM;
    }
    return 0;
}

void sw__vk_buf_free(struct sw__vk *g, struct vk_buf *b)
{
    if (!b->b) return;
    if (b->map) g->f.vkUnmapMemory(g->dev, b->m);
    g->f.vkDestroyBuffer(g->dev, b->b, NULL);
    g->f.vkFreeMemory(g->dev, b->m, NULL);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------------ weight layout */

/* The device's form of a weight type: its pipeline, bytes per block of `bs` elements after
 * repacking; F16 for types without a shader. */
static void dev_type(uint32_t type, uint32_t *dtype, uint32_t *pipe, uint32_t *bs, uint32_t *bbytes)
{
    *dtype = type;
    /* tests: every block type converted to F16 at upload (the CPU reference's
     * dequantisation), to hold each shader's decoding against it */
    const char *f16 = getenv("SHARDSWARM_VK_F16");
    if (f16 && f16[0] == '1' && type != SW_TYPE_F32 && type != SW_TYPE_BF16) type = SW_TYPE_F16;
    switch (type) {
    case SW_TYPE_F32: *pipe = VKP_MM_F32, *bs = 1, *bbytes = 4; return;
    case SW_TYPE_BF16: *pipe = VKP_MM_BF16, *bs = 2, *bbytes = 4; return;
    case SW_TYPE_Q8_0: *pipe = VKP_MM_Q8_0, *bs = 32, *bbytes = 36; return;
    case SW_TYPE_Q4_0: *pipe = VKP_MM_Q4_0, *bs = 32, *bbytes = 20; return;
    case SW_TYPE_Q4_K: *pipe = VKP_MM_Q4_K, *bs = 256, *bbytes = 144; return;
    case SW_TYPE_Q6_K: *pipe = VKP_MM_Q6_K, *bs = 256, *bbytes = 212; return;
    case SW_TYPE_Q5_K: *pipe = VKP_MM_Q5_K, *bs = 256, *bbytes = 176; return;
    case SW_TYPE_Q3_K: *pipe = VKP_MM_Q3_K, *bs = 256, *bbytes = 112; return;
    case SW_TYPE_Q2_K: *pipe = VKP_MM_Q2_K, *bs = 256, *bbytes = 84; return;
    case SW_TYPE_IQ4_XS: *pipe = VKP_MM_IQ4_XS, *bs = 256, *bbytes = 136; return;
    case SW_TYPE_IQ4_NL: *pipe = VKP_MM_IQ4_NL, *bs = 32, *bbytes = 20; return;
    case SW_TYPE_Q4_1: *pipe = VKP_MM_Q4_1, *bs = 32, *bbytes = 20; return;
    case SW_TYPE_Q5_0: *pipe = VKP_MM_Q5_0, *bs = 32, *bbytes = 24; return;
    case SW_TYPE_Q5_1: *pipe = VKP_MM_Q5_1, *bs = 32, *bbytes = 24; return;
    case SW_TYPE_MXFP4: *pipe = VKP_MM_MXFP4, *bs = 32, *bbytes = 20; return;
    case SW_TYPE_IQ2_XXS: *pipe = VKP_MM_IQ2_XXS, *bs = 256, *bbytes = 68; return;
    case SW_TYPE_IQ2_XS: *pipe = VKP_MM_IQ2_XS, *bs = 256, *bbytes = 76; return;
    case SW_TYPE_IQ3_XXS: *pipe = VKP_MM_IQ3_XXS, *bs = 256, *bbytes = 100; return;
    case SW_TYPE_IQ3_S: *pipe = VKP_MM_IQ3_S, *bs = 256, *bbytes = 112; return;
    case SW_TYPE_IQ2_S: *pipe = VKP_MM_IQ2_S, *bs = 256, *bbytes = 84; return;
    case SW_TYPE_IQ1_S: *pipe = VKP_MM_IQ1_S, *bs = 256, *bbytes = 52; return;
    case SW_TYPE_IQ1_M: *pipe = VKP_MM_IQ1_M, *bs = 256, *bbytes = 56; return;
    case SW_TYPE_Q8_K: *pipe = VKP_MM_Q8_K, *bs = 256, *bbytes = 260; return;
    default: *dtype = SW_TYPE_F16, *pipe = VKP_MM_F16, *bs = 2, *bbytes = 4; return;
    }
}

static VkDeviceSize align_up(VkDeviceSize v, VkDeviceSize a) { return (v + a - 1) / a * a; }

static VkDeviceSize mat_bytes(const struct sw__w *w, struct vk_mat *vm)
{
    uint32_t dt, pipe, bs, bb;
    dev_type(w->type, &dt, &pipe, &bs, &bb);
    const uint64_t n = (uint64_t)w->rows * (uint64_t)w->cols;
    if (vm) {
        vm->type = dt;
        vm->pipe = pipe;
        vm->rows = (uint32_t)w->rows;
        vm->cols = (uint32_t)w->cols;
        vm->row_words = bs >= 32 ? (uint32_t)(w->cols / bs * bb / 4) : 0;
    }
    return (VkDeviceSize)((n + bs - 1) / bs * bb);
}

/* An expert stack as one matrix of n_expert x rows rows (expert e's rows first at row
 * e x rows): the device's layout repacks it as it does a matrix. data NULL and rows -1
 * when the experts are not back to back (GGUF's 3-D tensors are). */
static struct sw__w stack_view(const struct sw__wx *x)
{
    struct sw__w w = { x->data, x->type, x->rows * x->n_expert, x->cols, x->name };
    if (x->data && x->stride != sw_k_row_bytes(x->type, x->cols) * (size_t)x->rows) w.data = NULL, w.rows = -1;
    return w;
}

#define MAX_MATS 14

/* A layer's matrices in upload order, each with its device slot (L NULL: none) and its
 * expert count (a stack; 0: one matrix): q/k/v/o, or deepseek2's q (attn_q or attn_q_b),
 * kv_a, q_a, o and the per-head k_b / v_b stacks; then the dense gate/up/down, or the MoE
 * router, the expert stacks (views) and the shared expert's three. */
struct mat_list {
    struct sw__w w[MAX_MATS];
    struct vk_mat *v[MAX_MATS];
    uint32_t nx[MAX_MATS];
    int n;
};

static void ml_add(struct mat_list *ml, struct sw__w w, struct vk_mat *v, uint32_t nx)
{
    ml->w[ml->n] = w;
    ml->v[ml->n] = v;
    ml->nx[ml->n++] = nx;
}

static void layer_mats(const struct sw__model *m, const struct sw__layer *ly, int moe, struct vk_layer *L,
                       struct mat_list *ml)
{
#define SLOT(f) (L ? &L->f : NULL)
    const struct sw__hparams *hp = &m->hp;
    ml->n = 0;
    if (hp->mla) {
        const uint32_t H = m->info.n_head;
        ml_add(ml, ly->wq_b, SLOT(wq), 0);
        ml_add(ml, ly->wkv_a, SLOT(wk), 0);
        if (hp->q_lora_rank) ml_add(ml, ly->wq_a, SLOT(qa), 0);
        ml_add(ml, ly->wo, SLOT(wo), 0);
        ml_add(ml, stack_view(&ly->wk_b), SLOT(kb), H);
        ml_add(ml, stack_view(&ly->wv_b), SLOT(vb), H);
    } else {
        ml_add(ml, ly->wq, SLOT(wq), 0);
        ml_add(ml, ly->wk, SLOT(wk), 0);
        ml_add(ml, ly->wv, SLOT(wv), 0);
        ml_add(ml, ly->wo, SLOT(wo), 0);
    }
    if (!moe) {
        ml_add(ml, ly->w_gate, SLOT(wg), 0);
        ml_add(ml, ly->w_up, SLOT(wu), 0);
        ml_add(ml, ly->w_down, SLOT(wd), 0);
        return;
    }
    ml_add(ml, ly->gate_inp, SLOT(router), 0);
    ml_add(ml, stack_view(&ly->gate_exps), SLOT(ge), hp->n_expert);
    ml_add(ml, stack_view(&ly->up_exps), SLOT(ue), hp->n_expert);
    ml_add(ml, stack_view(&ly->down_exps), SLOT(de), hp->n_expert);
    if (hp->n_ff_shexp) {
        ml_add(ml, ly->gate_sh, SLOT(gsh), 0);
        ml_add(ml, ly->up_sh, SLOT(ush), 0);
        ml_add(ml, ly->down_sh, SLOT(dsh), 0);
    }
#undef SLOT
}

/* Why deepseek2's latent attention cannot run on the device ("" when it can). */
static void mla_unsupported(const struct sw__model *m, char *why, size_t cap)
{
    const struct sw__hparams *hp = &m->hp;
    const uint32_t kd = m->info.head_dim, km = hp->qk_nope + m->info.n_rot;
    why[0] = 0;
    /* the latent's norm stores pairs of halves; the matmuls read x 4 floats at a time */
    if (hp->kv_lora_rank % 2 || m->info.n_rot % 2 || kd % 4 || km % 4 || hp->q_lora_rank % 4 || kd > 1024)
        snprintf(why, cap, "latent attention of kv_lora_rank %u, rope %u, key_length_mla %u (the shaders take "
                 "even ranks and heads of 4k dimensions up to 1024)", hp->kv_lora_rank, m->info.n_rot, km);
}

/* Why layer l cannot run on the device ("" when it can). */
static void layer_unsupported(const struct sw__model *m, uint32_t l, VkDeviceSize max_range, char *why, size_t cap)
{
    const struct sw__hparams *hp = &m->hp;
    const struct sw_stage_info *in = &m->info;
    const struct sw__layer *ly = &m->layers[l - in->layer_first];
    why[0] = 0;
    const int moe = m->ld[l].is_moe;
    if (hp->mla) mla_unsupported(m, why, cap);
    if (why[0]) return;
    if (hp->qk_norm && (!ly->q_norm || !ly->k_norm)) snprintf(why, cap, "no q/k norm weights");
    else if (hp->post_norms && (!ly->attn_post_norm || !ly->ffn_post_norm)) snprintf(why, cap, "no post-norm weights");
    else if (!hp->mla && (in->head_dim % 2 || in->head_dim > 256 || in->n_rot > in->head_dim))
        snprintf(why, cap, "head size %u (the shader takes even sizes up to 256)", in->head_dim);
    else if (moe && hp->n_group > 32) snprintf(why, cap, "%u expert groups (the shader takes up to 32)", hp->n_group);
    if (why[0]) return;
    struct mat_list ml;
    layer_mats(m, ly, moe, NULL, &ml);
    const struct sw__w *ws = ml.w;
    for (int i = 0; i < ml.n; i++) {
        if (!ws[i].data) {
            snprintf(why, cap, "no %s%s", ws[i].name ? ws[i].name : "weight",
                     ws[i].rows < 0 ? " (its experts are not one contiguous stack)" : "");
            return;
        }
        VkDeviceSize b = mat_bytes(&ws[i], NULL);
        if (b > max_range) {
            snprintf(why, cap, "%s needs %" PRIu64 " bytes in one buffer, the device binds %" PRIu64,
                     ws[i].name ? ws[i].name : "a weight", (uint64_t)b, (uint64_t)max_range);
            return;
        }
    }
}

/* The f32 vectors of a layer: attn/ffn norms, q/k/v/o biases, q/k norms, post-norms, the
 * shared expert's gate (as L->shg's matrix); gpt-oss's sinks, router bias and expert bias
 * tables; deepseek2's q_a and kv_a norms and selection bias: each one's data (NULL:
 * absent), length in floats and device offset. */
#define N_VEC 19

static void layer_vecs(const struct sw__vk *g, const struct sw__model *m, const struct sw__layer *ly,
                       struct vk_layer *L, const float **vp, uint32_t *vn, VkDeviceSize **vo)
{
    const struct sw_stage_info *in = &m->info;
    const int moe = L->moe;
    const uint32_t NX = m->hp.n_expert, FX = m->hp.n_ff_exp;
    const float *p[N_VEC] = { ly->attn_norm, ly->ffn_norm, ly->bq, ly->bk, ly->bv, ly->bo,
                              ly->q_norm, ly->k_norm, ly->attn_post_norm, ly->ffn_post_norm,
                              moe ? ly->gate_inp_sh : NULL, ly->sinks,
                              moe ? ly->gate_inp_b : NULL, moe ? ly->gate_exps_b : NULL,
                              moe ? ly->up_exps_b : NULL, moe ? ly->down_exps_b : NULL,
                              ly->q_a_norm, ly->kv_a_norm, moe ? ly->exp_probs_b : NULL };
    const uint32_t n[N_VEC] = { in->n_embd, in->n_embd, g->q_dim, g->kv_dim, g->kv_dim, in->n_embd,
                                in->head_dim, in->head_dim, in->n_embd, in->n_embd, in->n_embd, in->n_head,
                                NX, NX * FX, NX * FX, NX * in->n_embd,
                                m->hp.q_lora_rank, m->hp.kv_lora_rank, NX };
    VkDeviceSize *o[N_VEC] = { &L->attn_norm, &L->ffn_norm, &L->bq, &L->bk, &L->bv, &L->bo,
                               &L->q_norm, &L->k_norm, &L->attn_post, &L->ffn_post, &L->shg.off,
                               &L->sinks, &L->router_b, &L->ge_b, &L->ue_b, &L->de_b,
                               &L->q_a_norm, &L->kv_a_norm, &L->sel_b };
    for (int i = 0; i < N_VEC; i++) vp[i] = p[i], vn[i] = n[i], vo[i] = o[i];
}

/* Lays out one layer's buffer (li: index in the stage); returns its size. */
static VkDeviceSize layer_layout(const struct sw__vk *g, const struct sw__model *m, uint32_t li, struct vk_layer *L)
{
    const struct sw__layer *ly = &m->layers[li];
    const struct sw_stage_info *in = &m->info;
    VkDeviceSize off = 0;
    const uint32_t l = in->layer_first + li;
    L->moe = m->ld[l].is_moe;
    struct mat_list ml;
    layer_mats(m, ly, L->moe, L, &ml);
    for (int i = 0; i < ml.n; i++) {
        ml.v[i]->off = off;
        ml.v[i]->size = mat_bytes(&ml.w[i], ml.v[i]);
        ml.v[i]->n_expert = ml.nx[i];
        off = align_up(off + ml.v[i]->size, g->align);
    }
    const float *vp[N_VEC];
    uint32_t vn[N_VEC];
    VkDeviceSize *vo[N_VEC];
    memset(&L->shg, 0, sizeof L->shg);
    layer_vecs(g, m, ly, L, vp, vn, vo);
    L->window = m->ld[l].is_swa && m->hp.n_swa ? m->hp.n_swa : 0;
    L->swa_rope = L->window && m->rope_inv_freq_swa;
    for (int i = 0; i < N_VEC; i++) {
        if (!vp[i]) {
            *vo[i] = VK_NONE;
            continue;
        }
        *vo[i] = off;
        off = align_up(off + (VkDeviceSize)vn[i] * 4, g->align);
    }
    /* qwen2moe's shared-expert gate: its vector as a 1 x n_embd F32 matrix */
    if (L->shg.off != VK_NONE)
        L->shg = (struct vk_mat){ .off = L->shg.off, .size = (VkDeviceSize)in->n_embd * 4, .type = SW_TYPE_F32,
                                  .pipe = VKP_MM_F32, .rows = 1, .cols = in->n_embd };
    else
        memset(&L->shg, 0, sizeof L->shg);
    return off;
}

/* ------------------------------------------------------------------ upload */

struct upl {
    struct sw__vk *g;
    struct vk_buf st;   /* staging */
    size_t used;
    VkBufferCopy reg[64];
    uint32_t n_reg;
    VkBuffer dst;
};

static int submit_wait(struct sw__vk *g)
{
    VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &g->cb };
    g->f.vkResetFences(g->dev, 1, &g->fence);
    VkResult r = g->f.vkQueueSubmit(g->queue, 1, &si, g->fence);
    if (r == VK_SUCCESS) r = g->f.vkWaitForFences(g->dev, 1, &g->fence, VK_TRUE, 120ull * 1000000000ull);
    return r == VK_SUCCESS ? 0 : r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY ? SW_ENOMEM
                                                                                                      : SW_ESTATE;
}

static int upl_flush(struct upl *u)
{
    if (!u->n_reg) return 0;
    struct sw__vk *g = u->g;
    VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                    .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT };
    g->f.vkResetCommandBuffer(g->cb, 0);
    g->f.vkBeginCommandBuffer(g->cb, &bi);
    g->f.vkCmdCopyBuffer(g->cb, u->st.b, u->dst, u->n_reg, u->reg);
    g->f.vkEndCommandBuffer(g->cb);
    int rc = submit_wait(g);
    u->used = 0;
    u->n_reg = 0;
    return rc;
}

/* Room for n bytes in staging destined for dst offset off; returns the host pointer. */
static void *upl_take(struct upl *u, VkDeviceSize off, size_t n, int *rc)
{
    *rc = 0;
    if (u->used + n > u->st.size || u->n_reg == 64) *rc = upl_flush(u);
    if (*rc) return NULL;
    VkBufferCopy *last = u->n_reg ? &u->reg[u->n_reg - 1] : NULL;
    if (last && last->dstOffset + last->size == off && last->srcOffset + last->size == u->used) {
        last->size += n;
    } else {
        u->reg[u->n_reg++] = (VkBufferCopy){ .srcOffset = u->used, .dstOffset = off, .size = n };
    }
    void *p = (uint8_t *)u->st.map + u->used;
    u->used += n; /* vkCmdCopyBuffer needs no alignment */
    return p;
}

/* Copies one block into the device's layout (fields moved so blocks are 4-byte aligned). */
static void repack_block(uint32_t type, const uint8_t *s, uint8_t *d)
{
    switch (type) {
    case SW_TYPE_Q4_0: memcpy(d, s + 2, 16), memcpy(d + 16, s, 2), d[18] = d[19] = 0; break;
    case SW_TYPE_Q8_0: memcpy(d, s + 2, 32), memcpy(d + 32, s, 2), d[34] = d[35] = 0; break;
    case SW_TYPE_Q4_K: memcpy(d, s, 144); break;
    case SW_TYPE_Q6_K: memcpy(d, s, 210), d[210] = d[211] = 0; break;
    case SW_TYPE_Q3_K: memcpy(d, s, 110), d[110] = d[111] = 0; break;
    case SW_TYPE_Q5_K: memcpy(d, s, 176); break;
    case SW_TYPE_Q2_K: memcpy(d, s, 84); break;
    case SW_TYPE_IQ4_XS: memcpy(d, s, 136); break;
    case SW_TYPE_Q4_1: memcpy(d, s, 20); break;
    case SW_TYPE_Q5_1: memcpy(d, s, 24); break;
    case SW_TYPE_IQ4_NL: memcpy(d, s + 2, 16), memcpy(d + 16, s, 2), d[18] = d[19] = 0; break;
    case SW_TYPE_Q5_0: memcpy(d, s + 6, 16), memcpy(d + 16, s + 2, 4), memcpy(d + 20, s, 2), d[22] = d[23] = 0; break;
    case SW_TYPE_MXFP4: memcpy(d, s + 1, 16), d[16] = s[0], d[17] = d[18] = d[19] = 0; break;
    case SW_TYPE_IQ2_XXS: memcpy(d, s + 2, 64), memcpy(d + 64, s, 2), d[66] = d[67] = 0; break;
    case SW_TYPE_IQ2_XS: memcpy(d, s + 2, 72), memcpy(d + 72, s, 2), d[74] = d[75] = 0; break;
    case SW_TYPE_IQ3_XXS: memcpy(d, s + 2, 96), memcpy(d + 96, s, 2), d[98] = d[99] = 0; break;
    case SW_TYPE_IQ3_S: memcpy(d, s + 2, 108), memcpy(d + 108, s, 2), d[110] = d[111] = 0; break;
    case SW_TYPE_IQ2_S: memcpy(d, s + 2, 80), memcpy(d + 80, s, 2), d[82] = d[83] = 0; break;
    case SW_TYPE_IQ1_S: memcpy(d, s + 2, 48), memcpy(d + 48, s, 2), d[50] = d[51] = 0; break;
    case SW_TYPE_IQ1_M: memcpy(d, s, 56); break;
    case SW_TYPE_Q8_K: memcpy(d, s, 260); break; /* d (f32) and qs; the bsums are the CPU's */
    }
}

/* The IQ codebooks the shaders read (mm.comp binding 4, GRID_* offsets there, in words),
 * back to back: IQ2_XXS's 256 and IQ2_XS's 512 grid rows of 8 bytes, IQ3_XXS's 256 and
 * IQ3_S's 512 of 4, IQ2_S's 1024 and IQ1_S's 2048 of 8. */
static int upload_grids(struct sw__vk *g, struct upl *u)
{
    const struct { const void *p; size_t n; } t[] = {
        { sw__k_iq2xxs_grid, sizeof sw__k_iq2xxs_grid }, { sw__k_iq2xs_grid, sizeof sw__k_iq2xs_grid },
        { sw__k_iq3xxs_grid, sizeof sw__k_iq3xxs_grid }, { sw__k_iq3s_grid, sizeof sw__k_iq3s_grid },
        { sw__k_iq2s_grid, sizeof sw__k_iq2s_grid },     { sw__k_iq1s_grid, sizeof sw__k_iq1s_grid },
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) total += t[i].n;
    int rc = sw__vk_buf_new(g, total, 0, &g->grids);
    if (rc) return rc;
    u->dst = g->grids.b;
    uint8_t *p = upl_take(u, 0, total, &rc);
    if (!p) return rc;
    for (size_t i = 0; i < sizeof t / sizeof *t; p += t[i].n, i++)
        memcpy(p, t[i].p, t[i].n); /* little-endian hosts: the words the shader reads */
    return upl_flush(u);
}

/* deepseek2: the "expert" of each (token, head) slot of the per-head matmuls, slot % n_head
 * (mm.comp -DMM_ID reads it as moe_route.comp's ids). */
static int upload_head_ids(struct sw__vk *g, struct upl *u)
{
    const size_t n = (size_t)g->max_batch * g->n_head;
    int rc = sw__vk_buf_new(g, n * 4, 0, &g->head_ids);
    if (rc) return rc;
    u->dst = g->head_ids.b;
    uint32_t *p = upl_take(u, 0, n * 4, &rc);
    if (!p) return rc;
    for (size_t i = 0; i < n; i++) p[i] = (uint32_t)(i % g->n_head);
    return upl_flush(u);
}

/* Adds a type's name to the list of those converted to F16 at upload (once each). */
static void note_converted(struct sw__vk *g, uint32_t type)
{
    const struct sw_type_info *ti = sw_gguf_type_info(type);
    const char *name = ti ? ti->name : "?";
    const size_t nl = strlen(name), have = strlen(g->converted);
    for (const char *p = g->converted; (p = strstr(p, name)) != NULL; p += nl)
        if ((p == g->converted || p[-1] == ' ') && (p[nl] == ' ' || p[nl] == 0)) return;
    if (have + nl + 2 <= sizeof g->converted) snprintf(g->converted + have, sizeof g->converted - have, "%s%s", have ? " " : "", name);
}

/* Streams one matrix: row by row into staging, repacked or converted. */
static int upload_mat(struct upl *u, const struct sw__w *w, const struct vk_mat *vm, VkDeviceSize base, float *rowf)
{
    const size_t src_row = sw_k_row_bytes(w->type, w->cols);
    const uint8_t *src = w->data;
    int rc = 0;
    if (vm->type == w->type && (w->type == SW_TYPE_F32 || w->type == SW_TYPE_F16 || w->type == SW_TYPE_BF16)) {
        /* raw: whole rows at a time, chunked to the staging size */
        const size_t total = src_row * (size_t)w->rows;
        for (size_t done = 0; done < total;) {
            size_t n = SW_MIN(total - done, (size_t)STAGING_BYTES / 2);
            uint8_t *p = upl_take(u, base + vm->off + done, n, &rc);
            if (!p) return rc;
            memcpy(p, src + done, n);
            done += n;
        }
        return 0;
    }
    if (vm->type == SW_TYPE_F16) { /* no shader for this type: F16 at upload */
        note_converted(u->g, w->type);
        const size_t drow = (size_t)w->cols * 2;
        for (int64_t r = 0; r < w->rows; r++) {
            if ((rc = sw_k_dequantize_row(w->type, src + (size_t)r * src_row, rowf, w->cols))) return rc;
            uint8_t *p = upl_take(u, base + vm->off + (size_t)r * drow, drow, &rc);
            if (!p) return rc;
            sw_k_f32_to_f16_row(rowf, (sw_f16 *)p, w->cols);
        }
        return 0;
    }
    uint32_t dt, pipe, bs, bb;
    dev_type(w->type, &dt, &pipe, &bs, &bb);
    const size_t sbb = src_row / (size_t)(w->cols / bs), nb = (size_t)(w->cols / bs), drow = nb * bb;
    for (int64_t r = 0; r < w->rows; r++) {
        uint8_t *p = upl_take(u, base + vm->off + (size_t)r * drow, drow, &rc);
        if (!p) return rc;
        const uint8_t *s = src + (size_t)r * src_row;
        for (size_t b = 0; b < nb; b++) repack_block(w->type, s + b * sbb, p + b * bb);
    }
    return 0;
}

static int upload_layer(struct sw__vk *g, struct upl *u, const struct sw__model *m, uint32_t li, struct vk_layer *L,
                        float *rowf)
{
    const struct sw__layer *ly = &m->layers[li];
    u->dst = L->buf.b;
    struct mat_list ml;
    layer_mats(m, ly, L->moe, L, &ml);
    int rc;
    for (int i = 0; i < ml.n; i++)
        if ((rc = upload_mat(u, &ml.w[i], ml.v[i], 0, rowf))) return rc;
    const float *vp[N_VEC];
    uint32_t vn[N_VEC];
    VkDeviceSize *vo[N_VEC];
    layer_vecs(g, m, ly, L, vp, vn, vo);
    for (int i = 0; i < N_VEC; i++) {
        if (!vp[i]) continue;
        void *p = upl_take(u, *vo[i], (size_t)vn[i] * 4, &rc);
        if (!p) return rc;
        memcpy(p, vp[i], (size_t)vn[i] * 4);
    }
    return upl_flush(u);
}

/* ------------------------------------------------------------------ device */

static int load_loader(struct sw__vk *g, char *msg, size_t len)
{
    const char *path = getenv("SHARDSWARM_VK_LOADER"); /* tests: a missing loader */
    if (!path || !*path) path = "libvulkan.so.1";
    g->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!g->lib) {
        snprintf(msg, len, "no Vulkan loader (%s: %s); install libvulkan1 and a driver (mesa-vulkan-drivers, "
                           "or the GPU vendor's)", path, dlerror());
        return SW_EUNSUPPORTED;
    }
    *(void **)&g->f.vkGetInstanceProcAddr = dlsym(g->lib, "vkGetInstanceProcAddr");
    if (!g->f.vkGetInstanceProcAddr) {
        snprintf(msg, len, "%s has no vkGetInstanceProcAddr", path);
        return SW_EUNSUPPORTED;
    }
    g->f.vkCreateInstance = (PFN_vkCreateInstance)g->f.vkGetInstanceProcAddr(NULL, "vkCreateInstance");
    return g->f.vkCreateInstance ? 0 : SW_EUNSUPPORTED;
}

static int has_ext(struct sw__vk *g, VkPhysicalDevice pd, const char *name)
{
    uint32_t n = 0;
    g->f.vkEnumerateDeviceExtensionProperties(pd, NULL, &n, NULL);
    VkExtensionProperties *e = calloc(n ? n : 1, sizeof *e);
    if (!e) return 0;
    g->f.vkEnumerateDeviceExtensionProperties(pd, NULL, &n, e);
    int found = 0;
    for (uint32_t i = 0; i < n && !found; i++) found = !strcmp(e[i].extensionName, name);
    free(e);
    return found;
}

static const char *type_name(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU (software)";
    default: return "other";
    }
}

static int open_device(struct sw__vk *g, const char *which, char *msg, size_t len)
{
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .pApplicationName = "shardswarm",
                              .apiVersion = VK_API_VERSION_1_1 };
    VkInstanceCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app };
    VkResult r = g->f.vkCreateInstance(&ici, NULL, &g->inst);
    if (r != VK_SUCCESS) {
        snprintf(msg, len, "no Vulkan device: vkCreateInstance failed (%s)", vk_res(r));
        return SW_EUNSUPPORTED;
    }
#define X(n) *(void **)&g->f.n = (void *)g->f.vkGetInstanceProcAddr(g->inst, #n);
    SW_VK_INSTANCE_FNS(X)
#undef X
    uint32_t n = 0;
    g->f.vkEnumeratePhysicalDevices(g->inst, &n, NULL);
    if (n == 0) {
        snprintf(msg, len, "no Vulkan device (the loader found no driver with a device; VK_ICD_FILENAMES=%s)",
                 getenv("VK_ICD_FILENAMES") ? getenv("VK_ICD_FILENAMES") : "unset");
        return SW_EUNSUPPORTED;
    }
    VkPhysicalDevice pds[16];
    if (n > 16) n = 16;
    g->f.vkEnumeratePhysicalDevices(g->inst, &n, pds);
    int pick = -1;
    if (!strcmp(which, "auto")) { /* a discrete GPU, else an integrated one; never a software device */
        int best = 0;
        for (uint32_t i = 0; i < n; i++) {
            VkPhysicalDeviceProperties p;
            g->f.vkGetPhysicalDeviceProperties(pds[i], &p);
            int score = p.deviceType == VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU ? 3
                        : p.deviceType == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU ? 2
                        : p.deviceType == VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU ? 1 : 0;
            if (score > best) best = score, pick = (int)i;
        }
        if (pick < 0) {
            VkPhysicalDeviceProperties p;
            g->f.vkGetPhysicalDeviceProperties(pds[0], &p);
            snprintf(msg, len, "no GPU: the only Vulkan device%s %s '%s' (choose it with --gpu 0)", n > 1 ? "s are" : " is",
                     type_name(p.deviceType), p.deviceName);
            return SW_EUNSUPPORTED;
        }
    } else {
        char *end;
        unsigned long k = strtoul(which, &end, 10);
        if (*end || k >= n) {
            snprintf(msg, len, "no Vulkan device %s (this machine has %u: 0..%u)", which, n, n - 1);
            return SW_ENOTFOUND;
        }
        pick = (int)k;
    }
    g->pd = pds[pick];
    VkPhysicalDeviceProperties p;
    g->f.vkGetPhysicalDeviceProperties(g->pd, &p);
    g->f.vkGetPhysicalDeviceMemoryProperties(g->pd, &g->memp);
    g->max_range = p.limits.maxStorageBufferRange;
    g->align = SW_MAX((VkDeviceSize)ALIGN_MIN, p.limits.minStorageBufferOffsetAlignment);
    snprintf(g->name, sizeof g->name, "%s [%s]", p.deviceName, type_name(p.deviceType));
    VkPhysicalDeviceSubgroupProperties sgp = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES };
    VkPhysicalDeviceProperties2 p2 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sgp };
    if (p.apiVersion < VK_API_VERSION_1_1 || !g->f.vkGetPhysicalDeviceProperties2) {
        snprintf(msg, len, "Vulkan device %s supports Vulkan %u.%u; 1.1 is needed", g->name, VK_API_VERSION_MAJOR(p.apiVersion),
                 VK_API_VERSION_MINOR(p.apiVersion));
        return SW_EUNSUPPORTED;
    }
    g->f.vkGetPhysicalDeviceProperties2(g->pd, &p2);
    if (!(sgp.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) || !(sgp.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) ||
        sgp.subgroupSize == 0) {
        snprintf(msg, len, "Vulkan device %s has no subgroup arithmetic in compute shaders", g->name);
        return SW_EUNSUPPORTED;
    }
    g->rows_per_wg = sgp.subgroupSize >= 64 ? 1 : 64 / sgp.subgroupSize;
    if (!has_ext(g, g->pd, VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME)) {
        snprintf(msg, len, "Vulkan device %s lacks %s", g->name, VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME);
        return SW_EUNSUPPORTED;
    }
    uint32_t nq = 0;
    g->f.vkGetPhysicalDeviceQueueFamilyProperties(g->pd, &nq, NULL);
    VkQueueFamilyProperties qf[32];
    if (nq > 32) nq = 32;
    g->f.vkGetPhysicalDeviceQueueFamilyProperties(g->pd, &nq, qf);
    int fam = -1;
    for (uint32_t i = 0; i < nq && fam < 0; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) fam = (int)i;
    if (fam < 0) {
        snprintf(msg, len, "Vulkan device %s has no compute queue", g->name);
        return SW_EUNSUPPORTED;
    }
    g->qfam = (uint32_t)fam;
    /* device-local heap: its size, and what is free when the driver says (memory budget) */
    int heap = -1;
    for (uint32_t i = 0; i < g->memp.memoryHeapCount; i++)
        if ((g->memp.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) &&
            (heap < 0 || g->memp.memoryHeaps[i].size > g->memp.memoryHeaps[heap].size))
            heap = (int)i;
    if (heap < 0) heap = 0;
    g->heap_bytes = g->memp.memoryHeaps[heap].size;
    const int budget = has_ext(g, g->pd, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
    uint64_t free_b = g->heap_bytes * 8 / 10;
    if (budget && g->f.vkGetPhysicalDeviceMemoryProperties2) {
        VkPhysicalDeviceMemoryBudgetPropertiesEXT mb = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT };
        VkPhysicalDeviceMemoryProperties2 mp2 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2, .pNext = &mb };
        g->f.vkGetPhysicalDeviceMemoryProperties2(g->pd, &mp2);
        if (mb.heapBudget[heap] > mb.heapUsage[heap]) free_b = (mb.heapBudget[heap] - mb.heapUsage[heap]) * 9 / 10;
    }
    const char *lim = getenv("SHARDSWARM_VK_MEM"); /* tests: pretend a smaller device */
    if (lim && *lim) {
        uint64_t v = strtoull(lim, NULL, 10);
        if (v) g->heap_bytes = v, free_b = SW_MIN(free_b, v);
    }
    g->kv_bytes = 0;
    g->weight_bytes = free_b; /* the budget until the upload replaces it with what it used */
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = g->qfam,
                                    .queueCount = 1, .pQueuePriorities = &prio };
    const char *exts[2] = { VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME };
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1,
                               .pQueueCreateInfos = &qci, .enabledExtensionCount = budget ? 2 : 1,
                               .ppEnabledExtensionNames = exts };
    if ((r = g->f.vkCreateDevice(g->pd, &dci, NULL, &g->dev)) != VK_SUCCESS) {
        snprintf(msg, len, "Vulkan device %s: vkCreateDevice failed (%s)", g->name, vk_res(r));
        return SW_EUNSUPPORTED;
    }
#define X(n) *(void **)&g->f.n = (void *)g->f.vkGetDeviceProcAddr(g->dev, #n);
    SW_VK_DEVICE_FNS(X)
#undef X
#define X(n) if (!g->f.n) { snprintf(msg, len, "Vulkan device %s: no %s", g->name, #n); return SW_EUNSUPPORTED; }
    SW_VK_DEVICE_FNS(X)
#undef X
    g->f.vkGetDeviceQueue(g->dev, g->qfam, 0, &g->queue);
    return 0;
}

/* Compiles pipeline i when first needed (a software device compiles each shader with LLVM:
 * only the weight types a model has are built). */
static int pipe_need(struct sw__vk *g, int i, char *msg, size_t len)
{
    if (g->pipe[i]) return 0;
    const struct sw__vk_spv *s = sw__vk_spvs;
    while (s->name && strcmp(s->name, PIPE_NAMES[i])) s++;
    if (!s->name) {
        snprintf(msg, len, "shader %s is not in this build", PIPE_NAMES[i]);
        return SW_EUNSUPPORTED;
    }
    VkShaderModuleCreateInfo smi = { .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, .codeSize = s->size,
                                     .pCode = (const uint32_t *)(const void *)s->bytes };
    VkShaderModule mod;
    if (g->f.vkCreateShaderModule(g->dev, &smi, NULL, &mod) != VK_SUCCESS) {
        snprintf(msg, len, "Vulkan device %s: out of memory for shader %s", g->name, PIPE_NAMES[i]);
        return SW_ENOMEM;
    }
    VkComputePipelineCreateInfo cpi = { .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
                                        .stage = { .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                                                   .stage = VK_SHADER_STAGE_COMPUTE_BIT, .module = mod, .pName = "main" },
                                        .layout = g->pl };
    VkResult r = g->f.vkCreateComputePipelines(g->dev, VK_NULL_HANDLE, 1, &cpi, NULL, &g->pipe[i]);
    g->f.vkDestroyShaderModule(g->dev, mod, NULL);
    if (r != VK_SUCCESS) {
        g->pipe[i] = VK_NULL_HANDLE;
        snprintf(msg, len, "Vulkan device %s: pipeline %s failed (%s)", g->name, PIPE_NAMES[i], vk_res(r));
        return SW_EUNSUPPORTED;
    }
    return 0;
}

/* A dense matrix's matmul pipelines (VKP_MM_* base `pipe`): 8 tokens, 1 token, and the
 * tiled one when a step may hold MMT_MIN_T tokens (sw__vk_mm_record chooses). */
static int mm_pipes(struct sw__vk *g, uint32_t pipe, char *msg, size_t len)
{
    int rc = pipe_need(g, (int)pipe, msg, len);
    if (!rc) rc = pipe_need(g, (int)(pipe + VKP_MM1_OFF), msg, len);
    if (!rc && g->max_batch >= MMT_MIN_T) rc = pipe_need(g, (int)(pipe + VKP_MMT_OFF), msg, len);
    return rc;
}

static int make_pipelines(struct sw__vk *g, char *msg, size_t len)
{
    VkDescriptorSetLayoutBinding b[5];
    for (uint32_t i = 0; i < 5; i++)
        b[i] = (VkDescriptorSetLayoutBinding){ .binding = i, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                               .descriptorCount = 1, .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT };
    VkDescriptorSetLayoutCreateInfo dl = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                                           .flags = VK_DESCRIPTOR_SET_LAYOUT_CREATE_PUSH_DESCRIPTOR_BIT_KHR,
                                           .bindingCount = 5, .pBindings = b };
    VkPushConstantRange pcr = { .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = 64 };
    if (g->f.vkCreateDescriptorSetLayout(g->dev, &dl, NULL, &g->dsl) != VK_SUCCESS) goto fail;
    VkPipelineLayoutCreateInfo pli = { .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, .setLayoutCount = 1,
                                       .pSetLayouts = &g->dsl, .pushConstantRangeCount = 1, .pPushConstantRanges = &pcr };
    if (g->f.vkCreatePipelineLayout(g->dev, &pli, NULL, &g->pl) != VK_SUCCESS) goto fail;
    VkCommandPoolCreateInfo cp = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                   .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT, .queueFamilyIndex = g->qfam };
    if (g->f.vkCreateCommandPool(g->dev, &cp, NULL, &g->cpool) != VK_SUCCESS) goto fail;
    VkCommandBufferAllocateInfo cba = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = g->cpool,
                                        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1 };
    if (g->f.vkAllocateCommandBuffers(g->dev, &cba, &g->cb) != VK_SUCCESS) goto fail;
    VkFenceCreateInfo fi = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
    if (g->f.vkCreateFence(g->dev, &fi, NULL, &g->fence) != VK_SUCCESS) goto fail;
    int rc;
    for (int i = VKP_RMSNORM; i < VKP_EAGER_END; i++)
        if ((rc = pipe_need(g, i, msg, len))) return rc;
    return 0;
fail:
    snprintf(msg, len, "Vulkan device %s: out of memory creating pipelines", g->name);
    return SW_ENOMEM;
}

/* ------------------------------------------------------------------ open / free */

int sw__vk_open(const struct sw__model *m, const struct sw__vk_opts *o, struct sw__vk **out, char *msg, size_t msg_len)
{
    *out = NULL;
    msg[0] = 0;
    struct sw__vk *g = calloc(1, sizeof *g);
    if (!g) return SW_ENOMEM;
    const struct sw_stage_info *in = &m->info;
    int rc = load_loader(g, msg, msg_len);
    if (!rc) rc = open_device(g, o->gpu, msg, msg_len);
    if (!rc) rc = make_pipelines(g, msg, msg_len);
    if (rc) {
        sw__vk_free(g);
        return rc;
    }
    const uint64_t budget = g->weight_bytes;
    g->weight_bytes = 0;
    g->E = in->n_embd;
    g->n_head = in->n_head;
    g->n_head_kv = in->n_head_kv;
    g->hd = in->head_dim;
    g->n_rot = in->n_rot;
    g->neox = (uint32_t)m->hp.rope_neox;
    g->act = m->hp.act == SW__ACT_GEGLU ? 1u : m->hp.act == SW__ACT_SWIGLU_OAI ? 2u : 0u;
    g->q_dim = in->n_head * in->head_dim;
    g->kv_dim = in->n_head_kv * in->head_dim;
    g->eps = in->rms_eps;
    g->attn_scale = m->hp.attn_scale;
    g->attn_softcap = m->hp.attn_softcap;
    if (m->hp.moe) {
        g->n_expert = m->hp.n_expert;
        g->n_used = m->hp.n_expert_used;
        g->moe_norm_w = (uint32_t)m->hp.moe_norm_w;
        g->moe_scale = m->hp.expert_weights_scale;
        g->route_mode = m->hp.gating == SW__GATING_SOFTMAX_WEIGHT ? 1u : 0u;
        g->gate_sigmoid = m->hp.gating == SW__GATING_SIGMOID;
        g->n_group = m->hp.n_group > 1 ? m->hp.n_group : 0;
        g->n_group_used = m->hp.n_group_used;
    }
    g->kv_parts = 2;
    if (m->hp.mla) {
        g->mla = 1;
        g->kv_parts = 1;
        g->q_lora = m->hp.q_lora_rank;
        g->kv_lora = m->hp.kv_lora_rank;
        g->qk_nope = m->hp.qk_nope;
        g->kmla = m->hp.qk_nope + in->n_rot;
        g->v_head = m->hp.v_head;
    }
    g->layer_first = in->layer_first;
    g->max_batch = o->max_batch;
    g->max_seqs = o->max_seqs;
    g->n_ctx = o->n_ctx;
    const char *la = getenv("SHARDSWARM_VK_LOSE_AFTER"); /* tests: a device lost mid-session */
    g->lose_after = la && *la ? strtoull(la, NULL, 10) : 0;
    const uint32_t nl = in->layer_last - in->layer_first + 1;
    g->L = calloc(nl, sizeof *g->L);
    g->kv = calloc(g->max_seqs, sizeof *g->kv);
    if (!g->L || !g->kv) {
        sw__vk_free(g);
        return SW_ENOMEM;
    }
    /* scratch and io */
    uint32_t ff_max = 0;
    for (uint32_t l = in->layer_first; l <= in->layer_last; l++) ff_max = SW_MAX(ff_max, m->ld[l].n_ff);
    /* MoE: gate/up hold every (token, expert) slot's row, or the shared expert's */
    if (m->hp.moe) ff_max = SW_MAX(ff_max, SW_MAX(g->n_used * m->hp.n_ff_exp, m->hp.n_ff_shexp));
    g->ff_max = ff_max;
    const VkDeviceSize B = g->max_batch, NX = g->n_expert, K = g->n_used;
    VkDeviceSize off = 0;
    /* MoE tiles of up to 8 slots of one expert: at most one partial tile per expert */
    g->max_tiles = NX ? (uint32_t)((B * K + 7) / 8 + SW_MIN(NX, B * K)) : 0;
    VkDeviceSize *so[21] = { &g->so.x, &g->so.xn, &g->so.q, &g->so.k, &g->so.v, &g->so.att, &g->so.gate,
                             &g->so.up, &g->so.router, &g->so.ids, &g->so.wts, &g->so.moe_y, &g->so.sh, &g->so.shg,
                             &g->so.cnt, &g->so.tiles, &g->so.list, &g->so.qa, &g->so.mq, &g->so.mo, &g->so.htab };
    const VkDeviceSize htab = g->mla ? sw__vk_mla_tiles_words(g->max_batch, g->n_head) : 0;
    const VkDeviceSize H = g->n_head;
    const VkDeviceSize sz[21] = { B * g->E, B * (g->mla ? g->E : SW_MAX(g->E, g->q_dim)), B * g->q_dim, B * g->kv_dim,
                                  g->mla ? 0 : B * g->kv_dim, B * g->q_dim, B * ff_max, B * ff_max, B * NX, B * K,
                                  B * K, B * K * g->E, m->hp.n_ff_shexp ? B * g->E : 0, m->hp.n_ff_shexp ? B : 0,
                                  NX, NX ? 1 + 3ull * g->max_tiles : 0, B * K,
                                  B * g->q_lora, g->mla ? B * H * g->kmla : 0, B * H * g->v_head, htab };
    for (int i = 0; i < 21; i++) {
        *so[i] = off;
        off += align_up(sz[i], 64);
    }
    g->so.total = off;
    /* io: x, the rope table, the sliding-window layers' rope table (gemma) */
    const VkDeviceSize rope_bytes = B * SW_MAX(in->n_rot, 2u) * 4;
    g->io_rope = align_up(B * g->E * 4, 256);
    g->io_rope_swa = m->rope_inv_freq_swa ? align_up(g->io_rope + rope_bytes, 256) : VK_NONE;
    /* deepseek2: then the step's (token, head) tiles */
    g->io_heads = align_up((g->io_rope_swa != VK_NONE ? g->io_rope_swa : g->io_rope) + rope_bytes, 256);
    const VkDeviceSize io_bytes = g->io_heads + htab * 4 + 256;
    if (off * 4 > g->max_range) {
        snprintf(msg, msg_len, "Vulkan device %s: the activations of %u tokens (%" PRIu64 " bytes) exceed one "
                 "buffer's range: lower the batch", g->name, g->max_batch, (uint64_t)off * 4);
        sw__vk_free(g);
        return SW_EUNSUPPORTED;
    }
    if (sw__vk_buf_new(g, off * 4, 0, &g->scratch) || sw__vk_buf_new(g, io_bytes, 1, &g->io)) {
        snprintf(msg, msg_len, "Vulkan device %s: out of device memory for the activations", g->name);
        sw__vk_free(g);
        return SW_ENOMEM;
    }
    /* which layers: the longest prefix the device computes and its memory holds (each
     * layer also reserves one sequence's full-context KV cache) */
    const uint64_t kv_full = sw__vk_kv_layer_bytes(g, g->n_ctx); /* f16 K (+ V) of one layer, one sequence */
    uint64_t used = (uint64_t)off * 4 + io_bytes + STAGING_BYTES;
    uint32_t want = o->gpu_layers ? SW_MIN(o->gpu_layers, nl) : nl;
    uint32_t n = 0;
    char why[200] = "";
    for (; n < want; n++) {
        const uint32_t l = in->layer_first + n;
        layer_unsupported(m, l, g->max_range, why, sizeof why);
        if (why[0]) {
            snprintf(g->stop, sizeof g->stop, "layer %u has %.140s: it and the layers after it run on the CPU", l, why);
            break;
        }
        VkDeviceSize lb = layer_layout(g, m, n, &g->L[n]);
        if (!o->gpu_layers && used + lb + kv_full > budget) {
            char b1[32], b2[32];
            snprintf(g->stop, sizeof g->stop, "layer %u: the device's free memory (%s) holds %u layers (with "
                     "activations, staging and one full-context KV cache: %s)", l, sw_fmt_bytes(budget, b1, sizeof b1), n,
                     sw_fmt_bytes(used, b2, sizeof b2));
            break;
        }
        used += lb + kv_full;
    }
    if (n == want && want < nl) snprintf(g->stop, sizeof g->stop, "layers %u-%u: --gpu-layers %u", in->layer_first + n,
                                         in->layer_last, o->gpu_layers);
    /* upload, streamed */
    struct upl u = { .g = g };
    float *rowf = NULL;
    if (n) {
        int64_t cmax = 0;
        for (uint32_t i = 0; i < n; i++) {
            struct mat_list ml;
            layer_mats(m, &m->layers[i], m->ld[in->layer_first + i].is_moe, NULL, &ml);
            for (int k = 0; k < ml.n; k++) cmax = SW_MAX(cmax, ml.w[k].cols);
        }
        rowf = malloc((size_t)cmax * sizeof(float));
        if (!rowf || sw__vk_buf_new(g, STAGING_BYTES, 1, &u.st)) {
            free(rowf);
            snprintf(msg, msg_len, "Vulkan device %s: no memory for the upload's staging buffer", g->name);
            sw__vk_free(g);
            return SW_ENOMEM;
        }
        if ((rc = upload_grids(g, &u)) || (g->mla && (rc = upload_head_ids(g, &u)))) {
            free(rowf);
            sw__vk_buf_free(g, &u.st);
            snprintf(msg, msg_len, "Vulkan device %s: the codebooks' upload failed", g->name);
            sw__vk_free(g);
            return rc;
        }
    }
    const uint64_t t0 = sw_time_us();
    uint64_t up_bytes = 0, last_log = t0;
    for (uint32_t i = 0; i < n; i++) {
        struct vk_layer *L = &g->L[i];
        VkDeviceSize lb = layer_layout(g, m, i, L);
        struct mat_list ml;
        layer_mats(m, &m->layers[i], L->moe, L, &ml);
        struct vk_mat **vm = ml.v;
        char pmsg[200] = "";
        rc = 0;
        for (int k = 0; k < ml.n && !rc; k++) {
            if (vm[k]->n_expert) { /* the experts, or deepseek2's heads: per slot and grouped */
                rc = pipe_need(g, (int)vm[k]->pipe + VKP_MMID_OFF, pmsg, sizeof pmsg);
                if (!rc) rc = pipe_need(g, (int)vm[k]->pipe + VKP_MMIDG_OFF, pmsg, sizeof pmsg);
                continue;
            }
            rc = mm_pipes(g, vm[k]->pipe, pmsg, sizeof pmsg);
        }
        if (!rc && g->L[i].shg.rows) rc = mm_pipes(g, VKP_MM_F32, pmsg, sizeof pmsg);
        if (!rc && g->mla) rc = pipe_need(g, VKP_ROPE_MLA, pmsg, sizeof pmsg);
        if (!rc && g->mla) rc = pipe_need(g, VKP_ATTN_MLA, pmsg, sizeof pmsg);
        if (!rc && L->moe && (g->gate_sigmoid || g->n_group || L->sel_b != VK_NONE))
            rc = pipe_need(g, VKP_MOE_ROUTE_SEL, pmsg, sizeof pmsg);
        if (rc) {
            snprintf(g->stop, sizeof g->stop, "layer %u: %.180s", in->layer_first + i, pmsg);
            n = i;
            break;
        }
        rc = sw__vk_buf_new(g, lb, 0, &g->L[i].buf);
        if (!rc) rc = upload_layer(g, &u, m, i, &g->L[i], rowf);
        if (rc) {
            char b1[32];
            snprintf(g->stop, sizeof g->stop, "layer %u: %s after %s of weights", in->layer_first + i,
                     rc == SW_ENOMEM ? "out of device memory" : "the upload failed", sw_fmt_bytes(up_bytes, b1, sizeof b1));
            sw__vk_buf_free(g, &g->L[i].buf);
            n = i;
            break;
        }
        up_bytes += lb;
        g->n_layers = i + 1;
        uint64_t now = sw_time_us();
        if (now - last_log > 1000000 || i + 1 == n) {
            char b1[32];
            sw_log(SW_LOG_INFO, "GPU", "uploaded layer %u (%u of %u on %s), %s, %.1f s", in->layer_first + i, i + 1, n,
                   g->name, sw_fmt_bytes(up_bytes, b1, sizeof b1), (double)(now - t0) / 1e6);
            last_log = now;
        }
    }
    /* the output head: when every layer is on the device and the stage gives logits */
    /* (gemma2's final soft-capping is applied by the stage to the rows it gets back) */
    if (n == nl && n && in->gives_logits && m->output.data) {
        struct vk_layer *O = &g->out;
        VkDeviceSize ob = align_up(mat_bytes(&m->output, &O->wo), g->align);
        O->attn_norm = ob;
        ob += (VkDeviceSize)in->n_embd * 4;
        const VkDeviceSize lg_bytes = (VkDeviceSize)LG_ROWS * in->n_vocab * 4;
        char b1[32];
        if (O->wo.size > g->max_range || lg_bytes > g->max_range) {
            snprintf(g->stop, sizeof g->stop, "the logits (%s) are computed on the CPU: the output matrix or its "
                     "rows exceed one buffer's range", m->output.name ? m->output.name : "output");
        } else if (!o->gpu_layers && used + ob + lg_bytes > budget) {
            snprintf(g->stop, sizeof g->stop, "the logits are computed on the CPU: no room for the output matrix (%s)",
                     sw_fmt_bytes(ob, b1, sizeof b1));
        } else {
            free(rowf);
            rowf = malloc((size_t)m->output.cols * sizeof(float));
            char pmsg[200] = "";
            rc = rowf ? mm_pipes(g, O->wo.pipe, pmsg, sizeof pmsg) : SW_ENOMEM;
            if (!rc) rc = sw__vk_buf_new(g, ob, 0, &O->buf);
            if (!rc) rc = sw__vk_buf_new(g, lg_bytes, 1, &g->lgio);
            if (!rc) {
                u.dst = O->buf.b;
                rc = upload_mat(&u, &m->output, &O->wo, 0, rowf);
                void *p = rc ? NULL : upl_take(&u, O->attn_norm, (size_t)in->n_embd * 4, &rc);
                if (p) memcpy(p, m->output_norm, (size_t)in->n_embd * 4);
                if (!rc) rc = upl_flush(&u);
            }
            if (rc) {
                sw__vk_buf_free(g, &O->buf);
                sw__vk_buf_free(g, &g->lgio);
                snprintf(g->stop, sizeof g->stop, "the logits are computed on the CPU: %.160s",
                         pmsg[0] ? pmsg : "out of device memory for the output matrix");
            } else {
                g->lg_rows = LG_ROWS;
                g->n_vocab = in->n_vocab;
                up_bytes += ob;
            }
        }
    }
    free(rowf);
    sw__vk_buf_free(g, &u.st);
    g->weight_bytes = up_bytes;
    if (n == 0 && !g->stop[0]) snprintf(g->stop, sizeof g->stop, "no layer fits");
    *out = g;
    return 0;
}

void sw__vk_free(struct sw__vk *g)
{
    if (!g) return;
    if (g->dev) {
        g->f.vkDeviceWaitIdle(g->dev);
        if (g->L)
            for (uint32_t i = 0; i < g->n_layers; i++) sw__vk_buf_free(g, &g->L[i].buf);
        if (g->kv)
            for (uint32_t i = 0; i < g->max_seqs; i++) sw__vk_buf_free(g, &g->kv[i].buf);
        sw__vk_buf_free(g, &g->scratch);
        sw__vk_buf_free(g, &g->grids);
        sw__vk_buf_free(g, &g->head_ids);
        sw__vk_buf_free(g, &g->io);
        sw__vk_buf_free(g, &g->out.buf);
        sw__vk_buf_free(g, &g->lgio);
        for (int i = 0; i < VKP_COUNT; i++)
            if (g->pipe[i]) g->f.vkDestroyPipeline(g->dev, g->pipe[i], NULL);
        if (g->pl) g->f.vkDestroyPipelineLayout(g->dev, g->pl, NULL);
        if (g->dsl) g->f.vkDestroyDescriptorSetLayout(g->dev, g->dsl, NULL);
        if (g->fence) g->f.vkDestroyFence(g->dev, g->fence, NULL);
        if (g->cpool) g->f.vkDestroyCommandPool(g->dev, g->cpool, NULL);
        g->f.vkDestroyDevice(g->dev, NULL);
    }
    if (g->inst && g->f.vkDestroyInstance) g->f.vkDestroyInstance(g->inst, NULL);
    if (g->lib) dlclose(g->lib);
    free(g->L);
    free(g->kv);
    free(g);
}


int sw_gpu_probe(const char *which, struct sw_gpu_probe *out, char *msg, size_t msg_len)
{
    if (!which || !out) return SW_EINVAL;
    memset(out, 0, sizeof *out);
    struct sw__vk *g = calloc(1, sizeof *g);
    if (!g) return SW_ENOMEM;
    int rc = load_loader(g, msg, msg_len);
    if (!rc) rc = open_device(g, which, msg, msg_len);
    if (!rc) {
        snprintf(out->name, sizeof out->name, "%.127s", g->name);
        out->mem_total = g->heap_bytes;
        out->mem_free = g->weight_bytes; /* open_device leaves the free budget there */
    }
    sw__vk_free(g);
    return rc;
}

uint32_t sw__vk_n_layers(const struct sw__vk *g) { return g ? g->n_layers : 0; }
const char *sw__vk_device(const struct sw__vk *g) { return g ? g->name : ""; }
uint64_t sw__vk_device_mem(const struct sw__vk *g) { return g ? g->heap_bytes : 0; }
uint64_t sw__vk_weight_bytes(const struct sw__vk *g) { return g ? g->weight_bytes : 0; }
const char *sw__vk_stop_reason(const struct sw__vk *g) { return g ? g->stop : ""; }

const char *sw__vk_converted(const struct sw__vk *g) { return g ? g->converted : ""; }
uint64_t sw__vk_kv_bytes(const struct sw__vk *g) { return g ? g->kv_bytes : 0; }
uint32_t sw__vk_logits_rows(const struct sw__vk *g) { return g ? g->lg_rows : 0; }
