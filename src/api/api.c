/* api.c — libmicrohttpd server with a fixed routing table, and a libcurl client. The
 * server runs one thread per connection (MHD_USE_THREAD_PER_CONNECTION): a handler may wait
 * for a generation without holding up the other clients; handlers must be thread-safe (the
 * node hands them snapshots, see sw_node_status_json). Stream routes answer with a body
 * read from a callback while it is sent (MHD_create_response_from_callback).
 * Not for: JSON about the swarm (src/swarm). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>

#include "api/api.h"
#include "api_gate.h"

#define MAX_ROUTES 64
#define MAX_ON_FREE 16
#define STREAM_WAIT_MS 100      /* a stream's read waits this long before we look at the client */
#define THREAD_STACK (512u << 10)
#define IDLE_TIMEOUT_S 30       /* an idle connection is closed after this long */

struct route {
    char method[8];
    char path[128];
    sw_api_handler_fn fn;
    void *ud;
    int stream;
    size_t max_body;
    int open;               /* reachable without the API key (sw_api_open) */
    int prefix;             /* path is a prefix: matches path + anything (sw_api_route_prefix) */
};

struct sw_api {
    struct sw_api_config cfg;
    char host[64];
    char key[SW_API_KEY_MAX + 1]; /* cfg.api_key points here when set */
    struct MHD_Daemon *d;
    struct route routes[MAX_ROUTES];
    size_t n_routes;
    uint16_t port;
    _Atomic int stopping;       /* set before MHD_stop_daemon: waiting handlers give up */
    struct sw__gate *gate;      /* our listening socket and header deadline (api_gate.c) */
    struct sw__guard guard;     /* Host / Origin / Content-Type checks */
    char *allow_hosts[SW_API_MAX_ALLOW], *allow_origins[SW_API_MAX_ALLOW]; /* the guard's lists */
    struct { void (*fn)(void *); void *ud; } on_free[MAX_ON_FREE];
    size_t n_on_free;
};

struct sw_api_call {
    struct sw_api *api;
    struct MHD_Connection *c;
};

struct conn {               /* per-request state while a body arrives */
    struct sw_buf body;
    int too_big;
    size_t max_body;
    int oai;                /* an OpenAI-style route: errors as {"error":{...}} objects */
    int no_timeout;         /* the idle timeout is off while this request runs */
    int unauth;             /* an API key is set and the request lacks it: 401 at the end */
    int refuse;             /* a guard's status (403, 415): answered at the end, body dropped */
    char refuse_msg[320];
    uint64_t t0_ms;         /* headers complete: the body has SW_API_BODY_DEADLINE_MS */
};

/* Errors on the /v1 paths in the OpenAI error format (clients parse error.message). */
static void route_error(struct conn *st, struct sw_api_response *resp, int status, const char *msg)
{
    if (!st->oai) {
        sw_api_error(resp, status, msg);
        return;
    }
    struct sw_api_oai_error e = { 0 };
    e.status = status;
    e.type = status == 401 || status == 403 || status == 404 || status == 405 || status == 413 || status == 415
                 ? "invalid_request_error"
                                                                             : "server_error";
    e.code = status == 404 ? "unknown_url" : status == 401 ? "invalid_api_key" : NULL;
    snprintf(e.message, sizeof e.message, "%s", msg);
    sw_api_oai_error_resp(&e, resp);
}

/* A streamed response in flight: what the route's reader gave and MHD has not taken yet. */
struct sresp {
    struct sw_api_call call;
    struct sw_api_stream s;
    struct sw_buf pending;
    size_t off;
    int ended;              /* the reader said: the end */
};

void sw_api_error(struct sw_api_response *resp, int status, const char *msg)
{
    json_t *o = json_object();
    json_object_set_new(o, "error", json_string(msg ? msg : ""));
    resp->status = status;
    resp->content_type = "application/json";
    free(resp->body);
    resp->body = json_dumps(o, JSON_COMPACT);
    resp->body_len = 0;
    json_decref(o);
}

static void health(void *ud, const struct sw_api_request *req, struct sw_api_response *resp)
{
    (void)ud;
    (void)req;
    char buf[128];
    snprintf(buf, sizeof buf, "{\"status\":\"ok\",\"version\":\"%s\"}", SW_VERSION);
    resp->body = strdup(buf);
}

int sw_api_key_check(const char *key)
{
    size_t n = key ? strlen(key) : 0;
    if (n < 1 || n > SW_API_KEY_MAX) return SW_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (key[i] <= ' ' || key[i] > '~') return SW_EINVAL;
    return 0;
}

