/* node_status.c — what a node says about the swarm: the [STATUS]/[READY] lines and the
 * status JSON (/swarm/status). Readiness itself is decided in view.c. */
#include "swarm/node_int.h"

/* ------------------------------------------------------------------ status */

void sw__node_status_line(struct sw_node *n, int force)
{
    if (!n->view) return;
    uint32_t ns = n->n_shards, disc = sw_view_n_discovered(n->view);
    int ready = sw_view_ready(n->view);
    size_t peers = sw__node_n_swarm_peers(n);
    char reasons[2048];
    sw_view_reasons(n->view, reasons, sizeof reasons);
    struct sw_buf me = { 0 };
    if (n->cfg.seed_all) sw_buf_printf(&me, "seeding all shards");
    else if (n->shard < 0) sw_buf_printf(&me, n->auto_mode ? "shard auto: planning" : "no shard");
    else if (n->phase == SW_PHASE_FETCHING) {
        struct sw_bt_progress pr = { 0 };
        sw_bt_torrent_progress(n->t, n->shard_file[n->shard], &pr);
        unsigned pct = pr.bytes_total ? (unsigned)(pr.bytes_done * 100 / pr.bytes_total) : 0;
        char rate[32], eta[32];
        sw_fmt_bytes((uint64_t)(pr.rate_bps > 0 ? pr.rate_bps : 0), rate, sizeof rate);
        if (pr.eta_ms != UINT64_MAX && pr.rate_bps > 0) sw_fmt_duration_ms(pr.eta_ms, eta, sizeof eta);
        else snprintf(eta, sizeof eta, "unknown");
        sw_buf_printf(&me, "shard %d fetching %u%% at %s/s, ETA %s, %u peers with it", (int)n->shard, pct, rate, eta,
                      pr.n_peers);
    } else if (n->phase == SW_PHASE_FAILED && n->diskerr.on) {
        char need[32], fr[32];
        sw_fmt_bytes(n->diskerr.need, need, sizeof need);
        sw_fmt_bytes(n->diskerr.free, fr, sizeof fr);
        sw_buf_printf(&me, "shard %d failed: %s cannot be written (%s; needs %s, %s free)", (int)n->shard,
                      n->diskerr.path, n->diskerr.code == SW_ENOSPC ? "disk full" : "not writable", need, fr);
    } else sw_buf_printf(&me, "shard %d %s", (int)n->shard, sw_phase_name(n->phase));
    /* what counts as a change: phases per node and shard, readiness, discovery, peers */
    struct sw_buf sig = { 0 };
    sw_buf_printf(&sig, "%d|%u|%zu|%d|%d", ready, disc, peers, (int)n->shard, n->phase);
    for (size_t i = 0; i < sw_view_count(n->view); i++) {
        const struct sw_view_node *vn = sw_view_at(n->view, i);
        if (vn->live) sw_buf_printf(&sig, "|%02x%02x:%d:%d", vn->cap.node_id[0], vn->cap.node_id[1], vn->cap.shard, vn->cap.phase);
    }
    const char *s = sw_buf_cstr(&sig);
    int changed = s && (!n->last_sig || strcmp(s, n->last_sig));
    uint64_t now = sw_time_ms();
    uint32_t interval = n->cfg.status_interval_ms ? n->cfg.status_interval_ms : 5000;
    if (changed || force || now - n->last_status >= interval) {
        sw_log(SW_LOG_INFO, "STATUS", "%s | discovered %u/%u shards | peers %zu | %s%s", sw_buf_cstr(&me), disc, ns,
               peers, ready ? "ready" : "not ready: ", ready ? "" : reasons);
        n->last_status = now;
        if (changed) {
            free(n->last_sig);
            n->last_sig = sw__node_xstrdup(s);
        }
    }
    if (ready && !n->was_ready) {
        struct sw_buf b = { 0 };
        for (uint32_t k = 0; k < ns; k++) {
            uint8_t best[32];
            char ids[16];
            if (!sw_view_best_node(n->view, k, best))
                sw_buf_printf(&b, "%sshard %u \xe2\x86\x92 %s", k ? ", " : "", k, sw_node_id_short(best, ids, sizeof ids));
        }
        sw_log(SW_LOG_INFO, "READY", "swarm ready: all %u shards loaded (best: %s)", ns, sw_buf_cstr(&b) ? sw_buf_cstr(&b) : "");
        sw_buf_free(&b);
        n->ever_ready = 1;
        n->was_ready = 1;
    } else if (!ready && n->was_ready) {
        /* Debounced: a node that restarts, or a connection replaced while two nodes dial each
         * other, can make the view unready for a few ms; only a loss that lasts
         * UNREADY_DEBOUNCE_MS is reported (the tick looks again). */
        if (!n->unready_since) n->unready_since = now ? now : 1;
        if (now - n->unready_since >= UNREADY_DEBOUNCE_MS) {
            sw_log(SW_LOG_WARN, "STATUS", "swarm no longer ready: %s", reasons);
            n->was_ready = 0;
            n->unready_since = 0;
        }
    }
    if (ready) n->unready_since = 0;
    sw_buf_free(&me);
    sw_buf_free(&sig);
}

