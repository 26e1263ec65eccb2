/* test_gguf_split.c — split then reassemble: every tensor of the source is found, bit for bit,
 * in the shard(s) that must hold it; shards are valid GGUF with full metadata and the
 * shardswarm.* keys; the manifest matches the files; byte balancing is optimal; llama.cpp
 * split input; verify finds missing / wrong size / corrupt shards; failures leave nothing. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "testgen.h"

static const char *tmp;

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static int is_kv_copied(const struct sw_gguf_kv *kv)
{
    return !(kv->key.len >= 6 && !memcmp(kv->key.ptr, "split.", 6));
}

/* Every kv of the source (but split.*) appears in the shard with the same type and bytes. */
static void check_metadata(struct sw_gguf *src, struct sw_gguf *sh)
{
    uint64_t copied = 0;
    for (uint64_t i = 0; i < sw_gguf_n_kv(src); i++) {
        const struct sw_gguf_kv *a = sw_gguf_kv_at(src, i);
        if (!is_kv_copied(a)) continue;
        copied++;
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)a->key.len, a->key.ptr);
        const struct sw_gguf_kv *b = sw_gguf_find(sh, key);
        CHECK_MSG(b != NULL, "key %s missing from shard", key);
        if (!b) continue;
        CHECK_EQ_INT(a->type, b->type);
        if (a->type == SW_GGUF_STRING)
            CHECK(a->v.str.len == b->v.str.len && !memcmp(a->v.str.ptr, b->v.str.ptr, a->v.str.len));
        else if (a->type == SW_GGUF_ARRAY)
            CHECK(a->v.arr.n == b->v.arr.n && a->v.arr.data_len == b->v.arr.data_len &&
                  !memcmp(a->v.arr.data, b->v.arr.data, a->v.arr.data_len));
        else
            CHECK(a->v.u64 == b->v.u64);
    }
    CHECK(sw_gguf_find(sh, "split.count") == NULL);
    CHECK(sw_gguf_find(sh, "split.no") == NULL);
    CHECK_EQ_U64(sw_gguf_n_kv(sh), copied + 5); /* + the five shardswarm.* keys */
}

