/* dht.h — the mainline BitTorrent DHT (BEP 5 Kademlia over KRPC, BEP 32 IPv6 compact
 * nodes, BEP 44 immutable and signed mutable items) as a state machine without sockets,
 * plus a thin libuv glue (sw_dht_uv_*) for running it on an existing loop.
 *
 * The state machine: datagram bytes + sender + now_ms in (sw_dht_input), timers
 * (sw_dht_periodic returns the next deadline), datagrams to send out (sw_dht_pop_packet,
 * drained by the caller), and events through one callback. No globals: any number of
 * instances per process (tests, the 10,000-node simulation). Not thread-safe: one instance
 * is used from one thread at a time. */
#ifndef SW_DHT_H
#define SW_DHT_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

#define SW_DHT_ID_LEN 20
#define SW_DHT_K 8                 /* BEP 5: bucket size */
#define SW_DHT_ALPHA 3             /* parallel queries per lookup */
#define SW_DHT_MAX_VALUE 1000      /* BEP 44: bencoded v at most 1000 bytes */
#define SW_DHT_MAX_SALT 64         /* BEP 44: salt at most 64 bytes */
#define SW_DHT_MAX_PACKET 1500     /* largest datagram we send or accept */

/* An IPv4 or IPv6 UDP address. ip holds 4 bytes (family 4) or 16 (family 6); port is in
 * host byte order. */
struct sw_dht_addr {
    uint8_t family; /* 4 or 6 */
    uint8_t ip[16];
    uint16_t port;
};

/* Parses "1.2.3.4:6881" or "[::1]:6881" (numeric only; names go through the glue). */
int sw_dht_addr_parse(const char *s, struct sw_dht_addr *out);
/* "1.2.3.4:6881" / "[::1]:6881" into out (>= 64 bytes). Returns out. */
const char *sw_dht_addr_str(const struct sw_dht_addr *a, char *out, size_t out_len);
int sw_dht_addr_eq(const struct sw_dht_addr *a, const struct sw_dht_addr *b);

/* ------------------------------------------------------------------ events */

enum sw_dht_event_type {
    SW_DHT_EV_READY = 1,     /* first bootstrap lookup finished with at least one reply */
    SW_DHT_EV_PEER,          /* get_peers/announce lookup: one peer (addr; is_self) */
    SW_DHT_EV_NODE,          /* find_node lookup: one node that replied (id, addr) */
    SW_DHT_EV_ITEM,          /* get lookup: an item (value, and k/seq/sig when mutable) */
    SW_DHT_EV_PONG,          /* sw_dht_ping answered (status 0, id) or timed out */
    SW_DHT_EV_DONE,          /* a lookup (and its announce/put phase) finished */
};

enum sw_dht_lookup_kind {
    SW_DHT_FIND_NODE = 1,
    SW_DHT_GET_PEERS,
    SW_DHT_ANNOUNCE,         /* get_peers, then announce_peer to the closest that replied */
    SW_DHT_GET_ITEM,
    SW_DHT_PUT_ITEM,         /* get (for tokens), then put to the closest that replied */
};

/* Everything an event carries; pointers are borrowed for the duration of the callback. */
struct sw_dht_event {
    enum sw_dht_event_type type;
    uint32_t lookup_id;            /* 0 for events not tied to a caller's lookup */
    enum sw_dht_lookup_kind kind;
    uint8_t target[SW_DHT_ID_LEN];
    struct sw_dht_addr addr;       /* PEER: the peer; NODE/PONG/ITEM: the replying node */
    uint8_t id[SW_DHT_ID_LEN];     /* NODE/PONG: the node id */
    int is_self;                   /* PEER: our own announcement */
    int status;                    /* PONG/DONE: 0 or a negative sw_err */
    /* ITEM */
    const uint8_t *value;          /* bencoded v */
    size_t value_len;
    int is_mutable;
    uint8_t k[32];
    uint8_t sig[64];
    int64_t seq;
    const uint8_t *salt;
    size_t salt_len;
    /* DONE: the lookup's account */
    uint32_t n_queries;            /* queries this lookup sent */
    uint32_t n_replies;
    uint32_t n_peers;              /* distinct peers reported */
    uint32_t n_stored;             /* announce/put: nodes that acknowledged the store */
    uint32_t hops;                 /* depth of the closest node that replied (1 = from our table) */
    uint32_t found_hops;           /* depth of the first node that gave a result (peers/item/target), 0 none */
    uint64_t found_ms;             /* time from start to the first result, 0 none */
    uint64_t elapsed_ms;
};

