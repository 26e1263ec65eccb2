/* bt_net.h — internal to src/bt: the parts of the BitTorrent engine that speak HTTP to the
 * outside world: the HTTP tracker client (BEP 3, BEP 23 compact peers, BEP 7 peers6,
 * BEP 12 announce-list tiers) and the web seed fetcher (BEP 19 url-list), both on libcurl's
 * multi interface driven by the libuv loop (no blocking call ever runs on the loop thread,
 * no thread-pool slot is taken). Not for: peer wire, piece picking, storage (see bt.h).
 *
 * Files: tracker.c (announce URL, response parser, tier logic), tracker_http.c (struct
 * sw_bt_net: libcurl multi <-> libuv glue shared by trackers and web seeds), webseed.c
 * (piece -> file byte ranges, range requests, back-off). sw_bt links PkgConfig::CURL and
 * PkgConfig::UV. Every callback runs on the loop thread. Nothing here writes to disk:
 * web seed bytes go to the caller, which verifies the piece's SHA-1 before writing.
 *
 * Names: functions are sw__bt_* (internal to the subsystem), types struct sw_bt_*. */
#ifndef SW_BT_NET_H
#define SW_BT_NET_H

#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>
#include <curl/curl.h>
#include <uv.h>

#include "util/util.h"

/* --------------------------------------------------------- shared HTTP context */

/* One per loop: a libcurl multi handle whose sockets and timer are watched by libuv.
 * Trackers and web seeds made from it share its connection cache. */
struct sw_bt_net;

struct sw_bt_net_config {
    const char *user_agent;        /* NULL: "shardswarm/<version>" */
    uint32_t max_connections;      /* total open HTTP connections; 0: 32 */
};

/* Returns NULL on oom or when libcurl cannot be initialised. `loop` is borrowed and must
 * outlive the context. */
struct sw_bt_net *sw__bt_net_new(uv_loop_t *loop, const struct sw_bt_net_config *cfg);
/* Aborts every transfer (no callbacks run), and closes the libuv handles: the memory is
 * released by their close callbacks, so run the loop afterwards (uv_run until it returns,
 * as any libuv program does at shutdown). Trackers and web seeds made from `net` must be
 * freed first. NULL harmless. */
void sw__bt_net_free(struct sw_bt_net *net);

struct sw_bt_session; /* bt.h */
struct sw_bt_torrent;

/* A peer address from a tracker: IPv4 (family 4, ip[0..3]) or IPv6 (family 6, ip[0..15]). */
struct sw_bt_net_peer {
    uint8_t family;
    uint8_t ip[16];
    uint16_t port; /* host order */
};

/* Fills a sockaddr_in / sockaddr_in6 for uv_tcp_connect; returns its length. */
socklen_t sw__bt_net_peer_sockaddr(const struct sw_bt_net_peer *p, struct sockaddr_storage *out);
/* "1.2.3.4:6881" or "[::1]:6881"; out holds >= 64 bytes. Returns out. */
const char *sw__bt_net_peer_str(const struct sw_bt_net_peer *p, char *out, size_t out_len);

/* --------------------------------------------------------- HTTP tracker (BEP 3) */

enum sw_bt_tracker_event {
    SW_BT_EVENT_NONE = 0,      /* a regular re-announce */
    SW_BT_EVENT_STARTED = 1,   /* BEP 3: first announce */
    SW_BT_EVENT_COMPLETED = 2, /* BEP 3: download finished (not sent when started complete) */
    SW_BT_EVENT_STOPPED = 3,   /* BEP 3: shutting down gracefully */
};

/* What one announce says about us. */
struct sw_bt_announce {
    uint8_t info_hash[20];
    uint8_t peer_id[20];
    uint16_t port;          /* our listen port */
    uint64_t uploaded;      /* bytes, since the "started" event */
    uint64_t downloaded;
    uint64_t left;          /* bytes still needed for what we want; 0 when seeding */
    enum sw_bt_tracker_event event;
    uint32_t numwant;       /* 0: 50 */
    uint32_t key;           /* optional random key (0: omitted) */
};

/* Caps and limits of a parsed tracker response. */
#define SW_BT_TRACKER_MAX_RESPONSE (1u << 20) /* bytes accepted from a tracker */
#define SW_BT_TRACKER_MAX_PEERS 2000          /* peers kept from one response */

