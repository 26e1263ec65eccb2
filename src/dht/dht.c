/* dht.c — the mainline DHT state machine: routing table (BEP 5 k-buckets with splitting),
 * KRPC queries and replies, iterative lookups, write tokens, peer and BEP 44 item storage.
 * No sockets and no clocks: bytes and now_ms come in, datagrams and events go out.
 * Not for: I/O (dht_uv.c), key files and signatures (item.c), message decoding (krpc.c). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dht.h"
#include "krpc.h"

#define MAX_BUCKETS 160
#define REPL_PER_BUCKET 4
#define LOOKUP_CAND 64
#define MAX_LOOKUPS 64
#define MAX_PENDING 4096
#define MAX_OUTQ 4096
#define MAX_CONTACTS 32
#define MAX_OWN 256
#define LOOKUP_MAX_PEERS 1024
#define RATE_SLOTS 256                     /* per-IP rate buckets (hashed; a collision resets) */
#define BAD_FAILS 2                        /* BEP 5: bad after failing several queries in a row */
#define GOOD_MS (15u * 60u * 1000u)        /* BEP 5: good if heard from within 15 minutes */
#define REFRESH_MS (15u * 60u * 1000u)     /* BEP 5: refresh a bucket untouched for 15 minutes */
#define TOKEN_ROTATE_MS (5u * 60u * 1000u) /* BEP 5: secret changes every 5 minutes */
#define TICK_MS 5000u
#define SOFT_TIMEOUT_MS 1000u              /* a slow query stops holding an alpha slot */
#define LOOKUP_MAX_MS 60000u
#define BOOT_WAIT_MS 15000u                /* a lookup started before bootstrap waits this long */
#define PING_AGAIN_MS 60000u
#define TOKEN_LEN 8
#define MAX_VALUES_OUT 50                  /* peers per get_peers reply (fits one datagram) */

enum { C_NEW = 0, C_SENT, C_REPLIED, C_FAILED };
enum { P_PING = 1, P_PING_USER, P_CONTACT, P_LOOKUP, P_STORE };

struct rnode {
    uint8_t id[SW_DHT_ID_LEN];
    struct sw_dht_addr addr;
    uint64_t last_seen;  /* any message from it */
    uint64_t last_reply; /* a reply to one of our queries; 0 never (unverified) */
    uint64_t last_ping;
    uint8_t fails;       /* consecutive unanswered queries */
};

struct bucket {
    struct rnode n[SW_DHT_K];
    uint8_t count;
    struct rnode repl[REPL_PER_BUCKET]; /* replacement cache, newest last */
    uint8_t n_repl;
    uint64_t last_changed;
};

struct cand {
    uint8_t id[SW_DHT_ID_LEN];
    struct sw_dht_addr addr;
    uint8_t state, depth, slow, token_len, tries;
    uint8_t token[SW__KRPC_MAX_TOKEN];
    uint64_t sent_ms;
};

struct lookup {
    uint32_t id;
    enum sw_dht_lookup_kind kind;
    int internal; /* bootstrap/refresh/re-announce: no caller events */
    int is_self_lookup;
    uint8_t target[SW_DHT_ID_LEN];
    uint64_t start_ms;
    struct cand c[LOOKUP_CAND];
    int n;
    int phase; /* 0 searching, 1 storing */
    uint32_t n_queries, n_replies, n_peers, n_stored;
    int store_pending;
    uint32_t found_hops;
    uint64_t found_ms;
    struct sw_dht_addr *peers;
    uint32_t peers_cap;
    uint16_t port; /* announce: 0 = implied */
    /* BEP 44 */
    int is_mutable, have_best;
    uint8_t k[32];
    uint8_t salt[SW_DHT_MAX_SALT];
    size_t salt_len;
    int64_t best_seq;
    uint8_t *v; /* put: owned copy */
    size_t v_len;
    int64_t seq, cas;
    uint8_t sig[64];
};

struct pending {
    uint16_t gen;
    uint8_t used, type;
    struct sw_dht_addr addr;
    uint32_t lookup_id;
    uint8_t node_id[SW_DHT_ID_LEN];
    uint64_t deadline;
};

struct outpkt {
    struct sw_dht_addr to;
    uint16_t len;
    uint8_t *data;
};

struct speer {
    struct sw_dht_addr a;
    uint64_t expires;
};

struct phash {
    uint8_t ih[SW_DHT_ID_LEN];
    struct speer *p;
    uint32_t n, cap;
};

struct sitem {
    uint8_t target[SW_DHT_ID_LEN];
    int is_mutable;
    uint8_t k[32];
    uint8_t sig[64];
    int64_t seq;
    uint8_t salt[SW_DHT_MAX_SALT];
    size_t salt_len;
    size_t v_len;
    uint8_t v[SW_DHT_MAX_VALUE];
    uint64_t expires;
};

struct own_announce {
    uint8_t ih[SW_DHT_ID_LEN];
    uint16_t port;
    int persistent;
    uint64_t next_ms;
};

struct own_put {
    struct sitem it;
    uint64_t next_ms;
};

struct rate {
    struct sw_dht_addr a; /* port unused */
    uint64_t last_ms;
    uint32_t milli_tokens;
    uint8_t used;
};

struct sw_dht {
    struct sw_dht_config cfg;
    uint8_t id[SW_DHT_ID_LEN];
    uint8_t ver[4];
    uint64_t rng;
    struct bucket *b;
    int nb, b_cap;
    struct pending *pend;
    uint32_t n_pend, *free_pend, n_free;
    struct lookup *lk[MAX_LOOKUPS];
    uint32_t next_lookup_id;
    struct outpkt *outq;
    uint32_t out_head, out_n, out_cap;
    uint8_t secret[20], prev_secret[20];
    uint64_t secret_ms;
    struct phash *hashes;
    uint32_t n_hashes;
    struct sitem **items;
    uint32_t n_items;
    struct own_announce *own;
    uint32_t n_own;
    struct own_put *puts;
    uint32_t n_puts;
    struct rate *rate;
    struct sw_dht_addr contacts[MAX_CONTACTS];
    int n_contacts;
    uint64_t last_contact_ms;
    int ready;
    uint64_t next_tick, next_expire, next_deadline;
    struct sw_dht_addr ext, ext_cand;
    int has_ext, ext_votes;
    uint64_t last_now;
    uint32_t timeout_override_ms; /* set around one send: a shorter timeout for a retry */
    struct sw_dht_stats st;
};

/* ------------------------------------------------------------------ small helpers */

static uint64_t rnd(struct sw_dht *d)
{
    /* xorshift64*: cheap, deterministic per seed (the simulation replays runs). */
    uint64_t x = d->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    d->rng = x;
    return x * UINT64_C(2685821657736338717);
}

static void rnd_bytes(struct sw_dht *d, uint8_t *p, size_t n)
{
    while (n) {
        uint64_t r = rnd(d);
        size_t c = n < 8 ? n : 8;
        memcpy(p, &r, c);
        p += c;
        n -= c;
    }
}

/* <0 when a is closer to t than b (XOR metric, BEP 5), 0 equal, >0 farther. */
static int xor_cmp(const uint8_t *t, const uint8_t *a, const uint8_t *b)
{
    for (int i = 0; i < SW_DHT_ID_LEN; i++) {
        uint8_t da = a[i] ^ t[i], db = b[i] ^ t[i];
        if (da != db) return da < db ? -1 : 1;
    }
    return 0;
}

static int common_prefix(const uint8_t *a, const uint8_t *b)
{
    for (int i = 0; i < SW_DHT_ID_LEN; i++) {
        uint8_t x = a[i] ^ b[i];
        if (x) return i * 8 + __builtin_clz((unsigned)x) - 24;
    }
    return 160;
}

static void emit(struct sw_dht *d, struct sw_dht_event *ev)
{
    if (d->cfg.on_event) d->cfg.on_event(d->cfg.ud, ev);
}

static int ip_eq(const struct sw_dht_addr *a, const struct sw_dht_addr *b)
{
    return a->family == b->family && !memcmp(a->ip, b->ip, a->family == 6 ? 16 : 4);
}

/* Callers may mix clocks of the same base (uv_now, sw_time_ms) that are read at slightly
 * different moments; time never runs backwards inside the state machine. */
static uint64_t clock_in(struct sw_dht *d, uint64_t now)
{
    if (now < d->last_now) return d->last_now;
    d->last_now = now;
    return now;
}

static void note_deadline(struct sw_dht *d, uint64_t t)
{
    if (t < d->next_deadline) d->next_deadline = t;
}

/* ------------------------------------------------------------------ output queue */

static void out_push(struct sw_dht *d, const struct sw_dht_addr *to, struct sw_buf *b)
{
    if (!sw_buf_ok(b) || b->len > SW_DHT_MAX_PACKET || d->out_n - d->out_head >= MAX_OUTQ) return;
    if (d->out_head == d->out_n) d->out_head = d->out_n = 0;
    if (d->out_n == d->out_cap) {
        if (d->out_head > 0) {
            memmove(d->outq, d->outq + d->out_head, (d->out_n - d->out_head) * sizeof *d->outq);
            d->out_n -= d->out_head;
            d->out_head = 0;
        } else {
            uint32_t cap = d->out_cap ? d->out_cap * 2 : 16;
            struct outpkt *q = realloc(d->outq, cap * sizeof *q);
            if (!q) return;
            d->outq = q;
            d->out_cap = cap;
        }
    }
    struct outpkt *p = &d->outq[d->out_n++];
    p->to = *to;
    p->len = (uint16_t)b->len;
    p->data = b->data; /* ownership moves to the queue */
    sw_buf_init(b);
    d->st.packets_out++;
    d->st.bytes_out += p->len;
}

