/* kernels_avx512.c — AVX-512 (F, BW, VL, DQ) + VNNI kernels for the types where they pay:
 * F32/F16/BF16 weights as 4-row x 4-token register tiles (prompt processing is FMA
 * bound), Q4_0 and Q8_0 weights with vpdpbusd over two 32-element blocks per register.
 * Everything else comes from the AVX2 family (kernels.c fills this family from AVX2
 * first). Compiled with these flags for this file only; used only when CPUID has them.
 * Not for: CPUs without AVX-512 VNNI (they get kernels_avx2.c). */
#include <immintrin.h>

#include "infer/kernels_impl.h"

/* The AVX2 kernels, compiled again here where the EVEX encoding gives them 32 registers. */
#define SW_K_X86_BODY_ONLY
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "kernels_avx2.c"
#pragma GCC diagnostic pop
/* rows of the float register tile: 6 rows x 4 tokens = 24 accumulators of the 32 zmm */
#define SW_K_TILE_R 6

/* ------------------------------------------------------------ float weights */

AI __m512 load16_f32(const float *p, __mmask16 m)
{
    return _mm512_maskz_loadu_ps(m, p);
}
AI __m512 load16_f16(const sw_f16 *p, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
AI __m512 load16_bf16(const sw_bf16 *p, __mmask16 m)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

/* The 6-row x 4-token register tile, written with named accumulators (24 + 4 x + 1 w of the
 * 32 zmm): gcc keeps arrays of vectors this large in memory and stores them every
 * iteration. Fewer than 4 tokens reuse token 0's pointer and drop the extra sums (only
 * the last group of a prompt is short). out[t*ldo + r] for r < 6, t < nt. */
#define TILE_DECL(r) __m512 a##r##0 = _mm512_setzero_ps(), a##r##1 = a##r##0, a##r##2 = a##r##0, a##r##3 = a##r##0;
#define TILE_STEP(r, LOADW, m)                                                                      \
    {                                                                                               \
        __m512 wv = LOADW(w + (r) * ws + i, m);                                                     \
        a##r##0 = _mm512_fmadd_ps(wv, x0, a##r##0);                                                \
        a##r##1 = _mm512_fmadd_ps(wv, x1, a##r##1);                                                \
        a##r##2 = _mm512_fmadd_ps(wv, x2, a##r##2);                                                \
        a##r##3 = _mm512_fmadd_ps(wv, x3, a##r##3);                                                \
    }
#define TILE_ALL(LOADW, m)                                                                          \
    {                                                                                               \
        __m512 x0 = _mm512_maskz_loadu_ps(m, xp0 + i), x1 = _mm512_maskz_loadu_ps(m, xp1 + i);      \
        __m512 x2 = _mm512_maskz_loadu_ps(m, xp2 + i), x3 = _mm512_maskz_loadu_ps(m, xp3 + i);      \
        TILE_STEP(0, LOADW, m) TILE_STEP(1, LOADW, m) TILE_STEP(2, LOADW, m)                        \
        TILE_STEP(3, LOADW, m) TILE_STEP(4, LOADW, m) TILE_STEP(5, LOADW, m)                        \
    }
#define TILE_OUT(r)                                                                                 \
    {                                                                                               \
        float s_[4] = {_mm512_reduce_add_ps(a##r##0), _mm512_reduce_add_ps(a##r##1),               \
                       _mm512_reduce_add_ps(a##r##2), _mm512_reduce_add_ps(a##r##3)};              \
        for (int t = 0; t < nt; t++) out[t * ldo + (r)] = s_[t];                                    \
    }

/* out[t] = <w, x_t> for one row and NT tokens (row kernel and vec_dot). */
#define FLOAT_TILE(NAME, WT, LOADW)                                                                 \
    AI void z##NAME##_row_nt(int64_t n, const WT *w, const struct sw_k_act *a, const int NT, float *out) \
    {                                                                                               \
        __m512 acc[SW_K_TILE_T];                                                                    \
        const float *x[SW_K_TILE_T];                                                               \
        for (int t = 0; t < NT; t++) {                                                             \
            x[t] = a[t].q;                                                                         \
            acc[t] = _mm512_setzero_ps();                                                          \
        }                                                                                          \
        int64_t i = 0;                                                                             \
        if (NT == 1) { /* matvec: four independent FMA chains */                                   \
            __m512 c1 = _mm512_setzero_ps(), c2 = c1, c3 = c1;                                     \
            for (; i + 64 <= n; i += 64) {                                                         \
                acc[0] = _mm512_fmadd_ps(LOADW(w + i, 0xFFFF), _mm512_loadu_ps(x[0] + i), acc[0]); \
                c1 = _mm512_fmadd_ps(LOADW(w + i + 16, 0xFFFF), _mm512_loadu_ps(x[0] + i + 16), c1); \
                c2 = _mm512_fmadd_ps(LOADW(w + i + 32, 0xFFFF), _mm512_loadu_ps(x[0] + i + 32), c2); \
                c3 = _mm512_fmadd_ps(LOADW(w + i + 48, 0xFFFF), _mm512_loadu_ps(x[0] + i + 48), c3); \
            }                                                                                      \
            acc[0] = _mm512_add_ps(_mm512_add_ps(acc[0], c1), _mm512_add_ps(c2, c3));              \
        }                                                                                          \
        for (; i < n; i += 16) {                                                                   \
            __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);       \
            __m512 wv = LOADW(w + i, m);                                                           \
            for (int t = 0; t < NT; t++) acc[t] = _mm512_fmadd_ps(wv, load16_f32(x[t] + i, m), acc[t]); \
        }                                                                                          \
        for (int t = 0; t < NT; t++) out[t] = _mm512_reduce_add_ps(acc[t]);                        \
    }                                                                                              \
    static void ztile_##NAME(int64_t n, const void *wv_, size_t w_stride, int nr, const struct sw_k_act *a, int nt, \
                            float *out, size_t ldo)                                                \
    {                                                                                              \
        (void)nr; /* always SW_K_TILE_R (tile_rows) */                                             \
        const WT *w = wv_;                                                                         \
        const size_t ws = w_stride / sizeof(WT);                                                   \
        const float *xp0 = a[0].q, *xp1 = nt > 1 ? a[1].q : xp0, *xp2 = nt > 2 ? a[2].q : xp0,      \
                    *xp3 = nt > 3 ? a[3].q : xp0;                                                  \
        TILE_DECL(0) TILE_DECL(1) TILE_DECL(2) TILE_DECL(3) TILE_DECL(4) TILE_DECL(5)              \
        int64_t i = 0;                                                                             \
        for (; i + 16 <= n; i += 16) TILE_ALL(LOADW, (__mmask16)0xFFFF)                            \
        if (i < n) {                                                                               \
            __mmask16 m = (__mmask16)((1u << (n - i)) - 1);                                        \
            TILE_ALL(LOADW, m)                                                                     \
        }                                                                                          \
        TILE_OUT(0) TILE_OUT(1) TILE_OUT(2) TILE_OUT(3) TILE_OUT(4) TILE_OUT(5)                    \
    }                                                                                              \
    static void zrowdot_##NAME(int64_t n, const void *w, const struct sw_k_act *a, int nt, float *out) \
    {                                                                                              \
        switch (nt) {                                                                              \
        case 1: z##NAME##_row_nt(n, w, a, 1, out); break;                                             \
        case 2: z##NAME##_row_nt(n, w, a, 2, out); break;                                             \
        case 3: z##NAME##_row_nt(n, w, a, 3, out); break;                                             \
        default: z##NAME##_row_nt(n, w, a, 4, out); break;                                            \
        }                                                                                          \
    }                                                                                              \
    static float zvec_dot_##NAME(int64_t n, const void *w, const void *act)                        \
    {                                                                                              \
        struct sw_k_act a = {act, NULL};                                                           \
        float out;                                                                                 \
        z##NAME##_row_nt(n, w, &a, 1, &out);                                                          \
        return out;                                                                                \
    }

FLOAT_TILE(f32, float, load16_f32)
FLOAT_TILE(f16, sw_f16, load16_f16)
FLOAT_TILE(bf16, sw_bf16, load16_bf16)

/* ------------------------------------------------------------ Q4_0 / Q8_0 weights */
/* u = weight codes made unsigned (Q4_0: nibble = q + 8; Q8_0: q ^ 0x80 = q + 128), so
 * <q, a> = vpdpbusd(u, a) - OFF * sum(a); the activation sums come with the matmul's
 * {d, d*sum} pairs. Two blocks per 512-bit register. */

AI __m256i unsigned_q4_0(const struct sw_block_q4_0 *b)
{
    return nibbles32(b->qs);
}
/* Two consecutive blocks as one zmm of 64 unsigned codes in element order. Q4_0: both
 * blocks' nibble bytes in one ymm, split into low/high nibbles ([lo_b lo_b1 | hi_b hi_b1]
 * as zmm lanes), then lanes reordered to [lo_b hi_b lo_b1 hi_b1]. */
AI __m512i unsigned2_q4_0(const struct sw_block_q4_0 *b)
{
    __m256i x = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)b[0].qs)),
                                        _mm_loadu_si128((const __m128i *)b[1].qs), 1);
    const __m256i m = _mm256_set1_epi8(0x0F);
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(x, m)),
                                   _mm256_and_si256(_mm256_srli_epi16(x, 4), m), 1);
    return _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
}
AI __m512i unsigned2_q8_0(const struct sw_block_q8_0 *b)
{
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b[0].qs)),
                                   _mm256_loadu_si256((const __m256i *)b[1].qs), 1);
    return _mm512_xor_si512(z, _mm512_set1_epi8((char)0x80));
}
AI __m256i unsigned_q8_0(const struct sw_block_q8_0 *b)
{
    return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)b->qs), _mm256_set1_epi8((char)0x80));
}

