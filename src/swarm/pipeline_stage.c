/* pipeline_stage.c — the engine's stage role: sessions that pass through this node's
 * compute stage (KV sequence, ordered input queue, kept outputs for failover, sampling at
 * the last stage) and the compute jobs that run their steps, batched across sessions.
 * Not for: the entry role (pipeline_entry.c), running the jobs (the host's threads). */
#include "swarm/pipeline_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer/infer.h"

/* ------------------------------------------------------------------ compute job */

/* Hidden states in f16 on the wire become f32 for the stage (owned by *conv). */
static const void *job_input(const struct sw_pipe_job *j, struct jent *e, float **conv)
{
    *conv = NULL;
    if (j->takes_tokens || e->in_dtype != SW_PIPE_F16) return e->in;
    size_t nf = (size_t)e->n * j->n_embd;
    float *f = malloc(nf * sizeof *f + 1);
    if (!f) return NULL;
    for (size_t i = 0; i < nf; i++) {
        uint16_t h;
        memcpy(&h, e->in + 2 * i, 2);
        f[i] = sw_pipe_f16_to_f32(h);
    }
    *conv = f;
    return f;
}

/* A speculative step at the last stage wants the logits of every position. */
static unsigned job_flags(const struct sw_pipe_job *j, const struct jent *e)
{
    return j->gives_logits && (e->flags & SW_PIPE_TOK_SPEC) ? SW_STAGE_LOGITS_ALL : 0;
}

static uint64_t cpu_now_us(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)) return 0;
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void sw_pipe_job_run(struct sw_pipe_job *j)
{
    uint64_t t0 = sw_time_us(), c0 = cpu_now_us();
    struct sw_stage_batch b[BATCH_MAX];
    float *conv[BATCH_MAX];
    uint32_t nb = 0;
    int idx[BATCH_MAX];
    for (uint32_t i = 0; i < j->n_ent; i++) {
        struct jent *e = &j->ent[i];
        const void *in = job_input(j, e, &conv[i]);
        if (!in) {
            e->rc = SW_ENOMEM;
            snprintf(e->msg, sizeof e->msg, "out of memory converting hidden states");
            continue;
        }
        b[nb] = (struct sw_stage_batch){ .seq = e->session, .pos = e->pos, .n_tokens = e->n, .in = in, .out = e->out,
                                         .flags = job_flags(j, e) };
        idx[nb++] = (int)i;
    }
    if (nb == 1) { /* the plain call: one session's step, exactly as without batching */
        struct jent *e = &j->ent[idx[0]];
        e->rc = sw_stage_forward(j->st, e->session, e->pos, e->n, b[0].in, e->out, b[0].flags);
        if (e->rc) snprintf(e->msg, sizeof e->msg, "%s", sw_stage_errmsg(j->st));
    } else if (nb) {
        /* each entry is checked and run alone; one failing fails only its session. The stage
         * keeps one message (the last failure's): entries that failed get it when it is the
         * only failure, else their code's text. */
        sw_stage_forward_batch(j->st, b, nb);
        uint32_t n_bad = 0;
        for (uint32_t k = 0; k < nb; k++) n_bad += b[k].rc != 0;
        for (uint32_t k = 0; k < nb; k++) {
            struct jent *e = &j->ent[idx[k]];
            e->rc = b[k].rc;
            if (e->rc) snprintf(e->msg, sizeof e->msg, "%s", n_bad == 1 ? sw_stage_errmsg(j->st) : sw_strerror(e->rc));
        }
    }
    for (uint32_t i = 0; i < j->n_ent; i++) free(conv[i]);
    j->compute_us = sw_time_us() - t0;
    uint64_t c1 = cpu_now_us();
    j->cpu_us = c1 > c0 ? c1 - c0 : 0;
}

static void job_free(struct sw_pipe_job *j)
{
    if (!j) return;
    for (uint32_t i = 0; i < j->n_ent; i++) {
        free(j->ent[i].in);
        free(j->ent[i].out);
    }
    free(j);
}

/* The next step of a session: every queued, contiguous input up to MERGE_MAX tokens (one
 * chunk bigger than that alone). Returns its token count, *len its bytes. */
static uint32_t next_step(const struct ssess *s, size_t *len_out)
{
    uint32_t pos = s->qh->pos, n = 0;
    size_t len = 0;
    for (const struct chunk *c = s->qh; c && n + c->n <= MERGE_MAX && c->dtype == s->qh->dtype && c->flags == s->qh->flags;
         c = c->next) {
        if (c->pos != pos + n) break;
        n += c->n;
        len += c->len;
    }
    if (!n) {
        n = s->qh->n;
        len = s->qh->len;
    }
    *len_out = len;
    return n;
}

/* Moves a session's next step (n tokens, len bytes) from its queue into entry e. */
static int take_step(struct ssess *s, struct jent *e, uint32_t n, size_t len)
{
    memset(e, 0, sizeof *e);
    e->session = s->id;
    e->pos = s->qh->pos;
    e->n = n;
    e->in_dtype = s->qh->dtype;
    e->flags = s->qh->flags;
    /* a checker of the last shard checks the token drawn from every row's logits (the rows
     * before the checked node's first draw, a prompt, need none) */
    if (s->gives_logits && (s->flags & SW_PIPE_OPEN_AUDIT) && sw__spot_checker_logits_from(s) < e->pos + n)
        e->flags |= SW_PIPE_TOK_SPEC;
    e->out_floats = sw_stage_out_floats(s->st, n, s->gives_logits && (e->flags & SW_PIPE_TOK_SPEC) ? SW_STAGE_LOGITS_ALL : 0);
    e->in = malloc(len ? len : 1);
    e->out = malloc(e->out_floats * sizeof(float) + 1);
    if (!e->in || !e->out) {
        free(e->in);
        free(e->out);
        e->in = NULL;
        e->out = NULL;
        return SW_ENOMEM;
    }
    e->in_len = len;
    size_t off = 0;
    uint32_t taken = 0;
    while (taken < n) {
        struct chunk *c = s->qh;
        memcpy(e->in + off, c->data, c->len);
        off += c->len;
        taken += c->n;
        s->qh = c->next;
        free(c->data);
        free(c);
    }
    if (!s->qh) s->qt = NULL;
    return 0;
}

