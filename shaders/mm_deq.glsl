// mm_deq.glsl — the weight types' decoding, shared by the matmul shaders (mm.comp,
// mm_tiled.comp; #included after their W buffer `w[]` is declared). One type, chosen by
// -DT_<type>: deq(base, c, v) decodes chunk c (of CPB per block) of the block at word
// `base` into 32 floats; BLK_W is the block's size in words. Quantized weights are in the
// backend's repacked blocks (backend_vk.c, repack_block()). The IQ types read their codebooks
// from binding 4.

uint byte_at(uint base, uint b) { return (w[base + (b >> 2)] >> ((b & 3u) * 8u)) & 0xFFu; }

// Four words of 16 nibble bytes, as Q4_0 orders them: element j (0..15) is the low nibble
// of byte j, element j + 16 its high nibble. Codes into n[32].
void nib32(uint qb, out uint n[32])
{
    [[unroll]] for (uint i = 0; i < 4; i++) {
        const uint q = w[qb + i];
        [[unroll]] for (uint b = 0; b < 4; b++) {
            n[i * 4u + b] = (q >> (8u * b)) & 15u;
            n[i * 4u + b + 16u] = (q >> (8u * b + 4u)) & 15u;
        }
    }
}

// Q4_K / Q5_K sub-block c's 6-bit scale and min from the 12 packed bytes at byte 4 of the block.
void scale_min_k4(uint base, uint c, out uint sc, out uint m)
{
    if (c < 4u) {
        sc = byte_at(base, 4u + c) & 63u;
        m = byte_at(base, 8u + c) & 63u;
    } else {
        const uint a = byte_at(base, 8u + c), lo = byte_at(base, c), mid = byte_at(base, 4u + c);
        sc = (a & 15u) | ((lo >> 6) << 4);
        m = (a >> 4) | ((mid >> 6) << 4);
    }
}

// The IQ4_NL / IQ4_XS grid (ggml's kvalues_iq4nl, docs/kernels.md) and MXFP4's E2M1 values
// doubled (kernels_ref_low.c): format constants.
const float IQ4NL[16] = float[16](-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0,
                                  1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);
