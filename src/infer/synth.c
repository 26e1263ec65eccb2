/* synth.c — writes random-weight models of real architectures' shapes (TinyLlama-1.1B,
 * Qwen2-0.5B, ...) with a real tokenizer copied from another GGUF: the benchmark and test
 * models. Weights are generated row by row from a counter-based RNG (so the bytes do not
 * depend on the thread count), quantized with the kernels' reference quantizers, and
 * streamed through the GGUF writer: a 2 GB model never sits in memory.
 * Not for: anything that must produce meaningful text. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "infer/kernels.h"
#include "infer/stage_impl.h" /* the architecture table (arch.c): which tensors a row has */

/* Rows may stop after the vocab column: the feature columns after it default to 0 (absent). */
/* deepseek2: V2-Lite's shape (no q low rank, softmax, 2 shared experts, YaRN x40 with
 * mscale_all_dim 0.707), a V2-style nano, and a V3-style nano (q low rank, sigmoid gating
 * with selection bias, 4 groups of which 2 are used, normalised weights x 1.5, YaRN). */
/*                                    q_lora kv_lora nope rope  v  dense shared groups used gating scale norm log_mul */
static const struct sw_synth_mla MLA_V2_NANO = { 0,   128,  64,  32,  64,  1,  2,    0,   0,   1,   1.0f, 0, 0 };
static const struct sw_synth_mla MLA_V3_NANO = { 96,  128,  64,  32,  64,  1,  1,    4,   2,   2,   1.5f, 1, 0.1f };
static const struct sw_synth_mla MLA_V2_LITE = { 0,   512, 128,  64, 128,  1,  2,    0,   0,   1,   1.0f, 0, 0.0707f };

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const struct sw_synth_preset PRESETS[] = {
    /* name             arch     embd layers head kv  ff    vocab   ctx    rope base  eps  tied vocab file */
    { "nano",           "llama",  256,  2,   4,  2,   512,   512,   512,  10000.0f, 1e-5f, 0, "../models/stories260K.gguf" },
    { "qwen2-nano",     "qwen2",  256,  2,   4,  2,   512,   512,   512, 1000000.0f, 1e-6f, 1, "../models/stories260K.gguf" },
    /* the GPU test's tiled-matmul edges: 32 FFN rows (under one 64-row tile) over 256 columns
     * (a K-quant's one block), the down matrix's 32 columns (a 32-block's one block), 520
     * logits rows (8 tiles and 8) */
    { "odd-nano",       "llama",  256,  1,   4,  2,    32,   520,   512,  10000.0f, 1e-5f, 0, "../models/stories260K.gguf" },
    { "tiny",           "llama",  256,  4,   4,  2,   768, 32000,  2048,  10000.0f, 1e-5f, 0, "ggml-vocab-llama-spm.gguf" },
    { "qwen2-tiny",     "qwen2",  256,  2,   4,  2,   512, 50257,  4096, 1000000.0f, 1e-6f, 1, "ggml-vocab-gpt-2.gguf" },
    { "llama-160m",     "llama",  768, 12,  12, 12,  3072, 32000,  2048,  10000.0f, 1e-6f, 0, "ggml-vocab-llama-spm.gguf" },
    { "tinyllama-1.1b", "llama", 2048, 22,  32,  4,  5632, 32000,  2048,  10000.0f, 1e-5f, 0, "ggml-vocab-llama-spm.gguf" },
    { "llama2-7b",      "llama", 4096, 32,  32, 32, 11008, 32000,  4096,  10000.0f, 1e-5f, 0, "ggml-vocab-llama-spm.gguf" },
    /* 128256 rows: deepseek-llm's 102400-token BPE padded with 25856 merge-free [PAD] tokens */
    { "llama3-8b",      "llama", 4096, 32,  32,  8, 14336, 128256, 8192, 500000.0f, 1e-5f, 0, "ggml-vocab-deepseek-llm.gguf" },
    { "qwen2-0.5b",     "qwen2",  896, 24,  14,  2,  4864, 151936, 32768, 1000000.0f, 1e-6f, 1, "ggml-vocab-deepseek-llm.gguf" },
    /* name             arch        embd layers head kv  ff    vocab   ctx    rope base  eps  tied vocab file  head_dim experts used ff_exp ff_shexp */
    { "moe-nano",       "llama",     256,  2,   4,  2,   256,   512,   512,  10000.0f, 1e-5f, 0, "../models/stories260K.gguf", 0, 4, 2, 0, 0 },
    { "qwen2moe-nano",  "qwen2moe",  256,  2,   4,  2,   512,   512,   512, 1000000.0f, 1e-6f, 0, "../models/stories260K.gguf", 0, 4, 2, 256, 512 },
    { "qwen3-nano",     "qwen3",     256,  2,   4,  2,   512,   512,   512, 1000000.0f, 1e-6f, 1, "../models/stories260K.gguf", 128, 0, 0, 0, 0 },
    { "qwen3moe-nano",  "qwen3moe",  256,  2,   4,  2,   768,   512,   512, 1000000.0f, 1e-6f, 0, "../models/stories260K.gguf", 128, 8, 2, 256, 0 },
    { "mixtral-8x7b",   "llama",    4096, 32,  32,  8, 14336, 32000, 32768, 1000000.0f, 1e-5f, 0, "ggml-vocab-llama-spm.gguf", 0, 8, 2, 0, 0 },
    { "qwen3-30b-a3b",  "qwen3moe", 2048, 48,  32,  4,  6144, 151936, 40960, 1000000.0f, 1e-6f, 0, "ggml-vocab-deepseek-llm.gguf", 128, 128, 8, 768, 0 },
    /* name             arch        embd layers head kv  ff    vocab   ctx    rope base  eps  tied vocab file  head_dim experts used ff_exp ff_shexp window */
    { "gemma2-nano",    "gemma2",    256,  4,   4,  2,   512,   512,   512,  10000.0f, 1e-6f, 1, "../models/stories260K.gguf", 64, 0, 0, 0, 0, 6 },
    /* gemma2-nano with the attention scores capped at 2 (the default 50 barely bends this
     * model's small scores): the GPU test's check of the soft-capping */
    { "gemma2-cap-nano","gemma2",    256,  4,   4,  2,   512,   512,   512,  10000.0f, 1e-6f, 1, "../models/stories260K.gguf", 64, 0, 0, 0, 0, 6, NULL, 0, 0, NULL, 2.0f },
    { "gemma3-nano",    "gemma3",    256,  6,   4,  2,   512,   512,   512, 1000000.0f, 1e-6f, 1, "../models/stories260K.gguf", 64, 0, 0, 0, 0, 6 },
    { "gemma-3-4b",     "gemma3",   2560, 34,   8,  4, 10240, 262144, 131072, 1000000.0f, 1e-6f, 1, "ggml-vocab-llama-spm.gguf", 256, 0, 0, 0, 0, 1024 },
    /* name             arch        embd layers head kv  ff    vocab   ctx    rope base  eps  tied vocab file  head_dim experts used ff_exp ff_shexp window scaling factor orig_ctx */
    { "phi-nano",       "phi3",      256,  2,   4,  4,   512,   512,   512,  10000.0f, 1e-5f, 0, "../models/stories260K.gguf", 0, 0, 0, 0, 0, 0, NULL, 0, 32 },
    { "phi-3-mini",     "phi3",     3072, 32,  32, 32,  8192, 32064, 131072, 10000.0f, 1e-5f, 0, "ggml-vocab-phi-3.gguf", 0, 0, 0, 0, 0, 0, NULL, 0, 4096 },
    { "qwen3-yarn-nano","qwen3",     256,  2,   4,  2,   512,   512,   512, 1000000.0f, 1e-6f, 1, "../models/stories260K.gguf", 128, 0, 0, 0, 0, 0, "yarn", 4.0f, 32 },
    { "gpt-oss-nano",   "gpt-oss",   256,  2,   4,  2,   256,   512,   512, 150000.0f, 1e-5f, 0, "../models/stories260K.gguf", 64, 4, 2, 256, 0, 6, "yarn", 4.0f, 32 },
    /* gpt-oss-nano with gate/up expert biases of +-12, so that the clamped SwiGLU's limits
     * (gate <= 7, |up| <= 7) bind: the GPU test's check of the clamps */
    { "gpt-oss-clamp-nano", "gpt-oss", 256, 2, 4,  2,   256,   512,   512, 150000.0f, 1e-5f, 0, "../models/stories260K.gguf", 64, 4, 2, 256, 0, 6, "yarn", 4.0f, 32, NULL, 0, 12.0f },
    { "gpt-oss-20b",    "gpt-oss",  2880, 24,  64,  8,  2880, 201088, 131072, 150000.0f, 1e-5f, 0, "ggml-vocab-llama-spm.gguf", 64, 32, 4, 2880, 0, 128, "yarn", 32.0f, 4096 },
    /* name             arch        embd layers head kv  ff    vocab   ctx    rope base  eps  tied vocab file  head_dim experts used ff_exp ff_shexp window scaling factor orig_ctx mla */
    { "deepseek2-nano", "deepseek2", 256,  3,   4,  1,   512,   512,   512,  10000.0f, 1e-6f, 0, "../models/stories260K.gguf", 0, 8, 2, 128, 0, 0, NULL, 0, 0, &MLA_V2_NANO },
    { "deepseek3-nano", "deepseek2", 256,  3,   4,  1,   512,   512,   512,  10000.0f, 1e-6f, 0, "../models/stories260K.gguf", 0, 16, 4, 128, 0, 0, "yarn", 4.0f, 32, &MLA_V3_NANO },
    { "deepseek-v2-lite", "deepseek2", 2048, 27, 16, 1, 10944, 102400, 163840, 10000.0f, 1e-6f, 0, "ggml-vocab-deepseek-llm.gguf", 0, 64, 6, 1408, 0, 0, "yarn", 40.0f, 4096, &MLA_V2_LITE },
    { NULL, NULL, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, NULL, 0, 0, 0, 0, 0, 0, NULL, 0, 0, NULL },
};
#pragma GCC diagnostic pop

