/* arch.c — the architectures this stage computes, as data: one row each, with the features
 * it always has, a reader of its GGUF keys (names as llama.cpp's converters write them) and
 * a binder of one layer's tensors. The block itself is a fixed recipe in stage.c that reads
 * these fields; synth.c writes models from the same rows.
 * Not for: generic tensor binding (model.c) or computing (stage.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/stage_impl.h"

/* ------------------------------------------------------------------ common keys */

/* GGUF spec, "LLM" keys: <arch>.context_length, .embedding_length, .block_count,
 * .feed_forward_length, .attention.head_count(_kv), .attention.key_length/value_length,
 * .attention.layer_norm_rms_epsilon, .rope.dimension_count, .rope.freq_base,
 * .rope.scaling.type/.factor (and the older .rope.scale_linear). ff_required: a dense
 * architecture needs feed_forward_length; an MoE one may omit it. */
static int common_hparams(struct sw__loader *L, int ff_required, const struct sw_stage_opts *o)
{
    struct sw_stage_info *in = &L->m->info;
    int rc;
    if ((rc = sw__get_u32(L, "block_count", &in->n_layers, 1, 0))) return rc;
    if ((rc = sw__get_u32(L, "embedding_length", &in->n_embd, 1, 0))) return rc;
    if ((rc = sw__get_u32(L, "feed_forward_length", &in->n_ff, ff_required, 0))) return rc;
    if ((rc = sw__get_u32(L, "attention.head_count", &in->n_head, 1, 0))) return rc;
    if ((rc = sw__get_u32(L, "attention.head_count_kv", &in->n_head_kv, 0, in->n_head))) return rc;
    if ((rc = sw__get_u32(L, "context_length", &in->n_ctx_train, 1, 0))) return rc;
    if (in->n_layers == 0 || in->n_layers > 4096 || in->n_embd == 0 || in->n_embd > 65536 ||
        (ff_required && in->n_ff == 0) || in->n_ff > 1u << 20 || in->n_head == 0 || in->n_head > 1024 ||
        in->n_head_kv == 0 || in->n_head % in->n_head_kv || in->n_ctx_train == 0 ||
        in->n_ctx_train > (1u << 24))
        return sw_errf(L->err, L->err_len, SW_ECORRUPT,
                    "%s: implausible hyper-parameters (layers %u, embd %u, ff %u, heads %u/%u, ctx %u)",
                    L->path, in->n_layers, in->n_embd, in->n_ff, in->n_head, in->n_head_kv,
                    in->n_ctx_train);
    /* The head size is attention.key_length where given (qwen3: 128 with n_embd/n_head 64). */
    uint32_t key_len = 0, val_len = 0;
    if ((rc = sw__get_u32(L, "attention.key_length", &key_len, 0, in->n_embd / in->n_head))) return rc;
    if ((rc = sw__get_u32(L, "attention.value_length", &val_len, 0, key_len))) return rc;
    if ((key_len != val_len && !L->m->hp.mla) || key_len == 0 || key_len % 2 || key_len > 1024)
        return sw_errf(L->err, L->err_len, SW_EUNSUPPORTED,
                    "%s: head size %s.attention.key_length %u / value_length %u is not supported "
                    "(equal, even, <= 1024)", L->path, in->arch, key_len, val_len);
    in->head_dim = key_len;
    if ((rc = sw__get_u32(L, "rope.dimension_count", &in->n_rot, 0, in->head_dim))) return rc;
    if (in->n_rot == 0 || in->n_rot > in->head_dim || in->n_rot % 2)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: %s.rope.dimension_count %u is invalid",
                    L->path, in->arch, in->n_rot);
    if ((rc = sw__get_f32(L, "attention.layer_norm_rms_epsilon", &in->rms_eps, 1e-5f))) return rc;
    if ((rc = sw__get_f32(L, "rope.freq_base", &in->rope_freq_base, 10000.0f))) return rc;
    if (!(in->rms_eps > 0) || !(in->rope_freq_base > 0))
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: bad rms epsilon or rope.freq_base", L->path);

    /* RoPE frequency scaling (llama.cpp's names): "linear" divides positions by the factor;
     * "yarn" mixes that with the unscaled frequencies by a ramp and scales cos/sin;
     * "longrope" (phi3) takes per-frequency factors (rope_factors_long/short) and
     * rope.scaling.attn_factor; "none" scales nothing. Any other type is refused. */
    float factor = 0;
    char key[96], stype[32] = "";
    snprintf(key, sizeof key, "%s.rope.scaling.type", in->arch);
    sw_gguf_get_cstr(L->g, key, stype, sizeof stype);
    if ((rc = sw__get_f32(L, "rope.scaling.factor", &factor, 0))) return rc;
    if (factor == 0 && (rc = sw__get_f32(L, "rope.scale_linear", &factor, 0))) return rc;
    if (stype[0] && strcmp(stype, "linear") && strcmp(stype, "none") && strcmp(stype, "yarn") &&
        strcmp(stype, "longrope"))
        return sw_errf(L->err, L->err_len, SW_EUNSUPPORTED,
                    "%s: %s = '%s' is not supported (linear, yarn, longrope and none are)", L->path, key, stype);
    if (!(factor >= 0) || !isfinite(factor))
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: %s.rope.scaling.factor %g is invalid", L->path,
                       in->arch, factor);
    in->rope_freq_scale = 1.0f;
    if (strcmp(stype, "none") && factor > 0) in->rope_freq_scale = 1.0f / factor;
    struct sw__hparams *hp = &L->m->hp;
    float attn_factor = 1.0f, log_mul = 0;
    if ((rc = sw__get_u32(L, "rope.scaling.original_context_length", &hp->rope_n_ctx_orig, 0, in->n_ctx_train)))
        return rc;
    if ((rc = sw__get_f32(L, "rope.scaling.attn_factor", &attn_factor, 1.0f))) return rc;
    if ((rc = sw__get_f32(L, "rope.scaling.yarn_beta_fast", &hp->rope_beta_fast, 32.0f))) return rc;
    if ((rc = sw__get_f32(L, "rope.scaling.yarn_beta_slow", &hp->rope_beta_slow, 1.0f))) return rc;
    if ((rc = sw__get_f32(L, "rope.scaling.yarn_log_multiplier", &log_mul, 0))) return rc;
    if (hp->rope_n_ctx_orig == 0 || !(attn_factor > 0) || !isfinite(attn_factor) || !isfinite(log_mul) ||
        !(hp->rope_beta_fast > 0) || !(hp->rope_beta_slow > 0))
        return sw_errf(L->err, L->err_len, SW_ECORRUPT,
                       "%s: bad %s.rope.scaling values (original_context_length %u, attn_factor %g)", L->path,
                       in->arch, hp->rope_n_ctx_orig, attn_factor);
    hp->rope_mscale = attn_factor;
    if (!strcmp(stype, "yarn") && in->rope_freq_scale != 1.0f) {
        /* llama.cpp (llama_context + ggml's rope_yarn): the magnitude 1 + 0.1 ln(factor),
         * or with a log multiplier m the ratio mscale(1)/mscale(m) times that. */
        hp->rope_ext = 1.0f;
        const float f = 1.0f / in->rope_freq_scale, g = 1.0f + 0.1f * logf(f);
        if (log_mul != 0) hp->rope_mscale *= g / (1.0f + 0.1f * log_mul * logf(f));
        else hp->rope_mscale *= g;
    }

    in->n_ctx = in->n_ctx_train;
    if (o->n_ctx && o->n_ctx < in->n_ctx) in->n_ctx = o->n_ctx;
    return 0;
}

