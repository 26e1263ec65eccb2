/* session.c — the libuv glue of the BitTorrent engine: listening, connecting, feeding bytes
 * to the wire decoder, acting on messages (choking, requests, serving blocks from the
 * storage map, BEP 9 metadata, BEP 11 PEX, the shardswarm extension hook), hashing pieces
 * on worker threads, and progress events. The loop is the caller's; no thread of our own.
 * Not for: parsing (wire.c, metainfo.c), block choice (picker.c), files (storage.c). */
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
#define KEEPALIVE_MS 90000
#define PEX_FIRST_MS 2000
#define PEX_EVERY_MS 60000
#define RATE_WIN 5
#define MAX_BANS 1024
#define MAX_FAILED 8
#define FRESH_CHECK_MS 100   /* initial seeding: how long "a fresh piece is left" is cached */
#define REJECTED_CLEAR_S 3   /* pieces a peer refused are retried from it after this long */
#define WS_MAX_BAD 3         /* a web seed is banned after this many pieces failing SHA-1 */

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
    uint64_t meta_req_ms;
    int optimistic;
    int ext_connected_called;
    int first_read_seen;
    struct sw__mse *mse;       /* incoming encrypted (MSE) handshake in progress */
    void *userdata;
    int close_reason;
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
    uint64_t *file_hist;       /* RATE_WIN snapshots per file of file_verified */
    uint64_t up_total, up_prev, down_total;
    double up_rate;
    int complete_reported;
    int jobs;                  /* worker jobs in flight */
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
};

/* ------------------------------------------------------------------ small helpers */

static void emit(struct sw_bt_session *s, struct sw_bt_event *ev)
{
    if (s->o.on_event) s->o.on_event(s->o.ud, ev);
}

static void emit_simple(struct sw_bt_torrent *t, struct sw_bt_peer *p, enum sw_bt_event_type type, int32_t file,
                        uint32_t piece, int err, const char *msg)
{
    struct sw_bt_event ev = { .type = type, .torrent = t, .peer = p, .file = file, .piece = piece, .err = err, .msg = msg };
    emit(t ? t->s : p->s, &ev);
}

static void fmt_addr(const struct sockaddr *sa, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        uv_ip4_name(a, ip, sizeof ip);
        port = ntohs(a->sin_port);
        snprintf(out, len, "%s:%u", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(a, ip, sizeof ip);
        port = ntohs(a->sin6_port);
        snprintf(out, len, "[%s]:%u", ip, port);
    } else {
        snprintf(out, len, "?");
    }
}

static int is_banned(struct sw_bt_session *s, const char *key)
{
    for (uint32_t i = 0; i < s->n_bans; i++)
        if (!strcmp(s->bans[i].key, key)) return 1;
    return 0;
}

static void add_ban(struct sw_bt_session *s, const char *key)
{
    if (is_banned(s, key) || s->n_bans >= MAX_BANS) return;
    struct ban *nb = realloc(s->bans, (s->n_bans + 1) * sizeof *nb);
    if (!nb) return;
    s->bans = nb;
    snprintf(s->bans[s->n_bans++].key, sizeof nb->key, "%s", key);
}

static void id_key(const uint8_t id[20], char out[48])
{
    char hex[41];
    sw_hex_encode(id, 20, hex);
    snprintf(out, 48, "id:%s", hex);
}

static uint32_t bits_bytes(const struct sw_bt_torrent *t)
{
    return (t->mi.n_pieces + 7) / 8;
}

static int peer_has(const struct sw_bt_peer *p, uint32_t piece)
{
    if (p->have_all) return 1;
    if (!p->bits || piece / 8 >= p->bits_len) return 0;
    return sw__bit_get(p->bits, piece);
}

/* ------------------------------------------------------------------ sending */

struct wreq {
    uv_write_t req;
    struct sw_bt_peer *p;
    uint8_t *owned;   /* copied bytes freed on completion */
    uint32_t n_bytes;
    uint32_t n_blocks;
    uint8_t hdr[32][13];
    uv_buf_t bufs[64];
    uint8_t *scratch[32];
};

static void peer_close(struct sw_bt_peer *p, int reason, const char *why);
static void flush(struct sw_bt_peer *p);

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct sw_bt_peer *p = w->p;
    free(w->owned);
    for (uint32_t i = 0; i < w->n_blocks; i++) free(w->scratch[i]);
    free(w);
    if (status < 0) {
        if (status != UV_ECANCELED) peer_close(p, SW_EIO, uv_strerror(status));
        return;
    }
    if (p->state != P_CLOSING) flush(p);
}

/* Writes a buffer we own (transferring `data`). */
static int write_owned(struct sw_bt_peer *p, uint8_t *data, size_t len)
{
    struct wreq *w = calloc(1, sizeof *w);
    if (!w) { free(data); return SW_ENOMEM; }
    w->p = p;
    w->owned = data;
    w->bufs[0] = uv_buf_init((char *)data, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&p->tcp, w->bufs, 1, on_written);
    if (rc) { free(data); free(w); return SW_EIO; }
    p->last_send_ms = sw_time_ms();
    return 0;
}

/* Moves a whole sw_buf of messages into one write. */
static int write_buf(struct sw_bt_peer *p, struct sw_buf *b)
{
    if (!b->len) return 0;
    if (!sw_buf_ok(b)) return SW_ENOMEM;
    /* Fast path: straight into the socket when nothing is queued (keeps order: uv_try_write
     * refuses while libuv still has queued writes). */
    uv_buf_t one = uv_buf_init((char *)b->data, (unsigned)b->len);
    int n = uv_try_write((uv_stream_t *)&p->tcp, &one, 1);
    if (n > 0) {
        p->last_send_ms = sw_time_ms();
        sw_buf_consume(b, (size_t)n);
        if (!b->len) return 0;
    }
    uint8_t *data = b->data;
    size_t len = b->len;
    memset(b, 0, sizeof *b);
    return write_owned(p, data, len);
}

/* Serves queued block requests as one write of up to SW_BT_SEND_CHUNK bytes, with the
 * block bytes taken straight from the storage map (no copy). */
static int write_blocks(struct sw_bt_peer *p)
{
    struct sw_bt_torrent *t = p->t;
    struct wreq *w = calloc(1, sizeof *w);
    if (!w) return SW_ENOMEM;
    w->p = p;
    uint32_t nb = 0, bytes = 0;
    while (p->n_in && nb < 32 && bytes < SW_BT_SEND_CHUNK) {
        struct inreq r = p->in[p->in_head];
        p->in_head = (p->in_head + 1) % p->cap_in;
        p->n_in--;
        const uint8_t *data = sw_bt_storage_read(t->st, r.piece, r.begin, r.len, NULL);
        uint8_t *scratch = NULL;
        if (!data) {
            scratch = malloc(r.len);
            data = scratch ? sw_bt_storage_read(t->st, r.piece, r.begin, r.len, scratch) : NULL;
            if (!data) { free(scratch); continue; }
        }
        sw_bt_wire_piece_header(w->hdr[nb], r.piece, r.begin, r.len);
        w->bufs[2 * nb] = uv_buf_init((char *)w->hdr[nb], 13);
        w->bufs[2 * nb + 1] = uv_buf_init((char *)data, r.len);
        w->scratch[nb] = scratch;
        nb++;
        bytes += 13 + r.len;
        p->up_bytes += r.len;
        t->up_total += r.len;
    }
    w->n_blocks = nb;
    if (!nb) { free(w); return 0; }
    int rc = uv_write(&w->req, (uv_stream_t *)&p->tcp, w->bufs, 2 * nb, on_written);
    if (rc) {
        for (uint32_t i = 0; i < nb; i++) free(w->scratch[i]);
        free(w);
        return SW_EIO;
    }
    p->last_send_ms = sw_time_ms();
    return 0;
}

/* Writes what is pending, priority first, and block data only while libuv holds no
 * unwritten bytes: a priority message then waits behind at most one chunk. */
static void flush(struct sw_bt_peer *p)
{
    if (p->state == P_CLOSING || p->state == P_CONNECTING) return;
    uv_stream_t *st = (uv_stream_t *)&p->tcp;
    for (int guard = 0; guard < 64; guard++) {
        int rc = 0;
        if (p->prio.len) rc = write_buf(p, &p->prio);
        else if (p->ctrl.len) rc = write_buf(p, &p->ctrl);
        else if (p->n_in && !p->am_choking && uv_stream_get_write_queue_size(st) == 0) rc = write_blocks(p);
        else break;
        if (rc) { peer_close(p, rc, "write failed"); return; }
        if (uv_stream_get_write_queue_size(st) > 0 && !p->prio.len && !p->ctrl.len) break;
    }
}

/* ------------------------------------------------------------------ extension handshake */

static int cmp_key(const void *a, const void *b)
{
    const char *const *x = a, *const *y = b;
    return strcmp(*x, *y);
}

static void put_ext_handshake(struct sw_bt_peer *p)
{
    struct sw_bt_session *s = p->s;
    struct sw_bt_torrent *t = p->t;
    /* BEP 10 handshake: keys sorted (extra keys from the node merged in). */
    const char *keys[32 + 8];
    uint32_t nk = 0;
    static const char *const own[] = { "m", "metadata_size", "p", "reqq", "v" };
    for (uint32_t i = 0; i < SW_ARRAY_LEN(own); i++)
        if (strcmp(own[i], "metadata_size") || (t && t->has_meta)) keys[nk++] = own[i];
    for (uint32_t i = 0; i < s->n_extra && nk < SW_ARRAY_LEN(keys); i++) keys[nk++] = s->extra[i].key;
    qsort(keys, nk, sizeof keys[0], cmp_key);
    struct sw_buf b = { 0 };
    sw_benc_dict(&b);
    for (uint32_t k = 0; k < nk; k++) {
        const char *key = keys[k];
        sw_benc_cstr(&b, key);
        if (!strcmp(key, "m")) {
            const char *names[3] = { "ut_metadata", "ut_pex", s->has_ext ? s->ext_name : NULL };
            int ids[3] = { EXT_METADATA, EXT_PEX, EXT_CUSTOM };
            uint32_t nn = s->has_ext ? 3 : 2;
            /* sort the (<=3) names */
            for (uint32_t i = 0; i < nn; i++)
                for (uint32_t j = i + 1; j < nn; j++)
                    if (strcmp(names[j], names[i]) < 0) {
                        const char *tn = names[i]; names[i] = names[j]; names[j] = tn;
                        int ti = ids[i]; ids[i] = ids[j]; ids[j] = ti;
                    }
            sw_benc_dict(&b);
            for (uint32_t i = 0; i < nn; i++) { sw_benc_cstr(&b, names[i]); sw_benc_int(&b, ids[i]); }
            sw_benc_end(&b);
        } else if (!strcmp(key, "metadata_size")) {
            sw_benc_int(&b, (int64_t)t->mi.info_len);
        } else if (!strcmp(key, "p")) {
            sw_benc_int(&b, s->port);
        } else if (!strcmp(key, "reqq")) {
            sw_benc_int(&b, s->o.max_peer_queue);
        } else if (!strcmp(key, "v")) {
            sw_benc_cstr(&b, s->client_name);
        } else {
            for (uint32_t i = 0; i < s->n_extra; i++)
                if (!strcmp(s->extra[i].key, key)) sw_buf_append(&b, s->extra[i].val, s->extra[i].len);
        }
    }
    sw_benc_end(&b);
    if (sw_buf_ok(&b)) sw_bt_wire_put_extended(&p->ctrl, 0, b.data, b.len);
    sw_buf_free(&b);
}

/* ------------------------------------------------------------------ peers: lifecycle */

static void on_closed(uv_handle_t *h)
{
    struct sw_bt_peer *p = h->data;
    struct sw_bt_session *s = p->s;
    sw_bt_wire_free(&p->wire);
    sw__mse_free(p->mse);
    sw_buf_free(&p->ctrl);
    sw_buf_free(&p->prio);
    free(p->bits);
    free(p->allowed);
    free(p->rejected);
    free(p->mask);
    free(p->out);
    free(p->in);
    free(p);
    s->handles--;
}

static void abort_requests(struct sw_bt_peer *p)
{
    struct sw_bt_torrent *t = p->t;
    if (t && t->pk)
        for (uint32_t i = 0; i < p->n_out; i++) sw_bt_picker_abort(t->pk, p->out[i].piece, p->out[i].begin);
    p->n_out = 0;
}

static void peer_close(struct sw_bt_peer *p, int reason, const char *why)
{
    if (p->state == P_CLOSING) return;
    struct sw_bt_session *s = p->s;
    struct sw_bt_torrent *t = p->t;
    int was_active = p->state == P_ACTIVE;
    p->state = P_CLOSING;
    p->close_reason = reason;
    LOGD("closing connection %s: %s", p->addr_str, why ? why : sw_strerror(reason));
    abort_requests(p);
    if (t && t->served_to)
        for (uint32_t i = 0; i < t->mi.n_pieces; i++)
            if (t->served_to[i] == p->uid) t->served_to[i] = 0; /* it may not have arrived */
    if (t && t->pk && p->counted) {
        if (p->have_all) sw_bt_picker_dec_all(t->pk, NULL);
        else if (p->bits) sw_bt_picker_dec_all(t->pk, p->bits);
        p->counted = 0;
    }
    if (p->ext_connected_called && s->has_ext && s->ext.on_peer_closed) s->ext.on_peer_closed(s->ext.ud, p, reason);
    if (was_active && t) {
        struct sw_bt_event ev = { .type = SW_BT_EV_PEER_CLOSED, .torrent = t, .peer = p, .file = -1, .err = reason, .msg = why };
        emit(s, &ev);
    }
    if (p->prev) p->prev->next = p->next;
    else s->peers = p->next;
    if (p->next) p->next->prev = p->prev;
    /* p->next stays: a loop over the peers that closed p can still step past it (p is freed
     * only in the close callback, on a later loop turn). */
    uv_close((uv_handle_t *)&p->tcp, on_closed);
}

