/* cmd_diagnose.c — `shardswarm diagnose`. NOT IMPLEMENTED YET: placeholder until its issue lands. */
#include <stdio.h>

#include "cli.h"

int sw_cmd_diagnose(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "shardswarm diagnose: not implemented yet\n");
    return SW_EXIT_USAGE;
}
