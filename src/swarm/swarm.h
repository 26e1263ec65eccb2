/* swarm.h — the public face of src/swarm: a node's identity, signed capability records,
 * the swarm view (who holds which shard, who is live), readiness and its reasons, the shard
 * planner, signed LOAD_SHARD commands, the extension-message framing, and the node itself
 * (one libuv loop joining DHT + BitTorrent + this protocol).
 * Everything above "node" is pure logic: records and the current time in, decisions out;
 * no sockets, no clocks read inside, so tests can run many views in one process.
 * Not for: moving shard bytes (src/bt), finding peers (src/dht), computing (src/infer). */
#ifndef SW_SWARM_H
#define SW_SWARM_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

#define SW_NODE_ID_LEN 32          /* ed25519 public key */
#define SW_SWARM_MAX_SHARDS 1024   /* cap on shards per model (records naming more are malformed) */
#define SW_SWARM_MAX_NEIGHBOURS 64 /* neighbour prefixes carried in a record */
#define SW_SWARM_NB_PREFIX 8       /* bytes of a neighbour's node id carried in a record */
#define SW_SWARM_MAX_RECORD 2048   /* bytes of a signed record on the wire */
#define SW_SWARM_EXT_NAME "sw_swarm" /* our BEP 10 extension's name */
#define SW_SWARM_HS_KEY "sw_cap"     /* extended-handshake key holding our signed record */

/* ---------------------------------------------------------------- identity */

/* A node's (or the model owner's) ed25519 key pair, libsodium layout. */
struct sw_identity {
    uint8_t pk[32];
    uint8_t sk[64]; /* seed || pk */
};

int sw_identity_generate(struct sw_identity *out);
/* Key files are text: a header line and the 32-byte seed in hex, mode 0600. */
int sw_identity_save(const char *path, const struct sw_identity *id);
/* SW_ENOTFOUND when absent, SW_ECORRUPT when not a key file (err names the file). */
int sw_identity_load(const char *path, struct sw_identity *out, char *err, size_t err_len);
/* Loads DIR/node.key or creates it (and DIR) when absent; *created_out (may be NULL). */
int sw_identity_load_or_create(const char *cache_dir, struct sw_identity *out, int *created_out,
                               char *err, size_t err_len);
/* "5f2a…" — the first 4 hex digits and an ellipsis (UTF-8); out holds >= 16 bytes. */
const char *sw_node_id_short(const uint8_t id[SW_NODE_ID_LEN], char *out, size_t out_len);
/* Full 64-digit hex; out holds >= 65 bytes. */
const char *sw_node_id_hex(const uint8_t id[SW_NODE_ID_LEN], char *out);

/* ------------------------------------------------------ capability records */

/* What a node is doing with its shard. */
enum sw_phase {
    SW_PHASE_NONE = 0,      /* holds no shard (client, seeder, auto node still planning) */
    SW_PHASE_WAITING = 1,   /* shard missing, not fetching (--no-auto-fetch: waits for LOAD_SHARD) */
    SW_PHASE_FETCHING = 2,  /* downloading from the swarm */
    SW_PHASE_VERIFYING = 3, /* hashing a complete file */
    SW_PHASE_LOADING = 4,   /* opening the compute stage */
    SW_PHASE_LOADED = 5,    /* serving */
    SW_PHASE_FAILED = 6,    /* could not load (detail in the node's log) */
    SW_PHASE_DRAINED = 7,   /* stopped serving on the owner's DRAIN: keeps and seeds the file,
                               takes no shard on its own until a LOAD_SHARD */
    SW_PHASE_COUNT_
};
const char *sw_phase_name(enum sw_phase p); /* "loaded", "fetching", ... */

/* A node's signed description of itself. Each change bumps seq and is re-signed. */
struct sw_cap {
    uint8_t node_id[SW_NODE_ID_LEN];
    uint8_t info_hash[20];    /* the model this record is about */
    uint64_t seq;             /* strictly increasing per node; lower/equal is ignored */
    int32_t shard;            /* -1: none */
    uint8_t phase;            /* enum sw_phase */
    uint8_t seed_all;         /* holds every shard file as a seeder (not loaded) */
    uint8_t movable;          /* the planner may move it (--shard auto); pinned nodes stay */
    uint64_t bytes_done, bytes_total; /* download progress of the shard file */
    uint64_t rate_bps;        /* download rate, bytes/s */
    uint64_t eta_ms;          /* 0: unknown */
    int32_t layer_first, layer_last; /* -1 when unknown */
    uint64_t mem_free;        /* bytes available for a shard */
    uint32_t threads;
    uint32_t tokens_per_s_milli; /* measured tokens/s x 1000 (0: not measured) */
    uint32_t queue;           /* sessions waiting at this node */
    char api_addr[64];        /* "127.0.0.1:8080" or "" */
    char listen_addr[64];     /* BitTorrent listen "host:port" or "" */
    uint32_t n_neighbours;    /* directly connected nodes (first SW_SWARM_NB_PREFIX bytes of ids) */
    uint8_t neighbours[SW_SWARM_MAX_NEIGHBOURS][SW_SWARM_NB_PREFIX];
    /* the loaded stage's GPU (docs/gpu.md), written only when it holds layers: the name,
     * its memory, the layers on it ("" / 0 / 0: CPU only) */
    char gpu[64];
    uint64_t gpu_mem;
    uint32_t gpu_layers;
};

