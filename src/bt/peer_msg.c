/* peer_msg.c — the peer protocol proper: interest, block requests, choking, and acting on
 * each incoming message (BEP 3 and BEP 6). Not for: extension messages (peer_ext.c),
 * hashing (pieces.c), sockets (peer_io.c). */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bt_session_int.h"

/* ------------------------------------------------------------------ interest and requests */

int sw__peer_useful(struct sw_bt_peer *p)
{
    struct sw_bt_torrent *t = p->t;
    if (!t->has_meta || !t->pk || t->opts.seed_only || sw_bt_picker_left(t->pk) == 0) return 0;
    for (uint32_t i = 0; i < t->mi.n_pieces; i++)
        if (sw_bt_picker_wanted(t->pk, i) && !sw_bt_picker_have(t->pk, i) && peer_has(p, i)) return 1;
    return 0;
}

void sw__set_interest(struct sw_bt_peer *p, int want)
{
    if (p->am_interested == want || p->state != P_ACTIVE) return;
    p->am_interested = want;
    sw_bt_wire_put_simple(&p->ctrl, want ? SW_BT_INTERESTED : SW_BT_NOT_INTERESTED);
}

static int is_dup(void *ud, uint32_t piece, uint32_t begin)
{
    struct sw_bt_peer *p = ud;
    for (uint32_t i = 0; i < p->n_out; i++)
        if (p->out[i].piece == piece && p->out[i].begin == begin) return 1;
    return 0;
}

void sw__fill_requests(struct sw_bt_peer *p)
{
    struct sw_bt_torrent *t = p->t;
    if (p->state != P_ACTIVE || !t || !t->has_meta || !t->pk || t->opts.seed_only || !p->am_interested) return;
    if (p->peer_choking && !p->allowed) return;
    uint32_t cap = SW_MIN(p->s->o.max_requests, p->reqq ? p->reqq : 250);
    /* Queue depth follows the peer's rate (~2 s of data, at least 32 blocks): a fast peer
     * gets the full pipeline, a slow one does not hold blocks others could fetch sooner. */
    uint64_t by_rate = (uint64_t)(p->down_rate * 2.0) / SW_BT_BLOCK;
    uint32_t max = (uint32_t)SW_MIN((uint64_t)cap, SW_MAX(by_rate, (uint64_t)32));
    if (p->down_rate == 0 && sw_time_ms() - p->connected_ms < 3000) max = SW_MIN(cap, 64u);
    /* Requests go out in batches of a quarter of the queue: topping it up after every read
     * cost a write (and a wake-up of the sender) per read, ~6,500 per GiB on loopback. */
    uint32_t batch = SW_MAX(max / 4, 1u);
    if (p->n_out + batch > max || sw__hash_backlog_full(t)) return;
    if (p->cap_out < cap) {
        struct outreq *no = realloc(p->out, cap * sizeof *no);
        if (!no) return;
        p->out = no;
        p->cap_out = cap;
    }
    struct sw_bt_block blk[256];
    uint32_t want = SW_MIN(max - p->n_out, (uint32_t)SW_ARRAY_LEN(blk));
    const uint8_t *bits = p->have_all ? NULL : p->bits;
    if (!p->have_all && !p->bits) return;
    if (p->any_rejected && p->rejected) {
        uint32_t nb = bits_bytes(t);
        if (!p->mask) p->mask = malloc(nb);
        if (p->mask) {
            for (uint32_t i = 0; i < nb; i++) p->mask[i] = (uint8_t)((bits ? bits[i] : 0xff) & ~p->rejected[i]);
            bits = p->mask;
        }
    }
    uint32_t n = sw_bt_picker_pick(t->pk, bits, p->peer_choking ? p->allowed : NULL, 0, is_dup, p, blk, want);
    uint64_t now = sw_time_ms();
    for (uint32_t i = 0; i < n; i++) {
        sw_bt_wire_put_req(&p->ctrl, SW_BT_REQUEST, blk[i].piece, blk[i].begin, blk[i].len);
        p->out[p->n_out++] = (struct outreq){ blk[i].piece, blk[i].begin, blk[i].len, now };
    }
}

