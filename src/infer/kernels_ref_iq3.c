/* kernels_ref_iq3.c — the scalar reference kernels of the codebook types IQ3_XXS, IQ3_S,
 * IQ1_S and IQ1_M (dequantize, dot with Q8_K activations): the specification the SIMD
 * kernels are tested against. Each sub-block is decoded to small signed integers v and an
 * odd integer scale m = 2 ls + 1 so that the dot is exact in integers:
 *   IQ3_XXS  x = d * m * v / 4     v = +-grid, |v| <= 62
 *   IQ3_S    x = d * m * v         v = +-grid, |v| <= 15
 *   IQ1_S/M  x = d * m * v / 8     v = 8 grid + delta, grid in {-1, 0, 1}, delta = +-1
 * (the same sums ggml's reference takes). Layouts: kernels_iq3.h.
 * Not for: quantizers (quant_iq3.c), SIMD (kernels_avx2_iq3.c). */
#include "infer/kernels_iq3.h"

#define H2F(h) sw_k_f16_to_f32(h)

/* ------------------------------------------------------------ sub-block decoding */

/* IQ3_XXS sub-block ib: v[32] and the scale multiplier m. */
static int iq3_xxs_sub(const struct sw_block_iq3_xxs *b, int ib, int8_t *v)
{
    uint32_t aux;
    memcpy(&aux, b->qs + 64 + 4 * ib, 4);
    for (int k = 0; k < 8; k++) {
        uint32_t g = sw__k_iq3xxs_grid[b->qs[8 * ib + k]];
        uint8_t s = sw__k_iq3xxs_signs(aux >> (7 * (k / 2)));
        for (int j = 0; j < 4; j++) {
            int e = 4 * k + j, val = (int)(g >> (8 * j) & 0xFF);
            v[e] = (int8_t)((s >> (e % 8) & 1) ? -val : val);
        }
    }
    return 2 * (int)(aux >> 28) + 1;
}

/* IQ3_S sub-block ib. */
static int iq3_s_sub(const struct sw_block_iq3_s *b, int ib, int8_t *v)
{
    for (int k = 0; k < 8; k++) {
        uint32_t g = sw__k_iq3s_grid[sw__k_iq3_s_index(b, 8 * ib + k)];
        for (int j = 0; j < 4; j++) {
            int e = 32 * ib + 4 * k + j, val = (int)(g >> (8 * j) & 0xFF);
            v[4 * k + j] = (int8_t)((b->signs[e / 8] >> (e % 8) & 1) ? -val : val);
        }
    }
    return 2 * ((b->scales[ib / 2] >> (4 * (ib % 2))) & 0xF) + 1;
}

/* 8 values 8 * grid + delta of IQ1 codebook point idx. */
static void iq1_group(int idx, int neg, int8_t *v)
{
    uint64_t g = sw__k_iq1s_grid[idx];
    for (int j = 0; j < 8; j++) v[j] = (int8_t)(8 * (int8_t)(g >> (8 * j) & 0xFF) + (neg ? -1 : 1));
}

/* IQ1_S sub-block ib. */
static int iq1_s_sub(const struct sw_block_iq1_s *b, int ib, int8_t *v)
{
    for (int k = 0; k < 4; k++) iq1_group(sw__k_iq1_s_index(b, 4 * ib + k), b->qh[ib] >> 15, v + 8 * k);
    return 2 * ((b->qh[ib] >> 12) & 7) + 1;
}

/* IQ1_M sub-block ib: v[32] and the two multipliers (elements 0..15, 16..31). */
static void iq1_m_sub(const struct sw_block_iq1_m *b, int ib, int8_t *v, int *m)
{
    for (int k = 0; k < 4; k++) iq1_group(sw__k_iq1_m_index(b, 4 * ib + k), sw__k_iq1_m_neg(b, 4 * ib + k), v + 8 * k);
    m[0] = 2 * sw__k_iq1_m_scale(b, 2 * ib) + 1;
    m[1] = 2 * sw__k_iq1_m_scale(b, 2 * ib + 1) + 1;
}

static int dot_i8(const int8_t *v, const int8_t *q, int n)
{
    int s = 0;
    for (int j = 0; j < n; j++) s += v[j] * q[j];
    return s;
}

/* ------------------------------------------------------------ dequantize */

/* The float products are ggml's: (d * m) * (v / 4) (or / 8), each factor exact but d * m. */
static void dequant_iq3_xxs(const void *src, float *y, int64_t n)
{
    const struct sw_block_iq3_xxs *b = src;
    int8_t v[32];
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++)
        for (int ib = 0; ib < 8; ib++) {
            float db = H2F(b->d) * (float)iq3_xxs_sub(b, ib, v);
            for (int j = 0; j < 32; j++) *y++ = db * ((float)v[j] * 0.25f);
        }
}

static void dequant_iq3_s(const void *src, float *y, int64_t n)
{
    const struct sw_block_iq3_s *b = src;
    int8_t v[32];
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++)
        for (int ib = 0; ib < 8; ib++) {
            float db = H2F(b->d) * (float)iq3_s_sub(b, ib, v);
            for (int j = 0; j < 32; j++) *y++ = db * (float)v[j];
        }
}

