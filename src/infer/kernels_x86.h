/* kernels_x86.h — private to the x86 kernel files (kernels_avx2*.c, kernels_avx512*.c):
 * small always-inline helpers (horizontal sums, fp16, nibble unpacking, u8 x s8 dots) and
 * the row-kernel dispatch macro. Include only from files compiled with AVX2+FMA+F16C.
 * Not for: anything compiled without those flags. */
#ifndef SW_INFER_KERNELS_X86_H
#define SW_INFER_KERNELS_X86_H

#include <immintrin.h>

#include "infer/kernels_impl.h"

/* The rounding immediate must be a constant expression (clang insists). */
#define SW_K_ROUND_NEAREST (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

#define AI static inline __attribute__((always_inline))

/* The 8-row register tiles (lane r = row r, one accumulator per token, NT <= 4): the f16
 * scales d of rows w0[0], w0[ws], ... w0[7 * ws] as 8 floats; the NT accumulators loaded
 * from (carried) or stored to out's rows t * ldo. */
#define TILE8_D(w0, ws)                                                                             \
    _mm256_cvtph_ps(_mm_setr_epi16((short)(w0)[0].d, (short)(w0)[ws].d, (short)(w0)[2 * (ws)].d,     \
                                   (short)(w0)[3 * (ws)].d, (short)(w0)[4 * (ws)].d, (short)(w0)[5 * (ws)].d, \
                                   (short)(w0)[6 * (ws)].d, (short)(w0)[7 * (ws)].d))
#define TILE8_LOAD(NT, out, ldo, a0, a1, a2, a3)                                                    \
    do {                                                                                            \
        a0 = _mm256_loadu_ps(out);                                                                  \
        if ((NT) > 1) a1 = _mm256_loadu_ps((out) + (ldo));                                          \
        if ((NT) > 2) a2 = _mm256_loadu_ps((out) + 2 * (ldo));                                      \
        if ((NT) > 3) a3 = _mm256_loadu_ps((out) + 3 * (ldo));                                      \
    } while (0)
#define TILE8_STORE(NT, out, ldo, a0, a1, a2, a3)                                                   \
    do {                                                                                            \
        _mm256_storeu_ps(out, a0);                                                                  \
        if ((NT) > 1) _mm256_storeu_ps((out) + (ldo), a1);                                          \
        if ((NT) > 2) _mm256_storeu_ps((out) + 2 * (ldo), a2);                                      \
        if ((NT) > 3) _mm256_storeu_ps((out) + 3 * (ldo), a3);                                      \
    } while (0)

/* The many-token tiles' driver: per segment of up to SEG blocks, PACK(wb, ws, b0, b1, buf)
 * decodes the 8 rows once into buf, then TILEP(buf, b0, b1, a, NT, out, ldo, carry) runs
 * passes of up to 4 tokens over it (carry: continue the previous segment's sums). */
