/* stage.c — the CPU compute stage: sequences, and the forward pass of a block range as one
 * fixed recipe (RMSNorm, RoPE, grouped-query attention over an f16 KV cache, then a dense
 * SwiGLU or mixture-of-experts FFN) reading the architecture's features (arch.c), on the
 * kernels' thread pool. Every buffer is allocated at open; forward allocates nothing except
 * when a sequence's KV cache grows.
 * Not for: the kernels' inner loops (kernels*.c), the model file (model.c, src/gguf). */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/backend_vk.h"
#include "infer/stage_impl.h"

#define DEFAULT_MAX_BATCH 256u
#define DEFAULT_MAX_SEQS 64u
#define MAX_MAX_BATCH 4096u
#define MAX_MAX_SEQS 65536u

struct sw_stage {
    struct sw__model m;
    struct sw_k_pool *pool;
    int owns_pool;
    struct sw_cores *cores; /* machine core lease (opts.machine_cores), or NULL */
    uint64_t cores_checked_us; /* last sw_cores_rebalance */
    uint32_t us_per_token_x16; /* the last leased-stage step's time per token x16; 0: none yet */
    int leased;                /* the forward running now holds cores of the lease */
    int n_threads;
    pthread_mutex_t lock;
    struct sw__kv *seqs; /* max_seqs slots */
    uint32_t max_seqs, n_live;
    _Atomic uint64_t kv_bytes; /* written under the lock; read without it (status) */
    uint32_t max_batch;
    uint32_t q_dim, kv_dim;
    /* scratch, B = max_batch rows each */
    float *x;      /* B x n_embd: the residual stream */
    float *xn;     /* B x max(n_embd, q_dim): normed input / matmul output */
    float *q;      /* B x q_dim */
    float *k, *v;  /* B x kv_dim */
    float *att;    /* B x q_dim: attention output */
    float *gate;   /* B x ff_max (the widest dense, expert or shared-expert FFN) */
    float *up;     /* B x ff_max */
    float *ffo;    /* B x n_embd: FFN output */
    /* mixture of experts (NULL when dense) */
    float *router;     /* B x n_expert: router logits, then probabilities */
    uint32_t *sel;     /* B x n_expert_used: chosen experts per token */
    float *sel_w;      /* B x n_expert_used: their weights */
    float *moe_y;      /* B x n_embd: a batch of slots' expert outputs (or the shared expert's) */
    uint32_t *ex_tok;  /* B x n_expert_used: the (token, expert) slots sorted by expert: token */
    float *ex_w;       /* B x n_expert_used: its weight */
    uint32_t *ex_at;   /* n_expert + 1: expert e's slots are ex_at[e] .. ex_at[e+1]-1 */
    struct sw_k_mm_gop *ex_ops; /* 2 x n_expert: one grouped matmul's ops */
    /* deepseek2's latent attention (NULL otherwise) */
    float *mla_qa;     /* B x q_lora_rank */
    float *mla_q;      /* B x n_head x key_length_mla: the heads' q_nope ‖ q_pe */
    float *mla_in;     /* B x max(qk_nope, kv_lora_rank): one head's rows, gathered */
    float *mla_out;    /* B x max(kv_lora_rank, v_head): its product */
    float *mla_o;      /* B x n_head x v_head: the heads' outputs, into attn_output */
    float *rope;   /* B x n_rot: cos[n_rot/2] then sin[n_rot/2] per token */
    float *rope_swa; /* the same with the sliding-window layers' frequencies, or NULL */
    float *att_scratch;     /* n_threads x att_per_thread floats (see attn_run) */
    size_t att_per_thread;
    uint32_t att_tb;        /* tokens per attention block */
    uint32_t att_chunks;    /* tasks per KV head (its query heads split this many ways) */
    struct sw__kv **tok_kv; /* B: the sequence of each token of a step */
    uint32_t *tok_pos;      /* B: its position */
    float *logits;          /* gathered last-token logits of a multi-sequence step (grown) */
    size_t logits_cap;      /* floats */
    /* Vulkan (backend_vk.h): the first gpu_n layers run on the device */
    struct sw__vk *gpu;
    uint32_t gpu_n;
    uint8_t *gpu_stale;     /* max_seqs: the slot's device cache was lost with the device */
    uint64_t kv_tok_all;    /* host K+V bytes per token with every layer on the CPU */
    int gpu_lost_now;       /* the device was lost in this forward: its later steps fail too */
    char errmsg[256];
};

static int set_err(struct sw_stage *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int set_err(struct sw_stage *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->errmsg, sizeof s->errmsg, fmt, ap);
    va_end(ap);
    return code;
}

/* ------------------------------------------------------------------ open / free */

/* Populates the page tables of the stage's weights (read-only, shared with the page
 * cache): one madvise where the kernel has MADV_POPULATE_READ (Linux 5.14), else a read
 * per page. Pages of tensors outside the stage's range are not touched. */
static void prefault(const uint8_t *lo, const uint8_t *hi)
{
    if (!lo || hi <= lo) return;
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) pg = 4096;
    uintptr_t a = (uintptr_t)lo & ~(uintptr_t)(pg - 1);
    size_t len = (size_t)((uintptr_t)hi - a);
#ifdef MADV_WILLNEED
    madvise((void *)a, len, MADV_WILLNEED);
#endif
#ifdef MADV_POPULATE_READ
    if (madvise((void *)a, len, MADV_POPULATE_READ) == 0) return;
#endif
    volatile uint8_t sink = 0;
    for (const uint8_t *p = (const uint8_t *)a; p < hi; p += pg) sink ^= *p;
    (void)sink;
}

static float *scratch(size_t n, int *oom)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) *oom = 1;
    return p;
}

/* The device was lost (a step or a cache copy failed): every layer on the CPU from now on;
 * the live sequences' device caches are gone, so they must start again from position 0,
 * and their host arrays (only the CPU's layers) are dropped: each replay makes them for
 * every layer. */
static void gpu_lost(struct sw_stage *s, const char *msg)
{
    sw_log(SW_LOG_ERROR, "GPU", "%s: this stage computes every layer on the CPU from now on; its %u live "
           "sequences must start again from position 0", msg, s->n_live);
    s->gpu_n = 0;
    s->m.info.gpu_layers = 0;
    s->m.info.gpu_logits = 0;
    snprintf(s->m.info.backend, sizeof s->m.info.backend, "cpu");
    snprintf(s->m.info.gpu_note, sizeof s->m.info.gpu_note, "%s", msg);
    s->m.info.gpu_converted[0] = 0;
    if (s->kv_tok_all) s->m.info.kv_bytes_per_token = s->kv_tok_all;
    /* the host arrays hold only the CPU's layers: dropped, and made for every layer
     * when each sequence starts again (its replay) */
    const uint32_t nl = s->m.info.layer_last - s->m.info.layer_first + 1;
    for (uint32_t i = 0; i < s->max_seqs; i++) {
        s->gpu_stale[i] = s->seqs[i].live;
        if (s->seqs[i].k) s->kv_bytes -= sw__kv_drop(&s->seqs[i], nl, s->kv_dim);
    }
}

/* Puts the stage's first layers on a Vulkan device (opts.gpu); when that is not possible
 * the log says why and every layer stays on the CPU. */
static void gpu_open(struct sw_stage *s, const struct sw_stage_opts *o)
{
    struct sw_stage_info *in = &s->m.info;
    struct sw__vk_opts vo = { .gpu = o->gpu, .gpu_layers = o->gpu_layers, .max_batch = s->max_batch,
                              .max_seqs = s->max_seqs, .n_ctx = in->n_ctx };
    char msg[sizeof in->gpu_note] = "";
    int rc = sw__vk_open(&s->m, &vo, &s->gpu, msg, sizeof msg);
    s->gpu_stale = calloc(s->max_seqs, 1);
    if (rc || !s->gpu_stale) {
        snprintf(in->gpu_note, sizeof in->gpu_note, "%s", rc ? msg : "out of memory");
        sw_log(SW_LOG_WARN, "GPU", "%s: computing on the CPU", in->gpu_note);
        sw__vk_free(s->gpu);
        s->gpu = NULL;
        return;
    }
    s->gpu_n = sw__vk_n_layers(s->gpu);
    in->gpu_layers = s->gpu_n;
    { /* the host caches only the CPU's layers (kv.c): what a session reserves here */
        uint32_t nl = in->layer_last - in->layer_first + 1;
        s->kv_tok_all = in->kv_bytes_per_token;
        if (s->gpu_n && nl) in->kv_bytes_per_token = in->kv_bytes_per_token / nl * (nl - SW_MIN(s->gpu_n, nl));
    }
    in->gpu_logits = in->gives_logits && sw__vk_logits_rows(s->gpu) > 0;
    in->device_mem = sw__vk_device_mem(s->gpu);
    in->gpu_weight_bytes = sw__vk_weight_bytes(s->gpu);
    snprintf(in->device, sizeof in->device, "%s", sw__vk_device(s->gpu));
    snprintf(in->gpu_note, sizeof in->gpu_note, "%s", sw__vk_stop_reason(s->gpu));
    snprintf(in->gpu_converted, sizeof in->gpu_converted, "%s", sw__vk_converted(s->gpu));
    if (in->gpu_converted[0])
        sw_log(SW_LOG_INFO, "GPU", "no shader for %s: converted to F16 at upload (more device memory and bandwidth)",
               in->gpu_converted);
    char b1[32], b2[32];
    if (!s->gpu_n) {
        sw_log(SW_LOG_WARN, "GPU", "%s: no layer on the device (%s): computing on the CPU", in->device, in->gpu_note);
        return;
    }
    snprintf(in->backend, sizeof in->backend, "vulkan");
    const uint32_t last = in->layer_first + s->gpu_n - 1;
    uint32_t moe_first = in->layer_first; /* deepseek2's leading layers are dense */
    while (moe_first <= last && !s->m.ld[moe_first].is_moe) moe_first++;
    if (in->n_expert && moe_first <= last)
        sw_log(SW_LOG_INFO, "GPU", "mixture of experts (%u, %u per token): the router, the top-k choice and the chosen "
               "experts' matmuls of layers %u-%u run on the device", in->n_expert, in->n_expert_used, moe_first, last);
    if (last == in->layer_last)
        sw_log(SW_LOG_INFO, "GPU", "layers %u-%u%s on %s (%s of weights, device memory %s); embeddings%s on the CPU%s%s",
               in->layer_first, last, sw__vk_logits_rows(s->gpu) ? " and the logits" : "", in->device,
               sw_fmt_bytes(in->gpu_weight_bytes, b1, sizeof b1), sw_fmt_bytes(in->device_mem, b2, sizeof b2),
               in->gives_logits && !sw__vk_logits_rows(s->gpu) ? " and logits" : "", in->gpu_note[0] ? ": " : "",
               in->gpu_note);
    else
        sw_log(SW_LOG_INFO, "GPU", "layers %u-%u on %s (%s of weights), layers %u-%u on the CPU (%s)", in->layer_first, last,
               in->device, sw_fmt_bytes(in->gpu_weight_bytes, b1, sizeof b1), last + 1, in->layer_last, in->gpu_note);
}