/* Is a compute job running (or queued) on stage st? */
static int stage_busy(const struct sw_pipe *p, const struct sw_stage *st)
{
    for (const struct ssess *x = p->ss; x; x = x->next)
        if (x->busy && x->st == st) return 1;
    for (const struct ssess *x = p->dead; x; x = x->next)
        if (x->busy && x->st == st) return 1;
    return 0;
}

static uint32_t batch_limit(const struct sw_pipe *p)
{
    return p->cfg.batch_max ? SW_MIN(p->cfg.batch_max, BATCH_MAX) : BATCH_MAX;
}

/* Is another session decoding at this stage due soon (see COALESCE_PCT)? Then the step of
 * s is held (1) until that one arrives or the hold's bound passes; the host wakes us then. */
static int coalesce_hold(struct sw_pipe *p, const struct ssess *s, uint64_t now_us)
{
    uint32_t pct = p->cfg.coalesce_pct ? p->cfg.coalesce_pct : COALESCE_PCT;
    if (!p->cfg.host.wake || pct >= 1000 || p->us_short_step < COALESCE_MIN_US) return 0;
    uint64_t bound = SW_MIN(p->us_short_step * pct / 100, (uint64_t)COALESCE_MAX_US);
    uint64_t gather = SW_MIN(bound, SW_MAX(p->us_short_step * COALESCE_GATHER_PCT / 100, (uint64_t)COALESCE_MIN_US));
    int shared = !p->cfg.host.shared_compute || p->cfg.host.shared_compute(p->cfg.host.ud);
    if (!shared) bound = gather;
    uint64_t start = p->hold_start ? p->hold_start : now_us;
    if (now_us >= start + bound) return 0;
    /* the nearest session ahead of s round the ring: the latest to come here before s,
     * leaving out those that came within the bound (they go with s) */
    uint64_t ahead = UINT64_MAX;
    for (const struct ssess *x = p->ss; x; x = x->next)
        if (x != s && x->st == s->st && !x->dead && x->cycle_us && x->arr_us + bound < now_us &&
            now_us - x->arr_us <= 2 * x->cycle_us)
            ahead = SW_MIN(ahead, now_us - x->arr_us);
    int due = 0;
    for (const struct ssess *x = p->ss; x && !due; x = x->next) {
        if (x == s || x->st != s->st || x->busy || x->dead || x->qh || !x->cycle_us) continue;
        if (now_us - x->arr_us > 2 * x->cycle_us) continue; /* not decoding here lately */
        /* x due within the bound (or late): they go together at the cost of one hold. Else
         * s waits for x when x is behind it by under half a cycle and nearer than the one
         * ahead: so of two sessions the one ahead the short way round yields, and sessions
         * evenly spaced round the ring do not all hold for each other (and lose the bound
         * at every stage, never meeting) */
        uint64_t due_at = x->arr_us + x->cycle_us;
        uint64_t behind = due_at > now_us ? due_at - now_us : 0;
        /* x came here with s last time (one batch upstream): it is on its way right behind
         * s whatever the estimate of its cycle says (timing jitter) */
        uint64_t gap = x->arr_us > s->prev_arr_us ? x->arr_us - s->prev_arr_us : s->prev_arr_us - x->arr_us;
        int together = s->prev_arr_us && gap <= gather;
        due = together || behind <= bound || (shared && behind <= x->cycle_us / 2 && behind < ahead);
    }
    if (!due) return 0;
    if (!p->hold_start) {
        p->hold_start = now_us;
        p->st.coalesce_holds++;
    }
    p->cfg.host.wake(p->cfg.host.ud, start + bound);
    return 1;
}

/* Starts the next compute step of a stage session when none is running. A short step (a
 * decode) waits while another job runs at the stage, then leaves together with the short
 * steps of the other sessions waiting there (sw_stage_forward_batch). Returns 1 when it
 * closed a session (the caller's list walk must restart), else 0. */
static int kick(struct sw_pipe *p, struct ssess *s, uint64_t now_us)
{
    if (s->busy || s->dead || !s->qh) return 0;
    if (p->cfg.host.stage && p->cfg.host.stage(p->cfg.host.ud) != s->st) {
        /* the node swapped its compute stage (another shard): this session's KV is gone */
        sw__pipe_send_error(p, s->entry, s->id, s->idx, SW_ESTATE, "stage %u: the node no longer serves this shard", s->idx);
        s->st = NULL; /* never touch the old stage again */
        sw__pipe_ssess_close(p, s);
        return 1;
    }
    size_t len;
    uint32_t n = next_step(s, &len);
    if (sw__spot_checker_wait(s, s->qh->pos + n)) return 0; /* the claimed tokens are not here yet */
    uint32_t limit = batch_limit(p);
    int batchable = limit > 1 && n <= BATCH_STEP_MAX;
    if (batchable && stage_busy(p, s->st)) return 0; /* goes with the next batch */
    if (batchable && coalesce_hold(p, s, now_us)) return 0; /* others are due: go together */
    struct sw_pipe_job *j = calloc(1, sizeof *j);
    if (!j) return 0;
    j->st = s->st;
    j->takes_tokens = s->takes_tokens;
    j->gives_logits = s->gives_logits;
    j->n_embd = s->n_embd;
    j->submit_us = now_us;
    struct ssess *members[BATCH_MAX];
    if (take_step(s, &j->ent[0], n, len)) {
        free(j);
        return 0;
    }
    members[0] = s;
    j->n_ent = 1;
    uint32_t tokens = n;
    if (batchable) {
        for (struct ssess *x = p->ss; x && j->n_ent < limit; x = x->next) {
            if (x == s || x->busy || x->dead || !x->qh || x->st != s->st) continue;
            size_t xl;
            uint32_t xn = next_step(x, &xl);
            if (sw__spot_checker_wait(x, x->qh->pos + xn)) continue;
            if (xn > BATCH_STEP_MAX || tokens + xn > BATCH_TOKENS) continue;
            if (take_step(x, &j->ent[j->n_ent], xn, xl)) break;
            members[j->n_ent++] = x;
            tokens += xn;
        }
    }
    int rc = p->cfg.host.submit(p->cfg.host.ud, j);
    if (rc) {
        for (uint32_t i = 0; i < j->n_ent; i++)
            sw__pipe_send_error(p, members[i]->entry, members[i]->id, members[i]->idx, rc, "stage %u: cannot queue compute: %s",
                       members[i]->idx, sw_strerror(rc));
        uint32_t n_ent = j->n_ent;
        job_free(j);
        for (uint32_t i = 0; i < n_ent; i++) sw__pipe_ssess_close(p, members[i]);
        return 1;
    }
    for (uint32_t i = 0; i < j->n_ent; i++) members[i]->busy = 1;
    j->short_steps = batchable;
    if (p->hold_start) {
        p->st.coalesce_held_us += now_us - p->hold_start;
        p->hold_start = 0;
    }
    p->jobs++;
    p->st.jobs++;
    if (j->n_ent > 1) {
        p->st.batched_jobs++;
        p->st.batched_entries += j->n_ent;
    }
    return 0;
}

