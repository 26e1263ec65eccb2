/* node_web.h — what `shardswarm node --api` serves besides the JSON API: GET /metrics
 * (Prometheus text format 0.0.4) and the live dashboard (/, /dashboard, /web/app.js,
 * /web/app.css; the files of web/, embedded at build time by cmake/sw_embed_web.cmake).
 * Both are built from the node's thread-safe status snapshot (sw_node_status_json), so the
 * handlers may run on the API thread. Not for: deciding anything (src/swarm). */
#ifndef SW_CLI_NODE_WEB_H
#define SW_CLI_NODE_WEB_H

#include <stddef.h>

#include "util/util.h"

struct sw_api;
struct sw_node;

/* One embedded file. The table ends with an entry whose url is NULL. */
struct sw_web_asset {
    const char *url;            /* "/", "/web/app.js", ... */
    const char *content_type;   /* "text/html; charset=utf-8", ... */
    const unsigned char *bytes; /* followed by a NUL that len does not count */
    size_t len;
};
extern const struct sw_web_asset sw_web_assets[]; /* generated: <build>/generated/sw_web_assets.c */

/* Registers GET /metrics, /, /dashboard, /web/app.js and /web/app.css on `api` (before
 * sw_api_start). `node` is borrowed and must outlive the API. 0 or a negative sw_err. */
int sw_cli_node_web_attach(struct sw_api *api, struct sw_node *node);

/* The Prometheus text for a status JSON document (what /swarm/status serves) plus this
 * process's own figures; appended to out. Exposed for tests. 0, SW_ECORRUPT (not JSON). */
int sw_cli_metrics_text(const char *status_json, struct sw_buf *out);

#endif
