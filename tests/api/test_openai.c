/* test_openai.c — the OpenAI-compatible layer without a model: request parsing and checks
 * (every refusal names its field), UTF-8 and stop-string hold-back over token-sized pieces,
 * SSE framing, and whole HTTP exchanges against a fake backend (completions, chat, streams,
 * a client leaving mid-stream, errors), on a real server on 127.0.0.1. */
#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include <jansson.h>

#include "api/oai_int.h"
#include "infer/tok.h"
#include "test.h"

/* ---------------------------------------------------------------- parsing */

static int parse(int chat, const char *body, struct sw_api_oai_req *r, struct sw_api_oai_error *e)
{
    return sw_api_oai_parse(chat, (const uint8_t *)body, strlen(body), r, e);
}

static void expect_bad(int chat, const char *body, int status, const char *param)
{
    struct sw_api_oai_req r;
    struct sw_api_oai_error e;
    int rc = parse(chat, body, &r, &e);
    CHECK_MSG(rc == SW_EINVAL, "accepted: %s", body);
    CHECK_MSG(e.status == status, "%s: status %d, want %d (%s)", body, e.status, status, e.message);
    if (param) CHECK_MSG(!strcmp(e.param, param), "%s: param '%s', want '%s' (%s)", body, e.param, param, e.message);
    CHECK_MSG(e.message[0] != 0, "%s: no message", body);
    sw_api_oai_req_free(&r);
}