size_t sw_dht_pop_packet(struct sw_dht *d, struct sw_dht_addr *to, uint8_t *buf, size_t cap)
{
    while (d->out_head < d->out_n) {
        struct outpkt *p = &d->outq[d->out_head++];
        size_t n = p->len;
        int fits = n <= cap;
        if (fits) {
            memcpy(buf, p->data, n);
            *to = p->to;
        }
        free(p->data);
        if (fits) return n;
    }
    return 0;
}

uint64_t sw_dht_next_deadline(const struct sw_dht *d) { return d->next_deadline; }

/* ------------------------------------------------------------------ encoding */

static void benc_key(struct sw_buf *b, const char *k) { sw_benc_cstr(b, k); }

static void enc_tail(struct sw_dht *d, struct sw_buf *b, const uint8_t *t, size_t t_len, char y)
{
    benc_key(b, "t");
    sw_benc_str(b, t, t_len);
    benc_key(b, "v");
    sw_benc_str(b, d->ver, 4);
    benc_key(b, "y");
    sw_benc_str(b, &y, 1);
    sw_benc_end(b);
}

/* Starts a reply: {"ip": requester (BEP 42), "r": {"id": ours ... */
static void reply_begin(struct sw_dht *d, struct sw_buf *b, const struct sw_dht_addr *to)
{
    uint8_t c[18];
    sw_benc_dict(b);
    benc_key(b, "ip");
    sw_benc_str(b, c, sw__compact_addr(to, c));
    benc_key(b, "r");
    sw_benc_dict(b);
    benc_key(b, "id");
    sw_benc_str(b, d->id, SW_DHT_ID_LEN);
}

static void reply_end(struct sw_dht *d, struct sw_buf *b, const struct sw__krpc *m)
{
    sw_benc_end(b); /* r */
    enc_tail(d, b, m->t, m->t_len, 'r');
}

static void send_error(struct sw_dht *d, const struct sw_dht_addr *to, const struct sw__krpc *m,
                       int code, const char *msg)
{
    struct sw_buf b;
    sw_buf_init(&b);
    sw_benc_dict(&b);
    benc_key(&b, "e");
    sw_benc_list(&b);
    sw_benc_int(&b, code);
    sw_benc_cstr(&b, msg);
    sw_benc_end(&b);
    enc_tail(d, &b, m->t, m->t_len, 'e');
    out_push(d, to, &b);
    sw_buf_free(&b);
}

/* Ends a query's "a" dict and the message. */
static void query_end(struct sw_dht *d, struct sw_buf *b, const char *method, const uint8_t tid[4])
{
    sw_benc_end(b); /* a */
    benc_key(b, "q");
    sw_benc_cstr(b, method);
    if (d->cfg.read_only) {
        benc_key(b, "ro"); /* BEP 43 */
        sw_benc_int(b, 1);
    }
    enc_tail(d, b, tid, 4, 'q');
}

/* ------------------------------------------------------------------ pending queries */

static int pend_alloc(struct sw_dht *d, int type, const struct sw_dht_addr *to, uint32_t lookup_id,
                      const uint8_t *node_id, uint64_t now, uint8_t tid[4])
{
    uint32_t slot;
    if (d->n_free) {
        slot = d->free_pend[--d->n_free];
    } else {
        if (d->n_pend >= MAX_PENDING) return SW_EBUSY;
        if ((d->n_pend & (d->n_pend - 1)) == 0 || d->n_pend == 0) {
            uint32_t cap = d->n_pend ? d->n_pend * 2 : 16;
            struct pending *np = realloc(d->pend, cap * sizeof *np);
            if (!np) return SW_ENOMEM;
            d->pend = np;
            uint32_t *nf = realloc(d->free_pend, cap * sizeof *nf);
            if (!nf) return SW_ENOMEM;
            d->free_pend = nf;
        }
        slot = d->n_pend++;
        d->pend[slot].gen = (uint16_t)rnd(d);
    }
    struct pending *p = &d->pend[slot];
    p->gen++;
    p->used = 1;
    p->type = (uint8_t)type;
    p->addr = *to;
    p->lookup_id = lookup_id;
    if (node_id) memcpy(p->node_id, node_id, SW_DHT_ID_LEN);
    else memset(p->node_id, 0, SW_DHT_ID_LEN);
    p->deadline = now + (d->timeout_override_ms ? d->timeout_override_ms : d->cfg.query_timeout_ms);
    note_deadline(d, p->deadline);
    sw_put_be16(tid, (uint16_t)slot);
    sw_put_be16(tid + 2, p->gen);
    return (int)slot;
}

static void pend_release(struct sw_dht *d, uint32_t slot)
{
    d->pend[slot].used = 0;
    d->free_pend[d->n_free++] = slot;
}

/* Sends a query with arguments already written after "a"{"id"...; see the callers. */
static int send_ping(struct sw_dht *d, const struct sw_dht_addr *to, int type, const uint8_t *node_id,
                     uint64_t now)
{
    uint8_t tid[4];
    int slot = pend_alloc(d, type, to, 0, node_id, now, tid);
    if (slot < 0) return slot;
    struct sw_buf b;
    sw_buf_init(&b);
    sw_benc_dict(&b);
    benc_key(&b, "a");
    sw_benc_dict(&b);
    benc_key(&b, "id");
    sw_benc_str(&b, d->id, SW_DHT_ID_LEN);
    query_end(d, &b, "ping", tid);
    out_push(d, to, &b);
    sw_buf_free(&b);
    return 0;
}

/* find_node / get_peers / get: {"id", "target"|"info_hash"} (+ BEP 44 none). */
static int send_search_query(struct sw_dht *d, int type, const struct sw_dht_addr *to, uint32_t lookup_id,
                             const uint8_t *node_id, enum sw_dht_lookup_kind kind,
                             const uint8_t target[SW_DHT_ID_LEN], uint64_t now)
{
    uint8_t tid[4];
    int slot = pend_alloc(d, type, to, lookup_id, node_id, now, tid);
    if (slot < 0) return slot;
    struct sw_buf b;
    sw_buf_init(&b);
    sw_benc_dict(&b);
    benc_key(&b, "a");
    sw_benc_dict(&b);
    benc_key(&b, "id");
    sw_benc_str(&b, d->id, SW_DHT_ID_LEN);
    const char *method;
    if (kind == SW_DHT_GET_PEERS || kind == SW_DHT_ANNOUNCE) {
        benc_key(&b, "info_hash");
        sw_benc_str(&b, target, SW_DHT_ID_LEN);
        method = "get_peers";
    } else if (kind == SW_DHT_GET_ITEM || kind == SW_DHT_PUT_ITEM) {
        benc_key(&b, "target");
        sw_benc_str(&b, target, SW_DHT_ID_LEN);
        method = "get";
    } else {
        benc_key(&b, "target");
        sw_benc_str(&b, target, SW_DHT_ID_LEN);
        method = "find_node";
    }
    query_end(d, &b, method, tid);
    out_push(d, to, &b);
    sw_buf_free(&b);
    return 0;
}

/* ------------------------------------------------------------------ routing table */

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

static int node_bad(const struct rnode *n) { return n->fails >= BAD_FAILS; }

