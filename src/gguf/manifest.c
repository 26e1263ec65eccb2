/* manifest.c — DIR/model.json, the list of shards split wrote (layer ranges, sizes, SHA-256),
 * and verify: which shards of a folder are present, missing, of the wrong size or corrupt.
 * The manifest is outside input when it comes from another machine: every field is checked. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gguf_internal.h"

#define CAP_MANIFEST_BYTES (16u << 20)
#define CAP_SHARDS 4096u
#define MANIFEST_FORMAT "shardswarm-model"
#define MANIFEST_VERSION 1

/* ------------------------------------------------------------------ write */

int sw__manifest_write(const char *dir, const struct sw_manifest *m, const char **source_files,
                       uint32_t n_source_files, char *err, size_t err_len)
{
    json_t *root = json_object(), *shards = json_array(), *src = json_object(), *files = json_array();
    int rc = SW_ENOMEM;
    char *text = NULL, *path = NULL;
    if (!root || !shards || !src || !files) goto out;
    json_object_set_new(root, "format", json_string(MANIFEST_FORMAT));
    json_object_set_new(root, "version", json_integer(MANIFEST_VERSION));
    json_object_set_new(root, "model_id", json_string(m->model_id));
    json_object_set_new(root, "architecture", json_string(m->arch));
    if (m->name[0]) json_object_set_new(root, "name", json_stringn(m->name, strlen(m->name)));
    json_object_set_new(root, "n_layers", json_integer(m->n_layers));
    json_object_set_new(root, "n_shards", json_integer(m->n_shards));
    json_object_set_new(root, "alignment", json_integer((json_int_t)m->alignment));
    if (m->owner_pubkey_hex[0]) json_object_set_new(root, "owner_pubkey", json_string(m->owner_pubkey_hex));
    for (uint32_t i = 0; i < n_source_files; i++) json_array_append_new(files, json_string(source_files[i]));
    json_object_set_new(src, "files", files);
    files = NULL;
    json_object_set_new(src, "size", json_integer((json_int_t)m->source_size));
    json_object_set_new(root, "source", src);
    src = NULL;
    for (uint32_t i = 0; i < m->n_shards; i++) {
        const struct sw_manifest_shard *s = &m->shards[i];
        json_t *o = json_object();
        if (!o) goto out;
        json_object_set_new(o, "index", json_integer(s->index));
        json_object_set_new(o, "file", json_string(s->file));
        json_object_set_new(o, "layer_first", json_integer(s->layer_first));
        json_object_set_new(o, "layer_last", json_integer(s->layer_last));
        json_object_set_new(o, "size", json_integer((json_int_t)s->size));
        json_object_set_new(o, "tensor_bytes", json_integer((json_int_t)s->tensor_bytes));
        json_object_set_new(o, "n_tensors", json_integer(s->n_tensors));
        json_object_set_new(o, "sha256", json_string(s->sha256_hex));
        json_array_append_new(shards, o);
    }
    json_object_set_new(root, "shards", shards);
    shards = NULL;
    text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    path = sw_path_join(dir, SW_MANIFEST_FILE);
    if (!text || !path) goto out;
    size_t n = strlen(text);
    char *t2 = realloc(text, n + 2);
    if (!t2) goto out;
    text = t2;
    text[n] = '\n';
    rc = sw_file_write_atomic(path, text, n + 1);
    if (rc) sw_errf(err, err_len, 0, "%s: cannot write: %s", path, sw_strerror(rc));
out:
    if (rc == SW_ENOMEM) sw_errf(err, err_len, 0, "out of memory writing the manifest");
    json_decref(root);
    json_decref(shards);
    json_decref(src);
    json_decref(files);
    free(text);
    free(path);
    return rc;
}

/* ------------------------------------------------------------------ load */