/* MoE keys: <arch>.expert_count, .expert_used_count, .expert_feed_forward_length,
 * .expert_shared_feed_forward_length, .expert_weights_scale. required: the architecture is
 * MoE by name (qwen2moe, qwen3moe); else (llama) experts are there when expert_count > 0. */
static int moe_hparams(struct sw__loader *L, struct sw__hparams *hp, int required)
{
    const struct sw_stage_info *in = &L->m->info;
    int rc;
    if ((rc = sw__get_u32(L, "expert_count", &hp->n_expert, required, 0))) return rc;
    if (!required && hp->n_expert == 0) return 0;
    hp->moe = 1;
    if ((rc = sw__get_u32(L, "expert_used_count", &hp->n_expert_used, 1, 0))) return rc;
    if (hp->n_expert < 1 || hp->n_expert > 4096)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: %s.expert_count %u is not in 1..4096",
                       L->path, in->arch, hp->n_expert);
    if (hp->n_expert_used < 1 || hp->n_expert_used > hp->n_expert)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT,
                       "%s: %s.expert_used_count %u is not in 1..expert_count (%u)", L->path, in->arch,
                       hp->n_expert_used, hp->n_expert);
    /* llama.cpp: the expert width defaults to feed_forward_length / expert_used_count
     * (Mixtral's llama rows use feed_forward_length itself). */
    uint32_t dflt = hp->n_ff_exp ? hp->n_ff_exp : in->n_ff / hp->n_expert_used;
    if ((rc = sw__get_u32(L, "expert_feed_forward_length", &hp->n_ff_exp, 0, dflt))) return rc;
    if (hp->n_ff_exp == 0 || hp->n_ff_exp > 1u << 20)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT,
                       "%s: expert feed-forward length %u is implausible (%s.expert_feed_forward_length)",
                       L->path, hp->n_ff_exp, in->arch);
    if (hp->n_ff_shexp) { /* the row has a shared expert: its width, default feed_forward_length */
        if ((rc = sw__get_u32(L, "expert_shared_feed_forward_length", &hp->n_ff_shexp, 0, in->n_ff))) return rc;
        if (hp->n_ff_shexp == 0 || hp->n_ff_shexp > 1u << 20)
            return sw_errf(L->err, L->err_len, SW_ECORRUPT,
                           "%s: %s.expert_shared_feed_forward_length %u is implausible", L->path,
                           in->arch, hp->n_ff_shexp);
    }
    if ((rc = sw__get_f32(L, "expert_weights_scale", &hp->expert_weights_scale, 0))) return rc;
    if (!isfinite(hp->expert_weights_scale) || hp->expert_weights_scale < 0)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: %s.expert_weights_scale %g is invalid",
                       L->path, in->arch, hp->expert_weights_scale);
    /* Gating other than softmax (DeepSeek V3's sigmoid, ...) changes the router's math. */
    uint32_t gating = 0;
    if ((rc = sw__get_u32(L, "expert_gating_func", &gating, 0, 1))) return rc;
    if (gating == 2 && hp->mla) hp->gating = SW__GATING_SIGMOID; /* DeepSeek V3 */
    else if (gating != 1 && !(gating == 3 && hp->gating == SW__GATING_SOFTMAX_WEIGHT)) /* llama.cpp: 1 softmax, 2 sigmoid, 3 softmax-weight */
        return sw_errf(L->err, L->err_len, SW_EUNSUPPORTED,
                       "%s: %s.expert_gating_func %u is not supported (1, softmax, is; deepseek2 also 2, "
                       "sigmoid)", L->path, in->arch, gating);
    return 0;
}

