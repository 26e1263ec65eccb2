/* kernels_avx2_iq3.c — AVX2 kernels for the codebook types IQ3_XXS, IQ3_S, IQ1_S and IQ1_M
 * (Q8_K activations): one "row x up to 4 tokens" kernel per type with the shape and result
 * of its reference (kernels_ref_iq3.c); test_kernels holds them to it. Per sub-block of 32
 * the codebook points are gathered into one register (8 words of 4 bytes, or 4 of 8) and
 * the signs expanded to +-1 bytes once, then every token pays one sign, one maddubs and
 * one madd by the sub-block's odd scale multiplier. The exact integer sums are those of
 * the reference. Also used by the AVX-512 family (kernels.c), which has no kernels of its
 * own for these types. Not for: other types (kernels_avx2*.c). */
#include "infer/kernels_iq3.h"
#include "infer/kernels_x86.h"

/* 32 sign bits (bit e: element e negative) -> 32 bytes of -1 / +1. */
AI __m256i signs_pm1(uint32_t w)
{
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3,
                                          3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)w), shuf);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_or_si256(v, _mm256_set1_epi8(1));
}

/* IQ3_XXS's 8 signs of each 7-bit code as 8 bytes of -1 / +1 (bit 7 the parity), computed
 * once by the fill below (k_init runs it once, before any kernel). */
static uint64_t g_iq3xxs_pm1[128];

static void iq3xxs_pm1_init(void)
{
    for (uint32_t c = 0; c < 128; c++) {
        uint64_t w = 0;
        const uint8_t s = sw__k_iq3xxs_signs(c);
        for (int j = 0; j < 8; j++) w |= (uint64_t)((s >> j & 1) ? 0xFF : 0x01) << (8 * j);
        g_iq3xxs_pm1[c] = w;
    }
}

/* isum[t] += m16 * <v, a_t> over one sub-block of 32, v signed with |v| < 128. */
#define SUB_DOT(V_ABS, V_SIGN, M16, I, IB)                                                       \
    for (int t = 0; t < NT; t++) {                                                               \
        const int8_t *qa = ((const struct sw_block_q8_K *)a[t].q)[I].qs + 32 * (IB);             \
        __m256i s = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)qa), V_SIGN);           \
        isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(V_ABS, s), M16)); \
    }

/* IQ3_XXS: magnitudes from the grid (u8 operand), signs moved onto the activations. */
AI void iq3_xxs_nt(int64_t n, const struct sw_block_iq3_xxs *w, const struct sw_k_act *a, const int NT, float *out)
{
    __m256 acc[SW_K_TILE_T];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        const struct sw_block_iq3_xxs *x = &w[i];
        __m256i isum[SW_K_TILE_T];
        for (int t = 0; t < NT; t++) isum[t] = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = x->qs + 8 * ib;
            const uint32_t *g = sw__k_iq3xxs_grid;
            __m256i mag = _mm256_setr_epi32((int)g[q[0]], (int)g[q[1]], (int)g[q[2]], (int)g[q[3]], (int)g[q[4]],
                                            (int)g[q[5]], (int)g[q[6]], (int)g[q[7]]);
            uint32_t aux;
            memcpy(&aux, x->qs + 64 + 4 * ib, 4);
            __m256i sg = _mm256_setr_epi64x((long long)g_iq3xxs_pm1[aux & 127], (long long)g_iq3xxs_pm1[aux >> 7 & 127],
                                            (long long)g_iq3xxs_pm1[aux >> 14 & 127],
                                            (long long)g_iq3xxs_pm1[aux >> 21 & 127]);
            __m256i m16 = _mm256_set1_epi16((short)(2 * (aux >> 28) + 1));
            SUB_DOT(mag, sg, m16, i, ib)
        }
        float d = h2f(x->d) * 0.25f;
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_K *y = &((const struct sw_block_q8_K *)a[t].q)[i];
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(d * y->d), acc[t]);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = hsum_ps(acc[t]);
}

/* IQ3_S: 9-bit indices, 32 stored sign bits per sub-block, scale per sub-block. */
AI void iq3_s_nt(int64_t n, const struct sw_block_iq3_s *w, const struct sw_k_act *a, const int NT, float *out)
{
    __m256 acc[SW_K_TILE_T];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        const struct sw_block_iq3_s *x = &w[i];
        __m256i isum[SW_K_TILE_T];
        for (int t = 0; t < NT; t++) isum[t] = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = x->qs + 8 * ib;
            const uint32_t h = x->qh[ib], *g = sw__k_iq3s_grid;
            __m256i mag = _mm256_setr_epi32(
                (int)g[q[0] | (h << 8 & 256)], (int)g[q[1] | (h << 7 & 256)], (int)g[q[2] | (h << 6 & 256)],
                (int)g[q[3] | (h << 5 & 256)], (int)g[q[4] | (h << 4 & 256)], (int)g[q[5] | (h << 3 & 256)],
                (int)g[q[6] | (h << 2 & 256)], (int)g[q[7] | (h << 1 & 256)]);
            uint32_t sw;
            memcpy(&sw, x->signs + 4 * ib, 4);
            __m256i sg = signs_pm1(sw);
            __m256i m16 = _mm256_set1_epi16((short)(2 * ((x->scales[ib / 2] >> (4 * (ib % 2))) & 0xF) + 1));
            SUB_DOT(mag, sg, m16, i, ib)
        }
        float d = h2f(x->d);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_K *y = &((const struct sw_block_q8_K *)a[t].q)[i];
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(d * y->d), acc[t]);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = hsum_ps(acc[t]);
}

