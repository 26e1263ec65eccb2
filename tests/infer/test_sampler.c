/* test_sampler.c — the sampler on hand-made distributions: greedy, each filter's effect,
 * temperature, repetition penalty, seed determinism, and the serialised state. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/tok.h"
#include "test.h"

static struct sw_sampler *mk(float temp, uint32_t top_k, float top_p, float min_p, float rep, uint32_t last_n,
                             uint64_t seed, uint32_t n_vocab)
{
    struct sw_sampler_params p = { temp, top_k, top_p, min_p, rep, last_n, seed };
    struct sw_sampler *s = NULL;
    int rc = sw_sampler_new(&p, n_vocab, &s);
    CHECK_EQ_INT(rc, 0);
    return s;
}

/* probabilities 0.5 0.3 0.15 0.05 as logits */
static void dist4(float l[4])
{
    l[0] = logf(0.5f); l[1] = logf(0.3f); l[2] = logf(0.15f); l[3] = logf(0.05f);
}

static void counts(struct sw_sampler *s, const float *l, int n_draws, int cnt[4])
{
    memset(cnt, 0, 4 * sizeof *cnt);
    for (int i = 0; i < n_draws; i++) {
        int32_t id = sw_sampler_sample(s, l);
        if (id >= 0 && id < 4) cnt[id]++;
    }
}

static void test_greedy(void)
{
    float l[5] = { 1.0f, 3.0f, 2.0f, 3.0f, -1.0f };
    struct sw_sampler *s = mk(0.0f, 40, 0.95f, 0.05f, 1.0f, 64, 1, 5);
    CHECK_EQ_INT(sw_sampler_sample(s, l), 1); /* ties: lowest id */
    float nan_l[3] = { NAN, -INFINITY, 0.5f };
    sw_sampler_free(s);
    s = mk(0.0f, 0, 1.0f, 0.0f, 1.0f, 0, 1, 3);
    CHECK_EQ_INT(sw_sampler_sample(s, nan_l), 2);
    float dead[2] = { -INFINITY, NAN };
    sw_sampler_free(s);
    s = mk(0.7f, 0, 1.0f, 0.0f, 1.0f, 0, 1, 2);
    CHECK_EQ_INT(sw_sampler_sample(s, dead), SW_EINVAL);
    sw_sampler_free(s);
}

static void test_seed_determinism(void)
{
    float l[4];
    dist4(l);
    struct sw_sampler *a = mk(1.0f, 0, 1.0f, 0.0f, 1.0f, 0, 42, 4), *b = mk(1.0f, 0, 1.0f, 0.0f, 1.0f, 0, 42, 4),
                      *c = mk(1.0f, 0, 1.0f, 0.0f, 1.0f, 0, 43, 4);
    int same_ab = 1, same_ac = 1;
    int32_t first[64];
    for (int i = 0; i < 64; i++) {
        int32_t x = sw_sampler_sample(a, l), y = sw_sampler_sample(b, l), z = sw_sampler_sample(c, l);
        first[i] = x;
        same_ab &= x == y;
        same_ac &= x == z;
    }
    CHECK_MSG(same_ab, "same seed gave different tokens");
    CHECK_MSG(!same_ac, "different seeds gave the same 64 tokens");
    /* reset replays the same sequence */
    sw_sampler_reset(a);
    int replay = 1;
    for (int i = 0; i < 64; i++) replay &= sw_sampler_sample(a, l) == first[i];
    CHECK_MSG(replay, "reset did not replay the sequence");
    /* pinned draws: the PRNG and the sampling are fully specified, so these never change */
    sw_sampler_reset(a);
    int32_t pinned[8];
    for (int i = 0; i < 8; i++) pinned[i] = sw_sampler_sample(a, l);
    fprintf(stderr, "seed 42 draws: %d %d %d %d %d %d %d %d\n", pinned[0], pinned[1], pinned[2], pinned[3],
            pinned[4], pinned[5], pinned[6], pinned[7]);
    static const int32_t want[8] = { 0, 0, 1, 2, 3, 1, 1, 2 };
    CHECK_EQ_MEM(pinned, want, sizeof want);
    sw_sampler_free(a);
    sw_sampler_free(b);
    sw_sampler_free(c);
}

