/* node_int.h — what the files of the swarm node (node*.c) share: the node and peer structs,
 * and the sw__node_* calls between node.c, node_peers.c, node_shard.c and node_status.c.
 * Not for use outside src/swarm/node*.c. */
#ifndef SW_NODE_INT_H
#define SW_NODE_INT_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "bt/bt.h"
#include "dht/dht.h"
#include "gguf/gguf.h"
#include "infer/infer.h"
#include "net/noise.h"
#include "swarm/swarm.h"

#define TICK_MS 250
#define REFRESH_MS 1000       /* own record re-signed and pushed: keep-alive for relays too */
#define PING_MS 2000
#define POLL_MS 500           /* folder poll fallback */
#define REJOIN_MS 3000
#define REPLAN_GRACE_MS 1500  /* an unserved shard must stay unserved this long */
#define AUTO_SETTLE_MS 1200   /* auto: listen this long after the first peer before picking */
#define AUTO_ALONE_MS 4000    /* auto: pick anyway after this long without peers */
#define UNREADY_DEBOUNCE_MS 300 /* a readiness loss is logged once it lasts this long */
#define WATCH_MS 1000         /* the loaded shard file is stat()ed this often (and on inotify) */


struct peer {
    struct sw_node *node;
    struct sw_bt_peer *bt;
    int has_id;
    uint8_t id[SW_NODE_ID_LEN];
    uint64_t ping_token, ping_sent_us;
    uint8_t *pending_hs;             /* record from a handshake that came before the metadata */
    size_t pending_len;
    int challenged, claimed;         /* HELLO sent; a handshake record named claim_id */
    uint8_t challenge[32];
    uint8_t claim_id[SW_NODE_ID_LEN];
    struct peer *next;
};

struct job {
    uv_work_t req;
    struct sw_node *node;
    int32_t shard;
    int32_t file;
    char path[1024];
    int verify;           /* hash the pieces first (file copied in by hand) */
    int measure_only;     /* time decode steps on `stage` (already loaded) */
    struct retired *retired; /* the node let go of the stage while it was being measured */
    uint32_t threads;
    /* results */
    struct sw_file_id fid;   /* the file as it was before it was hashed and opened */
    uint8_t *good_map;    /* verify: one byte per piece of the file, 1 = verified (owned) */
    int has_fid;
    int rc;
    uint32_t bad_pieces, n_pieces;
    struct sw_stage *stage;
    double tps;
    char msg[1600];
};

/* A compute stage the node let go of (another shard, a reload, stopping). Pipeline jobs or
 * the tokens/s measurement may still run on it: it is freed when the last user is done. */
struct retired {
    struct sw_stage *st;
    int refs;
};

/* A node whose authenticated connection the BitTorrent session replaced by another one to
 * the same peer: extension messages for it wait (bounded) until the new connection proves
 * the node id, instead of being lost. */
#define HOLD_MS 3000
#define HOLD_MAX_BYTES (16u << 20)
struct held_msg {
    struct held_msg *next;
    size_t len;
    uint8_t data[];
};
struct hold {
    struct hold *next;
    uint8_t id[SW_NODE_ID_LEN];
    uint64_t since_ms;
    size_t bytes;
    struct held_msg *qh, *qt;
};

struct load_req {            /* a LOAD_SHARD handed over from another thread (the API) */
    uint8_t *wire;
    size_t len;
    int done, rc;
    char reason[256];
    struct load_req *next;
};

struct sw_node {
    uv_loop_t *loop;
    struct sw_node_config cfg;
    char *model, *cache_dir, *shards_dir, *api_host;
    char **bootstrap;
    size_t n_bootstrap;
    struct sw_identity id;
    char id_short[16];
    uv_thread_t loop_thread;

    /* model */
    int is_magnet;
    struct sw_bt_magnet magnet;
    struct sw_bt_metainfo mi_file;   /* from a .torrent */
    const struct sw_bt_metainfo *mi; /* the torrent's (borrowed from the session) */
    uint8_t info_hash[20];
    uint8_t dht_ih[20];              /* what the DHT is asked for: info_hash, or in a private swarm
                                      * the key-derived one (sw_swarm_dht_infohash) */
    int private_swarm;
    uint8_t swarm_key[32];
    int model_ready;
    uint32_t n_shards;
    int32_t *shard_file;             /* shard -> file index */
    uint64_t *shard_bytes;
    int32_t *shard_lf, *shard_ll;
    int has_owner;
    uint8_t owner[32];

    /* engines */
    struct sw_bt_session *bt;
    struct sw_bt_torrent *t;
    struct sw_dht_uv *dht;
    uint16_t port;
    char local_ip[64];
    struct sw_view *view;
    struct sw_cmd_guard *guard;
    struct peer *peers;
    struct hold *holds;              /* nodes whose connection is being replaced */

