/* test_prefix.c — the stages' prefix cache (issue 15) in one process: block hashes, the
 * new wire fields, then 3 stages over split stories260K on an in-memory network: the second
 * turn of a chat reuses the first's KV at every stage and gives the tokens of
 * single-process generation (and of the same turn without the cache); stages that cache
 * different lengths agree on the least; a cache evicted by a tiny --max-kv budget or by
 * another session is recomputed; a lost stage of a session that reused rebuilds the route;
 * the entry goes back to the route that holds the prefix. */
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "swarm/pipeline.h"
#include "test.h"

/* ================================================================ hashes, wire */

static void test_hashes(void)
{
    int32_t a[80], b[80];
    for (int i = 0; i < 80; i++) a[i] = b[i] = 3 * i + 1;
    b[40] = 999; /* block 2 differs */
    uint8_t ha[5 * SW_PREFIX_HASH_LEN], hb[5 * SW_PREFIX_HASH_LEN];
    CHECK_EQ_INT(sw_prefix_hashes(a, 80, ha, 5), 5);
    CHECK_EQ_INT(sw_prefix_hashes(b, 79, hb, 5), 4); /* full blocks only */
    CHECK_EQ_INT(sw_prefix_hashes(a, 80, ha, 3), 3); /* at most max */
    CHECK_EQ_INT(sw_prefix_hashes(a, 80, ha, 5), 5);
    CHECK(!memcmp(ha, hb, 2 * SW_PREFIX_HASH_LEN));
    /* chained: every block from the first difference on differs */
    for (int k = 2; k < 4; k++) CHECK(memcmp(ha + k * SW_PREFIX_HASH_LEN, hb + k * SW_PREFIX_HASH_LEN, SW_PREFIX_HASH_LEN));
    CHECK_EQ_INT(sw_prefix_hashes(a, 15, ha, 5), 0);
}

static void roundtrip(const struct sw_pipe_msg *m, struct sw_pipe_msg *d, struct sw_buf *b)
{
    sw_buf_init(b);
    CHECK_EQ_INT(sw_pipe_msg_encode(m, b), 0);
    char err[160];
    int rc = sw_pipe_msg_decode(b->data, b->len, d, err, sizeof err);
    CHECK_MSG(rc == 0, "type %u: %s", m->type, err);
    struct sw_pipe_msg t;
    for (size_t cut = 0; cut < b->len; cut++) CHECK(sw_pipe_msg_decode(b->data, cut, &t, NULL, 0) < 0);
}

static void test_wire(void)
{
    uint8_t route[2 * SW_NODE_ID_LEN] = { 1 }, entry[SW_NODE_ID_LEN] = { 2 }, blob[8] = { 3 };
    uint8_t h[3 * SW_PREFIX_HASH_LEN];
    for (size_t i = 0; i < sizeof h; i++) h[i] = (uint8_t)(i * 7);
    struct sw_pipe_msg open = { .type = SW_PIPE_OPEN, .session = 9, .stage = 1, .n_stages = 2, .route = route,
                                .entry = entry, .n_ctx = 100, .n_known = 50, .max_pos = 90, .blob = blob,
                                .blob_len = sizeof blob, .n_hashes = 3, .hashes = h };
    struct sw_pipe_msg d;
    struct sw_buf b;
    roundtrip(&open, &d, &b);
    CHECK_EQ_INT(d.n_hashes, 3);
    CHECK(d.hashes && !memcmp(d.hashes, h, sizeof h));
    /* a hash count over the cap */
    sw_put_be32(b.data + b.len - 4 - sizeof h, SW_PREFIX_MAX_BLOCKS + 1);
    CHECK_EQ_INT(sw_pipe_msg_decode(b.data, b.len, &d, NULL, 0), SW_ETOOBIG);
    sw_buf_free(&b);
    struct sw_pipe_msg ok = { .type = SW_PIPE_OPEN_OK, .session = 9, .stage = 1, .reused = 48 };
    roundtrip(&ok, &d, &b);
    CHECK_EQ_INT(d.reused, 48);
    sw_buf_free(&b);
    struct sw_pipe_msg cl = { .type = SW_PIPE_CLOSE, .session = 9, .n_hashes = 2, .hashes = h };
    roundtrip(&cl, &d, &b);
    CHECK_EQ_INT(d.n_hashes, 2);
    sw_buf_free(&b);
    struct sw_pipe_msg cl0 = { .type = SW_PIPE_CLOSE, .session = 9 };
    roundtrip(&cl0, &d, &b);
    CHECK_EQ_INT(d.n_hashes, 0);
    sw_buf_free(&b);
    struct sw_pipe_msg bad = { .type = SW_PIPE_CLOSE, .session = 9, .n_hashes = SW_PREFIX_MAX_BLOCKS + 1, .hashes = h };
    sw_buf_init(&b);
    CHECK_EQ_INT(sw_pipe_msg_encode(&bad, &b), SW_EINVAL);
    sw_buf_free(&b);
}

