/* wire.c — the BitTorrent peer wire protocol as a socket-free state machine: bytes in,
 * events out (handshake, messages, piece data streamed in fragments), and encoders for
 * every message we send. BEP 3 framing, BEP 6 fast extension ids, BEP 10 extended messages.
 * Not for: deciding what to do with the messages (session.c). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bt.h"

static const char pstr[] = "BitTorrent protocol";

__attribute__((format(printf, 3, 4)))
static int wfail(struct sw_bt_wire *w, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    w->closed = code;
    vsnprintf(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
    return code;
}

void sw_bt_wire_init(struct sw_bt_wire *w, const struct sw_bt_wire_limits *lim)
{
    memset(w, 0, sizeof *w);
    if (lim) w->lim = *lim;
    if (!w->lim.max_msg) w->lim.max_msg = 1u << 20;
    if (!w->lim.max_block) w->lim.max_block = 128u << 10;
    if (!w->lim.max_ext) w->lim.max_ext = 1u << 20;
    if (!w->lim.max_ext_big) w->lim.max_ext_big = 64u << 20;
    if (!w->lim.max_ext_pre) w->lim.max_ext_pre = 64u << 10;
    if (!w->lim.max_bitfield) w->lim.max_bitfield = w->lim.max_msg;
}

void sw_bt_wire_set_pieces(struct sw_bt_wire *w, uint32_t n_pieces)
{
    w->lim.max_bitfield = (uint32_t)(((uint64_t)n_pieces + 7) / 8);
}

/* Payload size (after the id) of the fixed-size messages; -1 for the variable ones. */
static int64_t fixed_body(uint8_t id)
{
    switch (id) {
    case SW_BT_CHOKE: case SW_BT_UNCHOKE: case SW_BT_INTERESTED: case SW_BT_NOT_INTERESTED:
    case SW_BT_HAVE_ALL: case SW_BT_HAVE_NONE: return 0;
    case SW_BT_HAVE: case SW_BT_SUGGEST: case SW_BT_ALLOWED_FAST: return 4;
    case SW_BT_REQUEST: case SW_BT_CANCEL: case SW_BT_REJECT: return 12;
    case SW_BT_PORT: return 2;
    default: return -1;
    }
}

void sw_bt_wire_free(struct sw_bt_wire *w)
{
    if (w) sw_buf_free(&w->partial);
}

void sw_bt_wire_allow_big_ext(struct sw_bt_wire *w, uint8_t ext_id)
{
    w->big_ext[ext_id >> 3] |= (uint8_t)(1u << (ext_id & 7));
}

/* Validates a whole non-piece message (id + body) and emits it. */
static int dispatch(struct sw_bt_wire *w, uint8_t id, const uint8_t *b, size_t n, sw_bt_wire_cb cb, void *ud)
{
    struct sw_bt_wire_ev ev = { .type = SW_BT_WEV_MSG, .id = id };
    switch (id) {
    case SW_BT_CHOKE: case SW_BT_UNCHOKE: case SW_BT_INTERESTED: case SW_BT_NOT_INTERESTED:
    case SW_BT_HAVE_ALL: case SW_BT_HAVE_NONE:
        if (n != 0) return wfail(w, SW_ECORRUPT, "message %u with %u payload bytes (expected 0)", id, (uint32_t)n);
        break;
    case SW_BT_HAVE: case SW_BT_SUGGEST: case SW_BT_ALLOWED_FAST:
        if (n != 4) return wfail(w, SW_ECORRUPT, "message %u with %u payload bytes (expected 4)", id, (uint32_t)n);
        ev.index = sw_get_be32(b);
        break;
    case SW_BT_REQUEST: case SW_BT_CANCEL: case SW_BT_REJECT:
        if (n != 12) return wfail(w, SW_ECORRUPT, "message %u with %u payload bytes (expected 12)", id, (uint32_t)n);
        ev.index = sw_get_be32(b);
        ev.begin = sw_get_be32(b + 4);
        ev.length = sw_get_be32(b + 8);
        break;
    case SW_BT_PORT: /* BEP 5: the peer's DHT port */
        if (n != 2) return wfail(w, SW_ECORRUPT, "port message with %u payload bytes%.0u", (uint32_t)n, 0);
        ev.index = sw_get_be16(b);
        break;
    case SW_BT_BITFIELD:
        ev.payload = b;
        ev.payload_len = n;
        break;
    case SW_BT_EXTENDED: /* BEP 10: <ext id><payload> */
        if (n < 1) return wfail(w, SW_ECORRUPT, "empty extended message%.0u%.0u", 0, 0);
        ev.ext_id = b[0];
        if (ev.ext_id == 0) w->got_ext_hs = 1; /* from now on the negotiated caps apply */
        ev.payload = b + 1;
        ev.payload_len = n - 1;
        break;
    default:
        return 0; /* unknown message ids are ignored (forward compatibility) */
    }
    cb(ud, &ev);
    return 0;
}

