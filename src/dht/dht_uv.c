/* dht_uv.c — runs the DHT state machine on a caller's libuv loop: one UDP socket, one
 * timer, and a prepare handle that flushes queued datagrams before each poll. All the
 * protocol lives in dht.c and its siblings; this file only moves bytes and time, and
 * writes the routing-table file (sw_dht_save: the state machine does no I/O). */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <uv.h>

#include "dht_int.h"
#include "net/noise.h"

#define SAVE_EVERY_MS (5u * 60u * 1000u)
#define MAX_SAVED_NODES 512

struct sw_dht_uv {
    uv_loop_t *loop;
    uv_udp_t udp;
    uv_timer_t timer;
    uv_prepare_t prep;
    struct sw_dht *d;
    char *state_path;
    uint64_t next_save;
    int open_handles;
    int resolving;
    int closing;
    uint8_t family;
    uint16_t port;
    uint8_t rbuf[4096];
    uint8_t sbuf[SW_DHT_MAX_PACKET];
    /* private swarm */
    int sealed;
    uint8_t dkey[32];
    uint64_t dropped;
    uint8_t cbuf[SW_DHT_MAX_PACKET + SW_DGRAM_OVERHEAD];
    uint8_t obuf[4096];
};

struct resolve_req {
    uv_getaddrinfo_t req;
    struct sw_dht_uv *u;
};

static uint64_t now_ms(struct sw_dht_uv *u) { return uv_now(u->loop); }

static void maybe_free(struct sw_dht_uv *u)
{
    if (u->closing && u->open_handles == 0 && u->resolving == 0) {
        sw_dht_free(u->d);
        free(u->state_path);
        sodium_memzero(u->dkey, sizeof u->dkey);
        free(u);
    }
}

static void to_sockaddr(const struct sw_dht_addr *a, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (a->family == 6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, a->ip, 16);
        s6->sin6_port = htons(a->port);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, a->ip, 4);
        s4->sin_port = htons(a->port);
    }
}

static int from_sockaddr(const struct sockaddr *sa, struct sw_dht_addr *a)
{
    memset(a, 0, sizeof *a);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        a->family = 4;
        memcpy(a->ip, &s4->sin_addr, 4);
        a->port = ntohs(s4->sin_port);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        if (!memcmp(&s6->sin6_addr, mapped, 12)) {
            a->family = 4;
            memcpy(a->ip, (const uint8_t *)&s6->sin6_addr + 12, 4);
        } else {
            a->family = 6;
            memcpy(a->ip, &s6->sin6_addr, 16);
        }
        a->port = ntohs(s6->sin6_port);
        return 0;
    }
    return SW_EUNSUPPORTED;
}

static void send_done(uv_udp_send_t *req, int status)
{
    (void)status;
    free(req);
}

static void on_timer(uv_timer_t *t);

/* Sends every queued datagram and re-arms the timer for the next deadline. */
static void flush(struct sw_dht_uv *u)
{
    if (u->closing) return;
    struct sw_dht_addr to;
    size_t n;
    while ((n = sw_dht_pop_packet(u->d, &to, u->sbuf, sizeof u->sbuf)) > 0) {
        struct sockaddr_storage ss;
        to_sockaddr(&to, &ss);
        uint8_t *out = u->sbuf;
        if (u->sealed) { /* private swarm: only members can read it */
            n = sw_dgram_seal(u->dkey, u->sbuf, n, u->cbuf, sizeof u->cbuf);
            out = u->cbuf;
            if (!n) continue;
        }
        uv_buf_t buf = uv_buf_init((char *)out, (unsigned)n);
        int rc = uv_udp_try_send(&u->udp, &buf, 1, (const struct sockaddr *)&ss);
        if (rc == UV_EAGAIN || rc == UV_ENOSYS) {
            /* Socket busy: queue a copy. */
            uv_udp_send_t *req = malloc(sizeof *req + n);
            if (!req) continue;
            memcpy(req + 1, out, n);
            buf = uv_buf_init((char *)(req + 1), (unsigned)n);
            if (uv_udp_send(req, &u->udp, &buf, 1, (const struct sockaddr *)&ss, send_done)) free(req);
        }
        /* other errors (unreachable, etc.) lose the datagram, as UDP would */
    }
    uint64_t now = now_ms(u), next = sw_dht_next_deadline(u->d);
    uv_timer_start(&u->timer, on_timer, next > now ? next - now : 0, 0);
}