const struct sw_synth_preset *sw_synth_presets(void)
{
    return PRESETS;
}

const struct sw_synth_preset *sw_synth_preset_find(const char *name)
{
    for (const struct sw_synth_preset *p = PRESETS; name && p->name; p++)
        if (!strcmp(p->name, name)) return p;
    return NULL;
}

/* Weight types by name; Q4_K_M and Q5_K_M are llama.cpp's mixes (Q4_K or Q5_K, with Q6_K for
 * output.weight and for attn_v / ffn_down in the layers that matter most); Q3_K_M is Q3_K with
 * Q4_K attn_output and ffn_down / attn_v of Q5_K early, Q4_K after (build_plan). file_type: llama.cpp's
 * general.file_type numbering (informational). */
static const struct {
    const char *name;
    uint32_t type;
    uint32_t file_type;
} TYPES[] = {
    { "F32", SW_TYPE_F32, 0 },   { "F16", SW_TYPE_F16, 1 },   { "BF16", SW_TYPE_BF16, 32 },
    { "Q8_0", SW_TYPE_Q8_0, 7 }, { "Q4_0", SW_TYPE_Q4_0, 2 }, { "Q4_K", SW_TYPE_Q4_K, 14 },
    { "Q5_K", SW_TYPE_Q5_K, 16 }, { "Q6_K", SW_TYPE_Q6_K, 18 }, { "Q4_K_M", SW_TYPE_Q4_K, 15 },
    { "Q5_K_M", SW_TYPE_Q5_K, 17 }, { "Q3_K_M", SW_TYPE_Q3_K, 12 },
    { "Q4_1", SW_TYPE_Q4_1, 3 }, { "Q5_0", SW_TYPE_Q5_0, 8 }, { "Q5_1", SW_TYPE_Q5_1, 9 },
    { "Q2_K", SW_TYPE_Q2_K, 10 }, { "Q3_K", SW_TYPE_Q3_K, 12 }, { "IQ4_NL", SW_TYPE_IQ4_NL, 25 },
    { "IQ4_XS", SW_TYPE_IQ4_XS, 30 }, { "MXFP4", SW_TYPE_MXFP4, 38 },
    { "IQ2_XXS", SW_TYPE_IQ2_XXS, 19 }, { "IQ2_XS", SW_TYPE_IQ2_XS, 20 }, { "IQ2_S", SW_TYPE_IQ2_S, 28 },
    { "IQ3_XXS", SW_TYPE_IQ3_XXS, 23 }, { "IQ3_S", SW_TYPE_IQ3_S, 26 }, { "IQ1_S", SW_TYPE_IQ1_S, 24 },
    { "IQ1_M", SW_TYPE_IQ1_M, 31 },
    { "Q8_K", SW_TYPE_Q8_K, 7 }, /* no llama.cpp file type of its own: Q8_0's */
};

