/* backend_vk_mla.c — deepseek2 on the device, recorded into the step's command buffer:
 * the multi-head latent attention in the absorbed form the CPU path's attn_mla() computes
 * (stage.c), and the MoE routing by a selection score (sigmoid or softmax, DeepSeek V3's
 * selection bias, grouped top-k) as its route() does. The leading dense layers, the
 * experts and the shared experts are the ordinary dense and MoE paths.
 * Not for: device setup and uploads (backend_vk.c), the other layers (backend_vk_step.c). */
#include <string.h>

#include "infer/backend_vk_impl.h"

/* A step of at least this many tokens takes the grouped per-head matmuls (each head's k_b /
 * v_b rows decoded once per 8 tokens), as an MoE step with 4 slots per expert does. */
#define GROUP_MIN 4u

/* Whether a step of T tokens takes the grouped form (its tiles within a dispatch's z count). */
static int grouped(const struct sw__vk *g, uint32_t T)
{
    return T >= GROUP_MIN && g->n_head * ((T + 7u) / 8u) <= 65535u;
}

int sw__vk_mla_tiles(struct sw__vk *g, uint32_t T, VkBufferCopy *cp)
{
    if (!grouped(g, T)) return 0;
    /* slots t·H + h listed head by head; tile (h, j): head h's tokens 8j .. 8j + 7 */
    const uint32_t H = g->n_head, per = (T + 7u) / 8u, n_tiles = H * per;
    uint32_t *u = (uint32_t *)(void *)((uint8_t *)g->io.map + g->io_heads);
    const uint32_t list = 1 + 3 * n_tiles;
    u[0] = n_tiles;
    for (uint32_t h = 0; h < H; h++) {
        for (uint32_t j = 0; j < per; j++) {
            uint32_t *tl = u + 1 + 3 * (h * per + j);
            tl[0] = h;
            tl[1] = h * T + 8 * j;
            tl[2] = SW_MIN(8u, T - 8 * j);
        }
        for (uint32_t t = 0; t < T; t++) u[list + h * T + t] = t * H + h;
    }
    *cp = (VkBufferCopy){ g->io_heads, g->so.htab * 4, (VkDeviceSize)(list + H * T) * 4 };
    return 1;
}

/* y = W_k_b[h] · x or W_v_b[h] · x for every (token, head) slot t·H + h of T tokens. */
static void mm_heads(struct sw__vk *g, const struct vk_layer *L, const struct vk_mat *w, uint32_t x_off,
                     uint32_t x_stride, uint32_t y_off, uint32_t y_stride, uint32_t T)
{
    const uint32_t H = g->n_head;
    if (grouped(g, T)) {
        const uint32_t n_tiles = H * ((T + 7u) / 8u), ht = (uint32_t)g->so.htab;
        sw__vk_mm_idg(g, L, w, g->scratch.b, ht, ht + 1 + 3 * n_tiles, x_off, x_stride, 1, y_off, y_stride, T * H,
                      n_tiles);
    } else {
        sw__vk_mm_id(g, L, w, g->head_ids.b, 0, x_off, x_stride, 1, y_off, y_stride, T * H);
    }
}

/* x += Wo · heads, the heads computed from the normed x in xn (T tokens, n_seg runs):
 *   kv_c ‖ k_pe = Wkv_a · xn;  q = Wq_b · norm(Wq_a · xn) (or Wq · xn), per head q_nope ‖ q_pe
 *   query head h = (W_k_b[h] · q_nope) ‖ rope(q_pe)         (mm.comp -DMM_ID, slot = t·H + h;
 *                                                             -DMM_IDG in steps of 4+ tokens)
 *   cache row = norm(kv_c) ‖ rope(k_pe)                       (rope_mla.comp)
 *   a_h = softmax(scale · q_h · K) · K[.., 0..R)              (attn.comp -DNACC=16, V = K)
 *   o_h = W_v_b[h] · a_h                                      (mm.comp -DMM_ID)
 * so q·k = q_nope·W_k_b·kv_c + q_pe·k_pe, llama.cpp's and the CPU path's formulas. */
