/* malformed_cases.h — hand-made malformed GGUF files, byte by byte. Each case builds its bytes
 * and returns the byte offset the reader's error must name; the table gives the expected
 * error code and the field. gen_malformed.c writes them to tests/gguf/malformed/ (committed);
 * test_gguf_malformed.c checks both the in-memory bytes and the committed files. */
#ifndef SW_MALFORMED_CASES_H
#define SW_MALFORMED_CASES_H

#include <string.h>

#include "gguf/gguf.h"

static void mb_u32(struct sw_buf *b, uint32_t v)
{
    uint8_t x[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
    sw_buf_append(b, x, 4);
}

static void mb_u64(struct sw_buf *b, uint64_t v)
{
    mb_u32(b, (uint32_t)v);
    mb_u32(b, (uint32_t)(v >> 32));
}

static void mb_str(struct sw_buf *b, const char *s)
{
    mb_u64(b, strlen(s));
    sw_buf_append(b, s, strlen(s));
}

static void mb_header(struct sw_buf *b, uint64_t n_tensors, uint64_t n_kv)
{
    sw_buf_append(b, "GGUF", 4);
    mb_u32(b, 3);
    mb_u64(b, n_tensors);
    mb_u64(b, n_kv);
}

static void mb_kv_u32(struct sw_buf *b, const char *k, uint32_t v)
{
    mb_str(b, k);
    mb_u32(b, SW_GGUF_U32);
    mb_u32(b, v);
}

/* A tensor info; returns the offset of its "offset" field. */
static uint64_t mb_tinfo(struct sw_buf *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                         uint32_t type, uint64_t offset)
{
    mb_str(b, name);
    mb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) mb_u64(b, ne[i]);
    mb_u32(b, type);
    uint64_t at = b->len;
    mb_u64(b, offset);
    return at;
}

static void mb_pad(struct sw_buf *b, size_t align, size_t extra)
{
    while (b->len % align) sw_buf_append_byte(b, 0);
    for (size_t i = 0; i < extra; i++) sw_buf_append_byte(b, (uint8_t)i);
}

static uint64_t mc_empty(struct sw_buf *b) { (void)b; return 0; }

static uint64_t mc_truncated_header(struct sw_buf *b)
{
    sw_buf_append(b, "GGUF", 4);
    mb_u32(b, 3);
    mb_u32(b, 1); /* half of the tensor count */
    return 8;
}

static uint64_t mc_bad_magic(struct sw_buf *b)
{
    sw_buf_append(b, "GGML", 4);
    mb_u32(b, 3);
    mb_u64(b, 0);
    mb_u64(b, 0);
    return 0;
}

static uint64_t mc_version1(struct sw_buf *b)
{
    sw_buf_append(b, "GGUF", 4);
    mb_u32(b, 1);
    mb_u32(b, 0);
    mb_u32(b, 0);
    return 4;
}

static uint64_t mc_version_future(struct sw_buf *b)
{
    sw_buf_append(b, "GGUF", 4);
    mb_u32(b, 4);
    mb_u64(b, 0);
    mb_u64(b, 0);
    return 4;
}

static uint64_t mc_big_endian(struct sw_buf *b)
{
    static const uint8_t v[4] = { 0, 0, 0, 3 };
    sw_buf_append(b, "GGUF", 4);
    sw_buf_append(b, v, 4);
    mb_u64(b, 0);
    mb_u64(b, 0);
    return 4;
}

static uint64_t mc_absurd_kv_count(struct sw_buf *b)
{
    mb_header(b, 0, 1ull << 60);
    mb_kv_u32(b, "a", 1);
    return 16;
}

static uint64_t mc_absurd_tensor_count(struct sw_buf *b)
{
    mb_header(b, 1ull << 62, 0);
    return 8;
}

static uint64_t mc_key_longer_than_file(struct sw_buf *b)
{
    mb_header(b, 0, 1);
    mb_u64(b, 1000000000000ull);
    sw_buf_append(b, "general.architecture", 20);
    return 24;
}

static uint64_t mc_string_longer_than_file(struct sw_buf *b)
{
    mb_header(b, 0, 1);
    mb_str(b, "general.name");
    mb_u32(b, SW_GGUF_STRING);
    uint64_t at = b->len;
    mb_u64(b, 4096);
    sw_buf_append(b, "short", 5);
    return at;
}

