/* cmd_status.c — `shardswarm status`. NOT IMPLEMENTED YET: placeholder until its issue lands. */
#include <stdio.h>

#include "cli.h"

int sw_cmd_status(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "shardswarm status: not implemented yet\n");
    return SW_EXIT_USAGE;
}
