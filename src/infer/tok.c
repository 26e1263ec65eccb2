/* tok.c — the tokenizer: vocabulary loading (GGUF tokenizer.* keys or an in-memory
 * description), special-token partitioning, SentencePiece-style BPE by score (`llama`),
 * GPT-2 byte-level BPE by merge rank (`gpt2`), and detokenization. The algorithms follow
 * the semantics of llama.cpp's tokenizers (llama-vocab.cpp) so that ids match the ones
 * llama.cpp and the Hugging Face tokenizers produce; the code is our own.
 * WordPiece (`bert`) is there for embedding vocabularies. Not for: Unigram (t5), RWKV. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tok.h"
#include "tok_impl.h"

#define ATTR_LSTRIP 1u
#define ATTR_RSTRIP 2u
#define MAX_PRE_REGEX 8

struct sw_tok {
    enum sw_tok_model model;
    char pre[48];
    uint32_t n_vocab;
    char *blob;          /* token texts, each followed by a NUL */
    size_t *off;         /* n_vocab + 1 offsets into blob (text i ends at off[i+1] - 1) */
    float *scores;
    uint8_t *types;      /* enum sw_tok_type */
    uint8_t *attr;       /* ATTR_* */
    uint32_t *ht;        /* text -> id + 1 (0 empty), open addressing */
    size_t ht_mask;

    uint32_t n_merges;
    char *mblob;         /* merge i: left text, NUL, right text, NUL */
    size_t *moff;        /* n_merges offsets */
    uint32_t *mlen;      /* n_merges: left length << 16 | right length */
    uint32_t *mht;       /* (left, right) -> rank + 1 */
    size_t mht_mask;

    int32_t bos, eos, eot, unk, pad;
    int add_bos, add_eos, add_space_prefix, ignore_merges;
    size_t max_token_len;   /* bytes (WordPiece's longest-match window) */
    int16_t cp_byte[0x144]; /* byte-level alphabet code point -> byte, -1 outside it */
    uint8_t byte_utf8[256][3]; /* byte -> UTF-8 of its alphabet code point; [2] = length */
    int32_t byte_tok[256];  /* SPM byte-fallback token of each byte (-1 none) */
    int32_t *special;       /* control / user-defined / unknown tokens, longest first */
    uint32_t n_special;
    uint32_t bucket[257];   /* special_by_byte[bucket[b] .. bucket[b+1]) start with byte b */
    uint32_t *special_by_byte;
    int32_t eog[16];
    uint32_t n_eog;
    struct sw__re *re[MAX_PRE_REGEX];
    uint32_t n_re;
    char *chat_template;
};

/* GPT-2 byte-level alphabet: each byte maps to a printable code point (< 0x144). */
static uint32_t byte_to_cp(uint8_t b)
{
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE)) return b;
    /* The other 68 bytes take 256, 257, ... in increasing byte order. */
    uint32_t n = 0;
    for (uint32_t c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE))) n++;
    return 256 + n;
}

/* ------------------------------------------------------------------ hashing */

