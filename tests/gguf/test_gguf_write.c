/* test_gguf_write.c — writer/reader round trips: every value type, arrays of strings, nested
 * arrays, many tensor types, odd alignments, chunked data, copy-through of a read file giving
 * identical bytes, and the writer's refusals (no file left behind on failure). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "testgen.h"

static const char *tmp;

static void check_model(const char *path, const struct tg_opts *o)
{
    char err[512];
    struct sw_gguf *g = NULL;
    int rc = sw_gguf_open(path, &g, err, sizeof err);
    CHECK_MSG(rc == 0, "open %s: %s", path, err);
    if (rc) return;
    uint64_t al = o->alignment ? o->alignment : 32;
    CHECK_EQ_INT(sw_gguf_version(g), 3);
    CHECK_EQ_U64(sw_gguf_alignment(g), al);
    CHECK_EQ_U64(sw_gguf_data_offset(g) % al, 0);
    CHECK_EQ_U64(sw_gguf_file_size(g) % al, 0);
    CHECK_EQ_STR(sw_gguf_arch(g), "llama");
    CHECK_EQ_INT(sw_gguf_n_layers(g), o->n_layers);

    uint64_t u = 0;
    int64_t i = 0;
    float f = 0;
    int b = 0;
    CHECK_EQ_INT(sw_gguf_get_u64(g, "test.u8", &u), 0);
    CHECK_EQ_U64(u, 200);
    CHECK_EQ_INT(sw_gguf_get_i64(g, "test.i8", &i), 0);
    CHECK_EQ_INT(i, -100);
    CHECK_EQ_INT(sw_gguf_get_u64(g, "test.i8", &u), SW_ECORRUPT); /* negative */
    CHECK_EQ_INT(sw_gguf_get_u64(g, "test.u16", &u), 0);
    CHECK_EQ_U64(u, 60000);
    CHECK_EQ_INT(sw_gguf_get_i64(g, "test.i16", &i), 0);
    CHECK_EQ_INT(i, -30000);
    CHECK_EQ_INT(sw_gguf_get_i64(g, "test.i32", &i), 0);
    CHECK_EQ_INT(i, -2000000000);
    CHECK_EQ_INT(sw_gguf_get_i64(g, "test.i64", &i), 0);
    CHECK_EQ_INT(i, -5000000000000ll);
    CHECK_EQ_INT(sw_gguf_get_u64(g, "test.u64", &u), 0);
    CHECK_EQ_U64(u, 18000000000000000000ull);
    CHECK_EQ_INT(sw_gguf_get_i64(g, "test.u64", &i), SW_ECORRUPT); /* does not fit */
    uint32_t u32;
    CHECK_EQ_INT(sw_gguf_get_u32(g, "test.u64", &u32), SW_ECORRUPT);
    const struct sw_gguf_kv *kv = sw_gguf_find(g, "test.f64");
    CHECK(kv && kv->type == SW_GGUF_F64 && kv->v.f64 == 3.141592653589793);
    CHECK_EQ_INT(sw_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f), 0);
    CHECK(f == 1e-5f);
    CHECK_EQ_INT(sw_gguf_get_bool(g, "test.bool", &b), 0);
    CHECK_EQ_INT(b, 1);
    char buf[8];
    CHECK_EQ_STR(sw_gguf_get_cstr(g, "general.name", buf, sizeof buf), "testgen");
    CHECK_EQ_STR(sw_gguf_get_cstr(g, "general.name", buf, 5), "test"); /* truncates */

    struct sw_gguf_arr a, sub, sub2;
    uint32_t V = o->n_vocab ? o->n_vocab : 300;
    CHECK_EQ_INT(sw_gguf_get_arr(g, "tokenizer.ggml.tokens", &a), 0);
    CHECK_EQ_U64(a.n, V);
    for (uint32_t k = 0; k < V; k++) {
        struct sw_gguf_str s;
        char want[80];
        tg_token(k, want, sizeof want);
        if (sw_gguf_arr_str(&a, k, &s) || s.len != strlen(want) || memcmp(s.ptr, want, s.len)) {
            CHECK_MSG(0, "token %u differs", k);
            break;
        }
    }
    CHECK_EQ_INT(sw_gguf_get_arr(g, "tokenizer.ggml.scores", &a), 0);
    CHECK_EQ_INT(sw_gguf_arr_f32(&a, 10, &f), 0);
    CHECK(f == -5.0f);
    CHECK_EQ_INT(sw_gguf_get_arr(g, "tokenizer.ggml.token_type", &a), 0);
    CHECK_EQ_INT(sw_gguf_arr_i64(&a, 0, &i), 0);
    CHECK_EQ_INT(i, 3);
    CHECK_EQ_INT(sw_gguf_arr_i64(&a, V, &i), SW_ERANGE);
    CHECK_EQ_INT(sw_gguf_get_arr(g, "test.empty", &a), 0);
    CHECK_EQ_U64(a.n, 0);

    /* Nested: [[u32 7, u32 9], ["a", "bc", ""], [[i8 -1], []]] */
    CHECK_EQ_INT(sw_gguf_get_arr(g, "test.nested", &a), 0);
    CHECK_EQ_INT(a.elem_type, SW_GGUF_ARRAY);
    CHECK_EQ_U64(a.n, 3);
    CHECK_EQ_INT(sw_gguf_arr_sub(&a, 0, &sub), 0);
    CHECK_EQ_INT(sub.elem_type, SW_GGUF_U32);
    CHECK_EQ_INT(sw_gguf_arr_i64(&sub, 1, &i), 0);
    CHECK_EQ_INT(i, 9);
    CHECK_EQ_INT(sw_gguf_arr_sub(&a, 1, &sub), 0);
    CHECK_EQ_INT(sub.elem_type, SW_GGUF_STRING);
    struct sw_gguf_str s;
    CHECK_EQ_INT(sw_gguf_arr_str(&sub, 1, &s), 0);
    CHECK(s.len == 2 && !memcmp(s.ptr, "bc", 2));
    CHECK_EQ_INT(sw_gguf_arr_str(&sub, 2, &s), 0);
    CHECK_EQ_U64(s.len, 0);
    CHECK_EQ_INT(sw_gguf_arr_sub(&a, 2, &sub), 0);
    CHECK_EQ_INT(sub.elem_type, SW_GGUF_ARRAY);
    CHECK_EQ_INT(sw_gguf_arr_sub(&sub, 0, &sub2), 0);
    CHECK_EQ_INT(sw_gguf_arr_i64(&sub2, 0, &i), 0);
    CHECK_EQ_INT(i, -1);
    CHECK_EQ_INT(sw_gguf_arr_sub(&sub, 1, &sub2), 0);
    CHECK_EQ_U64(sub2.n, 0);
    CHECK_EQ_INT(sw_gguf_arr_sub(&a, 3, &sub), SW_ERANGE);

    struct tg_tensor ts[512];
    uint32_t n = tg_tensors(o, ts, 512);
    CHECK_EQ_U64(sw_gguf_n_tensors(g), n);
    for (uint32_t k = 0; k < n && k < sw_gguf_n_tensors(g); k++) {
        const struct sw_gguf_tensor *t = sw_gguf_tensor_at(g, k);
        CHECK(t == sw_gguf_tensor_find(g, ts[k].name));
        CHECK_EQ_INT(t->type, ts[k].type);
        CHECK_EQ_INT(t->n_dims, ts[k].n_dims);
        CHECK_EQ_INT(t->ne[0], ts[k].ne[0]);
        CHECK_EQ_INT(t->ne[1], ts[k].n_dims > 1 ? ts[k].ne[1] : 1);
        CHECK_EQ_U64(t->offset % al, 0);
        uint8_t *want = malloc(t->n_bytes + 1);
        tg_fill(ts[k].name, want, t->n_bytes);
        CHECK_MSG(!memcmp(want, t->data, t->n_bytes), "tensor %s data differs", ts[k].name);
        free(want);
    }
    sw_gguf_close(g);
}