/* Appends the record's canonical bencoding, signed: d1:r<record>1:s64:<sig>e where
 * <record> is a dict with sorted keys (docs/swarm.md lists them) and sig is ed25519 over
 * the record's bytes by id (whose public key must equal cap->node_id). */
int sw_cap_encode(const struct sw_cap *cap, const struct sw_identity *id, struct sw_buf *out);
/* Parses and verifies a signed record from outside bytes. SW_ECORRUPT: malformed (err says
 * which field); SW_EPERM: unsigned or bad signature; SW_ETOOBIG: over SW_SWARM_MAX_RECORD. */
int sw_cap_decode(const uint8_t *p, size_t len, struct sw_cap *out, char *err, size_t err_len);

/* ---------------------------------------------------------------- the view */

/* A node as seen from here. */
struct sw_view_node {
    struct sw_cap cap;
    int self;              /* this node */
    int direct;            /* a live peer connection to it */
    uint32_t rtt_us;       /* measured round trip (direct only; 0 unknown) */
    uint64_t last_seen_ms; /* last fresh record or keep-alive */
    int live;              /* self, or seen within the expiry and not departed */
};

struct sw_view_config {
    uint32_t n_shards;
    uint8_t self_id[SW_NODE_ID_LEN];
    uint8_t info_hash[20];
    uint64_t expiry_ms;    /* no fresh record/keep-alive for this long: departed. 0: 4000 */
    uint32_t max_nodes;    /* 0: 4096 */
};

struct sw_view_stats {
    uint64_t accepted, stale, malformed, unsigned_or_bad_sig, wrong_model, departed, full;
};

struct sw_view;

int sw_view_new(const struct sw_view_config *cfg, struct sw_view **out);
void sw_view_free(struct sw_view *v);
uint32_t sw_view_n_shards(const struct sw_view *v);

/* Our own record (never expires). The wire bytes are copied (may be NULL in tests). */
int sw_view_set_self(struct sw_view *v, const struct sw_cap *cap, const uint8_t *wire,
                     size_t wire_len, uint64_t now_ms);

enum sw_view_result {
    SW_VIEW_FRESH = 1,     /* a new node, a revived one, or a changed shard/phase/role: relay, recompute */
    SW_VIEW_REFRESH = 2,   /* newer seq, same shard/phase/role (a keep-alive, progress): relay */
    SW_VIEW_STALE = 0,     /* lower/equal seq: ignored */
};
/* Feeds a signed record from outside. Returns SW_VIEW_FRESH, _REFRESH or _STALE, or a negative
 * sw_err for records that were dropped and counted: SW_ECORRUPT (malformed), SW_EPERM
 * (unsigned / bad signature), SW_EINVAL (another model, or our own id), SW_ETOOBIG (view
 * full). cap_out (may be NULL) receives the decoded record on FRESH and REFRESH. */
int sw_view_receive(struct sw_view *v, const uint8_t *wire, size_t len, uint64_t now_ms,
                    struct sw_cap *cap_out);
/* A direct connection to node id, which proved its id, opened (connected = 1: the node is
 * live) or closed (0). A close marks the node departed at once: only a record with a higher
 * seq (relayed by someone who still reaches it) or a new proven connection brings it back. */
void sw_view_set_direct(struct sw_view *v, const uint8_t id[SW_NODE_ID_LEN], int connected,
                        uint64_t now_ms);
void sw_view_set_rtt(struct sw_view *v, const uint8_t id[SW_NODE_ID_LEN], uint32_t rtt_us);
/* A keep-alive from a direct peer: refreshes its liveness without a new record. */
void sw_view_touch(struct sw_view *v, const uint8_t id[SW_NODE_ID_LEN], uint64_t now_ms);
/* Marks nodes unheard of for expiry_ms as departed; returns how many departed now. */
uint32_t sw_view_expire(struct sw_view *v, uint64_t now_ms);

size_t sw_view_count(const struct sw_view *v);            /* entries, live or not */
const struct sw_view_node *sw_view_at(const struct sw_view *v, size_t i);
const struct sw_view_node *sw_view_find(const struct sw_view *v, const uint8_t id[SW_NODE_ID_LEN]);
/* The stored signed wire bytes of a node's latest record (for relaying); NULL if none. */
const uint8_t *sw_view_wire(const struct sw_view *v, const uint8_t id[SW_NODE_ID_LEN], size_t *len_out);
struct sw_view_stats sw_view_stats(const struct sw_view *v);
size_t sw_view_n_live(const struct sw_view *v);

/* Gossip: should the record of `origin`, just received from `from` (NULL: our own), be
 * relayed to direct peer `to`? No when `to` is the origin or the sender, or when the
 * origin's record lists `to` as its neighbour (it has the record already). */
int sw_view_should_relay(const struct sw_view *v, const uint8_t origin[SW_NODE_ID_LEN],
                         const uint8_t *from, const uint8_t to[SW_NODE_ID_LEN]);

/* ------------------------------------------------------------- readiness */

