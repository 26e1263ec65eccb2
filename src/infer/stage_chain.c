/* stage_chain.c — runs the stages of several shard files one after another in one process
 * (token ids in, logits out), checking that their layer ranges join up. This is what
 * `generate -m shard-0.gguf -m shard-1.gguf ...` and the split-equivalence tests use; the
 * swarm runs the same stages on different machines instead.
 * Not for: moving hidden states over a network (src/swarm). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"

#define MAX_STAGES 256u

struct sw_chain {
    struct sw_stage **st;
    uint32_t n;
    struct sw_gguf *g0; /* first file's handle (owned) */
    float *h[2];        /* hidden states between stages, grown as needed */
    size_t h_cap;       /* floats in each */
    char errmsg[256];
};

int sw_chain_open(const char *const *paths, uint32_t n_paths, const struct sw_stage_opts *opts,
                  struct sw_chain **out, char *err, size_t err_len)
{
    *out = NULL;
    if (n_paths == 0 || n_paths > MAX_STAGES)
        return sw_errf(err, err_len, SW_EINVAL, "a chain needs 1 to %u model files", MAX_STAGES);
    struct sw_chain *c = calloc(1, sizeof *c);
    if (!c || !(c->st = calloc(n_paths, sizeof *c->st))) {
        free(c);
        return SW_ENOMEM;
    }
    struct sw_stage_opts o = { .layer_first = -1, .layer_last = -1 };
    if (opts) {
        o.n_ctx = opts->n_ctx;
        o.n_threads = opts->n_threads;
        o.max_batch = opts->max_batch;
        o.max_seqs = opts->max_seqs;
        o.backend = opts->backend;
        o.no_prefault = opts->no_prefault;
        o.gpu = opts->gpu;
        o.gpu_layers = opts->gpu_layers;
    }
    char sub[512];
    int rc = sw_gguf_open(paths[0], &c->g0, err, err_len);
    if (rc) goto fail;
    char id0[80] = "";
    struct sw_gguf_shard_info si;
    if (sw_gguf_shard_info(c->g0, &si) == 0) snprintf(id0, sizeof id0, "%s", si.model_id);
    for (uint32_t i = 0; i < n_paths; i++) {
        if (i == 0) {
            rc = sw_stage_open_gguf(c->g0, &o, &c->st[0], err, err_len);
        } else {
            o.share_pool = c->st[0];
            rc = sw_stage_open(paths[i], &o, &c->st[i], err, err_len);
        }
        if (rc) goto fail;
        c->n = i + 1;
        const struct sw_stage_info *in = sw_stage_info(c->st[i]);
        if (i == 0 && !in->takes_tokens) {
            rc = sw_errf(err, err_len, SW_ERANGE, "%s starts at layer %u: the first file must hold layer 0 "
                      "and token_embd", paths[i], in->layer_first);
            goto fail;
        }
        if (i > 0) {
            const struct sw_stage_info *prev = sw_stage_info(c->st[i - 1]);
            if (strcmp(prev->arch, in->arch) || prev->n_layers != in->n_layers || prev->n_embd != in->n_embd) {
                rc = sw_errf(err, err_len, SW_EINVAL, "%s is not a shard of the same model as %s", paths[i],
                          paths[0]);
                goto fail;
            }
            if (in->layer_first != prev->layer_last + 1) {
                rc = sw_errf(err, err_len, SW_ERANGE,
                          "%s holds layers %u-%u but the previous file ends at layer %u: give the "
                          "shards in order, without gaps", paths[i], in->layer_first, in->layer_last,
                          prev->layer_last);
                goto fail;
            }
            struct sw_gguf *gi = NULL;
            if (sw_gguf_open(paths[i], &gi, sub, sizeof sub) == 0) {
                if (id0[0] && sw_gguf_shard_info(gi, &si) == 0 && strcmp(si.model_id, id0)) {
                    sw_gguf_close(gi);
                    rc = sw_errf(err, err_len, SW_EINVAL, "%s belongs to model %s, not %s", paths[i],
                              si.model_id, id0);
                    goto fail;
                }
                sw_gguf_close(gi);
            }
        }
        if (i + 1 == n_paths && !in->gives_logits) {
            rc = sw_errf(err, err_len, SW_ERANGE, "%s ends at layer %u of %u: the last file must hold "
                      "the last layer and the output", paths[i], in->layer_last, in->n_layers);
            goto fail;
        }
        if (i + 1 < n_paths && in->gives_logits) {
            rc = sw_errf(err, err_len, SW_ERANGE, "%s already ends the model: too many files", paths[i]);
            goto fail;
        }
    }
    *out = c;
    return 0;
fail:
    sw_chain_free(c);
    return rc;
}

