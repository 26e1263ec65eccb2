/* kernels_avx2.c — AVX2 + FMA + F16C kernels. Compiled with those flags only for this
 * file and called only after CPUID says the CPU has them (kernels.c). Each function has
 * the shape and result of its reference in kernels_ref.c; tests/infer/test_kernels.c holds
 * them to it. Integer dot products use maddubs (u8 x s8 -> s16 pairs) then madd -> s32:
 * weights that are unsigned codes (Q4_0 nibbles, K-quant codes) go in the u8 operand,
 * their offsets are taken back with the activation block sums.
 * kernels_avx512.c includes this file with SW_K_X86_BODY_ONLY to compile the same kernels
 * with AVX-512VL available (32 vector registers: no spills in the 4-token K-quant loops).
 * Not for: AVX-512-only code (kernels_avx512.c). */
#include <immintrin.h>

#include "infer/kernels_impl.h"
#include "infer/kernels_x86.h"

/* ------------------------------------------------------------ conversions */

static void f16_to_f32_row_avx2(const sw_f16 *x, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) y[i] = h2f(x[i]);
}

static void f32_to_f16_row_avx2(const float *x, sw_f16 *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = sw_k_f32_to_f16(x[i]);
}

AI __m256 load_bf16x8(const sw_bf16 *p)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

static void bf16_to_f32_row_avx2(const sw_bf16 *x, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_bf16x8(x + i));
    for (; i < n; i++) y[i] = sw_k_bf16_to_f32(x[i]);
}

/* ------------------------------------------------------------ dequantize */

static void dequant_f16_avx2(const void *src, float *dst, int64_t n)
{
    f16_to_f32_row_avx2(src, dst, n);
}

static void dequant_bf16_avx2(const void *src, float *dst, int64_t n)
{
    bf16_to_f32_row_avx2(src, dst, n);
}

static void dequant_q8_0_avx2(const void *src, float *y, int64_t n)
{
    const struct sw_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / SW_QK8_0; i++, b++, y += 32) {
        __m256 d = _mm256_set1_ps(h2f(b->d));
        for (int k = 0; k < 4; k++) {
            __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b->qs + 8 * k)));
            _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
        }
    }
}

static void dequant_q4_0_avx2(const void *src, float *y, int64_t n)
{
    const struct sw_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / SW_QK4_0; i++, b++, y += 32) {
        __m256 d = _mm256_set1_ps(h2f(b->d));
        __m256i q = _mm256_sub_epi8(nibbles32(b->qs), _mm256_set1_epi8(8));
        __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
        _mm256_storeu_ps(y + 0, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
        _mm256_storeu_ps(y + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
        _mm256_storeu_ps(y + 16, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
        _mm256_storeu_ps(y + 24, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
    }
}

/* ------------------------------------------------------------ activation quantizers */

/* Q8_0 exactly as the reference (d = amax/127, id = 1/d, round to nearest even); also
 * writes {d, d*sum} pairs when ds is not NULL. */
AI void quant_q8_0_body(const float *x, void *dst, float *ds, int64_t n)
{
    struct sw_block_q8_0 *b = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t i = 0; i < n / SW_QK8_0; i++, b++, x += 32) {
        __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16),
               v3 = _mm256_loadu_ps(x + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = (sw_f16)_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        __m256 vid = _mm256_set1_ps(id);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, vid), SW_K_ROUND_NEAREST));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, vid), SW_K_ROUND_NEAREST));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, vid), SW_K_ROUND_NEAREST));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, vid), SW_K_ROUND_NEAREST));
        if (ds) {
            int s = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
            float df = h2f(b->d);
            ds[2 * i] = df;
            ds[2 * i + 1] = df * (float)s;
        }
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        _mm256_storeu_si256((__m256i *)b->qs, _mm256_permutevar8x32_epi32(p, perm));
    }
}

static void quant_q8_0_avx2(const float *x, void *dst, int64_t n)
{
    quant_q8_0_body(x, dst, NULL, n);
}

static void quant_q8_0_sums_avx2(const float *x, void *dst, float *ds, int64_t n)
{
    quant_q8_0_body(x, dst, ds, n);
}

/* Q8_K exactly as the reference: id = 127/amax, round to nearest even, bsums per 16. */
static void quant_q8_K_avx2(const float *x, void *dst, int64_t n)
{
    struct sw_block_q8_K *b = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++, x += SW_QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < 32; k++) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * k)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        if (amax == 0.0f) {
            memset(b, 0, sizeof(*b));
            continue;
        }
        float id = 127.0f / amax;
        __m256 vid = _mm256_set1_ps(id);
        for (int k = 0; k < 8; k++) { /* 32 elements: two bsum groups */
            const float *xk = x + 32 * k;
            __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xk), vid), SW_K_ROUND_NEAREST));
            __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xk + 8), vid), SW_K_ROUND_NEAREST));
            __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xk + 16), vid), SW_K_ROUND_NEAREST));
            __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xk + 24), vid), SW_K_ROUND_NEAREST));
            b->bsums[2 * k] = (int16_t)hsum_epi32(_mm256_add_epi32(i0, i1));
            b->bsums[2 * k + 1] = (int16_t)hsum_epi32(_mm256_add_epi32(i2, i3));
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
            _mm256_storeu_si256((__m256i *)(b->qs + 32 * k), _mm256_permutevar8x32_epi32(p, perm));
        }
        b->d = 1.0f / id;
    }
}

/* ------------------------------------------------------------ float weights */
/* F32, F16 and BF16 weights against f32 activations. Every kernel here sums each (row,
 * token) in one order: the 8-column chunks in sequence into one 8-lane accumulator (one
 * FMA chain), hsum_ps of it, then the scalar tail. So a token's outputs are the same bits
 * whichever kernel serves it — the row kernel, the few-token tile, the many-token tile —
 * and however many tokens or threads share the matmul (docs/kernels.md, "Batch
 * invariance"). One chain per (row, token) is latency-bound alone (a 4-cycle FMA), so the
 * tiles run 8 to 12 chains at once over several rows and tokens; the row kernel serves the
 * leftover rows of a matrix and vec_dot. */

#define FLOAT_ROWDOT(NAME, WT, LOADW, CVT1)                                                         \
    AI void NAME##_nt(int64_t n, const WT *w, const struct sw_k_act *a, const int NT, float *out)   \
    {                                                                                               \
        __m256 acc[SW_K_TILE_T];                                                                   \
        const float *x[SW_K_TILE_T];                                                               \
        for (int t = 0; t < NT; t++) {                                                             \
            acc[t] = _mm256_setzero_ps();                                                          \
            x[t] = a[t].q;                                                                         \
        }                                                                                          \
        int64_t i = 0;                                                                             \
        for (; i + 8 <= n; i += 8) {                                                               \
            const __m256 w0 = LOADW(w + i);                                                        \
            for (int t = 0; t < NT; t++) acc[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[t] + i), acc[t]); \
        }                                                                                          \
        for (int t = 0; t < NT; t++) {                                                             \
            float s = hsum_ps(acc[t]);                                                             \
            for (int64_t j = i; j < n; j++) s += CVT1(w[j]) * x[t][j];                             \
            out[t] = s;                                                                            \
        }                                                                                          \
    }