struct sw_shard_view {
    uint32_t shard;
    uint32_t n_announced;   /* live nodes naming this shard (any phase) */
    uint32_t n_loaded;      /* live nodes with it loaded */
    uint32_t n_seeders;     /* live --seed-all nodes (hold the file, not loaded) */
    int has_best;
    uint8_t best[SW_NODE_ID_LEN]; /* best loaded live node (valid when has_best) */
};

/* Ready iff every shard 0..N-1 has at least one live node with it loaded. */
int sw_view_ready(const struct sw_view *v);
/* Shard summary; best node chosen among loaded, live nodes only, by (lower rtt — ourselves
 * 0, relayed nodes unknown = last —, shorter queue, higher tokens/s, node id). */
int sw_view_shard(const struct sw_view *v, uint32_t shard, struct sw_shard_view *out);
/* SW_ENOTFOUND when no live node has the shard loaded. */
int sw_view_best_node(const struct sw_view *v, uint32_t shard, uint8_t id_out[SW_NODE_ID_LEN]);
/* Why a shard blocks readiness, e.g. "shard 3: no node has it loaded; node 5f2a…
 * downloading 47% at 80 MB/s, ETA 2m10s" or "shard 6: no node announced it".
 * Returns 1 (blocking, text written), 0 (not blocking, out = ""). */
int sw_view_shard_reason(const struct sw_view *v, uint32_t shard, char *out, size_t out_len);
/* Every blocking reason joined by " | " (capped, "…" when cut); returns the count. */
uint32_t sw_view_reasons(const struct sw_view *v, char *out, size_t out_len);
/* Shards with at least one announcing live node ("discovered k/N"). */
uint32_t sw_view_n_discovered(const struct sw_view *v);

/* --------------------------------------------------------------- planner */

/* Deterministic spreading: a 64-bit hash of (node id, shard) (first 8 bytes of
 * SHA-256(id || be32(shard))). Lower hash = higher priority. */
uint64_t sw_plan_hash(const uint8_t id[SW_NODE_ID_LEN], uint32_t shard);

struct sw_plan_input {
    const uint64_t *shard_bytes; /* n_shards sizes (may be NULL: everything fits) */
    uint64_t mem_budget;         /* bytes this node may use for a shard (0: unlimited) */
    uint64_t gpu_mem;            /* this node's GPU memory free for weights (0: no GPU) */
};

/* `--shard auto` at start: the shard with the fewest loaded replicas, then fewest nodes
 * working on it, that fits memory; then, for a node with a GPU, one whose bytes its device
 * holds whole (every layer on the GPU); ties by sw_plan_hash(self, shard). Returns the
 * shard, or SW_ENOTFOUND when none fits. */
int sw_plan_pick(const struct sw_view *v, const struct sw_plan_input *in);
/* Re-planning for an auto node holding or fetching a shard. When some shard has no live node
 * working on it (fetching, verifying, loading or loaded: a node waiting for LOAD_SHARD or
 * one that failed does not count) — unserved — and this node is a spare — another node keeps its shard
 * (the keeper: a pinned node first, then a loaded one, then lowest sw_plan_hash) — movable
 * spares are matched to unserved shards in a deterministic order every node computes alike
 * (claimers before loaded spares). Returns the shard to move to, or -1 to stay. */
int sw_plan_review(const struct sw_view *v, const struct sw_plan_input *in);

/* ------------------------------------------------- owner commands: LOAD_SHARD, DRAIN */

/* A command from the model owner: "node `target`, load shard `shard`" (LOAD_SHARD) or
 * "node `target`, stop serving: hand your sessions over, unload, keep seeding" (DRAIN).
 * Wire form: d1:c<cmd>1:s64:<sig>e, cmd = d1:h20:<info-hash>1:n16:<nonce>1:o32:<owner pk>
 * [2:shi<shard>e]1:t<type>2:to32:<target>2:tsi<unix s>ee; sig by the owner over <cmd>.
 * type is "load_shard" (sh required) or "drain" (no sh; ignored when present). */
enum sw_cmd_type {
    SW_CMD_LOAD_SHARD = 0,
    SW_CMD_DRAIN = 1,
    SW_CMD_COUNT_
};
const char *sw_cmd_type_name(enum sw_cmd_type t); /* "load_shard", "drain" */

struct sw_load_cmd {
    uint8_t type;           /* enum sw_cmd_type (0: LOAD_SHARD, so old callers are unchanged) */
    uint8_t info_hash[20];
    uint8_t nonce[16];
    uint8_t owner[32];
    uint32_t shard;         /* LOAD_SHARD only (0 for DRAIN) */
    uint8_t target[SW_NODE_ID_LEN];
    uint64_t ts_s;          /* wall clock, seconds */
};

/* Fills nonce (random) and owner from `owner`, signs, appends the wire form. */
int sw_load_cmd_sign(struct sw_load_cmd *cmd, const struct sw_identity *owner, struct sw_buf *out);
/* Parses (no trust decision). SW_ECORRUPT malformed (an unknown type is named in err);
 * SW_EPERM no/short signature. */
int sw_load_cmd_decode(const uint8_t *p, size_t len, struct sw_load_cmd *out, char *err,
                       size_t err_len);

