/* test_model.c — the compute stage against a straightforward reference forward pass
 * written here from dequantized f32 weights, pinned greedy tokens on stories260K, batching,
 * sequences, layer ranges, the context limit and bad input. */
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "infer/kernels.h"
#include "test.h"

static char model_path[4096];

/* "Once upon a time" with BOS, in stories260K's SentencePiece vocabulary. */
static const int32_t PROMPT[] = { 1, 403, 407, 261, 378 };

/* The greedy continuation, computed by this stage and independently by a plain
 * double-precision re-implementation of the llama forward pass (adjacent-pair RoPE, GQA
 * 8/4, RMSNorm eps 1e-5) reading the same GGUF:
 * ", there was a little girl named Lily. She loved to play outside in the park. One day,
 * she saw a big, red ball." */
static const int32_t GREEDY[] = {
    432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337,
    410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394,
    261, 370, 432, 352, 266, 268, 388, 426,
};

static struct sw_stage *open_stage(int first, int last, uint32_t n_ctx, uint32_t threads,
                                   uint32_t max_batch)
{
    struct sw_stage_opts o = { .layer_first = first, .layer_last = last, .n_ctx = n_ctx,
                               .n_threads = threads, .max_batch = max_batch };
    struct sw_stage *s = NULL;
    char err[512];
    int rc = sw_stage_open(model_path, &o, &s, err, sizeof err);
    CHECK_MSG(rc == 0, "sw_stage_open: %s (%s)", sw_strerror(rc), err);
    return s;
}

