/* pipeline_header.c — the model's metadata for light clients: a node with no shard asks a
 * loaded node for the first bytes of its shard file (HEADER_GET / HEADER over the pipeline
 * messages), checks every piece they cover against the torrent's SHA-1 piece hashes and
 * opens the GGUF metadata in them (tokenizer, chat template). Four parts: the serving and
 * fetching state of the engine (no sockets, no clocks: pipeline.c feeds it), the pure
 * checks (span, verify, open), the node's source (its loaded shard file), and the node
 * glue of a fetch (which nodes to ask, what to accept).
 * Not for: tokenizing (infer/tok.h), moving whole shards (src/bt). */
#include "swarm/pipeline.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bt/bt.h"
#include "gguf/gguf.h"

#define MAX_TRIED 64
#define DEFAULT_WAIT_MS 60000u
#define DEFAULT_REPLY_MS 10000u
#define ROUND_PAUSE_US 1000000u  /* every candidate tried: wait this long, then a new round */
#define SERVE_PER_S 16u          /* HEADER replies per second a node sends at most */
#define WHY_CAP 1024u            /* the failure text collected over a fetch */

/* ================================================================ engine part */

struct fetch {
    struct fetch *next;
    uint64_t id;
    struct sw_pipe_fetch_ops ops;
    uint32_t max_len;
    uint64_t reply_us, give_up_us, round_at_us;
    uint64_t req;                 /* request id in flight (0: none) */
    uint8_t to[SW_NODE_ID_LEN];   /* the node asked */
    uint64_t sent_us;
    uint8_t tried[MAX_TRIED][SW_NODE_ID_LEN];
    uint32_t n_tried, n_asked;
    char why[WHY_CAP];
};

struct sw_pipe_hdr {
    struct sw_pipe_host host;
    uint8_t self[SW_NODE_ID_LEN];
    sw_pipe_header_src_fn src;
    void *src_ud;
    struct fetch *fetches;
    uint64_t window_us;           /* start of the current one-second serving window */
    uint32_t window_n;            /* replies sent in it */
    uint64_t served, bytes_sent, refused, rejected;
};

struct sw_pipe_hdr *sw__pipe_hdr_new(const struct sw_pipe_host *host, const uint8_t self[SW_NODE_ID_LEN])
{
    struct sw_pipe_hdr *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->host = *host;
    memcpy(h->self, self, SW_NODE_ID_LEN);
    return h;
}

static void fetch_unlink(struct sw_pipe_hdr *h, struct fetch *f)
{
    for (struct fetch **pp = &h->fetches; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            return;
        }
}

/* Ends a fetch: unlinked first, so that done may start another one. */
static void fetch_end(struct sw_pipe_hdr *h, struct fetch *f, int rc, const char *msg)
{
    fetch_unlink(h, f);
    if (f->ops.done) f->ops.done(f->ops.ud, rc, msg);
    free(f);
}

void sw__pipe_hdr_free(struct sw_pipe_hdr *h)
{
    if (!h) return;
    while (h->fetches) fetch_end(h, h->fetches, SW_ECLOSED, "the node is stopping");
    free(h);
}

void sw__pipe_hdr_stats(const struct sw_pipe_hdr *h, struct sw_pipe_stats *st)
{
    if (!h) return;
    st->headers_served = h->served;
    st->header_bytes_sent = h->bytes_sent;
    st->headers_refused = h->refused;
    st->header_replies_rejected = h->rejected;
}

size_t sw__pipe_hdr_expect(const struct sw_pipe_hdr *h, const uint8_t *from)
{
    size_t most = 0;
    for (const struct fetch *f = h ? h->fetches : NULL; f; f = f->next)
        if (f->req && !memcmp(f->to, from, SW_NODE_ID_LEN)) most = SW_MAX(most, (size_t)f->max_len + 64);
    return most;
}

