/* cmd_inspect.c — `shardswarm inspect`. NOT IMPLEMENTED YET: placeholder until its issue lands. */
#include <stdio.h>

#include "cli.h"

int sw_cmd_inspect(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "shardswarm inspect: not implemented yet\n");
    return SW_EXIT_USAGE;
}
