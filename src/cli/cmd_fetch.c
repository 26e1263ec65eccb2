/* cmd_fetch.c — `shardswarm fetch TORRENT|MAGNET`: download (and verify) shards of a model
 * torrent from peers (--peer, the DHT via --bootstrap, PEX, web seeds), exit 0 when complete.
 * Also holds the runner that `seed` (cmd_seed.c) shares: a BitTorrent session on a libuv
 * loop, optional DHT, signals, progress output. */
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "bt/bt.h"
#include "bt/bt_net.h"
#include "cli.h"
#include "cli/bt_run.h"
#include "dht/dht.h"
#include "net/noise.h"

struct run {
    struct sw__bt_run_cfg *c;
    uv_loop_t loop;
    struct sw_bt_session *s;
    struct sw_bt_torrent *t;
    struct sw_dht_uv *dht;
    struct sw_bt_netglue *net;  /* HTTP trackers + web seeds (bt_net.h) */
    const struct sw_bt_magnet *mag;
    uv_signal_t sigint, sigterm;
    uv_timer_t timeout, dht_timer, status_timer;
    int stopping;
    int exit_code;
    char why[512];
    int wants_applied;
    uint64_t started_ms;
    int tty;
    struct sw_cli_bar bar;
    uint64_t last_line_ms;
};

static void stop(struct run *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void stop(struct run *r, int code, const char *fmt, ...)
{
    if (r->stopping) return;
    r->stopping = 1;
    r->exit_code = code;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->why, sizeof r->why, fmt, ap);
        va_end(ap);
    }
    uv_signal_stop(&r->sigint);
    uv_signal_stop(&r->sigterm);
    uv_timer_stop(&r->timeout);
    uv_timer_stop(&r->dht_timer);
    uv_timer_stop(&r->status_timer);
    if (r->dht) { sw_dht_uv_close(r->dht); r->dht = NULL; }
    if (r->net) { sw__bt_netglue_close(r->net); r->net = NULL; }
    if (r->s) sw_bt_session_close(r->s);
}

/* --file N → file index: shard N when the torrent has the shardswarm dictionary, else the
 * N-th real (non-pad) file. */
static int resolve_file(const struct sw_bt_metainfo *mi, uint32_t n, uint32_t *fi)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < mi->n_files; i++) {
        if (mi->files[i].pad) continue;
        if (mi->has_shardswarm ? mi->files[i].shard_index == (int)n : k == n) { *fi = i; return 0; }
        k++;
    }
    return SW_ENOTFOUND;
}

static void apply_wants(struct run *r)
{
    const struct sw_bt_metainfo *mi = sw_bt_torrent_metainfo(r->t);
    if (!mi || r->wants_applied || r->c->seed) return;
    r->wants_applied = 1;
    if (r->c->all || r->c->n_sel == 0) {
        for (uint32_t i = 0; i < mi->n_files; i++)
            if (!mi->files[i].pad) sw_bt_torrent_want_file(r->t, i, 1);
    } else {
        for (uint32_t k = 0; k < r->c->n_sel; k++) {
            uint32_t fi;
            if (resolve_file(mi, r->c->sel[k], &fi)) {
                stop(r, SW_EXIT_FAIL, "the torrent has no %s %u", mi->has_shardswarm ? "shard" : "file", r->c->sel[k]);
                return;
            }
            sw_bt_torrent_want_file(r->t, fi, 1);
        }
    }
    struct sw_bt_progress pr;
    char b1[32], b2[32];
    if (sw_bt_torrent_progress(r->t, -1, &pr) == 0)
        sw_log(SW_LOG_INFO, "BT", "on disk: %s of %s verified (%.1f%%)", sw_fmt_bytes(pr.bytes_done, b1, sizeof b1),
               sw_fmt_bytes(pr.bytes_total, b2, sizeof b2), pr.percent);
    if (sw_bt_torrent_complete(r->t)) stop(r, SW_EXIT_OK, NULL);
}

