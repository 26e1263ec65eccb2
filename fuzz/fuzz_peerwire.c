/* fuzz_peerwire.c — the peer wire decoder (handshake, framing, piece streaming, BEP 10
 * extension frames) must never crash or read past its input, whatever the bytes and however
 * they are split. The first input byte chooses the chunk size; small caps make the size
 * limits reachable. */
#include <stdlib.h>
#include <string.h>

#include "bt/bt.h"
#include "bt/bt_int.h"

static void on_ev(void *ud, const struct sw_bt_wire_ev *ev)
{
    size_t *sum = ud;
    /* Touch every byte handed out so ASan sees any out-of-bounds pointer. */
    if (ev->type == SW_BT_WEV_PIECE_DATA)
        for (uint32_t i = 0; i < ev->frag_len; i++) *sum += ev->frag[i];
    if (ev->type == SW_BT_WEV_MSG)
        for (size_t i = 0; i < ev->payload_len; i++) *sum += ev->payload[i];
    if (ev->type == SW_BT_WEV_HANDSHAKE) *sum += ev->info_hash[19] + ev->peer_id[19] + ev->reserved[7];
    if (ev->type == SW_BT_WEV_MSG && ev->id == SW_BT_EXTENDED) {
        /* extension payloads are bencode: decode with the session's caps */
        struct sw_bdoc d;
        struct sw_blimits lim = { 4096, 16 };
        size_t used;
        if (sw_bdecode(ev->payload, ev->payload_len, &lim, &d, &used, NULL, 0) == 0) sw_bdoc_free(&d);
    }
}

static const uint8_t fuzz_ih[20] = { 1, 2, 3 };

static const uint8_t *lookup(void *ud, const uint8_t req2[20])
{
    (void)ud;
    return req2[0] == 0 ? fuzz_ih : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t chunk = 1 + data[0] * 17u;
    data++;
    size--;
    struct sw_bt_wire_limits lim = { .max_msg = 4096, .max_block = 16384, .max_ext = 2048, .max_ext_big = 65536 };
    struct sw_bt_wire w;
    sw_bt_wire_init(&w, &lim);
    sw_bt_wire_allow_big_ext(&w, 3);
    size_t sum = 0;
    for (size_t off = 0; off < size;) {
        size_t n = size - off < chunk ? size - off : chunk;
        /* copy so each feed's input is exactly n bytes for ASan */
        uint8_t *c = malloc(n);
        if (!c) break;
        memcpy(c, data + off, n);
        int rc = sw_bt_wire_feed(&w, c, n, on_ev, &sum);
        free(c);
        if (rc) break;
        off += n;
    }
    sw_bt_wire_free(&w);
    /* The MSE receiver sees the same bytes (a dialling peer that does not start with 19). */
    if (size && data[0] != 19) {
        struct sw__mse *m = sw__mse_new();
        struct sw_buf reply = { 0 }, plain = { 0 };
        for (size_t off = 0; m && off < size;) {
            size_t n = size - off < chunk ? size - off : chunk;
            if (sw__mse_feed(m, data + off, n, &reply, &plain, lookup, NULL) < 0) break;
            off += n;
        }
        sw__mse_free(m);
        sw_buf_free(&reply);
        sw_buf_free(&plain);
    }
    volatile size_t sink = sum; /* keep the reads alive */
    (void)sink;
    return 0;
}
