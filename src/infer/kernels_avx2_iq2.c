/* kernels_avx2_iq2.c — AVX2 "row x up to 4 tokens" kernels for IQ2_XXS, IQ2_XS and IQ2_S
 * with Q8_K activations, each with the shape and result of its reference
 * (kernels_ref_iq2.c); test_kernels holds them to it. Per sub-block of 32: the 4 codebook
 * entries are gathered as 4 uint64 into one vector of unsigned magnitudes, the 4 sign bytes
 * become a +-1 vector the activations are multiplied by (psignb: Q8_K codes are never -128),
 * then maddubs (magnitudes u8 x signed activations) and madd by the scales 2 ls + 1. The
 * AVX-512 family uses these too. Dequantization stays the reference's.
 * Not for: other types (kernels_avx2*.c). */
#include "infer/kernels_iq2.h"
#include "infer/kernels_x86.h"

/* +-1 bytes from 32 sign bits: byte j is -1 when bit j of s is set. */
AI __m256i signs_pm1(uint32_t s)
{
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3,
                                          3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)s), shuf);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_or_si256(v, _mm256_set1_epi8(1));
}

/* Four 7-bit sign codes (byte l holds code l) -> their four sign bytes: bit 7 of each byte
 * is the parity of its 7 bits (sw__k_iq2_signs, four at a time). */
AI uint32_t signs_from_codes(uint32_t w)
{
    uint32_t p = w ^ w >> 4; /* low 4 bits of each byte: partial parities of that byte */
    p ^= p >> 2;
    p ^= p >> 1;
    return w | (p & 0x01010101u) << 7;
}

AI __m256i gather4(const uint64_t *grid, int i0, int i1, int i2, int i3)
{
    return _mm256_set_epi64x((long long)grid[i3], (long long)grid[i2], (long long)grid[i1], (long long)grid[i0]);
}

/* Scales 2 ls + 1 as int16: lo for elements 0..15 (lane 0), hi for 16..31 (lane 1). */
AI __m256i scales16(int lo, int hi)
{
    return _mm256_set_m128i(_mm_set1_epi16((short)hi), _mm_set1_epi16((short)lo));
}

/* Sub-block ib of each type: magnitudes, +-1 signs and scales. */
AI void sub_iq2_xxs(const struct sw_block_iq2_xxs *x, int ib, __m256i *mag, __m256i *sg, __m256i *sc)
{
    uint32_t a[2];
    memcpy(a, x->qs + 4 * ib, 8);
    *mag = gather4(sw__k_iq2xxs_grid, a[0] & 0xFF, a[0] >> 8 & 0xFF, a[0] >> 16 & 0xFF, a[0] >> 24);
    const uint32_t c = a[1];
    *sg = signs_pm1(signs_from_codes((c & 127) | (c >> 7 & 127) << 8 | (c >> 14 & 127) << 16 | (c >> 21 & 127) << 24));
    *sc = _mm256_set1_epi16((short)(2 * (c >> 28) + 1));
}

AI void sub_iq2_xs(const struct sw_block_iq2_xs *x, int ib, __m256i *mag, __m256i *sg, __m256i *sc)
{
    const uint16_t *q = x->qs + 4 * ib;
    *mag = gather4(sw__k_iq2xs_grid, q[0] & 511, q[1] & 511, q[2] & 511, q[3] & 511);
    *sg = signs_pm1(signs_from_codes((uint32_t)(q[0] >> 9) | (uint32_t)(q[1] >> 9) << 8 | (uint32_t)(q[2] >> 9) << 16 |
                                     (uint32_t)(q[3] >> 9) << 24));
    const int s = x->scales[ib];
    *sc = scales16(2 * (s & 0xF) + 1, 2 * (s >> 4) + 1);
}