/* Kicks every session with input waiting (after a job ended: the decode steps that waited
 * for the stage go now, as one batch). */
static void kick_waiting(struct sw_pipe *p, uint64_t now_us)
{
    for (int again = 1; again;) {
        again = 0;
        for (struct ssess *x = p->ss; x; x = x->next) {
            if (x->busy || x->dead || !x->qh) continue;
            if (kick(p, x, now_us)) {
                again = 1; /* the list changed */
                break;
            }
        }
    }
}

void sw__pipe_stage_kick(struct sw_pipe *p, uint64_t now_us) { kick_waiting(p, now_us); }

void sw__pipe_stage_release_hold(struct sw_pipe *p, uint64_t now_us)
{
    if (!p->hold_start) return;
    kick_waiting(p, now_us); /* held steps go now if the bound passed; else wake again */
    int waiting = 0;
    for (const struct ssess *x = p->ss; x; x = x->next) waiting |= x->qh != NULL && !x->busy;
    if (!waiting) p->hold_start = 0; /* the held session closed */
}

/* Sends kept rows [from, to) downstream in messages of at most REPLAY_CHUNK tokens. */
static void send_kept(struct sw_pipe *p, struct ssess *s, size_t from, size_t to, uint8_t flags)
{
    const uint8_t *down = s->route[s->idx + 1];
    while (from < to) {
        uint32_t n = (uint32_t)SW_MIN(to - from, (size_t)REPLAY_CHUNK);
        struct sw_pipe_msg m = { .type = SW_PIPE_HIDDEN, .session = s->id, .dtype = s->dtype, .flags = flags,
                                 .pos = (uint32_t)from, .n_tokens = n, .n_embd = s->n_embd,
                                 .data = s->kept + from * s->row_bytes, .data_len = (size_t)n * s->row_bytes };
        sw__pipe_send(p, down, &m); /* a failure leaves the rows kept: the entry re-routes */
        from += n;
    }
}

static void last_stage_output(struct sw_pipe *p, const struct sw_pipe_job *j, struct ssess *s, const struct jent *e);

/* One entry of a finished job: keep and send its outputs, or sample at the last stage. */
static void entry_done(struct sw_pipe *p, const struct sw_pipe_job *j, const struct jent *e, uint64_t now_us)
{
    struct ssess *s = sw__pipe_ss_find(p, e->session);
    if (!s) { /* closed while computing: release it now */
        for (struct ssess **pp = &p->dead; *pp; pp = &(*pp)->next) {
            if ((*pp)->id != e->session) continue;
            struct ssess *d = *pp;
            *pp = d->next;
            d->busy = 0;
            sw__pipe_ssess_release(p, d);
            break;
        }
        return;
    }
    s->busy = 0;
    s->last_us = now_us;
    if (e->rc) {
        sw__pipe_send_error(p, s->entry, s->id, s->idx, e->rc, "stage %u: compute failed at positions %u..%u: %s",
                   s->idx, e->pos, e->pos + e->n - 1, e->msg[0] ? e->msg : sw_strerror(e->rc));
        sw__pipe_ssess_close(p, s);
        return;
    }
    p->st.tokens_computed += e->n;
    if (e->pos + e->n > s->computed) s->computed = e->pos + e->n;
    if (!s->gives_logits) {
        /* keep the outputs (failover replays them), in the wire dtype, then send */
        size_t need_rows = (size_t)e->pos + e->n;
        if (need_rows > s->kept_cap_rows) {
            size_t cap = SW_MAX(need_rows, s->kept_cap_rows * 2);
            cap = SW_MIN(cap, (size_t)s->n_ctx);
            if (cap < need_rows) cap = need_rows;
            uint8_t *k = realloc(s->kept, cap * s->row_bytes);
            if (!k) {
                sw__pipe_send_error(p, s->entry, s->id, s->idx, SW_ENOMEM, "stage %u: out of memory keeping outputs", s->idx);
                sw__pipe_ssess_close(p, s);
                return;
            }
            s->kept = k;
            s->kept_cap_rows = cap;
        }
        sw__spot_test_corrupt(p, s, e->out, e->n); /* a test hook: off unless its env is set */
        uint8_t *dst = s->kept + (size_t)e->pos * s->row_bytes;
        size_t nf = (size_t)e->n * s->n_embd;
        if (s->dtype == SW_PIPE_F32) {
            memcpy(dst, e->out, nf * 4);
        } else {
            for (size_t i = 0; i < nf; i++) {
                uint16_t h = sw_pipe_f32_to_f16(e->out[i]);
                memcpy(dst + 2 * i, &h, 2);
            }
        }
        if (need_rows > s->kept_rows) s->kept_rows = need_rows;
        if (s->flags & SW_PIPE_OPEN_AUDIT) sw__spot_checker_step(p, s); /* a checker compares, sends nothing on */
        else send_kept(p, s, e->pos, need_rows, e->flags & SW_PIPE_TOK_SPEC);
        return;
    }
    if (s->flags & SW_PIPE_OPEN_AUDIT) { /* a checker of the last shard: check, draw nothing */
        sw__spot_checker_logits(p, s, e->pos, e->n, e->out);
        return;
    }
    last_stage_output(p, j, s, e);
}

