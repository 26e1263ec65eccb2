/* pipeline.c — the pipeline session engine's life cycle, message dispatch and timers. The
 * engine has two roles: the stage role (pipeline_stage.c: a session's slice of layers on
 * this node, compute jobs, batching, sampling at the last stage) and the entry role
 * (pipeline_entry.c: route choice, prompt chunks, token stream, failover, deadlines).
 * Messages and the current time in; messages, compute jobs and callbacks out. No sockets,
 * no clocks, no threads: the node glue (pipeline_node.c) or a test's in-memory network
 * drives it.
 * Not for: encoding (pipeline_wire.c), running compute (the host does, off this thread). */
#include "swarm/pipeline_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"

/* ------------------------------------------------------------------ helpers */

const char *sw__pipe_short_id(const uint8_t *id, char *buf, size_t len)
{
    return sw_node_id_short(id, buf, len);
}

int sw__pipe_send(struct sw_pipe *p, const uint8_t *to, const struct sw_pipe_msg *m)
{
    p->out.len = 0;
    int rc = sw_pipe_msg_encode(m, &p->out);
    if (rc) return rc;
    return p->cfg.host.send(p->cfg.host.ud, to, p->out.data, p->out.len);
}

void sw__pipe_send_error(struct sw_pipe *p, const uint8_t *to, uint64_t session, uint8_t stage, int code,
                         const char *fmt, ...)
{
    char text[SW_PIPE_MAX_TEXT];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    struct sw_pipe_msg m = { .type = SW_PIPE_ERROR, .session = session, .stage = stage,
                             .code = code < 0 ? code : SW_EINVAL, .text = text,
                             .text_len = (uint16_t)strlen(text) };
    p->st.errors_sent++;
    sw_log(SW_LOG_DEBUG, "PIPE", "session %016llx: error to entry: %s", (unsigned long long)session, text);
    sw__pipe_send(p, to, &m);
}

int sw_pipe_new(const struct sw_pipe_config *cfg, struct sw_pipe **out)
{
    if (!cfg || !out || !cfg->host.send) return SW_EINVAL;
    struct sw_pipe *p = calloc(1, sizeof *p);
    if (!p) return SW_ENOMEM;
    p->cfg = *cfg;
    if (!p->cfg.max_sessions) p->cfg.max_sessions = 32;
    if (!p->cfg.idle_ms) p->cfg.idle_ms = 300000;
    sw_buf_init(&p->out);
    if (!(p->hdr = sw__pipe_hdr_new(&p->cfg.host, p->cfg.self_id)) || sw__spot_new(p)) {
        sw__pipe_hdr_free(p->hdr);
        free(p);
        return SW_ENOMEM;
    }
    if (p->cfg.prefix_entries != SW_PIPE_PREFIX_OFF && !(p->prefix = sw_prefix_new(p->cfg.prefix_entries))) {
        sw__pipe_hdr_free(p->hdr);
        free(p);
        return SW_ENOMEM;
    }
    *out = p;
    return 0;
}

static void chunks_free(struct ssess *s)
{
    while (s->qh) {
        struct chunk *c = s->qh;
        s->qh = c->next;
        free(c->data);
        free(c);
    }
    s->qt = NULL;
}

void sw__pipe_ssess_release(struct sw_pipe *p, struct ssess *s)
{
    chunks_free(s);
    if (s->st) sw_stage_seq_free(s->st, s->id);
    sw_sampler_free(s->smp);
    free(s->kept);
    sw__spot_ssess_free(s);
    free(s->hist);
    p->reserved -= SW_MIN(p->reserved, s->reserved);
    free(s);
}

/* Unlinks and frees, or marks dead when a job is in flight (freed by job_done). */
void sw__pipe_ssess_close(struct sw_pipe *p, struct ssess *s)
{
    struct ssess **pp = &p->ss;
    while (*pp && *pp != s) pp = &(*pp)->next;
    if (*pp) *pp = s->next;
    if (s->busy) {
        s->dead = 1;
        chunks_free(s);
        s->next = p->dead;
        p->dead = s;
        return;
    }
    sw__pipe_ssess_release(p, s);
}

