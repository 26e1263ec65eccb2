/* node_openai.c — the backend of the OpenAI-compatible API on `shardswarm node --api`:
 * generations run through the node's pipeline engine with this node as the entry
 * (sw_pipe_node_open_async: the route is the best live loaded node per shard), text goes
 * in and out with the model's tokenizer, and chat messages are formatted with its chat
 * template. The tokenizer comes from the node's own loaded shard or, on a node holding none
 * (`node --client --api`), from a loaded node's shard header (sw_pipe_node_fetch_header,
 * every piece checked against the torrent).
 * Threads: the API's connection threads call the backend functions; every request for the
 * pipeline is queued to the node's loop thread through our own uv_async (the engine may be
 * detached, then freed, while the API still runs: only the loop thread can tell, from the
 * host's pipe pointer). Events come back on the loop thread and go straight to the API's
 * per-request queues (src/api/openai.c), which never block it.
 * Not for: HTTP or JSON (src/api). */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "api/api.h"
#include "bt/bt.h"
#include "cli/node_openai.h"
#include "gguf/gguf.h"
#include "infer/infer.h"
#include "swarm/swarm.h"

#define TICK_MS 100            /* retries, the tokenizer, the model's name */
#define RETRY_MS 200           /* a session that found no route before its first token opens again */
#define OPEN_PATIENCE_MS 5000  /* ... for this long (connections between nodes still settling) */
#define FETCH_WAIT_MS 10000    /* one shard-header fetch; then again after FETCH_PAUSE_MS */
#define FETCH_PAUSE_MS 1000
#define DEFAULT_CTX 2048       /* a model without <arch>.context_length */

struct glue;

/* One generation (or, in the inbox, a cancel). Loop thread once taken from the inbox. */
struct op {
    struct op *next;
    struct glue *g;            /* not used once orphaned (the glue may be gone) */
    uint64_t handle;           /* ours, given to the API */
    int is_cancel;
    int32_t *prompt;
    uint32_t n_prompt, n_predict;
    uint8_t *blob;
    size_t blob_len;
    int32_t stop[SW_PIPE_MAX_STOP];
    uint32_t n_stop;
    struct sw_api_oai_events ev;
    const struct sw_tok *tok;  /* end-of-generation tokens (not used once orphaned) */
    uint64_t ticket;
    int in_pipe;               /* handed to the engine: one on_end will come */
    int cancelled, ended, orphaned;
    int want_lp;               /* read log probabilities from each TOKEN_OUT's sampler state */
    uint32_t n_tok;
    uint64_t deadline_ms, retry_at_ms;
};

struct glue {
    struct sw_node *node;
    struct sw_pipe_node **pipe_ref;
    uv_async_t async;
    uv_timer_t timer;
    int handles;
    pthread_mutex_t mu;
    /* under mu */
    struct op *inbox;
    int closed;
    uint64_t next_handle;
    struct sw_tok *tok;        /* set once, immutable, freed with the glue */
    enum sw_chat_tmpl tmpl;
    int tmpl_fallback;         /* the model has no chat template: ChatML */
    uint32_t n_ctx;
    int have_model;
    char model_id[128];
    char arch[32], quant[16], size_label[16], digest[72];
    uint64_t size_bytes;
    uint32_t n_layers, n_embd;
    int64_t created;
    /* loop thread */
    struct op *live;
    int fetching;
    uint64_t fetch_id, next_fetch_ms;
};

static void op_free(struct op *o)
{
    if (!o) return;
    free(o->prompt);
    free(o->blob);
    free(o);
}

static struct sw_pipe_node *pipe_of(struct glue *g) { return g->pipe_ref ? *g->pipe_ref : NULL; }

static void live_unlink(struct glue *g, struct op *o)
{
    for (struct op **p = &g->live; *p; p = &(*p)->next)
        if (*p == o) {
            *p = o->next;
            o->next = NULL;
            return;
        }
}