/* ------------------------------------------------------------------ speculative decoding */

#define SPEC_NGRAM_MAX 3u  /* prompt lookup: the longest suffix searched for first */
#define SPEC_SEARCH 8192u  /* ... in the latest this many tokens of the history */

static void hist_push(struct ssess *s, int32_t t)
{
    if (!s->hist) return;
    if (s->n_hist >= s->n_ctx) { /* cannot happen (positions < n_ctx); keep the latest half */
        uint32_t drop = s->n_hist / 2;
        memmove(s->hist, s->hist + drop, (size_t)(s->n_hist - drop) * sizeof *s->hist);
        s->n_hist -= drop;
        s->hist_base += drop;
    }
    s->hist[s->n_hist++] = t;
}

/* Prompt lookup: the latest earlier occurrence of the history's last g tokens (g from
 * SPEC_NGRAM_MAX down to 1) and up to k of the tokens that followed it. */
static uint32_t spec_draft(const struct ssess *s, uint32_t k, int32_t *out)
{
    const int32_t *h = s->hist;
    uint32_t n = s->n_hist, lo = n > SPEC_SEARCH ? n - SPEC_SEARCH : 0;
    for (uint32_t g = SPEC_NGRAM_MAX; g >= 1 && k; g--) {
        if (n < g + 1) continue;
        const int32_t *suf = h + n - g;
        for (uint32_t i = n - g; i-- > lo;) {
            if (memcmp(h + i, suf, g * sizeof *h)) continue;
            uint32_t m = SW_MIN(k, n - (i + g));
            memcpy(out, h + i + g, m * sizeof *out);
            return m;
        }
    }
    return 0;
}

/* The next step after the token t of position pos: t and, for a speculative session, the
 * drafts that follow it, straight to the first stage (one hop fewer than via the entry). */
static void send_next(struct sw_pipe *p, struct ssess *s, uint32_t pos, int32_t t)
{
    int32_t ids[1 + SW_PIPE_MAX_SPEC];
    ids[0] = t;
    uint32_t nd = 0;
    if (s->spec_k && s->max_pos >= pos + 2) {
        /* the last drafted position's logits pick a token that must stay under max_pos */
        nd = spec_draft(s, SW_MIN(s->spec_k, s->max_pos - pos - 2), ids + 1);
        memcpy(s->draft, ids + 1, nd * sizeof *ids);
        s->n_draft = nd;
        s->draft_pos = pos + 1;
        if (nd) {
            p->st.spec_steps++;
            p->st.spec_drafted += nd;
        }
    }
    uint8_t be[4 * (1 + SW_PIPE_MAX_SPEC)];
    for (uint32_t i = 0; i <= nd; i++) sw_put_be32(be + 4 * i, (uint32_t)ids[i]);
    /* a speculative session's every step rewinds: the step before may have left rejected
     * drafts past pos at every stage */
    struct sw_pipe_msg tm = { .type = SW_PIPE_TOKENS, .session = s->id,
                              .flags = SW_PIPE_TOK_SHORTCUT | (s->spec_k ? SW_PIPE_TOK_SPEC : 0), .pos = pos,
                              .n_tokens = 1 + nd, .data = be, .data_len = (size_t)(1 + nd) * 4 };
    sw__pipe_send(p, s->route[0], &tm);
}

/* The last stage: sample the token after the step's last position — or, for a speculative
 * step, after each position in turn while the sampled token equals the draft that the step
 * computed at the next position (the drafts are point masses, so "sample from the model's
 * distribution and compare" is the standard acceptance rule: every token has the
 * probability it has without speculation, and with a seed the very same draws) — send each
 * to the entry, then the next step to the first stage. */
static void last_stage_output(struct sw_pipe *p, const struct sw_pipe_job *j, struct ssess *s, const struct jent *e)
{
    int spec = (e->flags & SW_PIPE_TOK_SPEC) != 0;
    uint32_t rows = spec ? e->n : 1, q0 = e->pos + e->n - rows;
    for (uint32_t i = 0; i < rows; i++) {
        uint32_t q = q0 + i; /* the logits of position q pick the token of position q+1 */
        if (q + 1 < s->n_known) continue;
        if (q + 1 >= s->max_pos) return;
        const float *lg = e->out + (size_t)i * s->n_vocab;
        int32_t t = sw_sampler_sample(s->smp, lg);
        if (t >= 0) t = sw__spot_test_token(p, s, lg, t); /* a test hook: off unless its env is set */
        if (t < 0) {
            sw__pipe_send_error(p, s->entry, s->id, s->idx, SW_EINVAL,
                                "stage %u: sampling failed at position %u: every logit is NaN or -inf", s->idx, q + 1);
            sw__pipe_ssess_close(p, s);
            return;
        }
        s->n_known = q + 2;
        hist_push(s, t);
        int last = s->n_known >= s->max_pos ||
                   (!(s->flags & SW_PIPE_OPEN_IGNORE_EOS) && sw__pipe_is_stop(s->stop, s->n_stop, t));
        struct sw_buf blob;
        sw_buf_init(&blob);
        sw_sampler_save(s->smp, &blob);
        struct sw_pipe_msg m = { .type = SW_PIPE_TOKEN_OUT, .session = s->id, .pos = q + 1, .token = t,
                                 .compute_us = (uint32_t)SW_MIN(j->compute_us, UINT32_MAX),
                                 .blob = blob.data, .blob_len = (uint32_t)blob.len };
        if (s->flags & SW_PIPE_OPEN_LOGITS) {
            m.n_logits = s->n_vocab;
            m.logits = (const uint8_t *)lg;
        }
        sw__pipe_send(p, s->entry, &m);
        sw_buf_free(&blob);
        if (last) return;
        uint32_t di = q + 1 - s->draft_pos; /* the draft the step computed at position q+1 */
        if (spec && i + 1 < rows && q + 1 >= s->draft_pos && di < s->n_draft && s->draft[di] == t) {
            p->st.spec_accepted++;
            continue;
        }
        send_next(p, s, q + 1, t);
        return;
    }
}