/* The receiving side: checks owner key, signature, model, target, freshness and replay. */
struct sw_cmd_guard;
struct sw_cmd_guard_config {
    const uint8_t *owner_pk;   /* from the torrent's info dict; NULL: every command refused */
    uint8_t self_id[SW_NODE_ID_LEN];
    uint8_t info_hash[20];
    uint64_t max_skew_s;       /* accepted |now - ts|; 0: 300 */
    const char *nonce_file;    /* where the nonces seen within max_skew_s are kept, so that a
                                  replay stays refused after a restart (<cache>/owner-nonces);
                                  NULL: memory only. Copied. */
};
int sw_cmd_guard_new(const struct sw_cmd_guard_config *cfg, struct sw_cmd_guard **out);
void sw_cmd_guard_free(struct sw_cmd_guard *g);
/* 0: accepted (cmd_out filled, nonce remembered). SW_EPERM: refused, `reason` says why
 * ("unsigned", "signed by a foreign key …", "bad signature", "addressed to node …",
 * "replayed", "too old"/"from the future", "for another model"). SW_ECORRUPT malformed.
 * SW_ENOTFOUND: valid but for another node (forward it; not remembered). */
int sw_cmd_guard_check(struct sw_cmd_guard *g, const uint8_t *p, size_t len, uint64_t now_wall_s,
                       struct sw_load_cmd *cmd_out, char *reason, size_t reason_len);
/* Records a command's nonce (a relay, before forwarding it): 0 when new, SW_EEXIST when the
 * nonce was seen already (accepted or forwarded here, this run or, with nonce_file, before). */
int sw_cmd_guard_remember(struct sw_cmd_guard *g, const struct sw_load_cmd *cmd);
/* Verifies only signature/owner/model/freshness (for forwarding nodes). */
int sw_cmd_guard_check_relay(const struct sw_cmd_guard *g, const uint8_t *p, size_t len,
                             uint64_t now_wall_s, struct sw_load_cmd *cmd_out, char *reason,
                             size_t reason_len);

/* ------------------------------------------------------ extension messages */

/* Every payload on the SW_SWARM_EXT_NAME extension starts with one kind byte. */
enum sw_msg_kind {
    SW_MSG_CAP = 'C',      /* body: a signed record (own or relayed) */
    SW_MSG_LOAD = 'L',     /* body: a signed owner command, LOAD_SHARD or DRAIN (flooded toward
                            * its target) */
    SW_MSG_PING = 'P',     /* body: 8-byte token; answered with PONG (keep-alive + RTT) */
    SW_MSG_PONG = 'Q',     /* body: the PING's token */
    SW_MSG_BYE = 'B',      /* body: empty; the sender is leaving (SIGINT) */
    SW_MSG_PIPE = 'S',     /* body: pipeline session traffic (src/swarm/pipeline*.c) */
    SW_MSG_HELLO = 'H',    /* body: 32-byte challenge: "prove you hold the key of your record" */
    SW_MSG_PROOF = 'V',    /* body: node id (32) || ed25519 sig (64) over SW_SWARM_AUTH_CTX ||
                            * info-hash || challenge; binds the connection to that node id */
};
#define SW_SWARM_AUTH_CTX "shardswarm-auth-v1"

/* The PROOF for a challenge (body of SW_MSG_PROOF, 96 bytes). */
void sw_swarm_auth_sign(const struct sw_identity *id, const uint8_t info_hash[20],
                        const uint8_t challenge[32], uint8_t proof_out[96]);
/* 0 when proof answers challenge for info_hash (id_out: the proven node id), else SW_EPERM. */
int sw_swarm_auth_verify(const uint8_t proof[96], const uint8_t info_hash[20],
                         const uint8_t challenge[32], uint8_t id_out[SW_NODE_ID_LEN]);

/* ------------------------------------------------------------ shard files */

struct sw_bt_metainfo;

/* Read-only check of one shard file against the torrent's piece hashes (SHA-1, BEP 3),
 * hashing on the caller's thread. path: the file to read (final name or ".part").
 * good/total: pieces that verify / pieces checked (pieces shared with another real file are
 * skipped; BEP 47 pad files make that rare). Returns 0 (all good), SW_ECORRUPT (some bad:
 * msg says how many), SW_ENOTFOUND, SW_EIO, or SW_ERANGE (size differs from the torrent). */
int sw_shard_file_check(const struct sw_bt_metainfo *mi, uint32_t file, const char *path,
                        uint32_t *good_out, uint32_t *total_out, char *msg, size_t msg_len);
/* The same, also filling good_map (one byte per piece of the file, 1 = verified; NULL
 * harmless). A file of the wrong size still gets a map (pieces wholly inside it are
 * hashed, the rest are 0) with SW_ERANGE; a missing one all 0 with SW_ENOTFOUND. */
int sw_shard_file_check_map(const struct sw_bt_metainfo *mi, uint32_t file, const char *path, uint8_t *good_map,
                            uint32_t *good_out, uint32_t *total_out, char *msg, size_t msg_len);

/* ---------------------------------------------------------------- the node */

struct sw_node;
struct uv_loop_s;