#define TILE_MANY_SEGMENTS(BT, PT, SEG, PACK, TILEP)                                                \
    do {                                                                                            \
        const BT *wb_ = w;                                                                          \
        const size_t ws_ = w_stride / sizeof(BT);                                                   \
        PT buf_[SEG];                                                                               \
        for (int64_t b0_ = 0; b0_ < nb; b0_ += (SEG)) {                                             \
            const int64_t b1_ = nb - b0_ < (SEG) ? nb : b0_ + (SEG);                                \
            PACK(wb_, ws_, b0_, b1_, buf_);                                                         \
            const int carry_ = b0_ > 0;                                                             \
            for (int t0_ = 0; t0_ < nt; t0_ += 4) {                                                 \
                float *o_ = out + (size_t)t0_ * ldo;                                                \
                switch (nt - t0_) {                                                                 \
                case 1: TILEP(buf_, b0_, b1_, a + t0_, 1, o_, ldo, carry_); break;                  \
                case 2: TILEP(buf_, b0_, b1_, a + t0_, 2, o_, ldo, carry_); break;                  \
                case 3: TILEP(buf_, b0_, b1_, a + t0_, 3, o_, ldo, carry_); break;                  \
                default: TILEP(buf_, b0_, b1_, a + t0_, 4, o_, ldo, carry_); break;                 \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
    } while (0)

AI float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI int hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* A 1-token row kernel streams its row (and the next rows, stored after it) from memory:
 * per block it prefetches the bytes SW_K_PF_AHEAD ahead, LINES lines (enough to cover
 * the block's size, so consecutive blocks' prefetches leave no gap). The hardware
 * prefetcher alone left the Q2_K, Q4_K, Q5_K, Q6_K and IQ4_XS matvecs slower (docs/kernels.md).
 * Prefetches never fault, so the last rows of a matrix may prefetch past its end. */
#define SW_K_PF_AHEAD 1664
AI void pf_ahead(const void *block, const int lines)
{
    const char *p = (const char *)block + SW_K_PF_AHEAD;
    for (int l = 0; l < lines; l++) _mm_prefetch(p + 64 * l, _MM_HINT_T0);
}

/* The float steps of a K-quant block (Q3_K, Q4_K, Q5_K), in scalar: the row kernels and the
 * many-token tiles (kernels_avx2_kq.c, one row per lane) both take them once per (row, token,
 * block) on the block's exact integer sums, so a token gets the same bits alone or in a
 * prefill. kq_step: acc + S * (d * da), fused; kq_step_min: then minus M * (dmin * da), fused. */
AI float kq_step(float acc, int32_t s, float d, float da)
{
    return __builtin_fmaf((float)s, d * da, acc); /* one vfmadd (with -mfma); _mm_fmadd_ss on
                                                   * _mm_set_ss operands cost an insertps each */
}

AI float kq_step_min(float acc, int32_t s, int32_t m, float d, float dmin, float da)
{
    return __builtin_fmaf(-(float)m, dmin * da, __builtin_fmaf((float)s, d * da, acc));
}

/* The horizontal sums of s and m (8 int32 lanes each, exact). */
AI void hsum2_epi32(__m256i s, __m256i m, int32_t *S, int32_t *M)
{
    const __m256i h = _mm256_hadd_epi32(s, m); /* per lane: s01 s23 m01 m23 */
    __m128i x = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    x = _mm_hadd_epi32(x, x);
    *S = _mm_cvtsi128_si32(x);
    *M = _mm_extract_epi32(x, 1);
}

/* The horizontal sums of s0..s3 into S[0..3] and of m0..m3 into M[0..3] (exact): one hadd
 * tree for four blocks of a matvec instead of four horizontal sums each. */
AI void hsum4x2_epi32(const __m256i *s, const __m256i *m, int32_t *S, int32_t *M)
{
    const __m256i hs = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    const __m256i hm = _mm256_hadd_epi32(_mm256_hadd_epi32(m[0], m[1]), _mm256_hadd_epi32(m[2], m[3]));
    _mm_storeu_si128((__m128i *)S, _mm_add_epi32(_mm256_castsi256_si128(hs), _mm256_extracti128_si256(hs, 1)));
    _mm_storeu_si128((__m128i *)M, _mm_add_epi32(_mm256_castsi256_si128(hm), _mm256_extracti128_si256(hm, 1)));
}

/* The same for s0..s3 only. */
AI void hsum4_epi32(const __m256i *s, int32_t *S)
{
    const __m256i hs = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    _mm_storeu_si128((__m128i *)S, _mm_add_epi32(_mm256_castsi256_si128(hs), _mm256_extracti128_si256(hs, 1)));
}

AI float h2f(sw_f16 h)
{
    return _cvtsh_ss(h);
}

/* 16 bytes of nibble pairs -> 32 bytes: low nibbles in 0..15, high nibbles in 16..31. */
AI __m256i nibbles32(const uint8_t *p)
{
    __m128i x = _mm_loadu_si128((const __m128i *)p);
    __m128i m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(x, 4), m), _mm_and_si128(x, m));
}

/* sum of products of u8 x s8, as 8 floats (each the sum of 4 products). */
AI __m256 dot_us8(__m256i u, __m256i s)
{
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

/* sum of products of s8 x s8 via the sign trick. */
AI __m256 dot_ss8(__m256i x, __m256i y)
{
    return dot_us8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* Dispatch on nt so each instance has a constant token count (registers, full unroll). */
#define ROWDOT_DISPATCH(NAME, WT)                                                                  \
    static void rowdot_##NAME(int64_t n, const void *w, const struct sw_k_act *a, int nt, float *out) \
    {                                                                                              \
        switch (nt) {                                                                              \
        case 1: NAME##_nt(n, (const WT *)w, a, 1, out); break;                                    \
        case 2: NAME##_nt(n, (const WT *)w, a, 2, out); break;                                    \
        case 3: NAME##_nt(n, (const WT *)w, a, 3, out); break;                                    \
        default: NAME##_nt(n, (const WT *)w, a, 4, out); break;                                   \
        }                                                                                          \
    }                                                                                              \
    static float vec_dot_##NAME(int64_t n, const void *w, const void *act)                        \
    {                                                                                              \
        struct sw_k_act a = {act, NULL};                                                           \
        float out;                                                                                 \
        NAME##_nt(n, (const WT *)w, &a, 1, &out);                                                  \
        return out;                                                                                \
    }

#endif
