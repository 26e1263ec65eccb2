/* session.c — the BitTorrent engine's session: listening, the once-a-second timer (peer and
 * torrent chores, progress events), and the session, torrent and dialing API. The loop is
 * the caller's; no thread of our own. The peer protocol lives in peer_io.c (bytes),
 * peer_msg.c (messages), peer_ext.c (BEP 9/10/11, extension hook), pieces.c (hashing).
 * Not for: parsing (wire.c, metainfo.c), block choice (picker.c), files (storage.c). */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bt_session_int.h"

/* ------------------------------------------------------------------ small helpers */

void sw__fmt_addr(const struct sockaddr *sa, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        uv_ip4_name(a, ip, sizeof ip);
        port = ntohs(a->sin_port);
        snprintf(out, len, "%s:%u", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(a, ip, sizeof ip);
        port = ntohs(a->sin6_port);
        snprintf(out, len, "[%s]:%u", ip, port);
    } else {
        snprintf(out, len, "?");
    }
}

int sw__is_banned(struct sw_bt_session *s, const char *key)
{
    for (uint32_t i = 0; i < s->n_bans; i++)
        if (!strcmp(s->bans[i].key, key)) return 1;
    return 0;
}

void sw__add_ban(struct sw_bt_session *s, const char *key)
{
    if (sw__is_banned(s, key) || s->n_bans >= MAX_BANS) return;
    struct ban *nb = realloc(s->bans, (s->n_bans + 1) * sizeof *nb);
    if (!nb) return;
    s->bans = nb;
    snprintf(s->bans[s->n_bans++].key, sizeof nb->key, "%s", key);
}

void sw__id_key(const uint8_t id[20], char out[48])
{
    char hex[41];
    sw_hex_encode(id, 20, hex);
    snprintf(out, 48, "id:%s", hex);
}

int sw__same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) return 0;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->ss_family == AF_INET6)
        return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr, 16);
    return 0;
}

/* The connection to close so that a new one fits (a held slot must not lock out a real
 * peer): with t NULL, among all incoming connections the oldest that has not proved itself
 * (no message after its handshake); with t, among t's peers first those, then the one
 * quiet (no message but keep-alives) for EVICT_QUIET_MS the longest with no request in
 * flight either way. NULL when every connection is doing something. */
struct sw_bt_peer *sw__evict_victim(struct sw_bt_session *s, struct sw_bt_torrent *t, const struct sw_bt_peer *except,
                                    uint64_t now)
{
    struct sw_bt_peer *best = NULL;
    int best_rank = 0;
    uint64_t best_ms = 0;
    for (struct sw_bt_peer *q = s->peers; q; q = q->next) {
        if (q == except || q->state == P_CLOSING || q->outgoing) continue;
        if (t && (q->t != t || q->state != P_ACTIVE)) continue;
        int unproven = q->state != P_ACTIVE || !q->proven;
        int quiet = t && now - q->last_msg_ms >= EVICT_QUIET_MS && !q->n_out && !q->n_in;
        int rank = unproven ? 2 : quiet ? 1 : 0;
        uint64_t ms = unproven ? q->connected_ms : q->last_msg_ms;
        if (rank && (rank > best_rank || (rank == best_rank && ms < best_ms))) {
            best = q;
            best_rank = rank;
            best_ms = ms;
        }
    }
    return best;
}


/* ------------------------------------------------------------------ timer */

static void set_eta(struct sw_bt_progress *pr, uint64_t eta_ms)
{
    pr->eta_ms = eta_ms;
    pr->eta_s = eta_ms == UINT64_MAX ? UINT64_MAX : (eta_ms + 500) / 1000;
}

