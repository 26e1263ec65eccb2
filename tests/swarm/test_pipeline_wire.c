/* test_pipeline_wire.c — the pipeline's wire codec: every message type round trips,
 * truncations and oversized fields are refused, the caps hold, f16 rows convert. */
#include <stdlib.h>
#include <string.h>

#include "swarm/pipeline.h"
#include "test.h"

/* ================================================================ wire */

static void test_f16(void)
{
    const float vals[] = { 0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 1e-7f, 6.1e-5f, 3.14159f, 1e6f, -1e-3f };
    for (size_t i = 0; i < SW_ARRAY_LEN(vals); i++) {
        float back = sw_pipe_f16_to_f32(sw_pipe_f32_to_f16(vals[i]));
        double tol = fabs(vals[i]) * 1e-3 + 6e-8;
        if (vals[i] == 1e6f) CHECK(isinf(back));
        else CHECK_NEAR(back, vals[i], tol);
    }
    /* every half value survives half -> float -> half */
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu)) continue; /* NaN payloads */
        uint16_t r = sw_pipe_f32_to_f16(sw_pipe_f16_to_f32((uint16_t)h));
        if (r != h) {
            CHECK_EQ_INT(r, h);
            break;
        }
    }
}

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
    CHECK_EQ_INT(d.pos, m->pos);
    CHECK_EQ_INT(d.n_tokens, m->n_tokens);
    CHECK_EQ_INT(d.data_len, m->data_len);
    if (m->data_len) CHECK_EQ_MEM(d.data, m->data, m->data_len);
    CHECK_EQ_INT(d.blob_len, m->blob_len);
    CHECK_EQ_INT(d.n_stages, m->n_stages);
    /* every truncation is malformed, never a crash (HIDDEN's payload is "the rest") */
    for (size_t cut = 0; cut < b.len; cut++) {
        rc = sw_pipe_msg_decode(b.data, cut, &d, err, sizeof err);
        if (m->type == SW_PIPE_HIDDEN && cut >= 3 + 8 + 14) continue;
        CHECK_MSG(rc < 0, "type %u cut at %zu decoded", m->type, cut);
    }
    /* a trailing byte is malformed except for HIDDEN */
    sw_buf_append_byte(&b, 0);
    rc = sw_pipe_msg_decode(b.data, b.len, &d, err, sizeof err);
    if (m->type != SW_PIPE_HIDDEN) CHECK(rc == SW_ECORRUPT);
    sw_buf_free(&b);
}