static uint64_t mc_array_count_absurd(struct sw_buf *b)
{
    mb_header(b, 0, 1);
    mb_str(b, "tokenizer.ggml.scores");
    mb_u32(b, SW_GGUF_ARRAY);
    mb_u32(b, SW_GGUF_F32);
    uint64_t at = b->len;
    mb_u64(b, 1ull << 61);
    mb_u32(b, 0);
    return at;
}

static uint64_t mc_array_string_longer(struct sw_buf *b)
{
    mb_header(b, 0, 1);
    mb_str(b, "tokenizer.ggml.tokens");
    mb_u32(b, SW_GGUF_ARRAY);
    mb_u32(b, SW_GGUF_STRING);
    mb_u64(b, 2);
    mb_str(b, "<s>");
    uint64_t at = b->len;
    mb_u64(b, 1ull << 40);
    sw_buf_append(b, "abc", 3);
    return at;
}

static uint64_t mc_unknown_value_type(struct sw_buf *b)
{
    mb_header(b, 0, 1);
    mb_str(b, "general.x");
    uint64_t at = b->len;
    mb_u32(b, 13);
    mb_u32(b, 0);
    return at;
}

static uint64_t mc_unknown_array_elem_type(struct sw_buf *b)
{
    mb_header(b, 0, 1);
    mb_str(b, "general.x");
    mb_u32(b, SW_GGUF_ARRAY);
    uint64_t at = b->len;
    mb_u32(b, 42);
    mb_u64(b, 1);
    mb_u32(b, 0);
    return at;
}

static uint64_t mc_bad_bool(struct sw_buf *b)
{
    mb_header(b, 0, 1);
    mb_str(b, "general.flag");
    mb_u32(b, SW_GGUF_BOOL);
    uint64_t at = b->len;
    sw_buf_append_byte(b, 2);
    return at;
}

static uint64_t mc_duplicate_key(struct sw_buf *b)
{
    mb_header(b, 0, 2);
    mb_kv_u32(b, "llama.block_count", 2);
    uint64_t at = b->len;
    mb_kv_u32(b, "llama.block_count", 3);
    return at;
}

static uint64_t mc_empty_key(struct sw_buf *b)
{
    mb_header(b, 0, 1);
    mb_kv_u32(b, "", 2);
    return 24;
}

static uint64_t mc_nested_too_deep(struct sw_buf *b)
{
    mb_header(b, 0, 1);
    mb_str(b, "general.deep");
    mb_u32(b, SW_GGUF_ARRAY);
    uint64_t at = 0;
    for (int d = 1; d <= 10; d++) {
        if (d == 9) at = b->len; /* the 9th level is one too many */
        mb_u32(b, SW_GGUF_ARRAY);
        mb_u64(b, 1);
    }
    mb_u32(b, SW_GGUF_U8);
    mb_u64(b, 0);
    return at;
}

static uint64_t mc_truncated_kv_value(struct sw_buf *b)
{
    mb_header(b, 0, 1);
    mb_str(b, "general.size");
    mb_u32(b, SW_GGUF_U64);
    uint64_t at = b->len;
    mb_u32(b, 7);
    return at;
}

static uint64_t mc_alignment_not_pow2(struct sw_buf *b)
{
    mb_header(b, 0, 1);
    mb_kv_u32(b, "general.alignment", 48);
    return 24;
}

static uint64_t mc_alignment_zero(struct sw_buf *b)
{
    mb_header(b, 0, 1);
    mb_kv_u32(b, "general.alignment", 0);
    return 24;
}

static uint64_t mc_alignment_wrong_type(struct sw_buf *b)
{
    mb_header(b, 0, 1);
    mb_str(b, "general.alignment");
    mb_u32(b, SW_GGUF_U64);
    mb_u64(b, 32);
    return 24;
}

static uint64_t mc_tensor_name_too_long(struct sw_buf *b)
{
    uint64_t ne[1] = { 32 };
    mb_header(b, 1, 0);
    uint64_t at = b->len;
    mb_tinfo(b, "blk.0.a-name-that-is-much-longer-than-the-sixty-four-bytes-allowed.weight", 1, ne,
             SW_TYPE_F32, 0);
    mb_pad(b, 32, 128);
    return at;
}

static uint64_t mc_too_many_dims(struct sw_buf *b)
{
    uint64_t ne[5] = { 2, 2, 2, 2, 2 };
    mb_header(b, 1, 0);
    uint64_t at = b->len + 8 + 8; /* after the name */
    mb_tinfo(b, "t.weight", 5, ne, SW_TYPE_F32, 0);
    mb_pad(b, 32, 128);
    return at;
}

