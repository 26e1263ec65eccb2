/* peer_budget.c — what a node spends on incoming messages, bounded per node and not only
 * per connection. Every message is capped on its length prefix by what the protocol allows
 * at that point (wire.c; for our own extension the owner's msg_cap: the peer's protocol
 * state). On top of that, a message over SW_BT_SMALL_MSG that must be buffered (it
 * straddles reads) takes its announced length from one session-wide budget before a byte
 * of its body is kept. Without room the connection is not read any further (backpressure:
 * TCP holds the sender) and is fed again, first come first served, as room is freed; after
 * SW_BT_BUDGET_WAIT_MS it is closed. A message holding room must keep coming (a drip would
 * hold it for nothing). docs/bt.md "Message buffers", docs/security.md.
 * Not for: the per-message caps themselves (wire.c), reading (peer_io.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bt_session_int.h"

static void kick(struct sw_bt_session *s);

/* ------------------------------------------------------------------ the wire's hooks */

static uint32_t hook_ext_cap(void *ud, uint8_t ext_id, uint32_t body_len)
{
    struct sw_bt_peer *p = ud;
    struct sw_bt_session *s = p->s;
    if (ext_id != EXT_CUSTOM || !s->has_ext || !s->ext.msg_cap) return UINT32_MAX;
    size_t cap = s->ext.msg_cap(s->ext.ud, p, body_len);
    return (uint32_t)SW_MIN(cap, (size_t)UINT32_MAX);
}

static int hook_reserve(void *ud, uint32_t len)
{
    struct sw_bt_peer *p = ud;
    struct sw_bt_session *s = p->s;
    if (len > s->o.msg_budget) return SW_ETOOBIG;
    /* First come, first served: while a connection waits, newcomers queue behind it. */
    if ((s->n_waiting && s->resuming != p) || s->budget_used + len > s->o.msg_budget) return SW_EAGAIN;
    s->budget_used += len;
    if (s->budget_used > s->budget_peak) s->budget_peak = s->budget_used;
    p->budget_held += len;
    p->budget_ms = sw_time_ms();
    return 0;
}

static void give_back(struct sw_bt_peer *p, uint32_t len)
{
    struct sw_bt_session *s = p->s;
    uint32_t r = SW_MIN(len, p->budget_held);
    p->budget_held -= r;
    s->budget_used -= SW_MIN((uint64_t)r, s->budget_used);
    if (r && s->n_waiting) kick(s);
}

static void hook_release(void *ud, uint32_t len)
{
    give_back(ud, len);
}

void sw__budget_peer_init(struct sw_bt_peer *p)
{
    p->wire.hooks = &p->s->hooks;
    p->wire.lim.reserve_above = SW_BT_SMALL_MSG;
}

/* ------------------------------------------------------------------ waiting and resuming */

void sw__budget_wait(struct sw_bt_peer *p, const uint8_t *rest, size_t len)
{
    struct sw_bt_session *s = p->s;
    p->held.len = 0;
    if (len && sw_buf_append(&p->held, rest, len)) { sw__peer_close(p, SW_ENOMEM, "out of memory"); return; }
    uv_read_stop((uv_stream_t *)&p->tcp);
    if (!p->waiting) {
        p->waiting = 1;
        p->wait_ms = sw_time_ms();
        s->n_waiting++;
        s->budget_waits++;
        uint32_t want = sw_get_be32(p->wire.piece_hdr) - 1;
        LOGD("not reading %s for now: its next message (%u bytes) waits for room in the message buffer budget "
             "(%llu of %llu bytes in use)", p->addr_str, want, (unsigned long long)s->budget_used,
             (unsigned long long)s->o.msg_budget);
    }
    if (!s->budget_used) kick(s); /* nothing will be released: try again on the next turn */
}

static void unwait(struct sw_bt_peer *p)
{
    if (!p->waiting) return;
    p->waiting = 0;
    p->s->n_waiting--;
    sw_buf_free(&p->held);
}

void sw__budget_peer_closed(struct sw_bt_peer *p)
{
    int was_waiting = p->waiting;
    unwait(p);
    if (p->budget_held) give_back(p, p->budget_held);
    else if (was_waiting && p->s->n_waiting) kick(p->s); /* those queued behind it may fit now */
}

static struct sw_bt_peer *oldest_waiting(struct sw_bt_session *s)
{
    struct sw_bt_peer *best = NULL;
    for (struct sw_bt_peer *q = s->peers; q; q = q->next)
        if (q->waiting && q->state != P_CLOSING && (!best || q->wait_ms < best->wait_ms)) best = q;
    return best;
}

