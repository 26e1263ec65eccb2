/* fuzz_pipeline.c — the pipeline wire decoder and the engine's dispatch on outside bytes:
 * every input either decodes (then re-encodes to a message that decodes to the same
 * fields) or is refused; an engine with no stage and no sessions takes it without crashing
 * (OPEN is refused, inputs for unknown sessions get an ERROR, the rest is dropped). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "swarm/pipeline.h"

static int drop_send(void *ud, const uint8_t to[SW_NODE_ID_LEN], const uint8_t *p, size_t len)
{
    (void)ud, (void)to, (void)p, (void)len;
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sw_pipe_msg m;
    if (!sw_pipe_msg_decode(data, size, &m, NULL, 0)) {
        struct sw_buf b;
        sw_buf_init(&b);
        if (!sw_pipe_msg_encode(&m, &b)) {
            struct sw_pipe_msg d;
            if (sw_pipe_msg_decode(b.data, b.len, &d, NULL, 0) || d.type != m.type || d.session != m.session ||
                d.pos != m.pos || d.n_tokens != m.n_tokens || d.data_len != m.data_len)
                abort();
        }
        sw_buf_free(&b);
    }
    struct sw_pipe_config cfg = { .n_shards = 2 };
    memset(cfg.self_id, 1, SW_NODE_ID_LEN);
    cfg.host = (struct sw_pipe_host){ drop_send, no_submit, no_pick, NULL, NULL, NULL };
    struct sw_pipe *p = NULL;
    if (sw_pipe_new(&cfg, &p)) return 0;
    uint8_t from[SW_NODE_ID_LEN];
    memset(from, 2, sizeof from);
    sw_pipe_receive(p, from, data, size, 1000);
    sw_pipe_tick(p, 2000);
    sw_pipe_free(p);
    return 0;
}
