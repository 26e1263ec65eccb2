/* backend_vk_step.c — one step of the device's layers as one command buffer: x and the
 * rope table(s) in, then per layer RMSNorm, q/k/v matmuls (+ biases), per-head q/k
 * RMSNorm (qwen3, gemma3), RoPE with the k/v store into each sequence's f16 cache,
 * attention (sliding window and soft-capping for gemma, sinks for gpt-oss), the output matmul added into the
 * residual (through the post-attention norm for gemma), RMSNorm, gate/up matmuls,
 * SwiGLU/GeGLU, the down matmul added into the residual (through the post-FFN norm for
 * gemma); x out. A barrier between dependent dispatches, one submit, one fence wait.
 * Not for: device setup and uploads (backend_vk.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/backend_vk_impl.h"

#define FENCE_TIMEOUT_NS (120ull * 1000000000ull)
#define KV_STEP 256u

void sw__vk_dispatch(struct sw__vk *g, uint32_t pipe, const struct sw__vk_bind *bs, uint32_t nb, const void *pc,
                     uint32_t pc_len, uint32_t x, uint32_t y, uint32_t z)
{
    VkDescriptorBufferInfo bi[5];
    VkWriteDescriptorSet w[5];
    for (uint32_t i = 0; i < nb; i++) {
        bi[i] = (VkDescriptorBufferInfo){ bs[i].b, bs[i].off, bs[i].range ? bs[i].range : VK_WHOLE_SIZE };
        w[i] = (VkWriteDescriptorSet){ .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, .dstBinding = i,
                                       .descriptorCount = 1, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                       .pBufferInfo = &bi[i] };
    }
    g->f.vkCmdBindPipeline(g->cb, VK_PIPELINE_BIND_POINT_COMPUTE, g->pipe[pipe]);
    g->f.vkCmdPushDescriptorSetKHR(g->cb, VK_PIPELINE_BIND_POINT_COMPUTE, g->pl, 0, nb, w);
    g->f.vkCmdPushConstants(g->cb, g->pl, VK_SHADER_STAGE_COMPUTE_BIT, 0, pc_len, pc);
    g->f.vkCmdDispatch(g->cb, x, y, z);
}

static void barrier(struct sw__vk *g, VkPipelineStageFlags src, VkAccessFlags sa, VkPipelineStageFlags dst,
                    VkAccessFlags da)
{
    VkMemoryBarrier mb = { .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER, .srcAccessMask = sa, .dstAccessMask = da };
    g->f.vkCmdPipelineBarrier(g->cb, src, dst, 0, 1, &mb, 0, NULL, 0, NULL);
}

void sw__vk_cc_barrier(struct sw__vk *g)
{
    barrier(g, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
            VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
}

/* y (scratch, offset y_off floats) (+)= W · x (scratch x_off), T tokens. */
void sw__vk_mm(struct sw__vk *g, const struct vk_layer *L, const struct vk_mat *w, VkDeviceSize bias, uint32_t x_off,
               uint32_t x_stride, uint32_t y_off, uint32_t y_stride, uint32_t T, int accumulate)
{
    struct sw__vk_bind bs[5] = {
        { L->buf.b, w->off, w->size },
        { g->scratch.b, 0, 0 },
        { g->scratch.b, 0, 0 },
        { L->buf.b, bias == VK_NONE ? 0 : bias, bias == VK_NONE ? 16 : (VkDeviceSize)w->rows * 4 },
        { g->grids.b, 0, 0 },
    };
    uint32_t pc[10] = { w->rows, w->cols, T, x_off, y_off, x_stride, y_stride,
                        (bias != VK_NONE ? 1u : 0u) | (accumulate ? 2u : 0u), w->row_words, 0 };
    sw__vk_mm_record(g, w->pipe, bs, pc, w->rows, T);
}

