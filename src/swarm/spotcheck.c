/* spotcheck.c — spot checks of pipeline work (issue 13 item 3; docs/pipeline.md "Spot
 * checks"). Three roles, all inside the engine (no sockets, no clocks):
 *   - the entry samples generated tokens (sw_pipe_config.spot_rate); for a sampled token it
 *     picks a shard k whose node S it does not serve itself, and a replica C of shard k
 *     (the checker). C opens an audit
 *     session (OPEN with SW_PIPE_OPEN_AUDIT, its own id); the stage upstream of S (or the
 *     entry, for k = 0) sends C the inputs it sent S (its kept rows), and the stage
 *     downstream of S (the witness) sends C the rows it received from S (CLAIM). S is not
 *     told: nothing it receives differs from any other step. The last shard outputs tokens:
 *     there the entry is the witness (CLAIM with flag TOKENS: the tokens S returned) and C,
 *     with the sampler state S was opened with, checks that each could have been drawn from
 *     its own logits (sw_sampler_check).
 *   - the checker computes the inputs on its own KV sequence and compares its outputs with
 *     the claimed ones, row by row, within a relative tolerance; VERDICT to the entry. The
 *     audit session stays open: the next check of the same shard in that session only
 *     sends the new positions.
 *   - a mismatch makes the entry distrust S: logged with the evidence (position, max abs
 *     difference, relative error, checker, witness), left out of every route this entry
 *     picks from then on, and the sessions routed through it reopened on fresh routes.
 * Not for: the wire codec (pipeline_wire.c), running compute (the stage role). */
#include "swarm/pipeline_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"

#define MAX_DISTRUST 64
/* A check that got no verdict this long is given up (inconclusive); the next sampled token
 * of that shard starts over. */
#define CHECK_TIMEOUT_US (300ull * 1000000ull)

struct distrust {
    uint8_t id[SW_NODE_ID_LEN];
    uint32_t shard;
    uint64_t since_us;
    struct sw_pipe_distrust_info info;
};

struct sw_spot {
    uint64_t rng;
    double rate, rtol, corrupt, wrong_token;
    struct distrust d[MAX_DISTRUST];
    uint32_t n_d;
};

enum { A_NONE = 0, A_OPENING = 1, A_IDLE = 2, A_CHECKING = 3 };

struct spot_audit {
    int state;
    uint64_t id, wire, since_us;
    uint8_t checker[SW_NODE_ID_LEN], suspect[SW_NODE_ID_LEN], witness[SW_NODE_ID_LEN];
    uint32_t checked_to, asked_to;
};

struct spot_es {
    uint32_t n;
    struct spot_audit a[];
};

/* Checker side: the claimed rows and the running comparison of one audit session. */
struct spot_chk {
    uint8_t *claim;              /* claimed rows, wire dtype, row i = position i */
    size_t claim_cap_rows;
    uint32_t claim_to;           /* claims present for [check_from, claim_to) */
    uint32_t cmp_to;             /* compared up to here */
    uint32_t check_from, last_end; /* this check: [check_from, last_end) once LAST came */
    uint8_t up[SW_NODE_ID_LEN];  /* the witness's upstream for this check */
    int have_up, mixed_up, gap;
    float worst_rel, worst_abs;
    uint32_t bad_pos, n_bad;
    int bad;
    /* the last shard: the claimed tokens, tok[q] drawn from row q's logits, rows from
     * tok_from on (the rows before are the prompt or another node's draws) */
    int32_t *tok;
    size_t tok_cap;
    uint32_t tok_from, n_tok;
    int have_tok, tok_err;
    char bad_why[160];
};

/* ------------------------------------------------------------------ helpers */