/* Web seeds (BEP 19): keep whole pieces in flight per URL through the registered fetcher. */

void sw__update_interest_all(struct sw_bt_torrent *t)
{
    sw__webseed_pump(t);
    for (struct sw_bt_peer *p = t->s->peers; p; p = p->next) {
        if (p->t != t || p->state != P_ACTIVE) continue;
        sw__set_interest(p, sw__peer_useful(p));
        sw__fill_requests(p);
        sw__flush(p);
    }
}

/* ------------------------------------------------------------------ choking */

static void set_choke(struct sw_bt_peer *p, int choke)
{
    if (p->am_choking == choke || p->state != P_ACTIVE) return;
    p->am_choking = choke;
    sw_bt_wire_put_simple(&p->ctrl, choke ? SW_BT_CHOKE : SW_BT_UNCHOKE);
    if (choke) {
        /* BEP 6: with the fast extension, a choke does not discard requests: reject them. */
        while (p->n_in) {
            struct inreq r = p->in[p->in_head];
            p->in_head = (p->in_head + 1) % p->cap_in;
            p->n_in--;
            if (p->fast) sw_bt_wire_put_req(&p->ctrl, SW_BT_REJECT, r.piece, r.begin, r.len);
        }
    }
}

static uint32_t n_unchoked(struct sw_bt_torrent *t)
{
    uint32_t n = 0;
    for (struct sw_bt_peer *p = t->s->peers; p; p = p->next) n += p->t == t && p->state == P_ACTIVE && !p->am_choking;
    return n;
}

static int cmp_rate(const void *a, const void *b)
{
    const struct sw_bt_peer *const *x = a, *const *y = b;
    const struct sw_bt_torrent *t = (*x)->t;
    int seeding = t->complete_reported || t->opts.seed_only || (t->pk && sw_bt_picker_left(t->pk) == 0);
    double rx = seeding ? (*x)->up_rate : (*x)->down_rate;
    double ry = seeding ? (*y)->up_rate : (*y)->down_rate;
    return rx < ry ? 1 : rx > ry ? -1 : 0;
}

/* Tit-for-tat (BEP 3): unchoke the peers that give us the most (when seeding: that take
 * the most), plus one optimistic unchoke rotated every 30 s; a node serving the swarm
 * allows many unchoked peers. */
void sw__choke_round(struct sw_bt_torrent *t, int rotate_optimistic)
{
    struct sw_bt_session *s = t->s;
    struct sw_bt_peer *cand[512];
    uint32_t n = 0;
    for (struct sw_bt_peer *p = s->peers; p && n < SW_ARRAY_LEN(cand); p = p->next)
        if (p->t == t && p->state == P_ACTIVE && p->peer_interested) cand[n++] = p;
    qsort(cand, n, sizeof cand[0], cmp_rate);
    uint32_t slots = s->o.max_unchoked;
    struct sw_bt_peer *opt = NULL;
    for (uint32_t i = 0; i < n; i++)
        if (cand[i]->optimistic) opt = cand[i];
    if (n > slots && (rotate_optimistic || !opt)) {
        if (opt) opt->optimistic = 0;
        uint32_t k = slots - 1 + (uint32_t)(sw_time_us() % (n - (slots - 1)));
        opt = cand[k];
        opt->optimistic = 1;
    }
    for (uint32_t i = 0; i < n; i++) {
        int unchoke = n <= slots || i < slots - 1 || cand[i] == opt;
        set_choke(cand[i], !unchoke);
    }
    for (struct sw_bt_peer *p = s->peers; p; p = p->next)
        if (p->t == t && p->state == P_ACTIVE && !p->peer_interested) set_choke(p, 1);
    for (struct sw_bt_peer *p = s->peers; p; p = p->next)
        if (p->t == t) sw__flush(p);
}


/* ------------------------------------------------------------------ incoming messages */