/* Moves a live session to the end of the list: the sessions that waited longest are
 * kicked (and batched) first. */
static void to_tail(struct sw_pipe *p, uint64_t id)
{
    struct ssess **pp = &p->ss, *s = NULL;
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->id == id) {
            s = *pp;
            *pp = s->next;
            break;
        }
    if (!s) return;
    while (*pp) pp = &(*pp)->next;
    s->next = NULL;
    *pp = s;
}

void sw_pipe_job_done(struct sw_pipe *p, struct sw_pipe_job *j, uint64_t now_us)
{
    if (p->jobs) p->jobs--;
    /* the stage's speed, as the entries will wait for it: wall time per token from submit
     * to done (a core wait, a test's step delay and batching included) */
    uint64_t tokens = 0;
    for (uint32_t i = 0; i < j->n_ent; i++) tokens += j->ent[i].n;
    if (tokens && now_us > j->submit_us) {
        uint64_t wall = now_us - j->submit_us, per = wall / tokens;
        p->us_per_token = p->us_per_token ? (3 * p->us_per_token + per) / 4 : per;
        p->us_per_step = p->us_per_step ? (3 * p->us_per_step + wall) / 4 : wall;
        if (j->short_steps) p->us_short_step = p->us_short_step ? (3 * p->us_short_step + wall) / 4 : wall;
    }
    if (j->short_steps && j->n_ent >= 1 && j->n_ent <= BATCH_MAX) {
        const uint32_t k = j->n_ent - 1;
        p->st.dec_jobs[k]++;
        p->st.dec_run_us[k] += j->compute_us;
        p->st.dec_cpu_us[k] += j->cpu_us;
        p->st.dec_wall_us[k] += now_us > j->submit_us ? now_us - j->submit_us : 0;
    }
    char bad[sizeof j->ent[0].msg];
    int vrc = p->cfg.host.validate ? p->cfg.host.validate(p->cfg.host.ud, j->st, bad, sizeof bad) : 0;
    for (uint32_t i = 0; vrc && i < j->n_ent; i++)
        if (!j->ent[i].rc) {
            j->ent[i].rc = vrc;
            snprintf(j->ent[i].msg, sizeof j->ent[i].msg, "%s", bad);
        }
    sw__spot_job_account(p, j); /* the part of the job that recomputed spot checks */
    for (uint32_t i = 0; i < j->n_ent; i++) entry_done(p, j, &j->ent[i], now_us);
    for (uint32_t i = 0; i < j->n_ent; i++) to_tail(p, j->ent[i].session);
    job_free(j);
    kick_waiting(p, now_us);
    for (struct ssess *x = p->ss; x; x = x->next) /* "done" (or still working) to the entries */
        if (x->progress_open) sw__pipe_stage_progress(p, x, now_us);
}

uint64_t sw__pipe_stage_progress(struct sw_pipe *p, struct ssess *s, uint64_t now_us)
{
    uint32_t work = s->accepted > s->computed ? s->accepted - s->computed : 0;
    uint64_t every = s->progress_every_us;
    if (!work) {
        if (s->progress_open) { /* done, passed on: the entry now looks downstream */
            struct sw_pipe_msg m = { .type = SW_PIPE_PROGRESS, .session = s->id, .stage = s->idx, .pos = s->computed };
            sw__pipe_send(p, s->entry, &m);
            s->progress_open = 0;
        }
        return UINT64_MAX;
    }
    if (s->progress_us && now_us - s->progress_us < every) return s->progress_us + every;
    /* the estimate counts every token and session waiting or running at this stage, the
     * other sessions' too (they go first, or in the same batch), at the stage's recent
     * speed: a step costs about a fixed part plus a part per token, and both estimates
     * are taken whole (an over-estimate: it only delays the "computes nothing" check; a
     * silent stage is caught by the stall deadline) */
    uint64_t ahead = 0, steps = 0;
    for (const struct ssess *x = p->ss; x; x = x->next)
        if (x->st == s->st && x->accepted > x->computed) {
            ahead += x->accepted - x->computed;
            steps += 1 + (x->accepted - x->computed) / MERGE_MAX;
        }
    uint64_t est = p->us_per_token * ahead + p->us_per_step * steps;
    struct sw_pipe_msg m = { .type = SW_PIPE_PROGRESS, .session = s->id, .stage = s->idx, .pos = s->computed,
                             .n_tokens = work, .compute_us = (uint32_t)SW_MIN(est, (uint64_t)UINT32_MAX) };
    sw__pipe_send(p, s->entry, &m);
    s->progress_us = now_us;
    s->progress_open = 1;
    return now_us + every;
}

/* ------------------------------------------------------------------ stage role */

static int refuse(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, int code, const char *why)
{
    p->st.sessions_refused++;
    char ids[16];
    sw_log(SW_LOG_INFO, "PIPE", "session %016llx: refused stage %u: %s", (unsigned long long)m->session, m->stage, why);
    sw__pipe_send_error(p, from, m->session, m->stage, code, "stage %u (node %s) refused the session: %s", m->stage,
               sw__pipe_short_id(p->cfg.self_id, ids, sizeof ids), why);
    return code;
}