/* The outcome of one announce. Everything it points to is borrowed for the callback only. */
struct sw_bt_announce_result {
    int err;                   /* 0, or SW_ETIMEDOUT / SW_EIO (HTTP/transport error) /
                                  SW_ECORRUPT (bad bencode) / SW_ETOOBIG / SW_EPERM (the
                                  tracker sent "failure reason") */
    const char *message;       /* failure reason or transport error text ("" when none) */
    const char *warning;       /* BEP 3 "warning message" ("" when none) */
    const char *url;           /* the tracker URL that answered (or failed last) */
    uint32_t interval_s;       /* BEP 3: seconds until the next regular announce */
    uint32_t min_interval_s;   /* "min interval", 0 when absent */
    int64_t complete;          /* seeders, -1 when absent */
    int64_t incomplete;        /* leechers, -1 when absent */
    const struct sw_bt_net_peer *peers;
    size_t n_peers;
};

/* Pure parser, no network: decodes a tracker response body (bencode, capped by sw_bdecode
 * limits), accepting compact "peers" (BEP 23, 6 bytes each), the original list of
 * dictionaries (BEP 3: "ip", "port", optional "peer id"), and compact "peers6" (BEP 7,
 * 18 bytes each). Ports 0 are dropped; at most max_peers are kept. On success fills *res
 * (message/warning point into msg_buf/warn_buf, peers into peers_buf) and returns 0 or
 * SW_EPERM when the tracker reported a failure (res->message says why); SW_ECORRUPT on
 * malformed input. */
int sw__bt_tracker_parse(const uint8_t *body, size_t len, struct sw_bt_announce_result *res,
                         struct sw_bt_net_peer *peers_buf, size_t max_peers,
                         char *msg_buf, size_t msg_len, char *warn_buf, size_t warn_len);

/* Pure: appends the announce query for base URL `url` to `out` (BEP 3: info_hash and
 * peer_id URL-encoded as raw bytes; compact=1 per BEP 23; '?' or '&' as the URL needs).
 * Returns 0 or SW_ENOMEM. */
int sw__bt_tracker_build_url(struct sw_buf *out, const char *url, const struct sw_bt_announce *a);

/* A tracker set: the torrent's "announce" plus "announce-list" tiers (BEP 12). Announces
 * go to the tiers in order; within a tier the URLs are shuffled once and tried in order,
 * and a URL that answers moves to the front of its tier. Only http:// and https:// URLs
 * are used (udp:// and others are skipped with a debug log). */
struct sw_bt_tracker;

struct sw_bt_tracker_config {
    uint32_t timeout_ms;        /* per HTTP request; 0: 15000 */
    uint32_t max_response;      /* bytes; 0: SW_BT_TRACKER_MAX_RESPONSE */
    uint32_t max_peers;         /* 0: SW_BT_TRACKER_MAX_PEERS */
};

typedef void (*sw_bt_announce_cb)(void *ud, const struct sw_bt_announce_result *res);

/* NULL on oom. `net` is borrowed. */
struct sw_bt_tracker *sw__bt_tracker_new(struct sw_bt_net *net, const struct sw_bt_tracker_config *cfg);
/* Cancels an announce in flight (its callback does not run). NULL harmless. */
void sw__bt_tracker_free(struct sw_bt_tracker *t);
/* Adds one URL to tier `tier` (0 = first; BEP 12 order). Returns 0, SW_EUNSUPPORTED for a
 * non-HTTP scheme (ignored), SW_EINVAL for an empty/over-long URL, SW_ENOMEM. */
int sw__bt_tracker_add(struct sw_bt_tracker *t, unsigned tier, const char *url);
/* Number of usable (HTTP) URLs. */
size_t sw__bt_tracker_count(const struct sw_bt_tracker *t);
/* Starts one announce (copied). If an announce is already in flight it is cancelled
 * first (its callback does not run). The callback runs exactly once, on the loop thread,
 * with peers or with the error of the last URL tried (after every URL of every tier failed
 * or the first that answered with a "failure reason"). Returns 0, SW_ENOTFOUND when no
 * usable URL, SW_ENOMEM. */
int sw__bt_tracker_announce(struct sw_bt_tracker *t, const struct sw_bt_announce *a,
                            sw_bt_announce_cb cb, void *ud);
/* True while an announce is in flight. */
int sw__bt_tracker_busy(const struct sw_bt_tracker *t);

/* --------------------------------------------------------- web seeds (BEP 19) */

