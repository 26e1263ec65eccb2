/* bt_session_int.h — the structs and helpers shared by the files of the peer engine
 * (session.c, peer_io.c, peer_msg.c, peer_ext.c, pieces.c). Not API: see bt.h. */
#ifndef SW_BT_SESSION_INT_H
#define SW_BT_SESSION_INT_H

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bt.h"
#include "bt_int.h"
#include "net/noise.h"

#define ERR(...) (err && err_len ? (void)snprintf(err, err_len, __VA_ARGS__) : (void)0)
#define LOGD(...) sw_log(SW_LOG_DEBUG, "BT", __VA_ARGS__)
#define LOGI(...) sw_log(SW_LOG_INFO, "BT", __VA_ARGS__)
#define LOGW(...) sw_log(SW_LOG_WARN, "BT", __VA_ARGS__)

/* Our BEP 10 extension ids (what peers put in front of messages they send us). */
enum { EXT_PEX = 1, EXT_METADATA = 2, EXT_CUSTOM = 3 };
#define META_PIECE (16u << 10) /* BEP 9: metadata is exchanged in 16 KiB pieces */
#define READ_BUF (256u << 10)
#define SOCK_BUF (4 << 20)
#define MAX_BLOCK_REQ (128u << 10)
#define TICK_MS 1000
#define CHOKE_ROUND_S 10
#define OPTIMISTIC_S 30
#define SNUB_MS 30000
#define REQ_TIMEOUT_MS 60000
#define IDLE_MS 180000
/* Deadlines and caps against connections that hold a slot and do nothing (docs/security.md).
 * libtorrent's defaults are close: peer_connect_timeout 15 s, handshake_timeout 10 s. */
#define CONNECT_MS 15000     /* an outgoing TCP connect */
#define HANDSHAKE_MS 10000   /* from accept (or connect) to a complete BT handshake, MSE included */
#define EXT_HS_MS 10000      /* from the BT handshake to the peer's BEP 10 handshake, when both offer it */
#define SILENT_MS 30000      /* a handshaked peer that sent no message but keep-alives, and that
                              * neither side is interested in, nor any request in flight */
#define EVICT_QUIET_MS 5000  /* a full torrent makes room by closing a peer quiet this long */
#define MAX_UNPROVEN_PER_ADDR 8 /* connections from one IP that have not yet sent a message
                              * after their handshake (the rest are refused at accept) */
#define KEEPALIVE_MS 90000
#define PEX_FIRST_MS 2000
#define PEX_EVERY_MS 60000
#define RATE_WINDOW_MS 2000 /* download and upload rates: a sliding window of real time (a 0.5 GB
                             * shard takes 2-5 s on loopback: 5 s would average in the ramp-up) */
#define MAX_BANS 1024
#define MAX_FAILED 8
#define FRESH_CHECK_MS 100   /* initial seeding: how long "a fresh piece is left" is cached */
#define REJECTED_CLEAR_S 3   /* pieces a peer refused are retried from it after this long */
#define WS_MAX_BAD 3         /* a web seed is banned after this many pieces failing SHA-1 */
#define HASH_BACKLOG (16u << 20) /* bytes of complete pieces waiting for SHA-1 and the write:
                                  * above it no new block is requested (pieces.c) */

enum pstate { P_CONNECTING, P_HANDSHAKE, P_ACTIVE, P_CLOSING };

struct outreq {
    uint32_t piece, begin, len;
    uint64_t sent_ms;
};

struct inreq {
    uint32_t piece, begin, len;
};