static void test_roundtrip_alignments(void)
{
    static const uint64_t aligns[] = { 32, 1, 8, 64, 4096 };
    for (size_t k = 0; k < SW_ARRAY_LEN(aligns); k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/rt-%llu.gguf", tmp, (unsigned long long)aligns[k]);
        struct tg_opts o = { .n_layers = 3, .alignment = aligns[k], .n_vocab = 257 };
        int rc = tg_write_model(path, &o);
        CHECK_MSG(rc == 0, "write alignment %llu: %s", (unsigned long long)aligns[k], sw_strerror(rc));
        if (!rc) check_model(path, &o);
        char tmpname[600];
        snprintf(tmpname, sizeof tmpname, "%s.tmp", path);
        CHECK(!sw_path_exists(tmpname));
    }
}

/* Reading a file and writing every kv and tensor back gives the same bytes. */
static void test_copy_identical(void)
{
    char a[512], b[512], err[256];
    snprintf(a, sizeof a, "%s/copy-a.gguf", tmp);
    snprintf(b, sizeof b, "%s/copy-b.gguf", tmp);
    struct tg_opts o = { .n_layers = 2, .alignment = 64 };
    CHECK_EQ_INT(tg_write_model(a, &o), 0);
    struct sw_gguf *g = NULL;
    CHECK_EQ_INT(sw_gguf_open(a, &g, err, sizeof err), 0);
    if (!g) return;
    struct sw_gguf_writer *w;
    CHECK_EQ_INT(sw_gguf_writer_new(b, sw_gguf_alignment(g), &w), 0);
    for (uint64_t i = 0; i < sw_gguf_n_kv(g); i++) CHECK_EQ_INT(sw_gguf_writer_add_kv(w, sw_gguf_kv_at(g, i)), 0);
    for (uint64_t i = 0; i < sw_gguf_n_tensors(g); i++) {
        const struct sw_gguf_tensor *t = sw_gguf_tensor_at(g, i);
        char name[80];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        CHECK_EQ_INT(sw_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne), 0);
        CHECK_EQ_U64(sw_gguf_writer_tensor_offset(w, i), t->offset);
    }
    CHECK_EQ_INT(sw_gguf_writer_write_header(w), 0);
    for (uint64_t i = 0; i < sw_gguf_n_tensors(g); i++) {
        const struct sw_gguf_tensor *t = sw_gguf_tensor_at(g, i);
        CHECK_EQ_INT(sw_gguf_writer_write_data(w, t->data, t->n_bytes), 0);
    }
    uint8_t sha[32], sha2[32];
    uint64_t size = 0;
    CHECK_EQ_INT(sw_gguf_writer_finish_ex(w, sha, &size), 0);
    CHECK_EQ_U64(size, sw_gguf_file_size(g));
    sw_sha256(sw_gguf_bytes(g), sw_gguf_file_size(g), sha2);
    CHECK_EQ_MEM(sha, sha2, 32);
    CHECK_EQ_INT(sw_sha256_file(b, sha2), 0);
    CHECK_EQ_MEM(sha, sha2, 32);
    sw_gguf_close(g);
}