/* ------------------------------------------------------------------ rows */

static int hp_llama(struct sw__loader *L, struct sw__hparams *hp)
{
    /* Mixtral is the llama architecture with llama.expert_count > 0; its experts are as
     * wide as feed_forward_length, and the top-k weights are renormalised. */
    hp->n_ff_exp = L->m->info.n_ff;
    return moe_hparams(L, hp, 0);
}

static int swa_pattern(struct sw__loader *L, uint32_t dflt);

/* gpt-oss: MoE in every layer (expert_feed_forward_length), router and expert biases,
 * chosen by raw router logits with softmax over the chosen, clamped SwiGLU, attention
 * sinks and an output bias, every other layer a sliding window (attention.sliding_window,
 * required), its FFN input norm named post_attention_norm. */
static int hp_gpt_oss(struct sw__loader *L, struct sw__hparams *hp)
{
    const struct sw_stage_info *in = &L->m->info;
    int rc;
    if ((rc = moe_hparams(L, hp, 1))) return rc;
    if ((rc = sw__get_u32(L, "attention.sliding_window", &hp->n_swa, 1, 0))) return rc;
    if ((rc = sw__get_f32(L, "rope.freq_base_swa", &hp->rope_base_swa, in->rope_freq_base))) return rc;
    hp->rope_scale_swa = in->rope_freq_scale;
    if (!(hp->rope_base_swa > 0))
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: bad %s.rope.freq_base_swa", L->path, in->arch);
    return hp->n_swa ? swa_pattern(L, 2) : 0;
}

/* phi3: fused q|k|v and gate|up matrices, longrope factors; its sliding_window key is
 * ignored as llama.cpp does (its converters do not describe the pattern). */
static int hp_phi3(struct sw__loader *L, struct sw__hparams *hp)
{
    (void)L;
    hp->n_swa = 0;
    return 0;
}

static int hp_plain(struct sw__loader *L, struct sw__hparams *hp)
{
    (void)L;
    (void)hp;
    return 0;
}

static int hp_moe(struct sw__loader *L, struct sw__hparams *hp)
{
    return moe_hparams(L, hp, 1);
}

/* deepseek2 (DeepSeek V2, V2-Lite, V3), keys as llama.cpp's converter writes them: the
 * attention as MQA over the latent (head_count_kv 1, key_length kv_lora_rank + n_rot,
 * value_length kv_lora_rank), the per-head sizes in key_length_mla / value_length_mla,
 * attention.q_lora_rank (absent: plain attn_q), attention.kv_lora_rank,
 * leading_dense_block_count dense layers first, then experts with expert_shared_count
 * shared ones, softmax (V2, the default) or sigmoid gating (V3, with exp_probs_b),
 * expert_group_count / expert_group_used_count, expert_weights_norm / _scale, and YaRN
 * whose rope.scaling.yarn_log_multiplier (0.1 x mscale_all_dim) scales the attention. */
