/* view.c — the swarm as this node sees it: the latest signed record of every node (our own
 * included: a node counts its own shard), liveness, readiness, the best node per shard and
 * the reasons readiness is blocked. Pure logic: records and times in, answers out.
 * Not for: the wire (node.c) or choosing what to load (planner.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "swarm/swarm.h"

struct entry {
    struct sw_view_node n;
    uint8_t *wire;           /* latest signed record, owned */
    size_t wire_len;
    uint64_t departed_seq;   /* when !live: records with seq <= this are ignored */
    uint64_t departed_at_ms;
};

struct sw_view {
    struct sw_view_config cfg;
    struct entry *e;
    size_t n, cap;
    struct sw_view_stats st;
    uint64_t now_ms;         /* the latest time a call gave us (reasons say "departed 12s ago") */
};

static void saw_time(struct sw_view *v, uint64_t now_ms)
{
    if (v && now_ms > v->now_ms) v->now_ms = now_ms;
}

int sw_view_new(const struct sw_view_config *cfg, struct sw_view **out)
{
    if (!cfg || !out || cfg->n_shards == 0 || cfg->n_shards > SW_SWARM_MAX_SHARDS) return SW_EINVAL;
    struct sw_view *v = calloc(1, sizeof *v);
    if (!v) return SW_ENOMEM;
    v->cfg = *cfg;
    if (!v->cfg.expiry_ms) v->cfg.expiry_ms = 4000;
    if (!v->cfg.max_nodes) v->cfg.max_nodes = 4096;
    *out = v;
    return 0;
}

void sw_view_free(struct sw_view *v)
{
    if (!v) return;
    for (size_t i = 0; i < v->n; i++) free(v->e[i].wire);
    free(v->e);
    free(v);
}

uint32_t sw_view_n_shards(const struct sw_view *v) { return v->cfg.n_shards; }

static struct entry *find(const struct sw_view *v, const uint8_t id[SW_NODE_ID_LEN])
{
    for (size_t i = 0; i < v->n; i++)
        if (!memcmp(v->e[i].n.cap.node_id, id, SW_NODE_ID_LEN)) return &v->e[i];
    return NULL;
}

/* A slot for a new node: grows the array, or reuses the longest-departed entry when full. */
static struct entry *add(struct sw_view *v)
{
    if (v->n == v->cap) {
        if (v->n >= v->cfg.max_nodes) {
            struct entry *old = NULL;
            for (size_t i = 0; i < v->n; i++)
                if (!v->e[i].n.live && !v->e[i].n.self &&
                    (!old || v->e[i].departed_at_ms < old->departed_at_ms))
                    old = &v->e[i];
            if (!old) return NULL;
            free(old->wire);
            memset(old, 0, sizeof *old);
            return old;
        }
        size_t nc = v->cap ? v->cap * 2 : 16;
        if (nc > v->cfg.max_nodes) nc = v->cfg.max_nodes;
        struct entry *ne = realloc(v->e, nc * sizeof *ne);
        if (!ne) return NULL;
        v->e = ne;
        v->cap = nc;
    }
    struct entry *e = &v->e[v->n++];
    memset(e, 0, sizeof *e);
    return e;
}

static int store_wire(struct entry *e, const uint8_t *wire, size_t len)
{
    uint8_t *w = NULL;
    if (wire && len) {
        w = malloc(len);
        if (!w) return SW_ENOMEM;
        memcpy(w, wire, len);
    }
    free(e->wire);
    e->wire = w;
    e->wire_len = w ? len : 0;
    return 0;
}

int sw_view_set_self(struct sw_view *v, const struct sw_cap *cap, const uint8_t *wire,
                     size_t wire_len, uint64_t now_ms)
{
    if (!v || !cap || memcmp(cap->node_id, v->cfg.self_id, SW_NODE_ID_LEN)) return SW_EINVAL;
    struct entry *e = find(v, cap->node_id);
    if (!e && !(e = add(v))) return SW_ENOMEM;
    int rc = store_wire(e, wire, wire_len);
    if (rc) return rc;
    e->n.cap = *cap;
    e->n.self = 1;
    e->n.live = 1;
    e->n.last_seen_ms = now_ms;
    return 0;
}