/* Splits src_path (first file given to split) and checks everything. src: the parts. */
static void split_and_check(const char *src_path, struct sw_gguf **src, uint32_t n_src, uint32_t n_shards,
                            const char *out)
{
    char err[512];
    struct sw_shard_plan plans[16];
    struct sw_split_opts o = { .n_shards = n_shards, .out_dir = out };
    int rc = sw_gguf_split(src_path, &o, plans, err, sizeof err);
    CHECK_MSG(rc == 0, "split %s into %u: %s", src_path, n_shards, err);
    if (rc) return;
    uint32_t L = sw_gguf_n_layers(src[0]);
    int tied = 1;
    for (uint32_t p = 0; p < n_src; p++)
        if (sw_gguf_tensor_find(src[p], "output.weight")) tied = 0;

    struct sw_manifest *m = NULL;
    rc = sw_gguf_manifest_load(out, &m, err, sizeof err);
    CHECK_MSG(rc == 0, "manifest: %s", err);
    if (rc) return;
    CHECK_EQ_INT(m->n_shards, n_shards);
    CHECK_EQ_INT(m->n_layers, L);
    CHECK_EQ_STR(m->arch, sw_gguf_arch(src[0]));
    CHECK_EQ_INT(strlen(m->model_id), 64);

    /* Per source tensor: how many shards hold it. */
    uint64_t n_total = 0;
    for (uint32_t p = 0; p < n_src; p++) n_total += sw_gguf_n_tensors(src[p]);
    uint32_t next = 0;
    uint64_t found_total = 0, max_bytes = 0, sum_bytes = 0;
    for (uint32_t k = 0; k < n_shards; k++) {
        const struct sw_manifest_shard *ms = &m->shards[k];
        CHECK_EQ_INT(ms->layer_first, next);
        CHECK_EQ_INT(plans[k].layer_first, ms->layer_first);
        CHECK_EQ_INT(plans[k].layer_last, ms->layer_last);
        next = ms->layer_last + 1;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", out, ms->file);
        char want_name[32];
        snprintf(want_name, sizeof want_name, "shard-%u.gguf", k);
        CHECK_EQ_STR(ms->file, want_name);
        uint64_t size = 0;
        CHECK_EQ_INT(sw_file_size(path, &size), 0);
        CHECK_EQ_U64(size, ms->size);
        uint8_t d[32];
        char hex[65];
        CHECK_EQ_INT(sw_sha256_file(path, d), 0);
        sw_hex_encode(d, 32, hex);
        CHECK_EQ_STR(hex, ms->sha256_hex);

        struct sw_gguf *g = NULL;
        rc = sw_gguf_open(path, &g, err, sizeof err);
        CHECK_MSG(rc == 0, "shard %u: %s", k, err);
        if (rc) continue;
        struct sw_gguf_shard_info si;
        CHECK_EQ_INT(sw_gguf_shard_info(g, &si), 0);
        CHECK_EQ_INT(si.index, k);
        CHECK_EQ_INT(si.count, n_shards);
        CHECK_EQ_INT(si.layer_first, ms->layer_first);
        CHECK_EQ_INT(si.layer_last, ms->layer_last);
        CHECK_EQ_STR(si.model_id, m->model_id);
        CHECK_EQ_U64(sw_gguf_alignment(g), sw_gguf_alignment(src[0]));
        CHECK_EQ_INT(sw_gguf_n_layers(g), L); /* hyper-parameters describe the whole model */
        check_metadata(src[0], g);
        CHECK_EQ_U64(sw_gguf_n_tensors(g), ms->n_tensors);
        uint64_t tb = 0;
        /* Every tensor in the shard is a source tensor with identical bytes, and belongs. */
        for (uint64_t i = 0; i < sw_gguf_n_tensors(g); i++) {
            const struct sw_gguf_tensor *t = sw_gguf_tensor_at(g, i);
            char name[80];
            snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
            const struct sw_gguf_tensor *s = NULL;
            for (uint32_t p = 0; p < n_src && !s; p++) s = sw_gguf_tensor_find(src[p], name);
            CHECK_MSG(s != NULL, "shard %u has %s which the source lacks", k, name);
            if (!s) continue;
            CHECK_EQ_INT(t->type, s->type);
            CHECK_EQ_INT(t->n_dims, s->n_dims);
            CHECK(!memcmp(t->ne, s->ne, sizeof t->ne));
            CHECK_EQ_U64(t->n_bytes, s->n_bytes);
            CHECK_MSG(!memcmp(t->data, s->data, t->n_bytes), "shard %u tensor %s differs from the source", k, name);
            tb += t->n_bytes;
            if (t->layer >= 0)
                CHECK((uint32_t)t->layer >= ms->layer_first && (uint32_t)t->layer <= ms->layer_last);
            else if (!strcmp(name, "token_embd.weight"))
                CHECK(k == 0 || (tied && k == n_shards - 1));
            else if (!strncmp(name, "output", 6))
                CHECK(k == n_shards - 1);
        }
        CHECK_EQ_U64(tb, ms->tensor_bytes);
        CHECK_EQ_U64(tb, plans[k].n_bytes);
        if (tb > max_bytes) max_bytes = tb;
        sum_bytes += tb;
        /* The first shard has the embedding; the last the output (or the embedding again). */
        if (k == 0) CHECK(sw_gguf_tensor_find(g, "token_embd.weight") != NULL);
        if (k == n_shards - 1) {
            CHECK(sw_gguf_tensor_find(g, "output_norm.weight") != NULL);
            CHECK(sw_gguf_tensor_find(g, tied ? "token_embd.weight" : "output.weight") != NULL);
        }
        found_total += sw_gguf_n_tensors(g);
        sw_gguf_close(g);
    }
    CHECK_EQ_INT(next, L);
    /* Reassembly: every source tensor is in some shard (counted via the union size). */
    uint64_t extra = 0; /* tensors held twice: tied embedding on the last, shared ones */
    for (uint32_t p = 0; p < n_src; p++)
        for (uint64_t i = 0; i < sw_gguf_n_tensors(src[p]); i++) {
            const struct sw_gguf_tensor *t = sw_gguf_tensor_at(src[p], i);
            if (t->layer < 0 && (t->name.len < 6 || memcmp(t->name.ptr, "output", 6)) &&
                (t->name.len < 11 || memcmp(t->name.ptr, "token_embd.", 11)))
                extra += n_shards - 1; /* e.g. rope_freqs: in every shard */
            if (tied && n_shards > 1 && t->name.len == 17 && !memcmp(t->name.ptr, "token_embd.weight", 17))
                extra += 1;
        }
    CHECK_EQ_U64(found_total, n_total + extra);
    fprintf(stderr, "  %s -> %u shards: largest %llu bytes, mean %llu\n", src_path, n_shards,
            (unsigned long long)max_bytes, (unsigned long long)(sum_bytes / n_shards));

    /* verify: all ok */
    struct sw_shard_check checks[16];
    uint32_t n = 16;
    rc = sw_gguf_verify_dir(out, checks, &n, err, sizeof err);
    CHECK_MSG(rc == 0, "verify: %s", err);
    CHECK_EQ_INT(n, n_shards);
    for (uint32_t k = 0; k < n && !rc; k++)
        CHECK_MSG(checks[k].state == SW_SHARD_OK, "shard %u: %s %s", k, sw_shard_state_name(checks[k].state),
                  checks[k].detail);
    sw_gguf_manifest_free(m);
}

