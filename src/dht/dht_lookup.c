/* dht_lookup.c — the DHT's queries out and what comes back: pending queries (transaction
 * ids, timeouts' bookkeeping), iterative lookups (find_node, get_peers, announce, BEP 44
 * get/put) and the replies that feed them. Not for: answering queries (dht.c), the routing
 * table and storage (dht_table.c), sockets (dht_uv.c). */
#include <stdlib.h>
#include <string.h>

#include "dht_int.h"

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
        d->pend[slot].gen = (uint16_t)sw__dht_rnd(d);
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
    sw__dht_note_deadline(d, p->deadline);
    sw_put_be16(tid, (uint16_t)slot);
    sw_put_be16(tid + 2, p->gen);
    return (int)slot;
}

void sw__dht_pend_release(struct sw_dht *d, uint32_t slot)
{
    d->pend[slot].used = 0;
    d->free_pend[d->n_free++] = slot;
}

/* Sends a query with arguments already written after "a"{"id"...; see the callers. */
int sw__dht_send_ping(struct sw_dht *d, const struct sw_dht_addr *to, int type, const uint8_t *node_id,
                      uint64_t now)
{
    uint8_t tid[4];
    int slot = pend_alloc(d, type, to, 0, node_id, now, tid);
    if (slot < 0) return slot;
    struct sw_buf b;
    sw_buf_init(&b);
    sw_benc_dict(&b);
    sw__dht_benc_key(&b, "a");
    sw_benc_dict(&b);
    sw__dht_benc_key(&b, "id");
    sw_benc_str(&b, d->id, SW_DHT_ID_LEN);
    sw__dht_query_end(d, &b, "ping", tid);
    sw__dht_out_push(d, to, &b);
    sw_buf_free(&b);
    return 0;
}

/* find_node / get_peers / get: {"id", "target"|"info_hash"} (+ BEP 44 none). */
int sw__dht_send_search_query(struct sw_dht *d, int type, const struct sw_dht_addr *to, uint32_t lookup_id,
                              const uint8_t *node_id, enum sw_dht_lookup_kind kind,
                              const uint8_t target[SW_DHT_ID_LEN], uint64_t now)
{
    uint8_t tid[4];
    int slot = pend_alloc(d, type, to, lookup_id, node_id, now, tid);
    if (slot < 0) return slot;
    struct sw_buf b;
    sw_buf_init(&b);
    sw_benc_dict(&b);
    sw__dht_benc_key(&b, "a");
    sw_benc_dict(&b);
    sw__dht_benc_key(&b, "id");
    sw_benc_str(&b, d->id, SW_DHT_ID_LEN);
    const char *method;
    if (kind == SW_DHT_GET_PEERS || kind == SW_DHT_ANNOUNCE) {
        sw__dht_benc_key(&b, "info_hash");
        sw_benc_str(&b, target, SW_DHT_ID_LEN);
        method = "get_peers";
    } else if (kind == SW_DHT_GET_ITEM || kind == SW_DHT_PUT_ITEM) {
        sw__dht_benc_key(&b, "target");
        sw_benc_str(&b, target, SW_DHT_ID_LEN);
        method = "get";
    } else {
        sw__dht_benc_key(&b, "target");
        sw_benc_str(&b, target, SW_DHT_ID_LEN);
        method = "find_node";
    }
    sw__dht_query_end(d, &b, method, tid);
    sw__dht_out_push(d, to, &b);
    sw_buf_free(&b);
    return 0;
}

/* ------------------------------------------------------------------ lookups */

struct lookup *sw__dht_lookup_get(struct sw_dht *d, uint32_t id)
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
        int c = sw__dht_xor_cmp(l->target, id, l->c[i].id);
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

struct cand *sw__dht_lookup_cand(struct lookup *l, const uint8_t *id)
{
    for (int i = 0; i < l->n; i++)
        if (!memcmp(l->c[i].id, id, SW_DHT_ID_LEN)) return &l->c[i];
    return NULL;
}

void sw__dht_lookup_peer(struct sw_dht *d, struct lookup *l, const struct sw_dht_addr *a, int is_self,
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
    sw__dht_emit(d, &ev);
}

void sw__dht_lookup_item(struct sw_dht *d, struct lookup *l, const struct sw_dht_addr *from, const uint8_t *v,
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
    sw__dht_emit(d, &ev);
}

