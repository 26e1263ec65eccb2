/* cmd_generate_swarm.c — `shardswarm generate --swarm`: joins a swarm as a light client
 * (a node holding no shard), waits until every shard has a live loaded node it reaches,
 * opens a pipeline session along the best route and streams the tokens as they come, with
 * time to first token and tokens/s. Failover inside the swarm is invisible here. The
 * tokenizer comes from --tokenizer, else a shard in --cache DIR/shards, else the swarm (a
 * loaded node's shard header, verified against the torrent's piece hashes).
 * Not for: single-process generation (cmd_generate.c). */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli/cli.h"
#include "bt/bt.h"
#include "cli/generate_swarm.h"
#include "gguf/gguf.h"
#include "infer/infer.h"
#include "swarm/swarm.h"

#define MAX_BOOT 16
#define MAX_PROMPT_FILE (64u << 20)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: shardswarm generate --swarm --bootstrap HOST:PORT --model TORRENT|MAGNET\n"
            "                           (-p PROMPT | -f FILE | --prompt-ids \"I ...\" | --prompt-len N) [options]\n\n"
            "Joins the swarm as a light client (no shard) and generates across it.\n\n"
            "  --bootstrap HOST:PORT   a node of the swarm (repeatable; required)\n"
            "  --model TORRENT|MAGNET  the model's torrent (or -m)\n"
            "  --tokenizer FILE        a GGUF whose tokenizer to use (any shard of the model, or\n"
            "                          the model). Without it: a shard of the model found in\n"
            "                          --cache DIR/shards, else the header of a loaded node's shard\n"
            "                          fetched from the swarm and checked against the torrent\n"
            "  --cache DIR             node key and state (default: a fresh temporary folder)\n"
            "  --listen PORT           our BitTorrent/DHT port (default: any)\n"
            "  --swarm-key FILE        the private swarm's key (docs/protocol.md)\n"
            "  -p, --prompt TEXT       -f, --file FILE   --prompt-ids \"I ...\"   --prompt-len N\n"
            "  -n, --n-predict N       tokens to generate (default 128)\n"
            "  --temp T  --top-k K  --top-p P  --min-p P  --repeat-penalty R  --repeat-last-n N\n"
            "  --seed S                sampling seed (default: random, printed)\n"
            "  --wire f32|f16          hidden states on the wire (default f32)\n"
            "  --chunk N               prompt tokens per message (default 64; 0 = whole prompt)\n"
            "  --ctx N                 context positions to reserve (default prompt + n)\n"
            "  --no-bos  --no-echo  --ignore-eos  --ids (print token ids; no tokenizer needed\n"
            "                          with --prompt-ids)\n"
            "  --logits-out FILE       the logits of every step (f32, n_vocab per token)\n"
            "  --token-times FILE      one line per token: index, microseconds since the session opened\n"
            "  --json-timings          one JSON line of timings on stderr at the end\n"
            "  --wait SECONDS          how long to wait for a complete route (default 60)\n"
            "  --deadline-ms MS        no sign of life from the route this long: rebuild it (default 5000)\n"
            "  --spec K                speculative decoding: the last stage drafts up to K (1..15)\n"
            "                          tokens per step by prompt lookup, the stages verify them in one\n"
            "                          step; same tokens, fewer round trips (default 0: off)\n"
            "  --spot-check RATE|off   recompute a sample of steps on a replica of the same shard (chance\n"
            "                          per generated token, 1/N or 0..1; default 1/256; docs/pipeline.md)\n"
            "  --no-prefix-cache       compute the whole prompt (the stages cache the KV of earlier\n"
            "                          sessions of the same client, keyed by prompt prefix; a client\n"
            "                          keeps its identity in --cache DIR)\n"
            "  --log-format human|json   -v, --verbose\n");
}

struct gs_args {
    const char *boot[MAX_BOOT];
    uint32_t n_boot;
    const char *model, *tokenizer, *cache, *prompt, *prompt_file, *prompt_ids, *logits_out, *token_times, *log_format;
    uint32_t listen, n_predict, prompt_len, chunk, ctx, wait_s, deadline_ms, spec_k;
    double spot_rate;
    int no_bos, no_echo, ignore_eos, print_ids, json, seed_set, verbose, f16, no_prefix;
    struct sw_sampler_params sp;
    int has_swarm_key;
    uint8_t swarm_key[32];
};

