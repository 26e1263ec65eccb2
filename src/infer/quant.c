/* quant.c — reference weight quantizers (what `synth` writes) and sw_k_quantize_row.
 * Every type with kernels has one: Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, the K-quants Q2_K..Q6_K,
 * IQ4_NL/IQ4_XS, MXFP4.
 * Scales are chosen as ggml does in spirit: symmetric max-based for Q4_0/Q8_0, and for
 * K-quants a small search over candidate scales with a least-squares refit per sub-block,
 * then 6/8-bit quantization of the sub-block scales against a super-block scale.
 * Not for: activations in the hot path (kernels_ref.c / the SIMD files). */
#include <math.h>

#include "infer/kernels_iq2.h"
#include "infer/kernels_impl.h"
#include "infer/kernels_iq3.h"

static inline int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Candidate inverse scales tried per sub-block: nmax +- 1 in steps of 0.25 (9 candidates;
 * ggml tries 21 in steps of 0.1 — on random synth weights the difference is noise, the
 * time is not: 1.1B weights). */
#define SEARCH_STEPS 4
#define SEARCH_DELTA 0.25f

/* Round to nearest, ties to even, for |x| < 2^22: adding 1.5 * 2^23 leaves the rounded
 * integer in the low mantissa bits (lrintf is a library call in the search loops). */
