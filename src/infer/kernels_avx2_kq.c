/* kernels_avx2_kq.c — the AVX2 family's many-token tiles (`tile_many`) for Q4_K, Q5_K and
 * Q3_K: prefill and the experts' token groups, 8 rows at a time. Per segment of KQ_SEG
 * blocks the 8 rows' codes are decoded once into a stack buffer, one code per byte and
 * transposed so that 32-bit lane r holds 4 consecutive codes of row r, with each sub-block's
 * scales (and Q4_K/Q5_K's mins) per lane; every pass of up to 4 tokens then multiplies each
 * code vector by the token's 4 matching activation bytes broadcast (maddubs), adds a
 * sub-block's products in int16 and applies the 8 rows' scales with one madd. Per token and
 * 32 weights of 8 rows that is ~8 maddubs + 8 adds + 1 madd, where the row kernels spend
 * 2 multiplies and an add per 32 weights of one row and decode each row again per 4 tokens.
 * Each row's block sums are the exact integers the row kernels compute (kernels_avx2.c,
 * kernels_avx2_low.c), and the float steps per block are theirs (kq_step, kq_step_min in
 * kernels_x86.h) lane by lane, so a token gets the same bits alone or in a prefill.
 * AVX2 family only (the AVX-512 family has its own K-quant rows). Not for: the row kernels. */
#include "infer/kernels_x86.h"

/* An empty asm that "changes" v: keeps gcc from regrouping the int16 sums into a tree of
 * all products first and spilling them (as in kernels_avx2.c's Q4_0 tile). */
#define KQ_KEEP(v) __asm__("" : "+x"(v))

/* Blocks per segment: a Q4_K/Q5_K segment is 4 x 2.6 KB, a Q3_K one 4 x 2.8 KB; with 4
 * tokens' activations (4 x 4 x 292 bytes) it stays in L1. */
#define KQ_SEG 4

/* 8 rows' 32 bytes r[0..7] -> dst[v] = 32-bit word v of every row, lane i = row i. */
AI void kq_transpose8(const __m256i *r, __m256i *dst)
{
    const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    const __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    const __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    /* u0: words 0 | 4 of rows 0-3; u1: 1 | 5; u2: 2 | 6; u3: 3 | 7; u4-u7 the same of rows 4-7 */
    const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    const __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    const __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    _mm256_store_si256(dst + 0, _mm256_permute2x128_si256(u0, u4, 0x20));
    _mm256_store_si256(dst + 1, _mm256_permute2x128_si256(u1, u5, 0x20));
    _mm256_store_si256(dst + 2, _mm256_permute2x128_si256(u2, u6, 0x20));
    _mm256_store_si256(dst + 3, _mm256_permute2x128_si256(u3, u7, 0x20));
    _mm256_store_si256(dst + 4, _mm256_permute2x128_si256(u0, u4, 0x31));
    _mm256_store_si256(dst + 5, _mm256_permute2x128_si256(u1, u5, 0x31));
    _mm256_store_si256(dst + 6, _mm256_permute2x128_si256(u2, u6, 0x31));
    _mm256_store_si256(dst + 7, _mm256_permute2x128_si256(u3, u7, 0x31));
}

/* A token's 4 activation bytes at k, in every lane. */
AI __m256i kq_bcast(const int8_t *q, int k)
{
    return _mm256_broadcastd_epi32(_mm_loadu_si32(q + k));
}

/* lane r = v | v << 16 for the 8 values v[r] (an int16 pair for madd) */
AI __m256i kq_pairs(const int32_t *v)
{
    __m256i x = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)v), _mm256_set1_epi32(0xFFFF));
    return _mm256_or_si256(x, _mm256_slli_epi32(x, 16));
}

/* ------------------------------------------------------------ Q4_K, Q5_K */

struct q4kp_block {
    __m256i c[64];  /* c[8s + v], lane r: row r's codes of elements 32s + 4v .. 32s + 4v + 3 */
    __m256i sc[8];  /* lane r: row r's scale of sub-block s, in both int16 halves */
    __m256i mn[8];  /* lane r: row r's min of sub-block s, in both int16 halves */
    __m256 d, dmin; /* lane r: row r's d, dmin */
};

