/* kernels_impl.h — private to the kernels files: the per-family function tables and the
 * multi-token "row x up to 4 tokens" kernels the tiled matmul uses.
 * Not for: the model code (it uses kernels.h only). */
#ifndef SW_INFER_KERNELS_IMPL_H
#define SW_INFER_KERNELS_IMPL_H

#include "infer/kernels.h"

/* Tokens processed together against one decoded weight row (prompt tiling). A type whose
 * row kernel has registers for more sets max_nt (up to SW_K_TILE_T_MAX): its weights are
 * then decoded once per that many tokens. */
#define SW_K_TILE_T 4
#define SW_K_TILE_T_MAX 8

/* Activations of one token as the matmul hands them to a row kernel. */
struct sw_k_act {
    const void *q;     /* act_type blocks (or f32) of the token */
    const float *sums; /* Q8_0 acts: per block {d, d * sum(qs)} as f32 pairs; else NULL */
};

/* out[t] = dot(w row, token t) for t < nt (1..max_nt): decodes w once for all nt. */
typedef void (*sw_k_rowdot_fn)(int64_t n, const void *w, const struct sw_k_act *a, int nt, float *out);
/* Dots of `nr` consecutive weight rows (stride w_stride bytes) against nt tokens:
 * out[t * ldo + r]. Families implement the register tiles they like; NULL = use rowdot. */
typedef void (*sw_k_tile_fn)(int64_t n, const void *w, size_t w_stride, int nr, const struct sw_k_act *a,
                             int nt, float *out, size_t ldo);

struct sw_k_type_impl {
    struct sw_k_type pub;  /* first: sw_k_type_get returns &pub */
    sw_k_rowdot_fn rowdot; /* never NULL when pub.vec_dot is set */
    sw_k_tile_fn tile;     /* optional */
    int tile_rows;         /* rows the tile kernel takes at once (when tile is set) */
    int tile_nt;           /* tokens the tile takes at once: 0 = SW_K_TILE_T, else <= SW_K_TILE_T_MAX */
    int tile_vec;          /* 1: the tile also serves a matvec (1 token), not only several */
    int act_sums;          /* 1 when rowdot/tile read sw_k_act.sums */
    int max_nt;            /* tokens rowdot takes at once: 0 = SW_K_TILE_T, else <= SW_K_TILE_T_MAX */
    /* optional: the tile for up to SW_K_TILE_MANY tokens at once (decoding its weights once
     * for all of them), giving each (row, token) the bits `tile` gives it */
    sw_k_tile_fn tile_many;
};
#define SW_K_TILE_MANY 64

static inline const struct sw_k_type_impl *sw__k_impl_of(const struct sw_k_type *t)
{
    return (const struct sw_k_type_impl *)t; /* pub is the first member */
}

/* Q8_0 activation quantization that also writes {d, d*sum(qs)} per block into ds[2*b]. */
typedef void (*sw_k_quant_sums_fn)(const float *src, void *dst, float *ds, int64_t n);

/* Pool-owned scratch of at least n_bytes, 64-byte aligned, kept between calls; NULL when
 * out of memory. Valid until the next call or sw_k_pool_free. */
void *sw__k_pool_scratch(struct sw_k_pool *p, size_t n_bytes);

/* ------------------------------------------------------------ the families */

/* Fills tab[type] for each supported type (others left zeroed). */
void sw__k_fill_ref(struct sw_k_type_impl *tab, int n_tab);
void sw__k_fill_avx2(struct sw_k_type_impl *tab, int n_tab);   /* kernels_avx2.c */
void sw__k_fill_avx512(struct sw_k_type_impl *tab, int n_tab); /* kernels_avx512.c */

struct sw_k_vec_ops {
    float (*dot_f32)(int64_t n, const float *x, const float *y);
    float (*dot_f16_f32)(int64_t n, const sw_f16 *x, const float *y);
    void (*axpy_f32)(int64_t n, float a, const float *x, float *y);
    void (*axpy_f16)(int64_t n, float a, const sw_f16 *x, float *y);
    void (*scale_f32)(int64_t n, float a, float *y);
    void (*f16_to_f32_row)(const sw_f16 *x, float *y, int64_t n);
    void (*f32_to_f16_row)(const float *x, sw_f16 *y, int64_t n);
    void (*bf16_to_f32_row)(const sw_bf16 *x, float *y, int64_t n);
    sw_k_quant_sums_fn quant_q8_0_sums;
};
void sw__k_vec_ops_ref(struct sw_k_vec_ops *ops);
void sw__k_vec_ops_avx2(struct sw_k_vec_ops *ops);
void sw__k_vec_ops_avx512(struct sw_k_vec_ops *ops);

/* The vector ops of the active family (sw_k_impl_active). */
const struct sw_k_vec_ops *sw__k_vec_ops(void);

/* The low-bit types' reference kernels (kernels_ref_low.c): fills their table entries. */
void sw__k_fill_ref_low(struct sw_k_type_impl *tab, int n_tab);
/* SIMD kernels for Q4_1/Q5_0/Q5_1 and the low-bit types (kernels_avx2_low.c, and compiled
 * again with AVX-512 in kernels_avx512_low.c). Called after the family's main fill. */
void sw__k_fill_avx2_low(struct sw_k_type_impl *tab, int n_tab);
void sw__k_fill_avx512_low(struct sw_k_type_impl *tab, int n_tab);
/* The AVX2 family's many-token tiles for Q4_K, Q5_K, Q3_K (kernels_avx2_kq.c): AVX2 family
 * only, after sw__k_fill_avx2 and sw__k_fill_avx2_low. */
