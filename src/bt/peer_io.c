/* peer_io.c — the bytes of a peer connection: writing queued messages and blocks from the
 * storage map, the peer lifecycle (new, close), reading (with MSE sniffing), connecting,
 * accepting and dialing. Not for: what the messages mean (peer_msg.c).
 * The filter slot: in a private swarm each connection has a Noise filter (p->nz, src/net/
 * noise.c) — bytes read go through sw_noise_feed before the wire parser, and every write is
 * sealed on its way to the socket (write_buf, write_blocks, sw__send_sealed3); the zero-copy
 * block path becomes "seal into a pooled buffer". Public swarms: p->nz is NULL, no change. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bt_session_int.h"

/* ------------------------------------------------------------------ sending */

struct wreq {
    uv_write_t req;
    struct sw_bt_peer *p;
    uint8_t *owned;   /* copied bytes freed on completion */
    uint8_t *pooled;  /* private swarm: a sealed-blocks buffer going back to the session's pool */
    uint32_t n_bytes;
    uint32_t n_blocks;
    uint8_t hdr[32][13];
    uv_buf_t bufs[64];
    uint8_t *scratch[32];
};


/* Private swarm: sealed piece data goes out from buffers of SEAL_CAP bytes, kept for reuse
 * (a fresh 400 KiB malloc would be an mmap and page faults on every chunk). One chunk of
 * write_blocks_sealed: < SW_BT_SEND_CHUNK bytes, then one more block of at most
 * MAX_BLOCK_REQ; 32 blocks at most, each its own records (a header and tag per 64 KiB). */
#define SEAL_CAP (SW_BT_SEND_CHUNK + MAX_BLOCK_REQ + 32 * 13 + (32 + 8) * (2 + SW_NOISE_TAG))

static uint8_t *seal_buf_get(struct sw_bt_session *s)
{
    if (s->n_seal_pool) return s->seal_pool[--s->n_seal_pool];
    return malloc(SEAL_CAP);
}

static void seal_buf_put(struct sw_bt_session *s, uint8_t *b)
{
    if (!b) return;
    if (s->n_seal_pool < sizeof s->seal_pool / sizeof s->seal_pool[0]) s->seal_pool[s->n_seal_pool++] = b;
    else free(b);
}

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct sw_bt_peer *p = w->p;
    free(w->owned);
    seal_buf_put(p->s, w->pooled);
    for (uint32_t i = 0; i < w->n_blocks; i++) free(w->scratch[i]);
    free(w);
    if (status < 0) {
        if (status != UV_ECANCELED) sw__peer_close(p, SW_EIO, uv_strerror(status));
        return;
    }
    if (p->state != P_CLOSING) sw__flush(p);
}

/* Writes a buffer we own (transferring `data`). */
int sw__write_owned(struct sw_bt_peer *p, uint8_t *data, size_t len)
{
    struct wreq *w = calloc(1, sizeof *w);
    if (!w) { free(data); return SW_ENOMEM; }
    w->p = p;
    w->owned = data;
    w->bufs[0] = uv_buf_init((char *)data, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&p->tcp, w->bufs, 1, on_written);
    if (rc) { free(data); free(w); return SW_EIO; }
    p->last_send_ms = sw_time_ms();
    return 0;
}

/* Moves a whole sw_buf of bytes, as they are, into one write. */
static int write_raw(struct sw_bt_peer *p, struct sw_buf *b)
{
    if (!b->len) return 0;
    if (!sw_buf_ok(b)) return SW_ENOMEM;
    /* Fast path: straight into the socket when nothing is queued (keeps order: uv_try_write
     * refuses while libuv still has queued writes). */
    uv_buf_t one = uv_buf_init((char *)b->data, (unsigned)b->len);
    int n = uv_try_write((uv_stream_t *)&p->tcp, &one, 1);
    if (n > 0) {
        p->last_send_ms = sw_time_ms();
        sw_buf_consume(b, (size_t)n);
        if (!b->len) return 0;
    }
    uint8_t *data = b->data;
    size_t len = b->len;
    memset(b, 0, sizeof *b);
    return sw__write_owned(p, data, len);
}