/* One file of the torrent as the web seed needs it (borrowed strings; copied by new). */
struct sw_bt_ws_file {
    const char *path;   /* path components joined with '/', as in info.files[i].path
                           (single-file torrents: ignored, the name is used) */
    uint64_t length;
    int pad;            /* BEP 47 pad file (attr contains 'p'): never fetched, zeros */
};

struct sw_bt_ws_layout {
    const char *name;            /* info.name */
    int multi_file;              /* info has "files" */
    uint32_t piece_length;
    uint32_t n_pieces;
    const struct sw_bt_ws_file *files;  /* in torrent order; single-file: one entry */
    size_t n_files;
};

/* A contiguous byte range of one file that a piece covers. */
struct sw_bt_ws_range {
    uint32_t file;          /* index into layout.files */
    uint64_t file_offset;
    uint64_t length;
    uint64_t piece_offset;  /* where these bytes go inside the piece */
};

/* Pure: the ranges of piece `piece`, in order, pad files included (callers skip them).
 * Returns the number of ranges (<= max; SW_ERANGE when max is too small or the piece is
 * out of range, SW_EINVAL for an inconsistent layout). *piece_len_out gets the piece's
 * length (the last piece may be short). */
int sw__bt_ws_piece_ranges(const struct sw_bt_ws_layout *l, uint32_t piece,
                           struct sw_bt_ws_range *out, size_t max, uint32_t *piece_len_out);

/* Pure: the URL of file `file` for web seed base `url` (BEP 19: single-file: the URL
 * itself, or url + name when it ends in '/'; multi-file: url + '/' + name + '/' + path,
 * every component percent-escaped). Appends to out (NUL-terminated). 0 or SW_ENOMEM. */
int sw__bt_ws_file_url(struct sw_buf *out, const char *url, const struct sw_bt_ws_layout *l,
                       uint32_t file);

struct sw_bt_webseed;

struct sw_bt_webseed_config {
    uint32_t max_in_flight;     /* pieces in flight at once; 0: 4 */
    uint32_t timeout_ms;        /* whole request; 0: 60000 */
    uint32_t connect_timeout_ms;/* 0: 10000 */
    uint32_t backoff_min_ms;    /* first back-off after an error; 0: 5000 */
    uint32_t backoff_max_ms;    /* 0: 300000; doubled per consecutive error */
};

/* Delivery of one piece. On success err == 0 and `data` (piece_len bytes, pad ranges
 * zero-filled, NOT yet verified) is TRANSFERRED to the callee, who must free() it after
 * checking the SHA-1. On failure data is NULL and err is SW_ENOTFOUND (HTTP 404/410),
 * SW_EUNSUPPORTED (no range support: 200 for a partial range), SW_ECORRUPT (short or long
 * body, bad Content-Range), SW_EBUSY (503), SW_ETIMEDOUT, SW_EIO (other HTTP status or
 * transport error); the web seed is then backed off. */
typedef void (*sw_bt_webseed_cb)(void *ud, struct sw_bt_webseed *ws, uint32_t piece, int err,
                                 uint8_t *data, uint32_t piece_len);

/* `url` and `layout` are copied. NULL on oom or an invalid layout. */
struct sw_bt_webseed *sw__bt_webseed_new(struct sw_bt_net *net, const char *url,
                                         const struct sw_bt_ws_layout *layout,
                                         const struct sw_bt_webseed_config *cfg,
                                         sw_bt_webseed_cb cb, void *ud);
/* Cancels every fetch in flight (no callbacks). The memory is released when the loop runs
 * (a libuv handle closes). NULL harmless. */
void sw__bt_webseed_free(struct sw_bt_webseed *ws);
const char *sw__bt_webseed_url(const struct sw_bt_webseed *ws);
/* True when a new fetch may start now: fewer than max_in_flight in flight, not backed off,
 * not banned. */
int sw__bt_webseed_can_fetch(const struct sw_bt_webseed *ws);
size_t sw__bt_webseed_in_flight(const struct sw_bt_webseed *ws);
/* Starts fetching one piece. Returns 0, SW_EBUSY (cannot fetch now: see can_fetch),
 * SW_EEXIST (that piece is already in flight here), SW_ERANGE (bad piece), SW_ENOMEM.
 * A piece made only of pad bytes completes at once (callback from the loop, not inside
 * this call). */
