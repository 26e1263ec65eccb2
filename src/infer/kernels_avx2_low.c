/* kernels_avx2_low.c — AVX2 kernels for Q4_1, Q5_0, Q5_1 and the low-bit types Q2_K,
 * Q3_K, IQ4_NL, IQ4_XS, MXFP4: one "row x up to 4 tokens" kernel per type, each with the
 * shape and result of its reference (kernels_ref.c, kernels_ref_low.c); test_kernels holds
 * them to it. Unsigned codes (Q4_1/Q5_x, Q2_K, Q3_K) go into maddubs' u8 operand with their
 * offsets taken back from activation sums; table types (IQ4, MXFP4) look their values up
 * with pshufb and use the sign trick (|v| x sign(a, v)), since the values are signed.
 * kernels_avx512_low.c includes this file with SW_K_X86_BODY_ONLY to compile the same
 * kernels with EVEX encoding. Not for: the other types (kernels_avx2.c). */
#include "infer/kernels_x86.h"

/* ------------------------------------------------------------ shared pieces */

/* Sum of the 32 int8 activations of a Q8_0 block times its scale: the matmul hands these
 * over ({d, d*sum} pairs); vec_dot has none and computes them. */
AI float q8_0_dsum(const struct sw_k_act *a, int64_t b)
{
    if (a->sums) return a->sums[2 * b + 1];
    const struct sw_block_q8_0 *y = (const struct sw_block_q8_0 *)a->q + b;
    __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), _mm256_loadu_si256((const __m256i *)y->qs)),
                                  _mm256_set1_epi16(1));
    return h2f(y->d) * (float)hsum_epi32(s);
}

AI float q8_0_d(const struct sw_k_act *a, int64_t b)
{
    return a->sums ? a->sums[2 * b] : h2f(((const struct sw_block_q8_0 *)a->q + b)->d);
}

/* Bit j of a 32-bit word -> byte j as 0x10 (the 5th bit of Q5_0/Q5_1 code j). */
AI __m256i q5_high_bits(const uint8_t *qh)
{
    uint32_t h;
    memcpy(&h, qh, 4);
    /* byte j takes word byte j/8, then tests its bit j%8 */
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3,
                                          3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), shuf);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* The 16 Q3_K scales (biased by 32, 0..63) as bytes, from the packed 12 (bit layout in
 * sw__k_q3_K_scale), with 32-bit integer ops. */
AI __m128i q3_K_scales(const uint8_t *s)
{
    uint32_t a0, a1, a2;
    memcpy(&a0, s, 4);
    memcpy(&a1, s + 4, 4);
    memcpy(&a2, s + 8, 4);
    const uint32_t m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    uint32_t w0 = (a0 & m4) | (a2 & m2) << 4, w1 = (a1 & m4) | (a2 >> 2 & m2) << 4;
    uint32_t w2 = (a0 >> 4 & m4) | (a2 >> 4 & m2) << 4, w3 = (a1 >> 4 & m4) | (a2 >> 6 & m2) << 4;
    return _mm_setr_epi32((int)w0, (int)w1, (int)w2, (int)w3);
}

/* ------------------------------------------------------------ Q4_1, Q5_0, Q5_1 (Q8_0 acts) */

