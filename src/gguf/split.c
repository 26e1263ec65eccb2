/* split.c — cuts a llama-family GGUF model (one file, or the parts of a llama.cpp split model)
 * into N layer-range shards, each a complete GGUF file, and writes the manifest model.json.
 * Shard boundaries minimise the largest shard's bytes (embedding and output matrices count).
 * Not for: moving shards (src/bt) or computing with them (src/infer). */
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <jansson.h>

#include "gguf_internal.h"

#define CAP_PARTS 9999u        /* llama.cpp numbers parts with 5 digits */
#define CAP_SHARDS 4096u
#define CAP_LAYERS 1024u      /* block_count beyond this is refused (planner is O(N L^2)) */
#define CHUNK_BYTES (16u << 20) /* data is streamed (and progress reported) in chunks */

/* ------------------------------------------------------------------ source model */

struct src_tensor {
    const struct sw_gguf_tensor *t;
    enum { PLACE_LAYER, PLACE_FIRST, PLACE_LAST, PLACE_ALL } place;
};

struct source {
    struct sw_gguf **parts;
    uint32_t n_parts;
    struct src_tensor *ts;
    uint64_t n_ts;
    uint64_t total_size;
    uint32_t n_layers;
    int tied; /* no output.weight: token_embd.weight doubles as the output matrix */
};

static void source_free(struct source *s)
{
    for (uint32_t i = 0; i < s->n_parts; i++) sw_gguf_close(s->parts[i]);
    free(s->parts);
    free(s->ts);
    memset(s, 0, sizeof *s);
}

/* Recognises llama.cpp's split naming "<prefix>-NNNNN-of-MMMMM.gguf". */
static int split_name(const char *path, size_t *prefix_len, uint32_t *no, uint32_t *count)
{
    size_t n = strlen(path);
    static const char tail[] = "-00000-of-00000.gguf";
    size_t tl = sizeof tail - 1;
    if (n < tl) return 0;
    const char *p = path + n - tl;
    for (size_t i = 0; i < tl; i++) {
        if (tail[i] == '0' ? !isdigit((unsigned char)p[i]) : p[i] != tail[i]) return 0;
    }
    *no = (uint32_t)strtoul(p + 1, NULL, 10);
    *count = (uint32_t)strtoul(p + 10, NULL, 10);
    *prefix_len = n - tl;
    return *no >= 1 && *count >= 1 && *no <= *count;
}

static int tensor_place(const struct sw_gguf_tensor *t)
{
    static const char *const first[] = { "token_embd.", "token_embd_norm.", "position_embd.",
                                         "token_types." };
    static const char *const last[] = { "output.", "output_norm." };
    if (t->layer >= 0) return PLACE_LAYER;
    for (size_t i = 0; i < SW_ARRAY_LEN(first); i++)
        if (t->name.len > strlen(first[i]) && !memcmp(t->name.ptr, first[i], strlen(first[i])))
            return PLACE_FIRST;
    for (size_t i = 0; i < SW_ARRAY_LEN(last); i++)
        if (t->name.len > strlen(last[i]) && !memcmp(t->name.ptr, last[i], strlen(last[i])))
            return PLACE_LAST;
    /* Anything else (rope_freqs.weight, ...) is small and used by every layer. */
    return PLACE_ALL;
}

static int name_is(const struct sw_gguf_tensor *t, const char *s)
{
    return t->name.len == strlen(s) && !memcmp(t->name.ptr, s, t->name.len);
}

