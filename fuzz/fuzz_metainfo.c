/* fuzz_metainfo.c — .torrent parsing (bencode + BEP 3 metainfo + the shardswarm dict), the
 * raw-info path used after BEP 9, and magnet links must never crash; whatever parses must
 * have safe paths, consistent piece ranges, and re-encode to the same info-hash. */
#include <stdlib.h>
#include <string.h>

#include "bt/bt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sw_bt_metainfo mi;
    char err[256];
    if (sw_bt_metainfo_parse(data, size, &mi, err, sizeof err) == 0) {
        for (uint32_t i = 0; i < mi.n_files; i++) {
            if (!sw_bt_path_is_safe(mi.files[i].path)) abort();
            if (mi.files[i].length && mi.files[i].last_piece >= mi.n_pieces) abort();
        }
        struct sw_bt_span sp[8];
        for (uint32_t p = 0; p < mi.n_pieces && p < 64; p++)
            (void)sw_bt_piece_spans(&mi, p, 0, sw_bt_piece_size(&mi, p), sp, 8);
        struct sw_buf b = { 0 };
        struct sw_bt_metainfo mi2;
        if (sw_bt_metainfo_encode(&mi, &b) == 0) {
            if (sw_bt_metainfo_parse(b.data, b.len, &mi2, err, sizeof err) != 0) abort();
            if (memcmp(mi.info_hash, mi2.info_hash, 20)) abort();
            sw_bt_metainfo_free(&mi2);
        }
        sw_buf_free(&b);
        sw_bt_metainfo_free(&mi);
    }
    if (sw_bt_metainfo_parse_info(data, size, &mi, err, sizeof err) == 0) sw_bt_metainfo_free(&mi);
    if (size < 4096) {
        char *s = malloc(size + 1);
        if (!s) return 0;
        memcpy(s, data, size);
        s[size] = 0;
        struct sw_bt_magnet m;
        if (sw_bt_magnet_parse(s, &m, err, sizeof err) == 0) sw_bt_magnet_free(&m);
        free(s);
    }
    return 0;
}