/* Q4_1: dot = d*da*<q, a> + m*da*sum(a), q the unsigned nibbles. */
AI void q4_1_nt(int64_t n, const struct sw_block_q4_1 *w, const struct sw_k_act *a, const int NT, float *out)
{
    __m256 acc[SW_K_TILE_T];
    float corr[SW_K_TILE_T];
    for (int t = 0; t < NT; t++) {
        acc[t] = _mm256_setzero_ps();
        corr[t] = 0;
    }
    for (int64_t b = 0; b < n / SW_QK4_1; b++) {
        __m256i u = nibbles32(w[b].qs);
        float dw = h2f(w[b].d), mw = h2f(w[b].m);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_0 *y = (const struct sw_block_q8_0 *)a[t].q + b;
            acc[t] = _mm256_fmadd_ps(dot_us8(u, _mm256_loadu_si256((const __m256i *)y->qs)),
                                     _mm256_set1_ps(dw * q8_0_d(&a[t], b)), acc[t]);
            corr[t] += mw * q8_0_dsum(&a[t], b);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = hsum_ps(acc[t]) + corr[t];
}

/* Q5_0: codes 0..31 unsigned, dot = d*da*<q, a> - 16*d*da*sum(a). */
AI void q5_0_nt(int64_t n, const struct sw_block_q5_0 *w, const struct sw_k_act *a, const int NT, float *out)
{
    __m256 acc[SW_K_TILE_T];
    float corr[SW_K_TILE_T];
    for (int t = 0; t < NT; t++) {
        acc[t] = _mm256_setzero_ps();
        corr[t] = 0;
    }
    for (int64_t b = 0; b < n / SW_QK5_0; b++) {
        __m256i u = _mm256_or_si256(nibbles32(w[b].qs), q5_high_bits(w[b].qh));
        float dw = h2f(w[b].d);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_0 *y = (const struct sw_block_q8_0 *)a[t].q + b;
            acc[t] = _mm256_fmadd_ps(dot_us8(u, _mm256_loadu_si256((const __m256i *)y->qs)),
                                     _mm256_set1_ps(dw * q8_0_d(&a[t], b)), acc[t]);
            corr[t] += dw * q8_0_dsum(&a[t], b);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = hsum_ps(acc[t]) - 16.0f * corr[t];
}

/* Q5_1: codes 0..31, dot = d*da*<q, a> + m*da*sum(a). */
AI void q5_1_nt(int64_t n, const struct sw_block_q5_1 *w, const struct sw_k_act *a, const int NT, float *out)
{
    __m256 acc[SW_K_TILE_T];
    float corr[SW_K_TILE_T];
    for (int t = 0; t < NT; t++) {
        acc[t] = _mm256_setzero_ps();
        corr[t] = 0;
    }
    for (int64_t b = 0; b < n / SW_QK5_1; b++) {
        __m256i u = _mm256_or_si256(nibbles32(w[b].qs), q5_high_bits(w[b].qh));
        float dw = h2f(w[b].d), mw = h2f(w[b].m);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_0 *y = (const struct sw_block_q8_0 *)a[t].q + b;
            acc[t] = _mm256_fmadd_ps(dot_us8(u, _mm256_loadu_si256((const __m256i *)y->qs)),
                                     _mm256_set1_ps(dw * q8_0_d(&a[t], b)), acc[t]);
            corr[t] += mw * q8_0_dsum(&a[t], b);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = hsum_ps(acc[t]) + corr[t];
}

/* ------------------------------------------------------------ IQ4_NL, MXFP4 (Q8_0 acts) */

/* Table types: values = pshufb(table, nibbles) as int8, dotted with the sign trick. */
#define TABLE_Q8_0_NT(NAME, BT, TABLE, SCALE)                                                      \
    AI void NAME##_nt(int64_t n, const BT *w, const struct sw_k_act *a, const int NT, float *out)   \
    {                                                                                              \
        __m256 acc[SW_K_TILE_T];                                                                   \
        for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();                                 \
        const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(TABLE))); \
        for (int64_t b = 0; b < n / 32; b++) {                                                     \
            __m256i v = _mm256_shuffle_epi8(tab, nibbles32(w[b].qs));                              \
            __m256i av = _mm256_sign_epi8(v, v);                                                   \
            float dw = SCALE(&w[b]);                                                               \
            for (int t = 0; t < NT; t++) {                                                         \
                const struct sw_block_q8_0 *y = (const struct sw_block_q8_0 *)a[t].q + b;         \
                __m256i s = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)y->qs), v);       \
                acc[t] = _mm256_fmadd_ps(dot_us8(av, s), _mm256_set1_ps(dw * q8_0_d(&a[t], b)), acc[t]); \
            }                                                                                      \
        }                                                                                          \
        for (int t = 0; t < NT; t++) out[t] = hsum_ps(acc[t]);                                     \
    }

AI float iq4_nl_scale(const struct sw_block_iq4_nl *b)
{
    return h2f(b->d);
}
AI float mxfp4_scale(const struct sw_block_mxfp4 *b)
{
    return sw__k_e8m0_half(b->e);
}

TABLE_Q8_0_NT(iq4_nl, struct sw_block_iq4_nl, sw__k_iq4nl_values, iq4_nl_scale)
TABLE_Q8_0_NT(mxfp4, struct sw_block_mxfp4, sw__k_mxfp4_values, mxfp4_scale)

/* ------------------------------------------------------------ IQ4_XS (Q8_K acts) */