static void test_temperature(void)
{
    float l[4];
    dist4(l);
    int cnt[4];
    struct sw_sampler *s = mk(1.0f, 0, 1.0f, 0.0f, 1.0f, 0, 7, 4);
    counts(s, l, 20000, cnt);
    CHECK_NEAR(cnt[0] / 20000.0, 0.5, 0.02);
    CHECK_NEAR(cnt[1] / 20000.0, 0.3, 0.02);
    CHECK_NEAR(cnt[2] / 20000.0, 0.15, 0.015);
    CHECK_NEAR(cnt[3] / 20000.0, 0.05, 0.01);
    sw_sampler_free(s);
    /* cold: nearly always the top token */
    s = mk(0.05f, 0, 1.0f, 0.0f, 1.0f, 0, 7, 4);
    counts(s, l, 2000, cnt);
    CHECK_MSG(cnt[0] >= 1990, "temp 0.05: top token drawn %d / 2000", cnt[0]);
    sw_sampler_free(s);
    /* hot: flatter than at temperature 1 */
    s = mk(5.0f, 0, 1.0f, 0.0f, 1.0f, 0, 7, 4);
    counts(s, l, 20000, cnt);
    CHECK_MSG(cnt[3] > 2000 && cnt[0] < 8000, "temp 5: counts %d %d %d %d", cnt[0], cnt[1], cnt[2], cnt[3]);
    sw_sampler_free(s);
}

static void test_top_k(void)
{
    float l[4];
    dist4(l);
    int cnt[4];
    struct sw_sampler *s = mk(1.0f, 1, 1.0f, 0.0f, 1.0f, 0, 3, 4);
    counts(s, l, 500, cnt);
    CHECK_EQ_INT(cnt[0], 500);
    sw_sampler_free(s);
    s = mk(1.0f, 2, 1.0f, 0.0f, 1.0f, 0, 3, 4);
    counts(s, l, 5000, cnt);
    CHECK_EQ_INT(cnt[2] + cnt[3], 0);
    CHECK_NEAR(cnt[0] / 5000.0, 0.5 / 0.8, 0.03); /* renormalised over the two kept */
    sw_sampler_free(s);
}

static void test_top_p(void)
{
    float l[4];
    dist4(l);
    int cnt[4];
    /* mass 0.5 < 0.7 <= 0.8: keeps {0, 1} */
    struct sw_sampler *s = mk(1.0f, 0, 0.7f, 0.0f, 1.0f, 0, 5, 4);
    counts(s, l, 5000, cnt);
    CHECK_EQ_INT(cnt[2] + cnt[3], 0);
    CHECK(cnt[1] > 1000);
    sw_sampler_free(s);
    /* 0.96 keeps all four (0.95 < 0.96) */
    s = mk(1.0f, 0, 0.96f, 0.0f, 1.0f, 0, 5, 4);
    counts(s, l, 5000, cnt);
    CHECK(cnt[3] > 0);
    sw_sampler_free(s);
}

static void test_min_p(void)
{
    float l[4];
    dist4(l);
    int cnt[4];
    /* 0.25 * 0.5 = 0.125: keeps 0.5, 0.3, 0.15 */
    struct sw_sampler *s = mk(1.0f, 0, 1.0f, 0.25f, 1.0f, 0, 9, 4);
    counts(s, l, 5000, cnt);
    CHECK_EQ_INT(cnt[3], 0);
    CHECK(cnt[2] > 300);
    sw_sampler_free(s);
    s = mk(1.0f, 0, 1.0f, 0.7f, 1.0f, 0, 9, 4); /* 0.35: only the top one */
    counts(s, l, 1000, cnt);
    CHECK_EQ_INT(cnt[0], 1000);
    sw_sampler_free(s);
}

