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

#endif
