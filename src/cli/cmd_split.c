/* cmd_split.c — `shardswarm split MODEL.gguf --shards N --out DIR`: layer-range shards that
 * balance bytes, each a valid GGUF, plus DIR/model.json; prints the boundaries and imbalance. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "gguf/gguf.h"
#include "swarm/swarm.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: shardswarm split MODEL.gguf --shards N --out DIR [options]\n\n"
               "Cuts a llama-family GGUF model into N layer-range shards DIR/shard-0.gguf ... and\n"
               "writes DIR/model.json (layer ranges, sizes, SHA-256). Each shard is a valid GGUF\n"
               "file with the full metadata and tokenizer; the first holds token_embd, the last\n"
               "output_norm and output (or token_embd again when the output is tied). Boundaries\n"
               "balance shard bytes. MODEL may be any part of a llama.cpp split model\n"
               "(<name>-00001-of-0000N.gguf): all parts are read. Then writes DIR/model.torrent: the\n"
               "model's torrent, whose info-hash is the model id (as `torrent create DIR`).\n\n"
               "  --shards N          number of shards, 1..number of layers (required)\n"
               "  --out DIR           output folder, created if absent (required)\n"
               "  --owner-key FILE    owner key (from `keygen`): its public half goes into the manifest\n"
               "                      and the torrent's info dict (LOAD_SHARD must be signed by it)\n"
               "  --owner-pubkey HEX  the same from a 64-hex-digit public key\n"
               "  --no-torrent        do not write DIR/model.torrent (see `shardswarm torrent create`)\n"
               "  --model-id ID       value of shardswarm.model.id (default: SHA-256 of the source header)\n"
               "  --dry-run           print the shard boundaries only; write nothing (--out not needed)\n"
               "  -q, --quiet         no progress bar and no summary\n"
               "Exit status: 0 ok, 1 bad input or write failure (nothing partial is left), 2 usage error.\n");
}

static void on_progress(void *ud, uint64_t done, uint64_t total)
{
    sw_cli_bar_update(ud, done, total);
}

static int is_hex(const char *s, size_t n)
{
    if (strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F')))
            return 0;
    return 1;
}

static void print_imbalance(const struct sw_shard_plan *plans, uint32_t n)
{
    uint64_t max = 0, sum = 0;
    for (uint32_t k = 0; k < n; k++) {
        sum += plans[k].n_bytes;
        if (plans[k].n_bytes > max) max = plans[k].n_bytes;
    }
    double mean = (double)sum / n;
    char b1[32], b2[32];
    printf("  imbalance: largest shard %s of tensor data, %.1f%% above the mean %s\n",
           sw_fmt_bytes(max, b1, sizeof b1), mean > 0 ? 100.0 * ((double)max - mean) / mean : 0.0,
           sw_fmt_bytes((uint64_t)mean, b2, sizeof b2));
}

static int dry_run(const char *model, uint32_t n)
{
    struct sw_shard_plan *plans = calloc(n, sizeof *plans);
    if (!plans) return sw_cli_fail("split", "out of memory");
    char err[1024];
    uint32_t n_layers = 0;
    int rc = sw_gguf_split_plan(model, n, plans, &n_layers, err, sizeof err);
    if (rc) {
        free(plans);
        return sw_cli_fail("split", "%s", err[0] ? err : sw_strerror(rc));
    }
    printf("[SPLIT] %s: %u layers -> %u shards (dry run: nothing written)\n", model, n_layers, n);
    for (uint32_t k = 0; k < n; k++) {
        char b[32];
        printf("  shard %-3u layers %3u-%-3u (%3u)  %10s of tensor data\n", k, plans[k].layer_first,
               plans[k].layer_last, plans[k].layer_last - plans[k].layer_first + 1,
               sw_fmt_bytes(plans[k].n_bytes, b, sizeof b));
    }
    print_imbalance(plans, n);
    free(plans);
    return SW_EXIT_OK;
}

/* One model = one torrent: the same path as `shardswarm torrent create DIR` (the owner key,
 * if any, is already in the manifest, which the torrent takes it from). */
static int make_torrent(const char *dir, int quiet)
{
    char *args[] = { "torrent", "create", (char *)dir, NULL };
    if (!quiet) printf("[SPLIT] writing the model torrent\n");
    fflush(stdout);
    int rc = sw_cmd_torrent(3, args);
    if (rc) fprintf(stderr, "shardswarm split: the shards are complete, but the torrent was not written; "
                            "run `shardswarm torrent create %s`\n", dir);
    return rc;
}