#define VNNI_ROWDOT(NAME, BT, UNSIGNED, UNSIGNED2, OFF)                                                        \
    AI void z##NAME##_nt(int64_t n, const BT *w, const struct sw_k_act *a, const int NT, float *out)     \
    {                                                                                                 \
        __m512 acc[SW_K_TILE_T];                                                                      \
        __m128 corr[SW_K_TILE_T];                                                                     \
        for (int t = 0; t < NT; t++) {                                                                \
            acc[t] = _mm512_setzero_ps();                                                             \
            corr[t] = _mm_setzero_ps();                                                               \
        }                                                                                             \
        const __m512i bcast = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);        \
        const int64_t nb = n / 32;                                                                    \
        int64_t b = 0;                                                                                \
        for (; b + 2 <= nb; b += 2) {                                                                 \
            __m512i u = UNSIGNED2(&w[b]);                                                           \
            float d0 = h2f(w[b].d), d1 = h2f(w[b + 1].d);                                            \
            __m128 dw = _mm_setr_ps(d0, d0, d1, d1);                                                  \
            for (int t = 0; t < NT; t++) {                                                            \
                const struct sw_block_q8_0 *y = (const struct sw_block_q8_0 *)a[t].q + b;            \
                __m512i av = _mm512_inserti64x4(                                                      \
                    _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)y[0].qs)),             \
                    _mm256_loadu_si256((const __m256i *)y[1].qs), 1);                                 \
                __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, av);                     \
                /* {d_a0, s_a0, d_a1, s_a1} * {dw0, dw0, dw1, dw1} */                                \
                __m128 ds = _mm_mul_ps(_mm_loadu_ps(a[t].sums + 2 * b), dw);                         \
                __m512 sc = _mm512_permutexvar_ps(bcast, _mm512_castps128_ps512(ds));                 \
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), sc, acc[t]);                        \
                corr[t] = _mm_add_ps(corr[t], ds);                                                    \
            }                                                                                         \
        }                                                                                             \
        for (int t = 0; t < NT; t++) {                                                                \
            float s = _mm512_reduce_add_ps(acc[t]);                                                   \
            float c[4];                                                                               \
            _mm_storeu_ps(c, corr[t]);                                                                \
            s -= (float)(OFF) * (c[1] + c[3]);                                                        \
            for (int64_t k = b; k < nb; k++) { /* odd last block */                                  \
                const struct sw_block_q8_0 *y = (const struct sw_block_q8_0 *)a[t].q + k;            \
                __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), UNSIGNED(&w[k]),            \
                                                  _mm256_loadu_si256((const __m256i *)y->qs));        \
                __m256i d8 = dot;                                                                     \
                __m128i d4 = _mm_add_epi32(_mm256_castsi256_si128(d8), _mm256_extracti128_si256(d8, 1)); \
                d4 = _mm_add_epi32(d4, _mm_shuffle_epi32(d4, 0x4e));                                  \
                d4 = _mm_add_epi32(d4, _mm_shuffle_epi32(d4, 0xb1));                                  \
                float dwk = h2f(w[k].d);                                                              \
                s += dwk * (a[t].sums[2 * k] * (float)_mm_cvtsi128_si32(d4) - (float)(OFF)*a[t].sums[2 * k + 1]); \
            }                                                                                         \
            out[t] = s;                                                                               \
        }                                                                                             \
    }                                                                                                 \
    static void zrowdot_##NAME(int64_t n, const void *w, const struct sw_k_act *a, int nt, float *out) \
    {                                                                                                 \
        if (!a[0].sums) { /* only the matmul path has sums; keep the AVX2 kernel otherwise */        \
            NAME##_fallback(n, w, a, nt, out);                                                        \
            return;                                                                                   \
        }                                                                                             \
        switch (nt) {                                                                                 \
        case 1: z##NAME##_nt(n, w, a, 1, out); break;                                                    \
        case 2: z##NAME##_nt(n, w, a, 2, out); break;                                                    \
        case 3: z##NAME##_nt(n, w, a, 3, out); break;                                                    \
        default: z##NAME##_nt(n, w, a, 4, out); break;                                                   \
        }                                                                                             \
    }

