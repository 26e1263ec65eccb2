/* pipeline_node.c — a pipeline engine (pipeline.c) on a running node: SW_MSG_PIPE payloads
 * in through the node's pipe handler, out with priority through sw_node_send, compute jobs
 * on libuv worker threads (short ones, ≤ INLINE_MAX_US last time, inline on the loop), routes from the swarm view (live, loaded,
 * directly connected nodes), failover when the view loses a node, a timer for deadlines.
 * Not for: the protocol's decisions (pipeline.c). */
#include "swarm/pipeline.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <uv.h>

#include "gguf/gguf.h"
#include "infer/infer.h"

#define TICK_MS 100
#define INLINE_MAX_US 1000u /* default: steps up to 1 ms run on the loop thread */

struct selfmsg {
    struct selfmsg *next;
    size_t len;
    uint8_t data[];
};

struct rel {
    struct rel *next;
    void (*fn)(void *);
    void *ud;
};

struct work {
    uv_work_t req;
    uint32_t delay_us;
    uint64_t run_us;           /* how long sw_pipe_job_run took */
    struct sw_pipe_node *pn;
    struct sw_pipe_job *j;
    struct work *next;         /* ran inline: waiting for on_idle */
};

/* A request from another thread (open or cancel), and the session it became. */
struct areq {
    struct areq *next;
    int cancel;
    uint64_t ticket;
    struct sw_pipe_request req;     /* pointers below are owned copies */
    int32_t *prompt, *stop;
    uint8_t *blob;
    struct sw_pipe_session_cb user;
    struct sw_pipe_node *pn;
    uint64_t session;               /* once opened */
    int open, cancelled;
};

struct sw_pipe_node {
    struct sw_node *node;
    uv_loop_t *loop;
    struct sw_pipe *pipe;
    uv_timer_t tick;
    uv_timer_t self_timer;     /* delivers messages to ourselves on the next loop turn */
    uv_timer_t wake_timer;     /* the engine's wake (a held decode step's bound) */
    uint64_t wake_at;          /* when it is armed for (0: not) */
    uint64_t core_waits, shared_at; /* h_shared_compute: the lease's waits, when they last grew */
    struct selfmsg *qh, *qt;
    int handles_open;
    size_t works;
    int detaching;
    void (*done)(void *);
    void *done_ud;
    void (*chain_fn)(void *);
    void *chain_ud;
    uint32_t step_delay_us;
    /* --hop-delay-ms (benchmarks, where tc netem is not available): every pipeline message to
     * another node waits hop_delay_us in this FIFO before it is written, like a link's latency */
    uint64_t hop_delay_us;
    struct delayed *hq, *ht;
    uv_timer_t hop_timer;
    /* Short steps run inline on the loop thread (no hand-off to a libuv worker and back,
     * ~2 thread wake-ups per hop): while the last job on the worker path took at most
     * inline_max_us, a job runs at once inside h_submit and finishes (sends) on the next
     * loop turn through an idle handle. */
    uv_idle_t idle;
    struct work *dh, *dt;      /* inline jobs run, waiting for on_idle */
    uint64_t inline_max_us;
    uint64_t last_run_us;      /* duration of the last job (either path); 0: none yet */
    uint64_t steps, compute_us; /* compute jobs finished, and their run time in all */
    struct rel *rels;          /* sw_pipe_node_release_stage callbacks waiting for works == 0 */
    /* requests from other threads */
    uv_async_t async;
    pthread_mutex_t mu;
    struct areq *inbox;        /* under mu */
    struct areq *live;         /* loop thread: tickets with an open (or opening) session */
    uint64_t next_ticket;      /* under mu */
    uint32_t queue;            /* stage sessions last advertised as the record's `q` */
    struct sw_gvocab *vocab;   /* constrained decoding at our last stage: built on first use */
    int vocab_failed;
};

/* ------------------------------------------------------------------ host callbacks */

static void on_self_timer(uv_timer_t *t);
static void on_hop_timer(uv_timer_t *t);
static void on_async(uv_async_t *h);
static void areq_free(struct areq *a);

/* The sessions this node's stage carries are its queue in the capability record (`q`):
 * entries choosing among replicas prefer the less busy one. Re-signed only on change. */
static void update_queue(struct sw_pipe_node *pn)
{
    if (pn->detaching) return;
    uint32_t q = sw_pipe_stats(pn->pipe).stage_sessions;
    if (q == pn->queue) return;
    pn->queue = q;
    sw_node_set_queue(pn->node, q);
}

struct delayed {
    struct delayed *next;
    uint64_t due_us;
    uint8_t to[SW_NODE_ID_LEN];
    size_t len;
    uint8_t data[];
};