static int hp_deepseek2(struct sw__loader *L, struct sw__hparams *hp)
{
    struct sw_stage_info *in = &L->m->info;
    const char *P = L->path, *A = in->arch;
    int rc;
    uint32_t k_mla = 0, v_mla = 0, n_shared = 0;
    if ((rc = sw__get_u32(L, "attention.q_lora_rank", &hp->q_lora_rank, 0, 0))) return rc;
    if ((rc = sw__get_u32(L, "attention.kv_lora_rank", &hp->kv_lora_rank, 1, 0))) return rc;
    if ((rc = sw__get_u32(L, "attention.key_length_mla", &k_mla, 1, 0))) return rc;
    if ((rc = sw__get_u32(L, "attention.value_length_mla", &v_mla, 1, 0))) return rc;
    if (hp->kv_lora_rank == 0 || hp->kv_lora_rank > 8192 || hp->q_lora_rank > 65536)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: %s.attention.kv_lora_rank %u / q_lora_rank %u is invalid",
                       P, A, hp->kv_lora_rank, hp->q_lora_rank);
    if (in->n_head_kv != 1 || in->head_dim != hp->kv_lora_rank + in->n_rot)
        return sw_errf(L->err, L->err_len, SW_EUNSUPPORTED,
                       "%s: %s.attention.head_count_kv %u / key_length %u: only the latent (MLA) layout of "
                       "llama.cpp's converter is supported (1 / kv_lora_rank + rope.dimension_count = %u)",
                       P, A, in->n_head_kv, in->head_dim, hp->kv_lora_rank + in->n_rot);
    uint32_t val_len = 0;
    if ((rc = sw__get_u32(L, "attention.value_length", &val_len, 1, 0))) return rc;
    if (val_len != hp->kv_lora_rank)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: %s.attention.value_length %u is not kv_lora_rank %u", P,
                       A, val_len, hp->kv_lora_rank);
    if (k_mla <= in->n_rot || k_mla > 1024 || v_mla == 0 || v_mla > 1024)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT,
                       "%s: %s.attention.key_length_mla %u / value_length_mla %u is invalid (rope dims %u)", P, A,
                       k_mla, v_mla, in->n_rot);
    hp->qk_nope = k_mla - in->n_rot;
    hp->v_head = v_mla;
    float temp = 0;
    if ((rc = sw__get_f32(L, "attention.temperature_scale", &temp, 0))) return rc;
    if (temp != 0)
        return sw_errf(L->err, L->err_len, SW_EUNSUPPORTED, "%s: %s.attention.temperature_scale %g is not supported", P,
                       A, temp);
    if ((rc = sw__get_u32(L, "leading_dense_block_count", &hp->n_dense_lead, 0, 0))) return rc;
    if (hp->n_dense_lead > in->n_layers)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: %s.leading_dense_block_count %u exceeds block_count %u", P,
                       A, hp->n_dense_lead, in->n_layers);
    if (hp->n_dense_lead && in->n_ff == 0)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: metadata key %s.feed_forward_length is missing", P, A);
    if (hp->n_dense_lead < in->n_layers) {
        if ((rc = moe_hparams(L, hp, 1))) return rc;
        if ((rc = sw__get_u32(L, "expert_shared_count", &n_shared, 1, 0))) return rc;
        if (n_shared > 64)
            return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: %s.expert_shared_count %u is implausible", P, A,
                           n_shared);
        hp->n_ff_shexp = n_shared * hp->n_ff_exp;
        char key[96];
        int norm = 0;
        snprintf(key, sizeof key, "%s.expert_weights_norm", A);
        rc = sw_gguf_get_bool(L->g, key, &norm);
        if (rc && rc != SW_ENOTFOUND)
            return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: metadata key %s has a bad type", P, key);
        hp->moe_norm_w = norm;
        if ((rc = sw__get_u32(L, "expert_group_count", &hp->n_group, 0, 0))) return rc;
        if ((rc = sw__get_u32(L, "expert_group_used_count", &hp->n_group_used, 0, 0))) return rc;
        if (hp->n_group > 1 &&
            (hp->n_expert % hp->n_group || hp->n_expert / hp->n_group < 2 || hp->n_group_used == 0 ||
             hp->n_group_used > hp->n_group || hp->n_expert_used > hp->n_group_used * (hp->n_expert / hp->n_group)))
            return sw_errf(L->err, L->err_len, SW_ECORRUPT,
                           "%s: %s.expert_group_count %u / expert_group_used_count %u do not fit %u experts, %u used",
                           P, A, hp->n_group, hp->n_group_used, hp->n_expert, hp->n_expert_used);
    } else {
        hp->moe = 0;
    }
    /* llama.cpp (deepseek2's graph and llama_context): with YaRN the RoPE magnitude is
     * attn_factor alone when a log multiplier is given (else x (1 + 0.1 ln f)), and q·k is
     * scaled by m^2 / sqrt(key_length_mla), m = attn_factor x (1 + 0.1 ln f) x
     * (1 + mscale_all_dim x 0.1 ln f) with the rope's attn_factor before YaRN's magnitude. */
    float A0 = 1.0f, raw = 0;
    if ((rc = sw__get_f32(L, "rope.scaling.attn_factor", &A0, 1.0f))) return rc;
    if ((rc = sw__get_f32(L, "rope.scaling.yarn_log_multiplier", &raw, 0))) return rc;
    const float f = 1.0f / in->rope_freq_scale, lnf = f > 1 ? logf(f) : 0, g = 1.0f + 0.1f * lnf;
    float a_rope = A0;
    if (hp->rope_ext != 0) a_rope = A0 * (raw != 0 ? 1.0f : g) / g;
    hp->rope_mscale = a_rope * (hp->rope_ext != 0 ? g : 1.0f);
    const float ms = a_rope * (1.0f + 0.1f * logf(f)) * (1.0f + 0.1f * (raw / 0.1f) * logf(f));
    hp->attn_scale = ms * ms / sqrtf((float)k_mla);
    return 0;
}