#define q4_0_fallback rowdot_q4_0 /* the AVX2 kernel, compiled above */
#define q8_0_fallback rowdot_q8_0

VNNI_ROWDOT(q4_0, struct sw_block_q4_0, unsigned_q4_0, unsigned2_q4_0, 8)
VNNI_ROWDOT(q8_0, struct sw_block_q8_0, unsigned_q8_0, unsigned2_q8_0, 128)

/* ------------------------------------------------------------ K-quants with VNNI */
/* Q4_K: one zmm holds a 64-element group (sub-block 2g's codes in bytes 0-31, 2g+1's in
 * 32-63), which matches 64 contiguous Q8_K activation bytes; vpdpbusd gives 16 int32 lanes
 * (8 per sub-block), vpmulld applies the 6-bit sub-scales, the mins come from bsums. */
AI void zq4_K_nt(int64_t n, const struct sw_block_q4_K *w, const struct sw_k_act *a, const int NT, float *out)
{
    __m512 acc[SW_K_TILE_T];
    __m256 accm[SW_K_TILE_T];
    for (int t = 0; t < NT; t++) {
        acc[t] = _mm512_setzero_ps();
        accm[t] = _mm256_setzero_ps();
    }
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        const struct sw_block_q4_K *x = &w[i];
        uint64_t sc64, mn64;
        sw__k_scales_min_k4_u64(x->scales, &sc64, &mn64);
        const __m128i mv = _mm_cvtsi64_si128((long long)mn64);
        const __m256i mins16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mv, mv)); /* m0 m0 m1 m1 .. */
        const __m512i sc32 = _mm512_castsi256_si512(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc64)));
        __m512i u[4], sv[4];
        for (int g = 0; g < 4; g++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * g));
            __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            u[g] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
            /* lanes 0-7: scale 2g, lanes 8-15: scale 2g+1 */
            const __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(2 * g)),
                                                   _mm256_set1_epi32(2 * g + 1), 1);
            sv[g] = _mm512_permutexvar_epi32(idx, sc32);
        }
        float d = h2f(x->d), dmin = h2f(x->dmin);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_K *y = &((const struct sw_block_q8_K *)a[t].q)[i];
            __m512i isum = _mm512_setzero_si512();
            for (int g = 0; g < 4; g++) {
                __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[g],
                                                  _mm512_loadu_si512((const void *)(y->qs + 64 * g)));
                isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(dot, sv[g]));
            }
            __m256 mm = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), mins16));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * y->d), acc[t]);
            accm[t] = _mm256_fmadd_ps(mm, _mm256_set1_ps(dmin * y->d), accm[t]);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = _mm512_reduce_add_ps(acc[t]) - hsum_ps(accm[t]);
}