static uint64_t rng_next(struct sw_spot *sp)
{
    uint64_t x = sp->rng; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    sp->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static double rng_unit(struct sw_spot *sp) { return (double)(rng_next(sp) >> 11) / 9007199254740992.0; }

int sw__spot_new(struct sw_pipe *p)
{
    struct sw_spot *sp = calloc(1, sizeof *sp);
    if (!sp) return SW_ENOMEM;
    sw_random_bytes(&sp->rng, sizeof sp->rng);
    if (!sp->rng) sp->rng = 0x9E3779B97F4A7C15ull;
    sp->rate = p->cfg.spot_rate > 0 ? SW_MIN(p->cfg.spot_rate, 1.0) : 0;
    sp->rtol = p->cfg.spot_rtol > 0 ? p->cfg.spot_rtol : SW_SPOT_RTOL;
    /* TEST HOOK, never for real use: SW_TEST_CORRUPT_HIDDEN=F makes this node perturb the
     * hidden states of a fraction F of the steps it computes for sessions it serves (not
     * for audits it checks), so that tests have a node that lies. */
    const char *env = getenv("SW_TEST_CORRUPT_HIDDEN");
    if (env && *env) {
        char *end;
        double f = strtod(env, &end);
        if (*end || !(f > 0) || f > 1) {
            sw_log(SW_LOG_WARN, "SPOT", "SW_TEST_CORRUPT_HIDDEN=%s not understood (a fraction in (0, 1]); ignored", env);
        } else {
            sp->corrupt = f;
            sw_log(SW_LOG_WARN, "SPOT", "TEST HOOK SW_TEST_CORRUPT_HIDDEN=%g: this node perturbs the hidden states of %g of "
                   "its steps", f, f);
        }
    }
    /* TEST HOOK, never for real use: SW_TEST_WRONG_TOKEN=F makes this node, as the last
     * stage, return the least likely token (not a stop token) instead of the one it drew
     * for a fraction F of the tokens of sessions it serves. */
    env = getenv("SW_TEST_WRONG_TOKEN");
    if (env && *env) {
        char *end;
        double f = strtod(env, &end);
        if (*end || !(f > 0) || f > 1) {
            sw_log(SW_LOG_WARN, "SPOT", "SW_TEST_WRONG_TOKEN=%s not understood (a fraction in (0, 1]); ignored", env);
        } else {
            sp->wrong_token = f;
            sw_log(SW_LOG_WARN, "SPOT", "TEST HOOK SW_TEST_WRONG_TOKEN=%g: this node returns a wrong token for %g of "
                   "the tokens it samples", f, f);
        }
    }
    p->spot = sp;
    return 0;
}

void sw__spot_free(struct sw_pipe *p)
{
    free(p->spot);
    p->spot = NULL;
}

uint8_t sw__spot_open_flags(const struct sw_pipe *p) { return p->spot && p->spot->rate > 0 ? SW_PIPE_OPEN_WITNESS : 0; }

static const struct distrust *distrusted(const struct sw_spot *sp, const uint8_t *id)
{
    for (uint32_t i = 0; sp && i < sp->n_d; i++)
        if (sw__pipe_id_eq(sp->d[i].id, id)) return &sp->d[i];
    return NULL;
}

size_t sw__spot_exclude(const struct sw_pipe *p, uint8_t *ex, size_t n, size_t cap)
{
    const struct sw_spot *sp = p->spot;
    for (uint32_t i = 0; sp && i < sp->n_d && n < cap; i++) memcpy(ex + n++ * SW_NODE_ID_LEN, sp->d[i].id, SW_NODE_ID_LEN);
    return n;
}

size_t sw_pipe_distrusted(const struct sw_pipe *p, size_t i, struct sw_pipe_distrust_info *out, uint64_t now_us)
{
    if (!p || !p->spot) return 0;
    if (out && i < p->spot->n_d) {
        *out = p->spot->d[i].info;
        out->age_s = now_us > p->spot->d[i].since_us ? (double)(now_us - p->spot->d[i].since_us) / 1e6 : 0;
    }
    return p->spot->n_d;
}

static float row_val(const uint8_t *row, uint8_t dtype, size_t i)
{
    if (dtype == SW_PIPE_F16) {
        uint16_t h;
        memcpy(&h, row + 2 * i, 2);
        return sw_pipe_f16_to_f32(h);
    }
    float f;
    memcpy(&f, row + 4 * i, 4);
    return f;
}

int sw_spot_compare_row(const uint8_t *a, const uint8_t *b, uint8_t dtype, uint32_t n_embd, double rtol, float *max_abs,
                        float *rel)
{
    double d = 0, se = 0, sa = 0, sb = 0;
    int nan = 0;
    for (uint32_t i = 0; i < n_embd; i++) {
        double x = row_val(a, dtype, i), y = row_val(b, dtype, i);
        if (isnan(x) || isnan(y) || isinf(x) || isinf(y)) {
            nan |= !(isnan(x) && isnan(y)) && !(x == y);
            continue;
        }
        double e = fabs(x - y);
        if (e > d) d = e;
        se += e * e;
        sa += x * x;
        sb += y * y;
    }
    /* the difference's norm relative to the rows' (L2): rounding spread over a row stays
     * small, a perturbation of some of its values does not */
    double scale = sqrt(sa > sb ? sa : sb), r = sqrt(se) / (scale > 1e-6 ? scale : 1e-6);
    if (nan) {
        d = INFINITY;
        r = INFINITY;
    }
    *max_abs = (float)d;
    *rel = (float)r;
    return !(r <= rtol);
}

/* ------------------------------------------------------------------ stage: witness, test hook */

void sw__spot_witness(struct ssess *s, const uint8_t *from, const struct sw_pipe_msg *m)
{
    if (!(s->flags & SW_PIPE_OPEN_WITNESS) || (s->flags & SW_PIPE_OPEN_AUDIT) || s->takes_tokens) return;
    if (m->dtype != s->dtype || m->n_embd != s->n_embd || m->data_len != (size_t)m->n_tokens * s->row_bytes) return;
    if (s->recv_rows && !sw__pipe_id_eq(from, s->recv_from)) s->recv_rows = 0; /* another upstream: start over */
    memcpy(s->recv_from, from, SW_NODE_ID_LEN);
    size_t pos = m->pos, end = (size_t)m->pos + m->n_tokens;
    if (pos > s->recv_rows || end > s->n_ctx || end <= s->recv_rows) return; /* a gap, past the context, or known */
    if (end > s->recv_cap_rows) {
        size_t cap = SW_MIN(SW_MAX(end, s->recv_cap_rows * 2), (size_t)s->n_ctx);
        uint8_t *r = realloc(s->recv, cap * s->row_bytes);
        if (!r) return;
        s->recv = r;
        s->recv_cap_rows = cap;
    }
    memcpy(s->recv + pos * s->row_bytes, m->data, m->data_len);
    s->recv_rows = end;
}

void sw__spot_test_corrupt(struct sw_pipe *p, const struct ssess *s, float *out, uint32_t n_tokens)
{
    struct sw_spot *sp = p->spot;
    if (!sp || !(sp->corrupt > 0) || s->gives_logits || (s->flags & SW_PIPE_OPEN_AUDIT)) return;
    if (rng_unit(sp) >= sp->corrupt) return;
    for (uint32_t t = 0; t < n_tokens; t++) {
        float *row = out + (size_t)t * s->n_embd, mx = 0;
        for (uint32_t i = 0; i < s->n_embd; i++) mx = SW_MAX(mx, fabsf(row[i]));
        for (uint32_t i = 0; i < s->n_embd; i += 8) row[i] += (i & 8 ? 0.25f : -0.25f) * (mx > 0 ? mx : 1.0f);
    }
    p->st.spot_corrupted++;
}

int32_t sw__spot_test_token(struct sw_pipe *p, const struct ssess *s, const float *lg, int32_t t)
{
    struct sw_spot *sp = p->spot;
    if (!sp || !(sp->wrong_token > 0) || (s->flags & SW_PIPE_OPEN_AUDIT) || s->n_vocab < 2) return t;
    if (rng_unit(sp) >= sp->wrong_token) return t;
    int32_t w = -1; /* the least likely token that does not end the session */
    for (uint32_t i = 0; i < s->n_vocab; i++)
        if ((int32_t)i != t && !sw__pipe_is_stop(s->stop, s->n_stop, (int32_t)i) && (w < 0 || lg[i] < lg[w])) w = (int32_t)i;
    if (w < 0) return t;
    p->st.spot_corrupted++;
    return w;
}

void sw__spot_ssess_free(struct ssess *s)
{
    free(s->recv);
    s->recv = NULL;
    if (s->chk) free(s->chk->tok);
    if (s->chk) free(s->chk->claim);
    free(s->chk);
    s->chk = NULL;
}

/* ------------------------------------------------------------------ checker */

static void checker_verdict(struct sw_pipe *p, struct ssess *s)
{
    struct spot_chk *c = s->chk;
    uint32_t n = c->cmp_to > c->check_from ? c->cmp_to - c->check_from : 0;
    char text[SW_PIPE_MAX_TEXT];
    uint8_t v;
    if (c->mixed_up || c->gap || !c->have_up || !n) {
        v = SW_PIPE_VERDICT_INCONCLUSIVE;
        snprintf(text, sizeof text, "%s", c->mixed_up ? "the claimed rows came from more than one node"
                                          : c->gap ? "claimed rows missing" : !n ? "no claimed rows to compare" : "no witness");
    } else if (c->have_tok && c->tok_err) {
        v = SW_PIPE_VERDICT_INCONCLUSIVE;
        snprintf(text, sizeof text, "the sampler could not be replayed here");
    } else if (c->have_tok && c->bad) {
        v = SW_PIPE_VERDICT_MISMATCH;
        snprintf(text, sizeof text, "%u of %u tokens could not have been drawn; position %u: %s", c->n_bad, c->n_tok,
                 c->bad_pos + 1, c->bad_why);
    } else if (c->have_tok) {
        v = c->n_tok ? SW_PIPE_VERDICT_OK : SW_PIPE_VERDICT_INCONCLUSIVE;
        snprintf(text, sizeof text, "%u tokens consistent with the sampler (logit tolerance %g x the row's largest)", c->n_tok,
                 p->spot->rtol);
    } else if (c->bad) {
        v = SW_PIPE_VERDICT_MISMATCH;
        snprintf(text, sizeof text, "%u of %u positions differ beyond the tolerance %g", c->n_bad, n, p->spot->rtol);
    } else {
        v = SW_PIPE_VERDICT_OK;
        snprintf(text, sizeof text, "%u positions within %g", n, p->spot->rtol);
    }
    static const uint8_t zero[SW_NODE_ID_LEN];
    struct sw_pipe_msg m = { .type = SW_PIPE_VERDICT, .session = s->id, .stage = s->idx, .verdict = v,
                             .pos = c->check_from, .n_tokens = n, .bad_pos = c->bad_pos, .max_abs = c->worst_abs,
                             .rel_err = c->worst_rel, .node_a = c->have_up ? c->up : zero, .text = text,
                             .text_len = (uint16_t)strlen(text) };
    sw__pipe_send(p, s->entry, &m);
    p->st.audits_served++;
    char ids[16];
    if (c->have_tok)
        sw_log(v == SW_PIPE_VERDICT_MISMATCH ? SW_LOG_WARN : SW_LOG_INFO, "SPOT",
               "audit %016llx (shard %u, positions %u..%u, tokens of node %s): %s (worst logit gap %.4g, rel %.3g): %s",
               (unsigned long long)s->id, s->idx, c->check_from, c->check_from + n, sw__pipe_short_id(c->up, ids, sizeof ids),
               v == SW_PIPE_VERDICT_OK ? "agree" : v == SW_PIPE_VERDICT_MISMATCH ? "DISAGREE" : "inconclusive",
               (double)c->worst_abs, (double)c->worst_rel, text);
    else
        sw_log(v == SW_PIPE_VERDICT_MISMATCH ? SW_LOG_WARN : SW_LOG_INFO, "SPOT",
               "audit %016llx (shard %u, positions %u..%u, rows of node %s): %s (max abs diff %.4g, rel err %.3g)",
               (unsigned long long)s->id, s->idx, c->check_from, c->check_from + n, sw__pipe_short_id(c->up, ids, sizeof ids),
               v == SW_PIPE_VERDICT_OK ? "agree" : v == SW_PIPE_VERDICT_MISMATCH ? "DISAGREE" : "inconclusive",
               (double)c->worst_abs, (double)c->worst_rel);
    /* the next check continues from here */
    c->check_from = c->claim_to = c->cmp_to = c->last_end;
    c->last_end = 0;
    c->have_up = c->mixed_up = c->bad = c->gap = c->tok_err = 0;
    c->n_bad = c->bad_pos = c->n_tok = 0;
    c->worst_abs = c->worst_rel = 0;
}

/* Compares what both sides have; a verdict once this check's claims are all compared. */
static void checker_compare(struct sw_pipe *p, struct ssess *s)
{
    struct spot_chk *c = s->chk;
    if (!c) return;
    uint32_t upto = (uint32_t)SW_MIN((size_t)c->claim_to, s->kept_rows);
    for (; c->cmp_to < upto; c->cmp_to++) {
        float a, r;
        size_t off = (size_t)c->cmp_to * s->row_bytes;
        int bad = sw_spot_compare_row(s->kept + off, c->claim + off, s->dtype, s->n_embd, p->spot->rtol, &a, &r);
        if (bad && !c->bad) c->bad_pos = c->cmp_to;
        c->bad |= bad;
        c->n_bad += bad;
        if (!(r <= c->worst_rel)) {
            c->worst_rel = r;
            c->worst_abs = a;
            if (!c->bad) c->bad_pos = c->cmp_to;
        }
    }
    if (!c->last_end) return;
    if (c->cmp_to >= c->last_end) {
        checker_verdict(p, s);
    } else if (c->claim_to < c->last_end && c->cmp_to >= c->claim_to && s->kept_rows >= c->last_end) {
        c->gap = 1; /* claimed rows missing inside the range (dropped as malformed) */
        c->cmp_to = c->last_end;
        checker_verdict(p, s);
    }
}

void sw__spot_checker_step(struct sw_pipe *p, struct ssess *s) { checker_compare(p, s); }

/* ------------------------------------------------------------------ checker of the last shard */

int sw__spot_checker_wait(const struct ssess *s, uint32_t end)
{
    if (!(s->flags & SW_PIPE_OPEN_AUDIT) || !s->gives_logits) return 0;
    /* no claim yet: where the checked node's draws start is not known */
    return !s->chk || !s->chk->have_tok || end > s->chk->claim_to;
}

uint32_t sw__spot_checker_logits_from(const struct ssess *s) { return s->chk && s->chk->have_tok ? s->chk->tok_from : 0; }

static void token_verdict_due(struct sw_pipe *p, struct ssess *s)
{
    struct spot_chk *c = s->chk;
    if (c->last_end && c->cmp_to >= c->last_end) checker_verdict(p, s);
}

void sw__spot_checker_logits(struct sw_pipe *p, struct ssess *s, uint32_t pos, uint32_t n, const float *logits)
{
    struct spot_chk *c = s->chk;
    if (!c || !c->have_tok || !s->smp) return;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t q = pos + i;
        if (q < c->cmp_to) continue; /* computed again (cannot happen: inputs come once) */
        c->cmp_to = q + 1;
        /* not drawn by the checked node (a step wholly before tok_from has no logits per row) */
        if (q < c->tok_from || q >= c->claim_to) continue;
        const float *lg = logits + (size_t)i * s->n_vocab;
        /* the tolerance scales with the row: rtol x its largest |logit| per logit */
        float big = 0;
        for (uint32_t v = 0; v < s->n_vocab; v++)
            if (isfinite(lg[v]) && fabsf(lg[v]) > big) big = fabsf(lg[v]);
        float gap;
        char why[sizeof c->bad_why];
        int rc = sw_sampler_check(s->smp, lg, c->tok[q], (float)(p->spot->rtol * big), &gap, why, sizeof why);
        if (rc < 0) {
            c->tok_err = 1;
            continue;
        }
        c->n_tok++;
        float rel = isfinite(gap) ? gap / (2 * (big > 1e-6f ? big : 1e-6f)) : INFINITY;
        if (rc && !c->bad) {
            c->bad_pos = q;
            snprintf(c->bad_why, sizeof c->bad_why, "%s", why);
        }
        c->bad |= rc;
        c->n_bad += (uint32_t)rc;
        if (!(rel <= c->worst_rel)) {
            c->worst_rel = rel;
            c->worst_abs = gap;
            if (!c->bad) c->bad_pos = q;
        }
    }
    token_verdict_due(p, s);
}

