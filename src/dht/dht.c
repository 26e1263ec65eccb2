/* dht.c — the mainline DHT state machine: the output queue, KRPC encoding, answering
 * queries, timeouts and maintenance, and the public calls (dht.h).
 * No sockets and no clocks: bytes and now_ms come in, datagrams and events go out.
 * Not for: the routing table, tokens and storage (dht_table.c), lookups and replies
 * (dht_lookup.c), I/O (dht_uv.c), key files and signatures (item.c), message decoding (krpc.c). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dht_int.h"

/* ------------------------------------------------------------------ small helpers */

static void rnd_bytes(struct sw_dht *d, uint8_t *p, size_t n)
{
    while (n) {
        uint64_t r = sw__dht_rnd(d);
        size_t c = n < 8 ? n : 8;
        memcpy(p, &r, c);
        p += c;
        n -= c;
    }
}

/* Callers may mix clocks of the same base (uv_now, sw_time_ms) that are read at slightly
 * different moments; time never runs backwards inside the state machine. */
static uint64_t clock_in(struct sw_dht *d, uint64_t now)
{
    if (now < d->last_now) return d->last_now;
    d->last_now = now;
    return now;
}

/* ------------------------------------------------------------------ output queue */

void sw__dht_out_push(struct sw_dht *d, const struct sw_dht_addr *to, struct sw_buf *b)
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


static void enc_tail(struct sw_dht *d, struct sw_buf *b, const uint8_t *t, size_t t_len, char y)
{
    sw__dht_benc_key(b, "t");
    sw_benc_str(b, t, t_len);
    sw__dht_benc_key(b, "v");
    sw_benc_str(b, d->ver, 4);
    sw__dht_benc_key(b, "y");
    sw_benc_str(b, &y, 1);
    sw_benc_end(b);
}

/* Starts a reply: {"ip": requester (BEP 42), "r": {"id": ours ... */
static void reply_begin(struct sw_dht *d, struct sw_buf *b, const struct sw_dht_addr *to)
{
    uint8_t c[18];
    sw_benc_dict(b);
    sw__dht_benc_key(b, "ip");
    sw_benc_str(b, c, sw__compact_addr(to, c));
    sw__dht_benc_key(b, "r");
    sw_benc_dict(b);
    sw__dht_benc_key(b, "id");
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
    sw__dht_benc_key(&b, "e");
    sw_benc_list(&b);
    sw_benc_int(&b, code);
    sw_benc_cstr(&b, msg);
    sw_benc_end(&b);
    enc_tail(d, &b, m->t, m->t_len, 'e');
    sw__dht_out_push(d, to, &b);
    sw_buf_free(&b);
}

/* Ends a query's "a" dict and the message. */
void sw__dht_query_end(struct sw_dht *d, struct sw_buf *b, const char *method, const uint8_t tid[4])
{
    sw_benc_end(b); /* a */
    sw__dht_benc_key(b, "q");
    sw_benc_cstr(b, method);
    if (d->cfg.read_only) {
        sw__dht_benc_key(b, "ro"); /* BEP 43 */
        sw_benc_int(b, 1);
    }
    enc_tail(d, b, tid, 4, 'q');
}

/* ------------------------------------------------------------------ queries in */

static void own_peer_addr(struct sw_dht *d, uint16_t port, struct sw_dht_addr *out)
{
    memset(out, 0, sizeof *out);
    if (d->has_ext) *out = d->ext;
    else out->family = d->cfg.family;
    if (port) out->port = port;
}

/* Each query method writes its reply after reply_begin() into b and returns 0, or sends a
 * KRPC error and returns -1 (b is then left empty). */

static int query_ping(struct sw_dht *d, const struct sw__krpc *m, const struct sw_dht_addr *from, uint64_t now,
                      struct sw_buf *b)
{
    reply_begin(d, b, from);
    return 0;
}

static int query_find_node(struct sw_dht *d, const struct sw__krpc *m, const struct sw_dht_addr *from,
                           uint64_t now, struct sw_buf *b)
{
    if (!m->target) { send_error(d, from, m, 203, "Protocol Error: target missing"); return -1; }
    reply_begin(d, b, from);
    sw__dht_enc_nodes(d, b, m->target);
    return 0;
}

