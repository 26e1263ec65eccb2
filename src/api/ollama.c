/* ollama.c — the Ollama-compatible endpoints on the same port as the OpenAI ones (Ollama's
 * API documentation, docs/api.md): GET /api/tags, GET /api/version, POST /api/show,
 * POST /api/generate and POST /api/chat, streamed as NDJSON (one JSON object a line, the
 * default) or whole with "stream": false. Requests become the same parsed request as the
 * /v1 routes (struct sw_api_oai_req) and run through the same jobs (oai_gen.c), so text,
 * stop strings and errors behave alike; only the framing and Ollama's defaults differ.
 * Not for: model management (pull, push, create, copy, delete: a swarm's model is its
 * torrent), embeddings, images. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "api/oai_int.h"

/* The Ollama API version these routes follow (GET /api/version): clients compare it to
 * enable features; every route and field named in docs/api.md is served as that version
 * documents it. */
#define OLLAMA_COMPAT_VERSION "0.6.0"
#define MAX_CONTEXT_IDS (1u << 20)
#define OLLAMA_GENERATE 1 /* struct sw__job.ollama: which route */
#define OLLAMA_CHAT 2

/* ---------------------------------------------------------------- helpers */

static int is_null(const json_t *v) { return !v || json_is_null(v); }

/* Ollama's errors: {"error": "..."} with the status. */
static void ollama_error(struct sw_api_response *resp, const struct sw_api_oai_error *e)
{
    struct sw_buf m = { 0 };
    sw_api_utf8_sanitize(e->message, strlen(e->message), &m);
    json_t *o = json_pack("{s:s%}", "error", m.data ? (const char *)m.data : "", m.len);
    sw_buf_free(&m);
    free(resp->body);
    resp->status = e->status ? e->status : 500;
    resp->retry_after_s = e->retry_after_s;
    resp->content_type = "application/json";
    resp->body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    resp->body_len = 0;
    json_decref(o);
}

/* RFC 3339 UTC with nanoseconds, as Ollama writes created_at. */
static void rfc3339_now(char *out, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char d[32];
    strftime(d, sizeof d, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%09ldZ", d, ts.tv_nsec);
}

static void rfc3339_of(int64_t unix_s, char *out, size_t cap)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int model_of(struct sw__oai *o, struct sw_api_oai_model *m, struct sw_api_oai_error *e)
{
    char msg[512] = "";
    memset(m, 0, sizeof *m);
    int rc = o->be.model(o->be.ud, m, msg, sizeof msg);
    if (rc) return sw__oai_err_set(e, 503, "server_error", NULL, NULL, "%s", msg[0] ? msg : sw_strerror(rc));
    return 0;
}

/* Ollama's model names are "name:tag"; ours gets ":latest" unless it has a tag. */
static void ollama_name(const struct sw_api_oai_model *m, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s", m->id, strchr(m->id, ':') ? "" : ":latest");
}

static json_t *details_obj(const struct sw_api_oai_model *m)
{
    const char *family = m->arch[0] ? m->arch : "unknown";
    return json_pack("{s:s,s:s,s:s,s:[s],s:s,s:s}", "parent_model", "", "format", "gguf", "family", family, "families",
                     family, "parameter_size", m->size_label, "quantization_level", m->quant);
}

static void set_json(struct sw_api_response *resp, json_t *o)
{
    resp->body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!resp->body) sw_api_error(resp, 500, "out of memory");
}

/* ---------------------------------------------------------------- GET routes */

static void h_version(void *ud, const struct sw_api_request *req, struct sw_api_response *resp)
{
    (void)ud;
    (void)req;
    set_json(resp, json_pack("{s:s}", "version", OLLAMA_COMPAT_VERSION));
}

static void h_tags(void *ud, const struct sw_api_request *req, struct sw_api_response *resp)
{
    (void)req;
    struct sw_api_oai_model m;
    struct sw_api_oai_error e = { 0 };
    if (model_of(ud, &m, &e)) {
        ollama_error(resp, &e);
        return;
    }
    char name[160], when[40];
    ollama_name(&m, name, sizeof name);
    rfc3339_of(m.created, when, sizeof when);
    set_json(resp, json_pack("{s:[{s:s,s:s,s:s,s:I,s:s,s:o}]}", "models", "name", name, "model", name, "modified_at",
                             when, "size", (json_int_t)m.size_bytes, "digest", m.digest, "details", details_obj(&m)));
}

