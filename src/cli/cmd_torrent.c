/* cmd_torrent.c — `shardswarm torrent create DIR` (one model = one torrent, from a split
 * folder's model.json) and `shardswarm torrent show FILE|MAGNET [--json]`. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bt/bt.h"
#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: shardswarm torrent create DIR [--owner-key FILE] [--web-seed URL ...]\n"
               "                            [--tracker URL ...] [--piece-size BYTES] [-o FILE]\n"
               "       shardswarm torrent show FILE|MAGNET [--json]\n\n"
               "create: makes the model's torrent from DIR/model.json (written by `split`): one\n"
               "multi-file v1 torrent whose files are the shards, padded (BEP 47) so no piece spans\n"
               "two shards, with the shardswarm dictionary (layer ranges, architecture, owner key).\n"
               "Prints the info-hash, which is the model id, and a magnet link.\n"
               "  --owner-key FILE   owner key file (from `keygen`) or a file holding the 64-hex public key\n"
               "  --web-seed URL     BEP 19 web seed (url-list); repeatable\n"
               "  --tracker URL      announce URL; repeatable\n"
               "  --piece-size N     bytes per piece (power of two, 16 KiB..64 MiB; default: automatic)\n"
               "  -o, --out FILE     where to write the torrent (default DIR/model.torrent)\n"
               "show: prints a torrent's or magnet's contents (--json: one JSON object).\n"
               "Exit status: 0 ok, 1 bad input file, 2 usage error.\n");
}

/* The owner's public key: a file with 64 hex digits (a public key), or an owner key file
 * written by `keygen` (text: header line + 64-hex seed), from which the public key is
 * derived through swarm.h when it is linked. */
#include "swarm/swarm.h"
static int load_owner_pub(const char *path, char hex_out[65], char *err, size_t err_len)
{
    struct sw_identity id;
    if (sw_identity_load(path, &id, err, err_len) == 0) {
        sw_hex_encode(id.pk, 32, hex_out);
        return 0;
    }
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = sw_file_read_all(path, 4096, &data, &len);
    if (rc) { snprintf(err, err_len, "%s: %s", path, sw_strerror(rc)); return rc; }
    char hex[65] = "";
    size_t n = 0;
    for (size_t i = 0; i < len && n < 65; i++)
        if (isxdigit(data[i])) hex[n++] = (char)tolower(data[i]);
        else if (!isspace(data[i])) { n = 99; break; }
    free(data);
    uint8_t k[32];
    if (n != 64 || sw_hex_decode(hex, k, 32)) {
        snprintf(err, err_len, "%s: neither an owner key file nor a 64-hex public key", path);
        return SW_ECORRUPT;
    }
    memcpy(hex_out, hex, 65);
    return 0;
}

static void progress_cb(void *ud, uint64_t done, uint64_t total)
{
    sw_cli_bar_update(ud, done, total);
}

