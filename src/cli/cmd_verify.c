/* cmd_verify.c — `shardswarm verify DIR`: per shard of DIR/model.json, present and intact, or
 * missing / wrong size / corrupt, with what to do about it. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "gguf/gguf.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: shardswarm verify DIR [--json]\n\n"
               "Checks every shard listed in DIR/model.json (written by `shardswarm split`):\n"
               "present, size, SHA-256, valid GGUF with matching shardswarm.* keys. Prints one\n"
               "line per shard: ok, missing, wrong size or corrupt, and what to do.\n\n"
               "  --json   one JSON object on stdout\n"
               "Exit status: 0 every shard ok, 1 a shard is not ok or the manifest is bad, 2 usage error.\n");
}

int sw_cmd_verify(int argc, char **argv)
{
    if (sw_cli_wants_help(argc, argv)) {
        usage(stdout);
        return SW_EXIT_OK;
    }
    const char *dir = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return sw_cli_usage_error("verify", "unknown option '%s'", argv[i]);
        else if (dir) return sw_cli_usage_error("verify", "one DIR only (got '%s' and '%s')", dir, argv[i]);
        else dir = argv[i];
    }
    if (!dir) return sw_cli_usage_error("verify", "missing DIR (a folder written by `shardswarm split`)");
    char err[1024];
    struct sw_manifest *m = NULL;
    int rc = sw_gguf_manifest_load(dir, &m, err, sizeof err);
    if (rc) return sw_cli_fail("verify", "%s", err);
    uint32_t n = m->n_shards;
    struct sw_shard_check *checks = calloc(n, sizeof *checks);
    if (!checks) {
        sw_gguf_manifest_free(m);
        return sw_cli_fail("verify", "out of memory");
    }
    /* Shards lie beside the manifest; each is reported as soon as it is checked (hashing
     * a 12 GB shard takes a while). */
    char *base = sw_is_dir(dir) ? strdup(dir) : NULL;
    if (!base) {
        const char *slash = strrchr(dir, '/');
        base = slash ? strndup(dir, (size_t)(slash - dir)) : strdup(".");
    }
    if (!json)
        printf("[VERIFY] %s: model %.16s…, %s, %u layers, %u shards\n", dir, m->model_id, m->arch,
               m->n_layers, n);
    for (uint32_t k = 0; k < n && base; k++) {
        char *p = sw_path_join(base, m->shards[k].file);
        if (!p) break;
        sw_gguf_verify_shard(m, k, p, &checks[k]);
        free(p);
        if (!json) {
            const struct sw_shard_check *c = &checks[k];
            printf("  shard %-3u %-14s layers %3u-%-3u  %-10s %s\n", k, m->shards[k].file,
                   m->shards[k].layer_first, m->shards[k].layer_last, sw_shard_state_name(c->state), c->detail);
            fflush(stdout);
        }
    }
    if (!base) {
        free(checks);
        sw_gguf_manifest_free(m);
        return sw_cli_fail("verify", "out of memory");
    }
    free(base);
    uint32_t n_ok = 0, n_missing = 0, n_size = 0, n_corrupt = 0;
    for (uint32_t k = 0; k < n; k++) {
        switch (checks[k].state) {
        case SW_SHARD_OK: n_ok++; break;
        case SW_SHARD_MISSING: n_missing++; break;
        case SW_SHARD_WRONG_SIZE: n_size++; break;
        case SW_SHARD_CORRUPT: n_corrupt++; break;
        }
    }
    if (json) {
        json_t *root = json_object(), *arr = json_array();
        json_object_set_new(root, "dir", json_string(dir) ? json_string(dir) : json_null());
        json_object_set_new(root, "model_id", json_string(m->model_id));
        json_object_set_new(root, "ok", json_boolean(n_ok == n));
        for (uint32_t k = 0; k < n; k++) {
            const struct sw_shard_check *c = &checks[k];
            json_t *o = json_object();
            json_object_set_new(o, "index", json_integer(c->index));
            json_object_set_new(o, "file", json_string(m->shards[k].file));
            json_object_set_new(o, "layer_first", json_integer(m->shards[k].layer_first));
            json_object_set_new(o, "layer_last", json_integer(m->shards[k].layer_last));
            json_object_set_new(o, "state", json_string(sw_shard_state_name(c->state)));
            json_object_set_new(o, "expected_size", json_integer((json_int_t)c->expected_size));
            json_object_set_new(o, "actual_size", json_integer((json_int_t)c->actual_size));
            json_t *d = json_string(c->detail);
            json_object_set_new(o, "detail", d ? d : json_null());
            json_array_append_new(arr, o);
        }
        json_object_set_new(root, "shards", arr);
        json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(root);
    } else {
        if (n_ok == n)
            printf("  all %u shards ok\n", n);
        else
            printf("  %u of %u shards ok: %u missing, %u wrong size, %u corrupt\n", n_ok, n, n_missing, n_size,
                   n_corrupt);
    }
    free(checks);
    sw_gguf_manifest_free(m);
    return n_ok == n ? SW_EXIT_OK : SW_EXIT_FAIL;
}