/* "Authorization: Bearer <key>" (RFC 6750; the scheme is case-insensitive), compared in
 * time that does not depend on where the two differ. */
static int auth_ok(const struct sw_api *a, struct MHD_Connection *c)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7)) return 0;
    h += 7;
    while (*h == ' ') h++;
    size_t n = strlen(h), k = strlen(a->key);
    unsigned char diff = n != k;
    for (size_t i = 0; i < k; i++) diff |= (unsigned char)(a->key[i] ^ (i < n ? h[i] : 0));
    return !diff;
}

int sw_api_new(const struct sw_api_config *cfg, struct sw_api **out)
{
    if (!out) return SW_EINVAL;
    struct sw_api *a = calloc(1, sizeof *a);
    if (!a) return SW_ENOMEM;
    if (cfg) a->cfg = *cfg;
    snprintf(a->host, sizeof a->host, "%s", cfg && cfg->host ? cfg->host : "127.0.0.1");
    a->cfg.host = a->host;
    if (!a->cfg.max_body) a->cfg.max_body = 64 << 10;
    a->cfg.api_key = NULL;
    if (cfg && cfg->api_key) {
        if (sw_api_key_check(cfg->api_key)) {
            free(a);
            return SW_EINVAL;
        }
        snprintf(a->key, sizeof a->key, "%s", cfg->api_key);
        a->cfg.api_key = a->key;
    }
    sw_api_route(a, "GET", "/health", health, NULL);
    sw_api_open(a, "/health");
    *out = a;
    return 0;
}

static int add_route(struct sw_api *a, const char *method, const char *path, sw_api_handler_fn fn, void *ud,
                     int stream, size_t max_body)
{
    if (!a || !method || !path || !fn || a->d) return SW_EINVAL;
    if (a->n_routes == MAX_ROUTES) return SW_ETOOBIG;
    if (strlen(method) >= sizeof a->routes[0].method || strlen(path) >= sizeof a->routes[0].path) return SW_EINVAL;
    struct route *r = &a->routes[a->n_routes++];
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->path, sizeof r->path, "%s", path);
    r->fn = fn;
    r->ud = ud;
    r->stream = stream;
    r->max_body = max_body;
    return 0;
}

int sw_api_route(struct sw_api *a, const char *method, const char *path, sw_api_handler_fn fn, void *ud)
{
    return add_route(a, method, path, fn, ud, 0, 0);
}

int sw_api_route_prefix(struct sw_api *a, const char *method, const char *prefix, sw_api_handler_fn fn, void *ud)
{
    size_t n = prefix ? strlen(prefix) : 0;
    if (!n || prefix[n - 1] != '/') return SW_EINVAL; /* "/v1/models/": a whole path segment */
    int rc = add_route(a, method, prefix, fn, ud, 0, 0);
    if (!rc) a->routes[a->n_routes - 1].prefix = 1;
    return rc;
}

int sw_api_route_stream(struct sw_api *a, const char *method, const char *path, size_t max_body,
                        sw_api_handler_fn fn, void *ud)
{
    return add_route(a, method, path, fn, ud, 1, max_body);
}

static int allow_add(struct sw_api *a, char **list, size_t *n, const char *v)
{
    if (!a || !v || !*v || a->d) return SW_EINVAL;
    if (*n == SW_API_MAX_ALLOW) return SW_ETOOBIG;
    if (!(list[*n] = strdup(v))) return SW_ENOMEM;
    (*n)++;
    a->guard.hosts = (const char *const *)a->allow_hosts;
    a->guard.origins = (const char *const *)a->allow_origins;
    return 0;
}

int sw_api_allow_host(struct sw_api *a, const char *name)
{
    return a ? allow_add(a, a->allow_hosts, &a->guard.n_hosts, name) : SW_EINVAL;
}

int sw_api_allow_origin(struct sw_api *a, const char *origin)
{
    return a ? allow_add(a, a->allow_origins, &a->guard.n_origins, origin) : SW_EINVAL;
}

int sw_api_on_free(struct sw_api *a, void (*fn)(void *ud), void *ud)
{
    if (!a || !fn) return SW_EINVAL;
    if (a->n_on_free == MAX_ON_FREE) return SW_ETOOBIG;
    a->on_free[a->n_on_free].fn = fn;
    a->on_free[a->n_on_free].ud = ud;
    a->n_on_free++;
    return 0;
}

