/* pipeline_entry.c — the engine's entry role: sessions this node opened (route choice,
 * OPEN to every stage, prompt chunks, the token stream with timings, refusals, failover to
 * replicas, reopening, deadlines).
 * Not for: the stage role (pipeline_stage.c), the wire codec (pipeline_wire.c). */
#include "swarm/pipeline_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ entry role */

static void e_end(struct sw_pipe *p, struct esess *e, int rc, const char *msg)
{
    sw__spot_entry_end(p, e);
    sw__pipe_esess_unlink(p, e);
    if (e->cb.on_end) e->cb.on_end(e->cb.ud, e->handle, rc, msg);
    sw__pipe_esess_free(e);
}

static void e_send_all_msg(struct sw_pipe *p, struct esess *e, const struct sw_pipe_msg *mm)
{
    struct sw_pipe_msg m = *mm;
    m.session = e->wire;
    for (uint32_t k = 0; k < e->n_stages; k++) {
        int dup = 0;
        for (uint32_t i = 0; i < k; i++) dup |= sw__pipe_id_eq(e->route[i], e->route[k]);
        if (!dup) sw__pipe_send(p, e->route[k], &m);
    }
}

static void e_send_all(struct sw_pipe *p, struct esess *e, uint8_t type)
{
    struct sw_pipe_msg m = { .type = type };
    e_send_all_msg(p, e, &m);
}

/* ------------------------------------------------------------------ prefix reuse */

/* The block hashes of hist[0 .. n_hist-1): every position the stages compute (the last
 * token's successor is never fed). */
static uint32_t hist_hashes(const struct esess *e, uint8_t **out)
{
    *out = NULL;
    uint32_t n = e->n_hist ? e->n_hist - 1 : 0, nb = SW_MIN(n / SW_PREFIX_BLOCK, SW_PREFIX_MAX_BLOCKS);
    if (!nb || e->no_prefix) return 0;
    if (!(*out = malloc((size_t)nb * SW_PREFIX_HASH_LEN))) return 0;
    return sw_prefix_hashes(e->hist, n, *out, nb);
}

void sw__pipe_recent_free(struct sw_pipe *p)
{
    for (uint32_t i = 0; i < RECENT_MAX; i++) {
        free(p->recent[i].hashes);
        memset(&p->recent[i], 0, sizeof p->recent[i]);
    }
}

/* A finished session: CLOSE with its hashes (the stages may keep its KV), and its route
 * remembered for the session that continues it. */
static void e_close(struct sw_pipe *p, struct esess *e)
{
    uint8_t *h;
    uint32_t nb = hist_hashes(e, &h);
    struct sw_pipe_msg m = { .type = SW_PIPE_CLOSE, .n_hashes = nb, .hashes = h };
    e_send_all_msg(p, e, &m);
    if (!nb) {
        free(h);
        return;
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < RECENT_MAX; i++) {
        struct recent *r = &p->recent[i];
        /* one that this session extends (its previous turn) is replaced */
        if (r->hashes && r->n_hashes <= nb && r->n_stages == e->n_stages &&
            !memcmp(r->hashes + (size_t)(r->n_hashes - 1) * SW_PREFIX_HASH_LEN, h + (size_t)(r->n_hashes - 1) * SW_PREFIX_HASH_LEN,
                    SW_PREFIX_HASH_LEN)) {
            k = i;
            break;
        }
        if (r->used < p->recent[k].used) k = i;
    }
    struct recent *r = &p->recent[k];
    free(r->hashes);
    r->hashes = h;
    r->n_hashes = nb;
    r->n_stages = e->n_stages;
    r->used = ++p->recent_tick;
    memcpy(r->route, e->route, (size_t)e->n_stages * SW_NODE_ID_LEN);
}

/* The recent route that shares the most blocks with the session's prefix (NULL: none). */
static const struct recent *e_recent(struct sw_pipe *p, const struct esess *e)
{
    const struct recent *best = NULL;
    uint32_t best_n = 0;
    for (uint32_t i = 0; i < RECENT_MAX; i++) {
        const struct recent *r = &p->recent[i];
        if (!r->hashes || r->n_stages != e->n_stages) continue;
        uint32_t n = 0, lim = SW_MIN(r->n_hashes, e->n_phash);
        while (n < lim && !memcmp(r->hashes + (size_t)n * SW_PREFIX_HASH_LEN, e->phash + (size_t)n * SW_PREFIX_HASH_LEN,
                                  SW_PREFIX_HASH_LEN))
            n++;
        if (n > best_n) {
            best_n = n;
            best = r;
        }
    }
    return best;
}