static struct sw_bt_peer *peer_new(struct sw_bt_session *s, struct sw_bt_torrent *t, int outgoing)
{
    struct sw_bt_peer *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->s = s;
    p->t = t;
    p->uid = ++s->next_uid;
    p->outgoing = outgoing;
    p->am_choking = p->peer_choking = 1;
    p->reqq = 250; /* BEP 10: libtorrent's default when a peer gives no reqq */
    struct sw_bt_wire_limits lim = { .max_ext_big = (uint32_t)SW_MIN(s->has_ext ? s->ext.max_msg_len : 0, (size_t)UINT32_MAX) };
    sw_bt_wire_init(&p->wire, &lim);
    if (s->has_ext) sw_bt_wire_allow_big_ext(&p->wire, EXT_CUSTOM);
    p->connected_ms = p->last_recv_ms = p->last_send_ms = p->last_data_ms = sw_time_ms();
    uv_tcp_init(s->loop, &p->tcp);
    p->tcp.data = p;
    s->handles++;
    p->next = s->peers;
    if (s->peers) s->peers->prev = p;
    s->peers = p;
    return p;
}

static void tune_socket(struct sw_bt_peer *p)
{
    uv_tcp_nodelay(&p->tcp, 1); /* latency: pipeline messages must not wait for Nagle */
    int sz = SOCK_BUF;
    uv_send_buffer_size((uv_handle_t *)&p->tcp, &sz);
    sz = SOCK_BUF;
    uv_recv_buffer_size((uv_handle_t *)&p->tcp, &sz);
#ifdef TCP_NOTSENT_LOWAT
    /* Keep little unsent data in the kernel: the socket turns writable again when less than
     * this is queued, so a priority message is not stuck behind megabytes of piece data
     * already handed to the kernel, while the pipe stays full. */
    uv_os_fd_t fd;
    int lowat = (int)SW_BT_SEND_CHUNK;
    if (uv_fileno((uv_handle_t *)&p->tcp, &fd) == 0) setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
#endif
}

/* ------------------------------------------------------------------ interest and requests */

static int peer_useful(struct sw_bt_peer *p)
{
    struct sw_bt_torrent *t = p->t;
    if (!t->has_meta || !t->pk || t->opts.seed_only || sw_bt_picker_left(t->pk) == 0) return 0;
    for (uint32_t i = 0; i < t->mi.n_pieces; i++)
        if (sw_bt_picker_wanted(t->pk, i) && !sw_bt_picker_have(t->pk, i) && peer_has(p, i)) return 1;
    return 0;
}

static void set_interest(struct sw_bt_peer *p, int want)
{
    if (p->am_interested == want || p->state != P_ACTIVE) return;
    p->am_interested = want;
    sw_bt_wire_put_simple(&p->ctrl, want ? SW_BT_INTERESTED : SW_BT_NOT_INTERESTED);
}

static int is_dup(void *ud, uint32_t piece, uint32_t begin)
{
    struct sw_bt_peer *p = ud;
    for (uint32_t i = 0; i < p->n_out; i++)
        if (p->out[i].piece == piece && p->out[i].begin == begin) return 1;
    return 0;
}

static void fill_requests(struct sw_bt_peer *p)
{
    struct sw_bt_torrent *t = p->t;
    if (p->state != P_ACTIVE || !t || !t->has_meta || !t->pk || t->opts.seed_only || !p->am_interested) return;
    if (p->peer_choking && !p->allowed) return;
    uint32_t cap = SW_MIN(p->s->o.max_requests, p->reqq ? p->reqq : 250);
    /* Queue depth follows the peer's rate (~2 s of data, at least 32 blocks): a fast peer
     * gets the full pipeline, a slow one does not hold blocks others could fetch sooner. */
    uint64_t by_rate = (uint64_t)(p->down_rate * 2.0) / SW_BT_BLOCK;
    uint32_t max = (uint32_t)SW_MIN((uint64_t)cap, SW_MAX(by_rate, (uint64_t)32));
    if (p->down_rate == 0 && sw_time_ms() - p->connected_ms < 3000) max = SW_MIN(cap, 64u);
    if (p->n_out >= max) return;
    if (p->cap_out < cap) {
        struct outreq *no = realloc(p->out, cap * sizeof *no);
        if (!no) return;
        p->out = no;
        p->cap_out = cap;
    }
    struct sw_bt_block blk[256];
    uint32_t want = SW_MIN(max - p->n_out, (uint32_t)SW_ARRAY_LEN(blk));
    const uint8_t *bits = p->have_all ? NULL : p->bits;
    if (!p->have_all && !p->bits) return;
    if (p->any_rejected && p->rejected) {
        uint32_t nb = bits_bytes(t);
        if (!p->mask) p->mask = malloc(nb);
        if (p->mask) {
            for (uint32_t i = 0; i < nb; i++) p->mask[i] = (uint8_t)((bits ? bits[i] : 0xff) & ~p->rejected[i]);
            bits = p->mask;
        }
    }
    uint32_t n = sw_bt_picker_pick(t->pk, bits, p->peer_choking ? p->allowed : NULL, 0, is_dup, p, blk, want);
    uint64_t now = sw_time_ms();
    for (uint32_t i = 0; i < n; i++) {
        sw_bt_wire_put_req(&p->ctrl, SW_BT_REQUEST, blk[i].piece, blk[i].begin, blk[i].len);
        p->out[p->n_out++] = (struct outreq){ blk[i].piece, blk[i].begin, blk[i].len, now };
    }
}

/* Web seeds (BEP 19): keep whole pieces in flight per URL through the registered fetcher. */
static void webseed_pump(struct sw_bt_torrent *t)
{
    struct sw_bt_session *s = t->s;
    if (!s->has_ws || t->opts.seed_only || !t->has_meta || t->closing || t->in_ws_pump) return;
    t->in_ws_pump = 1; /* a fetcher may complete synchronously: no recursion */
    for (uint32_t w = 0; w < t->n_ws; w++) {
        struct webseed *ws = &t->ws[w];
        uint32_t maxf = s->wso.max_in_flight ? s->wso.max_in_flight : 4;
        while (!ws->banned && ws->failures < 3 && ws->in_flight < maxf && sw_bt_picker_left(t->pk)) {
            struct sw_bt_block blk[1024];
            uint32_t nb = sw_bt_picker_pick(t->pk, NULL, NULL, 1, NULL, NULL, blk, 1024);
            if (!nb) break;
            ws->in_flight++;
            if (s->wso.fetch(s->wso.ud, t, ws->url, blk[0].piece) < 0) {
                ws->in_flight--;
                ws->failures++;
                for (uint32_t i = 0; i < nb; i++) sw_bt_picker_abort(t->pk, blk[i].piece, blk[i].begin);
                break;
            }
        }
    }
    t->in_ws_pump = 0;
}

static void update_interest_all(struct sw_bt_torrent *t)
{
    webseed_pump(t);
    for (struct sw_bt_peer *p = t->s->peers; p; p = p->next) {
        if (p->t != t || p->state != P_ACTIVE) continue;
        set_interest(p, peer_useful(p));
        fill_requests(p);
        flush(p);
    }
}

/* ------------------------------------------------------------------ choking */

static void set_choke(struct sw_bt_peer *p, int choke)
{
    if (p->am_choking == choke || p->state != P_ACTIVE) return;
    p->am_choking = choke;
    sw_bt_wire_put_simple(&p->ctrl, choke ? SW_BT_CHOKE : SW_BT_UNCHOKE);
    if (choke) {
        /* BEP 6: with the fast extension, a choke does not discard requests: reject them. */
        while (p->n_in) {
            struct inreq r = p->in[p->in_head];
            p->in_head = (p->in_head + 1) % p->cap_in;
            p->n_in--;
            if (p->fast) sw_bt_wire_put_req(&p->ctrl, SW_BT_REJECT, r.piece, r.begin, r.len);
        }
    }
}

static uint32_t n_unchoked(struct sw_bt_torrent *t)
{
    uint32_t n = 0;
    for (struct sw_bt_peer *p = t->s->peers; p; p = p->next) n += p->t == t && p->state == P_ACTIVE && !p->am_choking;
    return n;
}

static int cmp_rate(const void *a, const void *b)
{
    const struct sw_bt_peer *const *x = a, *const *y = b;
    const struct sw_bt_torrent *t = (*x)->t;
    int seeding = t->complete_reported || t->opts.seed_only || (t->pk && sw_bt_picker_left(t->pk) == 0);
    double rx = seeding ? (*x)->up_rate : (*x)->down_rate;
    double ry = seeding ? (*y)->up_rate : (*y)->down_rate;
    return rx < ry ? 1 : rx > ry ? -1 : 0;
}

/* Tit-for-tat (BEP 3): unchoke the peers that give us the most (when seeding: that take
 * the most), plus one optimistic unchoke rotated every 30 s; a node serving the swarm
 * allows many unchoked peers. */
static void choke_round(struct sw_bt_torrent *t, int rotate_optimistic)
{
    struct sw_bt_session *s = t->s;
    struct sw_bt_peer *cand[512];
    uint32_t n = 0;
    for (struct sw_bt_peer *p = s->peers; p && n < SW_ARRAY_LEN(cand); p = p->next)
        if (p->t == t && p->state == P_ACTIVE && p->peer_interested) cand[n++] = p;
    qsort(cand, n, sizeof cand[0], cmp_rate);
    uint32_t slots = s->o.max_unchoked;
    struct sw_bt_peer *opt = NULL;
    for (uint32_t i = 0; i < n; i++)
        if (cand[i]->optimistic) opt = cand[i];
    if (n > slots && (rotate_optimistic || !opt)) {
        if (opt) opt->optimistic = 0;
        uint32_t k = slots - 1 + (uint32_t)(sw_time_us() % (n - (slots - 1)));
        opt = cand[k];
        opt->optimistic = 1;
    }
    for (uint32_t i = 0; i < n; i++) {
        int unchoke = n <= slots || i < slots - 1 || cand[i] == opt;
        set_choke(cand[i], !unchoke);
    }
    for (struct sw_bt_peer *p = s->peers; p; p = p->next)
        if (p->t == t && p->state == P_ACTIVE && !p->peer_interested) set_choke(p, 1);
    for (struct sw_bt_peer *p = s->peers; p; p = p->next)
        if (p->t == t) flush(p);
}

/* ------------------------------------------------------------------ piece completion */

struct hash_job {
    uv_work_t req;
    struct sw_bt_torrent *t;
    uint32_t piece;
    uint8_t *buf;
    uint32_t *sender;
    uint32_t ws;               /* assembly.ws */
    int rc;
    char err[256];
};

struct final_job {
    uv_work_t req;
    struct sw_bt_torrent *t;
    uint32_t file;
    int rc;
    char err[256];
};

/* Piece buffers are recycled: a fresh malloc of a piece-sized buffer costs page faults on
 * every piece (measured: the largest kernel cost of the receive path). */
static uint8_t *buf_get(struct sw_bt_torrent *t)
{
    if (t->n_pool) return t->pool[--t->n_pool];
    return malloc(t->mi.piece_length);
}

static void buf_put(struct sw_bt_torrent *t, uint8_t *b)
{
    if (!b) return;
    if (!t->cap_pool) {
        uint32_t cap = (uint32_t)SW_MAX((uint64_t)4, (UINT64_C(64) << 20) / t->mi.piece_length);
        t->pool = calloc(cap, sizeof *t->pool);
        if (t->pool) t->cap_pool = cap;
    }
    if (t->n_pool < t->cap_pool) t->pool[t->n_pool++] = b;
    else free(b);
}

static void torrent_maybe_free(struct sw_bt_torrent *t);

static void hash_work(uv_work_t *req)
{
    struct hash_job *j = req->data;
    j->rc = sw_bt_storage_verify_write(j->t->st, j->piece, j->buf, j->err, sizeof j->err);
}

static void ban_peer_uid(struct sw_bt_torrent *t, uint32_t uid, uint32_t piece)
{
    for (struct sw_bt_peer *p = t->s->peers; p; p = p->next) {
        if (p->uid != uid) continue;
        char key[80];
        if (p->got_id) { id_key(p->peer_id, key); add_ban(t->s, key); }
        if (p->outgoing) add_ban(t->s, p->addr_str);
        LOGW("peer %s sent data failing the hash of piece %u: banned", p->addr_str, piece);
        emit_simple(t, p, SW_BT_EV_PEER_BANNED, -1, piece, SW_ECORRUPT, "sent a piece that fails its hash");
        peer_close(p, SW_ECORRUPT, "banned: bad piece data");
        return;
    }
}