/* The end for the API (once); the op is freed unless the engine still owes its on_end. */
static void op_finish(struct glue *g, struct op *o, int rc, const char *msg)
{
    if (!o->ended && o->ev.on_end) o->ev.on_end(o->ev.ud, rc, msg);
    o->ended = 1;
    live_unlink(g, o);
    if (o->in_pipe) o->orphaned = 1;
    else op_free(o);
}

static void op_on_token(void *ud, const struct sw_pipe_token_ev *ev)
{
    struct op *o = ud;
    if (o->orphaned || o->ended) return;
    o->n_tok++;
    int eog = sw_tok_is_eog(o->tok, ev->token);
    for (uint32_t i = 0; i < o->n_stop; i++) eog |= ev->token == o->stop[i];
    struct sw_api_oai_logprob lp, *lpp = NULL;
    struct sw_sampler_logprobs sl;
    if (o->want_lp && ev->blob && !sw_sampler_blob_logprobs(ev->blob, ev->blob_len, &sl)) {
        lp.logprob = sl.logprob;
        lp.n_top = SW_MIN(sl.n_top, SW_API_OAI_MAX_TOP_LOGPROBS);
        for (uint32_t i = 0; i < lp.n_top; i++) {
            lp.top_id[i] = sl.top_id[i];
            lp.top_lp[i] = sl.top_lp[i];
        }
        lpp = &lp;
    }
    o->ev.on_token(o->ev.ud, ev->token, eog, lpp);
}

static void op_on_end(void *ud, uint64_t session, int rc, const char *msg)
{
    struct op *o = ud;
    (void)session;
    o->in_pipe = 0;
    if (o->orphaned) {
        op_free(o);
        return;
    }
    struct glue *g = o->g;
    uint64_t now = sw_time_ms();
    /* no route yet, or a stage that dropped out before the first token while connections
     * settle (as generate --swarm does): open again shortly, within the patience */
    if ((rc == SW_ENOTFOUND || rc == SW_ESTATE) && !o->n_tok && !o->cancelled && now < o->deadline_ms &&
        pipe_of(g)) {
        o->retry_at_ms = now + RETRY_MS;
        return;
    }
    op_finish(g, o, rc, msg);
}

/* Loop thread: hands a generation to the engine (or ends it with the reason it cannot). */
static void op_start(struct glue *g, struct op *o)
{
    o->retry_at_ms = 0;
    struct sw_pipe_node *pn = pipe_of(g);
    if (!pn) {
        op_finish(g, o, SW_ESTATE, "the node is stopping");
        return;
    }
    const struct sw_view *v = sw_node_view(g->node);
    if (!v) {
        op_finish(g, o, SW_ESTATE, "the node has not resolved its model yet");
        return;
    }
    if (!sw_view_ready(v)) {
        char reasons[1024], msg[1100];
        sw_view_reasons(v, reasons, sizeof reasons);
        snprintf(msg, sizeof msg, "the swarm is not ready: %s", reasons);
        op_finish(g, o, SW_ENOTFOUND, msg);
        return;
    }
    struct sw_pipe_request req = { .prompt = o->prompt, .n_prompt = o->n_prompt, .n_predict = o->n_predict,
                                   .sampler_blob = o->blob, .sampler_blob_len = o->blob_len, .stop = o->stop,
                                   .n_stop = o->n_stop, .dtype = SW_PIPE_F32, .chunk = 64 };
    struct sw_pipe_session_cb cb = { op_on_token, op_on_end, o };
    int rc = sw_pipe_node_open_async(pn, &req, &cb, &o->ticket);
    if (rc) {
        op_finish(g, o, rc, rc == SW_ESTATE ? "the node is stopping" : sw_strerror(rc));
        return;
    }
    o->in_pipe = 1;
    if (o->cancelled) sw_pipe_node_cancel_async(pn, o->ticket);
}

