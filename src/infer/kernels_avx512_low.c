/* kernels_avx512_low.c — the AVX-512 family's kernels for Q4_1, Q5_0, Q5_1, Q2_K, Q3_K,
 * IQ4_NL, IQ4_XS and MXFP4: the AVX2 kernels of kernels_avx2_low.c compiled again with
 * AVX-512VL available (EVEX encoding, 32 vector registers), plus VNNI row kernels: two
 * 32-element blocks per zmm (Q4_1, Q5_x, IQ4_NL, MXFP4), 64 elements of a super-block per
 * zmm (Q2_K, Q3_K, IQ4_XS). Used only when CPUID has
 * AVX-512 VNNI (kernels.c). Not for: CPUs without it (they get kernels_avx2_low.c). */
#define SW_K_X86_BODY_ONLY
#include "kernels_avx2_low.c"

/* ------------------------------------------------------------ 32-element blocks, VNNI */
/* Every 32-block type here is, per block, dot = dw * <u, a> * da + cw * (da * sum(a)) with
 * u unsigned 8-bit codes: Q4_1 (u = nibble, cw = m), Q5_0 (u = 5-bit code, cw = -16 dw),
 * Q5_1 (cw = m), IQ4_NL and MXFP4 (u = table value + 128, cw = -128 dw). vpdpbusd takes u
 * (u8) x a (s8) four at a time without saturation; {da, da*sum(a)} come from the matmul. */

AI __m256i ucodes_q4_1(const struct sw_block_q4_1 *b)
{
    return nibbles32(b->qs);
}
AI __m256i ucodes_q5_0(const struct sw_block_q5_0 *b)
{
    return _mm256_or_si256(nibbles32(b->qs), q5_high_bits(b->qh));
}
AI __m256i ucodes_q5_1(const struct sw_block_q5_1 *b)
{
    return _mm256_or_si256(nibbles32(b->qs), q5_high_bits(b->qh));
}
/* table value + 128 = value ^ 0x80 as a byte */
AI __m256i ucodes_iq4_nl(const struct sw_block_iq4_nl *b)
{
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)sw__k_iq4nl_values));
    return _mm256_xor_si256(_mm256_shuffle_epi8(tab, nibbles32(b->qs)), _mm256_set1_epi8((char)0x80));
}
AI __m256i ucodes_mxfp4(const struct sw_block_mxfp4 *b)
{
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)sw__k_mxfp4_values));
    return _mm256_xor_si256(_mm256_shuffle_epi8(tab, nibbles32(b->qs)), _mm256_set1_epi8((char)0x80));
}

AI void wsc_q4_1(const struct sw_block_q4_1 *b, float *d, float *c)
{
    *d = h2f(b->d);
    *c = h2f(b->m);
}
AI void wsc_q5_0(const struct sw_block_q5_0 *b, float *d, float *c)
{
    *d = h2f(b->d);
    *c = -16.0f * *d;
}
AI void wsc_q5_1(const struct sw_block_q5_1 *b, float *d, float *c)
{
    *d = h2f(b->d);
    *c = h2f(b->m);
}
AI void wsc_iq4_nl(const struct sw_block_iq4_nl *b, float *d, float *c)
{
    *d = h2f(b->d);
    *c = -128.0f * *d;
}
AI void wsc_mxfp4(const struct sw_block_mxfp4 *b, float *d, float *c)
{
    *d = sw__k_e8m0_half(b->e);
    *c = -128.0f * *d;
}

