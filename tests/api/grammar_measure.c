/* grammar_measure.c — not a test: the cost of constrained decoding per token with a real
 * vocabulary. For each GGUF given (its tokenizer), builds the byte trie once, compiles a
 * JSON schema (and JSON mode) with the API's compiler, then walks a fixed JSON text token by
 * token (greedy-like: the text's own tokens) and times, at every position, the full mask
 * (sw_gstate_mask: what sampling with temperature > 0 pays) and one token check
 * (sw_gstate_allows: what greedy pays when the model's best token is allowed).
 *   build/tests/api/grammar_measure VOCAB.gguf...
 * Prints one line per vocabulary: tokens, trie build ms, mask µs/token (median, max), check
 * µs/token (median). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "api/oai_int.h"
#include "gguf/gguf.h"
#include "infer/infer.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* CPU time: the machine is shared */
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static const char *SCHEMA = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":"
                            "\"integer\"},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},\"ok\":{\"type\":"
                            "\"boolean\"}},\"required\":[\"name\",\"age\",\"tags\",\"ok\"]}";
static const char *TEXT = "{\"name\": \"Ada Lovelace wrote the first program for the Analytical Engine\", \"age\": 36, "
                          "\"tags\": [\"mathematics\", \"poetry of science\", \"notes\"], \"ok\": true}";

static void one(const char *path, const char *what, const char *schema_text)
{
    struct sw_gguf *g = NULL;
    struct sw_tok *tok = NULL;
    char err[256];
    if (sw_gguf_open(path, &g, err, sizeof err) || sw_tok_from_gguf(g, &tok, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", path, err);
        exit(1);
    }
    double t0 = now_us();
    struct sw_gvocab *v = NULL;
    if (sw_gvocab_new(tok, &v)) exit(1);
    double t_trie = now_us() - t0;
    json_t *schema = schema_text ? json_loads(schema_text, 0, NULL) : NULL;
    uint8_t *gb = NULL;
    size_t gl = 0;
    struct sw_api_oai_error e;
    if (sw__schema_compile(schema, "format", NULL, NULL, &gb, &gl, &e)) {
        fprintf(stderr, "compile: %s\n", e.message);
        exit(1);
    }
    json_decref(schema);
    struct sw_grammar *gr = NULL;
    struct sw_gstate *st = NULL;
    if (sw_grammar_load(gb, gl, &gr) || sw_gstate_new(gr, &st)) exit(1);
    /* the pieces of every token, to pick the next one: the longest allowed token that
     * continues TEXT (as a model that writes this text would) */
    uint32_t nv = sw_gvocab_n(v);
    char **pieces = calloc(nv, sizeof *pieces);
    int *plen = calloc(nv, sizeof *plen);
    for (uint32_t t = 0; t < nv; t++) {
        char buf[512];
        int l = sw_tok_piece(tok, (int32_t)t, 0, buf, sizeof buf);
        if (l > 0 && l <= (int)sizeof buf) {
            pieces[t] = malloc((size_t)l);
            memcpy(pieces[t], buf, (size_t)l);
            plen[t] = l;
        }
    }
    size_t n = strlen(TEXT), at = 0;
    uint8_t *allowed = malloc(nv);
    double *mask_us = calloc(n + 1, sizeof *mask_us), *check_us = calloc(n + 1, sizeof *check_us);
    size_t k = 0;
    while (at < n) {
        double a = now_us();
        sw_gstate_mask(st, v, allowed);
        double b = now_us();
        int32_t best = -1;
        for (uint32_t t = 0; t < nv; t++)
            if (allowed[t] && plen[t] && (size_t)plen[t] <= n - at && !memcmp(pieces[t], TEXT + at, (size_t)plen[t]) &&
                (best < 0 || plen[t] > plen[best]))
                best = (int32_t)t;
        if (best < 0) {
            fprintf(stderr, "no allowed token continues the text at byte %zu\n", at);
            exit(1);
        }
        double c = now_us();
        int ok = sw_gstate_allows(st, v, best);
        double d = now_us();
        if (!ok) exit(2);
        if (getenv("GM_TRACE")) fprintf(stderr, "%6.0f us at %zu: %.12s\n", b - a, at, TEXT + at);
        mask_us[k] = b - a;
        check_us[k] = d - c;
        k++;
        if (sw_gstate_accept(st, v, best)) exit(3);
        at += (size_t)plen[best];
    }
    if (!sw_gstate_at_end(st) && !sw_gstate_can_end(st)) fprintf(stderr, "the text did not end the grammar\n");
    for (uint32_t t = 0; t < nv; t++) free(pieces[t]);
    free(pieces);
    free(plen);
    double mx = 0;
    for (size_t i = 0; i < k; i++) mx = mask_us[i] > mx ? mask_us[i] : mx;
    qsort(mask_us, k, sizeof *mask_us, cmp_d);
    qsort(check_us, k, sizeof *check_us, cmp_d);
    printf("%s (%s, %u tokens): trie %.1f ms; %zu positions: mask median %.0f us, max %.0f us; one check median %.1f "
           "us; grammar %zu bytes\n",
           path, what, sw_gvocab_n(v), t_trie / 1e3, k, k ? mask_us[k / 2] : 0, mx, k ? check_us[k / 2] : 0, gl);
    free(allowed);
    free(mask_us);
    free(check_us);
    sw_gstate_free(st);
    sw_grammar_free(gr);
    free(gb);
    sw_gvocab_free(v);
    sw_tok_free(tok);
    sw_gguf_close(g);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        one(argv[i], "schema", SCHEMA);
        one(argv[i], "json_object", NULL);
    }
    return 0;
}
