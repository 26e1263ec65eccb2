/* cmd_seed.c — `shardswarm seed`. NOT IMPLEMENTED YET: placeholder until its issue lands. */
#include <stdio.h>

#include "cli.h"

int sw_cmd_seed(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "shardswarm seed: not implemented yet\n");
    return SW_EXIT_USAGE;
}