static void hop_arm(struct sw_pipe_node *pn)
{
    if (!pn->hq || !pn->handles_open || pn->detaching) return;
    uint64_t now = sw_time_us();
    uint64_t ms = pn->hq->due_us > now ? (pn->hq->due_us - now + 999) / 1000 : 0;
    uv_timer_start(&pn->hop_timer, on_hop_timer, ms, 0);
}

static void on_hop_timer(uv_timer_t *t)
{
    struct sw_pipe_node *pn = t->data;
    uint64_t now = sw_time_us();
    while (pn->hq && pn->hq->due_us <= now + 500) { /* libuv timers are whole milliseconds */
        struct delayed *d = pn->hq;
        pn->hq = d->next;
        if (!pn->hq) pn->ht = NULL;
        sw_node_send(pn->node, d->to, d->data, d->len, 1);
        free(d);
    }
    hop_arm(pn);
}

static int h_send(void *ud, const uint8_t to[SW_NODE_ID_LEN], const uint8_t *p, size_t len)
{
    struct sw_pipe_node *pn = ud;
    if (pn->hop_delay_us && memcmp(to, sw_node_id(pn->node), SW_NODE_ID_LEN)) {
        struct delayed *d = malloc(sizeof *d + len);
        if (!d) return SW_ENOMEM;
        d->next = NULL;
        d->due_us = sw_time_us() + pn->hop_delay_us;
        memcpy(d->to, to, SW_NODE_ID_LEN);
        d->len = len;
        memcpy(d->data, p, len);
        if (pn->ht) pn->ht->next = d;
        else pn->hq = d;
        pn->ht = d;
        if (pn->hq == d) hop_arm(pn);
        return 0;
    }
    if (!memcmp(to, sw_node_id(pn->node), SW_NODE_ID_LEN)) {
        struct selfmsg *m = malloc(sizeof *m + len);
        if (!m) return SW_ENOMEM;
        m->next = NULL;
        m->len = len;
        memcpy(m->data, p, len);
        if (pn->qt) pn->qt->next = m;
        else pn->qh = m;
        pn->qt = m;
        if (pn->handles_open && !pn->detaching) uv_timer_start(&pn->self_timer, on_self_timer, 0, 0);
        return 0;
    }
    return sw_node_send(pn->node, to, p, len, 1);
}

static void work_cb(uv_work_t *req)
{
    struct work *w = req->data;
    uint64_t t0 = sw_time_us();
    sw_pipe_job_run(w->j);
    w->run_us = sw_time_us() - t0;
    if (w->delay_us) sw_sleep_ms((w->delay_us + 999) / 1000);
}

static void finish_detach(struct sw_pipe_node *pn);
static void on_stage_release(void *ud, const char *reason, void (*done)(void *), void *done_ud);

/* No compute job runs any more: the stages given up so far may be freed (in order). */
static void run_released(struct sw_pipe_node *pn)
{
    while (pn->rels) {
        struct rel *r = pn->rels;
        pn->rels = r->next;
        if (r->fn) r->fn(r->ud);
        free(r);
    }
}

static void work_finished(struct work *w)
{
    struct sw_pipe_node *pn = w->pn;
    pn->works--;
    pn->last_run_us = w->run_us ? w->run_us : 1;
    pn->steps++;
    pn->compute_us += w->run_us;
    sw_pipe_job_done(pn->pipe, w->j, sw_time_us());
    free(w);
    update_queue(pn);
    if (!pn->works) run_released(pn);
    if (pn->detaching) finish_detach(pn);
}

static void after_work_cb(uv_work_t *req, int status)
{
    (void)status;
    work_finished(req->data);
}

static void on_idle(uv_idle_t *h)
{
    struct sw_pipe_node *pn = h->data;
    /* only the jobs run so far: one finishing may kick (and run) the next */
    struct work *w = pn->dh;
    pn->dh = pn->dt = NULL;
    uv_idle_stop(&pn->idle);
    while (w) {
        struct work *nx = w->next;
        work_finished(w); /* may free pn (detach): nothing touches pn after the last */
        w = nx;
    }
}