int sw_synth_type_valid(const char *type)
{
    for (size_t i = 0; type && i < SW_ARRAY_LEN(TYPES); i++)
        if (!strcmp(TYPES[i].name, type)) return 1;
    return 0;
}

/* ------------------------------------------------------------------ RNG */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t name_seed(uint64_t seed, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    uint64_t s = h ^ seed;
    return splitmix64(&s);
}

/* ------------------------------------------------------------------ tensors */

enum init { INIT_UNIFORM, INIT_ONES, INIT_POSITIVE /* 1 + std * uniform[0, 1): RoPE factors */ };

struct tdesc {
    char name[64];
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[3]; /* cols, rows, experts (1 unless n_dims is 3) */
    enum init init;
    float std;
};

struct plan {
    struct tdesc *t;
    size_t n, cap;
};

static int plan_add3(struct plan *p, const char *name, uint32_t type, uint32_t n_dims, int64_t cols,
                     int64_t rows, int64_t n_exp, enum init init, float std)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        struct tdesc *t = realloc(p->t, cap * sizeof *t);
        if (!t) return SW_ENOMEM;
        p->t = t;
        p->cap = cap;
    }
    struct tdesc *d = &p->t[p->n++];
    snprintf(d->name, sizeof d->name, "%s", name);
    /* K-quants need rows of 256: like llama.cpp, fall back when a row does not divide. */
    const struct sw_type_info *ti = sw_gguf_type_info(type);
    if (n_dims >= 2 && ti && cols % ti->block_size) type = SW_TYPE_Q8_0;
    if (n_dims >= 2 && cols % 32) type = SW_TYPE_F16;
    d->type = n_dims == 1 ? SW_TYPE_F32 : type;
    d->n_dims = n_dims;
    d->ne[0] = cols;
    d->ne[1] = rows;
    d->ne[2] = n_exp;
    d->init = init;
    d->std = std;
    return 0;
}

static int plan_add(struct plan *p, const char *name, uint32_t type, uint32_t n_dims, int64_t cols,
                    int64_t rows, enum init init, float std)
{
    return plan_add3(p, name, type, n_dims, cols, rows, 1, init, std);
}

/* The preset's features, from its architecture's row in the same table the stage loads
 * with (arch.c). */
static struct sw__hparams preset_features(const struct sw_synth_preset *ps)
{
    const struct sw__arch *a = sw__arch_find(ps->arch);
    struct sw__hparams hp = a ? a->base : (struct sw__hparams){ 0 };
    hp.moe = hp.moe || ps->n_expert > 0;
    hp.n_expert = ps->n_expert;
    hp.n_expert_used = ps->n_expert_used;
    hp.n_ff_exp = ps->n_ff_exp ? ps->n_ff_exp : ps->n_ff;
    hp.n_ff_shexp = hp.n_ff_shexp ? (ps->n_ff_shexp ? ps->n_ff_shexp : ps->n_ff) : 0;
    return hp;
}

/* llama.cpp's Q4_K_M and Q5_K_M give more bits to the first and last eighth of the layers
 * and to every third layer in between. */
static int more_bits(uint32_t l, uint32_t n)
{
    return l < n / 8 || l >= 7 * n / 8 || (l >= n / 8 && (l - n / 8) % 3 == 2);
}