void sw__pipe_esess_free(struct esess *e)
{
    free(e->spot);
    free(e->spot_blob);
    free(e->phash);
    free(e->hist);
    free(e->blob);
    free(e);
}

void sw__pipe_esess_unlink(struct sw_pipe *p, struct esess *e)
{
    struct esess **pp = &p->es;
    while (*pp && *pp != e) pp = &(*pp)->next;
    if (*pp) *pp = e->next;
}

void sw_pipe_free(struct sw_pipe *p)
{
    if (!p) return;
    sw__pipe_hdr_free(p->hdr); /* pending fetches end (SW_ECLOSED) while the engine is whole */
    p->hdr = NULL;
    while (p->ss) {
        struct ssess *s = p->ss;
        p->ss = s->next;
        s->busy = 0;
        sw__pipe_ssess_release(p, s);
    }
    while (p->dead) {
        struct ssess *s = p->dead;
        p->dead = s->next;
        sw__pipe_ssess_release(p, s);
    }
    while (p->es) {
        struct esess *e = p->es;
        p->es = e->next;
        sw__pipe_esess_free(e);
    }
    sw__spot_free(p);
    sw_prefix_free(p->prefix);
    sw__pipe_recent_free(p);
    sw_buf_free(&p->out);
    free(p);
}

size_t sw_pipe_jobs_in_flight(const struct sw_pipe *p) { return p ? p->jobs : 0; }

size_t sw_pipe_max_incoming(struct sw_pipe *p, const uint8_t from[SW_NODE_ID_LEN], uint64_t now_us)
{
    if (!p) return 0;
    size_t most = 0;
    /* A stage session: hidden rows in (HIDDEN from upstream, CLAIM to a checker, a replay's
     * resent rows), at most the session's context, as f32 (the widest wire dtype). */
    for (const struct ssess *s = p->ss; s; s = s->next) {
        if (s->dead) continue;
        size_t rows = SW_MIN(s->n_ctx, SW_PIPE_MAX_TOKENS);
        most = SW_MAX(most, rows * s->n_embd * 4 + 4096);
    }
    /* An entry session that asked for the logits: TOKEN_OUT carries them. */
    for (const struct esess *e = p->es; e; e = e->next)
        if (e->flags & SW_PIPE_OPEN_LOGITS) most = SW_MAX(most, (size_t)SW_PIPE_MAX_LOGITS * 4 + SW_PIPE_MAX_BLOB + 4096);
    most = SW_MAX(most, sw__pipe_hdr_expect(p->hdr, from));
    most = SW_MIN(most, (size_t)SW_PIPE_MAX_MSG);
    /* Steps already on the wire when their session ended (CANCEL, a failover) must not cost
     * the connection: the largest recent allowance lingers a while (the node glue also
     * calls this every second, so "recent" counts from the session's end). */
    if (most >= p->cap_hi || now_us >= p->cap_hi_until) {
        p->cap_hi = most;
        p->cap_hi_until = now_us + SW_PIPE_CAP_LINGER_US;
    }
    return p->cap_hi;
}

void sw_pipe_set_n_shards(struct sw_pipe *p, uint32_t n_shards)
{
    if (p) p->cfg.n_shards = n_shards;
}

struct sw_pipe_stats sw_pipe_stats(const struct sw_pipe *p)
{
    struct sw_pipe_stats s = p->st;
    s.stage_sessions = s.entry_sessions = 0;
    s.kept_bytes = 0;
    for (struct ssess *x = p->ss; x; x = x->next) {
        s.stage_sessions++;
        s.kept_bytes += x->kept_rows * x->row_bytes;
    }
    for (struct esess *e = p->es; e; e = e->next) s.entry_sessions++;
    s.prefix_entries = sw_prefix_count(p->prefix);
    s.prefix_bytes = sw_prefix_bytes(p->prefix);
    s.prefix_evictions = sw_prefix_evictions(p->prefix);
    sw__pipe_hdr_stats(p->hdr, &s);
    return s;
}