static int argmax(const float *x, uint32_t n)
{
    int best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = (int)i;
    return best;
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

/* ------------------------------------------------------------ reference forward */

/* A plain forward pass: weights dequantized to f32 through the GGUF reader, doubles for
 * every accumulation, f32 KV, rotations written from the definition. Slow and obvious. */
struct ref {
    struct sw_gguf *g;
    uint32_t E, L, H, HK, hd, F, V, nrot;
    float eps, base;
    int neox;
    float linear;   /* rope.scaling.factor when the type is linear, else 1 */
    float *freqs;   /* rope_freqs.weight (nrot/2) or NULL */
    float *kc, *vc; /* L x n_ctx x kv_dim */
    uint32_t n_ctx;
};

static float *ref_tensor(struct ref *r, const char *name, int64_t *rows, int64_t *cols)
{
    const struct sw_gguf_tensor *t = sw_gguf_tensor_find(r->g, name);
    if (!t) return NULL;
    int64_t c = t->ne[0], n = t->ne[0] * t->ne[1];
    float *f = malloc((size_t)n * sizeof *f);
    if (sw_k_dequantize_row(t->type, t->data, f, n)) {
        free(f);
        return NULL;
    }
    if (rows) *rows = t->ne[1];
    if (cols) *cols = c;
    return f;
}

static void ref_mv(const float *W, int64_t rows, int64_t cols, const double *x, double *y)
{
    for (int64_t r = 0; r < rows; r++) {
        double acc = 0;
        for (int64_t c = 0; c < cols; c++) acc += (double)W[r * cols + c] * x[c];
        y[r] = acc;
    }
}

static void ref_norm(const double *x, const float *w, double *y, uint32_t n, float eps)
{
    double ss = 0;
    for (uint32_t i = 0; i < n; i++) ss += x[i] * x[i];
    double s = 1.0 / sqrt(ss / n + eps);
    for (uint32_t i = 0; i < n; i++) y[i] = x[i] * s * w[i];
}

static void ref_rope(struct ref *r, double *v, uint32_t n_heads, uint32_t p)
{
    for (uint32_t h = 0; h < n_heads; h++)
        for (uint32_t i = 0; i < r->nrot / 2; i++) {
            double th = p * pow(r->base, -2.0 * i / r->nrot) / r->linear / (r->freqs ? r->freqs[i] : 1.0);
            uint32_t a = r->neox ? i : 2 * i, b = r->neox ? i + r->nrot / 2 : 2 * i + 1;
            double x0 = v[h * r->hd + a], x1 = v[h * r->hd + b];
            v[h * r->hd + a] = x0 * cos(th) - x1 * sin(th);
            v[h * r->hd + b] = x0 * sin(th) + x1 * cos(th);
        }
}

/* logits (V floats) for token tok at position p (positions must come in order). */
static void ref_step(struct ref *r, int32_t tok, uint32_t p, float *logits)
{
    uint32_t E = r->E, qd = r->H * r->hd, kvd = r->HK * r->hd;
    double *x = calloc(E, sizeof *x), *h = calloc(E, sizeof *h), *q = calloc(qd, sizeof *q),
           *k = calloc(kvd, sizeof *k), *v = calloc(kvd, sizeof *v), *o = calloc(qd, sizeof *o),
           *t = calloc(E, sizeof *t), *g = calloc(r->F, sizeof *g), *u = calloc(r->F, sizeof *u),
           *sc = calloc(p + 1, sizeof *sc);
    int64_t rows = 0, cols = 0;
    float *emb = ref_tensor(r, "token_embd.weight", &rows, &cols);
    for (uint32_t i = 0; i < E; i++) x[i] = emb[(int64_t)tok * cols + i];
    free(emb);
    char name[64];
#define W(s) (snprintf(name, sizeof name, "blk.%u." s, l), ref_tensor(r, name, &rows, &cols))
    for (uint32_t l = 0; l < r->L; l++) {
        float *an = W("attn_norm.weight"), *wq = W("attn_q.weight"), *wk = W("attn_k.weight"),
              *wv = W("attn_v.weight"), *wo = W("attn_output.weight"), *fn = W("ffn_norm.weight"),
              *wg = W("ffn_gate.weight"), *wu = W("ffn_up.weight"), *wd = W("ffn_down.weight");
        ref_norm(x, an, h, E, r->eps);
        ref_mv(wq, qd, E, h, q);
        ref_mv(wk, kvd, E, h, k);
        ref_mv(wv, kvd, E, h, v);
        float *bq = W("attn_q.bias"), *bk = W("attn_k.bias"), *bv = W("attn_v.bias");
        for (uint32_t i = 0; bq && i < qd; i++) q[i] += bq[i];
        for (uint32_t i = 0; bk && i < kvd; i++) k[i] += bk[i];
        for (uint32_t i = 0; bv && i < kvd; i++) v[i] += bv[i];
        free(bq); free(bk); free(bv);
        ref_rope(r, q, r->H, p);
        ref_rope(r, k, r->HK, p);
        float *kc = r->kc + (size_t)l * r->n_ctx * kvd, *vc = r->vc + (size_t)l * r->n_ctx * kvd;
        for (uint32_t i = 0; i < kvd; i++) {
            kc[(size_t)p * kvd + i] = (float)k[i];
            vc[(size_t)p * kvd + i] = (float)v[i];
        }
        for (uint32_t hh = 0; hh < r->H; hh++) {
            uint32_t gi = hh / (r->H / r->HK);
            double mx = -1e300, sum = 0;
            for (uint32_t j = 0; j <= p; j++) {
                double d = 0;
                for (uint32_t e = 0; e < r->hd; e++) d += q[hh * r->hd + e] * kc[(size_t)j * kvd + gi * r->hd + e];
                sc[j] = d / sqrt((double)r->hd);
                if (sc[j] > mx) mx = sc[j];
            }
            for (uint32_t j = 0; j <= p; j++) sum += (sc[j] = exp(sc[j] - mx));
            for (uint32_t e = 0; e < r->hd; e++) {
                double acc = 0;
                for (uint32_t j = 0; j <= p; j++) acc += sc[j] / sum * vc[(size_t)j * kvd + gi * r->hd + e];
                o[hh * r->hd + e] = acc;
            }
        }
        ref_mv(wo, E, qd, o, t);
        for (uint32_t i = 0; i < E; i++) x[i] += t[i];
        ref_norm(x, fn, h, E, r->eps);
        ref_mv(wg, r->F, E, h, g);
        ref_mv(wu, r->F, E, h, u);
        for (uint32_t i = 0; i < r->F; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
        ref_mv(wd, E, r->F, g, t);
        for (uint32_t i = 0; i < E; i++) x[i] += t[i];
        free(an); free(wq); free(wk); free(wv); free(wo); free(fn); free(wg); free(wu); free(wd);
    }
#undef W
    float *on = ref_tensor(r, "output_norm.weight", NULL, NULL);
    float *out = ref_tensor(r, "output.weight", &rows, &cols);
    if (!out) out = ref_tensor(r, "token_embd.weight", &rows, &cols);
    ref_norm(x, on, h, E, r->eps);
    double *lg = calloc(r->V, sizeof *lg);
    ref_mv(out, r->V, E, h, lg);
    for (uint32_t i = 0; i < r->V; i++) logits[i] = (float)lg[i];
    free(lg); free(on); free(out);
    free(x); free(h); free(q); free(k); free(v); free(o); free(t); free(g); free(u); free(sc);
}

static int ref_open(struct ref *r, const char *path, uint32_t n_ctx)
{
    memset(r, 0, sizeof *r);
    char err[256];
    if (sw_gguf_open(path, &r->g, err, sizeof err)) return -1;
    sw_gguf_arch_u32(r->g, "embedding_length", &r->E);
    sw_gguf_arch_u32(r->g, "block_count", &r->L);
    sw_gguf_arch_u32(r->g, "attention.head_count", &r->H);
    sw_gguf_arch_u32(r->g, "attention.head_count_kv", &r->HK);
    sw_gguf_arch_u32(r->g, "feed_forward_length", &r->F);
    r->hd = r->E / r->H;
    r->nrot = r->hd;
    sw_gguf_arch_u32(r->g, "rope.dimension_count", &r->nrot);
    r->eps = 1e-5f;
    sw_gguf_arch_f32(r->g, "attention.layer_norm_rms_epsilon", &r->eps);
    r->base = 10000.0f;
    sw_gguf_arch_f32(r->g, "rope.freq_base", &r->base);
    r->neox = !strcmp(sw_gguf_arch(r->g), "qwen2");
    char key[96], type[32] = "";
    snprintf(key, sizeof key, "%s.rope.scaling.type", sw_gguf_arch(r->g));
    r->linear = 1;
    if (sw_gguf_get_cstr(r->g, key, type, sizeof type) && !strcmp(type, "linear"))
        sw_gguf_arch_f32(r->g, "rope.scaling.factor", &r->linear);
    r->freqs = ref_tensor(r, "rope_freqs.weight", NULL, NULL);
    r->V = (uint32_t)sw_gguf_tensor_find(r->g, "token_embd.weight")->ne[1];
    r->n_ctx = n_ctx;
    r->kc = calloc((size_t)r->L * n_ctx * r->HK * r->hd, sizeof(float));
    r->vc = calloc((size_t)r->L * n_ctx * r->HK * r->hd, sizeof(float));
    return 0;
}

static void ref_close(struct ref *r)
{
    free(r->freqs);
    free(r->kc);
    free(r->vc);
    sw_gguf_close(r->g);
}

/* ------------------------------------------------------------ tests */

/* Greedy tokens token by token, the way generate runs. */
static void greedy(struct sw_stage *s, uint64_t seq, int32_t *out, int n_gen)
{
    const struct sw_stage_info *in = sw_stage_info(s);
    float *logits = malloc(in->n_vocab * sizeof *logits);
    int rc = sw_stage_forward(s, seq, 0, SW_ARRAY_LEN(PROMPT), PROMPT, logits, 0);
    CHECK_EQ_INT(rc, 0);
    uint32_t pos = SW_ARRAY_LEN(PROMPT);
    for (int i = 0; i < n_gen; i++) {
        int32_t t = argmax(logits, in->n_vocab);
        out[i] = t;
        rc = sw_stage_forward(s, seq, pos++, 1, &t, logits, 0);
        if (rc) {
            CHECK_MSG(0, "forward at %u: %s", pos - 1, sw_stage_errmsg(s));
            break;
        }
    }
    free(logits);
}

static void test_info(void)
{
    struct sw_stage *s = open_stage(-1, -1, 0, 1, 0);
    if (!s) return;
    const struct sw_stage_info *in = sw_stage_info(s);
    CHECK_EQ_STR(in->arch, "llama");
    CHECK_EQ_INT(in->n_layers, 5);
    CHECK_EQ_INT(in->layer_first, 0);
    CHECK_EQ_INT(in->layer_last, 4);
    CHECK_EQ_INT(in->n_embd, 64);
    CHECK_EQ_INT(in->n_head, 8);
    CHECK_EQ_INT(in->n_head_kv, 4);
    CHECK_EQ_INT(in->head_dim, 8);
    CHECK_EQ_INT(in->n_vocab, 512);
    CHECK_EQ_INT(in->n_ctx, 2048);
    CHECK_EQ_INT(in->rope_neox, 0);
    CHECK(in->takes_tokens && in->gives_logits);
    CHECK_NEAR(in->rms_eps, 1e-5, 1e-9);
    CHECK_EQ_U64(in->kv_bytes_per_token, 5 * 2 * 32 * 2);
    sw_stage_free(s);
}

static void test_greedy_pinned(void)
{
    for (uint32_t threads = 1; threads <= 2; threads++) {
        struct sw_stage *s = open_stage(-1, -1, 0, threads, 0);
        if (!s) return;
        CHECK_EQ_INT(sw_stage_seq_new(s, 7), 0);
        int32_t got[SW_ARRAY_LEN(GREEDY)];
        greedy(s, 7, got, SW_ARRAY_LEN(GREEDY));
        for (size_t i = 0; i < SW_ARRAY_LEN(GREEDY); i++)
            CHECK_MSG(got[i] == GREEDY[i], "threads %u: token %zu: %d != %d", threads, i, got[i], GREEDY[i]);
        sw_stage_free(s);
    }
}

/* The stage's logits match the plain reference at every position of prompt + greedy. */
static double compare_with_reference(const char *path)
{
    struct ref r;
    CHECK(ref_open(&r, path, 64) == 0);
    struct sw_stage_opts o = { .layer_first = -1, .layer_last = -1, .n_ctx = 64, .n_threads = 2 };
    struct sw_stage *s = NULL;
    char err[512];
    int rc = sw_stage_open(path, &o, &s, err, sizeof err);
    CHECK_MSG(rc == 0, "%s: %s", path, err);
    if (rc) return 1;
    sw_stage_seq_new(s, 1);
    int32_t toks[SW_ARRAY_LEN(PROMPT) + 12];
    memcpy(toks, PROMPT, sizeof PROMPT);
    memcpy(toks + SW_ARRAY_LEN(PROMPT), GREEDY, 12 * sizeof *toks);
    float *a = malloc(r.V * sizeof *a), *b = malloc(r.V * sizeof *b);
    double worst = 0;
    for (uint32_t p = 0; p < SW_ARRAY_LEN(toks); p++) {
        ref_step(&r, toks[p], p, a);
        CHECK_EQ_INT(sw_stage_forward(s, 1, p, 1, &toks[p], b, 0), 0);
        worst = fmax(worst, max_rel_diff(b, a, r.V));
        CHECK_EQ_INT(argmax(a, r.V), argmax(b, r.V));
    }
    /* f16 KV cache and f32 accumulation vs doubles and an f32 cache: ~1e-3 relative. */
    CHECK_MSG(worst < 5e-3, "%s: logits differ from the reference by %.3g (relative to max |logit|)",
              path, worst);
    fprintf(stderr, "  reference vs stage: max relative logit difference %.3g\n", worst);
    free(a);
    free(b);
    sw_stage_free(s);
    ref_close(&r);
    return worst;
}

static void test_reference_logits(void)
{
    compare_with_reference(model_path);
}

/* One batched call gives the same logits as feeding tokens one by one, including when the
 * batch is larger than the stage's step (max_batch 3). */
static void test_batch_equals_incremental(void)
{
    struct sw_stage *s1 = open_stage(-1, -1, 0, 2, 0), *s2 = open_stage(-1, -1, 0, 2, 3);
    if (!s1 || !s2) return;
    sw_stage_seq_new(s1, 1);
    sw_stage_seq_new(s2, 1);
    int32_t toks[16];
    memcpy(toks, PROMPT, sizeof PROMPT);
    memcpy(toks + 5, GREEDY, 11 * sizeof *toks);
    uint32_t V = sw_stage_info(s1)->n_vocab;
    float *all = malloc(16 * V * sizeof *all), *one = malloc(V * sizeof *one),
          *last = malloc(V * sizeof *last);
    CHECK_EQ_INT(sw_stage_forward(s2, 1, 0, 16, toks, all, SW_STAGE_LOGITS_ALL), 0);
    for (uint32_t p = 0; p < 16; p++) {
        CHECK_EQ_INT(sw_stage_forward(s1, 1, p, 1, &toks[p], one, 0), 0);
        double d = max_rel_diff(all + (size_t)p * V, one, V);
        /* the kernels may sum in another order for one token than for many */
        CHECK_MSG(d < 1e-3, "position %u: batched vs incremental differ by %.3g", p, d);
    }
    /* Last-token-only output equals the last row of LOGITS_ALL. */
    CHECK_EQ_INT(sw_stage_forward(s2, 1, 0, 16, toks, last, 0), 0);
    CHECK(max_rel_diff(last, all + 15 * (size_t)V, V) == 0);
    uint32_t n = 0;
    CHECK_EQ_INT(sw_stage_seq_len(s2, 1, &n), 0);
    CHECK_EQ_INT(n, 16);
    free(all);
    free(one);
    free(last);
    sw_stage_free(s1);
    sw_stage_free(s2);
}

/* A long sequence: the KV cache grows past its first steps (256, 512 positions) while
 * keeping its contents, fed in pieces or at once. */
static void test_long_sequence(void)
{
    struct sw_stage *s = open_stage(-1, -1, 0, 2, 0);
    if (!s) return;
    enum { N = 700 };
    int32_t *toks = malloc(N * sizeof *toks);
    for (int i = 0; i < N; i++) toks[i] = i == 0 ? 1 : GREEDY[i % SW_ARRAY_LEN(GREEDY)];
    float *a = malloc(512 * sizeof *a), *b = malloc(512 * sizeof *b);
    sw_stage_seq_new(s, 1);
    sw_stage_seq_new(s, 2);
    CHECK_EQ_INT(sw_stage_forward(s, 1, 0, N, toks, a, 0), 0);
    CHECK_EQ_INT(sw_stage_forward(s, 2, 0, 200, toks, b, 0), 0);
    CHECK_EQ_INT(sw_stage_forward(s, 2, 200, 300, toks + 200, b, 0), 0);
    for (int i = 500; i < N; i++) CHECK_EQ_INT(sw_stage_forward(s, 2, (uint32_t)i, 1, toks + i, b, 0), 0);
    double d = max_rel_diff(b, a, 512);
    CHECK_MSG(d < 1e-3, "700 tokens at once vs in pieces: %.3g", d);
    /* 700 at once: 768 positions; 200, 500, 501..: 256, 512, then doubled to 1024 */
    CHECK_EQ_U64(sw_stage_kv_bytes(s), (768ull + 1024) * sw_stage_info(s)->kv_bytes_per_token);
    free(toks);
    free(a);
    free(b);
    sw_stage_free(s);
}

/* Several sequences in one forward_batch call == each on its own (within the kernels'
 * summation-order noise), also when they span several steps; bad entries fail alone. */
static void test_forward_batch(void)
{
    for (uint32_t mb = 0; mb <= 4; mb += 4) { /* default step, and steps of 4 tokens */
        struct sw_stage *s = open_stage(-1, -1, 0, 2, mb), *r = open_stage(-1, -1, 0, 2, 0);
        if (!s || !r) return;
        const uint32_t V = 512;
        static const int32_t p1[] = { 1, 403, 407, 261, 378 }, p2[] = { 1, 321, 331 },
                             p3[] = { 1, 432, 383, 286, 261, 376, 298 };
        float *got = malloc(3 * 7 * V * sizeof *got), *want = malloc(7 * V * sizeof *want);
        for (uint64_t q = 1; q <= 3; q++) {
            sw_stage_seq_new(s, q);
            sw_stage_seq_new(r, q);
        }
        /* sequence 2 already holds 2 tokens: continue it at position 2 */
        CHECK_EQ_INT(sw_stage_forward(s, 2, 0, 2, p2, got, 0), 0);
        CHECK_EQ_INT(sw_stage_forward(r, 2, 0, 2, p2, want, 0), 0);
        struct sw_stage_batch b[4] = {
            { .seq = 1, .pos = 0, .n_tokens = 5, .in = p1, .out = got },
            { .seq = 2, .pos = 2, .n_tokens = 1, .in = p2 + 2, .out = got + V },
            { .seq = 3, .pos = 0, .n_tokens = 7, .in = p3, .out = got + 2 * V, .flags = SW_STAGE_LOGITS_ALL },
            { .seq = 99, .pos = 0, .n_tokens = 1, .in = p1, .out = got }, /* unknown: fails alone */
        };
        CHECK_EQ_INT(sw_stage_forward_batch(s, b, 4), SW_ENOTFOUND);
        CHECK_EQ_INT(b[0].rc, 0);
        CHECK_EQ_INT(b[1].rc, 0);
        CHECK_EQ_INT(b[2].rc, 0);
        CHECK_EQ_INT(b[3].rc, SW_ENOTFOUND);
        CHECK_EQ_INT(sw_stage_forward(r, 1, 0, 5, p1, want, 0), 0);
        CHECK_MSG(max_rel_diff(got, want, V) < 1e-3, "batch %u: seq 1 differs", mb);
        CHECK_EQ_INT(sw_stage_forward(r, 2, 2, 1, p2 + 2, want, 0), 0);
        CHECK_MSG(max_rel_diff(got + V, want, V) < 1e-3, "batch %u: seq 2 differs", mb);
        CHECK_EQ_INT(sw_stage_forward(r, 3, 0, 7, p3, want, SW_STAGE_LOGITS_ALL), 0);
        CHECK_MSG(max_rel_diff(got + 2 * V, want, 7 * V) < 1e-3, "batch %u: seq 3 differs", mb);
        uint32_t n = 0;
        sw_stage_seq_len(s, 3, &n);
        CHECK_EQ_INT(n, 7);
        sw_stage_seq_len(s, 2, &n);
        CHECK_EQ_INT(n, 3);
        /* the same sequence twice in one batch is refused */
        struct sw_stage_batch d[2] = {
            { .seq = 1, .pos = 5, .n_tokens = 1, .in = p1, .out = got },
            { .seq = 1, .pos = 5, .n_tokens = 1, .in = p1, .out = want },
        };
        CHECK_EQ_INT(sw_stage_forward_batch(s, d, 2), SW_EINVAL);
        CHECK_EQ_INT(d[0].rc, 0);
        CHECK_EQ_INT(d[1].rc, SW_EINVAL);
        free(got);
        free(want);
        sw_stage_free(s);
        sw_stage_free(r);
    }
}

/* Two sequences interleaved on one stage don't disturb each other; reset and rewinding
 * (pos below the length) recompute the same logits. */
static void test_sequences(void)
{
    struct sw_stage *s = open_stage(-1, -1, 0, 2, 0);
    if (!s) return;
    uint32_t V = sw_stage_info(s)->n_vocab;
    float *a = malloc(V * sizeof *a), *b = malloc(V * sizeof *b), *c = malloc(V * sizeof *c);
    CHECK_EQ_INT(sw_stage_seq_new(s, 100), 0);
    CHECK_EQ_INT(sw_stage_seq_new(s, 200), 0);
    CHECK_EQ_INT(sw_stage_seq_new(s, 100), SW_EEXIST);
    CHECK_EQ_INT(sw_stage_n_seqs(s), 2);
    static const int32_t other[] = { 1, 321, 331, 261 };
    CHECK_EQ_INT(sw_stage_forward(s, 100, 0, 3, PROMPT, a, 0), 0);
    CHECK_EQ_INT(sw_stage_forward(s, 200, 0, 4, other, b, 0), 0);
    CHECK_EQ_INT(sw_stage_forward(s, 100, 3, 2, PROMPT + 3, a, 0), 0);
    CHECK_EQ_INT(sw_stage_forward(s, 200, 0, 5, PROMPT, b, 0), 0); /* rewind to 0 */
    CHECK(max_rel_diff(a, b, V) < 1e-3); /* 3+2 tokens vs 5: other kernel shapes */
    CHECK_EQ_INT(sw_stage_seq_reset(s, 100), 0);
    CHECK_EQ_INT(sw_stage_forward(s, 100, 0, 5, PROMPT, c, 0), 0);
    CHECK(max_rel_diff(b, c, V) == 0); /* same calls from an empty cache: identical */
    CHECK_EQ_INT(sw_stage_forward(s, 100, 9, 1, PROMPT, c, 0), SW_EINVAL); /* past the end */
    CHECK_EQ_INT(sw_stage_forward(s, 999, 0, 1, PROMPT, c, 0), SW_ENOTFOUND);
    CHECK(sw_stage_kv_bytes(s) > 0);
    sw_stage_seq_free(s, 100);
    sw_stage_seq_free(s, 100); /* harmless */
    CHECK_EQ_INT(sw_stage_n_seqs(s), 1);
    CHECK_EQ_INT(sw_stage_seq_reset(s, 100), SW_ENOTFOUND);
    sw_stage_seq_free(s, 200);
    CHECK_EQ_U64(sw_stage_kv_bytes(s), 0);
    free(a);
    free(b);
    free(c);
    sw_stage_free(s);
}

/* Layers [0,1] then [2,4] in two stages over the same file equal the whole model exactly. */
static void test_layer_ranges(void)
{
    struct sw_stage *whole = open_stage(-1, -1, 0, 2, 0), *s0 = open_stage(0, 1, 0, 2, 0),
                    *s1 = open_stage(2, 4, 0, 2, 0);
    if (!whole || !s0 || !s1) return;
    CHECK(sw_stage_info(s0)->takes_tokens && !sw_stage_info(s0)->gives_logits);
    CHECK(!sw_stage_info(s1)->takes_tokens && sw_stage_info(s1)->gives_logits);
    CHECK_EQ_U64(sw_stage_out_floats(s0, 5, 0), 5 * 64);
    uint32_t V = 512, E = 64;
    float *h = malloc(5 * E * sizeof *h), *a = malloc(5 * V * sizeof *a), *b = malloc(5 * V * sizeof *b);
    sw_stage_seq_new(whole, 1);
    sw_stage_seq_new(s0, 1);
    sw_stage_seq_new(s1, 1);
    CHECK_EQ_INT(sw_stage_forward(whole, 1, 0, 5, PROMPT, a, SW_STAGE_LOGITS_ALL), 0);
    CHECK_EQ_INT(sw_stage_forward(s0, 1, 0, 5, PROMPT, h, 0), 0);
    CHECK_EQ_INT(sw_stage_forward(s1, 1, 0, 5, h, b, SW_STAGE_LOGITS_ALL), 0);
    CHECK(max_rel_diff(a, b, 5 * V) == 0);
    free(h);
    free(a);
    free(b);
    sw_stage_free(whole);
    sw_stage_free(s0);
    sw_stage_free(s1);

    struct sw_stage_opts o = { .layer_first = 3, .layer_last = 7 };
    struct sw_stage *bad = NULL;
    char err[256];
    CHECK_EQ_INT(sw_stage_open(model_path, &o, &bad, err, sizeof err), SW_ERANGE);
    CHECK(bad == NULL);
    CHECK_MSG(strstr(err, "layer range") != NULL, "message: %s", err);
}

/* Exceeding the context is SW_ERANGE with a message, never a crash; nothing is cached. */
static void test_context_limit(void)
{
    struct sw_stage *s = open_stage(-1, -1, 8, 1, 0);
    if (!s) return;
    CHECK_EQ_INT(sw_stage_info(s)->n_ctx, 8);
    float *lg = malloc(512 * sizeof *lg);
    int32_t toks[9] = { 1, 403, 407, 261, 378, 432, 383, 286, 261 };
    sw_stage_seq_new(s, 1);
    CHECK_EQ_INT(sw_stage_forward(s, 1, 0, 9, toks, lg, 0), SW_ERANGE);
    CHECK_MSG(strstr(sw_stage_errmsg(s), "context") != NULL, "message: %s", sw_stage_errmsg(s));
    CHECK_EQ_INT(sw_stage_forward(s, 1, 0, 8, toks, lg, 0), 0);
    CHECK_EQ_INT(sw_stage_forward(s, 1, 8, 1, toks + 8, lg, 0), SW_ERANGE);
    uint32_t n = 0;
    sw_stage_seq_len(s, 1, &n);
    CHECK_EQ_INT(n, 8);
    int32_t bad = 512;
    CHECK_EQ_INT(sw_stage_forward(s, 1, 0, 1, &bad, lg, 0), SW_ERANGE);
    free(lg);
    sw_stage_free(s);
}

static void test_bad_files(void)
{
    char err[512];
    struct sw_stage *s = NULL;
    CHECK(sw_stage_open("/nonexistent/model.gguf", NULL, &s, err, sizeof err) < 0);
    CHECK(s == NULL);
    /* A vocabulary-only GGUF has no architecture the stage computes. */
    char vocab[4200];
    snprintf(vocab, sizeof vocab, "%s/vocab/ggml-vocab-llama-spm.gguf", sw_test_shared_data());
    int rc = sw_stage_open(vocab, NULL, &s, err, sizeof err);
    CHECK_MSG(rc == SW_EUNSUPPORTED || rc == SW_ECORRUPT, "rc %d (%s)", rc, err);
    CHECK(s == NULL);
    struct sw_stage_opts o = { .layer_first = -1, .layer_last = -1, .backend = "cuda" };
    CHECK_EQ_INT(sw_stage_open(model_path, &o, &s, err, sizeof err), SW_EUNSUPPORTED);
    CHECK_MSG(strstr(err, "cuda") != NULL, "message: %s", err);
}

/* ------------------------------------------------------------ synth and split */

static char tmp_dir[512];
static char vocab_path[4200];

static int synth(const char *out, const char *preset, const char *type, uint64_t seed, uint32_t threads)
{
    struct sw_synth_opts o = { .preset = preset, .type = type, .seed = seed, .vocab_path = vocab_path,
                               .n_threads = threads };
    char err[512];
    int rc = sw_synth_write(out, &o, err, sizeof err);
    CHECK_MSG(rc == 0, "synth %s %s: %s", preset, type, err);
    return rc;
}

static void file_sha(const char *path, char hex[65])
{
    uint8_t h[32];
    memset(h, 0, sizeof h);
    CHECK_EQ_INT(sw_sha256_file(path, h), 0);
    sw_hex_encode(h, 32, hex);
}

/* Same options -> same bytes, whatever the thread count; another seed -> other bytes. */
static void test_synth_deterministic(void)
{
    char a[600], b[600], c[600], ha[65], hb[65], hc[65];
    snprintf(a, sizeof a, "%s/det-a.gguf", tmp_dir);
    snprintf(b, sizeof b, "%s/det-b.gguf", tmp_dir);
    snprintf(c, sizeof c, "%s/det-c.gguf", tmp_dir);
    if (synth(a, "nano", "Q4_K_M", 5, 1) || synth(b, "nano", "Q4_K_M", 5, 2) || synth(c, "nano", "Q4_K_M", 6, 2))
        return;
    file_sha(a, ha);
    file_sha(b, hb);
    file_sha(c, hc);
    CHECK_EQ_STR(ha, hb);
    CHECK(strcmp(ha, hc) != 0);
    struct sw_gguf *g = NULL;
    char err[256];
    CHECK_EQ_INT(sw_gguf_open(a, &g, err, sizeof err), 0);
    if (!g) return;
    /* llama.cpp's Q4_K_M mix: Q6_K output, Q6_K attn_v/ffn_down in the favoured layers. */
    CHECK_EQ_INT(sw_gguf_tensor_find(g, "output.weight")->type, SW_TYPE_Q6_K);
    CHECK_EQ_INT(sw_gguf_tensor_find(g, "blk.0.attn_q.weight")->type, SW_TYPE_Q4_K);
    CHECK_EQ_INT(sw_gguf_tensor_find(g, "blk.1.ffn_down.weight")->type, SW_TYPE_Q6_K);
    CHECK_EQ_INT(sw_gguf_tensor_find(g, "output_norm.weight")->type, SW_TYPE_F32);
    struct sw_gguf_arr toks;
    CHECK_EQ_INT(sw_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks), 0);
    CHECK_EQ_U64(toks.n, 512);
    sw_gguf_close(g);
    g = NULL;
    /* Q5_K_M: the same mix over Q5_K. */
    if (synth(c, "nano", "Q5_K_M", 6, 1)) return;
    CHECK_EQ_INT(sw_gguf_open(c, &g, err, sizeof err), 0);
    if (!g) return;
    CHECK_EQ_INT(sw_gguf_tensor_find(g, "output.weight")->type, SW_TYPE_Q6_K);
    CHECK_EQ_INT(sw_gguf_tensor_find(g, "blk.0.attn_q.weight")->type, SW_TYPE_Q5_K);
    CHECK_EQ_INT(sw_gguf_tensor_find(g, "blk.1.ffn_down.weight")->type, SW_TYPE_Q6_K);
    sw_gguf_close(g);
    g = NULL;
    /* Q3_K_M: Q3_K with Q4_K attn_output, Q5_K attn_v in layers 0-1 (nano has 2) and Q4_K
     * after, ffn_down Q5_K in the first sixteenth of the layers (none of 2) and Q4_K after. */
    if (synth(c, "nano", "Q3_K_M", 6, 1)) return;
    CHECK_EQ_INT(sw_gguf_open(c, &g, err, sizeof err), 0);
    if (!g) return;
    CHECK_EQ_INT(sw_gguf_tensor_find(g, "output.weight")->type, SW_TYPE_Q6_K);
    CHECK_EQ_INT(sw_gguf_tensor_find(g, "blk.0.attn_q.weight")->type, SW_TYPE_Q3_K);
    CHECK_EQ_INT(sw_gguf_tensor_find(g, "blk.0.attn_output.weight")->type, SW_TYPE_Q4_K);
    CHECK_EQ_INT(sw_gguf_tensor_find(g, "blk.1.attn_v.weight")->type, SW_TYPE_Q5_K);
    CHECK_EQ_INT(sw_gguf_tensor_find(g, "blk.0.ffn_down.weight")->type, SW_TYPE_Q4_K);
    sw_gguf_close(g);

    struct sw_synth_opts bad = { .preset = "nano", .type = "TQ2_0", .vocab_path = vocab_path };
    CHECK_EQ_INT(sw_synth_write(c, &bad, err, sizeof err), SW_EINVAL);
    bad.type = "F16";
    bad.preset = "gpt-9";
    CHECK_EQ_INT(sw_synth_write(c, &bad, err, sizeof err), SW_EINVAL);
    CHECK(sw_synth_preset_find("tinyllama-1.1b") && sw_synth_preset_find("qwen2-0.5b") &&
          sw_synth_preset_find("llama-160m") && sw_synth_preset_find("tiny"));
    const struct sw_synth_preset *tl = sw_synth_preset_find("tinyllama-1.1b");
    CHECK(tl->n_embd == 2048 && tl->n_layers == 22 && tl->n_head == 32 && tl->n_head_kv == 4 &&
          tl->n_ff == 5632 && tl->n_vocab == 32000);
}

/* qwen2 (biases, NeoX RoPE, tied output) against the reference forward. */
static void test_qwen2_reference(void)
{
    char p[600];
    snprintf(p, sizeof p, "%s/qwen2-nano-f32.gguf", tmp_dir);
    if (synth(p, "qwen2-nano", "F32", 3, 2)) return;
    struct sw_stage *s = NULL;
    char err[512];
    CHECK_EQ_INT(sw_stage_open(p, NULL, &s, err, sizeof err), 0);
    if (!s) return;
    CHECK_EQ_STR(sw_stage_info(s)->arch, "qwen2");
    CHECK(sw_stage_info(s)->rope_neox && sw_stage_info(s)->tied_output);
    CHECK_NEAR(sw_stage_info(s)->rope_freq_base, 1e6, 1);
    sw_stage_free(s);
    compare_with_reference(p);
}

/* Copies a model adding linear RoPE scaling and a llama3-style rope_freqs tensor. */
static int add_rope_extras(const char *src, const char *dst, float factor)
{
    struct sw_gguf *g = NULL;
    char err[256];
    if (sw_gguf_open(src, &g, err, sizeof err)) return -1;
    struct sw_gguf_writer *w = NULL;
    int rc = sw_gguf_writer_new(dst, 32, &w);
    for (uint64_t i = 0; !rc && i < sw_gguf_n_kv(g); i++) rc = sw_gguf_writer_add_kv(w, sw_gguf_kv_at(g, i));
    char key[96];
    const char *a = sw_gguf_arch(g);
    uint32_t nrot = 0;
    sw_gguf_arch_u32(g, "rope.dimension_count", &nrot);
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    if (!rc) rc = sw_gguf_writer_set_str(w, key, "linear");
    snprintf(key, sizeof key, "%s.rope.scaling.factor", a);
    if (!rc) rc = sw_gguf_writer_set_f32(w, key, factor);
    float ff[512];
    for (uint32_t i = 0; i < nrot / 2 && i < 512; i++) ff[i] = 1.0f + 7.0f * (float)i / (float)(nrot / 2); /* 1 .. 8 */
    int64_t ne_ff[1] = { nrot / 2 };
    if (!rc) rc = sw_gguf_writer_add_tensor(w, "rope_freqs.weight", SW_TYPE_F32, 1, ne_ff);
    for (uint64_t i = 0; !rc && i < sw_gguf_n_tensors(g); i++) {
        const struct sw_gguf_tensor *t = sw_gguf_tensor_at(g, i);
        char name[80];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        rc = sw_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne);
    }
    if (!rc) rc = sw_gguf_writer_write_header(w);
    if (!rc) rc = sw_gguf_writer_write_data(w, ff, (uint64_t)(nrot / 2) * sizeof(float));
    for (uint64_t i = 0; !rc && i < sw_gguf_n_tensors(g); i++)
        rc = sw_gguf_writer_write_data(w, sw_gguf_tensor_at(g, i)->data, sw_gguf_tensor_at(g, i)->n_bytes);
    if (!rc) rc = sw_gguf_writer_finish(w);
    else sw_gguf_writer_free(w);
    sw_gguf_close(g);
    return rc;
}