static void on_async(uv_async_t *h)
{
    struct glue *g = h->data;
    pthread_mutex_lock(&g->mu);
    struct op *in = g->inbox, *rev = NULL;
    g->inbox = NULL;
    pthread_mutex_unlock(&g->mu);
    while (in) { /* LIFO -> order of arrival */
        struct op *nx = in->next;
        in->next = rev;
        rev = in;
        in = nx;
    }
    while (rev) {
        struct op *o = rev;
        rev = o->next;
        o->next = NULL;
        if (o->is_cancel) {
            for (struct op *t = g->live; t; t = t->next) {
                if (t->handle != o->handle) continue;
                t->cancelled = 1;
                if (t->in_pipe && pipe_of(g)) sw_pipe_node_cancel_async(pipe_of(g), t->ticket);
                else if (!t->in_pipe) op_finish(g, t, SW_ECLOSED, "cancelled"); /* waiting for a retry */
                break;
            }
            op_free(o);
            continue;
        }
        o->next = g->live;
        g->live = o;
        op_start(g, o);
    }
}

/* ---------------------------------------------------------------- tokenizer, model */

/* general.file_type (llama.cpp's numbering of whole-file types) -> Ollama's quantization
 * level name; "" for a number this table does not know. */
static const char *ftype_name(uint32_t t)
{
    static const char *const names[] = { [0] = "F32",     [1] = "F16",     [2] = "Q4_0",    [3] = "Q4_1",
                                         [7] = "Q8_0",    [8] = "Q5_0",    [9] = "Q5_1",    [10] = "Q2_K",
                                         [11] = "Q3_K_S", [12] = "Q3_K_M", [13] = "Q3_K_L", [14] = "Q4_K_S",
                                         [15] = "Q4_K_M", [16] = "Q5_K_S", [17] = "Q5_K_M", [18] = "Q6_K",
                                         [19] = "IQ2_XXS", [20] = "IQ2_XS", [28] = "IQ2_S",
                                         [23] = "IQ3_XXS", [24] = "IQ1_S",  [26] = "IQ3_S",   [31] = "IQ1_M",
                                         [25] = "IQ4_NL", [30] = "IQ4_XS", [32] = "BF16" };
    return t < sizeof names / sizeof names[0] && names[t] ? names[t] : "";
}

static void set_tokenizer(struct glue *g, struct sw_tok *tok, const struct sw_gguf *gg, const char *from)
{
    char arch[64] = "", key[128];
    uint32_t n_ctx = 0;
    if (sw_gguf_get_cstr(gg, "general.architecture", arch, sizeof arch)) {
        snprintf(key, sizeof key, "%s.context_length", arch);
        sw_gguf_get_u32(gg, key, &n_ctx);
    }
    const char *jinja = sw_tok_chat_template(tok);
    enum sw_chat_tmpl t = sw_chat_detect(jinja);
    /* what Ollama's /api/tags and /api/show describe */
    uint32_t ftype = UINT32_MAX, n_layers = 0, n_embd = 0;
    char label[16] = "";
    sw_gguf_get_u32(gg, "general.file_type", &ftype);
    sw_gguf_get_cstr(gg, "general.size_label", label, sizeof label);
    snprintf(key, sizeof key, "%s.block_count", arch);
    sw_gguf_get_u32(gg, key, &n_layers);
    snprintf(key, sizeof key, "%s.embedding_length", arch);
    sw_gguf_get_u32(gg, key, &n_embd);
    pthread_mutex_lock(&g->mu);
    snprintf(g->arch, sizeof g->arch, "%.31s", arch);
    snprintf(g->quant, sizeof g->quant, "%s", ftype_name(ftype));
    snprintf(g->size_label, sizeof g->size_label, "%s", label);
    g->n_layers = n_layers;
    g->n_embd = n_embd;
    g->tok = tok;
    g->tmpl = t;
    g->tmpl_fallback = jinja == NULL;
    g->n_ctx = n_ctx ? n_ctx : DEFAULT_CTX;
    pthread_mutex_unlock(&g->mu);
    sw_log(SW_LOG_INFO, "API", "tokenizer from %s (%u tokens, context %u, chat template %s%s)", from,
           sw_tok_n_vocab(tok), n_ctx ? n_ctx : DEFAULT_CTX, sw_chat_name(t),
           jinja ? "" : ": the model has none, ChatML is used");
}

