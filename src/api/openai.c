/* openai.c — the OpenAI-compatible endpoints: GET /v1/models, POST /v1/completions and
 * POST /v1/chat/completions (with Server-Sent Events streaming), per the OpenAI API
 * reference. Requests are parsed and checked here, generated tokens become text here (valid
 * UTF-8 only, stop strings never leaked), and responses are framed here; the model runs
 * behind struct sw_api_oai_backend (the node's: src/cli/node_openai.c).
 * Threads: handlers run on the API's connection threads; a backend reports tokens from its
 * own thread (the node's loop) into a small per-request queue (struct gen) that only ever
 * holds a mutex for a copy, so the loop never waits on a client.
 * Not for: tokenizing or sampling (the backend), HTTP plumbing (api.c). */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "api/api.h"

#define MAX_DEPTH 64              /* JSON nesting accepted in a request body */
#define MAX_TOKENS_CAP (1u << 20) /* max_tokens accepted at all (the context caps it further) */
#define MAX_PROMPT_IDS (1u << 20)
#define WAIT_STEP_MS 100          /* a waiting handler looks at its client this often */
#define DEFAULT_COMPLETION_TOKENS 16 /* OpenAI: max_tokens defaults to 16 for /v1/completions */

/* ================================================================ UTF-8 */

/* Length of the valid UTF-8 sequence at p[0..n) (RFC 3629: no overlongs, no surrogates,
 * nothing past U+10FFFF): 1..4; 0 when it is invalid; -k when p[0..n) is a valid but
 * incomplete start of a k-byte sequence. */
static int utf8_seq(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    if (c < 0x80) return 1;
    int k;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) k = 2;
    else if (c == 0xE0) { k = 3; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) k = 3;
    else if (c == 0xED) { k = 3; hi = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) k = 3;
    else if (c == 0xF0) { k = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) k = 4;
    else if (c == 0xF4) { k = 4; hi = 0x8F; }
    else return 0;
    for (int i = 1; i < k; i++) {
        if ((size_t)i >= n) return -k;
        uint8_t b = p[i];
        if (i == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) return 0;
    }
    return k;
}

int sw_api_utf8_sanitize(const void *src, size_t n, struct sw_buf *out)
{
    const uint8_t *p = src;
    if (!n) return sw_buf_ok(out) ? 0 : SW_ENOMEM;
    size_t i = 0, run = 0; /* run: start of the current stretch of valid bytes */
    while (i < n) {
        int k = utf8_seq(p + i, n - i);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        sw_buf_append(out, p + run, i - run);
        sw_buf_append(out, "\xEF\xBF\xBD", 3); /* U+FFFD REPLACEMENT CHARACTER */
        i++;
        run = i;
    }
    sw_buf_append(out, p + run, i - run);
    return sw_buf_ok(out) ? 0 : SW_ENOMEM;
}

/* The longest n' <= n such that p[0..n') does not end inside a valid-but-incomplete
 * character (such a tail waits for the next token's bytes). */
static size_t utf8_whole(const uint8_t *p, size_t n)
{
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        uint8_t c = p[n - back];
        if ((c & 0xC0) == 0x80) continue;
        int k = utf8_seq(p + n - back, back);
        return k < 0 ? n - back : n;
    }
    return n;
}

/* ================================================================ text out */

void sw_api_oai_text_init(struct sw_api_oai_text *t, const char *const *stop, size_t n_stop)
{
    memset(t, 0, sizeof *t);
    t->stop = stop;
    t->n_stop = n_stop;
    sw_buf_init(&t->held);
}

void sw_api_oai_text_free(struct sw_api_oai_text *t)
{
    if (t) sw_buf_free(&t->held);
}

int sw_api_oai_text_push(struct sw_api_oai_text *t, const void *p, size_t n, struct sw_buf *out)
{
    if (t->stopped) return 1;
    if (n && sw_buf_append(&t->held, p, n)) return SW_ENOMEM;
    const uint8_t *h = t->held.data;
    size_t len = t->held.len;
    /* A whole stop string: release the text before the earliest one, drop the rest. Every
     * occurrence starts inside `held`: what was released could not begin one. */
    size_t cut = SIZE_MAX;
    for (size_t s = 0; s < t->n_stop; s++) {
        size_t sl = strlen(t->stop[s]);
        if (!sl || sl > len) continue;
        for (size_t i = 0; i + sl <= len && i < cut; i++)
            if (!memcmp(h + i, t->stop[s], sl)) {
                cut = i;
                break;
            }
    }
    if (cut != SIZE_MAX) {
        int rc = sw_api_utf8_sanitize(h, cut, out);
        t->stopped = 1;
        t->held.len = 0;
        return rc ? rc : 1;
    }
    /* hold back the longest tail that is a proper prefix of some stop string */
    size_t keep = 0;
    for (size_t s = 0; s < t->n_stop; s++) {
        size_t sl = strlen(t->stop[s]);
        for (size_t k = SW_MIN(sl ? sl - 1 : 0, len); k > keep; k--)
            if (!memcmp(h + len - k, t->stop[s], k)) {
                keep = k;
                break;
            }
    }
    size_t safe = utf8_whole(h, len - keep);
    if (!safe) return 0;
    int rc = sw_api_utf8_sanitize(h, safe, out);
    sw_buf_consume(&t->held, safe);
    return rc;
}

