/* dht_sim.c — 10,000 DHT state machines in one process on a simulated network: a latency
 * per link (drawn once per pair), 1% packet loss, a simulated clock driven by an event
 * queue. Measures find_node, get_peers and BEP 44 get lookups (success, hops, simulated
 * time, queries per lookup), then again after 20% of the nodes left and as many joined.
 *
 * usage: bench_dht_sim [--nodes N] [--lookups L] [--loss PCT] [--churn PCT] [--seed S] [--json] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dht/dht.h"

struct ev {
    uint64_t t;
    uint64_t seq;
    int32_t node;  /* destination */
    int32_t src;   /* packet source; -1 for a timer */
    uint16_t len;
    uint8_t *data;
};

struct simnode {
    struct sw_dht *d;
    struct sw_dht_addr addr;
    int alive;
    uint64_t sched; /* time of the queued timer event, UINT64_MAX none */
};

struct measure {
    int node;
    uint32_t lookup;
    int kind;          /* 0 find_node, 1 get_peers */
    int done, success;
    uint32_t hops, queries;
    uint64_t found_ms, done_ms;
};

struct sim {
    struct simnode *n;
    int n_nodes, cap_nodes;
    struct ev *heap;
    size_t heap_n, heap_cap;
    uint64_t seq, now;
    uint64_t rng;
    double loss;
    uint64_t packets, dropped;
    struct measure *m;
    int n_m, cap_m;
};

static uint64_t rnd(struct sim *s)
{
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return x * UINT64_C(2685821657736338717);
}

static double rnd01(struct sim *s) { return (double)(rnd(s) >> 11) / 9007199254740992.0; }

/* ------------------------------------------------------------------ event heap */

static int ev_less(const struct ev *a, const struct ev *b) { return a->t < b->t || (a->t == b->t && a->seq < b->seq); }

