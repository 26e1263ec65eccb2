/* kernels_ref.c — the scalar reference kernels: fp16/bf16 conversion, dequantization and
 * dot products for every supported type. This file is the specification the SIMD families
 * are tested against; it favours clarity (and double accumulation) over speed.
 * Block layouts: ggml-common.h as written into GGUF tensor data (see kernels.h). */
#include <math.h>

#include "infer/kernels_iq2.h"
#include "infer/kernels_impl.h"
#include "infer/kernels_iq3.h"

/* ------------------------------------------------------------ fp16 / bf16 */

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* IEEE 754 binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
float sw_k_f16_to_f32(sw_f16 h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) { /* zero or subnormal: man * 2^-24 */
        float f = (float)man * (1.0f / 16777216.0f);
        return f32_from_bits(sign | f32_bits(f));
    }
    if (exp == 31) return f32_from_bits(sign | 0x7f800000u | (man << 13)); /* inf / NaN */
    return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

sw_f16 sw_k_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (sw_f16)(sign | 0x7e00 | ((ax >> 13) & 0x3ff)); /* quiet NaN */
    if (ax >= 0x477ff000u) return (sw_f16)(sign | 0x7c00); /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) {                                /* below 2^-14: subnormal half */
        float v = f32_from_bits(ax) * 16777216.0f;         /* in units of 2^-24, exact */
        return (sw_f16)(sign | (uint16_t)lrintf(v));       /* round to nearest even */
    }
    uint32_t m = ax - 0x38000000u; /* rebias exponent 127 -> 15 */
    m = (m + 0xfffu + ((m >> 13) & 1)) >> 13; /* round to nearest even; carry may bump exponent */
    return (sw_f16)(sign | m);
}

sw_bf16 sw_k_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (sw_bf16)((x >> 16) | 0x40); /* quiet NaN */
    return (sw_bf16)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

static void f16_to_f32_row_ref(const sw_f16 *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = sw_k_f16_to_f32(x[i]);
}

static void f32_to_f16_row_ref(const float *x, sw_f16 *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = sw_k_f32_to_f16(x[i]);
}

static void bf16_to_f32_row_ref(const sw_bf16 *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = sw_k_bf16_to_f32(x[i]);
}

#define H2F(h) sw_k_f16_to_f32(h)

/* ------------------------------------------------------------ dequantize */

static void dequant_f32(const void *src, float *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void dequant_f16(const void *src, float *dst, int64_t n)
{
    f16_to_f32_row_ref(src, dst, n);
}

static void dequant_bf16(const void *src, float *dst, int64_t n)
{
    bf16_to_f32_row_ref(src, dst, n);
}

/* Q4_0: y[j] = d*(lo(qs[j]) - 8), y[j+16] = d*(hi(qs[j]) - 8). */
static void dequant_q4_0(const void *src, float *y, int64_t n)
{
    const struct sw_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / SW_QK4_0; i++, b++, y += SW_QK4_0) {
        float d = H2F(b->d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)((b->qs[j] & 0xF) - 8);
            y[j + 16] = d * (float)((b->qs[j] >> 4) - 8);
        }
    }
}

/* Q4_1: y = d*q + m. */
static void dequant_q4_1(const void *src, float *y, int64_t n)
{
    const struct sw_block_q4_1 *b = src;
    for (int64_t i = 0; i < n / SW_QK4_1; i++, b++, y += SW_QK4_1) {
        float d = H2F(b->d), m = H2F(b->m);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)(b->qs[j] & 0xF) + m;
            y[j + 16] = d * (float)(b->qs[j] >> 4) + m;
        }
    }
}