int sw_stage_open_gguf(struct sw_gguf *g, const struct sw_stage_opts *opts, struct sw_stage **out,
                       char *err, size_t err_len)
{
    static const struct sw_stage_opts defaults = { .layer_first = -1, .layer_last = -1 };
    const struct sw_stage_opts *o = opts ? opts : &defaults;
    *out = NULL;
    if (err && err_len) err[0] = 0;
    if (o->backend && strcmp(o->backend, "cpu")) {
        if (err && err_len) snprintf(err, err_len, "backend '%s' is not available (this build has: cpu)", o->backend);
        return SW_EUNSUPPORTED;
    }
    if (o->max_batch > MAX_MAX_BATCH || o->max_seqs > MAX_MAX_SEQS) {
        if (err && err_len) snprintf(err, err_len, "max_batch (<= %u) or max_seqs (<= %u) too large",
                                     MAX_MAX_BATCH, MAX_MAX_SEQS);
        return SW_EINVAL;
    }
    struct sw_stage *s = calloc(1, sizeof *s);
    if (!s) return SW_ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    int rc = sw__model_load(&s->m, g, o, err, err_len);
    if (rc) {
        sw__model_release(&s->m);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return rc;
    }
    struct sw_stage_info *in = &s->m.info;
    if (o->share_pool && o->share_pool->pool) {
        s->pool = o->share_pool->pool;
        s->n_threads = o->share_pool->n_threads;
    } else {
        int nt = o->n_threads ? (int)o->n_threads : sw_sys_ncpu();
        if (nt < 1) nt = 1;
        if (nt > 256) nt = 256;
        rc = sw_k_pool_new(nt, &s->pool);
        if (rc) {
            if (err && err_len) snprintf(err, err_len, "cannot start %d threads: %s", nt, sw_strerror(rc));
            sw_stage_free(s);
            return rc;
        }
        s->owns_pool = 1;
        s->n_threads = nt;
        if (o->machine_cores) {
            char ce[256] = "";
            int crc = sw_cores_open(o->machine_cores, o->cores_dir, &s->cores, ce, sizeof ce);
            if (crc) /* computing on is better than refusing: only co-located nodes lose */
                sw_log(SW_LOG_WARN, "INFER", "no core sharing with other processes: %s", ce);
            else
                sw_log(SW_LOG_INFO, "INFER", "up to %d threads on the %u cores this machine's nodes share (lease %s)",
                       nt, o->machine_cores, sw_cores_dir(s->cores));
        }
    }
    in->n_threads = (uint32_t)s->n_threads;
    snprintf(in->kernels, sizeof in->kernels, "%s", sw_k_impl_name(sw_k_impl_active()));
    s->max_batch = o->max_batch ? o->max_batch : DEFAULT_MAX_BATCH;
    s->max_seqs = o->max_seqs ? o->max_seqs : DEFAULT_MAX_SEQS;
    s->q_dim = in->n_head * in->head_dim;
    s->kv_dim = in->n_head_kv * in->head_dim;
    size_t B = s->max_batch;
    int oom = 0;
    s->seqs = calloc(s->max_seqs, sizeof *s->seqs);
    if (!s->seqs) oom = 1;
    s->x = scratch(B * in->n_embd, &oom);
    s->xn = scratch(B * SW_MAX(in->n_embd, s->q_dim), &oom);
    s->q = scratch(B * s->q_dim, &oom);
    s->k = scratch(B * s->kv_dim, &oom);
    s->v = scratch(B * s->kv_dim, &oom);
    s->att = scratch(B * s->q_dim, &oom);
    const struct sw__hparams *hp = &s->m.hp;
    size_t ff_max = SW_MAX(hp->n_ff_exp, hp->n_ff_shexp);
    for (uint32_t l = in->layer_first; l <= in->layer_last; l++) ff_max = SW_MAX(ff_max, s->m.ld[l].n_ff);
    s->gate = scratch(B * ff_max, &oom);
    s->up = scratch(B * ff_max, &oom);
    s->ffo = scratch(B * in->n_embd, &oom);
    if (hp->moe) {
        s->router = scratch(B * hp->n_expert, &oom);
        s->sel = calloc(B * hp->n_expert_used, sizeof *s->sel);
        s->sel_w = scratch(B * hp->n_expert_used, &oom);
        s->moe_y = scratch(B * in->n_embd, &oom);
        s->ex_tok = calloc(B * hp->n_expert_used, sizeof *s->ex_tok);
        s->ex_w = scratch(B * hp->n_expert_used, &oom);
        s->ex_at = calloc((size_t)hp->n_expert + 1, sizeof *s->ex_at);
        s->ex_ops = calloc(2 * (size_t)hp->n_expert, sizeof *s->ex_ops);
        if (!s->sel || !s->ex_tok || !s->ex_at || !s->ex_ops) oom = 1;
    }
    if (hp->mla) {
        const size_t kmla = hp->qk_nope + in->n_rot, R = hp->kv_lora_rank;
        s->mla_qa = scratch(B * hp->q_lora_rank, &oom);
        s->mla_q = scratch(B * in->n_head * kmla, &oom);
        s->mla_in = scratch(B * SW_MAX((size_t)hp->qk_nope, R), &oom);
        s->mla_out = scratch(B * SW_MAX(R, (size_t)hp->v_head), &oom);
        s->mla_o = scratch(B * in->n_head * hp->v_head, &oom);
    }
    s->rope = scratch(B * in->n_rot, &oom);
    if (s->m.rope_inv_freq_swa) s->rope_swa = scratch(B * in->n_rot, &oom);
    /* Attention scratch per thread, for a block of att_tb tokens x the query heads of one
     * KV head: queries, scores (n_ctx each), probabilities (n_ctx each), outputs. */
    const uint32_t group = in->n_head / in->n_head_kv;
    uint64_t tb = (1u << 18) / ((uint64_t)group * in->n_ctx);
    s->att_tb = (uint32_t)SW_MAX((uint64_t)1, SW_MIN(tb, (uint64_t)s->max_batch));
    const size_t rows = (size_t)s->att_tb * group;
    s->att_per_thread = rows * (2 * (size_t)in->head_dim + 2 * (size_t)in->n_ctx) + 16;
    s->att_scratch = scratch((size_t)s->n_threads * s->att_per_thread, &oom);
    uint32_t chunks = ((uint32_t)s->n_threads + in->n_head_kv - 1) / in->n_head_kv;
    s->att_chunks = SW_MAX(1u, SW_MIN(chunks, group));
    s->tok_kv = calloc(B, sizeof *s->tok_kv);
    s->tok_pos = calloc(B, sizeof *s->tok_pos);
    if (!s->tok_kv || !s->tok_pos) oom = 1;
    if (oom) {
        if (err && err_len) snprintf(err, err_len, "out of memory for the stage's scratch buffers");
        sw_stage_free(s);
        return SW_ENOMEM;
    }
    if (o->gpu && *o->gpu && strcmp(o->gpu, "off")) gpu_open(s, o);
    if (!o->no_prefault) prefault(s->m.map_lo, s->m.map_hi);
    char wb[32];
    sw_log(SW_LOG_DEBUG, "INFER", "stage %s layers %u-%u of %u (%s weights, %s, %d threads)",
           in->arch, in->layer_first, in->layer_last, in->n_layers,
           sw_fmt_bytes(in->weight_bytes, wb, sizeof wb), sw_k_impl_name(sw_k_impl_active()),
           s->n_threads);
    *out = s;
    return 0;
}

int sw_stage_open(const char *path, const struct sw_stage_opts *opts, struct sw_stage **out,
                  char *err, size_t err_len)
{
    *out = NULL;
    struct sw_gguf *g = NULL;
    int rc = sw_gguf_open(path, &g, err, err_len);
    if (rc) return rc;
    rc = sw_stage_open_gguf(g, opts, out, err, err_len);
    if (rc) {
        sw_gguf_close(g);
        return rc;
    }
    (*out)->m.owns_g = 1;
    return 0;
}