/* Linear RoPE scaling and per-frequency factors (llama 3.1 style) against the reference. */
static void test_rope_scaling_reference(void)
{
    char p[600];
    snprintf(p, sizeof p, "%s/stories-rope-extras.gguf", tmp_dir);
    CHECK_EQ_INT(add_rope_extras(model_path, p, 4.0f), 0);
    struct sw_stage *s = NULL;
    char err[512];
    CHECK_EQ_INT(sw_stage_open(p, NULL, &s, err, sizeof err), 0);
    if (!s) return;
    CHECK(sw_stage_info(s)->has_rope_freqs);
    CHECK_NEAR(sw_stage_info(s)->rope_freq_scale, 0.25, 1e-7);
    sw_stage_free(s);
    compare_with_reference(p);
}

/* Every weight type computes the same function as F32 up to its quantization error. */
static void test_weight_types(void)
{
    static const struct { const char *type; double tol; } types[] = {
        { "F16", 0.01 }, { "BF16", 0.05 }, { "Q8_0", 0.05 }, { "Q6_K", 0.08 }, { "Q5_K", 0.15 },
        { "Q4_K", 0.3 }, { "Q4_K_M", 0.3 }, { "Q4_0", 0.3 }, { "Q4_1", 0.3 }, { "Q5_0", 0.15 },
        { "Q5_1", 0.15 }, { "IQ4_NL", 0.3 }, { "IQ4_XS", 0.3 }, { "MXFP4", 0.5 }, { "Q3_K", 0.6 },
        { "Q2_K", 1.0 }, { "IQ2_S", 1.0 }, { "IQ2_XS", 1.0 }, { "IQ2_XXS", 1.5 },
    };
    char p[600];
    float *ref = malloc(512 * sizeof *ref), *got = malloc(512 * sizeof *got);
    snprintf(p, sizeof p, "%s/nano-F32.gguf", tmp_dir);
    if (synth(p, "nano", "F32", 9, 2)) return;
    struct sw_stage *s = NULL;
    char err[512];
    CHECK_EQ_INT(sw_stage_open(p, NULL, &s, err, sizeof err), 0);
    if (!s) return;
    sw_stage_seq_new(s, 1);
    CHECK_EQ_INT(sw_stage_forward(s, 1, 0, SW_ARRAY_LEN(PROMPT), PROMPT, ref, 0), 0);
    sw_stage_free(s);
    for (size_t i = 0; i < SW_ARRAY_LEN(types); i++) {
        snprintf(p, sizeof p, "%s/nano-%s.gguf", tmp_dir, types[i].type);
        if (synth(p, "nano", types[i].type, 9, 2)) continue;
        s = NULL;
        int rc = sw_stage_open(p, NULL, &s, err, sizeof err);
        CHECK_MSG(rc == 0, "%s: %s", types[i].type, err);
        if (rc) continue;
        sw_stage_seq_new(s, 1);
        CHECK_EQ_INT(sw_stage_forward(s, 1, 0, SW_ARRAY_LEN(PROMPT), PROMPT, got, 0), 0);
        int finite = 1;
        for (int k = 0; k < 512; k++) finite &= isfinite(got[k]) != 0;
        CHECK_MSG(finite, "%s: non-finite logits", types[i].type);
        double d = max_rel_diff(got, ref, 512);
        fprintf(stderr, "  %-6s vs F32: max relative logit difference %.4f\n", types[i].type, d);
        CHECK_MSG(d < types[i].tol, "%s: logits differ from F32 by %.3g (tolerance %.3g)", types[i].type, d,
                  types[i].tol);
        sw_stage_free(s);
    }
    free(ref);
    free(got);
}

