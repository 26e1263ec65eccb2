/* shardcheck.c — read-only verification of a shard file against the model torrent's piece
 * hashes, used by the folder watch (a file copied in by hand) and by `diagnose`. Never
 * writes, renames or deletes. Not for: storing pieces (src/bt storage). */
#include <stdio.h>
#include <string.h>

#include "bt/bt.h"
#include "swarm/swarm.h"

int sw_shard_file_check(const struct sw_bt_metainfo *mi, uint32_t file, const char *path,
                        uint32_t *good_out, uint32_t *total_out, char *msg, size_t msg_len)
{
    return sw_shard_file_check_map(mi, file, path, NULL, good_out, total_out, msg, msg_len);
}

int sw_shard_file_check_map(const struct sw_bt_metainfo *mi, uint32_t file, const char *path, uint8_t *good_map,
                            uint32_t *good_out, uint32_t *total_out, char *msg, size_t msg_len)
{
    if (good_out) *good_out = 0;
    if (total_out) *total_out = 0;
    if (msg_len) msg[0] = 0;
    if (!mi || !path || file >= mi->n_files) return SW_EINVAL;
    const struct sw_bt_file *f = &mi->files[file];
    if (good_map && f->length) memset(good_map, 0, f->last_piece - f->first_piece + 1);
    uint64_t size = 0;
    int rc = sw_file_size(path, &size);
    if (rc) {
        if (msg_len) snprintf(msg, msg_len, "%s: %s", path, rc == SW_ENOTFOUND ? "no such file" : sw_strerror(rc));
        return rc == SW_ENOTFOUND ? SW_ENOTFOUND : SW_EIO;
    }
    int wrong_size = size != f->length;
    if (wrong_size) {
        if (msg_len)
            snprintf(msg, msg_len, "%s has %llu bytes, the torrent says %llu", path, (unsigned long long)size,
                     (unsigned long long)f->length);
        if (!good_map || size == 0) return SW_ERANGE; /* with a map: hash what is there */
    }
    if (f->length == 0) return 0;
    struct sw_mmap m = { 0 };
    if ((rc = sw_file_map(path, &m))) {
        if (msg_len) snprintf(msg, msg_len, "cannot read %s (%s)", path, sw_strerror(rc));
        return SW_EIO;
    }
    struct sw_hash *h = sw_hash_new_sha1();
    if (!h) {
        sw_file_unmap(&m);
        return SW_ENOMEM;
    }
    static const uint8_t zeros[4096];
    uint32_t good = 0, total = 0;
    for (uint32_t pc = f->first_piece; pc <= f->last_piece; pc++) {
        struct sw_bt_span sp[16];
        uint32_t k = sw_bt_piece_spans(mi, pc, 0, sw_bt_piece_size(mi, pc), sp, 16);
        int skip = k == 16;
        for (uint32_t i = 0; i < k; i++)
            if (sp[i].file != file && !mi->files[sp[i].file].pad) skip = 1; /* shares a real neighbour */
        if (skip) continue;
        int inside = 1; /* a file of the wrong size: only pieces wholly inside it are hashed */
        for (uint32_t i = 0; i < k; i++)
            if (sp[i].file == file && sp[i].file_offset + sp[i].len > m.len) inside = 0;
        if (!inside) {
            total++;
            continue;
        }
        for (uint32_t i = 0; i < k; i++) {
            if (sp[i].file == file) {
                sw_hash_update(h, m.data + sp[i].file_offset, sp[i].len);
            } else { /* BEP 47: pad bytes are zeros */
                for (uint32_t z = 0; z < sp[i].len; z += (uint32_t)sizeof zeros)
                    sw_hash_update(h, zeros, SW_MIN(sizeof zeros, (size_t)(sp[i].len - z)));
            }
        }
        uint8_t dg[20];
        sw_hash_final(h, dg);
        total++;
        if (!memcmp(dg, mi->piece_hashes + (size_t)pc * 20, 20)) {
            good++;
            if (good_map) good_map[pc - f->first_piece] = 1;
        }
    }
    sw_hash_free(h);
    sw_file_unmap(&m);
    if (good_out) *good_out = good;
    if (total_out) *total_out = total;
    if (wrong_size) return SW_ERANGE; /* msg says the sizes */
    if (good < total) {
        if (msg_len) snprintf(msg, msg_len, "%u of %u pieces of %s fail their SHA-1", total - good, total, path);
        return SW_ECORRUPT;
    }
    return 0;
}