static void on_header(void *ud, int rc, struct sw_shard_header *h, const char *msg)
{
    struct glue *g = ud;
    g->fetching = 0;
    g->next_fetch_ms = sw_time_ms() + FETCH_PAUSE_MS;
    if (rc || !h) {
        if (rc != SW_ECLOSED) sw_log(SW_LOG_DEBUG, "API", "no tokenizer from the swarm yet: %s", msg ? msg : sw_strerror(rc));
        sw_shard_header_free(h);
        return;
    }
    struct sw_tok *tok = NULL;
    char err[256] = "";
    pthread_mutex_lock(&g->mu);
    int have = g->tok != NULL || g->closed;
    pthread_mutex_unlock(&g->mu);
    if (!have && !sw_tok_from_gguf(h->gguf, &tok, err, sizeof err)) {
        char from[160], ids[16];
        snprintf(from, sizeof from, "node %s's shard %d header (%zu bytes, %u piece%s verified)",
                 sw_node_id_short(h->node, ids, sizeof ids), (int)h->shard, h->len, h->n_pieces,
                 h->n_pieces == 1 ? "" : "s");
        set_tokenizer(g, tok, h->gguf, from);
    } else if (!have) {
        sw_log(SW_LOG_WARN, "API", "the swarm's shard header has no usable tokenizer: %s", err);
    }
    sw_shard_header_free(h);
}

/* Loop thread: the tokenizer from our own loaded shard, else from the swarm. */
static void find_tokenizer(struct glue *g)
{
    const char *path = NULL;
    if (!sw_node_shard_file(g->node, NULL, NULL, &path) && path) {
        struct sw_gguf *gg = NULL;
        struct sw_tok *tok = NULL;
        char err[256] = "";
        if (!sw_gguf_open(path, &gg, err, sizeof err) && !sw_tok_from_gguf(gg, &tok, err, sizeof err)) {
            set_tokenizer(g, tok, gg, path);
            sw_gguf_close(gg);
            return;
        }
        sw_gguf_close(gg);
    }
    struct sw_pipe_node *pn = pipe_of(g);
    if (!pn || g->fetching || sw_time_ms() < g->next_fetch_ms) return;
    if (!sw_pipe_node_fetch_header(pn, FETCH_WAIT_MS, on_header, g, &g->fetch_id)) g->fetching = 1;
}

static void on_tick(uv_timer_t *t)
{
    struct glue *g = t->data;
    if (!pipe_of(g)) { /* the engine is detached: nothing can run any more */
        pthread_mutex_lock(&g->mu);
        g->closed = 1;
        pthread_mutex_unlock(&g->mu);
        struct op *o = g->live;
        while (o) {
            struct op *nx = o->next;
            if (!o->in_pipe) op_finish(g, o, SW_ESTATE, "the node is stopping");
            o = nx;
        }
        return;
    }
    uint64_t now = sw_time_ms();
    struct op *o = g->live;
    while (o) {
        struct op *nx = o->next;
        if (!o->in_pipe && o->retry_at_ms && now >= o->retry_at_ms) op_start(g, o);
        o = nx;
    }
    pthread_mutex_lock(&g->mu);
    int need_model = !g->have_model, need_tok = !g->tok;
    pthread_mutex_unlock(&g->mu);
    if (need_model) {
        const struct sw_bt_metainfo *mi = sw_node_metainfo(g->node);
        if (mi) {
            pthread_mutex_lock(&g->mu);
            /* the torrent's name: the model's identity for people (the info-hash for machines) */
            snprintf(g->model_id, sizeof g->model_id, "%s", mi->name && mi->name[0] ? mi->name : mi->info_hash_hex);
            g->created = (int64_t)time(NULL);
            snprintf(g->digest, sizeof g->digest, "%s", mi->info_hash_hex);
            g->size_bytes = mi->total_length;
            g->have_model = 1;
            pthread_mutex_unlock(&g->mu);
        }
    }
    if (need_tok) find_tokenizer(g);
}

/* ---------------------------------------------------------------- the backend */