/* pshufb controls: control ib repeats int16 ib of a 128-bit lane over the whole vector. */
#define IQ4S_L(j) 2 * (j), 2 * (j) + 1, 2 * (j), 2 * (j) + 1, 2 * (j), 2 * (j) + 1, 2 * (j), 2 * (j) + 1
#define IQ4S(j) {IQ4S_L(j), IQ4S_L(j), IQ4S_L(j), IQ4S_L(j)}
static const uint8_t iq4_xs_sc_ctl[8][32] __attribute__((aligned(32))) = {IQ4S(0), IQ4S(1), IQ4S(2), IQ4S(3),
                                                                           IQ4S(4), IQ4S(5), IQ4S(6), IQ4S(7)};
#undef IQ4S
#undef IQ4S_L

/* The 8 sub-block scales (ls - 32) as int16 0..7 in both 128-bit lanes, with vector ops
 * (sw__k_iq4_xs_scale's bits: 4 at bit 4ib of scales_l, 2 at bit 2ib of scales_h); a
 * sub-block's broadcast scale is then one pshufb by iq4_xs_sc_ctl[ib]. */
AI __m256i iq4_xs_scales_bc(const struct sw_block_iq4_xs *x)
{
    uint32_t l;
    memcpy(&l, x->scales_l, 4);
    const __m256i lo = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)l), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                                        _mm256_set1_epi32(0x0F));
    const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)x->scales_h << 4),
                                                          _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
                                        _mm256_set1_epi32(0x30));
    const __m256i s32 = _mm256_sub_epi32(_mm256_or_si256(lo, hi), _mm256_set1_epi32(32));
    /* packs: quads [s0-3, s0-3 | s4-7, s4-7]; quads 0, 2, 0, 2: [s0-3, s4-7 | s0-3, s4-7] */
    return _mm256_permute4x64_epi64(_mm256_packs_epi32(s32, s32), 0x88);
}

AI __m256i iq4_xs_scale_of(__m256i sc, int ib)
{
    return _mm256_shuffle_epi8(sc, _mm256_load_si256((const __m256i *)iq4_xs_sc_ctl[ib]));
}

/* pshufb controls: control j has int16 2j of a 128-bit lane in lane 0 and int16 2j+1 in
 * lane 1, repeated (the scales of sub-blocks 2j and 2j+1 in iq4_xs_isum). */
#define IQ4P_L(j) 2 * (j), 2 * (j) + 1, 2 * (j), 2 * (j) + 1, 2 * (j), 2 * (j) + 1, 2 * (j), 2 * (j) + 1
#define IQ4P(j) {IQ4P_L(2 * (j)), IQ4P_L(2 * (j)), IQ4P_L(2 * (j) + 1), IQ4P_L(2 * (j) + 1)}
static const uint8_t iq4_xs_pair_ctl[4][32] __attribute__((aligned(32))) = {IQ4P(0), IQ4P(1), IQ4P(2), IQ4P(3)};
#undef IQ4P
#undef IQ4P_L

/* A block's integer sum sum_ib (ls_ib - 32) <grid[codes of ib], a of ib> for one token, two
 * sub-blocks per step: one 32-byte load holds both's 16 code bytes, so the low nibbles (elements
 * 0-15 of ib | of ib+1) and the high ones (16-31 | 16-31) are each one vector without a lane
 * insert; the activations are loaded in that order (two halves each), and one scale vector
 * (ls of ib | of ib+1) serves both. Grid values by pshufb, sign-trick maddubs, madd by scale. */
AI __m256i iq4_xs_isum(const struct sw_block_iq4_xs *x, const int8_t *qa, __m256i tab)
{
    const __m256i sc = iq4_xs_scales_bc(x), m4 = _mm256_set1_epi8(0x0F);
    __m256i isum0 = _mm256_setzero_si256(), isum1 = isum0;
    for (int j = 0; j < 4; j++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * j));
        const __m256i vl = _mm256_shuffle_epi8(tab, _mm256_and_si256(q, m4));
        const __m256i vh = _mm256_shuffle_epi8(tab, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
        const __m256i ls = _mm256_shuffle_epi8(sc, _mm256_load_si256((const __m256i *)iq4_xs_pair_ctl[j]));
        const int8_t *a0 = qa + 64 * j;
        const __m256i al = _mm256_loadu2_m128i((const __m128i *)(a0 + 32), (const __m128i *)a0);
        const __m256i ah = _mm256_loadu2_m128i((const __m128i *)(a0 + 48), (const __m128i *)(a0 + 16));
        isum0 = _mm256_add_epi32(isum0, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(vl, vl), _mm256_sign_epi8(al, vl)), ls));
        isum1 = _mm256_add_epi32(isum1, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(vh, vh), _mm256_sign_epi8(ah, vh)), ls));
    }
    return _mm256_add_epi32(isum0, isum1);
}