static int lookup_slot_free(struct sw_dht *d)
{
    for (int i = 0; i < MAX_LOOKUPS; i++)
        if (!d->lk[i]) return i;
    return -1;
}

void sw__dht_lookup_free(struct lookup *l)
{
    if (!l) return;
    free(l->peers);
    free(l->v);
    free(l);
}

void sw__dht_lookup_abort(struct sw_dht *d, struct lookup *l)
{
    for (int i = 0; i < MAX_LOOKUPS; i++)
        if (d->lk[i] == l) d->lk[i] = NULL;
    sw__dht_lookup_free(l);
}

/* Kademlia join: after the lookup of our own id, refresh every bucket that is not full
 * with a lookup of a random id in its range, so the far buckets fill at once instead of
 * after the first 15-minute refresh. */
static void refresh_thin_buckets(struct sw_dht *d, uint64_t now)
{
    for (int bi = 0; bi < d->nb - 1; bi++) {
        if (d->b[bi].count >= SW_DHT_K) continue;
        uint8_t t[SW_DHT_ID_LEN];
        sw__dht_random_id_in_bucket(d, bi, t);
        d->b[bi].last_changed = now;
        struct lookup *l = sw__dht_lookup_new(d, SW_DHT_FIND_NODE, t, 1, now);
        if (!l) break;
        sw__dht_lookup_step(d, l, now);
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
        sw__dht_emit(d, &ev);
        sw__dht_lookup_free(l);
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
        sw__dht_emit(d, &ev);
    }
    sw__dht_lookup_free(l);
}

static void send_store(struct sw_dht *d, struct lookup *l, struct cand *c, uint64_t now)
{
    uint8_t tid[4];
    if (pend_alloc(d, P_STORE, &c->addr, l->id, c->id, now, tid) < 0) return;
    struct sw_buf b;
    sw_buf_init(&b);
    sw_benc_dict(&b);
    sw__dht_benc_key(&b, "a");
    sw_benc_dict(&b);
    const char *method;
    if (l->kind == SW_DHT_ANNOUNCE) {
        /* keys in order: id implied_port info_hash port token */
        sw__dht_benc_key(&b, "id");
        sw_benc_str(&b, d->id, SW_DHT_ID_LEN);
        sw__dht_benc_key(&b, "implied_port");
        sw_benc_int(&b, l->port ? 0 : 1);
        sw__dht_benc_key(&b, "info_hash");
        sw_benc_str(&b, l->target, SW_DHT_ID_LEN);
        sw__dht_benc_key(&b, "port");
        sw_benc_int(&b, l->port ? l->port : 1);
        sw__dht_benc_key(&b, "token");
        sw_benc_str(&b, c->token, c->token_len);
        method = "announce_peer";
    } else {
        /* BEP 44 put; keys in order: cas id k salt seq sig token v */
        if (l->is_mutable && l->cas >= 0) {
            sw__dht_benc_key(&b, "cas");
            sw_benc_int(&b, l->cas);
        }
        sw__dht_benc_key(&b, "id");
        sw_benc_str(&b, d->id, SW_DHT_ID_LEN);
        if (l->is_mutable) {
            sw__dht_benc_key(&b, "k");
            sw_benc_str(&b, l->k, 32);
            if (l->salt_len) {
                sw__dht_benc_key(&b, "salt");
                sw_benc_str(&b, l->salt, l->salt_len);
            }
            sw__dht_benc_key(&b, "seq");
            sw_benc_int(&b, l->seq);
            sw__dht_benc_key(&b, "sig");
            sw_benc_str(&b, l->sig, 64);
        }
        sw__dht_benc_key(&b, "token");
        sw_benc_str(&b, c->token, c->token_len);
        sw__dht_benc_key(&b, "v");
        sw_buf_append(&b, l->v, l->v_len);
        method = "put";
    }
    sw__dht_query_end(d, &b, method, tid);
    sw__dht_out_push(d, &c->addr, &b);
    sw_buf_free(&b);
    l->store_pending++;
}

/* Advances a lookup: keeps alpha queries in flight toward the k closest, and moves to the
 * store phase or finishes when the k closest live candidates have all answered. Returns 1
 * when the lookup finished (and was freed). */
