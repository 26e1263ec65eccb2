/* cmd_chat.c — `shardswarm chat`: an interactive conversation with a model on stdin/stdout,
 * formatted with the model's chat template. Each turn re-uses the KV cache for the part of
 * the conversation that did not change and computes only the rest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "infer/infer.h"

#define MAX_MODELS 64
#define MAX_STOP 16

static void usage(FILE *f)
{
    fprintf(f,
            "usage: shardswarm chat -m MODEL [-m SHARD ...] [options]\n\n"
            "Reads one user message per line on stdin and streams the model's replies to stdout.\n"
            "Commands: /reset (forget the conversation), /exit (or end of input).\n\n"
            "  -m, --model FILE      GGUF model or shard (repeatable, in layer order)\n"
            "  --system TEXT         system message\n"
            "  --template NAME       chatml llama2 llama3 mistral phi3 gemma zephyr\n"
            "                        (default: detected from tokenizer.chat_template)\n"
            "  -n, --n-predict N     most tokens per reply (default 512)\n"
            "  --temp T --top-k K --top-p P --min-p P --repeat-penalty R --repeat-last-n N --seed S\n"
            "                        sampling, as for generate (--temp 0: greedy)\n"
            "  -t, --threads N       compute threads (default: all CPUs)\n"
            "  -c, --ctx N           context limit (default: the model's)\n"
            "  --gpu auto|off|N      compute on a Vulkan GPU (as for generate; default off)\n"
            "  --gpu-layers N        at most N layers on the GPU (default: as many as fit)\n");
}

struct conv {
    struct sw_chat_msg *msgs;
    size_t n, cap;
};

static int conv_add(struct conv *c, const char *role, const char *content, size_t len)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        struct sw_chat_msg *m = realloc(c->msgs, cap * sizeof *m);
        if (!m) return SW_ENOMEM;
        c->msgs = m;
        c->cap = cap;
    }
    char *r = strdup(role), *t = strndup(content, len);
    if (!r || !t) {
        free(r);
        free(t);
        return SW_ENOMEM;
    }
    c->msgs[c->n].role = r;
    c->msgs[c->n].content = t;
    c->n++;
    return 0;
}

static void conv_truncate(struct conv *c, size_t keep)
{
    while (c->n > keep) {
        c->n--;
        free((char *)c->msgs[c->n].role);
        free((char *)c->msgs[c->n].content);
    }
}

int sw_cmd_chat(int argc, char **argv)
{
    const char *cmd = "chat";
    if (sw_cli_wants_help(argc, argv)) {
        usage(stdout);
        return SW_EXIT_OK;
    }
    const char *models[MAX_MODELS];
    uint32_t n_models = 0, n_predict = 512, threads = 0, ctx = 0, gpu_layers = 0;
    const char *system = NULL, *tmpl_name = NULL, *gpu = NULL;
    struct sw_sampler_params sp;
    sw_sampler_params_default(&sp);
    int seed_set = 0, rc;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (f[0] != '-') return sw_cli_usage_error(cmd, "unexpected argument '%s'", f);
        if (!v) return sw_cli_usage_error(cmd, "%s needs a value", f);
        i++;
        if (!strcmp(f, "-m") || !strcmp(f, "--model")) {
            if (n_models == MAX_MODELS) return sw_cli_usage_error(cmd, "-m: at most %d files", MAX_MODELS);
            models[n_models++] = v;
        } else if (!strcmp(f, "--system")) system = v;
        else if (!strcmp(f, "--template")) tmpl_name = v;
        else if (!strcmp(f, "-n") || !strcmp(f, "--n-predict")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 1, 1u << 24, &n_predict))) return rc;
        } else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 1, 256, &threads))) return rc;
        } else if (!strcmp(f, "-c") || !strcmp(f, "--ctx")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 1, 1u << 24, &ctx))) return rc;
        } else if (!strcmp(f, "--gpu")) {
            gpu = v;
        } else if (!strcmp(f, "--gpu-layers")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 1, 1u << 16, &gpu_layers))) return rc;
        } else if (sw_cli_sampler_flag(cmd, f, v, &sp, &seed_set, &rc)) {
            if (rc) return rc;
        } else return sw_cli_usage_error(cmd, "unknown option '%s'", f);
    }
    if (!n_models) return sw_cli_usage_error(cmd, "-m MODEL is required");
    enum sw_chat_tmpl tmpl = SW_CHAT_CHATML;
    if (tmpl_name && sw_chat_from_name(tmpl_name, &tmpl))
        return sw_cli_usage_error(cmd, "--template: unknown template '%s'", tmpl_name);
    if (!seed_set) {
        uint64_t s;
        sw_random_bytes(&s, sizeof s);
        sp.seed = s & 0xffffffffu;
    }
    sw_cli_log_setup("human", 0);

    struct sw_stage_opts so = { .layer_first = -1, .layer_last = -1, .n_ctx = ctx, .n_threads = threads,
                                .max_seqs = 1, .gpu = gpu, .gpu_layers = gpu_layers };
    struct sw_chain *chain = NULL;
    struct sw_tok *tok = NULL;
    struct sw_sampler *smp = NULL;
    struct conv conv = { 0 };
    int32_t *cached = NULL, *ids = NULL, *reply = NULL;
    size_t n_cached = 0, n_ids = 0;
    float *logits = NULL;
    char *line = NULL;
    size_t line_cap = 0;
    struct sw_buf prompt, text;
    sw_buf_init(&prompt);
    sw_buf_init(&text);
    char err[512] = "";
    int status = -1; /* -1: failed without a message yet */

    if ((rc = sw_chain_open(models, n_models, &so, &chain, err, sizeof err))) {
        status = sw_cli_fail(cmd, "%s", err[0] ? err : sw_strerror(rc));
        goto out;
    }
    if ((rc = sw_tok_from_gguf(sw_chain_gguf(chain), &tok, err, sizeof err))) {
        status = sw_cli_fail(cmd, "%s: tokenizer: %s", models[0], err[0] ? err : sw_strerror(rc));
        goto out;
    }
    if (!tmpl_name) tmpl = sw_chat_detect(sw_tok_chat_template(tok));
    const uint32_t n_vocab = sw_chain_n_vocab(chain), n_ctx = sw_chain_n_ctx(chain);
    int32_t stop[MAX_STOP];
    size_t n_stop = sw_chat_stop_tokens(tmpl, tok, stop, MAX_STOP);
    if (n_stop > MAX_STOP) n_stop = MAX_STOP;
    if ((rc = sw_sampler_new(&sp, n_vocab, &smp))) {
        status = sw_cli_usage_error(cmd, "bad sampling parameters");
        goto out;
    }
    logits = malloc((size_t)n_vocab * sizeof *logits);
    reply = malloc((size_t)(n_predict + 1) * sizeof *reply);
    if (!logits || !reply || sw_chain_seq_new(chain, 1)) goto out;
    if (system && conv_add(&conv, "system", system, strlen(system))) goto out;
    const size_t n_fixed = conv.n;
    const int interactive = isatty(STDIN_FILENO);
    fprintf(stderr, "[CHAT] template %s, context %u tokens; /reset forgets, /exit ends\n",
            sw_chat_name(tmpl), n_ctx);

    for (;;) {
        if (interactive) {
            fputs("> ", stderr);
            fflush(stderr);
        }
        ssize_t len = getline(&line, &line_cap, stdin);
        if (len < 0) break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            conv_truncate(&conv, n_fixed);
            fprintf(stderr, "[CHAT] conversation forgotten\n");
            continue;
        }
        if (conv_add(&conv, "user", line, (size_t)len)) goto out;

        /* The whole conversation, formatted and tokenized; only what differs from the cache
         * is computed. */
        prompt.len = 0;
        if (sw_chat_format(tmpl, conv.msgs, conv.n, 1, &prompt) || !sw_buf_ok(&prompt)) goto out;
        free(ids);
        ids = NULL;
        if (sw_tok_encode(tok, (const char *)prompt.data, prompt.len, SW_TOK_ADD_BOS | SW_TOK_PARSE_SPECIAL,
                          &ids, &n_ids))
            goto out;
        if (n_ids + 1 >= n_ctx) {
            fprintf(stderr, "[CHAT] the conversation (%zu tokens) no longer fits the context of %u "
                            "tokens: forgetting it (your message is kept)\n", n_ids, n_ctx);
            conv_truncate(&conv, n_fixed);
            if (conv_add(&conv, "user", line, (size_t)len)) goto out;
            prompt.len = 0;
            free(ids);
            ids = NULL;
            if (sw_chat_format(tmpl, conv.msgs, conv.n, 1, &prompt) ||
                sw_tok_encode(tok, (const char *)prompt.data, prompt.len,
                              SW_TOK_ADD_BOS | SW_TOK_PARSE_SPECIAL, &ids, &n_ids))
                goto out;
            if (n_ids + 1 >= n_ctx) {
                fprintf(stderr, "[CHAT] this message alone (%zu tokens) exceeds the context of %u tokens\n",
                        n_ids, n_ctx);
                conv_truncate(&conv, n_fixed);
                continue;
            }
        }
        size_t keep = 0;
        while (keep < n_cached && keep < n_ids && cached[keep] == ids[keep]) keep++;
        if (keep == n_ids) keep--; /* at least one token computes the next logits */
        rc = sw_chain_forward(chain, 1, (uint32_t)keep, (uint32_t)(n_ids - keep), ids + keep, logits, 0);
        if (rc == SW_ESTATE) { /* the GPU was lost: the stage computes on the CPU, from position 0 */
            fprintf(stderr, "[CHAT] %s: computing the conversation again on the CPU\n", sw_chain_errmsg(chain));
            rc = sw_chain_forward(chain, 1, 0, (uint32_t)n_ids, ids, logits, 0);
        }
        if (rc) {
            status = sw_cli_fail(cmd, "%s", sw_chain_errmsg(chain));
            goto out;
        }
        int32_t *nc = realloc(cached, (n_ids + n_predict + 1) * sizeof *nc);
        if (!nc) goto out;
        cached = nc;
        memcpy(cached, ids, n_ids * sizeof *ids);
        n_cached = n_ids;
        sw_sampler_reset(smp);
        sw_sampler_accept(smp, ids, n_ids);

        struct sw_tok_stream ts;
        sw_tok_stream_init(&ts, tok, 0, 1);
        size_t n_reply = 0;
        for (uint32_t i = 0; i < n_predict; i++) {
            int32_t t = sw_sampler_sample(smp, logits);
            if (t < 0) break;
            int is_stop = sw_tok_is_eog(tok, t);
            for (size_t k = 0; k < n_stop; k++) is_stop |= t == stop[k];
            if (is_stop) break;
            reply[n_reply++] = t;
            text.len = 0;
            sw_tok_stream_push(&ts, t, &text);
            fwrite(text.data, 1, text.len, stdout);
            fflush(stdout);
            if (n_cached + 1 >= n_ctx) {
                fprintf(stderr, "\n[CHAT] context full\n");
                break;
            }
            rc = sw_chain_forward(chain, 1, (uint32_t)n_cached, 1, &t, logits, 0);
            if (rc == SW_ESTATE) {
                fprintf(stderr, "[CHAT] %s: computing the conversation again on the CPU\n", sw_chain_errmsg(chain));
                cached[n_cached] = t;
                rc = sw_chain_forward(chain, 1, 0, (uint32_t)n_cached + 1, cached, logits, 0);
            }
            if (rc) {
                status = sw_cli_fail(cmd, "%s", sw_chain_errmsg(chain));
                goto out;
            }
            cached[n_cached++] = t;
        }
        text.len = 0;
        sw_tok_stream_flush(&ts, &text);
        fwrite(text.data, 1, text.len, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        text.len = 0;
        if (sw_tok_decode(tok, reply, n_reply, 0, &text) || !sw_buf_ok(&text)) goto out;
        if (conv_add(&conv, "assistant", text.len ? (const char *)text.data : "", text.len)) goto out;
    }
    status = SW_EXIT_OK;
out:
    if (status < 0) status = sw_cli_fail(cmd, "out of memory");
    conv_truncate(&conv, 0);
    free(conv.msgs);
    free(line);
    free(cached);
    free(ids);
    free(reply);
    free(logits);
    sw_buf_free(&prompt);
    sw_buf_free(&text);
    sw_sampler_free(smp);
    sw_tok_free(tok);
    sw_chain_free(chain);
    return status;
}