static inline uint32_t load_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Q5_0: 5th bit of element j is bit j of qh; y = d*(q - 16). */
static void dequant_q5_0(const void *src, float *y, int64_t n)
{
    const struct sw_block_q5_0 *b = src;
    for (int64_t i = 0; i < n / SW_QK5_0; i++, b++, y += SW_QK5_0) {
        float d = H2F(b->d);
        uint32_t qh = load_u32le(b->qh);
        for (int j = 0; j < 16; j++) {
            int q0 = (b->qs[j] & 0xF) | (int)(((qh >> j) & 1) << 4);
            int q1 = (b->qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = d * (float)(q0 - 16);
            y[j + 16] = d * (float)(q1 - 16);
        }
    }
}

static void dequant_q5_1(const void *src, float *y, int64_t n)
{
    const struct sw_block_q5_1 *b = src;
    for (int64_t i = 0; i < n / SW_QK5_1; i++, b++, y += SW_QK5_1) {
        float d = H2F(b->d), m = H2F(b->m);
        uint32_t qh = load_u32le(b->qh);
        for (int j = 0; j < 16; j++) {
            int q0 = (b->qs[j] & 0xF) | (int)(((qh >> j) & 1) << 4);
            int q1 = (b->qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = d * (float)q0 + m;
            y[j + 16] = d * (float)q1 + m;
        }
    }
}

static void dequant_q8_0(const void *src, float *y, int64_t n)
{
    const struct sw_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / SW_QK8_0; i++, b++, y += SW_QK8_0) {
        float d = H2F(b->d);
        for (int j = 0; j < SW_QK8_0; j++) y[j] = d * (float)b->qs[j];
    }
}

/* Q4_K: per 64 elements, 32 low nibbles use (sc,m) 2g, 32 high nibbles use 2g+1. */
static void dequant_q4_K(const void *src, float *y, int64_t n)
{
    const struct sw_block_q4_K *b = src;
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++) {
        float d = H2F(b->d), dmin = H2F(b->dmin);
        const uint8_t *q = b->qs;
        for (int g = 0; g < 4; g++, q += 32) {
            uint8_t sc0, m0, sc1, m1;
            sw__k_scale_min_k4(2 * g, b->scales, &sc0, &m0);
            sw__k_scale_min_k4(2 * g + 1, b->scales, &sc1, &m1);
            float d0 = d * sc0, mm0 = dmin * m0, d1 = d * sc1, mm1 = dmin * m1;
            for (int l = 0; l < 32; l++) *y++ = d0 * (float)(q[l] & 0xF) - mm0;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] >> 4) - mm1;
        }
    }
}

/* Q5_K: as Q4_K; bit 2g of qh[l] is bit 4 of the low-nibble element l, bit 2g+1 of the high. */
static void dequant_q5_K(const void *src, float *y, int64_t n)
{
    const struct sw_block_q5_K *b = src;
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++) {
        float d = H2F(b->d), dmin = H2F(b->dmin);
        const uint8_t *q = b->qs;
        for (int g = 0; g < 4; g++, q += 32) {
            uint8_t sc0, m0, sc1, m1;
            sw__k_scale_min_k4(2 * g, b->scales, &sc0, &m0);
            sw__k_scale_min_k4(2 * g + 1, b->scales, &sc1, &m1);
            float d0 = d * sc0, mm0 = dmin * m0, d1 = d * sc1, mm1 = dmin * m1;
            for (int l = 0; l < 32; l++)
                *y++ = d0 * (float)((q[l] & 0xF) | (((b->qh[l] >> (2 * g)) & 1) << 4)) - mm0;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)((q[l] >> 4) | (((b->qh[l] >> (2 * g + 1)) & 1) << 4)) - mm1;
        }
    }
}

/* Q6_K element e (0..255) as its 6-bit unsigned code and sub-block scale index. Halves of
 * 128: element h*128 + 32*k + l takes ql[h*64 + l + 32*(k&1)] nibble (k>>1), and bits
 * 2k..2k+1 of qh[h*32 + l]; its scale is scales[h*8 + 2k + l/16]. */
static inline int q6_K_code(const struct sw_block_q6_K *b, int e, int *scale_idx)
{
    int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
    uint8_t lo = b->ql[h * 64 + l + 32 * (k & 1)];
    int low4 = (k >> 1) ? (lo >> 4) : (lo & 0xF);
    int hi2 = (b->qh[h * 32 + l] >> (2 * k)) & 3;
    *scale_idx = h * 8 + 2 * k + l / 16;
    return low4 | (hi2 << 4);
}

static void dequant_q6_K(const void *src, float *y, int64_t n)
{
    const struct sw_block_q6_K *b = src;
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++) {
        float d = H2F(b->d);
        for (int e = 0; e < SW_QK_K; e++) {
            int is;
            int q = q6_K_code(b, e, &is);
            *y++ = d * (float)b->scales[is] * (float)(q - 32);
        }
    }
}