void sw__node_changed(struct sw_node *n)
{
    sw__node_status_line(n, 0);
    sw__node_rebuild_json(n);
    if (n->change_fn) n->change_fn(n->change_ud);
    n->dirty = 0;
}

/* ------------------------------------------------------------------ JSON */

static json_t *node_json(struct sw_node *n, const struct sw_view_node *vn)
{
    char hex[65];
    const struct sw_cap *c = &vn->cap;
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(sw_node_id_hex(c->node_id, hex)));
    char ids[16];
    json_object_set_new(o, "short", json_string(sw_node_id_short(c->node_id, ids, sizeof ids)));
    json_object_set_new(o, "self", json_boolean(vn->self));
    json_object_set_new(o, "live", json_boolean(vn->live));
    json_object_set_new(o, "direct", json_boolean(vn->direct));
    json_object_set_new(o, "rtt_us", json_integer(vn->rtt_us));
    json_object_set_new(o, "shard", json_integer(c->shard));
    json_object_set_new(o, "phase", json_string(sw_phase_name(c->phase)));
    json_object_set_new(o, "loaded", json_boolean(c->phase == SW_PHASE_LOADED && c->shard >= 0));
    json_object_set_new(o, "seed_all", json_boolean(c->seed_all));
    json_object_set_new(o, "auto", json_boolean(c->movable));
    json_object_set_new(o, "bytes_done", json_integer((json_int_t)c->bytes_done));
    json_object_set_new(o, "bytes_total", json_integer((json_int_t)c->bytes_total));
    json_object_set_new(o, "progress", json_real(c->bytes_total ? (double)c->bytes_done / (double)c->bytes_total : 0));
    json_object_set_new(o, "rate_bps", json_integer((json_int_t)c->rate_bps));
    json_object_set_new(o, "eta_ms", json_integer((json_int_t)c->eta_ms));
    json_object_set_new(o, "layer_first", json_integer(c->layer_first));
    json_object_set_new(o, "layer_last", json_integer(c->layer_last));
    json_object_set_new(o, "mem_free", json_integer((json_int_t)c->mem_free));
    json_object_set_new(o, "threads", json_integer(c->threads));
    json_object_set_new(o, "tokens_per_s", json_real(c->tokens_per_s_milli / 1000.0));
    json_object_set_new(o, "queue", json_integer(c->queue));
    if (c->gpu[0]) {
        json_t *gj = json_object();
        json_object_set_new(gj, "device", json_string(c->gpu));
        json_object_set_new(gj, "memory", json_integer((json_int_t)c->gpu_mem));
        json_object_set_new(gj, "layers", json_integer(c->gpu_layers));
        json_object_set_new(o, "gpu", gj);
    }
    json_object_set_new(o, "api", json_string(c->api_addr));
    json_object_set_new(o, "listen", json_string(c->listen_addr));
    json_object_set_new(o, "seq", json_integer((json_int_t)c->seq));
    json_object_set_new(o, "age_ms", json_integer(vn->self ? 0 : (json_int_t)(sw_time_ms() - vn->last_seen_ms)));
    (void)n;
    return o;
}

