/* pipe_net.h — the in-memory network of the pipeline's serving tests (test_prefix.c,
 * test_spec.c): nodes whose engines exchange messages through a queue and run compute jobs
 * in line, N_SHARDS stages over split stories260K (+ a replica each), the single-process
 * reference, and one greedy or sampled session run to its end. Header-only, for tests. */
#ifndef SW_TEST_PIPE_NET_H
#define SW_TEST_PIPE_NET_H

#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "swarm/pipeline.h"
#include "test.h"

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

#define MAX_GEN 128

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

/* How a test session runs: greedy unless temperature > 0. */
struct sopts {
    int no_cache;
    uint32_t spec_k;
    float temperature;
    uint64_t seed;
};

/* Runs one session to its end: 0 when it finished, tokens in g. */
static int run_session(struct net *net, const int32_t *prompt, uint32_t n_prompt, uint32_t n_gen,
                       const struct sopts *o, struct got *g)
{
    struct sw_sampler_params sp;
    sw_sampler_params_default(&sp);
    sp.temperature = o->temperature;
    sp.seed = o->seed;
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
                                   .ignore_eos = 1, .no_prefix_cache = o->no_cache, .spec_k = o->spec_k };
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

static void teardown_model(void)
{
    for (int k = 0; k < N_SHARDS; k++) {
        sw_stage_free(g_st[k]);
        sw_stage_free(g_rep[k]);
    }
    sw_chain_free(g_chain);
    sw_tok_free(g_tok);
}

#endif
