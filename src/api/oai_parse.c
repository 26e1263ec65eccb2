/* oai_parse.c — the request bodies of /v1/completions and /v1/chat/completions parsed and
 * checked (OpenAI API reference: request fields), every refusal a 400 naming its field, and
 * the OpenAI error object.
 * Not for: running anything (oai_gen.c). */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "api/oai_int.h"

#define MAX_DEPTH 64              /* JSON nesting accepted in a request body */
#define MAX_TOKENS_CAP (1u << 20) /* max_tokens accepted at all (the context caps it further) */
#define MAX_PROMPT_IDS (1u << 20)

/* ================================================================ errors */

int sw__oai_err_set(struct sw_api_oai_error *e, int status, const char *type, const char *code, const char *param,
                   const char *fmt, ...)
{
    e->status = status;
    e->retry_after_s = 0;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return SW_EINVAL;
}

void sw_api_oai_error_resp(const struct sw_api_oai_error *e, struct sw_api_response *resp)
{
    json_t *inner = json_object();
    struct sw_buf m = { 0 };
    sw_api_utf8_sanitize(e->message, strlen(e->message), &m); /* a message may quote input */
    json_object_set_new(inner, "message", json_stringn(m.data ? (const char *)m.data : "", m.len));
    sw_buf_free(&m);
    json_object_set_new(inner, "type", json_string(e->type ? e->type : "server_error"));
    json_object_set_new(inner, "param", e->param[0] ? json_string(e->param) : json_null());
    json_object_set_new(inner, "code", e->code ? json_string(e->code) : json_null());
    json_t *o = json_object();
    json_object_set_new(o, "error", inner);
    free(resp->body);
    resp->status = e->status ? e->status : 500;
    resp->retry_after_s = e->retry_after_s;
    resp->content_type = "application/json";
    resp->body = json_dumps(o, JSON_COMPACT);
    resp->body_len = 0;
    json_decref(o);
}

/* ================================================================ parsing */

/* Deepest nesting of arrays/objects in a JSON text (strings skipped); the parser recurses,
 * and handlers run on threads with a bounded stack. */
static int json_depth_ok(const uint8_t *p, size_t n)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > MAX_DEPTH) return 0;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return 1;
}

static int is_null(const json_t *v) { return !v || json_is_null(v); }

static int get_number(json_t *o, const char *key, double lo, double hi, float *out, struct sw_api_oai_error *e)
{
    json_t *v = json_object_get(o, key);
    if (is_null(v)) return 0;
    if (!json_is_number(v)) return SW__BAD(e, key, "'%s' must be a number", key);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) return SW__BAD(e, key, "'%s' must be between %g and %g, got %g", key, lo, hi, d);
    *out = (float)d;
    return 0;
}

/* An integer (or a number with an integral value) in [lo, hi]; 1 when present. */
static int get_int(json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out, struct sw_api_oai_error *e)
{
    json_t *v = json_object_get(o, key);
    if (is_null(v)) return 0;
    int64_t x;
    if (json_is_integer(v)) {
        x = (int64_t)json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == (double)(int64_t)json_real_value(v) &&
               json_real_value(v) > -9e18 && json_real_value(v) < 9e18) {
        x = (int64_t)json_real_value(v);
    } else {
        return SW__BAD(e, key, "'%s' must be an integer", key);
    }
    if (x < lo || x > hi)
        return SW__BAD(e, key, "'%s' must be between %" PRId64 " and %" PRId64 ", got %" PRId64, key, lo, hi, x);
    *out = x;
    return 1;
}

/* A field we accept only at its neutral value: absent, null, or `ok(v)`. */
static int refuse_unless(json_t *o, const char *key, int ok, const char *why, struct sw_api_oai_error *e)
{
    json_t *v = json_object_get(o, key);
    if (is_null(v) || ok) return 0;
    return SW__BAD(e, key, "'%s' is not supported: %s", key, why);
}

static char *dup_json_string(json_t *v, size_t *len_out)
{
    size_t n = json_string_length(v);
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, json_string_value(v), n);
    s[n] = 0;
    if (len_out) *len_out = n;
    return s;
}

