/* node.c — a swarm node on one libuv loop: the startup shard check, the BitTorrent session
 * for the model torrent (our shard wanted, everything held seeded), the DHT (bootstrap,
 * announce, find peers), the shardswarm BEP 10 extension (signed capability records in the
 * extended handshake and pushed on every change, gossip relay, keep-alive pings, LOAD_SHARD),
 * the shards-folder watch, the planner, and the [STATUS]/[READY] lines.
 * Hashing and loading run on libuv worker threads. The decisions themselves live in the
 * pure files (view.c, planner.c, command.c); this file is glue and policy.
 * Not for: pipeline sessions (pipeline*.c), HTTP (src/api). */
#include "swarm/node_int.h"

char *sw__node_xstrdup(const char *s)
{
    if (!s) return NULL;
    size_t l = strlen(s) + 1;
    char *d = malloc(l);
    if (d) memcpy(d, s, l);
    return d;
}

static uint64_t wall_ms(void)
{
    uv_timeval64_t tv;
    if (uv_gettimeofday(&tv)) return 0;
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* Something the status depends on changed: recompute on this loop iteration (coalesced). */
void sw__node_mark_dirty(struct sw_node *n)
{
    n->dirty = 1;
    if (n->handles_open && !n->stopping) uv_async_send(&n->async);
}

/* ------------------------------------------------------------------ own record */

static void fill_progress(struct sw_node *n)
{
    n->cap.bytes_done = n->cap.bytes_total = n->cap.rate_bps = n->cap.eta_ms = 0;
    if (n->shard < 0 || !n->t || !n->shard_file) return;
    struct sw_bt_progress pr;
    if (sw_bt_torrent_progress(n->t, n->shard_file[n->shard], &pr)) return;
    n->cap.bytes_done = pr.bytes_done;
    n->cap.bytes_total = pr.bytes_total;
    n->cap.rate_bps = pr.rate_bps > 0 ? (uint64_t)pr.rate_bps : 0;
    n->cap.eta_ms = pr.eta_ms == UINT64_MAX ? 0 : pr.eta_ms;
    if (n->cap.bytes_done > n->cap.bytes_total) n->cap.bytes_done = n->cap.bytes_total;
}

void sw__node_publish(struct sw_node *n, int changed)
{
    if (!n->view || n->stopping) return;
    struct sw_cap *c = &n->cap;
    memcpy(c->node_id, n->id.pk, SW_NODE_ID_LEN);
    memcpy(c->info_hash, n->info_hash, 20);
    uint64_t w = wall_ms();
    c->seq = w > c->seq ? w : c->seq + 1; /* survives restarts: a new run starts above the old */
    c->shard = n->cfg.seed_all ? -1 : n->shard;
    c->phase = (uint8_t)(n->cfg.seed_all ? SW_PHASE_NONE : n->phase);
    c->seed_all = n->cfg.seed_all ? 1 : 0;
    c->movable = n->auto_mode ? 1 : 0;
    fill_progress(n);
    c->layer_first = c->layer_last = -1;
    if (n->shard >= 0 && n->shard_lf) {
        c->layer_first = n->shard_lf[n->shard];
        c->layer_last = n->shard_ll[n->shard];
    }
    uint64_t mem = 0;
    sw_sys_mem_available(&mem);
    c->mem_free = mem;
    c->threads = n->cfg.threads ? n->cfg.threads : (uint32_t)sw_sys_ncpu();
    c->tokens_per_s_milli = n->tps > 0 ? (uint32_t)SW_MIN(n->tps * 1000.0, 4e9) : 0;
    c->queue = n->queue;
    c->gpu[0] = 0;
    c->gpu_mem = 0;
    c->gpu_layers = 0;
    if (n->stage && sw_stage_info(n->stage)->gpu_layers) {
        const struct sw_stage_info *si = sw_stage_info(n->stage);
        snprintf(c->gpu, sizeof c->gpu, "%.63s", si->device);
        for (char *p = c->gpu; *p; p++)
            if (*p < 0x20 || *p > 0x7e) *p = '?'; /* records carry printable ASCII */
        c->gpu_mem = si->device_mem;
        c->gpu_layers = si->gpu_layers;
    }
    if (n->cfg.api_port)
        snprintf(c->api_addr, sizeof c->api_addr, "%.48s:%u", n->api_host ? n->api_host : "127.0.0.1",
                 n->cfg.api_port);
    if (n->local_ip[0] && n->port)
        snprintf(c->listen_addr, sizeof c->listen_addr, "%.48s:%u", n->local_ip, n->port);
    c->n_neighbours = 0;
    for (struct peer *p = n->peers; p && c->n_neighbours < SW_SWARM_MAX_NEIGHBOURS; p = p->next) {
        if (!p->has_id) continue;
        int dup = 0;
        for (uint32_t i = 0; i < c->n_neighbours; i++)
            dup |= !memcmp(c->neighbours[i], p->id, SW_SWARM_NB_PREFIX);
        if (!dup) memcpy(c->neighbours[c->n_neighbours++], p->id, SW_SWARM_NB_PREFIX);
    }
    n->wire.len = 0;
    if (sw_cap_encode(c, &n->id, &n->wire)) return;
    sw_view_set_self(n->view, c, n->wire.data, n->wire.len, sw_time_ms());
    n->last_refresh = sw_time_ms();
    if (changed) {
        struct sw_buf hv = { 0 };
        sw_benc_str(&hv, n->wire.data, n->wire.len);
        if (sw_buf_ok(&hv)) sw_bt_session_set_handshake_extra(n->bt, SW_SWARM_HS_KEY, hv.data, hv.len);
        sw_buf_free(&hv);
        sw__node_mark_dirty(n);
    }
    sw__node_relay_record(n, n->id.pk, NULL, n->wire.data, n->wire.len);
}

/* ------------------------------------------------------------------ BT + DHT events */

static void on_bt_event(void *ud, const struct sw_bt_event *ev)
{
    struct sw_node *n = ud;
    if (n->stopping) return;
    switch (ev->type) {
    case SW_BT_EV_FILE_COMPLETE:
        if (n->shard >= 0 && n->shard_file && ev->file == n->shard_file[n->shard] && !n->job &&
            n->phase != SW_PHASE_LOADED && !n->drained) {
            sw_log(SW_LOG_INFO, "SHARD", "shard %d downloaded and verified (%s)", (int)n->shard,
                   sw_bt_torrent_file_path(n->t, (uint32_t)ev->file));
            sw__node_start_load(n, 0);
        }
        break;
    case SW_BT_EV_PIECE_FAILED:
        sw_log(SW_LOG_WARN, "BT", "piece %u failed its hash; the sender is banned, the piece is fetched again",
               ev->piece);
        break;
    case SW_BT_EV_ERROR:
        sw_log(SW_LOG_ERROR, "BT", "%s", ev->msg ? ev->msg : sw_strerror(ev->err));
        if (n->shard >= 0 && n->shard_file && ev->file == n->shard_file[n->shard]) sw__node_disk_error(n, ev);
        break;
    case SW_BT_EV_METADATA:
        break; /* handled by the tick (model_setup) */
    default:
        break;
    }
}

static void on_dht_event(void *ud, const struct sw_dht_event *ev)
{
    struct sw_node *n = ud;
    if (n->stopping) return;
    if (ev->type == SW_DHT_EV_PEER && !ev->is_self && n->t) {
        char a[64];
        if (ev->addr.port == n->port && (ev->addr.family == 4 && !memcmp(ev->addr.ip, "\x7f\0\0\x01", 4))) return;
        sw_log(SW_LOG_DEBUG, "DHT", "peer %s", sw_dht_addr_str(&ev->addr, a, sizeof a));
        if (ev->addr.family == 4) {
            struct sockaddr_in sin = { 0 };
            sin.sin_family = AF_INET;
            memcpy(&sin.sin_addr, ev->addr.ip, 4);
            sin.sin_port = htons(ev->addr.port);
            sw_bt_torrent_add_peer_addr(n->t, &sin);
        } else {
            struct sockaddr_in6 s6 = { 0 };
            s6.sin6_family = AF_INET6;
            memcpy(&s6.sin6_addr, ev->addr.ip, 16);
            s6.sin6_port = htons(ev->addr.port);
            sw_bt_torrent_add_peer_addr(n->t, &s6);
        }
    } else if (ev->type == SW_DHT_EV_READY) {
        sw_log(SW_LOG_INFO, "DHT", "bootstrapped; announcing the model");
        sw_dht_announce(sw_dht_uv_dht(n->dht), n->dht_ih, n->port, 1, sw_time_ms(), NULL);
        sw_dht_get_peers(sw_dht_uv_dht(n->dht), n->dht_ih, sw_time_ms(), NULL);
    }
}

/* ------------------------------------------------------------------ model */

static void local_ip_for(const char *host, char *out, size_t len)
{
    /* The address our packets to `host` leave from (a UDP connect sends nothing). */
    snprintf(out, len, "127.0.0.1");
    struct sockaddr_in sin = { 0 };
    sin.sin_family = AF_INET;
    sin.sin_port = htons(9);
    if (!host || inet_pton(AF_INET, host, &sin.sin_addr) != 1) return;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) return;
    struct sockaddr_in me;
    socklen_t ml = sizeof me;
    if (!connect(fd, (struct sockaddr *)&sin, sizeof sin) && !getsockname(fd, (struct sockaddr *)&me, &ml))
        inet_ntop(AF_INET, &me.sin_addr, out, (socklen_t)len);
    close(fd);
}