static void test_wire(void)
{
    uint8_t route[3 * SW_NODE_ID_LEN], entry[SW_NODE_ID_LEN], blob[40], stop[8], ids[12], hid[2 * 4 * 4];
    for (size_t i = 0; i < sizeof route; i++) route[i] = (uint8_t)i;
    memset(entry, 7, sizeof entry);
    memset(blob, 9, sizeof blob);
    memset(stop, 0, sizeof stop);
    memset(ids, 1, sizeof ids);
    memset(hid, 3, sizeof hid);
    struct sw_pipe_msg open = { .type = SW_PIPE_OPEN, .session = 0x1122334455667788ull, .stage = 2, .dtype = SW_PIPE_F16,
                                .n_stages = 3, .route = route, .entry = entry, .n_ctx = 300, .n_known = 5,
                                .max_pos = 205, .n_stop = 2, .stop = stop, .blob = blob, .blob_len = sizeof blob };
    roundtrip(&open);
    struct sw_pipe_msg tok = { .type = SW_PIPE_TOKENS, .session = 5, .pos = 9, .n_tokens = 3, .data = ids, .data_len = 12 };
    roundtrip(&tok);
    struct sw_pipe_msg h = { .type = SW_PIPE_HIDDEN, .session = 5, .pos = 9, .n_tokens = 2, .n_embd = 4,
                             .dtype = SW_PIPE_F32, .data = hid, .data_len = sizeof hid };
    roundtrip(&h);
    float lg[3] = { 1, 2, 3 };
    struct sw_pipe_msg to = { .type = SW_PIPE_TOKEN_OUT, .session = 5, .pos = 10, .token = 42, .n_logits = 3,
                              .logits = (const uint8_t *)lg, .blob = blob, .blob_len = 10 };
    roundtrip(&to);
    struct sw_pipe_msg er = { .type = SW_PIPE_ERROR, .session = 5, .stage = 1, .code = SW_ENOMEM, .text = "no kv",
                              .text_len = 5 };
    roundtrip(&er);
    struct sw_pipe_msg rp = { .type = SW_PIPE_REPLAY, .session = 5, .replay_stage = 1, .n_stages = 3, .route = route };
    roundtrip(&rp);
    struct sw_pipe_msg c = { .type = SW_PIPE_CANCEL, .session = 5 };
    roundtrip(&c);
    struct sw_pipe_msg ok = { .type = SW_PIPE_OPEN_OK, .session = 5, .stage = 1 };
    roundtrip(&ok);
    struct sw_pipe_msg pr = { .type = SW_PIPE_PROGRESS, .session = 5, .stage = 2, .pos = 64, .n_tokens = 128,
                              .compute_us = 15000000 };
    roundtrip(&pr);
    {
        struct sw_buf b;
        sw_buf_init(&b);
        CHECK_EQ_INT(sw_pipe_msg_encode(&pr, &b), 0);
        struct sw_pipe_msg d;
        CHECK_EQ_INT(sw_pipe_msg_decode(b.data, b.len, &d, NULL, 0), 0);
        CHECK_EQ_INT(d.stage, 2);
        CHECK_EQ_INT(d.compute_us, 15000000);
        b.data[3 + 8] = SW_PIPE_MAX_STAGES; /* a stage index no route has */
        CHECK_EQ_INT(sw_pipe_msg_decode(b.data, b.len, &d, NULL, 0), SW_ECORRUPT);
        sw_buf_free(&b);
    }

    /* versions, kinds, caps */
    struct sw_pipe_msg d;
    uint8_t bad[16] = { 'S', 2, SW_PIPE_CLOSE };
    CHECK_EQ_INT(sw_pipe_msg_decode(bad, 11, &d, NULL, 0), SW_EUNSUPPORTED);
    bad[1] = SW_PIPE_VERSION;
    bad[2] = 99;
    CHECK_EQ_INT(sw_pipe_msg_decode(bad, 11, &d, NULL, 0), SW_EUNSUPPORTED);
    bad[0] = 'C';
    CHECK_EQ_INT(sw_pipe_msg_decode(bad, 11, &d, NULL, 0), SW_ECORRUPT);
    struct sw_buf b;
    sw_buf_init(&b);
    struct sw_pipe_msg big = { .type = SW_PIPE_TOKENS, .session = 1, .pos = 0, .n_tokens = 1, .data = ids, .data_len = 4 };
    sw_pipe_msg_encode(&big, &b);
    sw_put_be32(b.data + 3 + 8 + 1 + 4, SW_PIPE_MAX_TOKENS + 1);
    CHECK_EQ_INT(sw_pipe_msg_decode(b.data, b.len, &d, NULL, 0), SW_ETOOBIG);
    sw_put_be32(b.data + 3 + 8 + 1 + 4, 0);
    CHECK_EQ_INT(sw_pipe_msg_decode(b.data, b.len, &d, NULL, 0), SW_ECORRUPT);
    b.len = 0;
    open.stage = 3; /* stage outside the route */
    CHECK_EQ_INT(sw_pipe_msg_encode(&open, &b), 0);
    CHECK_EQ_INT(sw_pipe_msg_decode(b.data, b.len, &d, NULL, 0), SW_ECORRUPT);
    sw_buf_free(&b);
}

int main(void)
{
    SW_RUN(test_f16);
    SW_RUN(test_wire);
    return SW_TEST_DONE();
}
