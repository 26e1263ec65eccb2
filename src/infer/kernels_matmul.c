/* kernels_matmul.c — y = W x over the thread pool: activations quantized once, rows
 * handed out in chunks, and for several tokens each decoded weight row (or register tile
 * of rows) is applied to SW_K_TILE_T tokens (or the type's max_nt) at a time so weights are
 * decoded once per tile.
 * Not for: the dot-product kernels themselves (kernels_ref/avx2/avx512.c). */
#include <stdatomic.h>
#include <stdlib.h>

#include "infer/kernels_impl.h"

#define MAX_OPS SW_K_MAX_MM_OPS
/* Rows per work chunk: large enough to amortise the atomic, small enough to balance. */
#define CHUNK_ROWS_VEC 32
#define CHUNK_ROWS_MAT 16
/* Steps of at most STREAM_MAX_TOK tokens are bound by reading the weights: their chunks grow
 * to rows / (threads x CHUNKS_PER_THREAD), at most CHUNK_ROWS_STREAM rows. */
#define STREAM_MAX_TOK 8
#define CHUNKS_PER_THREAD 8
#define CHUNK_ROWS_STREAM 512

struct act_buf {
    uint32_t type;    /* activation type (F32, Q8_0, Q8_K) */
    const void *q;    /* n_tokens rows */
    size_t stride;    /* bytes per token row */
    const float *sums; /* Q8_0: n_tokens x (cols/32) {d, d*sum} pairs, else NULL */
    size_t sums_stride;
    sw_k_quant_fn quant; /* f32 -> type (when sums is NULL) */
};

/* One op as the workers see it: a weight over a list of x's rows (tok, or first..first+n_tok). */
struct mm_iop {
    const void *w;
    uint32_t type;
    int64_t rows;
    float *y;            /* n_tok x rows */
    const uint32_t *tok; /* NULL: rows first .. first + n_tok - 1 of x */
    int64_t first, n_tok;
    const struct sw_k_type_impl *ti;
    const struct act_buf *act;
    int64_t chunk; /* rows per chunk (a multiple of its tile rows) */
};

struct mm_task {
    const struct mm_iop *ops;
    const int64_t *chunk_start; /* n_ops + 1 prefix sums of the ops' chunk counts */
    int n_ops;
    int64_t cols, n_tokens; /* n_tokens: rows of x (all quantized) */
    _Atomic int64_t next;   /* next chunk number over all ops */
    /* quantization phase */
    const float *x;
    struct act_buf *bufs;
    int n_bufs;
};

/* The quantized activations of the op's tokens t0..t0+nt-1 (their rows of x) into a. */
static void op_acts(const struct mm_iop *op, int64_t t0, int nt, struct sw_k_act *a)
{
    const struct act_buf *ab = op->act;
    for (int t = 0; t < nt; t++) {
        const size_t xr = op->tok ? op->tok[t0 + t] : (size_t)(op->first + t0 + t);
        a[t].q = (const uint8_t *)ab->q + xr * ab->stride;
        a[t].sums = ab->sums ? (const float *)((const uint8_t *)ab->sums + xr * ab->sums_stride) : NULL;
    }
}

