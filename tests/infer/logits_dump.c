/* logits_dump.c — teacher-forced next-token logits of the compute stage at every position
 * of a token sequence, for comparing with another engine (tests/infer/test_oracle.py).
 * usage: logits_dump MODEL.gguf OUT.f32 TOK,TOK,...   (writes n_tokens x n_vocab f32)
 * The context is max(64, n + 8), as oracle_llamacpp.mjs asks llama.cpp for (phi3 picks its
 * RoPE factors by the context size). Not a test by itself. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: logits_dump MODEL.gguf OUT.f32 TOK,TOK,...\n");
        return 2;
    }
    int32_t toks[4096];
    uint32_t n = 0;
    for (char *p = argv[3]; *p && n < 4096;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) {
            fprintf(stderr, "logits_dump: bad token list at '%s'\n", p);
            return 2;
        }
        toks[n++] = (int32_t)v;
        p = *end == ',' ? end + 1 : end;
    }
    struct sw_stage_opts o = { .layer_first = -1, .layer_last = -1, .n_ctx = n + 8 > 64 ? n + 8 : 64, .n_threads = 2 };
    struct sw_stage *s = NULL;
    char err[512];
    int rc = sw_stage_open(argv[1], &o, &s, err, sizeof err);
    if (rc) {
        fprintf(stderr, "logits_dump: %s\n", err);
        return 1;
    }
    const uint32_t V = sw_stage_info(s)->n_vocab;
    float *out = malloc((size_t)n * V * sizeof *out);
    if (!out || sw_stage_seq_new(s, 1) ||
        sw_stage_forward(s, 1, 0, n, toks, out, SW_STAGE_LOGITS_ALL)) {
        fprintf(stderr, "logits_dump: forward failed: %s\n", sw_stage_errmsg(s));
        return 1;
    }
    FILE *f = fopen(argv[2], "wb");
    if (!f || fwrite(out, sizeof *out, (size_t)n * V, f) != (size_t)n * V || fclose(f)) {
        fprintf(stderr, "logits_dump: cannot write %s\n", argv[2]);
        return 1;
    }
    printf("{\"n_tokens\": %u, \"n_vocab\": %u}\n", n, V);
    free(out);
    sw_stage_free(s);
    return 0;
}