int sw__bt_webseed_fetch(struct sw_bt_webseed *ws, uint32_t piece);
/* Abandons a piece in flight (endgame: another source finished it). No callback. */
void sw__bt_webseed_cancel(struct sw_bt_webseed *ws, uint32_t piece);
/* The caller found a delivered piece's hash wrong: the web seed serves bad data and is
 * banned for the rest of the session (can_fetch false). */
void sw__bt_webseed_ban(struct sw_bt_webseed *ws);
int sw__bt_webseed_banned(const struct sw_bt_webseed *ws);
/* Milliseconds until the back-off ends (0 when not backed off). */
uint64_t sw__bt_webseed_backoff_ms(const struct sw_bt_webseed *ws);
/* Bytes received from this web seed so far (payload only). */
uint64_t sw__bt_webseed_bytes(const struct sw_bt_webseed *ws);

/* --------------------------------------------------------- plumbing (bt_net files only)
 * Used by tracker.c and webseed.c; the core needs none of it. */

/* A new easy handle with the context's common options (user agent, no signals, http/https
 * only, bounded redirects). NULL on oom. */
CURL *sw__bt_net_easy(struct sw_bt_net *net);
/* Called once when a transfer ends (on the loop thread, outside libcurl callbacks). The
 * easy handle is cleaned up by the context right after the callback returns. */
typedef void (*sw_bt_net_done_fn)(void *ud, CURL *easy, CURLcode rc);
/* Starts a transfer; the context owns `easy` from now on (also on failure). 0 or
 * SW_ENOMEM / SW_EIO. */
int sw__bt_net_start(struct sw_bt_net *net, CURL *easy, sw_bt_net_done_fn done, void *ud);
/* Aborts a transfer started with sw__bt_net_start and cleans it up; no callback. */
void sw__bt_net_cancel(struct sw_bt_net *net, CURL *easy);
uv_loop_t *sw__bt_net_loop(struct sw_bt_net *net);

/* webseed_session.c: the sw_bt_webseed_ops of a session (one fetcher per torrent and URL).
 * new registers the ops with the session; free cancels every fetch (no more
 * sw_bt_webseed_done calls). */
struct sw_bt_ws_glue;
struct sw_bt_ws_glue *sw__bt_ws_glue_new(struct sw_bt_net *net, struct sw_bt_session *s);
void sw__bt_ws_glue_free(struct sw_bt_ws_glue *g);

/* --------------------------------------------------------- session glue (for the core)
 *
 * What `shardswarm fetch/seed/node` call to give a struct sw_bt_session (bt.h) its HTTP
 * side, in three lines:
 *
 *     struct sw_bt_netglue *g = sw__bt_netglue_new(loop, session);   after session_new
 *     sw__bt_netglue_add_torrent(g, torrent);                         after torrent_add
 *     ...  uv_run ...
 *     sw__bt_netglue_close(g);        before sw_bt_session_close; then run the loop dry
 *
 * netglue_new registers the web seed fetcher (sw_bt_session_set_webseed): the session asks
 * for whole pieces of torrents with url-list entries, and gets them back through
 * sw_bt_webseed_done. add_torrent starts announcing to the torrent's HTTP trackers
 * (event=started, re-announce at the tracker's interval, event=completed when
 * sw_bt_torrent_complete turns true, event=stopped at close) and hands every peer to
 * sw_bt_torrent_add_peer_addr. Both run on the loop thread and never block it. */
struct sw_bt_netglue;

struct sw_bt_netglue *sw__bt_netglue_new(uv_loop_t *loop, struct sw_bt_session *s);
/* Starts tracker announces for t (a no-op returning 0 when it has no HTTP tracker or its
 * metadata is not known yet: call again after SW_BT_EV_METADATA). Extra tracker URLs (e.g.
 * a magnet's tr=) may be given; NULL/0 when none. */
int sw__bt_netglue_add_torrent(struct sw_bt_netglue *g, struct sw_bt_torrent *t,
                               const char *const *extra_trackers, uint32_t n_extra);
/* Sends event=stopped to the trackers that answered (bounded: 2 s), cancels web seed
 * fetches, closes everything. Memory is released as the loop runs. NULL harmless. */
void sw__bt_netglue_close(struct sw_bt_netglue *g);
/* The shared HTTP context (borrowed), e.g. to make more trackers. */
struct sw_bt_net *sw__bt_netglue_net(struct sw_bt_netglue *g);

#endif