int sw_view_receive(struct sw_view *v, const uint8_t *wire, size_t len, uint64_t now_ms,
                    struct sw_cap *cap_out)
{
    if (!v || !wire) return SW_EINVAL;
    saw_time(v, now_ms);
    struct sw_cap c;
    int rc = sw_cap_decode(wire, len, &c, NULL, 0);
    if (rc == SW_EPERM) { v->st.unsigned_or_bad_sig++; return rc; }
    if (rc) { v->st.malformed++; return rc == SW_ETOOBIG ? SW_ETOOBIG : SW_ECORRUPT; }
    if (memcmp(c.info_hash, v->cfg.info_hash, 20)) { v->st.wrong_model++; return SW_EINVAL; }
    if (!memcmp(c.node_id, v->cfg.self_id, SW_NODE_ID_LEN)) { v->st.stale++; return SW_VIEW_STALE; }
    if (c.shard >= (int32_t)v->cfg.n_shards) { v->st.malformed++; return SW_ECORRUPT; }
    struct entry *e = find(v, c.node_id);
    int significant = 1;
    if (e) {
        uint64_t floor = e->n.live ? e->n.cap.seq : SW_MAX(e->n.cap.seq, e->departed_seq);
        if (c.seq <= floor) { v->st.stale++; return SW_VIEW_STALE; }
        const struct sw_cap *o = &e->n.cap;
        significant = !e->n.live || o->shard != c.shard || o->phase != c.phase || o->seed_all != c.seed_all ||
                      o->movable != c.movable || strcmp(o->api_addr, c.api_addr) ||
                      strcmp(o->listen_addr, c.listen_addr);
    } else {
        e = add(v);
        if (!e) { v->st.full++; return SW_ETOOBIG; }
    }
    if ((rc = store_wire(e, wire, len))) return rc;
    int was_direct = e->n.direct;
    uint32_t rtt = e->n.rtt_us;
    e->n.cap = c;
    e->n.self = 0;
    e->n.direct = was_direct;
    e->n.rtt_us = rtt;
    e->n.live = 1;
    e->n.last_seen_ms = now_ms;
    v->st.accepted++;
    if (cap_out) *cap_out = c;
    return significant ? SW_VIEW_FRESH : SW_VIEW_REFRESH;
}

void sw_view_set_direct(struct sw_view *v, const uint8_t id[SW_NODE_ID_LEN], int connected,
                        uint64_t now_ms)
{
    saw_time(v, now_ms);
    struct entry *e = v ? find(v, id) : NULL;
    if (!e || e->n.self) return;
    e->n.direct = connected ? 1 : 0;
    if (connected) {
        /* the node just proved its id on a fresh connection: alive, whatever we thought */
        e->n.last_seen_ms = now_ms;
        e->n.live = 1;
        return;
    }
    e->n.rtt_us = 0;
    if (e->n.live) {
        e->n.live = 0;
        e->departed_seq = e->n.cap.seq;
        e->departed_at_ms = now_ms;
        v->st.departed++;
    }
}

void sw_view_set_rtt(struct sw_view *v, const uint8_t id[SW_NODE_ID_LEN], uint32_t rtt_us)
{
    struct entry *e = v ? find(v, id) : NULL;
    if (e && rtt_us) e->n.rtt_us = rtt_us;
}

void sw_view_touch(struct sw_view *v, const uint8_t id[SW_NODE_ID_LEN], uint64_t now_ms)
{
    saw_time(v, now_ms);
    struct entry *e = v ? find(v, id) : NULL;
    if (e && e->n.live && now_ms > e->n.last_seen_ms) e->n.last_seen_ms = now_ms;
}