#define VNNI32_ROWDOT(NAME, BT)                                                                       \
    AI void z##NAME##_nt(int64_t n, const BT *w, const struct sw_k_act *a, const int NT, float *out)  \
    {                                                                                                \
        __m512 acc[SW_K_TILE_T_MAX];                                                                     \
        __m128 corr[SW_K_TILE_T_MAX];                                                                    \
        for (int t = 0; t < NT; t++) {                                                               \
            acc[t] = _mm512_setzero_ps();                                                            \
            corr[t] = _mm_setzero_ps();                                                              \
        }                                                                                            \
        const __m512i bcast = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);       \
        const int64_t nb = n / 32;                                                                   \
        int64_t b = 0;                                                                               \
        for (; b + 2 <= nb; b += 2) {                                                                \
            __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(ucodes_##NAME(&w[b])),              \
                                           ucodes_##NAME(&w[b + 1]), 1);                              \
            float d0, c0, d1, c1;                                                                    \
            wsc_##NAME(&w[b], &d0, &c0);                                                             \
            wsc_##NAME(&w[b + 1], &d1, &c1);                                                         \
            const __m128 dw = _mm_setr_ps(d0, c0, d1, c1);                                           \
            for (int t = 0; t < NT; t++) {                                                           \
                const struct sw_block_q8_0 *y = (const struct sw_block_q8_0 *)a[t].q + b;           \
                __m512i av = _mm512_inserti64x4(                                                     \
                    _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)y[0].qs)),            \
                    _mm256_loadu_si256((const __m256i *)y[1].qs), 1);                                \
                __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, av);                    \
                /* {da0, s0, da1, s1} * {d0, c0, d1, c1} */                                          \
                __m128 ds = _mm_mul_ps(_mm_loadu_ps(a[t].sums + 2 * b), dw);                         \
                __m512 sc = _mm512_permutexvar_ps(bcast, _mm512_castps128_ps512(ds));                \
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), sc, acc[t]);                       \
                corr[t] = _mm_add_ps(corr[t], ds);                                                   \
            }                                                                                        \
        }                                                                                            \
        for (int t = 0; t < NT; t++) {                                                               \
            float c[4];                                                                              \
            _mm_storeu_ps(c, corr[t]);                                                               \
            float s = _mm512_reduce_add_ps(acc[t]) + c[1] + c[3];                                    \
            for (int64_t k = b; k < nb; k++) { /* odd last block */                                 \
                const struct sw_block_q8_0 *y = (const struct sw_block_q8_0 *)a[t].q + k;           \
                __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ucodes_##NAME(&w[k]),      \
                                                  _mm256_loadu_si256((const __m256i *)y->qs));       \
                float dk, ck;                                                                        \
                wsc_##NAME(&w[k], &dk, &ck);                                                         \
                s += dk * a[t].sums[2 * k] * (float)hsum_epi32(dot) + ck * a[t].sums[2 * k + 1];     \
            }                                                                                        \
            out[t] = s;                                                                              \
        }                                                                                            \
    }                                                                                                \
    static void zrowdot_##NAME(int64_t n, const void *w, const struct sw_k_act *a, int nt, float *out) \
    {                                                                                                \
        if (!a[0].sums) { /* only the matmul hands over sums: the AVX2-body kernel otherwise */     \
            for (int t0 = 0; t0 < nt; t0 += SW_K_TILE_T)                                             \
                rowdot_##NAME(n, w, a + t0, nt - t0 < SW_K_TILE_T ? nt - t0 : SW_K_TILE_T, out + t0); \
            return;                                                                                  \
        }                                                                                            \
        switch (nt) {                                                                                \
        case 1: z##NAME##_nt(n, (const BT *)w, a, 1, out); break;                                   \
        case 2: z##NAME##_nt(n, (const BT *)w, a, 2, out); break;                                   \
        case 3: z##NAME##_nt(n, (const BT *)w, a, 3, out); break;                                   \
        case 4: z##NAME##_nt(n, (const BT *)w, a, 4, out); break;                                   \
        case 5: z##NAME##_nt(n, (const BT *)w, a, 5, out); break;                                   \
        case 6: z##NAME##_nt(n, (const BT *)w, a, 6, out); break;                                   \
        case 7: z##NAME##_nt(n, (const BT *)w, a, 7, out); break;                                   \
        default: z##NAME##_nt(n, (const BT *)w, a, 8, out); break;                                  \
        }                                                                                            \
    }

