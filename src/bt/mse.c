/* mse.c — the receiving side of BitTorrent Message Stream Encryption (MSE/PE, the
 * "obfuscation" handshake that libtorrent, qBittorrent, Transmission and aria2 try first):
 * Diffie-Hellman over the 768-bit MSE prime, RC4 (first 1024 bytes discarded) for the
 * handshake fields, then the plaintext crypto method for the stream. Lets clients that
 * prefer encryption connect at once instead of after a plaintext retry.
 * Not for: RC4 on the payload stream (we select plaintext; RC4-only peers are refused) or
 * initiating MSE (our outgoing connections are plaintext, which every client accepts
 * unless it requires encryption). A state machine: bytes in, reply bytes out. */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>

#include "bt_int.h"
#include "util/util.h"

/* MSE: P is the 768-bit safe prime of the spec, G = 2. */
static const char mse_p_hex[] =
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E"
    "3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000"
    "000000090563";

#define DH_LEN 96
#define MAX_PAD 512
#define CRYPTO_PLAINTEXT 0x01
#define CRYPTO_RC4 0x02

struct rc4 {
    uint8_t s[256];
    uint8_t i, j;
};

static void rc4_init(struct rc4 *r, const uint8_t *key, size_t n)
{
    for (int k = 0; k < 256; k++) r->s[k] = (uint8_t)k;
    uint8_t j = 0;
    for (int k = 0; k < 256; k++) {
        j = (uint8_t)(j + r->s[k] + key[k % n]);
        uint8_t t = r->s[k];
        r->s[k] = r->s[j];
        r->s[j] = t;
    }
    r->i = r->j = 0;
}

static void rc4_xor(struct rc4 *r, uint8_t *p, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        r->i = (uint8_t)(r->i + 1);
        r->j = (uint8_t)(r->j + r->s[r->i]);
        uint8_t t = r->s[r->i];
        r->s[r->i] = r->s[r->j];
        r->s[r->j] = t;
        p[k] ^= r->s[(uint8_t)(r->s[r->i] + r->s[r->j])];
    }
}

static void rc4_discard(struct rc4 *r, size_t n)
{
    uint8_t junk[256];
    while (n) {
        size_t k = n < sizeof junk ? n : sizeof junk;
        memset(junk, 0, k);
        rc4_xor(r, junk, k);
        n -= k;
    }
}

enum { ST_YA, ST_SYNC, ST_SKEY, ST_VC, ST_PADC, ST_IA, ST_DONE, ST_FAIL };

struct sw__mse {
    int st;
    uint8_t xb[20];
    uint8_t s[DH_LEN];       /* shared secret */
    uint8_t req1[20];
    struct sw_buf in;        /* bytes not consumed yet */
    size_t sync_scanned;
    struct rc4 ka, kb;       /* A->B (decrypt), B->A (encrypt) */
    uint32_t provide;
    uint16_t pad_c, ia_len;
};

static void sha1_cat(uint8_t out[20], const char *tag, const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    struct sw_hash *h = sw_hash_new_sha1();
    if (!h) { memset(out, 0, 20); return; }
    sw_hash_update(h, tag, strlen(tag));
    sw_hash_update(h, a, an);
    if (b) sw_hash_update(h, b, bn);
    sw_hash_final(h, out);
    sw_hash_free(h);
}

/* r = base^exp mod P as 96 big-endian bytes. */
static int modexp(const uint8_t *base, size_t base_len, const uint8_t *exp, size_t exp_len, uint8_t out[DH_LEN])
{
    BN_CTX *ctx = BN_CTX_new();
    BIGNUM *p = NULL, *b = BN_bin2bn(base, (int)base_len, NULL), *e = BN_bin2bn(exp, (int)exp_len, NULL), *r = BN_new();
    int ok = ctx && b && e && r && BN_hex2bn(&p, mse_p_hex) && BN_mod_exp(r, b, e, p, ctx) &&
             BN_bn2binpad(r, out, DH_LEN) == DH_LEN;
    BN_free(p);
    BN_free(b);
    BN_free(e);
    BN_free(r);
    BN_CTX_free(ctx);
    return ok ? 0 : SW_EIO;
}

struct sw__mse *sw__mse_new(void)
{
    struct sw__mse *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    sw_random_bytes(m->xb, sizeof m->xb); /* MSE: a 160-bit private key is enough */
    return m;
}

void sw__mse_free(struct sw__mse *m)
{
    if (!m) return;
    sw_buf_free(&m->in);
    free(m);
}