static int all_wanted_complete(struct sw_bt_torrent *t)
{
    if (!t->has_meta) return 0;
    uint32_t wanted = 0;
    for (uint32_t i = 0; i < t->mi.n_files; i++) {
        if (!t->want_file[i] || t->mi.files[i].pad) continue;
        wanted++;
        if (!sw_bt_storage_file_complete(t->st, i)) return 0;
    }
    return wanted > 0; /* nothing wanted is not "complete" */
}

static void check_complete(struct sw_bt_torrent *t)
{
    if (t->complete_reported || !all_wanted_complete(t)) return;
    t->complete_reported = 1;
    emit_simple(t, NULL, SW_BT_EV_TORRENT_COMPLETE, -1, 0, 0, "every wanted file is complete");
}

static void final_work(uv_work_t *req)
{
    struct final_job *j = req->data;
    j->rc = sw_bt_storage_finalize_file(j->t->st, j->file, j->err, sizeof j->err);
}

static void final_done(uv_work_t *req, int status)
{
    struct final_job *j = req->data;
    struct sw_bt_torrent *t = j->t;
    {
        if (j->rc) {
            emit_simple(t, NULL, SW_BT_EV_ERROR, (int32_t)j->file, 0, j->rc, j->err);
        } else {
            emit_simple(t, NULL, SW_BT_EV_FILE_COMPLETE, (int32_t)j->file, 0, 0, sw_bt_storage_path(t->st, j->file));
            if (!t->closing) check_complete(t);
        }
    }
    free(j);
    (void)status;
    t->jobs--; /* only now: an event above may close the session, which must not free t yet */
    torrent_maybe_free(t);
}

static void start_finalize(struct sw_bt_torrent *t, uint32_t file)
{
    struct final_job *j = calloc(1, sizeof *j);
    if (!j) return;
    j->t = t;
    j->file = file;
    j->req.data = j;
    t->jobs++;
    uv_queue_work(t->s->loop, &j->req, final_work, final_done);
}

static void broadcast_have(struct sw_bt_torrent *t, uint32_t piece)
{
    for (struct sw_bt_peer *p = t->s->peers; p; p = p->next)
        if (p->t == t && p->state == P_ACTIVE) {
            sw_bt_wire_put_u32(&p->ctrl, SW_BT_HAVE, piece);
            flush(p);
        }
}

static void piece_verified(struct sw_bt_torrent *t, uint32_t piece)
{
    uint32_t done[64];
    int nd = sw_bt_storage_mark_have(t->st, piece, done, 64);
    sw_bt_picker_set_have(t->pk, piece);
    struct sw_bt_span sp[64];
    uint32_t ns = sw_bt_piece_spans(&t->mi, piece, 0, sw_bt_piece_size(&t->mi, piece), sp, 64);
    for (uint32_t i = 0; i < ns; i++) t->file_verified[sp[i].file] += sp[i].len;
    broadcast_have(t, piece);
    emit_simple(t, NULL, SW_BT_EV_PIECE_VERIFIED, (int32_t)(ns ? sp[0].file : 0), piece, 0, NULL);
    for (int i = 0; i < nd; i++) start_finalize(t, done[i]);
    /* Smart ban: a piece that failed earlier is now known good; whoever sent blocks that
     * differ from the good data lied. */
    for (uint32_t k = 0; k < t->n_failed; k++) {
        struct failed_piece *f = &t->failed[k];
        if (f->piece != piece) continue;
        uint32_t psz = sw_bt_piece_size(&t->mi, piece);
        uint8_t *scratch = malloc(psz);
        /* read returns the map itself when it can (zero copy), else fills scratch */
        const uint8_t *good = scratch ? sw_bt_storage_read(t->st, piece, 0, psz, scratch) : NULL;
        if (good) {
            for (uint32_t b = 0; b < f->n_blocks; b++) {
                uint32_t off = b * SW_BT_BLOCK, len = SW_MIN(SW_BT_BLOCK, psz - off);
                if (f->sender[b] && memcmp(good + off, f->buf + off, len)) ban_peer_uid(t, f->sender[b], piece);
            }
        }
        free(scratch);
        buf_put(t, f->buf);
        free(f->sender);
        t->failed[k] = t->failed[--t->n_failed];
        break;
    }
}

static void disk_error(struct sw_bt_torrent *t, uint32_t piece, int rc, const char *msg)
{
    /* Stop fetching the files this piece touches; they stay as .part (never complete). */
    struct sw_bt_span sp[64];
    uint32_t ns = sw_bt_piece_spans(&t->mi, piece, 0, sw_bt_piece_size(&t->mi, piece), sp, 64);
    for (uint32_t i = 0; i < ns; i++) {
        uint32_t f = sp[i].file;
        if (t->mi.files[f].pad || t->file_error[f]) continue;
        t->file_error[f] = 1;
        for (uint32_t q = t->mi.files[f].first_piece; q <= t->mi.files[f].last_piece; q++) sw_bt_picker_set_wanted(t->pk, q, 0);
        emit_simple(t, NULL, SW_BT_EV_ERROR, (int32_t)f, piece, rc, msg);
    }
    t->errored = 1;
}

static void webseed_bad_piece(struct sw_bt_torrent *t, struct webseed *ws, uint32_t piece)
{
    ws->bad++;
    LOGW("web seed %s: piece %u failed its SHA-1 check (%u bad)", ws->url, piece, ws->bad);
    if (ws->bad >= WS_MAX_BAD && !ws->banned) {
        ws->banned = 1;
        t->ws_banned++;
        LOGW("web seed %s banned: %u pieces failed their SHA-1 check", ws->url, ws->bad);
        if (t->s->wso.banned) t->s->wso.banned(t->s->wso.ud, t, ws->url);
    }
}

static void hash_done(uv_work_t *req, int status)
{
    struct hash_job *j = req->data;
    struct sw_bt_torrent *t = j->t;
    (void)status;
    if (!t->closing) {
        t->hashing[j->piece] = 0;
        if (j->rc == 0) {
            piece_verified(t, j->piece);
            buf_put(t, j->buf);
            free(j->sender);
        } else if (j->rc == SW_ECORRUPT) {
            sw_bt_picker_reset_piece(t->pk, j->piece);
            uint32_t nb = sw_bt_picker_blocks_in_piece(t->pk, j->piece), first = j->sender[0], single = 1;
            for (uint32_t b = 1; b < nb; b++) single &= j->sender[b] == first;
            LOGW("piece %u failed its SHA-1 check (%s); not written", j->piece, single ? "one sender" : "several senders");
            emit_simple(t, NULL, SW_BT_EV_PIECE_FAILED, -1, j->piece, SW_ECORRUPT, "hash mismatch");
            if (single && first) {
                ban_peer_uid(t, first, j->piece);
                buf_put(t, j->buf);
                free(j->sender);
            } else if (single && j->ws && j->ws <= t->n_ws) {
                /* A whole piece from one web seed: count it against that URL; the piece
                 * is picked again (from peers or other web seeds). */
                webseed_bad_piece(t, &t->ws[j->ws - 1], j->piece);
                buf_put(t, j->buf);
                free(j->sender);
            } else if (t->n_failed < MAX_FAILED) {
                t->failed[t->n_failed++] = (struct failed_piece){ j->piece, j->buf, j->sender, nb };
            } else {
                buf_put(t, j->buf);
                free(j->sender);
            }
            update_interest_all(t);
        } else {
            sw_bt_picker_reset_piece(t->pk, j->piece);
            disk_error(t, j->piece, j->rc, j->err);
            buf_put(t, j->buf);
            free(j->sender);
        }
    } else {
        buf_put(t, j->buf);
        free(j->sender);
    }
    free(j);
    if (!t->closing) webseed_pump(t);
    t->jobs--;
    torrent_maybe_free(t);
}

static void submit_piece(struct sw_bt_torrent *t, uint32_t piece)
{
    struct assembly *a = &t->as[piece];
    struct hash_job *j = calloc(1, sizeof *j);
    if (!j) return;
    j->t = t;
    j->piece = piece;
    j->buf = a->buf;
    j->sender = a->sender;
    j->ws = a->ws;
    a->buf = NULL;
    a->sender = NULL;
    a->ws = 0;
    j->req.data = j;
    t->hashing[piece] = 1;
    t->jobs++;
    uv_queue_work(t->s->loop, &j->req, hash_work, hash_done);
}

static struct assembly *assembly_get(struct sw_bt_torrent *t, uint32_t piece)
{
    struct assembly *a = &t->as[piece];
    if (!a->buf) {
        a->buf = buf_get(t);
        a->sender = calloc(sw_bt_picker_blocks_in_piece(t->pk, piece), sizeof *a->sender);
        if (!a->buf || !a->sender) {
            free(a->buf);
            free(a->sender);
            a->buf = NULL;
            a->sender = NULL;
            return NULL;
        }
    }
    return a;
}

/* ------------------------------------------------------------------ metadata (BEP 9) */

static int torrent_init_meta(struct sw_bt_torrent *t, char *err, size_t err_len);

static void meta_request_more(struct sw_bt_peer *p)
{
    struct sw_bt_torrent *t = p->t;
    if (t->has_meta || !p->ext_meta || !t->meta) return;
    uint32_t n = (uint32_t)((t->meta_size + META_PIECE - 1) / META_PIECE);
    uint64_t now = sw_time_ms();
    if (p->meta_req_ms && now - p->meta_req_ms < 5000) return;
    p->meta_req_ms = now;
    for (uint32_t i = 0; i < n; i++) {
        if (t->meta_got[i]) continue;
        struct sw_buf b = { 0 };
        sw_benc_dict(&b);
        sw_benc_cstr(&b, "msg_type");
        sw_benc_int(&b, 0);
        sw_benc_cstr(&b, "piece");
        sw_benc_int(&b, i);
        sw_benc_end(&b);
        if (sw_buf_ok(&b)) sw_bt_wire_put_extended(&p->ctrl, p->ext_meta, b.data, b.len);
        sw_buf_free(&b);
    }
}

static void on_metadata_msg(struct sw_bt_peer *p, const uint8_t *pl, size_t n)
{
    struct sw_bt_torrent *t = p->t;
    struct sw_bdoc d = { 0 };
    size_t used = 0;
    struct sw_blimits lim = { .max_nodes = 32, .max_depth = 4 };
    if (sw_bdecode(pl, n, &lim, &d, &used, NULL, 0) || d.nodes[0].type != SW_BDICT) {
        sw_bdoc_free(&d);
        peer_close(p, SW_ECORRUPT, "bad ut_metadata message");
        return;
    }
    const struct sw_bnode *mt = sw_bdict_get_type(&d, &d.nodes[0], "msg_type", SW_BINT);
    const struct sw_bnode *pc = sw_bdict_get_type(&d, &d.nodes[0], "piece", SW_BINT);
    int64_t type = mt ? mt->ival : -1, piece = pc ? pc->ival : -1;
    sw_bdoc_free(&d);
    if (type == 0) { /* request */
        struct sw_buf b = { 0 };
        sw_benc_dict(&b);
        if (t->has_meta && piece >= 0 && (uint64_t)piece * META_PIECE < t->mi.info_len) {
            size_t off = (size_t)piece * META_PIECE, len = SW_MIN((size_t)META_PIECE, t->mi.info_len - off);
            sw_benc_cstr(&b, "msg_type");
            sw_benc_int(&b, 1);
            sw_benc_cstr(&b, "piece");
            sw_benc_int(&b, piece);
            sw_benc_cstr(&b, "total_size");
            sw_benc_int(&b, (int64_t)t->mi.info_len);
            sw_benc_end(&b);
            sw_buf_append(&b, t->mi.info_raw + off, len);
        } else {
            sw_benc_cstr(&b, "msg_type");
            sw_benc_int(&b, 2);
            sw_benc_cstr(&b, "piece");
            sw_benc_int(&b, piece < 0 ? 0 : piece);
            sw_benc_end(&b);
        }
        if (sw_buf_ok(&b) && p->ext_meta) sw_bt_wire_put_extended(&p->ctrl, p->ext_meta, b.data, b.len);
        sw_buf_free(&b);
        return;
    }
    if (type != 1 || t->has_meta || !t->meta) return;
    uint32_t np = (uint32_t)((t->meta_size + META_PIECE - 1) / META_PIECE);
    if (piece < 0 || (uint64_t)piece >= np) return;
    size_t off = (size_t)piece * META_PIECE, want = SW_MIN((size_t)META_PIECE, t->meta_size - off);
    if (n - used != want) { peer_close(p, SW_ECORRUPT, "ut_metadata piece of the wrong size"); return; }
    memcpy(t->meta + off, pl + used, want);
    t->meta_got[piece] = 1;
    for (uint32_t i = 0; i < np; i++)
        if (!t->meta_got[i]) return;
    /* All pieces: BEP 9 says check the SHA-1 against the info-hash. */
    uint8_t h[20];
    sw_sha1(t->meta, t->meta_size, h);
    if (memcmp(h, t->info_hash, 20)) {
        LOGW("metadata from %s does not match the info-hash; dropping it", p->addr_str);
        memset(t->meta_got, 0, np);
        peer_close(p, SW_ECORRUPT, "bad metadata");
        return;
    }
    char err[256] = "";
    struct sw_bt_metainfo mi;
    int rc = sw_bt_metainfo_parse_info(t->meta, t->meta_size, &mi, err, sizeof err);
    if (rc) {
        emit_simple(t, NULL, SW_BT_EV_ERROR, -1, 0, rc, err);
        return;
    }
    for (uint32_t i = 0; i < t->n_trackers; i++) sw__strv_add(&mi.trackers, &mi.n_trackers, t->trackers[i], strlen(t->trackers[i]));
    t->mi = mi;
    free(t->meta);
    free(t->meta_got);
    t->meta = t->meta_got = NULL;
    rc = torrent_init_meta(t, err, sizeof err);
    if (rc) {
        emit_simple(t, NULL, SW_BT_EV_ERROR, -1, 0, rc, err);
        return;
    }
    emit_simple(t, NULL, SW_BT_EV_METADATA, -1, 0, 0, t->mi.name);
}

