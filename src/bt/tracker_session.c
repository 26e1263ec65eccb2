/* tracker_session.c — struct sw_bt_netglue: gives a session (bt.h) its HTTP side: the web
 * seed ops (webseed_session.c) and, per torrent, an announcer that keeps the torrent's HTTP
 * trackers informed (BEP 3 events started/completed/stopped, re-announce at "interval",
 * never sooner than "min interval") and feeds their peers to the session.
 * Not for: the tracker protocol itself (tracker.c). */
#include <stdlib.h>
#include <string.h>

#include "bt/bt.h"
#include "bt/bt_net.h"

#define ANN_TICK_MS 1000
#define ANN_RETRY_MIN_S 15     /* first retry after a failed announce */
#define ANN_RETRY_MAX_S 1800
#define ANN_LEECH_MIN_S 30     /* re-announce at least this far apart while we have no peers */
#define CLOSE_GRACE_MS 2000    /* how long event=stopped may take at shutdown */

struct announcer {
    struct sw_bt_netglue *g;
    struct sw_bt_torrent *t;
    struct sw_bt_tracker *tracker;
    uv_timer_t timer;
    uint64_t next_ms;          /* next regular announce (monotonic ms) */
    uint32_t interval_s, min_interval_s;
    unsigned n_fail;
    int announced;             /* a tracker answered at least once (then "stopped" is due) */
    int sent_started;
    int was_complete;
    int stopping;              /* event=stopped in flight */
    uint64_t start_done;       /* bytes_done when we started: downloaded = done - start_done */
    double uploaded;           /* integrated from upload_bps (bt.h has no byte counter) */
    struct announcer *next;
};

struct sw_bt_netglue {
    uv_loop_t *loop;
    struct sw_bt_session *s;
    struct sw_bt_net *net;
    struct sw_bt_ws_glue *ws;
    struct announcer *anns;
    int closing;
    unsigned stops_pending;
    unsigned handles_open;     /* timers whose close callback has not run */
    uv_timer_t grace;
};

static void glue_maybe_release(struct sw_bt_netglue *g)
{
    if (g->closing == 2 && g->handles_open == 0) free(g);
}

static void ann_closed(uv_handle_t *h)
{
    struct announcer *a = h->data;
    struct sw_bt_netglue *g = a->g;
    free(a);
    g->handles_open--;
    glue_maybe_release(g);
}

static void grace_closed(uv_handle_t *h)
{
    struct sw_bt_netglue *g = h->data;
    g->handles_open--;
    glue_maybe_release(g);
}

/* Frees trackers, web seeds and the HTTP context; timers close asynchronously. */
static void glue_finish(struct sw_bt_netglue *g)
{
    if (g->closing == 2) return;
    g->closing = 2;
    uv_timer_stop(&g->grace);
    uv_close((uv_handle_t *)&g->grace, grace_closed);
    while (g->anns) {
        struct announcer *a = g->anns;
        g->anns = a->next;
        sw__bt_tracker_free(a->tracker);
        a->tracker = NULL;
        uv_timer_stop(&a->timer);
        uv_close((uv_handle_t *)&a->timer, ann_closed);
    }
    sw__bt_ws_glue_free(g->ws);
    g->ws = NULL;
    sw__bt_net_free(g->net);
    g->net = NULL;
    glue_maybe_release(g);
}

static void fill_announce(struct announcer *a, struct sw_bt_announce *req, enum sw_bt_tracker_event ev)
{
    struct sw_bt_netglue *g = a->g;
    memset(req, 0, sizeof *req);
    memcpy(req->info_hash, sw_bt_torrent_info_hash(a->t), 20);
    memcpy(req->peer_id, sw_bt_session_peer_id(g->s), 20);
    req->port = sw_bt_session_port(g->s);
    struct sw_bt_progress p = {0};
    if (sw_bt_torrent_progress(a->t, -1, &p) == 0) {
        req->left = p.bytes_total > p.bytes_done ? p.bytes_total - p.bytes_done : 0;
        req->downloaded = p.bytes_done > a->start_done ? p.bytes_done - a->start_done : 0;
    }
    req->uploaded = (uint64_t)a->uploaded;
    req->event = ev;
    req->numwant = 50;
}

