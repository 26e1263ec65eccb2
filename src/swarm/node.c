/* node.c — a swarm node on one libuv loop: the startup shard check, the BitTorrent session
 * for the model torrent (our shard wanted, everything held seeded), the DHT (bootstrap,
 * announce, find peers), the shardswarm BEP 10 extension (signed capability records in the
 * extended handshake and pushed on every change, gossip relay, keep-alive pings, LOAD_SHARD),
 * the shards-folder watch, the planner, and the [STATUS]/[READY] lines.
 * Hashing and loading run on libuv worker threads. The decisions themselves live in the
 * pure files (view.c, planner.c, command.c); this file is glue and policy.
 * Not for: pipeline sessions (pipeline*.c), HTTP (src/api). */
#ifdef SW_SWARM_NODE_STUB
/* The BitTorrent session or the DHT glue is not in this tree yet (see CMakeLists.txt):
 * every entry point says so instead of failing to link. */
#include <stdio.h>

#include "swarm/swarm.h"

int sw_node_new(struct uv_loop_s *loop, const struct sw_node_config *cfg, struct sw_node **out,
                char *err, size_t err_len)
{
    (void)loop;
    (void)cfg;
    if (out) *out = NULL;
    if (err_len) snprintf(err, err_len, "this build has no BitTorrent session or DHT glue yet; the node cannot run");
    return SW_EUNSUPPORTED;
}
int sw_node_start(struct sw_node *n, char *err, size_t err_len) { (void)n; (void)err; (void)err_len; return SW_EUNSUPPORTED; }
void sw_node_stop(struct sw_node *n, void (*done)(void *ud), void *ud) { (void)n; if (done) done(ud); }
void sw_node_free(struct sw_node *n) { (void)n; }
struct uv_loop_s *sw_node_loop(struct sw_node *n) { (void)n; return NULL; }
const struct sw_view *sw_node_view(const struct sw_node *n) { (void)n; return NULL; }
const uint8_t *sw_node_id(const struct sw_node *n) { (void)n; return NULL; }
int sw_node_send(struct sw_node *n, const uint8_t id[SW_NODE_ID_LEN], const void *payload, size_t len, int priority)
{ (void)n; (void)id; (void)payload; (void)len; (void)priority; return SW_EUNSUPPORTED; }
void sw_node_set_pipe_handler(struct sw_node *n, sw_node_pipe_fn fn, void *ud) { (void)n; (void)fn; (void)ud; }
void sw_node_set_change_handler(struct sw_node *n, sw_node_change_fn fn, void *ud) { (void)n; (void)fn; (void)ud; }
void sw_node_set_stage_release(struct sw_node *n, sw_node_release_fn fn, void *ud) { (void)n; (void)fn; (void)ud; }
void sw_node_set_peer_handler(struct sw_node *n, sw_node_peer_fn fn, void *ud) { (void)n; (void)fn; (void)ud; }
void sw_node_set_queue(struct sw_node *n, uint32_t queue) { (void)n; (void)queue; }
void sw_node_set_status_extra(struct sw_node *n, void (*fn)(void *ud, struct json_t *root), void *ud)
{ (void)n; (void)fn; (void)ud; }
void sw_node_set_api_addr(struct sw_node *n, const char *host, uint16_t port) { (void)n; (void)host; (void)port; }
int sw_node_submit_load(struct sw_node *n, const uint8_t *wire, size_t len, char *reason, size_t reason_len)
{ (void)n; (void)wire; (void)len; (void)reason; (void)reason_len; return SW_EUNSUPPORTED; }
char *sw_node_status_json(struct sw_node *n) { (void)n; return NULL; }
struct sw_stage *sw_node_stage(struct sw_node *n) { (void)n; return NULL; }
int sw_node_failed(const struct sw_node *n) { (void)n; return 1; }
const struct sw_bt_metainfo *sw_node_metainfo(const struct sw_node *n) { (void)n; return NULL; }
int sw_node_shard_file(struct sw_node *n, int32_t *shard_out, uint32_t *file_out, const char **path_out)
{ (void)n; (void)shard_out; (void)file_out; (void)path_out; return SW_ENOTFOUND; }
#else
#include <arpa/inet.h>
#include <errno.h>
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
#include "swarm/swarm.h"

#define TICK_MS 250
#define REFRESH_MS 1000       /* own record re-signed and pushed: keep-alive for relays too */
#define PING_MS 2000
#define POLL_MS 500           /* folder poll fallback */
#define REJOIN_MS 3000
#define REPLAN_GRACE_MS 1500  /* an unserved shard must stay unserved this long */
#define AUTO_SETTLE_MS 1200   /* auto: listen this long after the first peer before picking */
#define AUTO_ALONE_MS 4000    /* auto: pick anyway after this long without peers */
#define MAX_FWD 256

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
    int32_t pre_final;               /* shard whose final-named file was whole before BT looked */
    int measure_pending;
    int json_stale;
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

    /* status */
    char *last_sig;
    int was_ready, ever_ready;
    int dirty;                       /* view changed since the last status pass */

    /* cross-thread */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *status_json;
    struct load_req *loads;

    uint8_t fwd[MAX_FWD][16];
    size_t n_fwd;

    sw_node_pipe_fn pipe_fn;
    void *pipe_ud;
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

static void publish(struct sw_node *n, int changed);
static void mark_dirty(struct sw_node *n);
static void set_shard(struct sw_node *n, int32_t shard, const char *why);
static void node_changed(struct sw_node *n);
static void rebuild_json(struct sw_node *n);

static char *xstrdup(const char *s)
{
    if (!s) return NULL;
    size_t l = strlen(s) + 1;
    char *d = malloc(l);
    if (d) memcpy(d, s, l);
    return d;
}