static inline int nearest_int(float x)
{
    float v = x + 12582912.0f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

/* Q4_0: d = m / -8 where m is the value of largest magnitude (keeps its sign on the -8
 * end), q = clamp(round(x/d) + 8, 0, 15). */
void sw__k_quantize_q4_0_ref(const float *x, void *dst, int64_t n)
{
    struct sw_block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / SW_QK4_0; i++, b++, x += SW_QK4_0) {
        float amax = 0.0f, mx = 0.0f;
        for (int j = 0; j < SW_QK4_0; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                mx = x[j];
            }
        float d = mx / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = sw_k_f32_to_f16(d);
        for (int j = 0; j < 16; j++) {
            int q0 = clampi((int)(x[j] * id + 8.5f), 0, 15);
            int q1 = clampi((int)(x[j + 16] * id + 8.5f), 0, 15);
            b->qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* Fits x ~= scale * q - min with q in [0, nmax] (min >= 0), weighting errors by w.
 * Tries a few candidate inverse scales around (nmax / range) and refits scale/min by
 * least squares for each; writes the best q into L. Returns scale, *min_out = min. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *min_out)
{
    float lo = x[0], hi = x[0], sw = 0, swx = 0, swx2 = 0;
    for (int i = 0; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
        sw += w[i];
        swx += w[i] * x[i];
        swx2 += w[i] * x[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi <= lo) {
        memset(L, 0, (size_t)n);
        *min_out = -lo;
        return 0.0f;
    }
    float best_scale = (hi - lo) / nmax, best_min = -lo, best_err = 0;
    for (int i = 0; i < n; i++) {
        int q = clampi(nearest_int((x[i] - lo) / best_scale), 0, nmax);
        L[i] = (uint8_t)q;
        float e = best_scale * q + lo - x[i];
        best_err += w[i] * e * e;
    }
    uint8_t Laux[32];
    for (int k = -SEARCH_STEPS; k <= SEARCH_STEPS; k++) {
        float iscale = (SEARCH_DELTA * k + nmax) / (hi - lo);
        float sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            int q = clampi(nearest_int(iscale * (x[i] - lo)), 0, nmax);
            Laux[i] = (uint8_t)q;
            sl += w[i] * q;
            sl2 += w[i] * q * q;
            sxl += w[i] * q * x[i];
        }
        float det = sw * sl2 - sl * sl;
        if (det <= 0) continue;
        float scale = (sw * sxl - swx * sl) / det;
        float mn = (sl2 * swx - sl * sxl) / det; /* x ~= scale*q + mn */
        if (mn > 0) {                              /* min must stay >= 0 after negation */
            mn = 0;
            scale = sl2 > 0 ? sxl / sl2 : 0;
        }
        if (scale <= 0) continue;
        /* weighted squared error from the sums: sum w (scale*q + mn - x)^2 */
        float err = scale * scale * sl2 + 2 * scale * mn * sl - 2 * scale * sxl + mn * mn * sw - 2 * mn * swx + swx2;
        if (err < best_err) {
            best_err = err;
            best_scale = scale;
            best_min = -mn;
            memcpy(L, Laux, (size_t)n);
        }
    }
    *min_out = best_min;
    return best_scale;
}

/* Packs 8 six-bit scales and mins into the 12-byte Q4_K/Q5_K layout (inverse of
 * sw__k_scale_min_k4). */
static void pack_scales_k4(const uint8_t *ls, const uint8_t *lm, uint8_t *s)
{
    for (int j = 0; j < 4; j++) {
        s[j] = ls[j];
        s[j + 4] = lm[j];
    }
    for (int j = 4; j < 8; j++) {
        s[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
        s[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
        s[j] |= (uint8_t)((lm[j] >> 4) << 6);
    }
}

/* Shared Q4_K / Q5_K body: per super-block, 8 sub-blocks of 32 fitted with q in
 * [0, nmax], sub-scales/mins quantized to 6 bits against d = max/63, dmin = max/63. */
static void quantize_k4(const float *x, int nmax, uint16_t *d_out, uint16_t *dmin_out, uint8_t *scales,
                        uint8_t *q /* 256 codes */)
{
    float sc[8], mn[8], w[32];
    uint8_t L[32];
    float max_sc = 0, max_mn = 0;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sum2 = 0;
        for (int l = 0; l < 32; l++) sum2 += xs[l] * xs[l];
        float av = sqrtf(sum2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av + fabsf(xs[l]); /* emphasise large values */
        sc[j] = fit_scale_min(32, nmax, xs, w, L, &mn[j]);
        max_sc = fmaxf(max_sc, sc[j]);
        max_mn = fmaxf(max_mn, mn[j]);
    }
    float inv_sc = max_sc > 0 ? 63.0f / max_sc : 0, inv_mn = max_mn > 0 ? 63.0f / max_mn : 0;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = (uint8_t)clampi(nearest_int(inv_sc * sc[j]), 0, 63);
        lm[j] = (uint8_t)clampi(nearest_int(inv_mn * mn[j]), 0, 63);
    }
    *d_out = sw_k_f32_to_f16(max_sc / 63.0f);
    *dmin_out = sw_k_f32_to_f16(max_mn / 63.0f);
    memset(scales, 0, SW_K_SCALE_SIZE);
    pack_scales_k4(ls, lm, scales);
    float d = sw_k_f16_to_f32(*d_out), dmin = sw_k_f16_to_f32(*dmin_out);
    for (int j = 0; j < 8; j++) {
        float ds = d * ls[j], dm = dmin * lm[j];
        for (int l = 0; l < 32; l++)
            q[32 * j + l] = ds > 0 ? (uint8_t)clampi(nearest_int((x[32 * j + l] + dm) / ds), 0, nmax) : 0;
    }
}

void sw__k_quantize_q4_K_ref(const float *x, void *dst, int64_t n)
{
    struct sw_block_q4_K *b = dst;
    uint8_t q[SW_QK_K];
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++, x += SW_QK_K) {
        quantize_k4(x, 15, &b->d, &b->dmin, b->scales, q);
        /* qs group g: sub-block 2g in low nibbles, 2g+1 in high */
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++)
                b->qs[32 * g + l] = (uint8_t)(q[64 * g + l] | (q[64 * g + 32 + l] << 4));
    }
}

void sw__k_quantize_q5_K_ref(const float *x, void *dst, int64_t n)
{
    struct sw_block_q5_K *b = dst;
    uint8_t q[SW_QK_K];
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++, x += SW_QK_K) {
        quantize_k4(x, 31, &b->d, &b->dmin, b->scales, q);
        memset(b->qh, 0, sizeof(b->qh));
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) {
                uint8_t q0 = q[64 * g + l], q1 = q[64 * g + 32 + l];
                b->qs[32 * g + l] = (uint8_t)((q0 & 0xF) | ((q1 & 0xF) << 4));
                b->qh[l] |= (uint8_t)(((q0 >> 4) << (2 * g)) | ((q1 >> 4) << (2 * g + 1)));
            }
    }
}