static struct sw_gguf *open_ok(const char *path)
{
    char err[512];
    struct sw_gguf *g = NULL;
    int rc = sw_gguf_open(path, &g, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    return g;
}

static void test_stories_split(void)
{
    const char *d = sw_test_shared_data();
    if (!d) {
        fprintf(stderr, "  (shared data absent: skipped)\n");
        return;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", d);
    struct sw_gguf *g = open_ok(path);
    if (!g) return;
    uint32_t L = sw_gguf_n_layers(g);
    for (uint32_t n = 1; n <= L && n <= 4; n++) {
        char out[512];
        snprintf(out, sizeof out, "%s/stories-%u", tmp, n);
        split_and_check(path, &g, 1, n, out);
    }
    sw_gguf_close(g);
}

/* Rebuilds one GGUF from the shards: shard 0's metadata without the shardswarm.* keys, then
 * every tensor once, in shard order. For a model whose tensors are stored embedding, layers,
 * output (as testgen writes them), the result must be the original file, byte for byte. */
static void reassemble_and_compare(const char *orig, const char *dir, uint32_t n)
{
    char path[700], err[512], outp[700];
    struct sw_gguf **sh = calloc(n, sizeof *sh);
    int ok = 1;
    for (uint32_t k = 0; k < n && ok; k++) {
        snprintf(path, sizeof path, "%s/shard-%u.gguf", dir, k);
        ok = sw_gguf_open(path, &sh[k], err, sizeof err) == 0;
    }
    CHECK_MSG(ok, "open shards: %s", err);
    snprintf(outp, sizeof outp, "%s/reassembled.gguf", dir);
    struct sw_gguf_writer *w = NULL;
    if (ok) CHECK_EQ_INT(sw_gguf_writer_new(outp, sw_gguf_alignment(sh[0]), &w), 0);
    if (ok && w) {
        for (uint64_t i = 0; i < sw_gguf_n_kv(sh[0]); i++) {
            const struct sw_gguf_kv *kv = sw_gguf_kv_at(sh[0], i);
            if (kv->key.len > 11 && !memcmp(kv->key.ptr, "shardswarm.", 11)) continue;
            CHECK_EQ_INT(sw_gguf_writer_add_kv(w, kv), 0);
        }
        /* Tensors, each name once (the tied embedding and shared tensors repeat). */
        const struct sw_gguf_tensor **order = calloc(4096, sizeof *order);
        uint32_t n_order = 0;
        for (uint32_t k = 0; k < n; k++) {
            for (uint64_t i = 0; i < sw_gguf_n_tensors(sh[k]); i++) {
                const struct sw_gguf_tensor *t = sw_gguf_tensor_at(sh[k], i);
                char name[80];
                snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
                int seen = 0;
                for (uint32_t j = 0; j < k; j++) seen |= sw_gguf_tensor_find(sh[j], name) != NULL;
                if (seen || n_order == 4096) continue;
                order[n_order++] = t;
                CHECK_EQ_INT(sw_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne), 0);
            }
        }
        CHECK_EQ_INT(sw_gguf_writer_write_header(w), 0);
        for (uint32_t i = 0; i < n_order; i++)
            CHECK_EQ_INT(sw_gguf_writer_write_data(w, order[i]->data, order[i]->n_bytes), 0);
        uint8_t got[32], want[32];
        CHECK_EQ_INT(sw_gguf_writer_finish_ex(w, got, NULL), 0);
        CHECK_EQ_INT(sw_sha256_file(orig, want), 0);
        CHECK_MSG(!memcmp(got, want, 32), "%s reassembled from %u shards differs from %s", outp, n, orig);
        unlink(outp);
        free(order);
    }
    for (uint32_t k = 0; k < n; k++) sw_gguf_close(sh[k]);
    free(sh);
}

static void test_generated_models(void)
{
    for (int tied = 0; tied <= 1; tied++) {
        for (int al = 0; al < 2; al++) {
            char path[512], out[512];
            snprintf(path, sizeof path, "%s/gen-%d-%d.gguf", tmp, tied, al);
            struct tg_opts o = { .n_layers = 7, .tied = tied, .alignment = al ? 256 : 32 };
            CHECK_EQ_INT(tg_write_model(path, &o), 0);
            struct sw_gguf *g = open_ok(path);
            if (!g) continue;
            CHECK(tied ? !sw_gguf_tensor_find(g, "output.weight") : !!sw_gguf_tensor_find(g, "output.weight"));
            for (uint32_t n = 1; n <= 7; n += 2) {
                snprintf(out, sizeof out, "%s/gen-%d-%d-out%u", tmp, tied, al, n);
                split_and_check(path, &g, 1, n, out);
                reassemble_and_compare(path, out, n);
            }
            sw_gguf_close(g);
        }
    }
}

static void test_llamacpp_split_input(void)
{
    char prefix[512], first[600], out[512];
    snprintf(prefix, sizeof prefix, "%s/lcpp", tmp);
    struct tg_opts o = { .n_layers = 5, .n_parts = 3 };
    CHECK_EQ_INT(tg_write_model(prefix, &o), 0);
    struct sw_gguf *parts[3] = { 0 };
    for (int i = 0; i < 3; i++) {
        char p[600];
        snprintf(p, sizeof p, "%s-%05d-of-00003.gguf", prefix, i + 1);
        parts[i] = open_ok(p);
        if (!parts[i]) return;
    }
    snprintf(first, sizeof first, "%s-00001-of-00003.gguf", prefix);
    snprintf(out, sizeof out, "%s/lcpp-out", tmp);
    split_and_check(first, parts, 3, 2, out);
    /* Any part names the whole model. */
    char second[600];
    snprintf(second, sizeof second, "%s-00002-of-00003.gguf", prefix);
    snprintf(out, sizeof out, "%s/lcpp-out2", tmp);
    split_and_check(second, parts, 3, 3, out);
    for (int i = 0; i < 3; i++) sw_gguf_close(parts[i]);

    /* A part renamed so that the split naming is lost: a clear refusal. */
    char renamed[600], err[512];
    snprintf(renamed, sizeof renamed, "%s/renamed.gguf", tmp);
    CHECK_EQ_INT(rename(first, renamed), 0);
    struct sw_split_opts so = { .n_shards = 2, .out_dir = out };
    CHECK(sw_gguf_split(renamed, &so, NULL, err, sizeof err) != 0);
    CHECK_MSG(strstr(err, "split.count") != NULL, "err: %s", err);
    /* A missing part: the error names it. */
    CHECK_EQ_INT(rename(renamed, first), 0);
    char third[600];
    snprintf(third, sizeof third, "%s-00003-of-00003.gguf", prefix);
    unlink(third);
    CHECK_EQ_INT(sw_gguf_split(first, &so, NULL, err, sizeof err), SW_ENOTFOUND);
    CHECK_MSG(strstr(err, "00003-of-00003") != NULL, "err: %s", err);
}

/* Brute force over every boundary choice: the planner's largest shard is the minimum. */
static void test_balance_optimal(void)
{
    char path[512], out[512], err[512];
    snprintf(path, sizeof path, "%s/bal.gguf", tmp);
    struct tg_opts o = { .n_layers = 9, .n_vocab = 3000 }; /* big embedding and output */
    CHECK_EQ_INT(tg_write_model(path, &o), 0);
    struct sw_gguf *g = open_ok(path);
    if (!g) return;
    uint64_t w[9] = { 0 }, first = 0, last = 0, shared = 0;
    for (uint64_t i = 0; i < sw_gguf_n_tensors(g); i++) {
        const struct sw_gguf_tensor *t = sw_gguf_tensor_at(g, i);
        if (t->layer >= 0) w[t->layer] += t->n_bytes;
        else if (!strncmp(t->name.ptr, "token_embd.", 11)) first += t->n_bytes;
        else if (!strncmp(t->name.ptr, "output", 6)) last += t->n_bytes;
        else shared += t->n_bytes;
    }
    sw_gguf_close(g);
    for (uint32_t n = 2; n <= 3; n++) {
        struct sw_shard_plan plans[3];
        struct sw_split_opts so = { .n_shards = n, .out_dir = out };
        snprintf(out, sizeof out, "%s/bal-%u", tmp, n);
        CHECK_EQ_INT(sw_gguf_split(path, &so, plans, err, sizeof err), 0);
        uint64_t got = 0;
        for (uint32_t k = 0; k < n; k++) got = SW_MAX(got, plans[k].n_bytes);
        /* The dry-run plan is the plan split used. */
        struct sw_shard_plan dry[3];
        uint32_t nl = 0;
        CHECK_EQ_INT(sw_gguf_split_plan(path, n, dry, &nl, err, sizeof err), 0);
        CHECK_EQ_INT(nl, 9);
        for (uint32_t k = 0; k < n; k++) {
            CHECK_EQ_INT(dry[k].layer_first, plans[k].layer_first);
            CHECK_EQ_INT(dry[k].layer_last, plans[k].layer_last);
            CHECK_EQ_U64(dry[k].n_bytes, plans[k].n_bytes);
        }
        uint64_t best = UINT64_MAX;
        for (uint32_t a = 1; a < 9; a++) {
            for (uint32_t b = (n == 3 ? a + 1 : 9); b <= 9; b++) {
                uint64_t s[3] = { shared + first, shared, shared };
                for (uint32_t l = 0; l < 9; l++) s[l < a ? 0 : (l < b ? 1 : 2)] += w[l];
                s[n - 1] += last;
                uint64_t mx = SW_MAX(s[0], s[1]);
                if (n == 3) mx = SW_MAX(mx, s[2]);
                if (mx < best) best = mx;
                if (n == 2) break;
            }
        }
        CHECK_EQ_U64(got, best);
    }
}

static void test_failures_leave_nothing(void)
{
    char path[512], out[512], err[512];
    snprintf(path, sizeof path, "%s/small.gguf", tmp);
    struct tg_opts o = { .n_layers = 3 };
    CHECK_EQ_INT(tg_write_model(path, &o), 0);
    snprintf(out, sizeof out, "%s/too-many", tmp);
    struct sw_split_opts so = { .n_shards = 4, .out_dir = out };
    CHECK_EQ_INT(sw_gguf_split(path, &so, NULL, err, sizeof err), SW_EINVAL);
    CHECK_MSG(strstr(err, "3 layers") != NULL, "err: %s", err);
    CHECK(count_files(out) <= 0);
    /* Output into a folder we cannot create. */
    so.n_shards = 2;
    so.out_dir = "/proc/sw-no-such/x";
    CHECK(sw_gguf_split(path, &so, NULL, err, sizeof err) != 0);
    CHECK(strstr(err, "/proc/sw-no-such/x") != NULL);
    /* A shard is refused as input. */
    snprintf(out, sizeof out, "%s/small-out", tmp);
    so.out_dir = out;
    CHECK_EQ_INT(sw_gguf_split(path, &so, NULL, err, sizeof err), 0);
    char shard[600], out2[600];
    snprintf(shard, sizeof shard, "%s/shard-0.gguf", out);
    snprintf(out2, sizeof out2, "%s/resplit", tmp);
    so.out_dir = out2;
    so.n_shards = 1;
    CHECK_EQ_INT(sw_gguf_split(shard, &so, NULL, err, sizeof err), SW_EINVAL);
    CHECK(strstr(err, "already a shardswarm shard") != NULL);
    /* Splitting again into fewer shards removes the shard files the new manifest drops. */
    char s3[700];
    snprintf(s3, sizeof s3, "%s/shard-2.gguf", out);
    so.out_dir = out;
    so.n_shards = 3;
    CHECK_EQ_INT(sw_gguf_split(path, &so, NULL, err, sizeof err), 0);
    CHECK(sw_path_exists(s3));
    so.n_shards = 2;
    CHECK_EQ_INT(sw_gguf_split(path, &so, NULL, err, sizeof err), 0);
    CHECK(!sw_path_exists(s3));
    CHECK_EQ_INT(count_files(out), 3);
    /* A fixed model id is written as given. */
    so.out_dir = out2;
    so.model_id = "0123456789abcdef0123456789abcdef01234567";
    CHECK_EQ_INT(sw_gguf_split(path, &so, NULL, err, sizeof err), 0);
    struct sw_manifest *m = NULL;
    CHECK_EQ_INT(sw_gguf_manifest_load(out2, &m, err, sizeof err), 0);
    if (m) CHECK_EQ_STR(m->model_id, so.model_id);
    sw_gguf_manifest_free(m);
}

static void test_verify_states(void)
{
    char path[512], out[512], err[512], p[700];
    snprintf(path, sizeof path, "%s/ver.gguf", tmp);
    struct tg_opts o = { .n_layers = 4 };
    CHECK_EQ_INT(tg_write_model(path, &o), 0);
    snprintf(out, sizeof out, "%s/ver-out", tmp);
    struct sw_split_opts so = { .n_shards = 4, .out_dir = out };
    CHECK_EQ_INT(sw_gguf_split(path, &so, NULL, err, sizeof err), 0);
    /* shard 0: deleted; 1: truncated; 2: one byte flipped; 3: intact. */
    snprintf(p, sizeof p, "%s/shard-0.gguf", out);
    CHECK_EQ_INT(unlink(p), 0);
    snprintf(p, sizeof p, "%s/shard-1.gguf", out);
    CHECK_EQ_INT(truncate(p, 100), 0);
    snprintf(p, sizeof p, "%s/shard-2.gguf", out);
    FILE *f = fopen(p, "r+b");
    CHECK(f != NULL);
    if (f) {
        fseek(f, 2000, SEEK_SET);
        int c = fgetc(f);
        fseek(f, 2000, SEEK_SET);
        fputc(c ^ 0x5a, f);
        fclose(f);
    }
    struct sw_shard_check checks[4];
    uint32_t n = 2;
    CHECK_EQ_INT(sw_gguf_verify_dir(out, checks, &n, err, sizeof err), SW_ERANGE);
    CHECK_EQ_INT(n, 4);
    n = 4;
    CHECK_EQ_INT(sw_gguf_verify_dir(out, checks, &n, err, sizeof err), 0);
    CHECK_EQ_INT(checks[0].state, SW_SHARD_MISSING);
    CHECK_EQ_INT(checks[1].state, SW_SHARD_WRONG_SIZE);
    CHECK_EQ_U64(checks[1].actual_size, 100);
    CHECK_EQ_INT(checks[2].state, SW_SHARD_CORRUPT);
    CHECK(strstr(checks[2].detail, "SHA-256") != NULL);
    CHECK_EQ_INT(checks[3].state, SW_SHARD_OK);
    /* No manifest at all. */
    n = 4;
    CHECK_EQ_INT(sw_gguf_verify_dir(tmp, checks, &n, err, sizeof err), SW_ENOTFOUND);
    CHECK(strstr(err, "model.json") != NULL);
}

static void write_text(const char *path, const char *s)
{
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(s, f);
    fclose(f);
}

static void test_manifest_refusals(void)
{
    static const struct { const char *json, *want; } cases[] = {
        { "[1,2]", "expected an object" },
        { "{\"format\":\"x\"}", "\"format\"" },
        { "{\"format\":\"shardswarm-model\",\"version\":2}", "version" },
        { "{\"format\":\"shardswarm-model\",\"version\":1,\"model_id\":\"m\",\"architecture\":\"llama\","
          "\"n_layers\":2,\"alignment\":32,\"n_shards\":1,\"shards\":[{\"index\":0,\"file\":\"../x\","
          "\"layer_first\":0,\"layer_last\":1,\"size\":1,\"sha256\":"
          "\"0000000000000000000000000000000000000000000000000000000000000000\"}]}",
          "not a plain file name" },
        { "{\"format\":\"shardswarm-model\",\"version\":1,\"model_id\":\"m\",\"architecture\":\"llama\","
          "\"n_layers\":3,\"alignment\":32,\"n_shards\":1,\"shards\":[{\"index\":0,\"file\":\"a\","
          "\"layer_first\":0,\"layer_last\":1,\"size\":1,\"sha256\":"
          "\"0000000000000000000000000000000000000000000000000000000000000000\"}]}",
          "cover layers" },
        { "{\"format\":\"shardswarm-model\",\"version\":1,\"model_id\":\"m\",\"architecture\":\"llama\","
          "\"n_layers\":2,\"alignment\":32,\"n_shards\":1,\"shards\":[{\"index\":0,\"file\":\"a\","
          "\"layer_first\":0,\"layer_last\":1,\"size\":-1,\"sha256\":\"00\"}]}",
          "\"size\"" },
        { "{\"format\":", "not valid JSON" },
    };
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/bad-manifest.json", tmp);
    for (size_t i = 0; i < SW_ARRAY_LEN(cases); i++) {
        write_text(path, cases[i].json);
        struct sw_manifest *m = (struct sw_manifest *)1;
        int rc = sw_gguf_manifest_load(path, &m, err, sizeof err);
        CHECK_MSG(rc != 0, "case %zu accepted", i);
        CHECK(m == NULL);
        CHECK_MSG(strstr(err, cases[i].want) != NULL, "case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].want);
        CHECK(strstr(err, "bad-manifest.json") != NULL);
    }
}

int main(void)
{
    tmp = sw_test_tmpdir();
    if (!tmp) SW_TEST_SKIP("no temporary folder");
    SW_RUN(test_stories_split);
    SW_RUN(test_generated_models);
    SW_RUN(test_llamacpp_split_input);
    SW_RUN(test_balance_optimal);
    SW_RUN(test_failures_leave_nothing);
    SW_RUN(test_verify_states);
    SW_RUN(test_manifest_refusals);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return SW_TEST_DONE();
}