/* Feeds the waiting connections again, oldest first, while there is room. */
static void on_kick(uv_timer_t *t)
{
    struct sw_bt_session *s = t->data;
    s->budget_kick = 0;
    for (int guard = 0; guard < 1024 && s->n_waiting && !s->closing; guard++) {
        struct sw_bt_peer *p = oldest_waiting(s);
        if (!p) break;
        uint32_t want = sw_get_be32(p->wire.piece_hdr) - 1;
        if (s->budget_used && s->budget_used + want > s->o.msg_budget) break; /* still no room */
        /* The held bytes are fed again (none: the feed only reserves); s->resuming lets it
         * past the queue. */
        struct sw_buf held = p->held;
        memset(&p->held, 0, sizeof p->held);
        s->resuming = p;
        int rc = sw_bt_wire_feed(&p->wire, held.data ? held.data : (const uint8_t *)"", held.len, sw__on_wire_event, p);
        s->resuming = NULL;
        if (rc == SW_EAGAIN && p->state != P_CLOSING) {
            /* no room after all (what the peer may send changed): keep waiting, in place */
            if (p->wire.unread) sw_buf_append(&p->held, held.data + held.len - p->wire.unread, p->wire.unread);
            if (p->wire.unread < held.len) p->wait_ms = sw_time_ms(); /* a later message waits now */
            sw_buf_free(&held);
            break;
        }
        unwait(p);
        if (p->state != P_CLOSING) {
            sw__peer_fed(p, rc, NULL, 0);
            if (p->state != P_CLOSING && !p->waiting) sw__peer_read_start(p);
        }
        sw_buf_free(&held);
    }
}

static void kick(struct sw_bt_session *s)
{
    if (s->budget_kick || s->closing) return;
    s->budget_kick = 1;
    uv_timer_start(&s->budget_timer, on_kick, 0, 0);
}

/* ------------------------------------------------------------------ deadlines */

void sw__budget_tick(struct sw_bt_session *s, uint64_t now)
{
    for (struct sw_bt_peer *p = s->peers, *nx; p; p = nx) {
        nx = p->next;
        if (p->state == P_CLOSING) continue;
        char why[200];
        if (p->waiting && now - p->wait_ms > SW_BT_BUDGET_WAIT_MS) {
            snprintf(why, sizeof why,
                     "message id %u of %u bytes waited %u s for room in the node's message buffer budget (%llu MiB, all in use)",
                     p->wire.piece_hdr[4], sw_get_be32(p->wire.piece_hdr) - 1, SW_BT_BUDGET_WAIT_MS / 1000,
                     (unsigned long long)(s->o.msg_budget >> 20));
            LOGW("closing %s: %s", p->addr_str, why);
            s->budget_closed_wait++;
            sw__peer_close(p, SW_ETIMEDOUT, why);
            continue;
        }
        if (p->budget_held && now - p->budget_ms > SW_BT_BIG_GRACE_MS) {
            uint64_t got = p->wire.partial.len, dt = now - p->budget_ms;
            if (got < (dt - SW_BT_BIG_GRACE_MS) * SW_BT_BIG_MIN_BPS / 1000) {
                snprintf(why, sizeof why,
                         "message id %u of %u bytes: only %llu bytes of it in %.0f s (a message holding buffer room must "
                         "come at %u KiB/s on average after %u s)",
                         p->wire.piece_hdr[4], p->budget_held, (unsigned long long)got, (double)dt / 1000.0,
                         SW_BT_BIG_MIN_BPS >> 10, SW_BT_BIG_GRACE_MS / 1000);
                LOGW("closing %s: %s", p->addr_str, why);
                s->budget_closed_slow++;
                sw__peer_close(p, SW_ETIMEDOUT, why);
            }
        }
    }
}

/* ------------------------------------------------------------------ session */

void sw__budget_init(struct sw_bt_session *s)
{
    if (!s->o.msg_budget) s->o.msg_budget = SW_BT_MSG_BUDGET;
    s->hooks.ext_cap = hook_ext_cap;
    s->hooks.reserve = hook_reserve;
    s->hooks.release = hook_release;
    uv_timer_init(s->loop, &s->budget_timer);
    s->budget_timer.data = s;
    s->handles++;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct sw_bt_session *s = h->data;
    s->handles--;
}

void sw__budget_close(struct sw_bt_session *s)
{
    uv_timer_stop(&s->budget_timer);
    uv_close((uv_handle_t *)&s->budget_timer, on_timer_closed);
}

void sw_bt_session_budget(const struct sw_bt_session *s, struct sw_bt_budget_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!s) return;
    out->budget = s->o.msg_budget;
    out->used = s->budget_used;
    out->peak = s->budget_peak;
    out->waiting = s->n_waiting;
    out->waits = s->budget_waits;
    out->closed_wait = s->budget_closed_wait;
    out->closed_slow = s->budget_closed_slow;
}