/* ------------------------------------------------------------------ PEX (BEP 11) */

static void send_pex(struct sw_bt_peer *to)
{
    struct sw_bt_session *s = to->s;
    struct sw_buf added = { 0 };
    uint32_t n = 0;
    for (struct sw_bt_peer *p = s->peers; p && n < 50; p = p->next) {
        if (p == to || p->t != to->t || p->state != P_ACTIVE || p->addr.ss_family != AF_INET) continue;
        const struct sockaddr_in *a = (const struct sockaddr_in *)&p->addr;
        uint16_t port = p->outgoing ? ntohs(a->sin_port) : p->listen_port;
        if (!port) continue;
        uint8_t c[6];
        memcpy(c, &a->sin_addr, 4);
        sw_put_be16(c + 4, port);
        sw_buf_append(&added, c, 6);
        n++;
    }
    if (n) {
        struct sw_buf b = { 0 };
        sw_benc_dict(&b);
        sw_benc_cstr(&b, "added");
        sw_benc_str(&b, added.data, added.len);
        sw_benc_cstr(&b, "dropped");
        sw_benc_str(&b, "", 0);
        sw_benc_end(&b);
        if (sw_buf_ok(&b)) sw_bt_wire_put_extended(&to->ctrl, to->ext_pex, b.data, b.len);
        sw_buf_free(&b);
    }
    sw_buf_free(&added);
}

static void on_pex_msg(struct sw_bt_peer *p, const uint8_t *pl, size_t n)
{
    struct sw_bdoc d = { 0 };
    struct sw_blimits lim = { .max_nodes = 64, .max_depth = 4 };
    if (sw_bdecode(pl, n, &lim, &d, NULL, NULL, 0) || d.nodes[0].type != SW_BDICT) {
        sw_bdoc_free(&d);
        return; /* PEX is a hint: ignore bad ones */
    }
    const struct sw_bnode *a = sw_bdict_get_type(&d, &d.nodes[0], "added", SW_BSTR);
    for (size_t i = 0; a && i + 6 <= a->str_len && i < 6 * 50; i += 6) {
        struct sockaddr_in sa = { .sin_family = AF_INET };
        memcpy(&sa.sin_addr, a->str + i, 4);
        sa.sin_port = htons(sw_get_be16(a->str + i + 4));
        if (sa.sin_port) sw_bt_torrent_add_peer_addr(p->t, &sa);
    }
    sw_bdoc_free(&d);
}

/* ------------------------------------------------------------------ incoming messages */

static void on_ext_handshake(struct sw_bt_peer *p, const uint8_t *pl, size_t n)
{
    struct sw_bt_session *s = p->s;
    struct sw_bt_torrent *t = p->t;
    struct sw_bdoc d = { 0 };
    struct sw_blimits lim = { .max_nodes = 4096, .max_depth = 16 };
    if (sw_bdecode(pl, n, &lim, &d, NULL, NULL, 0) || d.nodes[0].type != SW_BDICT) {
        sw_bdoc_free(&d);
        peer_close(p, SW_ECORRUPT, "bad extended handshake");
        return;
    }
    const struct sw_bnode *root = &d.nodes[0];
    const struct sw_bnode *m = sw_bdict_get_type(&d, root, "m", SW_BDICT);
    if (m) {
        /* BEP 10: an id of 0 disables an extension; ids above 255 are invalid. */
        const struct sw_bnode *v;
        if ((v = sw_bdict_get_type(&d, m, "ut_metadata", SW_BINT))) p->ext_meta = v->ival > 0 && v->ival < 256 ? (uint8_t)v->ival : 0;
        if ((v = sw_bdict_get_type(&d, m, "ut_pex", SW_BINT))) p->ext_pex = v->ival > 0 && v->ival < 256 ? (uint8_t)v->ival : 0;
        if (s->has_ext && (v = sw_bdict_get_type(&d, m, s->ext_name, SW_BINT)))
            p->ext_custom = v->ival > 0 && v->ival < 256 ? (uint8_t)v->ival : 0;
    }
    const struct sw_bnode *v = sw_bdict_get_type(&d, root, "p", SW_BINT);
    if (v && v->ival > 0 && v->ival < 65536) p->listen_port = (uint16_t)v->ival;
    v = sw_bdict_get_type(&d, root, "reqq", SW_BINT);
    if (v && v->ival > 0) p->reqq = (uint32_t)SW_MIN(v->ival, (int64_t)4096);
    v = sw_bdict_get_type(&d, root, "metadata_size", SW_BINT);
    if (v && v->ival > 0 && v->ival <= (int64_t)SW_BT_MAX_INFO_BYTES) p->meta_size = (uint64_t)v->ival;
    sw_bdoc_free(&d);
    int first = !p->ext_hs_seen;
    p->ext_hs_seen = 1;
    if (first && p->ext_pex) p->next_pex_ms = sw_time_ms() + PEX_FIRST_MS;
    if (!t->has_meta && p->meta_size && p->ext_meta) {
        if (!t->meta) {
            t->meta_size = p->meta_size;
            t->meta = malloc(t->meta_size);
            t->meta_got = calloc((t->meta_size + META_PIECE - 1) / META_PIECE, 1);
            if (!t->meta || !t->meta_got) { free(t->meta); free(t->meta_got); t->meta = t->meta_got = NULL; }
        }
        if (t->meta && t->meta_size == p->meta_size) meta_request_more(p);
    }
    if (s->has_ext && s->ext.on_handshake) s->ext.on_handshake(s->ext.ud, p, pl, n);
}

static void apply_bits(struct sw_bt_peer *p)
{
    struct sw_bt_torrent *t = p->t;
    if (!t->has_meta || !t->pk || p->counted) return;
    uint32_t nb = bits_bytes(t);
    if (p->have_all) {
        sw_bt_picker_inc_all(t->pk, NULL);
        p->n_have = t->mi.n_pieces;
    } else {
        if (!p->bits || p->bits_len < nb) {
            uint8_t *nbits = realloc(p->bits, nb);
            if (!nbits) return;
            memset(nbits + p->bits_len, 0, nb - p->bits_len);
            p->bits = nbits;
            p->bits_len = nb;
        } else if (p->bits_len > nb) {
            peer_close(p, SW_ECORRUPT, "bitfield longer than the torrent");
            return;
        }
        /* BEP 3: spare bits must be zero. */
        for (uint32_t i = t->mi.n_pieces; i < nb * 8; i++)
            if (sw__bit_get(p->bits, i)) { peer_close(p, SW_ECORRUPT, "bitfield has spare bits set"); return; }
        sw_bt_picker_inc_all(t->pk, p->bits);
        p->n_have = 0;
        for (uint32_t i = 0; i < t->mi.n_pieces; i++) p->n_have += sw__bit_get(p->bits, i);
    }
    p->counted = 1;
}

static void on_have(struct sw_bt_peer *p, uint32_t piece)
{
    struct sw_bt_torrent *t = p->t;
    if (t->has_meta && piece >= t->mi.n_pieces) { peer_close(p, SW_ECORRUPT, "have for a piece out of range"); return; }
    if (p->have_all) return;
    if (!t->has_meta && piece >= (SW_BT_MAX_INFO_BYTES / 20)) return;
    size_t need = piece / 8 + 1;
    if (need > p->bits_len) {
        uint8_t *nb = realloc(p->bits, need);
        if (!nb) return;
        memset(nb + p->bits_len, 0, need - p->bits_len);
        p->bits = nb;
        p->bits_len = need;
    }
    if (sw__bit_get(p->bits, piece)) return;
    sw__bit_set(p->bits, piece);
    if (!p->counted || !t->pk) return;
    p->n_have++;
    sw_bt_picker_inc(t->pk, piece);
    if (!p->am_interested && sw_bt_picker_wanted(t->pk, piece) && !sw_bt_picker_have(t->pk, piece)) {
        set_interest(p, 1);
        fill_requests(p);
    }
}

static void send_our_pieces(struct sw_bt_peer *p)
{
    struct sw_bt_torrent *t = p->t;
    uint32_t held = 0;
    if (t->has_meta)
        for (uint32_t i = 0; i < t->mi.n_pieces; i++) held += sw_bt_storage_has_piece(t->st, i);
    /* BEP 6: have_all / have_none replace the bitfield when both sides speak it. */
    if (p->fast && t->has_meta && held == t->mi.n_pieces) sw_bt_wire_put_simple(&p->ctrl, SW_BT_HAVE_ALL);
    else if (held) sw_bt_wire_put_bitfield(&p->ctrl, sw_bt_storage_have(t->st), t->mi.n_pieces);
    else if (p->fast) sw_bt_wire_put_simple(&p->ctrl, SW_BT_HAVE_NONE);
}

static void on_handshake(struct sw_bt_peer *p, const struct sw_bt_wire_ev *ev)
{
    struct sw_bt_session *s = p->s;
    char key[80];
    memcpy(p->peer_id, ev->peer_id, 20);
    p->got_id = 1;
    if (!memcmp(ev->peer_id, s->peer_id, 20)) { peer_close(p, SW_EINVAL, "connected to ourselves"); return; }
    id_key(ev->peer_id, key);
    if (is_banned(s, key)) { peer_close(p, SW_EPERM, "banned peer"); return; }
    if (p->outgoing) {
        if (memcmp(ev->info_hash, p->t->info_hash, 20)) { peer_close(p, SW_ECORRUPT, "info-hash mismatch"); return; }
    } else {
        p->t = sw_bt_session_find(s, ev->info_hash);
        if (!p->t || p->t->closing) { peer_close(p, SW_ENOTFOUND, "unknown info-hash"); return; }
    }
    struct sw_bt_torrent *t = p->t;
    uint32_t n = 0;
    for (struct sw_bt_peer *q = s->peers, *nx; q; q = nx) {
        nx = q->next;
        if (q == p || q->t != t || q->state != P_ACTIVE) continue;
        n++;
        if (!q->got_id || memcmp(q->peer_id, ev->peer_id, 20)) continue;
        /* Two connections to one peer (both dialled each other, e.g. after PEX). Both
         * ends must keep the same one: the one opened by the smaller peer id. */
        int keep_new = 0;
        if (p->outgoing != q->outgoing) {
            const uint8_t *init_p = p->outgoing ? s->peer_id : ev->peer_id;
            const uint8_t *init_q = q->outgoing ? s->peer_id : q->peer_id;
            keep_new = memcmp(init_p, init_q, 20) < 0;
        }
        if (!keep_new) { peer_close(p, SW_EEXIST, "already connected"); return; }
        peer_close(q, SW_EEXIST, "duplicate connection");
        n--;
    }
    if (n >= s->o.max_peers) { peer_close(p, SW_EBUSY, "too many peers"); return; }
    p->ext = (ev->reserved[5] & 0x10) != 0;  /* BEP 10 */
    p->fast = (ev->reserved[7] & 0x04) != 0; /* BEP 6 */
    if (!p->outgoing) sw_bt_wire_put_handshake(&p->ctrl, t->info_hash, s->peer_id, 1, 1);
    p->state = P_ACTIVE;
    send_our_pieces(p);
    if (p->ext) put_ext_handshake(p);
    struct sw_bt_event e = { .type = SW_BT_EV_PEER_CONNECTED, .torrent = t, .peer = p, .file = -1 };
    emit(s, &e);
    if (p->state != P_ACTIVE) return;
    if (s->has_ext && s->ext.on_peer_connected) {
        p->ext_connected_called = 1;
        s->ext.on_peer_connected(s->ext.ud, p);
    }
    flush(p);
}

/* True while we hold every wanted piece, at least two peers want data from us and some
 * piece we hold has never been uploaded by us and is held by no peer (cached for
 * FRESH_CHECK_MS: requests arrive by the thousand per second). */