/* acc = fma(block sum, d * da, acc) in scalar float, the step the many-token tile takes */
AI float iq4_xs_step(float acc, int32_t sum, float d, float da)
{
    return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss((float)sum), _mm_set_ss(d * da), _mm_set_ss(acc)));
}

AI void iq4_xs_nt(int64_t n, const struct sw_block_iq4_xs *w, const struct sw_k_act *a, const int NT, float *out)
{
    float acc[SW_K_TILE_T];
    for (int t = 0; t < NT; t++) acc[t] = 0;
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)sw__k_iq4nl_values));
    const int64_t nb = n / SW_QK_K;
    int64_t i = 0;
    if (NT == 1) {
        /* a matvec: four blocks' integer sums reduced together (one hadd tree instead of four
         * horizontal sums); the same integers, then the same float steps in block order */
        const struct sw_block_q8_K *y = a[0].q;
        for (; i + 4 <= nb; i += 4) {
            for (int k = 0; k < 4; k++) pf_ahead(&w[i + k], 3); /* 136 bytes */
            const __m256i s0 = iq4_xs_isum(&w[i], y[i].qs, tab), s1 = iq4_xs_isum(&w[i + 1], y[i + 1].qs, tab);
            const __m256i s2 = iq4_xs_isum(&w[i + 2], y[i + 2].qs, tab), s3 = iq4_xs_isum(&w[i + 3], y[i + 3].qs, tab);
            const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
            int32_t sum[4];
            _mm_storeu_si128((__m128i *)sum, _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
            for (int k = 0; k < 4; k++) acc[0] = iq4_xs_step(acc[0], sum[k], h2f(w[i + k].d), y[i + k].d);
        }
    }
    for (; i < nb; i++) {
        const struct sw_block_iq4_xs *x = &w[i];
        __m256i isum[SW_K_TILE_T];
        for (int t = 0; t < NT; t++) isum[t] = _mm256_setzero_si256();
        const __m256i sc = iq4_xs_scales_bc(x);
        for (int ib = 0; ib < 8; ib++) { /* iq4_xs_isum's steps, the codes decoded once for NT tokens */
            __m256i v = _mm256_shuffle_epi8(tab, nibbles32(x->qs + 16 * ib));
            __m256i av = _mm256_sign_epi8(v, v);
            __m256i ls = iq4_xs_scale_of(sc, ib);
            for (int t = 0; t < NT; t++) {
                const int8_t *qa = ((const struct sw_block_q8_K *)a[t].q)[i].qs + 32 * ib;
                __m256i s = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)qa), v);
                isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(av, s), ls));
            }
        }
        /* the block's whole integer sum, then one FMA: the many-token tile sums the same */
        const float d = h2f(x->d);
        for (int t = 0; t < NT; t++)
            acc[t] = iq4_xs_step(acc[t], hsum_epi32(isum[t]), d, ((const struct sw_block_q8_K *)a[t].q)[i].d);
    }
    for (int t = 0; t < NT; t++) out[t] = acc[t];
}

/* IQ4_XS for many tokens (prefill), 8 rows at a time: per segment of IQ4P_SEG blocks the 8
 * rows' codes are decoded once - transposed so 32-bit lane r is row r (bytes 4j..4j+3 of
 * each row's 16 code bytes per sub-block, as Q4_0's tile), looked up in the table, with their
 * magnitudes and the sub-block scales (ls - 32) per lane - into a stack buffer, and every
 * pass of up to 4 tokens loads them: per token and 32 weights of 8 rows, sign + maddubs +
 * madd + add. Each row's integer sum per block is exact in any order, and the float step
 * (one FMA per block by d * da) is iq4_xs_nt's, so the tile gives the row kernel's bits; the
 * 1-token matvec keeps the row kernel. */
#ifndef SW_K_X86_BODY_ONLY
#define IQ4P_SEG 4 /* blocks per segment: 4 x 4.3 KB */
struct iq4p_sub {
    __m256i val[8]; /* code vector j: table values, lane r = row r's elements k_j..k_j+3 */
    __m256i mag[8]; /* their magnitudes */
    __m256i ls;     /* lane r: row r's ls - 32 in both int16 halves */
};
struct iq4p_block {
    struct iq4p_sub sub[8];
    __m256 dw; /* the 8 rows' d */
};
static const int iq4p_k[8] = {0, 16, 4, 20, 8, 24, 12, 28};

