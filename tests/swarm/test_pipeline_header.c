/* test_pipeline_header.c — the shard header for light clients: the HEADER_GET / HEADER
 * codec (round trips, every truncation, caps, trailing bytes), the piece check of header
 * bytes (whole pieces, BEP 47 pad zeros, pieces shared with another file, a forged byte),
 * the fetch across engines on an in-memory network (an error, a silent node, a forged reply
 * rejected, the honest one accepted; giving up with the reasons; cancel; the engine freed),
 * and, with ../shared/data, the tokenizer opened from a stories260K shard's header. */
#include <stdlib.h>
#include <string.h>

#include "bt/bt.h"
#include "gguf/gguf.h"
#include "infer/infer.h"
#include "swarm/pipeline.h"
#include "test.h"

/* ================================================================ wire */

static void roundtrip(const struct sw_pipe_msg *m)
{
    struct sw_buf b;
    sw_buf_init(&b);
    CHECK_EQ_INT(sw_pipe_msg_encode(m, &b), 0);
    struct sw_pipe_msg d;
    char err[160];
    int rc = sw_pipe_msg_decode(b.data, b.len, &d, err, sizeof err);
    CHECK_MSG(rc == 0, "type %u: %s", m->type, err);
    CHECK_EQ_INT(d.type, m->type);
    CHECK_EQ_U64(d.session, m->session);
    CHECK_EQ_INT(d.max_len, m->max_len);
    CHECK_EQ_INT(d.file, m->file);
    CHECK_EQ_INT(d.data_len, m->data_len);
    if (m->data_len && d.data_len == m->data_len) CHECK_EQ_MEM(d.data, m->data, m->data_len);
    for (size_t cut = 0; cut < b.len; cut++) {
        rc = sw_pipe_msg_decode(b.data, cut, &d, err, sizeof err);
        CHECK_MSG(rc < 0, "type %u cut at %zu decoded", m->type, cut);
    }
    sw_buf_append_byte(&b, 0);
    CHECK_EQ_INT(sw_pipe_msg_decode(b.data, b.len, &d, err, sizeof err), SW_ECORRUPT);
    sw_buf_free(&b);
}

static void test_wire(void)
{
    struct sw_pipe_msg get = { .type = SW_PIPE_HEADER_GET, .session = 0x0123456789abcdefull, .max_len = 1u << 20 };
    roundtrip(&get);
    uint8_t bytes[300];
    for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (uint8_t)(i * 7 + 1);
    struct sw_pipe_msg hdr = { .type = SW_PIPE_HEADER, .session = 42, .file = 7, .data = bytes, .data_len = sizeof bytes };
    roundtrip(&hdr);
    hdr.data_len = 1;
    roundtrip(&hdr);

    /* the encoder refuses what the decoder would */
    struct sw_buf b;
    sw_buf_init(&b);
    struct sw_pipe_msg bad = get;
    bad.max_len = 0;
    CHECK_EQ_INT(sw_pipe_msg_encode(&bad, &b), SW_EINVAL);
    bad.max_len = SW_PIPE_MAX_HEADER + 1;
    CHECK_EQ_INT(sw_pipe_msg_encode(&bad, &b), SW_EINVAL);
    bad = hdr;
    bad.data_len = 0;
    CHECK_EQ_INT(sw_pipe_msg_encode(&bad, &b), SW_EINVAL);
    bad.data_len = (size_t)SW_PIPE_MAX_HEADER + 1;
    CHECK_EQ_INT(sw_pipe_msg_encode(&bad, &b), SW_EINVAL);
    CHECK_EQ_INT(b.len, 0);

    /* hand-made bodies: caps and zero lengths */
    uint8_t m[64] = { 'S', SW_PIPE_VERSION, SW_PIPE_HEADER_GET };
    struct sw_pipe_msg d;
    char err[160];
    sw_put_be32(m + 11, 0);
    CHECK_EQ_INT(sw_pipe_msg_decode(m, 15, &d, err, sizeof err), SW_ECORRUPT);
    sw_put_be32(m + 11, SW_PIPE_MAX_HEADER + 1);
    CHECK_EQ_INT(sw_pipe_msg_decode(m, 15, &d, err, sizeof err), SW_ETOOBIG);
    sw_put_be32(m + 11, SW_PIPE_MAX_HEADER);
    CHECK_EQ_INT(sw_pipe_msg_decode(m, 15, &d, err, sizeof err), 0);
    m[2] = SW_PIPE_HEADER;
    sw_put_be32(m + 11, 3);  /* file */
    sw_put_be32(m + 15, 0);  /* n_bytes */
    CHECK_EQ_INT(sw_pipe_msg_decode(m, 19, &d, err, sizeof err), SW_ECORRUPT);
    sw_put_be32(m + 15, SW_PIPE_MAX_HEADER + 1);
    CHECK_EQ_INT(sw_pipe_msg_decode(m, 19, &d, err, sizeof err), SW_ETOOBIG);
    sw_put_be32(m + 15, 0xffffffffu);
    CHECK_EQ_INT(sw_pipe_msg_decode(m, 19, &d, err, sizeof err), SW_ETOOBIG);
    sw_put_be32(m + 15, 10); /* claims more than there is */
    CHECK_EQ_INT(sw_pipe_msg_decode(m, 25, &d, err, sizeof err), SW_ECORRUPT);
    CHECK(strstr(err, "bytes") != NULL);
    CHECK_EQ_INT(sw_pipe_msg_decode(m, 29, &d, err, sizeof err), 0);
    CHECK_EQ_INT(d.file, 3);
    CHECK_EQ_INT(d.data_len, 10);
    sw_buf_free(&b);
}

