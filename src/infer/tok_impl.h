/* tok_impl.h — internals shared by the tokenizer's files (tok*.c, unicode*.c): UTF-8 and
 * Unicode category helpers, and the small regex engine the BPE pre-tokenizers run on.
 * Not public API: only tok.h is. */
#ifndef SW_TOK_IMPL_H
#define SW_TOK_IMPL_H

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------- unicode.c */

/* Major general categories (UnicodeData.txt field 2, first letter); unassigned -> C. */
enum { SW__UCAT_L = 1, SW__UCAT_M, SW__UCAT_N, SW__UCAT_P, SW__UCAT_S, SW__UCAT_Z, SW__UCAT_C };

extern const uint32_t sw__ucat_runs[];
extern const size_t sw__ucat_n_runs;
extern const uint32_t sw__white_space[][2];
extern const size_t sw__white_space_n;

int sw__ucat(uint32_t cp);      /* SW__UCAT_*; C for cp > 0x10FFFF */
int sw__is_space(uint32_t cp);  /* PropList White_Space (regex \s) */
/* Byte length of the UTF-8 sequence a lead byte announces (1 for continuation bytes and
 * 0xF8..0xFF), the way llama.cpp splits text into symbols. */
size_t sw__utf8_lead_len(uint8_t c);
/* Decodes one code point from p[0..n) (n >= 1). A malformed or truncated sequence yields
 * U+FFFD and consumes one byte. Returns the bytes consumed. */
size_t sw__utf8_decode(const uint8_t *p, size_t n, uint32_t *cp_out);
/* Encodes cp (<= 0x10FFFF, else U+FFFD) into out; returns 1..4. */
size_t sw__utf8_encode(uint32_t cp, uint8_t out[4]);

/* ------------------------------------------------------------- tok_regex.c */

/* A compiled pattern: the subset of PCRE/Oniguruma syntax used by Hugging Face
 * pre-tokenizers: literals, '.', classes with ranges, \s \S \d \D \w \W \p{X} \P{X}
 * (major categories), alternation, (?:...), (...), (?i:...), (?=...), (?!...), ^, $,
 * quantifiers ? * + {m} {m,} {m,n} (lazy with a trailing ?). */
struct sw__re;

struct sw__re_scratch {
    uint8_t *bits;     /* visited (instruction, position) bitmap */
    size_t bits_cap;   /* bytes */
    void *stack;       /* backtrack frames */
    size_t stack_cap;  /* frames */
};

int sw__re_compile(const char *pattern, struct sw__re **out, char *err, size_t err_len);
void sw__re_free(struct sw__re *re);
void sw__re_scratch_free(struct sw__re_scratch *sc);

/* Splits the segment cps[a..b) the way a "Split(pattern, Isolated)" pre-tokenizer does:
 * every leftmost-first match and every run of text between matches becomes a piece (the
 * segment is the whole subject: ^ and $ anchor at a and b). Appends the end offset of each
 * piece to *ends (growing it; *n_ends and *cap_ends updated). Runs in time linear in b - a
 * (a bit-state backtracker: each (instruction, position) is tried once). Returns 0 or
 * SW_ENOMEM. */
int sw__re_split(const struct sw__re *re, const uint32_t *cps, size_t a, size_t b,
                 struct sw__re_scratch *sc, size_t **ends, size_t *n_ends, size_t *cap_ends);

/* ------------------------------------------------------------- tok_pre.c */

/* The regex sequence (NULL-terminated) of a tokenizer.ggml.pre name; NULL when unknown.
 * *ignore_merges_out: whether a whole pre-token found in the vocabulary skips merging. */
const char *const *sw__pre_lookup(const char *name, int *ignore_merges_out);

#endif