/* Version 2 has the same little-endian layout as version 3: such a file reads the same. */
static void test_version2(void)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/v2.gguf", tmp);
    struct tg_opts o = { .n_layers = 1 };
    CHECK_EQ_INT(tg_write_model(path, &o), 0);
    uint8_t *data = NULL;
    size_t len = 0;
    CHECK_EQ_INT(sw_file_read_all(path, 1 << 24, &data, &len), 0);
    if (!data) return;
    data[4] = 2;
    struct sw_gguf *g = NULL;
    CHECK_EQ_INT(sw_gguf_open_mem(data, len, &g, err, sizeof err), 0);
    if (g) {
        CHECK_EQ_INT(sw_gguf_version(g), 2);
        CHECK(sw_gguf_tensor_find(g, "blk.0.attn_q.weight") != NULL);
    }
    sw_gguf_close(g);
    free(data);
}

static void test_writer_refusals(void)
{
    char path[512], tmpname[600];
    snprintf(path, sizeof path, "%s/bad.gguf", tmp);
    snprintf(tmpname, sizeof tmpname, "%s.tmp", path);
    struct sw_gguf_writer *w = NULL;
    CHECK_EQ_INT(sw_gguf_writer_new(path, 48, &w), SW_EINVAL); /* not a power of two */
    CHECK(w == NULL);
    CHECK_EQ_INT(sw_gguf_writer_new("/nonexistent-dir/x.gguf", 32, &w), SW_ENOTFOUND);
    CHECK_EQ_INT(sw_gguf_writer_new(path, 32, &w), 0);
    CHECK(sw_path_exists(tmpname));
    int64_t ne[2] = { 256, 2 };
    int64_t bad[2] = { 100, 2 };
    char longname[80];
    memset(longname, 'x', 70);
    longname[70] = 0;
    CHECK_EQ_INT(sw_gguf_writer_add_tensor(w, longname, SW_TYPE_F32, 2, ne), SW_EINVAL);
    CHECK_EQ_INT(sw_gguf_writer_add_tensor(w, "t", 99, 2, ne), SW_EUNSUPPORTED);
    CHECK_EQ_INT(sw_gguf_writer_add_tensor(w, "t", SW_TYPE_Q4_K, 2, bad), SW_EINVAL);
    CHECK_EQ_INT(sw_gguf_writer_add_tensor(w, "t", SW_TYPE_F32, 5, ne), SW_EINVAL);
    CHECK_EQ_INT(sw_gguf_writer_add_tensor(w, "t", SW_TYPE_Q4_K, 2, ne), 0);
    CHECK_EQ_INT(sw_gguf_writer_add_tensor(w, "t", SW_TYPE_F32, 2, ne), SW_EEXIST);
    CHECK_EQ_INT(sw_gguf_writer_set_u32(w, "k", 1), 0);
    CHECK_EQ_INT(sw_gguf_writer_set_u32(w, "k", 2), 0); /* replaces */
    CHECK_EQ_INT(sw_gguf_writer_write_data(w, "x", 1), SW_ESTATE); /* before the header */
    CHECK_EQ_INT(sw_gguf_writer_write_header(w), 0);
    CHECK_EQ_INT(sw_gguf_writer_set_u32(w, "k2", 1), SW_ESTATE);
    uint8_t data[288 + 1] = { 0 };
    CHECK_EQ_INT(sw_gguf_writer_write_data(w, data, 288 + 1), SW_EINVAL); /* too many bytes */
    /* Finishing with tensor bytes missing fails and leaves nothing behind. */
    CHECK(sw_gguf_writer_finish(w) != 0);
    CHECK(!sw_path_exists(path));
    CHECK(!sw_path_exists(tmpname));

    /* Freed without finishing: the temporary file goes away. */
    CHECK_EQ_INT(sw_gguf_writer_new(path, 32, &w), 0);
    CHECK_EQ_INT(sw_gguf_writer_set_u32(w, "k", 1), 0);
    CHECK_EQ_INT(sw_gguf_writer_write_header(w), 0);
    sw_gguf_writer_free(w);
    CHECK(!sw_path_exists(path));
    CHECK(!sw_path_exists(tmpname));

    /* A metadata-only file reads back. */
    CHECK_EQ_INT(sw_gguf_writer_new(path, 32, &w), 0);
    CHECK_EQ_INT(sw_gguf_writer_set_u32(w, "k", 1), 0);
    CHECK_EQ_INT(sw_gguf_writer_set_u32(w, "k", 7), 0);
    CHECK_EQ_INT(sw_gguf_writer_set_str(w, "gone", "x"), 0);
    CHECK_EQ_INT(sw_gguf_writer_remove(w, "gone"), 0);
    CHECK_EQ_INT(sw_gguf_writer_remove(w, "gone"), SW_ENOTFOUND);
    CHECK_EQ_INT(sw_gguf_writer_write_header(w), 0);
    CHECK_EQ_INT(sw_gguf_writer_finish(w), 0);
    struct sw_gguf *g = NULL;
    char err[256];
    CHECK_EQ_INT(sw_gguf_open(path, &g, err, sizeof err), 0);
    uint32_t v = 0;
    if (g) {
        CHECK_EQ_U64(sw_gguf_n_kv(g), 1);
        CHECK_EQ_INT(sw_gguf_get_u32(g, "k", &v), 0);
        CHECK_EQ_INT(v, 7);
        CHECK_EQ_U64(sw_gguf_n_tensors(g), 0);
    }
    sw_gguf_close(g);
}

