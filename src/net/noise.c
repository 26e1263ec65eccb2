/* noise.c — Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b on libsodium (The Noise Protocol Framework,
 * revision 34, §5 processing rules, §9 PSK modes, §12 the 25519/ChaChaPoly/BLAKE2b functions)
 * with the transport AEAD negotiated in its payloads, the record layer after it (libgcrypt:
 * AES-256-GCM or ChaCha20-Poly1305), and the sealed datagrams of the members' DHT.
 * docs/protocol.md is the byte-level description; this file follows its names (ck, h, k, n,
 * MixKey...). */
#include "net/noise.h"
#include "net/noise_int.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include <gcrypt.h>
#include <pthread.h>
#include <sodium.h>

#define HASHLEN 64
#define BLOCKLEN 128
#define PROTOCOL_NAME "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b"
#define NONCE_MAX UINT64_MAX /* 2^64-1 is reserved (Noise §5.1): never used */

/* ------------------------------------------------------------------ the hash functions (§4.3, §12.8) */

static void blake2b(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, uint8_t out[HASHLEN])
{
    crypto_generichash_blake2b_state st;
    crypto_generichash_blake2b_init(&st, NULL, 0, HASHLEN);
    crypto_generichash_blake2b_update(&st, a, alen);
    if (blen) crypto_generichash_blake2b_update(&st, b, blen);
    crypto_generichash_blake2b_final(&st, out, HASHLEN);
}

/* HMAC-BLAKE2b (RFC 2104 with BLAKE2b-512, block 128): the key is HASHLEN bytes here. */
static void hmac(const uint8_t key[HASHLEN], const uint8_t *d1, size_t n1, const uint8_t *d2, size_t n2,
                 uint8_t out[HASHLEN])
{
    uint8_t pad[BLOCKLEN], inner[HASHLEN];
    crypto_generichash_blake2b_state st;
    memset(pad, 0x36, sizeof pad);
    for (int i = 0; i < HASHLEN; i++) pad[i] ^= key[i];
    crypto_generichash_blake2b_init(&st, NULL, 0, HASHLEN);
    crypto_generichash_blake2b_update(&st, pad, BLOCKLEN);
    if (n1) crypto_generichash_blake2b_update(&st, d1, n1);
    if (n2) crypto_generichash_blake2b_update(&st, d2, n2);
    crypto_generichash_blake2b_final(&st, inner, HASHLEN);
    memset(pad, 0x5c, sizeof pad);
    for (int i = 0; i < HASHLEN; i++) pad[i] ^= key[i];
    crypto_generichash_blake2b_init(&st, NULL, 0, HASHLEN);
    crypto_generichash_blake2b_update(&st, pad, BLOCKLEN);
    crypto_generichash_blake2b_update(&st, inner, HASHLEN);
    crypto_generichash_blake2b_final(&st, out, HASHLEN);
    sodium_memzero(pad, sizeof pad);
    sodium_memzero(inner, sizeof inner);
}

/* HKDF(chaining_key, ikm, n) of §4.3 for n = 2 or 3. */
static void hkdf(const uint8_t ck[HASHLEN], const uint8_t *ikm, size_t ikm_len, uint8_t o1[HASHLEN],
                 uint8_t o2[HASHLEN], uint8_t *o3)
{
    uint8_t tk[HASHLEN], one = 1, two = 2, three = 3;
    hmac(ck, ikm, ikm_len, NULL, 0, tk);
    hmac(tk, &one, 1, NULL, 0, o1);
    hmac(tk, o1, HASHLEN, &two, 1, o2);
    if (o3) hmac(tk, o2, HASHLEN, &three, 1, o3);
    sodium_memzero(tk, sizeof tk);
}

/* ------------------------------------------------------------------ the transport AEADs */

static int cpu_has_aes_clmul(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul");
#elif defined(__aarch64__) && defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP);
    return (hw & HWCAP_AES) && (hw & HWCAP_PMULL);
#else
    return 0;
#endif
}

unsigned sw_noise_aeads_local(void)
{
    const char *env = getenv("SW_NOISE_AEAD");
    if (env && !strcmp(env, "chacha")) return SW_NOISE_CHACHAPOLY;
    if (env && !strcmp(env, "aesgcm")) return SW_NOISE_CHACHAPOLY | SW_NOISE_AESGCM;
    /* GCM without AES + carry-less multiply runs slower software (GHASH from tables): ChaCha20 wins */
    return SW_NOISE_CHACHAPOLY | (cpu_has_aes_clmul() ? SW_NOISE_AESGCM : 0);
}