/* ================================================================ piece checks */

#define PL 16384u

/* A hand-made torrent over `data` (the concatenated files, pad files included as zeros). */
struct tor {
    struct sw_bt_metainfo mi;
    struct sw_bt_file files[4];
    uint8_t *data;
    uint64_t len;
};

static void tor_make(struct tor *t, const uint64_t *lens, const int *pad, uint32_t n, uint32_t seed)
{
    memset(t, 0, sizeof *t);
    uint64_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        t->files[i].path = pad[i] ? ".pad" : (i ? "b.gguf" : "a.gguf");
        t->files[i].length = lens[i];
        t->files[i].offset = off;
        t->files[i].pad = pad[i];
        t->files[i].shard_index = pad[i] ? -1 : (int)i;
        off += lens[i];
    }
    t->len = off;
    t->data = calloc(1, (size_t)off);
    uint32_t x = seed;
    for (uint32_t i = 0; i < n; i++)
        for (uint64_t k = 0; !pad[i] && k < lens[i]; k++) {
            x = x * 1103515245u + 12345u;
            t->data[t->files[i].offset + k] = (uint8_t)(x >> 16);
        }
    t->mi.piece_length = PL;
    t->mi.total_length = off;
    t->mi.n_pieces = (uint32_t)((off + PL - 1) / PL);
    t->mi.piece_hashes = malloc((size_t)t->mi.n_pieces * 20);
    for (uint32_t p = 0; p < t->mi.n_pieces; p++)
        sw_sha1(t->data + (uint64_t)p * PL, (size_t)SW_MIN((uint64_t)PL, off - (uint64_t)p * PL), t->mi.piece_hashes + p * 20);
    t->mi.files = t->files;
    t->mi.n_files = n;
}

static void tor_free(struct tor *t)
{
    free(t->data);
    free(t->mi.piece_hashes);
}

static const uint8_t *file_bytes(const struct tor *t, uint32_t f) { return t->data + t->files[f].offset; }