/* Moves a whole sw_buf of messages into one write: sealed as records in a private swarm. */
static int write_buf(struct sw_bt_peer *p, struct sw_buf *b)
{
    if (!p->nz || !b->len) return write_raw(p, b);
    if (!sw_buf_ok(b)) return SW_ENOMEM;
    struct sw_buf sealed = { 0 };
    int rc = sw_noise_seal(p->nz, b->data, b->len, &sealed);
    sw_buf_free(b);
    if (!rc) rc = write_raw(p, &sealed);
    sw_buf_free(&sealed); /* written at once: ours to free; queued: moved out (NULL) */
    return rc;
}

/* Private swarm: a | b | c sealed and written now when nothing is queued ahead (the pipeline's
 * latency path), else queued as priority bytes and sealed when flushed. */
int sw__send_sealed3(struct sw_bt_peer *p, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                     const uint8_t *c, size_t clen)
{
    if (p->prio.len || p->ctrl.len || p->nz_out.len || !sw_noise_ready(p->nz)) {
        sw_buf_append(&p->prio, a, alen);
        sw_buf_append(&p->prio, b, blen);
        if (clen) sw_buf_append(&p->prio, c, clen);
        if (!sw_buf_ok(&p->prio)) { sw__peer_close(p, SW_ENOMEM, "out of memory"); return SW_ENOMEM; }
        sw__flush(p);
        return 0;
    }
    const uint8_t *part[3] = { a, b, c };
    size_t len[3] = { alen, blen, clen };
    struct sw_buf sealed = { 0 };
    if (sw_buf_reserve(&sealed, sw_noise_sealed_len(alen + blen + clen))) {
        sw__peer_close(p, SW_ENOMEM, "out of memory");
        return SW_ENOMEM;
    }
    sealed.len = sw_noise_sealv(p->nz, part, len, 3, sealed.data);
    if (!sealed.len && alen + blen + clen) { /* the send side is spent or broken (sw_noise_err says which) */
        sw_buf_free(&sealed);
        sw__peer_close(p, SW_EIO, sw_noise_err(p->nz));
        return SW_EIO;
    }
    int rc = write_raw(p, &sealed);
    sw_buf_free(&sealed);
    if (rc) { sw__peer_close(p, rc, "write failed"); return rc; }
    return 0;
}

/* Takes the next queued block request: its bytes from the storage map (no copy), or read into
 * *scratch (malloc'd; the caller frees it) where the map cannot serve it. NULL: none left. */
static const uint8_t *next_block(struct sw_bt_peer *p, struct inreq *r, uint8_t **scratch)
{
    struct sw_bt_torrent *t = p->t;
    while (p->n_in) {
        *r = p->in[p->in_head];
        p->in_head = (p->in_head + 1) % p->cap_in;
        p->n_in--;
        *scratch = NULL;
        const uint8_t *data = sw_bt_storage_read(t->st, r->piece, r->begin, r->len, NULL);
        if (data) return data;
        *scratch = malloc(r->len);
        data = *scratch ? sw_bt_storage_read(t->st, r->piece, r->begin, r->len, *scratch) : NULL;
        if (data) return data;
        free(*scratch);
        *scratch = NULL;
    }
    return NULL;
}

static void count_sent(struct sw_bt_peer *p, uint32_t len)
{
    p->up_bytes += len;
    p->t->up_total += len;
}

/* Private swarm: the chunk's blocks sealed into one buffer (header and block of each sealed
 * straight from where they lie) and handed to the socket at once. Written whole (the usual
 * case while the kernel has room), the buffer is reused for the next chunk while it is still
 * in cache; only a remainder waits in a write request, holding its buffer until then. */
