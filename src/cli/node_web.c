/* node_web.c — GET /metrics (Prometheus text exposition format 0.0.4) and the live dashboard
 * (web/, embedded at build time) on a node's HTTP API. Every figure comes from the node's
 * status snapshot (sw_node_status_json: rebuilt on the loop thread, copied under a lock), the
 * same document /swarm/status serves, plus this process's own RSS/CPU/start time; so these
 * handlers touch nothing of the node's loop. Not for: figures the status does not carry. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "api/api.h"
#include "cli/node_web.h"
#include "swarm/swarm.h"

/* Prometheus text format 0.0.4: "text/plain; version=0.0.4" (exposition_formats.md). */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* ------------------------------------------------------------ text writer */

/* Exposition format: in HELP text, backslash and line feed are escaped as \\ and \n. */
static void put_help_text(struct sw_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\') sw_buf_append(b, "\\\\", 2);
        else if (*s == '\n') sw_buf_append(b, "\\n", 2);
        else sw_buf_append_byte(b, (uint8_t)*s);
    }
}

/* Exposition format: label values may hold any UTF-8; backslash, double quote and line feed
 * are escaped as \\, \" and \n. */
static void put_label_value(struct sw_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\') sw_buf_append(b, "\\\\", 2);
        else if (*s == '"') sw_buf_append(b, "\\\"", 2);
        else if (*s == '\n') sw_buf_append(b, "\\n", 2);
        else sw_buf_append_byte(b, (uint8_t)*s);
    }
}

/* "# HELP name text" and "# TYPE name type": once per family, before its samples. */
static void family(struct sw_buf *b, const char *name, const char *type, const char *help)
{
    sw_buf_printf(b, "# HELP %s ", name);
    put_help_text(b, help);
    sw_buf_printf(b, "\n# TYPE %s %s\n", name, type);
}

/* Sample values are Go ParseFloat syntax: integers print exactly, NaN/±Inf by name. */
static void put_value(struct sw_buf *b, double v)
{
    if (isnan(v)) sw_buf_printf(b, " NaN\n");
    else if (isinf(v)) sw_buf_printf(b, " %sInf\n", v > 0 ? "+" : "-");
    else if (v == floor(v) && fabs(v) < 9007199254740992.0) sw_buf_printf(b, " %.0f\n", v);
    else sw_buf_printf(b, " %.15g\n", v);
}

static void sample(struct sw_buf *b, const char *name, double v)
{
    sw_buf_printf(b, "%s", name);
    put_value(b, v);
}

/* A sample with one label. */
static void sample1(struct sw_buf *b, const char *name, const char *label, const char *value, double v)
{
    sw_buf_printf(b, "%s{%s=\"", name, label);
    put_label_value(b, value);
    sw_buf_printf(b, "\"}");
    put_value(b, v);
}

static void sample1u(struct sw_buf *b, const char *name, const char *label, long long lv, double v)
{
    char s[32];
    snprintf(s, sizeof s, "%lld", lv);
    sample1(b, name, label, s, v);
}

/* ------------------------------------------------------------ JSON access */

/* A number (integer, real or boolean) at key; 1 when present. */
static int jnum(const json_t *o, const char *key, double *out)
{
    const json_t *v = o ? json_object_get(o, key) : NULL;
    if (json_is_integer(v)) *out = (double)json_integer_value(v);
    else if (json_is_real(v)) *out = json_real_value(v);
    else if (json_is_boolean(v)) *out = json_is_true(v) ? 1 : 0;
    else return 0;
    return 1;
}

/* family + one unlabelled sample, only when the status has the figure (no made-up zeros). */
static void one(struct sw_buf *b, const json_t *o, const char *key, double scale, const char *name,
                const char *type, const char *help)
{
    double v;
    if (!jnum(o, key, &v)) return;
    family(b, name, type, help);
    sample(b, name, v * scale);
}