int sw__mse_feed(struct sw__mse *m, const uint8_t *p, size_t n, struct sw_buf *reply, struct sw_buf *plain,
                 const uint8_t *(*lookup)(void *ud, const uint8_t req2[20]), void *ud)
{
    if (m->st == ST_FAIL) return SW_ECORRUPT;
    if (m->st == ST_DONE) { sw_buf_append(plain, p, n); return 1; }
    if (sw_buf_append(&m->in, p, n)) return SW_ENOMEM;
    if (m->in.len > DH_LEN + MAX_PAD + 20 + 20 + 14 + MAX_PAD + 2 + 65536) { m->st = ST_FAIL; return SW_ETOOBIG; }
    for (;;) {
        uint8_t *d = m->in.data;
        size_t have = m->in.len;
        switch (m->st) {
        case ST_YA: {
            if (have < DH_LEN) return 0;
            /* 1. A->B: Ya, PadA.  2. B->A: Yb, PadB. */
            static const uint8_t two = 2;
            uint8_t yb[DH_LEN];
            if (modexp(&two, 1, m->xb, 20, yb) || modexp(d, DH_LEN, m->xb, 20, m->s)) { m->st = ST_FAIL; return SW_EIO; }
            sw_buf_append(reply, yb, DH_LEN);
            uint8_t padb[64];
            uint8_t padn;
            sw_random_bytes(&padn, 1);
            sw_random_bytes(padb, sizeof padb);
            sw_buf_append(reply, padb, padn % sizeof padb);
            sha1_cat(m->req1, "req1", m->s, DH_LEN, NULL, 0);
            sw_buf_consume(&m->in, DH_LEN);
            m->st = ST_SYNC;
            m->sync_scanned = 0;
            break;
        }
        case ST_SYNC: {
            /* 3. A->B: HASH('req1', S) after up to 512 bytes of PadA: find it. */
            size_t found = SIZE_MAX;
            for (size_t k = 0; k + 20 <= have && k <= MAX_PAD; k++)
                if (!memcmp(d + k, m->req1, 20)) { found = k; break; }
            if (found == SIZE_MAX) {
                if (have >= MAX_PAD + 20) { m->st = ST_FAIL; return SW_ECORRUPT; }
                return 0;
            }
            sw_buf_consume(&m->in, found + 20);
            m->st = ST_SKEY;
            break;
        }
        case ST_SKEY: {
            /* HASH('req2', SKEY) xor HASH('req3', S): SKEY is the info-hash of one of ours. */
            if (have < 20) return 0;
            uint8_t h3[20], req2[20];
            sha1_cat(h3, "req3", m->s, DH_LEN, NULL, 0);
            for (int k = 0; k < 20; k++) req2[k] = d[k] ^ h3[k];
            const uint8_t *skey = lookup(ud, req2);
            if (!skey) { m->st = ST_FAIL; return SW_ENOTFOUND; }
            uint8_t ka[20], kb[20];
            sha1_cat(ka, "keyA", m->s, DH_LEN, skey, 20);
            sha1_cat(kb, "keyB", m->s, DH_LEN, skey, 20);
            rc4_init(&m->ka, ka, 20);
            rc4_init(&m->kb, kb, 20);
            rc4_discard(&m->ka, 1024); /* MSE: the first 1024 bytes of each stream are dropped */
            rc4_discard(&m->kb, 1024);
            sw_buf_consume(&m->in, 20);
            m->st = ST_VC;
            break;
        }
        case ST_VC: {
            /* ENCRYPT(VC, crypto_provide, len(PadC), ...) */
            if (have < 14) return 0;
            uint8_t b[14];
            memcpy(b, d, 14);
            rc4_xor(&m->ka, b, 14);
            static const uint8_t zeros[8];
            if (memcmp(b, zeros, 8)) { m->st = ST_FAIL; return SW_ECORRUPT; }
            m->provide = sw_get_be32(b + 8);
            m->pad_c = sw_get_be16(b + 12);
            if (m->pad_c > MAX_PAD) { m->st = ST_FAIL; return SW_ECORRUPT; }
            sw_buf_consume(&m->in, 14);
            m->st = ST_PADC;
            break;
        }
        case ST_PADC: {
            if (have < (size_t)m->pad_c + 2) return 0;
            rc4_xor(&m->ka, d, (size_t)m->pad_c + 2);
            m->ia_len = sw_get_be16(d + m->pad_c);
            sw_buf_consume(&m->in, (size_t)m->pad_c + 2);
            m->st = ST_IA;
            break;
        }
        case ST_IA: {
            if (have < m->ia_len) return 0;
            if (!(m->provide & CRYPTO_PLAINTEXT)) { m->st = ST_FAIL; return SW_EUNSUPPORTED; } /* RC4-only */
            rc4_xor(&m->ka, d, m->ia_len);
            sw_buf_append(plain, d, m->ia_len); /* IA: usually the BitTorrent handshake */
            /* 4. B->A: ENCRYPT(VC, crypto_select, len(padD), padD): plaintext from here on. */
            uint8_t b[14] = { 0 };
            sw_put_be32(b + 8, CRYPTO_PLAINTEXT);
            sw_put_be16(b + 12, 0);
            rc4_xor(&m->kb, b, 14);
            sw_buf_append(reply, b, 14);
            sw_buf_consume(&m->in, m->ia_len);
            /* 5. A->B payload stream: plaintext (the method we selected). */
            sw_buf_append(plain, m->in.data, m->in.len);
            sw_buf_free(&m->in);
            m->st = ST_DONE;
            return sw_buf_ok(plain) && sw_buf_ok(reply) ? 1 : SW_ENOMEM;
        }
        default:
            return SW_ECORRUPT;
        }
    }
}