static int h_submit(void *ud, struct sw_pipe_job *j)
{
    struct sw_pipe_node *pn = ud;
    struct work *w = calloc(1, sizeof *w);
    if (!w) return SW_ENOMEM;
    w->pn = pn;
    w->j = j;
    w->delay_us = pn->step_delay_us;
    w->req.data = w;
    if (!w->delay_us && pn->last_run_us && pn->last_run_us <= pn->inline_max_us && pn->handles_open && !pn->detaching) {
        /* a short step: run it here; the engine sees it finish on the next loop turn
         * (sw_pipe_job_done must not run inside its own submit) */
        uint64_t t0 = sw_time_us();
        sw_pipe_job_run(j);
        w->run_us = sw_time_us() - t0;
        if (pn->dt) pn->dt->next = w;
        else pn->dh = w;
        pn->dt = w;
        uv_idle_start(&pn->idle, on_idle);
        pn->works++;
        return 0;
    }
    int rc = uv_queue_work(pn->loop, &w->req, work_cb, after_work_cb);
    if (rc) {
        free(w);
        return SW_EIO;
    }
    pn->works++;
    return 0;
}

/* The status JSON's "pipeline" section (node loop thread, like every engine call). */
static void status_extra(void *ud, struct json_t *root)
{
    struct sw_pipe_node *pn = ud;
    struct sw_pipe_stats st = sw_pipe_stats(pn->pipe);
    json_t *o = json_object();
    json_object_set_new(o, "stage_sessions", json_integer(st.stage_sessions));
    json_object_set_new(o, "entry_sessions", json_integer(st.entry_sessions));
    json_object_set_new(o, "sessions_opened", json_integer((json_int_t)st.sessions_opened));
    json_object_set_new(o, "sessions_refused", json_integer((json_int_t)st.sessions_refused));
    json_object_set_new(o, "sessions_evicted", json_integer((json_int_t)st.sessions_evicted));
    json_object_set_new(o, "failovers", json_integer((json_int_t)st.failovers));
    json_object_set_new(o, "opens_resent", json_integer((json_int_t)st.opens_resent));
    json_object_set_new(o, "replays", json_integer((json_int_t)st.replays));
    json_object_set_new(o, "compute_steps", json_integer((json_int_t)pn->steps));
    json_object_set_new(o, "compute_seconds", json_real((double)pn->compute_us / 1e6));
    json_object_set_new(o, "batched_steps", json_integer((json_int_t)st.batched_jobs));
    json_object_set_new(o, "batched_entries", json_integer((json_int_t)st.batched_entries));
    json_object_set_new(o, "coalesce_holds", json_integer((json_int_t)st.coalesce_holds));
    json_object_set_new(o, "coalesce_held_seconds", json_real((double)st.coalesce_held_us / 1e6));
    json_t *ds = json_array(); /* decode-sized steps by the sessions they carried */
    for (int k = 0; k < SW_PIPE_BATCH_MAX; k++) {
        if (!st.dec_jobs[k]) continue;
        json_t *d = json_object();
        json_object_set_new(d, "sessions", json_integer(k + 1));
        json_object_set_new(d, "steps", json_integer((json_int_t)st.dec_jobs[k]));
        json_object_set_new(d, "seconds", json_real((double)st.dec_run_us[k] / 1e6));
        json_object_set_new(d, "cpu_seconds", json_real((double)st.dec_cpu_us[k] / 1e6));
        json_object_set_new(d, "wall_seconds", json_real((double)st.dec_wall_us[k] / 1e6));
        json_array_append_new(ds, d);
    }
    json_object_set_new(o, "decode_steps", ds);
    json_object_set_new(o, "tokens_computed", json_integer((json_int_t)st.tokens_computed));
    json_object_set_new(o, "kept_bytes", json_integer((json_int_t)st.kept_bytes));
    struct sw_stage *stage = sw_node_stage(pn->node);
    if (stage) json_object_set_new(o, "kv_bytes", json_integer((json_int_t)sw_stage_kv_bytes(stage)));
    json_object_set_new(o, "tokens_generated", json_integer((json_int_t)st.tokens_generated));
    json_object_set_new(o, "messages_in", json_integer((json_int_t)st.msgs_in));
    json_object_set_new(o, "messages_malformed", json_integer((json_int_t)st.malformed));
    json_object_set_new(o, "errors_sent", json_integer((json_int_t)st.errors_sent));
    json_object_set_new(o, "headers_served", json_integer((json_int_t)st.headers_served));
    sw_spot_status_json(pn->pipe, o, sw_time_us()); /* spotcheck.c: "spot" */
    json_object_set_new(o, "prefix_entries", json_integer(st.prefix_entries));
    json_object_set_new(o, "prefix_bytes", json_integer((json_int_t)st.prefix_bytes));
    json_object_set_new(o, "prefix_hits", json_integer((json_int_t)st.prefix_hits));
    json_object_set_new(o, "prefix_reused", json_integer((json_int_t)st.prefix_reused));
    json_object_set_new(o, "prefix_kept", json_integer((json_int_t)st.prefix_kept));
    json_object_set_new(o, "prefix_evictions", json_integer((json_int_t)st.prefix_evictions));
    json_object_set_new(o, "spec_steps", json_integer((json_int_t)st.spec_steps));
    json_object_set_new(o, "spec_drafted", json_integer((json_int_t)st.spec_drafted));
    json_object_set_new(o, "spec_accepted", json_integer((json_int_t)st.spec_accepted));
    json_object_set_new(root, "pipeline", o);
}