/* The scales, mins, d and dmin of 8 Q4_K/Q5_K rows (block pointers x[r]) into p. */
#define KQ_PACK_SCALES(p, x)                                                                        \
    do {                                                                                            \
        int32_t sc_[8][8], mn_[8][8];                                                               \
        float d_[8], dm_[8];                                                                        \
        for (int r_ = 0; r_ < 8; r_++) {                                                            \
            uint64_t s_, m_;                                                                        \
            sw__k_scales_min_k4_u64((x)[r_]->scales, &s_, &m_);                                     \
            for (int j_ = 0; j_ < 8; j_++) {                                                        \
                sc_[j_][r_] = (int32_t)((s_ >> (8 * j_)) & 0xFF);                                   \
                mn_[j_][r_] = (int32_t)((m_ >> (8 * j_)) & 0xFF);                                   \
            }                                                                                       \
            d_[r_] = h2f((x)[r_]->d);                                                               \
            dm_[r_] = h2f((x)[r_]->dmin);                                                           \
        }                                                                                           \
        for (int j_ = 0; j_ < 8; j_++) {                                                            \
            _mm256_store_si256(&(p)->sc[j_], kq_pairs(sc_[j_]));                                    \
            _mm256_store_si256(&(p)->mn[j_], kq_pairs(mn_[j_]));                                    \
        }                                                                                           \
        _mm256_store_ps((float *)&(p)->d, _mm256_loadu_ps(d_));                                     \
        _mm256_store_ps((float *)&(p)->dmin, _mm256_loadu_ps(dm_));                                 \
    } while (0)

/* w: the tile's first row, ws: bytes per row; blocks b0..b1-1 into p. Q4_K's qs[32g + l]:
 * low nibble = element 64g + l (sub-block 2g), high nibble = element 64g + 32 + l. */
static void q4_K_pack8(const uint8_t *w, size_t ws, int64_t b0, int64_t b1, struct q4kp_block *p)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t b = b0; b < b1; b++, p++) {
        const struct sw_block_q4_K *x[8];
        for (int r = 0; r < 8; r++) x[r] = (const struct sw_block_q4_K *)(w + (size_t)r * ws) + b;
        for (int g = 0; g < 4; g++) {
            __m256i lo[8], hi[8];
            for (int r = 0; r < 8; r++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(x[r]->qs + 32 * g));
                lo[r] = _mm256_and_si256(q, m4);
                hi[r] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            }
            kq_transpose8(lo, p->c + 8 * (2 * g));
            kq_transpose8(hi, p->c + 8 * (2 * g + 1));
        }
        KQ_PACK_SCALES(p, x);
    }
}

/* Q5_K: the 5th bit of element 32j + l is bit j of qh[l]. */
static void q5_K_pack8(const uint8_t *w, size_t ws, int64_t b0, int64_t b1, struct q4kp_block *p)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), h4 = _mm256_set1_epi8(0x10);
    for (int64_t b = b0; b < b1; b++, p++) {
        const struct sw_block_q5_K *x[8];
        for (int r = 0; r < 8; r++) x[r] = (const struct sw_block_q5_K *)(w + (size_t)r * ws) + b;
        for (int g = 0; g < 4; g++) {
            __m256i lo[8], hi[8];
            for (int r = 0; r < 8; r++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(x[r]->qs + 32 * g));
                const __m256i qh = _mm256_loadu_si256((const __m256i *)x[r]->qh);
                /* bit 2g of each qh byte to bit 4, bit 2g+1 to bit 4 */
                const __m256i b_lo = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * g), 4), h4);
                const __m256i b_hi = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * g + 1), 4), h4);
                lo[r] = _mm256_or_si256(_mm256_and_si256(q, m4), b_lo);
                hi[r] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), b_hi);
            }
            kq_transpose8(lo, p->c + 8 * (2 * g));
            kq_transpose8(hi, p->c + 8 * (2 * g + 1));
        }
        KQ_PACK_SCALES(p, x);
    }
}

/* Per token T: the products of code vector C with its activation bytes at K, into the
 * int16 sums S0..S3. */
#define KQ_PROD(C, K)                                                                               \
    do {                                                                                            \
        const __m256i c_ = (C);                                                                     \
        s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(c_, kq_bcast(y0->qs, (K))));                 \
        if (NT > 1) s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(c_, kq_bcast(y1->qs, (K))));     \
        if (NT > 2) s2 = _mm256_add_epi16(s2, _mm256_maddubs_epi16(c_, kq_bcast(y2->qs, (K))));     \
        if (NT > 3) s3 = _mm256_add_epi16(s3, _mm256_maddubs_epi16(c_, kq_bcast(y3->qs, (K))));     \
        KQ_KEEP(s0);                                                                                \
        if (NT > 1) KQ_KEEP(s1);                                                                    \
        if (NT > 2) KQ_KEEP(s2);                                                                    \
        if (NT > 3) KQ_KEEP(s3);                                                                    \
    } while (0)

