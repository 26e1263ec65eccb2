/* cmd_chat.c — `shardswarm chat`. NOT IMPLEMENTED YET: placeholder until its issue lands. */
#include <stdio.h>

#include "cli.h"

int sw_cmd_chat(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "shardswarm chat: not implemented yet\n");
    return SW_EXIT_USAGE;
}