/* Once the metadata is known: shard table, view, command guard, and our shard. */
static int model_setup(struct sw_node *n, char *err, size_t err_len)
{
    n->mi = sw_bt_torrent_metainfo(n->t);
    if (!n->mi) return SW_EAGAIN;
    const struct sw_bt_metainfo *mi = n->mi;
    uint32_t ns = 0;
    for (uint32_t i = 0; i < mi->n_files; i++)
        if (!mi->files[i].pad && mi->files[i].shard_index >= 0) ns = SW_MAX(ns, (uint32_t)mi->files[i].shard_index + 1);
    if (mi->has_shardswarm && mi->n_shards) ns = mi->n_shards;
    if (ns == 0 || ns > SW_SWARM_MAX_SHARDS) {
        snprintf(err, err_len, "%s: the torrent names no shards (no shardswarm dictionary with shard files)", n->model);
        return SW_ECORRUPT;
    }
    n->n_shards = ns;
    n->shard_file = malloc(ns * sizeof *n->shard_file);
    n->shard_bytes = calloc(ns, sizeof *n->shard_bytes);
    n->shard_lf = malloc(ns * sizeof *n->shard_lf);
    n->shard_ll = malloc(ns * sizeof *n->shard_ll);
    if (!n->shard_file || !n->shard_bytes || !n->shard_lf || !n->shard_ll) return SW_ENOMEM;
    for (uint32_t s = 0; s < ns; s++) n->shard_file[s] = -1;
    for (uint32_t i = 0; i < mi->n_files; i++) {
        const struct sw_bt_file *f = &mi->files[i];
        if (f->pad || f->shard_index < 0 || (uint32_t)f->shard_index >= ns) continue;
        n->shard_file[f->shard_index] = (int32_t)i;
        n->shard_bytes[f->shard_index] = f->length;
        n->shard_lf[f->shard_index] = f->layer_first;
        n->shard_ll[f->shard_index] = f->layer_last;
    }
    for (uint32_t s = 0; s < ns; s++)
        if (n->shard_file[s] < 0) {
            snprintf(err, err_len, "%s: the torrent has no file for shard %u", n->model, s);
            return SW_ECORRUPT;
        }
    if (n->cfg.shard >= 0 && (uint32_t)n->cfg.shard >= ns) {
        snprintf(err, err_len, "--shard %d: the model has %u shards (0..%u)", (int)n->cfg.shard, ns, ns - 1);
        return SW_ERANGE;
    }
    if (mi->owner_key_hex[0] && !sw_hex_decode(mi->owner_key_hex, n->owner, 32)) n->has_owner = 1;
    struct sw_cmd_guard_config gc = { 0 };
    gc.owner_pk = n->has_owner ? n->owner : NULL;
    memcpy(gc.self_id, n->id.pk, 32);
    memcpy(gc.info_hash, n->info_hash, 20);
    char *nonce_file = sw_path_join(n->cache_dir, "owner-nonces"); /* replays stay refused across restarts */
    gc.nonce_file = nonce_file;
    int rc = nonce_file ? sw_cmd_guard_new(&gc, &n->guard) : SW_ENOMEM;
    free(nonce_file);
    if (rc) return rc;
    sw_log(SW_LOG_INFO, "NODE", "model %s: %u shards, %s, owner key %s", mi->info_hash_hex, ns,
           mi->architecture[0] ? mi->architecture : "?", n->has_owner ? mi->owner_key_hex : "(none: LOAD_SHARD disabled)");
    /* Startup shard check: loads before joining when the file is complete and verified. */
    int32_t dshard = -1;
    if (!n->cfg.seed_all && sw__node_drained_marked(n, &dshard)) {
        /* the owner's DRAIN stands across the restart: hold (and seed) the file, load nothing */
        n->drained = 1;
        n->auto_mode = 0;
        n->shard = dshard;
        n->phase = SW_PHASE_DRAINED;
        sw_log(SW_LOG_INFO, "SHARD", "drained by the owner's command before this start (%s/drained): shard %d is "
               "not loaded (its file stays and is seeded); a LOAD_SHARD brings the node back", n->cache_dir, (int)dshard);
    } else if (n->cfg.seed_all) {
        for (uint32_t s = 0; s < ns; s++) sw_bt_torrent_want_file(n->t, (uint32_t)n->shard_file[s], 1);
        uint32_t held = 0;
        for (uint32_t s = 0; s < ns; s++) held += sw_bt_torrent_file_complete(n->t, (uint32_t)n->shard_file[s]) ? 1 : 0;
        if (held == ns) sw_log(SW_LOG_INFO, "SHARD", "seeding all %u shards", ns);
        else sw_log(SW_LOG_INFO, "SHARD", "seeding all shards: %u of %u held, fetching the rest", held, ns);
    } else if (n->cfg.shard >= 0) {
        sw__node_set_shard(n, n->cfg.shard, "startup");
    }
    struct sw_view_config vc = { 0 };
    vc.n_shards = ns;
    memcpy(vc.self_id, n->id.pk, 32);
    memcpy(vc.info_hash, n->info_hash, 20);
    if ((rc = sw_view_new(&vc, &n->view))) return rc;
    n->model_ready = 1;
    sw__node_publish(n, 1);
    for (struct peer *p = n->peers, *next; p; p = next) { /* handshakes that came first */
        next = p->next;
        if (p->has_id) { /* proven while we waited for the metadata */
            uint8_t id[SW_NODE_ID_LEN];
            memcpy(id, p->id, SW_NODE_ID_LEN);
            sw__node_authenticated(n, p, id);
        }
        if (!p->pending_hs) continue;
        uint8_t *rec = p->pending_hs;
        p->pending_hs = NULL;
        sw__node_take_handshake_record(n, p, rec, p->pending_len);
        free(rec);
    }
    return 0;
}