int sw__pipe_prefix_room(struct sw_pipe *p, uint64_t need)
{
    if (!p->cfg.max_kv_bytes) return 1;
    while (p->reserved + sw_prefix_bytes(p->prefix) + need > p->cfg.max_kv_bytes)
        if (!sw_prefix_evict_lru(p->prefix)) return p->reserved + need <= p->cfg.max_kv_bytes;
    return 1;
}

/* OPEN with the prompt's block hashes: the longest prefix this stage caches for the same
 * entry and dtype is copied into the new sequence (its rows are the session's own from now
 * on: an eviction later changes nothing). The entry starts the input at the least of the
 * route's reused lengths; the first input sets where this stage computes from. At least
 * one position is always computed (the entry sends no hash for the prompt's last token). */
static void reuse_prefix(struct sw_pipe *p, struct ssess *s, const struct sw_pipe_msg *m)
{
    if (!p->prefix || !m->n_hashes) return;
    uint64_t src = 0;
    uint32_t nb = sw_prefix_lookup(p->prefix, s->st, s->entry, s->dtype, m->hashes, m->n_hashes, &src);
    uint32_t r = nb * SW_PREFIX_BLOCK;
    if (r && s->n_known) r = SW_MIN(r, s->n_known - 1);
    r = SW_MIN(r, s->n_ctx ? s->n_ctx - 1 : 0);
    if (!r) return;
    if (sw_stage_seq_copy(s->st, s->id, src, r)) {
        char eid[16];
        sw_log(SW_LOG_INFO, "PIPE", "session %016llx: prefix of %u positions not reused (entry %s): %s",
               (unsigned long long)s->id, r, sw__pipe_short_id(s->entry, eid, sizeof eid), sw_stage_errmsg(s->st));
        return;
    }
    s->reused = s->accepted = s->computed = r;
    p->st.prefix_hits++;
    p->st.prefix_reused += r;
}

void sw__pipe_stage_close(struct sw_pipe *p, struct ssess *s, const struct sw_pipe_msg *m)
{
    uint32_t n_past = 0;
    if (p->prefix && m->n_hashes && !s->busy && !s->dead && s->st &&
        (!p->cfg.host.stage || p->cfg.host.stage(p->cfg.host.ud) == s->st) && !sw_stage_seq_len(s->st, s->id, &n_past)) {
        uint32_t nb = SW_MIN(m->n_hashes, n_past / SW_PREFIX_BLOCK);
        if (nb && !sw_prefix_store(p->prefix, s->st, s->id, s->entry, s->dtype, m->hashes, nb)) p->st.prefix_kept++;
    }
    sw__pipe_ssess_close(p, s); /* frees the sequence unless the cache took it (renamed) */
    sw__pipe_prefix_room(p, 0);
}

