/* pipeline.c — the pipeline session engine: the stage role (a session's slice of layers on
 * this node: KV cache, ordered input queue, kept outputs for failover, sampling at the last
 * stage) and the entry role (route choice, prompt chunks, token stream with timings,
 * refusal handling, failover, deadlines). Messages and the current time in; messages,
 * compute jobs and callbacks out. No sockets, no clocks, no threads: the node glue
 * (pipeline_node.c) or a test's in-memory network drives it.
 * Not for: encoding (pipeline_wire.c), running compute (the host does, off this thread). */
#include "swarm/pipeline.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"

#define DEFAULT_CHUNK 64u
#define MERGE_MAX 256u            /* queued inputs merged into one compute step, tokens */
#define REPLAY_CHUNK 256u         /* tokens per replayed message */
#define DEFAULT_DEADLINE_MS 10000u
#define MAX_REOPENS 3
#define MAX_EXCLUDE 64
/* Batched decode: a session's step of at most BATCH_STEP_MAX tokens (a decode step, or the
 * tail of a prompt) waits while a job runs at its stage, and then goes with the other steps
 * that waited meanwhile: up to BATCH_MAX sessions and BATCH_TOKENS tokens in one pass over
 * the weights. Longer steps (prefill chunks) are submitted alone at once, as before. */
#define BATCH_MAX 8u
#define BATCH_STEP_MAX 4u
#define BATCH_TOKENS 32u

/* ------------------------------------------------------------------ types */

struct chunk {
    struct chunk *next;
    uint32_t pos, n;
    uint8_t dtype;          /* hidden input: wire dtype */
    uint8_t *data;          /* TOKENS: host-order int32; HIDDEN: wire bytes */
    size_t len;
};

/* One session's step inside a compute job. */
struct jent {
    uint64_t session;       /* wire id */
    uint32_t pos, n;
    uint8_t in_dtype;
    uint8_t *in;            /* owned: tokens (int32) or hidden (wire bytes) */
    size_t in_len;
    float *out;             /* owned */
    size_t out_floats;
    int rc;                 /* set by sw_pipe_job_run */
    char msg[160];
};

/* A compute job: one session's step, or the decode steps of several sessions that
 * coincide at this stage, run as one sw_stage_forward_batch (BATCH_MAX entries at most). */
struct sw_pipe_job {
    /* set by the engine */
    struct sw_stage *st;
    int takes_tokens, gives_logits;
    uint32_t n_embd;
    uint32_t n_ent;
    struct jent ent[BATCH_MAX];
    /* set by sw_pipe_job_run */
    uint64_t compute_us;
};

/* A session as seen by one stage. */
struct ssess {
    struct ssess *next;
    uint64_t id;
    struct sw_stage *st;
    uint8_t idx, n_stages, dtype, flags;
    uint8_t route[SW_PIPE_MAX_STAGES][SW_NODE_ID_LEN];
    uint8_t entry[SW_NODE_ID_LEN];
    uint32_t n_ctx, n_known, max_pos, n_stop;
    int32_t stop[SW_PIPE_MAX_STOP];
    struct sw_sampler *smp;  /* last stage */
    uint32_t n_embd, n_vocab;
    int takes_tokens, gives_logits;
    uint32_t accepted;       /* positions queued or computed */
    struct chunk *qh, *qt;
    int busy, dead;
    uint8_t *kept;           /* outputs sent downstream, wire bytes, row i = position i */
    size_t kept_rows, kept_cap_rows, row_bytes;
    uint64_t reserved;       /* bytes counted against max_kv_bytes */
    uint64_t last_us;
};

enum { E_OPENING = 1, E_RUNNING = 2 };

/* A session opened here (entry). */
struct esess {
    struct esess *next;
    uint64_t handle;         /* the caller's id (stable) */
    uint64_t wire;           /* the id on the wire (changes on a full reopen) */
    struct sw_pipe_session_cb cb;
    int state;
    uint32_t n_stages;
    uint8_t route[SW_PIPE_MAX_STAGES][SW_NODE_ID_LEN];
    uint64_t pending;        /* stages whose OPEN_OK is awaited (bit per stage) */
    int failing;             /* stage being replaced (-1: none) */
    int topup;               /* after a failover: also send each token to the first stage */
    int32_t *hist;           /* prompt + generated */
    uint32_t n_hist, n_prompt, max_pos;
    uint8_t *blob;           /* latest sampler state */
    size_t blob_len;
    int32_t stop[SW_PIPE_MAX_STOP];
    uint32_t n_stop;
    uint8_t dtype, flags;
    uint32_t chunk, n_ctx;
    uint64_t deadline_us;
    uint32_t reopens;
    uint8_t excl[MAX_EXCLUDE][SW_NODE_ID_LEN];
    uint32_t excl_shard[MAX_EXCLUDE];
    uint32_t n_excl;
    char why[SW_PIPE_MAX_TEXT + 1]; /* the last refusal, for the final error */
    uint64_t t_open, t_first, t_last, last_progress;
    uint32_t n_gen;
};