static int source_open(const char *path, struct source *s, char *err, size_t err_len)
{
    memset(s, 0, sizeof *s);
    size_t plen;
    uint32_t no = 0, count = 1;
    int is_split = split_name(path, &plen, &no, &count);
    if (!is_split) count = 1;
    if (count > CAP_PARTS) {
        sw_errf(err, err_len, 0, "%s: %u parts exceed the limit of %u", path, count, CAP_PARTS);
        return SW_ETOOBIG;
    }
    s->parts = calloc(count, sizeof *s->parts);
    if (!s->parts) return SW_ENOMEM;
    int rc;
    for (uint32_t i = 0; i < count; i++) {
        char *pp = NULL;
        if (is_split) {
            pp = malloc(plen + 32);
            if (!pp) { rc = SW_ENOMEM; goto fail; }
            snprintf(pp, plen + 32, "%.*s-%05u-of-%05u.gguf", (int)plen, path, i + 1, count);
        }
        rc = sw_gguf_open(pp ? pp : path, &s->parts[i], err, err_len);
        free(pp);
        if (rc) goto fail;
        s->n_parts++;
        struct sw_gguf *g = s->parts[i];
        s->total_size += sw_gguf_file_size(g);
        /* llama.cpp gguf-split: split.no (u16, 0-based) and split.count (u16) in every part. */
        uint32_t k_no = 0, k_count = 1;
        int has_no = sw_gguf_get_u32(g, "split.no", &k_no) == 0;
        int has_count = sw_gguf_get_u32(g, "split.count", &k_count) == 0;
        if (!is_split && has_count && k_count > 1) {
            sw_errf(err, err_len, 0,
                   "%s: split.count is %u: this is one part of a llama.cpp split model; pass the "
                   "first part, named <model>-00001-of-%05u.gguf",
                   path, k_count, k_count);
            rc = SW_ECORRUPT;
            goto fail;
        }
        if (is_split && ((has_count && k_count != count) || (has_no && k_no != i))) {
            sw_errf(err, err_len, 0, "%s: split.no %u / split.count %u do not match the file name (part %u of %u)",
                   sw_gguf_path(g), k_no, k_count, i + 1, count);
            rc = SW_ECORRUPT;
            goto fail;
        }
    }
    struct sw_gguf *g0 = s->parts[0];
    if (sw_gguf_find(g0, SW_KEY_SHARD_INDEX)) {
        sw_errf(err, err_len, 0, "%s: already a shardswarm shard (has %s); split the original model instead",
               path, SW_KEY_SHARD_INDEX);
        rc = SW_EINVAL;
        goto fail;
    }
    for (uint32_t i = 1; i < count; i++) {
        if (sw_gguf_alignment(s->parts[i]) != sw_gguf_alignment(g0)) {
            sw_errf(err, err_len, 0, "%s: general.alignment %llu differs from the first part's %llu",
                   sw_gguf_path(s->parts[i]), (unsigned long long)sw_gguf_alignment(s->parts[i]),
                   (unsigned long long)sw_gguf_alignment(g0));
            rc = SW_EUNSUPPORTED;
            goto fail;
        }
    }
    /* Merge the tensor tables of all parts; a name may appear in one part only. */
    uint64_t n = 0;
    for (uint32_t i = 0; i < count; i++) n += sw_gguf_n_tensors(s->parts[i]);
    s->ts = calloc(n ? n : 1, sizeof *s->ts);
    if (!s->ts) { rc = SW_ENOMEM; goto fail; }
    int max_layer = -1, has_output = 0, has_embd = 0;
    for (uint32_t i = 0; i < count; i++) {
        struct sw_gguf *g = s->parts[i];
        for (uint64_t k = 0; k < sw_gguf_n_tensors(g); k++) {
            const struct sw_gguf_tensor *t = sw_gguf_tensor_at(g, k);
            for (uint32_t j = 0; j < i; j++) {
                char name[128];
                snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
                if (sw_gguf_tensor_find(s->parts[j], name)) {
                    sw_errf(err, err_len, 0, "%s: tensor \"%s\" is also in %s", sw_gguf_path(g), name,
                           sw_gguf_path(s->parts[j]));
                    rc = SW_ECORRUPT;
                    goto fail;
                }
            }
            s->ts[s->n_ts].t = t;
            s->ts[s->n_ts].place = tensor_place(t);
            s->n_ts++;
            if (t->layer >= (int)CAP_LAYERS) {
                sw_errf(err, err_len, 0, "%s: tensor \"%.*s\" has layer %d, beyond the limit of %u layers",
                       sw_gguf_path(g), (int)SW_MIN(t->name.len, 80), t->name.ptr, t->layer, CAP_LAYERS);
                rc = SW_ETOOBIG;
                goto fail;
            }
            if (t->layer > max_layer) max_layer = t->layer;
            if (name_is(t, "output.weight")) has_output = 1;
            if (name_is(t, "token_embd.weight")) has_embd = 1;
        }
    }
    s->tied = !has_output && has_embd;
    s->n_layers = sw_gguf_n_layers(g0);
    if (!s->n_layers) {
        if (max_layer < 0) {
            sw_errf(err, err_len, 0, "%s: no %s.block_count and no \"blk.N.\" tensors: nothing to split by layer",
                   path, sw_gguf_arch(g0)[0] ? sw_gguf_arch(g0) : "<arch>");
            rc = SW_EUNSUPPORTED;
            goto fail;
        }
        s->n_layers = (uint32_t)max_layer + 1;
    } else if (s->n_layers > CAP_LAYERS) {
        sw_errf(err, err_len, 0, "%s: %s.block_count %u exceeds the limit of %u layers", path,
               sw_gguf_arch(g0), s->n_layers, CAP_LAYERS);
        rc = SW_ETOOBIG;
        goto fail;
    } else if (max_layer >= (int)s->n_layers) {
        sw_errf(err, err_len, 0, "%s: tensor of layer %d but %s.block_count is %u", path, max_layer,
               sw_gguf_arch(g0), s->n_layers);
        rc = SW_ECORRUPT;
        goto fail;
    }
    return 0;
fail:
    source_free(s);
    return rc;
}