/* Rows [r0, r1) of op o, all its tokens. */
static void run_rows(const struct mm_task *tk, int o, int64_t r0, int64_t r1)
{
    const struct mm_iop *op = &tk->ops[o];
    const struct sw_k_type_impl *ti = op->ti;
    const int64_t cols = tk->cols, nt_all = op->n_tok, rows = op->rows;
    const size_t rb = sw_k_row_bytes(op->type, cols);
    const uint8_t *w = op->w;

    const int tt = ti->max_nt ? ti->max_nt : SW_K_TILE_T;
    const int tile_nt = ti->tile_nt ? ti->tile_nt : SW_K_TILE_T;
    if (ti->tile_many && nt_all > SW_K_TILE_T) {
        /* a tile's weights decoded once for up to SW_K_TILE_MANY tokens; the op's last rows
         * (under a tile) by the row kernel, max_nt tokens at a time as below */
        const int tr = ti->tile_rows;
        for (int64_t t0 = 0; t0 < nt_all; t0 += SW_K_TILE_MANY) {
            const int nt = (int)(nt_all - t0 < SW_K_TILE_MANY ? nt_all - t0 : SW_K_TILE_MANY);
            struct sw_k_act a[SW_K_TILE_MANY];
            op_acts(op, t0, nt, a);
            float *y = op->y + t0 * rows;
            int64_t r = r0;
            for (; r + tr <= r1; r += tr) ti->tile_many(cols, w + (size_t)r * rb, rb, tr, a, nt, y + r, (size_t)rows);
            for (; r < r1; r++)
                for (int g = 0; g < nt; g += tt) {
                    const int k = nt - g < tt ? nt - g : tt;
                    float out[SW_K_TILE_T_MAX];
                    ti->rowdot(cols, w + (size_t)r * rb, a + g, k, out);
                    for (int t = 0; t < k; t++) y[(g + t) * rows + r] = out[t];
                }
        }
        return;
    }
    for (int64_t t0 = 0; t0 < nt_all; t0 += tt) {
        int nt = (int)(nt_all - t0 < tt ? nt_all - t0 : tt);
        struct sw_k_act a[SW_K_TILE_T_MAX];
        op_acts(op, t0, nt, a);
        float *y = op->y + t0 * rows;
        int64_t r = r0;
        /* a matvec keeps one weight stream per thread (it read best for the float tiles)
         * unless the type's tile says it serves a matvec too */
        if (ti->tile && (nt_all > 1 || ti->tile_vec) && nt <= tile_nt) {
            int tr = ti->tile_rows;
            for (; r + tr <= r1; r += tr) ti->tile(cols, w + (size_t)r * rb, rb, tr, a, nt, y + r, (size_t)rows);
        }
        for (; r < r1; r++) {
            float out[SW_K_TILE_T_MAX];
            ti->rowdot(cols, w + (size_t)r * rb, a, nt, out);
            for (int t = 0; t < nt; t++) y[t * rows + r] = out[t];
        }
    }
}

static void mm_worker(void *arg, int ith, int nth)
{
    struct mm_task *tk = arg;
    (void)ith;
    (void)nth;
    const int64_t total = tk->chunk_start[tk->n_ops];
    int o = 0;
    for (;;) {
        int64_t c = atomic_fetch_add_explicit(&tk->next, 1, memory_order_relaxed);
        if (c >= total) break;
        while (c >= tk->chunk_start[o + 1]) o++; /* chunks are taken in increasing order */
        const int64_t ch = tk->ops[o].chunk, r0 = (c - tk->chunk_start[o]) * ch;
        const int64_t r1 = r0 + ch < tk->ops[o].rows ? r0 + ch : tk->ops[o].rows;
        run_rows(tk, o, r0, r1);
    }
}

/* Quantizes tokens [ith-th slice] of x into every activation buffer. */
static void quant_worker(void *arg, int ith, int nth)
{
    struct mm_task *tk = arg;
    int64_t t0, t1;
    sw_k_split(tk->n_tokens, 1, ith, nth, &t0, &t1);
    const struct sw_k_vec_ops *ops = sw__k_vec_ops();
    for (int b = 0; b < tk->n_bufs; b++) {
        struct act_buf *ab = &tk->bufs[b];
        if (ab->type == SW_TYPE_F32) continue; /* used as is */
        for (int64_t t = t0; t < t1; t++) {
            const float *xt = tk->x + t * tk->cols;
            void *dst = (uint8_t *)ab->q + (size_t)t * ab->stride;
            if (ab->sums)
                ops->quant_q8_0_sums(xt, dst, (float *)((uint8_t *)ab->sums + (size_t)t * ab->sums_stride), tk->cols);
            else
                ab->quant(xt, dst, tk->cols);
        }
    }
}

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

