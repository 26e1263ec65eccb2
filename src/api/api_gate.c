/* api_gate.c — what stands between the network and libmicrohttpd (docs/security.md):
 * connections are accepted on our own socket and handed to MHD (one thread each) only once
 * their request headers have all arrived, within a deadline and under caps per address and
 * in all, so that slow or held connections cost an fd here, never one of MHD's threads; and
 * the checks that keep web pages from driving the API (Host, Origin, Content-Type).
 * Not for: routing and responses (api.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "api_gate.h"

#define GATE_PEEK (16u << 10)   /* request line + headers: more is refused (431) */
#define GATE_ACCEPT_BURST 64    /* accepts per poll round */

struct pending {
    int fd;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    uint64_t since_ms;
};

struct active {
    struct MHD_Connection *c;
    struct sockaddr_storage addr;
};

struct sw__gate {
    int lfd;
    int wake[2];
    pthread_t th;
    int running;
    struct MHD_Daemon *d;
    struct pending pend[SW_API_GATE_MAX_PENDING];
    uint32_t n_pend;
    pthread_mutex_t mu;     /* guards act (MHD's threads add and remove) */
    struct active act[SW_API_MAX_CONNS];
    uint32_t n_act;
    char buf[GATE_PEEK];
    struct pollfd fds[SW_API_GATE_MAX_PENDING + 2];
    uint64_t accept_paused_until; /* out of fds: the listening socket rests (no busy loop) */
};

static int same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) return 0;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->ss_family == AF_INET6)
        return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr, 16);
    return 0;
}

/* A short answer written straight to the socket, then closed (the socket is non-blocking:
 * these few bytes fit its send buffer, and a client that reads nothing loses them). */
static void answer_close(int fd, int status, const char *reason, const char *msg, uint32_t retry_after_s)
{
    char ra[48] = "", out[640];
    if (retry_after_s) snprintf(ra, sizeof ra, "Retry-After: %u\r\n", retry_after_s);
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n{\"error\":\"%s\"}",
                     status, reason, strlen(msg) + 12, ra, msg);
    if (n > 0 && (size_t)n < sizeof out) {
        ssize_t w = send(fd, out, (size_t)n, MSG_NOSIGNAL);
        (void)w;
    }
    close(fd);
}

static void drop_pending(struct sw__gate *g, uint32_t i)
{
    g->pend[i] = g->pend[--g->n_pend];
}

static void count_active(struct sw__gate *g, const struct sockaddr_storage *addr, uint32_t *all, uint32_t *here)
{
    pthread_mutex_lock(&g->mu);
    *all = g->n_act;
    *here = 0;
    for (uint32_t i = 0; i < g->n_act; i++) *here += same_ip(&g->act[i].addr, addr);
    pthread_mutex_unlock(&g->mu);
}

/* Headers complete: to MHD, or 429 when every thread (or this address's share) is taken. */
static void hand_over(struct sw__gate *g, struct pending *p)
{
    uint32_t all, here;
    count_active(g, &p->addr, &all, &here);
    if (all >= SW_API_MAX_CONNS - 1 || here >= SW_API_PER_ADDR) {
        answer_close(p->fd, 429, "Too Many Requests",
                     here >= SW_API_PER_ADDR ? "too many connections from your address; retry later"
                                             : "the API is busy (every connection slot is taken); retry later",
                     1);
        return;
    }
    /* MHD takes the socket (and closes it on failure). */
    if (MHD_add_connection(g->d, p->fd, (const struct sockaddr *)&p->addr, p->addr_len) != MHD_YES)
        sw_log(SW_LOG_DEBUG, "API", "a connection was refused by libmicrohttpd: %s", strerror(errno));
}

/* Looks at what a waiting connection sent so far without taking it: 1 when it was handed
 * over or closed, 0 when it still waits. */