static uint64_t wall_ms(void)
{
    uv_timeval64_t tv;
    if (uv_gettimeofday(&tv)) return 0;
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* Something the status depends on changed: recompute on this loop iteration (coalesced). */
static void mark_dirty(struct sw_node *n)
{
    n->dirty = 1;
    if (n->handles_open && !n->stopping) uv_async_send(&n->async);
}

/* ------------------------------------------------------------------ peers */

static struct peer *peer_by_id(struct sw_node *n, const uint8_t id[SW_NODE_ID_LEN])
{
    for (struct peer *p = n->peers; p; p = p->next)
        if (p->has_id && !memcmp(p->id, id, SW_NODE_ID_LEN) && sw_bt_peer_has_ext(p->bt)) return p;
    return NULL;
}

static int n_conn_of(struct sw_node *n, const uint8_t id[SW_NODE_ID_LEN])
{
    int k = 0;
    for (struct peer *p = n->peers; p; p = p->next)
        if (p->has_id && !memcmp(p->id, id, SW_NODE_ID_LEN)) k++;
    return k;
}

static size_t n_swarm_peers(struct sw_node *n)
{
    size_t k = 0;
    for (struct peer *p = n->peers; p; p = p->next) k += p->has_id ? 1 : 0;
    return k;
}

static int send_kind(struct peer *p, uint8_t kind, const uint8_t *body, size_t len)
{
    if (!sw_bt_peer_has_ext(p->bt)) return SW_ESTATE;
    return sw_bt_peer_send_ext2(p->bt, &kind, 1, body, len);
}

static struct hold *hold_find(struct sw_node *n, const uint8_t id[SW_NODE_ID_LEN])
{
    for (struct hold *h = n->holds; h; h = h->next)
        if (!memcmp(h->id, id, SW_NODE_ID_LEN)) return h;
    return NULL;
}

static void hold_free(struct hold *h)
{
    while (h->qh) {
        struct held_msg *m = h->qh;
        h->qh = m->next;
        free(m);
    }
    free(h);
}

static void hold_unlink(struct sw_node *n, struct hold *h)
{
    for (struct hold **pp = &n->holds; *pp; pp = &(*pp)->next)
        if (*pp == h) {
            *pp = h->next;
            return;
        }
}

static void hold_begin(struct sw_node *n, const uint8_t id[SW_NODE_ID_LEN])
{
    struct hold *h = hold_find(n, id);
    if (!h) {
        if (!(h = calloc(1, sizeof *h))) return;
        memcpy(h->id, id, SW_NODE_ID_LEN);
        h->next = n->holds;
        n->holds = h;
    }
    h->since_ms = sw_time_ms();
}

/* The new connection proved the id: what waited goes out on it, in order. */
static void hold_flush(struct sw_node *n, struct peer *p)
{
    struct hold *h = hold_find(n, p->id);
    if (!h) return;
    hold_unlink(n, h);
    for (struct held_msg *m = h->qh; m; m = m->next) sw_bt_peer_send_ext(p->bt, m->data, m->len);
    hold_free(h);
}

static void depart_direct(struct sw_node *n, const uint8_t id[SW_NODE_ID_LEN], const char *why);

/* A replacement that never proved the id within HOLD_MS: the node is gone after all. */
static void hold_expire(struct sw_node *n, uint64_t now_ms)
{
    for (struct hold *h = n->holds, *nx; h; h = nx) {
        nx = h->next;
        if (now_ms - h->since_ms < HOLD_MS) continue;
        hold_unlink(n, h);
        if (!n_conn_of(n, h->id)) depart_direct(n, h->id, "its replacement connection never proved the node id");
        hold_free(h);
    }
}

int sw_node_send(struct sw_node *n, const uint8_t id[SW_NODE_ID_LEN], const void *payload,
                 size_t len, int priority)
{
    (void)priority; /* every extension message is sent with priority by the BT session */
    if (!n || !payload || !len) return SW_EINVAL;
    struct peer *p = peer_by_id(n, id);
    if (p) return sw_bt_peer_send_ext(p->bt, payload, len);
    struct hold *h = hold_find(n, id);
    if (!h || sw_time_ms() - h->since_ms >= HOLD_MS || h->bytes + len > HOLD_MAX_BYTES) return SW_ENOTFOUND;
    struct held_msg *m = malloc(sizeof *m + len);
    if (!m) return SW_ENOMEM;
    m->next = NULL;
    m->len = len;
    memcpy(m->data, payload, len);
    if (h->qt) h->qt->next = m;
    else h->qh = m;
    h->qt = m;
    h->bytes += len;
    return 0;
}

/* Sends a record to every direct peer the gossip rule allows. from: NULL for our own. */
static void relay_record(struct sw_node *n, const uint8_t origin[SW_NODE_ID_LEN], const uint8_t *from,
                         const uint8_t *wire, size_t len)
{
    for (struct peer *p = n->peers; p; p = p->next) {
        if (!p->has_id) continue;
        if (from == NULL && !memcmp(origin, n->id.pk, SW_NODE_ID_LEN)) {
            send_kind(p, SW_MSG_CAP, wire, len); /* our own: to every neighbour */
            continue;
        }
        if (sw_view_should_relay(n->view, origin, from, p->id)) send_kind(p, SW_MSG_CAP, wire, len);
    }
}

static void connect_to_record(struct sw_node *n, const struct sw_cap *c)
{
    if (!n->t || !c->listen_addr[0] || peer_by_id(n, c->node_id)) return;
    char host[64];
    const char *colon = strrchr(c->listen_addr, ':');
    if (!colon || colon == c->listen_addr || (size_t)(colon - c->listen_addr) >= sizeof host) return;
    memcpy(host, c->listen_addr, (size_t)(colon - c->listen_addr));
    host[colon - c->listen_addr] = 0;
    long port = strtol(colon + 1, NULL, 10);
    if (port <= 0 || port > 65535) return;
    sw_bt_torrent_add_peer(n->t, host, (uint16_t)port);
}

/* A signed record from peer `from` (NULL: unknown sender). Returns the view's answer. */
static int take_record(struct sw_node *n, struct peer *from, const uint8_t *wire, size_t len)
{
    if (!n->view) return SW_ESTATE;
    struct sw_cap c;
    int rc = sw_view_receive(n->view, wire, len, sw_time_ms(), &c);
    if (rc < 0) {
        char addr[64] = "?";
        if (from) sw_bt_peer_addr(from->bt, addr, sizeof addr);
        sw_log(SW_LOG_DEBUG, "SWARM", "dropped a capability record from %s: %s", addr, sw_strerror(rc));
        return rc;
    }
    if (rc == SW_VIEW_FRESH || rc == SW_VIEW_REFRESH) {
        const struct sw_view_node *vn = sw_view_find(n->view, c.node_id);
        if (vn && !vn->direct && n_conn_of(n, c.node_id)) sw_view_set_direct(n->view, c.node_id, 1, sw_time_ms());
        relay_record(n, c.node_id, from && from->has_id ? from->id : NULL, wire, len);
        if (!n_conn_of(n, c.node_id)) connect_to_record(n, &c);
        if (rc == SW_VIEW_FRESH) mark_dirty(n);
        else n->json_stale = 1; /* progress and counters: the JSON catches up within a second */
    } else if (from && from->has_id) {
        sw_view_touch(n->view, from->id, sw_time_ms());
    }
    return rc;
}

static void on_ext_connected(void *ud, struct sw_bt_peer *bp)
{
    struct sw_node *n = ud;
    struct peer *p = calloc(1, sizeof *p);
    if (!p) {
        sw_bt_peer_close(bp);
        return;
    }
    p->node = n;
    p->bt = bp;
    p->next = n->peers;
    n->peers = p;
    sw_bt_peer_set_userdata(bp, p);
    if (!n->first_peer_ms) n->first_peer_ms = sw_time_ms();
}

static void sync_peer(struct sw_node *n, struct peer *p)
{
    /* Our record first, then every live record it may lack. */
    if (n->wire.len) send_kind(p, SW_MSG_CAP, n->wire.data, n->wire.len);
    for (size_t i = 0; n->view && i < sw_view_count(n->view); i++) {
        const struct sw_view_node *vn = sw_view_at(n->view, i);
        if (vn->self || !vn->live) continue;
        if (!sw_view_should_relay(n->view, vn->cap.node_id, NULL, p->id)) continue;
        size_t len;
        const uint8_t *w = sw_view_wire(n->view, vn->cap.node_id, &len);
        if (w) send_kind(p, SW_MSG_CAP, w, len);
    }
}

/* The peer proved it holds the key of node `id`: the connection now stands for that node. */
static void authenticated(struct sw_node *n, struct peer *p, const uint8_t id[SW_NODE_ID_LEN])
{
    p->has_id = 1;
    memcpy(p->id, id, SW_NODE_ID_LEN);
    if (!n->view) return; /* magnet: mapped now, announced once the model is known */
    sw_view_set_direct(n->view, p->id, 1, sw_time_ms());
    const struct sw_view_node *vn = sw_view_find(n->view, id);
    char a[64], ids[16];
    sw_log(SW_LOG_INFO, "SWARM", "peer %s is node %s (shard %d, %s)", sw_bt_peer_addr(p->bt, a, sizeof a),
           sw_node_id_short(id, ids, sizeof ids), vn ? (int)vn->cap.shard : -1,
           !vn ? "?" : vn->cap.seed_all ? "seeding all" : sw_phase_name(vn->cap.phase));
    sync_peer(n, p);
    hold_flush(n, p);
    publish(n, 1); /* our neighbour list changed */
    if (n->peer_fn && n_conn_of(n, p->id) == 1) n->peer_fn(n->peer_ud, p->id, 1);
    mark_dirty(n);
}

/* The signed record a peer put in its extended handshake names the node it claims to be;
 * the claim is believed once the peer signs our challenge with that node's key. */
static void take_handshake_record(struct sw_node *n, struct peer *p, const uint8_t *rec, size_t len)
{
    struct sw_cap c;
    if (sw_cap_decode(rec, len, &c, NULL, 0) || memcmp(c.info_hash, n->info_hash, 20)) return;
    if (!memcmp(c.node_id, n->id.pk, SW_NODE_ID_LEN)) {
        sw_bt_peer_close(p->bt); /* connected to ourselves */
        return;
    }
    if (p->has_id && memcmp(p->id, c.node_id, SW_NODE_ID_LEN)) return; /* not the proven node */
    take_record(n, p, rec, len); /* signed facts: good whoever carried them */
    if (p->has_id) {
        sw_view_set_direct(n->view, p->id, 1, sw_time_ms());
        return;
    }
    p->claimed = 1;
    memcpy(p->claim_id, c.node_id, SW_NODE_ID_LEN);
    if (!p->challenged) {
        sw_random_bytes(p->challenge, sizeof p->challenge);
        p->challenged = 1;
        send_kind(p, SW_MSG_HELLO, p->challenge, sizeof p->challenge);
    }
}

static void on_ext_handshake(void *ud, struct sw_bt_peer *bp, const uint8_t *dict, size_t len)
{
    struct sw_node *n = ud;
    struct peer *p = sw_bt_peer_userdata(bp);
    if (!p || n->stopping) return;
    struct sw_bdoc d;
    struct sw_blimits lim = { 4096, 8 };
    if (sw_bdecode(dict, len, &lim, &d, NULL, NULL, 0)) return;
    const struct sw_bnode *rec = d.nodes[0].type == SW_BDICT
        ? sw_bdict_get_type(&d, &d.nodes[0], SW_SWARM_HS_KEY, SW_BSTR) : NULL;
    if (rec && rec->str_len <= SW_SWARM_MAX_RECORD) {
        if (n->view) {
            take_handshake_record(n, p, rec->str, rec->str_len);
        } else { /* magnet: no model yet; keep the latest until the metadata arrives */
            uint8_t *copy = malloc(rec->str_len);
            if (copy) {
                memcpy(copy, rec->str, rec->str_len);
                free(p->pending_hs);
                p->pending_hs = copy;
                p->pending_len = rec->str_len;
            }
        }
    }
    sw_bdoc_free(&d);
}

static void forward_load(struct sw_node *n, struct peer *from, const struct sw_load_cmd *c,
                         const uint8_t *wire, size_t len)
{
    for (size_t i = 0; i < n->n_fwd; i++)
        if (!memcmp(n->fwd[i], c->nonce, 16)) return;
    memcpy(n->fwd[n->n_fwd % MAX_FWD], c->nonce, 16);
    n->n_fwd = n->n_fwd < MAX_FWD ? n->n_fwd + 1 : MAX_FWD;
    struct peer *t = peer_by_id(n, c->target);
    if (t) {
        send_kind(t, SW_MSG_LOAD, wire, len);
        return;
    }
    for (struct peer *p = n->peers; p; p = p->next) /* flood toward a node we do not reach */
        if (p != from && p->has_id) send_kind(p, SW_MSG_LOAD, wire, len);
}

#define DRAIN_REASON "the node is draining (owner's command)"

static void retire_stage(struct sw_node *n, const char *reason);

/* The drained state survives a restart: <cache>/drained holds "<info-hash hex> <shard>\n"
 * while the owner's DRAIN stands (written at DRAIN, removed at the next LOAD_SHARD). */
static void drained_mark(struct sw_node *n, int on)
{
    char *path = sw_path_join(n->cache_dir, "drained");
    if (!path) return;
    if (on) {
        char line[80];
        char ih[41];
        sw_hex_encode(n->info_hash, 20, ih);
        int len = snprintf(line, sizeof line, "%s %d\n", ih, (int)n->shard);
        if (sw_file_write_atomic(path, line, (size_t)len))
            sw_log(SW_LOG_WARN, "SHARD", "%s: cannot record the drained state (a restart would load again)", path);
    } else if (unlink(path) && errno != ENOENT) {
        sw_log(SW_LOG_WARN, "SHARD", "%s: cannot remove: %s", path, strerror(errno));
    }
    free(path);
}

/* At start: 1 (and *shard_out, -1 for none) when <cache>/drained names this model. */
static int drained_marked(struct sw_node *n, int32_t *shard_out)
{
    char *path = sw_path_join(n->cache_dir, "drained");
    uint8_t *data = NULL;
    size_t len = 0;
    int on = 0;
    if (path && !sw_file_read_all(path, 256, &data, &len)) {
        char ih[41], buf[257];
        sw_hex_encode(n->info_hash, 20, ih);
        memcpy(buf, data, len);
        buf[len] = 0;
        int shard = -1;
        if (len > 41 && !memcmp(buf, ih, 40) && buf[40] == ' ' && sscanf(buf + 41, "%d", &shard) == 1) {
            on = 1;
            *shard_out = shard >= 0 && (uint32_t)shard < n->n_shards ? shard : -1;
        } else {
            sw_log(SW_LOG_WARN, "SHARD", "%s: not a drained marker of this model; ignored", path);
        }
    }
    free(data);
    free(path);
    return on;
}

/* DRAIN: stop serving like leaving (the sessions on the stage get ERROR DRAIN_REASON and
 * their entries fail over at once; the stage is freed through the release hook only when no
 * step runs on it), but stay in the swarm: the shard file stays on disk and seeded, the
 * record says "drained", and nothing loads or fetches on its own until a LOAD_SHARD. */
static void drain(struct sw_node *n, const char *src, char *reason, size_t reason_len)
{
    if (n->drained) {
        sw_log(SW_LOG_INFO, "SHARD", "DRAIN from %s: already drained; nothing to do", src);
        snprintf(reason, reason_len, "already drained (no-op)");
        return;
    }
    n->drained = 1;
    n->auto_mode = 0;   /* the owner decided: no re-planning */
    n->forced_fetch = 0;
    n->replan_target = -1;
    if (n->job && !n->job->measure_only) n->job_stale = 1; /* a load in flight is dropped */
    int had_stage = n->stage != NULL;
    retire_stage(n, DRAIN_REASON);
    if (n->shard >= 0 && n->t && !n->cfg.seed_all &&
        !sw_bt_torrent_file_complete(n->t, (uint32_t)n->shard_file[n->shard]))
        sw_bt_torrent_want_file(n->t, (uint32_t)n->shard_file[n->shard], 0); /* held pieces stay seeded */
    n->phase = SW_PHASE_DRAINED;
    drained_mark(n, 1);
    if (n->shard >= 0)
        sw_log(SW_LOG_INFO, "SHARD", "shard %d drained by the owner's command (from %s); %s; the file stays and is seeded",
               (int)n->shard, src, had_stage ? "sessions handed over" : "it was not loaded");
    else
        sw_log(SW_LOG_INFO, "SHARD", "drained by the owner's command (from %s); no shard was held", src);
    snprintf(reason, reason_len, "accepted: draining%s", had_stage ? " (sessions handed over)" : "");
    publish(n, 1);
    node_changed(n);
}

/* An owner command (LOAD_SHARD or DRAIN) from a peer (from != NULL) or the API. */
static int take_load(struct sw_node *n, struct peer *from, const uint8_t *wire, size_t len,
                     char *reason, size_t reason_len)
{
    char why[256] = "";
    if (!n->guard) {
        snprintf(reason, reason_len, "the node has not resolved its model yet");
        return SW_ESTATE;
    }
    struct sw_load_cmd c = { 0 };
    int rc = sw_cmd_guard_check(n->guard, wire, len, sw_wall_time_s(), &c, why, sizeof why);
    char src[80] = "the local API";
    if (from) {
        char a[64];
        snprintf(src, sizeof src, "peer %s", sw_bt_peer_addr(from->bt, a, sizeof a));
    }
    const char *name = rc == SW_ECORRUPT ? "command" : c.type == SW_CMD_DRAIN ? "DRAIN" : "LOAD_SHARD";
    if (rc == SW_ENOTFOUND) {
        rc = sw_cmd_guard_check_relay(n->guard, wire, len, sw_wall_time_s(), &c, why, sizeof why);
        if (!rc) {
            forward_load(n, from, &c, wire, len);
            snprintf(reason, reason_len, "forwarded toward its target");
            return 0;
        }
    }
    if (rc) {
        sw_log(SW_LOG_WARN, "SWARM", "refused %s from %s: %s", name, src, why[0] ? why : sw_strerror(rc));
        snprintf(reason, reason_len, "%s", why[0] ? why : sw_strerror(rc));
        return rc == SW_ECORRUPT ? SW_ECORRUPT : SW_EPERM;
    }
    if (c.type == SW_CMD_DRAIN) {
        sw_log(SW_LOG_INFO, "SWARM", "accepted DRAIN from %s (signed by the model owner)", src);
        drain(n, src, reason, reason_len);
        return 0;
    }
    if (c.shard >= n->n_shards) {
        sw_log(SW_LOG_WARN, "SWARM", "refused LOAD_SHARD from %s: shard %u does not exist (model has %u)",
               src, c.shard, n->n_shards);
        snprintf(reason, reason_len, "shard %u does not exist (model has %u)", c.shard, n->n_shards);
        return SW_EPERM;
    }
    sw_log(SW_LOG_INFO, "SWARM", "accepted LOAD_SHARD from %s: load shard %u (signed by the model owner)",
           src, c.shard);
    snprintf(reason, reason_len, "accepted: loading shard %u", c.shard);
    int was_drained = n->drained;
    n->drained = 0; /* a LOAD_SHARD brings a drained node back */
    if (was_drained) drained_mark(n, 0);
    n->forced_fetch = 1;
    n->auto_mode = 0; /* the owner decided */
    if ((int32_t)c.shard != n->shard || was_drained || n->phase == SW_PHASE_WAITING || n->phase == SW_PHASE_FAILED) {
        if (was_drained)
            sw_log(SW_LOG_INFO, "SHARD", "leaving the drained state: the owner asks for shard %u", c.shard);
        if ((int32_t)c.shard == n->shard) n->shard = -1; /* re-enter the same shard: fetch now */
        set_shard(n, (int32_t)c.shard, "LOAD_SHARD");
    }
    return 0;
}

static void on_ext_message(void *ud, struct sw_bt_peer *bp, const uint8_t *payload, size_t len)
{
    struct sw_node *n = ud;
    struct peer *p = sw_bt_peer_userdata(bp);
    if (!p || len < 1 || n->stopping) return;
    const uint8_t *body = payload + 1;
    size_t blen = len - 1;
    switch (payload[0]) {
    case SW_MSG_CAP:
        take_record(n, p, body, blen);
        break;
    case SW_MSG_LOAD: {
        char r[256];
        take_load(n, p, body, blen, r, sizeof r);
        break;
    }
    case SW_MSG_PING:
        if (blen == 8) send_kind(p, SW_MSG_PONG, body, 8);
        if (p->has_id && n->view) sw_view_touch(n->view, p->id, sw_time_ms());
        break;
    case SW_MSG_PONG:
        if (blen == 8 && p->has_id && n->view && sw_get_be64(body) == p->ping_token && p->ping_sent_us) {
            uint64_t rtt = sw_time_us() - p->ping_sent_us;
            sw_view_set_rtt(n->view, p->id, rtt ? (uint32_t)SW_MIN(rtt, UINT32_MAX) : 1);
            sw_view_touch(n->view, p->id, sw_time_ms());
            p->ping_sent_us = 0;
        }
        break;
    case SW_MSG_BYE:
        if (p->has_id && n->view) {
            char ids[16];
            sw_log(SW_LOG_INFO, "SWARM", "node %s is leaving", sw_node_id_short(p->id, ids, sizeof ids));
            sw_view_set_direct(n->view, p->id, 0, sw_time_ms());
            mark_dirty(n);
        }
        break;
    case SW_MSG_PIPE:
        if (n->pipe_fn && p->has_id) n->pipe_fn(n->pipe_ud, p->id, payload, len);
        break;
    case SW_MSG_HELLO:
        if (blen == 32) {
            uint8_t proof[96];
            sw_swarm_auth_sign(&n->id, n->info_hash, body, proof);
            send_kind(p, SW_MSG_PROOF, proof, sizeof proof);
        }
        break;
    case SW_MSG_PROOF: {
        uint8_t id[SW_NODE_ID_LEN];
        if (blen != 96 || !p->challenged || p->has_id) break;
        char a[64];
        if (sw_swarm_auth_verify(body, n->info_hash, p->challenge, id)) {
            sw_log(SW_LOG_WARN, "SWARM", "peer %s failed to prove its node id (bad signature); closing",
                   sw_bt_peer_addr(bp, a, sizeof a));
            sw_bt_peer_close(bp);
            break;
        }
        if (p->claimed && memcmp(id, p->claim_id, SW_NODE_ID_LEN)) {
            sw_log(SW_LOG_WARN, "SWARM", "peer %s presented another node's record; closing", sw_bt_peer_addr(bp, a, sizeof a));
            sw_bt_peer_close(bp);
            break;
        }
        if (!memcmp(id, n->id.pk, SW_NODE_ID_LEN)) {
            sw_bt_peer_close(bp);
            break;
        }
        authenticated(n, p, id);
        break;
    }
    default:
        break; /* unknown kinds are ignored: newer peers may speak more */
    }
}

/* The last direct connection to a node is gone: it departed (sw_view_set_direct). */
static void depart_direct(struct sw_node *n, const uint8_t id[SW_NODE_ID_LEN], const char *why)
{
    if (n->peer_fn && !n->stopping) n->peer_fn(n->peer_ud, id, 0);
    const struct sw_view_node *vn = sw_view_find(n->view, id);
    int was_live = vn && vn->live;
    sw_view_set_direct(n->view, id, 0, sw_time_ms());
    if (was_live && !n->stopping) {
        char ids[16];
        sw_log(SW_LOG_INFO, "SWARM", "node %s departed (%s)", sw_node_id_short(id, ids, sizeof ids), why);
        publish(n, 1);
    }
    mark_dirty(n);
}

static void on_ext_closed(void *ud, struct sw_bt_peer *bp, int reason)
{
    struct sw_node *n = ud;
    struct peer *p = sw_bt_peer_userdata(bp);
    if (!p) return;
    struct peer **pp = &n->peers;
    while (*pp && *pp != p) pp = &(*pp)->next;
    if (*pp) *pp = p->next;
    if (p->has_id && n->view && !n_conn_of(n, p->id) && reason == SW_EEXIST && !n->stopping) {
        /* The BitTorrent session replaced this connection by another one to the same peer
         * (both dialled each other; both ends keep the same one). The node has not left:
         * keep it live and direct; the new connection proves the id again within a few
         * round trips, and if it never does the keep-alive expiry notices. Pipeline
         * messages sent meanwhile are held for it (held_*). */
        hold_begin(n, p->id);
    } else if (p->has_id && n->view && !n_conn_of(n, p->id)) {
        char why[96];
        snprintf(why, sizeof why, "connection closed: %s", sw_strerror(reason));
        depart_direct(n, p->id, why);
    }
    sw_bt_peer_set_userdata(bp, NULL);
    free(p->pending_hs);
    free(p);
}

/* ------------------------------------------------------------------ own record */

static void fill_progress(struct sw_node *n)
{
    n->cap.bytes_done = n->cap.bytes_total = n->cap.rate_bps = n->cap.eta_ms = 0;
    if (n->shard < 0 || !n->t || !n->shard_file) return;
    struct sw_bt_progress pr;
    if (sw_bt_torrent_progress(n->t, n->shard_file[n->shard], &pr)) return;
    n->cap.bytes_done = pr.bytes_done;
    n->cap.bytes_total = pr.bytes_total;
    n->cap.rate_bps = pr.rate_bps > 0 ? (uint64_t)pr.rate_bps : 0;
    n->cap.eta_ms = pr.eta_s == UINT64_MAX ? 0 : pr.eta_s * 1000;
    if (n->cap.bytes_done > n->cap.bytes_total) n->cap.bytes_done = n->cap.bytes_total;
}

static void publish(struct sw_node *n, int changed)
{
    if (!n->view || n->stopping) return;
    struct sw_cap *c = &n->cap;
    memcpy(c->node_id, n->id.pk, SW_NODE_ID_LEN);
    memcpy(c->info_hash, n->info_hash, 20);
    uint64_t w = wall_ms();
    c->seq = w > c->seq ? w : c->seq + 1; /* survives restarts: a new run starts above the old */
    c->shard = n->cfg.seed_all ? -1 : n->shard;
    c->phase = (uint8_t)(n->cfg.seed_all ? SW_PHASE_NONE : n->phase);
    c->seed_all = n->cfg.seed_all ? 1 : 0;
    c->movable = n->auto_mode ? 1 : 0;
    fill_progress(n);
    c->layer_first = c->layer_last = -1;
    if (n->shard >= 0 && n->shard_lf) {
        c->layer_first = n->shard_lf[n->shard];
        c->layer_last = n->shard_ll[n->shard];
    }
    uint64_t mem = 0;
    sw_sys_mem_available(&mem);
    c->mem_free = mem;
    c->threads = n->cfg.threads ? n->cfg.threads : (uint32_t)sw_sys_ncpu();
    c->tokens_per_s_milli = n->tps > 0 ? (uint32_t)SW_MIN(n->tps * 1000.0, 4e9) : 0;
    c->queue = n->queue;
    if (n->cfg.api_port)
        snprintf(c->api_addr, sizeof c->api_addr, "%.48s:%u", n->api_host ? n->api_host : "127.0.0.1",
                 n->cfg.api_port);
    if (n->local_ip[0] && n->port)
        snprintf(c->listen_addr, sizeof c->listen_addr, "%.48s:%u", n->local_ip, n->port);
    c->n_neighbours = 0;
    for (struct peer *p = n->peers; p && c->n_neighbours < SW_SWARM_MAX_NEIGHBOURS; p = p->next) {
        if (!p->has_id) continue;
        int dup = 0;
        for (uint32_t i = 0; i < c->n_neighbours; i++)
            dup |= !memcmp(c->neighbours[i], p->id, SW_SWARM_NB_PREFIX);
        if (!dup) memcpy(c->neighbours[c->n_neighbours++], p->id, SW_SWARM_NB_PREFIX);
    }
    n->wire.len = 0;
    if (sw_cap_encode(c, &n->id, &n->wire)) return;
    sw_view_set_self(n->view, c, n->wire.data, n->wire.len, sw_time_ms());
    n->last_refresh = sw_time_ms();
    if (changed) {
        struct sw_buf hv = { 0 };
        sw_benc_str(&hv, n->wire.data, n->wire.len);
        if (sw_buf_ok(&hv)) sw_bt_session_set_handshake_extra(n->bt, SW_SWARM_HS_KEY, hv.data, hv.len);
        sw_buf_free(&hv);
        mark_dirty(n);
    }
    relay_record(n, n->id.pk, NULL, n->wire.data, n->wire.len);
}

/* ------------------------------------------------------------------ shard work */

/* Hashes the pieces of one file against the torrent (worker thread). */
static int verify_pieces(const struct sw_bt_metainfo *mi, uint32_t file, const char *path,
                         uint32_t *bad_out, uint32_t *n_out, char *msg, size_t msg_len)
{
    uint32_t good = 0, total = 0;
    int rc = sw_shard_file_check(mi, file, path, &good, &total, msg, msg_len);
    *bad_out = total - good;
    *n_out = total;
    return rc == SW_ERANGE ? SW_ECORRUPT : rc;
}

static void retired_unref(void *ud)
{
    struct retired *r = ud;
    if (--r->refs > 0) return;
    sw_stage_free(r->st);
    free(r);
}

/* Lets go of the compute stage: from now on sw_node_stage() is NULL (no new pipeline job
 * picks it up); the pipeline fails the sessions on it (their entries fail over) and the
 * stage is freed once no pipeline job and no measurement runs on it any more. */
static void retire_stage(struct sw_node *n, const char *reason)
{
    if (!n->stage) return;
    struct sw_stage *st = n->stage;
    n->stage = NULL;
    n->tps = 0;
    struct retired *r = calloc(1, sizeof *r);
    if (!r) { /* cannot track its users: leaking it is safe, freeing it is not */
        sw_log(SW_LOG_ERROR, "SHARD", "out of memory while releasing the compute stage (kept allocated)");
        return;
    }
    r->st = st;
    r->refs = 1;
    if (n->job && n->job->measure_only && n->job->stage == st) {
        n->job->retired = r; /* the worker still measures it */
        r->refs++;
    }
    if (n->release_fn) n->release_fn(n->release_ud, reason, retired_unref, r);
    else retired_unref(r);
}

static double measure_tps(struct sw_stage *st)
{
    const struct sw_stage_info *si = sw_stage_info(st);
    uint32_t n_tok = 8;
    size_t in_floats = si->takes_tokens ? 0 : (size_t)n_tok * si->n_embd;
    void *in = si->takes_tokens ? calloc(n_tok, sizeof(int32_t)) : calloc(in_floats ? in_floats : 1, sizeof(float));
    float *out = malloc(sw_stage_out_floats(st, n_tok, 0) * sizeof(float) + 16);
    double tps = 0;
    uint64_t seq = 0x5357000000000001ull;
    if (in && out && !sw_stage_seq_new(st, seq)) {
        if (si->takes_tokens)
            for (uint32_t i = 0; i < n_tok; i++) ((int32_t *)in)[i] = (int32_t)(i % (si->n_vocab ? si->n_vocab : 1));
        /* prefill n_tok-1 tokens, then time single-token decode steps */
        if (!sw_stage_forward(st, seq, 0, n_tok - 4, in, out, 0)) {
            uint64_t t0 = sw_time_us();
            int ok = 1;
            for (uint32_t i = n_tok - 4; i < n_tok && ok; i++) {
                const void *one = si->takes_tokens ? (const void *)((int32_t *)in + i)
                                                   : (const void *)((float *)in + (size_t)i * si->n_embd);
                ok = !sw_stage_forward(st, seq, i, 1, one, out, 0);
            }
            uint64_t dt = sw_time_us() - t0;
            if (ok && dt) tps = 4.0 * 1e6 / (double)dt;
        }
        sw_stage_seq_free(st, seq);
    }
    free(in);
    free(out);
    return tps;
}

static void job_work(uv_work_t *req)
{
    struct job *j = req->data;
    if (j->measure_only) {
        j->tps = measure_tps(j->stage);
        return;
    }
    const struct sw_bt_metainfo *mi = j->node->mi;
    if (j->verify) {
        j->rc = verify_pieces(mi, (uint32_t)j->file, j->path, &j->bad_pieces, &j->n_pieces, j->msg, sizeof j->msg);
        if (j->rc) return;
    }
    struct sw_stage_opts so = { 0 };
    so.layer_first = -1;
    so.layer_last = -1;
    so.n_threads = j->threads;
    const struct sw_node_config *nc = &j->node->cfg;
    so.machine_cores = nc->no_core_lease ? 0 : nc->machine_cores ? nc->machine_cores : (uint32_t)sw_sys_ncpu();
    so.cores_dir = nc->cores_dir;
    char err[400] = "";
    j->rc = sw_stage_open(j->path, &so, &j->stage, err, sizeof err);
    if (j->rc) snprintf(j->msg, sizeof j->msg, "%s", err[0] ? err : sw_strerror(j->rc));
}

static void job_done(uv_work_t *req, int status);

/* Measures tokens/s on a worker after the shard is announced as loaded (it never delays
 * readiness). */
static void start_measure(struct sw_node *n)
{
    if (!n->stage || n->job) return;
    struct job *j = calloc(1, sizeof *j);
    if (!j) return;
    j->node = n;
    j->shard = n->shard;
    j->measure_only = 1;
    j->stage = n->stage;
    j->req.data = j;
    n->job = j;
    if (uv_queue_work(n->loop, &j->req, job_work, job_done)) {
        n->job = NULL;
        free(j);
    }
}

static void start_load(struct sw_node *n, int verify);

static void job_done(uv_work_t *req, int status)
{
    struct job *j = req->data;
    struct sw_node *n = j->node;
    n->job = NULL;
    if (j->measure_only) {
        if (j->retired) retired_unref(j->retired);
        else if (!status && j->stage == n->stage && !n->stopping) {
            n->tps = j->tps;
            sw_log(SW_LOG_INFO, "SHARD", "shard %d: %.1f tokens/s measured (decode, %u threads)", (int)j->shard, j->tps,
                   n->cfg.threads ? n->cfg.threads : (unsigned)sw_sys_ncpu());
            publish(n, 1);
        }
        int again = n->job_stale && !n->stopping && !n->drained;
        n->job_stale = 0;
        free(j);
        if (again) start_load(n, 1);
        return;
    }
    if (n->stopping || n->job_stale || status || j->shard != n->shard || n->drained) {
        sw_stage_free(j->stage);
        int again = n->job_stale && !n->stopping && !n->drained;
        n->job_stale = 0;
        free(j);
        if (again) start_load(n, 1);
        return;
    }
    char size[32];
    sw_fmt_bytes(n->shard_bytes[j->shard], size, sizeof size);
    if (j->rc == SW_ECORRUPT && j->verify) {
        sw_log(SW_LOG_WARN, "SHARD", "shard %d at %s is corrupt (%s); not loading it, re-fetching from the swarm",
               (int)j->shard, j->path, j->msg);
        n->phase = n->cfg.no_auto_fetch && !n->forced_fetch ? SW_PHASE_WAITING : SW_PHASE_FETCHING;
        if (n->t) sw_bt_torrent_recheck_file(n->t, (uint32_t)j->file); /* keep the good pieces */
        if (n->phase == SW_PHASE_FETCHING && n->t) sw_bt_torrent_want_file(n->t, (uint32_t)j->file, 1);
        publish(n, 1);
        free(j);
        return;
    }
    if (j->rc) {
        sw_log(SW_LOG_ERROR, "SHARD", "shard %d at %s could not be loaded: %s", (int)j->shard, j->path, j->msg);
        n->phase = SW_PHASE_FAILED;
        publish(n, 1);
        free(j);
        return;
    }
    retire_stage(n, "the node reloaded its shard");
    n->stage = j->stage;
    n->tps = 0;
    n->phase = SW_PHASE_LOADED;
    const struct sw_stage_info *si = sw_stage_info(n->stage);
    sw_log(SW_LOG_INFO, "SHARD", "shard %d loaded (layers %u\xe2\x80\x93%u, %s, %s)", (int)j->shard, si->layer_first,
           si->layer_last, size, j->path);
    publish(n, 1);
    node_changed(n);
    /* The BT engine rehashes a file that appeared by hand before it seeds it: after we
     * announced, so it never delays readiness (blocking; see docs/swarm.md). */
    if (j->verify && n->t && !sw_bt_torrent_file_complete(n->t, (uint32_t)j->file)) {
        uint64_t t0 = sw_time_ms();
        sw_bt_torrent_recheck_file(n->t, (uint32_t)j->file);
        uint64_t blocked = sw_time_ms() - t0;
        if (blocked > 500) {
            /* We could not read while hashing: our silence, not theirs. Refresh the peers we
             * are connected to, and tell them at once that we are alive. */
            for (struct peer *p = n->peers; p; p = p->next)
                if (p->has_id) sw_view_touch(n->view, p->id, sw_time_ms());
            publish(n, 0);
            sw_log(SW_LOG_INFO, "SHARD", "the BitTorrent engine re-hashed shard %d in %llu ms before seeding it",
                   (int)j->shard, (unsigned long long)blocked);
        }
    }
    free(j);
    start_measure(n);
}

static void start_load(struct sw_node *n, int verify)
{
    if (n->shard < 0 || n->drained) return; /* drained: only a LOAD_SHARD loads again */
    if (n->job) {
        n->job_stale = 1;
        return;
    }
    struct job *j = calloc(1, sizeof *j);
    if (!j) return;
    j->node = n;
    j->shard = n->shard;
    j->file = n->shard_file[n->shard];
    j->verify = verify;
    j->threads = n->cfg.threads;
    snprintf(j->path, sizeof j->path, "%s", sw_bt_torrent_file_path(n->t, (uint32_t)j->file));
    j->req.data = j;
    n->job = j;
    n->phase = verify ? SW_PHASE_VERIFYING : SW_PHASE_LOADING;
    if (uv_queue_work(n->loop, &j->req, job_work, job_done)) {
        n->job = NULL;
        free(j);
        n->phase = SW_PHASE_FAILED;
    }
    publish(n, 1);
}

/* Synchronous load before joining the network (startup). */
static void load_now(struct sw_node *n)
{
    struct job j = { 0 };
    j.node = n;
    j.shard = n->shard;
    j.file = n->shard_file[n->shard];
    j.threads = n->cfg.threads;
    snprintf(j.path, sizeof j.path, "%s", sw_bt_torrent_file_path(n->t, (uint32_t)j.file));
    j.req.data = &j;
    job_work(&j.req);
    char size[32];
    sw_fmt_bytes(n->shard_bytes[j.shard], size, sizeof size);
    if (j.rc) {
        sw_log(SW_LOG_ERROR, "SHARD", "shard %d at %s could not be loaded: %s", (int)j.shard, j.path, j.msg);
        n->phase = SW_PHASE_FAILED;
        return;
    }
    n->stage = j.stage;
    n->tps = 0;
    n->phase = SW_PHASE_LOADED;
    n->measure_pending = 1; /* on a worker once the loop runs */
    const struct sw_stage_info *si = sw_stage_info(n->stage);
    sw_log(SW_LOG_INFO, "SHARD", "shard %d loaded %s (layers %u\xe2\x80\x93%u, %s, %s)", (int)j.shard,
           n->is_magnet ? "as soon as the metadata arrived" : "before joining", si->layer_first, si->layer_last, size,
           j.path);
}

static int file_on_disk(struct sw_node *n, int32_t shard, uint64_t *size_out, uint64_t *mtime_out)
{
    const char *path = sw_bt_torrent_file_path(n->t, (uint32_t)n->shard_file[shard]);
    struct stat st;
    if (!path || stat(path, &st)) return 0;
    *size_out = (uint64_t)st.st_size;
    *mtime_out = (uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec;
    return 1;
}

/* Takes shard `shard` (-1: none): unloads the old one, then loads, fetches or waits. */
static void set_shard(struct sw_node *n, int32_t shard, const char *why)
{
    if (shard == n->shard && n->phase != SW_PHASE_NONE) return;
    int32_t old = n->shard;
    if (n->job && !n->job->measure_only) n->job_stale = 1;
    if (n->stage) {
        char reason[160];
        if (shard >= 0)
            snprintf(reason, sizeof reason, "the node switched from shard %d to shard %d (%s)", (int)old, (int)shard,
                     why ? why : "?");
        else
            snprintf(reason, sizeof reason, "the node dropped shard %d (%s)", (int)old, why ? why : "?");
        retire_stage(n, reason);
    }
    if (old >= 0 && old != shard && n->t && !n->cfg.seed_all)
        sw_bt_torrent_want_file(n->t, (uint32_t)n->shard_file[old], 0); /* held pieces stay seeded */
    n->shard = shard;
    n->watch_tried = 0;
    if (shard < 0) {
        n->phase = SW_PHASE_NONE;
        publish(n, 1);
        return;
    }
    char size[32];
    sw_fmt_bytes(n->shard_bytes[shard], size, sizeof size);
    if (old >= 0 && old != shard)
        sw_log(SW_LOG_INFO, "SHARD", "switching from shard %d to shard %d (%s)", (int)old, (int)shard, why);
    else if (why && strcmp(why, "startup"))
        sw_log(SW_LOG_INFO, "SHARD", "taking shard %d (%s, %s)", (int)shard, why, size);
    uint32_t file = (uint32_t)n->shard_file[shard];
    const char *path = sw_bt_torrent_file_path(n->t, file);
    if (sw_bt_torrent_file_complete(n->t, file)) {
        if (!n->view) load_now(n);
        else start_load(n, 0);
        publish(n, 1);
        return;
    }
    uint64_t sz = 0, mt = 0;
    int present = file_on_disk(n, shard, &sz, &mt);
    if (n->pre_final == shard) {
        struct sw_bt_progress pr = { 0 };
        sw_bt_torrent_progress(n->t, (int32_t)file, &pr);
        sw_log(SW_LOG_WARN, "SHARD", "shard %d at %s is corrupt (%.0f%% of it verifies, the rest fails its hash); "
               "it will not be loaded; %s", (int)shard, path, pr.percent,
               n->cfg.no_auto_fetch && !n->forced_fetch ? "waiting for a LOAD_SHARD command or a good copy"
                                                        : "re-fetching the bad pieces from the swarm");
        n->pre_final = -1;
    } else if (present && sz == n->shard_bytes[shard])
        sw_log(SW_LOG_WARN, "SHARD", "shard %d at %s is corrupt (pieces fail their hash); it will not be loaded; %s",
               (int)shard, path, n->cfg.no_auto_fetch && !n->forced_fetch ? "waiting for a LOAD_SHARD command or a good copy"
                                                                         : "re-fetching from the swarm");
    else if (present)
        sw_log(SW_LOG_INFO, "SHARD", "shard %d at %s is partial (%llu of %llu bytes); %s", (int)shard, path,
               (unsigned long long)sz, (unsigned long long)n->shard_bytes[shard],
               n->cfg.no_auto_fetch && !n->forced_fetch ? "waiting for a LOAD_SHARD command" : "fetching the rest from the swarm");
    else if (n->cfg.no_auto_fetch && !n->forced_fetch)
        sw_log(SW_LOG_INFO, "SHARD", "shard %d not found at %s; waiting for a LOAD_SHARD command (--no-auto-fetch) or a copy in the folder",
               (int)shard, path);
    else
        sw_log(SW_LOG_INFO, "SHARD", "shard %d not found at %s; fetching from the swarm (%s)", (int)shard, path, size);
    if (present) {
        n->watch_size = sz;
        n->watch_mtime = mt;
        n->watch_tried = 1; /* judged just now; look again when it changes */
    }
    if (n->cfg.no_auto_fetch && !n->forced_fetch) {
        n->phase = SW_PHASE_WAITING;
    } else {
        n->phase = SW_PHASE_FETCHING;
        sw_bt_torrent_want_file(n->t, file, 1);
    }
    publish(n, 1);
}

/* The folder watch: a shard file that appears (or changes) is verified and loaded. */
static void check_folder(struct sw_node *n)
{
    if (n->shard < 0 || !n->t || n->job || n->drained || n->phase == SW_PHASE_LOADED || n->phase == SW_PHASE_LOADING ||
        n->phase == SW_PHASE_VERIFYING)
        return;
    uint32_t file = (uint32_t)n->shard_file[n->shard];
    if (sw_bt_torrent_file_complete(n->t, file)) { /* the download finished */
        start_load(n, 0);
        return;
    }
    uint64_t sz, mt;
    if (!file_on_disk(n, n->shard, &sz, &mt) || sz != n->shard_bytes[n->shard]) return;
    if (n->watch_tried && sz == n->watch_size && mt == n->watch_mtime) return;
    n->watch_size = sz;
    n->watch_mtime = mt;
    n->watch_tried = 1;
    sw_log(SW_LOG_INFO, "SHARD", "shard %d appeared at %s; verifying", (int)n->shard,
           sw_bt_torrent_file_path(n->t, file));
    start_load(n, 1);
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    struct sw_node *n = h->data;
    (void)filename;
    (void)events;
    if (!status && !n->stopping) check_folder(n);
}

/* ------------------------------------------------------------------ BT + DHT events */

static void on_bt_event(void *ud, const struct sw_bt_event *ev)
{
    struct sw_node *n = ud;
    if (n->stopping) return;
    switch (ev->type) {
    case SW_BT_EV_FILE_COMPLETE:
        if (n->shard >= 0 && n->shard_file && ev->file == n->shard_file[n->shard] && !n->job &&
            n->phase != SW_PHASE_LOADED && !n->drained) {
            sw_log(SW_LOG_INFO, "SHARD", "shard %d downloaded and verified (%s)", (int)n->shard,
                   sw_bt_torrent_file_path(n->t, (uint32_t)ev->file));
            start_load(n, 0);
        }
        break;
    case SW_BT_EV_PIECE_FAILED:
        sw_log(SW_LOG_WARN, "BT", "piece %u failed its hash; the sender is banned, the piece is fetched again",
               ev->piece);
        break;
    case SW_BT_EV_ERROR:
        sw_log(SW_LOG_ERROR, "BT", "%s", ev->msg ? ev->msg : sw_strerror(ev->err));
        break;
    case SW_BT_EV_METADATA:
        break; /* handled by the tick (model_setup) */
    default:
        break;
    }
}

static void on_dht_event(void *ud, const struct sw_dht_event *ev)
{
    struct sw_node *n = ud;
    if (n->stopping) return;
    if (ev->type == SW_DHT_EV_PEER && !ev->is_self && n->t) {
        char a[64];
        if (ev->addr.port == n->port && (ev->addr.family == 4 && !memcmp(ev->addr.ip, "\x7f\0\0\x01", 4))) return;
        sw_log(SW_LOG_DEBUG, "DHT", "peer %s", sw_dht_addr_str(&ev->addr, a, sizeof a));
        if (ev->addr.family == 4) {
            struct sockaddr_in sin = { 0 };
            sin.sin_family = AF_INET;
            memcpy(&sin.sin_addr, ev->addr.ip, 4);
            sin.sin_port = htons(ev->addr.port);
            sw_bt_torrent_add_peer_addr(n->t, &sin);
        } else {
            struct sockaddr_in6 s6 = { 0 };
            s6.sin6_family = AF_INET6;
            memcpy(&s6.sin6_addr, ev->addr.ip, 16);
            s6.sin6_port = htons(ev->addr.port);
            sw_bt_torrent_add_peer_addr(n->t, &s6);
        }
    } else if (ev->type == SW_DHT_EV_READY) {
        sw_log(SW_LOG_INFO, "DHT", "bootstrapped; announcing the model");
        sw_dht_announce(sw_dht_uv_dht(n->dht), n->info_hash, n->port, 1, sw_time_ms(), NULL);
        sw_dht_get_peers(sw_dht_uv_dht(n->dht), n->info_hash, sw_time_ms(), NULL);
    }
}

/* ------------------------------------------------------------------ model */

static void local_ip_for(const char *host, char *out, size_t len)
{
    /* The address our packets to `host` leave from (a UDP connect sends nothing). */
    snprintf(out, len, "127.0.0.1");
    struct sockaddr_in sin = { 0 };
    sin.sin_family = AF_INET;
    sin.sin_port = htons(9);
    if (!host || inet_pton(AF_INET, host, &sin.sin_addr) != 1) return;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) return;
    struct sockaddr_in me;
    socklen_t ml = sizeof me;
    if (!connect(fd, (struct sockaddr *)&sin, sizeof sin) && !getsockname(fd, (struct sockaddr *)&me, &ml))
        inet_ntop(AF_INET, &me.sin_addr, out, (socklen_t)len);
    close(fd);
}

/* Once the metadata is known: shard table, view, command guard, and our shard. */
static int model_setup(struct sw_node *n, char *err, size_t err_len)
{
    n->mi = sw_bt_torrent_metainfo(n->t);
    if (!n->mi) return SW_EAGAIN;
    const struct sw_bt_metainfo *mi = n->mi;
    uint32_t ns = 0;
    for (uint32_t i = 0; i < mi->n_files; i++)
        if (!mi->files[i].pad && mi->files[i].shard_index >= 0) ns = SW_MAX(ns, (uint32_t)mi->files[i].shard_index + 1);
    if (mi->has_shardswarm && mi->n_shards) ns = mi->n_shards;
    if (ns == 0 || ns > SW_SWARM_MAX_SHARDS) {
        snprintf(err, err_len, "%s: the torrent names no shards (no shardswarm dictionary with shard files)", n->model);
        return SW_ECORRUPT;
    }
    n->n_shards = ns;
    n->shard_file = malloc(ns * sizeof *n->shard_file);
    n->shard_bytes = calloc(ns, sizeof *n->shard_bytes);
    n->shard_lf = malloc(ns * sizeof *n->shard_lf);
    n->shard_ll = malloc(ns * sizeof *n->shard_ll);
    if (!n->shard_file || !n->shard_bytes || !n->shard_lf || !n->shard_ll) return SW_ENOMEM;
    for (uint32_t s = 0; s < ns; s++) n->shard_file[s] = -1;
    for (uint32_t i = 0; i < mi->n_files; i++) {
        const struct sw_bt_file *f = &mi->files[i];
        if (f->pad || f->shard_index < 0 || (uint32_t)f->shard_index >= ns) continue;
        n->shard_file[f->shard_index] = (int32_t)i;
        n->shard_bytes[f->shard_index] = f->length;
        n->shard_lf[f->shard_index] = f->layer_first;
        n->shard_ll[f->shard_index] = f->layer_last;
    }
    for (uint32_t s = 0; s < ns; s++)
        if (n->shard_file[s] < 0) {
            snprintf(err, err_len, "%s: the torrent has no file for shard %u", n->model, s);
            return SW_ECORRUPT;
        }
    if (n->cfg.shard >= 0 && (uint32_t)n->cfg.shard >= ns) {
        snprintf(err, err_len, "--shard %d: the model has %u shards (0..%u)", (int)n->cfg.shard, ns, ns - 1);
        return SW_ERANGE;
    }
    if (mi->owner_key_hex[0] && !sw_hex_decode(mi->owner_key_hex, n->owner, 32)) n->has_owner = 1;
    struct sw_cmd_guard_config gc = { 0 };
    gc.owner_pk = n->has_owner ? n->owner : NULL;
    memcpy(gc.self_id, n->id.pk, 32);
    memcpy(gc.info_hash, n->info_hash, 20);
    int rc = sw_cmd_guard_new(&gc, &n->guard);
    if (rc) return rc;
    sw_log(SW_LOG_INFO, "NODE", "model %s: %u shards, %s, owner key %s", mi->info_hash_hex, ns,
           mi->architecture[0] ? mi->architecture : "?", n->has_owner ? mi->owner_key_hex : "(none: LOAD_SHARD disabled)");
    /* Startup shard check: loads before joining when the file is complete and verified. */
    int32_t dshard = -1;
    if (!n->cfg.seed_all && drained_marked(n, &dshard)) {
        /* the owner's DRAIN stands across the restart: hold (and seed) the file, load nothing */
        n->drained = 1;
        n->auto_mode = 0;
        n->shard = dshard;
        n->phase = SW_PHASE_DRAINED;
        sw_log(SW_LOG_INFO, "SHARD", "drained by the owner's command before this start (%s/drained): shard %d is "
               "not loaded (its file stays and is seeded); a LOAD_SHARD brings the node back", n->cache_dir, (int)dshard);
    } else if (n->cfg.seed_all) {
        for (uint32_t s = 0; s < ns; s++) sw_bt_torrent_want_file(n->t, (uint32_t)n->shard_file[s], 1);
        uint32_t held = 0;
        for (uint32_t s = 0; s < ns; s++) held += sw_bt_torrent_file_complete(n->t, (uint32_t)n->shard_file[s]) ? 1 : 0;
        if (held == ns) sw_log(SW_LOG_INFO, "SHARD", "seeding all %u shards", ns);
        else sw_log(SW_LOG_INFO, "SHARD", "seeding all shards: %u of %u held, fetching the rest", held, ns);
    } else if (n->cfg.shard >= 0) {
        set_shard(n, n->cfg.shard, "startup");
    }
    struct sw_view_config vc = { 0 };
    vc.n_shards = ns;
    memcpy(vc.self_id, n->id.pk, 32);
    memcpy(vc.info_hash, n->info_hash, 20);
    if ((rc = sw_view_new(&vc, &n->view))) return rc;
    n->model_ready = 1;
    publish(n, 1);
    for (struct peer *p = n->peers, *next; p; p = next) { /* handshakes that came first */
        next = p->next;
        if (p->has_id) { /* proven while we waited for the metadata */
            uint8_t id[SW_NODE_ID_LEN];
            memcpy(id, p->id, SW_NODE_ID_LEN);
            authenticated(n, p, id);
        }
        if (!p->pending_hs) continue;
        uint8_t *rec = p->pending_hs;
        p->pending_hs = NULL;
        take_handshake_record(n, p, rec, p->pending_len);
        free(rec);
    }
    return 0;
}

/* ------------------------------------------------------------------ status */

static void status_line(struct sw_node *n, int force)
{
    if (!n->view) return;
    uint32_t ns = n->n_shards, disc = sw_view_n_discovered(n->view);
    int ready = sw_view_ready(n->view);
    size_t peers = n_swarm_peers(n);
    char reasons[2048];
    sw_view_reasons(n->view, reasons, sizeof reasons);
    struct sw_buf me = { 0 };
    if (n->cfg.seed_all) sw_buf_printf(&me, "seeding all shards");
    else if (n->shard < 0) sw_buf_printf(&me, n->auto_mode ? "shard auto: planning" : "no shard");
    else if (n->phase == SW_PHASE_FETCHING) {
        struct sw_bt_progress pr = { 0 };
        sw_bt_torrent_progress(n->t, n->shard_file[n->shard], &pr);
        unsigned pct = pr.bytes_total ? (unsigned)(pr.bytes_done * 100 / pr.bytes_total) : 0;
        char rate[32], eta[32];
        sw_fmt_bytes((uint64_t)(pr.rate_bps > 0 ? pr.rate_bps : 0), rate, sizeof rate);
        if (pr.eta_s != UINT64_MAX && pr.rate_bps > 0) sw_fmt_duration_ms(pr.eta_s * 1000, eta, sizeof eta);
        else snprintf(eta, sizeof eta, "unknown");
        sw_buf_printf(&me, "shard %d fetching %u%% at %s/s, ETA %s, %u peers with it", (int)n->shard, pct, rate, eta,
                      pr.n_peers);
    } else sw_buf_printf(&me, "shard %d %s", (int)n->shard, sw_phase_name(n->phase));
    /* what counts as a change: phases per node and shard, readiness, discovery, peers */
    struct sw_buf sig = { 0 };
    sw_buf_printf(&sig, "%d|%u|%zu|%d|%d", ready, disc, peers, (int)n->shard, n->phase);
    for (size_t i = 0; i < sw_view_count(n->view); i++) {
        const struct sw_view_node *vn = sw_view_at(n->view, i);
        if (vn->live) sw_buf_printf(&sig, "|%02x%02x:%d:%d", vn->cap.node_id[0], vn->cap.node_id[1], vn->cap.shard, vn->cap.phase);
    }
    const char *s = sw_buf_cstr(&sig);
    int changed = s && (!n->last_sig || strcmp(s, n->last_sig));
    uint64_t now = sw_time_ms();
    uint32_t interval = n->cfg.status_interval_ms ? n->cfg.status_interval_ms : 5000;
    if (changed || force || now - n->last_status >= interval) {
        sw_log(SW_LOG_INFO, "STATUS", "%s | discovered %u/%u shards | peers %zu | %s%s", sw_buf_cstr(&me), disc, ns,
               peers, ready ? "ready" : "not ready: ", ready ? "" : reasons);
        n->last_status = now;
        if (changed) {
            free(n->last_sig);
            n->last_sig = xstrdup(s);
        }
    }
    if (ready && !n->was_ready) {
        struct sw_buf b = { 0 };
        for (uint32_t k = 0; k < ns; k++) {
            uint8_t best[32];
            char ids[16];
            if (!sw_view_best_node(n->view, k, best))
                sw_buf_printf(&b, "%sshard %u \xe2\x86\x92 %s", k ? ", " : "", k, sw_node_id_short(best, ids, sizeof ids));
        }
        sw_log(SW_LOG_INFO, "READY", "swarm ready: all %u shards loaded (best: %s)", ns, sw_buf_cstr(&b) ? sw_buf_cstr(&b) : "");
        sw_buf_free(&b);
        n->ever_ready = 1;
    } else if (!ready && n->was_ready) {
        sw_log(SW_LOG_WARN, "STATUS", "swarm no longer ready: %s", reasons);
    }
    n->was_ready = ready;
    sw_buf_free(&me);
    sw_buf_free(&sig);
}

static void node_changed(struct sw_node *n)
{
    status_line(n, 0);
    rebuild_json(n);
    if (n->change_fn) n->change_fn(n->change_ud);
    n->dirty = 0;
}

/* ------------------------------------------------------------------ planner */

static void plan(struct sw_node *n, uint64_t now)
{
    if (!n->view || !n->auto_mode || n->cfg.seed_all || n->drained) return;
    struct sw_plan_input in = { n->shard_bytes, 0 };
    uint64_t mem = 0;
    if (!sw_sys_mem_available(&mem)) in.mem_budget = mem + (n->stage ? n->shard_bytes[n->shard] : 0);
    if (n->shard < 0) {
        int settled = n->first_peer_ms ? now - n->first_peer_ms >= AUTO_SETTLE_MS : now - n->started_ms >= AUTO_ALONE_MS;
        if (!settled) return;
        int s = sw_plan_pick(n->view, &in);
        if (s < 0) {
            if (now - n->last_status >= 5000)
                sw_log(SW_LOG_WARN, "SHARD", "--shard auto: no shard fits in %llu bytes of free memory",
                       (unsigned long long)in.mem_budget);
            return;
        }
        struct sw_shard_view sv;
        sw_view_shard(n->view, (uint32_t)s, &sv);
        sw_log(SW_LOG_INFO, "SHARD", "--shard auto: taking shard %d (%u loaded replicas, %u nodes on it)", s, sv.n_loaded,
               sv.n_announced);
        set_shard(n, s, "planner");
        return;
    }
    if (n->job) return;
    int t = sw_plan_review(n->view, &in);
    if (t < 0) {
        n->replan_target = -1;
        return;
    }
    if (t != n->replan_target) {
        n->replan_target = t;
        n->replan_since = now;
        return;
    }
    if (now - n->replan_since < REPLAN_GRACE_MS) return;
    sw_log(SW_LOG_INFO, "SHARD", "re-planning: shard %d has no node working on it and shard %d has another replica; moving",
           t, (int)n->shard);
    n->replan_target = -1;
    set_shard(n, t, "planner: replacing a missing shard");
}

/* ------------------------------------------------------------------ loop */

static void drain_loads(struct sw_node *n)
{
    pthread_mutex_lock(&n->mu);
    struct load_req *q = n->loads;
    n->loads = NULL;
    pthread_mutex_unlock(&n->mu);
    while (q) {
        struct load_req *next = q->next;
        char r[256] = "";
        int rc = take_load(n, NULL, q->wire, q->len, r, sizeof r);
        pthread_mutex_lock(&n->mu);
        q->rc = rc;
        snprintf(q->reason, sizeof q->reason, "%s", r);
        q->done = 1;
        pthread_cond_broadcast(&n->cv);
        pthread_mutex_unlock(&n->mu);
        q = next;
    }
}

static void on_async(uv_async_t *h)
{
    struct sw_node *n = h->data;
    drain_loads(n);
    if (n->dirty) node_changed(n);
}

/* Dials the --bootstrap nodes again (BitTorrent) and re-contacts them on the DHT. */
static void redial_bootstrap(struct sw_node *n)
{
    for (size_t i = 0; i < n->n_bootstrap; i++) {
        char host[256];
        const char *c = strrchr(n->bootstrap[i], ':');
        if (!c || (size_t)(c - n->bootstrap[i]) >= sizeof host) continue;
        memcpy(host, n->bootstrap[i], (size_t)(c - n->bootstrap[i]));
        host[c - n->bootstrap[i]] = 0;
        if (n->t) sw_bt_torrent_add_peer(n->t, host, (uint16_t)atoi(c + 1));
    }
    if (n->dht && n->n_bootstrap) sw_dht_uv_bootstrap(n->dht, (const char *const *)n->bootstrap, n->n_bootstrap);
}

static void on_tick(uv_timer_t *h)
{
    struct sw_node *n = h->data;
    if (n->stopping) return;
    uint64_t now = sw_time_ms();
    hold_expire(n, now);
    if (!n->model_ready) {
        char err[512] = "";
        int rc = model_setup(n, err, sizeof err);
        if (rc && rc != SW_EAGAIN) {
            sw_log(SW_LOG_ERROR, "NODE", "%s", err[0] ? err : sw_strerror(rc));
            n->failed = 1;
            if (n->change_fn) n->change_fn(n->change_ud); /* the host sees sw_node_failed() */
            sw_node_stop(n, NULL, NULL);
            return;
        }
        if (rc == SW_EAGAIN) { /* magnet: keep looking for peers that have the metadata */
            if (now - n->last_rejoin >= REJOIN_MS) {
                n->last_rejoin = now;
                redial_bootstrap(n);
            }
            if (n->dht && now - n->last_getpeers >= 3000) {
                n->last_getpeers = now;
                sw_dht_get_peers(sw_dht_uv_dht(n->dht), n->info_hash, now, NULL);
            }
            return;
        }
    }
    if (now - n->last_refresh >= REFRESH_MS) publish(n, 0);
    if (now - n->last_ping >= PING_MS) {
        n->last_ping = now;
        for (struct peer *p = n->peers; p; p = p->next) {
            if (!p->has_id) continue;
            uint8_t tok[8];
            sw_random_bytes(tok, 8);
            p->ping_token = sw_get_be64(tok);
            p->ping_sent_us = sw_time_us();
            send_kind(p, SW_MSG_PING, tok, 8);
        }
    }
    uint32_t gone = sw_view_expire(n->view, now);
    if (gone) {
        sw_log(SW_LOG_INFO, "SWARM", "%u node(s) departed (no record or keep-alive for 4 s)", gone);
        n->dirty = 1;
    }
    if (now - n->last_poll >= POLL_MS) {
        n->last_poll = now;
        check_folder(n);
    }
    if (n->dht && now - n->last_getpeers >= (n_swarm_peers(n) < 4 ? 3000u : 30000u)) {
        n->last_getpeers = now;
        sw_dht_get_peers(sw_dht_uv_dht(n->dht), n->info_hash, now, NULL);
    }
    if (now - n->last_rejoin >= REJOIN_MS) {
        n->last_rejoin = now;
        for (size_t i = 0; i < sw_view_count(n->view); i++) {
            const struct sw_view_node *vn = sw_view_at(n->view, i);
            if (!vn->self && !vn->direct && !n_conn_of(n, vn->cap.node_id)) connect_to_record(n, &vn->cap);
        }
        if (!n_swarm_peers(n)) redial_bootstrap(n);
    }
    plan(n, now);
    if (n->measure_pending && !n->job) {
        n->measure_pending = 0;
        start_measure(n);
    }
    if (now - n->last_json >= 1000) {
        n->json_stale = 0;
        rebuild_json(n); /* progress numbers and counters; the status line only changes on real events */
    }
    if (n->dirty) node_changed(n);
    else if (now - n->last_status >= (n->cfg.status_interval_ms ? n->cfg.status_interval_ms : 5000)) status_line(n, 1);
}

/* ------------------------------------------------------------------ JSON */

static json_t *node_json(struct sw_node *n, const struct sw_view_node *vn)
{
    char hex[65];
    const struct sw_cap *c = &vn->cap;
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(sw_node_id_hex(c->node_id, hex)));
    char ids[16];
    json_object_set_new(o, "short", json_string(sw_node_id_short(c->node_id, ids, sizeof ids)));
    json_object_set_new(o, "self", json_boolean(vn->self));
    json_object_set_new(o, "live", json_boolean(vn->live));
    json_object_set_new(o, "direct", json_boolean(vn->direct));
    json_object_set_new(o, "rtt_us", json_integer(vn->rtt_us));
    json_object_set_new(o, "shard", json_integer(c->shard));
    json_object_set_new(o, "phase", json_string(sw_phase_name(c->phase)));
    json_object_set_new(o, "loaded", json_boolean(c->phase == SW_PHASE_LOADED && c->shard >= 0));
    json_object_set_new(o, "seed_all", json_boolean(c->seed_all));
    json_object_set_new(o, "auto", json_boolean(c->movable));
    json_object_set_new(o, "bytes_done", json_integer((json_int_t)c->bytes_done));
    json_object_set_new(o, "bytes_total", json_integer((json_int_t)c->bytes_total));
    json_object_set_new(o, "progress", json_real(c->bytes_total ? (double)c->bytes_done / (double)c->bytes_total : 0));
    json_object_set_new(o, "rate_bps", json_integer((json_int_t)c->rate_bps));
    json_object_set_new(o, "eta_ms", json_integer((json_int_t)c->eta_ms));
    json_object_set_new(o, "layer_first", json_integer(c->layer_first));
    json_object_set_new(o, "layer_last", json_integer(c->layer_last));
    json_object_set_new(o, "mem_free", json_integer((json_int_t)c->mem_free));
    json_object_set_new(o, "threads", json_integer(c->threads));
    json_object_set_new(o, "tokens_per_s", json_real(c->tokens_per_s_milli / 1000.0));
    json_object_set_new(o, "queue", json_integer(c->queue));
    json_object_set_new(o, "api", json_string(c->api_addr));
    json_object_set_new(o, "listen", json_string(c->listen_addr));
    json_object_set_new(o, "seq", json_integer((json_int_t)c->seq));
    json_object_set_new(o, "age_ms", json_integer(vn->self ? 0 : (json_int_t)(sw_time_ms() - vn->last_seen_ms)));
    (void)n;
    return o;
}

