/* dht_table.c — what a DHT node knows and keeps: the routing table (BEP 5 k-buckets with
 * splitting and replacement caches), write tokens, the peers and BEP 44 items stored here,
 * and the per-IP rate limit on queries. Not for: messages in or out (dht.c, dht_lookup.c). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "dht_int.h"

/* ------------------------------------------------------------------ routing table */

static int common_prefix(const uint8_t *a, const uint8_t *b)
{
    for (int i = 0; i < SW_DHT_ID_LEN; i++) {
        uint8_t x = a[i] ^ b[i];
        if (x) return i * 8 + __builtin_clz((unsigned)x) - 24;
    }
    return 160;
}

static int bucket_of(const struct sw_dht *d, const uint8_t *id)
{
    int cp = common_prefix(id, d->id);
    return cp < d->nb - 1 ? cp : d->nb - 1;
}

static struct rnode *rt_find(struct sw_dht *d, const uint8_t *id, int *bi_out)
{
    int bi = bucket_of(d, id);
    struct bucket *bk = &d->b[bi];
    if (bi_out) *bi_out = bi;
    for (int i = 0; i < bk->count; i++)
        if (!memcmp(bk->n[i].id, id, SW_DHT_ID_LEN)) return &bk->n[i];
    return NULL;
}

/* BEP 5: only the bucket whose range holds our own id splits. */
static int split_last(struct sw_dht *d)
{
    if (d->nb >= MAX_BUCKETS) return 0;
    if (d->nb == d->b_cap) {
        int cap = d->b_cap * 2 > MAX_BUCKETS ? MAX_BUCKETS : d->b_cap * 2;
        struct bucket *nb = realloc(d->b, (size_t)cap * sizeof *nb);
        if (!nb) return 0;
        d->b = nb;
        d->b_cap = cap;
    }
    int li = d->nb - 1;
    struct bucket *old = &d->b[li], *nw = &d->b[li + 1];
    memset(nw, 0, sizeof *nw);
    nw->last_changed = old->last_changed;
    struct bucket keep;
    memset(&keep, 0, sizeof keep);
    keep.last_changed = old->last_changed;
    for (int i = 0; i < old->count; i++) {
        struct bucket *to = common_prefix(old->n[i].id, d->id) > li ? nw : &keep;
        to->n[to->count++] = old->n[i];
    }
    for (int i = 0; i < old->n_repl; i++) {
        struct bucket *to = common_prefix(old->repl[i].id, d->id) > li ? nw : &keep;
        to->repl[to->n_repl++] = old->repl[i];
    }
    *old = keep;
    d->nb++;
    return 1;
}

static void repl_add(struct bucket *bk, const struct rnode *n)
{
    for (int i = 0; i < bk->n_repl; i++)
        if (!memcmp(bk->repl[i].id, n->id, SW_DHT_ID_LEN)) {
            bk->repl[i] = *n;
            return;
        }
    if (bk->n_repl == REPL_PER_BUCKET) {
        memmove(&bk->repl[0], &bk->repl[1], (REPL_PER_BUCKET - 1) * sizeof bk->repl[0]);
        bk->n_repl--;
    }
    bk->repl[bk->n_repl++] = *n;
}

/* We heard from a node: `replied` when it answered one of our queries. */
void sw__dht_rt_heard(struct sw_dht *d, const uint8_t *id, const struct sw_dht_addr *addr, int replied,
                      uint64_t now)
{
    if (!memcmp(id, d->id, SW_DHT_ID_LEN) || addr->family != d->cfg.family || addr->port == 0) return;
    int bi;
    struct rnode *n = rt_find(d, id, &bi);
    if (n) {
        if (!sw_dht_addr_eq(&n->addr, addr)) {
            /* Same id from another address: keep the known one unless it went bad. */
            if (!sw__dht_node_bad(n) && n->last_reply && now - n->last_seen < GOOD_MS) return;
            n->addr = *addr;
        }
        n->last_seen = now;
        if (replied) {
            n->last_reply = now;
            n->fails = 0;
            d->b[bi].last_changed = now;
        }
        return;
    }
    struct rnode nn;
    memset(&nn, 0, sizeof nn);
    memcpy(nn.id, id, SW_DHT_ID_LEN);
    nn.addr = *addr;
    nn.last_seen = now;
    nn.last_reply = replied ? now : 0;
    for (;;) {
        struct bucket *bk = &d->b[bi];
        if (bk->count < SW_DHT_K) {
            if (!replied) nn.last_ping = now;
            bk->n[bk->count++] = nn;
            bk->last_changed = now;
            if (!replied) sw__dht_send_ping(d, addr, P_PING, id, now); /* verify a querier */
            return;
        }
        if (bi == d->nb - 1 && split_last(d)) {
            bi = bucket_of(d, id);
            continue;
        }
        /* Full: replace a bad node, else keep it as a replacement and probe the stalest. */
        for (int i = 0; i < bk->count; i++)
            if (sw__dht_node_bad(&bk->n[i])) {
                if (!replied) nn.last_ping = now;
                bk->n[i] = nn;
                bk->last_changed = now;
                if (!replied) sw__dht_send_ping(d, addr, P_PING, id, now);
                return;
            }
        if (replied) repl_add(bk, &nn);
        struct rnode *stale = NULL;
        for (int i = 0; i < bk->count; i++) {
            struct rnode *c = &bk->n[i];
            if (!sw__dht_node_good(c, now) && now - c->last_ping >= PING_AGAIN_MS &&
                (!stale || c->last_seen < stale->last_seen))
                stale = c;
        }
        if (stale) {
            stale->last_ping = now;
            sw__dht_send_ping(d, &stale->addr, P_PING, stale->id, now);
        }
        return;
    }
}