static void test_parse_completions(void)
{
    struct sw_api_oai_req r;
    struct sw_api_oai_error e;
    CHECK_EQ_INT(parse(0, "{\"prompt\":\"Once\",\"max_tokens\":40,\"temperature\":0,\"top_k\":5,\"seed\":-3,"
                          "\"stop\":[\"a\",\"bc\"],\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                          "\"n\":1,\"echo\":false,\"logprobs\":null,\"user\":\"u\",\"whatever\":{}}",
                       &r, &e),
                 0);
    CHECK_EQ_STR(r.prompt, "Once");
    CHECK_EQ_INT(r.prompt_len, 4);
    CHECK_EQ_INT(r.max_tokens, 40);
    CHECK(r.sp.temperature == 0.0f && r.sp.top_k == 5 && r.sp.top_p == 1.0f);
    CHECK(r.seed_set && r.sp.seed == (uint64_t)-3);
    CHECK_EQ_INT(r.n_stop, 2);
    CHECK_EQ_STR(r.stop[1], "bc");
    CHECK(r.stream && r.include_usage);
    sw_api_oai_req_free(&r);
    /* defaults: OpenAI's temperature 1, top_p 1 */
    CHECK_EQ_INT(parse(0, "{\"prompt\":[\"x\"],\"stop\":\"s\"}", &r, &e), 0);
    CHECK(r.sp.temperature == 1.0f && r.max_tokens == 0 && !r.stream && r.n_stop == 1 && !r.seed_set);
    CHECK_EQ_STR(r.prompt, "x");
    sw_api_oai_req_free(&r);
    CHECK_EQ_INT(parse(0, "{\"prompt\":[1,2,3]}", &r, &e), 0);
    CHECK(r.n_prompt_ids == 3 && r.prompt_ids[2] == 3 && !r.prompt);
    sw_api_oai_req_free(&r);
    CHECK_EQ_INT(parse(0, "{\"prompt\":[[7,8]],\"max_tokens\":2.0}", &r, &e), 0);
    CHECK(r.n_prompt_ids == 2 && r.prompt_ids[0] == 7 && r.max_tokens == 2);
    sw_api_oai_req_free(&r);
    /* refusals, each naming its field */
    expect_bad(0, "{nope", 400, "");
    expect_bad(0, "[]", 400, "");
    expect_bad(0, "{\"prompt\":\"a\",\"prompt\":\"b\"}", 400, "");
    expect_bad(0, "{}", 400, "prompt");
    expect_bad(0, "{\"prompt\":[\"a\",\"b\"]}", 400, "prompt");
    expect_bad(0, "{\"prompt\":[[1],[2]]}", 400, "prompt");
    expect_bad(0, "{\"prompt\":[]}", 400, "prompt");
    expect_bad(0, "{\"prompt\":[1,\"a\"]}", 400, "prompt");
    expect_bad(0, "{\"prompt\":[-1]}", 400, "prompt");
    expect_bad(0, "{\"prompt\":{}}", 400, "prompt");
    expect_bad(0, "{\"prompt\":\"a\",\"n\":9}", 400, "n");
    expect_bad(0, "{\"prompt\":\"a\",\"n\":2,\"best_of\":3}", 400, "best_of");
    expect_bad(0, "{\"prompt\":\"a\",\"n\":\"1\"}", 400, "n");
    expect_bad(0, "{\"prompt\":\"a\",\"max_tokens\":0}", 400, "max_tokens");
    expect_bad(0, "{\"prompt\":\"a\",\"max_tokens\":1.5}", 400, "max_tokens");
    expect_bad(0, "{\"prompt\":\"a\",\"temperature\":-1}", 400, "temperature");
    expect_bad(0, "{\"prompt\":\"a\",\"top_p\":\"x\"}", 400, "top_p");
    expect_bad(0, "{\"prompt\":\"a\",\"seed\":\"x\"}", 400, "seed");
    expect_bad(0, "{\"prompt\":\"a\",\"stream\":1}", 400, "stream");
    expect_bad(0, "{\"prompt\":\"a\",\"stream_options\":{}}", 400, "stream_options");
    expect_bad(0, "{\"prompt\":\"a\",\"stream\":true,\"stream_options\":{\"include_usage\":1}}", 400,
               "stream_options.include_usage");
    expect_bad(0, "{\"prompt\":\"a\",\"stop\":[\"\"]}", 400, "stop");
    expect_bad(0, "{\"prompt\":\"a\",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\"]}", 400, "stop");
    expect_bad(0, "{\"prompt\":\"a\",\"stop\":7}", 400, "stop");
    expect_bad(0, "{\"prompt\":\"a\",\"logprobs\":6}", 400, "logprobs");
    expect_bad(0, "{\"prompt\":\"a\",\"echo\":true}", 400, "echo");
    expect_bad(0, "{\"prompt\":\"a\",\"best_of\":2}", 400, "best_of");
    expect_bad(0, "{\"prompt\":\"a\",\"suffix\":\"z\"}", 400, "suffix");
    expect_bad(0, "{\"prompt\":\"a\",\"presence_penalty\":0.5}", 400, "presence_penalty");
    expect_bad(0, "{\"prompt\":\"a\",\"frequency_penalty\":1}", 400, "frequency_penalty");
    expect_bad(0, "{\"prompt\":\"a\",\"logit_bias\":{\"5\":1}}", 400, "logit_bias");
    expect_bad(0, "{\"prompt\":\"a\",\"model\":5}", 400, "model");
    /* neutral values of unsupported fields pass */
    CHECK_EQ_INT(parse(0, "{\"prompt\":\"a\",\"presence_penalty\":0,\"frequency_penalty\":0.0,\"logit_bias\":{},"
                          "\"suffix\":null,\"best_of\":1}",
                       &r, &e),
                 0);
    sw_api_oai_req_free(&r);
    /* nesting is capped before the parser recurses */
    char deep[400];
    memset(deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = 0;
    expect_bad(0, deep, 400, "");
}

static void test_parse_chat(void)
{
    struct sw_api_oai_req r;
    struct sw_api_oai_error e;
    CHECK_EQ_INT(parse(1, "{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"sys\"},"
                          "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\","
                          "\"text\":\"b\"}]},{\"role\":\"assistant\",\"content\":null},{\"role\":\"user\",\"content\":"
                          "\"\\u00e9\"}],\"max_completion_tokens\":7,\"logprobs\":false,\"tools\":[],"
                          "\"tool_choice\":\"none\",\"response_format\":{\"type\":\"text\"}}",
                       &r, &e),
                 0);
    CHECK_EQ_STR(r.model, "m");
    CHECK_EQ_INT(r.n_msgs, 4);
    CHECK_EQ_STR(r.msgs[0].role, "system");
    CHECK_EQ_STR(r.msgs[1].content, "a\nb");
    CHECK_EQ_STR(r.msgs[2].content, "");
    CHECK_EQ_STR(r.msgs[3].content, "\xc3\xa9");
    CHECK_EQ_INT(r.max_tokens, 7);
    sw_api_oai_req_free(&r);
    expect_bad(1, "{}", 400, "messages");
    expect_bad(1, "{\"messages\":[]}", 400, "messages");
    expect_bad(1, "{\"messages\":[5]}", 400, "messages[0]");
    expect_bad(1, "{\"messages\":[{\"content\":\"x\"}]}", 400, "messages[0].role");
    expect_bad(1, "{\"messages\":[{\"role\":\"function\",\"content\":\"x\"}]}", 400, "messages[0].role");
    expect_bad(1, "{\"messages\":[{\"role\":\"user\",\"content\":null}]}", 400, "messages[0].content");
    expect_bad(1, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 400,
               "messages[0].content[0].type");
    expect_bad(1, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":3}]}]}", 400,
               "messages[0].content[0].text");
    expect_bad(1, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", 400, "messages[0].content");
    expect_bad(1, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":1}", 400, "logprobs");
    expect_bad(1, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,\"top_logprobs\":21}", 400,
               "top_logprobs");
    expect_bad(1, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}", 400, "top_logprobs");
    expect_bad(1, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{}]}", 400, "tools[0].type");
    expect_bad(1, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"required\"}", 400,
               "tool_choice");
    expect_bad(1, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"xml\"}}",
               400, "response_format.type");
    expect_bad(1, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\","
                  "\"json_schema\":{\"name\":\"p\",\"schema\":{\"type\":\"object\",\"properties\":{\"age\":{\"type\":"
                  "\"integer\",\"pattern\":\"x\"}}}}}}",
               400, "response_format.json_schema.schema.properties.age");
    expect_bad(1, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":9}", 400, "n");
    {
        struct sw_api_oai_req r;
        struct sw_api_oai_error e;
        CHECK_EQ_INT(parse(1, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":3,\"logprobs\":true,"
                              "\"top_logprobs\":4,\"response_format\":{\"type\":\"json_object\"}}",
                           &r, &e),
                     0);
        CHECK(r.n == 3 && r.logprobs && r.top_logprobs == 4 && r.grammar && r.grammar_len > 20);
        sw_api_oai_req_free(&r);
    }
}

/* ---------------------------------------------------------------- text */

/* Feeds pieces one by one, returns what was released (NUL-terminated, static). */
static const char *feed(const char *const *stops, size_t n_stops, const char *const *pieces, size_t n, int *stopped)
{
    static char result[512];
    struct sw_api_oai_text t;
    sw_api_oai_text_init(&t, stops, n_stops);
    struct sw_buf out = { 0 };
    *stopped = 0;
    for (size_t i = 0; i < n && !*stopped; i++) {
        size_t before = out.len;
        int rc = sw_api_oai_text_push(&t, pieces[i], strlen(pieces[i]), &out);
        *stopped = rc == 1;
        /* everything released so far is valid UTF-8 on its own */
        struct sw_buf chk = { 0 };
        sw_api_utf8_sanitize(out.data + before, out.len - before, &chk);
        CHECK_MSG(chk.len == out.len - before && (!chk.len || !memcmp(chk.data, out.data + before, chk.len)),
                  "piece %zu released invalid UTF-8", i);
        sw_buf_free(&chk);
    }
    if (!*stopped) sw_api_oai_text_finish(&t, &out);
    snprintf(result, sizeof result, "%.*s", (int)out.len, out.data ? (const char *)out.data : "");
    sw_buf_free(&out);
    sw_api_oai_text_free(&t);
    return result;
}

static void test_text(void)
{
    int st;
    /* "é" (C3 A9) and "€" (E2 82 AC) split across byte tokens */
    const char *p1[] = { "caf", "\xc3", "\xa9 ", "\xe2", "\x82", "\xac!" };
    CHECK_EQ_STR(feed(NULL, 0, p1, 6, &st), "caf\xc3\xa9 \xe2\x82\xac!");
    /* incremental: nothing of an incomplete character comes out early */
    struct sw_api_oai_text t;
    sw_api_oai_text_init(&t, NULL, 0);
    struct sw_buf out = { 0 };
    sw_api_oai_text_push(&t, "a\xe2\x82", 3, &out);
    CHECK_EQ_INT(out.len, 1);
    sw_api_oai_text_push(&t, "\xac", 1, &out);
    CHECK_EQ_INT(out.len, 4);
    sw_buf_free(&out);
    sw_api_oai_text_free(&t);
    /* invalid bytes become U+FFFD; an unfinished character at the end too */
    const char *p2[] = { "a\xff", "b\xc3" };
    CHECK_EQ_STR(feed(NULL, 0, p2, 2, &st), "a\xef\xbf\xbd" "b\xef\xbf\xbd");
    const char *p3[] = { "\xed\xa0\x80", "\xc0\xaf" }; /* a surrogate, an overlong */
    CHECK_EQ_STR(feed(NULL, 0, p3, 2, &st), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    /* stop strings: across pieces, never leaked, earliest wins */
    const char *stops[] = { "END", "<|im_end|>" };
    const char *p4[] = { "hello E", "N", "D world" };
    CHECK_EQ_STR(feed(stops, 2, p4, 3, &st), "hello ");
    CHECK(st);
    const char *p5[] = { "x <|im", "_en", "d|> y" };
    CHECK_EQ_STR(feed(stops, 2, p5, 3, &st), "x ");
    CHECK(st);
    /* a false start is released once it cannot be a stop string */
    const char *p6[] = { "EN", "x", " <|im", "_start" };
    CHECK_EQ_STR(feed(stops, 2, p6, 4, &st), "ENx <|im_start");
    CHECK(!st);
    sw_api_oai_text_init(&t, stops, 2);
    sw_api_oai_text_push(&t, "ab <|im_e", 9, &out);
    CHECK_EQ_INT(out.len, 3); /* "ab " out, "<|im_e" held */
    sw_buf_free(&out);
    sw_api_oai_text_free(&t);
    /* a stop string made of multi-byte characters, split mid-character */
    const char *stops2[] = { "\xc3\xa9t\xc3\xa9" };
    const char *p7[] = { "un \xc3", "\xa9t", "\xc3", "\xa9 !" };
    CHECK_EQ_STR(feed(stops2, 1, p7, 4, &st), "un ");
    CHECK(st);
}

static void test_sse(void)
{
    struct sw_buf b = { 0 };
    CHECK_EQ_INT(sw_api_sse_data(&b, "{\"a\":1}", 7), 0);
    CHECK_EQ_INT(sw_api_sse_data(&b, "x\ny", 3), SW_EINVAL);
    CHECK_EQ_STR(sw_buf_cstr(&b), "data: {\"a\":1}\n\n");
    sw_buf_free(&b);
    struct sw_api_oai_error e = { 0 };
    e.status = 400;
    e.type = "invalid_request_error";
    snprintf(e.param, sizeof e.param, "n");
    snprintf(e.message, sizeof e.message, "bad \xff");
    struct sw_api_response r = { 0 };
    sw_api_oai_error_resp(&e, &r);
    CHECK_EQ_INT(r.status, 400);
    CHECK_EQ_STR(r.body, "{\"error\":{\"message\":\"bad \xef\xbf\xbd\",\"type\":\"invalid_request_error\",\"param\":\"n\","
                         "\"code\":null}}");
    free(r.body);
}

/* ---------------------------------------------------------------- HTTP with a fake backend */

/* The fake model: text in -> one token per byte (id = byte + 1, BOS 0 first); generation
 * emits a fixed token list from a thread, like the node's loop would. */
struct fake {
    pthread_mutex_t mu;
    _Atomic int open_rc;
    _Atomic int n_open, n_cancel, n_done;
    const int32_t *script;   /* tokens to emit; an id of 999 is end-of-generation */
    size_t n_script;
    _Atomic uint32_t delay_ms;
    _Atomic int last_max;
    _Atomic uint32_t n_ctx;  /* 0: 64 */
};

struct run {
    struct fake *f;
    struct sw_api_oai_events ev;
    uint32_t max;
    _Atomic int cancelled;
};

static void *run_gen(void *arg)
{
    struct run *r = arg;
    uint32_t n = 0;
    for (size_t i = 0; i < r->f->n_script && n < r->max && !r->cancelled; i++, n++) {
        if (r->f->delay_ms) usleep(r->f->delay_ms * 1000);
        r->ev.on_token(r->ev.ud, r->f->script[i], r->f->script[i] == 999, NULL);
        if (r->f->script[i] == 999) break;
    }
    int c = r->cancelled;
    r->ev.on_end(r->ev.ud, c ? SW_ECLOSED : 0, c ? "cancelled" : NULL);
    r->f->n_done++;
    return NULL;
}

static struct run *runs[256];
static int too_many_runs;
static size_t n_runs;

static int f_model(void *ud, struct sw_api_oai_model *out, char *msg, size_t msg_len)
{
    struct fake *f = ud;
    (void)msg;
    (void)msg_len;
    snprintf(out->id, sizeof out->id, "fake-model");
    out->created = 1700000000;
    out->n_ctx = f->n_ctx ? f->n_ctx : 64;
    out->n_vocab = 1000;
    return 0;
}

static int f_ready(void *ud, char *msg, size_t msg_len)
{
    struct fake *f = ud;
    if (f->open_rc == SW_ENOTFOUND) {
        snprintf(msg, msg_len, "shard 3: no node has it loaded");
        return SW_ESTATE;
    }
    return 0;
}

static int f_tokenize(void *ud, const char *text, size_t len, int32_t **ids, size_t *n)
{
    (void)ud;
    *ids = malloc((len + 1) * sizeof **ids);
    (*ids)[0] = 0;
    for (size_t i = 0; i < len; i++) (*ids)[i + 1] = (uint8_t)text[i] + 1;
    *n = len + 1;
    return 0;
}

static int f_piece(void *ud, int32_t id, struct sw_buf *out)
{
    (void)ud;
    if (id >= 1 && id <= 256) sw_buf_append_byte(out, (uint8_t)(id - 1));
    return 0;
}

static int f_chat(void *ud, const struct sw_api_oai_msg *m, size_t n, struct sw_buf *out, const char *const **stops,
                  char *tmpl, size_t tl)
{
    (void)ud;
    static const char *const st[] = { "<END>", NULL };
    for (size_t i = 0; i < n; i++) sw_buf_printf(out, "[%s]%s", m[i].role, m[i].content);
    sw_buf_printf(out, "[assistant]");
    *stops = st;
    snprintf(tmpl, tl, "fake");
    return 0;
}

static int f_open(void *ud, const int32_t *prompt, size_t n, uint32_t max, int chat, const struct sw_api_oai_sampling *sp,
                  const struct sw_api_oai_events *ev, uint64_t *handle, char *msg, size_t msg_len)
{
    (void)prompt;
    (void)n;
    (void)chat;
    (void)sp;
    struct fake *f = ud;
    if (f->open_rc) {
        snprintf(msg, msg_len, "no route");
        return f->open_rc;
    }
    struct run *r = calloc(1, sizeof *r);
    r->f = f;
    r->ev = *ev;
    r->max = max;
    pthread_mutex_lock(&f->mu);
    f->n_open++;
    f->last_max = (int)max;
    *handle = n_runs;
    if (n_runs < sizeof runs / sizeof runs[0]) runs[n_runs++] = r; /* else leaked: the test fails below */
    else too_many_runs = 1;
    pthread_mutex_unlock(&f->mu);
    pthread_t th;
    pthread_create(&th, NULL, run_gen, r);
    pthread_detach(th);
    return 0;
}

static void f_cancel(void *ud, uint64_t h)
{
    struct fake *f = ud;
    pthread_mutex_lock(&f->mu);
    f->n_cancel++;
    if (h < n_runs) runs[h]->cancelled = 1;
    pthread_mutex_unlock(&f->mu);
}

static int post(uint16_t port, const char *path, const char *body, char **out, int *status)
{
    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, path);
    return sw_api_fetch(body ? "POST" : "GET", url, body, body ? strlen(body) : 0, 10000, out, NULL, status, err,
                        sizeof err);
}

static size_t hdr_cb(char *b, size_t sz, size_t n, void *ud)
{
    struct sw_buf *h = ud;
    sw_buf_append(h, b, sz * n);
    return sz * n;
}

/* The response headers of a POST (lower-cased), body discarded. */
static void post_headers(uint16_t port, const char *path, const char *body, struct sw_buf *h)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, path);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, hdr_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, h);
    struct curl_slist *json = curl_slist_append(NULL, "Content-Type: application/json"); /* else 415 */
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, json);
    FILE *devnull = fopen("/dev/null", "w");
    curl_easy_setopt(c, CURLOPT_WRITEDATA, devnull);
    curl_easy_perform(c);
    curl_easy_cleanup(c);
    curl_slist_free_all(json);
    fclose(devnull);
    for (size_t i = 0; i < h->len; i++) h->data[i] = (uint8_t)tolower(h->data[i]);
    sw_buf_append_byte(h, 0);
}

