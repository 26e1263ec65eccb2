/* model.c — reads a llama-family model's hyper-parameters from GGUF metadata and binds
 * the tensors of one layer range to the mmap (borrowed, never copied), checking every
 * name, shape and type so the forward pass can trust them.
 * Not for: computing (stage.c) or parsing the file (src/gguf). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/stage_impl.h"

/* Architectures this stage computes. Both are the llama block (RMSNorm, RoPE, GQA, SwiGLU);
 * qwen2 adds q/k/v biases and rotates NeoX pairs. */
struct arch_desc {
    const char *name;
    int rope_neox;
    int qkv_bias;
};
static const struct arch_desc ARCHS[] = {
    { "llama", 0, 0 },
    { "qwen2", 1, 1 },
};

static const char *type_name(uint32_t type)
{
    const struct sw_type_info *ti = sw_gguf_type_info(type);
    return ti ? ti->name : "unknown";
}

/* Keeps the tensor names the model refers to alive for messages. */
#define NAME_LEN 64

struct loader {
    struct sw__model *m;
    struct sw_gguf *g;
    const char *path;
    char *err;
    size_t err_len;
};

static void span(struct sw__model *m, const struct sw_gguf_tensor *t)
{
    if (!m->map_lo || t->data < m->map_lo) m->map_lo = t->data;
    if (t->data + t->n_bytes > m->map_hi) m->map_hi = t->data + t->n_bytes;
}

static const struct sw_gguf_tensor *find(struct loader *L, const char *name)
{
    return sw_gguf_tensor_find(L->g, name);
}

/* Binds a matrix of shape [cols, rows] (GGUF ne order) that the matmul must support. */
static int bind_matrix(struct loader *L, struct sw__w *w, const char *name, int64_t cols,
                       int64_t rows, int need_dot)
{
    const struct sw_gguf_tensor *t = find(L, name);
    if (!t)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: tensor %s is missing", L->path, name);
    if (t->n_dims != 2 || t->ne[0] != cols || t->ne[1] != rows)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT,
                    "%s: tensor %s has shape [%lld, %lld], expected [%lld, %lld]", L->path, name,
                    (long long)t->ne[0], (long long)t->ne[1], (long long)cols, (long long)rows);
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
    size_t row_bytes = sw_k_row_bytes(t->type, cols);
    if (!row_bytes || t->n_bytes < (uint64_t)row_bytes * (uint64_t)rows)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: tensor %s: %llu bytes are too few",
                    L->path, name, (unsigned long long)t->n_bytes);
    span(L->m, t);
    w->data = t->data;
    w->type = t->type;
    w->rows = rows;
    w->cols = cols;
    w->name = NULL;
    L->m->info.weight_bytes += t->n_bytes;
    return 0;
}

/* Binds a 1-D f32 vector of n elements; other float types are converted into an owned
 * copy (these tensors are tiny). optional: absent -> *out = NULL, 0. */
