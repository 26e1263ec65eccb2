/* kernels_rows.c — microbenchmark of the small-batch matmul that a pipeline stage runs
 * when it batches 2-8 concurrent decode sessions: y = W x for 1, 2, 4 and 8 activation
 * rows on one real-shape weight (default 11008x4096, the 7B ffn_up / gate), weights
 * cycled over >= 512 MB of copies so every call streams them from memory.
 * Prints ms per call and the ratio to 1 row; the row counts alternate within each
 * repetition so a busy machine slows all of them alike. Medians.
 * Usage: bench_kernels_rows [-t THREADS] [-r REPEATS] [-R ROWS] [-C COLS] [-c] [-H] [TYPE...]
 * -H: one copy of the weights (cache-resident when small: the kernels' compute cost alone).
 * SW_KERNELS=ref|avx2|avx512 picks the kernel family. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer/kernels.h"
#include "bench_util.h"

#define N_NT 4
#define MAX_REPS 512

int main(int argc, char **argv)
{
    int n_threads = 2, reps = 15, hot = 0;
    int64_t rows = 11008, cols = 4096;
    const char *types[16];
    int n_types = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) n_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-R") && i + 1 < argc) rows = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-C") && i + 1 < argc) cols = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-c")) g_clock = CLOCK_PROCESS_CPUTIME_ID;
        else if (!strcmp(argv[i], "-H")) hot = 1;
        else if (argv[i][0] != '-' && n_types < 16) types[n_types++] = argv[i];
        else {
            fprintf(stderr, "usage: bench_kernels_rows [-t THREADS] [-r REPEATS] [-R ROWS] [-C COLS] [-c] [-H] [TYPE...]\n");
            return 2;
        }
    }
    if (n_threads < 1 || reps < 1 || reps > MAX_REPS || rows < 1 || cols < 256) {
        fprintf(stderr, "bench_kernels_rows: -t >= 1, 1 <= -r <= %d, -R >= 1, -C >= 256\n", MAX_REPS);
        return 2;
    }
    if (!n_types) {
        types[n_types++] = "Q4_0";
        types[n_types++] = "Q8_0";
    }
    static const int nts[N_NT] = {1, 2, 4, 8};

    struct sw_k_pool *pool = NULL;
    if (sw_k_pool_new(n_threads, &pool)) return 1;
    float *x = malloc(sizeof(float) * (size_t)(8 * cols));
    float *y = malloc(sizeof(float) * (size_t)(8 * rows));
    if (!x || !y) return 1;
    for (int64_t i = 0; i < 8 * cols; i++) x[i] = frand();

    printf("kernels_rows: family %s, %d threads, %lldx%lld, median of %d (%s time)\n",
           sw_k_impl_name(sw_k_impl_active()), n_threads, (long long)rows, (long long)cols, reps,
           g_clock == CLOCK_MONOTONIC ? "wall" : "cpu");
    for (int ti = 0; ti < n_types; ti++) {
        uint32_t type = SW_TYPE_COUNT_;
        for (uint32_t t = 0; t < SW_TYPE_COUNT_; t++) {
            const struct sw_k_type *kt = sw_k_type_get(t);
            if (kt && kt->vec_dot && !strcmp(kt->name, types[ti])) type = t;
        }
        size_t rb = type == SW_TYPE_COUNT_ ? 0 : sw_k_row_bytes(type, cols);
        if (!rb) {
            fprintf(stderr, "bench_kernels_rows: unknown type %s or cols %lld not a block multiple\n", types[ti],
                    (long long)cols);
            return 2;
        }
        /* 64 distinct quantized rows copied over the matrix (quantizing all is slow) */
        size_t bytes = rb * (size_t)rows;
        uint8_t *w = malloc(bytes);
        float *src = malloc(sizeof(float) * (size_t)cols);
        if (!w || !src) return 1;
        for (int r = 0; r < 64 && r < rows; r++) {
            for (int64_t c = 0; c < cols; c++) src[c] = frand() * 0.1f;
            sw_k_quantize_row(type, src, w + rb * (size_t)r, cols);
        }
        for (int64_t r = 64; r < rows; r++) memcpy(w + rb * (size_t)r, w + rb * (size_t)(r % 64), rb);
        free(src);
        int n_copies = hot ? 1 : (int)(512e6 / (double)bytes) + 2;
        if (n_copies > 64) n_copies = 64;
        uint8_t **copies = malloc(sizeof(*copies) * (size_t)n_copies);
        copies[0] = w;
        for (int c = 1; c < n_copies; c++) {
            copies[c] = malloc(bytes);
            if (!copies[c]) return 1;
            memcpy(copies[c], w, bytes);
        }
        static double t[N_NT][MAX_REPS];
        int k = 0;
        for (int i = 0; i < N_NT; i++) sw_k_matmul(pool, copies[k++ % n_copies], type, rows, cols, x, nts[i], y);
        for (int r = 0; r < reps; r++)
            for (int i = 0; i < N_NT; i++) {
                double t0 = now_s();
                sw_k_matmul(pool, copies[k++ % n_copies], type, rows, cols, x, nts[i], y);
                t[i][r] = now_s() - t0;
            }
        double med[N_NT];
        for (int i = 0; i < N_NT; i++) {
            qsort(t[i], (size_t)reps, sizeof(double), cmp_d);
            med[i] = t[i][reps / 2];
        }
        printf("%-5s %6.1f MB |", types[ti], (double)bytes / 1e6);
        for (int i = 0; i < N_NT; i++)
            printf(" %d rows %7.3f ms (x%.2f, %4.1f GB/s)%s", nts[i], med[i] * 1e3, med[i] / med[0],
                   (double)bytes / med[i] / 1e9, i + 1 < N_NT ? " |" : "\n");
        fflush(stdout);
        for (int c = 1; c < n_copies; c++) free(copies[c]);
        free(copies);
        free(w);
    }
    sw_k_pool_free(pool);
    free(x);
    free(y);
    return 0;
}