static void on_timer(uv_timer_t *t)
{
    struct sw_dht_uv *u = t->data;
    uint64_t now = now_ms(u);
    sw_dht_periodic(u->d, now);
    if (u->state_path && now >= u->next_save) {
        if (sw_dht_save(u->d, u->state_path))
            sw_log(SW_LOG_WARN, "DHT", "cannot save routing table to %s", u->state_path);
        u->next_save = now + SAVE_EVERY_MS;
    }
    flush(u);
}

static void on_prepare(uv_prepare_t *p)
{
    struct sw_dht_uv *u = p->data;
    flush(u);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct sw_dht_uv *u = h->data;
    *buf = uv_buf_init((char *)u->rbuf, sizeof u->rbuf);
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr, unsigned flags)
{
    struct sw_dht_uv *u = h->data;
    if (nread <= 0 || !addr || u->closing) return;
    if (flags & UV_UDP_PARTIAL) return; /* truncated: larger than any KRPC message we accept */
    struct sw_dht_addr from;
    if (from_sockaddr(addr, &from)) return;
    const uint8_t *data = (const uint8_t *)buf->base;
    size_t len = (size_t)nread;
    if (u->sealed) {
        long m = sw_dgram_open(u->dkey, data, len, u->obuf, sizeof u->obuf);
        if (m < 0) { /* not a member of this private swarm (or tampered): dropped unanswered */
            u->dropped++;
            return;
        }
        data = u->obuf;
        len = (size_t)m;
    }
    sw_dht_input(u->d, data, len, &from, now_ms(u));
    flush(u);
}

struct sw_dht_uv *sw_dht_uv_new(uv_loop_t *loop, const struct sw_dht_uv_config *cfg, int *err_out)
{
    int dummy;
    if (!err_out) err_out = &dummy;
    *err_out = 0;
    struct sw_dht_uv *u = calloc(1, sizeof *u);
    if (!u) { *err_out = SW_ENOMEM; return NULL; }
    u->loop = loop;
    u->family = cfg->dht.family == 6 ? 6 : 4;
    if (cfg->swarm_key) {
        u->sealed = 1;
        sw_dgram_key(cfg->swarm_key, u->dkey);
    }
    struct sw_dht_config dc = cfg->dht;
    struct sw_dht_addr saved[MAX_SAVED_NODES];
    size_t n_saved = 0;
    if (cfg->state_path) {
        u->state_path = strdup(cfg->state_path);
        if (!u->state_path) { free(u); *err_out = SW_ENOMEM; return NULL; }
        uint8_t id[SW_DHT_ID_LEN];
        int rc = sw_dht_load(cfg->state_path, id, saved, MAX_SAVED_NODES, &n_saved);
        if (rc == 0) {
            if (!dc.has_id) {
                memcpy(dc.id, id, SW_DHT_ID_LEN);
                dc.has_id = 1;
            }
            sw_log(SW_LOG_INFO, "DHT", "restored %zu nodes from %s", n_saved, cfg->state_path);
        } else if (rc != SW_ENOTFOUND) {
            sw_log(SW_LOG_WARN, "DHT", "ignoring unreadable routing table %s: %s", cfg->state_path,
                   sw_strerror(rc));
        }
    }
    uint64_t now = uv_now(loop);
    u->d = sw_dht_new(&dc, now);
    if (!u->d) { free(u->state_path); free(u); *err_out = SW_ENOMEM; return NULL; }

    struct sockaddr_storage ss;
    const char *host = cfg->bind_host ? cfg->bind_host : (u->family == 6 ? "::" : "0.0.0.0");
    int rc = u->family == 6 ? uv_ip6_addr(host, cfg->port, (struct sockaddr_in6 *)&ss)
                            : uv_ip4_addr(host, cfg->port, (struct sockaddr_in *)&ss);
    if (rc) {
        sw_dht_free(u->d); free(u->state_path); free(u);
        *err_out = SW_EINVAL;
        return NULL;
    }
    uv_udp_init(loop, &u->udp);
    uv_timer_init(loop, &u->timer);
    uv_prepare_init(loop, &u->prep);
    u->udp.data = u->timer.data = u->prep.data = u;
    u->open_handles = 3;
    rc = uv_udp_bind(&u->udp, (const struct sockaddr *)&ss, u->family == 6 ? UV_UDP_IPV6ONLY : 0);
    if (rc == 0) rc = uv_udp_recv_start(&u->udp, on_alloc, on_recv);
    if (rc) {
        sw_log(SW_LOG_ERROR, "DHT", "cannot bind UDP %s:%u: %s", host, cfg->port, uv_strerror(rc));
        u->state_path = (free(u->state_path), NULL);
        sw_dht_uv_close(u);
        *err_out = SW_EIO;
        return NULL;
    }
    struct sockaddr_storage bound;
    int len = sizeof bound;
    struct sw_dht_addr ba;
    if (uv_udp_getsockname(&u->udp, (struct sockaddr *)&bound, &len) == 0 &&
        from_sockaddr((struct sockaddr *)&bound, &ba) == 0)
        u->port = ba.port;
    uv_prepare_start(&u->prep, on_prepare);
    u->next_save = now + SAVE_EVERY_MS;
    for (size_t i = 0; i < n_saved; i++) sw_dht_add_contact(u->d, &saved[i], now);
    flush(u);
    return u;
}

