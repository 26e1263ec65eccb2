/* hash.c — SHA-1 (BitTorrent pieces, info-hashes), SHA-256 (manifests), hex, randomness.
 * OpenSSL's libcrypto does the hashing: its SHA code is the fastest packaged for Debian. */
#include "util.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>

struct sw_hash {
    EVP_MD_CTX *ctx;
    const EVP_MD *md;
};

void sw_sha1(const void *p, size_t n, uint8_t out[20])
{
    unsigned len = 20;
    EVP_Digest(p, n, out, &len, EVP_sha1(), NULL);
}

void sw_sha256(const void *p, size_t n, uint8_t out[32])
{
    unsigned len = 32;
    EVP_Digest(p, n, out, &len, EVP_sha256(), NULL);
}

static struct sw_hash *hash_new(const EVP_MD *md)
{
    struct sw_hash *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->md = md;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || !EVP_DigestInit_ex(h->ctx, md, NULL)) {
        EVP_MD_CTX_free(h->ctx);
        free(h);
        return NULL;
    }
    return h;
}

struct sw_hash *sw_hash_new_sha1(void) { return hash_new(EVP_sha1()); }
struct sw_hash *sw_hash_new_sha256(void) { return hash_new(EVP_sha256()); }

void sw_hash_update(struct sw_hash *h, const void *p, size_t n) { EVP_DigestUpdate(h->ctx, p, n); }

void sw_hash_final(struct sw_hash *h, uint8_t *out)
{
    unsigned len = 0;
    EVP_DigestFinal_ex(h->ctx, out, &len);
    EVP_DigestInit_ex(h->ctx, h->md, NULL);
}

void sw_hash_free(struct sw_hash *h)
{
    if (!h) return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

int sw_sha256_file(const char *path, uint8_t out[32])
{
    FILE *f = fopen(path, "rb");
    if (!f) return SW_ENOTFOUND;
    struct sw_hash *h = sw_hash_new_sha256();
    uint8_t *buf = malloc(1 << 20);
    if (!h || !buf) {
        fclose(f);
        sw_hash_free(h);
        free(buf);
        return SW_ENOMEM;
    }
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, 1 << 20, f)) > 0) sw_hash_update(h, buf, n);
    if (ferror(f)) rc = SW_EIO;
    else sw_hash_final(h, out);
    fclose(f);
    sw_hash_free(h);
    free(buf);
    return rc;
}

void sw_hex_encode(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int sw_hex_decode(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!hex[2 * i] || !hex[2 * i + 1]) return SW_ECORRUPT;
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return SW_ECORRUPT;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return hex[2 * n] == 0 ? 0 : SW_ECORRUPT;
}

void sw_random_bytes(void *p, size_t n)
{
    if (RAND_bytes(p, (int)n) != 1) abort(); /* no safe fallback for key material */
}
