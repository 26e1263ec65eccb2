/* tile_rows.c — one quantized type's register tile alone (no matmul, no thread pool): the
 * kernel a stage's 1-4-session decode step spends its time in. Prints CPU-time ns per tile
 * block (tile_rows rows x one weight block of columns) for 1..4 tokens, from cache (one
 * 64-row copy, L2-sized at 4096 columns) and, with -s, streamed (copies of a 512-row matrix
 * over >= 64 MB, so every call reads its weights from memory). Token counts alternate
 * within each repetition; medians. What it is for: telling the tile's compute from its
 * memory stream (docs/kernels.md, "What bounds the 4-row step now").
 * Usage: bench_tile_rows [-r REPEATS] [-C COLS] [-s] [TYPE...]   (default Q4_0, 4096)
 * SW_KERNELS=ref|avx2|avx512 picks the kernel family. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer/kernels_impl.h"
#include "bench_util.h"

#define MAX_NT 4
#define MAX_REPS 512
#define HOT_ROWS 64
#define STREAM_ROWS 512
#define STREAM_BYTES 64e6

/* One type: returns 0 (a type without a register tile is reported and skipped), 2 for an
 * unknown type or columns that are not a block multiple, 1 when out of memory. */
static int bench_type(const char *name, int64_t cols, int reps, int stream)
{
    uint32_t type = SW_TYPE_COUNT_;
    for (uint32_t t = 0; t < SW_TYPE_COUNT_; t++) {
        const struct sw_k_type *kt = sw_k_type_get(t);
        if (kt && kt->vec_dot && !strcmp(kt->name, name)) type = t;
    }
    const struct sw_k_type *kt = type == SW_TYPE_COUNT_ ? NULL : sw_k_type_get(type);
    const struct sw_k_type_impl *ti = kt ? sw__k_impl_of(kt) : NULL;
    size_t rb = kt ? sw_k_row_bytes(type, cols) : 0;
    if (!ti || !rb) {
        fprintf(stderr, "bench_tile_rows: unknown type %s or %lld columns not a block multiple\n", name,
                (long long)cols);
        return 2;
    }
    if (!ti->tile) {
        printf("%-6s no register tile in this family (row kernel only)\n", name);
        return 0;
    }
    const int tr = ti->tile_rows;
    const int64_t rows = (stream ? STREAM_ROWS : HOT_ROWS) / tr * tr;
    const size_t bytes = rb * (size_t)rows;
    int n_copies = stream ? (int)(STREAM_BYTES / (double)bytes) + 1 : 1;

    /* weights: distinct quantized rows in the first copy, the others copies of it */
    uint8_t *w = malloc(bytes * (size_t)n_copies);
    float *src = malloc(sizeof(float) * (size_t)cols);
    /* activations: 4 tokens as the matmul hands them to a tile */
    size_t ab = kt->quantize_act ? sw_k_row_bytes(kt->act_type, cols) : (size_t)cols * sizeof(float);
    uint8_t *aq = malloc(ab * MAX_NT);
    float *sums = malloc(sizeof(float) * (size_t)(cols / 32 + 1) * 2 * MAX_NT);
    float *out = malloc(sizeof(float) * (size_t)rows * MAX_NT);
    if (!w || !src || !aq || !sums || !out) {
        free(w), free(src), free(aq), free(sums), free(out);
        return 1;
    }
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) src[c] = frand() * 0.1f;
        sw_k_quantize_row(type, src, w + rb * (size_t)r, cols);
    }
    for (int c = 1; c < n_copies; c++) memcpy(w + bytes * (size_t)c, w, bytes);
    struct sw_k_act a[MAX_NT];
    for (int t = 0; t < MAX_NT; t++) {
        for (int64_t c = 0; c < cols; c++) src[c] = frand();
        float *ds = sums + (size_t)(cols / 32 + 1) * 2 * t;
        uint8_t *q = aq + ab * (size_t)t;
        if (ti->act_sums) sw__k_vec_ops()->quant_q8_0_sums(src, q, ds, cols);
        else if (kt->quantize_act) kt->quantize_act(src, q, cols);
        else memcpy(q, src, ab);
        a[t].q = q;
        a[t].sums = ti->act_sums ? ds : NULL;
    }
    const int max_nt = ti->tile_nt && ti->tile_nt < MAX_NT ? ti->tile_nt : MAX_NT;
    static double tm[MAX_NT][MAX_REPS];
    int k = 0;
    for (int r = -1; r < reps; r++) /* r = -1: warm-up */
        for (int nt = 1; nt <= max_nt; nt++) {
            const uint8_t *wc = w + bytes * (size_t)(k++ % n_copies);
            double t0 = now_s();
            for (int64_t r0 = 0; r0 < rows; r0 += tr)
                ti->tile(cols, wc + rb * (size_t)r0, rb, tr, a, nt, out + r0, (size_t)rows);
            if (r >= 0) tm[nt - 1][r] = now_s() - t0;
        }
    const double blocks = (double)(rows / tr) * (double)(cols / kt->block_size);
    printf("%-6s %s, %d rows x %lld, %d cop%s (%.1f MB) | ns per %d-row block:", name, stream ? "streamed" : "from cache",
           (int)rows, (long long)cols, n_copies, n_copies == 1 ? "y" : "ies", (double)bytes * n_copies / 1e6, tr);
    double one = 0;
    for (int nt = 1; nt <= max_nt; nt++) {
        qsort(tm[nt - 1], (size_t)reps, sizeof(double), cmp_d);
        double ns = tm[nt - 1][reps / 2] / blocks * 1e9;
        if (nt == 1) one = ns;
        printf(" %d tok %.2f (x%.2f)", nt, ns, ns / one);
    }
    printf("\n");
    fflush(stdout);
    free(w), free(src), free(aq), free(sums), free(out);
    return 0;
}

int main(int argc, char **argv)
{
    g_clock = CLOCK_PROCESS_CPUTIME_ID;
    int reps = 101, stream = 0, n_types = 0;
    int64_t cols = 4096;
    const char *types[16];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-C") && i + 1 < argc) cols = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-s")) stream = 1;
        else if (argv[i][0] != '-' && n_types < 16) types[n_types++] = argv[i];
        else {
            fprintf(stderr, "usage: bench_tile_rows [-r REPEATS] [-C COLS] [-s] [TYPE...]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > MAX_REPS || cols < 256 || cols > (1 << 20)) {
        fprintf(stderr, "bench_tile_rows: 1 <= -r <= %d, 256 <= -C <= %d\n", MAX_REPS, 1 << 20);
        return 2;
    }
    if (!n_types) types[n_types++] = "Q4_0";
    printf("tile_rows: family %s, 1 thread, CPU time, median of %d\n", sw_k_impl_name(sw_k_impl_active()), reps);
    for (int i = 0; i < n_types; i++) {
        int rc = bench_type(types[i], cols, reps, stream);
        if (rc) return rc;
    }
    return 0;
}
