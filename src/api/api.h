/* api.h — the node's local HTTP API (libmicrohttpd): a small router whose handlers get a
 * whole request and fill a whole response, plus a tiny HTTP client (libcurl) for the CLI
 * commands that talk to a running node (status, diagnose, load-shard).
 * Routes today: /health, /swarm/status, POST /swarm/load-shard (registered by the node
 * command); the OpenAI-compatible endpoints of a later issue register more routes the same
 * way (streaming responses will get their own call). Not for: deciding anything about the
 * swarm (src/swarm). */
#ifndef SW_API_H
#define SW_API_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

struct sw_api;

struct sw_api_request {
    const char *method;      /* "GET", "POST" */
    const char *path;        /* "/swarm/status" (no query string) */
    const uint8_t *body;     /* borrowed for the call; NUL-terminated (not counted) */
    size_t body_len;
};

struct sw_api_response {
    int status;              /* 200 unless set */
    const char *content_type; /* static string; NULL: "application/json" */
    char *body;              /* malloc'd by the handler; the API frees it */
    size_t body_len;         /* 0 with body set: strlen(body) */
};

/* Handlers run on the API's own thread: they must only touch thread-safe state. */
typedef void (*sw_api_handler_fn)(void *ud, const struct sw_api_request *req,
                                  struct sw_api_response *resp);

struct sw_api_config {
    const char *host;        /* NULL: "127.0.0.1" (local only by default) */
    uint16_t port;           /* 0: any free port (see sw_api_port) */
    size_t max_body;         /* 0: 64 KiB; larger requests get 413 */
};

int sw_api_new(const struct sw_api_config *cfg, struct sw_api **out);
/* Adds a route (exact path match; method "GET"/"POST"/...). Before sw_api_start only.
 * /health is built in. */
int sw_api_route(struct sw_api *a, const char *method, const char *path, sw_api_handler_fn fn,
                 void *ud);
/* Binds and starts serving. SW_EIO with a message when the port cannot be bound. */
int sw_api_start(struct sw_api *a, char *err, size_t err_len);
uint16_t sw_api_port(const struct sw_api *a);
void sw_api_free(struct sw_api *a); /* stops serving; NULL harmless */

/* Helpers for handlers: a JSON error body {"error": msg} with status. */
void sw_api_error(struct sw_api_response *resp, int status, const char *msg);

/* ---------------------------------------------------------------- client */

/* "http://127.0.0.1:8080", "127.0.0.1:8080" or "8080" -> base URL without trailing '/'
 * (out holds >= 256 bytes). SW_EINVAL when unusable. */
int sw_api_base_url(const char *s, char *out, size_t out_len);
/* One request (body NULL for GET). *resp_out is malloc'd and NUL-terminated (caller frees);
 * *status_out the HTTP status. SW_EIO with a message in err when the node is unreachable. */
int sw_api_fetch(const char *method, const char *url, const void *body, size_t body_len,
                 uint32_t timeout_ms, char **resp_out, size_t *resp_len_out, int *status_out,
                 char *err, size_t err_len);

#endif