    /* own state */
    struct sw_cap cap;
    struct sw_buf wire;
    int32_t shard;                   /* -1 none */
    int auto_mode, forced_fetch;
    int drained;                     /* the owner's DRAIN: no stage, no auto load until LOAD_SHARD */
    enum sw_phase phase;
    struct sw_stage *stage;
    struct job *job;                 /* verify/load in flight */
    int job_stale;                   /* the shard changed while the job ran */
    uint64_t watch_size, watch_mtime;
    int watch_tried;
    struct sw_file_id served_id;        /* the loaded file as it was when loaded (watched) */
    int watching;                    /* served_id stands for the file the stage maps */
    int served_fd1;                  /* watching: the file opened at watch_begin, fd + 1 (0: none) */
    uint64_t served_nlink;           /* its link count then (an unlink or a rename over it drops it) */
    int watch_due;                   /* a step's check saw a change: the next tick handles it */
    uint64_t steps_refused;          /* compute steps whose output was not used: the file changed */
    uint64_t last_watch;
    /* the BitTorrent storage hashing a file found on disk (at start, a recheck): progress */
    int hashing;
    uint32_t hash_file;
    const char *hash_path;           /* borrowed from the storage */
    uint64_t hash_t0_ms, hash_last_ms, hash_done, hash_total;
    uint64_t hash_json_ms;           /* the status JSON follows the hash every 100 ms */
    /* our shard's file cannot be written (disk full, read-only, folder gone): phase failed,
     * looked at again every second, fetched again when it can be written */
    struct {
        int on, code;
        char path[1100], dir[1024];
        uint64_t need, free;
        uint64_t next_ms;
        uint32_t retries;
    } diskerr;
    int32_t pre_final;               /* shard whose final-named file was whole before BT looked */
    int measure_pending;
    int failed;                      /* gave up (bad metadata): the CLI exits 1 */
    uint32_t queue;
    double tps;

    /* timers and handles */
    uv_timer_t tick;
    uv_fs_event_t fsev;
    int fsev_on;
    uv_async_t async;
    int handles_open;
    uint64_t started_ms, first_peer_ms, last_refresh, last_ping, last_poll, last_rejoin,
        last_status, last_getpeers, last_json;
    void (*status_extra)(void *ud, struct json_t *root); /* adds to the status JSON (loop thread) */
    void *status_extra_ud;
    int replan_target;
    uint64_t replan_since;
    int gpu_probed;            /* --gpu: the device probed once for the planner */
    uint64_t gpu_free;         /* its memory free for weights (0: none found) */

    /* status */
    char *last_sig;
    int was_ready, ever_ready;       /* was_ready: the last [READY]/"no longer ready" we logged */
    uint64_t unready_since;          /* not ready since (ms), not logged yet (debounce) */
    int dirty;                       /* view changed since the last status pass */

    /* cross-thread */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *status_json;
    struct load_req *loads;


    sw_node_pipe_fn pipe_fn;
    void *pipe_ud;
    sw_node_msg_cap_fn cap_fn;
    void *cap_ud;
    sw_node_change_fn change_fn;
    void *change_ud;
    sw_node_peer_fn peer_fn;
    void *peer_ud;
    sw_node_release_fn release_fn;   /* the pipeline: let go of the stage before it is freed */
    void *release_ud;
    void (*stop_done)(void *);
    void *stop_ud;
    int stopping;
};

/* node.c */
char *sw__node_xstrdup(const char *s);
void sw__node_mark_dirty(struct sw_node *n);
void sw__node_publish(struct sw_node *n, int changed);

/* node_peers.c */
int sw__node_n_conn_of(struct sw_node *n, const uint8_t id[SW_NODE_ID_LEN]);
size_t sw__node_n_swarm_peers(struct sw_node *n);
int sw__node_send_kind(struct peer *p, uint8_t kind, const uint8_t *body, size_t len);
void sw__node_hold_free(struct hold *h);
void sw__node_hold_expire(struct sw_node *n, uint64_t now_ms);
void sw__node_relay_record(struct sw_node *n, const uint8_t origin[SW_NODE_ID_LEN], const uint8_t *from,
                            const uint8_t *wire, size_t len);
void sw__node_connect_to_record(struct sw_node *n, const struct sw_cap *c);
void sw__node_on_ext_connected(void *ud, struct sw_bt_peer *bp);
void sw__node_authenticated(struct sw_node *n, struct peer *p, const uint8_t id[SW_NODE_ID_LEN]);
void sw__node_take_handshake_record(struct sw_node *n, struct peer *p, const uint8_t *rec, size_t len);
void sw__node_on_ext_handshake(void *ud, struct sw_bt_peer *bp, const uint8_t *dict, size_t len);
int sw__node_drained_marked(struct sw_node *n, int32_t *shard_out);
int sw__node_take_load(struct sw_node *n, struct peer *from, const uint8_t *wire, size_t len,
                        char *reason, size_t reason_len);
void sw__node_on_ext_message(void *ud, struct sw_bt_peer *bp, const uint8_t *payload, size_t len);
size_t sw__node_msg_cap(void *ud, struct sw_bt_peer *bp, size_t len);
void sw__node_on_ext_closed(void *ud, struct sw_bt_peer *bp, int reason);

/* node_shard.c */
void sw__node_retire_stage(struct sw_node *n, const char *reason);
void sw__node_start_measure(struct sw_node *n);
void sw__node_start_load(struct sw_node *n, int verify);
void sw__node_set_shard(struct sw_node *n, int32_t shard, const char *why);
void sw__node_check_folder(struct sw_node *n);
void sw__node_on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status);
void sw__node_plan(struct sw_node *n, uint64_t now);
void sw__node_watch_begin(struct sw_node *n, const struct sw_file_id *fid);
void sw__node_watch_check(struct sw_node *n);
void sw__node_watch_stop(struct sw_node *n);
void sw__node_disk_error(struct sw_node *n, const struct sw_bt_event *ev);
void sw__node_disk_retry(struct sw_node *n, uint64_t now);
void sw__node_on_hash(void *ud, uint32_t file, const char *path, uint64_t done, uint64_t total, uint32_t good,
                      uint32_t n_pieces);

/* node_status.c */
void sw__node_status_line(struct sw_node *n, int force);
void sw__node_changed(struct sw_node *n);
void sw__node_rebuild_json(struct sw_node *n);

#endif
