/* writer.c — streams a GGUF v3 file: metadata and tensor infos are collected first (small),
 * then the header is written and tensor bytes are passed through from the caller's pointers
 * (usually another file's map) with the alignment padding in between. Nothing of the tensor
 * data is held. The file is built under "<path>.tmp" and renamed only when complete, so a
 * failure never leaves a partial file at <path>. The SHA-256 of the bytes is computed on the
 * way out, so split does not need to read its shards back. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"

#define WBUF_SIZE (1u << 20)
#define CAP_KEY_LEN 65535u
#define CAP_TENSOR_NAME_LEN 64u

struct wkv {
    char *key;
    uint32_t type;
    uint8_t *val; /* the value's encoding (after the type u32) */
    size_t val_len;
};

struct wtensor {
    char *name;
    uint32_t type, n_dims;
    int64_t ne[4];
    uint64_t n_bytes, offset;
};

struct sw_gguf_writer {
    char *path, *tmp;
    int fd;
    uint64_t alignment;
    struct wkv *kvs;
    size_t n_kv, cap_kv;
    struct wtensor *ts;
    size_t n_t, cap_t;
    uint64_t data_size;   /* end of the last tensor added, relative to the data section */
    int header_done;
    size_t cur;           /* index of the tensor being written */
    uint64_t cur_done;    /* its bytes written so far */
    uint64_t data_pos;    /* bytes written into the data section (incl. padding) */
    uint64_t file_bytes;
    uint64_t tensor_bytes, tensor_bytes_done; /* sum of the tensors' sizes; of it written */
    uint8_t *buf;
    size_t buf_len;
    struct sw_hash *sha;
    int failed;           /* sticky error: once set, every call returns it */
};

static int errno_rc(int e)
{
    switch (e) {
    case ENOSPC: case EDQUOT: return SW_ENOSPC;
    case ENOENT: case ENOTDIR: return SW_ENOTFOUND;
    case EACCES: case EPERM: case EROFS: return SW_EPERM;
    case ENOMEM: return SW_ENOMEM;
    default: return SW_EIO;
    }
}

int sw_gguf_writer_new(const char *path, uint64_t alignment, struct sw_gguf_writer **out)
{
    *out = NULL;
    if (!alignment) alignment = 32;
    /* GGUF: the alignment is a power of two (and general.alignment is a u32). */
    if (alignment & (alignment - 1) || alignment > (1u << 30)) return SW_EINVAL;
    struct sw_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return SW_ENOMEM;
    w->fd = -1;
    w->alignment = alignment;
    size_t n = strlen(path) + 5;
    w->path = strdup(path);
    w->tmp = malloc(n);
    w->buf = malloc(WBUF_SIZE);
    w->sha = sw_hash_new_sha256();
    if (!w->path || !w->tmp || !w->buf || !w->sha) {
        sw_gguf_writer_free(w);
        return SW_ENOMEM;
    }
    snprintf(w->tmp, n, "%s.tmp", path);
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        int rc = errno_rc(errno);
        sw_gguf_writer_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

void sw_gguf_writer_free(struct sw_gguf_writer *w)
{
    if (!w) return;
    if (w->fd >= 0) {
        close(w->fd);
        unlink(w->tmp); /* not finished: leave nothing behind */
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++) free(w->ts[i].name);
    free(w->kvs);
    free(w->ts);
    free(w->path);
    free(w->tmp);
    free(w->buf);
    sw_hash_free(w->sha);
    free(w);
}

/* ------------------------------------------------------------------ metadata */

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Adds or replaces key with an encoded value (val is copied). */
static int set_raw(struct sw_gguf_writer *w, const char *key, size_t key_len, uint32_t type,
                   const void *val, size_t val_len)
{
    if (w->failed) return w->failed;
    if (w->header_done) return SW_ESTATE;
    if (key_len == 0 || key_len > CAP_KEY_LEN) return SW_EINVAL;
    uint8_t *v = malloc(val_len ? val_len : 1);
    if (!v) return SW_ENOMEM;
    if (val_len) memcpy(v, val, val_len);
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strlen(w->kvs[i].key) == key_len && !memcmp(w->kvs[i].key, key, key_len)) {
            free(w->kvs[i].val);
            w->kvs[i].type = type;
            w->kvs[i].val = v;
            w->kvs[i].val_len = val_len;
            return 0;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        struct wkv *p = realloc(w->kvs, cap * sizeof *p);
        if (!p) { free(v); return SW_ENOMEM; }
        w->kvs = p;
        w->cap_kv = cap;
    }
    char *k = malloc(key_len + 1);
    if (!k) { free(v); return SW_ENOMEM; }
    memcpy(k, key, key_len);
    k[key_len] = 0;
    w->kvs[w->n_kv++] = (struct wkv){ k, type, v, val_len };
    return 0;
}

