/* kernels_iq2.h — private to the kernels files: the IQ2 weight types (IQ2_XXS, IQ2_XS,
 * IQ2_S): their block layouts (ggml-common.h, as written into GGUF tensor data), codebooks,
 * and the table fills of their reference (kernels_ref_iq2.c) and AVX2 (kernels_avx2_iq2.c)
 * kernels and quantizers (quant_iq2.c). Not for: the model code (it uses kernels.h).
 *
 * All three have super-blocks of 256 elements in 8 sub-blocks of 32, each cut into 4 groups
 * of 8. A group is one codebook entry (8 magnitudes in {8, 25, 43}) times 8 signs; the
 * value of element j of a group is
 *     x = d * (2 * ls + 1) / 8 * grid[idx][j] * (bit j of signs ? -1 : 1)
 * with d the block's fp16 scale and ls a 4-bit scale: one per sub-block of 32 (IQ2_XXS) or
 * one per 16 elements (IQ2_XS, IQ2_S). */
#ifndef SW_INFER_KERNELS_IQ2_H
#define SW_INFER_KERNELS_IQ2_H

#include "infer/kernels_impl.h"

/* IQ2_XXS (2.06 bits/weight): sub-block ib's 8 bytes qs[4ib..4ib+3] read as two LE uint32
 * a0, a1: byte l of a0 is group l's index into the 256-entry grid; a1 holds group l's
 * 7-bit sign code at bits 7l..7l+6 and the sub-block's ls at bits 28..31. */
struct sw_block_iq2_xxs { sw_f16 d; uint16_t qs[SW_QK_K / 8]; };
/* IQ2_XS (2.31 bits/weight): qs[4ib + l] is group l of sub-block ib: grid index (of 512) in
 * bits 0..8, 7-bit sign code in bits 9..15; scales[ib] holds ls of elements 0..15 in its low
 * nibble and of 16..31 in its high one. */
struct sw_block_iq2_xs { sw_f16 d; uint16_t qs[SW_QK_K / 8]; uint8_t scales[SW_QK_K / 32]; };
/* IQ2_S (2.56 bits/weight): group l of sub-block ib has the grid index (of 1024)
 * qs[4ib + l] | ((qh[ib] >> 2l) & 3) << 8 and its 8 sign bits, explicit, in
 * qs[32 + 4ib + l]; scales as IQ2_XS. */
struct sw_block_iq2_s { sw_f16 d; uint8_t qs[SW_QK_K / 4]; uint8_t qh[SW_QK_K / 32]; uint8_t scales[SW_QK_K / 32]; };

static_assert(sizeof(struct sw_block_iq2_xxs) == 2 + 64, "IQ2_XXS block is 66 bytes");
static_assert(sizeof(struct sw_block_iq2_xs) == 2 + 64 + 8, "IQ2_XS block is 74 bytes");
static_assert(sizeof(struct sw_block_iq2_s) == 2 + 64 + 8 + 8, "IQ2_S block is 82 bytes");

/* The codebooks (iq2_grids.c; provenance in docs/kernels.md). */
extern const uint64_t sw__k_iq2xxs_grid[256];
extern const uint64_t sw__k_iq2xs_grid[512];
extern const uint64_t sw__k_iq2s_grid[1024];

/* IQ2_XXS / IQ2_XS store 7 of a group's 8 sign bits: the 8th makes the number of negative
 * elements even. The sign byte of a 7-bit code c: c plus bit 7 = parity of c. */
static inline uint8_t sw__k_iq2_signs(uint32_t c)
{
    c &= 127;
    uint32_t p = c ^ c >> 4;
    p ^= p >> 2;
    p ^= p >> 1;
    return (uint8_t)(c | (p & 1) << 7);
}

/* Table fills (called by sw__k_fill_ref and by the AVX2 / AVX-512 families). */
void sw__k_fill_ref_iq2(struct sw_k_type_impl *tab, int n_tab);
void sw__k_fill_avx2_iq2(struct sw_k_type_impl *tab, int n_tab);

/* Reference quantizers (quant_iq2.c): n a multiple of 256. */
void sw__k_quantize_iq2_xxs_ref(const float *src, void *dst, int64_t n);
void sw__k_quantize_iq2_xs_ref(const float *src, void *dst, int64_t n);
void sw__k_quantize_iq2_s_ref(const float *src, void *dst, int64_t n);

#endif