/* POST /api/show {"model": NAME} (older clients: "name"). */
static void h_show(void *ud, const struct sw_api_request *req, struct sw_api_response *resp)
{
    struct sw_api_oai_error e = { 0 };
    json_t *o = NULL;
    if (sw__oai_json_load(req->body, req->body_len, &o, &e)) {
        ollama_error(resp, &e);
        return;
    }
    json_t *v = json_object_get(o, "model");
    if (is_null(v)) v = json_object_get(o, "name");
    struct sw_api_oai_model m;
    if (!json_is_string(v)) {
        SW__BAD(&e, "model", "'model' must be a string");
    } else if (!model_of(ud, &m, &e)) {
        char name[160];
        ollama_name(&m, name, sizeof name);
        const char *asked = json_string_value(v);
        if (strcmp(asked, m.id) && strcmp(asked, name)) {
            sw__oai_err_set(&e, 404, "not_found", NULL, "model", "model '%.100s' not found", asked);
        } else {
            char when[40], params[128], info_key[64], ctx_key[64], emb_key[64];
            rfc3339_of(m.created, when, sizeof when);
            snprintf(params, sizeof params, "num_ctx %u", m.n_ctx);
            const char *arch = m.arch[0] ? m.arch : "unknown";
            snprintf(info_key, sizeof info_key, "%s.block_count", arch);
            snprintf(ctx_key, sizeof ctx_key, "%s.context_length", arch);
            snprintf(emb_key, sizeof emb_key, "%s.embedding_length", arch);
            json_t *info = json_pack("{s:s,s:I,s:I,s:I}", "general.architecture", arch, info_key,
                                     (json_int_t)m.n_layers, ctx_key, (json_int_t)m.n_ctx, emb_key,
                                     (json_int_t)m.n_embd);
            char modelfile[256];
            snprintf(modelfile, sizeof modelfile, "# served by a shardswarm swarm\nFROM %s\nPARAMETER num_ctx %u\n", m.id,
                     m.n_ctx);
            /* template: the family our chat formatting uses (not a Go template: there is none) */
            json_decref(o);
            set_json(resp, json_pack("{s:s,s:s,s:s,s:o,s:o,s:[s],s:s}", "modelfile", modelfile, "parameters", params,
                                     "template", m.chat_template, "details", details_obj(&m), "model_info", info,
                                     "capabilities", "completion", "modified_at", when));
            return;
        }
    }
    json_decref(o);
    ollama_error(resp, &e);
}

/* ---------------------------------------------------------------- requests */

/* options{}: Ollama's names and defaults (temperature 0.8, top_k 40, top_p 0.9,
 * repeat_penalty 1.1, min_p 0; num_predict -1: until the context ends). Options that
 * concern the runtime (num_ctx, num_thread, num_gpu, ...) are accepted and ignored, as
 * Ollama ignores options it does not know. */
static int get_opt_num(json_t *opts, const char *key, double lo, double hi, float *out, struct sw_api_oai_error *e)
{
    json_t *v = json_object_get(opts, key);
    if (is_null(v)) return 0;
    char param[64];
    snprintf(param, sizeof param, "options.%s", key);
    if (!json_is_number(v)) return SW__BAD(e, param, "'%s' must be a number", param);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) return SW__BAD(e, param, "'%s' must be between %g and %g, got %g", param, lo, hi, d);
    *out = (float)d;
    return 0;
}

static int parse_options(json_t *body, struct sw_api_oai_req *r, struct sw_api_oai_error *e)
{
    r->sp.temperature = 0.8f;
    r->sp.top_k = 40;
    r->sp.top_p = 0.9f;
    r->sp.repeat_penalty = 1.1f;
    r->sp.min_p = 0.0f;
    r->n = 1;
    json_t *opts = json_object_get(body, "options");
    if (is_null(opts)) return 0;
    if (!json_is_object(opts)) return SW__BAD(e, "options", "'options' must be an object");
    int rc;
    if ((rc = get_opt_num(opts, "temperature", 0, 100, &r->sp.temperature, e)) ||
        (rc = get_opt_num(opts, "top_p", 0, 1, &r->sp.top_p, e)) ||
        (rc = get_opt_num(opts, "min_p", 0, 1, &r->sp.min_p, e)) ||
        (rc = get_opt_num(opts, "repeat_penalty", 0.01, 100, &r->sp.repeat_penalty, e)))
        return rc;
    json_t *v;
    if (!is_null(v = json_object_get(opts, "top_k"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1 << 24))
            return SW__BAD(e, "options.top_k", "'options.top_k' must be an integer from 0 to %d", 1 << 24);
        r->sp.top_k = (uint32_t)json_integer_value(v);
    }
    if (!is_null(v = json_object_get(opts, "seed"))) {
        if (!json_is_integer(v)) return SW__BAD(e, "options.seed", "'options.seed' must be an integer");
        r->sp.seed = (uint64_t)json_integer_value(v);
        r->seed_set = 1;
    }
    if (!is_null(v = json_object_get(opts, "num_predict"))) {
        if (!json_is_integer(v) || json_integer_value(v) < -2 || json_integer_value(v) > (1 << 20))
            return SW__BAD(e, "options.num_predict", "'options.num_predict' must be an integer (-1: no limit)");
        json_int_t k = json_integer_value(v);
        r->max_tokens = k > 0 ? (uint32_t)k : 0; /* -1, -2: until the context ends */
        if (k == 0) r->max_tokens = UINT32_MAX; /* marked: nothing to generate */
    }
    rc = sw__oai_parse_stop(opts, r, e);
    if (rc && !strcmp(e->param, "stop")) snprintf(e->param, sizeof e->param, "options.stop");
    return rc;
}