static int usable(const struct sw_view_node *vn)
{
    return vn && vn->live && (vn->self || vn->direct);
}

/* The best live loaded node for a shard that we can reach directly: ourselves first, then
 * the lowest round trip, the shortest queue, the highest tokens/s, the lowest id. */
static int h_pick(void *ud, uint32_t shard, const uint8_t *exclude, size_t n_exclude, uint8_t id_out[SW_NODE_ID_LEN])
{
    struct sw_pipe_node *pn = ud;
    const struct sw_view *v = sw_node_view(pn->node);
    if (!v) return SW_ENOTFOUND;
    const struct sw_view_node *best = NULL;
    for (size_t i = 0; i < sw_view_count(v); i++) {
        const struct sw_view_node *vn = sw_view_at(v, i);
        if (!usable(vn) || vn->cap.shard != (int32_t)shard || vn->cap.phase != SW_PHASE_LOADED) continue;
        int ex = 0;
        for (size_t k = 0; k < n_exclude && !ex; k++) ex = !memcmp(exclude + k * SW_NODE_ID_LEN, vn->cap.node_id, SW_NODE_ID_LEN);
        if (ex) continue;
        if (!best) {
            best = vn;
            continue;
        }
        uint64_t ra = vn->self ? 0 : vn->rtt_us ? vn->rtt_us : UINT32_MAX;
        uint64_t rb = best->self ? 0 : best->rtt_us ? best->rtt_us : UINT32_MAX;
        int better = ra != rb ? ra < rb
                   : vn->cap.queue != best->cap.queue ? vn->cap.queue < best->cap.queue
                   : vn->cap.tokens_per_s_milli != best->cap.tokens_per_s_milli
                       ? vn->cap.tokens_per_s_milli > best->cap.tokens_per_s_milli
                       : memcmp(vn->cap.node_id, best->cap.node_id, SW_NODE_ID_LEN) < 0;
        if (better) best = vn;
    }
    if (!best) return SW_ENOTFOUND;
    memcpy(id_out, best->cap.node_id, SW_NODE_ID_LEN);
    return 0;
}

static int h_serves(void *ud, const uint8_t id[SW_NODE_ID_LEN], uint32_t shard)
{
    struct sw_pipe_node *pn = ud;
    const struct sw_view *v = sw_node_view(pn->node);
    const struct sw_view_node *vn = v ? sw_view_find(v, id) : NULL;
    return usable(vn) && vn->cap.shard == (int32_t)shard && vn->cap.phase == SW_PHASE_LOADED;
}

static int h_live(void *ud, const uint8_t id[SW_NODE_ID_LEN])
{
    struct sw_pipe_node *pn = ud;
    if (!memcmp(id, sw_node_id(pn->node), SW_NODE_ID_LEN)) return 1;
    const struct sw_view *v = sw_node_view(pn->node);
    return v && usable(sw_view_find(v, id));
}

static struct sw_stage *h_stage(void *ud) { return sw_node_stage(((struct sw_pipe_node *)ud)->node); }
static int h_validate(void *ud, const struct sw_stage *st, char *msg, size_t cap)
{
    return sw_node_stage_check(((struct sw_pipe_node *)ud)->node, st, msg, cap);
}

/* ------------------------------------------------------------------ loop glue */

static void on_pipe_msg(void *ud, const uint8_t from[SW_NODE_ID_LEN], const uint8_t *payload, size_t len)
{
    struct sw_pipe_node *pn = ud;
    if (pn->detaching) return;
    sw_pipe_receive(pn->pipe, from, payload, len, sw_time_us());
    update_queue(pn);
}

static void on_self_timer(uv_timer_t *t)
{
    struct sw_pipe_node *pn = t->data;
    /* only what is queued now: messages queued while delivering wait for the next turn */
    struct selfmsg *m = pn->qh;
    pn->qh = pn->qt = NULL;
    while (m) {
        struct selfmsg *nx = m->next;
        if (!pn->detaching) sw_pipe_receive(pn->pipe, sw_node_id(pn->node), m->data, m->len, sw_time_us());
        free(m);
        m = nx;
    }
    update_queue(pn);
}