static void iq4_xs_pack8(const struct sw_block_iq4_xs *w, size_t ws, int64_t b0, int64_t b1, struct iq4p_block *p)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)sw__k_iq4nl_values));
    for (int64_t b = b0; b < b1; b++, p++) {
        const struct sw_block_iq4_xs *w0 = w + b;
        for (int ib = 0; ib < 8; ib++) {
            struct iq4p_sub *q = &p->sub[ib];
#define ROWS_R(r)                                                                                              \
    _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(w0[(r) * ws].qs + 16 * ib))), \
                            _mm_loadu_si128((const __m128i *)(w0[((r) + 4) * ws].qs + 16 * ib)), 1)
            const __m256i r0 = ROWS_R(0), r1 = ROWS_R(1), r2 = ROWS_R(2), r3 = ROWS_R(3);
#undef ROWS_R
            const __m256i a01 = _mm256_unpacklo_epi32(r0, r1), b01 = _mm256_unpackhi_epi32(r0, r1);
            const __m256i a23 = _mm256_unpacklo_epi32(r2, r3), b23 = _mm256_unpackhi_epi32(r2, r3);
            const __m256i v[4] = {_mm256_unpacklo_epi64(a01, a23), _mm256_unpackhi_epi64(a01, a23),
                                  _mm256_unpacklo_epi64(b01, b23), _mm256_unpackhi_epi64(b01, b23)};
            for (int j = 0; j < 4; j++) {
                const __m256i lo = _mm256_shuffle_epi8(tab, _mm256_and_si256(v[j], m4));
                const __m256i hi = _mm256_shuffle_epi8(tab, _mm256_and_si256(_mm256_srli_epi16(v[j], 4), m4));
                _mm256_store_si256(&q->val[2 * j], lo);
                _mm256_store_si256(&q->mag[2 * j], _mm256_sign_epi8(lo, lo));
                _mm256_store_si256(&q->val[2 * j + 1], hi);
                _mm256_store_si256(&q->mag[2 * j + 1], _mm256_sign_epi8(hi, hi));
            }
            int32_t ls[8];
            for (int r = 0; r < 8; r++) {
                const uint32_t l = (uint16_t)(int16_t)(sw__k_iq4_xs_scale(&w0[r * ws], ib) - 32);
                ls[r] = (int32_t)(l | l << 16);
            }
            _mm256_store_si256(&q->ls, _mm256_loadu_si256((const __m256i *)ls));
        }
        _mm256_store_ps((float *)&p->dw,
                        TILE8_D(w0, ws));
    }
}

/* Blocks b0..b1-1 (packed in p) for NT (1..4) tokens, lane r = row r: per block the row's
 * whole integer sum, then acc = fma(sum, d * da, acc) as iq4_xs_nt; carry: continue the
 * sums in out (a float stored and loaded is the same float). */
#define IQ4P_KEEP(v) __asm__("" : "+x"(v))
AI void iq4_xs_tilep_nt(const struct iq4p_block *p, int64_t b0, int64_t b1, const struct sw_k_act *a, const int NT,
                        float *out, size_t ldo, int carry)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    if (carry) {
        TILE8_LOAD(NT, out, ldo, acc0, acc1, acc2, acc3);
    }
    for (int64_t b = b0; b < b1; b++, p++) {
        const struct sw_block_q8_K *y0 = (const struct sw_block_q8_K *)a[0].q + b;
        const struct sw_block_q8_K *y1 = NT > 1 ? (const struct sw_block_q8_K *)a[1].q + b : y0;
        const struct sw_block_q8_K *y2 = NT > 2 ? (const struct sw_block_q8_K *)a[2].q + b : y0;
        const struct sw_block_q8_K *y3 = NT > 3 ? (const struct sw_block_q8_K *)a[3].q + b : y0;
        __m256i i0 = _mm256_setzero_si256(), i1 = i0, i2 = i0, i3 = i0;
        for (int ib = 0; ib < 8; ib++) {
            const struct iq4p_sub *q = &p->sub[ib];
            const __m256i ls = _mm256_load_si256(&q->ls);
            for (int j = 0; j < 8; j++) {
                const __m256i v = _mm256_load_si256(&q->val[j]), m = _mm256_load_si256(&q->mag[j]);
                const int k = 32 * ib + iq4p_k[j];
#define IQ4P_PROD(I, Y)                                                                             \
    I = _mm256_add_epi32(                                                                           \
        I, _mm256_madd_epi16(                                                                       \
               _mm256_maddubs_epi16(m, _mm256_sign_epi8(_mm256_broadcastd_epi32(_mm_loadu_si32((Y)->qs + k)), v)), ls))
                IQ4P_PROD(i0, y0);
                if (NT > 1) IQ4P_PROD(i1, y1);
                if (NT > 2) IQ4P_PROD(i2, y2);
                if (NT > 3) IQ4P_PROD(i3, y3);
                /* the sums stay one chain per token, in registers: without this gcc regroups the
                 * adds into trees over the code vectors and spills the partial sums */
                IQ4P_KEEP(i0);
                if (NT > 1) IQ4P_KEEP(i1);
                if (NT > 2) IQ4P_KEEP(i2);
                if (NT > 3) IQ4P_KEEP(i3);
#undef IQ4P_PROD
            }
        }
        const __m256 dw = _mm256_load_ps((const float *)&p->dw);
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0), _mm256_mul_ps(dw, _mm256_set1_ps(y0->d)), acc0);
        if (NT > 1) acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i1), _mm256_mul_ps(dw, _mm256_set1_ps(y1->d)), acc1);
        if (NT > 2) acc2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i2), _mm256_mul_ps(dw, _mm256_set1_ps(y2->d)), acc2);
        if (NT > 3) acc3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i3), _mm256_mul_ps(dw, _mm256_set1_ps(y3->d)), acc3);
    }
    TILE8_STORE(NT, out, ldo, acc0, acc1, acc2, acc3);
}