static int node_good(const struct rnode *n, uint64_t now)
{
    /* BEP 5: replied within 15 minutes, or ever replied and queried us within 15 minutes. */
    if (node_bad(n) || !n->last_reply) return 0;
    return now - n->last_reply < GOOD_MS || now - n->last_seen < GOOD_MS;
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
static void rt_heard(struct sw_dht *d, const uint8_t *id, const struct sw_dht_addr *addr, int replied,
                     uint64_t now)
{
    if (!memcmp(id, d->id, SW_DHT_ID_LEN) || addr->family != d->cfg.family || addr->port == 0) return;
    int bi;
    struct rnode *n = rt_find(d, id, &bi);
    if (n) {
        if (!sw_dht_addr_eq(&n->addr, addr)) {
            /* Same id from another address: keep the known one unless it went bad. */
            if (!node_bad(n) && n->last_reply && now - n->last_seen < GOOD_MS) return;
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
            if (!replied) send_ping(d, addr, P_PING, id, now); /* verify a querier */
            return;
        }
        if (bi == d->nb - 1 && split_last(d)) {
            bi = bucket_of(d, id);
            continue;
        }
        /* Full: replace a bad node, else keep it as a replacement and probe the stalest. */
        for (int i = 0; i < bk->count; i++)
            if (node_bad(&bk->n[i])) {
                if (!replied) nn.last_ping = now;
                bk->n[i] = nn;
                bk->last_changed = now;
                if (!replied) send_ping(d, addr, P_PING, id, now);
                return;
            }
        if (replied) repl_add(bk, &nn);
        struct rnode *stale = NULL;
        for (int i = 0; i < bk->count; i++) {
            struct rnode *c = &bk->n[i];
            if (!node_good(c, now) && now - c->last_ping >= PING_AGAIN_MS &&
                (!stale || c->last_seen < stale->last_seen))
                stale = c;
        }
        if (stale) {
            stale->last_ping = now;
            send_ping(d, &stale->addr, P_PING, stale->id, now);
        }
        return;
    }
}

static void rt_failed(struct sw_dht *d, const uint8_t *id)
{
    int bi;
    struct rnode *n = rt_find(d, id, &bi);
    if (!n) return;
    if (n->fails < 255) n->fails++;
    struct bucket *bk = &d->b[bi];
    if (node_bad(n) && bk->n_repl) {
        /* Swap in the newest replacement (it answered us recently). */
        *n = bk->repl[--bk->n_repl];
    }
}

/* The `max` closest non-bad, verified nodes to target. */
static int rt_closest(struct sw_dht *d, const uint8_t *target, struct rnode **out, int max, int verified_only)
{
    int n = 0;
    for (int bi = 0; bi < d->nb; bi++) {
        struct bucket *bk = &d->b[bi];
        for (int i = 0; i < bk->count; i++) {
            struct rnode *c = &bk->n[i];
            if (node_bad(c) || (verified_only && !c->last_reply)) continue;
            int pos = n;
            while (pos > 0 && xor_cmp(target, c->id, out[pos - 1]->id) < 0) pos--;
            if (pos >= max) continue;
            int last = n < max ? n : max - 1;
            memmove(&out[pos + 1], &out[pos], (size_t)(last - pos) * sizeof out[0]);
            out[pos] = c;
            if (n < max) n++;
        }
    }
    return n;
}

static uint32_t rt_count(const struct sw_dht *d, uint32_t *good_out, uint64_t now)
{
    uint32_t n = 0, g = 0;
    for (int bi = 0; bi < d->nb; bi++)
        for (int i = 0; i < d->b[bi].count; i++) {
            n++;
            if (node_good(&d->b[bi].n[i], now)) g++;
        }
    if (good_out) *good_out = g;
    return n;
}

static void enc_nodes(struct sw_dht *d, struct sw_buf *b, const uint8_t *target)
{
    struct rnode *cl[SW_DHT_K];
    int n = rt_closest(d, target, cl, SW_DHT_K, 1);
    uint8_t buf[SW_DHT_K * 38];
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        memcpy(buf + len, cl[i]->id, SW_DHT_ID_LEN);
        len += SW_DHT_ID_LEN;
        len += sw__compact_addr(&cl[i]->addr, buf + len);
    }
    /* BEP 5 "nodes" (26 bytes each) or BEP 32 "nodes6" (38 bytes each). */
    benc_key(b, d->cfg.family == 6 ? "nodes6" : "nodes");
    sw_benc_str(b, buf, len);
}

/* ------------------------------------------------------------------ tokens */

static void make_token(const uint8_t secret[20], const struct sw_dht_addr *a, uint8_t out[TOKEN_LEN])
{
    /* BEP 5: a token is tied to the requester's IP and a secret that rotates. */
    uint8_t buf[20 + 16], h[20];
    memcpy(buf, secret, 20);
    size_t iplen = a->family == 6 ? 16 : 4;
    memcpy(buf + 20, a->ip, iplen);
    sw_sha1(buf, 20 + iplen, h);
    memcpy(out, h, TOKEN_LEN);
}

static int token_ok(const struct sw_dht *d, const struct sw_dht_addr *a, const uint8_t *tok, size_t len)
{
    uint8_t t[TOKEN_LEN];
    if (len != TOKEN_LEN) return 0;
    make_token(d->secret, a, t);
    if (!memcmp(t, tok, TOKEN_LEN)) return 1;
    make_token(d->prev_secret, a, t); /* the previous secret is still accepted */
    return !memcmp(t, tok, TOKEN_LEN);
}

/* ------------------------------------------------------------------ storage */

static struct phash *hash_find(struct sw_dht *d, const uint8_t *ih)
{
    for (uint32_t i = 0; i < d->n_hashes; i++)
        if (!memcmp(d->hashes[i].ih, ih, SW_DHT_ID_LEN)) return &d->hashes[i];
    return NULL;
}

