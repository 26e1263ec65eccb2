/* bt_netprobe.c — drives bt-net's HTTP tracker client and BEP 19 web seed fetcher from the
 * command line, for the tests in tests/bt (interop_tracker.py, interop_webseed.py) and the
 * web seed line of bench/40_bt.sh. Not a user command: `shardswarm fetch` is.
 *
 *   bench_bt_netprobe announce [--event E] [--left N] [--numwant N] [--timeout-ms N]
 *                              INFOHASH_HEX PORT TIER...   (TIER = url[,url...], BEP 12)
 *   bench_bt_netprobe parse FILE                          (a tracker response body)
 *   bench_bt_netprobe ranges TORRENT PIECE BASE_URL
 *   bench_bt_netprobe webseed [--in-flight N] [--max-errors N] [--timeout-s N] TORRENT URL OUTDIR
 *   bench_bt_netprobe session [--seed] [--bind IP] [--listen PORT] [--peer IP:PORT]...
 *                             [--timeout-s N] TORRENT DIR
 *       the core's session (bt.h) with bt-net's glue (sw__bt_netglue_*): trackers from the
 *       torrent, web seeds from its url-list, peers given; fetches every file into DIR
 *       ("complete SECONDS" then exit 0) or, with --seed, serves DIR until SIGTERM.
 *
 * Exit 0 on success, 1 on failure (one "error ..." line), 2 on usage errors. */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bt/bt.h"
#include "bt/bt_net.h"
#include "util/util.h"

static int usage(const char *msg)
{
    fprintf(stderr, "bench_bt_netprobe: %s\n(see the comment at the top of bench/bt_netprobe.c)\n", msg);
    return 2;
}