static void dequant_q8_K(const void *src, float *y, int64_t n)
{
    const struct sw_block_q8_K *b = src;
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++)
        for (int j = 0; j < SW_QK_K; j++) *y++ = b->d * (float)b->qs[j];
}

/* ------------------------------------------------------------ activation quantizers */

/* Q8_0: d = max|x| / 127, q = round(x / d). */
void sw__k_quantize_q8_0_ref(const float *x, void *dst, int64_t n)
{
    struct sw_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / SW_QK8_0; i++, b++, x += SW_QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < SW_QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = sw_k_f32_to_f16(d);
        for (int j = 0; j < SW_QK8_0; j++) b->qs[j] = (int8_t)lrintf(x[j] * id);
    }
}

void sw__k_quantize_q8_0_sums_ref(const float *x, void *dst, float *ds, int64_t n)
{
    sw__k_quantize_q8_0_ref(x, dst, n);
    const struct sw_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / SW_QK8_0; i++, b++) {
        int s = 0;
        for (int j = 0; j < SW_QK8_0; j++) s += b->qs[j];
        ds[2 * i] = H2F(b->d);
        ds[2 * i + 1] = H2F(b->d) * (float)s;
    }
}

/* Q8_K: d = max|x| / 127 (f32), q = round(x / d), bsums over each 16. */
void sw__k_quantize_q8_K_ref(const float *x, void *dst, int64_t n)
{
    struct sw_block_q8_K *b = dst;
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++, x += SW_QK_K) {
        float amax = 0.0f;
        for (int j = 0; j < SW_QK_K; j++) amax = fmaxf(amax, fabsf(x[j]));
        if (amax == 0.0f) {
            memset(b, 0, sizeof(*b));
            continue;
        }
        float id = 127.0f / amax;
        for (int j = 0; j < SW_QK_K; j++) {
            long v = lrintf(x[j] * id);
            b->qs[j] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        }
        for (int j = 0; j < SW_QK_K / 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += b->qs[16 * j + l];
            b->bsums[j] = (int16_t)s;
        }
        b->d = 1.0f / id;
    }
}

/* ------------------------------------------------------------ dot products */
/* Reference dots accumulate integer block sums exactly and the float sum in double. */

static float vec_dot_f32(int64_t n, const void *w, const void *a)
{
    const float *x = w, *y = a;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * y[i];
    return (float)s;
}

static float vec_dot_f16_f32(int64_t n, const void *w, const void *a)
{
    const sw_f16 *x = w;
    const float *y = a;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)H2F(x[i]) * y[i];
    return (float)s;
}

static float vec_dot_bf16_f32(int64_t n, const void *w, const void *a)
{
    const sw_bf16 *x = w;
    const float *y = a;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)sw_k_bf16_to_f32(x[i]) * y[i];
    return (float)s;
}

static float vec_dot_q8_0_q8_0(int64_t n, const void *w, const void *a)
{
    const struct sw_block_q8_0 *x = w, *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / SW_QK8_0; i++) {
        int isum = 0;
        for (int j = 0; j < SW_QK8_0; j++) isum += x[i].qs[j] * y[i].qs[j];
        s += (double)H2F(x[i].d) * H2F(y[i].d) * isum;
    }
    return (float)s;
}

static float vec_dot_q4_0_q8_0(int64_t n, const void *w, const void *a)
{
    const struct sw_block_q4_0 *x = w;
    const struct sw_block_q8_0 *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / SW_QK4_0; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++)
            isum += ((x[i].qs[j] & 0xF) - 8) * y[i].qs[j] + ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
        s += (double)H2F(x[i].d) * H2F(y[i].d) * isum;
    }
    return (float)s;
}

static float vec_dot_q4_1_q8_0(int64_t n, const void *w, const void *a)
{
    const struct sw_block_q4_1 *x = w;
    const struct sw_block_q8_0 *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / SW_QK4_1; i++) {
        int isum = 0, asum = 0;
        for (int j = 0; j < 16; j++) {
            isum += (x[i].qs[j] & 0xF) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + 16];
            asum += y[i].qs[j] + y[i].qs[j + 16];
        }
        double dy = H2F(y[i].d);
        s += (double)H2F(x[i].d) * dy * isum + (double)H2F(x[i].m) * dy * asum;
    }
    return (float)s;
}