static void on_event(void *ud, const struct sw_bt_event *ev)
{
    struct run *r = ud;
    char b1[32], b2[32], b3[32], b4[32];
    switch (ev->type) {
    case SW_BT_EV_LISTENING:
        sw_log(SW_LOG_INFO, "BT", "listening on %s:%u", ev->msg ? ev->msg : "0.0.0.0", ev->port);
        break;
    case SW_BT_EV_METADATA:
        sw_log(SW_LOG_INFO, "BT", "metadata received: %s", ev->msg ? ev->msg : "");
        if (r->net && r->mag)
            sw__bt_netglue_add_torrent(r->net, r->t, (const char *const *)r->mag->trackers, r->mag->n_trackers);
        apply_wants(r);
        break;
    case SW_BT_EV_PROGRESS: {
        if (r->c->seed || r->stopping) break;
        const char *path = sw_bt_torrent_file_path(ev->torrent, (uint32_t)ev->file);
        const char *name = path && strrchr(path, '/') ? strrchr(path, '/') + 1 : path ? path : "?";
        const struct sw_bt_progress *p = &ev->progress;
        if (r->tty) {
            /* One bar for everything wanted (a bar per file would overwrite each other). */
            struct sw_bt_progress all;
            if (sw_bt_torrent_progress(ev->torrent, -1, &all) == 0 && all.bytes_done < all.bytes_total)
                sw_cli_bar_update_rate(&r->bar, all.bytes_done, all.bytes_total, all.rate_bps, all.eta_ms);
        } else {
            sw_log(SW_LOG_INFO, "BT", "progress %s %.1f%% %s/%s %s/s ETA %s peers %u", name, p->percent,
                   sw_fmt_bytes(p->bytes_done, b1, sizeof b1), sw_fmt_bytes(p->bytes_total, b2, sizeof b2),
                   sw_fmt_bytes((uint64_t)p->rate_bps, b3, sizeof b3),
                   p->eta_ms == UINT64_MAX ? "?" : sw_fmt_duration_ms(p->eta_ms, b4, sizeof b4), p->n_peers);
        }
        break;
    }
    case SW_BT_EV_FILE_COMPLETE:
        sw_log(SW_LOG_INFO, "BT", "complete: %s (verified)", ev->msg ? ev->msg : "");
        break;
    case SW_BT_EV_TORRENT_COMPLETE:
        if (!r->c->seed) {
            struct sw_bt_progress all;
            if (r->tty && sw_bt_torrent_progress(ev->torrent, -1, &all) == 0)
                sw_cli_bar_update_rate(&r->bar, all.bytes_total, all.bytes_total, all.rate_bps, 0);
            uint64_t el = sw_time_ms() - r->started_ms;
            sw_log(SW_LOG_INFO, "BT", "download complete in %s", sw_fmt_duration_ms(el, b1, sizeof b1));
            stop(r, SW_EXIT_OK, NULL);
        }
        break;
    case SW_BT_EV_PEER_CONNECTED:
    case SW_BT_EV_PEER_CLOSED: {
        char a[64] = "?";
        if (ev->peer) sw_bt_peer_addr(ev->peer, a, sizeof a);
        sw_log(SW_LOG_DEBUG, "BT", "peer %s %s%s%s", a, ev->type == SW_BT_EV_PEER_CONNECTED ? "connected" : "closed",
               ev->msg ? ": " : "", ev->msg ? ev->msg : "");
        break;
    }
    case SW_BT_EV_PEER_BANNED: {
        char a[64] = "?";
        if (ev->peer) sw_bt_peer_addr(ev->peer, a, sizeof a);
        sw_log(SW_LOG_WARN, "BT", "banned peer %s: %s (piece %u)", a, ev->msg ? ev->msg : "", ev->piece);
        break;
    }
    case SW_BT_EV_PIECE_FAILED:
        sw_log(SW_LOG_WARN, "BT", "piece %u failed its hash check; not written", ev->piece);
        break;
    case SW_BT_EV_ERROR:
        sw_log(SW_LOG_ERROR, "BT", "%s", ev->msg ? ev->msg : sw_strerror(ev->err));
        if (!r->c->seed) stop(r, SW_EXIT_FAIL, "%s", ev->msg ? ev->msg : sw_strerror(ev->err));
        break;
    default:
        break;
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct run *r = h->data;
    sw_log(SW_LOG_INFO, "BT", "%s: stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
    stop(r, r->c->seed ? SW_EXIT_OK : SW_EXIT_FAIL, r->c->seed ? NULL : "interrupted before the download completed");
}

static void on_timeout(uv_timer_t *h)
{
    struct run *r = h->data;
    if (r->c->seed) { stop(r, SW_EXIT_OK, NULL); return; }
    struct sw_bt_progress p;
    double pct = sw_bt_torrent_progress(r->t, -1, &p) == 0 ? p.percent : 0;
    stop(r, SW_EXIT_FAIL, "timed out after %u s (%.1f%% done, %u peers)", r->c->timeout_s, pct, sw_bt_torrent_n_peers(r->t));
}

/* ---- DHT: find peers for the info-hash and announce our port. */

static void dht_lookup(struct run *r)
{
    if (!r->dht) return;
    struct sw_dht *d = sw_dht_uv_dht(r->dht);
    uint64_t now = sw_time_ms();
    uint8_t ih[20];
    memcpy(ih, sw_bt_torrent_info_hash(r->t), 20);
    if (r->c->has_swarm_key) sw_swarm_dht_infohash(r->c->swarm_key, ih, ih); /* private: the derived one */
    sw_dht_announce(d, ih, sw_bt_session_port(r->s), 1, now, NULL);
    if (!r->c->seed) sw_dht_get_peers(d, ih, now, NULL);
}

static void on_dht_event(void *ud, const struct sw_dht_event *ev)
{
    struct run *r = ud;
    if (r->stopping) return;
    if (ev->type == SW_DHT_EV_READY) {
        sw_log(SW_LOG_INFO, "BT", "DHT ready; %s", r->c->seed ? "announcing" : "announcing and looking up peers");
        dht_lookup(r);
    } else if (ev->type == SW_DHT_EV_PEER && !ev->is_self) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        if (ev->addr.family == 4) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            a->sin_family = AF_INET;
            memcpy(&a->sin_addr, ev->addr.ip, 4);
            a->sin_port = htons(ev->addr.port);
        } else {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            a->sin6_family = AF_INET6;
            memcpy(&a->sin6_addr, ev->addr.ip, 16);
            a->sin6_port = htons(ev->addr.port);
        }
        sw_bt_torrent_add_peer_addr(r->t, &ss);
    }
}

