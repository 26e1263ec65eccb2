/* noise.h — private swarms (issue 13 item 1): the swarm key, the Noise handshake and record
 * layer that wraps a member's TCP connection, and the sealed datagrams of the members' DHT.
 * The construction is specified byte by byte in docs/protocol.md:
 *   Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b (Noise rev. 34), psk = the 32-byte swarm key, whose
 *   two payloads negotiate the transport AEAD (the initiator's offer, the responder's choice:
 *   AES-256-GCM when both sides have AES instructions, ChaCha20-Poly1305 otherwise),
 *   then records: 2-byte big-endian length, AEAD ciphertext (counter nonces, rekeyed every
 *   SW_NOISE_REKEY_RECORDS records).
 * No I/O and no event loop: bytes in, bytes out (a filter like mse.c). */
#ifndef SW_NET_NOISE_H
#define SW_NET_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

#define SW_SWARM_KEY_LEN 32
#define SW_NOISE_HS_LEN 49            /* each handshake message: e (32) + 1-byte payload + its tag (16) */
#define SW_NOISE_TAG 16
#define SW_NOISE_MAX_CT 65535u        /* ciphertext bytes of one record, tag included (Noise §3) */
#define SW_NOISE_MAX_PT (SW_NOISE_MAX_CT - SW_NOISE_TAG)
#define SW_NOISE_PROLOGUE "shardswarm private swarm v2"
/* The transport AEADs, as bits of the offer (handshake payload 1) and the choice (payload 2).
 * ChaCha20-Poly1305 is always offered, so two members always have one in common. */
#define SW_NOISE_CHACHAPOLY 0x01u     /* RFC 8439; Noise §12.3 nonce */
#define SW_NOISE_AESGCM 0x02u         /* AES-256-GCM (NIST SP 800-38D); Noise §12.4 nonce */
#define SW_NOISE_AEADS_KNOWN (SW_NOISE_CHACHAPOLY | SW_NOISE_AESGCM)
/* Each direction's key is replaced by Noise's REKEY(k) before records n = R, 2R, 3R...:
 * at most 2^34 AES blocks per key, inside TLS 1.3's AES-GCM margin (docs/protocol.md). */
#define SW_NOISE_REKEY_RECORDS (1ull << 22)
#define SW_DGRAM_OVERHEAD (24 + 16)   /* sealed datagram: XChaCha20 nonce + Poly1305 tag */

/* ------------------------------------------------------------------ the swarm key */

/* Reads a swarm key file: 64 hex digits (what `keygen --swarm` writes; a trailing newline is
 * allowed) or exactly 32 raw bytes. err names what is wrong. */
int sw_swarm_key_load(const char *path, uint8_t key[SW_SWARM_KEY_LEN], char *err, size_t err_len);
/* Writes a fresh random key as hex to path, mode 0600; refuses an existing file unless force. */
int sw_swarm_key_generate(const char *path, int force, char *err, size_t err_len);
/* The info-hash under which a private swarm is announced and looked up in the DHT:
 * the first 20 bytes of BLAKE2b-256(swarm key || info-hash). */
void sw_swarm_dht_infohash(const uint8_t key[SW_SWARM_KEY_LEN], const uint8_t ih[20], uint8_t out[20]);

/* ------------------------------------------------------------------ sealed datagrams (DHT) */

/* The datagram key: BLAKE2b-256 keyed with the swarm key over "shardswarm dht v1". */
void sw_dgram_key(const uint8_t swarm_key[SW_SWARM_KEY_LEN], uint8_t dkey[32]);
/* out = nonce(24) || XChaCha20-Poly1305(dkey, nonce, pt); out_cap >= n + SW_DGRAM_OVERHEAD.
 * Returns the sealed length or 0 when out_cap is too small. */
size_t sw_dgram_seal(const uint8_t dkey[32], const uint8_t *pt, size_t n, uint8_t *out, size_t out_cap);
/* Opens a sealed datagram into out (out_cap >= n - SW_DGRAM_OVERHEAD). Returns the plaintext
 * length, or -1 when the datagram is short or does not authenticate (not a member: drop it). */