/* ------------------------------------------------------------------ planning */

/* Contiguous layer ranges for n shards: first the smallest possible largest shard M, then,
 * among the plans whose shards all stay within M, the one with the least spread (sum of
 * squared shard sizes). w[l]: bytes of layer l; first/last: bytes only the first/last shard
 * holds; every shard also holds `shared`. Dynamic programming over (shard, last layer),
 * O(n * L^2) per phase. */
static uint64_t range_bytes(const uint64_t *pre, uint32_t a, uint32_t b, uint32_t k, uint32_t n,
                            uint64_t first, uint64_t last, uint64_t shared)
{
    return pre[b + 1] - pre[a] + shared + (k == 0 ? first : 0) + (k == n - 1 ? last : 0);
}

/* phase 0: dp = smallest max; phase 1: dp = smallest sum of squares with every shard <= cap. */
static void plan_dp(const uint64_t *pre, uint32_t L, uint32_t n, uint64_t first, uint64_t last,
                    uint64_t shared, int phase, uint64_t cap, double *dp, uint32_t *from)
{
    const double inf = 1e300;
    for (uint32_t k = 0; k < n; k++) {
        for (uint32_t b = 0; b < L; b++) {
            double best = inf;
            uint32_t arg = 0;
            /* shard k covers a..b; shards 0..k-1 cover 0..a-1; n-1-k shards still follow */
            if (b >= k && L - 1 - b >= n - 1 - k) {
                uint32_t a_lo = k, a_hi = k == 0 ? 0 : b;
                for (uint32_t a = a_lo; a <= a_hi; a++) {
                    uint64_t bytes = range_bytes(pre, a, b, k, n, first, last, shared);
                    if (bytes > cap) continue;
                    double c = phase == 0 ? (double)bytes : (double)bytes * (double)bytes;
                    if (k > 0) {
                        double p = dp[(k - 1) * L + a - 1];
                        if (p >= inf) continue;
                        c = phase == 0 ? (c > p ? c : p) : c + p;
                    }
                    if (c < best) {
                        best = c;
                        arg = a;
                    }
                }
            }
            dp[k * L + b] = best;
            from[k * L + b] = arg;
        }
    }
}

static void plan_walk(const uint64_t *pre, uint32_t L, uint32_t n, uint64_t first, uint64_t last,
                      uint64_t shared, const uint32_t *from, struct sw_shard_plan *plans)
{
    uint32_t b = L - 1;
    for (uint32_t k = n; k-- > 0;) {
        uint32_t a = from[k * L + b];
        plans[k].index = k;
        plans[k].layer_first = a;
        plans[k].layer_last = b;
        plans[k].n_bytes = range_bytes(pre, a, b, k, n, first, last, shared);
        if (a) b = a - 1;
    }
}

static int plan_ranges(const uint64_t *w, uint32_t L, uint32_t n, uint64_t first, uint64_t last,
                       uint64_t shared, struct sw_shard_plan *plans)
{
    uint64_t *pre = calloc((size_t)L + 1, sizeof *pre);
    double *dp = malloc((size_t)n * L * sizeof *dp);
    uint32_t *from = malloc((size_t)n * L * sizeof *from);
    if (!pre || !dp || !from) {
        free(pre);
        free(dp);
        free(from);
        return SW_ENOMEM;
    }
    for (uint32_t l = 0; l < L; l++) pre[l + 1] = pre[l] + w[l];
    plan_dp(pre, L, n, first, last, shared, 0, UINT64_MAX, dp, from);
    plan_walk(pre, L, n, first, last, shared, from, plans);
    uint64_t cap = 0;
    for (uint32_t k = 0; k < n; k++) cap = SW_MAX(cap, plans[k].n_bytes);
    /* Exact integers: the phase-1 plan always exists (the phase-0 plan satisfies the cap). */
    plan_dp(pre, L, n, first, last, shared, 1, cap, dp, from);
    plan_walk(pre, L, n, first, last, shared, from, plans);
    free(pre);
    free(dp);
    free(from);
    return 0;
}

