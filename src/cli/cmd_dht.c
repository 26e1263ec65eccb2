/* cmd_dht.c — `shardswarm dht`. NOT IMPLEMENTED YET: placeholder until its issue lands. */
#include <stdio.h>

#include "cli.h"

int sw_cmd_dht(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "shardswarm dht: not implemented yet\n");
    return SW_EXIT_USAGE;
}