static uint64_t hash_bytes(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_pair(const char *l, size_t ll, const char *r, size_t rl)
{
    uint64_t h = hash_bytes(l, ll) * 0x9E3779B97F4A7C15ull;
    h ^= hash_bytes(r, rl) + 0x632BE59BD9B4E019ull + (h << 6) + (h >> 2);
    return h;
}

static inline const char *tok_text(const struct sw_tok *t, uint32_t id, size_t *len)
{
    *len = t->off[id + 1] - t->off[id] - 1;
    return t->blob + t->off[id];
}

int32_t sw_tok_find(const struct sw_tok *t, const char *s, size_t len)
{
    if (!t || !t->ht || (!s && len)) return -1;
    size_t slot = hash_bytes(s, len) & t->ht_mask;
    for (;;) {
        uint32_t v = t->ht[slot];
        if (!v) return -1;
        size_t tl;
        const char *tt = tok_text(t, v - 1, &tl);
        if (tl == len && !memcmp(tt, s, len)) return (int32_t)(v - 1);
        slot = (slot + 1) & t->ht_mask;
    }
}

static int merge_rank(const struct sw_tok *t, const char *l, size_t ll, const char *r, size_t rl)
{
    if (!t->mht) return -1;
    size_t slot = hash_pair(l, ll, r, rl) & t->mht_mask;
    for (;;) {
        uint32_t v = t->mht[slot];
        if (!v) return -1;
        uint32_t i = v - 1;
        const char *ml = t->mblob + t->moff[i];
        size_t mll = t->mlen[i] >> 16, mrl = t->mlen[i] & 0xFFFF;
        if (mll == ll && mrl == rl && !memcmp(ml, l, ll) && !memcmp(ml + ll + 1, r, rl)) return (int)i;
        slot = (slot + 1) & t->mht_mask;
    }
}

/* ------------------------------------------------------------------ building */

/* A vocabulary source, whether from GGUF or a description: all borrowed. */
struct src {
    const char *model, *pre;
    uint32_t n_tokens;
    const char **texts;
    const uint32_t *lens;
    const float *scores;      /* may be NULL */
    const int32_t *types;     /* may be NULL */
    uint32_t n_merges;
    const char **merges;
    const uint32_t *merge_lens;
    int32_t bos, eos, eot, unk, pad;
    int add_bos, add_eos, add_space_prefix;
    const char *chat_template;
    size_t chat_template_len;
    const char *name;         /* general.name, for per-model token attributes */
};

void sw_tok_free(struct sw_tok *t)
{
    if (!t) return;
    free(t->blob);
    free(t->off);
    free(t->scores);
    free(t->types);
    free(t->attr);
    free(t->ht);
    free(t->mblob);
    free(t->moff);
    free(t->mlen);
    free(t->mht);
    free(t->special);
    free(t->special_by_byte);
    for (uint32_t i = 0; i < t->n_re; i++) sw__re_free(t->re[i]);
    free(t->chat_template);
    free(t);
}

static size_t table_size(size_t n)
{
    size_t s = 16;
    while (s < n * 2) s <<= 1;
    return s;
}

/* Longest text first, then lower id (qsort_r context: the tokenizer). */
static int cmp_special(const void *a, const void *b, void *ctx)
{
    const struct sw_tok *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    size_t lx = t->off[x + 1] - t->off[x], ly = t->off[y + 1] - t->off[y];
    if (lx != ly) return lx > ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int contains_ci(const char *hay, const char *needle)
{
    if (!hay) return 0;
    size_t nl = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (!strncasecmp(p, needle, nl)) return 1;
    return 0;
}

static int build(const struct src *s, struct sw_tok **out, char *err, size_t err_len)
{
    *out = NULL;
    struct sw_tok *t = calloc(1, sizeof *t);
    if (!t) return SW_ENOMEM;
    int rc = SW_ENOMEM;

    if (!s->model) { sw_errf(err, err_len, 0, "tokenizer.ggml.model missing"); rc = SW_ENOTFOUND; goto fail; }
    if (!strcmp(s->model, "llama")) t->model = SW_TOK_MODEL_SPM;
    else if (!strcmp(s->model, "gpt2")) t->model = SW_TOK_MODEL_BPE;
    else if (!strcmp(s->model, "bert")) t->model = SW_TOK_MODEL_WPM;
    else {
        sw_errf(err, err_len, 0, "tokenizer.ggml.model '%s' is not supported (only 'llama', 'gpt2' and 'bert')",
                s->model);
        rc = SW_EUNSUPPORTED;
        goto fail;
    }
    if (s->n_tokens == 0) { sw_errf(err, err_len, 0, "tokenizer.ggml.tokens is empty"); rc = SW_ECORRUPT; goto fail; }
    if (s->n_tokens > SW_TOK_MAX_VOCAB) {
        sw_errf(err, err_len, 0, "tokenizer.ggml.tokens: %u tokens exceed the cap of %u", s->n_tokens, SW_TOK_MAX_VOCAB);
        rc = SW_ETOOBIG;
        goto fail;
    }
    t->n_vocab = s->n_tokens;

    /* token texts */
    size_t total = 0;
    for (uint32_t i = 0; i < s->n_tokens; i++) {
        if (s->lens[i] > SW_TOK_MAX_TOKEN_BYTES) {
            sw_errf(err, err_len, 0, "tokenizer.ggml.tokens[%u]: %u bytes exceed the cap of %u", i, s->lens[i],
                    SW_TOK_MAX_TOKEN_BYTES);
            rc = SW_ETOOBIG;
            goto fail;
        }
        total += (size_t)s->lens[i] + 1;
    }
    t->blob = malloc(total);
    t->off = malloc(((size_t)s->n_tokens + 1) * sizeof *t->off);
    t->scores = calloc(s->n_tokens, sizeof *t->scores);
    t->types = malloc(s->n_tokens);
    t->attr = calloc(s->n_tokens, 1);
    t->ht_mask = table_size(s->n_tokens) - 1;
    t->ht = calloc(t->ht_mask + 1, sizeof *t->ht);
    if (!t->blob || !t->off || !t->scores || !t->types || !t->attr || !t->ht) goto fail;
    size_t o = 0;
    for (uint32_t i = 0; i < s->n_tokens; i++) {
        t->off[i] = o;
        if (s->lens[i]) memcpy(t->blob + o, s->texts[i], s->lens[i]);
        o += s->lens[i];
        if (s->lens[i] > t->max_token_len) t->max_token_len = s->lens[i];
        t->blob[o++] = 0;
        if (s->scores) t->scores[i] = s->scores[i];
        int ty = s->types ? s->types[i] : SW_TOKTYPE_NORMAL;
        t->types[i] = (uint8_t)(ty >= 0 && ty <= SW_TOKTYPE_BYTE ? ty : SW_TOKTYPE_UNDEFINED);
    }
    t->off[s->n_tokens] = o;
    for (uint32_t i = 0; i < s->n_tokens; i++) {
        size_t len;
        const char *tx = tok_text(t, i, &len);
        if (!len) continue; /* an empty token can never be produced from text */
        size_t slot = hash_bytes(tx, len) & t->ht_mask;
        for (;;) {
            uint32_t v = t->ht[slot];
            if (!v) { t->ht[slot] = i + 1; break; }
            size_t ol;
            const char *ot = tok_text(t, v - 1, &ol);
            if (ol == len && !memcmp(ot, tx, len)) { t->ht[slot] = i + 1; break; } /* last wins */
            slot = (slot + 1) & t->ht_mask;
        }
    }

    /* merges */
    if (t->model == SW_TOK_MODEL_BPE) {
        if (s->n_merges > SW_TOK_MAX_MERGES) {
            sw_errf(err, err_len, 0, "tokenizer.ggml.merges: %u merges exceed the cap of %u", s->n_merges, SW_TOK_MAX_MERGES);
            rc = SW_ETOOBIG;
            goto fail;
        }
        size_t mtotal = 0;
        for (uint32_t i = 0; i < s->n_merges; i++) mtotal += (size_t)s->merge_lens[i] + 2;
        t->n_merges = s->n_merges;
        t->mblob = malloc(mtotal + 1);
        t->moff = malloc(((size_t)s->n_merges + 1) * sizeof *t->moff);
        t->mlen = malloc(((size_t)s->n_merges + 1) * sizeof *t->mlen);
        t->mht_mask = table_size(s->n_merges) - 1;
        t->mht = calloc(t->mht_mask + 1, sizeof *t->mht);
        if (!t->mblob || !t->moff || !t->mlen || !t->mht) goto fail;
        size_t mo = 0;
        for (uint32_t i = 0; i < s->n_merges; i++) {
            const char *m = s->merges[i];
            size_t ml = s->merge_lens[i];
            /* "left right": the separator is the first space after the first byte (a
             * left part may itself start with a space-like character). */
            const char *sp = ml > 1 ? memchr(m + 1, ' ', ml - 1) : NULL;
            size_t ll = sp ? (size_t)(sp - m) : 0, rl = sp ? ml - ll - 1 : 0;
            if (!sp || ll > 0xFFFF || rl > 0xFFFF) {
                /* Like llama.cpp: a malformed merge is kept as an empty pair that never matches. */
                ll = rl = 0;
            }
            t->moff[i] = mo;
            t->mlen[i] = (uint32_t)(ll << 16 | rl);
            if (ll) memcpy(t->mblob + mo, m, ll);
            t->mblob[mo + ll] = 0;
            if (rl) memcpy(t->mblob + mo + ll + 1, sp + 1, rl);
            t->mblob[mo + ll + 1 + rl] = 0;
            mo += ll + rl + 2;
            if (!ll || !rl) continue;
            size_t slot = hash_pair(m, ll, sp + 1, rl) & t->mht_mask;
            for (;;) {
                uint32_t v = t->mht[slot];
                if (!v) { t->mht[slot] = i + 1; break; }
                uint32_t j = v - 1;
                if ((t->mlen[j] >> 16) == ll && (t->mlen[j] & 0xFFFF) == rl &&
                    !memcmp(t->mblob + t->moff[j], m, ll) &&
                    !memcmp(t->mblob + t->moff[j] + ll + 1, sp + 1, rl))
                    break; /* duplicate pair: the first (lowest) rank stays */
                slot = (slot + 1) & t->mht_mask;
            }
        }
    }

    /* special ids and flags */
    t->bos = s->bos; t->eos = s->eos; t->unk = s->unk; t->pad = s->pad; t->eot = s->eot;
    int32_t *ids[] = { &t->bos, &t->eos, &t->unk, &t->pad, &t->eot };
    for (size_t i = 0; i < SW_ARRAY_LEN(ids); i++)
        if (*ids[i] >= (int32_t)t->n_vocab || *ids[i] < -1) *ids[i] = -1;
    int spm = t->model == SW_TOK_MODEL_SPM, wpm = t->model == SW_TOK_MODEL_WPM;
    /* WordPiece: BOS/EOS are [CLS]/[SEP], both added; every word gets a U+2581 prefix. */
    t->add_bos = s->add_bos >= 0 ? !!s->add_bos : spm || wpm;
    t->add_eos = s->add_eos >= 0 ? !!s->add_eos : wpm;
    t->add_space_prefix = wpm ? 1 : s->add_space_prefix >= 0 ? !!s->add_space_prefix : spm;

    for (size_t c = 0; c < SW_ARRAY_LEN(t->cp_byte); c++) t->cp_byte[c] = -1;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = byte_to_cp((uint8_t)b);
        uint8_t u[4];
        t->cp_byte[cp] = (int16_t)b;
        t->byte_utf8[b][2] = (uint8_t)sw__utf8_encode(cp, u);
        memcpy(t->byte_utf8[b], u, t->byte_utf8[b][2]);
    }

    /* SPM byte fallback tokens "<0xXX>" */
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_tok[b] = sw_tok_find(t, name, 6);
        if (t->byte_tok[b] < 0) {
            char one = (char)b;
            t->byte_tok[b] = sw_tok_find(t, &one, 1);
        }
    }

    /* end-of-turn / end-of-generation tokens */
    static const char *const eog_names[] = { "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                             "<|endoftext|>", "<|eom_id|>", "<EOT>", "<|end_of_text|>",
                                             ("<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>") };
    if (t->eot < 0) {
        for (size_t i = 0; i < 4 && t->eot < 0; i++) {
            int32_t id = sw_tok_find(t, eog_names[i], strlen(eog_names[i]));
            if (id >= 0 && t->types[id] != SW_TOKTYPE_NORMAL) t->eot = id;
        }
    }
    if (t->eos >= 0) t->eog[t->n_eog++] = t->eos;
    if (t->eot >= 0 && t->eot != t->eos) t->eog[t->n_eog++] = t->eot;
    for (size_t i = 0; i < SW_ARRAY_LEN(eog_names); i++) {
        int32_t id = sw_tok_find(t, eog_names[i], strlen(eog_names[i]));
        if (id < 0 || t->types[id] == SW_TOKTYPE_NORMAL) continue;
        int dup = 0;
        for (uint32_t k = 0; k < t->n_eog; k++) dup |= t->eog[k] == id;
        if (!dup && t->n_eog < SW_ARRAY_LEN(t->eog)) t->eog[t->n_eog++] = id;
    }

    /* special tokens matched in text, longest first (as llama.cpp partitions) */
    uint32_t n_sp = 0;
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        uint8_t ty = t->types[i];
        if ((ty == SW_TOKTYPE_CONTROL || ty == SW_TOKTYPE_USER_DEFINED || ty == SW_TOKTYPE_UNKNOWN) &&
            t->off[i + 1] - t->off[i] > 1)
            n_sp++;
    }
    if (n_sp) {
        t->special = malloc(n_sp * sizeof *t->special);
        t->special_by_byte = malloc(n_sp * sizeof *t->special_by_byte);
        if (!t->special || !t->special_by_byte) goto fail;
        n_sp = 0;
        for (uint32_t i = 0; i < t->n_vocab; i++) {
            uint8_t ty = t->types[i];
            if ((ty == SW_TOKTYPE_CONTROL || ty == SW_TOKTYPE_USER_DEFINED || ty == SW_TOKTYPE_UNKNOWN) &&
                t->off[i + 1] - t->off[i] > 1)
                t->special[n_sp++] = (int32_t)i;
        }
        qsort_r(t->special, n_sp, sizeof *t->special, cmp_special, t);
        t->n_special = n_sp;
        uint32_t count[256] = { 0 };
        for (uint32_t k = 0; k < n_sp; k++) count[(uint8_t)t->blob[t->off[t->special[k]]]]++;
        t->bucket[0] = 0;
        for (int b = 0; b < 256; b++) t->bucket[b + 1] = t->bucket[b] + count[b];
        uint32_t fill[256];
        memcpy(fill, t->bucket, sizeof fill);
        for (uint32_t k = 0; k < n_sp; k++)
            t->special_by_byte[fill[(uint8_t)t->blob[t->off[t->special[k]]]]++] = k;
    }

    /* Phi-3: the text after its special tokens loses leading whitespace (rstrip), as in
     * its tokenizer.json added_tokens; llama.cpp keys this on the model name. */
    if (contains_ci(s->name, "phi-3") || contains_ci(s->name, "phi3")) {
        for (uint32_t k = 0; k < t->n_special; k++) t->attr[t->special[k]] |= ATTR_RSTRIP;
        static const char *const keep[] = { "<unk>", "<s>", "<|endoftext|>" };
        for (size_t i = 0; i < SW_ARRAY_LEN(keep); i++) {
            int32_t id = sw_tok_find(t, keep[i], strlen(keep[i]));
            if (id >= 0) t->attr[id] &= (uint8_t)~ATTR_RSTRIP;
        }
        int32_t id = sw_tok_find(t, "</s>", 4);
        if (id >= 0) t->attr[id] |= ATTR_RSTRIP;
    }

    /* pre-tokenizer */
    const char *pre = s->pre && *s->pre ? s->pre : "default";
    snprintf(t->pre, sizeof t->pre, "%s", pre);
    if (t->model == SW_TOK_MODEL_BPE) {
        if (!s->pre || !*s->pre)
            sw_log(SW_LOG_WARN, "TOK", "tokenizer.ggml.pre missing: using the default pre-tokenizer; "
                                       "ids may differ from the model's own tokenizer");
        int pre_bos = 0;
        const char *const *rx = sw__pre_lookup(pre, &t->ignore_merges, &pre_bos);
        if (s->add_bos < 0 && pre_bos) t->add_bos = 1;
        if (!rx) {
            sw_errf(err, err_len, 0, "tokenizer.ggml.pre '%s' is not a supported pre-tokenizer", pre);
            rc = SW_EUNSUPPORTED;
            goto fail;
        }
        for (; *rx; rx++) {
            if (t->n_re >= MAX_PRE_REGEX) { rc = SW_EINVAL; goto fail; }
            char rerr[256];
            rc = sw__re_compile(*rx, &t->re[t->n_re], rerr, sizeof rerr);
            if (rc) { sw_errf(err, err_len, 0, "pre-tokenizer '%s': %s", pre, rerr); goto fail; }
            t->n_re++;
        }
    }

    if (s->chat_template) {
        t->chat_template = malloc(s->chat_template_len + 1);
        if (!t->chat_template) goto fail;
        memcpy(t->chat_template, s->chat_template, s->chat_template_len);
        t->chat_template[s->chat_template_len] = 0;
    }
    *out = t;
    return 0;