/* The "content" strings of a stream's chunks or lines, joined (no escapes in them here):
 * text split over chunks is sent once, and nothing of the call leaks into it. */
static int joined_content_is(const char *body, const char *want)
{
    struct sw_buf cat = { 0 };
    for (const char *p = body; (p = strstr(p, "\"content\":\"")); p++) {
        p += 11;
        const char *q = strchr(p, '"');
        if (!q) break;
        sw_buf_append(&cat, p, (size_t)(q - p));
    }
    int ok = sw_buf_cstr(&cat) ? !strcmp(sw_buf_cstr(&cat), want) : !want[0];
    sw_buf_free(&cat);
    return ok;
}

/* "hé<END>x" as byte tokens, then EOG */
#define T(c) ((int32_t)(uint8_t)(c) + 1)
static const int32_t SCRIPT[] = { T('h'), T('\xc3'), T('\xa9'), T(' '), T('w'), T('o'), T('r'), T('l'), T('d'),
                                  T('<'), T('E'), T('N'), T('D'), T('>'), T('x'), 999 };

static void test_http(void)
{
    struct fake f = { .script = SCRIPT, .n_script = sizeof SCRIPT / sizeof SCRIPT[0] };
    pthread_mutex_init(&f.mu, NULL);
    struct sw_api *a = NULL;
    CHECK_EQ_INT(sw_api_new(NULL, &a), 0);
    struct sw_api_oai_backend be = { &f, f_model, f_ready, f_tokenize, f_piece, f_chat, f_open, f_cancel };
    CHECK_EQ_INT(sw_api_openai_attach(a, &be), 0);
    char err[256];
    CHECK_EQ_INT(sw_api_start(a, err, sizeof err), 0);
    uint16_t port = sw_api_port(a);
    char *body = NULL;
    int status = 0;
    CHECK_EQ_INT(post(port, "/v1/models", NULL, &body, &status), 0);
    CHECK_EQ_INT(status, 200);
    CHECK(body && strstr(body, "\"id\":\"fake-model\"") && strstr(body, "\"owned_by\":\"shardswarm\""));
    free(body);
    /* completions: max 4 tokens -> "hé " (the é from two byte tokens), finish "length" */
    CHECK_EQ_INT(post(port, "/v1/completions", "{\"prompt\":\"ab\",\"max_tokens\":4}", &body, &status), 0);
    CHECK_EQ_INT(status, 200);
    CHECK_MSG(body && strstr(body, "\"text\":\"h\xc3\xa9 \"") && strstr(body, "\"finish_reason\":\"length\"") &&
                  strstr(body, "\"prompt_tokens\":3") && strstr(body, "\"completion_tokens\":4") &&
                  strstr(body, "\"object\":\"text_completion\""),
              "%s", body);
    free(body);
    /* default max_tokens 16 (OpenAI's for completions): the end-of-generation token ends it */
    CHECK_EQ_INT(post(port, "/v1/completions", "{\"prompt\":\"ab\"}", &body, &status), 0);
    CHECK_MSG(body && strstr(body, "\"text\":\"h\xc3\xa9 world<END>x\"") && strstr(body, "\"finish_reason\":\"stop\""),
              "%s", body);
    CHECK_EQ_INT(f.last_max, 16);
    free(body);
    /* a stop string: cut before it, the generation cancelled */
    int cancels = f.n_cancel;
    CHECK_EQ_INT(post(port, "/v1/completions", "{\"prompt\":\"ab\",\"stop\":[\"wor\"]}", &body, &status), 0);
    CHECK_MSG(body && strstr(body, "\"text\":\"h\xc3\xa9 \"") && strstr(body, "\"finish_reason\":\"stop\""), "%s", body);
    free(body);
    CHECK(f.n_cancel > cancels);
    /* chat: the template's end-of-turn string stops it; streamed: role chunk, deltas, final, usage, [DONE] */
    CHECK_EQ_INT(post(port, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &body,
                      &status),
                 0);
    CHECK_MSG(body && strstr(body, "\"content\":\"h\xc3\xa9 world\"") && strstr(body, "\"role\":\"assistant\"") &&
                  strstr(body, "\"object\":\"chat.completion\"") && strstr(body, "\"finish_reason\":\"stop\""),
              "%s", body);
    CHECK_EQ_INT(f.last_max, 64 - 20); /* chat: the rest of the context (BOS + 19 bytes) */
    free(body);
    CHECK_EQ_INT(post(port, "/v1/chat/completions",
                      "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true,"
                      "\"stream_options\":{\"include_usage\":true}}",
                      &body, &status),
                 0);
    CHECK_EQ_INT(status, 200);
    CHECK_MSG(body && !strncmp(body, "data: {", 7) && strstr(body, "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}") &&
                  strstr(body, "\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"") &&
                  strstr(body, "\"choices\":[],\"usage\":{") && strstr(body, "data: [DONE]\n\n") &&
                  !strstr(body, "<END") && !strstr(body, "\xc3\"") /* no half character */,
              "%s", body);
    /* the deltas concatenated */
    struct sw_buf cat = { 0 };
    for (const char *p = body; (p = strstr(p, "\"content\":\"")); p++) {
        p += 11;
        const char *q = strchr(p, '"');
        sw_buf_append(&cat, p, (size_t)(q - p));
    }
    CHECK_EQ_STR(sw_buf_cstr(&cat), "h\xc3\xa9 world");
    sw_buf_free(&cat);
    free(body);
    /* errors: 400 naming the field, 404 model, 413, 503 not ready, unknown route */
    CHECK_EQ_INT(post(port, "/v1/completions", "{\"prompt\":\"a\",\"n\":9}", &body, &status), 0);
    CHECK_MSG(status == 400 && strstr(body, "\"param\":\"n\""), "%d %s", status, body);
    free(body);
    CHECK_EQ_INT(post(port, "/v1/completions", "{\"prompt\":\"a\",\"model\":\"other\"}", &body, &status), 0);
    CHECK_MSG(status == 404 && strstr(body, "model_not_found"), "%d %s", status, body);
    free(body);
    CHECK_EQ_INT(post(port, "/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":63}", &body, &status), 0);
    CHECK_MSG(status == 400 && strstr(body, "context_length_exceeded"), "%d %s", status, body);
    free(body);
    size_t big_len = SW_API_OAI_MAX_BODY + 100;
    char *big = malloc(big_len + 1);
    memset(big, ' ', big_len);
    big[big_len] = 0;
    CHECK_EQ_INT(post(port, "/v1/completions", big, &body, &status), 0);
    CHECK_MSG(status == 413 && strstr(body, "\"error\":{"), "%d %s", status, body);
    free(body);
    free(big);
    CHECK_EQ_INT(post(port, "/v1/nope", NULL, &body, &status), 0);
    CHECK_MSG(status == 404 && strstr(body, "\"error\":{"), "%d %s", status, body);
    free(body);
    f.open_rc = SW_ENOTFOUND;
    CHECK_EQ_INT(post(port, "/v1/completions", "{\"prompt\":\"a\"}", &body, &status), 0);
    CHECK_MSG(status == 503 && strstr(body, "shard 3"), "%d %s", status, body);
    free(body);
    /* every node of a shard refused (busy): 429 (and Retry-After); a route that failed: 502 */
    f.open_rc = SW_EBUSY;
    CHECK_EQ_INT(post(port, "/v1/completions", "{\"prompt\":\"a\"}", &body, &status), 0);
    CHECK_MSG(status == 429 && strstr(body, "swarm_busy") && strstr(body, "no route"), "%d %s", status, body);
    free(body);
    struct sw_buf hdrs = { 0 };
    post_headers(port, "/v1/completions", "{\"prompt\":\"a\"}", &hdrs);
    CHECK_MSG(strstr((const char *)hdrs.data, "retry-after: 2"), "headers: %s", (const char *)hdrs.data);
    sw_buf_free(&hdrs);
    f.open_rc = SW_ETIMEDOUT;
    CHECK_EQ_INT(post(port, "/v1/completions", "{\"prompt\":\"a\"}", &body, &status), 0);
    CHECK_MSG(status == 502 && strstr(body, "route_failed") && strstr(body, "no route"), "%d %s", status, body);
    free(body);
    f.open_rc = 0;
    /* a client that leaves mid-stream: the generation is cancelled, the server goes on */
    f.delay_ms = 50;
    cancels = f.n_cancel;
    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/completions", port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"prompt\":\"a\",\"stream\":true}");
    struct curl_slist *json = curl_slist_append(NULL, "Content-Type: application/json"); /* else 415 */
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, json);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 250L); /* leaves after ~4 of the 16 tokens */
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, NULL);
    FILE *devnull = fopen("/dev/null", "w");
    curl_easy_setopt(c, CURLOPT_WRITEDATA, devnull);
    CHECK_EQ_INT(curl_easy_perform(c), CURLE_OPERATION_TIMEDOUT);
    curl_easy_cleanup(c);
    curl_slist_free_all(json);
    fclose(devnull);
    for (int i = 0; i < 100 && f.n_cancel == cancels; i++) usleep(20000);
    CHECK_MSG(f.n_cancel > cancels, "the generation was not cancelled after the client left");
    f.delay_ms = 0;
    CHECK_EQ_INT(post(port, "/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":1}", &body, &status), 0);
    CHECK_EQ_INT(status, 200);
    free(body);
    /* a model that answers with a tool call (the fake has no template: the Hermes form), on
     * /v1 and on Ollama's /api/chat, whole and streamed */
    static const char call[] = "Sure.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call>";
    int32_t tscript[sizeof call];
    for (size_t i = 0; i + 1 < sizeof call; i++) tscript[i] = T(call[i]);
    tscript[sizeof call - 1] = 999;
    f.script = tscript;
    f.n_script = sizeof call;
    f.n_ctx = 4096; /* the definitions take ~450 byte tokens */
    f.delay_ms = 2;   /* tokens one by one: streams send the text before the call in pieces */
    const char *treq = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\","
                       "\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}}]%s}";
    char tbody[400];
    snprintf(tbody, sizeof tbody, treq, "");
    CHECK_EQ_INT(post(port, "/v1/chat/completions", tbody, &body, &status), 0);
    CHECK_MSG(status == 200 && strstr(body, "\"content\":\"Sure.\"") && strstr(body, "\"finish_reason\":\"tool_calls\"") &&
                  strstr(body, "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\":1}\"}"),
              "%d %s", status, body);
    free(body);
    snprintf(tbody, sizeof tbody, treq, ",\"stream\":true");
    CHECK_EQ_INT(post(port, "/v1/chat/completions", tbody, &body, &status), 0);
    CHECK_MSG(status == 200 && joined_content_is(body, "Sure.") && strstr(body, "\"tool_calls\":[{") &&
                  strstr(body, "\"index\":0") && strstr(body, "\"finish_reason\":\"tool_calls\"") && !strstr(body, "<tool_call>"),
              "%d %s", status, body);
    free(body);
    snprintf(tbody, sizeof tbody, treq, ",\"model\":\"fake-model\",\"stream\":false");
    CHECK_EQ_INT(post(port, "/api/chat", tbody, &body, &status), 0);
    CHECK_MSG(status == 200 && strstr(body, "\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{\"x\":1}}}]") &&
                  strstr(body, "\"content\":\"Sure.\""),
              "%d %s", status, body);
    free(body);
    snprintf(tbody, sizeof tbody, treq, ",\"model\":\"fake-model\"");
    CHECK_EQ_INT(post(port, "/api/chat", tbody, &body, &status), 0);
    CHECK_MSG(status == 200 && strstr(body, "\"tool_calls\":[{\"function\":{\"name\":\"f\"") && !strstr(body, "<tool_call>") &&
                  joined_content_is(body, "Sure.") &&
                  strstr(body, "\"done\":true"),
              "%d %s", status, body);
    free(body);
    sw_api_free(a);
    for (int i = 0; i < 200 && f.n_done < f.n_open; i++) usleep(10000); /* the generator threads end */
    CHECK_EQ_INT(f.n_done, f.n_open);
    CHECK_MSG(!too_many_runs, "more generations than the fake keeps (%zu)", n_runs);
    for (size_t i = 0; i < n_runs; i++) free(runs[i]);
    pthread_mutex_destroy(&f.mu);
}


