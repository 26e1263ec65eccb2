/* owner_cmd.h — signing and sending an owner command (LOAD_SHARD, DRAIN) from the CLI. */
#ifndef SW_CLI_OWNER_CMD_H
#define SW_CLI_OWNER_CMD_H

struct sw_load_cmd;

/* c: type (and shard) set by the caller; info_hash, target and ts are filled here. node: 64
 * hex digits or "self"; key: the owner key file (named by key_flag in errors); route: the
 * API path ("/swarm/load-shard", "/swarm/drain"). Prints the node's answer; returns an exit
 * status (usage errors and failures after a message). */
int sw_cli_owner_cmd(const char *cmd, const char *api, const char *node, const char *key_flag, const char *key,
                     struct sw_load_cmd *c, const char *route);

#endif