static int initial_seeding(struct sw_bt_torrent *t)
{
    if (!t->pk || !t->served_to || sw_bt_picker_left(t->pk)) return 0;
    uint64_t now = sw_time_ms();
    if (t->fresh_ms && now - t->fresh_ms < FRESH_CHECK_MS) return t->fresh_any;
    t->fresh_ms = now;
    t->fresh_any = 0;
    uint32_t n_int = 0;
    for (struct sw_bt_peer *q = t->s->peers; q && n_int < 2; q = q->next)
        n_int += q->t == t && q->state == P_ACTIVE && q->peer_interested;
    if (n_int < 2) return 0;
    for (uint32_t i = 0; i < t->mi.n_pieces && !t->fresh_any; i++)
        t->fresh_any = !t->served_to[i] && sw_bt_picker_have(t->pk, i) && !sw_bt_picker_availability(t->pk, i);
    if (!t->fresh_any && !t->fresh_done) {
        t->fresh_done = 1;
        LOGI("%s: every piece has left us once (%llu bytes uploaded)", t->hex, (unsigned long long)t->up_total);
    }
    return t->fresh_any;
}

static void on_request(struct sw_bt_peer *p, const struct sw_bt_wire_ev *ev)
{
    struct sw_bt_torrent *t = p->t;
    if (!t->has_meta || ev->index >= t->mi.n_pieces || ev->length == 0 || ev->length > MAX_BLOCK_REQ ||
        (uint64_t)ev->begin + ev->length > sw_bt_piece_size(&t->mi, ev->index)) {
        peer_close(p, SW_ECORRUPT, "request out of range");
        return;
    }
    int ok = !p->am_choking && sw_bt_storage_has_piece(t->st, ev->index) && p->n_in < p->s->o.max_peer_queue;
    if (ok && p->fast && initial_seeding(t)) {
        /* Initial seeding (BEP 16 in spirit, without hiding pieces): while some piece has
         * never left us and no peer has it, our upload goes only to such pieces; a piece
         * already sent to another peer (or held by one) is rejected (BEP 6), and the
         * requester fetches it from the peers that have it. */
        uint32_t to = t->served_to[ev->index];
        if ((to && to != p->uid) || (!to && sw_bt_picker_availability(t->pk, ev->index) > 0)) ok = 0;
    }
    if (!ok) {
        if (p->fast) sw_bt_wire_put_req(&p->ctrl, SW_BT_REJECT, ev->index, ev->begin, ev->length); /* BEP 6 */
        return;
    }
    /* Counters for sw_bt_torrent_stats: a second copy of a piece (to another peer) accepted
     * while some piece has never left us is what initial seeding avoids. */
    if (!sw__bit_get(t->sent_once, ev->index)) {
        sw__bit_set(t->sent_once, ev->index);
        t->n_sent_once++;
    } else if (t->served_to[ev->index] != p->uid && t->n_sent_once < t->mi.n_pieces) {
        t->dup_early += ev->length;
    }
    if (!t->served_to[ev->index]) t->served_to[ev->index] = p->uid;
    if (p->n_in == p->cap_in) {
        uint32_t nc = p->cap_in ? p->cap_in * 2 : 64;
        struct inreq *ni = malloc(nc * sizeof *ni);
        if (!ni) return;
        for (uint32_t i = 0; i < p->n_in; i++) ni[i] = p->in[(p->in_head + i) % p->cap_in];
        free(p->in);
        p->in = ni;
        p->in_head = 0;
        p->cap_in = nc;
    }
    p->in[(p->in_head + p->n_in) % p->cap_in] = (struct inreq){ ev->index, ev->begin, ev->length };
    p->n_in++;
    if (ev->begin == 0) sw_bt_storage_prefetch(t->st, ev->index); /* a new piece: read ahead */
}

static void on_cancel(struct sw_bt_peer *p, const struct sw_bt_wire_ev *ev)
{
    for (uint32_t i = 0; i < p->n_in; i++) {
        struct inreq *r = &p->in[(p->in_head + i) % p->cap_in];
        if (r->piece == ev->index && r->begin == ev->begin && r->len == ev->length) {
            /* Remove by shifting the rest of the ring down one slot. */
            for (uint32_t k = i; k + 1 < p->n_in; k++)
                p->in[(p->in_head + k) % p->cap_in] = p->in[(p->in_head + k + 1) % p->cap_in];
            p->n_in--;
            /* BEP 6: a cancelled request is answered with a reject. */
            if (p->fast) sw_bt_wire_put_req(&p->ctrl, SW_BT_REJECT, ev->index, ev->begin, ev->length);
            return;
        }
    }
}

static int remove_out(struct sw_bt_peer *p, uint32_t piece, uint32_t begin)
{
    for (uint32_t i = 0; i < p->n_out; i++)
        if (p->out[i].piece == piece && p->out[i].begin == begin) {
            p->out[i] = p->out[--p->n_out];
            return 1;
        }
    return 0;
}

static void on_piece_data(struct sw_bt_peer *p, const struct sw_bt_wire_ev *ev)
{
    struct sw_bt_torrent *t = p->t;
    p->down_bytes += ev->frag_len;
    t->down_total += ev->frag_len;
    p->last_data_ms = sw_time_ms();
    if (!t->has_meta || ev->index >= t->mi.n_pieces || t->hashing[ev->index] || sw_bt_picker_have(t->pk, ev->index)) {
        if (ev->last) remove_out(p, ev->index, ev->block_begin);
        return;
    }
    /* Only blocks we asked for, of the size we asked. */
    if (ev->block_begin % SW_BT_BLOCK || ev->block_len > SW_BT_BLOCK ||
        (uint64_t)ev->block_begin + ev->block_len > sw_bt_piece_size(&t->mi, ev->index))
        return;
    /* Only bytes of a block we asked this peer for, and not yet received from anyone, may
     * touch the assembly buffer (unsolicited data must not overwrite good data). */
    if (!is_dup(p, ev->index, ev->block_begin) || sw_bt_picker_block_received(t->pk, ev->index, ev->block_begin)) {
        if (ev->last) remove_out(p, ev->index, ev->block_begin);
        return;
    }
    struct assembly *a = assembly_get(t, ev->index);
    if (!a) return;
    memcpy(a->buf + ev->frag_begin, ev->frag, ev->frag_len);
    if (!ev->last) return;
    remove_out(p, ev->index, ev->block_begin);
    if (!sw_bt_picker_received(t->pk, ev->index, ev->block_begin)) return;
    a->sender[ev->block_begin / SW_BT_BLOCK] = p->uid;
    if (sw_bt_picker_in_endgame(t->pk)) {
        /* Endgame: tell the other peers we no longer need this block. */
        for (struct sw_bt_peer *q = t->s->peers; q; q = q->next) {
            if (q == p || q->t != t || q->state != P_ACTIVE) continue;
            if (remove_out(q, ev->index, ev->block_begin)) {
                sw_bt_picker_abort(t->pk, ev->index, ev->block_begin);
                sw_bt_wire_put_req(&q->ctrl, SW_BT_CANCEL, ev->index, ev->block_begin, ev->block_len);
                flush(q);
            }
        }
    }
    if (sw_bt_picker_piece_full(t->pk, ev->index)) submit_piece(t, ev->index);
}

