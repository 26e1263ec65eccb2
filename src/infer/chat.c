/* chat.c — chat templates: recognise a model's family from the Jinja text stored in
 * tokenizer.chat_template (string heuristics, not a Jinja interpreter), format
 * {role, content} messages into its prompt text, and name the strings that end a turn.
 * Formats follow each family's published template; BOS is left to the tokenizer. */
#include <string.h>

#include "tok.h"

/* DeepSeek's markers use U+FF5C (fullwidth vertical line) and U+2581 (lower one eighth block) */
#define FWBAR "\xef\xbd\x9c"
#define LOWBLK "\xe2\x96\x81"

static const char *const tmpl_names[SW_CHAT_COUNT_] = {
    [SW_CHAT_CHATML] = "chatml", [SW_CHAT_LLAMA2] = "llama2", [SW_CHAT_LLAMA3] = "llama3",
    [SW_CHAT_MISTRAL] = "mistral", [SW_CHAT_PHI3] = "phi3", [SW_CHAT_GEMMA] = "gemma",
    [SW_CHAT_ZEPHYR] = "zephyr", [SW_CHAT_DEEPSEEK3] = "deepseek3", [SW_CHAT_GPT_OSS] = "gpt-oss",
};

const char *sw_chat_name(enum sw_chat_tmpl t)
{
    return (unsigned)t < SW_CHAT_COUNT_ ? tmpl_names[t] : "unknown";
}

int sw_chat_from_name(const char *name, enum sw_chat_tmpl *out)
{
    for (int i = 0; name && i < SW_CHAT_COUNT_; i++)
        if (!strcmp(name, tmpl_names[i])) {
            *out = (enum sw_chat_tmpl)i;
            return 0;
        }
    return SW_ENOTFOUND;
}

enum sw_chat_tmpl sw_chat_detect(const char *j)
{
    if (!j || !*j) return SW_CHAT_CHATML;
    if (strstr(j, "<|im_start|>")) return SW_CHAT_CHATML;
    if (strstr(j, "<|start|>") && strstr(j, "<|channel|>")) return SW_CHAT_GPT_OSS;
    if (strstr(j, "<" FWBAR "User" FWBAR ">") && strstr(j, "<" FWBAR "Assistant" FWBAR ">"))
        return SW_CHAT_DEEPSEEK3;
    if (strstr(j, "<|start_header_id|>") && strstr(j, "<|end_header_id|>")) return SW_CHAT_LLAMA3;
    if (strstr(j, "<start_of_turn>")) return SW_CHAT_GEMMA;
    if (strstr(j, "<|assistant|>") && strstr(j, "<|end|>")) return SW_CHAT_PHI3;
    if (strstr(j, "<|user|>") && strstr(j, "<|assistant|>")) return SW_CHAT_ZEPHYR;
    if (strstr(j, "[INST]")) return strstr(j, "<<SYS>>") ? SW_CHAT_LLAMA2 : SW_CHAT_MISTRAL;
    sw_log(SW_LOG_WARN, "TOK", "unrecognised chat template (%zu bytes): formatting prompts as ChatML",
           strlen(j));
    return SW_CHAT_CHATML;
}

static const char *const stop_chatml[] = { "<|im_end|>", NULL };
static const char *const stop_llama2[] = { "</s>", "[INST]", NULL };
static const char *const stop_llama3[] = { "<|eot_id|>", "<|end_of_text|>", NULL };
static const char *const stop_mistral[] = { "</s>", "[INST]", NULL };
static const char *const stop_phi3[] = { "<|end|>", "<|endoftext|>", NULL };
static const char *const stop_gemma[] = { "<end_of_turn>", NULL };
static const char *const stop_zephyr[] = { "</s>", "<|user|>", NULL };
#define DS_EOS "<" FWBAR "end" LOWBLK "of" LOWBLK "sentence" FWBAR ">"
static const char *const stop_deepseek3[] = { DS_EOS, NULL };
static const char *const stop_gpt_oss[] = { "<|return|>", "<|call|>", "<|end|>", NULL };

