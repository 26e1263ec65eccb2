/* tok.h — text in and out of a model: the tokenizer built from GGUF `tokenizer.*` metadata
 * (SentencePiece-style `llama`, GPT-2 byte-level BPE `gpt2`, WordPiece `bert`), the
 * sampler that turns logits into a token, and the chat templates that turn messages into
 * a prompt.
 * Not for: the forward pass (infer.h) or moving anything across the network.
 * Included by infer.h; see docs/tokenizer.md for the algorithms and their sources. */
#ifndef SW_TOK_H
#define SW_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

struct sw_gguf;

/* ================================================================ tokenizer */

/* Token types as stored in tokenizer.ggml.token_type (llama.cpp numbering). */
enum sw_tok_type {
    SW_TOKTYPE_UNDEFINED = 0,
    SW_TOKTYPE_NORMAL = 1,
    SW_TOKTYPE_UNKNOWN = 2,
    SW_TOKTYPE_CONTROL = 3,
    SW_TOKTYPE_USER_DEFINED = 4,
    SW_TOKTYPE_UNUSED = 5,
    SW_TOKTYPE_BYTE = 6,
};

enum sw_tok_model {
    SW_TOK_MODEL_SPM = 1, /* tokenizer.ggml.model = "llama": SentencePiece BPE by score */
    SW_TOK_MODEL_BPE = 2, /* "gpt2": byte-level BPE by merge rank + pre-tokenizer regexes */
    SW_TOK_MODEL_WPM = 3, /* "bert": WordPiece, greedy longest match (embedding models) */
};

/* Caps on what a tokenizer accepts from a file (bad input is data, not a crash). */
#define SW_TOK_MAX_VOCAB 4000000u      /* tokens */
#define SW_TOK_MAX_TOKEN_BYTES 65536u  /* bytes of one token's text */
#define SW_TOK_MAX_MERGES 4000000u

struct sw_tok; /* an immutable tokenizer: thread-safe for concurrent encode/decode */

/* A vocabulary described in memory (for tests, fuzzing, synthetic models). Every pointer
 * is borrowed for the call only: sw_tok_new copies what it keeps. */
struct sw_tok_desc {
    const char *model;             /* "llama", "gpt2" or "bert" */
    const char *pre;               /* tokenizer.ggml.pre, NULL -> "default" */
    uint32_t n_tokens;
    const char *const *tokens;     /* n_tokens texts (NUL-terminated unless token_lens) */
    const uint32_t *token_lens;    /* optional byte lengths (texts may then hold NULs) */
    const float *scores;           /* optional (SPM needs them; missing -> 0) */
    const int32_t *types;          /* optional enum sw_tok_type (missing -> NORMAL) */
    uint32_t n_merges;
    const char *const *merges;     /* BPE: "left right", rank = index */
    int32_t bos_id, eos_id, unk_id, pad_id; /* -1 when absent */
    int add_bos;                   /* -1: model default (SPM yes, BPE no) */
    int add_eos;                   /* -1: model default (no) */
    int add_space_prefix;          /* -1: model default (SPM yes, BPE no) */
    const char *chat_template;     /* optional Jinja text */
};

/* Builds a tokenizer from a GGUF file's tokenizer.* keys. The tokenizer copies what it
 * needs: it does not borrow from g (g may be closed afterwards). Errors: SW_ENOTFOUND
 * (no tokenizer.ggml.model / tokens), SW_EUNSUPPORTED (model other than llama/gpt2/bert, or an
 * unknown tokenizer.ggml.pre — the message names it), SW_ECORRUPT (arrays of the wrong
 * type or length, ids out of range), SW_ETOOBIG, SW_ENOMEM. err gets a message naming the
 * key. *out is NULL on failure. */
int sw_tok_from_gguf(const struct sw_gguf *g, struct sw_tok **out, char *err, size_t err_len);
/* Same from an in-memory description. */
int sw_tok_new(const struct sw_tok_desc *d, struct sw_tok **out, char *err, size_t err_len);
void sw_tok_free(struct sw_tok *t); /* NULL harmless */