/* The shards of `split`, run one after another, give the unsplit model's logits. */
static void split_check(const char *model, uint32_t n_shards, const char *sub)
{
    char dir[600], err[512];
    snprintf(dir, sizeof dir, "%s/%s", tmp_dir, sub);
    struct sw_split_opts so = { .n_shards = n_shards, .out_dir = dir };
    struct sw_shard_plan plans[8];
    int rc = sw_gguf_split(model, &so, plans, err, sizeof err);
    CHECK_MSG(rc == 0, "split %s: %s", model, err);
    if (rc) return;
    char paths[8][700];
    const char *pp[8];
    for (uint32_t i = 0; i < n_shards; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/shard-%u.gguf", dir, i);
        pp[i] = paths[i];
    }
    struct sw_chain *whole = NULL, *parts = NULL;
    struct sw_stage_opts o = { .n_threads = 2 };
    CHECK_EQ_INT(sw_chain_open(&model, 1, &o, &whole, err, sizeof err), 0);
    rc = sw_chain_open(pp, n_shards, &o, &parts, err, sizeof err);
    CHECK_MSG(rc == 0, "chain over shards: %s", err);
    if (!whole || !parts) goto out;
    CHECK_EQ_INT(sw_chain_n_stages(parts), n_shards);
    uint32_t V = sw_chain_n_vocab(whole);
    CHECK_EQ_INT(sw_chain_n_vocab(parts), V);
    int32_t toks[16];
    memcpy(toks, PROMPT, sizeof PROMPT);
    memcpy(toks + 5, GREEDY, 11 * sizeof *toks);
    float *a = malloc(16 * (size_t)V * sizeof *a), *b = malloc(16 * (size_t)V * sizeof *b);
    sw_chain_seq_new(whole, 1);
    sw_chain_seq_new(parts, 1);
    CHECK_EQ_INT(sw_chain_forward(whole, 1, 0, 10, toks, a, SW_STAGE_LOGITS_ALL), 0);
    CHECK_EQ_INT(sw_chain_forward(parts, 1, 0, 10, toks, b, SW_STAGE_LOGITS_ALL), 0);
    for (uint32_t p = 10; p < 16; p++) { /* then token by token */
        CHECK_EQ_INT(sw_chain_forward(whole, 1, p, 1, toks + p, a + (size_t)p * V, 0), 0);
        CHECK_EQ_INT(sw_chain_forward(parts, 1, p, 1, toks + p, b + (size_t)p * V, 0), 0);
    }
    double d = max_rel_diff(b, a, 16 * (size_t)V);
    CHECK_MSG(d <= 1e-5, "%s in %u shards: logits differ by %.3g relative", model, n_shards, d);
    free(a);
    free(b);

    /* Shards out of order, or one missing, are refused with a message. */
    sw_chain_free(parts);
    parts = NULL;
    if (n_shards >= 3) {
        const char *gap[2] = { pp[0], pp[2] };
        CHECK_EQ_INT(sw_chain_open(gap, 2, &o, &parts, err, sizeof err), SW_ERANGE);
        CHECK_MSG(strstr(err, "layer") != NULL, "message: %s", err);
        const char *rev[2] = { pp[1], pp[0] };
        CHECK_EQ_INT(sw_chain_open(rev, 2, &o, &parts, err, sizeof err), SW_ERANGE);
    }
out:
    sw_chain_free(whole);
    sw_chain_free(parts);
}