void sw__dht_rt_failed(struct sw_dht *d, const uint8_t *id)
{
    int bi;
    struct rnode *n = rt_find(d, id, &bi);
    if (!n) return;
    if (n->fails < 255) n->fails++;
    struct bucket *bk = &d->b[bi];
    if (sw__dht_node_bad(n) && bk->n_repl) {
        /* Swap in the newest replacement (it answered us recently). */
        *n = bk->repl[--bk->n_repl];
    }
}

/* The `max` closest non-bad, verified nodes to target. */
int sw__dht_rt_closest(struct sw_dht *d, const uint8_t *target, struct rnode **out, int max, int verified_only)
{
    int n = 0;
    for (int bi = 0; bi < d->nb; bi++) {
        struct bucket *bk = &d->b[bi];
        for (int i = 0; i < bk->count; i++) {
            struct rnode *c = &bk->n[i];
            if (sw__dht_node_bad(c) || (verified_only && !c->last_reply)) continue;
            int pos = n;
            while (pos > 0 && sw__dht_xor_cmp(target, c->id, out[pos - 1]->id) < 0) pos--;
            if (pos >= max) continue;
            int last = n < max ? n : max - 1;
            memmove(&out[pos + 1], &out[pos], (size_t)(last - pos) * sizeof out[0]);
            out[pos] = c;
            if (n < max) n++;
        }
    }
    return n;
}

uint32_t sw__dht_rt_count(const struct sw_dht *d, uint32_t *good_out, uint64_t now)
{
    uint32_t n = 0, g = 0;
    for (int bi = 0; bi < d->nb; bi++)
        for (int i = 0; i < d->b[bi].count; i++) {
            n++;
            if (sw__dht_node_good(&d->b[bi].n[i], now)) g++;
        }
    if (good_out) *good_out = g;
    return n;
}

void sw__dht_enc_nodes(struct sw_dht *d, struct sw_buf *b, const uint8_t *target)
{
    struct rnode *cl[SW_DHT_K];
    int n = sw__dht_rt_closest(d, target, cl, SW_DHT_K, 1);
    uint8_t buf[SW_DHT_K * 38];
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        memcpy(buf + len, cl[i]->id, SW_DHT_ID_LEN);
        len += SW_DHT_ID_LEN;
        len += sw__compact_addr(&cl[i]->addr, buf + len);
    }
    /* BEP 5 "nodes" (26 bytes each) or BEP 32 "nodes6" (38 bytes each). */
    sw__dht_benc_key(b, d->cfg.family == 6 ? "nodes6" : "nodes");
    sw_benc_str(b, buf, len);
}

/* ------------------------------------------------------------------ tokens */

void sw__dht_make_token(const uint8_t secret[20], const struct sw_dht_addr *a, uint8_t out[TOKEN_LEN])
{
    /* BEP 5: a token is tied to the requester's IP and a secret that rotates. */
    uint8_t buf[20 + 16], h[20];
    memcpy(buf, secret, 20);
    size_t iplen = a->family == 6 ? 16 : 4;
    memcpy(buf + 20, a->ip, iplen);
    sw_sha1(buf, 20 + iplen, h);
    memcpy(out, h, TOKEN_LEN);
}