/* CLAIM with flag TOKENS, from the entry: the tokens it received from the checked node. */
static void checker_claim_tokens(struct sw_pipe *p, struct ssess *s, const uint8_t *from, const struct sw_pipe_msg *m,
                                 uint64_t now_us)
{
    if (!s->gives_logits || !sw__pipe_id_eq(from, s->entry)) return; /* only the entry saw the tokens */
    if (!s->chk && !(s->chk = calloc(1, sizeof *s->chk))) return;
    struct spot_chk *c = s->chk;
    if (m->n_tokens) {
        if (m->n_embd || m->data_len != (size_t)m->n_tokens * 4 || (uint64_t)m->pos + m->n_tokens > s->n_ctx) return;
        if (c->have_up && !sw__pipe_id_eq(c->up, m->node_a)) c->mixed_up = 1;
        memcpy(c->up, m->node_a, SW_NODE_ID_LEN);
        c->have_up = 1;
        if (!c->have_tok) { /* the first claim: the checked node's draws start here */
            if (m->pos < c->cmp_to) return;
            c->have_tok = 1;
            c->tok_from = c->claim_to = m->pos;
        }
        size_t end = (size_t)m->pos + m->n_tokens;
        if (end > c->tok_cap) {
            size_t cap = SW_MIN(SW_MAX(end, c->tok_cap * 2), (size_t)s->n_ctx);
            int32_t *t = realloc(c->tok, cap * sizeof *t);
            if (!t) return;
            c->tok = t;
            c->tok_cap = cap;
        }
        if (m->pos <= c->claim_to && end > c->claim_to) {
            for (uint32_t i = 0; i < m->n_tokens; i++) c->tok[m->pos + i] = (int32_t)sw_get_be32(m->data + 4 * (size_t)i);
            c->claim_to = (uint32_t)end;
        }
    }
    if (m->flags & SW_PIPE_CLAIM_LAST) c->last_end = SW_MAX(m->pos + m->n_tokens, c->check_from);
    token_verdict_due(p, s);
    sw__pipe_stage_kick(p, now_us); /* rows that waited for these tokens */
}