static int get_uint(json_t *o, const char *key, uint64_t max, uint64_t *out, const char *path,
                    const char *ctx, char *err, size_t err_len)
{
    json_t *v = json_object_get(o, key);
    if (!v || !json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max) {
        sw_errf(err, err_len, 0, "%s: %s\"%s\": expected an integer in 0..%llu", path, ctx, key,
               (unsigned long long)max);
        return SW_ECORRUPT;
    }
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_str(json_t *o, const char *key, int required, char *buf, size_t buf_len, const char *path,
                   const char *ctx, char *err, size_t err_len)
{
    json_t *v = json_object_get(o, key);
    buf[0] = 0;
    if (!v && !required) return 0;
    if (!v || !json_is_string(v) || json_string_length(v) >= buf_len) {
        sw_errf(err, err_len, 0, "%s: %s\"%s\": expected a string of at most %zu bytes", path, ctx, key, buf_len - 1);
        return SW_ECORRUPT;
    }
    memcpy(buf, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static int is_hex(const char *s, size_t n)
{
    if (strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

/* A shard file name must stay inside the folder: no separators, not "." or "..". */
static int safe_file_name(const char *s)
{
    if (!s[0] || !strcmp(s, ".") || !strcmp(s, "..")) return 0;
    for (; *s; s++)
        if (*s == '/' || *s == '\\' || (unsigned char)*s < 0x20) return 0;
    return 1;
}

int sw_gguf_manifest_load(const char *path, struct sw_manifest **out, char *err, size_t err_len)
{
    *out = NULL;
    if (err && err_len) err[0] = 0;
    char *file = sw_is_dir(path) ? sw_path_join(path, SW_MANIFEST_FILE) : strdup(path);
    if (!file) return SW_ENOMEM;
    uint8_t *data = NULL;
    size_t len = 0;
    json_t *root = NULL;
    struct sw_manifest *m = NULL;
    int rc = sw_file_read_all(file, CAP_MANIFEST_BYTES, &data, &len);
    if (rc) {
        if (rc == SW_ENOTFOUND)
            sw_errf(err, err_len, 0, "%s: no manifest (run `shardswarm split` to make one)", file);
        else if (rc == SW_ETOOBIG)
            sw_errf(err, err_len, 0, "%s: larger than %u bytes", file, CAP_MANIFEST_BYTES);
        else sw_errf(err, err_len, 0, "%s: cannot read: %s", file, sw_strerror(rc));
        goto out;
    }
    json_error_t je;
    root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &je);
    if (!root || !json_is_object(root)) {
        sw_errf(err, err_len, 0, "%s: not valid JSON (line %d column %d: %s)", file, root ? 1 : je.line,
               root ? 1 : je.column, root ? "expected an object" : je.text);
        rc = SW_ECORRUPT;
        goto out;
    }
    json_t *fmt = json_object_get(root, "format");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), MANIFEST_FORMAT)) {
        sw_errf(err, err_len, 0, "%s: \"format\": expected \"%s\"", file, MANIFEST_FORMAT);
        rc = SW_ECORRUPT;
        goto out;
    }
    uint64_t v;
    if ((rc = get_uint(root, "version", 1000, &v, file, "", err, err_len))) goto out;
    if (v != MANIFEST_VERSION) {
        sw_errf(err, err_len, 0, "%s: \"version\" %llu is not supported (expected %d)", file,
               (unsigned long long)v, MANIFEST_VERSION);
        rc = SW_EUNSUPPORTED;
        goto out;
    }
    m = calloc(1, sizeof *m);
    if (!m) { rc = SW_ENOMEM; goto out; }
    if ((rc = get_str(root, "model_id", 1, m->model_id, sizeof m->model_id, file, "", err, err_len))) goto out;
    if ((rc = get_str(root, "architecture", 1, m->arch, sizeof m->arch, file, "", err, err_len))) goto out;
    if ((rc = get_str(root, "name", 0, m->name, sizeof m->name, file, "", err, err_len))) goto out;
    if ((rc = get_str(root, "owner_pubkey", 0, m->owner_pubkey_hex, sizeof m->owner_pubkey_hex, file, "",
                      err, err_len)))
        goto out;
    if ((rc = get_uint(root, "n_layers", 1u << 20, &v, file, "", err, err_len))) goto out;
    m->n_layers = (uint32_t)v;
    if ((rc = get_uint(root, "alignment", 1u << 30, &m->alignment, file, "", err, err_len))) goto out;
    json_t *src = json_object_get(root, "source");
    if (json_is_object(src) && json_object_get(src, "size") &&
        (rc = get_uint(src, "size", UINT64_MAX >> 1, &m->source_size, file, "source.", err, err_len)))
        goto out;
    json_t *shards = json_object_get(root, "shards");
    if (!json_is_array(shards) || json_array_size(shards) == 0 || json_array_size(shards) > CAP_SHARDS) {
        sw_errf(err, err_len, 0, "%s: \"shards\": expected an array of 1..%u shards", file, CAP_SHARDS);
        rc = SW_ECORRUPT;
        goto out;
    }
    m->n_shards = (uint32_t)json_array_size(shards);
    if ((rc = get_uint(root, "n_shards", CAP_SHARDS, &v, file, "", err, err_len))) goto out;
    if (v != m->n_shards) {
        sw_errf(err, err_len, 0, "%s: \"n_shards\" is %llu but \"shards\" lists %u", file, (unsigned long long)v,
               m->n_shards);
        rc = SW_ECORRUPT;
        goto out;
    }
    m->shards = calloc(m->n_shards, sizeof *m->shards);
    if (!m->shards) { rc = SW_ENOMEM; goto out; }
    uint32_t next_layer = 0;
    for (uint32_t i = 0; i < m->n_shards; i++) {
        json_t *o = json_array_get(shards, i);
        struct sw_manifest_shard *s = &m->shards[i];
        char ctx[48];
        snprintf(ctx, sizeof ctx, "shards[%u].", i);
        if (!json_is_object(o)) {
            sw_errf(err, err_len, 0, "%s: shards[%u]: expected an object", file, i);
            rc = SW_ECORRUPT;
            goto out;
        }
        if ((rc = get_uint(o, "index", CAP_SHARDS, &v, file, ctx, err, err_len))) goto out;
        s->index = (uint32_t)v;
        if ((rc = get_uint(o, "layer_first", UINT32_MAX, &v, file, ctx, err, err_len))) goto out;
        s->layer_first = (uint32_t)v;
        if ((rc = get_uint(o, "layer_last", UINT32_MAX, &v, file, ctx, err, err_len))) goto out;
        s->layer_last = (uint32_t)v;
        if ((rc = get_uint(o, "size", UINT64_MAX >> 1, &s->size, file, ctx, err, err_len))) goto out;
        if (json_object_get(o, "tensor_bytes") &&
            (rc = get_uint(o, "tensor_bytes", UINT64_MAX >> 1, &s->tensor_bytes, file, ctx, err, err_len)))
            goto out;
        if (json_object_get(o, "n_tensors")) {
            if ((rc = get_uint(o, "n_tensors", UINT32_MAX, &v, file, ctx, err, err_len))) goto out;
            s->n_tensors = (uint32_t)v;
        }
        if ((rc = get_str(o, "file", 1, s->file, sizeof s->file, file, ctx, err, err_len))) goto out;
        if ((rc = get_str(o, "sha256", 1, s->sha256_hex, sizeof s->sha256_hex, file, ctx, err, err_len))) goto out;
        if (s->index != i) {
            sw_errf(err, err_len, 0, "%s: shards[%u].\"index\" is %u, expected %u", file, i, s->index, i);
            rc = SW_ECORRUPT;
            goto out;
        }
        if (!safe_file_name(s->file)) {
            sw_errf(err, err_len, 0, "%s: shards[%u].\"file\" \"%s\" is not a plain file name", file, i, s->file);
            rc = SW_ECORRUPT;
            goto out;
        }
        if (!is_hex(s->sha256_hex, 64)) {
            sw_errf(err, err_len, 0, "%s: shards[%u].\"sha256\": expected 64 lower-case hex digits", file, i);
            rc = SW_ECORRUPT;
            goto out;
        }
        /* Layer ranges are contiguous, in order, and cover 0..n_layers-1. */
        if (s->layer_first != next_layer || s->layer_last < s->layer_first || s->layer_last >= m->n_layers) {
            sw_errf(err, err_len, 0, "%s: shards[%u] layers %u..%u: expected a range starting at %u within 0..%u",
                   file, i, s->layer_first, s->layer_last, next_layer, m->n_layers ? m->n_layers - 1 : 0);
            rc = SW_ECORRUPT;
            goto out;
        }
        next_layer = s->layer_last + 1;
    }
    if (next_layer != m->n_layers) {
        sw_errf(err, err_len, 0, "%s: the shards cover layers 0..%u but the model has %u", file, next_layer - 1,
               m->n_layers);
        rc = SW_ECORRUPT;
        goto out;
    }
    *out = m;
    m = NULL;
    rc = 0;
out:
    sw_gguf_manifest_free(m);
    json_decref(root);
    free(data);
    free(file);
    return rc;
}

void sw_gguf_manifest_free(struct sw_manifest *m)
{
    if (!m) return;
    free(m->shards);
    free(m);
}

/* ------------------------------------------------------------------ verify */

const char *sw_shard_state_name(enum sw_shard_state s)
{
    switch (s) {
    case SW_SHARD_OK: return "ok";
    case SW_SHARD_MISSING: return "missing";
    case SW_SHARD_WRONG_SIZE: return "wrong size";
    case SW_SHARD_CORRUPT: return "corrupt";
    }
    return "?";
}

void sw_gguf_verify_shard(const struct sw_manifest *m, uint32_t index, const char *path,
                          struct sw_shard_check *c)
{
    const struct sw_manifest_shard *ms = &m->shards[index];
    memset(c, 0, sizeof *c);
    c->index = index;
    c->expected_size = ms->size;
    snprintf(c->path, sizeof c->path, "%s", path);
    uint64_t size = 0;
    int rc = sw_file_size(path, &size);
    if (rc || !sw_path_exists(path) || sw_is_dir(path)) {
        c->state = SW_SHARD_MISSING;
        snprintf(c->detail, sizeof c->detail,
                 "not found: copy %.100s into this folder, or let a node fetch it from the swarm", ms->file);
        return;
    }
    c->actual_size = size;
    if (size != ms->size) {
        c->state = SW_SHARD_WRONG_SIZE;
        snprintf(c->detail, sizeof c->detail,
                 "%llu bytes, expected %llu: an incomplete copy or another file; delete it and fetch it again",
                 (unsigned long long)size, (unsigned long long)ms->size);
        return;
    }
    uint8_t d[32];
    char hex[65];
    if ((rc = sw_sha256_file(path, d))) {
        c->state = SW_SHARD_CORRUPT;
        snprintf(c->detail, sizeof c->detail, "cannot read it: %s; check the disk and permissions",
                 sw_strerror(rc));
        return;
    }
    sw_hex_encode(d, 32, hex);
    if (strcmp(hex, ms->sha256_hex)) {
        c->state = SW_SHARD_CORRUPT;
        snprintf(c->detail, sizeof c->detail,
                 "SHA-256 %.16s… differs from the manifest's %.16s…: delete it and fetch it again", hex,
                 ms->sha256_hex);
        return;
    }
    struct sw_gguf *g = NULL;
    char err[200];
    if ((rc = sw_gguf_open(path, &g, err, sizeof err))) {
        c->state = SW_SHARD_CORRUPT;
        snprintf(c->detail, sizeof c->detail, "matches the manifest's hash but is not valid GGUF (%.150s): re-split the model",
                 err);
        return;
    }
    struct sw_gguf_shard_info si;
    rc = sw_gguf_shard_info(g, &si);
    if (rc || si.index != index || si.count != m->n_shards || si.layer_first != ms->layer_first ||
        si.layer_last != ms->layer_last || strcmp(si.model_id, m->model_id)) {
        c->state = SW_SHARD_CORRUPT;
        snprintf(c->detail, sizeof c->detail,
                 "its shardswarm.* keys do not match the manifest (shard %u of %u, layers %u..%u): re-split the model",
                 si.index, si.count, si.layer_first, si.layer_last);
    } else {
        c->state = SW_SHARD_OK;
        snprintf(c->detail, sizeof c->detail, "layers %u..%u, %llu bytes, SHA-256 ok", ms->layer_first,
                 ms->layer_last, (unsigned long long)size);
    }
    sw_gguf_close(g);
}

int sw_gguf_verify_dir(const char *dir, struct sw_shard_check *checks_out, uint32_t *n_io, char *err,
                       size_t err_len)
{
    struct sw_manifest *m = NULL;
    int rc = sw_gguf_manifest_load(dir, &m, err, err_len);
    if (rc) return rc;
    if (*n_io < m->n_shards) {
        sw_errf(err, err_len, 0, "room for %u shard checks, the manifest lists %u", *n_io, m->n_shards);
        *n_io = m->n_shards;
        sw_gguf_manifest_free(m);
        return SW_ERANGE;
    }
    char *base = sw_is_dir(dir) ? strdup(dir) : NULL;
    if (!base) {
        /* dir named the JSON file itself: shards lie beside it. */
        const char *slash = strrchr(dir, '/');
        base = slash ? strndup(dir, (size_t)(slash - dir)) : strdup(".");
    }
    if (!base) { sw_gguf_manifest_free(m); return SW_ENOMEM; }
    for (uint32_t i = 0; i < m->n_shards; i++) {
        char *p = sw_path_join(base, m->shards[i].file);
        if (!p) { rc = SW_ENOMEM; break; }
        sw_gguf_verify_shard(m, i, p, &checks_out[i]);
        free(p);
    }
    *n_io = m->n_shards;
    free(base);
    sw_gguf_manifest_free(m);
    return rc;
}
