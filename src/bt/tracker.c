/* tracker.c — HTTP tracker client: the announce URL (BEP 3), the response parser (BEP 3
 * dictionary peers, BEP 23 compact peers, BEP 7 peers6) and the BEP 12 tier logic, on the
 * libcurl-on-libuv context of tracker_http.c. Not for: UDP trackers (BEP 15), scrape. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>

#include "bt/bt_net.h"

#define TRACKER_MAX_URL 2048
#define TRACKER_MAX_TIERS 64
#define TRACKER_MAX_PER_TIER 64

/* ---------------------------------------------------------------- parsing */

static void copy_bstr(const struct sw_bnode *n, char *out, size_t out_len)
{
    if (!out_len) return;
    size_t k = 0;
    if (n && n->type == SW_BSTR) {
        for (size_t i = 0; i < n->str_len && k + 1 < out_len; i++) {
            uint8_t c = n->str[i];
            out[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?'; /* text from outside: printable only */
        }
    }
    out[k] = '\0';
}

/* Parses a dotted IPv4 or an IPv6 literal from a bencoded string (BEP 3 "ip" may also be a
 * DNS name: those are skipped, we never resolve names given by a tracker). */
static int parse_ip_literal(const struct sw_bnode *n, struct sw_bt_net_peer *p)
{
    char s[64];
    if (!n || n->type != SW_BSTR || n->str_len == 0 || n->str_len >= sizeof s) return -1;
    memcpy(s, n->str, n->str_len);
    s[n->str_len] = '\0';
    if (inet_pton(AF_INET, s, p->ip) == 1) {
        p->family = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, s, p->ip) == 1) {
        p->family = 6;
        return 0;
    }
    return -1;
}

int sw__bt_tracker_parse(const uint8_t *body, size_t len, struct sw_bt_announce_result *res,
                         struct sw_bt_net_peer *peers_buf, size_t max_peers,
                         char *msg_buf, size_t msg_len, char *warn_buf, size_t warn_len)
{
    memset(res, 0, sizeof *res);
    res->complete = res->incomplete = -1;
    res->peers = peers_buf;
    if (msg_len) msg_buf[0] = '\0';
    if (warn_len) warn_buf[0] = '\0';
    res->message = msg_buf;
    res->warning = warn_buf;

    struct sw_blimits lim = {.max_nodes = 4 * SW_BT_TRACKER_MAX_PEERS + 256, .max_depth = 8};
    struct sw_bdoc doc = {0};
    char err[128];
    int rc = sw_bdecode(body, len, &lim, &doc, NULL, err, sizeof err);
    if (rc != 0) {
        snprintf(msg_buf, msg_len, "bad tracker response: %s", rc == SW_ECORRUPT ? err : sw_strerror(rc));
        return rc == SW_ENOMEM ? rc : SW_ECORRUPT;
    }
    const struct sw_bnode *root = &doc.nodes[0];
    if (root->type != SW_BDICT) {
        snprintf(msg_buf, msg_len, "bad tracker response: not a dictionary");
        sw_bdoc_free(&doc);
        return SW_ECORRUPT;
    }
    /* BEP 3: "If present, then no other keys may be present" -- failure reason wins. */
    const struct sw_bnode *n = sw_bdict_get_type(&doc, root, "failure reason", SW_BSTR);
    if (n) {
        copy_bstr(n, msg_buf, msg_len);
        sw_bdoc_free(&doc);
        return SW_EPERM;
    }
    copy_bstr(sw_bdict_get_type(&doc, root, "warning message", SW_BSTR), warn_buf, warn_len);
    n = sw_bdict_get_type(&doc, root, "interval", SW_BINT);
    if (!n || n->ival < 0) {
        snprintf(msg_buf, msg_len, "bad tracker response: no interval");
        sw_bdoc_free(&doc);
        return SW_ECORRUPT;
    }
    res->interval_s = n->ival > 86400 * 7 ? 86400 * 7 : (uint32_t)n->ival;
    n = sw_bdict_get_type(&doc, root, "min interval", SW_BINT);
    if (n && n->ival > 0) res->min_interval_s = n->ival > 86400 * 7 ? 86400 * 7 : (uint32_t)n->ival;
    n = sw_bdict_get_type(&doc, root, "complete", SW_BINT);
    if (n && n->ival >= 0) res->complete = n->ival;
    n = sw_bdict_get_type(&doc, root, "incomplete", SW_BINT);
    if (n && n->ival >= 0) res->incomplete = n->ival;

    size_t np = 0;
    const struct sw_bnode *peers = sw_bdict_get(&doc, root, "peers");
    if (peers && peers->type == SW_BSTR) {
        /* BEP 23: 6 bytes per peer, 4 of IPv4 address and 2 of port, network order. */
        if (peers->str_len % 6 != 0) {
            snprintf(msg_buf, msg_len, "bad tracker response: compact peers length %zu not a multiple of 6",
                     peers->str_len);
            sw_bdoc_free(&doc);
            return SW_ECORRUPT;
        }
        for (size_t i = 0; i + 6 <= peers->str_len && np < max_peers; i += 6) {
            struct sw_bt_net_peer *p = &peers_buf[np];
            memset(p, 0, sizeof *p);
            p->family = 4;
            memcpy(p->ip, peers->str + i, 4);
            p->port = sw_get_be16(peers->str + i + 4);
            if (p->port) np++;
        }
    } else if (peers && peers->type == SW_BLIST) {
        /* BEP 3: a list of dictionaries with "peer id", "ip", "port". */
        for (const struct sw_bnode *d = sw_bnode_child(&doc, peers); d && np < max_peers;
             d = sw_bnode_next(&doc, d)) {
            if (d->type != SW_BDICT) continue;
            const struct sw_bnode *port = sw_bdict_get_type(&doc, d, "port", SW_BINT);
            struct sw_bt_net_peer *p = &peers_buf[np];
            memset(p, 0, sizeof *p);
            if (!port || port->ival <= 0 || port->ival > 65535) continue;
            if (parse_ip_literal(sw_bdict_get(&doc, d, "ip"), p) != 0) continue;
            p->port = (uint16_t)port->ival;
            np++;
        }
    } else if (peers) {
        snprintf(msg_buf, msg_len, "bad tracker response: peers is neither a string nor a list");
        sw_bdoc_free(&doc);
        return SW_ECORRUPT;
    }
    const struct sw_bnode *p6 = sw_bdict_get_type(&doc, root, "peers6", SW_BSTR);
    if (p6 && p6->str_len % 18 == 0) {
        /* BEP 7: 18 bytes per peer, 16 of IPv6 address and 2 of port. */
        for (size_t i = 0; i + 18 <= p6->str_len && np < max_peers; i += 18) {
            struct sw_bt_net_peer *p = &peers_buf[np];
            memset(p, 0, sizeof *p);
            p->family = 6;
            memcpy(p->ip, p6->str + i, 16);
            p->port = sw_get_be16(p6->str + i + 16);
            if (p->port) np++;
        }
    }
    res->n_peers = np;
    sw_bdoc_free(&doc);
    return 0;
}

