/* prefix.h — the prefix cache of a compute stage (issue 15): KV caches of recent sessions,
 * kept after they close, keyed by their token prefix, so a new session that starts with
 * the same tokens (the next turn of a chat, a shared system prompt) copies those rows
 * instead of computing them.
 *
 * A prefix is named by block hashes: the tokens are cut into blocks of SW_PREFIX_BLOCK, and
 * block i's hash is SHA-256(hash of block i-1 || the block's token ids, big-endian int32),
 * truncated to SW_PREFIX_HASH_LEN bytes (block 0 chains from zeros). So one hash names the
 * whole prefix up to the end of its block, and two prefixes share their first m blocks iff
 * their first m hashes are equal. A stage that takes hidden states never sees the tokens:
 * the entry sends it the hashes (OPEN, CLOSE).
 *
 * Entries are scoped: an entry holds a sequence of one stage, for one entry node (its id)
 * and one wire dtype (f16 hidden states give other KV rows than f32); a lookup only sees
 * entries of its own scope, so a node that sends false hashes only spoils its own sessions.
 * The cache owns the stage sequences of its entries (renamed to random ids), counts their
 * bytes and evicts the least recently used. Single-threaded (the engine's thread); the
 * stage calls it makes take the stage's lock.
 * Not for: the sessions themselves (pipeline_stage.c), the wire (pipeline_wire.c). */
#ifndef SW_PREFIX_H
#define SW_PREFIX_H

#include <stddef.h>
#include <stdint.h>

#include "swarm/swarm.h"

#define SW_PREFIX_BLOCK 16u
#define SW_PREFIX_HASH_LEN 16u
#define SW_PREFIX_MAX_BLOCKS 4096u /* hashes in one message: 64 Ki positions */
#define SW_PREFIX_DEFAULT_ENTRIES 8u

struct sw_stage;
struct sw_prefix;

/* The hashes of the full blocks of ids[0..n), at most max_blocks: writes them to out
 * (SW_PREFIX_HASH_LEN bytes each) and returns how many. */
uint32_t sw_prefix_hashes(const int32_t *ids, uint32_t n, uint8_t *out, uint32_t max_blocks);

/* max_entries 0: SW_PREFIX_DEFAULT_ENTRIES. NULL on oom. */
struct sw_prefix *sw_prefix_new(uint32_t max_entries);
/* Frees the entries' stage sequences (their stages must still be alive) and the cache. */
void sw_prefix_free(struct sw_prefix *c);
/* Drops every entry (freeing its sequence; st NULL: all stages, else only st's). */
void sw_prefix_clear(struct sw_prefix *c, struct sw_stage *st);

/* The longest cached prefix of `hashes` (n blocks) for this stage and scope, as a block
 * count (0: none); *seq_out the stage sequence that holds it. Entries of another stage
 * (the node swapped its shard) are dropped without touching that stage. Marks the entry
 * recently used. */
uint32_t sw_prefix_lookup(struct sw_prefix *c, struct sw_stage *st, const uint8_t scope[SW_NODE_ID_LEN],
                          uint8_t dtype, const uint8_t *hashes, uint32_t n_blocks, uint64_t *seq_out);
/* Keeps stage sequence `seq` (its first n_blocks blocks; the caller checked that it holds
 * them) as an entry: the sequence is renamed to an id of the cache's. Entries of the same
 * scope that are prefixes of it are dropped. 0, or a negative sw_err (the sequence is then
 * left as it was, the caller frees it). */
int sw_prefix_store(struct sw_prefix *c, struct sw_stage *st, uint64_t seq, const uint8_t scope[SW_NODE_ID_LEN],
                    uint8_t dtype, const uint8_t *hashes, uint32_t n_blocks);
/* Evicts the least recently used entry: 1, or 0 when the cache is empty. */
int sw_prefix_evict_lru(struct sw_prefix *c);
uint64_t sw_prefix_bytes(const struct sw_prefix *c);
uint32_t sw_prefix_count(const struct sw_prefix *c);
uint64_t sw_prefix_evictions(const struct sw_prefix *c);

#endif