fail:
    if (rc == SW_ENOMEM) sw_errf(err, err_len, 0, "out of memory building the tokenizer");
    sw_tok_free(t);
    return rc;
}

int sw_tok_new(const struct sw_tok_desc *d, struct sw_tok **out, char *err, size_t err_len)
{
    *out = NULL;
    if (!d || !d->tokens || !d->n_tokens) { sw_errf(err, err_len, 0, "no tokens"); return SW_EINVAL; }
    if (d->n_tokens > SW_TOK_MAX_VOCAB || d->n_merges > SW_TOK_MAX_MERGES) {
        sw_errf(err, err_len, 0, "vocabulary too large");
        return SW_ETOOBIG;
    }
    struct src s = { 0 };
    uint32_t *lens = malloc((size_t)d->n_tokens * sizeof *lens);
    uint32_t *mlens = malloc(((size_t)d->n_merges + 1) * sizeof *mlens);
    if (!lens || !mlens) { free(lens); free(mlens); return SW_ENOMEM; }
    for (uint32_t i = 0; i < d->n_tokens; i++) {
        if (!d->tokens[i]) { lens[i] = 0; continue; }
        size_t l = d->token_lens ? d->token_lens[i] : strlen(d->tokens[i]);
        lens[i] = l > SW_TOK_MAX_TOKEN_BYTES ? SW_TOK_MAX_TOKEN_BYTES + 1 : (uint32_t)l;
    }
    for (uint32_t i = 0; i < d->n_merges; i++) {
        size_t l = d->merges && d->merges[i] ? strlen(d->merges[i]) : 0;
        mlens[i] = l > 0x1FFFF ? 0 : (uint32_t)l;
    }
    static const char empty[] = "";
    const char **texts = malloc((size_t)d->n_tokens * sizeof *texts);
    const char **merges = malloc(((size_t)d->n_merges + 1) * sizeof *merges);
    if (!texts || !merges) { free(lens); free(mlens); free(texts); free(merges); return SW_ENOMEM; }
    for (uint32_t i = 0; i < d->n_tokens; i++) texts[i] = d->tokens[i] ? d->tokens[i] : empty;
    for (uint32_t i = 0; i < d->n_merges; i++) merges[i] = d->merges && d->merges[i] ? d->merges[i] : empty;
    s.model = d->model;
    s.pre = d->pre;
    s.n_tokens = d->n_tokens;
    s.texts = texts;
    s.lens = lens;
    s.scores = d->scores;
    s.types = d->types;
    s.n_merges = d->n_merges;
    s.merges = merges;
    s.merge_lens = mlens;
    s.bos = d->bos_id; s.eos = d->eos_id; s.unk = d->unk_id; s.pad = d->pad_id; s.eot = -1;
    s.add_bos = d->add_bos; s.add_eos = d->add_eos; s.add_space_prefix = d->add_space_prefix;
    s.chat_template = d->chat_template;
    s.chat_template_len = d->chat_template ? strlen(d->chat_template) : 0;
    int rc = build(&s, out, err, err_len);
    free(lens);
    free(mlens);
    free(texts);
    free(merges);
    return rc;
}