void sw__k_fill_avx2_kq(struct sw_k_type_impl *tab, int n_tab);
/* One table entry (what sw__k_fill_ref and sw__k_fill_ref_low use). */
void sw__k_set_ref(struct sw_k_type_impl *tab, int n_tab, uint32_t type, const char *name, uint32_t bs,
                   uint32_t ts, uint32_t act, sw_k_dequant_fn dq, sw_k_quant_fn qa, sw_k_vec_dot_fn dot,
                   sw_k_rowdot_fn rowdot);

/* The 16 values of the IQ4_NL / IQ4_XS grid, and the FP4 E2M1 values times 2 (MXFP4):
 * where they come from is in docs/kernels.md ("Lookup tables"). */
extern const int8_t sw__k_iq4nl_values[16];
extern const int8_t sw__k_mxfp4_values[16];

/* A reference row kernel: each token's dot with the type's vec_dot, in turn (the
 * specification families' row kernels are tested against). */
#define REF_ROWDOT(name, dot)                                                               \
    static void name(int64_t n, const void *w, const struct sw_k_act *a, int nt, float *out) \
    {                                                                                       \
        for (int t = 0; t < nt; t++) out[t] = dot(n, w, a[t].q);                            \
    }

/* One type's row kernels as a SIMD family's fill sets them: vec_dot, rowdot, the
 * activation quantizer and whether the rowdot reads the matmul's {d, d*sum} pairs. */
struct sw__k_row_fill {
    int type;
    sw_k_vec_dot_fn dot;
    sw_k_rowdot_fn row;
    sw_k_quant_fn qa;
    int sums;
};

static inline void sw__k_fill_rows(struct sw_k_type_impl *tab, const struct sw__k_row_fill *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct sw_k_type_impl *e = &tab[f[i].type];
        e->pub.vec_dot = f[i].dot;
        e->pub.quantize_act = f[i].qa;
        e->rowdot = f[i].row;
        e->act_sums = f[i].sums;
    }
}

/* MXFP4 block scale: 2^(e-128), i.e. half the E8M0 value 2^(e-127) (the table is doubled).
 * Exact for every e (2^-128 is a float subnormal); e = 255 gives 2^127 as ggml reads it
 * (OCP reserves 0xFF for NaN; the quantizer never writes it). */
static inline float sw__k_e8m0_half(uint8_t e)
{
    uint32_t bits = e >= 2 ? (uint32_t)(e - 1) << 23 : 0x00200000u << e;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Q3_K: the 16 six-bit scales (0..63, biased by 32) from the packed 12 bytes: scale j has
 * its low 4 bits in nibble j/8 of byte j%8 and its high 2 bits at bits 2*(j/4) of byte
 * 8 + j%4. */
static inline int sw__k_q3_K_scale(const uint8_t *s, int j)
{
    int lo = (s[j % 8] >> (4 * (j / 8))) & 0xF;
    int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return lo | hi << 4;
}

/* IQ4_XS sub-block ib's 6-bit scale (0..63, biased by 32). */
static inline int sw__k_iq4_xs_scale(const struct sw_block_iq4_xs *b, int ib)
{
    return ((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b->scales_h >> (2 * ib)) & 3) << 4);
}

/* Reference pieces other families reuse. */
void sw__k_quantize_q8_0_ref(const float *src, void *dst, int64_t n);
void sw__k_quantize_q8_0_sums_ref(const float *src, void *dst, float *ds, int64_t n);
void sw__k_quantize_q8_K_ref(const float *src, void *dst, int64_t n);
void sw__k_quantize_q4_0_ref(const float *src, void *dst, int64_t n);
void sw__k_quantize_q4_K_ref(const float *src, void *dst, int64_t n);
void sw__k_quantize_q5_K_ref(const float *src, void *dst, int64_t n);
void sw__k_quantize_q6_K_ref(const float *src, void *dst, int64_t n);
void sw__k_quantize_q4_1_ref(const float *src, void *dst, int64_t n);
void sw__k_quantize_q5_0_ref(const float *src, void *dst, int64_t n);
void sw__k_quantize_q5_1_ref(const float *src, void *dst, int64_t n);
void sw__k_quantize_q2_K_ref(const float *src, void *dst, int64_t n);
void sw__k_quantize_q3_K_ref(const float *src, void *dst, int64_t n);
void sw__k_quantize_iq4_nl_ref(const float *src, void *dst, int64_t n);
void sw__k_quantize_iq4_xs_ref(const float *src, void *dst, int64_t n);
void sw__k_quantize_mxfp4_ref(const float *src, void *dst, int64_t n);

/* Q4_K/Q5_K 6-bit scale j (0..7) and min j from the packed 12 bytes. */
static inline void sw__k_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* All 8 scales and 8 mins of a Q4_K/Q5_K block as bytes of two 64-bit words (byte j =
 * sub-block j), computed with 32-bit integer ops: no byte stores for SIMD code to reload. */
static inline void sw__k_scales_min_k4_u64(const uint8_t *q, uint64_t *sc, uint64_t *mn)
{
    uint32_t u0, u1, u2;
    memcpy(&u0, q, 4);
    memcpy(&u1, q + 4, 4);
    memcpy(&u2, q + 8, 4);
    uint32_t s_lo = u0 & 0x3f3f3f3fu, m_lo = u1 & 0x3f3f3f3fu;
    uint32_t s_hi = (u2 & 0x0f0f0f0fu) | ((u0 & 0xc0c0c0c0u) >> 2);
    uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 & 0xc0c0c0c0u) >> 2);
    *sc = (uint64_t)s_hi << 32 | s_lo;
    *mn = (uint64_t)m_hi << 32 | m_lo;
}

#endif