struct sw_node_config {
    const char *model;          /* .torrent path or magnet URI */
    const char *cache_dir;      /* node.key, shards/, resume data */
    int32_t shard;              /* >= 0 fixed; -1 none; -2 auto */
    int no_auto_fetch;
    int seed_all;
    uint16_t listen_port;       /* BitTorrent TCP + DHT UDP; 0: any */
    const char *bind_host;      /* their address: an IPv4/IPv6 literal; NULL: 0.0.0.0 (borrowed,
                                 * read by sw_node_start) */
    uint16_t api_port;          /* 0: no HTTP API */
    const char *api_host;       /* NULL: 127.0.0.1 */
    const char *const *bootstrap; /* "host:port" strings */
    size_t n_bootstrap;
    uint32_t status_interval_ms; /* 0: 5000 */
    uint32_t threads;           /* compute threads; 0: all CPUs */
    uint32_t machine_cores;     /* cores this machine's nodes share (the core lease in
                                   infer.h); 0: the CPUs online */
    int no_core_lease;          /* compute with `threads` always, whatever other nodes do */
    const char *cores_dir;      /* the lease's folder; NULL: the default */
    const char *gpu;            /* the stage's Vulkan device (infer.h opts.gpu); NULL: CPU */
    uint32_t gpu_layers;        /* at most this many layers on it; 0: as many as fit */
    int verify;                 /* rehash the local shard at start */
    uint32_t watch_ms;          /* TESTING: the loaded file's stat poll period; 0: 1000 (inotify
                                   and each compute step's check are not affected) */
    uint32_t hash_delay_ms;     /* TESTING: hashing a file found on disk sleeps this long after
                                   each piece but the last (a long `verifying` phase) */
    const uint8_t *swarm_key;   /* a private swarm's 32-byte key (copied; docs/protocol.md): peer
                                   connections and DHT datagrams sealed, the DHT info-hash
                                   derived from it. NULL: a public swarm. */
    uint64_t msg_budget;        /* bytes of incoming messages buffered at once, all peers
                                   together (sw_bt_session_opts.msg_budget); 0: 256 MiB */
};

/* Creates the node on `loop` (borrowed). Nothing runs until sw_node_start. */
int sw_node_new(struct uv_loop_s *loop, const struct sw_node_config *cfg, struct sw_node **out,
                char *err, size_t err_len);
/* Startup shard check, then joins the network. */
int sw_node_start(struct sw_node *n, char *err, size_t err_len);
/* Tells peers we leave and closes every handle; the loop then runs dry. `done` (may be
 * NULL) is called once everything is closed. */
void sw_node_stop(struct sw_node *n, void (*done)(void *ud), void *ud);
void sw_node_free(struct sw_node *n);
/* True when the node stopped itself on a fatal error (e.g. unusable metadata from a magnet);
 * the reason was logged. */
int sw_node_failed(const struct sw_node *n);

/* For the pipeline sessions (issue 7) and the API: */
struct uv_loop_s *sw_node_loop(struct sw_node *n);
const struct sw_view *sw_node_view(const struct sw_node *n);
const uint8_t *sw_node_id(const struct sw_node *n);
/* Sends an extension payload (kind byte first) to a directly connected node.
 * priority: jump ahead of queued piece data. SW_ENOTFOUND when not connected. */
int sw_node_send(struct sw_node *n, const uint8_t id[SW_NODE_ID_LEN], const void *payload,
                 size_t len, int priority);
/* The HTTP API's address for our record (when it was bound after the node started, e.g.
 * on a port the kernel chose). port 0: none. */
void sw_node_set_api_addr(struct sw_node *n, const char *host, uint16_t port);
/* Sessions waiting at this node (the record's `q`, a tie-break for the best node); the
 * record is re-signed and pushed when the value changes. */
void sw_node_set_queue(struct sw_node *n, uint32_t queue);
/* Called on the loop thread each time the status JSON is rebuilt (about every second and on
 * changes) with its root object (a jansson json_t), to add sections such as "pipeline". */
struct json_t;
void sw_node_set_status_extra(struct sw_node *n, void (*fn)(void *ud, struct json_t *root), void *ud);
/* Receives SW_MSG_PIPE payloads (kind byte included, borrowed for the call). */
typedef void (*sw_node_pipe_fn)(void *ud, const uint8_t from[SW_NODE_ID_LEN],
                                const uint8_t *payload, size_t len);
void sw_node_set_pipe_handler(struct sw_node *n, sw_node_pipe_fn fn, void *ud);
/* The most bytes an authenticated node `from` may send us in one SW_MSG_PIPE message now
 * (what the pipeline sessions open here allow); asked at each large message's length
 * prefix. Without it (or before a peer proved its id) a message of the extension is capped
 * at SW_SWARM_MSG_SMALL. Loop thread. */
#define SW_SWARM_MSG_SMALL (1u << 20)
typedef size_t (*sw_node_msg_cap_fn)(void *ud, const uint8_t from[SW_NODE_ID_LEN]);
void sw_node_set_msg_cap(struct sw_node *n, sw_node_msg_cap_fn fn, void *ud);
/* Called when a node's direct connection comes up (up = 1: it can be sent to) or goes down
 * (0: connection closed or BYE) — e.g. for pipeline failover. Loop thread. */