static void e_fail(struct sw_pipe *p, struct esess *e, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void e_fail(struct sw_pipe *p, struct esess *e, int rc, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    e_send_all(p, e, SW_PIPE_CANCEL);
    sw_log(SW_LOG_WARN, "PIPE", "session %016llx failed: %s", (unsigned long long)e->handle, msg);
    e_end(p, e, rc, msg);
}

/* The work is (expected) at stage k now, nothing reported yet. */
static void e_work_at(struct esess *e, uint32_t k, uint64_t now_us)
{
    e->holder = k;
    e->hold_n = e->hold_pos = 0;
    e->hold_est_us = 0;
    e->work_since = e->last_sign = now_us;
}

static void e_send_open(struct sw_pipe *p, struct esess *e, uint32_t k)
{
    uint8_t stop[SW_PIPE_MAX_STOP * 4];
    for (uint32_t i = 0; i < e->n_stop; i++) sw_put_be32(stop + 4 * i, (uint32_t)e->stop[i]);
    struct sw_pipe_msg m = { .type = SW_PIPE_OPEN, .session = e->wire, .stage = (uint8_t)k,
                             .flags = (uint8_t)(e->flags | sw__spot_open_flags(p)),
                             .dtype = e->dtype, .n_stages = (uint8_t)e->n_stages, .route = &e->route[0][0],
                             .entry = p->cfg.self_id, .n_ctx = e->n_ctx, .n_known = e->n_hist,
                             .max_pos = e->max_pos, .n_stop = e->n_stop, .stop = stop,
                             /* four signs of life per deadline, at most one a second */
                             .progress_ms = (uint32_t)SW_MIN(e->deadline_us / 4000, (uint64_t)PROGRESS_MS) };
    uint8_t *ids = NULL;
    if (k + 1 == e->n_stages) {
        m.blob = e->blob;
        m.blob_len = (uint32_t)e->blob_len;
        sw__spot_entry_last_open(e); /* a check of its tokens starts from this state */
        if (e->spec_k) { /* the last stage drafts from the history: its latest tokens */
            uint32_t n = SW_MIN(e->n_hist, SW_PIPE_MAX_TOKENS);
            if ((ids = malloc((size_t)n * 4 + 1)) != NULL) {
                for (uint32_t i = 0; i < n; i++) sw_put_be32(ids + 4 * i, (uint32_t)e->hist[e->n_hist - n + i]);
                m.spec_k = (uint8_t)e->spec_k;
                m.n_ids = n;
                m.ids = ids;
            }
        }
    }
    if (e->state == E_OPENING) { /* a replica taking over replays from 0 */
        m.n_hashes = e->n_phash;
        m.hashes = e->phash;
    }
    e->pending |= 1ull << k;
    if (sw__pipe_send(p, e->route[k], &m)) { /* no connection to it (yet): sent again in a second */
        char idb[16];
        sw_log(SW_LOG_DEBUG, "PIPE", "session %016llx: OPEN for shard %u not sent to node %s (no connection yet)",
               (unsigned long long)e->wire, k, sw__pipe_short_id(e->route[k], idb, sizeof idb));
    }
    free(ids);
}

static int excluded(const struct esess *e, uint32_t shard, const uint8_t *id)
{
    for (uint32_t i = 0; i < e->n_excl; i++)
        if (e->excl_shard[i] == shard && sw__pipe_id_eq(e->excl[i], id)) return 1;
    return 0;
}

static void exclude(struct esess *e, uint32_t shard, const uint8_t *id)
{
    if (excluded(e, shard, id) || e->n_excl >= MAX_EXCLUDE) return;
    memcpy(e->excl[e->n_excl], id, SW_NODE_ID_LEN);
    e->excl_shard[e->n_excl++] = shard;
}

/* The best live node for a shard outside the session's exclusions. */
static int e_pick(struct sw_pipe *p, struct esess *e, uint32_t shard, uint8_t out[SW_NODE_ID_LEN])
{
    uint8_t ex[MAX_EXCLUDE][SW_NODE_ID_LEN];
    size_t n = 0;
    for (uint32_t i = 0; i < e->n_excl; i++)
        if (e->excl_shard[i] == shard) memcpy(ex[n++], e->excl[i], SW_NODE_ID_LEN);
    n = sw__spot_exclude(p, &ex[0][0], n, MAX_EXCLUDE); /* nodes that failed a spot check */
    return p->cfg.host.pick(p->cfg.host.ud, shard, n ? &ex[0][0] : NULL, n, out);
}

/* Opens the whole route (first open, a refusal, or a stall): a fresh wire id, OPEN to every
 * stage; the tokens follow once every stage said OPEN_OK. */
static int e_open_route(struct sw_pipe *p, struct esess *e, int avoid_old, char *msg, size_t msg_len)
{
    free(e->phash);
    e->n_phash = hist_hashes(e, &e->phash);
    /* a session that continues a recent one goes to the nodes that cache its prefix */
    const struct recent *pref = !avoid_old && e->n_phash ? e_recent(p, e) : NULL;
    for (uint32_t k = 0; k < e->n_stages; k++) {
        if (pref && !excluded(e, k, pref->route[k]) &&
            (p->cfg.host.serves ? p->cfg.host.serves(p->cfg.host.ud, pref->route[k], k)
                                : p->cfg.host.is_live && p->cfg.host.is_live(p->cfg.host.ud, pref->route[k]))) {
            memcpy(e->route[k], pref->route[k], SW_NODE_ID_LEN);
            continue;
        }
        if (avoid_old) {
            /* after a stall: another node for this shard if there is one (it may be the
             * culprit), else the same one again */
            uint8_t old[SW_NODE_ID_LEN];
            memcpy(old, e->route[k], SW_NODE_ID_LEN);
            uint32_t n_before = e->n_excl;
            exclude(e, k, old);
            int rc = e_pick(p, e, k, e->route[k]);
            e->n_excl = n_before;
            if (!rc) continue;
        }
        if (e_pick(p, e, k, e->route[k])) {
            if (e->why[0])
                snprintf(msg, msg_len, "shard %u: no live loaded node accepted the session (%.400s)", k, e->why);
            else
                snprintf(msg, msg_len, "shard %u: no live node has it loaded", k);
            return SW_ENOTFOUND;
        }
    }
    uint64_t w;
    do sw_random_bytes(&w, sizeof w);
    while (!w || w == e->wire || sw__pipe_es_by_wire(p, w));
    e->wire = w;
    e->state = E_OPENING;
    e->pending = 0;
    e->open_again_at = 0;
    e->failing = -1;
    e->reuse_min = UINT32_MAX;
    e->reused = 0;
    for (uint32_t k = 0; k < e->n_stages; k++) e_send_open(p, e, k);
    return 0;
}

static void e_send_tokens(struct sw_pipe *p, struct esess *e, uint32_t from, uint32_t to, uint8_t flags)
{
    while (from < to) {
        uint32_t n = SW_MIN(to - from, e->chunk);
        uint8_t buf[4 * 512];
        uint8_t *b = n * 4 <= sizeof buf ? buf : malloc((size_t)n * 4);
        if (!b) return;
        for (uint32_t i = 0; i < n; i++) sw_put_be32(b + 4 * i, (uint32_t)e->hist[from + i]);
        struct sw_pipe_msg m = { .type = SW_PIPE_TOKENS, .session = e->wire, .flags = flags, .pos = from,
                                 .n_tokens = n, .data = b, .data_len = (size_t)n * 4 };
        sw__pipe_send(p, e->route[0], &m);
        if (b != buf) free(b);
        from += n;
    }
}

void sw__pipe_e_reopen(struct sw_pipe *p, struct esess *e, uint64_t now_us, int avoid_old, const char *why)
{
    if (!e->first_why[0]) snprintf(e->first_why, sizeof e->first_why, "%s", why);
    if (++e->reopens > MAX_REOPENS) {
        if (strcmp(e->first_why, why))
            e_fail(p, e, SW_ETIMEDOUT, "the route failed %u times; first: %s; last: %s", e->reopens - 1, e->first_why, why);
        else
            e_fail(p, e, SW_ETIMEDOUT, "the route failed %u times: %s", e->reopens - 1, why);
        return;
    }
    sw_log(SW_LOG_INFO, "PIPE", "session %016llx: opening a new route (%s)", (unsigned long long)e->handle, why);
    e_send_all(p, e, SW_PIPE_CANCEL);
    char msg[512];
    p->st.failovers++;
    if (e_open_route(p, e, avoid_old, msg, sizeof msg)) {
        /* SW_EBUSY: nodes of the shard exist but every one refused (KV memory, session
         * limit); SW_ENOTFOUND: no live loaded node at all */
        int code = !e->why[0] ? SW_ENOTFOUND
                   : e->why_code == SW_EBUSY || e->why_code == SW_ENOMEM ? SW_EBUSY
                   : e->why_code == SW_ERANGE ? SW_ERANGE : SW_ENOTFOUND;
        e_fail(p, e, code, "%s", msg);
        return;
    }
    e_work_at(e, 0, now_us);
}

/* Stage k of the route is gone: a replica takes its place; its upstream replays. */
void sw__pipe_e_failover(struct sw_pipe *p, struct esess *e, uint32_t k, uint64_t now_us, const char *why)
{
    char ids[16];
    exclude(e, k, e->route[k]);
    /* not settled yet, or the stages started from a cached prefix (so the upstream stage
     * holds no outputs to replay before it): start over */
    if (e->state == E_OPENING || e->failing >= 0 || e->reused || e->spec_k) {
        sw__pipe_e_reopen(p, e, now_us, 0, why);
        return;
    }
    uint8_t r[SW_NODE_ID_LEN];
    if (e_pick(p, e, k, r)) {
        e_fail(p, e, SW_ENOTFOUND, "shard %u: no live node has it loaded (node %s %s)", k,
               sw__pipe_short_id(e->route[k], ids, sizeof ids), why);
        return;
    }
    char rid[16];
    sw_log(SW_LOG_INFO, "PIPE", "session %016llx: stage %u node %s %s; replica %s takes over",
           (unsigned long long)e->handle, k, sw__pipe_short_id(e->route[k], ids, sizeof ids), why,
           sw__pipe_short_id(r, rid, sizeof rid));
    p->st.failovers++;
    memcpy(e->route[k], r, SW_NODE_ID_LEN);
    e->failing = (int)k;
    e->open_again_at = 0;
    e_work_at(e, k, now_us);
    e_send_open(p, e, k);
}

/* The replica said OPEN_OK: tell everyone the new route; the upstream stage replays. */
static void e_failover_ready(struct sw_pipe *p, struct esess *e)
{
    uint32_t k = (uint32_t)e->failing;
    e->failing = -1;
    e->topup = 1;
    struct sw_pipe_msg m = { .type = SW_PIPE_REPLAY, .session = e->wire, .n_stages = (uint8_t)e->n_stages,
                             .route = &e->route[0][0], .replay_stage = k ? (uint8_t)(k - 1) : 0xff };
    for (uint32_t i = 0; i < e->n_stages; i++)
        if (i != k) sw__pipe_send(p, e->route[i], &m);
    if (k == 0) e_send_tokens(p, e, 0, e->n_hist, 0); /* the entry keeps the first stage's inputs */
    else if (e->n_hist > e->n_prompt)                 /* the last token may have been lost with the stage */
        e_send_tokens(p, e, e->n_hist - 1, e->n_hist, 0);
}

void sw__pipe_entry_open_ok(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us)
{
    struct esess *e = sw__pipe_es_by_wire(p, m->session);
    if (!e || m->stage >= e->n_stages || !sw__pipe_id_eq(from, e->route[m->stage])) return;
    if (!(e->pending & (1ull << m->stage))) return;
    e->pending &= ~(1ull << m->stage);
    e->last_sign = now_us;
    if (e->state == E_OPENING) e->reuse_min = SW_MIN(e->reuse_min, m->reused);
    if (e->pending) return;
    if (e->state == E_OPENING) {
        e->state = E_RUNNING;
        e_work_at(e, 0, now_us);
        /* every stage holds at least reuse_min positions of this prefix: compute the rest */
        e->reused = e->reuse_min == UINT32_MAX || e->no_prefix ? 0 : SW_MIN(e->reuse_min, e->n_hist - 1);
        e_send_tokens(p, e, e->reused, e->n_hist, 0);
        /* after a new route, also send each token to the first stage (one the old last stage
         * sampled may not have gone there); a speculative session's last stage sends every
         * step itself, with its drafts */
        if (e->reopens && !e->spec_k) e->topup = 1;
    } else if (e->failing >= 0) {
        e_work_at(e, e->failing > 0 ? (uint32_t)e->failing - 1 : 0, now_us); /* it replays */
        e_failover_ready(p, e);
    }
}

void sw__pipe_entry_error(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us)
{
    struct esess *e = sw__pipe_es_by_wire(p, m->session);
    if (!e) return;
    int k = -1;
    for (uint32_t i = 0; i < e->n_stages; i++)
        if (sw__pipe_id_eq(from, e->route[i])) k = (int)i;
    if (k < 0) return; /* not from this route (a stale stage) */
    char text[SW_PIPE_MAX_TEXT + 1];
    memcpy(text, m->text ? m->text : "", m->text_len);
    text[m->text_len] = 0;
    int refusal = (e->pending & (1ull << k)) &&
                  (m->code == SW_ENOMEM || m->code == SW_EBUSY || m->code == SW_ESTATE || m->code == SW_ERANGE ||
                   m->code == SW_EEXIST);
    if (refusal) {
        snprintf(e->why, sizeof e->why, "%s", text);
        e->why_code = m->code;
        p->st.sessions_refused++;
        exclude(e, (uint32_t)k, from);
        if (e->state == E_OPENING) {
            sw__pipe_e_reopen(p, e, now_us, 0, text);
            return;
        }
        /* a refused replica: another one, or fail */
        e->failing = -1;
        e->pending &= ~(1ull << k);
        sw__pipe_e_failover(p, e, (uint32_t)k, now_us, text);
        return;
    }
    if (m->code == SW_ESTATE && e->state == E_RUNNING && e->failing < 0) {
        /* the node dropped its stage (it switched shards): like a lost node */
        sw__pipe_e_failover(p, e, (uint32_t)k, now_us, text);
        return;
    }
    e_fail(p, e, m->code, "%s", text);
}

void sw__pipe_entry_token(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us)
{
    struct esess *e = sw__pipe_es_by_wire(p, m->session);
    if (!e || e->state != E_RUNNING || !sw__pipe_id_eq(from, e->route[e->n_stages - 1])) return;
    if (m->pos < e->n_hist) return; /* sampled again after a failover: we have it */
    if (m->pos > e->n_hist) {
        e_fail(p, e, SW_ECORRUPT, "token for position %u, expected %u", m->pos, e->n_hist);
        return;
    }
    if (m->n_logits && (e->flags & SW_PIPE_OPEN_LOGITS) == 0) return;
    if (e->n_hist >= e->max_pos) return;
    e->hist[e->n_hist++] = m->token;
    if (m->blob_len) {
        uint8_t *b = realloc(e->blob, m->blob_len);
        if (b) {
            memcpy(b, m->blob, m->blob_len);
            e->blob = b;
            e->blob_len = m->blob_len;
        }
    }
    if (!e->n_gen) e->t_first = now_us;
    e->n_gen++;
    e->t_last = now_us;
    e_work_at(e, 0, now_us); /* the next token's step starts at the first stage */
    int last = e->n_hist >= e->max_pos ||
               (!(e->flags & SW_PIPE_OPEN_IGNORE_EOS) && sw__pipe_is_stop(e->stop, e->n_stop, m->token));
    if (e->topup && !last) e_send_tokens(p, e, e->n_hist - 1, e->n_hist, 0);
    struct sw_pipe_token_ev ev = { .session = e->handle, .token = m->token, .pos = m->pos, .index = e->n_gen - 1,
                                   .ttft_us = e->t_first - e->t_open, .elapsed_us = now_us - e->t_open, .last = last,
                                   .blob = m->blob, .blob_len = m->blob_len,
                                   .reused = e->reused };
    float *lg = NULL;
    if (m->n_logits) {
        lg = malloc((size_t)m->n_logits * sizeof *lg);
        if (lg) memcpy(lg, m->logits, (size_t)m->n_logits * 4);
        ev.logits = lg;
        ev.n_logits = lg ? m->n_logits : 0;
    }
    if (e->n_gen > 1 && now_us > e->t_first) ev.tokens_per_s = (e->n_gen - 1) * 1e6 / (double)(now_us - e->t_first);
    uint64_t h = e->handle;
    p->st.tokens_generated++;
    /* may start a spot check; not of a session that reused a cached prefix: its stages hold
     * no rows before that point to feed a checker */
    if (!last && !e->reused) sw__spot_entry_token(p, e, now_us);
    if (e->cb.on_token) e->cb.on_token(e->cb.ud, &ev);
    free(lg);
    e = sw__pipe_es_by_handle(p, h); /* the callback may have cancelled */
    if (e && last) {
        e_close(p, e);
        e_end(p, e, 0, "finished");
    }
}

/* PROGRESS from a stage of the route: a sign of life, and where the work is. */
void sw__pipe_entry_progress(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us)
{
    struct esess *e = sw__pipe_es_by_wire(p, m->session);
    if (!e || e->state != E_RUNNING || m->stage >= e->n_stages || !sw__pipe_id_eq(from, e->route[m->stage])) return;
    e->last_sign = now_us;
    if (m->n_tokens) {
        if (e->holder != m->stage || !e->hold_n || m->pos != e->hold_pos) e->work_since = now_us;
        e->holder = m->stage;
        e->hold_n = m->n_tokens;
        e->hold_pos = m->pos;
        e->hold_est_us = m->compute_us;
    } else if (e->holder == m->stage) { /* done there: on its way downstream */
        e_work_at(e, (m->stage + 1u) % e->n_stages, now_us);
    }
}

uint64_t sw__pipe_entry_check(struct sw_pipe *p, struct esess *e, uint64_t now_us)
{
    char why[256], ids[16];
    uint64_t stall_at = e->last_sign + e->deadline_us;
    if (now_us >= stall_at) {
        double s = (double)(now_us - e->last_sign) / 1e6;
        if (e->state == E_OPENING || e->failing >= 0) {
            uint32_t k = 0;
            while (k + 1 < e->n_stages && !(e->pending & (1ull << k))) k++;
            snprintf(why, sizeof why, "shard %u: node %s did not answer the session's OPEN for %.1f s", k,
                     sw__pipe_short_id(e->route[k], ids, sizeof ids), s);
        } else if (e->hold_n) {
            snprintf(why, sizeof why, "shard %u: node %s stopped answering for %.1f s while computing %u tokens",
                     e->holder, sw__pipe_short_id(e->route[e->holder], ids, sizeof ids), s, e->hold_n);
        } else {
            snprintf(why, sizeof why, "shard %u: node %s stopped answering for %.1f s (the session's next step was there)",
                     e->holder, sw__pipe_short_id(e->route[e->holder], ids, sizeof ids), s);
        }
        sw__pipe_e_reopen(p, e, now_us, 1, why);
        return 0;
    }
    uint64_t next = stall_at;
    if ((e->state == E_OPENING || e->failing >= 0) && e->pending) {
        uint64_t every = SW_MIN((uint64_t)OPEN_AGAIN_MS * 1000, e->deadline_us / 4);
        if (!e->open_again_at) {
            e->open_again_at = now_us + every;
        } else if (now_us >= e->open_again_at) {
            for (uint32_t k = 0; k < e->n_stages; k++) {
                if (!(e->pending & (1ull << k))) continue;
                sw_log(SW_LOG_DEBUG, "PIPE", "session %016llx: shard %u: node %s has not answered OPEN for %.1f s; sent again",
                       (unsigned long long)e->wire, k, sw__pipe_short_id(e->route[k], ids, sizeof ids),
                       (double)(now_us - e->last_sign) / 1e6);
                e_send_open(p, e, k);
                p->st.opens_resent++;
            }
            e->open_again_at = now_us + every;
        }
        next = SW_MIN(next, e->open_again_at);
    } else {
        e->open_again_at = 0;
    }
    if (e->hold_n && e->hold_est_us) {
        /* alive but not getting on: the holder's own estimate, with a margin */
        uint64_t work_at = e->work_since + e->deadline_us + WORK_MARGIN * e->hold_est_us;
        if (now_us >= work_at) {
            snprintf(why, sizeof why, "shard %u: node %s computed nothing for %.1f s on %u tokens (its own estimate: %.1f s)",
                     e->holder, sw__pipe_short_id(e->route[e->holder], ids, sizeof ids),
                     (double)(now_us - e->work_since) / 1e6, e->hold_n, (double)e->hold_est_us / 1e6);
            sw__pipe_e_reopen(p, e, now_us, 1, why);
            return 0;
        }
        next = SW_MIN(next, work_at);
    }
    return next;
}

int sw_pipe_open(struct sw_pipe *p, const struct sw_pipe_request *req, const struct sw_pipe_session_cb *cb,
                 uint64_t now_us, uint64_t *session_out, char *msg, size_t msg_len)
{
    if (msg && msg_len) msg[0] = 0;
    char dummy[8];
    if (!msg || !msg_len) {
        msg = dummy;
        msg_len = sizeof dummy;
    }
    if (!p || !req || !req->prompt || !req->n_prompt || !req->n_predict || !p->cfg.n_shards ||
        p->cfg.n_shards > SW_PIPE_MAX_STAGES || !p->cfg.host.pick || req->n_stop > SW_PIPE_MAX_STOP ||
        !sw_pipe_dtype_size(req->dtype) || !req->sampler_blob || !req->sampler_blob_len ||
        req->sampler_blob_len > SW_PIPE_MAX_BLOB) {
        snprintf(msg, msg_len, "bad session request");
        return SW_EINVAL;
    }
    uint64_t max_pos = (uint64_t)req->n_prompt + req->n_predict;
    uint32_t n_ctx = req->n_ctx ? req->n_ctx : (uint32_t)SW_MIN(max_pos, (uint64_t)UINT32_MAX);
    if (max_pos > n_ctx) max_pos = n_ctx;
    if (req->n_prompt >= max_pos) {
        snprintf(msg, msg_len, "the prompt (%u tokens) leaves no room in a context of %u", req->n_prompt, n_ctx);
        return SW_ERANGE;
    }
    struct esess *e = calloc(1, sizeof *e);
    if (!e) return SW_ENOMEM;
    e->hist = malloc(max_pos * sizeof *e->hist);
    e->blob = malloc(req->sampler_blob_len);
    if (!e->hist || !e->blob) {
        sw__pipe_esess_free(e);
        return SW_ENOMEM;
    }
    memcpy(e->hist, req->prompt, req->n_prompt * sizeof *e->hist);
    memcpy(e->blob, req->sampler_blob, req->sampler_blob_len);
    e->blob_len = req->sampler_blob_len;
    e->n_hist = e->n_prompt = req->n_prompt;
    e->max_pos = (uint32_t)max_pos;
    e->n_ctx = n_ctx;
    e->n_stop = req->n_stop;
    for (uint32_t i = 0; i < req->n_stop; i++) e->stop[i] = req->stop[i];
    e->dtype = req->dtype;
    e->flags = (uint8_t)((req->want_logits ? SW_PIPE_OPEN_LOGITS : 0) | (req->ignore_eos ? SW_PIPE_OPEN_IGNORE_EOS : 0));
    e->chunk = req->chunk ? SW_MIN(req->chunk, SW_PIPE_MAX_TOKENS) : DEFAULT_CHUNK;
    e->deadline_us = (uint64_t)(req->deadline_ms ? req->deadline_ms : DEFAULT_DEADLINE_MS) * 1000;
    e->no_prefix = req->no_prefix_cache != 0;
    e->spec_k = SW_MIN(req->spec_k, SW_PIPE_MAX_SPEC);
    e->n_stages = p->cfg.n_shards;
    if (cb) e->cb = *cb;
    e->failing = -1;
    e->t_open = e->last_sign = e->work_since = now_us;
    do sw_random_bytes(&e->handle, sizeof e->handle);
    while (!e->handle || sw__pipe_es_by_handle(p, e->handle));
    int rc = e_open_route(p, e, 0, msg, msg_len);
    if (rc) {
        sw__pipe_esess_free(e);
        return rc;
    }
    e->next = p->es;
    p->es = e;
    if (session_out) *session_out = e->handle;
    return 0;
}

int sw_pipe_cancel(struct sw_pipe *p, uint64_t session, uint64_t now_us)
{
    (void)now_us;
    struct esess *e = p ? sw__pipe_es_by_handle(p, session) : NULL;
    if (!e) return SW_ENOTFOUND;
    e_send_all(p, e, SW_PIPE_CANCEL);
    e_end(p, e, SW_ECLOSED, "cancelled");
    return 0;
}