/* Reads an optional integer id key: -1 when absent. */
static int gguf_id(const struct sw_gguf *g, const char *key, int32_t *out, char *err, size_t err_len)
{
    int64_t v;
    int rc = sw_gguf_get_i64(g, key, &v);
    if (rc == SW_ENOTFOUND) { *out = -1; return 0; }
    if (rc) { sw_errf(err, err_len, 0, "%s: not an integer", key); return SW_ECORRUPT; }
    *out = v < 0 || v > INT32_MAX ? -1 : (int32_t)v;
    return 0;
}

static int gguf_flag(const struct sw_gguf *g, const char *key, int *out)
{
    int v;
    if (sw_gguf_get_bool(g, key, &v) == 0) *out = !!v;
    else *out = -1;
    return 0;
}

int sw_tok_from_gguf(const struct sw_gguf *g, struct sw_tok **out, char *err, size_t err_len)
{
    *out = NULL;
    struct sw_gguf_str model, pre, tmpl, name;
    struct sw_gguf_arr toks, scores, types, merges;
    char model_s[64], pre_s[64];
    if (sw_gguf_get_str(g, "tokenizer.ggml.model", &model)) {
        sw_errf(err, err_len, 0, "tokenizer.ggml.model: missing (the file has no tokenizer)");
        return SW_ENOTFOUND;
    }
    snprintf(model_s, sizeof model_s, "%.*s", (int)SW_MIN(model.len, 63), model.ptr);
    int have_pre = sw_gguf_get_str(g, "tokenizer.ggml.pre", &pre) == 0;
    if (have_pre) snprintf(pre_s, sizeof pre_s, "%.*s", (int)SW_MIN(pre.len, 63), pre.ptr);
    if (sw_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks)) {
        sw_errf(err, err_len, 0, "tokenizer.ggml.tokens: missing");
        return SW_ENOTFOUND;
    }
    if (toks.elem_type != SW_GGUF_STRING) {
        sw_errf(err, err_len, 0, "tokenizer.ggml.tokens: not an array of strings");
        return SW_ECORRUPT;
    }
    if (toks.n == 0 || toks.n > SW_TOK_MAX_VOCAB) {
        sw_errf(err, err_len, 0, "tokenizer.ggml.tokens: %llu tokens (must be 1..%u)", (unsigned long long)toks.n,
                SW_TOK_MAX_VOCAB);
        return toks.n ? SW_ETOOBIG : SW_ECORRUPT;
    }
    uint32_t n = (uint32_t)toks.n;
    int have_scores = sw_gguf_get_arr(g, "tokenizer.ggml.scores", &scores) == 0;
    int have_types = sw_gguf_get_arr(g, "tokenizer.ggml.token_type", &types) == 0;
    int have_merges = sw_gguf_get_arr(g, "tokenizer.ggml.merges", &merges) == 0;
    if (have_scores && (scores.n != n || scores.elem_type != SW_GGUF_F32)) {
        sw_errf(err, err_len, 0, "tokenizer.ggml.scores: %llu values of type %u for %u tokens (want f32 each)",
                (unsigned long long)scores.n, scores.elem_type, n);
        return SW_ECORRUPT;
    }
    if (have_types && types.n != n) {
        sw_errf(err, err_len, 0, "tokenizer.ggml.token_type: %llu values for %u tokens", (unsigned long long)types.n, n);
        return SW_ECORRUPT;
    }
    if (have_merges && merges.elem_type != SW_GGUF_STRING) {
        sw_errf(err, err_len, 0, "tokenizer.ggml.merges: not an array of strings");
        return SW_ECORRUPT;
    }
    if (have_merges && merges.n > SW_TOK_MAX_MERGES) {
        sw_errf(err, err_len, 0, "tokenizer.ggml.merges: %llu merges exceed the cap of %u",
                (unsigned long long)merges.n, SW_TOK_MAX_MERGES);
        return SW_ETOOBIG;
    }
    uint32_t n_merges = have_merges ? (uint32_t)merges.n : 0;
    if (!strcmp(model_s, "gpt2") && !have_merges) {
        sw_errf(err, err_len, 0, "tokenizer.ggml.merges: missing (required for a gpt2 tokenizer)");
        return SW_ENOTFOUND;
    }

    int rc = SW_ENOMEM;
    const char **texts = malloc((size_t)n * sizeof *texts);
    uint32_t *lens = malloc((size_t)n * sizeof *lens);
    float *sc = have_scores ? malloc((size_t)n * sizeof *sc) : NULL;
    int32_t *ty = have_types ? malloc((size_t)n * sizeof *ty) : NULL;
    const char **mt = malloc(((size_t)n_merges + 1) * sizeof *mt);
    uint32_t *ml = malloc(((size_t)n_merges + 1) * sizeof *ml);
    if (!texts || !lens || (have_scores && !sc) || (have_types && !ty) || !mt || !ml) goto done;
    for (uint32_t i = 0; i < n; i++) {
        struct sw_gguf_str s;
        if (sw_gguf_arr_str(&toks, i, &s)) {
            sw_errf(err, err_len, 0, "tokenizer.ggml.tokens[%u]: unreadable", i);
            rc = SW_ECORRUPT;
            goto done;
        }
        if (s.len > SW_TOK_MAX_TOKEN_BYTES) {
            sw_errf(err, err_len, 0, "tokenizer.ggml.tokens[%u]: %llu bytes exceed the cap of %u", i,
                    (unsigned long long)s.len, SW_TOK_MAX_TOKEN_BYTES);
            rc = SW_ETOOBIG;
            goto done;
        }
        texts[i] = s.ptr;
        lens[i] = (uint32_t)s.len;
        if (sc && sw_gguf_arr_f32(&scores, i, &sc[i])) {
            sw_errf(err, err_len, 0, "tokenizer.ggml.scores[%u]: unreadable", i);
            rc = SW_ECORRUPT;
            goto done;
        }
        if (ty) {
            int64_t v;
            if (sw_gguf_arr_i64(&types, i, &v)) {
                sw_errf(err, err_len, 0, "tokenizer.ggml.token_type[%u]: not an integer", i);
                rc = SW_ECORRUPT;
                goto done;
            }
            ty[i] = v < 0 || v > 255 ? 0 : (int32_t)v;
        }
    }
    for (uint32_t i = 0; i < n_merges; i++) {
        struct sw_gguf_str s;
        if (sw_gguf_arr_str(&merges, i, &s)) {
            sw_errf(err, err_len, 0, "tokenizer.ggml.merges[%u]: unreadable", i);
            rc = SW_ECORRUPT;
            goto done;
        }
        mt[i] = s.ptr;
        ml[i] = s.len > 0x1FFFF ? 0 : (uint32_t)s.len;
    }
    struct src s = { 0 };
    s.model = model_s;
    s.pre = have_pre ? pre_s : NULL;
    s.n_tokens = n;
    s.texts = texts;
    s.lens = lens;
    s.scores = sc;
    s.types = ty;
    s.n_merges = n_merges;
    s.merges = mt;
    s.merge_lens = ml;
    if ((rc = gguf_id(g, "tokenizer.ggml.bos_token_id", &s.bos, err, err_len)) ||
        (rc = gguf_id(g, "tokenizer.ggml.eos_token_id", &s.eos, err, err_len)) ||
        (rc = gguf_id(g, "tokenizer.ggml.unknown_token_id", &s.unk, err, err_len)) ||
        (rc = gguf_id(g, "tokenizer.ggml.padding_token_id", &s.pad, err, err_len)) ||
        (rc = gguf_id(g, "tokenizer.ggml.eot_token_id", &s.eot, err, err_len)))
        goto done;
    if (!strcmp(model_s, "bert")) {
        int32_t cls = -1, sep = -1;
        if ((rc = gguf_id(g, "tokenizer.ggml.cls_token_id", &cls, err, err_len)) ||
            (rc = gguf_id(g, "tokenizer.ggml.seperator_token_id", &sep, err, err_len)))
            goto done;
        if (s.bos < 0) s.bos = cls;
        if (s.eos < 0) s.eos = sep;
    }
    if (!strcmp(model_s, "llama")) {
        /* SentencePiece defaults when the keys are absent (llama.cpp does the same). */
        if (!sw_gguf_find(g, "tokenizer.ggml.bos_token_id")) s.bos = 1;
        if (!sw_gguf_find(g, "tokenizer.ggml.eos_token_id")) s.eos = 2;
        if (!sw_gguf_find(g, "tokenizer.ggml.unknown_token_id")) s.unk = 0;
    }
    gguf_flag(g, "tokenizer.ggml.add_bos_token", &s.add_bos);
    gguf_flag(g, "tokenizer.ggml.add_eos_token", &s.add_eos);
    gguf_flag(g, "tokenizer.ggml.add_space_prefix", &s.add_space_prefix);
    if (s.add_space_prefix < 0) gguf_flag(g, "tokenizer.ggml.add_prefix_space", &s.add_space_prefix);
    if (sw_gguf_get_str(g, "tokenizer.chat_template", &tmpl) == 0) {
        if (tmpl.len > (16u << 20)) {
            sw_errf(err, err_len, 0, "tokenizer.chat_template: %llu bytes is too large", (unsigned long long)tmpl.len);
            rc = SW_ETOOBIG;
            goto done;
        }
        s.chat_template = tmpl.ptr;
        s.chat_template_len = (size_t)tmpl.len;
    }
    char name_s[128] = "";
    if (sw_gguf_get_str(g, "general.name", &name) == 0)
        snprintf(name_s, sizeof name_s, "%.*s", (int)SW_MIN(name.len, 127), name.ptr);
    s.name = name_s;
    rc = build(&s, out, err, err_len);
