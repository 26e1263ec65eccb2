/* tok_impl.h — internals shared by the tokenizer's files (tok*.c, unicode*.c): UTF-8 and
 * Unicode category helpers, and the small regex engine the BPE pre-tokenizers run on.
 * Not public API: only tok.h is. */
#ifndef SW_TOK_IMPL_H
#define SW_TOK_IMPL_H

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------- unicode.c */

/* General categories (UnicodeData.txt field 2); unassigned code points are Cn. */
enum sw__gc {
    SW__GC_LU = 1, SW__GC_LL, SW__GC_LT, SW__GC_LM, SW__GC_LO, SW__GC_MN, SW__GC_MC, SW__GC_ME,
    SW__GC_ND, SW__GC_NL, SW__GC_NO, SW__GC_PC, SW__GC_PD, SW__GC_PS, SW__GC_PE, SW__GC_PI,
    SW__GC_PF, SW__GC_PO, SW__GC_SM, SW__GC_SC, SW__GC_SK, SW__GC_SO, SW__GC_ZS, SW__GC_ZL,
    SW__GC_ZP, SW__GC_CC, SW__GC_CF, SW__GC_CS, SW__GC_CO, SW__GC_CN
};
/* Bit masks over enum sw__gc for the major classes (regex \p{L} etc.). */
#define SW__GCM(a, b) ((uint32_t)((1ull << ((b) + 1)) - (1ull << (a))))
#define SW__GCM_L SW__GCM(SW__GC_LU, SW__GC_LO)
#define SW__GCM_M SW__GCM(SW__GC_MN, SW__GC_ME)
#define SW__GCM_N SW__GCM(SW__GC_ND, SW__GC_NO)
#define SW__GCM_P SW__GCM(SW__GC_PC, SW__GC_PO)
#define SW__GCM_S SW__GCM(SW__GC_SM, SW__GC_SO)
#define SW__GCM_Z SW__GCM(SW__GC_ZS, SW__GC_ZP)
#define SW__GCM_C SW__GCM(SW__GC_CC, SW__GC_CN)

/* Major categories, for code that needs only the first letter. */
enum { SW__UCAT_L = 1, SW__UCAT_M, SW__UCAT_N, SW__UCAT_P, SW__UCAT_S, SW__UCAT_Z, SW__UCAT_C };

extern const uint32_t sw__ucat_runs[]; /* first << 5 | enum sw__gc */
extern const size_t sw__ucat_n_runs;
extern const uint8_t sw__ucat_ascii[128];
extern const uint32_t sw__white_space[][2];
extern const size_t sw__white_space_n;

extern const uint32_t sw__nfd_first[][2];
extern const size_t sw__nfd_first_n;
extern const uint32_t sw__lower[][2];
extern const size_t sw__lower_n;

int sw__gc(uint32_t cp);        /* enum sw__gc; Cn for cp > 0x10FFFF */
/* First code point of cp's canonical decomposition (its base letter), or cp itself. */
uint32_t sw__nfd_first_cp(uint32_t cp);
uint32_t sw__tolower(uint32_t cp); /* simple lowercase mapping, or cp itself */
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
 * *ignore_merges_out: whether a whole pre-token found in the vocabulary skips merging;
 * *add_bos_out: whether BOS is added when the file has no add_bos_token. Both may be NULL. */
const char *const *sw__pre_lookup(const char *name, int *ignore_merges_out, int *add_bos_out);

#endif