static void checker_claim(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us)
{
    struct ssess *s = sw__pipe_ss_find(p, m->session);
    if (!s || !(s->flags & SW_PIPE_OPEN_AUDIT)) return;
    if (m->flags & SW_PIPE_CLAIM_TOKENS) {
        checker_claim_tokens(p, s, from, m, now_us);
        return;
    }
    if (s->gives_logits) return; /* rows claimed of the last shard: not what it outputs */
    if (!s->chk && !(s->chk = calloc(1, sizeof *s->chk))) return;
    struct spot_chk *c = s->chk;
    if (m->n_tokens) {
        if (m->dtype != s->dtype || m->n_embd != s->n_embd || m->data_len != (size_t)m->n_tokens * s->row_bytes ||
            (uint64_t)m->pos + m->n_tokens > s->n_ctx)
            return; /* not this session's shape: ignored (the check ends inconclusive) */
        if (c->have_up && !sw__pipe_id_eq(c->up, m->node_a)) c->mixed_up = 1;
        memcpy(c->up, m->node_a, SW_NODE_ID_LEN);
        c->have_up = 1;
        size_t end = (size_t)m->pos + m->n_tokens;
        if (end > c->claim_cap_rows) {
            size_t cap = SW_MIN(SW_MAX(end, c->claim_cap_rows * 2), (size_t)s->n_ctx);
            uint8_t *r = realloc(c->claim, cap * s->row_bytes);
            if (!r) return;
            c->claim = r;
            c->claim_cap_rows = cap;
        }
        if (m->pos <= c->claim_to && end > c->claim_to) {
            memcpy(c->claim + (size_t)m->pos * s->row_bytes, m->data, m->data_len);
            c->claim_to = (uint32_t)end;
        }
    } else if (!c->have_up) {
        memcpy(c->up, m->node_a, SW_NODE_ID_LEN);
        c->have_up = 1;
    }
    if (m->flags & SW_PIPE_CLAIM_LAST) c->last_end = SW_MAX(m->pos + m->n_tokens, c->check_from);
    checker_compare(p, s);
}