static void why_add(struct fetch *f, const uint8_t *node, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void why_add(struct fetch *f, const uint8_t *node, const char *fmt, ...)
{
    /* Whole entries only (never a cut UTF-8 sequence), each once: rounds repeat them. */
    char entry[480], ids[16];
    int k = snprintf(entry, sizeof entry, "node %s: ", sw_node_id_short(node, ids, sizeof ids));
    if (k < 0 || (size_t)k >= sizeof entry) return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(entry + k, sizeof entry - (size_t)k, fmt, ap);
    va_end(ap);
    if (m < 0 || (size_t)(k + m) >= sizeof entry || strstr(f->why, entry)) return;
    size_t l = strlen(f->why), el = (size_t)(k + m);
    const char *more = "; \xe2\x80\xa6"; /* "; …" */
    if (l && l >= 5 && !strcmp(f->why + l - 5, more)) return; /* already full */
    if (l + 2 + el + 6 < sizeof f->why) {
        snprintf(f->why + l, sizeof f->why - l, "%s%s", l ? "; " : "", entry);
    } else if (l + 6 < sizeof f->why) {
        memcpy(f->why + l, more, 6);
    }
}

static int send_m(struct sw_pipe_hdr *h, const uint8_t *to, const struct sw_pipe_msg *m)
{
    struct sw_buf b;
    sw_buf_init(&b);
    int rc = sw_pipe_msg_encode(m, &b);
    if (!rc) rc = h->host.send(h->host.ud, to, b.data, b.len);
    sw_buf_free(&b);
    return rc;
}

/* Asks the next node, unless a request is in flight or the round pauses. */
static void fetch_ask(struct sw_pipe_hdr *h, struct fetch *f, uint64_t now_us)
{
    while (!f->req && now_us >= f->round_at_us) {
        uint8_t to[SW_NODE_ID_LEN];
        int rc = f->n_tried < MAX_TRIED ? f->ops.next(f->ops.ud, &f->tried[0][0], f->n_tried, to) : SW_ENOTFOUND;
        if (rc) {
            if (f->n_tried) { /* everyone was asked: a new round after a pause */
                f->n_tried = 0;
                f->round_at_us = now_us + ROUND_PAUSE_US;
            }
            return;
        }
        memcpy(f->tried[f->n_tried++], to, SW_NODE_ID_LEN);
        uint64_t req;
        do sw_random_bytes(&req, sizeof req);
        while (!req);
        struct sw_pipe_msg m = { .type = SW_PIPE_HEADER_GET, .session = req, .max_len = f->max_len };
        rc = send_m(h, to, &m);
        if (rc) {
            why_add(f, to, "cannot send (%s)", sw_strerror(rc));
            continue;
        }
        f->req = req;
        f->n_asked++;
        memcpy(f->to, to, SW_NODE_ID_LEN);
        f->sent_us = now_us;
        char ids[16];
        sw_log(SW_LOG_DEBUG, "PIPE", "asked node %s for its shard header", sw_node_id_short(to, ids, sizeof ids));
    }
}

int sw__pipe_hdr_fetch(struct sw_pipe_hdr *h, const struct sw_pipe_fetch_ops *ops, uint32_t max_len, uint32_t wait_ms,
                       uint32_t reply_ms, uint64_t now_us, uint64_t *id_out)
{
    if (!h || !ops || !ops->next || !ops->check || !ops->done || max_len > SW_PIPE_MAX_HEADER) return SW_EINVAL;
    struct fetch *f = calloc(1, sizeof *f);
    if (!f) return SW_ENOMEM;
    do sw_random_bytes(&f->id, sizeof f->id);
    while (!f->id);
    f->ops = *ops;
    f->max_len = max_len ? max_len : SW_PIPE_MAX_HEADER;
    f->reply_us = (uint64_t)(reply_ms ? reply_ms : DEFAULT_REPLY_MS) * 1000;
    f->give_up_us = now_us + (uint64_t)(wait_ms ? wait_ms : DEFAULT_WAIT_MS) * 1000;
    f->next = h->fetches;
    h->fetches = f;
    if (id_out) *id_out = f->id;
    fetch_ask(h, f, now_us);
    return 0;
}

int sw__pipe_hdr_cancel(struct sw_pipe_hdr *h, uint64_t id)
{
    for (struct fetch *f = h ? h->fetches : NULL; f; f = f->next)
        if (f->id == id) {
            fetch_end(h, f, SW_ECLOSED, "cancelled");
            return 0;
        }
    return SW_ENOTFOUND;
}

void sw__pipe_hdr_set_source(struct sw_pipe_hdr *h, sw_pipe_header_src_fn fn, void *ud)
{
    if (!h) return;
    h->src = fn;
    h->src_ud = ud;
}

static void refuse(struct sw_pipe_hdr *h, const uint8_t *to, uint64_t req, int code, const char *text)
{
    struct sw_pipe_msg m = { .type = SW_PIPE_ERROR, .session = req, .stage = 0xff, .code = code < 0 ? code : SW_EINVAL,
                             .text = text, .text_len = (uint16_t)SW_MIN(strlen(text), (size_t)SW_PIPE_MAX_TEXT) };
    h->refused++;
    send_m(h, to, &m);
}

/* A node asks for our shard's header. */
static void serve(struct sw_pipe_hdr *h, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us)
{
    char ids[16];
    if (!h->src) {
        refuse(h, from, m->session, SW_EUNSUPPORTED, "this node does not serve shard headers");
        return;
    }
    /* A peer asking in a loop must not make us read and send megabytes without end. */
    if (now_us - h->window_us >= 1000000u) {
        h->window_us = now_us;
        h->window_n = 0;
    }
    if (h->window_n >= SERVE_PER_S) {
        refuse(h, from, m->session, SW_EBUSY, "too many shard header requests; try again in a second");
        return;
    }
    struct sw_buf b;
    sw_buf_init(&b);
    uint32_t file = 0;
    char err[SW_PIPE_MAX_TEXT] = "";
    int rc = h->src(h->src_ud, m->max_len, &b, &file, err, sizeof err);
    if (!rc && (!b.len || b.len > m->max_len)) rc = SW_ETOOBIG;
    if (rc) {
        sw_log(SW_LOG_INFO, "PIPE", "shard header for node %s refused: %s", sw_node_id_short(from, ids, sizeof ids),
               err[0] ? err : sw_strerror(rc));
        refuse(h, from, m->session, rc, err[0] ? err : sw_strerror(rc));
        sw_buf_free(&b);
        return;
    }
    struct sw_pipe_msg r = { .type = SW_PIPE_HEADER, .session = m->session, .file = file, .data = b.data,
                             .data_len = b.len };
    rc = send_m(h, from, &r);
    if (!rc) {
        h->window_n++;
        h->served++;
        h->bytes_sent += b.len;
        sw_log(SW_LOG_INFO, "PIPE", "sent the header of torrent file %u (%zu bytes) to node %s", file, b.len,
               sw_node_id_short(from, ids, sizeof ids));
    }
    sw_buf_free(&b);
}

static struct fetch *fetch_by_req(struct sw_pipe_hdr *h, const uint8_t *from, uint64_t req)
{
    for (struct fetch *f = h->fetches; f; f = f->next)
        if (f->req && f->req == req && !memcmp(f->to, from, SW_NODE_ID_LEN)) return f;
    return NULL;
}

int sw__pipe_hdr_receive(struct sw_pipe_hdr *h, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us)
{
    if (!h) return 0;
    if (m->type == SW_PIPE_HEADER_GET) {
        serve(h, from, m, now_us);
        return 1;
    }
    if (m->type != SW_PIPE_HEADER && m->type != SW_PIPE_ERROR) return 0;
    struct fetch *f = fetch_by_req(h, from, m->session);
    if (!f) return m->type == SW_PIPE_HEADER; /* a late reply: dropped; other ERRORs are the sessions' */
    f->req = 0;
    if (m->type == SW_PIPE_ERROR) {
        why_add(f, from, "%.*s", (int)m->text_len, m->text ? m->text : "");
    } else {
        char why[400] = "";
        int rc = f->ops.check(f->ops.ud, from, m->file, m->data, m->data_len, why, sizeof why);
        if (!rc) {
            fetch_end(h, f, 0, NULL);
            return 1;
        }
        h->rejected++;
        char ids[16];
        sw_log(SW_LOG_WARN, "PIPE", "rejected the shard header from node %s: %s", sw_node_id_short(from, ids, sizeof ids),
               why[0] ? why : sw_strerror(rc));
        why_add(f, from, "%s", why[0] ? why : sw_strerror(rc));
    }
    fetch_ask(h, f, now_us);
    return 1;
}

uint64_t sw__pipe_hdr_tick(struct sw_pipe_hdr *h, uint64_t now_us)
{
    uint64_t next = UINT64_MAX;
    for (struct fetch *f = h ? h->fetches : NULL, *nx; f; f = nx) {
        nx = f->next;
        if (f->req) {
            int lost = h->host.is_live && !h->host.is_live(h->host.ud, f->to);
            if (lost || now_us - f->sent_us >= f->reply_us) {
                why_add(f, f->to, lost ? "left before it answered" : "no answer within %llu ms",
                        (unsigned long long)(f->reply_us / 1000));
                f->req = 0;
            }
        }
        if (now_us >= f->give_up_us) {
            char msg[WHY_CAP + 160];
            if (f->why[0])
                snprintf(msg, sizeof msg, "no node sent a shard header that verifies (%u asked): %s", f->n_asked, f->why);
            else
                snprintf(msg, sizeof msg, "no live node with a shard loaded answered%s",
                         f->n_asked ? "" : " (none was reachable)");
            fetch_end(h, f, SW_ETIMEDOUT, msg);
            continue;
        }
        fetch_ask(h, f, now_us);
        next = SW_MIN(next, f->give_up_us);
        if (f->req) next = SW_MIN(next, f->sent_us + f->reply_us);
        else if (f->round_at_us > now_us) next = SW_MIN(next, f->round_at_us);
    }
    return next;
}

/* ================================================================ pure checks */

uint64_t sw_shard_header_span(const struct sw_bt_metainfo *mi, uint32_t file, uint64_t header_size)
{
    if (!mi || file >= mi->n_files || !mi->piece_length) return 0;
    const struct sw_bt_file *f = &mi->files[file];
    uint64_t pl = mi->piece_length, end = f->offset + SW_MIN(header_size, f->length);
    end = (end + pl - 1) / pl * pl; /* BEP 3: pieces are checked whole */
    return SW_MIN(end - f->offset, f->length);
}

/* Every byte of [a, b) of the torrent's data belongs to a BEP 47 pad file (zeros). */
static int pad_only(const struct sw_bt_metainfo *mi, uint64_t a, uint64_t b, const char **other)
{
    for (uint32_t i = 0; i < mi->n_files && a < b; i++) {
        const struct sw_bt_file *g = &mi->files[i];
        if (!g->length || g->offset + g->length <= a || g->offset >= b) continue;
        if (!g->pad) {
            *other = g->path;
            return 0;
        }
    }
    return 1;
}

int sw_shard_header_verify(const struct sw_bt_metainfo *mi, uint32_t file, const uint8_t *bytes, size_t len,
                           uint32_t *n_pieces_out, char *msg, size_t msg_len)
{
#define VFAIL(code, ...)                                          \
    do {                                                          \
        if (msg && msg_len) snprintf(msg, msg_len, __VA_ARGS__);  \
        return code;                                              \
    } while (0)
    if (n_pieces_out) *n_pieces_out = 0;
    if (!mi || file >= mi->n_files || mi->files[file].pad || !mi->piece_length || !mi->piece_hashes)
        VFAIL(SW_EINVAL, "file %u is not a file of the torrent", file);
    const struct sw_bt_file *f = &mi->files[file];
    uint64_t pl = mi->piece_length;
    if (!bytes || !len || len > f->length)
        VFAIL(SW_ERANGE, "%zu bytes for %s, a file of %llu bytes", len, f->path, (unsigned long long)f->length);
    uint64_t end = f->offset + len;
    if (len < f->length && end % pl)
        VFAIL(SW_ERANGE, "%zu bytes of %s do not end on a piece boundary (pieces of %u bytes)", len, f->path,
              mi->piece_length);
    uint8_t *piece = NULL; /* a piece completed with pad zeros */
    uint32_t n = 0;
    int rc = 0;
    for (uint64_t p = f->offset / pl; p < mi->n_pieces && p * pl < end; p++) {
        uint64_t ps = p * pl, pe = SW_MIN(ps + pl, mi->total_length);
        const char *other = NULL;
        const uint8_t *data;
        if ((ps < f->offset && !pad_only(mi, ps, f->offset, &other)) || (pe > end && !pad_only(mi, end, pe, &other))) {
            if (msg && msg_len)
                snprintf(msg, msg_len, "piece %llu of the torrent also holds bytes of %s: the header of %s cannot be "
                         "verified on its own", (unsigned long long)p, other, f->path);
            rc = SW_EUNSUPPORTED;
            break;
        }
        if (ps >= f->offset && pe <= end) {
            data = bytes + (ps - f->offset);
        } else { /* BEP 47: pad files are zeros */
            if (!piece && !(piece = malloc(pl))) {
                rc = SW_ENOMEM;
                break;
            }
            uint64_t a = SW_MAX(ps, f->offset), b = SW_MIN(pe, end);
            memset(piece, 0, (size_t)(pe - ps));
            memcpy(piece + (a - ps), bytes + (a - f->offset), (size_t)(b - a));
            data = piece;
        }
        uint8_t hash[20];
        sw_sha1(data, (size_t)(pe - ps), hash);
        if (memcmp(hash, mi->piece_hashes + p * 20, 20)) {
            if (msg && msg_len)
                snprintf(msg, msg_len, "piece %llu (bytes %llu..%llu of %s) does not match the torrent's SHA-1",
                         (unsigned long long)p, (unsigned long long)(SW_MAX(ps, f->offset) - f->offset),
                         (unsigned long long)(SW_MIN(pe, end) - f->offset), f->path);
            rc = SW_ECORRUPT;
            break;
        }
        n++;
    }
    free(piece);
    if (!rc && n_pieces_out) *n_pieces_out = n;
    return rc;
#undef VFAIL
}

int sw_shard_header_open(uint8_t *bytes, size_t len, struct sw_gguf **out, char *err, size_t err_len)
{
    *out = NULL;
    /* GGUF v2/v3: magic "GGUF", u32 version, u64 tensor_count, u64 metadata_kv_count (LE) */
    if (!bytes || len < 24 || memcmp(bytes, "GGUF", 4)) {
        if (err && err_len) snprintf(err, err_len, "not a GGUF header (%zu bytes)", len);
        return SW_ECORRUPT;
    }
    uint32_t version = (uint32_t)bytes[4] | (uint32_t)bytes[5] << 8 | (uint32_t)bytes[6] << 16 | (uint32_t)bytes[7] << 24;
    if (version < 2) {
        if (err && err_len) snprintf(err, err_len, "GGUF version %u (2 or 3 expected)", version);
        return SW_EUNSUPPORTED;
    }
    memset(bytes + 8, 0, 8); /* no tensors: the data section is not here */
    return sw_gguf_open_mem(bytes, len, out, err, err_len);
}

void sw_shard_header_free(struct sw_shard_header *h)
{
    if (!h) return;
    sw_gguf_close(h->gguf);
    free(h->bytes);
    free(h);
}

/* ================================================================ node: the source */

int sw_pipe_node_header_source(void *ud, uint32_t max_len, struct sw_buf *out, uint32_t *file_out, char *err,
                               size_t err_len)
{
    struct sw_node *n = ud;
    int32_t shard = -1;
    uint32_t file = 0;
    const char *path = NULL;
    const struct sw_bt_metainfo *mi = sw_node_metainfo(n);
    if (!mi || sw_node_shard_file(n, &shard, &file, &path)) {
        snprintf(err, err_len, "this node has no shard loaded");
        return SW_ENOTFOUND;
    }
    /* The file is the one the node loaded (verified before loading); reading its first
     * bytes through the mmap costs the header's pages only. */
    struct sw_gguf *g = NULL;
    char gerr[256] = "";
    int rc = sw_gguf_open(path, &g, gerr, sizeof gerr);
    if (rc) {
        snprintf(err, err_len, "shard %d: %s", (int)shard, gerr[0] ? gerr : sw_strerror(rc));
        return rc;
    }
    uint64_t hs = sw_gguf_header_size(g);
    uint64_t span = sw_shard_header_span(mi, file, hs);
    if (!span || span > max_len || span > sw_gguf_file_size(g)) {
        snprintf(err, err_len, "shard %d: its GGUF header is %llu bytes (%llu in whole pieces), over the %u-byte cap",
                 (int)shard, (unsigned long long)hs, (unsigned long long)span, max_len);
        sw_gguf_close(g);
        return SW_ETOOBIG;
    }
    size_t at = out->len;
    sw_buf_append(out, sw_gguf_bytes(g), (size_t)span);
    sw_gguf_close(g);
    if (!sw_buf_ok(out)) return SW_ENOMEM;
    /* Testing only (tests/swarm/light_client_it.py): a node that lies about its header. */
    const char *forge = getenv("SW_TEST_FORGE_HEADER");
    if (forge && *forge == '1') out->data[at + (size_t)SW_MIN(hs / 2, span - 1)] ^= 0x01;
    *file_out = file;
    return 0;
}

/* ================================================================ node: a fetch */

struct nfetch {
    struct sw_node *node;
    sw_shard_header_fn fn;
    void *ud;
    uint64_t t0_us, asked_us;
    uint32_t n_asked;
    struct sw_shard_header *got;
};

/* The nearest live, directly connected node with a shard loaded (any shard: each carries
 * the whole metadata) that was not asked in this round. */
static int nf_next(void *ud, const uint8_t *tried, size_t n_tried, uint8_t id_out[SW_NODE_ID_LEN])
{
    struct nfetch *nf = ud;
    const struct sw_view *v = sw_node_view(nf->node);
    if (!v || !sw_node_metainfo(nf->node)) return SW_ENOTFOUND; /* a magnet: no metadata yet */
    const struct sw_view_node *best = NULL;
    for (size_t i = 0; i < sw_view_count(v); i++) {
        const struct sw_view_node *vn = sw_view_at(v, i);
        if (vn->self || !vn->live || !vn->direct || vn->cap.phase != SW_PHASE_LOADED || vn->cap.shard < 0) continue;
        int seen = 0;
        for (size_t k = 0; k < n_tried && !seen; k++) seen = !memcmp(tried + k * SW_NODE_ID_LEN, vn->cap.node_id, SW_NODE_ID_LEN);
        if (seen) continue;
        uint64_t ra = vn->rtt_us ? vn->rtt_us : UINT32_MAX;
        uint64_t rb = best ? (best->rtt_us ? best->rtt_us : UINT32_MAX) : 0;
        if (!best || ra < rb || (ra == rb && memcmp(vn->cap.node_id, best->cap.node_id, SW_NODE_ID_LEN) < 0)) best = vn;
    }
    if (!best) return SW_ENOTFOUND;
    memcpy(id_out, best->cap.node_id, SW_NODE_ID_LEN);
    nf->n_asked++;
    nf->asked_us = sw_time_us();
    return 0;
}

/* Never trusted before every piece matched: then the metadata must open from the bytes. */
static int nf_check(void *ud, const uint8_t from[SW_NODE_ID_LEN], uint32_t file, const uint8_t *bytes, size_t len,
                    char *why, size_t why_len)
{
    struct nfetch *nf = ud;
    const struct sw_bt_metainfo *mi = sw_node_metainfo(nf->node);
    if (!mi) {
        snprintf(why, why_len, "no metadata to check against");
        return SW_ESTATE;
    }
    uint32_t n_pieces = 0;
    int rc = sw_shard_header_verify(mi, file, bytes, len, &n_pieces, why, why_len);
    if (rc) return rc;
    struct sw_shard_header *h = calloc(1, sizeof *h);
    if (!h || !(h->bytes = malloc(len))) {
        free(h);
        snprintf(why, why_len, "out of memory");
        return SW_ENOMEM;
    }
    memcpy(h->bytes, bytes, len);
    h->len = len;
    char err[256] = "";
    rc = sw_shard_header_open(h->bytes, len, &h->gguf, err, sizeof err);
    if (rc) {
        snprintf(why, why_len, "%zu verified bytes of %s hold no whole GGUF metadata: %s", len, mi->files[file].path, err);
        sw_shard_header_free(h);
        return rc;
    }
    memcpy(h->node, from, SW_NODE_ID_LEN);
    h->file = file;
    h->shard = mi->files[file].shard_index;
    h->n_pieces = n_pieces;
    uint64_t now = sw_time_us();
    h->elapsed_us = now - nf->t0_us;
    h->reply_us = now - nf->asked_us;
    h->n_asked = nf->n_asked;
    nf->got = h;
    return 0;
}

static void nf_done(void *ud, int rc, const char *msg)
{
    struct nfetch *nf = ud;
    struct sw_shard_header *h = nf->got;
    if (rc) {
        sw_shard_header_free(h);
        h = NULL;
    }
    if (nf->fn) nf->fn(nf->ud, rc, h, msg);
    else sw_shard_header_free(h);
    free(nf);
}

int sw_pipe_node_fetch_header(struct sw_pipe_node *pn, uint32_t wait_ms, sw_shard_header_fn fn, void *ud,
                              uint64_t *id_out)
{
    struct sw_pipe *p = sw_pipe_node_engine(pn);
    struct sw_node *n = sw_pipe_node_node(pn);
    if (!p || !n || !fn) return SW_EINVAL;
    struct nfetch *nf = calloc(1, sizeof *nf);
    if (!nf) return SW_ENOMEM;
    nf->node = n;
    nf->fn = fn;
    nf->ud = ud;
    nf->t0_us = sw_time_us();
    struct sw_pipe_fetch_ops ops = { nf_next, nf_check, nf_done, nf };
    int rc = sw_pipe_fetch_header(p, &ops, 0, wait_ms, 0, nf->t0_us, id_out);
    if (rc) free(nf);
    return rc;
}

int sw_pipe_node_fetch_cancel(struct sw_pipe_node *pn, uint64_t id)
{
    return sw_pipe_fetch_cancel(sw_pipe_node_engine(pn), id);
}
