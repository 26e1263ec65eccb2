/* fuzz_tokenizer.c — tokenizing arbitrary bytes must never crash, and byte-level BPE must
 * give back valid UTF-8 input exactly. Input: byte 0 picks the tokenizer and flags, the
 * rest is the text. Tokenizers: tiny in-memory SPM and BPE vocabularies built here (the
 * BPE one under every pre-tokenizer), plus llama.cpp's llama-spm and gpt-2 fixtures when
 * the shared data folder is found ($SW_SHARED_DATA, else next to the source tree).
 * Mode byte 0xFF instead feeds the rest to the sampler-state parser, which reads bytes a
 * remote peer sends; 0xFE treats the rest as a GGUF file whose tokenizer.* metadata is
 * loaded and used (whatever the reader accepts must not crash the tokenizer). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "infer/tok.h"
#include "infer/tok_impl.h"

static const char *const pres[] = { "default", "gpt-2", "llama-bpe", "qwen2", "deepseek-llm", "deepseek-coder",
                                    "falcon", "starcoder", "poro-chat", "viking", "tekken", "gpt-4o",
                                    "deepseek-v3" };
#define N_PRE (sizeof pres / sizeof pres[0])

static struct sw_tok *tiny_spm, *tiny_wpm, *tiny_bpe[N_PRE], *real_spm, *real_bpe;
static int ready;

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

static struct sw_tok *load_real(const char *name)
{
    const char *dir = getenv("SW_SHARED_DATA");
    char path[4096];
    if (dir && *dir) {
        snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", dir, name);
    } else {
        /* __FILE__ is .../fuzz/fuzz_tokenizer.c in the source tree; shared/ sits beside it */
        snprintf(path, sizeof path, "%s", __FILE__);
        char *slash = strrchr(path, '/');
        if (!slash) return NULL;
        *slash = 0;
        size_t l = strlen(path);
        snprintf(path + l, sizeof path - l, "/../../shared/data/vocab/ggml-vocab-%s.gguf", name);
    }
    struct sw_gguf *g = NULL;
    struct sw_tok *t = NULL;
    if (sw_gguf_open(path, &g, NULL, 0) == 0) {
        sw_tok_from_gguf(g, &t, NULL, 0);
        sw_gguf_close(g);
    }
    return t;
}

static void setup(void)
{
    ready = 1;
    static char bytes[256][8], bchars[256][3];
    const char *toks[300];
    int32_t types[300];
    float scores[300];
    uint32_t n = 0;
    toks[n] = "<unk>"; types[n] = SW_TOKTYPE_UNKNOWN; scores[n++] = 0;
    toks[n] = "<s>"; types[n] = SW_TOKTYPE_CONTROL; scores[n++] = 0;
    toks[n] = "</s>"; types[n] = SW_TOKTYPE_CONTROL; scores[n++] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        toks[n] = bytes[b]; types[n] = SW_TOKTYPE_BYTE; scores[n++] = 0;
    }
    const char *words[] = { "\xE2\x96\x81", "a", "b", "\xE2\x96\x81" "a", "ab", "\xE2\x96\x81" "ab", "<u>" };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        toks[n] = words[i];
        types[n] = i + 1 == sizeof words / sizeof words[0] ? SW_TOKTYPE_USER_DEFINED : SW_TOKTYPE_NORMAL;
        scores[n++] = -(float)i;
    }
    struct sw_tok_desc d = { 0 };
    d.model = "llama";
    d.n_tokens = n;
    d.tokens = toks;
    d.types = types;
    d.scores = scores;
    d.bos_id = 1; d.eos_id = 2; d.unk_id = 0; d.pad_id = -1;
    d.add_bos = d.add_eos = d.add_space_prefix = -1;
    if (sw_tok_new(&d, &tiny_spm, NULL, 0)) abort();
    d.model = "bert"; /* the same texts as a WordPiece vocabulary */
    if (sw_tok_new(&d, &tiny_wpm, NULL, 0)) abort();

    n = 0;
    for (int b = 0; b < 256; b++) {
        byte_char(b, bchars[b]);
        toks[n] = bchars[b];
        types[n++] = SW_TOKTYPE_NORMAL;
    }
    toks[n] = "ab"; types[n++] = SW_TOKTYPE_NORMAL;
    toks[n] = "\xC4\xA0" "ab"; types[n++] = SW_TOKTYPE_NORMAL;
    toks[n] = "bb"; types[n++] = SW_TOKTYPE_NORMAL;
    toks[n] = "\xC4\xA0\xC4\xA0"; types[n++] = SW_TOKTYPE_NORMAL;
    toks[n] = "<|eot|>"; types[n++] = SW_TOKTYPE_CONTROL;
    /* every merge result is a token, as in real vocabularies (else its bytes are lost) */
    const char *merges[] = { "a b", "\xC4\xA0 ab", "b b", "\xC4\xA0 \xC4\xA0" };
    memset(&d, 0, sizeof d);
    d.model = "gpt2";
    d.n_tokens = n;
    d.tokens = toks;
    d.types = types;
    d.n_merges = 4;
    d.merges = merges;
    d.bos_id = d.eos_id = (int32_t)n - 1;
    d.unk_id = d.pad_id = -1;
    d.add_bos = d.add_eos = d.add_space_prefix = -1;
    for (size_t i = 0; i < N_PRE; i++) {
        d.pre = pres[i];
        if (sw_tok_new(&d, &tiny_bpe[i], NULL, 0)) abort();
    }
    real_spm = load_real("llama-spm");
    real_bpe = load_real("gpt-2");
}

