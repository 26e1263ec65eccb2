/* dht_int.h — the DHT state machine's internal types and the calls its files share
 * (dht.c: output queue, encoding, queries in, periodic, public calls; dht_table.c: routing
 * table, tokens, storage, rate limit; dht_lookup.c: pending queries, lookups, replies in;
 * dht_uv.c reads the routing table to save it). Not a public face: dht.h is. */
#ifndef SW_DHT_INT_H
#define SW_DHT_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

static inline uint64_t sw__dht_rnd(struct sw_dht *d)
{
    /* xorshift64*: cheap, deterministic per seed (the simulation replays runs). */
    uint64_t x = d->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    d->rng = x;
    return x * UINT64_C(2685821657736338717);
}

/* <0 when a is closer to t than b (XOR metric, BEP 5), 0 equal, >0 farther. */
static inline int sw__dht_xor_cmp(const uint8_t *t, const uint8_t *a, const uint8_t *b)
{
    for (int i = 0; i < SW_DHT_ID_LEN; i++) {
        uint8_t da = a[i] ^ t[i], db = b[i] ^ t[i];
        if (da != db) return da < db ? -1 : 1;
    }
    return 0;
}

static inline void sw__dht_emit(struct sw_dht *d, struct sw_dht_event *ev)
{
    if (d->cfg.on_event) d->cfg.on_event(d->cfg.ud, ev);
}

static inline void sw__dht_note_deadline(struct sw_dht *d, uint64_t t)
{
    if (t < d->next_deadline) d->next_deadline = t;
}

static inline void sw__dht_benc_key(struct sw_buf *b, const char *k) { sw_benc_cstr(b, k); }

static inline int sw__dht_node_bad(const struct rnode *n) { return n->fails >= BAD_FAILS; }

static inline int sw__dht_node_good(const struct rnode *n, uint64_t now)
{
    /* BEP 5: replied within 15 minutes, or ever replied and queried us within 15 minutes. */
    if (sw__dht_node_bad(n) || !n->last_reply) return 0;
    return now - n->last_reply < GOOD_MS || now - n->last_seen < GOOD_MS;
}

/* dht.c */
void sw__dht_out_push(struct sw_dht *d, const struct sw_dht_addr *to, struct sw_buf *b);
void sw__dht_query_end(struct sw_dht *d, struct sw_buf *b, const char *method, const uint8_t tid[4]);
void sw__dht_random_id_in_bucket(struct sw_dht *d, int bi, uint8_t out[SW_DHT_ID_LEN]);

/* dht_table.c */
void sw__dht_rt_heard(struct sw_dht *d, const uint8_t *id, const struct sw_dht_addr *addr, int replied,
                      uint64_t now);
void sw__dht_rt_failed(struct sw_dht *d, const uint8_t *id);
int sw__dht_rt_closest(struct sw_dht *d, const uint8_t *target, struct rnode **out, int max, int verified_only);
uint32_t sw__dht_rt_count(const struct sw_dht *d, uint32_t *good_out, uint64_t now);
void sw__dht_enc_nodes(struct sw_dht *d, struct sw_buf *b, const uint8_t *target);
void sw__dht_make_token(const uint8_t secret[20], const struct sw_dht_addr *a, uint8_t out[TOKEN_LEN]);
int sw__dht_token_ok(const struct sw_dht *d, const struct sw_dht_addr *a, const uint8_t *tok, size_t len);
struct phash *sw__dht_hash_find(struct sw_dht *d, const uint8_t *ih);
int sw__dht_store_peer(struct sw_dht *d, const uint8_t *ih, const struct sw_dht_addr *a, uint64_t now);
struct sitem *sw__dht_item_find(struct sw_dht *d, const uint8_t *target);
int sw__dht_item_put(struct sw_dht *d, const uint8_t *target, const uint8_t *v, size_t v_len,
                     const uint8_t *k, const uint8_t *sig, const uint8_t *salt, size_t salt_len,
                     int has_seq, int64_t seq, int has_cas, int64_t cas, uint64_t now, const char **msg);
void sw__dht_expire_storage(struct sw_dht *d, uint64_t now);
int sw__dht_rate_ok(struct sw_dht *d, const struct sw_dht_addr *a, uint64_t now);

/* dht_lookup.c */
void sw__dht_pend_release(struct sw_dht *d, uint32_t slot);
int sw__dht_send_ping(struct sw_dht *d, const struct sw_dht_addr *to, int type, const uint8_t *node_id,
                      uint64_t now);
int sw__dht_send_search_query(struct sw_dht *d, int type, const struct sw_dht_addr *to, uint32_t lookup_id,
                              const uint8_t *node_id, enum sw_dht_lookup_kind kind,
                              const uint8_t target[SW_DHT_ID_LEN], uint64_t now);
struct lookup *sw__dht_lookup_get(struct sw_dht *d, uint32_t id);
struct cand *sw__dht_lookup_cand(struct lookup *l, const uint8_t *id);
void sw__dht_lookup_peer(struct sw_dht *d, struct lookup *l, const struct sw_dht_addr *a, int is_self,
                         uint32_t depth, uint64_t now);
void sw__dht_lookup_item(struct sw_dht *d, struct lookup *l, const struct sw_dht_addr *from, const uint8_t *v,
                         size_t v_len, const uint8_t *k, const uint8_t *sig, int64_t seq, uint32_t depth,
                         uint64_t now);
void sw__dht_lookup_free(struct lookup *l);
void sw__dht_lookup_abort(struct sw_dht *d, struct lookup *l);
/* NULL when all MAX_LOOKUPS slots are taken (or out of memory). */
struct lookup *sw__dht_lookup_new(struct sw_dht *d, enum sw_dht_lookup_kind kind, const uint8_t *target,
                                  int internal, uint64_t now);
int sw__dht_lookup_step(struct sw_dht *d, struct lookup *l, uint64_t now);
int sw__dht_lookup_start(struct sw_dht *d, struct lookup *l, uint64_t now, uint32_t *id_out);
void sw__dht_handle_reply(struct sw_dht *d, const struct sw__krpc *m, const struct sw_bdoc *doc,
                          const struct sw_dht_addr *from, uint64_t now);

#endif