static uint32_t hdr_want(const struct sw_bt_wire *w)
{
    if (w->hdr_got < 4) return 4;
    if (w->hdr_got < 5) return 5;
    uint32_t len = sw_get_be32(w->piece_hdr);
    uint8_t id = w->piece_hdr[4];
    if (id == SW_BT_PIECE) return 13;
    if (id == SW_BT_EXTENDED && len >= 2) return 6;
    return 5;
}

int sw_bt_wire_feed(struct sw_bt_wire *w, const uint8_t *p, size_t n, sw_bt_wire_cb cb, void *ud)
{
    if (w->closed) return w->closed;
    w->unread = 0;
    for (;;) {
        if (!w->got_handshake) {
            if (n == 0) return 0;
            /* BEP 3: <19>"BitTorrent protocol"<8 reserved><20 info_hash><20 peer_id> */
            size_t need = SW_BT_HANDSHAKE_LEN - w->partial.len, take = SW_MIN(need, n);
            if (sw_buf_append(&w->partial, p, take)) return wfail(w, SW_ENOMEM, "out of memory%.0u%.0u", 0, 0);
            p += take;
            n -= take;
            const uint8_t *h = w->partial.data;
            if (w->partial.len >= 1 && h[0] != 19) return wfail(w, SW_ECORRUPT, "handshake: protocol string length %u%.0u", h[0], 0);
            size_t cmp = SW_MIN(w->partial.len, (size_t)20);
            if (cmp > 1 && memcmp(h + 1, pstr, cmp - 1)) return wfail(w, SW_ECORRUPT, "handshake: not the BitTorrent protocol%.0u%.0u", 0, 0);
            if (w->partial.len < SW_BT_HANDSHAKE_LEN) return 0;
            w->got_handshake = 1;
            struct sw_bt_wire_ev ev = { .type = SW_BT_WEV_HANDSHAKE, .reserved = h + 20, .info_hash = h + 28, .peer_id = h + 48 };
            cb(ud, &ev);
            w->partial.len = 0;
            continue;
        }
        if (w->in_piece) {
            if (n == 0) return 0;
            /* Stream the block: hand out what we have without buffering it. */
            uint32_t left = w->piece_len - w->piece_got;
            uint32_t take = (uint32_t)SW_MIN((size_t)left, n);
            struct sw_bt_wire_ev ev = {
                .type = SW_BT_WEV_PIECE_DATA, .id = SW_BT_PIECE, .index = w->piece_index,
                .block_begin = w->piece_begin, .block_len = w->piece_len,
                .frag_begin = w->piece_begin + w->piece_got, .frag_len = take, .frag = p,
                .last = take == left,
            };
            w->piece_got += take;
            p += take;
            n -= take;
            if (ev.last) w->in_piece = 0;
            cb(ud, &ev);
            continue;
        }
        /* Collect the message header: 4-byte length, id, and for PIECE index+begin (13),
         * for EXTENDED the ext id (6), so the cap can be chosen before buffering. */
        if (w->hdr_got < hdr_want(w)) {
            if (n == 0) return 0;
            w->piece_hdr[w->hdr_got++] = *p++;
            n--;
            if (w->hdr_got == 4 && sw_get_be32(w->piece_hdr) == 0) { /* BEP 3: keep-alive */
                w->hdr_got = 0;
                struct sw_bt_wire_ev ev = { .type = SW_BT_WEV_KEEPALIVE };
                cb(ud, &ev);
                continue;
            }
            if (w->hdr_got == 5 && w->piece_hdr[4] == SW_BT_PIECE && sw_get_be32(w->piece_hdr) < 10)
                return wfail(w, SW_ECORRUPT, "piece message of %u bytes%.0u", sw_get_be32(w->piece_hdr), 0);
            if (w->hdr_got < hdr_want(w)) continue;
        }
        uint32_t len = sw_get_be32(w->piece_hdr);
        uint8_t id = w->piece_hdr[4];
        if (id == SW_BT_PIECE) {
            if (len < 9 + 1) return wfail(w, SW_ECORRUPT, "piece message of %u bytes%.0u", len, 0);
            if (len - 9 > w->lim.max_block) return wfail(w, SW_ETOOBIG, "piece block of %u bytes (cap %u)", len - 9, w->lim.max_block);
            w->in_piece = 1;
            w->piece_index = sw_get_be32(w->piece_hdr + 5);
            w->piece_begin = sw_get_be32(w->piece_hdr + 9);
            w->piece_len = len - 9;
            w->piece_got = 0;
            w->hdr_got = 0;
            continue;
        }
        /* Every cap is checked on the length prefix, before a byte of the body is buffered. */
        uint32_t cap = w->lim.max_msg;
        int64_t fixed = fixed_body(id);
        if (fixed >= 0 && (int64_t)len - 1 != fixed)
            return wfail(w, SW_ECORRUPT, "message id %u of %u payload bytes (expected %u)", id, len - 1, (uint32_t)fixed);
        if (id == SW_BT_BITFIELD && len - 1 > w->lim.max_bitfield)
            return wfail(w, SW_ETOOBIG, "bitfield of %u bytes exceeds ceil(pieces/8) = %u", len - 1, w->lim.max_bitfield);
        if (id == SW_BT_EXTENDED) {
            uint8_t eid = len >= 2 ? w->piece_hdr[5] : 0;
            int big = w->got_ext_hs && ((w->big_ext[eid >> 3] >> (eid & 7)) & 1);
            if (!w->got_ext_hs)
                cap = w->lim.max_ext_pre;
            else
                cap = big ? w->lim.max_ext_big : w->lim.max_ext;
            if (big && len - 1 > w->lim.max_ext && w->hooks && w->hooks->ext_cap)
                cap = SW_MIN(cap, SW_MAX(w->lim.max_ext, w->hooks->ext_cap(ud, eid, len - 1)));
            if (len - 1 > cap)
                return wfail(w, SW_ETOOBIG, "extended message (ext id %u) of %u bytes exceeds its cap of %u bytes%s", eid, len - 1, cap,
                             !w->got_ext_hs ? " before the extension handshake"
                             : big && cap < w->lim.max_ext_big ? " for what this peer may send now" : "");
        }
        if (len - 1 > cap) return wfail(w, SW_ETOOBIG, "message id %u of %u bytes exceeds its cap of %u bytes", id, len - 1, cap);
        /* Body = bytes after the id (for EXTENDED the ext id byte is already in the header). */
        uint32_t body_len = len - 1;
        uint32_t in_hdr = w->hdr_got - 5; /* 0 or 1 (ext id) */
        if (w->partial.len == 0 && in_hdr == 0 && n >= body_len) {
            int rc = dispatch(w, id, p, body_len, cb, ud); /* whole message in the input: no copy */
            p += body_len;
            n -= body_len;
            w->hdr_got = 0;
            if (rc) return rc;
            continue;
        }
        if (w->partial.len == 0 && body_len > w->lim.reserve_above && !w->reserved && w->hooks && w->hooks->reserve) {
            /* It will be buffered: room first, from the owner's budget (or wait for it). */
            int rc = w->hooks->reserve(ud, body_len);
            if (rc == SW_EAGAIN) {
                w->unread = n;
                return SW_EAGAIN;
            }
            if (rc)
                return wfail(w, SW_ETOOBIG, "message id %u of %u bytes exceeds the node's message buffer budget%.0u", id, body_len, 0);
            w->reserved = body_len;
        }
        if (w->partial.len == 0 && in_hdr) {
            if (sw_buf_reserve(&w->partial, body_len)) return wfail(w, SW_ENOMEM, "out of memory%.0u%.0u", 0, 0);
            sw_buf_append(&w->partial, w->piece_hdr + 5, in_hdr);
        }
        size_t take = SW_MIN((size_t)(body_len - w->partial.len), n);
        if (sw_buf_append(&w->partial, p, take)) return wfail(w, SW_ENOMEM, "out of memory%.0u%.0u", 0, 0);
        p += take;
        n -= take;
        if (w->partial.len == body_len) {
            int rc = dispatch(w, id, w->partial.data, body_len, cb, ud);
            w->partial.len = 0;
            if (w->partial.cap > (1u << 20)) sw_buf_free(&w->partial); /* don't keep a big buffer */
            w->hdr_got = 0;
            if (w->reserved) {
                uint32_t r = w->reserved;
                w->reserved = 0;
                if (w->hooks->release) w->hooks->release(ud, r);
            }
            if (rc) return rc;
        }
        if (n == 0) return 0;
    }
}