/* Rates and ETAs at now_ms (the caller's clock): sliding windows over real time (rate.c). */
static void file_progress(struct sw_bt_torrent *t, uint32_t f, uint64_t now_ms, struct sw_bt_progress *pr)
{
    const struct sw_bt_file *bf = &t->mi.files[f];
    memset(pr, 0, sizeof *pr);
    pr->bytes_total = bf->length;
    uint64_t done = 0;
    for (uint32_t q = bf->first_piece; bf->length && q <= bf->last_piece; q++) {
        if (!sw_bt_storage_has_piece(t->st, q)) continue;
        uint64_t ps = (uint64_t)q * t->mi.piece_length, pe = ps + sw_bt_piece_size(&t->mi, q);
        uint64_t s0 = SW_MAX(ps, bf->offset), e0 = SW_MIN(pe, bf->offset + bf->length);
        done += e0 - s0;
    }
    pr->bytes_done = done;
    pr->percent = bf->length ? 100.0 * (double)done / (double)bf->length : 100.0;
    pr->rate_bps = sw_rate_bps(&t->file_rate[f], now_ms);
    pr->upload_bps = sw_rate_bps(&t->up_rate, now_ms);
    pr->uploaded = t->up_total;
    pr->downloaded = t->down_total;
    set_eta(pr, sw_rate_eta_ms(&t->file_rate[f], now_ms, bf->length - done));
    for (struct sw_bt_peer *p = t->s->peers; p; p = p->next) {
        if (p->t != t || p->state != P_ACTIVE) continue;
        int has = p->have_all;
        for (uint32_t q = bf->first_piece; !has && bf->length && q <= bf->last_piece; q++) has = peer_has(p, q);
        pr->n_peers += has;
    }
}

/* One second of a peer's life: rates, idle and snub timeouts, lost requests, keep-alive,
 * PEX, and topping up interest and requests. May close the peer. */
static void peer_tick(struct sw_bt_peer *p, uint64_t now)
{
    struct sw_bt_session *s = p->s;
    struct sw_bt_torrent *t = p->t;
    p->down_rate = (double)(p->down_bytes - p->down_prev);
    p->up_rate = (double)(p->up_bytes - p->up_prev);
    p->down_prev = p->down_bytes;
    p->up_prev = p->up_bytes;
    if (p->state == P_CLOSING) return;
    if (now - p->last_recv_ms > IDLE_MS) {
        sw__peer_close(p, SW_ETIMEDOUT, "idle");
        return;
    }
    if (p->state == P_CONNECTING && now - p->connected_ms > CONNECT_MS) {
        sw__peer_close(p, SW_ETIMEDOUT, "connect timed out");
        return;
    }
    if (p->state == P_HANDSHAKE && now - p->hs_start_ms > HANDSHAKE_MS) {
        sw__peer_close(p, SW_ETIMEDOUT, "no BitTorrent handshake within 10 s");
        return;
    }
    if (p->state != P_ACTIVE) return;
    if (p->ext && !p->ext_hs_seen && now - p->active_ms > EXT_HS_MS) {
        sw__peer_close(p, SW_ETIMEDOUT, "no extension handshake (BEP 10) within 10 s");
        return;
    }
    if (!p->am_interested && !p->peer_interested && !p->n_in && !p->n_out && now - p->last_msg_ms > SILENT_MS) {
        sw__peer_close(p, SW_ETIMEDOUT, "silent for 30 s and neither side interested");
        return;
    }
    /* Snubbed: requests outstanding but no block for a while: give them to others. */
    if (p->n_out && now - p->last_data_ms > SNUB_MS) {
        for (uint32_t i = 0; i < p->n_out; i++)
            sw_bt_wire_put_req(&p->ctrl, SW_BT_CANCEL, p->out[i].piece, p->out[i].begin, p->out[i].len);
        sw__abort_requests(p);
        p->last_data_ms = now;
    }
    /* A single request left unanswered (dropped by the peer) must not hold its block
     * forever while the peer keeps sending others. */
    for (uint32_t i = 0; i < p->n_out;) {
        struct outreq *o = &p->out[i];
        if (now - o->sent_ms > REQ_TIMEOUT_MS) {
            sw_bt_wire_put_req(&p->ctrl, SW_BT_CANCEL, o->piece, o->begin, o->len);
            if (t->pk) sw_bt_picker_abort(t->pk, o->piece, o->begin);
            p->out[i] = p->out[--p->n_out];
        } else {
            i++;
        }
    }
    if (p->any_rejected && s->ticks % REJECTED_CLEAR_S == 0) {
        memset(p->rejected, 0, bits_bytes(t));
        p->any_rejected = 0;
    }
    if (now - p->last_send_ms > KEEPALIVE_MS) sw_bt_wire_put_keepalive(&p->ctrl);
    if (p->ext_pex && p->next_pex_ms && now >= p->next_pex_ms) {
        sw__send_pex(p);
        p->next_pex_ms = now + PEX_EVERY_MS;
    }
    if (!t->has_meta) sw__meta_request_more(p);
    else {
        sw__set_interest(p, sw__peer_useful(p));
        sw__fill_requests(p);
    }
    sw__flush(p);
}

