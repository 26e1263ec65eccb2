/* noise.h — private swarms (issue 13 item 1): the swarm key, the Noise handshake and record
 * layer that wraps a member's TCP connection, and the sealed datagrams of the members' DHT.
 * The construction is specified byte by byte in docs/protocol.md:
 *   Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b (Noise rev. 34), psk = the 32-byte swarm key,
 *   then records: 2-byte big-endian length, ChaCha20-Poly1305 ciphertext (counter nonces).
 * No I/O and no event loop: bytes in, bytes out (a filter like mse.c). */
#ifndef SW_NET_NOISE_H
#define SW_NET_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

#define SW_SWARM_KEY_LEN 32
#define SW_NOISE_HS_LEN 48            /* each handshake message: e (32) + empty payload's tag (16) */
#define SW_NOISE_TAG 16
#define SW_NOISE_MAX_CT 65535u        /* ciphertext bytes of one record, tag included (Noise §3) */
#define SW_NOISE_MAX_PT (SW_NOISE_MAX_CT - SW_NOISE_TAG)
#define SW_NOISE_PROLOGUE "shardswarm private swarm v1"
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

/* initiator: 1 on the dialling side. The key is copied. NULL on out of memory. */
struct sw_noise *sw_noise_new(const uint8_t psk[SW_SWARM_KEY_LEN], int initiator);
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
