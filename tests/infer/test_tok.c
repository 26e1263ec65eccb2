/* test_tok.c — tokenizer unit tests on small in-memory vocabularies (no shared data):
 * SentencePiece merges by score and byte fallback, special-token parsing on and off,
 * byte-level BPE with merges by rank, the pre-tokenizer regex engine on hand-checked
 * splits, streaming detokenization of split UTF-8, bad vocabularies. */
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "infer/tok.h"
#include "infer/tok_impl.h"
#include "test.h"

/* ---------------------------------------------------------------- SPM */

#define SPACE "\xE2\x96\x81"

static struct sw_tok *spm_vocab(void)
{
    static char bytes[256][8];
    const char *toks[300];
    float scores[300];
    int32_t types[300];
    uint32_t n = 0;
    toks[n] = "<unk>"; types[n] = SW_TOKTYPE_UNKNOWN; scores[n++] = 0;
    toks[n] = "<s>"; types[n] = SW_TOKTYPE_CONTROL; scores[n++] = 0;
    toks[n] = "</s>"; types[n] = SW_TOKTYPE_CONTROL; scores[n++] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        toks[n] = bytes[b]; types[n] = SW_TOKTYPE_BYTE; scores[n++] = 0;
    }
    /* 259.. */
    const char *words[] = { SPACE, "h", "e", "l", "o", SPACE "h", "ll", SPACE "he", "llo", SPACE "hello",
                            "w", "r", "d", SPACE "w", "or", SPACE "wor", SPACE "world", "<tag>" };
    float wscore[] = { -1, -2, -2, -2, -2, -3, -3, -4, -4, -5, -2, -2, -2, -3, -3, -4, -5, 0 };
    for (size_t i = 0; i < SW_ARRAY_LEN(words); i++) {
        toks[n] = words[i];
        types[n] = i + 1 == SW_ARRAY_LEN(words) ? SW_TOKTYPE_USER_DEFINED : SW_TOKTYPE_NORMAL;
        scores[n++] = wscore[i];
    }
    struct sw_tok_desc d = { 0 };
    d.model = "llama";
    d.n_tokens = n;
    d.tokens = toks;
    d.scores = scores;
    d.types = types;
    d.bos_id = 1; d.eos_id = 2; d.unk_id = 0; d.pad_id = -1;
    d.add_bos = -1; d.add_eos = -1; d.add_space_prefix = -1;
    struct sw_tok *t = NULL;
    char err[256] = "";
    int rc = sw_tok_new(&d, &t, err, sizeof err);
    CHECK_MSG(rc == 0, "sw_tok_new: %s", err);
    return t;
}

static int encode_eq(const struct sw_tok *t, const char *text, unsigned flags, const int32_t *want, size_t n_want)
{
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = sw_tok_encode(t, text, strlen(text), flags, &ids, &n);
    int ok = rc == 0 && n == n_want && (!n || !memcmp(ids, want, n * sizeof *ids));
    if (!ok) {
        fprintf(stderr, "encode \"%s\" (rc %d):", text, rc);
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "  want:");
        for (size_t i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
        fputc('\n', stderr);
    }
    free(ids);
    return ok;
}

static const char *decode_str(const struct sw_tok *t, const char *text, unsigned eflags, unsigned dflags,
                              struct sw_buf *b)
{
    int32_t *ids = NULL;
    size_t n = 0;
    b->len = 0;
    sw_tok_encode(t, text, strlen(text), eflags, &ids, &n);
    sw_tok_decode(t, ids, n, dflags, b);
    free(ids);
    return sw_buf_cstr(b);
}