/* ------------------------------------------------------------------ feeder and witness */

static void audit_request(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m)
{
    struct ssess *s = sw__pipe_ss_find(p, m->session);
    if (!s || !sw__pipe_id_eq(from, s->entry) || (s->flags & SW_PIPE_OPEN_AUDIT)) return;
    uint32_t lo = m->pos, hi = m->pos + m->n_tokens;
    if (m->role == SW_PIPE_AUDIT_FEED) { /* our kept outputs = the checked stage's inputs */
        if (s->gives_logits) return;
        hi = (uint32_t)SW_MIN((size_t)hi, s->kept_rows);
        while (lo < hi) {
            uint32_t n = SW_MIN(hi - lo, REPLAY_CHUNK);
            struct sw_pipe_msg h = { .type = SW_PIPE_HIDDEN, .session = m->audit, .dtype = s->dtype, .pos = lo,
                                     .n_tokens = n, .n_embd = s->n_embd, .data = s->kept + (size_t)lo * s->row_bytes,
                                     .data_len = (size_t)n * s->row_bytes };
            sw__pipe_send(p, m->node_a, &h);
            lo += n;
        }
        return;
    }
    /* witness: the rows we received, from whom; LAST ends the check even when we have none */
    static const uint8_t zero[SW_NODE_ID_LEN];
    hi = (uint32_t)SW_MIN((size_t)hi, s->recv_rows);
    do {
        uint32_t n = hi > lo ? SW_MIN(hi - lo, REPLAY_CHUNK) : 0;
        struct sw_pipe_msg c = { .type = SW_PIPE_CLAIM, .session = m->audit, .dtype = s->dtype, .pos = lo, .n_tokens = n,
                                 .n_embd = s->n_embd, .node_a = s->recv_rows ? s->recv_from : zero,
                                 .data = n ? s->recv + (size_t)lo * s->row_bytes : NULL,
                                 .data_len = (size_t)n * s->row_bytes,
                                 .flags = lo + n >= hi ? SW_PIPE_CLAIM_LAST : 0 };
        sw__pipe_send(p, m->node_a, &c);
        lo += n;
    } while (lo < hi);
}

/* ------------------------------------------------------------------ entry */