VNNI32_ROWDOT(q4_1, struct sw_block_q4_1)
VNNI32_ROWDOT(q5_0, struct sw_block_q5_0)
VNNI32_ROWDOT(q5_1, struct sw_block_q5_1)
VNNI32_ROWDOT(iq4_nl, struct sw_block_iq4_nl)
VNNI32_ROWDOT(mxfp4, struct sw_block_mxfp4)

/* ------------------------------------------------------------ 256-element blocks, VNNI */
/* One zmm holds 64 elements (as 64 contiguous Q8_K activation bytes); vpdpbusd gives 16
 * int32 lanes of 4 elements each, vpmulld applies the sub-block scales lane by lane. */

/* Q2_K / Q3_K: zmm m (0..3) covers elements 64m..64m+63 = sub-blocks 4m..4m+3 of 16, so
 * lanes 4r..4r+3 take scale 4m+r: sc8's bytes 4m..4m+3, each repeated over 4 lanes. */
AI __m512i scales16_x4(__m128i sc8, int m)
{
    const __m128i rep = _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    return _mm512_cvtepi8_epi32(_mm_shuffle_epi8(sc8, _mm_add_epi8(rep, _mm_set1_epi8((char)(4 * m)))));
}

/* Two 32-element code vectors (k = 2j, 2j+1 of half h) as one zmm in element order. */
AI __m512i cat2(__m256i lo, __m256i hi)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

AI void zq2_K_nt(int64_t n, const struct sw_block_q2_K *w, const struct sw_k_act *a, const int NT, float *out)
{
    __m512 acc[SW_K_TILE_T_MAX];
    __m256 accm[SW_K_TILE_T_MAX];
    for (int t = 0; t < NT; t++) {
        acc[t] = _mm512_setzero_ps();
        accm[t] = _mm256_setzero_ps();
    }
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        const struct sw_block_q2_K *x = &w[i];
        __m128i sc8 = _mm_loadu_si128((const __m128i *)x->scales);
        __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), m4));
        sc8 = _mm_and_si128(sc8, m4);
        __m512i u[4], sv[4];
        for (int h = 0; h < 2; h++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * h));
            for (int j = 0; j < 2; j++)
                u[2 * h + j] = cat2(_mm256_and_si256(_mm256_srli_epi16(q, 4 * j), m3),
                                    _mm256_and_si256(_mm256_srli_epi16(q, 4 * j + 2), m3));
        }
        for (int m = 0; m < 4; m++) sv[m] = scales16_x4(sc8, m);
        float d = h2f(x->d), dmin = h2f(x->dmin);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_K *y = &((const struct sw_block_q8_K *)a[t].q)[i];
            __m512i isum = _mm512_setzero_si512();
            for (int m = 0; m < 4; m++) {
                __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[m],
                                                  _mm512_loadu_si512((const void *)(y->qs + 64 * m)));
                isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(dot, sv[m]));
            }
            __m256 mm = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), mn16));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * y->d), acc[t]);
            accm[t] = _mm256_fmadd_ps(mm, _mm256_set1_ps(dmin * y->d), accm[t]);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = _mm512_reduce_add_ps(acc[t]) - hsum_ps(accm[t]);
}

AI void zq3_K_nt(int64_t n, const struct sw_block_q3_K *w, const struct sw_k_act *a, const int NT, float *out)
{
    __m512 acc[SW_K_TILE_T_MAX];
    for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_ps();
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        const struct sw_block_q3_K *x = &w[i];
        __m128i sc8 = _mm_sub_epi8(q3_K_scales(x->scales), _mm_set1_epi8(32));
        __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
        __m256i hm = _mm256_loadu_si256((const __m256i *)x->hmask);
        __m512i u[4], sv[4];
        for (int h = 0; h < 2; h++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * h));
            __m256i c[4];
            for (int k = 0; k < 4; k++) {
                __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + k), one);
                c[k] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3), _mm256_slli_epi16(hb, 2));
            }
            u[2 * h] = cat2(c[0], c[1]);
            u[2 * h + 1] = cat2(c[2], c[3]);
        }
        for (int m = 0; m < 4; m++) sv[m] = scales16_x4(sc8, m);
        float d = h2f(x->d);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_K *y = &((const struct sw_block_q8_K *)a[t].q)[i];
            __m512i isum = _mm512_setzero_si512();
            for (int m = 0; m < 4; m++) {
                __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[m],
                                                  _mm512_loadu_si512((const void *)(y->qs + 64 * m)));
                isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(dot, sv[m]));
            }
            /* codes are q + 4: take back 4 * sum_j s_j bsums_j */
            __m256i off = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), sc16);
            isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(_mm256_slli_epi32(off, 2)));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * y->d), acc[t]);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = _mm512_reduce_add_ps(acc[t]);
}