done:
    if (rc == SW_ENOMEM && err && err_len && !*err) sw_errf(err, err_len, 0, "out of memory reading the tokenizer");
    free(texts);
    free(lens);
    free(sc);
    free(ty);
    free(mt);
    free(ml);
    return rc;
}

/* ------------------------------------------------------------------ accessors */

enum sw_tok_model sw_tok_model_kind(const struct sw_tok *t) { return t->model; }
const char *sw_tok_pre(const struct sw_tok *t) { return t->pre; }
uint32_t sw_tok_n_vocab(const struct sw_tok *t) { return t->n_vocab; }
int32_t sw_tok_bos(const struct sw_tok *t) { return t->bos; }
int32_t sw_tok_eos(const struct sw_tok *t) { return t->eos; }
int32_t sw_tok_eot(const struct sw_tok *t) { return t->eot; }
int32_t sw_tok_unk(const struct sw_tok *t) { return t->unk; }
int32_t sw_tok_pad(const struct sw_tok *t) { return t->pad; }
int sw_tok_adds_bos(const struct sw_tok *t) { return t->add_bos && t->bos >= 0; }
int sw_tok_adds_eos(const struct sw_tok *t) { return t->add_eos && t->eos >= 0; }
const char *sw_tok_chat_template(const struct sw_tok *t) { return t->chat_template; }

int sw_tok_is_eog(const struct sw_tok *t, int32_t id)
{
    if (id < 0) return 0;
    for (uint32_t i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return 1;
    return 0;
}

int sw_tok_type_of(const struct sw_tok *t, int32_t id)
{
    if (id < 0 || (uint32_t)id >= t->n_vocab) return SW_TOKTYPE_UNDEFINED;
    return t->types[id];
}

const char *sw_tok_text(const struct sw_tok *t, int32_t id, size_t *len_out)
{
    if (id < 0 || (uint32_t)id >= t->n_vocab) return NULL;
    size_t l;
    const char *s = tok_text(t, (uint32_t)id, &l);
    if (len_out) *len_out = l;
    return s;
}

/* ------------------------------------------------------------------ encoding */

struct ivec {
    int32_t *v;
    size_t n, cap;
    int oom;
};

static void ivec_push(struct ivec *a, int32_t x)
{
    if (a->oom) return;
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        int32_t *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv) { a->oom = 1; return; }
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = x;
}

/* A piece of the input: a special token found in it, or raw text to tokenize. */
struct frag {
    int32_t tok; /* >= 0: token; -1: raw text */
    size_t off, len;
};

struct fvec {
    struct frag *v;
    size_t n, cap;
};

static int fvec_push(struct fvec *a, int32_t tok, size_t off, size_t len)
{
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 16;
        struct frag *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv) return SW_ENOMEM;
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = (struct frag){ tok, off, len };
    return 0;
}

/* Splits the text at special tokens: each special token, longest first, claims all its
 * (non-overlapping, leftmost) occurrences in the text left over by longer ones. Control
 * and unknown tokens only with parse_special; user-defined ones always (llama.cpp). */