int sw__dht_lookup_step(struct sw_dht *d, struct lookup *l, uint64_t now)
{
    if (l->phase == 0 && l->n == 0) {
        /* Started before the table had nodes: seed it as soon as the bootstrap brings some,
         * and wait for that up to BOOT_WAIT_MS when contacts are configured. */
        struct rnode *cl[LOOKUP_CAND / 2];
        int n = sw__dht_rt_closest(d, l->target, cl, LOOKUP_CAND / 2, 0);
        for (int i = 0; i < n; i++) lookup_add(d, l, cl[i]->id, &cl[i]->addr, 1);
        if (l->n == 0 && d->n_contacts > 0 && now - l->start_ms < BOOT_WAIT_MS) {
            sw__dht_note_deadline(d, now + 250);
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
                int sent = sw__dht_send_search_query(d, type, &c->addr, l->id, c->id, l->kind, l->target, now);
                d->timeout_override_ms = 0;
                if (sent == 0) {
                    c->state = C_SENT;
                    c->sent_ms = now;
                    c->tries++;
                    sw__dht_note_deadline(d, now + SOFT_TIMEOUT_MS);
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

struct lookup *sw__dht_lookup_new(struct sw_dht *d, enum sw_dht_lookup_kind kind, const uint8_t *target,
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
    int n = sw__dht_rt_closest(d, target, cl, LOOKUP_CAND / 2, 0);
    for (int i = 0; i < n; i++) lookup_add(d, l, cl[i]->id, &cl[i]->addr, 1);
    d->lk[slot] = l;
    return l;
}

int sw__dht_lookup_start(struct sw_dht *d, struct lookup *l, uint64_t now, uint32_t *id_out)
{
    uint32_t id = l->id;
    if (id_out) *id_out = id;
    sw__dht_lookup_step(d, l, now);
    return 0;
}

static void self_lookup(struct sw_dht *d, uint64_t now, const struct sw__krpc *seed_from, int depth)
{
    struct lookup *l = NULL;
    for (int i = 0; i < MAX_LOOKUPS; i++)
        if (d->lk[i] && d->lk[i]->is_self_lookup) l = d->lk[i];
    int fresh = !l;
    if (!l) {
        l = sw__dht_lookup_new(d, SW_DHT_FIND_NODE, d->id, 1, now);
        if (!l) return;
        l->is_self_lookup = 1;
    }
    if (seed_from && seed_from->id) {
        /* the contact just answered find_node(our id): no need to ask it again */
        struct cand *c = sw__dht_lookup_cand(l, seed_from->id);
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
    if (fresh || seed_from) sw__dht_lookup_step(d, l, now);
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

void sw__dht_handle_reply(struct sw_dht *d, const struct sw__krpc *m, const struct sw_bdoc *doc,
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
    sw__dht_pend_release(d, slot);
    int ok = m->y == 'r';
    if (ok) {
        sw__dht_rt_heard(d, m->id, from, 1, now);
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
        sw__dht_emit(d, &ev);
        break;
    case P_CONTACT:
        if (ok) self_lookup(d, now, m, 2);
        break;
    case P_LOOKUP: {
        struct lookup *l = sw__dht_lookup_get(d, p.lookup_id);
        if (!l || l->phase != 0) break;
        struct cand *c = sw__dht_lookup_cand(l, p.node_id);
        if (!c || c->state != C_SENT) break;
        if (!ok) {
            c->state = C_FAILED;
            sw__dht_lookup_step(d, l, now);
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
            sw__dht_emit(d, &ev);
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
                sw__dht_lookup_peer(d, l, &a, 0, (uint32_t)depth, now);
            }
        }
        if ((l->kind == SW_DHT_GET_ITEM || l->kind == SW_DHT_PUT_ITEM) && m->v)
            sw__dht_lookup_item(d, l, from, m->v, m->v_len, m->k, m->sig, m->seq, (uint32_t)depth, now);
        add_nodes_to_lookup(d, l, m, depth + 1);
        sw__dht_lookup_step(d, l, now);
        break;
    }
    case P_STORE: {
        struct lookup *l = sw__dht_lookup_get(d, p.lookup_id);
        if (!l) break;
        if (ok) l->n_stored++;
        l->store_pending--;
        sw__dht_lookup_step(d, l, now);
        break;
    }
    }
}