struct gs {
    struct gs_args a;
    uv_loop_t loop;
    struct sw_node *node;
    struct sw_pipe_node *pn;
    uv_timer_t timer;
    uv_signal_t sig, sig_term;
    int handles;
    struct sw_tok *tok;
    struct sw_tok_stream ts;
    struct sw_buf text;
    int32_t *ids;
    size_t n_prompt;
    uint8_t *blob;
    size_t blob_len;
    int32_t stop[SW_PIPE_MAX_STOP];
    uint32_t n_stop;
    FILE *lf, *tf;
    uint64_t t_start, t_open, deadline;
    int opened, ended, stopping, trying;
    int need_tok;              /* 1: the prompt needs the swarm's tokenizer; 2: only the output */
    int fetching, prepared;    /* the tokenizer fetch is running; the prompt is ready */
    uint64_t fetch_id;
    uint8_t *prompt_text;      /* -f: the file's bytes */
    size_t prompt_text_len;
    int fatal;                 /* an exit status already reported */
    uint64_t tok_fetch_us;     /* the swarm's tokenizer: start of the fetch -> verified */
    uint64_t session, ticket;
    uint32_t n_gen;
    uint64_t ttft_us, elapsed_us;
    uint32_t reused;           /* prompt positions the stages took from their prefix caches */
    double tps;
    int status;
    char msg[600];
};

static int parse_args(const char *cmd, int argc, char **argv, struct gs_args *a)
{
    int rc;
    sw_sampler_params_default(&a->sp);
    a->n_predict = 128;
    a->chunk = 64;
    a->wait_s = 60;
    a->log_format = "human";
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--swarm")) continue;
        if (!strcmp(f, "--no-bos")) { a->no_bos = 1; continue; }
        if (!strcmp(f, "--no-echo")) { a->no_echo = 1; continue; }
        if (!strcmp(f, "--ignore-eos")) { a->ignore_eos = 1; continue; }
        if (!strcmp(f, "--no-prefix-cache")) { a->no_prefix = 1; continue; }
        if (!strcmp(f, "--ids")) { a->print_ids = 1; continue; }
        if (!strcmp(f, "--json-timings")) { a->json = 1; continue; }
        if (!strcmp(f, "-v") || !strcmp(f, "--verbose")) { a->verbose = 1; continue; }
        if (i + 1 >= argc) return sw_cli_usage_error(cmd, "%s: unknown flag or missing value", f);
        const char *v = argv[++i];
        if (!strcmp(f, "--bootstrap")) {
            char host[256];
            uint16_t port;
            if ((rc = sw_cli_parse_hostport(cmd, "--bootstrap", v, host, &port))) return rc;
            if (a->n_boot == MAX_BOOT) return sw_cli_usage_error(cmd, "--bootstrap given more than %d times", MAX_BOOT);
            a->boot[a->n_boot++] = v;
        } else if (!strcmp(f, "--swarm-key")) {
            if ((rc = sw_cli_swarm_key(cmd, v, a->swarm_key))) return rc;
            a->has_swarm_key = 1;
        } else if (!strcmp(f, "--model") || !strcmp(f, "-m")) a->model = v;
        else if (!strcmp(f, "--tokenizer")) a->tokenizer = v;
        else if (!strcmp(f, "--cache")) a->cache = v;
        else if (!strcmp(f, "-p") || !strcmp(f, "--prompt")) a->prompt = v;
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) a->prompt_file = v;
        else if (!strcmp(f, "--prompt-ids")) a->prompt_ids = v;
        else if (!strcmp(f, "--logits-out")) a->logits_out = v;
        else if (!strcmp(f, "--token-times")) a->token_times = v;
        else if (!strcmp(f, "--log-format")) a->log_format = v;
        else if (!strcmp(f, "--wire")) {
            if (!strcmp(v, "f32")) a->f16 = 0;
            else if (!strcmp(v, "f16")) a->f16 = 1;
            else return sw_cli_usage_error(cmd, "--wire must be f32 or f16, got '%s'", v);
        } else if (!strcmp(f, "--listen")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 0, 65535, &a->listen))) return rc;
        } else if (!strcmp(f, "-n") || !strcmp(f, "--n-predict")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 1, 1u << 20, &a->n_predict))) return rc;
        } else if (!strcmp(f, "--prompt-len")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 1, 1u << 20, &a->prompt_len))) return rc;
        } else if (!strcmp(f, "--chunk")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 0, SW_PIPE_MAX_TOKENS, &a->chunk))) return rc;
        } else if (!strcmp(f, "--ctx")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 1, 1u << 24, &a->ctx))) return rc;
        } else if (!strcmp(f, "--wait")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 1, 86400, &a->wait_s))) return rc;
        } else if (!strcmp(f, "--spot-check")) {
            if (sw_spot_parse_rate(v, &a->spot_rate))
                return sw_cli_usage_error(cmd, "--spot-check must be off, 1/N or a number in (0, 1], got '%s'", v);
        } else if (!strcmp(f, "--spec")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 0, SW_PIPE_MAX_SPEC_K, &a->spec_k))) return rc;
        } else if (!strcmp(f, "--deadline-ms")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 100, 3600000, &a->deadline_ms))) return rc;
        } else if (sw_cli_sampler_flag(cmd, f, v, &a->sp, &a->seed_set, &rc)) {
            if (rc) return rc;
        } else {
            return sw_cli_usage_error(cmd, "unknown flag %s", f);
        }
    }
    if (!a->n_boot) return sw_cli_usage_error(cmd, "--bootstrap HOST:PORT is required");
    if (!a->model) return sw_cli_usage_error(cmd, "--model TORRENT|MAGNET is required");
    int n_src = !!a->prompt + !!a->prompt_file + !!a->prompt_ids + !!a->prompt_len;
    if (n_src == 0) return sw_cli_usage_error(cmd, "a prompt is required (-p, -f, --prompt-ids or --prompt-len)");
    if (n_src > 1) return sw_cli_usage_error(cmd, "give only one of -p, -f, --prompt-ids, --prompt-len");
    if (strcmp(a->log_format, "human") && strcmp(a->log_format, "json"))
        return sw_cli_usage_error(cmd, "--log-format must be 'human' or 'json', got '%s'", a->log_format);
    if (!a->seed_set) {
        uint64_t s;
        sw_random_bytes(&s, sizeof s);
        a->sp.seed = s & 0xffffffffu;
    }
    return 0;
}

