/* test_tok_vocab.c — the tokenizer against llama.cpp's vocabulary fixtures
 * (../shared/data/vocab/ggml-vocab-NAME.gguf with .inp/.out): every input must give the
 * expected ids (no BOS, special tokens not parsed), detokenize back to itself (except
 * WordPiece, which lower-cases), and a
 * 100 KB text must tokenize quickly. Built once per fixture with SW_TOK_FIXTURE="NAME". */
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "infer/tok.h"
#include "test.h"

#ifndef SW_TOK_FIXTURE
#define SW_TOK_FIXTURE "llama-spm"
#endif

static char *read_file(const char *path, size_t *len)
{
    uint8_t *d;
    if (sw_file_read_all(path, 64u << 20, &d, len)) return NULL;
    return (char *)d;
}

/* Inputs are separated by "\n__ggml_vocab_test__\n" (the text after the last separator
 * is empty); expected ids are one line per input. */
#define SEP "\n__ggml_vocab_test__\n"

struct input {
    const char *text;
    size_t len;
};

static void print_ids(const char *label, const int32_t *ids, size_t n)
{
    fprintf(stderr, "  %s (%zu):", label, n);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fputc('\n', stderr);
}

static void print_escaped(const char *s, size_t n)
{
    fputc('"', stderr);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stderr);
        else if (c == '\t') fputs("\\t", stderr);
        else if (c == '"') fputs("\\\"", stderr);
        else fputc(c, stderr);
    }
    fputc('"', stderr);
}