static void audit_close(struct sw_pipe *p, struct spot_audit *a)
{
    if (a->state != A_NONE) {
        struct sw_pipe_msg m = { .type = SW_PIPE_CLOSE, .session = a->id };
        sw__pipe_send(p, a->checker, &m);
    }
    a->state = A_NONE;
}

void sw__spot_entry_last_open(struct esess *e)
{
    free(e->spot_blob);
    e->spot_blob_len = 0;
    e->spot_last_from = e->n_hist;
    if ((e->spot_blob = malloc(e->blob_len ? e->blob_len : 1)) != NULL) {
        memcpy(e->spot_blob, e->blob, e->blob_len);
        e->spot_blob_len = e->blob_len;
    }
}

void sw__spot_entry_end(struct sw_pipe *p, struct esess *e)
{
    if (!e->spot) return;
    for (uint32_t k = 0; k < e->spot->n; k++) audit_close(p, &e->spot->a[k]);
    free(e->spot);
    e->spot = NULL;
}

/* The last shard's claims: the tokens the checked node drew from rows [from, to) — those of
 * its draws, from e->spot_last_from - 1 on — with LAST on the final message. */
static void claim_tokens(struct sw_pipe *p, struct esess *e, struct spot_audit *a, uint32_t from, uint32_t to)
{
    memcpy(a->witness, p->cfg.self_id, SW_NODE_ID_LEN);
    uint32_t lo = SW_MAX(from, e->spot_last_from - 1);
    do {
        uint32_t n = lo < to ? SW_MIN(to - lo, REPLAY_CHUNK) : 0;
        uint8_t b[4 * REPLAY_CHUNK];
        for (uint32_t i = 0; i < n; i++) sw_put_be32(b + 4 * i, (uint32_t)e->hist[lo + i + 1]);
        struct sw_pipe_msg m = { .type = SW_PIPE_CLAIM, .session = a->id, .dtype = e->dtype, .pos = lo, .n_tokens = n,
                                 .flags = SW_PIPE_CLAIM_TOKENS | (lo + n >= to ? SW_PIPE_CLAIM_LAST : 0),
                                 .node_a = a->suspect, .data = b, .data_len = (size_t)n * 4 };
        sw__pipe_send(p, a->checker, &m);
        lo += n;
    } while (lo < to);
}

/* Asks the feeder and the witness for [from, to) of shard k's rows. */
static void audit_ask(struct sw_pipe *p, struct esess *e, uint32_t k, struct spot_audit *a, uint64_t now_us)
{
    uint32_t from = a->checked_to, to = a->asked_to;
    if (to <= from) {
        a->state = A_IDLE;
        return;
    }
    if (k == 0) { /* we are the feeder: the token ids */
        for (uint32_t lo = from; lo < to;) {
            uint32_t n = SW_MIN(to - lo, REPLAY_CHUNK);
            uint8_t *b = malloc((size_t)n * 4);
            if (!b) return;
            for (uint32_t i = 0; i < n; i++) sw_put_be32(b + 4 * i, (uint32_t)e->hist[lo + i]);
            struct sw_pipe_msg m = { .type = SW_PIPE_TOKENS, .session = a->id, .pos = lo, .n_tokens = n, .data = b,
                                     .data_len = (size_t)n * 4 };
            sw__pipe_send(p, a->checker, &m);
            free(b);
            lo += n;
        }
    } else {
        struct sw_pipe_msg m = { .type = SW_PIPE_AUDIT, .session = e->wire, .role = SW_PIPE_AUDIT_FEED, .audit = a->id,
                                 .node_a = a->checker, .node_b = a->suspect, .pos = from, .n_tokens = to - from };
        sw__pipe_send(p, e->route[k - 1], &m);
    }
    if (k + 1 == e->n_stages) { /* the last shard: we are the witness of the tokens it returned */
        claim_tokens(p, e, a, from, to);
        a->state = A_CHECKING;
        a->since_us = now_us;
        return;
    }
    memcpy(a->witness, e->route[k + 1], SW_NODE_ID_LEN);
    struct sw_pipe_msg w = { .type = SW_PIPE_AUDIT, .session = e->wire, .role = SW_PIPE_AUDIT_WITNESS, .audit = a->id,
                             .node_a = a->checker, .node_b = a->suspect, .pos = from, .n_tokens = to - from };
    sw__pipe_send(p, a->witness, &w);
    a->state = A_CHECKING;
    a->since_us = now_us;
}

/* A checker for shard k of e: a live loaded replica, not the node on the route, not us, not
 * distrusted. SW_ENOTFOUND when there is none. */
static int pick_checker(struct sw_pipe *p, const struct esess *e, uint32_t k, uint8_t out[SW_NODE_ID_LEN])
{
    uint8_t ex[MAX_EXCLUDE][SW_NODE_ID_LEN];
    memcpy(ex[0], e->route[k], SW_NODE_ID_LEN);
    memcpy(ex[1], p->cfg.self_id, SW_NODE_ID_LEN);
    size_t n = sw__spot_exclude(p, &ex[0][0], 2, MAX_EXCLUDE);
    return p->cfg.host.pick(p->cfg.host.ud, k, &ex[0][0], n, out);
}