static int be_model(void *ud, struct sw_api_oai_model *out, char *msg, size_t msg_len)
{
    struct glue *g = ud;
    pthread_mutex_lock(&g->mu);
    int rc = 0;
    if (!g->have_model) {
        snprintf(msg, msg_len, "the node has not resolved its model yet (waiting for the torrent's metadata)");
        rc = SW_ESTATE;
    } else {
        snprintf(out->id, sizeof out->id, "%s", g->model_id);
        out->created = g->created;
        out->n_ctx = g->n_ctx;
        out->n_vocab = g->tok ? sw_tok_n_vocab(g->tok) : 0;
        snprintf(out->arch, sizeof out->arch, "%s", g->arch);
        snprintf(out->quant, sizeof out->quant, "%s", g->quant);
        snprintf(out->size_label, sizeof out->size_label, "%s", g->size_label);
        snprintf(out->digest, sizeof out->digest, "%s", g->digest);
        snprintf(out->chat_template, sizeof out->chat_template, "%s", g->tok ? sw_chat_name(g->tmpl) : "");
        out->size_bytes = g->size_bytes;
        out->n_layers = g->n_layers;
        out->n_embd = g->n_embd;
    }
    pthread_mutex_unlock(&g->mu);
    return rc;
}

static int be_ready(void *ud, char *msg, size_t msg_len)
{
    struct glue *g = ud;
    pthread_mutex_lock(&g->mu);
    int rc = 0;
    if (g->closed) {
        snprintf(msg, msg_len, "the node is stopping");
        rc = SW_ESTATE;
    } else if (!g->tok) {
        snprintf(msg, msg_len, "no tokenizer yet: this node holds no loaded shard and no loaded node has sent "
                               "its shard header yet");
        rc = SW_ESTATE;
    }
    pthread_mutex_unlock(&g->mu);
    return rc;
}

static const struct sw_tok *tok_of(struct glue *g)
{
    pthread_mutex_lock(&g->mu);
    const struct sw_tok *t = g->tok;
    pthread_mutex_unlock(&g->mu);
    return t;
}

static int be_tokenize(void *ud, const char *text, size_t len, int32_t **ids_out, size_t *n_out)
{
    const struct sw_tok *t = tok_of(ud);
    if (!t) return SW_ESTATE;
    /* as `generate -p`: BOS when the model asks for it, control-token text parsed */
    return sw_tok_encode(t, text, len, SW_TOK_PARSE_SPECIAL | SW_TOK_ADD_BOS, ids_out, n_out);
}

static int be_piece(void *ud, int32_t id, struct sw_buf *out)
{
    const struct sw_tok *t = tok_of(ud);
    if (!t) return SW_ESTATE;
    char small[256];
    int n = sw_tok_piece(t, id, 0, small, sizeof small);
    if (n < 0) return 0; /* an id out of range has no text */
    if ((size_t)n <= sizeof small) return sw_buf_append(out, small, (size_t)n) ? SW_ENOMEM : 0;
    char *big = malloc((size_t)n);
    if (!big) return SW_ENOMEM;
    sw_tok_piece(t, id, 0, big, (size_t)n);
    int rc = sw_buf_append(out, big, (size_t)n) ? SW_ENOMEM : 0;
    free(big);
    return rc;
}

static int be_chat(void *ud, const struct sw_api_oai_msg *msgs, size_t n, struct sw_buf *prompt_out,
                   const char *const **stops_out, char *template_out, size_t template_len)
{
    struct glue *g = ud;
    pthread_mutex_lock(&g->mu);
    enum sw_chat_tmpl t = g->tmpl;
    int fallback = g->tmpl_fallback, have = g->tok != NULL;
    pthread_mutex_unlock(&g->mu);
    if (!have) return SW_ESTATE;
    struct sw_chat_msg *cm = malloc((n ? n : 1) * sizeof *cm);
    if (!cm) return SW_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        cm[i].role = msgs[i].role;
        cm[i].content = msgs[i].content;
    }
    int rc = sw_chat_format(t, cm, n, 1, prompt_out);
    free(cm);
    if (stops_out) *stops_out = sw_chat_stop_strings(t);
    if (template_out && template_len)
        snprintf(template_out, template_len, "%s%s", sw_chat_name(t), fallback ? " (fallback)" : "");
    return rc;
}

