/* cmd_fetch.c — `shardswarm fetch`. NOT IMPLEMENTED YET: placeholder until its issue lands. */
#include <stdio.h>

#include "cli.h"

int sw_cmd_fetch(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "shardswarm fetch: not implemented yet\n");
    return SW_EXIT_USAGE;
}