/* The GGUF bytes before the tensor data (header, metadata with the tokenizer, tensor
 * infos), in whole pieces, verify against the torrent's piece hashes (SHA-1, BEP 3;
 * sw_shard_header_verify): a shard still being downloaded (preallocated, zeros) or a
 * foreign file is never trusted. */
static int header_verifies(const struct sw_bt_metainfo *mi, uint32_t file, const struct sw_gguf *g)
{
    uint64_t span = sw_shard_header_span(mi, file, sw_gguf_header_size(g));
    return span && span <= sw_gguf_file_size(g) &&
           !sw_shard_header_verify(mi, file, sw_gguf_bytes(g), (size_t)span, NULL, NULL, 0);
}

static int try_tokenizer(const char *path, const struct sw_bt_metainfo *mi, uint32_t file, struct sw_tok **out)
{
    struct sw_gguf *g = NULL;
    char err[512];
    int rc = sw_gguf_open(path, &g, err, sizeof err);
    if (!rc && mi && !header_verifies(mi, file, g)) rc = SW_ECORRUPT;
    if (!rc) rc = sw_tok_from_gguf(g, out, err, sizeof err);
    sw_gguf_close(g);
    return rc;
}

/* No --tokenizer: every shard carries the model's tokenizer in its metadata, so a shard of
 * this model in DIR/shards (a node's cache, or one the user copied there) serves. With a
 * .torrent the files it names are tried, complete in size and with a header that verifies
 * against the piece hashes; with a magnet (names unknown before the metadata) any *.gguf in
 * the folder that opens. Writes the file used into path_out. */