static int be_open(void *ud, const int32_t *prompt, size_t n, uint32_t max_tokens, int chat,
                   const struct sw_api_oai_sampling *sp, const struct sw_api_oai_events *ev, uint64_t *handle_out,
                   char *msg, size_t msg_len)
{
    struct glue *g = ud;
    pthread_mutex_lock(&g->mu);
    struct sw_tok *tok = g->tok;
    enum sw_chat_tmpl tmpl = g->tmpl;
    pthread_mutex_unlock(&g->mu);
    if (!tok) {
        snprintf(msg, msg_len, "no tokenizer yet");
        return SW_ESTATE;
    }
    if (!n || n > UINT32_MAX) return SW_EINVAL;
    struct op *o = calloc(1, sizeof *o);
    if (!o) return SW_ENOMEM;
    o->g = g;
    o->tok = tok;
    o->ev = *ev;
    o->n_prompt = (uint32_t)n;
    o->n_predict = max_tokens;
    o->prompt = malloc(n * sizeof *o->prompt);
    if (!o->prompt) {
        op_free(o);
        return SW_ENOMEM;
    }
    memcpy(o->prompt, prompt, n * sizeof *o->prompt);
    /* the sampler state that travels to the last stage: parameters, seed, the prompt window */
    struct sw_sampler_params p;
    sw_sampler_params_default(&p);
    p.temperature = sp->temperature;
    p.top_k = sp->top_k;
    p.top_p = sp->top_p;
    p.min_p = sp->min_p;
    p.repeat_penalty = sp->repeat_penalty;
    p.seed = sp->seed;
    struct sw_sampler *smp = NULL;
    int rc = sw_sampler_new(&p, sw_tok_n_vocab(tok), &smp);
    if (rc) {
        snprintf(msg, msg_len, "bad sampling parameters");
        op_free(o);
        return SW_EINVAL;
    }
    sw_sampler_accept(smp, o->prompt, n);
    if (sp->logprobs) rc = sw_sampler_set_logprobs(smp, 1, SW_MIN(sp->top_logprobs, SW_SAMPLER_MAX_TOP_LOGPROBS));
    if (!rc && sp->grammar) rc = sw_sampler_set_grammar(smp, sp->grammar, sp->grammar_len);
    if (rc) {
        snprintf(msg, msg_len, "%s", sp->grammar ? "the grammar cannot be used" : "bad log probability settings");
        sw_sampler_free(smp);
        op_free(o);
        return SW_EINVAL;
    }
    o->want_lp = sp->logprobs;
    struct sw_buf b = { 0 };
    sw_sampler_save(smp, &b);
    sw_sampler_free(smp);
    if (!sw_buf_ok(&b)) {
        sw_buf_free(&b);
        op_free(o);
        return SW_ENOMEM;
    }
    o->blob = b.data;
    o->blob_len = b.len;
    /* stop tokens: EOS/EOT, and for chat the template's end-of-turn tokens */
    int32_t cand[SW_PIPE_MAX_STOP + 2];
    size_t nc = 0;
    if (sw_tok_eos(tok) >= 0) cand[nc++] = sw_tok_eos(tok);
    if (sw_tok_eot(tok) >= 0) cand[nc++] = sw_tok_eot(tok);
    if (chat) {
        int32_t ct[SW_PIPE_MAX_STOP];
        size_t k = sw_chat_stop_tokens(tmpl, tok, ct, SW_PIPE_MAX_STOP);
        for (size_t i = 0; i < SW_MIN(k, (size_t)SW_PIPE_MAX_STOP) && nc < SW_PIPE_MAX_STOP + 2; i++) cand[nc++] = ct[i];
    }
    for (size_t i = 0; i < nc && o->n_stop < SW_PIPE_MAX_STOP; i++) {
        int dup = 0;
        for (uint32_t j = 0; j < o->n_stop; j++) dup |= o->stop[j] == cand[i];
        if (!dup) o->stop[o->n_stop++] = cand[i];
    }
    o->deadline_ms = sw_time_ms() + OPEN_PATIENCE_MS;
    pthread_mutex_lock(&g->mu);
    if (g->closed) {
        pthread_mutex_unlock(&g->mu);
        op_free(o);
        snprintf(msg, msg_len, "the node is stopping");
        return SW_ESTATE;
    }
    o->handle = ++g->next_handle;
    *handle_out = o->handle;
    o->next = g->inbox;
    g->inbox = o;
    uv_async_send(&g->async);
    pthread_mutex_unlock(&g->mu);
    return 0;
}

