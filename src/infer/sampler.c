/* sampler.c — logits to the next token: repetition penalty, top-k, top-p, min-p,
 * temperature, then a draw from the softmax with our own PRNG (xoshiro256**, seeded with
 * splitmix64), so that the same seed gives the same tokens on every machine. The whole
 * state (parameters, RNG, recent tokens) serialises, so the last stage of a pipeline can
 * carry a session's sampler across nodes. Filters follow llama.cpp's default chain order;
 * top-k/top-p/min-p look at the distribution before temperature, as there. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok.h"

struct cand {
    float logit;
    int32_t id;
};

struct sw_sampler {
    struct sw_sampler_params p;
    uint32_t n_vocab;
    /* extensions (blob version 2): log probabilities and a grammar */
    int lp_on;
    uint32_t lp_k;
    struct sw_sampler_logprobs last; /* of the last token sampled */
    uint8_t *gr_bytes;    /* the compiled grammar as given (saved with the state) */
    size_t gr_len;
    struct sw_grammar *gr;
    struct sw_gstate *gs;
    const struct sw_gvocab *voc; /* borrowed; set where the logits are */
    uint8_t *allowed;     /* n_vocab mask scratch */
    uint64_t rng[4];
    int32_t *recent;      /* ring of the last repeat_last_n tokens */
    uint32_t n_recent, head; /* head: where the next token goes */
    struct cand *cand;    /* n_vocab scratch */
    int32_t *scratch;     /* repeat_last_n scratch for de-duplication */
};

/* ------------------------------------------------------------------ PRNG */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** (Blackman & Vigna, 2018) */
static uint64_t rng_next(uint64_t s[4])
{
    uint64_t r = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

static void rng_seed(uint64_t s[4], uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s[i] = splitmix64(&x);
}

/* Uniform in [0, 1) with 53 bits. */
static double rng_uniform(uint64_t s[4]) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

/* ------------------------------------------------------------------ life cycle */

void sw_sampler_params_default(struct sw_sampler_params *p)
{
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->seed = 0;
}

static int params_ok(const struct sw_sampler_params *p)
{
    return !isnan(p->temperature) && !isnan(p->top_p) && !isnan(p->min_p) && isfinite(p->repeat_penalty) &&
           p->repeat_penalty > 0 && p->top_p >= 0 && p->min_p >= 0 && p->min_p <= 1 &&
           p->repeat_last_n <= SW_SAMPLER_MAX_WINDOW && isfinite(p->temperature);
}

void sw_sampler_free(struct sw_sampler *s)
{
    if (!s) return;
    free(s->recent);
    free(s->cand);
    free(s->scratch);
    free(s->gr_bytes);
    sw_gstate_free(s->gs);
    sw_grammar_free(s->gr);
    free(s->allowed);
    free(s);
}

int sw_sampler_new(const struct sw_sampler_params *p, uint32_t n_vocab, struct sw_sampler **out)
{
    *out = NULL;
    if (!p || !n_vocab || !params_ok(p)) return SW_EINVAL;
    struct sw_sampler *s = calloc(1, sizeof *s);
    if (!s) return SW_ENOMEM;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    if (p->repeat_last_n) {
        s->recent = malloc(p->repeat_last_n * sizeof *s->recent);
        s->scratch = malloc(p->repeat_last_n * sizeof *s->scratch);
    }
    if (!s->cand || (p->repeat_last_n && (!s->recent || !s->scratch))) {
        sw_sampler_free(s);
        return SW_ENOMEM;
    }
    rng_seed(s->rng, p->seed);
    *out = s;
    return 0;
}

const struct sw_sampler_params *sw_sampler_params(const struct sw_sampler *s) { return &s->p; }

void sw_sampler_reset(struct sw_sampler *s)
{
    s->n_recent = s->head = 0;
    rng_seed(s->rng, s->p.seed);
    struct sw_gstate *gs = NULL;
    if (s->gr && !sw_gstate_new(s->gr, &gs)) { /* the grammar starts over too */
        sw_gstate_free(s->gs);
        s->gs = gs;
    }
}

static void remember(struct sw_sampler *s, int32_t id)
{
    uint32_t w = s->p.repeat_last_n;
    if (!w) return;
    s->recent[s->head] = id;
    s->head = (s->head + 1) % w;
    if (s->n_recent < w) s->n_recent++;
}

void sw_sampler_accept(struct sw_sampler *s, const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) remember(s, ids[i]);
}