static void on_wire_event(void *ud, const struct sw_bt_wire_ev *ev)
{
    struct sw_bt_peer *p = ud;
    if (p->state == P_CLOSING) return;
    if (ev->type == SW_BT_WEV_HANDSHAKE) { on_handshake(p, ev); return; }
    if (p->state != P_ACTIVE) return;
    struct sw_bt_session *s = p->s;
    struct sw_bt_torrent *t = p->t;
    if (ev->type == SW_BT_WEV_KEEPALIVE) return;
    if (ev->type == SW_BT_WEV_PIECE_DATA) { on_piece_data(p, ev); return; }
    switch (ev->id) {
    case SW_BT_CHOKE:
        p->peer_choking = 1;
        if (!p->fast) abort_requests(p); /* BEP 3: a choke discards pending requests */
        break;
    case SW_BT_UNCHOKE:
        p->peer_choking = 0;
        fill_requests(p);
        break;
    case SW_BT_INTERESTED:
        p->peer_interested = 1;
        if (t) t->fresh_ms = 0; /* initial_seeding() counts interested peers: recompute */
        if (p->am_choking && n_unchoked(t) < s->o.max_unchoked) set_choke(p, 0); /* a free slot: at once */
        break;
    case SW_BT_NOT_INTERESTED:
        p->peer_interested = 0;
        break;
    case SW_BT_HAVE:
        on_have(p, ev->index);
        break;
    case SW_BT_BITFIELD:
    case SW_BT_HAVE_ALL:
    case SW_BT_HAVE_NONE:
        if ((ev->id != SW_BT_BITFIELD) && !p->fast) { peer_close(p, SW_ECORRUPT, "have_all/none without the fast extension"); return; }
        if (ev->id == SW_BT_BITFIELD && t->has_meta && ev->payload_len != bits_bytes(t)) {
            peer_close(p, SW_ECORRUPT, "bitfield of the wrong length");
            return;
        }
        /* BEP 3/6 want this first, but some clients send HAVEs (or have_none) before a
         * bitfield: the latest full statement replaces what we knew, merged with HAVEs. */
        if (p->counted && t->pk) {
            if (p->have_all) sw_bt_picker_dec_all(t->pk, NULL);
            else if (p->bits) sw_bt_picker_dec_all(t->pk, p->bits);
            p->counted = 0;
        }
        if (ev->id == SW_BT_HAVE_ALL) {
            p->have_all = 1;
        } else if (ev->id == SW_BT_BITFIELD && !p->have_all) {
            if (p->bits_len < ev->payload_len) {
                uint8_t *nb = realloc(p->bits, ev->payload_len);
                if (!nb) return;
                memset(nb + p->bits_len, 0, ev->payload_len - p->bits_len);
                p->bits = nb;
                p->bits_len = ev->payload_len;
            }
            for (size_t i = 0; i < ev->payload_len; i++) p->bits[i] |= ev->payload[i];
        }
        apply_bits(p);
        if (p->state == P_ACTIVE && t->has_meta) {
            set_interest(p, peer_useful(p));
            fill_requests(p);
        }
        break;
    case SW_BT_REQUEST:
        on_request(p, ev);
        break;
    case SW_BT_CANCEL:
        on_cancel(p, ev);
        break;
    case SW_BT_REJECT:
        if (!p->fast) { peer_close(p, SW_ECORRUPT, "reject without the fast extension"); return; }
        if (remove_out(p, ev->index, ev->begin) && t->pk) {
            sw_bt_picker_abort(t->pk, ev->index, ev->begin);
            /* Do not ask this peer for the piece again for a while (an initial seeder
             * rejects pieces others can give us): the picker offers it elsewhere. */
            if (!p->rejected) p->rejected = calloc(bits_bytes(t), 1);
            if (p->rejected) { sw__bit_set(p->rejected, ev->index); p->any_rejected = 1; }
            fill_requests(p);
        }
        break;
    case SW_BT_ALLOWED_FAST:
        /* BEP 6: we may request this piece even while choked. */
        if (t->has_meta && ev->index < t->mi.n_pieces) {
            if (!p->allowed) p->allowed = calloc(bits_bytes(t), 1);
            if (p->allowed) sw__bit_set(p->allowed, ev->index);
            if (p->peer_choking) fill_requests(p);
        }
        break;
    case SW_BT_EXTENDED:
        if (ev->ext_id == 0) on_ext_handshake(p, ev->payload, ev->payload_len);
        else if (ev->ext_id == EXT_PEX) on_pex_msg(p, ev->payload, ev->payload_len);
        else if (ev->ext_id == EXT_METADATA) on_metadata_msg(p, ev->payload, ev->payload_len);
        else if (ev->ext_id == EXT_CUSTOM && s->has_ext && s->ext.on_message) s->ext.on_message(s->ext.ud, p, ev->payload, ev->payload_len);
        break;
    default:
        break; /* suggest, port: hints we do not need */
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct sw_bt_peer *p = h->data;
    (void)suggested;
    /* One read buffer for the whole session: each read is consumed before the next. */
    *buf = uv_buf_init((char *)p->s->rbuf, READ_BUF);
}

/* MSE: which of our torrents has SHA1("req2", info_hash) == req2. */
static const uint8_t *mse_lookup(void *ud, const uint8_t req2[20])
{
    struct sw_bt_session *s = ud;
    for (uint32_t i = 0; i < s->n_tor; i++) {
        uint8_t h[20], buf[24];
        memcpy(buf, "req2", 4);
        memcpy(buf + 4, s->tor[i]->info_hash, 20);
        sw_sha1(buf, 24, h);
        if (!memcmp(h, req2, 20) && !s->tor[i]->closing) return s->tor[i]->info_hash;
    }
    return NULL;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct sw_bt_peer *p = st->data;
    if (n < 0) {
        peer_close(p, n == UV_EOF ? SW_ECLOSED : SW_EIO, n == UV_EOF ? "peer closed the connection" : uv_strerror((int)n));
        return;
    }
    if (n == 0 || p->state == P_CLOSING) return;
    p->last_recv_ms = sw_time_ms();
    const uint8_t *data = (const uint8_t *)buf->base;
    size_t len = (size_t)n;
    struct sw_buf plain = { 0 };
    if (!p->first_read_seen) {
        p->first_read_seen = 1;
        /* A plaintext handshake starts with 19; anything else from a dialling peer is taken
         * as an MSE handshake (clients that prefer encryption try it first). */
        if (!p->outgoing && data[0] != 19) {
            p->mse = sw__mse_new();
            if (!p->mse) { peer_close(p, SW_ENOMEM, "out of memory"); return; }
        }
    }
    if (p->mse) {
        int mrc = sw__mse_feed(p->mse, data, len, &p->ctrl, &plain, mse_lookup, p->s);
        if (mrc < 0) {
            sw_buf_free(&plain);
            peer_close(p, mrc, mrc == SW_EUNSUPPORTED ? "encrypted handshake: RC4-only stream not supported"
                                                      : "encrypted handshake failed");
            return;
        }
        flush(p);
        if (mrc == 0 || p->state == P_CLOSING) { sw_buf_free(&plain); return; }
        sw__mse_free(p->mse);
        p->mse = NULL;
        data = plain.data;
        len = plain.len;
    }
    int rc = len ? sw_bt_wire_feed(&p->wire, data, len, on_wire_event, p) : 0;
    sw_buf_free(&plain);
    if (rc && p->state != P_CLOSING) {
        LOGI("closing %s: %s", p->addr_str, p->wire.err);
        peer_close(p, rc, p->wire.err);
        return;
    }
    if (p->state == P_ACTIVE) {
        fill_requests(p);
        flush(p);
    }
}

static void start_reading(struct sw_bt_peer *p)
{
    tune_socket(p);
    uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct sw_bt_peer *p = req->data;
    if (p->state == P_CLOSING) return;
    if (status < 0) {
        peer_close(p, SW_EIO, uv_strerror(status));
        return;
    }
    p->state = P_HANDSHAKE;
    p->last_recv_ms = sw_time_ms();
    sw_bt_wire_put_handshake(&p->ctrl, p->t->info_hash, p->s->peer_id, 1, 1);
    start_reading(p);
    flush(p);
}

static void on_incoming(uv_stream_t *server, int status)
{
    struct sw_bt_session *s = server->data;
    if (status < 0 || s->closing) return;
    struct sw_bt_peer *p = peer_new(s, NULL, 0);
    if (!p) return;
    if (uv_accept(server, (uv_stream_t *)&p->tcp)) { peer_close(p, SW_EIO, "accept failed"); return; }
    uint32_t total = 0;
    for (struct sw_bt_peer *q = s->peers; q; q = q->next) total++;
    if (total > 4 * s->o.max_peers * (s->n_tor ? s->n_tor : 1) + 16) { peer_close(p, SW_EBUSY, "too many connections"); return; }
    int len = sizeof p->addr;
    uv_tcp_getpeername(&p->tcp, (struct sockaddr *)&p->addr, &len);
    fmt_addr((struct sockaddr *)&p->addr, p->addr_str, sizeof p->addr_str);
    p->state = P_HANDSHAKE;
    start_reading(p);
}

/* ------------------------------------------------------------------ timer */

static void file_progress(struct sw_bt_torrent *t, uint32_t f, struct sw_bt_progress *pr)
{
    const struct sw_bt_file *bf = &t->mi.files[f];
    memset(pr, 0, sizeof *pr);
    pr->bytes_total = bf->length;
    uint64_t done = 0;
    for (uint32_t q = bf->first_piece; bf->length && q <= bf->last_piece; q++) {
        if (!sw_bt_storage_has_piece(t->st, q)) continue;
        uint64_t ps = (uint64_t)q * t->mi.piece_length, pe = ps + sw_bt_piece_size(&t->mi, q);
        uint64_t s0 = SW_MAX(ps, bf->offset), e0 = SW_MIN(pe, bf->offset + bf->length);
        done += e0 - s0;
    }
    pr->bytes_done = done;
    pr->percent = bf->length ? 100.0 * (double)done / (double)bf->length : 100.0;
    uint64_t *h = &t->file_hist[(size_t)f * RATE_WIN];
    uint64_t oldest = h[t->s->ticks % RATE_WIN];
    uint32_t span = (uint32_t)SW_MIN(t->s->ticks, (uint64_t)RATE_WIN);
    pr->rate_bps = span ? (double)(t->file_verified[f] - oldest) / span : 0;
    pr->upload_bps = t->up_rate;
    pr->uploaded = t->up_total;
    pr->downloaded = t->down_total;
    pr->eta_s = pr->rate_bps > 0 ? (uint64_t)((double)(bf->length - done) / pr->rate_bps) : (done == bf->length ? 0 : UINT64_MAX);
    for (struct sw_bt_peer *p = t->s->peers; p; p = p->next) {
        if (p->t != t || p->state != P_ACTIVE) continue;
        int has = p->have_all;
        for (uint32_t q = bf->first_piece; !has && bf->length && q <= bf->last_piece; q++) has = peer_has(p, q);
        pr->n_peers += has;
    }
}

static void torrent_tick(struct sw_bt_torrent *t, uint64_t now)
{
    struct sw_bt_session *s = t->s;
    for (struct sw_bt_peer *p = s->peers, *nx; p; p = nx) {
        nx = p->next;
        if (p->t != t) continue;
        p->down_rate = (double)(p->down_bytes - p->down_prev);
        p->up_rate = (double)(p->up_bytes - p->up_prev);
        p->down_prev = p->down_bytes;
        p->up_prev = p->up_bytes;
        if (p->state == P_CLOSING) continue;
        if (now - p->last_recv_ms > IDLE_MS || (p->state != P_ACTIVE && now - p->connected_ms > 30000)) {
            peer_close(p, SW_ETIMEDOUT, "idle");
            continue;
        }
        if (p->state != P_ACTIVE) continue;
        /* Snubbed: requests outstanding but no block for a while: give them to others. */
        if (p->n_out && now - p->last_data_ms > SNUB_MS) {
            for (uint32_t i = 0; i < p->n_out; i++)
                sw_bt_wire_put_req(&p->ctrl, SW_BT_CANCEL, p->out[i].piece, p->out[i].begin, p->out[i].len);
            abort_requests(p);
            p->last_data_ms = now;
        }
        /* A single request left unanswered (dropped by the peer) must not hold its block
         * forever while the peer keeps sending others. */
        for (uint32_t i = 0; i < p->n_out;) {
            struct outreq *o = &p->out[i];
            if (now - o->sent_ms > REQ_TIMEOUT_MS) {
                sw_bt_wire_put_req(&p->ctrl, SW_BT_CANCEL, o->piece, o->begin, o->len);
                if (t->pk) sw_bt_picker_abort(t->pk, o->piece, o->begin);
                p->out[i] = p->out[--p->n_out];
            } else {
                i++;
            }
        }
        if (p->any_rejected && s->ticks % REJECTED_CLEAR_S == 0) {
            memset(p->rejected, 0, bits_bytes(t));
            p->any_rejected = 0;
        }
        if (now - p->last_send_ms > KEEPALIVE_MS) sw_bt_wire_put_keepalive(&p->ctrl);
        if (p->ext_pex && p->next_pex_ms && now >= p->next_pex_ms) {
            send_pex(p);
            p->next_pex_ms = now + PEX_EVERY_MS;
        }
        if (!t->has_meta) meta_request_more(p);
        else {
            set_interest(p, peer_useful(p));
            fill_requests(p);
        }
        flush(p);
    }
    t->up_rate = (double)(t->up_total - t->up_prev);
    t->up_prev = t->up_total;
    if (s->ticks % CHOKE_ROUND_S == 0) choke_round(t, s->ticks % OPTIMISTIC_S == 0);
    if (!t->has_meta) return;
    check_complete(t);
    webseed_pump(t);
    for (uint32_t f = 0; f < t->mi.n_files; f++) {
        if (!t->want_file[f] || t->mi.files[f].pad) continue;
        struct sw_bt_event ev = { .type = SW_BT_EV_PROGRESS, .torrent = t, .file = (int32_t)f };
        file_progress(t, f, &ev.progress);
        t->file_hist[(size_t)f * RATE_WIN + s->ticks % RATE_WIN] = t->file_verified[f];
        if (!sw_bt_storage_file_complete(t->st, f) || t->s->ticks % 10 == 0) emit(s, &ev);
    }
}

static void on_tick(uv_timer_t *tm)
{
    struct sw_bt_session *s = tm->data;
    uint64_t now = sw_time_ms();
    s->ticks++;
    /* Incoming connections that never completed a handshake belong to no torrent yet. */
    for (struct sw_bt_peer *p = s->peers, *nx; p; p = nx) {
        nx = p->next;
        if (!p->t && now - p->connected_ms > 30000) peer_close(p, SW_ETIMEDOUT, "no handshake");
    }
    for (uint32_t i = 0; i < s->n_tor; i++)
        if (!s->tor[i]->closing) torrent_tick(s->tor[i], now);
}

/* ------------------------------------------------------------------ session */

static void on_handle_closed(uv_handle_t *h)
{
    struct sw_bt_session *s = h->data;
    s->handles--;
}

int sw_bt_session_new(uv_loop_t *loop, const struct sw_bt_session_opts *opts, struct sw_bt_session **out,
                      char *err, size_t err_len)
{
    *out = NULL;
    struct sw_bt_session *s = calloc(1, sizeof *s);
    if (!s) return SW_ENOMEM;
    s->loop = loop;
    if (opts) s->o = *opts;
    if (!s->o.max_peers) s->o.max_peers = 64;
    if (!s->o.max_unchoked) s->o.max_unchoked = 32;
    if (!s->o.max_requests) s->o.max_requests = 256;
    if (!s->o.max_peer_queue) s->o.max_peer_queue = 512;
    s->client_name = strdup(s->o.client_name ? s->o.client_name : "shardswarm " SW_VERSION);
    s->listen_host = strdup(s->o.listen_host ? s->o.listen_host : "0.0.0.0");
    s->rbuf = malloc(READ_BUF);
    if (!s->client_name || !s->listen_host || !s->rbuf) { sw_bt_session_free(s); return SW_ENOMEM; }
    /* Azureus-style peer id: "-SW0100-" + 12 random bytes. */
    memcpy(s->peer_id, "-SW0100-", 8);
    sw_random_bytes(s->peer_id + 8, 12);
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->handles++;
    uv_timer_start(&s->timer, on_tick, TICK_MS, TICK_MS);
    uv_timer_init(loop, &s->reaper);
    s->reaper.data = s;
    s->handles++;
    if (!s->o.no_listen) {
        struct sockaddr_storage sa;
        if (uv_ip4_addr(s->listen_host, s->o.listen_port, (struct sockaddr_in *)&sa) &&
            uv_ip6_addr(s->listen_host, s->o.listen_port, (struct sockaddr_in6 *)&sa)) {
            ERR("listen address '%s' is not an IP literal", s->listen_host);
            sw_bt_session_close(s);
            *out = s;
            return SW_EINVAL;
        }
        uv_tcp_init(loop, &s->listener);
        s->listener.data = s;
        s->handles++;
        s->listening = 1;
        int rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&sa, 0);
        if (!rc) rc = uv_listen((uv_stream_t *)&s->listener, 128, on_incoming);
        if (rc) {
            ERR("cannot listen on %s:%u: %s", s->listen_host, s->o.listen_port, uv_strerror(rc));
            sw_bt_session_close(s);
            *out = s; /* the caller runs the loop to release handles, then frees */
            return SW_EIO;
        }
        struct sockaddr_storage bound;
        int len = sizeof bound;
        uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
        s->port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                                   : ((struct sockaddr_in6 *)&bound)->sin6_port);
    }
    *out = s;
    if (s->listening) {
        struct sw_bt_event ev = { .type = SW_BT_EV_LISTENING, .port = s->port, .file = -1, .msg = s->listen_host };
        emit(s, &ev);
    }
    return 0;
}

uint16_t sw_bt_session_port(const struct sw_bt_session *s)
{
    return s->port;
}

const uint8_t *sw_bt_session_peer_id(const struct sw_bt_session *s)
{
    return s->peer_id;
}

static void torrent_free(struct sw_bt_torrent *t)
{
    if (t->has_meta && t->up_total)
        LOGI("%s: uploaded %llu bytes (%.2fx the torrent)", t->hex, (unsigned long long)t->up_total,
             (double)t->up_total / (double)t->mi.total_length);
    if (t->as)
        for (uint32_t i = 0; i < t->mi.n_pieces; i++) { free(t->as[i].buf); free(t->as[i].sender); }
    for (uint32_t i = 0; i < t->n_pool; i++) free(t->pool[i]);
    free(t->pool);
    for (uint32_t k = 0; k < t->n_failed; k++) { free(t->failed[k].buf); free(t->failed[k].sender); }
    free(t->as);
    free(t->hashing);
    free(t->served_to);
    free(t->sent_once);
    sw_bt_storage_close(t->st);
    sw_bt_picker_free(t->pk);
    sw_bt_metainfo_free(&t->mi);
    free(t->want_file);
    free(t->want_pending);
    free(t->file_verified);
    free(t->file_hist);
    free(t->file_error);
    free(t->meta);
    free(t->meta_got);
    sw__strv_free(t->trackers, t->n_trackers);
    for (uint32_t i = 0; i < t->n_ws; i++) free(t->ws[i].url);
    free(t->ws);
    free(t->dir);
    free(t);
}