const float E2M1X2[16] = float[16](0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0,
                                   -0.0, -1.0, -2.0, -3.0, -4.0, -6.0, -8.0, -12.0);

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
#elif defined(T_Q8_K)
// 65 words (repacked: ggml's block without its bsums): d (f32), qs[256] int8. Chunk c (of 8)
// is qs[32c ..].
#define BLK_W 65u
#define CPB 8u
void deq(uint base, uint c, out float v[32])
{
    const float d = uintBitsToFloat(w[base]);
    [[unroll]] for (uint i = 0; i < 8; i++) {
        const int q = int(w[base + 1u + 8u * c + i]);
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
    scale_min_k4(base, c, sc, m);
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
#elif defined(T_Q5_K)
// 44 words, ggml's layout: d, dmin, scales[12] (as Q4_K), qh[32], qs[128]. Chunk c (of 8):
// Q4_K's nibbles of sub-block c, bit 4 from bit c of qh[l].
#define BLK_W 44u
#define CPB 8u
void deq(uint base, uint c, out float v[32])
{
    const vec2 dm = unpackHalf2x16(w[base]);
    uint sc, m;
    scale_min_k4(base, c, sc, m);
    const float d = dm.x * float(sc), mn = dm.y * float(m);
    const uint qb = base + 12u + 8u * (c >> 1), sh = (c & 1u) * 4u;
    [[unroll]] for (uint i = 0; i < 8; i++) {
        const uint q = w[qb + i], qh = w[base + 4u + i];
        [[unroll]] for (uint b = 0; b < 4; b++)
            v[i * 4u + b] = d * float(((q >> (8u * b + sh)) & 15u) | (((qh >> (8u * b + c)) & 1u) << 4)) - mn;
    }
}
#elif defined(T_Q3_K)
// 28 words: hmask[32], qs[64], scales[12], d (f16), 2 bytes of padding. Chunk c (of 8):
// h = c/4, k = c%4; element l: bits 2k of qs[32h + l], minus 4 unless bit c of hmask[l];
// sub-blocks 2c, 2c+1 (l < 16, l >= 16), whose 6-bit scales (biased by 32) are packed as
// sw__k_q3_K_scale reads them.
#define BLK_W 28u
#define CPB 8u
float q3_scale(uint base, uint j)
{
    const uint lo = (byte_at(base, 96u + (j & 7u)) >> (4u * (j >> 3))) & 15u;
    const uint hi = (byte_at(base, 104u + (j & 3u)) >> (2u * (j >> 2))) & 3u;
    return float(int(lo | (hi << 4)) - 32);
}
void deq(uint base, uint c, out float v[32])
{
    const float d = unpackHalf2x16(w[base + 27u]).x;
    const float s0 = d * q3_scale(base, 2u * c), s1 = d * q3_scale(base, 2u * c + 1u);
    const uint qb = base + 8u + 8u * (c >> 2), sh = 2u * (c & 3u);
    [[unroll]] for (uint i = 0; i < 8; i++) {
        const uint q = w[qb + i], hm = w[base + i];
        [[unroll]] for (uint b = 0; b < 4; b++) {
            const int code = int((q >> (8u * b + sh)) & 3u) - (((hm >> (8u * b + c)) & 1u) != 0u ? 0 : 4);
            v[i * 4u + b] = (i < 4u ? s0 : s1) * float(code);
        }
    }
}
#elif defined(T_Q2_K)
// 21 words, ggml's layout: scales[16] (low nibble scale, high nibble min), qs[64], d, dmin.
// Chunk c (of 8): h = c/4, k = c%4; element l: bits 2k of qs[32h + l]; sub-blocks 2c, 2c+1.
#define BLK_W 21u
#define CPB 8u
void deq(uint base, uint c, out float v[32])
{
    const vec2 dm = unpackHalf2x16(w[base + 20u]);
    const uint a0 = byte_at(base, 2u * c), a1 = byte_at(base, 2u * c + 1u);
    const float d0 = dm.x * float(a0 & 15u), m0 = dm.y * float(a0 >> 4);
    const float d1 = dm.x * float(a1 & 15u), m1 = dm.y * float(a1 >> 4);
    const uint qb = base + 4u + 8u * (c >> 2), sh = 2u * (c & 3u);
    [[unroll]] for (uint i = 0; i < 8; i++) {
        const uint q = w[qb + i];
        [[unroll]] for (uint b = 0; b < 4; b++) {
            const float code = float((q >> (8u * b + sh)) & 3u);
            v[i * 4u + b] = i < 4u ? d0 * code - m0 : d1 * code - m1;
        }
    }
}
#elif defined(T_IQ4_XS)
// 34 words, ggml's layout: d (f16), scales_h (u16), scales_l[4], qs[128]. Chunk c (of 8) is
// sub-block c: 6-bit scale (low 4 bits nibble c%2 of scales_l[c/2], high 2 at bit 2c of
// scales_h) biased by 32, nibbles as Q4_0's in qs[16c ..] through the IQ4 grid.
#define BLK_W 34u
#define CPB 8u
void deq(uint base, uint c, out float v[32])
{
    const uint w0 = w[base];
    const uint ls = ((byte_at(base, 4u + (c >> 1)) >> (4u * (c & 1u))) & 15u) | (((w0 >> (16u + 2u * c)) & 3u) << 4);
    const float dl = unpackHalf2x16(w0).x * float(int(ls) - 32);
    uint n[32];
    nib32(base + 2u + 4u * c, n);
    [[unroll]] for (uint j = 0; j < 32; j++) v[j] = dl * IQ4NL[n[j]];
}
#elif defined(T_IQ4_NL)
// 5 words (repacked): qs[16] as Q4_0's, d (f16); element = d * grid[nibble].
#define BLK_W 5u
#define CPB 1u
void deq(uint base, uint c, out float v[32])
{
    const float d = unpackHalf2x16(w[base + 4u]).x;
    uint n[32];
    nib32(base, n);
    [[unroll]] for (uint j = 0; j < 32; j++) v[j] = d * IQ4NL[n[j]];
}
#elif defined(T_Q4_1)
// 5 words, ggml's layout: d, m (f16 pair), qs[16] as Q4_0's; element = d * q + m.
#define BLK_W 5u
#define CPB 1u
void deq(uint base, uint c, out float v[32])
{
    const vec2 dm = unpackHalf2x16(w[base]);
    uint n[32];
    nib32(base + 1u, n);
    [[unroll]] for (uint j = 0; j < 32; j++) v[j] = dm.x * float(n[j]) + dm.y;
}
#elif defined(T_Q5_0)
// 6 words (repacked): qs[16] as Q4_0's, qh (bit j is bit 4 of element j), d (f16);
// element = d * (q - 16).
#define BLK_W 6u
#define CPB 1u
void deq(uint base, uint c, out float v[32])
{
    const float d = unpackHalf2x16(w[base + 5u]).x;
    const uint qh = w[base + 4u];
    uint n[32];
    nib32(base, n);
    [[unroll]] for (uint j = 0; j < 32; j++) v[j] = d * (float(n[j] | (((qh >> j) & 1u) << 4)) - 16.0);
}
#elif defined(T_Q5_1)
// 6 words, ggml's layout: d, m (f16 pair), qh, qs[16] as Q4_0's; element = d * q + m.
#define BLK_W 6u
#define CPB 1u
void deq(uint base, uint c, out float v[32])
{
    const vec2 dm = unpackHalf2x16(w[base]);
    const uint qh = w[base + 1u];
    uint n[32];
    nib32(base + 2u, n);
    [[unroll]] for (uint j = 0; j < 32; j++) v[j] = dm.x * float(n[j] | (((qh >> j) & 1u) << 4)) + dm.y;
}
#elif defined(T_MXFP4)
// 5 words (repacked): qs[16] as Q4_0's, the E8M0 exponent e (low byte); element =
// 2^(e-128) * (doubled E2M1 value), the scale built as sw__k_e8m0_half does.
#define BLK_W 5u
#define CPB 1u
void deq(uint base, uint c, out float v[32])
{
    const uint e = w[base + 4u] & 0xFFu;
    const float d = uintBitsToFloat(e >= 2u ? (e - 1u) << 23 : 0x00200000u << e);
    uint n[32];
    nib32(base, n);
    [[unroll]] for (uint j = 0; j < 32; j++) v[j] = d * E2M1X2[n[j]];
}
#elif defined(T_IQ2_XXS) || defined(T_IQ2_XS) || defined(T_IQ3_XXS) || defined(T_IQ3_S) || defined(T_IQ2_S) || \
    defined(T_IQ1_S) || defined(T_IQ1_M)
// The IQ codebooks (backend_vk.c, upload_grids), in words: IQ2_XXS's 256 and IQ2_XS's 512
// rows of 8 magnitude bytes, IQ3_XXS's 256 and IQ3_S's 512 rows of 4, IQ2_S's 1024 rows of
// 8, IQ1_S's (and IQ1_M's) 2048 rows of 8 signed bytes.
layout(std430, set = 0, binding = 4) readonly buffer Grid { uint grid[]; };
#define GRID_IQ2XXS 0u
#define GRID_IQ2XS 512u
#define GRID_IQ3XXS 1536u
#define GRID_IQ3S 1792u
#define GRID_IQ2S 2304u
#define GRID_IQ1S 4352u
#define CPB 8u
// 7 sign bits and the 8th that makes the count of negatives even.
uint signs8(uint s7) { return s7 | ((uint(bitCount(s7)) & 1u) << 7); }
// Group of 8 (elements o..o+7 of v): grid row `row` (2 words), signs s, scale dl.
void iq2_group(uint row, uint s, float dl, uint o, inout float v[32])
{
    const uint g0 = grid[row], g1 = grid[row + 1u];
    [[unroll]] for (uint j = 0; j < 8; j++) {
        const float mag = float(((j < 4u ? g0 : g1) >> (8u * (j & 3u))) & 0xFFu);
        v[o + j] = dl * (((s >> j) & 1u) != 0u ? -mag : mag);
    }
}
#if defined(T_IQ2_XXS)
// 17 words (repacked): qs[64] then d (f16). Chunk c (of 8) is sub-block c: words a0, a1 =
// qs[2c], qs[2c+1]; group l's grid row is byte l of a0, its 7 sign bits bits 7l.. of a1,
// the scale (2 ls + 1) / 8 with ls = a1 >> 28.
#define BLK_W 17u
void deq(uint base, uint c, out float v[32])
{
    const uint a0 = w[base + 2u * c], a1 = w[base + 2u * c + 1u];
    const float dl = unpackHalf2x16(w[base + 16u]).x * float(2u * (a1 >> 28) + 1u) * 0.125;
    [[unroll]] for (uint l = 0; l < 4; l++)
        iq2_group(GRID_IQ2XXS + 2u * ((a0 >> (8u * l)) & 0xFFu), signs8((a1 >> (7u * l)) & 127u), dl, 8u * l, v);
}
#elif defined(T_IQ2_XS)
// 19 words (repacked): qs[32] (u16: grid row in bits 0..8, 7 sign bits in 9..15), scales[8],
// d (f16). Chunk c (of 8) is sub-block c: groups 4c..4c+3, ls of groups 0-1 in the low
// nibble of scales[c], of 2-3 in the high one.
#define BLK_W 19u
void deq(uint base, uint c, out float v[32])
{
    const float d = unpackHalf2x16(w[base + 18u]).x * 0.125;
    const uint sc = byte_at(base, 64u + c);
    [[unroll]] for (uint l = 0; l < 4; l++) {
        const uint q = (w[base + 2u * c + (l >> 1)] >> (16u * (l & 1u))) & 0xFFFFu;
        const float dl = d * float(2u * ((sc >> (4u * (l >> 1))) & 15u) + 1u);
        iq2_group(GRID_IQ2XS + 2u * (q & 511u), signs8(q >> 9), dl, 8u * l, v);
    }
}
#elif defined(T_IQ2_S)
// 21 words (repacked): qs[32] (grid row low 8 bits per group), signs[32] (8 explicit sign
// bits per group), qh[8] (rows' bits 8-9: 2 bits per group), scales[8] (as IQ2_XS), d (f16).
#define BLK_W 21u
void deq(uint base, uint c, out float v[32])
{
    const float d = unpackHalf2x16(w[base + 20u]).x * 0.125;
    const uint sc = byte_at(base, 72u + c), qh = byte_at(base, 64u + c);
    [[unroll]] for (uint l = 0; l < 4; l++) {
        const uint row = byte_at(base, 4u * c + l) | (((qh >> (2u * l)) & 3u) << 8);
        const float dl = d * float(2u * ((sc >> (4u * (l >> 1))) & 15u) + 1u);
        iq2_group(GRID_IQ2S + 2u * row, byte_at(base, 32u + 4u * c + l), dl, 8u * l, v);
    }
}
#elif defined(T_IQ3_S)
// 28 words (repacked): qs[64] (grid row low 8 bits, 8 groups of 4 per sub-block), qh[8]
// (bit k of qh[c]: row bit 8 of group k), signs[32] (bit j of signs[4c + k/2]: element
// 4k' + j of the sub-block), scales[4] (nibble c%2 of scales[c/2]), d (f16);
// element = d * (2 ls + 1) * grid * sign.
#define BLK_W 28u
void deq(uint base, uint c, out float v[32])
{
    const float db = unpackHalf2x16(w[base + 27u]).x *
                     float(2u * ((byte_at(base, 104u + (c >> 1)) >> (4u * (c & 1u))) & 15u) + 1u);
    const uint qh = byte_at(base, 64u + c);
    [[unroll]] for (uint k = 0; k < 8; k++) {
        const uint g = grid[GRID_IQ3S + (byte_at(base, 8u * c + k) | (((qh >> k) & 1u) << 8))];
        const uint s = byte_at(base, 72u + 4u * c + (k >> 1));
        [[unroll]] for (uint j = 0; j < 4; j++) {
            const float mag = float((g >> (8u * j)) & 0xFFu);
            v[4u * k + j] = db * (((s >> (4u * (k & 1u) + j)) & 1u) != 0u ? -mag : mag);
        }
    }
}
#elif defined(T_IQ1_S) || defined(T_IQ1_M)
// IQ1 group of 8 (elements o..o+7): grid row `row` of signed bytes, plus or minus 1/8, times dl.
void iq1_group(uint row, uint neg, float dl, uint o, inout float v[32])
{
    const int g0 = int(grid[GRID_IQ1S + 2u * row]), g1 = int(grid[GRID_IQ1S + 2u * row + 1u]);
    const int delta = neg != 0u ? -1 : 1;
    [[unroll]] for (uint j = 0; j < 8; j++) {
        const int q = bitfieldExtract(j < 4u ? g0 : g1, int(8u * (j & 3u)), 8);
        v[o + j] = dl * (float(8 * q + delta) * 0.125);
    }
}
#if defined(T_IQ1_S)
// 13 words (repacked): qs[32] (row low 8 bits per group), qh[8] (u16: row bits 8-10 of
// group k at bits 3k, ls at 12..14, the delta's sign at 15), d (f16).
#define BLK_W 13u
void deq(uint base, uint c, out float v[32])
{
    const uint qh = (w[base + 8u + (c >> 1)] >> (16u * (c & 1u))) & 0xFFFFu;
    const float dl = unpackHalf2x16(w[base + 12u]).x * float(2u * ((qh >> 12) & 7u) + 1u);
    [[unroll]] for (uint k = 0; k < 4; k++)
        iq1_group(byte_at(base, 4u * c + k) | (((qh >> (3u * k)) & 7u) << 8), qh >> 15, dl, 8u * k, v);
}
#else
// 14 words, ggml's layout: qs[32], qh[16] (nibble g%2 of qh[g/2]: row bits 8-10 of group g,
// its delta's sign in bit 3), scales[8] (4 u16: 3-bit scales per 16 elements, the block's
// f16 d in their top nibbles).
#define BLK_W 14u
void deq(uint base, uint c, out float v[32])
{
    const uint s01 = w[base + 12u], s23 = w[base + 13u];
    const uint dbits = ((s01 >> 12) & 0xFu) | ((s01 >> 24) & 0xF0u) | ((s23 >> 4) & 0xF00u) | ((s23 >> 16) & 0xF000u);
    const float d = unpackHalf2x16(dbits).x;
    const uint sw = (w[base + 12u + (c >> 2)] >> (16u * ((c >> 1) & 1u))) & 0xFFFFu; // word (2c)/4 = c/2
    const float m0 = d * float(2u * ((sw >> (3u * ((2u * c) & 3u))) & 7u) + 1u);
    const float m1 = d * float(2u * ((sw >> (3u * ((2u * c + 1u) & 3u))) & 7u) + 1u);
    [[unroll]] for (uint k = 0; k < 4; k++) {
        const uint g = 4u * c + k, h = (byte_at(base, 32u + (g >> 1)) >> (4u * (g & 1u))) & 15u;
        iq1_group(byte_at(base, g) | ((h & 7u) << 8), h >> 3, k < 2u ? m0 : m1, 8u * k, v);
    }
}
#endif
#else
// 25 words (repacked): qs[64] (grid rows, 8 per sub-block), then per sub-block a word of
// 4 x 7 sign bits (each group of 8 completed by signs8) and ls in bits 28..31, then d
// (f16). Chunk c (of 8) is sub-block c; element = d * (2 ls + 1) / 4 * grid * sign.
#define BLK_W 25u
void deq(uint base, uint c, out float v[32])
{
    const uint aux = w[base + 16u + c];
    const float db = unpackHalf2x16(w[base + 24u]).x * float(2u * (aux >> 28) + 1u);
    [[unroll]] for (uint k = 0; k < 8; k++) {
        const uint g = grid[GRID_IQ3XXS + byte_at(base, 8u * c + k)], s = signs8((aux >> (7u * (k >> 1))) & 127u);
        [[unroll]] for (uint j = 0; j < 4; j++) {
            const float mag = float((g >> (8u * j)) & 0xFFu) * 0.25;
            v[4u * k + j] = db * (((s >> (4u * (k & 1u) + j)) & 1u) != 0u ? -mag : mag);
        }
    }
}
#endif
#endif