static void audit_open(struct sw_pipe *p, struct esess *e, uint32_t k, struct spot_audit *a, uint64_t now_us)
{
    uint8_t c[SW_NODE_ID_LEN];
    if (pick_checker(p, e, k, c)) return; /* no replica: nothing to check with */
    uint8_t route[SW_PIPE_MAX_STAGES][SW_NODE_ID_LEN];
    memcpy(route, e->route, sizeof route);
    memcpy(route[k], c, SW_NODE_ID_LEN);
    memset(a, 0, sizeof *a);
    do sw_random_bytes(&a->id, sizeof a->id);
    while (!a->id);
    memcpy(a->checker, c, SW_NODE_ID_LEN);
    memcpy(a->suspect, e->route[k], SW_NODE_ID_LEN);
    a->wire = e->wire;
    a->asked_to = e->n_hist - 1;
    a->state = A_OPENING;
    a->since_us = now_us;
    struct sw_pipe_msg m = { .type = SW_PIPE_OPEN, .session = a->id, .stage = (uint8_t)k, .flags = SW_PIPE_OPEN_AUDIT,
                             .dtype = e->dtype, .n_stages = (uint8_t)e->n_stages, .route = &route[0][0],
                             .entry = p->cfg.self_id, .n_ctx = e->n_ctx, .max_pos = e->max_pos, .progress_ms = PROGRESS_MS };
    if (k + 1 == e->n_stages) { /* the checker draws nothing: it replays the checked node's sampler */
        m.blob = e->spot_blob;
        m.blob_len = (uint32_t)e->spot_blob_len;
    }
    p->st.spot_checks++;
    sw__pipe_send(p, c, &m);
}

void sw__spot_entry_token(struct sw_pipe *p, struct esess *e, uint64_t now_us)
{
    struct sw_spot *sp = p->spot;
    if (!sp || !(sp->rate > 0) || e->n_stages < 2 || e->n_hist < 2 || e->failing >= 0) return;
    if (rng_unit(sp) >= sp->rate) return;
    if (!e->spot) {
        e->spot = calloc(1, sizeof *e->spot + e->n_stages * sizeof e->spot->a[0]);
        if (!e->spot) return;
        e->spot->n = e->n_stages;
    }
    /* a shard served by another node, with a replica to check with (or an audit open there
     * already), no check running; the last one once its node drew a token */
    uint32_t cand[SW_PIPE_MAX_STAGES], nc = 0;
    uint8_t c[SW_NODE_ID_LEN];
    for (uint32_t k = 0; k < e->n_stages; k++) {
        struct spot_audit *a = &e->spot->a[k];
        if (sw__pipe_id_eq(e->route[k], p->cfg.self_id)) continue;
        if (k + 1 == e->n_stages && (!e->spot_blob || !e->spot_last_from || e->n_hist <= e->spot_last_from)) continue;
        if ((a->state == A_OPENING || a->state == A_CHECKING) && now_us - a->since_us < CHECK_TIMEOUT_US) continue;
        if (a->state == A_NONE && pick_checker(p, e, k, c)) continue;
        cand[nc++] = k;
    }
    if (!nc) return;
    uint32_t k = cand[rng_next(sp) % nc];
    struct spot_audit *a = &e->spot->a[k];
    if (a->state == A_OPENING || a->state == A_CHECKING) { /* timed out */
        p->st.spot_inconclusive++;
        audit_close(p, a);
    }
    /* the audit follows one node of one route: a new route or another node starts over */
    if (a->state != A_NONE && (a->wire != e->wire || !sw__pipe_id_eq(a->suspect, e->route[k]) ||
                               !p->cfg.host.is_live || !p->cfg.host.is_live(p->cfg.host.ud, a->checker)))
        audit_close(p, a);
    if (a->state == A_NONE) {
        audit_open(p, e, k, a, now_us);
        return;
    }
    a->asked_to = e->n_hist - 1;
    p->st.spot_checks++;
    audit_ask(p, e, k, a, now_us);
}

static struct esess *find_audit(struct sw_pipe *p, uint64_t id, uint32_t *k_out)
{
    for (struct esess *e = p->es; e; e = e->next)
        for (uint32_t k = 0; e->spot && k < e->spot->n; k++)
            if (e->spot->a[k].state != A_NONE && e->spot->a[k].id == id) {
                *k_out = k;
                return e;
            }
    return NULL;
}

static void distrust(struct sw_pipe *p, struct esess *e, uint32_t k, const struct spot_audit *a, const struct sw_pipe_msg *m,
                     uint64_t now_us)
{
    struct sw_spot *sp = p->spot;
    char sid[16], cid[16], wid[16];
    sw__pipe_short_id(a->suspect, sid, sizeof sid);
    sw__pipe_short_id(a->checker, cid, sizeof cid);
    sw__pipe_short_id(a->witness, wid, sizeof wid);
    char ev[sizeof sp->d[0].info.evidence];
    if (k + 1 == e->n_stages) {
        char t[SW_PIPE_MAX_TEXT + 1];
        memcpy(t, m->text ? m->text : "", m->text_len);
        t[m->text_len] = 0;
        snprintf(ev, sizeof ev,
                 "shard %u: node %s returned a token its sampler could not have drawn: session %016llx, position %u, logit "
                 "gap %.4g, rel %.3g (tolerance %g; rows %u..%u recomputed by node %s: %.160s)",
                 k, sid, (unsigned long long)e->handle, m->bad_pos + 1, (double)m->max_abs, (double)m->rel_err, sp->rtol,
                 m->pos, m->pos + m->n_tokens, cid, t);
    } else {
        snprintf(ev, sizeof ev,
                 "shard %u: node %s returned wrong hidden states: session %016llx, position %u, max abs diff %.4g, rel err "
                 "%.3g (tolerance %g; %u positions from %u recomputed by node %s, rows witnessed by node %s)",
                 k, sid, (unsigned long long)e->handle, m->bad_pos, (double)m->max_abs, (double)m->rel_err, sp->rtol,
                 m->n_tokens, m->pos, cid, wid);
    }
    sw_log(SW_LOG_WARN, "SPOT", "%s; excluded from routes", ev);
    if (!distrusted(sp, a->suspect) && sp->n_d < MAX_DISTRUST) {
        struct distrust *d = &sp->d[sp->n_d++];
        memset(d, 0, sizeof *d);
        memcpy(d->id, a->suspect, SW_NODE_ID_LEN);
        d->shard = k;
        d->since_us = now_us;
        memcpy(d->info.node, a->suspect, SW_NODE_ID_LEN);
        memcpy(d->info.checker, a->checker, SW_NODE_ID_LEN);
        d->info.shard = k;
        d->info.session = e->handle;
        d->info.token = k + 1 == e->n_stages;
        d->info.pos = d->info.token ? m->bad_pos + 1 : m->bad_pos; /* the last shard: the token's position */
        d->info.max_abs = m->max_abs;
        d->info.rel_err = m->rel_err;
        snprintf(d->info.evidence, sizeof d->info.evidence, "%s", ev);
    }
}