struct sw_bt_peer {
    struct sw_bt_session *s;
    struct sw_bt_torrent *t;
    struct sw_bt_peer *next, *prev;
    uv_tcp_t tcp;
    uv_connect_t conn;
    struct sockaddr_storage addr;
    char addr_str[64];
    uint32_t uid;
    int outgoing;
    enum pstate state;
    struct sw_bt_wire wire;
    uint8_t peer_id[20];
    int got_id;
    int fast, ext;             /* BEP 6 / BEP 10 negotiated (both sides) */
    int ext_hs_seen;
    uint8_t ext_pex, ext_meta, ext_custom; /* the PEER's ids for these (0 = none) */
    uint16_t listen_port;
    uint32_t reqq;
    uint64_t meta_size;
    int am_choking, am_interested, peer_choking, peer_interested;
    uint8_t *bits;             /* peer's pieces; before metadata a growable raw copy */
    size_t bits_len;
    int have_all;
    int counted;               /* bits added to the picker's availability */
    uint32_t n_have;
    uint8_t *allowed;          /* BEP 6 allowed-fast pieces from the peer (bitfield) */
    uint8_t *rejected;         /* pieces the peer rejected lately (bitfield): asked elsewhere */
    uint8_t *mask;             /* scratch: bits & ~rejected for the picker */
    int any_rejected;
    struct outreq *out;
    uint32_t n_out, cap_out;
    struct inreq *in;
    uint32_t n_in, cap_in, in_head;
    struct sw_buf ctrl;        /* whole messages waiting to be written, in order */
    struct sw_buf prio;        /* extension messages waiting (flushed before ctrl/pieces) */
    uint64_t down_bytes, up_bytes, down_prev, up_prev;
    double down_rate, up_rate;
    uint64_t last_recv_ms, last_send_ms, last_data_ms, connected_ms, next_pex_ms;
    uint64_t hs_start_ms;      /* TCP established: the BT handshake deadline counts from here */
    uint64_t active_ms;        /* BT handshake complete */
    uint64_t last_msg_ms;      /* last message but keep-alives (the handshake counts) */
    int proven;                /* sent a message after its BT handshake */
    uint64_t meta_req_ms;
    int optimistic;
    int ext_connected_called;
    int first_read_seen;
    struct sw__mse *mse;       /* incoming encrypted (MSE) handshake in progress */
    struct sw_noise *nz;       /* private swarm: the connection's filter (handshake, then records) */
    struct sw_buf nz_out;      /* private swarm: handshake bytes to write as they are (not sealed) */
    void *userdata;
    int close_reason;
    /* the node-wide message buffer budget (peer_budget.c) */
    uint32_t budget_held;      /* bytes reserved for the message being buffered */
    uint64_t budget_ms;        /* when they were reserved */
    int waiting;               /* not read: its next message waits for room */
    uint64_t wait_ms;          /* since when */
    struct sw_buf held;        /* the rest of the read that stopped at that message */
};

struct assembly {
    uint8_t *buf;
    uint32_t *sender;          /* uid per block, for smart banning */
    uint32_t ws;               /* web seed index + 1 that delivered the piece (0: peers) */
};

struct failed_piece {
    uint32_t piece;
    uint8_t *buf;
    uint32_t *sender;
    uint32_t n_blocks;
};

struct webseed {
    char *url;
    uint32_t in_flight;
    uint32_t failures; /* consecutive: reset by every piece it delivers */
    uint32_t bad;      /* pieces it delivered that failed their SHA-1 check */
    int banned;        /* WS_MAX_BAD bad pieces: never asked again this session */
};

