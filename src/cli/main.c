/* main.c — `shardswarm <command> ...`: dispatch, --help and --version. */
#include <stdio.h>
#include <string.h>

#include "cli.h"


static const struct {
    const char *name;
    sw_cmd_fn fn;
    const char *summary;
} commands[] = {
    { "inspect", sw_cmd_inspect, "show a GGUF file's metadata, tensors and bytes per layer" },
    { "split", sw_cmd_split, "cut a model into layer-range shards (+ manifest and torrent)" },
    { "verify", sw_cmd_verify, "check the shards of a split folder" },
    { "generate", sw_cmd_generate, "generate text from a model (or across a swarm)" },
    { "chat", sw_cmd_chat, "interactive chat with a model" },
    { "tokenize", sw_cmd_tokenize, "print the token ids of a text" },
    { "synth", sw_cmd_synth, "write a random-weight model of a real architecture's shape" },
    { "dht", sw_cmd_dht, "mainline DHT tools: run, ping, get-peers, announce, put, get" },
    { "torrent", sw_cmd_torrent, "create or show a model torrent" },
    { "fetch", sw_cmd_fetch, "download shards of a model torrent or magnet" },
    { "seed", sw_cmd_seed, "serve a model's shards to the swarm" },
    { "node", sw_cmd_node, "run a swarm node" },
    { "status", sw_cmd_status, "show a running node's view of the swarm" },
    { "diagnose", sw_cmd_diagnose, "explain why a swarm is not ready, and how to fix it" },
    { "keygen", sw_cmd_keygen, "make an ed25519 owner key" },
    { "load-shard", sw_cmd_load_shard, "tell a node to load a shard (signed by the owner key)" },
    { "drain", sw_cmd_drain, "tell a node to stop serving, keep seeding (signed by the owner key)" },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: shardswarm <command> [options]\n\n"
               "Runs one large language model across machines that could not hold it alone.\n\n"
               "commands:\n");
    for (size_t i = 0; i < SW_ARRAY_LEN(commands); i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'shardswarm <command> --help' describes each command. --version prints the version.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return SW_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return SW_EXIT_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("shardswarm %s\n", SW_VERSION);
        return SW_EXIT_OK;
    }
    for (size_t i = 0; i < SW_ARRAY_LEN(commands); i++)
        if (!strcmp(cmd, commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "shardswarm: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return SW_EXIT_USAGE;
}