void sw__vk_mm_record(struct sw__vk *g, uint32_t pipe, const struct sw__vk_bind *bs, uint32_t pc[10], uint32_t rows,
                      uint32_t T)
{
    if (T >= MMT_MIN_T) { /* prefill: a workgroup per MMT_ROWS x MMT_TOKENS tile */
        const uint32_t n_wg = (rows + MMT_ROWS - 1) / MMT_ROWS;
        pc[9] = MMT_ROWS;
        sw__vk_dispatch(g, pipe + VKP_MMT_OFF, bs, 5, pc, 10 * sizeof *pc, SW_MIN(n_wg, 32768u),
                        (n_wg + 32767u) / 32768u, (T + MMT_TOKENS - 1) / MMT_TOKENS);
        return;
    }
    const uint32_t rpw = g->rows_per_wg, n_wg = (rows + rpw - 1) / rpw;
    pc[9] = rpw;
    sw__vk_dispatch(g, pipe + (T == 1 ? VKP_MM1_OFF : 0), bs, 5, pc, 10 * sizeof *pc, SW_MIN(n_wg, 32768u),
                    (n_wg + 32767u) / 32768u, (T + 7u) / 8u);
}

/* rows x n floats at x_off, normed into y_off (y += with add; x_off == y_off: in place,
 * without add), the weight at w_off in L's buffer (n floats). */
void sw__vk_rmsnorm_n(struct sw__vk *g, const struct vk_layer *L, VkDeviceSize w_off, uint32_t n, uint32_t x_off,
                      uint32_t y_off, uint32_t rows, uint32_t add)
{
    struct sw__vk_bind bs[3] = { { g->scratch.b, 0, 0 }, { L->buf.b, w_off, (VkDeviceSize)n * 4 }, { g->scratch.b, 0, 0 } };
    for (uint32_t r0 = 0; r0 < rows; r0 += 65535u) { /* the dispatch's x count is bounded */
        struct {
            uint32_t n, x_off, y_off, w_off;
            float eps;
            uint32_t add;
        } pc = { n, x_off + r0 * n, y_off + r0 * n, 0, g->eps, add };
        sw__vk_dispatch(g, VKP_RMSNORM, bs, 3, &pc, sizeof pc, SW_MIN(rows - r0, 65535u), 1, 1);
    }
}

/* g[i] = act(g[i]) * u[i], n elements at scratch offsets off_g, off_u (floats). */
void sw__vk_glu(struct sw__vk *g, uint32_t off_g, uint32_t off_u, uint32_t n)
{
    struct sw__vk_bind bs[2] = { { g->scratch.b, off_g * 4ull, (VkDeviceSize)n * 4 },
                          { g->scratch.b, off_u * 4ull, (VkDeviceSize)n * 4 } };
    uint32_t pc[2] = { n, g->act };
    const uint32_t groups = (n + 255u) / 256u;
    sw__vk_dispatch(g, VKP_GLU, bs, 2, pc, sizeof pc, SW_MIN(groups, 65535u), (groups + 65534u) / 65535u, 1);
}

static void rmsnorm(struct sw__vk *g, const struct vk_layer *L, VkDeviceSize w_off, uint32_t x_off, uint32_t y_off,
                    uint32_t T)
{
    sw__vk_rmsnorm_n(g, L, w_off, g->E, x_off, y_off, T, 0);
}

/* Makes room for `need` positions in a slot's cache: a larger buffer, the old content
 * copied into it (per layer and head: the strides change). The old buffer is returned in
 * *old to be freed after the step's fence. */
static int kv_grow(struct sw__vk *g, uint32_t slot, uint32_t need, struct vk_buf *old, uint32_t *old_cap)
{
    struct vk_kv *kv = &g->kv[slot];
    memset(old, 0, sizeof *old);
    *old_cap = 0;
    if (kv->cap >= need) return 0;
    uint32_t cap = SW_MAX(kv->cap * 2, (need + KV_STEP - 1) / KV_STEP * KV_STEP);
    if (cap > g->n_ctx) cap = SW_MAX(need, g->n_ctx);
    const VkDeviceSize per_layer = sw__vk_kv_layer_bytes(g, cap); /* K (and V), f16 */
    if (per_layer > g->max_range) return SW_ENOMEM;
    struct vk_buf nb;
    int rc = sw__vk_buf_new(g, per_layer * g->n_layers, 0, &nb);
    if (rc) return rc;
    if (kv->cap) { /* copy every (layer, K/V, head) run of the old positions */
        const VkDeviceSize run_old = 2ull * g->hd * kv->cap, run_new = 2ull * g->hd * cap;
        const uint32_t n_runs = g->n_layers * g->kv_parts * g->n_head_kv;
        VkBufferCopy *reg = malloc(n_runs * sizeof *reg);
        if (!reg) {
            sw__vk_buf_free(g, &nb);
            return SW_ENOMEM;
        }
        for (uint32_t i = 0; i < n_runs; i++)
            reg[i] = (VkBufferCopy){ .srcOffset = i * run_old, .dstOffset = i * run_new, .size = run_old };
        g->f.vkCmdCopyBuffer(g->cb, kv->buf.b, nb.b, n_runs, reg);
        free(reg);
    }
    *old = kv->buf;
    *old_cap = kv->cap;
    g->kv_bytes += per_layer * g->n_layers - sw__vk_kv_layer_bytes(g, kv->cap) * g->n_layers;
    kv->buf = nb;
    kv->cap = cap;
    return 0;
}