static void test_spm(void)
{
    struct sw_tok *t = spm_vocab();
    if (!t) return;
    enum { SP = 259, HELLO = 268, WORLD = 275, TAG = 276 };
    CHECK_EQ_INT(sw_tok_model_kind(t), SW_TOK_MODEL_SPM);
    CHECK(sw_tok_adds_bos(t));
    int32_t w1[] = { HELLO };
    CHECK(encode_eq(t, "hello", 0, w1, 1));
    /* "\u2581worl" is no token, so SentencePiece never reaches "\u2581world" */
    int32_t w2[] = { 1, HELLO, 274, 262, 271 };
    CHECK(encode_eq(t, "hello world", SW_TOK_ADD_BOS, w2, 5));
    /* é is no token: its two UTF-8 bytes fall back to <0xC3> <0xA9> */
    int32_t w3[] = { HELLO, 3 + 0xC3, 3 + 0xA9 };
    CHECK(encode_eq(t, "helloé", 0, w3, 3));
    /* control tokens only with PARSE_SPECIAL; after one, the text gets a space prefix */
    int32_t w4[] = { 1, HELLO };
    CHECK(encode_eq(t, "<s>hello", SW_TOK_PARSE_SPECIAL, w4, 2));
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_EQ_INT(sw_tok_encode(t, "<s>hello", 8, 0, &ids, &n), 0);
    for (size_t i = 0; i < n; i++) CHECK(ids[i] != 1);
    free(ids);
    /* user-defined tokens are matched even without PARSE_SPECIAL (llama.cpp) */
    int32_t w5[] = { HELLO, TAG, HELLO };
    CHECK(encode_eq(t, "hello<tag>hello", 0, w5, 3));
    /* empty text: nothing, or just BOS */
    CHECK(encode_eq(t, "", 0, NULL, 0));
    int32_t w6[] = { 1 };
    CHECK(encode_eq(t, "", SW_TOK_ADD_BOS, w6, 1));
    /* " " -> the prefix space and the space itself */
    int32_t w7[] = { SP, SP };
    CHECK(encode_eq(t, " ", 0, w7, 2));

    struct sw_buf b = { 0 };
    CHECK_EQ_STR(decode_str(t, "hello world", SW_TOK_ADD_BOS, 0, &b), "hello world");
    CHECK_EQ_STR(decode_str(t, "  hello", 0, 0, &b), "  hello");
    CHECK_EQ_STR(decode_str(t, "helloé\n\t", 0, 0, &b), "helloé\n\t");
    CHECK_EQ_STR(decode_str(t, "hello", 0, SW_TOK_DECODE_NO_STRIP, &b), " hello");
    CHECK_EQ_STR(decode_str(t, "<s>hello</s>", SW_TOK_PARSE_SPECIAL, SW_TOK_DECODE_SPECIAL, &b),
                 "<s>hello</s>"); /* control tokens do not take the prefix space's place */
    sw_buf_free(&b);

    char piece[16];
    CHECK_EQ_INT(sw_tok_piece(t, HELLO, 0, piece, sizeof piece), 6);
    CHECK(!memcmp(piece, " hello", 6));
    CHECK_EQ_INT(sw_tok_piece(t, 1, 0, piece, sizeof piece), 0);
    CHECK_EQ_INT(sw_tok_piece(t, 1, SW_TOK_DECODE_SPECIAL, piece, sizeof piece), 3);
    CHECK_EQ_INT(sw_tok_piece(t, 3 + 0x41, 0, piece, sizeof piece), 1);
    CHECK_EQ_INT(piece[0], 'A');
    CHECK_EQ_INT(sw_tok_piece(t, 99999, 0, piece, sizeof piece), SW_ERANGE);
    CHECK_EQ_INT(sw_tok_find(t, SPACE "hello", strlen(SPACE "hello")), HELLO);
    CHECK_EQ_INT(sw_tok_find(t, "nope", 4), -1);
    sw_tok_free(t);
}

static void test_stream(void)
{
    struct sw_tok *t = spm_vocab();
    if (!t) return;
    /* "é" as two byte tokens: nothing until the second arrives */
    int32_t ids[] = { 1, 268, 3 + 0xC3, 3 + 0xA9, 275 };
    struct sw_tok_stream st;
    sw_tok_stream_init(&st, t, 0, 1);
    struct sw_buf out = { 0 };
    size_t lens[5];
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT(sw_tok_stream_push(&st, ids[i], &out), 0);
        lens[i] = out.len;
    }
    CHECK_EQ_INT(lens[0], 0);
    CHECK_EQ_INT(lens[1], 5);  /* "hello": the prefix space stripped */
    CHECK_EQ_INT(lens[2], 5);  /* 0xC3 held back */
    CHECK_EQ_INT(lens[3], 7);  /* é complete */
    CHECK_EQ_INT(sw_tok_stream_flush(&st, &out), 0);
    CHECK_EQ_STR(sw_buf_cstr(&out), "helloé world");
    /* a dangling lead byte comes out at flush */
    out.len = 0;
    sw_tok_stream_init(&st, t, 0, 0);
    sw_tok_stream_push(&st, 268, &out);
    sw_tok_stream_push(&st, 3 + 0xE2, &out);
    CHECK_EQ_INT(out.len, 6);
    sw_tok_stream_flush(&st, &out);
    CHECK_EQ_INT(out.len, 7);
    sw_buf_free(&out);
    sw_tok_free(t);
}

