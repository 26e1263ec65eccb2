/* backend_vk_moe.c — a mixture-of-experts FFN on the device, recorded into the step's
 * command buffer (backend_vk_step.c calls it for an MoE layer): the router matmul, the
 * routing (moe_route.comp: softmax, top-k with the lower index first on ties, renormalised
 * as the CPU path's route(); deepseek2's sigmoid / biased / grouped choice is
 * moe_route_sel.comp, recorded by backend_vk_mla.c), the chosen experts' gate/up and down
 * matmuls with the expert-indexed shader (mm.comp -DMM_ID: one (token, expert) slot per workgroup, the
 * expert read from the ids the router wrote, so nothing returns to the host mid-step; for
 * steps of several tokens -DMM_IDG over moe_group.comp's tiles of up to 8 slots of one
 * expert, decoding its rows once per tile),
 * qwen2moe's shared expert with its sigmoid gate, gpt-oss's router and expert biases
 * (moe_bias.comp) and its softmax over the chosen logits, and the weighted sum into the residual
 * (moe_sum.comp, in ascending expert order as the CPU adds them).
 * Not for: device setup and uploads (backend_vk.c), the dense layers (backend_vk_step.c). */
#include "infer/backend_vk_impl.h"

#define NONE_OFF 0xFFFFFFFFu

/* The bindings of an expert-indexed matmul over w (the expert stack; x, y and the slot
 * tables in scratch; the codebooks); returns its workgroups per expert's rows. */
static uint32_t expert_binds(struct sw__vk *g, const struct vk_layer *L, const struct vk_mat *w,
                             struct sw__vk_bind bs[5])
{
    bs[0] = (struct sw__vk_bind){ L->buf.b, w->off, w->size };
    bs[1] = bs[2] = bs[3] = (struct sw__vk_bind){ g->scratch.b, 0, 0 };
    bs[4] = (struct sw__vk_bind){ g->grids.b, 0, 0 };
    const uint32_t rows = w->rows / w->n_expert, rpw = g->rows_per_wg;
    return (rows + rpw - 1) / rpw;
}

/* y (slot rows, y_stride floats apart) = W_e · x for each of S slots (a token's chosen
 * experts; deepseek2's heads), e the slot's expert in ids_b; x row = slot / xdiv. */
void sw__vk_mm_id(struct sw__vk *g, const struct vk_layer *L, const struct vk_mat *w, VkBuffer ids_b, uint32_t ids_off,
                  uint32_t x_off, uint32_t x_stride, uint32_t xdiv, uint32_t y_off, uint32_t y_stride, uint32_t S)
{
    struct sw__vk_bind bs[5];
    const uint32_t rows = w->rows / w->n_expert, rpw = g->rows_per_wg, n_wg = expert_binds(g, L, w, bs);
    bs[3].b = ids_b;
    for (uint32_t s0 = 0; s0 < S; s0 += 65535u) { /* the dispatch's z count is bounded */
        uint32_t pc[14] = { rows, w->cols, S, x_off, y_off, x_stride, y_stride, 0, w->row_words, rpw,
                            ids_off, xdiv, w->n_expert, s0 };
        sw__vk_dispatch(g, w->pipe + VKP_MMID_OFF, bs, 5, pc, sizeof pc, SW_MIN(n_wg, 32768u),
                        (n_wg + 32767u) / 32768u, SW_MIN(S - s0, 65535u));
    }
}

/* The same over moe_group.comp's tiles (steps of several tokens): a workgroup per tile of up
 * to 8 slots of one expert, whose rows it decodes once for them all. */
