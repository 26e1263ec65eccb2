/* pipeline_wire.c — the pipeline messages' binary form: encode, and a bounds-checked decoder
 * for outside bytes (every length against what remains and a named cap). Integers are big
 * endian like the rest of the swarm protocol; hidden states and logits are little-endian
 * IEEE floats (the layout of every host we build for, so they are copied, not converted).
 * Not for: what the messages mean (pipeline.c). docs/pipeline.md has the tables. */
#include "swarm/pipeline.h"

#include <stdio.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pipeline_wire.c copies little-endian floats: add a byte swap for this host"
#endif

/* ---------------------------------------------------------------- f16 */

uint16_t sw_pipe_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t man = x & 0x7fffffu;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0));
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u); /* overflow: inf */
    if (e <= 0) {                                   /* subnormal or zero */
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t h = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++; /* may carry into exp: correct */
    return (uint16_t)(sign | h);
}

float sw_pipe_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, x;
    if (exp == 0) {
        if (!man) {
            x = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400u));
            x = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        x = sign | 0x7f800000u | (man << 13);
    } else {
        x = sign | ((exp - 15 + 127) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

size_t sw_pipe_dtype_size(uint8_t dtype)
{
    return dtype == SW_PIPE_F16 ? 2 : dtype == SW_PIPE_F32 ? 4 : 0;
}

/* ---------------------------------------------------------------- encode */

static void put8(struct sw_buf *b, uint8_t v) { sw_buf_append_byte(b, v); }
static void put32(struct sw_buf *b, uint32_t v)
{
    uint8_t t[4];
    sw_put_be32(t, v);
    sw_buf_append(b, t, 4);
}
static void put64(struct sw_buf *b, uint64_t v)
{
    uint8_t t[8];
    sw_put_be64(t, v);
    sw_buf_append(b, t, 8);
}

/* OPEN, CLOSE: the prefix's block hashes (count, then SW_PREFIX_HASH_LEN bytes each). */
static int put_hashes(struct sw_buf *out, const struct sw_pipe_msg *m)
{
    if (m->n_hashes > SW_PREFIX_MAX_BLOCKS || (m->n_hashes && !m->hashes)) return SW_EINVAL;
    put32(out, m->n_hashes);
    if (m->n_hashes) sw_buf_append(out, m->hashes, (size_t)m->n_hashes * SW_PREFIX_HASH_LEN);
    return 0;
}

int sw_pipe_msg_encode(const struct sw_pipe_msg *m, struct sw_buf *out)
{
    if (!m || !out) return SW_EINVAL;
    size_t start = out->len;
    put8(out, 'S'); /* SW_MSG_PIPE */
    put8(out, SW_PIPE_VERSION);
    put8(out, m->type);
    put64(out, m->session);
    switch (m->type) {
    case SW_PIPE_OPEN:
        if (!m->n_stages || m->n_stages > SW_PIPE_MAX_STAGES || m->n_stop > SW_PIPE_MAX_STOP ||
            m->blob_len > SW_PIPE_MAX_BLOB || !m->route || !m->entry)
            return SW_EINVAL;
        put8(out, m->stage);
        put8(out, m->flags);
        put8(out, m->dtype);
        put8(out, m->n_stages);
        sw_buf_append(out, m->route, (size_t)m->n_stages * SW_NODE_ID_LEN);
        sw_buf_append(out, m->entry, SW_NODE_ID_LEN);
        put32(out, m->n_ctx);
        put32(out, m->n_known);
        put32(out, m->max_pos);
        put8(out, (uint8_t)m->n_stop);
        if (m->n_stop) sw_buf_append(out, m->stop, (size_t)m->n_stop * 4);
        put32(out, m->blob_len);
        if (m->blob_len) sw_buf_append(out, m->blob, m->blob_len);
        put32(out, m->progress_ms);
        if (put_hashes(out, m)) return SW_EINVAL;
        if (m->spec_k > SW_PIPE_MAX_SPEC || m->n_ids > SW_PIPE_MAX_TOKENS || (m->n_ids && !m->ids)) return SW_EINVAL;
        put8(out, m->spec_k);
        put32(out, m->n_ids);
        if (m->n_ids) sw_buf_append(out, m->ids, (size_t)m->n_ids * 4);
        break;
    case SW_PIPE_OPEN_OK:
        put8(out, m->stage);
        put32(out, m->reused);
        break;
    case SW_PIPE_TOKENS:
        if (m->n_tokens > SW_PIPE_MAX_TOKENS || m->data_len != (size_t)m->n_tokens * 4) return SW_EINVAL;
        put8(out, m->flags);
        put32(out, m->pos);
        put32(out, m->n_tokens);
        if (m->data_len) sw_buf_append(out, m->data, m->data_len);
        break;
    case SW_PIPE_HIDDEN:
        if (m->n_tokens > SW_PIPE_MAX_TOKENS || m->n_embd > SW_PIPE_MAX_EMBD) return SW_EINVAL;
        put8(out, m->flags);
        put8(out, m->dtype);
        put32(out, m->pos);
        put32(out, m->n_tokens);
        put32(out, m->n_embd);
        if (m->data_len) sw_buf_append(out, m->data, m->data_len);
        break;
    case SW_PIPE_TOKEN_OUT:
        if (m->n_logits > SW_PIPE_MAX_LOGITS || m->blob_len > SW_PIPE_MAX_BLOB) return SW_EINVAL;
        put32(out, m->pos);
        put32(out, (uint32_t)m->token);
        put32(out, m->compute_us);
        put32(out, m->n_logits);
        if (m->n_logits) sw_buf_append(out, m->logits, (size_t)m->n_logits * 4);
        put32(out, m->blob_len);
        if (m->blob_len) sw_buf_append(out, m->blob, m->blob_len);
        break;
    case SW_PIPE_ERROR: {
        uint16_t tl = (uint16_t)SW_MIN((size_t)m->text_len, (size_t)SW_PIPE_MAX_TEXT);
        put8(out, m->stage);
        put32(out, (uint32_t)m->code);
        uint8_t t[2];
        sw_put_be16(t, tl);
        sw_buf_append(out, t, 2);
        if (tl) sw_buf_append(out, m->text, tl);
        break;
    }
    case SW_PIPE_CANCEL:
        break;
    case SW_PIPE_CLOSE:
        if (put_hashes(out, m)) return SW_EINVAL;
        break;
    case SW_PIPE_PROGRESS:
        put8(out, m->stage);
        put32(out, m->pos);
        put32(out, m->n_tokens);
        put32(out, m->compute_us);
        break;
    case SW_PIPE_REPLAY:
        if (!m->n_stages || m->n_stages > SW_PIPE_MAX_STAGES || !m->route) return SW_EINVAL;
        put8(out, m->replay_stage);
        put8(out, m->n_stages);
        sw_buf_append(out, m->route, (size_t)m->n_stages * SW_NODE_ID_LEN);
        break;
    case SW_PIPE_HEADER_GET:
        if (!m->max_len || m->max_len > SW_PIPE_MAX_HEADER) {
            out->len = start;
            return SW_EINVAL;
        }
        put32(out, m->max_len);
        break;
    case SW_PIPE_HEADER:
        if (!m->data_len || m->data_len > SW_PIPE_MAX_HEADER || !m->data) {
            out->len = start;
            return SW_EINVAL;
        }
        put32(out, m->file);
        put32(out, (uint32_t)m->data_len);
        sw_buf_append(out, m->data, m->data_len);
        break;
    case SW_PIPE_AUDIT:
        if (!m->node_a || !m->node_b || !m->n_tokens || m->n_tokens > SW_PIPE_MAX_CTX ||
            (m->role != SW_PIPE_AUDIT_FEED && m->role != SW_PIPE_AUDIT_WITNESS)) {
            out->len = start;
            return SW_EINVAL;
        }
        put8(out, m->role);
        put8(out, m->flags);
        put64(out, m->audit);
        sw_buf_append(out, m->node_a, SW_NODE_ID_LEN);
        sw_buf_append(out, m->node_b, SW_NODE_ID_LEN);
        put32(out, m->pos);
        put32(out, m->n_tokens);
        break;
    case SW_PIPE_CLAIM:
        if (m->n_tokens > SW_PIPE_MAX_TOKENS || m->n_embd > SW_PIPE_MAX_EMBD || !m->node_a) {
            out->len = start;
            return SW_EINVAL;
        }
        put8(out, m->flags);
        put8(out, m->dtype);
        put32(out, m->pos);
        put32(out, m->n_tokens);
        put32(out, m->n_embd);
        sw_buf_append(out, m->node_a, SW_NODE_ID_LEN);
        if (m->data_len) sw_buf_append(out, m->data, m->data_len);
        break;
    case SW_PIPE_VERDICT: {
        if (!m->node_a) {
            out->len = start;
            return SW_EINVAL;
        }
        uint32_t fa, fr;
        memcpy(&fa, &m->max_abs, 4);
        memcpy(&fr, &m->rel_err, 4);
        uint16_t tl = (uint16_t)SW_MIN((size_t)m->text_len, (size_t)SW_PIPE_MAX_TEXT);
        put8(out, m->stage);
        put8(out, m->verdict);
        put32(out, m->pos);
        put32(out, m->n_tokens);
        put32(out, m->bad_pos);
        put32(out, fa);
        put32(out, fr);
        sw_buf_append(out, m->node_a, SW_NODE_ID_LEN);
        uint8_t t[2];
        sw_put_be16(t, tl);
        sw_buf_append(out, t, 2);
        if (tl) sw_buf_append(out, m->text, tl);
        break;
    }
    default:
        out->len = start;
        return SW_EINVAL;
    }
    if (!sw_buf_ok(out)) return SW_ENOMEM;
    return 0;
}

/* ---------------------------------------------------------------- decode */

struct rd {
    const uint8_t *p;
    size_t left;
    const char *field; /* first field that did not fit */
};

static int need(struct rd *r, size_t n, const char *field)
{
    if (r->left < n) {
        if (!r->field) r->field = field;
        return 0;
    }
    return 1;
}
static uint8_t g8(struct rd *r, const char *f)
{
    if (!need(r, 1, f)) return 0;
    uint8_t v = r->p[0];
    r->p++, r->left--;
    return v;
}
static uint16_t g16(struct rd *r, const char *f)
{
    if (!need(r, 2, f)) return 0;
    uint16_t v = sw_get_be16(r->p);
    r->p += 2, r->left -= 2;
    return v;
}
static uint32_t g32(struct rd *r, const char *f)
{
    if (!need(r, 4, f)) return 0;
    uint32_t v = sw_get_be32(r->p);
    r->p += 4, r->left -= 4;
    return v;
}
static uint64_t g64(struct rd *r, const char *f)
{
    if (!need(r, 8, f)) return 0;
    uint64_t v = sw_get_be64(r->p);
    r->p += 8, r->left -= 8;
    return v;
}
/* n bytes borrowed; NULL when they are not there. */
static const uint8_t *gbytes(struct rd *r, size_t n, const char *f)
{
    if (!need(r, n, f)) return NULL;
    const uint8_t *v = r->p;
    r->p += n, r->left -= n;
    return v;
}

#define BAD(code, ...)                                          \
    do {                                                        \
        if (err && err_len) snprintf(err, err_len, __VA_ARGS__); \
        return code;                                            \
    } while (0)

/* Nonzero: over the cap (a short read is left to r->field). */
static int get_hashes(struct rd *r, struct sw_pipe_msg *m)
{
    m->n_hashes = g32(r, "n_hashes");
    if (r->field) return 0;
    if (m->n_hashes > SW_PREFIX_MAX_BLOCKS) return 1;
    m->hashes = gbytes(r, (size_t)m->n_hashes * SW_PREFIX_HASH_LEN, "hashes");
    return 0;
}

int sw_pipe_msg_decode(const uint8_t *p, size_t len, struct sw_pipe_msg *m, char *err,
                       size_t err_len)
{
    if (err && err_len) err[0] = 0;
    memset(m, 0, sizeof *m);
    if (!p || len < 3) BAD(SW_ECORRUPT, "pipeline message shorter than its header (%zu bytes)", len);
    if (len > SW_PIPE_MAX_MSG) BAD(SW_ETOOBIG, "pipeline message of %zu bytes over the cap", len);
    if (p[0] != 'S') BAD(SW_ECORRUPT, "not a pipeline message (kind 0x%02x)", p[0]);
    if (p[1] != SW_PIPE_VERSION) BAD(SW_EUNSUPPORTED, "pipeline protocol version %u (we speak %u)", p[1], SW_PIPE_VERSION);
    struct rd r = { p + 3, len - 3, NULL };
    m->type = p[2];
    m->stage = 0xff;
    m->session = g64(&r, "session");
    switch (m->type) {
    case SW_PIPE_OPEN:
        m->stage = g8(&r, "stage");
        m->flags = g8(&r, "flags");
        m->dtype = g8(&r, "dtype");
        m->n_stages = g8(&r, "n_stages");
        if (r.field) break;
        if (!m->n_stages || m->n_stages > SW_PIPE_MAX_STAGES)
            BAD(SW_ECORRUPT, "OPEN: %u stages (1..%u)", m->n_stages, SW_PIPE_MAX_STAGES);
        if (m->stage >= m->n_stages) BAD(SW_ECORRUPT, "OPEN: stage %u of %u", m->stage, m->n_stages);
        if (!sw_pipe_dtype_size(m->dtype)) BAD(SW_ECORRUPT, "OPEN: dtype %u", m->dtype);
        m->route = gbytes(&r, (size_t)m->n_stages * SW_NODE_ID_LEN, "route");
        m->entry = gbytes(&r, SW_NODE_ID_LEN, "entry");
        m->n_ctx = g32(&r, "n_ctx");
        m->n_known = g32(&r, "n_known");
        m->max_pos = g32(&r, "max_pos");
        m->n_stop = g8(&r, "n_stop");
        if (r.field) break;
        if (m->n_stop > SW_PIPE_MAX_STOP) BAD(SW_ETOOBIG, "OPEN: %u stop tokens (cap %u)", m->n_stop, SW_PIPE_MAX_STOP);
        m->stop = gbytes(&r, (size_t)m->n_stop * 4, "stop");
        m->blob_len = g32(&r, "blob_len");
        if (r.field) break;
        if (m->blob_len > SW_PIPE_MAX_BLOB) BAD(SW_ETOOBIG, "OPEN: sampler state of %u bytes (cap %u)", m->blob_len, SW_PIPE_MAX_BLOB);
        m->blob = gbytes(&r, m->blob_len, "blob");
        m->progress_ms = g32(&r, "progress_ms");
        if (get_hashes(&r, m)) BAD(SW_ETOOBIG, "OPEN: %u prefix hashes (cap %u)", m->n_hashes, SW_PREFIX_MAX_BLOCKS);
        m->spec_k = g8(&r, "spec_k");
        m->n_ids = g32(&r, "n_ids");
        if (r.field) break;
        if (m->spec_k > SW_PIPE_MAX_SPEC) BAD(SW_ECORRUPT, "OPEN: %u drafted tokens per step (cap %u)", m->spec_k, SW_PIPE_MAX_SPEC);
        if (m->n_ids > SW_PIPE_MAX_TOKENS) BAD(SW_ETOOBIG, "OPEN: %u history ids (cap %u)", m->n_ids, SW_PIPE_MAX_TOKENS);
        m->ids = gbytes(&r, (size_t)m->n_ids * 4, "ids");
        if (!m->n_ctx) BAD(SW_ECORRUPT, "OPEN: n_ctx 0");
        if (m->n_known > m->n_ctx || m->max_pos > m->n_ctx) BAD(SW_ECORRUPT, "OPEN: positions past n_ctx");
        break;
    case SW_PIPE_OPEN_OK:
        m->stage = g8(&r, "stage");
        m->reused = g32(&r, "reused");
        break;
    case SW_PIPE_TOKENS:
        m->flags = g8(&r, "flags");
        m->pos = g32(&r, "pos");
        m->n_tokens = g32(&r, "n_tokens");
        if (r.field) break;
        if (!m->n_tokens) BAD(SW_ECORRUPT, "TOKENS: no tokens");
        if (m->n_tokens > SW_PIPE_MAX_TOKENS) BAD(SW_ETOOBIG, "TOKENS: %u tokens (cap %u)", m->n_tokens, SW_PIPE_MAX_TOKENS);
        m->data_len = (size_t)m->n_tokens * 4;
        m->data = gbytes(&r, m->data_len, "ids");
        break;
    case SW_PIPE_HIDDEN:
        m->flags = g8(&r, "flags");
        m->dtype = g8(&r, "dtype");
        m->pos = g32(&r, "pos");
        m->n_tokens = g32(&r, "n_tokens");
        m->n_embd = g32(&r, "n_embd");
        if (r.field) break;
        if (m->n_tokens > SW_PIPE_MAX_TOKENS) BAD(SW_ETOOBIG, "HIDDEN: %u tokens (cap %u)", m->n_tokens, SW_PIPE_MAX_TOKENS);
        if (m->n_embd > SW_PIPE_MAX_EMBD) BAD(SW_ETOOBIG, "HIDDEN: n_embd %u (cap %u)", m->n_embd, SW_PIPE_MAX_EMBD);
        /* The payload is the rest; whether its size matches n_tokens x n_embd x dtype is
         * the session's business (a mismatch is an error for that session only). */
        m->data = r.p;
        m->data_len = r.left;
        r.p += r.left;
        r.left = 0;
        break;
    case SW_PIPE_TOKEN_OUT:
        m->pos = g32(&r, "pos");
        m->token = (int32_t)g32(&r, "token");
        m->compute_us = g32(&r, "compute_us");
        m->n_logits = g32(&r, "n_logits");
        if (r.field) break;
        if (m->n_logits > SW_PIPE_MAX_LOGITS) BAD(SW_ETOOBIG, "TOKEN_OUT: %u logits (cap %u)", m->n_logits, SW_PIPE_MAX_LOGITS);
        m->logits = gbytes(&r, (size_t)m->n_logits * 4, "logits");
        m->blob_len = g32(&r, "blob_len");
        if (r.field) break;
        if (m->blob_len > SW_PIPE_MAX_BLOB) BAD(SW_ETOOBIG, "TOKEN_OUT: sampler state of %u bytes (cap %u)", m->blob_len, SW_PIPE_MAX_BLOB);
        m->blob = gbytes(&r, m->blob_len, "blob");
        if (m->token < 0) BAD(SW_ECORRUPT, "TOKEN_OUT: negative token %d", m->token);
        break;
    case SW_PIPE_PROGRESS:
        m->stage = g8(&r, "stage");
        m->pos = g32(&r, "pos");
        m->n_tokens = g32(&r, "n_tokens");
        m->compute_us = g32(&r, "compute_us");
        if (!r.field && m->stage >= SW_PIPE_MAX_STAGES)
            BAD(SW_ECORRUPT, "PROGRESS: stage %u (at most %u stages)", m->stage, SW_PIPE_MAX_STAGES);
        break;
    case SW_PIPE_ERROR:
        m->stage = g8(&r, "stage");
        m->code = (int32_t)g32(&r, "code");
        m->text_len = g16(&r, "text_len");
        if (r.field) break;
        if (m->text_len > SW_PIPE_MAX_TEXT) BAD(SW_ETOOBIG, "ERROR: text of %u bytes (cap %u)", m->text_len, SW_PIPE_MAX_TEXT);
        m->text = (const char *)gbytes(&r, m->text_len, "text");
        if (!r.field && m->code >= 0) BAD(SW_ECORRUPT, "ERROR: code %d is not negative", m->code);
        break;
    case SW_PIPE_CANCEL:
        break;
    case SW_PIPE_CLOSE:
        if (get_hashes(&r, m)) BAD(SW_ETOOBIG, "CLOSE: %u prefix hashes (cap %u)", m->n_hashes, SW_PREFIX_MAX_BLOCKS);
        break;
    case SW_PIPE_REPLAY:
        m->replay_stage = g8(&r, "replay_stage");
        m->n_stages = g8(&r, "n_stages");
        if (r.field) break;
        if (!m->n_stages || m->n_stages > SW_PIPE_MAX_STAGES)
            BAD(SW_ECORRUPT, "REPLAY: %u stages (1..%u)", m->n_stages, SW_PIPE_MAX_STAGES);
        m->route = gbytes(&r, (size_t)m->n_stages * SW_NODE_ID_LEN, "route");
        break;
    case SW_PIPE_HEADER_GET:
        m->max_len = g32(&r, "max_len");
        if (r.field) break;
        if (!m->max_len) BAD(SW_ECORRUPT, "HEADER_GET: max_len 0");
        if (m->max_len > SW_PIPE_MAX_HEADER)
            BAD(SW_ETOOBIG, "HEADER_GET: max_len %u (cap %u)", m->max_len, SW_PIPE_MAX_HEADER);
        break;
    case SW_PIPE_HEADER: {
        m->file = g32(&r, "file");
        uint32_t n = g32(&r, "n_bytes");
        if (r.field) break;
        if (!n) BAD(SW_ECORRUPT, "HEADER: no bytes");
        if (n > SW_PIPE_MAX_HEADER) BAD(SW_ETOOBIG, "HEADER: %u bytes (cap %u)", n, SW_PIPE_MAX_HEADER);
        m->data_len = n;
        m->data = gbytes(&r, n, "bytes");
        break;
    }
    case SW_PIPE_AUDIT:
        m->role = g8(&r, "role");
        m->flags = g8(&r, "flags");
        m->audit = g64(&r, "audit");
        m->node_a = gbytes(&r, SW_NODE_ID_LEN, "checker");
        m->node_b = gbytes(&r, SW_NODE_ID_LEN, "checked");
        m->pos = g32(&r, "pos");
        m->n_tokens = g32(&r, "n_tokens");
        if (r.field) break;
        if (m->role != SW_PIPE_AUDIT_FEED && m->role != SW_PIPE_AUDIT_WITNESS) BAD(SW_ECORRUPT, "AUDIT: role %u", m->role);
        if (!m->n_tokens || m->n_tokens > SW_PIPE_MAX_CTX)
            BAD(SW_ECORRUPT, "AUDIT: %u positions (1..%u)", m->n_tokens, SW_PIPE_MAX_CTX);
        if ((uint64_t)m->pos + m->n_tokens > SW_PIPE_MAX_CTX) BAD(SW_ECORRUPT, "AUDIT: positions past %u", SW_PIPE_MAX_CTX);
        break;
    case SW_PIPE_CLAIM:
        m->flags = g8(&r, "flags");
        m->dtype = g8(&r, "dtype");
        m->pos = g32(&r, "pos");
        m->n_tokens = g32(&r, "n_tokens");
        m->n_embd = g32(&r, "n_embd");
        m->node_a = gbytes(&r, SW_NODE_ID_LEN, "upstream");
        if (r.field) break;
        if (m->n_tokens > SW_PIPE_MAX_TOKENS) BAD(SW_ETOOBIG, "CLAIM: %u tokens (cap %u)", m->n_tokens, SW_PIPE_MAX_TOKENS);
        if (m->n_embd > SW_PIPE_MAX_EMBD) BAD(SW_ETOOBIG, "CLAIM: n_embd %u (cap %u)", m->n_embd, SW_PIPE_MAX_EMBD);
        m->data = r.p; /* the size is the checker's business, as for HIDDEN */
        m->data_len = r.left;
        r.p += r.left;
        r.left = 0;
        break;
    case SW_PIPE_VERDICT: {
        m->stage = g8(&r, "stage");
        m->verdict = g8(&r, "verdict");
        m->pos = g32(&r, "pos");
        m->n_tokens = g32(&r, "n_tokens");
        m->bad_pos = g32(&r, "bad_pos");
        uint32_t fa = g32(&r, "max_abs"), fr = g32(&r, "rel_err");
        memcpy(&m->max_abs, &fa, 4);
        memcpy(&m->rel_err, &fr, 4);
        m->node_a = gbytes(&r, SW_NODE_ID_LEN, "upstream");
        m->text_len = g16(&r, "text_len");
        if (r.field) break;
        if (m->verdict > SW_PIPE_VERDICT_INCONCLUSIVE) BAD(SW_ECORRUPT, "VERDICT: result %u", m->verdict);
        if (m->stage >= SW_PIPE_MAX_STAGES) BAD(SW_ECORRUPT, "VERDICT: stage %u", m->stage);
        if (m->text_len > SW_PIPE_MAX_TEXT) BAD(SW_ETOOBIG, "VERDICT: text of %u bytes (cap %u)", m->text_len, SW_PIPE_MAX_TEXT);
        m->text = (const char *)gbytes(&r, m->text_len, "text");
        break;
    }
    default:
        BAD(SW_EUNSUPPORTED, "unknown pipeline message type %u", m->type);
    }
    if (r.field) BAD(SW_ECORRUPT, "pipeline message type %u truncated at '%s'", m->type, r.field);
    if (r.left) BAD(SW_ECORRUPT, "pipeline message type %u has %zu trailing bytes", m->type, r.left);
    return 0;
}
