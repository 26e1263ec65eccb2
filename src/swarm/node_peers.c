/* node_peers.c — the shardswarm BEP 10 extension of a node: peers and their proven ids,
 * held messages while a connection is replaced, record gossip, authentication, and the
 * owner commands (LOAD_SHARD, DRAIN). Not for: the node's own record (node.c). */
#include "swarm/node_int.h"

#include <stdlib.h>

/* ------------------------------------------------------------------ peers */

static struct peer *peer_by_id(struct sw_node *n, const uint8_t id[SW_NODE_ID_LEN])
{
    for (struct peer *p = n->peers; p; p = p->next)
        if (p->has_id && !memcmp(p->id, id, SW_NODE_ID_LEN) && sw_bt_peer_has_ext(p->bt)) return p;
    return NULL;
}

int sw__node_n_conn_of(struct sw_node *n, const uint8_t id[SW_NODE_ID_LEN])
{
    int k = 0;
    for (struct peer *p = n->peers; p; p = p->next)
        if (p->has_id && !memcmp(p->id, id, SW_NODE_ID_LEN)) k++;
    return k;
}

size_t sw__node_n_swarm_peers(struct sw_node *n)
{
    size_t k = 0;
    for (struct peer *p = n->peers; p; p = p->next) k += p->has_id ? 1 : 0;
    return k;
}

int sw__node_send_kind(struct peer *p, uint8_t kind, const uint8_t *body, size_t len)
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

void sw__node_hold_free(struct hold *h)
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
    sw__node_hold_free(h);
}

static void depart_direct(struct sw_node *n, const uint8_t id[SW_NODE_ID_LEN], const char *why);

/* A replacement that never proved the id within HOLD_MS: the node is gone after all. */
void sw__node_hold_expire(struct sw_node *n, uint64_t now_ms)
{
    for (struct hold *h = n->holds, *nx; h; h = nx) {
        nx = h->next;
        if (now_ms - h->since_ms < HOLD_MS) continue;
        hold_unlink(n, h);
        if (!sw__node_n_conn_of(n, h->id)) depart_direct(n, h->id, "its replacement connection never proved the node id");
        sw__node_hold_free(h);
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
void sw__node_relay_record(struct sw_node *n, const uint8_t origin[SW_NODE_ID_LEN], const uint8_t *from,
                           const uint8_t *wire, size_t len)
{
    for (struct peer *p = n->peers; p; p = p->next) {
        if (!p->has_id) continue;
        if (from == NULL && !memcmp(origin, n->id.pk, SW_NODE_ID_LEN)) {
            sw__node_send_kind(p, SW_MSG_CAP, wire, len); /* our own: to every neighbour */
            continue;
        }
        if (sw_view_should_relay(n->view, origin, from, p->id)) sw__node_send_kind(p, SW_MSG_CAP, wire, len);
    }
}

void sw__node_connect_to_record(struct sw_node *n, const struct sw_cap *c)
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
        if (vn && !vn->direct && sw__node_n_conn_of(n, c.node_id)) sw_view_set_direct(n->view, c.node_id, 1, sw_time_ms());
        sw__node_relay_record(n, c.node_id, from && from->has_id ? from->id : NULL, wire, len);
        if (!sw__node_n_conn_of(n, c.node_id)) sw__node_connect_to_record(n, &c);
        if (rc == SW_VIEW_FRESH) sw__node_mark_dirty(n);
        /* else: progress and counters only; the JSON catches up within a second (on_tick) */
    } else if (from && from->has_id) {
        sw_view_touch(n->view, from->id, sw_time_ms());
    }
    return rc;
}

void sw__node_on_ext_connected(void *ud, struct sw_bt_peer *bp)
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
    if (n->wire.len) sw__node_send_kind(p, SW_MSG_CAP, n->wire.data, n->wire.len);
    for (size_t i = 0; n->view && i < sw_view_count(n->view); i++) {
        const struct sw_view_node *vn = sw_view_at(n->view, i);
        if (vn->self || !vn->live) continue;
        if (!sw_view_should_relay(n->view, vn->cap.node_id, NULL, p->id)) continue;
        size_t len;
        const uint8_t *w = sw_view_wire(n->view, vn->cap.node_id, &len);
        if (w) sw__node_send_kind(p, SW_MSG_CAP, w, len);
    }
}

/* The peer proved it holds the key of node `id`: the connection now stands for that node. */
void sw__node_authenticated(struct sw_node *n, struct peer *p, const uint8_t id[SW_NODE_ID_LEN])
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
    sw__node_publish(n, 1); /* our neighbour list changed */
    if (n->peer_fn && sw__node_n_conn_of(n, p->id) == 1) n->peer_fn(n->peer_ud, p->id, 1);
    sw__node_mark_dirty(n);
}

/* The signed record a peer put in its extended handshake names the node it claims to be;
 * the claim is believed once the peer signs our challenge with that node's key. */
void sw__node_take_handshake_record(struct sw_node *n, struct peer *p, const uint8_t *rec, size_t len)
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
        sw__node_send_kind(p, SW_MSG_HELLO, p->challenge, sizeof p->challenge);
    }
}