/* <arch>.attention.sliding_window_pattern: a period n (layer l slides when l % n < n - 1,
 * llama.cpp's convention: every n-th layer is global) or one bool per layer. */
static int swa_pattern(struct sw__loader *L, uint32_t dflt)
{
    struct sw__model *m = L->m;
    const uint32_t n_layers = m->info.n_layers;
    char key[96];
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", m->info.arch);
    struct sw_gguf_arr arr;
    if (sw_gguf_get_arr(L->g, key, &arr) == 0) {
        if (arr.n != n_layers)
            return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: %s has %llu entries for %u layers", L->path, key,
                           (unsigned long long)arr.n, n_layers);
        for (uint32_t l = 0; l < n_layers; l++) {
            int64_t v = 0;
            if (arr.elem_type == SW_GGUF_BOOL) v = arr.data[l]; /* GGUF: a bool is one byte */
            else if (sw_gguf_arr_i64(&arr, l, &v))
                return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: %s[%u] is not a bool or integer", L->path,
                               key, l);
            m->ld[l].is_swa = v != 0;
        }
        return 0;
    }
    uint32_t n = dflt;
    int rc = sw__get_u32(L, "attention.sliding_window_pattern", &n, 0, dflt);
    if (rc) return rc;
    for (uint32_t l = 0; l < n_layers; l++) m->ld[l].is_swa = n == 0 || l % n < n - 1;
    return 0;
}

/* gemma2 and gemma3 (text): embeddings x sqrt(n_embd), GeGLU, post-attention and post-FFN
 * norms (llama.cpp's converter stores gemma's norm weights with the +1 folded in, so they
 * are plain RMSNorm weights), NeoX RoPE, sliding-window layers with their own RoPE base.
 * The query scale is 1/sqrt(head_dim), except for the 27B shapes (46 / 62 layers), which
 * use 1/sqrt(n_embd/n_head) as llama.cpp does (gemma_pytorch's query_pre_attn_scalar). */
static int gemma_common(struct sw__loader *L, struct sw__hparams *hp, uint32_t big_layers)
{
    const struct sw_stage_info *in = &L->m->info;
    hp->embd_scale = sqrtf((float)in->n_embd);
    if (in->n_layers == big_layers) hp->attn_scale = 1.0f / sqrtf((float)(in->n_embd / in->n_head));
    return 0;
}

static int hp_gemma2(struct sw__loader *L, struct sw__hparams *hp)
{
    const struct sw_stage_info *in = &L->m->info;
    int rc;
    gemma_common(L, hp, 46);
    /* llama.cpp's defaults: attention softcap 50, final 30, window 4096, every other layer */
    if ((rc = sw__get_f32(L, "attn_logit_softcapping", &hp->attn_softcap, 50.0f))) return rc;
    if ((rc = sw__get_f32(L, "final_logit_softcapping", &hp->final_softcap, 30.0f))) return rc;
    if ((rc = sw__get_u32(L, "attention.sliding_window", &hp->n_swa, 0, 4096))) return rc;
    if ((rc = sw__get_f32(L, "rope.freq_base_swa", &hp->rope_base_swa, in->rope_freq_base))) return rc;
    hp->rope_scale_swa = in->rope_freq_scale;
    if (!(hp->attn_softcap >= 0) || !(hp->final_softcap >= 0) || !(hp->rope_base_swa > 0))
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: bad %s softcapping or rope.freq_base_swa", L->path,
                       in->arch);
    return hp->n_swa ? swa_pattern(L, 2) : 0;
}

static int hp_gemma3(struct sw__loader *L, struct sw__hparams *hp)
{
    const struct sw_stage_info *in = &L->m->info;
    int rc;
    gemma_common(L, hp, 62);
    if ((rc = sw__get_f32(L, "final_logit_softcapping", &hp->final_softcap, 0))) return rc;
    if ((rc = sw__get_u32(L, "attention.sliding_window", &hp->n_swa, 0, 0))) return rc;
    /* local layers: base 10000 unless given, no scaling; global layers: rope.freq_base and
     * the declared (linear) scaling */
    if ((rc = sw__get_f32(L, "rope.freq_base_swa", &hp->rope_base_swa, 10000.0f))) return rc;
    hp->rope_scale_swa = 1.0f;
    if (!(hp->final_softcap >= 0) || !(hp->rope_base_swa > 0))
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: bad %s softcapping or rope.freq_base_swa", L->path,
                       in->arch);
    return hp->n_swa ? swa_pattern(L, 6) : 0;
}

/* Rows [row0, row0 + n) of a bound matrix, as a matrix of its own (borrowed). */
static struct sw__w row_view(const struct sw__w *w, int64_t row0, int64_t n)
{
    struct sw__w v = *w;
    v.data = (const uint8_t *)w->data + (size_t)row0 * sw_k_row_bytes(w->type, w->cols);
    v.rows = n;
    return v;
}

/* The llama-family layer: the tensors the features call for, checked by name and shape.
 * Expert stacks are [n_embd, n_ff_exp, n_expert] (down: [n_ff_exp, n_embd, n_expert]). */