static void torrent_maybe_free(struct sw_bt_torrent *t)
{
    if (!t->closing || t->jobs) return;
    struct sw_bt_session *s = t->s;
    for (uint32_t i = 0; i < s->n_tor; i++)
        if (s->tor[i] == t) { s->tor[i] = s->tor[--s->n_tor]; break; }
    torrent_free(t);
}

static void on_reap(uv_timer_t *h)
{
    struct sw_bt_session *s = h->data;
    for (uint32_t i = s->n_tor; i-- > 0;) torrent_maybe_free(s->tor[i]);
    uv_close((uv_handle_t *)&s->reaper, on_handle_closed);
}

void sw_bt_session_close(struct sw_bt_session *s)
{
    if (!s || s->closing) return;
    s->closing = 1;
    while (s->peers) peer_close(s->peers, SW_ECLOSED, "session closing");
    if (s->listening) uv_close((uv_handle_t *)&s->listener, on_handle_closed);
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
    for (uint32_t i = 0; i < s->n_tor; i++) s->tor[i]->closing = 1;
    /* Torrents are freed on the next loop turn, never under a caller's feet (this may run
     * inside one of our own event callbacks). */
    uv_timer_start(&s->reaper, on_reap, 0, 0);
}

int sw_bt_session_closed(const struct sw_bt_session *s)
{
    return s->closing && s->handles == 0 && s->n_tor == 0;
}

void sw_bt_session_free(struct sw_bt_session *s)
{
    if (!s) return;
    for (uint32_t i = 0; i < s->n_tor; i++) torrent_free(s->tor[i]);
    free(s->tor);
    for (uint32_t i = 0; i < s->n_extra; i++) { free(s->extra[i].key); free(s->extra[i].val); }
    free(s->extra);
    free(s->bans);
    free(s->ext_name);
    free(s->client_name);
    free(s->listen_host);
    free(s->rbuf);
    free(s);
}

/* ------------------------------------------------------------------ torrents */

static int torrent_init_meta(struct sw_bt_torrent *t, char *err, size_t err_len)
{
    const struct sw_bt_metainfo *mi = &t->mi;
    t->has_meta = 1;
    memcpy(t->info_hash, mi->info_hash, 20);
    t->want_file = calloc(mi->n_files, 1);
    t->file_error = calloc(mi->n_files, 1);
    t->file_verified = calloc(mi->n_files, sizeof *t->file_verified);
    t->file_hist = calloc((size_t)mi->n_files * RATE_WIN, sizeof *t->file_hist);
    t->as = calloc(mi->n_pieces, sizeof *t->as);
    t->hashing = calloc(mi->n_pieces, 1);
    t->served_to = calloc(mi->n_pieces, sizeof *t->served_to);
    t->sent_once = calloc(bits_bytes(t), 1);
    t->pk = sw_bt_picker_new(mi->n_pieces, mi->piece_length, mi->total_length);
    if (!t->want_file || !t->file_error || !t->file_verified || !t->file_hist || !t->as || !t->hashing ||
        !t->served_to || !t->sent_once || !t->pk)
        return SW_ENOMEM;
    struct sw_bt_storage_opts so = { .dir = t->dir, .verify_all = t->opts.verify_all, .trust_complete = t->opts.trust_complete };
    int rc = sw_bt_storage_open(mi, &so, &t->st, err, err_len);
    if (rc) return rc;
    for (uint32_t i = 0; i < mi->n_pieces; i++)
        if (sw_bt_storage_has_piece(t->st, i)) sw_bt_picker_set_have(t->pk, i);
    for (uint32_t i = 0; i < mi->n_web_seeds; i++) {
        struct webseed *nw = realloc(t->ws, (t->n_ws + 1) * sizeof *nw);
        if (!nw) return SW_ENOMEM;
        t->ws = nw;
        t->ws[t->n_ws] = (struct webseed){ .url = strdup(mi->web_seeds[i]) };
        if (t->ws[t->n_ws].url) t->n_ws++;
    }
    if (t->opts.want_all)
        for (uint32_t f = 0; f < mi->n_files; f++) sw_bt_torrent_want_file(t, f, 1);
    for (uint32_t i = 0; i < t->n_want_pending; i++) sw_bt_torrent_want_file(t, t->want_pending[i], 1);
    /* Peers that sent bitfields before we knew the metadata. */
    for (struct sw_bt_peer *p = t->s->peers; p; p = p->next) {
        if (p->t != t || p->state != P_ACTIVE) continue;
        apply_bits(p);
        if (p->ext) put_ext_handshake(p); /* now with metadata_size */
    }
    update_interest_all(t);
    return 0;
}

static int torrent_alloc(struct sw_bt_session *s, const struct sw_bt_torrent_opts *opts, struct sw_bt_torrent **out)
{
    struct sw_bt_torrent *t = calloc(1, sizeof *t);
    if (!t) return SW_ENOMEM;
    t->s = s;
    if (opts) t->opts = *opts;
    t->dir = strdup(t->opts.dir ? t->opts.dir : "models_cache/shards");
    struct sw_bt_torrent **nt = realloc(s->tor, (s->n_tor + 1) * sizeof *nt);
    if (!t->dir || !nt) { free(t->dir); free(t); return SW_ENOMEM; }
    s->tor = nt;
    s->tor[s->n_tor++] = t;
    t->opts.dir = t->dir;
    *out = t;
    return 0;
}

static void torrent_remove_failed(struct sw_bt_torrent *t)
{
    t->closing = 1;
    torrent_maybe_free(t);
}

int sw_bt_torrent_add(struct sw_bt_session *s, const struct sw_bt_metainfo *mi, const struct sw_bt_torrent_opts *opts,
                      struct sw_bt_torrent **out, char *err, size_t err_len)
{
    *out = NULL;
    if (sw_bt_session_find(s, mi->info_hash)) { ERR("torrent %s already added", mi->info_hash_hex); return SW_EEXIST; }
    struct sw_bt_torrent *t;
    int rc = torrent_alloc(s, opts, &t);
    if (rc) return rc;
    /* Deep copy through the encoder/parser keeps one ownership rule. */
    struct sw_buf b = { 0 };
    rc = sw_bt_metainfo_encode(mi, &b);
    if (!rc) rc = sw_bt_metainfo_parse(b.data, b.len, &t->mi, err, err_len);
    sw_buf_free(&b);
    if (!rc) {
        sw_hex_encode(t->mi.info_hash, 20, t->hex);
        rc = torrent_init_meta(t, err, err_len);
    }
    if (rc) { torrent_remove_failed(t); return rc; }
    *out = t;
    return 0;
}

int sw_bt_torrent_add_magnet(struct sw_bt_session *s, const struct sw_bt_magnet *m, const struct sw_bt_torrent_opts *opts,
                             struct sw_bt_torrent **out, char *err, size_t err_len)
{
    *out = NULL;
    if (sw_bt_session_find(s, m->info_hash)) { ERR("torrent already added"); return SW_EEXIST; }
    struct sw_bt_torrent *t;
    int rc = torrent_alloc(s, opts, &t);
    if (rc) return rc;
    memcpy(t->info_hash, m->info_hash, 20);
    sw_hex_encode(t->info_hash, 20, t->hex);
    for (uint32_t i = 0; i < m->n_trackers; i++) sw__strv_add(&t->trackers, &t->n_trackers, m->trackers[i], strlen(m->trackers[i]));
    *out = t;
    for (uint32_t i = 0; i < m->n_peers; i++) {
        char host[256];
        const char *c = strrchr(m->peers[i], ':');
        if (!c || (size_t)(c - m->peers[i]) >= sizeof host) continue;
        memcpy(host, m->peers[i], (size_t)(c - m->peers[i]));
        host[c - m->peers[i]] = 0;
        long port = strtol(c + 1, NULL, 10);
        if (port > 0 && port < 65536) sw_bt_torrent_add_peer(t, host, (uint16_t)port);
    }
    return 0;
}

struct sw_bt_torrent *sw_bt_session_find(struct sw_bt_session *s, const uint8_t info_hash[20])
{
    for (uint32_t i = 0; i < s->n_tor; i++)
        if (!memcmp(s->tor[i]->info_hash, info_hash, 20) && !s->tor[i]->closing) return s->tor[i];
    return NULL;
}

const struct sw_bt_metainfo *sw_bt_torrent_metainfo(const struct sw_bt_torrent *t)
{
    return t->has_meta ? &t->mi : NULL;
}

const uint8_t *sw_bt_torrent_info_hash(const struct sw_bt_torrent *t)
{
    return t->info_hash;
}

int sw_bt_torrent_want_file(struct sw_bt_torrent *t, uint32_t file, int want)
{
    if (!t->has_meta) {
        if (!want) return 0;
        uint32_t *np = realloc(t->want_pending, (t->n_want_pending + 1) * sizeof *np);
        if (!np) return SW_ENOMEM;
        t->want_pending = np;
        t->want_pending[t->n_want_pending++] = file;
        return 0;
    }
    if (file >= t->mi.n_files) return SW_ERANGE;
    const struct sw_bt_file *bf = &t->mi.files[file];
    t->want_file[file] = (uint8_t)!!want;
    if (want && !bf->pad && !sw_bt_storage_file_complete(t->st, file)) t->complete_reported = 0;
    sw_bt_storage_want_file(t->st, file, want);
    if (!bf->pad && bf->length)
        for (uint32_t q = bf->first_piece; q <= bf->last_piece; q++) {
            /* A piece shared with another wanted file stays wanted. */
            int w = want;
            if (!w) {
                struct sw_bt_span sp[64];
                uint32_t n = sw_bt_piece_spans(&t->mi, q, 0, sw_bt_piece_size(&t->mi, q), sp, 64);
                for (uint32_t i = 0; i < n; i++) w |= t->want_file[sp[i].file] && !t->mi.files[sp[i].file].pad;
            }
            sw_bt_picker_set_wanted(t->pk, q, w && !t->file_error[file]);
        }
    if (want && !bf->pad && sw_bt_storage_file_complete(t->st, file)) {
        /* nothing to fetch */
    } else if (want && !bf->pad && bf->length == 0 && !sw_bt_storage_file_complete(t->st, file)) {
        start_finalize(t, file);
    }
    update_interest_all(t);
    /* No TORRENT_COMPLETE from here: the caller may be wanting several files in a row
     * (the next tick reports it; sw_bt_torrent_complete answers at once). */
    return 0;
}

int sw_bt_torrent_recheck_file(struct sw_bt_torrent *t, uint32_t file)
{
    if (!t->has_meta || file >= t->mi.n_files) return SW_EINVAL;
    char err[256] = "";
    int was_complete = sw_bt_storage_file_complete(t->st, file);
    int rc = sw_bt_storage_check_file(t->st, file, err, sizeof err);
    if (rc < 0) return rc;
    const struct sw_bt_file *bf = &t->mi.files[file];
    for (uint32_t q = bf->first_piece; bf->length && q <= bf->last_piece; q++) {
        if (sw_bt_storage_has_piece(t->st, q) && !sw_bt_picker_have(t->pk, q)) {
            sw_bt_picker_set_have(t->pk, q);
            broadcast_have(t, q);
        } else if (!sw_bt_storage_has_piece(t->st, q) && sw_bt_picker_have(t->pk, q)) {
            sw_bt_picker_clear_have(t->pk, q); /* corrupted on disk: fetch it again */
            sw_bt_picker_reset_piece(t->pk, q);
            t->complete_reported = 0;
        }
    }
    if (!was_complete && sw_bt_storage_file_complete(t->st, file)) {
        emit_simple(t, NULL, SW_BT_EV_FILE_COMPLETE, (int32_t)file, 0, 0, sw_bt_storage_path(t->st, file));
        check_complete(t);
    }
    update_interest_all(t);
    return rc;
}

int sw_bt_torrent_file_complete(const struct sw_bt_torrent *t, uint32_t file)
{
    return t->has_meta && sw_bt_storage_file_complete(t->st, file);
}

int sw_bt_torrent_complete(const struct sw_bt_torrent *t)
{
    return all_wanted_complete((struct sw_bt_torrent *)t);
}

int sw_bt_torrent_progress(const struct sw_bt_torrent *t, int32_t file, struct sw_bt_progress *out)
{
    memset(out, 0, sizeof *out);
    if (!t->has_meta) return SW_ESTATE;
    if (file >= 0) {
        if ((uint32_t)file >= t->mi.n_files) return SW_ERANGE;
        file_progress((struct sw_bt_torrent *)t, (uint32_t)file, out);
        return 0;
    }
    for (uint32_t f = 0; f < t->mi.n_files; f++) {
        if (!t->want_file[f] || t->mi.files[f].pad) continue;
        struct sw_bt_progress pr;
        file_progress((struct sw_bt_torrent *)t, f, &pr);
        out->bytes_done += pr.bytes_done;
        out->bytes_total += pr.bytes_total;
        out->rate_bps += pr.rate_bps;
        out->n_peers = SW_MAX(out->n_peers, pr.n_peers);
    }
    out->upload_bps = t->up_rate;
    out->uploaded = t->up_total;
    out->downloaded = t->down_total;
    out->percent = out->bytes_total ? 100.0 * (double)out->bytes_done / (double)out->bytes_total : 100.0;
    out->eta_s = out->rate_bps > 0 ? (uint64_t)((double)(out->bytes_total - out->bytes_done) / out->rate_bps)
                                   : (out->bytes_done == out->bytes_total ? 0 : UINT64_MAX);
    return 0;
}