int main(void)
{
    const char *data = sw_test_shared_data();
    if (!data) SW_TEST_SKIP("shared data folder not found (set SW_SHARED_DATA)");
    char path[4096], pin[4200], pout[4200];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", data, SW_TOK_FIXTURE);
    snprintf(pin, sizeof pin, "%s.inp", path);
    snprintf(pout, sizeof pout, "%s.out", path);
    if (!sw_path_exists(path) || !sw_path_exists(pin) || !sw_path_exists(pout))
        SW_TEST_SKIP("fixture %s not present", path);

    struct sw_gguf *g = NULL;
    char err[512] = "";
    int rc = sw_gguf_open(path, &g, err, sizeof err);
    CHECK_MSG(rc == 0, "open %s: %s", path, err);
    if (rc) return SW_TEST_DONE();
    struct sw_tok *t = NULL;
    rc = sw_tok_from_gguf(g, &t, err, sizeof err);
    CHECK_MSG(rc == 0, "tokenizer from %s: %s (%s)", path, err, sw_strerror(rc));
    sw_gguf_close(g);
    if (rc) return SW_TEST_DONE();

    size_t in_len, out_len;
    char *inp = read_file(pin, &in_len), *outp = read_file(pout, &out_len);
    CHECK(inp && outp);
    if (!inp || !outp) return SW_TEST_DONE();

    struct input inputs[512];
    size_t n_inputs = 0;
    for (const char *p = inp, *end = inp + in_len; p < end && n_inputs < SW_ARRAY_LEN(inputs);) {
        const char *sep = memmem(p, (size_t)(end - p), SEP, strlen(SEP));
        if (!sep) break; /* trailing text after the last separator: none in the fixtures */
        inputs[n_inputs++] = (struct input){ p, (size_t)(sep - p) };
        p = sep + strlen(SEP);
    }
    CHECK_MSG(n_inputs > 10, "only %zu inputs parsed from %s", n_inputs, pin);

    size_t line_no = 0, mismatches = 0, roundtrip_fail = 0;
    int lossless = sw_tok_model_kind(t) != SW_TOK_MODEL_WPM;
    char *save = NULL;
    char *line = outp;
    for (size_t i = 0; i < n_inputs; i++, line_no++) {
        /* next line of expected ids (lines may be empty) */
        char *nl = line ? strchr(line, '\n') : NULL;
        if (!line || !nl) { CHECK_MSG(0, "%s: fewer output lines than inputs (%zu)", pout, n_inputs); break; }
        *nl = 0;
        int32_t want[4096];
        size_t n_want = 0;
        for (char *tokp = strtok_r(line, " ", &save); tokp && n_want < SW_ARRAY_LEN(want);
             tokp = strtok_r(NULL, " ", &save))
            want[n_want++] = (int32_t)strtol(tokp, NULL, 10);
        line = nl + 1;

        int32_t *ids = NULL;
        size_t n = 0;
        rc = sw_tok_encode(t, inputs[i].text, inputs[i].len, 0, &ids, &n);
        CHECK_MSG(rc == 0, "encode input %zu: %s", i, sw_strerror(rc));
        int same = n == n_want && (n == 0 || !memcmp(ids, want, n * sizeof *ids));
        if (!same) {
            if (!mismatches) {
                fprintf(stderr, "%s: input %zu ", SW_TOK_FIXTURE, i);
                print_escaped(inputs[i].text, inputs[i].len);
                fputc('\n', stderr);
                print_ids("expected", want, n_want);
                print_ids("got     ", ids, n);
            }
            mismatches++;
        }
        struct sw_buf back = { 0 };
        rc = sw_tok_decode(t, ids, n, 0, &back);
        /* WordPiece lower-cases and drops accents: it cannot round-trip */
        if (lossless && (rc || back.len != inputs[i].len || (back.len && memcmp(back.data, inputs[i].text, back.len)))) {
            if (!roundtrip_fail) {
                fprintf(stderr, "%s: round trip of input %zu: ", SW_TOK_FIXTURE, i);
                print_escaped(inputs[i].text, inputs[i].len);
                fputs(" -> ", stderr);
                print_escaped((const char *)back.data, back.len);
                fputc('\n', stderr);
            }
            roundtrip_fail++;
        }
        sw_buf_free(&back);
        free(ids);
    }
    CHECK_MSG(mismatches == 0, "%s: %zu of %zu inputs tokenized differently from llama.cpp", SW_TOK_FIXTURE,
              mismatches, n_inputs);
    CHECK_MSG(roundtrip_fail == 0, "%s: %zu of %zu inputs did not detokenize to themselves", SW_TOK_FIXTURE,
              roundtrip_fail, n_inputs);

    /* with BOS: the model's BOS comes first when it asks for one, and decoding drops it */
    {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK_EQ_INT(sw_tok_encode(t, "Hello world", 11, SW_TOK_ADD_BOS, &ids, &n), 0);
        if (sw_tok_adds_bos(t)) {
            CHECK(n > 0 && ids[0] == sw_tok_bos(t));
        }
        struct sw_buf back = { 0 };
        sw_tok_decode(t, ids, n, 0, &back);
        CHECK_EQ_STR(sw_buf_cstr(&back), lossless ? "Hello world" : "hello world");
        sw_buf_free(&back);
        free(ids);
    }

    /* speed: ~100 KB of the fixture text, repeated */
    {
        struct sw_buf big = { 0 };
        while (big.len < 100000) sw_buf_append(&big, inp, in_len);
        uint64_t t0 = sw_time_us();
        int32_t *ids = NULL;
        size_t n = 0;
        rc = sw_tok_encode(t, (const char *)big.data, big.len, 0, &ids, &n);
        uint64_t us = sw_time_us() - t0;
        CHECK_EQ_INT(rc, 0);
        fprintf(stderr, "%s: %zu bytes -> %zu tokens in %.1f ms\n", SW_TOK_FIXTURE, big.len, n, us / 1000.0);
        /* "well under a second" is the goal; allow slack for sanitizer builds */
        CHECK_MSG(us < 5000000, "tokenizing %zu bytes took %.2f s", big.len, us / 1e6);
        free(ids);
        sw_buf_free(&big);
    }

    free(inp);
    free(outp);
    sw_tok_free(t);
    return SW_TEST_DONE();
}