static int bind_ffn(struct sw__loader *L, struct sw__layer *ly, uint32_t l);

static int bind_llama_family(struct sw__loader *L, struct sw__layer *ly, uint32_t l)
{
    const struct sw__model *m = L->m;
    const struct sw_stage_info *in = &m->info;
    const struct sw__hparams *hp = &m->hp;
    const int64_t E = in->n_embd, qd = (int64_t)in->n_head * in->head_dim,
                  kvd = (int64_t)in->n_head_kv * in->head_dim, hd = in->head_dim;
    char name[64];
    int rc;
#define BLK(suffix) (snprintf(name, sizeof name, "blk.%u." suffix, l), name)
    if ((rc = sw__bind_vector(L, &ly->attn_norm, BLK("attn_norm.weight"), E, 0))) return rc;
    if ((rc = sw__bind_vector(L, &ly->ffn_norm, hp->ffn_norm_post_attn ? BLK("post_attention_norm.weight")
                                                                        : BLK("ffn_norm.weight"), E, 0)))
        return rc;
    if ((rc = sw__bind_vector(L, &ly->bo, BLK("attn_output.bias"), E, 1))) return rc;
    if (hp->attn_sinks && (rc = sw__bind_vector(L, &ly->sinks, BLK("attn_sinks.weight"), in->n_head, 0))) return rc;
    if (hp->fused_qkv) { /* one matrix, rows q then k then v: three row views of it */
        struct sw__w qkv;
        if ((rc = sw__bind_matrix(L, &qkv, BLK("attn_qkv.weight"), E, qd + 2 * kvd, 1))) return rc;
        ly->wq = row_view(&qkv, 0, qd);
        ly->wk = row_view(&qkv, qd, kvd);
        ly->wv = row_view(&qkv, qd + kvd, kvd);
    } else {
        if ((rc = sw__bind_matrix(L, &ly->wq, BLK("attn_q.weight"), E, qd, 1))) return rc;
        if ((rc = sw__bind_matrix(L, &ly->wk, BLK("attn_k.weight"), E, kvd, 1))) return rc;
        if ((rc = sw__bind_matrix(L, &ly->wv, BLK("attn_v.weight"), E, kvd, 1))) return rc;
    }
    if ((rc = sw__bind_matrix(L, &ly->wo, BLK("attn_output.weight"), qd, E, 1))) return rc;
    /* Biases: required where the row says so (qwen2); else taken when present. */
    const int opt = !hp->qkv_bias;
    if ((rc = sw__bind_vector(L, &ly->bq, BLK("attn_q.bias"), qd, opt))) return rc;
    if ((rc = sw__bind_vector(L, &ly->bk, BLK("attn_k.bias"), kvd, opt))) return rc;
    if ((rc = sw__bind_vector(L, &ly->bv, BLK("attn_v.bias"), kvd, opt))) return rc;
    if (hp->qk_norm) {
        if ((rc = sw__bind_vector(L, &ly->q_norm, BLK("attn_q_norm.weight"), hd, 0))) return rc;
        if ((rc = sw__bind_vector(L, &ly->k_norm, BLK("attn_k_norm.weight"), hd, 0))) return rc;
    }
    if (hp->post_norms) {
        if ((rc = sw__bind_vector(L, &ly->attn_post_norm, BLK("post_attention_norm.weight"), E, 0))) return rc;
        if ((rc = sw__bind_vector(L, &ly->ffn_post_norm, BLK("post_ffw_norm.weight"), E, 0))) return rc;
    }
#undef BLK
    return bind_ffn(L, ly, l);
}

/* A layer's FFN: dense (fused gate|up for phi3), or the experts, their router (+ biases,
 * + DeepSeek V3's selection bias) and the shared expert. */