/* ------------------------------------------------------------------ loop */

static void drain_loads(struct sw_node *n)
{
    pthread_mutex_lock(&n->mu);
    struct load_req *q = n->loads;
    n->loads = NULL;
    pthread_mutex_unlock(&n->mu);
    while (q) {
        struct load_req *next = q->next;
        char r[256] = "";
        int rc = sw__node_take_load(n, NULL, q->wire, q->len, r, sizeof r);
        pthread_mutex_lock(&n->mu);
        q->rc = rc;
        snprintf(q->reason, sizeof q->reason, "%s", r);
        q->done = 1;
        pthread_cond_broadcast(&n->cv);
        pthread_mutex_unlock(&n->mu);
        q = next;
    }
}

static void on_async(uv_async_t *h)
{
    struct sw_node *n = h->data;
    drain_loads(n);
    if (n->dirty) sw__node_changed(n);
}

/* Dials the --bootstrap nodes again (BitTorrent) and re-contacts them on the DHT. */
static void redial_bootstrap(struct sw_node *n)
{
    for (size_t i = 0; i < n->n_bootstrap; i++) {
        char host[256];
        const char *c = strrchr(n->bootstrap[i], ':');
        if (!c || (size_t)(c - n->bootstrap[i]) >= sizeof host) continue;
        memcpy(host, n->bootstrap[i], (size_t)(c - n->bootstrap[i]));
        host[c - n->bootstrap[i]] = 0;
        if (n->t) sw_bt_torrent_add_peer(n->t, host, (uint16_t)atoi(c + 1));
    }
    if (n->dht && n->n_bootstrap) sw_dht_uv_bootstrap(n->dht, (const char *const *)n->bootstrap, n->n_bootstrap);
}