const char *const *sw_chat_stop_strings(enum sw_chat_tmpl t)
{
    static const char *const none[] = { NULL };
    switch (t) {
    case SW_CHAT_CHATML: return stop_chatml;
    case SW_CHAT_LLAMA2: return stop_llama2;
    case SW_CHAT_LLAMA3: return stop_llama3;
    case SW_CHAT_MISTRAL: return stop_mistral;
    case SW_CHAT_PHI3: return stop_phi3;
    case SW_CHAT_GEMMA: return stop_gemma;
    case SW_CHAT_ZEPHYR: return stop_zephyr;
    case SW_CHAT_DEEPSEEK3: return stop_deepseek3;
    case SW_CHAT_GPT_OSS: return stop_gpt_oss;
    default: return none;
    }
}

size_t sw_chat_stop_tokens(enum sw_chat_tmpl tmpl, const struct sw_tok *t, int32_t *ids_out, size_t cap)
{
    int32_t found[16];
    size_t n = 0;
    int32_t base[] = { sw_tok_eos(t), sw_tok_eot(t) };
    for (size_t i = 0; i < 2; i++)
        if (base[i] >= 0) found[n++] = base[i];
    for (const char *const *s = sw_chat_stop_strings(tmpl); *s && n < 16; s++) {
        int32_t id = sw_tok_find(t, *s, strlen(*s));
        if (id >= 0) found[n++] = id;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int dup = 0;
        for (size_t j = 0; j < i; j++) dup |= found[j] == found[i];
        if (dup) continue;
        if (k < cap) ids_out[k] = found[i];
        k++;
    }
    return k;
}

static int is_role(const struct sw_chat_msg *m, const char *r) { return !strcmp(m->role, r); }

/* Appends s without leading and trailing whitespace (Jinja's `| trim`). */
static void put_trimmed(struct sw_buf *b, const char *s)
{
    const char *e = s + strlen(s);
    while (s < e && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')) s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\t' || e[-1] == '\r')) e--;
    sw_buf_append(b, s, (size_t)(e - s));
}