AI __m256 load_f32x8(const float *p)
{
    return _mm256_loadu_ps(p);
}
AI __m256 load_f16x8(const sw_f16 *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
AI float id_f32(float f)
{
    return f;
}

FLOAT_ROWDOT(f32, float, load_f32x8, id_f32)
FLOAT_ROWDOT(f16, sw_f16, load_f16x8, h2f)
FLOAT_ROWDOT(bf16, sw_bf16, load_bf16x8, sw_k_bf16_to_f32)

ROWDOT_DISPATCH(f32, float)
ROWDOT_DISPATCH(f16, sw_f16)
ROWDOT_DISPATCH(bf16, sw_bf16)

/* The register tiles. fm4: rows w0, w0 + ws, w0 + 2 ws, w0 + 3 ws (elements) x NT (1-3)
 * tokens x[0..NT-1], columns [c, kl) in 8-chunks, into acc[3 r + t] (loaded and stored
 * here, so a caller may carry them between column blocks): per 8 columns 4 weight + NT
 * activation loads for 4 NT FMAs, 12 accumulators + 3 x + 1 w of the 16 ymm at NT = 3.
 * Named accumulators: gcc keeps an array of them in memory. fm8: 8 rows x 1 token (the
 * matvec: 8 chains). */
#define FLOAT_FM(NAME, WT, LOADW)                                                                   \
    AI void fm4_##NAME(const WT *w0, size_t ws, const float *const *x, int64_t c, int64_t kl, __m256 *acc, \
                       const int NT)                                                                \
    {                                                                                               \
        const __m256 z = _mm256_setzero_ps();                                                       \
        __m256 a00 = acc[0], a01 = NT > 1 ? acc[1] : z, a02 = NT > 2 ? acc[2] : z;                  \
        __m256 a10 = acc[3], a11 = NT > 1 ? acc[4] : z, a12 = NT > 2 ? acc[5] : z;                  \
        __m256 a20 = acc[6], a21 = NT > 1 ? acc[7] : z, a22 = NT > 2 ? acc[8] : z;                  \
        __m256 a30 = acc[9], a31 = NT > 1 ? acc[10] : z, a32 = NT > 2 ? acc[11] : z;                \
        const WT *w1 = w0 + ws, *w2 = w1 + ws, *w3 = w2 + ws;                                       \
        const float *x0 = x[0], *x1 = NT > 1 ? x[1] : x[0], *x2 = NT > 2 ? x[2] : x[0];             \
        for (; c + 8 <= kl; c += 8) {                                                               \
            const __m256 y0 = _mm256_loadu_ps(x0 + c);                                              \
            const __m256 y1 = NT > 1 ? _mm256_loadu_ps(x1 + c) : z;                                 \
            const __m256 y2 = NT > 2 ? _mm256_loadu_ps(x2 + c) : z;                                 \
            __m256 w = LOADW(w0 + c);                                                               \
            a00 = _mm256_fmadd_ps(w, y0, a00);                                                      \
            if (NT > 1) a01 = _mm256_fmadd_ps(w, y1, a01);                                          \
            if (NT > 2) a02 = _mm256_fmadd_ps(w, y2, a02);                                          \
            w = LOADW(w1 + c);                                                                      \
            a10 = _mm256_fmadd_ps(w, y0, a10);                                                      \
            if (NT > 1) a11 = _mm256_fmadd_ps(w, y1, a11);                                          \
            if (NT > 2) a12 = _mm256_fmadd_ps(w, y2, a12);                                          \
            w = LOADW(w2 + c);                                                                      \
            a20 = _mm256_fmadd_ps(w, y0, a20);                                                      \
            if (NT > 1) a21 = _mm256_fmadd_ps(w, y1, a21);                                          \
            if (NT > 2) a22 = _mm256_fmadd_ps(w, y2, a22);                                          \
            w = LOADW(w3 + c);                                                                      \
            a30 = _mm256_fmadd_ps(w, y0, a30);                                                      \
            if (NT > 1) a31 = _mm256_fmadd_ps(w, y1, a31);                                          \
            if (NT > 2) a32 = _mm256_fmadd_ps(w, y2, a32);                                          \
        }                                                                                           \
        acc[0] = a00, acc[3] = a10, acc[6] = a20, acc[9] = a30;                                     \
        if (NT > 1) acc[1] = a01, acc[4] = a11, acc[7] = a21, acc[10] = a31;                        \
        if (NT > 2) acc[2] = a02, acc[5] = a12, acc[8] = a22, acc[11] = a32;                        \
    }                                                                                               \
    AI void fm8_##NAME(const WT *w0, size_t ws, const float *x0, int64_t kl, __m256 *acc)           \
    {                                                                                               \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0; \
        const WT *w1 = w0 + ws, *w2 = w1 + ws, *w3 = w2 + ws, *w4 = w3 + ws, *w5 = w4 + ws;         \
        const WT *w6 = w5 + ws, *w7 = w6 + ws;                                                      \
        for (int64_t c = 0; c + 8 <= kl; c += 8) {                                                  \
            const __m256 y = _mm256_loadu_ps(x0 + c);                                               \
            a0 = _mm256_fmadd_ps(LOADW(w0 + c), y, a0);                                             \
            a1 = _mm256_fmadd_ps(LOADW(w1 + c), y, a1);                                             \
            a2 = _mm256_fmadd_ps(LOADW(w2 + c), y, a2);                                             \
            a3 = _mm256_fmadd_ps(LOADW(w3 + c), y, a3);                                             \
            a4 = _mm256_fmadd_ps(LOADW(w4 + c), y, a4);                                             \
            a5 = _mm256_fmadd_ps(LOADW(w5 + c), y, a5);                                             \
            a6 = _mm256_fmadd_ps(LOADW(w6 + c), y, a6);                                             \
            a7 = _mm256_fmadd_ps(LOADW(w7 + c), y, a7);                                             \
        }                                                                                           \
        acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3, acc[4] = a4, acc[5] = a5, acc[6] = a6, acc[7] = a7; \
    }

FLOAT_FM(f32, float, load_f32x8)
FLOAT_FM(f16, sw_f16, load_f16x8)

/* A (row, token)'s result from its accumulator: its hsum, then the scalar tail. */
#define FLOAT_FINISH(NAME, WT, CVT1)                                                                \
    AI float fm_finish_##NAME(__m256 acc, const WT *wrow, const float *x, int64_t nv, int64_t n)    \
    {                                                                                               \
        float s = hsum_ps(acc);                                                                     \
        for (int64_t j = nv; j < n; j++) s += CVT1(wrow[j]) * x[j];                                 \
        return s;                                                                                   \
    }

FLOAT_FINISH(f32, float, id_f32)
FLOAT_FINISH(f16, sw_f16, h2f)
FLOAT_FINISH(bf16, sw_bf16, sw_k_bf16_to_f32)

/* fm4 with a run-time token count (1-3) bound to a constant one. */
#define FM4_NT(PASS, W, WS, X, C, KL, ACC, NT)                                                      \
    do {                                                                                            \
        if ((NT) == 3) PASS(W, WS, X, C, KL, ACC, 3);                                               \
        else if ((NT) == 2) PASS(W, WS, X, C, KL, ACC, 2);                                          \
        else PASS(W, WS, X, C, KL, ACC, 1);                                                         \
    } while (0)

/* Few tokens (1..SW_K_TILE_T) x nr rows: the matvec as 8-row x 1-token tiles, several
 * tokens as 4-row x up-to-3-token tiles (4 tokens as 2 + 2), the whole row in registers;
 * rows beyond the last group of 4 by the row kernel. */
#define FLOAT_TILE_FEW(NAME, WT, CVT1, PASS4, PASS8)                                                    \
    static void tile_##NAME(int64_t n, const void *w, size_t w_stride, int nr, const struct sw_k_act *a, int nt, \
                            float *out, size_t ldo)                                                 \
    {                                                                                               \
        const WT *wr = w;                                                                           \
        const size_t ws = w_stride / sizeof(WT);                                                    \
        const int64_t nv = n / 8 * 8;                                                               \
        int r = 0;                                                                                  \
        if (w_stride % sizeof(WT) == 0) {                                                           \
            if (nt == 1)                                                                            \
                for (; r + 8 <= nr; r += 8) {                                                       \
                    __m256 acc[8];                                                                  \
                    PASS8(wr + (size_t)r * ws, ws, (const float *)a[0].q, nv, acc);                 \
                    for (int i = 0; i < 8; i++)                                                     \
                        out[r + i] = fm_finish_##NAME(acc[i], wr + (size_t)(r + i) * ws, (const float *)a[0].q, nv, n); \
                }                                                                                   \
            for (; r + 4 <= nr; r += 4)                                                             \
                for (int t = 0; t < nt;) {                                                          \
                    const int k = nt - t == 4 ? 2 : nt - t < 3 ? nt - t : 3;                        \
                    const float *x[3] = {a[t].q, a[t + (k > 1)].q, a[t + (k > 2 ? 2 : 0)].q};       \
                    __m256 acc[12];                                                                 \
                    for (int i = 0; i < 12; i++) acc[i] = _mm256_setzero_ps();                      \
                    FM4_NT(PASS4, wr + (size_t)r * ws, ws, x, 0, nv, acc, k);                       \
                    for (int i = 0; i < 4; i++)                                                     \
                        for (int j = 0; j < k; j++)                                                 \
                            out[(size_t)(t + j) * ldo + r + i] =                                    \
                                fm_finish_##NAME(acc[3 * i + j], wr + (size_t)(r + i) * ws, x[j], nv, n); \
                    t += k;                                                                         \
                }                                                                                   \
        }                                                                                           \
        for (; r < nr; r++) {                                                                       \
            const void *wrow = (const uint8_t *)w + (size_t)r * w_stride;                           \
            for (int t = 0; t < nt; t += SW_K_TILE_T) {                                             \
                float o[SW_K_TILE_T];                                                               \
                const int k = nt - t < SW_K_TILE_T ? nt - t : SW_K_TILE_T;                          \
                rowdot_##NAME(n, wrow, a + t, k, o);                                                \
                for (int j = 0; j < k; j++) out[(size_t)(t + j) * ldo + r] = o[j];                  \
            }                                                                                       \
        }                                                                                           \
    }