static void torrent_tick(struct sw_bt_torrent *t, uint64_t now)
{
    struct sw_bt_session *s = t->s;
    for (struct sw_bt_peer *p = s->peers, *nx; p; p = nx) {
        nx = p->next;
        if (p->t != t) continue;
        peer_tick(p, now);
    }
    if (s->ticks % CHOKE_ROUND_S == 0) sw__choke_round(t, s->ticks % OPTIMISTIC_S == 0);
    if (!t->has_meta) return;
    sw__check_complete(t);
    sw__webseed_pump(t);
    for (uint32_t f = 0; f < t->mi.n_files; f++) {
        if (!t->want_file[f] || t->mi.files[f].pad) continue;
        struct sw_bt_event ev = { .type = SW_BT_EV_PROGRESS, .torrent = t, .file = (int32_t)f };
        file_progress(t, f, now, &ev.progress);
        if (!sw_bt_storage_file_complete(t->st, f) || t->s->ticks % 10 == 0) emit(s, &ev);
    }
}

static void on_tick(uv_timer_t *tm)
{
    struct sw_bt_session *s = tm->data;
    uint64_t now = sw_time_ms();
    s->ticks++;
    /* Incoming connections that never completed a handshake belong to no torrent yet. */
    for (struct sw_bt_peer *p = s->peers, *nx; p; p = nx) {
        nx = p->next;
        if (!p->t && now - p->connected_ms > HANDSHAKE_MS) sw__peer_close(p, SW_ETIMEDOUT, "no handshake within 10 s");
    }
    sw__budget_tick(s, now);
    for (uint32_t i = 0; i < s->n_tor; i++)
        if (!s->tor[i]->closing) torrent_tick(s->tor[i], now);
}

/* ------------------------------------------------------------------ session */

static void on_handle_closed(uv_handle_t *h)
{
    struct sw_bt_session *s = h->data;
    s->handles--;
}