/* Symmetric fit x ~= scale * q, q in [-nmax, nmax-1], weighting by w: candidates around
 * -nmax / (signed max), least-squares refit. Writes q + nmax into L. */
static float fit_scale_sym(int n, int nmax, const float *x, const float *w, uint8_t *L)
{
    float amax = 0, mx = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            mx = x[i];
        }
    if (amax == 0) {
        for (int i = 0; i < n; i++) L[i] = (uint8_t)nmax;
        return 0;
    }
    float best_scale = 0, best_err = INFINITY;
    for (int k = -SEARCH_STEPS; k <= SEARCH_STEPS; k++) {
        float iscale = -(nmax + SEARCH_DELTA * k) / mx;
        float sxl = 0, sl2 = 0;
        uint8_t Laux[16];
        for (int i = 0; i < n; i++) {
            int q = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            Laux[i] = (uint8_t)(q + nmax);
            sxl += w[i] * x[i] * q;
            sl2 += w[i] * q * q;
        }
        if (sl2 <= 0) continue;
        /* with the least-squares scale sxl/sl2 the error is swx2 - sxl^2/sl2: maximise sxl^2/sl2 */
        float scale = sxl / sl2, err = -sxl * sxl / sl2;
        if (err < best_err) {
            best_err = err;
            best_scale = scale;
            memcpy(L, Laux, (size_t)n);
        }
    }
    return best_scale;
}

/* The entry of v[0..n) with the largest magnitude, sign kept (0 when all are 0): the
 * K-quants' signed sub-scale maximum. */
static float signed_absmax(const float *v, int n)
{
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(v[j]) > amax) {
            amax = fabsf(v[j]);
            max = v[j];
        }
    return max;
}

/* Q6_K: 16 sub-blocks of 16, q in [-32, 31], int8 sub-scales against d = max|scale| / 127. */
void sw__k_quantize_q6_K_ref(const float *x, void *dst, int64_t n)
{
    struct sw_block_q6_K *b = dst;
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++, x += SW_QK_K) {
        float sc[16], w[16];
        uint8_t L[SW_QK_K];
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) w[l] = x[16 * j + l] * x[16 * j + l] + 1e-12f;
            sc[j] = fit_scale_sym(16, 32, x + 16 * j, w, L + 16 * j);
        }
        const float max_sc = signed_absmax(sc, 16);
        memset(b, 0, sizeof(*b));
        if (max_sc == 0) {
            for (int e = 0; e < SW_QK_K; e++) L[e] = 32;
        } else {
            float iscale = -128.0f / max_sc;
            b->d = sw_k_f32_to_f16(1.0f / iscale);
            float d = sw_k_f16_to_f32(b->d);
            for (int j = 0; j < 16; j++) {
                int s = clampi(nearest_int(iscale * sc[j]), -128, 127);
                b->scales[j] = (int8_t)s;
                float ds = d * s;
                for (int l = 0; l < 16; l++) {
                    int q = ds != 0 ? clampi(nearest_int(x[16 * j + l] / ds), -32, 31) : 0;
                    L[16 * j + l] = (uint8_t)(q + 32);
                }
            }
        }
        /* element h*128 + 32k + l -> ql[h*64 + l + 32*(k&1)] nibble k>>1, qh[h*32+l] bits 2k */
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < 32; l++) {
                    uint8_t q = L[h * 128 + 32 * k + l];
                    b->ql[h * 64 + l + 32 * (k & 1)] |= (uint8_t)((q & 0xF) << (4 * (k >> 1)));
                    b->qh[h * 32 + l] |= (uint8_t)((q >> 4) << (2 * k));
                }
    }
}

/* ------------------------------------------------------------ Q4_1, Q5_0, Q5_1 */

/* Q4_1 / Q5_1: x ~= d*q + m with m = min, d = (max - min) / nmax, round to nearest. */
static float fit_min_max(const float *x, int nmax, float *m_out)
{
    float lo = x[0], hi = x[0];
    for (int j = 1; j < 32; j++) {
        lo = fminf(lo, x[j]);
        hi = fmaxf(hi, x[j]);
    }
    *m_out = lo;
    return (hi - lo) / (float)nmax;
}