long sw_dgram_open(const uint8_t dkey[32], const uint8_t *in, size_t n, uint8_t *out, size_t out_cap);

/* ------------------------------------------------------------------ one connection */

struct sw_noise;

/* The AEADs this machine offers (SW_NOISE_* bits): ChaCha20-Poly1305 always, AES-256-GCM when
 * the CPU has AES and carry-less multiply instructions (x86 AES-NI + PCLMULQDQ, Arm AES +
 * PMULL). SW_NOISE_AEAD=chacha in the environment offers ChaCha20-Poly1305 only (a node
 * without AES, for tests); SW_NOISE_AEAD=aesgcm offers AES-256-GCM even without the
 * instructions. Anything else (or unset) detects. */
unsigned sw_noise_aeads_local(void);
/* "ChaCha20-Poly1305" or "AES-256-GCM" for one SW_NOISE_* bit; "none" otherwise. */
const char *sw_noise_aead_name(unsigned aead);

/* initiator: 1 on the dialling side. The key is copied. Offers sw_noise_aeads_local().
 * NULL on out of memory. */
struct sw_noise *sw_noise_new(const uint8_t psk[SW_SWARM_KEY_LEN], int initiator);
/* The same with the AEADs given (SW_NOISE_* bits; 0 = sw_noise_aeads_local()): an initiator
 * offers them (the low 8 bits, as given: tests send bits a later version may define), a
 * responder chooses among those it knows. */
struct sw_noise *sw_noise_new_aeads(const uint8_t psk[SW_SWARM_KEY_LEN], int initiator, unsigned aeads);
void sw_noise_free(struct sw_noise *nz); /* wipes the keys; NULL harmless */
/* Initiator: appends handshake message 1 (2-byte length + 48 bytes) to out. */
int sw_noise_start(struct sw_noise *nz, struct sw_buf *out);
/* Feeds bytes read from the peer. Handshake message 2 (responder) goes to `out`; decrypted
 * transport bytes are appended to `plain`. Returns 0, or < 0 with sw_noise_err() set: the
 * connection must be closed (a non-member's first message, a tampered or reordered record,
 * a record length outside what the protocol allows). Input is bounded: at most one record
 * (2 + 65535 bytes) is ever buffered. */
int sw_noise_feed(struct sw_noise *nz, const uint8_t *in, size_t n, struct sw_buf *out, struct sw_buf *plain);
/* 1 once both handshake messages were exchanged (transport keys split). */
int sw_noise_ready(const struct sw_noise *nz);
/* The transport AEAD chosen in the handshake (one SW_NOISE_* bit); 0 before it is ready. */
unsigned sw_noise_aead(const struct sw_noise *nz);
const char *sw_noise_err(const struct sw_noise *nz);
/* Seals n plaintext bytes (any n) as records of at most SW_NOISE_MAX_PT bytes, appended to out. */
int sw_noise_seal(struct sw_noise *nz, const uint8_t *pt, size_t n, struct sw_buf *out);
/* Seals a || b (alen + blen <= SW_NOISE_MAX_PT) as ONE record written at dst, which has room
 * for 2 + alen + blen + 16 bytes. Returns the bytes written, 0 when too long. The piece path:
 * a block header and the block taken from the storage map, sealed into a pooled buffer. */
size_t sw_noise_seal2(struct sw_noise *nz, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, uint8_t *dst);
/* Seals the concatenation of n_parts buffers as records (each at most SW_NOISE_MAX_PT bytes of
 * plaintext) at dst, which has room for sw_noise_sealed_len(total). Returns bytes written (0
 * when nothing to seal or not ready). No copy first: the parts are sealed from where they
 * lie into dst (which must not overlap them). */
size_t sw_noise_sealv(struct sw_noise *nz, const uint8_t *const *part, const size_t *part_len, int n_parts, uint8_t *dst);
/* Size of the records sealing n plaintext bytes. */
size_t sw_noise_sealed_len(size_t n);

/* Handshake only, for tests and the spec: the handshake hash after both messages (64 bytes),
 * equal on both sides of one connection (Noise channel binding). */
const uint8_t *sw_noise_handshake_hash(const struct sw_noise *nz);

#endif