struct ssess *sw__pipe_ss_find(struct sw_pipe *p, uint64_t id)
{
    for (struct ssess *s = p->ss; s; s = s->next)
        if (s->id == id) return s;
    return NULL;
}

struct esess *sw__pipe_es_by_wire(struct sw_pipe *p, uint64_t id)
{
    for (struct esess *e = p->es; e; e = e->next)
        if (e->wire == id) return e;
    return NULL;
}

struct esess *sw__pipe_es_by_handle(struct sw_pipe *p, uint64_t id)
{
    for (struct esess *e = p->es; e; e = e->next)
        if (e->handle == id) return e;
    return NULL;
}

/* ------------------------------------------------------------------ dispatch */

void sw_pipe_receive(struct sw_pipe *p, const uint8_t from[SW_NODE_ID_LEN], const uint8_t *bytes, size_t len,
                     uint64_t now_us)
{
    struct sw_pipe_msg m;
    char err[160];
    p->st.msgs_in++;
    if (sw_pipe_msg_decode(bytes, len, &m, err, sizeof err)) {
        p->st.malformed++;
        char ids[16];
        sw_log(SW_LOG_DEBUG, "PIPE", "dropped a message from %s: %s", sw__pipe_short_id(from, ids, sizeof ids), err);
        return;
    }
    if (sw__pipe_hdr_receive(p->hdr, from, &m, now_us)) return;
    if (sw__spot_receive(p, from, &m, now_us)) return; /* spot checks (spotcheck.c) */
    switch (m.type) {
    case SW_PIPE_OPEN:
        sw__pipe_stage_open(p, from, &m, now_us);
        break;
    case SW_PIPE_TOKENS:
    case SW_PIPE_HIDDEN:
        sw__pipe_stage_input(p, from, &m, now_us);
        break;
    case SW_PIPE_CANCEL:
    case SW_PIPE_CLOSE: {
        struct ssess *s = sw__pipe_ss_find(p, m.session);
        if (s && sw__pipe_id_eq(from, s->entry)) {
            if (m.type == SW_PIPE_CLOSE) sw__pipe_stage_close(p, s, &m);
            else sw__pipe_ssess_close(p, s);
        }
        break;
    }
    case SW_PIPE_REPLAY:
        sw__pipe_stage_replay(p, from, &m);
        break;
    case SW_PIPE_OPEN_OK:
        sw__pipe_entry_open_ok(p, from, &m, now_us);
        break;
    case SW_PIPE_TOKEN_OUT:
        sw__pipe_entry_token(p, from, &m, now_us);
        break;
    case SW_PIPE_PROGRESS:
        sw__pipe_entry_progress(p, from, &m, now_us);
        break;
    case SW_PIPE_ERROR: {
        sw__pipe_entry_error(p, from, &m, now_us);
        break;
    }
    default:
        break;
    }
}

void sw_pipe_peer_lost(struct sw_pipe *p, const uint8_t id[SW_NODE_ID_LEN], uint64_t now_us)
{
    /* stage sessions whose entry left: nobody will read their tokens */
    for (struct ssess *s = p->ss, *nx; s; s = nx) {
        nx = s->next;
        if (sw__pipe_id_eq(s->entry, id) && !sw__pipe_id_eq(id, p->cfg.self_id)) sw__pipe_ssess_close(p, s);
    }
    /* entry sessions routed through it */
    for (struct esess *e = p->es, *nx; e; e = nx) {
        nx = e->next;
        for (uint32_t k = 0; k < e->n_stages; k++) {
            if (!sw__pipe_id_eq(e->route[k], id)) continue;
            sw__pipe_e_failover(p, e, k, now_us, "lost its connection");
            break; /* e may be gone; one failover per event and session */
        }
    }
}