typedef void (*sw_node_peer_fn)(void *ud, const uint8_t id[SW_NODE_ID_LEN], int up);
void sw_node_set_peer_handler(struct sw_node *n, sw_node_peer_fn fn, void *ud);
/* Before the node frees or swaps its compute stage (LOAD_SHARD or re-planning to another
 * shard, a reload, stopping) it calls fn(ud, reason, done, done_ud) and frees the stage only
 * in done(done_ud), which fn must call exactly once, possibly at once: when no compute job
 * (a pipeline session's step) runs on the stage any more. sw_node_stage() is NULL from the
 * call on. sw_pipe_node_attach registers the pipeline here. Loop thread. */
typedef void (*sw_node_release_fn)(void *ud, const char *reason, void (*done)(void *done_ud), void *done_ud);
void sw_node_set_stage_release(struct sw_node *n, sw_node_release_fn fn, void *ud);
/* Called on every change of the view (records, departures, readiness). */
typedef void (*sw_node_change_fn)(void *ud);
void sw_node_set_change_handler(struct sw_node *n, sw_node_change_fn fn, void *ud);
/* Hands a signed owner command (LOAD_SHARD or DRAIN) to the node (from the API): applied or
 * forwarded. 0 accepted (or forwarded, or a no-op such as draining a drained node; reason
 * says which), SW_EPERM refused, SW_ECORRUPT malformed (reason written). A DRAIN fails the
 * sessions on the stage (their entries fail over), releases the stage through the
 * stage-release hook, keeps the file seeded and sets phase "drained" until a LOAD_SHARD. */
int sw_node_submit_load(struct sw_node *n, const uint8_t *wire, size_t len, char *reason,
                        size_t reason_len);
/* The status as JSON text (what /swarm/status serves); malloc'd, caller frees. */
char *sw_node_status_json(struct sw_node *n);
/* The loaded compute stage, or NULL (struct sw_stage from infer.h). */
struct sw_stage *sw_node_stage(struct sw_node *n);
/* After a compute step on stage st and before its output is used: is the shard file the
 * stage maps still the one that was verified (an fstat of the file held open since it was
 * loaded: size, mtime, ctime, link count; ~1 µs)? 0: yes (or st is not the node's stage);
 * else SW_ESTATE (the entry fails over, as from a dropped stage) with msg naming the file and the change, and the node handles the
 * change as its file watch does (releases the stage, re-verifies). Loop thread. */
int sw_node_stage_check(struct sw_node *n, const struct sw_stage *st, char *msg, size_t cap);
/* The torrent's metainfo once the model is resolved (at once from a .torrent; after the
 * metadata exchange from a magnet), else NULL. Borrowed: valid while the node lives. */
const struct sw_bt_metainfo *sw_node_metainfo(const struct sw_node *n);
/* The shard file this node serves: loaded (its stage is up, so the file was verified) —
 * shard index, torrent file index, path (borrowed until the shard changes; each out may be
 * NULL). SW_ENOTFOUND when no shard is loaded. Loop thread. */
int sw_node_shard_file(struct sw_node *n, int32_t *shard_out, uint32_t *file_out, const char **path_out);


/* ------------------------------------------------------- pipeline sessions */

/* Pipeline inference across the swarm (issue 7; docs/pipeline.md): an entry node opens a
 * session along a route (the best live loaded node per shard), hidden states go stage to
 * stage, the last stage samples. The engine and its wire codec are internal
 * (pipeline.h); this is what a host (the CLI, the HTTP API) uses. */

#define SW_PIPE_MAX_TOKENS 16384u      /* tokens in one TOKENS/HIDDEN message (prefill chunk) */
#define SW_PIPE_MAX_STOP 16u           /* stop token ids of a session */
#define SW_PIPE_MAX_BLOB 65536u        /* sampler state bytes */
#define SW_PIPE_MAX_SPEC_K 15u         /* drafted tokens per speculative step */

enum sw_pipe_dtype { SW_PIPE_F32 = 0, SW_PIPE_F16 = 1 }; /* hidden states on the wire */

/* What an entry session reports (on the node's loop thread). */
struct sw_pipe_token_ev {
    uint64_t session;
    int32_t token;
    uint32_t pos;              /* position of this token in the history */
    uint32_t index;            /* 0 for the first generated token */
    const float *logits;       /* n_logits floats when the session asked for them, else NULL */
    uint32_t n_logits;
    uint64_t ttft_us;          /* open -> first token */
    uint64_t elapsed_us;       /* open -> this token */
    double tokens_per_s;       /* generated tokens after the first / time since the first */
    uint32_t reused;           /* prompt positions the route took from its prefix caches */
    int last;                  /* 1: the session ends with this token (limit or stop token) */
    const uint8_t *blob;       /* the sampler state after this token (its log probabilities:
                                  sw_sampler_blob_logprobs); borrowed for the call */
    uint32_t blob_len;
};

struct sw_pipe_session_cb {
    void (*on_token)(void *ud, const struct sw_pipe_token_ev *ev);
    /* The session is over: rc 0 (finished: limit or stop token), SW_ECLOSED (cancelled),
     * or a negative sw_err with a message (e.g. "shard 2: no live node has it loaded").
     * No more callbacks follow for this session. */
    void (*on_end)(void *ud, uint64_t session, int rc, const char *msg);
    void *ud;
};