AI void sub_iq2_s(const struct sw_block_iq2_s *x, int ib, __m256i *mag, __m256i *sg, __m256i *sc)
{
    const uint8_t *q = x->qs + 4 * ib;
    const int h = x->qh[ib];
    *mag = gather4(sw__k_iq2s_grid, q[0] | (h & 3) << 8, q[1] | (h >> 2 & 3) << 8, q[2] | (h >> 4 & 3) << 8,
                   q[3] | (h >> 6 & 3) << 8);
    uint32_t s;
    memcpy(&s, x->qs + SW_QK_K / 8 + 4 * ib, 4);
    *sg = signs_pm1(s);
    const int ls = x->scales[ib];
    *sc = scales16(2 * (ls & 0xF) + 1, 2 * (ls >> 4) + 1);
}

/* dot = sum over blocks of d * d_a / 8 * sum_sub-blocks <mag, sign * a> weighted by 2 ls + 1
 * (maddubs pairs stay under 2 * 43 * 127; the int32 sums under 43 * 127 * 256 * 31). */
#define IQ2_NT(NAME, BT)                                                                            \
    AI void NAME##_nt(int64_t n, const BT *w, const struct sw_k_act *a, const int NT, float *out)  \
    {                                                                                             \
        __m256 acc[SW_K_TILE_T];                                                                  \
        for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();                                \
        for (int64_t i = 0; i < n / SW_QK_K; i++) {                                               \
            const BT *x = &w[i];                                                                  \
            __m256i isum[SW_K_TILE_T];                                                            \
            for (int t = 0; t < NT; t++) isum[t] = _mm256_setzero_si256();                        \
            for (int ib = 0; ib < 8; ib++) {                                                      \
                __m256i mag, sg, sc;                                                              \
                sub_##NAME(x, ib, &mag, &sg, &sc);                                                \
                for (int t = 0; t < NT; t++) {                                                    \
                    const int8_t *qa = ((const struct sw_block_q8_K *)a[t].q)[i].qs + 32 * ib;   \
                    __m256i s = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)qa), sg);    \
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(mag, s), sc)); \
                }                                                                                 \
            }                                                                                     \
            const float d = h2f(x->d) * 0.125f;                                                   \
            for (int t = 0; t < NT; t++) {                                                        \
                const struct sw_block_q8_K *y = &((const struct sw_block_q8_K *)a[t].q)[i];       \
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(d * y->d), acc[t]); \
            }                                                                                     \
        }                                                                                         \
        for (int t = 0; t < NT; t++) out[t] = hsum_ps(acc[t]);                                    \
    }

IQ2_NT(iq2_xxs, struct sw_block_iq2_xxs)
IQ2_NT(iq2_xs, struct sw_block_iq2_xs)
IQ2_NT(iq2_s, struct sw_block_iq2_s)

ROWDOT_DISPATCH(iq2_xxs, struct sw_block_iq2_xxs)
ROWDOT_DISPATCH(iq2_xs, struct sw_block_iq2_xs)
ROWDOT_DISPATCH(iq2_s, struct sw_block_iq2_s)

/* Row kernels of this file; the Q8_K activation quantizer is the family's own, taken from
 * Q4_K which the family's main fill has set. */
void sw__k_fill_avx2_iq2(struct sw_k_type_impl *tab, int n_tab)
{
    if (SW_TYPE_IQ2_S >= n_tab) return;
    const sw_k_quant_fn q8k = tab[SW_TYPE_Q4_K].pub.quantize_act;
    const struct sw__k_row_fill f[] = {
        {SW_TYPE_IQ2_XXS, vec_dot_iq2_xxs, rowdot_iq2_xxs, q8k, 0},
        {SW_TYPE_IQ2_XS, vec_dot_iq2_xs, rowdot_iq2_xs, q8k, 0},
        {SW_TYPE_IQ2_S, vec_dot_iq2_s, rowdot_iq2_s, q8k, 0},
    };
    sw__k_fill_rows(tab, f, sizeof f / sizeof f[0]);
}