static int bind_ffn(struct sw__loader *L, struct sw__layer *ly, uint32_t l)
{
    const struct sw__model *m = L->m;
    const struct sw__hparams *hp = &m->hp;
    const int64_t E = m->info.n_embd;
    char name[64];
    int rc;
#define BLK(suffix) (snprintf(name, sizeof name, "blk.%u." suffix, l), name)
    if (!m->ld[l].is_moe) {
        const int64_t F = m->ld[l].n_ff;
        if (hp->fused_gate_up) { /* ffn_up [n_embd, 2 n_ff]: gate rows, then up rows */
            struct sw__w gu;
            if ((rc = sw__bind_matrix(L, &gu, BLK("ffn_up.weight"), E, 2 * F, 1))) return rc;
            ly->w_gate = row_view(&gu, 0, F);
            ly->w_up = row_view(&gu, F, F);
        } else {
            if ((rc = sw__bind_matrix(L, &ly->w_gate, BLK("ffn_gate.weight"), E, F, 1))) return rc;
            if ((rc = sw__bind_matrix(L, &ly->w_up, BLK("ffn_up.weight"), E, F, 1))) return rc;
        }
        if ((rc = sw__bind_matrix(L, &ly->w_down, BLK("ffn_down.weight"), F, E, 1))) return rc;
        return 0;
    }
    const int64_t X = hp->n_expert, FX = hp->n_ff_exp;
    /* The stacks first: a count that disagrees with expert_count is named as such. */
    if ((rc = sw__bind_experts(L, &ly->gate_exps, BLK("ffn_gate_exps.weight"), E, FX, X))) return rc;
    if ((rc = sw__bind_experts(L, &ly->up_exps, BLK("ffn_up_exps.weight"), E, FX, X))) return rc;
    if ((rc = sw__bind_experts(L, &ly->down_exps, BLK("ffn_down_exps.weight"), FX, E, X))) return rc;
    if ((rc = sw__bind_matrix(L, &ly->gate_inp, BLK("ffn_gate_inp.weight"), E, X, 1))) return rc;
    if (hp->mla && (rc = sw__bind_vector(L, &ly->exp_probs_b, BLK("exp_probs_b.bias"), X, 1))) return rc;
    if (hp->expert_bias) {
        if ((rc = sw__bind_vector(L, &ly->gate_inp_b, BLK("ffn_gate_inp.bias"), X, 0))) return rc;
        if ((rc = sw__bind_table(L, &ly->gate_exps_b, BLK("ffn_gate_exps.bias"), FX, X))) return rc;
        if ((rc = sw__bind_table(L, &ly->up_exps_b, BLK("ffn_up_exps.bias"), FX, X))) return rc;
        if ((rc = sw__bind_table(L, &ly->down_exps_b, BLK("ffn_down_exps.bias"), E, X))) return rc;
    }
    if (hp->n_ff_shexp) {
        const int64_t FS = hp->n_ff_shexp;
        if ((rc = sw__bind_matrix(L, &ly->gate_sh, BLK("ffn_gate_shexp.weight"), E, FS, 1))) return rc;
        if ((rc = sw__bind_matrix(L, &ly->up_sh, BLK("ffn_up_shexp.weight"), E, FS, 1))) return rc;
        if ((rc = sw__bind_matrix(L, &ly->down_sh, BLK("ffn_down_shexp.weight"), FS, E, 1))) return rc;
        if (hp->shexp_gate &&
            (rc = sw__bind_vector(L, &ly->gate_inp_sh, BLK("ffn_gate_inp_shexp.weight"), E, 0)))
            return rc;
    }
#undef BLK
    return 0;
}

/* deepseek2's layer: the latent attention's tensors (the split attn_k_b / attn_v_b that
 * llama.cpp's converter writes; the unsplit attn_kv_b of older files is refused), then the
 * FFN (dense in the leading layers). */
static int bind_deepseek2(struct sw__loader *L, struct sw__layer *ly, uint32_t l)
{
    const struct sw__model *m = L->m;
    const struct sw_stage_info *in = &m->info;
    const struct sw__hparams *hp = &m->hp;
    const int64_t E = in->n_embd, H = in->n_head, kmla = (int64_t)hp->qk_nope + in->n_rot, R = hp->kv_lora_rank;
    char name[64];
    int rc;
#define BLK(suffix) (snprintf(name, sizeof name, "blk.%u." suffix, l), name)
    if ((rc = sw__bind_vector(L, &ly->attn_norm, BLK("attn_norm.weight"), E, 0))) return rc;
    if ((rc = sw__bind_vector(L, &ly->ffn_norm, BLK("ffn_norm.weight"), E, 0))) return rc;
    if (hp->q_lora_rank) {
        const int64_t QR = hp->q_lora_rank;
        if ((rc = sw__bind_matrix(L, &ly->wq_a, BLK("attn_q_a.weight"), E, QR, 1))) return rc;
        if ((rc = sw__bind_vector(L, &ly->q_a_norm, BLK("attn_q_a_norm.weight"), QR, 0))) return rc;
        if ((rc = sw__bind_matrix(L, &ly->wq_b, BLK("attn_q_b.weight"), QR, H * kmla, 1))) return rc;
    } else if ((rc = sw__bind_matrix(L, &ly->wq_b, BLK("attn_q.weight"), E, H * kmla, 1))) {
        return rc;
    }
    if ((rc = sw__bind_matrix(L, &ly->wkv_a, BLK("attn_kv_a_mqa.weight"), E, R + in->n_rot, 1))) return rc;
    if ((rc = sw__bind_vector(L, &ly->kv_a_norm, BLK("attn_kv_a_norm.weight"), R, 0))) return rc;
    if (!sw_gguf_tensor_find(L->g, BLK("attn_k_b.weight")) && sw_gguf_tensor_find(L->g, BLK("attn_kv_b.weight")))
        return sw_errf(L->err, L->err_len, SW_EUNSUPPORTED,
                       "%s: %s (the unsplit form of older converters) is not supported: convert again with a "
                       "llama.cpp converter that writes attn_k_b / attn_v_b", L->path, name);
    if ((rc = sw__bind_experts(L, &ly->wk_b, BLK("attn_k_b.weight"), hp->qk_nope, R, H))) return rc;
    if ((rc = sw__bind_experts(L, &ly->wv_b, BLK("attn_v_b.weight"), R, hp->v_head, H))) return rc;
    if ((rc = sw__bind_matrix(L, &ly->wo, BLK("attn_output.weight"), H * hp->v_head, E, 1))) return rc;
#undef BLK
    return bind_ffn(L, ly, l);
}

