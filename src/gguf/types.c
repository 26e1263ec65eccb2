/* types.c — the ggml tensor type table: name, elements per block and bytes per block of every
 * type a GGUF file may carry, so that any file can be inspected and split even where
 * src/infer cannot compute with the type. Block layouts follow ggml-common.h. */
#include "gguf.h"

#define QK_K 256u

/* Indexed by the GGUF type number. Gaps (4, 5: the removed Q4_2/Q4_3; 31–33 and 36–38: the
 * removed interleaved Q4_0_x_y / IQ4_NL_x_y repacks) have name NULL. */
static const struct sw_type_info type_table[SW_TYPE_COUNT_] = {
    [SW_TYPE_F32] = { "F32", 1, 4 },
    [SW_TYPE_F16] = { "F16", 1, 2 },
    [SW_TYPE_Q4_0] = { "Q4_0", 32, 2 + 16 },          /* d, 32 nibbles */
    [SW_TYPE_Q4_1] = { "Q4_1", 32, 2 + 2 + 16 },      /* d, m, 32 nibbles */
    [SW_TYPE_Q5_0] = { "Q5_0", 32, 2 + 4 + 16 },      /* d, qh, qs */
    [SW_TYPE_Q5_1] = { "Q5_1", 32, 2 + 2 + 4 + 16 },  /* d, m, qh, qs */
    [SW_TYPE_Q8_0] = { "Q8_0", 32, 2 + 32 },          /* d, 32 int8 */
    [SW_TYPE_Q8_1] = { "Q8_1", 32, 2 + 2 + 32 },      /* d, s, 32 int8 */
    [SW_TYPE_Q2_K] = { "Q2_K", QK_K, QK_K / 16 + QK_K / 4 + 2 + 2 },
    [SW_TYPE_Q3_K] = { "Q3_K", QK_K, QK_K / 8 + QK_K / 4 + 12 + 2 },
    [SW_TYPE_Q4_K] = { "Q4_K", QK_K, 2 + 2 + 12 + QK_K / 2 },
    [SW_TYPE_Q5_K] = { "Q5_K", QK_K, 2 + 2 + 12 + QK_K / 8 + QK_K / 2 },
    [SW_TYPE_Q6_K] = { "Q6_K", QK_K, QK_K / 2 + QK_K / 4 + QK_K / 16 + 2 },
    [SW_TYPE_Q8_K] = { "Q8_K", QK_K, 4 + QK_K + QK_K / 16 * 2 },
    [SW_TYPE_IQ2_XXS] = { "IQ2_XXS", QK_K, 2 + QK_K / 8 * 2 },
    [SW_TYPE_IQ2_XS] = { "IQ2_XS", QK_K, 2 + QK_K / 8 * 2 + QK_K / 32 },
    [SW_TYPE_IQ3_XXS] = { "IQ3_XXS", QK_K, 2 + 3 * QK_K / 8 },
    [SW_TYPE_IQ1_S] = { "IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 32 * 2 },
    [SW_TYPE_IQ4_NL] = { "IQ4_NL", 32, 2 + 16 },
    [SW_TYPE_IQ3_S] = { "IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 32 + QK_K / 8 + QK_K / 64 },
    [SW_TYPE_IQ2_S] = { "IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 32 + QK_K / 32 },
    [SW_TYPE_IQ4_XS] = { "IQ4_XS", QK_K, 2 + 2 + QK_K / 64 + QK_K / 2 },
    [SW_TYPE_I8] = { "I8", 1, 1 },
    [SW_TYPE_I16] = { "I16", 1, 2 },
    [SW_TYPE_I32] = { "I32", 1, 4 },
    [SW_TYPE_I64] = { "I64", 1, 8 },
    [SW_TYPE_F64] = { "F64", 1, 8 },
    [SW_TYPE_IQ1_M] = { "IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32 },
    [SW_TYPE_BF16] = { "BF16", 1, 2 },
    [SW_TYPE_TQ1_0] = { "TQ1_0", QK_K, (QK_K - 4 * QK_K / 64) / 5 + QK_K / 64 + 2 },
    [SW_TYPE_TQ2_0] = { "TQ2_0", QK_K, QK_K / 4 + 2 },
    [SW_TYPE_MXFP4] = { "MXFP4", 32, 1 + 16 },        /* e8m0 scale, 32 fp4 */
};

/* Pin the layouts that src/infer computes with (ggml-common.h sizes). */
_Static_assert(2 + 16 == 18, "Q4_0 block");
_Static_assert(2 + 2 + 12 + QK_K / 2 == 144, "Q4_K block");
_Static_assert(2 + 2 + 12 + QK_K / 8 + QK_K / 2 == 176, "Q5_K block");
_Static_assert(QK_K / 2 + QK_K / 4 + QK_K / 16 + 2 == 210, "Q6_K block");
_Static_assert(QK_K / 16 + QK_K / 4 + 2 + 2 == 84, "Q2_K block");
_Static_assert(QK_K / 8 + QK_K / 4 + 12 + 2 == 110, "Q3_K block");
_Static_assert(4 + QK_K + QK_K / 16 * 2 == 292, "Q8_K block");
_Static_assert(2 + QK_K / 4 + QK_K / 32 + QK_K / 8 + QK_K / 64 == 110, "IQ3_S block");
_Static_assert((QK_K - 4 * QK_K / 64) / 5 + QK_K / 64 + 2 == 54, "TQ1_0 block");

const struct sw_type_info *sw_gguf_type_info(uint32_t type)
{
    if (type >= SW_TYPE_COUNT_ || !type_table[type].name) return NULL;
    return &type_table[type];
}

int sw_gguf_type_bytes(uint32_t type, uint64_t n_elems, uint64_t *bytes_out)
{
    const struct sw_type_info *ti = sw_gguf_type_info(type);
    if (!ti) return SW_EUNSUPPORTED;
    if (n_elems % ti->block_size) return SW_EINVAL;
    uint64_t blocks = n_elems / ti->block_size;
    if (blocks > UINT64_MAX / ti->type_size) return SW_ERANGE;
    *bytes_out = blocks * ti->type_size;
    return 0;
}

const char *sw_gguf_vtype_name(uint32_t vtype)
{
    static const char *const names[] = { "u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                         "bool", "string", "array", "u64", "i64", "f64" };
    return vtype < SW_ARRAY_LEN(names) ? names[vtype] : "?";
}