void sw__k_quantize_q4_1_ref(const float *x, void *dst, int64_t n)
{
    struct sw_block_q4_1 *b = dst;
    for (int64_t i = 0; i < n / SW_QK4_1; i++, b++, x += SW_QK4_1) {
        float m, d = fit_min_max(x, 15, &m);
        b->d = sw_k_f32_to_f16(d);
        b->m = sw_k_f32_to_f16(m);
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 16; j++) {
            int q0 = clampi(nearest_int((x[j] - m) * id), 0, 15);
            int q1 = clampi(nearest_int((x[j + 16] - m) * id), 0, 15);
            b->qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* 32 five-bit codes -> 16 nibble bytes + the 32-bit qh word (bit j = bit 4 of code j). */
static void pack_q5(const int *q, uint8_t *qs, uint8_t *qh)
{
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
        h |= (uint32_t)(q[j] >> 4) << j | (uint32_t)(q[j + 16] >> 4) << (j + 16);
    }
    for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(h >> (8 * k)); /* little-endian */
}

/* Q5_0: as Q4_0 with 5 bits: d = m / -16, q = clamp(round(x/d) + 16, 0, 31). */
void sw__k_quantize_q5_0_ref(const float *x, void *dst, int64_t n)
{
    struct sw_block_q5_0 *b = dst;
    for (int64_t i = 0; i < n / SW_QK5_0; i++, b++, x += SW_QK5_0) {
        float amax = 0.0f, mx = 0.0f;
        for (int j = 0; j < 32; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                mx = x[j];
            }
        float d = mx / -16.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = sw_k_f32_to_f16(d);
        int q[32];
        for (int j = 0; j < 32; j++) q[j] = clampi((int)(x[j] * id + 16.5f), 0, 31);
        pack_q5(q, b->qs, b->qh);
    }
}

void sw__k_quantize_q5_1_ref(const float *x, void *dst, int64_t n)
{
    struct sw_block_q5_1 *b = dst;
    for (int64_t i = 0; i < n / SW_QK5_1; i++, b++, x += SW_QK5_1) {
        float m, d = fit_min_max(x, 31, &m);
        b->d = sw_k_f32_to_f16(d);
        b->m = sw_k_f32_to_f16(m);
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        int q[32];
        for (int j = 0; j < 32; j++) q[j] = clampi(nearest_int((x[j] - m) * id), 0, 31);
        pack_q5(q, b->qs, b->qh);
    }
}

/* ------------------------------------------------------------ Q2_K, Q3_K */

/* Q2_K: 16 sub-blocks of 16 fitted with q in [0, 3] and a min (fit_scale_min), then the
 * sub-scales and mins quantized to 4 bits against d = max/15 and dmin = max/15, and the
 * codes chosen again with the stored scales. */
void sw__k_quantize_q2_K_ref(const float *x, void *dst, int64_t n)
{
    struct sw_block_q2_K *b = dst;
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++, x += SW_QK_K) {
        float sc[16], mn[16], w[16], max_sc = 0, max_mn = 0;
        uint8_t L[16];
        for (int j = 0; j < 16; j++) {
            const float *xs = x + 16 * j;
            float sum2 = 0;
            for (int l = 0; l < 16; l++) sum2 += xs[l] * xs[l];
            float av = sqrtf(sum2 / 16);
            for (int l = 0; l < 16; l++) w[l] = av + fabsf(xs[l]);
            sc[j] = fit_scale_min(16, 3, xs, w, L, &mn[j]);
            max_sc = fmaxf(max_sc, sc[j]);
            max_mn = fmaxf(max_mn, mn[j]);
        }
        memset(b, 0, sizeof(*b));
        float inv_sc = max_sc > 0 ? 15.0f / max_sc : 0, inv_mn = max_mn > 0 ? 15.0f / max_mn : 0;
        b->d = sw_k_f32_to_f16(max_sc / 15.0f);
        b->dmin = sw_k_f32_to_f16(max_mn / 15.0f);
        float d = sw_k_f16_to_f32(b->d), dmin = sw_k_f16_to_f32(b->dmin);
        for (int j = 0; j < 16; j++) {
            int ls = clampi(nearest_int(inv_sc * sc[j]), 0, 15), lm = clampi(nearest_int(inv_mn * mn[j]), 0, 15);
            b->scales[j] = (uint8_t)(ls | lm << 4);
            float ds = d * ls, dm = dmin * lm;
            for (int l = 0; l < 16; l++) {
                int e = 16 * j + l; /* element 128h + 32k + l' -> bits 2k of qs[32h + l'] */
                int q = ds > 0 ? clampi(nearest_int((x[e] + dm) / ds), 0, 3) : 0;
                b->qs[32 * (e / 128) + e % 32] |= (uint8_t)(q << (2 * ((e % 128) / 32)));
            }
        }
    }
}

