/* cmd_node.c — `shardswarm node`: runs a swarm node (src/swarm) on one libuv loop with the
 * pipeline engine attached (it serves pipeline sessions on its shard: docs/pipeline.md), and
 * the local HTTP API (src/api) when --api is given. Ctrl-C hands the sessions on its stage
 * over (their entries fail over to a replica), tells peers and exits 0. */
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <uv.h>

#include "api/api.h"
#include "infer/infer.h"
#include "cli.h"
#include "node_web.h"
#include "node_openai.h"
#include "swarm/swarm.h"

#define MAX_BOOTSTRAP 64

static void usage(FILE *f)
{
    fprintf(f,
            "usage: shardswarm node --model TORRENT|MAGNET --cache DIR [options]\n\n"
            "Runs a swarm node: finds its shard in DIR/shards (loads it before joining), or\n"
            "fetches it from the swarm; joins the DHT and the model's BitTorrent swarm; tells\n"
            "peers what it holds; says every few seconds whether the swarm is ready and, if\n"
            "not, why.\n\n"
            "  --model TORRENT|MAGNET  the model (.torrent file or magnet link)\n"
            "  --cache DIR             node key, shards/ folder, resume and DHT state\n"
            "  --shard N|auto          the shard to hold (auto: the planner picks; default auto)\n"
            "  --bootstrap HOST:PORT   a node to join through (repeatable); its listen port\n"
            "  --listen PORT           BitTorrent TCP and DHT UDP port (default 0: any free port,\n"
            "                          printed in the 'listening on port' line)\n"
            "  --bind ADDR             address BitTorrent and the DHT listen on: an IPv4 or IPv6\n"
            "                          literal of this machine (default 0.0.0.0: every interface)\n"
            "  --api PORT              HTTP API (/v1 OpenAI-compatible) + dashboard (docs/api.md) on\n"
            "                          127.0.0.1:PORT (0: any free port, printed in the [API] line)\n"
            "  --api-host ADDR         address for the API (default 127.0.0.1)\n"
            "  --api-allow-host NAME   also answer requests for Host NAME (default: IP literals,\n"
            "                          localhost, *.localhost; others get 403 against DNS rebinding);\n"
            "                          repeatable\n"
            "  --api-allow-origin URL  let web pages of origin URL (scheme://host[:port]) POST to the\n"
            "                          API (default: same origin only; CSRF); repeatable\n"
            "  --api-key-file FILE     every API route but /health wants 'Authorization: Bearer KEY'\n"
            "                          (KEY: the file's first line); also $SHARDSWARM_API_KEY, which the\n"
            "                          status/diagnose/load-shard commands send too\n"
            "  --no-auto-fetch         do not download a missing shard; wait for LOAD_SHARD\n"
            "  --seed-all              hold and seed every shard (a seeder / bootstrap node)\n"
            "  --verify                rehash the local shard at start\n"
            "  --client                hold no shard (shard -1, no fetching): a light node that only\n"
            "                          joins the swarm and opens sessions as an entry\n"
            "  --threads N             compute threads (default: all CPUs)\n"
            "  --machine-cores N|off   cores that all shardswarm nodes of this machine share (default:\n"
            "                          the CPUs online): a step computes with as many of its threads as\n"
            "                          cores are free then, at least 1 (lock files per core, per user);\n"
            "                          off: always --threads\n"
            "  --cores-dir DIR         folder of those lock files (default /dev/shm/shardswarm-cores-UID)\n"
            "  --swarm-key FILE        a private swarm: only nodes with this key (`shardswarm keygen\n"
            "                          --swarm`) connect; links and DHT encrypted (docs/protocol.md)\n"
            "  --msg-budget MIB        incoming messages buffered at once, all peers together (default\n"
            "                          256); a peer whose message finds no room is not read until\n"
            "                          there is, and closed after 30 s (docs/security.md)\n"
            "  --gpu auto|off|N        compute the shard's layers on a Vulkan GPU (auto: the first GPU;\n"
            "                          N: device N, lavapipe included); default off. What the device\n"
            "                          cannot hold or compute stays on the CPU (the log says which)\n"
            "  --gpu-layers N          at most N layers on the GPU (default: as many as fit)\n"
            "Pipeline sessions (this node's stage):\n"
            "  --max-sessions N        sessions at this stage at once (default 32)\n"
            "  --max-kv-mb N           memory for KV caches + kept outputs of all sessions, MiB\n"
            "                          (default: unlimited); a session that does not fit is refused\n"
            "  --max-kv-kb N           the same in KiB\n"
            "  --session-idle S        evict a stage session idle this many seconds (default 300)\n"
            "  --step-delay-us N       TESTING ONLY: every compute step also sleeps N µs (a slow\n"
            "                          stage, so tests can kill it mid-generation)\n"
            "  --watch-ms N            TESTING ONLY: stat the loaded shard file every N ms (default\n"
            "                          1000), so a test sees what each step's own check catches\n"
            "  --hash-delay-ms N       TESTING ONLY: hashing a shard file found on disk sleeps N ms\n"
            "                          after each piece (a long `verifying` phase for tests)\n"
            "  --coalesce PCT|off      hold a decode step at an idle stage up to PCT %% of a decode\n"
            "                          step while other sessions are due there, so they batch\n"
            "                          (default 150; docs/pipeline.md)\n"
            "  --spot-check RATE|off   as an entry, recompute a sample of pipeline steps on a replica\n"
            "                          of the same shard and exclude nodes whose hidden states differ:\n"
            "                          RATE = chance per generated token, 1/N or 0..1 (default 1/256)\n"
            "  --hop-delay-ms N        BENCHMARKS ONLY: every pipeline message to another node waits\n"
            "                          N ms before it is written (a link's latency where tc netem\n"
            "                          is not available; bench/pipeline_spec.py)\n"
            "  --prefix-cache N|off    keep the KV of up to N closed sessions at this stage, so a\n"
            "                          session with the same prompt prefix (the next chat turn)\n"
            "                          computes only the rest; counted in --max-kv-mb, least\n"
            "                          recently used first out (default 8)\n"
            "  --status-interval MS    [STATUS] line period (default 5000; also on each change)\n"
            "  --log-format human|json\n"
            "  -v, --verbose\n"
            "Exit status: 0 after Ctrl-C, 1 startup failure, 2 usage error.\n");
}