static int write_blocks_sealed(struct sw_bt_peer *p)
{
    struct sw_bt_torrent *t = p->t;
    uint8_t *buf = seal_buf_get(p->s);
    if (!buf) return SW_ENOMEM;
    uint32_t nb = 0, bytes = 0;
    size_t sealed = 0;
    struct inreq r;
    uint8_t *scratch;
    const uint8_t *data;
    while (nb < 32 && bytes < SW_BT_SEND_CHUNK && (data = next_block(p, &r, &scratch))) {
        uint8_t hdr[13];
        sw_bt_wire_piece_header(hdr, r.piece, r.begin, r.len);
        const uint8_t *part[2] = { hdr, data };
        size_t plen[2] = { 13, r.len };
        size_t w = sw_noise_sealv(p->nz, part, plen, 2, buf + sealed);
        free(scratch);
        if (!w) { seal_buf_put(p->s, buf); return SW_EIO; }
        sealed += w;
        nb++;
        bytes += 13 + r.len;
        count_sent(p, r.len);
    }
    if (!nb) { seal_buf_put(p->s, buf); return 0; }
    sw_rate_add(&t->up_rate, sw_time_ms(), t->up_total);
    p->last_send_ms = sw_time_ms();
    uv_buf_t one = uv_buf_init((char *)buf, (unsigned)sealed);
    int n = uv_try_write((uv_stream_t *)&p->tcp, &one, 1); /* the write queue is empty here */
    if (n == (int)sealed) { seal_buf_put(p->s, buf); return 0; }
    if (n < 0 && n != UV_EAGAIN) { seal_buf_put(p->s, buf); return SW_EIO; }
    size_t done = n > 0 ? (size_t)n : 0;
    struct wreq *wr = calloc(1, sizeof *wr);
    if (!wr) { seal_buf_put(p->s, buf); return SW_ENOMEM; }
    wr->p = p;
    wr->pooled = buf;
    wr->bufs[0] = uv_buf_init((char *)buf + done, (unsigned)(sealed - done));
    if (uv_write(&wr->req, (uv_stream_t *)&p->tcp, wr->bufs, 1, on_written)) {
        seal_buf_put(p->s, buf);
        free(wr);
        return SW_EIO;
    }
    return 0;
}

/* Serves queued block requests as one write of up to SW_BT_SEND_CHUNK bytes, with the
 * block bytes taken straight from the storage map (no copy). */
static int write_blocks(struct sw_bt_peer *p)
{
    if (p->nz) return write_blocks_sealed(p);
    struct sw_bt_torrent *t = p->t;
    struct wreq *w = calloc(1, sizeof *w);
    if (!w) return SW_ENOMEM;
    w->p = p;
    uint32_t nb = 0, bytes = 0;
    struct inreq r;
    uint8_t *scratch;
    const uint8_t *data;
    while (nb < 32 && bytes < SW_BT_SEND_CHUNK && (data = next_block(p, &r, &scratch))) {
        sw_bt_wire_piece_header(w->hdr[nb], r.piece, r.begin, r.len);
        w->bufs[2 * nb] = uv_buf_init((char *)w->hdr[nb], 13);
        w->bufs[2 * nb + 1] = uv_buf_init((char *)data, r.len);
        w->scratch[nb] = scratch;
        nb++;
        bytes += 13 + r.len;
        count_sent(p, r.len);
    }
    w->n_blocks = nb;
    if (!nb) { free(w); return 0; }
    sw_rate_add(&t->up_rate, sw_time_ms(), t->up_total);
    int rc = uv_write(&w->req, (uv_stream_t *)&p->tcp, w->bufs, 2 * nb, on_written);
    if (rc) {
        for (uint32_t i = 0; i < nb; i++) free(w->scratch[i]);
        free(w);
        return SW_EIO;
    }
    p->last_send_ms = sw_time_ms();
    return 0;
}

/* Writes what is pending, priority first, and block data only while libuv holds no
 * unwritten bytes: a priority message then waits behind at most one chunk. */
void sw__flush(struct sw_bt_peer *p)
{
    if (p->state == P_CLOSING || p->state == P_CONNECTING) return;
    uv_stream_t *st = (uv_stream_t *)&p->tcp;
    if (p->nz) {
        /* private swarm: the handshake's own bytes go as they are; messages wait for its keys */
        if (p->nz_out.len) {
            int rc = write_raw(p, &p->nz_out);
            if (rc) { sw__peer_close(p, rc, "write failed"); return; }
        }
        if (!sw_noise_ready(p->nz)) return;
    }
    for (int guard = 0; guard < 64; guard++) {
        int rc = 0;
        if (p->prio.len) rc = write_buf(p, &p->prio);
        else if (p->ctrl.len) rc = write_buf(p, &p->ctrl);
        else if (p->n_in && !p->am_choking && uv_stream_get_write_queue_size(st) == 0) rc = write_blocks(p);
        else break;
        if (rc) { sw__peer_close(p, rc, "write failed"); return; }
        if (uv_stream_get_write_queue_size(st) > 0 && !p->prio.len && !p->ctrl.len) break;
    }
}