const char *sw_bt_torrent_file_path(const struct sw_bt_torrent *t, uint32_t file)
{
    return t->has_meta ? sw_bt_storage_path(t->st, file) : NULL;
}

uint32_t sw_bt_torrent_n_peers(const struct sw_bt_torrent *t)
{
    uint32_t n = 0;
    for (struct sw_bt_peer *p = t->s->peers; p; p = p->next) n += p->t == t && p->state == P_ACTIVE;
    return n;
}

uint32_t sw_bt_torrent_peers(const struct sw_bt_torrent *t, struct sw_bt_peer **out, uint32_t max)
{
    uint32_t n = 0;
    for (struct sw_bt_peer *p = t->s->peers; p && n < max; p = p->next)
        if (p->t == t && p->state == P_ACTIVE) out[n++] = p;
    return n;
}

static struct sw_bt_peer *find_by_addr(struct sw_bt_torrent *t, const char *addr_str)
{
    for (struct sw_bt_peer *p = t->s->peers; p; p = p->next) {
        if (p->t != t || p->state == P_CLOSING) continue;
        if (!strcmp(p->addr_str, addr_str)) return p;
        /* An incoming peer whose listen port we know. */
        if (!p->outgoing && p->listen_port) {
            char a[64];
            struct sockaddr_storage ss = p->addr;
            if (ss.ss_family == AF_INET) ((struct sockaddr_in *)&ss)->sin_port = htons(p->listen_port);
            else ((struct sockaddr_in6 *)&ss)->sin6_port = htons(p->listen_port);
            fmt_addr((struct sockaddr *)&ss, a, sizeof a);
            if (!strcmp(a, addr_str)) return p;
        }
    }
    return NULL;
}

static int connect_addr(struct sw_bt_torrent *t, const struct sockaddr *sa, struct sw_bt_peer **peer_out)
{
    struct sw_bt_session *s = t->s;
    char a[64];
    fmt_addr(sa, a, sizeof a);
    if (peer_out) *peer_out = NULL;
    if (s->closing || t->closing) return SW_ECLOSED;
    if (is_banned(s, a)) return SW_EPERM;
    if (s->listening && s->port) {
        /* Don't dial our own listening socket. */
        char self[64];
        snprintf(self, sizeof self, "127.0.0.1:%u", s->port);
        if (!strcmp(a, self)) return SW_EINVAL;
    }
    struct sw_bt_peer *existing = find_by_addr(t, a);
    if (existing) {
        if (peer_out) *peer_out = existing;
        return 0;
    }
    if (sw_bt_torrent_n_peers(t) >= s->o.max_peers) return SW_EBUSY;
    struct sw_bt_peer *p = peer_new(s, t, 1);
    if (!p) return SW_ENOMEM;
    memcpy(&p->addr, sa, sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
    snprintf(p->addr_str, sizeof p->addr_str, "%s", a);
    p->state = P_CONNECTING;
    p->conn.data = p;
    int rc = uv_tcp_connect(&p->conn, &p->tcp, sa, on_connect);
    if (rc) {
        peer_close(p, SW_EIO, uv_strerror(rc));
        return SW_EIO;
    }
    if (peer_out) *peer_out = p;
    return 0;
}

int sw_bt_torrent_add_peer_addr(struct sw_bt_torrent *t, const void *sockaddr)
{
    const struct sockaddr *sa = sockaddr;
    if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) return SW_EINVAL;
    return connect_addr(t, sa, NULL);
}

static int resolve(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 0;
    /* A host name: resolved synchronously (CLI --peer; the DHT and PEX give literals). */
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) || !res) return SW_ENOTFOUND;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    if (ss->ss_family == AF_INET) ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    freeaddrinfo(res);
    return 0;
}

int sw_bt_torrent_add_peer(struct sw_bt_torrent *t, const char *host, uint16_t port)
{
    struct sockaddr_storage ss;
    int rc = resolve(host, port, &ss);
    if (rc) return rc;
    return connect_addr(t, (struct sockaddr *)&ss, NULL);
}

int sw_bt_session_connect(struct sw_bt_torrent *t, const char *host, uint16_t port, struct sw_bt_peer **peer_out)
{
    struct sockaddr_storage ss;
    int rc = resolve(host, port, &ss);
    if (rc) return rc;
    return connect_addr(t, (struct sockaddr *)&ss, peer_out);
}

/* ------------------------------------------------------------------ extension hook */

int sw_bt_session_register_ext(struct sw_bt_session *s, const struct sw_bt_ext_ops *ops)
{
    if (!ops || !ops->name || !*ops->name || strlen(ops->name) > 64) return SW_EINVAL;
    if (!strcmp(ops->name, "ut_metadata") || !strcmp(ops->name, "ut_pex")) return SW_EINVAL;
    if (s->has_ext) return SW_EEXIST;
    s->ext = *ops;
    s->ext_name = strdup(ops->name);
    if (!s->ext_name) return SW_ENOMEM;
    s->ext.name = s->ext_name;
    if (!s->ext.max_msg_len) s->ext.max_msg_len = 64u << 20;
    s->has_ext = 1;
    return 0;
}

int sw_bt_session_set_handshake_extra(struct sw_bt_session *s, const char *key, const uint8_t *value, size_t len)
{
    static const char *const reserved[] = { "m", "v", "p", "reqq", "metadata_size" };
    if (!key || !*key || strlen(key) > 64) return SW_EINVAL;
    for (uint32_t i = 0; i < SW_ARRAY_LEN(reserved); i++)
        if (!strcmp(key, reserved[i])) return SW_EINVAL;
    if (value) {
        struct sw_bdoc d = { 0 };
        int rc = sw_bdecode(value, len, NULL, &d, NULL, NULL, 0);
        sw_bdoc_free(&d);
        if (rc) return SW_EINVAL; /* must be one complete bencoded value */
    }
    uint32_t i;
    for (i = 0; i < s->n_extra; i++)
        if (!strcmp(s->extra[i].key, key)) break;
    if (!value) {
        if (i < s->n_extra) {
            free(s->extra[i].key);
            free(s->extra[i].val);
            s->extra[i] = s->extra[--s->n_extra];
        }
    } else {
        uint8_t *v = malloc(len ? len : 1);
        if (!v) return SW_ENOMEM;
        memcpy(v, value, len);
        if (i == s->n_extra) {
            if (s->n_extra >= 32) { free(v); return SW_ETOOBIG; }
            void *ne = realloc(s->extra, (s->n_extra + 1) * sizeof *s->extra);
            if (!ne) { free(v); return SW_ENOMEM; }
            s->extra = ne;
            s->extra[i].key = strdup(key);
            if (!s->extra[i].key) { free(v); return SW_ENOMEM; }
            s->extra[i].val = NULL;
            s->n_extra++;
        }
        free(s->extra[i].val);
        s->extra[i].val = v;
        s->extra[i].len = len;
    }
    /* BEP 10: a handshake may be sent again at any time to update values. */
    for (struct sw_bt_peer *p = s->peers; p; p = p->next)
        if (p->state == P_ACTIVE && p->ext) {
            put_ext_handshake(p);
            flush(p);
        }
    return 0;
}

int sw_bt_peer_send_ext2(struct sw_bt_peer *p, const void *a, size_t a_len, const void *b, size_t b_len)
{
    if (p->state != P_ACTIVE) return SW_ECLOSED;
    if (!p->ext_custom) return SW_ESTATE;
    size_t total = a_len + b_len;
    if (total + 2 > UINT32_MAX - 4 || total > p->s->ext.max_msg_len) return SW_ETOOBIG;
    uint8_t hdr[6];
    sw_bt_wire_ext_header(hdr, p->ext_custom, total);
    uv_buf_t bufs[3] = { uv_buf_init((char *)hdr, 6), uv_buf_init((char *)a, (unsigned)a_len),
                         uv_buf_init((char *)b, (unsigned)b_len) };
    size_t off = 0;
    /* Latency first: straight into the socket when nothing is ahead of us. */
    if (!p->prio.len && !p->ctrl.len) {
        int n = uv_try_write((uv_stream_t *)&p->tcp, bufs, b_len ? 3 : 2);
        if (n > 0) {
            off = (size_t)n;
            p->last_send_ms = sw_time_ms();
        }
        if (off == 6 + total) return 0;
        if (off > 0) {
            /* A partial write: the rest must go next, ahead of anything else. */
            struct sw_buf rest = { 0 };
            for (int i = 0; i < 3; i++) {
                size_t l = bufs[i].len;
                if (off >= l) { off -= l; continue; }
                sw_buf_append(&rest, bufs[i].base + off, l - off);
                off = 0;
            }
            if (!sw_buf_ok(&rest)) { sw_buf_free(&rest); peer_close(p, SW_ENOMEM, "out of memory"); return SW_ENOMEM; }
            uint8_t *d = rest.data;
            size_t l = rest.len;
            int rc = write_owned(p, d, l);
            if (rc) { peer_close(p, rc, "write failed"); return rc; }
            return 0;
        }
    }
    sw_buf_append(&p->prio, hdr, 6);
    sw_buf_append(&p->prio, a, a_len);
    if (b_len) sw_buf_append(&p->prio, b, b_len);
    if (!sw_buf_ok(&p->prio)) { peer_close(p, SW_ENOMEM, "out of memory"); return SW_ENOMEM; }
    flush(p);
    return 0;
}

int sw_bt_peer_send_ext(struct sw_bt_peer *p, const void *payload, size_t len)
{
    return sw_bt_peer_send_ext2(p, payload, len, NULL, 0);
}

int sw_bt_peer_has_ext(const struct sw_bt_peer *p)
{
    return p->ext_custom != 0;
}

const uint8_t *sw_bt_peer_id(const struct sw_bt_peer *p)
{
    return p->got_id ? p->peer_id : NULL;
}

const char *sw_bt_peer_addr(const struct sw_bt_peer *p, char *buf, size_t len)
{
    snprintf(buf, len, "%s", p->addr_str);
    return buf;
}

uint16_t sw_bt_peer_listen_port(const struct sw_bt_peer *p)
{
    if (p->listen_port) return p->listen_port;
    if (p->outgoing && p->addr.ss_family == AF_INET) return ntohs(((const struct sockaddr_in *)&p->addr)->sin_port);
    return 0;
}

struct sw_bt_torrent *sw_bt_peer_torrent(const struct sw_bt_peer *p)
{
    return p->t;
}

int sw_bt_peer_outgoing(const struct sw_bt_peer *p)
{
    return p->outgoing;
}

void sw_bt_peer_set_userdata(struct sw_bt_peer *p, void *ud)
{
    p->userdata = ud;
}

void *sw_bt_peer_userdata(const struct sw_bt_peer *p)
{
    return p->userdata;
}

void sw_bt_peer_close(struct sw_bt_peer *p)
{
    peer_close(p, SW_ECLOSED, "closed by the node");
}

/* ------------------------------------------------------------------ web seeds */

void sw_bt_torrent_stats(const struct sw_bt_torrent *t, struct sw_bt_torrent_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!t) return;
    out->uploaded = t->up_total;
    out->pieces_sent_once = t->n_sent_once;
    out->dup_before_all_sent = t->dup_early;
    out->webseeds_banned = t->ws_banned;
}

int sw_bt_session_set_webseed(struct sw_bt_session *s, const struct sw_bt_webseed_ops *ops)
{
    if (!ops || !ops->fetch) return SW_EINVAL;
    s->wso = *ops;
    s->has_ws = 1;
    return 0;
}

void sw_bt_webseed_done(struct sw_bt_torrent *t, const char *url, uint32_t piece, const uint8_t *data, size_t len,
                        int status)
{
    struct webseed *ws = NULL;
    uint32_t wsi = 0;
    for (uint32_t i = 0; i < t->n_ws; i++)
        if (!strcmp(t->ws[i].url, url)) ws = &t->ws[i], wsi = i + 1;
    if (ws && ws->in_flight) ws->in_flight--;
    if (t->closing || !t->has_meta || piece >= t->mi.n_pieces) return;
    if (status < 0 || !data || len != sw_bt_piece_size(&t->mi, piece) || t->hashing[piece] ||
        sw_bt_picker_have(t->pk, piece)) {
        if (status < 0 && ws) ws->failures++;
        if (!t->hashing[piece] && !sw_bt_picker_have(t->pk, piece)) sw_bt_picker_reset_piece(t->pk, piece);
        return;
    }
    struct assembly *a = assembly_get(t, piece);
    if (!a) return;
    if (ws) ws->failures = 0; /* a seed is given up after 3 failures in a row, not in total */
    memcpy(a->buf, data, len);
    t->down_total += len;
    uint32_t nb = sw_bt_picker_blocks_in_piece(t->pk, piece);
    for (uint32_t b = 0; b < nb; b++) {
        sw_bt_picker_received(t->pk, piece, b * SW_BT_BLOCK);
        a->sender[b] = 0; /* 0 = web seed */
    }
    a->ws = wsi; /* a SHA-1 failure counts against this URL (hash_done) */
    if (sw_bt_picker_piece_full(t->pk, piece)) submit_piece(t, piece);
}