static void on_tick(uv_timer_t *t)
{
    struct sw_pipe_node *pn = t->data;
    if (!pn->detaching) {
        sw_pipe_tick(pn->pipe, sw_time_us());
        static const uint8_t nobody[SW_NODE_ID_LEN];
        sw_pipe_max_incoming(pn->pipe, nobody, sw_time_us()); /* keeps the recent allowance fresh */
    }
    update_queue(pn);
}

/* The node asks, at a large message's length prefix, what `from` may send (docs/security.md). */
static size_t on_msg_cap(void *ud, const uint8_t from[SW_NODE_ID_LEN])
{
    struct sw_pipe_node *pn = ud;
    if (pn->detaching) return 0;
    return sw_pipe_max_incoming(pn->pipe, from, sw_time_us());
}

static void on_wake(uv_timer_t *t)
{
    struct sw_pipe_node *pn = t->data;
    pn->wake_at = 0;
    if (!pn->detaching) sw_pipe_tick(pn->pipe, sw_time_us());
    update_queue(pn);
}

/* The engine asks to be ticked at at_us: a one-shot timer (ms granularity, rounded up). */
static void h_wake(void *ud, uint64_t at_us)
{
    struct sw_pipe_node *pn = ud;
    if (!pn->handles_open || pn->detaching || (pn->wake_at && pn->wake_at <= at_us)) return;
    uint64_t now = sw_time_us();
    pn->wake_at = at_us;
    uv_timer_start(&pn->wake_timer, on_wake, at_us > now ? (at_us - now + 999) / 1000 : 0, 0);
}

/* Does this node's stage share the machine's cores with other stages now? With the core
 * lease: one of its claims had to wait in the last SHARED_MS. Without one (--machine-cores
 * off, several nodes splitting a machine): assumed. */
#define SHARED_MS 10000u
static int h_shared_compute(void *ud)
{
    struct sw_pipe_node *pn = ud;
    struct sw_stage *st = sw_node_stage(pn->node);
    const struct sw_cores *c = st ? sw_stage_cores(st) : NULL;
    if (!c) return 1;
    uint64_t waits = 0, wait_us = 0, now = sw_time_ms();
    sw_cores_waited(c, &waits, &wait_us);
    if (waits != pn->core_waits) {
        pn->core_waits = waits;
        pn->shared_at = now;
    }
    return pn->shared_at && now - pn->shared_at < SHARED_MS;
}

/* The vocabulary's bytes for grammars, from our own shard file's tokenizer (every shard
 * carries the model's metadata); built once, on the first session that needs it. */
static const struct sw_gvocab *h_vocab(void *ud)
{
    struct sw_pipe_node *pn = ud;
    if (pn->vocab || pn->vocab_failed) return pn->vocab;
    const char *path = NULL;
    struct sw_gguf *gg = NULL;
    struct sw_tok *tok = NULL;
    char err[256] = "";
    if (!sw_node_shard_file(pn->node, NULL, NULL, &path) && path && !sw_gguf_open(path, &gg, err, sizeof err) &&
        !sw_tok_from_gguf(gg, &tok, err, sizeof err) && !sw_gvocab_new(tok, &pn->vocab)) {
        sw_log(SW_LOG_INFO, "PIPE", "grammar vocabulary: %u tokens from %s", sw_gvocab_n(pn->vocab), path);
    } else {
        pn->vocab_failed = 1;
        sw_log(SW_LOG_WARN, "PIPE", "no vocabulary for constrained decoding: %s", err[0] ? err : "no shard file");
    }
    sw_tok_free(tok);
    sw_gguf_close(gg);
    return pn->vocab;
}

static void on_change(void *ud)
{
    struct sw_pipe_node *pn = ud;
    if (!pn->detaching) sw_pipe_tick(pn->pipe, sw_time_us()); /* departures fail over at once */
    if (pn->chain_fn) pn->chain_fn(pn->chain_ud);
}

/* ------------------------------------------------------------------ other threads */

static void areq_free(struct areq *a)
{
    if (!a) return;
    free(a->prompt);
    free(a->stop);
    free(a->blob);
    free(a);
}

static void live_unlink(struct sw_pipe_node *pn, struct areq *a)
{
    for (struct areq **pp = &pn->live; *pp; pp = &(*pp)->next)
        if (*pp == a) {
            *pp = a->next;
            return;
        }
}

static void a_on_token(void *ud, const struct sw_pipe_token_ev *ev)
{
    struct areq *a = ud;
    if (a->user.on_token) a->user.on_token(a->user.ud, ev);
}