/* The int16 sums times the lanes' scale SC, into the int32 sums i0..i3; then cleared. */
#define KQ_SCALE(SC)                                                                                \
    do {                                                                                            \
        const __m256i sc_ = (SC);                                                                   \
        i0 = _mm256_add_epi32(i0, _mm256_madd_epi16(s0, sc_));                                      \
        if (NT > 1) i1 = _mm256_add_epi32(i1, _mm256_madd_epi16(s1, sc_));                          \
        if (NT > 2) i2 = _mm256_add_epi32(i2, _mm256_madd_epi16(s2, sc_));                          \
        if (NT > 3) i3 = _mm256_add_epi32(i3, _mm256_madd_epi16(s3, sc_));                          \
        s0 = s1 = s2 = s3 = _mm256_setzero_si256();                                                 \
    } while (0)

/* The Q8_K blocks b of the NT tokens (unused ones alias token 0). */
#define KQ_ACTS()                                                                                   \
    const struct sw_block_q8_K *y0 = (const struct sw_block_q8_K *)a[0].q + b;                      \
    const struct sw_block_q8_K *y1 = NT > 1 ? (const struct sw_block_q8_K *)a[1].q + b : y0;        \
    const struct sw_block_q8_K *y2 = NT > 2 ? (const struct sw_block_q8_K *)a[2].q + b : y0;        \
    const struct sw_block_q8_K *y3 = NT > 3 ? (const struct sw_block_q8_K *)a[3].q + b : y0

/* Q4_K (C5 = 0: codes 0..15, 8 products of <= 2 x 15 x 127 per int16) or Q5_K (C5 = 1: codes
 * 0..31, a madd after every 4 products of <= 2 x 31 x 127) for blocks b0..b1-1 of p and NT
 * (1..4) tokens, lane r = row r: per block S (scales) and M (mins: madd of the min pairs
 * with each sub-block's two bsums), then q4_K_nt's steps; carry: continue the sums in out
 * (a float stored and loaded is the same float). */
AI void q45_K_tilep_nt(const struct q4kp_block *p, int64_t b0, int64_t b1, const struct sw_k_act *a, const int NT,
                       float *out, size_t ldo, int carry, const int C5)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    if (carry) {
        TILE8_LOAD(NT, out, ldo, acc0, acc1, acc2, acc3);
    }
    for (int64_t b = b0; b < b1; b++, p++) {
        KQ_ACTS();
        __m256i i0 = _mm256_setzero_si256(), i1 = i0, i2 = i0, i3 = i0;
        __m256i s0 = i0, s1 = i0, s2 = i0, s3 = i0;
        for (int s = 0; s < 8; s++) {
            const __m256i *c = p->c + 8 * s;
            KQ_PROD(_mm256_load_si256(c + 0), 32 * s + 0);
            KQ_PROD(_mm256_load_si256(c + 1), 32 * s + 4);
            KQ_PROD(_mm256_load_si256(c + 2), 32 * s + 8);
            KQ_PROD(_mm256_load_si256(c + 3), 32 * s + 12);
            if (C5) KQ_SCALE(_mm256_load_si256(&p->sc[s]));
            KQ_PROD(_mm256_load_si256(c + 4), 32 * s + 16);
            KQ_PROD(_mm256_load_si256(c + 5), 32 * s + 20);
            KQ_PROD(_mm256_load_si256(c + 6), 32 * s + 24);
            KQ_PROD(_mm256_load_si256(c + 7), 32 * s + 28);
            KQ_SCALE(_mm256_load_si256(&p->sc[s]));
        }
        /* M: lanes' mins times the sub-blocks' activation sums */
        for (int s = 0; s < 8; s++) {
            const __m256i mn = _mm256_load_si256(&p->mn[s]);
            const int16_t *bs0 = y0->bsums + 2 * s;
            s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(mn, _mm256_broadcastd_epi32(_mm_loadu_si32(bs0))));
            if (NT > 1) s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(mn, _mm256_broadcastd_epi32(_mm_loadu_si32(y1->bsums + 2 * s))));
            if (NT > 2) s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(mn, _mm256_broadcastd_epi32(_mm_loadu_si32(y2->bsums + 2 * s))));
            if (NT > 3) s3 = _mm256_add_epi32(s3, _mm256_madd_epi16(mn, _mm256_broadcastd_epi32(_mm_loadu_si32(y3->bsums + 2 * s))));
        }
        const __m256 dv = _mm256_load_ps((const float *)&p->d), dm = _mm256_load_ps((const float *)&p->dmin);
