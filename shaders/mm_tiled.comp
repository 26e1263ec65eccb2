// mm_tiled.comp — y[t][r] (+)= sum_c W[r][c] * x[t][c] (+ bias[r]) for steps of many tokens
// (prefill), one weight type chosen at build time as in mm.comp (-DT_<type>, the same
// decoding: mm_deq.glsl). A workgroup of WG = 64 invocations computes a tile of BM = 64
// rows x BN = 32 tokens. Per K-step of BK = 32 columns (one decoded chunk): the weight tile
// goes into shared memory once (block types: invocation i decodes row i's chunk; float
// types: all load it, neighbours reading neighbouring columns), the activation tile beside
// it (neighbours reading a token's neighbouring columns), then each invocation multiplies
// its TM x TN = 4 x 8 register block (rows rg + RG m, tokens tg + TG n) over the step:
// 12 shared reads per 32 multiply-adds. Two barriers per K-step; no subgroup operation, so
// nothing assumes a subgroup size. Shared memory: BK (BM + 1) + BK (BN + 1) floats =
// 12.3 KiB, under the 16 KiB every Vulkan device offers (maxComputeSharedMemorySize); the
// +1 keeps the tiles' column-wise writes on distinct banks. Rows past `rows` and tokens
// past T are zeros in the tiles and not written; float types' last K-step may be partial
// (any cols), block types' cols are a multiple of 32.
#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : enable

#define BM 64u // rows per tile
#define BN 32u // tokens per tile
#define BK 32u // columns per K-step: one decoded chunk
#define WG 64u // invocations
#define TM 4u  // rows per invocation
#define TN 8u  // tokens per invocation
#define RG (BM / TM) // 16 row groups
#define TG (BN / TN) // 4 token groups
layout(local_size_x = 64) in;

layout(std430, set = 0, binding = 0) readonly buffer W { uint w[]; };
layout(std430, set = 0, binding = 1) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 2) buffer Y { float y[]; };
layout(std430, set = 0, binding = 3) readonly buffer Bias { float bias[]; };

// The same push constants as mm.comp's (rpw unused).
layout(push_constant) uniform P {
    uint rows, cols, T;
    uint x_off, y_off;       // floats
    uint x_stride, y_stride; // floats per token
    uint flags;              // 1: + bias[row]; 2: accumulate into y
    uint row_words;          // uints per weight row (block types)
    uint rpw;
} p;

#include "mm_deq.glsl"

shared float ws[BK * (BM + 1u)]; // ws[k (BM + 1u) + r]: the weight tile, column-major
shared float xs[BK * (BN + 1u)]; // xs[k (BN + 1u) + t]: the activation tile

void main()
{
    const uint li = gl_LocalInvocationID.x;
    const uint r0 = (gl_WorkGroupID.x + gl_WorkGroupID.y * 32768u) * BM, t0 = gl_WorkGroupID.z * BN;
    const uint rg = li % RG, tg = li / RG;
    float acc[TM][TN];
    [[unroll]] for (uint m = 0; m < TM; m++)
        [[unroll]] for (uint n = 0; n < TN; n++) acc[m][n] = 0.0;
    const uint nk = (p.cols + BK - 1u) / BK;
    for (uint s = 0; s < nk; s++) {
        const uint k0 = s * BK;
        // the activation tile: BN x BK values, WG at a time, a token's columns to neighbours
        [[unroll]] for (uint q = 0; q < BN * BK / WG; q++) {
            const uint e = li + q * WG, t = e / BK, k = e % BK;
            xs[k * (BN + 1u) + t] = (t0 + t < p.T && k0 + k < p.cols) ? x[p.x_off + (t0 + t) * p.x_stride + k0 + k] : 0.0;
        }
#if defined(T_F32) || defined(T_F16) || defined(T_BF16)
        // the weight tile: BM x BK values, WG at a time, a row's columns to neighbours
        [[unroll]] for (uint q = 0; q < BM * BK / WG; q++) {
            const uint e = li + q * WG, r = e / BK, k = e % BK, wr = r0 + r, col = k0 + k;
            float wv = 0.0;
            if (wr < p.rows && col < p.cols) {
                const uint i = wr * p.cols + col;
#if defined(T_F32)
                wv = uintBitsToFloat(w[i]);
#elif defined(T_F16)
                const vec2 h2 = unpackHalf2x16(w[i >> 1]);
                wv = (i & 1u) != 0u ? h2.y : h2.x;
#else
                wv = uintBitsToFloat(((w[i >> 1] >> ((i & 1u) * 16u)) & 0xFFFFu) << 16);
#endif
            }
            ws[k * (BM + 1u) + r] = wv;
        }
#else
        { // row r0 + li's chunk s, decoded once for the tile's BN tokens (cols % 32 == 0)
            const uint row = r0 + li;
            float v[32];
            if (row < p.rows) {
                deq(row * p.row_words + (s / CPB) * BLK_W, s % CPB, v);
            } else {
                [[unroll]] for (uint k = 0; k < BK; k++) v[k] = 0.0;
            }
            [[unroll]] for (uint k = 0; k < BK; k++) ws[k * (BM + 1u) + li] = v[k];
        }
#endif
        memoryBarrierShared();
        barrier();
        [[unroll]] for (uint k = 0; k < BK; k++) {
            float a[TM], b[TN];
            [[unroll]] for (uint m = 0; m < TM; m++) a[m] = ws[k * (BM + 1u) + rg + RG * m];
            [[unroll]] for (uint n = 0; n < TN; n++) b[n] = xs[k * (BN + 1u) + tg + TG * n];
            [[unroll]] for (uint m = 0; m < TM; m++)
                [[unroll]] for (uint n = 0; n < TN; n++) acc[m][n] += a[m] * b[n];
        }
        memoryBarrierShared();
        barrier();
    }
    [[unroll]] for (uint m = 0; m < TM; m++) {
        const uint row = r0 + rg + RG * m;
        if (row >= p.rows) continue;
        const float bv = (p.flags & 1u) != 0u ? bias[row] : 0.0;
        [[unroll]] for (uint n = 0; n < TN; n++) {
            const uint t = t0 + tg + TG * n;
            if (t >= p.T) continue;
            const uint yi = p.y_off + t * p.y_stride + row;
            if ((p.flags & 2u) != 0u) y[yi] += acc[m][n] + bv;
            else y[yi] = acc[m][n] + bv;
        }
    }
}