uint32_t sw_view_expire(struct sw_view *v, uint64_t now_ms)
{
    uint32_t k = 0;
    saw_time(v, now_ms);
    for (size_t i = 0; v && i < v->n; i++) {
        struct entry *e = &v->e[i];
        if (e->n.self || !e->n.live) continue;
        if (now_ms > e->n.last_seen_ms && now_ms - e->n.last_seen_ms > v->cfg.expiry_ms) {
            e->n.live = 0;
            e->departed_seq = e->n.cap.seq;
            e->departed_at_ms = now_ms;
            v->st.departed++;
            k++;
        }
    }
    return k;
}

size_t sw_view_count(const struct sw_view *v) { return v ? v->n : 0; }

const struct sw_view_node *sw_view_at(const struct sw_view *v, size_t i)
{
    return v && i < v->n ? &v->e[i].n : NULL;
}

const struct sw_view_node *sw_view_find(const struct sw_view *v, const uint8_t id[SW_NODE_ID_LEN])
{
    struct entry *e = v ? find(v, id) : NULL;
    return e ? &e->n : NULL;
}

const uint8_t *sw_view_wire(const struct sw_view *v, const uint8_t id[SW_NODE_ID_LEN], size_t *len_out)
{
    struct entry *e = v ? find(v, id) : NULL;
    if (!e || !e->wire) return NULL;
    if (len_out) *len_out = e->wire_len;
    return e->wire;
}

struct sw_view_stats sw_view_stats(const struct sw_view *v) { return v->st; }

size_t sw_view_n_live(const struct sw_view *v)
{
    size_t k = 0;
    for (size_t i = 0; v && i < v->n; i++) k += v->e[i].n.live ? 1 : 0;
    return k;
}

int sw_view_should_relay(const struct sw_view *v, const uint8_t origin[SW_NODE_ID_LEN],
                         const uint8_t *from, const uint8_t to[SW_NODE_ID_LEN])
{
    if (!memcmp(origin, to, SW_NODE_ID_LEN)) return 0;
    if (from && !memcmp(from, to, SW_NODE_ID_LEN)) return 0;
    struct entry *e = v ? find(v, origin) : NULL;
    if (!e) return 1;
    /* The origin pushes its records to its own neighbours itself. */
    for (uint32_t i = 0; i < e->n.cap.n_neighbours; i++)
        if (!memcmp(e->n.cap.neighbours[i], to, SW_SWARM_NB_PREFIX)) return 0;
    return 1;
}

/* ------------------------------------------------------------- readiness */

static int counts_for(const struct sw_view_node *n, uint32_t shard)
{
    return n->live && !n->cap.seed_all && n->cap.shard >= 0 && (uint32_t)n->cap.shard == shard;
}

/* Ordering key for "best node": lower is better. */
static uint64_t latency_key(const struct sw_view_node *n)
{
    if (n->self) return 0;
    if (n->direct) return n->rtt_us ? n->rtt_us : 1000000; /* direct, not yet measured: 1 s */
    return UINT64_MAX;                                      /* relayed: reachable only via others */
}

static int better(const struct sw_view_node *a, const struct sw_view_node *b)
{
    uint64_t la = latency_key(a), lb = latency_key(b);
    if (la != lb) return la < lb;
    if (a->cap.queue != b->cap.queue) return a->cap.queue < b->cap.queue;
    if (a->cap.tokens_per_s_milli != b->cap.tokens_per_s_milli)
        return a->cap.tokens_per_s_milli > b->cap.tokens_per_s_milli;
    return memcmp(a->cap.node_id, b->cap.node_id, SW_NODE_ID_LEN) < 0;
}

