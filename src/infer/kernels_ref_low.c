/* kernels_ref_low.c — the scalar reference kernels of the low-bit types people use to fit
 * 70B+ models on home machines: Q2_K, Q3_K, IQ4_NL, IQ4_XS and MXFP4 (dequantize and dot
 * products). Like kernels_ref.c, this file is the specification the SIMD families are
 * tested against: written for clarity, integer sums exact, float sums in double.
 * Block layouts: ggml-common.h as written into GGUF tensor data (see kernels.h).
 * Not for: quantizers (quant.c), SIMD (kernels_avx2_low.c). */
#include "infer/kernels_impl.h"

/* The IQ4_NL grid (also IQ4_XS's): 16 int8 values, denser near zero, that ggml defines for
 * the format (ggml-common.h kvalues_iq4nl). The values are part of the file format: a
 * different table would decode every IQ4 file wrongly. Provenance: docs/kernels.md. */
const int8_t sw__k_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* FP4 E2M1 (OCP Microscaling Formats spec v1.0, section 5.3.3): sign, 2 exponent bits
 * (bias 1), 1 mantissa bit; codes 0..7 are 0, 0.5, 1, 1.5, 2, 3, 4, 6 and 8..15 their
 * negatives. Stored doubled so they are integers; the block scale is halved to match. */
const int8_t sw__k_mxfp4_values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

#define H2F(h) sw_k_f16_to_f32(h)

/* ------------------------------------------------------------ code extraction */

/* Q2_K element e (0..255): 2-bit code; its sub-block is e/16. */
static inline int q2_K_code(const struct sw_block_q2_K *b, int e)
{
    int h = e / 128, k = (e % 128) / 32, l = e % 32;
    return (b->qs[32 * h + l] >> (2 * k)) & 3;
}

/* Q3_K element e: signed code in [-4, 3] (the high bit set means "no -4"). */
static inline int q3_K_code(const struct sw_block_q3_K *b, int e)
{
    int h = e / 128, k = (e % 128) / 32, l = e % 32;
    int lo = (b->qs[32 * h + l] >> (2 * k)) & 3;
    int hi = (b->hmask[l] >> (4 * h + k)) & 1;
    return lo - (hi ? 0 : 4);
}

/* 32 elements from 16 bytes of nibbles: element j low nibble of qs[j], j+16 the high one. */
static inline int nib32(const uint8_t *qs, int j)
{
    return j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4;
}

/* Integer dot of 32 nibble codes mapped through lut (IQ4_NL's or MXFP4's grid) with 32 int8. */
static inline int lut_dot32(const int8_t *lut, const uint8_t *qs, const int8_t *q)
{
    int dot = 0;
    for (int j = 0; j < 32; j++) dot += lut[nib32(qs, j)] * q[j];
    return dot;
}

/* ------------------------------------------------------------ dequantize */

static void dequant_q2_K(const void *src, float *y, int64_t n)
{
    const struct sw_block_q2_K *b = src;
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++) {
        float d = H2F(b->d), dmin = H2F(b->dmin);
        for (int e = 0; e < SW_QK_K; e++) {
            uint8_t sc = b->scales[e / 16];
            *y++ = d * (float)(sc & 0xF) * (float)q2_K_code(b, e) - dmin * (float)(sc >> 4);
        }
    }
}

static void dequant_q3_K(const void *src, float *y, int64_t n)
{
    const struct sw_block_q3_K *b = src;
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++) {
        float d = H2F(b->d);
        for (int e = 0; e < SW_QK_K; e++)
            *y++ = d * (float)(sw__k_q3_K_scale(b->scales, e / 16) - 32) * (float)q3_K_code(b, e);
    }
}

static void dequant_iq4_nl(const void *src, float *y, int64_t n)
{
    const struct sw_block_iq4_nl *b = src;
    for (int64_t i = 0; i < n / SW_QK4_NL; i++, b++) {
        float d = H2F(b->d);
        for (int j = 0; j < 32; j++) *y++ = d * (float)sw__k_iq4nl_values[nib32(b->qs, j)];
    }
}

static void dequant_iq4_xs(const void *src, float *y, int64_t n)
{
    const struct sw_block_iq4_xs *b = src;
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++) {
        float d = H2F(b->d);
        for (int ib = 0; ib < 8; ib++) {
            float dl = d * (float)(sw__k_iq4_xs_scale(b, ib) - 32);
            for (int j = 0; j < 32; j++) *y++ = dl * (float)sw__k_iq4nl_values[nib32(b->qs + 16 * ib, j)];
        }
    }
}

static void dequant_mxfp4(const void *src, float *y, int64_t n)
{
    const struct sw_block_mxfp4 *b = src;
    for (int64_t i = 0; i < n / SW_QK_MXFP4; i++, b++) {
        float d = sw__k_e8m0_half(b->e);
        for (int j = 0; j < 32; j++) *y++ = d * (float)sw__k_mxfp4_values[nib32(b->qs, j)];
    }
}

/* ------------------------------------------------------------ dot products */

/* Q2_K . Q8_K = sum_b d_a * (d * sum_j sc_j * <q_j, a_j> - dmin * sum_j m_j * bsums_j),
 * j over the 16 sub-blocks of 16 (which are exactly Q8_K's bsums groups). */
