/* cmd_diagnose.c — `shardswarm diagnose --model TORRENT --cache DIR [--api URL]
 * [--bootstrap HOST:PORT]`: answers "why isn't my swarm ready?" in one command: local shard
 * files (present / partial / corrupt (bad pieces counted) / missing, or held elsewhere, with
 * path and size; a corrupt one means NOT READY), free disk and memory
 * against the shard sizes, DHT reachability and nodes per shard, which shards block
 * readiness, and the exact fix for each. Read-only: it never changes a file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <uv.h>

#include "api/api.h"
#include "bt/bt.h"
#include "cli.h"
#include "dht/dht.h"
#include "swarm/swarm.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: shardswarm diagnose --model TORRENT --cache DIR [--api URL] [--bootstrap HOST:PORT]\n\n"
               "Explains why a swarm is not ready and how to fix it: this machine's shard files\n"
               "(present / partial / corrupt / missing / held elsewhere, checked against the\n"
               "torrent's piece hashes; a corrupt one means NOT READY), free disk and memory,\n"
               "DHT reachability (--bootstrap), and — from the running node behind --api —\n"
               "nodes per shard, what blocks readiness, and the\n"
               "command or copy that fixes each blocking shard.\n\n"
               "  --model TORRENT    the model's .torrent (a magnet needs --api)\n"
               "  --cache DIR        the node's cache folder (shards in DIR/shards)\n"
               "  --api URL          a running node's API (e.g. 8080)\n"
               "  --bootstrap H:P    a DHT node to ping (numeric address)\n"
               "  --owner-key FILE   mention this key in load-shard fixes\n"
               "  --swarm-key FILE   a private swarm's key: the DHT ping is sealed with it (a private\n"
               "                     node answers nothing else)\n"
               "Exit status: 0 the swarm is ready, 1 not ready (or unknown without --api), 2 usage error.\n");
}

struct local {
    const char *state; /* present / partial / corrupt / missing / elsewhere / not here */
    double pct;
    uint32_t good, total; /* pieces that verify, pieces checked (corrupt / partial) */
    char path[1024];
    uint64_t size;
};

