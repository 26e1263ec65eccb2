/* cmd_verify.c — `shardswarm verify`. NOT IMPLEMENTED YET: placeholder until its issue lands. */
#include <stdio.h>

#include "cli.h"

int sw_cmd_verify(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "shardswarm verify: not implemented yet\n");
    return SW_EXIT_USAGE;
}
