/* test_tok_regex.c — the pre-tokenizer regex engine against an independent oracle:
 * test_tok_regex_cases.txt holds random strings and the pieces the Python 'regex'
 * module makes of them with the same pattern sequences (Perl-style leftmost-first
 * semantics, full Unicode properties). Every split must agree. */
#include <stdlib.h>
#include <string.h>

#include "infer/tok_impl.h"
#include "test.h"

static int hexv(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int main(void)
{
    const char *src = getenv("SW_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/infer/test_tok_regex_cases.txt", src && *src ? src : ".");
    FILE *f = fopen(path, "r");
    if (!f) SW_TEST_SKIP("cannot open %s (set SW_SOURCE_DIR)", path);
    char line[8192];
    size_t n_cases = 0, n_bad = 0;
    struct sw__re_scratch sc = { 0 };
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char *pre = strtok(line, " "), *hex = strtok(NULL, " "), *lens = strtok(NULL, " \n");
        if (!pre || !hex || !lens) { CHECK_MSG(0, "bad line in %s", path); continue; }
        uint8_t text[4096];
        size_t tl = 0;
        for (size_t i = 0; hex[i] && hex[i + 1] && tl < sizeof text; i += 2)
            text[tl++] = (uint8_t)(hexv(hex[i]) << 4 | hexv(hex[i + 1]));
        const char *const *rx = sw__pre_lookup(pre, NULL, NULL);
        CHECK_MSG(rx != NULL, "unknown pre-tokenizer %s", pre);
        if (!rx) continue;
        /* code points and their byte offsets */
        uint32_t cps[4096];
        size_t offs[4097], n = 0;
        for (size_t p = 0; p < tl;) {
            offs[n] = p;
            p += sw__utf8_decode(text + p, tl - p, &cps[n]);
            n++;
        }
        offs[n] = tl;
        size_t *ends = malloc(sizeof *ends), n_ends = 1;
        ends[0] = n;
        for (; *rx; rx++) {
            struct sw__re *re = NULL;
            char err[256];
            if (sw__re_compile(*rx, &re, err, sizeof err)) { CHECK_MSG(0, "%s: %s", pre, err); break; }
            size_t *e2 = NULL, n2 = 0, c2 = 0, a = 0;
            for (size_t i = 0; i < n_ends; i++) {
                CHECK_EQ_INT(sw__re_split(re, cps, a, ends[i], &sc, &e2, &n2, &c2), 0);
                a = ends[i];
            }
            free(ends);
            ends = e2;
            n_ends = n2;
            sw__re_free(re);
        }
        /* compare byte lengths of the pieces */
        char got[8192];
        size_t gl = 0, a = 0;
        for (size_t i = 0; i < n_ends && gl + 16 < sizeof got; i++) {
            gl += (size_t)snprintf(got + gl, sizeof got - gl, i ? ",%zu" : "%zu", offs[ends[i]] - offs[a]);
            a = ends[i];
        }
        got[gl] = 0;
        n_cases++;
        if (strcmp(got, lens)) {
            if (n_bad < 5) fprintf(stderr, "%s %s: got %s, want %s\n", pre, hex, got, lens);
            n_bad++;
        }
        free(ends);
    }
    fclose(f);
    sw__re_scratch_free(&sc);
    CHECK_MSG(n_cases > 1000, "only %zu cases read from %s", n_cases, path);
    CHECK_MSG(n_bad == 0, "%zu of %zu splits differ from the oracle", n_bad, n_cases);
    fprintf(stderr, "%zu splits checked\n", n_cases);
    return SW_TEST_DONE();
}
