/* infer.h — the public face of src/infer: a compute stage that runs a layer range of a
 * llama-family model (from a shard or a whole GGUF) over many independent sequences, and
 * `synth`, which writes random-weight models of real shapes. The tokenizer, sampler and
 * chat templates come from infer/tok.h, included below.
 * Not for: file parsing (src/gguf), moving hidden states between nodes (src/swarm). */
#ifndef SW_INFER_H
#define SW_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "infer/tok.h" /* tokenizer, sampler, chat templates */
#include "util/util.h"

/* ---------------------------------------------------------------- stage */

/* A stage computes layers [layer_first, layer_last] of one model for many sequences.
 *
 *   first stage (layer_first == 0):  token ids in   (int32, n_tokens)
 *   other stages:                     hidden states in (f32, n_tokens x n_embd)
 *   last stage (layer_last == n_layers-1): logits out (f32, n_vocab per token asked for)
 *   other stages:                     hidden states out (f32, n_tokens x n_embd)
 *
 * Weights are borrowed from the GGUF mmap (never copied); each sequence owns an f16 KV
 * cache for the stage's layers that grows with its length up to n_ctx. Scratch buffers are
 * allocated once when the stage opens. The interface is deliberately narrow (open, seq_*,
 * forward, free) so another backend can implement it; "cpu" is the one this build has.
 *
 * Thread-safety: calls on one stage are serialised by a lock inside the stage; forward
 * itself runs on the stage's thread pool. Different stages may run concurrently. */
struct sw_stage;

struct sw_stage_opts {
    int32_t layer_first;   /* -1: from shardswarm.shard.layer_first, else 0 */
    int32_t layer_last;    /* -1: from shardswarm.shard.layer_last, else the last layer */
    uint32_t n_ctx;        /* 0: <arch>.context_length; a larger value is capped to it */
    uint32_t n_threads;    /* 0: the number of CPUs */
    uint32_t max_batch;    /* tokens per internal step (scratch size); 0: 256. Longer
                              inputs are processed in steps, transparently */
    uint32_t max_seqs;     /* live sequences at once; 0: 64 */
    const struct sw_stage *share_pool; /* non-NULL: run on that stage's thread pool (it
                              must outlive this stage, and the two must not run at once) */
    const char *backend;   /* NULL or "cpu" */
    uint32_t machine_cores; /* 0: compute with n_threads always. N: share this machine's N
                              cores with the other processes' stages (sw_cores below): each
                              forward computes with as many of its threads as cores are free
                              then, at least 1 (waiting for one when all are taken) */
    const char *cores_dir; /* the lease's folder; NULL: the default (see sw_cores_open) */
    int no_prefault;       /* 0: bring the stage's weights into memory at open (page
                              tables populated), so the first request pays no page faults */
    const char *gpu;       /* NULL or "off": CPU only. "auto": the first Vulkan GPU (never a
                              software device); "N": Vulkan device N (lavapipe included).
                              When unavailable the stage says why (log) and uses the CPU */
    uint32_t gpu_layers;   /* with gpu: 0 = as many of the stage's first layers as the
                              device computes and its free memory holds; N = at most N */
};

/* ---- machine core lease: processes on one machine (several nodes) share its cores ----
 * One lock file per core in a per-user folder (DIR, else /dev/shm, $TMPDIR or /tmp, +
 * "/shardswarm-cores-<uid>"); a claim flock(2)s free ones, so the kernel drops the claims
 * of a process that dies. A lease is used by one thread at a time (a stage, under its lock);
 * two leases in one process exclude each other like two processes do. */
#define SW_CORES_MAX 1024u
struct sw_cores;
int sw_cores_open(unsigned budget, const char *dir, struct sw_cores **out, char *err, size_t err_len);
void sw_cores_close(struct sw_cores *c); /* NULL harmless; drops what it holds */
/* Takes up to `want` free cores (at least 1, waiting for one when none is free) and
 * returns how many to compute with. c NULL: returns want. Release before claiming again.
 * A wait is bounded (2 s: a holder may be stopped): past it, returns 1 holding nothing.
 * A lock that fails for another reason than contention disables the lease (want). */
unsigned sw_cores_claim(struct sw_cores *c, unsigned want);
/* Between two parts of a claimed computation: halves what is held when another lease waits
 * for a core, else takes free cores up to `want`. Returns the cores held now (>= 1). */
