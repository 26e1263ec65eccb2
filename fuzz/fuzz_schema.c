/* fuzz_schema.c — the JSON-schema compiler (src/api/schema.c) and the grammar it builds
 * (src/infer/grammar.c) must never crash, leak, loop or accept what they promise to refuse.
 * Input: a JSON schema text, then optionally 0x00 and bytes to feed the grammar.
 * An accepted schema must give a grammar that loads, starts, and after any bytes it takes
 * still saves and reloads to the same state; a refused one names a path under "format". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/oai_int.h"
#include "infer/tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
    const uint8_t *z = memchr(p, 0, n);
    size_t slen = z ? (size_t)(z - p) : n;
    const uint8_t *feed = z ? z + 1 : p + n;
    size_t flen = n - (size_t)(feed - p);
    json_t *schema = json_loadb((const char *)p, slen, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (!schema) return 0;
    uint8_t *g = NULL;
    size_t gl = 0;
    struct sw_api_oai_error e;
    memset(&e, 0, sizeof e);
    int rc = sw__schema_compile(schema, "format", NULL, NULL, &g, &gl, &e);
    json_decref(schema);
    if (rc) {
        if (e.status != 400 || strncmp(e.param, "format", 6) || !e.message[0]) abort();
        return 0;
    }
    struct sw_grammar *gr = NULL;
    struct sw_gstate *st = NULL;
    if (sw_grammar_load(g, gl, &gr) || sw_gstate_new(gr, &st)) abort(); /* the compiler checked both */
    for (size_t i = 0; i < flen; i++) sw_gstate_feed(st, feed + i, 1); /* refused bytes leave it as it was */
    struct sw_buf a = { 0 }, b = { 0 };
    if (sw_gstate_save(st, &a)) abort();
    struct sw_gstate *st2 = NULL;
    if (sw_gstate_load(gr, a.data, a.len, &st2)) abort();
    sw_gstate_save(st2, &b);
    if (a.len != b.len || memcmp(a.data, b.data, a.len)) abort();
    if (sw_gstate_can_end(st) != sw_gstate_can_end(st2)) abort();
    sw_buf_free(&a);
    sw_buf_free(&b);
    sw_gstate_free(st2);
    sw_gstate_free(st);
    sw_grammar_free(gr);
    free(g);
    return 0;
}