void sw_stage_free(struct sw_stage *s)
{
    if (!s) return;
    uint32_t nl = s->m.info.layer_last - s->m.info.layer_first + 1;
    if (s->seqs)
        for (uint32_t i = 0; i < s->max_seqs; i++)
            if (s->seqs[i].live || s->seqs[i].k) sw__kv_release(&s->seqs[i], nl, s->kv_dim);
    free(s->seqs);
    sw__vk_free(s->gpu);
    free(s->gpu_stale);
    if (s->owns_pool) sw_k_pool_free(s->pool);
    sw_cores_close(s->cores);
    free(s->x);
    free(s->xn);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->att);
    free(s->gate);
    free(s->up);
    free(s->ffo);
    free(s->router);
    free(s->sel);
    free(s->sel_w);
    free(s->moe_y);
    free(s->ex_tok);
    free(s->ex_w);
    free(s->ex_at);
    free(s->ex_ops);
    free(s->mla_qa);
    free(s->mla_q);
    free(s->mla_in);
    free(s->mla_out);
    free(s->mla_o);
    free(s->rope);
    free(s->rope_swa);
    free(s->att_scratch);
    free(s->tok_kv);
    free(s->tok_pos);
    free(s->logits);
    sw__model_release(&s->m);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

const struct sw_stage_info *sw_stage_info(const struct sw_stage *s)
{
    return &s->m.info;
}

const char *sw_stage_errmsg(const struct sw_stage *s)
{
    return s->errmsg;
}

size_t sw_stage_out_floats(const struct sw_stage *s, uint32_t n_tokens, unsigned flags)
{
    const struct sw_stage_info *in = &s->m.info;
    if (!in->gives_logits) return (size_t)n_tokens * in->n_embd;
    return (size_t)((flags & SW_STAGE_LOGITS_ALL) ? n_tokens : 1) * in->n_vocab;
}

/* ------------------------------------------------------------------ sequences */

static struct sw__kv *seq_find(struct sw_stage *s, uint64_t id)
{
    for (uint32_t i = 0; i < s->max_seqs; i++)
        if (s->seqs[i].live && s->seqs[i].id == id) return &s->seqs[i];
    return NULL;
}

