/* unicode.c — the little Unicode the tokenizer needs: UTF-8 coding, the major general
 * category of a code point and the White_Space property, from the generated tables in
 * unicode_tables.c (scripts/gen_unicode_tables.py). */
#include "tok_impl.h"

int sw__gc(uint32_t cp)
{
    if (cp < 0x80) return sw__ucat_ascii[cp];
    if (cp > 0x10FFFF) return SW__GC_CN;
    /* Last run whose first code point is <= cp. */
    size_t lo = 0, hi = sw__ucat_n_runs;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((sw__ucat_runs[mid] >> 5) <= cp) lo = mid;
        else hi = mid;
    }
    return (int)(sw__ucat_runs[lo] & 31u);
}

int sw__ucat(uint32_t cp)
{
    static const uint8_t major[SW__GC_CN + 1] = {
        SW__UCAT_C, SW__UCAT_L, SW__UCAT_L, SW__UCAT_L, SW__UCAT_L, SW__UCAT_L, SW__UCAT_M, SW__UCAT_M,
        SW__UCAT_M, SW__UCAT_N, SW__UCAT_N, SW__UCAT_N, SW__UCAT_P, SW__UCAT_P, SW__UCAT_P, SW__UCAT_P,
        SW__UCAT_P, SW__UCAT_P, SW__UCAT_P, SW__UCAT_S, SW__UCAT_S, SW__UCAT_S, SW__UCAT_S, SW__UCAT_Z,
        SW__UCAT_Z, SW__UCAT_Z, SW__UCAT_C, SW__UCAT_C, SW__UCAT_C, SW__UCAT_C, SW__UCAT_C,
    };
    return major[sw__gc(cp)];
}

static uint32_t pair_lookup(const uint32_t (*pairs)[2], size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (pairs[mid][0] == cp) return pairs[mid][1];
        if (pairs[mid][0] < cp) lo = mid + 1;
        else hi = mid;
    }
    return cp;
}

uint32_t sw__nfd_first_cp(uint32_t cp)
{
    if (cp < 0xC0) return cp;
    /* Hangul syllables decompose arithmetically (Unicode 15.0, section 3.12): the first
     * code point is the leading consonant. */
    if (cp >= 0xAC00 && cp <= 0xD7A3) return 0x1100 + (cp - 0xAC00) / (21 * 28);
    return pair_lookup(sw__nfd_first, sw__nfd_first_n, cp);
}

uint32_t sw__tolower(uint32_t cp)
{
    if (cp < 0x80) return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    return pair_lookup(sw__lower, sw__lower_n, cp);
}

int sw__is_space(uint32_t cp)
{
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    for (size_t i = 0; i < sw__white_space_n; i++)
        if (cp >= sw__white_space[i][0] && cp <= sw__white_space[i][1]) return 1;
    return 0;
}

size_t sw__utf8_lead_len(uint8_t c)
{
    static const uint8_t len_by_high_nibble[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
    return len_by_high_nibble[c >> 4];
}

size_t sw__utf8_decode(const uint8_t *p, size_t n, uint32_t *cp_out)
{
    uint8_t c = p[0];
    if (c < 0x80) { *cp_out = c; return 1; }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else { *cp_out = 0xFFFD; return 1; }
    if (len > n) { *cp_out = 0xFFFD; return 1; }
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) { *cp_out = 0xFFFD; return 1; }
        cp = cp << 6 | (p[i] & 0x3F);
    }
    /* Lenient like llama.cpp (overlong forms and surrogates pass), but never beyond
     * the Unicode range. */
    if (cp > 0x10FFFF) { *cp_out = 0xFFFD; return 1; }
    *cp_out = cp;
    return len;
}

size_t sw__utf8_encode(uint32_t cp, uint8_t out[4])
{
    if (cp < 0x80) { out[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp > 0x10FFFF) cp = 0xFFFD;
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}
