/* openai.c — the OpenAI-compatible endpoints: GET /v1/models, POST /v1/completions and
 * POST /v1/chat/completions (with Server-Sent Events streaming), per the OpenAI API
 * reference. Requests are parsed in oai_parse.c, generations run in oai_gen.c, text is made
 * in oai_text.c; here the responses (choices, log probabilities, tool calls) are framed; the model runs
 * behind struct sw_api_oai_backend (the node's: src/cli/node_openai.c).
 * Threads: handlers run on the API's connection threads; a backend reports tokens from its
 * own thread (the node's loop) into a small per-choice queue (struct sw__gen) that only ever
 * holds a mutex for a copy, so the loop never waits on a client (oai_gen.c).
 * Not for: tokenizing or sampling (the backend), HTTP plumbing (api.c). */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "api/oai_int.h"

/* ---------------------------------------------------------------- JSON out */

static json_t *usage_obj(const struct sw__job *j)
{
    size_t n_gen = 0;
    for (uint32_t i = 0; i < j->n_choices; i++) n_gen += j->ch[i].n_gen;
    return json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)j->n_prompt, "completion_tokens",
                     (json_int_t)n_gen, "total_tokens", (json_int_t)(j->n_prompt + n_gen));
}

static json_t *head_obj(const struct sw__job *j, const char *object)
{
    return json_pack("{s:s,s:s,s:I,s:s}", "id", j->id, "object", object, "created", (json_int_t)j->created, "model",
                     j->model);
}

/* A token's text for log probabilities: its bytes (a piece may be part of a character),
 * and the text as valid UTF-8. */
static void token_text(struct sw__job *j, int32_t id, struct sw_buf *raw, json_t **str, json_t **bytes)
{
    raw->len = 0;
    j->o->be.piece(j->o->be.ud, id, raw);
    *str = sw__oai_jstr(raw);
    if (bytes) {
        *bytes = json_array();
        for (size_t i = 0; i < raw->len; i++) json_array_append_new(*bytes, json_integer(raw->data[i]));
    }
}

/* Log probabilities of the choice's tokens [from, to): chat ({"content":[...],"refusal":null}) or
 * completions ({"tokens","token_logprobs","top_logprobs","text_offset"}). *offset: the text
 * offset of token `from` (completions). */
static json_t *logprobs_obj(struct sw__job *j, struct sw__choice *c, size_t from, size_t to, size_t *offset)
{
    struct sw_buf raw = { 0 };
    json_t *o;
    if (j->req.chat) {
        json_t *content = json_array();
        for (size_t i = from; i < to && i < c->n_lps; i++) {
            const struct sw_api_oai_logprob *lp = &c->lps[i];
            json_t *t, *b;
            token_text(j, c->ids[i], &raw, &t, &b);
            json_t *top = json_array();
            for (uint32_t k = 0; k < lp->n_top && k < j->req.top_logprobs; k++) {
                json_t *tt, *tb;
                token_text(j, lp->top_id[k], &raw, &tt, &tb);
                json_array_append_new(top, json_pack("{s:o,s:f,s:o}", "token", tt, "logprob", (double)lp->top_lp[k],
                                                     "bytes", tb));
            }
            json_array_append_new(content, json_pack("{s:o,s:f,s:o,s:o}", "token", t, "logprob", (double)lp->logprob,
                                                     "bytes", b, "top_logprobs", top));
        }
        o = json_pack("{s:o,s:n}", "content", content, "refusal");
    } else {
        json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
        for (size_t i = from; i < to && i < c->n_lps; i++) {
            const struct sw_api_oai_logprob *lp = &c->lps[i];
            json_t *t;
            token_text(j, c->ids[i], &raw, &t, NULL);
            json_array_append_new(toks, t);
            json_array_append_new(lps, json_real(lp->logprob));
            json_array_append_new(offs, json_integer((json_int_t)*offset));
            *offset += raw.len;
            json_t *top = json_object();
            for (uint32_t k = 0; k < lp->n_top && k < j->req.top_logprobs; k++) {
                json_t *tt;
                token_text(j, lp->top_id[k], &raw, &tt, NULL);
                json_object_set_new(top, json_string_value(tt), json_real(lp->top_lp[k]));
                json_decref(tt);
            }
            json_array_append_new(tops, top);
        }
        o = json_pack("{s:o,s:o,s:o,s:o}", "tokens", toks, "token_logprobs", lps, "top_logprobs", tops, "text_offset",
                      offs);
    }
    sw_buf_free(&raw);
    return o;
}