static void on_dht_timer(uv_timer_t *h)
{
    struct run *r = h->data;
    dht_lookup(r);
}

/* Seeders: a status line every 10 s (peers, uploaded, rate). */
static void on_status_timer(uv_timer_t *h)
{
    struct run *r = h->data;
    struct sw_bt_progress p;
    char b1[32], b2[32];
    if (r->stopping || sw_bt_torrent_progress(r->t, -1, &p)) return;
    sw_log(SW_LOG_INFO, "BT", "seeding: %u peers, %s uploaded, %s/s", sw_bt_torrent_n_peers(r->t),
           sw_fmt_bytes(p.uploaded, b1, sizeof b1), sw_fmt_bytes((uint64_t)p.upload_bps, b2, sizeof b2));
}

static void close_cb(uv_handle_t *h)
{
    (void)h;
}

int sw__bt_run(struct sw__bt_run_cfg *c)
{
    const char *cmd = c->cmd;
    char err[512] = "";
    struct sw_bt_metainfo mi;
    struct sw_bt_magnet mag;
    int is_magnet = !strncmp(c->src, "magnet:", 7), rc;
    memset(&mi, 0, sizeof mi);
    memset(&mag, 0, sizeof mag);
    if (is_magnet) rc = sw_bt_magnet_parse(c->src, &mag, err, sizeof err);
    else rc = sw_bt_metainfo_load(c->src, &mi, err, sizeof err);
    if (rc) return sw_cli_fail(cmd, "%s", err);
    rc = sw_mkdir_p(c->dir);
    if (rc) { sw_bt_metainfo_free(&mi); sw_bt_magnet_free(&mag); return sw_cli_fail(cmd, "%s: cannot create folder: %s", c->dir, sw_strerror(rc)); }

    struct run *r = calloc(1, sizeof *r);
    if (!r) return sw_cli_fail(cmd, "out of memory");
    r->c = c;
    r->tty = isatty(STDERR_FILENO);
    sw_cli_bar_init(&r->bar, "fetch");
    r->started_ms = sw_time_ms();
    uv_loop_init(&r->loop);
    uv_signal_init(&r->loop, &r->sigint);
    uv_signal_init(&r->loop, &r->sigterm);
    uv_timer_init(&r->loop, &r->timeout);
    uv_timer_init(&r->loop, &r->dht_timer);
    uv_timer_init(&r->loop, &r->status_timer);
    r->sigint.data = r->sigterm.data = r->timeout.data = r->dht_timer.data = r->status_timer.data = r;
    uv_signal_start(&r->sigint, on_signal, SIGINT);
    uv_signal_start(&r->sigterm, on_signal, SIGTERM);
    signal(SIGPIPE, SIG_IGN);

    struct sw_bt_session_opts so = { .listen_host = c->listen_host, .listen_port = c->listen_port, .on_event = on_event, .ud = r };
    so.swarm_key = c->has_swarm_key ? c->swarm_key : NULL;
    rc = sw_bt_session_new(&r->loop, &so, &r->s, err, sizeof err);
    if (!rc && c->has_swarm_key) {
        /* trackers would learn the info-hash and web seeds who fetches it: members only */
        sw_log(SW_LOG_INFO, "BT", "private swarm: members only, links and DHT encrypted; no trackers or web seeds");
    } else if (!rc) {
        r->net = sw__bt_netglue_new(&r->loop, r->s);
        if (!r->net) sw_log(SW_LOG_WARN, "BT", "HTTP trackers and web seeds unavailable (libcurl did not start)");
    }
    if (is_magnet) r->mag = &mag;
    if (rc) {
        stop(r, SW_EXIT_FAIL, "%s", err);
    } else {
        struct sw_bt_torrent_opts to = {
            .dir = c->dir, .verify_all = c->verify, .trust_complete = c->seed && !c->verify, .seed_only = c->seed,
        };
        if (is_magnet) rc = sw_bt_torrent_add_magnet(r->s, &mag, &to, &r->t, err, sizeof err);
        else rc = sw_bt_torrent_add(r->s, &mi, &to, &r->t, err, sizeof err);
        if (rc) {
            stop(r, SW_EXIT_FAIL, "%s", err[0] ? err : sw_strerror(rc));
        } else {
            char hex[41];
            sw_hex_encode(sw_bt_torrent_info_hash(r->t), 20, hex);
            sw_log(SW_LOG_INFO, "BT", "model id (info-hash) %s", hex);
            if (r->net)
                sw__bt_netglue_add_torrent(r->net, r->t, is_magnet ? (const char *const *)mag.trackers : NULL,
                                           is_magnet ? mag.n_trackers : 0);
            if (c->seed) {
                const struct sw_bt_metainfo *m = sw_bt_torrent_metainfo(r->t);
                uint32_t held = 0, total = 0;
                for (uint32_t i = 0; m && i < m->n_files; i++) {
                    if (m->files[i].pad) continue;
                    total++;
                    held += sw_bt_torrent_file_complete(r->t, i);
                }
                sw_log(SW_LOG_INFO, "BT", "seeding %u of %u file(s) from %s", held, total, c->dir);
                uv_timer_start(&r->status_timer, on_status_timer, 10000, 10000);
            }
            apply_wants(r);
            for (uint32_t i = 0; i < c->n_peers && !r->stopping; i++) {
                char host[256];
                uint16_t port;
                if (sw_cli_parse_hostport(cmd, "--peer", c->peers[i], host, &port)) continue;
                int prc = sw_bt_torrent_add_peer(r->t, host, port);
                if (prc) sw_log(SW_LOG_WARN, "BT", "--peer %s: %s", c->peers[i], sw_strerror(prc));
            }
            if (c->n_boot && !r->stopping) {
                struct sw_dht_uv_config dc;
                memset(&dc, 0, sizeof dc);
                dc.dht.on_event = on_dht_event;
                dc.dht.ud = r;
                dc.bind_host = c->listen_host; /* --bind: the DHT's UDP socket too */
                dc.swarm_key = c->has_swarm_key ? c->swarm_key : NULL;
                if (c->listen_host && strchr(c->listen_host, ':')) dc.dht.family = 6;
                int derr = 0;
                r->dht = sw_dht_uv_new(&r->loop, &dc, &derr);
                if (!r->dht) {
                    sw_log(SW_LOG_WARN, "BT", "DHT: cannot start (%s); continuing with --peer only", sw_strerror(derr));
                } else {
                    sw_dht_uv_bootstrap(r->dht, c->boot, c->n_boot);
                    uv_timer_start(&r->dht_timer, on_dht_timer, 2000, 30000);
                }
            }
            if (c->timeout_s && !r->stopping) uv_timer_start(&r->timeout, on_timeout, (uint64_t)c->timeout_s * 1000, 0);
        }
    }
    uv_run(&r->loop, UV_RUN_DEFAULT);
    /* Drain: closing handles and worker jobs. */
    if (!r->stopping) stop(r, SW_EXIT_FAIL, "event loop ended unexpectedly");
    uv_close((uv_handle_t *)&r->sigint, close_cb);
    uv_close((uv_handle_t *)&r->sigterm, close_cb);
    uv_close((uv_handle_t *)&r->timeout, close_cb);
    uv_close((uv_handle_t *)&r->dht_timer, close_cb);
    uv_close((uv_handle_t *)&r->status_timer, close_cb);
    while (uv_run(&r->loop, UV_RUN_DEFAULT) != 0) {}
    sw_bt_session_free(r->s);
    uv_loop_close(&r->loop);
    int code = r->exit_code;
    if (code == SW_EXIT_OK && !c->seed) {
        printf("fetched into %s\n", c->dir);
    }
    if (code != SW_EXIT_OK && r->why[0]) sw_cli_fail(cmd, "%s", r->why);
    sw_bt_metainfo_free(&mi);
    sw_bt_magnet_free(&mag);
    free(r);
    return code;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: shardswarm fetch TORRENT|MAGNET [--file N ...|--all] [--out DIR]\n"
               "                        [--peer HOST:PORT ...] [--bootstrap HOST:PORT ...]\n"
               "                        [--verify] [--timeout S] [--listen PORT] [--bind IP] [-v]\n\n"
               "Downloads shards of a model torrent from its peers, verifying every piece (SHA-1)\n"
               "before it is written; exits 0 once every requested file is complete.\n"
               "  --file N            shard N (or the N-th file of a torrent without shard info); repeatable\n"
               "  --all               every file (the default)\n"
               "  --out DIR           where files go (default models_cache/shards); partial files are\n"
               "                      FILE.part with FILE.resume, renamed when complete\n"
               "  --peer HOST:PORT    a peer to connect to; repeatable\n"
               "  --bootstrap H:P     DHT bootstrap node: find peers for the info-hash; repeatable\n"
               "  --verify            rehash what is on disk instead of trusting resume data\n"
               "  --timeout S         give up after S seconds (exit 1)\n"
               "  --listen PORT       TCP port to accept peers on (default: any)\n"
               "  --bind IP           address to listen on, TCP and DHT (default 0.0.0.0); --host too\n"
               "  --swarm-key FILE    a private swarm: members only, encrypted (docs/protocol.md)\n"
               "  -v, --verbose       debug logging\n"
               "Exit status: 0 complete, 1 failed (timeout, disk full, bad torrent), 2 usage error.\n");
}