/* The float tile for many tokens (`tile_many`, ops of more than SW_K_TILE_T tokens): FM_R
 * rows x up to SW_K_TILE_MANY tokens, column block by column block (KB columns): each
 * token triple's block of x is fetched once and serves the FM_R rows' 4 quads from L1,
 * and the accumulators of every (row, token) are carried in a stack array between blocks
 * (12 loads and stores per quad, triple and block: ~1.5 % of the 4 x 3 tile's loads at
 * KB = 1024). Weights are read (and F16/BF16 converted) in the loop: converting a block
 * once into a buffer bought nothing measurable (docs/kernels.md). */
#define FM_R 16
#define FM_Q (FM_R / 4) /* row quads */
#define FM_TRI ((SW_K_TILE_MANY + 2) / 3)

#define FLOAT_TILE_MANY(NAME, WT, CVT1, KB)                                                         \
    static void tile_many_##NAME(int64_t n, const void *w, size_t w_stride, int nr, const struct sw_k_act *a, \
                                 int nt, float *out, size_t ldo)                                    \
    {                                                                                               \
        if (nr != FM_R || nt > SW_K_TILE_MANY || w_stride % sizeof(WT)) { /* not what the matmul passes */ \
            for (int t0 = 0; t0 < nt; t0 += SW_K_TILE_T)                                            \
                tile_##NAME(n, w, w_stride, nr, a + t0, nt - t0 < SW_K_TILE_T ? nt - t0 : SW_K_TILE_T, \
                            out + (size_t)t0 * ldo, ldo);                                           \
            return;                                                                                 \
        }                                                                                           \
        __m256 acc[FM_TRI][FM_Q][12]; /* [triple][quad][row-major 4 x 3]: 33 KB */                  \
        const WT *wr = w;                                                                           \
        const size_t ws = w_stride / sizeof(WT);                                                    \
        const int ntr = (nt + 2) / 3;                                                               \
        memset(acc, 0, sizeof(acc[0]) * (size_t)ntr);                                               \
        const int64_t nv = n / 8 * 8; /* the vector part; the rest is the scalar tail */            \
        for (int64_t k0 = 0; k0 < nv; k0 += (KB)) {                                                 \
            const int64_t kl = nv - k0 < (KB) ? nv - k0 : (KB);                                     \
            for (int tr = 0; tr < ntr; tr++) {                                                      \
                const int t = 3 * tr, k = nt - t < 3 ? nt - t : 3;                                  \
                const float *x[3] = {(const float *)a[t].q + k0, (const float *)a[t + (k > 1)].q + k0, \
                                     (const float *)a[t + (k > 2 ? 2 : 0)].q + k0};                 \
                for (int q = 0; q < FM_Q; q++)                                                      \
                    FM4_NT(fm4_##NAME, wr + (size_t)4 * q * ws + k0, ws, x, 0, kl, acc[tr][q], k);  \
            }                                                                                       \
        }                                                                                           \
        for (int t = 0; t < nt; t++) {                                                              \
            const float *x = a[t].q;                                                                \
            for (int r = 0; r < FM_R; r++)                                                          \
                out[(size_t)t * ldo + r] =                                                          \
                    fm_finish_##NAME(acc[t / 3][r / 4][(r % 4) * 3 + t % 3], wr + (size_t)r * ws, x, nv, n); \
        }                                                                                           \
    }

FLOAT_TILE_FEW(f32, float, id_f32, fm4_f32, fm8_f32)
FLOAT_TILE_FEW(f16, sw_f16, h2f, fm4_f16, fm8_f16)
FLOAT_FM(bf16, sw_bf16, load_bf16x8)
FLOAT_TILE_FEW(bf16, sw_bf16, sw_k_bf16_to_f32, fm4_bf16, fm8_bf16)

FLOAT_TILE_MANY(f32, float, id_f32, 512)
FLOAT_TILE_MANY(f16, sw_f16, h2f, 1024)
FLOAT_TILE_MANY(bf16, sw_bf16, sw_k_bf16_to_f32, 1024)

/* ------------------------------------------------------------ Q4_0 / Q8_0 weights */

/* The fp16 scales of 4 consecutive blocks (any block type with `d` first) as floats. */
#define SCALES4(w)                                                                                  \
    _mm_cvtph_ps(_mm_setr_epi16((short)(w)[0].d, (short)(w)[1].d, (short)(w)[2].d, (short)(w)[3].d, 0, 0, 0, 0))

/* Block j's 32 codes as unsigned bytes: a broadcast load and one variable shift put the
 * low nibbles in bytes 0..15 and the high nibbles in 16..31. */
AI __m256i nibbles32_bc(const uint8_t *p)
{
    __m256i x = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return _mm256_and_si256(_mm256_srlv_epi64(x, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0F));
}

/* {d, d*sum} pairs of 4 blocks -> {d0 d1 d2 d3 | s0 s1 s2 s3}. */
AI __m256 pairs4(const float *ds)
{
    return _mm256_permutevar8x32_ps(_mm256_loadu_ps(ds), _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
}

/* Q4_0 / Q8_0 rows against NT tokens of Q8_0 activations with {d, d*sum} pairs (the matmul
 * path), 4 blocks at a time: each block's codes and the 4 scales are decoded once for all
 * tokens. Per token, the 4 blocks' integer dots are folded into one vector whose lane j
 * (of each 128-bit half) belongs to block j, so one convert and one FMA apply the 4 scales
 * dw * da: the multiply-add pipes, not the float ones, bound this loop, and this takes
 * 4 maddubs + 1 madd (Q4_0: hadd of int16, which cannot overflow: 16 products of u <= 15
 * and |a| <= 127) instead of 4 + 4. Q4_0's codes are unsigned (q + 8): its offset,
 * -8 * dw * da * sum(a), comes with the same multiply as the scales (the high half of
 * `sc`) and is summed apart in `cacc`. Q8_0 uses the sign trick and its int16 pair sums
 * can reach 32512, so it widens with madd first and folds int32. Odd last blocks: one
 * at a time. */
AI void q4_0_sums_nt(int64_t n, const struct sw_block_q4_0 *w, const struct sw_k_act *a, const int NT, float *out)
{
    __m256 acc[SW_K_TILE_T_MAX], cacc[SW_K_TILE_T_MAX];
    float tail[SW_K_TILE_T_MAX];
    for (int t = 0; t < NT; t++) {
        acc[t] = cacc[t] = _mm256_setzero_ps();
        tail[t] = 0;
    }
    const __m256i ones = _mm256_set1_epi16(1);
    const int64_t nb = n / SW_QK4_0;
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const __m256i u0 = nibbles32_bc(w[b].qs), u1 = nibbles32_bc(w[b + 1].qs);
        const __m256i u2 = nibbles32_bc(w[b + 2].qs), u3 = nibbles32_bc(w[b + 3].qs);
        const __m128 dw4 = SCALES4(w + b);
        const __m256 dwx = _mm256_set_m128(_mm_mul_ps(dw4, _mm_set1_ps(-8.0f)), dw4);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_0 *y = (const struct sw_block_q8_0 *)a[t].q + b;
            __m256i p0 = _mm256_maddubs_epi16(u0, _mm256_loadu_si256((const __m256i *)y[0].qs));
            __m256i p1 = _mm256_maddubs_epi16(u1, _mm256_loadu_si256((const __m256i *)y[1].qs));
            __m256i p2 = _mm256_maddubs_epi16(u2, _mm256_loadu_si256((const __m256i *)y[2].qs));
            __m256i p3 = _mm256_maddubs_epi16(u3, _mm256_loadu_si256((const __m256i *)y[3].qs));
            __m256i z = _mm256_madd_epi16(_mm256_hadd_epi16(_mm256_hadd_epi16(p0, p1), _mm256_hadd_epi16(p2, p3)), ones);
            __m256 sc = _mm256_mul_ps(dwx, pairs4(a[t].sums + 2 * b)); /* {dw*d | -8*dw*d*sum} */
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(z), _mm256_permute2f128_ps(sc, sc, 0x00), acc[t]);
            cacc[t] = _mm256_add_ps(cacc[t], sc);
        }
    }
    for (; b < nb; b++) {
        const __m256i u = nibbles32_bc(w[b].qs);
        const float dw = h2f(w[b].d);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_0 *y = (const struct sw_block_q8_0 *)a[t].q + b;
            acc[t] = _mm256_fmadd_ps(dot_us8(u, _mm256_loadu_si256((const __m256i *)y->qs)),
                                     _mm256_set1_ps(dw * a[t].sums[2 * b]), acc[t]);
            tail[t] += dw * a[t].sums[2 * b + 1];
        }
    }
    for (int t = 0; t < NT; t++)
        out[t] = hsum_ps(acc[t]) + hsum_ps(_mm256_permute2f128_ps(cacc[t], cacc[t], 0x81)) - 8.0f * tail[t];
}