/* ================================================================ in-memory network */

#define MAX_NODES 8
#define N_SHARDS 3

struct qmsg {
    struct qmsg *next;
    int from, to;
    uint8_t *data;
    size_t len;
};

struct net;
struct tnode {
    struct net *net;
    int idx;
    uint8_t id[SW_NODE_ID_LEN];
    struct sw_pipe *pipe;
    struct sw_stage *stage;
    int shard, down;
};

struct net {
    struct tnode nodes[MAX_NODES];
    int n;
    struct qmsg *qh, *qt;
    struct qjob { struct qjob *next; int node; struct sw_pipe_job *j; } *jh, *jt;
    uint64_t now;
    int pick_last;        /* h_pick: the last matching node instead of the first */
    int kill_node;        /* killed when ... */
    uint32_t kill_after;  /* ... this many tokens arrived */
    uint32_t tokens_seen;
};

static int node_of(struct net *net, const uint8_t *id)
{
    for (int i = 0; i < net->n; i++)
        if (!memcmp(net->nodes[i].id, id, SW_NODE_ID_LEN)) return i;
    return -1;
}

static int h_send(void *ud, const uint8_t to[SW_NODE_ID_LEN], const uint8_t *p, size_t len)
{
    struct tnode *t = ud;
    int k = node_of(t->net, to);
    if (k < 0 || t->net->nodes[k].down) return SW_ENOTFOUND;
    struct qmsg *m = calloc(1, sizeof *m);
    m->from = t->idx;
    m->to = k;
    m->data = malloc(len);
    memcpy(m->data, p, len);
    m->len = len;
    if (t->net->qt) t->net->qt->next = m;
    else t->net->qh = m;
    t->net->qt = m;
    return 0;
}

static int h_submit(void *ud, struct sw_pipe_job *j)
{
    struct tnode *t = ud;
    struct qjob *q = calloc(1, sizeof *q);
    q->node = t->idx;
    q->j = j;
    if (t->net->jt) t->net->jt->next = q;
    else t->net->jh = q;
    t->net->jt = q;
    return 0;
}

static int h_pick(void *ud, uint32_t shard, const uint8_t *ex, size_t n_ex, uint8_t out[SW_NODE_ID_LEN])
{
    struct net *net = ((struct tnode *)ud)->net;
    int found = -1;
    for (int i = 0; i < net->n; i++) {
        struct tnode *c = &net->nodes[i];
        if (c->down || c->shard != (int)shard) continue;
        int skip = 0;
        for (size_t k = 0; k < n_ex; k++) skip |= !memcmp(ex + k * SW_NODE_ID_LEN, c->id, SW_NODE_ID_LEN);
        if (skip) continue;
        found = i;
        if (!net->pick_last) break;
    }
    if (found < 0) return SW_ENOTFOUND;
    memcpy(out, net->nodes[found].id, SW_NODE_ID_LEN);
    return 0;
}

static int h_live(void *ud, const uint8_t id[SW_NODE_ID_LEN])
{
    struct tnode *t = ud;
    int k = node_of(t->net, id);
    return k >= 0 && !t->net->nodes[k].down;
}

static int h_serves(void *ud, const uint8_t id[SW_NODE_ID_LEN], uint32_t shard)
{
    struct tnode *t = ud;
    int k = node_of(t->net, id);
    return k >= 0 && !t->net->nodes[k].down && t->net->nodes[k].shard == (int)shard;
}

static struct sw_stage *h_stage(void *ud) { return ((struct tnode *)ud)->stage; }