static int set_scalar(struct sw_gguf_writer *w, const char *key, uint32_t type, uint64_t bits,
                      unsigned size)
{
    uint8_t b[8];
    put_le(b, bits, size);
    return set_raw(w, key, strlen(key), type, b, size);
}

int sw_gguf_writer_set_u32(struct sw_gguf_writer *w, const char *key, uint32_t v)
{
    return set_scalar(w, key, SW_GGUF_U32, v, 4);
}

int sw_gguf_writer_set_i32(struct sw_gguf_writer *w, const char *key, int32_t v)
{
    return set_scalar(w, key, SW_GGUF_I32, (uint32_t)v, 4);
}

int sw_gguf_writer_set_u64(struct sw_gguf_writer *w, const char *key, uint64_t v)
{
    return set_scalar(w, key, SW_GGUF_U64, v, 8);
}

int sw_gguf_writer_set_f32(struct sw_gguf_writer *w, const char *key, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    return set_scalar(w, key, SW_GGUF_F32, u, 4);
}

int sw_gguf_writer_set_bool(struct sw_gguf_writer *w, const char *key, int v)
{
    return set_scalar(w, key, SW_GGUF_BOOL, v ? 1 : 0, 1);
}

int sw_gguf_writer_set_str(struct sw_gguf_writer *w, const char *key, const char *v)
{
    size_t n = strlen(v);
    uint8_t *b = malloc(8 + n);
    if (!b) return SW_ENOMEM;
    put_le(b, n, 8);
    memcpy(b + 8, v, n);
    int rc = set_raw(w, key, strlen(key), SW_GGUF_STRING, b, 8 + n);
    free(b);
    return rc;
}

int sw_gguf_writer_set_arr(struct sw_gguf_writer *w, const char *key, uint32_t elem_type,
                           const void *data, uint64_t count)
{
    unsigned es = sw_gguf_vtype_size(elem_type);
    if (!es) return SW_EINVAL; /* strings: set_arr_str; nested: add_kv */
    if (count > (SIZE_MAX - 12) / es) return SW_ETOOBIG;
    size_t n = 12 + (size_t)count * es;
    uint8_t *b = malloc(n);
    if (!b) return SW_ENOMEM;
    put_le(b, elem_type, 4);
    put_le(b + 4, count, 8);
    /* Host order is little-endian on every platform we build for (x86-64, aarch64). */
    if (count) memcpy(b + 12, data, (size_t)count * es);
    int rc = set_raw(w, key, strlen(key), SW_GGUF_ARRAY, b, n);
    free(b);
    return rc;
}

int sw_gguf_writer_set_arr_str(struct sw_gguf_writer *w, const char *key,
                               const char *const *strs, uint64_t count)
{
    struct sw_buf b;
    sw_buf_init(&b);
    uint8_t h[12];
    put_le(h, SW_GGUF_STRING, 4);
    put_le(h + 4, count, 8);
    sw_buf_append(&b, h, 12);
    for (uint64_t i = 0; i < count; i++) {
        size_t n = strlen(strs[i]);
        put_le(h, n, 8);
        sw_buf_append(&b, h, 8);
        sw_buf_append(&b, strs[i], n);
    }
    int rc = sw_buf_ok(&b) ? set_raw(w, key, strlen(key), SW_GGUF_ARRAY, b.data, b.len) : SW_ENOMEM;
    sw_buf_free(&b);
    return rc;
}