int sw_bt_session_new(uv_loop_t *loop, const struct sw_bt_session_opts *opts, struct sw_bt_session **out,
                      char *err, size_t err_len)
{
    *out = NULL;
    struct sw_bt_session *s = calloc(1, sizeof *s);
    if (!s) return SW_ENOMEM;
    s->loop = loop;
    if (opts) s->o = *opts;
    if (!s->o.max_peers) s->o.max_peers = 64;
    if (!s->o.max_unchoked) s->o.max_unchoked = 32;
    if (!s->o.max_requests) s->o.max_requests = 256;
    if (!s->o.max_peer_queue) s->o.max_peer_queue = 512;
    if (s->o.swarm_key) { /* private swarm: the key is ours, not the caller's pointer */
        memcpy(s->swarm_key, s->o.swarm_key, SW_SWARM_KEY_LEN);
        s->private_swarm = 1;
        s->o.swarm_key = NULL;
    }
    s->client_name = strdup(s->o.client_name ? s->o.client_name : "shardswarm " SW_VERSION);
    s->listen_host = strdup(s->o.listen_host ? s->o.listen_host : "0.0.0.0");
    s->rbuf = malloc(READ_BUF);
    if (!s->client_name || !s->listen_host || !s->rbuf) { sw_bt_session_free(s); return SW_ENOMEM; }
    /* Azureus-style peer id: "-SW0100-" + 12 random bytes. */
    memcpy(s->peer_id, "-SW0100-", 8);
    sw_random_bytes(s->peer_id + 8, 12);
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->handles++;
    uv_timer_start(&s->timer, on_tick, TICK_MS, TICK_MS);
    uv_timer_init(loop, &s->reaper);
    s->reaper.data = s;
    s->handles++;
    sw__budget_init(s);
    if (!s->o.no_listen) {
        struct sockaddr_storage sa;
        if (uv_ip4_addr(s->listen_host, s->o.listen_port, (struct sockaddr_in *)&sa) &&
            uv_ip6_addr(s->listen_host, s->o.listen_port, (struct sockaddr_in6 *)&sa)) {
            ERR("listen address '%s' is not an IP literal", s->listen_host);
            sw_bt_session_close(s);
            *out = s;
            return SW_EINVAL;
        }
        uv_tcp_init(loop, &s->listener);
        s->listener.data = s;
        s->handles++;
        s->listening = 1;
        int rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&sa, 0);
        if (!rc) rc = uv_listen((uv_stream_t *)&s->listener, 128, sw__on_incoming);
        if (rc) {
            ERR("cannot listen on %s:%u: %s", s->listen_host, s->o.listen_port, uv_strerror(rc));
            sw_bt_session_close(s);
            *out = s; /* the caller runs the loop to release handles, then frees */
            return SW_EIO;
        }
        struct sockaddr_storage bound;
        int len = sizeof bound;
        uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
        s->port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                                   : ((struct sockaddr_in6 *)&bound)->sin6_port);
    }
    *out = s;
    if (s->listening) {
        struct sw_bt_event ev = { .type = SW_BT_EV_LISTENING, .port = s->port, .file = -1, .msg = s->listen_host };
        emit(s, &ev);
    }
    return 0;
}

uint16_t sw_bt_session_port(const struct sw_bt_session *s)
{
    return s->port;
}

const uint8_t *sw_bt_session_peer_id(const struct sw_bt_session *s)
{
    return s->peer_id;
}

static void torrent_free(struct sw_bt_torrent *t)
{
    if (t->has_meta && t->up_total)
        LOGI("%s: uploaded %llu bytes (%.2fx the torrent)", t->hex, (unsigned long long)t->up_total,
             (double)t->up_total / (double)t->mi.total_length);
    if (t->as)
        for (uint32_t i = 0; i < t->mi.n_pieces; i++) { free(t->as[i].buf); free(t->as[i].sender); }
    for (uint32_t i = 0; i < t->n_pool; i++) free(t->pool[i]);
    free(t->pool);
    for (uint32_t k = 0; k < t->n_failed; k++) { free(t->failed[k].buf); free(t->failed[k].sender); }
    free(t->as);
    free(t->hashing);
    free(t->served_to);
    free(t->sent_once);
    sw_bt_storage_close(t->st);
    sw_bt_picker_free(t->pk);
    sw_bt_metainfo_free(&t->mi);
    free(t->want_file);
    free(t->want_pending);
    free(t->file_verified);
    free(t->file_rate);
    free(t->file_error);
    free(t->meta);
    free(t->meta_got);
    sw__strv_free(t->trackers, t->n_trackers);
    for (uint32_t i = 0; i < t->n_ws; i++) free(t->ws[i].url);
    free(t->ws);
    free(t->dir);
    free(t);
}

void sw__torrent_maybe_free(struct sw_bt_torrent *t)
{
    if (!t->closing || t->jobs) return;
    struct sw_bt_session *s = t->s;
    for (uint32_t i = 0; i < s->n_tor; i++)
        if (s->tor[i] == t) { s->tor[i] = s->tor[--s->n_tor]; break; }
    torrent_free(t);
}

static void on_reap(uv_timer_t *h)
{
    struct sw_bt_session *s = h->data;
    for (uint32_t i = s->n_tor; i-- > 0;) sw__torrent_maybe_free(s->tor[i]);
    uv_close((uv_handle_t *)&s->reaper, on_handle_closed);
}

