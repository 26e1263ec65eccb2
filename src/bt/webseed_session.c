/* webseed_session.c — plugs the BEP 19 web seed fetcher (webseed.c) into a session (bt.h):
 * implements struct sw_bt_webseed_ops, keeps one fetcher per (torrent, URL), and hands
 * each piece back with sw_bt_webseed_done, where the core verifies and writes it.
 * Not for: choosing pieces (the core's picker does) or hashing. */
#include <stdlib.h>
#include <string.h>

#include "bt/bt.h"
#include "bt/bt_net.h"

struct ws_entry {
    struct sw_bt_ws_glue *g;
    struct sw_bt_torrent *t;
    char *url;
    struct sw_bt_webseed *ws;
    struct sw_bt_ws_file *files;
    /* Pieces the session asked for while the web seed was backed off or full: accepted
     * (the session counts them in flight) and started when it can take them. */
    uint32_t *queue;
    uint32_t n_queue, cap_queue;
    struct ws_entry *next;
};

struct sw_bt_ws_glue {
    struct sw_bt_net *net;
    struct sw_bt_session *s;
    struct ws_entry *entries;
    uv_timer_t timer;        /* retries queued pieces when a back-off ends */
};

static void drain(struct ws_entry *e);
static void on_timer(uv_timer_t *h);

/* BEP 19 builds URLs differently for single- and multi-file torrents; the metainfo struct
 * lists files either way, so look at the raw info dict for "files" (BEP 3). */
static int info_is_multi_file(const struct sw_bt_metainfo *mi)
{
    struct sw_bdoc doc = {0};
    char err[64];
    struct sw_blimits lim = {.max_nodes = 8 * SW_BT_MAX_FILES + 1024, .max_depth = 16};
    if (!mi->info_raw || sw_bdecode(mi->info_raw, mi->info_len, &lim, &doc, NULL, err, sizeof err) != 0)
        return mi->n_files > 1;
    int multi = sw_bdict_get_type(&doc, &doc.nodes[0], "files", SW_BLIST) != NULL;
    sw_bdoc_free(&doc);
    return multi;
}

static void on_piece(void *ud, struct sw_bt_webseed *ws, uint32_t piece, int err, uint8_t *data,
                     uint32_t piece_len)
{
    struct ws_entry *e = ud;
    /* data (unverified) is borrowed by the core for the call: it verifies, then writes. */
    sw_bt_webseed_done(e->t, e->url, piece, data, err ? 0 : piece_len, err);
    free(data);
    drain(e);
}

/* Starts queued pieces while the web seed takes them; arms the timer for a back-off. */
static void drain(struct ws_entry *e)
{
    while (e->n_queue && sw__bt_webseed_can_fetch(e->ws)) {
        uint32_t piece = e->queue[0];
        memmove(e->queue, e->queue + 1, (e->n_queue - 1) * sizeof *e->queue);
        e->n_queue--;
        int rc = sw__bt_webseed_fetch(e->ws, piece);
        if (rc != 0 && rc != SW_EEXIST) {
            sw_bt_webseed_done(e->t, e->url, piece, NULL, 0, rc); /* may not free e */
            return;
        }
    }
    uint64_t wait = sw__bt_webseed_backoff_ms(e->ws);
    if (e->n_queue && wait) {
        uv_timer_t *tm = &e->g->timer;
        if (!uv_is_active((uv_handle_t *)tm) || uv_timer_get_due_in(tm) > wait + 1)
            uv_timer_start(tm, on_timer, wait + 1, 0);
    }
}

static void on_timer(uv_timer_t *h)
{
    struct sw_bt_ws_glue *g = h->data;
    for (struct ws_entry *e = g->entries; e; e = e->next) drain(e);
}

static struct ws_entry *entry_get(struct sw_bt_ws_glue *g, struct sw_bt_torrent *t, const char *url)
{
    for (struct ws_entry *e = g->entries; e; e = e->next)
        if (e->t == t && !strcmp(e->url, url)) return e;
    const struct sw_bt_metainfo *mi = sw_bt_torrent_metainfo(t);
    if (!mi || !mi->n_files) return NULL;
    struct ws_entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->g = g;
    e->t = t;
    e->url = strdup(url);
    e->files = calloc(mi->n_files, sizeof *e->files);
    if (!e->url || !e->files) goto fail;
    for (uint32_t i = 0; i < mi->n_files; i++) {
        e->files[i].path = mi->files[i].path; /* borrowed here, copied by webseed_new */
        e->files[i].length = mi->files[i].length;
        e->files[i].pad = mi->files[i].pad;
    }
    struct sw_bt_ws_layout l = {
        .name = mi->name, .multi_file = info_is_multi_file(mi), .piece_length = mi->piece_length,
        .n_pieces = mi->n_pieces, .files = e->files, .n_files = mi->n_files,
    };
    /* The session limits pieces per URL itself (ops.max_in_flight); allow as many here. */
    struct sw_bt_webseed_config cfg = {.max_in_flight = 64};
    e->ws = sw__bt_webseed_new(g->net, url, &l, &cfg, on_piece, e);
    free(e->files);
    e->files = NULL;
    if (!e->ws) goto fail;
    e->next = g->entries;
    g->entries = e;
    sw_log(SW_LOG_INFO, "BT", "web seed %s for %s", url, mi->name);
    return e;
fail:
    free(e->files);
    free(e->url);
    free(e);
    return NULL;
}