static int bind_vector(struct loader *L, const float **out, const char *name, int64_t n,
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

static int get_u32(struct loader *L, const char *suffix, uint32_t *out, int required, uint32_t dflt)
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

static int get_f32(struct loader *L, const char *suffix, float *out, float dflt)
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

/* Hyper-parameters. GGUF spec, "LLM" keys: <arch>.context_length, .embedding_length,
 * .block_count, .feed_forward_length, .attention.head_count(_kv),
 * .attention.layer_norm_rms_epsilon, .rope.dimension_count, .rope.freq_base,
 * .rope.scaling.type/.factor (and the older .rope.scale_linear). */
static int read_hparams(struct loader *L, const struct arch_desc *ad, const struct sw_stage_opts *o)
{
    struct sw_stage_info *in = &L->m->info;
    int rc;
    in->rope_neox = ad->rope_neox;
    if ((rc = get_u32(L, "block_count", &in->n_layers, 1, 0))) return rc;
    if ((rc = get_u32(L, "embedding_length", &in->n_embd, 1, 0))) return rc;
    if ((rc = get_u32(L, "feed_forward_length", &in->n_ff, 1, 0))) return rc;
    if ((rc = get_u32(L, "attention.head_count", &in->n_head, 1, 0))) return rc;
    if ((rc = get_u32(L, "attention.head_count_kv", &in->n_head_kv, 0, in->n_head))) return rc;
    if ((rc = get_u32(L, "context_length", &in->n_ctx_train, 1, 0))) return rc;
    if (in->n_layers == 0 || in->n_layers > 4096 || in->n_embd == 0 || in->n_embd > 65536 ||
        in->n_ff == 0 || in->n_ff > 1u << 20 || in->n_head == 0 || in->n_head > 1024 ||
        in->n_head_kv == 0 || in->n_head % in->n_head_kv || in->n_ctx_train == 0 ||
        in->n_ctx_train > (1u << 24))
        return sw_errf(L->err, L->err_len, SW_ECORRUPT,
                    "%s: implausible hyper-parameters (layers %u, embd %u, ff %u, heads %u/%u, ctx %u)",
                    L->path, in->n_layers, in->n_embd, in->n_ff, in->n_head, in->n_head_kv,
                    in->n_ctx_train);
    uint32_t key_len = 0, val_len = 0;
    if ((rc = get_u32(L, "attention.key_length", &key_len, 0, in->n_embd / in->n_head))) return rc;
    if ((rc = get_u32(L, "attention.value_length", &val_len, 0, key_len))) return rc;
    if (key_len != val_len || key_len == 0 || key_len % 2 || key_len > 1024)
        return sw_errf(L->err, L->err_len, SW_EUNSUPPORTED,
                    "%s: head size %u (key) / %u (value) is not supported", L->path, key_len, val_len);
    in->head_dim = key_len;
    if ((rc = get_u32(L, "rope.dimension_count", &in->n_rot, 0, in->head_dim))) return rc;
    if (in->n_rot == 0 || in->n_rot > in->head_dim || in->n_rot % 2)
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: %s.rope.dimension_count %u is invalid",
                    L->path, in->arch, in->n_rot);
    if ((rc = get_f32(L, "attention.layer_norm_rms_epsilon", &in->rms_eps, 1e-5f))) return rc;
    if ((rc = get_f32(L, "rope.freq_base", &in->rope_freq_base, 10000.0f))) return rc;
    if (!(in->rms_eps > 0) || !(in->rope_freq_base > 0))
        return sw_errf(L->err, L->err_len, SW_ECORRUPT, "%s: bad rms epsilon or rope.freq_base", L->path);

    /* RoPE frequency scaling. Only "linear" (positions divided by the factor) and "none"
     * change nothing else; YaRN-style scaling needs extra terms we do not implement. */
    float factor = 0;
    char key[96], stype[32] = "";
    snprintf(key, sizeof key, "%s.rope.scaling.type", in->arch);
    sw_gguf_get_cstr(L->g, key, stype, sizeof stype);
    if ((rc = get_f32(L, "rope.scaling.factor", &factor, 0))) return rc;
    if (factor == 0 && (rc = get_f32(L, "rope.scale_linear", &factor, 0))) return rc;
    if (stype[0] && strcmp(stype, "linear") && strcmp(stype, "none"))
        return sw_errf(L->err, L->err_len, SW_EUNSUPPORTED,
                    "%s: rope scaling type '%s' is not supported (linear and none are)", L->path, stype);
    in->rope_freq_scale = 1.0f;
    if (strcmp(stype, "none") && factor > 0) in->rope_freq_scale = 1.0f / factor;

    in->n_ctx = in->n_ctx_train;
    if (o->n_ctx && o->n_ctx < in->n_ctx) in->n_ctx = o->n_ctx;
    return 0;
}