/*   name        base features                                                hparams   bind
 * llama:    RMSNorm, RoPE (adjacent pairs), GQA, SwiGLU; Mixtral's MoE when expert_count > 0.
 * qwen2:    NeoX RoPE, q/k/v biases.
 * qwen2moe: qwen2 with softmax top-k experts (weights not renormalised) plus a shared
 *           expert scaled by a sigmoid gate.
 * qwen3:    NeoX RoPE, per-head q/k RMSNorm, head size from attention.key_length.
 * qwen3moe: qwen3 with softmax top-k experts, renormalised.
 * gemma2:   GeGLU, embeddings x sqrt(n_embd), post-norms, attention and final logit
 *           soft-capping, every other layer a 4096-token sliding window.
 * gemma3:   gemma2 without soft-capping, with q/k norm, 5 of 6 layers sliding (base 10000).
 * phi3:     fused attn_qkv and ffn_up (gate|up), NeoX RoPE, longrope factors.
 * gpt-oss:  MoE with biases, raw-logit top-k + softmax weights, clamped SwiGLU, attention
 *           sinks, alternating 128-token windows, YaRN.
 * deepseek2: multi-head latent attention (q/kv low rank, decoupled RoPE), leading dense
 *           layers, routed + shared experts, softmax (V2) or sigmoid + bias (V3) gating,
 *           grouped top-k, routed scaling, YaRN with its attention scale. */
static const struct sw__arch ARCHS[] = {
    { "llama", { .moe_norm_w = 1 }, hp_llama, bind_llama_family },
    { "qwen2", { .rope_neox = 1, .qkv_bias = 1 }, hp_plain, bind_llama_family },
    { "qwen2moe", { .rope_neox = 1, .moe = 1, .n_ff_shexp = 1, .shexp_gate = 1 }, hp_moe, bind_llama_family },
    { "qwen3", { .rope_neox = 1, .qk_norm = 1 }, hp_plain, bind_llama_family },
    { "qwen3moe", { .rope_neox = 1, .qk_norm = 1, .moe = 1, .moe_norm_w = 1 }, hp_moe, bind_llama_family },
    { "gemma2", { .rope_neox = 1, .act = SW__ACT_GEGLU, .post_norms = 1 }, hp_gemma2, bind_llama_family },
    { "gemma3", { .rope_neox = 1, .act = SW__ACT_GEGLU, .post_norms = 1, .qk_norm = 1 }, hp_gemma3, bind_llama_family },
    { "phi3", { .rope_neox = 1, .fused_qkv = 1, .fused_gate_up = 1 }, hp_phi3, bind_llama_family },
    { "gpt-oss", { .rope_neox = 1, .moe = 1, .gating = SW__GATING_SOFTMAX_WEIGHT, .act = SW__ACT_SWIGLU_OAI,
                   .attn_sinks = 1, .ffn_norm_post_attn = 1, .expert_bias = 1 }, hp_gpt_oss, bind_llama_family },
    { "deepseek2", { .mla = 1, .moe = 1 }, hp_deepseek2, bind_deepseek2 },
};

const struct sw__arch *sw__arch_find(const char *name)
{
    for (size_t i = 0; name && i < SW_ARRAY_LEN(ARCHS); i++)
        if (!strcmp(name, ARCHS[i].name)) return &ARCHS[i];
    return NULL;
}

const char *sw__arch_names(void)
{
    return "llama, qwen2, qwen2moe, qwen3, qwen3moe, gemma2, gemma3, phi3, gpt-oss, deepseek2";
}

int sw__arch_hparams(struct sw__loader *L, const struct sw__arch *a, const struct sw_stage_opts *o)
{
    struct sw__model *m = L->m;
    m->hp = a->base;
    m->hp.n_expert = 0;
    int rc = common_hparams(L, !a->base.moe, o);
    if (rc) return rc;
    m->info.rope_neox = m->hp.rope_neox;
    m->hp.attn_scale = 1.0f / sqrtf((float)m->info.head_dim);
    m->ld = calloc(m->info.n_layers, sizeof *m->ld);
    if (!m->ld) return sw_errf(L->err, L->err_len, SW_ENOMEM, "out of memory");
    if ((rc = a->hparams(L, &m->hp))) return rc;
    if (!m->hp.moe && m->info.n_ff == 0)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: metadata key %s.feed_forward_length is missing",
                       L->path, m->info.arch);
    for (uint32_t l = 0; l < m->info.n_layers; l++) {
        m->ld[l].is_moe = m->hp.moe && l >= m->hp.n_dense_lead;
        m->ld[l].n_ff = m->ld[l].is_moe ? 0 : m->info.n_ff;
        if (!m->hp.n_swa) m->ld[l].is_swa = 0;
    }
    m->info.n_expert = m->hp.n_expert;
    m->info.n_expert_used = m->hp.n_expert_used;
    return 0;
}
