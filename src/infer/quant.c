/* quant.c — reference weight quantizers (what `synth` writes) and sw_k_quantize_row.
 * Scales are chosen as ggml does in spirit: symmetric max-based for Q4_0/Q8_0, and for
 * K-quants a small search over candidate scales with a least-squares refit per sub-block,
 * then 6/8-bit quantization of the sub-block scales against a super-block scale.
 * Not for: activations in the hot path (kernels_ref.c / the SIMD files). */
#include <math.h>

#include "infer/kernels_impl.h"

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

/* Q6_K: 16 sub-blocks of 16, q in [-32, 31], int8 sub-scales against d = max|scale| / 127. */
void sw__k_quantize_q6_K_ref(const float *x, void *dst, int64_t n)
{
    struct sw_block_q6_K *b = dst;
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++, x += SW_QK_K) {
        float sc[16], w[16], amax_sc = 0, max_sc = 0;
        uint8_t L[SW_QK_K];
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) w[l] = x[16 * j + l] * x[16 * j + l] + 1e-12f;
            sc[j] = fit_scale_sym(16, 32, x + 16 * j, w, L + 16 * j);
            if (fabsf(sc[j]) > amax_sc) {
                amax_sc = fabsf(sc[j]);
                max_sc = sc[j];
            }
        }
        memset(b, 0, sizeof(*b));
        if (amax_sc == 0) {
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
    case SW_TYPE_Q4_K: sw__k_quantize_q4_K_ref(src, dst, n); return 0;
    case SW_TYPE_Q5_K: sw__k_quantize_q5_K_ref(src, dst, n); return 0;
    case SW_TYPE_Q6_K: sw__k_quantize_q6_K_ref(src, dst, n); return 0;
    case SW_TYPE_Q8_K: sw__k_quantize_q8_K_ref(src, dst, n); return 0;
    default: return SW_EUNSUPPORTED;
    }
}