static void on_tick(uv_timer_t *h)
{
    struct sw_node *n = h->data;
    if (n->stopping) return;
    uint64_t now = sw_time_ms();
    sw__node_hold_expire(n, now);
    if (!n->model_ready) {
        char err[512] = "";
        int rc = model_setup(n, err, sizeof err);
        if (rc && rc != SW_EAGAIN) {
            sw_log(SW_LOG_ERROR, "NODE", "%s", err[0] ? err : sw_strerror(rc));
            n->failed = 1;
            if (n->change_fn) n->change_fn(n->change_ud); /* the host sees sw_node_failed() */
            sw_node_stop(n, NULL, NULL);
            return;
        }
        if (rc == SW_EAGAIN) { /* magnet: keep looking for peers that have the metadata */
            if (now - n->last_rejoin >= REJOIN_MS) {
                n->last_rejoin = now;
                redial_bootstrap(n);
            }
            if (n->dht && now - n->last_getpeers >= 3000) {
                n->last_getpeers = now;
                sw_dht_get_peers(sw_dht_uv_dht(n->dht), n->dht_ih, now, NULL);
            }
            return;
        }
    }
    if (now - n->last_refresh >= REFRESH_MS) sw__node_publish(n, 0);
    if (now - n->last_ping >= PING_MS) {
        n->last_ping = now;
        for (struct peer *p = n->peers; p; p = p->next) {
            if (!p->has_id) continue;
            uint8_t tok[8];
            sw_random_bytes(tok, 8);
            p->ping_token = sw_get_be64(tok);
            p->ping_sent_us = sw_time_us();
            sw__node_send_kind(p, SW_MSG_PING, tok, 8);
        }
    }
    uint32_t gone = sw_view_expire(n->view, now);
    if (gone) {
        sw_log(SW_LOG_INFO, "SWARM", "%u node(s) departed (no record or keep-alive for 4 s)", gone);
        n->dirty = 1;
    }
    if (n->watching && (n->watch_due || now - n->last_watch >= (n->cfg.watch_ms ? n->cfg.watch_ms : WATCH_MS)))
        sw__node_watch_check(n);
    if (n->diskerr.on && now >= n->diskerr.next_ms) sw__node_disk_retry(n, now);
    if (n->unready_since && now - n->unready_since >= UNREADY_DEBOUNCE_MS) n->dirty = 1; /* log the loss now */
    if (now - n->last_poll >= POLL_MS) {
        n->last_poll = now;
        sw__node_check_folder(n);
    }
    if (n->dht && now - n->last_getpeers >= (sw__node_n_swarm_peers(n) < 4 ? 3000u : 30000u)) {
        n->last_getpeers = now;
        sw_dht_get_peers(sw_dht_uv_dht(n->dht), n->dht_ih, now, NULL);
    }
    if (now - n->last_rejoin >= REJOIN_MS) {
        n->last_rejoin = now;
        for (size_t i = 0; i < sw_view_count(n->view); i++) {
            const struct sw_view_node *vn = sw_view_at(n->view, i);
            if (!vn->self && !vn->direct && !sw__node_n_conn_of(n, vn->cap.node_id)) sw__node_connect_to_record(n, &vn->cap);
        }
        if (!sw__node_n_swarm_peers(n)) redial_bootstrap(n);
    }
    sw__node_plan(n, now);
    if (n->measure_pending && !n->job) {
        n->measure_pending = 0;
        sw__node_start_measure(n);
    }
    if (now - n->last_json >= 1000) {
        sw__node_rebuild_json(n); /* progress numbers and counters; the status line only changes on real events */
    }
    if (n->dirty) sw__node_changed(n);
    else if (now - n->last_status >= (n->cfg.status_interval_ms ? n->cfg.status_interval_ms : 5000)) sw__node_status_line(n, 1);
}