static int parse_u64(const char *flag, const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || errno || v > max || s[0] == '-') {
        fprintf(stderr, "bench_bt_netprobe: %s: bad number '%s'\n", flag, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* ---------------------------------------------------------------- announce */

struct announce_ctx {
    int done, rc;
};

static void on_announce(void *ud, const struct sw_bt_announce_result *r)
{
    struct announce_ctx *c = ud;
    c->done = 1;
    c->rc = r->err;
    if (r->err && r->err != SW_EPERM) {
        printf("error rc=%d (%s) %s\n", r->err, sw_strerror(r->err), r->message);
        return;
    }
    if (r->err == SW_EPERM) {
        printf("failure url=%s reason=%s\n", r->url, r->message);
        return;
    }
    printf("ok url=%s interval=%u min_interval=%u complete=%lld incomplete=%lld peers=%zu warning=%s\n",
           r->url, r->interval_s, r->min_interval_s, (long long)r->complete, (long long)r->incomplete,
           r->n_peers, r->warning);
    for (size_t i = 0; i < r->n_peers; i++) {
        char s[64];
        printf("peer %s\n", sw__bt_net_peer_str(&r->peers[i], s, sizeof s));
    }
}

static int cmd_announce(int argc, char **argv)
{
    struct sw_bt_announce a = {0};
    struct sw_bt_tracker_config tc = {0};
    int i = 1;
    uint64_t v;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i += 2) {
        if (i + 1 >= argc) return usage("flag without value");
        const char *f = argv[i], *val = argv[i + 1];
        if (!strcmp(f, "--event")) {
            if (!strcmp(val, "started")) a.event = SW_BT_EVENT_STARTED;
            else if (!strcmp(val, "completed")) a.event = SW_BT_EVENT_COMPLETED;
            else if (!strcmp(val, "stopped")) a.event = SW_BT_EVENT_STOPPED;
            else if (!strcmp(val, "none")) a.event = SW_BT_EVENT_NONE;
            else return usage("--event: started|completed|stopped|none");
        } else if (!strcmp(f, "--left")) {
            if (parse_u64(f, val, UINT64_MAX / 2, &a.left)) return 2;
        } else if (!strcmp(f, "--numwant")) {
            if (parse_u64(f, val, 10000, &v)) return 2;
            a.numwant = (uint32_t)v;
        } else if (!strcmp(f, "--timeout-ms")) {
            if (parse_u64(f, val, 600000, &v) || v == 0) return usage("--timeout-ms: 1..600000");
            tc.timeout_ms = (uint32_t)v;
        } else {
            return usage("unknown flag");
        }
    }
    if (argc - i < 3) return usage("announce needs INFOHASH_HEX PORT TIER...");
    if (strlen(argv[i]) != 40 || sw_hex_decode(argv[i], a.info_hash, 20) != 0)
        return usage("INFOHASH_HEX: 40 hex digits");
    if (parse_u64("PORT", argv[i + 1], 65535, &v) || v == 0) return 2;
    a.port = (uint16_t)v;
    memcpy(a.peer_id, "-SW0100-", 8);
    sw_random_bytes(a.peer_id + 8, 12);
    sw_random_bytes(&a.key, sizeof a.key);

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sw_bt_net *net = sw__bt_net_new(&loop, NULL);
    struct sw_bt_tracker *t = net ? sw__bt_tracker_new(net, &tc) : NULL;
    if (!t) {
        printf("error out of memory\n");
        return 1;
    }
    for (int k = i + 2, tier = 0; k < argc; k++, tier++) {
        char *copy = strdup(argv[k]), *save = NULL;
        for (char *u = strtok_r(copy, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
            int rc = sw__bt_tracker_add(t, (unsigned)tier, u);
            if (rc && rc != SW_EUNSUPPORTED) fprintf(stderr, "tracker %s: %s\n", u, sw_strerror(rc));
        }
        free(copy);
    }
    struct announce_ctx c = {0};
    int rc = sw__bt_tracker_announce(t, &a, on_announce, &c);
    if (rc != 0) {
        printf("error rc=%d (%s) cannot start\n", rc, sw_strerror(rc));
        c.done = 1;
        c.rc = rc;
    }
    while (!c.done && uv_run(&loop, UV_RUN_ONCE)) {}
    sw__bt_tracker_free(t);
    sw__bt_net_free(net);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    fflush(stdout);
    return c.done && c.rc == 0 ? 0 : 1;
}

static int cmd_parse(int argc, char **argv)
{
    if (argc != 2) return usage("parse FILE");
    uint8_t *data;
    size_t len;
    int rc = sw_file_read_all(argv[1], 4u << 20, &data, &len);
    if (rc) {
        printf("error cannot read %s: %s\n", argv[1], sw_strerror(rc));
        return 1;
    }
    static struct sw_bt_net_peer peers[SW_BT_TRACKER_MAX_PEERS];
    char msg[256], warn[256];
    struct sw_bt_announce_result r;
    rc = sw__bt_tracker_parse(data, len, &r, peers, SW_ARRAY_LEN(peers), msg, sizeof msg, warn, sizeof warn);
    free(data);
    r.url = "-";
    r.err = rc;
    struct announce_ctx c = {0};
    on_announce(&c, &r);
    return rc == 0 ? 0 : 1;
}

/* ---------------------------------------------------------------- torrent (minimal) */

/* Just enough of a v1 .torrent for the web seed: name, piece length, hashes, files. The
 * real parser is sw_bt_metainfo_parse (bt.h); this tool stays independent of it so the
 * web seed can be tested alone. */
struct mini_torrent {
    uint8_t *raw;
    struct sw_bdoc doc;
    struct sw_bt_ws_layout l;
    struct sw_bt_ws_file *files;
    char **paths;
    const uint8_t *hashes;
};

static void mini_free(struct mini_torrent *t)
{
    for (size_t i = 0; t->paths && i < t->l.n_files; i++) free(t->paths[i]);
    free(t->paths);
    free(t->files);
    free((char *)t->l.name);
    sw_bdoc_free(&t->doc);
    free(t->raw);
}

static int mini_load(const char *path, struct mini_torrent *t)
{
    memset(t, 0, sizeof *t);
    size_t len;
    char err[128];
    if (sw_file_read_all(path, 64u << 20, &t->raw, &len) != 0) return -1;
    if (sw_bdecode(t->raw, len, NULL, &t->doc, NULL, err, sizeof err) != 0) return -1;
    const struct sw_bdoc *d = &t->doc;
    const struct sw_bnode *info = sw_bdict_get_type(d, &d->nodes[0], "info", SW_BDICT);
    if (!info) return -1;
    const struct sw_bnode *name = sw_bdict_get_type(d, info, "name", SW_BSTR);
    const struct sw_bnode *pl = sw_bdict_get_type(d, info, "piece length", SW_BINT);
    const struct sw_bnode *pieces = sw_bdict_get_type(d, info, "pieces", SW_BSTR);
    if (!name || !pl || !pieces || pl->ival <= 0 || pl->ival > (64 << 20) || pieces->str_len % 20) return -1;
    t->l.name = strndup((const char *)name->str, name->str_len);
    t->l.piece_length = (uint32_t)pl->ival;
    t->l.n_pieces = (uint32_t)(pieces->str_len / 20);
    t->hashes = pieces->str;
    const struct sw_bnode *files = sw_bdict_get_type(d, info, "files", SW_BLIST);
    const struct sw_bnode *length = sw_bdict_get_type(d, info, "length", SW_BINT);
    if (files) {
        t->l.multi_file = 1;
        t->l.n_files = files->n_items;
        t->files = calloc(files->n_items + 1, sizeof *t->files);
        t->paths = calloc(files->n_items + 1, sizeof *t->paths);
        if (!t->files || !t->paths) return -1;
        size_t i = 0;
        for (const struct sw_bnode *f = sw_bnode_child(d, files); f; f = sw_bnode_next(d, f), i++) {
            const struct sw_bnode *fl = sw_bdict_get_type(d, f, "length", SW_BINT);
            const struct sw_bnode *fp = sw_bdict_get_type(d, f, "path", SW_BLIST);
            const struct sw_bnode *attr = sw_bdict_get_type(d, f, "attr", SW_BSTR);
            if (!fl || fl->ival < 0 || !fp) return -1;
            struct sw_buf b = {0};
            for (const struct sw_bnode *c = sw_bnode_child(d, fp); c; c = sw_bnode_next(d, c)) {
                if (c->type != SW_BSTR || c->str_len == 0 || memchr(c->str, '/', c->str_len) ||
                    (c->str_len == 2 && !memcmp(c->str, "..", 2)))
                    return -1;
                if (b.len) sw_buf_append_byte(&b, '/');
                sw_buf_append(&b, c->str, c->str_len);
            }
            t->paths[i] = strdup(sw_buf_cstr(&b) ? (char *)b.data : "");
            sw_buf_free(&b);
            t->files[i].path = t->paths[i];
            t->files[i].length = (uint64_t)fl->ival;
            t->files[i].pad = attr && memchr(attr->str, 'p', attr->str_len) != NULL;
        }
    } else if (length && length->ival >= 0) {
        t->l.n_files = 1;
        t->files = calloc(1, sizeof *t->files);
        t->paths = calloc(1, sizeof *t->paths);
        if (!t->files || !t->paths) return -1;
        t->paths[0] = strdup(t->l.name);
        t->files[0].path = t->paths[0];
        t->files[0].length = (uint64_t)length->ival;
    } else {
        return -1;
    }
    t->l.files = t->files;
    return 0;
}

static int cmd_ranges(int argc, char **argv)
{
    if (argc != 4) return usage("ranges TORRENT PIECE BASE_URL");
    struct mini_torrent t;
    if (mini_load(argv[1], &t) != 0) {
        printf("error cannot parse %s\n", argv[1]);
        mini_free(&t);
        return 1;
    }
    uint64_t piece;
    if (parse_u64("PIECE", argv[2], UINT32_MAX, &piece)) return 2;
    struct sw_bt_ws_range r[256];
    uint32_t plen = 0;
    int n = sw__bt_ws_piece_ranges(&t.l, (uint32_t)piece, r, SW_ARRAY_LEN(r), &plen);
    if (n < 0) {
        printf("error %s\n", sw_strerror(n));
        mini_free(&t);
        return 1;
    }
    printf("piece %llu len %u ranges %d\n", (unsigned long long)piece, plen, n);
    for (int i = 0; i < n; i++) {
        struct sw_buf u = {0};
        sw__bt_ws_file_url(&u, argv[3], &t.l, r[i].file);
        printf("range file=%u off=%llu len=%llu poff=%llu pad=%d url=%s\n", r[i].file,
               (unsigned long long)r[i].file_offset, (unsigned long long)r[i].length,
               (unsigned long long)r[i].piece_offset, t.files[r[i].file].pad, (const char *)u.data);
        sw_buf_free(&u);
    }
    mini_free(&t);
    return 0;
}

/* ---------------------------------------------------------------- webseed */

struct ws_run {
    struct mini_torrent *t;
    struct sw_bt_webseed *ws;
    uv_timer_t timer;
    int *fds;
    uint64_t *file_start;
    uint32_t next_piece;      /* next never-started piece */
    uint32_t *retry;          /* pieces to fetch again */
    uint32_t n_retry;
    uint32_t n_done, n_errors, max_errors, hash_fail;
    int finished, io_error;
};

static void ws_pump(struct ws_run *r);

static int write_piece(struct ws_run *r, uint32_t piece, const uint8_t *data)
{
    struct sw_bt_ws_range rg[256];
    uint32_t plen;
    int n = sw__bt_ws_piece_ranges(&r->t->l, piece, rg, SW_ARRAY_LEN(rg), &plen);
    for (int i = 0; i < n; i++) {
        if (r->t->files[rg[i].file].pad) continue;
        int fd = r->fds[rg[i].file];
        if (pwrite(fd, data + rg[i].piece_offset, rg[i].length, (off_t)rg[i].file_offset) != (ssize_t)rg[i].length)
            return -1;
    }
    return n < 0 ? -1 : 0;
}

static void on_piece(void *ud, struct sw_bt_webseed *ws, uint32_t piece, int err, uint8_t *data,
                     uint32_t piece_len)
{
    struct ws_run *r = ud;
    if (err == 0) {
        uint8_t h[20];
        sw_sha1(data, piece_len, h);
        if (memcmp(h, r->t->hashes + (size_t)piece * 20, 20) != 0) {
            /* Never write unverified bytes: the web seed is banned. */
            printf("error piece=%u hash mismatch\n", piece);
            r->hash_fail++;
            sw__bt_webseed_ban(ws);
            r->finished = 1;
        } else if (write_piece(r, piece, data) != 0) {
            printf("error piece=%u write failed: %s\n", piece, strerror(errno));
            r->io_error = 1;
            r->finished = 1;
        } else {
            r->n_done++;
        }
        free(data);
    } else {
        r->n_errors++;
        printf("error piece=%u err=%d (%s) backoff_ms=%llu\n", piece, err, sw_strerror(err),
               (unsigned long long)sw__bt_webseed_backoff_ms(ws));
        fflush(stdout);
        if (r->n_errors >= r->max_errors) r->finished = 1;
        else r->retry[r->n_retry++] = piece;
    }
    if (r->n_done == r->t->l.n_pieces) r->finished = 1;
    if (!r->finished) ws_pump(r);
}

static void on_timer(uv_timer_t *h) { ws_pump(h->data); }

static void ws_pump(struct ws_run *r)
{
    while (!r->finished && sw__bt_webseed_can_fetch(r->ws)) {
        uint32_t piece;
        if (r->n_retry) piece = r->retry[--r->n_retry];
        else if (r->next_piece < r->t->l.n_pieces) piece = r->next_piece++;
        else break;
        int rc = sw__bt_webseed_fetch(r->ws, piece);
        if (rc != 0) {
            printf("error piece=%u cannot start: %s\n", piece, sw_strerror(rc));
            r->finished = 1;
            return;
        }
    }
    uint64_t wait = sw__bt_webseed_backoff_ms(r->ws);
    if (!r->finished && wait) uv_timer_start(&r->timer, on_timer, wait + 1, 0);
}

static int cmd_webseed(int argc, char **argv)
{
    struct sw_bt_webseed_config cfg = {.backoff_min_ms = 200, .backoff_max_ms = 2000};
    uint64_t v, max_errors = 20, timeout_s = 120;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i += 2) {
        if (i + 1 >= argc) return usage("flag without value");
        if (!strcmp(argv[i], "--in-flight")) {
            if (parse_u64(argv[i], argv[i + 1], 256, &v) || !v) return usage("--in-flight: 1..256");
            cfg.max_in_flight = (uint32_t)v;
        } else if (!strcmp(argv[i], "--max-errors")) {
            if (parse_u64(argv[i], argv[i + 1], 100000, &max_errors) || !max_errors)
                return usage("--max-errors: 1..100000");
        } else if (!strcmp(argv[i], "--timeout-s")) {
            if (parse_u64(argv[i], argv[i + 1], 3600, &timeout_s) || !timeout_s) return usage("--timeout-s: 1..3600");
        } else {
            return usage("unknown flag");
        }
    }
    if (argc - i != 3) return usage("webseed TORRENT URL OUTDIR");
    const char *tpath = argv[i], *url = argv[i + 1], *outdir = argv[i + 2];
    struct mini_torrent t;
    if (mini_load(tpath, &t) != 0) {
        printf("error cannot parse %s\n", tpath);
        mini_free(&t);
        return 1;
    }
    struct ws_run r = {.t = &t, .max_errors = (uint32_t)max_errors};
    r.fds = calloc(t.l.n_files, sizeof *r.fds);
    r.retry = calloc(t.l.n_pieces + 1, sizeof *r.retry);
    int rc = 1;
    for (size_t k = 0; k < t.l.n_files; k++) r.fds[k] = -1;
    for (size_t k = 0; k < t.l.n_files; k++) {
        if (t.files[k].pad) continue;
        char *base = t.l.multi_file ? sw_path_join(outdir, t.l.name) : strdup(outdir);
        char *p = sw_path_join(base, t.files[k].path);
        char *slash = strrchr(p, '/');
        *slash = '\0';
        sw_mkdir_p(p);
        *slash = '/';
        r.fds[k] = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (r.fds[k] < 0 || ftruncate(r.fds[k], (off_t)t.files[k].length) != 0) {
            printf("error cannot create %s: %s\n", p, strerror(errno));
            free(base);
            free(p);
            goto out;
        }
        free(base);
        free(p);
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sw_bt_net *net = sw__bt_net_new(&loop, NULL);
    r.ws = net ? sw__bt_webseed_new(net, url, &t.l, &cfg, on_piece, &r) : NULL;
    if (!r.ws) {
        printf("error cannot create the web seed for %s\n", url);
        sw__bt_net_free(net);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        goto out;
    }
    uv_timer_init(&loop, &r.timer);
    r.timer.data = &r;
    uint64_t t0 = sw_time_ms(), deadline = t0 + timeout_s * 1000;
    ws_pump(&r);
    while (!r.finished && sw_time_ms() < deadline && uv_run(&loop, UV_RUN_ONCE)) {}
    double secs = (double)(sw_time_ms() - t0) / 1000.0;
    uint64_t bytes = sw__bt_webseed_bytes(r.ws);
    sw__bt_webseed_free(r.ws);
    sw__bt_net_free(net);
    uv_close((uv_handle_t *)&r.timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (r.n_done == t.l.n_pieces) {
        printf("ok pieces=%u bytes=%llu seconds=%.3f MBps=%.1f\n", r.n_done, (unsigned long long)bytes, secs,
               secs > 0 ? (double)bytes / 1e6 / secs : 0.0);
        rc = 0;
    } else {
        printf("incomplete pieces=%u/%u errors=%u hash_fail=%u\n", r.n_done, t.l.n_pieces, r.n_errors, r.hash_fail);
    }
out:
    for (size_t k = 0; k < t.l.n_files; k++)
        if (r.fds[k] >= 0) close(r.fds[k]);
    free(r.fds);
    free(r.retry);
    mini_free(&t);
    fflush(stdout);
    return rc;
}

/* ---------------------------------------------------------------- session */

struct sess_run {
    uv_loop_t *loop;
    struct sw_bt_session *s;
    int seed, done, failed;
    uint64_t t0;
    uv_signal_t sigterm, sigint;
    uv_timer_t deadline;
};

static void on_sess_event(void *ud, const struct sw_bt_event *ev)
{
    struct sess_run *r = ud;
    switch (ev->type) {
    case SW_BT_EV_LISTENING:
        printf("listening on %u\n", (unsigned)ev->port);
        break;
    case SW_BT_EV_TORRENT_COMPLETE:
        printf("complete %.3f\n", (double)(sw_time_ms() - r->t0) / 1000.0);
        if (!r->seed) {
            r->done = 1;
            uv_stop(r->loop);
        }
        break;
    case SW_BT_EV_PIECE_FAILED:
        printf("piece-failed %u\n", ev->piece);
        break;
    case SW_BT_EV_ERROR:
        printf("error %s: %s\n", sw_strerror(ev->err), ev->msg ? ev->msg : "");
        break;
    default:
        break;
    }
    fflush(stdout);
}

static void on_sess_signal(uv_signal_t *h, int sig)
{
    struct sess_run *r = h->data;
    r->done = 1;
    uv_stop(r->loop);
}

static void on_sess_deadline(uv_timer_t *h)
{
    struct sess_run *r = h->data;
    printf("error timeout\n");
    r->failed = 1;
    uv_stop(r->loop);
}

static int cmd_session(int argc, char **argv)
{
    struct sess_run r = {0};
    const char *bind = "127.0.0.1";
    uint64_t listen = 0, timeout_s = 600;
    const char *peers[64];
    int n_peers = 0, i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
        if (!strcmp(argv[i], "--seed")) {
            r.seed = 1;
            continue;
        }
        if (i + 1 >= argc) return usage("flag without value");
        if (!strcmp(argv[i], "--bind")) bind = argv[++i];
        else if (!strcmp(argv[i], "--listen")) {
            if (parse_u64(argv[i], argv[i + 1], 65535, &listen)) return 2;
            i++;
        } else if (!strcmp(argv[i], "--timeout-s")) {
            if (parse_u64(argv[i], argv[i + 1], 86400, &timeout_s) || !timeout_s) return usage("--timeout-s: 1..86400");
            i++;
        } else if (!strcmp(argv[i], "--peer")) {
            if (n_peers == (int)SW_ARRAY_LEN(peers)) return usage("--peer: at most 64");
            peers[n_peers++] = argv[++i];
        } else {
            return usage("unknown flag");
        }
    }
    if (argc - i != 2) return usage("session TORRENT DIR");
    char err[256];
    struct sw_bt_metainfo mi;
    int rc = sw_bt_metainfo_load(argv[i], &mi, err, sizeof err);
    if (rc) {
        printf("error %s: %s\n", argv[i], err);
        return 1;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    r.loop = &loop;
    struct sw_bt_session_opts so = {.listen_host = bind, .listen_port = (uint16_t)listen,
                                    .on_event = on_sess_event, .ud = &r};
    rc = sw_bt_session_new(&loop, &so, &r.s, err, sizeof err);
    if (rc) {
        printf("error session: %s\n", err);
        sw_bt_metainfo_free(&mi);
        return 1;
    }
    struct sw_bt_netglue *g = sw__bt_netglue_new(&loop, r.s);
    struct sw_bt_torrent_opts to = {.dir = argv[i + 1], .want_all = 1, .seed_only = r.seed,
                                    .trust_complete = r.seed};
    struct sw_bt_torrent *t = NULL;
    r.t0 = sw_time_ms();
    rc = sw_bt_torrent_add(r.s, &mi, &to, &t, err, sizeof err);
    if (rc) {
        printf("error torrent: %s\n", err);
        r.failed = 1;
    } else {
        sw__bt_netglue_add_torrent(g, t, NULL, 0);
        for (int k = 0; k < n_peers; k++) {
            char host[256];
            const char *colon = strrchr(peers[k], ':');
            if (!colon || colon == peers[k] || (size_t)(colon - peers[k]) >= sizeof host) return usage("--peer IP:PORT");
            memcpy(host, peers[k], (size_t)(colon - peers[k]));
            host[colon - peers[k]] = '\0';
            sw_bt_torrent_add_peer(t, host, (uint16_t)atoi(colon + 1));
        }
        if (sw_bt_torrent_complete(t) && !r.seed) {
            printf("complete 0\n");
            r.done = 1;
        }
        if (r.seed) printf("seeding\n");
        fflush(stdout);
        uv_signal_init(&loop, &r.sigterm);
        uv_signal_init(&loop, &r.sigint);
        r.sigterm.data = r.sigint.data = &r;
        uv_signal_start(&r.sigterm, on_sess_signal, SIGTERM);
        uv_signal_start(&r.sigint, on_sess_signal, SIGINT);
        uv_timer_init(&loop, &r.deadline);
        r.deadline.data = &r;
        if (!r.seed) uv_timer_start(&r.deadline, on_sess_deadline, timeout_s * 1000, 0);
        if (!r.done) uv_run(&loop, UV_RUN_DEFAULT);
        uv_close((uv_handle_t *)&r.sigterm, NULL);
        uv_close((uv_handle_t *)&r.sigint, NULL);
        uv_close((uv_handle_t *)&r.deadline, NULL);
    }
    sw__bt_netglue_close(g); /* event=stopped, bounded */
    sw_bt_session_close(r.s);
    uint64_t until = sw_time_ms() + 5000;
    while (sw_time_ms() < until && uv_run(&loop, UV_RUN_ONCE)) {}
    sw_bt_session_free(r.s);
    until = sw_time_ms() + 5000;
    while (uv_loop_alive(&loop) && sw_time_ms() < until) uv_run(&loop, UV_RUN_NOWAIT);
    if (uv_loop_close(&loop) != 0) fprintf(stderr, "bench_bt_netprobe: libuv handles left open at exit\n");
    sw_bt_metainfo_free(&mi);
    fflush(stdout);
    return r.failed ? 1 : r.done || r.seed ? 0 : 1;
}

static void log_stderr(void *ud, enum sw_log_level level, const char *subsys, const char *msg)
{
    fprintf(stderr, "[%s] %s: %s\n", subsys, sw_log_level_name(level), msg);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* SW_PROBE_DEBUG=1: every log line; otherwise INFO and above. */
    sw_log_set(log_stderr, NULL, getenv("SW_PROBE_DEBUG") ? SW_LOG_DEBUG : SW_LOG_INFO);
    if (argc < 2) return usage("commands: announce, parse, ranges, webseed");
    if (!strcmp(argv[1], "announce")) return cmd_announce(argc - 1, argv + 1);
    if (!strcmp(argv[1], "parse")) return cmd_parse(argc - 1, argv + 1);
    if (!strcmp(argv[1], "ranges")) return cmd_ranges(argc - 1, argv + 1);
    if (!strcmp(argv[1], "webseed")) return cmd_webseed(argc - 1, argv + 1);
    if (!strcmp(argv[1], "session")) return cmd_session(argc - 1, argv + 1);
    return usage("unknown command");
}