static int valid_utf8(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = sw__utf8_decode(p + i, n - i, &cp);
        if (cp == 0xFFFD && l == 1) return 0; /* malformed (a real U+FFFD takes 3 bytes) */
        /* reject the lenient forms the decoder passes (overlong, surrogates) */
        if ((l == 2 && cp < 0x80) || (l == 3 && cp < 0x800) || (l == 4 && cp < 0x10000) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += l;
    }
    return 1;
}

static void fuzz_sampler(const uint8_t *p, size_t n)
{
    struct sw_sampler *s = NULL;
    if (sw_sampler_load(p, n, 16, &s) == 0) {
        float logits[16];
        for (int i = 0; i < 16; i++) logits[i] = (float)(i % 5) - 2.0f;
        for (int i = 0; i < 8; i++) {
            int32_t id = sw_sampler_sample(s, logits);
            if (id < 0 || id >= 16) abort();
        }
        struct sw_buf b = { 0 };
        if (sw_sampler_save(s, &b)) abort();
        sw_buf_free(&b);
        sw_sampler_free(s);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready) setup();
    if (size < 1) return 0;
    if (size > 65536) size = 65536;
    uint8_t mode = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (mode == 0xFF) {
        fuzz_sampler(data + 1, len);
        return 0;
    }
    if (mode == 0xFE) {
        struct sw_gguf *g = NULL;
        struct sw_tok *gt = NULL;
        if (sw_gguf_open_mem(data + 1, len, &g, NULL, 0) == 0) {
            if (sw_tok_from_gguf(g, &gt, NULL, 0) == 0) {
                sw_gguf_close(g); /* the tokenizer must not borrow from the file */
                g = NULL;
                static const char sample[] = "Hello <s>world</s> \xC3\xA9\xE4\xB8\xAD 123 <|im_end|>\n\t x";
                int32_t *ids = NULL;
                size_t n = 0;
                if (sw_tok_encode(gt, sample, sizeof sample - 1, SW_TOK_ADD_BOS | SW_TOK_PARSE_SPECIAL, &ids, &n))
                    abort();
                struct sw_buf out = { 0 };
                sw_tok_decode(gt, ids, n, SW_TOK_DECODE_SPECIAL, &out);
                for (uint32_t id = 0; id < sw_tok_n_vocab(gt) && id < 64; id++) {
                    char piece[64];
                    (void)sw_tok_piece(gt, (int32_t)id, SW_TOK_DECODE_SPECIAL, piece, sizeof piece);
                }
                (void)sw_chat_detect(sw_tok_chat_template(gt));
                sw_buf_free(&out);
                free(ids);
                sw_tok_free(gt);
            }
            sw_gguf_close(g);
        }
        return 0;
    }
    unsigned flags = (mode & 1 ? SW_TOK_ADD_BOS : 0) | (mode & 2 ? SW_TOK_PARSE_SPECIAL : 0) |
                     (mode & 4 ? SW_TOK_ADD_EOS : 0);
    unsigned which = (mode >> 3) % (N_PRE + 4);
    struct sw_tok *t = which < N_PRE ? tiny_bpe[which] : which == N_PRE ? tiny_spm
                     : which == N_PRE + 1 ? real_spm : which == N_PRE + 2 ? real_bpe : tiny_wpm;
    if (!t) t = tiny_spm;
    int32_t *ids = NULL;
    size_t n = 0;
    if (sw_tok_encode(t, text, len, flags, &ids, &n)) abort();
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= sw_tok_n_vocab(t)) abort();
    struct sw_buf out = { 0 };
    if (sw_tok_decode(t, ids, n, mode & 0x80 ? SW_TOK_DECODE_SPECIAL : 0, &out)) abort();
    /* byte-level BPE (the tiny vocabularies hold every byte) is lossless on valid UTF-8
     * (BOS/EOS show up in the text only when control tokens are rendered) */
    if (which < N_PRE && !(flags & SW_TOK_PARSE_SPECIAL) && !(mode & 0x80) &&
        valid_utf8((const uint8_t *)text, len) &&
        (out.len != len || (len && memcmp(out.data, text, len))))
        abort();
    /* streaming gives the same bytes as decoding at once */
    struct sw_tok_stream st;
    struct sw_buf out2 = { 0 };
    sw_tok_stream_init(&st, t, mode & 0x80 ? SW_TOK_DECODE_SPECIAL : 0, 1);
    for (size_t i = 0; i < n; i++) sw_tok_stream_push(&st, ids[i], &out2);
    sw_tok_stream_flush(&st, &out2);
    if (out2.len != out.len || (out.len && memcmp(out.data, out2.data, out.len))) abort();
    sw_buf_free(&out);
    sw_buf_free(&out2);
    free(ids);
    return 0;
}
