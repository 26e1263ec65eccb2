/* test_chat.c — chat templates: detection from Jinja text, the exact prompt of a
 * two-message conversation for each family, stop strings and stop tokens. */
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "infer/tok.h"
#include "test.h"

#define FWBAR "\xef\xbd\x9c" /* U+FF5C, DeepSeek's marker bars */

static const struct sw_chat_msg conv[2] = {
    { "system", "You are helpful." },
    { "user", "Hello" },
};

static void check_format(enum sw_chat_tmpl t, const char *want)
{
    struct sw_buf b = { 0 };
    CHECK_EQ_INT(sw_chat_format(t, conv, 2, 1, &b), 0);
    const char *got = sw_buf_cstr(&b);
    CHECK_MSG(got && !strcmp(got, want), "%s:\n got: [%s]\nwant: [%s]", sw_chat_name(t), got ? got : "(null)",
              want);
    sw_buf_free(&b);
}

static void test_formats(void)
{
    check_format(SW_CHAT_CHATML,
                 "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
                 "<|im_start|>assistant\n");
    check_format(SW_CHAT_LLAMA2, "[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHello [/INST]");
    check_format(SW_CHAT_LLAMA3,
                 "<|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n");
    check_format(SW_CHAT_MISTRAL, "[INST] You are helpful.\n\nHello [/INST]");
    check_format(SW_CHAT_PHI3, "<|system|>\nYou are helpful.<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\n");
    check_format(SW_CHAT_GEMMA,
                 "<start_of_turn>user\nYou are helpful.\n\nHello<end_of_turn>\n<start_of_turn>model\n");
    check_format(SW_CHAT_ZEPHYR, "<|system|>\nYou are helpful.</s>\n<|user|>\nHello</s>\n<|assistant|>\n");
    check_format(SW_CHAT_DEEPSEEK3, "You are helpful.\n\n<" FWBAR "User" FWBAR ">Hello<" FWBAR "Assistant" FWBAR ">");
    check_format(SW_CHAT_GPT_OSS, "<|start|>system<|message|>You are helpful.<|end|><|start|>user<|message|>Hello<|end|>"
                                  "<|start|>assistant");
    /* detection from fragments of the published templates */
    CHECK_EQ_INT(sw_chat_detect("{{- '<|start|>assistant<|channel|>final<|message|>' }}"), SW_CHAT_GPT_OSS);
    CHECK_EQ_INT(sw_chat_detect("{{'<" FWBAR "User" FWBAR ">' + message['content'] + '<" FWBAR "Assistant" FWBAR ">'}}"),
                 SW_CHAT_DEEPSEEK3);
    CHECK(sw_chat_stop_strings(SW_CHAT_GPT_OSS)[0] != NULL && !strcmp(sw_chat_stop_strings(SW_CHAT_GPT_OSS)[0], "<|return|>"));
}

