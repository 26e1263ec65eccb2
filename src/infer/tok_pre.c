/* tok_pre.c — the pre-tokenizer table: which regex sequence splits text before byte-level
 * BPE, by the name stored in tokenizer.ggml.pre. The patterns are the models' own (their
 * tokenizer.json "pre_tokenizer" Split patterns), grouped under the names llama.cpp's
 * converter writes into GGUF files. Each pattern is applied to every piece the previous
 * one produced ("Isolated" behaviour: matches and the text between them both become
 * pieces). */
#include <string.h>

#include "tok_impl.h"

struct sw__pre_def {
    const char *const *names; /* NULL-terminated aliases */
    const char *const *regexes;
    int ignore_merges;        /* a pre-token that is itself a token is emitted whole */
    int add_bos;              /* BOS by default when the file does not say (llama.cpp) */
};

/* Mistral's Tekken and OpenAI's o200k split words at case changes (upper runs, then
 * lower runs), which needs the letter sub-categories. */
#define RE_TEKKEN "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+" \
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*" \
    "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_O200K "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?" \
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?" \
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* GPT-2 (openai/gpt-2 encoder.py) */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
/* Llama 3 (tiktoken cl100k-style, case-insensitive contractions, digits in threes) */
#define RE_LLAMA3 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* Qwen2: as Llama 3 but every digit on its own */
#define RE_QWEN2 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static const char *const n_default[] = { "default", NULL };
static const char *const r_default[] = {
    /* What llama.cpp applies when a gpt2-type vocabulary names no known pre-tokenizer. */
    "[\\p{P}\\$\\+<=>\\^~\\|]+",
    RE_GPT2,
    "\\p{N}+",
    "[0-9][0-9][0-9]",
    NULL,
};
static const char *const n_gpt2[] = { "gpt-2", "gpt2", "mpt", "olmo", "jais", "trillion", "phi-2", "exaone4",
                                      "gigachat", "mellum", NULL };
static const char *const r_gpt2[] = { RE_GPT2, NULL };
static const char *const n_llama3[] = { "llama-bpe", "llama3", "llama-v3", "dbrx", "smaug-bpe",
                                        "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", NULL };
static const char *const r_llama3[] = { RE_LLAMA3, NULL };
static const char *const n_qwen2[] = { "qwen2", "qwen2.5", "qwen-2.5", "deepseek-r1-qwen", "stablelm2",
                                       "megrez", "hunyuan", NULL };
static const char *const r_qwen2[] = { RE_QWEN2, NULL };
static const char *const n_deepseek_llm[] = { "deepseek-llm", NULL };
static const char *const r_deepseek_llm[] = {
    /* deepseek-ai/deepseek-llm-7b-base tokenizer.json */
    "[\r\n]",
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af"
    "\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5"
    "\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba"
    "\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45"
    "\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe"
    "\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc"
    "\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
    "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3"
    "\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06"
    "\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3"
    "\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df"
    "\U0001e900-\U0001e943]+",
    "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
    "\\s+$",
    "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+",
    "\\p{N}+",
    NULL,
};
static const char *const n_deepseek_coder[] = { "deepseek-coder", NULL };
static const char *const r_deepseek_coder[] = {
    "[\r\n]",
    "\\s?\\p{L}+",
    "\\s?\\p{P}+",
    "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+",
    "\\p{N}",
    NULL,
};
static const char *const n_falcon[] = { "falcon", NULL };
static const char *const r_falcon[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|`]+",
    RE_GPT2,
    "[0-9][0-9][0-9]",
    NULL,
};
static const char *const n_starcoder[] = { "starcoder", "refact", "command-r", "smollm", "codeshell",
                                           "exaone", "minerva-7b", NULL };
static const char *const r_starcoder[] = { "\\p{N}", RE_GPT2, NULL };
static const char *const n_poro[] = { "poro-chat", "bloom", "gpt3-finnish", NULL };
static const char *const r_poro[] = { " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+", NULL };
static const char *const n_viking[] = { "viking", NULL };
static const char *const r_viking[] = { " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+", "\\p{N}", NULL };
static const char *const n_chatglm4[] = { "chatglm4", "glm4", "chatglm-bpe", NULL };
static const char *const r_chatglm4[] = { RE_LLAMA3, NULL };

static const char *const n_tekken[] = { "tekken", NULL };
static const char *const r_tekken[] = { RE_TEKKEN, NULL };
static const char *const n_o200k[] = { "gpt-4o", "llama4", NULL };
static const char *const r_o200k[] = { RE_O200K, NULL };
static const char *const n_deepseek_v3[] = { "deepseek-v3", "hunyuan-dense", NULL };
static const char *const r_deepseek_v3[] = {
    /* deepseek-ai/DeepSeek-V3 tokenizer.json */
    "\\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
    "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};

static const struct sw__pre_def pre_defs[] = {
    { n_default, r_default, 0, 0 },
    { n_gpt2, r_gpt2, 0, 0 },
    { n_llama3, r_llama3, 1, 1 },
    { n_qwen2, r_qwen2, 0, 0 },
    { n_deepseek_llm, r_deepseek_llm, 0, 0 },
    { n_deepseek_coder, r_deepseek_coder, 0, 0 },
    { n_falcon, r_falcon, 0, 0 },
    { n_starcoder, r_starcoder, 0, 0 },
    { n_poro, r_poro, 0, 0 },
    { n_viking, r_viking, 0, 0 },
    { n_chatglm4, r_chatglm4, 0, 0 },
    { n_tekken, r_tekken, 1, 1 },
    { n_o200k, r_o200k, 0, 0 },
    { n_deepseek_v3, r_deepseek_v3, 0, 0 },
};

/* Finds the regex list for a pre-tokenizer name; NULL when unknown. */
const char *const *sw__pre_lookup(const char *name, int *ignore_merges_out, int *add_bos_out)
{
    for (size_t i = 0; i < sizeof pre_defs / sizeof pre_defs[0]; i++)
        for (const char *const *n = pre_defs[i].names; *n; n++)
            if (!strcmp(*n, name)) {
                if (ignore_merges_out) *ignore_merges_out = pre_defs[i].ignore_merges;
                if (add_bos_out) *add_bos_out = pre_defs[i].add_bos;
                return pre_defs[i].regexes;
            }
    return NULL;
}