struct ctx {
    struct sw_node *node;
    struct sw_pipe_node *pipe;
    struct sw_api *api;
    uv_signal_t sig_int, sig_term;
    uv_timer_t hard_stop;
    int stopping;
    int detaching;         /* sw_pipe_node_detach called */
    const char *allow_host[16], *allow_origin[16]; /* --api-allow-host / --api-allow-origin */
    size_t n_allow_host, n_allow_origin;
};

/* The API key: --api-key-file (first line, surrounding blanks dropped), else
 * $SHARDSWARM_API_KEY, else none. Returns 0 or an exit status after a message. */
static int read_api_key(const char *cmd, const char *file, char *out, size_t out_len)
{
    out[0] = 0;
    if (file) {
        uint8_t *data = NULL;
        size_t len = 0;
        int rc = sw_file_read_all(file, 64 << 10, &data, &len);
        if (rc) return sw_cli_fail(cmd, "%s: cannot read the API key: %s", file, sw_strerror(rc));
        size_t b = 0, e = 0;
        while (b < len && (data[b] == ' ' || data[b] == '\t')) b++;
        e = b;
        while (e < len && data[e] != '\n' && data[e] != '\r') e++;
        while (e > b && (data[e - 1] == ' ' || data[e - 1] == '\t')) e--;
        if (e - b >= out_len) {
            free(data);
            return sw_cli_fail(cmd, "%s: the API key is over %u bytes", file, SW_API_KEY_MAX);
        }
        memcpy(out, data + b, e - b);
        out[e - b] = 0;
        free(data);
        if (sw_api_key_check(out)) {
            out[0] = 0;
            return sw_cli_fail(cmd, "%s: the API key must be 1..%u printable ASCII characters without spaces", file,
                               SW_API_KEY_MAX);
        }
        return 0;
    }
    const char *env = getenv("SHARDSWARM_API_KEY");
    if (env && *env) {
        if (sw_api_key_check(env))
            return sw_cli_fail(cmd, "$SHARDSWARM_API_KEY must be 1..%u printable ASCII characters without spaces",
                               SW_API_KEY_MAX);
        snprintf(out, out_len, "%s", env);
    }
    return 0;
}

