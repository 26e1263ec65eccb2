/* cmd_status.c — `shardswarm status [--api URL] [--json]`: a running node's view of the
 * swarm (GET /swarm/status) as a table: every shard, its nodes, loaded or progress, the
 * best node, readiness and the reasons. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/api.h"
#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: shardswarm status [--api URL] [--json]\n\n"
               "Asks a running node (default http://127.0.0.1:8080) for its view of the swarm\n"
               "and prints a table: shards, the nodes holding each, loaded or download\n"
               "progress, the best node, readiness and what blocks it.\n\n"
               "  --api URL   the node's API (\"http://127.0.0.1:8080\", \"127.0.0.1:8080\" or \"8080\")\n"
               "  --json      print the node's JSON as it is\n"
               "Exit status: 0 ready, 1 not ready or the node is unreachable, 2 usage error.\n");
}

static const char *jstr(json_t *o, const char *k, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : dflt;
}

static void fmt_node(json_t *n, char *out, size_t len)
{
    const char *phase = jstr(n, "phase", "?");
    double prog = json_number_value(json_object_get(n, "progress"));
    double rate = (double)json_integer_value(json_object_get(n, "rate_bps"));
    if (!strcmp(phase, "fetching")) {
        char r[32];
        sw_fmt_bytes((uint64_t)rate, r, sizeof r);
        snprintf(out, len, "%s fetching %.0f%% %s/s", jstr(n, "short", "?"), prog * 100.0, r);
    } else {
        snprintf(out, len, "%s %s%s", jstr(n, "short", "?"), phase, json_is_true(json_object_get(n, "self")) ? " (this node)" : "");
    }
}

int sw_cmd_status(int argc, char **argv)
{
    const char *cmd = "status", *api = "http://127.0.0.1:8080";
    int as_json = 0;
    if (sw_cli_wants_help(argc, argv)) {
        usage(stdout);
        return SW_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--api")) {
            if (++i >= argc) return sw_cli_usage_error(cmd, "--api needs a URL");
            api = argv[i];
        } else if (!strcmp(argv[i], "--json")) {
            as_json = 1;
        } else {
            return sw_cli_usage_error(cmd, "unknown argument '%s'", argv[i]);
        }
    }
    char base[512], url[600], err[512];
    if (sw_api_base_url(api, base, sizeof base)) return sw_cli_usage_error(cmd, "--api: '%s' is not a URL or port", api);
    snprintf(url, sizeof url, "%s/swarm/status", base);
    char *body = NULL;
    int status = 0;
    if (sw_api_fetch("GET", url, NULL, 0, 5000, &body, NULL, &status, err, sizeof err))
        return sw_cli_fail(cmd, "cannot reach the node: %s (is `shardswarm node --api PORT` running?)", err);
    if (status != 200) {
        int ex = sw_cli_fail(cmd, "%s answered HTTP %d: %.200s", url, status, body);
        free(body);
        return ex;
    }
    json_error_t je;
    json_t *root = json_loads(body, 0, &je);
    if (!root) {
        int ex = sw_cli_fail(cmd, "%s: not JSON (%s)", url, je.text);
        free(body);
        return ex;
    }
    int ready = json_is_true(json_object_get(root, "ready"));
    if (as_json) {
        printf("%s\n", body);
    } else {
        printf("node %s  model %s\n", jstr(root, "node_id", "?"), jstr(root, "info_hash", "?"));
        printf("discovered %lld/%lld shards, %lld peers: %s\n\n",
               (long long)json_integer_value(json_object_get(root, "discovered")),
               (long long)json_integer_value(json_object_get(root, "n_shards")),
               (long long)json_integer_value(json_object_get(root, "peers")), ready ? "READY" : "NOT READY");
        printf("%-5s %-9s %-7s %-7s %-8s %s\n", "shard", "layers", "loaded", "nodes", "best", "nodes (state)");
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(root, "shards"), i, s) {
            char layers[32], best[16] = "-";
            snprintf(layers, sizeof layers, "%lld-%lld", (long long)json_integer_value(json_object_get(s, "layer_first")),
                     (long long)json_integer_value(json_object_get(s, "layer_last")));
            const char *b = json_string_value(json_object_get(s, "best"));
            if (b) snprintf(best, sizeof best, "%.4s\xe2\x80\xa6", b);
            /* "5f2a…" is 5 columns but 7 bytes: pad by columns, not bytes */
            printf("%-5lld %-9s %-7lld %-7lld %s%*s ", (long long)json_integer_value(json_object_get(s, "shard")), layers,
                   (long long)json_integer_value(json_object_get(s, "loaded")),
                   (long long)json_integer_value(json_object_get(s, "announced")), best, b ? 3 : 7, "");
            size_t j;
            json_t *n;
            int first = 1;
            json_array_foreach(json_object_get(s, "nodes"), j, n) {
                char d[128];
                fmt_node(n, d, sizeof d);
                printf("%s%s", first ? "" : ", ", d);
                first = 0;
            }
            printf("%s\n", first ? "(none)" : "");
        }
        json_t *r;
        if (!ready) {
            printf("\nblocking readiness:\n");
            json_array_foreach(json_object_get(root, "reasons"), i, r) printf("  %s\n", json_string_value(r));
        }
    }
    json_decref(root);
    free(body);
    return ready ? SW_EXIT_OK : SW_EXIT_FAIL;
}