static void rebuild_json(struct sw_node *n)
{
    n->last_json = sw_time_ms();
    json_t *root = json_object();
    char hex[65];
    json_object_set_new(root, "node_id", json_string(sw_node_id_hex(n->id.pk, hex)));
    char ih[41];
    sw_hex_encode(n->info_hash, 20, ih);
    json_object_set_new(root, "info_hash", json_string(ih));
    json_object_set_new(root, "model_ready", json_boolean(n->model_ready));
    json_object_set_new(root, "listen_port", json_integer(n->port));
    json_object_set_new(root, "dht_port", json_integer(n->dht ? sw_dht_uv_port(n->dht) : 0));
    json_object_set_new(root, "owner_key", json_string(n->mi ? n->mi->owner_key_hex : ""));
    if (n->view) {
        json_object_set_new(root, "n_shards", json_integer(n->n_shards));
        json_object_set_new(root, "ready", json_boolean(sw_view_ready(n->view)));
        json_object_set_new(root, "discovered", json_integer(sw_view_n_discovered(n->view)));
        json_object_set_new(root, "peers", json_integer((json_int_t)n_swarm_peers(n)));
        json_t *self = json_object();
        json_object_set_new(self, "shard", json_integer(n->shard));
        json_object_set_new(self, "phase", json_string(sw_phase_name(n->cfg.seed_all ? SW_PHASE_NONE : n->phase)));
        json_object_set_new(self, "auto", json_boolean(n->auto_mode));
        json_object_set_new(self, "seed_all", json_boolean(n->cfg.seed_all));
        json_object_set_new(self, "tokens_per_s", json_real(n->tps));
        json_object_set_new(self, "queue", json_integer(n->queue)); /* pipeline sessions on our stage */
        const struct sw_cores *cl = n->stage ? sw_stage_cores(n->stage) : NULL;
        if (cl) { /* the cores this machine's nodes share (infer.h: core lease) */
            uint64_t waits, wait_us;
            sw_cores_waited(cl, &waits, &wait_us);
            json_t *co = json_object();
            json_object_set_new(co, "budget", json_integer(sw_cores_budget(cl)));
            json_object_set_new(co, "dir", json_string(sw_cores_dir(cl)));
            json_object_set_new(co, "waits", json_integer((json_int_t)waits));
            json_object_set_new(co, "wait_ms", json_real((double)wait_us / 1000.0));
            json_object_set_new(self, "core_lease", co);
        }
        if (n->shard >= 0)
            json_object_set_new(self, "path", json_string(sw_bt_torrent_file_path(n->t, (uint32_t)n->shard_file[n->shard])));
        json_object_set_new(root, "self", self);
        json_t *reasons = json_array(), *shards = json_array();
        for (uint32_t s = 0; s < n->n_shards; s++) {
            char r[1024];
            if (sw_view_shard_reason(n->view, s, r, sizeof r)) json_array_append_new(reasons, json_string(r));
            struct sw_shard_view sv;
            sw_view_shard(n->view, s, &sv);
            json_t *so = json_object();
            json_object_set_new(so, "shard", json_integer(s));
            json_object_set_new(so, "layer_first", json_integer(n->shard_lf[s]));
            json_object_set_new(so, "layer_last", json_integer(n->shard_ll[s]));
            json_object_set_new(so, "bytes", json_integer((json_int_t)n->shard_bytes[s]));
            json_object_set_new(so, "ready", json_boolean(sv.n_loaded > 0));
            json_object_set_new(so, "announced", json_integer(sv.n_announced));
            json_object_set_new(so, "loaded", json_integer(sv.n_loaded));
            json_object_set_new(so, "seeders", json_integer(sv.n_seeders));
            json_object_set_new(so, "best", sv.has_best ? json_string(sw_node_id_hex(sv.best, hex)) : json_null());
            json_object_set_new(so, "reason", r[0] ? json_string(r) : json_null());
            json_t *nodes = json_array();
            for (size_t i = 0; i < sw_view_count(n->view); i++) {
                const struct sw_view_node *vn = sw_view_at(n->view, i);
                if (vn->live && vn->cap.shard == (int32_t)s && !vn->cap.seed_all)
                    json_array_append_new(nodes, node_json(n, vn));
            }
            json_object_set_new(so, "nodes", nodes);
            json_array_append_new(shards, so);
        }
        json_object_set_new(root, "reasons", reasons);
        json_object_set_new(root, "shards", shards);
        json_t *all = json_array();
        for (size_t i = 0; i < sw_view_count(n->view); i++)
            json_array_append_new(all, node_json(n, sw_view_at(n->view, i)));
        json_object_set_new(root, "nodes", all);
        struct sw_view_stats st = sw_view_stats(n->view);
        json_t *js = json_object();
        json_object_set_new(js, "records_accepted", json_integer((json_int_t)st.accepted));
        json_object_set_new(js, "records_stale", json_integer((json_int_t)st.stale));
        json_object_set_new(js, "records_malformed", json_integer((json_int_t)st.malformed));
        json_object_set_new(js, "records_unsigned_or_bad_sig", json_integer((json_int_t)st.unsigned_or_bad_sig));
        json_object_set_new(js, "records_wrong_model", json_integer((json_int_t)st.wrong_model));
        json_object_set_new(js, "departures", json_integer((json_int_t)st.departed));
        json_object_set_new(root, "stats", js);
    } else {
        json_object_set_new(root, "ready", json_false());
        json_t *reasons = json_array();
        json_array_append_new(reasons, json_string("the model's metadata is not known yet (magnet: waiting for peers)"));
        json_object_set_new(root, "reasons", reasons);
    }
    if (n->dht) {
        struct sw_dht_stats ds;
        sw_dht_get_stats(sw_dht_uv_dht(n->dht), &ds);
        json_t *d = json_object();
        json_object_set_new(d, "nodes", json_integer(ds.nodes));
        json_object_set_new(d, "good_nodes", json_integer(ds.good_nodes));
        json_object_set_new(d, "packets_in", json_integer((json_int_t)ds.packets_in));
        json_object_set_new(root, "dht", d);
    }
    struct sw_bt_progress bp;
    if (n->t && !sw_bt_torrent_progress(n->t, -1, &bp)) { /* this session's BitTorrent totals */
        json_t *b = json_object();
        json_object_set_new(b, "downloaded_bytes", json_integer((json_int_t)bp.downloaded));
        json_object_set_new(b, "uploaded_bytes", json_integer((json_int_t)bp.uploaded));
        json_object_set_new(b, "download_bps", json_real(bp.rate_bps));
        json_object_set_new(b, "upload_bps", json_real(bp.upload_bps));
        json_object_set_new(b, "peers", json_integer(sw_bt_torrent_n_peers(n->t)));
        json_object_set_new(root, "bt", b);
    }
    if (n->status_extra) n->status_extra(n->status_extra_ud, root); /* e.g. "pipeline" */
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!text) return;
    pthread_mutex_lock(&n->mu);
    free(n->status_json);
    n->status_json = text;
    pthread_mutex_unlock(&n->mu);
}