/* The fields both routes share; what is refused names itself. */
static int parse_common(json_t *o, struct sw_api_oai_req *r, struct sw_api_oai_error *e)
{
    json_t *v;
    if (!is_null(v = json_object_get(o, "model"))) {
        if (!json_is_string(v)) return SW__BAD(e, "model", "'model' must be a string");
        if (!(r->model = strdup(json_string_value(v)))) return sw__oai_err_set(e, 500, "", NULL, NULL, "out of memory");
    } else {
        return SW__BAD(e, "model", "'model' is required");
    }
    r->stream = 1; /* Ollama streams unless told not to */
    if (!is_null(v = json_object_get(o, "stream"))) {
        if (!json_is_boolean(v)) return SW__BAD(e, "stream", "'stream' must be a boolean");
        r->stream = json_is_true(v);
    }
    int rc = parse_options(o, r, e);
    if (rc) return rc;
    /* format: "json" (any JSON object) or a JSON schema: constrained decoding (schema.c) */
    v = json_object_get(o, "format");
    if (json_is_string(v) && !strcmp(json_string_value(v), "json")) {
        if ((rc = sw__schema_compile(NULL, "format", NULL, NULL, &r->grammar, &r->grammar_len, e))) return rc;
    } else if (json_is_object(v)) {
        if ((rc = sw__schema_compile(v, "format", NULL, NULL, &r->grammar, &r->grammar_len, e))) return rc;
    } else if (!is_null(v) && !(json_is_string(v) && !json_string_length(v))) {
        return SW__BAD(e, "format", "'format' must be \"json\" or a JSON schema");
    }
    v = json_object_get(o, "think");
    if (json_is_true(v)) return SW__BAD(e, "think", "'think' is not supported: no thinking models");
    v = json_object_get(o, "images");
    if (!is_null(v) && !(json_is_array(v) && !json_array_size(v)))
        return SW__BAD(e, "images", "'images' are not supported: no vision models");
    return 0;
}