/* Opening a session from the entry. */
struct sw_pipe_request {
    const int32_t *prompt;     /* token ids (copied) */
    uint32_t n_prompt;
    uint32_t n_predict;        /* tokens to generate (>= 1) */
    const uint8_t *sampler_blob; /* sw_sampler_save of a sampler that has accepted the
                                  prompt (copied); the last stage loads it */
    size_t sampler_blob_len;
    const int32_t *stop;       /* stop token ids (EOS/EOT...), at most SW_PIPE_MAX_STOP */
    uint32_t n_stop;
    uint8_t dtype;             /* enum sw_pipe_dtype on the wire */
    uint32_t chunk;            /* prefill tokens per message; 0: 64 */
    uint32_t n_ctx;            /* 0: n_prompt + n_predict */
    int want_logits;           /* TOKEN_OUT carries logits (tests; costs n_vocab x 4 bytes) */
    int ignore_eos;
    uint32_t deadline_ms;      /* no sign of life from the route (OPEN_OK, PROGRESS, a token) this
                                  long: the route is rebuilt; 0: 5000 */
    int no_prefix_cache;       /* compute the whole prompt: no reuse of the stages' prefix
                                  caches, and nothing of this session kept in them */
    uint32_t spec_k;           /* speculative decoding: the last stage drafts up to this many
                                  tokens per step by prompt lookup, all stages compute them in
                                  one step, the last keeps those its sampler agrees with (the
                                  same tokens, greedy or sampled); 0: off; at most
                                  SW_PIPE_MAX_SPEC_K */
};

/* ------------------------------------------------- pipeline on a node */

struct sw_pipe_node;

struct sw_pipe_node_opts {
    uint32_t max_sessions;     /* sessions at this node's stage; 0: 32 */
    uint64_t max_kv_bytes;     /* KV cache + kept outputs of all stage sessions; 0: unlimited
                                  (a session that does not fit is refused: the entry tries a
                                  replica) */
    uint32_t idle_ms;          /* a stage session idle this long is evicted; 0: 300000 */
    uint32_t step_delay_us;    /* testing only: each compute step also sleeps this long on
                                  its worker (a slow stage, so tests can kill it mid-way) */
    uint32_t coalesce_pct;     /* sw_pipe_config.coalesce_pct: 0 default (150), 1000 never */
    double spot_rate;          /* entry: chance that a generated token starts a spot check;
                                  0: the default (1/256), negative: no checks */
    uint32_t prefix_entries;   /* sw_pipe_config.prefix_entries: 0 default (8), UINT32_MAX off */
    uint32_t hop_delay_ms;     /* benchmarks only: every pipeline message to another node waits
                                  this long before it is written (a link's latency, where tc
                                  netem is not available); 0: none */
};
/* Parses a spot-check rate: "off" (-1), "1/N" (N >= 1) or a number in (0, 1]. 0 or SW_EINVAL. */
int sw_spot_parse_rate(const char *s, double *out);

/* Attaches a pipeline engine to a node: SW_MSG_PIPE messages go to it, its messages go out
 * with priority on the peer connections, compute runs on libuv worker threads, departures
 * in the view trigger failover, the node's stage sessions become its record's queue (`q`).
 * Takes the node's pipe, change and stage-release handlers (another change handler goes
 * through sw_pipe_node_set_change_chain). opts may be NULL. Call on the node's loop thread
 * after sw_node_new (`shardswarm node` does it after sw_node_start). */
int sw_pipe_node_attach(struct sw_node *n, const struct sw_pipe_node_opts *opts,
                        struct sw_pipe_node **out);
/* Chains another change handler (the API's) after ours. */
void sw_pipe_node_set_change_chain(struct sw_pipe_node *pn, void (*fn)(void *ud), void *ud);
/* Stops timers; jobs in flight finish first (the loop must keep running until `done`);
 * then the engine is freed (entry sessions still open end with SW_ECLOSED). Detach before
 * sw_node_stop. */
void sw_pipe_node_detach(struct sw_pipe_node *pn, void (*done)(void *ud), void *ud);
/* Fails the sessions on this node's stage (ERROR with `reason` to their entries, which fail
 * over to a replica) and calls `done` (on the loop, possibly at once) once no compute job
 * runs any more; only then may the stage be freed. The node calls it through its
 * stage-release hook; `shardswarm node` also calls it when leaving. */
void sw_pipe_node_release_stage(struct sw_pipe_node *pn, const char *reason, void (*done)(void *ud), void *ud);

/* The programmatic entry point (HTTP API, CLI): opens a session from this node as entry,
 * on the loop thread. The route is chosen at once (the best live, loaded, directly
 * connected node per shard); *session_out names the session; callbacks follow. Returns 0,
 * SW_EINVAL (bad request), SW_ENOTFOUND (some shard has no live loaded node: msg names
 * it), SW_ESTATE (model not resolved yet, or detaching). sw_pipe_node_cancel: on_end
 * (SW_ECLOSED) follows at once; SW_ENOTFOUND for an unknown session. */