/* ------------------------------------------------------------------ peers: lifecycle */

static void on_closed(uv_handle_t *h)
{
    struct sw_bt_peer *p = h->data;
    struct sw_bt_session *s = p->s;
    sw_bt_wire_free(&p->wire);
    sw__mse_free(p->mse);
    sw_noise_free(p->nz);
    sw_buf_free(&p->nz_out);
    sw_buf_free(&p->ctrl);
    sw_buf_free(&p->prio);
    sw_buf_free(&p->held);
    free(p->bits);
    free(p->allowed);
    free(p->rejected);
    free(p->mask);
    free(p->out);
    free(p->in);
    free(p);
    s->handles--;
}

void sw__abort_requests(struct sw_bt_peer *p)
{
    struct sw_bt_torrent *t = p->t;
    if (t && t->pk)
        for (uint32_t i = 0; i < p->n_out; i++) sw_bt_picker_abort(t->pk, p->out[i].piece, p->out[i].begin);
    p->n_out = 0;
}

void sw__peer_close(struct sw_bt_peer *p, int reason, const char *why)
{
    if (p->state == P_CLOSING) return;
    struct sw_bt_session *s = p->s;
    struct sw_bt_torrent *t = p->t;
    int was_active = p->state == P_ACTIVE;
    p->state = P_CLOSING;
    p->close_reason = reason;
    LOGD("closing connection %s: %s", p->addr_str, why ? why : sw_strerror(reason));
    sw__budget_peer_closed(p); /* its buffer room goes back at once */
    sw__abort_requests(p);
    if (t && t->served_to)
        for (uint32_t i = 0; i < t->mi.n_pieces; i++)
            if (t->served_to[i] == p->uid) t->served_to[i] = 0; /* it may not have arrived */
    if (t && t->pk && p->counted) {
        if (p->have_all) sw_bt_picker_dec_all(t->pk, NULL);
        else if (p->bits) sw_bt_picker_dec_all(t->pk, p->bits);
        p->counted = 0;
    }
    if (p->ext_connected_called && s->has_ext && s->ext.on_peer_closed) s->ext.on_peer_closed(s->ext.ud, p, reason);
    if (was_active && t) {
        struct sw_bt_event ev = { .type = SW_BT_EV_PEER_CLOSED, .torrent = t, .peer = p, .file = -1, .err = reason, .msg = why };
        emit(s, &ev);
    }
    if (p->prev) p->prev->next = p->next;
    else s->peers = p->next;
    if (p->next) p->next->prev = p->prev;
    /* p->next stays: a loop over the peers that closed p can still step past it (p is freed
     * only in the close callback, on a later loop turn). */
    uv_close((uv_handle_t *)&p->tcp, on_closed);
}

static struct sw_bt_peer *peer_new(struct sw_bt_session *s, struct sw_bt_torrent *t, int outgoing)
{
    struct sw_bt_peer *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->s = s;
    p->t = t;
    p->uid = ++s->next_uid;
    p->outgoing = outgoing;
    p->am_choking = p->peer_choking = 1;
    p->reqq = 250; /* BEP 10: libtorrent's default when a peer gives no reqq */
    /* BEP 3 practice: we request SW_BT_BLOCK-sized blocks, so no PIECE may carry more. */
    struct sw_bt_wire_limits lim = { .max_block = SW_BT_BLOCK,
                                     .max_ext_big = (uint32_t)SW_MIN(s->has_ext ? s->ext.max_msg_len : 0, (size_t)UINT32_MAX) };
    sw_bt_wire_init(&p->wire, &lim);
    sw__budget_peer_init(p);
    if (s->has_ext) sw_bt_wire_allow_big_ext(&p->wire, EXT_CUSTOM);
    p->connected_ms = p->hs_start_ms = p->last_recv_ms = p->last_send_ms = p->last_data_ms = sw_time_ms();
    if (s->private_swarm && !(p->nz = sw_noise_new(s->swarm_key, outgoing))) {
        sw_bt_wire_free(&p->wire);
        free(p);
        return NULL;
    }
    uv_tcp_init(s->loop, &p->tcp);
    p->tcp.data = p;
    s->handles++;
    p->next = s->peers;
    if (s->peers) s->peers->prev = p;
    s->peers = p;
    return p;
}