static struct tnode *net_add(struct net *net, int shard, struct sw_stage *st, uint64_t max_kv, uint32_t entries)
{
    struct tnode *t = &net->nodes[net->n];
    memset(t, 0, sizeof *t);
    t->net = net;
    t->idx = net->n++;
    t->id[0] = (uint8_t)(0xb0 + t->idx);
    t->shard = shard;
    t->stage = st;
    struct sw_pipe_config cfg = { .n_shards = N_SHARDS, .max_kv_bytes = max_kv, .idle_ms = 60000, .prefix_entries = entries };
    memcpy(cfg.self_id, t->id, SW_NODE_ID_LEN);
    cfg.host = (struct sw_pipe_host){ h_send, h_submit, h_pick, h_live, h_stage, t, NULL, NULL, NULL, h_serves };
    CHECK_EQ_INT(sw_pipe_new(&cfg, &t->pipe), 0);
    return t;
}

static void net_kill(struct net *net, int k)
{
    net->nodes[k].down = 1;
    for (struct qjob **pp = &net->jh; *pp;) {
        if ((*pp)->node == k) {
            struct qjob *q = *pp;
            *pp = q->next;
            sw_pipe_job_done(net->nodes[k].pipe, q->j, net->now);
            free(q);
        } else {
            pp = &(*pp)->next;
        }
    }
    net->jt = NULL;
    for (struct qjob *q = net->jh; q; q = q->next) net->jt = q;
    for (int i = 0; i < net->n; i++)
        if (i != k && !net->nodes[i].down) sw_pipe_peer_lost(net->nodes[i].pipe, net->nodes[k].id, net->now);
}

static void net_run(struct net *net)
{
    for (uint64_t step = 0; step < 2000000; step++) {
        net->now += 50;
        if (net->qh) {
            struct qmsg *m = net->qh;
            net->qh = m->next;
            if (!net->qh) net->qt = NULL;
            if (!net->nodes[m->to].down)
                sw_pipe_receive(net->nodes[m->to].pipe, net->nodes[m->from].id, m->data, m->len, net->now);
            free(m->data);
            free(m);
        } else if (net->jh) {
            struct qjob *q = net->jh;
            net->jh = q->next;
            if (!net->jh) net->jt = NULL;
            sw_pipe_job_run(q->j);
            sw_pipe_job_done(net->nodes[q->node].pipe, q->j, net->now);
            free(q);
        } else {
            return;
        }
    }
}

static void net_free(struct net *net)
{
    net_run(net);
    for (int i = 0; i < net->n; i++) sw_pipe_free(net->nodes[i].pipe);
}

/* ================================================================ model */

static struct sw_stage *g_st[N_SHARDS], *g_rep[N_SHARDS];
static struct sw_chain *g_chain;
static struct sw_tok *g_tok;
static uint32_t g_vocab;
static uint64_t g_kv_per_token[N_SHARDS];

static int setup_model(void)
{
    const char *shared = sw_test_shared_data(), *tmp = sw_test_tmpdir();
    if (!shared || !tmp) return 0;
    char model[600], err[512], path[700];
    snprintf(model, sizeof model, "%s/models/stories260K.gguf", shared);
    struct sw_split_opts so = { .n_shards = N_SHARDS, .out_dir = tmp };
    int rc = sw_gguf_split(model, &so, NULL, err, sizeof err);
    CHECK_MSG(rc == 0, "split: %s", err);
    struct sw_stage_opts o = { .layer_first = -1, .layer_last = -1, .n_threads = 1, .max_seqs = 64 };
    for (int k = 0; k < N_SHARDS && !rc; k++) {
        snprintf(path, sizeof path, "%s/shard-%d.gguf", tmp, k);
        rc = sw_stage_open(path, &o, &g_st[k], err, sizeof err);
        if (!rc) rc = sw_stage_open(path, &o, &g_rep[k], err, sizeof err);
        CHECK_MSG(rc == 0, "stage %d: %s", k, err);
        if (!rc) g_kv_per_token[k] = sw_stage_info(g_st[k])->kv_bytes_per_token;
    }
    const char *whole[1] = { model };
    if (!rc) rc = sw_chain_open(whole, 1, &o, &g_chain, err, sizeof err);
    if (!rc) rc = sw_tok_from_gguf(sw_chain_gguf(g_chain), &g_tok, err, sizeof err);
    CHECK_MSG(rc == 0, "model: %s", err);
    if (!rc) g_vocab = sw_chain_n_vocab(g_chain);
    return rc == 0;
}