/* ------------------------------------------------------------------ sampling */

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Descending logit, then ascending id: a total order, so results never depend on the
 * sort algorithm. */
static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static void sift_down(struct cand *h, size_t n, size_t i)
{
    /* min-heap by cmp_cand order: the root is the "worst" kept candidate */
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && cmp_cand(&h[c + 1], &h[c]) > 0) c++;
        if (cmp_cand(&h[c], &h[i]) <= 0) return;
        struct cand t = h[i];
        h[i] = h[c];
        h[c] = t;
        i = c;
    }
}

/* Keeps the best k of c[0..n) in c[0..k), sorted. */
static void top_k_sorted(struct cand *c, size_t n, size_t k)
{
    if (k >= n) {
        qsort(c, n, sizeof *c, cmp_cand);
        return;
    }
    for (size_t i = k / 2; i-- > 0;) sift_down(c, k, i);
    for (size_t i = k; i < n; i++) {
        if (cmp_cand(&c[i], &c[0]) < 0) {
            c[0] = c[i];
            sift_down(c, k, 0);
        }
    }
    qsort(c, k, sizeof *c, cmp_cand);
}

/* c[i] = logits[i] (NaN as -inf) with the repetition penalty applied, in id order. */
static void fill_cand(struct sw_sampler *s, const float *logits)
{
    const struct sw_sampler_params *p = &s->p;
    uint32_t n = s->n_vocab;
    struct cand *c = s->cand;
    for (uint32_t i = 0; i < n; i++) {
        float l = logits[i];
        c[i] = (struct cand){ isnan(l) ? -INFINITY : l, (int32_t)i };
    }

    /* repetition penalty over the distinct recent tokens (CTRL, Keskar et al. 2019, in
     * llama.cpp's form: positive logits divided, negative multiplied) */
    if (p->repeat_penalty != 1.0f && s->n_recent) {
        memcpy(s->scratch, s->recent, s->n_recent * sizeof *s->scratch);
        qsort(s->scratch, s->n_recent, sizeof *s->scratch, cmp_i32);
        for (uint32_t i = 0; i < s->n_recent; i++) {
            int32_t id = s->scratch[i];
            if ((i && id == s->scratch[i - 1]) || id < 0 || (uint32_t)id >= n) continue;
            float *l = &c[id].logit;
            *l = *l > 0 ? *l / p->repeat_penalty : *l * p->repeat_penalty;
        }
    }
}

/* The model's log-softmax over c (id order, after the penalty): the normaliser and the
 * lp_k best tokens into s->last (the chosen token's own value is set after the pick). */
static double logprobs_prepare(struct sw_sampler *s)
{
    const struct cand *c = s->cand;
    uint32_t n = s->n_vocab, k = s->lp_k;
    float mx = -INFINITY;
    for (uint32_t i = 0; i < n; i++)
        if (c[i].logit > mx) mx = c[i].logit;
    double sum = 0;
    for (uint32_t i = 0; i < n; i++) sum += exp((double)c[i].logit - mx);
    double lse = mx + log(sum);
    struct sw_sampler_logprobs *L = &s->last;
    L->n_top = 0;
    for (uint32_t i = 0; i < n && k; i++) { /* insertion into the k best (k <= 20) */
        float l = c[i].logit;
        if (L->n_top == k && l <= L->top_lp[k - 1]) continue;
        uint32_t j = L->n_top < k ? L->n_top++ : k - 1;
        while (j > 0 && L->top_lp[j - 1] < l) {
            L->top_lp[j] = L->top_lp[j - 1];
            L->top_id[j] = L->top_id[j - 1];
            j--;
        }
        L->top_lp[j] = l;
        L->top_id[j] = (int32_t)i;
    }
    for (uint32_t j = 0; j < L->n_top; j++) L->top_lp[j] = (float)(L->top_lp[j] - lse);
    return lse;
}