struct sw_dht *sw_dht_uv_dht(struct sw_dht_uv *u) { return u->d; }
uint16_t sw_dht_uv_port(const struct sw_dht_uv *u) { return u->port; }
uint64_t sw_dht_uv_dropped(const struct sw_dht_uv *u) { return u->dropped; }
uint64_t sw_dht_uv_now(const struct sw_dht_uv *u) { return uv_now(u->loop); }

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct resolve_req *r = (struct resolve_req *)req;
    struct sw_dht_uv *u = r->u;
    u->resolving--;
    if (status == 0 && !u->closing) {
        int added = 0;
        for (struct addrinfo *ai = res; ai && !added; ai = ai->ai_next) {
            struct sw_dht_addr a;
            if (from_sockaddr(ai->ai_addr, &a) || a.family != u->family) continue;
            added = sw_dht_add_contact(u->d, &a, now_ms(u)) == 0;
        }
        flush(u);
    } else if (status != 0 && status != UV_ECANCELED) {
        sw_log(SW_LOG_WARN, "DHT", "cannot resolve a bootstrap node: %s", uv_strerror(status));
    }
    uv_freeaddrinfo(res);
    free(r);
    maybe_free(u);
}

int sw_dht_uv_bootstrap(struct sw_dht_uv *u, const char *const *hostports, size_t n)
{
    int queued = 0;
    for (size_t i = 0; i < n; i++) {
        struct sw_dht_addr a;
        if (sw_dht_addr_parse(hostports[i], &a) == 0) {
            if (sw_dht_add_contact(u->d, &a, now_ms(u)) == 0) queued++;
            continue;
        }
        const char *s = hostports[i];
        const char *colon = strrchr(s, ':');
        if (!colon || colon == s || !colon[1] || (size_t)(colon - s) >= 256) {
            sw_log(SW_LOG_WARN, "DHT", "bootstrap node '%s' is not HOST:PORT", s);
            continue;
        }
        char host[256];
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
        struct resolve_req *r = calloc(1, sizeof *r);
        if (!r) break;
        r->u = u;
        struct addrinfo hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = u->family == 6 ? AF_INET6 : AF_INET;
        hints.ai_socktype = SOCK_DGRAM;
        if (uv_getaddrinfo(u->loop, &r->req, on_resolved, host, colon + 1, &hints)) {
            free(r);
            continue;
        }
        u->resolving++;
        queued++;
    }
    flush(u);
    return queued;
}

static void on_closed(uv_handle_t *h)
{
    struct sw_dht_uv *u = h->data;
    u->open_handles--;
    maybe_free(u);
}

void sw_dht_uv_close(struct sw_dht_uv *u)
{
    if (!u || u->closing) return;
    if (u->state_path && sw_dht_save(u->d, u->state_path))
        sw_log(SW_LOG_WARN, "DHT", "cannot save routing table to %s", u->state_path);
    u->closing = 1;
    uv_close((uv_handle_t *)&u->udp, on_closed);
    uv_close((uv_handle_t *)&u->timer, on_closed);
    uv_close((uv_handle_t *)&u->prep, on_closed);
}

/* ------------------------------------------------------------------ routing-table file */

int sw_dht_save(const struct sw_dht *d, const char *path)
{
    struct sw_buf b;
    char hex[41], as[64];
    sw_buf_init(&b);
    sw_hex_encode(d->id, SW_DHT_ID_LEN, hex);
    sw_buf_printf(&b, "sw-dht 1\nid %s\n", hex);
    for (int bi = 0; bi < d->nb; bi++)
        for (int i = 0; i < d->b[bi].count; i++) {
            const struct rnode *n = &d->b[bi].n[i];
            if (sw__dht_node_bad(n) || !n->last_reply) continue;
            sw_hex_encode(n->id, SW_DHT_ID_LEN, hex);
            sw_buf_printf(&b, "%s %s\n", sw_dht_addr_str(&n->addr, as, sizeof as), hex);
        }
    int rc = sw_buf_ok(&b) ? sw_file_write_atomic(path, b.data, b.len) : SW_ENOMEM;
    sw_buf_free(&b);
    return rc;
}