static void on_announced(void *ud, const struct sw_bt_announce_result *r);

static void announce_now(struct announcer *a, enum sw_bt_tracker_event ev)
{
    struct sw_bt_announce req;
    fill_announce(a, &req, ev);
    int rc = sw__bt_tracker_announce(a->tracker, &req, on_announced, a);
    if (rc != 0) {
        sw_log(SW_LOG_WARN, "BT", "tracker announce for %s cannot start: %s",
               sw_bt_torrent_metainfo(a->t) ? sw_bt_torrent_metainfo(a->t)->name : "?", sw_strerror(rc));
        a->next_ms = sw_time_ms() + (uint64_t)ANN_RETRY_MAX_S * 1000;
    }
}

static void on_announced(void *ud, const struct sw_bt_announce_result *r)
{
    struct announcer *a = ud;
    struct sw_bt_netglue *g = a->g;
    if (g->closing) {
        /* The answer to event=stopped (anything else still in flight is ignored). */
        if (a->stopping && g->stops_pending && --g->stops_pending == 0) glue_finish(g);
        a->stopping = 0;
        return;
    }
    uint64_t now = sw_time_ms();
    if (r->err == 0) {
        a->announced = 1;
        a->sent_started = 1;
        a->n_fail = 0;
        a->interval_s = r->interval_s ? r->interval_s : 1800;
        a->min_interval_s = r->min_interval_s;
        size_t added = 0;
        for (size_t i = 0; i < r->n_peers; i++) {
            struct sockaddr_storage ss;
            sw__bt_net_peer_sockaddr(&r->peers[i], &ss);
            if (sw_bt_torrent_add_peer_addr(a->t, &ss) == 0) added++;
        }
        sw_log(SW_LOG_INFO, "BT", "tracker %s: %zu peers (%zu new), next announce in %us", r->url, r->n_peers,
               added, a->interval_s);
        uint32_t wait = a->interval_s;
        /* Still looking for peers: ask again sooner, but never before "min interval". */
        if (!sw_bt_torrent_complete(a->t) && sw_bt_torrent_n_peers(a->t) == 0)
            wait = SW_MAX(SW_MIN(wait, (uint32_t)ANN_LEECH_MIN_S), a->min_interval_s);
        a->next_ms = now + (uint64_t)wait * 1000;
    } else {
        a->n_fail++;
        uint64_t wait = ANN_RETRY_MIN_S;
        for (unsigned i = 1; i < a->n_fail && wait < ANN_RETRY_MAX_S; i++) wait *= 2;
        wait = SW_MIN(wait, (uint64_t)ANN_RETRY_MAX_S);
        sw_log(SW_LOG_WARN, "BT", "tracker announce failed: %s%s%s; retrying in %llus", r->message,
               r->url && r->url[0] ? " from " : "", r->url ? r->url : "", (unsigned long long)wait);
        a->next_ms = now + wait * 1000;
    }
}

static void on_tick(uv_timer_t *h)
{
    struct announcer *a = h->data;
    if (a->g->closing || !a->tracker) return;
    struct sw_bt_progress p = {0};
    if (sw_bt_torrent_progress(a->t, -1, &p) == 0) a->uploaded += p.upload_bps * (ANN_TICK_MS / 1000.0);
    if (sw__bt_tracker_busy(a->tracker)) return;
    int complete = sw_bt_torrent_complete(a->t);
    if (complete && !a->was_complete && a->sent_started) {
        /* BEP 3: "completed" is sent when the download completes (not when we start complete). */
        a->was_complete = 1;
        announce_now(a, SW_BT_EVENT_COMPLETED);
        return;
    }
    a->was_complete = a->was_complete || complete;
    if (sw_time_ms() >= a->next_ms) announce_now(a, a->sent_started ? SW_BT_EVENT_NONE : SW_BT_EVENT_STARTED);
}

