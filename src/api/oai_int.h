/* oai_int.h — what the OpenAI-compatible layer's files share inside src/api (not API):
 * the error helpers, the per-generation queue a backend feeds (struct sw__gen), and one
 * request's jobs (struct sw__job: one choice per generation, n of them), used by openai.c
 * (the /v1 routes) and ollama.c (the /api routes) alike. */
#ifndef SW_API_OAI_INT_H
#define SW_API_OAI_INT_H

#include <pthread.h>
#include <stdint.h>

#include "api/api.h"

struct json_t;

#define SW__OAI_WAIT_STEP_MS 100  /* a waiting handler looks at its client this often */

int sw__oai_err_set(struct sw_api_oai_error *e, int status, const char *type, const char *code, const char *param,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));
#define SW__BAD(e, param, ...) sw__oai_err_set((e), 400, "invalid_request_error", NULL, (param), __VA_ARGS__)

struct sw__oai {
    struct sw_api_oai_backend be;
};

/* The queue between the backend's thread (producer) and one choice's consumer. */
struct sw__gen {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;                /* the request's, and the backend's until on_end */
    int32_t *toks;
    uint8_t *eog;
    struct sw_api_oai_logprob *lp; /* parallel to toks when log probabilities were asked */
    int want_lp;
    size_t n, cap;
    int ended, rc;
    char msg[512];
};

/* One generated choice of a request. */
struct sw__choice {
    struct sw__gen *g;
    uint64_t handle;
    struct sw_api_oai_text text;
    struct sw_buf out;       /* the whole text (non-stream, or what tools parsing needs) */
    int32_t *ids;            /* the generated token ids (Ollama's context) */
    size_t n_ids, cap_ids;
    size_t taken;            /* tokens taken from g */
    uint32_t n_gen;
    const char *finish;      /* "stop" / "length" once finished */
    int failed;
    struct sw_api_oai_error err;
    int cancelled;
    int done_sent;           /* the stream sent this choice's finish */
    size_t sent;             /* tools: bytes of out a stream has sent */
    int tool_held;           /* tools: a call began, the rest waits for the end */
    /* log probabilities of the tokens taken, not yet sent (stream) / all (whole) */
    struct sw_api_oai_logprob *lps;
    size_t n_lps, cap_lps, lps_sent;
};

/* One request from parse to the last byte. */
struct sw__job {
    struct sw__oai *o;
    struct sw_api_oai_req req;
    int ollama;              /* the /api routes: their framing, Ollama's defaults */
    char model[128];
    char id[48];
    int64_t created;
    int32_t *prompt_ids;     /* the prompt's ids (kept for Ollama's context) */
    size_t n_prompt;
    uint32_t max_tokens;
    const char *stops[SW_API_OAI_MAX_STOP + 8];
    size_t n_stops;
    uint32_t n_choices;
    struct sw__choice ch[SW_API_OAI_MAX_N];
    uint64_t t_start_ns, t_first_ns, t_end_ns; /* monotonic: request in, first token, end */
    int role_sent, tail_sent;
    int tools_on;            /* the answer may hold tool calls (tools given, choice not none) */
    int tool_family;         /* SW__TOOLS_* */
};

uint64_t sw__oai_now_ns(void);
/* Checks the model, readiness; tokenizes (chat: the template), checks the context, opens
 * req.n generations. j->o and j->req are set. 0 or an error in e. */
int sw__job_begin(struct sw__job *j, struct sw_api_oai_error *e);
/* Takes the tokens that arrived for choice c, at most max_tokens (0: all there are, up to
 * 64; streams take 1, so that each token is a chunk of its own however fast they come),
 * waiting up to wait_ms for one, and appends their text to delta. Returns 1 once that
 * choice finished (finish or failed). */
int sw__job_pump(struct sw__job *j, struct sw__choice *c, struct sw_buf *delta, uint32_t wait_ms,
                 size_t max_tokens);
/* Waits until some choice has a token or ended (the first token of a stream, so a failed
 * open is an HTTP error). 0: go on; 1: the client left; 2: it failed before any token (the
 * error is in j->ch[0].err after a pump). */
int sw__job_wait_first(struct sw__job *j, const struct sw_api_call *call);
/* Waits for every choice to finish (whole responses). 0, or 1 when the client left. */
int sw__job_wait_all(struct sw__job *j, const struct sw_api_call *call);
/* The first failed choice, or NULL. */
const struct sw_api_oai_error *sw__job_failed(const struct sw__job *j);
void sw__job_free(struct sw__job *j); /* cancels what still runs; NULL harmless */

/* Parsing shared by the routes (oai_parse.c). */
int sw__oai_json_load(const uint8_t *body, size_t len, struct json_t **out, struct sw_api_oai_error *err);
int sw__oai_parse_messages(struct json_t *o, struct sw_api_oai_req *r, struct sw_api_oai_error *e);
int sw__oai_parse_stop(struct json_t *o, struct sw_api_oai_req *r, struct sw_api_oai_error *e);

/* schema.c: a JSON schema (NULL: any JSON object) compiled into a grammar (*out malloc'd).
 * field names the request field in errors ("response_format.json_schema.schema"). 0, or a
 * 400 in e naming the path of what is not supported. */
int sw__schema_compile(struct json_t *schema, const char *field, const char *prefix, const char *suffix,
                       uint8_t **out, size_t *out_len, struct sw_api_oai_error *e);
/* prefix/suffix (NULL: none): literal text before and after the value. */

/* tools.c: tool calling with the template's conventions (families below). */
enum { SW__TOOLS_HERMES = 0, SW__TOOLS_LLAMA3, SW__TOOLS_MISTRAL };
int sw__tools_family(const char *chat_template);
int sw__tools_parse(struct json_t *o, struct sw_api_oai_req *r, struct sw_api_oai_error *e);
int sw__tools_parse_msg(struct json_t *m, size_t i, struct sw_api_oai_msg *out, struct sw_api_oai_error *e);
/* The definitions' text as the family shows them to the model. */
int sw__tools_block(const struct sw_api_oai_req *r, int family, struct sw_buf *out);
/* Messages rewritten for the family: definitions placed, calls and results as text. */
struct sw__msgs {
    struct sw_api_oai_msg *m;
    char **owned;
    size_t n;
};
int sw__tools_render(const struct sw_api_oai_req *r, int family, struct sw__msgs *out);
void sw__msgs_free(struct sw__msgs *m);
/* tool_choice required / named: a grammar whose sentences are calls. */
int sw__tools_grammar(const struct sw_api_oai_req *r, int family, uint8_t **g, size_t *gl, struct sw_api_oai_error *e);
/* The calls in an answer (OpenAI's tool_calls array; NULL: none) and the length of the text
 * before them (the message's content). */
struct json_t *sw__tools_extract(const struct sw_api_oai_req *r, int family, const char *text, size_t len,
                                 size_t *content_len);
/* How much of text a stream may send now; *held set once a call has begun. */
size_t sw__tools_safe(int family, const char *text, size_t len, int *held);

/* JSON helpers shared by the routes. */
struct json_t *sw__oai_jstr(const struct sw_buf *b);   /* a JSON string of valid UTF-8 */

#endif