char *sw_node_status_json(struct sw_node *n)
{
    if (!n) return NULL;
    pthread_mutex_lock(&n->mu);
    char *s = xstrdup(n->status_json ? n->status_json : "{\"ready\":false,\"reasons\":[\"starting\"]}");
    pthread_mutex_unlock(&n->mu);
    return s;
}

int sw_node_submit_load(struct sw_node *n, const uint8_t *wire, size_t len, char *reason, size_t reason_len)
{
    if (!n || !wire || !len || len > 4096) return SW_EINVAL;
    uv_thread_t self = uv_thread_self();
    if (uv_thread_equal(&self, &n->loop_thread)) return take_load(n, NULL, wire, len, reason, reason_len);
    struct load_req q = { 0 };
    q.wire = malloc(len);
    if (!q.wire) return SW_ENOMEM;
    memcpy(q.wire, wire, len);
    q.len = len;
    pthread_mutex_lock(&n->mu);
    if (n->stopping) {
        pthread_mutex_unlock(&n->mu);
        free(q.wire);
        return SW_ECLOSED;
    }
    q.next = n->loads;
    n->loads = &q;
    uv_async_send(&n->async); /* under the lock: stop closes the handle only after setting stopping */
    pthread_mutex_unlock(&n->mu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    pthread_mutex_lock(&n->mu);
    while (!q.done) {
        if (pthread_cond_timedwait(&n->cv, &n->mu, &ts) == ETIMEDOUT) break;
    }
    int done = q.done, rc = q.rc;
    if (!done) { /* unlink ourselves */
        struct load_req **pp = &n->loads;
        while (*pp && *pp != &q) pp = &(*pp)->next;
        if (*pp) *pp = q.next;
    }
    snprintf(reason, reason_len, "%s", done ? q.reason : "the node did not answer in time");
    pthread_mutex_unlock(&n->mu);
    free(q.wire);
    return done ? rc : SW_ETIMEDOUT;
}

/* ------------------------------------------------------------------ life */

int sw_node_new(struct uv_loop_s *loop, const struct sw_node_config *cfg, struct sw_node **out,
                char *err, size_t err_len)
{
    if (!loop || !cfg || !out || !cfg->model || !cfg->cache_dir) return SW_EINVAL;
    struct sw_node *n = calloc(1, sizeof *n);
    if (!n) return SW_ENOMEM;
    n->loop = loop;
    n->cfg = *cfg;
    n->model = xstrdup(cfg->model);
    n->cache_dir = xstrdup(cfg->cache_dir);
    n->shards_dir = sw_path_join(cfg->cache_dir, "shards");
    n->api_host = xstrdup(cfg->api_host ? cfg->api_host : "127.0.0.1");
    n->cfg.model = n->model;
    n->cfg.cache_dir = n->cache_dir;
    n->shard = -1;
    n->pre_final = -1;
    n->replan_target = -1;
    n->auto_mode = cfg->shard == -2;
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    n->loop_thread = uv_thread_self();
    *out = n;
    if (!n->model || !n->cache_dir || !n->shards_dir || !n->api_host) return SW_ENOMEM;
    if (cfg->n_bootstrap) {
        n->bootstrap = calloc(cfg->n_bootstrap, sizeof *n->bootstrap);
        if (!n->bootstrap) return SW_ENOMEM;
        for (size_t i = 0; i < cfg->n_bootstrap; i++) n->bootstrap[i] = xstrdup(cfg->bootstrap[i]);
        n->n_bootstrap = cfg->n_bootstrap;
    }
    n->cfg.bootstrap = NULL;
    int rc;
    if (!strncmp(cfg->model, "magnet:", 7)) {
        n->is_magnet = 1;
        rc = sw_bt_magnet_parse(cfg->model, &n->magnet, err, err_len);
        if (rc) return rc;
        memcpy(n->info_hash, n->magnet.info_hash, 20);
    } else {
        rc = sw_bt_metainfo_load(cfg->model, &n->mi_file, err, err_len);
        if (rc) return rc;
        memcpy(n->info_hash, n->mi_file.info_hash, 20);
    }
    /* the model is usable: now the cache folder, our key and the shards folder */
    rc = sw_identity_load_or_create(cfg->cache_dir, &n->id, NULL, err, err_len);
    if (rc) return rc;
    sw_node_id_short(n->id.pk, n->id_short, sizeof n->id_short);
    rc = sw_mkdir_p(n->shards_dir);
    if (rc) {
        snprintf(err, err_len, "%s: cannot create the shards folder (%s)", n->shards_dir, sw_strerror(rc));
        return rc;
    }
    return 0;
}

int sw_node_start(struct sw_node *n, char *err, size_t err_len)
{
    if (!n) return SW_EINVAL;
    char hex[65];
    sw_log(SW_LOG_INFO, "NODE", "node id %s (key in %s/node.key)", sw_node_id_hex(n->id.pk, hex), n->cache_dir);
    n->loop_thread = uv_thread_self();
    n->started_ms = sw_time_ms();
    struct sw_bt_session_opts so = { 0 };
    so.listen_port = n->cfg.listen_port;
    so.on_event = on_bt_event;
    so.ud = n;
    int rc = sw_bt_session_new(n->loop, &so, &n->bt, err, err_len);
    if (rc) return rc;
    n->port = sw_bt_session_port(n->bt);
    struct sw_bt_ext_ops ops = { 0 };
    ops.name = SW_SWARM_EXT_NAME;
    ops.on_peer_connected = on_ext_connected;
    ops.on_handshake = on_ext_handshake;
    ops.on_message = on_ext_message;
    ops.on_peer_closed = on_ext_closed;
    ops.ud = n;
    if ((rc = sw_bt_session_register_ext(n->bt, &ops))) {
        snprintf(err, err_len, "cannot register the swarm extension: %s", sw_strerror(rc));
        return rc;
    }
    struct sw_bt_torrent_opts to = { 0 };
    to.dir = n->shards_dir;
    to.want_all = n->cfg.seed_all;
    to.verify_all = n->cfg.verify;
    to.trust_complete = 0; /* a file without resume data is hashed before it counts */
    if (!n->is_magnet && n->cfg.shard >= 0) {
        /* Remember whether our shard's file is there under its final name: if the storage
         * then finds bad pieces (and renames it to .part), the log must say "corrupt". */
        for (uint32_t i = 0; i < n->mi_file.n_files; i++) {
            const struct sw_bt_file *f = &n->mi_file.files[i];
            if (f->pad || f->shard_index != n->cfg.shard) continue;
            char *path = sw_path_join(n->shards_dir, f->path);
            uint64_t sz = 0;
            if (path && !sw_file_size(path, &sz) && sz == f->length) n->pre_final = n->cfg.shard;
            free(path);
        }
    }
    if (n->is_magnet) rc = sw_bt_torrent_add_magnet(n->bt, &n->magnet, &to, &n->t, err, err_len);
    else rc = sw_bt_torrent_add(n->bt, &n->mi_file, &to, &n->t, err, err_len);
    if (rc) return rc;
    /* the local address peers reach us at */
    char bhost[256] = "";
    if (n->n_bootstrap) {
        const char *c = strrchr(n->bootstrap[0], ':');
        if (c && (size_t)(c - n->bootstrap[0]) < sizeof bhost) {
            memcpy(bhost, n->bootstrap[0], (size_t)(c - n->bootstrap[0]));
            bhost[c - n->bootstrap[0]] = 0;
        }
    }
    local_ip_for(bhost[0] ? bhost : "127.0.0.1", n->local_ip, sizeof n->local_ip);
    /* Startup shard check and load, before joining. */
    if (!n->is_magnet) {
        rc = model_setup(n, err, err_len);
        if (rc) return rc;
    }
    /* Join: DHT on the same port number (UDP), bootstrap, announce; bootstrap peers dialed. */
    struct sw_dht_uv_config dc = { 0 };
    dc.dht.on_event = on_dht_event;
    dc.dht.ud = n;
    dc.port = n->port;
    char *state = sw_path_join(n->cache_dir, "dht.state");
    dc.state_path = state;
    int derr = 0;
    n->dht = sw_dht_uv_new(n->loop, &dc, &derr);
    free(state);
    if (!n->dht)
        sw_log(SW_LOG_WARN, "DHT", "no DHT (UDP port %u: %s); using --bootstrap peers and gossip only", n->port,
               sw_strerror(derr));
    sw_log(SW_LOG_INFO, "NODE", "listening on port %u (BitTorrent TCP, DHT UDP)", n->port);
    if (n->dht) {
        if (n->n_bootstrap) sw_dht_uv_bootstrap(n->dht, (const char *const *)n->bootstrap, n->n_bootstrap);
        sw_dht_announce(sw_dht_uv_dht(n->dht), n->info_hash, n->port, 1, sw_time_ms(), NULL);
    }
    for (size_t i = 0; i < n->n_bootstrap; i++) {
        char host[256];
        const char *c = strrchr(n->bootstrap[i], ':');
        if (!c || (size_t)(c - n->bootstrap[i]) >= sizeof host) continue;
        memcpy(host, n->bootstrap[i], (size_t)(c - n->bootstrap[i]));
        host[c - n->bootstrap[i]] = 0;
        sw_bt_torrent_add_peer(n->t, host, (uint16_t)atoi(c + 1));
    }
    uv_timer_init(n->loop, &n->tick);
    n->tick.data = n;
    uv_timer_start(&n->tick, on_tick, TICK_MS, TICK_MS);
    uv_async_init(n->loop, &n->async, on_async);
    n->async.data = n;
    n->handles_open = 1;
    if (!uv_fs_event_init(n->loop, &n->fsev)) {
        n->fsev.data = n;
        n->fsev_on = !uv_fs_event_start(&n->fsev, on_fs_event, n->shards_dir, 0);
        if (!n->fsev_on) uv_close((uv_handle_t *)&n->fsev, NULL);
    }
    if (n->model_ready) {
        publish(n, 1);
        node_changed(n);
    } else {
        sw_log(SW_LOG_INFO, "NODE", "waiting for the model's metadata from peers (magnet)");
        rebuild_json(n);
    }
    return 0;
}

static void closed_cb(uv_handle_t *h)
{
    (void)h;
}

void sw_node_stop(struct sw_node *n, void (*done)(void *ud), void *ud)
{
    if (!n || n->stopping) return;
    for (struct peer *p = n->peers; p; p = p->next)
        if (p->has_id) send_kind(p, SW_MSG_BYE, NULL, 0);
    pthread_mutex_lock(&n->mu);
    n->stopping = 1;
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    drain_loads(n);
    retire_stage(n, "the node is stopping"); /* freed once the pipeline's jobs are done */
    n->stop_done = done;
    n->stop_ud = ud;
    if (n->handles_open) {
        uv_timer_stop(&n->tick);
        uv_close((uv_handle_t *)&n->tick, closed_cb);
        uv_close((uv_handle_t *)&n->async, closed_cb);
        if (n->fsev_on) {
            uv_fs_event_stop(&n->fsev);
            uv_close((uv_handle_t *)&n->fsev, closed_cb);
        }
        n->handles_open = 0;
    }
    if (n->dht) {
        sw_dht_uv_close(n->dht);
        n->dht = NULL;
    }
    if (n->bt) sw_bt_session_close(n->bt);
    if (done) done(ud);
}

void sw_node_free(struct sw_node *n)
{
    if (!n) return;
    sw_stage_free(n->stage);
    while (n->holds) {
        struct hold *h = n->holds;
        n->holds = h->next;
        hold_free(h);
    }
    sw_bt_session_free(n->bt);
    sw_view_free(n->view);
    sw_cmd_guard_free(n->guard);
    while (n->peers) {
        struct peer *p = n->peers;
        n->peers = p->next;
        free(p->pending_hs);
        free(p);
    }
    sw_bt_metainfo_free(&n->mi_file);
    if (n->is_magnet) sw_bt_magnet_free(&n->magnet);
    for (size_t i = 0; i < n->n_bootstrap; i++) free(n->bootstrap[i]);
    free(n->bootstrap);
    free(n->shard_file);
    free(n->shard_bytes);
    free(n->shard_lf);
    free(n->shard_ll);
    free(n->last_sig);
    free(n->status_json);
    sw_buf_free(&n->wire);
    free(n->model);
    free(n->cache_dir);
    free(n->shards_dir);
    free(n->api_host);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
    free(n);
}

struct uv_loop_s *sw_node_loop(struct sw_node *n) { return n ? n->loop : NULL; }
const struct sw_view *sw_node_view(const struct sw_node *n) { return n ? n->view : NULL; }
const uint8_t *sw_node_id(const struct sw_node *n) { return n ? n->id.pk : NULL; }
struct sw_stage *sw_node_stage(struct sw_node *n) { return n ? n->stage : NULL; }
int sw_node_failed(const struct sw_node *n) { return n ? n->failed : 0; }
const struct sw_bt_metainfo *sw_node_metainfo(const struct sw_node *n) { return n && n->model_ready ? n->mi : NULL; }

int sw_node_shard_file(struct sw_node *n, int32_t *shard_out, uint32_t *file_out, const char **path_out)
{
    if (!n || !n->model_ready || !n->stage || n->phase != SW_PHASE_LOADED || n->shard < 0) return SW_ENOTFOUND;
    const char *path = sw_bt_torrent_file_path(n->t, (uint32_t)n->shard_file[n->shard]);
    if (!path) return SW_ENOTFOUND;
    if (shard_out) *shard_out = n->shard;
    if (file_out) *file_out = (uint32_t)n->shard_file[n->shard];
    if (path_out) *path_out = path;
    return 0;
}

void sw_node_set_pipe_handler(struct sw_node *n, sw_node_pipe_fn fn, void *ud)
{
    if (!n) return;
    n->pipe_fn = fn;
    n->pipe_ud = ud;
}

void sw_node_set_api_addr(struct sw_node *n, const char *host, uint16_t port)
{
    if (!n) return;
    char *h = xstrdup(host ? host : "127.0.0.1");
    if (!h) return;
    free(n->api_host);
    n->api_host = h;
    n->cfg.api_port = port;
    n->cap.api_addr[0] = 0;
    publish(n, 1);
}

void sw_node_set_status_extra(struct sw_node *n, void (*fn)(void *ud, struct json_t *root), void *ud)
{
    if (!n) return;
    n->status_extra = fn;
    n->status_extra_ud = ud;
}

void sw_node_set_queue(struct sw_node *n, uint32_t queue)
{
    if (!n || n->queue == queue) return;
    n->queue = queue;
    publish(n, 1);
}

void sw_node_set_peer_handler(struct sw_node *n, sw_node_peer_fn fn, void *ud)
{
    if (!n) return;
    n->peer_fn = fn;
    n->peer_ud = ud;
}

void sw_node_set_stage_release(struct sw_node *n, sw_node_release_fn fn, void *ud)
{
    if (!n) return;
    n->release_fn = fn;
    n->release_ud = ud;
}

void sw_node_set_change_handler(struct sw_node *n, sw_node_change_fn fn, void *ud)
{
    if (!n) return;
    n->change_fn = fn;
    n->change_ud = ud;
}
#endif /* SW_SWARM_NODE_STUB */