static float vec_dot_q2_K_q8_K(int64_t n, const void *w, const void *a)
{
    const struct sw_block_q2_K *x = w;
    const struct sw_block_q8_K *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        long sum_q = 0, sum_m = 0;
        for (int j = 0; j < 16; j++) {
            int dot = 0;
            for (int l = 0; l < 16; l++) dot += q2_K_code(&x[i], 16 * j + l) * y[i].qs[16 * j + l];
            sum_q += (long)(x[i].scales[j] & 0xF) * dot;
            sum_m += (long)(x[i].scales[j] >> 4) * y[i].bsums[j];
        }
        s += (double)y[i].d * ((double)H2F(x[i].d) * sum_q - (double)H2F(x[i].dmin) * sum_m);
    }
    return (float)s;
}

static float vec_dot_q3_K_q8_K(int64_t n, const void *w, const void *a)
{
    const struct sw_block_q3_K *x = w;
    const struct sw_block_q8_K *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        long isum = 0;
        for (int j = 0; j < 16; j++) {
            int dot = 0;
            for (int l = 0; l < 16; l++) dot += q3_K_code(&x[i], 16 * j + l) * y[i].qs[16 * j + l];
            isum += (long)(sw__k_q3_K_scale(x[i].scales, j) - 32) * dot;
        }
        s += (double)y[i].d * H2F(x[i].d) * (double)isum;
    }
    return (float)s;
}

static float vec_dot_iq4_nl_q8_0(int64_t n, const void *w, const void *a)
{
    const struct sw_block_iq4_nl *x = w;
    const struct sw_block_q8_0 *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / SW_QK4_NL; i++) {
        const int isum = lut_dot32(sw__k_iq4nl_values, x[i].qs, y[i].qs);
        s += (double)H2F(x[i].d) * H2F(y[i].d) * isum;
    }
    return (float)s;
}

static float vec_dot_iq4_xs_q8_K(int64_t n, const void *w, const void *a)
{
    const struct sw_block_iq4_xs *x = w;
    const struct sw_block_q8_K *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        long isum = 0;
        for (int ib = 0; ib < 8; ib++) {
            const int dot = lut_dot32(sw__k_iq4nl_values, x[i].qs + 16 * ib, y[i].qs + 32 * ib);
            isum += (long)(sw__k_iq4_xs_scale(&x[i], ib) - 32) * dot;
        }
        s += (double)y[i].d * H2F(x[i].d) * (double)isum;
    }
    return (float)s;
}

static float vec_dot_mxfp4_q8_0(int64_t n, const void *w, const void *a)
{
    const struct sw_block_mxfp4 *x = w;
    const struct sw_block_q8_0 *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / SW_QK_MXFP4; i++) {
        const int isum = lut_dot32(sw__k_mxfp4_values, x[i].qs, y[i].qs);
        s += (double)sw__k_e8m0_half(x[i].e) * H2F(y[i].d) * isum;
    }
    return (float)s;
}

/* ------------------------------------------------------------ row x tokens, table */

REF_ROWDOT(rowdot_q2_K, vec_dot_q2_K_q8_K)
REF_ROWDOT(rowdot_q3_K, vec_dot_q3_K_q8_K)
REF_ROWDOT(rowdot_iq4_nl, vec_dot_iq4_nl_q8_0)
REF_ROWDOT(rowdot_iq4_xs, vec_dot_iq4_xs_q8_K)
REF_ROWDOT(rowdot_mxfp4, vec_dot_mxfp4_q8_0)

void sw__k_fill_ref_low(struct sw_k_type_impl *tab, int n_tab)
{
    const sw_k_quant_fn q80 = sw__k_quantize_q8_0_ref, q8k = sw__k_quantize_q8_K_ref;
    sw__k_set_ref(tab, n_tab, SW_TYPE_Q2_K, "Q2_K", SW_QK_K, sizeof(struct sw_block_q2_K), SW_TYPE_Q8_K,
                  dequant_q2_K, q8k, vec_dot_q2_K_q8_K, rowdot_q2_K);
    sw__k_set_ref(tab, n_tab, SW_TYPE_Q3_K, "Q3_K", SW_QK_K, sizeof(struct sw_block_q3_K), SW_TYPE_Q8_K,
                  dequant_q3_K, q8k, vec_dot_q3_K_q8_K, rowdot_q3_K);
    sw__k_set_ref(tab, n_tab, SW_TYPE_IQ4_NL, "IQ4_NL", SW_QK4_NL, sizeof(struct sw_block_iq4_nl), SW_TYPE_Q8_0,
                  dequant_iq4_nl, q80, vec_dot_iq4_nl_q8_0, rowdot_iq4_nl);
    sw__k_set_ref(tab, n_tab, SW_TYPE_IQ4_XS, "IQ4_XS", SW_QK_K, sizeof(struct sw_block_iq4_xs), SW_TYPE_Q8_K,
                  dequant_iq4_xs, q8k, vec_dot_iq4_xs_q8_K, rowdot_iq4_xs);
    sw__k_set_ref(tab, n_tab, SW_TYPE_MXFP4, "MXFP4", SW_QK_MXFP4, sizeof(struct sw_block_mxfp4), SW_TYPE_Q8_0,
                  dequant_mxfp4, q80, vec_dot_mxfp4_q8_0, rowdot_mxfp4);
}