struct sw_bt_torrent {
    struct sw_bt_session *s;
    uint8_t info_hash[20];
    char hex[41];
    int has_meta;
    struct sw_bt_metainfo mi;
    struct sw_bt_torrent_opts opts;
    char *dir;
    struct sw_bt_storage *st;
    struct sw_bt_picker *pk;
    uint8_t *want_file;        /* per file */
    uint32_t n_want_pending;
    uint32_t *want_pending;    /* wishes made before the metadata arrived */
    struct assembly *as;       /* per piece */
    uint8_t *hashing;          /* per piece: a verify job is running */
    uint32_t *served_to;       /* per piece: uid of the first peer we uploaded it to (0: none) */
    uint64_t fresh_ms;         /* when fresh_any was computed */
    int fresh_any;             /* a held piece that left us never and no peer has */
    int fresh_done;            /* logged that no such piece is left */
    uint8_t *sent_once;        /* per piece (bitfield): a request for it was accepted once */
    uint32_t n_sent_once;
    uint64_t dup_early;        /* bytes accepted for a piece already sent to another peer
                                * while some piece had never left us (sw_bt_torrent_stats) */
    uint32_t ws_banned;
    struct failed_piece failed[MAX_FAILED];
    uint8_t **pool;            /* spare piece buffers (piece_length bytes): no page faults
                                * on fresh memory for every piece */
    uint32_t n_pool, cap_pool;
    uint32_t n_failed;
    /* magnet metadata */
    uint8_t *meta;
    uint64_t meta_size;
    uint8_t *meta_got;
    char **trackers;
    uint32_t n_trackers;
    struct webseed *ws;
    uint32_t n_ws;
    /* stats */
    uint64_t *file_verified;   /* bytes verified per file */
    struct sw_rate *file_rate; /* per file, fed with file_verified */
    uint64_t verified_total;   /* bytes of pieces verified this session */
    struct sw_rate rate;       /* the torrent's, fed with verified_total */
    uint64_t up_total, down_total;
    struct sw_rate up_rate;    /* fed with up_total */
    int complete_reported;
    int jobs;                  /* worker jobs in flight */
    uint32_t n_hash_jobs;      /* pieces queued for or being hashed and written */
    int hash_throttled;        /* requests were held back for the hash backlog (pieces.c) */
    int closing;
    int in_ws_pump;
    int errored;
    uint8_t *file_error;       /* per file: stopped after a disk error */
};

struct ban {
    char key[80]; /* "ip:port" or "id:<hex>" */
};

struct sw_bt_session {
    uv_loop_t *loop;
    struct sw_bt_session_opts o;
    char *client_name, *listen_host;
    uv_tcp_t listener;
    int listening;
    uint16_t port;
    uv_timer_t timer;
    uv_timer_t reaper;         /* frees closed torrents on the next loop turn */
    uint8_t peer_id[20];
    struct sw_bt_torrent **tor;
    uint32_t n_tor;
    struct sw_bt_peer *peers;
    uint32_t next_uid;
    uint8_t *rbuf;
    int rbuf_busy;
    int has_ext;
    struct sw_bt_ext_ops ext;
    char *ext_name;
    struct { char *key; uint8_t *val; size_t len; } *extra;
    uint32_t n_extra;
    struct sw_bt_webseed_ops wso;
    int has_ws;
    struct ban *bans;
    uint32_t n_bans;
    uint64_t ticks;
    int closing;
    int handles;               /* open uv handles */
    /* private swarm (o.swarm_key set): the key, sealed-write buffers kept for reuse, and the
     * decrypted bytes of the read being handled */
    int private_swarm;
    uint8_t swarm_key[SW_SWARM_KEY_LEN];
    uint8_t *seal_pool[8];
    uint32_t n_seal_pool;
    struct sw_buf nz_plain;
    /* the message buffer budget (peer_budget.c) */
    struct sw_bt_wire_hooks hooks;
    uint64_t budget_used, budget_peak;
    uint32_t n_waiting;
    uint64_t budget_waits, budget_closed_wait, budget_closed_slow;
    struct sw_bt_peer *resuming; /* the waiting peer being fed again (may reserve) */
    uv_timer_t budget_timer;   /* feeds waiting peers on the next loop turn after room is freed */
    int budget_kick;
};

/* ------------------------------------------------------------------ small helpers */

static inline void emit(struct sw_bt_session *s, struct sw_bt_event *ev)
{
    if (s->o.on_event) s->o.on_event(s->o.ud, ev);
}

static inline void emit_simple(struct sw_bt_torrent *t, struct sw_bt_peer *p, enum sw_bt_event_type type, int32_t file,
                               uint32_t piece, int err, const char *msg)
{
    struct sw_bt_event ev = { .type = type, .torrent = t, .peer = p, .file = file, .piece = piece, .err = err, .msg = msg };
    emit(t ? t->s : p->s, &ev);
}

static inline uint32_t bits_bytes(const struct sw_bt_torrent *t)
{
    return (t->mi.n_pieces + 7) / 8;
}

static inline int peer_has(const struct sw_bt_peer *p, uint32_t piece)
{
    if (p->have_all) return 1;
    if (!p->bits || piece / 8 >= p->bits_len) return 0;
    return sw__bit_get(p->bits, piece);
}