AI void q8_0_sums_nt(int64_t n, const struct sw_block_q8_0 *w, const struct sw_k_act *a, const int NT, float *out)
{
    __m256 acc[SW_K_TILE_T_MAX];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    const int64_t nb = n / SW_QK8_0;
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const __m256i q0 = _mm256_loadu_si256((const __m256i *)w[b].qs);
        const __m256i q1 = _mm256_loadu_si256((const __m256i *)w[b + 1].qs);
        const __m256i q2 = _mm256_loadu_si256((const __m256i *)w[b + 2].qs);
        const __m256i q3 = _mm256_loadu_si256((const __m256i *)w[b + 3].qs);
        const __m256i aq0 = _mm256_sign_epi8(q0, q0), aq1 = _mm256_sign_epi8(q1, q1);
        const __m256i aq2 = _mm256_sign_epi8(q2, q2), aq3 = _mm256_sign_epi8(q3, q3);
        const __m128 dw4 = SCALES4(w + b);
        const __m256 dwx = _mm256_set_m128(dw4, dw4);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_0 *y = (const struct sw_block_q8_0 *)a[t].q + b;
#define Q8_M(k) _mm256_madd_epi16(_mm256_maddubs_epi16(aq##k, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)y[k].qs), q##k)), ones)
            __m256i z = _mm256_hadd_epi32(_mm256_hadd_epi32(Q8_M(0), Q8_M(1)), _mm256_hadd_epi32(Q8_M(2), Q8_M(3)));
#undef Q8_M
            __m256 d4 = pairs4(a[t].sums + 2 * b);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(z), _mm256_mul_ps(dwx, _mm256_permute2f128_ps(d4, d4, 0x00)), acc[t]);
        }
    }
    for (; b < nb; b++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)w[b].qs);
        const __m256i aq = _mm256_sign_epi8(q, q);
        const float dw = h2f(w[b].d);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_0 *y = (const struct sw_block_q8_0 *)a[t].q + b;
            __m256i s = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)y->qs), q);
            acc[t] = _mm256_fmadd_ps(dot_us8(aq, s), _mm256_set1_ps(dw * a[t].sums[2 * b]), acc[t]);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = hsum_ps(acc[t]);
}

/* Without activation sums (vec_dot): Q8_0 activation scales read from the blocks. */
AI void q8_0_nt(int64_t n, const struct sw_block_q8_0 *w, const struct sw_k_act *a, const int NT, float *out)
{
    if (a[0].sums) {
        q8_0_sums_nt(n, w, a, NT, out);
        return;
    }
    __m256 acc[SW_K_TILE_T];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    const int64_t nb = n / SW_QK8_0;
    for (int64_t b = 0; b < nb; b++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)w[b].qs);
        __m256i aq = _mm256_sign_epi8(q, q);
        float dw = h2f(w[b].d);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_0 *y = (const struct sw_block_q8_0 *)a[t].q + b;
            __m256i s = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)y->qs), q);
            acc[t] = _mm256_fmadd_ps(dot_us8(aq, s), _mm256_set1_ps(dw * h2f(y->d)), acc[t]);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = hsum_ps(acc[t]);
}

AI void q4_0_nt(int64_t n, const struct sw_block_q4_0 *w, const struct sw_k_act *a, const int NT, float *out)
{
    if (a[0].sums) {
        q4_0_sums_nt(n, w, a, NT, out);
        return;
    }
    __m256 acc[SW_K_TILE_T];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    const int64_t nb = n / SW_QK4_0;
    for (int64_t b = 0; b < nb; b++) {
        __m256i q = _mm256_sub_epi8(nibbles32(w[b].qs), _mm256_set1_epi8(8));
        float dw = h2f(w[b].d);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_0 *y = (const struct sw_block_q8_0 *)a[t].q + b;
            acc[t] = _mm256_fmadd_ps(dot_ss8(q, _mm256_loadu_si256((const __m256i *)y->qs)),
                                     _mm256_set1_ps(dw * h2f(y->d)), acc[t]);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = hsum_ps(acc[t]);
}

/* Up to 8 tokens per decoded row (max_nt) with sums; the no-sums path keeps 4. */
#define ROWDOT8_DISPATCH(NAME, WT)                                                                  \
    static void rowdot_##NAME(int64_t n, const void *w, const struct sw_k_act *a, int nt, float *out) \
    {                                                                                               \
        if (!a[0].sums && nt > SW_K_TILE_T) { /* never asked: max_nt is for the matmul path */     \
            rowdot_##NAME(n, w, a, SW_K_TILE_T, out);                                               \
            rowdot_##NAME(n, w, a + SW_K_TILE_T, nt - SW_K_TILE_T, out + SW_K_TILE_T);              \
            return;                                                                                 \
        }                                                                                           \
        switch (nt) {                                                                               \
        case 1: NAME##_nt(n, (const WT *)w, a, 1, out); break;                                     \
        case 2: NAME##_nt(n, (const WT *)w, a, 2, out); break;                                     \
        case 3: NAME##_nt(n, (const WT *)w, a, 3, out); break;                                     \
        case 4: NAME##_nt(n, (const WT *)w, a, 4, out); break;                                     \
        case 5: NAME##_sums_nt(n, (const WT *)w, a, 5, out); break;                                \
        case 6: NAME##_sums_nt(n, (const WT *)w, a, 6, out); break;                                \
        case 7: NAME##_sums_nt(n, (const WT *)w, a, 7, out); break;                                \
        default: NAME##_sums_nt(n, (const WT *)w, a, 8, out); break;                               \
        }                                                                                           \
    }                                                                                               \
    static float vec_dot_##NAME(int64_t n, const void *w, const void *act)                         \
    {                                                                                               \
        struct sw_k_act a = {act, NULL};                                                            \
        float out;                                                                                  \
        NAME##_nt(n, (const WT *)w, &a, 1, &out);                                                   \
        return out;                                                                                 \
    }

/* ------------------------------------------------------------ K-quants */

/* Q4_K/Q5_K sub-block scale j (of the 8 scale bytes in every 64-bit chunk of scb) in every
 * int16: one pshufb (index 0x80 zeroes the high byte) instead of a scalar extract and a
 * broadcast. */
AI __m256i kq4_scale(__m256i scb, int j)
{
    return _mm256_shuffle_epi8(scb, _mm256_set1_epi16((short)(0x8000 | j)));
}

/* Q4_K, one token and block: the exact integers S = sum_j sc_j <q_j, a_j> (over the 8
 * lanes of *s) and M = sum_j m_j * (bsums of sub-block j) (over the lanes of *m). */
AI void q4_K_isum(const struct sw_block_q4_K *x, const struct sw_block_q8_K *y, __m256i *s, __m256i *m)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    uint64_t sc, mn;
    sw__k_scales_min_k4_u64(x->scales, &sc, &mn);
    const __m128i mv = _mm_cvtsi64_si128((long long)mn);
    const __m256i mins16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mv, mv)); /* m0 m0 m1 m1 .. */
    const __m256i scb = _mm256_set1_epi64x((long long)sc);
    __m256i isum = _mm256_setzero_si256();
    for (int g = 0; g < 4; g++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * g));
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        const __m256i s0 = kq4_scale(scb, 2 * g), s1 = kq4_scale(scb, 2 * g + 1);
        const int8_t *qa = y->qs + 64 * g;
        __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)qa)), s0);
        __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(qa + 32))), s1);
        isum = _mm256_add_epi32(isum, _mm256_add_epi32(p0, p1));
    }
    *s = isum;
    *m = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), mins16);
}