static void test_split_equals_whole(void)
{
    split_check(model_path, 3, "split-stories");
    char p[600];
    snprintf(p, sizeof p, "%s/qwen2-split.gguf", tmp_dir);
    if (synth(p, "qwen2-nano", "Q8_0", 4, 2)) return;
    split_check(p, 2, "split-qwen2"); /* tied embeddings: the last shard carries token_embd */
    snprintf(p, sizeof p, "%s/iq2-split.gguf", tmp_dir);
    if (synth(p, "nano", "IQ2_XXS", 4, 2)) return;
    split_check(p, 2, "split-iq2"); /* a codebook type through split and the stage */
}

/* Hyper-parameters of the hand-written model (a key is left out when its value is 0). */
struct mini_hp {
    uint32_t blocks, embd, ff, heads, heads_kv, ctx, rope_dim;
    const char *scaling;
};
static const struct mini_hp MINI_OK = { 1, 256, 256, 2, 0, 32, 0, NULL };

/* A one-layer model written by hand: arch, hyper-parameters and the type of attn_q chosen by
 * the caller; tensors are shaped for 256 x 256 whatever the metadata says. */
static int write_mini_hp(const char *path, const char *arch, uint32_t q_type, const struct mini_hp *hp)
{
    struct sw_gguf_writer *w = NULL;
    if (sw_gguf_writer_new(path, 32, &w)) return -1;
    char k[64];
    sw_gguf_writer_set_str(w, "general.architecture", arch);
#define AK(x) (snprintf(k, sizeof k, "%s." x, arch), k)
    if (hp->blocks) sw_gguf_writer_set_u32(w, AK("block_count"), hp->blocks);
    if (hp->embd) sw_gguf_writer_set_u32(w, AK("embedding_length"), hp->embd);
    if (hp->ff) sw_gguf_writer_set_u32(w, AK("feed_forward_length"), hp->ff);
    if (hp->heads) sw_gguf_writer_set_u32(w, AK("attention.head_count"), hp->heads);
    if (hp->heads_kv) sw_gguf_writer_set_u32(w, AK("attention.head_count_kv"), hp->heads_kv);
    if (hp->ctx) sw_gguf_writer_set_u32(w, AK("context_length"), hp->ctx);
    if (hp->rope_dim) sw_gguf_writer_set_u32(w, AK("rope.dimension_count"), hp->rope_dim);
    if (hp->scaling) {
        sw_gguf_writer_set_str(w, AK("rope.scaling.type"), hp->scaling);
        sw_gguf_writer_set_f32(w, AK("rope.scaling.factor"), 4.0f);
    }
#undef AK
    struct { const char *name; uint32_t type; uint32_t nd; int64_t ne[2]; } t[] = {
        { "token_embd.weight", SW_TYPE_F32, 2, { 256, 16 } }, { "output_norm.weight", SW_TYPE_F32, 1, { 256, 1 } },
        { "blk.0.attn_norm.weight", SW_TYPE_F32, 1, { 256, 1 } }, { "blk.0.attn_q.weight", q_type, 2, { 256, 256 } },
        { "blk.0.attn_k.weight", SW_TYPE_F32, 2, { 256, 256 } }, { "blk.0.attn_v.weight", SW_TYPE_F32, 2, { 256, 256 } },
        { "blk.0.attn_output.weight", SW_TYPE_F32, 2, { 256, 256 } }, { "blk.0.ffn_norm.weight", SW_TYPE_F32, 1, { 256, 1 } },
        { "blk.0.ffn_gate.weight", SW_TYPE_F32, 2, { 256, 256 } }, { "blk.0.ffn_up.weight", SW_TYPE_F32, 2, { 256, 256 } },
        { "blk.0.ffn_down.weight", SW_TYPE_F32, 2, { 256, 256 } },
    };
    int rc = 0;
    for (size_t i = 0; i < SW_ARRAY_LEN(t); i++) rc |= sw_gguf_writer_add_tensor(w, t[i].name, t[i].type, t[i].nd, t[i].ne);
    rc |= sw_gguf_writer_write_header(w);
    static uint8_t zeros[256 * 256 * 4];
    for (size_t i = 0; i < SW_ARRAY_LEN(t) && !rc; i++) {
        uint64_t n = 0;
        sw_gguf_type_bytes(t[i].type, (uint64_t)t[i].ne[0] * (t[i].nd == 2 ? t[i].ne[1] : 1), &n);
        rc |= sw_gguf_writer_write_data(w, zeros, n);
    }
    if (rc) {
        sw_gguf_writer_free(w);
        return -1;
    }
    return sw_gguf_writer_finish(w);
}

