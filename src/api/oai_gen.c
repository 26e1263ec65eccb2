/* oai_gen.c — one request's generations: the queue a backend feeds from its own thread
 * (struct sw__gen: a mutex held only for a copy, so the node's loop never waits on a
 * client), opening n choices after the checks against the model, and turning each choice's
 * tokens into text (finish reasons, stop strings, errors mapped to HTTP statuses).
 * Not for: framing responses (openai.c, ollama.c). */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "api/oai_int.h"

#define DEFAULT_COMPLETION_TOKENS 16 /* OpenAI: max_tokens defaults to 16 for /v1/completions */

/* ================================================================ the queue */

uint64_t sw__oai_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void gen_unref_locked(struct sw__gen *g) /* unlocks */
{
    int last = --g->refs == 0;
    pthread_mutex_unlock(&g->mu);
    if (!last) return;
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g->toks);
    free(g->eog);
    free(g->lp);
    free(g);
}

static void ev_token(void *ud, int32_t token, int eog, const struct sw_api_oai_logprob *lp)
{
    struct sw__gen *g = ud;
    pthread_mutex_lock(&g->mu);
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 64;
        int32_t *t = realloc(g->toks, cap * sizeof *t);
        if (t) g->toks = t;
        uint8_t *e = t ? realloc(g->eog, cap) : NULL;
        if (e) g->eog = e;
        struct sw_api_oai_logprob *l = NULL;
        if (e && g->want_lp && (l = realloc(g->lp, cap * sizeof *l))) g->lp = l;
        if (!t || !e || (g->want_lp && !l)) { /* out of memory: the request ends with an error */
            g->rc = SW_ENOMEM;
            snprintf(g->msg, sizeof g->msg, "out of memory");
            pthread_cond_broadcast(&g->cv);
            pthread_mutex_unlock(&g->mu);
            return;
        }
        g->cap = cap;
    }
    g->toks[g->n] = token;
    g->eog[g->n] = eog != 0;
    if (g->want_lp) {
        if (lp) g->lp[g->n] = *lp;
        else memset(&g->lp[g->n], 0, sizeof g->lp[g->n]);
    }
    g->n++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void ev_end(void *ud, int rc, const char *msg)
{
    struct sw__gen *g = ud;
    pthread_mutex_lock(&g->mu);
    g->ended = 1;
    if (!g->rc) g->rc = rc;
    if (msg && !g->msg[0]) snprintf(g->msg, sizeof g->msg, "%s", msg);
    pthread_cond_broadcast(&g->cv);
    gen_unref_locked(g);
}

/* ================================================================ a request's jobs */

static void choice_cancel(struct sw__job *j, struct sw__choice *c)
{
    if (!c->cancelled && c->g) {
        c->cancelled = 1;
        j->o->be.cancel(j->o->be.ud, c->handle);
    }
}

void sw__job_free(struct sw__job *j)
{
    if (!j) return;
    for (uint32_t i = 0; i < j->n_choices; i++) {
        struct sw__choice *c = &j->ch[i];
        if (c->g) {
            pthread_mutex_lock(&c->g->mu);
            int ended = c->g->ended;
            pthread_mutex_unlock(&c->g->mu);
            if (!ended) choice_cancel(j, c);
            pthread_mutex_lock(&c->g->mu);
            gen_unref_locked(c->g);
        }
        sw_api_oai_text_free(&c->text);
        sw_buf_free(&c->out);
        free(c->ids);
        free(c->lps);
    }
    sw_api_oai_req_free(&j->req);
    free(j->prompt_ids);
    free(j);
}

/* A generation that cannot start or failed: 503 swarm_not_ready (a shard with no live loaded
 * node, the node stopping), 429 + Retry-After (every node of a shard refused the session:
 * its session limit or KV memory), 502 route_failed (a route that failed: the message names
 * the shard, the node and what it did), 400 (a request the swarm cannot take), else 500. */
#define BUSY_RETRY_AFTER_S 2u
static int map_status(int rc)
{
    return rc == SW_ESTATE || rc == SW_ENOTFOUND ? 503
           : rc == SW_EBUSY                      ? 429
           : rc == SW_ETIMEDOUT                  ? 502
           : rc == SW_EINVAL || rc == SW_ERANGE  ? 400
                                                 : 500;
}

