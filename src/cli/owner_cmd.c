/* owner_cmd.c — what `load-shard` and `drain` share: sign an owner command for a node and
 * hand it to a running node's API, which applies it (its target) or forwards it. The model
 * id and 'self' come from that node's /swarm/status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/api.h"
#include "cli.h"
#include "swarm/swarm.h"
#include "owner_cmd.h"

int sw_cli_owner_cmd(const char *cmd, const char *api, const char *node, const char *key_flag, const char *key,
                     struct sw_load_cmd *c, const char *route)
{
    int rc;
    uint8_t target[32];
    if (strcmp(node, "self") && (strlen(node) != 64 || sw_hex_decode(node, target, 32)))
        return sw_cli_usage_error(cmd, "--node expects 64 hex digits (a node id) or 'self', got '%s'", node);
    char base[512], url[600], err[512];
    if (sw_api_base_url(api, base, sizeof base)) return sw_cli_usage_error(cmd, "--api: '%s' is not a URL or port", api);
    struct sw_identity owner;
    if ((rc = sw_identity_load(key, &owner, err, sizeof err))) return sw_cli_fail(cmd, "%s: %s", key_flag, err);
    snprintf(url, sizeof url, "%s/swarm/status", base);
    char *body = NULL;
    int status = 0;
    if (sw_api_fetch("GET", url, NULL, 0, 5000, &body, NULL, &status, err, sizeof err))
        return sw_cli_fail(cmd, "cannot reach the node: %s", err);
    if (status != 200) {
        int ex = sw_cli_fail(cmd, "%s answered HTTP %d: %.200s", url, status, body ? body : "");
        free(body);
        return ex;
    }
    json_t *root = json_loads(body, 0, NULL);
    free(body);
    const char *ih = root ? json_string_value(json_object_get(root, "info_hash")) : NULL;
    const char *self = root ? json_string_value(json_object_get(root, "node_id")) : NULL;
    if (!ih || sw_hex_decode(ih, c->info_hash, 20) || !self) {
        json_decref(root);
        return sw_cli_fail(cmd, "%s: no info_hash/node_id in the node's status", url);
    }
    if (!strcmp(node, "self") && sw_hex_decode(self, target, 32)) {
        json_decref(root);
        return sw_cli_fail(cmd, "%s: bad node_id in the node's status", url);
    }
    json_decref(root);
    memcpy(c->target, target, 32);
    c->ts_s = sw_wall_time_s();
    struct sw_buf w = { 0 };
    if ((rc = sw_load_cmd_sign(c, &owner, &w))) return sw_cli_fail(cmd, "cannot sign: %s", sw_strerror(rc));
    char *hex = malloc(w.len * 2 + 1);
    if (!hex) {
        sw_buf_free(&w);
        return sw_cli_fail(cmd, "out of memory");
    }
    sw_hex_encode(w.data, w.len, hex);
    sw_buf_free(&w);
    snprintf(url, sizeof url, "%s%s", base, route);
    json_t *req = json_pack("{s:s}", "command", hex);
    char *req_s = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    free(hex);
    if (!req_s) return sw_cli_fail(cmd, "out of memory");
    rc = sw_api_fetch("POST", url, req_s, strlen(req_s), 10000, &body, NULL, &status, err, sizeof err);
    free(req_s);
    if (rc) return sw_cli_fail(cmd, "cannot reach the node: %s", err);
    json_t *r = json_loads(body, 0, NULL);
    const char *detail = r ? json_string_value(json_object_get(r, status == 200 ? "detail" : "error")) : NULL;
    if (!detail && r && status != 200) { /* OpenAI-style {"error":{"message":...}} (a 401) */
        json_t *e = json_object_get(r, "error");
        detail = json_string_value(json_object_get(e, "message"));
    }
    int ex;
    if (status == 200) {
        printf("%s\n", detail ? detail : "accepted");
        ex = SW_EXIT_OK;
    } else {
        ex = sw_cli_fail(cmd, "refused (HTTP %d): %s", status, detail ? detail : body ? body : "");
    }
    json_decref(r);
    free(body);
    return ex;
}