int sw__oai_parse_stop(json_t *o, struct sw_api_oai_req *r, struct sw_api_oai_error *e)
{
    json_t *v = json_object_get(o, "stop");
    if (is_null(v)) return 0;
    json_t *one[1] = { v };
    json_t **items = one;
    size_t n = 1;
    json_t *arr[SW_API_OAI_MAX_STOP];
    if (json_is_array(v)) {
        n = json_array_size(v);
        if (n > SW_API_OAI_MAX_STOP) return SW__BAD(e, "stop", "'stop' holds at most %u strings, got %zu", SW_API_OAI_MAX_STOP, n);
        for (size_t i = 0; i < n; i++) arr[i] = json_array_get(v, i);
        items = arr;
    } else if (!json_is_string(v)) {
        return SW__BAD(e, "stop", "'stop' must be a string or an array of strings");
    }
    for (size_t i = 0; i < n; i++) {
        if (!json_is_string(items[i])) return SW__BAD(e, "stop", "'stop' must be a string or an array of strings");
        size_t l = json_string_length(items[i]);
        if (l == 0) return SW__BAD(e, "stop", "'stop' strings must not be empty");
        if (l > SW_API_OAI_MAX_STOP_LEN || memchr(json_string_value(items[i]), 0, l))
            return SW__BAD(e, "stop", "a 'stop' string must be 1..%u bytes without NUL", SW_API_OAI_MAX_STOP_LEN);
        if (!(r->stop[r->n_stop] = dup_json_string(items[i], NULL)))
            return sw__oai_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
        r->n_stop++;
    }
    return 0;
}

static int parse_prompt(json_t *o, struct sw_api_oai_req *r, struct sw_api_oai_error *e)
{
    json_t *v = json_object_get(o, "prompt");
    if (is_null(v)) return SW__BAD(e, "prompt", "'prompt' is required");
    if (json_is_string(v)) {
        if (!(r->prompt = dup_json_string(v, &r->prompt_len))) return sw__oai_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return 0;
    }
    const char *shape = "'prompt' must be a string, an array of one string, or an array of token ids";
    if (!json_is_array(v) || json_array_size(v) == 0) return SW__BAD(e, "prompt", "%s", shape);
    json_t *first = json_array_get(v, 0);
    size_t n = json_array_size(v);
    if (json_is_string(first) || json_is_array(first)) {
        if (n != 1) return SW__BAD(e, "prompt", "multiple prompts are not supported (%zu given): send one per request", n);
        if (json_is_string(first)) {
            if (!(r->prompt = dup_json_string(first, &r->prompt_len)))
                return sw__oai_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
            return 0;
        }
        v = first; /* [[ids]] */
        n = json_array_size(v);
        if (!n) return SW__BAD(e, "prompt", "%s", shape);
    }
    if (n > MAX_PROMPT_IDS) return SW__BAD(e, "prompt", "'prompt' holds more than %u token ids", MAX_PROMPT_IDS);
    r->prompt_ids = malloc(n * sizeof *r->prompt_ids);
    if (!r->prompt_ids) return sw__oai_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(v, i);
        if (!json_is_integer(x)) return SW__BAD(e, "prompt", "%s", shape);
        json_int_t id = json_integer_value(x);
        if (id < 0 || id > INT32_MAX) return SW__BAD(e, "prompt", "token id %" JSON_INTEGER_FORMAT " is out of range", id);
        r->prompt_ids[i] = (int32_t)id;
    }
    r->n_prompt_ids = n;
    return 0;
}

