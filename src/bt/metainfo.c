/* metainfo.c — v1 .torrent files (BEP 3): parse with caps, encode, create from files with
 * BEP 47 pad files between them, the shardswarm info-dict dictionary, and piece->file spans.
 * Not for: magnet links (magnet.c) or reading the split manifest (manifest.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bt.h"
#include "bt_int.h"

#define ERR(...) (err && err_len ? (void)snprintf(err, err_len, __VA_ARGS__) : (void)0)

int sw_bt_path_is_safe(const char *path)
{
    if (!path || !*path || path[0] == '/' || strlen(path) > SW_BT_MAX_PATH) return 0;
    const char *p = path;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0) return 0;                               /* empty component or "//" */
        if (n == 1 && p[0] == '.') return 0;
        if (n == 2 && p[0] == '.' && p[1] == '.') return 0; /* would escape the folder */
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)p[i];
            if (c < 0x20 || c == '\\' || c == 0x7f) return 0;
        }
        if (n >= 2 && p[1] == ':') return 0;                /* "C:" drive letters */
        if (!e) break;
        p = e + 1;
        if (!*p) return 0;                                  /* trailing '/' */
    }
    return 1;
}

void sw_bt_metainfo_free(struct sw_bt_metainfo *mi)
{
    if (!mi) return;
    for (uint32_t i = 0; i < mi->n_files; i++) free(mi->files[i].path);
    free(mi->files);
    free(mi->name);
    free(mi->piece_hashes);
    free(mi->info_raw);
    sw__strv_free(mi->trackers, mi->n_trackers);
    sw__strv_free(mi->web_seeds, mi->n_web_seeds);
    memset(mi, 0, sizeof *mi);
}