/* Q4_K: per super-block the exact integers S = sum_j sc_j <q_j, a_j> and M = sum_j m_j
 * bsums_j, then acc = fma(S, d*da, acc) - M * dmin*da in scalar (kq_step_min): the step the
 * many-token tile (kernels_avx2_kq.c) takes per row lane, so both give the same bits. */
AI void q4_K_nt(int64_t n, const struct sw_block_q4_K *w, const struct sw_k_act *a, const int NT, float *out)
{
    float acc[SW_K_TILE_T];
    for (int t = 0; t < NT; t++) acc[t] = 0;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const int64_t nb = n / SW_QK_K;
    int64_t i = 0;
    if (NT == 1) { /* a matvec: four blocks' sums reduced by one hadd tree, then the steps in order */
        const struct sw_block_q8_K *y = a[0].q;
        for (; i + 4 <= nb; i += 4) {
            __m256i s[4], m[4];
            for (int k = 0; k < 4; k++) {
                pf_ahead(&w[i + k], 3); /* 144 bytes */
                q4_K_isum(&w[i + k], &y[i + k], &s[k], &m[k]);
            }
            int32_t S[4], M[4];
            hsum4x2_epi32(s, m, S, M);
            for (int k = 0; k < 4; k++)
                acc[0] = kq_step_min(acc[0], S[k], M[k], h2f(w[i + k].d), h2f(w[i + k].dmin), y[i + k].d);
        }
    }
    for (; i < nb; i++) {
        const struct sw_block_q4_K *x = &w[i];
        if (NT == 1) pf_ahead(x, 3);
        uint64_t sc, mn;
        sw__k_scales_min_k4_u64(x->scales, &sc, &mn);
        const __m128i mv = _mm_cvtsi64_si128((long long)mn);
        const __m256i mins16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mv, mv)); /* m0 m0 m1 m1 .. */
        const __m256i scb = _mm256_set1_epi64x((long long)sc);
        __m256i isum[SW_K_TILE_T];
        for (int t = 0; t < NT; t++) isum[t] = _mm256_setzero_si256();
        for (int g = 0; g < 4; g++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * g));
            __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            const __m256i s0 = kq4_scale(scb, 2 * g), s1 = kq4_scale(scb, 2 * g + 1);
            for (int t = 0; t < NT; t++) {
                const int8_t *qa = ((const struct sw_block_q8_K *)a[t].q)[i].qs + 64 * g;
                __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)qa)), s0);
                __m256i p1 =
                    _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(qa + 32))), s1);
                isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(p0, p1));
            }
        }
        const float d = h2f(x->d), dmin = h2f(x->dmin);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_K *y = &((const struct sw_block_q8_K *)a[t].q)[i];
            int32_t S, M;
            hsum2_epi32(isum[t], _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), mins16), &S, &M);
            acc[t] = kq_step_min(acc[t], S, M, d, dmin, y->d);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = acc[t];
}

/* Bit b (0..7) of every byte of qh moved to bit 4 (0x10): one 16-bit shift and a mask (bits
 * the shift carries across a byte boundary land outside the mask) - Q5_K's 5th code bit. */
AI __m256i q5_bit4(__m256i qh, int b)
{
    const __m256i m = _mm256_set1_epi8(0x10);
    return b <= 4 ? _mm256_and_si256(_mm256_slli_epi16(qh, 4 - b), m) : _mm256_and_si256(_mm256_srli_epi16(qh, b - 4), m);
}

/* Q5_K, one token and block: q4_K_isum's integers with the 5th bit: bit 2g / 2g+1 of qh[l]
 * for group g's low / high halves. */
AI void q5_K_isum(const struct sw_block_q5_K *x, const struct sw_block_q8_K *y, __m256i *s, __m256i *m)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    uint64_t sc, mn;
    sw__k_scales_min_k4_u64(x->scales, &sc, &mn);
    const __m128i mv = _mm_cvtsi64_si128((long long)mn);
    const __m256i mins16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mv, mv)); /* m0 m0 m1 m1 .. */
    const __m256i scb = _mm256_set1_epi64x((long long)sc);
    const __m256i qh = _mm256_loadu_si256((const __m256i *)x->qh);
    __m256i isum = _mm256_setzero_si256();
    for (int g = 0; g < 4; g++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * g));
        __m256i h0 = q5_bit4(qh, 2 * g), h1 = q5_bit4(qh, 2 * g + 1);
        __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
        __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1);
        const __m256i s0 = kq4_scale(scb, 2 * g), s1 = kq4_scale(scb, 2 * g + 1);
        const int8_t *qa = y->qs + 64 * g;
        __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)qa)), s0);
        __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(qa + 32))), s1);
        isum = _mm256_add_epi32(isum, _mm256_add_epi32(p0, p1));
    }
    *s = isum;
    *m = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), mins16);
}

/* Q5_K: Q4_K plus the 5th bit, the same integers and scalar steps. */
AI void q5_K_nt(int64_t n, const struct sw_block_q5_K *w, const struct sw_k_act *a, const int NT, float *out)
{
    float acc[SW_K_TILE_T];
    for (int t = 0; t < NT; t++) acc[t] = 0;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const int64_t nb = n / SW_QK_K;
    int64_t i = 0;
    if (NT == 1) {
        const struct sw_block_q8_K *y = a[0].q;
        for (; i + 4 <= nb; i += 4) {
            __m256i s[4], m[4];
            for (int k = 0; k < 4; k++) {
                pf_ahead(&w[i + k], 3); /* 176 bytes */
                q5_K_isum(&w[i + k], &y[i + k], &s[k], &m[k]);
            }
            int32_t S[4], M[4];
            hsum4x2_epi32(s, m, S, M);
            for (int k = 0; k < 4; k++)
                acc[0] = kq_step_min(acc[0], S[k], M[k], h2f(w[i + k].d), h2f(w[i + k].dmin), y[i + k].d);
        }
    }
    for (; i < nb; i++) {
        const struct sw_block_q5_K *x = &w[i];
        if (NT == 1) pf_ahead(x, 3);
        uint64_t sc, mn;
        sw__k_scales_min_k4_u64(x->scales, &sc, &mn);
        const __m128i mv = _mm_cvtsi64_si128((long long)mn);
        const __m256i mins16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mv, mv)); /* m0 m0 m1 m1 .. */
        const __m256i scb = _mm256_set1_epi64x((long long)sc);
        const __m256i qh = _mm256_loadu_si256((const __m256i *)x->qh);
        __m256i isum[SW_K_TILE_T];
        for (int t = 0; t < NT; t++) isum[t] = _mm256_setzero_si256();
        for (int g = 0; g < 4; g++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * g));
            __m256i h0 = q5_bit4(qh, 2 * g), h1 = q5_bit4(qh, 2 * g + 1);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1);
            const __m256i s0 = kq4_scale(scb, 2 * g), s1 = kq4_scale(scb, 2 * g + 1);
            for (int t = 0; t < NT; t++) {
                const int8_t *qa = ((const struct sw_block_q8_K *)a[t].q)[i].qs + 64 * g;
                __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)qa)), s0);
                __m256i p1 =
                    _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(qa + 32))), s1);
                isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(p0, p1));
            }
        }
        const float d = h2f(x->d), dmin = h2f(x->dmin);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_K *y = &((const struct sw_block_q8_K *)a[t].q)[i];
            int32_t S, M;
            hsum2_epi32(isum[t], _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), mins16), &S, &M);
            acc[t] = kq_step_min(acc[t], S, M, d, dmin, y->d);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = acc[t];
}