static int parse_generate(json_t *o, struct sw_api_oai_req *r, int *load_only, struct sw_api_oai_error *e)
{
    int rc = parse_common(o, r, e);
    if (rc) return rc;
    json_t *v;
    if (!is_null(v = json_object_get(o, "suffix")) && !(json_is_string(v) && !json_string_length(v)))
        return SW__BAD(e, "suffix", "'suffix' is not supported (no fill-in-the-middle)");
    if (!is_null(v = json_object_get(o, "template")) && !(json_is_string(v) && !json_string_length(v)))
        return SW__BAD(e, "template", "'template' is not supported: the model's own chat template is used");
    json_t *prompt = json_object_get(o, "prompt");
    if (!is_null(prompt) && !json_is_string(prompt)) return SW__BAD(e, "prompt", "'prompt' must be a string");
    json_t *system = json_object_get(o, "system");
    if (!is_null(system) && !json_is_string(system)) return SW__BAD(e, "system", "'system' must be a string");
    json_t *raw = json_object_get(o, "raw");
    if (!is_null(raw) && !json_is_boolean(raw)) return SW__BAD(e, "raw", "'raw' must be a boolean");
    json_t *ctx = json_object_get(o, "context");
    if (!is_null(ctx)) {
        if (!json_is_array(ctx)) return SW__BAD(e, "context", "'context' must be an array of token ids");
        size_t n = json_array_size(ctx);
        if (n > MAX_CONTEXT_IDS) return SW__BAD(e, "context", "'context' holds more than %u ids", MAX_CONTEXT_IDS);
        if (n && !(r->prompt_ids = malloc(n * sizeof *r->prompt_ids)))
            return sw__oai_err_set(e, 500, "", NULL, NULL, "out of memory");
        for (size_t i = 0; i < n; i++) {
            json_t *x = json_array_get(ctx, i);
            if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT32_MAX)
                return SW__BAD(e, "context", "'context' must be an array of token ids");
            r->prompt_ids[i] = (int32_t)json_integer_value(x);
        }
        r->n_prompt_ids = n;
    }
    const char *p = json_is_string(prompt) ? json_string_value(prompt) : "";
    size_t plen = json_is_string(prompt) ? json_string_length(prompt) : 0;
    if (memchr(p, 0, plen)) return SW__BAD(e, "prompt", "'prompt' contains a NUL character");
    if (!plen) { /* Ollama: an empty prompt loads the model and answers done_reason "load" */
        *load_only = 1;
        return 0;
    }
    if (json_is_true(raw)) { /* the prompt as it is, no template */
        if (!(r->prompt = strdup(p))) return sw__oai_err_set(e, 500, "", NULL, NULL, "out of memory");
        r->prompt_len = plen;
        return 0;
    }
    /* the model's template around [system], user prompt */
    r->chat = 1;
    size_t n = 0;
    r->msgs = calloc(2, sizeof *r->msgs);
    if (!r->msgs) return sw__oai_err_set(e, 500, "", NULL, NULL, "out of memory");
    if (json_is_string(system) && json_string_length(system)) {
        r->msgs[n].role = "system";
        if (!(r->msgs[n].content = strdup(json_string_value(system))))
            return sw__oai_err_set(e, 500, "", NULL, NULL, "out of memory");
        r->n_msgs = ++n;
    }
    r->msgs[n].role = "user";
    if (!(r->msgs[n].content = strdup(p))) return sw__oai_err_set(e, 500, "", NULL, NULL, "out of memory");
    r->n_msgs = ++n;
    return 0;
}

static int parse_chat(json_t *o, struct sw_api_oai_req *r, int *load_only, struct sw_api_oai_error *e)
{
    int rc = parse_common(o, r, e);
    if (rc) return rc;
    r->chat = 1;
    json_t *msgs = json_object_get(o, "messages");
    if (is_null(msgs) || (json_is_array(msgs) && !json_array_size(msgs))) { /* Ollama: loads the model */
        *load_only = 1;
        return 0;
    }
    if (json_is_array(msgs))
        for (size_t i = 0; i < json_array_size(msgs); i++) {
            json_t *m = json_array_get(msgs, i), *im = json_is_object(m) ? json_object_get(m, "images") : NULL;
            if (!is_null(im) && !(json_is_array(im) && !json_array_size(im))) {
                char param[64];
                snprintf(param, sizeof param, "messages[%zu].images", i);
                return SW__BAD(e, param, "'%s': images are not supported (no vision models)", param);
            }
        }
    if ((rc = sw__tools_parse(o, r, e))) return rc; /* tools: as /v1 (tools.c), tool_choice auto */
    return sw__oai_parse_messages(o, r, e);
}

/* ---------------------------------------------------------------- responses */

static json_t *line_head(const struct sw__job *j)
{
    char when[48];
    rfc3339_now(when, sizeof when);
    return json_pack("{s:s,s:s}", "model", j->model, "created_at", when);
}

/* The text part of a line: generate's "response", chat's "message". */
static void set_text(const struct sw__job *j, json_t *o, const struct sw_buf *text)
{
    struct sw_buf empty = { 0 };
    json_t *s = sw__oai_jstr(text ? text : &empty);
    if (j->ollama == OLLAMA_CHAT)
        json_object_set_new(o, "message", json_pack("{s:s,s:o}", "role", "assistant", "content", s));
    else
        json_object_set_new(o, "response", s);
}

/* Ollama's tool calls: [{"function": {"name", "arguments": object}}], from OpenAI's. */
static json_t *ollama_calls(json_t *calls)
{
    json_t *out = json_array();
    for (size_t k = 0; k < json_array_size(calls); k++) {
        json_t *f = json_object_get(json_array_get(calls, k), "function");
        json_t *args = json_loads(json_string_value(json_object_get(f, "arguments")), 0, NULL);
        json_array_append_new(out, json_pack("{s:{s:O,s:o}}", "function", "name", json_object_get(f, "name"), "arguments",
                                             args ? args : json_object()));
    }
    return out;
}

