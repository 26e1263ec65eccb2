/* stage_rows.c — one pipeline stage's decode step for 1, 2, 4 and 8 concurrent sessions
 * (sw_stage_forward_batch, one token each): what batching sessions at a stage costs per
 * step. The stage computes layers FIRST..LAST of a model (a middle shard: floats in and
 * out); each session holds a 16-token context, cut back to it every step so attention
 * stays the same size. Row counts alternate within each repetition; medians.
 * Usage: bench_stage_rows MODEL.gguf [-t THREADS] [-r REPEATS] [-l FIRST LAST] [-c]
 * -c: process CPU time (with -t 1 on a busy machine it leaves out descheduled time)
 * (e.g. `shardswarm synth --preset llama2-7b --type Q4_0 --layers 6` and -l 1 4: a 7B
 * shard of 4 layers). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer/infer.h"

#define N_NT 4
#define MAX_REPS 256
#define CTX 16

static clockid_t g_clock = CLOCK_MONOTONIC;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(g_clock, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int n_threads = 2, reps = 9, first = 1, last = 4;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) n_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-l") && i + 2 < argc) {
            first = atoi(argv[++i]);
            last = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "-c")) g_clock = CLOCK_PROCESS_CPUTIME_ID;
        else if (argv[i][0] != '-' && !path) path = argv[i];
        else path = NULL, i = argc;
    }
    if (!path || n_threads < 1 || reps < 1 || reps > MAX_REPS || first < 1 || last < first) {
        fprintf(stderr, "usage: bench_stage_rows MODEL.gguf [-t THREADS] [-r REPEATS (<= %d)] [-l FIRST LAST] [-c]\n"
                        "  FIRST >= 1: a middle shard (floats in)\n", MAX_REPS);
        return 2;
    }
    struct sw_stage_opts o = {.layer_first = first, .layer_last = last, .n_threads = (uint32_t)n_threads,
                              .n_ctx = 256};
    struct sw_stage *s = NULL;
    char err[512];
    if (sw_stage_open(path, &o, &s, err, sizeof err)) {
        fprintf(stderr, "bench_stage_rows: %s\n", err);
        return 1;
    }
    const struct sw_stage_info *in = sw_stage_info(s);
    if (in->gives_logits) {
        fprintf(stderr, "bench_stage_rows: layers %d..%d include the last layer; pick a middle shard\n", first, last);
        sw_stage_free(s);
        return 2;
    }
    const size_t E = in->n_embd;
    float *x = malloc(sizeof(float) * E * CTX * 8), *y = malloc(sizeof(float) * E * CTX * 8);
    if (!x || !y) return 1;
    uint64_t r = 88172645463325252ull;
    for (size_t i = 0; i < E * CTX * 8; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        x[i] = (float)((r >> 40) & 0xffff) / 65536.0f - 0.5f;
    }
    for (uint64_t q = 0; q < 8; q++) {
        if (sw_stage_seq_new(s, q + 1) || sw_stage_forward(s, q + 1, 0, CTX, x + q * E * CTX, y, 0)) {
            fprintf(stderr, "bench_stage_rows: prefill: %s\n", sw_stage_errmsg(s));
            return 1;
        }
    }
    static const int nts[N_NT] = {1, 2, 4, 8};
    static double t[N_NT][MAX_REPS];
    struct sw_stage_batch b[8];
    for (int rep = -1; rep < reps; rep++) /* rep -1: warm-up */
        for (int i = 0; i < N_NT; i++) {
            for (int k = 0; k < nts[i]; k++)
                b[k] = (struct sw_stage_batch){.seq = (uint64_t)k + 1, .pos = CTX, .n_tokens = 1,
                                               .in = x + (size_t)k * E, .out = y + (size_t)k * E};
            double t0 = now_s();
            if (sw_stage_forward_batch(s, b, (uint32_t)nts[i])) {
                fprintf(stderr, "bench_stage_rows: forward: %s\n", sw_stage_errmsg(s));
                return 1;
            }
            if (rep >= 0) t[i][rep] = now_s() - t0;
        }
    printf("stage_rows: %s layers %d..%d, %d threads, median of %d (%s)\n", path, first, last, n_threads, reps,
           g_clock == CLOCK_MONOTONIC ? "wall" : "cpu time");
    double med[N_NT];
    for (int i = 0; i < N_NT; i++) {
        qsort(t[i], (size_t)reps, sizeof(double), cmp_d);
        med[i] = t[i][reps / 2];
        printf("%d sessions: %7.2f ms per step (x%.2f of one; %.2f ms per session)\n", nts[i], med[i] * 1e3,
               med[i] / med[0], med[i] * 1e3 / nts[i]);
    }
    sw_stage_free(s);
    free(x);
    free(y);
    return 0;
}