/* ---------------------------------------------------------------- BPE */

/* GPT-2's byte alphabet, written independently of the tokenizer's own table. */
static void byte_char(int b, char out[3])
{
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    int cp = b;
    if (!printable) {
        int k = 0;
        for (int c = 0; c < b; c++)
            if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE)) k++;
        cp = 256 + k;
    }
    if (cp < 0x80) { out[0] = (char)cp; out[1] = 0; }
    else { out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); out[2] = 0; }
}

static struct sw_tok *bpe_vocab(const char *pre)
{
    static char bytes[256][3];
    const char *toks[300];
    int32_t types[300];
    uint32_t n = 0;
    for (int b = 0; b < 256; b++) {
        byte_char(b, bytes[b]);
        toks[n] = bytes[b];
        types[n++] = SW_TOKTYPE_NORMAL;
    }
    /* 256.. */
    const char *extra[] = { "he", "ll", "hell", "hello", "\xC4\xA0w", "or", "\xC4\xA0wor", "\xC4\xA0world",
                            "<|endoftext|>" };
    for (size_t i = 0; i < SW_ARRAY_LEN(extra); i++) {
        toks[n] = extra[i];
        types[n++] = i + 1 == SW_ARRAY_LEN(extra) ? SW_TOKTYPE_CONTROL : SW_TOKTYPE_NORMAL;
    }
    const char *merges[] = { "h e", "l l", "he ll", "hell o", "\xC4\xA0 w", "o r", "\xC4\xA0w or",
                             "\xC4\xA0wor l", "\xC4\xA0worl d" };
    struct sw_tok_desc d = { 0 };
    d.model = "gpt2";
    d.pre = pre;
    d.n_tokens = n;
    d.tokens = toks;
    d.types = types;
    d.n_merges = SW_ARRAY_LEN(merges);
    d.merges = merges;
    d.bos_id = (int32_t)n - 1; d.eos_id = (int32_t)n - 1; d.unk_id = -1; d.pad_id = -1;
    d.add_bos = -1; d.add_eos = -1; d.add_space_prefix = -1;
    struct sw_tok *t = NULL;
    char err[256] = "";
    int rc = sw_tok_new(&d, &t, err, sizeof err);
    CHECK_MSG(rc == 0, "sw_tok_new: %s", err);
    return t;
}

static void test_bpe(void)
{
    struct sw_tok *t = bpe_vocab("gpt-2");
    if (!t) return;
    CHECK(!sw_tok_adds_bos(t));
    /* merges may pass through non-tokens ("\xC4\xA0worl") on the way to a token */
    int32_t w1[] = { 259, 263 };
    CHECK(encode_eq(t, "hello world", SW_TOK_ADD_BOS, w1, 2));
    int32_t w2[] = { 259, 264 };
    CHECK(encode_eq(t, "hello<|endoftext|>", SW_TOK_PARSE_SPECIAL, w2, 2));
    struct sw_buf b = { 0 };
    CHECK_EQ_STR(decode_str(t, "hello world\n\t  é 123", 0, 0, &b), "hello world\n\t  é 123");
    CHECK_EQ_STR(decode_str(t, "x<|endoftext|>y", SW_TOK_PARSE_SPECIAL, SW_TOK_DECODE_SPECIAL, &b),
                 "x<|endoftext|>y");
    CHECK_EQ_STR(decode_str(t, "x<|endoftext|>y", SW_TOK_PARSE_SPECIAL, 0, &b), "xy");
    /* invalid UTF-8 never fails; it comes back as U+FFFD */
    CHECK_EQ_STR(decode_str(t, "a\xFF" "b", 0, 0, &b), "a\xEF\xBF\xBD" "b");
    sw_buf_free(&b);
    CHECK(sw_tok_is_eog(t, 264));
    sw_tok_free(t);
    /* every listed pre-tokenizer compiles */
    const char *pres[] = { "default", "gpt-2", "llama-bpe", "qwen2", "deepseek-llm", "deepseek-coder",
                           "falcon", "starcoder", "refact", "mpt", "command-r", "poro-chat", "viking", "tekken",
                           "gpt-4o", "deepseek-v3", "chatglm-bpe" };
    for (size_t i = 0; i < SW_ARRAY_LEN(pres); i++) {
        t = bpe_vocab(pres[i]);
        CHECK_MSG(t != NULL, "pre-tokenizer %s", pres[i]);
        if (t) {
            CHECK_EQ_STR(decode_str(t, "Hello world's 12345 \n\n  x", 0, 0, &b), "Hello world's 12345 \n\n  x");
            sw_buf_free(&b);
        }
        sw_tok_free(t);
    }
}