static int query_get_peers(struct sw_dht *d, const struct sw__krpc *m, const struct sw_dht_addr *from,
                           uint64_t now, struct sw_buf *b)
{
    uint8_t tok[TOKEN_LEN];
    if (!m->info_hash) { send_error(d, from, m, 203, "Protocol Error: info_hash missing"); return -1; }
    reply_begin(d, b, from);
    sw__dht_enc_nodes(d, b, m->info_hash);
    sw__dht_make_token(d->secret, from, tok);
    sw__dht_benc_key(b, "token");
    sw_benc_str(b, tok, TOKEN_LEN);
    struct phash *h = sw__dht_hash_find(d, m->info_hash);
    int self = 0;
    struct sw_dht_addr me;
    for (uint32_t i = 0; i < d->n_own; i++)
        if (!memcmp(d->own[i].ih, m->info_hash, SW_DHT_ID_LEN) && d->has_ext) {
            own_peer_addr(d, d->own[i].port ? d->own[i].port : d->ext.port, &me);
            self = me.family == from->family;
        }
    if ((h && h->n) || self) {
        sw__dht_benc_key(b, "values");
        sw_benc_list(b);
        uint32_t n = h ? h->n : 0, start = n > MAX_VALUES_OUT ? (uint32_t)(sw__dht_rnd(d) % n) : 0;
        uint32_t sent = 0;
        uint8_t c[18];
        if (self) { sw_benc_str(b, c, sw__compact_addr(&me, c)); sent++; }
        for (uint32_t i = 0; i < n && sent < MAX_VALUES_OUT; i++) {
            const struct speer *p = &h->p[(start + i) % n];
            if (p->a.family != from->family || p->expires <= now) continue;
            sw_benc_str(b, c, sw__compact_addr(&p->a, c));
            sent++;
        }
        sw_benc_end(b);
    }
    return 0;
}

static int query_announce_peer(struct sw_dht *d, const struct sw__krpc *m, const struct sw_dht_addr *from,
                               uint64_t now, struct sw_buf *b)
{
    if (!m->info_hash || (!m->has_port && !m->implied_port)) {
        send_error(d, from, m, 203, "Protocol Error: info_hash or port missing");
        return -1;
    }
    if (!m->token || !sw__dht_token_ok(d, from, m->token, m->token_len)) {
        send_error(d, from, m, 203, "Protocol Error: bad token");
        return -1;
    }
    /* BEP 5: with implied_port the peer's port is the UDP source port. */
    struct sw_dht_addr pa = *from;
    if (!m->implied_port) pa.port = (uint16_t)m->port;
    if (pa.port == 0) { send_error(d, from, m, 203, "Protocol Error: port 0"); return -1; }
    int rc = sw__dht_store_peer(d, m->info_hash, &pa, now);
    if (rc) { send_error(d, from, m, 201, "Generic Error: storage full"); return -1; }
    reply_begin(d, b, from);
    return 0;
}

/* BEP 44 get. */
static int query_get(struct sw_dht *d, const struct sw__krpc *m, const struct sw_dht_addr *from, uint64_t now,
                     struct sw_buf *b)
{
    uint8_t tok[TOKEN_LEN];
    if (!m->target) { send_error(d, from, m, 203, "Protocol Error: target missing"); return -1; }
    reply_begin(d, b, from);
    struct sitem *it = sw__dht_item_find(d, m->target);
    if (it && it->expires <= now) it = NULL;
    int send_v = it && (!m->has_seq || !it->is_mutable || it->seq > m->seq);
    /* keys in order: id k nodes seq sig token v */
    if (send_v && it->is_mutable) {
        sw__dht_benc_key(b, "k");
        sw_benc_str(b, it->k, 32);
    }
    sw__dht_enc_nodes(d, b, m->target);
    if (it && it->is_mutable) {
        sw__dht_benc_key(b, "seq");
        sw_benc_int(b, it->seq);
    }
    if (send_v && it->is_mutable) {
        sw__dht_benc_key(b, "sig");
        sw_benc_str(b, it->sig, 64);
    }
    sw__dht_make_token(d->secret, from, tok);
    sw__dht_benc_key(b, "token");
    sw_benc_str(b, tok, TOKEN_LEN);
    if (send_v) {
        sw__dht_benc_key(b, "v");
        sw_buf_append(b, it->v, it->v_len); /* already bencoded */
    }
    return 0;
}