/* IQ1: v = 8 grid + delta in [-9, 9] (never 0), from 4 codebook points of 8 bytes in
 * {-1, 0, 1} and the per-group delta bytes (+-1): 8 grid = sign(8, grid). */
AI __m256i iq1_values(const uint64_t *gp, int i0, int i1, int i2, int i3, __m256i delta)
{
    __m256i g = _mm256_setr_epi64x((long long)gp[i0], (long long)gp[i1], (long long)gp[i2], (long long)gp[i3]);
    return _mm256_add_epi8(_mm256_sign_epi8(_mm256_set1_epi8(8), g), delta);
}

AI void iq1_s_nt(int64_t n, const struct sw_block_iq1_s *w, const struct sw_k_act *a, const int NT, float *out)
{
    __m256 acc[SW_K_TILE_T];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        const struct sw_block_iq1_s *x = &w[i];
        __m256i isum[SW_K_TILE_T];
        for (int t = 0; t < NT; t++) isum[t] = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = x->qs + 4 * ib;
            const int h = x->qh[ib];
            __m256i v = iq1_values(sw__k_iq1s_grid, q[0] | (h << 8 & 0x700), q[1] | (h << 5 & 0x700),
                                   q[2] | (h << 2 & 0x700), q[3] | (h >> 1 & 0x700),
                                   _mm256_set1_epi8((char)(h & 0x8000 ? -1 : 1)));
            __m256i m16 = _mm256_set1_epi16((short)(2 * ((h >> 12) & 7) + 1));
            SUB_DOT(_mm256_sign_epi8(v, v), v, m16, i, ib)
        }
        float d = h2f(x->d) * 0.125f;
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_K *y = &((const struct sw_block_q8_K *)a[t].q)[i];
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(d * y->d), acc[t]);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = hsum_ps(acc[t]);
}

/* IQ1_M: a delta per group of 8, a scale per 16 (lane 0: elements 0..15, lane 1: 16..31). */
AI void iq1_m_nt(int64_t n, const struct sw_block_iq1_m *w, const struct sw_k_act *a, const int NT, float *out)
{
    __m256 acc[SW_K_TILE_T];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        const struct sw_block_iq1_m *x = &w[i];
        uint64_t sc;
        memcpy(&sc, x->scales, 8);
        __m256i isum[SW_K_TILE_T];
        for (int t = 0; t < NT; t++) isum[t] = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = x->qs + 4 * ib;
            const int h0 = x->qh[2 * ib], h1 = x->qh[2 * ib + 1];
            const long long pos = 0x0101010101010101ll, neg = -1ll;
            __m256i delta = _mm256_setr_epi64x(h0 & 0x08 ? neg : pos, h0 & 0x80 ? neg : pos, h1 & 0x08 ? neg : pos,
                                               h1 & 0x80 ? neg : pos);
            __m256i v = iq1_values(sw__k_iq1s_grid, q[0] | (h0 << 8 & 0x700), q[1] | (h0 << 4 & 0x700),
                                   q[2] | (h1 << 8 & 0x700), q[3] | (h1 << 4 & 0x700), delta);
            /* scales 2 ib and 2 ib + 1: bits 6 ib .. 6 ib + 5 of the word's low 12 bits */
            const int s6 = (int)(sc >> (16 * (ib / 2) + 6 * (ib % 2))) & 63;
            __m256i m16 = _mm256_setr_m128i(_mm_set1_epi16((short)(2 * (s6 & 7) + 1)),
                                            _mm_set1_epi16((short)(2 * (s6 >> 3) + 1)));
            SUB_DOT(_mm256_sign_epi8(v, v), v, m16, i, ib)
        }
        float d = h2f(sw__k_iq1_m_d(x)) * 0.125f;
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_K *y = &((const struct sw_block_q8_K *)a[t].q)[i];
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(d * y->d), acc[t]);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = hsum_ps(acc[t]);
}

ROWDOT_DISPATCH(iq3_xxs, struct sw_block_iq3_xxs)
ROWDOT_DISPATCH(iq3_s, struct sw_block_iq3_s)
ROWDOT_DISPATCH(iq1_s, struct sw_block_iq1_s)
ROWDOT_DISPATCH(iq1_m, struct sw_block_iq1_m)

/* Row kernels of this file; the activation quantizer is the family's Q8_K one (Q4_K's,
 * which the family's main fill has set). Dequantize stays the reference's. */
void sw__k_fill_avx2_iq3(struct sw_k_type_impl *tab, int n_tab)
{
    if (SW_TYPE_IQ1_M >= n_tab) return;
    iq3xxs_pm1_init();
    const sw_k_quant_fn q8k = tab[SW_TYPE_Q4_K].pub.quantize_act;
    const struct sw__k_row_fill f[] = {
        {SW_TYPE_IQ3_XXS, vec_dot_iq3_xxs, rowdot_iq3_xxs, q8k, 0},
        {SW_TYPE_IQ3_S, vec_dot_iq3_s, rowdot_iq3_s, q8k, 0},
        {SW_TYPE_IQ1_S, vec_dot_iq1_s, rowdot_iq1_s, q8k, 0},
        {SW_TYPE_IQ1_M, vec_dot_iq1_m, rowdot_iq1_m, q8k, 0},
    };
    sw__k_fill_rows(tab, f, sizeof f / sizeof f[0]);
}