int sw_pipe_node_open(struct sw_pipe_node *pn, const struct sw_pipe_request *req,
                      const struct sw_pipe_session_cb *cb, uint64_t *session_out, char *msg,
                      size_t msg_len);
int sw_pipe_node_cancel(struct sw_pipe_node *pn, uint64_t session);

/* The same from ANY thread (the HTTP API's): the request is copied and handed to the loop
 * thread; callbacks then run on the loop thread. A failed open is reported through on_end
 * (session 0). *ticket_out names the request for sw_pipe_node_cancel_async. Returns 0
 * (queued), SW_ENOMEM, SW_EINVAL, SW_ESTATE (detaching). */
int sw_pipe_node_open_async(struct sw_pipe_node *pn, const struct sw_pipe_request *req,
                            const struct sw_pipe_session_cb *cb, uint64_t *ticket_out);
/* Cancels what a ticket opened (or will open), from any thread: on_end(SW_ECLOSED). */
int sw_pipe_node_cancel_async(struct sw_pipe_node *pn, uint64_t ticket);

/* ------------------------------------ shard headers: the tokenizer for light clients */

/* Every shard is a GGUF carrying the model's whole metadata (tokenizer, chat template). A
 * node that holds no shard asks a live loaded node for the first bytes of its shard file
 * (HEADER_GET / HEADER, docs/pipeline.md "Light clients") and trusts them only after every
 * piece they cover matches the torrent's SHA-1 piece hashes (BEP 3). */

struct sw_gguf;

/* A verified shard header. */
struct sw_shard_header {
    uint8_t node[SW_NODE_ID_LEN]; /* the node that sent it */
    int32_t shard;                /* the file's shard index (-1: not a shard file) */
    uint32_t file;                /* index in the torrent's file list */
    uint8_t *bytes;               /* bytes [0, len) of that file, every piece verified, then
                                     the GGUF tensor count cleared (so the metadata opens
                                     without the tensor data); owned */
    size_t len;
    uint32_t n_pieces;            /* pieces verified */
    struct sw_gguf *gguf;         /* the metadata over `bytes` (no tensors): sw_tok_from_gguf,
                                     sw_gguf_find("tokenizer.chat_template"), ... */
    uint64_t elapsed_us;          /* from the start of the fetch to the verified reply (with
                                     any wait for the metadata or for a loaded node) */
    uint64_t reply_us;            /* from asking the node that answered to its verified reply */
    uint32_t n_asked;             /* nodes asked (1: the first answer passed) */
};
void sw_shard_header_free(struct sw_shard_header *h); /* NULL harmless; closes gguf */

/* The bytes a node sends for torrent file `file` whose GGUF header (header, metadata,
 * tensor infos) is header_size bytes: rounded up to whole pieces of the torrent (so every
 * piece can be checked), at most the file's length. 0 for a bad file index. */
uint64_t sw_shard_header_span(const struct sw_bt_metainfo *mi, uint32_t file, uint64_t header_size);
/* Checks bytes [0, len) of torrent file `file` against the piece hashes. len must end on a
 * piece boundary or at the end of the file. A piece that runs into BEP 47 pad files is
 * completed with their zeros; one that holds bytes of another real file cannot be checked
 * from these bytes and fails. Returns 0 (*n_pieces_out checked, may be NULL), SW_ECORRUPT
 * (piece k differs: msg names it), SW_ERANGE (a length that is not whole pieces, or past the
 * file), SW_EUNSUPPORTED (a piece shared with another file), SW_EINVAL (bad file index). */
int sw_shard_header_verify(const struct sw_bt_metainfo *mi, uint32_t file, const uint8_t *bytes, size_t len,
                           uint32_t *n_pieces_out, char *msg, size_t msg_len);
/* Opens the metadata of GGUF header bytes (a whole shard need not be there): clears the
 * tensor count in `bytes` (GGUF v2/v3 header, offset 8), then sw_gguf_open_mem; *out
 * borrows bytes. SW_ECORRUPT when the metadata runs past len (err says where). */
int sw_shard_header_open(uint8_t *bytes, size_t len, struct sw_gguf **out, char *err, size_t err_len);

/* The end of a fetch (loop thread): rc 0 with h (ownership passes to the callee), or
 * SW_ETIMEDOUT (no verified header within wait_ms: msg lists each node asked and what was
 * wrong, or says that no live node has a shard loaded), SW_ECLOSED (cancelled, or the
 * node stopping), with h NULL. */
typedef void (*sw_shard_header_fn)(void *ud, int rc, struct sw_shard_header *h, const char *msg);
/* Fetches a verified shard header from the swarm: asks the live, directly connected nodes
 * with a shard loaded, nearest first, one at a time; a reply that does not verify, an
 * error, a lost connection or 10 s of silence moves on to the next node. Waits (up to
 * wait_ms; 0: 60 s) while the model is not resolved or no such node is there yet. Loop
 * thread; *id_out (may be NULL) names the fetch for sw_pipe_node_fetch_cancel. */
int sw_pipe_node_fetch_header(struct sw_pipe_node *pn, uint32_t wait_ms, sw_shard_header_fn fn, void *ud,
                              uint64_t *id_out);
int sw_pipe_node_fetch_cancel(struct sw_pipe_node *pn, uint64_t id);

#endif