static void rowdot_iq4_xs(int64_t n, const void *w, const struct sw_k_act *a, int nt, float *out);

static void tile_many_iq4_xs(int64_t n, const void *w, size_t w_stride, int nr, const struct sw_k_act *a, int nt,
                             float *out, size_t ldo)
{
    (void)nr; /* always 8 (tile_rows) */
    if (w_stride % sizeof(struct sw_block_iq4_xs)) {
        for (int r = 0; r < 8; r++)
            for (int t0 = 0; t0 < nt; t0 += SW_K_TILE_T) {
                float o[SW_K_TILE_T];
                const int k = nt - t0 < SW_K_TILE_T ? nt - t0 : SW_K_TILE_T;
                rowdot_iq4_xs(n, (const uint8_t *)w + (size_t)r * w_stride, a + t0, k, o);
                for (int t = 0; t < k; t++) out[(size_t)(t0 + t) * ldo + r] = o[t];
            }
        return;
    }
    const int64_t nb = n / SW_QK_K;
    TILE_MANY_SEGMENTS(struct sw_block_iq4_xs, struct iq4p_block, IQ4P_SEG, iq4_xs_pack8, iq4_xs_tilep_nt);
}
#endif

/* ------------------------------------------------------------ Q2_K, Q3_K (Q8_K acts) */

/* pshufb controls for Q2_K's scale pairs: with the 16 scale bytes in both 128-bit lanes,
 * control p puts scale 2p (lane 0) / 2p+1 (lane 1) in the low byte of every int16 and zero
 * in the high byte (index 0x80) - one in-lane shuffle per 32 codes instead of a lane-crossing
 * permute and a shuffle. */
#define Q2S_L(j) j, 0x80, j, 0x80, j, 0x80, j, 0x80, j, 0x80, j, 0x80, j, 0x80, j, 0x80
#define Q2S(p) {Q2S_L(2 * (p)), Q2S_L(2 * (p) + 1)}
static const uint8_t q2_K_sc_ctl[8][32] __attribute__((aligned(32))) = {Q2S(0), Q2S(1), Q2S(2), Q2S(3),
                                                                         Q2S(4), Q2S(5), Q2S(6), Q2S(7)};
#undef Q2S
#undef Q2S_L

/* Q2_K: codes 0..3 unsigned; sum_j sc_j <q_j, a_j> by maddubs + madd with scale pairs, the
 * mins from bsums: d*da*that - dmin*da*sum_j m_j bsums_j. */