const char *sw_noise_aead_name(unsigned aead)
{
    return aead == SW_NOISE_AESGCM ? "AES-256-GCM" : aead == SW_NOISE_CHACHAPOLY ? "ChaCha20-Poly1305" : "none";
}

/* libgcrypt is initialised once per process: no secure-memory pool (the transport keys live
 * in our own memory, wiped on close; gcry_cipher_close wipes the handle's key schedule). */
static pthread_once_t gcry_once = PTHREAD_ONCE_INIT;
static int gcry_ok;

static void gcry_init_once(void)
{
    if (!gcry_check_version("1.8.0")) return; /* ChaCha20-Poly1305 with 12-byte nonces: 1.7 */
    if (!gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P)) {
        gcry_control(GCRYCTL_DISABLE_SECMEM, 0);
        gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
    }
    gcry_ok = 1;
}

/* ------------------------------------------------------------------ CipherState (§5.1) */

/* The handshake's CipherState is ChaChaPoly on libsodium (hd NULL). The transport's two run
 * the negotiated AEAD through libgcrypt: the same RFC 8439 / SP 800-38D bytes as OpenSSL's
 * (tests/net/test_noise.c opens records with OpenSSL), with less work per call and per byte:
 * libgcrypt 1.10 uses the CPU's VAES/VPCLMULQDQ where OpenSSL 3.0 wants AVX-512 for them.
 * About 1.5x OpenSSL 3.0's AES-256-GCM on Zen 3 — docs/protocol.md, Measurements. */
struct cipher {
    uint8_t k[32];
    uint64_t n;
    int has_key;
    unsigned aead;          /* SW_NOISE_CHACHAPOLY or SW_NOISE_AESGCM */
    gcry_cipher_hd_t hd;
};

static void cs_clear(struct cipher *c)
{
    if (c->hd) gcry_cipher_close(c->hd); /* wipes the handle's key schedule */
    sodium_memzero(c, sizeof *c);
}

static int cs_transport_init(struct cipher *c, unsigned aead)
{
    pthread_once(&gcry_once, gcry_init_once);
    if (!gcry_ok) return SW_EIO;
    c->aead = aead;
    int algo = aead == SW_NOISE_AESGCM ? GCRY_CIPHER_AES256 : GCRY_CIPHER_CHACHA20;
    int mode = aead == SW_NOISE_AESGCM ? GCRY_CIPHER_MODE_GCM : GCRY_CIPHER_MODE_POLY1305;
    if (gcry_cipher_open(&c->hd, algo, mode, 0)) {
        c->hd = NULL;
        return SW_ENOMEM;
    }
    return gcry_cipher_setkey(c->hd, c->k, 32) ? SW_EIO : 0;
}

static void nonce12(unsigned aead, uint64_t n, uint8_t out[12])
{
    memset(out, 0, 4);
    if (aead == SW_NOISE_AESGCM) /* §12.4: 32 bits of zeros, then n big-endian */
        for (int i = 0; i < 8; i++) out[4 + i] = (uint8_t)(n >> (56 - 8 * i));
    else /* §12.3: 32 bits of zeros, then n little-endian */
        for (int i = 0; i < 8; i++) out[4 + i] = (uint8_t)(n >> (8 * i));
}

/* REKEY(k), Noise §4.2's default: k = the first 32 bytes of ENCRYPT(k, 2^64-1, "", 32 zeros).
 * The same on the sealing and the opening side; the handle is then keyed with the new k. */
static int cs_rekey(struct cipher *c)
{
    uint8_t zeros[32] = { 0 }, nk[32], nonce[12];
    nonce12(c->aead, NONCE_MAX, nonce);
    int ok = !gcry_cipher_setiv(c->hd, nonce, 12) && !gcry_cipher_encrypt(c->hd, nk, 32, zeros, 32);
    if (ok) {
        memcpy(c->k, nk, 32);
        ok = !gcry_cipher_setkey(c->hd, c->k, 32);
    }
    sodium_memzero(nk, sizeof nk);
    return ok ? 0 : SW_EIO;
}

