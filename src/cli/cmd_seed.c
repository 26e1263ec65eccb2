/* cmd_seed.c — `shardswarm seed TORRENT --dir DIR`: serve a model's shards to the swarm until
 * SIGINT/SIGTERM. Shares the runner in cmd_fetch.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli/bt_run.h"


static void usage(FILE *f)
{
    fprintf(f, "usage: shardswarm seed TORRENT [--dir DIR] [--listen PORT] [--bind IP]\n"
               "                       [--peer HOST:PORT ...] [--bootstrap HOST:PORT ...] [--verify] [-v]\n\n"
               "Serves the files of a model torrent that are present in DIR (default: the torrent's\n"
               "folder) until stopped with SIGINT/SIGTERM. Logs '[BT] listening on HOST:PORT'.\n"
               "Complete files are trusted (resume data, or a final-named file of the right size);\n"
               "--verify rehashes everything first.\n"
               "  --dir DIR           folder holding the shard files\n"
               "  --listen PORT       TCP port (default: any free port)\n"
               "  --bind IP           address to listen on, TCP and DHT (default 0.0.0.0); --host too\n"
               "  --peer HOST:PORT    also connect to this peer; repeatable\n"
               "  --bootstrap H:P     DHT bootstrap node: announce the info-hash; repeatable\n"
               "  --timeout S         stop after S seconds (exit 0)\n"
               "  --swarm-key FILE    a private swarm: members only, encrypted (docs/protocol.md)\n"
               "Exit status: 0 stopped by a signal, 1 bad torrent or cannot listen, 2 usage error.\n");
}

int sw_cmd_seed(int argc, char **argv)
{
    if (sw_cli_wants_help(argc, argv)) { usage(stdout); return SW_EXIT_OK; }
    static struct sw__bt_run_cfg c;
    static char dirbuf[4096];
    memset(&c, 0, sizeof c);
    c.cmd = "seed";
    c.seed = 1;
    for (int i = 1; i < argc; i++) {
        int rc = sw__bt_parse_common(&c, argc, argv, &i);
        if (rc < 0) return -rc;
        if (rc) continue;
        const char *a = argv[i];
        if (!strcmp(a, "--dir")) {
            if (i + 1 >= argc) return sw_cli_usage_error(c.cmd, "--dir needs a folder");
            c.dir = argv[++i];
            if (!sw_is_dir(c.dir)) return sw_cli_usage_error(c.cmd, "--dir: '%s' is not a folder", c.dir);
        } else if (a[0] == '-') {
            return sw_cli_usage_error(c.cmd, "unknown option '%s'", a);
        } else if (!c.src) {
            c.src = a;
        } else {
            return sw_cli_usage_error(c.cmd, "unexpected argument '%s'", a);
        }
    }
    if (!c.src) return sw_cli_usage_error(c.cmd, "TORRENT is required");
    if (!strncmp(c.src, "magnet:", 7)) return sw_cli_usage_error(c.cmd, "seed needs a .torrent file, not a magnet link");
    if (!c.dir) {
        snprintf(dirbuf, sizeof dirbuf, "%s", c.src);
        char *slash = strrchr(dirbuf, '/');
        if (slash) *slash = 0;
        else snprintf(dirbuf, sizeof dirbuf, ".");
        c.dir = dirbuf;
    }
    sw_cli_log_setup("human", c.verbose);
    int rc = sw__bt_run(&c);
    /* --timeout ends a seeder normally. */
    return rc;
}