int sw_gguf_writer_add_kv(struct sw_gguf_writer *w, const struct sw_gguf_kv *kv)
{
    uint8_t b[8];
    unsigned es = sw_gguf_vtype_size(kv->type);
    if (es) {
        uint64_t bits = kv->v.u64;
        if (kv->type == SW_GGUF_F32) {
            float f = (float)kv->v.f64;
            uint32_t u;
            memcpy(&u, &f, 4);
            bits = u;
        } else if (kv->type == SW_GGUF_F64) {
            memcpy(&bits, &kv->v.f64, 8);
        }
        put_le(b, bits, es);
        return set_raw(w, kv->key.ptr, (size_t)kv->key.len, kv->type, b, es);
    }
    if (kv->type == SW_GGUF_STRING) {
        if (kv->v.str.len > SIZE_MAX - 8) return SW_ETOOBIG;
        size_t n = 8 + (size_t)kv->v.str.len;
        uint8_t *p = malloc(n);
        if (!p) return SW_ENOMEM;
        put_le(p, kv->v.str.len, 8);
        memcpy(p + 8, kv->v.str.ptr, (size_t)kv->v.str.len);
        int rc = set_raw(w, kv->key.ptr, (size_t)kv->key.len, kv->type, p, n);
        free(p);
        return rc;
    }
    if (kv->type == SW_GGUF_ARRAY) {
        /* The element bytes of any array (strings and nested arrays included) are already in
         * their GGUF encoding: copy them behind a fresh type + count. */
        const struct sw_gguf_arr *a = &kv->v.arr;
        if (a->data_len > SIZE_MAX - 12) return SW_ETOOBIG;
        size_t n = 12 + (size_t)a->data_len;
        uint8_t *p = malloc(n);
        if (!p) return SW_ENOMEM;
        put_le(p, a->elem_type, 4);
        put_le(p + 4, a->n, 8);
        if (a->data_len) memcpy(p + 12, a->data, (size_t)a->data_len);
        int rc = set_raw(w, kv->key.ptr, (size_t)kv->key.len, kv->type, p, n);
        free(p);
        return rc;
    }
    return SW_EINVAL;
}

int sw_gguf_writer_remove(struct sw_gguf_writer *w, const char *key)
{
    if (w->header_done) return SW_ESTATE;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (!strcmp(w->kvs[i].key, key)) {
            free(w->kvs[i].key);
            free(w->kvs[i].val);
            memmove(&w->kvs[i], &w->kvs[i + 1], (w->n_kv - i - 1) * sizeof *w->kvs);
            w->n_kv--;
            return 0;
        }
    }
    return SW_ENOTFOUND;
}

/* ------------------------------------------------------------------ tensor infos */

int sw_gguf_writer_add_tensor(struct sw_gguf_writer *w, const char *name, uint32_t type,
                              uint32_t n_dims, const int64_t *ne)
{
    if (w->failed) return w->failed;
    if (w->header_done) return SW_ESTATE;
    size_t nl = strlen(name);
    /* GGUF: tensor names are at most 64 bytes; dims at most 4. */
    if (nl == 0 || nl > CAP_TENSOR_NAME_LEN || n_dims > 4) return SW_EINVAL;
    const struct sw_type_info *ti = sw_gguf_type_info(type);
    if (!ti) return SW_EUNSUPPORTED;
    uint64_t n_elems = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] < 0) return SW_EINVAL;
        if (ne[d] && n_elems > (uint64_t)INT64_MAX / (uint64_t)ne[d]) return SW_ERANGE;
        n_elems *= (uint64_t)ne[d];
    }
    if (n_dims && ne[0] % ti->block_size) return SW_EINVAL;
    uint64_t bytes;
    int rc = sw_gguf_type_bytes(type, n_elems, &bytes);
    if (rc) return rc;
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->ts[i].name, name)) return SW_EEXIST;
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        struct wtensor *p = realloc(w->ts, cap * sizeof *p);
        if (!p) return SW_ENOMEM;
        w->ts = p;
        w->cap_t = cap;
    }
    struct wtensor *t = &w->ts[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return SW_ENOMEM;
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < 4; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->n_bytes = bytes;
    /* GGUF: each tensor starts at a multiple of the alignment within the data section. */
    t->offset = (w->data_size + w->alignment - 1) / w->alignment * w->alignment;
    if (t->offset > UINT64_MAX - bytes) { free(t->name); return SW_ERANGE; }
    w->data_size = t->offset + bytes;
    w->tensor_bytes += bytes;
    w->n_t++;
    return 0;
}

