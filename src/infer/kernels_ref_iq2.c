/* kernels_ref_iq2.c — the scalar reference kernels of IQ2_XXS, IQ2_XS and IQ2_S
 * (dequantize and the dot product with Q8_K activations): the specification the SIMD
 * kernels are tested against, written for clarity, integer sums exact, float sums in double.
 * Layouts and the value formula: kernels_iq2.h. Not for: quantizers (quant_iq2.c), SIMD
 * (kernels_avx2_iq2.c). */
#include "infer/kernels_iq2.h"

#define H2F(h) sw_k_f16_to_f32(h)

/* One decoded group of 8: magnitudes (grid bytes) and the sign byte (bit j: element j < 0). */
struct group8 {
    const uint8_t *mag;
    uint8_t signs;
};

/* Group l (0..3) of sub-block ib of each type, and the sub-block's scale factor 2*ls+1 for
 * the group (IQ2_XS/IQ2_S: groups 0, 1 take the low nibble, 2, 3 the high one). */
static inline struct group8 group_iq2_xxs(const struct sw_block_iq2_xxs *b, int ib, int l, int *ls2)
{
    uint32_t a[2];
    memcpy(a, b->qs + 4 * ib, 8); /* GGUF data is little-endian, as is every host we build for */
    *ls2 = 2 * (int)(a[1] >> 28) + 1;
    const uint8_t idx = (uint8_t)(a[0] >> (8 * l));
    return (struct group8){(const uint8_t *)&sw__k_iq2xxs_grid[idx], sw__k_iq2_signs(a[1] >> (7 * l))};
}

static inline struct group8 group_iq2_xs(const struct sw_block_iq2_xs *b, int ib, int l, int *ls2)
{
    const uint16_t q = b->qs[4 * ib + l];
    *ls2 = 2 * ((b->scales[ib] >> (4 * (l / 2))) & 0xF) + 1;
    return (struct group8){(const uint8_t *)&sw__k_iq2xs_grid[q & 511], sw__k_iq2_signs(q >> 9)};
}

static inline struct group8 group_iq2_s(const struct sw_block_iq2_s *b, int ib, int l, int *ls2)
{
    const int idx = b->qs[4 * ib + l] | ((b->qh[ib] >> (2 * l)) & 3) << 8;
    *ls2 = 2 * ((b->scales[ib] >> (4 * (l / 2))) & 0xF) + 1;
    return (struct group8){(const uint8_t *)&sw__k_iq2s_grid[idx], b->qs[SW_QK_K / 8 + 4 * ib + l]};
}

static inline int sgn(uint8_t signs, int j)
{
    return signs >> j & 1 ? -1 : 1;
}

/* ------------------------------------------------------------ dequantize, dot */

/* x = d * (2ls+1)/8 * grid * sign, for one type's group accessor G and block type BT. */
#define IQ2_DEQUANT(NAME, BT, G)                                                 \
    static void NAME(const void *src, float *y, int64_t n)                       \
    {                                                                            \
        const BT *b = src;                                                       \
        for (int64_t i = 0; i < n / SW_QK_K; i++, b++) {                         \
            const float d = H2F(b->d);                                           \
            for (int ib = 0; ib < 8; ib++)                                       \
                for (int l = 0; l < 4; l++) {                                    \
                    int ls2;                                                     \
                    const struct group8 g = G(b, ib, l, &ls2);                   \
                    const float dl = d * (float)ls2 * 0.125f;                    \
                    for (int j = 0; j < 8; j++) *y++ = dl * (float)(sgn(g.signs, j) * g.mag[j]); \
                }                                                                \
        }                                                                        \
    }

/* dot = sum over blocks of d * d_a / 8 * sum_groups (2ls+1) * <grid * signs, q>, the inner
 * sums exact in integers (|.| < 43 * 127 * 256 * 31). */
#define IQ2_DOT(NAME, BT, G)                                                     \
    static float NAME(int64_t n, const void *w, const void *act)                 \
    {                                                                            \
        const BT *x = w;                                                         \
        const struct sw_block_q8_K *y = act;                                     \
        double s = 0;                                                            \
        for (int64_t i = 0; i < n / SW_QK_K; i++) {                              \
            long isum = 0;                                                       \
            for (int ib = 0; ib < 8; ib++)                                       \
                for (int l = 0; l < 4; l++) {                                    \
                    int ls2, dot = 0;                                            \
                    const struct group8 g = G(&x[i], ib, l, &ls2);               \
                    const int8_t *q = y[i].qs + 32 * ib + 8 * l;                 \
                    for (int j = 0; j < 8; j++) dot += sgn(g.signs, j) * g.mag[j] * q[j]; \
                    isum += (long)ls2 * dot;                                     \
                }                                                                \
            s += (double)y[i].d * H2F(x[i].d) * 0.125 * (double)isum;            \
        }                                                                        \
        return (float)s;                                                         \
    }

IQ2_DEQUANT(dequant_iq2_xxs, struct sw_block_iq2_xxs, group_iq2_xxs)
IQ2_DEQUANT(dequant_iq2_xs, struct sw_block_iq2_xs, group_iq2_xs)
IQ2_DEQUANT(dequant_iq2_s, struct sw_block_iq2_s, group_iq2_s)
IQ2_DOT(vec_dot_iq2_xxs_q8_K, struct sw_block_iq2_xxs, group_iq2_xxs)
IQ2_DOT(vec_dot_iq2_xs_q8_K, struct sw_block_iq2_xs, group_iq2_xs)
IQ2_DOT(vec_dot_iq2_s_q8_K, struct sw_block_iq2_s, group_iq2_s)

/* ------------------------------------------------------------ row x tokens, table */

REF_ROWDOT(rowdot_iq2_xxs, vec_dot_iq2_xxs_q8_K)
REF_ROWDOT(rowdot_iq2_xs, vec_dot_iq2_xs_q8_K)
REF_ROWDOT(rowdot_iq2_s, vec_dot_iq2_s_q8_K)

void sw__k_fill_ref_iq2(struct sw_k_type_impl *tab, int n_tab)
{
    const sw_k_quant_fn q8k = sw__k_quantize_q8_K_ref;
    sw__k_set_ref(tab, n_tab, SW_TYPE_IQ2_XXS, "IQ2_XXS", SW_QK_K, sizeof(struct sw_block_iq2_xxs), SW_TYPE_Q8_K,
                  dequant_iq2_xxs, q8k, vec_dot_iq2_xxs_q8_K, rowdot_iq2_xxs);
    sw__k_set_ref(tab, n_tab, SW_TYPE_IQ2_XS, "IQ2_XS", SW_QK_K, sizeof(struct sw_block_iq2_xs), SW_TYPE_Q8_K,
                  dequant_iq2_xs, q8k, vec_dot_iq2_xs_q8_K, rowdot_iq2_xs);
    sw__k_set_ref(tab, n_tab, SW_TYPE_IQ2_S, "IQ2_S", SW_QK_K, sizeof(struct sw_block_iq2_s), SW_TYPE_Q8_K,
                  dequant_iq2_s, q8k, vec_dot_iq2_s_q8_K, rowdot_iq2_s);
}