static void test_repeat_penalty(void)
{
    float l[3] = { 2.0f, 1.9f, 0.0f };
    struct sw_sampler *s = mk(0.0f, 0, 1.0f, 0.0f, 1.5f, 4, 1, 3);
    int32_t prev = 0;
    sw_sampler_accept(s, &prev, 1);
    CHECK_EQ_INT(sw_sampler_sample(s, l), 1); /* 2.0 / 1.5 < 1.9 */
    /* the window slides: after 4 other tokens token 0 is no longer penalised */
    int32_t others[4] = { 2, 2, 2, 2 };
    sw_sampler_accept(s, others, 4);
    CHECK_EQ_INT(sw_sampler_sample(s, l), 0);
    sw_sampler_free(s);
    float neg[2] = { -1.0f, -1.2f };
    s = mk(0.0f, 0, 1.0f, 0.0f, 1.5f, 8, 1, 2);
    sw_sampler_accept(s, &prev, 1);
    CHECK_EQ_INT(sw_sampler_sample(s, neg), 1); /* -1.5 < -1.2 */
    sw_sampler_free(s);
}

static void test_state_blob(void)
{
    enum { V = 50 };
    float l[V];
    for (int i = 0; i < V; i++) l[i] = (float)((i * 37) % 11) * 0.3f;
    struct sw_sampler *a = mk(0.9f, 20, 0.9f, 0.02f, 1.1f, 16, 1234, V);
    for (int i = 0; i < 10; i++) sw_sampler_sample(a, l);
    struct sw_buf blob = { 0 };
    CHECK_EQ_INT(sw_sampler_save(a, &blob), 0);
    struct sw_sampler *b = NULL;
    CHECK_EQ_INT(sw_sampler_load(blob.data, blob.len, V, &b), 0);
    if (b) {
        int same = 1;
        for (int i = 0; i < 50; i++) same &= sw_sampler_sample(a, l) == sw_sampler_sample(b, l);
        CHECK_MSG(same, "restored sampler diverged");
        CHECK_EQ_INT(sw_sampler_params(b)->top_k, 20);
    }
    struct sw_sampler *c = NULL;
    CHECK_EQ_INT(sw_sampler_load(blob.data, blob.len - 1, V, &c), SW_ECORRUPT);
    blob.data[4] = 9;
    CHECK_EQ_INT(sw_sampler_load(blob.data, blob.len, V, &c), SW_EUNSUPPORTED);
    blob.data[4] = 1;
    blob.data[0] = 'X';
    CHECK_EQ_INT(sw_sampler_load(blob.data, blob.len, V, &c), SW_ECORRUPT);
    CHECK(c == NULL);
    sw_buf_free(&blob);
    sw_sampler_free(a);
    sw_sampler_free(b);
}

/* sw_sampler_check of token id on logits l by a sampler whose own draw (the same seed) is id:
 * a seed is searched for; -1 when none of 2000 draws it. */
static int check_drawn(float temp, uint32_t top_k, float top_p, float min_p, const float *l, uint32_t n, int32_t id)
{
    float gap;
    char why[200];
    for (uint64_t seed = 1; seed <= 2000; seed++) {
        struct sw_sampler *a = mk(temp, top_k, top_p, min_p, 1, 0, seed, n);
        int32_t t = sw_sampler_sample(a, l);
        sw_sampler_free(a);
        if (t != id) continue;
        struct sw_sampler *b = mk(temp, top_k, top_p, min_p, 1, 0, seed, n);
        int rc = sw_sampler_check(b, l, id, 1e-3f, &gap, why, sizeof why);
        if (rc) fprintf(stderr, "seed %llu token %d: %s\n", (unsigned long long)seed, id, why);
        sw_sampler_free(b);
        return rc;
    }
    return -1;
}

/* sw_sampler_check (spot checks of a pipeline's last stage): a sampler loaded from the same
 * state as a accepts every token a draws from logits perturbed within the tolerance, and
 * ends in the same state. Frees a. */
