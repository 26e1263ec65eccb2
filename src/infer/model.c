/* model.c — loads one layer range of a model: finds its architecture's row (arch.c), which
 * reads the hyper-parameters and binds each layer's tensors to the mmap (borrowed, never
 * copied) through the checked binders here, so the forward pass can trust every name,
 * shape and type.
 * Not for: what an architecture is (arch.c), computing (stage.c), parsing (src/gguf). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/stage_impl.h"

static const char *type_name(uint32_t type)
{
    const struct sw_type_info *ti = sw_gguf_type_info(type);
    return ti ? ti->name : "unknown";
}

static void span(struct sw__model *m, const struct sw_gguf_tensor *t)
{
    if (!m->map_lo || t->data < m->map_lo) m->map_lo = t->data;
    if (t->data + t->n_bytes > m->map_hi) m->map_hi = t->data + t->n_bytes;
}

static const struct sw_gguf_tensor *find(struct sw__loader *L, const char *name)
{
    return sw_gguf_tensor_find(L->g, name);
}

/* The matmul's type check, shared by matrices and expert stacks. */
static int check_type(struct sw__loader *L, const struct sw_gguf_tensor *t, const char *name,
                      int64_t cols, int need_dot, const struct sw_k_type **kt_out)
{
    const struct sw_k_type *kt = sw_k_type_get(t->type);
    if (!kt || (need_dot && !kt->vec_dot)) {
        char list[256] = "";
        for (uint32_t ty = 0; ty < SW_TYPE_COUNT_; ty++) {
            const struct sw_k_type *k = sw_k_type_get(ty);
            if (k && k->vec_dot && strlen(list) + strlen(k->name) + 3 < sizeof list)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? ", " : "", k->name);
        }
        return sw_errf(L->err, L->err_len, SW_EUNSUPPORTED,
                    "%s: tensor %s has type %s, which the inference kernels do not support "
                    "(supported: %s)", L->path, name, type_name(t->type), list);
    }
    if (cols % kt->block_size)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT,
                    "%s: tensor %s: row length %lld is not a multiple of %s's block size %u",
                    L->path, name, (long long)cols, kt->name, kt->block_size);
    *kt_out = kt;
    return 0;
}

/* The part of binding a matrix or an expert stack after its shape is checked: a type the
 * kernels support, enough bytes for n_rows rows, the mapped span and the weight count. */
static int take_rows(struct sw__loader *L, const struct sw_gguf_tensor *t, const char *name, int64_t cols,
                     int64_t n_rows, int need_dot, size_t *row_bytes_out)
{
    const struct sw_k_type *kt = NULL;
    int rc = check_type(L, t, name, cols, need_dot, &kt);
    if (rc) return rc;
    size_t row_bytes = sw_k_row_bytes(t->type, cols);
    if (!row_bytes || t->n_bytes < (uint64_t)row_bytes * (uint64_t)n_rows)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: tensor %s: %llu bytes are too few",
                    L->path, name, (unsigned long long)t->n_bytes);
    span(L->m, t);
    L->m->info.weight_bytes += t->n_bytes;
    *row_bytes_out = row_bytes;
    return 0;
}

/* Binds a matrix of shape [cols, rows] (GGUF ne order) that the matmul must support. */
int sw__bind_matrix(struct sw__loader *L, struct sw__w *w, const char *name, int64_t cols,
                    int64_t rows, int need_dot)
{
    const struct sw_gguf_tensor *t = find(L, name);
    if (!t)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: tensor %s is missing", L->path, name);
    if (t->n_dims != 2 || t->ne[0] != cols || t->ne[1] != rows)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT,
                    "%s: tensor %s has shape [%lld, %lld], expected [%lld, %lld]", L->path, name,
                    (long long)t->ne[0], (long long)t->ne[1], (long long)cols, (long long)rows);
    size_t row_bytes;
    int rc = take_rows(L, t, name, cols, rows, need_dot, &row_bytes);
    if (rc) return rc;
    w->data = t->data;
    w->type = t->type;
    w->rows = rows;
    w->cols = cols;
    w->name = NULL;
    return 0;
}

/* Binds a 1-D f32 vector of n elements; other float types are converted into an owned
 * copy (these tensors are tiny). optional: absent -> *out = NULL, 0. */