void sw__vk_seq_free(struct sw__vk *g, uint32_t slot)
{
    if (!g || slot >= g->max_seqs || !g->kv[slot].cap) return;
    g->kv_bytes -= sw__vk_kv_layer_bytes(g, g->kv[slot].cap) * g->n_layers;
    if (!g->lost) g->f.vkDeviceWaitIdle(g->dev);
    sw__vk_buf_free(g, &g->kv[slot].buf);
    g->kv[slot].cap = 0;
}

/* dst's cache := the first n positions of src's (each (layer, K/V, head) run's prefix),
 * dst grown as needed; one submit, one fence wait. */
int sw__vk_seq_copy(struct sw__vk *g, uint32_t dst, uint32_t src, uint32_t n, char *err, size_t err_len)
{
    if (g->lost) {
        snprintf(err, err_len, "the GPU (%s) was lost", g->name);
        return SW_ESTATE;
    }
    if (dst >= g->max_seqs || src >= g->max_seqs || dst == src || n > g->kv[src].cap) {
        snprintf(err, err_len, "no %u positions of GPU cache slot %u to copy", n, src);
        return SW_EINVAL;
    }
    if (!n) return 0;
    const VkCommandBufferBeginInfo cbi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                           .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT };
    const uint32_t n_runs = g->n_layers * g->kv_parts * g->n_head_kv;
    VkBufferCopy *reg = malloc(n_runs * sizeof *reg);
    if (!reg) {
        snprintf(err, err_len, "out of memory");
        return SW_ENOMEM;
    }
    g->f.vkResetCommandBuffer(g->cb, 0);
    g->f.vkBeginCommandBuffer(g->cb, &cbi);
    struct vk_buf old;
    uint32_t old_cap;
    int rc = kv_grow(g, dst, n, &old, &old_cap); /* on failure: nothing changed */
    if (rc) {
        g->f.vkEndCommandBuffer(g->cb);
        free(reg);
        snprintf(err, err_len, "out of GPU memory for a cache of %u positions on %s", n, g->name);
        return SW_ENOMEM;
    }
    barrier(g, VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
            VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_SHADER_WRITE_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT,
            VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT);
    const VkDeviceSize run_s = 2ull * g->hd * g->kv[src].cap, run_d = 2ull * g->hd * g->kv[dst].cap;
    for (uint32_t i = 0; i < n_runs; i++)
        reg[i] = (VkBufferCopy){ .srcOffset = i * run_s, .dstOffset = i * run_d, .size = 2ull * g->hd * n };
    g->f.vkCmdCopyBuffer(g->cb, g->kv[src].buf.b, g->kv[dst].buf.b, n_runs, reg);
    free(reg);
    barrier(g, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
            VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
    g->f.vkEndCommandBuffer(g->cb);
    VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &g->cb };
    g->f.vkResetFences(g->dev, 1, &g->fence);
    VkResult r = g->f.vkQueueSubmit(g->queue, 1, &si, g->fence);
    if (r == VK_SUCCESS) r = g->f.vkWaitForFences(g->dev, 1, &g->fence, VK_TRUE, FENCE_TIMEOUT_NS);
    if (r != VK_SUCCESS) {
        g->lost = 1;
        snprintf(err, err_len, "the GPU (%s) failed a cache copy: %s", g->name,
                 r == VK_ERROR_DEVICE_LOST ? "device lost" : r == VK_TIMEOUT ? "no answer in 120 s" : "submit failed");
        return SW_ESTATE;
    }
    sw__vk_buf_free(g, &old);
    return 0;
}