static int write_mini(const char *path, const char *arch, uint32_t q_type)
{
    return write_mini_hp(path, arch, q_type, &MINI_OK);
}

/* Bad hyper-parameters in the metadata: an error naming the problem, never a crash. */
static void test_bad_metadata(void)
{
    static const struct { struct mini_hp hp; int rc; const char *what; } cases[] = {
        { { 0, 256, 256, 2, 0, 32, 0, NULL }, SW_ECORRUPT, "block_count" },
        { { 1, 0, 256, 2, 0, 32, 0, NULL }, SW_ECORRUPT, "embedding_length" },
        { { 1, 256, 256, 0, 0, 32, 0, NULL }, SW_ECORRUPT, "head_count" },
        { { 1, 256, 256, 2, 3, 32, 0, NULL }, SW_ECORRUPT, "heads" },        /* 2 % 3 */
        { { 1, 256, 256, 2, 0, 0, 0, NULL }, SW_ECORRUPT, "context_length" },
        { { 1, 256, 256, 2, 0, 32, 7, NULL }, SW_ECORRUPT, "dimension_count" },
        { { 1, 256, 256, 2, 0, 32, 0, "dynamic" }, SW_EUNSUPPORTED, "dynamic" },
        { { 1, 512, 256, 2, 0, 32, 0, NULL }, SW_ECORRUPT, "shape" },        /* tensors are 256 wide */
        { { 2, 256, 256, 2, 0, 32, 0, NULL }, SW_ECORRUPT, "blk.1" },        /* layer 1 missing */
        { { 1, 256, 256, 2, 0, 1u << 30, 0, NULL }, SW_ECORRUPT, "implausible" },
    };
    char p[600], err[512];
    snprintf(p, sizeof p, "%s/mini-bad.gguf", tmp_dir);
    for (size_t i = 0; i < SW_ARRAY_LEN(cases); i++) {
        CHECK_EQ_INT(write_mini_hp(p, "llama", SW_TYPE_F32, &cases[i].hp), 0);
        struct sw_stage *s = NULL;
        err[0] = 0;
        int rc = sw_stage_open(p, NULL, &s, err, sizeof err);
        CHECK_MSG(rc == cases[i].rc, "case %zu: rc %d, expected %d (%s)", i, rc, cases[i].rc, err);
        CHECK_MSG(strstr(err, cases[i].what) != NULL, "case %zu: message lacks '%s': %s", i, cases[i].what, err);
        CHECK(s == NULL);
        sw_stage_free(s);
    }
    /* linear scaling is taken: positions divided by the factor */
    struct mini_hp lin = MINI_OK;
    lin.scaling = "linear";
    CHECK_EQ_INT(write_mini_hp(p, "llama", SW_TYPE_F32, &lin), 0);
    struct sw_stage *s = NULL;
    CHECK_EQ_INT(sw_stage_open(p, NULL, &s, err, sizeof err), 0);
    if (s) CHECK_NEAR(sw_stage_info(s)->rope_freq_scale, 0.25, 1e-7);
    sw_stage_free(s);
}

