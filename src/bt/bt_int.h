/* bt_int.h — internal helpers shared by the files of src/bt (not API: see bt.h). */
#ifndef SW_BT_INT_H
#define SW_BT_INT_H

#include <stddef.h>
#include <stdint.h>

void sw__strv_free(char **v, uint32_t n);
/* Appends a copy of s[0..len) unless already present. */
int sw__strv_add(char ***v, uint32_t *n, const char *s, size_t len);

static inline int sw__bit_get(const uint8_t *bits, uint32_t i) { return (bits[i >> 3] >> (7 - (i & 7))) & 1; }
static inline void sw__bit_set(uint8_t *bits, uint32_t i) { bits[i >> 3] |= (uint8_t)(0x80u >> (i & 7)); }
static inline void sw__bit_clear(uint8_t *bits, uint32_t i) { bits[i >> 3] &= (uint8_t)~(0x80u >> (i & 7)); }

/* mse.c: the receiving side of Message Stream Encryption (plaintext stream selected). */
struct sw_buf;
struct sw__mse;
struct sw__mse *sw__mse_new(void);
void sw__mse_free(struct sw__mse *m);
/* Feeds received bytes; appends what to send to reply and decrypted/plain payload to plain.
 * lookup maps HASH('req2', info_hash) to one of our info-hashes (NULL: unknown).
 * Returns 0 (need more), 1 (done: later bytes are plaintext), or < 0 (close). */
int sw__mse_feed(struct sw__mse *m, const uint8_t *p, size_t n, struct sw_buf *reply, struct sw_buf *plain,
                 const uint8_t *(*lookup)(void *ud, const uint8_t req2[20]), void *ud);
/* Initiator side, for tests. */
struct sw__mse_a;
struct sw__mse_a *sw__mse_a_new(struct sw_buf *out);
int sw__mse_a_step3(struct sw__mse_a *a, const uint8_t yb[96], const uint8_t skey[20], const uint8_t *ia,
                    uint16_t ia_len, uint32_t provide, struct sw_buf *out);
int sw__mse_a_step4(struct sw__mse_a *a, const uint8_t *p, size_t n, size_t *used);
void sw__mse_a_free(struct sw__mse_a *a);

#endif