static void be_cancel(void *ud, uint64_t handle)
{
    struct glue *g = ud;
    struct op *o = calloc(1, sizeof *o);
    if (!o) return;
    o->is_cancel = 1;
    o->handle = handle;
    pthread_mutex_lock(&g->mu);
    if (g->closed) { /* everything already ended */
        pthread_mutex_unlock(&g->mu);
        free(o);
        return;
    }
    o->next = g->inbox;
    g->inbox = o;
    uv_async_send(&g->async);
    pthread_mutex_unlock(&g->mu);
}

/* ---------------------------------------------------------------- life */

static void on_closed(uv_handle_t *h)
{
    struct glue *g = h->data;
    if (--g->handles) return;
    pthread_mutex_destroy(&g->mu);
    sw_tok_free(g->tok);
    free(g);
}

/* sw_api_free, after the server stopped: no API thread runs any more; on the loop's thread
 * while the loop is not running. Every generation still known ends for the API now. */
static void glue_free(void *ud)
{
    struct glue *g = ud;
    pthread_mutex_lock(&g->mu);
    g->closed = 1;
    struct op *in = g->inbox;
    g->inbox = NULL;
    pthread_mutex_unlock(&g->mu);
    while (in) {
        struct op *nx = in->next;
        if (!in->is_cancel && in->ev.on_end) in->ev.on_end(in->ev.ud, SW_ECLOSED, "the node is stopping");
        op_free(in);
        in = nx;
    }
    while (g->live) op_finish(g, g->live, SW_ECLOSED, "the node is stopping");
    if (g->fetching && pipe_of(g)) sw_pipe_node_fetch_cancel(pipe_of(g), g->fetch_id);
    g->fetching = 0;
    uv_timer_stop(&g->timer);
    uv_close((uv_handle_t *)&g->timer, on_closed);
    uv_close((uv_handle_t *)&g->async, on_closed);
}

int sw_cli_node_openai_attach(struct sw_api *api, struct sw_node *node, struct sw_pipe_node **pipe_ref)
{
    if (!api || !node || !pipe_ref) return SW_EINVAL;
    struct glue *g = calloc(1, sizeof *g);
    if (!g) return SW_ENOMEM;
    g->node = node;
    g->pipe_ref = pipe_ref;
    pthread_mutex_init(&g->mu, NULL);
    uv_loop_t *loop = sw_node_loop(node);
    if (uv_async_init(loop, &g->async, on_async)) {
        pthread_mutex_destroy(&g->mu);
        free(g);
        return SW_EIO;
    }
    uv_timer_init(loop, &g->timer);
    g->async.data = g->timer.data = g;
    g->handles = 2;
    uv_unref((uv_handle_t *)&g->async); /* the node's own handles keep the loop running */
    uv_unref((uv_handle_t *)&g->timer);
    uv_timer_start(&g->timer, on_tick, 0, TICK_MS);
    struct sw_api_oai_backend be = { g, be_model, be_ready, be_tokenize, be_piece, be_chat, be_open, be_cancel };
    int rc = sw_api_on_free(api, glue_free, g);
    if (!rc) rc = sw_api_openai_attach(api, &be);
    if (rc) { /* the routes may be half there: the API is not started, the caller frees it */
        return rc;
    }
    return 0;
}