/* Q3_K: 16 sub-blocks of 16 fitted symmetrically with q in [-4, 3] (fit_scale_sym), 6-bit
 * signed sub-scales against d = max / -32, codes chosen again with the stored scales. */
void sw__k_quantize_q3_K_ref(const float *x, void *dst, int64_t n)
{
    struct sw_block_q3_K *b = dst;
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++, x += SW_QK_K) {
        float sc[16], w[16];
        uint8_t L[16];
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) w[l] = x[16 * j + l] * x[16 * j + l] + 1e-12f;
            sc[j] = fit_scale_sym(16, 4, x + 16 * j, w, L);
        }
        const float max_sc = signed_absmax(sc, 16);
        memset(b, 0, sizeof(*b));
        float iscale = max_sc != 0 ? -32.0f / max_sc : 0;
        b->d = sw_k_f32_to_f16(max_sc != 0 ? 1.0f / iscale : 0);
        float d = sw_k_f16_to_f32(b->d);
        for (int j = 0; j < 16; j++) {
            int ls = clampi(nearest_int(iscale * sc[j]), -32, 31);
            int v = ls + 32; /* low 4 bits: nibble j/8 of byte j%8; high 2: bits 2(j/4) of byte 8+j%4 */
            b->scales[j % 8] |= (uint8_t)((v & 0xF) << (4 * (j / 8)));
            b->scales[8 + j % 4] |= (uint8_t)((v >> 4) << (2 * (j / 4)));
            float ds = d * ls;
            for (int l = 0; l < 16; l++) {
                int e = 16 * j + l;
                int q = ds != 0 ? clampi(nearest_int(x[e] / ds), -4, 3) : 0;
                int c = q + 4; /* low 2 bits -> qs, bit 2 (q >= 0) -> hmask */
                int h = e / 128, k = (e % 128) / 32, ll = e % 32;
                b->qs[32 * h + ll] |= (uint8_t)((c & 3) << (2 * k));
                b->hmask[ll] |= (uint8_t)((c >> 2) << (4 * h + k));
            }
        }
    }
}

/* ------------------------------------------------------------ IQ4_NL, IQ4_XS */

/* Index of the grid value nearest to v (grid sorted ascending): binary search over the
 * midpoints between neighbours. */
static inline int iq4_nearest(float v)
{
    static const float mid[15] = {-115.5f, -93.5f, -74.0f, -57.0f, -42.0f, -28.5f, -16.0f, -4.5f,
                                  7.0f,    19.0f,  31.5f,  45.5f,  61.0f,  79.0f,  101.0f};
    int idx = 0;
    for (int step = 8; step; step >>= 1)
        if (v > mid[idx + step - 1]) idx += step;
    return idx;
}

/* Fits 32 values as scale * grid[L]: candidate inverse scales -(127 + 8k) / m (m the value
 * of largest magnitude, so it lands near the grid's -127 end), k = -3..3, each refitted by
 * weighted least squares; keeps the best. Returns the scale (0 for an all-zero input). */
