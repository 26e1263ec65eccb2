/* cmd_keygen.c — `shardswarm keygen`. NOT IMPLEMENTED YET: placeholder until its issue lands. */
#include <stdio.h>

#include "cli.h"

int sw_cmd_keygen(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "shardswarm keygen: not implemented yet\n");
    return SW_EXIT_USAGE;
}