static float vec_dot_q5_0_q8_0(int64_t n, const void *w, const void *a)
{
    const struct sw_block_q5_0 *x = w;
    const struct sw_block_q8_0 *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / SW_QK5_0; i++) {
        uint32_t qh = load_u32le(x[i].qh);
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = ((x[i].qs[j] & 0xF) | (int)(((qh >> j) & 1) << 4)) - 16;
            int q1 = ((x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4)) - 16;
            isum += q0 * y[i].qs[j] + q1 * y[i].qs[j + 16];
        }
        s += (double)H2F(x[i].d) * H2F(y[i].d) * isum;
    }
    return (float)s;
}

static float vec_dot_q5_1_q8_0(int64_t n, const void *w, const void *a)
{
    const struct sw_block_q5_1 *x = w;
    const struct sw_block_q8_0 *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / SW_QK5_1; i++) {
        uint32_t qh = load_u32le(x[i].qh);
        int isum = 0, asum = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = (x[i].qs[j] & 0xF) | (int)(((qh >> j) & 1) << 4);
            int q1 = (x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            isum += q0 * y[i].qs[j] + q1 * y[i].qs[j + 16];
            asum += y[i].qs[j] + y[i].qs[j + 16];
        }
        double dy = H2F(y[i].d);
        s += (double)H2F(x[i].d) * dy * isum + (double)H2F(x[i].m) * dy * asum;
    }
    return (float)s;
}

/* Q8_K . Q8_K = sum_b d_w * d_a * <q_w, q_a>: Q8_K weights (the K-quants' activation
 * layout, which a GGUF may hold as a matrix). */
static float vec_dot_q8_K_q8_K(int64_t n, const void *w, const void *a)
{
    const struct sw_block_q8_K *x = w;
    const struct sw_block_q8_K *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        long sum = 0;
        for (int j = 0; j < SW_QK_K; j++) sum += (long)x[i].qs[j] * y[i].qs[j];
        s += (double)x[i].d * (double)y[i].d * (double)sum;
    }
    return (float)s;
}

/* Q4_K . Q8_K = sum_b d_a * (d * sum_j sc_j * <q_j, a_j> - dmin * sum_j m_j * sum(a_j)). */
static float vec_dot_q4_K_q8_K(int64_t n, const void *w, const void *a)
{
    const struct sw_block_q4_K *x = w;
    const struct sw_block_q8_K *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        long sum_q = 0, sum_m = 0;
        const uint8_t *q = x[i].qs;
        const int8_t *qa = y[i].qs;
        for (int g = 0; g < 4; g++, q += 32, qa += 64) {
            uint8_t sc0, m0, sc1, m1;
            sw__k_scale_min_k4(2 * g, x[i].scales, &sc0, &m0);
            sw__k_scale_min_k4(2 * g + 1, x[i].scales, &sc1, &m1);
            int d0 = 0, d1 = 0;
            for (int l = 0; l < 32; l++) {
                d0 += (q[l] & 0xF) * qa[l];
                d1 += (q[l] >> 4) * qa[l + 32];
            }
            sum_q += (long)sc0 * d0 + (long)sc1 * d1;
            sum_m += (long)m0 * (y[i].bsums[4 * g] + y[i].bsums[4 * g + 1]) +
                     (long)m1 * (y[i].bsums[4 * g + 2] + y[i].bsums[4 * g + 3]);
        }
        s += (double)y[i].d * ((double)H2F(x[i].d) * sum_q - (double)H2F(x[i].dmin) * sum_m);
    }
    return (float)s;
}

static float vec_dot_q5_K_q8_K(int64_t n, const void *w, const void *a)
{
    const struct sw_block_q5_K *x = w;
    const struct sw_block_q8_K *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        long sum_q = 0, sum_m = 0;
        const uint8_t *q = x[i].qs, *qh = x[i].qh;
        const int8_t *qa = y[i].qs;
        for (int g = 0; g < 4; g++, q += 32, qa += 64) {
            uint8_t sc0, m0, sc1, m1;
            sw__k_scale_min_k4(2 * g, x[i].scales, &sc0, &m0);
            sw__k_scale_min_k4(2 * g + 1, x[i].scales, &sc1, &m1);
            int d0 = 0, d1 = 0;
            for (int l = 0; l < 32; l++) {
                d0 += ((q[l] & 0xF) | (((qh[l] >> (2 * g)) & 1) << 4)) * qa[l];
                d1 += ((q[l] >> 4) | (((qh[l] >> (2 * g + 1)) & 1) << 4)) * qa[l + 32];
            }
            sum_q += (long)sc0 * d0 + (long)sc1 * d1;
            sum_m += (long)m0 * (y[i].bsums[4 * g] + y[i].bsums[4 * g + 1]) +
                     (long)m1 * (y[i].bsums[4 * g + 2] + y[i].bsums[4 * g + 3]);
        }
        s += (double)y[i].d * ((double)H2F(x[i].d) * sum_q - (double)H2F(x[i].dmin) * sum_m);
    }
    return (float)s;
}