unsigned sw_cores_rebalance(struct sw_cores *c, unsigned want);
void sw_cores_release(struct sw_cores *c);
unsigned sw_cores_budget(const struct sw_cores *c);
/* Totals of the claims that had to wait, and for how long; any thread may read them. */
void sw_cores_waited(const struct sw_cores *c, uint64_t *waits, uint64_t *wait_us);
const char *sw_cores_dir(const struct sw_cores *c); /* the lease's folder */

/* What a stage computes, filled at open. */
struct sw_stage_info {
    char arch[32];          /* general.architecture: "llama", "qwen2", "qwen3moe", ... */
    char backend[16];       /* "cpu", or "vulkan" when gpu_layers > 0 */
    char kernels[16];       /* kernel family in use: "ref", "avx2", "avx512" */
    uint32_t n_layers;      /* layers in the whole model */
    uint32_t layer_first;   /* this stage's range, inclusive */
    uint32_t layer_last;
    int takes_tokens;       /* layer_first == 0: input is token ids */
    int gives_logits;       /* layer_last == n_layers-1: output is logits */
    uint32_t n_embd, n_ff, n_head, n_head_kv, head_dim, n_rot, n_vocab;
    uint32_t n_ctx_train;   /* <arch>.context_length */
    uint32_t n_ctx;         /* the limit this stage enforces */
    float rms_eps, rope_freq_base, rope_freq_scale; /* scale = 1/linear factor */
    int rope_neox;          /* 1: pairs (i, i+n_rot/2) (qwen2); 0: pairs (2i, 2i+1) (llama) */
    int has_rope_freqs;     /* llama3-style rope_freqs tensor present */
    int tied_output;        /* logits from token_embd (no output.weight) */
    uint32_t n_threads;
    uint64_t weight_bytes;  /* tensor bytes this stage maps */
    uint64_t kv_bytes_per_token; /* host f16 K+V for this stage's layers the CPU computes */
    uint32_t n_expert, n_expert_used; /* mixture of experts: experts per layer, used per
                                         token; 0: dense */
    /* Vulkan (opts.gpu): layers layer_first .. layer_first + gpu_layers - 1 run on the
     * device, the rest (and embeddings, logits) on the CPU */
    uint32_t gpu_layers;
    int gpu_logits;         /* the output norm and logits run on the device too (up to 64 rows
                               a step; more go to the CPU) */
    char device[128];       /* "" when gpu_layers is 0 */
    uint64_t device_mem;    /* bytes of the device's memory heap */
    uint64_t gpu_weight_bytes; /* uploaded */
    char gpu_note[200];     /* why the device holds no more layers, or why no GPU ("" if none) */
    char gpu_converted[64]; /* weight types the device computes as F16 (no shader for them:
                               converted at upload), space-separated; "" when all are native */
};

/* Opens a stage over a model file (whole GGUF or a shard). On error returns a negative
 * sw_err (SW_EUNSUPPORTED for an unknown architecture or tensor type, SW_ECORRUPT for a
 * missing or misshapen tensor, SW_ERANGE for a bad layer range) and writes a message naming
 * the file and the culprit into err. opts may be NULL (all defaults). */
int sw_stage_open(const char *path, const struct sw_stage_opts *opts, struct sw_stage **out,
                  char *err, size_t err_len);
/* Same over a GGUF handle the caller keeps open (borrowed: it must outlive the stage). */
int sw_stage_open_gguf(struct sw_gguf *g, const struct sw_stage_opts *opts,
                       struct sw_stage **out, char *err, size_t err_len);
void sw_stage_free(struct sw_stage *s); /* NULL harmless; frees every sequence */

const struct sw_stage_info *sw_stage_info(const struct sw_stage *s);

/* A Vulkan device as `--gpu WHICH` ("auto" or an index) would open it, without a model:
 * its name and its device-local memory, total and free for weights (the budget the upload
 * would use). For the planner (a GPU node prefers a shard its device holds whole).
 * Returns 0, or a negative sw_err with msg naming what is missing (no loader, no device,
 * a build without the backend). */
struct sw_gpu_probe {
    char name[128];
    uint64_t mem_total, mem_free;
};
int sw_gpu_probe(const char *which, struct sw_gpu_probe *out, char *msg, size_t msg_len);
/* The stage's machine core lease (opts.machine_cores), or NULL: for status and logs. */
const struct sw_cores *sw_stage_cores(const struct sw_stage *s);
/* The message of the last failed call on this stage ("" when none). Valid until the next
 * call on the stage. */
const char *sw_stage_errmsg(const struct sw_stage *s);

/* Sequences are named by the caller (e.g. a session id). new: SW_EEXIST when the id is
 * live, SW_EBUSY when max_seqs are live. reset empties the KV cache (keeps its memory).
 * free releases it; SW_ENOTFOUND for an unknown id (free of an unknown id is harmless). */