static float fit_iq4(const float *x, uint8_t *L)
{
    float amax = 0, mx = 0, w[32];
    for (int j = 0; j < 32; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            mx = x[j];
        }
    if (amax == 0) {
        memset(L, 8, 32); /* grid value 1, times scale 0 */
        return 0;
    }
    float sum2 = 0;
    for (int j = 0; j < 32; j++) sum2 += x[j] * x[j];
    float av = sqrtf(sum2 / 32);
    for (int j = 0; j < 32; j++) w[j] = av + fabsf(x[j]);
    float best = -1, best_scale = 0;
    uint8_t Laux[32];
    for (int k = -3; k <= 3; k++) {
        float iscale = -(127.0f + 8.0f * k) / mx, sxl = 0, sl2 = 0;
        for (int j = 0; j < 32; j++) {
            int q = iq4_nearest(iscale * x[j]);
            float v = sw__k_iq4nl_values[q];
            Laux[j] = (uint8_t)q;
            sxl += w[j] * x[j] * v;
            sl2 += w[j] * v * v;
        }
        /* error with the least-squares scale sxl/sl2 is sum w x^2 - sxl^2/sl2 */
        if (sl2 > 0 && sxl * sxl / sl2 > best) {
            best = sxl * sxl / sl2;
            best_scale = sxl / sl2;
            memcpy(L, Laux, 32);
        }
    }
    return best_scale;
}

static void pack_nibbles32(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
}

/* Codes of 32 values for a stored scale ds (grid value 1 -> 0 when ds is 0). */
static void assign_iq4(const float *x, float ds, uint8_t *L)
{
    float id = ds != 0 ? 1.0f / ds : 0;
    for (int j = 0; j < 32; j++) L[j] = (uint8_t)(ds != 0 ? iq4_nearest(x[j] * id) : 8);
}

void sw__k_quantize_iq4_nl_ref(const float *x, void *dst, int64_t n)
{
    struct sw_block_iq4_nl *b = dst;
    uint8_t L[32];
    for (int64_t i = 0; i < n / SW_QK4_NL; i++, b++, x += SW_QK4_NL) {
        b->d = sw_k_f32_to_f16(fit_iq4(x, L));
        assign_iq4(x, sw_k_f16_to_f32(b->d), L);
        pack_nibbles32(L, b->qs);
    }
}

/* IQ4_XS: each sub-block of 32 fitted as IQ4_NL, the 8 sub-scales quantized to 6 bits
 * (ls - 32 in [-32, 31]) against d = max / -32, codes chosen again with the stored scales. */
void sw__k_quantize_iq4_xs_ref(const float *x, void *dst, int64_t n)
{
    struct sw_block_iq4_xs *b = dst;
    uint8_t L[32];
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++, x += SW_QK_K) {
        float sc[8];
        for (int ib = 0; ib < 8; ib++) sc[ib] = fit_iq4(x + 32 * ib, L);
        const float max_sc = signed_absmax(sc, 8);
        memset(b, 0, sizeof(*b));
        float iscale = max_sc != 0 ? -32.0f / max_sc : 0;
        b->d = sw_k_f32_to_f16(max_sc != 0 ? 1.0f / iscale : 0);
        float d = sw_k_f16_to_f32(b->d);
        uint16_t sh = 0;
        for (int ib = 0; ib < 8; ib++) {
            int ls = clampi(nearest_int(iscale * sc[ib]), -32, 31), v = ls + 32;
            b->scales_l[ib / 2] |= (uint8_t)((v & 0xF) << (4 * (ib % 2)));
            sh |= (uint16_t)((v >> 4) << (2 * ib));
            assign_iq4(x + 32 * ib, d * ls, L);
            pack_nibbles32(L, b->qs + 16 * ib);
        }
        b->scales_h = sh;
    }
}

/* ------------------------------------------------------------ MXFP4 */

/* Code (0..15) of the doubled E2M1 value nearest to v: magnitude by the midpoints of
 * 0, 1, 2, 3, 4, 6, 8, 12, sign in bit 3 (never -0). */
static inline int mxfp4_nearest(float v)
{
    static const float mid[7] = {0.5f, 1.5f, 2.5f, 3.5f, 5.0f, 7.0f, 10.0f};
    float a = fabsf(v);
    int m = 0;
    while (m < 7 && a > mid[m]) m++;
    return m && v < 0 ? m | 8 : m;
}

/* MXFP4: the OCP choice of shared exponent, floor(log2(amax)) - 2 (emax of E2M1), and the
 * one above it (no clipping of the largest values); keeps the one with less squared error. */
