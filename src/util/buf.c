/* buf.c — growable byte buffer and big-endian helpers. */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sw_buf_init(struct sw_buf *b) { memset(b, 0, sizeof *b); }

void sw_buf_free(struct sw_buf *b)
{
    if (!b) return;
    free(b->data);
    memset(b, 0, sizeof *b);
}

int sw_buf_reserve(struct sw_buf *b, size_t extra)
{
    if (b->oom) return SW_ENOMEM;
    if (extra > SIZE_MAX - b->len - 1) { b->oom = 1; return SW_ENOMEM; }
    size_t need = b->len + extra + 1; /* +1 keeps room for sw_buf_cstr's NUL */
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) { b->oom = 1; return SW_ENOMEM; }
    b->data = p;
    b->cap = cap;
    return 0;
}

int sw_buf_append(struct sw_buf *b, const void *p, size_t n)
{
    if (sw_buf_reserve(b, n)) return SW_ENOMEM;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int sw_buf_append_byte(struct sw_buf *b, uint8_t c) { return sw_buf_append(b, &c, 1); }

int sw_buf_printf(struct sw_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return SW_EINVAL;
    if (sw_buf_reserve(b, (size_t)n + 1)) return SW_ENOMEM;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void sw_buf_consume(struct sw_buf *b, size_t n)
{
    if (n >= b->len) { b->len = 0; return; }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

int sw_buf_ok(const struct sw_buf *b) { return !b->oom; }

const char *sw_buf_cstr(struct sw_buf *b)
{
    if (sw_buf_reserve(b, 1)) return NULL;
    b->data[b->len] = 0;
    return (const char *)b->data;
}

void sw_put_be16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
void sw_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
void sw_put_be64(uint8_t *p, uint64_t v)
{
    sw_put_be32(p, (uint32_t)(v >> 32));
    sw_put_be32(p + 4, (uint32_t)v);
}
uint16_t sw_get_be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
uint32_t sw_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
uint64_t sw_get_be64(const uint8_t *p) { return ((uint64_t)sw_get_be32(p) << 32) | sw_get_be32(p + 4); }