/* ------------------------------------------------------------------ output */

static int flush(struct sw_gguf_writer *w)
{
    const uint8_t *p = w->buf;
    size_t n = w->buf_len;
    while (n) {
        ssize_t k = write(w->fd, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return w->failed = errno_rc(errno);
        }
        p += k;
        n -= (size_t)k;
    }
    w->buf_len = 0;
    return 0;
}

static int emit(struct sw_gguf_writer *w, const void *p, uint64_t n)
{
    if (w->failed) return w->failed;
    sw_hash_update(w->sha, p, (size_t)n);
    w->file_bytes += n;
    const uint8_t *q = p;
    while (n) {
        if (w->buf_len == WBUF_SIZE && flush(w)) return w->failed;
        size_t k = (size_t)SW_MIN(n, (uint64_t)(WBUF_SIZE - w->buf_len));
        memcpy(w->buf + w->buf_len, q, k);
        w->buf_len += k;
        q += k;
        n -= k;
    }
    return 0;
}

static int emit_zeros(struct sw_gguf_writer *w, uint64_t n)
{
    static const uint8_t zeros[256];
    while (n) {
        uint64_t k = SW_MIN(n, (uint64_t)sizeof zeros);
        int rc = emit(w, zeros, k);
        if (rc) return rc;
        n -= k;
    }
    return 0;
}

static int emit_u32(struct sw_gguf_writer *w, uint32_t v)
{
    uint8_t b[4];
    put_le(b, v, 4);
    return emit(w, b, 4);
}

static int emit_u64(struct sw_gguf_writer *w, uint64_t v)
{
    uint8_t b[8];
    put_le(b, v, 8);
    return emit(w, b, 8);
}

int sw_gguf_writer_write_header(struct sw_gguf_writer *w)
{
    if (w->failed) return w->failed;
    if (w->header_done) return SW_ESTATE;
    int rc;
    /* general.alignment only when it differs from the default or was copied from a source:
     * then it must match what this file uses. */
    int have = 0;
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kvs[i].key, "general.alignment")) have = 1;
    if (have || w->alignment != 32) {
        if ((rc = sw_gguf_writer_set_u32(w, "general.alignment", (uint32_t)w->alignment))) return rc;
    }
    w->header_done = 1;
    /* GGUF header: magic, version, tensor count, kv count. */
    emit(w, "GGUF", 4);
    emit_u32(w, 3);
    emit_u64(w, w->n_t);
    emit_u64(w, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        size_t kl = strlen(w->kvs[i].key);
        emit_u64(w, kl);
        emit(w, w->kvs[i].key, kl);
        emit_u32(w, w->kvs[i].type);
        emit(w, w->kvs[i].val, w->kvs[i].val_len);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const struct wtensor *t = &w->ts[i];
        size_t nl = strlen(t->name);
        emit_u64(w, nl);
        emit(w, t->name, nl);
        emit_u32(w, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) emit_u64(w, (uint64_t)t->ne[d]);
        emit_u32(w, t->type);
        emit_u64(w, t->offset);
    }
    /* GGUF: the data section starts at the next multiple of the alignment. A file without
     * tensors has no data section and is left unpadded. */
    if (w->n_t) {
        uint64_t pad = (w->alignment - w->file_bytes % w->alignment) % w->alignment;
        emit_zeros(w, pad);
    }
    return w->failed;
}

