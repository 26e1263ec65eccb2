/* prefix.c — the prefix cache of a compute stage: block hashes, lookup of the longest
 * cached prefix, keeping closed sessions' sequences, LRU eviction. See prefix.h.
 * Not for: the budget decisions (pipeline_stage.c decides when to evict for a session). */
#include "swarm/prefix.h"

#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "util/util.h"

struct pentry {
    uint64_t seq;                    /* the stage sequence (an id of ours) */
    struct sw_stage *st;
    uint8_t scope[SW_NODE_ID_LEN];   /* the entry node */
    uint8_t dtype;
    uint32_t n_blocks;
    uint8_t *hashes;                 /* n_blocks x SW_PREFIX_HASH_LEN */
    uint64_t bytes;
    uint64_t used;                   /* LRU tick */
};

struct sw_prefix {
    struct pentry *e;
    uint32_t n, max;
    uint64_t tick, bytes, evictions;
};

uint32_t sw_prefix_hashes(const int32_t *ids, uint32_t n, uint8_t *out, uint32_t max_blocks)
{
    uint32_t nb = SW_MIN(n / SW_PREFIX_BLOCK, max_blocks);
    uint8_t buf[SW_PREFIX_HASH_LEN + 4 * SW_PREFIX_BLOCK], h[32];
    memset(buf, 0, SW_PREFIX_HASH_LEN);
    for (uint32_t b = 0; b < nb; b++) {
        for (uint32_t i = 0; i < SW_PREFIX_BLOCK; i++)
            sw_put_be32(buf + SW_PREFIX_HASH_LEN + 4 * i, (uint32_t)ids[b * SW_PREFIX_BLOCK + i]);
        sw_sha256(buf, sizeof buf, h);
        memcpy(out + (size_t)b * SW_PREFIX_HASH_LEN, h, SW_PREFIX_HASH_LEN);
        memcpy(buf, h, SW_PREFIX_HASH_LEN);
    }
    return nb;
}

struct sw_prefix *sw_prefix_new(uint32_t max_entries)
{
    struct sw_prefix *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->max = max_entries ? max_entries : SW_PREFIX_DEFAULT_ENTRIES;
    c->e = calloc(c->max, sizeof *c->e);
    if (!c->e) {
        free(c);
        return NULL;
    }
    return c;
}

/* Removes entry i; frees its sequence when its stage is alive (free_seq). */
static void drop(struct sw_prefix *c, uint32_t i, int free_seq)
{
    struct pentry *x = &c->e[i];
    if (free_seq && x->st) sw_stage_seq_free(x->st, x->seq);
    free(x->hashes);
    c->bytes -= SW_MIN(c->bytes, x->bytes);
    c->e[i] = c->e[--c->n];
    memset(&c->e[c->n], 0, sizeof c->e[c->n]);
}

void sw_prefix_clear(struct sw_prefix *c, struct sw_stage *st)
{
    if (!c) return;
    for (uint32_t i = c->n; i-- > 0;)
        if (!st || c->e[i].st == st) drop(c, i, 1);
}

void sw_prefix_free(struct sw_prefix *c)
{
    if (!c) return;
    sw_prefix_clear(c, NULL);
    free(c->e);
    free(c);
}

static int same_scope(const struct pentry *x, const struct sw_stage *st, const uint8_t *scope, uint8_t dtype)
{
    return x->st == st && x->dtype == dtype && !memcmp(x->scope, scope, SW_NODE_ID_LEN);
}

/* Blocks x and hashes[0..n) share: the chain makes "equal at block i" mean "equal up to
 * block i", so the answer is the last equal block + 1, found by bisection. */
static uint32_t shared_blocks(const struct pentry *x, const uint8_t *hashes, uint32_t n)
{
    uint32_t lo = 0, hi = SW_MIN(n, x->n_blocks); /* lo blocks known equal; hi the most */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2; /* is block mid-1 equal? */
        if (!memcmp(x->hashes + (size_t)(mid - 1) * SW_PREFIX_HASH_LEN, hashes + (size_t)(mid - 1) * SW_PREFIX_HASH_LEN,
                    SW_PREFIX_HASH_LEN))
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

uint32_t sw_prefix_lookup(struct sw_prefix *c, struct sw_stage *st, const uint8_t scope[SW_NODE_ID_LEN],
                          uint8_t dtype, const uint8_t *hashes, uint32_t n_blocks, uint64_t *seq_out)
{
    if (!c || !st) return 0;
    for (uint32_t i = c->n; i-- > 0;)
        if (c->e[i].st != st) drop(c, i, 0); /* that stage is gone: its memory with it */
    uint32_t best = 0;
    struct pentry *bx = NULL;
    for (uint32_t i = 0; i < c->n; i++) {
        struct pentry *x = &c->e[i];
        if (!same_scope(x, st, scope, dtype)) continue;
        uint32_t m = shared_blocks(x, hashes, n_blocks);
        if (m > best) {
            best = m;
            bx = x;
        }
    }
    if (bx) {
        bx->used = ++c->tick;
        *seq_out = bx->seq;
    }
    return best;
}

int sw_prefix_evict_lru(struct sw_prefix *c)
{
    if (!c || !c->n) return 0;
    uint32_t k = 0;
    for (uint32_t i = 1; i < c->n; i++)
        if (c->e[i].used < c->e[k].used) k = i;
    drop(c, k, 1);
    c->evictions++;
    return 1;
}

int sw_prefix_store(struct sw_prefix *c, struct sw_stage *st, uint64_t seq, const uint8_t scope[SW_NODE_ID_LEN],
                    uint8_t dtype, const uint8_t *hashes, uint32_t n_blocks)
{
    if (!c || !st || !n_blocks || n_blocks > SW_PREFIX_MAX_BLOCKS) return SW_EINVAL;
    /* an entry that this one extends (the previous turn of the same chat) is no longer needed;
     * one that extends this one already holds all of it */
    for (uint32_t i = c->n; i-- > 0;) {
        struct pentry *x = &c->e[i];
        if (!same_scope(x, st, scope, dtype)) continue;
        uint32_t m = shared_blocks(x, hashes, n_blocks);
        if (m == x->n_blocks) drop(c, i, 1);
        else if (m == n_blocks) return SW_EEXIST;
    }
    while (c->n >= c->max) sw_prefix_evict_lru(c);
    struct pentry x = { .st = st, .dtype = dtype, .n_blocks = n_blocks, .used = ++c->tick };
    memcpy(x.scope, scope, SW_NODE_ID_LEN);
    x.hashes = malloc((size_t)n_blocks * SW_PREFIX_HASH_LEN);
    if (!x.hashes) return SW_ENOMEM;
    memcpy(x.hashes, hashes, (size_t)n_blocks * SW_PREFIX_HASH_LEN);
    int rc;
    do {
        sw_random_bytes(&x.seq, sizeof x.seq);
        rc = sw_stage_seq_rename(st, seq, x.seq);
    } while (rc == SW_EEXIST);
    if (rc) {
        free(x.hashes);
        return rc;
    }
    x.bytes = sw_stage_seq_bytes(st, x.seq);
    c->bytes += x.bytes;
    c->e[c->n++] = x;
    return 0;
}

uint64_t sw_prefix_bytes(const struct sw_prefix *c) { return c ? c->bytes : 0; }
uint32_t sw_prefix_count(const struct sw_prefix *c) { return c ? c->n : 0; }
uint64_t sw_prefix_evictions(const struct sw_prefix *c) { return c ? c->evictions : 0; }
