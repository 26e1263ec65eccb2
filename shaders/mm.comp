// mm.comp — y[t][r] (+)= sum_c W[r][c] * x[t][c] (+ bias[r]) for one weight type, chosen at
// build time (-DT_F32, T_F16, T_BF16, T_Q8_0, T_Q4_0, T_Q4_K, T_Q6_K). A workgroup takes
// p.rpw rows and a block of TB tokens (8; 1 in the decode variant, -DTB=1); each subgroup takes one row at a time, its lanes
// striding over the row (each dequantising its chunks of 32 weights once for the block's
// tokens), summed with subgroupAdd: no barrier (software devices pay dearly for those).
// Quantized weights are in the backend's repacked blocks (backend_vk.c, repack()): the
// ggml block with its fields moved so that every block starts on a 4-byte boundary.
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

uint byte_at(uint base, uint b) { return (w[base + (b >> 2)] >> ((b & 3u) * 8u)) & 0xFFu; }

#if defined(T_Q4_0)
// 5 words: qs[16] (elements j and j+16 in the low/high nibble of byte j), d (f16).
#define BLK_W 5u
#define CPB 1u
void deq(uint base, uint c, out float v[32])
{
    const float d = unpackHalf2x16(w[base + 4u]).x;
    [[unroll]] for (uint i = 0; i < 4; i++) {
        const uint q = w[base + i];
        [[unroll]] for (uint b = 0; b < 4; b++) {
            const uint by = (q >> (8u * b)) & 0xFFu;
            v[i * 4u + b] = (float(by & 15u) - 8.0) * d;
            v[i * 4u + b + 16u] = (float(by >> 4) - 8.0) * d;
        }
    }
}
#elif defined(T_Q8_0)
// 9 words: qs[32] int8, d (f16).
#define BLK_W 9u
#define CPB 1u
void deq(uint base, uint c, out float v[32])
{
    const float d = unpackHalf2x16(w[base + 8u]).x;
    [[unroll]] for (uint i = 0; i < 8; i++) {
        const int q = int(w[base + i]);
        [[unroll]] for (uint b = 0; b < 4; b++)
            v[i * 4u + b] = float(bitfieldExtract(q, int(8u * b), 8)) * d;
    }
}
#elif defined(T_Q4_K)
// 36 words, ggml's layout: d, dmin (f16 pair), scales[12], qs[128]. Chunk c (of 8) is
// sub-block c: the low (c even) or high nibbles of qs[32*(c/2) ..], 6-bit scale and min.
#define BLK_W 36u
#define CPB 8u
void deq(uint base, uint c, out float v[32])
{
    const vec2 dm = unpackHalf2x16(w[base]);
    uint sc, m;
    if (c < 4u) {
        sc = byte_at(base, 4u + c) & 63u;
        m = byte_at(base, 8u + c) & 63u;
    } else {
        const uint a = byte_at(base, 8u + c), lo = byte_at(base, c), mid = byte_at(base, 4u + c);
        sc = (a & 15u) | ((lo >> 6) << 4);
        m = (a >> 4) | ((mid >> 6) << 4);
    }
    const float d = dm.x * float(sc), mn = dm.y * float(m);
    const uint qb = base + 4u + 8u * (c >> 1), sh = (c & 1u) * 4u;
    [[unroll]] for (uint i = 0; i < 8; i++) {
        const uint q = w[qb + i];
        [[unroll]] for (uint b = 0; b < 4; b++)
            v[i * 4u + b] = d * float((q >> (8u * b + sh)) & 15u) - mn;
    }
}
#elif defined(T_Q6_K)
// 53 words: ql[128], qh[64], scales[16] int8, d (f16). Chunk c (of 8): half h = c/4,
// k = c%4; element l takes the nibble (k>>1) of ql[64h + 32(k&1) + l], bits 2k of
// qh[32h + l], scale scales[8h + 2k + l/16].
#define BLK_W 53u
#define CPB 8u
void deq(uint base, uint c, out float v[32])
{
    const float d = unpackHalf2x16(w[base + 52u]).x;
    const uint h = c >> 2, k = c & 3u;
    const float s0 = d * float(bitfieldExtract(int(byte_at(base, 192u + 8u * h + 2u * k)) << 24, 24, 8));
    const float s1 = d * float(bitfieldExtract(int(byte_at(base, 193u + 8u * h + 2u * k)) << 24, 24, 8));
    const uint lb = base + 16u * h + 8u * (k & 1u), hb = base + 32u + 8u * h;
    const uint lsh = (k >> 1) * 4u, hsh = 2u * k;
    [[unroll]] for (uint i = 0; i < 8; i++) {
        const uint ql = w[lb + i], qh = w[hb + i];
        [[unroll]] for (uint b = 0; b < 4; b++) {
            const uint q = ((ql >> (8u * b + lsh)) & 15u) | (((qh >> (8u * b + hsh)) & 3u) << 4);
            v[i * 4u + b] = (i < 4u ? s0 : s1) * (float(q) - 32.0);
        }
    }
}
#endif

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