enum sw_tok_model sw_tok_model_kind(const struct sw_tok *t);
const char *sw_tok_pre(const struct sw_tok *t); /* pre-tokenizer name in use ("default" ...) */
uint32_t sw_tok_n_vocab(const struct sw_tok *t);
int32_t sw_tok_bos(const struct sw_tok *t);  /* -1 when the model has none */
int32_t sw_tok_eos(const struct sw_tok *t);
int32_t sw_tok_eot(const struct sw_tok *t);  /* end-of-turn (<|eot_id|>, <|im_end|>, <|end|>, <end_of_turn>), -1 if none */
int32_t sw_tok_unk(const struct sw_tok *t);
int32_t sw_tok_pad(const struct sw_tok *t);
int sw_tok_adds_bos(const struct sw_tok *t); /* tokenizer.ggml.add_bos_token (or model default) */
int sw_tok_adds_eos(const struct sw_tok *t);
/* True for tokens that end generation: EOS, EOT and the other end-of-turn control tokens
 * of the vocabulary (<|im_end|>, <|eot_id|>, <|end|>, <|endoftext|>, <end_of_turn>, </s>). */
int sw_tok_is_eog(const struct sw_tok *t, int32_t id);
/* enum sw_tok_type of a token; SW_TOKTYPE_UNDEFINED for an id out of range. */
int sw_tok_type_of(const struct sw_tok *t, int32_t id);
/* Raw vocabulary text of a token (not decoded: U+2581 / byte-level characters as stored),
 * borrowed from t; NULL for an id out of range. len_out may be NULL. */
const char *sw_tok_text(const struct sw_tok *t, int32_t id, size_t *len_out);
/* Id of the token whose raw text is exactly s[0..len), or -1. */
int32_t sw_tok_find(const struct sw_tok *t, const char *s, size_t len);
/* tokenizer.chat_template text, borrowed from t; NULL when absent. */
const char *sw_tok_chat_template(const struct sw_tok *t);

/* Encode flags. */
#define SW_TOK_ADD_BOS 1u       /* prepend BOS when the model asks for it (add_bos_token) */
#define SW_TOK_ADD_EOS 2u       /* append EOS when the model asks for it (add_eos_token) */
#define SW_TOK_PARSE_SPECIAL 4u /* text like "<|im_end|>" becomes that control token;
                                 * without it control tokens are never produced from text
                                 * (user-defined tokens still are, as in llama.cpp) */

/* Tokenizes text[0..len) (any bytes; invalid UTF-8 never fails). *ids_out is malloc'd
 * (caller frees; NULL when *n_out is 0). Returns 0, SW_ENOMEM, or SW_ETOOBIG when len
 * exceeds SW_TOK_MAX_TEXT. */
#define SW_TOK_MAX_TEXT (256u << 20)
int sw_tok_encode(const struct sw_tok *t, const char *text, size_t len, unsigned flags,
                  int32_t **ids_out, size_t *n_out);

/* Decode flags. */
#define SW_TOK_DECODE_SPECIAL 1u /* write control tokens' text (<|im_end|>); default: nothing */
#define SW_TOK_DECODE_NO_STRIP 2u /* keep the leading space SPM adds (see below) */

/* Appends the text of ids to out: byte tokens become their raw byte, U+2581 a space (SPM),
 * byte-level characters their bytes (BPE). For SPM with add_space_prefix, the one space
 * the encoder put in front of the text is removed from the first piece (after a leading
 * BOS), as llama.cpp does, so decode(encode(x)) == x for lossless vocabularies.
 * Ids out of range are skipped. Returns 0 or SW_ENOMEM. */
int sw_tok_decode(const struct sw_tok *t, const int32_t *ids, size_t n, unsigned flags,
                  struct sw_buf *out);

/* The text of one token on its own (no prefix stripping), written to out (at most cap
 * bytes, not NUL-terminated). Returns the number of bytes the piece needs (may exceed
 * cap: nothing is written then), or SW_ERANGE for an id out of range. */
int sw_tok_piece(const struct sw_tok *t, int32_t id, unsigned flags, char *out, size_t cap);

/* Streaming detokenizer for generation: feeds tokens one at a time and emits only complete
 * UTF-8 sequences (a character split across byte tokens is held back until complete), and
 * strips the SPM leading space when the stream starts at the beginning of the text. */
struct sw_tok_stream {
    const struct sw_tok *tok; /* borrowed */
    unsigned flags;           /* SW_TOK_DECODE_* */
    int at_start;             /* no text emitted yet */
    uint8_t pending[8];
    uint32_t n_pending;
};
/* at_text_start: 1 when the first token pushed begins the text (prompt start), 0 when the
 * stream continues a prompt that already produced text (typical for generation). */
void sw_tok_stream_init(struct sw_tok_stream *s, const struct sw_tok *t, unsigned flags,
                        int at_text_start);
