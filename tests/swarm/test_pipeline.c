/* test_pipeline.c — the pipeline engine in one process (the wire codec is
 * test_pipeline_wire.c): stages over the split shards of stories260K wired by an
 * in-memory network: equality with single-process generation (200 greedy tokens, logits
 * within 1e-4), 8 concurrent sessions, batched decode, refusal, bad input for one session only, failover of
 * a killed stage (first, middle, last) with identical tokens, cancellation, eviction. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "swarm/pipeline.h"
#include "test.h"

/* ================================================================ in-memory network */

#define MAX_NODES 12

struct qmsg {
    struct qmsg *next;
    int from, to;
    uint8_t *data;
    size_t len;
};

struct qjob {
    struct qjob *next;
    int node;
    struct sw_pipe_job *j;
};

struct net;
struct tnode {
    struct net *net;
    int idx;
    uint8_t id[SW_NODE_ID_LEN];
    struct sw_pipe *pipe;
    struct sw_stage *stage; /* borrowed from the net */
    int shard;              /* -1: client */
    int down;
    int frozen;             /* stalled: live in the view, but nothing in or out */
};

struct net {
    struct tnode nodes[MAX_NODES];
    int n;
    struct qmsg *qh, *qt;
    struct qjob *jh, *jt;
    uint64_t now;
    uint64_t n_msgs;
    /* hooks */
    int drop_node;          /* drop the stage of this node when ... */
    int freeze_node;        /* freeze this node when ... */
    int kill_node;          /* kill this node when ... */
    uint32_t kill_after;    /* ... this many tokens were received by any session */
    uint32_t tokens_seen;
    int hold_node;          /* a job of this node stays queued (a long step) while hold */
    int hold;
    uint64_t job_us;        /* simulated compute time of every job (0: none) */
    int unshared;           /* host.shared_compute says no (one node per machine) */
    int lose_open_to;       /* the first OPEN sent to this node is lost (no connection yet) */
    int opens_lost;
    uint64_t wake_at[MAX_NODES]; /* host.wake asked: tick the node then (0: none) */
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
    struct net *net = t->net;
    int k = node_of(net, to);
    if (k < 0 || net->nodes[k].down) return SW_ENOTFOUND;
    if (t->frozen || net->nodes[k].frozen) return 0; /* swallowed */
    if (k == net->lose_open_to && !net->opens_lost && len > 2 && p[2] == SW_PIPE_OPEN) {
        net->opens_lost++;
        return SW_ENOTFOUND; /* as a node's send with no connection to the peer yet */
    }
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

static int h_pick(void *ud, uint32_t shard, const uint8_t *exclude, size_t n_exclude, uint8_t id_out[SW_NODE_ID_LEN])
{
    struct tnode *t = ud;
    struct net *net = t->net;
    for (int i = 0; i < net->n; i++) {
        struct tnode *c = &net->nodes[i];
        if (c->down || c->shard != (int)shard) continue;
        int ex = 0;
        for (size_t k = 0; k < n_exclude; k++) ex |= !memcmp(exclude + k * SW_NODE_ID_LEN, c->id, SW_NODE_ID_LEN);
        if (ex) continue;
        memcpy(id_out, c->id, SW_NODE_ID_LEN);
        return 0;
    }
    return SW_ENOTFOUND;
}

static int h_live(void *ud, const uint8_t id[SW_NODE_ID_LEN])
{
    struct tnode *t = ud;
    int k = node_of(t->net, id);
    return k >= 0 && !t->net->nodes[k].down;
}

static struct sw_stage *h_stage(void *ud) { return ((struct tnode *)ud)->stage; }

static int h_shared(void *ud) { return !((struct tnode *)ud)->net->unshared; }

static void h_wake(void *ud, uint64_t at_us)
{
    struct tnode *t = ud;
    uint64_t *w = &t->net->wake_at[t->idx];
    if (!*w || at_us < *w) *w = at_us;
}

static struct tnode *net_add(struct net *net, int shard, struct sw_stage *st, uint32_t n_shards, uint64_t max_kv)
{
    struct tnode *t = &net->nodes[net->n];
    memset(t, 0, sizeof *t);
    t->net = net;
    t->idx = net->n++;
    memset(t->id, 0, sizeof t->id);
    t->id[0] = (uint8_t)(0xa0 + t->idx);
    t->id[31] = (uint8_t)t->idx;
    t->shard = shard;
    t->stage = st;
    struct sw_pipe_config cfg = { .n_shards = n_shards, .max_kv_bytes = max_kv, .idle_ms = 60000 };
    memcpy(cfg.self_id, t->id, SW_NODE_ID_LEN);
    cfg.host = (struct sw_pipe_host){ h_send, h_submit, h_pick, h_live, h_stage, t, h_wake, NULL, h_shared, NULL };
    CHECK_EQ_INT(sw_pipe_new(&cfg, &t->pipe), 0);
    return t;
}

static void net_kill(struct net *net, int k)
{
    struct tnode *t = &net->nodes[k];
    t->down = 1;
    /* its queued compute never finishes; messages to it are lost */
    for (struct qjob **pp = &net->jh; *pp;) {
        if ((*pp)->node == k) {
            struct qjob *q = *pp;
            *pp = q->next;
            sw_pipe_job_done(t->pipe, q->j, net->now);
            free(q);
        } else {
            pp = &(*pp)->next;
        }
    }
    net->jt = NULL;
    for (struct qjob *q = net->jh; q; q = q->next) net->jt = q;
    for (int i = 0; i < net->n; i++)
        if (i != k && !net->nodes[i].down) sw_pipe_peer_lost(net->nodes[i].pipe, t->id, net->now);
}

/* Delivers messages and runs compute until nothing is left (or max_steps). */
static void net_run(struct net *net, uint64_t max_steps)
{
    for (uint64_t step = 0; step < max_steps; step++) {
        net->now += 50; /* 50 µs per step */
        if (net->qh) {
            struct qmsg *m = net->qh;
            net->qh = m->next;
            if (!net->qh) net->qt = NULL;
            if (!net->nodes[m->to].down)
                sw_pipe_receive(net->nodes[m->to].pipe, net->nodes[m->from].id, m->data, m->len, net->now);
            net->n_msgs++;
            free(m->data);
            free(m);
            continue;
        }
        if (net->jh) {
            if (net->hold && net->jh->node == net->hold_node) return; /* still computing */
            struct qjob *q = net->jh;
            net->jh = q->next;
            if (!net->jh) net->jt = NULL;
            sw_pipe_job_run(q->j);
            net->now += net->job_us;
            sw_pipe_job_done(net->nodes[q->node].pipe, q->j, net->now);
            free(q);
            continue;
        }
        /* nothing to deliver or compute: the earliest wake a node asked for */
        int k = -1;
        for (int i = 0; i < net->n; i++)
            if (net->wake_at[i] && (k < 0 || net->wake_at[i] < net->wake_at[k])) k = i;
        if (k < 0) return;
        if (net->wake_at[k] > net->now) net->now = net->wake_at[k];
        net->wake_at[k] = 0;
        if (!net->nodes[k].down) sw_pipe_tick(net->nodes[k].pipe, net->now);
    }
}

static void net_free(struct net *net)
{
    while (net->qh) {
        struct qmsg *m = net->qh;
        net->qh = m->next;
        free(m->data);
        free(m);
    }
    while (net->jh) { /* a job done may queue another (h_submit appends) */
        struct qjob *q = net->jh;
        net->jh = q->next;
        if (!net->jh) net->jt = NULL;
        sw_pipe_job_done(net->nodes[q->node].pipe, q->j, net->now);
        free(q);
    }
    for (int i = 0; i < net->n; i++) sw_pipe_free(net->nodes[i].pipe);
}

/* ================================================================ model fixtures */

#define N_SHARDS 4
#define N_GEN 200

static char g_dir[512];
static struct sw_stage *g_stages[N_SHARDS];     /* one per shard */
static struct sw_stage *g_replicas[N_SHARDS];   /* a second node per shard */
static struct sw_chain *g_chain;                /* the single-process reference */
static struct sw_tok *g_tok;
static uint32_t g_vocab;
static int g_have_model;

static int setup_model(void)
{
    const char *shared = sw_test_shared_data();
    if (!shared) return 0;
    char model[600], err[512];
    snprintf(model, sizeof model, "%s/models/stories260K.gguf", shared);
    const char *tmp = sw_test_tmpdir();
    if (!tmp) return 0;
    snprintf(g_dir, sizeof g_dir, "%s", tmp);
    struct sw_split_opts so = { .n_shards = N_SHARDS, .out_dir = g_dir };
    int rc = sw_gguf_split(model, &so, NULL, err, sizeof err);
    CHECK_MSG(rc == 0, "split: %s", err);
    if (rc) return 0;
    struct sw_stage_opts o = { .layer_first = -1, .layer_last = -1, .n_threads = 1, .max_seqs = 64 };
    const char *paths[N_SHARDS];
    char pbuf[N_SHARDS][700];
    for (int k = 0; k < N_SHARDS; k++) {
        snprintf(pbuf[k], sizeof pbuf[k], "%s/shard-%d.gguf", g_dir, k);
        paths[k] = pbuf[k];
        rc = sw_stage_open(pbuf[k], &o, &g_stages[k], err, sizeof err);
        CHECK_MSG(rc == 0, "stage %d: %s", k, err);
        rc = sw_stage_open(pbuf[k], &o, &g_replicas[k], err, sizeof err);
        CHECK_MSG(rc == 0, "replica %d: %s", k, err);
        if (rc) return 0;
    }
    /* the reference: the whole model, as `shardswarm generate -m stories260K.gguf` runs it */
    const char *whole[1] = { model };
    (void)paths;
    rc = sw_chain_open(whole, 1, &o, &g_chain, err, sizeof err);
    CHECK_MSG(rc == 0, "chain: %s", err);
    if (rc) return 0;
    g_vocab = sw_chain_n_vocab(g_chain);
    rc = sw_tok_from_gguf(sw_chain_gguf(g_chain), &g_tok, err, sizeof err);
    CHECK_MSG(rc == 0, "tokenizer: %s", err);
    return rc == 0;
}

static void teardown_model(void)
{
    for (int k = 0; k < N_SHARDS; k++) {
        sw_stage_free(g_stages[k]);
        sw_stage_free(g_replicas[k]);
    }
    sw_chain_free(g_chain);
    sw_tok_free(g_tok);
}

static int32_t *encode(const char *text, uint32_t *n)
{
    int32_t *ids = NULL;
    size_t nn = 0;
    sw_tok_encode(g_tok, text, strlen(text), SW_TOK_ADD_BOS, &ids, &nn);
    *n = (uint32_t)nn;
    return ids;
}

/* Single-process generation (what cmd_generate does): tokens and each step's logits. */
static void reference(const int32_t *prompt, uint32_t n_prompt, const struct sw_sampler_params *sp, uint32_t n_gen,
                      int32_t *toks, float *logits_all)
{
    struct sw_sampler *smp = NULL;
    CHECK_EQ_INT(sw_sampler_new(sp, g_vocab, &smp), 0);
    sw_sampler_accept(smp, prompt, n_prompt);
    float *lg = malloc(g_vocab * sizeof *lg);
    uint64_t seq = 777;
    CHECK_EQ_INT(sw_chain_seq_new(g_chain, seq), 0);
    CHECK_EQ_INT(sw_chain_forward(g_chain, seq, 0, n_prompt, prompt, lg, 0), 0);
    for (uint32_t i = 0; i < n_gen; i++) {
        if (logits_all) memcpy(logits_all + (size_t)i * g_vocab, lg, g_vocab * sizeof *lg);
        int32_t t = sw_sampler_sample(smp, lg);
        toks[i] = t;
        if (i + 1 < n_gen) CHECK_EQ_INT(sw_chain_forward(g_chain, seq, n_prompt + i, 1, &t, lg, 0), 0);
    }
    sw_chain_seq_free(g_chain, seq);
    sw_sampler_free(smp);
    free(lg);
}

/* What one session received. */
struct got {
    int32_t toks[N_GEN + 8];
    uint32_t n;
    float *logits;    /* N_GEN x vocab when asked */
    int ended, rc;
    char msg[512];
    struct net *net;
    uint64_t ttft_us;
    double tps;
};

static void cb_token(void *ud, const struct sw_pipe_token_ev *ev)
{
    struct got *g = ud;
    CHECK_EQ_INT(ev->index, g->n);
    if (g->n < N_GEN + 8) {
        if (g->logits && ev->logits && g->n < N_GEN) memcpy(g->logits + (size_t)g->n * g_vocab, ev->logits, g_vocab * 4);
        g->toks[g->n++] = ev->token;
    }
    g->ttft_us = ev->ttft_us;
    g->tps = ev->tokens_per_s;
    if (g->net) {
        g->net->tokens_seen++;
        if (g->net->drop_node >= 0 && g->net->tokens_seen == g->net->kill_after) {
            struct tnode *t = &g->net->nodes[g->net->drop_node];
            g->net->drop_node = -1;
            CHECK_EQ_INT(sw_pipe_drop_stage(t->pipe, "switching to another shard"), 1);
        }
        if (g->net->freeze_node >= 0 && g->net->tokens_seen == g->net->kill_after) {
            g->net->nodes[g->net->freeze_node].frozen = 1;
            g->net->freeze_node = -1;
        }
        if (g->net->kill_node >= 0 && g->net->tokens_seen == g->net->kill_after) {
            int k = g->net->kill_node;
            g->net->kill_node = -1;
            net_kill(g->net, k);
        }
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

static int open_session(struct net *net, struct tnode *entry, const int32_t *prompt, uint32_t n_prompt,
                        const struct sw_sampler_params *sp, uint32_t n_gen, uint8_t dtype, int want_logits,
                        struct got *g, uint64_t *sid, char *msg, size_t msg_len)
{
    struct sw_sampler *smp = NULL;
    CHECK_EQ_INT(sw_sampler_new(sp, g_vocab, &smp), 0);
    sw_sampler_accept(smp, prompt, n_prompt);
    struct sw_buf blob;
    sw_buf_init(&blob);
    sw_sampler_save(smp, &blob);
    sw_sampler_free(smp);
    struct sw_pipe_request req = { .prompt = prompt, .n_prompt = n_prompt, .n_predict = n_gen,
                                   .sampler_blob = blob.data, .sampler_blob_len = blob.len, .dtype = dtype,
                                   .chunk = 3, .want_logits = want_logits, .ignore_eos = 1 };
    struct sw_pipe_session_cb cb = { cb_token, cb_end, g };
    g->net = net;
    int rc = sw_pipe_open(entry->pipe, &req, &cb, net->now, sid, msg, msg_len);
    sw_buf_free(&blob);
    return rc;
}

/* A greedy session's prompt (encoded text), its sampler parameters and the single-process
 * reference of its first n_gen tokens. */
static int32_t *greedy_case(const char *text, uint32_t n_gen, uint32_t *n_prompt, struct sw_sampler_params *sp,
                            int32_t *ref)
{
    int32_t *prompt = encode(text, n_prompt);
    sw_sampler_params_default(sp);
    sp->temperature = 0;
    reference(prompt, *n_prompt, sp, n_gen, ref, NULL);
    return prompt;
}

/* A client entry + one node per shard (+ replicas when asked). */
static struct tnode *make_net(struct net *net, int replicas, uint64_t max_kv_first)
{
    memset(net, 0, sizeof *net);
    net->kill_node = -1;
    net->freeze_node = -1;
    net->drop_node = -1;
    net->lose_open_to = -1;
    struct tnode *entry = net_add(net, -1, NULL, N_SHARDS, 0);
    for (int k = 0; k < N_SHARDS; k++) net_add(net, k, g_stages[k], N_SHARDS, k == 0 ? max_kv_first : 0);
    if (replicas)
        for (int k = 0; k < N_SHARDS; k++) net_add(net, k, g_replicas[k], N_SHARDS, 0);
    return entry;
}

/* make_net without replicas, every stage engine batching at most batch_max (0: default),
 * holding decode steps up to coalesce_pct (0: default; 1000: never). */
static struct tnode *make_net_coalesce(struct net *net, uint32_t batch_max, uint32_t coalesce_pct)
{
    struct tnode *entry = make_net(net, 0, 0);
    for (int k = 1; k <= N_SHARDS; k++) {
        struct tnode *t = &net->nodes[k];
        struct sw_pipe_config cfg = { .n_shards = N_SHARDS, .idle_ms = 60000, .batch_max = batch_max,
                                      .coalesce_pct = coalesce_pct };
        memcpy(cfg.self_id, t->id, SW_NODE_ID_LEN);
        cfg.host = (struct sw_pipe_host){ h_send, h_submit, h_pick, h_live, h_stage, t, h_wake, NULL, h_shared, NULL };
        sw_pipe_free(t->pipe);
        CHECK_EQ_INT(sw_pipe_new(&cfg, &t->pipe), 0);
    }
    return entry;
}

static struct tnode *make_net_batch(struct net *net, uint32_t batch_max) { return make_net_coalesce(net, batch_max, 0); }

/* Sessions that decode round the ring at equal speed meet only when a stage holds a step
 * for the one due behind it (coalescing): with 5 ms steps, a second session opened 5
 * tokens after the first is soon batched with it at every stage, both with the tokens of
 * single-process; without the hold they never batch; a lone session is never held. */
static void test_coalesce(void)
{
    enum { NS = 2, NG = 40 };
    const char *texts[NS] = { "Once upon a time", "The dog" };
    struct sw_sampler_params sp;
    sw_sampler_params_default(&sp);
    sp.temperature = 0;
    int32_t *prompts[NS], refs[NS][NG];
    uint32_t np[NS];
    for (int i = 0; i < NS; i++) {
        prompts[i] = encode(texts[i], &np[i]);
        reference(prompts[i], np[i], &sp, NG, refs[i], NULL);
    }
    uint64_t batched[3] = { 0, 0, 0 }, holds[3] = { 0, 0, 0 }, t_end[3] = { 0, 0, 0 }, held[3] = { 0, 0, 0 };
    for (int on = 0; on <= 2; on++) { /* off, on, on where the stages do not share compute */
        struct net net;
        struct tnode *entry = make_net_coalesce(&net, 0, on ? 0 : 1000);
        net.job_us = 5000;
        net.unshared = on == 2;
        struct got g[NS];
        memset(g, 0, sizeof g);
        uint64_t sid;
        char msg[256];
        CHECK_EQ_INT(open_session(&net, entry, prompts[0], np[0], &sp, NG, SW_PIPE_F32, 0, &g[0], &sid, msg, sizeof msg), 0);
        for (int i = 0; i < 1000000 && g[0].n < 5; i++) net_run(&net, 1);
        CHECK_EQ_INT(g[0].n, 5);
        CHECK_EQ_INT(open_session(&net, entry, prompts[1], np[1], &sp, NG, SW_PIPE_F32, 0, &g[1], &sid, msg, sizeof msg), 0);
        net_run(&net, 20000000);
        for (int i = 0; i < NS; i++) {
            CHECK_MSG(g[i].ended && g[i].rc == 0 && g[i].n == NG, "session %d: %u tokens rc %d %s", i, g[i].n, g[i].rc,
                      g[i].msg);
            CHECK_MSG(!memcmp(g[i].toks, refs[i], sizeof refs[i]), "session %d: tokens differ (coalescing %d)", i, on);
        }
        for (int k = 1; k <= N_SHARDS; k++) {
            struct sw_pipe_stats st = sw_pipe_stats(net.nodes[k].pipe);
            batched[on] += st.batched_jobs;
            holds[on] += st.coalesce_holds;
            held[on] += st.coalesce_held_us;
        }
        t_end[on] = net.now;
        net_free(&net);
    }
    fprintf(stderr, "  2 sessions, 4 stages, 5 ms steps: batched jobs %llu without holds, %llu with (%llu holds); "
            "%.1f vs %.1f ms in all\n", (unsigned long long)batched[0], (unsigned long long)batched[1],
            (unsigned long long)holds[1], t_end[0] / 1e3, t_end[1] / 1e3);
    fprintf(stderr, "  held on average %.2f ms (shared), %.2f ms (unshared: %llu batched jobs, %llu holds, %.1f ms)\n",
            holds[1] ? held[1] / 1e3 / (double)holds[1] : 0.0, holds[2] ? held[2] / 1e3 / (double)holds[2] : 0.0,
            (unsigned long long)batched[2], (unsigned long long)holds[2], t_end[2] / 1e3);
    CHECK_EQ_U64(holds[0], 0);
    /* one node per machine: no session waits for one behind it (the stages keep working on
     * different sessions at once); only steps due together are gathered: short holds */
    CHECK_MSG(!holds[2] || held[2] / holds[2] <= 2000, "unshared: holds of %llu us on average",
              (unsigned long long)(held[2] / holds[2]));
    /* after aligning, nearly every decode step of the second session goes with the first's */
    CHECK_MSG(batched[1] >= (uint64_t)N_SHARDS * (NG - 5) / 2, "only %llu batched jobs with coalescing",
              (unsigned long long)batched[1]);
    CHECK_MSG(batched[0] < batched[1] / 4, "%llu batched jobs without coalescing", (unsigned long long)batched[0]);
    CHECK_MSG(t_end[1] < t_end[0], "coalescing took longer: %llu vs %llu us", (unsigned long long)t_end[1],
              (unsigned long long)t_end[0]);

    /* three sessions opened one after another: they end up batched too (no circle of holds) */
    {
        struct net net;
        struct tnode *entry = make_net_coalesce(&net, 0, 0);
        net.job_us = 5000;
        struct got g3[3];
        memset(g3, 0, sizeof g3);
        uint64_t sid;
        char msg[256];
        int32_t ref3[NG];
        const char *t3 = "Lily and Ben";
        uint32_t np3;
        int32_t *p3 = encode(t3, &np3);
        reference(p3, np3, &sp, NG, ref3, NULL);
        CHECK_EQ_INT(open_session(&net, entry, prompts[0], np[0], &sp, NG, SW_PIPE_F32, 0, &g3[0], &sid, msg, sizeof msg), 0);
        for (int i = 0; i < 1000000 && g3[0].n < 3; i++) net_run(&net, 1);
        CHECK_EQ_INT(open_session(&net, entry, prompts[1], np[1], &sp, NG, SW_PIPE_F32, 0, &g3[1], &sid, msg, sizeof msg), 0);
        for (int i = 0; i < 1000000 && g3[0].n < 6; i++) net_run(&net, 1);
        CHECK_EQ_INT(open_session(&net, entry, p3, np3, &sp, NG, SW_PIPE_F32, 0, &g3[2], &sid, msg, sizeof msg), 0);
        net_run(&net, 20000000);
        for (int i = 0; i < 3; i++)
            CHECK_MSG(g3[i].ended && g3[i].rc == 0 && !memcmp(g3[i].toks, i < 2 ? refs[i] : ref3, sizeof ref3),
                      "3 sessions: session %d rc %d %s", i, g3[i].rc, g3[i].msg);
        uint64_t bj = 0, be = 0;
        for (int k = 1; k <= N_SHARDS; k++) {
            bj += sw_pipe_stats(net.nodes[k].pipe).batched_jobs;
            be += sw_pipe_stats(net.nodes[k].pipe).batched_entries;
        }
        fprintf(stderr, "  3 sessions: %llu batched jobs, %.2f sessions each, %.1f ms in all\n", (unsigned long long)bj,
                bj ? (double)be / (double)bj : 0.0, net.now / 1e3);
        CHECK_MSG(be >= (uint64_t)N_SHARDS * (NG - 6) * 2, "3 sessions: only %llu steps batched", (unsigned long long)be);
        net_free(&net);
        free(p3);
    }

    /* a lone session: never held, the same time as without holds */
    uint64_t t_one[2];
    for (int on = 0; on <= 1; on++) {
        struct net net;
        struct tnode *entry = make_net_coalesce(&net, 0, on ? 0 : 1000);
        net.job_us = 5000;
        struct got g;
        memset(&g, 0, sizeof g);
        uint64_t sid;
        char msg[256];
        CHECK_EQ_INT(open_session(&net, entry, prompts[0], np[0], &sp, NG, SW_PIPE_F32, 0, &g, &sid, msg, sizeof msg), 0);
        net_run(&net, 20000000);
        CHECK_MSG(g.ended && g.rc == 0 && !memcmp(g.toks, refs[0], sizeof refs[0]), "lone session: rc %d", g.rc);
        for (int k = 1; k <= N_SHARDS; k++) CHECK_EQ_U64(sw_pipe_stats(net.nodes[k].pipe).coalesce_holds, 0);
        t_one[on] = net.now;
        net_free(&net);
    }
    CHECK_EQ_U64(t_one[1], t_one[0]);
    for (int i = 0; i < NS; i++) free(prompts[i]);
}

static void test_equal_single_process(void)
{
    uint32_t n_prompt;
    int32_t *prompt = encode("Once upon a time, there was a little girl", &n_prompt);
    struct sw_sampler_params sp;
    sw_sampler_params_default(&sp);
    sp.temperature = 0; /* greedy */
    int32_t ref[N_GEN];
    float *ref_lg = malloc((size_t)N_GEN * g_vocab * sizeof(float));
    reference(prompt, n_prompt, &sp, N_GEN, ref, ref_lg);

    struct net net;
    struct tnode *entry = make_net(&net, 0, 0);
    struct got g;
    memset(&g, 0, sizeof g);
    g.logits = calloc((size_t)N_GEN * g_vocab, sizeof(float));
    uint64_t sid;
    char msg[256];
    CHECK_EQ_INT(open_session(&net, entry, prompt, n_prompt, &sp, N_GEN, SW_PIPE_F32, 1, &g, &sid, msg, sizeof msg), 0);
    net_run(&net, 10000000);
    CHECK_MSG(g.ended && g.rc == 0, "session ended %d rc %d: %s", g.ended, g.rc, g.msg);
    CHECK_EQ_INT(g.n, N_GEN);
    int same = 1;
    for (uint32_t i = 0; i < N_GEN && i < g.n; i++) same &= g.toks[i] == ref[i];
    CHECK_MSG(same, "pipeline tokens differ from single-process generation");
    double worst = 0;
    for (size_t i = 0; i < (size_t)N_GEN * g_vocab; i++) worst = fmax(worst, fabs(g.logits[i] - ref_lg[i]));
    CHECK_MSG(worst <= 1e-4, "logits differ by %g", worst);
    fprintf(stderr, "  200 greedy tokens equal, worst logit difference %.3g, %llu messages\n", worst,
            (unsigned long long)net.n_msgs);
    /* every stage freed the session after CLOSE */
    for (int i = 1; i < net.n; i++) CHECK_EQ_INT(sw_pipe_stats(net.nodes[i].pipe).stage_sessions, 0);
    net_free(&net);

    /* f16 on the wire: runs to the end; the first tokens agree */
    free(g.logits);
    entry = make_net(&net, 0, 0);
    memset(&g, 0, sizeof g);
    CHECK_EQ_INT(open_session(&net, entry, prompt, n_prompt, &sp, 40, SW_PIPE_F16, 0, &g, &sid, msg, sizeof msg), 0);
    net_run(&net, 10000000);
    CHECK_MSG(g.ended && g.rc == 0 && g.n == 40, "f16 session: %u tokens rc %d %s", g.n, g.rc, g.msg);
    CHECK_EQ_INT(g.toks[0], ref[0]);
    net_free(&net);
    free(ref_lg);
    free(prompt);
}

static void test_concurrent(void)
{
    const char *texts[8] = { "Once upon a time", "The dog", "Lily and Ben", "One day, a little bird",
                             "Tom had a red ball", "The sun was", "She said", "There was a big tree" };
    struct net net;
    struct tnode *entry = make_net(&net, 0, 0);
    struct got g[8];
    int32_t *prompts[8];
    uint32_t np[8];
    struct sw_sampler_params sp[8];
    for (int i = 0; i < 8; i++) {
        memset(&g[i], 0, sizeof g[i]);
        prompts[i] = encode(texts[i], &np[i]);
        sw_sampler_params_default(&sp[i]);
        sp[i].seed = 1000 + (uint64_t)i;
        if (i % 2) sp[i].temperature = 0;
        sp[i].repeat_penalty = i == 3 ? 1.3f : 1.0f;
        uint64_t sid;
        char msg[256];
        CHECK_EQ_INT(open_session(&net, entry, prompts[i], np[i], &sp[i], 60, SW_PIPE_F32, 0, &g[i], &sid, msg, sizeof msg), 0);
    }
    net_run(&net, 20000000);
    for (int i = 0; i < 8; i++) {
        int32_t ref[60];
        reference(prompts[i], np[i], &sp[i], 60, ref, NULL);
        CHECK_MSG(g[i].ended && g[i].rc == 0 && g[i].n == 60, "session %d: %u tokens rc %d %s", i, g[i].n, g[i].rc, g[i].msg);
        CHECK_MSG(!memcmp(g[i].toks, ref, sizeof ref), "session %d: tokens differ from single-process", i);
        free(prompts[i]);
    }
    net_free(&net);
}

/* Batched decode: 8 greedy sessions at once coincide at every stage, whose decode steps
 * then run as batched forward jobs; each session's tokens still equal single-process
 * generation (the logits are close, not bit-equal: stories260K's f32 kernels sum a
 * multi-row tile in another order than one row). A step that fails inside a batch fails
 * only its session. */
static void test_batched(void)
{
    enum { NS = 8, NG = 60 };
    const char *texts[NS] = { "Once upon a time", "The dog", "Lily and Ben", "One day, a little bird",
                              "Tom had a red ball", "The sun was", "She said", "There was a big tree" };
    struct sw_sampler_params sp;
    sw_sampler_params_default(&sp);
    sp.temperature = 0;
    struct net net;
    struct tnode *entry;
    struct got *g = calloc(NS, sizeof *g);
    int32_t *prompts[NS];
    uint32_t np[NS];
    uint64_t sid[NS];
    char msg[256];
    float *ref_lg = malloc((size_t)NG * g_vocab * sizeof *ref_lg);
    for (int i = 0; i < NS; i++) {
        prompts[i] = encode(texts[i], &np[i]);
        g[i].logits = calloc((size_t)N_GEN * g_vocab, sizeof(float));
    }
    double worst_at[2] = { 0, 0 };
    for (int batched = 0; batched <= 1; batched++) { /* batch_max 1 (never), then the default */
        entry = make_net_batch(&net, batched ? 0 : 1);
        for (int i = 0; i < NS; i++) {
            g[i].n = 0;
            g[i].ended = g[i].rc = 0;
            CHECK_EQ_INT(open_session(&net, entry, prompts[i], np[i], &sp, NG, SW_PIPE_F32, 1, &g[i], &sid[i], msg,
                                      sizeof msg), 0);
        }
        net_run(&net, 20000000);
        double worst = 0, mag = 0;
        for (int i = 0; i < NS; i++) {
            int32_t ref[NG];
            reference(prompts[i], np[i], &sp, NG, ref, ref_lg);
            CHECK_MSG(g[i].ended && g[i].rc == 0 && g[i].n == NG, "session %d: %u tokens rc %d %s", i, g[i].n, g[i].rc,
                      g[i].msg);
            CHECK_MSG(!memcmp(g[i].toks, ref, sizeof ref), "session %d: tokens differ from single-process (batched %d)", i,
                      batched);
            for (size_t k = 0; k < (size_t)NG * g_vocab; k++) {
                worst = fmax(worst, fabs(g[i].logits[k] - ref_lg[k]));
                mag = fmax(mag, fabs(ref_lg[k]));
            }
        }
        worst_at[batched] = worst;
        uint64_t bj = 0, be = 0, jobs = 0;
        for (int k = 1; k <= N_SHARDS; k++) {
            struct sw_pipe_stats st = sw_pipe_stats(net.nodes[k].pipe);
            if (batched) CHECK_MSG(st.batched_jobs > 0, "stage %d ran no batched job", k - 1);
            else CHECK_EQ_U64(st.batched_jobs, 0);
            CHECK(st.batched_entries >= 2 * st.batched_jobs);
            bj += st.batched_jobs;
            be += st.batched_entries;
            jobs += st.jobs;
        }
        fprintf(stderr, "  %d sessions, batch_max %s: %llu of %llu jobs batched (%.2f sessions each), "
                "worst logit difference %.3g (largest logit %.3g)\n", NS, batched ? "8" : "1", (unsigned long long)bj,
                (unsigned long long)jobs, bj ? (double)be / (double)bj : 0.0, worst, mag);
        net_free(&net);
    }
    /* The tokens are equal (above). The logits move by the kernels' summation order: a
     * multi-row f32 tile sums otherwise than one row, for prompt chunks (unbatched, ~2e-3
     * here) as for batched steps (~6e-3), of logits up to ~22. */
    CHECK_MSG(worst_at[0] <= 2e-2, "unbatched logits differ by %g", worst_at[0]);
    CHECK_MSG(worst_at[1] <= 2e-2, "batched logits differ by %g", worst_at[1]);

    /* one session's sequence vanishes under stage 1: its step fails inside a batch; the
     * others complete with the single-process tokens */
    entry = make_net(&net, 0, 0);
    for (int i = 0; i < NS; i++) {
        memset(g[i].toks, 0, sizeof g[i].toks);
        g[i].n = 0;
        g[i].ended = g[i].rc = 0;
        CHECK_EQ_INT(open_session(&net, entry, prompts[i], np[i], &sp, NG, SW_PIPE_F32, 0, &g[i], &sid[i], msg, sizeof msg), 0);
    }
    uint64_t victim = 0;
    for (int tries = 0; tries < 1000000 && !victim; tries++) {
        for (struct qmsg *m = net.qh; m; m = m->next) {
            struct sw_pipe_msg d;
            if (m->to == 2 && !sw_pipe_msg_decode(m->data, m->len, &d, NULL, 0) && d.type == SW_PIPE_HIDDEN &&
                d.pos > 10) {
                victim = d.session;
                break;
            }
        }
        if (!victim) net_run(&net, 1);
    }
    CHECK(victim != 0);
    uint64_t bj0 = sw_pipe_stats(net.nodes[2].pipe).batched_jobs;
    sw_stage_seq_free(g_stages[1], victim);
    net_run(&net, 20000000);
    CHECK(sw_pipe_stats(net.nodes[2].pipe).batched_jobs > bj0);
    int n_failed = 0;
    for (int i = 0; i < NS; i++) {
        CHECK(g[i].ended);
        if (g[i].rc) {
            n_failed++;
            CHECK_MSG(g[i].rc == SW_ENOTFOUND && strstr(g[i].msg, "compute failed"), "session %d: rc %d %s", i, g[i].rc,
                      g[i].msg);
            continue;
        }
        int32_t ref[NG];
        reference(prompts[i], np[i], &sp, NG, ref, NULL);
        CHECK_MSG(g[i].n == NG && !memcmp(g[i].toks, ref, sizeof ref), "session %d: %u tokens, differ", i, g[i].n);
    }
    CHECK_EQ_INT(n_failed, 1);
    net_free(&net);

    for (int i = 0; i < NS; i++) {
        free(prompts[i]);
        free(g[i].logits);
    }
    free(g);
    free(ref_lg);
}

static void test_refusal(void)
{
    uint32_t n_prompt;
    struct sw_sampler_params sp;
    int32_t ref[30];
    int32_t *prompt = greedy_case("Once upon a time", 30, &n_prompt, &sp, ref);
    /* shard 0's first node has no room for a KV cache: the entry routes around it */
    struct net net;
    struct tnode *entry = make_net(&net, 1, 1);
    struct got g;
    memset(&g, 0, sizeof g);
    uint64_t sid;
    char msg[256];
    CHECK_EQ_INT(open_session(&net, entry, prompt, n_prompt, &sp, 30, SW_PIPE_F32, 0, &g, &sid, msg, sizeof msg), 0);
    net_run(&net, 10000000);
    CHECK_MSG(g.ended && g.rc == 0 && g.n == 30, "refusal with a replica: %u tokens rc %d %s", g.n, g.rc, g.msg);
    CHECK(!memcmp(g.toks, ref, sizeof ref));
    CHECK_EQ_INT(sw_pipe_stats(net.nodes[1].pipe).sessions_refused, 1);
    net_free(&net);
    /* no replica: a clear error naming the shard */
    entry = make_net(&net, 0, 1);
    memset(&g, 0, sizeof g);
    CHECK_EQ_INT(open_session(&net, entry, prompt, n_prompt, &sp, 30, SW_PIPE_F32, 0, &g, &sid, msg, sizeof msg), 0);
    net_run(&net, 10000000);
    CHECK_MSG(g.ended && g.rc == SW_EBUSY, "rc %d", g.rc); /* nodes exist, all refused */
    CHECK_MSG(strstr(g.msg, "shard 0") && strstr(g.msg, "KV"), "message: %s", g.msg);
    fprintf(stderr, "  refusal message: %s\n", g.msg);
    net_free(&net);
    /* a shard with no node at all */
    memset(&net, 0, sizeof net);
    net.kill_node = -1;
    net.freeze_node = -1;
    net.drop_node = -1;
    entry = net_add(&net, -1, NULL, N_SHARDS, 0);
    for (int k = 0; k < N_SHARDS; k++)
        if (k != 2) net_add(&net, k, g_stages[k], N_SHARDS, 0);
    memset(&g, 0, sizeof g);
    CHECK_EQ_INT(open_session(&net, entry, prompt, n_prompt, &sp, 30, SW_PIPE_F32, 0, &g, &sid, msg, sizeof msg),
                 SW_ENOTFOUND);
    CHECK_MSG(strstr(msg, "shard 2: no live node has it loaded") != NULL, "message: %s", msg);
    net_free(&net);
    free(prompt);
}

/* Sends raw bytes from node `from` to node `to`. */
static void inject(struct net *net, int from, int to, const struct sw_pipe_msg *m)
{
    struct sw_buf b;
    sw_buf_init(&b);
    CHECK_EQ_INT(sw_pipe_msg_encode(m, &b), 0);
    h_send(&net->nodes[from], net->nodes[to].id, b.data, b.len);
    sw_buf_free(&b);
}

/* Captures what a fake peer (node `spy`) receives. */
static int count_errors_to(struct net *net, int spy, uint64_t session, int code)
{
    int n = 0;
    for (struct qmsg **pp = &net->qh; *pp;) {
        struct qmsg *m = *pp;
        struct sw_pipe_msg d;
        if (m->to == spy && !sw_pipe_msg_decode(m->data, m->len, &d, NULL, 0) && d.type == SW_PIPE_ERROR &&
            d.session == session && d.code == code) {
            n++;
            *pp = m->next;
            free(m->data);
            free(m);
            continue;
        }
        pp = &m->next;
    }
    net->qt = NULL;
    for (struct qmsg *m = net->qh; m; m = m->next) net->qt = m;
    return n;
}

static void test_bad_input(void)
{
    uint32_t n_prompt;
    int32_t *prompt = encode("Once upon a time", &n_prompt);
    struct sw_sampler_params sp;
    sw_sampler_params_default(&sp);
    sp.temperature = 0;
    struct net net;
    struct tnode *entry = make_net(&net, 0, 0);
    int spy = net_add(&net, -1, NULL, N_SHARDS, 0)->idx; /* a foreign peer */
    struct got a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    uint64_t sa, sb;
    char msg[256];
    CHECK_EQ_INT(open_session(&net, entry, prompt, n_prompt, &sp, 50, SW_PIPE_F32, 0, &a, &sa, msg, sizeof msg), 0);
    CHECK_EQ_INT(open_session(&net, entry, prompt, n_prompt, &sp, 50, SW_PIPE_F32, 0, &b, &sb, msg, sizeof msg), 0);
    net_run(&net, 200); /* both open, some prefill done */
    /* find session A's wire id at stage 1 (the only other session is B) */
    CHECK_EQ_INT(sw_pipe_stats(net.nodes[2].pipe).stage_sessions, 2);

    /* unknown session: an error back to the sender only */
    uint8_t hid[8 * 4] = { 0 };
    struct sw_pipe_msg h = { .type = SW_PIPE_HIDDEN, .session = 0xdeadbeef, .pos = 0, .n_tokens = 1, .n_embd = 8,
                             .dtype = SW_PIPE_F32, .data = hid, .data_len = sizeof hid };
    inject(&net, spy, 2, &h);
    int n_err = 0; /* deliver it (behind what is queued before it) */
    for (int tries = 0; tries < 100000 && !n_err; tries++) {
        net_run(&net, 1);
        n_err += count_errors_to(&net, spy, 0xdeadbeef, SW_ENOTFOUND);
    }
    CHECK_EQ_INT(n_err, 1);

    /* wrong size for a live session: an error for that session only. The wire id is not
     * the handle: learn it from a stage's OPEN traffic by asking the stage pipe's state
     * through a crafted message to each candidate id is not possible; instead kill A
     * through its own stage: send a wrong-size HIDDEN with A's wire id, found by scanning
     * queued messages. */
    uint64_t wire_a = 0;
    for (int tries = 0; tries < 100000 && !wire_a; tries++) {
        for (struct qmsg *m = net.qh; m; m = m->next) {
            struct sw_pipe_msg d;
            if (m->to == 2 && !sw_pipe_msg_decode(m->data, m->len, &d, NULL, 0) && d.type == SW_PIPE_HIDDEN) {
                wire_a = d.session;
                break;
            }
        }
        if (!wire_a) net_run(&net, 1);
    }
    CHECK(wire_a != 0);
    h.session = wire_a;
    h.pos = 0;
    inject(&net, spy, 2, &h); /* n_embd 8: wrong */
    net_run(&net, 10000000);
    struct got *bad = a.rc ? &a : &b, *good = a.rc ? &b : &a;
    CHECK_MSG(bad->ended && bad->rc == SW_EINVAL && strstr(bad->msg, "wrong size"), "bad session: rc %d %s", bad->rc,
              bad->msg);
    CHECK_MSG(good->ended && good->rc == 0 && good->n == 50, "other session: %u tokens rc %d %s", good->n, good->rc,
              good->msg);

    /* out-of-order position: error for that session only */
    struct got c;
    memset(&c, 0, sizeof c);
    uint64_t sc;
    CHECK_EQ_INT(open_session(&net, entry, prompt, n_prompt, &sp, 50, SW_PIPE_F32, 0, &c, &sc, msg, sizeof msg), 0);
    uint64_t wire_c = 0;
    for (int tries = 0; tries < 100000 && !wire_c; tries++) {
        for (struct qmsg *m = net.qh; m; m = m->next) {
            struct sw_pipe_msg d;
            if (m->to == 1 && !sw_pipe_msg_decode(m->data, m->len, &d, NULL, 0) && d.type == SW_PIPE_TOKENS) {
                wire_c = d.session;
                break;
            }
        }
        if (!wire_c) net_run(&net, 1);
    }
    int32_t be = 0;
    struct sw_pipe_msg t = { .type = SW_PIPE_TOKENS, .session = wire_c, .pos = 400, .n_tokens = 1,
                             .data = (const uint8_t *)&be, .data_len = 4 };
    inject(&net, spy, 1, &t);
    net_run(&net, 10000000);
    CHECK_MSG(c.ended && c.rc == SW_ERANGE && strstr(c.msg, "out of order"), "rc %d %s", c.rc, c.msg);
    /* malformed bytes are dropped and counted */
    uint8_t junk[5] = { 'S', 1, 4, 0, 0 };
    h_send(&net.nodes[spy], net.nodes[1].id, junk, sizeof junk);
    net_run(&net, 10);
    CHECK_EQ_INT(sw_pipe_stats(net.nodes[1].pipe).malformed, 1);
    net_free(&net);
    free(prompt);
}

static void failover_case(int kill_shard, uint32_t after, const char *what)
{
    uint32_t n_prompt;
    int32_t *prompt = encode("Once upon a time, there was a little girl", &n_prompt);
    struct sw_sampler_params sp;
    sw_sampler_params_default(&sp);
    sp.temperature = kill_shard == 3 ? 0.8f : 0; /* the last stage's sampler state moves too */
    sp.seed = 4242;
    int32_t ref[N_GEN];
    reference(prompt, n_prompt, &sp, N_GEN, ref, NULL);
    struct net net;
    struct tnode *entry = make_net(&net, 1, 0);
    struct got g;
    memset(&g, 0, sizeof g);
    net.kill_node = 1 + kill_shard; /* the first node of that shard is the one picked */
    net.kill_after = after;
    uint64_t sid;
    char msg[256];
    CHECK_EQ_INT(open_session(&net, entry, prompt, n_prompt, &sp, N_GEN, SW_PIPE_F32, 0, &g, &sid, msg, sizeof msg), 0);
    net_run(&net, 20000000);
    CHECK_MSG(net.nodes[1 + kill_shard].down, "%s: the node was not killed", what);
    CHECK_MSG(g.ended && g.rc == 0 && g.n == N_GEN, "%s: %u tokens rc %d %s", what, g.n, g.rc, g.msg);
    CHECK_MSG(!memcmp(g.toks, ref, sizeof ref), "%s: tokens differ after failover", what);
    CHECK_EQ_INT(sw_pipe_stats(entry->pipe).failovers, 1);
    net_free(&net);
    free(prompt);
}

static void test_failover(void)
{
    failover_case(2, 57, "middle stage killed");
    failover_case(0, 90, "first stage killed");
    failover_case(3, 120, "last stage killed (sampling with temperature)");
    failover_case(1, 1, "stage killed after the first token");
}

/* A stage that stalls without its connection dropping: the entry's deadline passes, the
 * route is rebuilt through other nodes, and the tokens are still those of single-process. */
static void test_stall(void)
{
    uint32_t n_prompt;
    int32_t *prompt = encode("Once upon a time", &n_prompt);
    struct sw_sampler_params sp;
    sw_sampler_params_default(&sp);
    sp.temperature = 0.7f;
    sp.seed = 99;
    int32_t ref[80];
    reference(prompt, n_prompt, &sp, 80, ref, NULL);
    struct net net;
    struct tnode *entry = make_net(&net, 1, 0);
    net.freeze_node = 2; /* shard 1's first node */
    net.kill_after = 30;
    struct got g;
    memset(&g, 0, sizeof g);
    uint64_t sid;
    char msg[256];
    CHECK_EQ_INT(open_session(&net, entry, prompt, n_prompt, &sp, 80, SW_PIPE_F32, 0, &g, &sid, msg, sizeof msg), 0);
    net_run(&net, 10000000);
    CHECK_MSG(!g.ended && g.n == 30, "stalled at %u tokens (ended %d)", g.n, g.ended);
    uint64_t next = sw_pipe_tick(entry->pipe, net.now);
    CHECK(next != UINT64_MAX && next > net.now);
    net.now = next;
    sw_pipe_tick(entry->pipe, net.now); /* the deadline: a new route */
    net_run(&net, 10000000);
    CHECK_MSG(g.ended && g.rc == 0 && g.n == 80, "after the stall: %u tokens rc %d %s", g.n, g.rc, g.msg);
    CHECK_MSG(!memcmp(g.toks, ref, sizeof ref), "tokens differ after the stall");
    CHECK_EQ_INT(sw_pipe_stats(net.nodes[6].pipe).sessions_opened, 1); /* the replica of shard 1 */
    net_free(&net);
    free(prompt);
}

/* Every node's timers, every 100 ms of net time for `ms`, delivering what they send. */
static void net_tick_for(struct net *net, uint32_t ms, struct tnode *entry, uint64_t *failover_at)
{
    for (uint32_t t = 0; t < ms; t += 100) {
        net->now += 100000;
        for (int i = 0; i < net->n; i++)
            if (!net->nodes[i].down) sw_pipe_tick(net->nodes[i].pipe, net->now);
        if (failover_at && !*failover_at && sw_pipe_stats(entry->pipe).failovers) *failover_at = net->now;
        net_run(net, 100000);
    }
}

/* An OPEN lost on the way (sent before the connection to the stage's node was up): the
 * entry sends it again after about a second, not after the deadline (5 s here), and the
 * session runs on the route it picked, with the tokens of single-process. */
static void test_lost_open(void)
{
    uint32_t n_prompt;
    struct sw_sampler_params sp;
    int32_t ref[30];
    int32_t *prompt = greedy_case("Once upon a time", 30, &n_prompt, &sp, ref);
    struct net net;
    struct tnode *entry = make_net(&net, 1, 0);
    net.lose_open_to = 2; /* shard 1's first node */
    struct got g;
    memset(&g, 0, sizeof g);
    uint64_t sid;
    char msg[256];
    CHECK_EQ_INT(open_session(&net, entry, prompt, n_prompt, &sp, 30, SW_PIPE_F32, 0, &g, &sid, msg, sizeof msg), 0);
    net_run(&net, 10000000);
    CHECK_MSG(net.opens_lost == 1 && g.n == 0, "the OPEN was not lost (%d lost, %u tokens)", net.opens_lost, g.n);
    net_tick_for(&net, 1500, entry, NULL);
    net_run(&net, 10000000);
    CHECK_MSG(g.ended && g.rc == 0 && g.n == 30, "after the lost OPEN: %u tokens rc %d %s", g.n, g.rc, g.msg);
    CHECK_MSG(!memcmp(g.toks, ref, sizeof ref), "tokens differ after the lost OPEN");
    struct sw_pipe_stats st = sw_pipe_stats(entry->pipe);
    CHECK_EQ_INT(st.opens_resent, 1);
    CHECK_EQ_INT(st.failovers, 0);
    CHECK_EQ_INT(sw_pipe_stats(net.nodes[2].pipe).sessions_opened, 1);
    net_free(&net);
    free(prompt);
}

/* A step far longer than the entry's deadline (5 s) is work, not a stall: the stage that
 * holds it says so (PROGRESS, about once a second) and the session finishes with the tokens
 * of single-process, no route rebuilt. A stage frozen while it holds such a step is still
 * caught within the deadline, and the error names the shard, the node and what it did. */
static void test_long_step(void)
{
    uint32_t n_prompt;
    struct sw_sampler_params sp;
    int32_t ref[40];
    int32_t *prompt = greedy_case("Once upon a time, there was a little girl", 40, &n_prompt, &sp, ref);
    struct net net;
    struct tnode *entry = make_net(&net, 0, 0);
    net.hold_node = 2; /* shard 1: its first step takes 30 s */
    net.hold = 1;
    struct got g;
    memset(&g, 0, sizeof g);
    uint64_t sid;
    char msg[256];
    CHECK_EQ_INT(open_session(&net, entry, prompt, n_prompt, &sp, 40, SW_PIPE_F32, 0, &g, &sid, msg, sizeof msg), 0);
    net_run(&net, 10000000);
    CHECK_MSG(net.jh && net.jh->node == 2 && g.n == 0, "the long step is not held (%u tokens)", g.n);
    net_tick_for(&net, 30000, entry, NULL);
    CHECK_MSG(!g.ended, "the session ended during the long step: %s", g.msg);
    CHECK_EQ_INT(sw_pipe_stats(entry->pipe).failovers, 0);
    net.hold = 0;
    net_run(&net, 10000000);
    CHECK_MSG(g.ended && g.rc == 0 && g.n == 40, "after the long step: %u tokens rc %d %s", g.n, g.rc, g.msg);
    CHECK_MSG(!memcmp(g.toks, ref, sizeof ref), "tokens differ after the long step");
    CHECK_EQ_INT(sw_pipe_stats(entry->pipe).failovers, 0);
    net_free(&net);

    /* frozen (SIGSTOP) while it holds the long step: caught within the deadline of its last
     * PROGRESS; the replica finishes with the same tokens */
    entry = make_net(&net, 1, 0);
    net.hold_node = 2;
    net.hold = 1;
    memset(&g, 0, sizeof g);
    CHECK_EQ_INT(open_session(&net, entry, prompt, n_prompt, &sp, 40, SW_PIPE_F32, 0, &g, &sid, msg, sizeof msg), 0);
    net_run(&net, 10000000);
    net_tick_for(&net, 3000, entry, NULL);
    net.nodes[2].frozen = 1;
    uint64_t frozen_at = net.now, failover_at = 0;
    net_tick_for(&net, 10000, entry, &failover_at);
    CHECK_MSG(failover_at && failover_at - frozen_at <= 6200000, "stall seen after %.1f s",
              failover_at ? (double)(failover_at - frozen_at) / 1e6 : -1.0);
    net.hold = 0;
    net_run(&net, 10000000);
    CHECK_MSG(g.ended && g.rc == 0 && g.n == 40, "after the stall: %u tokens rc %d %s", g.n, g.rc, g.msg);
    CHECK_MSG(!memcmp(g.toks, ref, sizeof ref), "tokens differ after the stall");
    net_free(&net);

    /* no replica: the route fails, and says where and what */
    entry = make_net(&net, 0, 0);
    net.hold_node = 2;
    net.hold = 1;
    memset(&g, 0, sizeof g);
    CHECK_EQ_INT(open_session(&net, entry, prompt, n_prompt, &sp, 40, SW_PIPE_F32, 0, &g, &sid, msg, sizeof msg), 0);
    net_run(&net, 10000000);
    net_tick_for(&net, 2000, entry, NULL);
    net.nodes[2].frozen = 1;
    net_tick_for(&net, 40000, entry, NULL);
    CHECK_MSG(g.ended && g.rc == SW_ETIMEDOUT, "frozen without replica: rc %d %s", g.rc, g.msg);
    char want[96], ids[16];
    snprintf(want, sizeof want, "shard 1: node %s stopped answering for ", sw_node_id_short(net.nodes[2].id, ids, sizeof ids));
    CHECK_MSG(strstr(g.msg, want) && strstr(g.msg, "while computing"), "the error: %s", g.msg);
    net.hold = 0;
    net_free(&net);
    free(prompt);
}

/* A node that gives up its stage (LOAD_SHARD to another shard) mid-session: the entry
 * fails over to a replica as for a lost node. */
static void test_drop_stage(void)
{
    uint32_t n_prompt;
    struct sw_sampler_params sp;
    int32_t ref[60];
    int32_t *prompt = greedy_case("Once upon a time", 60, &n_prompt, &sp, ref);
    struct net net;
    struct tnode *entry = make_net(&net, 1, 0);
    net.drop_node = 3; /* shard 2's first node */
    net.kill_after = 20;
    struct got g;
    memset(&g, 0, sizeof g);
    uint64_t sid;
    char msg[256];
    CHECK_EQ_INT(open_session(&net, entry, prompt, n_prompt, &sp, 60, SW_PIPE_F32, 0, &g, &sid, msg, sizeof msg), 0);
    net_run(&net, 10000000);
    CHECK_MSG(g.ended && g.rc == 0 && g.n == 60, "after the drop: %u tokens rc %d %s", g.n, g.rc, g.msg);
    CHECK_MSG(!memcmp(g.toks, ref, sizeof ref), "tokens differ after the stage was dropped");
    CHECK_EQ_INT(sw_pipe_stats(net.nodes[7].pipe).sessions_opened, 1); /* shard 2's replica */
    net_free(&net);
    free(prompt);
}

static void test_cancel_and_evict(void)
{
    uint32_t n_prompt;
    int32_t *prompt = encode("Once upon a time", &n_prompt);
    struct sw_sampler_params sp;
    sw_sampler_params_default(&sp);
    sp.temperature = 0;
    struct net net;
    struct tnode *entry = make_net(&net, 0, 0);
    struct got g;
    memset(&g, 0, sizeof g);
    uint64_t sid;
    char msg[256];
    CHECK_EQ_INT(open_session(&net, entry, prompt, n_prompt, &sp, 100, SW_PIPE_F32, 0, &g, &sid, msg, sizeof msg), 0);
    while (g.n < 10 && !g.ended) net_run(&net, 1);
    CHECK_EQ_INT(sw_pipe_cancel(entry->pipe, sid, net.now), 0);
    CHECK_MSG(g.ended && g.rc == SW_ECLOSED, "rc %d", g.rc);
    uint32_t n_at_cancel = g.n;
    net_run(&net, 10000000);
    CHECK_EQ_INT(g.n, n_at_cancel);
    for (int i = 1; i < net.n; i++) CHECK_EQ_INT(sw_pipe_stats(net.nodes[i].pipe).stage_sessions, 0);
    CHECK_EQ_INT(sw_pipe_cancel(entry->pipe, sid, net.now), SW_ENOTFOUND);

    /* idle eviction at a stage: the entry hears about it */
    memset(&g, 0, sizeof g);
    CHECK_EQ_INT(open_session(&net, entry, prompt, n_prompt, &sp, 100, SW_PIPE_F32, 0, &g, &sid, msg, sizeof msg), 0);
    net_run(&net, 40); /* opened */
    struct sw_pipe *st2 = net.nodes[2].pipe;
    CHECK_EQ_INT(sw_pipe_stats(st2).stage_sessions, 1);
    /* freeze the network: drop everything queued, then let time pass at stage 2 only */
    while (net.qh) {
        struct qmsg *m = net.qh;
        net.qh = m->next;
        free(m->data);
        free(m);
    }
    net.qt = NULL;
    while (net.jh) {
        struct qjob *q = net.jh;
        net.jh = q->next;
        sw_pipe_job_done(net.nodes[q->node].pipe, q->j, net.now);
        free(q);
    }
    net.jt = NULL;
    uint64_t next = sw_pipe_tick(st2, net.now);
    CHECK(next != UINT64_MAX);
    sw_pipe_tick(st2, net.now + 61000000ull);
    CHECK_EQ_INT(sw_pipe_stats(st2).sessions_evicted, 1);
    net_run(&net, 100);
    CHECK_MSG(g.ended && g.rc == SW_ETIMEDOUT && strstr(g.msg, "evicted"), "rc %d %s", g.rc, g.msg);
    net_free(&net);
    free(prompt);
}

/* ================================================================ bench (not a test)
 * SW_PIPE_BENCH=DIR test_pipeline: DIR holds shard-0.gguf .. shard-K-1.gguf (`shardswarm
 * split`). One worker thread per stage node (its stage computes with one thread), the
 * engines on this thread: total tokens/s of 1, 4 and 8 concurrent greedy sessions with
 * batched decode off (batch_max 1: the engine's behaviour before batching) and on, and
 * whether every session's tokens are the same both ways. */

struct bworker {
    pthread_t th;
    struct qjob *h, *t;
    int stop;
};
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    struct bworker w[MAX_NODES];
    struct qjob *dh, *dt;
} g_b = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, { { 0 } }, NULL, NULL };

static void *bench_worker(void *arg)
{
    struct bworker *w = arg;
    pthread_mutex_lock(&g_b.mu);
    for (;;) {
        while (!w->h && !w->stop) pthread_cond_wait(&g_b.cv_work, &g_b.mu);
        if (!w->h) break;
        struct qjob *q = w->h;
        w->h = q->next;
        if (!w->h) w->t = NULL;
        pthread_mutex_unlock(&g_b.mu);
        sw_pipe_job_run(q->j);
        pthread_mutex_lock(&g_b.mu);
        q->next = NULL;
        if (g_b.dt) g_b.dt->next = q;
        else g_b.dh = q;
        g_b.dt = q;
        pthread_cond_signal(&g_b.cv_done);
    }
    pthread_mutex_unlock(&g_b.mu);
    return NULL;
}

static int h_submit_bench(void *ud, struct sw_pipe_job *j)
{
    struct tnode *t = ud;
    struct qjob *q = calloc(1, sizeof *q);
    q->node = t->idx;
    q->j = j;
    pthread_mutex_lock(&g_b.mu);
    struct bworker *w = &g_b.w[t->idx];
    if (w->t) w->t->next = q;
    else w->h = q;
    w->t = q;
    pthread_cond_broadcast(&g_b.cv_work);
    pthread_mutex_unlock(&g_b.mu);
    return 0;
}

/* Runs until every session ended: messages on this thread, jobs on the workers. */
static void bench_run(struct net *net, struct got *g, int n)
{
    for (;;) {
        int open = 0;
        for (int i = 0; i < n; i++) open += !g[i].ended;
        if (!open) return;
        net_run(net, UINT64_MAX); /* messages only: h_submit_bench queues no job here */
        pthread_mutex_lock(&g_b.mu);
        if (!g_b.dh) {
            size_t inflight = 0;
            for (int k = 0; k < net->n; k++) inflight += sw_pipe_jobs_in_flight(net->nodes[k].pipe);
            if (!inflight) { /* nothing can come back: a bug, not a wait */
                pthread_mutex_unlock(&g_b.mu);
                for (int i = 0; i < n; i++)
                    if (!g[i].ended) fprintf(stderr, "bench: stalled: session %d open with %u tokens\n", i, g[i].n);
                return;
            }
        }
        while (!g_b.dh) pthread_cond_wait(&g_b.cv_done, &g_b.mu);
        struct qjob *q = g_b.dh;
        g_b.dh = g_b.dt = NULL;
        pthread_mutex_unlock(&g_b.mu);
        while (q) {
            struct qjob *nx = q->next;
            sw_pipe_job_done(net->nodes[q->node].pipe, q->j, net->now);
            free(q);
            q = nx;
        }
    }
}

static int bench(const char *dir)
{
    struct sw_stage *st[8];
    int n_st = 0;
    char path[700], err[512];
    struct sw_stage_opts o = { .layer_first = -1, .layer_last = -1, .n_threads = 1, .max_seqs = 64, .n_ctx = 512 };
    for (; n_st < 8; n_st++) {
        snprintf(path, sizeof path, "%s/shard-%d.gguf", dir, n_st);
        if (!sw_path_exists(path)) break;
        if (sw_stage_open(path, &o, &st[n_st], err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
    }
    if (!n_st) {
        fprintf(stderr, "no %s/shard-0.gguf\n", dir);
        return 1;
    }
    g_vocab = sw_stage_info(st[n_st - 1])->n_vocab;
    enum { NG = 64, NP = 8 };
    static const int counts[] = { 1, 4, 8 };
    struct sw_sampler_params sp;
    sw_sampler_params_default(&sp);
    sp.temperature = 0;
    static struct got g[2][8];
    printf("%s: %d stages, one thread each; %d-token prompts, %d tokens per session\n", dir, n_st, NP, NG);
    for (size_t c = 0; c < SW_ARRAY_LEN(counts); c++) {
        int ns = counts[c];
        double tps[2];
        uint64_t bj = 0, be = 0;
        for (int batched = 0; batched <= 1; batched++) {
            struct net net;
            memset(&net, 0, sizeof net);
            net.kill_node = net.freeze_node = net.drop_node = -1;
            struct tnode *entry = net_add(&net, -1, NULL, (uint32_t)n_st, 0);
            for (int k = 0; k < n_st; k++) {
                struct tnode *t = net_add(&net, k, st[k], (uint32_t)n_st, 0);
                struct sw_pipe_config cfg = { .n_shards = (uint32_t)n_st, .idle_ms = 60000, .batch_max = batched ? 0 : 1 };
                memcpy(cfg.self_id, t->id, SW_NODE_ID_LEN);
                cfg.host = (struct sw_pipe_host){ h_send, h_submit_bench, h_pick, h_live, h_stage, t, NULL, NULL, NULL, NULL };
                sw_pipe_free(t->pipe);
                sw_pipe_new(&cfg, &t->pipe);
                g_b.w[t->idx].stop = 0;
                pthread_create(&g_b.w[t->idx].th, NULL, bench_worker, &g_b.w[t->idx]);
            }
            uint64_t t0 = sw_time_us();
            for (int i = 0; i < ns; i++) {
                int32_t prompt[NP];
                for (int k = 0; k < NP; k++) prompt[k] = (int32_t)(1 + (uint32_t)(i * 131 + k * 977) % (g_vocab - 1));
                memset(&g[batched][i], 0, sizeof g[batched][i]);
                uint64_t sid;
                char msg[256];
                if (open_session(&net, entry, prompt, NP, &sp, NG, SW_PIPE_F32, 0, &g[batched][i], &sid, msg, sizeof msg)) {
                    fprintf(stderr, "open: %s\n", msg);
                    return 1;
                }
            }
            bench_run(&net, g[batched], ns);
            double secs = (double)(sw_time_us() - t0) / 1e6;
            uint64_t toks = 0;
            for (int i = 0; i < ns; i++) {
                if (g[batched][i].rc) fprintf(stderr, "session %d: %s\n", i, g[batched][i].msg);
                toks += g[batched][i].n;
            }
            tps[batched] = (double)toks / secs;
            for (int k = 1; k <= n_st; k++) {
                bj += sw_pipe_stats(net.nodes[k].pipe).batched_jobs;
                be += sw_pipe_stats(net.nodes[k].pipe).batched_entries;
            }
            pthread_mutex_lock(&g_b.mu);
            for (int k = 1; k <= n_st; k++) g_b.w[k].stop = 1;
            pthread_cond_broadcast(&g_b.cv_work);
            pthread_mutex_unlock(&g_b.mu);
            for (int k = 1; k <= n_st; k++) pthread_join(g_b.w[k].th, NULL);
            net_free(&net);
        }
        int same = 1;
        for (int i = 0; i < ns; i++)
            same &= g[0][i].n == g[1][i].n && !memcmp(g[0][i].toks, g[1][i].toks, g[0][i].n * sizeof(int32_t));
        printf("%d sessions: %.1f tok/s unbatched, %.1f tok/s batched (x%.2f; %llu batched jobs, %.2f sessions each); "
               "tokens %s\n", ns, tps[0], tps[1], tps[1] / tps[0], (unsigned long long)bj,
               bj ? (double)be / (double)bj : 0.0, same ? "identical" : "DIFFER");
    }
    for (int k = 0; k < n_st; k++) sw_stage_free(st[k]);
    return 0;
}

/* SW_PIPE_TEST=name runs only that model test (debugging). */
static int want(const char *name)
{
    const char *w = getenv("SW_PIPE_TEST");
    return !w || !*w || !strcmp(w, name);
}
#define RUN_IF(fn) \
    do { if (want(#fn)) SW_RUN(fn); } while (0)

int main(void)
{
    if (!getenv("SW_PIPE_DEBUG")) sw_log_set(NULL, NULL, SW_LOG_ERROR);
    if (getenv("SW_PIPE_BENCH")) return bench(getenv("SW_PIPE_BENCH"));
    g_have_model = setup_model();
    if (!g_have_model) {
        if (sw_test_failures) return SW_TEST_DONE();
        SW_TEST_SKIP("../shared/data/models/stories260K.gguf is absent: model tests skipped");
    }
    RUN_IF(test_equal_single_process);
    RUN_IF(test_concurrent);
    RUN_IF(test_batched);
    RUN_IF(test_coalesce);
    RUN_IF(test_refusal);
    RUN_IF(test_bad_input);
    RUN_IF(test_failover);
    RUN_IF(test_stall);
    RUN_IF(test_long_step);
    RUN_IF(test_drop_stage);
    RUN_IF(test_lost_open);
    RUN_IF(test_cancel_and_evict);
    teardown_model();
    return SW_TEST_DONE();
}
