/* fuzz_krpc.c — the KRPC decoder and the DHT's handling of any datagram must never crash,
 * must stay within the packet size cap on output, and count what they drop. */
#include <stdlib.h>
#include <string.h>

#include "dht/dht.h"
#include "dht/krpc.h"

static void on_event(void *ud, const struct sw_dht_event *ev)
{
    (void)ud;
    if (ev->type == SW_DHT_EV_ITEM && ev->value_len > SW_DHT_MAX_VALUE) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sw__krpc m;
    struct sw_bdoc doc;
    if (sw__krpc_parse(data, size, &m, &doc) == 0) {
        if (m.id && (m.id < data || m.id + 20 > data + size)) abort();
        if (m.nodes && m.nodes_len % 26) abort();
        if (m.v && (m.v < data || m.v + m.v_len > data + size)) abort();
        sw_bdoc_free(&doc);
    }
    /* The whole state machine: the input as a query and, after a lookup, as a reply. */
    struct sw_dht_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.rng_seed = 7;
    cfg.on_event = on_event;
    struct sw_dht *d = sw_dht_new(&cfg, 1000);
    if (!d) return 0;
    struct sw_dht_addr from;
    memset(&from, 0, sizeof from);
    from.family = 4;
    from.ip[0] = 10;
    from.ip[3] = 1;
    from.port = 6881;
    sw_dht_input(d, data, size, &from, 1000);
    uint8_t buf[SW_DHT_MAX_PACKET];
    struct sw_dht_addr to;
    size_t n;
    while ((n = sw_dht_pop_packet(d, &to, buf, sizeof buf)) > 0)
        if (n > SW_DHT_MAX_PACKET) abort();
    sw_dht_add_contact(d, &from, 1000);
    while ((n = sw_dht_pop_packet(d, &to, buf, sizeof buf)) > 0) {
        /* answer our own query with the fuzz input, using its transaction id */
        struct sw__krpc q;
        struct sw_bdoc qd;
        if (sw__krpc_parse(buf, n, &q, &qd) == 0) {
            if (size > 8 && q.t_len == 4) {
                uint8_t *copy = malloc(size);
                if (copy) {
                    memcpy(copy, data, size);
                    /* splice the tid into a "1:t4:" field if the input has one */
                    for (size_t i = 0; i + 9 <= size; i++)
                        if (!memcmp(copy + i, "1:t4:", 5)) { memcpy(copy + i + 5, q.t, 4); break; }
                    sw_dht_input(d, copy, size, &from, 1001);
                    free(copy);
                }
            }
            sw_bdoc_free(&qd);
        }
    }
    sw_dht_periodic(d, 100000);
    while (sw_dht_pop_packet(d, &to, buf, sizeof buf) > 0) {}
    sw_dht_free(d);
    return 0;
}