static int find_tokenizer(const struct gs_args *a, struct sw_tok **out, char *path_out, size_t path_len)
{
    char *dir = sw_path_join(a->cache, "shards");
    if (!dir) return SW_ENOMEM;
    int rc = SW_ENOTFOUND;
    struct sw_bt_metainfo mi = { 0 };
    char err[512];
    if (strncmp(a->model, "magnet:", 7) && !sw_bt_metainfo_load(a->model, &mi, err, sizeof err)) {
        for (uint32_t i = 0; i < mi.n_files && rc; i++) {
            const struct sw_bt_file *f = &mi.files[i];
            char *path = f->pad ? NULL : sw_path_join(dir, f->path);
            uint64_t size = 0;
            if (path && !sw_file_size(path, &size) && size == f->length && !try_tokenizer(path, &mi, i, out)) {
                snprintf(path_out, path_len, "%s", path);
                rc = 0;
            }
            free(path);
        }
    } else {
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && rc && (e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (l < 6 || strcmp(e->d_name + l - 5, ".gguf")) continue;
            char *path = sw_path_join(dir, e->d_name);
            if (path && !try_tokenizer(path, NULL, 0, out)) {
                snprintf(path_out, path_len, "%s", path);
                rc = 0;
            }
            free(path);
        }
        if (d) closedir(d);
    }
    sw_bt_metainfo_free(&mi);
    free(dir);
    return rc;
}

static void print_text(struct sw_buf *b)
{
    if (b->len) {
        fwrite(b->data, 1, b->len, stdout);
        fflush(stdout);
    }
    b->len = 0;
}

/* The prompt's ids, the stop tokens and the sampler state that travels to the last stage;
 * with a tokenizer, the prompt is echoed as text. Returns an exit status (reported). */
static int prepare(struct gs *g)
{
    const char *cmd = "generate --swarm";
    struct gs_args *a = &g->a;
    int rc;
    if (!g->tok && !a->print_ids) {
        sw_log(SW_LOG_INFO, "GEN", "no tokenizer: printing token ids");
        a->print_ids = 1;
    }
    uint32_t n_vocab = g->tok ? sw_tok_n_vocab(g->tok) : 0;
    if (a->prompt_len) {
        /* the same synthetic prompt as `generate --prompt-len`: it needs the model's
         * vocabulary size and BOS, so the tokenizer (need_tok 1) */
        if (!g->tok) return sw_cli_fail(cmd, "--prompt-len needs the model's tokenizer");
        g->ids = malloc(a->prompt_len * sizeof *g->ids);
        if (!g->ids) return sw_cli_fail(cmd, "out of memory");
        sw_cli_synth_prompt(n_vocab, a->no_bos ? -1 : sw_tok_bos(g->tok), g->ids, a->prompt_len);
        g->n_prompt = a->prompt_len;
    } else if (!a->prompt_ids) {
        const char *p = g->prompt_text ? (const char *)g->prompt_text : a->prompt;
        size_t len = g->prompt_text ? g->prompt_text_len : strlen(p);
        if (!g->tok) return sw_cli_fail(cmd, "-p/-f need a tokenizer");
        rc = sw_tok_encode(g->tok, p, len, SW_TOK_PARSE_SPECIAL | (a->no_bos ? 0 : SW_TOK_ADD_BOS), &g->ids, &g->n_prompt);
        if (rc || !g->n_prompt) return sw_cli_fail(cmd, "cannot tokenize the prompt: %s", rc ? sw_strerror(rc) : "empty");
    }
    for (size_t i = 0; i < g->n_prompt; i++)
        if (g->ids[i] < 0 || (n_vocab && (uint32_t)g->ids[i] >= n_vocab))
            return sw_cli_fail(cmd, "prompt token id %d is outside the vocabulary (%u)", g->ids[i], n_vocab);
    if (g->tok) {
        int32_t e = sw_tok_eos(g->tok), t = sw_tok_eot(g->tok);
        if (e >= 0) g->stop[g->n_stop++] = e;
        if (t >= 0 && t != e) g->stop[g->n_stop++] = t;
    }
    /* the sampler state that travels to the last stage: params, seed, the prompt window */
    uint32_t nv = n_vocab;
    for (size_t i = 0; !nv && i < g->n_prompt; i++) nv = SW_MAX(nv, (uint32_t)g->ids[i] + 1);
    struct sw_sampler *smp = NULL;
    if (sw_sampler_new(&a->sp, nv ? nv : 1, &smp)) return sw_cli_usage_error(cmd, "bad sampling parameters");
    sw_sampler_accept(smp, g->ids, g->n_prompt);
    struct sw_buf b;
    sw_buf_init(&b);
    sw_sampler_save(smp, &b);
    sw_sampler_free(smp);
    if (!sw_buf_ok(&b)) {
        sw_buf_free(&b);
        return sw_cli_fail(cmd, "out of memory");
    }
    g->blob = b.data;
    g->blob_len = b.len;
    if (g->tok) sw_tok_stream_init(&g->ts, g->tok, 0, 0);
    g->prepared = 1;
    return SW_EXIT_OK;
}