/* Q5_K: as Q4_K with the 5th bit from qh (codes 0..31). */
AI void zq5_K_nt(int64_t n, const struct sw_block_q5_K *w, const struct sw_k_act *a, const int NT, float *out)
{
    __m512 acc[SW_K_TILE_T];
    __m256 accm[SW_K_TILE_T];
    for (int t = 0; t < NT; t++) {
        acc[t] = _mm512_setzero_ps();
        accm[t] = _mm256_setzero_ps();
    }
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        const struct sw_block_q5_K *x = &w[i];
        uint64_t sc64, mn64;
        sw__k_scales_min_k4_u64(x->scales, &sc64, &mn64);
        const __m128i mv = _mm_cvtsi64_si128((long long)mn64);
        const __m256i mins16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mv, mv)); /* m0 m0 m1 m1 .. */
        const __m512i sc32 = _mm512_castsi256_si512(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc64)));
        __m512i u[4], sv[4];
        __m256i qh = _mm256_loadu_si256((const __m256i *)x->qh);
        for (int g = 0; g < 4; g++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * g));
            /* 5th bit: bit 2g of qh[l] for the low half, 2g+1 for the high half */
            __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(qh, one), 4);
            __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 1), one), 4);
            qh = _mm256_srli_epi16(qh, 2);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1);
            u[g] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
            /* lanes 0-7: scale 2g, lanes 8-15: scale 2g+1 */
            const __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(2 * g)),
                                                   _mm256_set1_epi32(2 * g + 1), 1);
            sv[g] = _mm512_permutexvar_epi32(idx, sc32);
        }
        float d = h2f(x->d), dmin = h2f(x->dmin);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_K *y = &((const struct sw_block_q8_K *)a[t].q)[i];
            __m512i isum = _mm512_setzero_si512();
            for (int g = 0; g < 4; g++) {
                __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[g],
                                                  _mm512_loadu_si512((const void *)(y->qs + 64 * g)));
                isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(dot, sv[g]));
            }
            __m256 mm = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), mins16));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * y->d), acc[t]);
            accm[t] = _mm256_fmadd_ps(mm, _mm256_set1_ps(dmin * y->d), accm[t]);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = _mm512_reduce_add_ps(acc[t]) - hsum_ps(accm[t]);
}

