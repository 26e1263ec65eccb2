/* noise_link.c — bench_noise_link: the private swarm's encrypted link alone, without disk or
 * hashing (docs/protocol.md, Measurements): BitTorrent PIECE messages (13-byte header +
 * 16 KiB block) from one process to another over a loopback TCP connection, plain and through
 * the Noise record layer (src/net/noise.c), alternated.
 *   sender    blocks taken from a 64 MiB in-memory "storage" (random bytes), in chunks of
 *             SW_BT_SEND_CHUNK as peer_io.c builds them: plain, header and block go out
 *             with one writev per chunk; private, each block is sealed as one record straight
 *             from the header and the storage into a reused buffer (sw_noise_sealv), then one
 *             write per chunk;
 *   receiver  reads of 256 KiB (peer_io.c's READ_BUF) through sw_noise_feed (private), the
 *             wire parser (sw_bt_wire_feed), and each block copied into a 1 MiB piece buffer
 *             at its offset — what the fetcher's loop thread does before SHA-1 and the disk.
 * Sockets are tuned like peer_io.c's (TCP_NODELAY, 4 MiB buffers, TCP_NOTSENT_LOWAT = one
 * chunk); I/O is blocking (no event loop). Both processes share this machine's cores.
 * Printed per run: MB/s (block bytes / wall time at the receiver, from the first byte to the
 * last) and each side's CPU seconds per GiB (getrusage, user + system).
 * usage: bench_noise_link [MiB per run, default 1024] [reps, default 3] */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bt/bt.h"
#include "net/noise.h"

enum { BLK = 16384, PIECE = 1 << 20, STORE = 64 << 20, RBUF = 256 << 10, PER_CHUNK = SW_BT_SEND_CHUNK / BLK };

static const uint8_t KEY[32] = { 7 };
static int g_pack; /* SW_LINK_PACK=1: a chunk's messages sealed as records of up to 64 KiB, not one per block */

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_noise_link: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void tune(int fd)
{
    int one = 1, sz = 4 << 20, lowat = (int)SW_BT_SEND_CHUNK;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
#ifdef TCP_NOTSENT_LOWAT
    setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
#endif
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) die("write");
        p += w;
        n -= (size_t)w;
    }
}

static void writev_all(int fd, struct iovec *iov, int n)
{
    while (n) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) die("writev");
        while (n && (size_t)w >= iov->iov_len) { w -= (ssize_t)iov->iov_len; iov++; n--; }
        if (n) { iov->iov_base = (uint8_t *)iov->iov_base + w; iov->iov_len -= (size_t)w; }
    }
}

/* The Noise handshake over a blocking socket (both sides); transport bytes that came in the
 * same read are opened into *plain. */
static struct sw_noise *handshake(int fd, int initiator, struct sw_buf *plain)
{
    struct sw_noise *nz = sw_noise_new(KEY, initiator);
    struct sw_buf out = { 0 };
    uint8_t b[256];
    if (!nz) die("sw_noise_new");
    if (initiator) sw_noise_start(nz, &out);
    while (!sw_noise_ready(nz) || out.len) {
        if (out.len) { write_all(fd, out.data, out.len); out.len = 0; continue; }
        ssize_t n = read(fd, b, sizeof b);
        if (n <= 0) die("handshake read");
        if (sw_noise_feed(nz, b, (size_t)n, &out, plain)) { fprintf(stderr, "handshake: %s\n", sw_noise_err(nz)); exit(1); }
    }
    sw_buf_free(&out);
    return nz;
}

