/* fuzz_swarm_record.c — the swarm's decoders of outside bytes: signed capability records
 * and owner commands (LOAD_SHARD, DRAIN). The first input byte picks the decoder; neither
 * may crash, an accepted record must be self-consistent, and an accepted command must have
 * a known type (a DRAIN carries no shard). */
#include <string.h>

#include "swarm/swarm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    char err[256];
    if (data[0] & 1) {
        struct sw_load_cmd cmd;
        if (sw_load_cmd_decode(data + 1, size - 1, &cmd, err, sizeof err) == 0) {
            if (cmd.type >= SW_CMD_COUNT_) __builtin_trap();
            if (cmd.type == SW_CMD_DRAIN && cmd.shard != 0) __builtin_trap();
            if (cmd.type == SW_CMD_LOAD_SHARD && cmd.shard >= SW_SWARM_MAX_SHARDS) __builtin_trap();
        }
        return 0;
    }
    struct sw_cap cap;
    if (sw_cap_decode(data + 1, size - 1, &cap, err, sizeof err) == 0) {
        /* Accepted: its fields must be self-consistent enough to encode again. */
        if (cap.n_neighbours > SW_SWARM_MAX_NEIGHBOURS) __builtin_trap();
        if (memchr(cap.api_addr, 0, sizeof cap.api_addr) == NULL) __builtin_trap();
        if (memchr(cap.listen_addr, 0, sizeof cap.listen_addr) == NULL) __builtin_trap();
    }
    return 0;
}