void sw_bt_session_close(struct sw_bt_session *s)
{
    if (!s || s->closing) return;
    s->closing = 1;
    while (s->peers) sw__peer_close(s->peers, SW_ECLOSED, "session closing");
    if (s->listening) uv_close((uv_handle_t *)&s->listener, on_handle_closed);
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
    sw__budget_close(s);
    for (uint32_t i = 0; i < s->n_tor; i++) s->tor[i]->closing = 1;
    /* Torrents are freed on the next loop turn, never under a caller's feet (this may run
     * inside one of our own event callbacks). */
    uv_timer_start(&s->reaper, on_reap, 0, 0);
}

int sw_bt_session_closed(const struct sw_bt_session *s)
{
    return s->closing && s->handles == 0 && s->n_tor == 0;
}

void sw_bt_session_free(struct sw_bt_session *s)
{
    if (!s) return;
    for (uint32_t i = 0; i < s->n_tor; i++) torrent_free(s->tor[i]);
    free(s->tor);
    for (uint32_t i = 0; i < s->n_extra; i++) { free(s->extra[i].key); free(s->extra[i].val); }
    free(s->extra);
    free(s->bans);
    free(s->ext_name);
    free(s->client_name);
    free(s->listen_host);
    free(s->rbuf);
    for (uint32_t i = 0; i < s->n_seal_pool; i++) free(s->seal_pool[i]);
    sw_buf_free(&s->nz_plain);
    sodium_memzero(s->swarm_key, sizeof s->swarm_key);
    free(s);
}

/* ------------------------------------------------------------------ torrents */

int sw__torrent_init_meta(struct sw_bt_torrent *t, char *err, size_t err_len)
{
    const struct sw_bt_metainfo *mi = &t->mi;
    t->has_meta = 1;
    memcpy(t->info_hash, mi->info_hash, 20);
    for (struct sw_bt_peer *q = t->s->peers; q; q = q->next) /* magnet: bitfield cap now known */
        if (q->t == t) sw_bt_wire_set_pieces(&q->wire, mi->n_pieces);
    t->want_file = calloc(mi->n_files, 1);
    t->file_error = calloc(mi->n_files, 1);
    t->file_verified = calloc(mi->n_files, sizeof *t->file_verified);
    t->file_rate = calloc(mi->n_files, sizeof *t->file_rate);
    t->as = calloc(mi->n_pieces, sizeof *t->as);
    t->hashing = calloc(mi->n_pieces, 1);
    t->served_to = calloc(mi->n_pieces, sizeof *t->served_to);
    t->sent_once = calloc(bits_bytes(t), 1);
    t->pk = sw_bt_picker_new(mi->n_pieces, mi->piece_length, mi->total_length);
    if (!t->want_file || !t->file_error || !t->file_verified || !t->file_rate || !t->as || !t->hashing ||
        !t->served_to || !t->sent_once || !t->pk)
        return SW_ENOMEM;
    uint64_t now = sw_time_ms();
    for (uint32_t f = 0; f < mi->n_files; f++) {
        sw_rate_reset(&t->file_rate[f], RATE_WINDOW_MS);
        sw_rate_add(&t->file_rate[f], now, 0);
    }
    struct sw_bt_storage_opts so = { .dir = t->dir, .verify_all = t->opts.verify_all, .trust_complete = t->opts.trust_complete,
                                     .on_hash = t->opts.on_hash, .hash_ud = t->opts.hash_ud };
    int rc = sw_bt_storage_open(mi, &so, &t->st, err, err_len);
    if (rc) return rc;
    for (uint32_t i = 0; i < mi->n_pieces; i++)
        if (sw_bt_storage_has_piece(t->st, i)) sw_bt_picker_set_have(t->pk, i);
    for (uint32_t i = 0; i < mi->n_web_seeds; i++) {
        struct webseed *nw = realloc(t->ws, (t->n_ws + 1) * sizeof *nw);
        if (!nw) return SW_ENOMEM;
        t->ws = nw;
        t->ws[t->n_ws] = (struct webseed){ .url = strdup(mi->web_seeds[i]) };
        if (t->ws[t->n_ws].url) t->n_ws++;
    }
    if (t->opts.want_all)
        for (uint32_t f = 0; f < mi->n_files; f++) sw_bt_torrent_want_file(t, f, 1);
    for (uint32_t i = 0; i < t->n_want_pending; i++) sw_bt_torrent_want_file(t, t->want_pending[i], 1);
    /* Peers that sent bitfields before we knew the metadata. */
    for (struct sw_bt_peer *p = t->s->peers; p; p = p->next) {
        if (p->t != t || p->state != P_ACTIVE) continue;
        sw__apply_bits(p);
        if (p->ext) sw__put_ext_handshake(p); /* now with metadata_size */
    }
    sw__update_interest_all(t);
    return 0;
}