static int store_peer(struct sw_dht *d, const uint8_t *ih, const struct sw_dht_addr *a, uint64_t now)
{
    struct phash *h = hash_find(d, ih);
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

static struct sitem *item_find(struct sw_dht *d, const uint8_t *target)
{
    for (uint32_t i = 0; i < d->n_items; i++)
        if (!memcmp(d->items[i]->target, target, SW_DHT_ID_LEN)) return d->items[i];
    return NULL;
}

static struct sitem *item_slot(struct sw_dht *d, const uint8_t *target)
{
    struct sitem *it = item_find(d, target);
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
static int item_put(struct sw_dht *d, const uint8_t *target, const uint8_t *v, size_t v_len,
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
    struct sitem *old = item_find(d, t);
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

static void expire_storage(struct sw_dht *d, uint64_t now)
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

static int is_loopback(const struct sw_dht_addr *a)
{
    static const uint8_t v6_loop[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
    return a->family == 4 ? a->ip[0] == 127 : !memcmp(a->ip, v6_loop, 16);
}

static int rate_ok(struct sw_dht *d, const struct sw_dht_addr *a, uint64_t now)
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

/* ------------------------------------------------------------------ queries in */

static void own_peer_addr(struct sw_dht *d, uint16_t port, struct sw_dht_addr *out)
{
    memset(out, 0, sizeof *out);
    if (d->has_ext) *out = d->ext;
    else out->family = d->cfg.family;
    if (port) out->port = port;
}

static void handle_query(struct sw_dht *d, const struct sw__krpc *m, const struct sw_dht_addr *from, uint64_t now)
{
    d->st.queries_in++;
    if (d->cfg.read_only) return; /* BEP 43: read-only nodes answer nothing */
    if (!rate_ok(d, from, now)) {
        d->st.rate_limited++;
        return;
    }
    if (m->bad_args) {
        send_error(d, from, m, 203, "Protocol Error: bad arguments");
        return;
    }
    if (!m->ro) rt_heard(d, m->id, from, 0, now);
    struct sw_buf b;
    sw_buf_init(&b);
    uint8_t tok[TOKEN_LEN];
    switch (m->method) {
    case SW__Q_PING:
        reply_begin(d, &b, from);
        break;
    case SW__Q_FIND_NODE:
        if (!m->target) { send_error(d, from, m, 203, "Protocol Error: target missing"); return; }
        reply_begin(d, &b, from);
        enc_nodes(d, &b, m->target);
        break;
    case SW__Q_GET_PEERS: {
        if (!m->info_hash) { send_error(d, from, m, 203, "Protocol Error: info_hash missing"); return; }
        reply_begin(d, &b, from);
        enc_nodes(d, &b, m->info_hash);
        make_token(d->secret, from, tok);
        benc_key(&b, "token");
        sw_benc_str(&b, tok, TOKEN_LEN);
        struct phash *h = hash_find(d, m->info_hash);
        int self = 0;
        struct sw_dht_addr me;
        for (uint32_t i = 0; i < d->n_own; i++)
            if (!memcmp(d->own[i].ih, m->info_hash, SW_DHT_ID_LEN) && d->has_ext) {
                own_peer_addr(d, d->own[i].port ? d->own[i].port : d->ext.port, &me);
                self = me.family == from->family;
            }
        if ((h && h->n) || self) {
            benc_key(&b, "values");
            sw_benc_list(&b);
            uint32_t n = h ? h->n : 0, start = n > MAX_VALUES_OUT ? (uint32_t)(rnd(d) % n) : 0;
            uint32_t sent = 0;
            uint8_t c[18];
            if (self) { sw_benc_str(&b, c, sw__compact_addr(&me, c)); sent++; }
            for (uint32_t i = 0; i < n && sent < MAX_VALUES_OUT; i++) {
                const struct speer *p = &h->p[(start + i) % n];
                if (p->a.family != from->family || p->expires <= now) continue;
                sw_benc_str(&b, c, sw__compact_addr(&p->a, c));
                sent++;
            }
            sw_benc_end(&b);
        }
        break;
    }
    case SW__Q_ANNOUNCE_PEER: {
        if (!m->info_hash || (!m->has_port && !m->implied_port)) {
            send_error(d, from, m, 203, "Protocol Error: info_hash or port missing");
            return;
        }
        if (!m->token || !token_ok(d, from, m->token, m->token_len)) {
            send_error(d, from, m, 203, "Protocol Error: bad token");
            return;
        }
        /* BEP 5: with implied_port the peer's port is the UDP source port. */
        struct sw_dht_addr pa = *from;
        if (!m->implied_port) pa.port = (uint16_t)m->port;
        if (pa.port == 0) { send_error(d, from, m, 203, "Protocol Error: port 0"); return; }
        int rc = store_peer(d, m->info_hash, &pa, now);
        if (rc) { send_error(d, from, m, 201, "Generic Error: storage full"); return; }
        reply_begin(d, &b, from);
        break;
    }
    case SW__Q_GET: {
        if (!m->target) { send_error(d, from, m, 203, "Protocol Error: target missing"); return; }
        reply_begin(d, &b, from);
        struct sitem *it = item_find(d, m->target);
        if (it && it->expires <= now) it = NULL;
        int send_v = it && (!m->has_seq || !it->is_mutable || it->seq > m->seq);
        /* keys in order: id k nodes seq sig token v */
        if (send_v && it->is_mutable) {
            benc_key(&b, "k");
            sw_benc_str(&b, it->k, 32);
        }
        enc_nodes(d, &b, m->target);
        if (it && it->is_mutable) {
            benc_key(&b, "seq");
            sw_benc_int(&b, it->seq);
        }
        if (send_v && it->is_mutable) {
            benc_key(&b, "sig");
            sw_benc_str(&b, it->sig, 64);
        }
        make_token(d->secret, from, tok);
        benc_key(&b, "token");
        sw_benc_str(&b, tok, TOKEN_LEN);
        if (send_v) {
            benc_key(&b, "v");
            sw_buf_append(&b, it->v, it->v_len); /* already bencoded */
        }
        break;
    }
    case SW__Q_PUT: {
        if (!m->token || !token_ok(d, from, m->token, m->token_len)) {
            send_error(d, from, m, 203, "Protocol Error: bad token");
            return;
        }
        const char *msg = "";
        int code = item_put(d, NULL, m->v, m->v_len, m->k, m->sig, m->salt, m->salt_len, m->has_seq,
                            m->seq, m->has_cas, m->cas, now, &msg);
        if (code) { send_error(d, from, m, code, msg); return; }
        reply_begin(d, &b, from);
        break;
    }
    default:
        send_error(d, from, m, 204, "Method Unknown");
        return;
    }
    reply_end(d, &b, m);
    out_push(d, from, &b);
    sw_buf_free(&b);
}

/* ------------------------------------------------------------------ lookups */

static struct lookup *lookup_get(struct sw_dht *d, uint32_t id)
{
    if (!id) return NULL;
    for (int i = 0; i < MAX_LOOKUPS; i++)
        if (d->lk[i] && d->lk[i]->id == id) return d->lk[i];
    return NULL;
}

static void lookup_add(struct sw_dht *d, struct lookup *l, const uint8_t *id, const struct sw_dht_addr *a,
                       int depth)
{
    if (!memcmp(id, d->id, SW_DHT_ID_LEN) || a->family != d->cfg.family || a->port == 0) return;
    int pos = l->n;
    for (int i = 0; i < l->n; i++) {
        int c = xor_cmp(l->target, id, l->c[i].id);
        if (c == 0) {
            /* known: keep the shortest path to it while it is still unqueried */
            if (l->c[i].state == C_NEW && depth < l->c[i].depth) l->c[i].depth = (uint8_t)depth;
            return;
        }
        if (c < 0) { pos = i; break; }
    }
    for (int i = pos; i < l->n; i++)
        if (!memcmp(l->c[i].id, id, SW_DHT_ID_LEN)) return;
    if (pos >= LOOKUP_CAND) return;
    int move = (l->n < LOOKUP_CAND ? l->n : LOOKUP_CAND - 1) - pos;
    if (move > 0) memmove(&l->c[pos + 1], &l->c[pos], (size_t)move * sizeof l->c[0]);
    struct cand *c = &l->c[pos];
    memset(c, 0, sizeof *c);
    memcpy(c->id, id, SW_DHT_ID_LEN);
    c->addr = *a;
    c->depth = (uint8_t)(depth > 255 ? 255 : depth);
    if (l->n < LOOKUP_CAND) l->n++;
}

static struct cand *lookup_cand(struct lookup *l, const uint8_t *id)
{
    for (int i = 0; i < l->n; i++)
        if (!memcmp(l->c[i].id, id, SW_DHT_ID_LEN)) return &l->c[i];
    return NULL;
}

static void lookup_peer(struct sw_dht *d, struct lookup *l, const struct sw_dht_addr *a, int is_self,
                        uint32_t depth, uint64_t now)
{
    for (uint32_t i = 0; i < l->n_peers && i < l->peers_cap; i++)
        if (sw_dht_addr_eq(&l->peers[i], a)) return;
    if (l->n_peers >= LOOKUP_MAX_PEERS) return;
    if (l->n_peers == l->peers_cap) {
        uint32_t cap = l->peers_cap ? l->peers_cap * 2 : 8;
        struct sw_dht_addr *np = realloc(l->peers, cap * sizeof *np);
        if (!np) return;
        l->peers = np;
        l->peers_cap = cap;
    }
    l->peers[l->n_peers++] = *a;
    if (!l->found_ms && !is_self) {
        l->found_ms = now - l->start_ms;
        if (!l->found_ms) l->found_ms = 1;
        l->found_hops = depth;
    }
    if (l->internal) return;
    struct sw_dht_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = SW_DHT_EV_PEER;
    ev.lookup_id = l->id;
    ev.kind = l->kind;
    memcpy(ev.target, l->target, SW_DHT_ID_LEN);
    ev.addr = *a;
    ev.is_self = is_self;
    emit(d, &ev);
}

static void lookup_item(struct sw_dht *d, struct lookup *l, const struct sw_dht_addr *from, const uint8_t *v,
                        size_t v_len, const uint8_t *k, const uint8_t *sig, int64_t seq, uint32_t depth,
                        uint64_t now)
{
    if (!v || v_len == 0 || v_len > SW_DHT_MAX_VALUE) return;
    if (l->is_mutable) {
        /* BEP 44: verify the signature on read, with the key and salt we asked for. */
        if (!k || !sig || memcmp(k, l->k, 32)) return;
        if (sw_dht_item_verify(k, l->salt, l->salt_len, seq, v, v_len, sig)) return;
        if (l->have_best && seq <= l->best_seq) return;
    } else {
        uint8_t t[SW_DHT_ID_LEN];
        sw_dht_immutable_target(v, v_len, t);
        if (memcmp(t, l->target, SW_DHT_ID_LEN) || l->have_best) return;
    }
    l->have_best = 1;
    l->best_seq = seq;
    if (!l->found_ms) {
        l->found_ms = now - l->start_ms;
        if (!l->found_ms) l->found_ms = 1;
        l->found_hops = depth;
    }
    if (l->internal || l->kind != SW_DHT_GET_ITEM) return;
    struct sw_dht_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = SW_DHT_EV_ITEM;
    ev.lookup_id = l->id;
    ev.kind = l->kind;
    memcpy(ev.target, l->target, SW_DHT_ID_LEN);
    ev.addr = *from;
    ev.value = v;
    ev.value_len = v_len;
    ev.is_mutable = l->is_mutable;
    if (l->is_mutable) {
        memcpy(ev.k, k, 32);
        memcpy(ev.sig, sig, 64);
        ev.seq = seq;
        ev.salt = l->salt;
        ev.salt_len = l->salt_len;
    }
    emit(d, &ev);
}

static int lookup_slot_free(struct sw_dht *d)
{
    for (int i = 0; i < MAX_LOOKUPS; i++)
        if (!d->lk[i]) return i;
    return -1;
}

static void lookup_free(struct lookup *l)
{
    if (!l) return;
    free(l->peers);
    free(l->v);
    free(l);
}

static void lookup_abort(struct sw_dht *d, struct lookup *l)
{
    for (int i = 0; i < MAX_LOOKUPS; i++)
        if (d->lk[i] == l) d->lk[i] = NULL;
    lookup_free(l);
}

static void random_id_in_bucket(struct sw_dht *d, int bi, uint8_t out[SW_DHT_ID_LEN]);
static struct lookup *lookup_new(struct sw_dht *d, enum sw_dht_lookup_kind kind, const uint8_t *target,
                                 int internal, uint64_t now);
static int lookup_step(struct sw_dht *d, struct lookup *l, uint64_t now);

/* Kademlia join: after the lookup of our own id, refresh every bucket that is not full
 * with a lookup of a random id in its range, so the far buckets fill at once instead of
 * after the first 15-minute refresh. */
static void refresh_thin_buckets(struct sw_dht *d, uint64_t now)
{
    for (int bi = 0; bi < d->nb - 1; bi++) {
        if (d->b[bi].count >= SW_DHT_K) continue;
        uint8_t t[SW_DHT_ID_LEN];
        random_id_in_bucket(d, bi, t);
        d->b[bi].last_changed = now;
        struct lookup *l = lookup_new(d, SW_DHT_FIND_NODE, t, 1, now);
        if (!l) break;
        lookup_step(d, l, now);
    }
}

static void lookup_finish(struct sw_dht *d, struct lookup *l, uint64_t now)
{
    int slot = -1;
    for (int i = 0; i < MAX_LOOKUPS; i++)
        if (d->lk[i] == l) slot = i;
    if (slot >= 0) d->lk[slot] = NULL;
    if (l->is_self_lookup && l->n_replies > 0 && !d->ready) {
        d->ready = 1;
        struct sw_dht_event ev;
        memset(&ev, 0, sizeof ev);
        ev.type = SW_DHT_EV_READY;
        memcpy(ev.target, d->id, SW_DHT_ID_LEN);
        ev.n_queries = l->n_queries;
        ev.n_replies = l->n_replies;
        emit(d, &ev);
        lookup_free(l);
        refresh_thin_buckets(d, now);
        return;
    }
    if (sw_log_enabled(SW_LOG_DEBUG)) {
        char hx[41];
        sw_hex_encode(l->target, SW_DHT_ID_LEN, hx);
        sw_log(SW_LOG_DEBUG, "DHT", "lookup %u (kind %d%s) for %s done: %u queries, %u replies, %u stored, %llu ms",
               l->id, (int)l->kind, l->internal ? ", internal" : "", hx, l->n_queries, l->n_replies, l->n_stored,
               (unsigned long long)(now - l->start_ms));
    }
    if (!l->internal) {
        struct sw_dht_event ev;
        memset(&ev, 0, sizeof ev);
        ev.type = SW_DHT_EV_DONE;
        ev.lookup_id = l->id;
        ev.kind = l->kind;
        memcpy(ev.target, l->target, SW_DHT_ID_LEN);
        ev.n_queries = l->n_queries;
        ev.n_replies = l->n_replies;
        ev.n_peers = l->n_peers;
        ev.n_stored = l->n_stored;
        for (int i = 0; i < l->n; i++)
            if (l->c[i].state == C_REPLIED) {
                ev.hops = l->c[i].depth;
                break;
            }
        ev.found_hops = l->found_hops;
        ev.found_ms = l->found_ms;
        ev.elapsed_ms = now - l->start_ms;
        ev.status = l->n_replies ? 0 : SW_ETIMEDOUT;
        ev.is_mutable = l->is_mutable;
        ev.seq = l->best_seq;
        emit(d, &ev);
    }
    lookup_free(l);
}

static void send_store(struct sw_dht *d, struct lookup *l, struct cand *c, uint64_t now)
{
    uint8_t tid[4];
    if (pend_alloc(d, P_STORE, &c->addr, l->id, c->id, now, tid) < 0) return;
    struct sw_buf b;
    sw_buf_init(&b);
    sw_benc_dict(&b);
    benc_key(&b, "a");
    sw_benc_dict(&b);
    const char *method;
    if (l->kind == SW_DHT_ANNOUNCE) {
        /* keys in order: id implied_port info_hash port token */
        benc_key(&b, "id");
        sw_benc_str(&b, d->id, SW_DHT_ID_LEN);
        benc_key(&b, "implied_port");
        sw_benc_int(&b, l->port ? 0 : 1);
        benc_key(&b, "info_hash");
        sw_benc_str(&b, l->target, SW_DHT_ID_LEN);
        benc_key(&b, "port");
        sw_benc_int(&b, l->port ? l->port : 1);
        benc_key(&b, "token");
        sw_benc_str(&b, c->token, c->token_len);
        method = "announce_peer";
    } else {
        /* BEP 44 put; keys in order: cas id k salt seq sig token v */
        if (l->is_mutable && l->cas >= 0) {
            benc_key(&b, "cas");
            sw_benc_int(&b, l->cas);
        }
        benc_key(&b, "id");
        sw_benc_str(&b, d->id, SW_DHT_ID_LEN);
        if (l->is_mutable) {
            benc_key(&b, "k");
            sw_benc_str(&b, l->k, 32);
            if (l->salt_len) {
                benc_key(&b, "salt");
                sw_benc_str(&b, l->salt, l->salt_len);
            }
            benc_key(&b, "seq");
            sw_benc_int(&b, l->seq);
            benc_key(&b, "sig");
            sw_benc_str(&b, l->sig, 64);
        }
        benc_key(&b, "token");
        sw_benc_str(&b, c->token, c->token_len);
        benc_key(&b, "v");
        sw_buf_append(&b, l->v, l->v_len);
        method = "put";
    }
    query_end(d, &b, method, tid);
    out_push(d, &c->addr, &b);
    sw_buf_free(&b);
    l->store_pending++;
}

/* Advances a lookup: keeps alpha queries in flight toward the k closest, and moves to the
 * store phase or finishes when the k closest live candidates have all answered. Returns 1
 * when the lookup finished (and was freed). */
static int lookup_step(struct sw_dht *d, struct lookup *l, uint64_t now)
{
    if (l->phase == 0 && l->n == 0) {
        /* Started before the table had nodes: seed it as soon as the bootstrap brings some,
         * and wait for that up to BOOT_WAIT_MS when contacts are configured. */
        struct rnode *cl[LOOKUP_CAND / 2];
        int n = rt_closest(d, l->target, cl, LOOKUP_CAND / 2, 0);
        for (int i = 0; i < n; i++) lookup_add(d, l, cl[i]->id, &cl[i]->addr, 1);
        if (l->n == 0 && d->n_contacts > 0 && now - l->start_ms < BOOT_WAIT_MS) {
            note_deadline(d, now + 250);
            return 0;
        }
    }
    if (l->phase == 0) {
        int inflight = 0, active = 0, live = 0;
        for (int i = 0; i < l->n; i++) {
            struct cand *c = &l->c[i];
            if (c->state == C_SENT && !c->slow) {
                if (now - c->sent_ms >= SOFT_TIMEOUT_MS) c->slow = 1;
                else inflight++;
            }
        }
        for (int i = 0; i < l->n && live < SW_DHT_K; i++) {
            struct cand *c = &l->c[i];
            if (c->state == C_FAILED) continue;
            live++;
            if (c->state == C_NEW && inflight < SW_DHT_ALPHA) {
                int type = P_LOOKUP;
                /* the retry of a query that timed out gets half the time: a node that
                 * lost one datagram answers fast the second time, a dead one costs less */
                if (c->tries) d->timeout_override_ms = d->cfg.query_timeout_ms / 2;
                int sent = send_search_query(d, type, &c->addr, l->id, c->id, l->kind, l->target, now);
                d->timeout_override_ms = 0;
                if (sent == 0) {
                    c->state = C_SENT;
                    c->sent_ms = now;
                    c->tries++;
                    note_deadline(d, now + SOFT_TIMEOUT_MS);
                    l->n_queries++;
                    inflight++;
                } else {
                    c->state = C_FAILED;
                    continue;
                }
            }
            if (c->state == C_NEW || c->state == C_SENT) active = 1;
        }
        if (active && now - l->start_ms < LOOKUP_MAX_MS) return 0;
        if (l->kind == SW_DHT_ANNOUNCE || l->kind == SW_DHT_PUT_ITEM) {
            l->phase = 1;
            int sent = 0;
            for (int i = 0; i < l->n && sent < SW_DHT_K; i++) {
                struct cand *c = &l->c[i];
                if (c->state != C_REPLIED || !c->token_len) continue;
                send_store(d, l, c, now);
                sent++;
            }
        }
    }
    if (l->phase == 1 && l->store_pending > 0 && now - l->start_ms < LOOKUP_MAX_MS + 10000u) return 0;
    lookup_finish(d, l, now);
    return 1;
}

static struct lookup *lookup_new(struct sw_dht *d, enum sw_dht_lookup_kind kind, const uint8_t *target,
                                 int internal, uint64_t now)
{
    int slot = lookup_slot_free(d);
    if (slot < 0) return NULL;
    struct lookup *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->id = ++d->next_lookup_id;
    if (!l->id) l->id = ++d->next_lookup_id;
    l->kind = kind;
    l->internal = internal;
    memcpy(l->target, target, SW_DHT_ID_LEN);
    l->start_ms = now;
    l->cas = -1;
    struct rnode *cl[LOOKUP_CAND / 2];
    int n = rt_closest(d, target, cl, LOOKUP_CAND / 2, 0);
    for (int i = 0; i < n; i++) lookup_add(d, l, cl[i]->id, &cl[i]->addr, 1);
    d->lk[slot] = l;
    return l;
}

static int lookup_start(struct sw_dht *d, struct lookup *l, uint64_t now, uint32_t *id_out)
{
    uint32_t id = l->id;
    if (id_out) *id_out = id;
    lookup_step(d, l, now);
    return 0;
}

static void self_lookup(struct sw_dht *d, uint64_t now, const struct sw__krpc *seed_from, int depth)
{
    struct lookup *l = NULL;
    for (int i = 0; i < MAX_LOOKUPS; i++)
        if (d->lk[i] && d->lk[i]->is_self_lookup) l = d->lk[i];
    int fresh = !l;
    if (!l) {
        l = lookup_new(d, SW_DHT_FIND_NODE, d->id, 1, now);
        if (!l) return;
        l->is_self_lookup = 1;
    }
    if (seed_from && seed_from->id) {
        /* the contact just answered find_node(our id): no need to ask it again */
        struct cand *c = lookup_cand(l, seed_from->id);
        if (c && c->state == C_NEW) {
            c->state = C_REPLIED;
            l->n_replies++;
        }
    }
    if (seed_from && seed_from->nodes) {
        for (size_t o = 0; o + 26 <= seed_from->nodes_len; o += 26) {
            struct sw_dht_addr a;
            sw__uncompact_addr(seed_from->nodes + o + 20, 6, &a);
            lookup_add(d, l, seed_from->nodes + o, &a, depth);
        }
    }
    if (seed_from && seed_from->nodes6) {
        for (size_t o = 0; o + 38 <= seed_from->nodes6_len; o += 38) {
            struct sw_dht_addr a;
            sw__uncompact_addr(seed_from->nodes6 + o + 20, 18, &a);
            lookup_add(d, l, seed_from->nodes6 + o, &a, depth);
        }
    }
    if (fresh || seed_from) lookup_step(d, l, now);
}

/* ------------------------------------------------------------------ replies in */

static void add_nodes_to_lookup(struct sw_dht *d, struct lookup *l, const struct sw__krpc *m, int depth)
{
    if (m->nodes)
        for (size_t o = 0; o + 26 <= m->nodes_len; o += 26) {
            struct sw_dht_addr a;
            sw__uncompact_addr(m->nodes + o + 20, 6, &a);
            lookup_add(d, l, m->nodes + o, &a, depth);
        }
    if (m->nodes6)
        for (size_t o = 0; o + 38 <= m->nodes6_len; o += 38) {
            struct sw_dht_addr a;
            sw__uncompact_addr(m->nodes6 + o + 20, 18, &a);
            lookup_add(d, l, m->nodes6 + o, &a, depth);
        }
}

static void handle_reply(struct sw_dht *d, const struct sw__krpc *m, const struct sw_bdoc *doc,
                         const struct sw_dht_addr *from, uint64_t now)
{
    if (m->y == 'r') d->st.replies_in++;
    else d->st.errors_in++;
    if (m->t_len != 4) { d->st.unmatched++; return; }
    uint32_t slot = sw_get_be16(m->t);
    uint16_t gen = sw_get_be16(m->t + 2);
    if (slot >= d->n_pend || !d->pend[slot].used || d->pend[slot].gen != gen ||
        !sw_dht_addr_eq(&d->pend[slot].addr, from)) {
        d->st.unmatched++;
        return;
    }
    struct pending p = d->pend[slot];
    pend_release(d, slot);
    int ok = m->y == 'r';
    if (ok) {
        rt_heard(d, m->id, from, 1, now);
        if (m->ip && m->ip_len == (d->cfg.family == 6 ? 18u : 6u)) {
            /* BEP 42 `ip`: how others see us. The first report is taken; a different
             * address replaces it only after three replies in a row agree on it. */
            struct sw_dht_addr seen;
            sw__uncompact_addr(m->ip, m->ip_len, &seen);
            if (!d->has_ext) {
                d->ext = seen;
                d->has_ext = 1;
            } else if (!sw_dht_addr_eq(&seen, &d->ext)) {
                if (sw_dht_addr_eq(&seen, &d->ext_cand)) d->ext_votes++;
                else { d->ext_cand = seen; d->ext_votes = 1; }
                if (d->ext_votes >= 3) { d->ext = seen; d->ext_votes = 0; }
            } else {
                d->ext_votes = 0;
            }
        }
    }
    struct sw_dht_event ev;
    switch (p.type) {
    case P_PING:
        break;
    case P_PING_USER:
        memset(&ev, 0, sizeof ev);
        ev.type = SW_DHT_EV_PONG;
        ev.addr = *from;
        if (ok) memcpy(ev.id, m->id, SW_DHT_ID_LEN);
        ev.status = ok ? 0 : SW_EPERM;
        emit(d, &ev);
        break;
    case P_CONTACT:
        if (ok) self_lookup(d, now, m, 2);
        break;
    case P_LOOKUP: {
        struct lookup *l = lookup_get(d, p.lookup_id);
        if (!l || l->phase != 0) break;
        struct cand *c = lookup_cand(l, p.node_id);
        if (!c || c->state != C_SENT) break;
        if (!ok) {
            c->state = C_FAILED;
            lookup_step(d, l, now);
            break;
        }
        c->state = C_REPLIED;
        l->n_replies++;
        if (m->token && m->token_len <= SW__KRPC_MAX_TOKEN) {
            memcpy(c->token, m->token, m->token_len);
            c->token_len = (uint8_t)m->token_len;
        }
        int depth = c->depth;
        if (l->kind == SW_DHT_FIND_NODE && !l->internal) {
            memset(&ev, 0, sizeof ev);
            ev.type = SW_DHT_EV_NODE;
            ev.lookup_id = l->id;
            ev.kind = l->kind;
            memcpy(ev.target, l->target, SW_DHT_ID_LEN);
            memcpy(ev.id, m->id, SW_DHT_ID_LEN);
            ev.addr = *from;
            emit(d, &ev);
        }
        if (l->kind == SW_DHT_FIND_NODE && !memcmp(m->id, l->target, SW_DHT_ID_LEN) && !l->found_ms) {
            l->found_ms = now - l->start_ms;
            if (!l->found_ms) l->found_ms = 1;
            l->found_hops = (uint32_t)depth;
        }
        if ((l->kind == SW_DHT_GET_PEERS || l->kind == SW_DHT_ANNOUNCE) && m->values) {
            for (const struct sw_bnode *v = sw_bnode_child(doc, m->values); v; v = sw_bnode_next(doc, v)) {
                struct sw_dht_addr a;
                if (v->type != SW_BSTR || sw__uncompact_addr(v->str, v->str_len, &a) || a.port == 0) continue;
                lookup_peer(d, l, &a, 0, (uint32_t)depth, now);
            }
        }
        if ((l->kind == SW_DHT_GET_ITEM || l->kind == SW_DHT_PUT_ITEM) && m->v)
            lookup_item(d, l, from, m->v, m->v_len, m->k, m->sig, m->seq, (uint32_t)depth, now);
        add_nodes_to_lookup(d, l, m, depth + 1);
        lookup_step(d, l, now);
        break;
    }
    case P_STORE: {
        struct lookup *l = lookup_get(d, p.lookup_id);
        if (!l) break;
        if (ok) l->n_stored++;
        l->store_pending--;
        lookup_step(d, l, now);
        break;
    }
    }
}

/* ------------------------------------------------------------------ input */

void sw_dht_input(struct sw_dht *d, const uint8_t *buf, size_t len, const struct sw_dht_addr *from,
                  uint64_t now)
{
    now = clock_in(d, now);
    d->st.packets_in++;
    d->st.bytes_in += len;
    struct sw__krpc m;
    struct sw_bdoc doc;
    if (!from || from->port == 0 || sw__krpc_parse(buf, len, &m, &doc)) {
        d->st.malformed++;
        return;
    }
    if (m.y == 'q') handle_query(d, &m, from, now);
    else handle_reply(d, &m, &doc, from, now);
    sw_bdoc_free(&doc);
}

/* ------------------------------------------------------------------ periodic */

static void timeouts(struct sw_dht *d, uint64_t now)
{
    for (uint32_t s = 0; s < d->n_pend; s++) {
        struct pending *p = &d->pend[s];
        if (!p->used || p->deadline > now) continue;
        struct pending q = *p;
        pend_release(d, s);
        d->st.timeouts++;
        if (sw_log_enabled(SW_LOG_DEBUG)) {
            char as[64];
            static const char *names[] = { "?", "ping", "ping", "bootstrap find_node", "lookup", "store" };
            sw_log(SW_LOG_DEBUG, "DHT", "%s query to %s timed out", names[q.type < 6 ? q.type : 0],
                   sw_dht_addr_str(&q.addr, as, sizeof as));
        }
        int has_id = 0;
        for (int i = 0; i < SW_DHT_ID_LEN; i++) has_id |= q.node_id[i];
        if (has_id && q.type != P_STORE) rt_failed(d, q.node_id);
        if (q.type == P_PING_USER) {
            struct sw_dht_event ev;
            memset(&ev, 0, sizeof ev);
            ev.type = SW_DHT_EV_PONG;
            ev.addr = q.addr;
            ev.status = SW_ETIMEDOUT;
            emit(d, &ev);
        } else if (q.type == P_LOOKUP) {
            struct lookup *l = lookup_get(d, q.lookup_id);
            struct cand *c = l && l->phase == 0 ? lookup_cand(l, q.node_id) : NULL;
            /* One retry: a lost datagram (not a dead node) should not hide the closest nodes. */
            if (c && c->state == C_SENT) c->state = c->tries < 2 ? C_NEW : C_FAILED;
            if (c) c->slow = 0;
        } else if (q.type == P_STORE) {
            struct lookup *l = lookup_get(d, q.lookup_id);
            if (l) l->store_pending--;
        }
    }
}

static void random_id_in_bucket(struct sw_dht *d, int bi, uint8_t out[SW_DHT_ID_LEN])
{
    rnd_bytes(d, out, SW_DHT_ID_LEN);
    int keep = bi; /* bits shared with our id */
    for (int i = 0; i < keep && i < 160; i++) {
        uint8_t mask = (uint8_t)(0x80 >> (i % 8));
        out[i / 8] = (uint8_t)((out[i / 8] & ~mask) | (d->id[i / 8] & mask));
    }
    if (bi < d->nb - 1 && bi < 160) {
        uint8_t mask = (uint8_t)(0x80 >> (bi % 8));
        out[bi / 8] = (uint8_t)((out[bi / 8] & ~mask) | (~d->id[bi / 8] & mask));
    }
}

static void maintenance(struct sw_dht *d, uint64_t now)
{
    if (now - d->secret_ms >= TOKEN_ROTATE_MS) {
        memcpy(d->prev_secret, d->secret, 20);
        rnd_bytes(d, d->secret, 20);
        d->secret_ms = now;
    }
    if (now >= d->next_expire) {
        expire_storage(d, now);
        d->next_expire = now + 60000u;
    }
    /* Bootstrap: keep contacting the given nodes until a lookup succeeded, then whenever
     * the table runs dry. */
    uint32_t n_nodes = rt_count(d, NULL, now);
    if (d->n_contacts && ((!d->ready && now - d->last_contact_ms >= 10000u) ||
                          (n_nodes < SW_DHT_K && now - d->last_contact_ms >= 60000u))) {
        d->last_contact_ms = now;
        for (int i = 0; i < d->n_contacts; i++)
            send_search_query(d, P_CONTACT, &d->contacts[i], 0, NULL, SW_DHT_FIND_NODE, d->id, now);
    }
    /* Probe questionable nodes (BEP 5), a few per tick. */
    int pings = 0;
    for (int bi = 0; bi < d->nb && pings < 8; bi++)
        for (int i = 0; i < d->b[bi].count && pings < 8; i++) {
            struct rnode *n = &d->b[bi].n[i];
            if (node_good(n, now) || node_bad(n) || now - n->last_ping < PING_AGAIN_MS) continue;
            n->last_ping = now;
            send_ping(d, &n->addr, P_PING, n->id, now);
            pings++;
        }
    /* Refresh buckets untouched for 15 minutes with a lookup of a random id in their range. */
    int refreshes = 0;
    for (int bi = 0; bi < d->nb && refreshes < 2 && n_nodes; bi++) {
        struct bucket *bk = &d->b[bi];
        if (now - bk->last_changed < REFRESH_MS) continue;
        bk->last_changed = now;
        uint8_t t[SW_DHT_ID_LEN];
        random_id_in_bucket(d, bi, t);
        struct lookup *l = lookup_new(d, SW_DHT_FIND_NODE, t, 1, now);
        if (l) lookup_step(d, l, now);
        refreshes++;
    }
    /* Re-announce and re-put what we published, so it never goes stale at the storers. */
    for (uint32_t i = 0; i < d->n_own; i++) {
        struct own_announce *a = &d->own[i];
        if (!a->persistent || now < a->next_ms || !n_nodes) continue;
        struct lookup *l = lookup_new(d, SW_DHT_ANNOUNCE, a->ih, 1, now);
        if (!l) break;
        l->port = a->port;
        a->next_ms = now + d->cfg.reannounce_ms;
        lookup_step(d, l, now);
    }
    for (uint32_t i = 0; i < d->n_puts; i++) {
        struct own_put *p = &d->puts[i];
        if (now < p->next_ms || !n_nodes) continue;
        struct lookup *l = lookup_new(d, SW_DHT_PUT_ITEM, p->it.target, 1, now);
        if (!l) break;
        l->v = malloc(p->it.v_len);
        if (!l->v) {
            lookup_abort(d, l);
            continue;
        }
        memcpy(l->v, p->it.v, p->it.v_len);
        l->v_len = p->it.v_len;
        l->is_mutable = p->it.is_mutable;
        memcpy(l->k, p->it.k, 32);
        if (p->it.salt_len) memcpy(l->salt, p->it.salt, p->it.salt_len);
        l->salt_len = p->it.salt_len;
        l->seq = p->it.seq;
        memcpy(l->sig, p->it.sig, 64);
        const char *msg = "";
        item_put(d, NULL, p->it.v, p->it.v_len, p->it.is_mutable ? p->it.k : NULL, p->it.sig, p->it.salt,
                 p->it.salt_len, 1, p->it.seq, 0, 0, now, &msg);
        p->next_ms = now + d->cfg.reannounce_ms;
        lookup_step(d, l, now);
    }
}

uint64_t sw_dht_periodic(struct sw_dht *d, uint64_t now)
{
    now = clock_in(d, now);
    timeouts(d, now);
    for (int i = 0; i < MAX_LOOKUPS; i++)
        if (d->lk[i]) lookup_step(d, d->lk[i], now);
    if (now >= d->next_tick) {
        maintenance(d, now);
        d->next_tick = now + TICK_MS;
    }
    uint64_t next = d->next_tick;
    for (uint32_t s = 0; s < d->n_pend; s++)
        if (d->pend[s].used && d->pend[s].deadline < next) next = d->pend[s].deadline;
    for (int i = 0; i < MAX_LOOKUPS; i++) {
        struct lookup *l = d->lk[i];
        if (!l) continue;
        for (int j = 0; j < l->n; j++)
            if (l->c[j].state == C_SENT && !l->c[j].slow && l->c[j].sent_ms + SOFT_TIMEOUT_MS < next)
                next = l->c[j].sent_ms + SOFT_TIMEOUT_MS;
        if (l->start_ms + LOOKUP_MAX_MS < next) next = l->start_ms + LOOKUP_MAX_MS;
        if (l->n == 0 && now + 250 < next) next = now + 250;
    }
    if (next <= now) next = now + 1;
    d->next_deadline = next;
    return next;
}

/* ------------------------------------------------------------------ public calls */

struct sw_dht *sw_dht_new(const struct sw_dht_config *cfg, uint64_t now)
{
    struct sw_dht *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->cfg = *cfg;
    if (d->cfg.family != 6) d->cfg.family = 4;
    if (!d->cfg.max_hashes) d->cfg.max_hashes = 2000;
    if (!d->cfg.max_peers_per_hash) d->cfg.max_peers_per_hash = 200;
    if (!d->cfg.max_items) d->cfg.max_items = 1000;
    if (!d->cfg.peer_ttl_ms) d->cfg.peer_ttl_ms = 30u * 60u * 1000u;
    if (!d->cfg.item_ttl_ms) d->cfg.item_ttl_ms = 2u * 3600u * 1000u;
    if (!d->cfg.rate_qps) d->cfg.rate_qps = 50;
    if (!d->cfg.rate_burst) d->cfg.rate_burst = 100;
    if (!d->cfg.query_timeout_ms) d->cfg.query_timeout_ms = 2000;
    if (!d->cfg.reannounce_ms) d->cfg.reannounce_ms = 15u * 60u * 1000u;
    d->rng = cfg->rng_seed;
    if (!d->rng) sw_random_bytes(&d->rng, sizeof d->rng);
    if (!d->rng) d->rng = 0x9E3779B97F4A7C15ull;
    if (cfg->has_id) memcpy(d->id, cfg->id, SW_DHT_ID_LEN);
    else rnd_bytes(d, d->id, SW_DHT_ID_LEN);
    const char *ver = cfg->client_version;
    if (ver && strlen(ver) >= 4) memcpy(d->ver, ver, 4);
    else memcpy(d->ver, "SW\x00\x01", 4);
    d->b_cap = 8;
    d->b = calloc((size_t)d->b_cap, sizeof *d->b);
    if (!d->b) {
        sw_dht_free(d);
        return NULL;
    }
    d->nb = 1;
    d->b[0].last_changed = now;
    rnd_bytes(d, d->secret, 20);
    memcpy(d->prev_secret, d->secret, 20);
    d->secret_ms = now;
    d->next_tick = now + TICK_MS;
    d->next_expire = now + 60000u;
    d->next_deadline = d->next_tick;
    d->last_now = now;
    if (sodium_init() < 0) sw_log(SW_LOG_WARN, "DHT", "libsodium could not initialise");
    return d;
}

void sw_dht_free(struct sw_dht *d)
{
    if (!d) return;
    for (int i = 0; i < MAX_LOOKUPS; i++) lookup_free(d->lk[i]);
    for (uint32_t i = d->out_head; i < d->out_n; i++) free(d->outq[i].data);
    free(d->outq);
    for (uint32_t i = 0; i < d->n_hashes; i++) free(d->hashes[i].p);
    free(d->hashes);
    for (uint32_t i = 0; i < d->n_items; i++) free(d->items[i]);
    free(d->items);
    free(d->own);
    free(d->puts);
    free(d->pend);
    free(d->free_pend);
    free(d->rate);
    free(d->b);
    free(d);
}

void sw_dht_get_id(const struct sw_dht *d, uint8_t id_out[SW_DHT_ID_LEN]) { memcpy(id_out, d->id, SW_DHT_ID_LEN); }

int sw_dht_add_contact(struct sw_dht *d, const struct sw_dht_addr *addr, uint64_t now)
{
    now = clock_in(d, now);
    if (!addr || addr->family != d->cfg.family || addr->port == 0) return SW_EINVAL;
    int known = 0;
    for (int i = 0; i < d->n_contacts; i++) known |= sw_dht_addr_eq(&d->contacts[i], addr);
    if (!known && d->n_contacts < MAX_CONTACTS) d->contacts[d->n_contacts++] = *addr;
    d->last_contact_ms = now;
    return send_search_query(d, P_CONTACT, addr, 0, NULL, SW_DHT_FIND_NODE, d->id, now);
}

int sw_dht_ping(struct sw_dht *d, const struct sw_dht_addr *addr, uint64_t now)
{
    now = clock_in(d, now);
    if (!addr || addr->port == 0) return SW_EINVAL;
    return send_ping(d, addr, P_PING_USER, NULL, now);
}

int sw_dht_find_node(struct sw_dht *d, const uint8_t target[SW_DHT_ID_LEN], uint64_t now, uint32_t *id_out)
{
    now = clock_in(d, now);
    struct lookup *l = lookup_new(d, SW_DHT_FIND_NODE, target, 0, now);
    if (!l) return SW_EBUSY;
    return lookup_start(d, l, now, id_out);
}

static void local_peers(struct sw_dht *d, struct lookup *l, uint64_t now)
{
    /* Our own announcements and what others announced to us count too. */
    for (uint32_t i = 0; i < d->n_own; i++)
        if (!memcmp(d->own[i].ih, l->target, SW_DHT_ID_LEN)) {
            struct sw_dht_addr me;
            own_peer_addr(d, d->own[i].port ? d->own[i].port : (d->has_ext ? d->ext.port : 0), &me);
            lookup_peer(d, l, &me, 1, 0, now);
        }
    struct phash *h = hash_find(d, l->target);
    for (uint32_t i = 0; h && i < h->n; i++)
        if (h->p[i].expires > now) lookup_peer(d, l, &h->p[i].a, 0, 0, now);
}

int sw_dht_get_peers(struct sw_dht *d, const uint8_t ih[SW_DHT_ID_LEN], uint64_t now, uint32_t *id_out)
{
    now = clock_in(d, now);
    struct lookup *l = lookup_new(d, SW_DHT_GET_PEERS, ih, 0, now);
    if (!l) return SW_EBUSY;
    local_peers(d, l, now);
    return lookup_start(d, l, now, id_out);
}

int sw_dht_announce(struct sw_dht *d, const uint8_t ih[SW_DHT_ID_LEN], uint16_t port, int persistent,
                    uint64_t now, uint32_t *id_out)
{
    now = clock_in(d, now);
    struct own_announce *a = NULL;
    for (uint32_t i = 0; i < d->n_own; i++)
        if (!memcmp(d->own[i].ih, ih, SW_DHT_ID_LEN)) a = &d->own[i];
    if (!a) {
        if (d->n_own >= MAX_OWN) return SW_ENOSPC;
        struct own_announce *no = realloc(d->own, (d->n_own + 1) * sizeof *no);
        if (!no) return SW_ENOMEM;
        d->own = no;
        a = &d->own[d->n_own++];
        memset(a, 0, sizeof *a);
        memcpy(a->ih, ih, SW_DHT_ID_LEN);
    }
    a->port = port;
    a->persistent = a->persistent || persistent;
    a->next_ms = now + d->cfg.reannounce_ms;
    struct lookup *l = lookup_new(d, SW_DHT_ANNOUNCE, ih, 0, now);
    if (!l) return SW_EBUSY;
    l->port = port;
    local_peers(d, l, now);
    return lookup_start(d, l, now, id_out);
}

void sw_dht_unannounce(struct sw_dht *d, const uint8_t ih[SW_DHT_ID_LEN])
{
    for (uint32_t i = 0; i < d->n_own; i++)
        if (!memcmp(d->own[i].ih, ih, SW_DHT_ID_LEN)) {
            d->own[i] = d->own[--d->n_own];
            return;
        }
}

int sw_dht_get_item(struct sw_dht *d, const uint8_t target_in[SW_DHT_ID_LEN], const uint8_t *pk,
                    const uint8_t *salt, size_t salt_len, uint64_t now, uint32_t *id_out)
{
    now = clock_in(d, now);
    uint8_t target[SW_DHT_ID_LEN];
    if (salt_len > SW_DHT_MAX_SALT) return SW_ETOOBIG;
    if (pk) sw_dht_mutable_target(pk, salt, salt_len, target);
    else if (target_in) memcpy(target, target_in, SW_DHT_ID_LEN);
    else return SW_EINVAL;
    struct lookup *l = lookup_new(d, SW_DHT_GET_ITEM, target, 0, now);
    if (!l) return SW_EBUSY;
    if (pk) {
        l->is_mutable = 1;
        memcpy(l->k, pk, 32);
        if (salt_len) memcpy(l->salt, salt, salt_len);
        l->salt_len = salt_len;
    }
    uint32_t id = l->id;
    if (id_out) *id_out = id;
    /* What we hold ourselves is an answer too (verified like any other). */
    struct sitem *it = item_find(d, target);
    if (it && it->expires > now) {
        struct sw_dht_addr me;
        own_peer_addr(d, 0, &me);
        lookup_item(d, l, &me, it->v, it->v_len, it->is_mutable ? it->k : NULL, it->sig, it->seq, 0, now);
    }
    lookup_step(d, l, now);
    return 0;
}

static int put_common(struct sw_dht *d, struct lookup *l, int persistent, uint64_t now, uint32_t *id_out)
{
    const char *msg = "";
    int code = item_put(d, NULL, l->v, l->v_len, l->is_mutable ? l->k : NULL, l->sig, l->salt, l->salt_len,
                        1, l->seq, 0, 0, now, &msg);
    if (code == 302 || code == 301) {
        lookup_abort(d, l);
        return SW_ERANGE; /* we already hold a higher seq */
    }
    if (persistent) {
        struct own_put *p = NULL;
        for (uint32_t i = 0; i < d->n_puts; i++)
            if (!memcmp(d->puts[i].it.target, l->target, SW_DHT_ID_LEN)) p = &d->puts[i];
        if (!p && d->n_puts < MAX_OWN) {
            struct own_put *np = realloc(d->puts, (d->n_puts + 1) * sizeof *np);
            if (np) {
                d->puts = np;
                p = &d->puts[d->n_puts++];
            }
        }
        if (p) {
            memset(p, 0, sizeof *p);
            memcpy(p->it.target, l->target, SW_DHT_ID_LEN);
            p->it.is_mutable = l->is_mutable;
            memcpy(p->it.k, l->k, 32);
            memcpy(p->it.sig, l->sig, 64);
            p->it.seq = l->seq;
            if (l->salt_len) memcpy(p->it.salt, l->salt, l->salt_len);
            p->it.salt_len = l->salt_len;
            memcpy(p->it.v, l->v, l->v_len);
            p->it.v_len = l->v_len;
            p->next_ms = now + d->cfg.reannounce_ms;
        }
    }
    return lookup_start(d, l, now, id_out);
}

int sw_dht_put_immutable(struct sw_dht *d, const uint8_t *v, size_t v_len, uint64_t now, uint32_t *id_out)
{
    now = clock_in(d, now);
    if (!v || !v_len) return SW_EINVAL;
    if (v_len > SW_DHT_MAX_VALUE) return SW_ETOOBIG;
    struct sw_bdoc doc;
    if (sw_bdecode(v, v_len, NULL, &doc, NULL, NULL, 0)) return SW_ECORRUPT; /* v must be bencoded */
    sw_bdoc_free(&doc);
    uint8_t target[SW_DHT_ID_LEN];
    sw_dht_immutable_target(v, v_len, target);
    struct lookup *l = lookup_new(d, SW_DHT_PUT_ITEM, target, 0, now);
    if (!l) return SW_EBUSY;
    l->v = malloc(v_len);
    if (!l->v) {
        lookup_abort(d, l);
        return SW_ENOMEM;
    }
    memcpy(l->v, v, v_len);
    l->v_len = v_len;
    return put_common(d, l, 0, now, id_out);
}

int sw_dht_put_mutable(struct sw_dht *d, const struct sw_dht_key *key, const uint8_t *salt, size_t salt_len,
                       const uint8_t *v, size_t v_len, int64_t seq, int64_t cas, int persistent, uint64_t now,
                       uint32_t *id_out)
{
    now = clock_in(d, now);
    if (!key || !v || !v_len || seq < 0) return SW_EINVAL;
    if (v_len > SW_DHT_MAX_VALUE || salt_len > SW_DHT_MAX_SALT) return SW_ETOOBIG;
    struct sw_bdoc doc;
    if (sw_bdecode(v, v_len, NULL, &doc, NULL, NULL, 0)) return SW_ECORRUPT;
    sw_bdoc_free(&doc);
    uint8_t target[SW_DHT_ID_LEN];
    sw_dht_mutable_target(key->pk, salt, salt_len, target);
    struct lookup *l = lookup_new(d, SW_DHT_PUT_ITEM, target, 0, now);
    if (!l) return SW_EBUSY;
    l->v = malloc(v_len);
    if (!l->v) {
        lookup_abort(d, l);
        return SW_ENOMEM;
    }
    memcpy(l->v, v, v_len);
    l->v_len = v_len;
    l->is_mutable = 1;
    memcpy(l->k, key->pk, 32);
    if (salt_len) memcpy(l->salt, salt, salt_len);
    l->salt_len = salt_len;
    l->seq = seq;
    l->cas = cas;
    sw_dht_item_sign(key, salt, salt_len, seq, v, v_len, l->sig);
    return put_common(d, l, persistent, now, id_out);
}

void sw_dht_get_stats(const struct sw_dht *d, struct sw_dht_stats *out)
{
    *out = d->st;
    out->nodes = rt_count(d, &out->good_nodes, d->last_now);
    out->buckets = (uint32_t)d->nb;
    out->stored_hashes = d->n_hashes;
    out->stored_peers = 0;
    for (uint32_t i = 0; i < d->n_hashes; i++) out->stored_peers += d->hashes[i].n;
    out->stored_items = d->n_items;
    out->lookups_running = 0;
    for (int i = 0; i < MAX_LOOKUPS; i++) out->lookups_running += d->lk[i] != NULL;
}

size_t sw_dht_get_nodes(const struct sw_dht *d, const uint8_t *target, uint8_t (*ids)[SW_DHT_ID_LEN],
                        struct sw_dht_addr *addrs, size_t max)
{
    size_t n = 0;
    if (target) {
        struct rnode **cl = malloc((max ? max : 1) * sizeof *cl);
        if (!cl) return 0;
        int k = rt_closest((struct sw_dht *)d, target, cl, (int)(max > 1280 ? 1280 : max), 0);
        for (int i = 0; i < k; i++) {
            if (ids) memcpy(ids[i], cl[i]->id, SW_DHT_ID_LEN);
            if (addrs) addrs[i] = cl[i]->addr;
        }
        free(cl);
        return (size_t)k;
    }
    for (int bi = 0; bi < d->nb; bi++)
        for (int i = 0; i < d->b[bi].count && n < max; i++) {
            if (ids) memcpy(ids[n], d->b[bi].n[i].id, SW_DHT_ID_LEN);
            if (addrs) addrs[n] = d->b[bi].n[i].addr;
            n++;
        }
    return n;
}

int sw_dht_external_addr(const struct sw_dht *d, struct sw_dht_addr *out)
{
    if (!d->has_ext) return SW_ENOTFOUND;
    *out = d->ext;
    return 0;
}

int sw_dht_save(const struct sw_dht *d, const char *path)
{
    struct sw_buf b;
    char hex[41], as[64];
    sw_buf_init(&b);
    sw_hex_encode(d->id, SW_DHT_ID_LEN, hex);
    sw_buf_printf(&b, "sw-dht 1\nid %s\n", hex);
    for (int bi = 0; bi < d->nb; bi++)
        for (int i = 0; i < d->b[bi].count; i++) {
            const struct rnode *n = &d->b[bi].n[i];
            if (node_bad(n) || !n->last_reply) continue;
            sw_hex_encode(n->id, SW_DHT_ID_LEN, hex);
            sw_buf_printf(&b, "%s %s\n", sw_dht_addr_str(&n->addr, as, sizeof as), hex);
        }
    int rc = sw_buf_ok(&b) ? sw_file_write_atomic(path, b.data, b.len) : SW_ENOMEM;
    sw_buf_free(&b);
    return rc;
}
