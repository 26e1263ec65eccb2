/* test_pipeline_node.c — sw_pipe_node, the integration tests' process: `node` runs a real
 * sw_node (BitTorrent + DHT + gossip, as `shardswarm node`) with the pipeline engine
 * attached, so it serves pipeline stages; `generate` is `shardswarm generate --swarm`
 * (sw_cli_generate_swarm). Exists because `shardswarm node` serves pipelines only once its
 * owner calls sw_pipe_node_attach (see docs/pipeline.md); tests prefer the real binary when
 * it does.
 *   sw_pipe_node node --model T --cache DIR --shard N|-1 [--bootstrap H:P] [--listen P]
 *                     [--threads N] [--max-kv-kb N] [--step-delay-us N] [--seed-all]
 *   sw_pipe_node generate ...   (the flags of generate --swarm) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli/cli.h"
#include "cli/generate_swarm.h"
#include "swarm/pipeline.h"
#include "swarm/swarm.h"

struct ctx {
    struct sw_node *node;
    struct sw_pipe_node *pn;
    uv_signal_t sig_int, sig_term;
};

static void after_detach(void *ud)
{
    struct ctx *c = ud;
    c->pn = NULL;
    sw_node_stop(c->node, NULL, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    struct ctx *c = s->data;
    uv_signal_stop(&c->sig_int);
    uv_signal_stop(&c->sig_term);
    uv_close((uv_handle_t *)&c->sig_int, NULL);
    uv_close((uv_handle_t *)&c->sig_term, NULL);
    if (c->pn) sw_pipe_node_detach(c->pn, after_detach, c);
    else sw_node_stop(c->node, NULL, NULL);
}

static void close_any(uv_handle_t *h, void *ud)
{
    (void)ud;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static int run_node(int argc, char **argv)
{
    const char *cmd = "sw_pipe_node node";
    struct sw_node_config cfg = { 0 };
    cfg.shard = -1;
    cfg.status_interval_ms = 1000;
    const char *boot[8];
    size_t n_boot = 0;
    struct sw_pipe_node_opts po = { 0 };
    int rc;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--seed-all")) {
            cfg.seed_all = 1;
            continue;
        }
        if (i + 1 >= argc) return sw_cli_usage_error(cmd, "%s: unknown flag or missing value", f);
        const char *v = argv[++i];
        uint32_t u;
        if (!strcmp(f, "--model")) cfg.model = v;
        else if (!strcmp(f, "--cache")) cfg.cache_dir = v;
        else if (!strcmp(f, "--shard")) cfg.shard = atoi(v);
        else if (!strcmp(f, "--bootstrap")) {
            if (n_boot == 8) return sw_cli_usage_error(cmd, "too many --bootstrap");
            boot[n_boot++] = v;
        } else if (!strcmp(f, "--listen")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 0, 65535, &u))) return rc;
            cfg.listen_port = (uint16_t)u;
        } else if (!strcmp(f, "--threads")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 1, 1024, &cfg.threads))) return rc;
        } else if (!strcmp(f, "--step-delay-us")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 0, 10000000, &po.step_delay_us))) return rc;
        } else if (!strcmp(f, "--max-kv-kb")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 1, UINT32_MAX, &u))) return rc;
            po.max_kv_bytes = (uint64_t)u << 10;
        } else {
            return sw_cli_usage_error(cmd, "unknown flag %s", f);
        }
    }
    if (!cfg.model || !cfg.cache_dir) return sw_cli_usage_error(cmd, "--model and --cache are required");
    cfg.bootstrap = boot;
    cfg.n_bootstrap = n_boot;
    sw_cli_log_setup("human", getenv("SW_VERBOSE") != NULL);
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct ctx c = { 0 };
    char err[1024] = "";
    rc = sw_node_new(&loop, &cfg, &c.node, err, sizeof err);
    if (!rc) rc = sw_node_start(c.node, err, sizeof err);
    if (!rc) rc = sw_pipe_node_attach(c.node, &po, &c.pn);
    if (rc) {
        fprintf(stderr, "%s: %s\n", cmd, err[0] ? err : sw_strerror(rc));
        return 1;
    }
    uv_signal_init(&loop, &c.sig_int);
    uv_signal_init(&loop, &c.sig_term);
    c.sig_int.data = c.sig_term.data = &c;
    uv_signal_start(&c.sig_int, on_signal, SIGINT);
    uv_signal_start(&c.sig_term, on_signal, SIGTERM);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_walk(&loop, close_any, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    sw_node_free(c.node);
    uv_loop_close(&loop);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "node")) return run_node(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "generate")) return sw_cli_generate_swarm(argc - 1, argv + 1);
    fprintf(stderr, "usage: sw_pipe_node node|generate ...\n");
    return 2;
}