static int look(struct sw__gate *g, struct pending *p)
{
    ssize_t n = recv(p->fd, g->buf, sizeof g->buf, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    if (n <= 0) {
        close(p->fd);
        return 1;
    }
    /* RFC 9112: the header section ends with an empty line (CRLF CRLF; a bare LF is
     * tolerated by MHD too) */
    if (memmem(g->buf, (size_t)n, "\r\n\r\n", 4) || memmem(g->buf, (size_t)n, "\n\n", 2)) {
        hand_over(g, p);
        return 1;
    }
    if ((size_t)n == sizeof g->buf) {
        answer_close(p->fd, 431, "Request Header Fields Too Large", "request headers over 16 KiB", 0);
        return 1;
    }
    return 0;
}

static void accept_some(struct sw__gate *g, uint64_t now)
{
    for (int k = 0; k < GATE_ACCEPT_BURST; k++) {
        struct pending p = { .addr_len = sizeof p.addr, .since_ms = now };
        p.fd = accept4(g->lfd, (struct sockaddr *)&p.addr, &p.addr_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (p.fd < 0) { /* EAGAIN; or out of fds: the backlog keeps the rest a while */
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                g->accept_paused_until = now + 100;
                sw_log(SW_LOG_WARN, "API", "cannot accept a connection: %s (retrying in 100 ms)", strerror(errno));
            }
            return;
        }
        uint32_t here = 0, oldest = 0;
        for (uint32_t i = 0; i < g->n_pend; i++) {
            here += same_ip(&g->pend[i].addr, &p.addr);
            if (g->pend[i].since_ms < g->pend[oldest].since_ms) oldest = i;
        }
        if (here >= SW_API_GATE_PER_ADDR) {
            answer_close(p.fd, 429, "Too Many Requests", "too many unfinished requests from your address", 5);
            continue;
        }
        if (g->n_pend == SW_API_GATE_MAX_PENDING) { /* the slowest waiter makes room */
            answer_close(g->pend[oldest].fd, 408, "Request Timeout", "request headers too slow (server full)", 0);
            drop_pending(g, oldest);
        }
        g->pend[g->n_pend] = p;
        if (!look(g, &g->pend[g->n_pend])) g->n_pend++; /* often the request is there already */
    }
}

static void *gate_main(void *arg)
{
    struct sw__gate *g = arg;
    struct pollfd *fds = g->fds;
    for (;;) {
        uint64_t now = sw_time_ms();
        int timeout = 1000;
        for (uint32_t i = 0; i < g->n_pend;) {
            uint64_t due = g->pend[i].since_ms + SW_API_HEADER_DEADLINE_MS;
            if (now >= due) {
                answer_close(g->pend[i].fd, 408, "Request Timeout", "request headers not complete within 5 s", 0);
                drop_pending(g, i);
                continue;
            }
            timeout = (int)SW_MIN((uint64_t)timeout, due - now);
            i++;
        }
        fds[0] = (struct pollfd){ .fd = g->wake[0], .events = POLLIN };
        int resting = now < g->accept_paused_until;
        if (resting) timeout = (int)SW_MIN((uint64_t)timeout, g->accept_paused_until - now);
        fds[1] = (struct pollfd){ .fd = resting ? -1 : g->lfd, .events = POLLIN }; /* -1: ignored */
        uint32_t n = g->n_pend;
        for (uint32_t i = 0; i < n; i++) fds[2 + i] = (struct pollfd){ .fd = g->pend[i].fd, .events = POLLIN };
        int rc = poll(fds, 2 + n, timeout);
        if (rc < 0 && errno != EINTR) break;
        if (rc <= 0) continue;
        if (fds[0].revents) break;
        now = sw_time_ms();
        /* waiting connections first (from the last: dropping swaps the last one in) */
        for (uint32_t i = n; i-- > 0;)
            if (fds[2 + i].revents && look(g, &g->pend[i])) drop_pending(g, i);
        if (fds[1].revents & POLLIN) accept_some(g, now);
    }
    return NULL;
}

int sw__gate_listen(struct sw__gate **out, const char *host, uint16_t port, uint16_t *port_out, char *err, size_t err_len)
{
    *out = NULL;
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
        if (err_len) snprintf(err, err_len, "API host '%s' is not an IPv4 address", host);
        return SW_EINVAL;
    }
    struct sw__gate *g = calloc(1, sizeof *g);
    if (!g) return SW_ENOMEM;
    g->wake[0] = g->wake[1] = -1;
    g->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (g->lfd >= 0) setsockopt(g->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (g->lfd < 0 || bind(g->lfd, (struct sockaddr *)&sin, sizeof sin) || listen(g->lfd, 511) ||
        pipe2(g->wake, O_CLOEXEC)) {
        if (err_len) snprintf(err, err_len, "cannot serve HTTP on %s:%u: %s", host, port, strerror(errno));
        sw__gate_free(g);
        return SW_EIO;
    }
    struct sockaddr_in bound;
    socklen_t bl = sizeof bound;
    getsockname(g->lfd, (struct sockaddr *)&bound, &bl);
    *port_out = ntohs(bound.sin_port);
    pthread_mutex_init(&g->mu, NULL);
    *out = g;
    return 0;
}

int sw__gate_start(struct sw__gate *g, struct MHD_Daemon *d)
{
    g->d = d;
    if (pthread_create(&g->th, NULL, gate_main, g)) return SW_EIO;
    g->running = 1;
    return 0;
}

void sw__gate_stop(struct sw__gate *g)
{
    if (!g || !g->running) return;
    ssize_t w = write(g->wake[1], "x", 1);
    (void)w;
    pthread_join(g->th, NULL);
    g->running = 0;
    for (uint32_t i = 0; i < g->n_pend; i++) close(g->pend[i].fd);
    g->n_pend = 0;
}

void sw__gate_free(struct sw__gate *g)
{
    if (!g) return;
    sw__gate_stop(g);
    if (g->lfd >= 0) close(g->lfd);
    if (g->wake[0] >= 0) close(g->wake[0]);
    if (g->wake[1] >= 0) close(g->wake[1]);
    if (g->lfd >= 0) pthread_mutex_destroy(&g->mu);
    free(g);
}

/* MHD_NotifyConnectionCallback: the connections MHD holds, by address. */
void sw__gate_on_conn(void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode toe)
{
    struct sw__gate *g = cls;
    (void)socket_context;
    pthread_mutex_lock(&g->mu);
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (g->n_act < SW_API_MAX_CONNS) {
            struct active *a = &g->act[g->n_act++];
            memset(a, 0, sizeof *a);
            a->c = c;
            if (ci && ci->client_addr)
                memcpy(&a->addr, ci->client_addr, ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                                                         : sizeof(struct sockaddr_in));
        }
    } else {
        for (uint32_t i = 0; i < g->n_act; i++)
            if (g->act[i].c == c) { g->act[i] = g->act[--g->n_act]; break; }
    }
    pthread_mutex_unlock(&g->mu);
}