/* Options shared by fetch and seed. Returns 1 when argv[*i] was consumed, 0 when not
 * ours, or SW_EXIT_USAGE (2) after printing a usage error (negated: -2). */
int sw__bt_parse_common(struct sw__bt_run_cfg *c, int argc, char **argv, int *i_io)
{
    int i = *i_io;
    const char *a = argv[i];
    const char *cmd = c->cmd;
    int takes = !strcmp(a, "--peer") || !strcmp(a, "--bootstrap") || !strcmp(a, "--listen") || !strcmp(a, "--host") ||
                !strcmp(a, "--bind") || !strcmp(a, "--swarm-key") ||
                !strcmp(a, "--timeout");
    if (!takes) {
        if (!strcmp(a, "--verify")) { c->verify = 1; return 1; }
        if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) { c->verbose = 1; return 1; }
        return 0;
    }
    if (i + 1 >= argc) { sw_cli_usage_error(cmd, "%s needs a value", a); return -SW_EXIT_USAGE; }
    const char *v = argv[++i];
    *i_io = i;
    char host[256];
    uint16_t port;
    if (!strcmp(a, "--peer") || !strcmp(a, "--bootstrap")) {
        if (sw_cli_parse_hostport(cmd, a, v, host, &port)) return -SW_EXIT_USAGE;
        if (!strcmp(a, "--peer")) {
            if (c->n_peers >= SW_BT_RUN_MAX_LIST) { sw_cli_usage_error(cmd, "--peer: at most %d", SW_BT_RUN_MAX_LIST); return -SW_EXIT_USAGE; }
            c->peers[c->n_peers++] = v;
        } else {
            if (c->n_boot >= SW_BT_RUN_MAX_LIST) { sw_cli_usage_error(cmd, "--bootstrap: at most %d", SW_BT_RUN_MAX_LIST); return -SW_EXIT_USAGE; }
            c->boot[c->n_boot++] = v;
        }
    } else if (!strcmp(a, "--listen")) {
        uint32_t p;
        if (sw_cli_parse_u32(cmd, "--listen", v, 0, 65535, &p)) return -SW_EXIT_USAGE;
        c->listen_port = (uint16_t)p;
    } else if (!strcmp(a, "--bind") || !strcmp(a, "--host")) { /* --host: the older name */
        int fam;
        if (sw_cli_parse_bind(cmd, a, v, &fam)) return -SW_EXIT_USAGE;
        c->listen_host = v;
    } else if (!strcmp(a, "--timeout")) {
        if (sw_cli_parse_u32(cmd, "--timeout", v, 1, 7 * 24 * 3600, &c->timeout_s)) return -SW_EXIT_USAGE;
    } else if (!strcmp(a, "--swarm-key")) {
        if (sw_cli_swarm_key(cmd, v, c->swarm_key)) return -SW_EXIT_USAGE;
        c->has_swarm_key = 1;
    }
    return 1;
}

