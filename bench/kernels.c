/* kernels.c — microbenchmark of the infer kernels: matvec (1 token, memory bound: GB/s of
 * weights streamed) and matmul (128 tokens, compute bound: GFLOP/s) per weight type, for
 * TinyLlama-shaped weights 5632x2048 (ffn_up) and 2048x5632 (ffn_down).
 * Usage: bench_kernels [-t THREADS] [-r REPEATS] [-n TOKENS] [-c] [TYPE...]
 * -c: time by process CPU time (meaningful with -t 1 on a busy machine).
 * SW_KERNELS=ref|avx2|avx512 picks the kernel family. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer/kernels.h"
#include "bench_util.h"

/* Median seconds of `reps` runs of one matmul, cycling over n_copies copies of the
 * weights (so a matvec streams from memory, not from the last-level cache). */
static double time_mm(struct sw_k_pool *pool, uint8_t *const *w, int n_copies, uint32_t type, int64_t rows,
                      int64_t cols, const float *x, int64_t nt, float *y, int reps)
{
    double t[256];
    if (reps > 256) reps = 256;
    sw_k_matmul(pool, w[0], type, rows, cols, x, nt, y); /* warm-up */
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        sw_k_matmul(pool, w[(r + 1) % n_copies], type, rows, cols, x, nt, y);
        t[r] = now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_d);
    return t[reps / 2];
}

static void noop_task(void *arg, int ith, int nth)
{
    (void)arg;
    (void)ith;
    (void)nth;
}

int main(int argc, char **argv)
{
    int n_threads = 2, reps = 9;
    int64_t n_tok = 128;
    const char *types[24];
    int n_types = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) n_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) n_tok = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-c")) g_clock = CLOCK_PROCESS_CPUTIME_ID;
        else if (argv[i][0] != '-' && n_types < 24) types[n_types++] = argv[i];
        else {
            fprintf(stderr, "usage: bench_kernels [-t THREADS] [-r REPEATS] [-n TOKENS] [-c] [TYPE...]\n");
            return 2;
        }
    }
    if (n_threads < 1 || reps < 1 || n_tok < 1) {
        fprintf(stderr, "bench_kernels: -t, -r and -n must be >= 1\n");
        return 2;
    }
    static const char *def_types[] = {"Q4_0", "Q4_K", "Q5_K", "Q6_K", "Q8_0", "F16",    "BF16",   "F32",
                                      "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "IQ4_NL", "IQ4_XS", "MXFP4"};
    if (!n_types) {
        n_types = 16;
        memcpy(types, def_types, sizeof(def_types));
    }

    struct sw_k_pool *pool = NULL;
    if (sw_k_pool_new(n_threads, &pool)) return 1;
    const int64_t shapes[2][2] = {{5632, 2048}, {2048, 5632}}; /* rows, cols */
    float *x = malloc(sizeof(float) * (size_t)(n_tok * 5632));
    float *y = malloc(sizeof(float) * (size_t)(n_tok * 5632));
    for (int64_t i = 0; i < n_tok * 5632; i++) x[i] = frand();

    printf("kernels: family %s, %d threads, median of %d, %s time\n", sw_k_impl_name(sw_k_impl_active()), n_threads,
           reps, g_clock == CLOCK_MONOTONIC ? "wall" : "cpu");
    {
        const int n_disp = 20000;
        double t0 = now_s();
        for (int i = 0; i < n_disp; i++) sw_k_pool_run(pool, noop_task, NULL);
        printf("pool dispatch (empty task): %.2f us\n", (now_s() - t0) / n_disp * 1e6);
    }
    printf("%-6s %-10s %9s %9s %10s %12s\n", "type", "rows x cols", "MB", "1 tok GB/s", "1 tok GF/s",
           "GF/s (n_tok)");
    for (int ti = 0; ti < n_types; ti++) {
        uint32_t type = SW_TYPE_COUNT_;
        for (uint32_t t = 0; t < SW_TYPE_COUNT_; t++) {
            const struct sw_k_type *kt = sw_k_type_get(t);
            if (kt && kt->vec_dot && !strcmp(kt->name, types[ti])) type = t;
        }
        if (type == SW_TYPE_COUNT_) {
            fprintf(stderr, "bench_kernels: unknown type %s\n", types[ti]);
            return 2;
        }
        for (int s = 0; s < 2; s++) {
            int64_t rows = shapes[s][0], cols = shapes[s][1];
            size_t rb = sw_k_row_bytes(type, cols);
            /* 64 distinct quantized rows, copied over the whole matrix (quantizing 11M
             * values with the K-quant search would dominate the run) */
            uint8_t *w = malloc(rb * (size_t)rows);
            float *src = malloc(sizeof(float) * (size_t)cols);
            for (int r = 0; r < 64; r++) {
                for (int64_t c = 0; c < cols; c++) src[c] = frand() * 0.1f;
                sw_k_quantize_row(type, src, w + rb * (size_t)r, cols);
            }
            for (int64_t r = 64; r < rows; r++) memcpy(w + rb * (size_t)r, w + rb * (size_t)(r % 64), rb);
            free(src);
            double bytes = (double)rb * rows, flop = 2.0 * rows * cols;
            /* copies adding up to >= 512 MB: far beyond any last-level cache */
            int n_copies = (int)(512e6 / bytes) + 2;
            if (n_copies > 256) n_copies = 256;
            uint8_t **copies = malloc(sizeof(*copies) * (size_t)n_copies);
            copies[0] = w;
            for (int c = 1; c < n_copies; c++) {
                copies[c] = malloc(rb * (size_t)rows);
                memcpy(copies[c], w, rb * (size_t)rows);
            }
            double t1 = time_mm(pool, copies, n_copies, type, rows, cols, x, 1, y, reps * 8);
            double tn = time_mm(pool, copies, 1, type, rows, cols, x, n_tok, y, reps);
            for (int c = 1; c < n_copies; c++) free(copies[c]);
            free(copies);
            printf("%-6s %5lldx%-5lld %8.1f %9.1f %10.1f %12.1f\n", types[ti], (long long)rows, (long long)cols,
                   bytes / 1e6, bytes / t1 / 1e9, flop / t1 / 1e9, flop * n_tok / tn / 1e9);
            fflush(stdout);
            free(w);
        }
    }
    sw_k_pool_free(pool);
    free(x);
    free(y);
    return 0;
}
