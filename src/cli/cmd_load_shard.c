/* cmd_load_shard.c — `shardswarm load-shard --node ID --shard N --key FILE [--api URL]`:
 * signs a LOAD_SHARD command with the model owner's key and hands it to a running node,
 * which applies it (when it is the target) or forwards it over the swarm. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "cli.h"
#include "owner_cmd.h"
#include "swarm/swarm.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: shardswarm load-shard --node ID --shard N --key FILE [--api URL]\n\n"
               "Tells node ID (64 hex digits, from `shardswarm status`) to load shard N. The\n"
               "command is signed with the model owner's key (`shardswarm keygen`); nodes refuse\n"
               "unsigned, foreign-key or replayed commands. It is handed to the node behind\n"
               "--api (default http://127.0.0.1:8080), which forwards it to ID over the swarm.\n\n"
               "  --node ID     target node id (hex), or 'self' for the node behind --api\n"
               "  --shard N     shard index\n"
               "  --key FILE    the owner key file\n"
               "  --api URL     a running node's API\n"
               "Exit status: 0 accepted or forwarded, 1 refused or unreachable, 2 usage error.\n");
}

int sw_cmd_load_shard(int argc, char **argv)
{
    const char *cmd = "load-shard", *node = NULL, *key = NULL, *api = "http://127.0.0.1:8080";
    uint32_t shard = 0;
    int have_shard = 0, rc;
    if (sw_cli_wants_help(argc, argv)) {
        usage(stdout);
        return SW_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc && (!strcmp(a, "--node") || !strcmp(a, "--shard") || !strcmp(a, "--key") || !strcmp(a, "--api")))
            return sw_cli_usage_error(cmd, "%s needs a value", a);
        if (!strcmp(a, "--node")) node = argv[++i];
        else if (!strcmp(a, "--key")) key = argv[++i];
        else if (!strcmp(a, "--api")) api = argv[++i];
        else if (!strcmp(a, "--shard")) {
            if ((rc = sw_cli_parse_u32(cmd, "--shard", argv[++i], 0, SW_SWARM_MAX_SHARDS - 1, &shard))) return rc;
            have_shard = 1;
        } else return sw_cli_usage_error(cmd, "unknown argument '%s'", a);
    }
    if (!node) return sw_cli_usage_error(cmd, "--node ID is required");
    if (!have_shard) return sw_cli_usage_error(cmd, "--shard N is required");
    if (!key) return sw_cli_usage_error(cmd, "--key FILE is required");
    struct sw_load_cmd c = { 0 };
    c.shard = shard;
    return sw_cli_owner_cmd(cmd, api, node, "--key", key, &c, "/swarm/load-shard");
}
