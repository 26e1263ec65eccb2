/* test_spec.c — speculative decoding across the pipeline (issue 15) in one process: the
 * OPEN fields, then 3 stages over split stories260K on an in-memory network: with the last
 * stage drafting by prompt lookup, greedy tokens equal single-process generation and the
 * same session without speculation, drafts are accepted (fewer steps than tokens), a
 * sampled session (seeded) draws the same tokens as without speculation, short limits end
 * exactly, and a stage lost mid-session rebuilds the route with the same tokens. */
#include "pipe_net.h"

static void test_wire(void)
{
    uint8_t route[SW_NODE_ID_LEN] = { 1 }, entry[SW_NODE_ID_LEN] = { 2 }, blob[8] = { 3 }, ids[12] = { 0, 0, 0, 5 };
    struct sw_pipe_msg open = { .type = SW_PIPE_OPEN, .session = 9, .stage = 0, .n_stages = 1, .route = route,
                                .entry = entry, .n_ctx = 100, .n_known = 3, .max_pos = 90, .blob = blob,
                                .blob_len = sizeof blob, .spec_k = 4, .n_ids = 3, .ids = ids };
    struct sw_buf b;
    sw_buf_init(&b);
    CHECK_EQ_INT(sw_pipe_msg_encode(&open, &b), 0);
    struct sw_pipe_msg d;
    CHECK_EQ_INT(sw_pipe_msg_decode(b.data, b.len, &d, NULL, 0), 0);
    CHECK_EQ_INT(d.spec_k, 4);
    CHECK_EQ_INT(d.n_ids, 3);
    CHECK(d.ids && !memcmp(d.ids, ids, sizeof ids));
    for (size_t cut = 0; cut < b.len; cut++) CHECK(sw_pipe_msg_decode(b.data, cut, &d, NULL, 0) < 0);
    b.data[b.len - 12 - 4 - 1] = SW_PIPE_MAX_SPEC + 1; /* spec_k over the cap */
    CHECK_EQ_INT(sw_pipe_msg_decode(b.data, b.len, &d, NULL, 0), SW_ECORRUPT);
    sw_buf_free(&b);
    open.spec_k = SW_PIPE_MAX_SPEC + 1;
    sw_buf_init(&b);
    CHECK_EQ_INT(sw_pipe_msg_encode(&open, &b), SW_EINVAL);
    sw_buf_free(&b);
}

#define N_GEN 120

static int32_t *g_prompt;
static uint32_t g_np;

static uint64_t spec_stat(struct net *net, int accepted)
{
    struct sw_pipe_stats st = sw_pipe_stats(net->nodes[N_SHARDS].pipe); /* the last stage */
    return accepted ? st.spec_accepted : st.spec_steps;
}

/* Greedy: the tokens of single-process generation with and without speculation, for
 * several draft lengths; drafts are accepted, so there are fewer steps than tokens. */
static void test_greedy(void)
{
    int32_t ref[N_GEN];
    reference(g_prompt, g_np, N_GEN, ref);
    const uint32_t ks[] = { 0, 1, 4, 15 };
    for (size_t i = 0; i < SW_ARRAY_LEN(ks); i++) {
        struct net net;
        make_net(&net, NULL, NULL, 0);
        struct got g;
        struct sopts o = { .spec_k = ks[i] };
        run_session(&net, g_prompt, g_np, N_GEN, &o, &g);
        CHECK_EQ_INT(g.n, N_GEN);
        CHECK_MSG(!memcmp(g.toks, ref, sizeof ref), "spec_k %u: tokens differ from single-process", ks[i]);
        uint64_t acc = spec_stat(&net, 1), steps = spec_stat(&net, 0);
        if (getenv("SW_PIPE_DEBUG"))
            fprintf(stderr, "spec_k %u: %llu speculative steps, %llu drafts accepted\n", ks[i], (unsigned long long)steps,
                    (unsigned long long)acc);
        if (ks[i]) CHECK_MSG(acc >= 8, "spec_k %u: only %llu drafts accepted", ks[i], (unsigned long long)acc);
        else CHECK_EQ_U64(steps, 0);
        net_free(&net);
    }
}

/* Sampled (temperature 0.8, a seed): speculation draws the very same tokens, because every
 * verified position is one draw of the session's sampler, as without it. Also limits of 1,
 * 2 and 3 tokens end exactly there. */
static void test_sampled_and_limits(void)
{
    struct sopts o = { .temperature = 0.8f, .seed = 1234 };
    struct net net;
    struct got plain, spec;
    make_net(&net, NULL, NULL, 0);
    run_session(&net, g_prompt, g_np, N_GEN, &o, &plain);
    o.spec_k = 6;
    run_session(&net, g_prompt, g_np, N_GEN, &o, &spec);
    CHECK_EQ_INT(spec.n, N_GEN);
    CHECK_EQ_MEM(spec.toks, plain.toks, sizeof plain.toks[0] * N_GEN);
    for (uint32_t n = 1; n <= 3; n++) {
        struct got g;
        run_session(&net, g_prompt, g_np, n, &o, &g);
        CHECK_EQ_INT(g.n, n);
        CHECK_EQ_MEM(g.toks, plain.toks, n * sizeof plain.toks[0]);
    }
    net_free(&net);
}

/* With replicas: the stage-1 node dies after 30 tokens of a speculative session; the
 * entry rebuilds the route (the new last stage gets the history to draft from) and the
 * tokens stay those of single-process generation. The prefix cache works beside it. */
static void test_failover(void)
{
    int32_t ref[N_GEN];
    reference(g_prompt, g_np, N_GEN, ref);
    struct net net;
    make_net(&net, NULL, NULL, 1);
    net.kill_node = 2;
    net.kill_after = 30;
    struct got g;
    struct sopts o = { .spec_k = 4 };
    run_session(&net, g_prompt, g_np, N_GEN, &o, &g);
    CHECK_EQ_INT(g.n, N_GEN);
    CHECK_EQ_MEM(g.toks, ref, sizeof ref);
    CHECK(net.nodes[2].down);
    net_free(&net);
}

int main(void)
{
    if (!getenv("SW_PIPE_DEBUG")) sw_log_set(NULL, NULL, SW_LOG_ERROR);
    SW_RUN(test_wire);
    if (!setup_model()) {
        if (sw_test_failures) return SW_TEST_DONE();
        SW_TEST_SKIP("../shared/data/models/stories260K.gguf is absent: model tests skipped (wire test passed)");
    }
    const char *text = "Once upon a time, there was a little girl named Lily.";
    size_t n = 0;
    sw_tok_encode(g_tok, text, strlen(text), SW_TOK_ADD_BOS, &g_prompt, &n);
    g_np = (uint32_t)n;
    SW_RUN(test_greedy);
    SW_RUN(test_sampled_and_limits);
    SW_RUN(test_failover);
    free(g_prompt);
    teardown_model();
    return SW_TEST_DONE();
}