static uint64_t mc_unknown_type(struct sw_buf *b)
{
    uint64_t ne[1] = { 32 };
    mb_header(b, 1, 0);
    uint64_t at = b->len + 8 + 8 + 4 + 8;
    mb_tinfo(b, "t.weight", 1, ne, 77, 0);
    mb_pad(b, 32, 128);
    return at;
}

static uint64_t mc_removed_type(struct sw_buf *b)
{
    uint64_t ne[1] = { 32 };
    mb_header(b, 1, 0);
    uint64_t at = b->len + 8 + 8 + 4 + 8;
    mb_tinfo(b, "t.weight", 1, ne, 4 /* Q4_2, removed from ggml */, 0);
    mb_pad(b, 32, 128);
    return at;
}

static uint64_t mc_dim_overflow(struct sw_buf *b)
{
    uint64_t ne[2] = { 1ull << 62, 1ull << 62 };
    mb_header(b, 1, 0);
    uint64_t at = b->len + 8 + 8 + 4; /* the first dimension */
    mb_tinfo(b, "t.weight", 2, ne, SW_TYPE_F32, 0);
    mb_pad(b, 32, 64);
    return at;
}

static uint64_t mc_dim_negative(struct sw_buf *b)
{
    uint64_t ne[2] = { 32, 1ull << 63 };
    mb_header(b, 1, 0);
    uint64_t at = b->len + 8 + 8 + 4 + 8;
    mb_tinfo(b, "t.weight", 2, ne, SW_TYPE_F32, 0);
    mb_pad(b, 32, 64);
    return at;
}

static uint64_t mc_row_not_block_multiple(struct sw_buf *b)
{
    uint64_t ne[2] = { 100, 2 };
    mb_header(b, 1, 0);
    uint64_t at = b->len + 8 + 8 + 4; /* the row length */
    mb_tinfo(b, "t.weight", 2, ne, SW_TYPE_Q4_K, 0);
    mb_pad(b, 32, 1024);
    return at;
}

static uint64_t mc_misaligned_offset(struct sw_buf *b)
{
    uint64_t ne[1] = { 8 };
    mb_header(b, 2, 0);
    mb_tinfo(b, "a.weight", 1, ne, SW_TYPE_F32, 0);
    uint64_t at = mb_tinfo(b, "b.weight", 1, ne, SW_TYPE_F32, 40);
    mb_pad(b, 32, 128);
    return at;
}

static uint64_t mc_tensor_past_end(struct sw_buf *b)
{
    uint64_t ne[2] = { 64, 64 };
    mb_header(b, 1, 0);
    uint64_t at = mb_tinfo(b, "t.weight", 2, ne, SW_TYPE_F32, 0);
    mb_pad(b, 32, 1000); /* 16384 bytes needed */
    return at;
}

static uint64_t mc_offset_past_end(struct sw_buf *b)
{
    uint64_t ne[1] = { 8 };
    mb_header(b, 1, 0);
    uint64_t at = mb_tinfo(b, "t.weight", 1, ne, SW_TYPE_F32, 0xffffffffffffffe0ull);
    mb_pad(b, 32, 64);
    return at;
}

static uint64_t mc_overlapping_tensors(struct sw_buf *b)
{
    uint64_t ne[1] = { 16 }; /* 64 bytes each */
    mb_header(b, 2, 0);
    mb_tinfo(b, "a.weight", 1, ne, SW_TYPE_F32, 0);
    uint64_t at = mb_tinfo(b, "b.weight", 1, ne, SW_TYPE_F32, 32);
    mb_pad(b, 32, 128);
    return at;
}

static uint64_t mc_duplicate_tensor_name(struct sw_buf *b)
{
    uint64_t ne[1] = { 8 };
    mb_header(b, 2, 0);
    mb_tinfo(b, "t.weight", 1, ne, SW_TYPE_F32, 0);
    uint64_t at = b->len;
    mb_tinfo(b, "t.weight", 1, ne, SW_TYPE_F32, 32);
    mb_pad(b, 32, 64);
    return at;
}

static uint64_t mc_truncated_tensor_info(struct sw_buf *b)
{
    mb_header(b, 1, 0);
    mb_str(b, "t.weight");
    mb_u32(b, 2);
    mb_u64(b, 8);
    uint64_t at = b->len;
    mb_u32(b, 8); /* half of the second dimension */
    return at;
}