static int build_plan(const struct sw_synth_preset *ps, uint32_t n_layers, const char *tname,
                      uint32_t base, struct plan *p)
{
    const int mix = !strcmp(tname, "Q4_K_M") || !strcmp(tname, "Q5_K_M");
    const int mix3 = !strcmp(tname, "Q3_K_M");
    /* Like llama.cpp's quantizer: the output matrix gets Q6_K in the 4/5-bit types. */
    const int q6_out = base == SW_TYPE_Q4_0 || base == SW_TYPE_Q4_1 || base == SW_TYPE_Q5_0 ||
                       base == SW_TYPE_Q5_1 || base == SW_TYPE_Q4_K || base == SW_TYPE_Q5_K ||
                       base == SW_TYPE_Q2_K || base == SW_TYPE_Q3_K || base == SW_TYPE_IQ4_NL ||
                       base == SW_TYPE_IQ4_XS;
    const struct sw__hparams hp = preset_features(ps);
    const int64_t E = ps->n_embd, hd = ps->head_dim ? ps->head_dim : ps->n_embd / ps->n_head,
                  qd = (int64_t)ps->n_head * hd,
                  kvd = (int64_t)ps->n_head_kv * hd, F = ps->n_ff, V = ps->n_vocab;
    /* Scales: inputs of every matrix have rms ~1 (RMSNorm), so std 1/sqrt(fan_in) keeps
     * outputs ~1. The blocks' output projections are damped (0.5) and the embedding has
     * std 0.5, so layers nudge the residual stream as in a trained model: undamped, a random
     * deep network is chaotic (float rounding decides the greedy tokens); damped harder,
     * the embedding dominates and greedy decoding falls into a 2-cycle. The output
     * projection is wider (3/sqrt(E)) so logits have a trained model's spread. */
    const float s_e = 1.0f / sqrtf((float)E), s_f = 0.5f / sqrtf((float)F), s_q = 0.5f / sqrtf((float)qd);
    const float s_out = 3.0f / sqrtf((float)E);
    int rc = 0;
    char name[64];
    rc |= plan_add(p, "token_embd.weight", base, 2, E, V, INIT_UNIFORM, ps->tied ? s_out : 0.5f);
    rc |= plan_add(p, "output_norm.weight", SW_TYPE_F32, 1, E, 1, INIT_ONES, 0);
    if (!ps->tied) rc |= plan_add(p, "output.weight", q6_out ? SW_TYPE_Q6_K : base, 2, E, V, INIT_UNIFORM, s_out);
    if (ps->n_ctx_orig && !strcmp(ps->arch, "phi3")) { /* longrope: factors >= 1 per frequency */
        rc |= plan_add(p, "rope_factors_long.weight", SW_TYPE_F32, 1, hd / 2, 1, INIT_POSITIVE, 8.0f);
        rc |= plan_add(p, "rope_factors_short.weight", SW_TYPE_F32, 1, hd / 2, 1, INIT_POSITIVE, 0.5f);
    }
    for (uint32_t l = 0; l < n_layers && !rc; l++) {
        uint32_t big = mix && more_bits(l, n_layers) ? SW_TYPE_Q6_K : base;
        /* llama.cpp's Q3_K_M: attn_v Q5_K in the first 2 layers, ffn_down Q5_K in the first
         * sixteenth, both Q4_K elsewhere; attn_output Q4_K */
        uint32_t big_v = big, out_t = base;
        if (mix3) {
            big = l < n_layers / 16 ? SW_TYPE_Q5_K : SW_TYPE_Q4_K;
            big_v = l < 2 ? SW_TYPE_Q5_K : SW_TYPE_Q4_K;
            out_t = SW_TYPE_Q4_K;
        }
#define N(s) (snprintf(name, sizeof name, "blk.%u." s, l), name)
        rc |= plan_add(p, N("attn_norm.weight"), SW_TYPE_F32, 1, E, 1, INIT_ONES, 0);
        const struct sw_synth_mla *ml = ps->mla;
        if (ml) { /* deepseek2: latent attention as llama.cpp's converter writes it */
            const int64_t H = ps->n_head, km = ml->qk_nope + ml->qk_rope, R = ml->kv_lora_rank;
            if (ml->q_lora_rank) {
                rc |= plan_add(p, N("attn_q_a.weight"), base, 2, E, ml->q_lora_rank, INIT_UNIFORM, s_e);
                rc |= plan_add(p, N("attn_q_a_norm.weight"), SW_TYPE_F32, 1, ml->q_lora_rank, 1, INIT_ONES, 0);
                rc |= plan_add(p, N("attn_q_b.weight"), base, 2, ml->q_lora_rank, H * km, INIT_UNIFORM,
                               1.0f / sqrtf((float)ml->q_lora_rank));
            } else {
                rc |= plan_add(p, N("attn_q.weight"), base, 2, E, H * km, INIT_UNIFORM, s_e);
            }
            rc |= plan_add(p, N("attn_kv_a_mqa.weight"), base, 2, E, R + ml->qk_rope, INIT_UNIFORM, s_e);
            rc |= plan_add(p, N("attn_kv_a_norm.weight"), SW_TYPE_F32, 1, R, 1, INIT_ONES, 0);
            rc |= plan_add3(p, N("attn_k_b.weight"), base, 3, ml->qk_nope, R, H, INIT_UNIFORM,
                            1.0f / sqrtf((float)ml->qk_nope));
            rc |= plan_add3(p, N("attn_v_b.weight"), big, 3, R, ml->v_head, H, INIT_UNIFORM, 1.0f / sqrtf((float)R));
            rc |= plan_add(p, N("attn_output.weight"), base, 2, H * ml->v_head, E, INIT_UNIFORM,
                           0.5f / sqrtf((float)(H * ml->v_head)));
            rc |= plan_add(p, N("ffn_norm.weight"), SW_TYPE_F32, 1, E, 1, INIT_ONES, 0);
            if (l < ml->n_dense_lead) {
                rc |= plan_add(p, N("ffn_gate.weight"), base, 2, E, F, INIT_UNIFORM, s_e);
                rc |= plan_add(p, N("ffn_up.weight"), base, 2, E, F, INIT_UNIFORM, s_e);
                rc |= plan_add(p, N("ffn_down.weight"), big, 2, F, E, INIT_UNIFORM, s_f);
                continue;
            }
            const int64_t X = hp.n_expert, FX = hp.n_ff_exp, FS = FX * ml->n_expert_shared;
            rc |= plan_add(p, N("ffn_gate_inp.weight"), SW_TYPE_F32, 2, E, X, INIT_UNIFORM, s_e);
            if (ml->gating == 2) rc |= plan_add(p, N("exp_probs_b.bias"), SW_TYPE_F32, 1, X, 1, INIT_UNIFORM, 0.5f);
            rc |= plan_add3(p, N("ffn_gate_exps.weight"), base, 3, E, FX, X, INIT_UNIFORM, s_e);
            rc |= plan_add3(p, N("ffn_up_exps.weight"), base, 3, E, FX, X, INIT_UNIFORM, s_e);
            rc |= plan_add3(p, N("ffn_down_exps.weight"), big, 3, FX, E, X, INIT_UNIFORM, 0.5f / sqrtf((float)FX));
            if (FS) {
                rc |= plan_add(p, N("ffn_gate_shexp.weight"), base, 2, E, FS, INIT_UNIFORM, s_e);
                rc |= plan_add(p, N("ffn_up_shexp.weight"), base, 2, E, FS, INIT_UNIFORM, s_e);
                rc |= plan_add(p, N("ffn_down_shexp.weight"), big, 2, FS, E, INIT_UNIFORM, 0.5f / sqrtf((float)FS));
            }
            continue;
        }
        if (hp.fused_qkv) {
            rc |= plan_add(p, N("attn_qkv.weight"), base, 2, E, qd + 2 * kvd, INIT_UNIFORM, s_e);
        } else {
            rc |= plan_add(p, N("attn_q.weight"), base, 2, E, qd, INIT_UNIFORM, s_e);
            rc |= plan_add(p, N("attn_k.weight"), base, 2, E, kvd, INIT_UNIFORM, s_e);
            rc |= plan_add(p, N("attn_v.weight"), big_v, 2, E, kvd, INIT_UNIFORM, s_e);
        }
        if (hp.qkv_bias || hp.attn_sinks) { /* gpt-oss has q/k/v and output biases too */
            rc |= plan_add(p, N("attn_q.bias"), SW_TYPE_F32, 1, qd, 1, INIT_UNIFORM, 0.02f);
            rc |= plan_add(p, N("attn_k.bias"), SW_TYPE_F32, 1, kvd, 1, INIT_UNIFORM, 0.02f);
            rc |= plan_add(p, N("attn_v.bias"), SW_TYPE_F32, 1, kvd, 1, INIT_UNIFORM, 0.02f);
        }
        if (hp.qk_norm) {
            rc |= plan_add(p, N("attn_q_norm.weight"), SW_TYPE_F32, 1, hd, 1, INIT_ONES, 0);
            rc |= plan_add(p, N("attn_k_norm.weight"), SW_TYPE_F32, 1, hd, 1, INIT_ONES, 0);
        }
        if (hp.post_norms) {
            rc |= plan_add(p, N("post_attention_norm.weight"), SW_TYPE_F32, 1, E, 1, INIT_ONES, 0);
            rc |= plan_add(p, N("post_ffw_norm.weight"), SW_TYPE_F32, 1, E, 1, INIT_ONES, 0);
        }
        rc |= plan_add(p, N("attn_output.weight"), out_t, 2, qd, E, INIT_UNIFORM, s_q);
        if (hp.attn_sinks) {
            rc |= plan_add(p, N("attn_output.bias"), SW_TYPE_F32, 1, E, 1, INIT_UNIFORM, 0.02f);
            rc |= plan_add(p, N("attn_sinks.weight"), SW_TYPE_F32, 1, ps->n_head, 1, INIT_UNIFORM, 1.0f);
        }
        rc |= plan_add(p, hp.ffn_norm_post_attn ? N("post_attention_norm.weight") : N("ffn_norm.weight"), SW_TYPE_F32,
                       1, E, 1, INIT_ONES, 0);
        if (!hp.moe && hp.fused_gate_up) {
            rc |= plan_add(p, N("ffn_up.weight"), base, 2, E, 2 * F, INIT_UNIFORM, s_e);
            rc |= plan_add(p, N("ffn_down.weight"), big, 2, F, E, INIT_UNIFORM, s_f);
            continue;
        }
        if (!hp.moe) {
            rc |= plan_add(p, N("ffn_gate.weight"), base, 2, E, F, INIT_UNIFORM, s_e);
            rc |= plan_add(p, N("ffn_up.weight"), base, 2, E, F, INIT_UNIFORM, s_e);
            rc |= plan_add(p, N("ffn_down.weight"), big, 2, F, E, INIT_UNIFORM, s_f);
            continue;
        }
        /* Experts as llama.cpp stores them: one 3-D stack per projection; the router
         * stays F32 (llama.cpp's quantizer leaves ffn_gate_inp alone). */
        const int64_t X = hp.n_expert, FX = hp.n_ff_exp;
        const float s_fx = 0.5f / sqrtf((float)FX);
        rc |= plan_add(p, N("ffn_gate_inp.weight"), SW_TYPE_F32, 2, E, X, INIT_UNIFORM, s_e);
        rc |= plan_add3(p, N("ffn_gate_exps.weight"), base, 3, E, FX, X, INIT_UNIFORM, s_e);
        rc |= plan_add3(p, N("ffn_up_exps.weight"), base, 3, E, FX, X, INIT_UNIFORM, s_e);
        rc |= plan_add3(p, N("ffn_down_exps.weight"), big, 3, FX, E, X, INIT_UNIFORM, s_fx);
        if (hp.expert_bias) {
            rc |= plan_add(p, N("ffn_gate_inp.bias"), SW_TYPE_F32, 1, X, 1, INIT_UNIFORM, 0.1f);
            const float s_xb = ps->exp_bias > 0 ? ps->exp_bias : 0.02f;
            rc |= plan_add(p, N("ffn_gate_exps.bias"), SW_TYPE_F32, 2, FX, X, INIT_UNIFORM, s_xb);
            rc |= plan_add(p, N("ffn_up_exps.bias"), SW_TYPE_F32, 2, FX, X, INIT_UNIFORM, s_xb);
            rc |= plan_add(p, N("ffn_down_exps.bias"), SW_TYPE_F32, 2, E, X, INIT_UNIFORM, 0.02f);
        }
        if (hp.n_ff_shexp) {
            const int64_t FS = hp.n_ff_shexp;
            const float s_fs = 0.5f / sqrtf((float)FS);
            rc |= plan_add(p, N("ffn_gate_inp_shexp.weight"), SW_TYPE_F32, 1, E, 1, INIT_UNIFORM, s_e);
            rc |= plan_add(p, N("ffn_gate_shexp.weight"), base, 2, E, FS, INIT_UNIFORM, s_e);
            rc |= plan_add(p, N("ffn_up_shexp.weight"), base, 2, E, FS, INIT_UNIFORM, s_e);
            rc |= plan_add(p, N("ffn_down_shexp.weight"), big, 2, FS, E, INIT_UNIFORM, s_fs);
        }
#undef N
    }
    return rc ? SW_ENOMEM : 0;
}