void sw__vk_mm_idg(struct sw__vk *g, const struct vk_layer *L, const struct vk_mat *w, VkBuffer ids_b,
                   uint32_t tiles_off, uint32_t list_off, uint32_t x_off, uint32_t x_stride, uint32_t xdiv,
                   uint32_t y_off, uint32_t y_stride, uint32_t S, uint32_t n_tiles)
{
    struct sw__vk_bind bs[5];
    const uint32_t rows = w->rows / w->n_expert, rpw = g->rows_per_wg, n_wg = expert_binds(g, L, w, bs);
    bs[3].b = ids_b;
    uint32_t pc[14] = { rows, w->cols, S, x_off, y_off, x_stride, y_stride, 0, w->row_words, rpw,
                        tiles_off, xdiv, w->n_expert, list_off };
    sw__vk_dispatch(g, w->pipe + VKP_MMIDG_OFF, bs, 5, pc, sizeof pc, SW_MIN(n_wg, 32768u), (n_wg + 32767u) / 32768u,
                    n_tiles);
}

/* y (S slot rows of n floats at y_off) += the slot's expert's row of the [n_expert][n] bias
 * table at b_off in L's buffer (gpt-oss). */
static void expert_bias(struct sw__vk *g, const struct vk_layer *L, VkDeviceSize b_off, uint32_t y_off, uint32_t n,
                        uint32_t S)
{
    const struct sw__vk_bind bs[3] = { { g->scratch.b, 0, 0 }, { g->scratch.b, 0, 0 },
                                       { L->buf.b, b_off, (VkDeviceSize)g->n_expert * n * 4 } };
    const uint32_t pc[6] = { S, n, y_off, n, (uint32_t)g->so.ids, g->n_expert };
    const uint32_t groups = (S * n + 255u) / 256u;
    sw__vk_dispatch(g, VKP_MOE_BIAS, bs, 3, pc, sizeof pc, SW_MIN(groups, 65535u), (groups + 65534u) / 65535u, 1);
}