/* Greedy single-process tokens of a prompt. */
static void reference(const int32_t *prompt, uint32_t n_prompt, uint32_t n_gen, int32_t *toks)
{
    float *lg = malloc(g_vocab * sizeof *lg);
    CHECK_EQ_INT(sw_chain_seq_new(g_chain, 777), 0);
    CHECK_EQ_INT(sw_chain_forward(g_chain, 777, 0, n_prompt, prompt, lg, 0), 0);
    for (uint32_t i = 0; i < n_gen; i++) {
        int32_t t = 0;
        for (uint32_t v = 1; v < g_vocab; v++)
            if (lg[v] > lg[t]) t = (int32_t)v;
        toks[i] = t;
        if (i + 1 < n_gen) CHECK_EQ_INT(sw_chain_forward(g_chain, 777, n_prompt + i, 1, &t, lg, 0), 0);
    }
    sw_chain_seq_free(g_chain, 777);
    free(lg);
}

#define MAX_GEN 64

struct got {
    int32_t toks[MAX_GEN];
    uint32_t n, reused;
    int ended, rc;
    char msg[512];
    struct net *net;
};

static void cb_token(void *ud, const struct sw_pipe_token_ev *ev)
{
    struct got *g = ud;
    if (g->n < MAX_GEN) g->toks[g->n++] = ev->token;
    g->reused = ev->reused;
    struct net *net = g->net;
    if (++net->tokens_seen == net->kill_after && net->kill_node >= 0) {
        int k = net->kill_node;
        net->kill_node = -1;
        net_kill(net, k);
    }
}

static void cb_end(void *ud, uint64_t session, int rc, const char *msg)
{
    (void)session;
    struct got *g = ud;
    g->ended = 1;
    g->rc = rc;
    snprintf(g->msg, sizeof g->msg, "%s", msg ? msg : "");
}

/* Runs one greedy session to its end: 0 when it finished, tokens in g. */
static int run_session(struct net *net, const int32_t *prompt, uint32_t n_prompt, uint32_t n_gen, int no_cache,
                       struct got *g)
{
    struct sw_sampler_params sp;
    sw_sampler_params_default(&sp);
    sp.temperature = 0;
    struct sw_sampler *smp = NULL;
    CHECK_EQ_INT(sw_sampler_new(&sp, g_vocab, &smp), 0);
    sw_sampler_accept(smp, prompt, n_prompt);
    struct sw_buf blob;
    sw_buf_init(&blob);
    sw_sampler_save(smp, &blob);
    sw_sampler_free(smp);
    memset(g, 0, sizeof *g);
    g->net = net;
    struct sw_pipe_request req = { .prompt = prompt, .n_prompt = n_prompt, .n_predict = n_gen,
                                   .sampler_blob = blob.data, .sampler_blob_len = blob.len, .chunk = 16,
                                   .ignore_eos = 1, .no_prefix_cache = no_cache };
    struct sw_pipe_session_cb cb = { cb_token, cb_end, g };
    uint64_t sid;
    char msg[256];
    int rc = sw_pipe_open(net->nodes[0].pipe, &req, &cb, net->now, &sid, msg, sizeof msg);
    sw_buf_free(&blob);
    CHECK_MSG(rc == 0, "open: %s", msg);
    if (rc) return rc;
    net_run(net);
    CHECK_MSG(g->ended && g->rc == 0, "session: rc %d %s", g->rc, g->msg);
    return g->ended ? g->rc : SW_ETIMEDOUT;
}

/* A client + one node per shard (max_kv / entries per stage; 0: defaults) + replicas. */
static void make_net(struct net *net, const uint64_t *max_kv, const uint32_t *entries, int replicas)
{
    memset(net, 0, sizeof *net);
    net->kill_node = -1;
    net_add(net, -1, NULL, 0, 0);
    for (int k = 0; k < N_SHARDS; k++) net_add(net, k, g_st[k], max_kv ? max_kv[k] : 0, entries ? entries[k] : 0);
    for (int k = 0; replicas && k < N_SHARDS; k++) net_add(net, k, g_rep[k], 0, 0);
}