static uint64_t mc_data_section_missing(struct sw_buf *b)
{
    uint64_t ne[1] = { 8 };
    mb_header(b, 1, 0);
    mb_tinfo(b, "tt.weight", 1, ne, SW_TYPE_F32, 0); /* infos end at 65: data would start at 96 */
    return b->len; /* ends before the aligned data start */
}

struct malformed_case {
    const char *name;
    uint64_t (*build)(struct sw_buf *b);
    int rc;
    const char *field; /* must appear in the error, followed by " at byte <N>" */
};

static const struct malformed_case malformed_cases[] = {
    { "empty", mc_empty, SW_ECORRUPT, "magic" },
    { "truncated_header", mc_truncated_header, SW_ECORRUPT, "tensor count" },
    { "bad_magic", mc_bad_magic, SW_ECORRUPT, "magic" },
    { "version1", mc_version1, SW_EUNSUPPORTED, "version" },
    { "version_future", mc_version_future, SW_EUNSUPPORTED, "version" },
    { "big_endian", mc_big_endian, SW_EUNSUPPORTED, "version" },
    { "absurd_kv_count", mc_absurd_kv_count, SW_ECORRUPT, "metadata count" },
    { "absurd_tensor_count", mc_absurd_tensor_count, SW_ECORRUPT, "tensor count" },
    { "key_longer_than_file", mc_key_longer_than_file, SW_ECORRUPT, "metadata 0 key" },
    { "string_longer_than_file", mc_string_longer_than_file, SW_ECORRUPT, "\"general.name\" string value" },
    { "array_count_absurd", mc_array_count_absurd, SW_ECORRUPT, "array count" },
    { "array_string_longer_than_file", mc_array_string_longer, SW_ECORRUPT, "array string length" },
    { "unknown_value_type", mc_unknown_value_type, SW_ECORRUPT, "value type" },
    { "unknown_array_elem_type", mc_unknown_array_elem_type, SW_ECORRUPT, "array element type" },
    { "bad_bool", mc_bad_bool, SW_ECORRUPT, "bool value" },
    { "duplicate_key", mc_duplicate_key, SW_ECORRUPT, "\"llama.block_count\" key" },
    { "empty_key", mc_empty_key, SW_ECORRUPT, "key" },
    { "nested_too_deep", mc_nested_too_deep, SW_ETOOBIG, "array" },
    { "truncated_kv_value", mc_truncated_kv_value, SW_ECORRUPT, "value" },
    { "alignment_not_pow2", mc_alignment_not_pow2, SW_ECORRUPT, "\"general.alignment\" value" },
    { "alignment_zero", mc_alignment_zero, SW_ECORRUPT, "\"general.alignment\" value" },
    { "alignment_wrong_type", mc_alignment_wrong_type, SW_ECORRUPT, "\"general.alignment\" value type" },
    { "tensor_name_too_long", mc_tensor_name_too_long, SW_ETOOBIG, "tensor 0 name" },
    { "too_many_dims", mc_too_many_dims, SW_ECORRUPT, "\"t.weight\" n_dims" },
    { "unknown_type", mc_unknown_type, SW_EUNSUPPORTED, "\"t.weight\" type" },
    { "removed_type", mc_removed_type, SW_EUNSUPPORTED, "\"t.weight\" type" },
    { "dim_overflow", mc_dim_overflow, SW_ECORRUPT, "\"t.weight\" dimensions" },
    { "dim_negative", mc_dim_negative, SW_ECORRUPT, "\"t.weight\" dimension" },
    { "row_not_block_multiple", mc_row_not_block_multiple, SW_ECORRUPT, "\"t.weight\" dimension" },
    { "misaligned_offset", mc_misaligned_offset, SW_ECORRUPT, "\"b.weight\" offset" },
    { "tensor_past_end", mc_tensor_past_end, SW_ECORRUPT, "\"t.weight\" offset" },
    { "offset_past_end", mc_offset_past_end, SW_ECORRUPT, "\"t.weight\" offset" },
    { "overlapping_tensors", mc_overlapping_tensors, SW_ECORRUPT, "\"b.weight\" offset" },
    { "duplicate_tensor_name", mc_duplicate_tensor_name, SW_ECORRUPT, "\"t.weight\" name" },
    { "truncated_tensor_info", mc_truncated_tensor_info, SW_ECORRUPT, "\"t.weight\" dimension" },
    { "data_section_missing", mc_data_section_missing, SW_ECORRUPT, "data section" },
};

#endif