static void entry_verdict(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us)
{
    uint32_t k;
    struct esess *e = find_audit(p, m->session, &k);
    if (!e) return;
    struct spot_audit *a = &e->spot->a[k];
    if (!sw__pipe_id_eq(from, a->checker) || a->state != A_CHECKING) return;
    int about_suspect = sw__pipe_id_eq(m->node_a, a->suspect);
    if (m->verdict == SW_PIPE_VERDICT_OK && about_suspect && m->n_tokens) {
        p->st.spot_passed++;
        p->st.spot_positions += m->n_tokens;
        a->checked_to = m->pos + m->n_tokens;
        a->state = A_IDLE;
        return;
    }
    if (m->verdict != SW_PIPE_VERDICT_MISMATCH || !about_suspect) {
        p->st.spot_inconclusive++;
        char t[SW_PIPE_MAX_TEXT + 1];
        memcpy(t, m->text ? m->text : "", m->text_len);
        t[m->text_len] = 0;
        sw_log(SW_LOG_INFO, "SPOT", "session %016llx shard %u: check inconclusive: %s", (unsigned long long)e->handle, k,
               about_suspect ? t : "the witness's rows came from another node");
        audit_close(p, a);
        return;
    }
    p->st.spot_failed++;
    p->st.spot_positions += m->n_tokens;
    uint8_t bad[SW_NODE_ID_LEN];
    memcpy(bad, a->suspect, SW_NODE_ID_LEN);
    distrust(p, e, k, a, m, now_us);
    audit_close(p, a);
    /* every session routed through it: a fresh route (every KV rebuilt without its rows) */
    char why[200], ids[16];
    snprintf(why, sizeof why, "shard %u: node %s failed a spot check", k, sw__pipe_short_id(bad, ids, sizeof ids));
    for (int again = 1; again;) {
        again = 0;
        for (struct esess *x = p->es; x; x = x->next) {
            uint32_t j = 0;
            while (j < x->n_stages && !sw__pipe_id_eq(x->route[j], bad)) j++;
            if (j == x->n_stages) continue;
            sw__pipe_e_reopen(p, x, now_us, 0, why); /* may free x */
            again = 1;
            break;
        }
    }
}

int sw__spot_receive(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us)
{
    switch (m->type) {
    case SW_PIPE_AUDIT:
        audit_request(p, from, m);
        return 1;
    case SW_PIPE_CLAIM:
        checker_claim(p, from, m, now_us);
        return 1;
    case SW_PIPE_VERDICT:
        entry_verdict(p, from, m, now_us);
        return 1;
    case SW_PIPE_OPEN_OK:
    case SW_PIPE_ERROR: {
        uint32_t k;
        struct esess *e = find_audit(p, m->session, &k);
        if (!e) return 0;
        struct spot_audit *a = &e->spot->a[k];
        if (!sw__pipe_id_eq(from, a->checker)) return 1;
        if (m->type == SW_PIPE_OPEN_OK && a->state == A_OPENING) {
            audit_ask(p, e, k, a, now_us);
        } else if (m->type == SW_PIPE_ERROR) { /* refused or evicted: nothing checked */
            if (a->state == A_OPENING || a->state == A_CHECKING) p->st.spot_inconclusive++;
            a->state = A_NONE;
        }
        return 1;
    }
    default:
        return 0;
    }
}

void sw__spot_job_account(struct sw_pipe *p, const struct sw_pipe_job *j)
{
    uint64_t all = 0, audit = 0;
    for (uint32_t i = 0; i < j->n_ent; i++) {
        all += j->ent[i].n;
        const struct ssess *s = sw__pipe_ss_find(p, j->ent[i].session);
        if (s && (s->flags & SW_PIPE_OPEN_AUDIT) && !j->ent[i].rc) audit += j->ent[i].n;
    }
    if (!audit || !all) return;
    p->st.audit_positions += audit;
    p->st.audit_compute_us += j->compute_us * audit / all;
}

void sw__spot_settings(const struct sw_pipe *p, double *rate, double *rtol)
{
    *rate = p->spot ? p->spot->rate : 0;
    *rtol = p->spot ? p->spot->rtol : SW_SPOT_RTOL;
}
