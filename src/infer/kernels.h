/* kernels.h — internal to src/infer: the numeric kernels the forward pass stands on.
 * fp16/bf16 conversion, ggml block layouts, dequantize/quantize rows, dot products
 * (scalar reference + AVX2/AVX-512 chosen at run time), a persistent thread pool and
 * the multithreaded matmul / get_rows over weights borrowed from the GGUF mmap.
 * Not for: model structure, attention, norms (infer's model code), file parsing (src/gguf). */
#ifndef SW_INFER_KERNELS_H
#define SW_INFER_KERNELS_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gguf/gguf.h"

/* ------------------------------------------------------------ fp16 / bf16 */

/* IEEE binary16 and bfloat16 values as stored in GGUF (little-endian bits). */
typedef uint16_t sw_f16;
typedef uint16_t sw_bf16;

/* Scalar conversions (exact for f16->f32; f32->f16 rounds to nearest even, NaN kept). */
float sw_k_f16_to_f32(sw_f16 h);
sw_f16 sw_k_f32_to_f16(float f);
static inline float sw_k_bf16_to_f32(sw_bf16 h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
sw_bf16 sw_k_f32_to_bf16(float f); /* round to nearest even, NaN stays NaN */

/* Row converters (F16C / AVX-512 when present). */
void sw_k_f16_to_f32_row(const sw_f16 *x, float *y, int64_t n);
void sw_k_f32_to_f16_row(const float *x, sw_f16 *y, int64_t n);
void sw_k_bf16_to_f32_row(const sw_bf16 *x, float *y, int64_t n);

/* ------------------------------------------------------------ block layouts */
/* ggml block layouts (ggml-common.h, the GGUF tensor-data format). Every multi-byte field
 * is little-endian; `d`/`dmin` are fp16 unless noted. Pinned with static_assert below. */

#define SW_QK4_0 32
#define SW_QK4_1 32
#define SW_QK5_0 32
#define SW_QK5_1 32
#define SW_QK8_0 32
#define SW_QK_K 256
#define SW_K_SCALE_SIZE 12

/* Q4_0: x = d * (q - 8); element j in low nibble of qs[j], element j+16 in the high one. */
struct sw_block_q4_0 { sw_f16 d; uint8_t qs[SW_QK4_0 / 2]; };
/* Q4_1: x = d * q + m. */
struct sw_block_q4_1 { sw_f16 d; sw_f16 m; uint8_t qs[SW_QK4_1 / 2]; };
/* Q5_0: x = d * (q - 16); bit 4 of element j is bit j of qh (32-bit little-endian). */
struct sw_block_q5_0 { sw_f16 d; uint8_t qh[4]; uint8_t qs[SW_QK5_0 / 2]; };
/* Q5_1: x = d * q + m. */
struct sw_block_q5_1 { sw_f16 d; sw_f16 m; uint8_t qh[4]; uint8_t qs[SW_QK5_1 / 2]; };
/* Q8_0: x = d * q. Also the activation type of Q4_0/Q8_0 (and Q4_1/Q5_x) weights. */
struct sw_block_q8_0 { sw_f16 d; int8_t qs[SW_QK8_0]; };

/* Q4_K: 8 sub-blocks of 32; x = d*sc[j]*q - dmin*m[j], 6-bit sc/m packed in scales[12];
 * qs: 4 groups of 32 bytes, each holding sub-block 2g in low and 2g+1 in high nibbles. */
struct sw_block_q4_K { sw_f16 d; sw_f16 dmin; uint8_t scales[SW_K_SCALE_SIZE]; uint8_t qs[SW_QK_K / 2]; };
/* Q5_K: as Q4_K plus a 5th bit: bit j of qh[l] is bit 4 of element 32*j + l. */
struct sw_block_q5_K {
    sw_f16 d; sw_f16 dmin; uint8_t scales[SW_K_SCALE_SIZE]; uint8_t qh[SW_QK_K / 8]; uint8_t qs[SW_QK_K / 2];
};
/* Q6_K: 16 sub-blocks of 16, x = d * scales[j] * (q - 32), q 6-bit from ql (low 4) + qh (high 2). */
struct sw_block_q6_K { uint8_t ql[SW_QK_K / 2]; uint8_t qh[SW_QK_K / 4]; int8_t scales[SW_QK_K / 16]; sw_f16 d; };
/* Q8_K: the activation type of K-quant weights. d is f32; bsums[j] = sum of qs[16j..16j+15]. */
struct sw_block_q8_K { float d; int8_t qs[SW_QK_K]; int16_t bsums[SW_QK_K / 16]; };

/* Q2_K: 16 sub-blocks of 16; x = d*(sc&15)*q - dmin*(sc>>4), q 2-bit. Element 128h + 32k + l
 * is bits 2k..2k+1 of qs[32h + l]; element e's sub-block (and scales byte) is e/16. */
struct sw_block_q2_K { uint8_t scales[SW_QK_K / 16]; uint8_t qs[SW_QK_K / 4]; sw_f16 d; sw_f16 dmin; };
/* Q3_K: 16 sub-blocks of 16; x = d*(s-32)*(q - 4), q = 2 low bits (as Q2_K's qs) | bit
 * 4h+k of hmask[l] << 2 for element 128h + 32k + l; s 6-bit, packed in scales[12]. */
struct sw_block_q3_K { uint8_t hmask[SW_QK_K / 8]; uint8_t qs[SW_QK_K / 4]; uint8_t scales[12]; sw_f16 d; };
/* IQ4_NL: as Q4_0's layout, but x = d * sw__k_iq4nl_values[nibble] (a non-linear grid). */
#define SW_QK4_NL 32
struct sw_block_iq4_nl { sw_f16 d; uint8_t qs[SW_QK4_NL / 2]; };
/* IQ4_XS: 8 sub-blocks of 32; x = d*(ls-32)*iq4nl_values[nibble], ls 6-bit: low 4 bits in
 * scales_l (sub-block 2i low nibble, 2i+1 high), high 2 bits at bit 2j of scales_h (LE);
 * nibbles as IQ4_NL per 16 bytes of qs. */
struct sw_block_iq4_xs { sw_f16 d; uint16_t scales_h; uint8_t scales_l[SW_QK_K / 64]; uint8_t qs[SW_QK_K / 2]; };
/* MXFP4 (OCP microscaling): e is an E8M0 exponent, element values are FP4 E2M1; nibbles as
 * Q4_0. x = 2^(e-127) * e2m1[nibble] = 2^(e-128) * sw__k_mxfp4_values[nibble] (doubled). */
#define SW_QK_MXFP4 32
struct sw_block_mxfp4 { uint8_t e; uint8_t qs[SW_QK_MXFP4 / 2]; };

static_assert(sizeof(struct sw_block_q4_0) == 2 + 16, "Q4_0 block is 18 bytes");
static_assert(sizeof(struct sw_block_q4_1) == 4 + 16, "Q4_1 block is 20 bytes");
static_assert(sizeof(struct sw_block_q5_0) == 2 + 4 + 16, "Q5_0 block is 22 bytes");
static_assert(sizeof(struct sw_block_q5_1) == 4 + 4 + 16, "Q5_1 block is 24 bytes");
static_assert(sizeof(struct sw_block_q8_0) == 2 + 32, "Q8_0 block is 34 bytes");
static_assert(sizeof(struct sw_block_q4_K) == 4 + 12 + 128, "Q4_K block is 144 bytes");
static_assert(sizeof(struct sw_block_q5_K) == 4 + 12 + 32 + 128, "Q5_K block is 176 bytes");
static_assert(sizeof(struct sw_block_q6_K) == 128 + 64 + 16 + 2, "Q6_K block is 210 bytes");
static_assert(sizeof(struct sw_block_q8_K) == 4 + 256 + 32, "Q8_K block is 292 bytes");
static_assert(sizeof(struct sw_block_q2_K) == 16 + 64 + 2 + 2, "Q2_K block is 84 bytes");
static_assert(sizeof(struct sw_block_q3_K) == 32 + 64 + 12 + 2, "Q3_K block is 110 bytes");
static_assert(sizeof(struct sw_block_iq4_nl) == 2 + 16, "IQ4_NL block is 18 bytes");
static_assert(sizeof(struct sw_block_iq4_xs) == 2 + 2 + 4 + 128, "IQ4_XS block is 136 bytes");
static_assert(sizeof(struct sw_block_mxfp4) == 1 + 16, "MXFP4 block is 17 bytes");

/* ------------------------------------------------------------ per-type kernels */

/* Which implementation family a function table comes from. */
enum sw_k_impl {
    SW_K_IMPL_REF = 0,    /* portable scalar C: the specification */
    SW_K_IMPL_AVX2 = 1,   /* AVX2 + FMA + F16C */
    SW_K_IMPL_AVX512 = 2, /* AVX-512 F/BW/VL (+VNNI where present) */
    SW_K_IMPL_COUNT_
};

/* dst[0..n) = dequantized src (n a multiple of the block size). src borrowed, dst caller's. */
typedef void (*sw_k_dequant_fn)(const void *src, float *dst, int64_t n);
/* Quantizes n floats into blocks at dst (n a multiple of the block size). */
typedef void (*sw_k_quant_fn)(const float *src, void *dst, int64_t n);
/* Dot product of n elements: w in the weight type, a in the weight's activation type. */
typedef float (*sw_k_vec_dot_fn)(int64_t n, const void *w, const void *a);

struct sw_k_type {
    uint32_t type;          /* enum sw_ggml_type */
    const char *name;       /* "Q4_K" */
    uint32_t block_size;    /* elements per block */
    uint32_t type_size;     /* bytes per block */
    uint32_t act_type;      /* type the activations are quantized to for vec_dot:
                               F32 (F32/F16/BF16 weights), Q8_0 or Q8_K */
    sw_k_dequant_fn dequantize_row;
    sw_k_quant_fn quantize_act; /* f32 -> act_type (NULL when act_type is F32: use as is) */
    sw_k_vec_dot_fn vec_dot;    /* NULL when the type is dequantize-only (Q8_K) */
};

/* The table for a weight type with the implementation chosen at first use: AVX-512 if the
 * CPU has it, else AVX2 if it has AVX2+FMA+F16C, else scalar. The environment variable
 * SW_KERNELS=ref|avx2|avx512 forces a family (never one the CPU lacks). NULL when the type
 * is not supported (the caller names the type in its error). Thread-safe. */
const struct sw_k_type *sw_k_type_get(uint32_t type);
/* The table of one implementation family; NULL when that family lacks the type or the CPU
 * lacks the family. For tests and benchmarks. Members a family does not specialise fall
 * back to the reference. */
const struct sw_k_type *sw_k_type_get_impl(uint32_t type, enum sw_k_impl impl);
/* The family sw_k_type_get uses, and its name ("ref", "avx2", "avx512"). */
enum sw_k_impl sw_k_impl_active(void);
const char *sw_k_impl_name(enum sw_k_impl impl);
/* Whether the CPU can run a family (ref: always). */
int sw_k_impl_available(enum sw_k_impl impl);

/* Bytes of one row of n elements of a type; 0 when unsupported or n not a block multiple. */
size_t sw_k_row_bytes(uint32_t type, int64_t n);

/* Convenience wrapper: dequantizes n elements of any supported type. Returns 0,
 * SW_EUNSUPPORTED (type) or SW_EINVAL (n not a block multiple). */
int sw_k_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/* Reference quantizers (what `synth` writes): F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
 * Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, MXFP4, IQ2_XXS, IQ2_XS, IQ2_S (quant_iq2.c), Q8_K. Deterministic and close to ggml's rounding (round-to-nearest with ggml's scale
 * choices; K-quants search scale/min like ggml's make_qkx/make_qx). Writes
 * sw_k_row_bytes(type, n) bytes. Returns 0, SW_EUNSUPPORTED or SW_EINVAL. */
int sw_k_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/* ------------------------------------------------------------ f32 / f16 vector helpers */
/* For attention over an f16 KV cache; SIMD when available, chosen like sw_k_type_get. */

float sw_k_dot_f32(int64_t n, const float *x, const float *y);
float sw_k_dot_f16_f32(int64_t n, const sw_f16 *x, const float *y);
/* y[i] += a * x[i] */
void sw_k_axpy_f32(int64_t n, float a, const float *x, float *y);
void sw_k_axpy_f16(int64_t n, float a, const sw_f16 *x, float *y);
/* y[i] *= a */
void sw_k_scale_f32(int64_t n, float a, float *y);

/* ------------------------------------------------------------ thread pool */

/* A persistent pool of n_threads - 1 workers; the calling thread is thread 0. Workers
 * spin briefly after a task, then sleep on a futex, so ~150 dispatches per token cost
 * about a µs each. One pool is driven by one thread at a time (not reentrant). */
struct sw_k_pool;

/* fn(arg, ith, nth) runs once on every thread, ith in [0, nth). */
typedef void (*sw_k_task_fn)(void *arg, int ith, int nth);

/* n_threads >= 1 (1: no workers, run inline). Returns 0, SW_EINVAL or SW_ENOMEM. */
int sw_k_pool_new(int n_threads, struct sw_k_pool **out);
void sw_k_pool_free(struct sw_k_pool *pool); /* NULL harmless; joins the workers */
int sw_k_pool_n_threads(const struct sw_k_pool *pool);
/* The parts of the following dispatches: n in [1, n_threads] (clamped). The workers
 * beyond it park (no spinning, not woken by dispatches) until it grows again. Called by
 * the pool's driving thread between dispatches. Start: n_threads. */
void sw_k_pool_set_active(struct sw_k_pool *pool, int n);
int sw_k_pool_active(const struct sw_k_pool *pool);
/* Runs fn(arg, ith, nth) once for every ith in [0, nth), nth = the active count, and returns when all are done.
 * Part 0 runs on the caller; part i on worker i, or on the caller when that worker has not
 * started it by the time the caller is free (so a descheduled worker costs nothing).
 * Parts must not rely on which OS thread runs them. pool NULL = inline with nth = 1. */
void sw_k_pool_run(struct sw_k_pool *pool, sw_k_task_fn fn, void *arg);
/* Splits [0, n) into nth near-equal contiguous ranges, each a multiple of `align` except
 * the last: the slice of thread ith. */
void sw_k_split(int64_t n, int64_t align, int ith, int nth, int64_t *begin, int64_t *end);

/* ------------------------------------------------------------ matmul */

/* y[t*rows + r] = sum_c W[r][c] * x[t*cols + c]   for t < n_tokens, r < rows.
 * W: rows x cols of `type`, row stride sw_k_row_bytes(type, cols), borrowed (the mmap).
 * x: n_tokens x cols f32, y: n_tokens x rows f32 (caller's; must not alias x).
 * x is quantized once to the type's activation type in pool-owned scratch, then rows
 * are split across the pool's threads; for n_tokens > 1 weights are decoded once per
 * tile of rows x tokens. Returns 0, SW_EUNSUPPORTED (type), SW_EINVAL (cols not a
 * block multiple) or SW_ENOMEM (scratch). pool may be NULL (single-threaded). */
int sw_k_matmul(struct sw_k_pool *pool, const void *w, uint32_t type, int64_t rows, int64_t cols,
                const float *x, int64_t n_tokens, float *y);

/* Several weights applied to the same x in one dispatch (Q/K/V, gate/up): x is quantized
 * once per distinct activation type. Every op has the same cols; y of op i is
 * n_tokens x ops[i].rows. 1 <= n_ops <= SW_K_MAX_MM_OPS (else SW_EINVAL). */
#define SW_K_MAX_MM_OPS 8
struct sw_k_mm_op {
    const void *w;  /* borrowed */
    uint32_t type;
    int64_t rows;
    float *y;       /* caller's */
};
int sw_k_matmul_multi(struct sw_k_pool *pool, const struct sw_k_mm_op *ops, int n_ops, int64_t cols,
                      const float *x, int64_t n_tokens);

/* Grouped matmul (mixture of experts, tokens grouped per expert): op i applies its weight
 * to n_tok rows of x — x's rows tok[0..n_tok) or, with tok NULL, rows first..first+n_tok-1 —
 * and writes y (n_tok x rows; row j belongs to the j-th listed row of x). Every op has the
 * same cols; x (n_x rows) is quantized once per distinct activation type and the rows of all
 * ops are handed out from one work counter in one dispatch. Ops with n_tok 0 are skipped.
 * Each (row, token) is summed as sw_k_matmul sums it (the same bits). 1 <= n_ops <=
 * SW_K_MAX_GROUP_OPS; a listed row outside x is SW_EINVAL. */
#define SW_K_MAX_GROUP_OPS 65536
struct sw_k_mm_gop {
    const void *w;       /* borrowed */
    uint32_t type;
    int64_t rows;
    float *y;            /* caller's: n_tok x rows */
    const uint32_t *tok; /* borrowed; NULL: contiguous rows from first */
    int64_t first;
    int64_t n_tok;
};
int sw_k_matmul_grouped(struct sw_k_pool *pool, const struct sw_k_mm_gop *ops, int n_ops, int64_t cols,
                        const float *x, int64_t n_x);

/* Embedding lookup: out[i*cols + c] = W[ids[i]][c] dequantized. W has n_rows rows.
 * Returns 0, SW_EUNSUPPORTED, or SW_ERANGE when an id is outside [0, n_rows). */
int sw_k_get_rows(const void *w, uint32_t type, int64_t n_rows, int64_t cols, const int32_t *ids,
                  int64_t n_ids, float *out);

#endif