/* sw_bt_webseed_ops.fetch: 0 when started (one sw_bt_webseed_done follows), < 0 when not. */
static int ops_fetch(void *ud, struct sw_bt_torrent *t, const char *url, uint32_t piece)
{
    struct sw_bt_ws_glue *g = ud;
    struct ws_entry *e = entry_get(g, t, url);
    if (!e) return SW_EUNSUPPORTED;
    if (sw__bt_webseed_banned(e->ws)) return SW_EPERM;
    if (e->n_queue == 0 && sw__bt_webseed_can_fetch(e->ws)) return sw__bt_webseed_fetch(e->ws, piece);
    /* Backed off or full: queue it rather than report a failure for a transient state. */
    for (uint32_t i = 0; i < e->n_queue; i++)
        if (e->queue[i] == piece) return SW_EEXIST;
    if (e->n_queue == e->cap_queue) {
        uint32_t cap = e->cap_queue ? e->cap_queue * 2 : 8;
        if (cap > 4096) return SW_EBUSY;
        uint32_t *q = realloc(e->queue, cap * sizeof *q);
        if (!q) return SW_ENOMEM;
        e->queue = q;
        e->cap_queue = cap;
    }
    e->queue[e->n_queue++] = piece;
    drain(e);
    return 0;
}

/* sw_bt_webseed_ops.banned: the core saw too many pieces from url fail SHA-1. */
static void ops_banned(void *ud, struct sw_bt_torrent *t, const char *url)
{
    struct sw_bt_ws_glue *g = ud;
    for (struct ws_entry *e = g->entries; e; e = e->next)
        if (e->t == t && !strcmp(e->url, url)) {
            sw__bt_webseed_ban(e->ws);
            /* Queued pieces will never start: hand them back so the session re-picks them
             * (sw_bt_webseed_done only resets the picker here; it fetches nothing). */
            uint32_t n = e->n_queue, *q = e->queue;
            e->queue = NULL;
            e->n_queue = e->cap_queue = 0;
            for (uint32_t i = 0; i < n; i++) sw_bt_webseed_done(t, url, q[i], NULL, 0, SW_EPERM);
            free(q);
            return;
        }
}

static void glue_closed(uv_handle_t *h) { free(h->data); }

static int ops_fetch_closed(void *ud, struct sw_bt_torrent *t, const char *url, uint32_t piece)
{
    return SW_ECLOSED;
}

struct sw_bt_ws_glue *sw__bt_ws_glue_new(struct sw_bt_net *net, struct sw_bt_session *s)
{
    struct sw_bt_ws_glue *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->net = net;
    g->s = s;
    uv_timer_init(sw__bt_net_loop(net), &g->timer);
    g->timer.data = g;
    struct sw_bt_webseed_ops ops = {.fetch = ops_fetch, .banned = ops_banned, .max_in_flight = 4, .ud = g};
    if (sw_bt_session_set_webseed(s, &ops) != 0) {
        uv_close((uv_handle_t *)&g->timer, glue_closed);
        return NULL;
    }
    return g;
}

void sw__bt_ws_glue_free(struct sw_bt_ws_glue *g)
{
    if (!g) return;
    /* The session may still ask while it closes: answer "closed" from now on. */
    struct sw_bt_webseed_ops closed = {.fetch = ops_fetch_closed, .max_in_flight = 1, .ud = NULL};
    sw_bt_session_set_webseed(g->s, &closed);
    while (g->entries) {
        struct ws_entry *e = g->entries;
        g->entries = e->next;
        sw__bt_webseed_free(e->ws);
        free(e->queue);
        free(e->url);
        free(e);
    }
    uv_timer_stop(&g->timer);
    uv_close((uv_handle_t *)&g->timer, glue_closed); /* frees g */
}