int sw_api_call_gone(const struct sw_api_call *c)
{
    if (!c) return 0;
    if (c->api && c->api->stopping) return 1;
    if (!c->c) return 0;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c->c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    /* the peer closed (FIN: POLLRDHUP) or the socket failed; a waiting request reads nothing
     * more, so readable data with a hang-up is a close too */
    struct pollfd p = { .fd = ci->connect_fd, .events = POLLIN | POLLRDHUP };
    if (poll(&p, 1, 0) <= 0) return 0;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

/* A path whose routes need no key (/health, static assets). */
static int path_open(const struct sw_api *a, const char *url)
{
    for (size_t i = 0; i < a->n_routes; i++)
        if (a->routes[i].open && !strcmp(a->routes[i].path, url)) return 1;
    return 0;
}

int sw_api_open(struct sw_api *a, const char *path)
{
    if (!a || !path || a->d) return SW_EINVAL;
    int n = 0;
    for (size_t i = 0; i < a->n_routes; i++)
        if (!strcmp(a->routes[i].path, path)) {
            a->routes[i].open = 1;
            n++;
        }
    return n ? 0 : SW_ENOTFOUND;
}

static int route_matches(const struct route *r, const char *url)
{
    if (!r->prefix) return !strcmp(r->path, url);
    size_t n = strlen(r->path);
    return !strncmp(r->path, url, n) && url[n]; /* something after the prefix */
}

static struct route *find_route(struct sw_api *a, const char *url, const char *method, int *path_known)
{
    for (int pass = 0; pass < 2; pass++) /* exact paths first, then prefixes */
        for (size_t i = 0; i < a->n_routes; i++) {
            struct route *r = &a->routes[i];
            if (r->prefix != pass || !route_matches(r, url)) continue;
            if (path_known) *path_known = 1;
            if (strcmp(r->method, method)) continue;
            return r;
        }
    return NULL;
}

/* MHD_ContentReaderCallback, on the connection's thread: hands MHD what the route's reader
 * produced; waits in the reader (bounded) while nothing is there, and gives up when the
 * client has gone. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct sresp *sr = cls;
    (void)pos;
    while (sr->off == sr->pending.len) {
        if (sr->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        sr->pending.len = 0;
        sr->off = 0;
        int rc = sr->s.read(sr->s.ud, &sr->pending, STREAM_WAIT_MS);
        if (rc < 0 || !sw_buf_ok(&sr->pending)) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (rc == 1) sr->ended = 1;
        if (sr->pending.len == 0 && !sr->ended && sw_api_call_gone(&sr->call))
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = SW_MIN(max, sr->pending.len - sr->off);
    memcpy(buf, sr->pending.data + sr->off, n);
    sr->off += n;
    return (ssize_t)n;
}

/* MHD_ContentReaderFreeCallback: the response is over (sent, or the connection closed). */
static void stream_free(void *cls)
{
    struct sresp *sr = cls;
    int completed = sr->ended && sr->off == sr->pending.len;
    if (sr->s.done) sr->s.done(sr->s.ud, completed);
    sw_buf_free(&sr->pending);
    free(sr);
}

static enum MHD_Result send_stream(struct sw_api *a, struct MHD_Connection *c, struct sw_api_response *r)
{
    free(r->body);
    r->body = NULL;
    struct sresp *sr = calloc(1, sizeof *sr);
    if (!sr) {
        if (r->stream.done) r->stream.done(r->stream.ud, 0);
        return MHD_NO;
    }
    sr->call.api = a;
    sr->call.c = c;
    sr->s = r->stream;
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 << 10, stream_read, sr,
                                                                  stream_free);
    if (!resp) {
        stream_free(sr);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", r->content_type ? r->content_type : "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close"); /* each request passes the gate */
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)(r->status ? r->status : 200), resp);
    MHD_destroy_response(resp); /* stream_free runs when the connection lets go of it */
    return ret;
}