int sw_stage_seq_new(struct sw_stage *s, uint64_t id)
{
    pthread_mutex_lock(&s->lock);
    int rc = 0;
    if (seq_find(s, id)) {
        rc = set_err(s, SW_EEXIST, "sequence %llu already exists", (unsigned long long)id);
    } else if (s->n_live >= s->max_seqs) {
        rc = set_err(s, SW_EBUSY, "all %u sequence slots are in use", s->max_seqs);
    } else {
        for (uint32_t i = 0; i < s->max_seqs; i++) {
            if (s->seqs[i].live) continue;
            /* A free slot keeps no memory (freed in seq_free). */
            s->seqs[i].live = 1;
            s->seqs[i].id = id;
            s->seqs[i].n_past = 0;
            if (s->gpu_stale) s->gpu_stale[i] = 0;
            s->n_live++;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int sw_stage_seq_reset(struct sw_stage *s, uint64_t id)
{
    pthread_mutex_lock(&s->lock);
    struct sw__kv *kv = seq_find(s, id);
    int rc = 0;
    if (kv) {
        kv->n_past = 0;
        if (s->gpu_stale) s->gpu_stale[kv - s->seqs] = 0;
    } else rc = set_err(s, SW_ENOTFOUND, "no sequence %llu", (unsigned long long)id);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void sw_stage_seq_free(struct sw_stage *s, uint64_t id)
{
    pthread_mutex_lock(&s->lock);
    struct sw__kv *kv = seq_find(s, id);
    if (kv) {
        uint32_t nl = s->m.info.layer_last - s->m.info.layer_first + 1;
        s->kv_bytes -= sw__kv_release(kv, nl, s->kv_dim);
        s->n_live--;
        if (s->gpu) sw__vk_seq_free(s->gpu, (uint32_t)(kv - s->seqs));
        if (s->gpu_stale) s->gpu_stale[kv - s->seqs] = 0;
    }
    pthread_mutex_unlock(&s->lock);
}

int sw_stage_seq_len(struct sw_stage *s, uint64_t id, uint32_t *n_out)
{
    pthread_mutex_lock(&s->lock);
    struct sw__kv *kv = seq_find(s, id);
    int rc = 0;
    if (kv) *n_out = kv->n_past;
    else rc = set_err(s, SW_ENOTFOUND, "no sequence %llu", (unsigned long long)id);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int sw_stage_seq_copy(struct sw_stage *s, uint64_t dst, uint64_t src, uint32_t n)
{
    pthread_mutex_lock(&s->lock);
    const struct sw_stage_info *info = &s->m.info;
    struct sw__kv *d = seq_find(s, dst), *r = seq_find(s, src);
    int rc = 0;
    if (!d || !r) {
        rc = set_err(s, SW_ENOTFOUND, "no sequence %llu", (unsigned long long)(d ? src : dst));
    } else if (d == r || n > r->n_past) {
        rc = set_err(s, SW_EINVAL, "cannot copy %u positions of sequence %llu (%u cached)", n,
                     (unsigned long long)src, r->n_past);
    } else if (n && s->gpu_stale && s->gpu_stale[r - s->seqs]) {
        rc = set_err(s, SW_ESTATE, "sequence %llu's cache was lost with the GPU", (unsigned long long)src);
    } else {
        uint64_t grown = 0;
        rc = sw__kv_copy(d, r, info->layer_last - info->layer_first + 1, s->gpu_n, info->n_head_kv, info->head_dim,
                         n, info->n_ctx, &grown);
        s->kv_bytes += grown;
        if (rc) set_err(s, rc, "cannot copy %u cached positions: %s", n, sw_strerror(rc));
        char msg[200];
        if (!rc && n && s->gpu_n && (rc = sw__vk_seq_copy(s->gpu, (uint32_t)(d - s->seqs), (uint32_t)(r - s->seqs), n,
                                                          msg, sizeof msg))) {
            d->n_past = 0; /* the host layers' copy alone is no cache */
            if (rc == SW_ESTATE) gpu_lost(s, msg);
            set_err(s, rc, "cannot copy %u cached positions on the GPU: %s", n, msg);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int sw_stage_seq_rename(struct sw_stage *s, uint64_t from, uint64_t to)
{
    pthread_mutex_lock(&s->lock);
    struct sw__kv *kv = seq_find(s, from);
    int rc = 0;
    if (!kv) rc = set_err(s, SW_ENOTFOUND, "no sequence %llu", (unsigned long long)from);
    else if (from != to && seq_find(s, to)) rc = set_err(s, SW_EEXIST, "sequence %llu already exists", (unsigned long long)to);
    else kv->id = to;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

uint64_t sw_stage_seq_bytes(struct sw_stage *s, uint64_t seq)
{
    pthread_mutex_lock(&s->lock);
    struct sw__kv *kv = seq_find(s, seq);
    const uint32_t nl = s->m.info.layer_last - s->m.info.layer_first + 1; /* host layers: l0 on */
    uint64_t b = kv && kv->k ? (uint64_t)kv->cap * s->kv_dim * sizeof(sw_f16) * 2 * (nl - SW_MIN(kv->l0, nl)) : 0;
    pthread_mutex_unlock(&s->lock);
    return b;
}

int sw__stage_kv_read(struct sw_stage *s, uint64_t seq, uint32_t li, uint32_t pos, sw_f16 *k_out, sw_f16 *v_out)
{
    pthread_mutex_lock(&s->lock);
    const struct sw_stage_info *info = &s->m.info;
    const uint32_t hd = info->head_dim;
    struct sw__kv *kv = seq_find(s, seq);
    int rc = 0;
    if (!kv) rc = set_err(s, SW_ENOTFOUND, "no sequence %llu", (unsigned long long)seq);
    else if (li > info->layer_last - info->layer_first || pos >= kv->n_past || !kv->k || li < kv->l0)
        rc = set_err(s, SW_ERANGE, "no layer %u / position %u in sequence %llu's host cache", li, pos,
                     (unsigned long long)seq);
    else
        for (uint32_t g = 0; g < info->n_head_kv; g++)
            for (uint32_t d = 0; d < hd; d++) {
                k_out[g * hd + d] = kv->k[li][((size_t)g * kv->cap + pos) * hd + d];
                v_out[g * hd + d] = kv->v[li][((size_t)g * hd + d) * kv->cap + pos];
            }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

uint32_t sw_stage_n_seqs(struct sw_stage *s)
{
    pthread_mutex_lock(&s->lock);
    uint32_t n = s->n_live;
    pthread_mutex_unlock(&s->lock);
    return n;
}

uint64_t sw_stage_kv_bytes(struct sw_stage *s)
{
    return atomic_load_explicit(&s->kv_bytes, memory_order_relaxed); /* no lock: a step may hold it */
}

/* ------------------------------------------------------------------ parallel row ops */

/* y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w      (t < n rows of n_embd) */
static void rmsnorm_row(const float *x, const float *w, float *y, int64_t n, float eps)
{
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const float scale = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

struct norm_task {
    const float *x, *w;
    float *y;
    int64_t n_rows, n;
    float eps;
};

static void norm_run(void *arg, int ith, int nth)
{
    const struct norm_task *t = arg;
    int64_t b, e;
    sw_k_split(t->n_rows, 1, ith, nth, &b, &e);
    for (int64_t r = b; r < e; r++) rmsnorm_row(t->x + r * t->n, t->w, t->y + r * t->n, t->n, t->eps);
}

static void rmsnorm(struct sw_stage *s, const float *x, const float *w, float *y, int64_t n_rows)
{
    struct norm_task t = { x, w, y, n_rows, s->m.info.n_embd, s->m.info.rms_eps };
    if (n_rows == 1) norm_run(&t, 0, 1);
    else sw_k_pool_run(s->pool, norm_run, &t);
}

/* gate[i] = act(gate[i]) * up[i] over n elements: SwiGLU (silu) or GeGLU (gelu, tanh
 * approximation as llama.cpp's ggml_gelu). */
struct swiglu_task {
    float *gate;
    const float *up;
    int64_t n;
    enum sw__act act;
};

static void swiglu_run(void *arg, int ith, int nth)
{
    const struct swiglu_task *t = arg;
    int64_t b, e;
    sw_k_split(t->n, 16, ith, nth, &b, &e);
    float *g = t->gate;
    const float *u = t->up;
    if (t->act == SW__ACT_SWIGLU_OAI) { /* gpt-oss: x = min(g, 7), y = clamp(u, -7, 7) */
        for (int64_t i = b; i < e; i++) {
            const float x = fminf(g[i], 7.0f), y = fminf(fmaxf(u[i], -7.0f), 7.0f);
            g[i] = x / (1.0f + expf(-1.702f * x)) * (y + 1.0f);
        }
        return;
    }
    if (t->act == SW__ACT_GEGLU) {
        for (int64_t i = b; i < e; i++) {
            const float x = g[i];
            g[i] = 0.5f * x * (1.0f + tanhf(0.7978845608f * x * (1.0f + 0.044715f * x * x))) * u[i];
        }
        return;
    }
    for (int64_t i = b; i < e; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* ------------------------------------------------------------------ attention */

#define MAX_SEGS 64u
#define MAX_SEGS_STEP MAX_SEGS
/* A run of consecutive tokens of one sequence within a step. */
struct seg {
    struct sw__kv *kv;
    uint32_t pos, n;   /* positions pos .. pos+n-1 */
    const void *in;    /* its first token's input */
    float *out;        /* hidden: n x n_embd; logits: n x n_vocab (all) or n_vocab (last) */
    int all;           /* logits for every token */
    int want_logits;   /* the sequence's last token is in this run */
};

struct attn_task {
    struct sw_stage *s;
    uint32_t li;       /* layer index within the stage */
    const struct seg *sg;
    uint32_t n_seg;
};

/* Attention of one step, as two matrix products per KV head g and block of tokens, over
 * that sequence's cache (the kernels' F16 matmul, single-threaded inside the task):
 *   S = K_g · Q        S[t,h][p] = q_t,h · k_p / sqrt(head_dim),  p < P_max
 *   P = softmax(S)     row (t,h) over p <= P_t (causal: P_t = position of token t), 0 after
 *   O = Vᵀ_g · P       O[t,h][d] = sum_p P[t,h][p] v_p[d]
 * where h runs over the query heads that share KV head g (grouped-query attention). The
 * value product runs over the cache's whole capacity (its unused entries are 0 or stale
 * finite values, weighted 0). Tasks are (KV head, slice of its query heads), dealt
 * round-robin to the threads. */
static void attn_run(void *arg, int ith, int nth)
{
    const struct attn_task *a = arg;
    struct sw_stage *s = a->s;
    const struct sw_stage_info *in = &s->m.info;
    const int64_t hd = in->head_dim, qd = s->q_dim;
    const uint32_t group = in->n_head / in->n_head_kv, chunks = s->att_chunks;
    const struct sw__hparams *hp = &s->m.hp;
    const float scale = hp->attn_scale, cap = hp->attn_softcap;
    /* sliding window: a query at position q sees keys q - n_swa + 1 .. q (llama.cpp masks
     * q - k >= n_swa) */
    const uint32_t window = s->m.ld[in->layer_first + a->li].is_swa ? hp->n_swa : 0;
    const float *sinks = s->m.layers[a->li].sinks;
    float *qb = s->att_scratch + (size_t)ith * s->att_per_thread;
    float *ob = qb + (size_t)s->att_tb * group * hd;
    float *sb = ob + (size_t)s->att_tb * group * hd;
    float *pb = sb + (size_t)s->att_tb * group * in->n_ctx;
    const uint32_t n_tasks = in->n_head_kv * chunks;
    for (uint32_t task = (uint32_t)ith; task < n_tasks; task += (uint32_t)nth) {
        const uint32_t g = task / chunks, c = task % chunks;
        const uint32_t h0 = g * group + c * group / chunks, h1 = g * group + (c + 1) * group / chunks;
        const uint32_t hc = h1 - h0;
        uint32_t t0 = 0; /* first token of the segment within the step */
        for (uint32_t si = 0; si < a->n_seg; t0 += a->sg[si].n, si++) {
            const struct seg *sg = &a->sg[si];
            const uint32_t kcap = sg->kv->cap;
            const sw_f16 *kg = sg->kv->k[a->li] + (size_t)g * kcap * hd;
            const sw_f16 *vg = sg->kv->v[a->li] + (size_t)g * hd * kcap;
            for (uint32_t b0 = 0; b0 < sg->n; b0 += s->att_tb) {
                const uint32_t nb = SW_MIN(s->att_tb, sg->n - b0);
                const uint32_t n_max = sg->pos + b0 + nb; /* keys 0 .. n_max-1 */
                const int64_t rows = (int64_t)nb * hc;
                for (uint32_t i = 0; i < nb; i++)
                    memcpy(qb + (size_t)i * hc * hd, s->q + (size_t)(t0 + b0 + i) * qd + (size_t)h0 * hd,
                           (size_t)hc * hd * sizeof(float));
                sw_k_matmul(NULL, kg, SW_TYPE_F16, n_max, hd, qb, rows, sb);
                for (int64_t r = 0; r < rows; r++) {
                    const uint32_t lim = sg->pos + b0 + (uint32_t)(r / hc) + 1;
                    const uint32_t lo = window && lim > window ? lim - window : 0;
                    float *srow = sb + (size_t)r * n_max;
                    float *prow = pb + (size_t)r * kcap;
                    if (cap > 0) /* soft-capping: cap * tanh(score / cap), then softmax */
                        for (uint32_t p = lo; p < lim; p++) srow[p] = cap * tanhf(srow[p] * scale / cap) / scale;
                    /* a sink (gpt-oss) is one more logit per head in the denominator */
                    const float *sink = sinks ? &sinks[h0 + (uint32_t)(r % hc)] : NULL;
                    float mx = sink ? *sink : -INFINITY;
                    for (uint32_t p = lo; p < lim; p++) mx = fmaxf(mx, srow[p] * scale);
                    float sum = sink ? expf(*sink - mx) : 0;
                    for (uint32_t p = lo; p < lim; p++) {
                        const float e = expf(srow[p] * scale - mx);
                        prow[p] = e;
                        sum += e;
                    }
                    memset(prow, 0, (size_t)lo * sizeof *prow);
                    sw_k_scale_f32(lim - lo, 1.0f / sum, prow + lo);
                    memset(prow + lim, 0, (size_t)(kcap - lim) * sizeof *prow);
                }
                sw_k_matmul(NULL, vg, SW_TYPE_F16, hd, kcap, pb, rows, ob);
                for (uint32_t i = 0; i < nb; i++)
                    memcpy(s->att + (size_t)(t0 + b0 + i) * qd + (size_t)h0 * hd, ob + (size_t)i * hc * hd,
                           (size_t)hc * hd * sizeof(float));
            }
        }
    }
}

/* ------------------------------------------------------------------ RoPE */

/* cos/sin of theta_i(p) = p * inv_freq[i] for the step's token positions. */
static void rope_table(struct sw_stage *s, uint32_t n_tokens, const float *inv_freq, float *out)
{
    const uint32_t half = s->m.info.n_rot / 2;
    const float mscale = s->m.hp.rope_mscale; /* 1, or YaRN's / longrope's magnitude */
    for (uint32_t t = 0; t < n_tokens; t++) {
        float *c = out + (size_t)t * s->m.info.n_rot, *sn = c + half;
        const float p = (float)s->tok_pos[t];
        for (uint32_t i = 0; i < half; i++) {
            float theta = p * inv_freq[i];
            c[i] = cosf(theta) * mscale;
            sn[i] = sinf(theta) * mscale;
        }
    }
}

static void rope_tables(struct sw_stage *s, uint32_t n_tokens)
{
    rope_table(s, n_tokens, s->m.rope_inv_freq, s->rope);
    if (s->rope_swa) rope_table(s, n_tokens, s->m.rope_inv_freq_swa, s->rope_swa);
}

/* Rotates the first n_rot dimensions of each of n_heads heads of one token's vector.
 * llama GGUFs (converted with Q/K permuted) rotate adjacent pairs (2i, 2i+1); qwen2
 * (NeoX style) rotates (i, i + n_rot/2). */
static void rope_apply_at(const struct sw_stage *s, float *x, uint32_t n_heads, size_t stride, const float *cs)
{
    const struct sw_stage_info *in = &s->m.info;
    const uint32_t half = in->n_rot / 2;
    const float *c = cs, *sn = cs + half;
    for (uint32_t h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * stride;
        if (in->rope_neox) {
            for (uint32_t i = 0; i < half; i++) {
                const float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * sn[i];
                v[i + half] = a * sn[i] + b * c[i];
            }
        } else {
            for (uint32_t i = 0; i < half; i++) {
                const float a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * c[i] - b * sn[i];
                v[2 * i + 1] = a * sn[i] + b * c[i];
            }
        }
    }
}

static void rope_apply(const struct sw_stage *s, float *x, uint32_t n_heads, const float *cs)
{
    rope_apply_at(s, x, n_heads, s->m.info.head_dim, cs);
}

/* ------------------------------------------------------------------ forward */

static void add_bias(float *y, const float *b, int64_t n_rows, int64_t n)
{
    if (!b) return;
    for (int64_t r = 0; r < n_rows; r++)
        for (int64_t i = 0; i < n; i++) y[r * n + i] += b[i];
}

static void add_into(float *x, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

static int mm(struct sw_stage *s, const struct sw__w *w, const float *x, int64_t n_tokens, float *y)
{
    int rc = sw_k_matmul(s->pool, w->data, w->type, w->rows, w->cols, x, n_tokens, y);
    if (rc) return set_err(s, rc, "matmul over %s failed: %s", w->name ? w->name : "a weight", sw_strerror(rc));
    return 0;
}

/* One step: at most max_batch tokens of one or more sequences (each with room in its
 * cache), all through the stage's layers in one pass over the weights. */
/* How often a long forward looks at the core lease (a flock probe, ~1 µs): often enough
 * that a waiting node gets a core within a matmul or two. */
#define CORES_CHECK_US 200u
/* A step expected to take less than this runs on one thread without the lease. */
#define SHORT_STEP_US 300u

/* Between two matmuls of a forward holding a core lease: give half the cores to a node that
 * waits for one, or take back cores that came free (at most every CORES_CHECK_US). */
static void cores_tick(struct sw_stage *s)
{
    if (!s->leased) return; /* no lease, or a short step computing unclaimed */
    uint64_t now = sw_time_us();
    if (now - s->cores_checked_us < CORES_CHECK_US) return;
    s->cores_checked_us = now;
    sw_k_pool_set_active(s->pool, (int)sw_cores_rebalance(s->cores, (unsigned)s->n_threads));
}

/* attn hook, grouped-query attention: xn (T x n_embd, normed) in, Wo · attn out in xn.
 *   q, k, v = Wq·xn (+bq), Wk·xn (+bk), Wv·xn (+bv); q, k per-head RMSNorm (qk_norm);
 *   rope(q), rope(k); k, v into the cache; softmax(q·k/sqrt(hd)) · v. */
static int attn_gqa(struct sw_stage *s, const struct sw__layer *ly, uint32_t l, const struct seg *sg,
                    uint32_t n_seg, uint32_t T)
{
    const struct sw_stage_info *info = &s->m.info;
    const int64_t E = info->n_embd, qd = s->q_dim, kvd = s->kv_dim, hd = info->head_dim;
    const uint32_t li = l - info->layer_first;
    struct sw_k_mm_op qkv[3] = {
        { ly->wq.data, ly->wq.type, ly->wq.rows, s->q },
        { ly->wk.data, ly->wk.type, ly->wk.rows, s->k },
        { ly->wv.data, ly->wv.type, ly->wv.rows, s->v },
    };
    int rc = sw_k_matmul_multi(s->pool, qkv, 3, E, s->xn, T);
    if (rc) return set_err(s, rc, "q/k/v matmul of layer %u failed: %s", l, sw_strerror(rc));
    add_bias(s->q, ly->bq, T, qd);
    add_bias(s->k, ly->bk, T, kvd);
    add_bias(s->v, ly->bv, T, kvd);
    for (uint32_t t = 0; t < T; t++) {
        const float *cs = (s->m.ld[l].is_swa && s->rope_swa ? s->rope_swa : s->rope) + (size_t)t * info->n_rot;
        const struct sw__kv *kv = s->tok_kv[t];
        const size_t p = s->tok_pos[t], cap = kv->cap;
        if (ly->q_norm) {
            for (uint32_t h = 0; h < info->n_head; h++)
                rmsnorm_row(s->q + t * qd + h * hd, ly->q_norm, s->q + t * qd + h * hd, hd, info->rms_eps);
            for (uint32_t h = 0; h < info->n_head_kv; h++)
                rmsnorm_row(s->k + t * kvd + h * hd, ly->k_norm, s->k + t * kvd + h * hd, hd, info->rms_eps);
        }
        rope_apply(s, s->q + t * qd, info->n_head, cs);
        rope_apply(s, s->k + t * kvd, info->n_head_kv, cs);
        for (uint32_t g = 0; g < info->n_head_kv; g++) {
            sw_k_f32_to_f16_row(s->k + t * kvd + g * hd, kv->k[li] + (g * cap + p) * hd, hd);
            sw_f16 *vt = kv->v[li] + (size_t)g * hd * cap + p;
            const float *v = s->v + t * kvd + g * hd;
            for (int64_t d = 0; d < hd; d++) vt[(size_t)d * cap] = sw_k_f32_to_f16(v[d]);
        }
    }
    struct attn_task atk = { s, li, sg, n_seg };
    sw_k_pool_run(s->pool, attn_run, &atk);
    cores_tick(s);
    if ((rc = mm(s, &ly->wo, s->att, T, s->xn))) return rc;
    add_bias(s->xn, ly->bo, T, E);
    return 0;
}

/* ffn hook, dense SwiGLU: out (T x n_embd) = Wdown · (silu(Wgate·in) * Wup·in). Also one
 * expert (weights offset into the stack) and the shared expert. */
static int ffn_dense_b(struct sw_stage *s, const struct sw__w *wg, const struct sw__w *wu,
                       const struct sw__w *wd, const float *bg, const float *bu, const float *bd, uint32_t l,
                       const float *in, uint32_t T, float *out)
{
    const int64_t E = s->m.info.n_embd, F = wg->rows;
    struct sw_k_mm_op gu[2] = {
        { wg->data, wg->type, wg->rows, s->gate },
        { wu->data, wu->type, wu->rows, s->up },
    };
    int rc = sw_k_matmul_multi(s->pool, gu, 2, E, in, T);
    if (rc) return set_err(s, rc, "gate/up matmul of layer %u failed: %s", l, sw_strerror(rc));
    add_bias(s->gate, bg, T, F);
    add_bias(s->up, bu, T, F);
    struct swiglu_task sw = { s->gate, s->up, (int64_t)T * F, s->m.hp.act };
    sw_k_pool_run(s->pool, swiglu_run, &sw);
    cores_tick(s);
    if ((rc = mm(s, wd, s->gate, T, out))) return rc;
    add_bias(out, bd, T, E);
    return 0;
}

static int ffn_dense(struct sw_stage *s, const struct sw__w *wg, const struct sw__w *wu,
                     const struct sw__w *wd, uint32_t l, const float *in, uint32_t T, float *out)
{
    return ffn_dense_b(s, wg, wu, wd, NULL, NULL, NULL, l, in, T, out);
}

/* Expert e's matrix of a stack, as a plain weight. */
static struct sw__w expert_w(const struct sw__wx *x, uint32_t e)
{
    struct sw__w w = { (const uint8_t *)x->data + (size_t)e * x->stride, x->type, x->rows, x->cols, x->name };
    return w;
}

/* attn hook, deepseek2's multi-head latent attention in its absorbed form (llama.cpp's
 * too): xn (T x n_embd, normed) in, Wo · attn out in xn.
 *   q = Wq_b·norm(Wq_a·xn) (or Wq·xn), per head q_nope ‖ q_pe; kv_c ‖ k_pe = Wkv_a·xn,
 *   kv_c normed, k_pe and q_pe roped; the cache's one KV head holds kv_c ‖ k_pe;
 *   query head h = (W_k_b[h]·q_nope) ‖ q_pe, so q·k = q_nope·k_nope + q_pe·k_pe;
 *   o_h = W_v_b[h] · (softmax · kv_c), the heads' o into Wo. */
static int attn_mla(struct sw_stage *s, const struct sw__layer *ly, uint32_t l, const struct seg *sg,
                    uint32_t n_seg, uint32_t T)
{
    const struct sw_stage_info *info = &s->m.info;
    const struct sw__hparams *hp = &s->m.hp;
    const uint32_t H = info->n_head, nr = info->n_rot, nope = hp->qk_nope, R = hp->kv_lora_rank, VH = hp->v_head;
    const uint32_t QR = hp->q_lora_rank;
    const size_t kmla = (size_t)nope + nr, qd = s->q_dim, kd = s->kv_dim;
    const uint32_t li = l - info->layer_first;
    struct sw_k_mm_op ops[2] = {
        { ly->wkv_a.data, ly->wkv_a.type, ly->wkv_a.rows, s->k },
        { QR ? ly->wq_a.data : ly->wq_b.data, QR ? ly->wq_a.type : ly->wq_b.type, QR ? ly->wq_a.rows : ly->wq_b.rows,
          QR ? s->mla_qa : s->mla_q },
    };
    int rc = sw_k_matmul_multi(s->pool, ops, 2, info->n_embd, s->xn, T);
    if (rc) return set_err(s, rc, "q/kv matmul of layer %u failed: %s", l, sw_strerror(rc));
    if (QR) {
        for (uint32_t t = 0; t < T; t++)
            rmsnorm_row(s->mla_qa + (size_t)t * QR, ly->q_a_norm, s->mla_qa + (size_t)t * QR, QR, info->rms_eps);
        if ((rc = mm(s, &ly->wq_b, s->mla_qa, T, s->mla_q))) return rc;
    }
    for (uint32_t t = 0; t < T; t++) {
        const float *cs = s->rope + (size_t)t * nr;
        float *k = s->k + t * kd, *q = s->mla_q + t * H * kmla;
        rmsnorm_row(k, ly->kv_a_norm, k, R, info->rms_eps);
        rope_apply_at(s, k + R, 1, 0, cs);
        rope_apply_at(s, q + nope, H, kmla, cs);
        for (uint32_t h = 0; h < H; h++)
            memcpy(s->q + t * qd + h * kd + R, q + h * kmla + nope, nr * sizeof(float));
        const struct sw__kv *kv = s->tok_kv[t];
        const size_t p = s->tok_pos[t], cap = kv->cap;
        sw_k_f32_to_f16_row(k, kv->k[li] + p * kd, (int64_t)kd);
        sw_f16 *vt = kv->v[li] + p;
        for (size_t d = 0; d < kd; d++) vt[d * cap] = sw_k_f32_to_f16(k[d]);
    }
    for (uint32_t h = 0; h < H; h++) { /* absorb: the heads' latent queries */
        for (uint32_t t = 0; t < T; t++)
            memcpy(s->mla_in + (size_t)t * nope, s->mla_q + t * H * kmla + h * kmla, nope * sizeof(float));
        const struct sw__w wk = expert_w(&ly->wk_b, h);
        if ((rc = mm(s, &wk, s->mla_in, T, s->mla_out))) return rc;
        for (uint32_t t = 0; t < T; t++)
            memcpy(s->q + t * qd + h * kd, s->mla_out + (size_t)t * R, R * sizeof(float));
    }
    struct attn_task atk = { s, li, sg, n_seg };
    sw_k_pool_run(s->pool, attn_run, &atk);
    cores_tick(s);
    for (uint32_t h = 0; h < H; h++) { /* decompress: each head's value */
        for (uint32_t t = 0; t < T; t++)
            memcpy(s->mla_in + (size_t)t * R, s->att + t * qd + h * kd, R * sizeof(float));
        const struct sw__w wv = expert_w(&ly->wv_b, h);
        if ((rc = mm(s, &wv, s->mla_in, T, s->mla_out))) return rc;
        for (uint32_t t = 0; t < T; t++)
            memcpy(s->mla_o + ((size_t)t * H + h) * VH, s->mla_out + (size_t)t * VH, VH * sizeof(float));
    }
    return mm(s, &ly->wo, s->mla_o, T, s->xn);
}

/* Router of one token (llama.cpp's build_moe_ffn with softmax gating): p = softmax(logits)
 * over all experts; the k largest (the lower index first on ties), weights p[chosen],
 * renormalised to sum 1 when the architecture says so, times expert_weights_scale. */
static void route(const struct sw__hparams *hp, const float *sel_bias, float *logits, uint32_t *sel, float *w)
{
    const uint32_t n = hp->n_expert, k = hp->n_expert_used;
    if (hp->gating == SW__GATING_SOFTMAX) {
        float mx = -INFINITY;
        for (uint32_t e = 0; e < n; e++) mx = fmaxf(mx, logits[e]);
        double sum = 0;
        for (uint32_t e = 0; e < n; e++) sum += (logits[e] = expf(logits[e] - mx));
        for (uint32_t e = 0; e < n; e++) logits[e] = (float)(logits[e] / sum);
    } else if (hp->gating == SW__GATING_SIGMOID) {
        for (uint32_t e = 0; e < n; e++) logits[e] = 1.0f / (1.0f + expf(-logits[e]));
    }
    /* The choice is by score = p + exp_probs_b (DeepSeek V3; the weights stay p), within
     * the n_group_used groups whose two best scores sum highest (grouped top-k). */
    float score[4096]; /* n_expert <= 4096 (arch.c) */
    for (uint32_t e = 0; e < n; e++) score[e] = logits[e] + (sel_bias ? sel_bias[e] : 0);
    if (hp->n_group > 1) {
        const uint32_t G = hp->n_group, per = n / G;
        float gs[4096];
        for (uint32_t g = 0; g < G; g++) {
            float a = -INFINITY, b = -INFINITY; /* the two largest */
            for (uint32_t i = 0; i < per; i++) {
                const float v = score[g * per + i];
                if (v > a) {
                    b = a;
                    a = v;
                } else if (v > b) {
                    b = v;
                }
            }
            gs[g] = a + b;
        }
        uint8_t keep[4096] = { 0 };
        for (uint32_t j = 0; j < hp->n_group_used; j++) {
            uint32_t best = UINT32_MAX;
            for (uint32_t g = 0; g < G; g++)
                if (!keep[g] && (best == UINT32_MAX || gs[g] > gs[best])) best = g;
            keep[best] = 1;
        }
        for (uint32_t e = 0; e < n; e++)
            if (!keep[e / per]) score[e] = -INFINITY;
    }
    for (uint32_t j = 0; j < k; j++) {
        uint32_t best = UINT32_MAX;
        for (uint32_t e = 0; e < n; e++) {
            int taken = 0;
            for (uint32_t i = 0; i < j && !taken; i++) taken = sel[i] == e;
            if (!taken && (best == UINT32_MAX || score[e] > score[best])) best = e;
        }
        sel[j] = best;
        w[j] = logits[best];
    }
    if (hp->gating == SW__GATING_SOFTMAX_WEIGHT) { /* softmax over the chosen logits */
        float mx = -INFINITY, ws = 0;
        for (uint32_t j = 0; j < k; j++) mx = fmaxf(mx, w[j]);
        for (uint32_t j = 0; j < k; j++) ws += (w[j] = expf(w[j] - mx));
        for (uint32_t j = 0; j < k; j++) w[j] /= ws;
    }
    if (hp->moe_norm_w) {
        float ws = 0;
        for (uint32_t j = 0; j < k; j++) ws += w[j];
        ws = fmaxf(ws, 6.103515625e-5f); /* as llama.cpp: no division by ~0 */
        for (uint32_t j = 0; j < k; j++) w[j] /= ws;
    }
    if (hp->expert_weights_scale != 0 && hp->expert_weights_scale != 1)
        for (uint32_t j = 0; j < k; j++) w[j] *= hp->expert_weights_scale;
}

/* ffn hook, mixture of experts: xn (T x n_embd, normed) in, ffo out.
 *   ffo[t] = sum_{e chosen for t} w_t,e · expert_e(xn[t])  (+ sigmoid(g·xn[t]) · shared(xn[t]))
 * Tokens are grouped by expert (llama.cpp's mul_mat_id does the same): the (token, expert)
 * slots are sorted by expert, and a batch of up to max_batch slots runs as one grouped
 * gate/up matmul over all its experts, one SwiGLU and one grouped down matmul — three
 * dispatches per batch, not per expert, so 128 experts of ~8 tokens each keep both threads
 * busy. Each chosen expert's rows are read once per batch, experts nobody chose are not
 * touched, and a token's expert outputs are added in ascending expert order whatever the
 * step holds (batch invariance). */
static int ffn_moe(struct sw_stage *s, const struct sw__layer *ly, uint32_t l, uint32_t T)
{
    const struct sw__hparams *hp = &s->m.hp;
    const int64_t E = s->m.info.n_embd, FX = hp->n_ff_exp;
    const uint32_t k = hp->n_expert_used, NE = hp->n_expert;
    int rc = mm(s, &ly->gate_inp, s->xn, T, s->router);
    if (rc) return rc;
    add_bias(s->router, ly->gate_inp_b, T, NE);
    for (uint32_t t = 0; t < T; t++)
        route(hp, ly->exp_probs_b, s->router + (size_t)t * NE, s->sel + (size_t)t * k, s->sel_w + (size_t)t * k);
    /* counting sort of the slots by expert; tokens stay ascending within an expert */
    uint32_t *at = s->ex_at;
    memset(at, 0, ((size_t)NE + 1) * sizeof *at);
    for (size_t i = 0; i < (size_t)T * k; i++) at[s->sel[i] + 1]++;
    for (uint32_t e = 0; e < NE; e++) at[e + 1] += at[e];
    for (size_t i = 0; i < (size_t)T * k; i++) {
        const uint32_t p = at[s->sel[i]]++;
        s->ex_tok[p] = (uint32_t)(i / k);
        s->ex_w[p] = s->sel_w[i];
    }
    for (uint32_t e = NE; e > 0; e--) at[e] = at[e - 1];
    at[0] = 0;
    memset(s->ffo, 0, (size_t)T * E * sizeof *s->ffo);
    const uint32_t cap = s->max_batch; /* slots per batch: gate/up hold B x ff_max >= B x FX, moe_y B x E */
    for (uint32_t e0 = 0; e0 < NE;) {
        const uint32_t base = at[e0];
        uint32_t e1 = e0;
        while (e1 < NE && at[e1 + 1] - base <= cap) e1++;
        if (e1 == e0) /* an expert has <= T <= max_batch slots: never */
            return set_err(s, SW_EINVAL, "layer %u: expert %u has %u tokens, over the batch of %u", l, e0,
                           at[e0 + 1] - at[e0], cap);
        const uint32_t n_slots = at[e1] - base;
        if (!n_slots) {
            e0 = e1;
            continue;
        }
        int n_ops = 0;
        for (uint32_t e = e0; e < e1; e++) {
            const uint32_t n = at[e + 1] - at[e], off = at[e] - base;
            if (!n) continue;
            const struct sw__w wg = expert_w(&ly->gate_exps, e), wu = expert_w(&ly->up_exps, e);
            s->ex_ops[n_ops++] = (struct sw_k_mm_gop){ wg.data, wg.type, FX, s->gate + (size_t)off * FX,
                                                       s->ex_tok + at[e], 0, n };
            s->ex_ops[n_ops++] = (struct sw_k_mm_gop){ wu.data, wu.type, FX, s->up + (size_t)off * FX,
                                                       s->ex_tok + at[e], 0, n };
        }
        rc = sw_k_matmul_grouped(s->pool, s->ex_ops, n_ops, E, s->xn, T);
        if (rc) return set_err(s, rc, "expert gate/up matmul of layer %u failed: %s", l, sw_strerror(rc));
        for (uint32_t e = e0; e < e1; e++) {
            const uint32_t n = at[e + 1] - at[e], off = at[e] - base;
            if (ly->gate_exps_b) add_bias(s->gate + (size_t)off * FX, ly->gate_exps_b + (size_t)e * FX, n, FX);
            if (ly->up_exps_b) add_bias(s->up + (size_t)off * FX, ly->up_exps_b + (size_t)e * FX, n, FX);
        }
        struct swiglu_task sw = { s->gate, s->up, (int64_t)n_slots * FX, hp->act };
        sw_k_pool_run(s->pool, swiglu_run, &sw);
        cores_tick(s);
        n_ops = 0;
        for (uint32_t e = e0; e < e1; e++) {
            const uint32_t n = at[e + 1] - at[e], off = at[e] - base;
            if (!n) continue;
            const struct sw__w wd = expert_w(&ly->down_exps, e);
            s->ex_ops[n_ops++] = (struct sw_k_mm_gop){ wd.data, wd.type, E, s->moe_y + (size_t)off * E, NULL, off, n };
        }
        rc = sw_k_matmul_grouped(s->pool, s->ex_ops, n_ops, FX, s->gate, n_slots);
        if (rc) return set_err(s, rc, "expert down matmul of layer %u failed: %s", l, sw_strerror(rc));
        if (ly->down_exps_b)
            for (uint32_t e = e0; e < e1; e++)
                add_bias(s->moe_y + (size_t)(at[e] - base) * E, ly->down_exps_b + (size_t)e * E, at[e + 1] - at[e], E);
        for (uint32_t i = 0; i < n_slots; i++) {
            float *o = s->ffo + (size_t)s->ex_tok[base + i] * E;
            const float *y = s->moe_y + (size_t)i * E, w = s->ex_w[base + i];
            for (int64_t d = 0; d < E; d++) o[d] += w * y[d];
        }
        cores_tick(s);
        e0 = e1;
    }
    if (!hp->n_ff_shexp) return 0;
    /* qwen2moe's shared expert, scaled by sigmoid(ffn_gate_inp_shexp · xn[t]). */
    if ((rc = ffn_dense(s, &ly->gate_sh, &ly->up_sh, &ly->down_sh, l, s->xn, T, s->moe_y))) return rc;
    for (uint32_t t = 0; t < T; t++) {
        float g = 1;
        if (ly->gate_inp_sh) {
            double dot = 0;
            for (int64_t d = 0; d < E; d++) dot += (double)ly->gate_inp_sh[d] * s->xn[(size_t)t * E + d];
            g = (float)(1.0 / (1.0 + exp(-dot)));
        }
        float *o = s->ffo + (size_t)t * E;
        const float *y = s->moe_y + (size_t)t * E;
        for (int64_t d = 0; d < E; d++) o[d] += g * y[d];
    }
    return 0;
}

/* Final logit soft-capping (gemma2): y -> cap * tanh(y / cap). */
static void softcap(const struct sw_stage *s, float *y, size_t n)
{
    const float cap = s->m.hp.final_softcap;
    if (cap > 0)
        for (size_t i = 0; i < n; i++) y[i] = cap * tanhf(y[i] / cap);
}

/* The device's layers over the step's residual stream s->x. A lost device: every
 * sequence's device cache is gone, so the live ones can only start again from position 0
 * (a failover's replay), and the stage computes every layer on the CPU from now on. */
static int gpu_step(struct sw_stage *s, const struct seg *sg, uint32_t n_seg, uint32_t T, int *did_logits)
{
    struct sw__vk_seg vs[MAX_SEGS_STEP];
    for (uint32_t i = 0; i < n_seg; i++)
        vs[i] = (struct sw__vk_seg){ (uint32_t)(sg[i].kv - s->seqs), sg[i].pos, sg[i].n };
    /* the logits rows, when the device holds the output head and they are few enough
     * (else the CPU computes them from the hidden states the device returns) */
    const uint32_t max_lg = s->m.info.gives_logits ? SW_MIN(sw__vk_logits_rows(s->gpu), 64u) : 0;
    uint32_t rows[64], n_lg = 0;
    float *dst[64];
    for (uint32_t i = 0; i < n_seg; i++) n_lg += sg[i].all ? sg[i].n : sg[i].want_logits ? 1 : 0;
    struct sw__vk_logits lg = { rows, dst, 0 };
    if (n_lg && n_lg <= max_lg) {
        for (uint32_t i = 0, t = 0; i < n_seg; t += sg[i].n, i++) {
            const uint32_t k = sg[i].all ? sg[i].n : sg[i].want_logits ? 1 : 0;
            for (uint32_t j = 0; j < k; j++, lg.n++) {
                rows[lg.n] = sg[i].all ? t + j : t + sg[i].n - 1;
                dst[lg.n] = sg[i].out + (size_t)j * s->m.info.n_vocab;
            }
        }
    }
    /* a step whose rows want no logits (a prefill's early steps) needs none either */
    *did_logits = lg.n > 0 || (max_lg && !n_lg);
    char msg[200];
    int rc = sw__vk_step(s->gpu, s->x, T, s->rope, s->rope_swa, vs, n_seg, &lg, msg, sizeof msg);
    if (rc == SW_ESTATE) {
        gpu_lost(s, msg);
        s->gpu_lost_now = 1;
        return set_err(s, rc, "%s (the sequence must start again from position 0)", msg);
    }
    if (rc) return set_err(s, rc, "%s", msg);
    for (uint32_t i = 0; i < lg.n; i++) softcap(s, dst[i], s->m.info.n_vocab); /* gemma2's final cap */
    return 0;
}

static int forward_step(struct sw_stage *s, const struct seg *sg, uint32_t n_seg)
{
    const struct sw_stage_info *info = &s->m.info;
    const int64_t E = info->n_embd;
    int rc;
    uint32_t T = 0;
    for (uint32_t i = 0; i < n_seg; i++) {
        float *x = s->x + (size_t)T * E;
        if (info->takes_tokens) {
            rc = sw_k_get_rows(s->m.tok_embd.data, s->m.tok_embd.type, s->m.tok_embd.rows, E,
                               (const int32_t *)sg[i].in, sg[i].n, x);
            if (rc) return set_err(s, rc, "token embedding lookup failed: %s", sw_strerror(rc));
            if (s->m.hp.embd_scale > 0) sw_k_scale_f32((int64_t)sg[i].n * E, s->m.hp.embd_scale, x);
        } else {
            memcpy(x, sg[i].in, (size_t)sg[i].n * E * sizeof(float));
        }
        for (uint32_t j = 0; j < sg[i].n; j++) {
            s->tok_kv[T + j] = sg[i].kv;
            s->tok_pos[T + j] = sg[i].pos + j;
        }
        T += sg[i].n;
    }
    rope_tables(s, T);
    uint32_t l_cpu = info->layer_first; /* the first layer the CPU computes */
    int gpu_logits = 0;
    if (s->gpu_n) {
        if ((rc = gpu_step(s, sg, n_seg, T, &gpu_logits))) return rc;
        l_cpu += s->gpu_n;
    }

    /* The block, one recipe for every architecture:
     *   x += (post-norm) attn(norm(x))   GQA (+ biases, + per-head q/k norm, + window)
     *   x += (post-norm) ffn(norm(x))    dense SwiGLU/GeGLU, or a mixture of experts */
    for (uint32_t l = l_cpu; l <= info->layer_last; l++) {
        const uint32_t li = l - info->layer_first;
        const struct sw__layer *ly = &s->m.layers[li];
        cores_tick(s);
        rmsnorm(s, s->x, ly->attn_norm, s->xn, T);
        if ((rc = s->m.hp.mla ? attn_mla(s, ly, l, sg, n_seg, T) : attn_gqa(s, ly, l, sg, n_seg, T))) return rc;
        if (ly->attn_post_norm) rmsnorm(s, s->xn, ly->attn_post_norm, s->xn, T);
        add_into(s->x, s->xn, (int64_t)T * E);

        rmsnorm(s, s->x, ly->ffn_norm, s->xn, T);
        cores_tick(s);
        rc = s->m.ld[l].is_moe ? ffn_moe(s, ly, l, T)
                               : ffn_dense(s, &ly->w_gate, &ly->w_up, &ly->w_down, l, s->xn, T, s->ffo);
        if (rc) return rc;
        if (ly->ffn_post_norm) rmsnorm(s, s->ffo, ly->ffn_post_norm, s->ffo, T);
        add_into(s->x, s->ffo, (int64_t)T * E);
    }

    if (!info->gives_logits) {
        for (uint32_t i = 0, t = 0; i < n_seg; t += sg[i].n, i++)
            memcpy(sg[i].out, s->x + (size_t)t * E, (size_t)sg[i].n * E * sizeof(float));
        return 0;
    }
    if (gpu_logits) return 0;
    cores_tick(s);
    /* Logits: runs that want every token's go straight to their output; the last tokens of
     * the others are gathered into one matmul (one pass over the output matrix). */
    const size_t V = info->n_vocab;
    uint32_t n_last = 0;
    for (uint32_t i = 0, t = 0; i < n_seg; t += sg[i].n, i++) {
        if (!sg[i].all) continue;
        rmsnorm(s, s->x + (size_t)t * E, s->m.output_norm, s->xn, sg[i].n);
        if ((rc = mm(s, &s->m.output, s->xn, sg[i].n, sg[i].out))) return rc;
        softcap(s, sg[i].out, (size_t)sg[i].n * V);
    }
    for (uint32_t i = 0, t = 0; i < n_seg; t += sg[i].n, i++) { /* xn is free now */
        if (!sg[i].all && sg[i].want_logits) {
            rmsnorm_row(s->x + (size_t)(t + sg[i].n - 1) * E, s->m.output_norm,
                        s->xn + (size_t)n_last * E, E, info->rms_eps);
            n_last++;
        }
    }
    if (n_last == 0) return 0;
    float *dst = NULL;
    if (n_last == 1) {
        for (uint32_t i = 0; i < n_seg && !dst; i++)
            if (!sg[i].all && sg[i].want_logits) dst = sg[i].out;
        if ((rc = mm(s, &s->m.output, s->xn, 1, dst))) return rc;
        softcap(s, dst, V);
        return 0;
    }
    if (n_last * V > s->logits_cap) { /* grows once to the widest batch seen */
        float *p = realloc(s->logits, n_last * V * sizeof *p);
        if (!p) return set_err(s, SW_ENOMEM, "out of memory for %u rows of logits", n_last);
        s->logits = p;
        s->logits_cap = n_last * V;
    }
    if ((rc = mm(s, &s->m.output, s->xn, n_last, s->logits))) return rc;
    softcap(s, s->logits, (size_t)n_last * V);
    for (uint32_t i = 0, j = 0; i < n_seg; i++)
        if (!sg[i].all && sg[i].want_logits) memcpy(sg[i].out, s->logits + (size_t)j++ * V, V * sizeof(float));
    return 0;
}

/* Checks one entry and makes room in its cache; cuts the cache back to pos. */
static int prepare(struct sw_stage *s, struct sw_stage_batch *b, struct sw__kv **kv_out)
{
    const struct sw_stage_info *info = &s->m.info;
    const uint32_t nl = info->layer_last - info->layer_first + 1;
    struct sw__kv *kv = seq_find(s, b->seq);
    if (!kv) return set_err(s, SW_ENOTFOUND, "no sequence %llu", (unsigned long long)b->seq);
    if (b->n_tokens == 0 || !b->in || !b->out)
        return set_err(s, SW_EINVAL, "forward needs at least one token and in/out buffers");
    if (s->gpu_stale && s->gpu_stale[kv - s->seqs]) {
        if (b->pos > 0)
            return set_err(s, SW_ESTATE, "sequence %llu's cache of the GPU layers was lost with the device: "
                           "it must start again from position 0", (unsigned long long)b->seq);
        s->gpu_stale[kv - s->seqs] = 0;
    }
    if (b->pos > kv->n_past)
        return set_err(s, SW_EINVAL, "position %u is past the end of sequence %llu (%u tokens cached)",
                       b->pos, (unsigned long long)b->seq, kv->n_past);
    if ((uint64_t)b->pos + b->n_tokens > info->n_ctx)
        return set_err(s, SW_ERANGE, "context length exceeded: %u cached + %u new tokens > context limit %u",
                       b->pos, b->n_tokens, info->n_ctx);
    if (info->takes_tokens) {
        const int32_t *ids = b->in;
        for (uint32_t i = 0; i < b->n_tokens; i++)
            if (ids[i] < 0 || (uint32_t)ids[i] >= info->n_vocab)
                return set_err(s, SW_ERANGE, "token id %d at index %u is outside the vocabulary (%u)",
                               ids[i], i, info->n_vocab);
    }
    uint64_t grown = 0;
    /* host arrays only for the layers the CPU computes: the device holds its layers' cache */
    int rc = sw__kv_reserve(kv, nl, s->gpu_n, info->n_head_kv, info->head_dim, b->pos + b->n_tokens, info->n_ctx,
                            &grown);
    s->kv_bytes += grown;
    if (rc)
        return set_err(s, rc, "cannot grow the KV cache to %u positions: %s", b->pos + b->n_tokens,
                       sw_strerror(rc));
    kv->n_past = b->pos; /* cut back: positions >= pos are recomputed */
    *kv_out = kv;
    return 0;
}


int sw_stage_forward_batch(struct sw_stage *s, struct sw_stage_batch *b, uint32_t n)
{
    pthread_mutex_lock(&s->lock);
    s->errmsg[0] = 0;
    const struct sw_stage_info *info = &s->m.info;
    int first_rc = 0;
    for (uint32_t i = 0; i < n; i++) {
        b[i].rc = 0;
        for (uint32_t j = 0; j < i; j++)
            if (b[j].seq == b[i].seq)
                b[i].rc = set_err(s, SW_EINVAL, "sequence %llu appears twice in one batch",
                                  (unsigned long long)b[i].seq);
    }
    /* Small batches (every generation step) use the stack: no allocation per token. */
    struct sw__kv *kvs_local[MAX_SEGS];
    uint32_t done_local[MAX_SEGS];
    struct sw__kv **kvs = kvs_local;
    uint32_t *done = done_local;
    memset(kvs_local, 0, sizeof kvs_local);
    memset(done_local, 0, sizeof done_local);
    if (n > MAX_SEGS) {
        kvs = calloc(n, sizeof *kvs);
        done = calloc(n, sizeof *done);
        if (!kvs || !done) {
            first_rc = set_err(s, SW_ENOMEM, "out of memory");
            for (uint32_t i = 0; i < n; i++) b[i].rc = first_rc;
            goto out;
        }
    }
    for (uint32_t i = 0; i < n; i++)
        if (!b[i].rc) b[i].rc = prepare(s, &b[i], &kvs[i]);
    /* With a core lease: a step expected to be short (by the last step's time per token)
     * runs on this thread alone, unclaimed: claiming, waking a worker and parking it again
     * would cost more than the step (stories260K: 45 instead of 28 µs per pipeline hop). */
    uint32_t n_tok = 0;
    for (uint32_t i = 0; i < n; i++)
        if (!b[i].rc) n_tok += b[i].n_tokens;
    const int leased = s->cores && !(s->us_per_token_x16 && s->us_per_token_x16 * n_tok < 16u * SHORT_STEP_US);
    s->leased = leased;
    const uint64_t t_start = sw_time_us();
    if (leased) { /* compute with the machine's free cores (other nodes' stages hold the rest) */
        sw_k_pool_set_active(s->pool, (int)sw_cores_claim(s->cores, (unsigned)s->n_threads));
        s->cores_checked_us = sw_time_us();
    }

    /* Steps: fill up to max_batch tokens from the entries in order; an entry longer than
     * what is left of a step continues in the next. */
    uint32_t next = 0;
    for (;;) {
        struct seg sg[MAX_SEGS];
        uint32_t n_seg = 0, room = s->max_batch;
        for (uint32_t i = next; i < n && room && n_seg < MAX_SEGS; i++) {
            if (b[i].rc || done[i] == b[i].n_tokens) continue;
            const uint32_t k = SW_MIN(room, b[i].n_tokens - done[i]);
            const int all = (b[i].flags & SW_STAGE_LOGITS_ALL) != 0;
            struct seg *g = &sg[n_seg++];
            g->kv = kvs[i];
            g->pos = b[i].pos + done[i];
            g->n = k;
            g->in = info->takes_tokens ? (const void *)((const int32_t *)b[i].in + done[i])
                                       : (const void *)((const float *)b[i].in + (size_t)done[i] * info->n_embd);
            g->out = !info->gives_logits ? b[i].out + (size_t)done[i] * info->n_embd
                     : all               ? b[i].out + (size_t)done[i] * info->n_vocab
                                         : b[i].out;
            g->all = all;
            g->want_logits = done[i] + k == b[i].n_tokens;
            room -= k;
        }
        if (n_seg == 0) break;
        int rc = forward_step(s, sg, n_seg);
        if (s->gpu_lost_now) { /* every entry's cache lost its GPU layers (host arrays dropped) */
            s->gpu_lost_now = 0;
            for (uint32_t i = next; i < n; i++)
                if (!b[i].rc && done[i] < b[i].n_tokens) b[i].rc = rc;
            break;
        }
        /* Advance every entry of the step (on failure, mark them failed). */
        for (uint32_t i = next, used = 0; i < n && used < n_seg; i++) {
            if (b[i].rc || done[i] == b[i].n_tokens) continue;
            const uint32_t k = sg[used++].n;
            if (rc) {
                b[i].rc = rc;
                continue;
            }
            done[i] += k;
            kvs[i]->n_past = b[i].pos + done[i];
        }
        while (next < n && (b[next].rc || done[next] == b[next].n_tokens)) next++;
    }
    s->leased = 0;
    if (leased) { /* the cores go back: our workers park now rather than spin on them */
        sw_cores_release(s->cores);
        sw_k_pool_set_active(s->pool, 1);
    }
    if (s->cores && n_tok) { /* time per token of this step, x16, for the next decision */
        uint64_t per = (sw_time_us() - t_start) * 16 / n_tok;
        s->us_per_token_x16 = per ? (per > UINT32_MAX ? UINT32_MAX : (uint32_t)per) : 1;
    }
    if (s->m.map_lo && sw_map_guard_faults(s->m.map_lo)) { /* util.h: the file shrank under us */
        first_rc = set_err(s, SW_EIO, "the model file was truncated under the running stage (reads past its end "
                                      "gave zeros): the stage's results are void until it is loaded again");
        for (uint32_t i = 0; i < n; i++) b[i].rc = first_rc;
    }
    for (uint32_t i = 0; i < n; i++)
        if (b[i].rc && !first_rc) first_rc = b[i].rc;
out:
    if (kvs != kvs_local) free(kvs);
    if (done != done_local) free(done);
    pthread_mutex_unlock(&s->lock);
    return first_rc;
}

const struct sw_cores *sw_stage_cores(const struct sw_stage *s)
{
    return s ? s->cores : NULL;
}

int sw_stage_forward(struct sw_stage *s, uint64_t seq, uint32_t pos, uint32_t n_tokens,
                     const void *in, float *out, unsigned flags)
{
    struct sw_stage_batch b = { .seq = seq, .pos = pos, .n_tokens = n_tokens, .in = in, .out = out,
                                .flags = flags };
    return sw_stage_forward_batch(s, &b, 1);
}