/* BEP 44 put. */
static int query_put(struct sw_dht *d, const struct sw__krpc *m, const struct sw_dht_addr *from, uint64_t now,
                     struct sw_buf *b)
{
    if (!m->token || !sw__dht_token_ok(d, from, m->token, m->token_len)) {
        send_error(d, from, m, 203, "Protocol Error: bad token");
        return -1;
    }
    const char *msg = "";
    int code = sw__dht_item_put(d, NULL, m->v, m->v_len, m->k, m->sig, m->salt, m->salt_len, m->has_seq,
                                m->seq, m->has_cas, m->cas, now, &msg);
    if (code) { send_error(d, from, m, code, msg); return -1; }
    reply_begin(d, b, from);
    return 0;
}

static void handle_query(struct sw_dht *d, const struct sw__krpc *m, const struct sw_dht_addr *from, uint64_t now)
{
    d->st.queries_in++;
    if (d->cfg.read_only) return; /* BEP 43: read-only nodes answer nothing */
    if (!sw__dht_rate_ok(d, from, now)) {
        d->st.rate_limited++;
        return;
    }
    if (m->bad_args) {
        send_error(d, from, m, 203, "Protocol Error: bad arguments");
        return;
    }
    if (!m->ro) sw__dht_rt_heard(d, m->id, from, 0, now);
    struct sw_buf b;
    sw_buf_init(&b);
    int rc;
    switch (m->method) {
    case SW__Q_PING: rc = query_ping(d, m, from, now, &b); break;
    case SW__Q_FIND_NODE: rc = query_find_node(d, m, from, now, &b); break;
    case SW__Q_GET_PEERS: rc = query_get_peers(d, m, from, now, &b); break;
    case SW__Q_ANNOUNCE_PEER: rc = query_announce_peer(d, m, from, now, &b); break;
    case SW__Q_GET: rc = query_get(d, m, from, now, &b); break;
    case SW__Q_PUT: rc = query_put(d, m, from, now, &b); break;
    default:
        send_error(d, from, m, 204, "Method Unknown");
        rc = -1;
        break;
    }
    if (rc == 0) {
        reply_end(d, &b, m);
        sw__dht_out_push(d, from, &b);
    }
    sw_buf_free(&b);
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
    else sw__dht_handle_reply(d, &m, &doc, from, now);
    sw_bdoc_free(&doc);
}

/* ------------------------------------------------------------------ periodic */

static void timeouts(struct sw_dht *d, uint64_t now)
{
    for (uint32_t s = 0; s < d->n_pend; s++) {
        struct pending *p = &d->pend[s];
        if (!p->used || p->deadline > now) continue;
        struct pending q = *p;
        sw__dht_pend_release(d, s);
        d->st.timeouts++;
        if (sw_log_enabled(SW_LOG_DEBUG)) {
            char as[64];
            static const char *names[] = { "?", "ping", "ping", "bootstrap find_node", "lookup", "store" };
            sw_log(SW_LOG_DEBUG, "DHT", "%s query to %s timed out", names[q.type < 6 ? q.type : 0],
                   sw_dht_addr_str(&q.addr, as, sizeof as));
        }
        int has_id = 0;
        for (int i = 0; i < SW_DHT_ID_LEN; i++) has_id |= q.node_id[i];
        if (has_id && q.type != P_STORE) sw__dht_rt_failed(d, q.node_id);
        if (q.type == P_PING_USER) {
            struct sw_dht_event ev;
            memset(&ev, 0, sizeof ev);
            ev.type = SW_DHT_EV_PONG;
            ev.addr = q.addr;
            ev.status = SW_ETIMEDOUT;
            sw__dht_emit(d, &ev);
        } else if (q.type == P_LOOKUP) {
            struct lookup *l = sw__dht_lookup_get(d, q.lookup_id);
            struct cand *c = l && l->phase == 0 ? sw__dht_lookup_cand(l, q.node_id) : NULL;
            /* One retry: a lost datagram (not a dead node) should not hide the closest nodes. */
            if (c && c->state == C_SENT) c->state = c->tries < 2 ? C_NEW : C_FAILED;
            if (c) c->slow = 0;
        } else if (q.type == P_STORE) {
            struct lookup *l = sw__dht_lookup_get(d, q.lookup_id);
            if (l) l->store_pending--;
        }
    }
}