static void sender(int fd, int private_link, size_t n_blocks)
{
    uint8_t *store = malloc(STORE), *seal = malloc(sw_noise_sealed_len(13 + BLK) * PER_CHUNK);
    uint8_t hdr[PER_CHUNK][13];
    struct iovec iov[2 * PER_CHUNK];
    if (!store || !seal) die("malloc");
    for (size_t i = 0; i < STORE; i += 8) {
        uint64_t v = (uint64_t)i * 0x9E3779B97F4A7C15ull;
        memcpy(store + i, &v, 8);
    }
    struct sw_buf hs = { 0 };
    struct sw_noise *nz = private_link ? handshake(fd, 0, &hs) : NULL;
    hs.len = 0;
    sw_bt_wire_put_handshake(&hs, KEY, KEY, 1, 1);
    if (nz) {
        struct sw_buf s = { 0 };
        sw_noise_seal(nz, hs.data, hs.len, &s);
        write_all(fd, s.data, s.len);
        sw_buf_free(&s);
    } else {
        write_all(fd, hs.data, hs.len);
    }
    sw_buf_free(&hs);
    size_t next = 0;
    const uint8_t *pp[2 * PER_CHUNK];
    size_t pl[2 * PER_CHUNK];
    while (next < n_blocks) {
        size_t w = 0;
        int nb = 0;
        for (; nb < PER_CHUNK && next < n_blocks; nb++, next++) {
            uint32_t piece = (uint32_t)(next / (PIECE / BLK)), begin = (uint32_t)(next % (PIECE / BLK)) * BLK;
            const uint8_t *data = store + (next * BLK) % STORE;
            sw_bt_wire_piece_header(hdr[nb], piece, begin, BLK);
            if (nz && g_pack) {
                pp[2 * nb] = hdr[nb];
                pl[2 * nb] = 13;
                pp[2 * nb + 1] = data;
                pl[2 * nb + 1] = BLK;
            } else if (nz) {
                const uint8_t *part[2] = { hdr[nb], data };
                size_t len[2] = { 13, BLK };
                w += sw_noise_sealv(nz, part, len, 2, seal + w);
            } else {
                iov[2 * nb] = (struct iovec){ hdr[nb], 13 };
                iov[2 * nb + 1] = (struct iovec){ (void *)data, BLK };
            }
        }
        if (nz && g_pack) w = sw_noise_sealv(nz, pp, pl, 2 * nb, seal);
        if (nz) write_all(fd, seal, w);
        else writev_all(fd, iov, 2 * nb);
    }
    shutdown(fd, SHUT_WR);
    uint8_t b;
    (void)!read(fd, &b, 1); /* the receiver's word that it has everything */
    sw_noise_free(nz);
    free(store);
    free(seal);
}

struct rx {
    uint8_t *piece;
    size_t got, blocks;
    int hs;
};

static void on_ev(void *ud, const struct sw_bt_wire_ev *ev)
{
    struct rx *r = ud;
    if (ev->type == SW_BT_WEV_HANDSHAKE) { r->hs = 1; return; }
    if (ev->type != SW_BT_WEV_PIECE_DATA) return;
    if ((uint64_t)ev->frag_begin + ev->frag_len > PIECE) return;
    memcpy(r->piece + ev->frag_begin, ev->frag, ev->frag_len);
    r->got += ev->frag_len;
    r->blocks += ev->last;
}

/* Returns the seconds from the first byte to the last block. */
static double receiver(int fd, int private_link, size_t n_blocks)
{
    uint8_t *rbuf = malloc(RBUF);
    struct rx r = { .piece = malloc(PIECE) };
    struct sw_bt_wire w;
    struct sw_bt_wire_limits lim = { .max_block = BLK };
    struct sw_buf out = { 0 }, plain = { 0 };
    if (!rbuf || !r.piece) die("malloc");
    sw_bt_wire_init(&w, &lim);
    struct sw_noise *nz = private_link ? handshake(fd, 1, &plain) : NULL;
    double t0 = 0;
    if (plain.len) {
        t0 = wall_s();
        if (sw_bt_wire_feed(&w, plain.data, plain.len, on_ev, &r)) { fprintf(stderr, "wire: %s\n", w.err); exit(1); }
    }
    while (r.blocks < n_blocks) {
        ssize_t n = read(fd, rbuf, RBUF);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { fprintf(stderr, "receiver: stream ended after %zu blocks\n", r.blocks); exit(1); }
        if (!t0) t0 = wall_s();
        const uint8_t *data = rbuf;
        size_t len = (size_t)n;
        if (nz) {
            plain.len = 0;
            if (sw_noise_feed(nz, rbuf, len, &out, &plain)) { fprintf(stderr, "open: %s\n", sw_noise_err(nz)); exit(1); }
            data = plain.data;
            len = plain.len;
        }
        if (len && sw_bt_wire_feed(&w, data, len, on_ev, &r)) { fprintf(stderr, "wire: %s\n", w.err); exit(1); }
    }
    double secs = wall_s() - t0;
    write_all(fd, (const uint8_t *)"k", 1);
    if (!r.hs || r.got != n_blocks * BLK) { fprintf(stderr, "receiver: %zu bytes, handshake %d\n", r.got, r.hs); exit(1); }
    sw_noise_free(nz);
    sw_bt_wire_free(&w);
    sw_buf_free(&out);
    sw_buf_free(&plain);
    free(rbuf);
    free(r.piece);
    return secs;
}