AI void q2_K_nt(int64_t n, const struct sw_block_q2_K *w, const struct sw_k_act *a, const int NT, float *out)
{
    __m256 acc[SW_K_TILE_T];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < n / SW_QK_K; i++) {
        const struct sw_block_q2_K *x = &w[i];
        if (NT == 1) pf_ahead(x, 2); /* 84 bytes */
        __m128i sc8 = _mm_loadu_si128((const __m128i *)x->scales);
        __m256i scb = _mm256_broadcastsi128_si256(_mm_and_si128(sc8, m4));
        __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), m4));
        __m256i isum[SW_K_TILE_T];
        for (int t = 0; t < NT; t++) isum[t] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * h));
            for (int k = 0; k < 4; k++) {
                __m256i u = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3);
                __m256i sp = _mm256_shuffle_epi8(scb, _mm256_load_si256((const __m256i *)q2_K_sc_ctl[4 * h + k]));
                for (int t = 0; t < NT; t++) {
                    const int8_t *qa = ((const struct sw_block_q8_K *)a[t].q)[i].qs + 128 * h + 32 * k;
                    __m256i p = _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)qa));
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, sp));
                }
            }
        }
        float d = h2f(x->d), dmin = h2f(x->dmin);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_K *y = &((const struct sw_block_q8_K *)a[t].q)[i];
            __m256 mm = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), mn16));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(d * y->d), acc[t]);
            acc[t] = _mm256_fnmadd_ps(mm, _mm256_set1_ps(dmin * y->d), acc[t]);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = hsum_ps(acc[t]);
}

/* Q3_K's scales 8h..8h+7 (int16, of sc16's 16) in both 128-bit lanes; then the pair of
 * sub-blocks 8h+2k (lane 0) and 8h+2k+1 (lane 1) is one in-lane shuffle away (q3_K_pair):
 * two ops per 32 codes fewer than a lane-crossing permute per pair. */
AI __m256i q3_K_scales_half(__m256i sc16, int h)
{
    return h ? _mm256_permute4x64_epi64(sc16, 0xEE) : _mm256_permute4x64_epi64(sc16, 0x44);
}

/* pshufb controls: control k repeats int16 2k of lane 0 over lane 0 and int16 2k+1 over lane 1. */
#define Q3P_L(j) 2 * (j), 2 * (j) + 1, 2 * (j), 2 * (j) + 1, 2 * (j), 2 * (j) + 1, 2 * (j), 2 * (j) + 1
#define Q3P(k) {Q3P_L(2 * (k)), Q3P_L(2 * (k)), Q3P_L(2 * (k) + 1), Q3P_L(2 * (k) + 1)}
static const uint8_t q3_K_pair_ctl[4][32] __attribute__((aligned(32))) = {Q3P(0), Q3P(1), Q3P(2), Q3P(3)};
#undef Q3P
#undef Q3P_L

AI __m256i q3_K_pair(__m256i sch, int k)
{
    return _mm256_shuffle_epi8(sch, _mm256_load_si256((const __m256i *)q3_K_pair_ctl[k]));
}

/* Q3_K, one token and block: codes u = low 2 bits | high bit << 2 in 0..7 (= q + 4), scales
 * s - 32 signed; the exact integer sum_j s_j <u_j - 4, a_j> = sum_j s_j <u_j, a_j> - 4 sum_j
 * s_j bsums_j over the 8 lanes of the result. */
AI __m256i q3_K_isum(const struct sw_block_q3_K *x, const struct sw_block_q8_K *y)
{
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_sub_epi8(q3_K_scales(x->scales), _mm_set1_epi8(32)));
    const __m256i hm = _mm256_loadu_si256((const __m256i *)x->hmask);
    __m256i isum = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * h));
        const __m256i sch = q3_K_scales_half(sc16, h);
        for (int k = 0; k < 4; k++) {
            __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + k), one);
            __m256i u = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3), _mm256_slli_epi16(hb, 2));
            __m256i p = _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)(y->qs + 128 * h + 32 * k)));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, q3_K_pair(sch, k)));
        }
    }
    const __m256i off = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), sc16);
    return _mm256_sub_epi32(isum, _mm256_slli_epi32(off, 2));
}

/* Q3_K: per block the exact integer sum (q3_K_isum's), then acc = fma(sum, d*da, acc) in
 * scalar (kq_step): the step the many-token tile (kernels_avx2_kq.c) takes per row lane. */