/* Turn 1 of a chat, then turn 2 = turn 1's prompt + its answer + a new message. */
#define N1 40
#define N_TURN2 24
static int32_t *g_p1, *g_p2;
static uint32_t g_n1, g_n2;

static void make_turns(void)
{
    const char *t1 = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
                     "One day, she saw a big red ball.";
    size_t n = 0;
    sw_tok_encode(g_tok, t1, strlen(t1), SW_TOK_ADD_BOS, &g_p1, &n);
    g_n1 = (uint32_t)n;
    int32_t ans[N1];
    reference(g_p1, g_n1, N1, ans);
    int32_t *extra = NULL;
    const char *t2 = " Then her mom called her home for dinner.";
    sw_tok_encode(g_tok, t2, strlen(t2), 0, &extra, &n);
    g_n2 = g_n1 + N1 + (uint32_t)n;
    g_p2 = malloc(g_n2 * sizeof *g_p2);
    memcpy(g_p2, g_p1, g_n1 * sizeof *g_p1);
    memcpy(g_p2 + g_n1, ans, sizeof ans);
    memcpy(g_p2 + g_n1 + N1, extra, n * sizeof *extra);
    free(extra);
}

/* The second turn reuses the first's KV at every stage (all but the positions after the
 * last whole block of what turn 1 computed), and its tokens equal single-process and the
 * same turn without the cache; turn 1 itself reused nothing. */
static void test_second_turn(void)
{
    int32_t ref[N_TURN2];
    reference(g_p2, g_n2, N_TURN2, ref);
    struct net net;
    make_net(&net, NULL, NULL, 0);
    struct got g1, g2, g3;
    run_session(&net, g_p1, g_n1, N1, 0, &g1);
    CHECK_EQ_INT(g1.reused, 0);
    for (int k = 1; k <= N_SHARDS; k++) CHECK_EQ_INT(sw_pipe_stats(net.nodes[k].pipe).prefix_entries, 1);
    run_session(&net, g_p2, g_n2, N_TURN2, 0, &g2);
    uint32_t computed1 = g_n1 + N1 - 1; /* turn 1's last token was never fed */
    CHECK_EQ_INT(g2.reused, computed1 / SW_PREFIX_BLOCK * SW_PREFIX_BLOCK);
    CHECK(g2.reused >= 64);
    CHECK_EQ_INT(g2.n, N_TURN2);
    CHECK_EQ_MEM(g2.toks, ref, sizeof ref);
    for (int k = 1; k <= N_SHARDS; k++) {
        struct sw_pipe_stats st = sw_pipe_stats(net.nodes[k].pipe);
        CHECK_EQ_INT(st.prefix_hits, 1);
        CHECK_EQ_INT(st.prefix_entries, 1); /* turn 2 replaced turn 1 (it extends it) */
    }
    /* the same turn without the cache: computed whole, same tokens */
    run_session(&net, g_p2, g_n2, N_TURN2, 1, &g3);
    CHECK_EQ_INT(g3.reused, 0);
    CHECK_EQ_MEM(g3.toks, ref, sizeof ref);
    /* the same prompt again: all but its last token come from the cache */
    run_session(&net, g_p2, g_n2, N_TURN2, 0, &g3);
    CHECK_EQ_INT(g3.reused, (g_n2 - 1) / SW_PREFIX_BLOCK * SW_PREFIX_BLOCK);
    CHECK_EQ_MEM(g3.toks, ref, sizeof ref);
    net_free(&net);
}

/* Stage 1 keeps one entry; a session C sharing only turn 1's first block replaced it there,
 * while stages 0 and 2 still hold turn 1: the route computes from the least (one block),
 * the stages that hold more cut back to it; same tokens. Then a --max-kv budget that fits
 * one session and no cache at stage 2: the entry is evicted to admit the next session,
 * which computes all (reused 0) and still gives the same tokens. */
