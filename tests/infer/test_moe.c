/* test_moe.c — mixture-of-experts and the newer architectures (arch.c rows llama+experts,
 * qwen2moe, qwen3, qwen3moe) on tiny synth presets: batched prefill (tokens grouped by
 * expert) equals token-by-token decode, shards equal the whole model, and files that declare
 * what the engine cannot do are refused at load, naming the file, the key or tensor and the
 * value. Agreement with llama.cpp itself: test_oracle.py. */
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "test.h"

static char tmp_dir[512], vocab_path[4096];

static const int32_t TOKS[16] = { 1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426 };

static int synth(const char *out, const char *preset, const char *type)
{
    struct sw_synth_opts o = { .preset = preset, .type = type, .seed = 3, .vocab_path = vocab_path, .n_threads = 2 };
    char err[512];
    int rc = sw_synth_write(out, &o, err, sizeof err);
    CHECK_MSG(rc == 0, "synth %s %s: %s", preset, type, err);
    return rc;
}

static double max_rel_diff(const float *a, const float *b, size_t n)
{
    double maxabs = 0, diff = 0;
    for (size_t i = 0; i < n; i++) {
        maxabs = fmax(maxabs, fabs((double)b[i]));
        diff = fmax(diff, fabs((double)a[i] - (double)b[i]));
    }
    return maxabs > 0 ? diff / maxabs : diff;
}

/* Prefill of 16 tokens (every expert sees a group) vs decode one by one (k experts each),
 * with a step smaller than the prompt (max_batch 5). */
static void batch_vs_decode(const char *preset, const char *type)
{
    char p[600], err[512];
    snprintf(p, sizeof p, "%s/%s-%s.gguf", tmp_dir, preset, type);
    if (synth(p, preset, type)) return;
    struct sw_stage_opts o1 = { .layer_first = -1, .layer_last = -1, .n_threads = 2 };
    struct sw_stage_opts o2 = o1;
    o2.max_batch = 5;
    struct sw_stage *s1 = NULL, *s2 = NULL;
    CHECK_MSG(sw_stage_open(p, &o1, &s1, err, sizeof err) == 0, "%s: %s", p, err);
    CHECK_MSG(sw_stage_open(p, &o2, &s2, err, sizeof err) == 0, "%s: %s", p, err);
    if (!s1 || !s2) goto out;
    const struct sw_stage_info *in = sw_stage_info(s1);
    CHECK_MSG(!strstr(preset, "moe") || in->n_expert > 0, "%s: no experts", preset);
    const uint32_t V = in->n_vocab;
    float *all = malloc(16 * (size_t)V * sizeof *all), *one = malloc(V * sizeof *one);
    sw_stage_seq_new(s1, 1);
    sw_stage_seq_new(s2, 1);
    CHECK_EQ_INT(sw_stage_forward(s2, 1, 0, 16, TOKS, all, SW_STAGE_LOGITS_ALL), 0);
    double worst = 0;
    for (uint32_t i = 0; i < 16; i++) {
        CHECK_EQ_INT(sw_stage_forward(s1, 1, i, 1, &TOKS[i], one, 0), 0);
        worst = fmax(worst, max_rel_diff(all + (size_t)i * V, one, V));
    }
    CHECK_MSG(worst < 1e-3, "%s %s: batched vs incremental differ by %.3g", preset, type, worst);
    free(all);
    free(one);
out:
    sw_stage_free(s1);
    sw_stage_free(s2);
}

static void test_batch_equals_decode(void)
{
    batch_vs_decode("moe-nano", "F32");
    batch_vs_decode("moe-nano", "Q4_K");
    batch_vs_decode("qwen2moe-nano", "Q8_0");
    batch_vs_decode("qwen3-nano", "F32");
    batch_vs_decode("qwen3moe-nano", "Q8_0");
    batch_vs_decode("gemma3-nano", "Q8_0");    /* sliding window crossed by the 16 tokens */
    batch_vs_decode("phi-nano", "Q4_K");
    batch_vs_decode("gpt-oss-nano", "MXFP4"); /* sinks, window, YaRN, biased experts */
    batch_vs_decode("deepseek2-nano", "Q8_0"); /* latent attention, dense lead, shared experts */
    batch_vs_decode("deepseek3-nano", "F32");  /* + q low rank, sigmoid groups, YaRN */
}

/* Shards of an MoE model (split by layer: a layer's experts stay together) compute what the
 * whole model does. */