static void tune_socket(struct sw_bt_peer *p)
{
    uv_tcp_nodelay(&p->tcp, 1); /* latency: pipeline messages must not wait for Nagle */
    int sz = SOCK_BUF;
    uv_send_buffer_size((uv_handle_t *)&p->tcp, &sz);
    sz = SOCK_BUF;
    uv_recv_buffer_size((uv_handle_t *)&p->tcp, &sz);
#ifdef TCP_NOTSENT_LOWAT
    /* Keep little unsent data in the kernel: the socket turns writable again when less than
     * this is queued, so a priority message is not stuck behind megabytes of piece data
     * already handed to the kernel, while the pipe stays full. */
    uv_os_fd_t fd;
    int lowat = (int)SW_BT_SEND_CHUNK;
    if (uv_fileno((uv_handle_t *)&p->tcp, &fd) == 0) setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
#endif
}

/* ------------------------------------------------------------------ reading, connecting, accepting */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct sw_bt_peer *p = h->data;
    (void)suggested;
    /* One read buffer for the whole session: each read is consumed before the next. */
    *buf = uv_buf_init((char *)p->s->rbuf, READ_BUF);
}

/* MSE: which of our torrents has SHA1("req2", info_hash) == req2. */
static const uint8_t *mse_lookup(void *ud, const uint8_t req2[20])
{
    struct sw_bt_session *s = ud;
    for (uint32_t i = 0; i < s->n_tor; i++) {
        uint8_t h[20], buf[24];
        memcpy(buf, "req2", 4);
        memcpy(buf + 4, s->tor[i]->info_hash, 20);
        sw_sha1(buf, 24, h);
        if (!memcmp(h, req2, 20) && !s->tor[i]->closing) return s->tor[i]->info_hash;
    }
    return NULL;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct sw_bt_peer *p = st->data;
    if (n < 0 && p->nz && !sw_noise_ready(p->nz) && p->outgoing) {
        /* private swarm: a member refuses a wrong key by closing, without a word */
        LOGI("closing %s: it closed the connection during the private-swarm handshake (it does not hold this swarm's "
             "key, or it is not in this private swarm)", p->addr_str);
        sw__peer_close(p, SW_EPERM, "refused during the private-swarm handshake");
        return;
    }
    if (n < 0) {
        sw__peer_close(p, n == UV_EOF ? SW_ECLOSED : SW_EIO, n == UV_EOF ? "peer closed the connection" : uv_strerror((int)n));
        return;
    }
    if (n == 0 || p->state == P_CLOSING) return;
    p->last_recv_ms = sw_time_ms();
    const uint8_t *data = (const uint8_t *)buf->base;
    size_t len = (size_t)n;
    struct sw_buf plain = { 0 };
    if (p->nz) {
        /* private swarm: the filter first; nothing reaches the wire parser unauthenticated */
        int was_ready = sw_noise_ready(p->nz);
        struct sw_buf *pl = &p->s->nz_plain;
        pl->len = 0;
        int nrc = sw_noise_feed(p->nz, data, len, &p->nz_out, pl);
        if (nrc) {
            LOGI("closing %s: %s", p->addr_str, sw_noise_err(p->nz));
            sw__peer_close(p, nrc, sw_noise_err(p->nz));
            return;
        }
        if (!was_ready && sw_noise_ready(p->nz))
            LOGD("private link to %s: %s", p->addr_str, sw_noise_aead_name(sw_noise_aead(p->nz)));
        if (p->nz_out.len || (!was_ready && sw_noise_ready(p->nz))) sw__flush(p);
        if (p->state == P_CLOSING) return;
        data = pl->data;
        len = pl->len;
        p->first_read_seen = 1;
    }
    if (!p->first_read_seen) {
        p->first_read_seen = 1;
        /* A plaintext handshake starts with 19; anything else from a dialling peer is taken
         * as an MSE handshake (clients that prefer encryption try it first). */
        if (!p->outgoing && data[0] != 19) {
            p->mse = sw__mse_new();
            if (!p->mse) { sw__peer_close(p, SW_ENOMEM, "out of memory"); return; }
        }
    }
    if (p->mse) {
        int mrc = sw__mse_feed(p->mse, data, len, &p->ctrl, &plain, mse_lookup, p->s);
        if (mrc < 0) {
            sw_buf_free(&plain);
            sw__peer_close(p, mrc, mrc == SW_EUNSUPPORTED ? "encrypted handshake: RC4-only stream not supported"
                                                      : "encrypted handshake failed");
            return;
        }
        sw__flush(p);
        if (mrc == 0 || p->state == P_CLOSING) { sw_buf_free(&plain); return; }
        sw__mse_free(p->mse);
        p->mse = NULL;
        data = plain.data;
        len = plain.len;
    }
    int rc = len ? sw_bt_wire_feed(&p->wire, data, len, sw__on_wire_event, p) : 0;
    sw__peer_fed(p, rc, data, len);
    sw_buf_free(&plain);
}