/* Unsupported architecture or tensor type: a clear error naming it; the file itself is fine. */
static void test_unsupported(void)
{
    char p[600], err[512];
    struct sw_stage *s = NULL;
    snprintf(p, sizeof p, "%s/mini-ok.gguf", tmp_dir);
    CHECK_EQ_INT(write_mini(p, "llama", SW_TYPE_F32), 0);
    CHECK_EQ_INT(sw_stage_open(p, NULL, &s, err, sizeof err), 0);
    sw_stage_free(s);
    s = NULL;
    snprintf(p, sizeof p, "%s/mini-tq1.gguf", tmp_dir);
    CHECK_EQ_INT(write_mini(p, "llama", SW_TYPE_TQ1_0), 0);
    CHECK_EQ_INT(sw_stage_open(p, NULL, &s, err, sizeof err), SW_EUNSUPPORTED);
    CHECK_MSG(strstr(err, "TQ1_0") && strstr(err, "blk.0.attn_q.weight"), "message: %s", err);
    snprintf(p, sizeof p, "%s/mini-tq2.gguf", tmp_dir);
    CHECK_EQ_INT(write_mini(p, "llama", SW_TYPE_TQ2_0), 0);
    CHECK_EQ_INT(sw_stage_open(p, NULL, &s, err, sizeof err), SW_EUNSUPPORTED);
    CHECK_MSG(strstr(err, "TQ2_0") != NULL, "message: %s", err);
    snprintf(p, sizeof p, "%s/mini-gpt2.gguf", tmp_dir);
    CHECK_EQ_INT(write_mini(p, "gpt2", SW_TYPE_F32), 0);
    CHECK_EQ_INT(sw_stage_open(p, NULL, &s, err, sizeof err), SW_EUNSUPPORTED);
    CHECK_MSG(strstr(err, "gpt2") != NULL, "message: %s", err);
    CHECK(s == NULL);
    /* A tensor of the wrong shape is named too. */
    struct sw_gguf *g = NULL;
    CHECK_EQ_INT(sw_gguf_open(model_path, &g, err, sizeof err), 0);
    struct sw_stage_opts o = { .layer_first = -1, .layer_last = -1, .n_ctx = 4 };
    CHECK_EQ_INT(sw_stage_open_gguf(g, &o, &s, err, sizeof err), 0);
    CHECK_EQ_INT(sw_stage_info(s)->n_ctx, 4);
    sw_stage_free(s);
    sw_gguf_close(g);
}