typedef void (*sw_dht_event_fn)(void *ud, const struct sw_dht_event *ev);

/* ------------------------------------------------------------------ config */

struct sw_dht_config {
    uint8_t id[SW_DHT_ID_LEN];
    int has_id;                    /* 0: a random id */
    uint8_t family;                /* 4 (default) or 6: the routing table's address family */
    int read_only;                 /* BEP 43: send ro=1, answer no queries */
    const char *client_version;    /* 4 bytes for the `v` key; NULL: "SW01" */
    uint32_t max_hashes;           /* info-hashes with stored peers (0: 2000) */
    uint32_t max_peers_per_hash;   /* (0: 200) */
    uint32_t max_items;            /* BEP 44 items stored (0: 1000) */
    uint32_t peer_ttl_ms;          /* stored peer lifetime (0: 30 min) */
    uint32_t item_ttl_ms;          /* BEP 44 item lifetime (0: 2 h) */
    uint32_t rate_qps;             /* queries per second per source IP (0: 50); loopback exempt */
    uint32_t rate_burst;           /* bucket depth (0: 100) */
    uint32_t query_timeout_ms;     /* (0: 2000) */
    uint32_t reannounce_ms;        /* persistent announcements/puts (0: 15 min) */
    uint64_t rng_seed;             /* 0: seeded from the OS (simulations pass their own) */
    sw_dht_event_fn on_event;
    void *ud;
};

struct sw_dht;

/* Returns NULL on oom. The instance owns nothing of cfg after the call. */
struct sw_dht *sw_dht_new(const struct sw_dht_config *cfg, uint64_t now_ms);
void sw_dht_free(struct sw_dht *d); /* NULL harmless */
void sw_dht_get_id(const struct sw_dht *d, uint8_t id_out[SW_DHT_ID_LEN]);

/* One received datagram. Malformed input is dropped and counted (stats.malformed); never
 * an error for the caller. May queue packets and fire events. */
void sw_dht_input(struct sw_dht *d, const uint8_t *buf, size_t len, const struct sw_dht_addr *from,
                  uint64_t now_ms);
/* Runs timers (timeouts, lookups, bucket refresh, token rotation, expiry, re-announce).
 * Returns the absolute time (ms) by which it must be called again. */
uint64_t sw_dht_periodic(struct sw_dht *d, uint64_t now_ms);
/* Takes the next datagram to send: copies it into buf (cap >= SW_DHT_MAX_PACKET) and
 * returns its length, or 0 when the queue is empty. */
size_t sw_dht_pop_packet(struct sw_dht *d, struct sw_dht_addr *to, uint8_t *buf, size_t cap);
/* The earliest time periodic must run, including queries sent since the last periodic
 * (input and the calls below can move it earlier). */
uint64_t sw_dht_next_deadline(const struct sw_dht *d);

/* Contacts a node known only by address (bootstrap): sends it find_node for our own id;
 * its reply puts it in the table. Starts a bootstrap lookup when the table is thin. */
int sw_dht_add_contact(struct sw_dht *d, const struct sw_dht_addr *addr, uint64_t now_ms);
/* Sends ping; an SW_DHT_EV_PONG follows (status 0 or SW_ETIMEDOUT). */
int sw_dht_ping(struct sw_dht *d, const struct sw_dht_addr *addr, uint64_t now_ms);

/* Lookups. Each returns 0 and a lookup id (> 0) via id_out (may be NULL); events carry it,
 * and SW_DHT_EV_DONE ends it. SW_EBUSY when too many lookups run (cap 64). A lookup
 * started before the routing table has nodes waits up to 15 s for the bootstrap. */