/* Grammar: the tokens it cannot take next get -inf (c in id order). */
static int grammar_mask(struct sw_sampler *s)
{
    int rc = sw_gstate_mask(s->gs, s->voc, s->allowed);
    if (rc) return rc;
    for (uint32_t i = 0; i < s->n_vocab; i++)
        if (!s->allowed[i]) s->cand[i].logit = -INFINITY;
    return 0;
}

#define GREEDY_TRY 32 /* greedy with a grammar: the best candidates checked one by one first */

static int32_t pick(struct sw_sampler *s, const float *logits)
{
    const struct sw_sampler_params *p = &s->p;
    size_t n = s->n_vocab;
    struct cand *c = s->cand;
    size_t m = n;
    if (p->temperature <= 0.0f) {
        if (s->gs) {
            /* in logit order, the first token the grammar takes: the best one (one pass),
             * else the best GREEDY_TRY in order, and only when none of them is, the whole
             * vocabulary is masked */
            size_t best = 0;
            for (size_t i = 1; i < n; i++)
                if (c[i].logit > c[best].logit) best = i;
            if (c[best].logit > -INFINITY && sw_gstate_allows(s->gs, s->voc, c[best].id)) return c[best].id;
            size_t k = SW_MIN((size_t)GREEDY_TRY, n);
            top_k_sorted(c, n, k);
            for (size_t i = 0; i < k && c[i].logit > -INFINITY; i++)
                if (sw_gstate_allows(s->gs, s->voc, c[i].id)) return c[i].id;
            fill_cand(s, logits);
            if (grammar_mask(s)) return SW_ENOMEM;
        }
        size_t best = 0;
        for (size_t i = 1; i < m; i++)
            if (c[i].logit > c[best].logit) best = i;
        if (c[best].logit == -INFINITY) return SW_EINVAL;
        return c[best].id;
    }
    if (s->gs && grammar_mask(s)) return SW_ENOMEM;

    /* top-k (and sort: every later filter wants the candidates in descending order) */
    top_k_sorted(c, m, p->top_k ? SW_MIN((size_t)p->top_k, m) : m);
    if (p->top_k) m = SW_MIN((size_t)p->top_k, m);
    if (c[0].logit == -INFINITY) return SW_EINVAL;
    while (m > 1 && c[m - 1].logit == -INFINITY) m--;

    /* top-p: the smallest prefix whose probability mass reaches top_p */
    if (p->top_p < 1.0f) {
        double sum = 0, cum = 0;
        for (size_t i = 0; i < m; i++) sum += exp((double)c[i].logit - c[0].logit);
        for (size_t i = 0; i < m; i++) {
            cum += exp((double)c[i].logit - c[0].logit) / sum;
            if (cum >= p->top_p) { m = i + 1; break; }
        }
    }

    /* min-p: drop tokens less likely than min_p times the most likely one */
    if (p->min_p > 0.0f) {
        float floor_logit = c[0].logit + logf(p->min_p);
        size_t k = 1;
        while (k < m && c[k].logit >= floor_logit) k++;
        m = k;
    }

    /* temperature, softmax, draw */
    double inv_t = 1.0 / p->temperature, sum = 0;
    for (size_t i = 0; i < m; i++) sum += exp(((double)c[i].logit - c[0].logit) * inv_t);
    double u = rng_uniform(s->rng) * sum, cum = 0;
    size_t pk = m - 1;
    for (size_t i = 0; i < m; i++) {
        cum += exp(((double)c[i].logit - c[0].logit) * inv_t);
        if (u < cum) { pk = i; break; }
    }
    return c[pk].id;
}