static void echo_prompt(struct gs *g)
{
    if (!g->a.no_echo && !g->a.print_ids && g->tok) {
        sw_tok_decode(g->tok, g->ids, g->n_prompt, 0, &g->text);
        print_text(&g->text);
    }
}

static void on_closed(uv_handle_t *h)
{
    struct gs *g = h->data;
    g->handles--;
}

static void after_detach(void *ud)
{
    struct gs *g = ud;
    g->pn = NULL;
    sw_node_stop(g->node, NULL, NULL);
}

static void finish(struct gs *g)
{
    if (g->stopping) return;
    g->stopping = 1;
    uv_timer_stop(&g->timer);
    uv_close((uv_handle_t *)&g->timer, on_closed);
    uv_signal_stop(&g->sig);
    uv_close((uv_handle_t *)&g->sig, on_closed);
    uv_signal_stop(&g->sig_term);
    uv_close((uv_handle_t *)&g->sig_term, on_closed);
    if (g->pn && g->fetching) sw_pipe_node_fetch_cancel(g->pn, g->fetch_id); /* on_header(SW_ECLOSED) */
    if (g->pn) sw_pipe_node_detach(g->pn, after_detach, g);
    else sw_node_stop(g->node, NULL, NULL);
}

static void on_token(void *ud, const struct sw_pipe_token_ev *ev)
{
    struct gs *g = ud;
    g->n_gen++;
    g->ttft_us = ev->ttft_us;
    g->elapsed_us = ev->elapsed_us;
    g->reused = ev->reused;
    g->tps = ev->tokens_per_s;
    if (g->lf && ev->logits) fwrite(ev->logits, sizeof(float), ev->n_logits, g->lf);
    if (g->tf) { /* flushed per token: benches watch the file to act mid-generation */
        fprintf(g->tf, "%u %" PRIu64 "\n", ev->index, ev->elapsed_us);
        fflush(g->tf);
    }
    if (g->a.print_ids) {
        printf("%s%d", ev->index ? " " : "", ev->token);
        fflush(stdout);
    } else if (g->tok) {
        sw_tok_stream_push(&g->ts, ev->token, &g->text);
        print_text(&g->text);
    }
}

static void on_end(void *ud, uint64_t session, int rc, const char *msg)
{
    struct gs *g = ud;
    g->trying = 0;
    /* The swarm is still forming (no complete route yet), or a stage dropped out before the
     * first token while connections settle (two nodes dialling each other at once): nothing
     * was printed yet, so the timer simply opens again, until --wait runs out. */
    if ((!session || !g->n_gen) && (rc == SW_ENOTFOUND || rc == SW_ESTATE) && sw_time_ms() < g->deadline &&
        !g->stopping) {
        snprintf(g->msg, sizeof g->msg, "%s", msg ? msg : "");
        if (session) sw_log(SW_LOG_INFO, "GEN", "session failed before its first token (%s); opening again", msg ? msg : "");
        return;
    }
    g->ended = 1;
    g->status = rc;
    if (!session && rc == SW_ENOTFOUND)
        snprintf(g->msg, sizeof g->msg, "no complete route: %s", msg ? msg : "");
    else
        snprintf(g->msg, sizeof g->msg, "%s", msg ? msg : "");
    finish(g);
}

/* The first token of a session means it opened (the open itself is asynchronous). */
static void on_token_first(void *ud, const struct sw_pipe_token_ev *ev)
{
    struct gs *g = ud;
    if (!g->opened) {
        g->opened = 1;
        g->session = ev->session;
    }
    on_token(ud, ev);
}