struct sw_pipe {
    struct sw_pipe_config cfg;
    struct ssess *ss;
    struct ssess *dead;      /* closed while a job ran: released when it comes back */
    struct esess *es;
    size_t jobs;
    uint64_t reserved;
    struct sw_pipe_stats st;
    struct sw_buf out;       /* encode scratch */
    struct sw_pipe_hdr *hdr; /* shard headers for light clients (pipeline_header.c) */
};

/* ------------------------------------------------------------------ helpers */

static int id_eq(const uint8_t *a, const uint8_t *b) { return !memcmp(a, b, SW_NODE_ID_LEN); }

static const char *short_id(const uint8_t *id, char *buf, size_t len)
{
    return sw_node_id_short(id, buf, len);
}

static int send_msg(struct sw_pipe *p, const uint8_t *to, const struct sw_pipe_msg *m)
{
    p->out.len = 0;
    int rc = sw_pipe_msg_encode(m, &p->out);
    if (rc) return rc;
    return p->cfg.host.send(p->cfg.host.ud, to, p->out.data, p->out.len);
}

static void send_error(struct sw_pipe *p, const uint8_t *to, uint64_t session, uint8_t stage, int code,
                       const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void send_error(struct sw_pipe *p, const uint8_t *to, uint64_t session, uint8_t stage, int code,
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
    send_msg(p, to, &m);
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
    if (!(p->hdr = sw__pipe_hdr_new(&p->cfg.host, p->cfg.self_id))) {
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

static void ssess_release(struct sw_pipe *p, struct ssess *s)
{
    chunks_free(s);
    if (s->st) sw_stage_seq_free(s->st, s->id);
    sw_sampler_free(s->smp);
    free(s->kept);
    p->reserved -= SW_MIN(p->reserved, s->reserved);
    free(s);
}

/* Unlinks and frees, or marks dead when a job is in flight (freed by job_done). */
static void ssess_close(struct sw_pipe *p, struct ssess *s)
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
    ssess_release(p, s);
}

static void esess_free(struct esess *e)
{
    free(e->hist);
    free(e->blob);
    free(e);
}

static void esess_unlink(struct sw_pipe *p, struct esess *e)
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
        ssess_release(p, s);
    }
    while (p->dead) {
        struct ssess *s = p->dead;
        p->dead = s->next;
        ssess_release(p, s);
    }
    while (p->es) {
        struct esess *e = p->es;
        p->es = e->next;
        esess_free(e);
    }
    sw_buf_free(&p->out);
    free(p);
}

size_t sw_pipe_jobs_in_flight(const struct sw_pipe *p) { return p ? p->jobs : 0; }

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
    sw__pipe_hdr_stats(p->hdr, &s);
    return s;
}

static struct ssess *ss_find(struct sw_pipe *p, uint64_t id)
{
    for (struct ssess *s = p->ss; s; s = s->next)
        if (s->id == id) return s;
    return NULL;
}

static struct esess *es_by_wire(struct sw_pipe *p, uint64_t id)
{
    for (struct esess *e = p->es; e; e = e->next)
        if (e->wire == id) return e;
    return NULL;
}

static struct esess *es_by_handle(struct sw_pipe *p, uint64_t id)
{
    for (struct esess *e = p->es; e; e = e->next)
        if (e->handle == id) return e;
    return NULL;
}

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

