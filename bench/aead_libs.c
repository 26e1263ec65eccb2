/* aead_libs.c — bench_aead_libs: why the private swarm's records run on libgcrypt
 * (docs/protocol.md, Choices): seal + open of one record with OpenSSL 3.0's EVP (what the
 * records used before 2026-12-08) and with libgcrypt (src/net/noise.c now), for AES-256-GCM
 * and ChaCha20-Poly1305, the two libraries interleaved call by call so both see the same
 * load. Every record's bytes and tag are compared between the libraries.
 * Printed per AEAD and record size: the median of N seal + open pairs, CPU time of the thread.
 * usage: bench_aead_libs [N, default 3000] */
#include <gcrypt.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum { MAXN = 65536, TAG = 16 };

int main(int argc, char **argv)
{
    int n_iter = argc > 1 ? atoi(argv[1]) : 3000;
    if (n_iter < 1 || n_iter > 1000000) { fprintf(stderr, "usage: bench_aead_libs [N]\n"); return 2; }
    if (!gcry_check_version("1.8.0")) { fprintf(stderr, "libgcrypt too old\n"); return 1; }
    gcry_control(GCRYCTL_DISABLE_SECMEM, 0);
    gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
    static uint8_t pt[MAXN], ct_g[MAXN + TAG], ct_o[MAXN + TAG], back[MAXN];
    uint8_t key[32], iv[12] = { 0 };
    for (int i = 0; i < 32; i++) key[i] = (uint8_t)(i * 29 + 3);
    for (int i = 0; i < MAXN; i++) pt[i] = (uint8_t)(i * 7);
    double *tg = malloc(sizeof *tg * (size_t)n_iter), *to = malloc(sizeof *to * (size_t)n_iter);
    if (!tg || !to) return 1;
    struct { const char *name; int algo, mode; const EVP_CIPHER *evp; } aead[2] = {
        { "AES-256-GCM", GCRY_CIPHER_AES256, GCRY_CIPHER_MODE_GCM, EVP_aes_256_gcm() },
        { "ChaCha20-Poly1305", GCRY_CIPHER_CHACHA20, GCRY_CIPHER_MODE_POLY1305, EVP_chacha20_poly1305() },
    };
    size_t sizes[] = { 16, 512, 8192, 16384, 65536 };
    printf("seal + open of one record, median of %d, CPU time (us)\n", n_iter);
    printf("%-18s %6s %12s %12s\n", "AEAD", "bytes", "OpenSSL EVP", "libgcrypt");
    for (int a = 0; a < 2; a++) {
        gcry_cipher_hd_t ge, gd;
        EVP_CIPHER_CTX *oe = EVP_CIPHER_CTX_new(), *od = EVP_CIPHER_CTX_new();
        if (gcry_cipher_open(&ge, aead[a].algo, aead[a].mode, 0) || gcry_cipher_open(&gd, aead[a].algo, aead[a].mode, 0) ||
            gcry_cipher_setkey(ge, key, 32) || gcry_cipher_setkey(gd, key, 32) || !oe || !od ||
            EVP_EncryptInit_ex(oe, aead[a].evp, NULL, key, NULL) != 1 || EVP_DecryptInit_ex(od, aead[a].evp, NULL, key, NULL) != 1) {
            fprintf(stderr, "%s: cannot set up\n", aead[a].name);
            return 1;
        }
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            size_t n = sizes[s];
            for (int k = 0; k < n_iter; k++) {
                iv[11] = (uint8_t)k;
                iv[10] = (uint8_t)(k >> 8);
                double t0 = now_s();
                int bad = gcry_cipher_setiv(ge, iv, 12) || gcry_cipher_encrypt(ge, ct_g, n, pt, n) ||
                          gcry_cipher_gettag(ge, ct_g + n, TAG) || gcry_cipher_setiv(gd, iv, 12) ||
                          gcry_cipher_decrypt(gd, back, n, ct_g, n) || gcry_cipher_checktag(gd, ct_g + n, TAG);
                double t1 = now_s();
                int ol = 0, fl = 0;
                bad |= EVP_EncryptInit_ex(oe, NULL, NULL, NULL, iv) != 1 || EVP_EncryptUpdate(oe, ct_o, &ol, pt, (int)n) != 1 ||
                       EVP_EncryptFinal_ex(oe, ct_o + n, &fl) != 1 ||
                       EVP_CIPHER_CTX_ctrl(oe, EVP_CTRL_AEAD_GET_TAG, TAG, ct_o + n) != 1 ||
                       EVP_DecryptInit_ex(od, NULL, NULL, NULL, iv) != 1 || EVP_DecryptUpdate(od, back, &ol, ct_o, (int)n) != 1 ||
                       EVP_CIPHER_CTX_ctrl(od, EVP_CTRL_AEAD_SET_TAG, TAG, ct_o + n) != 1 ||
                       EVP_DecryptFinal_ex(od, back + ol, &fl) != 1;
                double t2 = now_s();
                if (bad || memcmp(ct_g, ct_o, n + TAG)) {
                    fprintf(stderr, "%s, %zu bytes: the libraries disagree or fail\n", aead[a].name, n);
                    return 1;
                }
                tg[k] = t1 - t0;
                to[k] = t2 - t1;
            }
            qsort(tg, (size_t)n_iter, sizeof *tg, cmp_d);
            qsort(to, (size_t)n_iter, sizeof *to, cmp_d);
            printf("%-18s %6zu %12.2f %12.2f\n", aead[a].name, n, to[n_iter / 2] * 1e6, tg[n_iter / 2] * 1e6);
        }
        gcry_cipher_close(ge);
        gcry_cipher_close(gd);
        EVP_CIPHER_CTX_free(oe);
        EVP_CIPHER_CTX_free(od);
    }
    free(tg);
    free(to);
    return 0;
}