int32_t sw_sampler_sample(struct sw_sampler *s, const float *logits)
{
    if (s->gs && !s->voc) return SW_ESTATE;
    fill_cand(s, logits);
    double lse = 0;
    float chosen_logit_src = 0;
    if (s->lp_on) lse = logprobs_prepare(s);
    int32_t id = pick(s, logits);
    if (id < 0) return id;
    if (s->lp_on) {
        /* the model's value of the chosen token (after the penalty), from the logits */
        float l = logits[id];
        chosen_logit_src = isnan(l) ? -INFINITY : l;
        if (s->p.repeat_penalty != 1.0f)
            for (uint32_t i = 0; i < s->n_recent; i++)
                if (s->recent[i] == id) {
                    chosen_logit_src = chosen_logit_src > 0 ? chosen_logit_src / s->p.repeat_penalty
                                                            : chosen_logit_src * s->p.repeat_penalty;
                    break;
                }
        s->last.logprob = (float)(chosen_logit_src - lse);
    }
    if (s->gs && sw_gstate_accept(s->gs, s->voc, id)) return SW_EINVAL; /* cannot happen: the mask allowed it */
    remember(s, id);
    return id;
}

/* ------------------------------------------------------------------ spot checks */

/* The draw itself (sampling): the node drew u from the same RNG state, so its token is the
 * one whose share of the filtered mass, the candidates in descending logit order, covers u.
 * With every logit within t of the node's (t2 = 2t between two; a = t2 / temperature for
 * two groups of weights after the temperature):
 * - the tokens surely ahead of id (better by more than t2) are in the set whenever id is,
 *   so their share is at least A e^-a / (A e^-a + R), R the mass of every other token that
 *   may be in the set (a superset: finite, within the lenient top-k): u below it drew a
 *   better token;
 * - without a filter that cuts the set (top-k, top-p, min-p) every token is in it, so the
 *   share of id and of the tokens that may rank before it is at most P e^a / (P e^a + B), B
 *   the mass of the tokens surely behind it: u at or above it drew a worse token.
 * Returns 1 (with why) when u rules id out. */
static int check_draw(const struct sw_sampler *s, double lt, double mx, double kth, double t2, double u, int32_t id,
                      char *why, size_t why_len)
{
    const struct sw_sampler_params *p = &s->p;
    const struct cand *c = s->cand;
    const double inv_t = 1.0 / p->temperature, a = exp(t2 * inv_t);
    double ahead = 0, rest = 0, upto = 0, behind = 0;
    for (uint32_t i = 0; i < s->n_vocab; i++) {
        const double l = c[i].logit;
        if (!(l > -INFINITY)) continue;
        const double w = exp((l - mx) * inv_t);
        if (l > lt + t2) ahead += w;
        else if (l >= kth - t2) rest += w;
        if (l >= lt - t2) upto += w;
        else behind += w;
    }
    const double lo = ahead / a / (ahead / a + rest);
    if (ahead > 0 && u < lo * (1 - 1e-9)) {
        if (why_len)
            snprintf(why, why_len, "draw: the node's uniform %.4g falls in the %.4g of the mass held by the tokens surely "
                     "more likely than token %d", u, lo, id);
        return 1;
    }
    const int cut = (p->top_k && p->top_k < s->n_vocab) || p->top_p < 1.0f || p->min_p > 0.0f;
    const double hi = upto * a / (upto * a + behind);
    if (!cut && behind > 0 && u >= hi * (1 + 1e-9)) {
        if (why_len)
            snprintf(why, why_len, "draw: the node's uniform %.4g is beyond the %.4g of the mass held by token %d and the "
                     "tokens that may rank before it", u, hi, id);
        return 1;
    }
    return 0;
}