void sw__apply_bits(struct sw_bt_peer *p)
{
    struct sw_bt_torrent *t = p->t;
    if (!t->has_meta || !t->pk || p->counted) return;
    uint32_t nb = bits_bytes(t);
    if (p->have_all) {
        sw_bt_picker_inc_all(t->pk, NULL);
        p->n_have = t->mi.n_pieces;
    } else {
        if (!p->bits || p->bits_len < nb) {
            uint8_t *nbits = realloc(p->bits, nb);
            if (!nbits) return;
            memset(nbits + p->bits_len, 0, nb - p->bits_len);
            p->bits = nbits;
            p->bits_len = nb;
        } else if (p->bits_len > nb) {
            sw__peer_close(p, SW_ECORRUPT, "bitfield longer than the torrent");
            return;
        }
        /* BEP 3: spare bits must be zero. */
        for (uint32_t i = t->mi.n_pieces; i < nb * 8; i++)
            if (sw__bit_get(p->bits, i)) { sw__peer_close(p, SW_ECORRUPT, "bitfield has spare bits set"); return; }
        sw_bt_picker_inc_all(t->pk, p->bits);
        p->n_have = 0;
        for (uint32_t i = 0; i < t->mi.n_pieces; i++) p->n_have += sw__bit_get(p->bits, i);
    }
    p->counted = 1;
}

static void on_have(struct sw_bt_peer *p, uint32_t piece)
{
    struct sw_bt_torrent *t = p->t;
    if (t->has_meta && piece >= t->mi.n_pieces) { sw__peer_close(p, SW_ECORRUPT, "have for a piece out of range"); return; }
    if (p->have_all) return;
    if (!t->has_meta && piece >= (SW_BT_MAX_INFO_BYTES / 20)) return;
    size_t need = piece / 8 + 1;
    if (need > p->bits_len) {
        uint8_t *nb = realloc(p->bits, need);
        if (!nb) return;
        memset(nb + p->bits_len, 0, need - p->bits_len);
        p->bits = nb;
        p->bits_len = need;
    }
    if (sw__bit_get(p->bits, piece)) return;
    sw__bit_set(p->bits, piece);
    if (!p->counted || !t->pk) return;
    p->n_have++;
    sw_bt_picker_inc(t->pk, piece);
    if (!p->am_interested && sw_bt_picker_wanted(t->pk, piece) && !sw_bt_picker_have(t->pk, piece)) {
        sw__set_interest(p, 1);
        sw__fill_requests(p);
    }
}

static void send_our_pieces(struct sw_bt_peer *p)
{
    struct sw_bt_torrent *t = p->t;
    uint32_t held = 0;
    if (t->has_meta)
        for (uint32_t i = 0; i < t->mi.n_pieces; i++) held += sw_bt_storage_has_piece(t->st, i);
    /* BEP 6: have_all / have_none replace the bitfield when both sides speak it. */
    if (p->fast && t->has_meta && held == t->mi.n_pieces) sw_bt_wire_put_simple(&p->ctrl, SW_BT_HAVE_ALL);
    else if (held) sw_bt_wire_put_bitfield(&p->ctrl, sw_bt_storage_have(t->st), t->mi.n_pieces);
    else if (p->fast) sw_bt_wire_put_simple(&p->ctrl, SW_BT_HAVE_NONE);
}

