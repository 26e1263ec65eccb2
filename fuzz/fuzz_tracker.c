/* fuzz_tracker.c — the HTTP tracker response parser (BEP 3/7/23) on arbitrary bytes: it must
 * never crash, and what it accepts stays within the caller's buffers and the peer cap. */
#include <string.h>

#include "bt/bt.h"
#include "bt/bt_net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > SW_BT_TRACKER_MAX_RESPONSE) return 0;
    static struct sw_bt_net_peer peers[64];
    char msg[256], warn[256];
    struct sw_bt_announce_result res;
    memset(&res, 0, sizeof res);
    int rc = sw__bt_tracker_parse(data, size, &res, peers, 64, msg, sizeof msg, warn, sizeof warn);
    if (rc == 0 || rc == SW_EPERM) {
        if (res.n_peers > 64) __builtin_trap();
        if (res.n_peers && res.peers != peers) __builtin_trap();
        if (res.message && strlen(res.message) >= sizeof msg) __builtin_trap();
        if (res.warning && strlen(res.warning) >= sizeof warn) __builtin_trap();
    }
    return 0;
}