int sw__model_load(struct sw__model *m, struct sw_gguf *g, const struct sw_stage_opts *o,
                   char *err, size_t err_len)
{
    memset(m, 0, sizeof *m);
    m->g = g;
    struct loader L = { m, g, sw_gguf_path(g), err, err_len };
    if (!L.path) L.path = "(model)";
    struct sw_stage_info *in = &m->info;
    snprintf(in->backend, sizeof in->backend, "cpu");

    const char *arch = sw_gguf_arch(g);
    const struct arch_desc *ad = NULL;
    for (size_t i = 0; i < SW_ARRAY_LEN(ARCHS); i++)
        if (!strcmp(arch, ARCHS[i].name)) ad = &ARCHS[i];
    if (!ad)
        return sw_errf(err, err_len, SW_EUNSUPPORTED,
                    "%s: architecture '%s' is not supported (supported: llama, qwen2)", L.path,
                    arch[0] ? arch : "(general.architecture missing)");
    snprintf(in->arch, sizeof in->arch, "%s", arch);
    int rc = read_hparams(&L, ad, o);
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

    const int64_t E = in->n_embd, qd = (int64_t)in->n_head * in->head_dim,
                  kvd = (int64_t)in->n_head_kv * in->head_dim, F = in->n_ff;

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
        if ((rc = bind_matrix(&L, &m->tok_embd, "token_embd.weight", E, in->n_vocab, 0))) return rc;
        m->tok_embd.name = "token_embd.weight";
    }
    if (in->gives_logits) {
        if ((rc = bind_vector(&L, &m->output_norm, "output_norm.weight", E, 0))) return rc;
        if (to) {
            if ((rc = bind_matrix(&L, &m->output, "output.weight", E, in->n_vocab, 1))) return rc;
            m->output.name = "output.weight";
        } else {
            /* Tied embeddings: the output projection is token_embd (split puts it in the
             * last shard too). */
            uint64_t before = in->weight_bytes;
            if ((rc = bind_matrix(&L, &m->output, "token_embd.weight", E, in->n_vocab, 1))) return rc;
            if (in->takes_tokens) in->weight_bytes = before; /* same bytes counted once */
            m->output.name = "token_embd.weight";
            in->tied_output = 1;
        }
    }

    /* llama3-style per-frequency factors (rope_freqs.weight, n_rot/2 floats). */
    const float *rope_ff = NULL;
    if ((rc = bind_vector(&L, &rope_ff, "rope_freqs.weight", in->n_rot / 2, 1))) return rc;
    in->has_rope_freqs = rope_ff != NULL;
    m->rope_inv_freq = malloc((in->n_rot / 2) * sizeof *m->rope_inv_freq);
    if (!m->rope_inv_freq) return sw_errf(err, err_len, SW_ENOMEM, "out of memory");
    for (uint32_t i = 0; i < in->n_rot / 2; i++) {
        /* theta_i(p) = p * freq_scale * base^(-2i/n_rot) / factor_i */
        double f = pow((double)in->rope_freq_base, -2.0 * i / in->n_rot) * in->rope_freq_scale;
        if (rope_ff) {
            if (!(rope_ff[i] > 0))
                return sw_errf(err, err_len, SW_ECORRUPT, "%s: rope_freqs.weight[%u] is not positive",
                            L.path, i);
            f /= rope_ff[i];
        }
        m->rope_inv_freq[i] = (float)f;
    }

    uint32_t n = in->layer_last - in->layer_first + 1;
    m->layers = calloc(n, sizeof *m->layers);
    if (!m->layers) return sw_errf(err, err_len, SW_ENOMEM, "out of memory");
    char name[NAME_LEN];
#define BLK(suffix) (snprintf(name, sizeof name, "blk.%u." suffix, l), name)
    for (uint32_t l = in->layer_first; l <= in->layer_last; l++) {
        struct sw__layer *ly = &m->layers[l - in->layer_first];
        if ((rc = bind_vector(&L, &ly->attn_norm, BLK("attn_norm.weight"), E, 0))) return rc;
        if ((rc = bind_vector(&L, &ly->ffn_norm, BLK("ffn_norm.weight"), E, 0))) return rc;
        if ((rc = bind_matrix(&L, &ly->wq, BLK("attn_q.weight"), E, qd, 1))) return rc;
        if ((rc = bind_matrix(&L, &ly->wk, BLK("attn_k.weight"), E, kvd, 1))) return rc;
        if ((rc = bind_matrix(&L, &ly->wv, BLK("attn_v.weight"), E, kvd, 1))) return rc;
        if ((rc = bind_matrix(&L, &ly->wo, BLK("attn_output.weight"), qd, E, 1))) return rc;
        if ((rc = bind_matrix(&L, &ly->w_gate, BLK("ffn_gate.weight"), E, F, 1))) return rc;
        if ((rc = bind_matrix(&L, &ly->w_up, BLK("ffn_up.weight"), E, F, 1))) return rc;
        if ((rc = bind_matrix(&L, &ly->w_down, BLK("ffn_down.weight"), F, E, 1))) return rc;
        /* qwen2 always has q/k/v biases; llama may (some fine-tunes): take them if present. */
        int opt = !ad->qkv_bias;
        if ((rc = bind_vector(&L, &ly->bq, BLK("attn_q.bias"), qd, opt))) return rc;
        if ((rc = bind_vector(&L, &ly->bk, BLK("attn_k.bias"), kvd, opt))) return rc;
        if ((rc = bind_vector(&L, &ly->bv, BLK("attn_v.bias"), kvd, opt))) return rc;
    }
#undef BLK
    in->kv_bytes_per_token = (uint64_t)n * 2 * (uint64_t)kvd * sizeof(sw_f16);
    return 0;
}

void sw__model_release(struct sw__model *m)
{
    if (!m) return;
    for (uint32_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->rope_inv_freq);
    if (m->owns_g) sw_gguf_close(m->g);
    memset(m, 0, sizeof *m);
}