static char *whole_response(struct sw__job *j)
{
    json_t *o = head_obj(j, j->req.chat ? "chat.completion" : "text_completion");
    json_t *choices = json_array();
    for (uint32_t i = 0; i < j->n_choices; i++) {
        struct sw__choice *c = &j->ch[i];
        size_t off = 0;
        json_t *lp = j->req.logprobs ? logprobs_obj(j, c, 0, c->n_lps, &off) : json_null();
        json_t *choice;
        size_t content_len = c->out.len;
        json_t *calls = j->tools_on ? sw__tools_extract(&j->req, j->tool_family, (const char *)c->out.data, c->out.len,
                                                         &content_len)
                                    : NULL;
        if (calls) { /* the answer is tool calls (with the text before them as content) */
            struct sw_buf head = { 0 };
            sw_buf_append(&head, c->out.data, content_len);
            choice = json_pack("{s:i,s:{s:s,s:o,s:n,s:o},s:o,s:s}", "index", (int)i, "message", "role", "assistant",
                               "content", content_len ? sw__oai_jstr(&head) : json_null(), "refusal", "tool_calls",
                               calls, "logprobs", lp, "finish_reason", "tool_calls");
            sw_buf_free(&head);
        } else if (j->req.chat)
            choice = json_pack("{s:i,s:{s:s,s:o,s:n},s:o,s:s}", "index", (int)i, "message", "role", "assistant",
                               "content", sw__oai_jstr(&c->out), "refusal", "logprobs", lp, "finish_reason", c->finish);
        else
            choice = json_pack("{s:o,s:i,s:o,s:s}", "text", sw__oai_jstr(&c->out), "index", (int)i, "logprobs", lp,
                               "finish_reason", c->finish);
        json_array_append_new(choices, choice);
    }
    json_object_set_new(o, "choices", choices);
    json_object_set_new(o, "usage", usage_obj(j));
    if (j->req.chat) json_object_set_new(o, "system_fingerprint", json_null());
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* One chunk of choice i: text (may be NULL), log probabilities (may be NULL) and/or a finish
 * reason; role for the chat's first. */
static void sse_chunk(struct sw__job *j, uint32_t i, struct sw_buf *out, const struct sw_buf *text, json_t *lp,
                      const char *finish, int role)
{
    json_t *o = head_obj(j, j->req.chat ? "chat.completion.chunk" : "text_completion");
    json_t *choice;
    if (j->req.chat) {
        json_t *delta = json_object();
        if (role) json_object_set_new(delta, "role", json_string("assistant"));
        if (role || text) json_object_set_new(delta, "content", text ? sw__oai_jstr(text) : json_string(""));
        choice = json_pack("{s:i,s:o,s:o,s:o}", "index", (int)i, "delta", delta, "logprobs", lp ? lp : json_null(),
                           "finish_reason", finish ? json_string(finish) : json_null());
        json_object_set_new(o, "system_fingerprint", json_null());
    } else {
        struct sw_buf empty = { 0 };
        choice = json_pack("{s:o,s:i,s:o,s:o}", "text", sw__oai_jstr(text ? text : &empty), "index", (int)i,
                           "logprobs", lp ? lp : json_null(), "finish_reason",
                           finish ? json_string(finish) : json_null());
    }
    json_object_set_new(o, "choices", json_pack("[o]", choice));
    /* with include_usage every chunk carries "usage": null, the last one the counts */
    if (j->req.include_usage) json_object_set_new(o, "usage", json_null());
    char *s = json_dumps(o, JSON_COMPACT);
    if (s) sw_api_sse_data(out, s, strlen(s));
    free(s);
    json_decref(o);
}

/* A chunk with the choice's tool calls, whole (OpenAI streams may split arguments; one
 * piece is a valid split). */
static void tool_chunk(struct sw__job *j, uint32_t i, struct sw_buf *out, json_t *calls)
{
    json_t *o = head_obj(j, "chat.completion.chunk");
    json_t *tc = json_array();
    for (size_t k = 0; k < json_array_size(calls); k++) {
        json_t *c = json_deep_copy(json_array_get(calls, k));
        json_object_set_new(c, "index", json_integer((json_int_t)k));
        json_array_append_new(tc, c);
    }
    json_t *choice = json_pack("{s:i,s:{s:o},s:n,s:n}", "index", (int)i, "delta", "tool_calls", tc, "logprobs",
                               "finish_reason");
    json_object_set_new(o, "choices", json_pack("[o]", choice));
    json_object_set_new(o, "system_fingerprint", json_null());
    if (j->req.include_usage) json_object_set_new(o, "usage", json_null());
    char *s = json_dumps(o, JSON_COMPACT);
    if (s) sw_api_sse_data(out, s, strlen(s));
    free(s);
    json_decref(o);
}

static void sse_tail(struct sw__job *j, struct sw_buf *out)
{
    const struct sw_api_oai_error *err = sw__job_failed(j);
    if (err) {
        struct sw_api_response r = { 0 };
        sw_api_oai_error_resp(err, &r);
        if (r.body) sw_api_sse_data(out, r.body, strlen(r.body));
        free(r.body);
    } else if (j->req.include_usage) {
        json_t *o = head_obj(j, j->req.chat ? "chat.completion.chunk" : "text_completion");
        json_object_set_new(o, "choices", json_array());
        json_object_set_new(o, "usage", usage_obj(j));
        char *s = json_dumps(o, JSON_COMPACT);
        if (s) sw_api_sse_data(out, s, strlen(s));
        free(s);
        json_decref(o);
    }
    sw_buf_append(out, "data: [DONE]\n\n", 14);
    j->tail_sent = 1;
}

/* sw_api_stream.read, on the connection's thread: each choice's new text in turn (choices
 * interleave, each chunk names its index), then the tail once all are done. */
static int stream_read(void *ud, struct sw_buf *out, uint32_t wait_ms)
{
    struct sw__job *j = ud;
    if (j->tail_sent) return 1;
    if (j->req.chat && !j->role_sent) {
        j->role_sent = 1;
        for (uint32_t i = 0; i < j->n_choices; i++) sse_chunk(j, i, out, NULL, NULL, NULL, 1);
        return 0;
    }
    int all_done = 1, failed = 0;
    uint32_t per = j->n_choices > 1 ? wait_ms / j->n_choices + 1 : wait_ms;
    for (uint32_t i = 0; i < j->n_choices; i++) {
        struct sw__choice *c = &j->ch[i];
        if (c->done_sent) continue;
        struct sw_buf delta = { 0 };
        int fin = sw__job_pump(j, c, &delta, per, 1);
        if (j->tools_on && !c->failed) { /* text that may begin a tool call waits */
            sw_buf_append(&c->out, delta.data, delta.len);
            delta.len = 0;
            size_t safe = c->sent; /* a call has begun: nothing more until the end */
            if (!c->tool_held) {
                int held = 0;
                safe = sw__tools_safe(j->tool_family, (const char *)c->out.data, c->out.len, &held);
                c->tool_held = held;
            }
            if (fin) {
                size_t content_len = c->out.len;
                json_t *calls = sw__tools_extract(&j->req, j->tool_family, (const char *)c->out.data, c->out.len,
                                                  &content_len);
                if (calls) {
                    if (content_len > c->sent) sw_buf_append(&delta, c->out.data + c->sent, content_len - c->sent);
                    if (delta.len) sse_chunk(j, i, out, &delta, NULL, NULL, 0);
                    delta.len = 0;
                    tool_chunk(j, i, out, calls);
                    c->finish = "tool_calls";
                    c->sent = c->out.len;
                    json_decref(calls);
                } else {
                    safe = c->out.len;
                }
            }
            if (safe > c->sent && !(fin && c->finish && !strcmp(c->finish, "tool_calls"))) {
                sw_buf_append(&delta, c->out.data + c->sent, safe - c->sent);
                c->sent = safe;
            }
        }
        json_t *lp = NULL;
        if (j->req.logprobs && c->n_lps > c->lps_sent) {
            size_t off = 0; /* a stream's completions text_offset counts from the chunk */
            lp = logprobs_obj(j, c, c->lps_sent, c->n_lps, &off);
            c->lps_sent = c->n_lps;
        }
        if (delta.len || lp) sse_chunk(j, i, out, &delta, lp, NULL, 0);
        sw_buf_free(&delta);
        if (fin && c->failed) failed = 1;
        if (fin && !c->failed) {
            sse_chunk(j, i, out, NULL, NULL, c->finish, 0);
            c->done_sent = 1;
        }
        if (!fin) all_done = 0;
    }
    if (failed) { /* one choice failed: the others are not wanted any more */
        sse_tail(j, out);
        return 1;
    }
    if (all_done) {
        j->t_end_ns = sw__oai_now_ns();
        sse_tail(j, out);
        return 1;
    }
    return sw_buf_ok(out) ? 0 : SW_ENOMEM;
}

static void stream_done(void *ud, int completed)
{
    (void)completed;
    sw__job_free(ud); /* cancels a generation still running (the client left) */
}

/* ---------------------------------------------------------------- handlers */

static int model_of(struct sw__oai *o, struct sw_api_oai_model *m, struct sw_api_oai_error *e)
{
    char msg[512] = "";
    memset(m, 0, sizeof *m);
    int rc = o->be.model(o->be.ud, m, msg, sizeof msg);
    if (rc) return sw__oai_err_set(e, 503, "server_error", "model_not_ready", NULL, "%s", msg[0] ? msg : sw_strerror(rc));
    return 0;
}
static void h_models(void *ud, const struct sw_api_request *req, struct sw_api_response *resp)
{
    (void)req;
    struct sw__oai *o = ud;
    struct sw_api_oai_model m;
    struct sw_api_oai_error e = { 0 };
    if (model_of(o, &m, &e)) {
        sw_api_oai_error_resp(&e, resp);
        return;
    }
    json_t *r = json_pack("{s:s,s:[{s:s,s:s,s:I,s:s}]}", "object", "list", "data", "id", m.id, "object", "model",
                          "created", (json_int_t)m.created, "owned_by", "shardswarm");
    resp->body = r ? json_dumps(r, JSON_COMPACT) : NULL;
    json_decref(r);
    if (!resp->body) sw_api_error(resp, 500, "out of memory");
}

/* GET /v1/models/{model}: the model object, or 404 model_not_found naming what this node
 * serves. */
static void h_model_one(void *ud, const struct sw_api_request *req, struct sw_api_response *resp)
{
    struct sw__oai *o = ud;
    const char *id = req->path + strlen("/v1/models/");
    struct sw_api_oai_model m;
    struct sw_api_oai_error e = { 0 };
    if (model_of(o, &m, &e)) {
        sw_api_oai_error_resp(&e, resp);
        return;
    }
    if (strcmp(id, m.id)) {
        sw__oai_err_set(&e, 404, "invalid_request_error", "model_not_found", "model",
                "The model '%.100s' does not exist: this node serves '%s'", id, m.id);
        sw_api_oai_error_resp(&e, resp);
        return;
    }
    json_t *r = json_pack("{s:s,s:s,s:I,s:s}", "id", m.id, "object", "model", "created", (json_int_t)m.created,
                          "owned_by", "shardswarm");
    resp->body = r ? json_dumps(r, JSON_COMPACT) : NULL;
    json_decref(r);
    if (!resp->body) sw_api_error(resp, 500, "out of memory");
}

static void h_generate(struct sw__oai *o, int chat, const struct sw_api_request *req, struct sw_api_response *resp)
{
    struct sw__job *j = calloc(1, sizeof *j);
    struct sw_api_oai_error e = { 0 };
    if (!j) {
        sw_api_error(resp, 500, "out of memory");
        return;
    }
    j->o = o;
    if (sw_api_oai_parse(chat, req->body, req->body_len, &j->req, &e) || sw__job_begin(j, &e)) {
        sw_api_oai_error_resp(&e, resp);
        sw__job_free(j);
        return;
    }
    if (j->req.stream) {
        /* wait for the first token (or the end) so that a failed open is an HTTP error */
        int w = sw__job_wait_first(j, req->call);
        if (w == 1) {
            sw__job_free(j);
            sw_api_error(resp, 503, "the client left");
            return;
        }
        if (w == 0) {
            resp->status = 200;
            resp->content_type = "text/event-stream";
            resp->stream = (struct sw_api_stream){ stream_read, stream_done, j };
            return;
        }
    }
    /* whole response (or a stream whose generation failed before its first token) */
    if (sw__job_wait_all(j, req->call)) {
        sw__job_free(j); /* cancels */
        sw_api_error(resp, 503, "the client left");
        return;
    }
    const struct sw_api_oai_error *err = sw__job_failed(j);
    if (err) {
        sw_api_oai_error_resp(err, resp);
    } else {
        resp->body = whole_response(j);
        if (!resp->body) sw_api_error(resp, 500, "out of memory");
    }
    sw__job_free(j);
}

static void h_completions(void *ud, const struct sw_api_request *req, struct sw_api_response *resp)
{
    h_generate(ud, 0, req, resp);
}

static void h_chat(void *ud, const struct sw_api_request *req, struct sw_api_response *resp)
{
    h_generate(ud, 1, req, resp);
}

static void oai_free(void *ud) { free(ud); }

int sw__ollama_routes(struct sw_api *a, struct sw__oai *o); /* ollama.c */

int sw_api_openai_attach(struct sw_api *a, const struct sw_api_oai_backend *be)
{
    if (!a || !be || !be->model || !be->ready || !be->tokenize || !be->piece || !be->chat || !be->open || !be->cancel)
        return SW_EINVAL;
    struct sw__oai *o = calloc(1, sizeof *o);
    if (!o) return SW_ENOMEM;
    o->be = *be;
    int rc = sw_api_on_free(a, oai_free, o);
    if (rc) {
        free(o);
        return rc;
    }
    if ((rc = sw_api_route(a, "GET", "/v1/models", h_models, o)) ||
        (rc = sw_api_route_prefix(a, "GET", "/v1/models/", h_model_one, o)) ||
        (rc = sw_api_route_stream(a, "POST", "/v1/completions", SW_API_OAI_MAX_BODY, h_completions, o)) ||
        (rc = sw_api_route_stream(a, "POST", "/v1/chat/completions", SW_API_OAI_MAX_BODY, h_chat, o)) ||
        (rc = sw__ollama_routes(a, o)))
        return rc;
    return 0;
}