int sw__dht_token_ok(const struct sw_dht *d, const struct sw_dht_addr *a, const uint8_t *tok, size_t len)
{
    uint8_t t[TOKEN_LEN];
    if (len != TOKEN_LEN) return 0;
    sw__dht_make_token(d->secret, a, t);
    if (!memcmp(t, tok, TOKEN_LEN)) return 1;
    sw__dht_make_token(d->prev_secret, a, t); /* the previous secret is still accepted */
    return !memcmp(t, tok, TOKEN_LEN);
}

/* ------------------------------------------------------------------ storage */

struct phash *sw__dht_hash_find(struct sw_dht *d, const uint8_t *ih)
{
    for (uint32_t i = 0; i < d->n_hashes; i++)
        if (!memcmp(d->hashes[i].ih, ih, SW_DHT_ID_LEN)) return &d->hashes[i];
    return NULL;
}

int sw__dht_store_peer(struct sw_dht *d, const uint8_t *ih, const struct sw_dht_addr *a, uint64_t now)
{
    struct phash *h = sw__dht_hash_find(d, ih);
    if (!h) {
        if (d->n_hashes >= d->cfg.max_hashes) return SW_ENOSPC;
        if ((d->n_hashes & (d->n_hashes - 1)) == 0) {
            uint32_t cap = d->n_hashes ? d->n_hashes * 2 : 4;
            struct phash *nh = realloc(d->hashes, cap * sizeof *nh);
            if (!nh) return SW_ENOMEM;
            d->hashes = nh;
        }
        h = &d->hashes[d->n_hashes++];
        memset(h, 0, sizeof *h);
        memcpy(h->ih, ih, SW_DHT_ID_LEN);
    }
    uint64_t exp = now + d->cfg.peer_ttl_ms;
    for (uint32_t i = 0; i < h->n; i++)
        if (sw_dht_addr_eq(&h->p[i].a, a)) {
            h->p[i].expires = exp;
            return 0;
        }
    if (h->n >= d->cfg.max_peers_per_hash) {
        /* Cap reached: the announcement closest to expiry gives way. */
        uint32_t old = 0;
        for (uint32_t i = 1; i < h->n; i++)
            if (h->p[i].expires < h->p[old].expires) old = i;
        h->p[old].a = *a;
        h->p[old].expires = exp;
        return 0;
    }
    if (h->n == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 4;
        if (cap > d->cfg.max_peers_per_hash) cap = d->cfg.max_peers_per_hash;
        struct speer *np = realloc(h->p, cap * sizeof *np);
        if (!np) return SW_ENOMEM;
        h->p = np;
        h->cap = cap;
    }
    h->p[h->n].a = *a;
    h->p[h->n].expires = exp;
    h->n++;
    return 0;
}

struct sitem *sw__dht_item_find(struct sw_dht *d, const uint8_t *target)
{
    for (uint32_t i = 0; i < d->n_items; i++)
        if (!memcmp(d->items[i]->target, target, SW_DHT_ID_LEN)) return d->items[i];
    return NULL;
}

static struct sitem *item_slot(struct sw_dht *d, const uint8_t *target)
{
    struct sitem *it = sw__dht_item_find(d, target);
    if (it) return it;
    if (d->n_items >= d->cfg.max_items) {
        /* Full: the item closest to expiry gives way. */
        uint32_t old = 0;
        for (uint32_t i = 1; i < d->n_items; i++)
            if (d->items[i]->expires < d->items[old]->expires) old = i;
        it = d->items[old];
    } else {
        if ((d->n_items & (d->n_items - 1)) == 0) {
            uint32_t cap = d->n_items ? d->n_items * 2 : 4;
            struct sitem **ni = realloc(d->items, cap * sizeof *ni);
            if (!ni) return NULL;
            d->items = ni;
        }
        it = malloc(sizeof *it);
        if (!it) return NULL;
        d->items[d->n_items++] = it;
    }
    memset(it, 0, offsetof(struct sitem, v));
    memcpy(it->target, target, SW_DHT_ID_LEN);
    return it;
}

