/* fuzz_noise.c — the private-swarm handshake and record parser (src/net/noise.c) on any bytes:
 * never crash, never buffer more than one record, never deliver plaintext that was not
 * sealed by the peer. The first byte picks the mode (its low 2 bits) and, for modes 2 and 3,
 * the transport AEAD (bit 7: AES-256-GCM, else ChaCha20-Poly1305):
 *   0: the bytes are what a stranger sends a private node (responder before message 1);
 *   1: the bytes are what a responder answers our message 1 (initiator before message 2);
 *   2: the bytes arrive on an established connection (record parser);
 *   3: the bytes are sealed by a real peer, one byte (chosen by the input) is flipped unless
 *      the input says not to, and they arrive in chunks whose size the input picks:
 *      untampered they must come out equal; tampered, nothing unsealed may come out (the
 *      connection fails, or waits for bytes when the flip lengthened a record prefix). */
#include <stdlib.h>
#include <string.h>

#include "net/noise.h"

static const uint8_t KEY[32] = { 7 };

static void pair(struct sw_noise **i, struct sw_noise **r, unsigned aead)
{
    struct sw_buf a = { 0 }, b = { 0 }, p = { 0 };
    *i = sw_noise_new_aeads(KEY, 1, aead);
    *r = sw_noise_new_aeads(KEY, 0, aead);
    if (!*i || !*r) abort();
    sw_noise_start(*i, &a);
    if (sw_noise_feed(*r, a.data, a.len, &b, &p) || sw_noise_feed(*i, b.data, b.len, &a, &p)) abort();
    if (!sw_noise_ready(*i) || !sw_noise_ready(*r) || p.len || sw_noise_aead(*i) != aead) abort();
    sw_buf_free(&a);
    sw_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t mode = data[0] % 4;
    unsigned aead = data[0] & 0x80 ? SW_NOISE_AESGCM : SW_NOISE_CHACHAPOLY;
    data++;
    size--;
    struct sw_buf out = { 0 }, plain = { 0 };
    if (mode == 0 || mode == 1) {
        struct sw_noise *nz = sw_noise_new(KEY, mode == 1);
        if (mode == 1) sw_noise_start(nz, &out);
        out.len = 0;
        int rc = sw_noise_feed(nz, data, size, &out, &plain);
        /* a stranger cannot forge message 1 or 2: the key is not in the input */
        if (rc == 0 && sw_noise_ready(nz) && size >= 2 + SW_NOISE_HS_LEN) abort();
        if (plain.len) abort();
        sw_noise_free(nz);
    } else if (mode == 2) {
        struct sw_noise *i, *r;
        pair(&i, &r, aead);
        if (sw_noise_feed(r, data, size, &out, &plain) == 0 && plain.len) abort(); /* forged record */
        sw_noise_free(i);
        sw_noise_free(r);
    } else if (size >= 3) {
        struct sw_noise *i, *r;
        pair(&i, &r, aead);
        size_t chunk = 1 + data[0] % 64 * 997, flip = data[1] | (size_t)data[2] << 8;
        int tamper = data[1] != 0xff;
        struct sw_buf ct = { 0 };
        if (sw_noise_seal(i, data + 3, size - 3, &ct)) abort();
        if (tamper && ct.len) ct.data[flip % ct.len] ^= (uint8_t)(1 + data[2] % 255);
        else tamper = 0;
        int rc = 0;
        for (size_t off = 0; off < ct.len && !rc; off += chunk)
            rc = sw_noise_feed(r, ct.data + off, SW_MIN(chunk, ct.len - off), &out, &plain);
        if (!tamper && (rc || plain.len != size - 3 || (plain.len && memcmp(plain.data, data + 3, plain.len)))) abort();
        /* tampered: never a byte that was not sealed; whatever is delivered is a prefix of
         * the input, and not all of it (a flipped length prefix may leave the parser waiting
         * for bytes that never come: the connection's deadlines end that) */
        if (tamper && (plain.len > size - 3 || (plain.len && memcmp(plain.data, data + 3, plain.len)))) abort();
        if (tamper && !rc && size > 3 && plain.len == size - 3) abort();
        sw_buf_free(&ct);
        sw_noise_free(i);
        sw_noise_free(r);
    }
    sw_buf_free(&out);
    sw_buf_free(&plain);
    return 0;
}