static const char *map_code(int rc)
{
    int st = map_status(rc);
    return st == 503 ? "swarm_not_ready" : st == 429 ? "swarm_busy" : st == 502 ? "route_failed" : NULL;
}

/* The error of a generation that failed with rc (prefix for the 500s). */
static void gen_err(struct sw_api_oai_error *e, int rc, const char *msg)
{
    int st = map_status(rc);
    sw__oai_err_set(e, st, st == 429 ? "rate_limit_error" : "server_error", map_code(rc), NULL, "%s%s",
                    st == 500 ? "the generation failed: " : "", msg && msg[0] ? msg : sw_strerror(rc));
    if (st == 429) e->retry_after_s = BUSY_RETRY_AFTER_S;
}

static int keep_id(struct sw__choice *c, int32_t id)
{
    if (c->n_ids == c->cap_ids) {
        size_t cap = c->cap_ids ? c->cap_ids * 2 : 64;
        int32_t *p = realloc(c->ids, cap * sizeof *p);
        if (!p) return SW_ENOMEM;
        c->ids = p;
        c->cap_ids = cap;
    }
    c->ids[c->n_ids++] = id;
    return 0;
}

static int keep_lp(struct sw__choice *c, const struct sw_api_oai_logprob *lp)
{
    if (c->n_lps == c->cap_lps) {
        size_t cap = c->cap_lps ? c->cap_lps * 2 : 32;
        struct sw_api_oai_logprob *p = realloc(c->lps, cap * sizeof *p);
        if (!p) return SW_ENOMEM;
        c->lps = p;
        c->cap_lps = cap;
    }
    c->lps[c->n_lps++] = *lp;
    return 0;
}

int sw__job_pump(struct sw__job *j, struct sw__choice *c, struct sw_buf *delta, uint32_t wait_ms,
                 size_t max_tokens)
{
    if (c->finish || c->failed) return 1;
    struct sw__gen *g = c->g;
    enum { TAKE = 64 };
    int32_t toks[TAKE];
    uint8_t eog[TAKE];
    struct sw_api_oai_logprob lps[TAKE];
    size_t n = 0;
    int ended, rc;
    char msg[512];
    pthread_mutex_lock(&g->mu);
    if (g->n == c->taken && !g->ended && !g->rc && wait_ms) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        ts.tv_sec += wait_ms / 1000 + ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    }
    if (!max_tokens || max_tokens > TAKE) max_tokens = TAKE;
    while (c->taken < g->n && n < max_tokens) {
        toks[n] = g->toks[c->taken];
        eog[n] = g->eog[c->taken];
        if (g->want_lp) lps[n] = g->lp[c->taken];
        n++;
        c->taken++;
    }
    int more = c->taken < g->n;
    ended = g->ended && !more;
    rc = g->rc;
    snprintf(msg, sizeof msg, "%s", g->msg);
    int want_lp = g->want_lp;
    pthread_mutex_unlock(&g->mu);
    if (n && !j->t_first_ns) j->t_first_ns = sw__oai_now_ns();
    struct sw_buf piece = { 0 };
    for (size_t i = 0; i < n && !c->finish; i++) {
        c->n_gen++;
        if (keep_id(c, toks[i]) || (want_lp && keep_lp(c, &lps[i]))) rc = SW_ENOMEM;
        piece.len = 0;
        if (!eog[i]) j->o->be.piece(j->o->be.ud, toks[i], &piece);
        int st = sw_api_oai_text_push(&c->text, piece.data, piece.len, delta);
        if (st == 1) {
            c->finish = "stop";
            choice_cancel(j, c); /* a stop string: the rest is not wanted */
        } else if (eog[i]) {
            c->finish = "stop";
        } else if (c->n_gen >= j->max_tokens) {
            c->finish = "length";
        }
    }
    sw_buf_free(&piece);
    if (!c->finish && rc && rc != SW_ECLOSED && (ended || rc == SW_ENOMEM)) {
        c->failed = 1;
        gen_err(&c->err, rc, msg);
        return 1;
    }
    if (!c->finish && ended) {
        if (rc == SW_ECLOSED && !c->cancelled) {
            c->failed = 1;
            sw__oai_err_set(&c->err, 503, "server_error", NULL, NULL, "the generation was stopped: %s",
                            msg[0] ? msg : "the node is stopping");
            return 1;
        }
        /* finished on the backend's side (its limit, or the context) */
        c->finish = "length";
    }
    if (c->finish && strcmp(c->finish, "stop") == 0 && c->text.stopped) return 1;
    if (c->finish) sw_api_oai_text_finish(&c->text, delta);
    return c->finish != NULL;
}