/* session.c: helpers, the timer, the session and torrent API */
void sw__fmt_addr(const struct sockaddr *sa, char *out, size_t len);
int sw__is_banned(struct sw_bt_session *s, const char *key);
void sw__add_ban(struct sw_bt_session *s, const char *key);
void sw__id_key(const uint8_t id[20], char out[48]);
void sw__torrent_maybe_free(struct sw_bt_torrent *t);
int sw__torrent_init_meta(struct sw_bt_torrent *t, char *err, size_t err_len);
int sw__same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b);
struct sw_bt_peer *sw__evict_victim(struct sw_bt_session *s, struct sw_bt_torrent *t, const struct sw_bt_peer *except,
                                    uint64_t now);

/* peer_io.c: sending, peer lifecycle, reading, connecting, accepting, dialing */
int sw__write_owned(struct sw_bt_peer *p, uint8_t *data, size_t len);
/* A private swarm's extension message sent at once (peer_ext.c's fast path): sealed. */
int sw__send_sealed3(struct sw_bt_peer *p, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                     const uint8_t *c, size_t clen);
void sw__flush(struct sw_bt_peer *p);
void sw__abort_requests(struct sw_bt_peer *p);
void sw__peer_close(struct sw_bt_peer *p, int reason, const char *why);
void sw__on_incoming(uv_stream_t *server, int status);

/* After bytes were fed to p's wire decoder (rc: what the feed returned): closes on an error,
 * stops reading on SW_EAGAIN (the rest waits in p->held), else requests and flushes. */
void sw__peer_fed(struct sw_bt_peer *p, int rc, const uint8_t *data, size_t len);
void sw__peer_read_start(struct sw_bt_peer *p);

/* peer_budget.c: the node-wide budget of buffered message bytes, backpressure, deadlines */
void sw__budget_init(struct sw_bt_session *s);
void sw__budget_close(struct sw_bt_session *s);
void sw__budget_peer_init(struct sw_bt_peer *p);
void sw__budget_wait(struct sw_bt_peer *p, const uint8_t *rest, size_t len);
void sw__budget_peer_closed(struct sw_bt_peer *p);
void sw__budget_tick(struct sw_bt_session *s, uint64_t now);

/* peer_msg.c: interest, requests, choking, incoming messages */
int sw__peer_useful(struct sw_bt_peer *p);
void sw__set_interest(struct sw_bt_peer *p, int want);
void sw__fill_requests(struct sw_bt_peer *p);
void sw__update_interest_all(struct sw_bt_torrent *t);
void sw__choke_round(struct sw_bt_torrent *t, int rotate_optimistic);
void sw__apply_bits(struct sw_bt_peer *p);
void sw__on_wire_event(void *ud, const struct sw_bt_wire_ev *ev);

/* peer_ext.c: BEP 10 handshake, BEP 9 metadata, BEP 11 PEX, the extension hook */
void sw__put_ext_handshake(struct sw_bt_peer *p);
void sw__on_ext_handshake(struct sw_bt_peer *p, const uint8_t *pl, size_t n);
void sw__meta_request_more(struct sw_bt_peer *p);
void sw__on_metadata_msg(struct sw_bt_peer *p, const uint8_t *pl, size_t n);
void sw__send_pex(struct sw_bt_peer *to);
void sw__on_pex_msg(struct sw_bt_peer *p, const uint8_t *pl, size_t n);

/* pieces.c: piece assembly, hashing, completion, web seeds */
int sw__all_wanted_complete(struct sw_bt_torrent *t);
/* 1 while the pieces waiting for their hash job hold HASH_BACKLOG bytes or more (at least 4
 * pieces): new requests wait, and resume when a job completes. */
int sw__hash_backlog_full(struct sw_bt_torrent *t);
void sw__check_complete(struct sw_bt_torrent *t);
void sw__start_finalize(struct sw_bt_torrent *t, uint32_t file);
void sw__broadcast_have(struct sw_bt_torrent *t, uint32_t piece);
void sw__submit_piece(struct sw_bt_torrent *t, uint32_t piece);
struct assembly *sw__assembly_get(struct sw_bt_torrent *t, uint32_t piece);
void sw__webseed_pump(struct sw_bt_torrent *t);

#endif
