/* cmd_generate.c — `shardswarm generate`: text from a model (a whole GGUF, or its shards
 * run one after another in this process), streamed to stdout, with prompt and generation
 * speed on stderr. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli/generate_swarm.h"
#include "infer/infer.h"

#define MAX_MODELS 64
#define MAX_PROMPT_FILE (64u << 20)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: shardswarm generate -m MODEL [-m SHARD ...] (-p PROMPT | -f FILE) [options]\n\n"
            "Generates text from a model. Several -m run the shards of a split model one after\n"
            "another in this process (give them in layer order).\n\n"
            "  -m, --model FILE      GGUF model or shard (repeatable)\n"
            "  -p, --prompt TEXT     prompt text (control tokens like <|im_start|> are parsed)\n"
            "  -f, --file FILE       read the prompt from a file\n"
            "  -n, --n-predict N     tokens to generate (default 128)\n"
            "  --temp T              temperature; 0 = greedy (default 0.8)\n"
            "  --top-k K             (default 40; 0 = off)\n"
            "  --top-p P             (default 0.95; 1 = off)\n"
            "  --min-p P             (default 0.05; 0 = off)\n"
            "  --repeat-penalty R    (default 1.0 = off)\n"
            "  --repeat-last-n N     window of the penalty (default 64)\n"
            "  --seed S              sampling seed (default: random, printed)\n"
            "  -t, --threads N       compute threads (default: all CPUs)\n"
            "  -c, --ctx N           context limit (default: the model's)\n"
            "  -b, --batch N         prompt tokens per step (default 256)\n"
            "  --gpu auto|off|N      compute on a Vulkan GPU: auto = the first GPU, N = device N\n"
            "                        (a software device like lavapipe only by number); default off\n"
            "  --gpu-layers N        at most N layers on the GPU (default: as many as fit)\n"
            "  --no-bos              do not add the BOS token\n"
            "  --no-echo             do not print the prompt before the generated text\n"
            "  --ignore-eos          keep generating past end-of-generation tokens\n"
            "  --prompt-ids \"I ...\"  the prompt as token ids (bypasses the tokenizer)\n"
            "  --prompt-len N        a synthetic prompt of N tokens (benchmarks)\n"
            "  --ids                 print the generated token ids (one line) instead of text\n"
            "  --logits-out FILE     write the logits of every step (f32 little-endian, n_vocab\n"
            "                        floats per step: the prompt's last token, then each token fed)\n"
            "  --json-timings        print one JSON line of timings on stderr at the end\n"
            "  --swarm ...           run across a swarm instead (see generate --swarm --help)\n");
}

struct gen_args {
    const char *models[MAX_MODELS];
    uint32_t n_models;
    const char *prompt, *prompt_file, *prompt_ids, *logits_out, *gpu;
    uint32_t n_predict, threads, ctx, batch, prompt_len, gpu_layers;
    int no_bos, no_echo, ignore_eos, print_ids, json, seed_set;
    struct sw_sampler_params sp;
};

static int parse_args(const char *cmd, int argc, char **argv, struct gen_args *a)
{
    int rc;
    sw_sampler_params_default(&a->sp);
    a->n_predict = 128;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(f, "--no-bos")) { a->no_bos = 1; continue; }
        if (!strcmp(f, "--no-echo")) { a->no_echo = 1; continue; }
        if (!strcmp(f, "--ignore-eos")) { a->ignore_eos = 1; continue; }
        if (!strcmp(f, "--ids")) { a->print_ids = 1; continue; }
        if (!strcmp(f, "--json-timings")) { a->json = 1; continue; }
        if (f[0] != '-') return sw_cli_usage_error(cmd, "unexpected argument '%s'", f);
        if (!v) return sw_cli_usage_error(cmd, "%s needs a value", f);
        i++;
        if (!strcmp(f, "-m") || !strcmp(f, "--model")) {
            if (a->n_models == MAX_MODELS) return sw_cli_usage_error(cmd, "-m: at most %d files", MAX_MODELS);
            a->models[a->n_models++] = v;
        } else if (!strcmp(f, "-p") || !strcmp(f, "--prompt")) a->prompt = v;
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) a->prompt_file = v;
        else if (!strcmp(f, "--prompt-ids")) a->prompt_ids = v;
        else if (!strcmp(f, "--logits-out")) a->logits_out = v;
        else if (!strcmp(f, "--gpu")) a->gpu = v;
        else if (!strcmp(f, "--gpu-layers")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 1, 1u << 16, &a->gpu_layers))) return rc;
        }
        else if (!strcmp(f, "-n") || !strcmp(f, "--n-predict")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 0, 1u << 24, &a->n_predict))) return rc;
        } else if (!strcmp(f, "--prompt-len")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 1, 1u << 20, &a->prompt_len))) return rc;
        } else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 1, 256, &a->threads))) return rc;
        } else if (!strcmp(f, "-c") || !strcmp(f, "--ctx")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 1, 1u << 24, &a->ctx))) return rc;
        } else if (!strcmp(f, "-b") || !strcmp(f, "--batch")) {
            if ((rc = sw_cli_parse_u32(cmd, f, v, 1, 4096, &a->batch))) return rc;
        } else if (sw_cli_sampler_flag(cmd, f, v, &a->sp, &a->seed_set, &rc)) {
            if (rc) return rc;
        } else return sw_cli_usage_error(cmd, "unknown option '%s'", f);
    }
    if (!a->n_models) return sw_cli_usage_error(cmd, "-m MODEL is required");
    int n_src = !!a->prompt + !!a->prompt_file + !!a->prompt_ids + !!a->prompt_len;
    if (n_src == 0) return sw_cli_usage_error(cmd, "a prompt is required (-p, -f, --prompt-ids or --prompt-len)");
    if (n_src > 1) return sw_cli_usage_error(cmd, "give only one of -p, -f, --prompt-ids, --prompt-len");
    if (!a->seed_set) {
        uint64_t s;
        sw_random_bytes(&s, sizeof s);
        a->sp.seed = s & 0xffffffffu;
    }
    return 0;
}

/* The prompt as token ids: *ids malloc'd. Returns an exit status. */
static int prompt_tokens(const char *cmd, const struct gen_args *a, const struct sw_tok *tok,
                         uint32_t n_vocab, int32_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    if (a->prompt_ids) {
        if (sw_cli_parse_ids(a->prompt_ids, ids, n) || *n == 0)
            return sw_cli_usage_error(cmd, "--prompt-ids expects token ids separated by spaces");
        return 0;
    }
    if (a->prompt_len) {
        /* BOS (when the model has one) and then ids spread over the vocabulary. */
        *ids = malloc(a->prompt_len * sizeof **ids);
        if (!*ids) return sw_cli_fail(cmd, "out of memory");
        sw_cli_synth_prompt(n_vocab, tok && !a->no_bos ? sw_tok_bos(tok) : -1, *ids, a->prompt_len);
        *n = a->prompt_len;
        return 0;
    }
    if (!tok) return sw_cli_fail(cmd, "the model has no tokenizer: use --prompt-ids");
    uint8_t *text = NULL;
    size_t len = 0;
    if (a->prompt_file) {
        int rc = sw_file_read_all(a->prompt_file, MAX_PROMPT_FILE, &text, &len);
        if (rc) return sw_cli_fail(cmd, "%s: %s", a->prompt_file, sw_strerror(rc));
    }
    const char *p = text ? (const char *)text : a->prompt;
    if (!text) len = strlen(p);
    unsigned flags = SW_TOK_PARSE_SPECIAL | (a->no_bos ? 0 : SW_TOK_ADD_BOS);
    int rc = sw_tok_encode(tok, p, len, flags, ids, n);
    free(text);
    if (rc) return sw_cli_fail(cmd, "cannot tokenize the prompt: %s", sw_strerror(rc));
    if (*n == 0) return sw_cli_fail(cmd, "the prompt is empty after tokenization");
    return 0;
}