static void status_handler(void *ud, const struct sw_api_request *req, struct sw_api_response *resp)
{
    (void)req;
    struct ctx *c = ud;
    resp->body = sw_node_status_json(c->node);
    if (!resp->body) sw_api_error(resp, 500, "out of memory");
}

static void load_handler(void *ud, const struct sw_api_request *req, struct sw_api_response *resp)
{
    struct ctx *c = ud;
    /* body: {"command": "<the signed command, hex>"} (what `shardswarm load-shard` sends) */
    json_t *root = json_loadb((const char *)req->body, req->body_len, 0, NULL);
    const char *h = json_string_value(json_object_get(root, "command"));
    size_t hl = h ? strlen(h) : 0;
    if (hl == 0 || hl % 2 || hl > 8192) {
        json_decref(root);
        sw_api_error(resp, 400, "body must be {\"command\": \"<hex of the signed owner command>\"} (LOAD_SHARD or DRAIN)");
        return;
    }
    uint8_t wire[4096];
    char hex[8193];
    memcpy(hex, h, hl);
    hex[hl] = 0;
    json_decref(root);
    if (sw_hex_decode(hex, wire, hl / 2)) {
        sw_api_error(resp, 400, "body is not hex");
        return;
    }
    char reason[256] = "";
    int rc = sw_node_submit_load(c->node, wire, hl / 2, reason, sizeof reason);
    if (rc) {
        sw_api_error(resp, rc == SW_EPERM ? 403 : rc == SW_ECORRUPT ? 400 : 503, reason[0] ? reason : sw_strerror(rc));
        return;
    }
    char buf[400];
    snprintf(buf, sizeof buf, "{\"ok\":true,\"detail\":\"%s\"}", reason);
    resp->body = strdup(buf);
}