/* A chat answer that is tool calls: the message with its content before them (from byte
 * `sent` on: a stream sent the rest already) and tool_calls. */
static int with_calls(const struct sw__job *j, json_t *o, const struct sw_buf *all, size_t sent)
{
    if (!j->tools_on || !all || !all->len) return 0;
    size_t content_len = all->len;
    json_t *calls = sw__tools_extract(&j->req, j->tool_family, (const char *)all->data, all->len, &content_len);
    if (!calls) return 0;
    struct sw_buf head = { 0 };
    if (content_len > sent) sw_buf_append(&head, all->data + sent, content_len - sent);
    json_object_set_new(o, "message", json_pack("{s:s,s:o,s:o}", "role", "assistant", "content", sw__oai_jstr(&head),
                                                "tool_calls", ollama_calls(calls)));
    sw_buf_free(&head);
    json_decref(calls);
    return 1;
}

/* The last line: done, done_reason, generate's context, the counts and durations (ns). */
static json_t *final_line(const struct sw__job *j, const struct sw_buf *text, const char *reason)
{
    const struct sw__choice *c = &j->ch[0];
    json_t *o = line_head(j);
    if (!with_calls(j, o, text, 0)) set_text(j, o, text);
    json_object_set_new(o, "done", json_true());
    json_object_set_new(o, "done_reason", json_string(reason));
    if (j->ollama == OLLAMA_GENERATE && j->n_choices) {
        json_t *ctx = json_array();
        for (size_t i = 0; i < j->n_prompt; i++) json_array_append_new(ctx, json_integer(j->prompt_ids[i]));
        for (size_t i = 0; i < c->n_ids; i++) json_array_append_new(ctx, json_integer(c->ids[i]));
        json_object_set_new(o, "context", ctx);
    }
    uint64_t end = j->t_end_ns ? j->t_end_ns : sw__oai_now_ns();
    uint64_t first = j->t_first_ns ? j->t_first_ns : end;
    /* prompt_eval_duration: until the first token (the prompt's pass through the pipeline);
     * eval_duration: the tokens after it */
    json_object_set_new(o, "total_duration", json_integer((json_int_t)(end - j->t_start_ns)));
    json_object_set_new(o, "load_duration", json_integer(0));
    json_object_set_new(o, "prompt_eval_count", json_integer((json_int_t)j->n_prompt));
    json_object_set_new(o, "prompt_eval_duration", json_integer((json_int_t)(first - j->t_start_ns)));
    json_object_set_new(o, "eval_count", json_integer(j->n_choices ? (json_int_t)c->n_gen : 0));
    json_object_set_new(o, "eval_duration", json_integer((json_int_t)(end - first)));
    return o;
}

static void ndjson(struct sw_buf *out, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (s) {
        sw_buf_append(out, s, strlen(s));
        sw_buf_append_byte(out, '\n');
    }
    free(s);
    json_decref(o);
}

static int stream_read(void *ud, struct sw_buf *out, uint32_t wait_ms)
{
    struct sw__job *j = ud;
    if (j->tail_sent) return 1;
    struct sw__choice *c = &j->ch[0];
    struct sw_buf delta = { 0 };
    int fin = sw__job_pump(j, c, &delta, wait_ms, 1);
    int calls = 0;
    if (j->tools_on && !c->failed) { /* text that may begin a tool call waits (as on /v1) */
        sw_buf_append(&c->out, delta.data, delta.len);
        delta.len = 0;
        size_t safe = c->sent; /* a call has begun: nothing more until the end */
        if (!c->tool_held) {
            int held = 0;
            safe = sw__tools_safe(j->tool_family, (const char *)c->out.data, c->out.len, &held);
            c->tool_held = held;
        }
        if (fin) {
            json_t *o = line_head(j);
            if ((calls = with_calls(j, o, &c->out, c->sent))) { /* Ollama sends the calls in a line of their own */
                json_object_set_new(o, "done", json_false());
                ndjson(out, o);
            } else {
                json_decref(o);
                safe = c->out.len;
            }
        }
        if (!calls && safe > c->sent) {
            sw_buf_append(&delta, c->out.data + c->sent, safe - c->sent);
            c->sent = safe;
        }
    }
    if (delta.len) {
        json_t *o = line_head(j);
        set_text(j, o, &delta);
        json_object_set_new(o, "done", json_false());
        ndjson(out, o);
    }
    sw_buf_free(&delta);
    if (fin) {
        j->t_end_ns = sw__oai_now_ns();
        if (c->failed) ndjson(out, json_pack("{s:s}", "error", c->err.message));
        else ndjson(out, final_line(j, NULL, c->finish));
        j->tail_sent = 1;
        return 1;
    }
    return sw_buf_ok(out) ? 0 : SW_ENOMEM;
}