#define MAX_GROW 64u

/* The output head over lg's rows: gathered into xn, RMSNorm in place, the output matmul
 * straight into the host-visible logits buffer. */
static void logits(struct sw__vk *g, const struct sw__vk_logits *lg)
{
    const uint32_t E = g->E;
    VkBufferCopy reg[LG_ROWS];
    for (uint32_t i = 0; i < lg->n; i++)
        reg[i] = (VkBufferCopy){ (g->so.x + (VkDeviceSize)lg->row[i] * E) * 4, (g->so.xn + (VkDeviceSize)i * E) * 4,
                                 (VkDeviceSize)E * 4 };
    barrier(g, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT,
            VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT);
    g->f.vkCmdCopyBuffer(g->cb, g->scratch.b, g->scratch.b, lg->n, reg);
    barrier(g, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
            VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
    const uint32_t sxn = (uint32_t)g->so.xn;
    rmsnorm(g, &g->out, g->out.attn_norm, sxn, sxn, lg->n);
    sw__vk_cc_barrier(g);
    const struct vk_mat *w = &g->out.wo;
    struct sw__vk_bind bs[5] = { { g->out.buf.b, w->off, w->size }, { g->scratch.b, 0, 0 }, { g->lgio.b, 0, 0 },
                                 { g->out.buf.b, 0, 16 }, { g->grids.b, 0, 0 } };
    uint32_t pc[10] = { w->rows, w->cols, lg->n, sxn, 0, E, w->rows, 0, w->row_words, 0 };
    sw__vk_mm_record(g, w->pipe, bs, pc, w->rows, lg->n);
}

int sw__vk_step(struct sw__vk *g, float *x, uint32_t T, const float *rope, const float *rope_swa,
                const struct sw__vk_seg *sg, uint32_t n_seg, const struct sw__vk_logits *lg, char *err,
                size_t err_len)
{
    if (g->io_rope_swa != VK_NONE && !rope_swa) {
        snprintf(err, err_len, "GPU step without the sliding-window layers' RoPE table");
        return SW_EINVAL;
    }
    if (lg && lg->n > g->lg_rows) {
        snprintf(err, err_len, "GPU step asked for %u logits rows (at most %u)", lg->n, g->lg_rows);
        return SW_EINVAL;
    }
    if (g->lost) {
        snprintf(err, err_len, "the GPU (%s) was lost earlier: this stage computes on the CPU now", g->name);
        return SW_ESTATE;
    }
    if (T > g->max_batch || n_seg > MAX_GROW) {
        snprintf(err, err_len, "GPU step of %u tokens in %u runs exceeds %u / %u", T, n_seg, g->max_batch, MAX_GROW);
        return SW_EINVAL;
    }
    VkCommandBufferBeginInfo cbi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                     .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT };
    g->f.vkResetCommandBuffer(g->cb, 0);
    g->f.vkBeginCommandBuffer(g->cb, &cbi);
    /* caches first (a grown cache's copy is the first command) */
    struct vk_buf old[MAX_GROW];
    uint32_t old_cap[MAX_GROW];
    int rc = 0;
    for (uint32_t i = 0; i < n_seg; i++) {
        memset(&old[i], 0, sizeof old[i]);
        if (!rc && sg[i].slot < g->max_seqs) rc = kv_grow(g, sg[i].slot, sg[i].pos + sg[i].n, &old[i], &old_cap[i]);
        else if (!rc) rc = SW_EINVAL;
    }
    if (rc) {
        g->f.vkEndCommandBuffer(g->cb);
        for (uint32_t i = 0; i < n_seg; i++) sw__vk_buf_free(g, &old[i]); /* nothing was submitted */
        snprintf(err, err_len, "out of GPU memory for the KV cache of %u positions on %s", sg[0].pos + sg[0].n, g->name);
        return SW_ENOMEM;
    }
    const uint32_t E = g->E, qd = g->q_dim, kvd = g->kv_dim;
    memcpy(g->io.map, x, (size_t)T * E * sizeof(float));
    memcpy((uint8_t *)g->io.map + g->io_rope, rope, (size_t)T * g->n_rot * sizeof(float));
    if (g->io_rope_swa != VK_NONE)
        memcpy((uint8_t *)g->io.map + g->io_rope_swa, rope_swa, (size_t)T * g->n_rot * sizeof(float));
    VkBufferCopy in_cp[2] = { { 0, g->so.x * 4, (VkDeviceSize)T * E * 4 } };
    const uint32_t n_cp = 1 + (g->mla ? (uint32_t)sw__vk_mla_tiles(g, T, &in_cp[1]) : 0); /* deepseek2's head tiles */
    barrier(g, VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
            VK_ACCESS_HOST_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT,
            VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT);
    g->f.vkCmdCopyBuffer(g->cb, g->io.b, g->scratch.b, n_cp, in_cp);
    barrier(g, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
            VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
    const uint32_t sx = (uint32_t)g->so.x, sxn = (uint32_t)g->so.xn, sq = (uint32_t)g->so.q, sk = (uint32_t)g->so.k,
                   sv = (uint32_t)g->so.v, satt = (uint32_t)g->so.att, sgate = (uint32_t)g->so.gate,
                   sup = (uint32_t)g->so.up;
    for (uint32_t li = 0; li < g->n_layers; li++) {
        const struct vk_layer *L = &g->L[li];
        rmsnorm(g, L, L->attn_norm, sx, sxn, T);
        sw__vk_cc_barrier(g);
        if (g->mla) { /* deepseek2: its own attention (backend_vk_mla.c), then the FFN */
            sw__vk_attn_mla(g, L, li, sg, n_seg, T);
            goto ffn;
        }
        sw__vk_mm(g, L, &L->wq, L->bq, sxn, E, sq, qd, T, 0);
        sw__vk_mm(g, L, &L->wk, L->bk, sxn, E, sk, kvd, T, 0);
        sw__vk_mm(g, L, &L->wv, L->bv, sxn, E, sv, kvd, T, 0);
        sw__vk_cc_barrier(g);
        if (L->q_norm != VK_NONE) { /* per-head RMSNorm of q and k, in place, before RoPE */
            sw__vk_rmsnorm_n(g, L, L->q_norm, g->hd, sq, sq, T * g->n_head, 0);
            sw__vk_rmsnorm_n(g, L, L->k_norm, g->hd, sk, sk, T * g->n_head_kv, 0);
            sw__vk_cc_barrier(g);
        }
        uint32_t t0 = 0;
        for (uint32_t i = 0; i < n_seg; t0 += sg[i].n, i++) {
            const struct vk_kv *kv = &g->kv[sg[i].slot];
            const VkDeviceSize per_layer = 4ull * kvd * kv->cap;
            struct sw__vk_bind bs[5] = {
                { g->scratch.b, sq * 4ull, (VkDeviceSize)g->max_batch * qd * 4 },
                { g->scratch.b, sk * 4ull, (VkDeviceSize)g->max_batch * kvd * 4 },
                { g->scratch.b, sv * 4ull, (VkDeviceSize)g->max_batch * kvd * 4 },
                { g->io.b, L->swa_rope ? g->io_rope_swa : g->io_rope, 0 },
                { kv->buf.b, per_layer * li, per_layer },
            };
            uint32_t pc[10] = { t0, sg[i].pos, g->n_head, g->n_head_kv, g->hd, g->n_rot, g->neox, kv->cap, 0,
                                (uint32_t)(per_layer / 8) };
            sw__vk_dispatch(g, VKP_ROPE_KV, bs, 5, pc, sizeof pc, sg[i].n, 1, 1);
        }
        sw__vk_cc_barrier(g);
        t0 = 0;
        for (uint32_t i = 0; i < n_seg; t0 += sg[i].n, i++) {
            const struct vk_kv *kv = &g->kv[sg[i].slot];
            const VkDeviceSize per_layer = 4ull * kvd * kv->cap;
            const int sinks = L->sinks != VK_NONE; /* gpt-oss; else binding 3 is not read */
            struct sw__vk_bind bs[4] = {
                { g->scratch.b, sq * 4ull, (VkDeviceSize)g->max_batch * qd * 4 },
                { kv->buf.b, per_layer * li, per_layer },
                { g->scratch.b, satt * 4ull, (VkDeviceSize)g->max_batch * qd * 4 },
                { sinks ? L->buf.b : g->scratch.b, sinks ? L->sinks : 0, sinks ? (VkDeviceSize)g->n_head * 4 : 16 },
            };
            struct sw__vk_attn_pc pc = { t0, sg[i].pos, g->n_head, g->n_head / g->n_head_kv, g->hd, kv->cap, 0,
                                         (uint32_t)(per_layer / 8), g->attn_scale, L->window, g->attn_softcap,
                                         (uint32_t)sinks };
            sw__vk_dispatch(g, VKP_ATTN, bs, 4, &pc, sizeof pc, g->n_head, sg[i].n, 1);
        }
        sw__vk_cc_barrier(g);
        if (L->attn_post == VK_NONE) {
            sw__vk_mm(g, L, &L->wo, L->bo, satt, qd, sx, E, T, 1);
        } else { /* gemma: x += post_norm(Wo · att) */
            sw__vk_mm(g, L, &L->wo, L->bo, satt, qd, sxn, E, T, 0);
            sw__vk_cc_barrier(g);
            sw__vk_rmsnorm_n(g, L, L->attn_post, E, sxn, sx, T, 1);
        }
    ffn:
        sw__vk_cc_barrier(g);
        rmsnorm(g, L, L->ffn_norm, sx, sxn, T);
        sw__vk_cc_barrier(g);
        if (L->moe) {
            sw__vk_ffn_moe(g, L, T);
            sw__vk_cc_barrier(g);
            continue;
        }
        sw__vk_mm(g, L, &L->wg, VK_NONE, sxn, E, sgate, L->wg.rows, T, 0);
        sw__vk_mm(g, L, &L->wu, VK_NONE, sxn, E, sup, L->wu.rows, T, 0);
        sw__vk_cc_barrier(g);
        sw__vk_glu(g, sgate, sup, T * L->wg.rows);
        sw__vk_cc_barrier(g);
        if (L->ffn_post == VK_NONE) {
            sw__vk_mm(g, L, &L->wd, VK_NONE, sgate, L->wd.cols, sx, E, T, 1);
        } else { /* gemma: x += post_norm(Wdown · h) */
            sw__vk_mm(g, L, &L->wd, VK_NONE, sgate, L->wd.cols, sxn, E, T, 0);
            sw__vk_cc_barrier(g);
            sw__vk_rmsnorm_n(g, L, L->ffn_post, E, sxn, sx, T, 1);
        }
        sw__vk_cc_barrier(g);
    }
    if (lg && lg->n) logits(g, lg);
    barrier(g, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT,
            VK_ACCESS_TRANSFER_READ_BIT);
    VkBufferCopy out_cp = { g->so.x * 4, 0, (VkDeviceSize)T * E * 4 };
    g->f.vkCmdCopyBuffer(g->cb, g->scratch.b, g->io.b, 1, &out_cp);
    barrier(g, VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
            VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_SHADER_WRITE_BIT, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
    g->f.vkEndCommandBuffer(g->cb);
    VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &g->cb };
    g->f.vkResetFences(g->dev, 1, &g->fence);
    VkResult r = g->f.vkQueueSubmit(g->queue, 1, &si, g->fence);
    if (r == VK_SUCCESS) r = g->f.vkWaitForFences(g->dev, 1, &g->fence, VK_TRUE, FENCE_TIMEOUT_NS);
    g->steps++;
    if (r == VK_SUCCESS && g->lose_after && g->steps > g->lose_after) r = VK_ERROR_DEVICE_LOST; /* injected */
    if (r != VK_SUCCESS) {
        g->lost = 1;
        snprintf(err, err_len, "the GPU (%s) failed a step: %s", g->name,
                 r == VK_ERROR_DEVICE_LOST ? "device lost" : r == VK_TIMEOUT ? "no answer in 120 s" : "submit failed");
        return SW_ESTATE;
    }
    for (uint32_t i = 0; i < n_seg; i++) sw__vk_buf_free(g, &old[i]);
    memcpy(x, g->io.map, (size_t)T * E * sizeof(float));
    for (uint32_t i = 0; lg && i < lg->n; i++)
        memcpy(lg->dst[i], (const float *)g->lgio.map + (size_t)i * g->n_vocab, (size_t)g->n_vocab * sizeof(float));
    return 0;
}