/* The matmul of ops[0..n_ops) (their w, type, rows, y, tok, first, n_tok set; ti, act and
 * chunk filled here) over the n_x rows of x; chunk_start has n_ops + 1 entries. */
static int matmul_ops(struct sw_k_pool *pool, struct mm_iop *ops, int64_t *chunk_start, int n_ops, int64_t cols,
                      const float *x, int64_t n_x)
{
    struct mm_task tk;
    memset(&tk, 0, sizeof(tk));
    tk.ops = ops;
    tk.chunk_start = chunk_start;
    tk.n_ops = n_ops;
    tk.cols = cols;
    tk.n_tokens = n_x;
    tk.x = x;

    /* Distinct activation types, at most 3 (F32, Q8_0 with sums, Q8_K). */
    struct act_buf bufs[MAX_OPS];
    int n_bufs = 0;
    size_t scratch = 0;
    chunk_start[0] = 0;
    const int nth = pool ? sw_k_pool_active(pool) : 1;
    for (int o = 0; o < n_ops; o++) {
        const struct sw_k_type *t = sw_k_type_get(ops[o].type);
        if (!t || !t->vec_dot) return SW_EUNSUPPORTED;
        if (cols % t->block_size || ops[o].rows < 0 || ops[o].n_tok < 0) return SW_EINVAL;
        ops[o].ti = sw__k_impl_of(t);
        /* chunks start on a tile boundary of their op, so only an op's last rows miss the tile */
        int64_t ch = ops[o].n_tok == 1 ? CHUNK_ROWS_VEC : CHUNK_ROWS_MAT;
        /* A step of a few tokens streams the weights: each thread reads long runs of rows
         * (CHUNKS_PER_THREAD chunks each, up to CHUNK_ROWS_STREAM rows), so that a tile's
         * prefetch of the next rows falls in the same thread's chunk rather than the other
         * thread's (docs/kernels.md "Matmul"). */
        if (ops[o].n_tok <= STREAM_MAX_TOK && nth > 1) {
            int64_t want = ops[o].rows / ((int64_t)nth * CHUNKS_PER_THREAD);
            if (want > CHUNK_ROWS_STREAM) want = CHUNK_ROWS_STREAM;
            if (want > ch) ch = want;
        }
        if ((ops[o].n_tok > 1 || ops[o].ti->tile_vec) && (ops[o].ti->tile || ops[o].ti->tile_many))
            ch = (ch + ops[o].ti->tile_rows - 1) / ops[o].ti->tile_rows * ops[o].ti->tile_rows;
        ops[o].chunk = ch;
        chunk_start[o + 1] = chunk_start[o] + (ops[o].n_tok ? (ops[o].rows + ch - 1) / ch : 0);
        int found = -1;
        for (int b = 0; b < n_bufs; b++)
            if (bufs[b].type == t->act_type) found = b;
        if (found < 0) {
            if (n_bufs == MAX_OPS) return SW_EINVAL;
            found = n_bufs++;
            memset(&bufs[found], 0, sizeof(bufs[found]));
            bufs[found].type = t->act_type;
            bufs[found].quant = t->quantize_act;
            if (t->act_type == SW_TYPE_F32) {
                bufs[found].q = x;
                bufs[found].stride = (size_t)cols * sizeof(float);
            } else {
                size_t rb = sw_k_row_bytes(t->act_type, cols);
                if (!rb) return SW_EINVAL;
                bufs[found].stride = align64(rb);
                scratch += bufs[found].stride * (size_t)n_x;
                if (t->act_type == SW_TYPE_Q8_0) {
                    bufs[found].sums_stride = align64((size_t)(cols / SW_QK8_0) * 2 * sizeof(float));
                    scratch += bufs[found].sums_stride * (size_t)n_x;
                }
            }
        }
        ops[o].act = &bufs[found];
    }

    void *mem = NULL, *owned = NULL;
    if (scratch) {
        if (pool) mem = sw__k_pool_scratch(pool, scratch);
        else if (!posix_memalign(&owned, 64, scratch)) mem = owned;
        if (!mem) return SW_ENOMEM;
    }
    uint8_t *p = mem;
    int n_q = 0;
    for (int b = 0; b < n_bufs; b++) {
        if (bufs[b].type == SW_TYPE_F32) continue;
        n_q++;
        bufs[b].q = p;
        p += bufs[b].stride * (size_t)n_x;
        if (bufs[b].sums_stride) {
            bufs[b].sums = (const float *)p;
            p += bufs[b].sums_stride * (size_t)n_x;
        }
    }
    tk.bufs = bufs;
    tk.n_bufs = n_bufs;
    if (n_q) {
        if (n_x >= 4) sw_k_pool_run(pool, quant_worker, &tk);
        else quant_worker(&tk, 0, 1);
    }

    atomic_init(&tk.next, 0);
    sw_k_pool_run(pool, mm_worker, &tk);
    free(owned);
    return 0;
}