static void on_handshake(struct sw_bt_peer *p, const struct sw_bt_wire_ev *ev)
{
    struct sw_bt_session *s = p->s;
    char key[80];
    memcpy(p->peer_id, ev->peer_id, 20);
    p->got_id = 1;
    if (!memcmp(ev->peer_id, s->peer_id, 20)) { sw__peer_close(p, SW_EINVAL, "connected to ourselves"); return; }
    sw__id_key(ev->peer_id, key);
    if (sw__is_banned(s, key)) { sw__peer_close(p, SW_EPERM, "banned peer"); return; }
    if (p->outgoing) {
        if (memcmp(ev->info_hash, p->t->info_hash, 20)) { sw__peer_close(p, SW_ECORRUPT, "info-hash mismatch"); return; }
    } else {
        p->t = sw_bt_session_find(s, ev->info_hash);
        if (!p->t || p->t->closing) { sw__peer_close(p, SW_ENOTFOUND, "unknown info-hash"); return; }
    }
    struct sw_bt_torrent *t = p->t;
    if (t->has_meta) sw_bt_wire_set_pieces(&p->wire, t->mi.n_pieces); /* BEP 3 bitfield cap */
    uint32_t n = 0;
    for (struct sw_bt_peer *q = s->peers, *nx; q; q = nx) {
        nx = q->next;
        if (q == p || q->t != t || q->state != P_ACTIVE) continue;
        n++;
        if (!q->got_id || memcmp(q->peer_id, ev->peer_id, 20)) continue;
        /* Two connections to one peer (both dialled each other, e.g. after PEX). Both
         * ends must keep the same one: the one opened by the smaller peer id. */
        int keep_new = 0;
        if (p->outgoing != q->outgoing) {
            const uint8_t *init_p = p->outgoing ? s->peer_id : ev->peer_id;
            const uint8_t *init_q = q->outgoing ? s->peer_id : q->peer_id;
            keep_new = memcmp(init_p, init_q, 20) < 0;
        }
        if (!keep_new) { sw__peer_close(p, SW_EEXIST, "already connected"); return; }
        sw__peer_close(q, SW_EEXIST, "duplicate connection");
        n--;
    }
    uint64_t now = sw_time_ms();
    if (n >= s->o.max_peers) {
        /* full: a peer that holds a slot and does nothing makes room (docs/security.md) */
        struct sw_bt_peer *v = p->outgoing ? NULL : sw__evict_victim(s, t, p, now);
        if (!v) { sw__peer_close(p, SW_EBUSY, "too many peers"); return; }
        sw__peer_close(v, SW_EBUSY, "evicted: torrent full and this peer was idle");
    }
    p->active_ms = p->last_msg_ms = now;
    p->ext = (ev->reserved[5] & 0x10) != 0;  /* BEP 10 */
    p->fast = (ev->reserved[7] & 0x04) != 0; /* BEP 6 */
    if (!p->outgoing) sw_bt_wire_put_handshake(&p->ctrl, t->info_hash, s->peer_id, 1, 1);
    p->state = P_ACTIVE;
    send_our_pieces(p);
    if (p->ext) sw__put_ext_handshake(p);
    struct sw_bt_event e = { .type = SW_BT_EV_PEER_CONNECTED, .torrent = t, .peer = p, .file = -1 };
    emit(s, &e);
    if (p->state != P_ACTIVE) return;
    if (s->has_ext && s->ext.on_peer_connected) {
        p->ext_connected_called = 1;
        s->ext.on_peer_connected(s->ext.ud, p);
    }
    sw__flush(p);
}

/* True while we hold every wanted piece, at least two peers want data from us and some
 * piece we hold has never been uploaded by us and is held by no peer (cached for
 * FRESH_CHECK_MS: requests arrive by the thousand per second). */
static int initial_seeding(struct sw_bt_torrent *t)
{
    if (!t->pk || !t->served_to || sw_bt_picker_left(t->pk)) return 0;
    uint64_t now = sw_time_ms();
    if (t->fresh_ms && now - t->fresh_ms < FRESH_CHECK_MS) return t->fresh_any;
    t->fresh_ms = now;
    t->fresh_any = 0;
    uint32_t n_int = 0;
    for (struct sw_bt_peer *q = t->s->peers; q && n_int < 2; q = q->next)
        n_int += q->t == t && q->state == P_ACTIVE && q->peer_interested;
    if (n_int < 2) return 0;
    for (uint32_t i = 0; i < t->mi.n_pieces && !t->fresh_any; i++)
        t->fresh_any = !t->served_to[i] && sw_bt_picker_have(t->pk, i) && !sw_bt_picker_availability(t->pk, i);
    if (!t->fresh_any && !t->fresh_done) {
        t->fresh_done = 1;
        LOGI("%s: every piece has left us once (%llu bytes uploaded)", t->hex, (unsigned long long)t->up_total);
    }
    return t->fresh_any;
}