static int dht_ping(const char *hostport, const uint8_t *swarm_key, char *out, size_t out_len)
{
    struct sw_dht_addr a;
    if (sw_dht_addr_parse(hostport, &a)) {
        snprintf(out, out_len, "%s is not a numeric HOST:PORT", hostport);
        return -1;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct { int done, status; } st = { 0, 0 };
    struct sw_dht_uv_config c = { 0 };
    int err = 0;
    struct sw_dht_uv *u;
    c.dht.on_event = NULL;
    c.swarm_key = swarm_key;
    u = sw_dht_uv_new(&loop, &c, &err);
    if (!u) {
        snprintf(out, out_len, "cannot open a UDP socket (%s)", sw_strerror(err));
        uv_loop_close(&loop);
        return -1;
    }
    (void)st;
    struct sw_dht *d = sw_dht_uv_dht(u);
    sw_dht_ping(d, &a, sw_time_ms());
    uint64_t t0 = sw_time_ms();
    struct sw_dht_stats s0;
    sw_dht_get_stats(d, &s0);
    int ok = 0;
    while (sw_time_ms() - t0 < 2000) {
        uv_run(&loop, UV_RUN_NOWAIT);
        struct sw_dht_stats s;
        sw_dht_get_stats(d, &s);
        if (s.replies_in > s0.replies_in) { ok = 1; break; }
        sw_sleep_ms(20);
    }
    sw_dht_uv_close(u);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    snprintf(out, out_len,
             ok ? "%s answered a DHT ping in %llu ms"
                : swarm_key ? "%s did not answer a sealed DHT ping within 2 s (firewall? wrong port? another swarm key?)"
                            : "%s did not answer a DHT ping within 2 s (firewall? wrong port? a private swarm's node "
                              "answers only with --swarm-key)",
             hostport, (unsigned long long)(sw_time_ms() - t0));
    return ok ? 0 : -1;
}

int sw_cmd_diagnose(int argc, char **argv)
{
    const char *cmd = "diagnose", *model = NULL, *cache = NULL, *api = NULL, *boot = NULL, *okey = NULL;
    uint8_t swarm_key[32];
    int has_swarm_key = 0;
    if (sw_cli_wants_help(argc, argv)) {
        usage(stdout);
        return SW_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int v = !strcmp(a, "--model") || !strcmp(a, "--cache") || !strcmp(a, "--api") || !strcmp(a, "--bootstrap") ||
                !strcmp(a, "--owner-key") || !strcmp(a, "--swarm-key");
        if (!v) return sw_cli_usage_error(cmd, "unknown argument '%s'", a);
        if (i + 1 >= argc) return sw_cli_usage_error(cmd, "%s needs a value", a);
        const char *val = argv[++i];
        if (!strcmp(a, "--model")) model = val;
        else if (!strcmp(a, "--cache")) cache = val;
        else if (!strcmp(a, "--api")) api = val;
        else if (!strcmp(a, "--owner-key")) okey = val;
        else if (!strcmp(a, "--swarm-key")) {
            int rc = sw_cli_swarm_key(cmd, val, swarm_key);
            if (rc) return rc;
            has_swarm_key = 1;
        } else {
            char host[256];
            uint16_t port;
            int rc = sw_cli_parse_hostport(cmd, "--bootstrap", val, host, &port);
            if (rc) return rc;
            boot = val;
        }
    }
    if (!model) return sw_cli_usage_error(cmd, "--model TORRENT is required");
    if (!cache) return sw_cli_usage_error(cmd, "--cache DIR is required");
    char base[512] = "";
    if (api && sw_api_base_url(api, base, sizeof base)) return sw_cli_usage_error(cmd, "--api: '%s' is not a URL or port", api);

    /* the node's view first (it also carries the metadata for a magnet's shard count) */
    json_t *root = NULL;
    char err[1024];
    if (api) {
        char url[600], *body = NULL;
        int status = 0;
        snprintf(url, sizeof url, "%s/swarm/status", base);
        if (sw_api_fetch("GET", url, NULL, 0, 5000, &body, NULL, &status, err, sizeof err))
            printf("node API: UNREACHABLE: %s\n  fix: start the node with `shardswarm node ... --api PORT`, or pass the right --api\n\n", err);
        else if (status != 200 || !(root = json_loads(body, 0, NULL)))
            printf("node API: %s answered HTTP %d with no usable JSON\n\n", url, status);
        free(body);
    }

    struct sw_bt_metainfo mi;
    memset(&mi, 0, sizeof mi);
    int have_mi = 0;
    if (strncmp(model, "magnet:", 7)) {
        if (sw_bt_metainfo_load(model, &mi, err, sizeof err)) {
            json_decref(root);
            return sw_cli_fail(cmd, "%s", err);
        }
        have_mi = 1;
    }
    char *shards_dir = sw_path_join(cache, "shards");
    uint32_t ns = 0;
    if (have_mi) {
        for (uint32_t i = 0; i < mi.n_files; i++)
            if (!mi.files[i].pad && mi.files[i].shard_index >= 0) ns = SW_MAX(ns, (uint32_t)mi.files[i].shard_index + 1);
        if (mi.n_shards) ns = mi.n_shards;
    } else if (root) {
        ns = (uint32_t)json_integer_value(json_object_get(root, "n_shards"));
    }
    char sz[32], sz2[32];
    uint64_t largest = 0, missing_bytes = 0;
    struct local *loc = calloc(ns ? ns : 1, sizeof *loc);
    int self_shard = -1; /* the shard the node behind --api holds (-1: unknown or none) */
    json_t *self = json_object_get(root, "self");
    if (json_is_integer(json_object_get(self, "shard"))) self_shard = (int)json_integer_value(json_object_get(self, "shard"));
    if (json_is_true(json_object_get(self, "seed_all"))) self_shard = -1;
    printf("model %s%s\n", have_mi ? mi.info_hash_hex : model, have_mi ? "" : " (magnet: local files are checked only with a .torrent)");
    if (have_mi) {
        printf("\nlocal shard files in %s:\n", shards_dir);
        for (uint32_t i = 0; i < mi.n_files; i++) {
            const struct sw_bt_file *f = &mi.files[i];
            if (f->pad || f->shard_index < 0 || (uint32_t)f->shard_index >= ns) continue;
            struct local *L = &loc[f->shard_index];
            char *path = sw_path_join(shards_dir, f->path);
            snprintf(L->path, sizeof L->path, "%s", path ? path : f->path);
            L->size = f->length;
            largest = SW_MAX(largest, f->length);
            uint32_t good = 0, total = 0;
            char msg[1200];
            int rc = sw_shard_file_check(&mi, i, L->path, &good, &total, msg, sizeof msg);
            char part[1100];
            snprintf(part, sizeof part, "%s.part", L->path);
            if (rc == 0) {
                L->state = "present";
                L->pct = 100;
            } else if (rc == SW_ECORRUPT) {
                L->state = "corrupt";
                L->pct = total ? 100.0 * good / total : 0;
                L->good = good;
                L->total = total;
            } else {
                int prc = sw_shard_file_check(&mi, i, part, &good, &total, msg, sizeof msg);
                if (prc == 0 || prc == SW_ECORRUPT) {
                    L->state = "partial";
                    L->pct = total ? 100.0 * good / total : 0;
                    L->good = good;
                    L->total = total;
                } else if (rc == SW_ERANGE || prc == SW_ERANGE) {
                    L->state = "partial";
                    uint64_t have = 0;
                    sw_file_size(rc == SW_ERANGE ? L->path : part, &have);
                    L->pct = f->length ? 100.0 * (double)SW_MIN(have, f->length) / (double)f->length : 0;
                } else {
                    L->state = "missing";
                }
            }
            /* Only this node's cache is local: a shard it does not hold is not "missing"
             * unless it is the one this node is meant to hold. */
            int own = root ? self_shard < 0 || self_shard == f->shard_index : 0;
            char where[200] = "";
            if (!strcmp(L->state, "missing") && !root) {
                L->state = "not here"; /* without --api: which shard this cache should hold is unknown */
            } else if (!strcmp(L->state, "missing") && !own) {
                L->state = "elsewhere";
                json_t *js = json_array_get(json_object_get(root, "shards"), (size_t)f->shard_index);
                long long nl = (long long)json_integer_value(json_object_get(js, "loaded"));
                if (root && nl > 0) snprintf(where, sizeof where, "; %lld live node(s) have it loaded", nl);
                else if (root) snprintf(where, sizeof where, "; no live node has it loaded");
            }
            if (strcmp(L->state, "present")) missing_bytes += f->length;
            sw_fmt_bytes(f->length, sz, sizeof sz);
            if (!strcmp(L->state, "present") || !strcmp(L->state, "missing") || !strcmp(L->state, "not here"))
                printf("  shard %d  %-8s %s  (%s, layers %d-%d)\n", f->shard_index, L->state, L->path, sz, f->layer_first, f->layer_last);
            else if (!strcmp(L->state, "elsewhere"))
                printf("  shard %d  not held here, held elsewhere (%s, layers %d-%d%s)\n", f->shard_index, sz,
                       f->layer_first, f->layer_last, where);
            else if (L->total)
                printf("  shard %d  %-8s %s  (%u of %u pieces fail their hash, %s, layers %d-%d)\n", f->shard_index,
                       L->state, L->path, L->total - L->good, L->total, sz, f->layer_first, f->layer_last);
            else
                printf("  shard %d  %-8s %s  (%.0f%% of %s on disk, layers %d-%d)\n", f->shard_index, L->state, L->path,
                       L->pct, sz, f->layer_first, f->layer_last);
            free(path);
        }
        uint64_t disk = 0, mem = 0;
        sw_mkdir_p(shards_dir);
        int dk = sw_sys_disk_free(shards_dir, &disk);
        int mk = sw_sys_mem_available(&mem);
        printf("\nresources:\n");
        if (!dk) {
            sw_fmt_bytes(disk, sz, sizeof sz);
            sw_fmt_bytes(largest, sz2, sizeof sz2);
            printf("  disk free %s in %s; largest shard %s: %s\n", sz, shards_dir, sz2,
                   disk >= largest ? "enough for one shard" : "NOT enough for the largest shard (free space or use another --cache)");
        }
        if (!mk) {
            sw_fmt_bytes(mem, sz, sizeof sz);
            sw_fmt_bytes(largest, sz2, sizeof sz2);
            printf("  memory available %s; largest shard %s: %s\n", sz, sz2,
                   mem >= largest ? "fits" : "does NOT fit (pick a smaller shard or use a machine with more memory)");
        }
    }

    printf("\nnetwork:\n");
    if (boot) {
        char out[400];
        int ok = dht_ping(boot, has_swarm_key ? swarm_key : NULL, out, sizeof out) == 0;
        printf("  DHT: %s\n", out);
        if (!ok) printf("    fix: check that `shardswarm node --listen PORT` runs at %s and UDP is not blocked\n", boot);
    }
    int ready = 0;
    if (root) {
        json_t *d = json_object_get(root, "dht");
        printf("  node %s: %lld peers, DHT routing table %lld nodes (%lld good)\n",
               json_string_value(json_object_get(root, "node_id")) ? json_string_value(json_object_get(root, "node_id")) : "?",
               (long long)json_integer_value(json_object_get(root, "peers")),
               (long long)json_integer_value(json_object_get(d, "nodes")), (long long)json_integer_value(json_object_get(d, "good_nodes")));
        ready = json_is_true(json_object_get(root, "ready"));
        printf("\nshards in the swarm (as the node sees it):\n");
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(root, "shards"), i, s) {
            printf("  shard %lld: %lld node(s), %lld loaded, %lld seeder(s)%s\n", (long long)json_integer_value(json_object_get(s, "shard")),
                   (long long)json_integer_value(json_object_get(s, "announced")), (long long)json_integer_value(json_object_get(s, "loaded")),
                   (long long)json_integer_value(json_object_get(s, "seeders")),
                   json_is_true(json_object_get(s, "ready")) ? "" : "  <- BLOCKS READINESS");
        }
        /* A shard file found corrupt here outweighs what the swarm says: never READY then. */
        int swarm_ready = ready;
        for (uint32_t k = 0; have_mi && k < ns; k++)
            if (loc[k].state && !strcmp(loc[k].state, "corrupt")) {
                printf("\nNOT READY: this machine's shard %u is corrupt (%u of %u pieces fail their hash: %s)%s\n"
                       "    fix: the node notices and re-fetches the bad pieces by itself; if it does not, restart it "
                       "with --verify, or replace the file with a good copy\n",
                       k, loc[k].total - loc[k].good, loc[k].total, loc[k].path,
                       swarm_ready ? "; the swarm still says ready" : "");
                ready = 0;
            }
        if (ready) printf("\nREADY: every shard has a live node with it loaded.\n");
        else if (!swarm_ready) printf("\nNOT READY. What blocks it and how to fix it:\n");
        json_array_foreach(json_object_get(root, "shards"), i, s) {
            if (json_is_true(json_object_get(s, "ready"))) continue;
            uint32_t k = (uint32_t)json_integer_value(json_object_get(s, "shard"));
            const char *reason = json_string_value(json_object_get(s, "reason"));
            printf("  %s\n", reason ? reason : "?");
            json_t *nodes = json_object_get(s, "nodes");
            size_t j;
            json_t *n;
            int fixed = 0;
            json_array_foreach(nodes, j, n) {
                const char *ph = json_string_value(json_object_get(n, "phase"));
                const char *id = json_string_value(json_object_get(n, "id"));
                if (!ph || !id) continue;
                if (!strcmp(ph, "waiting")) {
                    printf("    fix: shardswarm load-shard --api %s --node %s --shard %u --key %s\n", api, id, k, okey ? okey : "OWNER.key");
                    fixed = 1;
                } else if (!strcmp(ph, "drained")) {
                    printf("    fix: node %.8s was drained by the owner; bring it back: shardswarm load-shard --api %s "
                           "--node %s --shard %u --key %s\n", id, api, id, k, okey ? okey : "OWNER.key");
                    fixed = 1;
                } else if (!strcmp(ph, "fetching")) {
                    if (json_integer_value(json_object_get(n, "rate_bps")) > 0) printf("    fix: none needed, wait for the download\n");
                    else printf("    fix: no peer serves shard %u: start a seeder (`shardswarm node --model %s --cache DIR --seed-all`) or copy shard-%u.gguf into that node's shards folder\n",
                                k, model, k);
                    fixed = 1;
                } else if (!strcmp(ph, "failed")) {
                    printf("    fix: read node %.8s's log; check its file with `shardswarm verify`\n", id);
                    fixed = 1;
                } else if (!strcmp(ph, "verifying") || !strcmp(ph, "loading")) {
                    printf("    fix: none needed, it is loading\n");
                    fixed = 1;
                }
            }
            if (!fixed) {
                if (have_mi && k < ns && loc[k].state && !strcmp(loc[k].state, "present"))
                    printf("    fix: this machine has it: shardswarm node --model %s --cache %s --shard %u --bootstrap HOST:PORT\n", model, cache, k);
                else if (have_mi && k < ns)
                    printf("    fix: start a node for it (`shardswarm node --model %s --cache DIR --shard %u --bootstrap HOST:PORT`; it fetches the file), "
                           "or copy shard-%u.gguf (%s) to a node's shards folder, e.g. %s\n",
                           model, k, k, sw_fmt_bytes(loc[k].size, sz, sizeof sz), loc[k].path);
                else
                    printf("    fix: start a node for it: shardswarm node --model %s --cache DIR --shard %u --bootstrap HOST:PORT\n", model, k);
            }
        }
    } else {
        printf("  readiness: unknown (pass --api of a running node to see the swarm)\n");
        if (have_mi)
            for (uint32_t k = 0; k < ns; k++) {
                if (!loc[k].state || !strcmp(loc[k].state, "present")) continue;
                if (!strcmp(loc[k].state, "corrupt"))
                    printf("  shard %u: fix: the node re-fetches the bad pieces by itself (`shardswarm node ... --shard %u`), or replace %s with a good copy\n",
                           k, k, loc[k].path);
                else if (!strcmp(loc[k].state, "partial"))
                    printf("  shard %u: fix: keep `shardswarm node ... --shard %u` running; it resumes the download\n", k, k);
                else
                    printf("  shard %u: fix: if this machine should hold it, run `shardswarm node --model %s --cache %s --shard %u` "
                           "(it fetches it from the swarm), or copy shard-%u.gguf (%s) to %s\n",
                           k, model, cache, k, k, sw_fmt_bytes(loc[k].size, sz, sizeof sz), loc[k].path);
            }
    }
    (void)missing_bytes;
    free(loc);
    free(shards_dir);
    if (have_mi) sw_bt_metainfo_free(&mi);
    json_decref(root);
    return ready ? SW_EXIT_OK : SW_EXIT_FAIL;
}
