/* bwprobe.c — the machine's memory read bandwidth, the limit a decode step runs into: a
 * buffer much larger than the last-level cache is streamed by 1, 2, ... threads (each reads
 * its contiguous share), best of N passes, in GB/s (1e9 bytes/s). Not a kernel benchmark:
 * the loop only sums 32-byte loads so the loads cannot be elided.
 * Usage: bench_bwprobe [-t THREADS[,THREADS...]] [-m MIB] [-r PASSES] [--json]
 * Default: -t 1,2 -r 15, buffer max(512 MiB, 16 x LLC) up to 4 GiB. --json: one JSON line
 * per thread count. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BW_X86 1
#endif

#define BW_MAX_THREADS 256

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Sum of n_bytes (a multiple of 128) from p, 8-byte words, four independent chains. */
static uint64_t read_u64(const uint8_t *p, size_t n_bytes)
{
    const uint64_t *w = (const uint64_t *)p;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i < n_bytes / 8; i += 4) {
        a += w[i];
        b += w[i + 1];
        c += w[i + 2];
        d += w[i + 3];
    }
    return a + b + c + d;
}

#ifdef BW_X86
/* The same with 32-byte loads, four 128-byte cache-line pairs in flight per iteration. */
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *p, size_t n_bytes)
{
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i < n_bytes; i += 128) {
        a = _mm256_add_epi64(a, _mm256_load_si256((const __m256i *)(p + i)));
        b = _mm256_add_epi64(b, _mm256_load_si256((const __m256i *)(p + i + 32)));
        c = _mm256_add_epi64(c, _mm256_load_si256((const __m256i *)(p + i + 64)));
        d = _mm256_add_epi64(d, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    a = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, a);
    return out[0] + out[1] + out[2] + out[3];
}
#endif

static uint64_t (*g_read)(const uint8_t *, size_t) = read_u64;

struct bw_run {
    uint8_t *buf;     /* borrowed: the whole buffer */
    size_t n_bytes;   /* multiple of 128 * n_threads */
    int n_threads, n_passes;
    pthread_barrier_t bar;
    double best_s;    /* written by thread 0 */
};

struct bw_arg {
    struct bw_run *run;
    int ith;
    uint64_t sum;     /* the loads' sum: printed, so that no load can be elided */
};

static void *bw_thread(void *p)
{
    struct bw_arg *a = p;
    struct bw_run *r = a->run;
    const size_t share = r->n_bytes / (size_t)r->n_threads;
    uint8_t *mine = r->buf + share * (size_t)a->ith;
    uint64_t s = 0;
    /* First touch by the reading thread: pages land near it on a NUMA machine. */
    memset(mine, a->ith + 1, share);
    for (int k = 0; k < r->n_passes; k++) {
        pthread_barrier_wait(&r->bar);
        double t0 = now_s();
        s += g_read(mine, share);
        pthread_barrier_wait(&r->bar);
        double dt = now_s() - t0;
        if (a->ith == 0 && k > 0 && dt < r->best_s) r->best_s = dt; /* pass 0 warms the TLB */
    }
    a->sum = s;
    return NULL;
}

/* The last-level cache of cpu0 as sysfs tells it (per cache instance; glibc's sysconf
 * reports the sum over all instances on some AMD parts), or 0. */
static size_t llc_bytes(void)
{
    size_t best = 0;
    for (int i = 0; i < 8; i++) {
        char path[96];
        unsigned long kib = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fscanf(f, "%luK", &kib) == 1 && kib * 1024 > best) best = kib * 1024;
        fclose(f);
    }
    return best;
}