static void a_on_end(void *ud, uint64_t session, int rc, const char *msg)
{
    struct areq *a = ud;
    live_unlink(a->pn, a);
    if (a->user.on_end) a->user.on_end(a->user.ud, session, rc, msg);
    areq_free(a);
}

static void on_async(uv_async_t *h)
{
    struct sw_pipe_node *pn = h->data;
    pthread_mutex_lock(&pn->mu);
    struct areq *in = pn->inbox, *rev = NULL;
    pn->inbox = NULL;
    pthread_mutex_unlock(&pn->mu);
    while (in) { /* the inbox is LIFO: restore the order of arrival */
        struct areq *nx = in->next;
        in->next = rev;
        rev = in;
        in = nx;
    }
    while (rev) {
        struct areq *a = rev;
        rev = a->next;
        a->next = NULL;
        if (a->cancel) {
            struct areq *t = NULL;
            for (struct areq *x = pn->live; x; x = x->next)
                if (x->ticket == a->ticket) t = x;
            if (t && t->open) sw_pipe_cancel(pn->pipe, t->session, sw_time_us()); /* t freed in a_on_end */
            else if (t) t->cancelled = 1;
            areq_free(a);
            continue;
        }
        if (pn->detaching) {
            if (a->user.on_end) a->user.on_end(a->user.ud, 0, SW_ESTATE, "the node is stopping");
            areq_free(a);
            continue;
        }
        a->next = pn->live;
        pn->live = a;
        struct sw_pipe_session_cb cb = { a_on_token, a_on_end, a };
        char msg[512] = "";
        int rc = sw_pipe_node_open(pn, &a->req, &cb, &a->session, msg, sizeof msg);
        if (rc) {
            live_unlink(pn, a);
            if (a->user.on_end) a->user.on_end(a->user.ud, 0, rc, msg[0] ? msg : sw_strerror(rc));
            areq_free(a);
            continue;
        }
        a->open = 1;
        if (a->cancelled) sw_pipe_cancel(pn->pipe, a->session, sw_time_us());
    }
}

static int post(struct sw_pipe_node *pn, struct areq *a)
{
    pthread_mutex_lock(&pn->mu);
    int ok = !pn->detaching;
    if (ok) {
        a->next = pn->inbox;
        pn->inbox = a;
        uv_async_send(&pn->async);
    }
    pthread_mutex_unlock(&pn->mu);
    return ok ? 0 : SW_ESTATE;
}

int sw_pipe_node_open_async(struct sw_pipe_node *pn, const struct sw_pipe_request *req,
                            const struct sw_pipe_session_cb *cb, uint64_t *ticket_out)
{
    if (!pn || !req || !req->prompt || !req->n_prompt || !req->sampler_blob || !req->sampler_blob_len ||
        req->n_stop > SW_PIPE_MAX_STOP || req->sampler_blob_len > SW_PIPE_MAX_BLOB)
        return SW_EINVAL;
    struct areq *a = calloc(1, sizeof *a);
    if (!a) return SW_ENOMEM;
    a->req = *req;
    a->prompt = malloc((size_t)req->n_prompt * sizeof *a->prompt);
    a->blob = malloc(req->sampler_blob_len);
    a->stop = malloc((req->n_stop ? req->n_stop : 1) * sizeof *a->stop);
    if (!a->prompt || !a->blob || !a->stop) {
        areq_free(a);
        return SW_ENOMEM;
    }
    memcpy(a->prompt, req->prompt, (size_t)req->n_prompt * sizeof *a->prompt);
    memcpy(a->blob, req->sampler_blob, req->sampler_blob_len);
    if (req->n_stop) memcpy(a->stop, req->stop, req->n_stop * sizeof *a->stop);
    a->req.prompt = a->prompt;
    a->req.sampler_blob = a->blob;
    a->req.stop = a->stop;
    if (cb) a->user = *cb;
    a->pn = pn;
    pthread_mutex_lock(&pn->mu);
    a->ticket = ++pn->next_ticket;
    pthread_mutex_unlock(&pn->mu);
    if (ticket_out) *ticket_out = a->ticket;
    int rc = post(pn, a);
    if (rc) areq_free(a);
    return rc;
}

int sw_pipe_node_cancel_async(struct sw_pipe_node *pn, uint64_t ticket)
{
    if (!pn) return SW_EINVAL;
    struct areq *a = calloc(1, sizeof *a);
    if (!a) return SW_ENOMEM;
    a->cancel = 1;
    a->ticket = ticket;
    int rc = post(pn, a);
    if (rc) areq_free(a);
    return rc;
}

