// mm.comp — y[t][r] (+)= sum_c W[r][c] * x[t][c] (+ bias[r]) for one weight type, chosen at
// build time (-DT_F32, T_F16, T_BF16, T_Q8_0, T_Q4_0, T_Q4_K, T_Q6_K, T_Q5_K, T_Q3_K,
// T_Q2_K, T_IQ4_XS, T_IQ4_NL, T_Q4_1, T_Q5_0, T_Q5_1, T_MXFP4, T_IQ2_XXS, T_IQ2_XS,
// T_IQ3_XXS; the IQ codebooks in a storage buffer, binding 4). A workgroup takes
// p.rpw rows and a block of TB tokens (8; 1 in the decode variant, -DTB=1); each subgroup takes one row at a time, its lanes
// striding over the row (each dequantising its chunks of 32 weights once for the block's
// tokens), summed with subgroupAdd: no barrier (software devices pay dearly for those).
// Quantized weights are in the backend's repacked blocks (backend_vk.c, repack()): the
// ggml block with its fields moved so that every block starts on a 4-byte boundary; their
// decoding is mm_deq.glsl's, shared with the tiled prefill matmul (mm_tiled.comp).
// -DMM_ID (with TB=1): the expert-indexed variant of the MoE layers. W is a stack of
// n_expert matrices of `rows` rows each; workgroup z takes one (token, expert) slot, whose
// expert is ids[ids_off + slot] (written on the device by moe_route.comp) and whose input
// is x row slot / xdiv (xdiv = experts per token for gate/up: every slot of a token reads
// its normed x; 1 for down: each slot reads its own SwiGLU row). Only the chosen experts'
// rows are read.
// -DMM_IDG (with MM_ID, TB=8): the grouped form for steps of several tokens: workgroup z
// takes a tile of up to 8 slots of one expert (moe_group.comp's tiles: ids_off points at
// them, slot0 at the slot list), so that expert's rows are decoded once for the tile.
#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : enable
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable

layout(local_size_x = 64) in;
#ifndef TB
#define TB 8
#endif

layout(std430, set = 0, binding = 0) readonly buffer W { uint w[]; };
layout(std430, set = 0, binding = 1) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer X4 { vec4 x4[]; }; // the same, 16 bytes at a time
layout(std430, set = 0, binding = 2) buffer Y { float y[]; };
#ifdef MM_ID
layout(std430, set = 0, binding = 3) readonly buffer Ids { uint ids[]; };
#else
layout(std430, set = 0, binding = 3) readonly buffer Bias { float bias[]; };
#endif

layout(push_constant) uniform P {
    uint rows, cols, T;      // MM_ID: rows per expert; T: (token, expert) slots
    uint x_off, y_off;       // floats
    uint x_stride, y_stride; // floats per token (MM_ID: per x row, per slot)
    uint flags;              // 1: + bias[row]; 2: accumulate into y
    uint row_words;          // uints per weight row (block types)
    uint rpw;                // rows per workgroup
    uint ids_off, xdiv, n_expert, slot0; // MM_ID only
} p;

#include "mm_deq.glsl"

void main()
{
#if defined(MM_IDG)
    const uint tile = gl_WorkGroupID.z;
    if (tile >= ids[p.ids_off]) return;
    const uint tb = p.ids_off + 1u + 3u * tile;
    const uint ex = ids[tb], first = ids[tb + 1u], nt = min(ids[tb + 2u], uint(TB));
    if (ex >= p.n_expert) return;
    uint slot[TB], xbs[TB];
    [[unroll]] for (uint t = 0; t < TB; t++) {
        slot[t] = t < nt ? ids[p.slot0 + first + t] : 0u;
        xbs[t] = p.x_off + (slot[t] / p.xdiv) * p.x_stride;
    }
    const uint wrow0 = ex * p.rows;
#define XB(t) xbs[t]
#define YT(t) slot[t]
#elif defined(MM_ID)
    const uint t0 = p.slot0 + gl_WorkGroupID.z;
    if (t0 >= p.T) return;
    const uint nt = 1u;
    const uint ex = ids[p.ids_off + t0];
    if (ex >= p.n_expert) return;
    const uint xb = p.x_off + (t0 / p.xdiv) * p.x_stride;
    const uint wrow0 = ex * p.rows; // the expert's first row in the stack
#define XB(t) xb
#define YT(t) t0
#else
    const uint t0 = gl_WorkGroupID.z * TB;
    const uint nt = min(uint(TB), p.T - t0);
    const uint xb = p.x_off + t0 * p.x_stride;
    const uint wrow0 = 0u;
#define XB(t) (xb + (t) * p.x_stride)
#define YT(t) (t0 + (t))
#endif
    const uint lane = gl_SubgroupInvocationID, nl = gl_SubgroupSize;
    const uint wg = gl_WorkGroupID.x + gl_WorkGroupID.y * 32768u;
    for (uint k = gl_SubgroupID; k < p.rpw; k += gl_NumSubgroups) {
        const uint row = wg * p.rpw + k;
        if (row >= p.rows) break;
        float acc[TB];
        [[unroll]] for (uint t = 0; t < TB; t++) acc[t] = 0.0;
#if defined(T_F32) || defined(T_F16) || defined(T_BF16)
        const uint rb = (wrow0 + row) * p.cols;
        for (uint i = lane; i < p.cols; i += nl) {
#if defined(T_F32)
            const float wv = uintBitsToFloat(w[rb + i]);
#elif defined(T_F16)
            const uint e = rb + i;
            const vec2 h2 = unpackHalf2x16(w[e >> 1]);
            const float wv = (e & 1u) != 0u ? h2.y : h2.x;
#else
            const uint e = rb + i;
            const float wv = uintBitsToFloat(((w[e >> 1] >> ((e & 1u) * 16u)) & 0xFFFFu) << 16);
#endif
            [[unroll]] for (uint t = 0; t < TB; t++)
                if (t < nt) acc[t] += wv * x[XB(t) + i];
        }
#else
        const uint nchunk = p.cols / 32u;
        const uint rb = (wrow0 + row) * p.row_words;
        for (uint c = lane; c < nchunk; c += nl) {
            float v[32];
            deq(rb + (c / CPB) * BLK_W, c % CPB, v);
            // x offsets and strides are multiples of 4 floats for block types (cols % 32 == 0)
            [[unroll]] for (uint t = 0; t < TB; t++) {
                if (t < nt) {
                    float s = 0.0;
                    const uint xt = (XB(t) + c * 32u) >> 2;
                    [[unroll]] for (uint i = 0; i < 8; i++)
                        s += dot(vec4(v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]), x4[xt + i]);
                    acc[t] += s;
                }
            }
        }
#endif
        [[unroll]] for (uint t = 0; t < TB; t++) {
            if (t < nt) {
                float r = subgroupAdd(acc[t]);
                if (subgroupElect()) {
#ifndef MM_ID
                    if ((p.flags & 1u) != 0u) r += bias[row];
#endif
                    const uint yi = p.y_off + YT(t) * p.y_stride + row;
                    if ((p.flags & 2u) != 0u) y[yi] += r;
                    else y[yi] = r;
                }
            }
        }
    }
}