/* ---------------------------------------------------------------- URL */

/* BEP 3: binary values are URL-encoded byte by byte; RFC 3986 unreserved bytes go as is. */
static void url_escape_bytes(struct sw_buf *b, const uint8_t *p, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
            c == '.' || c == '_' || c == '~') {
            sw_buf_append_byte(b, c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            sw_buf_append(b, e, 3);
        }
    }
}

int sw__bt_tracker_build_url(struct sw_buf *out, const char *url, const struct sw_bt_announce *a)
{
    static const char *events[] = {NULL, "started", "completed", "stopped"};
    sw_buf_printf(out, "%s", url);
    /* The announce URL may already carry a query (private trackers' passkeys). */
    sw_buf_append_byte(out, strchr(url, '?') ? '&' : '?');
    sw_buf_printf(out, "info_hash=");
    url_escape_bytes(out, a->info_hash, 20);
    sw_buf_printf(out, "&peer_id=");
    url_escape_bytes(out, a->peer_id, 20);
    sw_buf_printf(out, "&port=%u&uploaded=%llu&downloaded=%llu&left=%llu&compact=1&numwant=%u",
                  (unsigned)a->port, (unsigned long long)a->uploaded,
                  (unsigned long long)a->downloaded, (unsigned long long)a->left,
                  a->numwant ? a->numwant : 50u);
    if (a->key) sw_buf_printf(out, "&key=%08x", a->key);
    if (a->event > SW_BT_EVENT_NONE && a->event <= SW_BT_EVENT_STOPPED)
        sw_buf_printf(out, "&event=%s", events[a->event]);
    if (!sw_buf_cstr(out)) return SW_ENOMEM;
    return 0;
}

/* ---------------------------------------------------------------- tiers */

struct tier {
    char **urls;
    size_t n;
};

struct sw_bt_tracker {
    struct sw_bt_net *net;
    struct sw_bt_tracker_config cfg;
    struct tier tiers[TRACKER_MAX_TIERS];
    unsigned n_tiers;
    /* the announce in flight */
    CURL *easy;
    struct sw_bt_announce req;
    sw_bt_announce_cb cb;
    void *ud;
    unsigned cur_tier;
    size_t cur_url;
    struct sw_buf body;
    int body_toobig;
    char last_err[512];
    int last_rc;
};