/* ---------------------------------------------------------------- grammar sampling */

/* A small SPM vocabulary: <unk> <s> </s>, the 256 byte tokens, and some words, so tokens
 * span several grammar elements at once. */
static struct sw_tok *small_vocab(void)
{
    static const char *const words[] = { "{\"", "\":", "\": ", "true", "fals", "e}", "null", ", \"", "ab", "12", "-3",
                                         "name", "age", "ok", "\"}", "}", "\"", " " };
    enum { NW = sizeof words / sizeof words[0] };
    const char *toks[3 + 256 + NW];
    int32_t types[3 + 256 + NW];
    char bytes[256][8];
    toks[0] = "<unk>";
    toks[1] = "<s>";
    toks[2] = "</s>";
    types[0] = 2;
    types[1] = types[2] = 3;
    for (int i = 0; i < 256; i++) {
        snprintf(bytes[i], sizeof bytes[i], "<0x%02X>", i);
        toks[3 + i] = bytes[i];
        types[3 + i] = 6;
    }
    for (int i = 0; i < NW; i++) {
        toks[3 + 256 + i] = words[i];
        types[3 + 256 + i] = 1;
    }
    struct sw_tok_desc d = { 0 };
    d.model = "llama";
    d.n_tokens = 3 + 256 + NW;
    d.tokens = toks;
    d.types = types;
    d.bos_id = 1;
    d.eos_id = 2;
    d.unk_id = 0;
    d.pad_id = -1;
    d.add_bos = -1;
    d.add_eos = -1;
    d.add_space_prefix = 0;
    struct sw_tok *t = NULL;
    char err[256];
    CHECK_MSG(sw_tok_new(&d, &t, err, sizeof err) == 0, "%s", err);
    return t;
}