static enum MHD_Result send_resp(struct MHD_Connection *c, struct sw_api_response *r)
{
    size_t len = r->body ? (r->body_len ? r->body_len : strlen(r->body)) : 0;
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, r->body ? r->body : (void *)"",
                                                                r->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(r->body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", r->content_type ? r->content_type : "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close"); /* each request passes the gate */
    if (r->www_authenticate) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"shardswarm\"");
    if (r->retry_after_s) {
        char ra[16];
        snprintf(ra, sizeof ra, "%u", r->retry_after_s);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)(r->status ? r->status : 200), resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size,
                                  void **con_cls)
{
    struct sw_api *a = cls;
    (void)version;
    struct conn *st = *con_cls;
    if (!st) {
        st = calloc(1, sizeof *st);
        if (!st) return MHD_NO;
        st->max_body = a->cfg.max_body;
        st->oai = !strncmp(url, "/v1/", 4);
        st->t0_ms = sw_time_ms();
        st->refuse = sw__guard_check(&a->guard, c, method, st->refuse_msg, sizeof st->refuse_msg);
        st->unauth = !st->refuse && a->cfg.api_key && !path_open(a, url) && !auth_ok(a, c);
        struct route *r = st->unauth || st->refuse ? NULL : find_route(a, url, method, NULL);
        if (r && r->stream && r->max_body) st->max_body = r->max_body;
        *con_cls = st;
        return MHD_YES;
    }
    if (*upload_size && sw_time_ms() - st->t0_ms > SW_API_BODY_DEADLINE_MS) {
        sw_log(SW_LOG_DEBUG, "API", "%s %.120s: body not complete within %u s: connection closed", method, url,
               SW_API_BODY_DEADLINE_MS / 1000);
        return MHD_NO; /* a body dripped in: the thread is not held for it */
    }
    if (*upload_size) {
        /* over the cap: the rest is read and dropped, then 413 (closing early would make
         * clients still sending see a reset instead of the answer) */
        if (st->unauth || st->refuse) { /* dropped unread: nothing of it is used */
        } else if (st->body.len + *upload_size > st->max_body) {
            st->too_big = 1;
            sw_buf_free(&st->body);
        } else if (!st->too_big) {
            sw_buf_append(&st->body, upload_data, *upload_size);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    struct sw_api_response resp = { 0 };
    if (st->refuse) {
        sw_log(SW_LOG_INFO, "API", "%s %.120s refused: %s", method, url, st->refuse_msg);
        route_error(st, &resp, st->refuse, st->refuse_msg);
        return send_resp(c, &resp);
    }
    if (st->unauth) {
        route_error(st, &resp, 401, "missing or wrong API key: send the header 'Authorization: Bearer <key>' "
                                    "(shardswarm commands send $SHARDSWARM_API_KEY)");
        resp.www_authenticate = 1;
        return send_resp(c, &resp);
    }
    if (st->too_big) {
        char m[96];
        snprintf(m, sizeof m, "request body too large (over %zu bytes)", st->max_body);
        route_error(st, &resp, 413, m);
        return send_resp(c, &resp);
    }
    int path_known = 0;
    struct route *r = find_route(a, url, method, &path_known);
    if (r) {
        struct sw_api_call call = { a, c };
        struct sw_api_request req = { method, url, NULL, 0, &call };
        if (r->stream) {
            /* a generation may take longer than the idle timeout before its first byte;
             * the timeout comes back when the request is over (on_done) */
            MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
            st->no_timeout = 1;
        }
        const char *b = sw_buf_cstr(&st->body);
        req.body = (const uint8_t *)(b ? b : "");
        req.body_len = st->body.len;
        r->fn(r->ud, &req, &resp);
        if (r->stream && resp.stream.read) return send_stream(a, c, &resp);
        if (resp.stream.done) resp.stream.done(resp.stream.ud, 0); /* a plain route cannot stream */
        if (!resp.body && !resp.status) sw_api_error(&resp, 500, "handler gave no response");
        return send_resp(c, &resp);
    }
    char m[200];
    snprintf(m, sizeof m, "%s %.120s: %s", method, url, path_known ? "method not allowed" : "no such endpoint");
    route_error(st, &resp, path_known ? 405 : 404, m);
    return send_resp(c, &resp);
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode tc)
{
    struct sw_api *a = cls;
    struct conn *st = *con_cls;
    /* a kept-alive connection idles under the usual timeout again */
    if (st && st->no_timeout && tc == MHD_REQUEST_TERMINATED_COMPLETED_OK && !a->stopping)
        MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S);
    if (st) {
        sw_buf_free(&st->body);
        free(st);
    }
    *con_cls = NULL;
}

/* MHD's own messages (e.g. a client that left mid-stream) go to our log, not stderr. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char m[512];
    vsnprintf(m, sizeof m, fmt, ap);
    size_t n = strlen(m);
    while (n && (m[n - 1] == '\n' || m[n - 1] == '\r')) m[--n] = 0;
    sw_log(SW_LOG_DEBUG, "API", "libmicrohttpd: %s", m);
}

int sw_api_start(struct sw_api *a, char *err, size_t err_len)
{
    if (!a || a->d) return SW_EINVAL;
    int rc = sw__gate_listen(&a->gate, a->host, a->cfg.port, &a->port, err, err_len);
    if (rc) return rc;
    /* MHD gets each connection from the gate once its headers are in (api_gate.c) */
    a->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG |
                                MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC,
                            0, NULL, NULL, on_request, a, MHD_OPTION_NOTIFY_COMPLETED, on_done, a,
                            MHD_OPTION_NOTIFY_CONNECTION, sw__gate_on_conn, a->gate, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)IDLE_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT, (unsigned)SW_API_MAX_CONNS,
                            MHD_OPTION_THREAD_STACK_SIZE, (size_t)THREAD_STACK, MHD_OPTION_EXTERNAL_LOGGER,
                            mhd_log, NULL, MHD_OPTION_END);
    if (!a->d || sw__gate_start(a->gate, a->d)) {
        if (err_len) snprintf(err, err_len, "cannot serve HTTP on %s:%u", a->host, a->cfg.port);
        if (a->d) MHD_stop_daemon(a->d);
        a->d = NULL;
        sw__gate_free(a->gate);
        a->gate = NULL;
        return SW_EIO;
    }
    return 0;
}

