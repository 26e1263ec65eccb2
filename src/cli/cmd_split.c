/* cmd_split.c — `shardswarm split`. NOT IMPLEMENTED YET: placeholder until its issue lands. */
#include <stdio.h>

#include "cli.h"

int sw_cmd_split(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "shardswarm split: not implemented yet\n");
    return SW_EXIT_USAGE;
}