static void on_request(struct sw_bt_peer *p, const struct sw_bt_wire_ev *ev)
{
    struct sw_bt_torrent *t = p->t;
    if (!t->has_meta || ev->index >= t->mi.n_pieces || ev->length == 0 || ev->length > MAX_BLOCK_REQ ||
        (uint64_t)ev->begin + ev->length > sw_bt_piece_size(&t->mi, ev->index)) {
        sw__peer_close(p, SW_ECORRUPT, "request out of range");
        return;
    }
    int ok = !p->am_choking && sw_bt_storage_has_piece(t->st, ev->index) && p->n_in < p->s->o.max_peer_queue;
    if (ok && p->fast && initial_seeding(t)) {
        /* Initial seeding (BEP 16 in spirit, without hiding pieces): while some piece has
         * never left us and no peer has it, our upload goes only to such pieces; a piece
         * already sent to another peer (or held by one) is rejected (BEP 6), and the
         * requester fetches it from the peers that have it. */
        uint32_t to = t->served_to[ev->index];
        if ((to && to != p->uid) || (!to && sw_bt_picker_availability(t->pk, ev->index) > 0)) ok = 0;
    }
    if (!ok) {
        if (p->fast) sw_bt_wire_put_req(&p->ctrl, SW_BT_REJECT, ev->index, ev->begin, ev->length); /* BEP 6 */
        return;
    }
    /* Counters for sw_bt_torrent_stats: a second copy of a piece (to another peer) accepted
     * while some piece has never left us is what initial seeding avoids. */
    if (!sw__bit_get(t->sent_once, ev->index)) {
        sw__bit_set(t->sent_once, ev->index);
        t->n_sent_once++;
    } else if (t->served_to[ev->index] != p->uid && t->n_sent_once < t->mi.n_pieces) {
        t->dup_early += ev->length;
    }
    if (!t->served_to[ev->index]) t->served_to[ev->index] = p->uid;
    if (p->n_in == p->cap_in) {
        uint32_t nc = p->cap_in ? p->cap_in * 2 : 64;
        struct inreq *ni = malloc(nc * sizeof *ni);
        if (!ni) return;
        for (uint32_t i = 0; i < p->n_in; i++) ni[i] = p->in[(p->in_head + i) % p->cap_in];
        free(p->in);
        p->in = ni;
        p->in_head = 0;
        p->cap_in = nc;
    }
    p->in[(p->in_head + p->n_in) % p->cap_in] = (struct inreq){ ev->index, ev->begin, ev->length };
    p->n_in++;
    if (ev->begin == 0) sw_bt_storage_prefetch(t->st, ev->index); /* a new piece: read ahead */
}

static void on_cancel(struct sw_bt_peer *p, const struct sw_bt_wire_ev *ev)
{
    for (uint32_t i = 0; i < p->n_in; i++) {
        struct inreq *r = &p->in[(p->in_head + i) % p->cap_in];
        if (r->piece == ev->index && r->begin == ev->begin && r->len == ev->length) {
            /* Remove by shifting the rest of the ring down one slot. */
            for (uint32_t k = i; k + 1 < p->n_in; k++)
                p->in[(p->in_head + k) % p->cap_in] = p->in[(p->in_head + k + 1) % p->cap_in];
            p->n_in--;
            /* BEP 6: a cancelled request is answered with a reject. */
            if (p->fast) sw_bt_wire_put_req(&p->ctrl, SW_BT_REJECT, ev->index, ev->begin, ev->length);
            return;
        }
    }
}

static int remove_out(struct sw_bt_peer *p, uint32_t piece, uint32_t begin)
{
    for (uint32_t i = 0; i < p->n_out; i++)
        if (p->out[i].piece == piece && p->out[i].begin == begin) {
            p->out[i] = p->out[--p->n_out];
            return 1;
        }
    return 0;
}

