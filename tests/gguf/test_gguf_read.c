/* test_gguf_read.c — the reader on the shared model and vocabulary files: metadata values,
 * arrays of strings, the tensor table with layers, the type table, arch lookups. */
#include <stdio.h>
#include <string.h>

#include "gguf/gguf.h"
#include "test.h"

static char path_buf[4096];

static const char *shared(const char *rel)
{
    const char *d = sw_test_shared_data();
    if (!d) return NULL;
    snprintf(path_buf, sizeof path_buf, "%s/%s", d, rel);
    return path_buf;
}

static void test_type_table(void)
{
    static const struct { uint32_t t; const char *name; uint32_t bs, ts; } want[] = {
        { SW_TYPE_F32, "F32", 1, 4 },      { SW_TYPE_F16, "F16", 1, 2 },
        { SW_TYPE_BF16, "BF16", 1, 2 },    { SW_TYPE_Q4_0, "Q4_0", 32, 18 },
        { SW_TYPE_Q4_1, "Q4_1", 32, 20 },  { SW_TYPE_Q5_0, "Q5_0", 32, 22 },
        { SW_TYPE_Q5_1, "Q5_1", 32, 24 },  { SW_TYPE_Q8_0, "Q8_0", 32, 34 },
        { SW_TYPE_Q8_1, "Q8_1", 32, 36 },  { SW_TYPE_Q2_K, "Q2_K", 256, 84 },
        { SW_TYPE_Q3_K, "Q3_K", 256, 110 }, { SW_TYPE_Q4_K, "Q4_K", 256, 144 },
        { SW_TYPE_Q5_K, "Q5_K", 256, 176 }, { SW_TYPE_Q6_K, "Q6_K", 256, 210 },
        { SW_TYPE_Q8_K, "Q8_K", 256, 292 }, { SW_TYPE_IQ2_XXS, "IQ2_XXS", 256, 66 },
        { SW_TYPE_IQ2_XS, "IQ2_XS", 256, 74 }, { SW_TYPE_IQ3_XXS, "IQ3_XXS", 256, 98 },
        { SW_TYPE_IQ1_S, "IQ1_S", 256, 50 }, { SW_TYPE_IQ4_NL, "IQ4_NL", 32, 18 },
        { SW_TYPE_IQ3_S, "IQ3_S", 256, 110 }, { SW_TYPE_IQ2_S, "IQ2_S", 256, 82 },
        { SW_TYPE_IQ4_XS, "IQ4_XS", 256, 136 }, { SW_TYPE_I8, "I8", 1, 1 },
        { SW_TYPE_I16, "I16", 1, 2 },      { SW_TYPE_I32, "I32", 1, 4 },
        { SW_TYPE_I64, "I64", 1, 8 },      { SW_TYPE_F64, "F64", 1, 8 },
        { SW_TYPE_IQ1_M, "IQ1_M", 256, 56 }, { SW_TYPE_TQ1_0, "TQ1_0", 256, 54 },
        { SW_TYPE_TQ2_0, "TQ2_0", 256, 66 }, { SW_TYPE_MXFP4, "MXFP4", 32, 17 },
    };
    for (size_t i = 0; i < SW_ARRAY_LEN(want); i++) {
        const struct sw_type_info *ti = sw_gguf_type_info(want[i].t);
        CHECK_MSG(ti != NULL, "type %u missing", want[i].t);
        if (!ti) continue;
        CHECK_EQ_STR(ti->name, want[i].name);
        CHECK_EQ_INT(ti->block_size, want[i].bs);
        CHECK_EQ_INT(ti->type_size, want[i].ts);
    }
    CHECK(sw_gguf_type_info(4) == NULL);
    CHECK(sw_gguf_type_info(31) == NULL);
    CHECK(sw_gguf_type_info(1000) == NULL);
    uint64_t b = 0;
    CHECK_EQ_INT(sw_gguf_type_bytes(SW_TYPE_Q4_K, 512, &b), 0);
    CHECK_EQ_U64(b, 288);
    CHECK_EQ_INT(sw_gguf_type_bytes(SW_TYPE_Q4_K, 100, &b), SW_EINVAL);
    CHECK_EQ_INT(sw_gguf_type_bytes(99, 100, &b), SW_EUNSUPPORTED);
}