/* Waits on one choice's queue for up to wait_ms (something arrived, or it ended). */
static void choice_wait(struct sw__choice *c, uint32_t wait_ms)
{
    struct sw__gen *g = c->g;
    pthread_mutex_lock(&g->mu);
    if (g->n == c->taken && !g->ended && !g->rc) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)wait_ms * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    }
    pthread_mutex_unlock(&g->mu);
}

int sw__job_wait_first(struct sw__job *j, const struct sw_api_call *call)
{
    for (;;) {
        int any = 0, failed = 1;
        for (uint32_t i = 0; i < j->n_choices; i++) {
            struct sw__gen *g = j->ch[i].g;
            pthread_mutex_lock(&g->mu);
            if (g->n > 0 || g->ended || g->rc) any = 1;
            if (!(g->n == 0 && g->rc && g->rc != SW_ECLOSED)) failed = 0;
            pthread_mutex_unlock(&g->mu);
        }
        if (any) return failed ? 2 : 0;
        if (sw_api_call_gone(call)) return 1;
        choice_wait(&j->ch[0], SW__OAI_WAIT_STEP_MS);
    }
}

int sw__job_wait_all(struct sw__job *j, const struct sw_api_call *call)
{
    for (uint32_t i = 0; i < j->n_choices; i++) {
        struct sw__choice *c = &j->ch[i];
        while (!sw__job_pump(j, c, &c->out, SW__OAI_WAIT_STEP_MS, 0))
            if (sw_api_call_gone(call)) return 1;
    }
    j->t_end_ns = sw__oai_now_ns();
    return 0;
}

const struct sw_api_oai_error *sw__job_failed(const struct sw__job *j)
{
    for (uint32_t i = 0; i < j->n_choices; i++)
        if (j->ch[i].failed) return &j->ch[i].err;
    return NULL;
}

static int model_check(struct sw__job *j, struct sw_api_oai_model *m, struct sw_api_oai_error *e)
{
    char msg[512] = "";
    memset(m, 0, sizeof *m);
    int rc = j->o->be.model(j->o->be.ud, m, msg, sizeof msg);
    if (rc) return sw__oai_err_set(e, 503, "server_error", "model_not_ready", NULL, "%s", msg[0] ? msg : sw_strerror(rc));
    return 0;
}

/* Ollama names a model "name:tag"; "name" and "name:latest" are the same model. */
static int same_model(const char *asked, const char *id, int ollama)
{
    if (!strcmp(asked, id)) return 1;
    if (!ollama) return 0;
    size_t n = strlen(id);
    return !strncmp(asked, id, n) && !strcmp(asked + n, ":latest");
}

