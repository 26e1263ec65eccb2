/* cmd_keygen.c — `shardswarm keygen -o FILE`: makes an ed25519 owner key (the model owner's
 * key: its public half goes into the torrent, its signature makes LOAD_SHARD commands);
 * `keygen --swarm -o FILE`: a private swarm's 32-byte secret (docs/protocol.md). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "net/noise.h"
#include "swarm/swarm.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: shardswarm keygen -o FILE [--force]\n"
               "       shardswarm keygen --swarm -o FILE [--force]\n\n"
               "Makes an ed25519 key pair for the model owner and writes the secret to FILE\n"
               "(mode 0600). Prints the public key in hex: give FILE to `split`/`torrent create\n"
               "--owner-key` so the torrent names it, and to `load-shard --key` to sign commands.\n\n"
               "--swarm makes a private swarm's key instead: 32 random bytes as 64 hex digits (mode\n"
               "0600). Give the same FILE to every member's --swarm-key (node, fetch, seed, generate\n"
               "--swarm); nodes without it cannot connect or read the swarm's traffic.\n\n"
               "  -o, --out FILE   where to write the key (refuses to overwrite without --force)\n"
               "  --force          overwrite an existing FILE\n"
               "Exit status: 0 ok, 1 cannot write FILE, 2 usage error.\n");
}

int sw_cmd_keygen(int argc, char **argv)
{
    const char *cmd = "keygen", *out = NULL;
    int force = 0, swarm = 0;
    if (sw_cli_wants_help(argc, argv)) {
        usage(stdout);
        return SW_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--out")) {
            if (++i >= argc) return sw_cli_usage_error(cmd, "%s needs a FILE", argv[i - 1]);
            out = argv[i];
        } else if (!strcmp(argv[i], "--force")) {
            force = 1;
        } else if (!strcmp(argv[i], "--swarm")) {
            swarm = 1;
        } else {
            return sw_cli_usage_error(cmd, "unknown argument '%s'", argv[i]);
        }
    }
    if (!out) return sw_cli_usage_error(cmd, "-o FILE is required");
    if (swarm) {
        char err[512];
        if (sw_swarm_key_generate(out, force, err, sizeof err)) return sw_cli_fail(cmd, "%s", err);
        fprintf(stderr, "swarm key written to %s (mode 0600; share it only with the swarm's members)\n", out);
        return SW_EXIT_OK;
    }
    if (!force && sw_path_exists(out))
        return sw_cli_fail(cmd, "%s exists; not overwriting an owner key (use --force)", out);
    struct sw_identity id;
    int rc = sw_identity_generate(&id);
    if (!rc) rc = sw_identity_save(out, &id);
    if (rc) return sw_cli_fail(cmd, "%s: cannot write the key (%s)", out, sw_strerror(rc));
    char hex[65];
    printf("%s\n", sw_node_id_hex(id.pk, hex));
    fprintf(stderr, "owner key written to %s (keep it secret); public key above\n", out);
    return SW_EXIT_OK;
}
