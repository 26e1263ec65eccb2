/* cmd_generate.c — `shardswarm generate`. NOT IMPLEMENTED YET: placeholder until its issue lands. */
#include <stdio.h>

#include "cli.h"

int sw_cmd_generate(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "shardswarm generate: not implemented yet\n");
    return SW_EXIT_USAGE;
}