static void stream_done(void *ud, int completed)
{
    (void)completed;
    sw__job_free(ud);
}

static void h_run(struct sw__oai *o, int route, const struct sw_api_request *req, struct sw_api_response *resp)
{
    struct sw__job *j = calloc(1, sizeof *j);
    struct sw_api_oai_error e = { 0 };
    if (!j) {
        sw_api_error(resp, 500, "out of memory");
        return;
    }
    j->o = o;
    j->ollama = route;
    json_t *body = NULL;
    int load_only = 0;
    int rc = sw__oai_json_load(req->body, req->body_len, &body, &e);
    if (!rc) rc = route == OLLAMA_CHAT ? parse_chat(body, &j->req, &load_only, &e)
                                       : parse_generate(body, &j->req, &load_only, &e);
    json_decref(body);
    if (!rc && (load_only || j->req.max_tokens == UINT32_MAX)) {
        /* nothing to generate: the model is "loaded" (a swarm's always is, once ready) */
        struct sw_api_oai_model m;
        if (!(rc = model_of(o, &m, &e))) {
            char name[160];
            ollama_name(&m, name, sizeof name);
            if (j->req.model[0] && strcmp(j->req.model, m.id) && strcmp(j->req.model, name))
                rc = sw__oai_err_set(&e, 404, "not_found", NULL, "model", "model '%.100s' not found", j->req.model);
        }
        if (!rc) {
            snprintf(j->model, sizeof j->model, "%s", j->req.model);
            j->t_start_ns = j->t_end_ns = sw__oai_now_ns();
            json_t *l = line_head(j);
            set_text(j, l, NULL);
            json_object_set_new(l, "done", json_true());
            json_object_set_new(l, "done_reason", json_string(load_only ? "load" : "length"));
            if (j->req.stream) {
                struct sw_buf b = { 0 };
                ndjson(&b, l);
                resp->content_type = "application/x-ndjson";
                resp->body = (char *)b.data;
                resp->body_len = b.len;
            } else {
                set_json(resp, l);
            }
            sw__job_free(j);
            return;
        }
    }
    if (rc || sw__job_begin(j, &e)) {
        ollama_error(resp, &e);
        sw__job_free(j);
        return;
    }
    snprintf(j->model, sizeof j->model, "%s", j->req.model); /* Ollama echoes the name asked */
    if (j->req.stream) {
        int w = sw__job_wait_first(j, req->call);
        if (w == 1) {
            sw__job_free(j);
            sw_api_error(resp, 503, "the client left");
            return;
        }
        if (w == 0) {
            resp->status = 200;
            resp->content_type = "application/x-ndjson";
            resp->stream = (struct sw_api_stream){ stream_read, stream_done, j };
            return;
        }
    }
    if (sw__job_wait_all(j, req->call)) {
        sw__job_free(j);
        sw_api_error(resp, 503, "the client left");
        return;
    }
    const struct sw_api_oai_error *err = sw__job_failed(j);
    if (err) ollama_error(resp, err);
    else set_json(resp, final_line(j, &j->ch[0].out, j->ch[0].finish));
    sw__job_free(j);
}

static void h_generate(void *ud, const struct sw_api_request *req, struct sw_api_response *resp)
{
    h_run(ud, OLLAMA_GENERATE, req, resp);
}

static void h_chat(void *ud, const struct sw_api_request *req, struct sw_api_response *resp)
{
    h_run(ud, OLLAMA_CHAT, req, resp);
}

int sw__ollama_routes(struct sw_api *a, struct sw__oai *o)
{
    int rc;
    if ((rc = sw_api_route(a, "GET", "/api/version", h_version, o)) ||
        (rc = sw_api_route(a, "GET", "/api/tags", h_tags, o)) ||
        (rc = sw_api_route(a, "POST", "/api/show", h_show, o)) ||
        (rc = sw_api_route_stream(a, "POST", "/api/generate", SW_API_OAI_MAX_BODY, h_generate, o)) ||
        (rc = sw_api_route_stream(a, "POST", "/api/chat", SW_API_OAI_MAX_BODY, h_chat, o)))
        return rc;
    return 0;
}