int sw__bind_vector(struct sw__loader *L, const float **out, const char *name, int64_t n,
                    int optional)
{
    *out = NULL;
    const struct sw_gguf_tensor *t = find(L, name);
    if (!t) {
        if (optional) return 0;
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: tensor %s is missing", L->path, name);
    }
    if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT,
                    "%s: tensor %s has %lld elements, expected a vector of %lld", L->path, name,
                    (long long)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]), (long long)n);
    L->m->info.weight_bytes += t->n_bytes;
    span(L->m, t);
    if (t->type == SW_TYPE_F32) {
        if (t->n_bytes < (uint64_t)n * 4)
            return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: tensor %s is truncated", L->path, name);
        *out = (const float *)(const void *)t->data;
        return 0;
    }
    if (t->type != SW_TYPE_F16 && t->type != SW_TYPE_BF16)
        return sw_errf(L->err, L->err_len, SW_EUNSUPPORTED,
                    "%s: tensor %s has type %s; vectors must be F32, F16 or BF16", L->path, name,
                    type_name(t->type));
    if (t->n_bytes < (uint64_t)n * 2)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: tensor %s is truncated", L->path, name);
    float **owned = realloc(L->m->owned, (L->m->n_owned + 1) * sizeof *owned);
    if (!owned) return sw_errf(L->err, L->err_len, SW_ENOMEM, "out of memory");
    L->m->owned = owned;
    float *f = malloc((size_t)n * sizeof *f);
    if (!f) return sw_errf(L->err, L->err_len, SW_ENOMEM, "out of memory");
    owned[L->m->n_owned++] = f;
    if (t->type == SW_TYPE_F16) sw_k_f16_to_f32_row((const sw_f16 *)(const void *)t->data, f, n);
    else sw_k_bf16_to_f32_row((const sw_bf16 *)(const void *)t->data, f, n);
    *out = f;
    return 0;
}

int sw__get_u32(struct sw__loader *L, const char *suffix, uint32_t *out, int required, uint32_t dflt)
{
    int rc = sw_gguf_arch_u32(L->g, suffix, out);
    if (rc == SW_ENOTFOUND) {
        if (required)
            return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: metadata key %s.%s is missing",
                        L->path, L->m->info.arch, suffix);
        *out = dflt;
        return 0;
    }
    if (rc)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: metadata key %s.%s has a bad type",
                    L->path, L->m->info.arch, suffix);
    return 0;
}

int sw__get_f32(struct sw__loader *L, const char *suffix, float *out, float dflt)
{
    int rc = sw_gguf_arch_f32(L->g, suffix, out);
    if (rc == SW_ENOTFOUND) {
        *out = dflt;
        return 0;
    }
    if (rc)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: metadata key %s.%s has a bad type",
                    L->path, L->m->info.arch, suffix);
    return 0;
}

int sw__bind_table(struct sw__loader *L, const float **out, const char *name, int64_t cols, int64_t rows)
{
    *out = NULL;
    const struct sw_gguf_tensor *t = find(L, name);
    if (!t)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: tensor %s is missing", L->path, name);
    if (t->n_dims != 2 || t->ne[0] != cols || t->ne[1] != rows)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: tensor %s has shape [%lld, %lld], expected [%lld, %lld]",
                       L->path, name, (long long)t->ne[0], (long long)t->ne[1], (long long)cols, (long long)rows);
    if (t->type != SW_TYPE_F32)
        return sw_errf(L->err, L->err_len, SW_EUNSUPPORTED, "%s: tensor %s has type %s; bias tables must be F32",
                       L->path, name, type_name(t->type));
    if (t->n_bytes < (uint64_t)cols * (uint64_t)rows * 4)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: tensor %s is truncated", L->path, name);
    span(L->m, t);
    L->m->info.weight_bytes += t->n_bytes;
    *out = (const float *)(const void *)t->data;
    return 0;
}

/* Binds an expert stack [cols, rows, n_expert] (GGUF ne order: expert e's matrix is the
 * e-th slab). A stack whose expert count disagrees with <arch>.expert_count is refused. */
int sw__bind_experts(struct sw__loader *L, struct sw__wx *w, const char *name, int64_t cols,
                     int64_t rows, int64_t n_expert)
{
    const struct sw_gguf_tensor *t = find(L, name);
    if (!t)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: expert tensor %s is missing", L->path, name);
    if (t->n_dims != 3 || t->ne[0] != cols || t->ne[1] != rows)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT,
                    "%s: tensor %s has shape [%lld, %lld, %lld], expected [%lld, %lld, %lld]", L->path,
                    name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)cols,
                    (long long)rows, (long long)n_expert);
    if (t->ne[2] != n_expert)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT,
                    "%s: tensor %s holds %lld experts, but %s.expert_count is %lld", L->path, name,
                    (long long)t->ne[2], L->m->info.arch, (long long)n_expert);
    size_t row_bytes;
    int rc = take_rows(L, t, name, cols, rows * n_expert, 1, &row_bytes);
    if (rc) return rc;
    w->data = t->data;
    w->type = t->type;
    w->rows = rows;
    w->cols = cols;
    w->n_expert = n_expert;
    w->stride = row_bytes * (size_t)rows;
    w->name = NULL;
    return 0;
}