int sw_chat_format(enum sw_chat_tmpl t, const struct sw_chat_msg *msgs, size_t n, int add_gen,
                   struct sw_buf *b)
{
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content) return SW_EINVAL;
    if ((unsigned)t >= SW_CHAT_COUNT_) return SW_EINVAL;
    switch (t) {
    case SW_CHAT_CHATML:
        for (size_t i = 0; i < n; i++)
            sw_buf_printf(b, "<|im_start|>%s\n%s<|im_end|>\n", msgs[i].role, msgs[i].content);
        if (add_gen) sw_buf_printf(b, "<|im_start|>assistant\n");
        break;
    case SW_CHAT_LLAMA3:
        /* Meta's template trims each message */
        for (size_t i = 0; i < n; i++) {
            sw_buf_printf(b, "<|start_header_id|>%s<|end_header_id|>\n\n", msgs[i].role);
            put_trimmed(b, msgs[i].content);
            sw_buf_printf(b, "<|eot_id|>");
        }
        if (add_gen) sw_buf_printf(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case SW_CHAT_PHI3:
        for (size_t i = 0; i < n; i++) sw_buf_printf(b, "<|%s|>\n%s<|end|>\n", msgs[i].role, msgs[i].content);
        if (add_gen) sw_buf_printf(b, "<|assistant|>\n");
        break;
    case SW_CHAT_ZEPHYR:
        for (size_t i = 0; i < n; i++) sw_buf_printf(b, "<|%s|>\n%s</s>\n", msgs[i].role, msgs[i].content);
        if (add_gen) sw_buf_printf(b, "<|assistant|>\n");
        break;
    case SW_CHAT_LLAMA2: {
        /* [INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] answer </s><s>[INST] user [/INST]
         * (the first <s> is the tokenizer's BOS) */
        int in_turn = 0, first = 1;
        for (size_t i = 0; i < n; i++) {
            const struct sw_chat_msg *m = &msgs[i];
            if (!in_turn && (is_role(m, "system") || is_role(m, "user"))) {
                sw_buf_printf(b, "%s[INST] ", first ? "" : "<s>");
                in_turn = 1;
                first = 0;
            }
            /* Meta's template strips user and assistant texts */
            if (is_role(m, "system")) {
                sw_buf_printf(b, "<<SYS>>\n%s\n<</SYS>>\n\n", m->content);
            } else if (is_role(m, "user")) {
                put_trimmed(b, m->content);
                sw_buf_printf(b, " [/INST]");
            } else {
                sw_buf_printf(b, " ");
                put_trimmed(b, m->content);
                sw_buf_printf(b, " </s>");
                in_turn = 0;
            }
        }
        break;
    }
    case SW_CHAT_MISTRAL: {
        /* [INST] (sys\n\n)user [/INST]answer</s>[INST] user [/INST]; tool calling (v3
         * tokenizers): role "tools" is [AVAILABLE_TOOLS] defs[/AVAILABLE_TOOLS] (before the
         * last [INST]), role "tool" a result [TOOL_RESULTS] {...}[/TOOL_RESULTS] */
        const char *sys = NULL;
        for (size_t i = 0; i < n; i++) {
            const struct sw_chat_msg *m = &msgs[i];
            if (is_role(m, "system")) {
                sys = m->content;
            } else if (is_role(m, "tools")) {
                sw_buf_printf(b, "[AVAILABLE_TOOLS] %s[/AVAILABLE_TOOLS]", m->content);
            } else if (is_role(m, "tool")) {
                sw_buf_printf(b, "[TOOL_RESULTS] %s[/TOOL_RESULTS]", m->content);
            } else if (is_role(m, "user")) {
                sw_buf_printf(b, "[INST] ");
                if (sys) sw_buf_printf(b, "%s\n\n", sys);
                sys = NULL;
                sw_buf_printf(b, "%s [/INST]", m->content);
            } else {
                sw_buf_printf(b, "%s</s>", m->content);
            }
        }
        break;
    }
    case SW_CHAT_GEMMA: {
        /* Gemma has no system role: the system text opens the first user turn. */
        const char *sys = NULL;
        for (size_t i = 0; i < n; i++) {
            const struct sw_chat_msg *m = &msgs[i];
            if (is_role(m, "system")) { sys = m->content; continue; }
            int user = is_role(m, "user");
            sw_buf_printf(b, "<start_of_turn>%s\n", user ? "user" : "model");
            if (user && sys) {
                put_trimmed(b, sys);
                sw_buf_printf(b, "\n\n");
                sys = NULL;
            }
            put_trimmed(b, m->content);
            sw_buf_printf(b, "<end_of_turn>\n");
        }
        if (add_gen) sw_buf_printf(b, "<start_of_turn>model\n");
        break;
    }
    case SW_CHAT_DEEPSEEK3:
        /* as llama.cpp's deepseek3 template: the system text first, then the turns */
        for (size_t i = 0; i < n; i++) {
            const struct sw_chat_msg *m = &msgs[i];
            if (is_role(m, "system")) sw_buf_printf(b, "%s\n\n", m->content);
            else if (is_role(m, "user")) sw_buf_printf(b, "<" FWBAR "User" FWBAR ">%s", m->content);
            else sw_buf_printf(b, "<" FWBAR "Assistant" FWBAR ">%s" DS_EOS, m->content);
        }
        if (add_gen) sw_buf_printf(b, "<" FWBAR "Assistant" FWBAR ">");
        break;
    case SW_CHAT_GPT_OSS:
        /* Harmony, as llama.cpp renders it without a Jinja engine: the model's answer
         * starts with its channel (<|channel|>analysis / final<|message|>...) */
        for (size_t i = 0; i < n; i++)
            sw_buf_printf(b, "<|start|>%s<|message|>%s%s", msgs[i].role, msgs[i].content,
                          is_role(&msgs[i], "assistant") ? "<|return|>" : "<|end|>");
        if (add_gen) sw_buf_printf(b, "<|start|>assistant");
        break;
    default:
        return SW_EINVAL;
    }
    return sw_buf_ok(b) ? 0 : SW_ENOMEM;
}
