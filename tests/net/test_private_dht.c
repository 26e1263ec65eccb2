/* test_private_dht.c — the members' DHT (dht_uv.c with a swarm key; docs/protocol.md): on one
 * libuv loop, real UDP sockets on 127.0.0.1. Members A and B find each other and the peer A
 * announced under the key-derived info-hash; C (another key) and D (a public DHT) are
 * dropped by B unanswered and never enter its table. Every wait is bounded. */
#include <uv.h>

#include "dht/dht.h"
#include "net/noise.h"
#include "test.h"

struct who {
    int peers_found; /* B: SW_DHT_EV_PEER for the derived info-hash, port 7777 */
    uint8_t target[20];
};

static void on_event(void *ud, const struct sw_dht_event *ev)
{
    struct who *w = ud;
    if (ev->type == SW_DHT_EV_PEER && !ev->is_self && !memcmp(ev->target, w->target, 20) && ev->addr.port == 7777)
        w->peers_found++;
}

static struct sw_dht_uv *mk(uv_loop_t *loop, const uint8_t *key, struct who *w)
{
    struct sw_dht_uv_config c;
    memset(&c, 0, sizeof c);
    c.bind_host = "127.0.0.1";
    c.swarm_key = key;
    c.dht.on_event = on_event;
    c.dht.ud = w;
    int err = 0;
    struct sw_dht_uv *u = sw_dht_uv_new(loop, &c, &err);
    CHECK_MSG(u != NULL, "sw_dht_uv_new: %d", err);
    return u;
}

static void run_for(uv_loop_t *loop, int ms, int (*done)(void *), void *ud)
{
    uint64_t end = uv_now(loop) + (uint64_t)ms;
    while (uv_now(loop) < end && !(done && done(ud))) uv_run(loop, UV_RUN_NOWAIT), uv_sleep(2), uv_update_time(loop);
}

static int found(void *ud) { return ((struct who *)ud)->peers_found > 0; }

static void test_members_only(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    uint8_t key[32], other[32], ih[20];
    for (int i = 0; i < 32; i++) key[i] = (uint8_t)(i * 7 + 1), other[i] = (uint8_t)(i * 7 + 2);
    memset(ih, 0x42, 20);
    struct who wa = { 0 }, wb = { 0 }, wc = { 0 }, wd = { 0 };
    sw_swarm_dht_infohash(key, ih, wb.target);
    struct sw_dht_uv *a = mk(&loop, key, &wa), *b = mk(&loop, key, &wb), *c = mk(&loop, other, &wc), *d = mk(&loop, NULL, &wd);
    if (!a || !b || !c || !d) return;
    char boot[64];
    snprintf(boot, sizeof boot, "127.0.0.1:%u", sw_dht_uv_port(b));
    const char *bl[1] = { boot };
    sw_dht_uv_bootstrap(a, bl, 1);
    sw_dht_uv_bootstrap(c, bl, 1);
    sw_dht_uv_bootstrap(d, bl, 1);
    run_for(&loop, 1500, NULL, NULL);
    struct sw_dht_stats sa, sb, sc, sd;
    sw_dht_get_stats(sw_dht_uv_dht(a), &sa);
    sw_dht_get_stats(sw_dht_uv_dht(b), &sb);
    sw_dht_get_stats(sw_dht_uv_dht(c), &sc);
    sw_dht_get_stats(sw_dht_uv_dht(d), &sd);
    CHECK_MSG(sa.nodes >= 1 && sb.nodes >= 1, "members see each other: A %u nodes, B %u", sa.nodes, sb.nodes);
    CHECK_MSG(sb.nodes == 1, "B's table holds only the member A: %u nodes", sb.nodes);
    CHECK_MSG(sc.nodes == 0 && sc.replies_in == 0, "C (another key) got %u replies, %u nodes", (unsigned)sc.replies_in, sc.nodes);
    CHECK_MSG(sd.nodes == 0 && sd.replies_in == 0, "D (public) got %u replies, %u nodes", (unsigned)sd.replies_in, sd.nodes);
    CHECK_MSG(sw_dht_uv_dropped(b) >= 2, "B dropped %llu datagrams", (unsigned long long)sw_dht_uv_dropped(b));
    CHECK_MSG(sb.malformed == 0, "nothing unsealed reached B's KRPC parser (%llu malformed)", (unsigned long long)sb.malformed);
    /* A announces under the derived info-hash; B finds it there */
    uint64_t now = sw_dht_uv_now(a);
    sw_dht_announce(sw_dht_uv_dht(a), wb.target, 7777, 0, now, NULL);
    run_for(&loop, 500, NULL, NULL);
    sw_dht_get_peers(sw_dht_uv_dht(b), wb.target, sw_dht_uv_now(b), NULL);
    run_for(&loop, 3000, found, &wb);
    CHECK_MSG(wb.peers_found > 0, "B did not find A's announcement under the derived info-hash");
    sw_dht_uv_close(a);
    sw_dht_uv_close(b);
    sw_dht_uv_close(c);
    sw_dht_uv_close(d);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

int main(void)
{
    SW_RUN(test_members_only);
    return SW_TEST_DONE();
}