static int partition(const struct sw_tok *t, const char *text, size_t len, int parse_special,
                     struct fvec *frags)
{
    frags->n = 0;
    if (fvec_push(frags, -1, 0, len)) return SW_ENOMEM;
    if (!t->n_special) return 0;
    /* Which special tokens occur at all: one pass over the text, by first byte. */
    uint8_t *present = calloc(t->n_special, 1);
    if (!present) return SW_ENOMEM;
    int any = 0;
    for (size_t p = 0; p < len; p++) {
        uint8_t b = (uint8_t)text[p];
        for (uint32_t k = t->bucket[b]; k < t->bucket[b + 1]; k++) {
            uint32_t si = t->special_by_byte[k];
            if (present[si]) continue;
            int32_t id = t->special[si];
            if (!parse_special && t->types[id] != SW_TOKTYPE_USER_DEFINED) continue;
            size_t tl;
            const char *tt = tok_text(t, (uint32_t)id, &tl);
            if (tl <= len - p && !memcmp(text + p, tt, tl)) { present[si] = 1; any = 1; }
        }
    }
    int rc = 0;
    struct fvec next = { 0 };
    for (uint32_t si = 0; any && si < t->n_special; si++) {
        if (!present[si]) continue;
        int32_t id = t->special[si];
        size_t tl;
        const char *tt = tok_text(t, (uint32_t)id, &tl);
        next.n = 0;
        for (size_t f = 0; f < frags->n; f++) {
            struct frag fr = frags->v[f];
            if (fr.tok >= 0) {
                if ((rc = fvec_push(&next, fr.tok, 0, 0))) goto out;
                continue;
            }
            size_t p = fr.off, end = fr.off + fr.len;
            for (;;) {
                const char *m = end - p >= tl ? memmem(text + p, end - p, tt, tl) : NULL;
                if (!m) break;
                size_t mo = (size_t)(m - text), left_len = mo - p;
                if (t->attr[id] & ATTR_LSTRIP)
                    while (left_len && isspace((unsigned char)text[p + left_len - 1])) left_len--;
                if (left_len && (rc = fvec_push(&next, -1, p, left_len))) goto out;
                if ((rc = fvec_push(&next, id, 0, 0))) goto out;
                p = mo + tl;
                if (t->attr[id] & ATTR_RSTRIP)
                    while (p < end && isspace((unsigned char)text[p])) p++;
            }
            if (p < end && (rc = fvec_push(&next, -1, p, end - p))) goto out;
        }
        struct fvec tmp = *frags;
        *frags = next;
        next = tmp;
    }
out:
    free(next.v);
    free(present);
    return rc;
}

/* Merge candidates: smaller key first, then leftmost. SPM uses key = -score, BPE the rank. */
struct bigram {
    double key;
    int32_t left, right;
    uint32_t size;
};

struct heap {
    struct bigram *v;
    size_t n, cap;
    int oom;
};

static int bigram_before(const struct bigram *a, const struct bigram *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static void heap_push(struct heap *h, struct bigram x)
{
    if (h->oom) return;
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 64;
        struct bigram *nv = realloc(h->v, nc * sizeof *nv);
        if (!nv) { h->oom = 1; return; }
        h->v = nv;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(&x, &h->v[parent])) break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = x;
}

static struct bigram heap_pop(struct heap *h)
{
    struct bigram top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && bigram_before(&h->v[c + 1], &h->v[c])) c++;
        if (!bigram_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

struct sym {
    int32_t prev, next;
    uint32_t off, n; /* bytes of the word */
};

struct session {
    const struct sw_tok *t;
    struct sym *syms;
    size_t n_syms, cap_syms;
    struct heap heap;
    struct ivec *out;
    uint8_t *word;   /* scratch: the current word's bytes */
    size_t word_cap;
    int oom;
};

static int syms_reserve(struct session *s, size_t n)
{
    if (n <= s->cap_syms) return 0;
    size_t nc = s->cap_syms ? s->cap_syms : 64;
    while (nc < n) nc *= 2;
    struct sym *ns = realloc(s->syms, nc * sizeof *ns);
    if (!ns) return SW_ENOMEM;
    s->syms = ns;
    s->cap_syms = nc;
    return 0;
}

/* Splits word[0..len) into UTF-8 characters (by lead byte, as llama.cpp does). */
static int make_symbols(struct session *s, const uint8_t *word, size_t len)
{
    if (syms_reserve(s, len)) return SW_ENOMEM;
    s->n_syms = 0;
    size_t off = 0;
    while (off < len) {
        size_t cl = SW_MIN(sw__utf8_lead_len(word[off]), len - off);
        int32_t i = (int32_t)s->n_syms;
        s->syms[s->n_syms++] = (struct sym){ i - 1, off + cl == len ? -1 : i + 1, (uint32_t)off, (uint32_t)cl };
        off += cl;
    }
    return 0;
}

static void spm_try_bigram(struct session *s, const uint8_t *text, int32_t l, int32_t r)
{
    if (l < 0 || r < 0) return;
    const struct sym *a = &s->syms[l], *b = &s->syms[r];
    int32_t id = sw_tok_find(s->t, (const char *)text + a->off, a->n + b->n);
    if (id < 0) return;
    heap_push(&s->heap, (struct bigram){ -(double)s->t->scores[id], l, r, a->n + b->n });
}

/* SentencePiece BPE: repeatedly merge the adjacent pair whose concatenation is the token
 * with the highest score (ties: leftmost); leftover characters that are not tokens fall
 * back to their bytes' <0xXX> tokens. text is already space-escaped. */
static int spm_tokenize(struct session *s, const uint8_t *text, size_t len)
{
    if (!len) return 0;
    if (make_symbols(s, text, len)) return SW_ENOMEM;
    s->heap.n = 0;
    for (size_t i = 1; i < s->n_syms; i++) spm_try_bigram(s, text, (int32_t)i - 1, (int32_t)i);
    while (s->heap.n) {
        struct bigram bg = heap_pop(&s->heap);
        struct sym *a = &s->syms[bg.left], *b = &s->syms[bg.right];
        if (!a->n || !b->n || a->n + b->n != bg.size) continue; /* stale */
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0) s->syms[b->next].prev = bg.left;
        spm_try_bigram(s, text, a->prev, bg.left);
        spm_try_bigram(s, text, bg.left, a->next);
    }
    if (s->heap.oom) return SW_ENOMEM;
    for (int32_t i = 0; i >= 0; i = s->syms[i].next) {
        const struct sym *y = &s->syms[i];
        int32_t id = sw_tok_find(s->t, (const char *)text + y->off, y->n);
        if (id >= 0) { ivec_push(s->out, id); continue; }
        for (uint32_t k = 0; k < y->n; k++) {
            int32_t bt = s->t->byte_tok[text[y->off + k]];
            ivec_push(s->out, bt >= 0 ? bt : s->t->unk);
        }
    }
    return 0;
}

static void bpe_try_bigram(struct session *s, const uint8_t *w, int32_t l, int32_t r)
{
    if (l < 0 || r < 0) return;
    const struct sym *a = &s->syms[l], *b = &s->syms[r];
    int rank = merge_rank(s->t, (const char *)w + a->off, a->n, (const char *)w + b->off, b->n);
    if (rank < 0) return;
    heap_push(&s->heap, (struct bigram){ (double)rank, l, r, a->n + b->n });
}

/* Byte-level BPE of one pre-token (already mapped to the byte alphabet): merge the pair
 * with the lowest merge rank (ties: leftmost) until none applies. */