/* BEP 44 store rules; returns 0 or a KRPC error code with msg set. */
int sw__dht_item_put(struct sw_dht *d, const uint8_t *target, const uint8_t *v, size_t v_len,
                     const uint8_t *k, const uint8_t *sig, const uint8_t *salt, size_t salt_len,
                     int has_seq, int64_t seq, int has_cas, int64_t cas, uint64_t now, const char **msg)
{
    if (!v || v_len == 0) { *msg = "missing v"; return 203; }
    if (v_len > SW_DHT_MAX_VALUE) { *msg = "message (v field) too big"; return 205; }
    if (!k) {
        uint8_t t[SW_DHT_ID_LEN];
        sw_dht_immutable_target(v, v_len, t);
        if (target && memcmp(t, target, SW_DHT_ID_LEN)) { *msg = "target mismatch"; return 203; }
        struct sitem *it = item_slot(d, t);
        if (!it) { *msg = "out of memory"; return 202; }
        memcpy(it->v, v, v_len);
        it->v_len = v_len;
        it->expires = now + d->cfg.item_ttl_ms;
        return 0;
    }
    if (salt_len > SW_DHT_MAX_SALT) { *msg = "salt (salt field) too big"; return 207; }
    if (!sig || !has_seq) { *msg = "missing sig or seq"; return 203; }
    uint8_t t[SW_DHT_ID_LEN];
    sw_dht_mutable_target(k, salt, salt_len, t);
    if (target && memcmp(t, target, SW_DHT_ID_LEN)) { *msg = "target mismatch"; return 203; }
    if (sw_dht_item_verify(k, salt, salt_len, seq, v, v_len, sig)) { *msg = "invalid signature"; return 206; }
    struct sitem *old = sw__dht_item_find(d, t);
    if (old) {
        /* BEP 44: cas must match the stored seq; a lower seq never replaces a higher one. */
        if (has_cas && cas != old->seq) { *msg = "the CAS hash mismatched, re-read value and try again"; return 301; }
        if (seq < old->seq) { *msg = "sequence number less than current"; return 302; }
        if (seq == old->seq && (old->v_len != v_len || memcmp(old->v, v, v_len))) {
            *msg = "sequence number less than current";
            return 302;
        }
    }
    struct sitem *it = item_slot(d, t);
    if (!it) { *msg = "out of memory"; return 202; }
    it->is_mutable = 1;
    memcpy(it->k, k, 32);
    memcpy(it->sig, sig, 64);
    it->seq = seq;
    if (salt_len) memcpy(it->salt, salt, salt_len);
    it->salt_len = salt_len;
    memcpy(it->v, v, v_len);
    it->v_len = v_len;
    it->expires = now + d->cfg.item_ttl_ms;
    return 0;
}

void sw__dht_expire_storage(struct sw_dht *d, uint64_t now)
{
    for (uint32_t i = 0; i < d->n_hashes;) {
        struct phash *h = &d->hashes[i];
        for (uint32_t j = 0; j < h->n;) {
            if (h->p[j].expires <= now) h->p[j] = h->p[--h->n];
            else j++;
        }
        if (h->n == 0) {
            free(h->p);
            d->hashes[i] = d->hashes[--d->n_hashes];
        } else {
            i++;
        }
    }
    for (uint32_t i = 0; i < d->n_items;) {
        if (d->items[i]->expires <= now) {
            free(d->items[i]);
            d->items[i] = d->items[--d->n_items];
        } else {
            i++;
        }
    }
}

/* ------------------------------------------------------------------ rate limit */

static int ip_eq(const struct sw_dht_addr *a, const struct sw_dht_addr *b)
{
    return a->family == b->family && !memcmp(a->ip, b->ip, a->family == 6 ? 16 : 4);
}

static int is_loopback(const struct sw_dht_addr *a)
{
    static const uint8_t v6_loop[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
    return a->family == 4 ? a->ip[0] == 127 : !memcmp(a->ip, v6_loop, 16);
}

int sw__dht_rate_ok(struct sw_dht *d, const struct sw_dht_addr *a, uint64_t now)
{
    /* Loopback cannot be spoofed from outside (the kernel drops such packets), and many
     * local nodes share 127.0.0.1 in tests and single-host swarms: not limited. */
    if (is_loopback(a)) return 1;
    size_t iplen = a->family == 6 ? 16 : 4;
    uint32_t x = 2166136261u; /* FNV-1a over the IP */
    for (size_t i = 0; i < iplen; i++) x = (x ^ a->ip[i]) * 16777619u;
    if (!d->rate && !(d->rate = calloc(RATE_SLOTS, sizeof *d->rate))) return 1;
    struct rate *r = &d->rate[x % RATE_SLOTS];
    uint32_t burst = d->cfg.rate_burst * 1000u;
    if (!r->used || !ip_eq(&r->a, a)) {
        r->used = 1;
        r->a = *a;
        r->last_ms = now;
        r->milli_tokens = burst;
    } else {
        uint64_t add = (now - r->last_ms) * d->cfg.rate_qps;
        r->last_ms = now;
        r->milli_tokens = add >= burst || r->milli_tokens + add >= burst ? burst : r->milli_tokens + (uint32_t)add;
    }
    if (r->milli_tokens < 1000) return 0;
    r->milli_tokens -= 1000;
    return 1;
}