int sw_cmd_split(int argc, char **argv)
{
    if (sw_cli_wants_help(argc, argv)) {
        usage(stdout);
        return SW_EXIT_OK;
    }
    const char *model = NULL, *out = NULL, *owner = NULL, *model_id = NULL, *owner_key = NULL;
    uint32_t n = 0;
    int quiet = 0, dry = 0, torrent = 1, rc;
    char owner_hex[65];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--shards")) {
            if (!has_val) return sw_cli_usage_error("split", "--shards needs a number");
            if ((rc = sw_cli_parse_u32("split", "--shards", argv[++i], 1, 4096, &n))) return rc;
        } else if (!strcmp(a, "--out")) {
            if (!has_val || !argv[i + 1][0]) return sw_cli_usage_error("split", "--out needs a folder");
            out = argv[++i];
        } else if (!strcmp(a, "--owner-pubkey")) {
            if (!has_val || !is_hex(argv[i + 1], 64))
                return sw_cli_usage_error("split", "--owner-pubkey expects 64 hex digits (an ed25519 public key)");
            owner = argv[++i];
        } else if (!strcmp(a, "--owner-key")) {
            if (!has_val || !argv[i + 1][0]) return sw_cli_usage_error("split", "--owner-key needs a key file (from `shardswarm keygen`)");
            owner_key = argv[++i];
        } else if (!strcmp(a, "--no-torrent")) {
            torrent = 0;
        } else if (!strcmp(a, "--model-id")) {
            if (!has_val || !argv[i + 1][0] || strlen(argv[i + 1]) >= 80)
                return sw_cli_usage_error("split", "--model-id expects a non-empty id of at most 79 characters");
            model_id = argv[++i];
        } else if (!strcmp(a, "--dry-run")) {
            dry = 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            return sw_cli_usage_error("split", "unknown option '%s'", a);
        } else if (model) {
            return sw_cli_usage_error("split", "one MODEL only (got '%s' and '%s')", model, a);
        } else {
            model = a;
        }
    }
    if (!model) return sw_cli_usage_error("split", "missing MODEL.gguf");
    if (!n) return sw_cli_usage_error("split", "missing --shards N");
    if (dry) return dry_run(model, n);
    if (!out) return sw_cli_usage_error("split", "missing --out DIR");
    if (owner_key) {
        if (owner) return sw_cli_usage_error("split", "give --owner-key or --owner-pubkey, not both");
        struct sw_identity id;
        char kerr[512];
        if (sw_identity_load(owner_key, &id, kerr, sizeof kerr)) return sw_cli_fail("split", "%s", kerr);
        sw_hex_encode(id.pk, 32, owner_hex);
        owner = owner_hex;
    }

    uint64_t started_ms = sw_time_ms();
    struct sw_cli_bar bar;
    sw_cli_bar_init(&bar, "split");
    struct sw_split_opts o = { .n_shards = n, .out_dir = out, .owner_pubkey_hex = owner,
                               .progress = quiet ? NULL : on_progress, .progress_ud = &bar, .model_id = model_id };
    struct sw_shard_plan *plans = calloc(n, sizeof *plans);
    if (!plans) return sw_cli_fail("split", "out of memory");
    char err[1024];
    rc = sw_gguf_split(model, &o, plans, err, sizeof err);
    if (rc) {
        free(plans);
        return sw_cli_fail("split", "%s", err[0] ? err : sw_strerror(rc));
    }
    if (quiet) {
        free(plans);
        return torrent ? make_torrent(out, quiet) : SW_EXIT_OK;
    }
    struct sw_manifest *m = NULL;
    if (sw_gguf_manifest_load(out, &m, err, sizeof err)) {
        free(plans);
        return sw_cli_fail("split", "%s", err);
    }
    uint64_t sum = 0;
    for (uint32_t k = 0; k < n; k++) sum += plans[k].n_bytes;
    char b1[32], b2[32];
    printf("[SPLIT] %s: %s, %u layers, %s -> %u shards in %s (%s)\n", model, m->arch[0] ? m->arch : "?",
           m->n_layers, sw_fmt_bytes(m->source_size, b1, sizeof b1), n, out,
           sw_fmt_duration_ms(sw_time_ms() - started_ms, b2, sizeof b2));
    for (uint32_t k = 0; k < n; k++) {
        const struct sw_manifest_shard *s = &m->shards[k];
        printf("  shard %-3u %-14s layers %3u-%-3u (%3u)  %10s  %5.1f%%  sha256 %.16s\n", k, s->file,
               s->layer_first, s->layer_last, s->layer_last - s->layer_first + 1,
               sw_fmt_bytes(s->size, b1, sizeof b1), sum ? 100.0 * (double)plans[k].n_bytes / (double)sum : 0.0,
               s->sha256_hex);
    }
    print_imbalance(plans, n);
    printf("  model id %s\n  manifest %s/%s\n", m->model_id, out, SW_MANIFEST_FILE);
    sw_gguf_manifest_free(m);
    free(plans);
    return torrent ? make_torrent(out, quiet) : SW_EXIT_OK;
}