void sw_pipe_job_run(struct sw_pipe_job *j)
{
    uint64_t t0 = sw_time_us();
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
        b[nb] = (struct sw_stage_batch){ .seq = e->session, .pos = e->pos, .n_tokens = e->n, .in = in, .out = e->out };
        idx[nb++] = (int)i;
    }
    if (nb == 1) { /* the plain call: one session's step, exactly as without batching */
        struct jent *e = &j->ent[idx[0]];
        e->rc = sw_stage_forward(j->st, e->session, e->pos, e->n, b[0].in, e->out, 0);
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
    for (const struct chunk *c = s->qh; c && n + c->n <= MERGE_MAX && c->dtype == s->qh->dtype; c = c->next) {
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
    e->out_floats = sw_stage_out_floats(s->st, n, 0);
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

/* Starts the next compute step of a stage session when none is running. A short step (a
 * decode) waits while another job runs at the stage, then leaves together with the short
 * steps of the other sessions waiting there (sw_stage_forward_batch). Returns 1 when it
 * closed a session (the caller's list walk must restart), else 0. */
static int kick(struct sw_pipe *p, struct ssess *s)
{
    if (s->busy || s->dead || !s->qh) return 0;
    if (p->cfg.host.stage && p->cfg.host.stage(p->cfg.host.ud) != s->st) {
        /* the node swapped its compute stage (another shard): this session's KV is gone */
        send_error(p, s->entry, s->id, s->idx, SW_ESTATE, "stage %u: the node no longer serves this shard", s->idx);
        s->st = NULL; /* never touch the old stage again */
        ssess_close(p, s);
        return 1;
    }
    size_t len;
    uint32_t n = next_step(s, &len);
    uint32_t limit = batch_limit(p);
    int batchable = limit > 1 && n <= BATCH_STEP_MAX;
    if (batchable && stage_busy(p, s->st)) return 0; /* goes with the next batch */
    struct sw_pipe_job *j = calloc(1, sizeof *j);
    if (!j) return 0;
    j->st = s->st;
    j->takes_tokens = s->takes_tokens;
    j->gives_logits = s->gives_logits;
    j->n_embd = s->n_embd;
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
            if (xn > BATCH_STEP_MAX || tokens + xn > BATCH_TOKENS) continue;
            if (take_step(x, &j->ent[j->n_ent], xn, xl)) break;
            members[j->n_ent++] = x;
            tokens += xn;
        }
    }
    int rc = p->cfg.host.submit(p->cfg.host.ud, j);
    if (rc) {
        for (uint32_t i = 0; i < j->n_ent; i++)
            send_error(p, members[i]->entry, members[i]->id, members[i]->idx, rc, "stage %u: cannot queue compute: %s",
                       members[i]->idx, sw_strerror(rc));
        uint32_t n_ent = j->n_ent;
        job_free(j);
        for (uint32_t i = 0; i < n_ent; i++) ssess_close(p, members[i]);
        return 1;
    }
    for (uint32_t i = 0; i < j->n_ent; i++) members[i]->busy = 1;
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
static void kick_waiting(struct sw_pipe *p)
{
    for (int again = 1; again;) {
        again = 0;
        for (struct ssess *x = p->ss; x; x = x->next) {
            if (x->busy || x->dead || !x->qh) continue;
            if (kick(p, x)) {
                again = 1; /* the list changed */
                break;
            }
        }
    }
}

static int is_stop(const int32_t *stop, uint32_t n_stop, int32_t t)
{
    for (uint32_t i = 0; i < n_stop; i++)
        if (stop[i] == t) return 1;
    return 0;
}

/* Sends kept rows [from, to) downstream in messages of at most REPLAY_CHUNK tokens. */
static void send_kept(struct sw_pipe *p, struct ssess *s, size_t from, size_t to)
{
    const uint8_t *down = s->route[s->idx + 1];
    while (from < to) {
        uint32_t n = (uint32_t)SW_MIN(to - from, (size_t)REPLAY_CHUNK);
        struct sw_pipe_msg m = { .type = SW_PIPE_HIDDEN, .session = s->id, .dtype = s->dtype,
                                 .pos = (uint32_t)from, .n_tokens = n, .n_embd = s->n_embd,
                                 .data = s->kept + from * s->row_bytes, .data_len = (size_t)n * s->row_bytes };
        send_msg(p, down, &m); /* a failure leaves the rows kept: the entry re-routes */
        from += n;
    }
}

/* One entry of a finished job: keep and send its outputs, or sample at the last stage. */
static void entry_done(struct sw_pipe *p, const struct sw_pipe_job *j, const struct jent *e, uint64_t now_us)
{
    struct ssess *s = ss_find(p, e->session);
    if (!s) { /* closed while computing: release it now */
        for (struct ssess **pp = &p->dead; *pp; pp = &(*pp)->next) {
            if ((*pp)->id != e->session) continue;
            struct ssess *d = *pp;
            *pp = d->next;
            d->busy = 0;
            ssess_release(p, d);
            break;
        }
        return;
    }
    s->busy = 0;
    s->last_us = now_us;
    if (e->rc) {
        send_error(p, s->entry, s->id, s->idx, e->rc, "stage %u: compute failed at positions %u..%u: %s",
                   s->idx, e->pos, e->pos + e->n - 1, e->msg[0] ? e->msg : sw_strerror(e->rc));
        ssess_close(p, s);
        return;
    }
    p->st.tokens_computed += e->n;
    if (!s->gives_logits) {
        /* keep the outputs (failover replays them), in the wire dtype, then send */
        size_t need_rows = (size_t)e->pos + e->n;
        if (need_rows > s->kept_cap_rows) {
            size_t cap = SW_MAX(need_rows, s->kept_cap_rows * 2);
            cap = SW_MIN(cap, (size_t)s->n_ctx);
            if (cap < need_rows) cap = need_rows;
            uint8_t *k = realloc(s->kept, cap * s->row_bytes);
            if (!k) {
                send_error(p, s->entry, s->id, s->idx, SW_ENOMEM, "stage %u: out of memory keeping outputs", s->idx);
                ssess_close(p, s);
                return;
            }
            s->kept = k;
            s->kept_cap_rows = cap;
        }
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
        send_kept(p, s, e->pos, need_rows);
        return;
    }
    uint32_t q = e->pos + e->n - 1; /* the last position computed */
    if (q + 1 < s->n_known || q + 1 >= s->max_pos) return;
    /* the logits of position q pick the token of position q+1 */
    int32_t t = sw_sampler_sample(s->smp, e->out);
    if (t < 0) {
        send_error(p, s->entry, s->id, s->idx, SW_EINVAL, "stage %u: sampling failed at position %u: every logit is NaN or -inf",
                   s->idx, q + 1);
        ssess_close(p, s);
        return;
    }
    s->n_known = q + 2;
    int last = s->n_known >= s->max_pos ||
               (!(s->flags & SW_PIPE_OPEN_IGNORE_EOS) && is_stop(s->stop, s->n_stop, t));
    struct sw_buf blob;
    sw_buf_init(&blob);
    sw_sampler_save(s->smp, &blob);
    struct sw_pipe_msg m = { .type = SW_PIPE_TOKEN_OUT, .session = s->id, .pos = q + 1, .token = t,
                             .compute_us = (uint32_t)SW_MIN(j->compute_us, UINT32_MAX),
                             .blob = blob.data, .blob_len = (uint32_t)blob.len };
    if (s->flags & SW_PIPE_OPEN_LOGITS) {
        m.n_logits = s->n_vocab;
        m.logits = (const uint8_t *)e->out;
    }
    send_msg(p, s->entry, &m);
    sw_buf_free(&blob);
    if (!last) {
        /* straight to the first stage: saves the hop through the entry */
        int32_t be;
        sw_put_be32((uint8_t *)&be, (uint32_t)t);
        struct sw_pipe_msg tm = { .type = SW_PIPE_TOKENS, .session = s->id, .flags = SW_PIPE_TOK_SHORTCUT,
                                  .pos = q + 1, .n_tokens = 1, .data = (const uint8_t *)&be, .data_len = 4 };
        send_msg(p, s->route[0], &tm);
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
    for (uint32_t i = 0; i < j->n_ent; i++) entry_done(p, j, &j->ent[i], now_us);
    for (uint32_t i = 0; i < j->n_ent; i++) to_tail(p, j->ent[i].session);
    job_free(j);
    kick_waiting(p);
}

/* ------------------------------------------------------------------ stage role */

static int refuse(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, int code, const char *why)
{
    p->st.sessions_refused++;
    char ids[16];
    sw_log(SW_LOG_INFO, "PIPE", "session %016llx: refused stage %u: %s", (unsigned long long)m->session, m->stage, why);
    send_error(p, from, m->session, m->stage, code, "stage %u (node %s) refused the session: %s", m->stage,
               short_id(p->cfg.self_id, ids, sizeof ids), why);
    return code;
}

static void stage_open(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us)
{
    struct ssess *old = ss_find(p, m->session);
    if (old) {
        if (old->idx == m->stage && id_eq(old->entry, m->entry)) { /* repeated OPEN */
            struct sw_pipe_msg ok = { .type = SW_PIPE_OPEN_OK, .session = m->session, .stage = m->stage };
            send_msg(p, from, &ok);
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
    if (!id_eq(m->route + (size_t)m->stage * SW_NODE_ID_LEN, p->cfg.self_id)) {
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
    if (p->cfg.max_kv_bytes && p->reserved + need > p->cfg.max_kv_bytes) {
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
    if (last) {
        int rc = sw_sampler_load(m->blob, m->blob_len, si->n_vocab, &s->smp);
        if (rc) {
            free(s);
            refuse(p, from, m, rc, "bad sampler state");
            return;
        }
    }
    int rc = sw_stage_seq_new(st, s->id);
    if (rc) {
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
    char eid[16];
    sw_log(SW_LOG_INFO, "PIPE", "session %016llx: stage %u of %u opened for entry %s (context %u)",
           (unsigned long long)s->id, s->idx, s->n_stages, short_id(s->entry, eid, sizeof eid), s->n_ctx);
    struct sw_pipe_msg ok = { .type = SW_PIPE_OPEN_OK, .session = m->session, .stage = m->stage };
    send_msg(p, from, &ok);
}

/* TOKENS or HIDDEN at a stage. */
static void stage_input(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us)
{
    struct ssess *s = ss_find(p, m->session);
    if (!s) {
        char ids[16];
        send_error(p, from, m->session, 0xff, SW_ENOTFOUND, "unknown session %016llx at node %s",
                   (unsigned long long)m->session, short_id(p->cfg.self_id, ids, sizeof ids));
        return;
    }
    int is_tokens = m->type == SW_PIPE_TOKENS;
    if (is_tokens != s->takes_tokens) {
        send_error(p, s->entry, s->id, s->idx, SW_EINVAL, "stage %u expects %s, got %s", s->idx,
                   s->takes_tokens ? "token ids" : "hidden states", is_tokens ? "token ids" : "hidden states");
        ssess_close(p, s);
        return;
    }
    size_t unit = is_tokens ? 4 : s->row_bytes;
    if (!is_tokens) {
        size_t want = (size_t)m->n_tokens * s->n_embd * sw_pipe_dtype_size(m->dtype);
        if (!m->n_tokens || m->n_embd != s->n_embd || m->dtype != s->dtype || m->data_len != want) {
            send_error(p, s->entry, s->id, s->idx, SW_EINVAL,
                       "stage %u: hidden states of the wrong size (%u tokens x %u x dtype %u in %zu bytes; "
                       "expected n_embd %u, dtype %u)", s->idx, m->n_tokens, m->n_embd, m->dtype, m->data_len,
                       s->n_embd, s->dtype);
            ssess_close(p, s);
            return;
        }
    }
    uint32_t pos = m->pos, n = m->n_tokens;
    const uint8_t *data = m->data;
    if ((uint64_t)pos + n <= s->accepted) return; /* already have these (a replay or a top-up) */
    if (pos < s->accepted) {                      /* overlap: keep the new part */
        uint32_t skip = s->accepted - pos;
        pos += skip;
        n -= skip;
        data += (size_t)skip * unit;
    }
    if (pos > s->accepted) {
        send_error(p, s->entry, s->id, s->idx, SW_ERANGE, "stage %u: position %u out of order (expected %u)", s->idx,
                   pos, s->accepted);
        ssess_close(p, s);
        return;
    }
    if ((uint64_t)pos + n > s->n_ctx) {
        send_error(p, s->entry, s->id, s->idx, SW_ERANGE, "stage %u: positions up to %u exceed the session's context of %u",
                   s->idx, pos + n, s->n_ctx);
        ssess_close(p, s);
        return;
    }
    struct chunk *c = calloc(1, sizeof *c);
    size_t len = (size_t)n * unit;
    if (c) c->data = malloc(len ? len : 1);
    if (!c || !c->data) {
        if (c) free(c);
        send_error(p, s->entry, s->id, s->idx, SW_ENOMEM, "stage %u: out of memory", s->idx);
        ssess_close(p, s);
        return;
    }
    c->pos = pos;
    c->n = n;
    c->dtype = m->dtype;
    c->len = len;
    if (is_tokens) {
        int32_t *ids = (int32_t *)c->data;
        for (uint32_t i = 0; i < n; i++) {
            ids[i] = (int32_t)sw_get_be32(data + 4 * i);
            if (ids[i] < 0 || (uint32_t)ids[i] >= s->n_vocab) {
                send_error(p, s->entry, s->id, s->idx, SW_ERANGE, "stage %u: token id %d at position %u is outside the vocabulary (%u)",
                           s->idx, ids[i], pos + i, s->n_vocab);
                free(c->data);
                free(c);
                ssess_close(p, s);
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
    kick(p, s);
}

static void stage_replay(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m)
{
    struct ssess *s = ss_find(p, m->session);
    if (!s || !id_eq(from, s->entry) || m->n_stages != s->n_stages) return;
    if (!id_eq(m->route + (size_t)s->idx * SW_NODE_ID_LEN, p->cfg.self_id)) {
        ssess_close(p, s); /* we were replaced */
        return;
    }
    memcpy(s->route, m->route, (size_t)m->n_stages * SW_NODE_ID_LEN);
    if (m->replay_stage == s->idx && !s->gives_logits) {
        p->st.replays++;
        char ids[16];
        sw_log(SW_LOG_INFO, "PIPE", "session %016llx: replaying %zu positions to the new stage %u (node %s)",
               (unsigned long long)s->id, s->kept_rows, s->idx + 1, short_id(s->route[s->idx + 1], ids, sizeof ids));
        send_kept(p, s, 0, s->kept_rows);
    }
}

/* ------------------------------------------------------------------ entry role */

static void e_end(struct sw_pipe *p, struct esess *e, int rc, const char *msg)
{
    esess_unlink(p, e);
    if (e->cb.on_end) e->cb.on_end(e->cb.ud, e->handle, rc, msg);
    esess_free(e);
}

static void e_send_all(struct sw_pipe *p, struct esess *e, uint8_t type)
{
    struct sw_pipe_msg m = { .type = type, .session = e->wire };
    for (uint32_t k = 0; k < e->n_stages; k++) {
        int dup = 0;
        for (uint32_t i = 0; i < k; i++) dup |= id_eq(e->route[i], e->route[k]);
        if (!dup) send_msg(p, e->route[k], &m);
    }
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

static void e_send_open(struct sw_pipe *p, struct esess *e, uint32_t k)
{
    uint8_t stop[SW_PIPE_MAX_STOP * 4];
    for (uint32_t i = 0; i < e->n_stop; i++) sw_put_be32(stop + 4 * i, (uint32_t)e->stop[i]);
    struct sw_pipe_msg m = { .type = SW_PIPE_OPEN, .session = e->wire, .stage = (uint8_t)k, .flags = e->flags,
                             .dtype = e->dtype, .n_stages = (uint8_t)e->n_stages, .route = &e->route[0][0],
                             .entry = p->cfg.self_id, .n_ctx = e->n_ctx, .n_known = e->n_hist,
                             .max_pos = e->max_pos, .n_stop = e->n_stop, .stop = stop };
    if (k + 1 == e->n_stages) {
        m.blob = e->blob;
        m.blob_len = (uint32_t)e->blob_len;
    }
    e->pending |= 1ull << k;
    send_msg(p, e->route[k], &m);
}

static int excluded(const struct esess *e, uint32_t shard, const uint8_t *id)
{
    for (uint32_t i = 0; i < e->n_excl; i++)
        if (e->excl_shard[i] == shard && id_eq(e->excl[i], id)) return 1;
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
    return p->cfg.host.pick(p->cfg.host.ud, shard, n ? &ex[0][0] : NULL, n, out);
}

/* Opens the whole route (first open, a refusal, or a stall): a fresh wire id, OPEN to every
 * stage; the tokens follow once every stage said OPEN_OK. */
static int e_open_route(struct sw_pipe *p, struct esess *e, int avoid_old, char *msg, size_t msg_len)
{
    for (uint32_t k = 0; k < e->n_stages; k++) {
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
    while (!w || w == e->wire || es_by_wire(p, w));
    e->wire = w;
    e->state = E_OPENING;
    e->pending = 0;
    e->failing = -1;
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
        send_msg(p, e->route[0], &m);
        if (b != buf) free(b);
        from += n;
    }
}

static void e_reopen(struct sw_pipe *p, struct esess *e, uint64_t now_us, int avoid_old, const char *why)
{
    if (++e->reopens > MAX_REOPENS) {
        e_fail(p, e, SW_ETIMEDOUT, "the route failed %u times; last: %s", e->reopens - 1, why);
        return;
    }
    sw_log(SW_LOG_INFO, "PIPE", "session %016llx: opening a new route (%s)", (unsigned long long)e->handle, why);
    e_send_all(p, e, SW_PIPE_CANCEL);
    char msg[512];
    p->st.failovers++;
    if (e_open_route(p, e, avoid_old, msg, sizeof msg)) {
        /* SW_EBUSY: nodes of the shard exist but every one refused (KV memory, session
         * limit); SW_ENOTFOUND: no live loaded node at all */
        e_fail(p, e, e->why[0] ? SW_EBUSY : SW_ENOTFOUND, "%s", msg);
        return;
    }
    e->last_progress = now_us;
}

/* Stage k of the route is gone: a replica takes its place; its upstream replays. */
static void e_failover(struct sw_pipe *p, struct esess *e, uint32_t k, uint64_t now_us, const char *why)
{
    char ids[16];
    exclude(e, k, e->route[k]);
    if (e->state == E_OPENING || e->failing >= 0) { /* not settled yet: start over */
        e_reopen(p, e, now_us, 0, why);
        return;
    }
    uint8_t r[SW_NODE_ID_LEN];
    if (e_pick(p, e, k, r)) {
        e_fail(p, e, SW_ENOTFOUND, "shard %u: no live node has it loaded (node %s %s)", k,
               short_id(e->route[k], ids, sizeof ids), why);
        return;
    }
    char rid[16];
    sw_log(SW_LOG_INFO, "PIPE", "session %016llx: stage %u node %s %s; replica %s takes over",
           (unsigned long long)e->handle, k, short_id(e->route[k], ids, sizeof ids), why,
           short_id(r, rid, sizeof rid));
    p->st.failovers++;
    memcpy(e->route[k], r, SW_NODE_ID_LEN);
    e->failing = (int)k;
    e->last_progress = now_us;
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
        if (i != k) send_msg(p, e->route[i], &m);
    if (k == 0) e_send_tokens(p, e, 0, e->n_hist, 0); /* the entry keeps the first stage's inputs */
    else if (e->n_hist > e->n_prompt)                 /* the last token may have been lost with the stage */
        e_send_tokens(p, e, e->n_hist - 1, e->n_hist, 0);
}

static void entry_open_ok(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us)
{
    struct esess *e = es_by_wire(p, m->session);
    if (!e || m->stage >= e->n_stages || !id_eq(from, e->route[m->stage])) return;
    if (!(e->pending & (1ull << m->stage))) return;
    e->pending &= ~(1ull << m->stage);
    e->last_progress = now_us;
    if (e->pending) return;
    if (e->state == E_OPENING) {
        e->state = E_RUNNING;
        e_send_tokens(p, e, 0, e->n_hist, 0);
        if (e->reopens) e->topup = 1;
    } else if (e->failing >= 0) {
        e_failover_ready(p, e);
    }
}

static void entry_error(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us)
{
    struct esess *e = es_by_wire(p, m->session);
    if (!e) return;
    int k = -1;
    for (uint32_t i = 0; i < e->n_stages; i++)
        if (id_eq(from, e->route[i])) k = (int)i;
    if (k < 0) return; /* not from this route (a stale stage) */
    char text[SW_PIPE_MAX_TEXT + 1];
    memcpy(text, m->text ? m->text : "", m->text_len);
    text[m->text_len] = 0;
    int refusal = (e->pending & (1ull << k)) &&
                  (m->code == SW_ENOMEM || m->code == SW_EBUSY || m->code == SW_ESTATE || m->code == SW_ERANGE ||
                   m->code == SW_EEXIST);
    if (refusal) {
        snprintf(e->why, sizeof e->why, "%s", text);
        p->st.sessions_refused++;
        exclude(e, (uint32_t)k, from);
        if (e->state == E_OPENING) {
            e_reopen(p, e, now_us, 0, text);
            return;
        }
        /* a refused replica: another one, or fail */
        e->failing = -1;
        e->pending &= ~(1ull << k);
        e_failover(p, e, (uint32_t)k, now_us, text);
        return;
    }
    if (m->code == SW_ESTATE && e->state == E_RUNNING && e->failing < 0) {
        /* the node dropped its stage (it switched shards): like a lost node */
        e_failover(p, e, (uint32_t)k, now_us, text);
        return;
    }
    e_fail(p, e, m->code, "%s", text);
}

static void entry_token(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us)
{
    struct esess *e = es_by_wire(p, m->session);
    if (!e || e->state != E_RUNNING || !id_eq(from, e->route[e->n_stages - 1])) return;
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
    e->last_progress = now_us;
    int last = e->n_hist >= e->max_pos ||
               (!(e->flags & SW_PIPE_OPEN_IGNORE_EOS) && is_stop(e->stop, e->n_stop, m->token));
    if (e->topup && !last) e_send_tokens(p, e, e->n_hist - 1, e->n_hist, 0);
    struct sw_pipe_token_ev ev = { .session = e->handle, .token = m->token, .pos = m->pos, .index = e->n_gen - 1,
                                   .ttft_us = e->t_first - e->t_open, .elapsed_us = now_us - e->t_open, .last = last };
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
    if (e->cb.on_token) e->cb.on_token(e->cb.ud, &ev);
    free(lg);
    e = es_by_handle(p, h); /* the callback may have cancelled */
    if (e && last) {
        e_send_all(p, e, SW_PIPE_CLOSE);
        e_end(p, e, 0, "finished");
    }
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
        esess_free(e);
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
    e->n_stages = p->cfg.n_shards;
    if (cb) e->cb = *cb;
    e->failing = -1;
    e->t_open = e->last_progress = now_us;
    do sw_random_bytes(&e->handle, sizeof e->handle);
    while (!e->handle || es_by_handle(p, e->handle));
    int rc = e_open_route(p, e, 0, msg, msg_len);
    if (rc) {
        esess_free(e);
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
    struct esess *e = p ? es_by_handle(p, session) : NULL;
    if (!e) return SW_ENOTFOUND;
    e_send_all(p, e, SW_PIPE_CANCEL);
    e_end(p, e, SW_ECLOSED, "cancelled");
    return 0;
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
        sw_log(SW_LOG_DEBUG, "PIPE", "dropped a message from %s: %s", short_id(from, ids, sizeof ids), err);
        return;
    }
    if (sw__pipe_hdr_receive(p->hdr, from, &m, now_us)) return;
    switch (m.type) {
    case SW_PIPE_OPEN:
        stage_open(p, from, &m, now_us);
        break;
    case SW_PIPE_TOKENS:
    case SW_PIPE_HIDDEN:
        stage_input(p, from, &m, now_us);
        break;
    case SW_PIPE_CANCEL:
    case SW_PIPE_CLOSE: {
        struct ssess *s = ss_find(p, m.session);
        if (s && id_eq(from, s->entry)) ssess_close(p, s);
        break;
    }
    case SW_PIPE_REPLAY:
        stage_replay(p, from, &m);
        break;
    case SW_PIPE_OPEN_OK:
        entry_open_ok(p, from, &m, now_us);
        break;
    case SW_PIPE_TOKEN_OUT:
        entry_token(p, from, &m, now_us);
        break;
    case SW_PIPE_ERROR: {
        entry_error(p, from, &m, now_us);
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
        if (id_eq(s->entry, id) && !id_eq(id, p->cfg.self_id)) ssess_close(p, s);
    }
    /* entry sessions routed through it */
    for (struct esess *e = p->es, *nx; e; e = nx) {
        nx = e->next;
        for (uint32_t k = 0; k < e->n_stages; k++) {
            if (!id_eq(e->route[k], id)) continue;
            e_failover(p, e, k, now_us, "lost its connection");
            break; /* e may be gone; one failover per event and session */
        }
    }
}

size_t sw_pipe_drop_stage(struct sw_pipe *p, const char *reason)
{
    size_t n = 0;
    while (p && p->ss) {
        struct ssess *s = p->ss;
        send_error(p, s->entry, s->id, s->idx, SW_ESTATE, "stage %u: %s", s->idx, reason ? reason : "the stage closed");
        ssess_close(p, s);
        n++;
    }
    return n;
}

uint64_t sw_pipe_tick(struct sw_pipe *p, uint64_t now_us)
{
    uint64_t next = UINT64_MAX;
    uint64_t idle = (uint64_t)p->cfg.idle_ms * 1000;
    for (struct ssess *s = p->ss, *nx; s; s = nx) {
        nx = s->next;
        if (p->cfg.host.is_live && !p->cfg.host.is_live(p->cfg.host.ud, s->entry)) {
            ssess_close(p, s); /* the entry left: nobody reads this session's tokens */
            continue;
        }
        if (s->busy || s->qh) continue;
        if (now_us - s->last_us >= idle) {
            p->st.sessions_evicted++;
            send_error(p, s->entry, s->id, s->idx, SW_ETIMEDOUT, "stage %u: session evicted after %u ms idle", s->idx,
                       p->cfg.idle_ms);
            ssess_close(p, s);
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
            e_failover(p, e, (uint32_t)lost, now_us, "left the swarm");
            continue;
        }
        if (now_us - e->last_progress >= e->deadline_us) {
            char why[96];
            snprintf(why, sizeof why, "no progress for %llu ms", (unsigned long long)(e->deadline_us / 1000));
            e_reopen(p, e, now_us, 1, why);
            continue;
        }
        next = SW_MIN(next, e->last_progress + e->deadline_us);
    }
    next = SW_MIN(next, sw__pipe_hdr_tick(p->hdr, now_us));
    return next;
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