int sw_dht_find_node(struct sw_dht *d, const uint8_t target[SW_DHT_ID_LEN], uint64_t now_ms,
                     uint32_t *id_out);
int sw_dht_get_peers(struct sw_dht *d, const uint8_t info_hash[SW_DHT_ID_LEN], uint64_t now_ms,
                     uint32_t *id_out);
/* Announces that we serve info_hash on TCP `port` (0: implied_port, the source port of our
 * UDP packets). Also records the announcement locally (a node counts itself). With
 * `persistent`, re-announced every reannounce_ms until sw_dht_unannounce. */
int sw_dht_announce(struct sw_dht *d, const uint8_t info_hash[SW_DHT_ID_LEN], uint16_t port,
                    int persistent, uint64_t now_ms, uint32_t *id_out);
void sw_dht_unannounce(struct sw_dht *d, const uint8_t info_hash[SW_DHT_ID_LEN]);

/* ---------------------------------------------------------------- BEP 44 */

/* An ed25519 key. The key file stores the 32-byte seed as 64 hex characters (and a
 * newline). sk is libsodium's seed||pk form. */
struct sw_dht_key {
    uint8_t seed[32];
    uint8_t pk[32];
    uint8_t sk[64];
};

void sw_dht_key_generate(struct sw_dht_key *key);
void sw_dht_key_from_seed(struct sw_dht_key *key, const uint8_t seed[32]);
/* SW_ENOTFOUND, SW_EIO, SW_ECORRUPT (not 64 hex digits). */
int sw_dht_key_load(const char *path, struct sw_dht_key *key);
/* Writes atomically with mode 0600. */
int sw_dht_key_save(const char *path, const struct sw_dht_key *key);

/* BEP 44 targets: SHA-1(v) for immutable items, SHA-1(k || salt) for mutable ones. */
void sw_dht_immutable_target(const uint8_t *v, size_t v_len, uint8_t out[SW_DHT_ID_LEN]);
void sw_dht_mutable_target(const uint8_t pk[32], const uint8_t *salt, size_t salt_len,
                           uint8_t out[SW_DHT_ID_LEN]);
/* The signed buffer: ["4:salt" len ":" salt] "3:seqi" seq "e1:v" v. Returns its length
 * (out may be NULL to size it; needs at most v_len + salt_len + 48 bytes). */
size_t sw_dht_sign_buffer(const uint8_t *salt, size_t salt_len, int64_t seq, const uint8_t *v,
                          size_t v_len, uint8_t *out);
void sw_dht_item_sign(const struct sw_dht_key *key, const uint8_t *salt, size_t salt_len,
                      int64_t seq, const uint8_t *v, size_t v_len, uint8_t sig_out[64]);
/* 0 when sig is pk's signature over the item, else SW_EPERM. */
int sw_dht_item_verify(const uint8_t pk[32], const uint8_t *salt, size_t salt_len, int64_t seq,
                       const uint8_t *v, size_t v_len, const uint8_t sig[64]);

/* Gets an item. Immutable: pk NULL, target = SHA-1(v). Mutable: pk (+ salt) given, the
 * target is derived. SW_DHT_EV_ITEM reports each verified item of a higher seq than seen. */
int sw_dht_get_item(struct sw_dht *d, const uint8_t target[SW_DHT_ID_LEN], const uint8_t *pk,
                    const uint8_t *salt, size_t salt_len, uint64_t now_ms, uint32_t *id_out);
/* Puts an immutable item (v is bencoded, <= 1000 bytes). */
int sw_dht_put_immutable(struct sw_dht *d, const uint8_t *v, size_t v_len, uint64_t now_ms,
                         uint32_t *id_out);
/* Puts a mutable item signed with key. cas >= 0 asks storing nodes to compare-and-swap
 * against that seq (BEP 44 `cas`); -1 for none. The item is also stored locally; with
 * `persistent` it is re-put every reannounce_ms. */