static void check_honest(struct sw_sampler *a)
{
    enum { V = 64 };
    float l[V], lp[V], gap;
    char why[200];
    struct sw_sampler *b = NULL;
    struct sw_buf blob = { 0 }, blob2 = { 0 };
    CHECK_EQ_INT(sw_sampler_save(a, &blob), 0);
    CHECK_EQ_INT(sw_sampler_load(blob.data, blob.len, V, &b), 0);
    uint32_t x = 7;
    int ok = 1;
    for (int step = 0; step < 300 && b; step++) {
        for (int i = 0; i < V; i++) {
            x = x * 1664525u + 1013904223u;
            l[i] = (float)(x >> 8) / (float)(1u << 24) * 8.0f - 4.0f;
            x = x * 1664525u + 1013904223u;
            lp[i] = l[i] + ((float)(x >> 8) / (float)(1u << 24) - 0.5f) * 2e-3f; /* another kernel's rounding */
        }
        int32_t t = sw_sampler_sample(a, l);
        int rc = sw_sampler_check(b, lp, t, 1e-3f, &gap, why, sizeof why);
        if (rc) fprintf(stderr, "step %d token %d: %s\n", step, t, why);
        ok &= rc == 0;
    }
    CHECK_MSG(ok, "an honest draw was refused");
    sw_buf_free(&blob);
    blob = (struct sw_buf){ 0 };
    CHECK_EQ_INT(sw_sampler_save(a, &blob), 0);
    if (b) CHECK_EQ_INT(sw_sampler_save(b, &blob2), 0);
    CHECK_MSG(blob.len == blob2.len && !memcmp(blob.data, blob2.data, blob.len), "the replayed state differs");
    sw_buf_free(&blob);
    sw_buf_free(&blob2);
    sw_sampler_free(a);
    sw_sampler_free(b);
}