void sw__peer_fed(struct sw_bt_peer *p, int rc, const uint8_t *data, size_t len)
{
    if (p->state == P_CLOSING) return;
    if (rc == SW_EAGAIN) {
        /* no room in the message buffer budget: stop reading; the rest waits (peer_budget.c) */
        sw__budget_wait(p, data + len - p->wire.unread, p->wire.unread);
        return;
    }
    if (rc) {
        LOGI("closing %s: %s", p->addr_str, p->wire.err);
        sw__peer_close(p, rc, p->wire.err);
        return;
    }
    if (p->state == P_ACTIVE) {
        sw__fill_requests(p);
        sw__flush(p);
    }
}

void sw__peer_read_start(struct sw_bt_peer *p)
{
    uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read);
}

static void start_reading(struct sw_bt_peer *p)
{
    tune_socket(p);
    sw__peer_read_start(p);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct sw_bt_peer *p = req->data;
    if (p->state == P_CLOSING) return;
    if (status < 0) {
        sw__peer_close(p, SW_EIO, uv_strerror(status));
        return;
    }
    p->state = P_HANDSHAKE;
    p->last_recv_ms = p->hs_start_ms = sw_time_ms();
    /* private swarm: Noise message 1 first; the BitTorrent handshake waits for the keys */
    if (p->nz && sw_noise_start(p->nz, &p->nz_out)) { sw__peer_close(p, SW_ENOMEM, "out of memory"); return; }
    sw_bt_wire_put_handshake(&p->ctrl, p->t->info_hash, p->s->peer_id, 1, 1);
    start_reading(p);
    sw__flush(p);
}

void sw__on_incoming(uv_stream_t *server, int status)
{
    struct sw_bt_session *s = server->data;
    if (status < 0 || s->closing) return;
    struct sw_bt_peer *p = peer_new(s, NULL, 0);
    if (!p) return;
    if (uv_accept(server, (uv_stream_t *)&p->tcp)) { sw__peer_close(p, SW_EIO, "accept failed"); return; }
    int len = sizeof p->addr;
    uv_tcp_getpeername(&p->tcp, (struct sockaddr *)&p->addr, &len);
    sw__fmt_addr((struct sockaddr *)&p->addr, p->addr_str, sizeof p->addr_str);
    /* Held connections must not lock out real peers (docs/security.md): one address may
     * hold only a few connections that have not proved themselves, and when all slots are
     * taken the oldest such connection makes room for the new one. */
    uint32_t total = 0, unproven_here = 0;
    for (struct sw_bt_peer *q = s->peers; q; q = q->next) {
        total++;
        if (q != p && !q->outgoing && q->state != P_CLOSING && (q->state != P_ACTIVE || !q->proven) && sw__same_ip(&q->addr, &p->addr))
            unproven_here++;
    }
    if (unproven_here >= MAX_UNPROVEN_PER_ADDR) { sw__peer_close(p, SW_EBUSY, "too many unproven connections from this address"); return; }
    if (total > 4 * s->o.max_peers * (s->n_tor ? s->n_tor : 1) + 16) {
        struct sw_bt_peer *v = sw__evict_victim(s, NULL, p, sw_time_ms());
        if (!v) { sw__peer_close(p, SW_EBUSY, "too many connections"); return; }
        sw__peer_close(v, SW_EBUSY, "evicted to make room: no message since its handshake");
    }
    p->state = P_HANDSHAKE;
    start_reading(p);
}