static void test_stories(void)
{
    const char *p = shared("models/stories260K.gguf");
    char err[512];
    struct sw_gguf *g = NULL;
    int rc = sw_gguf_open(p, &g, err, sizeof err);
    CHECK_MSG(rc == 0, "open: %s", err);
    if (rc) return;
    CHECK(sw_gguf_version(g) == 3 || sw_gguf_version(g) == 2);
    CHECK_EQ_STR(sw_gguf_arch(g), "llama");
    uint32_t n_layers = sw_gguf_n_layers(g);
    CHECK(n_layers > 0);
    uint32_t v = 0;
    CHECK_EQ_INT(sw_gguf_arch_u32(g, "embedding_length", &v), 0);
    CHECK(v > 0);
    float eps = 0;
    CHECK_EQ_INT(sw_gguf_arch_f32(g, "attention.layer_norm_rms_epsilon", &eps), 0);
    CHECK(eps > 0 && eps < 1e-3);
    CHECK_EQ_INT(sw_gguf_get_u32(g, "no.such.key", &v), SW_ENOTFOUND);
    CHECK_EQ_INT(sw_gguf_get_u32(g, "general.architecture", &v), SW_ECORRUPT);

    struct sw_gguf_arr toks, scores;
    CHECK_EQ_INT(sw_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks), 0);
    CHECK_EQ_INT(toks.elem_type, SW_GGUF_STRING);
    CHECK(toks.n > 100);
    struct sw_gguf_str s;
    CHECK_EQ_INT(sw_gguf_arr_str(&toks, 0, &s), 0);
    CHECK(s.len > 0);
    CHECK_EQ_INT(sw_gguf_arr_str(&toks, toks.n, &s), SW_ERANGE);
    CHECK_EQ_INT(sw_gguf_arr_str(&toks, toks.n - 1, &s), 0);
    CHECK((const uint8_t *)s.ptr + s.len == toks.data + toks.data_len);
    if (sw_gguf_get_arr(g, "tokenizer.ggml.scores", &scores) == 0) {
        CHECK_EQ_U64(scores.n, toks.n);
        float f;
        CHECK_EQ_INT(sw_gguf_arr_f32(&scores, 1, &f), 0);
        CHECK_EQ_INT(sw_gguf_arr_str(&scores, 0, &s), SW_ECORRUPT);
    }

    const struct sw_gguf_tensor *emb = sw_gguf_tensor_find(g, "token_embd.weight");
    CHECK(emb != NULL);
    if (emb) {
        CHECK_EQ_INT(emb->layer, -1);
        CHECK_EQ_INT(emb->ne[0], v);
        CHECK(emb->data >= sw_gguf_bytes(g) + sw_gguf_data_offset(g));
        CHECK(emb->data + emb->n_bytes <= sw_gguf_bytes(g) + sw_gguf_file_size(g));
    }
    int max_layer = -1, seen_layer0 = 0;
    uint64_t total = 0;
    for (uint64_t i = 0; i < sw_gguf_n_tensors(g); i++) {
        const struct sw_gguf_tensor *t = sw_gguf_tensor_at(g, i);
        CHECK(t->offset % sw_gguf_alignment(g) == 0);
        if (t->layer > max_layer) max_layer = t->layer;
        if (t->layer == 0) seen_layer0 = 1;
        if (!strncmp(t->name.ptr, "blk.", 4)) CHECK(t->layer >= 0);
        CHECK(sw_gguf_tensor_find(g, "blk.0.attn_q.weight") != NULL);
        total += t->n_bytes;
    }
    CHECK(seen_layer0);
    CHECK_EQ_INT(max_layer + 1, n_layers);
    CHECK(total <= sw_gguf_file_size(g) - sw_gguf_data_offset(g));
    CHECK(sw_gguf_tensor_at(g, sw_gguf_n_tensors(g)) == NULL);
    CHECK(sw_gguf_tensor_find(g, "blk.0.attn_q") == NULL);
    struct sw_gguf_shard_info si;
    CHECK_EQ_INT(sw_gguf_shard_info(g, &si), SW_ENOTFOUND);
    sw_gguf_close(g);
}

static void test_vocab_files(void)
{
    static const char *names[] = { "ggml-vocab-bert-bge.gguf", "ggml-vocab-deepseek-llm.gguf",
                                   "ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-spm.gguf",
                                   "ggml-vocab-phi-3.gguf" };
    for (size_t i = 0; i < SW_ARRAY_LEN(names); i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "vocab/%s", names[i]);
        const char *p = shared(rel);
        char err[512];
        struct sw_gguf *g = NULL;
        uint64_t t0 = sw_time_us();
        int rc = sw_gguf_open(p, &g, err, sizeof err);
        uint64_t dt = sw_time_us() - t0;
        CHECK_MSG(rc == 0, "%s: %s", names[i], err);
        if (rc) continue;
        fprintf(stderr, "  %s: %llu kvs, %llu tensors, opened in %llu us\n", names[i],
                (unsigned long long)sw_gguf_n_kv(g), (unsigned long long)sw_gguf_n_tensors(g),
                (unsigned long long)dt);
        struct sw_gguf_arr toks;
        CHECK_EQ_INT(sw_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks), 0);
        /* Every element is reachable and ends within the array's bytes. */
        uint64_t sum = 0;
        for (uint64_t k = 0; k < toks.n; k++) {
            struct sw_gguf_str s;
            if (sw_gguf_arr_str(&toks, k, &s)) { CHECK(0); break; }
            sum += 8 + s.len;
        }
        CHECK_EQ_U64(sum, toks.data_len);
        struct sw_gguf_arr merges;
        if (sw_gguf_get_arr(g, "tokenizer.ggml.merges", &merges) == 0) {
            CHECK_EQ_INT(merges.elem_type, SW_GGUF_STRING);
            CHECK(merges.n > 0);
        }
        struct sw_gguf_arr tt;
        if (sw_gguf_get_arr(g, "tokenizer.ggml.token_type", &tt) == 0) {
            int64_t x;
            CHECK_EQ_U64(tt.n, toks.n);
            CHECK_EQ_INT(sw_gguf_arr_i64(&tt, 0, &x), 0);
        }
        char model[64];
        CHECK(sw_gguf_get_cstr(g, "tokenizer.ggml.model", model, sizeof model) != NULL);
        sw_gguf_close(g);
    }
}

static void test_missing_file(void)
{
    char err[256];
    struct sw_gguf *g = (struct sw_gguf *)1;
    CHECK_EQ_INT(sw_gguf_open("/nonexistent/x.gguf", &g, err, sizeof err), SW_ENOTFOUND);
    CHECK(g == NULL);
    CHECK(strstr(err, "/nonexistent/x.gguf") != NULL);
    sw_gguf_close(NULL);
}

int main(void)
{
    SW_RUN(test_type_table);
    SW_RUN(test_missing_file);
    if (!sw_test_shared_data()) {
        SW_TEST_SKIP("shared data absent (../shared/data): reader tests on real files skipped");
    }
    SW_RUN(test_stories);
    SW_RUN(test_vocab_files);
    return SW_TEST_DONE();
}