int sw_stage_seq_new(struct sw_stage *s, uint64_t seq);
int sw_stage_seq_reset(struct sw_stage *s, uint64_t seq);
void sw_stage_seq_free(struct sw_stage *s, uint64_t seq);
/* Tokens held in the sequence's cache (the next position). */
int sw_stage_seq_len(struct sw_stage *s, uint64_t seq, uint32_t *n_out);
uint32_t sw_stage_n_seqs(struct sw_stage *s);
/* Prefix reuse (the prefix cache, src/swarm/prefix.c): copy the first n positions of
 * sequence src (n <= its length) into live sequence dst, whose length becomes n; rename a
 * live sequence (SW_EEXIST when `to` is live); the KV bytes one sequence holds (0: unknown). */
int sw_stage_seq_copy(struct sw_stage *s, uint64_t dst, uint64_t src, uint32_t n);
int sw_stage_seq_rename(struct sw_stage *s, uint64_t from, uint64_t to);
uint64_t sw_stage_seq_bytes(struct sw_stage *s, uint64_t seq);
uint64_t sw_stage_kv_bytes(struct sw_stage *s); /* KV memory allocated, all sequences; any thread, lock-free */

/* forward flags */
#define SW_STAGE_LOGITS_ALL 1u /* last stage: logits for every token, not just the last */

/* Runs n_tokens tokens at positions pos .. pos+n_tokens-1 of sequence seq through the
 * stage's layers. pos may be below the sequence's length (the cache is cut back to pos:
 * replay after failover, or editing a chat), never above it.
 *   in:  takes_tokens ? const int32_t[n_tokens] : const float[n_tokens * n_embd]
 *   out: gives_logits ? float[(LOGITS_ALL ? n_tokens : 1) * n_vocab]
 *                     : float[n_tokens * n_embd]
 * Both borrowed for the call. Returns 0; SW_ERANGE when pos + n_tokens exceeds n_ctx
 * (nothing is computed) or a token id is outside the vocabulary; SW_ENOTFOUND for an
 * unknown sequence; SW_EINVAL (pos past the end, n_tokens 0); SW_ENOMEM. */
int sw_stage_forward(struct sw_stage *s, uint64_t seq, uint32_t pos, uint32_t n_tokens,
                     const void *in, float *out, unsigned flags);

/* Several sequences in one pass over the weights: decoding N sessions together costs
 * little more than one while generation is memory-bound. Each entry is checked and run as
 * sw_stage_forward would (its result in rc; a failing entry does not stop the others); the
 * entries' tokens are packed into steps of max_batch. Entries must name different
 * sequences. Returns 0 when every entry succeeded, else the first failing entry's code.
 * May allocate when more sequences than ever before want logits in one step. */
struct sw_stage_batch {
    uint64_t seq;
    uint32_t pos, n_tokens;
    const void *in;   /* as sw_stage_forward */
    float *out;       /* as sw_stage_forward */
    unsigned flags;   /* SW_STAGE_LOGITS_ALL */
    int rc;           /* out: this entry's result */
};
int sw_stage_forward_batch(struct sw_stage *s, struct sw_stage_batch *entries, uint32_t n);

/* Floats in one forward call's output (for sizing out). */
size_t sw_stage_out_floats(const struct sw_stage *s, uint32_t n_tokens, unsigned flags);

/* ---------------------------------------------------------------- chain */

/* Several stages that together cover a whole model (the shards of `split`, or one whole
 * GGUF), run one after another in this process: token ids in, logits out. Each file
 * computes its own layer range (shardswarm.shard.* keys); the ranges must be contiguous
 * from layer 0 to the last. The stages share one thread pool. */
struct sw_chain;

/* opts: n_ctx, n_threads, max_batch, max_seqs, no_prefault apply to every stage (layer_first/last and
 * share_pool are ignored). Errors name the file: SW_ERANGE for a gap or overlap between
 * the files' layer ranges, SW_EINVAL when they come from different models. */
int sw_chain_open(const char *const *paths, uint32_t n_paths, const struct sw_stage_opts *opts,
                  struct sw_chain **out, char *err, size_t err_len);