/* ... and tokens outside each filter, or that the draw rules out, are refused. */
static void test_check(void)
{
    float gap;
    char why[200];
    check_honest(mk(0.9f, 20, 0.9f, 0.02f, 1.1f, 16, 99, 64)); /* every filter (the draw's lower bound) */
    check_honest(mk(0.7f, 0, 1, 0, 1.1f, 16, 5, 64));          /* none (both bounds) */

    /* greedy: a near-tie within 2 x tol passes, a worse token does not */
    float g[4] = { 1.0f, 5.0f, 4.99f, 0.0f };
    struct sw_sampler *s = mk(0, 0, 1, 0, 1, 0, 0, 4);
    CHECK_EQ_INT(sw_sampler_check(s, g, 1, 0.01f, &gap, why, sizeof why), 0);
    CHECK_EQ_INT(sw_sampler_check(s, g, 2, 0.01f, &gap, why, sizeof why), 0);
    CHECK_EQ_INT(sw_sampler_check(s, g, 0, 0.01f, &gap, why, sizeof why), 1);
    CHECK(fabsf(gap - 4.0f) < 1e-5f);
    CHECK(strstr(why, "greedy") != NULL);
    CHECK_EQ_INT(sw_sampler_check(s, g, 4, 0.01f, &gap, why, sizeof why), 1); /* outside the vocabulary */
    CHECK_EQ_INT(sw_sampler_check(s, g, -1, 0.01f, &gap, why, sizeof why), 1);
    g[3] = -INFINITY;
    CHECK_EQ_INT(sw_sampler_check(s, g, 3, 0.01f, &gap, why, sizeof why), 1);
    sw_sampler_free(s);

    /* probabilities 0.5 0.3 0.15 0.05: each filter's bound */
    float d[4];
    dist4(d);
    CHECK_EQ_INT(check_drawn(1, 2, 1, 0, d, 4, 1), 0);
    s = mk(1, 2, 1, 0, 1, 0, 0, 4); /* top-k 2 */
    CHECK_EQ_INT(sw_sampler_check(s, d, 2, 1e-3f, &gap, why, sizeof why), 1);
    CHECK(strstr(why, "top-k") != NULL);
    sw_sampler_free(s);
    CHECK_EQ_INT(check_drawn(1, 0, 1, 0.2f, d, 4, 2), 0);
    s = mk(1, 0, 1, 0.2f, 1, 0, 0, 4); /* min-p 0.2: the floor is 0.1 */
    CHECK_EQ_INT(sw_sampler_check(s, d, 3, 1e-3f, &gap, why, sizeof why), 1);
    CHECK(strstr(why, "min-p") != NULL);
    sw_sampler_free(s);
    CHECK_EQ_INT(check_drawn(1, 0, 0.6f, 0, d, 4, 1), 0);
    s = mk(1, 0, 0.6f, 0, 1, 0, 0, 4); /* top-p 0.6: {0, 1} */
    CHECK_EQ_INT(sw_sampler_check(s, d, 2, 1e-3f, &gap, why, sizeof why), 1);
    CHECK(strstr(why, "top-p") != NULL);
    sw_sampler_free(s);
    CHECK_EQ_INT(check_drawn(1, 3, 0.99f, 0, d, 4, 2), 0);
    s = mk(1, 3, 0.99f, 0, 1, 0, 0, 4); /* top-p with top-k: the mass is over the best 3 */
    CHECK_EQ_INT(sw_sampler_check(s, d, 3, 1e-3f, &gap, why, sizeof why), 1);
    sw_sampler_free(s);

    /* no filter: the draw itself. The node's uniform is the checker's (same RNG state), so
     * only the tokens whose share of the mass covers it (within the slack) pass: with
     * 0.5 0.3 0.15 0.05, a draw of token 0 or 1 (u < 0.8) rules out token 3, and a draw
     * of 2 or 3 (u >= 0.8) rules out token 0 */
    int refused3 = 0, refused0 = 0, honest = 1;
    for (uint64_t seed = 1; seed <= 200; seed++) {
        struct sw_sampler *a = mk(1, 0, 1, 0, 1, 0, seed, 4);
        int32_t t = sw_sampler_sample(a, d);
        sw_sampler_free(a);
        s = mk(1, 0, 1, 0, 1, 0, seed, 4);
        honest &= sw_sampler_check(s, d, t, 1e-3f, &gap, why, sizeof why) == 0;
        sw_sampler_free(s);
        int32_t liar = t <= 1 ? 3 : 0;
        s = mk(1, 0, 1, 0, 1, 0, seed, 4);
        int rc = sw_sampler_check(s, d, liar, 1e-3f, &gap, why, sizeof why);
        sw_sampler_free(s);
        CHECK_MSG(rc == 1 && strstr(why, "draw") != NULL, "seed %llu: drew %d, token %d passed (%s)",
                  (unsigned long long)seed, t, liar, why);
        if (liar == 3) refused3 += rc == 1;
        else refused0 += rc == 1;
    }
    CHECK_MSG(honest, "an honest unfiltered draw was refused");
    CHECK_MSG(refused3 > 50 && refused0 > 5, "both sides of the draw were tried (%d, %d)", refused3, refused0);
}

static void test_bad_params(void)
{
    struct sw_sampler_params p;
    sw_sampler_params_default(&p);
    struct sw_sampler *s = NULL;
    CHECK_EQ_INT(sw_sampler_new(&p, 0, &s), SW_EINVAL);
    p.temperature = NAN;
    CHECK_EQ_INT(sw_sampler_new(&p, 10, &s), SW_EINVAL);
    sw_sampler_params_default(&p);
    p.repeat_last_n = SW_SAMPLER_MAX_WINDOW + 1;
    CHECK_EQ_INT(sw_sampler_new(&p, 10, &s), SW_EINVAL);
    sw_sampler_params_default(&p);
    p.min_p = 2.0f;
    CHECK_EQ_INT(sw_sampler_new(&p, 10, &s), SW_EINVAL);
    CHECK(s == NULL);
    sw_sampler_free(NULL);
}

int main(void)
{
    SW_RUN(test_greedy);
    SW_RUN(test_seed_determinism);
    SW_RUN(test_temperature);
    SW_RUN(test_top_k);
    SW_RUN(test_top_p);
    SW_RUN(test_min_p);
    SW_RUN(test_repeat_penalty);
    SW_RUN(test_state_blob);
    SW_RUN(test_check);
    SW_RUN(test_bad_params);
    return SW_TEST_DONE();
}