/* Opening a 150k-entry vocabulary must take milliseconds, not seconds. */
static void test_big_vocab_fast(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/vocab150k.gguf", tmp);
    struct tg_opts o = { .n_layers = 1, .n_vocab = 150000 };
    CHECK_EQ_INT(tg_write_model(path, &o), 0);
    uint64_t best = UINT64_MAX;
    for (int r = 0; r < 3; r++) {
        struct sw_gguf *g = NULL;
        char err[256];
        uint64_t t0 = sw_time_us();
        CHECK_EQ_INT(sw_gguf_open(path, &g, err, sizeof err), 0);
        uint64_t dt = sw_time_us() - t0;
        if (dt < best) best = dt;
        sw_gguf_close(g);
    }
    fprintf(stderr, "  open with 150000 tokens: %llu us (best of 3)\n", (unsigned long long)best);
    CHECK_MSG(best < 500000, "opening took %llu us", (unsigned long long)best);
}

int main(void)
{
    tmp = sw_test_tmpdir();
    if (!tmp) SW_TEST_SKIP("no temporary folder");
    SW_RUN(test_roundtrip_alignments);
    SW_RUN(test_copy_identical);
    SW_RUN(test_version2);
    SW_RUN(test_writer_refusals);
    SW_RUN(test_big_vocab_fast);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return SW_TEST_DONE();
}
