/* generate_swarm.h — `shardswarm generate --swarm`: a light client (no shard) that joins a
 * swarm, opens a pipeline session along the best route and streams the tokens. The lead's
 * cmd_generate.c hands over to it when --swarm is given (argv as generate got it). */
#ifndef SW_CLI_GENERATE_SWARM_H
#define SW_CLI_GENERATE_SWARM_H

int sw_cli_generate_swarm(int argc, char **argv);

#endif