/* Before a transport record is sealed or opened with nonce n: the limit (2^64-1 is reserved,
 * §5.1), the rekey before n = R, 2R, ... (R = SW_NOISE_REKEY_RECORDS; both sides count the
 * same records, so they rekey together), then the nonce. */
static int cs_next(struct cipher *c, uint8_t nonce[12])
{
    if (c->n == NONCE_MAX) return SW_ERANGE;
    if (c->n && c->n % SW_NOISE_REKEY_RECORDS == 0 && cs_rekey(c)) return SW_EIO;
    nonce12(c->aead, c->n, nonce);
    return 0;
}

/* The handshake's ENCRYPT (libsodium ChaChaPoly): out = ENCRYPT(k, n, ad, p), p copied first. */
static void cs_encrypt(struct cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *p, size_t plen, uint8_t *out)
{
    uint8_t nonce[12];
    nonce12(SW_NOISE_CHACHAPOLY, c->n, nonce);
    if (plen) memmove(out, p, plen);
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(out, out + plen, NULL, out, plen, ad, adlen, NULL, nonce, c->k);
    c->n++;
}

static int cs_decrypt_hs(struct cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *ct, size_t ctlen, uint8_t *out)
{
    uint8_t nonce[12];
    nonce12(SW_NOISE_CHACHAPOLY, c->n, nonce);
    if (ctlen < SW_NOISE_TAG || crypto_aead_chacha20poly1305_ietf_decrypt_detached(
                                    out, NULL, ct, ctlen - SW_NOISE_TAG, ct + ctlen - SW_NOISE_TAG, ad, adlen, nonce, c->k))
        return SW_ECORRUPT;
    c->n++;
    return 0;
}

/* A transport record: out = DECRYPT(k, n, "", ct). SW_ERANGE when the counter is spent. */
static int cs_open(struct cipher *c, const uint8_t *ct, size_t ctlen, uint8_t *out)
{
    uint8_t nonce[12];
    int rc = cs_next(c, nonce);
    if (rc) return rc;
    size_t n = ctlen - SW_NOISE_TAG;
    /* gcry_cipher_checktag compares in constant time; a record that fails leaves the handle
     * needing a fresh nonce, and the connection is closed anyway */
    if (gcry_cipher_setiv(c->hd, nonce, 12) || gcry_cipher_final(c->hd) || gcry_cipher_decrypt(c->hd, out, n, ct, n) ||
        gcry_cipher_checktag(c->hd, ct + n, SW_NOISE_TAG))
        return SW_ECORRUPT; /* out may hold unauthenticated bytes: the caller drops them */
    c->n++;
    return 0;
}

/* ------------------------------------------------------------------ SymmetricState (§5.2) */

struct sym {
    uint8_t ck[HASHLEN], h[HASHLEN];
    struct cipher c;
};

static void mix_hash(struct sym *s, const uint8_t *d, size_t n)
{
    blake2b(s->h, HASHLEN, d, n, s->h);
}

static void mix_key(struct sym *s, const uint8_t *ikm, size_t n)
{
    uint8_t tk[HASHLEN];
    hkdf(s->ck, ikm, n, s->ck, tk, NULL);
    memcpy(s->c.k, tk, 32); /* HASHLEN 64: truncated to 32 (§5.2) */
    s->c.n = 0;
    s->c.has_key = 1;
    sodium_memzero(tk, sizeof tk);
}

static void mix_key_and_hash(struct sym *s, const uint8_t *ikm, size_t n)
{
    uint8_t th[HASHLEN], tk[HASHLEN];
    hkdf(s->ck, ikm, n, s->ck, th, tk);
    mix_hash(s, th, HASHLEN);
    memcpy(s->c.k, tk, 32);
    s->c.n = 0;
    s->c.has_key = 1;
    sodium_memzero(tk, sizeof tk);
    sodium_memzero(th, sizeof th);
}

/* EncryptAndHash / DecryptAndHash of the 1-byte payload (the offer, the choice): 1 + 16 bytes. */
#define PAYLOAD_CT (1 + SW_NOISE_TAG)

static void encrypt_and_hash_byte(struct sym *s, uint8_t b, uint8_t ct[PAYLOAD_CT])
{
    cs_encrypt(&s->c, s->h, HASHLEN, &b, 1, ct);
    mix_hash(s, ct, PAYLOAD_CT);
}