void sw__pipe_stage_open(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us)
{
    struct ssess *old = sw__pipe_ss_find(p, m->session);
    if (old) {
        if (old->idx == m->stage && sw__pipe_id_eq(old->entry, m->entry)) { /* repeated OPEN */
            struct sw_pipe_msg ok = { .type = SW_PIPE_OPEN_OK, .session = m->session, .stage = m->stage,
                                      .reused = old->started ? 0 : old->reused };
            sw__pipe_send(p, from, &ok);
        } else {
            refuse(p, from, m, SW_EEXIST, "session id already in use");
        }
        return;
    }
    struct sw_stage *st = p->cfg.host.stage ? p->cfg.host.stage(p->cfg.host.ud) : NULL;
    if (!st) {
        refuse(p, from, m, SW_ESTATE, "no shard loaded");
        return;
    }
    const struct sw_stage_info *si = sw_stage_info(st);
    char why[200];
    if (!sw__pipe_id_eq(m->route + (size_t)m->stage * SW_NODE_ID_LEN, p->cfg.self_id)) {
        refuse(p, from, m, SW_EINVAL, "the route names another node for this stage");
        return;
    }
    int first = m->stage == 0, last = m->stage + 1 == m->n_stages;
    if (si->takes_tokens != first || si->gives_logits != last) {
        snprintf(why, sizeof why, "this node computes layers %u..%u of %u, which is not stage %u of %u",
                 si->layer_first, si->layer_last, si->n_layers, m->stage, m->n_stages);
        refuse(p, from, m, SW_EINVAL, why);
        return;
    }
    if (m->n_ctx > si->n_ctx) {
        snprintf(why, sizeof why, "context of %u positions asked, this stage allows %u", m->n_ctx, si->n_ctx);
        refuse(p, from, m, SW_ERANGE, why);
        return;
    }
    uint32_t n_live = 0;
    for (struct ssess *s = p->ss; s; s = s->next) n_live++;
    if (n_live >= p->cfg.max_sessions) {
        snprintf(why, sizeof why, "busy: %u sessions (the limit)", n_live);
        refuse(p, from, m, SW_EBUSY, why);
        return;
    }
    size_t row_bytes = (size_t)si->n_embd * sw_pipe_dtype_size(m->dtype);
    uint64_t need = si->kv_bytes_per_token * m->n_ctx + (last ? 0 : (uint64_t)row_bytes * m->n_ctx);
    if ((m->flags & SW_PIPE_OPEN_WITNESS) && !first) need += (uint64_t)row_bytes * m->n_ctx; /* rows received (spot checks) */
    if (!sw__pipe_prefix_room(p, need)) {
        char a[32], b[32];
        snprintf(why, sizeof why, "out of memory for the KV cache: needs %s, %s left", sw_fmt_bytes(need, a, sizeof a),
                 sw_fmt_bytes(p->cfg.max_kv_bytes - SW_MIN(p->cfg.max_kv_bytes, p->reserved), b, sizeof b));
        refuse(p, from, m, SW_ENOMEM, why);
        return;
    }
    struct ssess *s = calloc(1, sizeof *s);
    if (!s) {
        refuse(p, from, m, SW_ENOMEM, "out of memory");
        return;
    }
    s->id = m->session;
    s->st = st;
    s->idx = m->stage;
    s->n_stages = m->n_stages;
    s->dtype = m->dtype;
    s->flags = m->flags;
    memcpy(s->route, m->route, (size_t)m->n_stages * SW_NODE_ID_LEN);
    memcpy(s->entry, m->entry, SW_NODE_ID_LEN);
    s->n_ctx = m->n_ctx;
    s->n_known = m->n_known;
    s->max_pos = m->max_pos;
    s->n_stop = m->n_stop;
    for (uint32_t i = 0; i < m->n_stop; i++) s->stop[i] = (int32_t)sw_get_be32(m->stop + 4 * i);
    s->n_embd = si->n_embd;
    s->n_vocab = si->n_vocab;
    s->takes_tokens = first;
    s->gives_logits = last;
    s->row_bytes = row_bytes;
    s->last_us = now_us;
    s->progress_every_us = (uint64_t)(m->progress_ms ? SW_MAX(PROGRESS_MIN_MS, SW_MIN(m->progress_ms, PROGRESS_MS))
                                                     : PROGRESS_MS) * 1000;
    if (last) {
        int rc = sw_sampler_load(m->blob, m->blob_len, si->n_vocab, &s->smp);
        if (rc) {
            free(s);
            refuse(p, from, m, rc, "bad sampler state");
            return;
        }
        /* constrained decoding: the grammar masks the vocabulary here, where the logits are */
        if (sw_sampler_has_grammar(s->smp)) {
            const struct sw_gvocab *voc = p->vocab_fn ? p->vocab_fn(p->vocab_ud) : NULL;
            if (!voc || sw_sampler_set_vocab(s->smp, voc)) {
                sw_sampler_free(s->smp);
                free(s);
                refuse(p, from, m, SW_EUNSUPPORTED, "constrained decoding: this stage has no tokenizer for the grammar");
                return;
            }
        }
        if (m->spec_k) { /* speculative decoding: the history to draft from */
            if (m->n_ids > m->n_known || !(s->hist = malloc((size_t)m->n_ctx * sizeof *s->hist))) {
                sw_sampler_free(s->smp);
                free(s);
                refuse(p, from, m, m->n_ids > m->n_known ? SW_EINVAL : SW_ENOMEM,
                       m->n_ids > m->n_known ? "more history ids than known positions" : "out of memory");
                return;
            }
            s->spec_k = m->spec_k;
            s->n_hist = m->n_ids;
            s->hist_base = m->n_known - m->n_ids;
            for (uint32_t i = 0; i < m->n_ids; i++) s->hist[i] = (int32_t)sw_get_be32(m->ids + 4 * i);
        }
    }
    int rc = sw_stage_seq_new(st, s->id);
    while (rc == SW_EBUSY && sw_prefix_evict_lru(p->prefix)) rc = sw_stage_seq_new(st, s->id); /* slots */
    if (rc) {
        free(s->hist);
        sw_sampler_free(s->smp);
        free(s);
        refuse(p, from, m, rc == SW_EBUSY ? SW_EBUSY : rc,
               rc == SW_EBUSY ? "busy: the stage's sequence slots are full" : sw_stage_errmsg(st));
        return;
    }
    s->reserved = need;
    p->reserved += need;
    s->next = p->ss;
    p->ss = s;
    p->st.sessions_opened++;
    reuse_prefix(p, s, m);
    char eid[16];
    if (s->flags & SW_PIPE_OPEN_AUDIT) /* a spot check's session: worded apart from serving ones */
        sw_log(SW_LOG_INFO, "SPOT", "audit %016llx: recomputing shard %u (stage %u/%u) for entry %s (context %u)",
               (unsigned long long)s->id, s->idx, s->idx, s->n_stages, sw__pipe_short_id(s->entry, eid, sizeof eid), s->n_ctx);
    else
        sw_log(SW_LOG_INFO, "PIPE", "session %016llx: stage %u of %u opened for entry %s (context %u, %u positions cached)",
               (unsigned long long)s->id, s->idx, s->n_stages, sw__pipe_short_id(s->entry, eid, sizeof eid), s->n_ctx,
               s->reused);
    struct sw_pipe_msg ok = { .type = SW_PIPE_OPEN_OK, .session = m->session, .stage = m->stage, .reused = s->reused };
    sw__pipe_send(p, from, &ok);
}

/* A speculative step replaces positions from pos on (the rejected drafts of the step
 * before): forget what is queued or counted there; the compute cuts the KV back itself.
 * Returns 1 when it closed the session (input that cannot be cut: a corrupt sender). */
static int spec_rewind(struct sw_pipe *p, struct ssess *s, uint32_t pos)
{
    for (struct chunk **pp = &s->qh; *pp;) {
        struct chunk *c = *pp;
        if (c->pos < pos && c->pos + c->n > pos) {
            sw__pipe_send_error(p, s->entry, s->id, s->idx, SW_ERANGE,
                                "stage %u: speculative step at %u inside queued input %u..%u", s->idx, pos, c->pos,
                                c->pos + c->n - 1);
            sw__pipe_ssess_close(p, s);
            return 1;
        }
        if (c->pos >= pos) {
            *pp = c->next;
            free(c->data);
            free(c);
        } else {
            pp = &c->next;
        }
    }
    s->qt = NULL;
    for (struct chunk *c = s->qh; c; c = c->next) s->qt = c;
    s->accepted = pos;
    if (s->computed > pos) s->computed = pos;
    if (s->kept_rows > pos) s->kept_rows = pos;
    return 0;
}