static void split_equals_whole(const char *preset)
{
    char p[600], dir[600], err[512];
    snprintf(p, sizeof p, "%s/%s-split.gguf", tmp_dir, preset);
    if (synth(p, preset, "Q8_0")) return;
    snprintf(dir, sizeof dir, "%s/%s-shards", tmp_dir, preset);
    struct sw_split_opts so = { .n_shards = 2, .out_dir = dir };
    struct sw_shard_plan plans[2];
    int rc = sw_gguf_split(p, &so, plans, err, sizeof err);
    CHECK_MSG(rc == 0, "split: %s", err);
    if (rc) return;
    char s0[700], s1[700];
    snprintf(s0, sizeof s0, "%s/shard-0.gguf", dir);
    snprintf(s1, sizeof s1, "%s/shard-1.gguf", dir);
    const char *pp[2] = { s0, s1 }, *whole_p = p;
    struct sw_chain *whole = NULL, *parts = NULL;
    struct sw_stage_opts o = { .n_threads = 2 };
    CHECK_EQ_INT(sw_chain_open(&whole_p, 1, &o, &whole, err, sizeof err), 0);
    CHECK_MSG(sw_chain_open(pp, 2, &o, &parts, err, sizeof err) == 0, "chain: %s", err);
    if (whole && parts) {
        const uint32_t V = sw_chain_n_vocab(whole);
        float *a = malloc(16 * (size_t)V * sizeof *a), *b = malloc(16 * (size_t)V * sizeof *b);
        sw_chain_seq_new(whole, 1);
        sw_chain_seq_new(parts, 1);
        CHECK_EQ_INT(sw_chain_forward(whole, 1, 0, 16, TOKS, a, SW_STAGE_LOGITS_ALL), 0);
        CHECK_EQ_INT(sw_chain_forward(parts, 1, 0, 16, TOKS, b, SW_STAGE_LOGITS_ALL), 0);
        double d = max_rel_diff(b, a, 16 * (size_t)V);
        CHECK_MSG(d <= 1e-5, "%s: 2 shards vs whole: %.3g", preset, d);
        free(a);
        free(b);
    }
    sw_chain_free(whole);
    sw_chain_free(parts);
}

static void test_split_equals_whole(void)
{
    split_equals_whole("qwen3moe-nano");
    split_equals_whole("deepseek3-nano");
}

/* Copies src to dst without tensor `drop` and with key `key` set to u32 `val` (or the
 * string sval), so one flaw at a time can be shown to the loader. */
static int rewrite(const char *src, const char *dst, const char *drop, const char *key, uint32_t val,
                   const char *sval)
{
    char err[256];
    struct sw_gguf *g = NULL;
    struct sw_gguf_writer *w = NULL;
    int rc = sw_gguf_open(src, &g, err, sizeof err);
    if (rc) return rc;
    if ((rc = sw_gguf_writer_new(dst, 32, &w))) goto out;
    for (uint64_t i = 0; i < sw_gguf_n_kv(g) && !rc; i++) rc = sw_gguf_writer_add_kv(w, sw_gguf_kv_at(g, i));
    if (!rc && key) rc = sval ? sw_gguf_writer_set_str(w, key, sval) : sw_gguf_writer_set_u32(w, key, val);
    for (uint64_t i = 0; i < sw_gguf_n_tensors(g) && !rc; i++) {
        const struct sw_gguf_tensor *t = sw_gguf_tensor_at(g, i);
        if (drop && t->name.len == strlen(drop) && !memcmp(t->name.ptr, drop, t->name.len)) continue;
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        rc = sw_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne);
    }
    if (!rc) rc = sw_gguf_writer_write_header(w);
    for (uint64_t i = 0; i < sw_gguf_n_tensors(g) && !rc; i++) {
        const struct sw_gguf_tensor *t = sw_gguf_tensor_at(g, i);
        if (drop && t->name.len == strlen(drop) && !memcmp(t->name.ptr, drop, t->name.len)) continue;
        rc = sw_gguf_writer_write_data(w, t->data, t->n_bytes);
    }
    if (!rc) {
        rc = sw_gguf_writer_finish(w);
        w = NULL;
    }
out:
    sw_gguf_writer_free(w);
    sw_gguf_close(g);
    return rc;
}

static void refused(const char *src, const char *drop, const char *key, uint32_t val, const char *sval,
                    int want_rc, const char *w1, const char *w2)
{
    char p[600], err[512] = "";
    snprintf(p, sizeof p, "%s/bad.gguf", tmp_dir);
    CHECK_EQ_INT(rewrite(src, p, drop, key, val, sval), 0);
    struct sw_stage *s = NULL;
    int rc = sw_stage_open(p, NULL, &s, err, sizeof err);
    CHECK_MSG(rc == want_rc, "%s/%s: rc %d, expected %d (%s)", drop ? drop : "", key ? key : "", rc, want_rc, err);
    CHECK_MSG(strstr(err, p) && strstr(err, w1) && strstr(err, w2), "message lacks the file, '%s' or '%s': %s",
              w1, w2, err);
    CHECK(s == NULL);
    sw_stage_free(s);
}