/* ------------------------------------------------------------------ generation */

/* Rows [row0, row0 + n_rows) of one tensor, generated and quantized by the pool. */
struct gen_task {
    const struct tdesc *d;
    uint64_t tseed;
    int64_t row0, n_rows;
    size_t row_bytes;
    uint8_t *dst;
    float *tmp; /* n_threads x cols */
    int rc;
};

static void gen_run(void *arg, int ith, int nth)
{
    struct gen_task *g = arg;
    const struct tdesc *d = g->d;
    const int64_t cols = d->ne[0];
    float *row = g->tmp + (size_t)ith * cols;
    /* uniform on [-a, a] has standard deviation a / sqrt(3) */
    const float a = d->std * 1.7320508f;
    int64_t b, e;
    sw_k_split(g->n_rows, 1, ith, nth, &b, &e);
    for (int64_t r = b; r < e; r++) {
        uint64_t st = g->tseed ^ ((uint64_t)(g->row0 + r) * 0xD1B54A32D192ED03ull);
        for (int64_t c = 0; c < cols; c++) {
            if (d->init == INIT_ONES) {
                row[c] = 1.0f;
                continue;
            }
            uint64_t z = splitmix64(&st);
            float u = (float)(z >> 40) * (1.0f / 16777216.0f); /* [0, 1) */
            row[c] = d->init == INIT_POSITIVE ? 1.0f + d->std * u : (2.0f * u - 1.0f) * a;
        }
        int rc = sw_k_quantize_row(d->type, row, g->dst + (size_t)r * g->row_bytes, cols);
        if (rc) g->rc = rc;
    }
}