static void closed(uv_handle_t *h)
{
    (void)h;
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void on_hard_stop(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* The pipeline engine is gone (every compute job finished): now the node itself leaves. */
static void after_detach(void *ud)
{
    struct ctx *c = ud;
    c->pipe = NULL;
    sw_node_stop(c->node, NULL, NULL);
}

/* Leaving: the sessions on our stage get an ERROR at once (their entries fail over to a
 * replica instead of waiting for our connection to drop), compute jobs finish, the engine
 * detaches, then the node sends BYE to every peer and closes its handles. */
static void leave(struct ctx *c)
{
    if (c->pipe && !c->detaching) {
        c->detaching = 1;
        sw_pipe_node_release_stage(c->pipe, "the node is leaving", NULL, NULL);
        sw_pipe_node_detach(c->pipe, after_detach, c);
    } else {
        sw_node_stop(c->node, NULL, NULL);
    }
}

/* Chained after the pipeline's change handler: a node that stopped itself on a fatal error
 * (e.g. unusable metadata from a magnet) must not be kept alive by the engine's timers. */
static void on_node_change(void *ud)
{
    struct ctx *c = ud;
    if (sw_node_failed(c->node) && c->pipe && !c->stopping) {
        c->stopping = c->detaching = 1;
        sw_pipe_node_detach(c->pipe, after_detach, c);
        uv_signal_stop(&c->sig_int);
        uv_signal_stop(&c->sig_term);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct ctx *c = s->data;
    if (c->stopping) {
        uv_stop(s->loop);
        return;
    }
    c->stopping = 1;
    sw_log(SW_LOG_INFO, "NODE", "signal %d: handing over sessions, telling peers and leaving", signum);
    leave(c);
    uv_signal_stop(&c->sig_int);
    uv_signal_stop(&c->sig_term);
    uv_close((uv_handle_t *)&c->sig_int, closed);
    uv_close((uv_handle_t *)&c->sig_term, closed);
    uv_timer_init(s->loop, &c->hard_stop);
    c->hard_stop.data = c;
    uv_timer_start(&c->hard_stop, on_hard_stop, 2000, 0);
    uv_unref((uv_handle_t *)&c->hard_stop);
}

/* Starts the HTTP API (status, owner commands, /metrics and the dashboard, the OpenAI API)
 * on its own thread. Returns 0, or -1 with err filled. */
static int start_api(struct ctx *c, const struct sw_node_config *cfg, const char *api_key, char *err, size_t err_len)
{
    struct sw_api_config ac = { cfg->api_host, cfg->api_port, 0, api_key[0] ? api_key : NULL };
    if (!api_key[0] && cfg->api_host && strcmp(cfg->api_host, "127.0.0.1") && strcmp(cfg->api_host, "::1") &&
        strcmp(cfg->api_host, "localhost"))
        sw_log(SW_LOG_WARN, "API", "the API on %s has no key: anyone who reaches it can generate and read the "
                                   "status (--api-key-file FILE or $SHARDSWARM_API_KEY)", cfg->api_host);
    int bad = sw_api_new(&ac, &c->api);
    for (size_t i = 0; !bad && i < c->n_allow_host; i++) bad = sw_api_allow_host(c->api, c->allow_host[i]);
    for (size_t i = 0; !bad && i < c->n_allow_origin; i++) bad = sw_api_allow_origin(c->api, c->allow_origin[i]);
    if (bad || sw_api_route(c->api, "GET", "/swarm/status", status_handler, c) ||
        sw_api_route(c->api, "POST", "/swarm/load-shard", load_handler, c) ||
        sw_api_route(c->api, "POST", "/swarm/drain", load_handler, c) || /* any owner command (DRAIN) */
        sw_cli_node_web_attach(c->api, c->node) || /* /metrics and the dashboard (node_web.c) */
        sw_cli_node_openai_attach(c->api, c->node, &c->pipe) || /* the OpenAI /v1 API (node_openai.c) */
        sw_api_start(c->api, err, err_len)) {
        if (!err[0]) snprintf(err, err_len, "cannot start the HTTP API");
        return -1;
    }
    sw_log(SW_LOG_INFO, "API", "http://%s:%u/swarm/status", cfg->api_host ? cfg->api_host : "127.0.0.1",
           sw_api_port(c->api));
    if (sw_api_port(c->api) != cfg->api_port) sw_node_set_api_addr(c->node, cfg->api_host, sw_api_port(c->api));
    return 0;
}

int sw_cmd_node(int argc, char **argv)
{
    const char *cmd = "node";
    if (sw_cli_wants_help(argc, argv)) {
        usage(stdout);
        return SW_EXIT_OK;
    }
    struct sw_node_config cfg = { 0 };
    cfg.shard = -2;
    const char *boot[MAX_BOOTSTRAP];
    size_t n_boot = 0;
    const char *log_format = "human";
    int verbose = 0, rc, want_api = 0, client = 0, shard_given = 0;
    const char *api_key_file = NULL;
    char api_key[SW_API_KEY_MAX + 1] = "";
    struct sw_pipe_node_opts po = { 0 };
    struct ctx c = { 0 };
    uint32_t u;
    uint8_t swarm_key[32];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
#define NEED_VAL() do { if (!has_val) return sw_cli_usage_error(cmd, "%s needs a value", a); i++; } while (0)
        if (!strcmp(a, "--model")) { NEED_VAL(); cfg.model = argv[i]; }
        else if (!strcmp(a, "--cache")) { NEED_VAL(); cfg.cache_dir = argv[i]; }
        else if (!strcmp(a, "--shard")) {
            NEED_VAL();
            shard_given = 1;
            if (!strcmp(argv[i], "auto")) cfg.shard = -2;
            else if (argv[i][0] < '0' || argv[i][0] > '9')
                return sw_cli_usage_error(cmd, "--shard expects a shard index or 'auto', got '%s'", argv[i]);
            else {
                if ((rc = sw_cli_parse_u32(cmd, "--shard", argv[i], 0, SW_SWARM_MAX_SHARDS - 1, &u))) return rc;
                cfg.shard = (int32_t)u;
            }
        } else if (!strcmp(a, "--bootstrap")) {
            NEED_VAL();
            char host[256];
            uint16_t port;
            if ((rc = sw_cli_parse_hostport(cmd, "--bootstrap", argv[i], host, &port))) return rc;
            if (n_boot == MAX_BOOTSTRAP) return sw_cli_usage_error(cmd, "--bootstrap given more than %d times", MAX_BOOTSTRAP);
            boot[n_boot++] = argv[i];
        } else if (!strcmp(a, "--listen")) {
            NEED_VAL();
            if ((rc = sw_cli_parse_u32(cmd, "--listen", argv[i], 0, 65535, &u))) return rc;
            cfg.listen_port = (uint16_t)u;
        } else if (!strcmp(a, "--bind")) {
            NEED_VAL();
            int fam;
            if ((rc = sw_cli_parse_bind(cmd, "--bind", argv[i], &fam))) return rc;
            cfg.bind_host = argv[i];
        } else if (!strcmp(a, "--api")) {
            NEED_VAL();
            if ((rc = sw_cli_parse_u32(cmd, "--api", argv[i], 0, 65535, &u))) return rc;
            cfg.api_port = (uint16_t)u;
            want_api = 1;
        } else if (!strcmp(a, "--api-host")) { NEED_VAL(); cfg.api_host = argv[i]; }
        else if (!strcmp(a, "--api-key-file")) { NEED_VAL(); api_key_file = argv[i]; }
        else if (!strcmp(a, "--api-allow-host") || !strcmp(a, "--api-allow-origin")) {
            NEED_VAL();
            int host = !strcmp(a, "--api-allow-host");
            size_t *n = host ? &c.n_allow_host : &c.n_allow_origin;
            if (*n == 16) return sw_cli_usage_error(cmd, "%s given more than 16 times", a);
            if (!argv[i][0] || strchr(argv[i], ' ') || (host ? strchr(argv[i], '/') != NULL : strncmp(argv[i], "http", 4) != 0))
                return sw_cli_usage_error(cmd, host ? "--api-allow-host expects a host name (no scheme, no path), got '%s'"
                                                    : "--api-allow-origin expects scheme://host[:port], got '%s'", argv[i]);
            (host ? c.allow_host : c.allow_origin)[(*n)++] = argv[i];
        }
        else if (!strcmp(a, "--swarm-key")) {
            NEED_VAL();
            if ((rc = sw_cli_swarm_key(cmd, argv[i], swarm_key))) return rc;
            cfg.swarm_key = swarm_key;
        } else if (!strcmp(a, "--msg-budget")) {
            NEED_VAL();
            if ((rc = sw_cli_parse_u32(cmd, "--msg-budget", argv[i], 2, 1u << 20, &u))) return rc;
            cfg.msg_budget = (uint64_t)u << 20;
        } else if (!strcmp(a, "--no-auto-fetch")) cfg.no_auto_fetch = 1;
        else if (!strcmp(a, "--seed-all")) cfg.seed_all = 1;
        else if (!strcmp(a, "--verify")) cfg.verify = 1;
        else if (!strcmp(a, "--client")) client = 1;
        else if (!strcmp(a, "--max-sessions")) {
            NEED_VAL();
            if ((rc = sw_cli_parse_u32(cmd, "--max-sessions", argv[i], 1, 65536, &po.max_sessions))) return rc;
        } else if (!strcmp(a, "--max-kv-mb") || !strcmp(a, "--max-kv-kb")) {
            NEED_VAL();
            int mb = !strcmp(a, "--max-kv-mb");
            if ((rc = sw_cli_parse_u32(cmd, a, argv[i], 1, mb ? 16u << 20 : UINT32_MAX, &u))) return rc;
            po.max_kv_bytes = (uint64_t)u << (mb ? 20 : 10);
        } else if (!strcmp(a, "--session-idle")) {
            NEED_VAL();
            if ((rc = sw_cli_parse_u32(cmd, "--session-idle", argv[i], 1, 86400 * 7, &u))) return rc;
            po.idle_ms = u * 1000;
        } else if (!strcmp(a, "--step-delay-us")) {
            NEED_VAL();
            if ((rc = sw_cli_parse_u32(cmd, "--step-delay-us", argv[i], 0, 10000000, &po.step_delay_us))) return rc;
        } else if (!strcmp(a, "--watch-ms")) {
            NEED_VAL();
            if ((rc = sw_cli_parse_u32(cmd, "--watch-ms", argv[i], 1, 3600000, &cfg.watch_ms))) return rc;
        } else if (!strcmp(a, "--hash-delay-ms")) {
            NEED_VAL();
            if ((rc = sw_cli_parse_u32(cmd, "--hash-delay-ms", argv[i], 0, 60000, &cfg.hash_delay_ms))) return rc;
        } else if (!strcmp(a, "--spot-check")) {
            NEED_VAL();
            if (sw_spot_parse_rate(argv[i], &po.spot_rate))
                return sw_cli_usage_error(cmd, "--spot-check must be off, 1/N or a number in (0, 1], got '%s'", argv[i]);
        } else if (!strcmp(a, "--coalesce")) {
            NEED_VAL();
            if (!strcmp(argv[i], "off")) po.coalesce_pct = 1000;
            else if ((rc = sw_cli_parse_u32(cmd, "--coalesce", argv[i], 1, 999, &po.coalesce_pct))) return rc;
        } else if (!strcmp(a, "--hop-delay-ms")) {
            NEED_VAL();
            if ((rc = sw_cli_parse_u32(cmd, "--hop-delay-ms", argv[i], 0, 10000, &po.hop_delay_ms))) return rc;
        } else if (!strcmp(a, "--prefix-cache")) {
            NEED_VAL();
            if (!strcmp(argv[i], "off")) po.prefix_entries = UINT32_MAX;
            else if ((rc = sw_cli_parse_u32(cmd, "--prefix-cache", argv[i], 1, 32, &po.prefix_entries))) return rc;
        }
        else if (!strcmp(a, "--threads")) {
            NEED_VAL();
            if ((rc = sw_cli_parse_u32(cmd, "--threads", argv[i], 1, 1024, &u))) return rc;
            cfg.threads = u;
        } else if (!strcmp(a, "--machine-cores")) {
            NEED_VAL();
            if (!strcmp(argv[i], "off")) cfg.no_core_lease = 1;
            else if ((rc = sw_cli_parse_u32(cmd, "--machine-cores", argv[i], 1, SW_CORES_MAX, &u))) return rc;
            else {
                cfg.machine_cores = u;
                cfg.no_core_lease = 0;
            }
        } else if (!strcmp(a, "--cores-dir")) {
            NEED_VAL();
            cfg.cores_dir = argv[i];
        } else if (!strcmp(a, "--gpu")) {
            NEED_VAL();
            cfg.gpu = strcmp(argv[i], "off") ? argv[i] : NULL;
        } else if (!strcmp(a, "--gpu-layers")) {
            NEED_VAL();
            if ((rc = sw_cli_parse_u32(cmd, "--gpu-layers", argv[i], 1, 1u << 16, &cfg.gpu_layers))) return rc;
        } else if (!strcmp(a, "--status-interval")) {
            NEED_VAL();
            if ((rc = sw_cli_parse_u32(cmd, "--status-interval", argv[i], 100, 3600000, &u))) return rc;
            cfg.status_interval_ms = u;
        } else if (!strcmp(a, "--log-format")) { NEED_VAL(); log_format = argv[i]; }
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) verbose = 1;
        else return sw_cli_usage_error(cmd, "unknown argument '%s'", a);
#undef NEED_VAL
    }
    if (!cfg.model) return sw_cli_usage_error(cmd, "--model TORRENT|MAGNET is required");
    if (api_key_file && !want_api) return sw_cli_usage_error(cmd, "--api-key-file needs --api PORT");
    if ((rc = read_api_key(cmd, api_key_file, api_key, sizeof api_key))) return rc;
    if (!cfg.cache_dir) return sw_cli_usage_error(cmd, "--cache DIR is required");
    if (cfg.seed_all && cfg.shard >= 0) return sw_cli_usage_error(cmd, "--seed-all and --shard N exclude each other");
    if (client && cfg.seed_all) return sw_cli_usage_error(cmd, "--client and --seed-all exclude each other");
    if (client && shard_given) return sw_cli_usage_error(cmd, "--client holds no shard: drop --shard");
    if (cfg.seed_all) cfg.shard = -1;
    if (client) {
        cfg.shard = -1;
        cfg.no_auto_fetch = 1;
    }
    if (sw_cli_log_setup(log_format, verbose))
        return sw_cli_usage_error(cmd, "--log-format must be 'human' or 'json', got '%s'", log_format);
    cfg.bootstrap = boot;
    cfg.n_bootstrap = n_boot;
    signal(SIGPIPE, SIG_IGN);
    /* held connections (BitTorrent, the API's gate) cost fds: use all the hard limit allows */
    struct rlimit nofile;
    if (!getrlimit(RLIMIT_NOFILE, &nofile) && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[1024] = "";
    rc = sw_node_new(&loop, &cfg, &c.node, err, sizeof err);
    if (!rc && want_api) rc = start_api(&c, &cfg, api_key, err, sizeof err) ? SW_EIO : 0;
    /* The API answers from here on: while the node hashes its shard files at start, the
     * status says "verifying" with the progress (the pipeline pointer is still NULL). */
    if (!rc) rc = sw_node_start(c.node, err, sizeof err);
    if (rc) {
        int ex = sw_cli_fail(cmd, "%s", err[0] ? err : sw_strerror(rc));
        if (c.node) {
            sw_node_stop(c.node, NULL, NULL);
            uv_run(&loop, UV_RUN_DEFAULT);
        }
        sw_api_free(c.api); /* stops the API thread before the node goes */
        uv_walk(&loop, close_any, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        sw_node_free(c.node);
        uv_loop_close(&loop);
        return ex;
    }
    /* the pipeline engine: serves sessions on our stage, and opens them as an entry */
    if ((rc = sw_pipe_node_attach(c.node, &po, &c.pipe))) {
        int ex = sw_cli_fail(cmd, "cannot attach the pipeline engine: %s", sw_strerror(rc));
        sw_node_stop(c.node, NULL, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        sw_node_free(c.node);
        uv_loop_close(&loop);
        return ex;
    }
    sw_pipe_node_set_change_chain(c.pipe, on_node_change, &c);
    uv_signal_init(&loop, &c.sig_int);
    uv_signal_init(&loop, &c.sig_term);
    c.sig_int.data = c.sig_term.data = &c;
    uv_signal_start(&c.sig_int, on_signal, SIGINT);
    uv_signal_start(&c.sig_term, on_signal, SIGTERM);
    /* the node's own handles keep the loop running; if it stops by itself, the loop ends */
    uv_unref((uv_handle_t *)&c.sig_int);
    uv_unref((uv_handle_t *)&c.sig_term);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (c.pipe && !c.detaching) { /* the loop was stopped (second signal) or ran dry */
        c.detaching = 1;
        sw_pipe_node_detach(c.pipe, after_detach, &c);
    }
    sw_api_free(c.api); /* stops the API thread before the node goes */
    /* the unref'd hard-stop timer, and whatever a hard stop left open */
    if (!c.stopping) { /* the node stopped by itself: our signal handles are still open */
        uv_signal_stop(&c.sig_int);
        uv_signal_stop(&c.sig_term);
    }
    uv_walk(&loop, close_any, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    int failed = sw_node_failed(c.node);
    sw_node_free(c.node);
    if (uv_loop_close(&loop) == UV_EBUSY && getenv("SW_DEBUG_HANDLES")) uv_print_all_handles(&loop, stderr);
    return failed ? SW_EXIT_FAIL : SW_EXIT_OK;
}