static int torrent_alloc(struct sw_bt_session *s, const struct sw_bt_torrent_opts *opts, struct sw_bt_torrent **out)
{
    struct sw_bt_torrent *t = calloc(1, sizeof *t);
    if (!t) return SW_ENOMEM;
    t->s = s;
    if (opts) t->opts = *opts;
    /* the meters count from here: the first verified piece starts a run */
    uint64_t now = sw_time_ms();
    sw_rate_reset(&t->rate, RATE_WINDOW_MS);
    sw_rate_add(&t->rate, now, 0);
    sw_rate_reset(&t->up_rate, RATE_WINDOW_MS);
    sw_rate_add(&t->up_rate, now, 0);
    t->dir = strdup(t->opts.dir ? t->opts.dir : "models_cache/shards");
    struct sw_bt_torrent **nt = realloc(s->tor, (s->n_tor + 1) * sizeof *nt);
    if (!t->dir || !nt) { free(t->dir); free(t); return SW_ENOMEM; }
    s->tor = nt;
    s->tor[s->n_tor++] = t;
    t->opts.dir = t->dir;
    *out = t;
    return 0;
}

static void torrent_remove_failed(struct sw_bt_torrent *t)
{
    t->closing = 1;
    sw__torrent_maybe_free(t);
}

int sw_bt_torrent_add(struct sw_bt_session *s, const struct sw_bt_metainfo *mi, const struct sw_bt_torrent_opts *opts,
                      struct sw_bt_torrent **out, char *err, size_t err_len)
{
    *out = NULL;
    if (sw_bt_session_find(s, mi->info_hash)) { ERR("torrent %s already added", mi->info_hash_hex); return SW_EEXIST; }
    struct sw_bt_torrent *t;
    int rc = torrent_alloc(s, opts, &t);
    if (rc) return rc;
    /* Deep copy through the encoder/parser keeps one ownership rule. */
    struct sw_buf b = { 0 };
    rc = sw_bt_metainfo_encode(mi, &b);
    if (!rc) rc = sw_bt_metainfo_parse(b.data, b.len, &t->mi, err, err_len);
    sw_buf_free(&b);
    if (!rc) {
        sw_hex_encode(t->mi.info_hash, 20, t->hex);
        rc = sw__torrent_init_meta(t, err, err_len);
    }
    if (rc) { torrent_remove_failed(t); return rc; }
    *out = t;
    return 0;
}

int sw_bt_torrent_add_magnet(struct sw_bt_session *s, const struct sw_bt_magnet *m, const struct sw_bt_torrent_opts *opts,
                             struct sw_bt_torrent **out, char *err, size_t err_len)
{
    *out = NULL;
    if (sw_bt_session_find(s, m->info_hash)) { ERR("torrent already added"); return SW_EEXIST; }
    struct sw_bt_torrent *t;
    int rc = torrent_alloc(s, opts, &t);
    if (rc) return rc;
    memcpy(t->info_hash, m->info_hash, 20);
    sw_hex_encode(t->info_hash, 20, t->hex);
    for (uint32_t i = 0; i < m->n_trackers; i++) sw__strv_add(&t->trackers, &t->n_trackers, m->trackers[i], strlen(m->trackers[i]));
    *out = t;
    for (uint32_t i = 0; i < m->n_peers; i++) {
        char host[256];
        const char *c = strrchr(m->peers[i], ':');
        if (!c || (size_t)(c - m->peers[i]) >= sizeof host) continue;
        memcpy(host, m->peers[i], (size_t)(c - m->peers[i]));
        host[c - m->peers[i]] = 0;
        long port = strtol(c + 1, NULL, 10);
        if (port > 0 && port < 65536) sw_bt_torrent_add_peer(t, host, (uint16_t)port);
    }
    return 0;
}