/* The 8 IQ4_XS sub-block scales minus 32 as int16, with vector ops (sw__k_iq4_xs_scale's
 * layout: low 4 bits as nibbles of scales_l, high 2 bits at bit 2j of scales_h). */
AI __m128i iq4_xs_scales16(const struct sw_block_iq4_xs *x)
{
    uint32_t l;
    memcpy(&l, x->scales_l, 4);
    const __m128i m4 = _mm_set1_epi8(0x0F), lv = _mm_cvtsi32_si128((int)l);
    __m128i lo8 = _mm_unpacklo_epi8(_mm_and_si128(lv, m4), _mm_and_si128(_mm_srli_epi16(lv, 4), m4));
    __m128i hi = _mm_srlv_epi16(_mm_set1_epi16((short)x->scales_h), _mm_setr_epi16(0, 2, 4, 6, 8, 10, 12, 14));
    hi = _mm_slli_epi16(_mm_and_si128(hi, _mm_set1_epi16(3)), 4);
    return _mm_sub_epi16(_mm_or_si128(_mm_cvtepu8_epi16(lo8), hi), _mm_set1_epi16(32));
}

/* IQ4_XS: u = grid value + 128 for sub-blocks 2p, 2p+1 in zmm p; lanes 0-7 take scale
 * 2p, 8-15 scale 2p+1; the +128 comes back as 128 * sum_ib s_ib * sum(a of ib). */
AI void ziq4_xs_nt(int64_t n, const struct sw_block_iq4_xs *w, const struct sw_k_act *a, const int NT, float *out)
{
    __m512 acc[SW_K_TILE_T_MAX];
    for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_ps();
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)sw__k_iq4nl_values));
    const __m256i x80 = _mm256_set1_epi8((char)0x80);
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        const struct sw_block_iq4_xs *x = &w[i];
        const __m128i sc = iq4_xs_scales16(x);
        const __m512i s512 = _mm512_castsi256_si512(_mm256_cvtepi16_epi32(sc));
        /* int16 j = s_{j/2} for madd with the 16 bsums */
        const __m256i s16 = _mm256_set_m128i(_mm_unpackhi_epi16(sc, sc), _mm_unpacklo_epi16(sc, sc));
        __m512i u[4], sv[4];
        for (int p = 0; p < 4; p++) {
            __m256i c0 = _mm256_xor_si256(_mm256_shuffle_epi8(tab, nibbles32(x->qs + 32 * p)), x80);
            __m256i c1 = _mm256_xor_si256(_mm256_shuffle_epi8(tab, nibbles32(x->qs + 32 * p + 16)), x80);
            u[p] = cat2(c0, c1);
            const __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(2 * p)),
                                                   _mm256_set1_epi32(2 * p + 1), 1);
            sv[p] = _mm512_permutexvar_epi32(idx, s512);
        }
        float d = h2f(x->d);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_K *y = &((const struct sw_block_q8_K *)a[t].q)[i];
            __m512i isum = _mm512_setzero_si512();
            for (int p = 0; p < 4; p++) {
                __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[p],
                                                  _mm512_loadu_si512((const void *)(y->qs + 64 * p)));
                isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(dot, sv[p]));
            }
            __m256i off = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), s16);
            isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(_mm256_slli_epi32(off, 7)));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * y->d), acc[t]);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = _mm512_reduce_add_ps(acc[t]);
}