#define KQ_FLOAT_MIN(ACC, I, M, Y)                                                                  \
    do {                                                                                            \
        const __m256 da_ = _mm256_set1_ps((Y)->d);                                                  \
        ACC = _mm256_fmadd_ps(_mm256_cvtepi32_ps(I), _mm256_mul_ps(dv, da_), ACC);                  \
        ACC = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(M), _mm256_mul_ps(dm, da_), ACC);                 \
    } while (0)
        KQ_FLOAT_MIN(acc0, i0, s0, y0);
        if (NT > 1) KQ_FLOAT_MIN(acc1, i1, s1, y1);
        if (NT > 2) KQ_FLOAT_MIN(acc2, i2, s2, y2);
        if (NT > 3) KQ_FLOAT_MIN(acc3, i3, s3, y3);
#undef KQ_FLOAT_MIN
    }
    TILE8_STORE(NT, out, ldo, acc0, acc1, acc2, acc3);
}

AI void q4_K_tilep_nt(const struct q4kp_block *p, int64_t b0, int64_t b1, const struct sw_k_act *a, const int NT,
                      float *out, size_t ldo, int carry)
{
    q45_K_tilep_nt(p, b0, b1, a, NT, out, ldo, carry, 0);
}

AI void q5_K_tilep_nt(const struct q4kp_block *p, int64_t b0, int64_t b1, const struct sw_k_act *a, const int NT,
                      float *out, size_t ldo, int carry)
{
    q45_K_tilep_nt(p, b0, b1, a, NT, out, ldo, carry, 1);
}

static void tile_many_q4_K(int64_t n, const void *w, size_t w_stride, int nr, const struct sw_k_act *a, int nt,
                           float *out, size_t ldo)
{
    (void)nr; /* always 8 (tile_rows) */
    const int64_t nb = n / SW_QK_K;
    TILE_MANY_SEGMENTS(uint8_t, struct q4kp_block, KQ_SEG, q4_K_pack8, q4_K_tilep_nt);
}

static void tile_many_q5_K(int64_t n, const void *w, size_t w_stride, int nr, const struct sw_k_act *a, int nt,
                           float *out, size_t ldo)
{
    (void)nr;
    const int64_t nb = n / SW_QK_K;
    TILE_MANY_SEGMENTS(uint8_t, struct q4kp_block, KQ_SEG, q5_K_pack8, q5_K_tilep_nt);
}

/* ------------------------------------------------------------ Q3_K */

struct q3kp_block {
    __m256i c[64];  /* c[8G + v], lane r: row r's codes u = q + 4 (0..7) of elements 32G + 4v.. */
    __m256i sc[16]; /* lane r: row r's scale s - 32 of sub-block j (16 elements), both halves */
    __m256i sp[8];  /* lane r: row r's (s_2i - 32, s_2i+1 - 32): the offset's madd with bsums */
    __m256 d;
};

/* Q3_K's element 128h + 32k + l: bits 2k of qs[32h + l], high bit 4h + k of hmask[l]. */
static void q3_K_pack8(const uint8_t *w, size_t ws, int64_t b0, int64_t b1, struct q3kp_block *p)
{
    const __m256i m3 = _mm256_set1_epi8(3), h4 = _mm256_set1_epi8(4);
    for (int64_t b = b0; b < b1; b++, p++) {
        const struct sw_block_q3_K *x[8];
        for (int r = 0; r < 8; r++) x[r] = (const struct sw_block_q3_K *)(w + (size_t)r * ws) + b;
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++) {
                __m256i u[8];
                for (int r = 0; r < 8; r++) {
                    const __m256i q = _mm256_loadu_si256((const __m256i *)(x[r]->qs + 32 * h));
                    const __m256i hm = _mm256_loadu_si256((const __m256i *)x[r]->hmask);
                    const __m256i hb = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hm, 4 * h + k), 2), h4);
                    u[r] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3), hb);
                }
                kq_transpose8(u, p->c + 8 * (4 * h + k));
            }
        int32_t sc[16][8], sp[8][8];
        float d[8];
        for (int r = 0; r < 8; r++) {
            for (int j = 0; j < 16; j++) sc[j][r] = sw__k_q3_K_scale(x[r]->scales, j) - 32;
            for (int i = 0; i < 8; i++)
                sp[i][r] = (int32_t)(((uint32_t)sc[2 * i][r] & 0xFFFF) | (uint32_t)sc[2 * i + 1][r] << 16);
            d[r] = h2f(x[r]->d);
        }
        for (int j = 0; j < 16; j++) _mm256_store_si256(&p->sc[j], kq_pairs(sc[j]));
        for (int i = 0; i < 8; i++) _mm256_store_si256(&p->sp[i], _mm256_loadu_si256((const __m256i *)sp[i]));
        _mm256_store_ps((float *)&p->d, _mm256_loadu_ps(d));
    }
}