/* ------------------------------------------------------------------ encoders */

void sw_bt_wire_put_handshake(struct sw_buf *out, const uint8_t info_hash[20], const uint8_t peer_id[20],
                              int ext, int fast)
{
    uint8_t h[SW_BT_HANDSHAKE_LEN] = { 19 };
    memcpy(h + 1, pstr, 19);
    if (ext) h[20 + 5] |= 0x10;  /* BEP 10: reserved bit 20 from the right */
    if (fast) h[20 + 7] |= 0x04; /* BEP 6: reserved bit 62 */
    memcpy(h + 28, info_hash, 20);
    memcpy(h + 48, peer_id, 20);
    sw_buf_append(out, h, sizeof h);
}

void sw_bt_wire_put_keepalive(struct sw_buf *out)
{
    uint8_t z[4] = { 0 };
    sw_buf_append(out, z, 4);
}

void sw_bt_wire_put_simple(struct sw_buf *out, uint8_t id)
{
    uint8_t m[5];
    sw_put_be32(m, 1);
    m[4] = id;
    sw_buf_append(out, m, 5);
}

void sw_bt_wire_put_u32(struct sw_buf *out, uint8_t id, uint32_t v)
{
    uint8_t m[9];
    sw_put_be32(m, 5);
    m[4] = id;
    sw_put_be32(m + 5, v);
    sw_buf_append(out, m, 9);
}