static int in_shard(const struct source *s, const struct src_tensor *st, const struct sw_shard_plan *p,
                    uint32_t n)
{
    switch (st->place) {
    case PLACE_LAYER:
        return (uint32_t)st->t->layer >= p->layer_first && (uint32_t)st->t->layer <= p->layer_last;
    case PLACE_FIRST:
        if (p->index == 0) return 1;
        /* Tied output: the last stage needs the embedding matrix to compute logits. */
        return s->tied && p->index == n - 1 && name_is(st->t, "token_embd.weight");
    case PLACE_LAST: return p->index == n - 1;
    case PLACE_ALL: return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ model id */

/* The stable id of a source model: SHA-256 of every part's header bytes (magic, metadata,
 * tensor infos: names, shapes, types, offsets). Cheap (no tensor data is read). The
 * BitTorrent layer may later replace it by the torrent's info-hash via opts->model_id. */
static void source_model_id(const struct source *s, char out[65])
{
    struct sw_hash *h = sw_hash_new_sha256();
    uint8_t d[32] = { 0 };
    if (h) {
        for (uint32_t i = 0; i < s->n_parts; i++)
            sw_hash_update(h, sw_gguf_bytes(s->parts[i]), (size_t)sw_gguf_header_size(s->parts[i]));
        sw_hash_final(h, d);
        sw_hash_free(h);
    }
    sw_hex_encode(d, 32, out);
}

/* ------------------------------------------------------------------ writing */

/* Streaming a 100 GB model through the map would leave every page of it counted in our
 * resident set. Once a chunk is written, its source pages are released from this mapping
 * (the page cache keeps them; a later access just faults them back in). */
static void release_source(const uint8_t *p, uint64_t n)
{
#ifdef MADV_DONTNEED
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1), b = ((uintptr_t)p + n) & ~(page - 1);
    if (b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED);
#else
    (void)p;
    (void)n;
#endif
}

struct progress {
    const struct sw_split_opts *o;
    uint64_t done, total;
};

static int write_shard(const struct source *s, const struct sw_shard_plan *p, uint32_t n,
                       const char *path, const char *model_id, struct progress *pr,
                       struct sw_manifest_shard *ms, char *err, size_t err_len)
{
    struct sw_gguf *g0 = s->parts[0];
    struct sw_gguf_writer *w = NULL;
    int rc = sw_gguf_writer_new(path, sw_gguf_alignment(g0), &w);
    if (rc) {
        sw_errf(err, err_len, 0, "%s: cannot create: %s", path, sw_strerror(rc));
        return rc;
    }
    /* Full metadata (hyper-parameters, tokenizer) in every shard, without the keys of the
     * llama.cpp split the source may have been. */
    for (uint64_t i = 0; i < sw_gguf_n_kv(g0) && !rc; i++) {
        const struct sw_gguf_kv *kv = sw_gguf_kv_at(g0, i);
        if (kv->key.len >= 6 && !memcmp(kv->key.ptr, "split.", 6)) continue;
        rc = sw_gguf_writer_add_kv(w, kv);
    }
    if (!rc) rc = sw_gguf_writer_set_u32(w, SW_KEY_SHARD_INDEX, p->index);
    if (!rc) rc = sw_gguf_writer_set_u32(w, SW_KEY_SHARD_COUNT, n);
    if (!rc) rc = sw_gguf_writer_set_u32(w, SW_KEY_SHARD_LAYER_FIRST, p->layer_first);
    if (!rc) rc = sw_gguf_writer_set_u32(w, SW_KEY_SHARD_LAYER_LAST, p->layer_last);
    if (!rc) rc = sw_gguf_writer_set_str(w, SW_KEY_MODEL_ID, model_id);
    uint32_t n_t = 0;
    uint64_t t_bytes = 0;
    for (uint64_t i = 0; i < s->n_ts && !rc; i++) {
        if (!in_shard(s, &s->ts[i], p, n)) continue;
        const struct sw_gguf_tensor *t = s->ts[i].t;
        char name[80];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        rc = sw_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne);
        n_t++;
        t_bytes += t->n_bytes;
    }
    if (!rc) rc = sw_gguf_writer_write_header(w);
    for (uint64_t i = 0; i < s->n_ts && !rc; i++) {
        if (!in_shard(s, &s->ts[i], p, n)) continue;
        const struct sw_gguf_tensor *t = s->ts[i].t;
        for (uint64_t off = 0; off < t->n_bytes && !rc; off += CHUNK_BYTES) {
            uint64_t k = SW_MIN((uint64_t)CHUNK_BYTES, t->n_bytes - off);
            rc = sw_gguf_writer_write_data(w, t->data + off, k);
            release_source(t->data + off, k);
            pr->done += k;
            if (pr->o->progress) pr->o->progress(pr->o->progress_ud, pr->done, pr->total);
        }
        if (!rc && t->n_bytes == 0) rc = sw_gguf_writer_write_data(w, NULL, 0);
    }
    uint8_t sha[32];
    uint64_t size = 0;
    if (rc) {
        sw_gguf_writer_free(w);
        sw_errf(err, err_len, 0, "%s: writing failed: %s", path, sw_strerror(rc));
        return rc;
    }
    rc = sw_gguf_writer_finish_ex(w, sha, &size);
    if (rc) {
        sw_errf(err, err_len, 0, "%s: cannot complete the file: %s", path, sw_strerror(rc));
        return rc;
    }
    ms->index = p->index;
    ms->layer_first = p->layer_first;
    ms->layer_last = p->layer_last;
    ms->size = size;
    ms->tensor_bytes = t_bytes;
    ms->n_tensors = n_t;
    snprintf(ms->file, sizeof ms->file, SW_SHARD_FILE_FMT, p->index);
    sw_hex_encode(sha, 32, ms->sha256_hex);
    return 0;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Layer weights and the plan for n shards; w: L zeroed entries of scratch. */
static int source_plan(const struct source *s, uint32_t n, uint64_t *w, struct sw_shard_plan *plans,
                       const char *model_path, char *err, size_t err_len)
{
    uint32_t L = s->n_layers;
    if (n > L) {
        sw_errf(err, err_len, 0, "%s: %u shards requested but the model has only %u layers", model_path, n, L);
        return SW_EINVAL;
    }
    uint64_t first = 0, last = 0, shared = 0;
    for (uint64_t i = 0; i < s->n_ts; i++) {
        const struct src_tensor *st = &s->ts[i];
        switch (st->place) {
        case PLACE_LAYER: w[st->t->layer] += st->t->n_bytes; break;
        case PLACE_FIRST:
            first += st->t->n_bytes;
            if (s->tied && n > 1 && name_is(st->t, "token_embd.weight")) last += st->t->n_bytes;
            break;
        case PLACE_LAST: last += st->t->n_bytes; break;
        case PLACE_ALL: shared += st->t->n_bytes; break;
        }
    }
    return plan_ranges(w, L, n, first, last, shared, plans);
}

int sw_gguf_split_plan(const char *model_path, uint32_t n_shards, struct sw_shard_plan *plans_out,
                       uint32_t *n_layers_out, char *err, size_t err_len)
{
    if (err && err_len) err[0] = 0;
    if (n_shards == 0 || n_shards > CAP_SHARDS) {
        sw_errf(err, err_len, 0, "shard count must be 1..%u", CAP_SHARDS);
        return SW_EINVAL;
    }
    struct source s;
    int rc = source_open(model_path, &s, err, err_len);
    if (rc) return rc;
    uint64_t *w = calloc(s.n_layers, sizeof *w);
    rc = w ? source_plan(&s, n_shards, w, plans_out, model_path, err, err_len) : SW_ENOMEM;
    if (!rc && n_layers_out) *n_layers_out = s.n_layers;
    free(w);
    source_free(&s);
    return rc;
}

int sw_gguf_split(const char *model_path, const struct sw_split_opts *opts,
                  struct sw_shard_plan *plans_out, char *err, size_t err_len)
{
    if (err && err_len) err[0] = 0;
    if (!opts || !opts->out_dir || opts->n_shards == 0 || opts->n_shards > CAP_SHARDS) {
        sw_errf(err, err_len, 0, "shard count must be 1..%u", CAP_SHARDS);
        return SW_EINVAL;
    }
    struct source s;
    int rc = source_open(model_path, &s, err, err_len);
    if (rc) return rc;
    uint32_t n = opts->n_shards, L = s.n_layers;
    struct sw_shard_plan *plans = calloc(n, sizeof *plans);
    uint64_t *w = calloc(L, sizeof *w);
    struct sw_manifest m;
    memset(&m, 0, sizeof m);
    m.shards = calloc(n, sizeof *m.shards);
    char **written = calloc(n, sizeof *written);
    const char **src_files = calloc(s.n_parts, sizeof *src_files);
    if (!plans || !w || !m.shards || !written || !src_files) {
        rc = SW_ENOMEM;
        goto out;
    }
    if ((rc = source_plan(&s, n, w, plans, model_path, err, err_len))) goto out;
    if (sw_path_exists(opts->out_dir) && !sw_is_dir(opts->out_dir)) {
        sw_errf(err, err_len, 0, "%s: exists and is not a folder (--out names the folder for the shards)", opts->out_dir);
        rc = SW_EEXIST;
        goto out;
    }
    if ((rc = sw_mkdir_p(opts->out_dir))) {
        sw_errf(err, err_len, 0, "%s: cannot create the output folder: %s", opts->out_dir, sw_strerror(rc));
        goto out;
    }
    char model_id[80];
    if (opts->model_id) snprintf(model_id, sizeof model_id, "%s", opts->model_id);
    else source_model_id(&s, model_id);

    struct progress pr = { .o = opts };
    for (uint32_t k = 0; k < n; k++) pr.total += plans[k].n_bytes;
    for (uint32_t k = 0; k < n; k++) {
        char name[64];
        snprintf(name, sizeof name, SW_SHARD_FILE_FMT, k);
        written[k] = sw_path_join(opts->out_dir, name);
        if (!written[k]) { rc = SW_ENOMEM; goto out; }
        rc = write_shard(&s, &plans[k], n, written[k], model_id, &pr, &m.shards[k], err, err_len);
        if (rc) {
            free(written[k]);
            written[k] = NULL;
            goto out;
        }
    }
    if (opts->progress) opts->progress(opts->progress_ud, pr.total, pr.total);

    struct sw_gguf *g0 = s.parts[0];
    snprintf(m.model_id, sizeof m.model_id, "%s", model_id);
    snprintf(m.arch, sizeof m.arch, "%s", sw_gguf_arch(g0));
    if (!sw_gguf_get_cstr(g0, "general.name", m.name, sizeof m.name)) m.name[0] = 0;
    if (opts->owner_pubkey_hex) snprintf(m.owner_pubkey_hex, sizeof m.owner_pubkey_hex, "%s", opts->owner_pubkey_hex);
    m.n_layers = L;
    m.n_shards = n;
    m.alignment = sw_gguf_alignment(g0);
    m.source_size = s.total_size;
    for (uint32_t i = 0; i < s.n_parts; i++) src_files[i] = base_name(sw_gguf_path(s.parts[i]));
    /* A previous split into more shards left shard-K files the new manifest does not list. */
    struct sw_manifest *old = NULL;
    if (sw_gguf_manifest_load(opts->out_dir, &old, NULL, 0) != 0) old = NULL;
    rc = sw__manifest_write(opts->out_dir, &m, src_files, s.n_parts, err, err_len);
    for (uint32_t k = n; !rc && old && k < old->n_shards; k++) {
        char name[64];
        snprintf(name, sizeof name, SW_SHARD_FILE_FMT, k);
        if (strcmp(old->shards[k].file, name)) continue; /* only our own naming */
        char *p = sw_path_join(opts->out_dir, name);
        if (p) unlink(p);
        free(p);
    }
    sw_gguf_manifest_free(old);
    if (!rc && plans_out) memcpy(plans_out, plans, n * sizeof *plans);
out:
    if (rc && written) {
        /* No partial output: a failed split removes the shards it wrote. */
        for (uint32_t k = 0; k < n; k++)
            if (written[k]) unlink(written[k]);
    }
    if (written)
        for (uint32_t k = 0; k < n; k++) free(written[k]);
    free(written);
    free(src_files);
    free(plans);
    free(w);
    free(m.shards);
    source_free(&s);
    return rc;
}