int sw_sampler_check(struct sw_sampler *s, const float *logits, int32_t id, float tol, float *gap, char *why,
                     size_t why_len)
{
    const struct sw_sampler_params *p = &s->p;
    uint32_t n = s->n_vocab;
    *gap = INFINITY;
    if (why_len) why[0] = 0;
    if (s->gs && !s->voc) return SW_ESTATE;
    if (id < 0 || (uint32_t)id >= n) {
        if (why_len) snprintf(why, why_len, "token %d is outside the vocabulary", id);
        return 1;
    }
    fill_cand(s, logits);
    if (s->gs && grammar_mask(s)) return SW_ENOMEM;
    const struct cand *c = s->cand;
    /* the penalty divides or multiplies a logit: it scales the rounding too */
    double t = (double)tol * (p->repeat_penalty > 1.0f ? p->repeat_penalty : 1.0), t2 = 2 * t;
    double mx = -INFINITY, lt = c[id].logit;
    for (uint32_t i = 0; i < n; i++)
        if (c[i].logit > mx) mx = c[i].logit;
    *gap = lt > -INFINITY ? (float)(mx - lt) : INFINITY;
    int bad = 0;
    if (!(lt > -INFINITY)) {
        bad = 1;
        if (why_len) snprintf(why, why_len, "token %d cannot be drawn (%s)", id, s->gs ? "the grammar forbids it" : "logit -inf or NaN");
    } else if (p->temperature <= 0.0f) {
        bad = mx - lt > t2;
        if (bad && why_len)
            snprintf(why, why_len, "greedy: token %d is %.4g below the best logit (tolerance %.4g)", id, mx - lt, t2);
    } else {
        /* tokens surely better than id (by more than the two sides' rounding), and the
         * threshold of the top-k set with the slack */
        uint32_t better = 0;
        for (uint32_t i = 0; i < n; i++) better += c[i].logit > lt + t2;
        if (p->top_k && better >= p->top_k) {
            bad = 1;
            if (why_len) snprintf(why, why_len, "top-k %u: %u tokens are surely more likely than token %d", p->top_k, better, id);
        }
        if (!bad && p->min_p > 0.0f && lt < mx + log((double)p->min_p) - t2) {
            bad = 1;
            if (why_len)
                snprintf(why, why_len, "min-p %g: token %d is %.4g below the best logit (bound %.4g)", (double)p->min_p, id,
                         mx - lt, t2 - log((double)p->min_p));
        }
        /* the k-th best logit bounds the set the mass is over (a lenient set: the honest
         * one's sum is at most e^(2t) more) */
        double kth = -INFINITY;
        if (p->top_k && p->top_k < n) {
            double lo = -INFINITY, hi = mx;
            for (int it = 0; it < 60; it++) { /* bisection for the top_k-th value (c stays in id order) */
                double mid = lo == -INFINITY ? hi - 64.0 * (1 + fabs(hi)) : (lo + hi) / 2;
                uint32_t cnt = 0;
                for (uint32_t i = 0; i < n; i++) cnt += c[i].logit >= mid;
                if (cnt >= p->top_k) lo = mid;
                else hi = mid;
                if (lo != -INFINITY && hi - lo < 1e-6) break;
            }
            kth = lo;
        }
        if (!bad && p->top_p < 1.0f) {
            double sum = 0, before = 0;
            for (uint32_t i = 0; i < n; i++) {
                double l = c[i].logit;
                if (!(l > -INFINITY) || l < kth - t2) continue;
                double w = exp(l - mx);
                sum += w;
                if (l > lt + t2) before += w;
            }
            double bound = (double)p->top_p * exp(4 * t);
            if (sum > 0 && before / sum >= bound) {
                bad = 1;
                if (why_len)
                    snprintf(why, why_len, "top-p %g: the tokens surely more likely than token %d hold %.4g of the mass (bound %.4g)",
                             (double)p->top_p, id, before / sum, bound);
            }
        }
        const double u = rng_uniform(s->rng); /* the node's draw: its RNG state is ours */
        if (!bad) bad = check_draw(s, lt, mx, kth, t2, u, id, why, why_len);
    }
    if (s->gs && sw_gstate_accept(s->gs, s->voc, id) && !bad) {
        bad = 1;
        if (why_len) snprintf(why, why_len, "the grammar cannot take token %d", id);
    }
    remember(s, id);
    return bad;
}