/* Q6_K: codes 0..63 unsigned in maddubs, per-16 int8 scales via madd, and the -32 offset
 * taken back as 32 * sum_j sc_j * bsums_j. */
AI void q6_K_nt(int64_t n, const struct sw_block_q6_K *w, const struct sw_k_act *a, const int NT, float *out)
{
    __m256 acc[SW_K_TILE_T];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        const struct sw_block_q6_K *x = &w[i];
        if (NT == 1) pf_ahead(x, 4); /* 210 bytes */
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
        __m256i isum[SW_K_TILE_T];
        for (int t = 0; t < NT; t++) isum[t] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            /* scales 8h..8h+7 (int16) in both 128-bit lanes: sub-block k's pair is then one
             * shuffle away (scale 8h+2k in the low lane, 8h+2k+1 in the high one) */
            const __m256i sch = h ? _mm256_permute4x64_epi64(sc16, 0xEE) : _mm256_permute4x64_epi64(sc16, 0x44);
            __m256i ql0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
            __m256i ql1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
            /* the 2 high bits of code k are bits 2k, 2k+1 of qh, wanted at bits 4, 5: one
             * 16-bit shift by 4 - 2k and the mask 0x30 (bits a shift carries across the
             * byte boundary land outside the mask) */
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
            q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
            for (int k = 0; k < 4; k++) {
                const __m256i sv = _mm256_shuffle_epi8(sch, _mm256_setr_epi8(
                    4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k,
                    4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2,
                    4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3,
                    4 * k + 2, 4 * k + 3));
                for (int t = 0; t < NT; t++) {
                    const int8_t *qa = ((const struct sw_block_q8_K *)a[t].q)[i].qs + 128 * h + 32 * k;
                    __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)qa));
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, sv));
                }
            }
        }
        float d = h2f(x->d);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_K *y = &((const struct sw_block_q8_K *)a[t].q)[i];
            __m256i off = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), sc16);
            __m256i tot = _mm256_sub_epi32(isum[t], _mm256_slli_epi32(off, 5));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(tot), _mm256_set1_ps(d * y->d), acc[t]);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = hsum_ps(acc[t]);
}

ROWDOT8_DISPATCH(q8_0, struct sw_block_q8_0)
ROWDOT8_DISPATCH(q4_0, struct sw_block_q4_0)
ROWDOT_DISPATCH(q4_K, struct sw_block_q4_K)
ROWDOT_DISPATCH(q5_K, struct sw_block_q5_K)
ROWDOT_DISPATCH(q6_K, struct sw_block_q6_K)


/* Q4_0 register tile: 8 rows x NT (1..4) tokens, one output row per 32-bit lane. Per block,
 * the 8 rows' 16 code bytes are transposed (4x4 words per 128-bit half) so that vector j
 * holds bytes 4j..4j+3 of every row: its low nibbles are elements 4j..4j+3, its high ones
 * 16+4j..; each is multiplied (maddubs) by the token's matching 4 activation bytes
 * broadcast to all lanes. The 8 products add up in int16 (8 x 2 x 15 x 127 = 30480 fits),
 * one madd widens them, and one FMA applies the 8 rows' scales times the token's. Per token
 * and block that is 17 integer ops for 8 rows where a row kernel needs about 5 per row: the
 * transpose is paid once per block for all tokens. Lanes: rows 0-3 | rows 4-7.
 * The accumulators are named variables, not an array (gcc kept an array of them on the
 * stack, and the store and load of each per block made a long chain per token and block),
 * and the products are taken code vector by code vector, all tokens at once, so a code
 * vector is live only while it is used: 4 transposed words + 4 int16 sums + 4 accumulators
 * + temporaries fit the 16 registers (with all 8 code vectors live, gcc spilled the
 * accumulators). Hence at most 4 tokens per pass. The int16 sums are exact in any order;
 * each token's float ops are the same for any NT (batch invariance). */
/* An empty asm that "changes" v: gcc's reassociation of integer adds would otherwise
 * regroup the int16 sums into a tree of all 8 x NT products first and spill them. */
#define KEEP_REG(v) __asm__("" : "+x"(v))

/* The float step of both Q4_0 tiles per token T and block b: one madd widens the int16 sums
 * S, one FMA applies the 8 rows' scales dw8 times the token's, one more adds the offset
 * -8 * dw * da * sum(a) (dw8o = -8 * dw8). */
#define Q4_FLOAT8(ACC, S, T)                                                                        \
    do {                                                                                            \
        const float *ds_ = a[T].sums + 2 * b;                                                       \
        __m256 f_ = _mm256_cvtepi32_ps(_mm256_madd_epi16(S, ones));                                 \
        ACC = _mm256_fmadd_ps(f_, _mm256_mul_ps(dw8, _mm256_broadcast_ss(ds_)), ACC);               \
        ACC = _mm256_fmadd_ps(dw8o, _mm256_broadcast_ss(ds_ + 1), ACC);                             \
    } while (0)

AI void q4_0_tile8_nt(int64_t n, const struct sw_block_q4_0 *w, size_t ws, const struct sw_k_act *a, const int NT,
                      float *out, size_t ldo)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0F);
    const __m256 m8 = _mm256_set1_ps(-8.0f);
    const int64_t nb = n / SW_QK4_0;
    /* The next tile's 8 rows are one contiguous run of 8 x nb blocks: per block, its next
     * 8 x 18 bytes (2.25 lines, so 3 prefetches) are prefetched, so it streams in while this
     * tile computes; the hardware prefetcher alone, following 8 rows 2304 bytes apart, left
     * a 1-token matvec ~25% slower (docs/kernels.md). Prefetches never fault, so the last
     * tile of a matrix may prefetch past its end. */
    const char *pf = (const char *)(w + 8 * ws);
    for (int64_t b = 0; b < nb; b++) {
        const struct sw_block_q4_0 *w0 = w + b;
        _mm_prefetch(pf + 8 * sizeof(*w) * b, _MM_HINT_T0);
        _mm_prefetch(pf + 8 * sizeof(*w) * b + 64, _MM_HINT_T0);
        _mm_prefetch(pf + 8 * sizeof(*w) * b + 128, _MM_HINT_T0);
#define ROWS_R(r)                                                                                   \
    _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)w0[(r) * ws].qs)), \
                            _mm_loadu_si128((const __m128i *)w0[((r) + 4) * ws].qs), 1)
        const __m256i r0 = ROWS_R(0), r1 = ROWS_R(1), r2 = ROWS_R(2), r3 = ROWS_R(3);
#undef ROWS_R
        const __m256i a01 = _mm256_unpacklo_epi32(r0, r1), b01 = _mm256_unpackhi_epi32(r0, r1);
        const __m256i a23 = _mm256_unpacklo_epi32(r2, r3), b23 = _mm256_unpackhi_epi32(r2, r3);
        const __m256i v0 = _mm256_unpacklo_epi64(a01, a23), v1 = _mm256_unpackhi_epi64(a01, a23);
        const __m256i v2 = _mm256_unpacklo_epi64(b01, b23), v3 = _mm256_unpackhi_epi64(b01, b23);
        const int8_t *q0 = ((const struct sw_block_q8_0 *)a[0].q + b)->qs;
        const int8_t *q1 = NT > 1 ? ((const struct sw_block_q8_0 *)a[1].q + b)->qs : q0;
        const int8_t *q2 = NT > 2 ? ((const struct sw_block_q8_0 *)a[2].q + b)->qs : q0;
        const int8_t *q3 = NT > 3 ? ((const struct sw_block_q8_0 *)a[3].q + b)->qs : q0;
        __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
        /* code vector C (bytes 4j..4j+3 of the 8 rows' nibbles) times each token's 4
         * activation bytes at offset K, broadcast */