void sw__vk_attn_mla(struct sw__vk *g, const struct vk_layer *L, uint32_t li, const struct sw__vk_seg *sg,
                     uint32_t n_seg, uint32_t T)
{
    const uint32_t E = g->E, H = g->n_head, R = g->kv_lora, kd = g->hd, km = g->kmla, VH = g->v_head,
                   QR = g->q_lora;
    const uint32_t sx = (uint32_t)g->so.x, sxn = (uint32_t)g->so.xn, sq = (uint32_t)g->so.q, sk = (uint32_t)g->so.k,
                   satt = (uint32_t)g->so.att, smq = (uint32_t)g->so.mq, sqa = (uint32_t)g->so.qa,
                   smo = (uint32_t)g->so.mo;
    sw__vk_mm(g, L, &L->wk, VK_NONE, sxn, E, sk, kd, T, 0);
    if (QR) {
        sw__vk_mm(g, L, &L->qa, VK_NONE, sxn, E, sqa, QR, T, 0);
        sw__vk_cc_barrier(g);
        sw__vk_rmsnorm_n(g, L, L->q_a_norm, QR, sqa, sqa, T, 0);
        sw__vk_cc_barrier(g);
        sw__vk_mm(g, L, &L->wq, VK_NONE, sqa, QR, smq, H * km, T, 0);
    } else {
        sw__vk_mm(g, L, &L->wq, VK_NONE, sxn, E, smq, H * km, T, 0);
    }
    sw__vk_cc_barrier(g);
    /* the heads' latent queries (first R dims of each query head) and, beside them, the
     * roped q_pe, the normed latent and the cache store: disjoint writes */
    mm_heads(g, L, &L->kb, smq, km, sq, kd, T);
    const VkDeviceSize rope_off = g->io_rope;
    uint32_t t0 = 0;
    for (uint32_t i = 0; i < n_seg; t0 += sg[i].n, i++) {
        const struct vk_kv *kv = &g->kv[sg[i].slot];
        const VkDeviceSize per_layer = sw__vk_kv_layer_bytes(g, kv->cap);
        struct sw__vk_bind bs[4] = {
            { g->scratch.b, 0, 0 },
            { L->buf.b, L->kv_a_norm, (VkDeviceSize)R * 4 },
            { g->io.b, rope_off, 0 },
            { kv->buf.b, per_layer * li, per_layer },
        };
        struct {
            uint32_t t0, pos0, n_head, R, n_rot, neox, kd, kmla, nope, k_off, mq_off, q_off, cap;
            float eps;
        } pc = { t0, sg[i].pos, H, R, g->n_rot, g->neox, kd, km, g->qk_nope, sk, smq, sq, kv->cap, g->eps };
        sw__vk_dispatch(g, VKP_ROPE_MLA, bs, 4, &pc, sizeof pc, sg[i].n, 1, 1);
    }
    sw__vk_cc_barrier(g);
    t0 = 0;
    for (uint32_t i = 0; i < n_seg; t0 += sg[i].n, i++) {
        const struct vk_kv *kv = &g->kv[sg[i].slot];
        const VkDeviceSize per_layer = sw__vk_kv_layer_bytes(g, kv->cap);
        struct sw__vk_bind bs[4] = {
            { g->scratch.b, sq * 4ull, (VkDeviceSize)g->max_batch * g->q_dim * 4 },
            { kv->buf.b, per_layer * li, per_layer },
            { g->scratch.b, satt * 4ull, (VkDeviceSize)g->max_batch * g->q_dim * 4 },
            { g->scratch.b, 0, 16 }, /* no sinks: not read */
        };
        struct sw__vk_attn_pc pc = { t0, sg[i].pos, H, H, kd, kv->cap, 0, 0, g->attn_scale, 0, 0, 0 };
        sw__vk_dispatch(g, VKP_ATTN_MLA, bs, 4, &pc, sizeof pc, H, sg[i].n, 1);
    }
    sw__vk_cc_barrier(g);
    mm_heads(g, L, &L->vb, satt, kd, smo, VH, T);
    sw__vk_cc_barrier(g);
    sw__vk_mm(g, L, &L->wo, VK_NONE, smo, H * VH, sx, E, T, 1);
}

/* The router logits at so.router become the chosen experts (so.ids) and their weights
 * (so.wts), one invocation per token (moe_route_sel.comp). */
void sw__vk_route_sel(struct sw__vk *g, const struct vk_layer *L, uint32_t T)
{
    const int has_b = L->sel_b != VK_NONE;
    const struct sw__vk_bind bs[3] = {
        { g->scratch.b, 0, 0 },
        { g->scratch.b, 0, 0 },
        { L->buf.b, has_b ? L->sel_b : 0, has_b ? (VkDeviceSize)g->n_expert * 4 : 16 },
    };
    struct {
        uint32_t T, n, k, r_off, id_off, w_off, norm;
        float scale;
        uint32_t sigmoid, has_bias, n_group, n_group_used;
    } pc = { T, g->n_expert, g->n_used, (uint32_t)g->so.router, (uint32_t)g->so.ids, (uint32_t)g->so.wts,
             g->moe_norm_w, g->moe_scale, g->gate_sigmoid, (uint32_t)has_b, g->n_group, g->n_group_used };
    sw__vk_dispatch(g, VKP_MOE_ROUTE_SEL, bs, 3, &pc, sizeof pc, (T + 63u) / 64u, 1, 1);
}