void sw__vk_ffn_moe(struct sw__vk *g, const struct vk_layer *L, uint32_t T)
{
    const uint32_t E = g->E, NX = g->n_expert, K = g->n_used, S = T * K, FX = L->ge.rows / L->ge.n_expert;
    const uint32_t stl = (uint32_t)g->so.tiles, sls = (uint32_t)g->so.list; /* moe_group.comp's */
    const uint32_t sx = (uint32_t)g->so.x, sxn = (uint32_t)g->so.xn, sgate = (uint32_t)g->so.gate,
                   sup = (uint32_t)g->so.up, ssh = (uint32_t)g->so.sh, sshg = (uint32_t)g->so.shg;
    const struct sw__vk_bind scr[2] = { { g->scratch.b, 0, 0 }, { g->scratch.b, 0, 0 } };
    /* the shared expert first: its down matmul frees gate/up for the experts */
    if (L->gsh.rows) {
        const uint32_t FS = L->gsh.rows;
        sw__vk_mm(g, L, &L->gsh, VK_NONE, sxn, E, sgate, FS, T, 0);
        sw__vk_mm(g, L, &L->ush, VK_NONE, sxn, E, sup, FS, T, 0);
        if (L->shg.rows) sw__vk_mm(g, L, &L->shg, VK_NONE, sxn, E, sshg, 1, T, 0);
        sw__vk_cc_barrier(g);
        sw__vk_glu(g, sgate, sup, T * FS);
        sw__vk_cc_barrier(g);
        sw__vk_mm(g, L, &L->dsh, VK_NONE, sgate, FS, ssh, E, T, 0);
    }
    /* router logits, then the choice: ids and weights stay in device memory */
    sw__vk_mm(g, L, &L->router, L->router_b, sxn, E, (uint32_t)g->so.router, NX, T, 0);
    sw__vk_cc_barrier(g);
    if (g->gate_sigmoid || g->n_group > 1 || L->sel_b != VK_NONE) { /* deepseek2 */
        sw__vk_route_sel(g, L, T);
    } else {
        struct {
            uint32_t T, n, k, r_off, id_off, w_off, norm;
            float scale;
            uint32_t mode;
        } pc = { T, NX, K, (uint32_t)g->so.router, (uint32_t)g->so.ids, (uint32_t)g->so.wts, g->moe_norm_w,
                 g->moe_scale, g->route_mode };
        sw__vk_dispatch(g, VKP_MOE_ROUTE, scr, 2, &pc, sizeof pc, (T + 63u) / 64u, 1, 1);
    }
    sw__vk_cc_barrier(g);
    /* a step with at least 4 slots per expert on average: the slots grouped by expert into
     * tiles of up to 8 (at most one partial tile per expert), so the step decodes an
     * expert's rows once per tile, not once per slot. Below that the tiles are mostly
     * empty: on lavapipe (CPU time of a 32-token prefill, qwen3-30b-a3b's 128 experts, 2
     * slots each) grouping cost 7-13% more; at 50-100 slots per expert (200-token prompts
     * of the nano presets) it saved 10-23%. */
    const uint32_t n_tiles = (S + 7u) / 8u + SW_MIN(NX, S);
    const int grouped = T > 1 && S >= 4u * NX && n_tiles <= 65535u;
    if (grouped) {
        const struct {
            uint32_t S, n, tb, id_off, cnt_off, tile_off, list_off;
        } pc = { S, NX, 8, (uint32_t)g->so.ids, (uint32_t)g->so.cnt, (uint32_t)g->so.tiles, (uint32_t)g->so.list };
        sw__vk_dispatch(g, VKP_MOE_GROUP, scr, 1, &pc, sizeof pc, 1, 1, 1);
        sw__vk_cc_barrier(g);
    }
    /* the chosen experts: gate/up per slot (the token's normed x), SwiGLU, down per slot */
    if (grouped) {
        sw__vk_mm_idg(g, L, &L->ge, g->scratch.b, stl, sls, sxn, E, K, sgate, FX, S, n_tiles);
        sw__vk_mm_idg(g, L, &L->ue, g->scratch.b, stl, sls, sxn, E, K, sup, FX, S, n_tiles);
    } else {
        sw__vk_mm_id(g, L, &L->ge, g->scratch.b, (uint32_t)g->so.ids, sxn, E, K, sgate, FX, S);
        sw__vk_mm_id(g, L, &L->ue, g->scratch.b, (uint32_t)g->so.ids, sxn, E, K, sup, FX, S);
    }
    sw__vk_cc_barrier(g);
    if (L->ge_b != VK_NONE) { /* gpt-oss: each slot's expert's gate and up biases */
        expert_bias(g, L, L->ge_b, sgate, FX, S);
        expert_bias(g, L, L->ue_b, sup, FX, S);
        sw__vk_cc_barrier(g);
    }
    sw__vk_glu(g, sgate, sup, S * FX);
    sw__vk_cc_barrier(g);
    if (grouped) sw__vk_mm_idg(g, L, &L->de, g->scratch.b, stl, sls, sgate, FX, 1, (uint32_t)g->so.moe_y, E, S, n_tiles);
    else sw__vk_mm_id(g, L, &L->de, g->scratch.b, (uint32_t)g->so.ids, sgate, FX, 1, (uint32_t)g->so.moe_y, E, S);
    sw__vk_cc_barrier(g);
    if (L->de_b != VK_NONE) {
        expert_bias(g, L, L->de_b, (uint32_t)g->so.moe_y, E, S);
        sw__vk_cc_barrier(g);
    }
    /* x += sum of the weighted slots (+ the gated shared expert); through the post-FFN
     * norm when the layer has one */
    const int post = L->ffn_post != VK_NONE;
    {
        struct {
            uint32_t T, E, k, y_off, id_off, w_off, x_off, sh_off, shg_off, acc;
        } pc = { T, E, K, (uint32_t)g->so.moe_y, (uint32_t)g->so.ids, (uint32_t)g->so.wts, post ? sxn : sx,
                 L->gsh.rows ? ssh : NONE_OFF, L->gsh.rows && L->shg.rows ? sshg : NONE_OFF, post ? 0u : 1u };
        const uint32_t groups = (T * E + 255u) / 256u;
        sw__vk_dispatch(g, VKP_MOE_SUM, scr, 2, &pc, sizeof pc, SW_MIN(groups, 65535u), (groups + 65534u) / 65535u,
                        1);
    }
    if (post) {
        sw__vk_cc_barrier(g);
        sw__vk_rmsnorm_n(g, L, L->ffn_post, E, sxn, sx, T, 1);
    }
}