static int decrypt_and_hash_byte(struct sym *s, const uint8_t ct[PAYLOAD_CT], uint8_t *b)
{
    if (cs_decrypt_hs(&s->c, s->h, HASHLEN, ct, PAYLOAD_CT, b)) return SW_ECORRUPT;
    mix_hash(s, ct, PAYLOAD_CT);
    return 0;
}

/* ------------------------------------------------------------------ the connection */

enum { ST_SEND1, ST_WAIT1, ST_WAIT2, ST_READY, ST_DEAD };

struct sw_noise {
    int initiator, state;
    unsigned aeads;          /* initiator: what it offers; responder: what it may choose */
    int forced_choice;       /* tests (sw__noise_force_choice): the responder's answer, or -1 */
    uint8_t psk[32];
    struct sym ss;
    uint8_t e_sk[32], e_pk[32];
    struct cipher tx, rx;
    uint8_t hh[HASHLEN];     /* handshake hash, kept after Split for channel binding */
    uint8_t hdr[2];          /* a record's length prefix being read */
    size_t hdr_have;
    uint32_t want;           /* ciphertext length of the record being read (0: reading its prefix) */
    uint8_t *part;           /* a record split across reads (up to SW_NOISE_MAX_CT bytes) */
    size_t part_have;
    char err[160];
};

static void sym_init(struct sym *s)
{
    /* InitializeSymmetric(protocol_name): the name is <= HASHLEN, so h = name zero-padded. */
    memset(s->h, 0, HASHLEN);
    memcpy(s->h, PROTOCOL_NAME, sizeof PROTOCOL_NAME - 1);
    memcpy(s->ck, s->h, HASHLEN);
    s->c.has_key = 0;
    s->c.n = 0;
    mix_hash(s, (const uint8_t *)SW_NOISE_PROLOGUE, sizeof SW_NOISE_PROLOGUE - 1);
}

struct sw_noise *sw_noise_new_aeads(const uint8_t psk[SW_SWARM_KEY_LEN], int initiator, unsigned aeads)
{
    if (sodium_init() < 0) return NULL;
    struct sw_noise *nz = calloc(1, sizeof *nz);
    if (!nz) return NULL;
    nz->initiator = initiator ? 1 : 0;
    nz->aeads = (aeads ? aeads : sw_noise_aeads_local()) & 0xffu;
    nz->forced_choice = -1;
    nz->state = initiator ? ST_SEND1 : ST_WAIT1;
    memcpy(nz->psk, psk, 32);
    sym_init(&nz->ss);
    randombytes_buf(nz->e_sk, 32);
    crypto_scalarmult_base(nz->e_pk, nz->e_sk);
    return nz;
}

struct sw_noise *sw_noise_new(const uint8_t psk[SW_SWARM_KEY_LEN], int initiator)
{
    return sw_noise_new_aeads(psk, initiator, 0);
}

void sw_noise_free(struct sw_noise *nz)
{
    if (!nz) return;
    free(nz->part);
    cs_clear(&nz->tx);
    cs_clear(&nz->rx);
    sodium_memzero(nz, sizeof *nz);
    free(nz);
}

int sw_noise_ready(const struct sw_noise *nz) { return nz->state == ST_READY; }
unsigned sw_noise_aead(const struct sw_noise *nz) { return nz->state == ST_READY ? nz->tx.aead : 0; }
const char *sw_noise_err(const struct sw_noise *nz) { return nz->err[0] ? nz->err : "no error"; }
const uint8_t *sw_noise_handshake_hash(const struct sw_noise *nz) { return nz->hh; }

static int fail(struct sw_noise *nz, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct sw_noise *nz, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(nz->err, sizeof nz->err, fmt, ap);
    va_end(ap);
    nz->state = ST_DEAD;
    cs_clear(&nz->tx);
    cs_clear(&nz->rx);
    return rc;
}

/* Split() (§5.2): c1 carries initiator -> responder, c2 the other way; both run the chosen
 * AEAD with the 32-byte keys Split gives (docs/protocol.md: the negotiation extension). */
