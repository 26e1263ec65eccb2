/* api.h — the node's local HTTP API (libmicrohttpd): a small router whose handlers get a
 * whole request and fill a whole response, plus a tiny HTTP client (libcurl) for the CLI
 * commands that talk to a running node (status, diagnose, load-shard).
 * Routes: /health, /swarm/status, POST /swarm/load-shard (registered by the node command),
 * and the OpenAI-compatible endpoints (/v1/models, /v1/completions, /v1/chat/completions:
 * openai.c) and Ollama's (the /api routes: ollama.c), behind a backend interface the node implements;
 * docs/api.md. Stream routes may
 * block in their handler and answer with a body produced while it is sent (SSE).
 * Not for: deciding anything about the swarm (src/swarm); src/api never includes it. */
#ifndef SW_API_H
#define SW_API_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

struct sw_api;
struct sw_api_call;          /* one request's connection (opaque) */

struct sw_api_request {
    const char *method;      /* "GET", "POST" */
    const char *path;        /* "/swarm/status" (no query string) */
    const uint8_t *body;     /* borrowed for the call; NUL-terminated (not counted) */
    size_t body_len;
    struct sw_api_call *call; /* the connection, for sw_api_call_gone (valid during the call) */
};

/* A body produced while it is sent (stream routes only). On the connection's thread the API
 * calls read(ud, out, wait_ms) whenever the client can take more: it appends what it has
 * (waiting up to wait_ms for something; appending nothing is fine, the API then checks the
 * client is still there and calls again) and returns 0 (more follows), 1 (the end: nothing
 * after what it appended) or a negative sw_err (abort the connection). done(ud, completed)
 * follows exactly once when the response is over: completed 1 when the end was reached and
 * sent, 0 when the client left or the server stops (ud may be freed then). */
struct sw_api_stream {
    int (*read)(void *ud, struct sw_buf *out, uint32_t wait_ms);
    void (*done)(void *ud, int completed);
    void *ud;
};

struct sw_api_response {
    int status;              /* 200 unless set */
    const char *content_type; /* static string; NULL: "application/json" */
    char *body;              /* malloc'd by the handler; the API frees it */
    size_t body_len;         /* 0 with body set: strlen(body) */
    struct sw_api_stream stream; /* stream routes: read set -> the body is streamed (chunked
                                    for HTTP/1.1) and body is ignored */
    int www_authenticate;    /* add "WWW-Authenticate: Bearer" (a 401) */
    uint32_t retry_after_s;  /* add "Retry-After: N" (a 429 or 503); 0: none */
};

/* Handlers run on the connection's own thread (one thread per connection): they must only
 * touch thread-safe state; they may block (a stream route waiting for a generation) without
 * holding up other connections. */
typedef void (*sw_api_handler_fn)(void *ud, const struct sw_api_request *req,
                                  struct sw_api_response *resp);

struct sw_api_config {
    const char *host;        /* NULL: "127.0.0.1" (local only by default) */
    uint16_t port;           /* 0: any free port (see sw_api_port) */
    size_t max_body;         /* 0: 64 KiB; larger requests get 413 */
    const char *api_key;     /* NULL: open. Else every route but the open ones (/health,
                                sw_api_open) wants the header "Authorization: Bearer
                                <api_key>" (401 otherwise); copied */
};
#define SW_API_KEY_MAX 256u  /* bytes of an API key (printable ASCII, no spaces) */
/* 0 when key is usable as an API key (1..SW_API_KEY_MAX printable ASCII, no space). */
int sw_api_key_check(const char *key);

int sw_api_new(const struct sw_api_config *cfg, struct sw_api **out);
/* Adds a route (exact path match; method "GET"/"POST"/...). Before sw_api_start only.
 * /health is built in. */
int sw_api_route(struct sw_api *a, const char *method, const char *path, sw_api_handler_fn fn,
                 void *ud);
/* A route whose handler may wait (no idle timeout on its connection) and may answer with
 * resp->stream. max_body: the cap on its request body (0: the server's). */
int sw_api_route_stream(struct sw_api *a, const char *method, const char *path, size_t max_body,
                        sw_api_handler_fn fn, void *ud);
/* True when the client of this request closed its connection (or the server is stopping):
 * a waiting handler gives up. Non-blocking; any thread. */