static uint64_t rnd_state = 88172645463325252ull;
static uint32_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return (uint32_t)rnd_state;
}

static void test_grammar_sampling(void)
{
    struct sw_tok *t = small_vocab();
    if (!t) return;
    struct sw_gvocab *v = NULL;
    CHECK_EQ_INT(sw_gvocab_new(t, &v), 0);
    uint32_t nv = sw_tok_n_vocab(t);
    const char *schema = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":"
                         "\"integer\"},\"ok\":{\"anyOf\":[{\"type\":\"boolean\"},{\"type\":\"null\"}]}},\"required\":["
                         "\"name\",\"age\"],\"additionalProperties\":false}";
    json_t *js = json_loads(schema, 0, NULL);
    uint8_t *g = NULL;
    size_t gl = 0;
    struct sw_api_oai_error e;
    CHECK_EQ_INT(sw__schema_compile(js, "format", NULL, NULL, &g, &gl, &e), 0);
    json_decref(js);
    float *logits = malloc(nv * sizeof *logits);
    uint8_t *mask = malloc(nv);
    int ended = 0;
    for (int run = 0; run < 40; run++) {
        struct sw_sampler_params p;
        sw_sampler_params_default(&p);
        p.temperature = run % 4 ? 1.0f : 0.0f; /* greedy every fourth */
        p.top_k = 0;
        p.top_p = 1.0f;
        p.min_p = 0;
        p.seed = (uint64_t)run;
        struct sw_sampler *s = NULL;
        CHECK_EQ_INT(sw_sampler_new(&p, nv, &s), 0);
        CHECK_EQ_INT(sw_sampler_set_logprobs(s, 1, 3), 0);
        CHECK_EQ_INT(sw_sampler_set_grammar(s, g, gl), 0);
        CHECK_EQ_INT(sw_sampler_sample(s, logits), SW_ESTATE); /* no vocabulary: refused */
        CHECK_EQ_INT(sw_sampler_set_vocab(s, v), 0);
        struct sw_buf out = { 0 };
        int done = 0;
        for (int step = 0; step < 400 && !done; step++) {
            /* random logits, structure and the end favoured so that most runs end */
            for (uint32_t i = 0; i < nv; i++) logits[i] = (float)(rnd() % 1000) / 250.0f;
            logits[2] += 3.0f;
            for (uint32_t i = 3 + 256; i < nv; i++) logits[i] += 2.5f;
            if (step == 5) { /* a state that travels (blob v2) samples the same afterwards */
                struct sw_buf b = { 0 };
                CHECK_EQ_INT(sw_sampler_save(s, &b), 0);
                struct sw_sampler *s2 = NULL;
                CHECK_EQ_INT(sw_sampler_load(b.data, b.len, nv, &s2), 0);
                struct sw_sampler_logprobs lp;
                CHECK_EQ_INT(sw_sampler_blob_logprobs(b.data, b.len, &lp), 0);
                CHECK(lp.n_top == 3 && lp.top_lp[0] >= lp.top_lp[1] && lp.logprob <= 0);
                sw_sampler_set_vocab(s2, v);
                struct sw_buf b2 = { 0 };
                sw_sampler_save(s2, &b2);
                CHECK(b.len == b2.len && !memcmp(b.data, b2.data, b.len));
                sw_buf_free(&b2);
                sw_sampler_free(s);
                s = s2;
                sw_buf_free(&b);
            }
            int32_t id = sw_sampler_sample(s, logits);
            CHECK_MSG(id >= 0, "run %d step %d: no token (%d)", run, step, id);
            if (id < 0) break;
            if (id == 2) {
                done = 1;
                break;
            }
            char piece[64];
            int n = sw_tok_piece(t, id, 0, piece, sizeof piece);
            if (n > 0) sw_buf_append(&out, piece, (size_t)n);
        }
        if (done) {
            ended++;
            json_error_t je;
            struct sw_buf clean = { 0 }; /* as the API sends it: bad UTF-8 inside strings -> U+FFFD */
            sw_api_utf8_sanitize(out.data, out.len, &clean);
            sw_buf_free(&out);
            out = clean;
            json_t *o = json_loadb(out.data ? (const char *)out.data : "", out.len, 0, &je);
            CHECK_MSG(json_is_object(o), "run %d: not an object: %.*s (%s)", run, (int)out.len, (char *)out.data, je.text);
            if (o) {
                json_t *name = json_object_get(o, "name"), *age = json_object_get(o, "age"), *ok = json_object_get(o, "ok");
                CHECK_MSG(json_is_string(name) && json_is_integer(age) && (!ok || json_is_boolean(ok) || json_is_null(ok)) &&
                              json_object_size(o) == 2u + (ok != NULL),
                          "run %d: does not validate: %.*s", run, (int)out.len, (char *)out.data);
            }
            json_decref(o);
        }
        sw_buf_free(&out);
        sw_sampler_free(s);
    }
    CHECK_MSG(ended >= 30, "only %d of 40 runs ended", ended);
    /* the mask (one trie walk) == token-by-token checks, at states along a text */
    struct sw_grammar *gr = NULL;
    struct sw_gstate *st = NULL;
    CHECK_EQ_INT(sw_grammar_load(g, gl, &gr), 0);
    CHECK_EQ_INT(sw_gstate_new(gr, &st), 0);
    const char *text = "{\"name\": \"a\\\"b\", \"age\": -12, \"ok\": null}";
    for (size_t at = 0; st && at <= strlen(text); at++) {
        sw_gstate_mask(st, v, mask);
        int same = 1;
        for (uint32_t i = 0; i < nv; i++) same &= mask[i] == (uint8_t)sw_gstate_allows(st, v, (int32_t)i);
        CHECK_MSG(same, "mask != checks at byte %zu", at);
        CHECK_EQ_INT(mask[2], at == strlen(text)); /* EOS only at the end */
        if (at < strlen(text)) CHECK_EQ_INT(sw_gstate_feed(st, (const uint8_t *)text + at, 1), 0);
    }
    CHECK(sw_gstate_at_end(st));
    CHECK_EQ_INT(sw_gstate_feed(st, (const uint8_t *)" ", 1), SW_EINVAL);
    sw_gstate_free(st);
    sw_grammar_free(gr);
    free(logits);
    free(mask);
    free(g);
    sw_gvocab_free(v);
    sw_tok_free(t);
}