/* Test support: the initiator's side, so a unit test can run both ends (no network).
 * Builds step 1 into out and keeps state to answer step 2. */
struct sw__mse_a {
    uint8_t xa[20];
    uint8_t s[DH_LEN];
    struct rc4 ka, kb;
};

struct sw__mse_a *sw__mse_a_new(struct sw_buf *out)
{
    struct sw__mse_a *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    sw_random_bytes(a->xa, 20);
    static const uint8_t two = 2;
    uint8_t ya[DH_LEN];
    if (modexp(&two, 1, a->xa, 20, ya)) { free(a); return NULL; }
    sw_buf_append(out, ya, DH_LEN);
    sw_buf_append(out, "padpad", 6); /* PadA */
    return a;
}

/* Given Yb (first 96 bytes of B's reply), appends step 3 with IA = ia (plaintext offered). */
int sw__mse_a_step3(struct sw__mse_a *a, const uint8_t yb[DH_LEN], const uint8_t skey[20], const uint8_t *ia,
                    uint16_t ia_len, uint32_t provide, struct sw_buf *out)
{
    if (modexp(yb, DH_LEN, a->xa, 20, a->s)) return SW_EIO;
    uint8_t h[20], h2[20], h3[20], ka[20], kb[20];
    sha1_cat(h, "req1", a->s, DH_LEN, NULL, 0);
    sw_buf_append(out, h, 20);
    sha1_cat(h2, "req2", skey, 20, NULL, 0);
    sha1_cat(h3, "req3", a->s, DH_LEN, NULL, 0);
    for (int k = 0; k < 20; k++) h2[k] ^= h3[k];
    sw_buf_append(out, h2, 20);
    sha1_cat(ka, "keyA", a->s, DH_LEN, skey, 20);
    sha1_cat(kb, "keyB", a->s, DH_LEN, skey, 20);
    rc4_init(&a->ka, ka, 20);
    rc4_init(&a->kb, kb, 20);
    rc4_discard(&a->ka, 1024);
    rc4_discard(&a->kb, 1024);
    size_t at = out->len;
    uint8_t b[14 + 3 + 2] = { 0 };
    sw_put_be32(b + 8, provide);
    sw_put_be16(b + 12, 3);          /* PadC: 3 bytes */
    sw_put_be16(b + 17, ia_len);
    sw_buf_append(out, b, sizeof b);
    sw_buf_append(out, ia, ia_len);
    if (!sw_buf_ok(out)) return SW_ENOMEM;
    rc4_xor(&a->ka, out->data + at, out->len - at);
    return 0;
}

/* Decrypts B's step 4 (14 bytes after Yb+PadB, found by trial): returns crypto_select. */
int sw__mse_a_step4(struct sw__mse_a *a, const uint8_t *p, size_t n, size_t *used)
{
    /* PadB is 0..511 bytes: try each offset until VC decrypts to zeros. */
    for (size_t off = 0; off + 14 <= n && off <= MAX_PAD; off++) {
        struct rc4 t = a->kb;
        uint8_t b[14];
        memcpy(b, p + off, 14);
        rc4_xor(&t, b, 14);
        static const uint8_t zeros[8];
        if (!memcmp(b, zeros, 8)) {
            a->kb = t;
            *used = off + 14;
            return (int)sw_get_be32(b + 8);
        }
    }
    return SW_EAGAIN;
}

void sw__mse_a_free(struct sw__mse_a *a)
{
    free(a);
}