int sw__job_begin(struct sw__job *j, struct sw_api_oai_error *e)
{
    struct sw__oai *o = j->o;
    j->t_start_ns = sw__oai_now_ns();
    struct sw_api_oai_model m;
    int rc = model_check(j, &m, e);
    if (rc) return rc;
    if (j->req.model && j->req.model[0] && !same_model(j->req.model, m.id, j->ollama)) {
        if (j->ollama) return sw__oai_err_set(e, 404, "not_found", NULL, "model", "model '%.100s' not found", j->req.model);
        return sw__oai_err_set(e, 404, "invalid_request_error", "model_not_found", "model",
                               "The model '%.100s' does not exist: this node serves '%s' (GET /v1/models)", j->req.model,
                               m.id);
    }
    snprintf(j->model, sizeof j->model, "%s", m.id);
    char msg[600] = "";
    if ((rc = o->be.ready(o->be.ud, msg, sizeof msg)))
        return sw__oai_err_set(e, 503, "server_error", "swarm_not_ready", NULL, "%s", msg[0] ? msg : sw_strerror(rc));
    /* the prompt's ids */
    int32_t *ids = NULL;
    size_t n = 0;
    const char *what = j->req.chat ? "messages" : "prompt";
    int tool_msgs = 0;
    for (size_t i = 0; i < j->req.n_msgs; i++) tool_msgs |= !strcmp(j->req.msgs[i].role, "tool") || j->req.msgs[i].tool_calls;
    j->tools_on = j->req.chat && j->req.tools && j->req.tool_choice != SW_API_TOOLS_NONE;
    j->tool_family = sw__tools_family(m.chat_template);
    if (j->tools_on && (j->req.tool_choice == SW_API_TOOLS_REQUIRED || j->req.tool_choice == SW_API_TOOLS_NAMED)) {
        if (j->req.grammar)
            return SW__BAD(e, "response_format", "'response_format' with a 'tool_choice' that forces a call is not supported");
        if ((rc = sw__tools_grammar(&j->req, j->tool_family, &j->req.grammar, &j->req.grammar_len, e))) return rc;
    }
    if (j->req.chat) {
        struct sw_buf p = { 0 };
        const char *const *tstops = NULL;
        char tmpl[64] = "";
        struct sw__msgs tm = { 0 };
        if (j->tools_on || tool_msgs) { /* definitions, calls and results in the template's own way */
            rc = sw__tools_render(&j->req, j->tool_family, &tm);
            if (!rc) rc = o->be.chat(o->be.ud, tm.m, tm.n, &p, &tstops, tmpl, sizeof tmpl);
        } else {
            rc = o->be.chat(o->be.ud, j->req.msgs, j->req.n_msgs, &p, &tstops, tmpl, sizeof tmpl);
        }
        sw__msgs_free(&tm);
        if (!rc) rc = o->be.tokenize(o->be.ud, p.data ? (const char *)p.data : "", p.len, &ids, &n);
        sw_buf_free(&p);
        for (size_t i = 0; !rc && tstops && tstops[i] && j->n_stops < SW_API_OAI_MAX_STOP + 8; i++)
            j->stops[j->n_stops++] = tstops[i];
    } else if (j->req.prompt) {
        rc = o->be.tokenize(o->be.ud, j->req.prompt, j->req.prompt_len, &ids, &n);
    }
    if (!rc && j->req.n_prompt_ids) { /* token ids given (completions), or Ollama's context before the prompt */
        size_t k = j->req.n_prompt_ids;
        /* Ollama's context already starts with the BOS the new text's ids start with: once */
        size_t skip = j->ollama && n && k && ids[0] == j->req.prompt_ids[0] ? 1 : 0;
        n -= skip;
        int32_t *all = malloc((n + k) * sizeof *all);
        if (!all) {
            rc = SW_ENOMEM;
        } else {
            memcpy(all, j->req.prompt_ids, k * sizeof *all);
            if (n) memcpy(all + k, ids + skip, n * sizeof *all);
            free(ids);
            ids = all;
            n += k;
        }
        for (size_t i = 0; !rc && i < k; i++)
            if ((uint32_t)ids[i] >= m.n_vocab) {
                free(ids);
                return SW__BAD(e, j->ollama ? "context" : "prompt", "token id %d is outside the vocabulary (%u tokens)",
                               (int)j->req.prompt_ids[i], m.n_vocab);
            }
    }
    if (rc) {
        free(ids);
        if (rc == SW_ESTATE) return sw__oai_err_set(e, 503, "server_error", "swarm_not_ready", NULL, "no tokenizer yet");
        return sw__oai_err_set(e, map_status(rc), "server_error", NULL, what, "cannot tokenize the %s: %s", what,
                               sw_strerror(rc));
    }
    if (!n) {
        free(ids);
        return SW__BAD(e, what, "the %s is empty after tokenization", what);
    }
    j->n_prompt = n;
    j->prompt_ids = ids;
    if (n >= m.n_ctx && j->tools_on) { /* name the tools when they are what does not fit */
        struct sw_buf tb = { 0 };
        int32_t *tids = NULL;
        size_t tn = 0;
        if (!sw__tools_block(&j->req, j->tool_family, &tb)) o->be.tokenize(o->be.ud, sw_buf_cstr(&tb) ? sw_buf_cstr(&tb) : "", tb.len, &tids, &tn);
        sw_buf_free(&tb);
        free(tids);
        return sw__oai_err_set(e, 400, "invalid_request_error", "context_length_exceeded", "tools",
                               "This model's maximum context length is %u tokens; the tool definitions take %zu of the "
                               "%zu the messages need with them",
                               m.n_ctx, tn, n);
    }
    if (n >= m.n_ctx)
        return sw__oai_err_set(e, 400, "invalid_request_error", "context_length_exceeded", what,
                               "This model's maximum context length is %u tokens; the %s has %zu", m.n_ctx, what, n);
    uint32_t room = m.n_ctx - (uint32_t)n;
    if (j->req.max_tokens) {
        if (j->req.max_tokens > room) {
            if (j->ollama) { /* Ollama's num_predict is a limit, not a promise */
                j->max_tokens = room;
            } else {
                return sw__oai_err_set(e, 400, "invalid_request_error", "context_length_exceeded", "max_tokens",
                                       "This model's maximum context length is %u tokens; you requested %zu (%zu in "
                                       "the %s, %u for the completion)",
                                       m.n_ctx, n + j->req.max_tokens, n, what, j->req.max_tokens);
            }
        } else {
            j->max_tokens = j->req.max_tokens;
        }
    } else {
        j->max_tokens = j->req.chat || j->ollama ? room : SW_MIN(room, (uint32_t)DEFAULT_COMPLETION_TOKENS);
    }
    if (!j->req.seed_set) sw_random_bytes(&j->req.sp.seed, sizeof j->req.sp.seed);
    for (size_t i = 0; i < j->req.n_stop; i++) j->stops[j->n_stops++] = j->req.stop[i];
    j->req.sp.logprobs = j->req.logprobs;
    j->req.sp.top_logprobs = j->req.top_logprobs;
    j->req.sp.grammar = j->req.grammar;
    j->req.sp.grammar_len = j->req.grammar_len;
    /* n choices, each its own generation; seeds seed, seed+1, ... (deterministic with a seed) */
    j->n_choices = j->req.n ? SW_MIN(j->req.n, SW_API_OAI_MAX_N) : 1;
    for (uint32_t i = 0; i < j->n_choices; i++) sw_api_oai_text_init(&j->ch[i].text, j->stops, j->n_stops);
    for (uint32_t i = 0; i < j->n_choices; i++) {
        struct sw__choice *c = &j->ch[i];
        struct sw__gen *g = calloc(1, sizeof *g);
        if (!g) return sw__oai_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
        pthread_mutex_init(&g->mu, NULL);
        pthread_cond_init(&g->cv, NULL);
        g->refs = 2;
        g->want_lp = j->req.logprobs;
        struct sw_api_oai_events ev = { ev_token, ev_end, g };
        struct sw_api_oai_sampling sp = j->req.sp;
        sp.seed += i;
        msg[0] = 0;
        rc = o->be.open(o->be.ud, ids, n, j->max_tokens, j->req.chat, &sp, &ev, &c->handle, msg, sizeof msg);
        if (rc) {
            pthread_mutex_destroy(&g->mu);
            pthread_cond_destroy(&g->cv);
            free(g);
            gen_err(e, rc, msg);
            return SW_EINVAL; /* the choices opened before are cancelled by sw__job_free */
        }
        c->g = g;
    }
    uint8_t rnd[12];
    sw_random_bytes(rnd, sizeof rnd);
    char hex[25];
    sw_hex_encode(rnd, sizeof rnd, hex);
    snprintf(j->id, sizeof j->id, "%s-%s", j->req.chat ? "chatcmpl" : "cmpl", hex);
    j->created = (int64_t)time(NULL);
    return 0;
}

json_t *sw__oai_jstr(const struct sw_buf *b)
{
    struct sw_buf s = { 0 };
    sw_api_utf8_sanitize(b->data, b->len, &s); /* already valid: a guard for jansson */
    json_t *v = json_stringn(s.data ? (const char *)s.data : "", s.len);
    sw_buf_free(&s);
    return v;
}