static void test_multi_turn(void)
{
    const struct sw_chat_msg m[4] = {
        { "user", "Hi" }, { "assistant", "Hello!" }, { "user", "Bye" }, { "assistant", "See you" },
    };
    struct sw_buf b = { 0 };
    CHECK_EQ_INT(sw_chat_format(SW_CHAT_LLAMA2, m, 3, 1, &b), 0);
    CHECK_EQ_STR(sw_buf_cstr(&b), "[INST] Hi [/INST] Hello! </s><s>[INST] Bye [/INST]");
    b.len = 0;
    CHECK_EQ_INT(sw_chat_format(SW_CHAT_MISTRAL, m, 3, 1, &b), 0);
    CHECK_EQ_STR(sw_buf_cstr(&b), "[INST] Hi [/INST]Hello!</s>[INST] Bye [/INST]");
    b.len = 0;
    CHECK_EQ_INT(sw_chat_format(SW_CHAT_CHATML, m, 4, 0, &b), 0);
    CHECK_EQ_STR(sw_buf_cstr(&b), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
                                  "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\nSee you<|im_end|>\n");
    b.len = 0;
    CHECK_EQ_INT(sw_chat_format(SW_CHAT_GEMMA, m, 2, 0, &b), 0);
    CHECK_EQ_STR(sw_buf_cstr(&b), "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n");
    /* Llama 2/3 and Gemma trim message texts, ChatML keeps them */
    const struct sw_chat_msg pad = { "user", "  Hi\n" };
    b.len = 0;
    CHECK_EQ_INT(sw_chat_format(SW_CHAT_LLAMA3, &pad, 1, 0, &b), 0);
    CHECK_EQ_STR(sw_buf_cstr(&b), "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
    b.len = 0;
    CHECK_EQ_INT(sw_chat_format(SW_CHAT_CHATML, &pad, 1, 0, &b), 0);
    CHECK_EQ_STR(sw_buf_cstr(&b), "<|im_start|>user\n  Hi\n<|im_end|>\n");
    const struct sw_chat_msg bad = { NULL, "x" };
    CHECK_EQ_INT(sw_chat_format(SW_CHAT_CHATML, &bad, 1, 0, &b), SW_EINVAL);
    sw_buf_free(&b);
}

static int warned;
static void count_warn(void *ud, enum sw_log_level level, const char *subsys, const char *msg)
{
    (void)ud; (void)msg;
    if (level == SW_LOG_WARN && !strcmp(subsys, "TOK")) warned++;
}

static void test_detect(void)
{
    /* fragments of the families' published templates */
    CHECK_EQ_INT(sw_chat_detect("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
                                "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"),
                 SW_CHAT_CHATML);
    CHECK_EQ_INT(sw_chat_detect("{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + "
                                "messages[0]['content'] %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"),
                 SW_CHAT_LLAMA2);
    CHECK_EQ_INT(sw_chat_detect("{% set content = '<|start_header_id|>' + message['role'] + "
                                "'<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"),
                 SW_CHAT_LLAMA3);
    CHECK_EQ_INT(sw_chat_detect("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
                                "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] "
                                "+ eos_token}}{% endif %}{% endfor %}"),
                 SW_CHAT_MISTRAL);
    CHECK_EQ_INT(sw_chat_detect("{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + "
                                "'\n'}}"),
                 SW_CHAT_PHI3);
    CHECK_EQ_INT(sw_chat_detect("{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + "
                                "'<end_of_turn>\n' }}"),
                 SW_CHAT_GEMMA);
    CHECK_EQ_INT(sw_chat_detect("{% if message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + "
                                "eos_token }}{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n' }}"),
                 SW_CHAT_ZEPHYR);
    sw_log_set(count_warn, NULL, SW_LOG_DEBUG);
    warned = 0;
    CHECK_EQ_INT(sw_chat_detect("{{ messages | some_unknown_format }}"), SW_CHAT_CHATML);
    CHECK_EQ_INT(warned, 1);
    CHECK_EQ_INT(sw_chat_detect(NULL), SW_CHAT_CHATML);
    CHECK_EQ_INT(warned, 1); /* no template is not a surprise */
    sw_log_set(NULL, NULL, SW_LOG_WARN);

    enum sw_chat_tmpl t;
    CHECK_EQ_INT(sw_chat_from_name("gemma", &t), 0);
    CHECK_EQ_INT(t, SW_CHAT_GEMMA);
    CHECK_EQ_INT(sw_chat_from_name("nope", &t), SW_ENOTFOUND);
    for (int i = 0; i < SW_CHAT_COUNT_; i++) {
        CHECK_EQ_INT(sw_chat_from_name(sw_chat_name((enum sw_chat_tmpl)i), &t), 0);
        CHECK_EQ_INT(t, i);
        CHECK(sw_chat_stop_strings((enum sw_chat_tmpl)i)[0] != NULL);
    }
    CHECK_EQ_STR(sw_chat_stop_strings(SW_CHAT_CHATML)[0], "<|im_end|>");
    CHECK_EQ_STR(sw_chat_stop_strings(SW_CHAT_LLAMA3)[0], "<|eot_id|>");
}

static void test_stop_tokens(void)
{
    const char *toks[] = { "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "a" };
    int32_t types[] = { 2, 3, 3, 3, 3, 1 };
    struct sw_tok_desc d = { 0 };
    d.model = "llama";
    d.n_tokens = 6;
    d.tokens = toks;
    d.types = types;
    d.bos_id = 1; d.eos_id = 2; d.unk_id = 0; d.pad_id = -1;
    d.add_bos = -1; d.add_eos = -1; d.add_space_prefix = -1;
    struct sw_tok *t = NULL;
    char err[256];
    CHECK_EQ_INT(sw_tok_new(&d, &t, err, sizeof err), 0);
    if (!t) return;
    int32_t ids[8];
    size_t n = sw_chat_stop_tokens(SW_CHAT_CHATML, t, ids, 8);
    CHECK_EQ_INT(n, 2); /* </s> (EOS) and <|im_end|> (also the EOT) */
    CHECK(n >= 2 && ids[0] == 2 && ids[1] == 4);
    CHECK(sw_tok_is_eog(t, 4) && sw_tok_is_eog(t, 2) && !sw_tok_is_eog(t, 5));
    sw_tok_free(t);
}

/* The Phi-3 fixture carries a real chat template: detection and stop tokens on it. */
static void test_phi3_file(void)
{
    const char *data = sw_test_shared_data();
    if (!data) { fprintf(stderr, "(shared data absent: skipped)\n"); return; }
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-phi-3.gguf", data);
    struct sw_gguf *g = NULL;
    if (sw_gguf_open(path, &g, NULL, 0)) { fprintf(stderr, "(no %s: skipped)\n", path); return; }
    struct sw_tok *t = NULL;
    char err[256];
    CHECK_EQ_INT(sw_tok_from_gguf(g, &t, err, sizeof err), 0);
    sw_gguf_close(g);
    if (!t) return;
    CHECK(sw_tok_chat_template(t) != NULL);
    enum sw_chat_tmpl tm = sw_chat_detect(sw_tok_chat_template(t));
    CHECK_EQ_INT(tm, SW_CHAT_PHI3);
    int32_t ids[8];
    size_t n = sw_chat_stop_tokens(tm, t, ids, 8);
    int has_end = 0, has_eos = 0;
    for (size_t i = 0; i < n && i < 8; i++) {
        has_end |= ids[i] == sw_tok_find(t, "<|end|>", 7);
        has_eos |= ids[i] == sw_tok_eos(t);
    }
    CHECK(has_end && has_eos);
    /* the formatted prompt tokenizes to its control tokens */
    struct sw_buf b = { 0 };
    const struct sw_chat_msg m = { "user", "Hi" };
    CHECK_EQ_INT(sw_chat_format(tm, &m, 1, 1, &b), 0);
    int32_t *tok = NULL;
    size_t nt = 0;
    CHECK_EQ_INT(sw_tok_encode(t, (const char *)b.data, b.len, SW_TOK_ADD_BOS | SW_TOK_PARSE_SPECIAL, &tok, &nt), 0);
    CHECK(nt >= 4 && tok[0] == sw_tok_bos(t) && tok[1] == sw_tok_find(t, "<|user|>", 8));
    /* Phi-3's special tokens eat the whitespace after them (rstrip), as in its HF tokenizer */
    CHECK(nt >= 2 && tok[nt - 1] == sw_tok_find(t, "<|assistant|>", 13));
    free(tok);
    sw_buf_free(&b);
    sw_tok_free(t);
}

int main(void)
{
    SW_RUN(test_formats);
    SW_RUN(test_multi_turn);
    SW_RUN(test_detect);
    SW_RUN(test_stop_tokens);
    SW_RUN(test_phi3_file);
    return SW_TEST_DONE();
}
