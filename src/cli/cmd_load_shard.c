/* cmd_load_shard.c — `shardswarm load-shard`. NOT IMPLEMENTED YET: placeholder until its issue lands. */
#include <stdio.h>

#include "cli.h"

int sw_cmd_load_shard(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "shardswarm load-shard: not implemented yet\n");
    return SW_EXIT_USAGE;
}