static int split(struct sw_noise *nz, unsigned aead)
{
    uint8_t k1[HASHLEN], k2[HASHLEN];
    hkdf(nz->ss.ck, NULL, 0, k1, k2, NULL);
    struct cipher *c1 = nz->initiator ? &nz->tx : &nz->rx, *c2 = nz->initiator ? &nz->rx : &nz->tx;
    memcpy(c1->k, k1, 32);
    memcpy(c2->k, k2, 32);
    c1->n = c2->n = 0;
    c1->has_key = c2->has_key = 1;
    memcpy(nz->hh, nz->ss.h, HASHLEN);
    sodium_memzero(k1, sizeof k1);
    sodium_memzero(k2, sizeof k2);
    sodium_memzero(&nz->ss, sizeof nz->ss);
    sodium_memzero(nz->e_sk, sizeof nz->e_sk);
    sodium_memzero(nz->psk, sizeof nz->psk);
    if (cs_transport_init(&nz->tx, aead) || cs_transport_init(&nz->rx, aead))
        return fail(nz, SW_ENOMEM, "cannot set up the transport cipher (%s)", sw_noise_aead_name(aead));
    nz->state = ST_READY;
    return 0;
}

/* The "e" token in a PSK handshake: MixHash(e.pub) then MixKey(e.pub) (§9.2). */
static void token_e(struct sym *s, const uint8_t pk[32])
{
    mix_hash(s, pk, 32);
    mix_key(s, pk, 32);
}

int sw_noise_start(struct sw_noise *nz, struct sw_buf *out)
{
    if (!nz->initiator || nz->state != ST_SEND1) return SW_EINVAL;
    /* -> psk, e; payload: the offer */
    uint8_t msg[2 + SW_NOISE_HS_LEN];
    sw_put_be16(msg, SW_NOISE_HS_LEN);
    mix_key_and_hash(&nz->ss, nz->psk, 32);
    memcpy(msg + 2, nz->e_pk, 32);
    token_e(&nz->ss, nz->e_pk);
    encrypt_and_hash_byte(&nz->ss, (uint8_t)nz->aeads, msg + 2 + 32);
    nz->state = ST_WAIT2;
    return sw_buf_append(out, msg, sizeof msg);
}

/* Responder: message 1 read whole; replies with message 2 and splits. */
static int read_msg1(struct sw_noise *nz, const uint8_t m[SW_NOISE_HS_LEN], struct sw_buf *out)
{
    mix_key_and_hash(&nz->ss, nz->psk, 32);
    token_e(&nz->ss, m);
    uint8_t offer = 0;
    if (decrypt_and_hash_byte(&nz->ss, m + 32, &offer))
        return fail(nz, SW_EPERM, "refused: the first handshake message does not authenticate (the peer does not hold "
                                  "this swarm's key)");
    /* The choice: AES-256-GCM when both offer it, else ChaCha20-Poly1305. Offer bits this
     * version does not know are ignored (room for another AEAD; the offer is authenticated). */
    unsigned common = offer & nz->aeads & SW_NOISE_AEADS_KNOWN;
    unsigned aead = common & SW_NOISE_AESGCM ? SW_NOISE_AESGCM : common & SW_NOISE_CHACHAPOLY ? SW_NOISE_CHACHAPOLY : 0;
    uint8_t choice = nz->forced_choice >= 0 ? (uint8_t)nz->forced_choice : (uint8_t)aead;
    if (!aead && nz->forced_choice < 0)
        return fail(nz, SW_EPERM, "refused: no transport cipher in common (the peer offers 0x%02x, we take 0x%02x)",
                    offer, nz->aeads);
    /* <- e, ee; payload: the choice */
    uint8_t msg[2 + SW_NOISE_HS_LEN], dh[32];
    sw_put_be16(msg, SW_NOISE_HS_LEN);
    memcpy(msg + 2, nz->e_pk, 32);
    token_e(&nz->ss, nz->e_pk);
    if (crypto_scalarmult(dh, nz->e_sk, m)) return fail(nz, SW_EPERM, "refused: the peer's ephemeral key is degenerate");
    mix_key(&nz->ss, dh, 32);
    sodium_memzero(dh, sizeof dh);
    encrypt_and_hash_byte(&nz->ss, choice, msg + 2 + 32);
    if (split(nz, aead ? aead : SW_NOISE_CHACHAPOLY)) return SW_ENOMEM;
    return sw_buf_append(out, msg, sizeof msg);
}