#define Q4T_PROD(C, K)                                                                              \
    do {                                                                                            \
        __m256i c_ = (C);                                                                           \
        s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(c_, _mm256_broadcastd_epi32(_mm_loadu_si32(q0 + (K))))); \
        if (NT > 1) s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(c_, _mm256_broadcastd_epi32(_mm_loadu_si32(q1 + (K))))); \
        if (NT > 2) s2 = _mm256_add_epi16(s2, _mm256_maddubs_epi16(c_, _mm256_broadcastd_epi32(_mm_loadu_si32(q2 + (K))))); \
        if (NT > 3) s3 = _mm256_add_epi16(s3, _mm256_maddubs_epi16(c_, _mm256_broadcastd_epi32(_mm_loadu_si32(q3 + (K))))); \
        KEEP_REG(s0);                                                                               \
        if (NT > 1) KEEP_REG(s1);                                                                   \
        if (NT > 2) KEEP_REG(s2);                                                                   \
        if (NT > 3) KEEP_REG(s3);                                                                   \
    } while (0)
        Q4T_PROD(_mm256_and_si256(v0, m4), 0);
        Q4T_PROD(_mm256_and_si256(_mm256_srli_epi16(v0, 4), m4), 16);
        Q4T_PROD(_mm256_and_si256(v1, m4), 4);
        Q4T_PROD(_mm256_and_si256(_mm256_srli_epi16(v1, 4), m4), 20);
        Q4T_PROD(_mm256_and_si256(v2, m4), 8);
        Q4T_PROD(_mm256_and_si256(_mm256_srli_epi16(v2, 4), m4), 24);
        Q4T_PROD(_mm256_and_si256(v3, m4), 12);
        Q4T_PROD(_mm256_and_si256(_mm256_srli_epi16(v3, 4), m4), 28);
#undef Q4T_PROD
        const __m256 dw8 = TILE8_D(w0, ws);
        const __m256 dw8o = _mm256_mul_ps(dw8, m8);
        Q4_FLOAT8(acc0, s0, 0);
        if (NT > 1) Q4_FLOAT8(acc1, s1, 1);
        if (NT > 2) Q4_FLOAT8(acc2, s2, 2);
        if (NT > 3) Q4_FLOAT8(acc3, s3, 3);
    }
    TILE8_STORE(NT, out, ldo, acc0, acc1, acc2, acc3);
}

static void tile_q4_0(int64_t n, const void *w, size_t w_stride, int nr, const struct sw_k_act *a, int nt, float *out,
                      size_t ldo)
{
    (void)nr; /* always 8 (tile_rows) */
    if (!a[0].sums || w_stride % sizeof(struct sw_block_q4_0)) { /* only the matmul calls tiles; it has sums */
        for (int r = 0; r < 8; r++) {
            float o[SW_K_TILE_T_MAX];
            for (int t0 = 0; t0 < nt; t0 += SW_K_TILE_T) {
                int k = nt - t0 < SW_K_TILE_T ? nt - t0 : SW_K_TILE_T;
                rowdot_q4_0(n, (const uint8_t *)w + (size_t)r * w_stride, a + t0, k, o + t0);
            }
            for (int t = 0; t < nt; t++) out[(size_t)t * ldo + r] = o[t];
        }
        return;
    }
    const struct sw_block_q4_0 *wb = w;
    const size_t ws = w_stride / sizeof(struct sw_block_q4_0);
    /* 5..8 tokens: two passes (4 + the rest) over the tile's weights, which stay in L1 */
    for (int t0 = 0; t0 < nt; t0 += 4) {
        switch (nt - t0) {
        case 1: q4_0_tile8_nt(n, wb, ws, a + t0, 1, out + t0 * ldo, ldo); break;
        case 2: q4_0_tile8_nt(n, wb, ws, a + t0, 2, out + t0 * ldo, ldo); break;
        case 3: q4_0_tile8_nt(n, wb, ws, a + t0, 3, out + t0 * ldo, ldo); break;
        default: q4_0_tile8_nt(n, wb, ws, a + t0, 4, out + t0 * ldo, ldo); break;
        }
    }
}

/* The same tile for many tokens (prefill, experts' token groups): the tile's 8 code
 * vectors and 8 scales per block are decoded (transposed, split into nibbles) once into a
 * stack buffer of Q4P_SEG blocks, and every pass of up to 4 tokens loads them instead of
 * decoding again: per block a pass then costs 9 loads instead of ~36 decode ops. The
 * integer and float ops of each token are q4_0_tile8_nt's, in the same order: the same
 * bits. Columns beyond one segment are done segment by segment, each token's accumulators
 * carried over through `out` (a float stored and loaded is the same float). */
#define Q4P_SEG 64 /* blocks: 64 x 288 bytes = 18 KB of stack, in L1 */
struct q4p_block {
    __m256i c[8]; /* code vector j: bytes of the 8 rows for elements K(j)..K(j)+3, 0..15 */
    __m256 dw;    /* the 8 rows' scales */
};
/* activation offset of code vector j: low nibbles of transposed word v are elements 4v..,
 * high ones 16+4v.. */
static const int q4p_k[8] = {0, 16, 4, 20, 8, 24, 12, 28};

static void q4_0_pack8(const struct sw_block_q4_0 *w, size_t ws, int64_t b0, int64_t b1, struct q4p_block *p)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const char *pf = (const char *)(w + 8 * ws); /* the next tile, as q4_0_tile8_nt prefetches it */
    for (int64_t b = b0; b < b1; b++, p++) {
        const struct sw_block_q4_0 *w0 = w + b;
        _mm_prefetch(pf + 8 * sizeof(*w) * b, _MM_HINT_T0);
        _mm_prefetch(pf + 8 * sizeof(*w) * b + 64, _MM_HINT_T0);
        _mm_prefetch(pf + 8 * sizeof(*w) * b + 128, _MM_HINT_T0);
#define ROWS_R(r)                                                                                   \
    _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)w0[(r) * ws].qs)), \
                            _mm_loadu_si128((const __m128i *)w0[((r) + 4) * ws].qs), 1)
        const __m256i r0 = ROWS_R(0), r1 = ROWS_R(1), r2 = ROWS_R(2), r3 = ROWS_R(3);
#undef ROWS_R
        const __m256i a01 = _mm256_unpacklo_epi32(r0, r1), b01 = _mm256_unpackhi_epi32(r0, r1);
        const __m256i a23 = _mm256_unpacklo_epi32(r2, r3), b23 = _mm256_unpackhi_epi32(r2, r3);
        const __m256i v[4] = {_mm256_unpacklo_epi64(a01, a23), _mm256_unpackhi_epi64(a01, a23),
                              _mm256_unpacklo_epi64(b01, b23), _mm256_unpackhi_epi64(b01, b23)};
        for (int j = 0; j < 4; j++) {
            _mm256_store_si256(&p->c[2 * j], _mm256_and_si256(v[j], m4));
            _mm256_store_si256(&p->c[2 * j + 1], _mm256_and_si256(_mm256_srli_epi16(v[j], 4), m4));
        }
        _mm256_store_ps((float *)&p->dw,
                        TILE8_D(w0, ws));
    }
}

/* Blocks b0..b1-1 of the packed tile for NT (1..4) tokens; carry: continue the sums in out. */
AI void q4_0_tilep_nt(const struct q4p_block *p, int64_t b0, int64_t b1, const struct sw_k_act *a, const int NT,
                      float *out, size_t ldo, int carry)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    if (carry) {
        TILE8_LOAD(NT, out, ldo, acc0, acc1, acc2, acc3);
    }
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256 m8 = _mm256_set1_ps(-8.0f);
    for (int64_t b = b0; b < b1; b++, p++) {
        const int8_t *q0 = ((const struct sw_block_q8_0 *)a[0].q + b)->qs;
        const int8_t *q1 = NT > 1 ? ((const struct sw_block_q8_0 *)a[1].q + b)->qs : q0;
        const int8_t *q2 = NT > 2 ? ((const struct sw_block_q8_0 *)a[2].q + b)->qs : q0;
        const int8_t *q3 = NT > 3 ? ((const struct sw_block_q8_0 *)a[3].q + b)->qs : q0;
        __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
#define Q4P_PROD(J)                                                                                 \
    do {                                                                                            \
        const __m256i c_ = _mm256_load_si256(&p->c[J]);                                             \
        const int k_ = q4p_k[J];                                                                    \
        s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(c_, _mm256_broadcastd_epi32(_mm_loadu_si32(q0 + k_)))); \
        if (NT > 1) s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(c_, _mm256_broadcastd_epi32(_mm_loadu_si32(q1 + k_)))); \
        if (NT > 2) s2 = _mm256_add_epi16(s2, _mm256_maddubs_epi16(c_, _mm256_broadcastd_epi32(_mm_loadu_si32(q2 + k_)))); \
        if (NT > 3) s3 = _mm256_add_epi16(s3, _mm256_maddubs_epi16(c_, _mm256_broadcastd_epi32(_mm_loadu_si32(q3 + k_)))); \
        KEEP_REG(s0);                                                                               \
        if (NT > 1) KEEP_REG(s1);                                                                   \
        if (NT > 2) KEEP_REG(s2);                                                                   \
        if (NT > 3) KEEP_REG(s3);                                                                   \
    } while (0)
        Q4P_PROD(0);
        Q4P_PROD(1);
        Q4P_PROD(2);
        Q4P_PROD(3);
        Q4P_PROD(4);
        Q4P_PROD(5);
        Q4P_PROD(6);
        Q4P_PROD(7);