void sw__node_on_ext_handshake(void *ud, struct sw_bt_peer *bp, const uint8_t *dict, size_t len)
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
            sw__node_take_handshake_record(n, p, rec->str, rec->str_len);
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

/* A valid command for another node, its nonce new here (sw_cmd_guard_remember). */
static void forward_load(struct sw_node *n, struct peer *from, const struct sw_load_cmd *c,
                         const uint8_t *wire, size_t len)
{
    struct peer *t = peer_by_id(n, c->target);
    if (t) {
        sw__node_send_kind(t, SW_MSG_LOAD, wire, len);
        return;
    }
    for (struct peer *p = n->peers; p; p = p->next) /* flood toward a node we do not reach */
        if (p != from && p->has_id) sw__node_send_kind(p, SW_MSG_LOAD, wire, len);
}

#define DRAIN_REASON "the node is draining (owner's command)"


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
int sw__node_drained_marked(struct sw_node *n, int32_t *shard_out)
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
    sw__node_retire_stage(n, DRAIN_REASON);
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
    sw__node_publish(n, 1);
    sw__node_changed(n);
}

/* An owner command (LOAD_SHARD or DRAIN) from a peer (from != NULL) or the API. */
int sw__node_take_load(struct sw_node *n, struct peer *from, const uint8_t *wire, size_t len,
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
        if (!rc && sw_cmd_guard_remember(n->guard, &c) == SW_EEXIST) {
            /* a flooded copy from a peer is dropped quietly; the same command again from the
             * API is a replay (the nonces outlive a restart: <cache>/owner-nonces) */
            snprintf(reason, reason_len, "replayed (nonce already forwarded by this node)");
            if (from) return SW_EPERM;
            sw_log(SW_LOG_WARN, "SWARM", "refused %s from %s: %s", name, src, reason);
            return SW_EPERM;
        }
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
        sw__node_set_shard(n, (int32_t)c.shard, "LOAD_SHARD");
    }
    return 0;
}

/* What a peer may send in one message of our extension now, asked at a large message's
 * length prefix (docs/security.md): records, commands and the challenge are small, so a
 * peer that has not proved its node id gets SW_SWARM_MSG_SMALL; an authenticated one what
 * the pipeline sessions open here allow (hidden states of a step they agreed to). */
size_t sw__node_msg_cap(void *ud, struct sw_bt_peer *bp, size_t len)
{
    struct sw_node *n = ud;
    struct peer *p = sw_bt_peer_userdata(bp);
    (void)len;
    /* TESTING ONLY (tests/swarm/bufcap_it.py budget): every peer speaking the extension may
     * send this many bytes, as before these caps, so that the node-wide budget is tested
     * on its own. */
    static long long test_cap = -1;
    if (test_cap < 0) {
        const char *env = getenv("SW_TEST_MSG_CAP");
        test_cap = env ? atoll(env) : 0;
    }
    if (test_cap > 0) return (size_t)test_cap;
    if (!p || !p->has_id || !n->cap_fn) return SW_SWARM_MSG_SMALL;
    return SW_MAX((size_t)SW_SWARM_MSG_SMALL, n->cap_fn(n->cap_ud, p->id));
}

void sw__node_on_ext_message(void *ud, struct sw_bt_peer *bp, const uint8_t *payload, size_t len)
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
        sw__node_take_load(n, p, body, blen, r, sizeof r);
        break;
    }
    case SW_MSG_PING:
        if (blen == 8) sw__node_send_kind(p, SW_MSG_PONG, body, 8);
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
            sw__node_mark_dirty(n);
        }
        break;
    case SW_MSG_PIPE:
        if (n->pipe_fn && p->has_id) n->pipe_fn(n->pipe_ud, p->id, payload, len);
        break;
    case SW_MSG_HELLO:
        if (blen == 32) {
            uint8_t proof[96];
            sw_swarm_auth_sign(&n->id, n->info_hash, body, proof);
            sw__node_send_kind(p, SW_MSG_PROOF, proof, sizeof proof);
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
        sw__node_authenticated(n, p, id);
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
        sw__node_publish(n, 1);
    }
    sw__node_mark_dirty(n);
}

void sw__node_on_ext_closed(void *ud, struct sw_bt_peer *bp, int reason)
{
    struct sw_node *n = ud;
    struct peer *p = sw_bt_peer_userdata(bp);
    if (!p) return;
    struct peer **pp = &n->peers;
    while (*pp && *pp != p) pp = &(*pp)->next;
    if (*pp) *pp = p->next;
    if (p->has_id && n->view && !sw__node_n_conn_of(n, p->id) && reason == SW_EEXIST && !n->stopping) {
        /* The BitTorrent session replaced this connection by another one to the same peer
         * (both dialled each other; both ends keep the same one). The node has not left:
         * keep it live and direct; the new connection proves the id again within a few
         * round trips, and if it never does the keep-alive expiry notices. Pipeline
         * messages sent meanwhile are held for it (held_*). */
        hold_begin(n, p->id);
    } else if (p->has_id && n->view && !sw__node_n_conn_of(n, p->id)) {
        char why[96];
        snprintf(why, sizeof why, "connection closed: %s", sw_strerror(reason));
        depart_direct(n, p->id, why);
    }
    sw_bt_peer_set_userdata(bp, NULL);
    free(p->pending_hs);
    free(p);
}