static int bpe_word(struct session *s, const uint8_t *w, size_t len)
{
    const struct sw_tok *t = s->t;
    if (t->ignore_merges) {
        int32_t id = sw_tok_find(t, (const char *)w, len);
        if (id >= 0) { ivec_push(s->out, id); return 0; }
    }
    if (make_symbols(s, w, len)) return SW_ENOMEM;
    s->heap.n = 0;
    for (size_t i = 1; i < s->n_syms; i++) bpe_try_bigram(s, w, (int32_t)i - 1, (int32_t)i);
    while (s->heap.n) {
        struct bigram bg = heap_pop(&s->heap);
        struct sym *a = &s->syms[bg.left], *b = &s->syms[bg.right];
        if (!a->n || !b->n || a->n + b->n != bg.size) continue; /* stale */
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0) s->syms[b->next].prev = bg.left;
        bpe_try_bigram(s, w, a->prev, bg.left);
        bpe_try_bigram(s, w, bg.left, a->next);
    }
    if (s->heap.oom) return SW_ENOMEM;
    for (int32_t i = 0; i >= 0 && s->n_syms; i = s->syms[i].next) {
        const struct sym *y = &s->syms[i];
        int32_t id = sw_tok_find(t, (const char *)w + y->off, y->n);
        if (id >= 0) { ivec_push(s->out, id); continue; }
        /* Not a token: single-byte tokens of its bytes where they exist (llama.cpp). */
        for (uint32_t k = 0; k < y->n; k++) {
            int32_t bt = sw_tok_find(t, (const char *)w + y->off + k, 1);
            if (bt >= 0) ivec_push(s->out, bt);
        }
    }
    return 0;
}

static int bpe_tokenize(struct session *s, const uint8_t *text, size_t len)
{
    const struct sw_tok *t = s->t;
    if (!len) return 0;
    int rc = SW_ENOMEM;
    uint32_t *cps = malloc(len * sizeof *cps);
    size_t *ends = NULL, *ends2 = NULL, n_ends = 0, cap_ends = 0, n2 = 0, cap2 = 0;
    struct sw__re_scratch sc = { 0 };
    if (!cps) return SW_ENOMEM;
    size_t n = 0;
    for (size_t p = 0; p < len;) {
        p += sw__utf8_decode(text + p, len - p, &cps[n]);
        n++;
    }
    /* pre-tokenize: each regex splits every piece the previous one left */
    ends = malloc(sizeof *ends);
    if (!ends) goto out;
    cap_ends = 1;
    ends[n_ends++] = n;
    for (uint32_t r = 0; r < t->n_re; r++) {
        n2 = 0;
        size_t a = 0;
        for (size_t i = 0; i < n_ends; i++) {
            if ((rc = sw__re_split(t->re[r], cps, a, ends[i], &sc, &ends2, &n2, &cap2))) goto out;
            a = ends[i];
        }
        size_t *tmp = ends; ends = ends2; ends2 = tmp;
        size_t tc = cap_ends; cap_ends = cap2; cap2 = tc;
        n_ends = n2;
    }
    /* each piece: code points -> UTF-8 -> byte alphabet -> BPE */
    size_t a = 0;
    for (size_t i = 0; i < n_ends; i++) {
        size_t b = ends[i], wl = 0;
        if (b <= a) continue;
        size_t need = (b - a) * 8;
        if (need > s->word_cap) {
            uint8_t *nw = realloc(s->word, need);
            if (!nw) { rc = SW_ENOMEM; goto out; }
            s->word = nw;
            s->word_cap = need;
        }
        for (size_t k = a; k < b; k++) {
            uint8_t u[4];
            size_t ul = sw__utf8_encode(cps[k], u);
            for (size_t j = 0; j < ul; j++) {
                const uint8_t *m = t->byte_utf8[u[j]];
                memcpy(s->word + wl, m, m[2]);
                wl += m[2];
            }
        }
        if ((rc = bpe_word(s, s->word, wl))) goto out;
        a = b;
    }
    rc = 0;
out:
    free(cps);
    free(ends);
    free(ends2);
    sw__re_scratch_free(&sc);
    return rc;
}

/* CJK ideograph blocks that BERT treats as words of their own (BasicTokenizer). */
static int is_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* One WordPiece word (w already starts with U+2581): longest vocabulary match from the
 * left, repeatedly; a word with any unmatched position becomes a single UNK. */
static void wpm_word(struct session *s, const uint8_t *w, size_t n)
{
    const struct sw_tok *t = s->t;
    size_t mark = s->out->n;
    for (size_t i = 0; i < n;) {
        size_t j = SW_MIN(n, i + t->max_token_len);
        int32_t id = -1;
        for (; j > i; j--)
            if ((id = sw_tok_find(t, (const char *)w + i, j - i)) >= 0) break;
        if (id < 0) {
            s->out->n = mark;
            break;
        }
        ivec_push(s->out, id);
        i = j;
    }
    if (s->out->n == mark && t->unk >= 0) ivec_push(s->out, t->unk);
}

/* BERT's basic tokenizer: strip accents (first code point of the NFD form), lower-case,
 * drop control characters, split on whitespace, and make every punctuation mark, ASCII
 * symbol and CJK ideograph a word of its own; then WordPiece each word. */
static int wpm_tokenize(struct session *s, const uint8_t *text, size_t len)
{
    size_t cap = len * 4 + 8;
    if (cap > s->word_cap) {
        uint8_t *nw = realloc(s->word, cap);
        if (!nw) return SW_ENOMEM;
        s->word = nw;
        s->word_cap = cap;
    }
    uint8_t *w = s->word;
    size_t wl = 0;
#define WORD_START() (memcpy(w, "\xE2\x96\x81", 3), wl = 3)
    WORD_START();
    for (size_t p = 0; p <= len;) {
        uint32_t cp = 0;
        int end = p == len;
        if (!end) p += sw__utf8_decode(text + p, len - p, &cp);
        else p++;
        if (!end) cp = sw__nfd_first_cp(cp);
        int gc = end ? 0 : sw__gc(cp);
        int space = !end && sw__is_space(cp);
        int alone = !end && !space &&
                    ((SW__GCM_P >> gc & 1) || (cp < 0x7F && (SW__GCM_S >> gc & 1)) || is_cjk(cp));
        if (end || space || alone) {
            if (wl > 3) wpm_word(s, w, wl);
            WORD_START();
            if (!alone) continue;
        }
        if (cp == 0 || cp == 0xFFFD || gc == SW__GC_CC || gc == SW__GC_CF || gc == SW__GC_CS || gc == SW__GC_CO)
            continue;
        wl += sw__utf8_encode(sw__tolower(cp), w + wl);
        if (alone) {
            wpm_word(s, w, wl);
            WORD_START();
        }
    }
#undef WORD_START
    return s->out->oom ? SW_ENOMEM : 0;
}