#undef Q4P_PROD
        const __m256 dw8 = _mm256_load_ps((const float *)&p->dw);
        const __m256 dw8o = _mm256_mul_ps(dw8, m8);
        Q4_FLOAT8(acc0, s0, 0);
        if (NT > 1) Q4_FLOAT8(acc1, s1, 1);
        if (NT > 2) Q4_FLOAT8(acc2, s2, 2);
        if (NT > 3) Q4_FLOAT8(acc3, s3, 3);
    }
    TILE8_STORE(NT, out, ldo, acc0, acc1, acc2, acc3);
}

static void tile_many_q4_0(int64_t n, const void *w, size_t w_stride, int nr, const struct sw_k_act *a, int nt,
                           float *out, size_t ldo)
{
    if (!a[0].sums || w_stride % sizeof(struct sw_block_q4_0)) { /* only the matmul calls tiles; it has sums */
        for (int t0 = 0; t0 < nt; t0 += SW_K_TILE_T_MAX)
            tile_q4_0(n, w, w_stride, nr, a + t0, nt - t0 < SW_K_TILE_T_MAX ? nt - t0 : SW_K_TILE_T_MAX,
                      out + (size_t)t0 * ldo, ldo);
        return;
    }
    const int64_t nb = n / SW_QK4_0;
    TILE_MANY_SEGMENTS(struct sw_block_q4_0, struct q4p_block, Q4P_SEG, q4_0_pack8, q4_0_tilep_nt);
}

/* ------------------------------------------------------------ vector helpers */

static float dot_f32_avx2(int64_t n, const float *x, const float *y)
{
    return vec_dot_f32(n, x, y);
}

static float dot_f16_f32_avx2(int64_t n, const sw_f16 *x, const float *y)
{
    return vec_dot_f16(n, x, y);
}

static void axpy_f32_avx2(int64_t n, float a, const float *x, float *y)
{
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static void axpy_f16_avx2(int64_t n, float a, const sw_f16 *x, float *y)
{
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, load_f16x8(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * h2f(x[i]);
}

static void scale_f32_avx2(int64_t n, float a, float *y)
{
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(va, _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] *= a;
}

/* ------------------------------------------------------------ tables */

static void set_type(struct sw_k_type_impl *tab, int n_tab, int type, sw_k_dequant_fn dq, sw_k_quant_fn qa,
                     sw_k_vec_dot_fn dot, sw_k_rowdot_fn row, int sums)
{
    if (type >= n_tab) return;
    if (dq) tab[type].pub.dequantize_row = dq;
    if (qa) tab[type].pub.quantize_act = qa;
    if (dot) tab[type].pub.vec_dot = dot;
    if (row) tab[type].rowdot = row;
    tab[type].act_sums = sums;
}

static void set_tile(struct sw_k_type_impl *tab, int n_tab, int type, sw_k_tile_fn tile, int rows)
{
    if (type >= n_tab) return;
    tab[type].tile = tile;
    tab[type].tile_rows = rows;
}

static void fill_x86(struct sw_k_type_impl *tab, int n_tab)
{
    set_type(tab, n_tab, SW_TYPE_F32, NULL, NULL, vec_dot_f32, rowdot_f32, 0);
    set_type(tab, n_tab, SW_TYPE_F16, dequant_f16_avx2, NULL, vec_dot_f16, rowdot_f16, 0);
    set_type(tab, n_tab, SW_TYPE_BF16, dequant_bf16_avx2, NULL, vec_dot_bf16, rowdot_bf16, 0);
    set_type(tab, n_tab, SW_TYPE_Q8_0, dequant_q8_0_avx2, quant_q8_0_avx2, vec_dot_q8_0, rowdot_q8_0, 1);
    set_type(tab, n_tab, SW_TYPE_Q4_0, dequant_q4_0_avx2, quant_q8_0_avx2, vec_dot_q4_0, rowdot_q4_0, 1);
    set_type(tab, n_tab, SW_TYPE_Q4_K, NULL, quant_q8_K_avx2, vec_dot_q4_K, rowdot_q4_K, 0);
    set_type(tab, n_tab, SW_TYPE_Q5_K, NULL, quant_q8_K_avx2, vec_dot_q5_K, rowdot_q5_K, 0);
    set_type(tab, n_tab, SW_TYPE_Q6_K, NULL, quant_q8_K_avx2, vec_dot_q6_K, rowdot_q6_K, 0);
    if (SW_TYPE_Q8_0 < n_tab && SW_TYPE_Q4_0 < n_tab) {
        tab[SW_TYPE_Q8_0].max_nt = tab[SW_TYPE_Q4_0].max_nt = SW_K_TILE_T_MAX;
        set_tile(tab, n_tab, SW_TYPE_Q4_0, tile_q4_0, 8);
        tab[SW_TYPE_Q4_0].tile_nt = SW_K_TILE_T_MAX;
        /* the matvec uses the tile too, so a token's outputs are the same bits whether it
         * is alone or batched with others (the row kernel sums in another order) */
        tab[SW_TYPE_Q4_0].tile_vec = 1;
        tab[SW_TYPE_Q4_0].tile_many = tile_many_q4_0;
    }
    /* float types: 8x1 / 4x3 tiles over FM_R rows for a few tokens, the many-token tile above */
    set_tile(tab, n_tab, SW_TYPE_F32, tile_f32, FM_R);
    set_tile(tab, n_tab, SW_TYPE_F16, tile_f16, FM_R);
    set_tile(tab, n_tab, SW_TYPE_BF16, tile_bf16, FM_R);
    if (SW_TYPE_F32 < n_tab && SW_TYPE_F16 < n_tab && SW_TYPE_BF16 < n_tab) {
        tab[SW_TYPE_F32].tile_many = tile_many_f32;
        tab[SW_TYPE_F16].tile_many = tile_many_f16;
        tab[SW_TYPE_BF16].tile_many = tile_many_bf16;
        /* the matvec takes the 8-row tile: the row kernel's one chain per row is
         * latency-bound alone */
        tab[SW_TYPE_F32].tile_vec = tab[SW_TYPE_F16].tile_vec = tab[SW_TYPE_BF16].tile_vec = 1;
    }
    /* Q4_1/Q5_0/Q5_1 keep the reference dot, but their activations use the fast quantizer */
    set_type(tab, n_tab, SW_TYPE_Q4_1, NULL, quant_q8_0_avx2, NULL, NULL, 0);
    set_type(tab, n_tab, SW_TYPE_Q5_0, NULL, quant_q8_0_avx2, NULL, NULL, 0);
    set_type(tab, n_tab, SW_TYPE_Q5_1, NULL, quant_q8_0_avx2, NULL, NULL, 0);
}

static void vec_ops_x86(struct sw_k_vec_ops *ops)
{
    ops->dot_f32 = dot_f32_avx2;
    ops->dot_f16_f32 = dot_f16_f32_avx2;
    ops->axpy_f32 = axpy_f32_avx2;
    ops->axpy_f16 = axpy_f16_avx2;
    ops->scale_f32 = scale_f32_avx2;
    ops->f16_to_f32_row = f16_to_f32_row_avx2;
    ops->f32_to_f16_row = f32_to_f16_row_avx2;
    ops->bf16_to_f32_row = bf16_to_f32_row_avx2;
    ops->quant_q8_0_sums = quant_q8_0_sums_avx2;
}

#ifndef SW_K_X86_BODY_ONLY
void sw__k_fill_avx2(struct sw_k_type_impl *tab, int n_tab)
{
    fill_x86(tab, n_tab);
}

void sw__k_vec_ops_avx2(struct sw_k_vec_ops *ops)
{
    vec_ops_x86(ops);
}
#endif