/* Blocks b0..b1-1 of p for NT (1..4) tokens, lane r = row r: per block S = sum_j s_j <u_j, a_j>
 * (4 products of <= 2 x 7 x 127 per int16 sum, then the sub-block's scale), the offset
 * O = sum_j s_j bsums_j, and q3_K_nt's step on S - 4 O. */
AI void q3_K_tilep_nt(const struct q3kp_block *p, int64_t b0, int64_t b1, const struct sw_k_act *a, const int NT,
                      float *out, size_t ldo, int carry)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    if (carry) {
        TILE8_LOAD(NT, out, ldo, acc0, acc1, acc2, acc3);
    }
    for (int64_t b = b0; b < b1; b++, p++) {
        KQ_ACTS();
        __m256i i0 = _mm256_setzero_si256(), i1 = i0, i2 = i0, i3 = i0;
        __m256i s0 = i0, s1 = i0, s2 = i0, s3 = i0;
        for (int g = 0; g < 8; g++) {
            const __m256i *c = p->c + 8 * g;
            KQ_PROD(_mm256_load_si256(c + 0), 32 * g + 0);
            KQ_PROD(_mm256_load_si256(c + 1), 32 * g + 4);
            KQ_PROD(_mm256_load_si256(c + 2), 32 * g + 8);
            KQ_PROD(_mm256_load_si256(c + 3), 32 * g + 12);
            KQ_SCALE(_mm256_load_si256(&p->sc[2 * g]));
            KQ_PROD(_mm256_load_si256(c + 4), 32 * g + 16);
            KQ_PROD(_mm256_load_si256(c + 5), 32 * g + 20);
            KQ_PROD(_mm256_load_si256(c + 6), 32 * g + 24);
            KQ_PROD(_mm256_load_si256(c + 7), 32 * g + 28);
            KQ_SCALE(_mm256_load_si256(&p->sc[2 * g + 1]));
        }
        for (int i = 0; i < 8; i++) {
            const __m256i sp = _mm256_load_si256(&p->sp[i]);
            s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(sp, _mm256_broadcastd_epi32(_mm_loadu_si32(y0->bsums + 2 * i))));
            if (NT > 1) s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(sp, _mm256_broadcastd_epi32(_mm_loadu_si32(y1->bsums + 2 * i))));
            if (NT > 2) s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(sp, _mm256_broadcastd_epi32(_mm_loadu_si32(y2->bsums + 2 * i))));
            if (NT > 3) s3 = _mm256_add_epi32(s3, _mm256_madd_epi16(sp, _mm256_broadcastd_epi32(_mm_loadu_si32(y3->bsums + 2 * i))));
        }
        const __m256 dv = _mm256_load_ps((const float *)&p->d);
#define KQ_FLOAT(ACC, I, O, Y)                                                                      \
    ACC = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(I, _mm256_slli_epi32(O, 2))),         \
                          _mm256_mul_ps(dv, _mm256_set1_ps((Y)->d)), ACC)
        KQ_FLOAT(acc0, i0, s0, y0);
        if (NT > 1) KQ_FLOAT(acc1, i1, s1, y1);
        if (NT > 2) KQ_FLOAT(acc2, i2, s2, y2);
        if (NT > 3) KQ_FLOAT(acc3, i3, s3, y3);
#undef KQ_FLOAT
    }
    TILE8_STORE(NT, out, ldo, acc0, acc1, acc2, acc3);
}

static void tile_many_q3_K(int64_t n, const void *w, size_t w_stride, int nr, const struct sw_k_act *a, int nt,
                           float *out, size_t ldo)
{
    (void)nr;
    const int64_t nb = n / SW_QK_K;
    TILE_MANY_SEGMENTS(uint8_t, struct q3kp_block, KQ_SEG, q3_K_pack8, q3_K_tilep_nt);
}

/* ------------------------------------------------------------ table */

void sw__k_fill_avx2_kq(struct sw_k_type_impl *tab, int n_tab)
{
    const struct {
        int type;
        sw_k_tile_fn tile;
    } f[] = {{SW_TYPE_Q4_K, tile_many_q4_K}, {SW_TYPE_Q5_K, tile_many_q5_K}, {SW_TYPE_Q3_K, tile_many_q3_K}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (f[i].type >= n_tab) continue;
        tab[f[i].type].tile_many = f[i].tile;
        tab[f[i].type].tile_rows = 8;
    }
}