/* Q6_K: per 128-element half, ql[64h..64h+63] is one zmm whose low nibbles are elements
 * 0-63 and high nibbles 64-127 (with qh bits 2k..2k+1 on top); vpdpbusd lanes hold 4
 * elements each, so lanes 4m..4m+3 share int8 scale m; the -32 offset comes from bsums. */
AI void zq6_K_nt(int64_t n, const struct sw_block_q6_K *w, const struct sw_k_act *a, const int NT, float *out)
{
    __m512 acc[SW_K_TILE_T];
    for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x03);
    /* byte index patterns: scale 4m+k repeated over 4 lanes' worth (4 int32) */
    const __m128i rep0 = _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        const struct sw_block_q6_K *x = &w[i];
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)x->scales);
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
        __m512i u[4], sv[4];
        for (int h = 0; h < 2; h++) {
            __m512i ql = _mm512_loadu_si512((const void *)(x->ql + 64 * h));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
            __m512i hA = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
            __m512i hB = _mm512_srli_epi16(hA, 4);
            u[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_slli_epi16(_mm512_and_si512(hA, m2), 4));
            u[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                           _mm512_slli_epi16(_mm512_and_si512(hB, m2), 4));
        }
        for (int m = 0; m < 4; m++) /* zmm m covers scales 4m..4m+3 */
            sv[m] = _mm512_cvtepi8_epi32(_mm_shuffle_epi8(sc8, _mm_add_epi8(rep0, _mm_set1_epi8((char)(4 * m)))));
        float d = h2f(x->d);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_K *y = &((const struct sw_block_q8_K *)a[t].q)[i];
            __m512i isum = _mm512_setzero_si512();
            for (int m = 0; m < 4; m++) {
                __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[m],
                                                  _mm512_loadu_si512((const void *)(y->qs + 64 * m)));
                isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(dot, sv[m]));
            }
            __m256i off = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), sc16);
            isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(_mm256_slli_epi32(off, 5)));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * y->d), acc[t]);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = _mm512_reduce_add_ps(acc[t]);
}

