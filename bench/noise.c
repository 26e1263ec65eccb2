/* noise.c — bench_noise: what a private swarm's encryption costs (src/net/noise.c,
 * docs/protocol.md). One core, no network:
 *   handshake   µs for both sides of Noise_NNpsk0 (two X25519 keys, two DH, the hashing);
 * then for each transport AEAD (ChaCha20-Poly1305, AES-256-GCM; the one this machine would
 * negotiate is marked):
 *   seal/open   GB/s of 16 KiB piece blocks (13-byte header + 16384 bytes = one record),
 *               sealed the way peer_io.c does it (sw_noise_sealv into a buffer) and opened
 *               the way it reads (sw_noise_feed of whole reads);
 *   hop         µs added to one pipeline hop for a hidden state of a given size: seal on the
 *               sender + open on the receiver (median of many), per size.
 * usage: bench_noise [MiB of blocks, default 1024] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net/noise.h"

/* CPU time of this thread: on a shared machine the wall clock also counts the time other
 * processes held the core; both are printed where they differ. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const uint8_t KEY[32] = { 42 };

static void pair(struct sw_noise **i, struct sw_noise **r, unsigned aead)
{
    struct sw_buf a = { 0 }, b = { 0 }, p = { 0 };
    *i = sw_noise_new_aeads(KEY, 1, aead);
    *r = sw_noise_new_aeads(KEY, 0, aead);
    sw_noise_start(*i, &a);
    if (sw_noise_feed(*r, a.data, a.len, &b, &p) || sw_noise_feed(*i, b.data, b.len, &a, &p)) {
        fprintf(stderr, "handshake failed\n");
        exit(1);
    }
    if (aead && sw_noise_aead(*i) != aead) {
        fprintf(stderr, "negotiated %s, not %s\n", sw_noise_aead_name(sw_noise_aead(*i)), sw_noise_aead_name(aead));
        exit(1);
    }
    sw_buf_free(&a);
    sw_buf_free(&b);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int bench_aead(unsigned aead, size_t mib);

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 1024;
    /* handshake */
    int nh = 2000;
    double t0 = now_s();
    for (int k = 0; k < nh; k++) {
        struct sw_noise *i, *r;
        pair(&i, &r, 0);
        sw_noise_free(i);
        sw_noise_free(r);
    }
    double hs_us = (now_s() - t0) / nh * 1e6;
    printf("noise handshake (both sides)     %8.1f us\n", hs_us);
    unsigned local = sw_noise_aeads_local(), mine = local & SW_NOISE_AESGCM ? SW_NOISE_AESGCM : SW_NOISE_CHACHAPOLY;
    unsigned aeads[2] = { SW_NOISE_CHACHAPOLY, SW_NOISE_AESGCM };
    for (int a = 0; a < 2; a++) {
        printf("== %s%s\n", sw_noise_aead_name(aeads[a]),
               aeads[a] == mine ? " (what this machine negotiates with a peer like it)" : "");
        if (bench_aead(aeads[a], mib)) return 1;
    }
    return 0;
}

static int bench_aead(unsigned aead, size_t mib)
{
    /* seal / open of 16 KiB blocks, 16 blocks (256 KiB, one SW_BT_SEND_CHUNK) per write */
    struct sw_noise *i, *r;
    pair(&i, &r, aead);
    enum { BLK = 16384, PER = 16 };
    uint8_t hdr[13] = { 0, 0, 0x40, 0x09, 7 }, *blk = malloc(BLK);
    for (size_t k = 0; k < BLK; k++) blk[k] = (uint8_t)(k * 131);
    size_t rec = 2 + 13 + BLK + SW_NOISE_TAG, chunk = PER * rec;
    uint8_t *wire = malloc(chunk);
    size_t n_chunks = mib * (1u << 20) / (PER * BLK);
    struct sw_buf plain = { 0 }, out = { 0 };
    double seal_s = 0, open_s = 0, w0 = wall_s();
    for (size_t c = 0; c < n_chunks; c++) {
        double a = now_s();
        size_t w = 0;
        for (int b = 0; b < PER; b++) {
            const uint8_t *part[2] = { hdr, blk };
            size_t len[2] = { 13, BLK };
            w += sw_noise_sealv(i, part, len, 2, wire + w);
        }
        double m = now_s();
        plain.len = 0;
        if (sw_noise_feed(r, wire, w, &out, &plain) || plain.len != PER * (13 + BLK)) {
            fprintf(stderr, "open failed: %s\n", sw_noise_err(r));
            return 1;
        }
        double e = now_s();
        seal_s += m - a;
        open_s += e - m;
    }
    double bytes = (double)n_chunks * PER * BLK, wall = wall_s() - w0;
    printf("seal 16 KiB blocks               %8.2f GB/s  (%zu MiB)\n", bytes / seal_s / 1e9, mib);
    printf("open 16 KiB blocks               %8.2f GB/s\n", bytes / open_s / 1e9);
    printf("seal+open on one core            %8.2f GB/s  (wall clock: %.2f GB/s)\n", bytes / (seal_s + open_s) / 1e9,
           bytes / wall / 1e9);
    printf("(times are this thread's CPU time)\n");

    /* one pipeline hop: seal + open of one message of each size */
    size_t sizes[] = { 512, 8192, 16384, 32768, 65536, 262144 };
    const char *what[] = { "stories260K f32 row + header", "7B hidden state, f16", "7B hidden state, f32",
                           "70B hidden state, f32", "8 rows 7B f16", "16 rows 7B f32" };
    uint8_t *msg = malloc(262144), *sealed = malloc(sw_noise_sealed_len(262144));
    memset(msg, 0x5a, 262144);
    printf("pipeline hop: added seal + open per message (median of 2000, CPU time; p10: the 10th percentile,\n"
           "what a core with less contention from other jobs gives)\n");
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        enum { N = 2000 };
        static double t[N];
        for (int k = 0; k < N; k++) {
            double a = now_s();
            const uint8_t *part[1] = { msg };
            size_t len[1] = { sizes[s] };
            size_t w = sw_noise_sealv(i, part, len, 1, sealed);
            plain.len = 0;
            sw_noise_feed(r, sealed, w, &out, &plain);
            t[k] = now_s() - a;
        }
        qsort(t, N, sizeof t[0], cmp_d);
        printf("  %7zu bytes %-30s %7.2f us  (p10 %.2f)\n", sizes[s], what[s], t[N / 2] * 1e6, t[N / 10] * 1e6);
    }
    sw_noise_free(i);
    sw_noise_free(r);
    free(blk);
    free(wire);
    free(msg);
    free(sealed);
    sw_buf_free(&plain);
    sw_buf_free(&out);
    return 0;
}