/* YaRN's correction dimension: the pair index whose wavelength turns n_rot_turns times in the
 * original context (ggml's ggml_rope_yarn_corr_dim). */
static float yarn_corr_dim(uint32_t n_rot, uint32_t n_ctx_orig, float turns, float base)
{
    return (float)n_rot * logf((float)n_ctx_orig / (turns * 2.0f * 3.14159265358979f)) / (2.0f * logf(base));
}

/* theta_i(p) = p * inv_freq_i with
 *   inv_freq_i = base^(-2i/n_rot) / factor_i * (freq_scale (1 - mix_i) + mix_i)
 * mix_i = 0 without YaRN (plain linear scaling); with YaRN (ggml's rope_yarn) mix_i =
 * ext * ramp_i, the ramp 1 below the fast correction dimension, 0 above the slow one.
 * factors: rope_freqs / rope_factors_{long,short}, or NULL. */
static int rope_table(struct sw__loader *L, float *inv_freq, float base, float scale, const float *factors)
{
    const struct sw_stage_info *in = &L->m->info;
    const struct sw__hparams *hp = &L->m->hp;
    float lo = 0, hi = 0;
    if (hp->rope_ext != 0) {
        lo = floorf(yarn_corr_dim(in->n_rot, hp->rope_n_ctx_orig, hp->rope_beta_fast, base));
        hi = ceilf(yarn_corr_dim(in->n_rot, hp->rope_n_ctx_orig, hp->rope_beta_slow, base));
        lo = SW_MAX(0.0f, lo);
        hi = SW_MIN((float)in->n_rot - 1, hi);
    }
    for (uint32_t i = 0; i < in->n_rot / 2; i++) {
        double f = pow((double)base, -2.0 * i / in->n_rot) * scale;
        if (hp->rope_ext != 0) {
            const float y = ((float)i - lo) / SW_MAX(0.001f, hi - lo);
            const float mix = (1.0f - SW_MIN(1.0f, SW_MAX(0.0f, y))) * hp->rope_ext;
            f = pow((double)base, -2.0 * i / in->n_rot) * (scale * (1.0f - mix) + mix);
        }
        if (factors) {
            if (!(factors[i] > 0))
                return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: rope frequency factor %u is not positive",
                               L->path, i);
            f /= factors[i];
        }
        inv_freq[i] = (float)f;
    }
    return 0;
}