struct sw_bt_tracker *sw__bt_tracker_new(struct sw_bt_net *net, const struct sw_bt_tracker_config *cfg)
{
    if (!net) return NULL;
    struct sw_bt_tracker *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->net = net;
    if (cfg) t->cfg = *cfg;
    if (!t->cfg.timeout_ms) t->cfg.timeout_ms = 15000;
    if (!t->cfg.max_response) t->cfg.max_response = SW_BT_TRACKER_MAX_RESPONSE;
    if (!t->cfg.max_peers || t->cfg.max_peers > SW_BT_TRACKER_MAX_PEERS) t->cfg.max_peers = SW_BT_TRACKER_MAX_PEERS;
    return t;
}

void sw__bt_tracker_free(struct sw_bt_tracker *t)
{
    if (!t) return;
    if (t->easy) sw__bt_net_cancel(t->net, t->easy);
    for (unsigned i = 0; i < t->n_tiers; i++) {
        for (size_t j = 0; j < t->tiers[i].n; j++) free(t->tiers[i].urls[j]);
        free(t->tiers[i].urls);
    }
    sw_buf_free(&t->body);
    free(t);
}

int sw__bt_tracker_add(struct sw_bt_tracker *t, unsigned tier, const char *url)
{
    if (!t || !url || !url[0] || strlen(url) > TRACKER_MAX_URL) return SW_EINVAL;
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) {
        sw_log(SW_LOG_DEBUG, "BT", "tracker %s: only HTTP trackers are supported; skipped", url);
        return SW_EUNSUPPORTED;
    }
    for (unsigned i = 0; i < t->n_tiers; i++)
        for (size_t j = 0; j < t->tiers[i].n; j++)
            if (!strcmp(t->tiers[i].urls[j], url)) return 0; /* listed twice: keep the first */
    if (tier >= TRACKER_MAX_TIERS) tier = TRACKER_MAX_TIERS - 1;
    if (tier >= t->n_tiers) tier = t->n_tiers; /* no gaps: next free tier */
    if (tier == TRACKER_MAX_TIERS) return SW_ERANGE;
    struct tier *tr = &t->tiers[tier];
    if (tr->n >= TRACKER_MAX_PER_TIER) return SW_ERANGE;
    char **urls = realloc(tr->urls, (tr->n + 1) * sizeof *urls);
    if (!urls) return SW_ENOMEM;
    tr->urls = urls;
    char *copy = strdup(url);
    if (!copy) return SW_ENOMEM;
    /* BEP 12: "the trackers in each tier are shuffled": insert at a random position. */
    uint32_t r;
    sw_random_bytes(&r, sizeof r);
    size_t pos = r % (tr->n + 1);
    memmove(&urls[pos + 1], &urls[pos], (tr->n - pos) * sizeof *urls);
    urls[pos] = copy;
    tr->n++;
    if (tier == t->n_tiers) t->n_tiers++;
    return 0;
}

size_t sw__bt_tracker_count(const struct sw_bt_tracker *t)
{
    size_t n = 0;
    for (unsigned i = 0; t && i < t->n_tiers; i++) n += t->tiers[i].n;
    return n;
}

int sw__bt_tracker_busy(const struct sw_bt_tracker *t) { return t && t->easy != NULL; }

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    struct sw_bt_tracker *t = ud;
    size_t n = size * nmemb;
    if (t->body.len + n > t->cfg.max_response) {
        t->body_toobig = 1;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (sw_buf_append(&t->body, p, n) != 0) return 0;
    return n;
}

static int start_current(struct sw_bt_tracker *t);

static void deliver(struct sw_bt_tracker *t, const struct sw_bt_announce_result *res)
{
    sw_bt_announce_cb cb = t->cb;
    void *ud = t->ud;
    t->cb = NULL;
    if (cb) cb(ud, res);
}

static void deliver_error(struct sw_bt_tracker *t)
{
    struct sw_bt_announce_result res = {0};
    res.err = t->last_rc ? t->last_rc : SW_EIO;
    res.message = t->last_err;
    res.warning = "";
    res.url = "";
    res.complete = res.incomplete = -1;
    deliver(t, &res);
}

/* Moves on to the next URL (BEP 12: next in the tier, then the next tier). */
static void advance(struct sw_bt_tracker *t)
{
    for (;;) {
        t->cur_url++;
        if (t->cur_url >= t->tiers[t->cur_tier].n) {
            t->cur_tier++;
            t->cur_url = 0;
        }
        if (t->cur_tier >= t->n_tiers) {
            deliver_error(t);
            return;
        }
        if (start_current(t) == 0) return;
    }
}