/* ------------------------------------------------------------------ extensions */

int sw_sampler_set_logprobs(struct sw_sampler *s, int on, uint32_t top_k)
{
    if (top_k > SW_SAMPLER_MAX_TOP_LOGPROBS) return SW_EINVAL;
    s->lp_on = on != 0;
    s->lp_k = on ? top_k : 0;
    return 0;
}

const struct sw_sampler_logprobs *sw_sampler_last_logprobs(const struct sw_sampler *s)
{
    return s->lp_on ? &s->last : NULL;
}

int sw_sampler_set_grammar(struct sw_sampler *s, const uint8_t *g, size_t len)
{
    struct sw_grammar *gr = NULL;
    struct sw_gstate *gs = NULL;
    int rc = sw_grammar_load(g, len, &gr);
    if (!rc) rc = sw_gstate_new(gr, &gs);
    uint8_t *copy = rc ? NULL : malloc(len);
    uint8_t *allowed = rc ? NULL : malloc(s->n_vocab);
    if (!rc && (!copy || !allowed)) rc = SW_ENOMEM;
    if (rc) {
        free(copy);
        free(allowed);
        sw_gstate_free(gs);
        sw_grammar_free(gr);
        return rc;
    }
    memcpy(copy, g, len);
    free(s->gr_bytes);
    sw_gstate_free(s->gs);
    sw_grammar_free(s->gr);
    free(s->allowed);
    s->gr_bytes = copy;
    s->gr_len = len;
    s->gr = gr;
    s->gs = gs;
    s->allowed = allowed;
    return 0;
}

int sw_sampler_has_grammar(const struct sw_sampler *s) { return s->gs != NULL; }

int sw_sampler_set_vocab(struct sw_sampler *s, const struct sw_gvocab *v)
{
    if (v && sw_gvocab_n(v) != s->n_vocab) return SW_EINVAL;
    s->voc = v;
    return 0;
}

/* ------------------------------------------------------------------ state blob */

/* Layout (little-endian): "SWSP", u32 version = 1, f32 temperature, u32 top_k, f32 top_p,
 * f32 min_p, f32 repeat_penalty, u32 repeat_last_n, u64 seed, u64 rng[4], u32 n_recent,
 * i32 recent[n_recent] oldest first. Version 2 (only when an extension is on, so nodes that
 * know version 1 still serve plain sessions) goes on: u32 flags (1 logprobs, 2 grammar),
 * u32 top_k of the log probabilities, the last token's f32 logprob, u32 n_top, n_top x
 * (i32 id, f32 logprob); with a grammar: u32 length + the grammar (sw_gbuild_finish), u32
 * length + its state (sw_gstate_save). */
#define BLOB_MAGIC "SWSP"
#define BLOB_VERSION 1u
#define BLOB_VERSION_EXT 2u
#define BLOB_FIXED (4 + 4 + 4 * 6 + 8 + 32 + 4)

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }
static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