static void test_disagree_and_evict(void)
{
    int32_t ref[N_TURN2];
    reference(g_p2, g_n2, N_TURN2, ref);
    struct net net;
    uint32_t entries[N_SHARDS] = { 0, 1, 0 };
    make_net(&net, NULL, entries, 0);
    struct got g;
    run_session(&net, g_p1, g_n1, N1, 0, &g);
    int32_t pc[40];
    memcpy(pc, g_p1, sizeof pc);
    for (int i = 20; i < 40; i++) pc[i] = (pc[i] + 7) % (int32_t)g_vocab; /* shares block 0 only */
    run_session(&net, pc, 40, 8, 0, &g);
    CHECK_EQ_INT(sw_pipe_stats(net.nodes[2].pipe).prefix_entries, 1);
    run_session(&net, g_p2, g_n2, N_TURN2, 0, &g);
    CHECK_EQ_INT(g.reused, SW_PREFIX_BLOCK);
    CHECK_EQ_MEM(g.toks, ref, sizeof ref);
    net_free(&net);

    /* room for a cached entry (its cache grew to 256 positions) or for turn 2's context,
     * not for both */
    uint64_t kv[N_SHARDS] = { 0, 0, g_kv_per_token[2] * 300 };
    CHECK(256 + g_n2 + N_TURN2 > 300);
    make_net(&net, kv, NULL, 0);
    run_session(&net, g_p1, g_n1, N1, 0, &g);
    CHECK_EQ_INT(sw_pipe_stats(net.nodes[3].pipe).prefix_entries, 1);
    run_session(&net, g_p2, g_n2, N_TURN2, 0, &g);
    struct sw_pipe_stats st = sw_pipe_stats(net.nodes[3].pipe);
    CHECK_EQ_INT(st.prefix_evictions, 1);
    CHECK_EQ_INT(st.prefix_hits, 0);
    CHECK_EQ_INT(g.reused, 0);
    CHECK_EQ_MEM(g.toks, ref, sizeof ref);
    CHECK_EQ_INT(sw_pipe_stats(net.nodes[1].pipe).prefix_hits, 1); /* stage 0 had it, cut back to 0 */
    net_free(&net);
}

/* With replicas for every shard: turn 2 goes back to turn 1's nodes although the picker
 * now prefers the replicas; then the stage-1 node dies mid-turn: the session, which reused
 * a prefix (nothing upstream to replay from), rebuilds its route and still gives the
 * tokens of single-process. */
static void test_route_and_failover(void)
{
    int32_t ref[N_TURN2];
    reference(g_p2, g_n2, N_TURN2, ref);
    struct net net;
    make_net(&net, NULL, NULL, 1);
    struct got g;
    run_session(&net, g_p1, g_n1, N1, 0, &g);
    net.pick_last = 1;
    run_session(&net, g_p2, g_n2, N_TURN2, 0, &g);
    CHECK(g.reused >= 64);
    CHECK_EQ_MEM(g.toks, ref, sizeof ref);
    for (int k = 1; k <= N_SHARDS; k++) CHECK_EQ_INT(sw_pipe_stats(net.nodes[k].pipe).prefix_hits, 1);
    /* again, killing stage 1's node after 5 tokens */
    net.pick_last = 0;
    net.kill_node = 2;
    net.kill_after = net.tokens_seen + 5;
    run_session(&net, g_p2, g_n2, N_TURN2, 0, &g);
    CHECK_EQ_INT(g.n, N_TURN2);
    CHECK_EQ_MEM(g.toks, ref, sizeof ref);
    CHECK(net.nodes[2].down);
    net_free(&net);
}

int main(void)
{
    if (!getenv("SW_PIPE_DEBUG")) sw_log_set(NULL, NULL, SW_LOG_ERROR);
    SW_RUN(test_hashes);
    SW_RUN(test_wire);
    if (!setup_model()) {
        if (sw_test_failures) return SW_TEST_DONE();
        SW_TEST_SKIP("../shared/data/models/stories260K.gguf is absent: model tests skipped (hash and wire tests passed)");
    }
    make_turns();
    SW_RUN(test_second_turn);
    SW_RUN(test_disagree_and_evict);
    SW_RUN(test_route_and_failover);
    free(g_p1);
    free(g_p2);
    for (int k = 0; k < N_SHARDS; k++) {
        sw_stage_free(g_st[k]);
        sw_stage_free(g_rep[k]);
    }
    sw_chain_free(g_chain);
    sw_tok_free(g_tok);
    return SW_TEST_DONE();
}