/* ---------------------------------------------------------------- WordPiece */

static void test_wpm(void)
{
    const char *toks[] = { "[PAD]", "[UNK]", "[CLS]", "[SEP]", SPACE "hello", SPACE "world", "s", SPACE "fu",
                           "hrer", SPACE "!", SPACE "\xE4\xB8\xAD", SPACE "un", "able" };
    int32_t types[] = { 3, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    struct sw_tok_desc d = { 0 };
    d.model = "bert";
    d.n_tokens = SW_ARRAY_LEN(toks);
    d.tokens = toks;
    d.types = types;
    d.bos_id = 2; d.eos_id = 3; d.unk_id = 1; d.pad_id = 0;
    d.add_bos = d.add_eos = d.add_space_prefix = -1;
    struct sw_tok *t = NULL;
    char err[256] = "";
    CHECK_EQ_INT(sw_tok_new(&d, &t, err, sizeof err), 0);
    if (!t) return;
    CHECK_EQ_INT(sw_tok_model_kind(t), SW_TOK_MODEL_WPM);
    /* lower-cased, accents stripped (ü -> u), punctuation and CJK split off, [CLS]/[SEP] */
    int32_t w1[] = { 2, 4, 5, 6, 9, 7, 8, 10, 3 };
    CHECK(encode_eq(t, "Hello WORLDs! F\xC3\xBChrer\xE4\xB8\xAD", SW_TOK_ADD_BOS | SW_TOK_ADD_EOS, w1, 9));
    /* a word with an unmatched part is one [UNK] */
    int32_t w2[] = { 11, 12, 1, 4 };
    CHECK(encode_eq(t, "unable unablex hello", 0, w2, 4));
    struct sw_buf b = { 0 };
    CHECK_EQ_STR(decode_str(t, "Hello world", SW_TOK_ADD_BOS, 0, &b), "hello world");
    sw_buf_free(&b);
    sw_tok_free(t);
}

/* ---------------------------------------------------------------- regex */

/* Splits text with one pattern and compares the pieces, given as "a|b|c" (no '|' in
 * the test texts). */
static void check_split(const char *pattern, const char *text, const char *want)
{
    struct sw__re *re = NULL;
    char err[256] = "";
    int rc = sw__re_compile(pattern, &re, err, sizeof err);
    CHECK_MSG(rc == 0, "compile /%s/: %s", pattern, err);
    if (rc) return;
    uint32_t cps[256];
    size_t n = 0, off = 0, len = strlen(text);
    while (off < len && n < 256) off += sw__utf8_decode((const uint8_t *)text + off, len - off, &cps[n++]);
    size_t *ends = NULL, n_ends = 0, cap = 0;
    struct sw__re_scratch sc = { 0 };
    CHECK_EQ_INT(sw__re_split(re, cps, 0, n, &sc, &ends, &n_ends, &cap), 0);
    struct sw_buf got = { 0 };
    size_t a = 0;
    for (size_t i = 0; i < n_ends; i++) {
        if (i) sw_buf_append_byte(&got, '|');
        for (size_t k = a; k < ends[i]; k++) {
            uint8_t u[4];
            sw_buf_append(&got, u, sw__utf8_encode(cps[k], u));
        }
        a = ends[i];
    }
    const char *g = sw_buf_cstr(&got);
    CHECK_MSG(g && !strcmp(g, want), "/%s/ on \"%s\":\n got [%s]\nwant [%s]", pattern, text, g ? g : "", want);
    sw_buf_free(&got);
    free(ends);
    sw__re_scratch_free(&sc);
    sw__re_free(re);
}

static void test_regex(void)
{
    int im;
    const char *gpt2 = sw__pre_lookup("gpt-2", &im, NULL)[0];
    const char *llama3 = sw__pre_lookup("llama-bpe", &im, NULL)[0];
    CHECK_EQ_INT(im, 1);
    const char *qwen2 = sw__pre_lookup("qwen2", &im, NULL)[0];
    CHECK(sw__pre_lookup("no-such-pre", NULL, NULL) == NULL);
    const char *s = "Hello world's 12345 \n\n  x";
    check_split(gpt2, s, "Hello| world|'s| 12345| \n\n | x");
    check_split(llama3, s, "Hello| world|'s| |123|45| \n\n| | x");
    check_split(qwen2, s, "Hello| world|'s| |1|2|3|4|5| \n\n| | x");
    /* case-insensitive contractions only where the pattern says (?i:) */
    check_split(llama3, "DON'T", "DON|'T");
    check_split(gpt2, "DON'T", "DON|'|T");
    /* Unicode letters and numbers, non-ASCII spaces */
    check_split(gpt2, "naïve Ωmega ٣٤ x\u3000y", "naïve| Ωmega| ٣٤| x|\u3000|y");
    check_split(llama3, "¿Qué?!\r\nok", "¿Qué|?!\r\n|ok");
    /* isolated-split semantics: non-matching runs are pieces too */
    check_split("\\p{N}+", "ab12cd345", "ab|12|cd|345");
    check_split("[0-9][0-9][0-9]", "12345678", "123|456|78");
    check_split("\\s+$", "a  b  ", "a  b|  ");
    check_split("[\r\n]", "a\nb\r\n", "a|\n|b|\r|\n");
    check_split("a{2,3}?", "aaaaa", "aa|aa|a");
    check_split("(?=b)b|a(?!b)", "aab", "a|a|b");
    check_split("x*", "abc", "abc"); /* empty matches make no pieces */
    check_split("\\p{Lu}+|\\p{Ll}+", "HELLOworld", "HELLO|world");
    check_split("\\w+", "a_b1 \u00e9\u0301x", "a_b1| |\u00e9\u0301x");
    /* tekken / o200k split camel case: upper runs, then lower runs */
    const char *const *tek = sw__pre_lookup("tekken", NULL, NULL);
    CHECK(tek != NULL);
    if (tek) check_split(tek[0], "HTTPServer isOK 12", "HTTPServer| is|OK| |1|2");
    const char *const *o200k = sw__pre_lookup("gpt-4o", NULL, NULL);
    CHECK(o200k != NULL);
    if (o200k) check_split(o200k[0], "I'M fine, 12345", "I'M| fine|,| |123|45");
    /* compile errors are reported, not crashes */
    struct sw__re *re = NULL;
    char err[256];
    const char *bad[] = { "(", "[a-", "a{3,1}", "\\p{Xx}", "*a", "\\q", "(?<n>a)", "[z-a]" };
    for (size_t i = 0; i < SW_ARRAY_LEN(bad); i++) {
        CHECK_MSG(sw__re_compile(bad[i], &re, err, sizeof err) == SW_EINVAL, "pattern %s compiled", bad[i]);
        CHECK(re == NULL);
    }
}

static void test_unicode(void)
{
    CHECK_EQ_INT(sw__ucat('a'), SW__UCAT_L);
    CHECK_EQ_INT(sw__ucat(0x00E9), SW__UCAT_L);   /* é */
    CHECK_EQ_INT(sw__ucat(0x4E00), SW__UCAT_L);   /* CJK */
    CHECK_EQ_INT(sw__ucat(0x0663), SW__UCAT_N);   /* Arabic-Indic 3 */
    CHECK_EQ_INT(sw__ucat(0x00B2), SW__UCAT_N);   /* superscript 2 */
    CHECK_EQ_INT(sw__ucat(0x0301), SW__UCAT_M);   /* combining acute */
    CHECK_EQ_INT(sw__ucat(0x2014), SW__UCAT_P);   /* em dash */
    CHECK_EQ_INT(sw__ucat(0x1F600), SW__UCAT_S);  /* emoji */
    CHECK_EQ_INT(sw__ucat(0x00A0), SW__UCAT_Z);
    CHECK_EQ_INT(sw__ucat(0x0378), SW__UCAT_C);   /* unassigned */
    CHECK_EQ_INT(sw__ucat(0x110000), SW__UCAT_C);
    for (uint32_t c = 0; c < 0x80; c++) {
        /* the ASCII table agrees with the runs */
        size_t lo = 0, hi = sw__ucat_n_runs;
        while (hi - lo > 1) {
            size_t mid = (lo + hi) / 2;
            if ((sw__ucat_runs[mid] >> 5) <= c) lo = mid;
            else hi = mid;
        }
        CHECK_MSG((int)(sw__ucat_runs[lo] & 31) == sw__gc(c), "category of U+%04X", c);
    }
    CHECK_EQ_INT(sw__gc('A'), SW__GC_LU);
    CHECK_EQ_INT(sw__gc('a'), SW__GC_LL);
    CHECK_EQ_INT(sw__gc(0x01C5), SW__GC_LT);  /* Dž */
    CHECK_EQ_INT(sw__gc(0x02B0), SW__GC_LM);
    CHECK_EQ_INT(sw__gc(0x4E00), SW__GC_LO);
    CHECK_EQ_INT(sw__gc('_'), SW__GC_PC);
    CHECK_EQ_INT(sw__gc('$'), SW__GC_SC);
    CHECK_EQ_INT(sw__gc(0x0378), SW__GC_CN);
    CHECK(sw__is_space(0x3000) && sw__is_space(0x85) && sw__is_space('\v') && !sw__is_space(0x200B));
    uint32_t cp;
    CHECK_EQ_INT(sw__utf8_decode((const uint8_t *)"\xE2\x82", 2, &cp), 1);
    CHECK_EQ_INT(cp, 0xFFFD);
    CHECK_EQ_INT(sw__utf8_decode((const uint8_t *)"\xF0\x9F\x98\x80", 4, &cp), 4);
    CHECK_EQ_INT(cp, 0x1F600);
    CHECK_EQ_INT(sw__utf8_decode((const uint8_t *)"\xF7\xBF\xBF\xBF", 4, &cp), 1); /* > U+10FFFF */
}

static void test_bad_vocab(void)
{
    struct sw_tok *t = NULL;
    char err[256] = "";
    const char *toks[] = { "a", "b" };
    struct sw_tok_desc d = { 0 };
    d.model = "t5";
    d.n_tokens = 2;
    d.tokens = toks;
    d.bos_id = d.eos_id = d.unk_id = d.pad_id = -1;
    d.add_bos = d.add_eos = d.add_space_prefix = -1;
    CHECK_EQ_INT(sw_tok_new(&d, &t, err, sizeof err), SW_EUNSUPPORTED);
    CHECK(strstr(err, "t5") != NULL);
    d.model = "gpt2";
    d.pre = "klingon";
    CHECK_EQ_INT(sw_tok_new(&d, &t, err, sizeof err), SW_EUNSUPPORTED);
    CHECK(strstr(err, "klingon") != NULL);
    d.model = "llama";
    d.n_tokens = 0;
    CHECK_EQ_INT(sw_tok_new(&d, &t, err, sizeof err), SW_EINVAL);
    CHECK(t == NULL);
    /* ids out of range are dropped, not trusted */
    d.n_tokens = 2;
    d.bos_id = 7;
    CHECK_EQ_INT(sw_tok_new(&d, &t, err, sizeof err), 0);
    if (t) CHECK_EQ_INT(sw_tok_bos(t), -1);
    /* a SPM vocabulary without byte tokens: unknown text becomes <unk> (-1 here: dropped) */
    int32_t *ids = NULL;
    size_t n = 0;
    if (t) CHECK_EQ_INT(sw_tok_encode(t, "abz", 3, 0, &ids, &n), 0);
    free(ids);
    sw_tok_free(t);
    sw_tok_free(NULL);
}

/* ---------------------------------------------------------------- GGUF metadata */

/* A minimal GGUF v3 writer for metadata-only files (no tensors). */
struct mini {
    struct sw_buf kv;
    uint64_t n_kv;
};

static void put_le(struct sw_buf *b, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) sw_buf_append_byte(b, (uint8_t)(v >> (8 * i)));
}
static void put_str(struct sw_buf *b, const char *s)
{
    put_le(b, strlen(s), 8);
    sw_buf_append(b, s, strlen(s));
}
static void kv_str(struct mini *m, const char *k, const char *v)
{
    put_str(&m->kv, k);
    put_le(&m->kv, SW_GGUF_STRING, 4);
    put_str(&m->kv, v);
    m->n_kv++;
}
static void kv_u32(struct mini *m, const char *k, uint32_t v)
{
    put_str(&m->kv, k);
    put_le(&m->kv, SW_GGUF_U32, 4);
    put_le(&m->kv, v, 4);
    m->n_kv++;
}
static void kv_strs(struct mini *m, const char *k, const char *const *v, size_t n)
{
    put_str(&m->kv, k);
    put_le(&m->kv, SW_GGUF_ARRAY, 4);
    put_le(&m->kv, SW_GGUF_STRING, 4);
    put_le(&m->kv, n, 8);
    for (size_t i = 0; i < n; i++) put_str(&m->kv, v[i]);
    m->n_kv++;
}
static void kv_f32s(struct mini *m, const char *k, const float *v, size_t n)
{
    put_str(&m->kv, k);
    put_le(&m->kv, SW_GGUF_ARRAY, 4);
    put_le(&m->kv, SW_GGUF_F32, 4);
    put_le(&m->kv, n, 8);
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        put_le(&m->kv, u, 4);
    }
    m->n_kv++;
}
static void kv_i32s(struct mini *m, const char *k, const int32_t *v, size_t n)
{
    put_str(&m->kv, k);
    put_le(&m->kv, SW_GGUF_ARRAY, 4);
    put_le(&m->kv, SW_GGUF_I32, 4);
    put_le(&m->kv, n, 8);
    for (size_t i = 0; i < n; i++) put_le(&m->kv, (uint32_t)v[i], 4);
    m->n_kv++;
}