/* Up to 8 tokens per decoded row (max_nt): 8 accumulators + 4 codes + 4 scales fit the 32
 * zmm, and decoding is about half the work at 4 tokens. */
#define ZK_DISPATCH(NAME, BT)                                                                      \
    static void zrowdot_##NAME(int64_t n, const void *w, const struct sw_k_act *a, int nt, float *out) \
    {                                                                                              \
        switch (nt) {                                                                              \
        case 1: z##NAME##_nt(n, (const BT *)w, a, 1, out); break;                                 \
        case 2: z##NAME##_nt(n, (const BT *)w, a, 2, out); break;                                 \
        case 3: z##NAME##_nt(n, (const BT *)w, a, 3, out); break;                                 \
        case 4: z##NAME##_nt(n, (const BT *)w, a, 4, out); break;                                 \
        case 5: z##NAME##_nt(n, (const BT *)w, a, 5, out); break;                                 \
        case 6: z##NAME##_nt(n, (const BT *)w, a, 6, out); break;                                 \
        case 7: z##NAME##_nt(n, (const BT *)w, a, 7, out); break;                                 \
        default: z##NAME##_nt(n, (const BT *)w, a, 8, out); break;                                \
        }                                                                                          \
    }                                                                                              \
    static float zvec_dot_##NAME(int64_t n, const void *w, const void *act)                       \
    {                                                                                              \
        struct sw_k_act a = {act, NULL};                                                           \
        float out;                                                                                 \
        z##NAME##_nt(n, (const BT *)w, &a, 1, &out);                                               \
        return out;                                                                                \
    }

ZK_DISPATCH(q2_K, struct sw_block_q2_K)
ZK_DISPATCH(q3_K, struct sw_block_q3_K)
ZK_DISPATCH(iq4_xs, struct sw_block_iq4_xs)

void sw__k_fill_avx512_low(struct sw_k_type_impl *tab, int n_tab)
{
    if (SW_TYPE_MXFP4 >= n_tab) return;
    fill_x86_low(tab, n_tab); /* this file's EVEX copies of the AVX2 kernels */
    /* vec_dot (no activation sums) keeps those; the matmul's row kernels use VNNI */
    tab[SW_TYPE_Q4_1].rowdot = zrowdot_q4_1;
    tab[SW_TYPE_Q5_0].rowdot = zrowdot_q5_0;
    tab[SW_TYPE_Q5_1].rowdot = zrowdot_q5_1;
    tab[SW_TYPE_IQ4_NL].rowdot = zrowdot_iq4_nl;
    tab[SW_TYPE_MXFP4].rowdot = zrowdot_mxfp4;
    tab[SW_TYPE_Q4_1].max_nt = tab[SW_TYPE_Q5_0].max_nt = tab[SW_TYPE_Q5_1].max_nt = SW_K_TILE_T_MAX;
    tab[SW_TYPE_IQ4_NL].max_nt = tab[SW_TYPE_MXFP4].max_nt = SW_K_TILE_T_MAX;
    tab[SW_TYPE_Q2_K].rowdot = zrowdot_q2_K;
    tab[SW_TYPE_Q2_K].pub.vec_dot = zvec_dot_q2_K;
    tab[SW_TYPE_Q3_K].rowdot = zrowdot_q3_K;
    tab[SW_TYPE_Q3_K].pub.vec_dot = zvec_dot_q3_K;
    tab[SW_TYPE_IQ4_XS].rowdot = zrowdot_iq4_xs;
    tab[SW_TYPE_IQ4_XS].pub.vec_dot = zvec_dot_iq4_xs;
    tab[SW_TYPE_Q2_K].max_nt = tab[SW_TYPE_Q3_K].max_nt = tab[SW_TYPE_IQ4_XS].max_nt = SW_K_TILE_T_MAX;
}