static void test_span_and_verify(void)
{
    /* padded (BEP 47, as split's torrents): a.gguf 40000, pad 9152, b.gguf 20000 */
    struct tor t;
    const uint64_t lens[] = { 40000, 3 * PL - 40000, 20000 };
    const int pads[] = { 0, 1, 0 };
    tor_make(&t, lens, pads, 3, 1);
    CHECK_EQ_U64(sw_shard_header_span(&t.mi, 0, 100), PL);
    CHECK_EQ_U64(sw_shard_header_span(&t.mi, 0, PL), PL);
    CHECK_EQ_U64(sw_shard_header_span(&t.mi, 0, PL + 1), 2 * PL);
    CHECK_EQ_U64(sw_shard_header_span(&t.mi, 0, 39000), 40000); /* the file's end */
    CHECK_EQ_U64(sw_shard_header_span(&t.mi, 2, 100), PL);
    CHECK_EQ_U64(sw_shard_header_span(&t.mi, 2, 19000), 20000);
    CHECK_EQ_U64(sw_shard_header_span(&t.mi, 9, 100), 0);

    uint32_t n = 0;
    char msg[300];
    CHECK_EQ_INT(sw_shard_header_verify(&t.mi, 0, file_bytes(&t, 0), PL, &n, msg, sizeof msg), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(sw_shard_header_verify(&t.mi, 0, file_bytes(&t, 0), 2 * PL, &n, msg, sizeof msg), 0);
    CHECK_EQ_INT(n, 2);
    /* the whole file: its last piece is completed with the pad file's zeros */
    CHECK_EQ_INT(sw_shard_header_verify(&t.mi, 0, file_bytes(&t, 0), 40000, &n, msg, sizeof msg), 0);
    CHECK_EQ_INT(n, 3);
    /* b.gguf: a short last piece of the torrent */
    CHECK_EQ_INT(sw_shard_header_verify(&t.mi, 2, file_bytes(&t, 2), 20000, &n, msg, sizeof msg), 0);
    CHECK_EQ_INT(n, 2);
    /* not whole pieces, past the file, a pad file, no file */
    CHECK_EQ_INT(sw_shard_header_verify(&t.mi, 0, file_bytes(&t, 0), 20000, &n, msg, sizeof msg), SW_ERANGE);
    CHECK_MSG(strstr(msg, "piece boundary") != NULL, "%s", msg);
    CHECK_EQ_INT(sw_shard_header_verify(&t.mi, 0, file_bytes(&t, 0), 40001, &n, msg, sizeof msg), SW_ERANGE);
    CHECK_EQ_INT(sw_shard_header_verify(&t.mi, 0, file_bytes(&t, 0), 0, &n, msg, sizeof msg), SW_ERANGE);
    CHECK_EQ_INT(sw_shard_header_verify(&t.mi, 1, file_bytes(&t, 1), PL, &n, msg, sizeof msg), SW_EINVAL);
    CHECK_EQ_INT(sw_shard_header_verify(&t.mi, 3, file_bytes(&t, 0), PL, &n, msg, sizeof msg), SW_EINVAL);
    /* one forged byte in each piece, in turn */
    uint8_t *copy = malloc(40000);
    for (uint32_t p = 0; p < 3; p++) {
        memcpy(copy, file_bytes(&t, 0), 40000);
        copy[p * PL + 123] ^= 0x01;
        CHECK_EQ_INT(sw_shard_header_verify(&t.mi, 0, copy, 40000, &n, msg, sizeof msg), SW_ECORRUPT);
        char want[32];
        snprintf(want, sizeof want, "piece %u ", p);
        CHECK_MSG(strstr(msg, want) && strstr(msg, "a.gguf"), "%s", msg);
        CHECK_EQ_INT(n, 0);
    }
    free(copy);
    tor_free(&t);

    /* unpadded (a foreign tool): piece 2 holds the end of a.gguf and the start of b.gguf */
    const uint64_t lens2[] = { 40000, 20000 };
    const int pads2[] = { 0, 0 };
    tor_make(&t, lens2, pads2, 2, 2);
    CHECK_EQ_INT(sw_shard_header_verify(&t.mi, 0, file_bytes(&t, 0), 2 * PL, &n, msg, sizeof msg), 0);
    CHECK_EQ_INT(sw_shard_header_verify(&t.mi, 0, file_bytes(&t, 0), 40000, &n, msg, sizeof msg), SW_EUNSUPPORTED);
    CHECK_MSG(strstr(msg, "b.gguf") != NULL, "%s", msg);
    CHECK_EQ_INT(sw_shard_header_verify(&t.mi, 1, file_bytes(&t, 1), 20000, &n, msg, sizeof msg), SW_EUNSUPPORTED);
    CHECK_MSG(strstr(msg, "a.gguf") != NULL, "%s", msg);
    tor_free(&t);
}

/* ================================================================ the fetch across engines */

#define MAXN 6

enum role { CLIENT, HONEST, FORGER, SILENT, NO_SOURCE };

struct qmsg {
    struct qmsg *next;
    int from, to;
    uint8_t *data;
    size_t len;
};

struct fnet;
struct fnode {
    struct fnet *net;
    int idx;
    enum role role;
    uint8_t id[SW_NODE_ID_LEN];
    struct sw_pipe *pipe;
    int down;
};

struct fnet {
    struct fnode nodes[MAXN];
    int n;
    struct qmsg *qh, *qt;
    uint64_t now;
    struct tor *tor;
    uint32_t file;
    int order[MAXN];        /* the client asks in this order */
    int n_order;
    /* results */
    int done, rc, checks;
    char msg[2048];
    int accepted_from;
    uint32_t accepted_len;
};

static int fnode_of(struct fnet *net, const uint8_t *id)
{
    for (int i = 0; i < net->n; i++)
        if (!memcmp(net->nodes[i].id, id, SW_NODE_ID_LEN)) return i;
    return -1;
}

static int f_send(void *ud, const uint8_t to[SW_NODE_ID_LEN], const uint8_t *p, size_t len)
{
    struct fnode *t = ud;
    struct fnet *net = t->net;
    int k = fnode_of(net, to);
    if (k < 0 || net->nodes[k].down) return SW_ENOTFOUND;
    if (net->nodes[k].role == SILENT) return 0; /* swallowed */
    struct qmsg *m = calloc(1, sizeof *m);
    m->from = t->idx;
    m->to = k;
    m->data = malloc(len);
    memcpy(m->data, p, len);
    m->len = len;
    if (net->qt) net->qt->next = m;
    else net->qh = m;
    net->qt = m;
    return 0;
}

static int f_live(void *ud, const uint8_t id[SW_NODE_ID_LEN])
{
    struct fnode *t = ud;
    int k = fnode_of(t->net, id);
    return k >= 0 && !t->net->nodes[k].down;
}

/* The honest source sends the file's header span; the forger flips one byte of it. */
static int f_source(void *ud, uint32_t max_len, struct sw_buf *out, uint32_t *file_out, char *err, size_t err_len)
{
    struct fnode *t = ud;
    struct fnet *net = t->net;
    uint64_t span = sw_shard_header_span(&net->tor->mi, net->file, 100);
    if (span > max_len) {
        snprintf(err, err_len, "header of %llu bytes over the %u-byte cap", (unsigned long long)span, max_len);
        return SW_ETOOBIG;
    }
    size_t at = out->len;
    sw_buf_append(out, file_bytes(net->tor, net->file), (size_t)span);
    if (t->role == FORGER) out->data[at + 5] ^= 0x20;
    *file_out = net->file;
    return 0;
}

static struct fnode *fnet_add(struct fnet *net, enum role role)
{
    struct fnode *t = &net->nodes[net->n];
    memset(t, 0, sizeof *t);
    t->net = net;
    t->idx = net->n++;
    t->role = role;
    t->id[0] = (uint8_t)(0x10 * (t->idx + 1));
    t->id[31] = (uint8_t)t->idx;
    struct sw_pipe_config cfg = { .n_shards = 1 };
    memcpy(cfg.self_id, t->id, SW_NODE_ID_LEN);
    cfg.host.send = f_send;
    cfg.host.is_live = f_live;
    cfg.host.ud = t;
    CHECK_EQ_INT(sw_pipe_new(&cfg, &t->pipe), 0);
    if (role == HONEST || role == FORGER || role == SILENT) sw_pipe_set_header_source(t->pipe, f_source, t);
    return t;
}

static int c_next(void *ud, const uint8_t *tried, size_t n_tried, uint8_t id_out[SW_NODE_ID_LEN])
{
    struct fnet *net = ud;
    for (int i = 0; i < net->n_order; i++) {
        struct fnode *t = &net->nodes[net->order[i]];
        int seen = 0;
        for (size_t k = 0; k < n_tried; k++) seen |= !memcmp(tried + k * SW_NODE_ID_LEN, t->id, SW_NODE_ID_LEN);
        if (seen || t->down) continue;
        memcpy(id_out, t->id, SW_NODE_ID_LEN);
        return 0;
    }
    return SW_ENOTFOUND;
}

static int c_check(void *ud, const uint8_t from[SW_NODE_ID_LEN], uint32_t file, const uint8_t *bytes, size_t len,
                   char *why, size_t why_len)
{
    struct fnet *net = ud;
    net->checks++;
    int rc = sw_shard_header_verify(&net->tor->mi, file, bytes, len, NULL, why, why_len);
    if (!rc) {
        net->accepted_from = fnode_of(net, from);
        net->accepted_len = (uint32_t)len;
    }
    return rc;
}

static void c_done(void *ud, int rc, const char *msg)
{
    struct fnet *net = ud;
    net->done++;
    net->rc = rc;
    snprintf(net->msg, sizeof net->msg, "%s", msg ? msg : "");
}

/* Delivers messages; when none is left, 50 ms pass and every engine ticks. */
static void fnet_run(struct fnet *net, uint64_t until_us)
{
    while (!net->done && net->now < until_us) {
        if (net->qh) {
            struct qmsg *m = net->qh;
            net->qh = m->next;
            if (!net->qh) net->qt = NULL;
            if (!net->nodes[m->to].down)
                sw_pipe_receive(net->nodes[m->to].pipe, net->nodes[m->from].id, m->data, m->len, net->now);
            free(m->data);
            free(m);
            continue;
        }
        net->now += 50000;
        for (int i = 0; i < net->n; i++)
            if (!net->nodes[i].down) sw_pipe_tick(net->nodes[i].pipe, net->now);
    }
}

static void fnet_free(struct fnet *net)
{
    while (net->qh) {
        struct qmsg *m = net->qh;
        net->qh = m->next;
        free(m->data);
        free(m);
    }
    for (int i = 0; i < net->n; i++) sw_pipe_free(net->nodes[i].pipe);
}

static void test_fetch(void)
{
    struct tor t;
    const uint64_t lens[] = { 40000, 3 * PL - 40000, 20000 };
    const int pads[] = { 0, 1, 0 };
    tor_make(&t, lens, pads, 3, 3);

    /* asked in turn: no source (ERROR), silent (no answer in time), a forged byte
     * (rejected), honest (accepted) */
    struct fnet *net = calloc(1, sizeof *net);
    net->tor = &t;
    net->file = 2;
    net->now = 1000000;
    struct fnode *c = fnet_add(net, CLIENT);
    fnet_add(net, NO_SOURCE);
    fnet_add(net, SILENT);
    fnet_add(net, FORGER);
    fnet_add(net, HONEST);
    int order[] = { 1, 2, 3, 4 };
    memcpy(net->order, order, sizeof order);
    net->n_order = 4;
    net->accepted_from = -1;
    struct sw_pipe_fetch_ops ops = { c_next, c_check, c_done, net };
    uint64_t id = 0;
    CHECK_EQ_INT(sw_pipe_fetch_header(c->pipe, &ops, 0, 30000, 500, net->now, &id), 0);
    CHECK(id != 0);
    fnet_run(net, net->now + 10000000);
    CHECK_EQ_INT(net->done, 1);
    CHECK_MSG(net->rc == 0, "rc %d: %s", net->rc, net->msg);
    CHECK_EQ_INT(net->accepted_from, 4);
    CHECK_EQ_INT(net->accepted_len, PL);
    CHECK_EQ_INT(net->checks, 2); /* the forged reply, then the honest one */
    struct sw_pipe_stats cs = sw_pipe_stats(c->pipe);
    CHECK_EQ_U64(cs.header_replies_rejected, 1);
    CHECK_EQ_U64(sw_pipe_stats(net->nodes[1].pipe).headers_refused, 1);
    CHECK_EQ_U64(sw_pipe_stats(net->nodes[3].pipe).headers_served, 1);
    CHECK_EQ_U64(sw_pipe_stats(net->nodes[4].pipe).header_bytes_sent, PL);
    CHECK_EQ_INT(sw_pipe_fetch_cancel(c->pipe, id), SW_ENOTFOUND); /* over */
    fnet_free(net);

    /* only bad nodes: after wait_ms the fetch gives up, naming each node's fault */
    memset(net, 0, sizeof *net);
    net->tor = &t;
    net->file = 2;
    net->now = 1000000;
    c = fnet_add(net, CLIENT);
    fnet_add(net, FORGER);
    fnet_add(net, NO_SOURCE);
    int order2[] = { 1, 2 };
    memcpy(net->order, order2, sizeof order2);
    net->n_order = 2;
    uint64_t t0 = net->now;
    CHECK_EQ_INT(sw_pipe_fetch_header(c->pipe, &ops, 0, 3000, 500, net->now, &id), 0);
    fnet_run(net, net->now + 10000000);
    CHECK_EQ_INT(net->done, 1);
    CHECK_EQ_INT(net->rc, SW_ETIMEDOUT);
    CHECK_MSG(net->now - t0 >= 3000000 && net->now - t0 < 3200000, "gave up after %llu us",
              (unsigned long long)(net->now - t0));
    CHECK_MSG(strstr(net->msg, "does not match the torrent's SHA-1") && strstr(net->msg, "does not serve"), "%s", net->msg);
    CHECK_MSG(net->checks >= 2, "rounds: %d checks", net->checks); /* asked again after the pause */
    fnet_free(net);

    /* max_len below the header: the node refuses with a clear reason */
    memset(net, 0, sizeof *net);
    net->tor = &t;
    net->file = 2;
    net->now = 1000000;
    c = fnet_add(net, CLIENT);
    fnet_add(net, HONEST);
    net->order[0] = 1;
    net->n_order = 1;
    CHECK_EQ_INT(sw_pipe_fetch_header(c->pipe, &ops, 1000, 1000, 500, net->now, &id), 0);
    fnet_run(net, net->now + 10000000);
    CHECK_EQ_INT(net->rc, SW_ETIMEDOUT);
    CHECK_MSG(strstr(net->msg, "over the 1000-byte cap") != NULL, "%s", net->msg);
    fnet_free(net);

    /* no node at all, then cancel; and a fetch still pending when the engine is freed */
    memset(net, 0, sizeof *net);
    net->tor = &t;
    net->now = 1000000;
    c = fnet_add(net, CLIENT);
    CHECK_EQ_INT(sw_pipe_fetch_header(c->pipe, &ops, 0, 0, 0, net->now, &id), 0);
    fnet_run(net, net->now + 500000);
    CHECK_EQ_INT(net->done, 0);
    CHECK_EQ_INT(sw_pipe_fetch_cancel(c->pipe, id), 0);
    CHECK_EQ_INT(net->done, 1);
    CHECK_EQ_INT(net->rc, SW_ECLOSED);
    net->done = 0;
    CHECK_EQ_INT(sw_pipe_fetch_header(c->pipe, &ops, 0, 0, 0, net->now, &id), 0);
    struct sw_pipe_fetch_ops bad = ops;
    bad.check = NULL;
    CHECK_EQ_INT(sw_pipe_fetch_header(c->pipe, &bad, 0, 0, 0, net->now, &id), SW_EINVAL);
    fnet_free(net);
    CHECK_EQ_INT(net->done, 1);
    CHECK_EQ_INT(net->rc, SW_ECLOSED);
    free(net);
    tor_free(&t);
}

/* ================================================================ a real shard (shared data) */

static void test_real_shard(const char *shared)
{
    char model[600], err[512], path[700];
    snprintf(model, sizeof model, "%s/models/stories260K.gguf", shared);
    const char *dir = sw_test_tmpdir();
    CHECK(dir != NULL);
    if (!dir) return;
    struct sw_split_opts so = { .n_shards = 2, .out_dir = dir };
    int rc = sw_gguf_split(model, &so, NULL, err, sizeof err);
    CHECK_MSG(rc == 0, "split: %s", err);
    if (rc) return;
    /* small pieces, so that the header spans several */
    struct sw_bt_create_file files[2] = { { "shard-0.gguf", 0, 0, 0, 2, NULL }, { "shard-1.gguf", 0, 1, 3, 4, NULL } };
    struct sw_bt_create_opts co = { .dir = dir, .name = "llama", .files = files, .n_files = 2, .piece_length = PL };
    struct sw_bt_metainfo mi;
    rc = sw_bt_metainfo_create(&co, &mi, err, sizeof err);
    CHECK_MSG(rc == 0, "torrent: %s", err);
    if (rc) return;
    uint32_t file = 0;
    for (uint32_t i = 0; i < mi.n_files; i++)
        if (!mi.files[i].pad && mi.files[i].shard_index == 1) file = i;

    /* the whole model's tokenizer: the reference */
    struct sw_gguf *whole = NULL;
    struct sw_tok *ref = NULL;
    CHECK_EQ_INT(sw_gguf_open(model, &whole, err, sizeof err), 0);
    CHECK_EQ_INT(sw_tok_from_gguf(whole, &ref, err, sizeof err), 0);

    snprintf(path, sizeof path, "%s/shard-1.gguf", dir);
    struct sw_gguf *g = NULL;
    CHECK_EQ_INT(sw_gguf_open(path, &g, err, sizeof err), 0);
    uint64_t hs = sw_gguf_header_size(g);
    uint64_t span = sw_shard_header_span(&mi, file, hs);
    CHECK_MSG(span >= hs && span % PL == 0 && span - hs < PL, "header %llu, span %llu", (unsigned long long)hs,
              (unsigned long long)span);
    uint8_t *bytes = malloc(span);
    memcpy(bytes, sw_gguf_bytes(g), span);
    uint32_t n = 0;
    CHECK_EQ_INT(sw_shard_header_verify(&mi, file, bytes, span, &n, err, sizeof err), 0);
    CHECK_EQ_INT(n, span / PL);
    fprintf(stderr, "  stories260K shard 1: GGUF header %llu bytes, %llu sent in %u pieces of %u\n",
            (unsigned long long)hs, (unsigned long long)span, n, PL);

    /* a forged byte inside the tokenizer's strings: refused */
    bytes[hs / 2] ^= 0x01;
    CHECK_EQ_INT(sw_shard_header_verify(&mi, file, bytes, span, &n, err, sizeof err), SW_ECORRUPT);
    bytes[hs / 2] ^= 0x01;

    /* the metadata opens from the header bytes alone; same ids as the whole model */
    struct sw_gguf *meta = NULL;
    rc = sw_shard_header_open(bytes, span, &meta, err, sizeof err);
    CHECK_MSG(rc == 0, "open: %s", err);
    struct sw_tok *tok = NULL;
    if (!rc) {
        rc = sw_tok_from_gguf(meta, &tok, err, sizeof err);
        CHECK_MSG(rc == 0, "tokenizer: %s", err);
    }
    if (tok && ref) {
        CHECK_EQ_INT(sw_tok_n_vocab(tok), sw_tok_n_vocab(ref));
        const char *text = "Once upon a time, there was a little girl";
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        CHECK_EQ_INT(sw_tok_encode(tok, text, strlen(text), SW_TOK_ADD_BOS, &a, &na), 0);
        CHECK_EQ_INT(sw_tok_encode(ref, text, strlen(text), SW_TOK_ADD_BOS, &b, &nb), 0);
        CHECK_EQ_INT(na, nb);
        if (na == nb) CHECK_EQ_MEM(a, b, na * sizeof *a);
        free(a);
        free(b);
    }
    sw_tok_free(tok);
    sw_gguf_close(meta);

    /* cut before the metadata ends: whole pieces that verify, but no whole metadata */
    memcpy(bytes, sw_gguf_bytes(g), span);
    if (span > PL) {
        CHECK_EQ_INT(sw_shard_header_verify(&mi, file, bytes, PL, &n, err, sizeof err), 0);
        CHECK_EQ_INT(sw_shard_header_open(bytes, PL, &meta, err, sizeof err), SW_ECORRUPT);
        CHECK(meta == NULL);
    }
    /* not a GGUF */
    memcpy(bytes, "GGUX", 4);
    CHECK_EQ_INT(sw_shard_header_open(bytes, span, &meta, err, sizeof err), SW_ECORRUPT);
    free(bytes);
    sw_gguf_close(g);
    sw_tok_free(ref);
    sw_gguf_close(whole);
    sw_bt_metainfo_free(&mi);
    char f0[700];
    for (int k = 0; k < 2; k++) {
        snprintf(f0, sizeof f0, "%s/shard-%d.gguf", dir, k);
        remove(f0);
    }
    snprintf(f0, sizeof f0, "%s/model.json", dir);
    remove(f0);
    remove(dir);
}

int main(void)
{
    SW_RUN(test_wire);
    SW_RUN(test_span_and_verify);
    SW_RUN(test_fetch);
    const char *shared = sw_test_shared_data();
    if (!shared) {
        if (sw_test_failures) return SW_TEST_DONE();
        SW_TEST_SKIP("../shared/data absent: the stories260K part (tokenizer from a shard header) not run");
    }
    {
        int before = sw_test_failures;
        test_real_shard(shared);
        fprintf(stderr, "%s test_real_shard\n", sw_test_failures == before ? "ok  " : "FAIL");
    }
    return SW_TEST_DONE();
}