int sw__oai_parse_messages(json_t *o, struct sw_api_oai_req *r, struct sw_api_oai_error *e)
{
    json_t *v = json_object_get(o, "messages");
    if (is_null(v)) return SW__BAD(e, "messages", "'messages' is required");
    if (!json_is_array(v) || !json_array_size(v)) return SW__BAD(e, "messages", "'messages' must be a non-empty array");
    size_t n = json_array_size(v);
    if (n > SW_API_OAI_MAX_MSGS) return SW__BAD(e, "messages", "at most %u messages", SW_API_OAI_MAX_MSGS);
    r->msgs = calloc(n, sizeof *r->msgs);
    if (!r->msgs) return sw__oai_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    char param[96];
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(v, i);
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(m)) return SW__BAD(e, param, "'%s' must be an object", param);
        json_t *role = json_object_get(m, "role");
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!json_is_string(role)) return SW__BAD(e, param, "'%s' must be a string", param);
        const char *rs = json_string_value(role);
        const char *norm = !strcmp(rs, "system") || !strcmp(rs, "developer") ? "system"
                           : !strcmp(rs, "user")                             ? "user"
                           : !strcmp(rs, "assistant")                        ? "assistant"
                           : !strcmp(rs, "tool")                             ? "tool"
                                                                             : NULL;
        if (!norm)
            return SW__BAD(e, param, "role '%.40s' is not supported (system, developer, user, assistant, tool)", rs);
        struct sw_api_oai_msg *cur = &r->msgs[r->n_msgs++]; /* counted now: freed with the request */
        cur->role = norm; /* static */
        int rc = sw__tools_parse_msg(m, i, cur, e); /* tool_calls, tool_call_id (tools.c) */
        if (rc) return rc;
        json_t *c = json_object_get(m, "content");
        snprintf(param, sizeof param, "messages[%zu].content", i);
        struct sw_buf text = { 0 };
        if (json_is_string(c)) {
            sw_buf_append(&text, json_string_value(c), json_string_length(c));
        } else if (json_is_array(c)) {
            for (size_t j = 0; j < json_array_size(c); j++) {
                json_t *part = json_array_get(c, j);
                json_t *type = json_is_object(part) ? json_object_get(part, "type") : NULL;
                json_t *t = json_is_object(part) ? json_object_get(part, "text") : NULL;
                snprintf(param, sizeof param, "messages[%zu].content[%zu].type", i, j);
                if (!json_is_string(type) || strcmp(json_string_value(type), "text")) {
                    sw_buf_free(&text);
                    return SW__BAD(e, param, "only content parts of type 'text' are supported");
                }
                snprintf(param, sizeof param, "messages[%zu].content[%zu].text", i, j);
                if (!json_is_string(t)) {
                    sw_buf_free(&text);
                    return SW__BAD(e, param, "'%s' must be a string", param);
                }
                if (j) sw_buf_append(&text, "\n", 1);
                sw_buf_append(&text, json_string_value(t), json_string_length(t));
            }
        } else if (!(is_null(c) && (!strcmp(norm, "assistant") || !strcmp(norm, "tool")))) {
            return SW__BAD(e, param, "'%s' must be a string or an array of text parts", param);
        }
        snprintf(param, sizeof param, "messages[%zu].content", i);
        if (text.len && memchr(text.data, 0, text.len)) {
            sw_buf_free(&text);
            return SW__BAD(e, param, "'%s' contains a NUL character", param);
        }
        const char *cs = sw_buf_cstr(&text);
        char *copy = cs ? strdup(cs) : strdup("");
        sw_buf_free(&text);
        if (!copy) return sw__oai_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
        cur->content = copy;
    }
    return 0;
}

void sw_api_oai_req_free(struct sw_api_oai_req *r)
{
    if (!r) return;
    free(r->model);
    free(r->prompt);
    free(r->prompt_ids);
    for (size_t i = 0; i < r->n_msgs; i++) {
        free((char *)r->msgs[i].content);
        free((char *)r->msgs[i].tool_calls);
        free((char *)r->msgs[i].tool_call_id);
    }
    free(r->tools);
    free(r->tool_name);
    free(r->msgs);
    for (size_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->grammar);
    memset(r, 0, sizeof *r);
}

/* response_format: {"type":"text"}, {"type":"json_object"} (any JSON object), or
 * {"type":"json_schema","json_schema":{"name","schema","strict","description"}}: the output
 * is constrained by a grammar compiled from the schema (schema.c). */