int sw_api_oai_text_finish(struct sw_api_oai_text *t, struct sw_buf *out)
{
    if (t->stopped) return 0;
    int rc = sw_api_utf8_sanitize(t->held.data, t->held.len, out);
    t->held.len = 0;
    return rc;
}

int sw_api_sse_data(struct sw_buf *out, const char *line, size_t len)
{
    if (memchr(line, '\n', len) || memchr(line, '\r', len)) return SW_EINVAL;
    /* SSE (WHATWG HTML, "server-sent events"): an event is "data: <text>" and a blank line */
    sw_buf_append(out, "data: ", 6);
    sw_buf_append(out, line, len);
    sw_buf_append(out, "\n\n", 2);
    return sw_buf_ok(out) ? 0 : SW_ENOMEM;
}

/* ================================================================ errors */

static int err_set(struct sw_api_oai_error *e, int status, const char *type, const char *code, const char *param,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int err_set(struct sw_api_oai_error *e, int status, const char *type, const char *code, const char *param,
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

#define BAD(e, param, ...) err_set((e), 400, "invalid_request_error", NULL, (param), __VA_ARGS__)

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
    if (!json_is_number(v)) return BAD(e, key, "'%s' must be a number", key);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) return BAD(e, key, "'%s' must be between %g and %g, got %g", key, lo, hi, d);
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
        return BAD(e, key, "'%s' must be an integer", key);
    }
    if (x < lo || x > hi)
        return BAD(e, key, "'%s' must be between %" PRId64 " and %" PRId64 ", got %" PRId64, key, lo, hi, x);
    *out = x;
    return 1;
}

/* A field we accept only at its neutral value: absent, null, or `ok(v)`. */
static int refuse_unless(json_t *o, const char *key, int ok, const char *why, struct sw_api_oai_error *e)
{
    json_t *v = json_object_get(o, key);
    if (is_null(v) || ok) return 0;
    return BAD(e, key, "'%s' is not supported: %s", key, why);
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

static int parse_stop(json_t *o, struct sw_api_oai_req *r, struct sw_api_oai_error *e)
{
    json_t *v = json_object_get(o, "stop");
    if (is_null(v)) return 0;
    json_t *one[1] = { v };
    json_t **items = one;
    size_t n = 1;
    json_t *arr[SW_API_OAI_MAX_STOP];
    if (json_is_array(v)) {
        n = json_array_size(v);
        if (n > SW_API_OAI_MAX_STOP) return BAD(e, "stop", "'stop' holds at most %u strings, got %zu", SW_API_OAI_MAX_STOP, n);
        for (size_t i = 0; i < n; i++) arr[i] = json_array_get(v, i);
        items = arr;
    } else if (!json_is_string(v)) {
        return BAD(e, "stop", "'stop' must be a string or an array of strings");
    }
    for (size_t i = 0; i < n; i++) {
        if (!json_is_string(items[i])) return BAD(e, "stop", "'stop' must be a string or an array of strings");
        size_t l = json_string_length(items[i]);
        if (l == 0) return BAD(e, "stop", "'stop' strings must not be empty");
        if (l > SW_API_OAI_MAX_STOP_LEN || memchr(json_string_value(items[i]), 0, l))
            return BAD(e, "stop", "a 'stop' string must be 1..%u bytes without NUL", SW_API_OAI_MAX_STOP_LEN);
        if (!(r->stop[r->n_stop] = dup_json_string(items[i], NULL)))
            return err_set(e, 500, "server_error", NULL, NULL, "out of memory");
        r->n_stop++;
    }
    return 0;
}

static int parse_prompt(json_t *o, struct sw_api_oai_req *r, struct sw_api_oai_error *e)
{
    json_t *v = json_object_get(o, "prompt");
    if (is_null(v)) return BAD(e, "prompt", "'prompt' is required");
    if (json_is_string(v)) {
        if (!(r->prompt = dup_json_string(v, &r->prompt_len))) return err_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return 0;
    }
    const char *shape = "'prompt' must be a string, an array of one string, or an array of token ids";
    if (!json_is_array(v) || json_array_size(v) == 0) return BAD(e, "prompt", "%s", shape);
    json_t *first = json_array_get(v, 0);
    size_t n = json_array_size(v);
    if (json_is_string(first) || json_is_array(first)) {
        if (n != 1) return BAD(e, "prompt", "multiple prompts are not supported (%zu given): send one per request", n);
        if (json_is_string(first)) {
            if (!(r->prompt = dup_json_string(first, &r->prompt_len)))
                return err_set(e, 500, "server_error", NULL, NULL, "out of memory");
            return 0;
        }
        v = first; /* [[ids]] */
        n = json_array_size(v);
        if (!n) return BAD(e, "prompt", "%s", shape);
    }
    if (n > MAX_PROMPT_IDS) return BAD(e, "prompt", "'prompt' holds more than %u token ids", MAX_PROMPT_IDS);
    r->prompt_ids = malloc(n * sizeof *r->prompt_ids);
    if (!r->prompt_ids) return err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(v, i);
        if (!json_is_integer(x)) return BAD(e, "prompt", "%s", shape);
        json_int_t id = json_integer_value(x);
        if (id < 0 || id > INT32_MAX) return BAD(e, "prompt", "token id %" JSON_INTEGER_FORMAT " is out of range", id);
        r->prompt_ids[i] = (int32_t)id;
    }
    r->n_prompt_ids = n;
    return 0;
}