static void on_piece_data(struct sw_bt_peer *p, const struct sw_bt_wire_ev *ev)
{
    struct sw_bt_torrent *t = p->t;
    p->down_bytes += ev->frag_len;
    t->down_total += ev->frag_len;
    p->last_data_ms = sw_time_ms();
    if (!t->has_meta || ev->index >= t->mi.n_pieces || t->hashing[ev->index] || sw_bt_picker_have(t->pk, ev->index)) {
        if (ev->last) remove_out(p, ev->index, ev->block_begin);
        return;
    }
    /* Only blocks we asked for, of the size we asked. */
    if (ev->block_begin % SW_BT_BLOCK || ev->block_len > SW_BT_BLOCK ||
        (uint64_t)ev->block_begin + ev->block_len > sw_bt_piece_size(&t->mi, ev->index))
        return;
    /* Only bytes of a block we asked this peer for, and not yet received from anyone, may
     * touch the assembly buffer (unsolicited data must not overwrite good data). */
    if (!is_dup(p, ev->index, ev->block_begin) || sw_bt_picker_block_received(t->pk, ev->index, ev->block_begin)) {
        if (ev->last) remove_out(p, ev->index, ev->block_begin);
        return;
    }
    struct assembly *a = sw__assembly_get(t, ev->index);
    if (!a) return;
    memcpy(a->buf + ev->frag_begin, ev->frag, ev->frag_len);
    if (!ev->last) return;
    remove_out(p, ev->index, ev->block_begin);
    if (!sw_bt_picker_received(t->pk, ev->index, ev->block_begin)) return;
    a->sender[ev->block_begin / SW_BT_BLOCK] = p->uid;
    if (sw_bt_picker_in_endgame(t->pk)) {
        /* Endgame: tell the other peers we no longer need this block. */
        for (struct sw_bt_peer *q = t->s->peers; q; q = q->next) {
            if (q == p || q->t != t || q->state != P_ACTIVE) continue;
            if (remove_out(q, ev->index, ev->block_begin)) {
                sw_bt_picker_abort(t->pk, ev->index, ev->block_begin);
                sw_bt_wire_put_req(&q->ctrl, SW_BT_CANCEL, ev->index, ev->block_begin, ev->block_len);
                sw__flush(q);
            }
        }
    }
    if (sw_bt_picker_piece_full(t->pk, ev->index)) sw__submit_piece(t, ev->index);
}

/* BITFIELD, HAVE_ALL, HAVE_NONE: a full statement of what the peer holds. */
static void on_bitfield(struct sw_bt_peer *p, const struct sw_bt_wire_ev *ev)
{
    struct sw_bt_torrent *t = p->t;
    if ((ev->id != SW_BT_BITFIELD) && !p->fast) { sw__peer_close(p, SW_ECORRUPT, "have_all/none without the fast extension"); return; }
    if (ev->id == SW_BT_BITFIELD && t->has_meta && ev->payload_len != bits_bytes(t)) {
        sw__peer_close(p, SW_ECORRUPT, "bitfield of the wrong length");
        return;
    }
    /* BEP 3/6 want this first, but some clients send HAVEs (or have_none) before a
     * bitfield: the latest full statement replaces what we knew, merged with HAVEs. */
    if (p->counted && t->pk) {
        if (p->have_all) sw_bt_picker_dec_all(t->pk, NULL);
        else if (p->bits) sw_bt_picker_dec_all(t->pk, p->bits);
        p->counted = 0;
    }
    if (ev->id == SW_BT_HAVE_ALL) {
        p->have_all = 1;
    } else if (ev->id == SW_BT_BITFIELD && !p->have_all) {
        if (p->bits_len < ev->payload_len) {
            uint8_t *nb = realloc(p->bits, ev->payload_len);
            if (!nb) return;
            memset(nb + p->bits_len, 0, ev->payload_len - p->bits_len);
            p->bits = nb;
            p->bits_len = ev->payload_len;
        }
        for (size_t i = 0; i < ev->payload_len; i++) p->bits[i] |= ev->payload[i];
    }
    sw__apply_bits(p);
    if (p->state == P_ACTIVE && t->has_meta) {
        sw__set_interest(p, sw__peer_useful(p));
        sw__fill_requests(p);
    }
}