int main(void)
{
    const char *data = sw_test_shared_data();
    if (!data) SW_TEST_SKIP("../shared/data is absent: stories260K.gguf needed");
    snprintf(model_path, sizeof model_path, "%s/models/stories260K.gguf", data);
    SW_RUN(test_info);
    SW_RUN(test_greedy_pinned);
    SW_RUN(test_reference_logits);
    SW_RUN(test_batch_equals_incremental);
    SW_RUN(test_sequences);
    SW_RUN(test_long_sequence);
    SW_RUN(test_forward_batch);
    SW_RUN(test_layer_ranges);
    SW_RUN(test_context_limit);
    SW_RUN(test_bad_files);
    const char *t = sw_test_tmpdir();
    if (!t) SW_TEST_SKIP("no temporary folder");
    snprintf(tmp_dir, sizeof tmp_dir, "%s", t);
    snprintf(vocab_path, sizeof vocab_path, "%s", model_path); /* stories260K's 512 tokens */
    SW_RUN(test_synth_deterministic);
    SW_RUN(test_qwen2_reference);
    SW_RUN(test_rope_scaling_reference);
    SW_RUN(test_weight_types);
    SW_RUN(test_split_equals_whole);
    SW_RUN(test_unsupported);
    SW_RUN(test_bad_metadata);
    sw_test_rm_tree(tmp_dir);
    return SW_TEST_DONE();
}