static int cmd_create(int argc, char **argv)
{
    const char *cmd = "torrent create", *dir = NULL, *out = NULL, *owner_file = NULL;
    const char *trackers[64], *seeds[64];
    uint32_t nt = 0, nw = 0, piece = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--owner-key") || !strcmp(a, "--web-seed") || !strcmp(a, "--tracker") ||
            !strcmp(a, "-o") || !strcmp(a, "--out") || !strcmp(a, "--piece-size")) {
            if (i + 1 >= argc) return sw_cli_usage_error(cmd, "%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--owner-key")) owner_file = v;
            else if (!strcmp(a, "--web-seed")) {
                if (nw >= 64) return sw_cli_usage_error(cmd, "--web-seed: at most 64");
                if (strncmp(v, "http://", 7) && strncmp(v, "https://", 8))
                    return sw_cli_usage_error(cmd, "--web-seed expects an http(s):// URL, got '%s'", v);
                seeds[nw++] = v;
            } else if (!strcmp(a, "--tracker")) {
                if (nt >= 64) return sw_cli_usage_error(cmd, "--tracker: at most 64");
                if (!strstr(v, "://")) return sw_cli_usage_error(cmd, "--tracker expects a URL, got '%s'", v);
                trackers[nt++] = v;
            } else if (!strcmp(a, "--piece-size")) {
                int rc = sw_cli_parse_u32(cmd, "--piece-size", v, SW_BT_MIN_PIECE, SW_BT_MAX_PIECE, &piece);
                if (rc) return rc;
                if (piece & (piece - 1)) return sw_cli_usage_error(cmd, "--piece-size must be a power of two, got %s", v);
            } else out = v;
        } else if (a[0] == '-') {
            return sw_cli_usage_error(cmd, "unknown option '%s'", a);
        } else if (!dir) {
            dir = a;
        } else {
            return sw_cli_usage_error(cmd, "unexpected argument '%s'", a);
        }
    }
    if (!dir) return sw_cli_usage_error(cmd, "DIR (a split folder with model.json) is required");
    char err[512] = "", owner[65] = "";
    if (owner_file && load_owner_pub(owner_file, owner, err, sizeof err)) return sw_cli_fail(cmd, "%s", err);
    struct sw_cli_bar bar;
    sw_cli_bar_init(&bar, "hashing");
    struct sw_bt_model_torrent_opts o = {
        .owner_key_hex = owner[0] ? owner : NULL, .trackers = trackers, .n_trackers = nt,
        .web_seeds = seeds, .n_web_seeds = nw, .piece_length = piece, .progress = progress_cb, .progress_ud = &bar,
    };
    char hex[41];
    char *def = NULL;
    if (!out) out = def = sw_path_join(dir, "model.torrent");
    int rc = sw_bt_torrent_create_from_manifest(dir, &o, out, hex, err, sizeof err);
    if (rc) { free(def); return sw_cli_fail(cmd, "%s", err[0] ? err : sw_strerror(rc)); }
    struct sw_bt_metainfo mi;
    rc = sw_bt_metainfo_load(out, &mi, err, sizeof err);
    if (rc) { free(def); return sw_cli_fail(cmd, "%s", err); }
    struct sw_buf mag = { 0 };
    sw_bt_magnet_format(mi.info_hash, mi.name, (const char *const *)mi.trackers, mi.n_trackers, &mag);
    char pb[32];
    printf("torrent: %s\n", out);
    printf("model id (info-hash): %s\n", hex);
    printf("pieces: %u x %s, %u shard(s)\n", mi.n_pieces, sw_fmt_bytes(mi.piece_length, pb, sizeof pb), mi.n_shards);
    printf("magnet: %s\n", sw_buf_cstr(&mag) ? (const char *)mag.data : "");
    sw_buf_free(&mag);
    sw_bt_metainfo_free(&mi);
    free(def);
    return SW_EXIT_OK;
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static int cmd_show(int argc, char **argv)
{
    const char *cmd = "torrent show", *src = NULL;
    int json = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (argv[i][0] == '-' ) return sw_cli_usage_error(cmd, "unknown option '%s'", argv[i]);
        else if (!src) src = argv[i];
        else return sw_cli_usage_error(cmd, "unexpected argument '%s'", argv[i]);
    }
    if (!src) return sw_cli_usage_error(cmd, "FILE or MAGNET is required");
    char err[512] = "";
    if (!strncmp(src, "magnet:", 7)) {
        struct sw_bt_magnet m;
        int rc = sw_bt_magnet_parse(src, &m, err, sizeof err);
        if (rc) return sw_cli_fail(cmd, "%s", err);
        char hex[41];
        sw_hex_encode(m.info_hash, 20, hex);
        if (json) {
            printf("{\"info_hash\":\"%s\",\"name\":", hex);
            json_str(m.name);
            printf(",\"trackers\":[");
            for (uint32_t i = 0; i < m.n_trackers; i++) { if (i) putchar(','); json_str(m.trackers[i]); }
            printf("],\"peers\":[");
            for (uint32_t i = 0; i < m.n_peers; i++) { if (i) putchar(','); json_str(m.peers[i]); }
            printf("]}\n");
        } else {
            printf("model id (info-hash): %s\nname: %s\n", hex, m.name[0] ? m.name : "(none)");
            for (uint32_t i = 0; i < m.n_trackers; i++) printf("tracker: %s\n", m.trackers[i]);
            for (uint32_t i = 0; i < m.n_peers; i++) printf("peer: %s\n", m.peers[i]);
        }
        sw_bt_magnet_free(&m);
        return SW_EXIT_OK;
    }
    struct sw_bt_metainfo mi;
    int rc = sw_bt_metainfo_load(src, &mi, err, sizeof err);
    if (rc) return sw_cli_fail(cmd, "%s", err);
    char b1[32], b2[32];
    if (json) {
        printf("{\"info_hash\":\"%s\",\"name\":", mi.info_hash_hex);
        json_str(mi.name);
        printf(",\"piece_length\":%u,\"pieces\":%u,\"total_length\":%llu,\"private\":%s", mi.piece_length, mi.n_pieces,
               (unsigned long long)mi.total_length, mi.is_private ? "true" : "false");
        printf(",\"architecture\":");
        json_str(mi.architecture);
        printf(",\"model_id\":");
        json_str(mi.model_id);
        printf(",\"owner\":");
        json_str(mi.owner_key_hex);
        printf(",\"n_layers\":%u,\"n_shards\":%u,\"files\":[", mi.n_layers, mi.n_shards);
        for (uint32_t i = 0; i < mi.n_files; i++) {
            const struct sw_bt_file *f = &mi.files[i];
            printf("%s{\"path\":", i ? "," : "");
            json_str(f->path);
            printf(",\"length\":%llu,\"offset\":%llu,\"pad\":%s,\"first_piece\":%u,\"last_piece\":%u",
                   (unsigned long long)f->length, (unsigned long long)f->offset, f->pad ? "true" : "false",
                   f->first_piece, f->last_piece);
            if (f->shard_index >= 0)
                printf(",\"shard\":%d,\"layer_first\":%d,\"layer_last\":%d,\"sha256\":\"%s\"", f->shard_index,
                       f->layer_first, f->layer_last, f->sha256_hex);
            putchar('}');
        }
        printf("],\"trackers\":[");
        for (uint32_t i = 0; i < mi.n_trackers; i++) { if (i) putchar(','); json_str(mi.trackers[i]); }
        printf("],\"web_seeds\":[");
        for (uint32_t i = 0; i < mi.n_web_seeds; i++) { if (i) putchar(','); json_str(mi.web_seeds[i]); }
        printf("]}\n");
    } else {
        printf("model id (info-hash): %s\n", mi.info_hash_hex);
        printf("name: %s\n", mi.name);
        printf("size: %s in %u pieces of %s\n", sw_fmt_bytes(mi.total_length, b1, sizeof b1), mi.n_pieces,
               sw_fmt_bytes(mi.piece_length, b2, sizeof b2));
        if (mi.has_shardswarm)
            printf("model: %s, %u layers, %u shards%s%s%s%s\n", mi.architecture[0] ? mi.architecture : "?", mi.n_layers,
                   mi.n_shards, mi.owner_key_hex[0] ? ", owner " : "", mi.owner_key_hex,
                   mi.model_id[0] ? ", split id " : "", mi.model_id);
        for (uint32_t i = 0; i < mi.n_files; i++) {
            const struct sw_bt_file *f = &mi.files[i];
            if (f->pad) continue;
            printf("  file %u: %s  %s  pieces %u-%u", i, f->path, sw_fmt_bytes(f->length, b1, sizeof b1), f->first_piece,
                   f->last_piece);
            if (f->shard_index >= 0) printf("  shard %d layers %d-%d", f->shard_index, f->layer_first, f->layer_last);
            putchar('\n');
        }
        for (uint32_t i = 0; i < mi.n_trackers; i++) printf("tracker: %s\n", mi.trackers[i]);
        for (uint32_t i = 0; i < mi.n_web_seeds; i++) printf("web seed: %s\n", mi.web_seeds[i]);
        struct sw_buf mag = { 0 };
        sw_bt_magnet_format(mi.info_hash, mi.name, (const char *const *)mi.trackers, mi.n_trackers, &mag);
        printf("magnet: %s\n", sw_buf_cstr(&mag) ? (const char *)mag.data : "");
        sw_buf_free(&mag);
    }
    sw_bt_metainfo_free(&mi);
    return SW_EXIT_OK;
}

int sw_cmd_torrent(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? SW_EXIT_USAGE : SW_EXIT_OK;
    }
    if (sw_cli_wants_help(argc, argv)) { usage(stdout); return SW_EXIT_OK; }
    sw_cli_log_setup("human", 0);
    if (!strcmp(argv[1], "create")) return cmd_create(argc, argv);
    if (!strcmp(argv[1], "show")) return cmd_show(argc, argv);
    return sw_cli_usage_error("torrent", "unknown subcommand '%s' (create or show)", argv[1]);
}