AI void q3_K_nt(int64_t n, const struct sw_block_q3_K *w, const struct sw_k_act *a, const int NT, float *out)
{
    float acc[SW_K_TILE_T];
    for (int t = 0; t < NT; t++) acc[t] = 0;
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    const int64_t nb = n / SW_QK_K;
    int64_t i = 0;
    if (NT == 1) { /* a matvec: four blocks' sums reduced by one hadd tree, then the steps in order */
        const struct sw_block_q8_K *y = a[0].q;
        for (; i + 4 <= nb; i += 4) {
            __m256i s[4];
            for (int k = 0; k < 4; k++) {
                pf_ahead(&w[i + k], 2); /* 110 bytes */
                s[k] = q3_K_isum(&w[i + k], &y[i + k]);
            }
            int32_t S[4];
            hsum4_epi32(s, S);
            for (int k = 0; k < 4; k++) acc[0] = kq_step(acc[0], S[k], h2f(w[i + k].d), y[i + k].d);
        }
    }
    for (; i < nb; i++) {
        const struct sw_block_q3_K *x = &w[i];
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_sub_epi8(q3_K_scales(x->scales), _mm_set1_epi8(32)));
        __m256i hm = _mm256_loadu_si256((const __m256i *)x->hmask);
        __m256i isum[SW_K_TILE_T];
        for (int t = 0; t < NT; t++) isum[t] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * h));
            const __m256i sch = q3_K_scales_half(sc16, h);
            for (int k = 0; k < 4; k++) {
                __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + k), one);
                __m256i u = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3), _mm256_slli_epi16(hb, 2));
                __m256i sp = q3_K_pair(sch, k);
                for (int t = 0; t < NT; t++) {
                    const int8_t *qa = ((const struct sw_block_q8_K *)a[t].q)[i].qs + 128 * h + 32 * k;
                    __m256i p = _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)qa));
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, sp));
                }
            }
        }
        const float d = h2f(x->d);
        for (int t = 0; t < NT; t++) {
            const struct sw_block_q8_K *y = &((const struct sw_block_q8_K *)a[t].q)[i];
            __m256i off = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), sc16);
            acc[t] = kq_step(acc[t], hsum_epi32(_mm256_sub_epi32(isum[t], _mm256_slli_epi32(off, 2))), d, y->d);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = acc[t];
}

ROWDOT_DISPATCH(q4_1, struct sw_block_q4_1)
ROWDOT_DISPATCH(q5_0, struct sw_block_q5_0)
ROWDOT_DISPATCH(q5_1, struct sw_block_q5_1)
ROWDOT_DISPATCH(iq4_nl, struct sw_block_iq4_nl)
ROWDOT_DISPATCH(mxfp4, struct sw_block_mxfp4)
ROWDOT_DISPATCH(iq4_xs, struct sw_block_iq4_xs)
ROWDOT_DISPATCH(q2_K, struct sw_block_q2_K)
ROWDOT_DISPATCH(q3_K, struct sw_block_q3_K)

/* ------------------------------------------------------------ table */

/* Row kernels of this file; the activation quantizers are the family's own Q8_0 / Q8_K
 * ones, taken from Q4_0 / Q4_K which the family's main fill has set. */
static void fill_x86_low(struct sw_k_type_impl *tab, int n_tab)
{
    if (SW_TYPE_MXFP4 >= n_tab) return;
    const sw_k_quant_fn q80 = tab[SW_TYPE_Q4_0].pub.quantize_act, q8k = tab[SW_TYPE_Q4_K].pub.quantize_act;
    const struct sw__k_row_fill f[] = {
        {SW_TYPE_Q4_1, vec_dot_q4_1, rowdot_q4_1, q80, 1},       {SW_TYPE_Q5_0, vec_dot_q5_0, rowdot_q5_0, q80, 1},
        {SW_TYPE_Q5_1, vec_dot_q5_1, rowdot_q5_1, q80, 1},       {SW_TYPE_IQ4_NL, vec_dot_iq4_nl, rowdot_iq4_nl, q80, 1},
        {SW_TYPE_MXFP4, vec_dot_mxfp4, rowdot_mxfp4, q80, 1},    {SW_TYPE_IQ4_XS, vec_dot_iq4_xs, rowdot_iq4_xs, q8k, 0},
        {SW_TYPE_Q2_K, vec_dot_q2_K, rowdot_q2_K, q8k, 0},       {SW_TYPE_Q3_K, vec_dot_q3_K, rowdot_q3_K, q8k, 0},
    };
    sw__k_fill_rows(tab, f, sizeof f / sizeof f[0]);
#ifndef SW_K_X86_BODY_ONLY /* AVX2 family only: the AVX-512 one has its own IQ4_XS rows */
    tab[SW_TYPE_IQ4_XS].tile_many = tile_many_iq4_xs;
    tab[SW_TYPE_IQ4_XS].tile_rows = 8;
#endif
}

#ifndef SW_K_X86_BODY_ONLY
void sw__k_fill_avx2_low(struct sw_k_type_impl *tab, int n_tab)
{
    fill_x86_low(tab, n_tab);
}
#endif
