/* cmd_synth.c — `shardswarm synth`. NOT IMPLEMENTED YET: placeholder until its issue lands. */
#include <stdio.h>

#include "cli.h"

int sw_cmd_synth(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "shardswarm synth: not implemented yet\n");
    return SW_EXIT_USAGE;
}