static void print_text(struct sw_buf *b)
{
    if (b->len) {
        fwrite(b->data, 1, b->len, stdout);
        fflush(stdout);
    }
    b->len = 0;
}

int sw_cmd_generate(int argc, char **argv)
{
    const char *cmd = "generate";
    /* --swarm: a light client that runs the model across a swarm (cmd_generate_swarm.c). */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "--swarm")) return sw_cli_generate_swarm(argc, argv);
    }
    if (sw_cli_wants_help(argc, argv)) {
        usage(stdout);
        return SW_EXIT_OK;
    }
    struct gen_args a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(cmd, argc, argv, &a);
    if (rc) return rc;
    sw_cli_log_setup("human", 0);

    struct sw_stage_opts so = { .layer_first = -1, .layer_last = -1, .n_ctx = a.ctx,
                                .n_threads = a.threads, .max_batch = a.batch, .max_seqs = 1,
                                .gpu = a.gpu, .gpu_layers = a.gpu_layers };
    struct sw_chain *chain = NULL;
    struct sw_tok *tok = NULL;
    struct sw_sampler *smp = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    FILE *lf = NULL;
    struct sw_buf text;
    sw_buf_init(&text);
    char err[512];
    int status = SW_EXIT_FAIL;

    uint64_t t_load = sw_time_ms();
    rc = sw_chain_open(a.models, a.n_models, &so, &chain, err, sizeof err);
    if (rc) {
        status = sw_cli_fail(cmd, "%s", err[0] ? err : sw_strerror(rc));
        goto out;
    }
    t_load = sw_time_ms() - t_load;
    const uint32_t n_vocab = sw_chain_n_vocab(chain), n_ctx = sw_chain_n_ctx(chain);
    if (!a.prompt_ids && !a.prompt_len) {
        rc = sw_tok_from_gguf(sw_chain_gguf(chain), &tok, err, sizeof err);
        if (rc) {
            status = sw_cli_fail(cmd, "%s: tokenizer: %s", a.models[0], err[0] ? err : sw_strerror(rc));
            goto out;
        }
    } else {
        sw_tok_from_gguf(sw_chain_gguf(chain), &tok, err, sizeof err); /* optional: for text out */
    }
    size_t n_prompt = 0;
    if ((status = prompt_tokens(cmd, &a, tok, n_vocab, &ids, &n_prompt))) goto out;
    status = SW_EXIT_FAIL;
    for (size_t i = 0; i < n_prompt; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= n_vocab) {
            status = sw_cli_fail(cmd, "prompt token id %d is outside the vocabulary (%u)", ids[i], n_vocab);
            goto out;
        }
    if (n_prompt > n_ctx) {
        status = sw_cli_fail(cmd, "the prompt has %zu tokens, more than the context limit of %u "
                             "(see --ctx and the model's context_length)", n_prompt, n_ctx);
        goto out;
    }
    if ((rc = sw_sampler_new(&a.sp, n_vocab, &smp))) {
        status = sw_cli_usage_error(cmd, "bad sampling parameters");
        goto out;
    }
    if (a.sp.temperature > 0 && !a.seed_set)
        fprintf(stderr, "[GEN] seed %" PRIu64 "\n", a.sp.seed);
    sw_sampler_accept(smp, ids, n_prompt);
    logits = malloc((size_t)n_vocab * sizeof *logits);
    if (!logits) goto out;
    if (a.logits_out && !(lf = fopen(a.logits_out, "wb"))) {
        status = sw_cli_fail(cmd, "%s: cannot create", a.logits_out);
        goto out;
    }
    if ((rc = sw_chain_seq_new(chain, 1))) goto out;

    if (!a.no_echo && !a.print_ids && tok) {
        sw_tok_decode(tok, ids, n_prompt, 0, &text);
        print_text(&text);
    }

    /* Every token fed so far: a GPU lost mid-generation is replayed from position 0 on the
     * CPU (the stage switches over), giving the same tokens. */
    int32_t *hist = realloc(ids, (n_prompt + a.n_predict + 1) * sizeof *ids);
    if (!hist) goto out;
    ids = hist;
    /* Prompt processing: the whole prompt in one call (the stage steps through it). */
    uint64_t t0 = sw_time_us();
    rc = sw_chain_forward(chain, 1, 0, (uint32_t)n_prompt, ids, logits, 0);
    if (rc == SW_ESTATE) {
        fprintf(stderr, "[GEN] %s: computing the prompt again on the CPU\n", sw_chain_errmsg(chain));
        rc = sw_chain_forward(chain, 1, 0, (uint32_t)n_prompt, ids, logits, 0);
    }
    uint64_t t_prompt = sw_time_us() - t0;
    if (rc) {
        status = sw_cli_fail(cmd, "%s", sw_chain_errmsg(chain));
        goto out;
    }
    if (lf) fwrite(logits, sizeof *logits, n_vocab, lf);

    /* Generation: sample, print, feed back. */
    struct sw_tok_stream ts;
    if (tok) sw_tok_stream_init(&ts, tok, 0, 0);
    uint32_t pos = (uint32_t)n_prompt, n_gen = 0, n_eval = 0;
    uint64_t t_gen = 0;
    const char *stop_reason = "limit";
    for (uint32_t i = 0; i < a.n_predict; i++) {
        int32_t t = sw_sampler_sample(smp, logits);
        if (t < 0) {
            status = sw_cli_fail(cmd, "sampling failed: every logit is NaN or -inf");
            goto out;
        }
        n_gen++;
        if (a.print_ids) {
            printf("%s%d", i ? " " : "", t);
            fflush(stdout);
        } else if (tok) {
            sw_tok_stream_push(&ts, t, &text);
            print_text(&text);
        }
        if (!a.ignore_eos && tok && sw_tok_is_eog(tok, t)) {
            stop_reason = "end of text";
            break;
        }
        if (i + 1 == a.n_predict) break;
        if (pos >= n_ctx) {
            stop_reason = "context full";
            break;
        }
        uint64_t t1 = sw_time_us();
        hist[pos] = t;
        rc = sw_chain_forward(chain, 1, pos, 1, &t, logits, 0);
        if (rc == SW_ESTATE) {
            fprintf(stderr, "[GEN] %s: replaying %u tokens on the CPU\n", sw_chain_errmsg(chain), pos + 1);
            rc = sw_chain_forward(chain, 1, 0, pos + 1, hist, logits, 0);
        }
        t_gen += sw_time_us() - t1;
        if (rc) {
            status = sw_cli_fail(cmd, "%s", sw_chain_errmsg(chain));
            goto out;
        }
        pos++;
        n_eval++;
        if (lf) fwrite(logits, sizeof *logits, n_vocab, lf);
    }
    if (tok && !a.print_ids) {
        sw_tok_stream_flush(&ts, &text);
        print_text(&text);
    }
    printf("\n");
    fflush(stdout);

    double pp_tps = t_prompt ? n_prompt * 1e6 / (double)t_prompt : 0;
    double tg_tps = t_gen ? n_eval * 1e6 / (double)t_gen : 0;
    fprintf(stderr,
            "[GEN] prompt: %zu tokens in %.1f ms (%.2f tok/s); generation: %u tokens, %u evaluated "
            "in %.1f ms (%.2f tok/s); stopped: %s\n",
            n_prompt, t_prompt / 1e3, pp_tps, n_gen, n_eval, t_gen / 1e3, tg_tps, stop_reason);
    if (a.json) {
        const struct sw_stage_info *in = sw_stage_info(sw_chain_stage(chain, 0));
        char dev[sizeof in->device];
        snprintf(dev, sizeof dev, "%s", in->device);
        for (char *c = dev; *c; c++)
            if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) *c = '\'';
        fprintf(stderr,
                "{\"prompt_tokens\":%zu,\"prompt_ms\":%.3f,\"prompt_tps\":%.3f,\"gen_tokens\":%u,"
                "\"eval_tokens\":%u,\"gen_ms\":%.3f,\"gen_tps\":%.3f,\"load_ms\":%llu,\"threads\":%u,"
                "\"kernels\":\"%s\",\"peak_rss\":%llu,\"backend\":\"%s\",\"gpu_layers\":%u,\"device\":\"%s\","
                "\"gpu_weight_bytes\":%llu,\"weight_bytes\":%llu}\n",
                n_prompt, t_prompt / 1e3, pp_tps, n_gen, n_eval, t_gen / 1e3, tg_tps,
                (unsigned long long)t_load, in->n_threads, in->kernels, (unsigned long long)sw_sys_peak_rss(),
                in->backend, in->gpu_layers, dev, (unsigned long long)in->gpu_weight_bytes,
                (unsigned long long)in->weight_bytes);
    }
    status = SW_EXIT_OK;
out:
    if (lf && fclose(lf) != 0 && status == SW_EXIT_OK) status = sw_cli_fail(cmd, "%s: write failed", a.logits_out);
    sw_buf_free(&text);
    free(ids);
    free(logits);
    sw_sampler_free(smp);
    sw_tok_free(tok);
    sw_chain_free(chain);
    return status;
}