int sw_pipe_node_attach(struct sw_node *n, const struct sw_pipe_node_opts *opts, struct sw_pipe_node **out)
{
    if (!n || !out || !sw_node_loop(n)) return SW_EINVAL;
    struct sw_pipe_node *pn = calloc(1, sizeof *pn);
    if (!pn) return SW_ENOMEM;
    pn->node = n;
    pn->loop = sw_node_loop(n);
    struct sw_pipe_config cfg = { 0 };
    memcpy(cfg.self_id, sw_node_id(n), SW_NODE_ID_LEN);
    const struct sw_view *v = sw_node_view(n);
    cfg.n_shards = v ? sw_view_n_shards(v) : 0;
    cfg.host = (struct sw_pipe_host){ h_send, h_submit, h_pick, h_live, h_stage, pn, h_wake, h_validate, h_shared_compute,
                                      h_serves };
    if (opts) {
        cfg.prefix_entries = opts->prefix_entries;
        cfg.max_sessions = opts->max_sessions;
        cfg.max_kv_bytes = opts->max_kv_bytes;
        cfg.idle_ms = opts->idle_ms;
        cfg.coalesce_pct = opts->coalesce_pct;
        pn->step_delay_us = opts->step_delay_us;
        pn->hop_delay_us = (uint64_t)opts->hop_delay_ms * 1000;
    }
    double rate = opts ? opts->spot_rate : 0;
    cfg.spot_rate = rate < 0 ? 0 : rate > 0 ? rate : SW_SPOT_DEFAULT_RATE;
    int rc = sw_pipe_new(&cfg, &pn->pipe);
    if (rc) {
        free(pn);
        return rc;
    }
    sw_pipe_set_header_source(pn->pipe, sw_pipe_node_header_source, n); /* pipeline_header.c */
    sw_pipe_set_vocab_source(pn->pipe, h_vocab, pn);
    uv_timer_init(pn->loop, &pn->tick);
    uv_timer_init(pn->loop, &pn->self_timer);
    uv_timer_init(pn->loop, &pn->wake_timer);
    uv_timer_init(pn->loop, &pn->hop_timer);
    pn->hop_timer.data = pn;
    uv_idle_init(pn->loop, &pn->idle);
    pn->idle.data = pn;
    pn->inline_max_us = INLINE_MAX_US;
    pthread_mutex_init(&pn->mu, NULL);
    uv_async_init(pn->loop, &pn->async, on_async);
    pn->tick.data = pn->self_timer.data = pn->wake_timer.data = pn->async.data = pn;
    pn->handles_open = 6;
    uv_timer_start(&pn->tick, on_tick, TICK_MS, TICK_MS);
    sw_node_set_pipe_handler(n, on_pipe_msg, pn);
    sw_node_set_msg_cap(n, on_msg_cap, pn);
    sw_node_set_change_handler(n, on_change, pn);
    sw_node_set_status_extra(n, status_extra, pn);
    sw_node_set_stage_release(n, on_stage_release, pn);
    *out = pn;
    return 0;
}

void sw_pipe_node_set_change_chain(struct sw_pipe_node *pn, void (*fn)(void *ud), void *ud)
{
    if (!pn) return;
    pn->chain_fn = fn;
    pn->chain_ud = ud;
}

struct sw_pipe *sw_pipe_node_engine(struct sw_pipe_node *pn) { return pn ? pn->pipe : NULL; }
struct sw_node *sw_pipe_node_node(struct sw_pipe_node *pn) { return pn ? pn->node : NULL; }

void sw_pipe_node_release_stage(struct sw_pipe_node *pn, const char *reason, void (*done)(void *ud), void *ud)
{
    if (!pn) {
        if (done) done(ud);
        return;
    }
    size_t n = sw_pipe_drop_stage(pn->pipe, reason ? reason : "the node is changing its shard");
    if (n) sw_log(SW_LOG_INFO, "PIPE", "released the compute stage: %zu sessions failed", n);
    update_queue(pn);
    if (!pn->works) {
        if (done) done(ud);
        return;
    }
    /* jobs still run (on this stage or the previous one): done waits for all of them */
    struct rel *r = calloc(1, sizeof *r), **pp = &pn->rels;
    if (!r) { /* cannot wait: never free a stage a job may use (leak instead) */
        sw_log(SW_LOG_ERROR, "PIPE", "out of memory while releasing the compute stage");
        return;
    }
    r->fn = done;
    r->ud = ud;
    while (*pp) pp = &(*pp)->next;
    *pp = r;
}