/* A compiled schema refuses what it does not support, naming the path. */
static void test_schema_refusals(void)
{
    static const struct { const char *schema, *param, *msg; } cases[] = {
        { "{\"type\":\"object\",\"properties\":{\"age\":{\"type\":\"integer\",\"minimum\":0}}}", "format.properties.age",
          "format.properties.age: 'minimum' is not supported" },
        { "{\"type\":\"array\",\"items\":{\"oneOf\":[]}}", "format.items", "format.items: 'oneOf' is not supported" },
        { "{\"type\":\"object\",\"required\":[\"x\"]}", "format", NULL },
        { "{\"$ref\":\"#/$defs/x\"}", "format", NULL },
        { "{\"anyOf\":[{\"$ref\":\"#\"}]}", "format", NULL },
        { "{\"type\":\"strin\"}", "format", NULL },
        { "false", "format", NULL },
        { "{\"enum\":[{\"a\":1}]}", "format", NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *js = json_loads(cases[i].schema, JSON_DECODE_ANY, NULL);
        uint8_t *g = NULL;
        size_t gl = 0;
        struct sw_api_oai_error e;
        memset(&e, 0, sizeof e);
        CHECK_MSG(sw__schema_compile(js, "format", NULL, NULL, &g, &gl, &e) != 0, "accepted %s", cases[i].schema);
        CHECK_MSG(e.status == 400 && !strcmp(e.param, cases[i].param), "%s: %d param '%s' (%s)", cases[i].schema, e.status,
                  e.param, e.message);
        if (cases[i].msg) CHECK_EQ_STR(e.message, cases[i].msg);
        free(g);
        json_decref(js);
    }
}

/* Tool calling per template family: the prompt has the definitions, earlier calls and
 * results where the family wants them; answers parse back into tool calls. */
static void test_tools(void)
{
    const char *body =
        "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Weather in Oslo?\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":"
        "{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}}]},{\"role\":\"tool\",\"tool_call_id\":"
        "\"call_1\",\"content\":\"-3 C\"},{\"role\":\"user\",\"content\":\"And Rome?\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather now\","
        "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}}]}";
    struct sw_api_oai_req r;
    struct sw_api_oai_error e;
    CHECK_EQ_INT(parse(1, body, &r, &e), 0);
    CHECK(r.tools && r.tool_choice == SW_API_TOOLS_AUTO && r.n_msgs == 5 && r.msgs[2].tool_calls &&
          !strcmp(r.msgs[3].role, "tool") && !strcmp(r.msgs[3].tool_call_id, "call_1"));
    static const struct { enum sw_chat_tmpl t; const char *want[4]; const char *answer; } fam[] = {
        { SW_CHAT_CHATML,
          { "<|im_start|>system\nBe brief.\n\n# Tools\n", "<tools>\n{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"",
            "<|im_start|>assistant\n<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}\n</tool_call><|im_end|>",
            "<|im_start|>user\n<tool_response>\n-3 C\n</tool_response><|im_end|>" },
          "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>" },
        { SW_CHAT_LLAMA3,
          { "<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions",
            "\"name\": \"get_weather\"", "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\":\"get_weather\",\"parameters\":{\"city\":\"Oslo\"}}<|eot_id|>",
            "<|start_header_id|>ipython<|end_header_id|>\n\n-3 C<|eot_id|>" },
          "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}" },
        { SW_CHAT_MISTRAL,
          { "[TOOL_CALLS] [{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"},\"id\":\"call_1\"}]</s>",
            "[TOOL_RESULTS] {\"content\":\"-3 C\",\"call_id\":\"call_1\"}[/TOOL_RESULTS]",
            "[AVAILABLE_TOOLS] [{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"",
            "[/AVAILABLE_TOOLS][INST] And Rome? [/INST]" },
          "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}]" },
    };
    for (size_t f = 0; f < sizeof fam / sizeof fam[0]; f++) {
        int family = sw__tools_family(sw_chat_name(fam[f].t));
        struct sw__msgs tm;
        CHECK_EQ_INT(sw__tools_render(&r, family, &tm), 0);
        struct sw_chat_msg cm[16];
        for (size_t i = 0; i < tm.n && i < 16; i++) {
            cm[i].role = tm.m[i].role;
            cm[i].content = tm.m[i].content;
        }
        struct sw_buf b = { 0 };
        CHECK_EQ_INT(sw_chat_format(fam[f].t, cm, tm.n, 1, &b), 0);
        const char *txt = sw_buf_cstr(&b);
        for (int k = 0; k < 4; k++)
            CHECK_MSG(txt && strstr(txt, fam[f].want[k]), "%s: no %s in\n%s", sw_chat_name(fam[f].t), fam[f].want[k], txt);
        sw_buf_free(&b);
        sw__msgs_free(&tm);
        size_t content_len = 99;
        json_t *calls = sw__tools_extract(&r, family, fam[f].answer, strlen(fam[f].answer), &content_len);
        CHECK_MSG(calls && json_array_size(calls) == 1, "%s: no call in %s", sw_chat_name(fam[f].t), fam[f].answer);
        json_t *fn = json_object_get(json_array_get(calls, 0), "function");
        CHECK(fn && !strcmp(json_string_value(json_object_get(fn, "name")), "get_weather") &&
              !strcmp(json_string_value(json_object_get(fn, "arguments")), "{\"city\":\"Rome\"}"));
        CHECK(!strncmp(json_string_value(json_object_get(json_array_get(calls, 0), "id")), "call_", 5));
        CHECK_EQ_INT(content_len, f == 0 ? strlen("Let me check.") : 0);
        json_decref(calls);
        /* a call of an unknown function, or text, is content */
        CHECK(!sw__tools_extract(&r, family, "{\"name\": \"rm\", \"parameters\": {}}", 32, &content_len));
        CHECK(!sw__tools_extract(&r, family, "It is sunny.", 12, &content_len) && content_len == 12);
        /* the grammar of a forced call */
        r.tool_choice = SW_API_TOOLS_REQUIRED;
        uint8_t *g = NULL;
        size_t gl = 0;
        CHECK_EQ_INT(sw__tools_grammar(&r, family, &g, &gl, &e), 0);
        struct sw_grammar *gr = NULL;
        struct sw_gstate *st = NULL;
        CHECK_EQ_INT(sw_grammar_load(g, gl, &gr), 0);
        CHECK_EQ_INT(sw_gstate_new(gr, &st), 0);
        const char *call = f == 0   ? "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>"
                           : f == 1 ? "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}"
                                    : "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}]";
        CHECK_MSG(st && !sw_gstate_feed(st, (const uint8_t *)call, strlen(call)) && sw_gstate_at_end(st), "%s: %s",
                  sw_chat_name(fam[f].t), call);
        sw_gstate_free(st);
        sw_grammar_free(gr);
        free(g);
        r.tool_choice = SW_API_TOOLS_AUTO;
    }
    sw_api_oai_req_free(&r);
    expect_bad(1, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{}}]}",
               400, "tools[0].function.name");
    expect_bad(1, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"required\"}", 400, "tool_choice");
    expect_bad(1, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":"
                  "{\"name\":\"f\"}}],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"g\"}}}",
               400, "tool_choice");
    expect_bad(1, "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"[\"}}]}]}",
               400, "messages[0].tool_calls[0].function");
}

int main(void)
{
    SW_RUN(test_parse_completions);
    SW_RUN(test_parse_chat);
    SW_RUN(test_text);
    SW_RUN(test_sse);
    SW_RUN(test_http);
    SW_RUN(test_grammar_sampling);
    SW_RUN(test_schema_refusals);
    SW_RUN(test_tools);
    return SW_TEST_DONE();
}