int sw_sampler_save(const struct sw_sampler *s, struct sw_buf *out)
{
    size_t len = BLOB_FIXED + (size_t)s->n_recent * 4;
    uint8_t *b = malloc(len);
    if (!b) return SW_ENOMEM;
    uint8_t *q = b;
    int ext = s->lp_on || s->gs;
    memcpy(q, BLOB_MAGIC, 4); q += 4;
    put_u32(q, ext ? BLOB_VERSION_EXT : BLOB_VERSION); q += 4;
    put_u32(q, f2u(s->p.temperature)); q += 4;
    put_u32(q, s->p.top_k); q += 4;
    put_u32(q, f2u(s->p.top_p)); q += 4;
    put_u32(q, f2u(s->p.min_p)); q += 4;
    put_u32(q, f2u(s->p.repeat_penalty)); q += 4;
    put_u32(q, s->p.repeat_last_n); q += 4;
    put_u64(q, s->p.seed); q += 8;
    for (int i = 0; i < 4; i++, q += 8) put_u64(q, s->rng[i]);
    put_u32(q, s->n_recent); q += 4;
    uint32_t w = s->p.repeat_last_n;
    for (uint32_t i = 0; i < s->n_recent; i++, q += 4) {
        uint32_t idx = (s->head + w - s->n_recent + i) % w;
        put_u32(q, (uint32_t)s->recent[idx]);
    }
    int rc = sw_buf_append(out, b, len);
    free(b);
    if (rc || !ext) return rc ? SW_ENOMEM : 0;
    uint8_t w4[4];
    put_u32(w4, (s->lp_on ? 1u : 0u) | (s->gs ? 2u : 0u));
    sw_buf_append(out, w4, 4);
    put_u32(w4, s->lp_k);
    sw_buf_append(out, w4, 4);
    put_u32(w4, f2u(s->last.logprob));
    sw_buf_append(out, w4, 4);
    uint32_t nt = s->lp_on ? s->last.n_top : 0;
    put_u32(w4, nt);
    sw_buf_append(out, w4, 4);
    for (uint32_t i = 0; i < nt; i++) {
        put_u32(w4, (uint32_t)s->last.top_id[i]);
        sw_buf_append(out, w4, 4);
        put_u32(w4, f2u(s->last.top_lp[i]));
        sw_buf_append(out, w4, 4);
    }
    if (s->gs) {
        put_u32(w4, (uint32_t)s->gr_len);
        sw_buf_append(out, w4, 4);
        sw_buf_append(out, s->gr_bytes, s->gr_len);
        struct sw_buf st = { 0 };
        sw_gstate_save(s->gs, &st);
        put_u32(w4, (uint32_t)st.len);
        sw_buf_append(out, w4, 4);
        sw_buf_append(out, st.data, st.len);
        sw_buf_free(&st);
    }
    return sw_buf_ok(out) ? 0 : SW_ENOMEM;
}

/* The extension part of a version-2 blob, p[0..len) after the recent tokens. Fills what it
 * finds; s NULL: only the log probabilities into lp_out. */
static int load_ext(const uint8_t *p, size_t len, uint32_t n_vocab, struct sw_sampler *s,
                    struct sw_sampler_logprobs *lp_out)
{
    if (len < 16) return SW_ECORRUPT;
    uint32_t flags = get_u32(p), k = get_u32(p + 4), nt = get_u32(p + 12);
    if (flags & ~3u || k > SW_SAMPLER_MAX_TOP_LOGPROBS || nt > k) return SW_ECORRUPT;
    struct sw_sampler_logprobs lp = { 0 };
    lp.logprob = u2f(get_u32(p + 8));
    lp.n_top = nt;
    size_t at = 16;
    if (len - at < (size_t)nt * 8) return SW_ECORRUPT;
    for (uint32_t i = 0; i < nt; i++, at += 8) {
        lp.top_id[i] = (int32_t)get_u32(p + at);
        lp.top_lp[i] = u2f(get_u32(p + at + 4));
        if (lp.top_id[i] < 0 || (n_vocab && (uint32_t)lp.top_id[i] >= n_vocab)) return SW_ECORRUPT;
    }
    if (lp_out) *lp_out = lp;
    if (s) {
        s->lp_on = flags & 1;
        s->lp_k = k;
        s->last = lp;
    }
    if (!(flags & 2)) return at == len ? 0 : SW_ECORRUPT;
    if (len - at < 4) return SW_ECORRUPT;
    uint32_t gl = get_u32(p + at);
    at += 4;
    if (len - at < (size_t)gl + 4) return SW_ECORRUPT;
    const uint8_t *gp = p + at;
    at += gl;
    uint32_t sl = get_u32(p + at);
    at += 4;
    if (len - at != sl) return SW_ECORRUPT;
    if (!s) return 0;
    int rc = sw_sampler_set_grammar(s, gp, gl);
    if (rc) return rc == SW_ENOMEM ? rc : SW_ECORRUPT;
    struct sw_gstate *st = NULL;
    if ((rc = sw_gstate_load(s->gr, p + at, sl, &st))) return rc == SW_ENOMEM ? rc : SW_ECORRUPT;
    sw_gstate_free(s->gs);
    s->gs = st;
    return 0;
}

