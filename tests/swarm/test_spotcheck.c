/* test_spotcheck.c — spot checks (issue 13 item 3): the AUDIT / CLAIM / VERDICT codec (round
 * trips, every truncation, caps, bad fields), the row comparison and its tolerance (f32,
 * f16, NaN/Inf), the rate parser. The checks across real nodes are spotcheck_it.py. */
#include "swarm/pipeline.h"

#include <math.h>

#include "test.h"

static void roundtrip(const struct sw_pipe_msg *m, struct sw_pipe_msg *out, struct sw_buf *b)
{
    b->len = 0;
    CHECK_EQ_INT(sw_pipe_msg_encode(m, b), 0);
    char err[160];
    CHECK_EQ_INT(sw_pipe_msg_decode(b->data, b->len, out, err, sizeof err), 0);
    /* every truncation is malformed, never a crash (CLAIM's payload is "the rest") */
    for (size_t n = 0; n < b->len; n++) {
        struct sw_pipe_msg t;
        int rc = sw_pipe_msg_decode(b->data, n, &t, err, sizeof err);
        if (m->type == SW_PIPE_CLAIM && n >= b->len - m->data_len) CHECK_EQ_INT(rc, 0);
        else CHECK_MSG(rc != 0, "type %u truncated to %zu of %zu bytes decoded", m->type, n, b->len);
    }
    /* trailing bytes (except CLAIM, whose payload is the rest) */
    if (m->type != SW_PIPE_CLAIM) {
        sw_buf_append_byte(b, 0);
        CHECK(sw_pipe_msg_decode(b->data, b->len, out, err, sizeof err) != 0);
        b->len--;
        CHECK_EQ_INT(sw_pipe_msg_decode(b->data, b->len, out, err, sizeof err), 0);
    }
}