void sw__k_quantize_mxfp4_ref(const float *x, void *dst, int64_t n)
{
    struct sw_block_mxfp4 *b = dst;
    for (int64_t i = 0; i < n / SW_QK_MXFP4; i++, b++, x += SW_QK_MXFP4) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        memset(b, 0, sizeof(*b));
        if (amax == 0 || !isfinite(amax)) continue;
        int e0 = clampi((int)floorf(log2f(amax)) - 2 + 127, 0, 253);
        float best = INFINITY;
        for (int e = e0; e <= e0 + 1; e++) {
            float d = sw__k_e8m0_half((uint8_t)e), err = 0; /* 1/d overflows for e = 0: divide */
            uint8_t L[32];
            for (int j = 0; j < 32; j++) {
                L[j] = (uint8_t)mxfp4_nearest(x[j] / d);
                float r = x[j] - d * (float)sw__k_mxfp4_values[L[j]];
                err += r * r;
            }
            if (err < best) {
                best = err;
                b->e = (uint8_t)e;
                pack_nibbles32(L, b->qs);
            }
        }
    }
}

int sw_k_quantize_row(uint32_t type, const float *src, void *dst, int64_t n)
{
    const struct sw_k_type *t = sw_k_type_get_impl(type, SW_K_IMPL_REF);
    if (!t) return SW_EUNSUPPORTED;
    if (n < 0 || n % t->block_size) return SW_EINVAL;
    switch (type) {
    case SW_TYPE_F32: memcpy(dst, src, (size_t)n * 4); return 0;
    case SW_TYPE_F16:
        for (int64_t i = 0; i < n; i++) ((sw_f16 *)dst)[i] = sw_k_f32_to_f16(src[i]);
        return 0;
    case SW_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) ((sw_bf16 *)dst)[i] = sw_k_f32_to_bf16(src[i]);
        return 0;
    case SW_TYPE_Q8_0: sw__k_quantize_q8_0_ref(src, dst, n); return 0;
    case SW_TYPE_Q4_0: sw__k_quantize_q4_0_ref(src, dst, n); return 0;
    case SW_TYPE_Q4_1: sw__k_quantize_q4_1_ref(src, dst, n); return 0;
    case SW_TYPE_Q5_0: sw__k_quantize_q5_0_ref(src, dst, n); return 0;
    case SW_TYPE_Q5_1: sw__k_quantize_q5_1_ref(src, dst, n); return 0;
    case SW_TYPE_Q2_K: sw__k_quantize_q2_K_ref(src, dst, n); return 0;
    case SW_TYPE_Q3_K: sw__k_quantize_q3_K_ref(src, dst, n); return 0;
    case SW_TYPE_IQ4_NL: sw__k_quantize_iq4_nl_ref(src, dst, n); return 0;
    case SW_TYPE_IQ4_XS: sw__k_quantize_iq4_xs_ref(src, dst, n); return 0;
    case SW_TYPE_MXFP4: sw__k_quantize_mxfp4_ref(src, dst, n); return 0;
    case SW_TYPE_IQ2_XXS: sw__k_quantize_iq2_xxs_ref(src, dst, n); return 0;
    case SW_TYPE_IQ2_XS: sw__k_quantize_iq2_xs_ref(src, dst, n); return 0;
    case SW_TYPE_IQ2_S: sw__k_quantize_iq2_s_ref(src, dst, n); return 0;
    case SW_TYPE_IQ3_XXS: sw__k_quantize_iq3_xxs_ref(src, dst, n); return 0;
    case SW_TYPE_IQ3_S: sw__k_quantize_iq3_s_ref(src, dst, n); return 0;
    case SW_TYPE_IQ1_S: sw__k_quantize_iq1_s_ref(src, dst, n); return 0;
    case SW_TYPE_IQ1_M: sw__k_quantize_iq1_m_ref(src, dst, n); return 0;
    case SW_TYPE_Q4_K: sw__k_quantize_q4_K_ref(src, dst, n); return 0;
    case SW_TYPE_Q5_K: sw__k_quantize_q5_K_ref(src, dst, n); return 0;
    case SW_TYPE_Q6_K: sw__k_quantize_q6_K_ref(src, dst, n); return 0;
    case SW_TYPE_Q8_K: sw__k_quantize_q8_K_ref(src, dst, n); return 0;
    default: return SW_EUNSUPPORTED;
    }
}