/* The node entry of ourselves in "nodes" (self: true), or NULL. */
static const json_t *self_node(const json_t *root)
{
    const json_t *nodes = json_object_get(root, "nodes");
    size_t i;
    const json_t *n;
    json_array_foreach(nodes, i, n) {
        if (json_is_true(json_object_get(n, "self"))) return n;
    }
    return NULL;
}

/* ------------------------------------------------------------ process */

/* Seconds since the Unix epoch when this process started: /proc/self/stat field 22
 * (starttime, clock ticks after boot) + /proc/stat "btime". Linux only; 0 elsewhere. */
static double process_start_time(void)
{
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return 0;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* field 2 (comm) is in parentheses and may hold spaces: count fields after the last ')' */
    char *p = strrchr(buf, ')');
    if (!p) return 0;
    unsigned long long ticks = 0;
    int field = 2;
    char *save = NULL;
    for (char *t = strtok_r(p + 1, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        if (++field == 22) {
            ticks = strtoull(t, NULL, 10);
            break;
        }
    }
    f = fopen("/proc/stat", "r");
    if (!f || !ticks) {
        if (f) fclose(f);
        return 0;
    }
    unsigned long long btime = 0;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "btime %llu", &btime) == 1) break;
    fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    if (!btime || hz <= 0) return 0;
    return (double)btime + (double)ticks / (double)hz;
}