struct sw_bt_netglue *sw__bt_netglue_new(uv_loop_t *loop, struct sw_bt_session *s)
{
    if (!loop || !s) return NULL;
    struct sw_bt_netglue *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->loop = loop;
    g->s = s;
    g->net = sw__bt_net_new(loop, NULL);
    if (!g->net) {
        free(g);
        return NULL;
    }
    g->ws = sw__bt_ws_glue_new(g->net, s);
    if (!g->ws) sw_log(SW_LOG_WARN, "BT", "web seeds unavailable: the session refused the fetcher");
    uv_timer_init(loop, &g->grace);
    g->grace.data = g;
    g->handles_open = 1;
    return g;
}

struct sw_bt_net *sw__bt_netglue_net(struct sw_bt_netglue *g) { return g ? g->net : NULL; }

int sw__bt_netglue_add_torrent(struct sw_bt_netglue *g, struct sw_bt_torrent *t,
                               const char *const *extra_trackers, uint32_t n_extra)
{
    if (!g || !t || g->closing) return SW_EINVAL;
    for (struct announcer *a = g->anns; a; a = a->next)
        if (a->t == t) return 0;
    const struct sw_bt_metainfo *mi = sw_bt_torrent_metainfo(t);
    struct sw_bt_tracker *tr = sw__bt_tracker_new(g->net, NULL);
    if (!tr) return SW_ENOMEM;
    /* metainfo flattens announce + announce-list in tier order: one URL per tier keeps the
     * BEP 12 order (try each in turn). */
    unsigned tier = 0;
    for (uint32_t i = 0; mi && i < mi->n_trackers; i++)
        if (sw__bt_tracker_add(tr, tier, mi->trackers[i]) == 0) tier++;
    for (uint32_t i = 0; i < n_extra; i++)
        if (extra_trackers[i] && sw__bt_tracker_add(tr, tier, extra_trackers[i]) == 0) tier++;
    if (sw__bt_tracker_count(tr) == 0) {
        sw__bt_tracker_free(tr);
        return 0;
    }
    struct announcer *a = calloc(1, sizeof *a);
    if (!a) {
        sw__bt_tracker_free(tr);
        return SW_ENOMEM;
    }
    a->g = g;
    a->t = t;
    a->tracker = tr;
    a->was_complete = sw_bt_torrent_complete(t);
    struct sw_bt_progress p = {0};
    if (sw_bt_torrent_progress(t, -1, &p) == 0) a->start_done = p.bytes_done;
    uv_timer_init(g->loop, &a->timer);
    a->timer.data = a;
    g->handles_open++;
    a->next = g->anns;
    g->anns = a;
    announce_now(a, SW_BT_EVENT_STARTED);
    uv_timer_start(&a->timer, on_tick, ANN_TICK_MS, ANN_TICK_MS);
    return 0;
}

static void on_grace(uv_timer_t *h) { glue_finish(h->data); }

void sw__bt_netglue_close(struct sw_bt_netglue *g)
{
    if (!g || g->closing) return;
    g->closing = 1;
    /* BEP 3: event=stopped when shutting down gracefully, to trackers that know us. */
    for (struct announcer *a = g->anns; a; a = a->next) {
        uv_timer_stop(&a->timer);
        if (!a->announced) continue;
        struct sw_bt_announce req;
        fill_announce(a, &req, SW_BT_EVENT_STOPPED);
        if (sw__bt_tracker_announce(a->tracker, &req, on_announced, a) == 0) {
            a->stopping = 1;
            g->stops_pending++;
        }
    }
    if (g->stops_pending == 0) {
        glue_finish(g);
        return;
    }
    uv_timer_start(&g->grace, on_grace, CLOSE_GRACE_MS, 0);
}