/* The tokenizer from the swarm: a loaded node's shard header, every piece verified. */
static void on_header(void *ud, int rc, struct sw_shard_header *h, const char *msg)
{
    struct gs *g = ud;
    g->fetching = 0;
    if (g->stopping) {
        sw_shard_header_free(h);
        return;
    }
    char err[512] = "";
    if (!rc) {
        rc = sw_tok_from_gguf(h->gguf, &g->tok, err, sizeof err);
        if (rc) {
            /* the bytes are the torrent's own: another node would send the same */
            g->fatal = sw_cli_fail("generate --swarm", "the model's tokenizer (shard %d's header from the swarm): %s",
                                   (int)h->shard, err[0] ? err : sw_strerror(rc));
            sw_shard_header_free(h);
            finish(g);
            return;
        }
        char ids[16];
        sw_log(SW_LOG_INFO, "GEN",
               "tokenizer from node %s (shard %d, %zu bytes, verified: %u piece%s; %.1f ms after asking, %.1f ms "
               "after start, %u node%s asked)",
               sw_node_id_short(h->node, ids, sizeof ids), (int)h->shard, h->len, h->n_pieces,
               h->n_pieces == 1 ? "" : "s", h->reply_us / 1e3, h->elapsed_us / 1e3, h->n_asked,
               h->n_asked == 1 ? "" : "s");
        g->tok_fetch_us = h->elapsed_us;
        sw_shard_header_free(h);
    } else if (g->need_tok == 1) {
        g->fatal = sw_cli_fail("generate --swarm",
                               "-p/-f/--prompt-len need the model's tokenizer and none came from the swarm: %s. Pass --tokenizer "
                               "FILE (any shard of the model), --cache DIR holding a shard, or give --prompt-ids",
                               msg ? msg : sw_strerror(rc));
        finish(g);
        return;
    } else {
        sw_log(SW_LOG_WARN, "GEN", "no tokenizer from the swarm (%s): printing token ids", msg ? msg : sw_strerror(rc));
    }
    int st = prepare(g);
    if (st != SW_EXIT_OK) {
        g->fatal = st;
        finish(g);
        return;
    }
    echo_prompt(g);
}

static void on_timer(uv_timer_t *t)
{
    struct gs *g = t->data;
    if (g->opened || g->trying || g->stopping || g->ended || g->fetching) return;
    struct sw_pipe_node_opts po = { .spot_rate = g->a.spot_rate };
    if (!g->pn && sw_pipe_node_attach(g->node, &po, &g->pn)) {
        snprintf(g->msg, sizeof g->msg, "cannot attach the pipeline engine");
        g->status = SW_ENOMEM;
        finish(g);
        return;
    }
    if (!g->prepared) {
        uint64_t now = sw_time_ms();
        uint32_t wait_ms = g->deadline > now ? (uint32_t)SW_MIN(g->deadline - now, (uint64_t)UINT32_MAX) : 1;
        if (g->need_tok == 2) wait_ms = SW_MIN(wait_ms, 10000u); /* only for text output: ids after 10 s */
        int rc = sw_pipe_node_fetch_header(g->pn, wait_ms, on_header, g, &g->fetch_id);
        if (rc) {
            snprintf(g->msg, sizeof g->msg, "cannot fetch the tokenizer: %s", sw_strerror(rc));
            g->status = rc;
            finish(g);
            return;
        }
        g->fetching = 1;
        return;
    }
    struct sw_pipe_request req = { .prompt = g->ids, .n_prompt = (uint32_t)g->n_prompt, .n_predict = g->a.n_predict,
                                   .sampler_blob = g->blob, .sampler_blob_len = g->blob_len, .stop = g->stop,
                                   .n_stop = g->n_stop, .dtype = g->a.f16 ? SW_PIPE_F16 : SW_PIPE_F32,
                                   .chunk = g->a.chunk ? g->a.chunk : SW_PIPE_MAX_TOKENS, .n_ctx = g->a.ctx,
                                   .want_logits = g->lf != NULL, .ignore_eos = g->a.ignore_eos,
                                   .deadline_ms = g->a.deadline_ms, .no_prefix_cache = g->a.no_prefix,
                                   .spec_k = g->a.spec_k };
    struct sw_pipe_session_cb cb = { on_token_first, on_end, g };
    /* the thread-safe entry point (what the HTTP API uses), here from the loop thread */
    int rc = sw_pipe_node_open_async(g->pn, &req, &cb, &g->ticket);
    if (rc) {
        snprintf(g->msg, sizeof g->msg, "cannot open a session: %s", sw_strerror(rc));
        g->status = rc;
        finish(g);
        return;
    }
    g->trying = 1;
    g->t_open = sw_time_ms(); /* the last attempt is the one that opens */
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    struct gs *g = s->data;
    if ((g->opened || g->trying) && !g->ended && g->pn) {
        sw_pipe_node_cancel_async(g->pn, g->ticket); /* on_end(SW_ECLOSED) follows */
        return;
    }
    g->status = SW_ECLOSED;
    snprintf(g->msg, sizeof g->msg, "interrupted");
    finish(g);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    if (remove(path)) sw_log(SW_LOG_WARN, "GEN", "cannot remove %s from the temporary cache", path);
    return 0;
}