void sw_chain_free(struct sw_chain *c); /* NULL harmless */
uint32_t sw_chain_n_stages(const struct sw_chain *c);
struct sw_stage *sw_chain_stage(const struct sw_chain *c, uint32_t i); /* borrowed */
/* The first file's GGUF handle (metadata, tokenizer), borrowed: valid until chain_free. */
struct sw_gguf *sw_chain_gguf(const struct sw_chain *c);
uint32_t sw_chain_n_vocab(const struct sw_chain *c);
uint32_t sw_chain_n_ctx(const struct sw_chain *c);
const char *sw_chain_errmsg(const struct sw_chain *c);
/* As the sw_stage_seq_* calls, on every stage. */
int sw_chain_seq_new(struct sw_chain *c, uint64_t seq);
int sw_chain_seq_reset(struct sw_chain *c, uint64_t seq);
void sw_chain_seq_free(struct sw_chain *c, uint64_t seq);
/* tokens[n_tokens] at positions pos.. through every stage; logits as in sw_stage_forward
 * (n_vocab floats, or n_tokens x n_vocab with SW_STAGE_LOGITS_ALL). Same errors. */
int sw_chain_forward(struct sw_chain *c, uint64_t seq, uint32_t pos, uint32_t n_tokens,
                     const int32_t *tokens, float *logits, unsigned flags);

/* ---------------------------------------------------------------- synth */

/* A random-weight model of a real architecture's shape (for benchmarks and tests). */
struct sw_synth_preset {
    const char *name;       /* "tinyllama-1.1b" */
    const char *arch;       /* "llama", "qwen2" */
    uint32_t n_embd, n_layers, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    float rope_freq_base, rms_eps;
    int tied;               /* no output.weight: logits from token_embd */
    const char *vocab;      /* default vocabulary file, relative to <shared data>/vocab/ */
    /* appended features (0: absent) */
    uint32_t head_dim;      /* attention.key_length; 0: n_embd / n_head */
    uint32_t n_expert, n_expert_used; /* mixture of experts (llama: Mixtral style) */
    uint32_t n_ff_exp;      /* one expert's FFN width */
    uint32_t n_ff_shexp;    /* the shared expert's width (qwen2moe) */
    uint32_t n_swa;         /* attention.sliding_window (gemma); 0: the architecture's default */
    const char *rope_scaling; /* rope.scaling.type ("yarn"), or NULL */
    float rope_factor;      /* rope.scaling.factor */
    uint32_t n_ctx_orig;    /* rope.scaling.original_context_length (yarn, phi3's longrope) */
    const struct sw_synth_mla *mla; /* deepseek2's extras, or NULL */
    float attn_softcap;     /* attn_logit_softcapping (gemma2); 0: the architecture's default */
    float exp_bias;         /* gpt-oss: the experts' gate/up bias amplitude; 0: 0.02 */
};

/* deepseek2 presets: the latent attention's and the MoE's shape (llama.cpp's keys). */
struct sw_synth_mla {
    uint32_t q_lora_rank;   /* 0: plain attn_q (V2-Lite) */
    uint32_t kv_lora_rank, qk_nope, qk_rope, v_head;
    uint32_t n_dense_lead, n_expert_shared;
    uint32_t n_group, n_group_used; /* grouped top-k; 0: none */
    uint32_t gating;        /* expert_gating_func: 1 softmax (V2), 2 sigmoid + exp_probs_b (V3) */
    float weights_scale;    /* expert_weights_scale (routed scaling factor) */
    int weights_norm;       /* expert_weights_norm */
    float yarn_log_mul;     /* rope.scaling.yarn_log_multiplier as written: 0.1 x mscale_all_dim */
};

/* NULL-terminated table of presets; sw_synth_preset_find returns NULL for an unknown name. */
const struct sw_synth_preset *sw_synth_presets(void);
const struct sw_synth_preset *sw_synth_preset_find(const char *name);

struct sw_synth_opts {
    const char *preset;     /* a preset name */
    const char *type;       /* "F32","F16","BF16","Q8_0","Q4_0","Q4_K","Q5_K","Q6_K","Q4_K_M" */
    uint64_t seed;
    const char *vocab_path; /* GGUF whose tokenizer.* keys are copied (required) */
    uint32_t n_threads;     /* 0: the number of CPUs */
    uint32_t n_layers;      /* 0: the preset's; else override (smaller test models) */
    void (*progress)(void *ud, uint64_t done, uint64_t total);
    void *progress_ud;
};

/* True when `type` names a synth weight type. */
int sw_synth_type_valid(const char *type);
/* Writes the model to path (through the streaming GGUF writer: never the whole model in
 * memory). Deterministic: the same opts give the same bytes. Returns 0 or a negative
 * sw_err with a message in err. */
int sw_synth_write(const char *path, const struct sw_synth_opts *opts, char *err, size_t err_len);

#endif