int sw_view_shard(const struct sw_view *v, uint32_t shard, struct sw_shard_view *out)
{
    if (!v || !out || shard >= v->cfg.n_shards) return SW_EINVAL;
    memset(out, 0, sizeof *out);
    out->shard = shard;
    const struct sw_view_node *best = NULL;
    for (size_t i = 0; i < v->n; i++) {
        const struct sw_view_node *n = &v->e[i].n;
        if (n->live && n->cap.seed_all) out->n_seeders++;
        if (!counts_for(n, shard)) continue;
        out->n_announced++;
        if (n->cap.phase != SW_PHASE_LOADED) continue;
        out->n_loaded++;
        if (!best || better(n, best)) best = n;
    }
    if (best) {
        out->has_best = 1;
        memcpy(out->best, best->cap.node_id, SW_NODE_ID_LEN);
    }
    return 0;
}

int sw_view_best_node(const struct sw_view *v, uint32_t shard, uint8_t id_out[SW_NODE_ID_LEN])
{
    struct sw_shard_view s;
    int rc = sw_view_shard(v, shard, &s);
    if (rc) return rc;
    if (!s.has_best) return SW_ENOTFOUND;
    memcpy(id_out, s.best, SW_NODE_ID_LEN);
    return 0;
}

int sw_view_ready(const struct sw_view *v)
{
    if (!v) return 0;
    for (uint32_t s = 0; s < v->cfg.n_shards; s++) {
        struct sw_shard_view sv;
        sw_view_shard(v, s, &sv);
        if (!sv.n_loaded) return 0;
    }
    return 1;
}

uint32_t sw_view_n_discovered(const struct sw_view *v)
{
    uint32_t k = 0;
    for (uint32_t s = 0; v && s < v->cfg.n_shards; s++) {
        struct sw_shard_view sv;
        sw_view_shard(v, s, &sv);
        k += sv.n_announced ? 1 : 0;
    }
    return k;
}

/* "80 MB/s", "1.5 MB/s", "512 B/s": decimal units, like sw_fmt_bytes. */
static void fmt_rate(uint64_t bps, char *out, size_t len)
{
    static const char *u[] = { "B", "KB", "MB", "GB", "TB" };
    double x = (double)bps;
    unsigned k = 0;
    while (x >= 1000.0 && k + 1 < SW_ARRAY_LEN(u)) { x /= 1000.0; k++; }
    if (k == 0 || x >= 10.0) snprintf(out, len, "%.0f %s/s", x, u[k]);
    else snprintf(out, len, "%.1f %s/s", x, u[k]);
}

static void describe(const struct sw_view_node *n, char *out, size_t len)
{
    char id[16], rate[32], eta[32];
    sw_node_id_short(n->cap.node_id, id, sizeof id);
    const char *who = n->self ? " (this node)" : "";
    switch (n->cap.phase) {
    case SW_PHASE_FETCHING: {
        unsigned pct = n->cap.bytes_total ? (unsigned)(n->cap.bytes_done * 100 / n->cap.bytes_total) : 0;
        if (n->cap.rate_bps == 0) {
            snprintf(out, len, "node %s%s downloading %u%%, no data flowing (no peer serving it yet)",
                     id, who, pct);
        } else {
            fmt_rate(n->cap.rate_bps, rate, sizeof rate);
            if (n->cap.eta_ms) sw_fmt_duration_ms(n->cap.eta_ms, eta, sizeof eta);
            else snprintf(eta, sizeof eta, "unknown");
            snprintf(out, len, "node %s%s downloading %u%% at %s, ETA %s", id, who, pct, rate, eta);
        }
        break;
    }
    case SW_PHASE_WAITING:
        snprintf(out, len, "node %s%s has no file and waits for a LOAD_SHARD command (--no-auto-fetch)", id, who);
        break;
    case SW_PHASE_VERIFYING: snprintf(out, len, "node %s%s verifying its file", id, who); break;
    case SW_PHASE_LOADING: snprintf(out, len, "node %s%s loading it", id, who); break;
    case SW_PHASE_FAILED: snprintf(out, len, "node %s%s failed to load it (see its log)", id, who); break;
    case SW_PHASE_DRAINED:
        snprintf(out, len, "node %s%s is drained by the owner (keeps the file; a LOAD_SHARD brings it back)", id, who);
        break;
    default: snprintf(out, len, "node %s%s %s", id, who, sw_phase_name(n->cap.phase)); break;
    }
}