uint16_t sw_api_port(const struct sw_api *a) { return a ? a->port : 0; }

void sw_api_free(struct sw_api *a)
{
    if (!a) return;
    a->stopping = 1; /* waiting handlers and streams see their call "gone" */
    sw__gate_stop(a->gate); /* no new connection reaches MHD */
    if (a->d) MHD_stop_daemon(a->d);
    sw__gate_free(a->gate);
    for (size_t i = 0; i < a->guard.n_hosts; i++) free(a->allow_hosts[i]);
    for (size_t i = 0; i < a->guard.n_origins; i++) free(a->allow_origins[i]);
    while (a->n_on_free) {
        a->n_on_free--;
        a->on_free[a->n_on_free].fn(a->on_free[a->n_on_free].ud);
    }
    free(a);
}

/* ---------------------------------------------------------------- client */

int sw_api_base_url(const char *s, char *out, size_t out_len)
{
    if (!s || !*s || out_len < 16) return SW_EINVAL;
    int all_digits = 1;
    for (const char *p = s; *p; p++) all_digits &= (*p >= '0' && *p <= '9');
    int n;
    if (all_digits) {
        long port = strtol(s, NULL, 10);
        if (port < 1 || port > 65535) return SW_EINVAL;
        n = snprintf(out, out_len, "http://127.0.0.1:%ld", port);
    } else if (!strncmp(s, "http://", 7) || !strncmp(s, "https://", 8)) {
        n = snprintf(out, out_len, "%s", s);
    } else {
        n = snprintf(out, out_len, "http://%s", s);
    }
    if (n < 0 || (size_t)n >= out_len) return SW_EINVAL;
    while (n > 0 && out[n - 1] == '/') out[--n] = 0;
    return 0;
}

static size_t on_data(char *p, size_t sz, size_t nm, void *ud)
{
    struct sw_buf *b = ud;
    if (b->len + sz * nm > (16u << 20)) return 0; /* cap on a response */
    sw_buf_append(b, p, sz * nm);
    return sz * nm;
}

int sw_api_fetch(const char *method, const char *url, const void *body, size_t body_len,
                 uint32_t timeout_ms, char **resp_out, size_t *resp_len_out, int *status_out,
                 char *err, size_t err_len)
{
    *resp_out = NULL;
    CURL *c = curl_easy_init();
    if (!c) return SW_ENOMEM;
    struct sw_buf b = { 0 };
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_ms ? timeout_ms : 5000));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
    }
    /* a node started with an API key: the CLI commands send $SHARDSWARM_API_KEY */
    struct curl_slist *hdrs = NULL, *h2;
    const char *key = getenv("SHARDSWARM_API_KEY");
    if (key && !sw_api_key_check(key)) {
        char h[SW_API_KEY_MAX + 32];
        snprintf(h, sizeof h, "Authorization: Bearer %s", key);
        hdrs = curl_slist_append(NULL, h);
    }
    /* the API takes JSON bodies only (415 otherwise: docs/security.md) */
    if (body && (h2 = curl_slist_append(hdrs, "Content-Type: application/json"))) hdrs = h2;
    if (hdrs) curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    if (rc != CURLE_OK) {
        if (err_len) snprintf(err, err_len, "%s: %s", url, cerr[0] ? cerr : curl_easy_strerror(rc));
        sw_buf_free(&b);
        return SW_EIO;
    }
    const char *s = sw_buf_cstr(&b);
    if (!s) {
        sw_buf_free(&b);
        return SW_ENOMEM;
    }
    *resp_out = (char *)b.data;
    if (resp_len_out) *resp_len_out = b.len;
    if (status_out) *status_out = (int)status;
    return 0;
}