static float vec_dot_q6_K_q8_K(int64_t n, const void *w, const void *a)
{
    const struct sw_block_q6_K *x = w;
    const struct sw_block_q8_K *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        long sub[16] = {0};
        for (int e = 0; e < SW_QK_K; e++) {
            int is;
            int q = q6_K_code(&x[i], e, &is);
            sub[is] += (long)(q - 32) * y[i].qs[e];
        }
        long isum = 0;
        for (int j = 0; j < 16; j++) isum += (long)x[i].scales[j] * sub[j];
        s += (double)y[i].d * H2F(x[i].d) * (double)isum;
    }
    return (float)s;
}

/* ------------------------------------------------------------ row x tokens (reference) */

REF_ROWDOT(rowdot_f32, vec_dot_f32)
REF_ROWDOT(rowdot_f16, vec_dot_f16_f32)
REF_ROWDOT(rowdot_bf16, vec_dot_bf16_f32)
REF_ROWDOT(rowdot_q8_0, vec_dot_q8_0_q8_0)
REF_ROWDOT(rowdot_q4_0, vec_dot_q4_0_q8_0)
REF_ROWDOT(rowdot_q4_1, vec_dot_q4_1_q8_0)
REF_ROWDOT(rowdot_q5_0, vec_dot_q5_0_q8_0)
REF_ROWDOT(rowdot_q5_1, vec_dot_q5_1_q8_0)
REF_ROWDOT(rowdot_q4_K, vec_dot_q4_K_q8_K)
REF_ROWDOT(rowdot_q5_K, vec_dot_q5_K_q8_K)
REF_ROWDOT(rowdot_q8_K, vec_dot_q8_K_q8_K)
REF_ROWDOT(rowdot_q6_K, vec_dot_q6_K_q8_K)

/* ------------------------------------------------------------ table */

void sw__k_set_ref(struct sw_k_type_impl *tab, int n_tab, uint32_t type, const char *name, uint32_t bs,
                   uint32_t ts, uint32_t act, sw_k_dequant_fn dq, sw_k_quant_fn qa, sw_k_vec_dot_fn dot,
                   sw_k_rowdot_fn rowdot)
{
    if ((int)type >= n_tab) return;
    struct sw_k_type_impl *e = &tab[type];
    memset(e, 0, sizeof(*e));
    e->pub.type = type;
    e->pub.name = name;
    e->pub.block_size = bs;
    e->pub.type_size = ts;
    e->pub.act_type = act;
    e->pub.dequantize_row = dq;
    e->pub.quantize_act = qa;
    e->pub.vec_dot = dot;
    e->rowdot = rowdot;
}

#define set sw__k_set_ref