static int parse_messages(json_t *o, struct sw_api_oai_req *r, struct sw_api_oai_error *e)
{
    json_t *v = json_object_get(o, "messages");
    if (is_null(v)) return BAD(e, "messages", "'messages' is required");
    if (!json_is_array(v) || !json_array_size(v)) return BAD(e, "messages", "'messages' must be a non-empty array");
    size_t n = json_array_size(v);
    if (n > SW_API_OAI_MAX_MSGS) return BAD(e, "messages", "at most %u messages", SW_API_OAI_MAX_MSGS);
    r->msgs = calloc(n, sizeof *r->msgs);
    if (!r->msgs) return err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    char param[96];
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(v, i);
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(m)) return BAD(e, param, "'%s' must be an object", param);
        json_t *role = json_object_get(m, "role");
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!json_is_string(role)) return BAD(e, param, "'%s' must be a string", param);
        const char *rs = json_string_value(role);
        const char *norm = !strcmp(rs, "system") || !strcmp(rs, "developer") ? "system"
                           : !strcmp(rs, "user")                             ? "user"
                           : !strcmp(rs, "assistant")                        ? "assistant"
                                                                             : NULL;
        if (!norm)
            return BAD(e, param, "role '%.40s' is not supported (system, developer, user, assistant)", rs);
        r->msgs[r->n_msgs].role = norm; /* static */
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
                    return BAD(e, param, "only content parts of type 'text' are supported");
                }
                snprintf(param, sizeof param, "messages[%zu].content[%zu].text", i, j);
                if (!json_is_string(t)) {
                    sw_buf_free(&text);
                    return BAD(e, param, "'%s' must be a string", param);
                }
                if (j) sw_buf_append(&text, "\n", 1);
                sw_buf_append(&text, json_string_value(t), json_string_length(t));
            }
        } else if (!(is_null(c) && !strcmp(norm, "assistant"))) {
            return BAD(e, param, "'%s' must be a string or an array of text parts", param);
        }
        snprintf(param, sizeof param, "messages[%zu].content", i);
        if (text.len && memchr(text.data, 0, text.len)) {
            sw_buf_free(&text);
            return BAD(e, param, "'%s' contains a NUL character", param);
        }
        const char *cs = sw_buf_cstr(&text);
        char *copy = cs ? strdup(cs) : strdup("");
        sw_buf_free(&text);
        if (!copy) return err_set(e, 500, "server_error", NULL, NULL, "out of memory");
        r->msgs[r->n_msgs].content = copy;
        r->n_msgs++;
    }
    return 0;
}