static void process_metrics(struct sw_buf *b)
{
    size_t rss = 0;
    if (uv_resident_set_memory(&rss) == 0) {
        family(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        sample(b, "process_resident_memory_bytes", (double)rss);
    }
    uv_rusage_t ru;
    if (uv_getrusage(&ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                     (double)ru.ru_stime.tv_usec / 1e6;
        family(b, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
        sample(b, "process_cpu_seconds_total", cpu);
    }
    double start = process_start_time();
    if (start > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
        family(b, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
        sample(b, "process_start_time_seconds", start);
        family(b, "shardswarm_uptime_seconds", "gauge", "Seconds since this node process started.");
        sample(b, "shardswarm_uptime_seconds", now > start ? now - start : 0);
    }
}

/* ------------------------------------------------------------ metrics */

int sw_cli_metrics_text(const char *status_json, struct sw_buf *b)
{
    json_error_t jerr;
    json_t *root = status_json ? json_loads(status_json, 0, &jerr) : NULL;
    if (!json_is_object(root)) {
        json_decref(root);
        return SW_ECORRUPT;
    }
    double v;
    family(b, "shardswarm_build_info", "gauge", "Always 1; the version of this shardswarm build.");
    sample1(b, "shardswarm_build_info", "version", SW_VERSION, 1);
    const char *nid = json_string_value(json_object_get(root, "node_id"));
    const char *ih = json_string_value(json_object_get(root, "info_hash"));
    if (nid && ih) {
        family(b, "shardswarm_node_info", "gauge", "Always 1; this node's id (ed25519 public key) and the model's info-hash.");
        sw_buf_printf(b, "shardswarm_node_info{node_id=\"");
        put_label_value(b, nid);
        sw_buf_printf(b, "\",info_hash=\"");
        put_label_value(b, ih);
        sw_buf_printf(b, "\"} 1\n");
    }
    one(b, root, "model_ready", 1, "shardswarm_model_resolved", "gauge",
        "1 once the model's metadata (torrent info dictionary) is known.");
    one(b, root, "ready", 1, "shardswarm_swarm_ready", "gauge",
        "1 when every shard has at least one live node with it loaded.");
    const json_t *reasons = json_object_get(root, "reasons");
    if (json_is_array(reasons)) {
        family(b, "shardswarm_swarm_not_ready_reasons", "gauge",
               "Reasons that block readiness (one per blocking shard; /swarm/status has the text).");
        sample(b, "shardswarm_swarm_not_ready_reasons", (double)json_array_size(reasons));
    }
    one(b, root, "n_shards", 1, "shardswarm_shards", "gauge", "Shards of the model.");
    one(b, root, "discovered", 1, "shardswarm_shards_discovered", "gauge",
        "Shards that at least one live node announced.");
    const json_t *shards = json_object_get(root, "shards");
    if (json_is_array(shards)) {
        size_t i, n_loaded = 0;
        const json_t *s;
        json_array_foreach(shards, i, s) {
            if (jnum(s, "loaded", &v) && v > 0) n_loaded++;
        }
        family(b, "shardswarm_shards_loaded", "gauge", "Shards with at least one live node that has it loaded.");
        sample(b, "shardswarm_shards_loaded", (double)n_loaded);
        static const struct {
            const char *key, *name, *help;
        } per_shard[] = {
            { "loaded", "shardswarm_shard_loaded_replicas", "Live nodes with this shard loaded." },
            { "announced", "shardswarm_shard_announced_nodes", "Live nodes naming this shard (any phase)." },
            { "seeders", "shardswarm_shard_seeders", "Live --seed-all nodes holding this shard's file." },
            { "bytes", "shardswarm_shard_size_bytes", "Size of this shard's file." },
        };
        for (size_t k = 0; k < sizeof per_shard / sizeof per_shard[0]; k++) {
            family(b, per_shard[k].name, "gauge", per_shard[k].help);
            json_array_foreach(shards, i, s) {
                double idx;
                if (jnum(s, "shard", &idx) && jnum(s, per_shard[k].key, &v))
                    sample1u(b, per_shard[k].name, "shard", (long long)idx, v);
            }
        }
    }
    one(b, root, "peers", 1, "shardswarm_peers", "gauge", "Peer connections to swarm nodes.");
    const json_t *nodes = json_object_get(root, "nodes");
    if (json_is_array(nodes)) {
        size_t i, live = 0, departed = 0, direct = 0;
        const json_t *n;
        json_array_foreach(nodes, i, n) {
            if (json_is_true(json_object_get(n, "live"))) live++;
            else departed++;
            if (json_is_true(json_object_get(n, "direct"))) direct++;
        }
        family(b, "shardswarm_swarm_nodes", "gauge", "Nodes known to this node (itself included), by state.");
        sample1(b, "shardswarm_swarm_nodes", "state", "live", (double)live);
        sample1(b, "shardswarm_swarm_nodes", "state", "departed", (double)departed);
        family(b, "shardswarm_swarm_nodes_direct", "gauge", "Nodes with a live direct connection to this node.");
        sample(b, "shardswarm_swarm_nodes_direct", (double)direct);
        family(b, "shardswarm_peer_rtt_seconds", "gauge",
               "Measured round trip to a directly connected node (label: the first 16 hex digits of its id).");
        json_array_foreach(nodes, i, n) {
            const char *id = json_string_value(json_object_get(n, "id"));
            if (id && json_is_true(json_object_get(n, "direct")) && json_is_true(json_object_get(n, "live")) &&
                jnum(n, "rtt_us", &v) && v > 0) {
                char pre[17];
                snprintf(pre, sizeof pre, "%.16s", id);
                sample1(b, "shardswarm_peer_rtt_seconds", "node", pre, v / 1e6);
            }
        }
    }
    /* this node */
    const json_t *self = json_object_get(root, "self");
    if (json_is_object(self)) {
        one(b, self, "shard", 1, "shardswarm_node_shard", "gauge", "The shard this node holds (-1: none).");
        const char *phase = json_string_value(json_object_get(self, "phase"));
        if (phase) { /* a state set: one sample per phase, 1 for the current one */
            family(b, "shardswarm_node_phase", "gauge", "1 for what this node is doing with its shard, 0 for the other phases.");
            for (int p = 0; p < SW_PHASE_COUNT_; p++)
                sample1(b, "shardswarm_node_phase", "phase", sw_phase_name((enum sw_phase)p),
                        !strcmp(phase, sw_phase_name((enum sw_phase)p)));
        }
        one(b, self, "tokens_per_s", 1, "shardswarm_node_tokens_per_second", "gauge",
            "Decode speed of this node's stage, measured when it loaded (0: not measured).");
        one(b, self, "queue", 1, "shardswarm_stage_sessions", "gauge", "Pipeline sessions open on this node's stage.");
        const json_t *co = json_object_get(self, "core_lease");
        if (json_is_object(co)) {
            one(b, co, "budget", 1, "shardswarm_core_lease_cores", "gauge",
                "Cores shared by this machine's nodes (--machine-cores).");
            one(b, co, "waits", 1, "shardswarm_core_lease_waits_total", "counter",
                "Compute steps that had to wait for a core of the lease.");
            one(b, co, "wait_ms", 1e-3, "shardswarm_core_lease_wait_seconds_total", "counter",
                "Time compute steps spent waiting for a core of the lease.");
        }
    }
    const json_t *me = self_node(root);
    if (me) {
        one(b, me, "threads", 1, "shardswarm_node_threads", "gauge", "Compute threads of this node.");
        one(b, me, "bytes_total", 1, "shardswarm_shard_download_size_bytes", "gauge",
            "Size of the shard file this node holds or fetches.");
        one(b, me, "bytes_done", 1, "shardswarm_shard_download_done_bytes", "gauge",
            "Bytes of this node's shard file present and verified.");
        one(b, me, "rate_bps", 1, "shardswarm_shard_download_rate_bytes_per_second", "gauge",
            "Download rate of this node's shard file (0 when not fetching).");
        if (jnum(me, "eta_ms", &v) && v > 0) {
            family(b, "shardswarm_shard_download_eta_seconds", "gauge",
                   "Estimated time until this node's shard file is complete (only while fetching).");
            sample(b, "shardswarm_shard_download_eta_seconds", v / 1e3);
        }
    }
    const json_t *st = json_object_get(root, "stats");
    if (json_is_object(st)) {
        static const struct {
            const char *key, *result;
        } rec[] = {
            { "records_accepted", "accepted" },
            { "records_stale", "stale" },
            { "records_malformed", "malformed" },
            { "records_unsigned_or_bad_sig", "bad_signature" },
            { "records_wrong_model", "wrong_model" },
        };
        family(b, "shardswarm_records_total", "counter",
               "Signed capability records received from peers, by what became of them.");
        for (size_t k = 0; k < sizeof rec / sizeof rec[0]; k++)
            if (jnum(st, rec[k].key, &v)) sample1(b, "shardswarm_records_total", "result", rec[k].result, v);
        one(b, st, "departures", 1, "shardswarm_node_departures_total", "counter",
            "Nodes seen leaving (BYE, lost connection or silence).");
    }
    const json_t *dht = json_object_get(root, "dht");
    if (json_is_object(dht)) {
        one(b, dht, "nodes", 1, "shardswarm_dht_nodes", "gauge", "Nodes in the DHT routing table.");
        one(b, dht, "good_nodes", 1, "shardswarm_dht_good_nodes", "gauge", "Good nodes (BEP 5) in the DHT routing table.");
        one(b, dht, "packets_in", 1, "shardswarm_dht_packets_received_total", "counter", "DHT (KRPC) packets received.");
    }
    const json_t *bt = json_object_get(root, "bt");
    if (json_is_object(bt)) {
        one(b, bt, "downloaded_bytes", 1, "shardswarm_bt_downloaded_bytes_total", "counter",
            "BitTorrent payload bytes received this session (all files).");
        one(b, bt, "uploaded_bytes", 1, "shardswarm_bt_uploaded_bytes_total", "counter",
            "BitTorrent payload bytes sent to peers this session.");
        one(b, bt, "download_bps", 1, "shardswarm_bt_download_rate_bytes_per_second", "gauge",
            "BitTorrent download rate (5 s window).");
        one(b, bt, "upload_bps", 1, "shardswarm_bt_upload_rate_bytes_per_second", "gauge",
            "BitTorrent upload rate.");
        one(b, bt, "peers", 1, "shardswarm_bt_peers", "gauge", "Connected BitTorrent peers.");
        one(b, bt, "msg_budget_bytes", 1, "shardswarm_bt_msg_budget_bytes", "gauge",
            "Bytes of incoming messages the node buffers at once, all peers together (--msg-budget).");
        one(b, bt, "msg_buffered_bytes", 1, "shardswarm_bt_msg_buffered_bytes", "gauge",
            "Bytes of the message budget taken by messages being received now.");
        one(b, bt, "msg_buffered_peak_bytes", 1, "shardswarm_bt_msg_buffered_peak_bytes", "gauge",
            "The most bytes of the message budget taken at once since start.");
        one(b, bt, "msg_waiting", 1, "shardswarm_bt_msg_waiting_connections", "gauge",
            "Connections not read now: their next message waits for room in the budget.");
        one(b, bt, "msg_waits", 1, "shardswarm_bt_msg_waits_total", "counter",
            "Times a connection had to wait for room in the message budget.");
        one(b, bt, "msg_closed", 1, "shardswarm_bt_msg_closed_total", "counter",
            "Connections closed after waiting 30 s for room, or for a message holding room too slowly.");
    }
    const json_t *pl = json_object_get(root, "pipeline");
    if (json_is_object(pl)) {
        static const struct {
            const char *key, *name, *type, *help;
        } pm[] = {
            { "entry_sessions", "shardswarm_entry_sessions", "gauge", "Sessions this node opened as an entry, open now." },
            { "sessions_opened", "shardswarm_stage_sessions_opened_total", "counter", "Sessions opened on this node's stage." },
            { "sessions_refused", "shardswarm_stage_sessions_refused_total", "counter",
              "Sessions this stage refused (limits: --max-sessions, --max-kv-mb)." },
            { "sessions_evicted", "shardswarm_stage_sessions_evicted_total", "counter", "Idle sessions evicted from this stage." },
            { "failovers", "shardswarm_failovers_total", "counter", "Sessions moved to a replica after a stage failed." },
            { "replays", "shardswarm_replays_total", "counter", "Replays of kept inputs to a replica (failover)." },
            { "compute_steps", "shardswarm_compute_steps_total", "counter", "Compute steps run by this node's stage." },
            { "compute_seconds", "shardswarm_compute_seconds_total", "counter", "Run time of this stage's compute steps." },
            { "batched_steps", "shardswarm_compute_batched_steps_total", "counter",
              "Compute steps that carried several sessions at once." },
            { "tokens_computed", "shardswarm_stage_tokens_total", "counter",
              "Token positions this stage computed (prompt and generated)." },
            { "kept_bytes", "shardswarm_stage_kept_bytes", "gauge", "Inputs kept for failover replays, bytes." },
            { "kv_bytes", "shardswarm_stage_kv_bytes", "gauge", "KV-cache memory of this stage's sessions, bytes." },
            { "tokens_generated", "shardswarm_entry_tokens_total", "counter",
              "Tokens delivered to the sessions this node opened as the entry (its API or clients)." },
            { "messages_malformed", "shardswarm_pipeline_messages_malformed_total", "counter",
              "Pipeline messages refused as malformed." },
        };
        for (size_t k = 0; k < sizeof pm / sizeof pm[0]; k++) one(b, pl, pm[k].key, 1, pm[k].name, pm[k].type, pm[k].help);
        const json_t *ds = json_object_get(pl, "decode_steps");
        if (json_is_array(ds) && json_array_size(ds)) {
            static const struct {
                const char *key, *name, *help;
            } dm[] = {
                { "steps", "shardswarm_decode_steps_total", "Decode-sized compute steps, by the sessions each carried." },
                { "seconds", "shardswarm_decode_step_seconds_total", "Run time of those steps, by sessions per step." },
                { "cpu_seconds", "shardswarm_decode_step_cpu_seconds_total",
                  "The node process's CPU time (all threads) while those steps ran, by sessions per step." },
            };
            for (size_t m = 0; m < sizeof dm / sizeof dm[0]; m++) {
                family(b, dm[m].name, "counter", dm[m].help);
                size_t i;
                const json_t *d;
                json_array_foreach(ds, i, d) {
                    double k, v;
                    if (jnum(d, "sessions", &k) && jnum(d, dm[m].key, &v)) sample1u(b, dm[m].name, "sessions", (long long)k, v);
                }
            }
        }
        const json_t *sp = json_object_get(pl, "spot");
        if (json_is_object(sp)) {
            one(b, sp, "checks", 1, "shardswarm_spot_checks_total", "counter",
                "Spot checks this node asked for as an entry (a step recomputed on a replica).");
            one(b, sp, "passed", 1, "shardswarm_spot_checks_passed_total", "counter", "Spot checks whose rows agreed.");
            one(b, sp, "failed", 1, "shardswarm_spot_checks_failed_total", "counter",
                "Spot checks that found wrong hidden states (the node was excluded).");
            one(b, sp, "inconclusive", 1, "shardswarm_spot_checks_inconclusive_total", "counter",
                "Spot checks with no verdict (no witness rows, a refusal, a timeout).");
            one(b, sp, "audits_served", 1, "shardswarm_spot_audits_served_total", "counter",
                "Spot checks this node recomputed for other entries.");
            const json_t *dl = json_object_get(sp, "distrusted");
            family(b, "shardswarm_spot_distrusted_nodes", "gauge", "Nodes excluded from this entry's routes by a failed spot check.");
            sample(b, "shardswarm_spot_distrusted_nodes", (double)json_array_size(dl));
            size_t i;
            const json_t *d;
            json_array_foreach(dl, i, d) {
                const char *id = json_string_value(json_object_get(d, "node"));
                if (!i) family(b, "shardswarm_spot_distrusted_node", "gauge",
                               "A node excluded by a failed spot check (value: its relative error).");
                sample1(b, "shardswarm_spot_distrusted_node", "node", id ? id : "",
                        json_number_value(json_object_get(d, "rel_err")));
            }
        }
    }
    json_decref(root);
    process_metrics(b);
    return sw_buf_ok(b) ? 0 : SW_ENOMEM;
}

/* ------------------------------------------------------------ handlers */

static void metrics_handler(void *ud, const struct sw_api_request *req, struct sw_api_response *resp)
{
    (void)req;
    char *js = sw_node_status_json(ud);
    struct sw_buf b = { 0 };
    int rc = js ? sw_cli_metrics_text(js, &b) : SW_ENOMEM;
    free(js);
    if (rc || !sw_buf_cstr(&b)) {
        sw_buf_free(&b);
        sw_api_error(resp, 500, rc == SW_ECORRUPT ? "the node's status is not JSON" : "out of memory");
        return;
    }
    resp->content_type = METRICS_CONTENT_TYPE;
    resp->body = (char *)b.data; /* ownership passes to the API */
    resp->body_len = b.len;
}

/* An embedded file; ud is its struct sw_web_asset. The API frees the body: a copy. */
static void asset_handler(void *ud, const struct sw_api_request *req, struct sw_api_response *resp)
{
    (void)req;
    const struct sw_web_asset *a = ud;
    resp->body = malloc(a->len + 1);
    if (!resp->body) {
        sw_api_error(resp, 500, "out of memory");
        return;
    }
    memcpy(resp->body, a->bytes, a->len + 1);
    resp->body_len = a->len;
    resp->content_type = a->content_type;
}

int sw_cli_node_web_attach(struct sw_api *api, struct sw_node *node)
{
    if (!api || !node) return SW_EINVAL;
    int rc = sw_api_route(api, "GET", "/metrics", metrics_handler, node);
    for (const struct sw_web_asset *a = sw_web_assets; !rc && a->url; a++) {
        rc = sw_api_route(api, "GET", a->url, asset_handler, (void *)a);
        if (!rc) rc = sw_api_open(api, a->url); /* static files carry no data: no key needed */
        if (!rc && !strcmp(a->url, "/")) {
            rc = sw_api_route(api, "GET", "/dashboard", asset_handler, (void *)a);
            if (!rc) rc = sw_api_open(api, "/dashboard");
        }
    }
    return rc;
}