static void dequant_iq1_s(const void *src, float *y, int64_t n)
{
    const struct sw_block_iq1_s *b = src;
    int8_t v[32];
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++)
        for (int ib = 0; ib < 8; ib++) {
            float dl = H2F(b->d) * (float)iq1_s_sub(b, ib, v);
            for (int j = 0; j < 32; j++) *y++ = dl * ((float)v[j] * 0.125f);
        }
}

static void dequant_iq1_m(const void *src, float *y, int64_t n)
{
    const struct sw_block_iq1_m *b = src;
    int8_t v[32];
    int m[2];
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++) {
        float d = H2F(sw__k_iq1_m_d(b));
        for (int ib = 0; ib < 8; ib++) {
            iq1_m_sub(b, ib, v, m);
            for (int j = 0; j < 32; j++) *y++ = d * (float)m[j / 16] * ((float)v[j] * 0.125f);
        }
    }
}

/* ------------------------------------------------------------ dot products (Q8_K acts) */

/* sum over blocks of d_a * d * k * sum_sub m * <v, a> for a type whose sub-blocks decode to
 * (v, m) with SUB (k: the /4 or /8 of the header's formulas) */
#define SUB_DOT(NAME, BT, SUB, K)                                          \
    static float NAME(int64_t n, const void *w, const void *a)             \
    {                                                                      \
        const BT *x = w;                                                   \
        const struct sw_block_q8_K *y = a;                                 \
        int8_t v[32];                                                      \
        double s = 0;                                                      \
        for (int64_t i = 0; i < n / SW_QK_K; i++) {                        \
            long isum = 0;                                                 \
            for (int ib = 0; ib < 8; ib++) {                               \
                int m = SUB(&x[i], ib, v);                                 \
                isum += (long)m * dot_i8(v, y[i].qs + 32 * ib, 32);        \
            }                                                              \
            s += (double)y[i].d * H2F(x[i].d) * (double)isum * (K);        \
        }                                                                  \
        return (float)s;                                                   \
    }

SUB_DOT(vec_dot_iq3_xxs_q8_K, struct sw_block_iq3_xxs, iq3_xxs_sub, 0.25)
SUB_DOT(vec_dot_iq3_s_q8_K, struct sw_block_iq3_s, iq3_s_sub, 1.0)
SUB_DOT(vec_dot_iq1_s_q8_K, struct sw_block_iq1_s, iq1_s_sub, 0.125)

static float vec_dot_iq1_m_q8_K(int64_t n, const void *w, const void *a)
{
    const struct sw_block_iq1_m *x = w;
    const struct sw_block_q8_K *y = a;
    int8_t v[32];
    int m[2];
    double s = 0;
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        long isum = 0;
        for (int ib = 0; ib < 8; ib++) {
            iq1_m_sub(&x[i], ib, v, m);
            isum += (long)m[0] * dot_i8(v, y[i].qs + 32 * ib, 16) + (long)m[1] * dot_i8(v + 16, y[i].qs + 32 * ib + 16, 16);
        }
        s += (double)y[i].d * H2F(sw__k_iq1_m_d(&x[i])) * (double)isum * 0.125;
    }
    return (float)s;
}

/* ------------------------------------------------------------ row x tokens, table */

REF_ROWDOT(rowdot_iq3_xxs, vec_dot_iq3_xxs_q8_K)
REF_ROWDOT(rowdot_iq3_s, vec_dot_iq3_s_q8_K)
REF_ROWDOT(rowdot_iq1_s, vec_dot_iq1_s_q8_K)
REF_ROWDOT(rowdot_iq1_m, vec_dot_iq1_m_q8_K)

void sw__k_fill_ref_iq3(struct sw_k_type_impl *tab, int n_tab)
{
    const sw_k_quant_fn q8k = sw__k_quantize_q8_K_ref;
    sw__k_set_ref(tab, n_tab, SW_TYPE_IQ3_XXS, "IQ3_XXS", SW_QK_K, sizeof(struct sw_block_iq3_xxs), SW_TYPE_Q8_K,
                  dequant_iq3_xxs, q8k, vec_dot_iq3_xxs_q8_K, rowdot_iq3_xxs);
    sw__k_set_ref(tab, n_tab, SW_TYPE_IQ3_S, "IQ3_S", SW_QK_K, sizeof(struct sw_block_iq3_s), SW_TYPE_Q8_K,
                  dequant_iq3_s, q8k, vec_dot_iq3_s_q8_K, rowdot_iq3_s);
    sw__k_set_ref(tab, n_tab, SW_TYPE_IQ1_S, "IQ1_S", SW_QK_K, sizeof(struct sw_block_iq1_s), SW_TYPE_Q8_K,
                  dequant_iq1_s, q8k, vec_dot_iq1_s_q8_K, rowdot_iq1_s);
    sw__k_set_ref(tab, n_tab, SW_TYPE_IQ1_M, "IQ1_M", SW_QK_K, sizeof(struct sw_block_iq1_m), SW_TYPE_Q8_K,
                  dequant_iq1_m, q8k, vec_dot_iq1_m_q8_K, rowdot_iq1_m);
}