int sw_tok_encode(const struct sw_tok *t, const char *text, size_t len, unsigned flags,
                  int32_t **ids_out, size_t *n_out)
{
    *ids_out = NULL;
    *n_out = 0;
    if (!t || (!text && len)) return SW_EINVAL;
    if (len > SW_TOK_MAX_TEXT) return SW_ETOOBIG;
    struct ivec out = { 0 };
    struct fvec frags = { 0 };
    struct session s = { 0 };
    s.t = t;
    s.out = &out;
    uint8_t *buf = NULL;
    int rc = 0;

    if ((flags & SW_TOK_ADD_BOS) && t->add_bos && t->bos >= 0) ivec_push(&out, t->bos);
    if (len && (rc = partition(t, text, len, !!(flags & SW_TOK_PARSE_SPECIAL), &frags))) goto done;
    if (t->model == SW_TOK_MODEL_SPM) {
        /* escape spaces as U+2581; a text fragment at the start or after a special token
         * gets the leading space SentencePiece's add_dummy_prefix adds */
        int prev_special = 1;
        buf = malloc(len * 3 + 4);
        if (!buf && len) { rc = SW_ENOMEM; goto done; }
        for (size_t f = 0; f < frags.n; f++) {
            const struct frag *fr = &frags.v[f];
            if (fr->tok >= 0) {
                ivec_push(&out, fr->tok);
                prev_special = 1;
                continue;
            }
            size_t bl = 0;
            if (t->add_space_prefix && prev_special) {
                memcpy(buf, "\xE2\x96\x81", 3);
                bl = 3;
            }
            for (size_t i = 0; i < fr->len; i++) {
                char c = text[fr->off + i];
                if (c == ' ') { memcpy(buf + bl, "\xE2\x96\x81", 3); bl += 3; }
                else buf[bl++] = (uint8_t)c;
            }
            if ((rc = spm_tokenize(&s, buf, bl))) goto done;
            prev_special = 0;
        }
    } else {
        for (size_t f = 0; f < frags.n; f++) {
            const struct frag *fr = &frags.v[f];
            if (fr->tok >= 0) { ivec_push(&out, fr->tok); continue; }
            rc = t->model == SW_TOK_MODEL_WPM ? wpm_tokenize(&s, (const uint8_t *)text + fr->off, fr->len)
                                              : bpe_tokenize(&s, (const uint8_t *)text + fr->off, fr->len);
            if (rc) goto done;
        }
    }
    if ((flags & SW_TOK_ADD_EOS) && t->add_eos && t->eos >= 0) ivec_push(&out, t->eos);
    if (out.oom) rc = SW_ENOMEM;
done:
    free(buf);
    free(frags.v);
    free(s.syms);
    free(s.heap.v);
    free(s.word);
    if (rc) {
        free(out.v);
        return rc;
    }
    if (!out.n) {
        free(out.v);
        out.v = NULL;
    }
    *ids_out = out.v;
    *n_out = out.n;
    return 0;
}

/* ------------------------------------------------------------------ decoding */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Appends the text of one token to out (no prefix stripping). */
static void piece_append(const struct sw_tok *t, int32_t id, unsigned flags, struct sw_buf *out)
{
    if (id < 0 || (uint32_t)id >= t->n_vocab) return;
    size_t len;
    const char *s = tok_text(t, (uint32_t)id, &len);
    switch (t->types[id]) {
    case SW_TOKTYPE_CONTROL:
        if (flags & SW_TOK_DECODE_SPECIAL) sw_buf_append(out, s, len);
        return;
    case SW_TOKTYPE_UNKNOWN:
    case SW_TOKTYPE_USER_DEFINED:
        sw_buf_append(out, s, len);
        return;
    case SW_TOKTYPE_BYTE:
        if (len == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' && hexval(s[3]) >= 0 &&
            hexval(s[4]) >= 0) {
            sw_buf_append_byte(out, (uint8_t)(hexval(s[3]) << 4 | hexval(s[4])));
            return;
        }
        break; /* not in <0xXX> form: treat as text */
    case SW_TOKTYPE_NORMAL:
        break;
    default:
        return; /* unused / undefined: nothing, like control tokens */
    }
    if (t->model != SW_TOK_MODEL_BPE) {
        for (size_t i = 0; i < len;) {
            if (i + 3 <= len && !memcmp(s + i, "\xE2\x96\x81", 3)) {
                sw_buf_append_byte(out, ' ');
                i += 3;
            } else {
                sw_buf_append_byte(out, (uint8_t)s[i++]);
            }
        }
        return;
    }
    /* byte-level: each code point of the alphabet is one byte */
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t cl = sw__utf8_decode((const uint8_t *)s + i, len - i, &cp);
        int byte = cp < SW_ARRAY_LEN(t->cp_byte) ? t->cp_byte[cp] : -1;
        if (byte >= 0) sw_buf_append_byte(out, (uint8_t)byte);
        else sw_buf_append(out, s + i, cl); /* outside the alphabet: keep as is */
        i += cl;
    }
}

int sw_tok_piece(const struct sw_tok *t, int32_t id, unsigned flags, char *out, size_t cap)
{
    if (!t || id < 0 || (uint32_t)id >= t->n_vocab) return SW_ERANGE;
    struct sw_buf b = { 0 };
    piece_append(t, id, flags, &b);
    if (!sw_buf_ok(&b)) { sw_buf_free(&b); return SW_ENOMEM; }
    int n = (int)b.len;
    if (b.len <= cap && b.len) memcpy(out, b.data, b.len);
    sw_buf_free(&b);
    return n;
}

static int strips_prefix(const struct sw_tok *t, unsigned flags)
{
    return t->model != SW_TOK_MODEL_BPE && t->add_space_prefix && !(flags & SW_TOK_DECODE_NO_STRIP);
}

int sw_tok_decode(const struct sw_tok *t, const int32_t *ids, size_t n, unsigned flags, struct sw_buf *out)
{
    int at_start = strips_prefix(t, flags);
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || (uint32_t)id >= t->n_vocab) continue;
        size_t before = out->len;
        piece_append(t, id, flags, out);
        if (at_start && t->types[id] != SW_TOKTYPE_CONTROL && out->len > before) {
            /* the space the encoder put in front of the text */
            if (out->data[before] == ' ') {
                memmove(out->data + before, out->data + before + 1, out->len - before - 1);
                out->len--;
            }
            at_start = 0;
        }
    }
    return sw_buf_ok(out) ? 0 : SW_ENOMEM;
}

void sw_tok_stream_init(struct sw_tok_stream *s, const struct sw_tok *t, unsigned flags, int at_text_start)
{
    memset(s, 0, sizeof *s);
    s->tok = t;
    s->flags = flags;
    s->at_start = at_text_start && strips_prefix(t, flags);
}

int sw_tok_stream_push(struct sw_tok_stream *s, int32_t id, struct sw_buf *out)
{
    const struct sw_tok *t = s->tok;
    if (id < 0 || (uint32_t)id >= t->n_vocab) return 0;
    struct sw_buf piece = { 0 };
    if (s->n_pending) sw_buf_append(&piece, s->pending, s->n_pending);
    size_t before = piece.len;
    piece_append(t, id, s->flags, &piece);
    if (!sw_buf_ok(&piece)) { sw_buf_free(&piece); return SW_ENOMEM; }
    if (s->at_start && t->types[id] != SW_TOKTYPE_CONTROL && piece.len > before) {
        if (piece.data[before] == ' ') {
            memmove(piece.data + before, piece.data + before + 1, piece.len - before - 1);
            piece.len--;
        }
        s->at_start = 0;
    }
    /* hold back a trailing incomplete UTF-8 sequence */
    size_t keep = 0;
    for (size_t back = 1; back <= 3 && back <= piece.len; back++) {
        uint8_t c = piece.data[piece.len - back];
        if ((c & 0xC0) == 0x80) continue; /* continuation byte: look further back */
        size_t need = c >= 0xF0 && c < 0xF8 ? 4 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xC0 && c < 0xE0 ? 2 : 1;
        if (need > back) keep = back;
        break;
    }
    s->n_pending = (uint32_t)keep;
    if (keep) memcpy(s->pending, piece.data + piece.len - keep, keep);
    int rc = sw_buf_append(out, piece.data, piece.len - keep);
    sw_buf_free(&piece);
    return rc ? SW_ENOMEM : 0;
}

int sw_tok_stream_flush(struct sw_tok_stream *s, struct sw_buf *out)
{
    int rc = 0;
    if (s->n_pending) rc = sw_buf_append(out, s->pending, s->n_pending);
    s->n_pending = 0;
    return rc ? SW_ENOMEM : 0;
}