/* ---------------------------------------------------------------- request checks */

/* The host part of a Host header or of an origin's authority, without port or brackets. */
static void host_only(const char *s, char *out, size_t out_len)
{
    size_t n = 0;
    if (*s == '[') {
        s++;
        while (s[n] && s[n] != ']') n++;
    } else {
        while (s[n] && s[n] != ':' && s[n] != '/') n++;
    }
    n = SW_MIN(n, out_len - 1);
    memcpy(out, s, n);
    out[n] = 0;
}

static int is_ip_literal(const char *h)
{
    struct in_addr a4;
    struct in6_addr a6;
    return inet_pton(AF_INET, h, &a4) == 1 || inet_pton(AF_INET6, h, &a6) == 1;
}

/* Names that cannot be made to point elsewhere by someone else's DNS: IP literals,
 * "localhost" and names under .localhost (RFC 6761 §6.3), and the configured ones. */
static int host_allowed(const struct sw__guard *gd, const char *host)
{
    size_t n = strlen(host);
    if (n && host[n - 1] == '.') n--; /* "localhost." */
    if (is_ip_literal(host)) return 1;
    if (n == 9 && !strncasecmp(host, "localhost", 9)) return 1;
    if (n > 10 && !strncasecmp(host + n - 10, ".localhost", 10)) return 1;
    for (size_t i = 0; i < gd->n_hosts; i++)
        if (strlen(gd->hosts[i]) == n && !strncasecmp(gd->hosts[i], host, n)) return 1;
    return 0;
}

static int write_method(const char *m)
{
    return strcmp(m, "GET") && strcmp(m, "HEAD") && strcmp(m, "OPTIONS");
}

int sw__guard_check(const struct sw__guard *gd, struct MHD_Connection *c, const char *method, char *msg, size_t msg_len)
{
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    char h[256];
    if (host) { /* HTTP/1.1 without Host is refused by MHD; HTTP/1.0 may omit it */
        host_only(host, h, sizeof h);
        if (!host_allowed(gd, h)) {
            snprintf(msg, msg_len, "Host '%.100s' is not a name of this machine (a DNS rebinding attempt?); "
                                   "allow it with --api-allow-host %.100s", h, h);
            return 403;
        }
    }
    if (!write_method(method)) return 0;
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (origin) {
        int ok = 0;
        for (size_t i = 0; i < gd->n_origins && !ok; i++) ok = !strcasecmp(gd->origins[i], origin);
        /* same origin: http://<the Host header> (the API speaks plain HTTP) */
        if (!ok && host && !strncasecmp(origin, "http://", 7)) ok = !strcasecmp(origin + 7, host);
        if (!ok) {
            snprintf(msg, msg_len, "cross-origin %s from '%.100s' refused; allow it with --api-allow-origin %.100s", method,
                     origin, origin);
            return 403;
        }
    }
    if (!strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH")) {
        /* JSON only: the types a web form or a "simple" cross-site request can send
         * (text/plain, form encodings) never reach a handler */
        const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        size_t n = 0;
        while (ct && ct[n] && ct[n] != ';' && ct[n] != ' ') n++;
        if (!ct || n != 16 || strncasecmp(ct, "application/json", 16)) {
            snprintf(msg, msg_len, "%s bodies must be JSON: send 'Content-Type: application/json' (got %s%.60s%s)", method,
                     ct ? "'" : "", ct ? ct : "none", ct ? "'" : "");
            return 415;
        }
    }
    return 0;
}