void sw_bt_wire_put_bitfield(struct sw_buf *out, const uint8_t *bits, uint32_t n_pieces)
{
    uint32_t nb = (n_pieces + 7) / 8;
    uint8_t m[5];
    sw_put_be32(m, nb + 1);
    m[4] = SW_BT_BITFIELD;
    sw_buf_append(out, m, 5);
    sw_buf_append(out, bits, nb); /* BEP 3: spare bits at the end are zero */
}

void sw_bt_wire_put_req(struct sw_buf *out, uint8_t id, uint32_t index, uint32_t begin, uint32_t len)
{
    uint8_t m[17];
    sw_put_be32(m, 13);
    m[4] = id;
    sw_put_be32(m + 5, index);
    sw_put_be32(m + 9, begin);
    sw_put_be32(m + 13, len);
    sw_buf_append(out, m, 17);
}

void sw_bt_wire_piece_header(uint8_t hdr[13], uint32_t index, uint32_t begin, uint32_t len)
{
    sw_put_be32(hdr, len + 9);
    hdr[4] = SW_BT_PIECE;
    sw_put_be32(hdr + 5, index);
    sw_put_be32(hdr + 9, begin);
}

void sw_bt_wire_ext_header(uint8_t hdr[6], uint8_t ext_id, size_t payload_len)
{
    sw_put_be32(hdr, (uint32_t)(payload_len + 2));
    hdr[4] = SW_BT_EXTENDED;
    hdr[5] = ext_id;
}

void sw_bt_wire_put_extended(struct sw_buf *out, uint8_t ext_id, const void *payload, size_t len)
{
    uint8_t h[6];
    sw_bt_wire_ext_header(h, ext_id, len);
    sw_buf_append(out, h, 6);
    sw_buf_append(out, payload, len);
}

uint32_t sw_bt_allowed_fast_set(const uint8_t info_hash[20], uint32_t ipv4_be, uint32_t n_pieces, uint32_t k,
                                uint32_t *out)
{
    /* BEP 6: x = (ip & 0xffffff00) ++ infohash; repeatedly x = SHA1(x), taking the five
     * 32-bit words mod n_pieces until k distinct indices are chosen. */
    if (n_pieces == 0) return 0;
    if (k > n_pieces) k = n_pieces;
    uint8_t x[24];
    uint32_t ip = ipv4_be & 0xffffff00u;
    sw_put_be32(x, ip);
    memcpy(x + 4, info_hash, 20);
    uint8_t h[20];
    sw_sha1(x, 24, h);
    uint32_t n = 0;
    for (int rounds = 0; n < k && rounds < 10000; rounds++) {
        for (int i = 0; i < 5 && n < k; i++) {
            uint32_t idx = sw_get_be32(h + 4 * i) % n_pieces, dup = 0;
            for (uint32_t j = 0; j < n; j++) dup |= out[j] == idx;
            if (!dup) out[n++] = idx;
        }
        sw_sha1(h, 20, h);
    }
    return n;
}