int sw_k_matmul_multi(struct sw_k_pool *pool, const struct sw_k_mm_op *ops, int n_ops, int64_t cols,
                      const float *x, int64_t n_tokens)
{
    if (n_ops < 1 || n_ops > MAX_OPS || cols <= 0 || n_tokens < 0) return SW_EINVAL;
    if (n_tokens == 0) return 0;
    struct mm_iop io[MAX_OPS];
    int64_t cs[MAX_OPS + 1];
    memset(io, 0, sizeof io);
    for (int o = 0; o < n_ops; o++) {
        io[o].w = ops[o].w;
        io[o].type = ops[o].type;
        io[o].rows = ops[o].rows;
        io[o].y = ops[o].y;
        io[o].n_tok = n_tokens;
    }
    return matmul_ops(pool, io, cs, n_ops, cols, x, n_tokens);
}

int sw_k_matmul_grouped(struct sw_k_pool *pool, const struct sw_k_mm_gop *ops, int n_ops, int64_t cols,
                        const float *x, int64_t n_x)
{
    if (n_ops < 1 || n_ops > SW_K_MAX_GROUP_OPS || cols <= 0 || n_x < 0) return SW_EINVAL;
    int64_t total = 0;
    for (int o = 0; o < n_ops; o++) {
        const struct sw_k_mm_gop *g = &ops[o];
        if (g->n_tok < 0 || g->n_tok > n_x) return SW_EINVAL;
        if (g->tok) {
            for (int64_t j = 0; j < g->n_tok; j++)
                if ((int64_t)g->tok[j] >= n_x) return SW_EINVAL;
        } else if (g->first < 0 || g->first > n_x - g->n_tok) {
            return SW_EINVAL;
        }
        total += g->n_tok;
    }
    if (!total) return 0;
    struct mm_iop *io = calloc((size_t)n_ops, sizeof *io);
    int64_t *cs = calloc((size_t)n_ops + 1, sizeof *cs);
    int rc = SW_ENOMEM;
    if (io && cs) {
        for (int o = 0; o < n_ops; o++) {
            io[o].w = ops[o].w;
            io[o].type = ops[o].type;
            io[o].rows = ops[o].rows;
            io[o].y = ops[o].y;
            io[o].tok = ops[o].tok;
            io[o].first = ops[o].first;
            io[o].n_tok = ops[o].n_tok;
        }
        rc = matmul_ops(pool, io, cs, n_ops, cols, x, n_x);
    }
    free(io);
    free(cs);
    return rc;
}

int sw_k_matmul(struct sw_k_pool *pool, const void *w, uint32_t type, int64_t rows, int64_t cols,
                const float *x, int64_t n_tokens, float *y)
{
    struct sw_k_mm_op op = {.w = w, .type = type, .rows = rows, .y = y};
    return sw_k_matmul_multi(pool, &op, 1, cols, x, n_tokens);
}