void sw__on_wire_event(void *ud, const struct sw_bt_wire_ev *ev)
{
    struct sw_bt_peer *p = ud;
    if (p->state == P_CLOSING) return;
    if (ev->type == SW_BT_WEV_HANDSHAKE) { on_handshake(p, ev); return; }
    if (p->state != P_ACTIVE) return;
    struct sw_bt_session *s = p->s;
    struct sw_bt_torrent *t = p->t;
    if (ev->type == SW_BT_WEV_KEEPALIVE) return;
    p->last_msg_ms = sw_time_ms();
    p->proven = 1;
    if (ev->type == SW_BT_WEV_PIECE_DATA) { on_piece_data(p, ev); return; }
    switch (ev->id) {
    case SW_BT_CHOKE:
        p->peer_choking = 1;
        if (!p->fast) sw__abort_requests(p); /* BEP 3: a choke discards pending requests */
        break;
    case SW_BT_UNCHOKE:
        p->peer_choking = 0;
        sw__fill_requests(p);
        break;
    case SW_BT_INTERESTED:
        p->peer_interested = 1;
        if (t) t->fresh_ms = 0; /* initial_seeding() counts interested peers: recompute */
        if (p->am_choking && n_unchoked(t) < s->o.max_unchoked) set_choke(p, 0); /* a free slot: at once */
        break;
    case SW_BT_NOT_INTERESTED:
        p->peer_interested = 0;
        break;
    case SW_BT_HAVE:
        on_have(p, ev->index);
        break;
    case SW_BT_BITFIELD:
    case SW_BT_HAVE_ALL:
    case SW_BT_HAVE_NONE:
        on_bitfield(p, ev);
        break;
    case SW_BT_REQUEST:
        on_request(p, ev);
        break;
    case SW_BT_CANCEL:
        on_cancel(p, ev);
        break;
    case SW_BT_REJECT:
        if (!p->fast) { sw__peer_close(p, SW_ECORRUPT, "reject without the fast extension"); return; }
        if (remove_out(p, ev->index, ev->begin) && t->pk) {
            sw_bt_picker_abort(t->pk, ev->index, ev->begin);
            /* Do not ask this peer for the piece again for a while (an initial seeder
             * rejects pieces others can give us): the picker offers it elsewhere. */
            if (!p->rejected) p->rejected = calloc(bits_bytes(t), 1);
            if (p->rejected) { sw__bit_set(p->rejected, ev->index); p->any_rejected = 1; }
            sw__fill_requests(p);
        }
        break;
    case SW_BT_ALLOWED_FAST:
        /* BEP 6: we may request this piece even while choked. */
        if (t->has_meta && ev->index < t->mi.n_pieces) {
            if (!p->allowed) p->allowed = calloc(bits_bytes(t), 1);
            if (p->allowed) sw__bit_set(p->allowed, ev->index);
            if (p->peer_choking) sw__fill_requests(p);
        }
        break;
    case SW_BT_EXTENDED:
        if (ev->ext_id == 0) sw__on_ext_handshake(p, ev->payload, ev->payload_len);
        else if (ev->ext_id == EXT_PEX) sw__on_pex_msg(p, ev->payload, ev->payload_len);
        else if (ev->ext_id == EXT_METADATA) sw__on_metadata_msg(p, ev->payload, ev->payload_len);
        else if (ev->ext_id == EXT_CUSTOM && s->has_ext && s->ext.on_message) s->ext.on_message(s->ext.ud, p, ev->payload, ev->payload_len);
        break;
    default:
        break; /* suggest, port: hints we do not need */
    }
}