struct sw_bt_torrent *sw_bt_session_find(struct sw_bt_session *s, const uint8_t info_hash[20])
{
    for (uint32_t i = 0; i < s->n_tor; i++)
        if (!memcmp(s->tor[i]->info_hash, info_hash, 20) && !s->tor[i]->closing) return s->tor[i];
    return NULL;
}

const struct sw_bt_metainfo *sw_bt_torrent_metainfo(const struct sw_bt_torrent *t)
{
    return t->has_meta ? &t->mi : NULL;
}

const uint8_t *sw_bt_torrent_info_hash(const struct sw_bt_torrent *t)
{
    return t->info_hash;
}

int sw_bt_torrent_want_file(struct sw_bt_torrent *t, uint32_t file, int want)
{
    if (!t->has_meta) {
        if (!want) return 0;
        uint32_t *np = realloc(t->want_pending, (t->n_want_pending + 1) * sizeof *np);
        if (!np) return SW_ENOMEM;
        t->want_pending = np;
        t->want_pending[t->n_want_pending++] = file;
        return 0;
    }
    if (file >= t->mi.n_files) return SW_ERANGE;
    const struct sw_bt_file *bf = &t->mi.files[file];
    t->want_file[file] = (uint8_t)!!want;
    if (want && !bf->pad && !sw_bt_storage_file_complete(t->st, file)) t->complete_reported = 0;
    sw_bt_storage_want_file(t->st, file, want);
    if (!bf->pad && bf->length)
        for (uint32_t q = bf->first_piece; q <= bf->last_piece; q++) {
            /* A piece shared with another wanted file stays wanted. */
            int w = want;
            if (!w) {
                struct sw_bt_span sp[64];
                uint32_t n = sw_bt_piece_spans(&t->mi, q, 0, sw_bt_piece_size(&t->mi, q), sp, 64);
                for (uint32_t i = 0; i < n; i++) w |= t->want_file[sp[i].file] && !t->mi.files[sp[i].file].pad;
            }
            sw_bt_picker_set_wanted(t->pk, q, w && !t->file_error[file]);
        }
    if (want && !bf->pad && sw_bt_storage_file_complete(t->st, file)) {
        /* nothing to fetch */
    } else if (want && !bf->pad && bf->length == 0 && !sw_bt_storage_file_complete(t->st, file)) {
        sw__start_finalize(t, file);
    }
    sw__update_interest_all(t);
    /* No TORRENT_COMPLETE from here: the caller may be wanting several files in a row
     * (the next tick reports it; sw_bt_torrent_complete answers at once). */
    return 0;
}

int sw_bt_torrent_retry_file(struct sw_bt_torrent *t, uint32_t file)
{
    if (!t->has_meta || file >= t->mi.n_files) return SW_EINVAL;
    if (!t->file_error[file]) return 0;
    t->file_error[file] = 0;
    t->errored = 0;
    for (uint32_t f = 0; f < t->mi.n_files; f++) t->errored |= t->file_error[f];
    return sw_bt_torrent_want_file(t, file, t->want_file[file]);
}