static int read_msg2(struct sw_noise *nz, const uint8_t m[SW_NOISE_HS_LEN])
{
    uint8_t dh[32];
    token_e(&nz->ss, m);
    if (crypto_scalarmult(dh, nz->e_sk, m)) return fail(nz, SW_EPERM, "refused: the peer's ephemeral key is degenerate");
    mix_key(&nz->ss, dh, 32);
    sodium_memzero(dh, sizeof dh);
    uint8_t choice = 0;
    if (decrypt_and_hash_byte(&nz->ss, m + 32, &choice))
        return fail(nz, SW_EPERM, "refused: the handshake reply does not authenticate (the peer does not hold this "
                                  "swarm's key)");
    /* exactly one AEAD, and one we offered */
    if ((choice != SW_NOISE_CHACHAPOLY && choice != SW_NOISE_AESGCM) || !(choice & nz->aeads))
        return fail(nz, SW_EPERM, "refused: the peer chose transport cipher 0x%02x, which we did not offer (0x%02x)",
                    choice, nz->aeads);
    return split(nz, choice);
}

static int open_record(struct sw_noise *nz, const uint8_t *ct, size_t len, struct sw_buf *plain)
{
    if (sw_buf_reserve(plain, len - SW_NOISE_TAG)) return fail(nz, SW_ENOMEM, "out of memory");
    int rc = cs_open(&nz->rx, ct, len, plain->data + plain->len);
    if (rc == SW_ERANGE) return fail(nz, SW_ERANGE, "the peer sent more records than the 64-bit counter allows");
    if (rc == SW_EIO) return fail(nz, SW_EIO, "the receive key could not be renewed (REKEY)");
    if (rc)
        return fail(nz, SW_ECORRUPT, "record %llu does not authenticate (tampered, reordered or not from this session)",
                    (unsigned long long)nz->rx.n);
    plain->len += len - SW_NOISE_TAG;
    return 0;
}

int sw_noise_feed(struct sw_noise *nz, const uint8_t *in, size_t n, struct sw_buf *out, struct sw_buf *plain)
{
    if (nz->state == ST_DEAD) return SW_ECORRUPT;
    if (nz->state == ST_SEND1) return fail(nz, SW_ECORRUPT, "bytes from the peer before our first handshake message");
    while (n) {
        /* the length prefix: handshake messages and records alike */
        if (!nz->want) {
            size_t take = SW_MIN(n, 2 - nz->hdr_have);
            memcpy(nz->hdr + nz->hdr_have, in, take);
            nz->hdr_have += take;
            in += take;
            n -= take;
            if (nz->hdr_have < 2) break;
            nz->hdr_have = 0;
            uint32_t len = (uint32_t)nz->hdr[0] << 8 | nz->hdr[1];
            if (nz->state != ST_READY) {
                if (len != SW_NOISE_HS_LEN)
                    return fail(nz, SW_EPERM,
                                "refused: %s is not a private-swarm handshake (length %u, expected %u): the peer is not a "
                                "member, or speaks plain BitTorrent",
                                nz->state == ST_WAIT1 ? "the first message" : "the reply", len, SW_NOISE_HS_LEN);
            } else if (len < SW_NOISE_TAG) {
                return fail(nz, SW_ECORRUPT, "record length %u is below the 16-byte tag", len);
            }
            nz->want = len;
            nz->part_have = 0;
            continue;
        }
        const uint8_t *rec = NULL;
        if (!nz->part_have && n >= nz->want) {
            rec = in; /* whole in this read: opened in place of the input, no copy */
        } else {
            if (!nz->part) {
                nz->part = malloc(SW_NOISE_MAX_CT);
                if (!nz->part) return fail(nz, SW_ENOMEM, "out of memory");
            }
            size_t take = SW_MIN(n, nz->want - nz->part_have);
            memcpy(nz->part + nz->part_have, in, take);
            nz->part_have += take;
            in += take;
            n -= take;
            if (nz->part_have < nz->want) break;
            rec = nz->part;
        }
        size_t len = nz->want;
        if (rec == in) {
            in += len;
            n -= len;
        }
        nz->want = 0;
        nz->part_have = 0;
        int rc;
        if (nz->state == ST_WAIT1) rc = read_msg1(nz, rec, out);
        else if (nz->state == ST_WAIT2) rc = read_msg2(nz, rec);
        else rc = open_record(nz, rec, len, plain);
        if (rc) return rc;
    }
    return 0;
}