/* TOKENS or HIDDEN at a stage. */
void sw__pipe_stage_input(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us)
{
    struct ssess *s = sw__pipe_ss_find(p, m->session);
    if (!s) {
        char ids[16];
        sw__pipe_send_error(p, from, m->session, 0xff, SW_ENOTFOUND, "unknown session %016llx at node %s",
                   (unsigned long long)m->session, sw__pipe_short_id(p->cfg.self_id, ids, sizeof ids));
        return;
    }
    int is_tokens = m->type == SW_PIPE_TOKENS;
    if (is_tokens != s->takes_tokens) {
        sw__pipe_send_error(p, s->entry, s->id, s->idx, SW_EINVAL, "stage %u expects %s, got %s", s->idx,
                   s->takes_tokens ? "token ids" : "hidden states", is_tokens ? "token ids" : "hidden states");
        sw__pipe_ssess_close(p, s);
        return;
    }
    size_t unit = is_tokens ? 4 : s->row_bytes;
    if (!is_tokens) {
        size_t want = (size_t)m->n_tokens * s->n_embd * sw_pipe_dtype_size(m->dtype);
        if (!m->n_tokens || m->n_embd != s->n_embd || m->dtype != s->dtype || m->data_len != want) {
            sw__pipe_send_error(p, s->entry, s->id, s->idx, SW_EINVAL,
                       "stage %u: hidden states of the wrong size (%u tokens x %u x dtype %u in %zu bytes; "
                       "expected n_embd %u, dtype %u)", s->idx, m->n_tokens, m->n_embd, m->dtype, m->data_len,
                       s->n_embd, s->dtype);
            sw__pipe_ssess_close(p, s);
            return;
        }
    }
    /* a speculative step replaces rows from its position on: so do the witnessed ones */
    if ((m->flags & SW_PIPE_TOK_SPEC) && m->pos < s->recv_rows) s->recv_rows = m->pos;
    if (!is_tokens) sw__spot_witness(s, from, m); /* rows a spot check may ask for */
    uint32_t pos = m->pos, n = m->n_tokens;
    const uint8_t *data = m->data;
    if (!s->started) {
        /* the route computes from the least of the stages' cached prefixes: from here */
        s->started = 1;
        if (pos < s->accepted) s->accepted = s->computed = pos;
        s->kept_from = SW_MIN(pos, s->accepted);
    }
    if ((m->flags & SW_PIPE_TOK_SPEC) && pos < s->accepted && spec_rewind(p, s, pos)) return;
    if ((uint64_t)pos + n <= s->accepted) return; /* already have these (a replay or a top-up) */
    if (pos < s->accepted) {                      /* overlap: keep the new part */
        uint32_t skip = s->accepted - pos;
        pos += skip;
        n -= skip;
        data += (size_t)skip * unit;
    }
    if (pos > s->accepted) {
        sw__pipe_send_error(p, s->entry, s->id, s->idx, SW_ERANGE, "stage %u: position %u out of order (expected %u)", s->idx,
                   pos, s->accepted);
        sw__pipe_ssess_close(p, s);
        return;
    }
    if ((uint64_t)pos + n > s->n_ctx) {
        sw__pipe_send_error(p, s->entry, s->id, s->idx, SW_ERANGE, "stage %u: positions up to %u exceed the session's context of %u",
                   s->idx, pos + n, s->n_ctx);
        sw__pipe_ssess_close(p, s);
        return;
    }
    struct chunk *c = calloc(1, sizeof *c);
    size_t len = (size_t)n * unit;
    if (c) c->data = malloc(len ? len : 1);
    if (!c || !c->data) {
        if (c) free(c);
        sw__pipe_send_error(p, s->entry, s->id, s->idx, SW_ENOMEM, "stage %u: out of memory", s->idx);
        sw__pipe_ssess_close(p, s);
        return;
    }
    c->pos = pos;
    c->n = n;
    c->dtype = m->dtype;
    c->flags = m->flags & SW_PIPE_TOK_SPEC;
    c->len = len;
    if (is_tokens) {
        int32_t *ids = (int32_t *)c->data;
        for (uint32_t i = 0; i < n; i++) {
            ids[i] = (int32_t)sw_get_be32(data + 4 * i);
            if (ids[i] < 0 || (uint32_t)ids[i] >= s->n_vocab) {
                sw__pipe_send_error(p, s->entry, s->id, s->idx, SW_ERANGE, "stage %u: token id %d at position %u is outside the vocabulary (%u)",
                           s->idx, ids[i], pos + i, s->n_vocab);
                free(c->data);
                free(c);
                sw__pipe_ssess_close(p, s);
                return;
            }
        }
    } else {
        memcpy(c->data, data, len);
    }
    if (s->qt) s->qt->next = c;
    else s->qh = c;
    s->qt = c;
    s->accepted = pos + n;
    s->last_us = now_us;
    if (n <= BATCH_STEP_MAX) { /* a decode step's input: its cycle round the ring */
        if (s->arr_us && now_us > s->arr_us) {
            uint64_t c = now_us - s->arr_us;
            s->cycle_us = s->cycle_us ? (3 * s->cycle_us + c) / 4 : c;
        }
        s->prev_arr_us = s->arr_us;
        s->arr_us = now_us;
    }
    uint64_t id = s->id;
    kick(p, s, now_us);
    if ((s = sw__pipe_ss_find(p, id)) != NULL) sw__pipe_stage_progress(p, s, now_us);
}

void sw__pipe_stage_replay(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m)
{
    struct ssess *s = sw__pipe_ss_find(p, m->session);
    if (!s || !sw__pipe_id_eq(from, s->entry) || m->n_stages != s->n_stages) return;
    if (!sw__pipe_id_eq(m->route + (size_t)s->idx * SW_NODE_ID_LEN, p->cfg.self_id)) {
        sw__pipe_ssess_close(p, s); /* we were replaced */
        return;
    }
    memcpy(s->route, m->route, (size_t)m->n_stages * SW_NODE_ID_LEN);
    if (m->replay_stage == s->idx && !s->gives_logits) {
        p->st.replays++;
        char ids[16];
        sw_log(SW_LOG_INFO, "PIPE", "session %016llx: replaying %zu positions to the new stage %u (node %s)",
               (unsigned long long)s->id, s->kept_rows, s->idx + 1, sw__pipe_short_id(s->route[s->idx + 1], ids, sizeof ids));
        send_kept(p, s, s->kept_from, s->kept_rows, 0);
    }
}