void sw__node_rebuild_json(struct sw_node *n)
{
    n->last_json = sw_time_ms();
    json_t *root = json_object();
    char hex[65];
    json_object_set_new(root, "node_id", json_string(sw_node_id_hex(n->id.pk, hex)));
    char ih[41];
    sw_hex_encode(n->info_hash, 20, ih);
    json_object_set_new(root, "info_hash", json_string(ih));
    json_object_set_new(root, "model_ready", json_boolean(n->model_ready));
    json_object_set_new(root, "listen_port", json_integer(n->port));
    json_object_set_new(root, "dht_port", json_integer(n->dht ? sw_dht_uv_port(n->dht) : 0));
    json_object_set_new(root, "owner_key", json_string(n->mi ? n->mi->owner_key_hex : ""));
    if (n->view) {
        json_object_set_new(root, "n_shards", json_integer(n->n_shards));
        json_object_set_new(root, "ready", json_boolean(sw_view_ready(n->view)));
        json_object_set_new(root, "discovered", json_integer(sw_view_n_discovered(n->view)));
        json_object_set_new(root, "peers", json_integer((json_int_t)sw__node_n_swarm_peers(n)));
        json_t *self = json_object();
        json_object_set_new(self, "shard", json_integer(n->shard));
        json_object_set_new(self, "phase", json_string(sw_phase_name(n->cfg.seed_all ? SW_PHASE_NONE : n->phase)));
        json_object_set_new(self, "auto", json_boolean(n->auto_mode));
        json_object_set_new(self, "seed_all", json_boolean(n->cfg.seed_all));
        json_object_set_new(self, "tokens_per_s", json_real(n->tps));
        json_object_set_new(self, "queue", json_integer(n->queue)); /* pipeline sessions on our stage */
        json_object_set_new(self, "steps_refused", json_integer((json_int_t)n->steps_refused)); /* file changed */
        const struct sw_cores *cl = n->stage ? sw_stage_cores(n->stage) : NULL;
        if (cl) { /* the cores this machine's nodes share (infer.h: core lease) */
            uint64_t waits, wait_us;
            sw_cores_waited(cl, &waits, &wait_us);
            json_t *co = json_object();
            json_object_set_new(co, "budget", json_integer(sw_cores_budget(cl)));
            json_object_set_new(co, "dir", json_string(sw_cores_dir(cl)));
            json_object_set_new(co, "waits", json_integer((json_int_t)waits));
            json_object_set_new(co, "wait_ms", json_real((double)wait_us / 1000.0));
            json_object_set_new(self, "core_lease", co);
        }
        if (n->shard >= 0)
            json_object_set_new(self, "path", json_string(sw_bt_torrent_file_path(n->t, (uint32_t)n->shard_file[n->shard])));
        json_object_set_new(root, "self", self);
        json_t *reasons = json_array(), *shards = json_array();
        for (uint32_t s = 0; s < n->n_shards; s++) {
            char r[1024];
            if (sw_view_shard_reason(n->view, s, r, sizeof r)) json_array_append_new(reasons, json_string(r));
            struct sw_shard_view sv;
            sw_view_shard(n->view, s, &sv);
            json_t *so = json_object();
            json_object_set_new(so, "shard", json_integer(s));
            json_object_set_new(so, "layer_first", json_integer(n->shard_lf[s]));
            json_object_set_new(so, "layer_last", json_integer(n->shard_ll[s]));
            json_object_set_new(so, "bytes", json_integer((json_int_t)n->shard_bytes[s]));
            json_object_set_new(so, "ready", json_boolean(sv.n_loaded > 0));
            json_object_set_new(so, "announced", json_integer(sv.n_announced));
            json_object_set_new(so, "loaded", json_integer(sv.n_loaded));
            json_object_set_new(so, "seeders", json_integer(sv.n_seeders));
            json_object_set_new(so, "best", sv.has_best ? json_string(sw_node_id_hex(sv.best, hex)) : json_null());
            json_object_set_new(so, "reason", r[0] ? json_string(r) : json_null());
            json_t *nodes = json_array();
            for (size_t i = 0; i < sw_view_count(n->view); i++) {
                const struct sw_view_node *vn = sw_view_at(n->view, i);
                if (vn->live && vn->cap.shard == (int32_t)s && !vn->cap.seed_all)
                    json_array_append_new(nodes, node_json(n, vn));
            }
            json_object_set_new(so, "nodes", nodes);
            json_array_append_new(shards, so);
        }
        json_object_set_new(root, "reasons", reasons);
        json_object_set_new(root, "shards", shards);
        json_t *all = json_array();
        for (size_t i = 0; i < sw_view_count(n->view); i++) {
            const struct sw_view_node *vn = sw_view_at(n->view, i);
            /* a light client (no shard, `generate --swarm`, `node --client`) that left is gone,
             * not a departed node: every run would leave one in every node's table */
            if (!vn->live && !vn->self && vn->cap.shard < 0 && !vn->cap.seed_all) continue;
            json_array_append_new(all, node_json(n, vn));
        }
        json_object_set_new(root, "nodes", all);
        struct sw_view_stats st = sw_view_stats(n->view);
        json_t *js = json_object();
        json_object_set_new(js, "records_accepted", json_integer((json_int_t)st.accepted));
        json_object_set_new(js, "records_stale", json_integer((json_int_t)st.stale));
        json_object_set_new(js, "records_malformed", json_integer((json_int_t)st.malformed));
        json_object_set_new(js, "records_unsigned_or_bad_sig", json_integer((json_int_t)st.unsigned_or_bad_sig));
        json_object_set_new(js, "records_wrong_model", json_integer((json_int_t)st.wrong_model));
        json_object_set_new(js, "departures", json_integer((json_int_t)st.departed));
        json_object_set_new(root, "stats", js);
    } else {
        json_object_set_new(root, "ready", json_false());
        json_t *reasons = json_array();
        char r[1200];
        if (n->hashing)
            snprintf(r, sizeof r, "this node is starting: verifying %s (%u%%)", n->hash_path,
                     (unsigned)(n->hash_done * 100 / (n->hash_total ? n->hash_total : 1)));
        else
            snprintf(r, sizeof r, "%s", n->is_magnet ? "the model's metadata is not known yet (magnet: waiting for peers)"
                                                     : "this node is starting");
        json_array_append_new(reasons, json_string(r));
        json_object_set_new(root, "reasons", reasons);
        json_t *self = json_object();
        json_object_set_new(self, "shard", json_integer(n->cfg.shard >= 0 ? n->cfg.shard : -1));
        json_object_set_new(self, "phase", json_string(sw_phase_name(n->hashing ? SW_PHASE_VERIFYING : SW_PHASE_NONE)));
        json_object_set_new(root, "self", self);
    }
    json_t *self = json_object_get(root, "self");
    if (self && n->diskerr.on) { /* our shard's file cannot be written: what, where, how much */
        json_t *e = json_object();
        char m[1300];
        snprintf(m, sizeof m, "%s: %s", n->diskerr.path,
                 n->diskerr.code == SW_ENOSPC ? "disk full" : n->diskerr.code == SW_EPERM ? "not writable"
                 : n->diskerr.code == SW_ENOTFOUND ? "the folder vanished" : sw_strerror(n->diskerr.code));
        json_object_set_new(e, "message", json_string(m));
        json_object_set_new(e, "path", json_string(n->diskerr.path));
        json_object_set_new(e, "code", json_string(sw_strerror(n->diskerr.code)));
        json_object_set_new(e, "bytes_needed", json_integer((json_int_t)n->diskerr.need));
        json_object_set_new(e, "bytes_free", json_integer((json_int_t)n->diskerr.free));
        json_object_set_new(e, "retry", json_string(n->diskerr.code == SW_ENOSPC ? "retried when enough space is free"
                                                                                  : "retried when the folder is writable"));
        json_object_set_new(self, "error", e);
    }
    if (self && n->hashing) { /* the storage is hashing a file found on disk */
        double secs = (double)(sw_time_ms() - n->hash_t0_ms) / 1000.0;
        double rate = secs > 0 ? (double)n->hash_done / secs : 0;
        json_t *v = json_object();
        json_object_set_new(v, "path", json_string(n->hash_path ? n->hash_path : ""));
        json_object_set_new(v, "bytes_done", json_integer((json_int_t)n->hash_done));
        json_object_set_new(v, "bytes_total", json_integer((json_int_t)n->hash_total));
        json_object_set_new(v, "rate_bps", json_real(rate));
        json_object_set_new(v, "eta_ms", json_integer(rate > 0 ? (json_int_t)((double)(n->hash_total - n->hash_done) / rate * 1000.0) : -1));
        json_object_set_new(self, "verify", v);
        json_object_set_new(self, "phase", json_string(sw_phase_name(SW_PHASE_VERIFYING)));
    }
    if (n->dht) {
        struct sw_dht_stats ds;
        sw_dht_get_stats(sw_dht_uv_dht(n->dht), &ds);
        json_t *d = json_object();
        json_object_set_new(d, "nodes", json_integer(ds.nodes));
        json_object_set_new(d, "good_nodes", json_integer(ds.good_nodes));
        json_object_set_new(d, "packets_in", json_integer((json_int_t)ds.packets_in));
        json_object_set_new(root, "dht", d);
    }
    struct sw_bt_progress bp;
    if (n->t && !sw_bt_torrent_progress(n->t, -1, &bp)) { /* this session's BitTorrent totals */
        json_t *b = json_object();
        json_object_set_new(b, "downloaded_bytes", json_integer((json_int_t)bp.downloaded));
        json_object_set_new(b, "uploaded_bytes", json_integer((json_int_t)bp.uploaded));
        json_object_set_new(b, "download_bps", json_real(bp.rate_bps));
        json_object_set_new(b, "upload_bps", json_real(bp.upload_bps));
        json_object_set_new(b, "peers", json_integer(sw_bt_torrent_n_peers(n->t)));
        struct sw_bt_budget_stats mb; /* the message buffer budget (docs/security.md) */
        sw_bt_session_budget(n->bt, &mb);
        json_object_set_new(b, "msg_budget_bytes", json_integer((json_int_t)mb.budget));
        json_object_set_new(b, "msg_buffered_bytes", json_integer((json_int_t)mb.used));
        json_object_set_new(b, "msg_buffered_peak_bytes", json_integer((json_int_t)mb.peak));
        json_object_set_new(b, "msg_waiting", json_integer(mb.waiting));
        json_object_set_new(b, "msg_waits", json_integer((json_int_t)mb.waits));
        json_object_set_new(b, "msg_closed", json_integer((json_int_t)(mb.closed_wait + mb.closed_slow)));
        json_object_set_new(root, "bt", b);
    }
    if (n->status_extra) n->status_extra(n->status_extra_ud, root); /* e.g. "pipeline" */
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!text) return;
    pthread_mutex_lock(&n->mu);
    free(n->status_json);
    n->status_json = text;
    pthread_mutex_unlock(&n->mu);
}

char *sw_node_status_json(struct sw_node *n)
{
    if (!n) return NULL;
    pthread_mutex_lock(&n->mu);
    char *s = sw__node_xstrdup(n->status_json ? n->status_json : "{\"ready\":false,\"reasons\":[\"starting\"]}");
    pthread_mutex_unlock(&n->mu);
    return s;
}