void sw__strv_free(char **v, uint32_t n)
{
    if (!v) return;
    for (uint32_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

int sw__strv_add(char ***v, uint32_t *n, const char *s, size_t len)
{
    for (uint32_t i = 0; i < *n; i++)
        if (strlen((*v)[i]) == len && !memcmp((*v)[i], s, len)) return 0; /* de-duplicate */
    if (*n >= 1024) return SW_ETOOBIG;
    char **nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (!nv) return SW_ENOMEM;
    *v = nv;
    char *c = malloc(len + 1);
    if (!c) return SW_ENOMEM;
    memcpy(c, s, len);
    c[len] = 0;
    nv[(*n)++] = c;
    return 0;
}

static char *bstr_dup(const struct sw_bnode *n)
{
    if (!n || n->type != SW_BSTR || memchr(n->str, 0, n->str_len)) return NULL;
    char *s = malloc(n->str_len + 1);
    if (!s) return NULL;
    memcpy(s, n->str, n->str_len);
    s[n->str_len] = 0;
    return s;
}

static void bstr_copy(const struct sw_bnode *n, char *out, size_t cap)
{
    out[0] = 0;
    if (!n || n->type != SW_BSTR || n->str_len >= cap || memchr(n->str, 0, n->str_len)) return;
    memcpy(out, n->str, n->str_len);
    out[n->str_len] = 0;
}

static int64_t bint_or(const struct sw_bdoc *d, const struct sw_bnode *dict, const char *key, int64_t dflt)
{
    const struct sw_bnode *n = sw_bdict_get_type(d, dict, key, SW_BINT);
    return n ? n->ival : dflt;
}

uint32_t sw_bt_piece_size(const struct sw_bt_metainfo *mi, uint32_t piece)
{
    if (piece >= mi->n_pieces) return 0;
    uint64_t start = (uint64_t)piece * mi->piece_length;
    uint64_t left = mi->total_length - start;
    return left < mi->piece_length ? (uint32_t)left : mi->piece_length;
}

/* Reads the shardswarm dictionary (our extension of the info dict; ordinary clients
 * ignore unknown info keys, BEP 3). */
static int parse_shardswarm(const struct sw_bdoc *d, const struct sw_bnode *ss, struct sw_bt_metainfo *mi,
                            char *err, size_t err_len)
{
    mi->has_shardswarm = 1;
    bstr_copy(sw_bdict_get(d, ss, "architecture"), mi->architecture, sizeof mi->architecture);
    bstr_copy(sw_bdict_get(d, ss, "model"), mi->model_name, sizeof mi->model_name);
    bstr_copy(sw_bdict_get(d, ss, "model_id"), mi->model_id, sizeof mi->model_id);
    bstr_copy(sw_bdict_get(d, ss, "owner"), mi->owner_key_hex, sizeof mi->owner_key_hex);
    if (mi->owner_key_hex[0]) {
        uint8_t k[32];
        if (strlen(mi->owner_key_hex) != 64 || sw_hex_decode(mi->owner_key_hex, k, 32)) {
            ERR("torrent: shardswarm.owner is not 64 hex digits");
            return SW_ECORRUPT;
        }
    }
    int64_t nl = bint_or(d, ss, "n_layers", 0), sc = bint_or(d, ss, "shard_count", 0);
    if (nl < 0 || nl > 100000 || sc < 0 || sc > 100000) {
        ERR("torrent: shardswarm.n_layers/shard_count out of range");
        return SW_ECORRUPT;
    }
    mi->n_layers = (uint32_t)nl;
    mi->n_shards = (uint32_t)sc;
    const struct sw_bnode *shards = sw_bdict_get_type(d, ss, "shards", SW_BLIST);
    if (!shards) return 0;
    for (const struct sw_bnode *s = sw_bnode_child(d, shards); s; s = sw_bnode_next(d, s)) {
        if (s->type != SW_BDICT) { ERR("torrent: shardswarm.shards entry is not a dict"); return SW_ECORRUPT; }
        char fname[SW_BT_MAX_PATH + 1];
        bstr_copy(sw_bdict_get(d, s, "file"), fname, sizeof fname);
        int64_t idx = bint_or(d, s, "index", -1), lf = bint_or(d, s, "layer_first", -1),
                ll = bint_or(d, s, "layer_last", -1);
        if (idx < 0 || idx > 100000 || lf < -1 || lf > 100000 || ll < -1 || ll > 100000 || (lf >= 0 && ll < lf)) {
            ERR("torrent: shardswarm.shards entry has a bad index or layer range");
            return SW_ECORRUPT;
        }
        for (uint32_t i = 0; i < mi->n_files; i++) {
            if (mi->files[i].pad || strcmp(mi->files[i].path, fname)) continue;
            mi->files[i].shard_index = (int)idx;
            mi->files[i].layer_first = (int)lf;
            mi->files[i].layer_last = (int)ll;
            bstr_copy(sw_bdict_get(d, s, "sha256"), mi->files[i].sha256_hex, sizeof mi->files[i].sha256_hex);
        }
    }
    return 0;
}

/* Joins a BEP 3 path list into "a/b/c" and validates it. */
static char *join_path(const struct sw_bdoc *d, const struct sw_bnode *list, char *err, size_t err_len)
{
    struct sw_buf b = { 0 };
    uint32_t k = 0;
    for (const struct sw_bnode *c = sw_bnode_child(d, list); c; c = sw_bnode_next(d, c), k++) {
        if (c->type != SW_BSTR) { ERR("torrent: file path element is not a string"); goto bad; }
        if (memchr(c->str, '/', c->str_len) || memchr(c->str, 0, c->str_len)) {
            ERR("torrent: file path element contains '/' or NUL");
            goto bad;
        }
        if (k) sw_buf_append_byte(&b, '/');
        sw_buf_append(&b, c->str, c->str_len);
        if (b.len > SW_BT_MAX_PATH) { ERR("torrent: file path longer than %u bytes", SW_BT_MAX_PATH); goto bad; }
    }
    if (!k) { ERR("torrent: empty file path"); goto bad; }
    const char *s = sw_buf_cstr(&b);
    if (!s) goto bad;
    if (strlen(s) != b.len || !sw_bt_path_is_safe(s)) {
        ERR("torrent: unsafe file path '%.200s' (absolute, '..', or empty component)", s);
        goto bad;
    }
    return (char *)b.data;
bad:
    sw_buf_free(&b);
    return NULL;
}

static int parse_info_node(const struct sw_bdoc *d, const struct sw_bnode *info, struct sw_bt_metainfo *mi,
                           char *err, size_t err_len)
{
    if (!info || info->type != SW_BDICT) { ERR("torrent: 'info' is missing or not a dict"); return SW_ECORRUPT; }
    mi->info_raw = malloc(info->raw_len);
    if (!mi->info_raw) return SW_ENOMEM;
    memcpy(mi->info_raw, info->raw, info->raw_len);
    mi->info_len = info->raw_len;
    sw_sha1(info->raw, info->raw_len, mi->info_hash); /* BEP 3: SHA-1 of the bencoded info value */
    sw_hex_encode(mi->info_hash, 20, mi->info_hash_hex);

    const struct sw_bnode *pl = sw_bdict_get_type(d, info, "piece length", SW_BINT);
    const struct sw_bnode *pieces = sw_bdict_get_type(d, info, "pieces", SW_BSTR);
    if (!pl || !pieces) {
        if (bint_or(d, info, "meta version", 1) == 2) {
            ERR("torrent: BitTorrent v2-only torrents are not supported (use v1)");
            return SW_EUNSUPPORTED;
        }
        ERR("torrent: info.%s missing", pl ? "pieces" : "piece length");
        return SW_ECORRUPT;
    }
    if (pl->ival < (int64_t)SW_BT_MIN_PIECE || pl->ival > (int64_t)SW_BT_MAX_PIECE || (pl->ival & (pl->ival - 1))) {
        ERR("torrent: info.piece length %lld is not a power of two in [16 KiB, 64 MiB]", (long long)pl->ival);
        return SW_ECORRUPT;
    }
    mi->piece_length = (uint32_t)pl->ival;
    if (pieces->str_len % 20 || pieces->str_len == 0) { ERR("torrent: info.pieces length is not a multiple of 20"); return SW_ECORRUPT; }
    mi->n_pieces = (uint32_t)(pieces->str_len / 20);
    mi->piece_hashes = malloc(pieces->str_len);
    if (!mi->piece_hashes) return SW_ENOMEM;
    memcpy(mi->piece_hashes, pieces->str, pieces->str_len);

    mi->name = bstr_dup(sw_bdict_get_type(d, info, "name", SW_BSTR));
    if (!mi->name || !sw_bt_path_is_safe(mi->name) || strchr(mi->name, '/')) {
        ERR("torrent: info.name missing or unsafe");
        return SW_ECORRUPT;
    }
    mi->is_private = bint_or(d, info, "private", 0) == 1;

    const struct sw_bnode *files = sw_bdict_get_type(d, info, "files", SW_BLIST);
    const struct sw_bnode *length = sw_bdict_get_type(d, info, "length", SW_BINT);
    if (files) {
        if (files->n_items == 0 || files->n_items > SW_BT_MAX_FILES) { ERR("torrent: info.files has %u entries", files->n_items); return SW_ECORRUPT; }
        mi->files = calloc(files->n_items, sizeof *mi->files);
        if (!mi->files) return SW_ENOMEM;
        for (const struct sw_bnode *f = sw_bnode_child(d, files); f; f = sw_bnode_next(d, f)) {
            struct sw_bt_file *bf = &mi->files[mi->n_files];
            if (f->type != SW_BDICT) { ERR("torrent: info.files entry is not a dict"); return SW_ECORRUPT; }
            const struct sw_bnode *fl = sw_bdict_get_type(d, f, "length", SW_BINT);
            const struct sw_bnode *fp = sw_bdict_get_type(d, f, "path", SW_BLIST);
            if (!fl || fl->ival < 0 || !fp) { ERR("torrent: info.files[%u] lacks length or path", mi->n_files); return SW_ECORRUPT; }
            bf->path = join_path(d, fp, err, err_len);
            if (!bf->path) return SW_ECORRUPT;
            mi->n_files++;
            bf->length = (uint64_t)fl->ival;
            const struct sw_bnode *attr = sw_bdict_get_type(d, f, "attr", SW_BSTR);
            bf->pad = attr && memchr(attr->str, 'p', attr->str_len) != NULL; /* BEP 47 */
            bf->shard_index = bf->layer_first = bf->layer_last = -1;
            if (mi->total_length + bf->length < mi->total_length || bf->length > (UINT64_C(1) << 50)) {
                ERR("torrent: total length overflows"); return SW_ECORRUPT;
            }
            bf->offset = mi->total_length;
            mi->total_length += bf->length;
        }
        /* Two files with the same path would share one file on disk. */
        for (uint32_t i = 0; i < mi->n_files && mi->n_files <= 4096; i++)
            for (uint32_t j = i + 1; j < mi->n_files; j++)
                if (!mi->files[i].pad && !mi->files[j].pad && !strcmp(mi->files[i].path, mi->files[j].path)) {
                    ERR("torrent: duplicate file path '%.200s'", mi->files[i].path);
                    return SW_ECORRUPT;
                }
    } else if (length) {
        if (length->ival < 0 || length->ival > (INT64_C(1) << 50)) { ERR("torrent: info.length out of range"); return SW_ECORRUPT; }
        mi->files = calloc(1, sizeof *mi->files);
        if (!mi->files) return SW_ENOMEM;
        mi->files[0].path = strdup(mi->name);
        if (!mi->files[0].path) return SW_ENOMEM;
        mi->files[0].length = (uint64_t)length->ival;
        mi->files[0].shard_index = mi->files[0].layer_first = mi->files[0].layer_last = -1;
        mi->n_files = 1;
        mi->total_length = (uint64_t)length->ival;
    } else {
        ERR("torrent: info has neither 'files' nor 'length'");
        return SW_ECORRUPT;
    }
    uint64_t want_pieces = (mi->total_length + mi->piece_length - 1) / mi->piece_length;
    if (mi->total_length == 0 || want_pieces != mi->n_pieces) {
        ERR("torrent: info.pieces holds %u hashes but %llu bytes need %llu", mi->n_pieces,
            (unsigned long long)mi->total_length, (unsigned long long)want_pieces);
        return SW_ECORRUPT;
    }
    for (uint32_t i = 0; i < mi->n_files; i++) {
        struct sw_bt_file *f = &mi->files[i];
        f->first_piece = (uint32_t)(f->offset / mi->piece_length);
        f->last_piece = f->length ? (uint32_t)((f->offset + f->length - 1) / mi->piece_length) : f->first_piece - 1;
    }
    const struct sw_bnode *ss = sw_bdict_get_type(d, info, "shardswarm", SW_BDICT);
    if (ss) return parse_shardswarm(d, ss, mi, err, err_len);
    return 0;
}

static const struct sw_blimits torrent_limits = { .max_nodes = 4 * SW_BT_MAX_FILES + 10000, .max_depth = 16 };

int sw_bt_metainfo_parse_info(const uint8_t *info, size_t len, struct sw_bt_metainfo *mi_out,
                              char *err, size_t err_len)
{
    memset(mi_out, 0, sizeof *mi_out);
    if (err && err_len) err[0] = 0;
    if (len > SW_BT_MAX_INFO_BYTES) { ERR("torrent: info dict larger than %u bytes", SW_BT_MAX_INFO_BYTES); return SW_ETOOBIG; }
    struct sw_bdoc d = { 0 };
    int rc = sw_bdecode(info, len, &torrent_limits, &d, NULL, err, err_len);
    if (rc) return rc == SW_EAGAIN ? SW_ECORRUPT : rc;
    rc = parse_info_node(&d, &d.nodes[0], mi_out, err, err_len);
    sw_bdoc_free(&d);
    if (rc) sw_bt_metainfo_free(mi_out);
    return rc;
}

int sw_bt_metainfo_parse(const uint8_t *data, size_t len, struct sw_bt_metainfo *mi_out,
                         char *err, size_t err_len)
{
    memset(mi_out, 0, sizeof *mi_out);
    if (err && err_len) err[0] = 0;
    if (len > SW_BT_MAX_TORRENT_BYTES) { ERR("torrent: file larger than %u bytes", SW_BT_MAX_TORRENT_BYTES); return SW_ETOOBIG; }
    struct sw_bdoc d = { 0 };
    int rc = sw_bdecode(data, len, &torrent_limits, &d, NULL, err, err_len);
    if (rc) return rc == SW_EAGAIN ? SW_ECORRUPT : rc;
    const struct sw_bnode *root = &d.nodes[0];
    if (root->type != SW_BDICT) { ERR("torrent: top level is not a dict"); rc = SW_ECORRUPT; goto out; }
    rc = parse_info_node(&d, sw_bdict_get(&d, root, "info"), mi_out, err, err_len);
    if (rc) goto out;
    /* BEP 12: announce-list tiers take precedence; we keep every URL, in order. */
    const struct sw_bnode *al = sw_bdict_get_type(&d, root, "announce-list", SW_BLIST);
    for (const struct sw_bnode *tier = al ? sw_bnode_child(&d, al) : NULL; tier; tier = sw_bnode_next(&d, tier)) {
        if (tier->type != SW_BLIST) continue;
        for (const struct sw_bnode *u = sw_bnode_child(&d, tier); u; u = sw_bnode_next(&d, u))
            if (u->type == SW_BSTR && u->str_len && u->str_len < 2048 && !memchr(u->str, 0, u->str_len))
                if ((rc = sw__strv_add(&mi_out->trackers, &mi_out->n_trackers, (const char *)u->str, u->str_len))) goto out;
    }
    const struct sw_bnode *an = sw_bdict_get_type(&d, root, "announce", SW_BSTR);
    if (an && an->str_len && an->str_len < 2048 && !memchr(an->str, 0, an->str_len))
        if ((rc = sw__strv_add(&mi_out->trackers, &mi_out->n_trackers, (const char *)an->str, an->str_len))) goto out;
    /* BEP 19: url-list is a string or a list of strings. */
    const struct sw_bnode *ul = sw_bdict_get(&d, root, "url-list");
    if (ul && ul->type == SW_BSTR && ul->str_len && ul->str_len < 2048 && !memchr(ul->str, 0, ul->str_len)) {
        rc = sw__strv_add(&mi_out->web_seeds, &mi_out->n_web_seeds, (const char *)ul->str, ul->str_len);
    } else if (ul && ul->type == SW_BLIST) {
        for (const struct sw_bnode *u = sw_bnode_child(&d, ul); u && !rc; u = sw_bnode_next(&d, u))
            if (u->type == SW_BSTR && u->str_len && u->str_len < 2048 && !memchr(u->str, 0, u->str_len))
                rc = sw__strv_add(&mi_out->web_seeds, &mi_out->n_web_seeds, (const char *)u->str, u->str_len);
    }
out:
    sw_bdoc_free(&d);
    if (rc) sw_bt_metainfo_free(mi_out);
    return rc;
}

int sw_bt_metainfo_load(const char *path, struct sw_bt_metainfo *mi_out, char *err, size_t err_len)
{
    uint8_t *data = NULL;
    size_t len = 0;
    memset(mi_out, 0, sizeof *mi_out);
    int rc = sw_file_read_all(path, SW_BT_MAX_TORRENT_BYTES, &data, &len);
    if (rc) {
        ERR("%s: %s", path, sw_strerror(rc));
        return rc;
    }
    char sub[256] = "";
    rc = sw_bt_metainfo_parse(data, len, mi_out, sub, sizeof sub);
    free(data);
    if (rc) ERR("%s: %s", path, sub);
    return rc;
}

int sw_bt_metainfo_encode(const struct sw_bt_metainfo *mi, struct sw_buf *out)
{
    /* BEP 3: keys sorted as raw strings. */
    sw_benc_dict(out);
    if (mi->n_trackers) {
        sw_benc_cstr(out, "announce");
        sw_benc_cstr(out, mi->trackers[0]);
        sw_benc_cstr(out, "announce-list"); /* BEP 12: one tier per tracker */
        sw_benc_list(out);
        for (uint32_t i = 0; i < mi->n_trackers; i++) {
            sw_benc_list(out);
            sw_benc_cstr(out, mi->trackers[i]);
            sw_benc_end(out);
        }
        sw_benc_end(out);
    }
    sw_benc_cstr(out, "created by");
    sw_benc_cstr(out, "shardswarm " SW_VERSION);
    sw_benc_cstr(out, "info");
    sw_buf_append(out, mi->info_raw, mi->info_len);
    if (mi->n_web_seeds) {
        sw_benc_cstr(out, "url-list");
        sw_benc_list(out);
        for (uint32_t i = 0; i < mi->n_web_seeds; i++) sw_benc_cstr(out, mi->web_seeds[i]);
        sw_benc_end(out);
    }
    sw_benc_end(out);
    return sw_buf_ok(out) ? 0 : SW_ENOMEM;
}

uint32_t sw_bt_piece_spans(const struct sw_bt_metainfo *mi, uint32_t piece, uint32_t off, uint32_t len,
                           struct sw_bt_span *spans, uint32_t max)
{
    uint32_t psz = sw_bt_piece_size(mi, piece);
    if (off >= psz || max == 0) return 0;
    if (len > psz - off) len = psz - off;
    uint64_t pos = (uint64_t)piece * mi->piece_length + off, end = pos + len;
    /* Binary search: the last file with offset <= pos. */
    uint32_t lo = 0, hi = mi->n_files;
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (mi->files[mid].offset <= pos) lo = mid;
        else hi = mid;
    }
    uint32_t n = 0;
    for (uint32_t f = lo; f < mi->n_files && pos < end && n < max; f++) {
        const struct sw_bt_file *bf = &mi->files[f];
        if (bf->offset + bf->length <= pos) continue; /* zero-length or before */
        uint64_t take = SW_MIN(end, bf->offset + bf->length) - pos;
        spans[n].file = f;
        spans[n].file_offset = pos - bf->offset;
        spans[n].piece_offset = (uint32_t)(pos - (uint64_t)piece * mi->piece_length);
        spans[n].len = (uint32_t)take;
        n++;
        pos += take;
    }
    return n;
}

/* ------------------------------------------------------------------ creation */

uint32_t sw_bt_choose_piece_length(uint64_t largest_file)
{
    /* Aim for at most ~4000 pieces per shard: fewer pieces = less have/bitfield chatter
     * and per-piece hashing work; more = finer sharing between peers early on. */
    uint32_t p = 256u << 10;
    while (p < (16u << 20) && largest_file / p > 4000) p <<= 1;
    return p;
}

int sw_bt_metainfo_create(const struct sw_bt_create_opts *o, struct sw_bt_metainfo *mi_out,
                          char *err, size_t err_len)
{
    memset(mi_out, 0, sizeof *mi_out);
    if (!o || !o->dir || !o->n_files || o->n_files > SW_BT_MAX_FILES) { ERR("torrent create: no files"); return SW_EINVAL; }
    const char *name = o->name && *o->name ? o->name : "model";
    if (!sw_bt_path_is_safe(name) || strchr(name, '/')) { ERR("torrent create: unsafe name '%s'", name); return SW_EINVAL; }
    uint64_t *lens = calloc(o->n_files, sizeof *lens);
    struct sw_mmap *maps = calloc(o->n_files, sizeof *maps);
    struct sw_buf info = { 0 };
    uint8_t *hashes = NULL, *pbuf = NULL;
    struct sw_hash *h = NULL;
    int rc = 0;
    if (!lens || !maps) { rc = SW_ENOMEM; goto out; }
    uint64_t largest = 0, total_data = 0;
    for (uint32_t i = 0; i < o->n_files; i++) {
        if (!sw_bt_path_is_safe(o->files[i].name)) { ERR("torrent create: unsafe file name '%s'", o->files[i].name); rc = SW_EINVAL; goto out; }
        char *p = sw_path_join(o->dir, o->files[i].name);
        if (!p) { rc = SW_ENOMEM; goto out; }
        uint64_t sz = 0;
        rc = sw_file_size(p, &sz);
        if (!rc && sz) rc = sw_file_map(p, &maps[i]);
        if (rc) { ERR("%s: %s", p, sw_strerror(rc)); free(p); goto out; }
        if (o->files[i].length && o->files[i].length != sz) {
            ERR("%s: size %llu but the manifest says %llu", p, (unsigned long long)sz, (unsigned long long)o->files[i].length);
            free(p);
            rc = SW_ECORRUPT;
            goto out;
        }
        free(p);
        lens[i] = sz;
        largest = SW_MAX(largest, sz);
        total_data += sz;
    }
    uint32_t pl = o->piece_length ? o->piece_length : sw_bt_choose_piece_length(largest);
    if (pl < SW_BT_MIN_PIECE || pl > SW_BT_MAX_PIECE || (pl & (pl - 1))) { ERR("torrent create: bad piece length %u", pl); rc = SW_EINVAL; goto out; }
    /* Layout: each file followed by a pad file up to the next piece boundary (BEP 47), but
     * not after the last one. */
    uint64_t total = 0;
    for (uint32_t i = 0; i < o->n_files; i++) {
        total += lens[i];
        if (i + 1 < o->n_files && total % pl) total += pl - total % pl;
    }
    if (total == 0) { ERR("torrent create: all files are empty"); rc = SW_EINVAL; goto out; }
    uint64_t n_pieces = (total + pl - 1) / pl;
    if (n_pieces > UINT32_MAX / 20) { rc = SW_ETOOBIG; goto out; }
    hashes = malloc(n_pieces * 20);
    h = sw_hash_new_sha1();
    pbuf = calloc(1, pl);
    if (!hashes || !h || !pbuf) { rc = SW_ENOMEM; goto out; }
    uint64_t piece = 0, done = 0;
    for (uint32_t i = 0; i < o->n_files; i++) {
        uint64_t off = 0;
        while (off < lens[i]) {
            uint64_t take = SW_MIN((uint64_t)pl, lens[i] - off);
            sw_hash_update(h, maps[i].data + off, take);
            if (take < pl && i + 1 < o->n_files) sw_hash_update(h, pbuf, pl - take); /* pad zeros */
            if (take == pl || i + 1 < o->n_files || off + take == lens[i]) {
                sw_hash_final(h, hashes + piece * 20);
                piece++;
            }
            off += take;
            done += take;
            if (o->progress) o->progress(o->progress_ud, done, total_data);
        }
    }
    if (piece != n_pieces) { ERR("torrent create: internal piece count mismatch"); rc = SW_EIO; goto out; }

    /* The info dict, keys sorted (BEP 3). */
    sw_benc_dict(&info);
    sw_benc_cstr(&info, "files");
    sw_benc_list(&info);
    uint64_t pos = 0;
    for (uint32_t i = 0; i < o->n_files; i++) {
        sw_benc_dict(&info);
        sw_benc_cstr(&info, "length");
        sw_benc_int(&info, (int64_t)lens[i]);
        sw_benc_cstr(&info, "path");
        sw_benc_list(&info);
        const char *p = o->files[i].name;
        while (*p) {
            const char *e = strchr(p, '/');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            sw_benc_str(&info, p, n);
            p += n + (e ? 1 : 0);
        }
        sw_benc_end(&info);
        sw_benc_end(&info);
        pos += lens[i];
        if (i + 1 < o->n_files && pos % pl) {
            uint64_t padn = pl - pos % pl;
            char pn[32];
            snprintf(pn, sizeof pn, "%llu", (unsigned long long)padn);
            /* BEP 47: attr "p", path [".pad", "<length>"] */
            sw_benc_dict(&info);
            sw_benc_cstr(&info, "attr");
            sw_benc_cstr(&info, "p");
            sw_benc_cstr(&info, "length");
            sw_benc_int(&info, (int64_t)padn);
            sw_benc_cstr(&info, "path");
            sw_benc_list(&info);
            sw_benc_cstr(&info, ".pad");
            sw_benc_cstr(&info, pn);
            sw_benc_end(&info);
            sw_benc_end(&info);
            pos += padn;
        }
    }
    sw_benc_end(&info);
    sw_benc_cstr(&info, "name");
    sw_benc_cstr(&info, name);
    sw_benc_cstr(&info, "piece length");
    sw_benc_int(&info, pl);
    sw_benc_cstr(&info, "pieces");
    sw_benc_str(&info, hashes, n_pieces * 20);
    if (!o->no_shardswarm_dict) {
        sw_benc_cstr(&info, "shardswarm");
        sw_benc_dict(&info);
        if (o->architecture && *o->architecture) { sw_benc_cstr(&info, "architecture"); sw_benc_cstr(&info, o->architecture); }
        sw_benc_cstr(&info, "model");
        sw_benc_cstr(&info, name);
        if (o->model_id && *o->model_id) { sw_benc_cstr(&info, "model_id"); sw_benc_cstr(&info, o->model_id); }
        sw_benc_cstr(&info, "n_layers");
        sw_benc_int(&info, o->n_layers);
        if (o->owner_key_hex && *o->owner_key_hex) { sw_benc_cstr(&info, "owner"); sw_benc_cstr(&info, o->owner_key_hex); }
        uint32_t n_shards = 0;
        for (uint32_t i = 0; i < o->n_files; i++) n_shards += o->files[i].shard_index >= 0;
        sw_benc_cstr(&info, "shard_count");
        sw_benc_int(&info, n_shards);
        sw_benc_cstr(&info, "shards");
        sw_benc_list(&info);
        for (uint32_t i = 0; i < o->n_files; i++) {
            const struct sw_bt_create_file *f = &o->files[i];
            if (f->shard_index < 0) continue;
            sw_benc_dict(&info);
            sw_benc_cstr(&info, "file");
            sw_benc_cstr(&info, f->name);
            sw_benc_cstr(&info, "index");
            sw_benc_int(&info, f->shard_index);
            sw_benc_cstr(&info, "layer_first");
            sw_benc_int(&info, f->layer_first);
            sw_benc_cstr(&info, "layer_last");
            sw_benc_int(&info, f->layer_last);
            if (f->sha256_hex && *f->sha256_hex) { sw_benc_cstr(&info, "sha256"); sw_benc_cstr(&info, f->sha256_hex); }
            sw_benc_end(&info);
        }
        sw_benc_end(&info);
        sw_benc_cstr(&info, "version");
        sw_benc_int(&info, 1);
        sw_benc_end(&info);
    }
    sw_benc_end(&info);
    if (!sw_buf_ok(&info)) { rc = SW_ENOMEM; goto out; }
    /* Round trip through the parser: what we write is exactly what others will read. */
    rc = sw_bt_metainfo_parse_info(info.data, info.len, mi_out, err, err_len);
    if (rc) goto out;
    for (uint32_t i = 0; i < o->n_trackers && !rc; i++)
        rc = sw__strv_add(&mi_out->trackers, &mi_out->n_trackers, o->trackers[i], strlen(o->trackers[i]));
    for (uint32_t i = 0; i < o->n_web_seeds && !rc; i++)
        rc = sw__strv_add(&mi_out->web_seeds, &mi_out->n_web_seeds, o->web_seeds[i], strlen(o->web_seeds[i]));
    if (rc) sw_bt_metainfo_free(mi_out);
out:
    if (maps)
        for (uint32_t i = 0; i < o->n_files; i++) sw_file_unmap(&maps[i]);
    free(maps);
    free(lens);
    free(hashes);
    free(pbuf);
    sw_hash_free(h);
    sw_buf_free(&info);
    return rc;
}