int sw_node_submit_load(struct sw_node *n, const uint8_t *wire, size_t len, char *reason, size_t reason_len)
{
    if (!n || !wire || !len || len > 4096) return SW_EINVAL;
    uv_thread_t self = uv_thread_self();
    if (uv_thread_equal(&self, &n->loop_thread)) return sw__node_take_load(n, NULL, wire, len, reason, reason_len);
    struct load_req q = { 0 };
    q.wire = malloc(len);
    if (!q.wire) return SW_ENOMEM;
    memcpy(q.wire, wire, len);
    q.len = len;
    pthread_mutex_lock(&n->mu);
    if (n->stopping) {
        pthread_mutex_unlock(&n->mu);
        free(q.wire);
        return SW_ECLOSED;
    }
    q.next = n->loads;
    n->loads = &q;
    uv_async_send(&n->async); /* under the lock: stop closes the handle only after setting stopping */
    pthread_mutex_unlock(&n->mu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    pthread_mutex_lock(&n->mu);
    while (!q.done) {
        if (pthread_cond_timedwait(&n->cv, &n->mu, &ts) == ETIMEDOUT) break;
    }
    int done = q.done, rc = q.rc;
    if (!done) { /* unlink ourselves */
        struct load_req **pp = &n->loads;
        while (*pp && *pp != &q) pp = &(*pp)->next;
        if (*pp) *pp = q.next;
    }
    snprintf(reason, reason_len, "%s", done ? q.reason : "the node did not answer in time");
    pthread_mutex_unlock(&n->mu);
    free(q.wire);
    return done ? rc : SW_ETIMEDOUT;
}

/* ------------------------------------------------------------------ life */

int sw_node_new(struct uv_loop_s *loop, const struct sw_node_config *cfg, struct sw_node **out,
                char *err, size_t err_len)
{
    if (!loop || !cfg || !out || !cfg->model || !cfg->cache_dir) return SW_EINVAL;
    struct sw_node *n = calloc(1, sizeof *n);
    if (!n) return SW_ENOMEM;
    n->loop = loop;
    n->cfg = *cfg;
    n->model = sw__node_xstrdup(cfg->model);
    n->cache_dir = sw__node_xstrdup(cfg->cache_dir);
    n->shards_dir = sw_path_join(cfg->cache_dir, "shards");
    n->api_host = sw__node_xstrdup(cfg->api_host ? cfg->api_host : "127.0.0.1");
    n->cfg.model = n->model;
    n->cfg.cache_dir = n->cache_dir;
    n->shard = -1;
    n->pre_final = -1;
    n->replan_target = -1;
    n->auto_mode = cfg->shard == -2;
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    n->loop_thread = uv_thread_self();
    *out = n;
    if (!n->model || !n->cache_dir || !n->shards_dir || !n->api_host) return SW_ENOMEM;
    if (cfg->n_bootstrap) {
        n->bootstrap = calloc(cfg->n_bootstrap, sizeof *n->bootstrap);
        if (!n->bootstrap) return SW_ENOMEM;
        for (size_t i = 0; i < cfg->n_bootstrap; i++) n->bootstrap[i] = sw__node_xstrdup(cfg->bootstrap[i]);
        n->n_bootstrap = cfg->n_bootstrap;
    }
    n->cfg.bootstrap = NULL;
    int rc;
    if (!strncmp(cfg->model, "magnet:", 7)) {
        n->is_magnet = 1;
        rc = sw_bt_magnet_parse(cfg->model, &n->magnet, err, err_len);
        if (rc) return rc;
        memcpy(n->info_hash, n->magnet.info_hash, 20);
    } else {
        rc = sw_bt_metainfo_load(cfg->model, &n->mi_file, err, err_len);
        if (rc) return rc;
        memcpy(n->info_hash, n->mi_file.info_hash, 20);
    }
    memcpy(n->dht_ih, n->info_hash, 20);
    if (cfg->swarm_key) { /* private swarm: outsiders can't find it under the model's info-hash */
        n->private_swarm = 1;
        memcpy(n->swarm_key, cfg->swarm_key, 32);
        sw_swarm_dht_infohash(n->swarm_key, n->info_hash, n->dht_ih);
    }
    n->cfg.swarm_key = NULL;
    /* the model is usable: now the cache folder, our key and the shards folder */
    rc = sw_identity_load_or_create(cfg->cache_dir, &n->id, NULL, err, err_len);
    if (rc) return rc;
    sw_node_id_short(n->id.pk, n->id_short, sizeof n->id_short);
    rc = sw_mkdir_p(n->shards_dir);
    if (rc) {
        snprintf(err, err_len, "%s: cannot create the shards folder (%s)", n->shards_dir, sw_strerror(rc));
        return rc;
    }
    return 0;
}

int sw_node_start(struct sw_node *n, char *err, size_t err_len)
{
    if (!n) return SW_EINVAL;
    char hex[65];
    sw_log(SW_LOG_INFO, "NODE", "node id %s (key in %s/node.key)", sw_node_id_hex(n->id.pk, hex), n->cache_dir);
    n->loop_thread = uv_thread_self();
    n->started_ms = sw_time_ms();
    sw__node_rebuild_json(n); /* "starting" until the storage has looked at the shard files */
    struct sw_bt_session_opts so = { 0 };
    so.listen_port = n->cfg.listen_port;
    so.listen_host = n->cfg.bind_host; /* --bind (NULL: 0.0.0.0) */
    so.on_event = on_bt_event;
    so.ud = n;
    so.swarm_key = n->private_swarm ? n->swarm_key : NULL;
    so.msg_budget = n->cfg.msg_budget;
    int rc = sw_bt_session_new(n->loop, &so, &n->bt, err, err_len);
    if (rc) return rc;
    n->port = sw_bt_session_port(n->bt);
    struct sw_bt_ext_ops ops = { 0 };
    ops.name = SW_SWARM_EXT_NAME;
    ops.on_peer_connected = sw__node_on_ext_connected;
    ops.on_handshake = sw__node_on_ext_handshake;
    ops.on_message = sw__node_on_ext_message;
    ops.msg_cap = sw__node_msg_cap;
    ops.on_peer_closed = sw__node_on_ext_closed;
    ops.ud = n;
    if ((rc = sw_bt_session_register_ext(n->bt, &ops))) {
        snprintf(err, err_len, "cannot register the swarm extension: %s", sw_strerror(rc));
        return rc;
    }
    struct sw_bt_torrent_opts to = { 0 };
    to.dir = n->shards_dir;
    to.want_all = n->cfg.seed_all;
    to.verify_all = n->cfg.verify;
    to.trust_complete = 0; /* a file without resume data is hashed before it counts */
    to.on_hash = sw__node_on_hash; /* progress lines and the status while it hashes */
    to.hash_ud = n;
    if (!n->is_magnet && n->cfg.shard >= 0) {
        /* Remember whether our shard's file is there under its final name: if the storage
         * then finds bad pieces (and renames it to .part), the log must say "corrupt". */
        for (uint32_t i = 0; i < n->mi_file.n_files; i++) {
            const struct sw_bt_file *f = &n->mi_file.files[i];
            if (f->pad || f->shard_index != n->cfg.shard) continue;
            char *path = sw_path_join(n->shards_dir, f->path);
            uint64_t sz = 0;
            if (path && !sw_file_size(path, &sz) && sz == f->length) n->pre_final = n->cfg.shard;
            free(path);
        }
    }
    if (n->is_magnet) rc = sw_bt_torrent_add_magnet(n->bt, &n->magnet, &to, &n->t, err, err_len);
    else rc = sw_bt_torrent_add(n->bt, &n->mi_file, &to, &n->t, err, err_len);
    if (rc) return rc;
    /* the local address peers reach us at */
    char bhost[256] = "";
    if (n->n_bootstrap) {
        const char *c = strrchr(n->bootstrap[0], ':');
        if (c && (size_t)(c - n->bootstrap[0]) < sizeof bhost) {
            memcpy(bhost, n->bootstrap[0], (size_t)(c - n->bootstrap[0]));
            bhost[c - n->bootstrap[0]] = 0;
        }
    }
    const char *bind = n->cfg.bind_host;
    if (bind && strcmp(bind, "0.0.0.0") && strcmp(bind, "::")) snprintf(n->local_ip, sizeof n->local_ip, "%s", bind);
    else local_ip_for(bhost[0] ? bhost : "127.0.0.1", n->local_ip, sizeof n->local_ip);
    /* Startup shard check and load, before joining. */
    if (!n->is_magnet) {
        rc = model_setup(n, err, err_len);
        if (rc) return rc;
    }
    /* Join: DHT on the same port number (UDP), bootstrap, announce; bootstrap peers dialed. */
    struct sw_dht_uv_config dc = { 0 };
    dc.dht.on_event = on_dht_event;
    dc.dht.ud = n;
    dc.swarm_key = n->private_swarm ? n->swarm_key : NULL;
    dc.port = n->port;
    dc.bind_host = bind;
    if (bind && strchr(bind, ':')) dc.dht.family = 6; /* an IPv6 --bind: the IPv6 DHT (BEP 32) */
    char *state = sw_path_join(n->cache_dir, "dht.state");
    dc.state_path = state;
    int derr = 0;
    n->dht = sw_dht_uv_new(n->loop, &dc, &derr);
    free(state);
    if (!n->dht)
        sw_log(SW_LOG_WARN, "DHT", "no DHT (UDP port %u: %s); using --bootstrap peers and gossip only", n->port,
               sw_strerror(derr));
    sw_log(SW_LOG_INFO, "NODE", "listening on port %u (BitTorrent TCP, DHT UDP)%s", n->port,
           n->private_swarm ? "; private swarm: members only, links and DHT encrypted" : "");
    if (n->dht) {
        if (n->n_bootstrap) sw_dht_uv_bootstrap(n->dht, (const char *const *)n->bootstrap, n->n_bootstrap);
        sw_dht_announce(sw_dht_uv_dht(n->dht), n->dht_ih, n->port, 1, sw_time_ms(), NULL);
    }
    for (size_t i = 0; i < n->n_bootstrap; i++) {
        char host[256];
        const char *c = strrchr(n->bootstrap[i], ':');
        if (!c || (size_t)(c - n->bootstrap[i]) >= sizeof host) continue;
        memcpy(host, n->bootstrap[i], (size_t)(c - n->bootstrap[i]));
        host[c - n->bootstrap[i]] = 0;
        sw_bt_torrent_add_peer(n->t, host, (uint16_t)atoi(c + 1));
    }
    uv_timer_init(n->loop, &n->tick);
    n->tick.data = n;
    uv_timer_start(&n->tick, on_tick, TICK_MS, TICK_MS);
    uv_async_init(n->loop, &n->async, on_async);
    n->async.data = n;
    n->handles_open = 1;
    if (!uv_fs_event_init(n->loop, &n->fsev)) {
        n->fsev.data = n;
        n->fsev_on = !uv_fs_event_start(&n->fsev, sw__node_on_fs_event, n->shards_dir, 0);
        if (!n->fsev_on) uv_close((uv_handle_t *)&n->fsev, NULL);
    }
    if (n->model_ready) {
        sw__node_publish(n, 1);
        sw__node_changed(n);
    } else {
        sw_log(SW_LOG_INFO, "NODE", "waiting for the model's metadata from peers (magnet)");
        sw__node_rebuild_json(n);
    }
    return 0;
}

static void closed_cb(uv_handle_t *h)
{
    (void)h;
}

void sw_node_stop(struct sw_node *n, void (*done)(void *ud), void *ud)
{
    if (!n || n->stopping) return;
    for (struct peer *p = n->peers; p; p = p->next)
        if (p->has_id) sw__node_send_kind(p, SW_MSG_BYE, NULL, 0);
    pthread_mutex_lock(&n->mu);
    n->stopping = 1;
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    drain_loads(n);
    sw__node_retire_stage(n, "the node is stopping"); /* freed once the pipeline's jobs are done */
    n->stop_done = done;
    n->stop_ud = ud;
    if (n->handles_open) {
        uv_timer_stop(&n->tick);
        uv_close((uv_handle_t *)&n->tick, closed_cb);
        uv_close((uv_handle_t *)&n->async, closed_cb);
        if (n->fsev_on) {
            uv_fs_event_stop(&n->fsev);
            uv_close((uv_handle_t *)&n->fsev, closed_cb);
        }
        n->handles_open = 0;
    }
    if (n->dht) {
        sw_dht_uv_close(n->dht);
        n->dht = NULL;
    }
    if (n->bt) sw_bt_session_close(n->bt);
    if (done) done(ud);
}

void sw_node_free(struct sw_node *n)
{
    if (!n) return;
    sw__node_watch_stop(n);
    sw_stage_free(n->stage);
    while (n->holds) {
        struct hold *h = n->holds;
        n->holds = h->next;
        sw__node_hold_free(h);
    }
    sw_bt_session_free(n->bt);
    sw_view_free(n->view);
    sw_cmd_guard_free(n->guard);
    while (n->peers) {
        struct peer *p = n->peers;
        n->peers = p->next;
        free(p->pending_hs);
        free(p);
    }
    sw_bt_metainfo_free(&n->mi_file);
    if (n->is_magnet) sw_bt_magnet_free(&n->magnet);
    for (size_t i = 0; i < n->n_bootstrap; i++) free(n->bootstrap[i]);
    free(n->bootstrap);
    free(n->shard_file);
    free(n->shard_bytes);
    free(n->shard_lf);
    free(n->shard_ll);
    free(n->last_sig);
    free(n->status_json);
    sw_buf_free(&n->wire);
    free(n->model);
    free(n->cache_dir);
    free(n->shards_dir);
    free(n->api_host);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
    free(n);
}

struct uv_loop_s *sw_node_loop(struct sw_node *n) { return n ? n->loop : NULL; }
const struct sw_view *sw_node_view(const struct sw_node *n) { return n ? n->view : NULL; }
const uint8_t *sw_node_id(const struct sw_node *n) { return n ? n->id.pk : NULL; }
struct sw_stage *sw_node_stage(struct sw_node *n) { return n ? n->stage : NULL; }
int sw_node_failed(const struct sw_node *n) { return n ? n->failed : 0; }
const struct sw_bt_metainfo *sw_node_metainfo(const struct sw_node *n) { return n && n->model_ready ? n->mi : NULL; }

int sw_node_shard_file(struct sw_node *n, int32_t *shard_out, uint32_t *file_out, const char **path_out)
{
    if (!n || !n->model_ready || !n->stage || n->phase != SW_PHASE_LOADED || n->shard < 0) return SW_ENOTFOUND;
    const char *path = sw_bt_torrent_file_path(n->t, (uint32_t)n->shard_file[n->shard]);
    if (!path) return SW_ENOTFOUND;
    if (shard_out) *shard_out = n->shard;
    if (file_out) *file_out = (uint32_t)n->shard_file[n->shard];
    if (path_out) *path_out = path;
    return 0;
}

void sw_node_set_pipe_handler(struct sw_node *n, sw_node_pipe_fn fn, void *ud)
{
    if (!n) return;
    n->pipe_fn = fn;
    n->pipe_ud = ud;
}

void sw_node_set_msg_cap(struct sw_node *n, sw_node_msg_cap_fn fn, void *ud)
{
    if (!n) return;
    n->cap_fn = fn;
    n->cap_ud = ud;
}

void sw_node_set_api_addr(struct sw_node *n, const char *host, uint16_t port)
{
    if (!n) return;
    char *h = sw__node_xstrdup(host ? host : "127.0.0.1");
    if (!h) return;
    free(n->api_host);
    n->api_host = h;
    n->cfg.api_port = port;
    n->cap.api_addr[0] = 0;
    sw__node_publish(n, 1);
}

void sw_node_set_status_extra(struct sw_node *n, void (*fn)(void *ud, struct json_t *root), void *ud)
{
    if (!n) return;
    n->status_extra = fn;
    n->status_extra_ud = ud;
}

void sw_node_set_queue(struct sw_node *n, uint32_t queue)
{
    if (!n || n->queue == queue) return;
    n->queue = queue;
    sw__node_publish(n, 1);
}

void sw_node_set_peer_handler(struct sw_node *n, sw_node_peer_fn fn, void *ud)
{
    if (!n) return;
    n->peer_fn = fn;
    n->peer_ud = ud;
}

void sw_node_set_stage_release(struct sw_node *n, sw_node_release_fn fn, void *ud)
{
    if (!n) return;
    n->release_fn = fn;
    n->release_ud = ud;
}

void sw_node_set_change_handler(struct sw_node *n, sw_node_change_fn fn, void *ud)
{
    if (!n) return;
    n->change_fn = fn;
    n->change_ud = ud;
}