static void on_done(void *ud, CURL *easy, CURLcode rc)
{
    struct sw_bt_tracker *t = ud;
    t->easy = NULL;
    struct tier *tr = &t->tiers[t->cur_tier];
    const char *url = tr->urls[t->cur_url];
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK) {
        t->last_rc = t->body_toobig ? SW_ETOOBIG : rc == CURLE_OPERATION_TIMEDOUT ? SW_ETIMEDOUT : SW_EIO;
        snprintf(t->last_err, sizeof t->last_err, "%s: %s", url,
                 t->body_toobig ? "response too large" : curl_easy_strerror(rc));
    } else if (status != 200) {
        t->last_rc = SW_EIO;
        snprintf(t->last_err, sizeof t->last_err, "%s: HTTP status %ld", url, status);
    } else {
        struct sw_bt_net_peer *peers = malloc(t->cfg.max_peers * sizeof *peers);
        char msg[200], warn[200];
        struct sw_bt_announce_result res;
        int prc = peers ? sw__bt_tracker_parse(t->body.data ? t->body.data : (const uint8_t *)"", t->body.len,
                                               &res, peers, t->cfg.max_peers, msg, sizeof msg, warn,
                                               sizeof warn)
                        : SW_ENOMEM;
        if (prc == 0 || prc == SW_EPERM) {
            /* BEP 12: a tracker that answered moves to the front of its tier. */
            if (t->cur_url > 0) {
                char *u = tr->urls[t->cur_url];
                memmove(&tr->urls[1], &tr->urls[0], t->cur_url * sizeof *tr->urls);
                tr->urls[0] = u;
                t->cur_url = 0;
            }
            res.err = prc;
            res.url = tr->urls[0];
            if (prc == SW_EPERM)
                sw_log(SW_LOG_WARN, "BT", "tracker %s refused the announce: %s", res.url, res.message);
            else
                sw_log(SW_LOG_DEBUG, "BT", "tracker %s: %zu peers, interval %us", res.url, res.n_peers,
                       res.interval_s);
            deliver(t, &res);
            free(peers);
            return;
        }
        t->last_rc = prc;
        snprintf(t->last_err, sizeof t->last_err, "%s: %s", url, prc == SW_ENOMEM ? "out of memory" : msg);
        free(peers);
    }
    sw_log(SW_LOG_DEBUG, "BT", "tracker announce failed: %s", t->last_err);
    advance(t);
}

static int start_current(struct sw_bt_tracker *t)
{
    const char *url = t->tiers[t->cur_tier].urls[t->cur_url];
    struct sw_buf u = {0};
    if (sw__bt_tracker_build_url(&u, url, &t->req) != 0) {
        sw_buf_free(&u);
        t->last_rc = SW_ENOMEM;
        snprintf(t->last_err, sizeof t->last_err, "out of memory");
        return SW_ENOMEM;
    }
    CURL *e = sw__bt_net_easy(t->net);
    if (!e) {
        sw_buf_free(&u);
        t->last_rc = SW_ENOMEM;
        snprintf(t->last_err, sizeof t->last_err, "out of memory");
        return SW_ENOMEM;
    }
    sw_buf_free(&t->body);
    t->body_toobig = 0;
    curl_easy_setopt(e, CURLOPT_URL, (const char *)u.data);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)t->cfg.timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)SW_MIN(t->cfg.timeout_ms, 10000u));
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* gzip allowed; the cap applies after decoding */
    sw_log(SW_LOG_DEBUG, "BT", "announce %s", (const char *)u.data);
    sw_buf_free(&u);
    t->easy = e;
    int rc = sw__bt_net_start(t->net, e, on_done, t);
    if (rc != 0) {
        t->easy = NULL;
        t->last_rc = rc;
        snprintf(t->last_err, sizeof t->last_err, "%s: cannot start the request", url);
    }
    return rc;
}

int sw__bt_tracker_announce(struct sw_bt_tracker *t, const struct sw_bt_announce *a,
                            sw_bt_announce_cb cb, void *ud)
{
    if (!t || !a) return SW_EINVAL;
    if (t->easy) {
        sw__bt_net_cancel(t->net, t->easy);
        t->easy = NULL;
    }
    if (sw__bt_tracker_count(t) == 0) return SW_ENOTFOUND;
    t->req = *a;
    t->cb = cb;
    t->ud = ud;
    t->cur_tier = 0;
    t->cur_url = 0;
    t->last_rc = 0;
    t->last_err[0] = '\0';
    while (t->cur_tier < t->n_tiers && t->tiers[t->cur_tier].n == 0) t->cur_tier++;
    if (start_current(t) != 0) {
        /* Synchronous start failure: try the others; a callback only if all fail. */
        int rc = t->last_rc;
        for (;;) {
            t->cur_url++;
            if (t->cur_url >= t->tiers[t->cur_tier].n) {
                t->cur_tier++;
                t->cur_url = 0;
            }
            if (t->cur_tier >= t->n_tiers) {
                t->cb = NULL;
                return rc ? rc : SW_EIO;
            }
            if (start_current(t) == 0) break;
        }
    }
    return 0;
}