void sw__k_fill_ref(struct sw_k_type_impl *tab, int n_tab)
{
    const sw_k_quant_fn q80 = sw__k_quantize_q8_0_ref, q8k = sw__k_quantize_q8_K_ref;
    set(tab, n_tab, SW_TYPE_F32, "F32", 1, 4, SW_TYPE_F32, dequant_f32, NULL, vec_dot_f32, rowdot_f32);
    set(tab, n_tab, SW_TYPE_F16, "F16", 1, 2, SW_TYPE_F32, dequant_f16, NULL, vec_dot_f16_f32, rowdot_f16);
    set(tab, n_tab, SW_TYPE_BF16, "BF16", 1, 2, SW_TYPE_F32, dequant_bf16, NULL, vec_dot_bf16_f32,
        rowdot_bf16);
    set(tab, n_tab, SW_TYPE_Q8_0, "Q8_0", SW_QK8_0, sizeof(struct sw_block_q8_0), SW_TYPE_Q8_0, dequant_q8_0,
        q80, vec_dot_q8_0_q8_0, rowdot_q8_0);
    set(tab, n_tab, SW_TYPE_Q4_0, "Q4_0", SW_QK4_0, sizeof(struct sw_block_q4_0), SW_TYPE_Q8_0, dequant_q4_0,
        q80, vec_dot_q4_0_q8_0, rowdot_q4_0);
    set(tab, n_tab, SW_TYPE_Q4_1, "Q4_1", SW_QK4_1, sizeof(struct sw_block_q4_1), SW_TYPE_Q8_0, dequant_q4_1,
        q80, vec_dot_q4_1_q8_0, rowdot_q4_1);
    set(tab, n_tab, SW_TYPE_Q5_0, "Q5_0", SW_QK5_0, sizeof(struct sw_block_q5_0), SW_TYPE_Q8_0, dequant_q5_0,
        q80, vec_dot_q5_0_q8_0, rowdot_q5_0);
    set(tab, n_tab, SW_TYPE_Q5_1, "Q5_1", SW_QK5_1, sizeof(struct sw_block_q5_1), SW_TYPE_Q8_0, dequant_q5_1,
        q80, vec_dot_q5_1_q8_0, rowdot_q5_1);
    set(tab, n_tab, SW_TYPE_Q4_K, "Q4_K", SW_QK_K, sizeof(struct sw_block_q4_K), SW_TYPE_Q8_K, dequant_q4_K,
        q8k, vec_dot_q4_K_q8_K, rowdot_q4_K);
    set(tab, n_tab, SW_TYPE_Q5_K, "Q5_K", SW_QK_K, sizeof(struct sw_block_q5_K), SW_TYPE_Q8_K, dequant_q5_K,
        q8k, vec_dot_q5_K_q8_K, rowdot_q5_K);
    set(tab, n_tab, SW_TYPE_Q6_K, "Q6_K", SW_QK_K, sizeof(struct sw_block_q6_K), SW_TYPE_Q8_K, dequant_q6_K,
        q8k, vec_dot_q6_K_q8_K, rowdot_q6_K);
    /* Q8_K: the K-quants' activation type, also read as weights (reference kernel only) */
    set(tab, n_tab, SW_TYPE_Q8_K, "Q8_K", SW_QK_K, sizeof(struct sw_block_q8_K), SW_TYPE_Q8_K, dequant_q8_K,
        q8k, vec_dot_q8_K_q8_K, rowdot_q8_K);
    sw__k_fill_ref_low(tab, n_tab); /* Q2_K, Q3_K, IQ4_NL, IQ4_XS, MXFP4 */
    sw__k_fill_ref_iq2(tab, n_tab); /* IQ2_XXS, IQ2_XS, IQ2_S */
    sw__k_fill_ref_iq3(tab, n_tab); /* IQ3_XXS, IQ3_S, IQ1_S, IQ1_M */
}

#undef set

/* ------------------------------------------------------------ vector helpers */

static float dot_f32_ref(int64_t n, const float *x, const float *y)
{
    return vec_dot_f32(n, x, y);
}

static float dot_f16_f32_ref(int64_t n, const sw_f16 *x, const float *y)
{
    return vec_dot_f16_f32(n, x, y);
}

static void axpy_f32_ref(int64_t n, float a, const float *x, float *y)
{
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void axpy_f16_ref(int64_t n, float a, const sw_f16 *x, float *y)
{
    for (int64_t i = 0; i < n; i++) y[i] += a * H2F(x[i]);
}

static void scale_f32_ref(int64_t n, float a, float *y)
{
    for (int64_t i = 0; i < n; i++) y[i] *= a;
}

void sw__k_vec_ops_ref(struct sw_k_vec_ops *ops)
{
    ops->dot_f32 = dot_f32_ref;
    ops->dot_f16_f32 = dot_f16_f32_ref;
    ops->axpy_f32 = axpy_f32_ref;
    ops->axpy_f16 = axpy_f16_ref;
    ops->scale_f32 = scale_f32_ref;
    ops->f16_to_f32_row = f16_to_f32_row_ref;
    ops->f32_to_f16_row = f32_to_f16_row_ref;
    ops->bf16_to_f32_row = bf16_to_f32_row_ref;
    ops->quant_q8_0_sums = sw__k_quantize_q8_0_sums_ref;
}