int sw__model_load(struct sw__model *m, struct sw_gguf *g, const struct sw_stage_opts *o,
                   char *err, size_t err_len)
{
    memset(m, 0, sizeof *m);
    m->g = g;
    struct sw__loader L = { m, g, sw_gguf_path(g), err, err_len };
    if (!L.path) L.path = "(model)";
    struct sw_stage_info *in = &m->info;
    snprintf(in->backend, sizeof in->backend, "cpu");

    const char *arch = sw_gguf_arch(g);
    const struct sw__arch *ad = sw__arch_find(arch);
    if (!ad)
        return sw_errf(err, err_len, SW_EUNSUPPORTED,
                    "%s: architecture '%s' is not supported (supported: %s)", L.path,
                    arch[0] ? arch : "(general.architecture missing)", sw__arch_names());
    snprintf(in->arch, sizeof in->arch, "%s", arch);
    m->arch = ad;
    int rc = sw__arch_hparams(&L, ad, o);
    if (rc) return rc;

    /* Layer range: the caller's, else the shard's, else the whole model. */
    struct sw_gguf_shard_info si;
    int sharded = sw_gguf_shard_info(g, &si) == 0;
    int64_t first = o->layer_first >= 0 ? o->layer_first : sharded ? (int64_t)si.layer_first : 0;
    int64_t last = o->layer_last >= 0 ? o->layer_last
                   : sharded          ? (int64_t)si.layer_last
                                      : (int64_t)in->n_layers - 1;
    if (first > last || last >= in->n_layers)
        return sw_errf(err, err_len, SW_ERANGE, "%s: layer range [%lld, %lld] is outside the model's %u layers",
                    L.path, (long long)first, (long long)last, in->n_layers);
    in->layer_first = (uint32_t)first;
    in->layer_last = (uint32_t)last;
    in->takes_tokens = first == 0;
    in->gives_logits = last == in->n_layers - 1;

    const int64_t E = in->n_embd, kvd = (int64_t)in->n_head_kv * in->head_dim;

    /* Vocabulary size: the embedding's rows, else the tokenizer's list. */
    const struct sw_gguf_tensor *te = sw_gguf_tensor_find(g, "token_embd.weight");
    const struct sw_gguf_tensor *to = sw_gguf_tensor_find(g, "output.weight");
    if (te && te->n_dims == 2) in->n_vocab = (uint32_t)te->ne[1];
    else if (to && to->n_dims == 2) in->n_vocab = (uint32_t)to->ne[1];
    else {
        struct sw_gguf_arr toks;
        if (sw_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks) == 0) in->n_vocab = (uint32_t)toks.n;
    }
    if (in->takes_tokens) {
        if ((rc = sw__bind_matrix(&L, &m->tok_embd, "token_embd.weight", E, in->n_vocab, 0))) return rc;
        m->tok_embd.name = "token_embd.weight";
    }
    if (in->gives_logits) {
        if ((rc = sw__bind_vector(&L, &m->output_norm, "output_norm.weight", E, 0))) return rc;
        if (to) {
            if ((rc = sw__bind_matrix(&L, &m->output, "output.weight", E, in->n_vocab, 1))) return rc;
            m->output.name = "output.weight";
        } else {
            /* Tied embeddings: the output projection is token_embd (split puts it in the
             * last shard too). */
            uint64_t before = in->weight_bytes;
            if ((rc = sw__bind_matrix(&L, &m->output, "token_embd.weight", E, in->n_vocab, 1))) return rc;
            if (in->takes_tokens) in->weight_bytes = before; /* same bytes counted once */
            m->output.name = "token_embd.weight";
            in->tied_output = 1;
        }
    }

    /* Per-frequency factors (n_rot/2 floats): llama3's rope_freqs.weight, else phi3's
     * longrope pair, the long ones when the context enforced here exceeds the original
     * (llama.cpp picks by its context size the same way). */
    const float *rope_ff = NULL;
    if ((rc = sw__bind_vector(&L, &rope_ff, "rope_freqs.weight", in->n_rot / 2, 1))) return rc;
    if (!rope_ff) {
        const char *fn = in->n_ctx > m->hp.rope_n_ctx_orig ? "rope_factors_long.weight" : "rope_factors_short.weight";
        if ((rc = sw__bind_vector(&L, &rope_ff, fn, in->n_rot / 2, 1))) return rc;
    }
    in->has_rope_freqs = rope_ff != NULL;
    m->rope_inv_freq = malloc((in->n_rot / 2) * sizeof *m->rope_inv_freq);
    if (!m->rope_inv_freq) return sw_errf(err, err_len, SW_ENOMEM, "out of memory");
    if ((rc = rope_table(&L, m->rope_inv_freq, in->rope_freq_base, in->rope_freq_scale, rope_ff))) return rc;
    if (m->hp.n_swa) { /* gemma: the sliding-window layers rotate with their own base */
        m->rope_inv_freq_swa = malloc((in->n_rot / 2) * sizeof *m->rope_inv_freq_swa);
        if (!m->rope_inv_freq_swa) return sw_errf(err, err_len, SW_ENOMEM, "out of memory");
        if ((rc = rope_table(&L, m->rope_inv_freq_swa, m->hp.rope_base_swa, m->hp.rope_scale_swa, rope_ff)))
            return rc;
    }

    uint32_t n = in->layer_last - in->layer_first + 1;
    m->layers = calloc(n, sizeof *m->layers);
    if (!m->layers) return sw_errf(err, err_len, SW_ENOMEM, "out of memory");
    for (uint32_t l = in->layer_first; l <= in->layer_last; l++)
        if ((rc = ad->bind_layer(&L, &m->layers[l - in->layer_first], l))) return rc;
    in->kv_bytes_per_token = (uint64_t)n * 2 * (uint64_t)kvd * sizeof(sw_f16);
    return 0;
}

void sw__model_release(struct sw__model *m)
{
    if (!m) return;
    for (uint32_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->ld);
    free(m->rope_inv_freq);
    free(m->rope_inv_freq_swa);
    if (m->owns_g) sw_gguf_close(m->g);
    memset(m, 0, sizeof *m);
}
