/* cmd_drain.c — `shardswarm drain --node ID --owner-key FILE [--api URL]`: signs a DRAIN
 * command with the model owner's key and hands it to a running node, which applies it (when
 * it is the target: hands its sessions over, unloads, keeps seeding) or forwards it.
 * Same format and checks as load-shard (docs/swarm.md, "Owner commands"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/api.h"
#include "cli.h"
#include "swarm/swarm.h"

int sw_cmd_drain(int argc, char **argv); /* registered in main.c */

static void usage(FILE *f)
{
    fprintf(f, "usage: shardswarm drain --node ID --owner-key FILE [--api URL]\n\n"
               "Tells node ID (64 hex digits, from `shardswarm status`) to stop serving: the\n"
               "sessions on its stage fail over to a replica at once, it unloads its shard but\n"
               "keeps the file and keeps seeding it, and it stays \"drained\" (loading nothing on\n"
               "its own) until a `shardswarm load-shard` for it. The command is signed with the\n"
               "model owner's key (`shardswarm keygen`); nodes refuse unsigned, foreign-key or\n"
               "replayed commands. It is handed to the node behind --api (default\n"
               "http://127.0.0.1:8080), which forwards it to ID over the swarm.\n\n"
               "  --node ID          target node id (hex), or 'self' for the node behind --api\n"
               "  --owner-key FILE   the owner key file (--key FILE also works)\n"
               "  --api URL          a running node's API ($SHARDSWARM_API_KEY is sent when set)\n"
               "Exit status: 0 accepted or forwarded, 1 refused or unreachable, 2 usage error.\n");
}

int sw_cmd_drain(int argc, char **argv)
{
    const char *cmd = "drain", *node = NULL, *key = NULL, *api = "http://127.0.0.1:8080";
    int rc;
    if (sw_cli_wants_help(argc, argv)) {
        usage(stdout);
        return SW_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int takes = !strcmp(a, "--node") || !strcmp(a, "--owner-key") || !strcmp(a, "--key") || !strcmp(a, "--api");
        if (takes && i + 1 >= argc) return sw_cli_usage_error(cmd, "%s needs a value", a);
        if (!strcmp(a, "--node")) node = argv[++i];
        else if (!strcmp(a, "--owner-key") || !strcmp(a, "--key")) key = argv[++i];
        else if (!strcmp(a, "--api")) api = argv[++i];
        else return sw_cli_usage_error(cmd, "unknown argument '%s'", a);
    }
    if (!node) return sw_cli_usage_error(cmd, "--node ID is required");
    if (!key) return sw_cli_usage_error(cmd, "--owner-key FILE is required");
    uint8_t target[32];
    if (strcmp(node, "self") && (strlen(node) != 64 || sw_hex_decode(node, target, 32)))
        return sw_cli_usage_error(cmd, "--node expects 64 hex digits (a node id) or 'self', got '%s'", node);
    char base[512], url[600], err[512];
    if (sw_api_base_url(api, base, sizeof base)) return sw_cli_usage_error(cmd, "--api: '%s' is not a URL or port", api);
    struct sw_identity owner;
    if ((rc = sw_identity_load(key, &owner, err, sizeof err))) return sw_cli_fail(cmd, "--owner-key: %s", err);
    /* the model id (and 'self') come from the node */
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
    struct sw_load_cmd c = { 0 };
    c.type = SW_CMD_DRAIN;
    if (!ih || sw_hex_decode(ih, c.info_hash, 20) || !self) {
        json_decref(root);
        return sw_cli_fail(cmd, "%s: no info_hash/node_id in the node's status", url);
    }
    if (!strcmp(node, "self") && sw_hex_decode(self, target, 32)) {
        json_decref(root);
        return sw_cli_fail(cmd, "%s: bad node_id in the node's status", url);
    }
    json_decref(root);
    memcpy(c.target, target, 32);
    c.ts_s = sw_wall_time_s();
    struct sw_buf w = { 0 };
    if ((rc = sw_load_cmd_sign(&c, &owner, &w))) return sw_cli_fail(cmd, "cannot sign: %s", sw_strerror(rc));
    char *hex = malloc(w.len * 2 + 1);
    if (!hex) {
        sw_buf_free(&w);
        return sw_cli_fail(cmd, "out of memory");
    }
    sw_hex_encode(w.data, w.len, hex);
    sw_buf_free(&w);
    snprintf(url, sizeof url, "%s/swarm/drain", base);
    rc = sw_api_fetch("POST", url, hex, strlen(hex), 10000, &body, NULL, &status, err, sizeof err);
    free(hex);
    if (rc) return sw_cli_fail(cmd, "cannot reach the node: %s", err);
    json_t *r = json_loads(body, 0, NULL);
    const char *detail = r ? json_string_value(json_object_get(r, status == 200 ? "detail" : "error")) : NULL;
    if (!detail && r && status != 200) { /* OpenAI-style {"error":{"message":...}} */
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