void sw_api_oai_req_free(struct sw_api_oai_req *r)
{
    if (!r) return;
    free(r->model);
    free(r->prompt);
    free(r->prompt_ids);
    for (size_t i = 0; i < r->n_msgs; i++) free((char *)r->msgs[i].content);
    free(r->msgs);
    for (size_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

static int parse_fields(int chat, json_t *o, struct sw_api_oai_req *r, struct sw_api_oai_error *e)
{
    json_t *v;
    int rc;
    if (!is_null(v = json_object_get(o, "model"))) {
        if (!json_is_string(v)) return BAD(e, "model", "'model' must be a string");
        if (!(r->model = dup_json_string(v, NULL))) return err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    if ((rc = chat ? parse_messages(o, r, e) : parse_prompt(o, r, e))) return rc;
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
    if ((rc = get_int(o, "n", 1, 1, &x, e)) < 0) {
        json_t *n = json_object_get(o, "n");
        if (json_is_integer(n) && json_integer_value(n) > 1)
            return BAD(e, "n", "'n' must be 1: one choice per request is supported");
        return rc;
    }
    if ((rc = parse_stop(o, r, e))) return rc;
    if (!is_null(v = json_object_get(o, "stream"))) {
        if (!json_is_boolean(v)) return BAD(e, "stream", "'stream' must be a boolean");
        r->stream = json_is_true(v);
    }
    if (!is_null(v = json_object_get(o, "stream_options"))) {
        if (!json_is_object(v)) return BAD(e, "stream_options", "'stream_options' must be an object");
        if (!r->stream) return BAD(e, "stream_options", "'stream_options' is only allowed when 'stream' is true");
        json_t *iu = json_object_get(v, "include_usage");
        if (!is_null(iu) && !json_is_boolean(iu))
            return BAD(e, "stream_options.include_usage", "'stream_options.include_usage' must be a boolean");
        r->include_usage = json_is_true(iu);
    }
    if (!is_null(v = json_object_get(o, "user")) && !json_is_string(v)) return BAD(e, "user", "'user' must be a string");
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
        v = json_object_get(o, "logprobs");
        if ((rc = refuse_unless(o, "logprobs", json_is_false(v), "log probabilities are not returned", e))) return rc;
        if ((rc = refuse_unless(o, "top_logprobs", 0, "log probabilities are not returned", e))) return rc;
        v = json_object_get(o, "tools");
        if ((rc = refuse_unless(o, "tools", json_is_array(v) && !json_array_size(v), "no tool calling", e))) return rc;
        v = json_object_get(o, "functions");
        if ((rc = refuse_unless(o, "functions", json_is_array(v) && !json_array_size(v), "no function calling", e)))
            return rc;
        v = json_object_get(o, "tool_choice");
        if ((rc = refuse_unless(o, "tool_choice", json_is_string(v) && (!strcmp(json_string_value(v), "none") ||
                                                                        !strcmp(json_string_value(v), "auto")),
                                "no tool calling", e)))
            return rc;
        v = json_object_get(o, "response_format");
        json_t *t = json_is_object(v) ? json_object_get(v, "type") : NULL;
        if ((rc = refuse_unless(o, "response_format", json_is_string(t) && !strcmp(json_string_value(t), "text"),
                                "only {\"type\":\"text\"}", e)))
            return rc;
    } else {
        if ((rc = refuse_unless(o, "logprobs", 0, "log probabilities are not returned", e))) return rc;
        v = json_object_get(o, "echo");
        if (!is_null(v) && !json_is_boolean(v)) return BAD(e, "echo", "'echo' must be a boolean");
        if ((rc = refuse_unless(o, "echo", json_is_false(v), "only false (the prompt is not repeated)", e))) return rc;
        if ((rc = get_int(o, "best_of", 1, 1, &x, e)) < 0) return rc;
        v = json_object_get(o, "suffix");
        if ((rc = refuse_unless(o, "suffix", json_is_string(v) && !json_string_length(v), "no insertion", e))) return rc;
    }
    return 0;
}

int sw_api_oai_parse(int chat, const uint8_t *body, size_t len, struct sw_api_oai_req *out,
                     struct sw_api_oai_error *err)
{
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    out->chat = chat;
    if (len > SW_API_OAI_MAX_BODY)
        return err_set(err, 413, "invalid_request_error", NULL, NULL, "the body is over %u bytes", SW_API_OAI_MAX_BODY);
    if (!json_depth_ok(body, len)) return BAD(err, NULL, "the JSON body nests deeper than %d levels", MAX_DEPTH);
    json_error_t je;
    json_t *o = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!o) return BAD(err, NULL, "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
    int rc = json_is_object(o) ? parse_fields(chat, o, out, err) : BAD(err, NULL, "the body must be a JSON object");
    json_decref(o);
    if (rc) sw_api_oai_req_free(out);
    out->chat = chat;
    return rc;
}

/* ================================================================ generations */

/* The queue between the backend's thread (producer) and one request's connection thread. */
struct gen {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;                /* the request's, and the backend's until on_end */
    int32_t *toks;
    uint8_t *eog;
    size_t n, cap;
    int ended, rc;
    char msg[512];
};

static void gen_unref_locked(struct gen *g) /* unlocks */
{
    int last = --g->refs == 0;
    pthread_mutex_unlock(&g->mu);
    if (!last) return;
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g->toks);
    free(g->eog);
    free(g);
}

static void ev_token(void *ud, int32_t token, int eog)
{
    struct gen *g = ud;
    pthread_mutex_lock(&g->mu);
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 64;
        int32_t *t = realloc(g->toks, cap * sizeof *t);
        if (t) g->toks = t;
        uint8_t *e = t ? realloc(g->eog, cap) : NULL;
        if (e) g->eog = e;
        if (!t || !e) { /* out of memory: the request ends with an error */
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
    g->n++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void ev_end(void *ud, int rc, const char *msg)
{
    struct gen *g = ud;
    pthread_mutex_lock(&g->mu);
    g->ended = 1;
    if (!g->rc) g->rc = rc;
    if (msg && !g->msg[0]) snprintf(g->msg, sizeof g->msg, "%s", msg);
    pthread_cond_broadcast(&g->cv);
    gen_unref_locked(g);
}

struct oai {
    struct sw_api_oai_backend be;
};

/* One request from parse to the last byte. */
struct job {
    struct oai *o;
    struct gen *g;
    struct sw_api_oai_req req;
    char model[128];
    char id[48];
    int64_t created;
    size_t n_prompt;
    uint32_t max_tokens;
    uint64_t handle;
    const char *stops[SW_API_OAI_MAX_STOP + 8];
    size_t n_stops;
    struct sw_api_oai_text text;
    struct sw_buf out;       /* non-stream: the whole text */
    size_t taken;            /* tokens taken from g */
    uint32_t n_gen;
    const char *finish;      /* "stop" / "length" once finished */
    int failed;              /* the generation failed: err */
    struct sw_api_oai_error err;
    int cancelled;
    int role_sent, tail_sent;
};

static void job_cancel(struct job *j)
{
    if (!j->cancelled && j->g) {
        j->cancelled = 1;
        j->o->be.cancel(j->o->be.ud, j->handle);
    }
}

static void job_free(struct job *j)
{
    if (!j) return;
    if (j->g) {
        pthread_mutex_lock(&j->g->mu);
        int ended = j->g->ended;
        pthread_mutex_unlock(&j->g->mu);
        if (!ended) job_cancel(j);
        pthread_mutex_lock(&j->g->mu);
        gen_unref_locked(j->g);
    }
    sw_api_oai_req_free(&j->req);
    sw_api_oai_text_free(&j->text);
    sw_buf_free(&j->out);
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
    err_set(e, st, st == 429 ? "rate_limit_error" : "server_error", map_code(rc), NULL, "%s%s",
            st == 500 ? "the generation failed: " : "", msg && msg[0] ? msg : sw_strerror(rc));
    if (st == 429) e->retry_after_s = BUSY_RETRY_AFTER_S;
}

/* Takes the tokens that arrived (waiting up to wait_ms for one), turns them into text
 * appended to delta. Returns 1 once finished (j->finish set, or j->failed), 0 otherwise. */
static int job_pump(struct job *j, struct sw_buf *delta, uint32_t wait_ms)
{
    if (j->finish || j->failed) return 1;
    struct gen *g = j->g;
    int32_t toks[256];
    uint8_t eog[256];
    size_t n = 0;
    int ended, rc;
    char msg[512];
    pthread_mutex_lock(&g->mu);
    if (g->n == j->taken && !g->ended && !g->rc && wait_ms) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        ts.tv_sec += wait_ms / 1000 + ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    }
    while (j->taken < g->n && n < 256) {
        toks[n] = g->toks[j->taken];
        eog[n] = g->eog[j->taken];
        n++;
        j->taken++;
    }
    int more = j->taken < g->n;
    ended = g->ended && !more;
    rc = g->rc;
    snprintf(msg, sizeof msg, "%s", g->msg);
    pthread_mutex_unlock(&g->mu);
    struct sw_buf piece = { 0 };
    for (size_t i = 0; i < n && !j->finish; i++) {
        j->n_gen++;
        piece.len = 0;
        j->o->be.piece(j->o->be.ud, toks[i], &piece);
        int st = sw_api_oai_text_push(&j->text, piece.data, piece.len, delta);
        if (st == 1) {
            j->finish = "stop";
            job_cancel(j); /* a stop string: the rest is not wanted */
        } else if (eog[i]) {
            j->finish = "stop";
        } else if (j->n_gen >= j->max_tokens) {
            j->finish = "length";
        }
    }
    sw_buf_free(&piece);
    if (!j->finish && rc && rc != SW_ECLOSED && (ended || rc == SW_ENOMEM)) {
        j->failed = 1;
        gen_err(&j->err, rc, msg);
        return 1;
    }
    if (!j->finish && ended) {
        if (rc == SW_ECLOSED && !j->cancelled) {
            j->failed = 1;
            err_set(&j->err, 503, "server_error", NULL, NULL, "the generation was stopped: %s",
                    msg[0] ? msg : "the node is stopping");
            return 1;
        }
        /* finished on the backend's side (its limit, or the context) */
        j->finish = "length";
    }
    if (j->finish && strcmp(j->finish, "stop") == 0 && j->text.stopped) return 1;
    if (j->finish) sw_api_oai_text_finish(&j->text, delta);
    return j->finish != NULL;
}

/* ---------------------------------------------------------------- JSON out */

static json_t *jstr(const struct sw_buf *b)
{
    struct sw_buf s = { 0 };
    sw_api_utf8_sanitize(b->data, b->len, &s); /* already valid: a guard for jansson */
    json_t *v = json_stringn(s.data ? (const char *)s.data : "", s.len);
    sw_buf_free(&s);
    return v;
}

static json_t *usage_obj(const struct job *j)
{
    return json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)j->n_prompt, "completion_tokens",
                     (json_int_t)j->n_gen, "total_tokens", (json_int_t)(j->n_prompt + j->n_gen));
}

