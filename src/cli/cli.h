/* cli.h — what the subcommands share: exit codes, usage errors, log sinks, flag parsing,
 * the terminal progress bar. The CLI is the only place that knows every subsystem. */
#ifndef SW_CLI_H
#define SW_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

enum { SW_EXIT_OK = 0, SW_EXIT_FAIL = 1, SW_EXIT_USAGE = 2 };

/* Each subcommand: argv[0] is the subcommand name. Returns the process exit status. */
typedef int (*sw_cmd_fn)(int argc, char **argv);

int sw_cmd_inspect(int argc, char **argv);
int sw_cmd_split(int argc, char **argv);
int sw_cmd_verify(int argc, char **argv);
int sw_cmd_generate(int argc, char **argv);
int sw_cmd_chat(int argc, char **argv);
int sw_cmd_tokenize(int argc, char **argv);
int sw_cmd_synth(int argc, char **argv);
int sw_cmd_dht(int argc, char **argv);
int sw_cmd_torrent(int argc, char **argv);
int sw_cmd_fetch(int argc, char **argv);
int sw_cmd_seed(int argc, char **argv);
int sw_cmd_node(int argc, char **argv);
int sw_cmd_status(int argc, char **argv);
int sw_cmd_diagnose(int argc, char **argv);
int sw_cmd_keygen(int argc, char **argv);
int sw_cmd_load_shard(int argc, char **argv);
int sw_cmd_drain(int argc, char **argv);

/* Prints "shardswarm CMD: <message>" and a hint to --help on stderr; returns SW_EXIT_USAGE. */
int sw_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "shardswarm CMD: <message>" on stderr; returns SW_EXIT_FAIL. */
int sw_cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* --swarm-key FILE (a private swarm, docs/protocol.md): reads the 32-byte key. Returns 0, or
 * SW_EXIT_USAGE after a message naming the file and what is wrong with it. */
int sw_cli_swarm_key(const char *cmd, const char *path, uint8_t key[32]);
/* True when argv has -h or --help. */
int sw_cli_wants_help(int argc, char **argv);

/* Installs the CLI's log sink. format: "human" ("[TAG] message" lines on stderr) or
 * "json" (one JSON object per line). verbose: also DEBUG. Returns SW_EXIT_USAGE for an
 * unknown format, else 0. */
int sw_cli_log_setup(const char *format, int verbose);

/* Strict number parsing for flags: the whole string must be a number within [min, max].
 * On failure prints a usage error naming the flag and returns SW_EXIT_USAGE. */
int sw_cli_parse_u32(const char *cmd, const char *flag, const char *s, uint32_t min, uint32_t max,
                     uint32_t *out);
int sw_cli_parse_u64(const char *cmd, const char *flag, const char *s, uint64_t min, uint64_t max,
                     uint64_t *out);
int sw_cli_parse_f32(const char *cmd, const char *flag, const char *s, float min, float max,
                     float *out);
/* The sampler flags of generate, generate --swarm and chat: --temp, --top-k, --top-p,
 * --min-p, --repeat-penalty, --repeat-last-n, --seed (sets *seed_set). Returns 1 when flag
 * is one of them (*rc: 0, or SW_EXIT_USAGE after a message naming it), 0 when it is not. */
struct sw_sampler_params;
int sw_cli_sampler_flag(const char *cmd, const char *flag, const char *v, struct sw_sampler_params *sp,
                        int *seed_set, int *rc);
/* Token ids separated by spaces, commas or newlines (each 0..INT32_MAX) into a malloc'd
 * array the caller frees. SW_EINVAL on anything else, SW_ENOMEM. */
int sw_cli_parse_ids(const char *s, int32_t **ids_out, size_t *n_out);
/* The synthetic prompt of --prompt-len (benchmarks), the same for `generate` and
 * `generate --swarm`: n ids spread over the vocabulary by a fixed generator, the first one
 * BOS when bos >= 0. ids holds n. */
void sw_cli_synth_prompt(uint32_t n_vocab, int32_t bos, int32_t *ids, uint32_t n);
/* An address to listen on (--bind, --host): an IPv4 or IPv6 literal, not a name. *family_out
 * gets 4 or 6. A usage error (exit 2) naming the flag otherwise. */
int sw_cli_parse_bind(const char *cmd, const char *flag, const char *s, int *family_out);
/* "host:port" (IPv4 literal or name; port 1..65535). host_out holds >= 256 bytes. */
int sw_cli_parse_hostport(const char *cmd, const char *flag, const char *s, char *host_out,
                          uint16_t *port_out);

/* A one-line progress bar on stderr when it is a terminal (no-op otherwise). Updates may
 * come as often as they like (once per piece, per chunk): the bar redraws at most every
 * SW_CLI_BAR_MS, and once more when done reaches total (which ends the line). The rate and
 * ETA are a sliding window of real time (sw_rate), not an average since the start. */
#define SW_CLI_BAR_MS 100
struct sw_cli_bar {
    const char *label;     /* borrowed */
    int tty;
    int finished;          /* the final line is drawn */
    uint64_t last_ms;      /* last redraw; 0: none yet */
    struct sw_rate rate;
};
void sw_cli_bar_init(struct sw_cli_bar *b, const char *label);
void sw_cli_bar_update(struct sw_cli_bar *b, uint64_t done, uint64_t total);
/* The same with a rate and ETA measured by the caller (the BitTorrent engine's); eta_ms
 * UINT64_MAX when unknown. */
void sw_cli_bar_update_rate(struct sw_cli_bar *b, uint64_t done, uint64_t total, double rate_bps,
                            uint64_t eta_ms);

#endif