int sw_sampler_blob_logprobs(const uint8_t *p, size_t len, struct sw_sampler_logprobs *out)
{
    if (!p || len < BLOB_FIXED || memcmp(p, BLOB_MAGIC, 4)) return SW_ECORRUPT;
    if (get_u32(p + 4) != BLOB_VERSION_EXT) return SW_ENOTFOUND;
    uint32_t n_recent = get_u32(p + BLOB_FIXED - 4);
    if (n_recent > SW_SAMPLER_MAX_WINDOW || len - BLOB_FIXED < (size_t)n_recent * 4) return SW_ECORRUPT;
    size_t at = BLOB_FIXED + (size_t)n_recent * 4;
    if (len - at < 4 || !(get_u32(p + at) & 1)) return SW_ENOTFOUND;
    return load_ext(p + at, len - at, 0, NULL, out);
}

int sw_sampler_load(const uint8_t *p, size_t len, uint32_t n_vocab, struct sw_sampler **out)
{
    *out = NULL;
    if (!p || len < BLOB_FIXED || memcmp(p, BLOB_MAGIC, 4)) return SW_ECORRUPT;
    uint32_t version = get_u32(p + 4);
    if (version != BLOB_VERSION && version != BLOB_VERSION_EXT) return SW_EUNSUPPORTED;
    const uint8_t *q = p + 8;
    struct sw_sampler_params prm;
    prm.temperature = u2f(get_u32(q)); q += 4;
    prm.top_k = get_u32(q); q += 4;
    prm.top_p = u2f(get_u32(q)); q += 4;
    prm.min_p = u2f(get_u32(q)); q += 4;
    prm.repeat_penalty = u2f(get_u32(q)); q += 4;
    prm.repeat_last_n = get_u32(q); q += 4;
    prm.seed = get_u64(q); q += 8;
    uint64_t rng[4];
    for (int i = 0; i < 4; i++, q += 8) rng[i] = get_u64(q);
    uint32_t n_recent = get_u32(q); q += 4;
    if (!params_ok(&prm)) return SW_ECORRUPT;
    if (n_recent > prm.repeat_last_n || (size_t)n_recent * 4 > len - BLOB_FIXED) return SW_ECORRUPT;
    size_t ext_at = BLOB_FIXED + (size_t)n_recent * 4;
    if (version == BLOB_VERSION && ext_at != len) return SW_ECORRUPT;
    if (version == BLOB_VERSION_EXT && ext_at == len) return SW_ECORRUPT;
    if (!(rng[0] | rng[1] | rng[2] | rng[3])) return SW_ECORRUPT; /* xoshiro's one bad state */
    struct sw_sampler *s;
    int rc = sw_sampler_new(&prm, n_vocab, &s);
    if (rc) return rc == SW_EINVAL ? SW_ECORRUPT : rc;
    memcpy(s->rng, rng, sizeof rng);
    for (uint32_t i = 0; i < n_recent; i++, q += 4) remember(s, (int32_t)get_u32(q));
    if (version == BLOB_VERSION_EXT && (rc = load_ext(p + ext_at, len - ext_at, n_vocab, s, NULL))) {
        sw_sampler_free(s);
        return rc;
    }
    *out = s;
    return 0;
}