static json_t *head_obj(const struct job *j, const char *object)
{
    return json_pack("{s:s,s:s,s:I,s:s}", "id", j->id, "object", object, "created", (json_int_t)j->created, "model",
                     j->model);
}

static char *whole_response(struct job *j)
{
    json_t *o = head_obj(j, j->req.chat ? "chat.completion" : "text_completion");
    json_t *choice;
    if (j->req.chat)
        choice = json_pack("{s:i,s:{s:s,s:o,s:n},s:n,s:s}", "index", 0, "message", "role", "assistant", "content",
                           jstr(&j->out), "refusal", "logprobs", "finish_reason", j->finish);
    else
        choice = json_pack("{s:o,s:i,s:n,s:s}", "text", jstr(&j->out), "index", 0, "logprobs", "finish_reason",
                           j->finish);
    json_object_set_new(o, "choices", json_pack("[o]", choice));
    json_object_set_new(o, "usage", usage_obj(j));
    if (j->req.chat) json_object_set_new(o, "system_fingerprint", json_null());
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* One chunk: text (may be NULL) and/or a finish reason; role for the chat's first. */
static void sse_chunk(struct job *j, struct sw_buf *out, const struct sw_buf *text, const char *finish, int role)
{
    json_t *o = head_obj(j, j->req.chat ? "chat.completion.chunk" : "text_completion");
    json_t *choice;
    if (j->req.chat) {
        json_t *delta = json_object();
        if (role) json_object_set_new(delta, "role", json_string("assistant"));
        if (role || text) json_object_set_new(delta, "content", text ? jstr(text) : json_string(""));
        choice = json_pack("{s:i,s:o,s:n,s:o}", "index", 0, "delta", delta, "logprobs", "finish_reason",
                           finish ? json_string(finish) : json_null());
        json_object_set_new(o, "system_fingerprint", json_null());
    } else {
        struct sw_buf empty = { 0 };
        choice = json_pack("{s:o,s:i,s:n,s:o}", "text", jstr(text ? text : &empty), "index", 0, "logprobs",
                           "finish_reason", finish ? json_string(finish) : json_null());
    }
    json_object_set_new(o, "choices", json_pack("[o]", choice));
    /* with include_usage every chunk carries "usage": null, the last one the counts */
    if (j->req.include_usage) json_object_set_new(o, "usage", json_null());
    char *s = json_dumps(o, JSON_COMPACT);
    if (s) sw_api_sse_data(out, s, strlen(s));
    free(s);
    json_decref(o);
}

static void sse_tail(struct job *j, struct sw_buf *out)
{
    if (j->failed) {
        struct sw_api_response r = { 0 };
        sw_api_oai_error_resp(&j->err, &r);
        if (r.body) sw_api_sse_data(out, r.body, strlen(r.body));
        free(r.body);
    } else {
        sse_chunk(j, out, NULL, j->finish, 0);
        if (j->req.include_usage) {
            json_t *o = head_obj(j, j->req.chat ? "chat.completion.chunk" : "text_completion");
            json_object_set_new(o, "choices", json_array());
            json_object_set_new(o, "usage", usage_obj(j));
            char *s = json_dumps(o, JSON_COMPACT);
            if (s) sw_api_sse_data(out, s, strlen(s));
            free(s);
            json_decref(o);
        }
    }
    sw_buf_append(out, "data: [DONE]\n\n", 14);
    j->tail_sent = 1;
}

/* sw_api_stream.read, on the connection's thread */
static int stream_read(void *ud, struct sw_buf *out, uint32_t wait_ms)
{
    struct job *j = ud;
    if (j->tail_sent) return 1;
    if (j->req.chat && !j->role_sent) {
        j->role_sent = 1;
        sse_chunk(j, out, NULL, NULL, 1);
        return 0;
    }
    struct sw_buf delta = { 0 };
    int fin = job_pump(j, &delta, wait_ms);
    if (delta.len) sse_chunk(j, out, &delta, NULL, 0);
    sw_buf_free(&delta);
    if (fin) {
        sse_tail(j, out);
        return 1;
    }
    return sw_buf_ok(out) ? 0 : SW_ENOMEM;
}

static void stream_done(void *ud, int completed)
{
    (void)completed;
    job_free(ud); /* cancels a generation still running (the client left) */
}

/* ---------------------------------------------------------------- handlers */

static int model_of(struct oai *o, struct sw_api_oai_model *m, struct sw_api_oai_error *e)
{
    char msg[512] = "";
    memset(m, 0, sizeof *m);
    int rc = o->be.model(o->be.ud, m, msg, sizeof msg);
    if (rc) return err_set(e, 503, "server_error", "model_not_ready", NULL, "%s", msg[0] ? msg : sw_strerror(rc));
    return 0;
}

static void h_models(void *ud, const struct sw_api_request *req, struct sw_api_response *resp)
{
    (void)req;
    struct oai *o = ud;
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
    struct oai *o = ud;
    const char *id = req->path + strlen("/v1/models/");
    struct sw_api_oai_model m;
    struct sw_api_oai_error e = { 0 };
    if (model_of(o, &m, &e)) {
        sw_api_oai_error_resp(&e, resp);
        return;
    }
    if (strcmp(id, m.id)) {
        err_set(&e, 404, "invalid_request_error", "model_not_found", "model",
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

/* Parse, check against the model, tokenize and open the generation. 0 or an error in e. */
static int job_start(struct job *j, const struct sw_api_request *req, struct sw_api_oai_error *e)
{
    struct oai *o = j->o;
    int rc = sw_api_oai_parse(j->req.chat, req->body, req->body_len, &j->req, e);
    if (rc) return rc;
    struct sw_api_oai_model m;
    if ((rc = model_of(o, &m, e))) return rc;
    if (j->req.model && j->req.model[0] && strcmp(j->req.model, m.id))
        return err_set(e, 404, "invalid_request_error", "model_not_found", "model",
                       "The model '%.100s' does not exist: this node serves '%s' (GET /v1/models)", j->req.model, m.id);
    snprintf(j->model, sizeof j->model, "%s", m.id);
    char msg[600] = "";
    if ((rc = o->be.ready(o->be.ud, msg, sizeof msg)))
        return err_set(e, 503, "server_error", "swarm_not_ready", NULL, "%s", msg[0] ? msg : sw_strerror(rc));
    /* the prompt's ids */
    int32_t *ids = NULL;
    size_t n = 0;
    const char *what = j->req.chat ? "messages" : "prompt";
    if (j->req.chat) {
        struct sw_buf p = { 0 };
        const char *const *tstops = NULL;
        char tmpl[64] = "";
        rc = o->be.chat(o->be.ud, j->req.msgs, j->req.n_msgs, &p, &tstops, tmpl, sizeof tmpl);
        if (!rc) rc = o->be.tokenize(o->be.ud, p.data ? (const char *)p.data : "", p.len, &ids, &n);
        sw_buf_free(&p);
        for (size_t i = 0; !rc && tstops && tstops[i] && j->n_stops < SW_API_OAI_MAX_STOP + 8; i++)
            j->stops[j->n_stops++] = tstops[i];
    } else if (j->req.prompt) {
        rc = o->be.tokenize(o->be.ud, j->req.prompt, j->req.prompt_len, &ids, &n);
    } else {
        n = j->req.n_prompt_ids;
        ids = malloc(n * sizeof *ids);
        if (!ids) rc = SW_ENOMEM;
        else memcpy(ids, j->req.prompt_ids, n * sizeof *ids);
        for (size_t i = 0; !rc && i < n; i++)
            if ((uint32_t)ids[i] >= m.n_vocab) {
                free(ids);
                return BAD(e, "prompt", "token id %d is outside the vocabulary (%u tokens)", (int)j->req.prompt_ids[i],
                           m.n_vocab);
            }
    }
    if (rc) {
        free(ids);
        if (rc == SW_ESTATE) return err_set(e, 503, "server_error", "swarm_not_ready", NULL, "no tokenizer yet");
        return err_set(e, map_status(rc), "server_error", NULL, what, "cannot tokenize the %s: %s", what, sw_strerror(rc));
    }
    if (!n) {
        free(ids);
        return BAD(e, what, "the %s is empty after tokenization", what);
    }
    j->n_prompt = n;
    if (n >= m.n_ctx) {
        free(ids);
        return err_set(e, 400, "invalid_request_error", "context_length_exceeded", what,
                       "This model's maximum context length is %u tokens; the %s has %zu", m.n_ctx, what, n);
    }
    uint32_t room = m.n_ctx - (uint32_t)n;
    if (j->req.max_tokens) {
        if (j->req.max_tokens > room) {
            free(ids);
            return err_set(e, 400, "invalid_request_error", "context_length_exceeded",
                           j->req.chat ? "max_tokens" : "max_tokens",
                           "This model's maximum context length is %u tokens; you requested %zu (%zu in the %s, %u "
                           "for the completion)",
                           m.n_ctx, n + j->req.max_tokens, n, what, j->req.max_tokens);
        }
        j->max_tokens = j->req.max_tokens;
    } else {
        j->max_tokens = j->req.chat ? room : SW_MIN(room, (uint32_t)DEFAULT_COMPLETION_TOKENS);
    }
    if (!j->req.seed_set) sw_random_bytes(&j->req.sp.seed, sizeof j->req.sp.seed);
    for (size_t i = 0; i < j->req.n_stop; i++) j->stops[j->n_stops++] = j->req.stop[i];
    sw_api_oai_text_init(&j->text, j->stops, j->n_stops);
    /* the queue the backend feeds */
    struct gen *g = calloc(1, sizeof *g);
    if (!g) {
        free(ids);
        return err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->refs = 2;
    struct sw_api_oai_events ev = { ev_token, ev_end, g };
    msg[0] = 0;
    rc = o->be.open(o->be.ud, ids, n, j->max_tokens, j->req.chat, &j->req.sp, &ev, &j->handle, msg, sizeof msg);
    free(ids);
    if (rc) {
        pthread_mutex_destroy(&g->mu);
        pthread_cond_destroy(&g->cv);
        free(g);
        gen_err(e, rc, msg);
        return SW_EINVAL;
    }
    j->g = g;
    uint8_t rnd[12];
    sw_random_bytes(rnd, sizeof rnd);
    char hex[25];
    sw_hex_encode(rnd, sizeof rnd, hex);
    snprintf(j->id, sizeof j->id, "%s-%s", j->req.chat ? "chatcmpl" : "cmpl", hex);
    j->created = (int64_t)time(NULL);
    return 0;
}

static void h_generate(struct oai *o, int chat, const struct sw_api_request *req, struct sw_api_response *resp)
{
    struct job *j = calloc(1, sizeof *j);
    struct sw_api_oai_error e = { 0 };
    if (!j) {
        sw_api_error(resp, 500, "out of memory");
        return;
    }
    j->o = o;
    j->req.chat = chat;
    if (job_start(j, req, &e)) {
        sw_api_oai_error_resp(&e, resp);
        job_free(j);
        return;
    }
    if (j->req.stream) {
        /* wait for the first token (or the end) so that a failed open is an HTTP error */
        for (;;) {
            pthread_mutex_lock(&j->g->mu);
            int any = j->g->n > 0 || j->g->ended || j->g->rc;
            pthread_mutex_unlock(&j->g->mu);
            if (any) break;
            if (sw_api_call_gone(req->call)) {
                job_free(j);
                sw_api_error(resp, 503, "the client left");
                return;
            }
            pthread_mutex_lock(&j->g->mu);
            if (!j->g->n && !j->g->ended && !j->g->rc) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += WAIT_STEP_MS * 1000000L;
                ts.tv_sec += ts.tv_nsec / 1000000000L;
                ts.tv_nsec %= 1000000000L;
                pthread_cond_timedwait(&j->g->cv, &j->g->mu, &ts);
            }
            pthread_mutex_unlock(&j->g->mu);
        }
        pthread_mutex_lock(&j->g->mu);
        int failed_early = j->g->n == 0 && (j->g->ended || j->g->rc) && j->g->rc && j->g->rc != SW_ECLOSED;
        pthread_mutex_unlock(&j->g->mu);
        if (!failed_early) {
            resp->status = 200;
            resp->content_type = "text/event-stream";
            resp->stream = (struct sw_api_stream){ stream_read, stream_done, j };
            return;
        }
    }
    /* whole response (or a stream whose generation failed before its first token) */
    while (!job_pump(j, &j->out, WAIT_STEP_MS)) {
        if (sw_api_call_gone(req->call)) {
            job_free(j); /* cancels */
            sw_api_error(resp, 503, "the client left");
            return;
        }
    }
    if (j->failed) {
        sw_api_oai_error_resp(&j->err, resp);
    } else {
        resp->body = whole_response(j);
        if (!resp->body) sw_api_error(resp, 500, "out of memory");
    }
    job_free(j);
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

int sw_api_openai_attach(struct sw_api *a, const struct sw_api_oai_backend *be)
{
    if (!a || !be || !be->model || !be->ready || !be->tokenize || !be->piece || !be->chat || !be->open || !be->cancel)
        return SW_EINVAL;
    struct oai *o = calloc(1, sizeof *o);
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
        (rc = sw_api_route_stream(a, "POST", "/v1/chat/completions", SW_API_OAI_MAX_BODY, h_chat, o)))
        return rc;
    return 0;
}
