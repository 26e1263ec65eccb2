/* cmd_drain.c — `shardswarm drain --node ID --owner-key FILE [--api URL]`: signs a DRAIN
 * command with the model owner's key and hands it to a running node, which applies it (when
 * it is the target: hands its sessions over, unloads, keeps seeding) or forwards it.
 * Same format and checks as load-shard (docs/swarm.md, "Owner commands"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "cli.h"
#include "owner_cmd.h"
#include "swarm/swarm.h"


static void usage(FILE *f)
{
    fprintf(f, "usage: shardswarm drain --node ID --owner-key FILE [--api URL]\n\n"
               "Tells node ID (64 hex digits, from `shardswarm status`) to stop serving: the\n"
               "sessions on its stage fail over to a replica at once, it unloads its shard but\n"
               "keeps the file and keeps seeding it, and it stays \"drained\" (loading nothing on\n"
               "its own) until a `shardswarm load-shard` for it. The command is signed with the\n"
               "model owner's key (`shardswarm keygen`); nodes refuse unsigned, foreign-key or\n"
               "replayed commands. It is handed to the node behind --api (default\n"
               "http://127.0.0.1:8080), which forwards it to ID over the swarm.\n\n"
               "  --node ID          target node id (hex), or 'self' for the node behind --api\n"
               "  --owner-key FILE   the owner key file (--key FILE also works)\n"
               "  --api URL          a running node's API ($SHARDSWARM_API_KEY is sent when set)\n"
               "Exit status: 0 accepted or forwarded, 1 refused or unreachable, 2 usage error.\n");
}

int sw_cmd_drain(int argc, char **argv)
{
    const char *cmd = "drain", *node = NULL, *key = NULL, *api = "http://127.0.0.1:8080";
    if (sw_cli_wants_help(argc, argv)) {
        usage(stdout);
        return SW_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int takes = !strcmp(a, "--node") || !strcmp(a, "--owner-key") || !strcmp(a, "--key") || !strcmp(a, "--api");
        if (takes && i + 1 >= argc) return sw_cli_usage_error(cmd, "%s needs a value", a);
        if (!strcmp(a, "--node")) node = argv[++i];
        else if (!strcmp(a, "--owner-key") || !strcmp(a, "--key")) key = argv[++i];
        else if (!strcmp(a, "--api")) api = argv[++i];
        else return sw_cli_usage_error(cmd, "unknown argument '%s'", a);
    }
    if (!node) return sw_cli_usage_error(cmd, "--node ID is required");
    if (!key) return sw_cli_usage_error(cmd, "--owner-key FILE is required");
    struct sw_load_cmd c = { 0 };
    c.type = SW_CMD_DRAIN;
    return sw_cli_owner_cmd(cmd, api, node, "--owner-key", key, &c, "/swarm/drain");
}