/* Appends to out the text that became complete. Returns 0 or SW_ENOMEM. */
int sw_tok_stream_push(struct sw_tok_stream *s, int32_t id, struct sw_buf *out);
/* Appends any held bytes (an incomplete sequence at the end, written as is). */
int sw_tok_stream_flush(struct sw_tok_stream *s, struct sw_buf *out);

/* ================================================================ sampler */

/* Sampling parameters; they travel with a pipeline session (see sw_sampler_save). The
 * order of the filters is fixed: repetition penalty, top-k, top-p, min-p, temperature,
 * then a draw from the softmax (llama.cpp's default chain order). */
struct sw_sampler_params {
    float temperature;      /* <= 0: greedy (argmax after the penalty) */
    uint32_t top_k;         /* 0: off */
    float top_p;            /* >= 1: off */
    float min_p;            /* <= 0: off */
    float repeat_penalty;   /* 1: off; > 1 discourages tokens among the last repeat_last_n */
    uint32_t repeat_last_n; /* window of recent tokens for the penalty (0: off), <= SW_SAMPLER_MAX_WINDOW */
    uint64_t seed;          /* same seed, same logits -> same tokens on every machine */
};
#define SW_SAMPLER_MAX_WINDOW 4096u

/* Defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1.0,
 * repeat_last_n 64, seed 0. */
void sw_sampler_params_default(struct sw_sampler_params *p);

struct sw_sampler;
struct sw_gvocab;

/* Creates a sampler for a vocabulary of n_vocab logits. SW_EINVAL for bad parameters
 * (NaN, negative, window too big, n_vocab 0). */
int sw_sampler_new(const struct sw_sampler_params *p, uint32_t n_vocab, struct sw_sampler **out);
void sw_sampler_free(struct sw_sampler *s); /* NULL harmless */
const struct sw_sampler_params *sw_sampler_params(const struct sw_sampler *s);

/* Records tokens in the recent-token window (the prompt, before generating). */
void sw_sampler_accept(struct sw_sampler *s, const int32_t *ids, size_t n);
/* Picks the next token from logits[0..n_vocab) (borrowed, not modified), records it in the
 * window and advances the RNG. Returns the token id (>= 0), or SW_EINVAL when every logit
 * is NaN/-inf. */
int32_t sw_sampler_sample(struct sw_sampler *s, const float *logits);
/* Spot checks of a pipeline's last stage (swarm/spotcheck.c): could an honest sampler in
 * this state have drawn `id` from logits that differ from `logits` by at most `tol` each
 * (two honest kernels' rounding)? Greedy: id's logit (after the penalty, among the tokens
 * the grammar allows) is within 2*tol of the best. Sampling: id passes the filters with
 * that slack (fewer than top_k tokens surely better, min-p, and the mass of the tokens
 * surely better below top_p * e^(4*tol)); the draw itself is not reproduced (near-ties
 * reorder the candidates). Then advances the state as if id had been drawn (window, RNG,
 * grammar), so the next position is checked from the same state as the node's. Returns 0
 * consistent, 1 not (*gap: how far id's logit is below the best, in logits; why: which
 * rule), SW_ESTATE (grammar without the vocabulary), SW_ENOMEM. */
int sw_sampler_check(struct sw_sampler *s, const float *logits, int32_t id, float tol, float *gap, char *why,
                     size_t why_len);
/* Forgets the window and reseeds the RNG from params.seed. */
void sw_sampler_reset(struct sw_sampler *s);

/* Log probabilities (natural log) of the model's distribution at a sampled position: the
 * logits after the repetition penalty, before the grammar mask, temperature and filters. */
#define SW_SAMPLER_MAX_TOP_LOGPROBS 20u
struct sw_sampler_logprobs {
    float logprob;           /* of the token sampled */
    uint32_t n_top;
    int32_t top_id[SW_SAMPLER_MAX_TOP_LOGPROBS]; /* the most likely tokens, best first */
    float top_lp[SW_SAMPLER_MAX_TOP_LOGPROBS];
};
/* Records each sampled token's log probability and the top_k (<= 20) best alternatives
 * (they travel in the state blob: the entry of a pipeline reads them from TOKEN_OUT). */
int sw_sampler_set_logprobs(struct sw_sampler *s, int on, uint32_t top_k);
/* Those of the last token sampled; NULL when off. */
const struct sw_sampler_logprobs *sw_sampler_last_logprobs(const struct sw_sampler *s);
/* The last token's log probabilities in a state blob, without loading it (SW_ENOTFOUND:
 * the blob has none; SW_ECORRUPT). */
