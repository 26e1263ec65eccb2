/* cmd_node.c — `shardswarm node`. NOT IMPLEMENTED YET: placeholder until its issue lands. */
#include <stdio.h>

#include "cli.h"

int sw_cmd_node(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "shardswarm node: not implemented yet\n");
    return SW_EXIT_USAGE;
}