static void test_codec(void)
{
    struct sw_buf b;
    sw_buf_init(&b);
    uint8_t a[SW_NODE_ID_LEN], c[SW_NODE_ID_LEN];
    memset(a, 0xaa, sizeof a);
    memset(c, 0xcc, sizeof c);
    struct sw_pipe_msg m = { .type = SW_PIPE_AUDIT, .session = 7, .role = SW_PIPE_AUDIT_WITNESS, .audit = 0x1122334455667788ull,
                             .node_a = a, .node_b = c, .pos = 10, .n_tokens = 5 }, o;
    roundtrip(&m, &o, &b);
    CHECK_EQ_INT(o.role, SW_PIPE_AUDIT_WITNESS);
    CHECK_EQ_U64(o.audit, 0x1122334455667788ull);
    CHECK_EQ_MEM(o.node_a, a, SW_NODE_ID_LEN);
    CHECK_EQ_MEM(o.node_b, c, SW_NODE_ID_LEN);
    CHECK_EQ_INT(o.pos, 10);
    CHECK_EQ_INT(o.n_tokens, 5);
    /* bad roles and ranges are refused by both sides */
    m.role = 3;
    b.len = 0;
    CHECK(sw_pipe_msg_encode(&m, &b) != 0);
    m.role = SW_PIPE_AUDIT_FEED;
    m.n_tokens = 0;
    CHECK(sw_pipe_msg_encode(&m, &b) != 0);
    m.n_tokens = 5;
    roundtrip(&m, &o, &b);
    b.data[11] = 9; /* the role byte */
    char err[160];
    CHECK(sw_pipe_msg_decode(b.data, b.len, &o, err, sizeof err) == SW_ECORRUPT);
    CHECK(strstr(err, "role") != NULL);

    float rows[6] = { 1, 2, 3, 4, 5, 6 };
    m = (struct sw_pipe_msg){ .type = SW_PIPE_CLAIM, .session = 9, .flags = SW_PIPE_CLAIM_LAST, .dtype = SW_PIPE_F32,
                              .pos = 3, .n_tokens = 2, .n_embd = 3, .node_a = c, .data = (const uint8_t *)rows,
                              .data_len = sizeof rows };
    roundtrip(&m, &o, &b);
    CHECK_EQ_INT(o.flags, SW_PIPE_CLAIM_LAST);
    CHECK_EQ_INT(o.n_embd, 3);
    CHECK_EQ_INT(o.data_len, sizeof rows);
    CHECK_EQ_MEM(o.data, rows, sizeof rows);
    CHECK_EQ_MEM(o.node_a, c, SW_NODE_ID_LEN);
    m.n_embd = SW_PIPE_MAX_EMBD + 1;
    b.len = 0;
    CHECK(sw_pipe_msg_encode(&m, &b) != 0);
    /* the last shard's claim: token ids, n_embd 0 */
    uint8_t ids[8] = { 0, 0, 1, 2, 0, 0, 0, 7 };
    m = (struct sw_pipe_msg){ .type = SW_PIPE_CLAIM, .session = 9, .flags = SW_PIPE_CLAIM_TOKENS | SW_PIPE_CLAIM_LAST,
                              .pos = 17, .n_tokens = 2, .node_a = c, .data = ids, .data_len = sizeof ids };
    roundtrip(&m, &o, &b);
    CHECK_EQ_INT(o.flags, SW_PIPE_CLAIM_TOKENS | SW_PIPE_CLAIM_LAST);
    CHECK_EQ_INT(o.n_embd, 0);
    CHECK_EQ_INT(o.pos, 17);
    CHECK_EQ_INT(o.data_len, sizeof ids);
    CHECK_EQ_MEM(o.data, ids, sizeof ids);

    const char *t = "3 of 9 positions differ";
    m = (struct sw_pipe_msg){ .type = SW_PIPE_VERDICT, .session = 9, .stage = 2, .verdict = SW_PIPE_VERDICT_MISMATCH,
                              .pos = 4, .n_tokens = 9, .bad_pos = 6, .max_abs = 0.25f, .rel_err = 0.125f, .node_a = a,
                              .text = t, .text_len = (uint16_t)strlen(t) };
    roundtrip(&m, &o, &b);
    CHECK_EQ_INT(o.verdict, SW_PIPE_VERDICT_MISMATCH);
    CHECK_EQ_INT(o.stage, 2);
    CHECK_EQ_INT(o.bad_pos, 6);
    CHECK(o.max_abs == 0.25f && o.rel_err == 0.125f);
    CHECK_EQ_INT(o.text_len, strlen(t));
    CHECK(!memcmp(o.text, t, o.text_len));
    b.data[12] = 7; /* the verdict byte: unknown */
    CHECK(sw_pipe_msg_decode(b.data, b.len, &o, err, sizeof err) == SW_ECORRUPT);
    sw_buf_free(&b);
}