void sw_chain_free(struct sw_chain *c)
{
    if (!c) return;
    /* Stages after the first use the first one's pool: free them first. */
    for (uint32_t i = c->n; i-- > 0;) sw_stage_free(c->st[i]);
    free(c->st);
    sw_gguf_close(c->g0);
    free(c->h[0]);
    free(c->h[1]);
    free(c);
}

uint32_t sw_chain_n_stages(const struct sw_chain *c) { return c->n; }
struct sw_stage *sw_chain_stage(const struct sw_chain *c, uint32_t i) { return i < c->n ? c->st[i] : NULL; }
struct sw_gguf *sw_chain_gguf(const struct sw_chain *c) { return c->g0; }
const char *sw_chain_errmsg(const struct sw_chain *c) { return c->errmsg; }

uint32_t sw_chain_n_vocab(const struct sw_chain *c)
{
    return sw_stage_info(c->st[c->n - 1])->n_vocab;
}

uint32_t sw_chain_n_ctx(const struct sw_chain *c)
{
    uint32_t n = UINT32_MAX;
    for (uint32_t i = 0; i < c->n; i++) n = SW_MIN(n, sw_stage_info(c->st[i])->n_ctx);
    return n;
}

int sw_chain_seq_new(struct sw_chain *c, uint64_t seq)
{
    for (uint32_t i = 0; i < c->n; i++) {
        int rc = sw_stage_seq_new(c->st[i], seq);
        if (rc) {
            snprintf(c->errmsg, sizeof c->errmsg, "%s", sw_stage_errmsg(c->st[i]));
            while (i-- > 0) sw_stage_seq_free(c->st[i], seq);
            return rc;
        }
    }
    return 0;
}

int sw_chain_seq_reset(struct sw_chain *c, uint64_t seq)
{
    for (uint32_t i = 0; i < c->n; i++) {
        int rc = sw_stage_seq_reset(c->st[i], seq);
        if (rc) return rc;
    }
    return 0;
}

void sw_chain_seq_free(struct sw_chain *c, uint64_t seq)
{
    for (uint32_t i = 0; i < c->n; i++) sw_stage_seq_free(c->st[i], seq);
}

int sw_chain_forward(struct sw_chain *c, uint64_t seq, uint32_t pos, uint32_t n_tokens,
                     const int32_t *tokens, float *logits, unsigned flags)
{
    c->errmsg[0] = 0;
    if (c->n == 1) {
        int rc = sw_stage_forward(c->st[0], seq, pos, n_tokens, tokens, logits, flags);
        if (rc) snprintf(c->errmsg, sizeof c->errmsg, "%s", sw_stage_errmsg(c->st[0]));
        return rc;
    }
    size_t need = (size_t)n_tokens * sw_stage_info(c->st[0])->n_embd;
    if (need > c->h_cap) {
        for (int k = 0; k < 2; k++) {
            float *p = realloc(c->h[k], need * sizeof *p);
            if (!p) return SW_ENOMEM;
            c->h[k] = p;
        }
        c->h_cap = need;
    }
    const void *in = tokens;
    for (uint32_t i = 0; i < c->n; i++) {
        float *out = i + 1 == c->n ? logits : c->h[i & 1];
        int rc = sw_stage_forward(c->st[i], seq, pos, n_tokens, in, out, flags);
        if (rc) {
            snprintf(c->errmsg, sizeof c->errmsg, "stage %u: %s", i, sw_stage_errmsg(c->st[i]));
            return rc;
        }
        in = out;
    }
    return 0;
}