/* Removes the light client's temporary cache folder and everything the node put in it. */
static void remove_tmpdir(const char *dir)
{
    if (dir[0] && nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS))
        sw_log(SW_LOG_WARN, "GEN", "cannot remove the temporary cache %s", dir);
}

static void close_any(uv_handle_t *h, void *ud)
{
    (void)ud;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

int sw_cli_generate_swarm(int argc, char **argv)
{
    const char *cmd = "generate --swarm";
    if (sw_cli_wants_help(argc, argv)) {
        usage(stdout);
        return SW_EXIT_OK;
    }
    struct gs *g = calloc(1, sizeof *g);
    if (!g) return sw_cli_fail(cmd, "out of memory");
    int rc = parse_args(cmd, argc, argv, &g->a);
    if (rc) {
        free(g);
        return rc;
    }
    struct gs_args *a = &g->a;
    sw_cli_log_setup(a->log_format, a->verbose);
    signal(SIGPIPE, SIG_IGN);
    sw_buf_init(&g->text);
    int status = SW_EXIT_FAIL;
    char err[1024] = "", tmpdir[256] = "";

    /* tokenizer: --tokenizer, else a shard in --cache, else (in the loop) the swarm */
    if (a->tokenizer) {
        struct sw_gguf *gg = NULL;
        rc = sw_gguf_open(a->tokenizer, &gg, err, sizeof err);
        if (!rc) rc = sw_tok_from_gguf(gg, &g->tok, err, sizeof err);
        sw_gguf_close(gg);
        if (rc) {
            status = sw_cli_fail(cmd, "%s: tokenizer: %s", a->tokenizer, err[0] ? err : sw_strerror(rc));
            goto out;
        }
    } else if (a->cache && (a->prompt || a->prompt_file || a->prompt_len || !a->print_ids)) {
        char found[1024] = "";
        if (!find_tokenizer(a, &g->tok, found, sizeof found)) sw_log(SW_LOG_INFO, "GEN", "tokenizer from %s", found);
    }
    if (!g->tok && (a->prompt || a->prompt_file || a->prompt_len)) g->need_tok = 1; /* prompt: required */
    else if (!g->tok && !a->print_ids) g->need_tok = 2;                              /* text out: wanted */
    /* usage and file errors before joining */
    if (a->prompt_ids && (sw_cli_parse_ids(a->prompt_ids, &g->ids, &g->n_prompt) || !g->n_prompt)) {
        status = sw_cli_usage_error(cmd, "--prompt-ids expects token ids separated by spaces");
        goto out;
    }
    if (a->prompt_file && (rc = sw_file_read_all(a->prompt_file, MAX_PROMPT_FILE, &g->prompt_text, &g->prompt_text_len))) {
        status = sw_cli_fail(cmd, "%s: %s", a->prompt_file, sw_strerror(rc));
        goto out;
    }
    if (!g->need_tok && (status = prepare(g)) != SW_EXIT_OK) goto out;
    status = SW_EXIT_FAIL;
    if (a->sp.temperature > 0 && !a->seed_set) fprintf(stderr, "[GEN] seed %" PRIu64 "\n", a->sp.seed);
    if (a->logits_out && !(g->lf = fopen(a->logits_out, "wb"))) {
        status = sw_cli_fail(cmd, "%s: cannot create", a->logits_out);
        goto out;
    }
    if (a->token_times && !(g->tf = fopen(a->token_times, "w"))) {
        status = sw_cli_fail(cmd, "%s: cannot create", a->token_times);
        goto out;
    }
    if (!a->cache) {
        const char *td = getenv("TMPDIR");
        char tmpl[256];
        snprintf(tmpl, sizeof tmpl, "%s/sw-client-XXXXXX", td && td[0] && strlen(td) < 200 ? td : "/tmp");
        if (!mkdtemp(tmpl)) {
            status = sw_cli_fail(cmd, "cannot create a temporary cache folder in %s: %s", td && td[0] ? td : "/tmp",
                                 strerror(errno));
            goto out;
        }
        snprintf(tmpdir, sizeof tmpdir, "%s", tmpl); /* removed at the end, whatever the end */
    }

    /* a node holding no shard: it only joins, watches the view and carries sessions */
    struct sw_node_config cfg = { 0 };
    cfg.model = a->model;
    cfg.cache_dir = a->cache ? a->cache : tmpdir;
    cfg.shard = -1;
    cfg.no_auto_fetch = 1;
    cfg.listen_port = (uint16_t)a->listen;
    cfg.bootstrap = a->boot;
    cfg.n_bootstrap = a->n_boot;
    cfg.status_interval_ms = 3600000;
    cfg.swarm_key = a->has_swarm_key ? a->swarm_key : NULL;
    uv_loop_init(&g->loop);
    rc = sw_node_new(&g->loop, &cfg, &g->node, err, sizeof err);
    if (!rc) rc = sw_node_start(g->node, err, sizeof err);
    if (rc) {
        status = sw_cli_fail(cmd, "%s", err[0] ? err : sw_strerror(rc));
        if (g->node) {
            sw_node_stop(g->node, NULL, NULL);
            uv_run(&g->loop, UV_RUN_DEFAULT);
            sw_node_free(g->node);
            g->node = NULL;
        }
        uv_loop_close(&g->loop);
        goto out;
    }
    if (g->prepared) echo_prompt(g);
    g->t_start = sw_time_ms();
    g->deadline = g->t_start + (uint64_t)a->wait_s * 1000;
    uv_timer_init(&g->loop, &g->timer);
    uv_signal_init(&g->loop, &g->sig);
    uv_signal_init(&g->loop, &g->sig_term);
    g->timer.data = g->sig.data = g->sig_term.data = g;
    g->handles = 3;
    uv_timer_start(&g->timer, on_timer, 50, 50);
    uv_signal_start(&g->sig, on_signal, SIGINT);
    uv_signal_start(&g->sig_term, on_signal, SIGTERM); /* a clean end: the temporary cache goes */
    uv_run(&g->loop, UV_RUN_DEFAULT);
    uv_walk(&g->loop, close_any, NULL);
    uv_run(&g->loop, UV_RUN_DEFAULT);
    sw_node_free(g->node);
    g->node = NULL;
    uv_loop_close(&g->loop);

    if (g->tok && g->prepared && !a->print_ids) {
        sw_tok_stream_flush(&g->ts, &g->text);
        print_text(&g->text);
    }
    if (g->n_gen || g->ended) printf("\n");
    fflush(stdout);
    if (g->fatal) {
        status = g->fatal;
    } else if (g->status && !(g->status == SW_ECLOSED && g->n_gen)) {
        status = sw_cli_fail(cmd, "%s", g->msg[0] ? g->msg : sw_strerror(g->status));
    } else {
        double ttft_ms = g->ttft_us / 1e3;
        fprintf(stderr, "[GEN] prompt: %zu tokens (%u from the stages' prefix caches); generated %u tokens; first token "
                "after %.1f ms; %.2f tok/s\n", g->n_prompt, g->reused, g->n_gen, ttft_ms, g->tps);
        if (a->json)
            fprintf(stderr,
                    "{\"prompt_tokens\":%zu,\"gen_tokens\":%u,\"ttft_ms\":%.3f,\"gen_tps\":%.3f,\"total_ms\":%.3f,"
                    "\"route_ms\":%" PRIu64 ",\"tokenizer_ms\":%.3f,\"prefix_reused\":%u}\n",
                    g->n_prompt, g->n_gen, ttft_ms, g->tps, g->elapsed_us / 1e3, g->t_open ? g->t_open - g->t_start : 0,
                    g->tok_fetch_us / 1e3, g->reused);
        (void)g->session;
        status = SW_EXIT_OK;
    }
out:
    remove_tmpdir(tmpdir);
    if (g->lf && fclose(g->lf) != 0 && status == SW_EXIT_OK) status = sw_cli_fail(cmd, "%s: write failed", a->logits_out);
    if (g->tf && fclose(g->tf) != 0 && status == SW_EXIT_OK) status = sw_cli_fail(cmd, "%s: write failed", a->token_times);
    sw_buf_free(&g->text);
    sw_tok_free(g->tok);
    free(g->ids);
    free(g->blob);
    free(g->prompt_text);
    free(g);
    return status;
}