static void test_compare(void)
{
    enum { N = 64 };
    float a[N], bb[N];
    for (int i = 0; i < N; i++) a[i] = bb[i] = (float)sin(i) * 40.0f;
    float d, r;
    CHECK_EQ_INT(sw_spot_compare_row((uint8_t *)a, (uint8_t *)bb, SW_PIPE_F32, N, SW_SPOT_RTOL, &d, &r), 0);
    CHECK(d == 0 && r == 0);
    /* L2: 1 % noise on every value passes; one value off by 2x the row's norm x rtol does
     * not, nor do 1/8 of the values off by a quarter of the largest */
    double norm = 0;
    for (int i = 0; i < N; i++) norm += (double)a[i] * a[i];
    norm = sqrt(norm);
    for (int i = 0; i < N; i++) bb[i] = a[i] * (i & 1 ? 1.01f : 0.99f);
    CHECK_EQ_INT(sw_spot_compare_row((uint8_t *)a, (uint8_t *)bb, SW_PIPE_F32, N, SW_SPOT_RTOL, &d, &r), 0);
    CHECK(r > 0.009f && r < 0.0101f);
    memcpy(bb, a, sizeof bb);
    bb[5] += (float)(2 * SW_SPOT_RTOL * norm);
    CHECK_EQ_INT(sw_spot_compare_row((uint8_t *)a, (uint8_t *)bb, SW_PIPE_F32, N, SW_SPOT_RTOL, &d, &r), 1);
    CHECK(fabsf(d - (float)(2 * SW_SPOT_RTOL * norm)) < 1e-3f && r > 1.8 * SW_SPOT_RTOL);
    memcpy(bb, a, sizeof bb);
    for (int i = 0; i < N; i += 8) bb[i] += 0.25f * 40.0f;
    CHECK_EQ_INT(sw_spot_compare_row((uint8_t *)a, (uint8_t *)bb, SW_PIPE_F32, N, SW_SPOT_RTOL, &d, &r), 1);
    memcpy(bb, a, sizeof bb);
    /* NaN on one side differs; on both, at the same place, is no evidence */
    bb[9] = NAN;
    CHECK_EQ_INT(sw_spot_compare_row((uint8_t *)a, (uint8_t *)bb, SW_PIPE_F32, N, SW_SPOT_RTOL, &d, &r), 1);
    a[9] = NAN;
    CHECK_EQ_INT(sw_spot_compare_row((uint8_t *)a, (uint8_t *)bb, SW_PIPE_F32, N, SW_SPOT_RTOL, &d, &r), 0);
    bb[9] = INFINITY;
    CHECK_EQ_INT(sw_spot_compare_row((uint8_t *)a, (uint8_t *)bb, SW_PIPE_F32, N, SW_SPOT_RTOL, &d, &r), 1);
    /* f16 rows: the wire's rounding alone never fails */
    uint16_t ha[N], hb[N];
    for (int i = 0; i < N; i++) {
        float x = (float)cos(i) * 100.0f;
        ha[i] = sw_pipe_f32_to_f16(x);
        hb[i] = sw_pipe_f32_to_f16(x * (1.0f + 4e-4f));
    }
    CHECK_EQ_INT(sw_spot_compare_row((uint8_t *)ha, (uint8_t *)hb, SW_PIPE_F16, N, SW_SPOT_RTOL, &d, &r), 0);
    hb[3] = sw_pipe_f32_to_f16(sw_pipe_f16_to_f32(ha[3]) + 60.0f); /* ~10 % of the row's norm */
    CHECK_EQ_INT(sw_spot_compare_row((uint8_t *)ha, (uint8_t *)hb, SW_PIPE_F16, N, SW_SPOT_RTOL, &d, &r), 1);
    /* an all-zero row against a tiny one: relative to a floor, not a division by zero */
    memset(a, 0, sizeof a);
    memset(bb, 0, sizeof bb);
    bb[0] = 1e-9f;
    CHECK_EQ_INT(sw_spot_compare_row((uint8_t *)a, (uint8_t *)bb, SW_PIPE_F32, N, SW_SPOT_RTOL, &d, &r), 0);
}

static void test_rate(void)
{
    double r;
    CHECK_EQ_INT(sw_spot_parse_rate("1/64", &r), 0);
    CHECK(r == 1.0 / 64);
    CHECK_EQ_INT(sw_spot_parse_rate("0.25", &r), 0);
    CHECK(r == 0.25);
    CHECK_EQ_INT(sw_spot_parse_rate("1", &r), 0);
    CHECK(r == 1);
    CHECK_EQ_INT(sw_spot_parse_rate("off", &r), 0);
    CHECK(r < 0);
    const char *bad[] = { "", "1/0", "1/", "1/x", "2", "-0.5", "abc", "0.5x", "1/-3" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_MSG(sw_spot_parse_rate(bad[i], &r) == SW_EINVAL, "'%s' accepted", bad[i]);
}

int main(void)
{
    SW_RUN(test_codec);
    SW_RUN(test_compare);
    SW_RUN(test_rate);
    return SW_TEST_DONE();
}