size_t sw_noise_sealed_len(size_t n)
{
    size_t full = n / SW_NOISE_MAX_PT, rest = n % SW_NOISE_MAX_PT;
    return full * (2 + SW_NOISE_MAX_CT) + (rest ? 2 + rest + SW_NOISE_TAG : 0);
}

/* One record's plaintext taken from the parts, from (*pi, *po) on, take bytes: sealed straight
 * from the parts into rec + 2 (out of place, no copy first), tag after it. libgcrypt's AEAD
 * streams, so a record may span parts at any byte. */
static int seal_parts(struct cipher *c, const uint8_t *const *part, const size_t *part_len, int *pi, size_t *po,
                      size_t take, uint8_t *ct)
{
    uint8_t nonce[12];
    int rc = cs_next(c, nonce);
    if (rc) return rc;
    if (gcry_cipher_setiv(c->hd, nonce, 12)) return SW_EIO;
    size_t got = 0;
    while (got < take) {
        size_t n = SW_MIN(take - got, part_len[*pi] - *po);
        if (n && gcry_cipher_encrypt(c->hd, ct + got, n, part[*pi] + *po, n)) return SW_EIO;
        got += n;
        *po += n;
        if (*po == part_len[*pi]) { (*pi)++; *po = 0; }
    }
    if (gcry_cipher_gettag(c->hd, ct + take, SW_NOISE_TAG)) return SW_EIO;
    c->n++;
    return 0;
}

size_t sw_noise_sealv(struct sw_noise *nz, const uint8_t *const *part, const size_t *part_len, int n_parts, uint8_t *dst)
{
    if (nz->state != ST_READY || !nz->tx.hd) return 0;
    size_t total = 0;
    for (int i = 0; i < n_parts; i++) total += part_len[i];
    /* Each record: its length prefix, then the parts' bytes sealed from where they are. */
    size_t w = 0, left = total, po = 0;
    int pi = 0;
    while (left) {
        size_t take = SW_MIN(left, (size_t)SW_NOISE_MAX_PT);
        uint8_t *rec = dst + w;
        sw_put_be16(rec, (uint16_t)(take + SW_NOISE_TAG));
        int rc = seal_parts(&nz->tx, part, part_len, &pi, &po, take, rec + 2);
        if (rc) { /* the send side is spent or broken: nothing more goes out on this link */
            fail(nz, rc, rc == SW_ERANGE ? "the send counter is spent (2^64-1 records)" : "sealing failed");
            return 0;
        }
        w += 2 + take + SW_NOISE_TAG;
        left -= take;
    }
    return w;
}

size_t sw_noise_seal2(struct sw_noise *nz, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, uint8_t *dst)
{
    if (alen + blen > SW_NOISE_MAX_PT) return 0;
    const uint8_t *p[2] = { a, b };
    size_t l[2] = { alen, blen };
    return sw_noise_sealv(nz, p, l, 2, dst);
}

int sw_noise_seal(struct sw_noise *nz, const uint8_t *pt, size_t n, struct sw_buf *out)
{
    if (nz->state != ST_READY) return SW_EINVAL;
    if (!n) return 0;
    if (sw_buf_reserve(out, sw_noise_sealed_len(n))) return SW_ENOMEM;
    size_t w = sw_noise_sealv(nz, &pt, &n, 1, out->data + out->len);
    if (!w) return SW_ERANGE;
    out->len += w;
    return 0;
}

/* ------------------------------------------------------------------ test hooks (noise_int.h) */

void sw__noise_force_choice(struct sw_noise *nz, uint8_t choice) { nz->forced_choice = choice; }

void sw__noise_set_nonces(struct sw_noise *nz, uint64_t tx_n, uint64_t rx_n)
{
    nz->tx.n = tx_n;
    nz->rx.n = rx_n;
}

void sw__noise_keys(const struct sw_noise *nz, uint8_t tx[32], uint8_t rx[32])
{
    memcpy(tx, nz->tx.k, 32);
    memcpy(rx, nz->rx.k, 32);
}

/* ------------------------------------------------------------------ sealed datagrams */

void sw_dgram_key(const uint8_t swarm_key[SW_SWARM_KEY_LEN], uint8_t dkey[32])
{
    static const char label[] = "shardswarm dht v1";
    crypto_generichash_blake2b(dkey, 32, (const uint8_t *)label, sizeof label - 1, swarm_key, SW_SWARM_KEY_LEN);
}