/* ------------------------------------------------------------------ vocabulary */

/* Copies tokenizer.* from the vocab file; pads tokens/scores/types up to n_vocab. */
static int copy_vocab(struct sw_gguf_writer *w, const struct sw_gguf *vg, uint32_t n_vocab,
                      const char *vpath, char *err, size_t err_len)
{
    struct sw_gguf_arr toks;
    if (sw_gguf_get_arr(vg, "tokenizer.ggml.tokens", &toks) || toks.elem_type != SW_GGUF_STRING)
        return sw_errf(err, err_len, SW_ECORRUPT, "%s: no tokenizer.ggml.tokens array", vpath);
    if (toks.n > n_vocab)
        return sw_errf(err, err_len, SW_EINVAL, "%s has %llu tokens, more than the preset's vocabulary of %u",
                    vpath, (unsigned long long)toks.n, n_vocab);
    const int pad = toks.n < n_vocab;
    int rc = 0;
    for (uint64_t i = 0; i < sw_gguf_n_kv(vg) && !rc; i++) {
        const struct sw_gguf_kv *kv = sw_gguf_kv_at(vg, i);
        if (kv->key.len < 10 || memcmp(kv->key.ptr, "tokenizer.", 10)) continue;
        if (pad && kv->type == SW_GGUF_ARRAY && kv->v.arr.n == toks.n) continue; /* rebuilt below */
        rc = sw_gguf_writer_add_kv(w, kv);
    }
    if (rc || !pad) return rc;

    /* Padding: "[PAD<i>]" tokens of type UNUSED with score 0. */
    char **strs = calloc(n_vocab, sizeof *strs);
    float *scores = calloc(n_vocab, sizeof *scores);
    int32_t *types = calloc(n_vocab, sizeof *types);
    struct sw_gguf_arr sc, ty;
    int have_sc = sw_gguf_get_arr(vg, "tokenizer.ggml.scores", &sc) == 0 && sc.n == toks.n;
    int have_ty = sw_gguf_get_arr(vg, "tokenizer.ggml.token_type", &ty) == 0 && ty.n == toks.n;
    rc = strs && scores && types ? 0 : SW_ENOMEM;
    for (uint32_t i = 0; i < n_vocab && !rc; i++) {
        if (i < toks.n) {
            struct sw_gguf_str s;
            if ((rc = sw_gguf_arr_str(&toks, i, &s))) break;
            strs[i] = strndup(s.ptr, (size_t)s.len);
            float f = 0;
            int64_t t = SW_TOKTYPE_NORMAL;
            if (have_sc) sw_gguf_arr_f32(&sc, i, &f);
            if (have_ty) sw_gguf_arr_i64(&ty, i, &t);
            scores[i] = f;
            types[i] = (int32_t)t;
        } else {
            char b[32];
            snprintf(b, sizeof b, "[PAD%u]", i);
            strs[i] = strdup(b);
            types[i] = SW_TOKTYPE_UNUSED;
        }
        if (!strs[i]) rc = SW_ENOMEM;
    }
    if (!rc) rc = sw_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)strs, n_vocab);
    if (!rc && have_sc) rc = sw_gguf_writer_set_arr(w, "tokenizer.ggml.scores", SW_GGUF_F32, scores, n_vocab);
    if (!rc) rc = sw_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", SW_GGUF_I32, types, n_vocab);
    for (uint32_t i = 0; strs && i < n_vocab; i++) free(strs[i]);
    free(strs);
    free(scores);
    free(types);
    return rc;
}

