/* sw_mktorrent.c — test helper: DIR/model.json -> DIR/model.torrent through the BT engine's
 * sw_bt_torrent_create_from_manifest (what `split --torrent` / `torrent create` call), so
 * the swarm's integration tests do not depend on those CLI commands.
 * usage: sw_mktorrent DIR [OWNER_PUBKEY_HEX] */
#include <stdio.h>

#include "bt/bt.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: sw_mktorrent DIR [OWNER_PUBKEY_HEX]\n");
        return 2;
    }
    struct sw_bt_model_torrent_opts o = { 0 };
    o.owner_key_hex = argc > 2 ? argv[2] : NULL;
    char ih[41] = "", err[512] = "";
    int rc = sw_bt_torrent_create_from_manifest(argv[1], &o, NULL, ih, err, sizeof err);
    if (rc) {
        fprintf(stderr, "sw_mktorrent: %s\n", err[0] ? err : sw_strerror(rc));
        return 1;
    }
    printf("%s\n", ih);
    return 0;
}