int sw_dht_put_mutable(struct sw_dht *d, const struct sw_dht_key *key, const uint8_t *salt,
                       size_t salt_len, const uint8_t *v, size_t v_len, int64_t seq, int64_t cas,
                       int persistent, uint64_t now_ms, uint32_t *id_out);

/* ------------------------------------------------------------------ state */

struct sw_dht_stats {
    uint64_t packets_in, packets_out, bytes_in, bytes_out;
    uint64_t queries_in, replies_in, errors_in;
    uint64_t malformed;        /* dropped: not bencode / not KRPC / bad fields */
    uint64_t rate_limited;     /* dropped: source over its query rate */
    uint64_t unmatched;        /* replies to no query of ours (late or forged) */
    uint64_t timeouts;
    uint32_t nodes, good_nodes, buckets;
    uint32_t stored_hashes, stored_peers, stored_items;
    uint32_t lookups_running;
};

void sw_dht_get_stats(const struct sw_dht *d, struct sw_dht_stats *out);
/* Up to max routing-table nodes (closest to target first when target is non-NULL). */
size_t sw_dht_get_nodes(const struct sw_dht *d, const uint8_t *target, uint8_t (*ids)[SW_DHT_ID_LEN],
                        struct sw_dht_addr *addrs, size_t max);
/* The address other nodes report seeing us at (BEP 42 `ip`), when known. */
int sw_dht_external_addr(const struct sw_dht *d, struct sw_dht_addr *out);

/* Routing-table persistence: a small text file ("sw-dht 1", our id, then "addr id" per
 * node), written atomically. load returns our saved id and up to max nodes. */
int sw_dht_save(const struct sw_dht *d, const char *path);
int sw_dht_load(const char *path, uint8_t id_out[SW_DHT_ID_LEN], struct sw_dht_addr *addrs,
                size_t max, size_t *n_out);

/* ------------------------------------------------------------------ libuv glue */

struct uv_loop_s;
struct sw_dht_uv;

struct sw_dht_uv_config {
    struct sw_dht_config dht;      /* on_event/ud are called from the loop thread */
    const char *bind_host;         /* NULL: "0.0.0.0" (or "::" for family 6) */
    uint16_t port;                 /* 0: any */
    const char *state_path;        /* routing table file (NULL: none): loaded at start, saved
                                    * every 5 minutes and at close */
    const uint8_t *swarm_key;      /* a private swarm's 32-byte key (copied), NULL: public.
                                    * Set: every datagram is sealed with XChaCha20-Poly1305
                                    * under a key derived from it (docs/protocol.md), and
                                    * datagrams that do not open (non-members, plain KRPC)
                                    * are dropped before the DHT sees them. */
};

/* Creates the DHT on an existing loop and binds its UDP socket. *err_out gets a negative
 * sw_err (SW_EIO when the bind fails); after a failure the handles it opened are being
 * closed, so run the loop before uv_loop_close. */
struct sw_dht_uv *sw_dht_uv_new(struct uv_loop_s *loop, const struct sw_dht_uv_config *cfg,
                                int *err_out);
/* The state machine inside, for the sw_dht_* calls above; outgoing packets and the timer
 * are flushed automatically before the loop next polls. */
struct sw_dht *sw_dht_uv_dht(struct sw_dht_uv *u);
uint16_t sw_dht_uv_port(const struct sw_dht_uv *u);
/* The clock the glue feeds the state machine (uv_now of the loop): pass it as now_ms. */
uint64_t sw_dht_uv_now(const struct sw_dht_uv *u);
/* Resolves "host:port" entries (asynchronously) and contacts each. Returns the count queued. */
int sw_dht_uv_bootstrap(struct sw_dht_uv *u, const char *const *hostports, size_t n);
/* Private swarm: datagrams dropped because they did not open under the swarm key. */
uint64_t sw_dht_uv_dropped(const struct sw_dht_uv *u);
/* Saves the state file (when configured), stops and closes the handles; memory is freed
 * once libuv has closed them (run the loop afterwards). NULL harmless. */
void sw_dht_uv_close(struct sw_dht_uv *u);

#endif