int sw_cmd_fetch(int argc, char **argv)
{
    if (sw_cli_wants_help(argc, argv)) { usage(stdout); return SW_EXIT_OK; }
    static struct sw__bt_run_cfg c;
    memset(&c, 0, sizeof c);
    c.cmd = "fetch";
    c.dir = "models_cache/shards";
    for (int i = 1; i < argc; i++) {
        int rc = sw__bt_parse_common(&c, argc, argv, &i);
        if (rc < 0) return -rc;
        if (rc) continue;
        const char *a = argv[i];
        if (!strcmp(a, "--all")) c.all = 1;
        else if (!strcmp(a, "--file") || !strcmp(a, "--out")) {
            if (i + 1 >= argc) return sw_cli_usage_error(c.cmd, "%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--out")) c.dir = v;
            else {
                if (c.n_sel >= SW_BT_RUN_MAX_LIST) return sw_cli_usage_error(c.cmd, "--file: at most %d", SW_BT_RUN_MAX_LIST);
                int prc = sw_cli_parse_u32(c.cmd, "--file", v, 0, 100000, &c.sel[c.n_sel]);
                if (prc) return prc;
                c.n_sel++;
            }
        } else if (a[0] == '-') {
            return sw_cli_usage_error(c.cmd, "unknown option '%s'", a);
        } else if (!c.src) {
            c.src = a;
        } else {
            return sw_cli_usage_error(c.cmd, "unexpected argument '%s'", a);
        }
    }
    if (!c.src) return sw_cli_usage_error(c.cmd, "TORRENT or MAGNET is required");
    if (c.all && c.n_sel) return sw_cli_usage_error(c.cmd, "--all and --file exclude each other");
    sw_cli_log_setup("human", c.verbose);
    return sw__bt_run(&c);
}