/* Builds the file and the tokenizer; returns sw_tok_from_gguf's code (err filled). */
static int from_mini(struct mini *m, struct sw_tok **t, char *err, size_t err_len)
{
    struct sw_buf f = { 0 };
    sw_buf_append(&f, "GGUF", 4);
    put_le(&f, 3, 4);
    put_le(&f, 0, 8);
    put_le(&f, m->n_kv, 8);
    sw_buf_append(&f, m->kv.data, m->kv.len);
    struct sw_gguf *g = NULL;
    *t = NULL;
    int rc = sw_gguf_open_mem(f.data, f.len, &g, err, err_len);
    CHECK_MSG(rc == 0, "mini gguf: %s", err);
    if (!rc) {
        rc = sw_tok_from_gguf(g, t, err, err_len);
        sw_gguf_close(g);
    }
    sw_buf_free(&f);
    sw_buf_free(&m->kv);
    m->n_kv = 0;
    return rc;
}

static void test_gguf_metadata(void)
{
    static const char *const toks[] = { "<unk>", "<s>", "</s>", "\xE2\x96\x81" "a", "a" };
    static const float sc[] = { 0, 0, 0, -1, -2 };
    static const int32_t ty[] = { 2, 3, 3, 1, 1 };
    struct mini m = { { 0 }, 0 };
    struct sw_tok *t = NULL;
    char err[512];

    /* a good one */
    kv_str(&m, "tokenizer.ggml.model", "llama");
    kv_strs(&m, "tokenizer.ggml.tokens", toks, 5);
    kv_f32s(&m, "tokenizer.ggml.scores", sc, 5);
    kv_i32s(&m, "tokenizer.ggml.token_type", ty, 5);
    kv_u32(&m, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(&m, "tokenizer.ggml.eos_token_id", 99); /* out of range: dropped */
    kv_str(&m, "tokenizer.chat_template", "{{ '<|im_start|>' }}");
    CHECK_EQ_INT(from_mini(&m, &t, err, sizeof err), 0);
    if (t) {
        CHECK_EQ_INT(sw_tok_n_vocab(t), 5);
        CHECK_EQ_INT(sw_tok_bos(t), 1);
        CHECK_EQ_INT(sw_tok_eos(t), -1);
        CHECK_EQ_INT(sw_tok_unk(t), 0); /* SPM default */
        CHECK_EQ_STR(sw_tok_chat_template(t), "{{ '<|im_start|>' }}");
        int32_t want[] = { 1, 3 };
        CHECK(encode_eq(t, "a", SW_TOK_ADD_BOS, want, 2));
        sw_tok_free(t);
    }

    /* no tokenizer at all */
    kv_u32(&m, "general.alignment", 32);
    CHECK_EQ_INT(from_mini(&m, &t, err, sizeof err), SW_ENOTFOUND);
    CHECK(strstr(err, "tokenizer.ggml.model") != NULL);

    /* unsupported model */
    kv_str(&m, "tokenizer.ggml.model", "rwkv");
    kv_strs(&m, "tokenizer.ggml.tokens", toks, 5);
    CHECK_EQ_INT(from_mini(&m, &t, err, sizeof err), SW_EUNSUPPORTED);
    CHECK(strstr(err, "rwkv") != NULL);

    /* scores of the wrong length */
    kv_str(&m, "tokenizer.ggml.model", "llama");
    kv_strs(&m, "tokenizer.ggml.tokens", toks, 5);
    kv_f32s(&m, "tokenizer.ggml.scores", sc, 4);
    CHECK_EQ_INT(from_mini(&m, &t, err, sizeof err), SW_ECORRUPT);
    CHECK(strstr(err, "tokenizer.ggml.scores") != NULL);

    /* token types of the wrong length */
    kv_str(&m, "tokenizer.ggml.model", "llama");
    kv_strs(&m, "tokenizer.ggml.tokens", toks, 5);
    kv_i32s(&m, "tokenizer.ggml.token_type", ty, 3);
    CHECK_EQ_INT(from_mini(&m, &t, err, sizeof err), SW_ECORRUPT);
    CHECK(strstr(err, "tokenizer.ggml.token_type") != NULL);

    /* tokens that are not strings */
    kv_str(&m, "tokenizer.ggml.model", "llama");
    kv_f32s(&m, "tokenizer.ggml.tokens", sc, 5);
    CHECK_EQ_INT(from_mini(&m, &t, err, sizeof err), SW_ECORRUPT);
    CHECK(strstr(err, "tokenizer.ggml.tokens") != NULL);

    /* gpt2 without merges, and with an unknown pre-tokenizer */
    kv_str(&m, "tokenizer.ggml.model", "gpt2");
    kv_strs(&m, "tokenizer.ggml.tokens", toks, 5);
    CHECK_EQ_INT(from_mini(&m, &t, err, sizeof err), SW_ENOTFOUND);
    CHECK(strstr(err, "tokenizer.ggml.merges") != NULL);
    static const char *const merges[] = { "a a", "bad-merge-without-space" };
    kv_str(&m, "tokenizer.ggml.model", "gpt2");
    kv_str(&m, "tokenizer.ggml.pre", "no-such-pre");
    kv_strs(&m, "tokenizer.ggml.tokens", toks, 5);
    kv_strs(&m, "tokenizer.ggml.merges", merges, 2);
    CHECK_EQ_INT(from_mini(&m, &t, err, sizeof err), SW_EUNSUPPORTED);
    CHECK(strstr(err, "no-such-pre") != NULL);
    /* a malformed merge is ignored, like llama.cpp */
    kv_str(&m, "tokenizer.ggml.model", "gpt2");
    kv_str(&m, "tokenizer.ggml.pre", "gpt-2");
    kv_strs(&m, "tokenizer.ggml.tokens", toks, 5);
    kv_strs(&m, "tokenizer.ggml.merges", merges, 2);
    CHECK_EQ_INT(from_mini(&m, &t, err, sizeof err), 0);
    sw_tok_free(t);
}

int main(void)
{
    SW_RUN(test_spm);
    SW_RUN(test_stream);
    SW_RUN(test_bpe);
    SW_RUN(test_wpm);
    SW_RUN(test_regex);
    SW_RUN(test_unicode);
    SW_RUN(test_bad_vocab);
    SW_RUN(test_gguf_metadata);
    return SW_TEST_DONE();
}