void sw__dht_random_id_in_bucket(struct sw_dht *d, int bi, uint8_t out[SW_DHT_ID_LEN])
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
        sw__dht_expire_storage(d, now);
        d->next_expire = now + 60000u;
    }
    /* Bootstrap: keep contacting the given nodes until a lookup succeeded, then whenever
     * the table runs dry. */
    uint32_t n_nodes = sw__dht_rt_count(d, NULL, now);
    if (d->n_contacts && ((!d->ready && now - d->last_contact_ms >= 10000u) ||
                          (n_nodes < SW_DHT_K && now - d->last_contact_ms >= 60000u))) {
        d->last_contact_ms = now;
        for (int i = 0; i < d->n_contacts; i++)
            sw__dht_send_search_query(d, P_CONTACT, &d->contacts[i], 0, NULL, SW_DHT_FIND_NODE, d->id, now);
    }
    /* Probe questionable nodes (BEP 5), a few per tick. */
    int pings = 0;
    for (int bi = 0; bi < d->nb && pings < 8; bi++)
        for (int i = 0; i < d->b[bi].count && pings < 8; i++) {
            struct rnode *n = &d->b[bi].n[i];
            if (sw__dht_node_good(n, now) || sw__dht_node_bad(n) || now - n->last_ping < PING_AGAIN_MS) continue;
            n->last_ping = now;
            sw__dht_send_ping(d, &n->addr, P_PING, n->id, now);
            pings++;
        }
    /* Refresh buckets untouched for 15 minutes with a lookup of a random id in their range. */
    int refreshes = 0;
    for (int bi = 0; bi < d->nb && refreshes < 2 && n_nodes; bi++) {
        struct bucket *bk = &d->b[bi];
        if (now - bk->last_changed < REFRESH_MS) continue;
        bk->last_changed = now;
        uint8_t t[SW_DHT_ID_LEN];
        sw__dht_random_id_in_bucket(d, bi, t);
        struct lookup *l = sw__dht_lookup_new(d, SW_DHT_FIND_NODE, t, 1, now);
        if (l) sw__dht_lookup_step(d, l, now);
        refreshes++;
    }
    /* Re-announce and re-put what we published, so it never goes stale at the storers. */
    for (uint32_t i = 0; i < d->n_own; i++) {
        struct own_announce *a = &d->own[i];
        if (!a->persistent || now < a->next_ms || !n_nodes) continue;
        struct lookup *l = sw__dht_lookup_new(d, SW_DHT_ANNOUNCE, a->ih, 1, now);
        if (!l) break;
        l->port = a->port;
        a->next_ms = now + d->cfg.reannounce_ms;
        sw__dht_lookup_step(d, l, now);
    }
    for (uint32_t i = 0; i < d->n_puts; i++) {
        struct own_put *p = &d->puts[i];
        if (now < p->next_ms || !n_nodes) continue;
        struct lookup *l = sw__dht_lookup_new(d, SW_DHT_PUT_ITEM, p->it.target, 1, now);
        if (!l) break;
        l->v = malloc(p->it.v_len);
        if (!l->v) {
            sw__dht_lookup_abort(d, l);
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
        sw__dht_item_put(d, NULL, p->it.v, p->it.v_len, p->it.is_mutable ? p->it.k : NULL, p->it.sig, p->it.salt,
                         p->it.salt_len, 1, p->it.seq, 0, 0, now, &msg);
        p->next_ms = now + d->cfg.reannounce_ms;
        sw__dht_lookup_step(d, l, now);
    }
}

uint64_t sw_dht_periodic(struct sw_dht *d, uint64_t now)
{
    now = clock_in(d, now);
    timeouts(d, now);
    for (int i = 0; i < MAX_LOOKUPS; i++)
        if (d->lk[i]) sw__dht_lookup_step(d, d->lk[i], now);
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
    for (int i = 0; i < MAX_LOOKUPS; i++) sw__dht_lookup_free(d->lk[i]);
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
    return sw__dht_send_search_query(d, P_CONTACT, addr, 0, NULL, SW_DHT_FIND_NODE, d->id, now);
}

