/* bt_run.h — the BitTorrent runner shared by `fetch` and `seed` (cmd_fetch.c holds it). */
#ifndef SW_CLI_BT_RUN_H
#define SW_CLI_BT_RUN_H

#include <stdint.h>

#define SW_BT_RUN_MAX_LIST 64

struct sw__bt_run_cfg {
    const char *cmd;
    const char *src;            /* .torrent path or magnet link */
    const char *dir;
    int seed;                   /* serve until stopped, fetch nothing */
    int all;
    uint32_t sel[SW_BT_RUN_MAX_LIST]; /* --file N: shard index (or file index without shardswarm dict) */
    uint32_t n_sel;
    const char *peers[SW_BT_RUN_MAX_LIST];
    uint32_t n_peers;
    const char *boot[SW_BT_RUN_MAX_LIST];
    uint32_t n_boot;
    int verify;
    uint32_t timeout_s;
    uint16_t listen_port;
    const char *listen_host;
    int verbose;
    int has_swarm_key;          /* --swarm-key FILE: a private swarm (docs/protocol.md) */
    uint8_t swarm_key[32];
};

/* Runs the session until complete (fetch) or stopped (seed); returns the exit status. */
int sw__bt_run(struct sw__bt_run_cfg *c);
/* Parses an option both commands take at argv[*i_io]; advances *i_io past its value.
 * Returns 1 when taken, 0 when not ours, or -SW_EXIT_USAGE after printing the error. */
int sw__bt_parse_common(struct sw__bt_run_cfg *c, int argc, char **argv, int *i_io);

#endif