int sw_api_call_gone(const struct sw_api_call *c);
/* fn(ud) runs in sw_api_free once the server stopped (no handler runs any more), last
 * registered first. For state the routes' handlers share. At most 16. */
int sw_api_on_free(struct sw_api *a, void (*fn)(void *ud), void *ud);
/* A route for every path under prefix (which ends in '/', e.g. "/v1/models/"): the handler
 * reads the rest from req->path. Exact routes win over prefixes. Before sw_api_start only. */
int sw_api_route_prefix(struct sw_api *a, const char *method, const char *prefix, sw_api_handler_fn fn, void *ud);
/* Lets the routes of path be reached without the API key (pages that carry no data, such
 * as the dashboard's static files). Before sw_api_start, after the routes. */
int sw_api_open(struct sw_api *a, const char *path);
/* Cross-site guards (docs/security.md): a request whose Host is not an IP literal,
 * localhost or *.localhost gets 403 (DNS rebinding); a POST/PUT/PATCH/DELETE whose Origin is
 * neither its own (http://<Host>) nor allowed gets 403 (CSRF); POST/PUT/PATCH bodies must be
 * Content-Type: application/json (415). These allow one more Host name (a name this machine
 * is reached by) or one more origin ("https://app.example"); copied. Before sw_api_start. */
int sw_api_allow_host(struct sw_api *a, const char *name);
int sw_api_allow_origin(struct sw_api *a, const char *origin);
/* Binds and starts serving. SW_EIO with a message when the port cannot be bound. */
int sw_api_start(struct sw_api *a, char *err, size_t err_len);
uint16_t sw_api_port(const struct sw_api *a);
void sw_api_free(struct sw_api *a); /* stops serving; NULL harmless */

/* Helpers for handlers: a JSON error body {"error": msg} with status. */
void sw_api_error(struct sw_api_response *resp, int status, const char *msg);

/* ------------------------------------------------ OpenAI-compatible API */

/* openai.c: GET /v1/models, POST /v1/completions, POST /v1/chat/completions (OpenAI API
 * reference: request fields, response objects, SSE chunks, error objects). It parses and
 * checks requests, turns tokens into text (valid UTF-8, stop strings never leaked) and
 * frames responses; what runs the model is a backend (the node's: src/cli/node_openai.c). */

#define SW_API_OAI_MAX_BODY (1u << 20)   /* request bodies of the /v1 routes */
#define SW_API_OAI_MAX_STOP 4u           /* stop strings (OpenAI: up to 4) */
#define SW_API_OAI_MAX_STOP_LEN 256u     /* bytes of one stop string */
#define SW_API_OAI_MAX_MSGS 4096u        /* chat messages */
#define SW_API_OAI_MAX_N 8u              /* choices of one request (n) */
#define SW_API_OAI_MAX_TOP_LOGPROBS 20u  /* top_logprobs (OpenAI: 0..20) */

struct sw_api_oai_model {
    char id[128];            /* stable model name (the torrent's name) */
    int64_t created;         /* unix seconds */
    uint32_t n_ctx;          /* context positions (prompt + completion) */
    uint32_t n_vocab;
    /* for Ollama's /api/tags and /api/show ("" / 0 when unknown) */
    char arch[32];           /* general.architecture */
    char quant[16];          /* "Q4_0", ... (general.file_type) */
    char size_label[16];     /* "7B" (general.size_label, else from the weights' bytes) */
    char digest[72];         /* a stable digest of the model (the torrent's info-hash) */
    char chat_template[32];  /* the chat template family in use */
    uint64_t size_bytes;     /* the model's bytes (all shards) */
    uint32_t n_layers, n_embd;
};

struct sw_api_oai_sampling {
    float temperature;       /* 0: greedy */
    float top_p;             /* 1: off */
    uint32_t top_k;          /* 0: off (extension) */
    float min_p;             /* 0: off (extension) */
    float repeat_penalty;    /* 1: off (extension) */
    uint64_t seed;
    int logprobs;            /* report each generated token's log probability */
    uint32_t top_logprobs;   /* ... and the k most likely alternatives (0..20) */
    const uint8_t *grammar;  /* constrained decoding: a compiled grammar (sw_grammar_save),
                                borrowed for the call; NULL: none */
    size_t grammar_len;
};

