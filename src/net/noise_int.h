/* noise_int.h — test hooks into one private-swarm connection (src/net/noise.c): what a test
 * needs to play a rogue member, reach the rekey and nonce limits without sealing 2^23
 * records, and check the record format against an independent AEAD. Not API. */
#ifndef SW_NET_NOISE_INT_H
#define SW_NET_NOISE_INT_H

#include "net/noise.h"

/* Responder: answers message 1 with this choice (any byte, offered or not), as a member
 * that holds the key but breaks the negotiation rule would. */
void sw__noise_force_choice(struct sw_noise *nz, uint8_t choice);
/* Ready connection: sets the counters of the next record to seal (tx) and to open (rx). Keys
 * are not touched: a REKEY happens when a record with n a multiple of
 * SW_NOISE_REKEY_RECORDS is sealed or opened. */
void sw__noise_set_nonces(struct sw_noise *nz, uint64_t tx_n, uint64_t rx_n);
/* Ready connection: the current 32-byte keys of each direction. */
void sw__noise_keys(const struct sw_noise *nz, uint8_t tx[32], uint8_t rx[32]);

#endif
