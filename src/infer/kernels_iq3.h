/* kernels_iq3.h — private to the IQ3_XXS, IQ3_S, IQ1_S and IQ1_M files (iq3_grids.c,
 * kernels_ref_iq3.c, kernels_avx2_iq3.c, quant_iq3.c): their block layouts, codebooks and
 * the small decoding helpers the reference, the SIMD kernels and the quantizers share.
 * Layouts: ggml-common.h, as written into GGUF tensor data. Not for: other types. */
#ifndef SW_INFER_KERNELS_IQ3_H
#define SW_INFER_KERNELS_IQ3_H

#include "infer/kernels_impl.h"

/* IQ3_XXS: 8 sub-blocks of 32 = 8 groups of 4. qs[0..63]: one codebook index per group
 * (sw__k_iq3xxs_grid: 4 magnitudes in {4, 12, ..., 52, 62}); qs[64..95]: per sub-block a
 * little-endian u32 holding 4 x 7 sign bits (one per 8 elements, the 8th sign is the
 * parity: an even count of negatives) and in bits 28..31 the scale ls:
 * x = d * (2 ls + 1) / 4 * grid * sign. */
struct sw_block_iq3_xxs { sw_f16 d; uint8_t qs[3 * SW_QK_K / 8]; };
/* IQ3_S: per sub-block of 32, 8 indices of 9 bits (low 8 in qs, bit 8 = bit k of qh[ib]
 * for the group k) into sw__k_iq3s_grid (magnitudes 1, 3, ..., 15), 32 sign bits
 * (signs[4 ib + g], bit j: element 8 g + j negative), and a 4-bit scale (low nibble of
 * scales[ib / 2] for even ib, high for odd): x = d * (2 ls + 1) * grid * sign. */
struct sw_block_iq3_s {
    sw_f16 d; uint8_t qs[SW_QK_K / 4]; uint8_t qh[SW_QK_K / 32]; uint8_t signs[SW_QK_K / 8]; uint8_t scales[SW_QK_K / 64];
};
/* IQ1_S: per sub-block of 32, 4 indices of 11 bits into sw__k_iq1s_grid (8 values in
 * {-1, 0, 1}): low 8 bits in qs[4 ib + g], high 3 at bits 3 g of qh[ib]; qh[ib] bits
 * 12..14 are the scale ls, bit 15 the sign of the shift delta = +-1/8:
 * x = d * (2 ls + 1) * (grid + delta). */
struct sw_block_iq1_s { sw_f16 d; uint8_t qs[SW_QK_K / 8]; uint16_t qh[SW_QK_K / 32]; };
/* IQ1_M: indices as IQ1_S, high 3 bits in the nibble g % 2 of qh[2 ib + g / 2] (bits 0..2),
 * whose bit 3 is that group's own delta sign; a 3-bit scale per 16 elements (scale k of the
 * block at bits 3 (k % 4) of the little-endian u16 word k / 4 of scales); the block's fp16
 * d is scattered over the top nibbles of those 4 words (word w's bits 12..15 = d's bits
 * 4 w .. 4 w + 3): x = d * (2 ls + 1) * (grid + delta). */
struct sw_block_iq1_m { uint8_t qs[SW_QK_K / 8]; uint8_t qh[SW_QK_K / 16]; uint8_t scales[SW_QK_K / 32]; };

static_assert(sizeof(struct sw_block_iq3_xxs) == 2 + 96, "IQ3_XXS block is 98 bytes");
static_assert(sizeof(struct sw_block_iq3_s) == 2 + 64 + 8 + 32 + 4, "IQ3_S block is 110 bytes");
static_assert(sizeof(struct sw_block_iq1_s) == 2 + 32 + 16, "IQ1_S block is 50 bytes");
static_assert(sizeof(struct sw_block_iq1_m) == 32 + 16 + 8, "IQ1_M block is 56 bytes");

/* The codebooks (iq3_grids.c; where they come from: docs/kernels.md, "Lookup tables"). */
extern const uint32_t sw__k_iq3xxs_grid[256];
extern const uint32_t sw__k_iq3s_grid[512];
extern const uint64_t sw__k_iq1s_grid[2048];

/* IQ3_XXS's 8 signs from the 7 stored bits: the 8th makes the count of negatives even. */
static inline uint8_t sw__k_iq3xxs_signs(uint32_t s7)
{
    s7 &= 127;
    return (uint8_t)(s7 | (uint32_t)__builtin_parity(s7) << 7);
}

/* IQ1_M's block scale: the fp16 gathered from the top nibbles of the 4 scale words. */
static inline sw_f16 sw__k_iq1_m_d(const struct sw_block_iq1_m *b)
{
    uint16_t w[4];
    memcpy(w, b->scales, 8);
    return (sw_f16)((w[0] >> 12) | (w[1] >> 8 & 0x00f0) | (w[2] >> 4 & 0x0f00) | (w[3] & 0xf000));
}

/* IQ1_M scale k (0..15, one per 16 elements), 3 bits. */
static inline int sw__k_iq1_m_scale(const struct sw_block_iq1_m *b, int k)
{
    uint16_t w;
    memcpy(&w, b->scales + 2 * (k / 4), 2);
    return (w >> (3 * (k % 4))) & 7;
}

/* IQ1_S group g (0..31) codebook index. */
static inline int sw__k_iq1_s_index(const struct sw_block_iq1_s *b, int g)
{
    return b->qs[g] | ((b->qh[g / 4] >> (3 * (g % 4))) & 7) << 8;
}

/* IQ1_M group g (0..31) codebook index and delta sign (1: -1/8). */
static inline int sw__k_iq1_m_index(const struct sw_block_iq1_m *b, int g)
{
    return b->qs[g] | ((b->qh[g / 2] >> (4 * (g % 2))) & 7) << 8;
}
static inline int sw__k_iq1_m_neg(const struct sw_block_iq1_m *b, int g)
{
    return (b->qh[g / 2] >> (4 * (g % 2) + 3)) & 1;
}

/* IQ3_S group g (0..63) codebook index. */
static inline int sw__k_iq3_s_index(const struct sw_block_iq3_s *b, int g)
{
    return b->qs[g] | ((b->qh[g / 8] >> (g % 8)) & 1) << 8;
}

void sw__k_fill_ref_iq3(struct sw_k_type_impl *tab, int n_tab);   /* kernels_ref_iq3.c */
void sw__k_fill_avx2_iq3(struct sw_k_type_impl *tab, int n_tab);  /* kernels_avx2_iq3.c */

/* Reference weight quantizers (quant_iq3.c): n a multiple of 256. */
void sw__k_quantize_iq3_xxs_ref(const float *src, void *dst, int64_t n);
void sw__k_quantize_iq3_s_ref(const float *src, void *dst, int64_t n);
void sw__k_quantize_iq1_s_ref(const float *src, void *dst, int64_t n);
void sw__k_quantize_iq1_m_ref(const float *src, void *dst, int64_t n);

#endif