#define ZK_DISPATCH(NAME, BT)                                                                      \
    static void zrowdot_##NAME(int64_t n, const void *w, const struct sw_k_act *a, int nt, float *out) \
    {                                                                                              \
        switch (nt) {                                                                              \
        case 1: z##NAME##_nt(n, (const BT *)w, a, 1, out); break;                                 \
        case 2: z##NAME##_nt(n, (const BT *)w, a, 2, out); break;                                 \
        case 3: z##NAME##_nt(n, (const BT *)w, a, 3, out); break;                                 \
        default: z##NAME##_nt(n, (const BT *)w, a, 4, out); break;                                \
        }                                                                                          \
    }                                                                                              \
    static float zvec_dot_##NAME(int64_t n, const void *w, const void *act)                       \
    {                                                                                              \
        struct sw_k_act a = {act, NULL};                                                           \
        float out;                                                                                 \
        z##NAME##_nt(n, (const BT *)w, &a, 1, &out);                                               \
        return out;                                                                                \
    }

ZK_DISPATCH(q4_K, struct sw_block_q4_K)
ZK_DISPATCH(q5_K, struct sw_block_q5_K)
ZK_DISPATCH(q6_K, struct sw_block_q6_K)

/* ------------------------------------------------------------ vector helpers */

static float dot_f32_avx512(int64_t n, const float *x, const float *y)
{
    return zvec_dot_f32(n, x, y);
}

static float dot_f16_f32_avx512(int64_t n, const sw_f16 *x, const float *y)
{
    return zvec_dot_f16(n, x, y);
}

/* ------------------------------------------------------------ tables */

void sw__k_fill_avx512(struct sw_k_type_impl *tab, int n_tab)
{
    if (SW_TYPE_BF16 >= n_tab) return;
    fill_x86(tab, n_tab); /* this file's copies of the AVX2 kernels */
    struct {
        int type;
        sw_k_vec_dot_fn dot;
        sw_k_rowdot_fn row;
        sw_k_tile_fn tile;
    } f[] = {{SW_TYPE_F32, zvec_dot_f32, zrowdot_f32, ztile_f32},
             {SW_TYPE_F16, zvec_dot_f16, zrowdot_f16, ztile_f16},
             {SW_TYPE_BF16, zvec_dot_bf16, zrowdot_bf16, ztile_bf16}};
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        tab[f[i].type].pub.vec_dot = f[i].dot;
        tab[f[i].type].rowdot = f[i].row;
        tab[f[i].type].tile = f[i].tile;
        tab[f[i].type].tile_rows = SW_K_TILE_R;
        tab[f[i].type].tile_many = NULL; /* the AVX2 one takes FM_R rows in another order */
        tab[f[i].type].tile_vec = 0;
    }
    /* vec_dot (no activation sums) stays AVX2 for Q4_0/Q8_0; the matmul row kernels use VNNI */
    tab[SW_TYPE_Q4_0].rowdot = zrowdot_q4_0;
    tab[SW_TYPE_Q8_0].rowdot = zrowdot_q8_0;
    /* the VNNI row kernels take up to 4 tokens and no AVX2 tile */
    tab[SW_TYPE_Q4_0].max_nt = tab[SW_TYPE_Q8_0].max_nt = 0;
    tab[SW_TYPE_Q4_0].tile = NULL;
    tab[SW_TYPE_Q4_0].tile_rows = tab[SW_TYPE_Q4_0].tile_nt = tab[SW_TYPE_Q4_0].tile_vec = 0;
    tab[SW_TYPE_Q4_0].tile_many = NULL;
    tab[SW_TYPE_Q4_K].rowdot = zrowdot_q4_K;
    tab[SW_TYPE_Q4_K].pub.vec_dot = zvec_dot_q4_K;
    tab[SW_TYPE_Q5_K].rowdot = zrowdot_q5_K;
    tab[SW_TYPE_Q5_K].pub.vec_dot = zvec_dot_q5_K;
    tab[SW_TYPE_Q6_K].rowdot = zrowdot_q6_K;
    tab[SW_TYPE_Q6_K].pub.vec_dot = zvec_dot_q6_K;
}

void sw__k_vec_ops_avx512(struct sw_k_vec_ops *ops)
{
    vec_ops_x86(ops);
    ops->dot_f32 = dot_f32_avx512;
    ops->dot_f16_f32 = dot_f16_f32_avx512;
}