static void heap_push(struct sim *s, struct ev e)
{
    if (s->heap_n == s->heap_cap) {
        s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 4096;
        s->heap = realloc(s->heap, s->heap_cap * sizeof *s->heap);
        if (!s->heap) { fprintf(stderr, "out of memory\n"); exit(1); }
    }
    e.seq = s->seq++;
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ev_less(&e, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = e;
}

static struct ev heap_pop(struct sim *s)
{
    struct ev top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->heap_n) break;
        if (c + 1 < s->heap_n && ev_less(&s->heap[c + 1], &s->heap[c])) c++;
        if (!ev_less(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->heap_n) s->heap[i] = last;
    return top;
}

/* ------------------------------------------------------------------ network */

static int addr_to_node(const struct sw_dht_addr *a)
{
    if (a->family != 4 || a->ip[0] != 10) return -1;
    return ((int)a->ip[1] << 16 | (int)a->ip[2] << 8 | (int)a->ip[3]) - 1;
}

/* One-way latency of a link, fixed per pair: 10..200 ms, skewed toward the low end. */
static uint64_t latency(int a, int b)
{
    uint64_t x = (uint64_t)(a < b ? a : b) * 1000003u + (uint64_t)(a < b ? b : a);
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    double u = (double)(x % 10000) / 10000.0;
    return 10 + (uint64_t)(190.0 * u * u);
}

static void schedule(struct sim *s, int i)
{
    struct simnode *nd = &s->n[i];
    uint64_t t = sw_dht_next_deadline(nd->d);
    if (t < s->now) t = s->now;
    if (t < nd->sched) {
        nd->sched = t;
        heap_push(s, (struct ev){ .t = t, .node = i, .src = -1 });
    }
}

static void drain(struct sim *s, int i)
{
    uint8_t buf[SW_DHT_MAX_PACKET];
    struct sw_dht_addr to;
    size_t n;
    while ((n = sw_dht_pop_packet(s->n[i].d, &to, buf, sizeof buf)) > 0) {
        s->packets++;
        int dst = addr_to_node(&to);
        if (dst < 0 || dst >= s->n_nodes || rnd01(s) < s->loss) {
            s->dropped++;
            continue;
        }
        uint8_t *p = malloc(n);
        if (!p) continue;
        memcpy(p, buf, n);
        heap_push(s, (struct ev){ .t = s->now + latency(i, dst), .node = dst, .src = i, .len = (uint16_t)n, .data = p });
    }
    schedule(s, i);
}

static void run_until(struct sim *s, uint64_t end)
{
    while (s->heap_n && s->heap[0].t <= end) {
        struct ev e = heap_pop(s);
        s->now = e.t;
        struct simnode *nd = &s->n[e.node];
        if (e.src >= 0) {
            if (nd->alive) {
                sw_dht_input(nd->d, e.data, e.len, &s->n[e.src].addr, s->now);
                drain(s, e.node);
            }
            free(e.data);
        } else if (nd->alive && e.t == nd->sched) {
            nd->sched = UINT64_MAX;
            sw_dht_periodic(nd->d, s->now);
            drain(s, e.node);
        }
    }
    s->now = end;
}

/* ------------------------------------------------------------------ nodes and lookups */

static void on_event(void *ud, const struct sw_dht_event *ev)
{
    struct sim *s = ((void **)ud)[0];
    int node = (int)(intptr_t)((void **)ud)[1];
    if (ev->type != SW_DHT_EV_DONE) return;
    for (int i = s->n_m - 1; i >= 0 && i >= s->n_m - 4000; i--) {
        struct measure *m = &s->m[i];
        if (m->node != node || m->lookup != ev->lookup_id || m->done) continue;
        m->done = 1;
        m->queries = ev->n_queries;
        m->success = ev->found_ms > 0;
        m->hops = ev->found_hops;
        m->found_ms = ev->found_ms;
        m->done_ms = ev->elapsed_ms;
        break;
    }
}

static void **uds;

static int add_node(struct sim *s)
{
    if (s->n_nodes == s->cap_nodes) return -1;
    int i = s->n_nodes++;
    struct simnode *nd = &s->n[i];
    memset(nd, 0, sizeof *nd);
    nd->addr.family = 4;
    nd->addr.ip[0] = 10;
    nd->addr.ip[1] = (uint8_t)((i + 1) >> 16);
    nd->addr.ip[2] = (uint8_t)((i + 1) >> 8);
    nd->addr.ip[3] = (uint8_t)(i + 1);
    nd->addr.port = 6881;
    nd->alive = 1;
    nd->sched = UINT64_MAX;
    uds[2 * i] = s;
    uds[2 * i + 1] = (void *)(intptr_t)i;
    struct sw_dht_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.rng_seed = rnd(s) | 1;
    cfg.on_event = on_event;
    cfg.ud = &uds[2 * i];
    nd->d = sw_dht_new(&cfg, s->now);
    if (!nd->d) { fprintf(stderr, "out of memory at node %d\n", i); exit(1); }
    return i;
}

static int random_alive(struct sim *s, int below)
{
    for (;;) {
        int i = (int)(rnd(s) % (uint64_t)below);
        if (s->n[i].alive) return i;
    }
}

static void join(struct sim *s, int i, int below)
{
    if (below > 0) {
        int c = random_alive(s, below);
        sw_dht_add_contact(s->n[i].d, &s->n[c].addr, s->now);
    }
    drain(s, i);
}

static struct measure *new_measure(struct sim *s)
{
    if (s->n_m == s->cap_m) {
        s->cap_m = s->cap_m ? s->cap_m * 2 : 1024;
        s->m = realloc(s->m, (size_t)s->cap_m * sizeof *s->m);
        if (!s->m) exit(1);
    }
    struct measure *m = &s->m[s->n_m++];
    memset(m, 0, sizeof *m);
    return m;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct row {
    const char *name;
    int n, ok;
    double success;
    uint64_t hops_med, hops_p99, ms_med, ms_p99, done_med;
    double queries;
};

static struct row summarize(struct sim *s, int from, int to, int kind, const char *name)
{
    struct row r;
    memset(&r, 0, sizeof r);
    r.name = name;
    int cnt = 0;
    uint64_t *hops = calloc((size_t)(to - from) + 1, sizeof *hops);
    uint64_t *ms = calloc((size_t)(to - from) + 1, sizeof *ms);
    uint64_t *done = calloc((size_t)(to - from) + 1, sizeof *done);
    double q = 0;
    for (int i = from; i < to; i++) {
        struct measure *m = &s->m[i];
        if (m->kind != kind) continue;
        done[cnt] = m->done_ms;
        cnt++;
        q += m->queries;
        if (m->success) {
            hops[r.ok] = m->hops;
            ms[r.ok] = m->found_ms;
            r.ok++;
        }
    }
    r.n = cnt;
    r.success = cnt ? 100.0 * r.ok / cnt : 0;
    r.queries = cnt ? q / cnt : 0;
    if (r.ok) {
        qsort(hops, (size_t)r.ok, sizeof *hops, cmp_u64);
        qsort(ms, (size_t)r.ok, sizeof *ms, cmp_u64);
        r.hops_med = hops[r.ok / 2];
        r.hops_p99 = hops[(size_t)((r.ok - 1) * 0.99)];
        r.ms_med = ms[r.ok / 2];
        r.ms_p99 = ms[(size_t)((r.ok - 1) * 0.99)];
    }
    if (cnt) {
        qsort(done, (size_t)cnt, sizeof *done, cmp_u64);
        r.done_med = done[cnt / 2];
    }
    free(hops);
    free(ms);
    free(done);
    return r;
}

/* Runs `count` lookups of each kind, started 20 ms apart, and waits for them to finish. */
struct items {
    int n;
    uint8_t (*pk)[32];
    int *putter;
};

static void measure_round(struct sim *s, int count, uint8_t (*hashes)[20], int *announcer, int n_hashes,
                          const struct items *it)
{
    uint64_t t = s->now;
    for (int j = 0; j < 3 * count; j++) {
        t += 20;
        run_until(s, t);
        struct measure *m = new_measure(s);
        m->kind = j % 3;
        if (m->kind == 2) {
            int k = (int)(rnd(s) % (uint64_t)it->n), src;
            do src = random_alive(s, s->n_nodes);
            while (src == it->putter[k]);
            m->node = src;
            sw_dht_get_item(s->n[src].d, NULL, it->pk[k], NULL, 0, s->now, &m->lookup);
            drain(s, m->node);
            continue;
        }
        if (m->kind == 0) {
            int target = random_alive(s, s->n_nodes);
            int src;
            do src = random_alive(s, s->n_nodes);
            while (src == target);
            uint8_t id[20];
            sw_dht_get_id(s->n[target].d, id);
            m->node = src;
            sw_dht_find_node(s->n[src].d, id, s->now, &m->lookup);
        } else {
            int h = (int)(rnd(s) % (uint64_t)n_hashes), src;
            do src = random_alive(s, s->n_nodes);
            while (src == announcer[h]);
            m->node = src;
            sw_dht_get_peers(s->n[src].d, hashes[h], s->now, &m->lookup);
        }
        drain(s, m->node);
    }
    run_until(s, s->now + 70000);
}

int main(int argc, char **argv)
{
    int nodes = 10000, lookups = 500, json = 0;
    double loss = 0.01, churn = 0.20;
    uint64_t seed = 42;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--nodes") && i + 1 < argc) nodes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--lookups") && i + 1 < argc) lookups = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--loss") && i + 1 < argc) loss = atof(argv[++i]) / 100.0;
        else if (!strcmp(argv[i], "--churn") && i + 1 < argc) churn = atof(argv[++i]) / 100.0;
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "usage: %s [--nodes N] [--lookups L] [--loss PCT] [--churn PCT] [--seed S] [--json]\n", argv[0]);
            return 2;
        }
    }
    if (nodes < 20 || nodes > 1000000 || lookups < 1 || loss < 0 || loss > 0.5 || churn < 0 || churn > 0.9) {
        fprintf(stderr, "dht_sim: --nodes 20..1000000, --lookups >= 1, --loss 0..50, --churn 0..90\n");
        return 2;
    }
    sw_log_set(NULL, NULL, SW_LOG_ERROR);
    struct sim s;
    memset(&s, 0, sizeof s);
    s.rng = seed * 0x9E3779B97F4A7C15ull + 1;
    s.loss = loss;
    s.now = 1000000;
    int n_new = (int)(nodes * churn);
    s.cap_nodes = nodes + n_new;
    s.n = calloc((size_t)s.cap_nodes, sizeof *s.n);
    uds = calloc((size_t)s.cap_nodes * 2, sizeof *uds);
    uint64_t wall0 = sw_time_ms();

    /* Join: one node every 20 ms, each through a random node already in. */
    for (int i = 0; i < nodes; i++) {
        run_until(&s, s.now + 20);
        int k = add_node(&s);
        join(&s, k, k);
    }
    run_until(&s, s.now + 120000);
    uint64_t t_joined = s.now;

    /* 200 info-hashes, each announced by one node. */
    int n_hashes = 200;
    uint8_t (*hashes)[20] = calloc((size_t)n_hashes, 20);
    int *announcer = calloc((size_t)n_hashes, sizeof *announcer);
    for (int h = 0; h < n_hashes; h++) {
        for (int b = 0; b < 20; b++) hashes[h][b] = (uint8_t)rnd(&s);
        announcer[h] = random_alive(&s, s.n_nodes);
        sw_dht_announce(s.n[announcer[h]].d, hashes[h], 6881, 1, s.now, NULL);
        drain(&s, announcer[h]);
        run_until(&s, s.now + 50);
    }
    /* 100 signed mutable items (BEP 44), each put by one node. */
    struct items items;
    items.n = 100;
    items.pk = calloc((size_t)items.n, 32);
    items.putter = calloc((size_t)items.n, sizeof *items.putter);
    for (int k = 0; k < items.n; k++) {
        struct sw_dht_key key;
        uint8_t seed32[32];
        for (int b = 0; b < 32; b++) seed32[b] = (uint8_t)rnd(&s);
        sw_dht_key_from_seed(&key, seed32);
        memcpy(items.pk[k], key.pk, 32);
        items.putter[k] = random_alive(&s, s.n_nodes);
        char v[32];
        int vl = snprintf(v, sizeof v, "7:item%03d", k);
        sw_dht_put_mutable(s.n[items.putter[k]].d, &key, NULL, 0, (const uint8_t *)v, (size_t)vl, 1, -1, 1, s.now, NULL);
        drain(&s, items.putter[k]);
        run_until(&s, s.now + 50);
    }
    run_until(&s, s.now + 30000);

    if (getenv("SIM_DEBUG")) {
        double tot = 0, good = 0, nb = 0;
        int alive = 0;
        for (int i = 0; i < s.n_nodes; i++) {
            if (!s.n[i].alive) continue;
            struct sw_dht_stats st;
            sw_dht_get_stats(s.n[i].d, &st);
            tot += st.nodes; good += st.good_nodes; nb += st.buckets; alive++;
        }
        fprintf(stderr, "tables: %.1f nodes (%.1f good) in %.1f buckets per node\n", tot / alive, good / alive, nb / alive);
    }
    int m0 = s.n_m;
    measure_round(&s, lookups, hashes, announcer, n_hashes, &items);
    int m1 = s.n_m;

    /* Churn: a share of the nodes leaves at once (announcers included), as many join. */
    int killed = 0;
    while (killed < n_new) {
        int i = random_alive(&s, s.n_nodes);
        s.n[i].alive = 0;
        killed++;
    }
    for (int j = 0; j < n_new; j++) {
        run_until(&s, s.now + 5);
        int k = add_node(&s);
        join(&s, k, k);
    }
    run_until(&s, s.now + 30000);
    int m2 = s.n_m;
    measure_round(&s, lookups, hashes, announcer, n_hashes, &items);
    int m3 = s.n_m;

    enum { N_ROWS = 6 };
    struct row rows[N_ROWS] = {
        summarize(&s, m0, m1, 0, "find_node"),
        summarize(&s, m0, m1, 1, "get_peers"),
        summarize(&s, m0, m1, 2, "get (BEP 44)"),
        summarize(&s, m2, m3, 0, "find_node+churn"),
        summarize(&s, m2, m3, 1, "get_peers+churn"),
        summarize(&s, m2, m3, 2, "get+churn"),
    };
    uint64_t wall = sw_time_ms() - wall0;
    char rss[32];
    sw_fmt_bytes(sw_sys_peak_rss(), rss, sizeof rss);
    if (json) {
        printf("{\"nodes\":%d,\"loss_pct\":%.1f,\"churn_pct\":%.0f,\"rows\":[", nodes, loss * 100, churn * 100);
        for (int i = 0; i < N_ROWS; i++)
            printf("%s{\"lookup\":\"%s\",\"n\":%d,\"success_pct\":%.2f,\"hops_median\":%llu,\"hops_p99\":%llu,"
                   "\"ms_median\":%llu,\"ms_p99\":%llu,\"done_ms_median\":%llu,\"queries_per_lookup\":%.1f}",
                   i ? "," : "", rows[i].name, rows[i].n, rows[i].success, (unsigned long long)rows[i].hops_med,
                   (unsigned long long)rows[i].hops_p99, (unsigned long long)rows[i].ms_med,
                   (unsigned long long)rows[i].ms_p99, (unsigned long long)rows[i].done_med, rows[i].queries);
        printf("],\"packets\":%llu,\"wall_ms\":%llu,\"peak_rss\":\"%s\"}\n", (unsigned long long)s.packets,
               (unsigned long long)wall, rss);
    } else {
        printf("dht_sim: %d nodes (+%d joined, %d left under churn), %.0f%% loss, %d lookups of each kind per phase\n",
               nodes, n_new, killed, loss * 100, lookups);
        printf("%-16s %6s %9s %9s %9s %10s %10s %10s %12s\n", "lookup", "n", "success", "hops_med", "hops_p99",
               "time_med", "time_p99", "done_med", "queries/lkp");
        for (int i = 0; i < N_ROWS; i++)
            printf("%-16s %6d %8.2f%% %9llu %9llu %8llums %8llums %8llums %12.1f\n", rows[i].name, rows[i].n,
                   rows[i].success, (unsigned long long)rows[i].hops_med, (unsigned long long)rows[i].hops_p99,
                   (unsigned long long)rows[i].ms_med, (unsigned long long)rows[i].ms_p99,
                   (unsigned long long)rows[i].done_med, rows[i].queries);
        printf("(time: start to first result; done: start to the end of the lookup)\n");
        printf("simulated %.0f s (network formed after %.0f s), %llu datagrams (%llu lost), wall %.1f s, peak RSS %s\n",
               (double)(s.now - 1000000) / 1000.0, (double)(t_joined - 1000000) / 1000.0,
               (unsigned long long)s.packets, (unsigned long long)s.dropped, (double)wall / 1000.0, rss);
    }
    int pass = 1;
    for (int i = 0; i < N_ROWS; i++)
        pass = pass && rows[i].success >= (i < 3 ? 99.0 : 95.0) && rows[i].hops_med <= 4 && rows[i].hops_p99 <= 7;
    if (!json) printf("targets (every row: success >=99%% / >=95%% under churn, median hops <= 4, p99 <= 7): %s\n", pass ? "met" : "NOT met");
    for (int i = 0; i < s.n_nodes; i++) sw_dht_free(s.n[i].d);
    while (s.heap_n) {
        struct ev e = heap_pop(&s);
        free(e.data);
    }
    free(s.heap);
    free(s.n);
    free(s.m);
    free(uds);
    free(hashes);
    free(items.pk);
    free(items.putter);
    free(announcer);
    return pass ? 0 : 1;
}