/* A generated token's log probability and the most likely alternatives at its position
 * (natural log, of the model: after the repetition penalty, before the grammar mask,
 * temperature and top-k / top-p). */
struct sw_api_oai_logprob {
    float logprob;
    uint32_t n_top;
    int32_t top_id[SW_API_OAI_MAX_TOP_LOGPROBS];
    float top_lp[SW_API_OAI_MAX_TOP_LOGPROBS];
};

struct sw_api_oai_msg {
    const char *role;        /* "system", "user", "assistant", "tool" (the API turns tool
                                messages and calls into the template's text before chat()) */
    const char *content;     /* NUL-terminated UTF-8 */
    const char *tool_calls;  /* assistant: its calls as a compact JSON array of {"id","name",
                                "arguments": object}; NULL: none */
    const char *tool_call_id; /* tool: the call it answers ("" when not given) */
};

/* tool_choice */
enum { SW_API_TOOLS_NONE = 0, SW_API_TOOLS_AUTO, SW_API_TOOLS_REQUIRED, SW_API_TOOLS_NAMED };

/* Events of one generation, from any thread (the node's loop): on_token for each generated
 * token (eog: it is an end-of-generation token, which ends with finish_reason "stop"; lp:
 * its log probabilities when sampling.logprobs asked for them, else NULL; borrowed), then
 * on_end exactly once (rc 0 finished, SW_ECLOSED cancelled, else an error with msg). */
struct sw_api_oai_events {
    void (*on_token)(void *ud, int32_t token, int eog, const struct sw_api_oai_logprob *lp);
    void (*on_end)(void *ud, int rc, const char *msg);
    void *ud;
};

/* What runs the model. Every function may be called from any API thread at once. */
struct sw_api_oai_backend {
    void *ud;
    /* The model served; SW_ESTATE (msg: why) when not known yet. */
    int (*model)(void *ud, struct sw_api_oai_model *out, char *msg, size_t msg_len);
    /* 0 when a generation can start now; else SW_ESTATE with msg naming what blocks (the
     * shard nobody serves, no tokenizer yet, stopping). */
    int (*ready)(void *ud, char *msg, size_t msg_len);
    /* Text -> ids (BOS added when the model asks for it; control-token text parsed);
     * *ids_out malloc'd. SW_ESTATE without a tokenizer. */
    int (*tokenize)(void *ud, const char *text, size_t len, int32_t **ids_out, size_t *n_out);
    /* Appends the text bytes of one generated token (nothing for control tokens). */
    int (*piece)(void *ud, int32_t id, struct sw_buf *out);
    /* Formats chat messages with the model's chat template and the assistant's generation
     * prompt; *stops_out: the template's end-of-turn strings (static, NULL-terminated; may
     * be NULL); template_out names the template used (at least 32 bytes). */
    int (*chat)(void *ud, const struct sw_api_oai_msg *msgs, size_t n, struct sw_buf *prompt_out,
                const char *const **stops_out, char *template_out, size_t template_len);
    /* Starts a generation of at most max_tokens tokens after prompt[0..n) (copied); chat:
     * the template's end-of-turn tokens stop it too. 0: events follow, *handle_out names it;
     * else no event follows (msg says why: SW_ESTATE/SW_ENOTFOUND not ready, ...). */
    int (*open)(void *ud, const int32_t *prompt, size_t n, uint32_t max_tokens, int chat,
                const struct sw_api_oai_sampling *sp, const struct sw_api_oai_events *ev,
                uint64_t *handle_out, char *msg, size_t msg_len);
    /* Stops a generation (on_end(SW_ECLOSED) follows unless it already ended). */
    void (*cancel)(void *ud, uint64_t handle);
};

/* Registers the /v1 routes on a (not yet started) server; be is copied, be->ud borrowed
 * until sw_api_free. */
int sw_api_openai_attach(struct sw_api *a, const struct sw_api_oai_backend *be);

/* ---- the parts, exposed for tests and fuzzing */

struct sw_api_oai_error {
    int status;              /* HTTP status */
    const char *type;        /* "invalid_request_error", "server_error", ... (static) */
    const char *code;        /* static or NULL */
    char param[96];          /* the field at fault ("" none) */
    char message[512];
    uint32_t retry_after_s;  /* a 429: the Retry-After header (0: none) */
};