int sw_dht_ping(struct sw_dht *d, const struct sw_dht_addr *addr, uint64_t now)
{
    now = clock_in(d, now);
    if (!addr || addr->port == 0) return SW_EINVAL;
    return sw__dht_send_ping(d, addr, P_PING_USER, NULL, now);
}

int sw_dht_find_node(struct sw_dht *d, const uint8_t target[SW_DHT_ID_LEN], uint64_t now, uint32_t *id_out)
{
    now = clock_in(d, now);
    struct lookup *l = sw__dht_lookup_new(d, SW_DHT_FIND_NODE, target, 0, now);
    if (!l) return SW_EBUSY;
    return sw__dht_lookup_start(d, l, now, id_out);
}

static void local_peers(struct sw_dht *d, struct lookup *l, uint64_t now)
{
    /* Our own announcements and what others announced to us count too. */
    for (uint32_t i = 0; i < d->n_own; i++)
        if (!memcmp(d->own[i].ih, l->target, SW_DHT_ID_LEN)) {
            struct sw_dht_addr me;
            own_peer_addr(d, d->own[i].port ? d->own[i].port : (d->has_ext ? d->ext.port : 0), &me);
            sw__dht_lookup_peer(d, l, &me, 1, 0, now);
        }
    struct phash *h = sw__dht_hash_find(d, l->target);
    for (uint32_t i = 0; h && i < h->n; i++)
        if (h->p[i].expires > now) sw__dht_lookup_peer(d, l, &h->p[i].a, 0, 0, now);
}

int sw_dht_get_peers(struct sw_dht *d, const uint8_t ih[SW_DHT_ID_LEN], uint64_t now, uint32_t *id_out)
{
    now = clock_in(d, now);
    struct lookup *l = sw__dht_lookup_new(d, SW_DHT_GET_PEERS, ih, 0, now);
    if (!l) return SW_EBUSY;
    local_peers(d, l, now);
    return sw__dht_lookup_start(d, l, now, id_out);
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
    struct lookup *l = sw__dht_lookup_new(d, SW_DHT_ANNOUNCE, ih, 0, now);
    if (!l) return SW_EBUSY;
    l->port = port;
    local_peers(d, l, now);
    return sw__dht_lookup_start(d, l, now, id_out);
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
    struct lookup *l = sw__dht_lookup_new(d, SW_DHT_GET_ITEM, target, 0, now);
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
    struct sitem *it = sw__dht_item_find(d, target);
    if (it && it->expires > now) {
        struct sw_dht_addr me;
        own_peer_addr(d, 0, &me);
        sw__dht_lookup_item(d, l, &me, it->v, it->v_len, it->is_mutable ? it->k : NULL, it->sig, it->seq, 0, now);
    }
    sw__dht_lookup_step(d, l, now);
    return 0;
}

static int put_common(struct sw_dht *d, struct lookup *l, int persistent, uint64_t now, uint32_t *id_out)
{
    const char *msg = "";
    int code = sw__dht_item_put(d, NULL, l->v, l->v_len, l->is_mutable ? l->k : NULL, l->sig, l->salt, l->salt_len,
                                1, l->seq, 0, 0, now, &msg);
    if (code == 302 || code == 301) {
        sw__dht_lookup_abort(d, l);
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
    return sw__dht_lookup_start(d, l, now, id_out);
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
    struct lookup *l = sw__dht_lookup_new(d, SW_DHT_PUT_ITEM, target, 0, now);
    if (!l) return SW_EBUSY;
    l->v = malloc(v_len);
    if (!l->v) {
        sw__dht_lookup_abort(d, l);
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
    struct lookup *l = sw__dht_lookup_new(d, SW_DHT_PUT_ITEM, target, 0, now);
    if (!l) return SW_EBUSY;
    l->v = malloc(v_len);
    if (!l->v) {
        sw__dht_lookup_abort(d, l);
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
    out->nodes = sw__dht_rt_count(d, &out->good_nodes, d->last_now);
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
        int k = sw__dht_rt_closest((struct sw_dht *)d, target, cl, (int)(max > 1280 ? 1280 : max), 0);
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