/* The node's hook (sw_node_set_stage_release): it is about to free or swap its stage. */
static void on_stage_release(void *ud, const char *reason, void (*done)(void *), void *done_ud)
{
    sw_pipe_node_release_stage(ud, reason, done, done_ud);
}

/* The idle handle closed: the inline jobs still waiting for it finish now (their stage
 * sessions learn the results; the pipe is still alive), then detaching goes on. */
static void on_idle_closed(uv_handle_t *h)
{
    struct sw_pipe_node *pn = h->data;
    while (pn->dh) {
        struct work *w = pn->dh;
        pn->dh = w->next;
        if (!pn->dh) pn->dt = NULL;
        work_finished(w); /* handles_open still counts the idle handle: pn stays */
    }
    pn->handles_open--;
    finish_detach(pn);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct sw_pipe_node *pn = h->data;
    pn->handles_open--;
    finish_detach(pn);
}

static void finish_detach(struct sw_pipe_node *pn)
{
    if (pn->handles_open || pn->works) return;
    /* no job of ours runs any more: a stage the node gives up from now on is freed at once */
    sw_node_set_stage_release(pn->node, NULL, NULL);
    run_released(pn);
    while (pn->qh) {
        struct selfmsg *m = pn->qh;
        pn->qh = m->next;
        free(m);
    }
    while (pn->hq) { /* delayed messages not sent yet: the node is stopping */
        struct delayed *d = pn->hq;
        pn->hq = d->next;
        free(d);
    }
    for (struct areq *a = pn->live; a; a = a->next) /* sessions still open: tell their owners */
        if (a->user.on_end) a->user.on_end(a->user.ud, a->session, SW_ECLOSED, "the node is stopping");
    sw_pipe_free(pn->pipe); /* no callbacks from here on */
    pthread_mutex_lock(&pn->mu);
    struct areq *in = pn->inbox;
    pn->inbox = NULL;
    pthread_mutex_unlock(&pn->mu);
    while (in) {
        struct areq *nx = in->next;
        areq_free(in);
        in = nx;
    }
    while (pn->live) {
        struct areq *nx = pn->live->next;
        areq_free(pn->live);
        pn->live = nx;
    }
    pthread_mutex_destroy(&pn->mu);
    sw_gvocab_free(pn->vocab);
    void (*done)(void *) = pn->done;
    void *ud = pn->done_ud;
    free(pn);
    if (done) done(ud);
}

void sw_pipe_node_detach(struct sw_pipe_node *pn, void (*done)(void *ud), void *ud)
{
    if (!pn || pn->detaching) return;
    pthread_mutex_lock(&pn->mu);
    pn->detaching = 1;
    pthread_mutex_unlock(&pn->mu);
    pn->done = done;
    pn->done_ud = ud;
    sw_node_set_pipe_handler(pn->node, NULL, NULL);
    sw_node_set_msg_cap(pn->node, NULL, NULL);
    sw_node_set_status_extra(pn->node, NULL, NULL);
    sw_node_set_change_handler(pn->node, pn->chain_fn, pn->chain_ud);
    uv_timer_stop(&pn->tick);
    uv_timer_stop(&pn->self_timer);
    uv_timer_stop(&pn->wake_timer);
    uv_close((uv_handle_t *)&pn->tick, on_handle_closed);
    uv_close((uv_handle_t *)&pn->self_timer, on_handle_closed);
    uv_close((uv_handle_t *)&pn->wake_timer, on_handle_closed);
    uv_timer_stop(&pn->hop_timer);
    uv_close((uv_handle_t *)&pn->hop_timer, on_handle_closed);
    uv_close((uv_handle_t *)&pn->async, on_handle_closed);
    uv_idle_stop(&pn->idle);
    uv_close((uv_handle_t *)&pn->idle, on_idle_closed);
}

int sw_pipe_node_open(struct sw_pipe_node *pn, const struct sw_pipe_request *req, const struct sw_pipe_session_cb *cb,
                      uint64_t *session_out, char *msg, size_t msg_len)
{
    if (!pn || pn->detaching) return SW_ESTATE;
    const struct sw_view *v = sw_node_view(pn->node);
    if (!v) {
        if (msg && msg_len) snprintf(msg, msg_len, "the node has not resolved its model yet");
        return SW_ESTATE;
    }
    sw_pipe_set_n_shards(pn->pipe, sw_view_n_shards(v));
    return sw_pipe_open(pn->pipe, req, cb, sw_time_us(), session_out, msg, msg_len);
}

int sw_pipe_node_cancel(struct sw_pipe_node *pn, uint64_t session)
{
    if (!pn) return SW_EINVAL;
    return sw_pipe_cancel(pn->pipe, session, sw_time_us());
}