/* A parsed request body (completions or chat). Strings owned; free with _req_free. */
struct sw_api_oai_req {
    int chat;
    char *model;                     /* NULL: absent */
    char *prompt;                    /* completions: text (NULL with ids or chat) */
    size_t prompt_len;
    int32_t *prompt_ids;             /* completions: token ids given instead of text */
    size_t n_prompt_ids;
    struct sw_api_oai_msg *msgs;     /* chat */
    size_t n_msgs;
    uint32_t max_tokens;             /* 0: default */
    struct sw_api_oai_sampling sp;
    int seed_set;
    char *stop[SW_API_OAI_MAX_STOP];
    size_t n_stop;
    int stream, include_usage;
    uint32_t n;                      /* choices (1..SW_API_OAI_MAX_N); seeds seed, seed+1, ... */
    int logprobs;                    /* chat: logprobs true; completions: logprobs >= 0 */
    uint32_t top_logprobs;
    uint8_t *grammar;                /* response_format / format: compiled grammar (owned) */
    size_t grammar_len;
    char *tools;                     /* tools: compact JSON array of the function objects
                                        {"name","description","parameters"} (owned); NULL none */
    int tool_choice;                 /* SW_API_TOOLS_* (AUTO when tools are given) */
    char *tool_name;                 /* NAMED: the function (owned) */
};

/* Parses and checks a /v1/completions (chat 0) or /v1/chat/completions (chat 1) body.
 * 0, or SW_EINVAL with err filled (400, the field named in param and message). */
int sw_api_oai_parse(int chat, const uint8_t *body, size_t len, struct sw_api_oai_req *out,
                     struct sw_api_oai_error *err);
void sw_api_oai_req_free(struct sw_api_oai_req *r);
/* The error object {"error":{"message","type","param","code"}} as a response. */
void sw_api_oai_error_resp(const struct sw_api_oai_error *e, struct sw_api_response *resp);

/* Generated bytes -> text that can be sent: valid UTF-8 only (a character split across
 * tokens is held until complete; invalid bytes become U+FFFD) and nothing that could be the
 * start of a stop string (held until it cannot be; a whole stop string ends the text). */
struct sw_api_oai_text {
    const char *const *stop; /* borrowed; valid UTF-8 (as JSON strings are), so a match starts
                                on a character boundary */
    size_t n_stop;
    struct sw_buf held;
    int stopped;             /* a stop string matched: nothing more is released */
};
void sw_api_oai_text_init(struct sw_api_oai_text *t, const char *const *stop, size_t n_stop);
/* Appends to out the text now safe to send. Returns 1 when a stop string matched (out ends
 * just before it), 0 otherwise, SW_ENOMEM. */
int sw_api_oai_text_push(struct sw_api_oai_text *t, const void *p, size_t n, struct sw_buf *out);
/* The end: releases what is held (an incomplete character becomes U+FFFD). */
int sw_api_oai_text_finish(struct sw_api_oai_text *t, struct sw_buf *out);
void sw_api_oai_text_free(struct sw_api_oai_text *t);
/* Appends p[0..n) to out with every invalid UTF-8 sequence replaced by U+FFFD. */
int sw_api_utf8_sanitize(const void *p, size_t n, struct sw_buf *out);
/* Appends one Server-Sent Event "data: <line>\n\n" (compact JSON is one line; a line
 * holding CR or LF is refused with SW_EINVAL: it would end the event early). */
int sw_api_sse_data(struct sw_buf *out, const char *line, size_t len);

/* ---------------------------------------------------------------- client */

/* "http://127.0.0.1:8080", "127.0.0.1:8080" or "8080" -> base URL without trailing '/'
 * (out holds >= 256 bytes). SW_EINVAL when unusable. */
int sw_api_base_url(const char *s, char *out, size_t out_len);
/* One request (body NULL for GET), with "Authorization: Bearer $SHARDSWARM_API_KEY" when
 * that variable holds a usable key. *resp_out is malloc'd and NUL-terminated (caller frees);
 * *status_out the HTTP status. SW_EIO with a message in err when the node is unreachable. */
int sw_api_fetch(const char *method, const char *url, const void *body, size_t body_len,
                 uint32_t timeout_ms, char **resp_out, size_t *resp_len_out, int *status_out,
                 char *err, size_t err_len);

#endif