int sw_sampler_blob_logprobs(const uint8_t *p, size_t len, struct sw_sampler_logprobs *out);
/* Constrains sampling to a grammar (sw_gbuild_finish bytes, copied; the state starts at its
 * beginning). Sampling then needs the vocabulary's bytes (sw_sampler_set_vocab) where the
 * logits are: SW_ESTATE from sw_sampler_sample without it. */
int sw_sampler_set_grammar(struct sw_sampler *s, const uint8_t *g, size_t len);
int sw_sampler_has_grammar(const struct sw_sampler *s);
int sw_sampler_set_vocab(struct sw_sampler *s, const struct sw_gvocab *v); /* borrowed */

/* Serialises the whole sampler state (parameters, RNG state, recent tokens) into a
 * versioned little-endian blob appended to out; sw_sampler_load rebuilds an identical
 * sampler (the next draws are the same). Load checks every length against the blob
 * (SW_ECORRUPT, SW_EUNSUPPORTED for another version). */
int sw_sampler_save(const struct sw_sampler *s, struct sw_buf *out);
int sw_sampler_load(const uint8_t *p, size_t len, uint32_t n_vocab, struct sw_sampler **out);

/* ================================================================ grammars */

/* Constrained decoding (grammar.c): a context-free grammar over bytes, kept as a set of
 * parse stacks while tokens are accepted, and a mask over the vocabulary (which tokens'
 * bytes the grammar can take next). Grammars are built with sw_gbuild_* (the API compiles
 * JSON schemas with it: src/api/schema.c) and travel as bytes (sw_gbuild_finish ->
 * sw_grammar_load). A rule is a list of alternatives, each a sequence of byte classes and
 * references to rules; an empty alternative matches nothing (epsilon). Left recursion (a
 * rule reaching itself before any byte) is refused when a state is first made. */
#define SW_GRAMMAR_MAX_RULES 4096u
#define SW_GRAMMAR_MAX_CODE 8192u    /* words of a compiled grammar (32 KiB) */
#define SW_GRAMMAR_MAX_STACKS 64u    /* parse stacks alive at once */
#define SW_GRAMMAR_MAX_STATE 4096u   /* words of all stacks together (16 KiB): a sampler state
                                        with its grammar fits a pipeline's 64 KiB blob */
#define SW_GRAMMAR_MAX_DEPTH 256u    /* positions on one stack (nesting) */

struct sw_gbuild;
int sw_gbuild_new(struct sw_gbuild **out);
void sw_gbuild_free(struct sw_gbuild *b); /* NULL harmless */
/* A new rule without alternatives yet: its id (>= 0), or SW_ETOOBIG / SW_ENOMEM. */
int32_t sw_gbuild_rule(struct sw_gbuild *b);
/* Opens a new (empty) alternative of rule; the calls below append to it. */
int sw_gbuild_alt(struct sw_gbuild *b, int32_t rule);
/* One byte from any of the ranges [lo[i], hi[i]]. */
int sw_gbuild_chars(struct sw_gbuild *b, int32_t rule, const uint8_t *lo, const uint8_t *hi, size_t n_ranges);
int sw_gbuild_lit(struct sw_gbuild *b, int32_t rule, const char *s, size_t n); /* these bytes, in order */
int sw_gbuild_ref(struct sw_gbuild *b, int32_t rule, int32_t ref);
/* The grammar whose start is root, serialised (appended to out). SW_ETOOBIG past the caps,
 * SW_EINVAL (err says why: a rule without alternatives, a reference to no rule). */
int sw_gbuild_finish(struct sw_gbuild *b, int32_t root, struct sw_buf *out, char *err, size_t err_len);

struct sw_grammar;   /* immutable once loaded */
/* Checks every offset, reference and range (SW_ECORRUPT). */
int sw_grammar_load(const uint8_t *p, size_t len, struct sw_grammar **out);
void sw_grammar_free(struct sw_grammar *g);

/* Where a generation is in the grammar (a set of parse stacks). */
struct sw_gstate;
/* The start state; SW_EINVAL when the grammar recurses without consuming a byte (or needs
 * more stacks than the caps allow). The state borrows g. */
