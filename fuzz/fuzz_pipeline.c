/* fuzz_pipeline.c — the pipeline wire decoder and the engine's dispatch on outside bytes:
 * every input either decodes (then re-encodes to a message that decodes to the same
 * fields) or is refused; an engine with no stage and no sessions takes it without crashing
 * (OPEN is refused, inputs for unknown sessions get an ERROR, the rest is dropped). The
 * engine also serves shard headers (HEADER_GET) and has a header fetch waiting: a HEADER
 * or ERROR input gets the request's id patched in, so its bytes reach the fetch's check
 * (piece hashes, then the GGUF metadata opened from header bytes alone). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bt/bt.h"
#include "gguf/gguf.h"
#include "swarm/pipeline.h"

static uint64_t g_req; /* the id of the HEADER_GET the fetch sent */

static int drop_send(void *ud, const uint8_t to[SW_NODE_ID_LEN], const uint8_t *p, size_t len)
{
    (void)ud, (void)to;
    struct sw_pipe_msg m;
    if (!sw_pipe_msg_decode(p, len, &m, NULL, 0) && m.type == SW_PIPE_HEADER_GET) g_req = m.session;
    return 0;
}
static int no_submit(void *ud, struct sw_pipe_job *j)
{
    (void)ud, (void)j;
    return SW_EUNSUPPORTED;
}
static int no_pick(void *ud, uint32_t shard, const uint8_t *ex, size_t n, uint8_t id_out[SW_NODE_ID_LEN])
{
    (void)ud, (void)shard, (void)ex, (void)n, (void)id_out;
    return SW_ENOTFOUND;
}

/* A shard header source: 64 fixed bytes as torrent file 0. */
static int src(void *ud, uint32_t max_len, struct sw_buf *out, uint32_t *file_out, char *err, size_t err_len)
{
    (void)ud, (void)err, (void)err_len;
    static const uint8_t hdr[64] = "GGUF\3\0\0\0";
    if (max_len < sizeof hdr) return SW_ETOOBIG;
    sw_buf_append(out, hdr, sizeof hdr);
    *file_out = 0;
    return 0;
}

/* A torrent of two 96-byte files in 64-byte pieces, the second starting mid-piece. */
static struct sw_bt_metainfo g_mi;
static struct sw_bt_file g_files[2];
static uint8_t g_hashes[3 * 20];

static int f_next(void *ud, const uint8_t *tried, size_t n_tried, uint8_t id_out[SW_NODE_ID_LEN])
{
    (void)ud, (void)tried;
    if (n_tried) return SW_ENOTFOUND;
    memset(id_out, 2, SW_NODE_ID_LEN);
    return 0;
}
static int f_check(void *ud, const uint8_t from[SW_NODE_ID_LEN], uint32_t file, const uint8_t *bytes, size_t len,
                   char *why, size_t why_len)
{
    (void)ud, (void)from;
    return sw_shard_header_verify(&g_mi, file, bytes, len, NULL, why, why_len);
}
static void f_done(void *ud, int rc, const char *msg)
{
    (void)ud, (void)rc, (void)msg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_mi.n_files) {
        g_files[0] = (struct sw_bt_file){ .path = "a", .length = 96, .offset = 0, .shard_index = 0 };
        g_files[1] = (struct sw_bt_file){ .path = "b", .length = 96, .offset = 96, .shard_index = 1 };
        g_mi.piece_length = 64;
        g_mi.n_pieces = 3;
        g_mi.total_length = 192;
        g_mi.piece_hashes = g_hashes;
        g_mi.files = g_files;
        g_mi.n_files = 2;
    }
    struct sw_pipe_msg m;
    if (!sw_pipe_msg_decode(data, size, &m, NULL, 0)) {
        struct sw_buf b;
        sw_buf_init(&b);
        if (!sw_pipe_msg_encode(&m, &b)) {
            struct sw_pipe_msg d;
            if (sw_pipe_msg_decode(b.data, b.len, &d, NULL, 0) || d.type != m.type || d.session != m.session ||
                d.pos != m.pos || d.n_tokens != m.n_tokens || d.data_len != m.data_len || d.max_len != m.max_len ||
                d.file != m.file || d.stage != m.stage || d.compute_us != m.compute_us ||
                d.progress_ms != m.progress_ms || (m.type == SW_PIPE_HEADER && memcmp(d.data, m.data, m.data_len)))
                abort();
        }
        sw_buf_free(&b);
        if (m.type == SW_PIPE_HEADER) { /* header bytes from outside: checked, then opened */
            sw_shard_header_verify(&g_mi, m.file, m.data, m.data_len, NULL, NULL, 0);
            uint8_t *copy = malloc(m.data_len);
            struct sw_gguf *g = NULL;
            if (copy) {
                memcpy(copy, m.data, m.data_len);
                if (!sw_shard_header_open(copy, m.data_len, &g, NULL, 0)) sw_gguf_close(g);
                free(copy);
            }
        }
    }
    struct sw_pipe_config cfg = { .n_shards = 2 };
    memset(cfg.self_id, 1, SW_NODE_ID_LEN);
    cfg.host = (struct sw_pipe_host){ drop_send, no_submit, no_pick, NULL, NULL, NULL, NULL, NULL, NULL, NULL };
    struct sw_pipe *p = NULL;
    if (sw_pipe_new(&cfg, &p)) return 0;
    sw_pipe_set_header_source(p, src, NULL);
    struct sw_pipe_fetch_ops ops = { f_next, f_check, f_done, NULL };
    g_req = 0;
    sw_pipe_fetch_header(p, &ops, 0, 1, 1, 1000, NULL);
    uint8_t *in = malloc(size ? size : 1);
    if (!in) {
        sw_pipe_free(p);
        return 0;
    }
    if (size) memcpy(in, data, size);
    if (size >= 11 && (in[2] == SW_PIPE_HEADER || in[2] == SW_PIPE_ERROR)) sw_put_be64(in + 3, g_req);
    uint8_t from[SW_NODE_ID_LEN];
    memset(from, 2, sizeof from);
    sw_pipe_receive(p, from, in, size, 1000);
    sw_pipe_tick(p, 2000);
    sw_pipe_tick(p, 5000000);
    sw_pipe_free(p);
    free(in);
    return 0;
}
