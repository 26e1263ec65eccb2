/* cmd_synth.c — `shardswarm synth`: write a random-weight model of a real architecture's
 * shape with a real tokenizer (for benchmarks and tests). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "infer/infer.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: shardswarm synth --preset NAME --type T -o FILE [--seed S] [--vocab GGUF]\n"
            "                        [--layers N] [-t THREADS]\n"
            "       shardswarm synth --list\n\n"
            "Writes a model with random weights and the dimensions of a real architecture, with\n"
            "the tokenizer copied from a vocabulary GGUF. The same options give the same bytes.\n\n"
            "  --preset NAME   architecture shape (--list shows them)\n"
            "  --type T        F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K Q4_K_M\n"
            "                  Q5_K_M Q3_K_M IQ4_NL IQ4_XS MXFP4 IQ2_XXS IQ2_XS IQ2_S IQ3_XXS IQ3_S IQ1_S\n"
            "                  IQ1_M Q8_K\n"
            "  -o FILE         output GGUF\n"
            "  --seed S        random seed (default 1)\n"
            "  --vocab GGUF    tokenizer source (default: the preset's vocabulary under\n"
            "                  $SW_SHARED_DATA/vocab or ../shared/data/vocab)\n"
            "  --layers N      fewer layers than the preset (small test models)\n"
            "  -t THREADS      threads for generation and quantization (default: all CPUs)\n");
}

static void progress(void *ud, uint64_t done, uint64_t total)
{
    sw_cli_bar_update(ud, done, total);
}

int sw_cmd_synth(int argc, char **argv)
{
    const char *cmd = "synth";
    if (sw_cli_wants_help(argc, argv)) {
        usage(stdout);
        return SW_EXIT_OK;
    }
    struct sw_synth_opts o = { .seed = 1 };
    const char *out = NULL;
    int list = 0, rc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--list")) {
            list = 1;
            continue;
        }
        if (!v) return sw_cli_usage_error(cmd, "%s needs a value", a);
        i++;
        if (!strcmp(a, "--preset")) o.preset = v;
        else if (!strcmp(a, "--type")) o.type = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) out = v;
        else if (!strcmp(a, "--vocab")) o.vocab_path = v;
        else if (!strcmp(a, "--seed")) {
            if ((rc = sw_cli_parse_u64(cmd, a, v, 0, UINT64_MAX, &o.seed))) return rc;
        } else if (!strcmp(a, "--layers")) {
            if ((rc = sw_cli_parse_u32(cmd, a, v, 1, 1024, &o.n_layers))) return rc;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if ((rc = sw_cli_parse_u32(cmd, a, v, 1, 256, &o.n_threads))) return rc;
        } else return sw_cli_usage_error(cmd, "unknown option '%s'", a);
    }
    if (list) {
        printf("%-16s %-6s %6s %6s %5s %4s %6s %7s %6s\n", "preset", "arch", "embd", "layers", "heads",
               "kv", "ff", "vocab", "ctx");
        for (const struct sw_synth_preset *p = sw_synth_presets(); p->name; p++)
            printf("%-16s %-6s %6u %6u %5u %4u %6u %7u %6u%s\n", p->name, p->arch, p->n_embd,
                   p->n_layers, p->n_head, p->n_head_kv, p->n_ff, p->n_vocab, p->n_ctx,
                   p->tied ? "  (tied embeddings)" : "");
        return SW_EXIT_OK;
    }
    if (!o.preset) return sw_cli_usage_error(cmd, "--preset is required (--list shows them)");
    const struct sw_synth_preset *ps = sw_synth_preset_find(o.preset);
    if (!ps) return sw_cli_usage_error(cmd, "--preset: unknown preset '%s' (--list shows them)", o.preset);
    if (!o.type) return sw_cli_usage_error(cmd, "--type is required");
    if (!sw_synth_type_valid(o.type))
        return sw_cli_usage_error(cmd, "--type: unknown type '%s' (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K Q4_K_M Q5_K_M Q3_K_M IQ4_NL IQ4_XS MXFP4 IQ2_XXS IQ2_XS IQ2_S IQ3_XXS IQ3_S IQ1_S IQ1_M Q8_K)",
                                  o.type);
    if (!out) return sw_cli_usage_error(cmd, "-o FILE is required");

    char vocab[4096];
    if (!o.vocab_path) {
        const char *shared = getenv("SW_SHARED_DATA");
        const char *cands[2] = { shared && *shared ? shared : NULL, "../shared/data" };
        for (int i = 0; i < 2 && !o.vocab_path; i++) {
            if (!cands[i]) continue;
            snprintf(vocab, sizeof vocab, "%s/vocab/%s", cands[i], ps->vocab);
            if (sw_path_exists(vocab)) o.vocab_path = vocab;
        }
        if (!o.vocab_path)
            return sw_cli_fail(cmd, "vocabulary %s not found under $SW_SHARED_DATA/vocab or "
                                    "../shared/data/vocab; name one with --vocab", ps->vocab);
    }
    uint64_t started = sw_time_ms();
    struct sw_cli_bar bar;
    sw_cli_bar_init(&bar, "synth");
    o.progress = progress;
    o.progress_ud = &bar;
    char err[512];
    rc = sw_synth_write(out, &o, err, sizeof err);
    if (rc) return sw_cli_fail(cmd, "%s", err[0] ? err : sw_strerror(rc));
    uint64_t size = 0;
    sw_file_size(out, &size);
    char sb[32], tb[32];
    fprintf(stderr, "[SYNTH] wrote %s: %s %s, %u layers, seed %llu (%s in %s)\n", out, ps->name,
            o.type, o.n_layers ? o.n_layers : ps->n_layers, (unsigned long long)o.seed,
            sw_fmt_bytes(size, sb, sizeof sb), sw_fmt_duration_ms(sw_time_ms() - started, tb, sizeof tb));
    return SW_EXIT_OK;
}
