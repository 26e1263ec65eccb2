/* model_torrent.c — one model = one torrent: builds the multi-file torrent of a split
 * folder from its manifest (DIR/model.json, read through gguf.h), shards as files.
 * Not for: the generic metainfo code (metainfo.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bt.h"
#include "gguf/gguf.h"

#define ERR(...) (err && err_len ? (void)snprintf(err, err_len, __VA_ARGS__) : (void)0)

int sw_bt_torrent_create_from_manifest(const char *dir, const struct sw_bt_model_torrent_opts *opts,
                                       const char *out_path, char info_hash_hex_out[41],
                                       char *err, size_t err_len)
{
    static const struct sw_bt_model_torrent_opts dflt;
    if (!opts) opts = &dflt;
    if (err && err_len) err[0] = 0;
    struct sw_manifest *man = NULL;
    int rc = sw_gguf_manifest_load(dir, &man, err, err_len);
    if (rc) return rc;
    struct sw_bt_create_file *files = calloc(man->n_shards ? man->n_shards : 1, sizeof *files);
    struct sw_bt_metainfo mi = { 0 };
    struct sw_buf out = { 0 };
    char *def_out = NULL;
    if (!files) { rc = SW_ENOMEM; goto done; }
    for (uint32_t i = 0; i < man->n_shards; i++) {
        const struct sw_manifest_shard *s = &man->shards[i];
        files[i].name = s->file;
        files[i].length = s->size;
        files[i].shard_index = (int)s->index;
        files[i].layer_first = (int)s->layer_first;
        files[i].layer_last = (int)s->layer_last;
        files[i].sha256_hex = s->sha256_hex;
    }
    const char *owner = opts->owner_key_hex && *opts->owner_key_hex ? opts->owner_key_hex : man->owner_pubkey_hex;
    /* The torrent's name: the model's general.name when it is a safe folder name. */
    char name[128];
    snprintf(name, sizeof name, "%s", man->name[0] ? man->name : "model");
    for (char *c = name; *c; c++)
        if (*c == '/' || *c == '\\' || (unsigned char)*c < 0x20) *c = '_';
    if (!strcmp(name, ".") || !strcmp(name, "..")) snprintf(name, sizeof name, "model");
    struct sw_bt_create_opts co = {
        .dir = dir, .name = name, .files = files, .n_files = man->n_shards,
        .piece_length = opts->piece_length, .architecture = man->arch, .model_id = man->model_id,
        .n_layers = man->n_layers, .owner_key_hex = owner, .trackers = opts->trackers,
        .n_trackers = opts->n_trackers, .web_seeds = opts->web_seeds, .n_web_seeds = opts->n_web_seeds,
        .progress = opts->progress, .progress_ud = opts->progress_ud,
    };
    rc = sw_bt_metainfo_create(&co, &mi, err, err_len);
    if (rc) goto done;
    rc = sw_bt_metainfo_encode(&mi, &out);
    if (rc) goto done;
    if (!out_path) {
        def_out = sw_path_join(dir, "model.torrent");
        if (!def_out) { rc = SW_ENOMEM; goto done; }
        out_path = def_out;
    }
    rc = sw_file_write_atomic(out_path, out.data, out.len);
    if (rc) { ERR("%s: %s", out_path, sw_strerror(rc)); goto done; }
    if (info_hash_hex_out) memcpy(info_hash_hex_out, mi.info_hash_hex, 41);
done:
    free(def_out);
    sw_buf_free(&out);
    sw_bt_metainfo_free(&mi);
    free(files);
    sw_gguf_manifest_free(man);
    return rc;
}