static int recheck(struct sw_bt_torrent *t, uint32_t file, const uint8_t *good)
{
    if (!t->has_meta || file >= t->mi.n_files) return SW_EINVAL;
    char err[256] = "";
    int was_complete = sw_bt_storage_file_complete(t->st, file);
    int rc = good ? sw_bt_storage_apply_check(t->st, file, good, err, sizeof err)
                  : sw_bt_storage_check_file(t->st, file, err, sizeof err);
    if (rc < 0) return rc;
    const struct sw_bt_file *bf = &t->mi.files[file];
    for (uint32_t q = bf->first_piece; bf->length && q <= bf->last_piece; q++) {
        if (sw_bt_storage_has_piece(t->st, q) && !sw_bt_picker_have(t->pk, q)) {
            sw_bt_picker_set_have(t->pk, q);
            sw__broadcast_have(t, q);
        } else if (!sw_bt_storage_has_piece(t->st, q) && sw_bt_picker_have(t->pk, q)) {
            sw_bt_picker_clear_have(t->pk, q); /* corrupted on disk: fetch it again */
            sw_bt_picker_reset_piece(t->pk, q);
            t->complete_reported = 0;
        }
    }
    if (!was_complete && sw_bt_storage_file_complete(t->st, file)) {
        emit_simple(t, NULL, SW_BT_EV_FILE_COMPLETE, (int32_t)file, 0, 0, sw_bt_storage_path(t->st, file));
        sw__check_complete(t);
    }
    sw__update_interest_all(t);
    return rc;
}

int sw_bt_torrent_recheck_file(struct sw_bt_torrent *t, uint32_t file)
{
    return recheck(t, file, NULL);
}

int sw_bt_torrent_apply_check(struct sw_bt_torrent *t, uint32_t file, const uint8_t *good)
{
    return good ? recheck(t, file, good) : SW_EINVAL;
}

int sw_bt_torrent_file_complete(const struct sw_bt_torrent *t, uint32_t file)
{
    return t->has_meta && sw_bt_storage_file_complete(t->st, file);
}

int sw_bt_torrent_complete(const struct sw_bt_torrent *t)
{
    return sw__all_wanted_complete((struct sw_bt_torrent *)t);
}

int sw_bt_torrent_progress(const struct sw_bt_torrent *t, int32_t file, struct sw_bt_progress *out)
{
    memset(out, 0, sizeof *out);
    if (!t->has_meta) return SW_ESTATE;
    uint64_t now = sw_time_ms();
    if (file >= 0) {
        if ((uint32_t)file >= t->mi.n_files) return SW_ERANGE;
        file_progress((struct sw_bt_torrent *)t, (uint32_t)file, now, out);
        return 0;
    }
    for (uint32_t f = 0; f < t->mi.n_files; f++) {
        if (!t->want_file[f] || t->mi.files[f].pad) continue;
        struct sw_bt_progress pr;
        file_progress((struct sw_bt_torrent *)t, f, now, &pr);
        out->bytes_done += pr.bytes_done;
        out->bytes_total += pr.bytes_total;
        out->n_peers = SW_MAX(out->n_peers, pr.n_peers);
    }
    /* the torrent's own meter: files fetched one after another or side by side alike */
    out->rate_bps = sw_rate_bps(&t->rate, now);
    out->upload_bps = sw_rate_bps(&t->up_rate, now);
    out->uploaded = t->up_total;
    out->downloaded = t->down_total;
    out->percent = out->bytes_total ? 100.0 * (double)out->bytes_done / (double)out->bytes_total : 100.0;
    set_eta(out, sw_rate_eta_ms(&t->rate, now, out->bytes_total - out->bytes_done));
    return 0;
}

const char *sw_bt_torrent_file_path(const struct sw_bt_torrent *t, uint32_t file)
{
    return t->has_meta ? sw_bt_storage_path(t->st, file) : NULL;
}

uint32_t sw_bt_torrent_n_peers(const struct sw_bt_torrent *t)
{
    uint32_t n = 0;
    for (struct sw_bt_peer *p = t->s->peers; p; p = p->next) n += p->t == t && p->state == P_ACTIVE;
    return n;
}

uint32_t sw_bt_torrent_peers(const struct sw_bt_torrent *t, struct sw_bt_peer **out, uint32_t max)
{
    uint32_t n = 0;
    for (struct sw_bt_peer *p = t->s->peers; p && n < max; p = p->next)
        if (p->t == t && p->state == P_ACTIVE) out[n++] = p;
    return n;
}