/* ------------------------------------------------------------------ write */

int sw_synth_write(const char *path, const struct sw_synth_opts *o, char *err, size_t err_len)
{
    if (err && err_len) err[0] = 0;
    const struct sw_synth_preset *ps = sw_synth_preset_find(o->preset);
    if (!ps) return sw_errf(err, err_len, SW_EINVAL, "unknown preset '%s'", o->preset ? o->preset : "");
    uint32_t base = 0, file_type = 0;
    int found = 0;
    for (size_t i = 0; o->type && i < SW_ARRAY_LEN(TYPES); i++)
        if (!strcmp(TYPES[i].name, o->type)) {
            base = TYPES[i].type;
            file_type = TYPES[i].file_type;
            found = 1;
        }
    if (!found) return sw_errf(err, err_len, SW_EINVAL, "unknown weight type '%s'", o->type ? o->type : "");
    if (!o->vocab_path) return sw_errf(err, err_len, SW_EINVAL, "a vocabulary GGUF is required");
    const uint32_t n_layers = o->n_layers ? o->n_layers : ps->n_layers;
    if (n_layers > 1024) return sw_errf(err, err_len, SW_EINVAL, "too many layers (%u)", n_layers);

    struct sw_gguf *vg = NULL;
    int rc = sw_gguf_open(o->vocab_path, &vg, err, err_len);
    if (rc) return rc;
    struct plan plan = { 0 };
    struct sw_gguf_writer *w = NULL;
    struct sw_k_pool *pool = NULL;
    float *tmp = NULL;
    uint8_t *buf = NULL;
    if ((rc = build_plan(ps, n_layers, o->type, base, &plan))) goto out;
    if ((rc = sw_gguf_writer_new(path, 32, &w))) {
        sw_errf(err, err_len, rc, "%s: cannot create: %s", path, sw_strerror(rc));
        goto out;
    }

    /* Metadata: GGUF spec "General" and "LLM" keys. */
    char key[128], name[96];
    const char *a = ps->arch;
    snprintf(name, sizeof name, "synth %s %s seed %llu", ps->name, o->type, (unsigned long long)o->seed);
    rc |= sw_gguf_writer_set_str(w, "general.architecture", a);
    rc |= sw_gguf_writer_set_str(w, "general.name", name);
    rc |= sw_gguf_writer_set_u32(w, "general.file_type", file_type);
    rc |= sw_gguf_writer_set_u32(w, "general.quantization_version", 2);
#define AK(s) (snprintf(key, sizeof key, "%s.%s", a, s), key)
    rc |= sw_gguf_writer_set_u32(w, AK("context_length"), ps->n_ctx);
    rc |= sw_gguf_writer_set_u32(w, AK("embedding_length"), ps->n_embd);
    rc |= sw_gguf_writer_set_u32(w, AK("block_count"), n_layers);
    rc |= sw_gguf_writer_set_u32(w, AK("feed_forward_length"), ps->n_ff);
    rc |= sw_gguf_writer_set_u32(w, AK("attention.head_count"), ps->n_head);
    rc |= sw_gguf_writer_set_u32(w, AK("attention.head_count_kv"), ps->n_head_kv);
    rc |= sw_gguf_writer_set_f32(w, AK("attention.layer_norm_rms_epsilon"), ps->rms_eps);
    rc |= sw_gguf_writer_set_f32(w, AK("rope.freq_base"), ps->rope_freq_base);
    const uint32_t hd = ps->head_dim ? ps->head_dim : ps->n_embd / ps->n_head;
    const struct sw_synth_mla *ml = ps->mla;
    rc |= sw_gguf_writer_set_u32(w, AK("rope.dimension_count"), ml ? ml->qk_rope : hd);
    if (ml) { /* as llama.cpp's DeepseekV2Model converter writes them */
        /* written also when 0 (plain attn_q): llama.cpp requires the key unless the layer
         * count is a known lite model's */
        rc |= sw_gguf_writer_set_u32(w, AK("attention.q_lora_rank"), ml->q_lora_rank);
        rc |= sw_gguf_writer_set_u32(w, AK("attention.kv_lora_rank"), ml->kv_lora_rank);
        rc |= sw_gguf_writer_set_u32(w, AK("attention.key_length"), ml->kv_lora_rank + ml->qk_rope);
        rc |= sw_gguf_writer_set_u32(w, AK("attention.value_length"), ml->kv_lora_rank);
        rc |= sw_gguf_writer_set_u32(w, AK("attention.key_length_mla"), ml->qk_nope + ml->qk_rope);
        rc |= sw_gguf_writer_set_u32(w, AK("attention.value_length_mla"), ml->v_head);
        rc |= sw_gguf_writer_set_u32(w, AK("leading_dense_block_count"), ml->n_dense_lead);
        rc |= sw_gguf_writer_set_u32(w, AK("expert_shared_count"), ml->n_expert_shared);
        rc |= sw_gguf_writer_set_f32(w, AK("expert_weights_scale"), ml->weights_scale);
        if (ml->weights_norm) rc |= sw_gguf_writer_set_bool(w, AK("expert_weights_norm"), 1);
        rc |= sw_gguf_writer_set_u32(w, AK("expert_gating_func"), ml->gating);
        if (ml->n_group) {
            rc |= sw_gguf_writer_set_u32(w, AK("expert_group_count"), ml->n_group);
            rc |= sw_gguf_writer_set_u32(w, AK("expert_group_used_count"), ml->n_group_used);
        }
        if (ml->yarn_log_mul != 0)
            rc |= sw_gguf_writer_set_f32(w, AK("rope.scaling.yarn_log_multiplier"), ml->yarn_log_mul);
    } else if (ps->head_dim) {
        rc |= sw_gguf_writer_set_u32(w, AK("attention.key_length"), hd);
        rc |= sw_gguf_writer_set_u32(w, AK("attention.value_length"), hd);
    }
    const struct sw__hparams hp = preset_features(ps);
    if (ps->n_swa) rc |= sw_gguf_writer_set_u32(w, AK("attention.sliding_window"), ps->n_swa);
    if (ps->attn_softcap > 0) rc |= sw_gguf_writer_set_f32(w, AK("attn_logit_softcapping"), ps->attn_softcap);
    if (ps->rope_scaling) {
        rc |= sw_gguf_writer_set_str(w, AK("rope.scaling.type"), ps->rope_scaling);
        rc |= sw_gguf_writer_set_f32(w, AK("rope.scaling.factor"), ps->rope_factor);
    }
    if (ps->n_ctx_orig) {
        rc |= sw_gguf_writer_set_u32(w, AK("rope.scaling.original_context_length"), ps->n_ctx_orig);
        if (!strcmp(a, "phi3")) /* as llama.cpp's converter: sqrt(1 + ln(scale) / ln(original)) */
            rc |= sw_gguf_writer_set_f32(w, AK("rope.scaling.attn_factor"),
                                         sqrtf(1.0f + logf((float)ps->n_ctx / ps->n_ctx_orig) / logf((float)ps->n_ctx_orig)));
    }
    if (hp.moe) { /* llama.cpp's MoE keys */
        rc |= sw_gguf_writer_set_u32(w, AK("expert_count"), hp.n_expert);
        rc |= sw_gguf_writer_set_u32(w, AK("expert_used_count"), hp.n_expert_used);
        if (ps->n_ff_exp) rc |= sw_gguf_writer_set_u32(w, AK("expert_feed_forward_length"), ps->n_ff_exp);
        if (hp.n_ff_shexp)
            rc |= sw_gguf_writer_set_u32(w, AK("expert_shared_feed_forward_length"), hp.n_ff_shexp);
    }
    rc |= sw_gguf_writer_set_u32(w, AK("vocab_size"), ps->n_vocab);
#undef AK
    rc |= sw_gguf_writer_set_str(w, "shardswarm.synth.preset", ps->name);
    rc |= sw_gguf_writer_set_u64(w, "shardswarm.synth.seed", o->seed);
    if (rc) {
        rc = rc < 0 ? SW_ENOMEM : rc;
        sw_errf(err, err_len, rc, "cannot build the metadata");
        goto out;
    }
    if ((rc = copy_vocab(w, vg, ps->n_vocab, o->vocab_path, err, err_len))) {
        if (!err || !err[0]) sw_errf(err, err_len, rc, "cannot copy the vocabulary: %s", sw_strerror(rc));
        goto out;
    }

    uint64_t total = 0, done = 0;
    int64_t max_cols = 0;
    for (size_t i = 0; i < plan.n; i++) {
        const struct tdesc *d = &plan.t[i];
        if ((rc = sw_gguf_writer_add_tensor(w, d->name, d->type, d->n_dims, d->ne))) {
            sw_errf(err, err_len, rc, "cannot add tensor %s: %s", d->name, sw_strerror(rc));
            goto out;
        }
        total += sw_k_row_bytes(d->type, d->ne[0]) * (uint64_t)(d->n_dims >= 2 ? d->ne[1] * d->ne[2] : 1);
        if (d->ne[0] > max_cols) max_cols = d->ne[0];
    }
    if ((rc = sw_gguf_writer_write_header(w))) {
        sw_errf(err, err_len, rc, "%s: cannot write the header: %s", path, sw_strerror(rc));
        goto out;
    }

    int nt = o->n_threads ? (int)o->n_threads : sw_sys_ncpu();
    if (nt < 1) nt = 1;
    if ((rc = sw_k_pool_new(nt, &pool))) goto out;
    const size_t chunk_bytes = 8u << 20;
    tmp = malloc((size_t)nt * max_cols * sizeof *tmp);
    buf = malloc(chunk_bytes + (size_t)max_cols * 4);
    if (!tmp || !buf) {
        rc = sw_errf(err, err_len, SW_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < plan.n; i++) {
        const struct tdesc *d = &plan.t[i];
        const int64_t rows = d->n_dims >= 2 ? d->ne[1] * d->ne[2] : 1;
        const size_t rb = sw_k_row_bytes(d->type, d->ne[0]);
        const int64_t per = SW_MAX((int64_t)1, (int64_t)(chunk_bytes / rb));
        struct gen_task g = { d, name_seed(o->seed, d->name), 0, 0, rb, buf, tmp, 0 };
        for (int64_t r = 0; r < rows; r += per) {
            g.row0 = r;
            g.n_rows = SW_MIN(per, rows - r);
            sw_k_pool_run(pool, gen_run, &g);
            if (g.rc) {
                rc = sw_errf(err, err_len, g.rc, "cannot quantize %s to %s: %s", d->name,
                          sw_gguf_type_info(d->type)->name, sw_strerror(g.rc));
                goto out;
            }
            if ((rc = sw_gguf_writer_write_data(w, buf, (uint64_t)g.n_rows * rb))) {
                sw_errf(err, err_len, rc, "%s: write failed: %s", path, sw_strerror(rc));
                goto out;
            }
            done += (uint64_t)g.n_rows * rb;
            if (o->progress) o->progress(o->progress_ud, done, total);
        }
    }
    rc = sw_gguf_writer_finish(w);
    w = NULL; /* finish frees */
    if (rc) sw_errf(err, err_len, rc, "%s: cannot finish the file: %s", path, sw_strerror(rc));
out:
    sw_gguf_writer_free(w);
    sw_k_pool_free(pool);
    free(tmp);
    free(buf);
    free(plan.t);
    sw_gguf_close(vg);
    return rc;
}
