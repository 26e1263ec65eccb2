/* cmd_tokenize.c — `shardswarm tokenize`. NOT IMPLEMENTED YET: placeholder until its issue lands. */
#include <stdio.h>

#include "cli.h"

int sw_cmd_tokenize(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "shardswarm tokenize: not implemented yet\n");
    return SW_EXIT_USAGE;
}