static int probe(uint8_t *buf, size_t n_bytes, int n_threads, int n_passes, double *gbps_out, uint64_t *sum_out)
{
    struct bw_run r = { .buf = buf, .n_threads = n_threads, .n_passes = n_passes + 1, .best_s = 1e30 };
    r.n_bytes = n_bytes / (128 * (size_t)n_threads) * (128 * (size_t)n_threads);
    pthread_t th[BW_MAX_THREADS];
    struct bw_arg args[BW_MAX_THREADS];
    if (pthread_barrier_init(&r.bar, NULL, (unsigned)n_threads)) return -1;
    for (int i = 1; i < n_threads; i++) {
        args[i] = (struct bw_arg){ &r, i, 0 };
        if (pthread_create(&th[i], NULL, bw_thread, &args[i])) {
            /* the started threads wait on a barrier that will never open */
            fprintf(stderr, "bwprobe: pthread_create failed after %d threads\n", i - 1);
            exit(1);
        }
    }
    args[0] = (struct bw_arg){ &r, 0, 0 };
    bw_thread(&args[0]);
    *sum_out = args[0].sum;
    for (int i = 1; i < n_threads; i++) {
        pthread_join(th[i], NULL);
        *sum_out += args[i].sum;
    }
    pthread_barrier_destroy(&r.bar);
    *gbps_out = (double)r.n_bytes / r.best_s / 1e9;
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_bwprobe [-t THREADS[,THREADS...]] [-m MIB] [-r PASSES] [--json]\n");
    return 2;
}

int main(int argc, char **argv)
{
    int counts[16] = { 1, 2 }, n_counts = 2, n_passes = 15, json = 0;
    size_t mib = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            char *s = argv[++i], *end;
            n_counts = 0;
            while (*s && n_counts < 16) {
                long v = strtol(s, &end, 10);
                if (end == s || v < 1 || v > BW_MAX_THREADS) return usage();
                counts[n_counts++] = (int)v;
                s = *end == ',' ? end + 1 : end;
                if (*end && *end != ',') return usage();
            }
        } else if (!strcmp(argv[i], "-m") && i + 1 < argc) {
            long v = atol(argv[++i]);
            if (v < 1 || v > 1 << 20) return usage();
            mib = (size_t)v;
        } else if (!strcmp(argv[i], "-r") && i + 1 < argc) {
            n_passes = atoi(argv[++i]);
            if (n_passes < 1 || n_passes > 10000) return usage();
        } else if (!strcmp(argv[i], "--json")) json = 1;
        else return usage();
    }
    const size_t llc = llc_bytes();
    size_t n_bytes = mib ? mib << 20 : 512u << 20;
    if (!mib && 16 * llc > n_bytes) n_bytes = 16 * llc < ((size_t)4096 << 20) ? 16 * llc : (size_t)4096 << 20;
#ifdef BW_X86
    if (__builtin_cpu_supports("avx2")) g_read = read_avx2;
#endif
    uint8_t *buf = NULL;
    if ((errno = posix_memalign((void **)&buf, 4096, n_bytes))) {
        perror("bwprobe: posix_memalign");
        return 1;
    }
    if (!json)
        printf("read bandwidth: %zu MiB buffer (LLC %zu KiB), best of %d passes, %s loads\n", n_bytes >> 20,
               llc >> 10, n_passes, g_read == read_u64 ? "8-byte" : "32-byte");
    for (int c = 0; c < n_counts; c++) {
        double gbps = 0;
        uint64_t sum = 0;
        if (probe(buf, n_bytes, counts[c], n_passes, &gbps, &sum)) {
            fprintf(stderr, "bwprobe: barrier init failed\n");
            free(buf);
            return 1;
        }
        if (json)
            printf("{\"threads\": %d, \"read_gbps\": %.2f, \"buffer_bytes\": %zu, \"passes\": %d, \"sum\": %llu}\n",
                   counts[c], gbps, n_bytes, n_passes, (unsigned long long)sum);
        else printf("  %3d thread%s %7.2f GB/s  (sum %llx)\n", counts[c], counts[c] == 1 ? " " : "s", gbps,
                    (unsigned long long)sum);
    }
    free(buf);
    return 0;
}