static int parse_response_format(json_t *o, struct sw_api_oai_req *r, struct sw_api_oai_error *e)
{
    json_t *v = json_object_get(o, "response_format");
    if (is_null(v)) return 0;
    json_t *t = json_is_object(v) ? json_object_get(v, "type") : NULL;
    if (!json_is_string(t))
        return SW__BAD(e, "response_format.type", "'response_format' must be an object with a string 'type'");
    const char *ts = json_string_value(t);
    if (!strcmp(ts, "text")) return 0;
    if (!strcmp(ts, "json_object")) return sw__schema_compile(NULL, "response_format", NULL, NULL, &r->grammar, &r->grammar_len, e);
    if (strcmp(ts, "json_schema"))
        return SW__BAD(e, "response_format.type", "'response_format.type' must be text, json_object or json_schema");
    json_t *js = json_object_get(v, "json_schema");
    if (!json_is_object(js)) return SW__BAD(e, "response_format.json_schema", "'response_format.json_schema' must be an object");
    json_t *name = json_object_get(js, "name");
    if (!is_null(name) && !json_is_string(name))
        return SW__BAD(e, "response_format.json_schema.name", "'response_format.json_schema.name' must be a string");
    json_t *schema = json_object_get(js, "schema");
    if (is_null(schema)) /* OpenAI: without a schema the output is any JSON object */
        return sw__schema_compile(NULL, "response_format.json_schema", NULL, NULL, &r->grammar, &r->grammar_len, e);
    return sw__schema_compile(schema, "response_format.json_schema.schema", NULL, NULL, &r->grammar, &r->grammar_len, e);
}