size_t sw_dgram_seal(const uint8_t dkey[32], const uint8_t *pt, size_t n, uint8_t *out, size_t out_cap)
{
    if (out_cap < n + SW_DGRAM_OVERHEAD) return 0;
    randombytes_buf(out, 24);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + 24, NULL, pt, n, NULL, 0, NULL, out, dkey);
    return n + SW_DGRAM_OVERHEAD;
}

long sw_dgram_open(const uint8_t dkey[32], const uint8_t *in, size_t n, uint8_t *out, size_t out_cap)
{
    if (n < SW_DGRAM_OVERHEAD || out_cap < n - SW_DGRAM_OVERHEAD) return -1;
    unsigned long long m = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &m, NULL, in + 24, n - 24, NULL, 0, in, dkey)) return -1;
    return (long)m;
}

/* ------------------------------------------------------------------ the swarm key */

void sw_swarm_dht_infohash(const uint8_t key[SW_SWARM_KEY_LEN], const uint8_t ih[20], uint8_t out[20])
{
    uint8_t h[32];
    crypto_generichash_blake2b_state st;
    crypto_generichash_blake2b_init(&st, NULL, 0, 32);
    crypto_generichash_blake2b_update(&st, key, SW_SWARM_KEY_LEN);
    crypto_generichash_blake2b_update(&st, ih, 20);
    crypto_generichash_blake2b_final(&st, h, 32);
    memcpy(out, h, 20);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int sw_swarm_key_load(const char *path, uint8_t key[SW_SWARM_KEY_LEN], char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_len, "%s: cannot open the swarm key (%s)", path, strerror(errno));
        return SW_EIO;
    }
    uint8_t b[80];
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    if (n == SW_SWARM_KEY_LEN) {
        memcpy(key, b, SW_SWARM_KEY_LEN);
        sodium_memzero(b, sizeof b);
        return 0;
    }
    while (n && (b[n - 1] == '\n' || b[n - 1] == '\r')) n--;
    if (n != 2 * SW_SWARM_KEY_LEN) {
        sodium_memzero(b, sizeof b);
        snprintf(err, err_len, "%s: not a swarm key (expected 64 hex digits or 32 bytes; make one with "
                               "`shardswarm keygen --swarm -o FILE`)", path);
        return SW_EINVAL;
    }
    for (int i = 0; i < SW_SWARM_KEY_LEN; i++) {
        int hi = hexval(b[2 * i]), lo = hexval(b[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            sodium_memzero(b, sizeof b);
            snprintf(err, err_len, "%s: not a swarm key (character %d is not a hex digit)", path,
                     hi < 0 ? 2 * i + 1 : 2 * i + 2);
            return SW_EINVAL;
        }
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    sodium_memzero(b, sizeof b);
    return 0;
}

int sw_swarm_key_generate(const char *path, int force, char *err, size_t err_len)
{
    if (sodium_init() < 0) {
        snprintf(err, err_len, "libsodium failed to initialise");
        return SW_EIO;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | (force ? 0 : O_EXCL) | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, err_len, errno == EEXIST ? "%s exists; not overwriting a swarm key (use --force)"
                                               : "%s: cannot write the swarm key (%s)",
                 path, strerror(errno));
        return errno == EEXIST ? SW_EEXIST : SW_EIO;
    }
    fchmod(fd, 0600); /* an existing file overwritten with --force gets the mode too */
    uint8_t key[SW_SWARM_KEY_LEN];
    char hex[2 * SW_SWARM_KEY_LEN + 2];
    randombytes_buf(key, sizeof key);
    sodium_bin2hex(hex, sizeof hex, key, sizeof key);
    hex[2 * SW_SWARM_KEY_LEN] = '\n';
    ssize_t w = write(fd, hex, 2 * SW_SWARM_KEY_LEN + 1);
    int crc = close(fd);
    sodium_memzero(key, sizeof key);
    sodium_memzero(hex, sizeof hex);
    if (w != 2 * SW_SWARM_KEY_LEN + 1 || crc) {
        snprintf(err, err_len, "%s: cannot write the swarm key (%s)", path, strerror(errno));
        return SW_EIO;
    }
    return 0;
}
