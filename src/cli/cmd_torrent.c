/* cmd_torrent.c — `shardswarm torrent`. NOT IMPLEMENTED YET: placeholder until its issue lands. */
#include <stdio.h>

#include "cli.h"

int sw_cmd_torrent(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "shardswarm torrent: not implemented yet\n");
    return SW_EXIT_USAGE;
}
