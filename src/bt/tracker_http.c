/* tracker_http.c — struct sw_bt_net: libcurl's multi interface driven by the libuv loop
 * (CURLMOPT_SOCKETFUNCTION -> uv_poll, CURLMOPT_TIMERFUNCTION -> uv_timer), shared by the
 * HTTP tracker client and the web seeds. Not for: HTTP semantics (tracker.c, webseed.c). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "bt/bt_net.h"

/* One transfer we own. */
struct net_xfer {
    CURL *easy;
    sw_bt_net_done_fn done;
    void *ud;
    struct net_xfer *prev, *next;
};

/* One socket libcurl asked us to watch. */
struct net_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct sw_bt_net *net;
    struct net_sock *prev, *next; /* so that free can close what libcurl leaves open */
};

struct sw_bt_net {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    char *user_agent;
    struct net_xfer *xfers;   /* doubly linked list of transfers in flight */
    struct net_sock *socks;   /* doubly linked list of watched sockets */
    unsigned pending_closes;  /* libuv handles whose close callback has not run yet */
    int closing;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_init_rc;

static void curl_global_once(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1; }

static void sock_closed(uv_handle_t *h);

static void net_maybe_release(struct sw_bt_net *net)
{
    if (net->closing && net->pending_closes == 0) {
        free(net->user_agent);
        free(net);
    }
}

static void sock_unlink_close(struct sw_bt_net *net, struct net_sock *s)
{
    if (s->prev) s->prev->next = s->next;
    else net->socks = s->next;
    if (s->next) s->next->prev = s->prev;
    uv_poll_stop(&s->poll);
    net->pending_closes++;
    uv_close((uv_handle_t *)&s->poll, sock_closed);
}

static void sock_closed(uv_handle_t *h)
{
    struct net_sock *s = h->data;
    struct sw_bt_net *net = s->net;
    free(s);
    net->pending_closes--;
    net_maybe_release(net);
}

static void timer_closed(uv_handle_t *h)
{
    struct sw_bt_net *net = h->data;
    net->pending_closes--;
    net_maybe_release(net);
}

/* Takes every finished transfer off the multi handle and runs its callback. */
static void net_reap(struct sw_bt_net *net)
{
    CURLMsg *m;
    int left;
    while (!net->closing && (m = curl_multi_info_read(net->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) continue;
        CURL *e = m->easy_handle;
        CURLcode rc = m->data.result;
        struct net_xfer *x = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(net->multi, e);
        if (x) {
            if (x->prev) x->prev->next = x->next;
            else net->xfers = x->next;
            if (x->next) x->next->prev = x->prev;
            /* The callback may start or cancel other transfers: we are outside libcurl. */
            if (x->done) x->done(x->ud, e, rc);
            free(x);
        }
        curl_easy_cleanup(e);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct net_sock *s = h->data;
    struct sw_bt_net *net = s->net;
    int flags = 0;
    if (status < 0) flags = CURL_CSELECT_ERR;
    if (!status && (events & UV_READABLE)) flags |= CURL_CSELECT_IN;
    if (!status && (events & UV_WRITABLE)) flags |= CURL_CSELECT_OUT;
    int running = 0;
    curl_multi_socket_action(net->multi, s->fd, flags, &running);
    net_reap(net);
}

static void on_timer(uv_timer_t *h)
{
    struct sw_bt_net *net = h->data;
    int running = 0;
    curl_multi_socket_action(net->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    net_reap(net);
}

/* CURLMOPT_TIMERFUNCTION: never call libcurl from here; just arm the libuv timer. */
static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct sw_bt_net *net = userp;
    if (timeout_ms < 0) uv_timer_stop(&net->timer);
    else uv_timer_start(&net->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* CURLMOPT_SOCKETFUNCTION: (re)arms or drops the uv_poll watching `fd`. */
static int curl_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct sw_bt_net *net = userp;
    struct net_sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            sock_unlink_close(net, s);
            if (net->multi) curl_multi_assign(net->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return -1;
        s->fd = fd;
        s->net = net;
        if (uv_poll_init_socket(net->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        s->next = net->socks;
        if (net->socks) net->socks->prev = s;
        net->socks = s;
        curl_multi_assign(net->multi, fd, s);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

struct sw_bt_net *sw__bt_net_new(uv_loop_t *loop, const struct sw_bt_net_config *cfg)
{
    if (!loop) return NULL;
    pthread_once(&curl_once, curl_global_once);
    if (curl_init_rc != 0) {
        sw_log(SW_LOG_ERROR, "BT", "libcurl global init failed");
        return NULL;
    }
    struct sw_bt_net *net = calloc(1, sizeof *net);
    if (!net) return NULL;
    net->loop = loop;
    const char *ua = cfg && cfg->user_agent ? cfg->user_agent : "shardswarm/" SW_VERSION;
    net->user_agent = strdup(ua);
    net->multi = curl_multi_init();
    if (!net->user_agent || !net->multi) {
        if (net->multi) curl_multi_cleanup(net->multi);
        free(net->user_agent);
        free(net);
        return NULL;
    }
    uv_timer_init(loop, &net->timer);
    net->timer.data = net;
    long maxconn = cfg && cfg->max_connections ? (long)cfg->max_connections : 32;
    curl_multi_setopt(net->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
    curl_multi_setopt(net->multi, CURLMOPT_SOCKETDATA, net);
    curl_multi_setopt(net->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
    curl_multi_setopt(net->multi, CURLMOPT_TIMERDATA, net);
    curl_multi_setopt(net->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, maxconn);
    curl_multi_setopt(net->multi, CURLMOPT_MAX_HOST_CONNECTIONS, maxconn);
    return net;
}

void sw__bt_net_free(struct sw_bt_net *net)
{
    if (!net || net->closing) return;
    /* Removing easy handles makes libcurl call the socket callback with CURL_POLL_REMOVE,
     * which closes our uv_polls; their close callbacks release the memory later. */
    while (net->xfers) {
        struct net_xfer *x = net->xfers;
        net->xfers = x->next;
        curl_multi_remove_handle(net->multi, x->easy);
        curl_easy_cleanup(x->easy);
        free(x);
    }
    net->closing = 1;
    curl_multi_cleanup(net->multi);
    net->multi = NULL;
    while (net->socks) sock_unlink_close(net, net->socks);
    uv_timer_stop(&net->timer);
    net->pending_closes++;
    uv_close((uv_handle_t *)&net->timer, timer_closed);
}

uv_loop_t *sw__bt_net_loop(struct sw_bt_net *net) { return net->loop; }

CURL *sw__bt_net_easy(struct sw_bt_net *net)
{
    CURL *e = curl_easy_init();
    if (!e) return NULL;
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, net->user_agent);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85.0 */
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    return e;
}

int sw__bt_net_start(struct sw_bt_net *net, CURL *easy, sw_bt_net_done_fn done, void *ud)
{
    if (!net || net->closing || !easy) {
        if (easy) curl_easy_cleanup(easy);
        return SW_EINVAL;
    }
    struct net_xfer *x = calloc(1, sizeof *x);
    if (!x) {
        curl_easy_cleanup(easy);
        return SW_ENOMEM;
    }
    x->easy = easy;
    x->done = done;
    x->ud = ud;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)x);
    if (curl_multi_add_handle(net->multi, easy) != CURLM_OK) {
        curl_easy_cleanup(easy);
        free(x);
        return SW_EIO;
    }
    x->next = net->xfers;
    if (net->xfers) net->xfers->prev = x;
    net->xfers = x;
    return 0;
}

void sw__bt_net_cancel(struct sw_bt_net *net, CURL *easy)
{
    if (!net || !easy) return;
    struct net_xfer *x = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    if (x) {
        if (x->prev) x->prev->next = x->next;
        else net->xfers = x->next;
        if (x->next) x->next->prev = x->prev;
        free(x);
    }
    if (net->multi) curl_multi_remove_handle(net->multi, easy);
    curl_easy_cleanup(easy);
}

socklen_t sw__bt_net_peer_sockaddr(const struct sw_bt_net_peer *p, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    if (p->family == 6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(p->port);
        memcpy(&a->sin6_addr, p->ip, 16);
        return sizeof *a;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)out;
    a->sin_family = AF_INET;
    a->sin_port = htons(p->port);
    memcpy(&a->sin_addr, p->ip, 4);
    return sizeof *a;
}

const char *sw__bt_net_peer_str(const struct sw_bt_net_peer *p, char *out, size_t out_len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (p->family == 6) {
        inet_ntop(AF_INET6, p->ip, ip, sizeof ip);
        snprintf(out, out_len, "[%s]:%u", ip, (unsigned)p->port);
    } else {
        inet_ntop(AF_INET, p->ip, ip, sizeof ip);
        snprintf(out, out_len, "%s:%u", ip, (unsigned)p->port);
    }
    return out;
}
