/* cmd_tokenize.c — `shardswarm tokenize -m MODEL [--no-bos] [--no-special] (TEXT | --file F)`:
 * the token ids of a text under a model's own tokenizer, on one line, space-separated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gguf/gguf.h"
#include "infer/tok.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: shardswarm tokenize -m MODEL [--no-bos] [--no-special] (TEXT | --file F)\n\n"
               "Prints the token ids of TEXT (or of the contents of file F) under the tokenizer\n"
               "stored in MODEL (a GGUF model or shard), on one line, separated by spaces.\n\n"
               "  -m, --model MODEL  GGUF file with tokenizer.* metadata\n"
               "  --no-bos           do not add the BOS token the model asks for\n"
               "  --no-special       do not turn text like <|im_end|> into control tokens\n"
               "  --file F           read the text from F (bytes as they are)\n"
               "  --pieces           also print each token's text on a second line (debugging)\n"
               "Exit status: 0 ok, 1 the model or file cannot be read, 2 usage error.\n");
}

int sw_cmd_tokenize(int argc, char **argv)
{
    if (sw_cli_wants_help(argc, argv)) {
        usage(stdout);
        return SW_EXIT_OK;
    }
    const char *model = NULL, *file = NULL, *text = NULL;
    int no_bos = 0, no_special = 0, pieces = 0, dashdash = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!dashdash && !strcmp(a, "--")) { dashdash = 1; continue; }
        if (!dashdash && (!strcmp(a, "-m") || !strcmp(a, "--model"))) {
            if (i + 1 >= argc) return sw_cli_usage_error("tokenize", "%s needs a MODEL file", a);
            model = argv[++i];
        } else if (!dashdash && !strcmp(a, "--file")) {
            if (i + 1 >= argc) return sw_cli_usage_error("tokenize", "--file needs a path");
            if (file) return sw_cli_usage_error("tokenize", "--file given twice");
            file = argv[++i];
        } else if (!dashdash && !strcmp(a, "--no-bos")) {
            no_bos = 1;
        } else if (!dashdash && !strcmp(a, "--no-special")) {
            no_special = 1;
        } else if (!dashdash && !strcmp(a, "--pieces")) {
            pieces = 1;
        } else if (!dashdash && a[0] == '-' && a[1]) {
            return sw_cli_usage_error("tokenize", "unknown option '%s'", a);
        } else if (text) {
            return sw_cli_usage_error("tokenize", "one TEXT only (quote it); got a second one: '%s'", a);
        } else {
            text = a;
        }
    }
    if (!model) return sw_cli_usage_error("tokenize", "missing -m MODEL");
    if (text && file) return sw_cli_usage_error("tokenize", "give TEXT or --file F, not both");
    if (!text && !file) return sw_cli_usage_error("tokenize", "missing TEXT (or --file F)");

    uint8_t *data = NULL;
    size_t len = 0;
    if (file) {
        int rc = sw_file_read_all(file, SW_TOK_MAX_TEXT, &data, &len);
        if (rc == SW_ETOOBIG)
            return sw_cli_fail("tokenize", "%s: larger than %u bytes", file, SW_TOK_MAX_TEXT);
        if (rc) return sw_cli_fail("tokenize", "%s: cannot read (%s)", file, sw_strerror(rc));
    }

    struct sw_gguf *g = NULL;
    char err[512] = "";
    int rc = sw_gguf_open(model, &g, err, sizeof err);
    if (rc) {
        free(data);
        return sw_cli_fail("tokenize", "%s", err);
    }
    struct sw_tok *t = NULL;
    rc = sw_tok_from_gguf(g, &t, err, sizeof err);
    sw_gguf_close(g);
    if (rc) {
        free(data);
        return sw_cli_fail("tokenize", "%s: %s", model, err);
    }

    unsigned flags = (no_bos ? 0 : SW_TOK_ADD_BOS) | (no_special ? 0 : SW_TOK_PARSE_SPECIAL);
    int32_t *ids = NULL;
    size_t n = 0;
    rc = file ? sw_tok_encode(t, (const char *)data, len, flags, &ids, &n)
              : sw_tok_encode(t, text, strlen(text), flags, &ids, &n);
    free(data);
    if (rc) {
        sw_tok_free(t);
        return sw_cli_fail("tokenize", "tokenizing failed: %s", sw_strerror(rc));
    }
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
    if (pieces) {
        for (size_t i = 0; i < n; i++) {
            char buf[256];
            int pl = sw_tok_piece(t, ids[i], SW_TOK_DECODE_SPECIAL, buf, sizeof buf);
            if (i) putchar(' ');
            putchar('\'');
            for (int k = 0; k < pl && k < (int)sizeof buf; k++) {
                unsigned char c = (unsigned char)buf[k];
                if (c == '\n') fputs("\\n", stdout);
                else if (c == '\t') fputs("\\t", stdout);
                else if (c < 0x20 || c == 0x7F) printf("\\x%02x", c);
                else putchar(c);
            }
            putchar('\'');
        }
        putchar('\n');
    }
    free(ids);
    sw_tok_free(t);
    if (fflush(stdout) != 0) return sw_cli_fail("tokenize", "writing to stdout failed");
    return SW_EXIT_OK;
}