int sw_gguf_writer_write_data(struct sw_gguf_writer *w, const void *p, uint64_t n)
{
    if (w->failed) return w->failed;
    if (!w->header_done) return SW_ESTATE;
    /* Refuse a chunk longer than what the remaining tensors hold before writing any of it. */
    uint64_t room = w->tensor_bytes - w->tensor_bytes_done;
    if (n > room) return SW_EINVAL;
    while (n) {
        if (w->cur >= w->n_t) return SW_EINVAL; /* more bytes than the tensors hold */
        const struct wtensor *t = &w->ts[w->cur];
        if (w->cur_done == 0 && w->data_pos < t->offset) {
            int rc = emit_zeros(w, t->offset - w->data_pos);
            if (rc) return rc;
            w->data_pos = t->offset;
        }
        uint64_t k = SW_MIN(n, t->n_bytes - w->cur_done);
        if (k) {
            /* Big chunks bypass the buffer (but not the hash). */
            if (k >= WBUF_SIZE) {
                if (flush(w)) return w->failed;
                sw_hash_update(w->sha, p, (size_t)k);
                w->file_bytes += k;
                const uint8_t *q = p;
                uint64_t left = k;
                while (left) {
                    ssize_t r = write(w->fd, q, (size_t)SW_MIN(left, (uint64_t)(1u << 30)));
                    if (r < 0) {
                        if (errno == EINTR) continue;
                        return w->failed = errno_rc(errno);
                    }
                    q += r;
                    left -= (uint64_t)r;
                }
            } else if (emit(w, p, k)) {
                return w->failed;
            }
        }
        p = (const uint8_t *)p + k;
        n -= k;
        w->cur_done += k;
        w->tensor_bytes_done += k;
        w->data_pos += k;
        if (w->cur_done == t->n_bytes) {
            w->cur++;
            w->cur_done = 0;
        }
    }
    /* A zero-byte tensor completes without data. */
    while (w->cur < w->n_t && w->ts[w->cur].n_bytes == 0 && w->cur_done == 0) w->cur++;
    return 0;
}

int sw_gguf_writer_finish_ex(struct sw_gguf_writer *w, uint8_t sha256_out[32], uint64_t *size_out)
{
    int rc = w->failed;
    if (!rc && !w->header_done) rc = SW_ESTATE;
    while (!rc && w->cur < w->n_t && w->ts[w->cur].n_bytes == 0) w->cur++;
    if (!rc && w->cur != w->n_t) rc = SW_ESTATE; /* tensors still missing their bytes */
    /* Pad the last tensor to the alignment, as llama.cpp's writer does. */
    if (!rc && w->n_t) rc = emit_zeros(w, (w->alignment - w->data_pos % w->alignment) % w->alignment);
    if (!rc) rc = flush(w);
    if (!rc && fsync(w->fd) != 0) rc = errno_rc(errno);
    if (!rc) {
        int fd = w->fd;
        w->fd = -1;
        if (close(fd) != 0) rc = errno_rc(errno);
        if (!rc && rename(w->tmp, w->path) != 0) rc = errno_rc(errno);
        if (rc) unlink(w->tmp);
    }
    if (!rc) {
        if (sha256_out) sw_hash_final(w->sha, sha256_out);
        if (size_out) *size_out = w->file_bytes;
    }
    sw_gguf_writer_free(w);
    return rc;
}

int sw_gguf_writer_finish(struct sw_gguf_writer *w) { return sw_gguf_writer_finish_ex(w, NULL, NULL); }

uint64_t sw_gguf_writer_tensor_offset(const struct sw_gguf_writer *w, uint64_t i)
{
    return i < w->n_t ? w->ts[i].offset : UINT64_MAX;
}