size_t sw_pipe_drop_stage(struct sw_pipe *p, const char *reason)
{
    size_t n = 0;
    while (p && p->ss) {
        struct ssess *s = p->ss;
        sw__pipe_send_error(p, s->entry, s->id, s->idx, SW_ESTATE, "stage %u: %s", s->idx, reason ? reason : "the stage closed");
        sw__pipe_ssess_close(p, s);
        n++;
    }
    if (p) sw_prefix_clear(p->prefix, NULL); /* the stage is about to go */
    return n;
}

uint64_t sw_pipe_tick(struct sw_pipe *p, uint64_t now_us)
{
    uint64_t next = UINT64_MAX;
    sw__pipe_stage_release_hold(p, now_us);
    uint64_t idle = (uint64_t)p->cfg.idle_ms * 1000;
    for (struct ssess *s = p->ss, *nx; s; s = nx) {
        nx = s->next;
        if (p->cfg.host.is_live && !p->cfg.host.is_live(p->cfg.host.ud, s->entry)) {
            sw__pipe_ssess_close(p, s); /* the entry left: nobody reads this session's tokens */
            continue;
        }
        if (s->busy || s->qh) { /* working: the entry hears so (PROGRESS) */
            next = SW_MIN(next, sw__pipe_stage_progress(p, s, now_us));
            continue;
        }
        if (now_us - s->last_us >= idle) {
            p->st.sessions_evicted++;
            sw__pipe_send_error(p, s->entry, s->id, s->idx, SW_ETIMEDOUT, "stage %u: session evicted after %u ms idle", s->idx,
                       p->cfg.idle_ms);
            sw__pipe_ssess_close(p, s);
            continue;
        }
        next = SW_MIN(next, s->last_us + idle);
    }
    for (struct esess *e = p->es, *nx; e; e = nx) {
        nx = e->next;
        /* a stage the host no longer sees as live fails over without waiting */
        int lost = -1;
        if (p->cfg.host.is_live)
            for (uint32_t k = 0; k < e->n_stages && lost < 0; k++)
                if (!p->cfg.host.is_live(p->cfg.host.ud, e->route[k])) lost = (int)k;
        if (lost >= 0) {
            sw__pipe_e_failover(p, e, (uint32_t)lost, now_us, "left the swarm");
            continue;
        }
        uint64_t t = sw__pipe_entry_check(p, e, now_us);
        if (t) next = SW_MIN(next, t);
    }
    next = SW_MIN(next, sw__pipe_hdr_tick(p->hdr, now_us));
    return next;
}

void sw_pipe_set_vocab_source(struct sw_pipe *p, const struct sw_gvocab *(*fn)(void *ud), void *ud)
{
    if (!p) return;
    p->vocab_fn = fn;
    p->vocab_ud = ud;
}

void sw_pipe_set_header_source(struct sw_pipe *p, sw_pipe_header_src_fn fn, void *ud)
{
    if (p) sw__pipe_hdr_set_source(p->hdr, fn, ud);
}

int sw_pipe_fetch_header(struct sw_pipe *p, const struct sw_pipe_fetch_ops *ops, uint32_t max_len,
                         uint32_t wait_ms, uint32_t reply_ms, uint64_t now_us, uint64_t *id_out)
{
    if (!p) return SW_EINVAL;
    return sw__pipe_hdr_fetch(p->hdr, ops, max_len, wait_ms, reply_ms, now_us, id_out);
}

int sw_pipe_fetch_cancel(struct sw_pipe *p, uint64_t id)
{
    if (!p) return SW_EINVAL;
    return sw__pipe_hdr_cancel(p->hdr, id);
}