struct result {
    double secs, cpu_rx, cpu_tx;
};

/* One transfer: the receiver is a child process; it reports its time and CPU through a pipe. */
static struct result run(int private_link, size_t n_blocks)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0), pfd[2];
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof a;
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1) || getsockname(ls, (struct sockaddr *)&a, &al) ||
        pipe(pfd))
        die("listen");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (!pid) {
        close(ls);
        close(pfd[0]);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        tune(fd);
        if (connect(fd, (struct sockaddr *)&a, sizeof a)) die("connect");
        double c0 = cpu_s(), secs = receiver(fd, private_link, n_blocks), rep[2] = { secs, cpu_s() - c0 };
        write_all(pfd[1], (const uint8_t *)rep, sizeof rep);
        _exit(0);
    }
    close(pfd[1]);
    int fd = accept(ls, NULL, NULL);
    if (fd < 0) die("accept");
    close(ls);
    tune(fd);
    double c0 = cpu_s();
    sender(fd, private_link, n_blocks);
    struct result res = { .cpu_tx = cpu_s() - c0 };
    double rep[2];
    if (read(pfd[0], rep, sizeof rep) != (ssize_t)sizeof rep) die("receiver report");
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) { fprintf(stderr, "receiver failed\n"); exit(1); }
    close(fd);
    close(pfd[0]);
    res.secs = rep[0];
    res.cpu_rx = rep[1];
    return res;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void loadavg(char *out, size_t cap)
{
    FILE *f = fopen("/proc/loadavg", "r");
    out[0] = 0;
    if (f) {
        if (!fgets(out, (int)cap, f)) out[0] = 0;
        fclose(f);
    }
    char *sp = out;
    for (int i = 0; i < 3 && sp; i++) sp = strchr(sp + 1, ' ');
    if (sp) *sp = 0;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 1024;
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    if (!mib || reps < 1 || reps > 50) { fprintf(stderr, "usage: bench_noise_link [MiB] [reps]\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    g_pack = getenv("SW_LINK_PACK") && atoi(getenv("SW_LINK_PACK"));
    size_t n_blocks = mib * ((1u << 20) / BLK);
    double mbs[2][50], rx[2][50], tx[2][50], gib = (double)mib / 1024;
    char la[64];
    loadavg(la, sizeof la);
    printf("encrypted link alone: %zu MiB of 16 KiB PIECE messages, loopback TCP, two processes, no disk; "
           "AEAD %s; load average %s\n", mib, sw_noise_aead_name(sw_noise_aeads_local() & SW_NOISE_AESGCM ? SW_NOISE_AESGCM : SW_NOISE_CHACHAPOLY), la);
    for (int r = 0; r < reps; r++)
        for (int m = 0; m < 2; m++) {
            struct result res = run(m, n_blocks);
            mbs[m][r] = (double)n_blocks * BLK / res.secs / 1e6;
            rx[m][r] = res.cpu_rx / gib;
            tx[m][r] = res.cpu_tx / gib;
            printf("  run %d %-7s %7.0f MB/s  sender %.2f, receiver %.2f CPU-s per GiB\n", r + 1, m ? "private" : "plain",
                   mbs[m][r], tx[m][r], rx[m][r]);
            fflush(stdout);
        }
    loadavg(la, sizeof la);
    for (int m = 0; m < 2; m++)
        printf("%-8s median %7.0f MB/s  sender %.2f, receiver %.2f CPU-s per GiB\n", m ? "private" : "plain",
               median(mbs[m], reps), median(tx[m], reps), median(rx[m], reps));
    printf("load average at the end %s\n", la);
    return 0;
}