static void test_refusals(void)
{
    char moe[600], q3[600], oss[600];
    snprintf(moe, sizeof moe, "%s/moe-bad-src.gguf", tmp_dir);
    snprintf(q3, sizeof q3, "%s/q3moe-bad-src.gguf", tmp_dir);
    snprintf(oss, sizeof oss, "%s/oss-bad-src.gguf", tmp_dir);
    if (synth(moe, "moe-nano", "F32") || synth(q3, "qwen3moe-nano", "F32") || synth(oss, "gpt-oss-nano", "F32")) return;
    refused(oss, "blk.1.attn_sinks.weight", NULL, 0, NULL, SW_ECORRUPT, "blk.1.attn_sinks.weight", "missing");
    refused(oss, "blk.0.ffn_down_exps.bias", NULL, 0, NULL, SW_ECORRUPT, "blk.0.ffn_down_exps.bias", "missing");
    refused(oss, NULL, "gpt-oss.attention.sliding_window_pattern", 0, "every-other", SW_ECORRUPT,
            "sliding_window_pattern", "bad type");
    refused(moe, "blk.1.ffn_up_exps.weight", NULL, 0, NULL, SW_ECORRUPT, "blk.1.ffn_up_exps.weight", "missing");
    refused(moe, NULL, "llama.expert_count", 6, NULL, SW_ECORRUPT, "llama.expert_count is 6", "holds 4 experts");
    refused(moe, NULL, "llama.expert_used_count", 5, NULL, SW_ECORRUPT, "llama.expert_used_count", "5");
    refused(moe, "blk.0.ffn_gate_inp.weight", NULL, 0, NULL, SW_ECORRUPT, "blk.0.ffn_gate_inp.weight", "missing");
    refused(moe, NULL, "llama.rope.scaling.type", 0, "dynamic", SW_EUNSUPPORTED, "llama.rope.scaling.type", "dynamic");
    refused(q3, NULL, "qwen3moe.expert_gating_func", 2, NULL, SW_EUNSUPPORTED, "expert_gating_func", "2");
    refused(q3, "blk.0.attn_k_norm.weight", NULL, 0, NULL, SW_ECORRUPT, "blk.0.attn_k_norm.weight", "missing");
    refused(q3, NULL, "qwen3moe.attention.key_length", 64, NULL, SW_EUNSUPPORTED, "key_length 64", "value_length 128");
    refused(q3, NULL, "general.architecture", 0, "deepseek9", SW_EUNSUPPORTED, "deepseek9", "qwen3moe");
    char ds[600];
    snprintf(ds, sizeof ds, "%s/ds3-bad-src.gguf", tmp_dir);
    if (synth(ds, "deepseek3-nano", "F32")) return;
    refused(ds, "blk.1.attn_k_b.weight", NULL, 0, NULL, SW_ECORRUPT, "blk.1.attn_k_b.weight", "missing");
    refused(ds, "blk.0.attn_q_a_norm.weight", NULL, 0, NULL, SW_ECORRUPT, "blk.0.attn_q_a_norm.weight", "missing");
    refused(ds, NULL, "deepseek2.attention.kv_lora_rank", 64, NULL, SW_EUNSUPPORTED, "key_length 160", "= 96");
    refused(ds, NULL, "deepseek2.expert_group_count", 3, NULL, SW_ECORRUPT, "expert_group_count 3", "16 experts");
    refused(ds, NULL, "deepseek2.expert_gating_func", 3, NULL, SW_EUNSUPPORTED, "expert_gating_func", "3");
    refused(ds, NULL, "deepseek2.leading_dense_block_count", 9, NULL, SW_ECORRUPT, "leading_dense_block_count 9",
            "block_count 3");
}

int main(void)
{
    const char *data = sw_test_shared_data();
    if (!data) SW_TEST_SKIP("../shared/data is absent: stories260K.gguf needed (its vocabulary)");
    snprintf(vocab_path, sizeof vocab_path, "%s/models/stories260K.gguf", data);
    const char *t = sw_test_tmpdir();
    if (!t) SW_TEST_SKIP("no temporary folder");
    snprintf(tmp_dir, sizeof tmp_dir, "%s", t);
    SW_RUN(test_batch_equals_decode);
    SW_RUN(test_split_equals_whole);
    SW_RUN(test_refusals);
    sw_test_rm_tree(tmp_dir);
    return SW_TEST_DONE();
}