int sw_gstate_new(const struct sw_grammar *g, struct sw_gstate **out);
void sw_gstate_free(struct sw_gstate *s);
/* Feeds bytes: 0 (taken, the state moved on) or SW_EINVAL (the grammar cannot take them:
 * the state is unchanged). */
int sw_gstate_feed(struct sw_gstate *s, const uint8_t *p, size_t n);
int sw_gstate_can_end(const struct sw_gstate *s); /* the text so far is a whole sentence */
int sw_gstate_at_end(const struct sw_gstate *s);  /* ... and nothing more may follow */
int sw_gstate_save(const struct sw_gstate *s, struct sw_buf *out);
int sw_gstate_load(const struct sw_grammar *g, const uint8_t *p, size_t len, struct sw_gstate **out);

/* A vocabulary's token bytes for masking (a byte trie), built once per tokenizer. */
struct sw_gvocab;
int sw_gvocab_new(const struct sw_tok *t, struct sw_gvocab **out);
void sw_gvocab_free(struct sw_gvocab *v);
uint32_t sw_gvocab_n(const struct sw_gvocab *v);
/* May token id come next? End-of-generation tokens only where the text can end; tokens
 * without bytes (other control tokens) never. */
int sw_gstate_allows(const struct sw_gstate *s, const struct sw_gvocab *v, int32_t id);
/* allowed[i] = sw_gstate_allows(s, v, i) for every token, by one walk of the trie. */
int sw_gstate_mask(const struct sw_gstate *s, const struct sw_gvocab *v, uint8_t *allowed);
/* Takes token id (its bytes; an end-of-generation token ends the text). SW_EINVAL when not
 * allowed (the state is unchanged). */
int sw_gstate_accept(struct sw_gstate *s, const struct sw_gvocab *v, int32_t id);

/* ================================================================ chat templates */

enum sw_chat_tmpl {
    SW_CHAT_CHATML = 0, /* <|im_start|>role\ncontent<|im_end|>\n */
    SW_CHAT_LLAMA2,     /* [INST] <<SYS>>\n...\n<</SYS>>\n\nuser [/INST] assistant</s> */
    SW_CHAT_LLAMA3,     /* <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> */
    SW_CHAT_MISTRAL,    /* [INST] user [/INST] assistant</s> (system folded into the first user turn) */
    SW_CHAT_PHI3,       /* <|role|>\ncontent<|end|>\n */
    SW_CHAT_GEMMA,      /* <start_of_turn>user\ncontent<end_of_turn>\n (assistant -> model) */
    SW_CHAT_ZEPHYR,     /* <|role|>\ncontent</s>\n */
    SW_CHAT_DEEPSEEK3,  /* system\n\n<｜User｜>user<｜Assistant｜>answer<｜end▁of▁sentence｜> */
    SW_CHAT_GPT_OSS,    /* <|start|>role<|message|>content<|end|> (Harmony; assistant: <|return|>) */
    SW_CHAT_COUNT_
};

struct sw_chat_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
};

/* Detects the family from a Jinja chat template's text (string heuristics). NULL or an
 * unknown template gives ChatML, with a WARN logged (subsystem "TOK") for an unknown one. */
enum sw_chat_tmpl sw_chat_detect(const char *jinja);
const char *sw_chat_name(enum sw_chat_tmpl t);           /* "chatml", "llama2", ... */
int sw_chat_from_name(const char *name, enum sw_chat_tmpl *out); /* SW_ENOTFOUND */

/* Formats messages into a prompt appended to out; add_generation_prompt opens the
 * assistant's turn. The text contains no BOS (the tokenizer adds it with SW_TOK_ADD_BOS)
 * and should be encoded with SW_TOK_PARSE_SPECIAL. Returns 0, SW_EINVAL (NULL role or
 * content), SW_ENOMEM. */
int sw_chat_format(enum sw_chat_tmpl t, const struct sw_chat_msg *msgs, size_t n_msgs,
                   int add_generation_prompt, struct sw_buf *out);
/* Strings that end the assistant's turn for this template (NULL-terminated static list),
 * e.g. "<|im_end|>", "<|eot_id|>". Generation stops when one of them is produced. */
const char *const *sw_chat_stop_strings(enum sw_chat_tmpl t);
/* The stop strings that are single tokens of t's vocabulary, plus EOS/EOT: writes up to
 * cap ids into ids_out and returns how many there are. */
size_t sw_chat_stop_tokens(enum sw_chat_tmpl tmpl, const struct sw_tok *t, int32_t *ids_out,
                           size_t cap);

#endif