static int parse_fields(int chat, json_t *o, struct sw_api_oai_req *r, struct sw_api_oai_error *e)
{
    json_t *v;
    int rc;
    if (!is_null(v = json_object_get(o, "model"))) {
        if (!json_is_string(v)) return SW__BAD(e, "model", "'model' must be a string");
        if (!(r->model = dup_json_string(v, NULL))) return sw__oai_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    if ((rc = chat ? sw__oai_parse_messages(o, r, e) : parse_prompt(o, r, e))) return rc;
    /* sampling: OpenAI's defaults (temperature 1, top_p 1); extensions off unless given */
    r->sp.temperature = 1.0f;
    r->sp.top_p = 1.0f;
    r->sp.repeat_penalty = 1.0f;
    if ((rc = get_number(o, "temperature", 0, 2, &r->sp.temperature, e))) return rc;
    if ((rc = get_number(o, "top_p", 0, 1, &r->sp.top_p, e))) return rc;
    if ((rc = get_number(o, "min_p", 0, 1, &r->sp.min_p, e))) return rc;
    if ((rc = get_number(o, "repeat_penalty", 0.01, 100, &r->sp.repeat_penalty, e))) return rc;
    int64_t x;
    if ((rc = get_int(o, "top_k", 0, 1 << 24, &x, e)) < 0) return rc;
    if (rc) r->sp.top_k = (uint32_t)x;
    if ((rc = get_int(o, "seed", INT64_MIN, INT64_MAX, &x, e)) < 0) return rc;
    if (rc) {
        r->sp.seed = (uint64_t)x;
        r->seed_set = 1;
    }
    const char *mt = "max_tokens";
    if (chat && !is_null(json_object_get(o, "max_completion_tokens"))) mt = "max_completion_tokens";
    if ((rc = get_int(o, mt, 1, MAX_TOKENS_CAP, &x, e)) < 0) return rc;
    if (rc) r->max_tokens = (uint32_t)x;
    r->n = 1;
    if ((rc = get_int(o, "n", 1, SW_API_OAI_MAX_N, &x, e)) < 0) return rc;
    if (rc) r->n = (uint32_t)x;
    if ((rc = sw__oai_parse_stop(o, r, e))) return rc;
    if (!is_null(v = json_object_get(o, "stream"))) {
        if (!json_is_boolean(v)) return SW__BAD(e, "stream", "'stream' must be a boolean");
        r->stream = json_is_true(v);
    }
    if (!is_null(v = json_object_get(o, "stream_options"))) {
        if (!json_is_object(v)) return SW__BAD(e, "stream_options", "'stream_options' must be an object");
        if (!r->stream) return SW__BAD(e, "stream_options", "'stream_options' is only allowed when 'stream' is true");
        json_t *iu = json_object_get(v, "include_usage");
        if (!is_null(iu) && !json_is_boolean(iu))
            return SW__BAD(e, "stream_options.include_usage", "'stream_options.include_usage' must be a boolean");
        r->include_usage = json_is_true(iu);
    }
    if (!is_null(v = json_object_get(o, "user")) && !json_is_string(v)) return SW__BAD(e, "user", "'user' must be a string");
    if ((rc = parse_response_format(o, r, e))) return rc; /* completions too (an extension) */
    /* accepted only at their neutral values */
    v = json_object_get(o, "presence_penalty");
    if ((rc = refuse_unless(o, "presence_penalty", json_is_number(v) && json_number_value(v) == 0, "only 0", e))) return rc;
    v = json_object_get(o, "frequency_penalty");
    if ((rc = refuse_unless(o, "frequency_penalty", json_is_number(v) && json_number_value(v) == 0, "only 0 (see the "
                            "'repeat_penalty' extension)", e)))
        return rc;
    v = json_object_get(o, "logit_bias");
    if ((rc = refuse_unless(o, "logit_bias", json_is_object(v) && !json_object_size(v), "no biases", e))) return rc;
    if (chat) {
        /* chat: logprobs is a boolean, top_logprobs 0..20 wants it true */
        v = json_object_get(o, "logprobs");
        if (!is_null(v) && !json_is_boolean(v)) return SW__BAD(e, "logprobs", "'logprobs' must be a boolean");
        r->logprobs = json_is_true(v);
        if ((rc = get_int(o, "top_logprobs", 0, SW_API_OAI_MAX_TOP_LOGPROBS, &x, e)) < 0) return rc;
        if (rc) {
            if (!r->logprobs) return SW__BAD(e, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
            r->top_logprobs = (uint32_t)x;
        }
        v = json_object_get(o, "functions");
        if ((rc = refuse_unless(o, "functions", json_is_array(v) && !json_array_size(v),
                                "the deprecated 'functions' (use 'tools')", e)))
            return rc;
        if ((rc = sw__tools_parse(o, r, e))) return rc; /* tools.c */

    } else {
        /* completions: logprobs is how many alternatives (0..5) besides the chosen token */
        if ((rc = get_int(o, "logprobs", 0, 5, &x, e)) < 0) return rc;
        if (rc) {
            r->logprobs = 1;
            r->top_logprobs = (uint32_t)x;
        }
        v = json_object_get(o, "echo");
        if (!is_null(v) && !json_is_boolean(v)) return SW__BAD(e, "echo", "'echo' must be a boolean");
        if ((rc = refuse_unless(o, "echo", json_is_false(v), "only false (the prompt is not repeated)", e))) return rc;
        if ((rc = get_int(o, "best_of", 1, SW_API_OAI_MAX_N, &x, e)) < 0) return rc;
        if (rc && (uint32_t)x != r->n)
            return SW__BAD(e, "best_of", "'best_of' must equal 'n' (%u): choices are not ranked", r->n);
        v = json_object_get(o, "suffix");
        if ((rc = refuse_unless(o, "suffix", json_is_string(v) && !json_string_length(v), "no insertion", e))) return rc;
    }
    return 0;
}

int sw__oai_json_load(const uint8_t *body, size_t len, json_t **out, struct sw_api_oai_error *err)
{
    *out = NULL;
    if (len > SW_API_OAI_MAX_BODY)
        return sw__oai_err_set(err, 413, "invalid_request_error", NULL, NULL, "the body is over %u bytes", SW_API_OAI_MAX_BODY);
    if (!json_depth_ok(body, len)) return SW__BAD(err, NULL, "the JSON body nests deeper than %d levels", MAX_DEPTH);
    json_error_t je;
    json_t *o = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!o) return SW__BAD(err, NULL, "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
    if (!json_is_object(o)) {
        json_decref(o);
        return SW__BAD(err, NULL, "the body must be a JSON object");
    }
    *out = o;
    return 0;
}

int sw_api_oai_parse(int chat, const uint8_t *body, size_t len, struct sw_api_oai_req *out,
                     struct sw_api_oai_error *err)
{
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    out->chat = chat;
    json_t *o;
    int rc = sw__oai_json_load(body, len, &o, err);
    if (rc) return rc;
    rc = parse_fields(chat, o, out, err);
    json_decref(o);
    if (rc) sw_api_oai_req_free(out);
    out->chat = chat;
    return rc;
}