int sw_view_shard_reason(const struct sw_view *v, uint32_t shard, char *out, size_t out_len)
{
    if (out_len) out[0] = 0;
    struct sw_shard_view sv;
    if (sw_view_shard(v, shard, &sv) || sv.n_loaded) return 0;
    struct sw_buf b = { 0 };
    if (!sv.n_announced) {
        /* Nodes that had it and departed (latest first, two at most): say so. */
        const struct entry *gone[2] = { NULL, NULL };
        for (size_t i = 0; i < v->n; i++) {
            const struct entry *e = &v->e[i];
            if (e->n.live || e->n.self || e->n.cap.seed_all || e->n.cap.shard != (int32_t)shard) continue;
            if (!gone[0] || e->departed_at_ms > gone[0]->departed_at_ms) {
                gone[1] = gone[0];
                gone[0] = e;
            } else if (!gone[1] || e->departed_at_ms > gone[1]->departed_at_ms) {
                gone[1] = e;
            }
        }
        if (!gone[0]) sw_buf_printf(&b, "shard %u: no node announced it", shard);
        for (int g = 0; g < 2 && gone[g]; g++) {
            char id[16], ago[32];
            sw_node_id_short(gone[g]->n.cap.node_id, id, sizeof id);
            uint64_t age = v->now_ms > gone[g]->departed_at_ms ? v->now_ms - gone[g]->departed_at_ms : 0;
            if (age < 60000) snprintf(ago, sizeof ago, "%llus", (unsigned long long)(age / 1000));
            else sw_fmt_duration_ms(age, ago, sizeof ago);
            if (g == 0) sw_buf_printf(&b, "shard %u: node %s (departed %s ago)", shard, id, ago);
            else sw_buf_printf(&b, ", node %s (departed %s ago)", id, ago);
        }
        if (gone[0]) sw_buf_printf(&b, " had it; no live node has it loaded");
    } else {
        sw_buf_printf(&b, "shard %u: no node has it loaded", shard);
        uint32_t shown = 0, more = 0;
        for (size_t i = 0; i < v->n; i++) {
            const struct sw_view_node *n = &v->e[i].n;
            if (!counts_for(n, shard)) continue;
            if (shown == 4) { more++; continue; }
            char d[256];
            describe(n, d, sizeof d);
            sw_buf_printf(&b, "; %s", d);
            shown++;
        }
        if (more) sw_buf_printf(&b, "; and %u more", more);
    }
    const char *s = sw_buf_cstr(&b);
    if (s && out_len) snprintf(out, out_len, "%s", s);
    sw_buf_free(&b);
    return 1;
}

uint32_t sw_view_reasons(const struct sw_view *v, char *out, size_t out_len)
{
    if (out_len) out[0] = 0;
    struct sw_buf b = { 0 };
    uint32_t k = 0;
    for (uint32_t s = 0; v && s < v->cfg.n_shards; s++) {
        char r[1024];
        if (!sw_view_shard_reason(v, s, r, sizeof r)) continue;
        sw_buf_printf(&b, "%s%s", k ? " | " : "", r);
        k++;
    }
    const char *s = sw_buf_cstr(&b);
    if (s && out_len) {
        size_t n = strlen(s);
        if (n < out_len) memcpy(out, s, n + 1);
        else if (out_len > 4) {
            /* cut on a UTF-8 boundary and mark it */
            size_t cut = out_len - 4;
            while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80) cut--;
            memcpy(out, s, cut);
            memcpy(out + cut, "\xe2\x80\xa6", 4);
        }
    }
    sw_buf_free(&b);
    return k;
}