/* ------------------------------------------------------------------ dialing */

static struct sw_bt_peer *find_by_addr(struct sw_bt_torrent *t, const char *addr_str)
{
    for (struct sw_bt_peer *p = t->s->peers; p; p = p->next) {
        if (p->t != t || p->state == P_CLOSING) continue;
        if (!strcmp(p->addr_str, addr_str)) return p;
        /* An incoming peer whose listen port we know. */
        if (!p->outgoing && p->listen_port) {
            char a[64];
            struct sockaddr_storage ss = p->addr;
            if (ss.ss_family == AF_INET) ((struct sockaddr_in *)&ss)->sin_port = htons(p->listen_port);
            else ((struct sockaddr_in6 *)&ss)->sin6_port = htons(p->listen_port);
            sw__fmt_addr((struct sockaddr *)&ss, a, sizeof a);
            if (!strcmp(a, addr_str)) return p;
        }
    }
    return NULL;
}

static int connect_addr(struct sw_bt_torrent *t, const struct sockaddr *sa, struct sw_bt_peer **peer_out)
{
    struct sw_bt_session *s = t->s;
    char a[64];
    sw__fmt_addr(sa, a, sizeof a);
    if (peer_out) *peer_out = NULL;
    if (s->closing || t->closing) return SW_ECLOSED;
    if (sw__is_banned(s, a)) return SW_EPERM;
    if (s->listening && s->port) {
        /* Don't dial our own listening socket. */
        char self[64];
        snprintf(self, sizeof self, "127.0.0.1:%u", s->port);
        if (!strcmp(a, self)) return SW_EINVAL;
    }
    struct sw_bt_peer *existing = find_by_addr(t, a);
    if (existing) {
        if (peer_out) *peer_out = existing;
        return 0;
    }
    if (sw_bt_torrent_n_peers(t) >= s->o.max_peers) return SW_EBUSY;
    struct sw_bt_peer *p = peer_new(s, t, 1);
    if (!p) return SW_ENOMEM;
    memcpy(&p->addr, sa, sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
    snprintf(p->addr_str, sizeof p->addr_str, "%s", a);
    p->state = P_CONNECTING;
    p->conn.data = p;
    int rc = uv_tcp_connect(&p->conn, &p->tcp, sa, on_connect);
    if (rc) {
        sw__peer_close(p, SW_EIO, uv_strerror(rc));
        return SW_EIO;
    }
    if (peer_out) *peer_out = p;
    return 0;
}

int sw_bt_torrent_add_peer_addr(struct sw_bt_torrent *t, const void *sockaddr)
{
    const struct sockaddr *sa = sockaddr;
    if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) return SW_EINVAL;
    return connect_addr(t, sa, NULL);
}

static int resolve(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 0;
    /* A host name: resolved synchronously (CLI --peer; the DHT and PEX give literals). */
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) || !res) return SW_ENOTFOUND;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    if (ss->ss_family == AF_INET) ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    freeaddrinfo(res);
    return 0;
}

int sw_bt_torrent_add_peer(struct sw_bt_torrent *t, const char *host, uint16_t port)
{
    struct sockaddr_storage ss;
    int rc = resolve(host, port, &ss);
    if (rc) return rc;
    return connect_addr(t, (struct sockaddr *)&ss, NULL);
}

int sw_bt_session_connect(struct sw_bt_torrent *t, const char *host, uint16_t port, struct sw_bt_peer **peer_out)
{
    struct sockaddr_storage ss;
    int rc = resolve(host, port, &ss);
    if (rc) return rc;
    return connect_addr(t, (struct sockaddr *)&ss, peer_out);
}
